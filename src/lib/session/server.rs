//! `rs-relay serve`: the built-in HTTP(S) server, for tests and small
//! sites, answering every request with [`super::handle`] (as CGI does).
//!
//! Bounded in every way a caller controls, and by who the caller is
//! (authenticate before you allocate):
//! - A new connection has `[http] handshake_timeout` to prove a configured
//!   peer (the TLS handshake and its first request's headers), and at
//!   most `[http] max_handshakes` connections wait to: a new one pushes
//!   out the oldest that has sent nothing (else the oldest), so a caller
//!   that has spoken is pushed out only when no connection is idle. They
//!   hold no slot.
//! - A request that proves no peer is answered 403 from its headers, its
//!   body not read (beyond what came with them, one buffer), and the
//!   connection closed (`Connection: close`); the refusal is logged once
//!   for the connection, with its address.
//! - A request from a peer takes one of `[http] max_connections` slots
//!   while it is read and handled (more wait, at most
//!   `[http] request_timeout`, then 503), released when the handler
//!   returns: writing the reply holds none. The bodies of one peer's
//!   requests hold at most `[http] max_body` in memory at once, so the
//!   memory a caller can make the server take is bounded by who it is.
//! - Time: the request's headers and body must arrive within
//!   `[http] request_timeout` (a slow or stalled client is cut off,
//!   holding no lock), a connection idle that long between requests is
//!   closed, and so is one whose reply goes unread that long.
//! - Size: the body's at most `[http] max_body`, 413 as soon as it is
//!   known; what is left of it is read and dropped, bounded, so the peer
//!   sees the 413 rather than a reset connection.
//!
//! With `[http] cert` and `key` it speaks TLS, asking for a client
//! certificate verified against `[http] client_ca`; a certificate that
//! fails verification still completes the handshake, so the caller gets a
//! 403 that says why.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::{handle, identify, tus, Identity, Request, Response, ResponseBody};
use crate::config::HttpSettings;
use crate::message::Name;
use crate::spool::Spool;
use crate::time::{format_duration, Clock};
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
    http: HttpSettings,
    /// Requests being read and handled (`[http] max_connections`).
    slots: Arc<Semaphore>,
    /// Connections that have not proved a peer yet.
    pending: Pending,
    /// What each peer's request bodies may hold in memory at once, in KiB
    /// (`[http] max_body`).
    budgets: Mutex<HashMap<Name, Arc<Semaphore>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn log(&self, line: String) {
        (self.log)(line)
    }

    /// A slot to read and handle a request in, waited for at most
    /// `[http] request_timeout`.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let slot = self.slots.clone().acquire_owned();
        tokio::time::timeout(self.http.request_timeout, slot)
            .await
            .ok()?
            .ok()
    }

    /// Room for `bytes` of `peer`'s request bodies in memory, where they
    /// hold at most `[http] max_body` at once; waited for at most
    /// `[http] request_timeout`.
    async fn room(&self, peer: &Name, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let kib = |n: u64| u32::try_from(n.div_ceil(1024)).unwrap_or(u32::MAX);
        let whole = kib(self.http.max_body.0).max(1);
        let budget = lock(&self.budgets)
            .entry(peer.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(whole as usize)))
            .clone();
        let room = budget.acquire_many_owned(kib(bytes).min(whole));
        tokio::time::timeout(self.http.request_timeout, room)
            .await
            .ok()?
            .ok()
    }
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
        slots: Arc::new(Semaphore::new(http.max_connections.max(1))),
        pending: Pending::new(&http),
        budgets: Mutex::new(HashMap::new()),
        http,
    });
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|err| Error::Listen {
                addr: listen.to_string(),
                err,
            })?;
        let here = listener.local_addr().map_err(Error::Runtime)?;
        ready(here, tls.is_some());
        // What the relay's rules hold is handled every few seconds: the
        // server is the only command some sites run.
        let pending = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if let Some(line) = pending.pending.tally() {
                    pending.log(line);
                }
                let s = pending.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let log = |m: String| s.log(m);
                    crate::outbound::cycle::pending(&s.spool, &s.clock, true, &log);
                })
                .await;
            }
        });
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, most likely: wait for some to be
                    // closed rather than spin.
                    shared.log(format!("accept on {here}: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (id, heard, left) = Pending::enter(&shared, addr, tcp.as_raw_fd());
            let io = Watched::new(tcp, id, heard, shared.clone());
            tokio::spawn(connection(io, addr, left, shared.clone(), tls.clone()));
        }
    })
}

/// The connections that have not yet proved a configured peer: at most
/// `[http] max_handshakes`, each for at most `[http] handshake_timeout`.
/// A new one pushes out the oldest that has sent nothing yet, else the
/// oldest: a caller that has spoken (a peer's flush speaks at once) is
/// pushed out only when no connection is idle, however many idle ones are
/// opened after it.
struct Pending {
    max: usize,
    limit: Duration,
    state: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next: u64,
    /// Oldest first.
    places: VecDeque<Place>,
    /// Connections closed for want of a peer since a line last said so.
    pushed_out: u64,
    timed_out: u64,
    last: Option<SocketAddr>,
    said: Option<Instant>,
}

