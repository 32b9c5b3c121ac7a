//! `rs-queue stats`: messages and bytes per area and precedence (counted
//! from file names, no file opened), the limits, the hold state, the
//! throttle's counters and what was received; as a table or one JSON
//! object.

use serde_json::{json, Value};

use crate::config::{self, Size};
use crate::error::{Error, ExitCode};
use crate::message::Precedence;
use crate::output::Out;
use crate::spool::{Area, Spool};
use crate::time::Timestamp;

use crate::commands::Context;

/// An area's label, (messages, bytes) per precedence, and its totals.
type StatsRow = (String, [(u64, u64); 3], (u64, u64));

/// What the areas hold, as `stats` shows it.
struct Counts {
    /// queue, hold, sent and dead, per precedence.
    rows: Vec<StatsRow>,
    /// The areas counted as a whole: (label, (messages, bytes)).
    others: Vec<(&'static str, (u64, u64))>,
    /// What waits to leave (queue, hold, sent), per precedence.
    outbound: [(u64, u64); 3],
    /// Outbound messages expired and not yet moved to dead/.
    expired: u64,
}

/// The sum of (messages, bytes) over the precedences.
fn total(per: &[(u64, u64); 3]) -> (u64, u64) {
    per.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1))
}

/// Counts every area, per precedence where names tell it.
fn count(spool: &Spool, now: Timestamp) -> Result<Counts, Error> {
    let named_areas = [
        (
            "queue",
            vec![
                Area::Queue(Precedence::Urgent),
                Area::Queue(Precedence::Normal),
                Area::Queue(Precedence::Bulk),
            ],
        ),
        ("hold", vec![Area::Hold]),
        ("sent", vec![Area::Sent]),
        ("dead", vec![Area::Dead]),
    ];
    let mut rows: Vec<StatsRow> = Vec::new();
    let mut outbound = [(0u64, 0u64); 3];
    let mut expired = 0;
    for (label, areas) in &named_areas {
        let mut per = [(0u64, 0u64); 3];
        for area in areas {
            let (entries, _) = spool.scan(*area)?;
            for e in entries {
                let slot = &mut per[e.name.precedence.rank()];
                slot.0 += 1;
                slot.1 += e.name.size;
                if *label != "dead" && e.area != Area::Sent && e.name.is_expired(now) {
                    expired += 1;
                }
            }
        }
        if *label != "dead" {
            for i in 0..3 {
                outbound[i].0 += per[i].0;
                outbound[i].1 += per[i].1;
            }
        }
        rows.push((label.to_string(), per, total(&per)));
    }
    let others = vec![
        ("received", spool.area_totals(Area::Received)?),
        ("acks", spool.area_totals(Area::AcksOut)?),
        ("quarantine", spool.area_totals(Area::Quarantine)?),
        ("tmp", spool.area_totals(Area::Tmp)?),
    ];
    Ok(Counts {
        rows,
        others,
        outbound,
        expired,
    })
}

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let counts = count(spool, now)?;
    if ctx.json {
        print_json(ctx, spool, out, &counts, now)?;
    } else {
        print_text(ctx, spool, out, &counts, now)?;
    }
    Ok(ExitCode::Ok)
}

/// What the shared database holds, for `stats --json` (null on a spool
/// that keeps its own state; the error when the database cannot be read).
fn shared_json(config: &config::Config) -> Value {
    if !crate::shared::in_database(config) {
        return Value::Null;
    }
    match crate::shared::status(config) {
        Ok(s) => json!({"backend": "postgres", "accepted": s.accepted, "routes": s.routes,
            "outbox": s.outbox, "outbox_sent": s.outbox_sent, "acks": s.acks, "dead": s.dead}),
        Err(e) => json!({"backend": "postgres", "error": e.to_string()}),
    }
}

/// (messages, bytes) per precedence and in total, as a JSON object.
fn per_json(per: &[(u64, u64); 3], total: (u64, u64)) -> Value {
    let mut m = serde_json::Map::new();
    for p in Precedence::ALL {
        let (c, b) = per[p.rank()];
        m.insert(p.as_str().into(), json!({"messages": c, "bytes": b}));
    }
    m.insert(
        "total".into(),
        json!({"messages": total.0, "bytes": total.1}),
    );
    Value::Object(m)
}

