//! The map's file format (`spool/README.md`, "Service point map"), and the
//! provider's registry of published entries.
//!
//! ```xml
//! <service-map format="1" type="1" revision="7" generated="2026-12-02T10:00:00Z">
//!   <entry service="inventory" version="1.0" sphere="provider.example" epoch="3"
//!          valid-from="…" valid-until="…" clients="02468" zone="east" function="query">
//!     <location host="hub1.provider.example" port="8443" path="/rs"/>
//!     <location url="https://hub2.provider.example/rs"/>
//!     <data>service-specific text</data>
//!   </entry>
//! </service-map>
//! ```
//!
//! Types 2 and 4 carry `service` and `version` on `<service-map>` and not in
//! the entries; types 3 and 4 carry `sphere` there. Reading goes through the
//! messages' XML guard first (no DTD, no entities, bounded depth and element
//! count), then checks every field ([`super::Map::check`]). Unknown
//! attributes and elements are ignored, so newer writers interoperate;
//! a newer `format` is refused.

use serde::{Deserialize, Serialize};

use super::{
    limits, Entry, Error, Location, Map, MapType, Partition, Result, ServiceId, ServiceKey, Sphere,
    Validity, Version, FORMAT,
};
use crate::time::Timestamp;

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

#[derive(Serialize, Deserialize, Default)]
pub(super) struct LocationXml {
    #[serde(rename = "@host", default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(rename = "@address", default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(rename = "@port", default, skip_serializing_if = "Option::is_none")]
    port: Option<String>,
    #[serde(rename = "@path", default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(rename = "@url", default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// The attributes an entry and a publication share.
#[derive(Serialize, Deserialize, Default)]
pub(super) struct EntryXml {
    #[serde(rename = "@service", default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(rename = "@version", default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(rename = "@sphere", default, skip_serializing_if = "Option::is_none")]
    sphere: Option<String>,
    #[serde(rename = "@epoch", default, skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
    #[serde(rename = "@host", default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(rename = "@priority", default, skip_serializing_if = "Option::is_none")]
    priority: Option<String>,
    #[serde(
        rename = "@published",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    published: Option<String>,
    #[serde(
        rename = "@valid-from",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    valid_from: Option<String>,
    #[serde(
        rename = "@valid-until",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    valid_until: Option<String>,
    #[serde(rename = "@clients", default, skip_serializing_if = "Option::is_none")]
    clients: Option<String>,
    #[serde(rename = "@zone", default, skip_serializing_if = "Option::is_none")]
    zone: Option<String>,
    #[serde(rename = "@function", default, skip_serializing_if = "Option::is_none")]
    function: Option<String>,
    #[serde(
        rename = "@equivalent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    equivalent: Option<String>,
    /// Registry only: the publication is withdrawn.
    #[serde(
        rename = "@withdrawn",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    withdrawn: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    location: Vec<LocationXml>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "service-map")]
struct MapXml {
    #[serde(rename = "@format")]
    format: String,
    #[serde(rename = "@type", default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(rename = "@revision", default, skip_serializing_if = "Option::is_none")]
    revision: Option<String>,
    #[serde(
        rename = "@generated",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    generated: Option<String>,
    #[serde(rename = "@service", default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(rename = "@version", default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(rename = "@sphere", default, skip_serializing_if = "Option::is_none")]
    sphere: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    entry: Vec<EntryXml>,
}

fn to_xml<T: Serialize>(value: &T) -> String {
    let mut out = String::from(XML_DECL);
    let mut ser = quick_xml::se::Serializer::new(&mut out);
    ser.indent(' ', 1);
    // Serialising our own plain structs into a String cannot fail.
    if let Err(e) = value.serialize(ser) {
        unreachable!("serialising a service map failed: {e}");
    }
    out.push('\n');
    out
}

fn number<T: std::str::FromStr>(field: &'static str, s: &str) -> Result<T> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(super::field(field, s, "not a decimal number"));
    }
    s.parse()
        .map_err(|_| super::field(field, s, "out of range"))
}

