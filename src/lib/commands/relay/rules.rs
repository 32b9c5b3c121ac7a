//! `rs-relay rules` and `rs-relay rules test`: the configured rules, one
//! line each; or what the receive path would decide for a message (a file
//! or an ID held here), through `receive::decide` itself.

use serde_json::json;

use crate::error::{Error, ExitCode};
use crate::output::Out;

use crate::commands::Context;

/// `rs-relay rules` and `rs-relay rules test`.
pub(super) fn run(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    command: Option<crate::cli::relay::RulesCommand>,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    use crate::filter;
    let config = spool.config();
    let Some(crate::cli::relay::RulesCommand::Test { message }) = command else {
        for (i, r) in config.rules.iter().enumerate() {
            let described = describe_rule(r);
            if ctx.json {
                out.json(&json!({"index": i + 1, "name": r.label(i), "rule": described, "action": format!("{:?}", r.action).to_lowercase()}))?;
            } else {
                out.line(format!("{:>3}  {:<20} {described}", i + 1, r.label(i)))?;
            }
        }
        if config.rules.is_empty() && !ctx.json {
            ctx.log(format!(
                "no [[rule]] in {}: every message is routed as usual",
                spool.config_path().display()
            ));
        }
        return Ok(ExitCode::Ok);
    };
    let (header, content) = message_for_test(spool, &message)?;
    let (kind, severity) = match &content {
        Some(c) => filter::kind_of(c),
        None => ("data", None),
    };
    let mime = match &content {
        Some(crate::message::Content::Data(d)) => Some(d.mime_type.as_str()),
        _ => None,
    };
    let (rule, outcome) = decided(spool, &header, (kind, severity, mime), now, ctx);
    if ctx.json {
        out.json(&json!({
            "id": header.id, "rule": rule.as_ref().map(|(i, name)| json!({"index": i + 1, "name": name})),
            "outcome": outcome,
        }))?;
    } else {
        match rule {
            Some((i, name)) => out.line(format!(
                "{}: meets rule {} ({name}): {outcome}",
                header.id,
                i + 1
            ))?,
            None => out.line(format!("{}: meets no rule: {outcome}", header.id))?,
        }
    }
    Ok(ExitCode::Ok)
}

/// What the receive path would decide for a message with this header,
/// arriving now from its origin (`receive::decide`, the one code path):
/// the rule it meets, if one decides, and the outcome in words.
fn decided(
    spool: &crate::spool::Spool,
    header: &crate::message::Header,
    (kind, severity, mime): (&str, Option<&str>, Option<&str>),
    now: crate::time::Timestamp,
    ctx: &Context,
) -> (Option<(usize, String)>, String) {
    use crate::receive::decide::{decide, Decision, Facts, Keep, When};
    let config = spool.config();
    let learned = crate::route::Learned::load(spool);
    let claims = crate::receive::Extensions::of(spool).begin(spool, &|l| ctx.log(l));
    let from = crate::route::originator(header, &config.component).clone();
    let facts = Facts {
        header,
        from: &from,
        id_seen: false,
        origin_key_seen: false,
        relay_stopped: None,
        kind,
        severity,
        mime,
        signed: true,
    };
    let when = When {
        now,
        receive_time: now,
        horizon: None,
        max_clock_skew: config.receive.max_clock_skew,
        minute_of_day: now.minute_of_day(ctx.clock.utc_offset_secs()),
    };
    let label = |i: usize| Some((i, config.rules[i].label(i)));
    let rule_labelled = |l: &str| {
        (0..config.rules.len())
            .find(|&i| config.rules[i].label(i) == l)
            .and_then(label)
    };
    let matched = || {
        crate::filter::first_match(
            &config.rules,
            &crate::filter::Facts {
                header,
                kind,
                severity,
                minute_of_day: when.minute_of_day,
            },
        )
        .filter(|(_, r)| r.action == crate::filter::Action::Forward)
        .and_then(|(i, _)| label(i))
    };
    match decide(&facts, &when, config, &learned, &claims) {
        Decision::Discard { label } => (
            rule_labelled(&label),
            "discarded (acknowledged as accepted, counted)".into(),
        ),
        Decision::Hold { label, .. } if label == crate::infra::LABEL => (
            None,
            "taken by rs itself (registration, heartbeat or control)".into(),
        ),
        Decision::Hold { label, .. } if label == crate::bulk::LABEL => {
            (None, "taken as part of a bulk transfer".into())
        }
        Decision::Hold {
            label,
            keep: Keep::Aggregate,
            ..
        } => (
            rule_labelled(&label),
            "gathered into the rule's next aggregate".into(),
        ),
        Decision::Hold { label, .. } => {
            let rule = rule_labelled(&label);
            let handler = rule
                .as_ref()
                .and_then(|(i, _)| config.rules[*i].handler.as_ref())
                .map(|h| h.display().to_string())
                .unwrap_or_default();
            (rule, format!("handed to {handler}"))
        }
        Decision::Forward { peer, pinned } => match matched() {
            Some(r) => (Some(r), format!("forwarded to {peer}")),
            None => (
                None,
                format!(
                    "forwarded to {peer}{}",
                    if pinned { "" } else { " (routing)" }
                ),
            ),
        },
        Decision::Deliver => (None, "delivered here".into()),
        Decision::Expand { targets } => {
            let names: Vec<String> = targets
                .iter()
                .map(|t| match t {
                    crate::message::Target::Component(c) => c.to_string(),
                    crate::message::Target::Group(g) => format!("group:{g}"),
                })
                .collect();
            (
                None,
                format!(
                    "expanded here into one copy for each of {} (each then decided on its own)",
                    names.join(", ")
                ),
            )
        }
        Decision::Reject { reason, .. } => (None, format!("rejected: {reason}")),
        Decision::Refuse { reason } => (None, format!("refused and kept in quarantine: {reason}")),
        Decision::NotTaken {
            status: crate::message::ResponseStatus::EpochMismatch,
            reason,
            ..
        } => (None, format!("epoch mismatch: {reason}")),
        Decision::NotTaken { reason, .. } => (None, format!("not taken now: {reason}")),
        Decision::Duplicate { .. } => (None, "a duplicate".into()),
    }
}

