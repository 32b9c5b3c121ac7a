//! `rs-relay control`: a control message (an action, or settings for
//! set-configuration as TOML) queued for a component.

use serde_json::json;

use crate::error::{Error, ExitCode};
use crate::output::Out;

use crate::commands::Context;

/// `control`: queues a control message for a component.
pub(super) fn run(
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
