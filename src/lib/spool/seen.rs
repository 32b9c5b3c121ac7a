//! Duplicate memory: the IDs (and origin keys) this site has accepted, kept
//! at least as long as the messages' lifetime, in `state/seen.idx`.
//!
//! An on-disk hash table, so a lookup reads one 4 KiB page whatever the
//! number of remembered IDs (it never loads the set):
//! - page 0 is the header: magic `rsseen01`, bucket count (a power of two),
//!   entry count, time of the last compaction;
//! - every other page is a bucket of 128 slots of 32 bytes: 16 bytes of
//!   SHA-256 of the key, 8 bytes keep-until (seconds), 1 byte kind, 3 spare,
//!   4 bytes check. An all-zero slot is empty; a full bucket overflows into
//!   the next (linear probing).
//!
//! The table doubles when half full and is compacted (expired entries
//! dropped) at most once a day, each time by writing a new file and renaming
//! it over the old one. A slot is written with one 32-byte `pwrite` inside
//! one sector, so a crash leaves it either old or new.
//!
//! Architecture invariant: callers hold the receive lock (`state/seen.lock`)
//! while they use the table; it is not safe for concurrent writers.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    hash: [u8; 16],
    keep_until: i64,
    kind: u8,
}

impl Slot {
    fn encode(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        b[..16].copy_from_slice(&self.hash);
        b[16..24].copy_from_slice(&self.keep_until.to_le_bytes());
        b[24] = self.kind;
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
        })
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
    last_compact: i64,
}

