//! `rs-queue`: look at and manage the outbound queue.

use std::fs;

use serde_json::{json, Value};

use crate::cli::queue::{ListArea, QueueArgs, QueueCommand};
use crate::config::{self, Size};
use crate::error::{Error, ExitCode};
use crate::message::{envelope, stream, Content, Locator, Message, Name, Precedence, Target};
use crate::outbound::{self, Via};
use crate::output::Out;
use crate::queue::{sort_send_order, throttle};
use crate::spool::{durable, Area, DeadKind, Entry, EntryName, Spool};
use crate::time::{Timestamp, Window};

use super::Context;

pub fn run(args: QueueArgs) -> Result<ExitCode, Error> {
    let ctx = Context::with_features("rs-queue", &args.common)?;
    let now = ctx.clock.now();
    if let QueueCommand::Init {
        site,
        component,
        group,
    } = &args.command
    {
        return init(&ctx, site, component.as_deref(), group.as_deref(), now);
    }
    if let QueueCommand::Seal { out, to } = &args.command {
        return seal(out, to);
    }
    let spool = ctx.open_spool(now)?;
    let mut out = Out::new();
    match args.command {
        QueueCommand::Init { .. } | QueueCommand::Seal { .. } => unreachable!("handled above"),
        QueueCommand::List { area } => list(&ctx, &spool, &mut out, area, now),
        QueueCommand::Show { id, raw, content } => show(&ctx, &spool, &mut out, &id, raw, content),
        QueueCommand::Stats => stats(&ctx, &spool, &mut out, now),
        QueueCommand::Hold { ids } => hold(&ctx, &spool, &ids, true, now),
        QueueCommand::Release { ids } => hold(&ctx, &spool, &ids, false, now),
        QueueCommand::Delete { ids } => delete(&ctx, &spool, &ids, now),
        QueueCommand::Prune => prune(&ctx, &spool, &mut out, now),
        QueueCommand::Throttle {
            max_bytes_per_hour,
            max_bytes_per_day,
            max_messages_per_hour,
            max_messages_per_day,
            max_message_bytes,
            window,
            no_windows,
        } => {
            let sizes = [
                ("max_bytes_per_hour", max_bytes_per_hour),
                ("max_bytes_per_day", max_bytes_per_day),
                ("max_message_bytes", max_message_bytes),
            ];
            let counts = [
                ("max_messages_per_hour", max_messages_per_hour),
                ("max_messages_per_day", max_messages_per_day),
            ];
            let windows = if no_windows {
                Some(Vec::new())
            } else {
                (!window.is_empty()).then_some(window)
            };
            throttle_cmd(&ctx, &spool, &mut out, &sizes, &counts, windows, now)
        }
        QueueCommand::Due => due(&ctx, &spool, &mut out, now),
        QueueCommand::Check => check(&ctx, &spool, &mut out, now),
        QueueCommand::Export { to, peer } => {
            send_to(&ctx, &spool, &mut out, Via::Export(&to), peer.as_deref())
        }
        QueueCommand::Flush { peer, force } => send_to(
            &ctx,
            &spool,
            &mut out,
            Via::Routes { force },
            peer.as_deref(),
        ),
    }
}

