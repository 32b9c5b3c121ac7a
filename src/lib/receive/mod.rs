//! The one path every inbound message takes, whatever carried it: unwrap,
//! drop duplicates, deliver here or queue onward, remember, acknowledge.
//!
//! For a batch of inbound envelopes (all from one peer or several):
//! 1. clear and parse; what cannot be parsed, what fails its peer's
//!    protection, and an envelope whose peer speaks for a component it may
//!    not ([`route::may_speak_for`]) go to quarantine with the reason and
//!    are never acknowledged;
//! 2. acknowledgements are applied (or passed on toward the component they
//!    are addressed to);
//! 3. a message whose ID (or, for final delivery, origin key) is remembered
//!    is a duplicate: dropped, counted, and acknowledged again so a lost
//!    acknowledgement heals;
//! 4. a new message that cannot be proven new or is worthless is refused
//!    and its origin told: expired before it arrived, created in the future
//!    (beyond `max_clock_skew`), or created at or before the duplicate
//!    memory's horizon (`spool::seen`);
//! 5. the others are written down as intended (`state/receive.intent`),
//!    then delivered into the Maildir or admitted to this site's queue
//!    toward the next hop, as far as the disk has room above `min_free`
//!    (the rest is answered "retry later"), then remembered
//!    (`state/seen.idx`), and only then acknowledged (`acks/pending/PEER`).
//!
//! Architecture invariant: an acknowledgement is owed only after the
//! message is durable here (delivered or queued onward) and its ID is
//! remembered; a message is delivered into the Maildir at most once, even if
//! a run dies between delivering and remembering (the intent file lets the
//! next run find what was delivered and finish). Batches hold the receive
//! lock (`state/receive.lock`), so two runs never decide on the same ID at once.
//!
//! Architecture invariant: a batch of acknowledgements alone writes nothing
//! but the journal (best effort) and unlinks, so it applies on a full disk.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Seek, Write};

pub mod mail;
pub mod media;

use crate::ack::{self, Applied, Owed};
use crate::message::{
    envelope, stream, Content, Header, Locator, Message, MessageId, Name, ResponseStatus, Routing,
};
use crate::protect::{self, Protector};
use crate::route::{self, Learned, NextHop};
use crate::spool::seen::{Kind, Seen};
use crate::spool::{durable, maildir, Admission, Area, EntryName, Error, Result, Spool};
use crate::time::Timestamp;
pub use crate::transport::Payload;

/// One inbound envelope and the peer whose route carried it.
pub struct Inbound {
    pub payload: Payload,
    pub from: Name,
    /// Where it came from, for logs and quarantine reasons (a path, "stdin").
    pub label: String,
}

/// A message taken from an inbound envelope.
enum Incoming {
    Small(Message),
    /// A one-message data envelope checked in bounded memory ([`stream::scan`]).
    Large {
        layout: stream::Layout,
        file: File,
    },
}

impl Incoming {
    fn header(&self) -> &Header {
        match self {
            Incoming::Small(m) => &m.header,
            Incoming::Large { layout, .. } => &layout.header,
        }
    }

    /// About how many bytes storing it takes (for the free-space check).
    fn stored_size(&self) -> u64 {
        let data = match self {
            Incoming::Small(m) => match &m.content {
                Content::Data(d) => d.bytes.len() as u64,
                _ => 0,
            },
            Incoming::Large { layout, .. } => layout.size,
        };
        data / 3 * 4 + 8192
    }

    /// Writes the message's envelope with `header` in place of its own.
    fn write_with(&self, header: &Header, out: &mut dyn Write) -> std::io::Result<()> {
        match self {
            Incoming::Small(m) => {
                let m = Message {
                    header: header.clone(),
                    content: m.content.clone(),
                };
                let mut out = out;
                envelope::write(std::slice::from_ref(&m), &mut out)
            }
            Incoming::Large { layout, file } => {
                let mut f = file.try_clone()?;
                stream::write_with_header(&mut f, layout, header, out)
            }
        }
    }
}

