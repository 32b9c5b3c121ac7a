//! The server side of session mode over HTTP: one handler, run by
//! `rs-relay cgi` (a request handed over by a web server) and by
//! `rs-relay serve` (the built-in server).
//!
//! A request is a POST whose body is one envelope (possibly protected for
//! this site) from the peer its client certificate proves (or, on a link
//! with `authentication = "none"`, the peer it names in `X-Rs-From`):
//! 1. the caller is identified; a request that proves no configured peer
//!    stores nothing and is answered 403;
//! 2. the body goes through the receive path, answering to the caller
//!    (`Answer::Reply`): "accepted" only for what is durable here;
//! 3. the reply is one envelope: one `message-response` per posted message,
//!    then the acknowledgements this site owes the caller, then the
//!    back-channel messages waiting for the caller and for every component
//!    reachable through it, as far as `[http] max_reply` allows (chosen,
//!    leased and recorded by the outbound runner, as any exchange: handing
//!    one out is not delivering it; it stays in sent/ until the caller
//!    acknowledges it in a later request).
//!
//! Statuses: 200 with the reply, 204 when there is nothing to say, 400 for
//! a body that cannot be read (quarantined with the reason), 403, 405 for
//! anything but POST, 413 for a body over `[http] max_body`, 503 when the
//! spool cannot take it now (the caller keeps its copies and retries).

pub mod cgi;
pub mod server;
pub mod tus;

use crate::ack;
use crate::config::{Authentication, Config, Peer};
use crate::message::{envelope, Message, Name};
use crate::outbound;
use crate::protect::Protector;
use crate::receive::{self, Answer, Fate, Inbound};
use crate::spool::Spool;
use crate::time::Clock;
use crate::transport::{Exchanged, Outcome, Outgoing, Payload, Transport, IN_MEMORY};

/// What a caller's TLS connection proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// No client certificate.
    None,
    /// A client certificate verified against the trusted CA (DER).
    Verified(Vec<u8>),
    /// A certificate that failed verification, and why.
    Failed(String),
}

/// A request, as the web server (or the built-in server) hands it over.
pub struct Request {
    pub identity: Identity,
    /// `X-Rs-From`: the component the caller says it is.
    pub claimed: Option<String>,
    /// The body (at most `[http] max_body`, checked by the caller).
    pub body: Payload,
}

/// A reply.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Headers besides the content's type and length (tus's, ranges').
    pub headers: Vec<(&'static str, String)>,
    /// The envelope (200), or a line of text saying why (errors).
    pub body: ResponseBody,
}

#[derive(Debug)]
pub enum ResponseBody {
    Empty,
    Text(String),
    Envelope(Vec<u8>),
    /// `len` bytes of the file at `path` from `start` on (a download).
    File {
        path: std::path::PathBuf,
        start: u64,
        len: u64,
    },
}

impl Response {
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: ResponseBody::Text(text.into()),
        }
    }

    /// A reply with no body.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: ResponseBody::Empty,
        }
    }

    /// The same, with header `name: value` too.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The length of the body.
    pub fn len(&self) -> u64 {
        match &self.body {
            ResponseBody::File { len, .. } => *len,
            _ => self.bytes().len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The reason phrase of the status.
    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            206 => "Partial Content",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            409 => "Conflict",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            415 => "Unsupported Media Type",
            416 => "Range Not Satisfiable",
            460 => "Checksum Mismatch",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }

    /// The media type of the body.
    pub fn content_type(&self) -> &'static str {
        match self.body {
            ResponseBody::Envelope(_) => "multipart/related",
            ResponseBody::File { .. } => "application/octet-stream",
            _ => "text/plain; charset=utf-8",
        }
    }

    /// The body held in memory (none for a file's).
    pub fn bytes(&self) -> &[u8] {
        match &self.body {
            ResponseBody::Empty | ResponseBody::File { .. } => b"",
            ResponseBody::Text(t) => t.as_bytes(),
            ResponseBody::Envelope(b) => b,
        }
    }
}

/// The subject CN of a certificate (DER), if it has one.
fn common_name(der: &[u8]) -> Option<String> {
    let cert = openssl::x509::X509::from_der(der).ok()?;
    let cn = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()?;
    cn.data().to_string().ok()
}

/// The certificate a peer's `client_cert` file holds (DER), if it can be read.
fn pinned(peer: &Peer) -> Option<Vec<u8>> {
    let pem = std::fs::read(peer.client_cert.as_ref()?).ok()?;
    openssl::x509::X509::from_pem(&pem).ok()?.to_der().ok()
}

