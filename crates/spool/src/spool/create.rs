//! Creating and opening a spool. A spool exists whole or not at all: its
//! `config.toml` is written (under a lock on the spool's directory, so one
//! of many runs creates it and the others open it) before any area but
//! `tmp/`, and areas found missing are made again when it is opened.
//! Anything already named `config.toml`, or areas without one, is the
//! operator's to repair: never replaced by a default.

use std::fs;
use std::path::Path;

use super::{durable, make_private, Area, Error, Parts, Result, Spool};
use crate::config::{self, Config};
use crate::message::Name;
use crate::time::Timestamp;

impl Spool {
    /// Opens an existing spool.
    pub fn open(root: &Path) -> Result<Spool> {
        if fs::symlink_metadata(root.join(config::FILE_NAME)).is_err() {
            return Err(if holds_a_spool(root) {
                Error::ConfigMissing {
                    path: root.to_path_buf(),
                }
            } else {
                Error::NotASpool {
                    path: root.to_path_buf(),
                }
            });
        }
        let config = Config::load(root)?;
        make_private(config.spool.group.is_some());
        let spool = Spool {
            root: root.to_path_buf(),
            config,
            parts: Parts::default(),
        };
        // The newest area exists only if every area does (they are made
        // together): one stat on the common path instead of one per area.
        if !spool.dir(Area::Aggregate).is_dir() {
            spool.ensure_dirs()?;
        }
        Ok(spool)
    }

    /// Opens the spool, creating it with default settings if `root` holds no
    /// spool yet. Returns whether this run created it (of many runs that
    /// start at once on a new spool, one creates it and all open it).
    pub fn open_or_create(root: &Path, now: Timestamp) -> Result<(Spool, bool)> {
        // Anything named config.toml (a dangling link, a directory) or a
        // spool's areas without one is the operator's to repair: never
        // replaced by a default.
        if fs::symlink_metadata(root.join(config::FILE_NAME)).is_ok() || holds_a_spool(root) {
            return Ok((Spool::open(root)?, false));
        }
        let site = Name::new("site", "local").map_err(|_| unreachable_name())?;
        let component = default_component(&site);
        match Spool::create(root, &site, &component, None, now) {
            Ok(spool) => Ok((spool, true)),
            // Another run created it first.
            Err(Error::Exists { .. }) => Ok((Spool::open(root)?, false)),
            Err(e) => Err(e),
        }
    }

    /// Creates a spool at `root` (which may exist, but must not yet hold a
    /// configuration) for the given site and component, private to its
    /// owner (or readable by `group`: see [`make_private`]). All or
    /// nothing: its configuration is written (atomically, under a lock on
    /// `root`) before any area, and an area found missing is made again
    /// when the spool is opened, so a run killed at any moment leaves no
    /// areas without a configuration. [`Error::Exists`] when another run
    /// created it first.
    pub fn create(
        root: &Path,
        site: &Name,
        component: &Name,
        group: Option<&str>,
        now: Timestamp,
    ) -> Result<Spool> {
        let gid = match group {
            Some(g) => Some(group_id(g).ok_or_else(|| Error::NoSuchGroup {
                group: g.to_string(),
                path: root.to_path_buf(),
            })?),
            None => None,
        };
        make_private(gid.is_some());
        let made_root = !root.is_dir();
        durable::create_dir_all(root)?;
        if made_root {
            let mode = if gid.is_some() { 0o2750 } else { 0o700 };
            if let Some(gid) = gid {
                std::os::unix::fs::chown(root, None, Some(gid))
                    .map_err(|e| Error::io("give the group of", root, e))?;
            }
            fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(|e| Error::io("set the mode of", root, e))?;
        }
        let lock_file = fs::File::open(root).map_err(|e| Error::io("open", root, e))?;
        fs2::FileExt::lock_exclusive(&lock_file).map_err(|e| Error::io("lock", root, e))?;
        if fs::symlink_metadata(root.join(config::FILE_NAME)).is_ok() {
            return Err(Error::Exists {
                path: root.to_path_buf(),
            });
        }
        let mut text = Config::default_text(site, component);
        if let Some(g) = group {
            text = config::edit(&text, "spool", "group", Some(g.into())).map_err(|message| {
                config::Error::Parse {
                    path: root.join(config::FILE_NAME),
                    message: message.to_string(),
                }
            })?;
        }
        let probe = Spool {
            root: root.to_path_buf(),
            config: Config::parse(&text).map_err(|message| config::Error::Parse {
                path: root.join(config::FILE_NAME),
                message: message.to_string(),
            })?,
            parts: Parts::default(),
        };
        // tmp/ first (no sign of a spool: see `holds_a_spool`), for the
        // configuration's durable write; then everything else.
        durable::create_dir_all(&probe.dir(Area::Tmp))?;
        durable::write_durable(
            &probe.dir(Area::Tmp),
            root,
            config::FILE_NAME,
            text.as_bytes(),
            now.as_micros(),
        )?;
        probe.ensure_dirs()?;
        drop(lock_file);
        Spool::open(root)
    }

    /// Creates any missing area (an operator may have removed one, a run
    /// creating the spool may have been killed), `aggregate/` last: the
    /// sign, for [`Spool::open`], that every area exists.
    pub fn ensure_dirs(&self) -> Result<()> {
        for sub in ["tmp", "new", "cur"] {
            durable::create_dir_all(&self.dir(Area::Received).join(sub))?;
        }
        for area in Area::ALL {
            durable::create_dir_all(&self.dir(area))?;
        }
        Ok(())
    }
}

/// Whether `root` holds a spool's areas (with or without its configuration).
fn holds_a_spool(root: &Path) -> bool {
    [Area::State, Area::Sent, Area::Received]
        .iter()
        .any(|a| root.join(a.dir_name()).is_dir())
}

/// Whether anything (a dangling link included) is named config.toml in `root`.
pub fn has_config(root: &Path) -> bool {
    fs::symlink_metadata(root.join(config::FILE_NAME)).is_ok()
}

fn unreachable_name() -> Error {
    Error::io(
        "name",
        Path::new("site"),
        std::io::Error::other("invalid built-in name"),
    )
}

/// The ID of group `name`, if there is one.
fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam takes a NUL-terminated string and returns a
    // pointer to static storage or null; the gid is copied out at once.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    // SAFETY: non-null pointers from getgrnam point to a valid group.
    (!g.is_null()).then(|| unsafe { (*g).gr_gid })
}

/// The component ID a spool created without one gets: `SITE.HOSTNAME`,
/// the host name reduced to what a component ID may hold (letters, digits,
/// `-`; at most 64 characters). The one rule, for `rs-queue init` and
/// first use alike.
pub fn default_component(site: &Name) -> Name {
    let host = super::host::name().unwrap_or_default();
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let host = host.trim_matches('-');
    let host = if host.is_empty() { "host" } else { host };
    Name::new("component", format!("{site}.{host}")).unwrap_or_else(|_| site.clone())
}
