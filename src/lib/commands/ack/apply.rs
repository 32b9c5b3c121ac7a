//! `rs-ack apply`: the acknowledgements in a directory (removable media)
//! applied, as `rs-relay import` would, and nothing else taken.

use std::path::PathBuf;

use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::media::{self, AfterImport, Select};
use crate::spool::Spool;
use crate::time::Timestamp;

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
    let report = media::import(spool, &from, Select::AcksOnly, after, now, &log)?;
    crate::commands::relay::print_report(ctx, out, &report, &from.display().to_string())?;
    Ok(crate::commands::relay::report_code(&report))
}
