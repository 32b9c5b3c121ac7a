//! The spool's configuration, `config.toml` at the spool's root: who this
//! site is, how big the queue may grow, and the throttle.
//!
//! The file is the operator's: rs reads it on every run and, when a command
//! changes a setting (`rs-queue throttle`), edits only that key and keeps the
//! rest of the file, comments included. Unknown keys are refused so a typo
//! never silently disables a limit.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::message::Name;
pub use rs_model::queue::settings::{Limit, QueueLimits, Throttle};
pub use rs_model::units::Size;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} is a symbolic link to {target}, which does not exist: restore it, or point the link at the configuration")]
    Dangling { path: PathBuf, target: PathBuf },
    #[error("{path} is {what}, not a file: move it aside and restore the configuration file")]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The site (customer) this spool belongs to.
    #[serde(deserialize_with = "name")]
    pub site: Name,
    /// This component's ID, derived from the site ID.
    #[serde(deserialize_with = "name")]
    pub component: Name,
    #[serde(default)]
    pub queue: QueueLimits,
    #[serde(default)]
    pub throttle: Throttle,
    #[serde(default)]
    pub spool: SpoolSettings,
    #[serde(default)]
    pub receive: ReceiveSettings,
    #[serde(default)]
    pub lease: LeaseSettings,
    /// This site as an HTTP server (`rs-relay serve`, `rs-relay cgi`).
    #[serde(default)]
    pub http: HttpSettings,
    /// The service point map this site uses (`spm:` routes, `rs-spm`).
    #[serde(default)]
    pub spm: SpmSettings,
    /// Where a new configuration or certificate comes from when a link
    /// fails.
    #[serde(default)]
    pub recovery: RecoverySettings,
    /// This component's registration with its upstream, and heartbeats.
    #[serde(default)]
    pub registration: RegistrationSettings,
    /// This site answers registrations (the provider's registrar).
    #[serde(default)]
    pub registrar: RegistrarSettings,
    /// Bulk data: authorized first, then sent in chunks (SPEC.md section 12).
    #[serde(default)]
    pub bulk: BulkSettings,
    /// Where the state a provider's relays share lives (scale-out): this
    /// spool (the default), or PostgreSQL, with JetStream taking what is
    /// delivered here.
    #[serde(default)]
    pub shared: SharedSettings,
    /// The sites this one exchanges messages with directly.
    #[serde(default, rename = "peer")]
    pub peers: Vec<Peer>,
    /// The relay's rules, in order (see `filter`).
    #[serde(default, rename = "rule")]
    pub rules: Vec<crate::filter::Rule>,
    /// Named groups of components: a message to a group is expanded here
    /// into one message per member.
    #[serde(default, rename = "group")]
    pub groups: Vec<Group>,
}

/// A named group of components.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Group {
    #[serde(deserialize_with = "name")]
    pub name: Name,
    #[serde(deserialize_with = "names")]
    pub members: Vec<Name>,
}

/// A next hop: another site's component, and how to reach it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's component ID.
    #[serde(deserialize_with = "name")]
    pub id: Name,
    /// How to reach it, in order of preference (`dir:/media/usb`).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Forward-path messages (those with a source, not a destination) go to
    /// the upstream peer. A site without one is the end of the forward path.
    #[serde(default)]
    pub upstream: bool,
    /// Components reachable through this peer (for back-channel messages),
    /// besides those learned from the traffic it forwards.
    #[serde(default, deserialize_with = "names")]
    pub components: Vec<Name>,
    /// A sent message unacknowledged this long is sent again.
    #[serde(default = "default_ack_timeout", deserialize_with = "duration")]
    pub ack_timeout: Duration,
    /// The wait between retransmissions doubles up to this cap.
    #[serde(default = "default_retry_cap", deserialize_with = "duration")]
    pub retry_cap: Duration,
    /// How messages to and from this peer are protected.
    #[serde(default)]
    pub protection: ProtectionKind,
    /// Our secret key: an OpenPGP transferable secret key (`gpg
    /// --export-secret-keys`), or for S/MIME a PEM private key.
    pub our_key: Option<PathBuf>,
    /// S/MIME: our certificate (PEM).
    pub our_cert: Option<PathBuf>,
    /// The peer's OpenPGP certificate (`gpg --export`) or S/MIME certificate (PEM).
    pub peer_cert: Option<PathBuf>,
    /// A file holding the passphrase of `our_key`, if it has one.
    pub passphrase_file: Option<PathBuf>,
    /// Whether the peer's messages must be signed (default: yes, when protected).
    pub require_signature: Option<bool>,
    /// S/MIME: CA certificates the peer's certificate must chain to
    /// (default: the peer's certificate itself is trusted, pinned).
    pub ca: Option<PathBuf>,
    /// S/MIME: a CRL (PEM) to check the peer's certificate against.
    pub crl: Option<PathBuf>,
    /// How the peer proves who it is when it calls this site over HTTP,
    /// and whether this site may call it over plain `http://`.
    #[serde(default)]
    pub authentication: Authentication,
    /// HTTP: the certificate (PEM) the peer presents as its client
    /// certificate; without it, a verified certificate whose subject CN is
    /// the peer's ID identifies it.
    pub client_cert: Option<PathBuf>,
    /// HTTP routes: with nothing to send, `rs-queue flush` still polls the
    /// peer (to fetch back-channel messages) once this long has passed since
    /// the last exchange.
    #[serde(default, deserialize_with = "duration")]
    pub poll: Duration,
    /// Back-channel messages for this peer (or what is behind it) that it
    /// has not taken for this long are given up: dead, their origin told.
    #[serde(default = "default_hold", deserialize_with = "duration")]
    pub hold: Duration,
    /// A redundant twin of this peer (another relay in front of the same
    /// sites): the two form a failover group with any backup it names in
    /// turn. A message for this peer that it does not acknowledge within
    /// `ack_timeout` is sent again to the next peer in the group, and what
    /// waits for it while its link has failed goes there at once; any
    /// member may carry the messages of components first seen behind
    /// another, and acknowledge what was sent to another.
    #[serde(default, deserialize_with = "name_opt")]
    pub backup: Option<Name>,
}

