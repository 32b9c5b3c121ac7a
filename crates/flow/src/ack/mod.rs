//! Acknowledgements: what this site owes its peers, and what its peers say
//! of the messages it sent (SPEC.md section 6).
//!
//! An acknowledgement is a message: class `rs`, subclass `ack`, addressed
//! (destination) to the component that should act on it, with a
//! `message-response` content answering one message ID. Codes in
//! `reason-code`, from the next hop: `custody` (it holds the message
//! durably, on its way on), `delivered` (it is the destination and delivered
//! it), `duplicate` (it had it already), `rejected` (refused for good, with a
//! reason), `retry` (not taken now). From the final destination to the
//! origin, through the relays, end-to-end notices: `final-delivered`,
//! `final-rejected`; these never discard anything.
//!
//! Owed acknowledgements are lines in `acks/pending/PEER`; `emit` batches
//! them into envelopes in `acks/out/PEER/`, which routes carry like any
//! message; they need no acknowledgement themselves (a lost one heals: the
//! sender retransmits, the receiver drops the duplicate and acknowledges
//! again). Applying an acknowledgement discards the sender's copy only if it
//! comes from the peer the message was sent to (or, accepted, from a twin
//! of that peer in its failover group); what acknowledgements said
//! is kept in `acks/journal/YYYYMMDD` for `rs-ack status`.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use crate::message::{
    envelope, Content, Destination, Header, Locator, Message, MessageId, MessageResponse, Name,
    Persistence, Precedence, Qos, ResponseStatus, Target, Text,
};
use crate::spool::{durable, Area, DeadKind, Entry, Result, Spool};
use crate::time::Timestamp;

/// Most acknowledgements in one envelope.
const PER_ENVELOPE: usize = 2_000;

/// An acknowledgement owed to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owed {
    /// The message acknowledged.
    pub id: MessageId,
    pub status: ResponseStatus,
    pub code: &'static str,
    /// The component the acknowledgement is addressed to (the peer itself,
    /// or for a delivery notice the message's origin).
    pub to: Name,
    pub reason: String,
}

impl Owed {
    fn line(&self) -> String {
        format!(
            "{} {} {} {} {}\n",
            self.id,
            self.status,
            self.code,
            self.to,
            self.reason.replace('\n', " ")
        )
    }

    fn parse(line: &str) -> Option<Owed> {
        let mut f = line.splitn(5, ' ');
        let id = MessageId::parse(f.next()?).ok()?;
        let status = f.next()?.parse().ok()?;
        let code = match f.next()? {
            "custody" => "custody",
            "delivered" => "delivered",
            "duplicate" => "duplicate",
            "rejected" => "rejected",
            "retry" => "retry",
            "discarded" => "discarded",
            "final-delivered" => "final-delivered",
            "final-rejected" => "final-rejected",
            "control-done" => "control-done",
            "control-refused" => "control-refused",
            _ => return None,
        };
        let to = Name::new("to", f.next()?).ok()?;
        Some(Owed {
            id,
            status,
            code,
            to,
            reason: f.next().unwrap_or("").to_string(),
        })
    }
}

fn pending_path(spool: &Spool, peer: &Name) -> PathBuf {
    spool.dir(Area::AcksPending).join(peer.as_str())
}

/// Records acknowledgements owed to `peer`; durable on return. The caller
/// holds the receive lock.
pub fn owe(spool: &Spool, peer: &Name, owed: &[Owed]) -> Result<()> {
    if owed.is_empty() {
        return Ok(());
    }
    let text: String = owed.iter().map(Owed::line).collect();
    durable::append_durable(&pending_path(spool, peer), text.as_bytes())
}

/// The acknowledgement message for `owed`, from component `me`.
pub fn message(owed: &Owed, now: Timestamp) -> Message {
    let name = |s: &str| Name::new("ack", s).unwrap_or_else(|_| owed.to.clone());
    Message {
        header: Header {
            id: MessageId::mint(now),
            created: now,
            class: name("rs"),
            subclass: name("ack"),
            locator: Locator::Destination(Destination {
                targets: vec![Target::Component(owed.to.clone())],
                qos: Qos {
                    expiry: None,
                    precedence: Precedence::Urgent,
                    persistence: Persistence::Normal,
                },
            }),
            in_reply_to: Some(owed.id.clone()),
            origin_key: None,
            epoch: None,
            routing: Vec::new(),
        },
        content: Content::MessageResponse(MessageResponse {
            status: owed.status,
            reason_code: Some(name(owed.code)),
            answers: owed.id.clone(),
            reason: Text::new("reason", owed.reason.clone()).unwrap_or_default(),
        }),
    }
}

