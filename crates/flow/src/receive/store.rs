//! Storing what the receive path decided to keep: delivered into the
//! Maildir, admitted to this site's queue toward its next hop, or held for
//! a rule (diverted to a handler: `divert/`; gathered for an aggregate:
//! `aggregate/`, whose layout `relay` reads); the
//! intent file that lets a run killed midway be finished without delivering
//! twice; and what the disk has room for.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;

use super::delivery::{Delivered, DeliverySink, Offered};
use super::extension::{DataRef, Extensions, InPlace, Written};
use super::parse::Incoming;
use super::state::Shared;
use crate::ack::Owed;
use crate::message::{Header, Locator, MessageId, Name, ResponseStatus};
use crate::spool::seen::Kind;
use crate::spool::{durable, maildir, Admission, Area, EntryName, Error, Result, Spool};
use crate::time::Timestamp;

/// How a new message is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Disposition {
    /// Delivered into the Maildir: this site is its destination.
    Local,
    /// Admitted to this site's queue toward its next hop.
    Relay,
    /// Held in `divert/` for a rule's handler.
    Divert,
    /// Held in `aggregate/` for a rule's next aggregate.
    Aggregate,
    /// A chunk of a transfer this site receives, written in place (or,
    /// when it cannot be now, held in `divert/` for `bulk`).
    Chunk,
}

/// The directory name a rule's label takes (letters, digits, `.`, `-`, `_`).
pub fn rule_dir(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A new message to keep here.
pub(super) struct ToStore {
    pub m: Incoming,
    pub from: Name,
    /// The inbound envelope it came in (its index in the batch).
    pub index: usize,
    pub disposition: Disposition,
    /// The peer a rule chose for it (kept with it: see `route::pin`).
    pub pin: Option<Name>,
    /// The rule that holds it (divert, aggregate), by label.
    pub rule: Option<String>,
    /// For a copy of a message to a group: which expansion it belongs to.
    pub group: Option<usize>,
}

/// What became of one message given to [`store`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Stored {
    /// Durable here (the code says how: `delivered`, `custody`).
    Kept(&'static str),
    /// Not taken now, with the reason: the sender keeps it and retries.
    Later(String),
}

/// A line of the intent file: a message being delivered or queued onward.
pub(super) struct Intent {
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
            Disposition::Divert => "divert",
            Disposition::Aggregate => "aggregate",
            Disposition::Chunk => "chunk",
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
                "divert" => Disposition::Divert,
                "aggregate" => Disposition::Aggregate,
                "chunk" => Disposition::Chunk,
                _ => return None,
            },
            created: f
                .next()
                .and_then(|c| c.parse().ok())
                .map(Timestamp::from_secs),
        })
    }
}

pub(super) fn intent_path(spool: &Spool) -> std::path::PathBuf {
    spool.dir(Area::State).join("receive.intent")
}

