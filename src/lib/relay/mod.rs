//! What a relay does with the messages its rules hold once they are in
//! custody (SPEC.md section 9): handlers run on diverted messages
//! (`divert`), aggregates made of gathered ones (`aggregate`), and what
//! such a message becomes handed on like any other (`pass_on`), and the
//! origins of what cannot be delivered told (`outbound::untold`). No daemon:
//! every command that receives or sends runs [`run_pending`], and
//! `rs-relay serve` runs it every few seconds.
//!
//! Architecture invariant: a held message leaves `divert/` or
//! `aggregate/` only after what replaces it is durable (the rewritten
//! message delivered or queued, the aggregate queued) or it is in dead/
//! with its reason and its origin told.

pub mod aggregate;
pub mod claim;
pub mod divert;

use std::io::Write;

use crate::message::{envelope, Locator, Message};
pub use crate::outbound::untold::{self, tell_origin};
use crate::route::{self, Learned, NextHop};
use crate::spool::{maildir, Admission, Area, DeadKind, EntryName, Result, Spool};
use crate::time::{Clock, Timestamp};

/// What [`run_pending`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Diverted messages a handler consumed.
    pub handled: usize,
    /// Messages handlers handed back, passed on in place of the originals.
    pub rewritten: usize,
    /// Handler runs that failed (the message stays for a retry).
    pub failures: usize,
    /// Diverted messages given up after too many failures (now dead).
    pub gave_up: usize,
    /// Aggregates made, and the inputs they hold.
    pub aggregates: usize,
    pub aggregated: usize,
    /// What was buried unclaimed, and the origins told of what is dead.
    pub swept: untold::Swept,
}

/// Runs the handlers of diverted messages, makes the aggregates that are
/// due, and reports what cannot be delivered to its origin (`untold`;
/// `expired`: bury what expired too, unless the caller's outbound run is
/// about to, counting it per peer).
pub fn run_pending(
    spool: &Spool,
    clock: &Clock,
    expired: bool,
    log: &dyn Fn(String),
) -> Result<Pending> {
    let mut p = Pending::default();
    crate::infra::run_held(spool, clock.now(), log)?;
    crate::bulk::run_held(spool, clock.now(), log)?;
    crate::bulk::tick(spool, clock.now(), log)?;
    divert::run(spool, clock, log, &mut p)?;
    aggregate::run(spool, clock, log, &mut p)?;
    p.swept = untold::sweep(spool, clock.now(), expired, log)?;
    Ok(p)
}

/// The outbound name a message file of `size` bytes takes.
pub(crate) fn entry_name(m: &crate::message::Header, size: u64) -> EntryName {
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
