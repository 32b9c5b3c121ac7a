//! Recovery of what killed runs left behind: files in `tmp/` and
//! `received/tmp/` whose writer died. A file is taken for a dead writer's
//! only when no live writer can hold it (unlocked and at least a minute
//! old, or older than `[spool] tmp_max_age`); nothing outside those two
//! directories is touched.

use std::fs;
use std::path::Path;

use super::{durable, Area, Error, Result, Spool};
use crate::time::Timestamp;

/// Age below which a `tmp/` file is never taken for a crashed writer's,
/// whatever its lock says (a writer creates its file, then locks it).
const TMP_MIN_AGE_SECS: i64 = 60;

impl Spool {
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
