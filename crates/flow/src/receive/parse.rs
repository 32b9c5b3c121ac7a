//! Clearing and parsing an inbound envelope: its peer's protection removed
//! (or refused), its messages read (large data in bounded memory), and what
//! cannot be read set aside in quarantine with the reason.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, Write};

use super::{Fate, Inbound, Payload, Report, Unreadable};
use crate::message::{envelope, stream, Content, Header, Message, Name};
use crate::protect::{self, Protector};
use crate::spool::{Error, Quarantined, Result, Spool};
use crate::time::Timestamp;
pub(super) use crate::transport::IN_MEMORY;

/// A message taken from an inbound envelope.
pub(super) enum Incoming {
    Small(Message),
    /// A one-message data envelope checked in bounded memory ([`stream::scan`]).
    Large {
        layout: stream::Layout,
        file: File,
        /// False: only read up to its data (a chunk: see [`unwrap`]).
        checked: bool,
    },
}

impl Incoming {
    pub(super) fn header(&self) -> &Header {
        match self {
            Incoming::Small(m) => &m.header,
            Incoming::Large { layout, .. } => &layout.header,
        }
    }

    /// Its copy for one destination of a group message: the header's ID
    /// derived (`decide::copy_id`) and its destination that one target.
    pub(super) fn copy_for(&self, target: &crate::message::Target) -> Result<Incoming> {
        let mut header = self.header().clone();
        header.id = super::decide::copy_id(&header.id, target);
        if let crate::message::Locator::Destination(d) = &mut header.locator {
            d.targets = vec![target.clone()];
        }
        Ok(match self {
            Incoming::Small(m) => Incoming::Small(Message {
                header,
                content: m.content.clone(),
            }),
            Incoming::Large {
                layout,
                file,
                checked,
            } => Incoming::Large {
                layout: stream::Layout {
                    header,
                    ..layout.clone()
                },
                file: file
                    .try_clone()
                    .map_err(|e| Error::io("read", std::path::Path::new("inbound file"), e))?,
                checked: *checked,
            },
        })
    }

    /// About how many bytes storing it takes (for the free-space check).
    pub(super) fn stored_size(&self) -> u64 {
        let data = match self {
            Incoming::Small(m) => match &m.content {
                Content::Data(d) => d.bytes.len() as u64,
                _ => 0,
            },
            Incoming::Large { layout, .. } => layout.size,
        };
        data / 3 * 4 + 8192
    }

    /// Reads what parsing did not (the data of a chunk read only up to
    /// it); `Err`: why it cannot be kept.
    pub(super) fn check(&self) -> std::result::Result<(), Unreadable> {
        match self {
            Incoming::Large {
                file,
                checked: false,
                ..
            } => {
                let mut f = file.try_clone()?;
                Ok(stream::scan(&mut f).map(|_| ())?)
            }
            _ => Ok(()),
        }
    }

    /// Writes the message's envelope with `header` in place of its own.
    pub(super) fn write_with(&self, header: &Header, out: &mut dyn Write) -> std::io::Result<()> {
        match self {
            Incoming::Small(m) => {
                let m = Message {
                    header: header.clone(),
                    content: m.content.clone(),
                };
                let mut out = out;
                envelope::write(std::slice::from_ref(&m), &mut out)
            }
            Incoming::Large { layout, file, .. } => {
                let mut f = file.try_clone()?;
                stream::write_with_header(&mut f, layout, header, out)
            }
        }
    }
}

/// Reads the messages of an inbound envelope; one holding data that an
/// extension writes in place (`in_place`) only up to its data.
pub(super) fn unwrap(
    payload: &Payload,
    in_place: &dyn Fn(&str) -> bool,
) -> std::result::Result<Vec<Incoming>, Unreadable> {
    if payload.is_empty()? {
        return Err(Unreadable::Empty);
    }
    match payload {
        Payload::Bytes(b) => Ok(envelope::parse(b)?
            .into_iter()
            .map(Incoming::Small)
            .collect()),
        Payload::File(file) => {
            if let Some(layout) = large_in_place(file, in_place) {
                return Ok(vec![Incoming::Large {
                    layout,
                    file: file.try_clone()?,
                    checked: false,
                }]);
            }
            match stream::load_file(file)? {
                stream::Loaded::Messages(ms) => Ok(ms.into_iter().map(Incoming::Small).collect()),
                stream::Loaded::Large(layout) => Ok(vec![Incoming::Large {
                    layout: *layout,
                    file: file.try_clone()?,
                    checked: true,
                }]),
            }
        }
    }
}

/// A large envelope holding one message whose data is written in place
/// (a chunk of a transfer), read up to its data: the data is read once, as
/// it is written in place, or read whole before it is kept in any other
/// way ([`Incoming::check`]).
fn large_in_place(file: &File, in_place: &dyn Fn(&str) -> bool) -> Option<stream::Layout> {
    let mut f = file.try_clone().ok()?;
    let len = f.metadata().ok()?.len();
    if len <= stream::THRESHOLD {
        return None;
    }
    let layout = stream::scan_head(&mut f).ok()?;
    (in_place(layout.mime_type.as_str()) && layout.size < len).then_some(layout)
}

