//! `rs-queue init`: creates a spool for a site and component, and says
//! where. Refuses a directory that already holds a spool (its
//! `config.toml` is never overwritten).

use serde_json::json;

use crate::error::{Error, ExitCode};
use crate::message::Name;
use crate::output::Out;
use crate::spool::Spool;
use crate::time::Timestamp;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    site: &str,
    component: Option<&str>,
    group: Option<&str>,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let dir = &ctx.spool_dir;
    if crate::spool::has_config(dir) {
        return Err(Error::SpoolExists { path: dir.clone() });
    }
    let usage = |e: crate::message::Error| Error::usage(e.to_string());
    let site = Name::new("--site", site).map_err(usage)?;
    let component = match component {
        Some(c) => Name::new("--component", c).map_err(usage)?,
        None => crate::spool::default_component(&site),
    };
    let spool = match Spool::create(dir, &site, &component, group, now) {
        Err(crate::spool::Error::Exists { path }) => return Err(Error::SpoolExists { path }),
        other => other?,
    };
    let mut out = Out::new();
    if ctx.json {
        out.json(
            &json!({"spool": spool.root(), "site": site.as_str(), "component": component.as_str()}),
        )?;
    } else {
        out.line(format!(
            "created spool {} for site {site}, component {component}",
            spool.root().display()
        ))?;
    }
    Ok(ExitCode::Ok)
}
