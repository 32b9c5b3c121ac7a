//! `rs-spm list`: the registry's publications, with each service's epoch
//! and each host's state (live, loaded, withdrawn).

use serde_json::json;

use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spm::ops;
use crate::spool::Area;
use crate::time::Timestamp;

use crate::commands::Context;

pub(super) fn run(ctx: &Context, out: &mut Out, now: Timestamp) -> Result<ExitCode, Error> {
    let spool = ctx.open_existing_spool(now)?;
    let tmp = spool.dir(Area::Tmp);
    let place = ops::Place {
        root: spool.root(),
        tmp: &tmp,
    };
    let r = ops::registry(place, now)?;
    if !ctx.json {
        out.line(format!(
            "{:<16} {:<7} {:<24} {:>5}  {:<28} {:>4}  {:<9} LOCATION",
            "SERVICE", "VERSION", "SPHERE", "EPOCH", "HOST", "PRIO", "STATE"
        ))?;
    }
    for p in &r.publications {
        let epoch = r.epochs.get(&p.key).copied().unwrap_or(0);
        let state = if p.withdrawn {
            "withdrawn"
        } else if r.loaded.contains(&p.host) {
            "loaded"
        } else {
            "live"
        };
        if ctx.json {
            out.json(&json!({
                "service": p.key.service.as_str(), "version": p.key.version.to_string(),
                "sphere": p.key.sphere.as_str(), "epoch": epoch, "host": p.host,
                "priority": p.priority, "state": state, "url": p.location.url(),
                "published": p.published.to_rfc3339(),
                "valid_from": p.valid.from.map(|t| t.to_rfc3339()),
                "valid_until": p.valid.until.map(|t| t.to_rfc3339()),
                "clients": p.partition.clients, "zone": p.partition.zone,
                "function": p.partition.function, "equivalent": p.partition.equivalent,
            }))?;
        } else {
            out.line(format!(
                "{:<16} {:<7} {:<24} {:>5}  {:<28} {:>4}  {:<9} {}",
                p.key.service.as_str(),
                p.key.version.to_string(),
                p.key.sphere.as_str(),
                epoch,
                p.host,
                p.priority,
                state,
                p.location.url()
            ))?;
        }
    }
    Ok(ExitCode::Ok)
}
