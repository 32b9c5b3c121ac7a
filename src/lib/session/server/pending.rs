//! The connections that have not proved a configured peer yet: how many
//! may wait (`[http] max_handshakes`), which one a new arrival pushes out,
//! and the rate-limited log line that counts those closed for want of a
//! peer.
//!
//! Invariant: a place's socket is open while the place is held (the
//! connection's [`super::connection::Watched`] gives up its place before it
//! closes the socket), so looking at it to tell an idle caller is safe.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{lock, Shared};
use crate::config::HttpSettings;
use crate::time::format_duration;

/// The connections that have not yet proved a configured peer: at most
/// `[http] max_handshakes`, each for at most `[http] handshake_timeout`.
/// A new one pushes out the oldest that has sent nothing yet, else the
/// oldest: a caller that has spoken (a peer's flush speaks at once) is
/// pushed out only when no connection is idle, however many idle ones are
/// opened after it.
pub(super) struct Pending {
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
pub(super) enum Left {
    Proved,
    PushedOut,
}

/// How often connections closed for want of a peer are logged, at most
/// (a flood would otherwise fill the log).
const TALLY_EVERY: Duration = Duration::from_secs(10);

impl Pending {
    pub(super) fn new(http: &HttpSettings) -> Pending {
        Pending {
            max: http.max_handshakes.max(1),
            limit: http.handshake_timeout,
            state: Mutex::new(Waiting::default()),
        }
    }

    /// A place for a new connection from `addr` (pushing out another if
    /// all are taken), whether its caller has sent a byte yet, and where
    /// it hears that it left.
    pub(super) fn enter(
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
    pub(super) fn leave(&self, id: u64, left: Option<Left>) {
        let mut w = lock(&self.state);
        if let Some(at) = w.places.iter().position(|p| p.id == id) {
            if let (Some(p), Some(left)) = (w.places.remove(at), left) {
                let _ = p.leave.send(left);
            }
        }
    }

    /// Connection `id`, from `addr`, reached `[http] handshake_timeout`.
    pub(super) fn timed_out(&self, id: u64, addr: SocketAddr) -> Option<String> {
        self.leave(id, None);
        let mut w = lock(&self.state);
        w.timed_out += 1;
        w.last = Some(addr);
        self.tally_due(&mut w)
    }

    /// The line saying how many connections were closed for want of a
    /// peer since the last one, if any were.
    pub(super) fn tally(&self) -> Option<String> {
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
