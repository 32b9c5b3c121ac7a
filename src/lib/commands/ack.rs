//! `rs-ack`: acknowledgements and message status.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::ack;
use crate::cli::ack::{AckArgs, AckCommand};
use crate::error::{Error, ExitCode};
use crate::message::Name;
use crate::output::Out;
use crate::queue::retry;
use crate::receive::media::{self, AfterImport, Select};
use crate::receive::ReceiveLock;
use crate::spool::seen::{Kind, Seen};
use crate::spool::{Area, Spool};
use crate::time::{parse_duration, Timestamp};

use super::Context;

pub fn run(args: AckArgs) -> Result<ExitCode, Error> {
    let ctx = Context::with_features("rs-ack", &args.common)?;
    let now = ctx.clock.now();
    let spool = ctx.open_spool(now)?;
    let mut out = Out::new();
    match args.command {
        AckCommand::Emit { peer } => {
            let peer = peer
                .map(|p| Name::new("--peer", p))
                .transpose()
                .map_err(|e| Error::usage(e.to_string()))?;
            let _lock = ReceiveLock::take(&spool)?;
            let emitted = ack::emit(&spool, peer.as_ref(), now)?;
            if ctx.json {
                out.json(&json!({"emitted": emitted.iter().map(|(p, n)| json!({"peer": p.as_str(), "acks": n})).collect::<Vec<_>>()}))?;
            } else {
                for (p, n) in &emitted {
                    ctx.log(format!("{n} acknowledgement(s) ready for {p}"));
                }
            }
            Ok(ExitCode::Ok)
        }
        AckCommand::Apply { from, keep } => {
            if !from.is_dir() {
                return Err(Error::Input {
                    path: from,
                    reason: "not a directory".into(),
                });
            }
            let after = if keep {
                AfterImport::Keep
            } else {
                AfterImport::Remove
            };
            let log = |s: String| ctx.log(s);
            let report = media::import(&spool, &from, Select::AcksOnly, after, now, &log)?;
            super::relay::print_report(&ctx, &mut out, &report, &from.display().to_string())?;
            Ok(super::relay::report_code(&report))
        }
        AckCommand::Status { id } => {
            let s = status(&spool, &id, now)?;
            if s["state"] == "unknown" {
                return Err(Error::UnknownMessage {
                    id,
                    spool: spool.root().to_path_buf(),
                });
            }
            if ctx.json {
                out.json(&s)?;
            } else {
                out.line(format!(
                    "{id}: {}",
                    s["summary"].as_str().unwrap_or_default()
                ))?;
            }
            Ok(ExitCode::Ok)
        }
        AckCommand::Wait {
            id,
            timeout,
            interval,
        } => {
            let timeout = parse_duration(&timeout)?;
            let interval = parse_duration(&interval)?.max(Duration::from_millis(10));
            let start = Instant::now();
            loop {
                let s = status(&spool, &id, ctx.clock.now())?;
                match s["state"].as_str().unwrap_or_default() {
                    "acknowledged" => {
                        if ctx.json {
                            out.json(&s)?;
                        }
                        return Ok(ExitCode::Ok);
                    }
                    "dead" => {
                        return Err(Error::Undeliverable {
                            id,
                            why: s["summary"].as_str().unwrap_or_default().to_string(),
                        })
                    }
                    "unknown" => {
                        return Err(Error::UnknownMessage {
                            id,
                            spool: spool.root().to_path_buf(),
                        })
                    }
                    _ => {}
                }
                if start.elapsed() >= timeout {
                    return Err(Error::NotAcknowledged {
                        id,
                        waited: crate::time::format_duration(timeout),
                        status: s["summary"].as_str().unwrap_or_default().to_string(),
                    });
                }
                std::thread::sleep(
                    interval
                        .min(timeout.saturating_sub(start.elapsed()))
                        .max(Duration::from_millis(10)),
                );
            }
        }
        AckCommand::Overdue => {
            let (sent, _) = spool.scan(Area::Sent)?;
            let mut rows: Vec<_> = sent
                .into_iter()
                .filter_map(|e| {
                    let info = e.sent.clone()?;
                    let timeout = spool
                        .config()
                        .peer(info.peer.as_str())
                        .map_or(Duration::ZERO, |p| p.ack_timeout);
                    retry::is_overdue(&info, timeout, now).then_some((e, info, timeout))
                })
                .collect();
            rows.sort_by_key(|(e, _, _)| e.name.send_order_key());
            for (e, info, timeout) in rows {
                let due = info.last_sent.saturating_add(timeout);
                if ctx.json {
                    out.json(&json!({
                        "id": e.name.id, "peer": info.peer.as_str(), "attempts": info.attempts,
                        "last_sent": info.last_sent, "overdue_since": due, "precedence": e.name.precedence,
                    }))?;
                } else {
                    out.line(format!(
                        "{} sent {} time(s) to {}, last at {}; acknowledgement overdue since {}",
                        e.name.id, info.attempts, info.peer, info.last_sent, due
                    ))?;
                }
            }
            Ok(ExitCode::Ok)
        }
    }
}