fn time(field: &'static str, s: &str) -> Result<Timestamp> {
    Timestamp::parse(s).map_err(|_| super::field(field, s, "not an RFC 3339 time"))
}

fn flag(field: &'static str, s: &str) -> Result<bool> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(super::field(field, s, "true or false")),
    }
}

pub(super) fn location_from(x: &LocationXml) -> Result<Location> {
    let l = Location {
        host: x.host.clone(),
        address: x
            .address
            .as_deref()
            .map(|a| {
                a.parse()
                    .map_err(|_| super::field("address", a, "not an IPv4 or IPv6 address"))
            })
            .transpose()?,
        port: x.port.as_deref().map(|p| number("port", p)).transpose()?,
        path: x.path.clone(),
        url: x.url.clone(),
    };
    l.check()?;
    Ok(Location {
        host: l.host.map(|h| h.to_ascii_lowercase()),
        ..l
    })
}

pub(super) fn location_to(l: &Location) -> LocationXml {
    LocationXml {
        host: l.host.clone(),
        address: l.address.map(|a| a.to_string()),
        port: l.port.map(|p| p.to_string()),
        path: l.path.clone(),
        url: l.url.clone(),
    }
}

/// What an entry's XML says beyond its key.
pub(super) struct EntryParts {
    pub epoch: Option<u64>,
    pub locations: Vec<Location>,
    pub valid: Validity,
    pub data: Option<String>,
    pub partition: Partition,
}

pub(super) fn parts_from(x: &EntryXml) -> Result<EntryParts> {
    if x.location.len() > limits::LOCATIONS {
        return Err(Error::TooLarge {
            what: "locations of one entry",
            limit: limits::LOCATIONS,
        });
    }
    let parts = EntryParts {
        epoch: x.epoch.as_deref().map(|e| number("epoch", e)).transpose()?,
        locations: x
            .location
            .iter()
            .map(location_from)
            .collect::<Result<_>>()?,
        valid: Validity {
            from: x
                .valid_from
                .as_deref()
                .map(|t| time("valid-from", t))
                .transpose()?,
            until: x
                .valid_until
                .as_deref()
                .map(|t| time("valid-until", t))
                .transpose()?,
        },
        data: x.data.clone(),
        partition: Partition {
            clients: x.clients.clone(),
            zone: x.zone.clone(),
            function: x.function.clone(),
            equivalent: x
                .equivalent
                .as_deref()
                .map(|e| flag("equivalent", e))
                .transpose()?
                .unwrap_or(false),
        },
    };
    parts.valid.check()?;
    parts.partition.check()?;
    if let Some(d) = &parts.data {
        super::check_data(d)?;
    }
    Ok(parts)
}

pub(super) fn parts_to(x: &mut EntryXml, p: &EntryParts) {
    x.epoch = p.epoch.map(|e| e.to_string());
    x.location = p.locations.iter().map(location_to).collect();
    x.valid_from = p.valid.from.map(|t| t.to_rfc3339());
    x.valid_until = p.valid.until.map(|t| t.to_rfc3339());
    x.data = p.data.clone();
    x.clients = p.partition.clients.clone();
    x.zone = p.partition.zone.clone();
    x.function = p.partition.function.clone();
    x.equivalent = p.partition.equivalent.then(|| "true".to_string());
}

/// The guarded text of a map or registry file.
pub(super) fn guarded(bytes: &[u8], what: &str) -> Result<String> {
    if bytes.len() > limits::MAP_BYTES {
        return Err(Error::TooLarge {
            what: "bytes of a map",
            limit: limits::MAP_BYTES,
        });
    }
    crate::message::xml::guard(bytes, limits::ELEMENTS)
        .map(str::to_string)
        .map_err(|e| Error::Map(format!("{what}: {e}")))
}

pub(super) fn check_format(format: &str) -> Result<()> {
    let f: u32 = number("format", format)?;
    if f != FORMAT {
        return Err(super::field(
            "format",
            format,
            "this rs reads service maps of format 1; a newer rs wrote this one",
        ));
    }
    Ok(())
}

