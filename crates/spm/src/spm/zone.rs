//! A map as a DNS zone (RFC 1035 master file), so that standard DNS
//! servers (knot, BIND with its default checks) load it as it is and
//! standard tools inspect it.
//!
//! The apex holds the SOA (its serial the map's revision) and one NS
//! record. A name server inside the zone (the default, `ns.ZONE`) needs an
//! address there: it gets an A or AAAA record per address given (BIND
//! refuses a zone whose in-zone name server has none); one outside the
//! zone gets none (its address belongs to its own zone).
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
//! A location whose host name lies in the zone and has an address gets an
//! A or AAAA record at that name. A location known only by its address
//! gets a host name of its own, `lN.SERVICE.vMAJOR-MINOR.SPHERE.` (N
//! counting from 1 per service; letters, digits and hyphens only, as
//! BIND's check-names wants of an address record's owner and of an SRV
//! target), with its A or AAAA record. TTLs never outlast an entry's
//! validity. Entries for a partition of clients are exported only for the
//! client named (a zone has one answer for everybody). A name longer than
//! DNS allows, or a TXT string over 255 bytes, refuses the export.

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
    /// The name server's addresses: needed when it lies in the zone,
    /// refused when it does not.
    pub ns_addresses: &'a [IpAddr],
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

/// A TXT record's character-strings: each at most 255 bytes (RFC 1035).
fn txt_strings(owner: &str, strings: &[String]) -> Result<String> {
    if let Some(long) = strings.iter().find(|s| s.len() > 255) {
        return Err(super::field(
            "TXT string",
            long,
            &format!("longer than a DNS TXT string allows (255 bytes) at {owner}"),
        ));
    }
    Ok(strings.iter().map(|s| txt(s)).collect::<Vec<_>>().join(" "))
}

/// Checks that `name` (with its final dot) fits in DNS: 253 bytes.
fn fits(what: &'static str, name: &str) -> Result<()> {
    if name.trim_end_matches('.').len() > 253 {
        return Err(super::field(
            what,
            name,
            "longer than a DNS name allows (253 bytes): use a shorter sphere or service ID",
        ));
    }
    Ok(())
}

fn address_kind(a: &IpAddr) -> &'static str {
    if a.is_ipv6() {
        "AAAA"
    } else {
        "A"
    }
}

