//! A map as a DNS zone (RFC 1035 master file), so that standard DNS
//! servers can serve it and standard tools inspect it.
//!
//! Every service valid now gets, under its sphere (which must lie in the
//! zone), the owner name `_SERVICE._tcp.vMAJOR-MINOR.SPHERE.`, holding:
//! - one SRV record per location, its priority the location's place in the
//!   order `rs-spm resolve` gives (0 for the first primary, then each
//!   backup one more); the locations of an `equivalent` entry share one
//!   priority with weight 1, so resolvers spread clients over them;
//! - one TXT record per location, self-describing, so a client that reads
//!   the zone needs nothing else: `"v=rs-spm1" "epoch=N" "priority=P"
//!   "target=NAME" "port=N" "scheme=https" "path=/rs"` and, when the entry
//!   has them, `"valid-from=TIME"` `"valid-until=TIME"`.
//!
//! A location known only by its address gets a target name of its own
//! below the owner (`lN._SERVICE...`, N counting from 1) with an A or AAAA
//! record. TTLs never
//! outlast an entry's validity. The SOA serial is the map's revision.
//! Entries for a partition of clients are exported only for the client
//! named (a zone has one answer for everybody).

use std::fmt::Write as _;
use std::net::IpAddr;

use super::resolve::{self, Query};
use super::{Client, Error, Map, Result};
use crate::time::Timestamp;

/// A domain name given for the zone or its name server, checked and in
/// lower case, without the final dot.
pub fn domain(what: &'static str, name: &str) -> Result<String> {
    super::dns_name(what, name.trim_end_matches('.'), true)
}

/// What to export.
#[derive(Clone, Debug)]
pub struct Export<'a> {
    /// The zone's origin (`provider.example`), as [`domain`] gives it.
    pub zone: &'a str,
    /// The zone's name server (default `ns.ZONE`), as [`domain`] gives it.
    pub ns: Option<&'a str>,
    /// Records live at most this long (seconds).
    pub ttl: u32,
}

/// A location's parts, as DNS names them.
struct Parts {
    target: String,
    address: Option<IpAddr>,
    port: u16,
    scheme: &'static str,
    path: String,
}

fn parts(l: &super::Location) -> Result<Parts> {
    if let Some(u) = &l.url {
        let url = url::Url::parse(u).map_err(|e| super::field("url", u, &e.to_string()))?;
        let (target, address) = match url.host() {
            // A name that goes into the zone as it is: a host name only.
            Some(url::Host::Domain(d)) => (super::dns_name("url", d, false)?, None),
            Some(url::Host::Ipv4(a)) => (String::new(), Some(IpAddr::V4(a))),
            Some(url::Host::Ipv6(a)) => (String::new(), Some(IpAddr::V6(a))),
            None => return Err(super::field("url", u, "no host")),
        };
        return Ok(Parts {
            target,
            address,
            port: url.port_or_known_default().unwrap_or(443),
            scheme: if url.scheme() == "http" {
                "http"
            } else {
                "https"
            },
            path: match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            },
        });
    }
    Ok(Parts {
        target: l.host.clone().unwrap_or_default().to_ascii_lowercase(),
        address: l.address,
        port: l.port.unwrap_or(443),
        scheme: "https",
        path: l.path.clone().unwrap_or_else(|| "/rs".into()),
    })
}

