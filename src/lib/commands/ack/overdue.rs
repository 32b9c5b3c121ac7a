//! `rs-ack overdue`: the messages sent whose acknowledgement is overdue
//! (past their peer's ack_timeout), in send order.

use std::time::Duration;

use serde_json::json;

use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::queue::retry;
use crate::spool::{Area, Spool};
use crate::time::Timestamp;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let (sent, _) = spool.scan(Area::Sent)?;
    let mut rows: Vec<_> = sent
        .into_iter()
        .filter_map(|e| {
            let info = e.sent.clone()?;
            let timeout = spool
                .config()
                .peer(info.peer.as_str())
                .map_or(Duration::ZERO, |p| p.ack_timeout);
            retry::is_overdue(&info, timeout, now).then_some((e, info, timeout))
        })
        .collect();
    rows.sort_by_key(|(e, _, _)| e.name.send_order_key());
    for (e, info, timeout) in rows {
        let due = info.last_sent.saturating_add(timeout);
        if ctx.json {
            out.json(&json!({
                "id": e.name.id, "peer": info.peer.as_str(), "attempts": info.attempts,
                "last_sent": info.last_sent, "overdue_since": due, "precedence": e.name.precedence,
            }))?;
        } else {
            out.line(format!(
                "{} sent {} time(s) to {}, last at {}; acknowledgement overdue since {}",
                e.name.id, info.attempts, info.peer, info.last_sent, due
            ))?;
        }
    }
    Ok(ExitCode::Ok)
}
