//! `rs-ack`: acknowledgements and message status. One file per
//! subcommand, as in `cli::ack`; this one opens the spool and dispatches.

mod apply;
mod emit;
mod overdue;
mod status;
mod wait;

pub use status::status;

use crate::cli::ack::{AckArgs, AckCommand};
use crate::error::{Error, ExitCode};
use crate::output::Out;

use super::{Context, Linked};

pub fn run(args: AckArgs, linked: Linked) -> Result<ExitCode, Error> {
    let ctx = Context::with_features("rs-ack", &args.common, linked)?;
    let now = ctx.clock.now();
    let spool = match args.command {
        // What only reads never makes a spool.
        AckCommand::Status { .. } | AckCommand::Wait { .. } | AckCommand::Overdue => {
            ctx.open_existing_spool(now)?
        }
        _ => ctx.open_spool(now)?,
    };
    let mut out = Out::new();
    match args.command {
        AckCommand::Emit { peer } => emit::run(&ctx, &spool, &mut out, peer, now),
        AckCommand::Apply { from, keep } => apply::run(&ctx, &spool, &mut out, (from, keep), now),
        AckCommand::Status { id } => status::run(&ctx, &spool, &mut out, id, now),
        AckCommand::Wait {
            id,
            timeout,
            interval,
        } => wait::run(&ctx, &spool, &mut out, id, (&timeout, &interval)),
        AckCommand::Overdue => overdue::run(&ctx, &spool, &mut out, now),
    }
}
