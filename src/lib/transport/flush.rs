//! Sending what is due to one peer over one transport.
//!
//! 1. Acknowledgements owed to the peer become envelopes (`ack::emit`).
//! 2. Under the spool lock: expired messages go to dead/; the candidates are
//!    the queued messages whose next hop is the peer and the sent ones whose
//!    retransmission is due; messages under another run's live lease are
//!    passed over; the throttle and holds decide what is due; a transmit
//!    lease is granted on it.
//! 3. The transport carries the files (no lock held).
//! 4. Under the spool lock: if the lease is still ours, what was handed over
//!    moves to sent/ (or its attempt count grows), what was refused goes to
//!    dead/; acknowledgement envelopes carried are removed. If the lease
//!    lapsed meanwhile, nothing is recorded: another run may have taken the
//!    messages, and the receiver's duplicate memory absorbs a double send.

use std::collections::HashSet;

use crate::ack;
use crate::config::Peer;
use crate::message::envelope;
use crate::queue::retry;
use crate::queue::throttle::{self, Stop};
use crate::receive::ReceiveLock;
use crate::route::{self, Learned, NextHop};
use crate::spool::lease::{self, Lease, Period, Policy, Request};
use crate::spool::{Area, DeadKind, Entry, EntryName, Result, Spool};
use crate::time::Clock;

use super::{dir, Outcome, Outgoing, Transport};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages handed over (first sends and retransmissions).
    pub sent: usize,
    pub retransmitted: usize,
    pub bytes: u64,
    /// Acknowledgement envelopes carried.
    pub ack_files: usize,
    pub deferred: usize,
    pub refused: usize,
    /// Expired messages moved to dead/ instead of being sent.
    pub expired: usize,
    /// Due messages another run holds a lease on.
    pub leased_elsewhere: usize,
    /// Messages for this peer left waiting (throttle, holds).
    pub waiting: usize,
    pub stopped: Option<String>,
    /// The lease lapsed before the transfer ended: nothing was recorded.
    pub lease_lapsed: bool,
    /// Why the last message deferred was not sent.
    pub last_error: Option<String>,
}

/// Whether `e`'s next hop is `peer`.
fn bound_for(spool: &Spool, e: &Entry, peer: &Peer, learned: &Learned) -> bool {
    if let Some(s) = &e.sent {
        return s.peer == peer.id;
    }
    if !e.name.addressed {
        return peer.upstream;
    }
    let Ok(file) = std::fs::File::open(spool.entry_path(e)) else {
        return false;
    };
    match envelope::first_header(file) {
        Ok(h) => route::next_hop(&h, spool.config(), learned) == NextHop::Peer(peer.id.clone()),
        Err(_) => false,
    }
}

