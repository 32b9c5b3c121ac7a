//! `rs-ack apply`: the acknowledgements in a directory (removable media)
//! applied, as `rs-relay import` would, and nothing else taken.

use std::path::PathBuf;

use crate::commands::relay;
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::media::Select;
use crate::spool::Spool;
use crate::time::Timestamp;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    from_keep: (PathBuf, bool),
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let from = from_keep.0.display().to_string();
    let report = relay::import::take(ctx, spool, from_keep, Select::AcksOnly, now)?;
    relay::print_report(ctx, out, &report, &from)?;
    Ok(relay::report_code(&report))
}