/// Whether an acknowledgement with this reason code is an end-to-end
/// notice (from the message's destination or a hop that held it, to its
/// origin), rather than a hop's answer to the peer that sent it.
pub fn end_to_end(code: &str) -> bool {
    code.starts_with("final-") || code.starts_with("control-")
}

/// Whether `m` is an acknowledgement.
pub fn is_ack(m: &Message) -> bool {
    m.header.class.as_str() == "rs"
        && m.header.subclass.as_str() == "ack"
        && matches!(m.content, Content::MessageResponse(_))
}

/// Writes messages (acknowledgements being passed on) as envelopes into
/// `acks/out/PEER/`; durable on return.
pub fn queue_out(
    spool: &Spool,
    peer: &Name,
    messages: &[Message],
    now: Timestamp,
) -> Result<usize> {
    let dir = spool.dir(Area::AcksOut).join(peer.as_str());
    durable::create_dir_all(&dir)?;
    let mut written = 0;
    for (i, chunk) in messages.chunks(PER_ENVELOPE).enumerate() {
        let name = format!("{}-{}-{i}.msg", now.as_micros(), std::process::id());
        let bytes = envelope::to_bytes(chunk);
        durable::write_durable(&spool.dir(Area::Tmp), &dir, &name, &bytes, now.as_micros())?;
        written += chunk.len();
    }
    Ok(written)
}

/// Turns the acknowledgements owed to `peer` (or to every peer) into
/// envelopes in `acks/out/`. Returns (peer, count) for each peer served.
/// The caller holds the receive lock.
pub fn emit(spool: &Spool, peer: Option<&Name>, now: Timestamp) -> Result<Vec<(Name, usize)>> {
    let dir = spool.dir(Area::AcksPending);
    let peers: Vec<Name> = match peer {
        Some(p) => vec![p.clone()],
        None => fs::read_dir(&dir)
            .map_err(|e| crate::spool::Error::io("read", &dir, e))?
            .flatten()
            .filter_map(|e| Name::new("peer", e.file_name().to_string_lossy().into_owned()).ok())
            .collect(),
    };
    let mut out = Vec::new();
    for p in peers {
        let path = pending_path(spool, &p);
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        // A torn last line (a crash mid-append) is dropped: the sender
        // retransmits and the acknowledgement is owed again.
        let owed = strongest_per_message(text.lines().filter_map(Owed::parse).collect());
        let messages: Vec<Message> = owed.iter().map(|o| message(o, now)).collect();
        let n = queue_out(spool, &p, &messages, now)?;
        durable::remove_file(&path).map_err(|e| crate::spool::Error::io("remove", &path, e))?;
        durable::fsync_dir(&dir)?;
        out.push((p, n));
    }
    Ok(out)
}

/// One acknowledgement per message and recipient: a message imported twice
/// before an emit is owed `delivered` and `duplicate`; only the first is
/// worth sending.
fn strongest_per_message(owed: Vec<Owed>) -> Vec<Owed> {
    let mut seen = std::collections::HashSet::new();
    // A hop's acknowledgement and an end-to-end notice (final-delivered,
    // final-rejected) for the same message are different things: both go.
    owed.into_iter()
        .filter(|o| seen.insert((o.id.clone(), o.to.clone(), end_to_end(o.code))))
        .collect()
}

/// The acknowledgement envelopes waiting in `acks/out/PEER/`.
pub fn outgoing(spool: &Spool, peer: &Name) -> Vec<PathBuf> {
    let dir = spool.dir(Area::AcksOut).join(peer.as_str());
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The table of what this site handed to which peer (`state/handed.idx`).
fn handed_path(spool: &Spool) -> PathBuf {
    spool.dir(Area::State).join("handed.idx")
}

fn handed_key(id: &str, peer: &Name) -> String {
    format!("{id} {peer}")
}

/// Records that the messages `handed` (ID, expiry) went to `peer`, so that
/// the end-to-end notices about them that come back from that side are
/// believed ([`was_handed`]); kept until the later of each expiry and
/// `[receive] dedupe_retention`. Durable on return. The caller holds the
/// spool lock, which makes it the table's one writer.
pub fn note_handed(
    spool: &Spool,
    peer: &Name,
    handed: &[(&MessageId, Option<Timestamp>)],
    now: Timestamp,
) -> Result<()> {
    if handed.is_empty() {
        return Ok(());
    }
    let retention = spool.config().receive.dedupe_retention;
    let mut table = crate::spool::seen::Seen::open(&handed_path(spool), now)?;
    for (id, expiry) in handed {
        let keep = table.keep_until(*expiry, retention);
        table.insert(
            crate::spool::seen::Kind::Handed,
            &handed_key(id.as_str(), peer),
            keep,
            now,
        )?;
    }
    table.sync()
}

/// What this site handed to which peer, looked up for a batch: the
/// recorded hand-offs ([`note_handed`]), what waits in `sent/` for its
/// peer's acknowledgement, and what is still queued for a peer (a run
/// killed after handing it over, before recording that it did); the
/// outbound areas read once, when first needed.
pub struct Handed<'s> {
    spool: &'s Spool,
    now: Timestamp,
    table: Option<Option<crate::spool::seen::Seen>>,
    outbound: Option<HashMap<String, Entry>>,
    learned: Option<crate::route::Learned>,
}