/// A TXT character-string: quoted, with `"` and `\` escaped (the map's
/// fields hold neither control characters nor spaces where it matters).
fn txt(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// The zone file for `map` as valid at `now`, for `client` (whose unset
/// fields select only the entries not partitioned by them).
pub fn export(map: &Map, client: &Client<'_>, x: &Export<'_>, now: Timestamp) -> Result<String> {
    let zone = x.zone;
    let ns = match x.ns {
        Some(n) => n.to_string(),
        None => format!("ns.{zone}"),
    };
    // A zone has one answer for everybody: a partitioned entry only for
    // the client it was asked for.
    let mut shown = map.clone();
    shown.entries.retain(|e| {
        (e.partition.clients.is_none() || client.id.is_some())
            && (e.partition.zone.is_none() || client.zone.is_some())
            && (e.partition.function.is_none() || client.function.is_some())
            && e.partition.admits(client)
    });
    let mut keys: Vec<super::ServiceKey> = shown
        .entries
        .iter()
        .filter(|e| e.valid.contains(now))
        .map(|e| e.key.clone())
        .collect();
    keys.sort();
    keys.dedup();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "; rs-spm export: map revision {} as valid at {now}",
        map.revision
    );
    let _ = writeln!(out, "$ORIGIN {zone}.");
    let _ = writeln!(out, "$TTL {}", x.ttl);
    let _ = writeln!(
        out,
        "@ IN SOA {ns}. hostmaster.{zone}. {} {} {} {} {}",
        map.revision % (1 << 32),
        x.ttl.max(60),
        (x.ttl / 2).max(30),
        x.ttl.saturating_mul(24).max(3600),
        x.ttl
    );
    let _ = writeln!(out, "@ IN NS {ns}.");
    let mut skipped = Vec::new();
    for key in &keys {
        if !in_zone(key.sphere.as_str(), zone) {
            skipped.push(key.to_string());
            continue;
        }
        if key.service.as_str().len() > 62 {
            return Err(super::field(
                "service",
                key.service.as_str(),
                "longer than a DNS label allows (62 characters after the underscore)",
            ));
        }
        let owner = format!(
            "_{}._tcp.v{}-{}.{}.",
            key.service.as_str().to_ascii_lowercase(),
            key.version.major,
            key.version.minor,
            key.sphere.as_str()
        );
        let found = resolve::resolve(
            &shown,
            &Query {
                service: &key.service,
                version: Some(key.version),
                sphere: Some(&key.sphere),
            },
            &Client {
                id: None,
                ..*client
            },
            now,
        );
        let mut priority = 0u16;
        let mut unnamed = 0;
        let mut i = 0;
        while i < found.len() {
            let entry = found[i].entry;
            // An equivalent entry's locations share one priority.
            let group = if entry.partition.equivalent {
                found[i..]
                    .iter()
                    .take_while(|r| std::ptr::eq(r.entry, entry))
                    .count()
            } else {
                1
            };
            for r in &found[i..i + group] {
                let p = parts(r.location)?;
                let ttl = match entry.valid.until {
                    Some(u) => u.since(now).as_secs().max(1).min(u64::from(x.ttl)) as u32,
                    None => x.ttl,
                };
                let target = if p.target.is_empty() {
                    unnamed += 1;
                    let name = format!("l{unnamed}.{owner}");
                    let kind = match p.address {
                        Some(IpAddr::V6(_)) => "AAAA",
                        _ => "A",
                    };
                    let _ = writeln!(
                        out,
                        "{name} {ttl} IN {kind} {}",
                        p.address.expect("a location without a host has an address")
                    );
                    name
                } else {
                    format!("{}.", p.target)
                };
                if let (Some(a), false) = (p.address, p.target.is_empty()) {
                    if in_zone(&p.target, zone) {
                        let kind = if a.is_ipv6() { "AAAA" } else { "A" };
                        let _ = writeln!(out, "{target} {ttl} IN {kind} {a}");
                    }
                }
                let weight = if entry.partition.equivalent { 1 } else { 0 };
                let _ = writeln!(
                    out,
                    "{owner} {ttl} IN SRV {priority} {weight} {} {target}",
                    p.port
                );
                let mut strings = vec![
                    "v=rs-spm1".to_string(),
                    format!("epoch={}", entry.epoch),
                    format!("priority={priority}"),
                    format!("target={}", target.trim_end_matches('.')),
                    format!("port={}", p.port),
                    format!("scheme={}", p.scheme),
                    format!("path={}", p.path),
                ];
                if let Some(f) = entry.valid.from {
                    strings.push(format!("valid-from={}", f.to_rfc3339()));
                }
                if let Some(u) = entry.valid.until {
                    strings.push(format!("valid-until={}", u.to_rfc3339()));
                }
                let _ = writeln!(
                    out,
                    "{owner} {ttl} IN TXT {}",
                    strings.iter().map(|s| txt(s)).collect::<Vec<_>>().join(" ")
                );
                if !entry.partition.equivalent {
                    priority = priority.saturating_add(1);
                }
            }
            if entry.partition.equivalent {
                priority = priority.saturating_add(1);
            }
            i += group;
        }
    }
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "; not in zone {zone}, not exported: {}",
            skipped.join("; ")
        );
    }
    if keys.len() == skipped.len() && !keys.is_empty() {
        return Err(Error::Map(format!(
            "no service of the map lies in zone {zone} (spheres: {})",
            skipped.join("; ")
        )));
    }
    Ok(out)
}
