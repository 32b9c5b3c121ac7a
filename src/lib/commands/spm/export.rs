//! `rs-spm export`: a map as a DNS zone (SRV and TXT records) for one
//! client, from `--map`, else the registry, else the map the site holds.

use crate::cli::spm::SpmCommand;
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spm::{self, ops, Client};
use crate::spool::Area;
use crate::time::Timestamp;

use super::{time_arg, usage, write_atomically};
use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    out: &mut Out,
    command: SpmCommand,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let SpmCommand::Export {
        zone,
        ns,
        ns_address,
        ttl,
        client: id,
        client_zone,
        function,
        map,
        at,
        out: file,
    } = command
    else {
        unreachable!("dispatched on export")
    };
    let at = time_arg("--at", &at)?.unwrap_or(now);
    let zone = spm::zone::domain("--zone", &zone).map_err(usage)?;
    let ns = ns
        .map(|n| spm::zone::domain("--ns", &n))
        .transpose()
        .map_err(usage)?;
    let ns_addresses = ns_address
        .iter()
        .map(|a| {
            a.parse().map_err(|_| {
                Error::usage(format!("--ns-address {a:?}: not an IPv4 or IPv6 address"))
            })
        })
        .collect::<Result<Vec<std::net::IpAddr>, Error>>()?;
    let export = spm::zone::Export {
        zone: &zone,
        ns: ns.as_deref(),
        ns_addresses: &ns_addresses,
        ttl,
    };
    export.check().map_err(usage)?;
    let (m, source) = match map {
        Some(path) => (ops::read_map(&path)?, path),
        None => {
            let spool = ctx.open_spool(now)?;
            let tmp = spool.dir(Area::Tmp);
            let place = ops::Place {
                root: spool.root(),
                tmp: &tmp,
            };
            ops::map_to_export(place, now)?
        }
    };
    let client = Client {
        id: id.as_deref(),
        zone: client_zone.as_deref(),
        function: function.as_deref(),
    };
    let text = spm::zone::export(&m, &client, &export, at).map_err(|error| Error::Map {
        source_name: source.display().to_string(),
        error,
    })?;
    match file {
        None => out.line(text.trim_end())?,
        Some(f) => {
            write_atomically(&f, text.as_bytes(), now)?;
            ctx.log(format!(
                "wrote {} (map revision {})",
                f.display(),
                m.revision
            ));
        }
    }
    Ok(ExitCode::Ok)
}
