//! One request, answered: the caller identified from its connection and
//! headers before its body is read (403 and the connection closed if it
//! proves no peer), then a slot and room for its body taken within
//! `[http] request_timeout` (else 503), the body bounded by
//! `[http] max_body` (413), and the handler run off the async threads.
//! Uploads and downloads ([`tus`]) stream their bodies instead.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::Method;

use super::body::{reply, Body};
use super::caller::Caller;
use super::Shared;
use crate::config::HttpSettings;
use crate::session::{handle, identify, tus, Identity, Request, Response, ResponseBody};
use crate::time::format_duration;
use crate::transport::Payload;

/// Answers one request: the caller identified from its connection and
/// headers before anything else.
pub(super) async fn request(
    req: hyper::Request<Incoming>,
    caller: Arc<Caller>,
    shared: Arc<Shared>,
) -> hyper::Response<Body> {
    let claimed = req
        .headers()
        .get("x-rs-from")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let peer = match identify(shared.spool.config(), &caller.identity, claimed.as_deref()) {
        Ok(p) => p.id.clone(),
        Err(why) => return refuse(&req, &caller, &shared, &why.to_string()),
    };
    caller.proved(&peer, &shared);
    let http = shared.http.clone();
    let expects = expects_continue(&req);
    if let Some(resource) = tus::resource(req.uri().path()) {
        let Some(slot) = shared.slot().await else {
            return busy(req.into_body(), expects, &caller, &shared);
        };
        let identity = caller.identity.clone();
        let answered = transfer(req, resource, identity, shared.clone(), http).await;
        drop(slot);
        return answered;
    }
    if req.method() != Method::POST {
        return reply(Response::text(405, "rs answers POST only\n"));
    }
    let max = http.max_body.0;
    let length = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        reply(Response::text(
            413,
            format!("the body is more than the {max} bytes this site takes\n"),
        ))
    };
    if length.is_some_and(|n| n > max) {
        linger(req.into_body(), expects);
        return too_large();
    }
    // A body whose length is not told may take all the room.
    let Some(room) = shared.room(&peer, length.unwrap_or(max)).await else {
        shared.log(format!(
            "request from {} not taken now (503): the bodies of its requests already held [http] max_body ({}) for [http] request_timeout ({})",
            caller.who(),
            http.max_body,
            format_duration(http.request_timeout)
        ));
        linger(req.into_body(), expects);
        return reply(Response::text(
            503,
            "the bodies of this peer's other requests fill [http] max_body here now; try again\n",
        ));
    };
    let Some(slot) = shared.slot().await else {
        return busy(req.into_body(), expects, &caller, &shared);
    };
    let mut incoming = req.into_body();
    let collected = collect(&mut incoming, usize::try_from(max).unwrap_or(usize::MAX));
    let body = match tokio::time::timeout(http.request_timeout, collected).await {
        Err(_) => return reply(Response::text(408, "the body took too long to arrive\n")),
        Ok(Ok(None)) => {
            linger(incoming, expects);
            return too_large();
        }
        Ok(Err(e)) => return reply(Response::text(400, format!("cannot read the body: {e}\n"))),
        Ok(Ok(Some(body))) => body,
    };
    let identity = caller.identity.clone();
    let handler = shared.clone();
    let answered = tokio::task::spawn_blocking(move || {
        let log = |s: String| handler.log(s);
        let req = Request {
            identity,
            claimed,
            body: Payload::Bytes(body),
        };
        handle(&handler.spool, req, &handler.clock, &log)
    })
    .await;
    // The reply is written holding neither.
    drop((slot, room));
    reply(answered.unwrap_or_else(|e| Response::text(500, format!("the handler failed: {e}\n"))))
}

/// Answers a request that proves no peer (`why`) from its headers: 403,
/// its body never read, and the connection closed. tus's discovery
/// (`OPTIONS` on an upload's path) asks and sends nothing, and is answered.
fn refuse(
    req: &hyper::Request<Incoming>,
    caller: &Caller,
    shared: &Shared,
    why: &str,
) -> hyper::Response<Body> {
    let path = req.uri().path();
    let answer = match tus::resource(path) {
        Some(resource) if req.method() == Method::OPTIONS => {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
            };
            let call = tus::Call {
                method: "OPTIONS",
                path,
                resource,
                identity: caller.identity.clone(),
                header: &header,
                body: &mut std::io::empty(),
            };
            tus::handle(&shared.spool, call, &shared.clock, &|s| shared.log(s))
        }
        _ => {
            if !caller.refused.swap(true, Ordering::Relaxed) {
                shared.log(format!(
                    "{} {path} from {} refused (403): {why}; the connection is closed, its body unread",
                    req.method(),
                    caller.who()
                ));
            }
            Response::text(403, format!("forbidden: {why}\n"))
        }
    };
    let mut answer = reply(answer);
    answer.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    answer
}

