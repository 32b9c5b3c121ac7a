//! The outbound runner: for each peer, over its routes in order, what is
//! due is selected, leased, exchanged with the peer, and the outcomes
//! recorded; what the peer handed back goes through `receive`.
//!
//! For one peer over one route ([`flush`]):
//! 1. Acknowledgements owed to the peer become envelopes (`ack::emit`).
//! 2. Under the spool lock: expired messages go to dead/; the candidates are
//!    the queued messages whose next hop is the peer and the sent ones whose
//!    retransmission is due; messages under another run's live lease are
//!    passed over; the throttle and holds decide what is due; a transmit
//!    lease is granted on it.
//! 3. The route exchanges a chunk at a time (no lock held): the
//!    acknowledgement envelopes ride the first; with nothing to send at all,
//!    a route that polls (HTTP) is still called, so the peer can hand
//!    things back.
//! 4. Under the spool lock: if the lease is still ours, what was handed over
//!    moves to sent/ (or its attempt count grows), what was refused goes to
//!    dead/; acknowledgement envelopes carried are removed. If the lease
//!    lapsed meanwhile, nothing is recorded: another run may have taken the
//!    messages, and the receiver's duplicate memory absorbs a double send.
//! 5. What the peer handed back is received from it (responses and
//!    acknowledgements applied, back-channel messages delivered or queued
//!    onward), after the outcomes are recorded, so a response discards the
//!    copy that was just recorded as sent.
//!
//! [`run`] is the route loop around it: the peers served, each peer's routes
//! in order (the next is tried only when one carries nothing), a failed
//! link's retry time (`link`), and the transport each route calls for.
//!
//! Redundant relays form a failover group (a peer's `backup`, in turn): a
//! message sent to one member and not acknowledged within its
//! `ack_timeout` is due again for the next member; what waits for a member
//! whose link has failed is taken by the first member after it whose link
//! works ([`stand_ins`]), and the failed member's run then exits 0 when
//! that member ran after it and sent.

pub mod gate;
pub mod kinds;
pub mod link;
pub mod untold;

/// Why the outbound runner could not serve the peers (what it did before
/// stays done: the spool records every step).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    /// The configuration of a peer or one of its routes cannot be used.
    #[error("peer {peer} in {config}: {reason}")]
    PeerSetup {
        peer: String,
        config: std::path::PathBuf,
        reason: String,
    },
    #[error("no peers are configured: add a [[peer]] to {config}")]
    NoPeers { config: std::path::PathBuf },
    #[error("--peer {peer} is not a configured peer (configured: {known})")]
    UnknownPeer { peer: String, known: String },
}

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::ack;
use crate::config::{self, Peer};
use crate::exit::ExitCode;
use crate::message::Name;
use crate::queue::retry;
use crate::queue::throttle::{self, Stop};
use crate::receive::{self, Inbound, ReceiveLock};
use crate::route::{self, Learned};
use crate::spool::lease::{self, Lease, Period, Policy, Request};
use crate::spool::{Area, DeadKind, Entry, EntryName, Result, Spool};
use crate::time::{Clock, Timestamp};
use crate::transport::dir::{self, DirTransport};
use crate::transport::http::HttpTransport;
use crate::transport::smtp::SmtpTransport;
use crate::transport::{Cargo, Exchanged, Outcome, Outgoing, Transport};
use gate::Gates;

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
    /// Exchanges made (calls to the route).
    pub exchanges: usize,
    /// The class of the last failed exchange, when recovery may address it.
    pub trouble: Option<crate::transport::Trouble>,
    /// What the peer handed back, as received here.
    pub received: receive::Report,
}

