//! `rs-queue delete`: messages withdrawn to dead/ (reason `deleted`), or
//! a bulk transfer sent from here withdrawn with its data.

use crate::error::{Error, ExitCode};
use crate::spool::{DeadKind, Spool};
use crate::time::Timestamp;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    ids: &[String],
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let mut code = ExitCode::Ok;
    for id in ids {
        // A bulk transfer sent from here: its messages and its data.
        if let Some(what) = crate::bulk::sender::delete(spool, id, now)? {
            ctx.log(what);
            continue;
        }
        let mut locked = spool.lock(now)?;
        match spool.find(id) {
            Ok(e) => {
                locked.bury(
                    &e,
                    DeadKind::Deleted,
                    "deleted by the operator (rs-queue delete)",
                    now,
                )?;
                ctx.log(format!("{id} deleted (kept in dead/)"));
            }
            Err(e) => {
                let e = Error::from(e);
                ctx.log(format!("error: {e}"));
                code = code.merge(e.code());
            }
        }
    }
    Ok(code)
}