/// Reads a map: guarded, parsed, every entry completed from the header
/// and checked.
pub fn map_from_xml(bytes: &[u8]) -> Result<Map> {
    let text = guarded(bytes, "service map")?;
    let x: MapXml =
        quick_xml::de::from_str(&text).map_err(|e| Error::Map(format!("service map: {e}")))?;
    check_format(&x.format)?;
    let kind = MapType::from_number(
        x.kind
            .as_deref()
            .map(|k| number("type", k))
            .transpose()?
            .unwrap_or(1),
    )?;
    let header = |value: &Option<String>, name: &'static str, wanted: bool| -> Result<()> {
        match (value, wanted) {
            (None, true) => Err(Error::Map(format!(
                "a type-{} map names its {name} in <service-map>",
                kind.number()
            ))),
            (Some(_), false) => Err(Error::Map(format!(
                "a type-{} map names the {name} in each entry, not in <service-map>",
                kind.number()
            ))),
            _ => Ok(()),
        }
    };
    header(&x.service, "service", kind.service_in_header())?;
    header(&x.version, "version", kind.service_in_header())?;
    header(&x.sphere, "sphere", kind.sphere_in_header())?;
    if x.entry.len() > limits::ENTRIES {
        return Err(Error::TooLarge {
            what: "entries",
            limit: limits::ENTRIES,
        });
    }
    let mut entries = Vec::with_capacity(x.entry.len());
    for (i, e) in x.entry.iter().enumerate() {
        let in_entry = |v: &Option<String>, head: &Option<String>, name: &str| -> Result<String> {
            match (v, head) {
                (Some(_), Some(_)) => Err(Error::Map(format!(
                    "entry {}: a type-{} map names the {name} in <service-map> only",
                    i + 1,
                    kind.number()
                ))),
                (Some(v), None) | (None, Some(v)) => Ok(v.clone()),
                (None, None) => Err(Error::Map(format!("entry {}: no {name}", i + 1))),
            }
        };
        let key = ServiceKey {
            service: ServiceId::new(&in_entry(&e.service, &x.service, "service")?)?,
            version: Version::parse(&in_entry(&e.version, &x.version, "version")?)?,
            sphere: Sphere::new(&in_entry(&e.sphere, &x.sphere, "sphere")?)?,
        };
        let p =
            parts_from(e).map_err(|err| Error::Map(format!("entry {} ({key}): {err}", i + 1)))?;
        let entry = Entry {
            key,
            epoch: p
                .epoch
                .ok_or_else(|| Error::Map(format!("entry {}: no epoch", i + 1)))?,
            locations: p.locations,
            valid: p.valid,
            data: p.data,
            partition: p.partition,
        };
        entry
            .check()
            .map_err(|err| Error::Map(format!("entry {} ({}): {err}", i + 1, entry.key)))?;
        entries.push(entry);
    }
    let map = Map {
        revision: x
            .revision
            .as_deref()
            .map(|r| number("revision", r))
            .transpose()?
            .unwrap_or(0),
        generated: x
            .generated
            .as_deref()
            .map(|t| time("generated", t))
            .transpose()?,
        kind,
        entries,
    };
    map.check()?;
    Ok(map)
}

/// Writes a map in its type's form (the map must pass [`Map::check`]).
pub fn map_to_xml(map: &Map) -> String {
    let first = map.entries.first();
    let in_header = |yes: bool, v: Option<String>| if yes { v } else { None };
    let x = MapXml {
        format: FORMAT.to_string(),
        kind: Some(map.kind.number().to_string()),
        revision: Some(map.revision.to_string()),
        generated: map.generated.map(|t| t.to_rfc3339()),
        service: in_header(
            map.kind.service_in_header(),
            first.map(|e| e.key.service.as_str().to_string()),
        ),
        version: in_header(
            map.kind.service_in_header(),
            first.map(|e| e.key.version.to_string()),
        ),
        sphere: in_header(
            map.kind.sphere_in_header(),
            first.map(|e| e.key.sphere.as_str().to_string()),
        ),
        entry: map
            .entries
            .iter()
            .map(|e| {
                let mut x = EntryXml {
                    service: (!map.kind.service_in_header())
                        .then(|| e.key.service.as_str().to_string()),
                    version: (!map.kind.service_in_header()).then(|| e.key.version.to_string()),
                    sphere: (!map.kind.sphere_in_header())
                        .then(|| e.key.sphere.as_str().to_string()),
                    ..EntryXml::default()
                };
                parts_to(
                    &mut x,
                    &EntryParts {
                        epoch: Some(e.epoch),
                        locations: e.locations.clone(),
                        valid: e.valid,
                        data: e.data.clone(),
                        partition: e.partition.clone(),
                    },
                );
                x
            })
            .collect(),
    };
    to_xml(&x)
}

