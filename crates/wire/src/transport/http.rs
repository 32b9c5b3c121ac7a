//! The HTTP(S) route: session mode. One exchange is one POST (or, for a
//! large message, one POST of its own) carrying the messages due and the
//! acknowledgements owed, as one envelope (protected for the peer when
//! protection is configured); the reply is one envelope holding a
//! `message-response` per posted message, the acknowledgements the peer
//! owes this site, and the back-channel messages waiting for it and for
//! what is reachable through it. The customer side always calls; a route
//! with nothing to send still calls (a poll), so that the back-channel
//! flows.
//!
//! Outcomes: a 200 or 204 reply means the peer answered every posted
//! message: each is handed, and the responses in the reply (returned to the
//! runner, which receives them) discard, bury or keep the copies as they
//! say. Anything else (403, 413, 5xx, a timeout, no connection) defers the
//! whole exchange: nothing is recorded, the copies stay queued.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use super::{Error, Exchanged, Outcome, Outgoing, Payload, Transport, Trouble, IN_MEMORY};
use crate::config::HttpRoute;
use crate::message::envelope;
use crate::message::{Message, Name};
use crate::protect::Protector;
use crate::spool::Staged;
use crate::stream::Reheaded;
use crate::time::Timestamp;

/// Most bytes of a reply this client reads.
const MAX_REPLY: u64 = 4 << 30;

pub struct HttpTransport {
    route: HttpRoute,
    me: Name,
    protector: Option<std::sync::Arc<Protector>>,
    now: Timestamp,
    agent: ureq::Agent,
    /// The spool's tmp/, for large bodies and replies.
    tmp: PathBuf,
    /// The epoch of the service point map entry this route came from.
    epoch: Option<u64>,
    /// The class of the last request's failure.
    trouble: std::cell::Cell<Option<Trouble>>,
}

/// The class of a request that got no HTTP answer (`why`, its message): a
/// TLS alert about a certificate is the server rejecting ours (identity);
/// our own refusal of the server's certificate is neither class (no repair
/// of ours fixes a server we do not trust); anything else is connectivity.
fn trouble_of_error(why: &Error) -> Option<Trouble> {
    let w = why.to_string().to_ascii_lowercase();
    if w.contains("alert")
        && (w.contains("certificate") || w.contains("unknown ca") || w.contains("access denied"))
    {
        return Some(Trouble::Identity);
    }
    if w.contains("certificate verify failed") || w.contains("certificate") {
        return None;
    }
    Some(Trouble::Connectivity)
}

/// The class of an HTTP answer that is not a reply: 403 (and nginx's
/// certificate statuses) is identity; a gateway that cannot reach the
/// server is connectivity; anything else neither.
fn trouble_of_status(status: u16, text: &str) -> Option<Trouble> {
    match status {
        403 | 495 | 496 => Some(Trouble::Identity),
        400 if text.contains("SSL certificate") => Some(Trouble::Identity),
        502..=504 => Some(Trouble::Connectivity),
        _ => None,
    }
}

/// Why a route cannot be used at all (a configuration problem).
#[derive(Debug, thiserror::Error)]
#[error("route {url}: {reason}")]
pub struct SetupError {
    url: String,
    reason: String,
}

impl HttpTransport {
    /// The route to the server at `route` from component `me`; large
    /// bodies are staged in `tmp`.
    pub fn new(
        route: &HttpRoute,
        me: &Name,
        protector: Option<std::sync::Arc<Protector>>,
        now: Timestamp,
        tmp: &Path,
    ) -> Result<HttpTransport, SetupError> {
        let agent = agent(route)?;
        Ok(HttpTransport {
            route: route.clone(),
            me: me.clone(),
            protector,
            now,
            agent,
            tmp: tmp.to_path_buf(),
            epoch: None,
            trouble: std::cell::Cell::new(None),
        })
    }

    /// Messages sent through this route carry `epoch`: the route is a
    /// location of a service point map entry of that epoch.
    pub fn with_epoch(mut self, epoch: u64) -> HttpTransport {
        self.epoch = Some(epoch);
        self
    }

