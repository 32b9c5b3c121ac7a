//! `rs-ack status`: where a message stands (queued, sent and awaiting
//! acknowledgement, acknowledged, dead, received here), from the spool
//! and the acknowledgement journal; `wait` polls the same.

use serde_json::{json, Value};

use crate::ack;
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::queue::retry;
use crate::spool::seen::{Kind, Seen};
use crate::spool::{Area, Spool};
use crate::time::Timestamp;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    id: String,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let s = status(spool, &id, now)?;
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
