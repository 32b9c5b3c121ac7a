//! `rs-relay`: receive from any transport.

use serde_json::json;

use crate::cli::relay::{RelayArgs, RelayCommand};
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::media::{self, AfterImport, Select};
use crate::receive::{mail, Report};

use super::Context;

pub fn run(args: RelayArgs) -> Result<ExitCode, Error> {
    match args.command {
        // An MTA must never bounce what rs could not store: any failure
        // short of junk (which is quarantined) asks it to retry.
        RelayCommand::Receive => run_command(args).map_err(|e| Error::Retry(Box::new(e))),
        // A web server's caller did not get its answers when stdout closed.
        RelayCommand::Cgi => cgi(&args.common).map_err(|e| match e {
            Error::StdoutClosed => Error::Stdout(std::io::ErrorKind::BrokenPipe.into()),
            other => other,
        }),
        _ => run_command(args),
    }
}

/// `rs-relay cgi`: one request from a web server; every outcome is an
/// HTTP response on stdout.
fn cgi(common: &crate::cli::Common) -> Result<ExitCode, Error> {
    use crate::session::{cgi, Response};
    let ctx = Context::new("rs-relay", common)?;
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

/// `rs-relay serve`: the built-in server, until stopped.
fn serve(ctx: &Context, spool: crate::spool::Spool, listen: &str) -> Result<ExitCode, Error> {
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

fn run_command(args: RelayArgs) -> Result<ExitCode, Error> {
    let ctx = Context::new("rs-relay", &args.common)?;
    let now = ctx.clock.now();
    let spool = ctx.open_spool(now)?;
    let mut out = Out::new();
    match args.command {
        RelayCommand::Import { from, keep } => {
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
            let report = media::import(&spool, &from, Select::Everything, after, now, &log)?;
            print_report(&ctx, &mut out, &report, &from.display().to_string())?;
            Ok(report_code(&report))
        }
        RelayCommand::Receive => receive_stdin(&ctx, &spool, &mut out, now),
        RelayCommand::Fetch { maildir } => fetch(&ctx, &spool, &mut out, &maildir, now),
        RelayCommand::Serve { listen } => serve(&ctx, spool, &listen),
        RelayCommand::Cgi => cgi(&args.common),
    }
}

/// `rs-relay receive`: one mail on stdin, as an MTA's delivery pipe.
fn receive_stdin(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    let piped = mail::read(spool, &mut std::io::stdin().lock(), now)?;
    let log = |s: String| ctx.log(s);
    let report = mail::take(spool, piped.payload, "stdin", now, &log)?;
    print_report(ctx, out, &report, "stdin")?;
    // A mail left unread (no room to quarantine it) is the MTA's to keep.
    if report.skipped > 0 {
        return Ok(ExitCode::TempFail);
    }
    Ok(report_code(&report))
}

/// The exit status a receive run's report calls for: 75 when something is
/// to be retried (the source keeps it), 65 when entries were skipped unread.
pub fn report_code(r: &Report) -> ExitCode {
    let mut code = ExitCode::Ok;
    if r.skipped > 0 {
        code = code.merge(ExitCode::DataErr);
    }
    if r.retry > 0 {
        code = code.merge(ExitCode::TempFail);
    }
    code
}

/// `rs-relay fetch`: the mails a mail server delivered into a Maildir.
fn fetch(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    maildir: &std::path::Path,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    let new = maildir.join("new");
    if !new.is_dir() {
        return Err(Error::Input {
            path: new,
            reason: format!("not a directory (is {} a Maildir?)", maildir.display()),
        });
    }
    let log = |s: String| ctx.log(s);
    let fetched = mail::fetch(spool, maildir, now, &log)?;
    print_report(ctx, out, &fetched.report, &maildir.display().to_string())?;
    let code = if fetched.left > 0 {
        ExitCode::TempFail
    } else {
        ExitCode::Ok
    };
    Ok(code.merge(report_code(&fetched.report)))
}

/// What a receive did, as JSON (the schema `rs-relay --json` prints).
pub fn report_json(r: &Report) -> serde_json::Value {
    json!({
        "messages": r.messages,
        "delivered": r.delivered,
        "relayed": r.relayed,
        "duplicates": r.duplicates,
        "rejected": r.rejected,
        "retry": r.retry,
        "quarantined": r.quarantined,
        "skipped": r.skipped,
        "acks_passed_on": r.passed_on,
        "acks": {"discarded": r.acks.discarded, "rejected": r.acks.rejected, "recorded": r.acks.recorded, "unsigned": r.unsigned_acks},
    })
}

/// Prints what a receive did: JSON, or one line for people.
pub fn print_report(ctx: &Context, out: &mut Out, r: &Report, source: &str) -> Result<(), Error> {
    if ctx.json {
        let mut v = report_json(r);
        v["source"] = json!(source);
        return out.json(&v);
    }
    ctx.log(format!(
        "{source}: {} message(s): {} delivered, {} queued onward, {} duplicate(s), {} rejected, {} to retry, {} quarantined, {} skipped unread; acknowledgements: {} copies discarded, {} refused, {} recorded, {} passed on{}",
        r.messages, r.delivered, r.relayed, r.duplicates, r.rejected, r.retry, r.quarantined, r.skipped,
        r.acks.discarded, r.acks.rejected, r.acks.recorded, r.passed_on,
        if r.unsigned_acks > 0 { format!(", {} ignored (unsigned)", r.unsigned_acks) } else { String::new() }
    ));
    Ok(())
}
