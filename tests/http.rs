//! Session mode over HTTP(S), through the real binaries: the built-in
//! server (`rs-relay serve`) and nginx + fcgiwrap running `rs-relay cgi`,
//! with TLS client certificates; a relay between a site and its provider;
//! refusals (certificates, sizes, junk, slow clients).

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use support::http::{route, serve_tls, Nginx, Pair, Pki, Serve};
use support::Site;

/// Sends `n` messages of distinct content from `site` (to `to`, a
/// component, when given); returns ID → content.
fn send_many(site: &Site, n: usize, to: Option<&str>, tag: &str) -> HashMap<String, Vec<u8>> {
    let mut sent = HashMap::new();
    for i in 0..n {
        let content: Vec<u8> = format!("{tag} {i} ")
            .into_bytes()
            .into_iter()
            .chain((0..(100 + i % 900)).map(|j| ((i * 7 + j * 13) % 256) as u8))
            .collect();
        let mut args = vec!["--precedence", ["urgent", "normal", "bulk"][i % 3]];
        if let Some(t) = to {
            args.extend(["--to", t]);
        }
        sent.insert(site.send(&args, &content), content);
    }
    sent
}

fn flush(site: &Site) -> support::Run {
    site.cmd("rs-queue").args(["flush", "--json"]).run()
}

fn outbound(site: &Site) -> usize {
    site.list().len()
}

/// Asserts that `site` received exactly `sent`, each once, byte for byte.
fn assert_received_exactly(site: &Site, sent: &HashMap<String, Vec<u8>>) {
    let got = site.received();
    assert_eq!(got.len(), sent.len(), "delivered count");
    let mut ids = std::collections::HashSet::new();
    for (id, content) in &got {
        assert!(ids.insert(id.clone()), "{id} delivered twice");
        assert_eq!(
            sent.get(id),
            Some(content),
            "{id}: content differs or never sent"
        );
    }
}

/// Flushes `sites` in turn until `done` holds, at most `rounds` times.
fn flush_until(sites: &[&Site], rounds: usize, done: impl Fn() -> bool) {
    for _ in 0..rounds {
        for s in sites {
            flush(s);
        }
        if done() {
            return;
        }
    }
    assert!(done(), "not done after {rounds} rounds of flushes");
}

/// A provider `p.hub` serving HTTPS with client certificates, and a site
/// `a.host` whose upstream it is, reaching it at `url` (filled in by the
/// caller once a server runs).
struct Pair2 {
    pki: Pki,
    server: Pair,
    p: Site,
    a: Site,
    a_cert: Pair,
}

fn provider_and_site() -> Pair2 {
    let p = Site::component("p.hub");
    p.peer("a.host", "ack_timeout = \"1h\"");
    let pki = Pki::new(p.root(), "ca");
    let server = pki.server();
    serve_tls(&p, &server, &pki.ca, "");
    let a = Site::component("a.host");
    let a_cert = pki.client("a.host");
    Pair2 {
        pki,
        server,
        p,
        a,
        a_cert,
    }
}

fn a_uses(s: &Pair2, url: &str, cert: Option<&Pair>) {
    s.a.peer(
        "p.hub",
        &format!(
            "upstream = true\nack_timeout = \"1h\"\nroutes = [\"{}\"]",
            route(url, &s.pki.ca, cert)
        ),
    );
}

/// A thousand messages each way, then both outbound areas empty.
fn thousand_each_way(s: &Pair2) {
    let up = send_many(&s.a, 1000, None, "up");
    let down = send_many(&s.p, 1000, Some("a.host"), "down");
    flush_until(&[&s.a], 6, || {
        s.p.received().len() == 1000
            && s.a.received().len() == 1000
            && outbound(&s.a) == 0
            && outbound(&s.p) == 0
    });
    assert_received_exactly(&s.p, &up);
    assert_received_exactly(&s.a, &down);
}

#[test]
fn a_thousand_messages_each_way_through_the_built_in_server() {
    let s = provider_and_site();
    let srv = Serve::start(&s.p);
    a_uses(&s, &srv.url, Some(&s.a_cert));
    thousand_each_way(&s);
}

