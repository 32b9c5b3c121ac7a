//! The seam where routes plug in. A route is an *exchange*: it is given
//! the batch that is due for its peer (possibly empty), carries it, and
//! reports per file what became of it, plus whatever the peer handed back
//! (an HTTP reply's responses, acknowledgements and back-channel messages).
//! The runner (`outbound`) decides what is due and applies the outcomes;
//! what came back goes through `receive` like anything else inbound.
//!
//! Architecture invariant: a transport never moves spool files itself and
//! never decides policy; it only carries bytes and reports.

pub mod dir;
mod error;
pub mod http;
pub mod smtp;
pub mod tus;
pub mod untrusted;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::message::envelope;
use crate::message::{Message, Name};
use crate::spool::{self, Spool};
use crate::stream::Reheaded;
use crate::time::Timestamp;

pub use error::Error;

/// What an outgoing file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cargo {
    /// One queued message (its outcome is recorded against the queue).
    Message,
    /// Acknowledgements owed to the peer (removed once handed over).
    Acks,
}

/// A file offered to a transport.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The file in the spool.
    pub path: PathBuf,
    /// The name it travels under (sorts in send order).
    pub wire_name: String,
    pub cargo: Cargo,
}

impl Outgoing {
    /// The file's bytes as they leave component `me` at `now`: a message
    /// with this hop's time sent in its trace ([`Header::stamp_sent`]),
    /// read as a stream; acknowledgements as they are.
    ///
    /// [`Header::stamp_sent`]: crate::message::Header::stamp_sent
    pub fn leaving(&self, me: &Name, now: Timestamp) -> std::io::Result<Reheaded> {
        self.leaving_at(me, now, None)
    }

    /// As [`Outgoing::leaving`], sent through a service point map entry of
    /// `epoch` (carried in the header, so the server can tell an outdated
    /// map).
    pub fn leaving_at(
        &self,
        me: &Name,
        now: Timestamp,
        epoch: Option<u64>,
    ) -> std::io::Result<Reheaded> {
        match self.cargo {
            // An epoch is one hop's: what came with one leaves without it.
            Cargo::Message => Reheaded::open(&self.path, |h| {
                h.stamp_sent(me, now);
                h.epoch = epoch;
            }),
            Cargo::Acks => Reheaded::verbatim(&self.path),
        }
    }

    /// The messages of a small file as they leave `me` at `now` (see
    /// [`Outgoing::leaving`]), parsed.
    pub fn leaving_messages(&self, me: &Name, now: Timestamp) -> Result<Vec<Message>, Error> {
        self.leaving_messages_at(me, now, None)
    }

    /// As [`Outgoing::leaving_messages`], through a map entry of `epoch`.
    pub fn leaving_messages_at(
        &self,
        me: &Name,
        now: Timestamp,
        epoch: Option<u64>,
    ) -> Result<Vec<Message>, Error> {
        let bytes = std::fs::read(&self.path).map_err(|source| Error::Read {
            path: self.path.clone(),
            source,
        })?;
        let mut messages = envelope::parse(&bytes).map_err(|source| Error::Parse {
            path: self.path.clone(),
            source,
        })?;
        if self.cargo == Cargo::Message {
            for m in &mut messages {
                m.header.stamp_sent(me, now);
                m.header.epoch = epoch;
            }
        }
        Ok(messages)
    }
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

/// What kind of failure a link had, for recovery (SPEC.md section 10):
/// each class gets one attempt at repair per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trouble {
    /// The peer could not be reached (refused, timed out, no route, a
    /// gateway that cannot reach it): a new configuration may help.
    Connectivity,
    /// The peer rejected this site's client certificate: a new
    /// certificate may help.
    Identity,
}

impl Trouble {
    pub fn as_str(self) -> &'static str {
        match self {
            Trouble::Connectivity => "connectivity",
            Trouble::Identity => "identity",
        }
    }
}

/// An exchange's result: one outcome per file offered, in order, and the
/// envelopes the peer handed back.
#[derive(Debug, Default)]
pub struct Exchanged {
    pub outcomes: Vec<Outcome>,
    pub returned: Vec<Payload>,
    /// Why an exchange that carried nothing (a poll) failed.
    pub failure: Option<String>,
    /// The class of the failure, when it has one recovery may address.
    pub trouble: Option<Trouble>,
}

