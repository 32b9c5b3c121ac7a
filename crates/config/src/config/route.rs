//! The ways to reach a peer (`routes = [...]` of a `[[peer]]`): a
//! directory, SMTP, HTTP(S), a service of the map; parsed from their URL
//! form and checked.

use super::*;

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
    fn parse(rest: &str) -> Result<SpmRoute, Invalid> {
        let (service, query) = rest.split_once('?').unwrap_or((rest, ""));
        crate::map::ServiceId::new(service).map_err(check)?;
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
                return Err(check(format!("`{k}` is given twice")));
            }
            match k.as_ref() {
                "version" => {
                    crate::map::Version::parse(&v).map_err(check)?;
                    r.version = Some(v.into_owned());
                }
                "sphere" => {
                    crate::map::Sphere::new(&v).map_err(check)?;
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
    pub(super) fn parse(text: &str) -> Result<HttpRoute, Invalid> {
        let mut url = url::Url::parse(text).map_err(check)?;
        if url.host_str().is_none() {
            return Err(check("no host"));
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
                return Err(check(format!("`{k}` is given twice")));
            }
            match k.as_ref() {
                "ca" => r.ca = Some(PathBuf::from(v.as_ref())),
                "cert" => r.cert = Some(PathBuf::from(v.as_ref())),
                "key" => r.key = Some(PathBuf::from(v.as_ref())),
                "batch" => {
                    r.batch = v.parse().ok().filter(|&n: &usize| n >= 1).ok_or_else(|| {
                        check(format!("batch={v}: a number of messages, at least 1"))
                    })?
                }
                "timeout" => r.timeout = crate::time::parse_duration(&v).map_err(check)?,
                other => return Err(check(format!("unknown parameter `{other}`"))),
            }
        }
        if r.cert.is_some() != r.key.is_some() {
            return Err(check("cert= and key= go together"));
        }
        if !r.tls && (r.ca.is_some() || r.cert.is_some()) {
            return Err(check("ca=, cert= and key= need https://"));
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
    pub fn parse(text: &str) -> Result<Route, Invalid> {
        if let Some(rest) = text.strip_prefix("smtp://") {
            return SmtpRoute::parse(rest)
                .map(Route::Smtp)
                .map_err(|e| value(text, e));
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return HttpRoute::parse(text)
                .map(Route::Http)
                .map_err(|e| value(text, e));
        }
        if let Some(rest) = text.strip_prefix("spm:") {
            return SpmRoute::parse(rest)
                .map(Route::Spm)
                .map_err(|e| value(text, e));
        }
        match text.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => Ok(Route::Dir(PathBuf::from(path))),
            _ => Err(Invalid::Check(format!(
                "`{text}` is not a route: use dir:/path, smtp://host:port?from=ADDR&to=ADDR, https://host/path or spm:SERVICE"
            ))),
        }
    }
}

impl SmtpRoute {
    fn parse(rest: &str) -> Result<SmtpRoute, Invalid> {
        let url = url::Url::parse(&format!("smtp://{rest}")).map_err(check)?;
        let host = url
            .host_str()
            .ok_or_else(|| check("no relay host"))?
            .to_string();
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
                return Err(check(format!("`{k}` is given twice")));
            }
            match k.as_ref() {
                "from" => r.from = v.into_owned(),
                "to" => r.to = v.into_owned(),
                "tls" => {
                    r.tls = match v.as_ref() {
                        "none" => SmtpTls::None,
                        "starttls" => SmtpTls::StartTls,
                        "tls" => SmtpTls::Implicit,
                        other => {
                            return Err(check(format!("tls={other}: use none, starttls or tls")))
                        }
                    }
                }
                "ca" => r.ca = Some(PathBuf::from(v.as_ref())),
                "auth" => r.auth = Some(PathBuf::from(v.as_ref())),
                "batch" => {
                    r.batch = v.parse().ok().filter(|&n: &usize| n >= 1).ok_or_else(|| {
                        check(format!("batch={v}: a number of messages, at least 1"))
                    })?
                }
                "timeout" => r.timeout = crate::time::parse_duration(&v).map_err(check)?,
                other => return Err(check(format!("unknown parameter `{other}`"))),
            }
        }
        if !r.from.contains('@') || !r.to.contains('@') {
            return Err(check("from= and to= must be mail addresses"));
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

/// A check's refusal.
fn check(reason: impl ToString) -> Invalid {
    Invalid::Check(reason.to_string())
}

/// A value as written, and why it is refused.
pub(super) fn value(text: &str, why: Invalid) -> Invalid {
    Invalid::Value {
        text: text.to_string(),
        reason: Box::new(why),
    }
}