// ------------------------------------------------------------- registry

#[derive(Serialize, Deserialize)]
pub(super) struct ServiceXml {
    #[serde(rename = "@service")]
    pub service: String,
    #[serde(rename = "@version")]
    pub version: String,
    #[serde(rename = "@sphere")]
    pub sphere: String,
    #[serde(rename = "@epoch")]
    pub epoch: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct LoadedXml {
    #[serde(rename = "@host")]
    pub host: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "service-registry")]
pub(super) struct RegistryXml {
    #[serde(rename = "@format")]
    pub format: String,
    #[serde(rename = "@revision")]
    pub revision: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epoch: Vec<ServiceXml>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publication: Vec<EntryXml>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loaded: Vec<LoadedXml>,
}

pub(super) fn registry_to_xml(r: &RegistryXml) -> String {
    to_xml(r)
}

pub(super) fn registry_from_xml(bytes: &[u8]) -> Result<RegistryXml> {
    let text = guarded(bytes, "service registry")?;
    let x: RegistryXml =
        quick_xml::de::from_str(&text).map_err(|e| Error::Map(format!("service registry: {e}")))?;
    check_format(&x.format)?;
    Ok(x)
}

/// A publication as the registry holds it.
pub(super) struct PublicationFields {
    pub key: ServiceKey,
    pub host: String,
    pub priority: u32,
    pub published: Option<Timestamp>,
    pub withdrawn: bool,
    pub parts: EntryParts,
}

/// A publication's fields, read from the registry.
pub(super) fn publication_fields(x: &EntryXml) -> Result<PublicationFields> {
    let need = |v: &Option<String>, name: &'static str| {
        v.clone()
            .ok_or_else(|| Error::Map(format!("a publication has no {name}")))
    };
    let key = ServiceKey {
        service: ServiceId::new(&need(&x.service, "service")?)?,
        version: Version::parse(&need(&x.version, "version")?)?,
        sphere: Sphere::new(&need(&x.sphere, "sphere")?)?,
    };
    let host = need(&x.host, "host")?;
    let priority = x
        .priority
        .as_deref()
        .map(|p| number("priority", p))
        .transpose()?
        .unwrap_or(0);
    let published = x
        .published
        .as_deref()
        .map(|t| time("published", t))
        .transpose()?;
    Ok(PublicationFields {
        key,
        host,
        priority,
        published,
        withdrawn: x
            .withdrawn
            .as_deref()
            .map(|w| flag("withdrawn", w))
            .transpose()?
            .unwrap_or(false),
        parts: parts_from(x)?,
    })
}