impl<'s> Handed<'s> {
    pub fn new(spool: &'s Spool, now: Timestamp) -> Handed<'s> {
        Handed {
            spool,
            now,
            table: None,
            outbound: None,
            learned: None,
        }
    }

    /// Whether message `id` was handed to `peer` here. Only then may a
    /// notice about `id` come from `peer`'s side: a component that never
    /// held a message cannot speak of its fate.
    pub fn was(&mut self, id: &str, peer: &Name) -> Result<bool> {
        if self.table.is_none() {
            let t = crate::spool::seen::Seen::open_read(&handed_path(self.spool), self.now)?;
            self.table = Some(t);
        }
        if let Some(Some(t)) = &self.table {
            if t.contains(crate::spool::seen::Kind::Handed, &handed_key(id, peer))? {
                return Ok(true);
            }
        }
        if self.outbound.is_none() {
            let entries = self.spool.scan_outbound(self.now)?;
            self.outbound = Some(
                entries
                    .into_iter()
                    .map(|e| (e.name.id.to_string(), e))
                    .collect(),
            );
        }
        let Some(e) = self.outbound.as_ref().and_then(|m| m.get(id)) else {
            return Ok(false);
        };
        if let Some(s) = &e.sent {
            return Ok(s.peer == *peer);
        }
        let learned = self
            .learned
            .get_or_insert_with(|| crate::route::Learned::load(self.spool));
        Ok(crate::route::next_hop_of(self.spool, e, learned, true).as_ref() == Some(peer))
    }
}

/// What applying acknowledgements did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Sent copies discarded: the peer has custody.
    pub discarded: usize,
    /// Sent messages the peer refused for good, now in dead/.
    pub rejected: usize,
    /// Acknowledgements recorded without discarding anything (delivery
    /// notices, repeats, acknowledgements for messages not sent to that peer).
    pub recorded: usize,
    /// Sent messages the peer refused because they came through an outdated
    /// service point map entry (`epoch-mismatch`): queued again, to go
    /// where a fresh map says.
    pub requeued: usize,
}

