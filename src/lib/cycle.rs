//! The sending cycle: everything one sending run does, in order, for
//! `rs-queue flush` and `rs-queue export` alike ([`run`]), and the pass
//! over the relay's pending work that every command receiving or sending
//! makes, `rs-relay serve` included ([`pending`], [`tend`]).
//!
//! A cycle is: the pending work (rules, undeliverable messages); the
//! registration and heartbeats that ride every sending run; the route
//! loop of the outbound runner ([`crate::outbound::run`]); what came back for rs
//! itself (infrastructure, bulk answers) handled; over routes, the bulk
//! uploads due and one more exchange with each peer whose upload is
//! complete; the peer's run again once a registration's answer came back;
//! over routes, one recovery attempt per class of link trouble a new
//! configuration or certificate may repair.
//!
//! Invariants: nothing here prints or reaches `output`; every line meant
//! for the operator goes through the caller's `log`, in the order the old
//! commands wrote it. The cycle never decides an exit status: it returns
//! what each peer's run did ([`Summary`]) and a failure as [`Error`], for
//! the command to map and print.

use std::collections::{BTreeSet, HashSet};

use crate::exit::ExitCode;
use crate::spool::Spool;
use crate::time::Clock;

use crate::outbound::{PeerRun, Via};

/// What a sending cycle is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// Over the peers' routes (`flush`) or into a directory (`export`).
    pub via: Via<'a>,
    /// The one peer to serve, when named (`--peer`).
    pub only: Option<&'a str>,
    /// What the operator allows a fetched configuration (the value of
    /// `reconfig::ENV_TRUST`), for recovery after a link's trouble.
    pub trust: Option<&'a str>,
}

/// What a sending cycle did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Each peer's run, in the order the peers were served (a run repeated
    /// in the cycle replaces the first, or adds what it received).
    pub runs: Vec<PeerRun>,
    /// The bulk uploads made over HTTP (none for an export).
    pub uploads: Vec<crate::bulk::upload::Uploaded>,
}

impl Summary {
    /// The exit status the runs call for: the most severe of them.
    pub fn code(&self) -> ExitCode {
        self.runs
            .iter()
            .fold(ExitCode::Ok, |code, run| code.merge(run.code))
    }
}

/// Why a sending cycle stopped short. What it did before stays done (the
/// spool records every step); what is left waits for the next run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spool could not be read or written.
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    /// The outbound runner could not serve the peers (no peer, an unknown
    /// `--peer`, a route that cannot be opened, the spool).
    #[error(transparent)]
    Runner(#[from] crate::outbound::Error),
}

/// Runs one sending cycle (see the module documentation) and returns
/// what each peer's run did. Lines for the operator go to `log`.
pub fn run(
    spool: &Spool,
    options: &Options<'_>,
    clock: &Clock,
    log: &dyn Fn(String),
) -> Result<Summary, Error> {
    let Options { via, only, .. } = *options;
    tend(spool, clock, false, log);
    // Registration and heartbeats ride every sending run.
    crate::infra::tick(spool, clock.now(), log)?;
    let mut runs = crate::outbound::run(spool, only, via, clock, log)?;
    // What came back for rs itself (an answer, a control message) is
    // handled now.
    let waited = crate::infra::held(spool).is_some();
    crate::infra::run_held(spool, clock.now(), log)?;
    // Bulk answers that came back are followed now (the chunks asked for
    // go with the next run).
    crate::bulk::run_held(spool, clock.now(), log)?;
    let mut uploads = Vec::new();
    if let Via::Routes { .. } = via {
        uploads = upload(spool, options, &mut runs, clock, log)?;
    }
    if waited {
        after_registration(spool, via, &mut runs, clock, log)?;
    }
    if let Via::Routes { .. } = via {
        recover(spool, options.trust, &mut runs, clock, log)?;
    }
    Ok(Summary { runs, uploads })
}

/// Uploads the bulk transfers authorized over HTTP (tus); the receiver's
/// answer to a complete one is fetched by one more exchange with its
/// peer, whose messages received are added to its run.
fn upload(
    spool: &Spool,
    options: &Options<'_>,
    runs: &mut Vec<PeerRun>,
    clock: &Clock,
    log: &dyn Fn(String),
) -> Result<Vec<crate::bulk::upload::Uploaded>, Error> {
    let uploads = crate::bulk::upload::run(spool, options.only, clock.now(), log)?;
    let mut polled = BTreeSet::new();
    for u in uploads.iter().filter(|u| u.complete) {
        if !polled.insert(u.peer.clone()) {
            continue;
        }
        for r in crate::outbound::run(spool, Some(u.peer.as_str()), options.via, clock, log)? {
            match runs.iter_mut().find(|x| x.peer == r.peer) {
                Some(x) => x.report.received.messages += r.report.received.messages,
                None => runs.push(r),
            }
        }
    }
    if !polled.is_empty() {
        crate::bulk::run_held(spool, clock.now(), log)?;
    }
    Ok(uploads)
}

