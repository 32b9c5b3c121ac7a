//! The state a receiver keeps across runs, behind one interface: the
//! duplicate memory, the components learned behind each peer, and the
//! acknowledgements owed, and what the throttle counted. The receive path
//! talks only to [`Shared`]: the file spool ([`FileShared`]), or whatever
//! [`Backend`] the program installed on the spool (at a provider running
//! many relays, the shared database).
//!
//! Authoritative: what a `commit` returns from is durable, and nothing is
//! acknowledged before it.

use std::time::Duration;

use super::decide::When;
use crate::ack::{self, Owed};
use crate::message::{Message, Name};
use crate::route::Learned;
use crate::spool::seen::{Kind, Seen};
use crate::spool::{Area, Result, Spool};
use crate::time::Timestamp;

/// Where a program keeps the receive state when not in the spool's files,
/// installed on the spool as a [`StateBackend`].
pub trait Backend: Send + Sync {
    /// The state for one batch, or `None` where this spool keeps it in its
    /// files (its configuration says so).
    fn open<'s>(&self, spool: &'s Spool, now: Timestamp) -> Result<Option<Box<dyn Shared + 's>>>;
}

/// The [`Backend`] installed on a spool (`Spool::install`).
pub struct StateBackend(pub Box<dyn Backend>);

/// The state for one batch: the installed backend's, else the spool's files.
pub fn open<'s>(
    spool: &'s Spool,
    now: Timestamp,
    log: &'s dyn Fn(String),
) -> Result<Box<dyn Shared + 's>> {
    if let Some(StateBackend(b)) = spool.part::<StateBackend>() {
        if let Some(state) = b.open(spool, now)? {
            return Ok(state);
        }
    }
    Ok(Box::new(FileShared::new(spool, now, log)))
}

/// What the receive path needs of the state it shares with other runs
/// (and, at a provider, with other relays).
pub trait Shared {
    /// Whether `key` (a message ID or an origin key) was accepted before.
    fn remembered(&mut self, kind: Kind, key: &str) -> Result<bool>;

    /// The time as the duplicate memory sees it, for this run.
    fn when(&mut self, max_clock_skew: Duration) -> Result<When>;

    /// Until when to remember a message with this expiry, accepted now.
    fn keep_until(&mut self, expiry: Option<Timestamp>) -> Result<Timestamp>;

    /// Remembers `key` of a message created at `created`, until at least
    /// `keep_until`. Durable after [`Shared::commit`].
    fn remember(
        &mut self,
        kind: Kind,
        key: &str,
        keep_until: Timestamp,
        created: Timestamp,
    ) -> Result<()>;

    /// The components learned behind each peer.
    fn learned(&self) -> &Learned;

    /// What the throttle counted as sent in the current periods (by every
    /// relay sharing this state).
    fn sent(&mut self) -> Result<crate::queue::throttle::Sent>;

    /// Records that `component` was seen arriving through `peer` (unless
    /// it is known through another).
    fn learn(&mut self, component: &Name, peer: &Name);

    /// Makes what was remembered and learned durable.
    fn commit(&mut self) -> Result<()>;

    /// Records acknowledgements owed to `peer`; durable on return.
    fn owe(&mut self, peer: &Name, owed: &[Owed]) -> Result<()>;

    /// Queues acknowledgements on their way to other components for their
    /// next hop `peer`; durable on return. Returns how many.
    fn pass_on(&mut self, peer: &Name, messages: &[Message], now: Timestamp) -> Result<usize>;

    /// Whether message `id` was handed to `peer` here (see
    /// `ack::note_handed`): only then may a notice about it come from
    /// `peer`'s side.
    fn handed(&mut self, id: &str, peer: &Name) -> Result<bool>;

    /// Applies the acknowledgements `from` sent for what this site sent it
    /// (discards what it took, buries what it refused).
    fn apply_acks(
        &mut self,
        acks: &[Message],
        from: &Name,
        now: Timestamp,
        log: &dyn Fn(String),
    ) -> Result<ack::Applied>;
}

