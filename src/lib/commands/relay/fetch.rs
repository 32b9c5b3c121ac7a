//! `rs-relay fetch`: the mails a mail server delivered into a Maildir
//! taken (new/ and cur/ opened without following a link).

use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::mail;

use super::{print_report, report_code};
use crate::commands::Context;

/// `rs-relay fetch`: the mails a mail server delivered into a Maildir.
pub(super) fn run(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    maildir: &std::path::Path,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    // new/ and cur/ are opened inside the Maildir without following a
    // link: one that is a link is refused, nothing read or moved.
    let opened = mail::Maildir::open(maildir).map_err(|e| Error::Input {
        path: e.path,
        reason: e.reason,
    })?;
    let log = |s: String| ctx.log(s);
    let fetched = mail::fetch(spool, &opened, now, &log)?;
    ctx.run_pending(spool, true);
    print_report(ctx, out, &fetched.report, &maildir.display().to_string())?;
    let code = if fetched.left > 0 {
        ExitCode::TempFail
    } else {
        ExitCode::Ok
    };
    Ok(code.merge(report_code(&fetched.report)))
}
