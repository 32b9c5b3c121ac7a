//! The service point map's model (SPEC.md section 10): services, their
//! versions, spheres and epochs, locations, validity, partitions, and a
//! map's entries, each checked field by field. Pure values: reading a map
//! file, the registry, resolving and fetching are `rs::spm`'s.
//!
//! Everything in a map is hostile input until [`Map::check`] passed.

use std::fmt;
use std::net::IpAddr;

use crate::time::Timestamp;

/// The format this code writes and reads (`format="1"`).
pub const FORMAT: u32 = 1;

/// Bounds on what a map may hold: a map larger is refused whole.
pub mod limits {
    /// Bytes of a map file.
    pub const MAP_BYTES: usize = 4 << 20;
    /// Entries (or publications) in a map (or the registry).
    pub const ENTRIES: usize = 10_000;
    /// Locations of one entry (the primary and its backups).
    pub const LOCATIONS: usize = 16;
    /// Bytes of an entry's service-specific data.
    pub const DATA_BYTES: usize = 16 * 1024;
    /// Bytes of a URL or path.
    pub const URL_BYTES: usize = 2048;
    /// Elements in a map file.
    pub const ELEMENTS: usize = ENTRIES * (LOCATIONS + 4) + 16;
}

/// Why a map, an entry or a field is refused: the field named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{field} {value:?}: {reason}")]
    Field {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Map(String),
    #[error("{what} over the limit of {limit}")]
    TooLarge { what: &'static str, limit: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A field refused: its name, its value (cut to 80 bytes) and why.
pub fn field(field: &'static str, value: &str, reason: &str) -> Error {
    let mut value = value.to_string();
    if value.len() > 80 {
        let mut cut = 80;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
        value.push('…');
    }
    Error::Field {
        field,
        value,
        reason: reason.to_string(),
    }
}

/// A service ID: ASCII letters and digits, 1 to 64 of them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceId(String);

impl ServiceId {
    pub fn new(s: &str) -> Result<ServiceId> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(field(
                "service",
                s,
                "a service ID is 1 to 64 ASCII letters and digits",
            ));
        }
        Ok(ServiceId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A service version: `MAJOR.MINOR`, both decimal numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    pub fn parse(s: &str) -> Result<Version> {
        let bad = || field("version", s, "a version is MAJOR.MINOR, as 1.0 or 2.13");
        let (a, b) = s.split_once('.').ok_or_else(bad)?;
        let num = |t: &str| {
            if t.is_empty() || t.len() > 9 || !t.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                t.parse::<u32>().ok()
            }
        };
        Ok(Version {
            major: num(a).ok_or_else(bad)?,
            minor: num(b).ok_or_else(bad)?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A DNS name: labels of letters, digits and hyphens (not at either end),
/// 1 to 63 bytes each, 253 in all; lower-cased. `dotted`: at least two
/// labels (a sphere is a domain, `provider.example`).
pub fn dns_name(what: &'static str, s: &str, dotted: bool) -> Result<String> {
    let lower = s.to_ascii_lowercase();
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let labels: Vec<&str> = lower.split('.').collect();
    if lower.len() > 253 || !labels.iter().all(|l| ok_label(l)) || (dotted && labels.len() < 2) {
        return Err(field(
            what,
            s,
            if dotted {
                "not a domain name (labels of letters, digits and inner hyphens, separated by dots, as provider.example)"
            } else {
                "not a host name (labels of letters, digits and inner hyphens, separated by dots)"
            },
        ));
    }
    Ok(lower)
}

/// The sphere an entry belongs to: the provider's domain name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sphere(String);

impl Sphere {
    pub fn new(s: &str) -> Result<Sphere> {
        dns_name("sphere", s, true).map(Sphere)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What names a service: its ID, version and sphere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub service: ServiceId,
    pub version: Version,
    pub sphere: Sphere,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} in {}",
            self.service.as_str(),
            self.version,
            self.sphere.as_str()
        )
    }
}

/// Where a service answers: a URL, or a host (DNS name and/or address)
/// and port (with a path, `/rs` by default) reached over HTTPS.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub host: Option<String>,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub url: Option<String>,
}

/// Checks a URL an entry names: `http://` or `https://`, a host, no
/// whitespace or control characters, bounded.
pub fn check_url(s: &str) -> Result<()> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| field("url", s, "a location URL is http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if s.len() > limits::URL_BYTES
        || host.is_empty()
        || s.bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80)
        || host.contains('@')
    {
        return Err(field(
            "url",
            s,
            "not a usable URL (a host, no spaces, no user info, ASCII, at most 2048 bytes)",
        ));
    }
    Ok(())
}

impl Location {
    /// Checks the fields and their combination.
    pub fn check(&self) -> Result<()> {
        if let Some(h) = &self.host {
            dns_name("host", h, false)?;
        }
        match (&self.url, self.port) {
            (Some(u), None) if self.path.is_none() => check_url(u)?,
            (Some(_), _) => {
                return Err(Error::Map(
                    "a location has a url, or a port (and path), not both".into(),
                ))
            }
            (None, Some(0)) => return Err(field("port", "0", "a port is 1 to 65535")),
            (None, Some(_)) => {
                if self.host.is_none() && self.address.is_none() {
                    return Err(Error::Map(
                        "a location with a port needs a host or an address".into(),
                    ));
                }
            }
            (None, None) => {
                return Err(Error::Map(
                    "a location needs a url, or a host or address with a port".into(),
                ))
            }
        }
        if let Some(p) = &self.path {
            if !p.starts_with('/')
                || p.len() > limits::URL_BYTES
                || p.bytes()
                    .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80)
            {
                return Err(field(
                    "path",
                    p,
                    "a path starts with / and is ASCII without spaces",
                ));
            }
        }
        Ok(())
    }

    /// The URL to call: the entry's own, or `https://HOST:PORT/PATH` (the
    /// address when there is no host name).
    pub fn url(&self) -> String {
        if let Some(u) = &self.url {
            return u.clone();
        }
        let host = match (&self.host, &self.address) {
            (Some(h), _) => h.clone(),
            (None, Some(IpAddr::V6(a))) => format!("[{a}]"),
            (None, Some(a)) => a.to_string(),
            (None, None) => String::new(),
        };
        format!(
            "https://{host}:{}{}",
            self.port.unwrap_or(443),
            self.path.as_deref().unwrap_or("/rs")
        )
    }
}

