//! `rs-relay`: receive from any transport.

use serde_json::json;

use crate::cli::relay::{RelayArgs, RelayCommand};
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::Report;
use crate::transport::dir::{self, AfterImport, Select};

use super::Context;

pub fn run(args: RelayArgs) -> Result<ExitCode, Error> {
    let ctx = Context::new("rs-relay", &args.common)?;
    let now = ctx.clock.now();
    let spool = ctx.open_spool(now)?;
    let mut out = Out::new();
    match args.command {
        RelayCommand::Import { from, keep } => {
            if !from.is_dir() {
                return Err(Error::new(
                    ExitCode::NoInput,
                    format!("cannot import from {}: not a directory", from.display()),
                ));
            }
            let after = if keep {
                AfterImport::Keep
            } else {
                AfterImport::Remove
            };
            let log = |s: String| ctx.log(s);
            let report = dir::import(&spool, &from, Select::Everything, after, now, &log)?;
            print_report(&ctx, &mut out, &report, &from.display().to_string())?;
            Ok(ExitCode::Ok)
        }
    }
}

/// Prints what a receive did: JSON, or one line for people.
pub fn print_report(ctx: &Context, out: &mut Out, r: &Report, source: &str) -> Result<(), Error> {
    if ctx.json {
        return out.json(&json!({
            "source": source,
            "messages": r.messages,
            "delivered": r.delivered,
            "relayed": r.relayed,
            "duplicates": r.duplicates,
            "rejected": r.rejected,
            "retry": r.retry,
            "quarantined": r.quarantined,
            "acks_passed_on": r.passed_on,
            "acks": {"discarded": r.acks.discarded, "rejected": r.acks.rejected, "recorded": r.acks.recorded},
        }));
    }
    ctx.log(format!(
        "{source}: {} message(s): {} delivered, {} queued onward, {} duplicate(s), {} rejected, {} to retry, {} quarantined; acknowledgements: {} copies discarded, {} refused, {} recorded, {} passed on",
        r.messages, r.delivered, r.relayed, r.duplicates, r.rejected, r.retry, r.quarantined,
        r.acks.discarded, r.acks.rejected, r.acks.recorded, r.passed_on
    ));
    Ok(())
}
