//! Duplicate memory: the IDs (and origin keys) this site has accepted, in
//! `state/seen.idx`, and the rules for how long it keeps them.
//!
//! An on-disk hash table, so a lookup reads one 4 KiB page whatever the
//! number of remembered IDs (it never loads the set):
//! - page 0 is the header: magic `rsseen01`, bucket count (a power of two),
//!   entry count, the cutoff of the last compaction, then the *evidence*
//!   and the *horizon* (below);
//! - every other page is a bucket of 128 slots of 32 bytes: 16 bytes of
//!   SHA-256 of the key, 8 bytes keep-until (seconds), 1 byte kind, 3 bytes
//!   creation hour (the message's creation time in hours, rounded up; 0 in
//!   slots written before it was kept), 4 bytes check. An all-zero slot is
//!   empty; a full bucket overflows into the next (linear probing).
//!
//! The table doubles when half full and is compacted (entries past their
//! keep-until dropped) at most once a day, each time by writing a new file
//! and renaming it over the old one. A slot is written with one 32-byte
//! `pwrite` inside one sector, so a crash leaves it either old or new.
//!
//! The clock is hostile input too: a run with a clock far ahead must not
//! forget, one far behind must not remember too briefly. So:
//! - the *evidence* is the newest creation time among the messages this
//!   site accepted (each taken no later than the clock of the run that
//!   accepted it): time has certainly reached it;
//! - the *receive time* of a run is the later of its clock and the
//!   evidence, and an ID is kept until the later of its message's expiry and
//!   the receive time plus `dedupe_retention`;
//! - compaction drops only what expired before the earlier of the clock and
//!   the evidence, so a clock far ahead forgets nothing new traffic has not
//!   confirmed;
//! - the *horizon* is the newest creation time among forgotten entries. A
//!   message whose ID is not remembered and that was created at or before
//!   the horizon cannot be proven new: the receiver refuses it (see
//!   `receive`), so forgetting never lets a replay through.
//!
//! Architecture invariant: callers hold the receive lock
//! (`state/receive.lock`) while they use the table; it is not safe for
//! concurrent writers.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{durable, Error, Result};
use crate::time::Timestamp;

const MAGIC: &[u8; 8] = b"rsseen01";
const PAGE: usize = 4096;
const SLOT: usize = 32;
const SLOTS: usize = PAGE / SLOT;
const INITIAL_BUCKETS: u64 = 64;

/// What a remembered key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A message ID this site accepted.
    Id = 1,
    /// An origin key (an event reported by redundant senders) this site delivered.
    OriginKey = 2,
    /// A message this site handed to a peer (`ID PEER`), kept in a table
    /// of its own (`state/handed.idx`, see `ack::note_handed`): who may
    /// speak of that message's fate.
    Handed = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    hash: [u8; 16],
    keep_until: i64,
    kind: u8,
    /// The message's creation time in hours since the epoch, rounded up;
    /// 0 when unknown (slots written by earlier versions).
    created_hours: u32,
}

/// Largest creation hour a slot holds (3 bytes: the year 3883).
const MAX_HOURS: u32 = 0x00ff_ffff;

fn hours_up(t: Timestamp) -> u32 {
    let h = (t.as_secs().max(1) + 3599) / 3600;
    u32::try_from(h).unwrap_or(MAX_HOURS).min(MAX_HOURS)
}

impl Slot {
    fn encode(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        b[..16].copy_from_slice(&self.hash);
        b[16..24].copy_from_slice(&self.keep_until.to_le_bytes());
        b[24] = self.kind;
        b[25..28].copy_from_slice(&self.created_hours.to_le_bytes()[..3]);
        let check = check(&b[..28]);
        b[28..].copy_from_slice(&check.to_le_bytes());
        b
    }

