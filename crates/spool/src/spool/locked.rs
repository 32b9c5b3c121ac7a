//! The spool lock (`state/usage`, with the ledger it guards) and
//! `Locked`, through which every whole-spool decision is applied:
//! admission and eviction, acknowledged copies discarded, moves between
//! the outbound areas, the global hold, lease generations and the
//! throttle's counters. The ledger is marked dirty before a step and saved
//! after it, so a run killed in between leaves it to be rebuilt from the
//! directories; no message body is written while the lock is held.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{
    durable, usage, Area, DeadKind, Entry, EntryName, Error, Result, SentInfo, Spool, Staged, Usage,
};
use crate::message::Name;
use crate::queue::evict::{self, Plan};
use crate::time::Timestamp;

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

impl Spool {
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

/// The spool lock, held: whole-spool decisions happen through this.
pub struct Locked<'s> {
    pub(super) spool: &'s Spool,
    pub(super) ledger: usage::Ledger,
    pub(super) usage: Usage,
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
