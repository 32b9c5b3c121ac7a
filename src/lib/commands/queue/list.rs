//! `rs-queue list`: the messages of an area (outbound in send order,
//! dead, quarantine) or the bulk transfers, one line or one JSON object
//! each; and the line and object that show an outbound message, which
//! `due` prints too.

use std::fs;

use serde_json::{json, Value};

use crate::cli::queue::ListArea;
use crate::error::{Error, ExitCode};
use crate::message::envelope;
use crate::output::Out;
use crate::spool::{Area, Entry, Spool};
use crate::time::Timestamp;

use crate::commands::Context;

/// Outbound entries in send order.
fn outbound_sorted(spool: &Spool, now: Timestamp) -> Result<Vec<Entry>, Error> {
    let mut entries = spool.scan_outbound(now)?;
    entries.sort_by_key(|e| e.name.send_order_key());
    Ok(entries)
}

/// The class and subclass from a message file's header, read from its first bytes only.
fn class_of(spool: &Spool, e: &Entry) -> Option<(String, String)> {
    let file = fs::File::open(spool.entry_path(e)).ok()?;
    let h = envelope::first_header(file).ok()?;
    Some((h.class.to_string(), h.subclass.to_string()))
}

pub(super) fn entry_json(spool: &Spool, e: &Entry, now: Timestamp) -> Value {
    let class = class_of(spool, e);
    json!({
        "id": e.name.id,
        "state": e.area.state_word(),
        "precedence": e.name.precedence,
        "persistence": e.name.persistence,
        "size": e.name.size,
        "created": e.name.created,
        "expires": e.name.expiry,
        "expired": e.name.is_expired(now),
        "class": class.as_ref().map(|c| &c.0),
        "subclass": class.as_ref().map(|c| &c.1),
        "file": spool.entry_path(e),
    })
}

pub(super) fn entry_line(spool: &Spool, e: &Entry, now: Timestamp) -> String {
    let class = class_of(spool, e).map_or_else(
        || "(unreadable: run rs-queue check)".to_string(),
        |(c, s)| format!("{c}/{s}"),
    );
    let expires = match e.name.expiry {
        None => "never".to_string(),
        Some(t) if t <= now => "EXPIRED".to_string(),
        Some(t) => t.to_rfc3339()[..19].to_string(),
    };
    format!(
        "{:<38} {:<6} {:<7} {:<6} {:>9} {:<19} {:<19} {}",
        e.name.id,
        e.area.state_word(),
        e.name.precedence,
        e.name.persistence,
        e.name.size,
        &e.name.created.to_rfc3339()[..19],
        expires,
        class
    )
}

pub(super) const LIST_HEADER: &str = "ID                                     STATE  PREC    PERSIST     SIZE CREATED             EXPIRES             CLASS";

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    area: ListArea,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    match area {
        ListArea::Outbound => {
            let entries = outbound_sorted(spool, now)?;
            if !ctx.json && !entries.is_empty() {
                out.line(LIST_HEADER)?;
            }
            for e in &entries {
                if ctx.json {
                    out.json(&entry_json(spool, e, now))?;
                } else {
                    out.line(entry_line(spool, e, now))?;
                }
            }
        }
        ListArea::Dead => {
            let mut dead = spool.scan_dead()?;
            dead.sort_by_key(|(n, _)| n.send_order_key());
            for (n, r) in dead {
                if ctx.json {
                    out.json(&json!({
                        "id": n.id, "precedence": n.precedence, "size": n.size, "created": n.created,
                        "reason": r.kind, "from": r.from, "time": r.time, "detail": r.detail,
                        "file": spool.dir(Area::Dead).join(n.to_string()),
                    }))?;
                } else {
                    out.line(format!(
                        "{:<38} {:<8} {:<7} {}",
                        n.id, r.kind, n.precedence, r.detail
                    ))?;
                }
            }
        }
        ListArea::Bulk => {
            for t in crate::bulk::list(spool)? {
                if ctx.json {
                    out.json(&t)?;
                } else {
                    out.line(format!(
                        "{} {:<3} {}",
                        t["id"].as_str().unwrap_or_default(),
                        t["direction"].as_str().unwrap_or_default(),
                        t["summary"].as_str().unwrap_or_default()
                    ))?;
                }
            }
        }
        ListArea::Quarantine => {
            for (name, size, r) in spool.scan_quarantine()? {
                if ctx.json {
                    out.json(&json!({
                        "file": spool.dir(Area::Quarantine).join(&name), "size": size,
                        "time": r.time, "from": r.from, "detail": r.detail,
                    }))?;
                } else {
                    out.line(format!(
                        "{name}  ({size} bytes, from {}): {}",
                        r.from, r.detail
                    ))?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::Ok)
}
