//! One connection's life: its wait as a pending connection (bounded by
//! `[http] handshake_timeout`, cut short when pushed out), its TLS
//! handshake, then its requests through hyper; and the socket wrapper that
//! notes the caller's first byte and fails a reply left unread for
//! `[http] request_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use openssl::ssl::{Ssl, SslAcceptor};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::caller::Caller;
use super::pending::Left;
use super::request::request;
use super::tls::identity_of;
use super::Shared;
use crate::session::Identity;
use crate::time::format_duration;

/// How a pending connection's wait ended.
enum Phase {
    Ended,
    Proved,
    PushedOut,
    TimedOut,
}

/// Serves one connection: while it is pending, only until
/// `[http] handshake_timeout` and unless it is pushed out.
pub(super) async fn connection(
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
pub(super) struct Watched {
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
    pub(super) fn new(
        tcp: TcpStream,
        place: u64,
        heard: Arc<AtomicBool>,
        shared: Arc<Shared>,
    ) -> Watched {
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
