//! The areas of the spool and the outbound entries in them: each area's
//! directory and the word listings use for it, and reading an area's
//! entries back from their file names (the name says everything queue
//! policy needs, so listing never opens a message file). A file in an
//! outbound area whose name is not an entry name is quarantined when the
//! outbound areas are scanned whole.

use std::fs;
use std::path::PathBuf;

use super::{entry, EntryName, Error, Result, SentInfo, Spool};
use crate::message::Precedence;
use crate::time::Timestamp;

/// An area of the spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Area {
    Tmp,
    Queue(Precedence),
    Hold,
    Sent,
    Received,
    /// Acknowledgements owed, per peer (`acks/pending/PEER`, one line each).
    AcksPending,
    /// Acknowledgement envelopes ready to go, per peer (`acks/out/PEER/`).
    AcksOut,
    /// What acknowledgements said of this site's messages, per day.
    Journal,
    Leases,
    Dead,
    Quarantine,
    State,
    /// Messages a rule diverted to a handler, held until it consumes them
    /// (`divert/ID.msg` and `divert/ID.state`).
    Divert,
    /// Messages a rule gathers into aggregates, per rule and class
    /// (`aggregate/RULE/CLASS.SUBCLASS/ARRIVAL.ID.msg`).
    Aggregate,
}

impl Area {
    /// The areas holding messages this site must still deliver.
    pub const OUTBOUND: [Area; 5] = [
        Area::Queue(Precedence::Urgent),
        Area::Queue(Precedence::Normal),
        Area::Queue(Precedence::Bulk),
        Area::Hold,
        Area::Sent,
    ];

    pub(super) const ALL: [Area; 16] = [
        Area::Tmp,
        Area::Queue(Precedence::Urgent),
        Area::Queue(Precedence::Normal),
        Area::Queue(Precedence::Bulk),
        Area::Hold,
        Area::Sent,
        Area::Received,
        Area::AcksPending,
        Area::AcksOut,
        Area::Journal,
        Area::Leases,
        Area::Dead,
        Area::Quarantine,
        Area::State,
        Area::Divert,
        Area::Aggregate,
    ];

    pub fn dir_name(self) -> &'static str {
        match self {
            Area::Tmp => "tmp",
            Area::Queue(Precedence::Urgent) => "queue/urgent",
            Area::Queue(Precedence::Normal) => "queue/normal",
            Area::Queue(Precedence::Bulk) => "queue/bulk",
            Area::Hold => "hold",
            Area::Sent => "sent",
            Area::Received => "received",
            Area::AcksPending => "acks/pending",
            Area::AcksOut => "acks/out",
            Area::Journal => "acks/journal",
            Area::Leases => "leases",
            Area::Dead => "dead",
            Area::Quarantine => "quarantine",
            Area::State => "state",
            Area::Divert => "divert",
            Area::Aggregate => "aggregate",
        }
    }

    /// The word used for this area in listings and JSON.
    pub fn state_word(self) -> &'static str {
        match self {
            Area::Queue(_) => "queued",
            Area::Hold => "held",
            Area::Sent => "sent",
            Area::Dead => "dead",
            Area::Quarantine => "quarantined",
            Area::Received => "received",
            Area::AcksPending | Area::AcksOut => "ack",
            Area::Divert => "diverted",
            Area::Aggregate => "aggregating",
            Area::Tmp | Area::State | Area::Journal | Area::Leases => "internal",
        }
    }
}

/// An outbound message: where it is and what its name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub area: Area,
    pub name: EntryName,
    /// Set for messages in sent/.
    pub sent: Option<SentInfo>,
}

impl Entry {
    pub fn file_name(&self) -> String {
        match &self.sent {
            Some(info) => entry::sent_file_name(&self.name, info),
            None => self.name.to_string(),
        }
    }
}

impl Spool {
    /// Lists the entries of one area holding message files (outbound areas
    /// and dead/). Names that are not entry names (`.reason` files aside) are
    /// returned separately.
    pub fn scan(&self, area: Area) -> Result<(Vec<Entry>, Vec<String>)> {
        let dir = self.dir(area);
        let mut entries = Vec::new();
        let mut foreign = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))? {
            let e = e.map_err(|e| Error::io("read", &dir, e))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let parsed = if area == Area::Sent {
                entry::parse_sent(&name).map(|(name, info)| Entry {
                    area,
                    name,
                    sent: Some(info),
                })
            } else {
                EntryName::parse(&name).map(|name| Entry {
                    area,
                    name,
                    sent: None,
                })
            };
            match parsed {
                Some(entry) => entries.push(entry),
                None if area == Area::Dead && name.ends_with(".reason") => {}
                None => foreign.push(name.into_owned()),
            }
        }
        Ok((entries, foreign))
    }

    /// Every outbound entry (queued, held, sent), in no particular order.
    /// Foreign files in outbound areas are quarantined.
    pub fn scan_outbound(&self, now: Timestamp) -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        for area in Area::OUTBOUND {
            let (entries, foreign) = self.scan(area)?;
            all.extend(entries);
            for f in foreign {
                let path = self.dir(area).join(&f);
                let detail = format!("`{f}` in {} is not a message file name", area.dir_name());
                // A file that vanished meanwhile needs no quarantine.
                if path.exists() {
                    self.quarantine(&path, area.dir_name(), &detail, now)?;
                }
            }
        }
        Ok(all)
    }

    /// Finds an outbound entry by message ID.
    pub fn find(&self, id: &str) -> Result<Entry> {
        for area in Area::OUTBOUND {
            let (entries, _) = self.scan(area)?;
            if let Some(e) = entries.into_iter().find(|e| e.name.id.as_str() == id) {
                return Ok(e);
            }
        }
        Err(Error::NotFound {
            id: id.to_string(),
            spool: self.root.clone(),
        })
    }

    /// Count and bytes of the files in an area (bytes from names where names
    /// carry sizes, else from metadata).
    pub fn area_totals(&self, area: Area) -> Result<(u64, u64)> {
        let dir = self.dir(area);
        let mut count = 0;
        let mut bytes = 0;
        let dirs: Vec<PathBuf> = if area == Area::Received {
            vec![dir.join("new"), dir.join("cur")]
        } else {
            vec![dir]
        };
        for d in dirs {
            for entry in fs::read_dir(&d)
                .map_err(|e| Error::io("read", &d, e))?
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".reason") {
                    continue;
                }
                count += 1;
                bytes += match EntryName::parse(&name) {
                    Some(n) => n.size,
                    None => entry.metadata().map(|m| m.len()).unwrap_or(0),
                };
            }
        }
        Ok((count, bytes))
    }
}
