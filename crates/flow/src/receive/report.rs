//! What a batch did, and what became of each envelope ([`Report`],
//! [`Fate`], [`Received`]); the running totals kept for `rs-queue stats`
//! ([`Counters`], `state/counters.json`).

use std::fs;

use crate::ack::{Applied, Owed};
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

/// What a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages (not acknowledgements) seen.
    pub messages: usize,
    /// Delivered into the Maildir.
    pub delivered: usize,
    /// Queued toward a next hop.
    pub relayed: usize,
    /// Dropped as duplicates (and acknowledged again).
    pub duplicates: usize,
    /// Refused for good (no route, expired, not provably new), acknowledged
    /// as rejected.
    pub rejected: usize,
    /// Discarded on purpose by a rule (acknowledged as accepted).
    pub discarded: usize,
    /// Held for a rule's handler, or for a rule's next aggregate.
    pub diverted: usize,
    pub aggregated: usize,
    /// Discarded, per rule.
    pub by_rule: std::collections::BTreeMap<String, usize>,
    /// Not taken now (queue full, disk nearly full): the sender keeps its
    /// copy and retries.
    pub retry: usize,
    /// Envelopes that could not be parsed, now in quarantine/.
    pub quarantined: usize,
    /// Messages and notices refused for who made or carried them (SPEC.md
    /// section 13a), each kept in quarantine/ with the reason; the rest of
    /// their envelope is taken.
    pub refused: usize,
    /// Entries of the source that were not read at all (links, FIFOs,
    /// devices, directories where files belong); left where they are.
    pub skipped: usize,
    /// Acknowledgements passed on toward other components.
    pub passed_on: usize,
    /// Acknowledgements ignored because their peer's signature was missing
    /// (a protected peer with `require_signature = false`).
    pub unsigned_acks: usize,
    pub acks: Applied,
}

impl Report {
    /// Adds another batch's counts to these.
    pub fn add(&mut self, o: &Report) {
        self.messages += o.messages;
        self.delivered += o.delivered;
        self.relayed += o.relayed;
        self.duplicates += o.duplicates;
        self.rejected += o.rejected;
        self.discarded += o.discarded;
        self.diverted += o.diverted;
        self.aggregated += o.aggregated;
        for (rule, n) in &o.by_rule {
            *self.by_rule.entry(rule.clone()).or_default() += n;
        }
        self.retry += o.retry;
        self.quarantined += o.quarantined;
        self.refused += o.refused;
        self.skipped += o.skipped;
        self.passed_on += o.passed_on;
        self.unsigned_acks += o.unsigned_acks;
        self.acks.discarded += o.acks.discarded;
        self.acks.rejected += o.acks.rejected;
        self.acks.recorded += o.acks.recorded;
        self.acks.requeued += o.acks.requeued;
    }
}

/// What became of one inbound envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// All it held was dealt with (stored, refused, a duplicate, or the
    /// envelope quarantined): its source may drop it.
    Taken,
    /// Some message in it is to be retried later (queue or disk full): its
    /// source keeps it, and should stop sending more for now.
    Retry,
    /// Unreadable, and too large to quarantine with the room left above
    /// `min_free`: its source keeps it (counted as skipped).
    Left,
}

/// What [`receive`] did with a batch.
#[derive(Debug, Default)]
pub struct Received {
    pub report: Report,
    /// Per inbound envelope, in the batch's order.
    pub fates: Vec<Fate>,
    /// With [`Answer::Reply`]: the answers to the messages received, one
    /// per message in the order they came, for the peer that sent them.
    pub replies: Vec<Owed>,
}

/// Running totals of what this site received (`state/counters.json`), for
/// `rs-queue stats`. Updated under the receive lock.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub messages: u64,
    pub delivered: u64,
    pub relayed: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub quarantined: u64,
    /// Discarded on purpose by rules, and per rule.
    #[serde(default)]
    pub discarded: u64,
    #[serde(default)]
    pub by_rule: std::collections::BTreeMap<String, u64>,
}

impl Counters {
    pub fn load(spool: &Spool) -> Counters {
        fs::read_to_string(spool.dir(Area::State).join("counters.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Adds a batch's counts. A cache: on failure (a full disk) the
    /// statistics lag, nothing else.
    pub(super) fn add(spool: &Spool, r: &Report, now: Timestamp) -> Result<()> {
        if *r == Report::default() {
            return Ok(());
        }
        let mut c = Counters::load(spool);
        c.messages += r.messages as u64;
        c.delivered += r.delivered as u64;
        c.relayed += r.relayed as u64;
        c.duplicates += r.duplicates as u64;
        c.rejected += r.rejected as u64;
        c.quarantined += (r.quarantined + r.refused) as u64;
        c.discarded += r.discarded as u64;
        for (rule, n) in &r.by_rule {
            *c.by_rule.entry(rule.clone()).or_default() += *n as u64;
        }
        let text = serde_json::to_string(&c).unwrap_or_default();
        durable::write_durable(
            &spool.dir(Area::Tmp),
            &spool.dir(Area::State),
            "counters.json",
            text.as_bytes(),
            now.as_micros(),
        )?;
        Ok(())
    }
}