fn default_hold() -> Duration {
    Duration::from_secs(30 * 86_400)
}

/// How a peer that calls this site over HTTP proves who it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Authentication {
    /// A TLS client certificate (verified by this site's server or the web
    /// server in front of `rs-relay cgi`).
    #[default]
    Certificate,
    /// None: a link inside one network. The peer names itself
    /// (`X-Rs-From`), and plain `http://` routes to it are allowed.
    None,
}

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
    pub fn key(&self) -> Result<crate::spm::ServiceKey, crate::spm::Error> {
        Ok(crate::spm::ServiceKey {
            service: crate::spm::ServiceId::new(&self.service)?,
            version: crate::spm::Version::parse(&self.version)?,
            sphere: crate::spm::Sphere::new(&self.sphere)?,
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
pub fn parse_network(text: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (a, bits) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a network: use CIDR, as 10.0.0.0/8"))?;
    let a: std::net::IpAddr = a
        .parse()
        .map_err(|_| format!("`{text}`: `{a}` is not an address"))?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    let bits: u8 = bits
        .parse()
        .ok()
        .filter(|b| *b <= max)
        .ok_or_else(|| format!("`{text}`: a prefix length is 0 to {max}"))?;
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
    pub fn parse(text: &str) -> Result<MapSource, String> {
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "`{text}`: a file URL names an absolute path (file:///etc/rs/map.xml)"
                ));
            }
            return Ok(MapSource::File(PathBuf::from(path)));
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return HttpRoute::parse(text)
                .map(MapSource::Http)
                .map_err(|e| format!("`{text}`: {e}"));
        }
        Err(format!(
            "`{text}` is not a map source: use file:///path, http:// or https://"
        ))
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

/// Protection of a peer's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtectionKind {
    #[default]
    None,
    OpenPgp,
    Smime,
}

impl fmt::Display for ProtectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtectionKind::None => "none",
            ProtectionKind::OpenPgp => "openpgp",
            ProtectionKind::Smime => "smime",
        })
    }
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(3600)
}

fn default_retry_cap() -> Duration {
    Duration::from_secs(86_400)
}

/// A way to reach a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A directory (removable media, a shared folder): `dir:/media/usb`.
    Dir(PathBuf),
    /// Mail through an SMTP relay:
    /// `smtp://HOST[:PORT]?from=ADDR&to=ADDR[&tls=none|starttls|tls][&ca=FILE][&auth=FILE][&batch=N][&timeout=DURATION]`.
    Smtp(SmtpRoute),
    /// Session mode over HTTP(S):
    /// `https://HOST[:PORT]/PATH[?ca=FILE][&cert=FILE&key=FILE][&batch=N][&timeout=DURATION]`,
    /// or `http://` for a peer with `authentication = "none"`.
    Http(HttpRoute),
    /// Wherever the service point map says a service answers now:
    /// `spm:SERVICE[?version=X.Y][&sphere=DOMAIN][&function=NAME]` and the
    /// HTTP parameters (`ca`, `cert`, `key`, `batch`, `timeout`) for its
    /// locations.
    Spm(SpmRoute),
}

/// A route through the service point map: the service, and how to call
/// each location it resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpmRoute {
    pub service: String,
    /// The version wanted (default: the highest the map offers).
    pub version: Option<String>,
    pub sphere: Option<String>,
    /// The function of the service used (for maps partitioned by function).
    pub function: Option<String>,
    /// The HTTP settings every location is called with (its URL empty).
    pub http: HttpRoute,
}

impl SpmRoute {
    fn parse(rest: &str) -> Result<SpmRoute, String> {
        let (service, query) = rest.split_once('?').unwrap_or((rest, ""));
        crate::spm::ServiceId::new(service).map_err(|e| e.to_string())?;
        let mut r = SpmRoute {
            service: service.to_string(),
            version: None,
            sphere: None,
            function: None,
            http: HttpRoute::parse("https://locations.invalid/")?,
        };
        let mut http = Vec::new();
        let mut given = std::collections::HashSet::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if !given.insert(k.to_string()) {
                return Err(format!("`{k}` is given twice"));
            }
            match k.as_ref() {
                "version" => {
                    crate::spm::Version::parse(&v).map_err(|e| e.to_string())?;
                    r.version = Some(v.into_owned());
                }
                "sphere" => {
                    crate::spm::Sphere::new(&v).map_err(|e| e.to_string())?;
                    r.sphere = Some(v.into_owned());
                }
                "function" => r.function = Some(v.into_owned()),
                _ => http.push((k.into_owned(), v.into_owned())),
            }
        }
        if !http.is_empty() {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(http)
                .finish();
            r.http = HttpRoute::parse(&format!("https://locations.invalid/?{query}"))?;
        }
        r.http.url = String::new();
        Ok(r)
    }

    /// The route to one location the map gave.
    pub fn location(&self, url: &str) -> HttpRoute {
        HttpRoute {
            url: url.to_string(),
            tls: url.starts_with("https://"),
            ..self.http.clone()
        }
    }
}

/// A route to a peer's HTTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute {
    /// The URL posted to (without the rs parameters).
    pub url: String,
    /// Whether it is `https://`.
    pub tls: bool,
    /// PEM file of CA certificates the server's certificate must chain to
    /// (default: the system's).
    pub ca: Option<PathBuf>,
    /// This site's client certificate (PEM) and its key (PEM).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Messages per request.
    pub batch: usize,
    /// How long one exchange may take before the link counts as down.
    pub timeout: Duration,
}

