//! The spool: a directory tree anyone can inspect with `ls`, holding every
//! message the site is responsible for (SPEC.md section 4). See
//! `spool/README.md` for the layout and file formats.
//!
//! Architecture invariants:
//! - Every file enters an area by rename from `tmp/` after fsync, and the
//!   area's directory is fsynced before the operation reports success.
//! - Files move between areas by rename, keeping their name; nothing is
//!   deleted but by an acknowledgement or an operator's purge: what cannot be
//!   sent goes to `dead/`, what cannot be read goes to `quarantine/`, each
//!   with a `.reason` file beside it.
//! - Whole-spool decisions (admission, eviction, accounting) are made while
//!   holding the ledger's lock; no lock is held while a message body is
//!   written.

pub mod durable;
pub mod fault;
pub mod host;
pub mod lease;
pub mod maildir;
pub mod seen;
mod usage;

mod area;
mod create;
mod dead;
mod locked;
pub mod parts;
mod private;
mod quarantine;
mod reason;
mod recovery;

use std::fs;
use std::path::{Path, PathBuf};

use crate::config::{self, Config, Size};
use crate::queue::throttle::Sent;
use crate::time::Timestamp;

pub use crate::queue::entry::{self, EntryName, SentInfo};
pub use area::{Area, Entry};
pub use create::{default_component, has_config};
pub use dead::UNTOLD;
pub use durable::Staged;
pub use locked::{Admission, Locked};
pub use parts::Parts;
pub use private::{make_private, outside_mode};
pub use reason::{DeadKind, Quarantined, Reason};
pub use usage::Usage;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {op} {path}: {err}{}{}", space_left(.path, .err), crate::access::hint(.path, .err))]
    Io {
        op: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("{path} is not an rs spool (it has no config.toml): create one with `rs-queue init --spool {path}`, or choose another spool with --spool or RS_SPOOL")]
    NotASpool { path: PathBuf },
    #[error("{path} holds a spool but its config.toml is missing: restore it from backup, or write a new one with `rs-queue init --site SITE --component ID --spool {path}` (the spool's messages are kept)")]
    ConfigMissing { path: PathBuf },
    #[error("{path} holds a spool already (its config.toml exists)")]
    Exists { path: PathBuf },
    #[error("group {group} (for the spool {path}) does not exist: create it with `groupadd {group}`, or choose another with --group")]
    NoSuchGroup { group: String, path: PathBuf },
    #[error("the spool's file system has {free} free, below the {min} kept free ([spool] min_free in {config}): free some space, or lower min_free")]
    DiskFull {
        free: Size,
        min: Size,
        config: PathBuf,
    },
    #[error("keys for peer {peer}: {reason}")]
    Keys { peer: String, reason: String },
    /// Bulk data cannot be sealed as `[bulk] encrypt_to` says.
    #[error("{reason}")]
    Sealing { reason: String },
    #[error("no message {id} in the outbound areas of {spool} (see `rs-queue list`; dead messages are listed by `rs-queue list --area dead`)")]
    NotFound { id: String, spool: PathBuf },
    /// The shared state (PostgreSQL, JetStream) cannot be used now.
    #[error("shared state: {reason}")]
    Shared { reason: String },
    /// The shared database is not set up for this version of rs.
    #[error("shared state: {reason}")]
    SharedSchema { reason: String },
    #[error("the spool lock {path} was held by another run for longer than {waited} ([spool] lock_wait): a stopped or hung rs process holds it (find it with `fuser {path}`); try again later")]
    Locked { path: PathBuf, waited: String },
}

impl Error {
    pub fn io(op: &'static str, path: &Path, err: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.to_path_buf(),
            err,
        }
    }

    /// What a peer may be told of this error (an HTTP reply): what kind of
    /// trouble, never a path, a setting's file or a key's reason, which
    /// are the operator's (the log has them).
    pub fn for_peer(&self) -> &'static str {
        match self {
            Error::Io { err, .. }
                if matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) =>
            {
                "the server's disk is full"
            }
            Error::DiskFull { .. } => "the server's disk is nearly full",
            Error::Io { .. } => "the server could not read or write its spool",
            Error::Locked { .. } => "the server's spool is busy",
            Error::Shared { .. } | Error::SharedSchema { .. } => {
                "the server's shared state cannot be used"
            }
            Error::Config(_)
            | Error::NotASpool { .. }
            | Error::ConfigMissing { .. }
            | Error::Exists { .. }
            | Error::NoSuchGroup { .. }
            | Error::Keys { .. }
            | Error::Sealing { .. } => "the server's configuration is in error",
            Error::NotFound { .. } => "a message the server holds was not found",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// For a write that found the disk full: where, and how much is free
