//! Messages in the site's custody that a feature hands on or holds: a
//! message handed on as routing says ([`pass_on`]: delivered here, queued
//! toward its next hop, or dead with its origin told), and what a feature
//! keeps in `divert/` under its own label ([`held`], [`remove`]); the
//! pending work over all of it that every command receiving or sending
//! runs ([`tend`]).
//!
//! Architecture invariant: what [`pass_on`] is given is durable where it
//! went (delivered, queued or dead) before it returns.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::message::{envelope, Locator, Message};
use crate::outbound::untold::tell_origin;
use crate::receive::Extensions;
use crate::route::{self, Learned, NextHop};
use crate::spool::{durable, maildir, Admission, Area, DeadKind, EntryName, Error, Result, Spool};
use crate::time::{Clock, Timestamp};

/// The outbound name a message file of `size` bytes takes.
pub fn entry_name(m: &crate::message::Header, size: u64) -> EntryName {
    let q = m.qos();
    EntryName {
        arrival: 0,
        id: m.id.clone(),
        precedence: q.precedence,
        persistence: q.persistence,
        addressed: matches!(m.locator, Locator::Destination(_)),
        created: m.created,
        expiry: q.expiry,
        size,
    }
}

/// Hands messages on as routing says (no rule is applied again): delivered
/// here, or admitted to this site's queue toward their next hop; one with
/// no way on goes to dead/ and its origin is told. Durable on return.
pub fn pass_on(
    spool: &Spool,
    messages: Vec<Message>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<usize> {
    let config = spool.config();
    let learned = Learned::load(spool);
    let mut local: Vec<(crate::message::MessageId, maildir::Writer<'_>)> = Vec::new();
    let mut n = 0;
    for m in &messages {
        match route::next_hop(&m.header, config, &learned) {
            NextHop::Local => {
                let write: maildir::Writer<'_> = Box::new(move |out: &mut dyn Write| {
                    let mut out = out;
                    envelope::write(std::slice::from_ref(m), &mut out)
                });
                local.push((m.header.id.clone(), write));
            }
            NextHop::Peer(_) => {
                let mut staged = spool.stage(now)?;
                let path = staged.path().to_path_buf();
                envelope::write(std::slice::from_ref(m), &mut staged)
                    .map_err(|e| crate::spool::Error::io("write", &path, e))?;
                staged.sync()?;
                let name = entry_name(&m.header, staged.size());
                if let Admission::Rejected { detail, .. } =
                    spool.lock(now)?.admit(staged, name, now)?
                {
                    log(format!(
                        "{} handed on but not queued: {detail}",
                        m.header.id
                    ));
                    tell_origin(spool, &m.header, &learned, &detail, now)?;
                }
            }
            NextHop::Unknown(why) => {
                let mut staged = spool.stage(now)?;
                let path = staged.path().to_path_buf();
                envelope::write(std::slice::from_ref(m), &mut staged)
                    .map_err(|e| crate::spool::Error::io("write", &path, e))?;
                staged.sync()?;
                let name = entry_name(&m.header, staged.size());
                let tmp_name = spool
                    .dir(Area::Tmp)
                    .join(format!("pass-on.{}", m.header.id));
                staged.commit(&tmp_name)?;
                spool.lock(now)?.bury_held(
                    &tmp_name,
                    name,
                    DeadKind::Rejected,
                    "relay",
                    &why,
                    now,
                )?;
                log(format!("{}: no way on: {why}", m.header.id));
                tell_origin(spool, &m.header, &learned, &why, now)?;
            }
        }
        n += 1;
    }
    maildir::deliver(spool, &local, now)?;
    Ok(n)
}

/// What rs holds in `divert/` for itself under `label` (not a rule's):
/// (the peer it came from, the message file, its state file), in order.
pub fn held(spool: &Spool, label: &str) -> Result<Vec<(String, PathBuf, PathBuf)>> {
    let dir = spool.dir(Area::Divert);
    let mut held: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(&dir)
        .map_err(|e| Error::io("read", &dir, e))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".state") else {
            continue;
        };
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if text.lines().next() == Some(&format!("rule {label}")) {
            let from = text
                .lines()
                .find_map(|l| l.strip_prefix("from "))
                .unwrap_or_default()
                .to_string();
            held.push((from, dir.join(format!("{id}.msg")), e.path()));
        }
    }
    held.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(held)
}

/// Removes a held message and its state file (the message first).
pub fn remove(dir: &Path, msg: &Path, state: &Path) -> Result<()> {
    match durable::remove_file(msg) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", msg, e)),
    }
    let _ = durable::remove_file(state);
    durable::fsync_dir(dir)
}

/// The pending work: each installed extension's (what it holds, its
/// sweeps: see [`crate::receive::Extension::tend`]), then what cannot be
/// delivered reported to its origins (`expired`: burying what expired
/// too, not when an outbound run follows, which does). Returns the lines
/// saying what was done; none when nothing was.
pub fn tend(
    spool: &Spool,
    clock: &Clock,
    expired: bool,
    log: &dyn Fn(String),
) -> Result<Vec<String>> {
    let mut lines = Extensions::of(spool).tend(spool, clock, log)?;
    let swept = crate::outbound::untold::sweep(spool, clock.now(), expired, log)?;
    lines.extend(undeliverable(&swept));
    Ok(lines)
}

/// The line saying what a sweep found undeliverable; none when nothing.
pub fn undeliverable(swept: &crate::outbound::untold::Swept) -> Option<String> {
    (swept.expired + swept.unclaimed + swept.told > 0).then(|| {
        format!(
            "undeliverable: {} message(s) expired and {} unclaimed past their peer's hold time (now in dead/); {} origin(s) owed a notice",
            swept.expired, swept.unclaimed, swept.told
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_undeliverable_get_their_line_and_nothing_says_nothing() {
        let mut swept = crate::outbound::untold::Swept::default();
        assert_eq!(undeliverable(&swept), None);
        swept.unclaimed = 3;
        assert_eq!(
            undeliverable(&swept).unwrap(),
            "undeliverable: 0 message(s) expired and 3 unclaimed past their peer's hold time (now in dead/); 0 origin(s) owed a notice"
        );
    }
}
