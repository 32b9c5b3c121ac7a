//! `rs-spm load`: a host marked heavily loaded (or no longer, `--clear`).

use crate::error::{Error, ExitCode};
use crate::spm::ops;
use crate::spool::Area;
use crate::time::Timestamp;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    host: &str,
    clear: bool,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let host = host.to_ascii_lowercase();
    let spool = ctx.open_spool(now)?;
    let tmp = spool.dir(Area::Tmp);
    let place = ops::Place {
        root: spool.root(),
        tmp: &tmp,
    };
    let changed = ops::set_loaded(place, &host, !clear, now)?;
    ctx.log(format!(
        "{host} {} heavily loaded{}",
        if clear { "is not" } else { "is" },
        if changed { "" } else { " (already)" }
    ));
    Ok(ExitCode::Ok)
}