impl HttpRoute {
    fn parse(text: &str) -> Result<HttpRoute, String> {
        let mut url = url::Url::parse(text).map_err(|e| e.to_string())?;
        if url.host_str().is_none() {
            return Err("no host".into());
        }
        let mut r = HttpRoute {
            url: String::new(),
            tls: url.scheme() == "https",
            ca: None,
            cert: None,
            key: None,
            batch: 500,
            timeout: Duration::from_secs(60),
        };
        let mut given = std::collections::HashSet::new();
        for (k, v) in url.query_pairs() {
            if !given.insert(k.to_string()) {
                return Err(format!("`{k}` is given twice"));
            }
            match k.as_ref() {
                "ca" => r.ca = Some(PathBuf::from(v.as_ref())),
                "cert" => r.cert = Some(PathBuf::from(v.as_ref())),
                "key" => r.key = Some(PathBuf::from(v.as_ref())),
                "batch" => {
                    r.batch = v
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n >= 1)
                        .ok_or_else(|| format!("batch={v}: a number of messages, at least 1"))?
                }
                "timeout" => {
                    r.timeout = crate::time::parse_duration(&v).map_err(|e| e.to_string())?
                }
                other => return Err(format!("unknown parameter `{other}`")),
            }
        }
        if r.cert.is_some() != r.key.is_some() {
            return Err("cert= and key= go together".into());
        }
        if !r.tls && (r.ca.is_some() || r.cert.is_some()) {
            return Err("ca=, cert= and key= need https://".into());
        }
        url.set_query(None);
        r.url = url.to_string();
        Ok(r)
    }
}

/// How to talk TLS to an SMTP relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a relay on the same host or a trusted network).
    None,
    /// STARTTLS, required (port 587 or 25).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpRoute {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// PEM file of CA certificates to trust beyond the system's.
    pub ca: Option<PathBuf>,
    /// File holding the user name on its first line and the password on its
    /// second (never on the command line).
    pub auth: Option<PathBuf>,
    /// The envelope sender and From: address.
    pub from: String,
    /// The envelope recipient and To: address (the peer's mailbox).
    pub to: String,
    /// Messages per email (1: one email per message).
    pub batch: usize,
    /// How long to wait for the relay before giving up on this flush.
    pub timeout: Duration,
}

impl Route {
    pub fn parse(text: &str) -> Result<Route, String> {
        if let Some(rest) = text.strip_prefix("smtp://") {
            return SmtpRoute::parse(rest)
                .map(Route::Smtp)
                .map_err(|e| format!("`{text}`: {e}"));
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return HttpRoute::parse(text)
                .map(Route::Http)
                .map_err(|e| format!("`{text}`: {e}"));
        }
        if let Some(rest) = text.strip_prefix("spm:") {
            return SpmRoute::parse(rest)
                .map(Route::Spm)
                .map_err(|e| format!("`{text}`: {e}"));
        }
        match text.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => Ok(Route::Dir(PathBuf::from(path))),
            _ => Err(format!(
                "`{text}` is not a route: use dir:/path, smtp://host:port?from=ADDR&to=ADDR, https://host/path or spm:SERVICE"
            )),
        }
    }
}

impl SmtpRoute {
    fn parse(rest: &str) -> Result<SmtpRoute, String> {
        let url = url::Url::parse(&format!("smtp://{rest}")).map_err(|e| e.to_string())?;
        let host = url.host_str().ok_or("no relay host")?.to_string();
        let mut r = SmtpRoute {
            host,
            port: 0,
            tls: SmtpTls::StartTls,
            ca: None,
            auth: None,
            from: String::new(),
            to: String::new(),
            batch: 1,
            timeout: Duration::from_secs(30),
        };
        let mut given = std::collections::HashSet::new();
        for (k, v) in url.query_pairs() {
            if !given.insert(k.to_string()) {
                return Err(format!("`{k}` is given twice"));
            }
            match k.as_ref() {
                "from" => r.from = v.into_owned(),
                "to" => r.to = v.into_owned(),
                "tls" => {
                    r.tls = match v.as_ref() {
                        "none" => SmtpTls::None,
                        "starttls" => SmtpTls::StartTls,
                        "tls" => SmtpTls::Implicit,
                        other => return Err(format!("tls={other}: use none, starttls or tls")),
                    }
                }
                "ca" => r.ca = Some(PathBuf::from(v.as_ref())),
                "auth" => r.auth = Some(PathBuf::from(v.as_ref())),
                "batch" => {
                    r.batch = v
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n >= 1)
                        .ok_or_else(|| format!("batch={v}: a number of messages, at least 1"))?
                }
                "timeout" => {
                    r.timeout = crate::time::parse_duration(&v).map_err(|e| e.to_string())?
                }
                other => return Err(format!("unknown parameter `{other}`")),
            }
        }
        if !r.from.contains('@') || !r.to.contains('@') {
            return Err("from= and to= must be mail addresses".into());
        }
        r.port = url.port().unwrap_or(match r.tls {
            SmtpTls::Implicit => 465,
            _ => 25,
        });
        Ok(r)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Dir(p) => write!(f, "dir:{}", p.display()),
            Route::Smtp(s) => write!(
                f,
                "smtp://{}:{} (from {} to {})",
                s.host, s.port, s.from, s.to
            ),
            Route::Http(h) => f.write_str(&h.url),
            Route::Spm(s) => write!(f, "spm:{}", s.service),
        }
    }
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Route::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiveSettings {
    /// How long an accepted ID is remembered (to drop retransmissions) when
    /// the message itself has no expiry; with an expiry, the later of the
    /// two. A message created before the IDs forgotten so far cannot be
    /// proven new, and is refused.
    #[serde(deserialize_with = "duration")]
    pub dedupe_retention: Duration,
    /// A message created later than this site's time by more than this is
    /// refused (its sender's clock is wrong).
    #[serde(deserialize_with = "duration")]
    pub max_clock_skew: Duration,
}

