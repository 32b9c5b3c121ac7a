//! The one path every inbound message takes, whatever carried it: a stick
//! (`media`), an MTA's pipe or a Maildir (`mail`), an HTTP request or an
//! HTTP reply. Adapters turn what they read into [`Inbound`] envelopes;
//! [`receive`] takes a batch of them through the stages, in order:
//!
//! 1. **clear and parse** (`parse`): the peer's protection removed or the
//!    envelope refused; its messages read. What cannot be read, what fails
//!    its peer's protection, and an envelope whose peer speaks for a
//!    component it may not (`route::may_speak_for`) go to quarantine with
//!    the reason and are never acknowledged;
//! 2. **acknowledgements** are applied (or passed on toward the component
//!    they are addressed to);
//! 3. **decide** (`decide`, pure): duplicate, deliver here, forward to a
//!    peer, or refuse (not provably new, expired, no route);
//! 4. **store** (`store`): what is kept is written down as intended
//!    (`state/receive.intent`), then delivered into the Maildir or admitted
//!    to this site's queue toward the next hop, as far as the disk has room
//!    above `min_free` (the rest is answered "retry later");
//! 5. **remember and owe** (`state`): IDs remembered, and only then the
//!    acknowledgements owed: to `acks/pending/PEER`, or (for an HTTP
//!    request) returned to be put in the reply.
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};

pub mod decide;
pub mod decision;
pub mod delivery;
pub mod extension;
pub mod mail;
pub mod media;
mod parse;
pub mod refused;
mod report;
pub mod state;
mod store;

use crate::ack::Owed;
use crate::message::{Header, Locator, Message, MessageId, Name, ResponseStatus};
use crate::protect::Protector;
use crate::route::{self, Learned, NextHop};
use crate::spool::seen::Kind;
use crate::spool::{Area, Error, Quarantined, Result, Spool};
use crate::time::Timestamp;
pub use crate::transport::Payload;
use decide::{Decision, Facts, Keep};
pub use extension::{Claim, Claims, Extension, Extensions};
pub use parse::set_aside;
use parse::Incoming;
pub use refused::Unreadable;
pub use report::{Counters, Fate, Received, Report};
use state::Shared;
pub use store::rule_dir;
use store::{Disposition, Stored, ToStore};

/// One inbound envelope and the peer whose route carried it.
pub struct Inbound {
    pub payload: Payload,
    pub from: Name,
    /// Where it came from, for logs and quarantine reasons (a path, "stdin").
    pub label: String,
}

/// Where the acknowledgements a batch earns go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// To `acks/pending/PEER`, to travel later as messages of their own
    /// (media, mail).
    Owe,
    /// Back to the caller in [`Received::replies`] (an HTTP request: the
    /// reply carries them). Notices for other components are still owed.
    Reply,
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

/// An inbound envelope, cleared and parsed.
struct Parsed {
    index: usize,
    item: Inbound,
    cleared: parse::Cleared,
    messages: Vec<Incoming>,
}

impl Parsed {
    fn payload(&self) -> &Payload {
        self.cleared.plain.as_ref().unwrap_or(&self.item.payload)
    }
}

/// Receives a batch of inbound envelopes. See the module documentation.
pub fn receive(
    spool: &Spool,
    batch: Vec<Inbound>,
    now: Timestamp,
    answer: Answer,
    log: &dyn Fn(String),
) -> Result<Received> {
    let _lock = ReceiveLock::take(spool)?;
    spool.clean_maildir_tmp(now)?;
    let mut state = state::open(spool, now, log)?;
    let state = &mut *state;
    if store::intent_path(spool).exists() {
        store::recover(spool, state, now, log)?;
    }
    let mut b = Batch {
        spool,
        now,
        log,
        report: Report::default(),
        fates: vec![Fate::Taken; batch.len()],
        owed: Vec::new(),
        acks_from: HashMap::new(),
        pass_on: HashMap::new(),
        to_store: Vec::new(),
        expanded: Vec::new(),
        remember: Vec::new(),
        duplicate_ids: Vec::new(),
    };

    // Decrypted envelopes in tmp/, removed when the batch ends.
    let mut plaintexts: Vec<crate::spool::Staged> = Vec::new();
    let parsed = b.parse(batch, &mut plaintexts)?;
    b.decide(parsed, state)?;
    b.store(state)?;
    let replies = b.finish(state, answer)?;
    Ok(Received {
        report: b.report,
        fates: b.fates,
        replies,
    })
}

