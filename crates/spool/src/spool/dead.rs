//! Burial: moving a message to `dead/` with its `.reason` file, and the
//! marker in `state/untold/` for an origin still to be told. Nothing is
//! deleted for lack of room or readability; the reason is durable before
//! the message moves, and the marker before the reason, so a crash leaves
//! at worst a marker without a dead file (dropped by the teller), never a
//! burial nobody reports.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::{durable, Area, DeadKind, Entry, EntryName, Error, Locked, Reason, Result, Spool};
use crate::time::Timestamp;

/// `state/untold/`: one empty file per message buried in `dead/` (named as
/// it is there) whose origin is still to be told; see [`Locked::bury`].
pub const UNTOLD: &str = "untold";

impl Spool {
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
}

impl Locked<'_> {
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

    pub(super) fn bury_unsynced(
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

    pub(super) fn write_reason(
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
}
