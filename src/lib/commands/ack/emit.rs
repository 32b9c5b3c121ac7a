//! `rs-ack emit`: the acknowledgements owed to peers made into envelopes
//! (for one peer, when named), ready for the next run.

use serde_json::json;

use crate::ack;
use crate::error::{Error, ExitCode};
use crate::message::Name;
use crate::output::Out;
use crate::receive::ReceiveLock;
use crate::spool::Spool;
use crate::time::Timestamp;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    peer: Option<String>,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let peer = peer
        .map(|p| Name::new("--peer", p))
        .transpose()
        .map_err(|e| Error::usage(e.to_string()))?;
    let _lock = ReceiveLock::take(spool)?;
    let emitted = ack::emit(spool, peer.as_ref(), now)?;
    if ctx.json {
        out.json(&json!({"emitted": emitted.iter().map(|(p, n)| json!({"peer": p.as_str(), "acks": n})).collect::<Vec<_>>()}))?;
    } else {
        for (p, n) in &emitted {
            ctx.log(format!("{n} acknowledgement(s) ready for {p}"));
        }
    }
    Ok(ExitCode::Ok)
}
