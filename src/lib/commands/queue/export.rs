//! `rs-queue export`: one sending cycle into a directory (removable
//! media) instead of over the routes; printed as `flush` prints.

use std::path::Path;

use crate::error::{Error, ExitCode};
use crate::outbound::Via;
use crate::output::Out;
use crate::spool::Spool;

use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    spool: &Spool,
    out: &mut Out,
    to: &Path,
    only: Option<&str>,
) -> Result<ExitCode, Error> {
    super::flush::send(ctx, spool, out, Via::Export(to), only)
}
