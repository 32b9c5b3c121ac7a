//! `rs-relay`: receive from any transport.

use serde_json::json;

use crate::cli::relay::{RelayArgs, RelayCommand};
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::media::{self, AfterImport, Select};
use crate::receive::{mail, Report};

use super::Context;

pub fn run(args: RelayArgs) -> Result<ExitCode, Error> {
    match args.command {
        // An MTA must never bounce what rs could not store: any failure
        // short of junk (which is quarantined) asks it to retry.
        RelayCommand::Receive => run_command(args).map_err(|e| Error::Retry(Box::new(e))),
        // A web server's caller did not get its answers when stdout closed.
        RelayCommand::Cgi => cgi(&args.common).map_err(|e| match e {
            Error::StdoutClosed => Error::Stdout(std::io::ErrorKind::BrokenPipe.into()),
            other => other,
        }),
        _ => run_command(args),
    }
}

/// `rs-relay cgi`: one request from a web server; every outcome is an
/// HTTP response on stdout.
fn cgi(common: &crate::cli::Common) -> Result<ExitCode, Error> {
    use crate::session::{cgi, Response};
    let ctx = Context::with_features("rs-relay", common)?;
    let log = |s: String| ctx.log(s);
    let now = ctx.clock.now();
    let resp = match ctx.open_spool(now) {
        Ok(spool) => cgi::respond(
            &spool,
            &cgi::Env::from_process(),
            &mut std::io::stdin().lock(),
            &ctx.clock,
            &log,
        ),
        Err(e) => {
            log(format!("error: {e}"));
            Response::text(503, "the spool cannot be opened now\n")
        }
    };
    let mut out = std::io::stdout().lock();
    cgi::write(&resp, &mut out)?;
    Ok(ExitCode::Ok)
}

