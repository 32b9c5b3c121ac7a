//! `rs-relay receive`: one mail on stdin, as an MTA's delivery pipe
//! (whatever keeps it from being taken asks the MTA to retry: exit 75).

use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::mail;

use super::{print_report, report_code};
use crate::commands::Context;

/// `rs-relay receive`: one mail on stdin, as an MTA's delivery pipe.
pub(super) fn run(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    let piped = mail::read(spool, &mut std::io::stdin().lock(), now)?;
    let log = |s: String| ctx.log(s);
    let report = mail::take(spool, piped.payload, "stdin", now, &log)?;
    ctx.run_pending(spool, true);
    print_report(ctx, out, &report, "stdin")?;
    // A mail left unread (no room to quarantine it) is the MTA's to keep.
    if report.skipped > 0 {
        return Ok(ExitCode::TempFail);
    }
    Ok(report_code(&report))
}
