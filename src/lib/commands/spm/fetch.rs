//! `rs-spm fetch`: the site's map fetched from its source (`--from`, else
//! `[spm] map_url`); a failure says what map stays in use.

use std::path::Path;

use serde_json::json;

use crate::config::MapSource;
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spm::fetch;
use crate::spool::Area;
use crate::time::Timestamp;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    out: &mut Out,
    from: Option<&str>,
    accept_older: bool,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let spool = ctx.open_spool(now)?;
    let config = spool.config();
    let source = match from {
        Some(f) => MapSource::parse(f).map_err(|e| Error::usage(format!("--from {e}")))?,
        // A configuration problem (78), not a usage error: the command
        // line was right, the configuration says no source.
        None => config
            .spm
            .map_url
            .clone()
            .ok_or_else(|| Error::ConfigEdit {
                path: spool.config_path(),
                reason: "no map source: set [spm] map_url there, or give --from URL".into(),
            })?,
    };
    let me = config.component.to_string();
    let f = fetch::fetch(
        spool.root(),
        &spool.dir(Area::Tmp),
        &source,
        &me,
        accept_older,
        now,
    )
    .map_err(|e| fetch_error(spool.root(), e))?;
    if ctx.json {
        out.json(&json!({
            "source": source.to_string(), "revision": f.revision,
            "entries": f.entries, "previous": f.previous,
            "changed": f.previous != Some(f.revision),
        }))?;
    } else if f.previous != Some(f.revision) || !ctx.quiet_when_idle() {
        ctx.log(format!(
            "map revision {} ({} entries) from {source}{}",
            f.revision,
            f.entries,
            match f.previous {
                Some(p) if p == f.revision => " (unchanged)".to_string(),
                Some(p) => format!(" (was revision {p})"),
                None => String::new(),
            }
        ));
    }
    Ok(ExitCode::Ok)
}

/// The command's error for a fetch that failed, saying what stays in use.
fn fetch_error(spool_dir: &Path, e: fetch::Failure) -> Error {
    let kept = match fetch::held(spool_dir) {
        Ok(Some(m)) => format!(
            "the map held (revision {}, {}) stays in use, stale",
            m.revision,
            fetch::status(spool_dir)
                .fetched
                .map(|t| format!("fetched {t}"))
                .unwrap_or_else(|| "never fetched".into())
        ),
        _ => "no map is held yet".into(),
    };
    match e {
        fetch::Failure::Unreachable {
            source_name,
            reason,
        } => Error::MapUnreachable {
            source_name,
            reason,
            kept,
        },
        fetch::Failure::Invalid { source_name, error } => Error::Map {
            source_name: format!("{source_name} (not taken; {kept})"),
            error,
        },
        fetch::Failure::Spool(e) => Error::Spool(e),
    }
}