impl Report {
    /// Adds a second flush's counts over the same route to these.
    fn absorb(&mut self, o: Report) {
        self.sent += o.sent;
        self.retransmitted += o.retransmitted;
        self.bytes += o.bytes;
        self.ack_files += o.ack_files;
        self.deferred += o.deferred;
        self.refused += o.refused;
        self.expired += o.expired;
        self.leased_elsewhere = o.leased_elsewhere;
        self.waiting = o.waiting;
        self.stopped = o.stopped.or(self.stopped.take());
        self.lease_lapsed |= o.lease_lapsed;
        self.last_error = o.last_error.or(self.last_error.take());
        self.exchanges += o.exchanges;
        self.trouble = o.trouble.or(self.trouble);
        self.received.add(&o.received);
    }
}

/// For each configured peer, the peer that takes what is bound for it now:
/// itself, or, while its link has failed, the first member of its failover
/// group after it whose link has not (itself when all have failed).
fn stand_ins(spool: &Spool) -> HashMap<String, Name> {
    let config = spool.config();
    let failing = |p: &str| {
        config
            .peer(p)
            .is_some_and(|p| link::load(spool, p).is_some())
    };
    config
        .peers
        .iter()
        .map(|p| {
            let group = config.failover_group(p.id.as_str());
            let at = group.iter().position(|m| **m == p.id).unwrap_or(0);
            let taker = (0..group.len())
                .map(|k| group[(at + k) % group.len()])
                .find(|m| !failing(m.as_str()))
                .unwrap_or(&p.id);
            (p.id.to_string(), taker.clone())
        })
        .collect()
}

/// Whether `e` goes to `peer` now: its next hop (or, due again after a
/// send, the next member of its last peer's failover group), as stood in
/// for while a link has failed.
fn bound_for(
    spool: &Spool,
    e: &Entry,
    peer: &Peer,
    learned: &Learned,
    pins: bool,
    stand_in: &HashMap<String, Name>,
) -> bool {
    let config = spool.config();
    let takes = |hop: &Name| stand_in.get(hop.as_str()).unwrap_or(hop) == &peer.id;
    if let Some(s) = &e.sent {
        return config.failover_next(s.peer.as_str()).is_some_and(takes);
    }
    next_hop_of(spool, e, learned, pins).is_some_and(|hop| takes(&hop))
}

/// The peer a queued message waits for (see [`route::next_hop_of`]).
pub fn next_hop_of(spool: &Spool, e: &Entry, learned: &Learned, pins: bool) -> Option<Name> {
    route::next_hop_of(spool, e, learned, pins)
}

/// What the runner needs of the store holding what is to be sent: the
/// messages due for a peer (leased while they travel, their outcomes
/// recorded), the acknowledgements owed to it, and the throttle's counters.
/// The spool ([`SpoolOutbox`]) is the store today; a provider running many
/// relays on one database implements the same trait for its back-channel
/// queues.
pub trait Outbox {
    /// The acknowledgements owed to `peer`, ready to carry.
    fn acks(&mut self, peer: &Peer, now: Timestamp) -> Result<Vec<Outgoing>>;

    /// Forgets acknowledgements the peer took.
    fn acks_taken(&mut self, taken: &[&Outgoing]) -> Result<()>;

    /// Picks what is due for `peer` (in send order, as the throttle, holds
    /// and other runs' leases allow) and leases it, burying what expired.
    fn take_due(
        &mut self,
        peer: &Peer,
        clock: &Clock,
        report: &mut Report,
        log: &dyn Fn(String),
    ) -> Result<Vec<Outgoing>>;

    /// Records the outcomes of the due messages `first..` (as returned by
    /// `take_due`), if the lease is still current, and renews it. Returns
    /// false when it lapsed: nothing is recorded.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        peer: &Peer,
        first: usize,
        outcomes: &[Outcome],
        route: &str,
        clock: &Clock,
        report: &mut Report,
        log: &dyn Fn(String),
    ) -> Result<bool>;

    /// Gives the lease up (the transfer is over).
    fn release(&mut self) -> Result<()>;
}

/// The spool's outbound areas as an [`Outbox`].
pub struct SpoolOutbox<'s> {
    spool: &'s Spool,
    lease: Option<Lease>,
    chosen: Vec<Entry>,
}