/// One line saying what a rule matches and does.
fn describe_rule(r: &crate::filter::Rule) -> String {
    let mut parts = Vec::new();
    for (field, p) in [
        ("class", &r.class),
        ("subclass", &r.subclass),
        ("kind", &r.kind),
        ("severity", &r.severity),
        ("source", &r.source),
        ("destination", &r.destination),
    ] {
        if let Some(p) = p {
            parts.push(format!("{field}={}", p.0.join("|")));
        }
    }
    if let Some(w) = &r.window {
        parts.push(format!("window={w}"));
    }
    let matches = if parts.is_empty() {
        "every message".to_string()
    } else {
        parts.join(" ")
    };
    let action = match r.action {
        crate::filter::Action::Discard => "discard".to_string(),
        crate::filter::Action::Forward => match &r.peer {
            Some(p) => format!("forward to {p}"),
            None => "forward".into(),
        },
        crate::filter::Action::Divert => format!(
            "divert to {}",
            r.handler
                .as_ref()
                .map(|h| h.display().to_string())
                .unwrap_or_default()
        ),
        crate::filter::Action::Aggregate => {
            let mut t = Vec::new();
            if let Some(c) = r.count {
                t.push(format!("{c} messages"));
            }
            if let Some(a) = r.age {
                t.push(format!("{} old", crate::time::format_duration(a)));
            }
            format!("aggregate ({})", t.join(" or "))
        }
    };
    format!("{matches} -> {action}")
}

/// The header and (when small) content of the message `what` names: an
/// envelope file, or an ID held here.
fn message_for_test(
    spool: &crate::spool::Spool,
    what: &str,
) -> Result<(crate::message::Header, Option<crate::message::Content>), Error> {
    use crate::message::stream;
    let path = if std::path::Path::new(what).is_file() {
        std::path::PathBuf::from(what)
    } else {
        find_message(spool, what)?
    };
    let loaded = stream::load(&path).map_err(|e| Error::Unreadable {
        id: what.to_string(),
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(match loaded {
        stream::Loaded::Large(l) => (l.header, None),
        stream::Loaded::Messages(ms) => {
            let m = ms
                .iter()
                .find(|m| m.header.id.as_str() == what)
                .or(ms.first())
                .cloned()
                .ok_or_else(|| Error::Unreadable {
                    id: what.to_string(),
                    path: path.clone(),
                    reason: "no message in it".into(),
                })?;
            (m.header, Some(m.content))
        }
    })
}

/// The file holding message `id`: outbound, dead, or received here.
fn find_message(spool: &crate::spool::Spool, id: &str) -> Result<std::path::PathBuf, Error> {
    use crate::spool::Area;
    if let Ok(e) = spool.find(id) {
        return Ok(spool.entry_path(&e));
    }
    if let Some((n, _)) = spool
        .scan_dead()?
        .into_iter()
        .find(|(n, _)| n.id.as_str() == id)
    {
        return Ok(spool.dir(Area::Dead).join(n.to_string()));
    }
    if let Some(p) = crate::spool::maildir::files(spool)?.into_iter().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(crate::spool::maildir::id_of)
            == Some(id)
    }) {
        return Ok(p);
    }
    Err(Error::UnknownMessage {
        id: id.to_string(),
        spool: spool.root().to_path_buf(),
    })
}
