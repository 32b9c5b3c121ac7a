//! `rs-relay`: receive from any transport, and the relay's own tools.
//! One file per subcommand, as in `cli::relay`; this one dispatches, and
//! holds how every receive is reported (its JSON, its line, its status).

mod cgi;
mod control;
mod db;
mod fetch;
pub(crate) mod import;
mod receive;
mod rules;
mod serve;
mod silent;

use serde_json::json;

use crate::cli::relay::{RelayArgs, RelayCommand};
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::Report;

use super::{Context, Linked};

pub fn run(args: RelayArgs, linked: Linked) -> Result<ExitCode, Error> {
    match args.command {
        // An MTA must never bounce what rs could not store: any failure
        // short of junk (which is quarantined) asks it to retry.
        RelayCommand::Receive => run_command(args, linked).map_err(|e| Error::Retry(Box::new(e))),
        // A web server's caller did not get its answers when stdout closed.
        RelayCommand::Cgi => cgi::run(&args.common, linked).map_err(|e| match e {
            Error::StdoutClosed => Error::Stdout(std::io::ErrorKind::BrokenPipe.into()),
            other => other,
        }),
        _ => run_command(args, linked),
    }
}

fn run_command(args: RelayArgs, linked: Linked) -> Result<ExitCode, Error> {
    let ctx = Context::with_features("rs-relay", &args.common, linked)?;
    let now = ctx.clock.now();
    let spool = match args.command {
        // What only reads never makes a spool.
        RelayCommand::Silent { .. } => ctx.open_existing_spool(now)?,
        _ => ctx.open_spool(now)?,
    };
    let mut out = Out::new();
    match args.command {
        RelayCommand::Import { from, keep } => {
            import::run(&ctx, &spool, &mut out, (from, keep), now)
        }
        RelayCommand::Receive => receive::run(&ctx, &spool, &mut out, now),
        RelayCommand::Fetch { maildir } => fetch::run(&ctx, &spool, &mut out, &maildir, now),
        RelayCommand::Serve { listen } => serve::run(&ctx, spool, &listen),
        RelayCommand::Rules { command } => rules::run(&ctx, &spool, &mut out, command, now),
        RelayCommand::Silent { for_ } => silent::run(&ctx, &spool, &mut out, &for_, now),
        RelayCommand::Control {
            component,
            action,
            set,
        } => control::run(&ctx, &spool, &mut out, &component, &action, &set, now),
        RelayCommand::Cgi => cgi::run(&args.common, linked),
        RelayCommand::Db { command } => db::run(&ctx, &spool, &mut out, command),
    }
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
        "refused": r.refused,
        "skipped": r.skipped,
        "discarded": r.discarded,
        "diverted": r.diverted,
        "aggregated": r.aggregated,
        "by_rule": r.by_rule,
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
        "{source}: {} message(s): {} delivered, {} queued onward, {} duplicate(s), {} rejected, {} discarded by rules, {} to retry, {} quarantined, {} skipped unread{}; acknowledgements: {} copies discarded, {} refused, {} recorded, {} passed on{}",
        r.messages, r.delivered, r.relayed, r.duplicates, r.rejected, r.discarded, r.retry, r.quarantined, r.skipped,
        if r.refused > 0 { format!(", {} refused for who made or carried it (kept in quarantine)", r.refused) } else { String::new() },
        r.acks.discarded, r.acks.rejected, r.acks.recorded, r.passed_on,
        if r.unsigned_acks > 0 { format!(", {} ignored (unsigned)", r.unsigned_acks) } else { String::new() }
    ));
    Ok(())
}
