//! `rs-queue hold` and `rs-queue release`: the manual stop of all
//! sending, or single messages moved between the queue and hold/.

use crate::error::{Error, ExitCode};
use crate::spool::{Area, Spool};
use crate::time::Timestamp;

use crate::commands::Context;

/// Which of the two commands runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// `hold`: stop sending, or move queued messages to hold/.
    Hold,
    /// `release`: resume sending, or move held messages back.
    Release,
}

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    ids: &[String],
    action: Action,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let hold = action == Action::Hold;
    let mut locked = spool.lock(now)?;
    if ids.is_empty() {
        locked.set_held(hold, now)?;
        ctx.log(if hold {
            "sending stopped (rs-queue release resumes it)"
        } else {
            "sending resumed"
        });
        return Ok(ExitCode::Ok);
    }
    let mut code = ExitCode::Ok;
    for id in ids {
        let result = spool
            .find(id)
            .map_err(Error::from)
            .and_then(|e| match (hold, e.area) {
                (true, Area::Queue(_)) => Ok(Some(locked.move_entry(&e, Area::Hold)?)),
                (false, Area::Hold) => {
                    Ok(Some(locked.move_entry(&e, Area::Queue(e.name.precedence))?))
                }
                (true, Area::Hold) | (false, Area::Queue(_)) => Ok(None),
                (_, area) => Err(Error::WrongState {
                    id: id.to_string(),
                    state: area.state_word(),
                    action: if hold { "held" } else { "released" },
                }),
            });
        match result {
            Ok(Some(_)) => ctx.log(format!("{id} {}", if hold { "held" } else { "released" })),
            Ok(None) => ctx.log(format!(
                "{id} was already {}",
                if hold { "held" } else { "queued" }
            )),
            Err(e) => {
                ctx.log(format!("error: {e}"));
                code = code.merge(e.code());
            }
        }
    }
    Ok(code)
}