impl Seen {
    /// Opens (creating if absent) the table at `path`.
    pub fn open(path: &Path, now: Timestamp) -> Result<Seen> {
        let exists = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let mut seen = Seen {
            file,
            path: path.to_path_buf(),
            buckets: INITIAL_BUCKETS,
            count: 0,
            last_compact: now.as_secs(),
        };
        let mut header = [0u8; PAGE];
        let len = seen.file.metadata().map(|m| m.len()).unwrap_or(0);
        if exists && len >= PAGE as u64 {
            seen.file
                .read_exact_at(&mut header, 0)
                .map_err(|e| Error::io("read", path, e))?;
        }
        if &header[..8] == MAGIC {
            seen.buckets = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
            seen.count = u64::from_le_bytes(header[16..24].try_into().unwrap_or_default());
            seen.last_compact = i64::from_le_bytes(header[24..32].try_into().unwrap_or_default());
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
        } else if len > 0 && exists {
            return Err(Error::io(
                "use duplicate memory",
                path,
                std::io::Error::other("not a duplicate memory file (bad magic)"),
            ));
        } else {
            seen.file
                .set_len((seen.buckets + 1) * PAGE as u64)
                .map_err(|e| Error::io("size", path, e))?;
            seen.write_header()?;
            seen.sync()?;
        }
        Ok(seen)
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

    fn write_header(&self) -> Result<()> {
        let mut h = [0u8; 64];
        h[..8].copy_from_slice(MAGIC);
        h[8..16].copy_from_slice(&self.buckets.to_le_bytes());
        h[16..24].copy_from_slice(&self.count.to_le_bytes());
        h[24..32].copy_from_slice(&self.last_compact.to_le_bytes());
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

    /// Remembers `key` until at least `keep_until`. Durable after [`Seen::sync`].
    pub fn insert(&mut self, kind: Kind, key: &str, keep_until: Timestamp) -> Result<()> {
        let hash = key_hash(kind, key);
        let (b, s, existing) = self.probe(&hash)?;
        let keep = keep_until
            .as_secs()
            .max(existing.map_or(i64::MIN, |e| e.keep_until));
        let slot = Slot {
            hash,
            keep_until: keep,
            kind: kind as u8,
        };
        self.file
            .write_all_at(&slot.encode(), (b + 1) * PAGE as u64 + (s * SLOT) as u64)
            .map_err(|e| Error::io("write", &self.path, e))?;
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
        self.file
            .sync_data()
            .map_err(|e| Error::io("fsync", &self.path, e))
    }

    /// Drops entries whose keep-until has passed, at most once a day.
    /// Returns how many were dropped.
    pub fn prune_if_due(&mut self, now: Timestamp) -> Result<u64> {
        if now.as_secs() - self.last_compact < 86_400 {
            return Ok(0);
        }
        let before = self.count;
        let mut buckets = self.buckets;
        while buckets > INITIAL_BUCKETS && self.count * 8 < buckets * SLOTS as u64 {
            buckets /= 2;
        }
        self.last_compact = now.as_secs();
        self.rebuild(buckets.max(INITIAL_BUCKETS), Some(now))?;
        Ok(before - self.count)
    }

    /// Rewrites the table with `buckets` buckets into a new file, dropping
    /// entries expired at `now` (if given) and unreadable slots, and renames it
    /// over the old one.
    fn rebuild(&mut self, buckets: u64, now: Option<Timestamp>) -> Result<()> {
        let new_path = self.path.with_extension("idx.new");
        let _ = std::fs::remove_file(&new_path);
        let mut new = Seen {
            file: OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&new_path)
                .map_err(|e| Error::io("create", &new_path, e))?,
            path: new_path.clone(),
            buckets,
            count: 0,
            last_compact: self.last_compact,
        };
        new.file
            .set_len((buckets + 1) * PAGE as u64)
            .map_err(|e| Error::io("size", &new_path, e))?;
        let mut page = [0u8; PAGE];
        for b in 0..self.buckets {
            self.read_bucket(b, &mut page)?;
            for s in 0..SLOTS {
                let Some(slot) = Slot::decode(&page[s * SLOT..(s + 1) * SLOT]) else {
                    continue;
                };
                let expired = now.is_some_and(|n| slot.keep_until < n.as_secs());
                if slot.hash == [0; 16] || expired {
                    continue;
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

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    #[test]
    fn remembers_grows_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.idx");
        let mut s = Seen::open(&path, t(0)).unwrap();
        let n = 20_000u32;
        for i in 0..n {
            s.insert(Kind::Id, &format!("id-{i}"), t(1000)).unwrap();
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
        s.insert(Kind::Id, "a", t(100)).unwrap();
        s.insert(Kind::Id, "a", t(50)).unwrap();
        assert_eq!(s.len(), 1);
        s.last_compact = -100_000;
        assert_eq!(s.prune_if_due(t(80)).unwrap(), 0, "kept until 100, not 50");
        assert!(s.contains(Kind::Id, "a").unwrap());
    }

    #[test]
    fn pruning_drops_expired_entries_once_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Seen::open(&dir.path().join("seen.idx"), t(0)).unwrap();
        s.insert(Kind::Id, "old", t(10)).unwrap();
        s.insert(Kind::Id, "new", t(200_000)).unwrap();
        assert_eq!(
            s.prune_if_due(t(100)).unwrap(),
            0,
            "not a day since the last compaction"
        );
        assert_eq!(s.prune_if_due(t(90_000)).unwrap(), 1);
        assert!(!s.contains(Kind::Id, "old").unwrap());
        assert!(s.contains(Kind::Id, "new").unwrap());
    }

    #[test]
    fn a_torn_slot_matches_nothing_and_breaks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen.idx");
        let mut s = Seen::open(&path, t(0)).unwrap();
        s.insert(Kind::Id, "a", t(100)).unwrap();
        let (b, slot, _) = s.probe(&key_hash(Kind::Id, "a")).unwrap();
        s.file
            .write_all_at(&[0xff; 4], (b + 1) * PAGE as u64 + (slot * SLOT) as u64 + 4)
            .unwrap();
        assert!(!s.contains(Kind::Id, "a").unwrap());
        s.insert(Kind::Id, "b", t(100)).unwrap();
        assert!(s.contains(Kind::Id, "b").unwrap());
    }
}