impl<'s> SpoolOutbox<'s> {
    pub fn new(spool: &'s Spool) -> SpoolOutbox<'s> {
        SpoolOutbox {
            spool,
            lease: None,
            chosen: Vec::new(),
        }
    }

    fn policy(&self) -> Policy {
        Policy {
            max: self.spool.config().lease.transmit_max,
            allow_infinite: false,
            allow_zero: false,
        }
    }
}

impl Outbox for SpoolOutbox<'_> {
    fn acks(&mut self, peer: &Peer, now: Timestamp) -> Result<Vec<Outgoing>> {
        {
            let _r = ReceiveLock::take(self.spool)?;
            ack::emit(self.spool, Some(&peer.id), now)?;
        }
        Ok(ack::outgoing(self.spool, &peer.id)
            .into_iter()
            .map(|p| Outgoing {
                wire_name: format!(
                    "ack-{}",
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
                path: p,
                cargo: Cargo::Acks,
            })
            .collect())
    }

    fn acks_taken(&mut self, taken: &[&Outgoing]) -> Result<()> {
        for a in taken {
            let _ = crate::spool::durable::remove_file(&a.path);
        }
        Ok(())
    }

    fn take_due(
        &mut self,
        peer: &Peer,
        clock: &Clock,
        report: &mut Report,
        log: &dyn Fn(String),
    ) -> Result<Vec<Outgoing>> {
        let (lease, chosen) = select(self.spool, peer, clock, self.policy(), report, log)?;
        self.lease = lease;
        // What a gate sends first does so on a medium too (see `gate`).
        let first = Gates::of(self.spool).first(self.spool);
        let out = chosen
            .iter()
            .map(|e| {
                let (rank, arrival) = if first.as_deref() == Some(e.name.id.as_str()) {
                    (0, 0)
                } else {
                    (e.name.precedence.rank(), e.name.arrival)
                };
                Outgoing {
                    path: self.spool.entry_path(e),
                    wire_name: dir::message_wire_name(rank, arrival, e.name.id.as_str()),
                    cargo: Cargo::Message,
                }
            })
            .collect();
        self.chosen = chosen;
        Ok(out)
    }

    fn record(
        &mut self,
        peer: &Peer,
        first: usize,
        outcomes: &[Outcome],
        route: &str,
        clock: &Clock,
        report: &mut Report,
        log: &dyn Fn(String),
    ) -> Result<bool> {
        let policy = self.policy();
        let Some(lease) = self.lease.as_mut() else {
            return Ok(false);
        };
        let end = (first + outcomes.len()).min(self.chosen.len());
        let chunk = &self.chosen[first.min(end)..end];
        if !record(
            self.spool, peer, route, lease, chunk, outcomes, clock, report, log,
        )? {
            return Ok(false);
        }
        lease.renew(Period::For(policy.max), policy, clock.now())?;
        Ok(true)
    }

    fn release(&mut self) -> Result<()> {
        match self.lease.take() {
            Some(l) => l.release(),
            None => Ok(()),
        }
    }
}

/// Sends what is due to `peer` through `transport`, and receives what the
/// peer hands back. See the module documentation.
pub fn flush(
    spool: &Spool,
    peer: &Peer,
    transport: &mut dyn Transport,
    clock: &Clock,
    log: &dyn Fn(String),
) -> Result<Report> {
    flush_with(
        spool,
        &mut SpoolOutbox::new(spool),
        peer,
        transport,
        clock,
        log,
    )
}

/// [`flush`], taking what is due from `outbox`.
pub fn flush_with(
    spool: &Spool,
    outbox: &mut dyn Outbox,
    peer: &Peer,
    transport: &mut dyn Transport,
    clock: &Clock,
    log: &dyn Fn(String),
) -> Result<Report> {
    let mut report = Report::default();
    let now = clock.now();
    // Acknowledgements ride the first exchange: they are small and free
    // the far side.
    let mut acks = outbox.acks(peer, now)?;
    let due = outbox.take_due(peer, clock, &mut report, log)?;
    let route = transport.describe();
    if due.is_empty() {
        let poll = transport.polls() && link::poll_due(spool, peer, now);
        if !acks.is_empty() || poll {
            let ex = transport.exchange(&acks);
            report.exchanges += 1;
            report.trouble = ex.trouble.or(report.trouble);
            note_deferral(&ex, &mut report);
            let returned = settle_acks(outbox, &acks, ex, &mut report)?;
            receive_returned(spool, peer, returned, clock, &mut report, log)?;
            if report.deferred == 0 {
                link::exchanged(spool, peer, now);
            }
        }
        return Ok(report);
    }

    // Messages, a chunk at a time (the transport says how many): each
    // chunk's outcome is recorded, and the lease renewed, before the next
    // one goes.
    let size = transport.chunk_size().max(1);
    // Progress on a terminal only (the sizes cost a stat each).
    let bytes = |items: &[Outgoing]| -> u64 {
        items
            .iter()
            .filter_map(|o| std::fs::metadata(&o.path).ok())
            .map(|m| m.len())
            .sum()
    };
    let mut progress = std::io::IsTerminal::is_terminal(&std::io::stderr())
        .then(|| crate::progress::Progress::new(format!("{}: sending", peer.id), bytes(&due)));
    for (n, chunk) in due.chunks(size).enumerate() {
        let mut batch: Vec<Outgoing> = std::mem::take(&mut acks);
        let carried_acks = batch.len();
        batch.extend(chunk.iter().cloned());
        let mut ex = transport.exchange(&batch);
        if let Some(p) = &mut progress {
            p.add(bytes(chunk));
        }
        report.exchanges += 1;
        report.trouble = ex.trouble.or(report.trouble);
        link::exchanged(spool, peer, now);
        let outcomes = ex.outcomes.split_off(carried_acks.min(ex.outcomes.len()));
        let returned = settle_acks(outbox, &batch[..carried_acks], ex, &mut report)?;
        let recorded = outbox.record(peer, n * size, &outcomes, &route, clock, &mut report, log);
        receive_returned(spool, peer, returned, clock, &mut report, log)?;
        if !recorded? {
            return Ok(report);
        }
    }
    outbox.release()?;
    Ok(report)
}

/// Under the spool lock: buries what expired, picks what is due for `peer`
/// (in send order, as the throttle, holds and other runs' leases allow) and
/// leases it. No lease when nothing is due.
fn select(
    spool: &Spool,
    peer: &Peer,
    clock: &Clock,
    policy: Policy,
    report: &mut Report,
    log: &dyn Fn(String),
) -> Result<(Option<Lease>, Vec<Entry>)> {
    let now = clock.now();
    let config = spool.config();
    let learned = Learned::load(spool);
    let mut locked = spool.lock(now)?;
    // Messages a rule sent to a peer of its choosing carry a pin.
    let pins = spool.dir(Area::State).join("pinned").is_dir();
    let stand_in = stand_ins(spool);
    let mut candidates: Vec<Entry> = Vec::new();
    for e in spool.scan_outbound(now)? {
        if e.name.is_expired(now) {
            locked.bury_expired(&e, now)?;
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
        if eligible && bound_for(spool, &e, peer, &learned, pins, &stand_in) {
            candidates.push(e);
        }
    }
    let leased = lease::live_messages(&spool.dir(Area::Leases), now)?;
    let before = candidates.len();
    candidates.retain(|e| !leased.contains(e.name.id.as_str()));
    report.leased_elsewhere = before - candidates.len();
    // What the gates say (a component that registers: in session mode
    // nothing but the registration goes upstream before it is answered; in
    // any mode the registration goes first).
    let gates = Gates::of(spool);
    if config.upstream().is_some_and(|u| u.id == peer.id) {
        if let Some((allowed, why)) = gates.only_upstream(spool) {
            let before = candidates.len();
            candidates.retain(|e| allowed.contains(e.name.id.as_str()));
            if candidates.len() < before {
                report.waiting += before - candidates.len();
                report.stopped = Some(why.into());
            }
        }
    }
    let first = gates.first(spool);
    candidates.sort_by_key(|e| {
        (
            first.as_deref() != Some(e.name.id.as_str()),
            e.name.send_order_key(),
        )
    });
    let names: Vec<EntryName> = candidates.iter().map(|e| e.name.clone()).collect();
    let due = throttle::due(
        &names,
        &config.throttle,
        spool.is_held(),
        spool.throttle_sent(),
        now,
        clock.utc_offset_secs(),
    );
    report.waiting += candidates.len() - due.due.len();
    report.stopped = due
        .stop
        .as_ref()
        .map(Stop::to_string)
        .or(report.stopped.take());
    let chosen: Vec<Entry> = due.due.iter().map(|&i| candidates[i].clone()).collect();
    if chosen.is_empty() {
        return Ok((None, chosen));
    }
    let generation = locked.next_generation(now)?;
    let req = Request {
        kind: lease::Kind::Transmit,
        period: Period::For(policy.max),
        policy,
        messages: chosen.iter().map(|e| e.name.id.clone()).collect(),
    };
    let lease = Lease::grant(
        &spool.dir(Area::Leases),
        &spool.dir(Area::Tmp),
        generation,
        req,
        now,
    )?;
    Ok((Some(lease), chosen))
}

/// Counts an exchange that carried no message and failed (a poll, or
/// acknowledgements alone) as a deferral, so the link's failure is noted.
fn note_deferral(ex: &Exchanged, report: &mut Report) {
    let failed = ex.outcomes.iter().find_map(|o| match o {
        Outcome::Deferred(why) => Some(why.clone()),
        _ => None,
    });
    if let Some(why) = failed.or_else(|| ex.failure.clone()) {
        report.deferred += 1;
        report.last_error = Some(why);
    }
}

/// Forgets the acknowledgement envelopes the peer took; returns what it
/// handed back.
fn settle_acks(
    outbox: &mut dyn Outbox,
    acks: &[Outgoing],
    ex: Exchanged,
    report: &mut Report,
) -> Result<Vec<crate::transport::Payload>> {
    let taken: Vec<&Outgoing> = acks
        .iter()
        .zip(&ex.outcomes)
        .filter(|(_, o)| **o == Outcome::Handed)
        .map(|(a, _)| a)
        .collect();
    report.ack_files += taken.len();
    outbox.acks_taken(&taken)?;
    Ok(ex.returned)
}

/// Records one chunk's outcomes under the spool lock, if the lease is still
/// current. Returns false when it lapsed (nothing recorded).
#[allow(clippy::too_many_arguments)]
fn record(
    spool: &Spool,
    peer: &Peer,
    route: &str,
    lease: &Lease,
    chunk: &[Entry],
    outcomes: &[Outcome],
    clock: &Clock,
    report: &mut Report,
    log: &dyn Fn(String),
) -> Result<bool> {
    let now = clock.now();
    let mut locked = spool.lock(now)?;
    if !lease.is_current(now) {
        log(format!(
            "the lease on {} message(s) lapsed before the transfer ended; not recording them as sent (they will be sent again; the receiver drops duplicates)",
            chunk.len()
        ));
        report.lease_lapsed = true;
        return Ok(false);
    }
    let mut bytes = 0;
    let mut sent = 0;
    let missing = Outcome::Deferred(format!("{route} reported nothing for it"));
    let outcome = |i: usize| outcomes.get(i).unwrap_or(&missing);
    // Who holds what, for the notices that come back, is durable before
    // anything moves to sent/: a message whose hand-off could not be
    // recorded (a full disk) stays queued, goes again, and is answered as
    // a duplicate.
    let handed: Vec<_> = chunk
        .iter()
        .enumerate()
        .filter(|(i, _)| *outcome(*i) == Outcome::Handed)
        .map(|(_, e)| (&e.name.id, e.name.expiry))
        .collect();
    let noted = match ack::note_handed(spool, &peer.id, &handed, now) {
        Ok(()) => None,
        Err(e) => Some(format!("the hand-off could not be recorded: {e}")),
    };
    for (i, e) in chunk.iter().enumerate() {
        match outcome(i) {
            Outcome::Handed if noted.is_some() => {
                report.deferred += 1;
                if report.last_error != noted {
                    log(format!(
                        "{} (and the rest handed with it) stays queued, to go again: {}",
                        e.name.id,
                        noted.as_deref().unwrap_or_default()
                    ));
                    report.last_error = noted.clone();
                }
            }
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
                let detail = format!("refused by {} via {route}: {why}", peer.id);
                locked.bury(e, DeadKind::Refused, &detail, now)?;
                log(format!("{} refused by {}: {why}", e.name.id, peer.id));
            }
        }
    }
    locked.sync_outbound()?;
    locked.record_sent(sent as u64, bytes, now, clock.utc_offset_secs())?;
    report.sent += sent;
    report.bytes += bytes;
    Ok(true)
}

/// Receives what the peer handed back, as coming from the peer.
fn receive_returned(
    spool: &Spool,
    peer: &Peer,
    returned: Vec<crate::transport::Payload>,
    clock: &Clock,
    report: &mut Report,
    log: &dyn Fn(String),
) -> Result<()> {
    if returned.is_empty() {
        return Ok(());
    }
    let batch = returned
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Inbound {
            payload,
            from: peer.id.clone(),
            label: format!("reply {} from {}", i + 1, peer.id),
        })
        .collect();
    let got = receive::receive(spool, batch, clock.now(), receive::Answer::Owe, log)?;
    report.received.add(&got.report);
    Ok(())
}