#[test]
fn a_thousand_messages_each_way_through_nginx_and_cgi() {
    let s = provider_and_site();
    let web = Nginx::start(&s.p.root().join("nginx"), &s.p, &s.server, &s.pki.ca);
    a_uses(&s, &web.url, Some(&s.a_cert));
    thousand_each_way(&s);
}

/// A wrong or missing client certificate: 403, nothing stored, the client
/// keeps its messages and exits 75.
#[test]
fn a_wrong_or_missing_client_certificate_is_refused_and_nothing_is_stored() {
    let s = provider_and_site();
    let other = Pki::new(s.p.root(), "other-ca");
    let forged = other.client("a.host");
    let stranger = s.pki.client("z.host");
    let srv = Serve::start(&s.p);
    let web = Nginx::start(&s.p.root().join("nginx"), &s.p, &s.server, &s.pki.ca);
    s.a.send(&[], b"keep me");
    for (url, cert) in [
        (&srv.url, None),
        (&srv.url, Some(&forged)),
        (&srv.url, Some(&stranger)),
        (&web.url, None),
        (&web.url, Some(&forged)),
        (&web.url, Some(&stranger)),
    ] {
        let a = Site::component("a.host");
        a.send(&[], b"keep me");
        a.peer(
            "p.hub",
            &format!(
                "upstream = true\nroutes = [\"{}\"]",
                route(url, &s.pki.ca, cert)
            ),
        );
        let r = a.cmd("rs-queue").args(["flush"]).run().code(75);
        assert!(r.stderr.contains("403"), "{url} {cert:?}: {}", r.stderr);
        assert_eq!(a.list()[0]["state"], "queued", "the client keeps it");
    }
    assert!(s.p.received().is_empty());
    assert!(s.p.files("quarantine").is_empty());
}