    /// One envelope holding every message of the small files in `files`,
    /// as they leave this hop.
    fn merged(&self, files: &[&Outgoing]) -> Result<Vec<u8>, Error> {
        let mut messages: Vec<Message> = Vec::new();
        for f in files {
            messages.extend(f.leaving_messages_at(&self.me, self.now, self.epoch)?);
        }
        Ok(envelope::to_bytes(&messages))
    }

    /// Posts `body` (nothing for a poll); returns what the peer handed back.
    fn post(&self, body: Option<Body>) -> Result<Option<Payload>, Error> {
        let req = self
            .agent
            .post(&self.route.url)
            .header("X-Rs-From", self.me.as_str())
            .header("Content-Type", "multipart/related");
        let resp = match body {
            None => req.send(&[][..]),
            Some(Body::Bytes(b)) => req.send(&b[..]),
            Some(Body::File(f)) => req.send(&f),
            Some(Body::Leaving(r)) => req
                .header("Content-Length", r.len())
                .send(ureq::SendBody::from_owned_reader(r)),
        }
        .map_err(|source| {
            let why = Error::Unreachable {
                url: self.route.url.clone(),
                source,
            };
            self.trouble.set(trouble_of_error(&why));
            why
        })?;
        let status = resp.status().as_u16();
        let mut reader = resp
            .into_body()
            .into_with_config()
            .limit(MAX_REPLY)
            .reader();
        match status {
            200 => self.read_reply(&mut reader).map(Some),
            204 => Ok(None),
            _ => {
                let mut text = Vec::new();
                let _ = reader.take(1024).read_to_end(&mut text);
                let text = String::from_utf8_lossy(&text);
                self.trouble.set(trouble_of_status(status, &text));
                Err(Error::Status {
                    url: self.route.url.clone(),
                    status,
                    said: text.trim().lines().next().unwrap_or("").to_string(),
                })
            }
        }
    }

    /// Reads a reply: in memory when small, else into an unlinked file in tmp/.
    fn read_reply(&self, reader: &mut dyn Read) -> Result<Payload, Error> {
        let broken = |source| Error::Reply {
            url: self.route.url.clone(),
            source,
        };
        let mut head = Vec::new();
        reader
            .take(IN_MEMORY + 1)
            .read_to_end(&mut head)
            .map_err(broken)?;
        if head.len() as u64 <= IN_MEMORY {
            return Ok(Payload::Bytes(head));
        }
        let mut staged = Staged::create(&self.tmp, self.now.as_micros())?;
        let path = staged.path().to_path_buf();
        let staging = |source| Error::Staging {
            path: path.clone(),
            source,
        };
        staged.write_all(&head).map_err(staging)?;
        std::io::copy(reader, &mut staged).map_err(broken)?;
        staged.flush().map_err(staging)?;
        // The open descriptor keeps the bytes; the name goes with `staged`.
        File::open(&path)
            .map(Payload::File)
            .map_err(|source| Error::Reopen { path, source })
    }

    /// The body for `bytes`: protected for the peer when it must be.
    fn protect_bytes(&self, bytes: Vec<u8>) -> Result<Body, Error> {
        match &self.protector {
            None => Ok(Body::Bytes(bytes)),
            Some(p) => {
                let mut out = Vec::with_capacity(bytes.len() * 4 / 3 + 4096);
                p.protect(&mut &bytes[..], &mut out, self.now)?;
                Ok(Body::Bytes(out))
            }
        }
    }

    /// The body for a large envelope file as it leaves this hop, streamed;
    /// protected (streamed into tmp/) when it must be.
    fn protect_file(&self, item: &Outgoing) -> Result<(Body, Option<Staged>), Error> {
        let leaving = item
            .leaving_at(&self.me, self.now, self.epoch)
            .map_err(|source| Error::Read {
                path: item.path.clone(),
                source,
            })?;
        let Some(p) = &self.protector else {
            return Ok((Body::Leaving(leaving), None));
        };
        let mut staged = Staged::create(&self.tmp, self.now.as_micros())?;
        let path = staged.path().to_path_buf();
        let staging = |source| Error::Staging {
            path: path.clone(),
            source,
        };
        {
            let mut out = std::io::BufWriter::new(&mut staged);
            p.protect(
                &mut std::io::BufReader::with_capacity(256 * 1024, leaving),
                &mut out,
                self.now,
            )?;
            out.flush().map_err(staging)?;
        }
        let f = File::open(&path).map_err(staging)?;
        Ok((Body::File(f), Some(staged)))
    }
}

