//! A simulated power cut under every durable write, for tests (feature
//! `fault-injection`; without it every function here only runs its
//! operation).
//!
//! Every operation that changes what is on disk goes through one of the
//! `*_with` functions below: creating or opening a file to write it, an
//! fsync of a file or a directory, a `syncfs`, a rename, a removal, a new
//! directory. The layer counts them and remembers what is not yet durable:
//! the data of a file written since its last fsync (with what it held
//! before), and each change of a directory's entries since that directory's
//! last fsync. A `syncfs` makes everything durable.
//!
//! A plan in the environment, `RS_FAULT=KIND@N` with `RS_FAULT_SEED`, acts
//! at the Nth operation (counted from 1):
//! - `crash@N`: a power cut just before it. What was not durable is undone
//!   as a disk might after a reboot, according to `RS_FAULT_MODE`:
//!   `drop` (every unsynced entry change undone, unsynced data gone: the
//!   worst case for loss), `tear` (entries kept, unsynced data torn: pages
//!   old or new, the length either), `mix` (each entry change undone or not
//!   at random, newest first, data torn). Then the process ends at once
//!   with status [`CRASH_EXIT`], running no destructor.
//! - `enospc@N`, `eio@N`: that operation fails with ENOSPC or EIO;
//!   `enospc@N+` fails it and every later one (a disk that stays full).
//!
//! `RS_FAULT_BOOT` stands in for the kernel's boot ID, so a test can show
//! the spool a reboot.

use std::fs::File;
use std::io;
use std::path::Path;

/// The exit status of a process ended by a simulated power cut.
pub const CRASH_EXIT: i32 = 86;