/// One message of an envelope, decided and about to be acted on.
struct One<'a> {
    m: Incoming,
    /// The peer that carried it.
    from: Name,
    /// Its envelope's index in the batch, and where that came from.
    index: usize,
    label: &'a str,
    /// For a copy of a group message: which expansion it belongs to.
    group: Option<usize>,
}

/// A message to a group, expanded into copies here.
struct Expanded {
    id: MessageId,
    header: Header,
    from: Name,
    index: usize,
    /// Why a copy could not be taken now, if one could not.
    retry: Option<String>,
}

/// One batch on its way through the stages.
struct Batch<'s> {
    spool: &'s Spool,
    now: Timestamp,
    log: &'s dyn Fn(String),
    report: Report,
    fates: Vec<Fate>,
    /// Acknowledgements earned, in order: (peer owed, acknowledgement).
    owed: Vec<(Name, Owed)>,
    /// Acknowledgements for this site, by the peer that carried them.
    acks_from: HashMap<Name, Vec<Message>>,
    /// Acknowledgements on their way to other components, by next hop.
    pass_on: HashMap<Name, Vec<Message>>,
    to_store: Vec<ToStore>,
    /// Messages to a group expanded here, whose acknowledgement waits for
    /// their copies'.
    expanded: Vec<Expanded>,
    /// IDs to remember besides those stored: (ID, keep until, created).
    remember: Vec<(MessageId, Timestamp, Timestamp)>,
    duplicate_ids: Vec<String>,
}

