//! Aggregates: the messages a rule gathers (`aggregate/RULE/CLASS.SUBCLASS/
//! ARRIVAL.ID.msg`, each acknowledged once it is durable there) become one
//! message of this relay's own when `count` of them wait or the oldest is
//! `age` old. The aggregate's content is data of type `multipart/related`:
//! the envelope of its inputs, nested whole; it is queued toward the next
//! hop with its own guarantee, and the inputs go only once it is durable.
//!
//! Its ID is derived from its inputs' (the oldest's creation time and a
//! digest of all their IDs), so a run killed between queueing the aggregate
//! and removing the inputs makes the same aggregate again, which the queue
//! (and the receiver's duplicate memory) takes as what it is: the same.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{entry_name, Pending};
use crate::filter::{Action, Rule};
use crate::message::{
    envelope, Content, Data, Header, Locator, Message, MessageId, MimeType, Name, Persistence,
    Precedence, Qos, Source,
};
use crate::receive::rule_dir;
use crate::spool::{durable, Admission, Area, Error, Result, Spool};
use crate::time::{Clock, Timestamp};

/// Most bytes of inputs in one aggregate (they are held in memory).
const MAX_BYTES: u64 = 32 << 20;

/// Makes every aggregate that is due.
pub fn run(spool: &Spool, clock: &Clock, log: &dyn Fn(String), p: &mut Pending) -> Result<()> {
    let root = spool.dir(Area::Aggregate);
    let config = spool.config();
    for rule_entry in std::fs::read_dir(&root)
        .map_err(|e| Error::io("read", &root, e))?
        .flatten()
    {
        let dir_name = rule_entry.file_name().to_string_lossy().into_owned();
        let rule = config
            .rules
            .iter()
            .enumerate()
            .find(|(i, r)| rule_dir(&r.label(*i)) == dir_name && r.action == Action::Aggregate)
            .map(|(_, r)| r);
        for class_entry in std::fs::read_dir(rule_entry.path())
            .map_err(|e| Error::io("read", &rule_entry.path(), e))?
            .flatten()
        {
            loop {
                let made = make_one(spool, rule, &class_entry.path(), clock, log)?;
                if made == 0 {
                    break;
                }
                p.aggregates += 1;
                p.aggregated += made;
            }
        }
    }
    Ok(())
}

/// Inputs waiting in `dir`, oldest first: (arrival, path).
fn inputs(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut v: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("read", dir, e))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let arrival = name.strip_suffix(".msg")?.split('.').next()?.parse().ok()?;
            Some((arrival, e.path()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Makes one aggregate from `dir` if it is due (or its rule is gone: what
/// waits goes at once); returns how many inputs it holds (0: none made).
fn make_one(
    spool: &Spool,
    rule: Option<&Rule>,
    dir: &Path,
    clock: &Clock,
    log: &dyn Fn(String),
) -> Result<usize> {
    let now = clock.now();
    let waiting = inputs(dir)?;
    let Some(&(oldest, _)) = waiting.first() else {
        return Ok(0);
    };
    let by_count = rule.and_then(|r| r.count).map(|c| c as usize);
    let due = match rule {
        None => true,
        Some(r) => {
            by_count.is_some_and(|c| waiting.len() >= c)
                || r.age
                    .is_some_and(|a| Timestamp::from_micros(oldest).saturating_add(a) <= now)
        }
    };
    if !due {
        return Ok(0);
    }
    let mut messages: Vec<Message> = Vec::new();
    let mut taken: Vec<&PathBuf> = Vec::new();
    let mut bytes = 0;
    for (_, path) in waiting.iter().take(by_count.unwrap_or(usize::MAX)) {
        let b = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        if bytes > 0 && bytes + b.len() as u64 > MAX_BYTES {
            break;
        }
        bytes += b.len() as u64;
        match envelope::parse(&b) {
            Ok(ms) => messages.extend(ms),
            Err(e) => {
                log(format!(
                    "{} cannot be read ({e}): quarantined",
                    path.display()
                ));
                spool.quarantine(path, "aggregate", &e.to_string(), now)?;
                continue;
            }
        }
        taken.push(path);
    }
    if messages.is_empty() {
        return Ok(taken.len());
    }
    let aggregate = build(spool, &messages, now)?;
    let id = aggregate.header.id.clone();
    let already = spool.find(id.as_str()).is_ok();
    if !already {
        let mut staged = spool.stage(now)?;
        let path = staged.path().to_path_buf();
        envelope::write(std::slice::from_ref(&aggregate), &mut staged)
            .map_err(|e| Error::io("write", &path, e))?;
        staged.sync()?;
        let name = entry_name(&aggregate.header, staged.size());
        if let Admission::Rejected { detail, .. } = spool.lock(now)?.admit(staged, name, now)? {
            log(format!(
                "aggregate {id} of {} message(s) not queued now: {detail}; its inputs wait",
                messages.len()
            ));
            return Ok(0);
        }
    }
    for path in &taken {
        durable::remove_file(path).map_err(|e| Error::io("remove", path, e))?;
    }
    durable::fsync_dir(dir)?;
    log(format!(
        "aggregate {id} queued: {} message(s) of {}/{}",
        messages.len(),
        aggregate.header.class,
        aggregate.header.subclass
    ));
    Ok(taken.len())
}

/// The aggregate of `inputs`: this relay's own message, of their class and
/// subclass, nesting their envelope; its ID derived from theirs.
fn build(spool: &Spool, inputs: &[Message], now: Timestamp) -> Result<Message> {
    let first = &inputs[0].header;
    let oldest = inputs.iter().map(|m| m.header.created).min().unwrap_or(now);
    let mut digest = Sha256::new();
    let mut ids: Vec<&str> = inputs.iter().map(|m| m.header.id.as_str()).collect();
    ids.sort_unstable();
    for id in ids {
        digest.update(id.as_bytes());
        digest.update(b"\n");
    }
    let d = digest.finalize();
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    let invalid = |e: crate::message::Error| {
        Error::io(
            "make an aggregate in",
            &spool.dir(Area::Aggregate),
            std::io::Error::other(e.to_string()),
        )
    };
    let id = MessageId::parse(&format!("{}-agg-{hex}", oldest.to_id_prefix())).map_err(invalid)?;
    let precedence = inputs
        .iter()
        .map(|m| m.header.qos().precedence)
        .min_by_key(|p| p.rank())
        .unwrap_or(Precedence::Normal);
    Ok(Message {
        header: Header {
            id,
            created: now,
            class: first.class.clone(),
            subclass: first.subclass.clone(),
            locator: Locator::Source(Source {
                component: spool.config().component.clone(),
                component_type: Name::new("type", "rs-relay").map_err(invalid)?,
                version: Name::new("version", env!("CARGO_PKG_VERSION")).map_err(invalid)?,
                qos: Qos {
                    expiry: None,
                    precedence,
                    persistence: Persistence::Normal,
                },
            }),
            in_reply_to: None,
            origin_key: None,
            epoch: None,
            routing: Vec::new(),
        },
        content: Content::Data(Data {
            mime_type: MimeType::new("multipart/related").map_err(invalid)?,
            bytes: envelope::to_bytes(inputs),
        }),
    })
}