/// Sends what is due to `peer` through `transport`.
pub fn flush(
    spool: &Spool,
    peer: &Peer,
    transport: &mut dyn Transport,
    clock: &Clock,
    log: &dyn Fn(String),
) -> Result<Report> {
    let mut report = Report::default();
    let now = clock.now();
    {
        let _r = ReceiveLock::take(spool)?;
        ack::emit(spool, Some(&peer.id), now)?;
    }
    let learned = Learned::load(spool);
    let config = spool.config();
    let policy = Policy {
        max: config.lease.transmit_max,
        allow_infinite: false,
        allow_zero: false,
    };

    let (lease, chosen) = {
        let mut locked = spool.lock(now)?;
        let mut candidates: Vec<Entry> = Vec::new();
        for e in spool.scan_outbound(now)? {
            if e.name.is_expired(now) {
                let detail = match e.area {
                    Area::Sent => format!(
                        "expired at {} before it was acknowledged",
                        e.name.expiry.unwrap_or_default()
                    ),
                    _ => format!(
                        "expired at {} before it was sent",
                        e.name.expiry.unwrap_or_default()
                    ),
                };
                locked.bury(&e, DeadKind::Expired, &detail, now)?;
                log(format!("{} expired: moved to dead/", e.name.id));
                report.expired += 1;
                continue;
            }
            let eligible = match (&e.area, &e.sent) {
                (Area::Queue(_), _) => true,
                (Area::Sent, Some(s)) => {
                    retry::retransmit_at(s, peer.ack_timeout, peer.retry_cap) <= now
                }
                _ => false,
            };
            if eligible && bound_for(spool, &e, peer, &learned) {
                candidates.push(e);
            }
        }
        let leased = lease::live_messages(&spool.dir(Area::Leases), now)?;
        let before = candidates.len();
        candidates.retain(|e| !leased.contains(e.name.id.as_str()));
        report.leased_elsewhere = before - candidates.len();
        candidates.sort_by_key(|e| e.name.send_order_key());
        let names: Vec<EntryName> = candidates.iter().map(|e| e.name.clone()).collect();
        let due = throttle::due(
            &names,
            &config.throttle,
            spool.is_held(),
            spool.throttle_sent(),
            now,
            clock.utc_offset_secs(),
        );
        report.waiting = candidates.len() - due.due.len();
        report.stopped = due.stop.as_ref().map(Stop::to_string);
        let chosen: Vec<Entry> = due.due.iter().map(|&i| candidates[i].clone()).collect();
        let lease = if chosen.is_empty() {
            None
        } else {
            let generation = locked.next_generation(now)?;
            let req = Request {
                kind: lease::Kind::Transmit,
                period: Period::For(policy.max),
                policy,
                messages: chosen.iter().map(|e| e.name.id.clone()).collect(),
            };
            Some(Lease::grant(
                &spool.dir(Area::Leases),
                &spool.dir(Area::Tmp),
                generation,
                req,
                now,
            )?)
        };
        (lease, chosen)
    };

    // Acknowledgement envelopes first: they are small and free the far side.
    let ack_files = ack::outgoing(spool, &peer.id);
    if !ack_files.is_empty() {
        let batch: Vec<Outgoing> = ack_files
            .iter()
            .map(|p| Outgoing {
                path: p.clone(),
                wire_name: format!(
                    "ack-{}",
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
            })
            .collect();
        for (path, outcome) in ack_files.iter().zip(transport.send(&batch)) {
            if outcome == Outcome::Handed {
                let _ = std::fs::remove_file(path);
                report.ack_files += 1;
            }
        }
    }
    let Some(mut lease) = lease else {
        return Ok(report);
    };

    // Messages, a chunk at a time (the transport says how many): each
    // chunk's outcome is recorded, and the lease renewed, before the next
    // one goes.
    for chunk in chosen.chunks(transport.chunk_size().max(1)) {
        let batch: Vec<Outgoing> = chunk
            .iter()
            .map(|e| Outgoing {
                path: spool.entry_path(e),
                wire_name: dir::message_wire_name(
                    e.name.precedence.rank(),
                    e.name.arrival,
                    e.name.id.as_str(),
                ),
            })
            .collect();
        let outcomes = transport.send(&batch);
        let now = clock.now();
        let mut locked = spool.lock(now)?;
        if !lease.is_current(now) {
            log(format!(
                "the lease on {} message(s) lapsed before the transfer ended; not recording them as sent (they will be sent again; the receiver drops duplicates)",
                chunk.len()
            ));
            report.lease_lapsed = true;
            return Ok(report);
        }
        let mut bytes = 0;
        let mut sent = 0;
        for (e, outcome) in chunk.iter().zip(&outcomes) {
            match outcome {
                Outcome::Handed => {
                    if e.sent.is_some() {
                        report.retransmitted += 1;
                    }
                    locked.mark_sent(e, &peer.id, now)?;
                    sent += 1;
                    bytes += e.name.size;
                }
                Outcome::Deferred(why) => {
                    report.deferred += 1;
                    if report.last_error.as_deref() != Some(why.as_str()) {
                        log(format!("{} (and any later message deferred for the same reason) not sent now: {why}", e.name.id));
                        report.last_error = Some(why.clone());
                    }
                }
                Outcome::Refused(why) => {
                    report.refused += 1;
                    let detail =
                        format!("refused by {} via {}: {why}", peer.id, transport.describe());
                    locked.bury(e, DeadKind::Rejected, &detail, now)?;
                    log(format!("{} refused by {}: {why}", e.name.id, peer.id));
                }
            }
        }
        locked.sync_outbound()?;
        locked.record_sent(sent as u64, bytes, now, clock.utc_offset_secs())?;
        report.sent += sent;
        report.bytes += bytes;
        lease.renew(Period::For(policy.max), policy, now)?;
    }
    lease.release()?;
    Ok(report)
}

/// IDs of every outbound message (for pruning a directory route).
pub fn outbound_ids(spool: &Spool, now: crate::time::Timestamp) -> Result<HashSet<String>> {
    Ok(spool
        .scan_outbound(now)?
        .into_iter()
        .map(|e| e.name.id.to_string())
        .collect())
}
