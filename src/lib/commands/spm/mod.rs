//! `rs-spm`: the service point map. One file per subcommand, as in
//! `cli::spm`; each parses its arguments, calls `spm::ops` (or `spm`'s
//! modules), and prints. This file dispatches and holds what several
//! share: the arguments parsed alike, the map of the library's errors to
//! the command's, and the writing of an `--out` file.

mod export;
mod fetch;
mod generate;
mod list;
mod load;
mod publish;
mod resolve;
mod withdraw;

use std::path::{Path, PathBuf};

use crate::cli::spm::{ClientArgs, ServiceArgs, SpmArgs, SpmCommand};
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spm::{self, ops, Client, ServiceId, ServiceKey, Sphere, Version};
use crate::time::Timestamp;

use super::{Context, Linked};

pub fn run(args: SpmArgs, linked: Linked) -> Result<ExitCode, Error> {
    let ctx = Context::with_features("rs-spm", &args.common, linked)?;
    let now = ctx.clock.now();
    let mut out = Out::new();
    match args.command {
        command @ SpmCommand::Publish { .. } => publish::run(&ctx, &mut out, command, now),
        SpmCommand::Withdraw {
            host,
            service,
            version,
            sphere,
        } => withdraw::run(&ctx, &mut out, &host, (service, version, sphere), now),
        SpmCommand::Load { host, clear } => load::run(&ctx, &host, clear, now),
        SpmCommand::List => list::run(&ctx, &mut out, now),
        SpmCommand::Generate {
            client: c,
            kind,
            out: file,
        } => generate::run(&ctx, &mut out, &c, kind, file.as_deref(), now),
        SpmCommand::Fetch { from, accept_older } => {
            fetch::run(&ctx, &mut out, from.as_deref(), accept_older, now)
        }
        command @ SpmCommand::Export { .. } => export::run(&ctx, &mut out, command, now),
        SpmCommand::Resolve {
            service,
            version,
            sphere,
            client: c,
            map,
            at,
        } => resolve::run(
            &ctx,
            &mut out,
            (&service, version.as_deref(), sphere.as_deref()),
            &c,
            (map, at),
            now,
        ),
    }
}

/// A field given on the command line that is not as documented: exit 64,
/// the field named.
fn usage(e: spm::Error) -> Error {
    Error::usage(e.to_string())
}

impl From<ops::Error> for Error {
    fn from(e: ops::Error) -> Error {
        match e {
            ops::Error::Lock { path, err } => Error::Io {
                op: "lock",
                path,
                err,
            },
            ops::Error::File { path, error } => Error::Map {
                source_name: path.display().to_string(),
                error,
            },
            ops::Error::Unreadable { path, reason } => Error::Input { path, reason },
            ops::Error::Refused(e) => usage(e),
        }
    }
}

fn key(s: &ServiceArgs) -> Result<ServiceKey, Error> {
    Ok(ServiceKey {
        service: ServiceId::new(&s.service).map_err(usage)?,
        version: Version::parse(&s.version).map_err(usage)?,
        sphere: Sphere::new(&s.sphere).map_err(usage)?,
    })
}

fn time_arg(flag: &str, t: &Option<String>) -> Result<Option<Timestamp>, Error> {
    t.as_deref()
        .map(|t| {
            Timestamp::parse(t)
                .map_err(|_| Error::usage(format!("{flag} {t:?}: not an RFC 3339 time")))
        })
        .transpose()
}

fn client<'a>(c: &'a ClientArgs, default_id: Option<&'a str>) -> Client<'a> {
    Client {
        id: c.client.as_deref().or(default_id),
        zone: c.zone.as_deref(),
        function: c.function.as_deref(),
    }
}

/// Writes `bytes` to `path` (`--out`) through a temporary file beside it,
/// fsynced and renamed, then fsyncs the directory.
fn write_atomically(path: &Path, bytes: &[u8], now: Timestamp) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::usage(format!("--out {}: not a file name", path.display())))?
        .to_string_lossy()
        .into_owned();
    crate::spool::durable::write_durable(&dir, &dir, &name, bytes, now.as_micros())?;
    // Served by others (a web server, a name server): as the operator's
    // umask says, not private as the spool is.
    let mode = crate::spool::outside_mode(0o666);
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(|e| crate::spool::Error::io("set the mode of", path, e))?;
    Ok(())
}