impl Default for ReceiveSettings {
    fn default() -> Self {
        ReceiveSettings {
            dedupe_retention: Duration::from_secs(30 * 86_400),
            max_clock_skew: Duration::from_secs(86_400),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseSettings {
    /// The longest lease granted on messages being transmitted; a run that
    /// dies holding one frees its messages when it lapses.
    #[serde(deserialize_with = "duration")]
    pub transmit_max: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            transmit_max: Duration::from_secs(3600),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSettings {
    /// Files left in `tmp/` by a crashed writer are removed after this long.
    #[serde(deserialize_with = "duration")]
    pub tmp_max_age: Duration,
    /// New messages are refused while the spool's file system has less free.
    pub min_free: Size,
    /// The longest a run waits for the spool lock before it gives up
    /// (exit 75): a stopped or hung run must not stall every later one.
    #[serde(deserialize_with = "duration")]
    pub lock_wait: Duration,
    /// A group whose members may read the spool (directories 2750, files
    /// 0640). None: its owner only (0700, 0600), whatever the umask.
    pub group: Option<String>,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            tmp_max_age: Duration::from_secs(3600),
            min_free: Size(64 * 1024 * 1024),
            lock_wait: Duration::from_secs(600),
            group: None,
        }
    }
}

fn name<'de, D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
    let s = String::deserialize(d)?;
    Name::new("name", s).map_err(serde::de::Error::custom)
}

pub(crate) fn name_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Name>, D::Error> {
    let s = String::deserialize(d)?;
    Name::new("peer", s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Name>, D::Error> {
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(|s| Name::new("component", s).map_err(serde::de::Error::custom))
        .collect()
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::time::parse_duration(&s).map_err(serde::de::Error::custom)
}

/// A setting that names a file holding a key, a certificate, a
/// passphrase or a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSetting<'a> {
    /// Where the setting is: `[http]`, `[[peer]] ID`.
    pub at: String,
    /// The setting: `key`, `our_key`, `route auth=`.
    pub key: &'static str,
    pub path: &'a Path,
    /// Whether the file is secret (a private key, a passphrase, a
    /// password), so that no one but its owner may read it.
    pub secret: bool,
}

impl FileSetting<'_> {
    /// The setting as messages name it: `our_key of [[peer]] ID`,
    /// `[http] key`.
    pub fn name(&self) -> String {
        setting_name(&self.at, self.key)
    }
}

fn setting_name(at: &str, key: &str) -> String {
    if at.starts_with("[[") {
        format!("{key} of {at}")
    } else {
        format!("{at} {key}")
    }
}

/// What a [`Guarded`] setting lets a configuration do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Power {
    /// Run a program.
    Programs,
    /// Name a key, certificate, passphrase or password file.
    Keys,
}

impl Power {
    /// Its word in `RS_CONFIG_TRUST`.
    pub fn word(self) -> &'static str {
        match self {
            Power::Programs => "programs",
            Power::Keys => "keys",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Power::Programs => "runs a program",
            Power::Keys => "names a key, certificate, passphrase or password file",
        }
    }
}

/// A setting that runs a program or names a key file (see
/// [`Config::guarded`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guarded {
    pub power: Power,
    /// Where it is: `[[rule]] NAME`, `[[peer]] ID`, `[http]`.
    pub at: String,
    /// The setting: `handler`, `our_key`, `route key=`.
    pub key: &'static str,
    /// Its value: a path, or a handler with its arguments.
    pub value: String,
}

impl Guarded {
    /// The setting as messages name it: `handler of [[rule]] NAME`.
    pub fn name(&self) -> String {
        setting_name(&self.at, self.key)
    }
}

pub const FILE_NAME: &str = "config.toml";

/// The configuration a new spool starts with, every setting explained
/// (`src/lib/default-config.toml`; its `site` and `component` are replaced).
pub const DEFAULT_TEXT: &str = include_str!("default-config.toml");