/// Reads the messages of an inbound envelope.
fn unwrap(payload: &Payload) -> std::result::Result<Vec<Incoming>, String> {
    if payload.is_empty().map_err(|e| e.to_string())? {
        return Err("the file is empty (0 bytes): it holds no envelope".into());
    }
    match payload {
        Payload::Bytes(b) => envelope::parse(b)
            .map(|ms| ms.into_iter().map(Incoming::Small).collect())
            .map_err(|e| e.to_string()),
        Payload::File(file) => match stream::load_file(file).map_err(|e| e.to_string())? {
            stream::Loaded::Messages(ms) => Ok(ms.into_iter().map(Incoming::Small).collect()),
            stream::Loaded::Large(layout) => Ok(vec![Incoming::Large {
                layout: *layout,
                file: file.try_clone().map_err(|e| e.to_string())?,
            }]),
        },
    }
}

/// An inbound envelope its peer's protection let in.
struct Cleared {
    /// The envelope decrypted, when it was protected (else the item's own).
    plain: Option<Payload>,
    /// Whether its acknowledgements may discard anything: it comes from a
    /// peer without protection, or carries that peer's valid signature.
    /// (`require_signature = false` admits a peer's unsigned messages,
    /// never its unsigned acknowledgements.)
    acks_trusted: bool,
}