/// Finishes what a run that died mid-batch left in the intent file: what it
/// delivered or queued is remembered and acknowledged; what it did not is
/// left for the sender's retransmission.
pub(super) fn recover(
    spool: &Spool,
    state: &mut dyn Shared,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let path = intent_path(spool);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
    let retention = spool.config().receive.dedupe_retention;
    let mut delivered: Option<HashSet<String>> = None;
    let mut queued: Option<HashSet<String>> = None;
    let mut owed: HashMap<Name, Vec<Owed>> = HashMap::new();
    let mut finished = 0;
    for i in text.lines().filter_map(Intent::parse) {
        if state.remembered(Kind::Id, i.id.as_str())? {
            continue;
        }
        let present = match i.disposition {
            Disposition::Local => delivered
                .get_or_insert(maildir::ids(spool)?)
                .contains(i.id.as_str()),
            // A chunk written in place is not: it is taken again when its
            // sender sends it again (its transfer knows it holds it).
            Disposition::Divert | Disposition::Chunk => spool
                .dir(Area::Divert)
                .join(format!("{}.msg", i.id))
                .exists(),
            Disposition::Aggregate => held_for_aggregate(spool, &i.id),
            Disposition::Relay => {
                if queued.is_none() {
                    queued = Some(
                        spool
                            .scan_outbound(now)?
                            .into_iter()
                            .map(|e| e.name.id.to_string())
                            .collect(),
                    );
                }
                queued.as_ref().is_some_and(|q| q.contains(i.id.as_str()))
            }
        };
        if !present {
            // A diverted message's state is written before the message:
            // one whose message never came is the interrupted run's.
            if matches!(i.disposition, Disposition::Divert | Disposition::Chunk) {
                let state = spool.dir(Area::Divert).join(format!("{}.state", i.id));
                if state.exists() {
                    durable::remove_file(&state).map_err(|e| Error::io("remove", &state, e))?;
                    durable::fsync_dir(&spool.dir(Area::Divert))?;
                }
            }
            continue;
        }
        let created = i
            .created
            .unwrap_or_else(|| i.keep_until.saturating_sub(retention));
        state.remember(Kind::Id, i.id.as_str(), i.keep_until, created)?;
        let code = match i.disposition {
            Disposition::Local => "delivered",
            _ => "custody",
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
    state.commit()?;
    for (peer, o) in &owed {
        state.owe(peer, o)?;
    }
    durable::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
    if finished > 0 {
        log(format!(
            "recovered {finished} message(s) an interrupted run had stored but not acknowledged"
        ));
    }
    Ok(())
}

/// Has the extensions write the data of `items` (indexes `chunks`) in
/// place; says of each what became of it.
fn write_in_place(
    spool: &Spool,
    items: &[ToStore],
    chunks: &[usize],
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Vec<(usize, Written)>> {
    let mut asked = Vec::with_capacity(chunks.len());
    let mut which = Vec::with_capacity(chunks.len());
    let mut out = Vec::with_capacity(chunks.len());
    for &i in chunks {
        let (header, mime, data) = match &items[i].m {
            Incoming::Small(m) => match &m.content {
                crate::message::Content::Data(d) => {
                    (&m.header, &d.mime_type, DataRef::Bytes(&d.bytes))
                }
                _ => {
                    out.push((i, Written::Bad("it holds no data".into())));
                    continue;
                }
            },
            Incoming::Large { layout, file, .. } => {
                (&layout.header, &layout.mime_type, DataRef::File(file))
            }
        };
        asked.push(InPlace { header, mime, data });
        which.push(i);
    }
    let written = Extensions::of(spool).write_in_place(spool, &asked, now, log)?;
    out.extend(which.into_iter().zip(written));
    Ok(out)
}

/// Whether message `id` is held in some aggregate's inputs.
fn held_for_aggregate(spool: &Spool, id: &MessageId) -> bool {
    let suffix = format!(".{id}.msg");
    walkdir::WalkDir::new(spool.dir(Area::Aggregate))
        .min_depth(3)
        .max_depth(3)
        .into_iter()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(&suffix))
}

/// Offers the final deliveries among `items` (indexes `locals`) to the
/// sink installed on the spool, if it is active here; leaves in `locals`
/// what goes into the Maildir.
fn offer(
    spool: &Spool,
    state: &mut dyn Shared,
    items: &[ToStore],
    locals: &mut Vec<usize>,
    stored: &mut [Option<Stored>],
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let Some(DeliverySink(sink)) = spool.part::<DeliverySink>() else {
        return Ok(());
    };
    if locals.is_empty() || !sink.active(spool) {
        return Ok(());
    }
    let writers: Vec<_> = locals
        .iter()
        .map(|&i| {
            let m = &items[i].m;
            move |h: &Header, out: &mut dyn Write| m.write_with(h, out)
        })
        .collect();
    let offered: Vec<Offered<'_>> = locals
        .iter()
        .zip(&writers)
        .map(|(&i, w)| Offered {
            header: items[i].m.header(),
            size: items[i].m.stored_size(),
            write: w,
        })
        .collect();
    let results = sink.deliver(spool, state, &offered, now, log)?;
    let mut results = results.into_iter();
    locals.retain(|&i| match results.next() {
        Some(Delivered::Taken) => {
            stored[i] = Some(Stored::Kept("delivered"));
            false
        }
        Some(Delivered::Later(why)) => {
            stored[i] = Some(Stored::Later(why));
            false
        }
        Some(Delivered::Maildir) | None => true,
    });
    Ok(())
}

/// Keeps what it can of `items` durably here: as far as the disk has room
/// above `min_free` (in order), delivered into the Maildir or admitted to
/// the queue; returns what became of each, in order. The intent file is
/// written first and must be removed by the caller once the batch is
/// remembered and acknowledged.
pub(super) fn store(
    spool: &Spool,
    state: &mut dyn Shared,
    items: &[ToStore],
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Vec<Stored>> {
    let mut stored: Vec<Option<Stored>> = vec![None; items.len()];
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let config = spool.config();
    let me = &config.component;

    // Only what the disk has room for is stored now.
    let mut room = spool.room()?;
    let mut fits = 0;
    for t in items {
        let size = t.m.stored_size();
        if size > room {
            break;
        }
        room -= size;
        fits += 1;
    }
    if fits < items.len() {
        let why = format!(
            "the disk of {me} is nearly full (less than [spool] min_free = {} would be left)",
            config.spool.min_free
        );
        log(format!(
            "{} message(s) not taken now: {why}; they stay with their senders",
            items.len() - fits
        ));
        for s in &mut stored[fits..] {
            *s = Some(Stored::Later(why.clone()));
        }
    }
    let items = &items[..fits];

    // Write down what is about to be stored, so a crash cannot make us
    // deliver twice or forget to acknowledge.
    let mut intents = String::new();
    for t in items {
        intents.push_str(
            &Intent {
                id: t.m.header().id.clone(),
                from: t.from.clone(),
                keep_until: state.keep_until(t.m.header().qos().expiry)?,
                disposition: t.disposition,
                created: Some(t.m.header().created),
            }
            .line(),
        );
    }
    if !intents.is_empty() {
        durable::write_durable(
            &spool.dir(Area::Tmp),
            &spool.dir(Area::State),
            "receive.intent",
            intents.as_bytes(),
            now.as_micros(),
        )?;
    }

    // Final delivery: to the sink the program installed, when it is
    // active here, else into the Maildir.
    let mut locals: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].disposition == Disposition::Local)
        .collect();
    offer(spool, state, items, &mut locals, &mut stored, now, log)?;
    let writers: Vec<(MessageId, maildir::Writer<'_>)> = locals
        .iter()
        .map(|&i| {
            let t = &items[i];
            let header = stamped(t.m.header(), &t.from, me, now);
            let write: maildir::Writer<'_> =
                Box::new(move |out: &mut dyn Write| t.m.write_with(&header, out));
            (t.m.header().id.clone(), write)
        })
        .collect();
    maildir::deliver(spool, &writers, now)?;
    for &i in &locals {
        stored[i] = Some(Stored::Kept("delivered"));
    }

    admit(spool, items, &mut stored, now, log)?;
    hold(spool, items, &mut stored, now, log)?;
    Ok(stored
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Stored::Later("not stored".into())))
        .collect())
}