/// A pending connection's place.
struct Place {
    id: u64,
    addr: SocketAddr,
    /// The connection's socket, open while the place is held (see
    /// [`Watched`]'s drop).
    fd: RawFd,
    /// Whether the server has read a byte from the caller.
    heard: Arc<AtomicBool>,
    leave: oneshot::Sender<Left>,
}

impl Place {
    /// Whether the caller has sent anything, read or waiting to be (its
    /// connection's task may not have run yet).
    fn heard(&self) -> bool {
        if self.heard.load(Ordering::Relaxed) {
            return true;
        }
        let mut byte = 0u8;
        // SAFETY: `fd` is an open socket while its place is held (the
        // caller holds the lock that `Watched`'s drop takes before the
        // socket is closed); recv looks at one byte, into a local.
        let n = unsafe {
            libc::recv(
                self.fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n > 0
    }
}

/// Why a connection is no longer pending.
enum Left {
    Proved,
    PushedOut,
}

/// How often connections closed for want of a peer are logged, at most
/// (a flood would otherwise fill the log).
const TALLY_EVERY: Duration = Duration::from_secs(10);

impl Pending {
    fn new(http: &HttpSettings) -> Pending {
        Pending {
            max: http.max_handshakes.max(1),
            limit: http.handshake_timeout,
            state: Mutex::new(Waiting::default()),
        }
    }

    /// A place for a new connection from `addr` (pushing out another if
    /// all are taken), whether its caller has sent a byte yet, and where
    /// it hears that it left.
    fn enter(
        shared: &Shared,
        addr: SocketAddr,
        fd: RawFd,
    ) -> (u64, Arc<AtomicBool>, oneshot::Receiver<Left>) {
        let pending = &shared.pending;
        let mut w = lock(&pending.state);
        if w.places.len() >= pending.max {
            let idle = w.places.iter().position(|p| !p.heard());
            if let Some(p) = w.places.remove(idle.unwrap_or(0)) {
                let _ = p.leave.send(Left::PushedOut);
                w.pushed_out += 1;
                w.last = Some(p.addr);
            }
        }
        w.next += 1;
        let id = w.next;
        let heard = Arc::new(AtomicBool::new(false));
        let (leave, left) = oneshot::channel();
        w.places.push_back(Place {
            id,
            addr,
            fd,
            heard: heard.clone(),
            leave,
        });
        let line = pending.tally_due(&mut w);
        drop(w);
        if let Some(line) = line {
            shared.log(line);
        }
        (id, heard, left)
    }

    /// Takes connection `id` out, as `left` (nothing: it ended).
    fn leave(&self, id: u64, left: Option<Left>) {
        let mut w = lock(&self.state);
        if let Some(at) = w.places.iter().position(|p| p.id == id) {
            if let (Some(p), Some(left)) = (w.places.remove(at), left) {
                let _ = p.leave.send(left);
            }
        }
    }

    /// Connection `id`, from `addr`, reached `[http] handshake_timeout`.
    fn timed_out(&self, id: u64, addr: SocketAddr) -> Option<String> {
        self.leave(id, None);
        let mut w = lock(&self.state);
        w.timed_out += 1;
        w.last = Some(addr);
        self.tally_due(&mut w)
    }

    /// The line saying how many connections were closed for want of a
    /// peer since the last one, if any were.
    fn tally(&self) -> Option<String> {
        self.tally_in(&mut lock(&self.state))
    }

    /// The same, if the last line is older than [`TALLY_EVERY`].
    fn tally_due(&self, w: &mut Waiting) -> Option<String> {
        if w.said.is_some_and(|t| t.elapsed() < TALLY_EVERY) {
            return None;
        }
        self.tally_in(w)
    }

    fn tally_in(&self, w: &mut Waiting) -> Option<String> {
        let addr = w.last?;
        let line = format!(
            "closed {} connection(s) that had not proved a peer: {} pushed out by newer ones ([http] max_handshakes = {}), {} at [http] handshake_timeout ({}); the last from {addr}",
            w.pushed_out + w.timed_out,
            w.pushed_out,
            self.max,
            w.timed_out,
            format_duration(self.limit)
        );
        (w.pushed_out, w.timed_out, w.last) = (0, 0, None);
        w.said = Some(Instant::now());
        Some(line)
    }
}

/// What a connection knows of its caller.
struct Caller {
    addr: SocketAddr,
    identity: Identity,
    /// Its connection's place among the pending ones.
    place: u64,
    /// The peer it proved.
    peer: Mutex<Option<Name>>,
    /// Whether a refusal was logged.
    refused: AtomicBool,
}

impl Caller {
    /// The caller proved `peer`: its connection is no longer pending.
    fn proved(&self, peer: &Name, shared: &Shared) {
        shared.pending.leave(self.place, Some(Left::Proved));
        let mut proved = lock(&self.peer);
        if proved.as_ref() != Some(peer) {
            *proved = Some(peer.clone());
        }
    }

    /// The caller, for the log: its address, and the peer it proved.
    fn who(&self) -> String {
        match &*lock(&self.peer) {
            Some(peer) => format!("{peer} at {}", self.addr),
            None => self.addr.to_string(),
        }
    }
}

/// How a pending connection's wait ended.
enum Phase {
    Ended,
    Proved,
    PushedOut,
    TimedOut,
}

/// Serves one connection: while it is pending, only until
/// `[http] handshake_timeout` and unless it is pushed out.
async fn connection(
    io: Watched,
    addr: SocketAddr,
    mut left: oneshot::Receiver<Left>,
    shared: Arc<Shared>,
    tls: Option<Arc<SslAcceptor>>,
) {
    let id = io.place;
    let mut work = std::pin::pin!(serve_caller(io, addr, tls, shared.clone()));
    let mut deadline = std::pin::pin!(tokio::time::sleep(shared.http.handshake_timeout));
    let phase = std::future::poll_fn(|cx| {
        if work.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Phase::Ended);
        }
        if let Poll::Ready(left) = Pin::new(&mut left).poll(cx) {
            return Poll::Ready(match left {
                Ok(Left::Proved) => Phase::Proved,
                _ => Phase::PushedOut,
            });
        }
        deadline.as_mut().poll(cx).map(|()| Phase::TimedOut)
    })
    .await;
    match phase {
        Phase::Proved => work.await,
        Phase::TimedOut => {
            if let Some(line) = shared.pending.timed_out(id, addr) {
                shared.log(line);
            }
        }
        Phase::Ended | Phase::PushedOut => {}
    }
}

