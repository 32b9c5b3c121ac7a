//! `rs-relay cgi`: one request from a web server answered (the session
//! layer decides); every outcome, a spool that cannot be opened too, is an
//! HTTP response on stdout.

use crate::error::{Error, ExitCode};

use crate::commands::{Context, Linked};

/// `rs-relay cgi`: one request from a web server; every outcome is an
/// HTTP response on stdout.
pub(super) fn run(common: &crate::cli::Common, linked: Linked) -> Result<ExitCode, Error> {
    use crate::session::{cgi, Response};
    let ctx = Context::with_features("rs-relay", common, linked)?;
    let log = |s: String| ctx.log(s);
    let now = ctx.clock.now();
    let resp = match ctx.open_spool(now) {
        Ok(spool) => cgi::respond(
            &spool,
            &cgi::Env::from_process(),
            &mut std::io::stdin().lock(),
            &ctx.clock,
            &log,
        ),
        Err(e) => {
            log(format!("error: {e}"));
            Response::text(503, "the spool cannot be opened now\n")
        }
    };
    let mut out = std::io::stdout().lock();
    cgi::write(&resp, &mut out)?;
    Ok(ExitCode::Ok)
}
