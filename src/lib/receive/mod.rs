//! The one path every inbound message takes, whatever carried it: unwrap,
//! drop duplicates, deliver here or queue onward, remember, acknowledge.
//!
//! For a batch of inbound envelopes (all from one peer or several):
//! 1. parse; what cannot be parsed goes to quarantine with its reason and is
//!    never acknowledged;
//! 2. acknowledgements are applied (or passed on toward the component they
//!    are addressed to);
//! 3. a message whose ID (or, for final delivery, origin key) is remembered
//!    is a duplicate: dropped, counted, and acknowledged again so a lost
//!    acknowledgement heals;
//! 4. the others are written down as intended (`state/receive.intent`),
//!    then delivered into the Maildir or admitted to this site's queue
//!    toward the next hop, then remembered (`state/seen.idx`), and only then
//!    acknowledged (`acks/pending/PEER`).
//!
//! Architecture invariant: an acknowledgement is owed only after the
//! message is durable here (delivered or queued onward) and its ID is
//! remembered; a message is delivered into the Maildir at most once, even if
//! a run dies between delivering and remembering (the intent file lets the
//! next run find what was delivered and finish). Batches hold the receive
//! lock (`state/receive.lock`), so two runs never decide on the same ID at once.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::time::Duration;

pub mod mail;

use crate::ack::{self, Applied, Owed};
use crate::message::{
    envelope, stream, Header, Locator, Message, MessageId, Name, ResponseStatus, Routing,
};
use crate::protect::{self, Protector};
use crate::route::{self, Learned, NextHop};
use crate::spool::seen::{Kind, Seen};
use crate::spool::{durable, maildir, Admission, Area, EntryName, Error, Result, Spool};
use crate::time::Timestamp;

/// One inbound envelope and the peer whose route carried it.
pub struct Inbound {
    pub payload: Payload,
    pub from: Name,
    /// Where it came from, for logs and quarantine reasons (a path, "stdin").
    pub label: String,
}

/// An inbound envelope's bytes: in memory, or (when large) in a file that
/// is read as a stream.
pub enum Payload {
    Bytes(Vec<u8>),
    File(std::path::PathBuf),
}

/// A message taken from an inbound envelope.
enum Incoming {
    Small(Message),
    /// A one-message data envelope checked in bounded memory ([`stream::scan`]).
    Large {
        layout: stream::Layout,
        path: std::path::PathBuf,
    },
}

impl Incoming {
    fn header(&self) -> &Header {
        match self {
            Incoming::Small(m) => &m.header,
            Incoming::Large { layout, .. } => &layout.header,
        }
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
            Incoming::Large { layout, path } => {
                let mut f = File::open(path)?;
                stream::write_with_header(&mut f, layout, header, out)
            }
        }
    }
}

