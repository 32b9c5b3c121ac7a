//! The spool's configuration, `config.toml` at the spool's root: who this
//! site is, how big the queue may grow, and the throttle.
//!
//! The file is the operator's: rs reads it on every run and, when a command
//! changes a setting (`rs-queue throttle`), edits only that key and keeps the
//! rest of the file, comments included. Unknown keys are refused so a typo
//! never silently disables a limit.

mod route;
mod sections;

pub use route::{HttpRoute, Route, SmtpRoute, SmtpTls, SpmRoute};
pub use sections::{
    in_network, parse_network, Backend, BulkSettings, HttpSettings, MapSource, RecoverySettings,
    RegistrarSettings, RegistrationSettings, Served, SharedSettings, SpmSettings,
};

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::message::Name;
pub use crate::queue::settings::{Limit, QueueLimits, Throttle};
pub use crate::units::Size;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}{}", crate::access::hint(.path, .source))]
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

/// The prefix of the labels under which rs's own features hold messages
/// in `divert/` (registration's, bulk's): no `[[rule]]` may take one.
pub const RESERVED_LABELS: &str = "rs-";

/// Why a configuration text, or one value in it (a route, a map source,
/// a network), is refused: the parser's words or the check's, naming the
/// key or value and, where known, the line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not TOML, or a key unknown or of the wrong type (the parser names
    /// the line and column).
    #[error("{0}")]
    Syntax(String),
    /// A check beyond the types, at the line of the table it concerns.
    #[error("line {line}: {message}")]
    At { line: usize, message: String },
    /// A check beyond the types, of no one table.
    #[error("{0}")]
    Check(String),
    /// A value as written (a route, a source), and what is wrong with it.
    #[error("`{text}`: {reason}")]
    Value { text: String, reason: Box<Invalid> },
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
pub const DEFAULT_TEXT: &str = include_str!("../default-config.toml");

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
        Config::parse(&text).map_err(|e| Error::Parse {
            path,
            message: e.to_string(),
        })
    }

    /// Reads and checks a configuration's text.
    pub fn parse(text: &str) -> Result<Config, Invalid> {
        let c: Config = toml::from_str(text)
            .map_err(|e| Invalid::Syntax(e.to_string().trim_end().to_string()))?;
        c.validate().map_err(|(at, message)| {
            match at.and_then(|(table, i)| table_line(text, table, i)) {
                Some(line) => Invalid::At { line, message },
                None => Invalid::Check(message),
            }
        })?;
        Ok(c)
    }

    /// Checks what serde cannot; an error names the table (`peer`, `rule`,
    /// `group`) and index it concerns, if any.
    fn validate(&self) -> Result<(), (Option<TableAt>, String)> {
        self.validate_sections()?;
        self.validate_rules_and_groups()?;
        self.validate_peers()
    }

    /// The checks of the sections ([shared], [http], the upstream peer,
    /// [registration], [bulk], [recovery], [spm]) beyond their types.
    fn validate_sections(&self) -> Result<(), (Option<TableAt>, String)> {
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
            crate::keytext::bech32_key(r.trim(), "age").map_err(|why| {
                let text = r.trim();
                (
                    None,
                    format!("[bulk] encrypt_to: {text:?} is not an age recipient (age1...): {why}"),
                )
            })?;
        }
        for n in &self.recovery.site_networks {
            parse_network(n).map_err(|e| (None, format!("[recovery] site_networks: {e}")))?;
        }
        if let Some(sv) = &self.spm.serves {
            sv.key().map_err(|e| (None, format!("[spm] serves: {e}")))?;
        }
        Ok(())
    }

    /// Each [[rule]] (its own checks; not rs's reserved label; a peer that
    /// exists) and each [[group]] (members, one name once).
    fn validate_rules_and_groups(&self) -> Result<(), (Option<TableAt>, String)> {
        for (i, r) in self.rules.iter().enumerate() {
            let at = Some(("rule", i));
            if let Some(name) = r.name.as_deref().filter(|n| n.starts_with(RESERVED_LABELS)) {
                return Err((
                    at,
                    format!("[[rule]] name {name:?} is rs's own: choose another"),
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
        Ok(())
    }

    /// Each [[peer]]: not this site, once, a timeout, a backup chain that
    /// is one chain, plain HTTP only without authentication.
    fn validate_peers(&self) -> Result<(), (Option<TableAt>, String)> {
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
) -> Result<String, Invalid> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| Invalid::Syntax(e.to_string()))?;
    let t = doc
        .entry(table)
        .or_insert(toml_edit::table())
        .as_table_mut()
        .ok_or_else(|| Invalid::Check(format!("[{table}] is not a table")))?;
    match value {
        Some(mut v) => {
            // The line's own comment and spacing stay: only the value changes.
            if let Some(old) = t.get(key).and_then(toml_edit::Item::as_value) {
                *v.decor_mut() = old.decor().clone();
            }
            t.insert(key, toml_edit::Item::Value(v));
        }
        None => {
            t.remove(key);
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests;
