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

mod body;
mod caller;
mod connection;
mod pending;
mod request;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use body::Body;
use connection::{connection, Watched};
use pending::Pending;
use tls::acceptor;

use crate::config::HttpSettings;
use crate::message::Name;
use crate::spool::Spool;
use crate::time::Clock;

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {err}")]
    Listen { addr: String, err: std::io::Error },
    /// `[http] cert`, `key` or `client_ca` (`what`) cannot be used.
    /// `source` is OpenSSL's error, boxed: every command displays this
    /// enum (through `crate::error::Error`), and naming OpenSSL's type
    /// here would link OpenSSL into rs-send.
    #[error("[http] in {config}: {what}: {source}")]
    Tls {
        config: String,
        what: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot start the server: {0}")]
    Runtime(std::io::Error),
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
                    crate::cycle::pending(&s.spool, &s.clock, true, &log);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_cannot_be_used() {
        let listen = Error::Listen {
            addr: "127.0.0.1:80".into(),
            err: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(
            listen.to_string(),
            "cannot listen on 127.0.0.1:80: address in use"
        );
        let tls = Error::Tls {
            config: "/spool/config.toml".into(),
            what: "cert /etc/rs/cert.pem".into(),
            source: openssl::error::ErrorStack::get().into(),
        };
        assert!(
            tls.to_string()
                .starts_with("[http] in /spool/config.toml: cert /etc/rs/cert.pem: "),
            "{tls}"
        );
        let runtime = Error::Runtime(std::io::Error::other("no threads"));
        assert_eq!(runtime.to_string(), "cannot start the server: no threads");
    }
}