/// [`Shared`] in the spool: `state/seen.idx`, `state/routes`,
/// `acks/pending/PEER`. The duplicate memory is opened only when first
/// needed, so a batch of acknowledgements alone writes nothing there (and
/// works on a full disk).
pub struct FileShared<'s> {
    spool: &'s Spool,
    now: Timestamp,
    seen: Option<Seen>,
    learned: Learned,
    handed: ack::Handed<'s>,
    log: &'s dyn Fn(String),
}

impl<'s> FileShared<'s> {
    /// The state of `spool`, for a run whose clock reads `now`. The caller
    /// holds the receive lock.
    pub fn new(spool: &'s Spool, now: Timestamp, log: &'s dyn Fn(String)) -> FileShared<'s> {
        FileShared {
            spool,
            now,
            seen: None,
            learned: Learned::load(spool),
            handed: ack::Handed::new(spool, now),
            log,
        }
    }

    /// The duplicate memory, opened (and compacted when due) on first use.
    pub fn seen(&mut self) -> Result<&mut Seen> {
        if self.seen.is_none() {
            let retention = self.spool.config().receive.dedupe_retention;
            let mut seen = Seen::open(&self.spool.dir(Area::State).join("seen.idx"), self.now)?;
            match seen.prune_if_due(retention) {
                Ok(0) => {}
                Ok(n) => (self.log)(format!(
                    "forgot {n} accepted ID(s) past their retention; messages created before {} are refused as not provably new",
                    seen.horizon().unwrap_or_default()
                )),
                Err(e) => (self.log)(format!("duplicate memory not compacted now: {e}")),
            }
            self.seen = Some(seen);
        }
        Ok(self.seen.as_mut().expect("opened above"))
    }
}

impl Shared for FileShared<'_> {
    fn remembered(&mut self, kind: Kind, key: &str) -> Result<bool> {
        self.seen()?.contains(kind, key)
    }

    fn when(&mut self, max_clock_skew: Duration) -> Result<When> {
        let now = self.now;
        let seen = self.seen()?;
        Ok(When {
            now,
            receive_time: seen.receive_time(),
            horizon: seen.horizon(),
            max_clock_skew,
            minute_of_day: now.minute_of_day(crate::time::local_offset_secs()),
        })
    }

    fn keep_until(&mut self, expiry: Option<Timestamp>) -> Result<Timestamp> {
        let retention = self.spool.config().receive.dedupe_retention;
        Ok(self.seen()?.keep_until(expiry, retention))
    }

    fn remember(
        &mut self,
        kind: Kind,
        key: &str,
        keep_until: Timestamp,
        created: Timestamp,
    ) -> Result<()> {
        self.seen()?.insert(kind, key, keep_until, created)
    }

    fn sent(&mut self) -> Result<crate::queue::throttle::Sent> {
        Ok(self.spool.throttle_sent())
    }

    fn learned(&self) -> &Learned {
        &self.learned
    }

    fn learn(&mut self, component: &Name, peer: &Name) {
        self.learned.learn(component, peer);
    }

    fn commit(&mut self) -> Result<()> {
        if let Some(seen) = self.seen.as_mut() {
            seen.sync()?;
        }
        self.learned.save(self.spool, self.now)
    }

    fn owe(&mut self, peer: &Name, owed: &[Owed]) -> Result<()> {
        ack::owe(self.spool, peer, owed)
    }

    fn pass_on(&mut self, peer: &Name, messages: &[Message], now: Timestamp) -> Result<usize> {
        ack::queue_out(self.spool, peer, messages, now)
    }

    fn handed(&mut self, id: &str, peer: &Name) -> Result<bool> {
        self.handed.was(id, peer)
    }

    fn apply_acks(
        &mut self,
        acks: &[Message],
        from: &Name,
        now: Timestamp,
        log: &dyn Fn(String),
    ) -> Result<ack::Applied> {
        ack::apply(self.spool, acks, from, now, log)
    }
}
