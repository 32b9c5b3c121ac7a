//! `rs-relay import`: every message addressed to this site taken from a
//! directory (removable media written by `rs-queue export`).

use std::path::PathBuf;

use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::media::{self, AfterImport, Select};
use crate::spool::Spool;
use crate::time::Timestamp;

use super::{print_report, report_code};
use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    (from, keep): (PathBuf, bool),
    now: Timestamp,
) -> Result<ExitCode, Error> {
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
    let report = media::import(spool, &from, Select::Everything, after, now, &log)?;
    ctx.run_pending(spool, true);
    print_report(ctx, out, &report, &from.display().to_string())?;
    Ok(report_code(&report))
}
