//! Reconfiguration (SPEC.md section 10): where a site's configuration
//! comes from, and the one repair a failed link gets per class of failure.
//!
//! **The source chain.** A spool's `config.toml` if present; else the URL
//! in `RS_CONFIG_URL`; else the URL built into the binary
//! (`RS_DEFAULT_CONFIG_URL` at build time; a build without one creates a
//! local default configuration, as `rs-queue init` would). A URL is
//! `file://`, `http://` or `https://` (with `?ca=FILE` and the other HTTP
//! route parameters); its GET carries this host's name (`X-Rs-Host`) and
//! addresses (`X-Rs-Addresses`). What it serves is checked as a whole
//! before it is written, and the URL is remembered (`config.source`) as
//! where a new configuration is asked for later.
//!
//! **Recovery.** When a link fails, its failure is classed (see
//! [`Trouble`]) and each class gets one attempt per run, never a loop:
//! - connectivity: the site and component IDs are POSTed to the
//!   configuration URL (`[recovery] config_url`, else `config.source`);
//!   the answer comes directly (200) or by a redirect, followed once; the
//!   configuration it holds must be valid and for this site and component;
//!   it replaces `config.toml` (the old one kept as `config.toml.prev`);
//! - identity: the same POST must be answered by a redirect to a server on
//!   the site's own networks (`[recovery] site_networks`); a certificate
//!   served directly by the provider is refused; what the site's server
//!   answers must hold a certificate and its private key, which replace the
//!   route's `cert=` and `key=` files (the old ones kept as `.prev`).
//!
//! The caller then tests the link again and logs whether it is back in
//! order; a recovery that fails changes nothing and is logged.
//!
//! **What a fetched configuration may hold.** Whoever serves the URL (or
//! sits on a plain `http://` path to it) writes this site's configuration,
//! so it is checked for more than validity before anything is written:
//! - Architecture invariant: a configuration that did not come from the
//!   local file (bootstrap or recovery) installs no setting that runs a
//!   program or names a key, certificate, passphrase or password file
//!   ([`Config::guarded`]) unless the configuration in use already has
//!   that setting with that value, or the operator allowed its kind here
//!   in `RS_CONFIG_TRUST` (`programs`, `keys`), which only the local
//!   environment sets. Refused ([`Error::Refused`], exit 78): nothing is
//!   written, the settings are named with the remedy.
//! - A plain `http://` configuration source (the URL asked, or a
//!   redirect's target) must be on the site's own networks (`[recovery]
//!   site_networks`; before any configuration exists, its default:
//!   loopback and the private ranges).
//!
//! Registration defaults and `set-configuration` control messages change
//! only `[queue]`, `[throttle]` and `[registration]` (see `infra`), none of
//! which runs a program or names a file.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::config::{self, Config, HttpRoute, MapSource, Peer, Power, Route};
use crate::spool::durable;
use crate::time::Timestamp;
use crate::transport::Trouble;

/// The environment variable naming a configuration URL.
pub const ENV_URL: &str = "RS_CONFIG_URL";
/// The environment variable in which the operator allows a fetched
/// configuration settings that run programs or name key files.
pub const ENV_TRUST: &str = "RS_CONFIG_TRUST";
/// The configuration URL built in (set `RS_DEFAULT_CONFIG_URL` when
/// building).
pub const BUILT_IN_URL: Option<&str> = option_env!("RS_DEFAULT_CONFIG_URL");
/// Where the URL a configuration came from is remembered, in the spool.
pub const SOURCE_FILE: &str = "config.source";

/// Most bytes of a configuration, and of a certificate with its key.
const MAX_CONFIG: u64 = 1 << 20;
const MAX_CERTIFICATE: u64 = 256 << 10;

/// Where a spool's configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Its `config.toml` (or whatever holds that name: never replaced).
    File(PathBuf),
    /// A URL, from the environment or built in (`from` says which).
    Url { url: String, from: &'static str },
    /// Nowhere: a default local configuration is created.
    Default,
}

