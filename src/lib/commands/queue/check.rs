//! `rs-queue check`: every outbound file parsed; those that do not hold
//! the message their name promises are quarantined (exit 65).

use serde_json::json;

use crate::error::{Error, ExitCode};
use crate::message::stream;
use crate::output::Out;
use crate::spool::Spool;
use crate::time::Timestamp;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    now: Timestamp,
) -> Result<ExitCode, Error> {
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