/// Applies acknowledgements that came from `from` (the peer whose route
/// carried them). Discards a sent copy only when the message was sent to
/// `from`; anything else changes nothing and is recorded. Durable on return.
pub fn apply(
    spool: &Spool,
    acks: &[Message],
    from: &Name,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Applied> {
    let mut applied = Applied::default();
    if acks.is_empty() {
        return Ok(applied);
    }
    let mut locked = spool.lock(now)?;
    let (sent, _) = spool.scan(Area::Sent)?;
    let mut by_id: HashMap<String, Entry> = sent
        .into_iter()
        .map(|e| (e.name.id.to_string(), e))
        .collect();
    let mut journal = String::new();
    let mut discard = Vec::new();
    let mut done_here: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut reject = Vec::new();
    let mut requeue = Vec::new();
    for m in acks {
        let Content::MessageResponse(r) = &m.content else {
            continue;
        };
        let code = r.reason_code.as_ref().map_or("-", |c| c.as_str());
        let reason = r.reason.as_str().replace('\n', " ");
        // Sent to `from`, or (accepted) to its twin: a message sent again to
        // a backup relay is still in the first one's custody.
        let ours = by_id
            .get(r.answers.as_str())
            .filter(|e| {
                e.sent.as_ref().is_some_and(|s| {
                    s.peer == *from
                        || (r.status == ResponseStatus::Accepted
                            && spool.config().twins(s.peer.as_str(), from.as_str()))
                })
            })
            .is_some();
        let event = match (r.status, ours) {
            _ if code == "final-delivered" => "delivered",
            _ if code == "final-rejected" => "undeliverable",
            // What a component did with a control message (see `infra`).
            _ if code.starts_with("control-") => "control",
            (ResponseStatus::Accepted, true) => {
                discard.push(by_id.remove(r.answers.as_str()).expect("checked above"));
                "acknowledged"
            }
            (ResponseStatus::Rejected, true) => {
                reject.push((
                    by_id.remove(r.answers.as_str()).expect("checked above"),
                    reason.clone(),
                ));
                "rejected"
            }
            (ResponseStatus::EpochMismatch, true) => {
                requeue.push(by_id.remove(r.answers.as_str()).expect("checked above"));
                "epoch-mismatch"
            }
            (ResponseStatus::RejectedRetry | ResponseStatus::EpochMismatch, _) => "retry",
            (_, false) if done_here.contains(r.answers.as_str()) => "repeat",
            (_, false) => {
                log(format!(
                    "acknowledgement from {from} for {} ({code}), which was not sent to {from} or is no longer held: nothing discarded",
                    r.answers
                ));
                "ignored"
            }
        };
        if event == "acknowledged" || event == "rejected" {
            done_here.insert(r.answers.to_string());
        }
        journal.push_str(&format!(
            "{now} {} {event} {from} {code} {reason}\n",
            r.answers
        ));
    }
    let day = &now.to_rfc3339()[..10].replace('-', "");
    // The journal is history: a full disk must not stop the acknowledgements
    // that free it.
    let path = spool.dir(Area::Journal).join(day);
    if let Err(e) = durable::append_durable(&path, journal.as_bytes()) {
        log(format!(
            "{} acknowledgement(s) applied without their journal lines (rs-ack status will not show them): {e}",
            acks.len()
        ));
    }
    applied.recorded = acks.len() - discard.len() - reject.len() - requeue.len();
    applied.discarded = locked.discard_acknowledged(&discard)?;
    for (e, reason) in &reject {
        locked.bury(
            e,
            DeadKind::Rejected,
            &format!("rejected by {from}: {reason}"),
            now,
        )?;
        applied.rejected += 1;
    }
    for e in &requeue {
        locked.move_entry(e, Area::Queue(e.name.precedence))?;
        applied.requeued += 1;
    }
    Ok(applied)
}

/// One line of the journal: what an acknowledgement said of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    pub time: Timestamp,
    pub event: String,
    pub peer: String,
    pub code: String,
    pub reason: String,
}

/// What acknowledgements said of message `id`, oldest first.
pub fn journal(spool: &Spool, id: &str) -> Result<Vec<JournalEntry>> {
    let dir = spool.dir(Area::Journal);
    let mut days: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| crate::spool::Error::io("read", &dir, e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    days.sort();
    let mut out = Vec::new();
    for day in days {
        let Ok(text) = fs::read_to_string(&day) else {
            continue;
        };
        for line in text.lines() {
            let mut f = line.splitn(6, ' ');
            let (Some(t), Some(i)) = (f.next(), f.next()) else {
                continue;
            };
            if i != id {
                continue;
            }
            out.push(JournalEntry {
                time: Timestamp::parse(t).unwrap_or_default(),
                event: f.next().unwrap_or("").into(),
                peer: f.next().unwrap_or("").into(),
                code: f.next().unwrap_or("").into(),
                reason: f.next().unwrap_or("").into(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_lines_round_trip_and_torn_lines_are_dropped() {
        let o = Owed {
            id: MessageId::parse("m1").unwrap(),
            status: ResponseStatus::Rejected,
            code: "rejected",
            to: Name::new("to", "a.host").unwrap(),
            reason: "unknown destination x.y".into(),
        };
        assert_eq!(Owed::parse(o.line().trim_end()), Some(o.clone()));
        assert_eq!(Owed::parse("m1 accep"), None);
    }

    #[test]
    fn ack_messages_are_recognised_and_round_trip() {
        let o = Owed {
            id: MessageId::parse("m1").unwrap(),
            status: ResponseStatus::Accepted,
            code: "custody",
            to: Name::new("to", "a.host").unwrap(),
            reason: String::new(),
        };
        let m = message(&o, Timestamp::from_secs(1));
        assert!(is_ack(&m));
        let back = envelope::parse(&envelope::to_bytes(std::slice::from_ref(&m))).unwrap();
        assert_eq!(back, vec![m]);
    }

    #[test]
    fn one_acknowledgement_per_message_but_notices_go_too() {
        let o = |code: &'static str, status| Owed {
            id: MessageId::parse("m1").unwrap(),
            status,
            code,
            to: Name::new("to", "a.host").unwrap(),
            reason: String::new(),
        };
        let kept = strongest_per_message(vec![
            o("custody", ResponseStatus::Accepted),
            o("duplicate", ResponseStatus::Accepted),
            o("final-rejected", ResponseStatus::Rejected),
        ]);
        let codes: Vec<&str> = kept.iter().map(|o| o.code).collect();
        assert_eq!(codes, vec!["custody", "final-rejected"]);
    }
}