/// The first source of the chain that applies to the spool at `dir`.
pub fn source(dir: &Path, env: Option<String>) -> Source {
    let file = dir.join(config::FILE_NAME);
    if std::fs::symlink_metadata(&file).is_ok() {
        return Source::File(file);
    }
    match (env.filter(|u| !u.is_empty()), BUILT_IN_URL) {
        (Some(url), _) => Source::Url { url, from: ENV_URL },
        (None, Some(url)) => Source::Url {
            url: url.to_string(),
            from: "the built-in default",
        },
        (None, None) => Source::Default,
    }
}

/// Why a configuration or certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url}: the configuration it serves cannot be used: {reason}")]
    Invalid { url: String, reason: String },
    /// Refused on this site's own terms (what a fetched configuration may
    /// hold, where it may come from): the operator must act (exit 78).
    #[error("{url}: refused: {reason}")]
    Refused { url: String, reason: String },
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
}

impl Error {
    fn fetch(url: &str, reason: impl Into<String>) -> Error {
        Error::Fetch {
            url: url.to_string(),
            reason: reason.into(),
        }
    }
}

/// What the operator allows a configuration that did not come from the
/// local file (`RS_CONFIG_TRUST`, a list of `programs` and `keys`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    pub programs: bool,
    pub keys: bool,
}

impl Trust {
    /// Parses the value of `RS_CONFIG_TRUST` (absent or empty: nothing
    /// allowed; `none`; or `programs`, `keys`, comma-separated).
    pub fn parse(value: Option<&str>) -> Result<Trust, Error> {
        let mut t = Trust::default();
        for word in value.unwrap_or("").split(',').map(str::trim) {
            match word {
                "" | "none" => {}
                "programs" => t.programs = true,
                "keys" => t.keys = true,
                other => {
                    return Err(Error::Refused {
                        url: ENV_TRUST.into(),
                        reason: format!(
                            "`{other}` is not something a fetched configuration may be allowed: use programs, keys, or programs,keys"
                        ),
                    })
                }
            }
        }
        Ok(t)
    }

    fn allows(self, power: Power) -> bool {
        match power {
            Power::Programs => self.programs,
            Power::Keys => self.keys,
        }
    }
}