/// When a registration waited at the start of the cycle: its answer may
/// have come back in this run, and once applied (the spool opened again
/// to read it), what waited for it goes now; the upstream peer's new run
/// replaces its first.
fn after_registration(
    spool: &Spool,
    via: Via<'_>,
    runs: &mut Vec<PeerRun>,
    clock: &Clock,
    log: &dyn Fn(String),
) -> Result<(), Error> {
    let fresh = spool.reopen()?;
    if let (None, Some(up)) = (crate::infra::held(&fresh), fresh.config().upstream()) {
        for r in crate::outbound::run(&fresh, Some(up.id.as_str()), via, clock, log)? {
            match runs.iter_mut().find(|x| x.peer == r.peer) {
                Some(x) => *x = r,
                None => runs.push(r),
            }
        }
    }
    Ok(())
}

/// After a flush: each peer whose link failed for a reason a new
/// configuration or certificate may repair gets one attempt per class of
/// failure (see `reconfig`), then its link is tested again; the outcome
/// replaces its run. A recovery refused on this site's terms makes the
/// run's status 78 (the operator must act).
fn recover(
    spool: &Spool,
    trust: Option<&str>,
    runs: &mut [PeerRun],
    clock: &Clock,
    log: &dyn Fn(String),
) -> Result<(), Error> {
    let mut tried = HashSet::new();
    for run in runs.iter_mut() {
        let Some(trouble) = run.report.trouble else {
            continue;
        };
        if run.code != ExitCode::TempFail
            || crate::reconfig::config_url(spool.config(), spool.root()).is_none()
            || !tried.insert(trouble)
        {
            continue;
        }
        let Some(peer) = spool.config().peer(run.peer.as_str()) else {
            continue;
        };
        let why = run.report.last_error.clone().unwrap_or_default();
        let recovered = crate::reconfig::Trust::parse(trust).and_then(|trust| {
            crate::reconfig::recover(
                spool.root(),
                spool.config(),
                peer,
                trouble,
                trust,
                clock.now(),
            )
        });
        match recovered {
            Err(e) => {
                log(format!(
                    "{}: {} trouble ({why}); recovery failed, nothing changed: {e}",
                    run.peer,
                    trouble.as_str()
                ));
                if matches!(e, crate::reconfig::Error::Refused { .. }) {
                    run.code = run.code.merge(ExitCode::Config);
                }
            }
            Ok(what) => {
                log(format!(
                    "{}: {} trouble ({why}); installed {what}; testing the link again",
                    run.peer,
                    trouble.as_str()
                ));
                retest(spool, run, &what, clock, log)?;
            }
        }
    }
    Ok(())
}

/// Tests `run`'s peer again (forced) with the configuration just
/// installed, says whether its link is back in order, and puts the new
/// run in place of the old.
fn retest(
    spool: &Spool,
    run: &mut PeerRun,
    what: &str,
    clock: &Clock,
    log: &dyn Fn(String),
) -> Result<(), Error> {
    let fresh = spool.reopen()?;
    let again = crate::outbound::run(
        &fresh,
        Some(run.peer.as_str()),
        Via::Routes { force: true },
        clock,
        log,
    )?;
    if let Some(r) = again.into_iter().next() {
        if r.code == ExitCode::Ok {
            log(format!(
                "{}: the link is back in order after {what}",
                r.peer
            ));
        } else {
            log(format!(
                "{}: the link still fails after {what}: {}",
                r.peer,
                r.report
                    .last_error
                    .as_deref()
                    .unwrap_or("(no reason given)")
            ));
        }
        *run = r;
    }
    Ok(())
}

/// Runs the pending work ([`crate::custody::tend`]: what the features
/// hold, what cannot be delivered reported to its origins; `expired`:
/// burying what expired too, not when an outbound run follows, which
/// does). A failure is logged, never returned: what the pending work
/// holds is safe and waits. The lines saying what was done; `None` when
/// it failed.
pub fn pending(
    spool: &Spool,
    clock: &Clock,
    expired: bool,
    log: &dyn Fn(String),
) -> Option<Vec<String>> {
    match crate::custody::tend(spool, clock, expired, log) {
        Ok(lines) => Some(lines),
        Err(e) => {
            log(format!("rules: held messages not handled now: {e}"));
            None
        }
    }
}

/// [`pending`], then what it did, in a line or two (nothing when it did
/// nothing): what a command that receives or sends tells its operator.
pub fn tend(spool: &Spool, clock: &Clock, expired: bool, log: &dyn Fn(String)) {
    if let Some(lines) = pending(spool, clock, expired, log) {
        lines.into_iter().for_each(log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_what_they_wrap() {
        let e = Error::from(crate::outbound::Error::UnknownPeer {
            peer: "hq".into(),
            known: "relay".into(),
        });
        assert_eq!(
            e.to_string(),
            "--peer hq is not a configured peer (configured: relay)"
        );
        let e = Error::from(crate::spool::Error::Shared {
            reason: "the database is down".into(),
        });
        assert_eq!(e.to_string(), "shared state: the database is down");
    }
}
