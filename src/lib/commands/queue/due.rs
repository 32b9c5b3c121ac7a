//! `rs-queue due`: what may be sent now, in send order, as the throttle
//! and holds allow, and why sending would stop.

use serde_json::json;

use crate::config::Size;
use crate::error::{Error, ExitCode};
use crate::message::Precedence;
use crate::output::Out;
use crate::queue::{sort_send_order, throttle};
use crate::spool::{Area, Entry, EntryName, Spool};
use crate::time::Timestamp;

use super::list::{entry_json, entry_line, LIST_HEADER};
use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let mut names: Vec<EntryName> = Vec::new();
    for p in Precedence::ALL {
        names.extend(spool.scan(Area::Queue(*p))?.0.into_iter().map(|e| e.name));
    }
    sort_send_order(&mut names);
    let d = throttle::due(
        &names,
        &spool.config().throttle,
        spool.is_held(),
        spool.throttle_sent(),
        now,
        ctx.clock.utc_offset_secs(),
    );
    let entries: Vec<Entry> = d
        .due
        .iter()
        .map(|&i| Entry {
            area: Area::Queue(names[i].precedence),
            name: names[i].clone(),
            sent: None,
        })
        .collect();
    let bytes: u64 = entries.iter().map(|e| e.name.size).sum();
    if ctx.json {
        out.json(&json!({
            "due": entries.iter().map(|e| entry_json(spool, e, now)).collect::<Vec<_>>(),
            "messages": entries.len(),
            "bytes": bytes,
            "expired": d.expired.len(),
            "waiting": names.len() - entries.len() - d.expired.len(),
            "stopped": d.stop.as_ref().map(|s| s.to_string()),
        }))?;
        return Ok(ExitCode::Ok);
    }
    if !entries.is_empty() {
        out.line(LIST_HEADER)?;
    }
    for e in &entries {
        out.line(entry_line(spool, e, now))?;
    }
    let waiting = names.len() - entries.len() - d.expired.len();
    let mut summary = format!(
        "{} due now ({}), {} waiting",
        entries.len(),
        Size(bytes),
        waiting
    );
    if !d.expired.is_empty() {
        summary.push_str(&format!(", {} expired (rs-queue prune)", d.expired.len()));
    }
    if let Some(stop) = &d.stop {
        summary.push_str(&format!("; stopped: {stop}"));
    }
    out.line(summary)?;
    Ok(ExitCode::Ok)
}
