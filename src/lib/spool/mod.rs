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
pub mod lease;
pub mod maildir;
pub mod seen;
mod usage;

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{self, Config, Size};
use crate::message::{Name, Precedence};
use crate::queue::evict::{self, Plan};
use crate::queue::throttle::Sent;
use crate::time::Timestamp;

pub use crate::queue::entry::{self, EntryName, SentInfo};
pub use durable::Staged;
pub use usage::Usage;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {op} {path}: {err}{}", space_left(.path, .err))]
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

/// An area of the spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Area {
    Tmp,
    Queue(Precedence),
    Hold,
    Sent,
    Received,
    /// Acknowledgements owed, per peer (`acks/pending/PEER`, one line each).
    AcksPending,
    /// Acknowledgement envelopes ready to go, per peer (`acks/out/PEER/`).
    AcksOut,
    /// What acknowledgements said of this site's messages, per day.
    Journal,
    Leases,
    Dead,
    Quarantine,
    State,
    /// Messages a rule diverted to a handler, held until it consumes them
    /// (`divert/ID.msg` and `divert/ID.state`).
    Divert,
    /// Messages a rule gathers into aggregates, per rule and class
    /// (`aggregate/RULE/CLASS.SUBCLASS/ARRIVAL.ID.msg`).
    Aggregate,
}

impl Area {
    /// The areas holding messages this site must still deliver.
    pub const OUTBOUND: [Area; 5] = [
        Area::Queue(Precedence::Urgent),
        Area::Queue(Precedence::Normal),
        Area::Queue(Precedence::Bulk),
        Area::Hold,
        Area::Sent,
    ];

    const ALL: [Area; 16] = [
        Area::Tmp,
        Area::Queue(Precedence::Urgent),
        Area::Queue(Precedence::Normal),
        Area::Queue(Precedence::Bulk),
        Area::Hold,
        Area::Sent,
        Area::Received,
        Area::AcksPending,
        Area::AcksOut,
        Area::Journal,
        Area::Leases,
        Area::Dead,
        Area::Quarantine,
        Area::State,
        Area::Divert,
        Area::Aggregate,
    ];

    pub fn dir_name(self) -> &'static str {
        match self {
            Area::Tmp => "tmp",
            Area::Queue(Precedence::Urgent) => "queue/urgent",
            Area::Queue(Precedence::Normal) => "queue/normal",
            Area::Queue(Precedence::Bulk) => "queue/bulk",
            Area::Hold => "hold",
            Area::Sent => "sent",
            Area::Received => "received",
            Area::AcksPending => "acks/pending",
            Area::AcksOut => "acks/out",
            Area::Journal => "acks/journal",
            Area::Leases => "leases",
            Area::Dead => "dead",
            Area::Quarantine => "quarantine",
            Area::State => "state",
            Area::Divert => "divert",
            Area::Aggregate => "aggregate",
        }
    }

    /// The word used for this area in listings and JSON.
    pub fn state_word(self) -> &'static str {
        match self {
            Area::Queue(_) => "queued",
            Area::Hold => "held",
            Area::Sent => "sent",
            Area::Dead => "dead",
            Area::Quarantine => "quarantined",
            Area::Received => "received",
            Area::AcksPending | Area::AcksOut => "ack",
            Area::Divert => "diverted",
            Area::Aggregate => "aggregating",
            Area::Tmp | Area::State | Area::Journal | Area::Leases => "internal",
        }
    }
}

/// An outbound message: where it is and what its name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub area: Area,
    pub name: EntryName,
    /// Set for messages in sent/.
    pub sent: Option<SentInfo>,
}

impl Entry {
    pub fn file_name(&self) -> String {
        match &self.sent {
            Some(info) => entry::sent_file_name(&self.name, info),
            None => self.name.to_string(),
        }
    }
}

/// Why a message went to `dead/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadKind {
    Expired,
    Evicted,
    Rejected,
    Deleted,
    /// Not taken by the peer it waits for within that peer's hold time.
    Unclaimed,
    /// Refused for good by the route to the next hop (not by a message
    /// response, whose sender tells the origin itself).
    Refused,
}

