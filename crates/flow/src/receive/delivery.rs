//! Where a message delivered here goes: into the Maildir, unless the
//! program installed a [`Delivery`] on the spool that takes it instead (at
//! a provider, a message stream its services read). The pipeline keeps its
//! rules whatever the sink: a message is acknowledged only once the sink
//! has taken it durably, and what the sink cannot take now stays with its
//! sender ("retry later").

use std::io::Write;

use super::state::Shared;
use crate::message::Header;
use crate::spool::{Result, Spool};
use crate::time::Timestamp;

/// A sink for what is delivered here.
pub trait Delivery: Send + Sync {
    /// Whether this spool delivers through the sink (its configuration
    /// says so); when not, everything goes into the Maildir.
    fn active(&self, spool: &Spool) -> bool;

    /// Offers the messages delivered here in a batch; says of each, in
    /// order, what became of it. `state` is the batch's: what the sink
    /// records there is committed with the batch.
    fn deliver(
        &self,
        spool: &Spool,
        state: &mut dyn Shared,
        offered: &[Offered<'_>],
        now: Timestamp,
        log: &dyn Fn(String),
    ) -> Result<Vec<Delivered>>;
}

/// One message offered to a sink.
pub struct Offered<'a> {
    /// Its header as it came (the sink stamps its own trace).
    pub header: &'a Header,
    /// The bytes its data takes.
    pub size: u64,
    /// Writes it with this header.
    pub write: &'a dyn Fn(&Header, &mut dyn Write) -> std::io::Result<()>,
}

/// What became of a message offered to a sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Taken durably: it counts as delivered.
    Taken,
    /// Not taken now, with the reason: its sender keeps it and retries.
    Later(String),
    /// Not for this sink (too large for it): into the Maildir.
    Maildir,
}

/// The [`Delivery`] installed on a spool (`Spool::install`).
pub struct DeliverySink(pub Box<dyn Delivery>);