/// The relay's poll to the provider brings back the back-channel messages
/// for every component behind it; each component's poll to the relay
/// returns only its own; the forward path goes through the relay and the
/// final acknowledgement comes back to the origin.
#[test]
fn a_relay_carries_the_back_channel_of_everything_behind_it() {
    let p = Site::component("p.hub");
    let pki = Pki::new(p.root(), "ca");
    let server = pki.server();
    p.peer("r.relay", "components = [\"a.host\", \"c.host\"]");
    serve_tls(&p, &server, &pki.ca, "");
    let p_srv = Serve::start(&p);

    let r = Site::component("r.relay");
    let r_cert = pki.client("r.relay");
    r.peer(
        "p.hub",
        &format!(
            "upstream = true\nroutes = [\"{}\"]",
            route(&p_srv.url, &pki.ca, Some(&r_cert))
        ),
    );
    r.peer("a.host", "");
    r.peer("c.host", "");
    serve_tls(&r, &server, &pki.ca, "");
    let r_srv = Serve::start(&r);

    let mut leaves = Vec::new();
    for name in ["a.host", "c.host"] {
        let site = Site::component(name);
        let cert = pki.client(name);
        site.peer(
            "r.relay",
            &format!(
                "upstream = true\nroutes = [\"{}\"]",
                route(&r_srv.url, &pki.ca, Some(&cert))
            ),
        );
        leaves.push(site);
    }
    let to_a = send_many(&p, 20, Some("a.host"), "for a");
    let to_c = send_many(&p, 30, Some("c.host"), "for c");
    let up = send_many(&leaves[0], 10, None, "from a");

    // The relay's poll brings everything for both; the leaves then get
    // their own only.
    flush(&r).success();
    assert_eq!(
        outbound(&r),
        50,
        "the relay holds both components' messages"
    );
    flush(&leaves[0]).success();
    assert_received_exactly(&leaves[0], &to_a);
    assert!(leaves[1].received().is_empty());
    flush(&leaves[1]).success();
    assert_received_exactly(&leaves[1], &to_c);

    let id = up.keys().next().unwrap().clone();
    let status = || {
        leaves[0]
            .cmd("rs-ack")
            .args(["status", "--json", &id])
            .run()
            .success()
            .json()["summary"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The final acknowledgement travels back: p.hub → r.relay (in the
    // reply to its poll) → a.host (in the reply to a.host's).
    flush_until(&[&leaves[0], &leaves[1], &r], 8, || {
        outbound(&p) == 0
            && outbound(&r) == 0
            && outbound(&leaves[0]) == 0
            && outbound(&leaves[1]) == 0
            && p.received().len() == 10
            && status().contains("delivered at p.hub")
    });
    assert_received_exactly(&p, &up);
}

/// Posts `body` to the server with curl (as the README shows), presenting
/// `cert`; returns the HTTP status and the reply.
fn curl(url: &str, ca: &Path, cert: &Pair, body: &[u8]) -> (u16, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    std::fs::write(&file, body).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(&cert.cert)
        .arg("--key")
        .arg(&cert.key)
        .args(["-H", "Content-Type: multipart/related", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(url)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut stdout = out.stdout;
    let split = stdout.iter().rposition(|&b| b == b'\n').unwrap();
    let code = String::from_utf8_lossy(&stdout[split + 1..])
        .parse()
        .unwrap();
    stdout.truncate(split);
    (code, stdout)
}

/// An envelope posted by hand with curl is taken, and the reply answers it;
/// a body over the limit gets 413 and stores nothing; junk gets 400 and is
/// kept in quarantine.
#[test]
fn bodies_posted_by_hand_over_the_limit_or_junk() {
    let s = provider_and_site();
    s.p.append_config(&format!(
        "[http]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nmax_body = \"64k\"\n",
        s.server.cert.display(),
        s.server.key.display(),
        s.pki.ca.display()
    ));
    let srv = Serve::start(&s.p);
    a_uses(&s, &srv.url, Some(&s.a_cert));
    let id = s.a.send(&[], b"by hand");
    let envelope = std::fs::read(support::first_file(&s.a.spool.join("queue/normal"))).unwrap();
    let (code, reply) = curl(&srv.url, &s.pki.ca, &s.a_cert, &envelope);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&reply));
    let answers = rs::message::envelope::parse(&reply).unwrap();
    assert!(
        answers.iter().any(|m| matches!(&m.content,
            rs::message::Content::MessageResponse(r) if r.answers.as_str() == id)),
        "the reply answers {id}"
    );
    assert_eq!(s.p.received().len(), 1);

    let (code, _) = curl(&srv.url, &s.pki.ca, &s.a_cert, &vec![b'x'; 100 * 1024]);
    assert_eq!(code, 413);
    let (code, _) = curl(&srv.url, &s.pki.ca, &s.a_cert, b"this is not an envelope");
    assert_eq!(code, 400);
    assert_eq!(s.p.files("quarantine").len(), 1, "the junk is kept");
    assert_eq!(s.p.received().len(), 1, "nothing else stored");
}

/// A body over the limit, sent whole before the client reads anything,
/// still gets its 413: the server reads and drops the rest (bounded) rather
/// than closing on unread data, which resets the connection and loses the
/// answer. Whether the length is declared or the body is chunked; a client
/// waiting for "100 Continue" gets the 413 without sending its body.
#[test]
fn a_body_over_the_limit_sent_whole_gets_its_413() {
    let p = Site::component("p.hub");
    p.peer("a.host", "authentication = \"none\"");
    p.append_config("[http]\nmax_body = \"64k\"\n");
    let srv = Serve::start(&p);
    let size = 4 << 20;
    let ask = |head: &str, body: &[u8]| {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let request = format!("POST /rs HTTP/1.1\r\nHost: x\r\nX-Rs-From: a.host\r\n{head}\r\n");
        c.write_all(request.as_bytes()).unwrap();
        c.write_all(body).expect("the whole body is taken");
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let declared = ask(&format!("Content-Length: {size}\r\n"), &vec![b'x'; size]);
    assert!(declared.starts_with("HTTP/1.1 413"), "declared: {declared}");
    let mut chunked = Vec::new();
    for _ in 0..size / (64 << 10) {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend_from_slice(&[b'x'; 64 << 10]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let chunked = ask("Transfer-Encoding: chunked\r\n", &chunked);
    assert!(chunked.starts_with("HTTP/1.1 413"), "chunked: {chunked}");
    let waiting = ask(
        &format!("Content-Length: {size}\r\nExpect: 100-continue\r\n"),
        b"",
    );
    assert!(waiting.starts_with("HTTP/1.1 413"), "waiting: {waiting}");
    assert!(p.received().is_empty() && p.files("quarantine").is_empty());
}

/// A client that stalls mid-request is cut off after the request timeout,
/// holding no lock: other requests are served meanwhile.
#[test]
fn a_stalled_client_is_cut_off_and_blocks_nobody() {
    let p = Site::component("p.hub");
    p.peer("a.host", "authentication = \"none\"");
    p.append_config("[http]\nrequest_timeout = \"2s\"\nmax_connections = 4\n");
    let srv = Serve::start(&p);
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    stalled
        .write_all(b"POST /rs HTTP/1.1\r\nHost: x\r\nX-Rs-From: a.host\r\nContent-Length: 100000\r\n\r\npartial")
        .unwrap();
    let a = Site::component("a.host");
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nauthentication = \"none\"\nroutes = [\"{}\"]",
            srv.url
        ),
    );
    a.send(&[], b"not blocked");
    flush(&a).success();
    assert_eq!(p.received().len(), 1, "served while the other stalls");
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = stalled.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.contains("408"),
        "cut off after the timeout: {text}"
    );
}

/// A relay over its throttle answers "rejected, retry": the sender keeps
/// its copy and sends it again later; the relay keeps nothing.
#[test]
fn a_relay_over_its_throttle_answers_retry_and_keeps_nothing() {
    let p = Site::component("p.hub");
    p.peer("r.relay", "authentication = \"none\"");
    let p_srv = Serve::start(&p);
    let r = Site::component("r.relay");
    r.peer(
        "p.hub",
        &format!(
            "upstream = true\nauthentication = \"none\"\nroutes = [\"{}\"]",
            p_srv.url
        ),
    );
    r.peer("a.host", "authentication = \"none\"");
    r.append_config("[throttle]\nmax_messages_per_hour = 1\n");
    let r_srv = Serve::start(&r);
    let a = Site::component("a.host");
    a.peer(
        "r.relay",
        &format!(
            "upstream = true\nauthentication = \"none\"\nack_timeout = \"10m\"\nroutes = [\"{}\"]",
            r_srv.url
        ),
    );
    let first = a.send(&[], b"first");
    flush(&a).success();
    flush(&r).success();
    assert_eq!(p.received().len(), 1, "the first goes through");

    let second = a.send(&[], b"second");
    flush(&a).success();
    assert_eq!(outbound(&r), 0, "the relay keeps nothing");
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &second])
        .run()
        .success()
        .json();
    assert_eq!(st["state"], "sent", "the sender keeps its copy: {st}");
    assert!(
        st["acks"][0]["event"] == "retry",
        "the relay said retry: {st}"
    );
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &first])
        .run()
        .success()
        .json();
    assert_eq!(st["state"], "acknowledged", "{st}");
}