/// Why a request speaks for no peer (answered 403, and logged).
#[derive(Debug, thiserror::Error)]
pub enum Unidentified {
    #[error("the client certificate did not verify: {0}")]
    Unverified(String),
    #[error("the client certificate (CN {}) is no configured peer's", common_name.as_deref().unwrap_or("none"))]
    UnknownCertificate { common_name: Option<String> },
    #[error("no client certificate, and no X-Rs-From")]
    Anonymous,
    #[error("peer {peer} must present its client certificate (authentication = \"certificate\")")]
    CertificateRequired { peer: Name },
    #[error("{claimed} is not a configured peer")]
    NotAPeer { claimed: String },
    #[error("X-Rs-From says {claimed} but the certificate is {peer}'s")]
    Mismatch { claimed: String, peer: Name },
}

/// The peer a request speaks for, or why it speaks for none.
pub fn identify<'c>(
    config: &'c Config,
    identity: &Identity,
    claimed: Option<&str>,
) -> Result<&'c Peer, Unidentified> {
    let peer = match identity {
        Identity::Failed(why) => return Err(Unidentified::Unverified(why.clone())),
        Identity::Verified(der) => {
            let by_pin = config
                .peers
                .iter()
                .find(|p| pinned(p).is_some_and(|c| c == *der));
            let cn = common_name(der);
            let by_cn = || {
                cn.as_deref()
                    .and_then(|cn| config.peer(cn).filter(|p| p.client_cert.is_none()))
            };
            match by_pin.or_else(by_cn) {
                Some(p) => p,
                None => return Err(Unidentified::UnknownCertificate { common_name: cn }),
            }
        }
        Identity::None => {
            let Some(name) = claimed else {
                return Err(Unidentified::Anonymous);
            };
            match config.peer(name.trim()) {
                Some(p) if p.authentication == Authentication::None => p,
                Some(p) => return Err(Unidentified::CertificateRequired { peer: p.id.clone() }),
                None => {
                    return Err(Unidentified::NotAPeer {
                        claimed: name.trim().to_string(),
                    })
                }
            }
        }
    };
    if let Some(name) = claimed {
        if name.trim() != peer.id.as_str() {
            return Err(Unidentified::Mismatch {
                claimed: name.trim().to_string(),
                peer: peer.id.clone(),
            });
        }
    }
    Ok(peer)
}

/// Answers one request. See the module documentation.
pub fn handle(spool: &Spool, req: Request, clock: &Clock, log: &dyn Fn(String)) -> Response {
    let config = spool.config();
    let peer = match identify(config, &req.identity, req.claimed.as_deref()) {
        Ok(p) => p,
        Err(why) => {
            log(format!("request refused (403): {why}"));
            return Response::text(403, format!("forbidden: {why}\n"));
        }
    };
    match answer(spool, peer, req.body, clock, log) {
        Ok(r) => r,
        Err(e) => {
            log(format!("request from {} not taken now (503): {e}", peer.id));
            Response::text(
                503,
                format!("not taken now: {}; try again later\n", e.for_peer()),
            )
        }
    }
}

