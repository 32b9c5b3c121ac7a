//! `rs-relay silent`: the components not heard from for at least a
//! given time, with when and how they were last heard.

use serde_json::json;

use crate::error::{Error, ExitCode};
use crate::output::Out;

use crate::commands::Context;

/// `silent`: the components not heard from for at least `for_`.
pub(super) fn run(
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