pub(super) fn publication_xml(p: &PublicationFields) -> EntryXml {
    let mut x = EntryXml {
        service: Some(p.key.service.as_str().to_string()),
        version: Some(p.key.version.to_string()),
        sphere: Some(p.key.sphere.as_str().to_string()),
        host: Some(p.host.clone()),
        priority: Some(p.priority.to_string()),
        published: p.published.map(|t| t.to_rfc3339()),
        withdrawn: p.withdrawn.then(|| "true".to_string()),
        ..EntryXml::default()
    };
    parts_to(&mut x, &p.parts);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Map {
        let loc = |h: &str| Location {
            host: Some(h.into()),
            address: None,
            port: Some(8443),
            path: None,
            url: None,
        };
        Map {
            revision: 7,
            generated: Some(Timestamp::from_secs(1_764_000_000)),
            kind: MapType::Standard,
            entries: vec![
                Entry {
                    key: ServiceKey {
                        service: ServiceId::new("inventory").unwrap(),
                        version: Version::parse("1.0").unwrap(),
                        sphere: Sphere::new("provider.example").unwrap(),
                    },
                    epoch: 3,
                    locations: vec![loc("hub1.provider.example"), loc("hub3.provider.example")],
                    valid: Validity {
                        from: Some(Timestamp::from_secs(1_764_000_000)),
                        until: None,
                    },
                    data: Some("a < b & \"c\"".into()),
                    partition: Partition {
                        clients: Some("02468".into()),
                        ..Partition::default()
                    },
                },
                Entry {
                    key: ServiceKey {
                        service: ServiceId::new("inventory").unwrap(),
                        version: Version::parse("1.0").unwrap(),
                        sphere: Sphere::new("provider.example").unwrap(),
                    },
                    epoch: 3,
                    locations: vec![Location {
                        url: Some("https://hub2.provider.example/rs".into()),
                        host: None,
                        address: None,
                        port: None,
                        path: None,
                    }],
                    valid: Validity::default(),
                    data: None,
                    partition: Partition::default(),
                },
            ],
        }
    }

    #[test]
    fn every_type_reads_back_as_the_same_entries() {
        let map = sample();
        for kind in [
            MapType::Standard,
            MapType::SingleService,
            MapType::SingleSphere,
            MapType::Both,
        ] {
            let m = Map {
                kind,
                ..map.clone()
            };
            let text = map_to_xml(&m);
            let back = map_from_xml(text.as_bytes()).unwrap_or_else(|e| panic!("{text}\n{e}"));
            assert_eq!(back, m, "{text}");
            let count = |what: &str| text.matches(what).count();
            let in_header = matches!(kind, MapType::SingleService | MapType::Both);
            assert_eq!(
                count("service=\"inventory\""),
                if in_header { 1 } else { 2 },
                "{text}"
            );
        }
    }

    #[test]
    fn hostile_and_invalid_maps_are_refused_naming_what() {
        let good = map_to_xml(&sample());
        let cases: Vec<(String, &str)> = vec![
            (good.replace("version=\"1.0\"", "version=\"1\""), "version"),
            (
                good.replace("version=\"1.0\"", "version=\"1.1.1\""),
                "version",
            ),
            (
                good.replacen("service=\"inventory\"", "service=\"inv/entory\"", 1),
                "service",
            ),
            (
                good.replacen("sphere=\"provider.example\"", "sphere=\"not a domain\"", 1),
                "sphere",
            ),
            (good.replace("format=\"1\"", "format=\"2\""), "format"),
            (good.replacen("port=\"8443\"", "port=\"70000\"", 1), "port"),
            (good.replacen("epoch=\"3\"", "epoch=\"x\"", 1), "epoch"),
            (
                format!(
                    "<!DOCTYPE m [<!ENTITY a \"aaaa\">]>{}",
                    &good[XML_DECL.len()..]
                ),
                "DOCTYPE",
            ),
            (good.replacen("<data>", "<data>&boom;", 1), "entity"),
            (
                format!(
                    "<service-map format=\"1\">{}{}</service-map>",
                    "<x>".repeat(200),
                    "</x>".repeat(200)
                ),
                "depth",
            ),
            ("x".repeat(limits::MAP_BYTES + 1), "bytes of a map"),
            (
                good.replacen("<data>", "<data>\u{1b}[31m", 1),
                "control characters",
            ),
        ];
        for (text, says) in cases {
            let e = map_from_xml(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(says), "expected {says:?} in: {e}");
        }
        let t2 = map_to_xml(&Map {
            kind: MapType::SingleService,
            ..sample()
        });
        let e = map_from_xml(
            t2.replacen("<entry ", "<entry service=\"inventory\" ", 1)
                .as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("in <service-map> only"), "{e}");
    }
}