/// Receives what `peer` posted and builds the reply.
fn answer(
    spool: &Spool,
    peer: &Peer,
    body: Payload,
    clock: &Clock,
    log: &dyn Fn(String),
) -> crate::spool::Result<Response> {
    let now = clock.now();
    let mut responses: Vec<Message> = Vec::new();
    if !body.is_empty()? {
        let item = Inbound {
            payload: body,
            from: peer.id.clone(),
            label: format!("request from {}", peer.id),
        };
        let got = receive::receive(spool, vec![item], now, Answer::Reply, log)?;
        match got.fates.first() {
            Some(Fate::Left) => {
                return Ok(Response::text(
                    503,
                    "the request cannot be read, and there is no room to keep it\n",
                ))
            }
            Some(Fate::Taken) if got.report.quarantined > 0 => {
                return Ok(Response::text(
                    400,
                    "the request cannot be taken; it is kept in quarantine with the reason\n",
                ))
            }
            _ => {}
        }
        responses = got.replies.iter().map(|o| ack::message(o, now)).collect();
        // A registration is answered in the same reply when it can be.
        if let Err(e) = crate::infra::run_held(spool, now, log) {
            log(format!("infrastructure messages not handled now: {e}"));
        }
        // So is a bulk request (or the chunks asked for next).
        if let Err(e) = crate::bulk::run_held(spool, now, log) {
            log(format!("bulk messages not handled now: {e}"));
        }
    }
    // What this site holds for the caller: acknowledgements and
    // back-channel messages, chosen and recorded as any exchange.
    let mut reply = Reply {
        messages: responses,
        bytes: 0,
        limit: spool.config().http.max_reply.0,
        large: None,
        me: spool.config().component.clone(),
        now,
    };
    let mut db_outbox = None;
    if crate::shared::in_database(spool.config()) {
        // What this instance queued goes where every instance finds it.
        crate::shared::outbox::push(spool, now, log)?;
        // Kept until the reply is built: a large message is read from its
        // file after the runner returns.
        let outbox = db_outbox.insert(crate::shared::outbox::PgOutbox::open(spool)?);
        outbound::flush_with(spool, outbox, peer, &mut reply, clock, log)?;
    } else {
        outbound::flush(spool, peer, &mut reply, clock, log)?;
    }
    let body = match reply.large {
        Some(item) => {
            let mut bytes = Vec::new();
            item.leaving(&reply.me, now)
                .and_then(|mut r| std::io::Read::read_to_end(&mut r, &mut bytes))
                .map_err(|e| crate::spool::Error::io("read", &item.path, e))?;
            bytes
        }
        None if reply.messages.is_empty() => return Ok(Response::empty(204)),
        None => envelope::to_bytes(&reply.messages),
    };
    let protector = Protector::for_peer(peer, crate::protect::OpenPgp::of(spool)).map_err(|e| {
        crate::spool::Error::Keys {
            peer: peer.id.to_string(),
            reason: e.to_string(),
        }
    })?;
    let body = match protector {
        None => body,
        Some(p) => {
            let mut out = Vec::with_capacity(body.len() * 4 / 3 + 4096);
            p.protect(&mut &body[..], &mut out, now)
                .map_err(|e| crate::spool::Error::Keys {
                    peer: peer.id.to_string(),
                    reason: e.to_string(),
                })?;
            out
        }
    };
    Ok(Response {
        status: 200,
        headers: Vec::new(),
        body: ResponseBody::Envelope(body),
    })
}

/// The reply being built, as the route the outbound runner hands the
/// caller's due acknowledgements and back-channel messages to.
struct Reply {
    messages: Vec<Message>,
    bytes: u64,
    limit: u64,
    /// A large back-channel message that goes alone, as its own envelope.
    large: Option<Outgoing>,
    /// This component and the time, for the trace of what leaves.
    me: crate::message::Name,
    now: crate::time::Timestamp,
}

impl Transport for Reply {
    fn describe(&self) -> String {
        "the reply".into()
    }

    fn exchange(&mut self, batch: &[Outgoing]) -> Exchanged {
        let full = || Outcome::Deferred("the reply is full: it goes with the next poll".into());
        let outcomes = batch
            .iter()
            .map(|o| {
                let size = std::fs::metadata(&o.path).map(|m| m.len()).unwrap_or(0);
                if self.large.is_some() || self.bytes + size > self.limit && self.bytes > 0 {
                    return full();
                }
                if size > IN_MEMORY {
                    if !self.messages.is_empty() {
                        return full();
                    }
                    self.large = Some(o.clone());
                    self.bytes += size;
                    return Outcome::Handed;
                }
                match o.leaving_messages(&self.me, self.now) {
                    Ok(ms) => {
                        self.messages.extend(ms);
                        self.bytes += size;
                        Outcome::Handed
                    }
                    Err(why) => why.outcome(),
                }
            })
            .collect();
        Exchanged {
            outcomes,
            returned: Vec::new(),
            failure: None,
            trouble: None,
        }
    }

    fn chunk_size(&self) -> usize {
        usize::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_speaks_for_no_peer_is_told_why() {
        let config = Config::parse(
            "site='b'\ncomponent='b.hub'\n[[peer]]\nid='a.host'\nauthentication='none'\n[[peer]]\nid='c.host'\n",
        )
        .unwrap();
        let why = |claimed: Option<&str>| {
            identify(&config, &Identity::None, claimed)
                .map(|p| p.id.to_string())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            identify(&config, &Identity::None, Some("a.host"))
                .unwrap()
                .id
                .as_str(),
            "a.host"
        );
        assert_eq!(why(None), "no client certificate, and no X-Rs-From");
        assert_eq!(why(Some("m.allory")), "m.allory is not a configured peer");
        assert_eq!(
            why(Some("c.host")),
            "peer c.host must present its client certificate (authentication = \"certificate\")"
        );
        assert_eq!(
            identify(&config, &Identity::Failed("expired".into()), None)
                .map(|p| p.id.to_string())
                .unwrap_err()
                .to_string(),
            "the client certificate did not verify: expired"
        );
    }
}