/// `export` and `flush`: for each peer, what is due, over the routes
/// (`outbound::run`); prints what each peer's run did.
fn send_to(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    via: Via<'_>,
    only: Option<&str>,
) -> Result<ExitCode, Error> {
    let log = |s: String| ctx.log(s);
    ctx.run_pending(spool, false);
    // Registration and heartbeats ride every sending run.
    crate::infra::tick(spool, ctx.clock.now(), &log)?;
    let mut runs = outbound::run(spool, only, via, &ctx.clock, &log)?;
    // What came back for rs itself (an answer, a control message) is
    // handled now.
    let waited = crate::infra::held(spool).is_some();
    crate::infra::run_held(spool, ctx.clock.now(), &log)?;
    // Bulk answers that came back are followed now (the chunks asked for
    // go with the next run).
    crate::bulk::run_held(spool, ctx.clock.now(), &log)?;
    let mut uploads = Vec::new();
    if let Via::Routes { .. } = via {
        // Transfers authorized over HTTP are uploaded now (tus); the
        // receiver's answer to a complete one is fetched by one more
        // exchange with its peer.
        uploads = crate::bulk::upload::run(spool, only, ctx.clock.now(), &log)?;
        let mut polled = std::collections::BTreeSet::new();
        for u in uploads.iter().filter(|u| u.complete) {
            if !polled.insert(u.peer.clone()) {
                continue;
            }
            for r in outbound::run(spool, Some(u.peer.as_str()), via, &ctx.clock, &log)? {
                match runs.iter_mut().find(|x| x.peer == r.peer) {
                    Some(x) => x.report.received.messages += r.report.received.messages,
                    None => runs.push(r),
                }
            }
        }
        if !polled.is_empty() {
            crate::bulk::run_held(spool, ctx.clock.now(), &log)?;
        }
    }
    if waited {
        // The registration's answer may have come back in this run: once
        // applied, what waited for it goes now.
        let fresh = spool.reopen()?;
        if let (None, Some(up)) = (crate::infra::held(&fresh), fresh.config().upstream()) {
            let again = outbound::run(&fresh, Some(up.id.as_str()), via, &ctx.clock, &log)?;
            for r in again {
                match runs.iter_mut().find(|x| x.peer == r.peer) {
                    Some(x) => *x = r,
                    None => runs.push(r),
                }
            }
        }
    }
    if let Via::Routes { .. } = via {
        recover(ctx, spool, &mut runs)?;
    }
    let mut code = ExitCode::Ok;
    let mut reports = Vec::new();
    for run in &runs {
        code = code.merge(run.code);
        let r = &run.report;
        if let Some(why) = &run.not_tried {
            ctx.log(format!("{}: {why}", run.peer));
        }
        let Some(target) = &run.target else { continue };
        if ctx.json {
            reports.push(json!({
                "peer": run.peer.as_str(), "to": target, "sent": r.sent, "retransmitted": r.retransmitted,
                "bytes": r.bytes, "ack_files": r.ack_files, "deferred": r.deferred, "refused": r.refused,
                "expired": r.expired, "waiting": r.waiting, "leased_elsewhere": r.leased_elsewhere,
                "stopped": r.stopped, "lease_lapsed": r.lease_lapsed, "pruned": run.pruned,
                "error": r.last_error, "exchanges": r.exchanges,
                "received": super::relay::report_json(&r.received),
                "uploaded": uploads.iter().filter(|u| u.peer == run.peer).map(|u| json!({
                    "transfer": u.transfer, "bytes": u.bytes, "complete": u.complete,
                })).collect::<Vec<_>>(),
            }));
        } else if r.sent + r.ack_files + r.deferred + r.refused + r.expired + r.received.messages
            > 0
            || r.stopped.is_some()
            || !ctx.quiet_when_idle()
        {
            let mut line = format!(
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
            ctx.log(line);
        }
    }
    if ctx.json {
        out.json(&json!({"peers": reports}))?;
    }
    Ok(code)
}

/// After a flush: each peer whose link failed for a reason a new
/// configuration or certificate may repair gets one attempt per class of
/// failure (see `reconfig`), then its link is tested again; the outcome
/// replaces its run.
fn recover(ctx: &Context, spool: &Spool, runs: &mut [outbound::PeerRun]) -> Result<(), Error> {
    let log = |s: String| ctx.log(s);
    let mut tried = std::collections::HashSet::new();
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
        let now = ctx.clock.now();
        let trust = std::env::var(crate::reconfig::ENV_TRUST).ok();
        let recovered = crate::reconfig::Trust::parse(trust.as_deref()).and_then(|trust| {
            crate::reconfig::recover(spool.root(), spool.config(), peer, trouble, trust, now)
        });
        match recovered {
            Err(e) => {
                ctx.log(format!(
                    "{}: {} trouble ({why}); recovery failed, nothing changed: {e}",
                    run.peer,
                    trouble.as_str()
                ));
                // Refused on this site's terms: the operator must act.
                if matches!(e, crate::reconfig::Error::Refused { .. }) {
                    run.code = run.code.merge(ExitCode::Config);
                }
            }
            Ok(what) => {
                ctx.log(format!(
                    "{}: {} trouble ({why}); installed {what}; testing the link again",
                    run.peer,
                    trouble.as_str()
                ));
                let fresh = spool.reopen()?;
                let again = outbound::run(
                    &fresh,
                    Some(run.peer.as_str()),
                    Via::Routes { force: true },
                    &ctx.clock,
                    &log,
                )?;
                if let Some(r) = again.into_iter().next() {
                    if r.code == ExitCode::Ok {
                        ctx.log(format!(
                            "{}: the link is back in order after {what}",
                            r.peer
                        ));
                    } else {
                        ctx.log(format!(
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
            }
        }
    }
    Ok(())
}

fn init(
    ctx: &Context,
    site: &str,
    component: Option<&str>,
    group: Option<&str>,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let dir = &ctx.spool_dir;
    if crate::spool::has_config(dir) {
        return Err(Error::SpoolExists { path: dir.clone() });
    }
    let usage = |e: crate::message::Error| Error::usage(e.to_string());
    let site = Name::new("--site", site).map_err(usage)?;
    let component = match component {
        Some(c) => Name::new("--component", c).map_err(usage)?,
        None => crate::spool::default_component(&site),
    };
    let spool = match Spool::create(dir, &site, &component, group, now) {
        Err(crate::spool::Error::Exists { path }) => return Err(Error::SpoolExists { path }),
        other => other?,
    };
    let mut out = Out::new();
    if ctx.json {
        out.json(
            &json!({"spool": spool.root(), "site": site.as_str(), "component": component.as_str()}),
        )?;
    } else {
        out.line(format!(
            "created spool {} for site {site}, component {component}",
            spool.root().display()
        ))?;
    }
    Ok(ExitCode::Ok)
}

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

fn entry_json(spool: &Spool, e: &Entry, now: Timestamp) -> Value {
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

fn entry_line(spool: &Spool, e: &Entry, now: Timestamp) -> String {
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

const LIST_HEADER: &str = "ID                                     STATE  PREC    PERSIST     SIZE CREATED             EXPIRES             CLASS";

fn list(
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

/// Finds a message by ID in the outbound areas, else in dead/: its area,
/// name, file and (if dead) reason.
fn locate(
    spool: &Spool,
    id: &str,
) -> Result<
    (
        Area,
        EntryName,
        std::path::PathBuf,
        Option<crate::spool::Reason>,
    ),
    Error,
> {
    match spool.find(id) {
        Ok(e) => Ok((e.area, e.name.clone(), spool.entry_path(&e), None)),
        Err(crate::spool::Error::NotFound { .. }) => {
            let dead = spool.scan_dead()?;
            match dead.into_iter().find(|(n, _)| n.id.as_str() == id) {
                Some((n, r)) => {
                    let path = spool.dir(Area::Dead).join(n.to_string());
                    Ok((Area::Dead, n, path, Some(r)))
                }
                None => Err(Error::UnknownMessage {
                    id: id.to_string(),
                    spool: spool.root().to_path_buf(),
                }),
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn show(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    id: &str,
    raw: bool,
    content: bool,
) -> Result<ExitCode, Error> {
    let (area, name, path, reason) = locate(spool, id)?;
    let io_err = |err: std::io::Error| Error::Io {
        op: "read",
        path: path.clone(),
        err,
    };
    if raw {
        let mut f = fs::File::open(&path).map_err(io_err)?;
        out.copy_from(&mut f)?;
        return Ok(ExitCode::Ok);
    }
    let unreadable = |e: crate::message::Error| Error::Unreadable {
        id: id.to_string(),
        path: path.clone(),
        reason: format!("cannot be parsed: {e}"),
    };
    let m = match stream::load(&path).map_err(unreadable)? {
        stream::Loaded::Large(layout) => {
            if content {
                let mut f = fs::File::open(&path).map_err(io_err)?;
                out.flush()?;
                let mut stdout = std::io::stdout().lock();
                stream::decode(&mut f, &mut stdout).map_err(unreadable)?;
                return Ok(ExitCode::Ok);
            }
            let m = Message {
                header: layout.header,
                content: Content::Data(crate::message::Data {
                    mime_type: layout.mime_type,
                    bytes: Vec::new(),
                }),
            };
            (m, Some(layout.size))
        }
        stream::Loaded::Messages(messages) => {
            let Some(m) = messages.into_iter().find(|m| m.header.id.as_str() == id) else {
                return Err(Error::Unreadable {
                    id: id.to_string(),
                    path,
                    reason: "the file does not hold this message".into(),
                });
            };
            if content {
                out.bytes(&content_bytes(&m))?;
                return Ok(ExitCode::Ok);
            }
            (m, None)
        }
    };
    print_message(ctx, out, m, area, &name, &path, reason)
}

/// Prints a message's header and content summary. `data_size` gives the
/// size of data that was not read into memory.
fn print_message(
    ctx: &Context,
    out: &mut Out,
    (m, data_size): (Message, Option<u64>),
    area: Area,
    name: &EntryName,
    path: &std::path::Path,
    reason: Option<crate::spool::Reason>,
) -> Result<ExitCode, Error> {
    let h = &m.header;
    let q = h.qos();
    let locator = match &h.locator {
        Locator::Source(s) => {
            json!({"source": {"component": s.component.as_str(), "type": s.component_type.as_str(), "version": s.version.as_str()}})
        }
        Locator::Destination(d) => json!({"destination": d.targets.iter().map(|t| match t {
            Target::Component(c) => format!("{c}"),
            Target::Group(g) => format!("group:{g}"),
        }).collect::<Vec<_>>()}),
    };
    let mut summary = content_summary(&m.content);
    if let Some(size) = data_size {
        summary["description"] = json!(format!(
            "data ({}, {size} bytes)",
            match &m.content {
                Content::Data(d) => d.mime_type.as_str(),
                _ => "",
            }
        ));
    }
    if ctx.json {
        let mut v = json!({
            "id": h.id, "state": area.state_word(), "file": path, "class": h.class.as_str(),
            "subclass": h.subclass.as_str(), "created": h.created, "precedence": q.precedence,
            "persistence": q.persistence, "expires": q.expiry, "size": name.size,
            "in_reply_to": h.in_reply_to, "origin_key": h.origin_key.as_ref().map(|k| k.as_str()),
            "epoch": h.epoch, "content": summary,
            "routing": h.routing.iter().map(|r| json!({"component": r.component.as_str(), "received": r.received, "sent": r.sent})).collect::<Vec<_>>(),
            "dead": reason.as_ref().map(|r| json!({"reason": r.kind, "time": r.time, "detail": r.detail})),
        });
        if let (Some(obj), Some(loc)) = (v.as_object_mut(), locator.as_object()) {
            obj.extend(loc.clone());
        }
        out.json(&v)?;
        return Ok(ExitCode::Ok);
    }
    let mut lines = vec![
        format!("id:          {}", h.id),
        format!("state:       {} ({})", area.state_word(), path.display()),
        format!("class:       {}/{}", h.class, h.subclass),
        format!("created:     {}", h.created),
        format!("precedence:  {}", q.precedence),
        format!("persistence: {}", q.persistence),
        format!(
            "expires:     {}",
            q.expiry.map_or("never".to_string(), |t| t.to_string())
        ),
        format!("size:        {} bytes", name.size),
    ];
    match &h.locator {
        Locator::Source(s) => lines.push(format!(
            "source:      {} ({} {})",
            s.component, s.component_type, s.version
        )),
        Locator::Destination(d) => lines.push(format!(
            "destination: {}",
            d.targets
                .iter()
                .map(|t| match t {
                    Target::Component(c) => c.to_string(),
                    Target::Group(g) => format!("group:{g}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    if let Some(r) = &h.in_reply_to {
        lines.push(format!("in-reply-to: {r}"));
    }
    if let Some(k) = &h.origin_key {
        lines.push(format!("origin-key:  {k}"));
    }
    lines.push(format!(
        "content:     {}",
        summary["description"].as_str().unwrap_or_default()
    ));
    for r in &h.routing {
        lines.push(format!(
            "routing:     {} received {} sent {}",
            r.component,
            r.received.map_or("-".into(), |t| t.to_string()),
            r.sent.map_or("-".into(), |t| t.to_string())
        ));
    }
    if let Some(r) = reason {
        lines.push(format!(
            "dead:        {} at {}: {}",
            r.kind, r.time, r.detail
        ));
    }
    for l in lines {
        out.line(l)?;
    }
    Ok(ExitCode::Ok)
}

fn content_bytes(m: &Message) -> Vec<u8> {
    match &m.content {
        Content::Data(d) => d.bytes.clone(),
        Content::Alarm(a) => a.text.as_str().as_bytes().to_vec(),
        Content::Event(e) => e.text.as_str().as_bytes().to_vec(),
        other => crate::message::xml::content_to_xml(other).into_bytes(),
    }
}

fn content_summary(c: &Content) -> Value {
    let description = match c {
        Content::Data(d) => format!("data ({}, {} bytes)", d.mime_type, d.bytes.len()),
        Content::Alarm(a) => format!(
            "alarm {} {} {}: {}",
            a.alarm_type, a.severity, a.state, a.text
        ),
        Content::Event(e) => format!("event {} {}: {}", e.event_type, e.severity, e.text),
        Content::MessageResponse(r) => format!(
            "message-response {} for {}: {}",
            r.status, r.answers, r.reason
        ),
        Content::BulkDataRequest(r) => format!(
            "bulk-data-request {}/{} {} bytes",
            r.class, r.subclass, r.size
        ),
        Content::BulkDataResponse(r) => {
            format!("bulk-data-response {} for {}", r.status, r.answers)
        }
    };
    json!({"kind": c.kind(), "description": description})
}

/// An area's label, (messages, bytes) per precedence, and its totals.
type StatsRow = (String, [(u64, u64); 3], (u64, u64));

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

fn stats(ctx: &Context, spool: &Spool, out: &mut Out, now: Timestamp) -> Result<ExitCode, Error> {
    // Per area and precedence, from file names (no file is opened).
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
        let total = per.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
        rows.push((label.to_string(), per, total));
    }
    let others: Vec<(&str, (u64, u64))> = vec![
        ("received", spool.area_totals(Area::Received)?),
        ("acks", spool.area_totals(Area::AcksOut)?),
        ("quarantine", spool.area_totals(Area::Quarantine)?),
        ("tmp", spool.area_totals(Area::Tmp)?),
    ];
    let cfg = spool.config();
    let limits = &cfg.queue;
    let sent = spool.throttle_sent().at(now, ctx.clock.utc_offset_secs());
    let held = spool.is_held();
    let received = crate::receive::Counters::load(spool);
    if ctx.json {
        let per_json = |per: &[(u64, u64); 3], total: (u64, u64)| {
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
        };
        let mut areas = serde_json::Map::new();
        for (label, per, total) in &rows {
            areas.insert(label.clone(), per_json(per, *total));
        }
        for (label, (c, b)) in &others {
            areas.insert(
                label.to_string(),
                json!({"total": {"messages": c, "bytes": b}}),
            );
        }
        let total = outbound.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
        let limit_json = |l: config::Limit| json!({"max_bytes": l.max_bytes.map(|s| s.0), "max_messages": l.max_messages});
        out.json(&json!({
            "spool": spool.root(),
            "areas": Value::Object(areas),
            "outbound": per_json(&outbound, total),
            "expired_unpruned": expired,
            "held": held,
            "limits": {
                "total": limit_json(limits.total()),
                "urgent": limit_json(limits.urgent),
                "normal": limit_json(limits.normal),
                "bulk": limit_json(limits.bulk),
            },
            "throttle_sent": sent,
            "received": received,
            "shared": shared_json(cfg),
        }))?;
        return Ok(ExitCode::Ok);
    }
    out.line(format!(
        "{:<11} {:>9} {:>9} {:>9} {:>9} {:>14}",
        "AREA", "URGENT", "NORMAL", "BULK", "MESSAGES", "BYTES"
    ))?;
    for (label, per, total) in &rows {
        out.line(format!(
            "{:<11} {:>9} {:>9} {:>9} {:>9} {:>14}",
            label, per[0].0, per[1].0, per[2].0, total.0, total.1
        ))?;
    }
    for (label, (c, b)) in &others {
        out.line(format!(
            "{:<11} {:>9} {:>9} {:>9} {:>9} {:>14}",
            label, "-", "-", "-", c, b
        ))?;
    }
    out.line("")?;
    if crate::shared::in_database(cfg) {
        match crate::shared::status(cfg) {
            Ok(s) => out.line(format!(
                "shared (PostgreSQL): {} accepted IDs, {} back-channel messages ({} awaiting acknowledgement), {} acknowledgement envelopes owed, {} dead",
                s.accepted, s.outbox, s.outbox_sent, s.acks, s.dead
            ))?,
            Err(e) => out.line(format!("shared (PostgreSQL): {e}"))?,
        }
    }
    let total = outbound.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
    out.line(format!(
        "outbound:   {} messages, {} (limit: {})",
        total.0,
        Size(total.1),
        limits.total()
    ))?;
    for p in Precedence::ALL {
        let l = limits.for_precedence(*p);
        if !l.is_unlimited() {
            let (c, b) = outbound[p.rank()];
            out.line(format!("  {p}: {c} messages, {} (limit: {l})", Size(b)))?;
        }
    }
    if expired > 0 {
        out.line(format!(
            "expired:    {expired} not yet pruned (rs-queue prune moves them to dead/)"
        ))?;
    }
    out.line(format!(
        "sending:    {}",
        if held {
            "on hold (rs-queue release resumes it)"
        } else {
            "active"
        }
    ))?;
    out.line(format!(
        "received:   {} messages: {} delivered here, {} queued onward, {} duplicates dropped, {} rejected, {} discarded by rules; {} files quarantined",
        received.messages, received.delivered, received.relayed, received.duplicates, received.rejected, received.discarded, received.quarantined
    ))?;
    for (rule, n) in &received.by_rule {
        out.line(format!("  discarded by [[rule]] {rule}: {n}"))?;
    }
    out.line(format!(
        "sent:       {} messages, {} this hour; {} messages, {} today",
        sent.hour_messages,
        Size(sent.hour_bytes),
        sent.day_messages,
        Size(sent.day_bytes)
    ))?;
    Ok(ExitCode::Ok)
}

fn hold(
    ctx: &Context,
    spool: &Spool,
    ids: &[String],
    hold: bool,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let mut locked = spool.lock(now)?;
    if ids.is_empty() {
        locked.set_held(hold, now)?;
        ctx.log(if hold {
            "sending stopped (rs-queue release resumes it)"
        } else {
            "sending resumed"
        });
        return Ok(ExitCode::Ok);
    }
    let mut code = ExitCode::Ok;
    for id in ids {
        let result = spool
            .find(id)
            .map_err(Error::from)
            .and_then(|e| match (hold, e.area) {
                (true, Area::Queue(_)) => Ok(Some(locked.move_entry(&e, Area::Hold)?)),
                (false, Area::Hold) => {
                    Ok(Some(locked.move_entry(&e, Area::Queue(e.name.precedence))?))
                }
                (true, Area::Hold) | (false, Area::Queue(_)) => Ok(None),
                (_, area) => Err(Error::WrongState {
                    id: id.to_string(),
                    state: area.state_word(),
                    action: if hold { "held" } else { "released" },
                }),
            });
        match result {
            Ok(Some(_)) => ctx.log(format!("{id} {}", if hold { "held" } else { "released" })),
            Ok(None) => ctx.log(format!(
                "{id} was already {}",
                if hold { "held" } else { "queued" }
            )),
            Err(e) => {
                ctx.log(format!("error: {e}"));
                code = code.merge(e.code());
            }
        }
    }
    Ok(code)
}

fn delete(ctx: &Context, spool: &Spool, ids: &[String], now: Timestamp) -> Result<ExitCode, Error> {
    let mut code = ExitCode::Ok;
    for id in ids {
        // A bulk transfer sent from here: its messages and its data.
        if let Some(what) = crate::bulk::sender::delete(spool, id, now)? {
            ctx.log(what);
            continue;
        }
        let mut locked = spool.lock(now)?;
        match spool.find(id) {
            Ok(e) => {
                locked.bury(
                    &e,
                    DeadKind::Deleted,
                    "deleted by the operator (rs-queue delete)",
                    now,
                )?;
                ctx.log(format!("{id} deleted (kept in dead/)"));
            }
            Err(e) => {
                let e = Error::from(e);
                ctx.log(format!("error: {e}"));
                code = code.merge(e.code());
            }
        }
    }
    Ok(code)
}

fn prune(ctx: &Context, spool: &Spool, out: &mut Out, now: Timestamp) -> Result<ExitCode, Error> {
    let mut locked = spool.lock(now)?;
    let mut pruned = Vec::new();
    for e in spool.scan_outbound(now)? {
        if e.name.is_expired(now) {
            locked.bury_expired(&e, now)?;
            ctx.log(format!("{} expired: moved to dead/", e.name.id));
            pruned.push(e.name.id.to_string());
        }
    }
    if ctx.json {
        out.json(&json!({"pruned": pruned}))?;
    }
    Ok(ExitCode::Ok)
}

fn throttle_cmd(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    sizes: &[(&str, Option<String>)],
    counts: &[(&str, Option<String>)],
    windows: Option<Vec<String>>,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let path = spool.config_path();
    let mut text = fs::read_to_string(&path).map_err(|e| Error::ConfigEdit {
        path: path.clone(),
        reason: format!("cannot read it: {e}"),
    })?;
    let original = text.clone();
    let edit = |text: &str, key: &str, value: Option<toml_edit::Value>| {
        config::edit(text, "throttle", key, value).map_err(|reason| Error::ConfigEdit {
            path: path.clone(),
            reason,
        })
    };
    for (key, value) in sizes {
        if let Some(v) = value {
            let v = if v == "none" {
                None
            } else {
                let s = Size::parse(v)
                    .map_err(|e| Error::usage(format!("--{}: {e}", key.replace('_', "-"))))?;
                Some(toml_edit::Value::from(s.to_string()))
            };
            text = edit(&text, key, v)?;
        }
    }
    for (key, value) in counts {
        if let Some(v) = value {
            let v = if v == "none" {
                None
            } else {
                let n: i64 = v.parse().map_err(|_| {
                    Error::usage(format!(
                        "--{}: `{v}` is not a number",
                        key.replace('_', "-")
                    ))
                })?;
                Some(toml_edit::Value::from(n))
            };
            text = edit(&text, key, v)?;
        }
    }
    if let Some(ws) = windows {
        for w in &ws {
            Window::parse(w)?;
        }
        let v = (!ws.is_empty())
            .then(|| toml_edit::Value::Array(ws.iter().map(|w| w.as_str()).collect()));
        text = edit(&text, "windows", v)?;
    }
    let config = if text != original {
        let c = config::Config::parse(&text).map_err(|reason| Error::ConfigEdit {
            path: path.clone(),
            reason,
        })?;
        durable::write_durable(
            &spool.dir(Area::Tmp),
            spool.root(),
            config::FILE_NAME,
            text.as_bytes(),
            now.as_micros(),
        )?;
        ctx.log(format!("throttle updated in {}", path.display()));
        c
    } else {
        spool.config().clone()
    };
    let t = &config.throttle;
    let sent = spool.throttle_sent().at(now, ctx.clock.utc_offset_secs());
    if ctx.json {
        out.json(&json!({
            "max_bytes_per_hour": t.max_bytes_per_hour.map(|s| s.0),
            "max_bytes_per_day": t.max_bytes_per_day.map(|s| s.0),
            "max_messages_per_hour": t.max_messages_per_hour,
            "max_messages_per_day": t.max_messages_per_day,
            "max_message_bytes": t.max_message_bytes.map(|s| s.0),
            "windows": t.windows.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            "held": spool.is_held(),
            "sent": sent,
        }))?;
        return Ok(ExitCode::Ok);
    }
    let show = |s: Option<Size>| s.map_or("unlimited".to_string(), |s| s.to_string());
    let showc = |c: Option<u64>| c.map_or("unlimited".to_string(), |c| c.to_string());
    out.line(format!(
        "max_bytes_per_hour     {:<14} (sent this hour: {})",
        show(t.max_bytes_per_hour),
        Size(sent.hour_bytes)
    ))?;
    out.line(format!(
        "max_bytes_per_day      {:<14} (sent today: {})",
        show(t.max_bytes_per_day),
        Size(sent.day_bytes)
    ))?;
    out.line(format!(
        "max_messages_per_hour  {:<14} (sent this hour: {})",
        showc(t.max_messages_per_hour),
        sent.hour_messages
    ))?;
    out.line(format!(
        "max_messages_per_day   {:<14} (sent today: {})",
        showc(t.max_messages_per_day),
        sent.day_messages
    ))?;
    out.line(format!(
        "max_message_bytes      {}",
        show(t.max_message_bytes)
    ))?;
    let windows = if t.windows.is_empty() {
        "any time".to_string()
    } else {
        t.windows
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.line(format!("windows                {windows}"))?;
    out.line(format!(
        "sending                {}",
        if spool.is_held() { "on hold" } else { "active" }
    ))?;
    Ok(ExitCode::Ok)
}

fn due(ctx: &Context, spool: &Spool, out: &mut Out, now: Timestamp) -> Result<ExitCode, Error> {
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

fn check(ctx: &Context, spool: &Spool, out: &mut Out, now: Timestamp) -> Result<ExitCode, Error> {
    spool.ensure_dirs()?;
    spool.clean_maildir_tmp(now)?;
    let mut locked = spool.lock(now)?;
    let entries = spool.scan_outbound(now)?;
    let mut bad = Vec::new();
    for e in &entries {
        let path = spool.entry_path(e);
        let verdict = stream::load(&path)
            .map_err(|err| err.to_string())
            .and_then(|loaded| {
                let header = match loaded {
                    stream::Loaded::Large(layout) => Some(layout.header),
                    stream::Loaded::Messages(ms) => {
                        ms.into_iter().map(|m| m.header).find(|h| h.id == e.name.id)
                    }
                };
                match header {
                    None => Err(format!(
                        "does not hold message {} that its name promises",
                        e.name.id
                    )),
                    Some(h) if h.id != e.name.id => Err(format!(
                        "holds message {}, not {} that its name promises",
                        h.id, e.name.id
                    )),
                    Some(h) if h.qos().precedence != e.name.precedence => {
                        Err("its header's precedence differs from its name's".to_string())
                    }
                    Some(_) => Ok(()),
                }
            });
        if let Err(reason) = verdict {
            let q = locked.quarantine_entry(e, &reason, now)?;
            ctx.log(format!(
                "{} quarantined as {}: {reason}",
                e.name.id,
                q.display()
            ));
            bad.push(json!({"id": e.name.id, "file": q, "reason": reason}));
        }
    }
    if ctx.json {
        out.json(&json!({"checked": entries.len(), "quarantined": bad}))?;
    } else {
        ctx.log(format!(
            "checked {} outbound messages, quarantined {}",
            entries.len(),
            bad.len()
        ));
    }
    Ok(if bad.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::DataErr
    })
}

/// `rs-queue seal`: bulk data from standard input sealed into `path`
/// (durable on return), for `rs-send` (which links no cryptography).
fn seal(path: &std::path::Path, to: &[String]) -> Result<ExitCode, Error> {
    use std::io::Write;
    let recipients = crate::bulk::seal::Recipient::from_config(to).map_err(|e| {
        crate::spool::Error::Sealing {
            reason: e.to_string(),
        }
    })?;
    let file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| crate::spool::Error::io("open", path, e))?;
    let mut w = durable::Flowing::new(std::io::BufWriter::with_capacity(1 << 20, &file), &file)
        .map_err(|e| crate::spool::Error::io("open", path, e))?;
    let stdin = std::io::stdin();
    let sealed =
        crate::bulk::seal::seal_stream(&recipients, &mut stdin.lock(), &mut w, &mut |_| {})
            .and_then(|s| w.flush().map(|_| s))
            .map_err(|e| crate::spool::Error::io("seal the data into", path, e))?;
    drop(w);
    durable::sync_all(&file, path).map_err(|e| crate::spool::Error::io("fsync", path, e))?;
    let mut out = Out::new();
    out.json(&json!({
        "size": sealed.size,
        "digest": sealed.digest.to_string(),
        "header": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &sealed.header),
    }))?;
    Ok(ExitCode::Ok)
}
