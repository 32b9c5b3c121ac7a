//! `rs-spm resolve`: a client's ordered locations for a service, valid
//! now (or `--at`), from `--map` or the map the site holds (with a
//! warning when that one is stale); exit 66 when none is valid.

use std::path::PathBuf;

use serde_json::json;

use crate::cli::spm::ClientArgs;
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spm::resolve::{self, Query};
use crate::spm::{fetch, ops, ServiceId, Sphere, Version};
use crate::spool::Spool;
use crate::time::Timestamp;

use super::{client, time_arg, usage};
use crate::commands::Context;

/// `service`: the service, and the version and sphere when given;
/// `(map, at)`: the map file and the time named, if any.
pub(super) fn run(
    ctx: &Context,
    out: &mut Out,
    (service, version, sphere): (&str, Option<&str>, Option<&str>),
    c: &ClientArgs,
    (map, at): (Option<PathBuf>, Option<String>),
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let service = ServiceId::new(service).map_err(usage)?;
    let version = version.map(Version::parse).transpose().map_err(usage)?;
    let sphere = sphere.map(Sphere::new).transpose().map_err(usage)?;
    let at = time_arg("--at", &at)?.unwrap_or(now);
    // The spool gives the default map and client ID; a map and a client
    // named on the command line need none.
    let spool = if map.is_none() || c.client.is_none() {
        Some(ctx.open_existing_spool(now)?)
    } else {
        None
    };
    let path = match (&map, &spool) {
        (Some(m), _) => m.clone(),
        (None, Some(s)) => fetch::map_path(s.root()),
        (None, None) => unreachable!("a spool is opened when no map is named"),
    };
    let m = ops::read_map(&path)?;
    if let (None, Some(s)) = (&map, &spool) {
        warn_if_stale(ctx, s, &path, m.revision, now);
    }
    let me = spool.as_ref().map(|s| s.config().component.to_string());
    let query = Query {
        service: &service,
        version,
        sphere: sphere.as_ref(),
    };
    let found = resolve::resolve(&m, &query, &client(c, me.as_deref()), at);
    if found.is_empty() {
        return Err(Error::Input {
            path,
            reason: format!(
                "no location of service {} is valid at {at} for this client",
                service.as_str()
            ),
        });
    }
    for r in &found {
        if ctx.json {
            out.json(&json!({
                "url": r.url, "service": r.entry.key.service.as_str(),
                "version": r.entry.key.version.to_string(),
                "sphere": r.entry.key.sphere.as_str(), "epoch": r.entry.epoch,
                "backup": r.backup, "host": r.location.host,
                "address": r.location.address.map(|a| a.to_string()),
                "port": r.location.port, "data": r.entry.data,
                "valid_from": r.entry.valid.from.map(|t| t.to_rfc3339()),
                "valid_until": r.entry.valid.until.map(|t| t.to_rfc3339()),
            }))?;
        } else {
            out.line(&r.url)?;
        }
    }
    Ok(ExitCode::Ok)
}

/// Warns when the map the site holds is stale, if the site fetches one
/// (a map URL is configured, or a fetch failed).
fn warn_if_stale(ctx: &Context, s: &Spool, path: &std::path::Path, revision: u64, now: Timestamp) {
    let status = fetch::status(s.root());
    let configured = s.config().spm.map_url.is_some();
    if !configured && status.last_error.is_none() {
        return;
    }
    if let Some(why) = status.stale(s.config().spm.refresh, now) {
        ctx.log(format!(
            "warning: the map {} (revision {revision}) is stale: {why}",
            path.display()
        ));
    }
}