impl Exchanged {
    /// Every file of `batch` with the same outcome, nothing handed back.
    pub fn all(batch: &[Outgoing], outcome: Outcome) -> Exchanged {
        Exchanged {
            outcomes: batch.iter().map(|_| outcome.clone()).collect(),
            returned: Vec::new(),
            failure: None,
            trouble: None,
        }
    }
}

/// One kind of route (directory, SMTP, HTTP).
pub trait Transport {
    /// A short name for logs (`dir:/media/usb`).
    fn describe(&self) -> String;

    /// Carries `batch` (in send order; possibly empty) to the peer and
    /// reports one outcome per file, in the same order, with whatever the
    /// peer handed back.
    fn exchange(&mut self, batch: &[Outgoing]) -> Exchanged;

    /// How many messages to hand over between two records of progress
    /// (a run killed mid-flush sends at most this many again).
    fn chunk_size(&self) -> usize {
        1000
    }

    /// Whether an exchange with nothing to send is worth making: the peer
    /// may hand something back (an HTTP poll). Media and mail cannot.
    fn polls(&self) -> bool {
        false
    }

    /// What the route has to say beyond its outcomes (a backup used, a map
    /// fetched again), for the run's log; taken once.
    fn notes(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// After the peer said the route's view of it is outdated (an epoch
    /// mismatch): renews that view (a fresh service point map) and says
    /// whether what was refused should go again now. Once per run: a
    /// second call says no.
    fn renew(&mut self) -> bool {
        false
    }
}

/// An inbound envelope's bytes, as a route carried them: in memory, or
/// (when large) in a file that is read as a stream through this
/// descriptor, never reopened by name.
#[derive(Debug)]
pub enum Payload {
    Bytes(Vec<u8>),
    File(File),
}

/// Envelopes above this size are kept in a file rather than in memory.
pub const IN_MEMORY: u64 = crate::message::stream::THRESHOLD;

impl Payload {
    /// The payload of an open inbound file: read into memory when small,
    /// else kept open to be read as a stream. `path` names it in errors.
    pub fn of_file(file: File, path: &Path) -> spool::Result<Payload> {
        let size = file
            .metadata()
            .map_err(|e| spool::Error::io("read", path, e))?
            .len();
        if size > IN_MEMORY {
            return Ok(Payload::File(file));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        // A file growing while it is read is cut at its size, plus one byte
        // that makes the envelope fail to parse rather than pass truncated.
        std::io::Read::read_to_end(&mut std::io::Read::take(&file, size + 1), &mut bytes)
            .map_err(|e| spool::Error::io("read", path, e))?;
        Ok(Payload::Bytes(bytes))
    }

    /// The envelope's size in bytes.
    pub fn len(&self) -> spool::Result<u64> {
        match self {
            Payload::Bytes(b) => Ok(b.len() as u64),
            Payload::File(f) => f
                .metadata()
                .map(|m| m.len())
                .map_err(|e| spool::Error::io("read", Path::new("inbound file"), e)),
        }
    }

    pub fn is_empty(&self) -> spool::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// At most the first `n` bytes.
    pub fn prefix(&self, n: usize) -> std::io::Result<Vec<u8>> {
        match self {
            Payload::Bytes(b) => Ok(b[..b.len().min(n)].to_vec()),
            Payload::File(f) => {
                let mut buf = vec![0u8; n];
                let mut got = 0;
                while got < n {
                    match f.read_at(&mut buf[got..], got as u64)? {
                        0 => break,
                        k => got += k,
                    }
                }
                buf.truncate(got);
                Ok(buf)
            }
        }
    }

    /// Stores the bytes in quarantine/ with `detail` as the reason.
    pub fn quarantine(
        &self,
        spool: &Spool,
        kind: crate::spool::Quarantined,
        label: &str,
        detail: &str,
        now: Timestamp,
    ) -> spool::Result<PathBuf> {
        match self {
            Payload::Bytes(b) => spool.quarantine_bytes(kind, b, "in", label, detail, now),
            Payload::File(f) => spool.quarantine_file(kind, f, label, detail, now),
        }
    }
}