/// `h` with this site's trace: received from `from` by `me` at `now`.
fn stamped(h: &Header, from: &Name, me: &Name, now: Timestamp) -> Header {
    let mut h = h.clone();
    h.stamp_received_from(from, me, now);
    h
}

/// Custody on the way to a next hop: the messages of `items` to relay are
/// admitted to this site's queue (with a rule's choice of peer), as far as
/// the queue's limits let them.
fn admit(
    spool: &Spool,
    items: &[ToStore],
    stored: &mut [Option<Stored>],
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let me = &spool.config().component;
    // Custody on the way to a next hop: admitted to this site's queue.
    let relays: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].disposition == Disposition::Relay)
        .collect();
    if !relays.is_empty() {
        let mut staged = Vec::with_capacity(relays.len());
        for &i in &relays {
            let h = items[i].m.header();
            let mut s = spool.stage(now)?;
            let path = s.path().to_path_buf();
            items[i]
                .m
                .write_with(&stamped(h, &items[i].from, me, now), &mut s)
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
        // A rule's choice of peer is kept with the message, made durable
        // by the same group commit.
        let mut pins = Vec::new();
        for &i in &relays {
            if let Some(peer) = &items[i].pin {
                pins.push((
                    crate::route::stage_pin(spool, peer, now)?,
                    &items[i].m.header().id,
                ));
            }
        }
        let written = staged.iter().map(|(s, _)| s.path());
        durable::sync_files(
            &spool.dir(Area::Tmp),
            written.chain(pins.iter().map(|(s, _)| s.path())),
        )?;
        crate::route::commit_pins(spool, pins)?;
        let admissions = spool.lock(now)?.admit_many(staged, now)?;
        for (&i, admission) in relays.iter().zip(admissions) {
            stored[i] = Some(match admission {
                Admission::Queued { evicted, .. } => {
                    for (victim, detail) in evicted {
                        log(format!("{} moved to dead/: {detail}", victim.id));
                    }
                    Stored::Kept("custody")
                }
                Admission::Rejected { detail, .. } => {
                    log(format!(
                        "{} from {} not taken now: {detail}",
                        items[i].m.header().id,
                        items[i].from
                    ));
                    Stored::Later(detail)
                }
            });
        }
    }
    Ok(())
}