/// Answers a request no slot was free for within `[http] request_timeout`.
fn busy(body: Incoming, expects: bool, caller: &Caller, shared: &Shared) -> hyper::Response<Body> {
    let http = &shared.http;
    shared.log(format!(
        "request from {} not taken now (503): all [http] max_connections ({}) stayed busy for [http] request_timeout ({})",
        caller.who(),
        http.max_connections.max(1),
        format_duration(http.request_timeout)
    ));
    linger(body, expects);
    reply(Response::text(503, "every slot is busy now; try again\n"))
}

/// Answers an upload or a download (see [`tus`]): the body goes to the
/// handler as it arrives, never whole in memory; a pause longer than
/// `[http] request_timeout` ends it.
async fn transfer(
    req: hyper::Request<Incoming>,
    resource: tus::Resource,
    identity: Identity,
    shared: Arc<Shared>,
    http: HttpSettings,
) -> hyper::Response<Body> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let head = method == "HEAD";
    let expects = expects_continue(&req);
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let mut body = req.into_body();
    tokio::spawn(async move {
        loop {
            let frame = match tokio::time::timeout(http.request_timeout, body.frame()).await {
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the body paused longer than [http] request_timeout",
                )),
                Ok(None) => break,
                Ok(Some(Err(e))) => Err(std::io::Error::other(e)),
                Ok(Some(Ok(f))) => match f.into_data() {
                    Ok(data) => Ok(data),
                    Err(_) => continue,
                },
            };
            let failed = frame.is_err();
            if tx.send(frame).await.is_err() {
                // Answered before the body ended (refused, or complete).
                if !failed {
                    linger(body, expects);
                }
                break;
            }
            if failed {
                break;
            }
        }
    });
    let answered = tokio::task::spawn_blocking(move || {
        let log = |s: String| (shared.log)(s);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut reader = Channel {
            rx,
            current: Bytes::new(),
        };
        let call = tus::Call {
            method: &method,
            path: &path,
            resource,
            identity,
            header: &header,
            body: &mut reader,
        };
        tus::handle(&shared.spool, call, &shared.clock, &log)
    })
    .await;
    let mut r =
        answered.unwrap_or_else(|e| Response::text(500, format!("the handler failed: {e}\n")));
    if head {
        let len = r.len();
        r.body = ResponseBody::Empty;
        if r.status == 200 && len > 0 {
            r = r.with("Content-Length", len.to_string());
        }
    }
    reply(r)
}

/// Reads a body of at most `max` bytes; `None` when it is larger (what is
/// left of it is still in `body`).
async fn collect(body: &mut Incoming, max: usize) -> Result<Option<Vec<u8>>, hyper::Error> {
    let mut got = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if got.len() + data.len() > max {
                return Ok(None);
            }
            got.extend_from_slice(&data);
        }
    }
    Ok(Some(got))
}

/// Whether the client waits for "100 Continue" before it sends the body.
fn expects_continue<B>(req: &hyper::Request<B>) -> bool {
    req.headers()
        .get(hyper::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// How much of a body answered before it was read is still read, and for
/// how long, before the connection is closed.
const LINGER_BYTES: u64 = 16 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and drops what is left of a body answered early (413, 403), so the
/// client sees the answer: a connection closed with data unread is reset,
/// and the reset can reach the client before the answer, as a broken pipe.
/// Bounded in bytes and time; a client waiting for "100 Continue" has sent
/// nothing, so its body is dropped at once.
fn linger(mut body: Incoming, expects_continue: bool) {
    if expects_continue {
        return;
    }
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + LINGER_TIME;
        let mut read = 0u64;
        while read < LINGER_BYTES {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    });
}

/// A request body arriving through a channel, read as a stream.
struct Channel {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl std::io::Read for Channel {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(b)) => self.current = b,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
