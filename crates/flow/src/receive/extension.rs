//! The receive pipeline's one seam: what the features composed into a
//! program may say about an inbound message. The pipeline names none of
//! them; the program that opens the spool installs an [`Extensions`] list
//! on it (`Spool::install`), in the order their claims are asked.
//!
//! A message is asked, in this order (see `decide`):
//! 1. [`Claims::check`], right after the duplicate check: a message that
//!    cannot be taken as sent (a map entry of another epoch) is answered
//!    and nothing is kept;
//! 2. the core's proof that it is new;
//! 3. [`Claims::before_routing`]: a claim whatever its next hop (a
//!    transfer to a group received here, a group expanded into copies);
//! 4. [`Claims::after_routing`], given its next hop: refused for who made
//!    it, taken by the program itself, held for a handler or an
//!    aggregate, discarded, or sent to another peer than routing's.
//!
//! The first extension that answers decides; the rest are not asked.
//!
//! Invariant: an extension decides, it does not act: whatever it claims is
//! kept, answered and remembered by the pipeline, under the same intent
//! and acknowledgement rules as every message (see the module above).

use super::decision::{Decision, Facts, When};
use crate::message::{Header, MimeType};
use crate::route::{Learned, NextHop};
use crate::spool::{Result, Spool};
use crate::time::{Clock, Timestamp};

/// A feature's part in receiving.
pub trait Extension: Send + Sync {
    /// What it needs to decide, read once for a batch (its state, its
    /// settings): every message of the batch is asked through the result.
    fn begin<'s>(&'s self, spool: &'s Spool, log: &dyn Fn(String)) -> Box<dyn Claims + 's>;

    /// Whether a message whose data has this MIME type is read only up to
    /// its data: the data is then written in place by
    /// [`Extension::write_in_place`] (or read whole, when kept otherwise).
    fn reads_data_in_place(&self, _mime: &str) -> bool {
        false
    }

    /// Writes the data of messages held as `Keep::InPlace` (each of a type
    /// it reads in place), durably before it returns; says of each, in
    /// order, what became of it. Called under the receive lock.
    fn write_in_place(
        &self,
        _spool: &Spool,
        items: &[InPlace<'_>],
        _now: Timestamp,
        _log: &dyn Fn(String),
    ) -> Result<Vec<Written>> {
        Ok(items
            .iter()
            .map(|_| Written::Later("nothing here writes it in place".into()))
            .collect())
    }

    /// Its share of the pending work that every command receiving or
    /// sending runs ([`crate::custody::tend`]): what it holds in `divert/`
    /// under its own label, its periodic sweeps. Says what it did in
    /// lines for the operator, none when it did nothing. What it holds
    /// stays safe when it fails, and waits for the next run.
    fn tend(&self, _spool: &Spool, _clock: &Clock, _log: &dyn Fn(String)) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// A message whose data an extension writes in place.
pub struct InPlace<'a> {
    pub header: &'a Header,
    pub mime: &'a MimeType,
    pub data: DataRef<'a>,
}

/// Where the data of a message is: in memory, or in the file it came in
/// (read from the current position).
#[derive(Clone, Copy)]
pub enum DataRef<'a> {
    Bytes(&'a [u8]),
    File(&'a std::fs::File),
}

/// What became of data given to [`Extension::write_in_place`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// Written and durable: the message is in custody here.
    Kept,
    /// It never will be: set aside in quarantine, with the reason (still
    /// acknowledged: damage that a retransmission would repeat).
    Bad(String),
    /// Not now: held in `divert/` under the claim's label for a later run.
    Later(String),
}

/// An extension's questions for one batch. Each answers `None` to say
/// "not mine".
pub trait Claims {
    /// Asked first (after the duplicate check).
    fn check(&self, _f: &Facts<'_>) -> Option<Decision> {
        None
    }

    /// Asked before routing.
    fn before_routing(&self, _f: &Facts<'_>, _when: &When, _learned: &Learned) -> Option<Claim> {
        None
    }

    /// Asked with the message's next hop.
    fn after_routing(
        &self,
        _f: &Facts<'_>,
        _when: &When,
        _hop: &NextHop,
        _learned: &Learned,
    ) -> Option<Claim> {
        None
    }
}

/// What an extension says of a message it claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This decision, as is.
    Decided(Decision),
    /// Send it to `peer` rather than where routing would (the rest of the
    /// decision is routing's: never back to the peer it came from, "retry
    /// later" while this relay is over its throttle).
    Route { peer: crate::message::Name },
}

/// The extensions of a program, in the order they are asked.
#[derive(Default)]
pub struct Extensions {
    list: Vec<Box<dyn Extension>>,
}

impl Extensions {
    pub fn new(list: Vec<Box<dyn Extension>>) -> Extensions {
        Extensions { list }
    }

    /// The extensions installed on `spool`, or none.
    pub fn of(spool: &Spool) -> &Extensions {
        static NONE: Extensions = Extensions { list: Vec::new() };
        spool.part::<Extensions>().unwrap_or(&NONE)
    }

    /// Each extension's claims for one batch, in order.
    pub fn begin<'s>(
        &'s self,
        spool: &'s Spool,
        log: &dyn Fn(String),
    ) -> Vec<Box<dyn Claims + 's>> {
        self.list.iter().map(|e| e.begin(spool, log)).collect()
    }

    /// Whether some extension reads data of this type only up to it.
    pub fn reads_data_in_place(&self, mime: &str) -> bool {
        self.list.iter().any(|e| e.reads_data_in_place(mime))
    }

    /// Has each item's data written in place by the first extension that
    /// reads its type so; says what became of each, in order.
    pub fn write_in_place(
        &self,
        spool: &Spool,
        items: &[InPlace<'_>],
        now: Timestamp,
        log: &dyn Fn(String),
    ) -> Result<Vec<Written>> {
        let mut out: Vec<Option<Written>> = vec![None; items.len()];
        for e in &self.list {
            let mine: Vec<usize> = (0..items.len())
                .filter(|&i| out[i].is_none() && e.reads_data_in_place(items[i].mime.as_str()))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let subset: Vec<InPlace<'_>> = mine
                .iter()
                .map(|&i| InPlace {
                    header: items[i].header,
                    mime: items[i].mime,
                    data: items[i].data,
                })
                .collect();
            for (i, w) in mine
                .into_iter()
                .zip(e.write_in_place(spool, &subset, now, log)?)
            {
                out[i] = Some(w);
            }
        }
        Ok(out
            .into_iter()
            .map(|w| w.unwrap_or_else(|| Written::Later("nothing here writes it in place".into())))
            .collect())
    }
}

impl Extensions {
    /// Each extension's pending work, in order (the first failure stops
    /// the pass); the lines they said.
    pub fn tend(&self, spool: &Spool, clock: &Clock, log: &dyn Fn(String)) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for e in &self.list {
            lines.extend(e.tend(spool, clock, log)?);
        }
        Ok(lines)
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({})", self.list.len())
    }
}