impl Export<'_> {
    /// The name server's name (default `ns.ZONE`).
    pub fn ns_name(&self) -> String {
        match self.ns {
            Some(n) => n.to_string(),
            None => format!("ns.{}", self.zone),
        }
    }

    /// Checks the name server against the zone: inside, it needs an
    /// address; outside, it takes none. The error names the remedy.
    pub fn check(&self) -> Result<()> {
        let ns = self.ns_name();
        match (in_zone(&ns, self.zone), self.ns_addresses.is_empty()) {
            (true, true) => Err(super::field(
                "--ns",
                &ns,
                &format!(
                    "the name server lies in zone {} and needs an address record there \
                     (DNS servers refuse the zone without one): give --ns-address IP, \
                     or --ns a name outside the zone",
                    self.zone
                ),
            )),
            (false, false) => Err(super::field(
                "--ns-address",
                &ns,
                &format!(
                    "the name server lies outside zone {}: its address belongs in its own \
                     zone, leave --ns-address out",
                    self.zone
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The zone file for `map` as valid at `now`, for `client` (whose unset
/// fields select only the entries not partitioned by them). Refused when
/// the name server does not fit the zone, a name or TXT string is longer
/// than DNS allows, or no service valid now lies in the zone.
pub fn export(map: &Map, client: &Client<'_>, x: &Export<'_>, now: Timestamp) -> Result<String> {
    x.check()?;
    let zone = x.zone;
    let shown = shown_to(map, client);
    let mut keys: Vec<super::ServiceKey> = shown
        .entries
        .iter()
        .filter(|e| e.valid.contains(now))
        .map(|e| e.key.clone())
        .collect();
    keys.sort();
    keys.dedup();
    let mut out = String::new();
    write_apex(&mut out, map, x, now);
    // Host names of the map's locations: a name made up for an address
    // must not be one of them.
    let hosts: std::collections::BTreeSet<String> = shown
        .entries
        .iter()
        .flat_map(|e| &e.locations)
        .filter_map(|l| parts(l).ok())
        .map(|p| p.target)
        .filter(|t| !t.is_empty())
        .collect();
    let mut skipped = Vec::new();
    for key in &keys {
        if !in_zone(key.sphere.as_str(), zone) {
            skipped.push(key.to_string());
            continue;
        }
        let service = Service::of(key)?;
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
        service.write(&mut out, &found, x, &hosts, now)?;
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

/// The part of `map` a zone shows (one answer for everybody): an entry
/// for a partition of clients only when `client` names that partition
/// and is in it.
fn shown_to(map: &Map, client: &Client<'_>) -> Map {
    let mut shown = map.clone();
    shown.entries.retain(|e| {
        (e.partition.clients.is_none() || client.id.is_some())
            && (e.partition.zone.is_none() || client.zone.is_some())
            && (e.partition.function.is_none() || client.function.is_some())
            && e.partition.admits(client)
    });
    shown
}

/// Writes the zone's first lines: the comment naming the map's revision,
/// `$ORIGIN`, `$TTL`, the SOA (its serial the revision), the NS record and
/// the name server's addresses.
fn write_apex(out: &mut String, map: &Map, x: &Export<'_>, now: Timestamp) {
    let (zone, ns) = (x.zone, x.ns_name());
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
    for a in x.ns_addresses {
        let _ = writeln!(out, "{ns}. IN {} {a}", address_kind(a));
    }
}

/// The names one service is exported under: its label (lower case), the
/// name below it (`vMAJOR-MINOR.SPHERE.`) and its owner name
/// (`_SERVICE._tcp.` before that), each checked to fit DNS.
struct Service {
    label: String,
    below: String,
    owner: String,
}

impl Service {
    fn of(key: &super::ServiceKey) -> Result<Service> {
        if key.service.as_str().len() > 62 {
            return Err(super::field(
                "service",
                key.service.as_str(),
                "longer than a DNS label allows (62 characters after the underscore)",
            ));
        }
        let label = key.service.as_str().to_ascii_lowercase();
        let below = format!(
            "v{}-{}.{}.",
            key.version.major,
            key.version.minor,
            key.sphere.as_str()
        );
        let owner = format!("_{label}._tcp.{below}");
        fits("service", &owner)?;
        Ok(Service {
            label,
            below,
            owner,
        })
    }

    /// Writes the records of the locations `found` for this service, in
    /// their order: the priority counts up from 0 per primary and backup,
    /// an equivalent entry's locations sharing one.
    fn write(
        &self,
        out: &mut String,
        found: &[resolve::Resolved<'_>],
        x: &Export<'_>,
        hosts: &std::collections::BTreeSet<String>,
        now: Timestamp,
    ) -> Result<()> {
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
                    self.write_unnamed(out, &p, unnamed, hosts, ttl)?
                } else {
                    format!("{}.", p.target)
                };
                if let (Some(a), false) = (p.address, p.target.is_empty()) {
                    if in_zone(&p.target, x.zone) {
                        let _ = writeln!(out, "{target} {ttl} IN {} {a}", address_kind(&a));
                    }
                }
                self.write_location(out, entry, &p, &target, priority, ttl)?;
                if !entry.partition.equivalent {
                    priority = priority.saturating_add(1);
                }
            }
            if entry.partition.equivalent {
                priority = priority.saturating_add(1);
            }
            i += group;
        }
        Ok(())
    }

    /// Writes the address record of a location known only by its address
    /// `p`, the `n`th of this service, under a host name of its own
    /// (`lN.SERVICE.vMAJOR-MINOR.SPHERE.`), and returns that name. Refused
    /// when the name is too long or is a location's host name.
    fn write_unnamed(
        &self,
        out: &mut String,
        p: &Parts,
        n: u32,
        hosts: &std::collections::BTreeSet<String>,
        ttl: u32,
    ) -> Result<String> {
        let name = format!("l{n}.{}.{}", self.label, self.below);
        fits("service", &name)?;
        if hosts.contains(name.trim_end_matches('.')) {
            return Err(super::field(
                "host",
                name.trim_end_matches('.'),
                "a location's host name is the name the zone gives an address-only \
                 location of the same service: rename the host",
            ));
        }
        let a = p.address.ok_or_else(|| {
            Error::Map(format!(
                "{}: a location without a host or an address",
                self.owner
            ))
        })?;
        let _ = writeln!(out, "{name} {ttl} IN {} {a}", address_kind(&a));
        Ok(name)
    }

    /// Writes the SRV and TXT records of one location (`p`, of `entry`)
    /// at `target` with `priority`.
    fn write_location(
        &self,
        out: &mut String,
        entry: &super::Entry,
        p: &Parts,
        target: &str,
        priority: u16,
        ttl: u32,
    ) -> Result<()> {
        let owner = &self.owner;
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
            txt_strings(owner, &strings)?
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spm::{
        Entry, Location, MapType, Partition, ServiceId, ServiceKey, Sphere, Validity, Version,
    };

    fn map(locations: Vec<Location>) -> Map {
        Map {
            revision: 7,
            generated: None,
            kind: MapType::Standard,
            entries: vec![Entry {
                key: ServiceKey {
                    service: ServiceId::new("Stats").unwrap(),
                    version: Version::parse("1.0").unwrap(),
                    sphere: Sphere::new("provider.example").unwrap(),
                },
                epoch: 3,
                locations,
                valid: Validity::default(),
                data: None,
                partition: Partition::default(),
            }],
        }
    }

    fn at(address: &str) -> Location {
        Location {
            host: None,
            address: Some(address.parse().unwrap()),
            port: Some(8443),
            path: None,
            url: None,
        }
    }

    fn export_with(m: &Map, ns: Option<&str>, addresses: &[IpAddr]) -> Result<String> {
        let x = Export {
            zone: "provider.example",
            ns,
            ns_addresses: addresses,
            ttl: 300,
        };
        export(m, &Client::default(), &x, Timestamp::from_secs(1))
    }

    #[test]
    fn the_name_server_has_an_address_exactly_when_it_lies_in_the_zone() {
        let m = map(vec![at("192.0.2.1")]);
        let a: &[IpAddr] = &[
            "192.0.2.53".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
        ];
        for (ns, addresses, says) in [
            (None, &[][..], Err("--ns-address IP")),
            (
                Some("ns1.provider.example"),
                &[][..],
                Err("--ns-address IP"),
            ),
            (Some("ns1.example.net"), a, Err("leave --ns-address out")),
            (None, a, Ok("ns.provider.example. IN AAAA 2001:db8::53")),
            (
                Some("ns1.example.net"),
                &[][..],
                Ok("@ IN NS ns1.example.net."),
            ),
        ] {
            match (export_with(&m, ns, addresses), says) {
                (Ok(zone), Ok(line)) => assert!(zone.lines().any(|l| l == line), "{zone}"),
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{e}"),
                (got, _) => panic!("{ns:?} {addresses:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn address_only_locations_get_host_names_and_what_dns_cannot_hold_is_refused() {
        let ns: &[IpAddr] = &["192.0.2.53".parse().unwrap()];
        let zone = export_with(&map(vec![at("192.0.2.1"), at("::1")]), None, ns).unwrap();
        for line in [
            "l1.stats.v1-0.provider.example. 300 IN A 192.0.2.1",
            "l2.stats.v1-0.provider.example. 300 IN AAAA ::1",
            "_stats._tcp.v1-0.provider.example. 300 IN SRV 1 0 8443 l2.stats.v1-0.provider.example.",
        ] {
            assert!(zone.lines().any(|l| l == line), "{line} in:\n{zone}");
        }
        let long_path = Location {
            path: Some(format!("/{}", "p".repeat(300))),
            ..at("192.0.2.1")
        };
        let e = export_with(&map(vec![long_path]), None, ns).unwrap_err();
        assert!(e.to_string().contains("255 bytes"), "{e}");
        let taken = Location {
            host: Some("l1.stats.v1-0.provider.example".into()),
            ..at("192.0.2.9")
        };
        let e = export_with(&map(vec![at("192.0.2.1"), taken]), None, ns).unwrap_err();
        assert!(e.to_string().contains("rename the host"), "{e}");
    }
}