impl DeadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadKind::Expired => "expired",
            DeadKind::Evicted => "evicted",
            DeadKind::Rejected => "rejected",
            DeadKind::Deleted => "deleted",
            DeadKind::Unclaimed => "unclaimed",
            DeadKind::Refused => "refused",
        }
    }

    /// Whether the origin of a message buried so is owed a notice from
    /// here. A rejection is not: whoever rejected it tells the origin.
    pub fn tells_origin(self) -> bool {
        self != DeadKind::Rejected
    }
}

/// `state/untold/`: one empty file per message buried in `dead/` (named as
/// it is there) whose origin is still to be told; see [`Locked::bury`].
pub const UNTOLD: &str = "untold";

/// Why something is in `quarantine/`: the `reason:` of its `.reason` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quarantined {
    /// It cannot be read (not an envelope, damaged, too deep, ...).
    Unreadable,
    /// It fails its peer's protection (not decrypted, unsigned, signed by
    /// another key, ...).
    Unverified,
    /// Its peer speaks for a component it may not.
    Forged,
    /// It did not come from whom it may (SPEC.md section 13a): a control
    /// message not made by the registrar, a notice from off the message's
    /// path.
    Refused,
}

impl Quarantined {
    pub fn as_str(self) -> &'static str {
        match self {
            Quarantined::Unreadable => "unreadable",
            Quarantined::Unverified => "unverified",
            Quarantined::Forged => "forged",
            Quarantined::Refused => "refused",
        }
    }
}

/// A `.reason` file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    pub id: String,
    pub time: Timestamp,
    pub kind: String,
    pub from: String,
    pub detail: String,
}

impl Reason {
    fn to_text(&self) -> String {
        format!(
            "id: {}\ntime: {}\nreason: {}\nfrom: {}\ndetail: {}\n",
            self.id,
            self.time,
            self.kind,
            self.from,
            self.detail.replace('\n', " ")
        )
    }

    pub fn parse(text: &str) -> Reason {
        let mut r = Reason {
            id: String::new(),
            time: Timestamp::EPOCH,
            kind: String::new(),
            from: String::new(),
            detail: String::new(),
        };
        for line in text.lines() {
            let Some((k, v)) = line.split_once(": ") else {
                continue;
            };
            match k {
                "id" => r.id = v.to_string(),
                "time" => r.time = Timestamp::parse(v).unwrap_or_default(),
                "reason" => r.kind = v.to_string(),
                "from" => r.from = v.to_string(),
                "detail" => r.detail = v.to_string(),
                _ => {}
            }
        }
        r
    }
}

/// The outcome of offering a new message to the queue.
#[derive(Debug)]
pub enum Admission {
    Queued {
        entry: Entry,
        evicted: Vec<(EntryName, String)>,
    },
    /// The message is in `dead/` with `detail` as its reason.
    Rejected {
        name: EntryName,
        detail: String,
        evicted: Vec<(EntryName, String)>,
    },
}

pub struct Spool {
    root: PathBuf,
    config: Config,
}