/// Refuses `new`, fetched from `url`, if it holds a setting that runs a
/// program or names a key file which `trust` does not allow and the
/// configuration in use (`current`, none at bootstrap) does not already
/// have with the same value. The refusal names every such setting.
pub fn check_fetched(
    new: &Config,
    current: Option<&Config>,
    trust: Trust,
    url: &str,
) -> Result<(), Error> {
    let held: Vec<(&str, String)> = current
        .map(|c| c.guarded().into_iter().map(|g| (g.key, g.value)).collect())
        .unwrap_or_default();
    let refused: Vec<_> = new
        .guarded()
        .into_iter()
        .filter(|g| {
            !trust.allows(g.power) && !held.iter().any(|(k, v)| *k == g.key && *v == g.value)
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let mut words: Vec<&str> = refused.iter().map(|g| g.power.word()).collect();
    words.sort();
    words.dedup();
    let said: Vec<String> = refused
        .iter()
        .map(|g| format!("{} = {} ({})", g.name(), g.value, g.power.describe()))
        .collect();
    Err(Error::Refused {
        url: url.to_string(),
        reason: format!(
            "the configuration it serves sets {}; a configuration from a URL may not, unless this site allows it: set {ENV_TRUST}={} in the environment of the rs commands here (or write these settings into config.toml yourself); nothing was installed",
            said.join("; "),
            words.join(",")
        ),
    })
}

/// Refuses a plain `http://` source `url` whose host is not on the
/// networks `nets` (`says`: how the message names them; `remedy`: what
/// the operator can do besides using `https://`).
fn check_plain(
    route: &HttpRoute,
    url: &str,
    nets: &[String],
    says: &str,
    remedy: &str,
) -> Result<(), Error> {
    if route.tls {
        return Ok(());
    }
    let u = url::Url::parse(&route.url).map_err(|e| Error::fetch(url, e.to_string()))?;
    let host = u.host().ok_or_else(|| Error::fetch(url, "no host"))?;
    let port = u.port_or_known_default().unwrap_or(80);
    if on_networks(&host, port, nets) {
        return Ok(());
    }
    Err(Error::Refused {
        url: url.to_string(),
        reason: format!(
            "a configuration comes over plain http:// only from the site's own networks ({says}: {}), and {host} is not on them: use https://, or {remedy}",
            nets.join(", ")
        ),
    })
}

/// This host's interface addresses (loopback and link-local left out).
pub fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed by freeifaddrs
    // below; every node and its address are read only while it lives.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut node = head;
        while !node.is_null() {
            let a = (*node).ifa_addr;
            if !a.is_null() {
                match (*a).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            node = (*node).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out.retain(|a| {
        !a.is_loopback() && !matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
    });
    out.sort();
    out.dedup();
    out
}

/// Reads at most `limit` bytes (and one more, to tell it was over).
fn bounded(mut r: impl Read, limit: u64, url: &str) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    r.by_ref()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::fetch(url, format!("reading the answer: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(Error::fetch(
            url,
            format!("the answer is over {limit} bytes"),
        ));
    }
    Ok(bytes)
}

fn route_of(url: &str) -> Result<HttpRoute, Error> {
    match MapSource::parse(url).map_err(|e| Error::fetch(url, e.to_string()))? {
        MapSource::Http(r) => Ok(r),
        MapSource::File(_) => Err(Error::fetch(url, "a file:// URL cannot be asked")),
    }
}

/// How a configuration is fetched over HTTP(S), for a program that can
/// (every one but `rs-send`, which links no TLS: its start-up is the
/// budget W1 measures, and it takes a `file://` configuration only).
pub type HttpGet = fn(&HttpRoute, &str) -> Result<Vec<u8>, Error>;

/// GETs a configuration, naming this host and its addresses.
pub fn http_get(route: &HttpRoute, url: &str) -> Result<Vec<u8>, Error> {
    let agent =
        crate::transport::http::agent(route).map_err(|e| Error::fetch(url, e.to_string()))?;
    let addresses: Vec<String> = host_addresses().iter().map(|a| a.to_string()).collect();
    let resp = agent
        .get(&route.url)
        .header("X-Rs-Host", crate::spool::host::name().unwrap_or_default())
        .header("X-Rs-Addresses", addresses.join(" "))
        .call()
        .map_err(|e| Error::fetch(url, e.to_string()))?;
    if resp.status().as_u16() != 200 {
        return Err(Error::fetch(
            url,
            format!(
                "answered {} (redirects are not followed here)",
                resp.status()
            ),
        ));
    }
    bounded(resp.into_body().into_reader(), MAX_CONFIG, url)
}

/// Fetches the configuration for a spool that has none from `url`, checks
/// it, and writes it (with `config.source`). Returns the configuration.
/// `http`: how this program fetches over HTTP(S), if it can.
pub fn bootstrap(
    dir: &Path,
    url: &str,
    trust: Trust,
    now: Timestamp,
    http: Option<HttpGet>,
) -> Result<Config, Error> {
    let source = MapSource::parse(url).map_err(|e| Error::fetch(url, e.to_string()))?;
    if let MapSource::Http(route) = &source {
        check_plain(
            route,
            url,
            &config::RecoverySettings::default().site_networks,
            "before a configuration exists, loopback and the private ranges",
            "fetch the first configuration from a host on them",
        )?;
    }
    let text = match source {
        MapSource::File(p) => {
            let f = std::fs::File::open(&p).map_err(|e| Error::fetch(url, e.to_string()))?;
            bounded(f, MAX_CONFIG, url)?
        }
        MapSource::Http(route) => match http {
            Some(get) => get(&route, url)?,
            None => {
                return Err(Error::fetch(
                    url,
                    "this command fetches no configuration over HTTP(S) (rs-send links no TLS): run another rs command once (rs-queue list) to fetch it",
                ))
            }
        },
    };
    let text = String::from_utf8(text).map_err(|_| Error::Invalid {
        url: url.to_string(),
        reason: "not UTF-8 text".into(),
    })?;
    let config = Config::parse(&text).map_err(|reason| Error::Invalid {
        url: url.to_string(),
        reason: reason.to_string(),
    })?;
    check_fetched(&config, None, trust, url)?;
    durable::create_dir_all(dir)?;
    durable::write_durable(
        dir,
        dir,
        SOURCE_FILE,
        format!("{url}\n").as_bytes(),
        now.as_micros(),
    )?;
    durable::write_durable(
        dir,
        dir,
        config::FILE_NAME,
        text.as_bytes(),
        now.as_micros(),
    )?;
    Ok(config)
}

/// Where a new configuration is asked for: `[recovery] config_url`, else
/// the URL the configuration came from.
pub fn config_url(config: &Config, dir: &Path) -> Option<String> {
    if let Some(u) = &config.recovery.config_url {
        return Some(match u {
            MapSource::Http(r) => {
                // Keep the route's parameters (its CA) with the URL.
                let mut s = r.url.clone();
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                if let Some(ca) = &r.ca {
                    q.append_pair("ca", &ca.to_string_lossy());
                }
                if let (Some(c), Some(k)) = (&r.cert, &r.key) {
                    q.append_pair("cert", &c.to_string_lossy());
                    q.append_pair("key", &k.to_string_lossy());
                }
                let q = q.finish();
                if !q.is_empty() {
                    s.push(if s.contains('?') { '&' } else { '?' });
                    s.push_str(&q);
                }
                s
            }
            MapSource::File(p) => format!("file://{}", p.display()),
        });
    }
    std::fs::read_to_string(dir.join(SOURCE_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// What the configuration URL answered the POST with.
enum Answer {
    /// The body of a 200.
    Direct(Vec<u8>),
    /// A redirect's target.
    Redirect(String),
}

/// POSTs this site's and component's IDs (and the peer and trouble) to
/// the configuration URL; follows nothing.
fn ask(route: &HttpRoute, config: &Config, peer: &Peer, trouble: Trouble) -> Result<Answer, Error> {
    let url = &route.url;
    let agent =
        crate::transport::http::agent(route).map_err(|e| Error::fetch(url, e.to_string()))?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("site", config.site.as_str())
        .append_pair("component", config.component.as_str())
        .append_pair("peer", peer.id.as_str())
        .append_pair("trouble", trouble.as_str())
        .finish();
    let resp = agent
        .post(url)
        .header("X-Rs-From", config.component.as_str())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form.as_bytes())
        .map_err(|e| Error::fetch(url, e.to_string()))?;
    let status = resp.status().as_u16();
    match status {
        200 => Ok(Answer::Direct(bounded(
            resp.into_body().into_reader(),
            MAX_CONFIG,
            url,
        )?)),
        301 | 302 | 303 | 307 | 308 => {
            let location = resp
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| {
                    Error::fetch(url, format!("answered {status} without a Location"))
                })?;
            let target = url::Url::parse(url)
                .and_then(|base| base.join(location))
                .map_err(|e| Error::fetch(url, format!("redirected to {location:?}: {e}")))?;
            Ok(Answer::Redirect(target.to_string()))
        }
        _ => Err(Error::fetch(url, format!("answered {status}"))),
    }
}

/// Whether `host` (an address, or a name resolving only to addresses)
/// lies in the site's networks.
fn on_site_networks(host: &url::Host<&str>, port: u16, config: &Config) -> bool {
    on_networks(host, port, &config.recovery.site_networks)
}

/// Whether `host` (an address, or a name resolving only to addresses)
/// lies in the networks `nets` (CIDR).
fn on_networks(host: &url::Host<&str>, port: u16, nets: &[String]) -> bool {
    let nets: Vec<(IpAddr, u8)> = nets
        .iter()
        .filter_map(|n| config::parse_network(n).ok())
        .collect();
    let addresses: Vec<IpAddr> = match host {
        url::Host::Ipv4(a) => vec![IpAddr::V4(*a)],
        url::Host::Ipv6(a) => vec![IpAddr::V6(*a)],
        url::Host::Domain(d) => std::net::ToSocketAddrs::to_socket_addrs(&(*d, port))
            .map(|it| it.map(|s| s.ip()).collect())
            .unwrap_or_default(),
    };
    !addresses.is_empty()
        && addresses
            .iter()
            .all(|a| nets.iter().any(|n| config::in_network(*a, *n)))
}

/// GETs a redirect's target with the configuration route's settings (its
/// CA); `site_only` requires HTTPS on the site's own networks.
fn follow(
    target: &str,
    base: &HttpRoute,
    config: &Config,
    site_only: bool,
    limit: u64,
) -> Result<Vec<u8>, Error> {
    let u = url::Url::parse(target).map_err(|e| Error::fetch(target, e.to_string()))?;
    let host = u.host().ok_or_else(|| Error::fetch(target, "no host"))?;
    let port = u.port_or_known_default().unwrap_or(443);
    let local = on_site_networks(&host, port, config);
    match u.scheme() {
        "https" => {}
        "http" if local && !site_only => {}
        s => {
            return Err(Error::fetch(
                target,
                format!("a redirect to {s}:// is not followed (https://, or http:// on the site's own networks)"),
            ))
        }
    }
    if site_only && !local {
        return Err(Error::fetch(
            target,
            "not on the site's own networks ([recovery] site_networks): a certificate is taken only from there",
        ));
    }
    let route = HttpRoute {
        url: target.to_string(),
        tls: u.scheme() == "https",
        ..base.clone()
    };
    let agent =
        crate::transport::http::agent(&route).map_err(|e| Error::fetch(target, e.to_string()))?;
    let resp = agent
        .get(target)
        .header("X-Rs-Site", config.site.as_str())
        .header("X-Rs-Component", config.component.as_str())
        .call()
        .map_err(|e| Error::fetch(target, e.to_string()))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(Error::fetch(target, format!("answered {status}")));
    }
    bounded(resp.into_body().into_reader(), limit, target)
}

/// One recovery attempt for `peer`'s link after `trouble`, on the spool at
/// `dir` with configuration `config`. Returns what was installed.
pub fn recover(
    dir: &Path,
    config: &Config,
    peer: &Peer,
    trouble: Trouble,
    trust: Trust,
    now: Timestamp,
) -> Result<String, Error> {
    let url = config_url(config, dir).ok_or_else(|| {
        Error::fetch(
            "(none)",
            "no configuration URL to ask: set [recovery] config_url",
        )
    })?;
    let route = route_of(&url)?;
    check_plain(
        &route,
        &url,
        &config.recovery.site_networks,
        "[recovery] site_networks",
        "add its network to [recovery] site_networks in config.toml",
    )?;
    let answer = ask(&route, config, peer, trouble)?;
    match trouble {
        Trouble::Connectivity => {
            let (bytes, from) = match answer {
                Answer::Direct(b) => (b, route.url.clone()),
                Answer::Redirect(t) => (follow(&t, &route, config, false, MAX_CONFIG)?, t),
            };
            install_config(dir, config, &bytes, &from, trust, now)?;
            Ok(format!("a new configuration from {from}"))
        }
        Trouble::Identity => {
            let target = match answer {
                Answer::Direct(_) => {
                    return Err(Error::fetch(
                        &route.url,
                        "served a certificate directly: refused (a certificate comes only through a redirect to a server on the site's own network)",
                    ))
                }
                Answer::Redirect(t) => t,
            };
            let bytes = follow(&target, &route, config, true, MAX_CERTIFICATE)?;
            let installed = install_certificate(peer, &bytes, &target, now)?;
            Ok(format!(
                "a new certificate from {target}, installed as {installed}"
            ))
        }
    }
}

fn install_config(
    dir: &Path,
    current: &Config,
    bytes: &[u8],
    from: &str,
    trust: Trust,
    now: Timestamp,
) -> Result<(), Error> {
    let invalid = |reason: String| Error::Invalid {
        url: from.to_string(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))?;
    let new = Config::parse(text).map_err(|e| invalid(e.to_string()))?;
    if new.site != current.site || new.component != current.component {
        return Err(invalid(format!(
            "it is for site {} component {}, not this site {} component {}",
            new.site, new.component, current.site, current.component
        )));
    }
    check_fetched(&new, Some(current), trust, from)?;
    let path = dir.join(config::FILE_NAME);
    let old = std::fs::read(&path).map_err(|e| crate::spool::Error::io("read", &path, e))?;
    if old == bytes {
        return Err(invalid(
            "it is the configuration in use: nothing to install".into(),
        ));
    }
    let tmp = dir.join("tmp");
    durable::write_durable(&tmp, dir, "config.toml.prev", &old, now.as_micros())?;
    durable::write_durable(&tmp, dir, config::FILE_NAME, bytes, now.as_micros())?;
    Ok(())
}

/// The client certificate and key files of `peer`'s HTTP routes.
fn certificate_files(peer: &Peer) -> Option<(PathBuf, PathBuf)> {
    peer.routes.iter().find_map(|r| {
        let h = match r {
            Route::Http(h) => h,
            Route::Spm(s) => &s.http,
            _ => return None,
        };
        match (&h.cert, &h.key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => None,
        }
    })
}

fn install_certificate(
    peer: &Peer,
    bytes: &[u8],
    from: &str,
    now: Timestamp,
) -> Result<String, Error> {
    let invalid = |reason: &str| Error::Invalid {
        url: from.to_string(),
        reason: reason.to_string(),
    };
    let (cert_path, key_path) = certificate_files(peer)
        .ok_or_else(|| invalid("the peer's routes name no cert= and key= files to replace"))?;
    let mut certs = Vec::new();
    let mut key = None;
    for item in ureq::tls::parse_pem(bytes) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(ureq::tls::PemItem::PrivateKey(k)) => key = Some(k),
            Ok(_) => {}
            Err(_) => return Err(invalid("not PEM")),
        }
    }
    let key = key.ok_or_else(|| invalid("no private key in it"))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in it"));
    }
    let mut cert_pem = String::new();
    let mut key_pem = String::new();
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("not PEM text"))?;
    // Each PEM block to its file, as it came.
    let mut block: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            block = Some((label.to_string(), format!("{line}\n")));
        } else if let Some((label, mut body)) = block.take() {
            body.push_str(line);
            body.push('\n');
            if line.starts_with("-----END ") {
                if label.contains("PRIVATE KEY") {
                    key_pem.push_str(&body);
                } else if label == "CERTIFICATE" {
                    cert_pem.push_str(&body);
                }
            } else {
                block = Some((label, body));
            }
        }
    }
    drop(key);
    for (path, text, mode) in [(&cert_path, &cert_pem, 0o644), (&key_path, &key_pem, 0o600)] {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| invalid("a cert= or key= path without a file name"))?
            .to_string_lossy()
            .into_owned();
        if let Ok(old) = std::fs::read(path) {
            durable::write_durable(dir, dir, &format!("{name}.prev"), &old, now.as_micros())?;
        }
        let written = durable::write_durable(dir, dir, &name, text.as_bytes(), now.as_micros())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&written, std::fs::Permissions::from_mode(mode))
            .map_err(|e| crate::spool::Error::io("chmod", &written, e))?;
    }
    Ok(format!(
        "{} and {}",
        cert_path.display(),
        key_path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_takes_the_file_then_the_environment() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            source(d.path(), Some("https://c.example/rs.toml".into())),
            Source::Url {
                url: "https://c.example/rs.toml".into(),
                from: ENV_URL
            }
        );
        if BUILT_IN_URL.is_none() {
            assert_eq!(source(d.path(), None), Source::Default);
        }
        std::fs::write(d.path().join("config.toml"), "").unwrap();
        assert!(matches!(
            source(d.path(), Some("https://c.example/".into())),
            Source::File(_)
        ));
    }

    #[test]
    fn a_fetched_configuration_adds_no_program_or_key_unless_trusted() {
        let trust = |v: &str| Trust::parse(Some(v)).unwrap();
        assert_eq!(Trust::parse(None).unwrap(), Trust::default());
        assert_eq!(
            trust("keys, programs"),
            Trust {
                programs: true,
                keys: true
            }
        );
        assert!(matches!(
            Trust::parse(Some("all")),
            Err(Error::Refused { .. })
        ));
        let base = "site='a'\ncomponent='a.b'\n[[peer]]\nid='p.hub'\nupstream=true\n";
        let current = Config::parse(&format!(
            "{base}routes=['https://h/rs?ca=/k/ca.pem&cert=/k/c.pem&key=/k/c.key']\n"
        ))
        .unwrap();
        // The same files, another URL: nothing new.
        let moved = Config::parse(&format!(
            "{base}routes=['https://elsewhere/rs?ca=/k/ca.pem&cert=/k/c.pem&key=/k/c.key']\n"
        ))
        .unwrap();
        check_fetched(&moved, Some(&current), Trust::default(), "u").unwrap();
        // At bootstrap nothing is in use: refused unless keys are trusted.
        let e = check_fetched(&moved, None, Trust::default(), "u").unwrap_err();
        assert!(e.to_string().contains("RS_CONFIG_TRUST=keys"), "{e}");
        check_fetched(&moved, None, trust("keys"), "u").unwrap();
        // Another key file; a handler.
        let other = Config::parse(&format!(
            "{base}routes=['https://h/rs?ca=/k/ca.pem&cert=/k/c.pem&key=/tmp/x.key']\n[[rule]]\naction='divert'\nhandler='/bin/sh'\n"
        ))
        .unwrap();
        let e = check_fetched(&other, Some(&current), Trust::default(), "u").unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("route key= of [[peer]] p.hub = /tmp/x.key")
                && e.contains("handler of [[rule]] rule 1 = /bin/sh")
                && e.contains("RS_CONFIG_TRUST=keys,programs")
                && !e.contains("/k/c.pem"),
            "{e}"
        );
        let e = check_fetched(&other, Some(&current), trust("keys"), "u").unwrap_err();
        assert!(e.to_string().contains("RS_CONFIG_TRUST=programs in"), "{e}");
        check_fetched(&other, Some(&current), trust("programs,keys"), "u").unwrap();
    }

    #[test]
    fn networks() {
        let n = config::parse_network("10.0.0.0/8").unwrap();
        assert!(config::in_network("10.1.2.3".parse().unwrap(), n));
        assert!(!config::in_network("11.1.2.3".parse().unwrap(), n));
        assert!(config::in_network("::ffff:10.0.0.1".parse().unwrap(), n));
        let v6 = config::parse_network("fc00::/7").unwrap();
        assert!(config::in_network("fd12::1".parse().unwrap(), v6));
        assert!(!config::in_network("2001:db8::1".parse().unwrap(), v6));
        assert!(config::parse_network("10.0.0.0/33").is_err());
        assert!(config::parse_network("10.0.0.0").is_err());
    }
}