/// IDs of every outbound message (for pruning a directory route).
pub fn outbound_ids(spool: &Spool, now: Timestamp) -> Result<HashSet<String>> {
    Ok(spool
        .scan_outbound(now)?
        .into_iter()
        .map(|e| e.name.id.to_string())
        .collect())
}

/// The peers a command serves: the one named, or every configured peer.
pub fn peers<'a>(
    spool: &'a Spool,
    only: Option<&str>,
) -> std::result::Result<Vec<&'a Peer>, Error> {
    let all = &spool.config().peers;
    if all.is_empty() {
        return Err(Error::NoPeers {
            config: spool.config_path(),
        });
    }
    match only {
        None => Ok(all.iter().collect()),
        Some(p) => spool.config().peer(p).map(|p| vec![p]).ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
            Error::UnknownPeer {
                peer: p.to_string(),
                known: known.join(", "),
            }
        }),
    }
}

/// Where [`run`] sends.
#[derive(Clone, Copy, Debug)]
pub enum Via<'a> {
    /// `export --to DIR`: that directory, whatever the peers' routes.
    Export(&'a Path),
    /// `flush`: each peer's routes, in order; `force` ignores a failed
    /// link's retry time.
    Routes { force: bool },
}

/// What [`run`] did for one peer.
#[derive(Debug)]
pub struct PeerRun {
    pub peer: Name,
    /// The route used last, when one was tried.
    pub target: Option<String>,
    pub report: Report,
    /// Acknowledged message files removed from a directory route.
    pub pruned: usize,
    /// Why the peer was not tried now (no route; a failed link before its
    /// retry time).
    pub not_tried: Option<String>,
    /// 0, or 75 when something due could not be sent (try again later).
    pub code: ExitCode,
}