// Denial of service before authentication: a bounded attack runs on
// threads beside a legitimate site, whose every flush must be served
// within 2 s, the server's resident memory staying under 64 MiB.

/// A provider `p.hub` serving HTTPS with client certificates (`http`:
/// more `[http]` lines), and a site `a.host` flushing to it, giving up
/// after 10 s (exit 75).
struct Besieged {
    pki: Pki,
    p: Site,
    a: Site,
    srv: Serve,
}

fn besieged(http: &str) -> Besieged {
    let p = Site::component("p.hub");
    p.peer("a.host", "ack_timeout = \"1h\"");
    let pki = Pki::new(p.root(), "ca");
    let server = pki.server();
    serve_tls(&p, &server, &pki.ca, http);
    let srv = Serve::start(&p);
    let a = Site::component("a.host");
    let cert = pki.client("a.host");
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nack_timeout = \"1h\"\nroutes = [\"{}&timeout=10s\"]",
            route(&srv.url, &pki.ca, Some(&cert))
        ),
    );
    Besieged { pki, p, a, srv }
}

impl Besieged {
    /// Three times: `a.host` sends a message and flushes (trying the link
    /// even if it failed); each flush must succeed within 2 s.
    fn served_within_2s(&self) {
        let mut rounds = Vec::new();
        for i in 0..3 {
            self.a.send(&[], format!("legitimate {i}").as_bytes());
            let start = std::time::Instant::now();
            let r = self.a.cmd("rs-queue").args(["flush", "--force"]).run();
            rounds.push((r.code, start.elapsed(), r.stderr));
        }
        eprintln!(
            "flushes under attack (exit, time): {:?}",
            rounds.iter().map(|(c, t, _)| (c, t)).collect::<Vec<_>>()
        );
        let slow: Vec<_> = rounds
            .iter()
            .filter(|(code, took, _)| *code != Some(0) || *took >= Duration::from_secs(2))
            .collect();
        assert!(
            slow.is_empty(),
            "flushes not served within 2 s (exit, time, stderr): {rounds:?}"
        );
        assert_eq!(self.p.received().len(), 3, "each flush delivered");
    }