/// Counts an operation, which may be where the plan cuts the power or fails.
#[cfg(feature = "fault-injection")]
fn step(what: &str, path: &Path) -> io::Result<()> {
    imp::step(what, path)
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
fn step(_what: &str, _path: &Path) -> io::Result<()> {
    Ok(())
}

/// Opens `path` to write it (created or not) with `open`.
pub fn open_with(path: &Path, open: impl FnOnce() -> io::Result<File>) -> io::Result<File> {
    step("open", path)?;
    #[cfg(feature = "fault-injection")]
    let before = imp::before_write(path);
    let file = open()?;
    #[cfg(feature = "fault-injection")]
    imp::opened(path, before);
    Ok(file)
}

/// Writes to the open file at `path` with `write`, in place.
pub fn write_with(path: &Path, write: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    step("write", path)?;
    #[cfg(feature = "fault-injection")]
    let before = imp::before_write(path);
    write()?;
    #[cfg(feature = "fault-injection")]
    imp::written(path, before);
    Ok(())
}

/// Makes the data written to `path` durable with `sync` (fsync or
/// fdatasync of the file).
pub fn sync_file_with(path: &Path, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    step("fsync", path)?;
    sync()?;
    #[cfg(feature = "fault-injection")]
    imp::synced_file(path);
    Ok(())
}

/// Makes the entries of the directory `dir` durable with `sync`.
pub fn sync_dir_with(dir: &Path, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    step("fsync directory", dir)?;
    sync()?;
    #[cfg(feature = "fault-injection")]
    imp::synced_dir(dir);
    Ok(())
}

/// Makes everything written durable with `sync` (a `syncfs`).
pub fn syncfs_with(path: &Path, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    step("syncfs", path)?;
    sync()?;
    #[cfg(feature = "fault-injection")]
    imp::synced_all();
    Ok(())
}

/// Renames `from` to `to` with `rename`.
pub fn rename_with(
    from: &Path,
    to: &Path,
    rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    step("rename", to)?;
    #[cfg(feature = "fault-injection")]
    let replaced = imp::content(to);
    rename()?;
    #[cfg(feature = "fault-injection")]
    imp::renamed(from, to, replaced);
    #[cfg(not(feature = "fault-injection"))]
    let _ = from;
    Ok(())
}

/// Removes the file `path` with `remove`.
pub fn remove_with(path: &Path, remove: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    step("remove", path)?;
    #[cfg(feature = "fault-injection")]
    let content = imp::content(path);
    remove()?;
    #[cfg(feature = "fault-injection")]
    imp::removed(path, content);
    Ok(())
}

/// Creates the directory `path` with `make`; `Ok(false)` if it existed.
pub fn mkdir_with(path: &Path, make: impl FnOnce() -> io::Result<()>) -> io::Result<bool> {
    step("mkdir", path)?;
    match make() {
        Ok(()) => {
            #[cfg(feature = "fault-injection")]
            imp::made_dir(path);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// The kernel's boot ID, or the one a test set in `RS_FAULT_BOOT`.
pub fn boot_id() -> String {
    #[cfg(feature = "fault-injection")]
    if let Ok(id) = std::env::var("RS_FAULT_BOOT") {
        return id;
    }
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(feature = "fault-injection")]
mod imp {
    use std::collections::HashMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    use super::CRASH_EXIT;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Crash,
        NoSpace { stays: bool },
        Eio,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Drop,
        Tear,
        Mix,
    }

    /// A change of a directory's entries not yet made durable.
    enum Entry {
        Created(PathBuf),
        Dir(PathBuf),
        Renamed {
            from: PathBuf,
            to: PathBuf,
            replaced: Option<Vec<u8>>,
        },
        Removed(PathBuf, Option<Vec<u8>>),
    }

    impl Entry {
        /// The directory whose fsync makes this change durable.
        fn dir(&self) -> Option<&Path> {
            match self {
                Entry::Created(p) | Entry::Dir(p) | Entry::Removed(p, _) => p.parent(),
                Entry::Renamed { to, .. } => to.parent(),
            }
        }
    }

    struct State {
        plan: Option<(Kind, u64)>,
        mode: Mode,
        rng: u64,
        count: u64,
        /// Files written since their last fsync, with what they held
        /// before (`None`: they did not exist).
        dirty: HashMap<PathBuf, Option<Vec<u8>>>,
        pending: Vec<Entry>,
    }

    fn state() -> &'static Mutex<State> {
        static STATE: OnceLock<Mutex<State>> = OnceLock::new();
        STATE.get_or_init(|| {
            let plan = std::env::var("RS_FAULT").ok().and_then(|p| {
                let (kind, at) = p.split_once('@')?;
                let (at, stays) = match at.strip_suffix('+') {
                    Some(at) => (at, true),
                    None => (at, false),
                };
                let kind = match kind {
                    "crash" => Kind::Crash,
                    "enospc" => Kind::NoSpace { stays },
                    "eio" => Kind::Eio,
                    _ => return None,
                };
                Some((kind, at.parse().ok()?))
            });
            let mode = match std::env::var("RS_FAULT_MODE").as_deref() {
                Ok("tear") => Mode::Tear,
                Ok("mix") => Mode::Mix,
                _ => Mode::Drop,
            };
            let seed = std::env::var("RS_FAULT_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1u64);
            Mutex::new(State {
                plan,
                mode,
                rng: seed | 1,
                count: 0,
                dirty: HashMap::new(),
                pending: Vec::new(),
            })
        })
    }

    fn lock() -> std::sync::MutexGuard<'static, State> {
        state().lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active() -> bool {
        lock().plan.is_some()
    }

    /// One path spelled one way, so entries and fsyncs compare.
    fn norm(p: &Path) -> PathBuf {
        p.components().collect()
    }

    pub fn step(what: &str, path: &Path) -> io::Result<()> {
        let mut s = lock();
        let Some((kind, at)) = s.plan else {
            return Ok(());
        };
        s.count += 1;
        if let Ok(trace) = std::env::var("RS_FAULT_TRACE") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(trace)
            {
                let _ = writeln!(f, "{} {what} {}", s.count, path.display());
            }
        }
        let hit = s.count == at || matches!(kind, Kind::NoSpace { stays: true } if s.count > at);
        if !hit {
            return Ok(());
        }
        match kind {
            Kind::Crash => power_cut(&mut s),
            Kind::NoSpace { .. } => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            Kind::Eio => Err(io::Error::from_raw_os_error(libc::EIO)),
        }
    }

    pub fn content(path: &Path) -> Option<Vec<u8>> {
        if !active() {
            return None;
        }
        std::fs::read(path).ok()
    }

    /// What `path` held before a write that is about to begin: `None` if
    /// the layer is idle or the file is already known to be unsynced.
    pub fn before_write(path: &Path) -> Option<Option<Vec<u8>>> {
        if !active() || lock().dirty.contains_key(&norm(path)) {
            return None;
        }
        Some(std::fs::read(path).ok())
    }

    pub fn opened(path: &Path, before: Option<Option<Vec<u8>>>) {
        let Some(before) = before else {
            return;
        };
        let mut s = lock();
        if before.is_none() {
            s.pending.push(Entry::Created(norm(path)));
        }
        s.dirty.insert(norm(path), before);
    }

    pub fn written(path: &Path, before: Option<Option<Vec<u8>>>) {
        if let Some(before) = before {
            lock().dirty.insert(norm(path), before);
        }
    }

    pub fn synced_file(path: &Path) {
        lock().dirty.remove(&norm(path));
    }

    pub fn synced_dir(dir: &Path) {
        let dir = norm(dir);
        lock().pending.retain(|e| e.dir() != Some(dir.as_path()));
    }

    pub fn synced_all() {
        let mut s = lock();
        s.dirty.clear();
        s.pending.clear();
    }

    pub fn renamed(from: &Path, to: &Path, replaced: Option<Vec<u8>>) {
        let mut s = lock();
        if s.plan.is_none() {
            return;
        }
        let (from, to) = (norm(from), norm(to));
        s.dirty.remove(&to);
        if let Some(before) = s.dirty.remove(&from) {
            s.dirty.insert(to.clone(), before);
        }
        s.pending.push(Entry::Renamed { from, to, replaced });
    }

    pub fn removed(path: &Path, content: Option<Vec<u8>>) {
        let mut s = lock();
        if s.plan.is_none() {
            return;
        }
        let path = norm(path);
        s.dirty.remove(&path);
        s.pending.push(Entry::Removed(path, content));
    }

    pub fn made_dir(path: &Path) {
        let mut s = lock();
        if s.plan.is_some() {
            s.pending.push(Entry::Dir(norm(path)));
        }
    }

    fn random(s: &mut State, n: u64) -> u64 {
        s.rng ^= s.rng << 13;
        s.rng ^= s.rng >> 7;
        s.rng ^= s.rng << 17;
        s.rng % n.max(1)
    }

    /// What a file written since its last fsync may hold after the cut:
    /// each 4 KiB page old or new, the length old or new.
    fn torn(s: &mut State, before: &[u8], now: &[u8]) -> Vec<u8> {
        const PAGE: usize = 4096;
        let len = if random(s, 2) == 0 {
            before.len()
        } else {
            now.len()
        };
        let mut out = vec![0u8; len];
        for (i, chunk) in out.chunks_mut(PAGE).enumerate() {
            let src = if random(s, 2) == 0 { before } else { now };
            let at = i * PAGE;
            if at < src.len() {
                let n = chunk.len().min(src.len() - at);
                chunk[..n].copy_from_slice(&src[at..at + n]);
            }
        }
        out
    }

    /// The power cut: undoes what was not durable, then ends the process.
    fn power_cut(s: &mut State) -> ! {
        let mode = s.mode;
        let dirty: Vec<(PathBuf, Option<Vec<u8>>)> = s.dirty.drain().collect();
        for (path, before) in dirty {
            let Ok(now) = std::fs::read(&path) else {
                continue;
            };
            let before = before.unwrap_or_default();
            let after = match mode {
                Mode::Drop => before,
                Mode::Tear | Mode::Mix => torn(s, &before, &now),
            };
            let _ = std::fs::write(&path, after);
        }
        let pending = std::mem::take(&mut s.pending);
        for entry in pending.into_iter().rev() {
            let undo = match mode {
                Mode::Drop => true,
                Mode::Tear => false,
                Mode::Mix => random(s, 2) == 0,
            };
            if undo {
                undo_entry(entry);
            }
        }
        // SAFETY: _exit ends the process without running anything more,
        // as a power cut would.
        unsafe { libc::_exit(CRASH_EXIT) }
    }

    fn undo_entry(entry: Entry) {
        match entry {
            Entry::Created(p) => {
                let _ = std::fs::remove_file(p);
            }
            Entry::Dir(p) => {
                let _ = std::fs::remove_dir_all(p);
            }
            Entry::Renamed { from, to, replaced } => {
                if to.symlink_metadata().is_ok() && std::fs::rename(&to, &from).is_ok() {
                    if let Some(old) = replaced {
                        let _ = std::fs::write(&to, old);
                    }
                }
            }
            Entry::Removed(p, content) => {
                if let (Some(c), Err(_)) = (content, p.symlink_metadata()) {
                    let _ = std::fs::write(p, c);
                }
            }
        }
    }
}
