//! `rs-relay db init|migrate|prune|status`: the shared PostgreSQL
//! state's schema, its memory of accepted IDs, and what it holds.

use serde_json::json;

use crate::error::{Error, ExitCode};
use crate::output::Out;

use crate::commands::Context;

/// `rs-relay db init|migrate|status`.
pub(super) fn run(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    command: crate::cli::relay::DbCommand,
) -> Result<ExitCode, Error> {
    use crate::cli::relay::DbCommand;
    let config = spool.config();
    match command {
        DbCommand::Init | DbCommand::Migrate => {
            let init = matches!(command, DbCommand::Init);
            let m = crate::shared::migrate(config, init)?;
            if ctx.json {
                out.json(&json!({"from": m.from, "to": m.to}))?;
            } else if m.from == m.to {
                out.line(format!("schema version {}: nothing to do", m.to))?;
            } else {
                out.line(format!("schema version {} -> {}", m.from, m.to))?;
            }
        }
        DbCommand::Prune => {
            let (n, horizon) = crate::shared::prune(config, ctx.clock.now())?;
            if ctx.json {
                out.json(&json!({"forgotten": n, "horizon": horizon.map(|t| t.to_rfc3339())}))?;
            } else {
                out.line(format!(
                    "forgot {n} accepted ID(s); messages created before {} are refused unless remembered",
                    horizon.map_or_else(|| "-".into(), |t| t.to_rfc3339())
                ))?;
            }
        }
        DbCommand::Status => {
            let s = crate::shared::status(config)?;
            if ctx.json {
                out.json(&serde_json::to_value(&s).expect("plain data"))?;
            } else {
                out.line(format!("schema version    {}", s.schema))?;
                out.line(format!("accepted IDs      {}", s.accepted))?;
                out.line(format!("learned routes    {}", s.routes))?;
                out.line(format!(
                    "back-channel      {} ({} awaiting acknowledgement)",
                    s.outbox, s.outbox_sent
                ))?;
                out.line(format!("acks owed         {}", s.acks))?;
                out.line(format!("dead              {}", s.dead))?;
            }
        }
    }
    Ok(ExitCode::Ok)
}
