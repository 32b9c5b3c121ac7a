//! `rs-spm`: the service point map.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::spm::{ClientArgs, ServiceArgs, SpmArgs, SpmCommand};
use crate::config::MapSource;
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::spm::registry::{self, Publication, Registry};
use crate::spm::resolve::{self, Query};
use crate::spm::{
    self, fetch, generate, xml, Client, Location, MapType, Partition, ServiceId, ServiceKey,
    Sphere, Validity, Version,
};
use crate::spool::{Area, Spool};
use crate::time::Timestamp;

use super::Context;

/// A field given on the command line that is not as documented: exit 64,
/// the field named.
fn usage(e: spm::Error) -> Error {
    Error::usage(e.to_string())
}

fn map_error(source: &Path, error: spm::Error) -> Error {
    Error::Map {
        source_name: source.display().to_string(),
        error,
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

/// The registry, read under its lock, changed by `change`, written back.
fn with_registry<T>(
    spool: &Spool,
    now: Timestamp,
    change: impl FnOnce(&mut Registry) -> Result<T, Error>,
) -> Result<(T, Registry), Error> {
    let root = spool.root();
    let _lock = registry::Lock::take(root).map_err(|e| Error::Io {
        op: "lock",
        path: root.join("spm/registry.lock"),
        err: e,
    })?;
    let path = registry::path(root);
    let mut r = Registry::load(&path).map_err(|e| map_error(&path, e))?;
    let revision = r.revision;
    let out = change(&mut r)?;
    if r.revision != revision {
        r.save(&spool.dir(Area::Tmp), &path, now)
            .map_err(|e| map_error(&path, e))?;
    }
    Ok((out, r))
}

pub fn run(args: SpmArgs) -> Result<ExitCode, Error> {
    let ctx = Context::with_features("rs-spm", &args.common)?;
    let now = ctx.clock.now();
    let mut out = Out::new();
    match args.command {
        SpmCommand::Publish {
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
        } => {
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
                                Error::usage(format!(
                                    "--address {a:?}: not an IPv4 or IPv6 address"
                                ))
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
            let (published, r) = with_registry(&spool, now, |r| {
                r.publish(publication, lost_state).map_err(usage)
            })?;
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
        SpmCommand::Withdraw {
            host,
            service,
            version,
            sphere,
        } => {
            let key = match (service, version, sphere) {
                (Some(service), Some(version), Some(sphere)) => Some(key(&ServiceArgs {
                    service,
                    version,
                    sphere,
                })?),
                _ => None,
            };
            let host = host.to_ascii_lowercase();
            let spool = ctx.open_spool(now)?;
            let (n, r) = with_registry(&spool, now, |r| Ok(r.withdraw(&host, key.as_ref())))?;
            if ctx.json {
                out.json(&json!({"host": host, "withdrawn": n, "revision": r.revision}))?;
            } else {
                ctx.log(format!(
                    "{n} publication(s) of {host} withdrawn{}",
                    if n == 0 { " (it had none live)" } else { "" }
                ));
            }
            Ok(ExitCode::Ok)
        }
        SpmCommand::Load { host, clear } => {
            let host = host.to_ascii_lowercase();
            let spool = ctx.open_spool(now)?;
            let (changed, _) = with_registry(&spool, now, |r| Ok(r.set_loaded(&host, !clear)))?;
            ctx.log(format!(
                "{host} {} heavily loaded{}",
                if clear { "is not" } else { "is" },
                if changed { "" } else { " (already)" }
            ));
            Ok(ExitCode::Ok)
        }
        SpmCommand::List => {
            let spool = ctx.open_spool(now)?;
            let (_, r) = with_registry(&spool, now, |_| Ok(()))?;
            list(&ctx, &mut out, &r)?;
            Ok(ExitCode::Ok)
        }
        SpmCommand::Generate {
            client: c,
            kind,
            out: file,
        } => {
            let kind = MapType::from_number(kind).map_err(usage)?;
            let spool = ctx.open_spool(now)?;
            let (_, r) = with_registry(&spool, now, |_| Ok(()))?;
            let map = generate::generate(&r, &client(&c, None), kind, now)
                .map_err(|e| map_error(&registry::path(spool.root()), e))?;
            let text = xml::map_to_xml(&map);
            match file {
                None => out.line(text.trim_end())?,
                Some(f) => {
                    write_atomically(&f, text.as_bytes(), now)?;
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
        SpmCommand::Fetch { from, accept_older } => {
            let spool = ctx.open_spool(now)?;
            let config = spool.config();
            let source = match from {
                Some(f) => MapSource::parse(&f).map_err(|e| Error::usage(format!("--from {e}")))?,
                None => config.spm.map_url.clone().ok_or_else(|| {
                    Error::usage(format!(
                        "no map source: set [spm] map_url in {}, or give --from URL",
                        spool.config_path().display()
                    ))
                })?,
            };
            let me = config.component.to_string();
            match fetch::fetch(
                spool.root(),
                &spool.dir(Area::Tmp),
                &source,
                &me,
                accept_older,
                now,
            ) {
                Ok(f) => {
                    if ctx.json {
                        out.json(&json!({
                            "source": source.to_string(), "revision": f.revision,
                            "entries": f.entries, "previous": f.previous,
                            "changed": f.previous != Some(f.revision),
                        }))?;
                    } else if f.previous != Some(f.revision) || !ctx.quiet_when_idle() {
                        ctx.log(format!(
                            "map revision {} ({} entries) from {source}{}",
                            f.revision,
                            f.entries,
                            match f.previous {
                                Some(p) if p == f.revision => " (unchanged)".to_string(),
                                Some(p) => format!(" (was revision {p})"),
                                None => String::new(),
                            }
                        ));
                    }
                    Ok(ExitCode::Ok)
                }
                Err(e) => Err(fetch_error(spool.root(), e)),
            }
        }
        SpmCommand::Export {
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
        } => {
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
                Some(path) => (read_map(&path)?, path),
                None => {
                    let spool = ctx.open_spool(now)?;
                    let reg = registry::path(spool.root());
                    if reg.exists() {
                        let (_, r) = with_registry(&spool, now, |_| Ok(()))?;
                        let m = generate::generate(&r, &Client::default(), MapType::Standard, now)
                            .map_err(|e| map_error(&reg, e))?;
                        (m, reg)
                    } else {
                        let path = fetch::map_path(spool.root());
                        (read_map(&path)?, path)
                    }
                }
            };
            let text = spm::zone::export(
                &m,
                &Client {
                    id: id.as_deref(),
                    zone: client_zone.as_deref(),
                    function: function.as_deref(),
                },
                &export,
                at,
            )
            .map_err(|e| map_error(&source, e))?;
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
        SpmCommand::Resolve {
            service,
            version,
            sphere,
            client: c,
            map,
            at,
        } => {
            let service = ServiceId::new(&service).map_err(usage)?;
            let version = version
                .as_deref()
                .map(Version::parse)
                .transpose()
                .map_err(usage)?;
            let sphere = sphere
                .as_deref()
                .map(Sphere::new)
                .transpose()
                .map_err(usage)?;
            let at = time_arg("--at", &at)?.unwrap_or(now);
            // The spool gives the default map and client ID; a map and a
            // client named on the command line need none.
            let spool = if map.is_none() || c.client.is_none() {
                Some(ctx.open_spool(now)?)
            } else {
                None
            };
            let path = match (&map, &spool) {
                (Some(m), _) => m.clone(),
                (None, Some(s)) => fetch::map_path(s.root()),
                (None, None) => unreachable!("a spool is opened when no map is named"),
            };
            let m = read_map(&path)?;
            if let (None, Some(s)) = (&map, &spool) {
                let status = fetch::status(s.root());
                let configured = s.config().spm.map_url.is_some();
                if configured || status.last_error.is_some() {
                    if let Some(why) = status.stale(s.config().spm.refresh, now) {
                        ctx.log(format!(
                            "warning: the map {} (revision {}) is stale: {why}",
                            path.display(),
                            m.revision
                        ));
                    }
                }
            }
            let me = spool.as_ref().map(|s| s.config().component.to_string());
            let found = resolve::resolve(
                &m,
                &Query {
                    service: &service,
                    version,
                    sphere: sphere.as_ref(),
                },
                &client(&c, me.as_deref()),
                at,
            );
            if found.is_empty() {
                return Err(Error::Input {
                    path,
                    reason: format!(
                        "no location of service {} is valid at {at} for this client",
                        service.as_str()
                    ),
                });
            }
            for r in &found {
                if ctx.json {
                    out.json(&json!({
                        "url": r.url, "service": r.entry.key.service.as_str(),
                        "version": r.entry.key.version.to_string(),
                        "sphere": r.entry.key.sphere.as_str(), "epoch": r.entry.epoch,
                        "backup": r.backup, "host": r.location.host,
                        "address": r.location.address.map(|a| a.to_string()),
                        "port": r.location.port, "data": r.entry.data,
                        "valid_from": r.entry.valid.from.map(|t| t.to_rfc3339()),
                        "valid_until": r.entry.valid.until.map(|t| t.to_rfc3339()),
                    }))?;
                } else {
                    out.line(&r.url)?;
                }
            }
            Ok(ExitCode::Ok)
        }
    }
}

/// A map file, read (bounded) and checked.
fn read_map(path: &Path) -> Result<spm::Map, Error> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            std::io::Read::read_to_end(
                &mut std::io::Read::take(f, spm::limits::MAP_BYTES as u64 + 1),
                &mut bytes,
            )
        })
        .map_err(|e| Error::Input {
            path: path.to_path_buf(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "no map here yet (rs-spm fetch, or --map FILE)".into()
            } else {
                e.to_string()
            },
        })?;
    if bytes.len() > spm::limits::MAP_BYTES {
        return Err(map_error(
            path,
            spm::Error::TooLarge {
                what: "bytes of a map",
                limit: spm::limits::MAP_BYTES,
            },
        ));
    }
    xml::map_from_xml(&bytes).map_err(|e| map_error(path, e))
}

/// The command's error for a fetch that failed, saying what stays in use.
fn fetch_error(spool_dir: &Path, e: fetch::Failure) -> Error {
    let kept = match fetch::held(spool_dir) {
        Ok(Some(m)) => format!(
            "the map held (revision {}, {}) stays in use, stale",
            m.revision,
            fetch::status(spool_dir)
                .fetched
                .map(|t| format!("fetched {t}"))
                .unwrap_or_else(|| "never fetched".into())
        ),
        _ => "no map is held yet".into(),
    };
    match e {
        fetch::Failure::Unreachable {
            source_name,
            reason,
        } => Error::MapUnreachable {
            source_name,
            reason,
            kept,
        },
        fetch::Failure::Invalid { source_name, error } => Error::Map {
            source_name: format!("{source_name} (not taken; {kept})"),
            error,
        },
        fetch::Failure::Spool(e) => Error::Spool(e),
    }
}

/// Writes `bytes` to `path` through a temporary file beside it, fsynced
/// and renamed, then fsyncs the directory.
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

fn list(ctx: &Context, out: &mut Out, r: &Registry) -> Result<(), Error> {
    if !ctx.json {
        out.line(format!(
            "{:<16} {:<7} {:<24} {:>5}  {:<28} {:>4}  {:<9} LOCATION",
            "SERVICE", "VERSION", "SPHERE", "EPOCH", "HOST", "PRIO", "STATE"
        ))?;
    }
    for p in &r.publications {
        let epoch = r.epochs.get(&p.key).copied().unwrap_or(0);
        let state = if p.withdrawn {
            "withdrawn"
        } else if r.loaded.contains(&p.host) {
            "loaded"
        } else {
            "live"
        };
        if ctx.json {
            out.json(&json!({
                "service": p.key.service.as_str(), "version": p.key.version.to_string(),
                "sphere": p.key.sphere.as_str(), "epoch": epoch, "host": p.host,
                "priority": p.priority, "state": state, "url": p.location.url(),
                "published": p.published.to_rfc3339(),
                "valid_from": p.valid.from.map(|t| t.to_rfc3339()),
                "valid_until": p.valid.until.map(|t| t.to_rfc3339()),
                "clients": p.partition.clients, "zone": p.partition.zone,
                "function": p.partition.function, "equivalent": p.partition.equivalent,
            }))?;
        } else {
            out.line(format!(
                "{:<16} {:<7} {:<24} {:>5}  {:<28} {:>4}  {:<9} {}",
                p.key.service.as_str(),
                p.key.version.to_string(),
                p.key.sphere.as_str(),
                epoch,
                p.host,
                p.priority,
                state,
                p.location.url()
            ))?;
        }
    }
    Ok(())
}