/// The TLS handshake (if any), then the caller's requests.
async fn serve_caller(
    io: Watched,
    addr: SocketAddr,
    tls: Option<Arc<SslAcceptor>>,
    shared: Arc<Shared>,
) {
    let place = io.place;
    let stalled = io.stalled.clone();
    let caller = |identity| {
        Arc::new(Caller {
            addr,
            identity,
            place,
            peer: Mutex::new(None),
            refused: AtomicBool::new(false),
        })
    };
    let caller = match tls {
        None => {
            let caller = caller(Identity::None);
            let _ = http1(io, caller.clone(), shared.clone()).await;
            caller
        }
        Some(acceptor) => {
            let Ok(ssl) = Ssl::new(acceptor.context()) else {
                return;
            };
            let Ok(mut stream) = tokio_openssl::SslStream::new(ssl, io) else {
                return;
            };
            if Pin::new(&mut stream).accept().await.is_err() {
                return;
            }
            let caller = caller(identity_of(stream.ssl()));
            let _ = http1(stream, caller.clone(), shared.clone()).await;
            caller
        }
    };
    if stalled.load(Ordering::Relaxed) {
        shared.log(format!(
            "{}: connection closed: its reply went unread for [http] request_timeout ({})",
            caller.who(),
            format_duration(shared.http.request_timeout)
        ));
    }
}

/// What a connection buffers of what it reads, at most (the headers of a
/// request included: a caller that proves no peer costs no more).
const MAX_BUF: usize = 64 << 10;

/// Serves the requests of one connection.
async fn http1<I>(io: I, caller: Arc<Caller>, shared: Arc<Shared>) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = shared.http.request_timeout;
    let service = hyper::service::service_fn(move |req| {
        let (caller, shared) = (caller.clone(), shared.clone());
        async move { Ok::<_, Infallible>(request(req, caller, shared).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(io), service)
        .await
}

/// A connection's socket as the server uses it: it notes the first byte
/// the caller sends (see [`Pending`]), fails a write the caller has not
/// taken for `[http] request_timeout` (so a client that does not read its
/// replies holds nothing longer than that), and gives up the connection's
/// place among the pending ones before the socket is closed.
struct Watched {
    tcp: TcpStream,
    /// The connection's place among the pending ones.
    place: u64,
    heard: Arc<AtomicBool>,
    limit: Duration,
    /// Running while a write waits for the caller to read.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl Watched {
    fn new(tcp: TcpStream, place: u64, heard: Arc<AtomicBool>, shared: Arc<Shared>) -> Watched {
        Watched {
            tcp,
            place,
            heard,
            limit: shared.http.request_timeout,
            waiting: None,
            stalled: Arc::new(AtomicBool::new(false)),
            shared,
        }
    }

    /// `r`, a write's outcome, or an error once writes have waited for
    /// the caller longer than the limit.
    fn writing<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if r.is_ready() {
            self.waiting = None;
            return r;
        }
        let limit = self.limit;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if waiting.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.stalled.store(true, Ordering::Relaxed);
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the reply went unread for [http] request_timeout ({})",
                format_duration(limit)
            ),
        )))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Before `tcp` is closed: a place's socket is open while it is held.
        self.shared.pending.leave(self.place, None);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.heard.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.writing(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.writing(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_flush(cx);
        this.writing(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Answers one request: the caller identified from its connection and
/// headers before anything else.
async fn request(
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
        Err(why) => return refuse(&req, &caller, &shared, &why),
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