/// The messages of `items` held for an extension: data written in place
/// (held in `divert/` instead when that cannot be now), diverted to a
/// handler, gathered for an aggregate.
fn hold(
    spool: &Spool,
    items: &[ToStore],
    stored: &mut [Option<Stored>],
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let me = &spool.config().component;
    // Chunks of transfers received here, written in place; those that
    // cannot be now are held for `bulk` instead.
    let mut held_chunks = vec![false; items.len()];
    let chunks: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].disposition == Disposition::Chunk)
        .collect();
    if !chunks.is_empty() {
        for (i, taken) in write_in_place(spool, items, &chunks, now, log)? {
            match taken {
                Written::Kept => stored[i] = Some(Stored::Kept("custody")),
                Written::Bad(why) => {
                    let t = &items[i];
                    let h = t.m.header();
                    let why = format!("{}: {why}", h.id);
                    let kept = spool.quarantine_with(
                        crate::spool::Quarantined::Unreadable,
                        |out| t.m.write_with(h, out),
                        "chunk",
                        t.from.as_str(),
                        &why,
                        now,
                    )?;
                    log(format!("{why}: quarantined as {}", kept.display()));
                    stored[i] = Some(Stored::Kept("custody"));
                }
                Written::Later(_) => held_chunks[i] = true,
            }
        }
    }

    // Held for rules: diverted to a handler, gathered for an aggregate.
    for (i, t) in items.iter().enumerate() {
        let (dir, name) = match t.disposition {
            Disposition::Chunk if !held_chunks[i] => continue,
            Disposition::Divert | Disposition::Chunk => {
                let dir = spool.dir(Area::Divert);
                let state = format!(
                    "rule {}\nfrom {}\nfailures 0\n",
                    t.rule.as_deref().unwrap_or_default(),
                    t.from
                );
                durable::write_durable(
                    &spool.dir(Area::Tmp),
                    &dir,
                    &format!("{}.state", t.m.header().id),
                    state.as_bytes(),
                    now.as_micros(),
                )?;
                (dir, format!("{}.msg", t.m.header().id))
            }
            Disposition::Aggregate => {
                let h = t.m.header();
                let dir = spool
                    .dir(Area::Aggregate)
                    .join(rule_dir(t.rule.as_deref().unwrap_or_default()))
                    .join(format!("{}.{}", h.class, h.subclass));
                durable::create_dir_all(&dir)?;
                (dir, format!("{:016}.{}.msg", now.as_micros(), h.id))
            }
            _ => continue,
        };
        let mut s = spool.stage(now)?;
        let path = s.path().to_path_buf();
        t.m.write_with(&stamped(t.m.header(), &t.from, me, now), &mut s)
            .map_err(|e| Error::io("write", &path, e))?;
        s.sync()?;
        s.commit(&dir.join(name))?;
        durable::fsync_dir(&dir)?;
        stored[i] = Some(Stored::Kept("custody"));
    }
    Ok(())
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
