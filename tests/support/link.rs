//! A bad link for tests: a TCP relay on 127.0.0.1 in front of a server
//! that carries at most a budget of bytes from the client on each
//! connection, then breaks it. Cut: the server sees the request end
//! there (the rest never comes) and the client's connection is closed.
//! Stalled: the server sees the same, and the client is left waiting,
//! nothing more carried either way, until the test kills it.
//!
//! Stopped (every thread joined) when dropped; every loop ends by then.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long anything of a link may last, whatever happens.
const LIFETIME: Duration = Duration::from_secs(600);
/// How often a waiting side looks whether the link is stopped.
const TICK: Duration = Duration::from_millis(50);

#[derive(Default)]
struct State {
    /// Bytes from the client a connection carries (`u64::MAX`: all).
    budget: AtomicU64,
    stall: AtomicBool,
    /// Connections that reached their budget.
    broken: AtomicUsize,
    /// Bytes carried from clients, all connections.
    carried: AtomicU64,
    stop: AtomicBool,
}

pub struct Link {
    pub port: u16,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl Link {
    /// A link to the server listening on 127.0.0.1:`port`, carrying
    /// everything until a budget is set.
    pub fn to(port: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let own = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        state.budget.store(u64::MAX, Ordering::SeqCst);
        let shared = state.clone();
        let accept = std::thread::spawn(move || {
            let start = Instant::now();
            let mut carrying = Vec::new();
            while !shared.stop.load(Ordering::SeqCst) && start.elapsed() < LIFETIME {
                match listener.accept() {
                    Ok((client, _)) => {
                        let s = shared.clone();
                        carrying.push(std::thread::spawn(move || carry(client, port, &s)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in carrying {
                let _ = c.join();
            }
        });
        Link {
            port: own,
            state,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Each new connection carries at most `bytes` from its client (`None`:
    /// all of them).
    pub fn budget(&self, bytes: Option<u64>) {
        self.state
            .budget
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Whether a connection at its budget stalls (else it is cut).
    pub fn stall(&self, stall: bool) {
        self.state.stall.store(stall, Ordering::SeqCst);
    }

    /// How many connections reached their budget.
    pub fn broken(&self) -> usize {
        self.state.broken.load(Ordering::SeqCst)
    }

    /// The bytes carried from clients so far.
    pub fn carried(&self) -> u64 {
        self.state.carried.load(Ordering::SeqCst)
    }

    /// Waits up to `limit` for `n` connections to have reached their
    /// budget; whether they did.
    pub fn wait_broken(&self, n: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while self.broken() < n {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(TICK);
        }
        true
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// Carries one connection to the server at `port` until either side
/// closes it, the budget breaks it, or the link stops.
fn carry(client: TcpStream, port: u16, state: &State) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = client.set_nonblocking(false);
    for s in [&client, &server] {
        let _ = s.set_read_timeout(Some(TICK));
        let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    }
    let budget = state.budget.load(Ordering::SeqCst);
    let stall = state.stall.load(Ordering::SeqCst);
    let halted = Arc::new(AtomicBool::new(false));
    let stopped = || state.stop.load(Ordering::SeqCst);
    let start = Instant::now();
    std::thread::scope(|scope| {
        // The server's answers, carried back until it closes (after a
        // stall, read and dropped: the client hears nothing more).
        let (mut from, mut to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
        let quiet = halted.clone();
        scope.spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            while !stopped() && start.elapsed() < LIFETIME {
                match from.read(&mut buf) {
                    Ok(0) => {
                        if !quiet.load(Ordering::SeqCst) {
                            let _ = to.shutdown(Shutdown::Write);
                        }
                        return;
                    }
                    Ok(n) if !quiet.load(Ordering::SeqCst) => {
                        // A client gone: the rest is read and dropped.
                        let _ = to.write_all(&buf[..n]);
                    }
                    Ok(_) => {}
                    Err(e) if timed_out(&e) => {}
                    Err(_) => return,
                }
            }
        });
        let (mut from, mut to) = (&client, &server);
        let mut buf = vec![0u8; 64 << 10];
        let mut sent = 0u64;
        while !stopped() && start.elapsed() < LIFETIME {
            let room = budget - sent;
            if room == 0 {
                // The server sees the request end here.
                let _ = to.shutdown(Shutdown::Write);
                state.broken.fetch_add(1, Ordering::SeqCst);
                if stall {
                    halted.store(true, Ordering::SeqCst);
                    while !stopped() && start.elapsed() < LIFETIME {
                        std::thread::sleep(TICK);
                    }
                } else {
                    let _ = from.shutdown(Shutdown::Both);
                }
                return;
            }
            let want = buf.len().min(room.min(usize::MAX as u64) as usize);
            match from.read(&mut buf[..want]) {
                Ok(0) => {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        let _ = from.shutdown(Shutdown::Both);
                        return;
                    }
                    sent += n as u64;
                    state.carried.fetch_add(n as u64, Ordering::SeqCst);
                }
                Err(e) if timed_out(&e) => {}
                Err(_) => {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
            }
        }
    });
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}