/// Opens the transport for one route of `peer`.
pub fn open_route(
    spool: &Spool,
    route: &config::Route,
    peer: &Peer,
    protector: Option<std::sync::Arc<crate::protect::Protector>>,
    now: Timestamp,
) -> std::result::Result<Box<dyn Transport>, Error> {
    let me = &spool.config().component;
    Ok(match route {
        config::Route::Dir(d) => Box::new(DirTransport::new(d, me, &peer.id, protector, now)),
        config::Route::Smtp(r) => Box::new(SmtpTransport::new(r, me, protector, now).map_err(
            |e| Error::PeerSetup {
                peer: peer.id.to_string(),
                config: spool.config_path(),
                reason: e.to_string(),
            },
        )?),
        config::Route::Http(r) => Box::new(
            HttpTransport::new(r, me, protector, now, &spool.dir(Area::Tmp)).map_err(|e| {
                Error::PeerSetup {
                    peer: peer.id.to_string(),
                    config: spool.config_path(),
                    reason: e.to_string(),
                }
            })?,
        ),
        other => match kinds::RouteKinds::of(spool).open(spool, other, peer, protector, now) {
            Some(opened) => opened.map_err(|e| Error::PeerSetup {
                peer: peer.id.to_string(),
                config: spool.config_path(),
                reason: e.to_string(),
            })?,
            None => {
                return Err(Error::PeerSetup {
                    peer: peer.id.to_string(),
                    config: spool.config_path(),
                    reason: format!("this program cannot open the route {other}"),
                })
            }
        },
    })
}

