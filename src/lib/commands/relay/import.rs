//! `rs-relay import`: every message addressed to this site taken from a
//! directory (removable media written by `rs-queue export`).

use std::path::PathBuf;

use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::media::{self, AfterImport, Select};
use crate::receive::Report;
use crate::spool::Spool;
use crate::time::Timestamp;

use super::{print_report, report_code};
use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    from_keep: (PathBuf, bool),
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let from = from_keep.0.display().to_string();
    let report = take(ctx, spool, from_keep, Select::Everything, now)?;
    ctx.run_pending(spool, true);
    print_report(ctx, out, &report, &from)?;
    Ok(report_code(&report))
}

/// Takes what `select` picks from the directory `from` (removed once
/// taken, unless `keep`): the step `rs-relay import` and `rs-ack apply`
/// share.
pub(crate) fn take(
    ctx: &Context,
    spool: &Spool,
    (from, keep): (PathBuf, bool),
    select: Select,
    now: Timestamp,
) -> Result<Report, Error> {
    if !from.exists() {
        // A medium not mounted now, as an export to it would find: try
        // again once it is (75), as for writing.
        return Err(Error::Retry(Box::new(Error::Input {
            path: from,
            reason: "it does not exist: is the medium mounted? (try again once it is)".into(),
        })));
    }
    if !from.is_dir() {
        return Err(Error::Input {
            path: from,
            reason: "not a directory".into(),
        });
    }
    let after = if keep {
        AfterImport::Keep
    } else {
        AfterImport::Remove
    };
    let log = |s: String| ctx.log(s);
    Ok(media::import(spool, &from, select, after, now, &log)?)
}