impl Config {
    /// Reads `config.toml` in `spool`. Refuses, naming the file, a dangling
    /// link, anything but a regular file, text that is not UTF-8 (with the
    /// line of the first bad byte) and invalid settings (with their line).
    pub fn load(spool: &Path) -> Result<Config, Error> {
        let path = spool.join(FILE_NAME);
        let read = |source| Error::Read {
            path: path.clone(),
            source,
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(match std::fs::read_link(&path) {
                    Ok(target) => Error::Dangling { path, target },
                    Err(_) => read(e),
                })
            }
            Err(e) => return Err(read(e)),
        };
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "a directory"
            } else {
                "a special file (FIFO, socket or device)"
            };
            return Err(Error::NotAFile { path, what });
        }
        let bytes = std::fs::read(&path).map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            Error::Parse {
                path: path.clone(),
                message: format!(
                    "line {line}: not UTF-8 text (byte {:#04x}); is this the configuration file?",
                    e.as_bytes()[good.len()]
                ),
            }
        })?;
        Config::parse(&text).map_err(|message| Error::Parse { path, message })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        c.validate().map_err(|(at, message)| {
            match at.and_then(|(table, i)| table_line(text, table, i)) {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            }
        })?;
        Ok(c)
    }

    /// Checks what serde cannot; an error names the table (`peer`, `rule`,
    /// `group`) and index it concerns, if any.
    fn validate(&self) -> Result<(), (Option<TableAt>, String)> {
        if let Some(conn) = &self.shared.postgres {
            if conn.to_ascii_lowercase().contains("password") {
                return Err((
                    None,
                    "[shared] postgres must not hold a password: put it in a file named by password_file".into(),
                ));
            }
        }
        if self.shared.backend == Backend::Postgres && self.shared.postgres.is_none() {
            return Err((
                None,
                "[shared] backend = \"postgres\" needs postgres = \"host=... user=... dbname=...\""
                    .into(),
            ));
        }
        if self.http.handshake_timeout.is_zero() || self.http.request_timeout.is_zero() {
            return Err((
                None,
                "[http] handshake_timeout and request_timeout must be longer than zero".into(),
            ));
        }
        if self.shared.nats.is_some() && self.shared.backend != Backend::Postgres {
            return Err((
                None,
                "[shared] nats needs backend = \"postgres\" (the database stops what JetStream's window would miss)".into(),
            ));
        }
        if let Some(second) = self
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.upstream)
            .nth(1)
        {
            return Err((
                Some(("peer", second.0)),
                "more than one [[peer]] has upstream = true".into(),
            ));
        }
        if self.registration.enabled && self.upstream().is_none() {
            return Err((
                None,
                "[registration] enabled needs an upstream peer (upstream = true) to register with"
                    .into(),
            ));
        }
        if self.registration.heartbeat.is_zero() || self.registration.resend_after == 0 {
            return Err((
                None,
                "[registration] heartbeat and resend_after must be more than zero".into(),
            ));
        }
        let b = &self.bulk;
        if b.chunk_size.0 < 1024 || b.chunk_size.0 > 16 << 20 {
            return Err((
                None,
                "[bulk] chunk_size must be between 1 KiB and 16 MiB".into(),
            ));
        }
        if b.window == 0 || b.max_transfers == 0 || b.reservation.is_zero() {
            return Err((
                None,
                "[bulk] window, max_transfers and reservation must be more than zero".into(),
            ));
        }
        for r in b.encrypt_to.iter().filter(|r| r.starts_with("age1")) {
            crate::bulk::seal::Recipient::parse(r)
                .map_err(|e| (None, format!("[bulk] encrypt_to: {e}")))?;
        }
        for n in &self.recovery.site_networks {
            parse_network(n).map_err(|e| (None, format!("[recovery] site_networks: {e}")))?;
        }
        if let Some(sv) = &self.spm.serves {
            sv.key().map_err(|e| (None, format!("[spm] serves: {e}")))?;
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = Some(("rule", i));
            if r.name.as_deref() == Some(crate::infra::LABEL) {
                return Err((
                    at,
                    format!(
                        "[[rule]] name {:?} is rs's own: choose another",
                        crate::infra::LABEL
                    ),
                ));
            }
            r.check()
                .map_err(|m| (at, format!("[[rule]] {}: {m}", r.label(i))))?;
            if let Some(p) = &r.peer {
                if self.peer(p.as_str()).is_none() {
                    return Err((
                        at,
                        format!("[[rule]] {}: peer {p} is not a configured peer", r.label(i)),
                    ));
                }
            }
        }
        for (i, g) in self.groups.iter().enumerate() {
            let at = Some(("group", i));
            if g.members.is_empty() {
                return Err((at, format!("[[group]] {} has no members", g.name)));
            }
            if self.groups[..i].iter().any(|h| h.name == g.name) {
                return Err((at, format!("[[group]] {} is configured twice", g.name)));
            }
        }
        for (i, p) in self.peers.iter().enumerate() {
            let fail = |message: String| Err((Some(("peer", i)), message));
            if p.id == self.component {
                return fail(format!("[[peer]] {} is this site's own component ID", p.id));
            }
            if let Some(first) = self.peers[..i].iter().position(|q| q.id == p.id) {
                return fail(format!(
                    "[[peer]] {} is configured twice (first as [[peer]] number {})",
                    p.id,
                    first + 1
                ));
            }
            if p.ack_timeout.is_zero() {
                return fail(format!(
                    "[[peer]] {}: ack_timeout must be longer than zero",
                    p.id
                ));
            }
            if let Some(b) = &p.backup {
                if *b == p.id || self.peer(b.as_str()).is_none() {
                    return fail(format!(
                        "[[peer]] {}: backup {b} must be another configured [[peer]]",
                        p.id
                    ));
                }
                if let Some(q) = self.peers[..i]
                    .iter()
                    .find(|q| q.backup.as_ref() == Some(b))
                {
                    return fail(format!(
                        "[[peer]] {}: {b} is already the backup of {} (a failover group is one chain: name {b} as the backup of {} only, or chain them)",
                        p.id, q.id, q.id
                    ));
                }
                if self.failover_group(p.id.as_str()).len() > self.peers.len() {
                    return fail(format!(
                        "[[peer]] {}: its backups lead back to it (a failover group is a chain from a primary)",
                        p.id
                    ));
                }
            }
            let plain = p
                .routes
                .iter()
                .any(|r| matches!(r, Route::Http(h) if !h.tls));
            if plain && p.authentication != Authentication::None {
                return fail(format!(
                    "[[peer]] {}: a plain http:// route is allowed only inside one network: set authentication = \"none\" for this peer, or use https://",
                    p.id
                ));
            }
        }
        Ok(())
    }

    /// Every file a setting names that holds a key, a certificate, a
    /// passphrase or a password (see [`FileSetting`]), in file order.
    pub fn key_files(&self) -> Vec<FileSetting<'_>> {
        fn add<'a>(
            out: &mut Vec<FileSetting<'a>>,
            at: &str,
            key: &'static str,
            path: Option<&'a Path>,
            secret: bool,
        ) {
            if let Some(path) = path {
                out.push(FileSetting {
                    at: at.to_string(),
                    key,
                    path,
                    secret,
                });
            }
        }
        fn http<'a>(
            out: &mut Vec<FileSetting<'a>>,
            at: &str,
            [ca, cert, key]: [&'static str; 3],
            h: &'a HttpRoute,
        ) {
            add(out, at, ca, h.ca.as_deref(), false);
            add(out, at, cert, h.cert.as_deref(), false);
            add(out, at, key, h.key.as_deref(), true);
        }
        let mut out = Vec::new();
        let o = &mut out;
        let h = &self.http;
        add(o, "[http]", "cert", h.cert.as_deref(), false);
        add(o, "[http]", "key", h.key.as_deref(), true);
        add(o, "[http]", "client_ca", h.client_ca.as_deref(), false);
        if let Some(MapSource::Http(r)) = &self.spm.map_url {
            let keys = ["map_url ca=", "map_url cert=", "map_url key="];
            http(o, "[spm]", keys, r);
        }
        if let Some(MapSource::Http(r)) = &self.recovery.config_url {
            let keys = ["config_url ca=", "config_url cert=", "config_url key="];
            http(o, "[recovery]", keys, r);
        }
        for r in self
            .bulk
            .encrypt_to
            .iter()
            .filter(|r| !r.starts_with("age1"))
        {
            add(o, "[bulk]", "encrypt_to", Some(Path::new(r)), false);
        }
        add(o, "[bulk]", "identity", self.bulk.identity.as_deref(), true);
        let password = self.shared.password_file.as_deref();
        add(o, "[shared]", "password_file", password, true);
        for p in &self.peers {
            let at = &format!("[[peer]] {}", p.id);
            add(o, at, "our_key", p.our_key.as_deref(), true);
            add(o, at, "our_cert", p.our_cert.as_deref(), false);
            add(o, at, "peer_cert", p.peer_cert.as_deref(), false);
            add(o, at, "passphrase_file", p.passphrase_file.as_deref(), true);
            add(o, at, "ca", p.ca.as_deref(), false);
            add(o, at, "crl", p.crl.as_deref(), false);
            add(o, at, "client_cert", p.client_cert.as_deref(), false);
            for r in &p.routes {
                let keys = ["route ca=", "route cert=", "route key="];
                match r {
                    Route::Http(h) => http(o, at, keys, h),
                    Route::Spm(s) => http(o, at, keys, &s.http),
                    Route::Smtp(m) => {
                        add(o, at, "route ca=", m.ca.as_deref(), false);
                        add(o, at, "route auth=", m.auth.as_deref(), true);
                    }
                    Route::Dir(_) => {}
                }
            }
        }
        out
    }

    /// The settings that let a configuration do more than set values: run
    /// a program (a `[[rule]]` handler, with its arguments) or name a key,
    /// certificate, passphrase or password file ([`Config::key_files`]).
    /// A configuration that did not come from the local file may hold
    /// these only as the operator allows (see `reconfig`).
    pub fn guarded(&self) -> Vec<Guarded> {
        let mut out: Vec<Guarded> = self
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let handler = r.handler.as_ref()?;
                let mut value = handler.display().to_string();
                for a in &r.args {
                    value.push(' ');
                    value.push_str(&format!("{a:?}"));
                }
                Some(Guarded {
                    power: Power::Programs,
                    at: format!("[[rule]] {}", r.label(i)),
                    key: "handler",
                    value,
                })
            })
            .collect();
        out.extend(self.key_files().into_iter().map(|f| Guarded {
            power: Power::Keys,
            at: f.at,
            key: f.key,
            value: f.path.display().to_string(),
        }));
        out
    }

    /// Secret files (private keys, passphrase and password files: each
    /// [`FileSetting`] that is `secret`) that the group or others may
    /// read: one warning each, naming the file, the setting and the remedy.
    pub fn exposed_secrets(&self) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        for f in self.key_files().into_iter().filter(|f| f.secret) {
            if let Ok(m) = std::fs::metadata(f.path) {
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    out.push(format!(
                        "warning: {} ({}) can be read by its group or others (mode {mode:o}): chmod 600 {}",
                        f.path.display(),
                        f.name(),
                        f.path.display()
                    ));
                }
            }
        }
        out
    }

    pub fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id.as_str() == id)
    }

    pub fn upstream(&self) -> Option<&Peer> {
        self.peers.iter().find(|p| p.upstream)
    }

    /// The failover group of `peer` (see [`Peer::backup`]): its primary,
    /// then each backup in turn; just `peer` when it has none. Bounded: a
    /// loop of backups (refused at load) ends the walk.
    pub fn failover_group(&self, peer: &str) -> Vec<&Name> {
        let limit = self.peers.len() + 1;
        let mut primary = peer;
        for _ in 0..limit {
            match self
                .peers
                .iter()
                .find(|q| q.backup.as_ref().is_some_and(|b| b.as_str() == primary))
            {
                Some(q) if q.id.as_str() != peer => primary = q.id.as_str(),
                _ => break,
            }
        }
        let mut group: Vec<&Name> = Vec::new();
        let mut next = self.peer(primary);
        while let Some(p) = next {
            group.push(&p.id);
            if group.len() > limit {
                break;
            }
            next = p.backup.as_ref().and_then(|b| self.peer(b.as_str()));
        }
        group
    }

    /// Whether `a` and `b` are the same peer or in one failover group.
    pub fn twins(&self, a: &str, b: &str) -> bool {
        a == b || self.failover_group(a).iter().any(|m| m.as_str() == b)
    }

    /// The member of `peer`'s failover group after it (cyclically): where
    /// a message it did not acknowledge in time goes next.
    pub fn failover_next(&self, peer: &str) -> Option<&Name> {
        let group = self.failover_group(peer);
        let at = group.iter().position(|m| m.as_str() == peer)?;
        group.get((at + 1) % group.len()).copied()
    }

    /// The text of a new spool's configuration, with every setting explained.
    pub fn default_text(site: &Name, component: &Name) -> String {
        DEFAULT_TEXT
            .replacen("\nsite = \"local\"\n", &format!("\nsite = \"{site}\"\n"), 1)
            .replacen(
                "\ncomponent = \"local.host\"\n",
                &format!("\ncomponent = \"{component}\"\n"),
                1,
            )
    }
}