/// After `peer` refused messages as sent through an outdated service point
/// map entry (they are queued again): forgets what this site learned of
/// the peer (the components reached through it, its link's failures),
/// lets the route renew its view (a fresh map), and sends once more; a
/// second refusal waits for the next run.
fn renew(
    spool: &Spool,
    peer: &Peer,
    transport: &mut dyn Transport,
    r: &mut Report,
    clock: &Clock,
    log: &dyn Fn(String),
) -> Result<()> {
    let n = r.received.acks.requeued;
    {
        let _lock = ReceiveLock::take(spool)?;
        let mut learned = Learned::load(spool);
        let forgotten = learned.forget_peer(peer.id.as_str());
        learned.save(spool, clock.now())?;
        if forgotten > 0 {
            log(format!(
                "{}: {forgotten} route(s) learned through it forgotten",
                peer.id
            ));
        }
    }
    link::succeeded(spool, peer);
    let waits = |r: &mut Report, n: usize, why: String| {
        r.deferred += n;
        r.last_error = Some(why);
    };
    if !transport.renew() {
        transport.notes().into_iter().for_each(log);
        let why = format!(
            "{n} message(s) refused for an outdated map epoch, queued again: sent at the next run"
        );
        log(format!("{}: {why}", peer.id));
        waits(r, n, why);
        return Ok(());
    }
    transport.notes().into_iter().for_each(log);
    log(format!(
        "{}: {n} message(s) refused for an outdated map epoch: sending again after a fresh map",
        peer.id
    ));
    let again = flush(spool, peer, transport, clock, log)?;
    transport.notes().into_iter().for_each(log);
    let refused_again = again.received.acks.requeued;
    r.absorb(again);
    if refused_again > 0 {
        let why = format!(
            "{refused_again} message(s) refused for an outdated epoch again: the map and the service disagree; they wait for the next run"
        );
        log(format!("{}: {why}", peer.id));
        waits(r, refused_again, why);
    }
    Ok(())
}

