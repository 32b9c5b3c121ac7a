//! `rs-relay serve`: the built-in HTTP(S) server, for tests and small
//! sites, answering every request with [`super::handle`] (as CGI does).
//!
//! Bounded in every way a caller controls: connections served at once
//! (`[http] max_connections`; more wait in the listen queue), the time a
//! request may take to arrive (`[http] request_timeout`, headers and body;
//! a slow or stalled client is cut off, holding no lock), and the body's
//! size (`[http] max_body`, 413 as soon as it is known; what is left of
//! the body is read and dropped, bounded, so the client sees the 413 rather
//! than a reset connection). With `[http]
//! cert` and `key` it speaks TLS, asking for a client certificate verified
//! against `[http] client_ca`; a certificate that fails verification still
//! completes the handshake, so the caller gets a 403 that says why.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{handle, tus, Identity, Request, Response, ResponseBody};
use crate::config::HttpSettings;
use crate::spool::Spool;
use crate::time::Clock;
use crate::transport::Payload;

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {err}")]
    Listen { addr: String, err: std::io::Error },
    #[error("[http] in {config}: {reason}")]
    Tls { config: String, reason: String },
    #[error("cannot start the server: {0}")]
    Runtime(std::io::Error),
}

/// The TLS acceptor for `[http]`, if cert and key are configured.
fn acceptor(http: &HttpSettings, config: &str) -> Result<Option<SslAcceptor>, Error> {
    let (Some(cert), Some(key)) = (&http.cert, &http.key) else {
        return Ok(None);
    };
    let fail = |what: &str, e: openssl::error::ErrorStack| Error::Tls {
        config: config.to_string(),
        reason: format!("{what}: {e}"),
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| fail("TLS", e))?;
    b.set_certificate_chain_file(cert)
        .map_err(|e| fail(&format!("cert {}", cert.display()), e))?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| fail(&format!("key {}", key.display()), e))?;
    b.check_private_key()
        .map_err(|e| fail("the key does not match the certificate", e))?;
    if let Some(ca) = &http.client_ca {
        b.set_ca_file(ca)
            .map_err(|e| fail(&format!("client_ca {}", ca.display()), e))?;
        let names = openssl::x509::X509::stack_from_pem(&std::fs::read(ca).unwrap_or_default())
            .map_err(|e| fail(&format!("client_ca {}", ca.display()), e))?;
        let mut list = openssl::stack::Stack::new().map_err(|e| fail("TLS", e))?;
        for c in names {
            list.push(c.subject_name().to_owned().map_err(|e| fail("TLS", e))?)
                .map_err(|e| fail("TLS", e))?;
        }
        b.set_client_ca_list(list);
        // Ask for a certificate, and finish the handshake whatever it is:
        // the handler says 403, and why, to one that did not verify.
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    }
    Ok(Some(b.build()))
}

/// What the handshake proved of the caller.
fn identity_of(ssl: &openssl::ssl::SslRef) -> Identity {
    let Some(cert) = ssl.peer_certificate() else {
        return Identity::None;
    };
    let result = ssl.verify_result();
    if result != openssl::x509::X509VerifyResult::OK {
        return Identity::Failed(result.error_string().to_string());
    }
    match cert.to_der() {
        Ok(der) => Identity::Verified(der),
        Err(e) => Identity::Failed(e.to_string()),
    }
}

/// What each connection needs.
struct Shared {
    spool: Arc<Spool>,
    clock: Clock,
    log: Arc<dyn Fn(String) + Send + Sync>,
}