/// When an entry holds: from (inclusive) until (exclusive); either may be open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Validity {
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl Validity {
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from.is_none_or(|f| t >= f) && self.until.is_none_or(|u| t < u)
    }

    pub fn check(&self) -> Result<()> {
        if let (Some(f), Some(u)) = (self.from, self.until) {
            if u <= f {
                return Err(field(
                    "valid",
                    &format!("{f} - {u}"),
                    "the range ends before it starts",
                ));
            }
        }
        Ok(())
    }

    pub fn is_always(&self) -> bool {
        self.from.is_none() && self.until.is_none()
    }
}

/// Which clients an entry is for. Empty: every client.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    /// Clients whose ID's digit (see [`client_digit`]) is one of these.
    pub clients: Option<String>,
    /// Clients in this topology zone.
    pub zone: Option<String>,
    /// Clients asking for this function of the service.
    pub function: Option<String>,
    /// Any location will do (no shared state): each client gets them in an
    /// order of its own, so clients spread over the servers.
    pub equivalent: bool,
}

fn word(what: &'static str, s: &str) -> Result<()> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(field(
            what,
            s,
            "1 to 64 ASCII letters, digits, hyphens and underscores",
        ));
    }
    Ok(())
}

impl Partition {
    pub fn check(&self) -> Result<()> {
        if let Some(c) = &self.clients {
            if c.is_empty() || c.len() > 10 || !c.bytes().all(|b| b.is_ascii_digit()) {
                return Err(field(
                    "clients",
                    c,
                    "the last digits of the client IDs served, as 02468",
                ));
            }
        }
        if let Some(z) = &self.zone {
            word("zone", z)?;
        }
        if let Some(f) = &self.function {
            word("function", f)?;
        }
        Ok(())
    }