/// Age below which a `tmp/` file is never taken for a crashed writer's,
/// whatever its lock says (a writer creates its file, then locks it).
const TMP_MIN_AGE_SECS: i64 = 60;

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
                    message,
                }
            })?;
        }
        let probe = Spool {
            root: root.to_path_buf(),
            config: Config::parse(&text).map_err(|message| config::Error::Parse {
                path: root.join(config::FILE_NAME),
                message,
            })?,
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

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &Config {
        &self.config
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

    // ------------------------------------------------------------ recovery

    /// Removes files left in `tmp/` by writers that died. Writers lock their
    /// files: a file is taken for a dead writer's when it is unlocked and
    /// older than a minute, or older than `[spool] tmp_max_age` whatever its
    /// lock. Returns how many were removed.
    pub fn clean_tmp(&self, now: Timestamp) -> Result<usize> {
        let max_age = i64::try_from(self.config.spool.tmp_max_age.as_secs()).unwrap_or(i64::MAX);
        clean_leftovers(
            &self.dir(Area::Tmp),
            now,
            Leftover::UnlockedOrOlderThan(max_age),
        )
    }

    /// Removes files left in `received/tmp/` by Maildir deliveries that died
    /// (older than `[spool] tmp_max_age`). Returns how many were removed.
    pub fn clean_maildir_tmp(&self, now: Timestamp) -> Result<usize> {
        let max_age = i64::try_from(self.config.spool.tmp_max_age.as_secs()).unwrap_or(i64::MAX);
        clean_leftovers(
            &self.dir(Area::Received).join("tmp"),
            now,
            Leftover::OlderThan(max_age),
        )
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

    /// Moves an unreadable file into `quarantine/` with a `.reason` file.
    /// Returns the quarantined file's path.
    pub fn quarantine(
        &self,
        path: &Path,
        from: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        self.quarantine_as(Quarantined::Unreadable, path, from, detail, now)
    }

    /// Moves a file into `quarantine/` with a `.reason` file saying why
    /// (`kind`, and `detail`). Returns the quarantined file's path.
    pub fn quarantine_as(
        &self,
        kind: Quarantined,
        path: &Path,
        from: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().replace(['/', ':'], "_"))
            .unwrap_or_default();
        let qdir = self.dir(Area::Quarantine);
        // Never overwrite an earlier quarantined file.
        let mut name = format!("{}.{}.{}", now.as_micros(), std::process::id(), base);
        let mut n = 1;
        while qdir.join(&name).exists() {
            name = format!("{}.{}.{}.{n}", now.as_micros(), std::process::id(), base);
            n += 1;
        }
        let reason = Reason {
            id: String::new(),
            time: now,
            kind: kind.as_str().into(),
            from: from.into(),
            detail: detail.into(),
        };
        durable::write_durable(
            &self.dir(Area::Tmp),
            &qdir,
            &format!("{name}.reason"),
            reason.to_text().as_bytes(),
            now.as_micros(),
        )?;
        let dest = qdir.join(&name);
        durable::rename(path, &dest)?;
        durable::fsync_dir(&qdir)?;
        Ok(dest)
    }

    /// Stores `bytes` in `quarantine/` with a `.reason` file (for input that
    /// never had a file of its own, such as a message on stdin).
    pub fn quarantine_bytes(
        &self,
        kind: Quarantined,
        bytes: &[u8],
        label: &str,
        from: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        self.quarantine_with(kind, |out| out.write_all(bytes), label, from, detail, now)
    }

    /// Like [`Spool::quarantine_bytes`], for what `write` writes.
    pub fn quarantine_with(
        &self,
        kind: Quarantined,
        write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
        label: &str,
        from: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        let mut staged = self.stage(now)?;
        write(&mut staged).map_err(|e| Error::io("write", staged.path(), e))?;
        staged.sync()?;
        let mut tmp_name = staged.path().as_os_str().to_os_string();
        tmp_name.push(format!(".{label}"));
        let tmp_path = PathBuf::from(tmp_name);
        staged.commit(&tmp_path)?;
        self.quarantine_as(kind, &tmp_path, from, detail, now)
    }

    /// Copies an open file (from its start; the file stays where it is)
    /// into `quarantine/` with a `.reason` file. `label` names where it came
    /// from; its last path component names the copy.
    pub fn quarantine_file(
        &self,
        kind: Quarantined,
        file: &fs::File,
        label: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        let staged = self.stage(now)?;
        let base = Path::new(label)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut tmp_name = staged.path().as_os_str().to_os_string();
        tmp_name.push(format!(".{base}"));
        let tmp_path = PathBuf::from(tmp_name);
        let copy = || -> std::io::Result<()> {
            // Whatever it is, it may be secret: readable by the spool's owner only.
            let mut out = durable::open(
                std::os::unix::fs::OpenOptionsExt::mode(
                    fs::OpenOptions::new().write(true).create_new(true),
                    0o600,
                ),
                &tmp_path,
            )?;
            let mut input = std::io::BufReader::new(file);
            std::io::Seek::seek(&mut input, std::io::SeekFrom::Start(0))?;
            std::io::copy(&mut input, &mut out)?;
            durable::sync_all(&out, &tmp_path)
        };
        if let Err(e) = copy() {
            let _ = durable::remove_file(&tmp_path);
            return Err(Error::io("copy into quarantine", Path::new(label), e));
        }
        drop(staged);
        self.quarantine_as(kind, &tmp_path, label, detail, now)
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

    /// Lists the entries of one area holding message files (outbound areas
    /// and dead/). Names that are not entry names (`.reason` files aside) are
    /// returned separately.
    pub fn scan(&self, area: Area) -> Result<(Vec<Entry>, Vec<String>)> {
        let dir = self.dir(area);
        let mut entries = Vec::new();
        let mut foreign = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))? {
            let e = e.map_err(|e| Error::io("read", &dir, e))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let parsed = if area == Area::Sent {
                entry::parse_sent(&name).map(|(name, info)| Entry {
                    area,
                    name,
                    sent: Some(info),
                })
            } else {
                EntryName::parse(&name).map(|name| Entry {
                    area,
                    name,
                    sent: None,
                })
            };
            match parsed {
                Some(entry) => entries.push(entry),
                None if area == Area::Dead && name.ends_with(".reason") => {}
                None => foreign.push(name.into_owned()),
            }
        }
        Ok((entries, foreign))
    }

    /// Every outbound entry (queued, held, sent), in no particular order.
    /// Foreign files in outbound areas are quarantined.
    pub fn scan_outbound(&self, now: Timestamp) -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        for area in Area::OUTBOUND {
            let (entries, foreign) = self.scan(area)?;
            all.extend(entries);
            for f in foreign {
                let path = self.dir(area).join(&f);
                let detail = format!("`{f}` in {} is not a message file name", area.dir_name());
                // A file that vanished meanwhile needs no quarantine.
                if path.exists() {
                    self.quarantine(&path, area.dir_name(), &detail, now)?;
                }
            }
        }
        Ok(all)
    }

    /// Finds an outbound entry by message ID.
    pub fn find(&self, id: &str) -> Result<Entry> {
        for area in Area::OUTBOUND {
            let (entries, _) = self.scan(area)?;
            if let Some(e) = entries.into_iter().find(|e| e.name.id.as_str() == id) {
                return Ok(e);
            }
        }
        Err(Error::NotFound {
            id: id.to_string(),
            spool: self.root.clone(),
        })
    }

    /// The dead messages and their reasons.
    pub fn scan_dead(&self) -> Result<Vec<(EntryName, Reason)>> {
        let dir = self.dir(Area::Dead);
        let (entries, _) = self.scan(Area::Dead)?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let text =
                    fs::read_to_string(dir.join(format!("{}.reason", e.name))).unwrap_or_default();
                (e.name, Reason::parse(&text))
            })
            .collect())
    }

    /// Quarantined files (name, size) and their reasons.
    pub fn scan_quarantine(&self) -> Result<Vec<(String, u64, Reason)>> {
        let dir = self.dir(Area::Quarantine);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir)
            .map_err(|e| Error::io("read", &dir, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".reason") {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let text = fs::read_to_string(dir.join(format!("{name}.reason"))).unwrap_or_default();
            out.push((name, size, Reason::parse(&text)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Count and bytes of the files in an area (bytes from names where names
    /// carry sizes, else from metadata).
    pub fn area_totals(&self, area: Area) -> Result<(u64, u64)> {
        let dir = self.dir(area);
        let mut count = 0;
        let mut bytes = 0;
        let dirs: Vec<PathBuf> = if area == Area::Received {
            vec![dir.join("new"), dir.join("cur")]
        } else {
            vec![dir]
        };
        for d in dirs {
            for entry in fs::read_dir(&d)
                .map_err(|e| Error::io("read", &d, e))?
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".reason") {
                    continue;
                }
                count += 1;
                bytes += match EntryName::parse(&name) {
                    Some(n) => n.size,
                    None => entry.metadata().map(|m| m.len()).unwrap_or(0),
                };
            }
        }
        Ok((count, bytes))
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

    /// Takes the spool lock, rebuilding the ledger if it is stale.
    pub fn lock(&self, now: Timestamp) -> Result<Locked<'_>> {
        let path = self.dir(Area::State).join("usage");
        let (ledger, usage) = usage::Ledger::lock(&path, self.config.spool.lock_wait)?;
        let mut locked = Locked {
            spool: self,
            ledger,
            usage: usage.unwrap_or_default(),
        };
        if usage.is_none() {
            locked.rebuild(now)?;
        }
        Ok(locked)
    }
}

/// How to tell a dead writer's file from a live one's.
#[derive(Clone, Copy)]
enum Leftover {
    /// Writers hold a lock on their file: unlocked (and a minute old), or
    /// older than this many seconds.
    UnlockedOrOlderThan(i64),
    /// Older than this many seconds.
    OlderThan(i64),
}

fn clean_leftovers(dir: &Path, now: Timestamp, rule: Leftover) -> Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("read", dir, e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let age = now.as_secs() - mtime;
        let abandoned = match rule {
            Leftover::OlderThan(max) => age > max,
            Leftover::UnlockedOrOlderThan(max) => {
                age >= TMP_MIN_AGE_SECS
                    && (age > max
                        || fs::File::open(&path)
                            .map(|f| fs2::FileExt::try_lock_exclusive(&f).is_ok())
                            .unwrap_or(false))
            }
        };
        if abandoned && durable::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
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

/// The umask rs was started with, before a spool made what it creates
/// private (`u32::MAX`: none yet).
static STARTING_UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// Makes everything this process creates from now on private to the
/// spool's owner (umask 0077), or readable by the spool's group too
/// (0027), whatever umask it was started with (which [`outside_mode`]
/// keeps for what rs writes outside the spool).
pub fn make_private(group: bool) {
    let mask: libc::mode_t = if group { 0o027 } else { 0o077 };
    // SAFETY: umask only sets this process's file mode creation mask.
    let old = unsafe { libc::umask(mask) };
    let _ = STARTING_UMASK.compare_exchange(
        u32::MAX,
        old,
        std::sync::atomic::Ordering::SeqCst,
        std::sync::atomic::Ordering::SeqCst,
    );
}

/// `mode` less the umask rs was started with: for what it creates outside
/// the spool (a medium, read elsewhere by other users), where the
/// operator's umask rules, not the spool's privacy.
pub fn outside_mode(mode: u32) -> u32 {
    match STARTING_UMASK.load(std::sync::atomic::Ordering::SeqCst) {
        u32::MAX => {
            // Not changed yet: the current umask is the starting one.
            // SAFETY: umask only sets this process's file mode creation mask.
            let m = unsafe { libc::umask(0o022) };
            // SAFETY: as above, putting it back.
            unsafe { libc::umask(m) };
            mode & !m
        }
        m => mode & !m,
    }
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
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
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

/// The spool lock, held: whole-spool decisions happen through this.
pub struct Locked<'s> {
    spool: &'s Spool,
    ledger: usage::Ledger,
    usage: Usage,
}

impl Locked<'_> {
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    fn rebuild(&mut self, now: Timestamp) -> Result<()> {
        let mut u = Usage {
            last_arrival: self.usage.last_arrival,
            ..Usage::default()
        };
        for e in self.spool.scan_outbound(now)? {
            u.add(&e.name);
        }
        // Dead entries keep their arrival stamps: never reuse one.
        let (dead, _) = self.spool.scan(Area::Dead)?;
        u.last_arrival = dead
            .iter()
            .map(|e| e.name.arrival)
            .fold(u.last_arrival, u64::max);
        self.usage = u;
        self.ledger.save(&self.usage)
    }

    /// The next arrival stamp: the clock in microseconds, but strictly after
    /// every stamp given before, so arrival order survives equal (or pinned,
    /// or stepped-back) clocks.
    pub fn next_arrival(&mut self, now: Timestamp) -> u64 {
        let t = u64::try_from(now.as_micros()).unwrap_or(0);
        let next = t.max(self.usage.last_arrival + 1);
        self.usage.last_arrival = next;
        next
    }

    /// Offers a staged, synced message to the queue. Applies the admission
    /// plan: discards what it names (to `dead/`, with reasons), then renames
    /// the message into its queue, or into `dead/` if it is rejected.
    /// Returns after the affected directories are fsynced.
    pub fn admit(&mut self, staged: Staged, name: EntryName, now: Timestamp) -> Result<Admission> {
        let mut out = self.admit_many(vec![(staged, name)], now)?;
        Ok(out.remove(0))
    }

    /// [`Locked::admit`] for a batch, in order, with one fsync per directory.
    pub fn admit_many(
        &mut self,
        items: Vec<(Staged, EntryName)>,
        now: Timestamp,
    ) -> Result<Vec<Admission>> {
        self.ledger.mark_dirty(&self.usage)?;
        let mut touched: HashSet<PathBuf> = HashSet::new();
        let mut out = Vec::with_capacity(items.len());
        for (staged, name) in items {
            out.push(self.admit_one(staged, name, now, &mut touched)?);
        }
        self.ledger.save(&self.usage)?;
        for dir in touched {
            durable::fsync_dir(&dir)?;
        }
        Ok(out)
    }

    fn admit_one(
        &mut self,
        staged: Staged,
        mut name: EntryName,
        now: Timestamp,
        touched: &mut HashSet<PathBuf>,
    ) -> Result<Admission> {
        name.arrival = self.next_arrival(now);
        let limits = &self.spool.config.queue;
        let (count, bytes) = self.usage.total();
        let (pcount, pbytes) = self.usage.of(name.precedence);
        let fast = limits.total().admits(count + 1, bytes + name.size)
            && limits
                .for_precedence(name.precedence)
                .admits(pcount + 1, pbytes + name.size);
        let (plan, entries) = if fast {
            (Plan::Admit { evict: Vec::new() }, Vec::new())
        } else {
            let entries = self.spool.scan_outbound(now)?;
            let names: Vec<EntryName> = entries.iter().map(|e| e.name.clone()).collect();
            (evict::plan(&names, &name, limits, now), entries)
        };
        let (evictions, rejection) = match plan {
            Plan::Admit { evict } => (evict, None),
            Plan::Reject { evict, rejection } => (evict, Some(rejection)),
        };
        let mut evicted = Vec::new();
        for ev in evictions {
            let e = &entries[ev.index];
            let detail = format!(
                "discarded as the {} to make room for {} under {} ({})",
                ev.rule.describe(),
                name.id,
                ev.scope,
                if ev.scope == evict::Scope::Total {
                    limits.total()
                } else {
                    limits.for_precedence(name.precedence)
                }
            );
            let kind = if ev.rule == evict::Rule::Expired {
                DeadKind::Expired
            } else {
                DeadKind::Evicted
            };
            self.bury_unsynced(e, kind, &detail, now)?;
            touched.insert(self.spool.dir(e.area));
            evicted.push((e.name.clone(), detail));
        }
        let dead_dir = self.spool.dir(Area::Dead);
        if !evicted.is_empty() {
            touched.insert(dead_dir.clone());
        }
        Ok(match rejection {
            None => {
                let entry = Entry {
                    area: Area::Queue(name.precedence),
                    name,
                    sent: None,
                };
                staged.commit(&self.spool.entry_path(&entry))?;
                self.usage.add(&entry.name);
                touched.insert(self.spool.dir(entry.area));
                Admission::Queued { entry, evicted }
            }
            Some(r) => {
                let step = if r.new_is_bulk {
                    "a bulk message is rejected when only non-bulk messages could make room"
                } else {
                    "no message may be discarded for it"
                };
                let detail = format!(
                    "rejected: the queue is full under {} ({}) and {step}",
                    r.scope, r.limit
                );
                self.write_reason(&name, DeadKind::Rejected, "new", &detail, now)?;
                staged.commit(&dead_dir.join(name.to_string()))?;
                touched.insert(dead_dir);
                Admission::Rejected {
                    name,
                    detail,
                    evicted,
                }
            }
        })
    }

    /// Moves a message file held outside the outbound areas (diverted,
    /// gathered for an aggregate) to `dead/` under `name` with a fresh
    /// arrival stamp and a reason; returns after fsync of both directories.
    pub fn bury_held(
        &mut self,
        path: &Path,
        mut name: EntryName,
        kind: DeadKind,
        from: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<()> {
        self.ledger.mark_dirty(&self.usage)?;
        name.arrival = self.next_arrival(now);
        self.ledger.save(&self.usage)?;
        self.write_reason(&name, kind, from, detail, now)?;
        let dead = self.spool.dir(Area::Dead);
        durable::rename(path, &dead.join(name.to_string()))?;
        durable::fsync_dir(&dead)?;
        if let Some(dir) = path.parent() {
            durable::fsync_dir(dir)?;
        }
        Ok(())
    }

    /// Moves an outbound entry to `dead/` with a reason; returns after fsync.
    pub fn bury(
        &mut self,
        entry: &Entry,
        kind: DeadKind,
        detail: &str,
        now: Timestamp,
    ) -> Result<()> {
        self.ledger.mark_dirty(&self.usage)?;
        self.bury_unsynced(entry, kind, detail, now)?;
        self.ledger.save(&self.usage)?;
        durable::fsync_dir(&self.spool.dir(Area::Dead))?;
        durable::fsync_dir(&self.spool.dir(entry.area))
    }

    /// Moves an outbound entry that has expired to `dead/`, the reason
    /// saying whether it was sent; its origin is told (see [`UNTOLD`]).
    pub fn bury_expired(&mut self, entry: &Entry, now: Timestamp) -> Result<()> {
        let detail = format!(
            "expired at {} before it was {}",
            entry.name.expiry.unwrap_or_default(),
            if entry.area == Area::Sent {
                "acknowledged"
            } else {
                "sent"
            }
        );
        self.bury(entry, DeadKind::Expired, &detail, now)
    }

    /// Records, durably, that the origin of the message about to be buried
    /// as `name` is to be told: the marker goes first, so a crash between
    /// the two leaves a marker without a dead file (which the teller
    /// drops), never a burial nobody reports.
    pub fn mark_untold(&self, name: &str) -> Result<()> {
        let dir = self.spool.dir(Area::State).join(UNTOLD);
        durable::create_dir_all(&dir)?;
        let path = dir.join(name);
        durable::open(fs::OpenOptions::new().write(true).create(true), &path)
            .map_err(|e| Error::io("write", &path, e))?;
        durable::fsync_dir(&dir)
    }

    fn bury_unsynced(
        &mut self,
        entry: &Entry,
        kind: DeadKind,
        detail: &str,
        now: Timestamp,
    ) -> Result<()> {
        self.write_reason(&entry.name, kind, entry.area.dir_name(), detail, now)?;
        if kind.tells_origin() {
            self.mark_untold(&entry.name.to_string())?;
        }
        let dest = self.spool.dir(Area::Dead).join(entry.name.to_string());
        durable::rename(&self.spool.entry_path(entry), &dest)?;
        self.usage.remove(&entry.name);
        Ok(())
    }

    fn write_reason(
        &self,
        name: &EntryName,
        kind: DeadKind,
        from: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<()> {
        let reason = Reason {
            id: name.id.to_string(),
            time: now,
            kind: kind.as_str().into(),
            from: from.into(),
            detail: detail.into(),
        };
        let mut staged = self.spool.stage(now)?;
        staged
            .write_all(reason.to_text().as_bytes())
            .map_err(|e| Error::io("write", staged.path(), e))?;
        staged.sync()?;
        staged.commit(&self.spool.dir(Area::Dead).join(format!("{name}.reason")))
    }

    /// Removes sent copies the next hop acknowledged; returns how many were
    /// removed, after fsync of sent/. (Acknowledgements are recorded in the
    /// journal before this is called.)
    pub fn discard_acknowledged(&mut self, entries: &[Entry]) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        self.ledger.mark_dirty(&self.usage)?;
        let mut n = 0;
        for e in entries {
            let path = self.spool.entry_path(e);
            match durable::remove_file(&path) {
                Ok(()) => {
                    self.usage.remove(&e.name);
                    n += 1;
                }
                // Gone already (another run applied the same acknowledgement).
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io("remove", &path, err)),
            }
        }
        self.ledger.save(&self.usage)?;
        durable::fsync_dir(&self.spool.dir(Area::Sent))?;
        Ok(n)
    }

    /// Records that `entry` was handed to `peer` at `now`: moves it to sent/
    /// (or renames it there) with one more attempt. The caller fsyncs the
    /// outbound directories once per batch ([`Locked::sync_outbound`]).
    pub fn mark_sent(&mut self, entry: &Entry, peer: &Name, now: Timestamp) -> Result<Entry> {
        let attempts = entry.sent.as_ref().map_or(0, |s| s.attempts) + 1;
        let moved = Entry {
            area: Area::Sent,
            name: entry.name.clone(),
            sent: Some(SentInfo {
                attempts,
                last_sent: Timestamp::from_secs(now.as_secs()),
                peer: peer.clone(),
            }),
        };
        durable::rename(
            &self.spool.entry_path(entry),
            &self.spool.entry_path(&moved),
        )?;
        Ok(moved)
    }

    /// fsyncs every outbound directory.
    pub fn sync_outbound(&self) -> Result<()> {
        for area in Area::OUTBOUND {
            durable::fsync_dir(&self.spool.dir(area))?;
        }
        Ok(())
    }

    /// Moves an unreadable outbound file to `quarantine/` with its reason,
    /// taking it out of the accounting. Returns the quarantined path.
    pub fn quarantine_entry(
        &mut self,
        entry: &Entry,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        self.ledger.mark_dirty(&self.usage)?;
        let path = self.spool.entry_path(entry);
        let q = self
            .spool
            .quarantine(&path, entry.area.dir_name(), detail, now)?;
        self.usage.remove(&entry.name);
        durable::fsync_dir(&self.spool.dir(entry.area))?;
        Ok(q)
    }

    /// Moves an entry between outbound areas (hold, release); returns the
    /// entry at its new place after fsync of both directories.
    pub fn move_entry(&mut self, entry: &Entry, to: Area) -> Result<Entry> {
        let moved = Entry {
            area: to,
            name: entry.name.clone(),
            sent: None,
        };
        durable::rename(
            &self.spool.entry_path(entry),
            &self.spool.entry_path(&moved),
        )?;
        durable::fsync_dir(&self.spool.dir(to))?;
        durable::fsync_dir(&self.spool.dir(entry.area))?;
        Ok(moved)
    }

    /// Stops (`true`) or resumes all sending; durable on return.
    pub fn set_held(&mut self, held: bool, now: Timestamp) -> Result<()> {
        let state = self.spool.dir(Area::State);
        let flag = state.join("hold");
        if held && !flag.exists() {
            let text = format!("held since {now}\n");
            durable::write_durable(
                &self.spool.dir(Area::Tmp),
                &state,
                "hold",
                text.as_bytes(),
                now.as_micros(),
            )?;
        } else if !held && flag.exists() {
            durable::remove_file(&flag).map_err(|e| Error::io("remove", &flag, e))?;
            durable::fsync_dir(&state)?;
        }
        Ok(())
    }

    /// A number never handed out before in this spool (for lease
    /// generations); durable on return.
    pub fn next_generation(&mut self, now: Timestamp) -> Result<u64> {
        self.ledger.mark_dirty(&self.usage)?;
        let g = self.next_arrival(now);
        self.ledger.save(&self.usage)?;
        Ok(g)
    }

    /// Counts `messages` messages of `bytes` bytes in all as sent now, for the throttle.
    pub fn record_sent(
        &mut self,
        messages: u64,
        bytes: u64,
        now: Timestamp,
        utc_offset_secs: i32,
    ) -> Result<()> {
        if messages == 0 {
            return Ok(());
        }
        let sent = self
            .spool
            .throttle_sent()
            .record_many(messages, bytes, now, utc_offset_secs);
        let text = serde_json::to_string(&sent).unwrap_or_default();
        let state = self.spool.dir(Area::State);
        durable::write_durable(
            &self.spool.dir(Area::Tmp),
            &state,
            "throttle.json",
            text.as_bytes(),
            now.as_micros(),
        )?;
        Ok(())
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Usage is updated after every applied step, so what is in memory is
        // true; if even this write fails the ledger stays dirty and is rebuilt.
        if self.ledger.is_dirty() {
            let _ = self.ledger.save(&self.usage);
        }
    }
}