/// there now, with the remedy. Empty for any other error.
pub fn space_left(path: &Path, err: &std::io::Error) -> String {
    if !matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
        return String::new();
    }
    let Some(dir) = path.ancestors().find(|d| d.is_dir()) else {
        return String::new();
    };
    let free = fs2::available_space(dir).map_or_else(|_| "unknown".into(), |b| Size(b).to_string());
    format!(
        " ({} has {free} free: make room there and run the command again; nothing that was not stored was acknowledged)",
        dir.display()
    )
}

pub struct Spool {
    root: PathBuf,
    config: Config,
    /// What the opener installed for the layers above (see `parts`).
    parts: Parts,
}

impl Spool {
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Installs `part` for the layers above to find (see [`Parts`]).
    pub fn install<T: std::any::Any + Send + Sync>(&mut self, part: T) {
        self.parts.install(part);
    }

    /// The spool opened again (its configuration read again, as another
    /// run may have changed it), with the same parts installed.
    pub fn reopen(&self) -> Result<Spool> {
        let mut fresh = Spool::open(&self.root)?;
        fresh.parts = self.parts.clone();
        Ok(fresh)
    }

    /// The part of type `T` the opener installed, if any.
    pub fn part<T: std::any::Any + Send + Sync>(&self) -> Option<&T> {
        self.parts.get::<T>()
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(config::FILE_NAME)
    }

    pub fn dir(&self, area: Area) -> PathBuf {
        self.root.join(area.dir_name())
    }

    pub fn entry_path(&self, entry: &Entry) -> PathBuf {
        self.dir(entry.area).join(entry.file_name())
    }

    /// Refuses a new message of about `size` bytes when it would leave less
    /// free space than `[spool] min_free`.
    pub fn check_free_space(&self, size: u64) -> Result<()> {
        let min = self.config.spool.min_free;
        let free = fs2::available_space(&self.root)
            .map_err(|e| Error::io("query free space of", &self.root, e))?;
        if free < min.0.saturating_add(size) {
            return Err(Error::DiskFull {
                free: Size(free),
                min,
                config: self.config_path(),
            });
        }
        Ok(())
    }

    /// Bytes free for rs on the spool's file system, less `[spool] min_free`.
    pub fn room(&self) -> Result<u64> {
        let free = fs2::available_space(&self.root)
            .map_err(|e| Error::io("query free space of", &self.root, e))?;
        Ok(free.saturating_sub(self.config.spool.min_free.0))
    }

    // ------------------------------------------------------------ reading

    /// A new file in `tmp/` for a message being written.
    pub fn stage(&self, now: Timestamp) -> Result<Staged> {
        Staged::create(&self.dir(Area::Tmp), now.as_micros())
    }

    pub fn is_held(&self) -> bool {
        self.dir(Area::State).join("hold").exists()
    }

    /// What the throttle has counted as sent in the current periods.
    pub fn throttle_sent(&self) -> Sent {
        fs::read_to_string(self.dir(Area::State).join("throttle.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_path_and_the_remedy() {
        let e = Error::NotASpool {
            path: "/var/spool/rs".into(),
        };
        assert_eq!(
            e.to_string(),
            "/var/spool/rs is not an rs spool (it has no config.toml): create one with `rs-queue init --spool /var/spool/rs`, or choose another spool with --spool or RS_SPOOL"
        );
        let e = Error::io(
            "write",
            Path::new("/nonexistent/x"),
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(
            e.to_string(),
            "cannot write /nonexistent/x: Permission denied (os error 13)"
        );
        let e = Error::io(
            "write",
            Path::new("/nonexistent/x"),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("cannot write /nonexistent/x: No space left on device (os error 28) (/ has ")
                && text.ends_with(
                    " free: make room there and run the command again; nothing that was not stored was acknowledged)"
                ),
            "{text}"
        );
        let e = Error::Locked {
            path: "/s/lock".into(),
            waited: "30s".into(),
        };
        assert_eq!(
            e.to_string(),
            "the spool lock /s/lock was held by another run for longer than 30s ([spool] lock_wait): a stopped or hung rs process holds it (find it with `fuser /s/lock`); try again later"
        );
        let e = Error::NotFound {
            id: "m1".into(),
            spool: "/s".into(),
        };
        assert!(e
            .to_string()
            .starts_with("no message m1 in the outbound areas of /s (see `rs-queue list`"));
    }
}
