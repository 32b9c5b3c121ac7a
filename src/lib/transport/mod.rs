//! The seam where routes plug in. `flush` picks what is due for a peer (in
//! send order, as the throttle, holds and leases allow) and hands it to the
//! peer's transport; the transport carries the bytes and reports, per file,
//! what became of it; `flush` applies the outcomes (to sent/ awaiting an
//! acknowledgement, left queued for a retry, or to dead/).
//!
//! Architecture invariant: a transport never moves spool files itself and
//! never decides policy; it only carries bytes and reports.

pub mod dir;
pub mod flush;
pub mod link;
pub mod smtp;
pub mod untrusted;

use std::path::PathBuf;

/// A file offered to a transport.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The file in the spool.
    pub path: PathBuf,
    /// The name it travels under (sorts in send order).
    pub wire_name: String,
}

/// What a transport reports for one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop (or the medium that carries to it) holds the bytes
    /// durably; wait for its acknowledgement.
    Handed,
    /// Not carried now (link down, medium full, 4xx): retry later.
    Deferred(String),
    /// The next hop refused it for good (5xx): the message is dead, with this reason.
    Refused(String),
}

/// One kind of route (directory, SMTP, HTTP).
pub trait Transport {
    /// A short name for logs (`dir:/media/usb`).
    fn describe(&self) -> String;

    /// Carries `batch` (in send order) and reports one outcome per file, in
    /// the same order.
    fn send(&mut self, batch: &[Outgoing]) -> Vec<Outcome>;

    /// How many messages to hand over between two records of progress
    /// (a run killed mid-flush sends at most this many again).
    fn chunk_size(&self) -> usize {
        1000
    }
}