/// `rs-relay rules` and `rs-relay rules test`.
fn rules(
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

/// `rs-relay serve`: the built-in server, until stopped.
fn serve(ctx: &Context, spool: crate::spool::Spool, listen: &str) -> Result<ExitCode, Error> {
    let prog = ctx.prog;
    let log = std::sync::Arc::new(move |s: String| crate::output::log(prog, s));
    crate::session::server::serve(spool, listen, ctx.clock, log, |addr, tls| {
        ctx.log(format!(
            "listening on {}://{addr}",
            if tls { "https" } else { "http" }
        ))
    })?;
    Ok(ExitCode::Ok)
}

fn run_command(args: RelayArgs) -> Result<ExitCode, Error> {
    let ctx = Context::with_features("rs-relay", &args.common)?;
    let now = ctx.clock.now();
    let spool = ctx.open_spool(now)?;
    let mut out = Out::new();
    match args.command {
        RelayCommand::Import { from, keep } => {
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
            let report = media::import(&spool, &from, Select::Everything, after, now, &log)?;
            ctx.run_pending(&spool, true);
            print_report(&ctx, &mut out, &report, &from.display().to_string())?;
            Ok(report_code(&report))
        }
        RelayCommand::Receive => receive_stdin(&ctx, &spool, &mut out, now),
        RelayCommand::Fetch { maildir } => fetch(&ctx, &spool, &mut out, &maildir, now),
        RelayCommand::Serve { listen } => serve(&ctx, spool, &listen),
        RelayCommand::Rules { command } => rules(&ctx, &spool, &mut out, command, now),
        RelayCommand::Silent { for_ } => silent(&ctx, &spool, &mut out, &for_, now),
        RelayCommand::Control {
            component,
            action,
            set,
        } => control(&ctx, &spool, &mut out, &component, &action, &set, now),
        RelayCommand::Cgi => cgi(&args.common),
        RelayCommand::Db { command } => db(&ctx, &spool, &mut out, command),
    }
}

/// `rs-relay db init|migrate|status`.
fn db(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    command: crate::cli::relay::DbCommand,
) -> Result<ExitCode, Error> {
    use crate::cli::relay::DbCommand;
    let config = spool.config();
    match command {
        DbCommand::Init | DbCommand::Migrate => {
            let init = matches!(command, DbCommand::Init);
            let m = crate::shared::migrate(config, init)?;
            if ctx.json {
                out.json(&json!({"from": m.from, "to": m.to}))?;
            } else if m.from == m.to {
                out.line(format!("schema version {}: nothing to do", m.to))?;
            } else {
                out.line(format!("schema version {} -> {}", m.from, m.to))?;
            }
        }
        DbCommand::Prune => {
            let (n, horizon) = crate::shared::prune(config, ctx.clock.now())?;
            if ctx.json {
                out.json(&json!({"forgotten": n, "horizon": horizon.map(|t| t.to_rfc3339())}))?;
            } else {
                out.line(format!(
                    "forgot {n} accepted ID(s); messages created before {} are refused unless remembered",
                    horizon.map_or_else(|| "-".into(), |t| t.to_rfc3339())
                ))?;
            }
        }
        DbCommand::Status => {
            let s = crate::shared::status(config)?;
            if ctx.json {
                out.json(&serde_json::to_value(&s).expect("plain data"))?;
            } else {
                out.line(format!("schema version    {}", s.schema))?;
                out.line(format!("accepted IDs      {}", s.accepted))?;
                out.line(format!("learned routes    {}", s.routes))?;
                out.line(format!(
                    "back-channel      {} ({} awaiting acknowledgement)",
                    s.outbox, s.outbox_sent
                ))?;
                out.line(format!("acks owed         {}", s.acks))?;
                out.line(format!("dead              {}", s.dead))?;
            }
        }
    }
    Ok(ExitCode::Ok)
}

/// `rs-relay receive`: one mail on stdin, as an MTA's delivery pipe.
fn receive_stdin(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    let piped = mail::read(spool, &mut std::io::stdin().lock(), now)?;
    let log = |s: String| ctx.log(s);
    let report = mail::take(spool, piped.payload, "stdin", now, &log)?;
    ctx.run_pending(spool, true);
    print_report(ctx, out, &report, "stdin")?;
    // A mail left unread (no room to quarantine it) is the MTA's to keep.
    if report.skipped > 0 {
        return Ok(ExitCode::TempFail);
    }
    Ok(report_code(&report))
}

/// The exit status a receive run's report calls for: 75 when something is
/// to be retried (the source keeps it), 65 when entries were skipped unread.
pub fn report_code(r: &Report) -> ExitCode {
    let mut code = ExitCode::Ok;
    if r.skipped > 0 {
        code = code.merge(ExitCode::DataErr);
    }
    if r.retry > 0 {
        code = code.merge(ExitCode::TempFail);
    }
    code
}

/// `rs-relay fetch`: the mails a mail server delivered into a Maildir.
fn fetch(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    maildir: &std::path::Path,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    // new/ and cur/ are opened inside the Maildir without following a
    // link: one that is a link is refused, nothing read or moved.
    let opened = mail::Maildir::open(maildir).map_err(|e| Error::Input {
        path: e.path,
        reason: e.reason,
    })?;
    let log = |s: String| ctx.log(s);
    let fetched = mail::fetch(spool, &opened, now, &log)?;
    ctx.run_pending(spool, true);
    print_report(ctx, out, &fetched.report, &maildir.display().to_string())?;
    let code = if fetched.left > 0 {
        ExitCode::TempFail
    } else {
        ExitCode::Ok
    };
    Ok(code.merge(report_code(&fetched.report)))
}

/// What a receive did, as JSON (the schema `rs-relay --json` prints).
pub fn report_json(r: &Report) -> serde_json::Value {
    json!({
        "messages": r.messages,
        "delivered": r.delivered,
        "relayed": r.relayed,
        "duplicates": r.duplicates,
        "rejected": r.rejected,
        "retry": r.retry,
        "quarantined": r.quarantined,
        "refused": r.refused,
        "skipped": r.skipped,
        "discarded": r.discarded,
        "diverted": r.diverted,
        "aggregated": r.aggregated,
        "by_rule": r.by_rule,
        "acks_passed_on": r.passed_on,
        "acks": {"discarded": r.acks.discarded, "rejected": r.acks.rejected, "recorded": r.acks.recorded, "unsigned": r.unsigned_acks},
    })
}

/// Prints what a receive did: JSON, or one line for people.
pub fn print_report(ctx: &Context, out: &mut Out, r: &Report, source: &str) -> Result<(), Error> {
    if ctx.json {
        let mut v = report_json(r);
        v["source"] = json!(source);
        return out.json(&v);
    }
    ctx.log(format!(
        "{source}: {} message(s): {} delivered, {} queued onward, {} duplicate(s), {} rejected, {} discarded by rules, {} to retry, {} quarantined, {} skipped unread{}; acknowledgements: {} copies discarded, {} refused, {} recorded, {} passed on{}",
        r.messages, r.delivered, r.relayed, r.duplicates, r.rejected, r.discarded, r.retry, r.quarantined, r.skipped,
        if r.refused > 0 { format!(", {} refused for who made or carried it (kept in quarantine)", r.refused) } else { String::new() },
        r.acks.discarded, r.acks.rejected, r.acks.recorded, r.passed_on,
        if r.unsigned_acks > 0 { format!(", {} ignored (unsigned)", r.unsigned_acks) } else { String::new() }
    ));
    Ok(())
}

/// `silent`: the components not heard from for at least `for_`.
fn silent(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    for_: &str,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    let d = crate::time::parse_duration(for_).map_err(|e| Error::usage(format!("--for {e}")))?;
    let quiet: Vec<crate::infra::Heard> = crate::infra::heard(spool)
        .into_iter()
        .filter(|h| h.at <= now && now.since(h.at) >= d)
        .collect();
    if !ctx.json {
        out.line(format!(
            "{:<32} {:<28} {:>10}  {:<24} REGISTERED",
            "COMPONENT", "LAST HEARD", "SILENT", "VIA"
        ))?;
    }
    for h in &quiet {
        let silent_for = crate::time::format_duration(now.since(h.at));
        if ctx.json {
            out.json(&json!({
                "component": h.component, "last_heard": h.at.to_rfc3339(),
                "silent_seconds": now.since(h.at).as_secs(), "via": h.via,
                "outbound": h.outbound,
                "registered": h.registered.map(|t| t.to_rfc3339()),
            }))?;
        } else {
            out.line(format!(
                "{:<32} {:<28} {:>10}  {:<24} {}",
                h.component,
                h.at.to_rfc3339(),
                silent_for,
                h.via,
                h.registered
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "-".into())
            ))?;
        }
    }
    Ok(ExitCode::Ok)
}

