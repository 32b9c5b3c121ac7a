//! `rs-queue throttle`: shows the throttle and what it counted; with
//! options, first writes the new limits and windows into `config.toml`
//! (checked as a whole before it replaces the file, durably).

use std::fs;

use serde_json::json;

use crate::config::{self, Size};
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spool::{durable, Area, Spool};
use crate::time::{Timestamp, Window};

use crate::commands::Context;

/// What the command line asks to change: each key of `[throttle]` with
/// the value typed (`none` removes it), and the windows (`Some(empty)`:
/// remove them all).
pub(super) struct Changes<'a> {
    pub sizes: &'a [(&'a str, Option<String>)],
    pub counts: &'a [(&'a str, Option<String>)],
    pub windows: Option<Vec<String>>,
}

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    changes: Changes<'_>,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let config = edit(ctx, spool, changes, now)?;
    if ctx.json {
        print_json(ctx, spool, out, &config, now)?;
    } else {
        print_text(ctx, spool, out, &config, now)?;
    }
    Ok(ExitCode::Ok)
}

/// Applies `changes` to `config.toml` and returns the configuration in
/// force after: the file is replaced only when its text changed and the
/// new text is a valid configuration.
fn edit(
    ctx: &Context,
    spool: &Spool,
    changes: Changes<'_>,
    now: Timestamp,
) -> Result<config::Config, Error> {
    let path = spool.config_path();
    let mut text = fs::read_to_string(&path).map_err(|e| Error::ConfigEdit {
        path: path.clone(),
        reason: format!("cannot read it: {e}"),
    })?;
    let original = text.clone();
    let edit = |text: &str, key: &str, value: Option<toml_edit::Value>| {
        config::edit(text, "throttle", key, value).map_err(|reason| Error::ConfigEdit {
            path: path.clone(),
            reason: reason.to_string(),
        })
    };
    for (key, value) in changes.sizes {
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
    for (key, value) in changes.counts {
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
    if let Some(ws) = changes.windows {
        for w in &ws {
            Window::parse(w)?;
        }
        let v = (!ws.is_empty())
            .then(|| toml_edit::Value::Array(ws.iter().map(|w| w.as_str()).collect()));
        text = edit(&text, "windows", v)?;
    }
    if text == original {
        return Ok(spool.config().clone());
    }
    let c = config::Config::parse(&text).map_err(|reason| Error::ConfigEdit {
        path: path.clone(),
        reason: reason.to_string(),
    })?;
    durable::write_durable(
        &spool.dir(Area::Tmp),
        spool.root(),
        config::FILE_NAME,
        text.as_bytes(),
        now.as_micros(),
    )?;
    ctx.log(format!("throttle updated in {}", path.display()));
    Ok(c)
}

fn print_json(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    config: &config::Config,
    now: Timestamp,
) -> Result<(), Error> {
    let t = &config.throttle;
    let sent = spool.throttle_sent().at(now, ctx.clock.utc_offset_secs());
    out.json(&json!({
        "max_bytes_per_hour": t.max_bytes_per_hour.map(|s| s.0),
        "max_bytes_per_day": t.max_bytes_per_day.map(|s| s.0),
        "max_messages_per_hour": t.max_messages_per_hour,
        "max_messages_per_day": t.max_messages_per_day,
        "max_message_bytes": t.max_message_bytes.map(|s| s.0),
        "windows": t.windows.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        "held": spool.is_held(),
        "sent": sent,
    }))
}

fn print_text(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    config: &config::Config,
    now: Timestamp,
) -> Result<(), Error> {
    let t = &config.throttle;
    let sent = spool.throttle_sent().at(now, ctx.clock.utc_offset_secs());
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
    ))
}
