//! `rs-queue prune`: expired outbound messages moved to dead/.

use serde_json::json;

use crate::error::{Error, ExitCode};
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