    /// Whether a client with this ID, zone and wanted function may use it.
    pub fn admits(&self, client: &Client<'_>) -> bool {
        self.clients.as_ref().is_none_or(|digits| {
            client
                .id
                .map(|id| digits.contains(client_digit(id)))
                .unwrap_or(true)
        }) && self
            .zone
            .as_ref()
            .is_none_or(|z| client.zone.is_none_or(|c| c == z))
            && self
                .function
                .as_ref()
                .is_none_or(|f| client.function.is_none_or(|c| c == f))
    }
}

/// The digit of a client ID that partitions by client: its last decimal
/// digit, or, for an ID without one, the sum of its bytes modulo 10 (so
/// every client falls in some partition).
pub fn client_digit(id: &str) -> char {
    match id.chars().rev().find(char::is_ascii_digit) {
        Some(d) => d,
        None => {
            let sum: u32 = id.bytes().map(u32::from).sum();
            char::from(b'0' + (sum % 10) as u8)
        }
    }
}

/// What is known of the client a map is made or resolved for; `None`
/// fields match everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Client<'a> {
    pub id: Option<&'a str>,
    pub zone: Option<&'a str>,
    pub function: Option<&'a str>,
}

/// One entry of a map, complete (map types 2 to 4 filled in from the header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: ServiceKey,
    pub epoch: u64,
    /// The primary, then the backups in order.
    pub locations: Vec<Location>,
    pub valid: Validity,
    /// Service-specific data: text handed to a configured handler at most,
    /// never executed.
    pub data: Option<String>,
    pub partition: Partition,
}

impl Entry {
    pub fn check(&self) -> Result<()> {
        if self.locations.is_empty() {
            return Err(Error::Map(format!(
                "the entry for {} has no location",
                self.key
            )));
        }
        if self.locations.len() > limits::LOCATIONS {
            return Err(Error::TooLarge {
                what: "locations of one entry",
                limit: limits::LOCATIONS,
            });
        }
        for l in &self.locations {
            l.check()?;
        }
        self.valid.check()?;
        self.partition.check()?;
        if let Some(d) = &self.data {
            check_data(d)?;
        }
        Ok(())
    }
}

/// Service-specific data: bounded text without control characters other
/// than tab and line ends. Kept as data; nothing in rs runs it.
pub fn check_data(d: &str) -> Result<()> {
    if d.len() > limits::DATA_BYTES {
        return Err(Error::TooLarge {
            what: "service-specific data (bytes)",
            limit: limits::DATA_BYTES,
        });
    }
    if d.chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n' && c != '\r')
    {
        return Err(field("data", d, "control characters are not allowed"));
    }
    Ok(())
}

/// Where the service spec and the sphere are written (SPEC section 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    /// Every entry names its service, version and sphere.
    Standard = 1,
    /// One service: its ID and version in the header.
    SingleService = 2,
    /// One sphere, in the header.
    SingleSphere = 3,
    /// One service in one sphere, both in the header.
    Both = 4,
}

impl MapType {
    pub fn from_number(n: u32) -> Result<MapType> {
        Ok(match n {
            1 => MapType::Standard,
            2 => MapType::SingleService,
            3 => MapType::SingleSphere,
            4 => MapType::Both,
            _ => return Err(field("type", &n.to_string(), "a map type is 1, 2, 3 or 4")),
        })
    }

    pub fn number(self) -> u32 {
        self as u32
    }

    /// Whether the map's header, not each entry, names the service.
    pub fn service_in_header(self) -> bool {
        matches!(self, MapType::SingleService | MapType::Both)
    }

