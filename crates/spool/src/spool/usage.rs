//! The ledger: `state/usage`, the running count and size of outbound
//! messages per precedence and the last arrival stamp. It is also the spool
//! lock: whoever holds its `flock` may make whole-spool decisions.
//!
//! The ledger is a cache of what the outbound directories hold. It is marked
//! dirty before any change and clean after, and records the kernel's boot
//! ID; a dirty ledger (a writer died mid-change) or one written before the
//! last boot (page cache lost in a crash) is rebuilt by scanning the
//! directories. So it needs no fsync of its own.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Error, Result};
use crate::message::Precedence;
use crate::queue::entry::EntryName;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub count: [u64; 3],
    pub bytes: [u64; 3],
    pub last_arrival: u64,
}

impl Usage {
    pub fn add(&mut self, e: &EntryName) {
        let i = e.precedence.rank();
        self.count[i] += 1;
        self.bytes[i] += e.size;
        self.last_arrival = self.last_arrival.max(e.arrival);
    }

    pub fn remove(&mut self, e: &EntryName) {
        let i = e.precedence.rank();
        self.count[i] = self.count[i].saturating_sub(1);
        self.bytes[i] = self.bytes[i].saturating_sub(e.size);
    }

    pub fn of(&self, p: Precedence) -> (u64, u64) {
        (self.count[p.rank()], self.bytes[p.rank()])
    }

    pub fn total(&self) -> (u64, u64) {
        (self.count.iter().sum(), self.bytes.iter().sum())
    }

    fn to_text(self, boot: &str, dirty: bool) -> String {
        let mut s = format!(
            "rs-usage 1\nboot {boot}\ndirty {}\narrival {}\n",
            u8::from(dirty),
            self.last_arrival
        );
        for p in Precedence::ALL {
            let (c, b) = self.of(*p);
            s.push_str(&format!("{p} {c} {b}\n"));
        }
        s
    }

    /// Parses a clean ledger written during boot `boot`; `None` means rebuild.
    fn from_text(text: &str, boot: &str) -> Option<Usage> {
        let mut lines = text.lines();
        if lines.next()? != "rs-usage 1" {
            return None;
        }
        if lines.next()?.strip_prefix("boot ")? != boot {
            return None;
        }
        if lines.next()? != "dirty 0" {
            return None;
        }
        let mut u = Usage {
            last_arrival: lines.next()?.strip_prefix("arrival ")?.parse().ok()?,
            ..Usage::default()
        };
        for p in Precedence::ALL {
            let mut f = lines.next()?.split(' ');
            if f.next()? != p.as_str() {
                return None;
            }
            u.count[p.rank()] = f.next()?.parse().ok()?;
            u.bytes[p.rank()] = f.next()?.parse().ok()?;
        }
        Some(u)
    }
}

/// The kernel's boot ID; empty where the system has none.
fn boot_id() -> String {
    super::fault::boot_id()
}

/// Takes the exclusive lock on `file`, waiting at most `wait`.
fn wait_for_lock(file: &File, path: &Path, wait: std::time::Duration) -> Result<()> {
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match fs2::FileExt::try_lock_exclusive(file) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == fs2::lock_contended_error().raw_os_error() => {}
            Err(e) => return Err(Error::io("lock", path, e)),
        }
        if start.elapsed() >= wait {
            return Err(Error::Locked {
                path: path.to_path_buf(),
                waited: crate::time::format_duration(wait),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

/// The open, locked ledger.
pub(super) struct Ledger {
    file: File,
    path: PathBuf,
    boot: String,
    dirty_on_disk: bool,
}

impl Ledger {
    /// Opens and locks the ledger (waiting for other holders), returning the
    /// usage it records, or `None` if it must be rebuilt.
    pub fn lock(path: &Path, wait: std::time::Duration) -> Result<(Ledger, Option<Usage>)> {
        let mut file = super::durable::open(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            path,
        )
        .map_err(|e| Error::io("open", path, e))?;
        wait_for_lock(&file, path, wait)?;
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let boot = boot_id();
        let usage = Usage::from_text(&text, &boot);
        Ok((
            Ledger {
                file,
                path: path.to_path_buf(),
                boot,
                dirty_on_disk: usage.is_none(),
            },
            usage,
        ))
    }

    /// Records that a change is about to be made (once per lock).
    pub fn mark_dirty(&mut self, usage: &Usage) -> Result<()> {
        if !self.dirty_on_disk {
            self.write(usage, true)?;
            self.dirty_on_disk = true;
        }
        Ok(())
    }

    /// Records the usage as clean.
    pub fn save(&mut self, usage: &Usage) -> Result<()> {
        self.write(usage, false)?;
        self.dirty_on_disk = false;
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty_on_disk
    }

    fn write(&mut self, usage: &Usage, dirty: bool) -> Result<()> {
        let text = usage.to_text(&self.boot, dirty);
        let path = &self.path;
        let file = &mut self.file;
        super::fault::write_with(path, || {
            file.seek(SeekFrom::Start(0))?;
            file.write_all(text.as_bytes())?;
            file.set_len(text.len() as u64)
        })
        .map_err(|e| Error::io("write", path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_ledgers_round_trip_and_others_rebuild() {
        let u = Usage {
            count: [1, 2, 3],
            bytes: [10, 20, 30],
            last_arrival: 42,
        };
        assert_eq!(Usage::from_text(&u.to_text("B", false), "B"), Some(u));
        assert_eq!(Usage::from_text(&u.to_text("B", true), "B"), None, "dirty");
        assert_eq!(
            Usage::from_text(&u.to_text("A", false), "B"),
            None,
            "rebooted"
        );
        assert_eq!(Usage::from_text("garbage", "B"), None);
        assert_eq!(Usage::from_text("", "B"), None);
    }
}