/// An inbound envelope its peer's protection let in.
pub(super) struct Cleared {
    /// The envelope decrypted, when it was protected (else the item's own).
    pub(super) plain: Option<Payload>,
    /// Whether its acknowledgements may discard anything: it comes from a
    /// peer without protection, or carries that peer's valid signature.
    /// (`require_signature = false` admits a peer's unsigned messages,
    /// never its unsigned acknowledgements.)
    pub(super) acks_trusted: bool,
}

/// Removes the protection of an inbound envelope, as its peer's
/// configuration requires; `Err(reason)` when it must be refused.
pub(super) fn clear(
    spool: &Spool,
    item: &Inbound,
    protectors: &mut HashMap<Name, Option<Protector>>,
    plaintexts: &mut Vec<crate::spool::Staged>,
    now: Timestamp,
) -> Result<std::result::Result<Cleared, Unreadable>> {
    let Some(peer) = spool.config().peer(item.from.as_str()) else {
        return Ok(Err(Unreadable::NotAPeer {
            peer: item.from.clone(),
        }));
    };
    if !protectors.contains_key(&item.from) {
        let p = Protector::for_peer(peer, crate::protect::OpenPgp::of(spool)).map_err(|e| {
            Error::Keys {
                peer: peer.id.to_string(),
                reason: e.to_string(),
            }
        })?;
        protectors.insert(item.from.clone(), p);
    }
    let protector = protectors.get(&item.from).and_then(Option::as_ref);
    let prefix = item
        .payload
        .prefix(65_536)
        .map_err(|e| Error::io("read", std::path::Path::new(&item.label), e))?;
    let wire = protect::wire(&prefix);
    let Some(protector) = protector else {
        return Ok(match wire {
            protect::Wire::Plain => Ok(Cleared {
                plain: None,
                acks_trusted: true,
            }),
            _ => Err(Unreadable::ProtectionNotConfigured {
                peer: item.from.clone(),
            }),
        });
    };
    if wire == protect::Wire::Plain {
        return Ok(if protector.accepts_plain() {
            Ok(Cleared {
                plain: None,
                acks_trusted: false,
            })
        } else {
            Err(Unreadable::Unsigned {
                peer: item.from.clone(),
            })
        });
    }
    let mut staged = spool.stage(now)?;
    let path = staged.path().to_path_buf();
    let result = {
        let mut out = std::io::BufWriter::new(&mut staged);
        let r = match &item.payload {
            Payload::Bytes(b) => protector.unprotect(&mut &b[..], &mut out, now),
            Payload::File(f) => {
                let mut f = std::io::BufReader::new(f);
                f.seek(std::io::SeekFrom::Start(0))
                    .map_err(|e| Error::io("read", std::path::Path::new(&item.label), e))?;
                protector.unprotect(&mut f, &mut out, now)
            }
        };
        r.and_then(|signed| {
            out.flush()
                .map(|()| signed)
                .map_err(|e| protect::Error::Io(e.to_string()))
        })
    };
    let signed = match result {
        Ok(signed) => signed,
        Err(protect::Error::Refused(why)) => return Ok(Err(Unreadable::Refused(why))),
        Err(protect::Error::Keys(reason)) => {
            return Err(Error::Keys {
                peer: item.from.to_string(),
                reason,
            })
        }
        Err(protect::Error::Io(e)) => {
            return Err(Error::io("decrypt into", &path, std::io::Error::other(e)))
        }
    };
    let plain = if staged.size() <= stream::THRESHOLD {
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        Payload::Bytes(bytes)
    } else {
        let file = File::open(&path).map_err(|e| Error::io("read", &path, e))?;
        plaintexts.push(staged);
        Payload::File(file)
    };
    Ok(Ok(Cleared {
        plain: Some(plain),
        acks_trusted: signed,
    }))
}

/// Quarantines an inbound envelope with `why`, or, when the disk has no
/// room for it above `min_free`, leaves it with its source.
pub fn set_aside(
    spool: &Spool,
    payload: &Payload,
    label: &str,
    why: &str,
    now: Timestamp,
    log: &dyn Fn(String),
    report: &mut Report,
) -> Result<Fate> {
    set_aside_as(
        Quarantined::Unreadable,
        spool,
        payload,
        label,
        why,
        now,
        log,
        report,
    )
}

/// [`set_aside`], saying why as `kind` in the `.reason` file.
#[allow(clippy::too_many_arguments)]
pub fn set_aside_as(
    kind: Quarantined,
    spool: &Spool,
    payload: &Payload,
    label: &str,
    why: &str,
    now: Timestamp,
    log: &dyn Fn(String),
    report: &mut Report,
) -> Result<Fate> {
    let size = payload.len()?;
    if size > spool.room()? {
        log(format!(
            "left {label} where it is ({why}): quarantining its {size} bytes would leave less than [spool] min_free"
        ));
        report.skipped += 1;
        return Ok(Fate::Left);
    }
    let q = payload.quarantine(spool, kind, label, &format!("{label}: {why}"), now)?;
    log(format!("quarantined {label} as {}: {why}", q.display()));
    report.quarantined += 1;
    Ok(Fate::Taken)
}
