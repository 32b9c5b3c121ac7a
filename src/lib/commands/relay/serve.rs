//! `rs-relay serve`: the built-in HTTP(S) server, until stopped.

use crate::error::{Error, ExitCode};

use crate::commands::Context;

/// `rs-relay serve`: the built-in server, until stopped.
pub(super) fn run(
    ctx: &Context,
    spool: crate::spool::Spool,
    listen: &str,
) -> Result<ExitCode, Error> {
    let prog = ctx.prog;
    let log = std::sync::Arc::new(move |s: String| crate::output::log(prog, s));
    crate::session::server::serve(spool, listen, ctx.clock, log, |addr, tls| {
        ctx.log(format!(
            "listening on {}://{addr}",
            if tls { "https" } else { "http" }
        ))
    })?;
    Ok(ExitCode::Ok)
}
