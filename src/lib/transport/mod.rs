//! The seam where routes plug in. A transport takes due messages (in send
//! order, as `queue::throttle::due` selected them) and reports, per message,
//! what became of it; the spool applies the outcome (to sent/ awaiting an
//! acknowledgement, back to the queue for a retry, or to dead/).
//!
//! Architecture invariant: a transport never moves spool files itself and
//! never decides policy; it only carries bytes and reports.

use std::path::PathBuf;

use crate::spool::EntryName;

/// A message offered to a transport: its name (metadata) and its file.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub name: EntryName,
    pub path: PathBuf,
}

/// What a transport reports for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop took the bytes; wait for its acknowledgement.
    Handed,
    /// Not sent now (link down, 4xx, throttled by the peer): retry later.
    Deferred(String),
    /// The next hop refused it for good (5xx): the message is dead, with this reason.
    Refused(String),
}

/// One kind of route (directory, SMTP, HTTP).
pub trait Transport {
    /// A short name for logs (`dir:/media/usb`, `smtp:relay.example:25`).
    fn describe(&self) -> String;

    /// Carries `batch` (in send order) and reports one outcome per message,
    /// in the same order.
    fn send(&mut self, batch: &[Outgoing]) -> Vec<Outcome>;
}