    /// `None` for an empty slot; a slot whose check fails counts as occupied
    /// by an unknown key (it can match nothing, and is dropped at compaction).
    fn decode(b: &[u8]) -> Option<Slot> {
        if b.iter().all(|&x| x == 0) {
            return None;
        }
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&b[..16]);
        let valid = u32::from_le_bytes(b[28..32].try_into().unwrap_or_default()) == check(&b[..28]);
        Some(Slot {
            hash: if valid { hash } else { [0; 16] },
            keep_until: i64::from_le_bytes(b[16..24].try_into().unwrap_or_default()),
            kind: if valid { b[24] } else { 0 },
            created_hours: if valid {
                u32::from_le_bytes([b[25], b[26], b[27], 0])
            } else {
                0
            },
        })
    }

    /// An upper bound of the message's creation time: its creation hour,
    /// or for slots that did not record it, its keep-until less the
    /// retention (which every keep-until exceeds the acceptance by).
    fn created_at_most(&self, retention: Duration) -> Timestamp {
        if self.created_hours > 0 {
            Timestamp::from_secs(i64::from(self.created_hours) * 3600)
        } else {
            Timestamp::from_secs(self.keep_until).saturating_sub(retention)
        }
    }
}

/// FNV-1a, as a torn-write check (not for security).
fn check(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn key_hash(kind: Kind, key: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update([kind as u8]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    if out == [0; 16] {
        out[0] = 1;
    }
    out
}

pub struct Seen {
    file: File,
    path: PathBuf,
    buckets: u64,
    count: u64,
    /// The cutoff (seconds) of the last compaction.
    last_compact: i64,
    /// Newest creation time (seconds) among accepted messages, each taken
    /// no later than its run's clock; 0 when none is known yet.
    evidence: i64,
    /// Newest creation time (seconds) among forgotten entries; 0 for none.
    horizon: i64,
    /// The clock of the run that opened the table.
    now: Timestamp,
}

impl Seen {
    /// Opens (creating if absent) the table at `path` for a run whose
    /// clock reads `now`.
    pub fn open(path: &Path, now: Timestamp) -> Result<Seen> {
        let exists = path.exists();
        let file = durable::open(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            path,
        )
        .map_err(|e| Error::io("open", path, e))?;
        let mut seen = Seen {
            file,
            path: path.to_path_buf(),
            buckets: INITIAL_BUCKETS,
            count: 0,
            last_compact: now.as_secs(),
            evidence: 0,
            horizon: 0,
            now,
        };
        let mut header = [0u8; PAGE];
        let len = seen.file.metadata().map(|m| m.len()).unwrap_or(0);
        if exists && len >= PAGE as u64 {
            seen.file
                .read_exact_at(&mut header, 0)
                .map_err(|e| Error::io("read", path, e))?;
        }
        let field =
            |at: usize| i64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
        if &header[..8] == MAGIC {
            seen.buckets = field(8) as u64;
            seen.count = field(16) as u64;
            seen.last_compact = field(24);
            seen.evidence = field(32);
            seen.horizon = field(40);
            let expected = (seen.buckets + 1) * PAGE as u64;
            if !seen.buckets.is_power_of_two() || len != expected {
                return Err(Error::io(
                    "use duplicate memory",
                    path,
                    std::io::Error::other(format!(
                        "corrupt: {len} bytes for {} buckets; restore it from backup, or move it aside (this site then forgets which IDs it accepted, and may deliver a retransmitted message twice)",
                        seen.buckets
                    )),
                ));
            }
        } else if len > 0 && exists && !seen.all_zero(len)? {
            return Err(Error::io(
                "use duplicate memory",
                path,
                std::io::Error::other("not a duplicate memory file (bad magic)"),
            ));
        } else {
            // Allocated, not sparse: an insert must never meet a full
            // disk after the message it remembers was delivered.
            durable::allocate(&seen.file, (seen.buckets + 1) * PAGE as u64)
                .map_err(|e| Error::io("size", path, e))?;
            seen.write_header()?;
            seen.sync()?;
            if let Some(dir) = path.parent().filter(|_| !exists) {
                durable::fsync_dir(dir)?;
            }
        }
        Ok(seen)
    }

    /// Opens the table at `path` to look keys up, never writing it:
    /// `None` when there is no table yet (or one a killed run left before
    /// its first sync: it holds nothing).
    pub fn open_read(path: &Path, now: Timestamp) -> Result<Option<Seen>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", path, e)),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut header = [0u8; 64];
        if len < PAGE as u64 {
            return Ok(None);
        }
        file.read_exact_at(&mut header, 0)
            .map_err(|e| Error::io("read", path, e))?;
        if &header[..8] != MAGIC {
            return Ok(None);
        }
        let field =
            |at: usize| i64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
        let buckets = field(8) as u64;
        if !buckets.is_power_of_two() || len != (buckets + 1) * PAGE as u64 {
            return Err(Error::io(
                "read",
                path,
                std::io::Error::other(format!("corrupt: {len} bytes for {buckets} buckets")),
            ));
        }
        Ok(Some(Seen {
            file,
            path: path.to_path_buf(),
            buckets,
            count: field(16) as u64,
            last_compact: field(24),
            evidence: field(32),
            horizon: field(40),
            now,
        }))
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes on disk.
    pub fn file_size(&self) -> u64 {
        (self.buckets + 1) * PAGE as u64
    }

    /// This run's receive time: its clock, or the evidence if that is
    /// later (a clock set back cannot shorten what is remembered).
    pub fn receive_time(&self) -> Timestamp {
        self.now.max(Timestamp::from_secs(self.evidence))
    }

    /// Until when to remember a message accepted in this run: its expiry,
    /// and at least `retention` after the receive time.
    pub fn keep_until(&self, expiry: Option<Timestamp>, retention: Duration) -> Timestamp {
        let floor = self.receive_time().saturating_add(retention);
        expiry.map_or(floor, |e| e.max(floor))
    }

    /// The newest creation time among forgotten entries: a message created
    /// at or before it whose ID is not remembered cannot be proven new.
    pub fn horizon(&self) -> Option<Timestamp> {
        (self.horizon != 0).then(|| Timestamp::from_secs(self.horizon))
    }

    /// Whether the file holds nothing but zeros: a table created by a run
    /// cut off (a power loss) before its first fsync, which remembered
    /// nothing yet and is started afresh.
    fn all_zero(&self, len: u64) -> Result<bool> {
        let mut page = [0u8; PAGE];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(PAGE as u64) as usize;
            self.file
                .read_exact_at(&mut page[..n], at)
                .map_err(|e| Error::io("read", &self.path, e))?;
            if page[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += n as u64;
        }
        Ok(true)
    }

    fn write_header(&self) -> Result<()> {
        let mut h = [0u8; 64];
        h[..8].copy_from_slice(MAGIC);
        h[8..16].copy_from_slice(&self.buckets.to_le_bytes());
        h[16..24].copy_from_slice(&self.count.to_le_bytes());
        h[24..32].copy_from_slice(&self.last_compact.to_le_bytes());
        h[32..40].copy_from_slice(&self.evidence.to_le_bytes());
        h[40..48].copy_from_slice(&self.horizon.to_le_bytes());
        self.file
            .write_all_at(&h, 0)
            .map_err(|e| Error::io("write", &self.path, e))
    }

    fn read_bucket(&self, b: u64, page: &mut [u8; PAGE]) -> Result<()> {
        self.file
            .read_exact_at(page, (b + 1) * PAGE as u64)
            .map_err(|e| Error::io("read", &self.path, e))
    }

    /// Finds `hash`: `Ok((bucket, slot, Some(existing)))` when present, or the
    /// first empty place with `None`.
    fn probe(&self, hash: &[u8; 16]) -> Result<(u64, usize, Option<Slot>)> {
        let start =
            u64::from_le_bytes(hash[..8].try_into().unwrap_or_default()) & (self.buckets - 1);
        let mut page = [0u8; PAGE];
        for i in 0..self.buckets {
            let b = (start + i) & (self.buckets - 1);
            self.read_bucket(b, &mut page)?;
            for s in 0..SLOTS {
                let raw = &page[s * SLOT..(s + 1) * SLOT];
                // Compare the hash first: decoding (and checking) every slot
                // passed would cost more than the read.
                if raw[..16] == hash[..] {
                    if let Some(slot) = Slot::decode(raw).filter(|slot| slot.hash == *hash) {
                        return Ok((b, s, Some(slot)));
                    }
                } else if raw.iter().all(|&x| x == 0) {
                    return Ok((b, s, None));
                }
            }
        }
        Err(Error::io(
            "use duplicate memory",
            &self.path,
            std::io::Error::other("table full (this is a bug: it grows at half full)"),
        ))
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, kind: Kind, key: &str) -> Result<bool> {
        let hash = key_hash(kind, key);
        Ok(self.probe(&hash)?.2.is_some())
    }

    /// Remembers `key`, of a message created at `created`, until at least
    /// `keep_until`; the creation time (taken no later than this run's
    /// clock) is evidence of how far time has come. Durable after
    /// [`Seen::sync`].
    pub fn insert(
        &mut self,
        kind: Kind,
        key: &str,
        keep_until: Timestamp,
        created: Timestamp,
    ) -> Result<()> {
        let hash = key_hash(kind, key);
        let (b, s, existing) = self.probe(&hash)?;
        let keep = keep_until
            .as_secs()
            .max(existing.map_or(i64::MIN, |e| e.keep_until));
        let slot = Slot {
            hash,
            keep_until: keep,
            kind: kind as u8,
            created_hours: hours_up(created).max(existing.map_or(0, |e| e.created_hours)),
        };
        let at = (b + 1) * PAGE as u64 + (s * SLOT) as u64;
        super::fault::write_with(&self.path, || self.file.write_all_at(&slot.encode(), at))
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.evidence = self.evidence.max(created.min(self.now).as_secs());
        if existing.is_none() {
            self.count += 1;
            if self.count * 2 > self.buckets * SLOTS as u64 {
                self.rebuild(self.buckets * 2, None)?;
            }
        }
        Ok(())
    }

    /// Makes every insert so far durable: returns after fsync.
    pub fn sync(&mut self) -> Result<()> {
        self.write_header()?;
        durable::sync_data(&self.file, &self.path).map_err(|e| Error::io("fsync", &self.path, e))
    }

    /// Drops entries whose keep-until is before the earlier of this run's
    /// clock and the evidence, at most once a day; raises the horizon to
    /// the newest creation time among them (`retention` estimates it for
    /// entries that did not record it). Returns how many were dropped.
    pub fn prune_if_due(&mut self, retention: Duration) -> Result<u64> {
        let cutoff = self.now.as_secs().min(self.evidence);
        if cutoff.saturating_sub(self.last_compact) < 86_400 {
            return Ok(0);
        }
        let before = self.count;
        let mut buckets = self.buckets;
        while buckets > INITIAL_BUCKETS && self.count * 8 < buckets * SLOTS as u64 {
            buckets /= 2;
        }
        self.last_compact = cutoff;
        self.rebuild(
            buckets.max(INITIAL_BUCKETS),
            Some((Timestamp::from_secs(cutoff), retention)),
        )?;
        // The header's count may be short of the slots (a run killed
        // between a slot and its header): the rebuild counted them.
        Ok(before.saturating_sub(self.count))
    }

    /// Rewrites the table with `buckets` buckets into a new file, dropping
    /// entries that expired before the cutoff (if given; raising the
    /// horizon for them) and unreadable slots, and renames it over the old one.
    fn rebuild(&mut self, buckets: u64, forget: Option<(Timestamp, Duration)>) -> Result<()> {
        let new_path = self.path.with_extension("idx.new");
        let _ = durable::remove_file(&new_path);
        let mut new = Seen {
            file: durable::open(
                OpenOptions::new().read(true).write(true).create_new(true),
                &new_path,
            )
            .map_err(|e| Error::io("create", &new_path, e))?,
            path: new_path.clone(),
            buckets,
            count: 0,
            last_compact: self.last_compact,
            evidence: self.evidence,
            horizon: self.horizon,
            now: self.now,
        };
        durable::allocate(&new.file, (buckets + 1) * PAGE as u64)
            .map_err(|e| Error::io("size", &new_path, e))?;
        let mut page = [0u8; PAGE];
        for b in 0..self.buckets {
            self.read_bucket(b, &mut page)?;
            for s in 0..SLOTS {
                let Some(slot) = Slot::decode(&page[s * SLOT..(s + 1) * SLOT]) else {
                    continue;
                };
                if slot.hash == [0; 16] {
                    continue;
                }
                if let Some((cutoff, retention)) = forget {
                    if slot.keep_until < cutoff.as_secs() {
                        new.horizon = new.horizon.max(slot.created_at_most(retention).as_secs());
                        continue;
                    }
                }
                let (nb, ns, _) = new.probe(&slot.hash)?;
                new.file
                    .write_all_at(&slot.encode(), (nb + 1) * PAGE as u64 + (ns * SLOT) as u64)
                    .map_err(|e| Error::io("write", &new_path, e))?;
                new.count += 1;
            }
        }
        new.sync()?;
        durable::rename(&new_path, &self.path)?;
        if let Some(dir) = self.path.parent() {
            durable::fsync_dir(dir)?;
        }
        new.path = self.path.clone();
        *self = new;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds after 2026-11-24T00:00:00Z.
    fn t(secs: i64) -> Timestamp {
        Timestamp::from_secs(1_795_478_400 + secs)
    }

    const DAY: i64 = 86_400;
    const MONTH: Duration = Duration::from_secs(30 * 86_400);

    /// A power cut before the first fsync of a new table can leave its
    /// length with nothing written: it remembered nothing, and starts
    /// afresh rather than stopping the site as corrupt.
    #[test]
    fn a_table_of_zeros_starts_afresh_and_anything_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.idx");
        std::fs::write(&path, vec![0u8; 3 * PAGE]).unwrap();
        let mut s = Seen::open(&path, t(0)).unwrap();
        s.insert(Kind::Id, "id-1", t(1000), t(0)).unwrap();
        s.sync().unwrap();
        drop(s);
        assert!(Seen::open(&path, t(0))
            .unwrap()
            .contains(Kind::Id, "id-1")
            .unwrap());
        let mut junk = vec![0u8; 3 * PAGE];
        junk[5000] = 1;
        std::fs::write(&path, junk).unwrap();
        assert!(Seen::open(&path, t(0)).is_err());
    }

    #[test]
    fn remembers_grows_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.idx");
        let mut s = Seen::open(&path, t(0)).unwrap();
        let n = 20_000u32;
        for i in 0..n {
            s.insert(Kind::Id, &format!("id-{i}"), t(1000), t(0))
                .unwrap();
        }
        s.sync().unwrap();
        assert_eq!(s.len(), u64::from(n));
        assert!(
            s.file_size() < u64::from(n) * 32 * 4 + 8192,
            "load factor kept reasonable"
        );
        drop(s);
        let s = Seen::open(&path, t(0)).unwrap();
        for i in 0..n {
            assert!(s.contains(Kind::Id, &format!("id-{i}")).unwrap(), "{i}");
        }
        assert!(!s.contains(Kind::Id, "id-x").unwrap());
        assert!(
            !s.contains(Kind::OriginKey, "id-1").unwrap(),
            "kinds are separate"
        );
    }

    #[test]
    fn inserting_twice_keeps_one_entry_and_the_later_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Seen::open(&dir.path().join("seen.idx"), t(0)).unwrap();
        s.insert(Kind::Id, "a", t(100), t(0)).unwrap();
        s.insert(Kind::Id, "a", t(50), t(0)).unwrap();
        assert_eq!(s.len(), 1);
        s.last_compact = t(-2 * DAY).as_secs();
        s.now = t(80);
        assert_eq!(s.prune_if_due(MONTH).unwrap(), 0, "kept until 100, not 50");
        assert!(s.contains(Kind::Id, "a").unwrap());
    }

    /// Opens the table at `path` as a run whose clock reads `now`.
    fn reopen(path: &Path, now: Timestamp) -> Seen {
        Seen::open(path, now).unwrap()
    }

    #[test]
    fn pruning_drops_what_expired_before_new_traffic_once_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.idx");
        let mut s = reopen(&path, t(0));
        let keep = s.keep_until(None, MONTH);
        assert_eq!(keep, t(30 * DAY));
        s.insert(Kind::Id, "old", keep, t(-10)).unwrap();
        s.insert(Kind::Id, "long", t(400 * DAY), t(0)).unwrap();
        s.sync().unwrap();
        drop(s);

        let mut s = reopen(&path, t(40 * DAY));
        assert_eq!(
            s.prune_if_due(MONTH).unwrap(),
            0,
            "no traffic since: nothing shows time has passed"
        );
        s.insert(Kind::Id, "new", s.keep_until(None, MONTH), t(40 * DAY))
            .unwrap();
        assert_eq!(s.prune_if_due(MONTH).unwrap(), 1);
        assert!(!s.contains(Kind::Id, "old").unwrap());
        assert!(s.contains(Kind::Id, "long").unwrap() && s.contains(Kind::Id, "new").unwrap());
        // The forgotten entry's creation hour, rounded up.
        assert_eq!(s.horizon(), Some(t(0)));
        assert_eq!(s.prune_if_due(MONTH).unwrap(), 0, "once a day");
        s.sync().unwrap();
        drop(s);
        assert_eq!(reopen(&path, t(41 * DAY)).horizon(), Some(t(0)));
    }

    #[test]
    fn a_run_killed_before_its_header_leaves_a_table_that_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.idx");
        let mut s = reopen(&path, t(0));
        s.insert(Kind::Id, "old", t(DAY), t(0)).unwrap();
        s.sync().unwrap();
        // Slots written, the header not: it counts one where three are.
        s.insert(Kind::Id, "b", t(400 * DAY), t(0)).unwrap();
        s.insert(Kind::Id, "c", t(400 * DAY), t(0)).unwrap();
        drop(s);
        let mut s = reopen(&path, t(40 * DAY));
        assert_eq!(s.len(), 1);
        s.insert(Kind::Id, "new", t(400 * DAY), t(40 * DAY))
            .unwrap();
        assert_eq!(s.prune_if_due(MONTH).unwrap(), 0, "the count was short");
        assert_eq!(s.len(), 3);
        assert!(!s.contains(Kind::Id, "old").unwrap());
        assert!(s.contains(Kind::Id, "b").unwrap() && s.contains(Kind::Id, "c").unwrap());
    }

    #[test]
    fn a_clock_far_ahead_forgets_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.idx");
        let mut s = reopen(&path, t(0));
        s.insert(Kind::Id, "a", s.keep_until(None, MONTH), t(0))
            .unwrap();
        s.sync().unwrap();
        drop(s);
        // A run 400 days ahead accepts a message made at the right time.
        let mut s = reopen(&path, t(400 * DAY));
        s.insert(Kind::Id, "b", s.keep_until(None, MONTH), t(DAY))
            .unwrap();
        assert_eq!(s.prune_if_due(MONTH).unwrap(), 0);
        assert!(s.contains(Kind::Id, "a").unwrap());
        assert_eq!(s.horizon(), None);
    }

    #[test]
    fn a_clock_far_behind_remembers_as_long_as_the_right_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.idx");
        let mut s = reopen(&path, t(0));
        s.insert(Kind::Id, "a", s.keep_until(None, MONTH), t(0))
            .unwrap();
        s.sync().unwrap();
        drop(s);
        let s = reopen(&path, t(-400 * DAY));
        assert_eq!(s.receive_time(), t(0));
        assert_eq!(s.keep_until(None, MONTH), t(30 * DAY));
        assert_eq!(s.keep_until(Some(t(90 * DAY)), MONTH), t(90 * DAY));
    }

    #[test]
    fn evidence_never_runs_ahead_of_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = reopen(&dir.path().join("seen.idx"), t(0));
        // A sender whose clock is a year ahead.
        s.insert(Kind::Id, "a", t(DAY), t(365 * DAY)).unwrap();
        assert_eq!(s.receive_time(), t(0));
    }

    #[test]
    fn slots_without_a_creation_hour_estimate_it_from_their_retention() {
        let slot = Slot {
            hash: [1; 16],
            keep_until: t(30 * DAY).as_secs(),
            kind: 1,
            created_hours: 0,
        };
        assert_eq!(slot.created_at_most(MONTH), t(0));
        let back = Slot::decode(&slot.encode()).unwrap();
        assert_eq!(back, slot);
        let with = Slot {
            created_hours: hours_up(t(1)),
            ..slot
        };
        assert_eq!(Slot::decode(&with.encode()).unwrap(), with);
        assert_eq!(with.created_at_most(MONTH), t(3600));
    }

    #[test]
    fn a_torn_slot_matches_nothing_and_breaks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.idx");
        let mut s = Seen::open(&path, t(0)).unwrap();
        s.insert(Kind::Id, "a", t(100), t(0)).unwrap();
        let (b, slot, _) = s.probe(&key_hash(Kind::Id, "a")).unwrap();
        s.file
            .write_all_at(&[0xff; 4], (b + 1) * PAGE as u64 + (slot * SLOT) as u64 + 4)
            .unwrap();
        assert!(!s.contains(Kind::Id, "a").unwrap());
        s.insert(Kind::Id, "b", t(100), t(0)).unwrap();
        assert!(s.contains(Kind::Id, "b").unwrap());
    }
}