fn print_json(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    counts: &Counts,
    now: Timestamp,
) -> Result<(), Error> {
    let cfg = spool.config();
    let limits = &cfg.queue;
    let sent = spool.throttle_sent().at(now, ctx.clock.utc_offset_secs());
    let received = crate::receive::Counters::load(spool);
    let mut areas = serde_json::Map::new();
    for (label, per, total) in &counts.rows {
        areas.insert(label.clone(), per_json(per, *total));
    }
    for (label, (c, b)) in &counts.others {
        areas.insert(
            label.to_string(),
            json!({"total": {"messages": c, "bytes": b}}),
        );
    }
    let limit_json = |l: config::Limit| json!({"max_bytes": l.max_bytes.map(|s| s.0), "max_messages": l.max_messages});
    out.json(&json!({
        "spool": spool.root(),
        "areas": Value::Object(areas),
        "outbound": per_json(&counts.outbound, total(&counts.outbound)),
        "expired_unpruned": counts.expired,
        "held": spool.is_held(),
        "limits": {
            "total": limit_json(limits.total()),
            "urgent": limit_json(limits.urgent),
            "normal": limit_json(limits.normal),
            "bulk": limit_json(limits.bulk),
        },
        "throttle_sent": sent,
        "received": received,
        "shared": shared_json(cfg),
    }))
}

/// The table of areas, then a line for each of the shared state, the
/// outbound totals and limits, the expired, the hold state, what was
/// received and what was sent.
fn print_text(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    counts: &Counts,
    now: Timestamp,
) -> Result<(), Error> {
    out.line(format!(
        "{:<11} {:>9} {:>9} {:>9} {:>9} {:>14}",
        "AREA", "URGENT", "NORMAL", "BULK", "MESSAGES", "BYTES"
    ))?;
    for (label, per, total) in &counts.rows {
        out.line(format!(
            "{:<11} {:>9} {:>9} {:>9} {:>9} {:>14}",
            label, per[0].0, per[1].0, per[2].0, total.0, total.1
        ))?;
    }
    for (label, (c, b)) in &counts.others {
        out.line(format!(
            "{:<11} {:>9} {:>9} {:>9} {:>9} {:>14}",
            label, "-", "-", "-", c, b
        ))?;
    }
    out.line("")?;
    let cfg = spool.config();
    if crate::shared::in_database(cfg) {
        match crate::shared::status(cfg) {
            Ok(s) => out.line(format!(
                "shared (PostgreSQL): {} accepted IDs, {} back-channel messages ({} awaiting acknowledgement), {} acknowledgement envelopes owed, {} dead",
                s.accepted, s.outbox, s.outbox_sent, s.acks, s.dead
            ))?,
            Err(e) => out.line(format!("shared (PostgreSQL): {e}"))?,
        }
    }
    print_outbound(spool, out, counts)?;
    out.line(format!(
        "sending:    {}",
        if spool.is_held() {
            "on hold (rs-queue release resumes it)"
        } else {
            "active"
        }
    ))?;
    let received = crate::receive::Counters::load(spool);
    out.line(format!(
        "received:   {} messages: {} delivered here, {} queued onward, {} duplicates dropped, {} rejected, {} discarded by rules; {} files quarantined",
        received.messages, received.delivered, received.relayed, received.duplicates, received.rejected, received.discarded, received.quarantined
    ))?;
    for (rule, n) in &received.by_rule {
        out.line(format!("  discarded by [[rule]] {rule}: {n}"))?;
    }
    let sent = spool.throttle_sent().at(now, ctx.clock.utc_offset_secs());
    out.line(format!(
        "sent:       {} messages, {} this hour; {} messages, {} today",
        sent.hour_messages,
        Size(sent.hour_bytes),
        sent.day_messages,
        Size(sent.day_bytes)
    ))
}

/// The outbound totals against the limits (a line per limited
/// precedence), and the expired not yet pruned.
fn print_outbound(spool: &Spool, out: &mut Out, counts: &Counts) -> Result<(), Error> {
    let limits = &spool.config().queue;
    let total = total(&counts.outbound);
    out.line(format!(
        "outbound:   {} messages, {} (limit: {})",
        total.0,
        Size(total.1),
        limits.total()
    ))?;
    for p in Precedence::ALL {
        let l = limits.for_precedence(*p);
        if !l.is_unlimited() {
            let (c, b) = counts.outbound[p.rank()];
            out.line(format!("  {p}: {c} messages, {} (limit: {l})", Size(b)))?;
        }
    }
    if counts.expired > 0 {
        out.line(format!(
            "expired:    {} not yet pruned (rs-queue prune moves them to dead/)",
            counts.expired
        ))?;
    }
    Ok(())
}
