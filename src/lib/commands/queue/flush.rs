//! `rs-queue flush`: one sending cycle over the peers' routes
//! (`cycle`), then what each peer's run did: a line per peer
//! (none for an idle peer when stderr is not a terminal), or one JSON
//! object. `export` prints the same way.

use serde_json::json;

use crate::config::Size;
use crate::cycle::{self, Summary};
use crate::error::{Error, ExitCode};
use crate::outbound::{PeerRun, Via};
use crate::output::Out;
use crate::spool::Spool;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    force: bool,
    only: Option<&str>,
) -> Result<ExitCode, Error> {
    send(ctx, spool, out, Via::Routes { force }, only)
}

/// Runs a sending cycle `via` the routes or into a directory, prints what
/// it did, and returns the status its runs call for.
pub(super) fn send(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    via: Via<'_>,
    only: Option<&str>,
) -> Result<ExitCode, Error> {
    let trust = std::env::var(crate::reconfig::ENV_TRUST).ok();
    let options = cycle::Options {
        via,
        only,
        trust: trust.as_deref(),
    };
    let log = |s: String| ctx.log(s);
    let summary = cycle::run(spool, &options, &ctx.clock, &log)?;
    print(ctx, out, &summary)?;
    Ok(summary.code())
}

impl From<cycle::Error> for Error {
    fn from(e: cycle::Error) -> Error {
        match e {
            cycle::Error::Spool(e) => Error::Spool(e),
            cycle::Error::Runner(e) => Error::Outbound(e),
        }
    }
}

/// Says why a peer was not tried, then what each peer tried did.
fn print(ctx: &Context, out: &mut Out, summary: &Summary) -> Result<(), Error> {
    let mut reports = Vec::new();
    for run in &summary.runs {
        if let Some(why) = &run.not_tried {
            ctx.log(format!("{}: {why}", run.peer));
        }
        let Some(target) = &run.target else { continue };
        if ctx.json {
            reports.push(run_json(run, target, summary));
        } else if let Some(line) = run_line(ctx, run, target) {
            ctx.log(line);
        }
    }
    if ctx.json {
        out.json(&json!({"peers": reports}))?;
    }
    Ok(())
}

/// One peer's run as JSON, with the bulk uploads made to it.
fn run_json(run: &PeerRun, target: &str, summary: &Summary) -> serde_json::Value {
    let r = &run.report;
    json!({
        "peer": run.peer.as_str(), "to": target, "sent": r.sent, "retransmitted": r.retransmitted,
        "bytes": r.bytes, "ack_files": r.ack_files, "deferred": r.deferred, "refused": r.refused,
        "expired": r.expired, "waiting": r.waiting, "leased_elsewhere": r.leased_elsewhere,
        "stopped": r.stopped, "lease_lapsed": r.lease_lapsed, "pruned": run.pruned,
        "error": r.last_error, "exchanges": r.exchanges,
        "received": crate::commands::relay::report_json(&r.received),
        "uploaded": summary.uploads.iter().filter(|u| u.peer == run.peer).map(|u| json!({
            "transfer": u.transfer, "bytes": u.bytes, "complete": u.complete,
        })).collect::<Vec<_>>(),
    })
}

/// One peer's run in a line; `None` for a run that did nothing when
/// idle runs are to say nothing.
fn run_line(ctx: &Context, run: &PeerRun, target: &str) -> Option<String> {
    let r = &run.report;
    let busy = r.sent + r.ack_files + r.deferred + r.refused + r.expired + r.received.messages > 0
        || r.stopped.is_some();
    if !busy && ctx.quiet_when_idle() {
        return None;
    }
    let mut line =
        format!(
        "{}: {} message(s) ({} retransmitted, {}) and {} acknowledgement file(s) sent via {target}",
        run.peer, r.sent, r.retransmitted, Size(r.bytes), r.ack_files
    );
    for (n, what) in [
        (r.deferred, "deferred"),
        (r.refused, "refused (now in dead/)"),
        (r.expired, "expired to dead/"),
        (r.waiting, "waiting"),
        (r.leased_elsewhere, "being sent by another run"),
        (
            run.pruned,
            "acknowledged file(s) removed from the directory",
        ),
        (r.received.messages, "message(s) received back"),
    ] {
        if n > 0 {
            line.push_str(&format!("; {n} {what}"));
        }
    }
    if let Some(s) = &r.stopped {
        line.push_str(&format!("; stopped: {s}"));
    }
    Some(line)
}
