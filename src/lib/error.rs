//! The one place errors become exit statuses (`sysexits.h`).

use std::path::PathBuf;

pub use crate::exit::ExitCode;

/// An error as a command reports it: what went wrong, naming the file,
/// message ID or limit it concerns, and (through [`Error::code`]) the exit
/// status it calls for.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is not as documented.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// A message or its content cannot be made or read as given.
    #[error(transparent)]
    Message(#[from] crate::message::Error),
    #[error(transparent)]
    Time(#[from] crate::time::Error),
    /// The built-in HTTP server cannot start.
    #[error(transparent)]
    Server(#[from] crate::session::server::Error),
    /// The outbound runner could not serve the peers.
    #[error(transparent)]
    Outbound(#[from] crate::outbound::Error),
    /// `config.toml` cannot be read or edited as a command needs.
    #[error("{path}: {reason}")]
    ConfigEdit { path: PathBuf, reason: String },
    #[error("{path} already holds a spool (config.toml exists); edit that file to change its IDs")]
    SpoolExists { path: PathBuf },
    /// A command that only reads found no spool (it never makes one).
    #[error("{path} is not an rs spool (it has no config.toml): create one with `rs-queue init --site SITE --spool {path}`, or name another with --spool or RS_SPOOL", path = path.display())]
    NoSpool { path: PathBuf },
    /// An input named on the command line is missing or unreadable.
    #[error("cannot read {path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error("no message {id} is known to {spool} (see rs-queue list)")]
    UnknownMessage { id: String, spool: PathBuf },
    /// A stored message cannot be read as its name promises.
    #[error("{path} (message {id}): {reason}; run `rs-queue check` to quarantine it")]
    Unreadable {
        id: String,
        path: PathBuf,
        reason: String,
    },
    #[error("message {id} is {state} and cannot be {action}")]
    WrongState {
        id: String,
        state: &'static str,
        action: &'static str,
    },
    #[error("message {id} is {what}{size} bytes, more than [throttle] max_message_bytes = {max} in {config}: send it as bulk data, or raise the limit")]
    TooLarge {
        id: String,
        what: &'static str,
        size: u64,
        max: crate::config::Size,
        config: PathBuf,
    },
    #[error("message {id} was not queued: {detail}; nothing of it was kept (raise the limit in {config}, or let the transfers waiting end: rs-queue list)")]
    BulkNotQueued {
        id: String,
        detail: String,
        config: PathBuf,
    },
    #[error("message {id} was not queued: {detail}; it is kept as {kept}")]
    NotQueued {
        id: String,
        detail: String,
        kept: PathBuf,
    },
    #[error("{id} is undeliverable: {why}")]
    Undeliverable { id: String, why: String },
    #[error("{id} not acknowledged after {waited}: {status}")]
    NotAcknowledged {
        id: String,
        waited: String,
        status: String,
    },
    #[error("cannot read stdin: {0}")]
    Stdin(std::io::Error),
    #[error("cannot {op} {path}: {err}")]
    Io {
        op: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
    /// The reader of stdout went away (`| head`). For a command run by a
    /// person this is the reader's choice and exits 0; for a server writing
    /// a reply it means the reply was not delivered, and must never pass
    /// for success: see [`Error::is_closed_stdout`].
    #[error("stdout was closed before the output was written")]
    StdoutClosed,
    /// A service point map (or the registry it is made from) that cannot be
    /// used as given: the file and the field named.
    #[error("{source_name}: {error}")]
    Map {
        source_name: String,
        error: crate::spm::Error,
    },
    /// A service point map's source could not be reached: the map held (if
    /// any) stays in use.
    #[error("{source_name}: {reason}; {kept}")]
    MapUnreachable {
        source_name: String,
        reason: String,
        kept: String,
    },
    /// Anything that keeps this input from being taken now, for an MTA's
    /// pipe: it must keep the mail and retry (exit 75).
    #[error("{0}")]
    Retry(Box<Error>),
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    /// The exit status (`sysexits.h`) this error calls for.
    pub fn code(&self) -> ExitCode {
        match self {
            Error::Usage(_) | Error::Time(_) => ExitCode::Usage,
            Error::Spool(e) => spool_code(e),
            Error::Outbound(crate::outbound::Error::Spool(e)) => spool_code(e),
            Error::Outbound(crate::outbound::Error::UnknownPeer { .. }) => ExitCode::Usage,
            Error::Outbound(_) => ExitCode::Config,
            Error::Config(e) => config_code(e),
            Error::ConfigEdit { .. } => ExitCode::Config,
            Error::Message(_)
            | Error::Map { .. }
            | Error::Unreadable { .. }
            | Error::WrongState { .. }
            | Error::TooLarge { .. } => ExitCode::DataErr,
            Error::SpoolExists { .. } => ExitCode::CantCreat,
            Error::Input { .. } | Error::UnknownMessage { .. } | Error::NoSpool { .. } => {
                ExitCode::NoInput
            }
            Error::NotQueued { .. }
            | Error::BulkNotQueued { .. }
            | Error::NotAcknowledged { .. }
            | Error::MapUnreachable { .. }
            | Error::Retry(_) => ExitCode::TempFail,
            Error::Undeliverable { .. } => ExitCode::Unavailable,
            Error::Stdin(_) | Error::Io { .. } | Error::Stdout(_) => ExitCode::IoErr,
            Error::Server(crate::session::server::Error::Tls { .. }) => ExitCode::Config,
            Error::Server(_) => ExitCode::IoErr,
            Error::StdoutClosed => ExitCode::Ok,
        }
    }

    /// Whether this is only a closed stdout (a reader that stopped early).
    pub fn is_closed_stdout(&self) -> bool {
        matches!(self, Error::StdoutClosed)
    }
}

/// Whether an I/O error is a refusal of access (the file is another
/// user's).
fn denied(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

/// The exit status a configuration error calls for.
fn config_code(e: &crate::config::Error) -> ExitCode {
    match e {
        crate::config::Error::Read { source, .. } if denied(source) => ExitCode::NoPerm,
        _ => ExitCode::Config,
    }
}

/// The exit status a spool error calls for.
fn spool_code(e: &crate::spool::Error) -> ExitCode {
    use crate::spool::Error as S;
    match e {
        S::Io { err, .. } if denied(err) => ExitCode::NoPerm,
        S::Config(e) => config_code(e),
        S::Io { err, .. } if err.raw_os_error() == Some(libc::ENOSPC) => ExitCode::TempFail,
        S::Io { op, .. } if op.starts_with("create") => ExitCode::CantCreat,
        S::Io { .. } => ExitCode::IoErr,
        S::NotASpool { .. } | S::ConfigMissing { .. } | S::Keys { .. } | S::Sealing { .. } => {
            ExitCode::Config
        }
        S::DiskFull { .. } | S::Locked { .. } | S::Shared { .. } => ExitCode::TempFail,
        S::SharedSchema { .. } => ExitCode::Config,
        S::NotFound { .. } => ExitCode::NoInput,
        S::Exists { .. } => ExitCode::CantCreat,
        S::NoSuchGroup { .. } => ExitCode::Usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_temporary() {
        let e = crate::spool::Error::io(
            "write",
            std::path::Path::new("/x"),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(Error::from(e).code(), ExitCode::TempFail);
    }

    #[test]
    fn a_closed_stdout_is_told_apart_from_success() {
        let closed = Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(closed.is_closed_stdout());
        assert_eq!(closed.code(), ExitCode::Ok, "for a person's `| head`");
        let other = Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(!other.is_closed_stdout());
        assert_eq!(other.code(), ExitCode::IoErr);
    }

    #[test]
    fn an_mta_pipe_retries_whatever_failed() {
        let e = Error::Retry(Box::new(Error::usage("x")));
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (ExitCode::TempFail, "x")
        );
    }
}