/// For each peer (or the one named), what is due, over its routes in
/// order, or to the directory of an export. See the module documentation.
pub fn run(
    spool: &Spool,
    only: Option<&str>,
    via: Via<'_>,
    clock: &Clock,
    log: &dyn Fn(String),
) -> std::result::Result<Vec<PeerRun>, Error> {
    let now = clock.now();
    let outbound = outbound_ids(spool, now)?;
    route::unpin_gone(spool, &outbound);
    let mut runs = Vec::new();
    for peer in peers(spool, only)? {
        let mut run = PeerRun {
            peer: peer.id.clone(),
            target: None,
            report: Report::default(),
            pruned: 0,
            not_tried: None,
            code: ExitCode::Ok,
        };
        let routes: Vec<config::Route> = match via {
            Via::Export(d) => vec![config::Route::Dir(d.to_path_buf())],
            Via::Routes { .. } => peer.routes.clone(),
        };
        if routes.is_empty() {
            run.not_tried = Some("no route configured; nothing sent".into());
            runs.push(run);
            continue;
        }
        if let (Via::Routes { force: false }, Some(state)) = (via, link::load(spool, peer)) {
            if now < state.next_try {
                run.not_tried = Some(format!(
                    "the link has failed {} time(s) since {} ({}); next try at {} (--force tries now)",
                    state.failures, state.since, state.last_error, state.next_try
                ));
                run.code = ExitCode::TempFail;
                runs.push(run);
                continue;
            }
        }
        let protector =
            crate::protect::Protector::for_peer(peer, crate::protect::OpenPgp::of(spool))
                .map_err(|e| Error::PeerSetup {
                    peer: peer.id.to_string(),
                    config: spool.config_path(),
                    reason: e.to_string(),
                })?
                .map(std::sync::Arc::new);
        for route in &routes {
            let mut transport = open_route(spool, route, peer, protector.clone(), now)?;
            if let config::Route::Dir(d) = route {
                run.pruned += DirTransport::new(d, &spool.config().component, &peer.id, None, now)
                    .prune(&outbound);
            }
            let mut r = flush(spool, peer, transport.as_mut(), clock, log)?;
            transport.notes().into_iter().for_each(log);
            if r.received.acks.requeued > 0 {
                renew(spool, peer, transport.as_mut(), &mut r, clock, log)?;
            }
            let route_failed = r.deferred > 0 && r.sent == 0;
            run.target = Some(transport.describe());
            run.report = r;
            if !route_failed {
                break;
            }
        }
        if let Via::Routes { .. } = via {
            match &run.report.last_error {
                Some(why) if run.report.deferred > 0 => {
                    let state = link::failed(spool, peer, why, now)?;
                    log(format!(
                        "{}: link failed; next try at {}",
                        peer.id, state.next_try
                    ));
                }
                _ => link::succeeded(spool, peer),
            }
        }
        if run.report.deferred > 0 {
            run.code = ExitCode::TempFail;
        }
        runs.push(run);
    }
    // What this run buried (expired, refused) is reported to its origins.
    if let Err(e) = untold::sweep(spool, now, true, log) {
        log(format!(
            "undeliverable messages not reported to their origins now: {e}"
        ));
    }
    // A peer whose link failed, stood in for by a twin that ran after it
    // and sent: what was due for it went there, nothing waits.
    if let Via::Routes { .. } = via {
        let stand_in = stand_ins(spool);
        for i in 0..runs.len() {
            let Some(q) = stand_in.get(runs[i].peer.as_str()) else {
                continue;
            };
            let covered = runs[i + 1..]
                .iter()
                .any(|r| r.peer == *q && r.code == ExitCode::Ok && r.target.is_some());
            if runs[i].code == ExitCode::TempFail && *q != runs[i].peer && covered {
                log(format!(
                    "{}: what was due for it went to {q}, which stands in while its link is down",
                    runs[i].peer
                ));
                runs[i].code = ExitCode::Ok;
            }
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn errors_name_the_peer_the_file_and_the_remedy() {
        let e = Error::PeerSetup {
            peer: "hq".into(),
            config: "/s/config.toml".into(),
            reason: "this program cannot open the route spm:inventory".into(),
        };
        assert_eq!(
            e.to_string(),
            "peer hq in /s/config.toml: this program cannot open the route spm:inventory"
        );
        let e = Error::NoPeers {
            config: "/s/config.toml".into(),
        };
        assert_eq!(
            e.to_string(),
            "no peers are configured: add a [[peer]] to /s/config.toml"
        );
        let e = Error::UnknownPeer {
            peer: "hq".into(),
            known: "relay, b.host".into(),
        };
        assert_eq!(
            e.to_string(),
            "--peer hq is not a configured peer (configured: relay, b.host)"
        );
    }
}
