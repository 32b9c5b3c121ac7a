//! The features' sections of `config.toml` ([spm], [registration],
//! [registrar], [bulk], [shared], [recovery], [http]): their types and
//! defaults. Each is to move to the crate that owns it (ARCHITECTURE.md,
//! "Layers and seams").

use super::*;

/// Where this site's service point map comes from, and what partition of
/// it is this site's.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SpmSettings {
    /// The map's source: `file:///path`, `http://` or
    /// `https://host/path[?ca=FILE][&cert=FILE&key=FILE][&timeout=DURATION]`.
    pub map_url: Option<MapSource>,
    /// A map older than this is fetched again before it is used.
    #[serde(deserialize_with = "duration")]
    pub refresh: Duration,
    /// This site's topology zone (entries for another zone are not its own).
    pub zone: Option<String>,
    /// The service this site's HTTP server is a location of: a message
    /// sent through a map entry of another epoch is answered
    /// `epoch-mismatch`.
    pub serves: Option<Served>,
}

impl Served {
    /// The service, checked.
    pub fn key(&self) -> Result<crate::map::ServiceKey, crate::map::Error> {
        Ok(crate::map::ServiceKey {
            service: crate::map::ServiceId::new(&self.service)?,
            version: crate::map::Version::parse(&self.version)?,
            sphere: crate::map::Sphere::new(&self.sphere)?,
        })
    }
}

/// Registration and heartbeats (SPEC.md section 13).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationSettings {
    /// This component registers with its upstream peer before its data
    /// goes (session mode), or with its data following (message mode), and
    /// sends heartbeats.
    pub enabled: bool,
    /// How often a heartbeat goes upstream (in session mode: the poll).
    #[serde(deserialize_with = "duration")]
    pub heartbeat: Duration,
    /// A registration not answered after this many heartbeats goes again.
    pub resend_after: u32,
    /// The provider component whose control messages and registration
    /// answers this component obeys. None: the one whose answer registered
    /// it, and before that, the upstream peer.
    #[serde(deserialize_with = "name_opt")]
    pub registrar: Option<Name>,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        RegistrationSettings {
            enabled: false,
            heartbeat: Duration::from_secs(15 * 60),
            resend_after: 3,
            registrar: None,
        }
    }
}

/// Bulk data (SPEC.md section 12): what `rs-send` sends as bulk, and what
/// this site takes as a hop on the path and as the receiver.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BulkSettings {
    /// Data larger than this goes as bulk: a `bulk-data-request` first,
    /// the data in chunks once the receiver said ok.
    pub threshold: Size,
    /// The largest transfer this site takes, as a hop or as the receiver
    /// (larger is refused: `rejected`). None: any size the disk holds.
    pub max_size: Option<Size>,
    /// As the receiver: the chunk size it asks for (message mode).
    pub chunk_size: Size,
    /// As the receiver: how many chunks it asks for at a time (pacing).
    pub window: u32,
    /// As the receiver: transfers authorized and not yet complete at
    /// once; a request beyond them is answered `deferred`.
    pub max_transfers: u32,
    /// As the sender: a request answered `deferred` this many times is
    /// given up (dead, logged with the last reason).
    pub max_deferrals: u32,
    /// As the sender: how long after a `deferred` the request goes again.
    #[serde(deserialize_with = "duration")]
    pub retry: Duration,
    /// As a hop or the receiver: how long a reservation lasts unless the
    /// transfer moves (the lease on the space it holds).
    #[serde(deserialize_with = "duration")]
    pub reservation: Duration,
    /// As the sender: seal every transfer when it is queued, for these age
    /// recipients (`age1...`, or files of them one a line, as `age -R`):
    /// an age file any of them opens. Empty: transfers go in the clear
    /// (each hop's protection still applies to the messages around them).
    pub encrypt_to: Vec<String>,
    /// As the receiver: the age identity file (`age-keygen -o FILE`) that
    /// opens transfers sealed for this site.
    pub identity: Option<PathBuf>,
}

impl Default for BulkSettings {
    fn default() -> Self {
        BulkSettings {
            threshold: Size(4 << 10),
            max_size: None,
            chunk_size: Size(1 << 20),
            window: 16,
            max_transfers: 16,
            max_deferrals: 5,
            retry: Duration::from_secs(3600),
            reservation: Duration::from_secs(7 * 24 * 3600),
            encrypt_to: Vec::new(),
            identity: None,
        }
    }
}

/// Where a provider's relays keep what they share (see `shared`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SharedSettings {
    pub backend: Backend,
    /// The PostgreSQL connection, in libpq's `key=value` form (host, port,
    /// user, dbname, ...), without a password.
    pub postgres: Option<String>,
    /// A file holding the database password, if it needs one.
    pub password_file: Option<PathBuf>,
    /// A NATS server (`nats://host:port`) with JetStream: messages
    /// delivered here are published to it instead of the Maildir.
    pub nats: Option<String>,
    /// The JetStream stream (made by `rs-relay db init` if missing).
    pub stream: Option<String>,
    /// Subjects are `PREFIX.CLASS.SUBCLASS` (default `rs`).
    pub subject_prefix: Option<String>,
}

/// The shared state's home.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// This spool's own files (one relay host).
    #[default]
    Spool,
    /// A PostgreSQL database many relays share.
    Postgres,
}

