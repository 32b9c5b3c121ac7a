//! Why a route could not carry a file: one error for every route kind,
//! each variant naming the file, URL, relay or medium it concerns. Its
//! message is what the runner records as the file's outcome and logs, so
//! it says where and why in the operator's words.
//!
//! Invariant: [`Error::is_transient`] is the one place that decides
//! whether a failure defers a file (retry later) or refuses it for good.

use std::io;
use std::path::PathBuf;

use super::untrusted;

/// Why a route could not carry a file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spool file to send cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// A spool file to send does not hold an envelope.
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: crate::message::Error,
    },
    /// Protecting what is sent for the peer failed.
    #[error(transparent)]
    Protect(#[from] crate::protect::Error),
    /// A large body or reply cannot be staged in the spool's tmp/.
    #[error(transparent)]
    Stage(#[from] crate::spool::Error),
    /// Writing or reading back a staged body or reply at `path` failed.
    #[error("{source}")]
    Staging { path: PathBuf, source: io::Error },
    /// A staged reply cannot be opened again.
    #[error("{}: {source}", path.display())]
    Reopen { path: PathBuf, source: io::Error },
    /// The HTTP server at `url` could not be reached (no connection, TLS,
    /// a timeout).
    #[error("{url}: {source}")]
    Unreachable { url: String, source: ureq::Error },
    /// The HTTP server at `url` answered `status`, not a reply; `said` is
    /// the first line of what it said.
    #[error("{url} answered {status}: {said}")]
    Status {
        url: String,
        status: u16,
        said: String,
    },
    /// The reply from `url` broke off.
    #[error("{url}: reading the reply: {source}")]
    Reply { url: String, source: io::Error },
    /// The directory of a `dir:` route cannot be opened (the medium is
    /// not mounted, say).
    #[error(
        "cannot use {}: {source} (is the medium mounted? rs does not create the directory of a dir: route)",
        root.display()
    )]
    Medium { root: PathBuf, source: io::Error },
    /// A directory below the route's root was refused (a link, not a
    /// directory) or cannot be made.
    #[error(transparent)]
    Untrusted(#[from] untrusted::Refusal),
    /// Writing to the medium in `dir` failed; `space` says where and how
    /// much is free when it is full.
    #[error("{source}{space}")]
    Write {
        dir: PathBuf,
        source: io::Error,
        space: String,
    },
    /// The SMTP relay `host` refused the email for good (5xx).
    #[error("{host} answered: {source}")]
    Refused {
        host: String,
        source: lettre::transport::smtp::Error,
    },
    /// The SMTP relay `host:port` could not take the email now (4xx, a
    /// timeout, no connection): the link is down.
    #[error("{host}:{port}: {source}")]
    Relay {
        host: String,
        port: u16,
        source: lettre::transport::smtp::Error,
    },
}

impl Error {
    /// Whether the file may go again later (the link, the medium, the
    /// peer's answer for now); false only when the next hop refused it for
    /// good.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Error::Refused { .. })
    }

    /// The file's outcome: deferred or refused, with this error as the
    /// reason.
    pub fn outcome(&self) -> super::Outcome {
        if self.is_transient() {
            super::Outcome::Deferred(self.to_string())
        } else {
            super::Outcome::Refused(self.to_string())
        }
    }

    /// A write to the medium in `dir` failed: said with where and how much
    /// is free, when it is full.
    pub(super) fn write(dir: &std::path::Path, source: io::Error) -> Error {
        Error::Write {
            dir: dir.to_path_buf(),
            space: crate::spool::space_left(dir, &source),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Outcome;

    fn check(e: Error, expected: &str) {
        assert_eq!(e.to_string(), expected);
    }

    #[test]
    fn messages_name_the_file_the_url_or_the_medium() {
        let gone = || io::Error::from(io::ErrorKind::NotFound);
        check(
            Error::Read {
                path: "/spool/outbound/a.msg".into(),
                source: gone(),
            },
            "cannot read /spool/outbound/a.msg: entity not found",
        );
        check(
            Error::Status {
                url: "https://relay/rs".into(),
                status: 503,
                said: "busy".into(),
            },
            "https://relay/rs answered 503: busy",
        );
        check(
            Error::Reply {
                url: "https://relay/rs".into(),
                source: io::Error::other("reset"),
            },
            "https://relay/rs: reading the reply: reset",
        );
        check(
            Error::Reopen {
                path: "/spool/tmp/x".into(),
                source: gone(),
            },
            "/spool/tmp/x: entity not found",
        );
        check(
            Error::Staging {
                path: "/spool/tmp/x".into(),
                source: io::Error::other("disk full"),
            },
            "disk full",
        );
        check(
            Error::Medium {
                root: "/media/usb".into(),
                source: gone(),
            },
            "cannot use /media/usb: entity not found (is the medium mounted? rs does not create the directory of a dir: route)",
        );
        check(
            Error::write(
                "/nonexistent-medium".as_ref(),
                io::Error::other("bad sector"),
            ),
            "bad sector",
        );
        check(
            Error::Protect(crate::protect::Error::Keys("no key".into())),
            "no key",
        );
    }

    #[test]
    fn only_a_refusal_for_good_is_not_transient() {
        let e = Error::Status {
            url: "u".into(),
            status: 500,
            said: "x".into(),
        };
        assert!(e.is_transient());
        assert_eq!(e.outcome(), Outcome::Deferred("u answered 500: x".into()));
    }
}
