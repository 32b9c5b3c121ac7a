//! `rs-queue show`: one message (outbound or dead) as stored, as its
//! decoded content, or as its header and a summary of its content.

use std::fs;

use serde_json::{json, Value};

use crate::error::{Error, ExitCode};
use crate::message::{stream, Content, Locator, Message, Target};
use crate::output::Out;
use crate::spool::{Area, EntryName, Spool};

use crate::commands::Context;

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

pub(super) fn run(
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