/// Reads the messages of an inbound envelope.
fn unwrap(payload: &Payload) -> std::result::Result<Vec<Incoming>, String> {
    match payload {
        Payload::Bytes(b) => envelope::parse(b)
            .map(|ms| ms.into_iter().map(Incoming::Small).collect())
            .map_err(|e| e.to_string()),
        Payload::File(path) => match stream::load(path).map_err(|e| e.to_string())? {
            stream::Loaded::Messages(ms) => Ok(ms.into_iter().map(Incoming::Small).collect()),
            stream::Loaded::Large(layout) => Ok(vec![Incoming::Large {
                layout: *layout,
                path: path.clone(),
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
    let mut prefix = Vec::new();
    match &item.payload {
        Payload::Bytes(b) => prefix.extend_from_slice(&b[..b.len().min(65_536)]),
        Payload::File(p) => {
            File::open(p)
                .and_then(|f| f.take(65_536).read_to_end(&mut prefix))
                .map_err(|e| Error::io("read", p, e))?;
        }
    }
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
            Payload::File(p) => {
                let mut f =
                    std::io::BufReader::new(File::open(p).map_err(|e| Error::io("read", p, e))?);
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
        plaintexts.push(staged);
        Payload::File(path)
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
    /// Refused for good (no route), acknowledged as rejected.
    pub rejected: usize,
    /// Not taken now (queue full): the sender keeps its copy and retries.
    pub retry: usize,
    /// Envelopes that could not be parsed, now in quarantine/.
    pub quarantined: usize,
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
        self.passed_on += o.passed_on;
        self.unsigned_acks += o.unsigned_acks;
        self.acks.discarded += o.acks.discarded;
        self.acks.rejected += o.acks.rejected;
        self.acks.recorded += o.acks.recorded;
    }
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

    fn add(spool: &Spool, r: &Report, now: Timestamp) -> Result<()> {
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
}

impl Intent {
    fn line(&self) -> String {
        let d = match self.disposition {
            Disposition::Local => "local",
            Disposition::Relay => "relay",
        };
        format!(
            "{} {} {} {d}\n",
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
        })
    }
}

fn intent_path(spool: &Spool) -> std::path::PathBuf {
    spool.dir(Area::State).join("receive.intent")
}

/// How long to remember a message's ID: until it expires, and at least the
/// configured retention.
fn keep_until(h: &Header, now: Timestamp, retention: Duration) -> Timestamp {
    let floor = now.saturating_add(retention);
    h.qos().expiry.map_or(floor, |e| e.max(floor))
}

/// Finishes what a run that died mid-batch left in the intent file: what it
/// delivered or queued is remembered and acknowledged; what it did not is
/// left for the sender's retransmission.
fn recover(spool: &Spool, seen: &mut Seen, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    let path = intent_path(spool);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
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
            seen.insert(Kind::Id, i.id.as_str(), i.keep_until)?;
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

/// Receives a batch of inbound envelopes. See the module documentation.
pub fn receive(
    spool: &Spool,
    batch: Vec<Inbound>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Report> {
    let _lock = ReceiveLock::take(spool)?;
    spool.clean_maildir_tmp(now)?;
    let config = spool.config();
    let me = &config.component;
    let mut seen = Seen::open(&spool.dir(Area::State).join("seen.idx"), now)?;
    let pruned = seen.prune_if_due(now)?;
    if pruned > 0 {
        log(format!(
            "forgot {pruned} accepted ID(s) past their retention"
        ));
    }
    recover(spool, &mut seen, now, log)?;
    let mut learned = Learned::load(spool);
    let retention = config.receive.dedupe_retention;

    let mut report = Report::default();
    let mut owed: HashMap<Name, Vec<Owed>> = HashMap::new();
    let mut acks_from: HashMap<Name, Vec<Message>> = HashMap::new();
    let mut pass_on: HashMap<Name, Vec<Message>> = HashMap::new();
    let mut locals: Vec<(Incoming, Name)> = Vec::new();
    let mut relays: Vec<(Incoming, Name)> = Vec::new();
    let mut remember_only: Vec<(MessageId, Timestamp)> = Vec::new();
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

    let mut protectors: HashMap<Name, Option<Protector>> = HashMap::new();
    // Decrypted envelopes in tmp/, removed when the batch ends.
    let mut plaintexts: Vec<crate::spool::Staged> = Vec::new();
    for item in batch {
        let cleared = match clear(spool, &item, &mut protectors, &mut plaintexts, now)? {
            Ok(c) => c,
            Err(why) => {
                let detail = format!("{}: {why}", item.label);
                let q = match &item.payload {
                    Payload::Bytes(b) => {
                        spool.quarantine_bytes(b, "in", &item.label, &detail, now)?
                    }
                    Payload::File(p) => spool.quarantine_copy(p, &item.label, &detail, now)?,
                };
                log(format!(
                    "quarantined {} as {}: {why}",
                    item.label,
                    q.display()
                ));
                report.quarantined += 1;
                continue;
            }
        };
        let payload = cleared.plain.as_ref().unwrap_or(&item.payload);
        let messages = match unwrap(payload) {
            Ok(m) => m,
            Err(e) => {
                let detail = format!("{}: {e}", item.label);
                let q = match payload {
                    Payload::Bytes(b) => {
                        spool.quarantine_bytes(b, "in", &item.label, &detail, now)?
                    }
                    Payload::File(p) => spool.quarantine_copy(p, &item.label, &detail, now)?,
                };
                log(format!(
                    "quarantined {} as {}: {e}",
                    item.label,
                    q.display()
                ));
                report.quarantined += 1;
                continue;
            }
        };
        for m in messages {
            let m = match m {
                Incoming::Small(a) if ack::is_ack(&a) && !cleared.acks_trusted => {
                    log(format!(
                        "acknowledgement {} from {} ignored: not signed by {}'s key, so it discards nothing (require_signature = false admits unsigned messages, not unsigned acknowledgements)",
                        a.header.id, item.from, item.from
                    ));
                    report.unsigned_acks += 1;
                    continue;
                }
                Incoming::Small(a) if ack::is_ack(&a) => {
                    match route::next_hop(&a.header, config, &learned) {
                        NextHop::Local => acks_from.entry(item.from.clone()).or_default().push(a),
                        NextHop::Peer(p) => pass_on.entry(p).or_default().push(a),
                        NextHop::Unknown(why) => {
                            log(format!("acknowledgement {} dropped: {why}", a.header.id))
                        }
                    }
                    continue;
                }
                other => other,
            };
            report.messages += 1;
            let id = m.header().id.clone();
            if batch_ids.contains(id.as_str()) || seen.contains(Kind::Id, id.as_str())? {
                report.duplicates += 1;
                duplicate_ids.push(id.to_string());
                owe(
                    &item.from,
                    &id,
                    ResponseStatus::Accepted,
                    "duplicate",
                    &item.from,
                    String::new(),
                );
                continue;
            }
            batch_ids.insert(id.to_string());
            if let Locator::Source(s) = &m.header().locator {
                if s.component != *me {
                    learned.learn(&s.component, &item.from);
                }
            }
            let hop = match route::next_hop(m.header(), config, &learned) {
                NextHop::Peer(p) if p == item.from => {
                    NextHop::Unknown(format!("its next hop would be {p}, the peer it came from"))
                }
                other => other,
            };
            match hop {
                NextHop::Local => {
                    if let Some(key) = &m.header().origin_key {
                        if batch_keys.contains(key.as_str())
                            || seen.contains(Kind::OriginKey, key.as_str())?
                        {
                            report.duplicates += 1;
                            log(format!("{id} dropped: origin key {key} was delivered already (a redundant sender's report)"));
                            remember_only
                                .push((id.clone(), keep_until(m.header(), now, retention)));
                            owe(
                                &item.from,
                                &id,
                                ResponseStatus::Accepted,
                                "duplicate",
                                &item.from,
                                "same origin key as a message delivered earlier".into(),
                            );
                            continue;
                        }
                        batch_keys.insert(key.to_string());
                    }
                    locals.push((m, item.from.clone()));
                }
                NextHop::Peer(_) => relays.push((m, item.from.clone())),
                NextHop::Unknown(why) => {
                    report.rejected += 1;
                    log(format!("{id} from {} rejected: {why}", item.from));
                    remember_only.push((id.clone(), keep_until(m.header(), now, retention)));
                    owe(
                        &item.from,
                        &id,
                        ResponseStatus::Rejected,
                        "rejected",
                        &item.from,
                        why.clone(),
                    );
                    notify_origin(
                        m.header(),
                        &item.from,
                        me,
                        config,
                        &learned,
                        ResponseStatus::Rejected,
                        "final-rejected",
                        &format!("rejected at {me}: {why}"),
                        &mut owe,
                    );
                }
            }
        }
    }

    // Write down what is about to be stored, so a crash cannot make us
    // deliver twice or forget to acknowledge.
    let intents: String = locals
        .iter()
        .map(|(m, from)| (m, from, Disposition::Local))
        .chain(relays.iter().map(|(m, from)| (m, from, Disposition::Relay)))
        .map(|(m, from, disposition)| {
            Intent {
                id: m.header().id.clone(),
                from: from.clone(),
                keep_until: keep_until(m.header(), now, retention),
                disposition,
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
    let mut remember: Vec<(MessageId, Timestamp)> = remember_only;

    // Final delivery.
    let items: Vec<(MessageId, maildir::Writer<'_>)> = locals
        .iter()
        .map(|(m, _)| {
            let header = stamp(m.header());
            let write: maildir::Writer<'_> =
                Box::new(move |out: &mut dyn Write| m.write_with(&header, out));
            (m.header().id.clone(), write)
        })
        .collect();
    maildir::deliver(spool, &items, now)?;
    for (m, from) in &locals {
        report.delivered += 1;
        remember.push((
            m.header().id.clone(),
            keep_until(m.header(), now, retention),
        ));
        owe(
            from,
            &m.header().id,
            ResponseStatus::Accepted,
            "delivered",
            from,
            String::new(),
        );
        notify_origin(
            m.header(),
            from,
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
        for (m, _) in &relays {
            let mut s = spool.stage(now)?;
            let path = s.path().to_path_buf();
            m.write_with(&stamp(m.header()), &mut s)
                .map_err(|e| Error::io("write", &path, e))?;
            let q = m.header().qos();
            let name = EntryName {
                arrival: 0,
                id: m.header().id.clone(),
                precedence: q.precedence,
                persistence: q.persistence,
                addressed: matches!(m.header().locator, Locator::Destination(_)),
                created: m.header().created,
                expiry: q.expiry,
                size: s.size(),
            };
            staged.push((s, name));
        }
        durable::sync_filesystem(&spool.dir(Area::Tmp))?;
        let admissions = spool.lock(now)?.admit_many(staged, now)?;
        for ((m, from), admission) in relays.iter().zip(admissions) {
            match admission {
                Admission::Queued { evicted, .. } => {
                    for (victim, detail) in evicted {
                        log(format!("{} moved to dead/: {detail}", victim.id));
                    }
                    report.relayed += 1;
                    remember.push((
                        m.header().id.clone(),
                        keep_until(m.header(), now, retention),
                    ));
                    owe(
                        from,
                        &m.header().id,
                        ResponseStatus::Accepted,
                        "custody",
                        from,
                        String::new(),
                    );
                }
                Admission::Rejected { detail, .. } => {
                    report.retry += 1;
                    log(format!(
                        "{} from {from} not taken now: {detail}",
                        m.header().id
                    ));
                    owe(
                        from,
                        &m.header().id,
                        ResponseStatus::RejectedRetry,
                        "retry",
                        from,
                        detail,
                    );
                }
            }
        }
    }

    for (id, keep) in &remember {
        seen.insert(Kind::Id, id.as_str(), *keep)?;
    }
    for (m, _) in &locals {
        if let Some(key) = &m.header().origin_key {
            seen.insert(
                Kind::OriginKey,
                key.as_str(),
                keep_until(m.header(), now, retention),
            )?;
        }
    }
    seen.sync()?;
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
    Counters::add(spool, &report, now)?;
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
    Ok(report)
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
        };
        let back = Intent::parse(i.line().trim_end()).unwrap();
        assert_eq!(
            (back.id, back.from, back.keep_until, back.disposition),
            (i.id, i.from, i.keep_until, i.disposition)
        );
        assert!(Intent::parse("m1 a.host 99 sideways").is_none());
    }
}