/// `control`: queues a control message for a component.
fn control(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    component: &str,
    action: &str,
    set: &[String],
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    let to = crate::message::Name::new("COMPONENT", component)
        .map_err(|e| Error::usage(e.to_string()))?;
    if !crate::infra::ACTIONS.contains(&action) {
        return Err(Error::usage(format!(
            "{action:?} is not a control action (use {})",
            crate::infra::ACTIONS.join(", ")
        )));
    }
    if (action == "set-configuration") == set.is_empty() {
        return Err(Error::usage(
            "--set goes with set-configuration, and set-configuration needs at least one --set",
        ));
    }
    // TABLE.KEY=VALUE into a TOML document, each value parsed as TOML.
    let mut doc = toml_edit::DocumentMut::new();
    for s in set {
        let (path, value) = s
            .split_once('=')
            .ok_or_else(|| Error::usage(format!("--set {s:?}: use TABLE.KEY=VALUE")))?;
        let (table, key) = path
            .trim()
            .split_once('.')
            .ok_or_else(|| Error::usage(format!("--set {s:?}: use TABLE.KEY=VALUE")))?;
        let v: toml_edit::Value = value.trim().parse().map_err(|e| {
            Error::usage(format!(
                "--set {s:?}: the value is not TOML ({e}); quote strings: '\"10 MiB\"'"
            ))
        })?;
        doc.entry(table)
            .or_insert(toml_edit::table())
            .as_table_mut()
            .ok_or_else(|| Error::usage(format!("--set {s:?}: {table} is not a table")))?
            .insert(key, toml_edit::Item::Value(v));
    }
    let log = |s: String| ctx.log(s);
    let id = crate::infra::send_control(spool, &to, action, &doc.to_string(), now, &log)?;
    if ctx.json {
        out.json(&json!({"id": id.as_str(), "component": component, "action": action}))?;
    } else {
        out.line(id.as_str())?;
    }
    Ok(ExitCode::Ok)
}