    /// The server's peak resident memory (VmHWM), in MiB.
    fn peak_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.srv.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kib >> 10
    }

    fn assert_peak_under_64_mib(&self) {
        let peak = self.peak_mib();
        eprintln!("the server's peak resident memory: {peak} MiB");
        assert!(peak < 64, "the server's peak resident memory: {peak} MiB");
    }
}

/// Attackers on threads, each bounded in connections and time (60 s),
/// stopped and joined when dropped.
struct Attack {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Attackers that have had a connection.
    ready: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

/// What an attacker is given: when to stop, and a count to raise once it
/// has a connection.
struct Attacker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ready: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    until: std::time::Instant,
    counted: bool,
}

impl Attacker {
    fn go_on(&self) -> bool {
        !self.stop.load(std::sync::atomic::Ordering::Relaxed)
            && std::time::Instant::now() < self.until
    }

    fn connected(&mut self) {
        if !std::mem::replace(&mut self.counted, true) {
            self.ready
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Attack {
    /// `n` attackers running `attack`, each returning a number to report.
    fn start(
        n: usize,
        attack: impl Fn(usize, &mut Attacker) -> u64 + Send + Sync + 'static,
    ) -> Attack {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ready = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let attack = std::sync::Arc::new(attack);
        let threads = (0..n)
            .map(|i| {
                let mut a = Attacker {
                    stop: stop.clone(),
                    ready: ready.clone(),
                    until: std::time::Instant::now() + Duration::from_secs(60),
                    counted: false,
                };
                let attack = attack.clone();
                std::thread::spawn(move || attack(i, &mut a))
            })
            .collect();
        Attack {
            stop,
            ready,
            threads,
        }
    }

    /// Waits (at most 20 s) until every attacker has had a connection,
    /// then a moment more for the attack to take hold.
    fn in_effect(&self) {
        let start = std::time::Instant::now();
        while self.ready.load(std::sync::atomic::Ordering::Relaxed) < self.threads.len() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "only {} of {} attackers connected",
                self.ready.load(std::sync::atomic::Ordering::Relaxed),
                self.threads.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Stops the attackers; returns what each reported.
    fn stop(mut self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        std::mem::take(&mut self.threads)
            .into_iter()
            .map(|t| t.join().expect("attacker"))
            .collect()
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
    }
}

/// A TLS client presenting `cert` (none: no certificate), trusting any
/// server.
fn connector(cert: Option<&Pair>) -> openssl::ssl::SslConnector {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    if let Some(c) = cert {
        b.set_certificate_file(&c.cert, SslFiletype::PEM).unwrap();
        b.set_private_key_file(&c.key, SslFiletype::PEM).unwrap();
    }
    b.build()
}

/// A TLS connection to 127.0.0.1:`port`, reads and writes giving up after
/// 200 ms; `None` if it cannot be had now.
fn tls_to(
    port: u16,
    tls: &openssl::ssl::SslConnector,
) -> Option<openssl::ssl::SslStream<std::net::TcpStream>> {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    tcp.set_write_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    tls.connect("127.0.0.1", tcp).ok()
}

/// Whether an error only says the other side is not reading (or writing)
/// now: the connection still stands.
fn stalled(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// 16 connections without a certificate pipeline tiny requests and never
/// read the answers (reconnecting when cut); a site's flushes are served
/// meanwhile.
#[test]
fn pipelined_requests_that_never_read_their_answers_do_not_hold_the_slots() {
    let b = besieged("");
    let port = b.srv.port;
    let tls = connector(None);
    let requests = b"POST /rs HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".repeat(200);
    let attack = Attack::start(16, move |_, a| {
        let mut connections = 0;
        while a.go_on() && connections < 200 {
            let Some(mut c) = tls_to(port, &tls) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            connections += 1;
            a.connected();
            for _ in 0..3000 {
                if !a.go_on() {
                    break;
                }
                match c.write_all(&requests) {
                    Err(e) if !stalled(&e) => break,
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        connections
    });
    attack.in_effect();
    b.served_within_2s();
    attack.stop();
    b.assert_peak_under_64_mib();
}

/// 64 TCP connections that never start their TLS handshake (reopened
/// when cut), as many as `[http] max_handshakes` allows by default; a
/// site's flushes are served meanwhile.
#[test]
fn idle_connections_before_the_handshake_do_not_starve_a_flush() {
    let b = besieged("");
    let port = b.srv.port;
    let attack = Attack::start(64, move |_, a| {
        let mut connections = 0;
        while a.go_on() && connections < 500 {
            let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            connections += 1;
            a.connected();
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            while a.go_on() {
                match c.read(&mut [0u8; 64]) {
                    Ok(0) => break,
                    Err(e) if !stalled(&e) => break,
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        connections
    });
    attack.in_effect();
    b.served_within_2s();
    attack.stop();
    b.assert_peak_under_64_mib();
}

/// 16 connections that prove no peer (no certificate, or one the CA
/// signed for a component that is no peer here) each declare a body of
/// 63 MiB and stream it (reconnecting when cut): the server reads none of
/// it and stores nothing; a site's flushes are served meanwhile.
#[test]
fn bodies_from_callers_that_prove_no_peer_are_never_read() {
    let b = besieged("");
    let port = b.srv.port;
    let stranger = b.pki.client("z.host");
    let tls = [connector(None), connector(Some(&stranger))];
    let size = 63 << 20;
    let head = format!(
        "POST /rs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related\r\nContent-Length: {size}\r\n\r\n"
    );
    // Each attacker reports the most it could send on one connection.
    let attack = Attack::start(16, move |i, a| {
        let chunk = vec![b'x'; 64 << 10];
        let (mut connections, mut most) = (0, 0u64);
        while a.go_on() && connections < 100 {
            let Some(mut c) = tls_to(port, &tls[i % 2]) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            connections += 1;
            a.connected();
            if c.write_all(head.as_bytes()).is_err() {
                continue;
            }
            let mut sent = 0u64;
            while sent < size && a.go_on() {
                match c.write(&chunk[..chunk.len().min((size - sent) as usize)]) {
                    Ok(n) => sent += n as u64,
                    Err(e) if stalled(&e) => {}
                    Err(_) => break,
                }
            }
            most = most.max(sent);
            std::thread::sleep(Duration::from_millis(100));
        }
        most
    });
    attack.in_effect();
    b.served_within_2s();
    let sent = attack.stop();
    eprintln!("bytes each attacker sent on one connection, at most: {sent:?}");
    b.assert_peak_under_64_mib();
    assert!(
        sent.iter().all(|&n| n < 16 << 20),
        "bytes an attacker sent on one connection: {sent:?}"
    );
    assert!(b.p.files("quarantine").is_empty(), "nothing kept");
}