/// Removes the protection of an inbound envelope, as its peer's
/// configuration requires; `Err(reason)` when it must be refused.
fn clear(
    spool: &Spool,
    item: &Inbound,
    protectors: &mut HashMap<Name, Option<Protector>>,
    plaintexts: &mut Vec<crate::spool::Staged>,
    now: Timestamp,
) -> Result<std::result::Result<Cleared, String>> {
    let Some(peer) = spool.config().peer(item.from.as_str()) else {
        return Ok(Err(format!("{} is not a configured peer", item.from)));
    };
    if !protectors.contains_key(&item.from) {
        let p = Protector::for_peer(peer).map_err(|e| Error::Keys {
            peer: peer.id.to_string(),
            reason: e.to_string(),
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
            _ => Err(format!(
                "a protected message from {}, whose protection is not configured (set protection, our_key and peer_cert in config.toml)",
                item.from
            )),
        });
    };
    if wire == protect::Wire::Plain {
        return Ok(if protector.accepts_plain() {
            Ok(Cleared {
                plain: None,
                acks_trusted: false,
            })
        } else {
            Err(format!(
                "the message is not protected, and {}'s messages must be signed",
                item.from
            ))
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
        Err(protect::Error::Refused(why)) => return Ok(Err(why)),
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
    /// Not taken now (queue full, disk nearly full): the sender keeps its
    /// copy and retries.
    pub retry: usize,
    /// Envelopes that could not be parsed, now in quarantine/.
    pub quarantined: usize,
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
        self.retry += o.retry;
        self.quarantined += o.quarantined;
        self.skipped += o.skipped;
        self.passed_on += o.passed_on;
        self.unsigned_acks += o.unsigned_acks;
        self.acks.discarded += o.acks.discarded;
        self.acks.rejected += o.acks.rejected;
        self.acks.recorded += o.acks.recorded;
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
    let size = payload.len()?;
    if size > spool.room()? {
        log(format!(
            "left {label} where it is ({why}): quarantining its {size} bytes would leave less than [spool] min_free"
        ));
        report.skipped += 1;
        return Ok(Fate::Left);
    }
    let q = payload.quarantine(spool, label, &format!("{label}: {why}"), now)?;
    log(format!("quarantined {label} as {}: {why}", q.display()));
    report.quarantined += 1;
    Ok(Fate::Taken)
}

/// Running totals of what this site received (`state/counters.json`), for
/// `rs-queue stats`. Updated under the receive lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub messages: u64,
    pub delivered: u64,
    pub relayed: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub quarantined: u64,
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
    fn add(spool: &Spool, r: &Report, now: Timestamp) -> Result<()> {
        if *r == Report::default() {
            return Ok(());
        }
        let mut c = Counters::load(spool);
        c.messages += r.messages as u64;
        c.delivered += r.delivered as u64;
        c.relayed += r.relayed as u64;
        c.duplicates += r.duplicates as u64;
        c.rejected += r.rejected as u64;
        c.quarantined += r.quarantined as u64;
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

/// The receive lock: held for a batch.
pub struct ReceiveLock {
    _file: File,
}

impl ReceiveLock {
    pub fn take(spool: &Spool) -> Result<ReceiveLock> {
        let path = spool.dir(Area::State).join("receive.lock");
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        fs2::FileExt::lock_exclusive(&file).map_err(|e| Error::io("lock", &path, e))?;
        Ok(ReceiveLock { _file: file })
    }
}

/// How a new message is disposed of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposition {
    Local,
    Relay,
}

/// A line of the intent file: a message being delivered or queued onward.
struct Intent {
    id: MessageId,
    from: Name,
    keep_until: Timestamp,
    disposition: Disposition,
    /// The message's creation time (absent in lines of earlier versions).
    created: Option<Timestamp>,
}

impl Intent {
    fn line(&self) -> String {
        let d = match self.disposition {
            Disposition::Local => "local",
            Disposition::Relay => "relay",
        };
        let created = self
            .created
            .map_or(String::new(), |c| format!(" {}", c.as_secs()));
        format!(
            "{} {} {} {d}{created}\n",
            self.id,
            self.from,
            self.keep_until.as_secs()
        )
    }

    fn parse(line: &str) -> Option<Intent> {
        let mut f = line.split(' ');
        Some(Intent {
            id: MessageId::parse(f.next()?).ok()?,
            from: Name::new("from", f.next()?).ok()?,
            keep_until: Timestamp::from_secs(f.next()?.parse().ok()?),
            disposition: match f.next()? {
                "local" => Disposition::Local,
                "relay" => Disposition::Relay,
                _ => return None,
            },
            created: f
                .next()
                .and_then(|c| c.parse().ok())
                .map(Timestamp::from_secs),
        })
    }
}

fn intent_path(spool: &Spool) -> std::path::PathBuf {
    spool.dir(Area::State).join("receive.intent")
}

/// Finishes what a run that died mid-batch left in the intent file: what it
/// delivered or queued is remembered and acknowledged; what it did not is
/// left for the sender's retransmission.
fn recover(spool: &Spool, seen: &mut Seen, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    let path = intent_path(spool);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
    let retention = spool.config().receive.dedupe_retention;
    let intents: Vec<Intent> = text.lines().filter_map(Intent::parse).collect();
    let mut delivered: Option<HashSet<String>> = None;
    let mut queued: Option<HashSet<String>> = None;
    let mut owed: HashMap<Name, Vec<Owed>> = HashMap::new();
    let mut finished = 0;
    for i in &intents {
        if seen.contains(Kind::Id, i.id.as_str())? {
            continue;
        }
        let present = match i.disposition {
            Disposition::Local => {
                let set = match &mut delivered {
                    Some(s) => s,
                    None => delivered.insert(maildir::ids(spool)?),
                };
                set.contains(i.id.as_str())
            }
            Disposition::Relay => {
                let set = match &mut queued {
                    Some(s) => s,
                    None => queued.insert(
                        spool
                            .scan_outbound(now)?
                            .into_iter()
                            .map(|e| e.name.id.to_string())
                            .collect(),
                    ),
                };
                set.contains(i.id.as_str())
            }
        };
        if present {
            let created = i
                .created
                .unwrap_or_else(|| i.keep_until.saturating_sub(retention));
            seen.insert(Kind::Id, i.id.as_str(), i.keep_until, created)?;
            let code = if i.disposition == Disposition::Local {
                "delivered"
            } else {
                "custody"
            };
            owed.entry(i.from.clone()).or_default().push(Owed {
                id: i.id.clone(),
                status: ResponseStatus::Accepted,
                code,
                to: i.from.clone(),
                reason: String::new(),
            });
            finished += 1;
        }
    }
    seen.sync()?;
    for (peer, o) in &owed {
        ack::owe(spool, peer, o)?;
    }
    fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
    if finished > 0 {
        log(format!(
            "recovered {finished} message(s) an interrupted run had stored but not acknowledged"
        ));
    }
    Ok(())
}

/// An inbound envelope, cleared and parsed.
struct Parsed {
    index: usize,
    item: Inbound,
    cleared: Cleared,
    messages: Vec<Incoming>,
}

impl Parsed {
    fn payload(&self) -> &Payload {
        self.cleared.plain.as_ref().unwrap_or(&self.item.payload)
    }

    fn has_messages(&self) -> bool {
        self.messages.iter().any(|m| match m {
            Incoming::Small(a) => !ack::is_ack(a),
            Incoming::Large { .. } => true,
        })
    }
}

/// A new message that will be stored here.
struct ToStore {
    m: Incoming,
    from: Name,
    index: usize,
    disposition: Disposition,
}

/// Why a new message cannot be taken, whatever its route: it expired in
/// transit, claims to come from the future, or is too old to be proven new.
fn unprovable(
    h: &Header,
    seen: &Seen,
    now: Timestamp,
    skew: std::time::Duration,
) -> Option<String> {
    if let Some(expiry) = h.qos().expiry.filter(|e| *e <= now) {
        return Some(format!("it expired at {expiry}, before it arrived here"));
    }
    let latest = seen.receive_time().saturating_add(skew);
    if h.created > latest {
        return Some(format!(
            "it was created at {}, later than this site's time {} by more than max_clock_skew: the clock of its sender is wrong",
            h.created,
            seen.receive_time()
        ));
    }
    match seen.horizon() {
        Some(z) if h.created <= z => Some(format!(
            "it was created at {}, at or before {z}, the newest creation time among the IDs this site has forgotten: it cannot be proven new, so it is not delivered (raise [receive] dedupe_retention to remember IDs longer)",
            h.created
        )),
        _ => None,
    }
}

/// Receives a batch of inbound envelopes. See the module documentation.
pub fn receive(
    spool: &Spool,
    batch: Vec<Inbound>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Received> {
    let _lock = ReceiveLock::take(spool)?;
    spool.clean_maildir_tmp(now)?;
    let config = spool.config();
    let me = &config.component;
    let retention = config.receive.dedupe_retention;
    let mut fates = vec![Fate::Taken; batch.len()];
    let mut report = Report::default();

    // Clear and parse.
    let mut protectors: HashMap<Name, Option<Protector>> = HashMap::new();
    // Decrypted envelopes in tmp/, removed when the batch ends.
    let mut plaintexts: Vec<crate::spool::Staged> = Vec::new();
    let mut parsed: Vec<Parsed> = Vec::with_capacity(batch.len());
    for (index, item) in batch.into_iter().enumerate() {
        let cleared = match clear(spool, &item, &mut protectors, &mut plaintexts, now)? {
            Ok(c) => c,
            Err(why) => {
                fates[index] = set_aside(
                    spool,
                    &item.payload,
                    &item.label,
                    &why,
                    now,
                    log,
                    &mut report,
                )?;
                continue;
            }
        };
        let payload = cleared.plain.as_ref().unwrap_or(&item.payload);
        match unwrap(payload) {
            Ok(messages) => parsed.push(Parsed {
                index,
                item,
                cleared,
                messages,
            }),
            Err(e) => {
                fates[index] = set_aside(spool, payload, &item.label, &e, now, log, &mut report)?;
            }
        }
    }

    // The duplicate memory, only when there is something to remember (a
    // batch of acknowledgements alone must work on a full disk).
    let intent_left = intent_path(spool).exists();
    let mut seen = if intent_left || parsed.iter().any(Parsed::has_messages) {
        let mut seen = Seen::open(&spool.dir(Area::State).join("seen.idx"), now)?;
        match seen.prune_if_due(retention) {
            Ok(0) => {}
            Ok(n) => log(format!(
                "forgot {n} accepted ID(s) past their retention; messages created before {} are refused as not provably new",
                seen.horizon().unwrap_or_default()
            )),
            Err(e) => log(format!("duplicate memory not compacted now: {e}")),
        }
        recover(spool, &mut seen, now, log)?;
        Some(seen)
    } else {
        None
    };
    let mut learned = Learned::load(spool);

    let mut owed: HashMap<Name, Vec<Owed>> = HashMap::new();
    let mut acks_from: HashMap<Name, Vec<Message>> = HashMap::new();
    let mut pass_on: HashMap<Name, Vec<Message>> = HashMap::new();
    let mut to_store: Vec<ToStore> = Vec::new();
    let mut remember_only: Vec<(MessageId, Timestamp, Timestamp)> = Vec::new();
    let mut batch_ids: HashSet<String> = HashSet::new();
    let mut batch_keys: HashSet<String> = HashSet::new();
    let mut duplicate_ids: Vec<String> = Vec::new();
    let mut owe = |peer: &Name, id: &MessageId, status, code, to: &Name, reason: String| {
        owed.entry(peer.clone()).or_default().push(Owed {
            id: id.clone(),
            status,
            code,
            to: to.clone(),
            reason,
        });
    };

    for p in parsed {
        let from = p.item.from.clone();
        // A peer speaks only for itself and what is behind it.
        let forged = p.messages.iter().find_map(|m| match &m.header().locator {
            Locator::Source(s) => route::may_speak_for(&from, &s.component, config, &learned)
                .err()
                .map(|why| (m.header().id.clone(), why)),
            Locator::Destination(_) => None,
        });
        if let Some((id, why)) = forged {
            let why = format!("message {id}: {why}");
            fates[p.index] = set_aside(
                spool,
                p.payload(),
                &p.item.label,
                &why,
                now,
                log,
                &mut report,
            )?;
            continue;
        }
        for m in p.messages {
            let m = match m {
                Incoming::Small(a) if ack::is_ack(&a) && !p.cleared.acks_trusted => {
                    log(format!(
                        "acknowledgement {} from {from} ignored: not signed by {from}'s key, so it discards nothing (require_signature = false admits unsigned messages, not unsigned acknowledgements)",
                        a.header.id
                    ));
                    report.unsigned_acks += 1;
                    continue;
                }
                Incoming::Small(a) if ack::is_ack(&a) => {
                    match route::next_hop(&a.header, config, &learned) {
                        NextHop::Local => acks_from.entry(from.clone()).or_default().push(a),
                        NextHop::Peer(p) => pass_on.entry(p).or_default().push(a),
                        NextHop::Unknown(why) => {
                            log(format!("acknowledgement {} dropped: {why}", a.header.id))
                        }
                    }
                    continue;
                }
                other => other,
            };
            let Some(seen) = seen.as_ref() else {
                unreachable!("the duplicate memory is open when messages arrive")
            };
            report.messages += 1;
            let id = m.header().id.clone();
            if batch_ids.contains(id.as_str()) || seen.contains(Kind::Id, id.as_str())? {
                report.duplicates += 1;
                duplicate_ids.push(id.to_string());
                owe(
                    &from,
                    &id,
                    ResponseStatus::Accepted,
                    "duplicate",
                    &from,
                    String::new(),
                );
                continue;
            }
            batch_ids.insert(id.to_string());
            if let Some(why) = unprovable(m.header(), seen, now, config.receive.max_clock_skew) {
                report.rejected += 1;
                log(format!("{id} from {from} refused: {why}"));
                owe_rejection(m.header(), &from, config, &learned, &why, &mut owe);
                continue;
            }
            if let Locator::Source(s) = &m.header().locator {
                learned.learn(&s.component, &from);
            }
            let hop = match route::next_hop(m.header(), config, &learned) {
                NextHop::Peer(p) if p == from => {
                    NextHop::Unknown(format!("its next hop would be {p}, the peer it came from"))
                }
                other => other,
            };
            let keep = seen.keep_until(m.header().qos().expiry, retention);
            match hop {
                NextHop::Local => {
                    if let Some(key) = &m.header().origin_key {
                        if batch_keys.contains(key.as_str())
                            || seen.contains(Kind::OriginKey, key.as_str())?
                        {
                            report.duplicates += 1;
                            log(format!("{id} dropped: origin key {key} was delivered already (a redundant sender's report)"));
                            remember_only.push((id.clone(), keep, m.header().created));
                            owe(
                                &from,
                                &id,
                                ResponseStatus::Accepted,
                                "duplicate",
                                &from,
                                "same origin key as a message delivered earlier".into(),
                            );
                            continue;
                        }
                        batch_keys.insert(key.to_string());
                    }
                    to_store.push(ToStore {
                        m,
                        from: from.clone(),
                        index: p.index,
                        disposition: Disposition::Local,
                    });
                }
                NextHop::Peer(_) => to_store.push(ToStore {
                    m,
                    from: from.clone(),
                    index: p.index,
                    disposition: Disposition::Relay,
                }),
                NextHop::Unknown(why) => {
                    report.rejected += 1;
                    log(format!("{id} from {from} rejected: {why}"));
                    remember_only.push((id.clone(), keep, m.header().created));
                    owe_rejection(m.header(), &from, config, &learned, &why, &mut owe);
                }
            }
        }
    }

    // Only what the disk has room for (above min_free) is stored now; the
    // rest is answered "retry later" and its envelope stays with its source.
    if !to_store.is_empty() {
        let mut room = spool.room()?;
        let mut fits = 0;
        for t in &to_store {
            let size = t.m.stored_size();
            if size > room {
                break;
            }
            room -= size;
            fits += 1;
        }
        if fits < to_store.len() {
            let why = format!(
                "the disk of {me} is nearly full (less than [spool] min_free = {} would be left)",
                config.spool.min_free
            );
            log(format!(
                "{} message(s) not taken now: {why}; they stay with their senders",
                to_store.len() - fits
            ));
            for t in to_store.drain(fits..) {
                report.retry += 1;
                fates[t.index] = Fate::Retry;
                let id = t.m.header().id.clone();
                owe(
                    &t.from,
                    &id,
                    ResponseStatus::RejectedRetry,
                    "retry",
                    &t.from,
                    why.clone(),
                );
            }
        }
    }

    let mut remember: Vec<(MessageId, Timestamp, Timestamp)> = remember_only;
    if let Some(seen) = seen.as_mut() {
        // Write down what is about to be stored, so a crash cannot make us
        // deliver twice or forget to acknowledge.
        let intents: String = to_store
            .iter()
            .map(|t| {
                Intent {
                    id: t.m.header().id.clone(),
                    from: t.from.clone(),
                    keep_until: seen.keep_until(t.m.header().qos().expiry, retention),
                    disposition: t.disposition,
                    created: Some(t.m.header().created),
                }
                .line()
            })
            .collect();
        if !intents.is_empty() {
            durable::write_durable(
                &spool.dir(Area::Tmp),
                &spool.dir(Area::State),
                "receive.intent",
                intents.as_bytes(),
                now.as_micros(),
            )?;
        }

        let stamp = |h: &Header| {
            let mut h = h.clone();
            h.routing.push(Routing {
                component: me.clone(),
                received: Some(now),
                sent: None,
            });
            h
        };
        let (locals, relays): (Vec<&ToStore>, Vec<&ToStore>) = to_store
            .iter()
            .partition(|t| t.disposition == Disposition::Local);

        // Final delivery.
        let items: Vec<(MessageId, maildir::Writer<'_>)> = locals
            .iter()
            .map(|t| {
                let header = stamp(t.m.header());
                let write: maildir::Writer<'_> =
                    Box::new(move |out: &mut dyn Write| t.m.write_with(&header, out));
                (t.m.header().id.clone(), write)
            })
            .collect();
        maildir::deliver(spool, &items, now)?;
        for t in &locals {
            let h = t.m.header();
            report.delivered += 1;
            remember.push((
                h.id.clone(),
                seen.keep_until(h.qos().expiry, retention),
                h.created,
            ));
            owe(
                &t.from,
                &h.id,
                ResponseStatus::Accepted,
                "delivered",
                &t.from,
                String::new(),
            );
            notify_origin(
                h,
                &t.from,
                me,
                config,
                &learned,
                ResponseStatus::Accepted,
                "final-delivered",
                &format!("delivered at {me}"),
                &mut owe,
            );
        }

        // Custody on the way to a next hop: admitted to this site's queue.
        if !relays.is_empty() {
            let mut staged = Vec::with_capacity(relays.len());
            for t in &relays {
                let h = t.m.header();
                let mut s = spool.stage(now)?;
                let path = s.path().to_path_buf();
                t.m.write_with(&stamp(h), &mut s)
                    .map_err(|e| Error::io("write", &path, e))?;
                let q = h.qos();
                let name = EntryName {
                    arrival: 0,
                    id: h.id.clone(),
                    precedence: q.precedence,
                    persistence: q.persistence,
                    addressed: matches!(h.locator, Locator::Destination(_)),
                    created: h.created,
                    expiry: q.expiry,
                    size: s.size(),
                };
                staged.push((s, name));
            }
            durable::sync_filesystem(&spool.dir(Area::Tmp))?;
            let admissions = spool.lock(now)?.admit_many(staged, now)?;
            for (t, admission) in relays.iter().zip(admissions) {
                let h = t.m.header();
                match admission {
                    Admission::Queued { evicted, .. } => {
                        for (victim, detail) in evicted {
                            log(format!("{} moved to dead/: {detail}", victim.id));
                        }
                        report.relayed += 1;
                        remember.push((
                            h.id.clone(),
                            seen.keep_until(h.qos().expiry, retention),
                            h.created,
                        ));
                        owe(
                            &t.from,
                            &h.id,
                            ResponseStatus::Accepted,
                            "custody",
                            &t.from,
                            String::new(),
                        );
                    }
                    Admission::Rejected { detail, .. } => {
                        report.retry += 1;
                        fates[t.index] = Fate::Retry;
                        log(format!("{} from {} not taken now: {detail}", h.id, t.from));
                        owe(
                            &t.from,
                            &h.id,
                            ResponseStatus::RejectedRetry,
                            "retry",
                            &t.from,
                            detail,
                        );
                    }
                }
            }
        }

        for (id, keep, created) in &remember {
            seen.insert(Kind::Id, id.as_str(), *keep, *created)?;
        }
        for t in &locals {
            let h = t.m.header();
            if let Some(key) = &h.origin_key {
                seen.insert(
                    Kind::OriginKey,
                    key.as_str(),
                    seen.keep_until(h.qos().expiry, retention),
                    h.created,
                )?;
            }
        }
        seen.sync()?;
    }
    for (peer, o) in &owed {
        ack::owe(spool, peer, o)?;
    }
    for (peer, ms) in &pass_on {
        report.passed_on += ack::queue_out(spool, peer, ms, now)?;
    }
    learned.save(spool, now)?;
    if !duplicate_ids.is_empty() {
        let shown: Vec<&str> = duplicate_ids.iter().take(5).map(String::as_str).collect();
        let more = duplicate_ids.len().saturating_sub(shown.len());
        log(format!(
            "dropped {} duplicate(s), acknowledged again: {}{}",
            duplicate_ids.len(),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if let Err(e) = Counters::add(spool, &report, now) {
        log(format!("statistics not updated: {e}"));
    }
    let intent = intent_path(spool);
    if intent.exists() {
        fs::remove_file(&intent).map_err(|e| Error::io("remove", &intent, e))?;
    }
    for (from, acks) in &acks_from {
        let a = ack::apply(spool, acks, from, now, log)?;
        report.add(&Report {
            acks: a,
            ..Report::default()
        });
    }
    Ok(Received { report, fates })
}

/// Owes `from` a rejection of the message with header `h`, and its origin
/// a notice of it.
fn owe_rejection(
    h: &Header,
    from: &Name,
    config: &crate::config::Config,
    learned: &Learned,
    why: &str,
    owe: &mut impl FnMut(&Name, &MessageId, ResponseStatus, &'static str, &Name, String),
) {
    let me = &config.component;
    owe(
        from,
        &h.id,
        ResponseStatus::Rejected,
        "rejected",
        from,
        why.to_string(),
    );
    notify_origin(
        h,
        from,
        me,
        config,
        learned,
        ResponseStatus::Rejected,
        "final-rejected",
        &format!("rejected at {me}: {why}"),
        owe,
    );
}

/// Owes the message's origin a notice (delivered, or rejected) when the
/// origin is not the peer it came from: the final outcome travels back end
/// to end, through the route that leads to the origin.
#[allow(clippy::too_many_arguments)]
fn notify_origin(
    h: &Header,
    from: &Name,
    me: &Name,
    config: &crate::config::Config,
    learned: &Learned,
    status: ResponseStatus,
    code: &'static str,
    reason: &str,
    owe: &mut impl FnMut(&Name, &MessageId, ResponseStatus, &'static str, &Name, String),
) {
    let Locator::Source(s) = &h.locator else {
        return;
    };
    if s.component == *from || s.component == *me {
        return;
    }
    let via = match route::toward(&s.component, config, learned) {
        Some(NextHop::Peer(p)) => p,
        _ => from.clone(),
    };
    owe(&via, &h.id, status, code, &s.component, reason.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_lines_round_trip() {
        let i = Intent {
            id: MessageId::parse("m1").unwrap(),
            from: Name::new("p", "a.host").unwrap(),
            keep_until: Timestamp::from_secs(99),
            disposition: Disposition::Relay,
            created: Some(Timestamp::from_secs(7)),
        };
        let back = Intent::parse(i.line().trim_end()).unwrap();
        assert_eq!(
            (
                back.id,
                back.from,
                back.keep_until,
                back.disposition,
                back.created
            ),
            (i.id, i.from, i.keep_until, i.disposition, i.created)
        );
        assert!(Intent::parse("m1 a.host 99 sideways").is_none());
        let old = Intent::parse("m1 a.host 99 local").unwrap();
        assert_eq!(old.created, None, "lines of earlier versions still parse");
    }
}