/// Serves `spool` on `listen` until the process is stopped. `ready` is
/// called with the address bound (a port of 0 picks one).
pub fn serve(
    spool: Spool,
    listen: &str,
    clock: Clock,
    log: Arc<dyn Fn(String) + Send + Sync>,
    ready: impl FnOnce(SocketAddr, bool),
) -> Result<(), Error> {
    let http = spool.config().http.clone();
    let tls = acceptor(&http, &spool.config_path().display().to_string())?.map(Arc::new);
    let clock = clock.with_offset_resolved();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(http.max_connections.max(1))
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let shared = Arc::new(Shared {
        spool: Arc::new(spool),
        clock,
        log,
    });
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|err| Error::Listen {
                addr: listen.to_string(),
                err,
            })?;
        let addr = listener.local_addr().map_err(Error::Runtime)?;
        ready(addr, tls.is_some());
        // What the relay's rules hold is handled every few seconds: the
        // server is the only command some sites run.
        let pending = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                let s = pending.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let log = |m: String| (s.log)(m);
                    if let Err(e) = crate::relay::run_pending(&s.spool, &s.clock, true, &log) {
                        log(format!("rules: held messages not handled now: {e}"));
                    }
                })
                .await;
            }
        });
        let permits = Arc::new(Semaphore::new(http.max_connections.max(1)));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return Ok(());
            };
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    (shared.log)(format!("accept: {e}"));
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (shared, tls, http) = (shared.clone(), tls.clone(), http.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let timeout = http.request_timeout;
                match tls {
                    None => connection(TokioIo::new(tcp), Identity::None, shared, http).await,
                    Some(acceptor) => {
                        let Ok(ssl) = Ssl::new(acceptor.context()) else {
                            return;
                        };
                        let Ok(mut stream) = tokio_openssl::SslStream::new(ssl, tcp) else {
                            return;
                        };
                        let handshake = std::pin::Pin::new(&mut stream).accept();
                        match tokio::time::timeout(timeout, handshake).await {
                            Ok(Ok(())) => {}
                            _ => return,
                        }
                        let identity = identity_of(stream.ssl());
                        connection(TokioIo::new(stream), identity, shared, http).await
                    }
                }
            });
        }
    })
}

/// Serves the requests of one connection.
async fn connection<I>(io: TokioIo<I>, identity: Identity, shared: Arc<Shared>, http: HttpSettings)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let timeout = http.request_timeout;
    let service = hyper::service::service_fn(move |req| {
        let (identity, shared, http) = (identity.clone(), shared.clone(), http.clone());
        async move { Ok::<_, Infallible>(request(req, identity, shared, http).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(io, service)
        .await;
}

/// Answers one request.
async fn request(
    req: hyper::Request<Incoming>,
    identity: Identity,
    shared: Arc<Shared>,
    http: HttpSettings,
) -> hyper::Response<Body> {
    if let Some(resource) = tus::resource(req.uri().path()) {
        return transfer(req, resource, identity, shared, http).await;
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
    let expects = expects_continue(&req);
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
    let claimed = req
        .headers()
        .get("x-rs-from")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
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
    let answered = tokio::task::spawn_blocking(move || {
        let log = |s: String| (shared.log)(s);
        let req = Request {
            identity,
            claimed,
            body: Payload::Bytes(body),
        };
        handle(&shared.spool, req, &shared.clock, &log)
    })
    .await;
    reply(answered.unwrap_or_else(|e| Response::text(500, format!("the handler failed: {e}\n"))))
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

/// A reply's body: bytes in memory, or a range of a file read as it goes.
pub enum Body {
    Bytes(Option<Bytes>),
    File {
        file: std::fs::File,
        at: u64,
        left: u64,
    },
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        use std::os::unix::fs::FileExt;
        let frame = match self.get_mut() {
            Body::Bytes(b) => b.take().map(|b| Ok(hyper::body::Frame::data(b))),
            Body::File { left: 0, .. } => None,
            Body::File { file, at, left } => {
                let mut buf = vec![0u8; (*left).min(256 << 10) as usize];
                Some(match file.read_at(&mut buf, *at) {
                    Ok(0) => Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file is shorter than it was",
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        *at += n as u64;
                        *left -= n as u64;
                        Ok(hyper::body::Frame::data(Bytes::from(buf)))
                    }
                    Err(e) => Err(e),
                })
            }
        };
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Bytes(b) => b.is_none(),
            Body::File { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Bytes(b) => {
                hyper::body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::File { left, .. } => hyper::body::SizeHint::with_exact(*left),
        }
    }
}

fn reply(r: Response) -> hyper::Response<Body> {
    let body = match &r.body {
        ResponseBody::File { path, start, len } => match std::fs::File::open(path) {
            Ok(file) => Body::File {
                file,
                at: *start,
                left: *len,
            },
            Err(e) => {
                return reply(Response::text(
                    503,
                    format!("cannot open {}: {e}\n", path.display()),
                ))
            }
        },
        _ if r.bytes().is_empty() => Body::Bytes(None),
        _ => Body::Bytes(Some(Bytes::copy_from_slice(r.bytes()))),
    };
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(r.content_type()) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    for (name, value) in &r.headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes());
        if let (Ok(n), Ok(v)) = (name, hyper::header::HeaderValue::from_str(value)) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}
