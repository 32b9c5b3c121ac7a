//! The one place errors become exit statuses (`sysexits.h`).

use std::fmt;

/// Exit statuses from `sysexits.h`, so MTAs, cron and scripts can tell a
/// temporary failure (try again) from a permanent one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    Ok = 0,
    /// A message or argument was not as documented.
    Usage = 64,
    /// The input data was incorrect (a message that cannot be admitted as given).
    DataErr = 65,
    /// An input file or message did not exist or was not readable.
    NoInput = 66,
    /// A needed service (peer, route) is unavailable.
    Unavailable = 69,
    /// An internal error: a bug in rs.
    Software = 70,
    /// A file could not be created.
    CantCreat = 73,
    /// A read or write failed.
    IoErr = 74,
    /// Try again later: the queue is full, the disk nearly full, the link down.
    TempFail = 75,
    /// A remote system answered against the protocol.
    Protocol = 76,
    /// The configuration is wrong.
    Config = 78,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// For batch commands: the status to exit with after several items;
    /// the most severe (highest) wins, except that success never hides a failure.
    pub fn merge(self, other: ExitCode) -> ExitCode {
        self.max(other)
    }
}

/// An error as a command reports it: what went wrong (naming the file or
/// message), and the exit status.
#[derive(Debug)]
pub struct Error {
    pub code: ExitCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(ExitCode::Usage, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<crate::spool::Error> for Error {
    fn from(e: crate::spool::Error) -> Error {
        use crate::spool::Error as E;
        let code = match &e {
            E::Io { err, .. } if err.raw_os_error() == Some(libc::ENOSPC) => ExitCode::TempFail,
            E::Io { op, .. } if op.starts_with("create") => ExitCode::CantCreat,
            E::Io { .. } => ExitCode::IoErr,
            E::Config(_) => ExitCode::Config,
            E::NotASpool { .. } | E::ConfigMissing { .. } => ExitCode::Config,
            E::DiskFull { .. } => ExitCode::TempFail,
            E::NotFound { .. } => ExitCode::NoInput,
            E::Keys { .. } => ExitCode::Config,
        };
        Error::new(code, e.to_string())
    }
}

impl From<crate::config::Error> for Error {
    fn from(e: crate::config::Error) -> Error {
        Error::new(ExitCode::Config, e.to_string())
    }
}

impl From<crate::time::Error> for Error {
    fn from(e: crate::time::Error) -> Error {
        Error::usage(e.to_string())
    }
}

impl From<crate::message::Error> for Error {
    fn from(e: crate::message::Error) -> Error {
        Error::new(ExitCode::DataErr, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_the_most_severe() {
        assert_eq!(ExitCode::Ok.merge(ExitCode::TempFail), ExitCode::TempFail);
        assert_eq!(ExitCode::TempFail.merge(ExitCode::Ok), ExitCode::TempFail);
        assert_eq!(ExitCode::DataErr.merge(ExitCode::IoErr), ExitCode::IoErr);
    }

    #[test]
    fn disk_full_is_temporary() {
        let e = crate::spool::Error::io(
            "write",
            std::path::Path::new("/x"),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(Error::from(e).code, ExitCode::TempFail);
    }
}