/// Where message `id` stands, as JSON with a one-line `summary`.
pub fn status(spool: &Spool, id: &str, now: Timestamp) -> Result<Value, Error> {
    if let Some(v) = crate::bulk::sender::status(spool, id) {
        return Ok(v);
    }
    let journal = ack::journal(spool, id)?;
    let acks: Vec<Value> = journal
        .iter()
        .map(|j| json!({"time": j.time, "event": j.event, "peer": j.peer, "code": j.code, "reason": j.reason}))
        .collect();
    let acked = journal.iter().find(|j| j.event == "acknowledged");
    let delivered = journal.iter().find(|j| j.event == "delivered");
    let undeliverable = journal.iter().find(|j| j.event == "undeliverable");
    let delivered_note = delivered.map(|d| format!("; {} at {}", d.reason, d.time));
    match spool.find(id) {
        Ok(e) => {
            let mut v = json!({
                "id": id, "state": e.area.state_word(), "precedence": e.name.precedence,
                "created": e.name.created, "expires": e.name.expiry, "acks": acks,
            });
            let summary = match &e.sent {
                Some(s) => {
                    v["attempts"] = json!(s.attempts);
                    v["last_sent"] = json!(s.last_sent);
                    v["peer"] = json!(s.peer.as_str());
                    let timeout = spool.config().peer(s.peer.as_str()).map(|p| p.ack_timeout);
                    let overdue = timeout.is_some_and(|t| retry::is_overdue(s, t, now));
                    format!(
                        "sent {} time(s) to {}, last at {}; awaiting acknowledgement{}",
                        s.attempts,
                        s.peer,
                        s.last_sent,
                        if overdue { " (overdue)" } else { "" }
                    )
                }
                None if e.area == Area::Hold => "held (rs-queue release sends it)".to_string(),
                None => format!("queued ({}), not sent yet", e.name.precedence),
            };
            v["summary"] = json!(summary);
            return Ok(v);
        }
        Err(crate::spool::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some((n, r)) = spool
        .scan_dead()?
        .into_iter()
        .find(|(n, _)| n.id.as_str() == id)
    {
        return Ok(json!({
            "id": id, "state": "dead", "precedence": n.precedence, "created": n.created,
            "dead": {"reason": r.kind, "time": r.time, "from": r.from, "detail": r.detail},
            "acks": acks,
            "summary": format!("dead ({}) at {}: {}", r.kind, r.time, r.detail),
        }));
    }
    if let Some(u) = undeliverable {
        return Ok(json!({
            "id": id, "state": "dead", "acks": acks,
            "summary": format!("undeliverable: {} (reported at {})", u.reason, u.time),
        }));
    }
    if let Some(a) = acked {
        return Ok(json!({
            "id": id, "state": "acknowledged", "acks": acks,
            "summary": format!("acknowledged by {} ({}) at {}{}", a.peer, a.code, a.time, delivered_note.unwrap_or_default()),
        }));
    }
    if let Some(d) = delivered {
        return Ok(json!({
            "id": id, "state": "acknowledged", "acks": acks,
            "summary": format!("{} at {}", d.reason, d.time),
        }));
    }
    let seen_path = spool.dir(Area::State).join("seen.idx");
    if seen_path.exists() {
        let seen = Seen::open(&seen_path, now)?;
        if seen.contains(Kind::Id, id)? {
            return Ok(
                json!({"id": id, "state": "received", "acks": acks, "summary": "received here (accepted and remembered)"}),
            );
        }
    }
    Ok(json!({"id": id, "state": "unknown", "acks": acks, "summary": "unknown"}))
}
