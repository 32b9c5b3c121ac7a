//! `rs-spm publish`: a location of a service published in the registry;
//! prints the service's epoch (and why it changed).

use serde_json::json;

use crate::cli::spm::SpmCommand;
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spm::registry::Publication;
use crate::spm::{ops, Location, Partition, Validity};
use crate::spool::Area;
use crate::time::Timestamp;

use super::{key, time_arg};
use crate::commands::Context;

pub(super) fn run(
    ctx: &Context,
    out: &mut Out,
    command: SpmCommand,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let SpmCommand::Publish {
        service,
        host,
        address,
        port,
        path,
        url,
        priority,
        valid_from,
        valid_until,
        data,
        data_file,
        clients,
        zone,
        function,
        equivalent,
        lost_state,
    } = command
    else {
        unreachable!("dispatched on publish")
    };
    let key = key(&service)?;
    let data = match (data, data_file) {
        (Some(d), _) => Some(d),
        (None, Some(f)) => Some(std::fs::read_to_string(&f).map_err(|e| Error::Input {
            path: f.clone(),
            reason: e.to_string(),
        })?),
        (None, None) => None,
    };
    let publication = Publication {
        key: key.clone(),
        host: host.to_ascii_lowercase(),
        priority,
        location: Location {
            host: Some(host.clone()),
            address: address
                .as_deref()
                .map(|a| {
                    a.parse().map_err(|_| {
                        Error::usage(format!("--address {a:?}: not an IPv4 or IPv6 address"))
                    })
                })
                .transpose()?,
            port,
            path,
            url,
        },
        valid: Validity {
            from: time_arg("--valid-from", &valid_from)?,
            until: time_arg("--valid-until", &valid_until)?,
        },
        data,
        partition: Partition {
            clients,
            zone,
            function,
            equivalent,
        },
        published: now,
        withdrawn: false,
        epoch: 0,
    };
    let spool = ctx.open_spool(now)?;
    let tmp = spool.dir(Area::Tmp);
    let place = ops::Place {
        root: spool.root(),
        tmp: &tmp,
    };
    let (published, r) = ops::publish(place, publication, lost_state, now)?;
    if ctx.json {
        out.json(&json!({
            "service": key.service.as_str(), "version": key.version.to_string(),
            "sphere": key.sphere.as_str(), "host": host.to_ascii_lowercase(),
            "epoch": published.epoch, "epoch_changed": published.bumped,
            "revision": r.revision,
        }))?;
    } else {
        out.line(format!(
            "{key}: epoch {}{}",
            published.epoch,
            published
                .bumped
                .map(|why| format!(", changed: {why}"))
                .unwrap_or_default()
        ))?;
    }
    Ok(ExitCode::Ok)
}