    /// Whether the map's header, not each entry, names the sphere.
    pub fn sphere_in_header(self) -> bool {
        matches!(self, MapType::SingleSphere | MapType::Both)
    }
}

/// A service point map, as read (complete entries) or to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    /// Changes on every edit of what the map was generated from.
    pub revision: u64,
    pub generated: Option<Timestamp>,
    pub kind: MapType,
    pub entries: Vec<Entry>,
}

impl Map {
    /// Checks every entry, and that the entries fit the map's type (one
    /// service for types 2 and 4, one sphere for types 3 and 4).
    pub fn check(&self) -> Result<()> {
        if self.entries.len() > limits::ENTRIES {
            return Err(Error::TooLarge {
                what: "entries",
                limit: limits::ENTRIES,
            });
        }
        for e in &self.entries {
            e.check()?;
        }
        if let Some(first) = self.entries.first() {
            if self.kind.service_in_header()
                && self.entries.iter().any(|e| {
                    e.key.service != first.key.service || e.key.version != first.key.version
                })
            {
                return Err(Error::Map(format!(
                    "a type-{} map holds one service; these entries name several",
                    self.kind.number()
                )));
            }
            if self.kind.sphere_in_header()
                && self
                    .entries
                    .iter()
                    .any(|e| e.key.sphere != first.key.sphere)
            {
                return Err(Error::Map(format!(
                    "a type-{} map holds one sphere; these entries name several",
                    self.kind.number()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_checked_and_named() {
        assert!(ServiceId::new("inventory2").is_ok());
        for bad in ["", "a/b", "in ventory", "ünï", &"x".repeat(65)] {
            let e = ServiceId::new(bad).unwrap_err();
            assert!(e.to_string().starts_with("service "), "{e}");
        }
        assert_eq!(Version::parse("1.10").unwrap().to_string(), "1.10");
        for bad in ["1", "1.1.1", "v1.0", "1.", ".1", "1.-1", "1.a"] {
            let e = Version::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("version "), "{bad}: {e}");
        }
        assert_eq!(
            Sphere::new("Provider.Example").unwrap().as_str(),
            "provider.example"
        );
        for bad in [
            "provider",
            "-a.example",
            "a..example",
            "a_b.example",
            "not a domain!",
        ] {
            let e = Sphere::new(bad).unwrap_err();
            assert!(e.to_string().starts_with("sphere "), "{bad}: {e}");
        }
    }

    #[test]
    fn locations_become_urls() {
        let l = Location {
            host: Some("hub1.provider.example".into()),
            address: None,
            port: Some(8443),
            path: None,
            url: None,
        };
        l.check().unwrap();
        assert_eq!(l.url(), "https://hub1.provider.example:8443/rs");
        let a = Location {
            host: None,
            address: Some("::1".parse().unwrap()),
            port: Some(443),
            path: Some("/x".into()),
            url: None,
        };
        assert_eq!(a.url(), "https://[::1]:443/x");
        for bad in [
            Location {
                url: Some("ftp://x".into()),
                ..a.clone()
            },
            Location {
                port: None,
                url: None,
                ..a.clone()
            },
            Location {
                port: Some(0),
                ..a.clone()
            },
            Location {
                host: None,
                address: None,
                ..a.clone()
            },
            Location {
                port: None,
                path: None,
                url: Some("https://a b".into()),
                ..a.clone()
            },
            Location {
                port: None,
                path: None,
                url: Some("https://u@h/".into()),
                ..a.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clients_partition_by_their_last_digit() {
        assert_eq!(client_digit("site12.host3"), '3');
        assert_eq!(client_digit("a.b"), '1'); // 97+46+98 = 241
        let p = Partition {
            clients: Some("02468".into()),
            ..Partition::default()
        };
        let c = |id| Client {
            id: Some(id),
            ..Client::default()
        };
        assert!(p.admits(&c("s.h4")));
        assert!(!p.admits(&c("s.h3")));
        assert!(p.admits(&Client::default()));
    }
}
