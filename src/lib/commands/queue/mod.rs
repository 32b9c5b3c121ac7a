//! `rs-queue`: look at and manage the outbound queue. One file per
//! subcommand, as in `cli::queue`; this one opens the spool (except for
//! `init` and `seal`, which need none) and dispatches.

mod check;
mod delete;
mod due;
mod export;
mod flush;
mod hold;
mod init;
mod list;
mod prune;
mod seal;
mod show;
mod stats;
mod throttle;

use crate::cli::queue::{QueueArgs, QueueCommand};
use crate::error::{Error, ExitCode};
use crate::output::Out;

use super::{Context, Linked};

pub fn run(args: QueueArgs, linked: Linked) -> Result<ExitCode, Error> {
    let ctx = Context::with_features("rs-queue", &args.common, linked)?;
    let now = ctx.clock.now();
    let spool = match &args.command {
        QueueCommand::Init {
            site,
            component,
            group,
        } => return init::run(&ctx, site, component.as_deref(), group.as_deref(), now),
        QueueCommand::Seal { out, to } => return seal::run(out, to),
        // What only reads never makes a spool.
        QueueCommand::List { .. }
        | QueueCommand::Show { .. }
        | QueueCommand::Stats
        | QueueCommand::Due
        | QueueCommand::Check => ctx.open_existing_spool(now)?,
        _ => ctx.open_spool(now)?,
    };
    let mut out = Out::new();
    match args.command {
        QueueCommand::Init { .. } | QueueCommand::Seal { .. } => unreachable!("handled above"),
        QueueCommand::List { area } => list::run(&ctx, &spool, &mut out, area, now),
        QueueCommand::Show { id, raw, content } => {
            show::run(&ctx, &spool, &mut out, &id, raw, content)
        }
        QueueCommand::Stats => stats::run(&ctx, &spool, &mut out, now),
        QueueCommand::Hold { ids } => hold::run(&ctx, &spool, &ids, hold::Action::Hold, now),
        QueueCommand::Release { ids } => hold::run(&ctx, &spool, &ids, hold::Action::Release, now),
        QueueCommand::Delete { ids } => delete::run(&ctx, &spool, &ids, now),
        QueueCommand::Prune => prune::run(&ctx, &spool, &mut out, now),
        QueueCommand::Throttle {
            max_bytes_per_hour,
            max_bytes_per_day,
            max_messages_per_hour,
            max_messages_per_day,
            max_message_bytes,
            window,
            no_windows,
        } => {
            let sizes = [
                ("max_bytes_per_hour", max_bytes_per_hour),
                ("max_bytes_per_day", max_bytes_per_day),
                ("max_message_bytes", max_message_bytes),
            ];
            let counts = [
                ("max_messages_per_hour", max_messages_per_hour),
                ("max_messages_per_day", max_messages_per_day),
            ];
            let windows = if no_windows {
                Some(Vec::new())
            } else {
                (!window.is_empty()).then_some(window)
            };
            let changes = throttle::Changes {
                sizes: &sizes,
                counts: &counts,
                windows,
            };
            throttle::run(&ctx, &spool, &mut out, changes, now)
        }
        QueueCommand::Due => due::run(&ctx, &spool, &mut out, now),
        QueueCommand::Check => check::run(&ctx, &spool, &mut out, now),
        QueueCommand::Export { to, peer } => {
            export::run(&ctx, &spool, &mut out, &to, peer.as_deref())
        }
        QueueCommand::Flush { peer, force } => {
            flush::run(&ctx, &spool, &mut out, force, peer.as_deref())
        }
    }
}