/// A table of the file: its name and index (`("peer", 0)` is the first `[[peer]]`).
type TableAt = (&'static str, usize);

/// The line where the `index`th `[[table]]` starts in `text`.
fn table_line(text: &str, table: &str, index: usize) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let span = doc
        .as_item()
        .get(table)?
        .as_array_of_tables()?
        .get(index)?
        .span()?;
    Some(text[..span.start.min(text.len())].matches('\n').count() + 1)
}

/// Sets (or with `None` removes) one key of `config.toml`, keeping every
/// other line and comment. Returns the new text, which the caller validates
/// and writes durably.
pub fn edit(
    text: &str,
    table: &str,
    key: &str,
    value: Option<toml_edit::Value>,
) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    let t = doc
        .entry(table)
        .or_insert(toml_edit::table())
        .as_table_mut()
        .ok_or_else(|| format!("[{table}] is not a table"))?;
    match value {
        Some(v) => {
            t.insert(key, toml_edit::Item::Value(v));
        }
        None => {
            t.remove(key);
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys serde accepts in the table `prefix` opens, as its error for
    /// an unknown key lists them.
    fn keys_of(prefix: &str) -> Vec<String> {
        let text = format!("site='s'\ncomponent='s.c'\n{prefix}zz_not_a_key = 1\n");
        let err = Config::parse(&text).unwrap_err();
        let expected = err
            .split_once("expected one of")
            .or_else(|| err.split_once("expected"))
            .unwrap_or_else(|| panic!("{prefix}: {err}"))
            .1;
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_default_file_parses_and_names_every_key() {
        Config::parse(DEFAULT_TEXT).unwrap();
        // `key = ...` or a table `[key]`, `[[key]]`, commented or not.
        let named = |key: &str| {
            DEFAULT_TEXT.lines().any(|l| {
                let l = l.trim_start_matches('#').trim_start();
                let table = l.trim_start_matches('[');
                l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
                    || (table.len() < l.len()
                        && table.strip_prefix(key).is_some_and(|r| r.starts_with(']')))
                    || (l.starts_with('[') && l.contains(&format!(".{key}]")))
            })
        };
        for prefix in [
            "",
            "[queue]\n",
            "[queue.urgent]\n",
            "[throttle]\n",
            "[spool]\n",
            "[receive]\n",
            "[lease]\n",
            "[http]\n",
            "[bulk]\n",
            "[registration]\n",
            "[registrar]\n",
            "[recovery]\n",
            "[spm]\n",
            "[shared]\n",
            "[[peer]]\nid = 'p.x'\n",
            "[[rule]]\naction = 'discard'\n",
            "[[group]]\nname = 'g'\nmembers = []\n",
        ] {
            let keys = keys_of(prefix);
            assert!(!keys.is_empty(), "{prefix}");
            let missing: Vec<&String> = keys.iter().filter(|k| !named(k)).collect();
            assert!(
                missing.is_empty(),
                "{prefix}: not in src/lib/default-config.toml: {missing:?}"
            );
        }
    }

    #[test]
    fn default_text_parses_to_unlimited() {
        let site = Name::new("site", "acme").unwrap();
        let comp = Name::new("component", "acme.host1").unwrap();
        let c = Config::parse(&Config::default_text(&site, &comp)).unwrap();
        assert_eq!(c.site, site);
        assert!(c.queue.total().is_unlimited());
        assert_eq!(c.throttle, Throttle::default());
        assert_eq!(c.spool, SpoolSettings::default());
    }

    #[test]
    fn peers() {
        let text = "site='a'\ncomponent='a.b'\n[[peer]]\nid='hub'\nroutes=['dir:/media/usb']\nupstream=true\nack_timeout='10m'\n[[peer]]\nid='c.d'\n";
        let c = Config::parse(text).unwrap();
        assert_eq!(c.upstream().unwrap().id.as_str(), "hub");
        assert_eq!(
            c.peer("hub").unwrap().routes,
            vec![Route::Dir("/media/usb".into())]
        );
        assert_eq!(c.peer("hub").unwrap().ack_timeout, Duration::from_secs(600));
        assert_eq!(
            c.peer("c.d").unwrap().retry_cap,
            Duration::from_secs(86_400)
        );
        let twice = "site='a'\ncomponent='a.b'\n[[peer]]\nid='x'\nupstream=true\n[[peer]]\nid='y'\nupstream=true\n";
        assert!(Config::parse(twice).unwrap_err().contains("upstream"));
        let selfpeer = "site='a'\ncomponent='a.b'\n[[peer]]\nid='a.b'\n";
        assert!(Config::parse(selfpeer).is_err());
        let badroute = "site='a'\ncomponent='a.b'\n[[peer]]\nid='x'\nroutes=['usb']\n";
        assert!(Config::parse(badroute).unwrap_err().contains("not a route"));
    }

    #[test]
    fn failover_groups_are_chains_of_backups() {
        let c = Config::parse("site='a'\ncomponent='a.b'\n[[peer]]\nid='r1'\nupstream=true\nbackup='r2'\n[[peer]]\nid='r2'\nbackup='r3'\n[[peer]]\nid='r3'\n[[peer]]\nid='x'\n").unwrap();
        let names = |v: Vec<&Name>| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(c.failover_group("r2")), ["r1", "r2", "r3"]);
        assert_eq!(names(c.failover_group("x")), ["x"]);
        assert_eq!(c.failover_next("r1").unwrap().as_str(), "r2");
        assert_eq!(c.failover_next("r3").unwrap().as_str(), "r1");
        assert_eq!(c.failover_next("x").unwrap().as_str(), "x");
        assert!(c.twins("r3", "r1") && c.twins("x", "x") && !c.twins("x", "r1"));
        for (bad, says) in [
            ("[[peer]]\nid='r1'\nbackup='r1'\n", "must be another configured"),
            ("[[peer]]\nid='r1'\nbackup='nobody'\n", "must be another configured"),
            ("[[peer]]\nid='r1'\nbackup='r2'\n[[peer]]\nid='r2'\nbackup='r1'\n", "lead back to it"),
            ("[[peer]]\nid='r1'\nbackup='r3'\n[[peer]]\nid='r2'\nbackup='r3'\n[[peer]]\nid='r3'\n", "already the backup of r1"),
        ] {
            let e = Config::parse(&format!("site='a'\ncomponent='a.b'\n{bad}")).unwrap_err();
            assert!(e.contains(says) && e.starts_with("line "), "{bad}: {e}");
        }
    }

    #[test]
    fn smtp_routes() {
        let Route::Smtp(r) = Route::parse("smtp://mail.example:587?from=a@x.test&to=b@y.test&auth=/etc/rs/smtp-auth&batch=20&timeout=10s").unwrap() else {
            panic!("not smtp")
        };
        assert_eq!(
            (r.host.as_str(), r.port, r.tls),
            ("mail.example", 587, SmtpTls::StartTls)
        );
        assert_eq!(
            (r.from.as_str(), r.to.as_str(), r.batch),
            ("a@x.test", "b@y.test", 20)
        );
        assert_eq!(r.auth, Some(PathBuf::from("/etc/rs/smtp-auth")));
        assert_eq!(r.timeout, Duration::from_secs(10));
        let Route::Smtp(r) = Route::parse("smtp://mx?from=a@x&to=b@y&tls=tls").unwrap() else {
            panic!()
        };
        assert_eq!((r.port, r.tls), (465, SmtpTls::Implicit));
        for bad in [
            "smtp://mx?to=b@y",
            "smtp://mx?from=a@x&to=b@y&tls=maybe",
            "smtp://mx?from=a@x&to=b@y&password=x",
            "smtp://?from=a@x&to=b@y",
            "smtp://mx?from=a@x&to=b@y&tls=none&tls=tls",
        ] {
            assert!(Route::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn guarded_settings_are_handlers_and_key_files() {
        let c = Config::parse(
            "site='a'\ncomponent='a.b'\n[http]\nkey='/k/http.key'\n[bulk]\nidentity='/k/bulk.key'\nencrypt_to=['/k/recipients']\n[[peer]]\nid='p.hub'\nour_key='/k/our.key'\nroutes=['smtp://mx?from=a@x&to=b@y&auth=/k/smtp-auth', 'https://h/rs?ca=/k/ca.pem&cert=/k/c.pem&key=/k/c.key']\n[[rule]]\nname='sh'\naction='divert'\nhandler='/bin/sh'\nargs=['-c', 'id']\n",
        )
        .unwrap();
        let said: Vec<(String, String, Power)> = c
            .guarded()
            .into_iter()
            .map(|g| (g.name(), g.value, g.power))
            .collect();
        let want = |n: &str, v: &str, p| (n.to_string(), v.to_string(), p);
        assert_eq!(
            said,
            vec![
                want(
                    "handler of [[rule]] sh",
                    "/bin/sh \"-c\" \"id\"",
                    Power::Programs
                ),
                want("[http] key", "/k/http.key", Power::Keys),
                want("[bulk] encrypt_to", "/k/recipients", Power::Keys),
                want("[bulk] identity", "/k/bulk.key", Power::Keys),
                want("our_key of [[peer]] p.hub", "/k/our.key", Power::Keys),
                want("route auth= of [[peer]] p.hub", "/k/smtp-auth", Power::Keys),
                want("route ca= of [[peer]] p.hub", "/k/ca.pem", Power::Keys),
                want("route cert= of [[peer]] p.hub", "/k/c.pem", Power::Keys),
                want("route key= of [[peer]] p.hub", "/k/c.key", Power::Keys),
            ]
        );
    }

    #[test]
    fn what_a_provider_may_set_runs_nothing_and_names_no_file() {
        // Registration defaults and set-configuration touch only these
        // tables: every key of them set, nothing guarded.
        let c = Config::parse(
            "site='a'\ncomponent='a.b'\n[[peer]]\nid='p.hub'\nupstream=true\n[queue]\nmax_bytes='1G'\nmax_messages=5\n[queue.urgent]\nmax_bytes='1M'\nmax_messages=1\n[queue.normal]\nmax_messages=1\n[queue.bulk]\nmax_messages=1\n[throttle]\nmax_bytes_per_hour='1M'\nmax_bytes_per_day='1G'\nmax_messages_per_hour=1\nmax_messages_per_day=2\nmax_message_bytes='1M'\nwindows=['22:00-06:00']\n[registration]\nenabled=true\nheartbeat='5m'\nresend_after=2\n",
        )
        .unwrap();
        assert_eq!(c.guarded(), Vec::new());
    }

    #[test]
    fn typos_are_refused() {
        let text = "site='a'\ncomponent='a.b'\n[queue]\nmax_byte = 10\n";
        let err = Config::parse(text).unwrap_err();
        assert!(err.contains("max_byte"), "{err}");
    }

    #[test]
    fn edit_keeps_comments() {
        let text = "# keep me\nsite='a'\ncomponent='a.b'\n[throttle]\n# and me\n";
        let out = edit(text, "throttle", "max_messages_per_hour", Some(10.into())).unwrap();
        assert!(out.contains("# keep me") && out.contains("# and me"));
        let c = Config::parse(&out).unwrap();
        assert_eq!(c.throttle.max_messages_per_hour, Some(10));
        let out = edit(&out, "throttle", "max_messages_per_hour", None).unwrap();
        assert_eq!(
            Config::parse(&out).unwrap().throttle.max_messages_per_hour,
            None
        );
    }
}