/// The provider's registrar: answers registrations, hears heartbeats.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarSettings {
    pub enabled: bool,
    /// The default configuration a registered component is given: a TOML
    /// file with `[queue]`, `[throttle]` and `[registration]` settings.
    pub defaults: Option<PathBuf>,
}

/// Recovery of a failed link (SPEC.md section 10): one attempt per class
/// of failure, never a loop.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RecoverySettings {
    /// Where this site asks for a new configuration (connectivity) or is
    /// redirected to a new certificate (identity): `https://HOST/PATH[?ca=FILE]`.
    /// Default: the URL this configuration was fetched from, if it was.
    pub config_url: Option<MapSource>,
    /// The site's own networks (CIDR): a new certificate is taken only
    /// from a server in them, never from the provider directly.
    pub site_networks: Vec<String>,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        RecoverySettings {
            config_url: None,
            site_networks: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
                "fe80::/10",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Parses a network in CIDR notation (`10.0.0.0/8`, `fc00::/7`).
pub fn parse_network(text: &str) -> Result<(std::net::IpAddr, u8), Invalid> {
    let (a, bits) = text.split_once('/').ok_or_else(|| {
        Invalid::Check(format!(
            "`{text}` is not a network: use CIDR, as 10.0.0.0/8"
        ))
    })?;
    let why = |reason: String| route::value(text, Invalid::Check(reason));
    let a: std::net::IpAddr = a
        .parse()
        .map_err(|_| why(format!("`{a}` is not an address")))?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    let bits: u8 = bits
        .parse()
        .ok()
        .filter(|b| *b <= max)
        .ok_or_else(|| why(format!("a prefix length is 0 to {max}")))?;
    Ok((a, bits))
}

/// Whether `ip` lies in the network `(net, bits)`.
pub fn in_network(ip: std::net::IpAddr, (net, bits): (std::net::IpAddr, u8)) -> bool {
    use std::net::IpAddr::{V4, V6};
    let (a, n, width) = match (ip, net) {
        (V4(a), V4(n)) => (u32::from(a) as u128, u32::from(n) as u128, 32),
        (V6(a), V6(n)) => (u128::from(a), u128::from(n), 128),
        (V6(a), V4(_)) => match a.to_ipv4_mapped() {
            Some(a) => return in_network(V4(a), (net, bits)),
            None => return false,
        },
        (V4(_), V6(_)) => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - bits as u32;
    (a >> shift) == (n >> shift)
}

/// A service a server is a location of.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Served {
    pub service: String,
    pub version: String,
    pub sphere: String,
    /// Its epoch (default: as published in this spool's spm/registry.xml).
    pub epoch: Option<u64>,
}

impl Default for SpmSettings {
    fn default() -> Self {
        SpmSettings {
            map_url: None,
            refresh: Duration::from_secs(3600),
            zone: None,
            serves: None,
        }
    }
}

/// Where a map (or a configuration) is fetched from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapSource {
    File(PathBuf),
    Http(HttpRoute),
}

impl MapSource {
    pub fn parse(text: &str) -> Result<MapSource, Invalid> {
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(route::value(
                    text,
                    Invalid::Check(
                        "a file URL names an absolute path (file:///etc/rs/map.xml)".into(),
                    ),
                ));
            }
            return Ok(MapSource::File(PathBuf::from(path)));
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return HttpRoute::parse(text)
                .map(MapSource::Http)
                .map_err(|e| route::value(text, e));
        }
        Err(Invalid::Check(format!(
            "`{text}` is not a map source: use file:///path, http:// or https://"
        )))
    }
}

impl fmt::Display for MapSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapSource::File(p) => write!(f, "file://{}", p.display()),
            MapSource::Http(h) => f.write_str(&h.url),
        }
    }
}

impl<'de> Deserialize<'de> for MapSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MapSource::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// This site as an HTTP server.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// `rs-relay serve`: the server's certificate (PEM, with its chain).
    pub cert: Option<PathBuf>,
    /// `rs-relay serve`: the server's private key (PEM).
    pub key: Option<PathBuf>,
    /// `rs-relay serve`: CA certificates (PEM) client certificates must
    /// chain to. Without it, only peers with `authentication = "none"` can
    /// call.
    pub client_ca: Option<PathBuf>,
    /// The largest request body taken; a larger one is answered 413.
    pub max_body: Size,
    /// The largest reply: back-channel messages beyond it wait for the next poll.
    pub max_reply: Size,
    /// `rs-relay serve`: requests read and handled at once (taken once
    /// the caller is identified); more wait.
    pub max_connections: usize,
    /// `rs-relay serve`: the longest a request may take to arrive (headers
    /// and body), a reply may go unread, or a connection stay idle between
    /// requests; a slower client is cut off.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// `rs-relay serve`: the time a new connection has to prove a
    /// configured peer (the TLS handshake and its first request's headers).
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// `rs-relay serve`: connections that have not yet proved a peer, at
    /// most; a new one pushes out the oldest that has sent nothing (else
    /// the oldest).
    pub max_handshakes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            cert: None,
            key: None,
            client_ca: None,
            max_body: Size(64 << 20),
            max_reply: Size(16 << 20),
            max_connections: 16,
            request_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 64,
        }
    }
}