/// A client for `route`'s server: its CA (or the system's), its client
/// certificate if any, its timeout; redirects never followed (one would
/// carry the client certificate, and the messages, elsewhere).
pub fn agent(route: &HttpRoute) -> Result<ureq::Agent, SetupError> {
    let fail = |reason: String| SetupError {
        url: route.url.clone(),
        reason,
    };
    let read = |what: &str, p: &Path| {
        std::fs::read(p).map_err(|e| fail(format!("{what}={}: {e}", p.display())))
    };
    let mut tls = TlsConfig::builder().provider(TlsProvider::NativeTls);
    tls = match &route.ca {
        Some(ca) => {
            let pem = read("ca", ca)?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect::<Vec<Certificate<'static>>>();
            if certs.is_empty() {
                return Err(fail(format!("ca={}: no certificate in it", ca.display())));
            }
            tls.root_certs(RootCerts::new_with_certs(&certs))
        }
        None => tls.root_certs(RootCerts::PlatformVerifier),
    };
    if let (Some(cert), Some(key)) = (&route.cert, &route.key) {
        let cert_pem = read("cert", cert)?;
        let chain = ureq::tls::parse_pem(&cert_pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect::<Vec<Certificate<'static>>>();
        if chain.is_empty() {
            return Err(fail(format!(
                "cert={}: no certificate in it",
                cert.display()
            )));
        }
        let key_pem = read("key", key)?;
        let key = PrivateKey::from_pem(&key_pem)
            .map_err(|e| fail(format!("key={}: {e}", key.display())))?;
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(route.timeout))
        .timeout_connect(Some(route.timeout.min(Duration::from_secs(30))))
        .http_status_as_error(false)
        // A redirect would carry the client certificate (and the
        // messages) elsewhere: none is followed.
        .max_redirects(0)
        .user_agent(format!("rs/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

/// A request body.
enum Body {
    Bytes(Vec<u8>),
    File(File),
    /// A large message as it leaves (its length known).
    Leaving(Reheaded),
}

impl Transport for HttpTransport {
    fn describe(&self) -> String {
        self.route.url.clone()
    }

    fn exchange(&mut self, batch: &[Outgoing]) -> Exchanged {
        let (large, small): (Vec<usize>, Vec<usize>) = (0..batch.len())
            .partition(|&i| std::fs::metadata(&batch[i].path).is_ok_and(|m| m.len() > IN_MEMORY));
        let mut ex = Exchanged {
            outcomes: vec![Outcome::Handed; batch.len()],
            returned: Vec::new(),
            failure: None,
            trouble: None,
        };
        // The small ones (or, with nothing at all, a poll) in one request;
        // each large one in a request of its own. A failed request defers
        // what it carried and everything after it: the link is down.
        let mut failed: Option<Error> = None;
        if !small.is_empty() || batch.is_empty() {
            let files: Vec<&Outgoing> = small.iter().map(|&i| &batch[i]).collect();
            let body = if files.is_empty() {
                Ok(None)
            } else {
                self.merged(&files)
                    .and_then(|b| self.protect_bytes(b))
                    .map(Some)
            };
            match body.and_then(|b| self.post(b)) {
                Ok(back) => ex.returned.extend(back),
                Err(why) => failed = Some(why),
            }
        }
        let mut deferred: Vec<usize> = if failed.is_some() { small } else { Vec::new() };
        for i in large {
            if failed.is_some() {
                deferred.push(i);
                continue;
            }
            let sent = self
                .protect_file(&batch[i])
                .and_then(|(body, _staged)| self.post(Some(body)));
            match sent {
                Ok(back) => ex.returned.extend(back),
                Err(why) => {
                    failed = Some(why);
                    deferred.push(i);
                }
            }
        }
        if let Some(why) = failed {
            for i in deferred {
                ex.outcomes[i] = why.outcome();
            }
            ex.failure = Some(why.to_string());
            ex.trouble = self.trouble.take();
        }
        ex
    }

    fn chunk_size(&self) -> usize {
        self.route.batch
    }

    fn polls(&self) -> bool {
        true
    }
}
