//! What cannot be delivered after custody is reported to its origin
//! (SPEC.md section 6, item 7). A message buried in dead/ for a reason its
//! origin hears of from nobody else (expired, evicted, refused by a route,
//! deleted by the operator, unclaimed) leaves a marker in `state/untold/`
//! ([`crate::spool::Locked::bury`]); [`sweep`] owes each origin a
//! `final-rejected` notice with the reason, through the route that leads
//! to it, then drops the marker: at least once (a crash between the two
//! tells the origin twice, which changes nothing there).
//!
//! The sweep also buries what expired while waiting (as the outbound
//! runner does for the peers it serves), and, as unclaimed, the
//! back-channel messages a peer has not taken within its `hold` time (a
//! component known but away too long), so they are reported the same way.

use crate::ack::{self, Owed};
use crate::message::{envelope, Name, ResponseStatus};
use crate::outbound;
use crate::route::{self, Learned, NextHop};
use crate::spool::{durable, lease, Area, DeadKind, Reason, Result, Spool, UNTOLD};
use crate::time::{format_duration, Timestamp};

/// What [`sweep`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Messages buried because they expired while waiting.
    pub expired: usize,
    /// Back-channel messages buried because their peer stayed away.
    pub unclaimed: usize,
    /// Origins owed a notice.
    pub told: usize,
}

/// Buries what was left unclaimed too long (and, with `expired`, what
/// expired), and tells the origins of what was buried. Cheap when there is
/// nothing to do: a listing of the outbound names and of an empty
/// directory.
pub fn sweep(spool: &Spool, now: Timestamp, expired: bool, log: &dyn Fn(String)) -> Result<Swept> {
    let mut swept = Swept::default();
    bury_waiting(spool, now, expired, log, &mut swept)?;
    swept.told = tell_untold(spool, now, log)?;
    Ok(swept)
}

/// Buries what expired, and what its peer left unclaimed past its hold.
fn bury_waiting(
    spool: &Spool,
    now: Timestamp,
    expired: bool,
    log: &dyn Fn(String),
    swept: &mut Swept,
) -> Result<()> {
    let config = spool.config();
    let shortest = config.peers.iter().map(|p| p.hold).min();
    let waited = |arrival: u64| {
        now.since(Timestamp::from_micros(
            i64::try_from(arrival).unwrap_or(i64::MAX),
        ))
    };
    let due = |e: &crate::spool::Entry| {
        expired && e.name.is_expired(now)
            || e.name.addressed && shortest.is_some_and(|s| waited(e.name.arrival) >= s)
    };
    if !spool.scan_outbound(now)?.iter().any(due) {
        return Ok(());
    }
    let learned = Learned::load(spool);
    let pins = spool.dir(Area::State).join("pinned").is_dir();
    let mut locked = spool.lock(now)?;
    let leased = lease::live_messages(&spool.dir(Area::Leases), now)?;
    for e in spool.scan_outbound(now)?.into_iter().filter(due) {
        if leased.contains(e.name.id.as_str()) {
            continue;
        }
        if expired && e.name.is_expired(now) {
            locked.bury_expired(&e, now)?;
            log(format!("{} expired: moved to dead/", e.name.id));
            swept.expired += 1;
            continue;
        }
        let waits_for = match &e.sent {
            Some(s) => Some(s.peer.clone()),
            None => outbound::next_hop_of(spool, &e, &learned, pins),
        };
        let Some(peer) = waits_for.as_ref().and_then(|p| config.peer(p.as_str())) else {
            continue;
        };
        if waited(e.name.arrival) < peer.hold {
            continue;
        }
        let detail = format!(
            "{} did not take it within its hold time ({})",
            peer.id,
            format_duration(peer.hold)
        );
        locked.bury(&e, DeadKind::Unclaimed, &detail, now)?;
        log(format!("{}: {detail}: moved to dead/", e.name.id));
        swept.unclaimed += 1;
    }
    Ok(())
}

fn tell_untold(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<usize> {
    let dir = spool.dir(Area::State).join(UNTOLD);
    let Ok(markers) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let learned = Learned::load(spool);
    let mut told = 0;
    for marker in markers.flatten() {
        let name = marker.file_name().to_string_lossy().into_owned();
        let dead = spool.dir(Area::Dead).join(&name);
        let header = std::fs::File::open(&dead)
            .ok()
            .and_then(|f| envelope::first_header(f).ok());
        if let Some(h) = header {
            let reason = std::fs::read_to_string(dead.with_file_name(format!("{name}.reason")))
                .map(|t| Reason::parse(&t))
                .map(|r| r.detail)
                .unwrap_or_else(|_| "in dead/ (no reason recorded)".into());
            tell_origin(spool, &h, &learned, &reason, now)?;
            if h.origin().is_some_and(|o| *o != spool.config().component) {
                log(format!("{}: its origin is told: {reason}", h.id));
                told += 1;
            }
        }
        let _ = crate::spool::durable::remove_file(&marker.path());
    }
    Ok(told)
}

/// Owes the origin of the message with header `h` a notice that it will
/// not be delivered, through the route that leads to it; durable on
/// return. Nothing when the origin is this site or unknown.
pub fn tell_origin(
    spool: &Spool,
    h: &crate::message::Header,
    learned: &Learned,
    reason: &str,
    now: Timestamp,
) -> Result<()> {
    let _ = now;
    let config = spool.config();
    let Some(origin) = h.origin() else {
        return Ok(());
    };
    if *origin == config.component {
        return Ok(());
    }
    let via: Name = match route::toward(origin, config, learned) {
        Some(NextHop::Peer(p)) => p,
        _ => match config.upstream() {
            Some(u) => u.id.clone(),
            None => return Ok(()),
        },
    };
    let _lock = crate::receive::ReceiveLock::take(spool)?;
    ack::owe(
        spool,
        &via,
        &[Owed {
            id: h.id.clone(),
            status: ResponseStatus::Rejected,
            code: "final-rejected",
            to: origin.clone(),
            reason: format!("undeliverable at {}: {reason}", config.component),
        }],
    )?;
    durable::fsync_dir(&spool.dir(Area::AcksPending))
}
