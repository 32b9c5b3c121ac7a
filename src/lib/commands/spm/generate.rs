//! `rs-spm generate`: the map a client gets from the registry, as XML on
//! stdout or written to a file.

use std::path::Path;

use crate::cli::spm::ClientArgs;
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spm::{ops, xml, MapType};
use crate::spool::Area;
use crate::time::Timestamp;

use super::{client, usage, write_atomically};
use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    out: &mut Out,
    c: &ClientArgs,
    kind: u32,
    file: Option<&Path>,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let kind = MapType::from_number(kind).map_err(usage)?;
    let spool = ctx.open_spool(now)?;
    let tmp = spool.dir(Area::Tmp);
    let place = ops::Place {
        root: spool.root(),
        tmp: &tmp,
    };
    let map = ops::generate(place, &client(c, None), kind, now)?;
    let text = xml::map_to_xml(&map);
    match file {
        None => out.line(text.trim_end())?,
        Some(f) => {
            write_atomically(f, text.as_bytes(), now)?;
            ctx.log(format!(
                "wrote {} ({} entries, revision {})",
                f.display(),
                map.entries.len(),
                map.revision
            ));
        }
    }
    Ok(ExitCode::Ok)
}
