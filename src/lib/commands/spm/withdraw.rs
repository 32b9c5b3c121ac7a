//! `rs-spm withdraw`: what a host publishes withdrawn from the registry
//! (one service's publications, when the service is named in full).

use serde_json::json;

use crate::cli::spm::ServiceArgs;
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spm::ops;
use crate::spool::Area;
use crate::time::Timestamp;

use super::key;
use crate::commands::Context;

/// `service`: the service, version and sphere given (all three or none).
pub(super) fn run(
    ctx: &Context,
    out: &mut Out,
    host: &str,
    service: (Option<String>, Option<String>, Option<String>),
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let key = match service {
        (Some(service), Some(version), Some(sphere)) => Some(key(&ServiceArgs {
            service,
            version,
            sphere,
        })?),
        _ => None,
    };
    let host = host.to_ascii_lowercase();
    let spool = ctx.open_spool(now)?;
    let tmp = spool.dir(Area::Tmp);
    let place = ops::Place {
        root: spool.root(),
        tmp: &tmp,
    };
    let (n, r) = ops::withdraw(place, &host, key.as_ref(), now)?;
    if ctx.json {
        out.json(&json!({"host": host, "withdrawn": n, "revision": r.revision}))?;
    } else {
        ctx.log(format!(
            "{n} publication(s) of {host} withdrawn{}",
            if n == 0 { " (it had none live)" } else { "" }
        ));
    }
    Ok(ExitCode::Ok)
}