impl Batch<'_> {
    /// Answers a message: owes its peer the acknowledgement, or, for a copy
    /// of a group message (`group`), notes whether it must be retried (the
    /// original is answered once all its copies are).
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        group: Option<usize>,
        peer: &Name,
        id: &MessageId,
        status: ResponseStatus,
        code: &'static str,
        to: &Name,
        reason: String,
    ) {
        match group {
            None => self.owe(peer, id, status, code, to, reason),
            Some(g) if status == ResponseStatus::RejectedRetry => {
                self.expanded[g].retry.get_or_insert(reason);
            }
            Some(_) => {}
        }
    }

    /// A message not taken now: nothing is kept, the sender keeps its copy
    /// and sends it again (after a fresh map, for an epoch mismatch).
    fn not_taken(
        &mut self,
        index: usize,
        group: Option<usize>,
        from: &Name,
        id: &MessageId,
        (status, code): (ResponseStatus, &'static str),
        reason: String,
    ) {
        self.report.retry += 1;
        self.fates[index] = Fate::Retry;
        (self.log)(format!("{id} from {from} not taken now: {reason}"));
        self.answer(group, from, id, status, code, from, reason);
    }

    fn owe(
        &mut self,
        peer: &Name,
        id: &MessageId,
        status: ResponseStatus,
        code: &'static str,
        to: &Name,
        reason: String,
    ) {
        self.owed.push((
            peer.clone(),
            Owed {
                id: id.clone(),
                status,
                code,
                to: to.clone(),
                reason,
            },
        ));
    }

    /// Stage 1: clears and parses each envelope; sets aside what cannot be.
    fn parse(
        &mut self,
        batch: Vec<Inbound>,
        plaintexts: &mut Vec<crate::spool::Staged>,
    ) -> Result<Vec<Parsed>> {
        let mut protectors: HashMap<Name, Option<Protector>> = HashMap::new();
        let mut parsed = Vec::with_capacity(batch.len());
        let extensions = Extensions::of(self.spool);
        for (index, item) in batch.into_iter().enumerate() {
            let cleared =
                match parse::clear(self.spool, &item, &mut protectors, plaintexts, self.now)? {
                    Ok(c) => c,
                    Err(why) => {
                        self.fates[index] = parse::set_aside_as(
                            Quarantined::Unverified,
                            self.spool,
                            &item.payload,
                            &item.label,
                            &why.to_string(),
                            self.now,
                            self.log,
                            &mut self.report,
                        )?;
                        continue;
                    }
                };
            let payload = cleared.plain.as_ref().unwrap_or(&item.payload);
            match parse::unwrap(payload, &|mime| extensions.reads_data_in_place(mime)) {
                Ok(messages) => parsed.push(Parsed {
                    index,
                    item,
                    cleared,
                    messages,
                }),
                Err(e) => {
                    self.fates[index] = set_aside(
                        self.spool,
                        payload,
                        &item.label,
                        &e.to_string(),
                        self.now,
                        self.log,
                        &mut self.report,
                    )?;
                }
            }
        }
        Ok(parsed)
    }

    /// Stages 2 and 3: sorts out acknowledgements; decides on each message.
    fn decide(&mut self, parsed: Vec<Parsed>, state: &mut dyn Shared) -> Result<()> {
        let config = self.spool.config();
        let log = self.log;
        let mut batch_ids: HashSet<String> = HashSet::new();
        let mut batch_keys: HashSet<String> = HashSet::new();
        let mut when = None;
        let relay_stopped = crate::queue::throttle::over(
            &config.throttle,
            state.sent()?,
            self.now,
            crate::time::local_offset_secs(),
        )
        .map(|s| s.to_string());
        let claims = Extensions::of(self.spool).begin(self.spool, log);
        for p in parsed {
            let from = p.item.from.clone();
            // A peer speaks only for itself and what is behind it.
            let forged = p.messages.iter().find_map(|m| {
                route::may_carry(&from, m.header(), config, state.learned())
                    .err()
                    .map(|why| format!("message {}: {why}", m.header().id))
            });
            if let Some(why) = forged {
                self.fates[p.index] = parse::set_aside_as(
                    Quarantined::Forged,
                    self.spool,
                    p.payload(),
                    &p.item.label,
                    &why,
                    self.now,
                    log,
                    &mut self.report,
                )?;
                continue;
            }
            let mut work: VecDeque<(Incoming, Option<usize>)> =
                p.messages.into_iter().map(|m| (m, None)).collect();
            while let Some((m, group)) = work.pop_front() {
                let m = match m {
                    Incoming::Small(a) if crate::ack::is_ack(&a) => {
                        self.take_ack(a, &from, p.cleared.acks_trusted, &p.item.label, state)?;
                        continue;
                    }
                    other => other,
                };
                self.report.messages += 1;
                let h = m.header().clone();
                let id = h.id.clone();
                let when = match when {
                    Some(w) => w,
                    None => *when.insert(state.when(config.receive.max_clock_skew)?),
                };
                let id_seen =
                    batch_ids.contains(id.as_str()) || state.remembered(Kind::Id, id.as_str())?;
                let origin_key_seen = match &h.origin_key {
                    Some(k) => {
                        batch_keys.contains(k.as_str())
                            || state.remembered(Kind::OriginKey, k.as_str())?
                    }
                    None => false,
                };
                let (kind, severity) = match &m {
                    Incoming::Small(msg) => crate::filter::kind_of(&msg.content),
                    Incoming::Large { .. } => ("data", None),
                };
                let mime = match &m {
                    Incoming::Small(Message {
                        content: crate::message::Content::Data(d),
                        ..
                    }) => Some(d.mime_type.as_str()),
                    Incoming::Small(_) => None,
                    Incoming::Large { layout, .. } => Some(layout.mime_type.as_str()),
                };
                let facts = Facts {
                    header: &h,
                    from: &from,
                    id_seen,
                    origin_key_seen,
                    relay_stopped: relay_stopped.as_deref(),
                    kind,
                    severity,
                    mime,
                    signed: p.cleared.acks_trusted,
                };
                let decision = decide::decide(&facts, &when, config, state.learned(), &claims);
                if !id_seen {
                    batch_ids.insert(id.to_string());
                }
                if let (
                    Locator::Source(s),
                    Decision::Deliver
                    | Decision::Forward { .. }
                    | Decision::Hold { learn: true, .. },
                ) = (&h.locator, &decision)
                {
                    state.learn(&s.component, &from);
                }
                let one = One {
                    m,
                    from: from.clone(),
                    index: p.index,
                    label: &p.item.label,
                    group,
                };
                self.act(decision, one, state, &mut batch_keys, &mut work)?;
            }
        }
        Ok(())
    }

    /// Acts on the decision taken for one message: answers it, remembers
    /// it, or hands it to the store; the copies of a group message join
    /// `work`, to be decided each.
    fn act(
        &mut self,
        decision: Decision,
        one: One<'_>,
        state: &mut dyn Shared,
        batch_keys: &mut HashSet<String>,
        work: &mut VecDeque<(Incoming, Option<usize>)>,
    ) -> Result<()> {
        let One {
            m,
            from,
            index,
            label,
            group,
        } = one;
        let h = m.header().clone();
        let id = h.id.clone();
        let log = self.log;
        let keep = |m, from, disposition, pin, rule| ToStore {
            m,
            from,
            index,
            disposition,
            pin,
            rule,
            group,
        };
        match decision {
            Decision::Duplicate {
                by_origin_key: false,
            } => {
                self.report.duplicates += 1;
                self.duplicate_ids.push(id.to_string());
                let accepted = ResponseStatus::Accepted;
                self.answer(
                    group,
                    &from,
                    &id,
                    accepted,
                    "duplicate",
                    &from,
                    String::new(),
                );
            }
            Decision::Duplicate {
                by_origin_key: true,
            } => self.redundant(state, &h, group, &from)?,
            Decision::Reject { reason, remember } => {
                self.report.rejected += 1;
                log(format!("{id} from {from} refused: {reason}"));
                if remember {
                    self.remember
                        .push((id.clone(), state.keep_until(h.qos().expiry)?, h.created));
                }
                if group.is_none() {
                    self.owe_rejection(&h, &from, state.learned(), &reason);
                }
            }
            Decision::Deliver => {
                if let Some(k) = &h.origin_key {
                    batch_keys.insert(k.to_string());
                }
                self.to_store
                    .push(keep(m, from, Disposition::Local, None, None));
            }
            Decision::Forward { peer, pinned } => {
                let pin = pinned.then_some(peer);
                self.to_store
                    .push(keep(m, from, Disposition::Relay, pin, None))
            }
            Decision::Discard { label } => {
                self.report.discarded += 1;
                *self.report.by_rule.entry(label.clone()).or_default() += 1;
                log(format!("{id} from {from} discarded by [[rule]] {label}"));
                let why = format!("discarded on purpose by rule {label}");
                self.accept_unkept(state, &h, group, &from, "discarded", why)?;
            }
            Decision::Hold {
                label, keep: how, ..
            } => {
                let disposition = match how {
                    Keep::Divert => Disposition::Divert,
                    Keep::Aggregate => Disposition::Aggregate,
                    Keep::InPlace => Disposition::Chunk,
                };
                self.to_store
                    .push(keep(m, from, disposition, None, Some(label)))
            }
            Decision::Refuse { reason } => {
                // Not remembered: sent again (its answer lost), it
                // is refused again, never taken for a duplicate.
                self.refuse_kept(&m, &from, label, &reason)?;
                if group.is_none() {
                    self.owe_rejection(&h, &from, state.learned(), &reason);
                }
            }
            Decision::Expand { targets } => {
                let original = Expanded {
                    id,
                    header: h,
                    from,
                    index,
                    retry: None,
                };
                self.expand(m, original, targets, work)?;
            }
            Decision::NotTaken {
                status,
                code,
                reason,
            } => {
                self.not_taken(index, group, &from, &id, (status, code), reason);
            }
        }
        Ok(())
    }

    /// Expands a message to a group into its copies, one per target, each
    /// to be decided on its own; the original is answered once they are.
    fn expand(
        &mut self,
        m: Incoming,
        original: Expanded,
        targets: Vec<crate::message::Target>,
        work: &mut VecDeque<(Incoming, Option<usize>)>,
    ) -> Result<()> {
        let g = self.expanded.len();
        (self.log)(format!(
            "{} to a group: expanded into {} cop{}",
            original.id,
            targets.len(),
            if targets.len() == 1 { "y" } else { "ies" }
        ));
        self.expanded.push(original);
        for t in targets {
            work.push_back((m.copy_for(&t)?, Some(g)));
        }
        Ok(())
    }

    /// A redundant sender's report of an event delivered already (the same
    /// origin key): dropped, its own ID remembered, acknowledged.
    fn redundant(
        &mut self,
        state: &mut dyn Shared,
        h: &Header,
        group: Option<usize>,
        from: &Name,
    ) -> Result<()> {
        self.report.duplicates += 1;
        let key = h
            .origin_key
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_default();
        (self.log)(format!(
            "{} dropped: origin key {key} was delivered already (a redundant sender's report)",
            h.id
        ));
        let why = "same origin key as a message delivered earlier".into();
        self.accept_unkept(state, h, group, from, "duplicate", why)
    }

    /// Acknowledges a message as accepted without keeping it (a redundant
    /// sender's report, a message a rule discards): its ID is remembered,
    /// so it is a duplicate the next time.
    fn accept_unkept(
        &mut self,
        state: &mut dyn Shared,
        h: &Header,
        group: Option<usize>,
        from: &Name,
        code: &'static str,
        why: String,
    ) -> Result<()> {
        let keep = state.keep_until(h.qos().expiry)?;
        self.remember.push((h.id.clone(), keep, h.created));
        self.answer(
            group,
            from,
            &h.id,
            ResponseStatus::Accepted,
            code,
            from,
            why,
        );
        Ok(())
    }

    /// Keeps a message refused for who made or carried it in quarantine
    /// with the reason (the rest of its envelope is taken).
    fn refuse_kept(&mut self, m: &Incoming, from: &Name, label: &str, why: &str) -> Result<()> {
        let h = m.header().clone();
        let kept = self.spool.quarantine_with(
            Quarantined::Refused,
            |out| m.write_with(&h, out),
            "in",
            label,
            &format!("{}: refused: {why}", h.id),
            self.now,
        )?;
        self.report.refused += 1;
        (self.log)(format!(
            "{} from {from} refused and kept in quarantine as {}: {why}",
            h.id,
            kept.display()
        ));
        Ok(())
    }

    /// Sorts an acknowledgement: for this site (applied at the end), for
    /// another component (passed on), or not believed (kept in quarantine
    /// with the reason: see [`Batch::unbelieved`]), or ignored (unsigned
    /// where a signature is required).
    fn take_ack(
        &mut self,
        a: Message,
        from: &Name,
        trusted: bool,
        label: &str,
        state: &mut dyn Shared,
    ) -> Result<()> {
        if !trusted {
            (self.log)(format!(
                "acknowledgement {} from {from} ignored: not signed by {from}'s key, so it discards nothing (require_signature = false admits unsigned messages, not unsigned acknowledgements)",
                a.header.id
            ));
            self.report.unsigned_acks += 1;
            return Ok(());
        }
        let hop = route::next_hop(&a.header, self.spool.config(), state.learned());
        if let Some(why) = self.unbelieved(&a, from, &hop, state)? {
            return self.refuse_kept(&Incoming::Small(a), from, label, &why);
        }
        match hop {
            NextHop::Local => self.acks_from.entry(from.clone()).or_default().push(a),
            NextHop::Peer(p) => self.pass_on.entry(p).or_default().push(a),
            NextHop::Unknown(why) => {
                (self.log)(format!("acknowledgement {} dropped: {why}", a.header.id))
            }
        }
        Ok(())
    }

    /// Why an acknowledgement carried by `from` is not believed, if it is
    /// not (SPEC.md section 13a). A hop's acknowledgement (custody,
    /// delivered, rejected, ...) answers the peer that sent it the message:
    /// it is made by `from` itself and addressed here, never passed on. An
    /// end-to-end notice (`final-*`, `control-*`) may come only from a
    /// component on the message's path: this site handed the message to
    /// `from` (or its twin), which vouches for what is behind it; one that
    /// comes down from the upstream peer for another component is passed
    /// on, and checked so where it is addressed.
    fn unbelieved(
        &self,
        a: &Message,
        from: &Name,
        hop: &NextHop,
        state: &mut dyn Shared,
    ) -> Result<Option<String>> {
        let crate::message::Content::MessageResponse(r) = &a.content else {
            return Ok(None);
        };
        let code = r.reason_code.as_ref().map_or("", |c| c.as_str());
        let made_by = route::originator(&a.header, from);
        let about = &r.answers;
        if !crate::ack::end_to_end(code) {
            if *hop != NextHop::Local {
                return Ok(Some(format!(
                    "an acknowledgement ({code}) of {about} made by {made_by} for another component: a hop answers only the peer that sent it the message, so it is not passed on"
                )));
            }
            if made_by != from {
                return Ok(Some(format!(
                    "an acknowledgement ({code}) of {about} made by {made_by} but carried by {from}: a hop's acknowledgement comes from the hop itself"
                )));
            }
            return Ok(None);
        }
        let config = self.spool.config();
        // On its way down to another component: that component checks it
        // was handed there (a twin relay may carry back what its twin
        // handed up).
        if *hop != NextHop::Local && route::is_upstream(from, config) {
            return Ok(None);
        }
        let mut holders: Vec<&Name> = config.failover_group(from.as_str());
        if !holders.contains(&from) {
            holders.push(from);
        }
        // A notice about a copy of a group message comes from where the
        // message itself was handed (the copies are made there).
        let original = decide::original_of(about.as_str());
        for peer in holders {
            for id in std::iter::once(about.as_str()).chain(original) {
                if state.handed(id, peer)? {
                    return Ok(None);
                }
            }
        }
        Ok(Some(format!(
            "a {code} notice about {about} made by {made_by} and carried by {from}: {about} was never handed to {from} here, so neither is on its path"
        )))
    }

    /// What is to be stored, whole: a message read only up to its data is
    /// read whole before it is kept in any way but written in place (which
    /// reads it then); one that cannot be read is set aside, unanswered.
    fn readable(&mut self) -> Result<Vec<ToStore>> {
        // A chunk read only up to its data is read whole before it is
        // kept in any way but written in place (which reads it then); one
        // that cannot be read is set aside.
        let mut items = Vec::with_capacity(self.to_store.len());
        for t in std::mem::take(&mut self.to_store) {
            let why = match t.disposition {
                Disposition::Chunk => None,
                _ => t.m.check().err(),
            };
            let Some(why) = why else {
                items.push(t);
                continue;
            };
            let h = t.m.header().clone();
            let why = format!("a chunk that cannot be read: {why}");
            let kept = self.spool.quarantine_with(
                Quarantined::Unreadable,
                |out| t.m.write_with(&h, out),
                "in",
                t.from.as_str(),
                &format!("{}: {why}", h.id),
                self.now,
            )?;
            (self.log)(format!(
                "{} from {}: {why}: quarantined as {}",
                h.id,
                t.from,
                kept.display()
            ));
            // Not answered, as an envelope that cannot be read is not:
            // damaged on the way, it is sent again.
            self.report.quarantined += 1;
        }
        Ok(items)
    }

    /// Stage 4: keeps what was decided, and earns its acknowledgements.
    fn store(&mut self, state: &mut dyn Shared) -> Result<()> {
        let items = self.readable()?;
        let stored = store::store(self.spool, state, &items, self.now, self.log)?;
        let me = self.spool.config().component.clone();
        for (t, s) in items.iter().zip(stored) {
            let h = t.m.header();
            match s {
                Stored::Kept(code) => {
                    match t.disposition {
                        Disposition::Local => {
                            self.report.delivered += 1;
                            if let Some(key) = &h.origin_key {
                                let keep = state.keep_until(h.qos().expiry)?;
                                state.remember(Kind::OriginKey, key.as_str(), keep, h.created)?;
                            }
                        }
                        Disposition::Relay => self.report.relayed += 1,
                        Disposition::Divert | Disposition::Chunk => self.report.diverted += 1,
                        Disposition::Aggregate => self.report.aggregated += 1,
                    }
                    self.remember.push((
                        h.id.clone(),
                        state.keep_until(h.qos().expiry)?,
                        h.created,
                    ));
                    self.answer(
                        t.group,
                        &t.from,
                        &h.id,
                        ResponseStatus::Accepted,
                        code,
                        &t.from,
                        String::new(),
                    );
                    if t.disposition == Disposition::Local {
                        let notice = self.notice(
                            h,
                            &t.from,
                            state.learned(),
                            ResponseStatus::Accepted,
                            "final-delivered",
                            format!("delivered at {me}"),
                        );
                        self.owed.extend(notice);
                    }
                }
                Stored::Later(why) => {
                    self.report.retry += 1;
                    self.fates[t.index] = Fate::Retry;
                    self.answer(
                        t.group,
                        &t.from,
                        &h.id,
                        ResponseStatus::RejectedRetry,
                        "retry",
                        &t.from,
                        why,
                    );
                }
            }
        }
        // A message to a group is answered once its copies are: taken
        // (custody), or, if any must be retried, retried as a whole (the
        // copies already kept are duplicates the next time).
        for e in std::mem::take(&mut self.expanded) {
            match e.retry {
                Some(why) => {
                    self.fates[e.index] = Fate::Retry;
                    self.owe(
                        &e.from,
                        &e.id,
                        ResponseStatus::RejectedRetry,
                        "retry",
                        &e.from,
                        why,
                    );
                }
                None => {
                    let keep = state.keep_until(e.header.qos().expiry)?;
                    self.remember.push((e.id.clone(), keep, e.header.created));
                    self.owe(
                        &e.from,
                        &e.id,
                        ResponseStatus::Accepted,
                        "custody",
                        &e.from,
                        String::new(),
                    );
                }
            }
        }
        Ok(())
    }

    /// Stage 5: remembers, owes (or returns) the acknowledgements, passes
    /// on and applies the acknowledgements that came. Returns the replies.
    fn finish(&mut self, state: &mut dyn Shared, answer: Answer) -> Result<Vec<Owed>> {
        for (id, keep, created) in std::mem::take(&mut self.remember) {
            state.remember(Kind::Id, id.as_str(), keep, created)?;
        }
        state.commit()?;
        let mut replies = Vec::new();
        let mut owed: HashMap<Name, Vec<Owed>> = HashMap::new();
        for (peer, o) in std::mem::take(&mut self.owed) {
            if answer == Answer::Reply && o.to == peer {
                replies.push(o);
            } else {
                owed.entry(peer).or_default().push(o);
            }
        }
        for (peer, o) in &owed {
            state.owe(peer, o)?;
        }
        for (peer, ms) in &self.pass_on {
            self.report.passed_on += state.pass_on(peer, ms, self.now)?;
        }
        if !self.duplicate_ids.is_empty() {
            let shown: Vec<&str> = self
                .duplicate_ids
                .iter()
                .take(5)
                .map(String::as_str)
                .collect();
            let more = self.duplicate_ids.len().saturating_sub(shown.len());
            (self.log)(format!(
                "dropped {} duplicate(s), acknowledged again: {}{}",
                self.duplicate_ids.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        if let Err(e) = Counters::add(self.spool, &self.report, self.now) {
            (self.log)(format!("statistics not updated: {e}"));
        }
        let intent = store::intent_path(self.spool);
        if intent.exists() {
            crate::spool::durable::remove_file(&intent)
                .map_err(|e| Error::io("remove", &intent, e))?;
        }
        for (from, acks) in &self.acks_from {
            let a = state.apply_acks(acks, from, self.now, self.log)?;
            self.report.add(&Report {
                acks: a,
                ..Report::default()
            });
        }
        Ok(replies)
    }

    /// Owes `from` a rejection of the message with header `h`, and its
    /// origin a notice of it.
    fn owe_rejection(&mut self, h: &Header, from: &Name, learned: &Learned, why: &str) {
        self.owe(
            from,
            &h.id,
            ResponseStatus::Rejected,
            "rejected",
            from,
            why.to_string(),
        );
        let me = &self.spool.config().component;
        let notice = self.notice(
            h,
            from,
            learned,
            ResponseStatus::Rejected,
            "final-rejected",
            format!("rejected at {me}: {why}"),
        );
        self.owed.extend(notice);
    }

    /// The notice (delivered, or rejected) owed to the message's origin when
    /// the origin is not the peer it came from: the final outcome travels
    /// back end to end, through the route that leads to the origin.
    fn notice(
        &self,
        h: &Header,
        from: &Name,
        learned: &Learned,
        status: ResponseStatus,
        code: &'static str,
        reason: String,
    ) -> Option<(Name, Owed)> {
        let config = self.spool.config();
        let origin = h.origin()?;
        if origin == from || *origin == config.component {
            return None;
        }
        let via = match route::toward(origin, config, learned) {
            Some(NextHop::Peer(p)) => p,
            _ => from.clone(),
        };
        Some((
            via,
            Owed {
                id: h.id.clone(),
                status,
                code,
                to: origin.clone(),
                reason,
            },
        ))
    }
}
