//! Bulk data through the real binaries (SPEC.md sections 11 and 12):
//! authorized by every hop and the receiver first, then sent in chunks the
//! receiver asks for, verified whole, delivered once.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use support::http::{route, serve_tls, Nginx, Pki, Serve};
use support::link::Link;
use support::{Rng, Site};

const T0: &str = "2026-12-02T10:00:00Z";

/// A site, a relay and the provider over directories (removable media):
/// `a.host` → `r.relay` → `p.hub`, and back. Clocks pinned, moved by hand.
struct Chain {
    sites: BTreeMap<&'static str, Site>,
    inbox: BTreeMap<&'static str, PathBuf>,
    minutes: u64,
    /// Over HTTP: the relay's and the provider's servers (kept running).
    servers: Vec<Box<dyn std::any::Any>>,
}

const SITES: [&str; 2] = ["a.host", "b.host"];

impl Chain {
    fn new() -> Chain {
        let mut c = Chain {
            sites: BTreeMap::new(),
            inbox: BTreeMap::new(),
            minutes: 0,
            servers: Vec::new(),
        };
        for n in ["a.host", "b.host", "r.relay", "p.hub"] {
            c.sites.insert(n, Site::component(n));
        }
        for n in ["a.host", "b.host", "r.relay", "p.hub"] {
            let dir = c.sites["p.hub"].stick(&format!("in-{n}"));
            c.inbox.insert(n, dir);
        }
        let route = |c: &Chain, to: &str| format!("routes = [\"dir:{}\"]", c.inbox[to].display());
        c.site("p.hub").peer("r.relay", &route(&c, "r.relay"));
        for s in SITES {
            c.site("r.relay").peer(s, &route(&c, s));
            c.site(s).peer(
                "r.relay",
                &format!("upstream = true\n{}", route(&c, "r.relay")),
            );
            c.site(s).bulk_threshold("4KiB");
        }
        c.site("r.relay")
            .peer("p.hub", &format!("upstream = true\n{}", route(&c, "p.hub")));
        c.set_clock();
        c
    }

    /// The same chain in session mode: `a.host` calls the relay's server
    /// (`rs-relay serve`, or `rs-relay cgi` behind nginx when `cgi`), the
    /// relay calls the provider's `rs-relay serve`; answers and the
    /// chunks asked for come back in the replies.
    fn over_http(cgi: bool, provider: &str) -> Chain {
        let mut c = Chain {
            sites: BTreeMap::new(),
            inbox: BTreeMap::new(),
            minutes: 0,
            servers: Vec::new(),
        };
        for n in ["a.host", "r.relay", "p.hub"] {
            c.sites.insert(n, Site::component(n));
        }
        c.set_clock();
        let pki = Pki::new(c.site("p.hub").root(), "ca");
        let server = pki.server();
        c.site("p.hub").append_config(provider);
        c.site("p.hub").peer("r.relay", "");
        c.site("r.relay").peer("a.host", "");
        serve_tls(c.site("p.hub"), &server, &pki.ca, "");
        let p = Serve::start(c.site("p.hub"));
        c.site("r.relay").peer(
            "p.hub",
            &format!(
                "upstream = true\nroutes = [\"{}\"]",
                route(&p.url, &pki.ca, Some(&pki.client("r.relay")))
            ),
        );
        c.servers.push(Box::new(p));
        let r_url = if cgi {
            let web = Nginx::start(
                &c.site("r.relay").root().join("nginx"),
                c.site("r.relay"),
                &server,
                &pki.ca,
            );
            let url = web.url.clone();
            c.servers.push(Box::new(web));
            url
        } else {
            serve_tls(c.site("r.relay"), &server, &pki.ca, "");
            let r = Serve::start(c.site("r.relay"));
            let url = r.url.clone();
            c.servers.push(Box::new(r));
            url
        };
        c.site("a.host").peer(
            "r.relay",
            &format!(
                "upstream = true\nroutes = [\"{}\"]",
                route(&r_url, &pki.ca, Some(&pki.client("a.host")))
            ),
        );
        c.site("a.host").bulk_threshold("4KiB");
        c
    }

    fn site(&self, n: &str) -> &Site {
        &self.sites[n]
    }

    fn set_clock(&mut self) {
        let t = after_t0(self.minutes);
        for s in self.sites.values_mut() {
            s.at(&t);
        }
    }

    fn later(&mut self, minutes: u64) {
        self.minutes += minutes;
        self.set_clock();
    }

    fn flush(&self, n: &str) {
        let r = self.site(n).cmd("rs-queue").args(["flush"]).run();
        assert!(
            matches!(r.code, Some(0) | Some(75)),
            "{n} flush: {}",
            r.stderr
        );
    }

    fn import(&self, n: &str) -> String {
        let r = self.site(n).import_from(&self.inbox[n]).run();
        assert!(
            matches!(r.code, Some(0) | Some(75)),
            "{n} import: {}",
            r.stderr
        );
        r.stderr
    }

    /// One round trip: the sites send, the relay passes on, the provider
    /// answers, the relay passes back, the sites take what came back.
    /// Returns the provider's import log.
    fn round(&self, sites: &[&str]) -> String {
        for s in sites {
            self.flush(s);
        }
        self.import("r.relay");
        self.flush("r.relay");
        let p = self.import("p.hub");
        self.flush("p.hub");
        self.import("r.relay");
        self.flush("r.relay");
        for s in sites {
            self.import(s);
        }
        p
    }

    fn status(&self, n: &str, id: &str) -> serde_json::Value {
        self.site(n).ack_status(id)
    }
}

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Why each message quarantined at `site` was set aside.
fn quarantine_reasons(site: &Site) -> Vec<String> {
    site.cmd("rs-queue")
        .args(["list", "--area", "quarantine", "--json"])
        .run()
        .success()
        .json_lines()
        .iter()
        .map(|q| q["detail"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn bulk_files(site: &Site, sub: &str) -> Vec<String> {
    let dir = site.spool.join("bulk").join(sub);
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_bulk_file_through_a_relay_is_authorized_paced_verified_and_delivered_once() {
    let mut c = Chain::new();
    c.site("p.hub")
        .append_config("[bulk]\nchunk_size = \"64KiB\"\nwindow = 2\n");
    let data = random(300 * 1024 + 17, 1);
    let sent = c
        .site("a.host")
        .cmd("rs-send")
        .args(["--class", "inventory", "--subclass", "dump", "--json"])
        .stdin(&data)
        .run()
        .success()
        .json();
    let id = sent["id"].as_str().unwrap().to_string();
    assert_eq!(sent["bulk"]["size"], data.len() as u64, "{sent}");
    assert!(c.status("a.host", &id)["summary"]
        .as_str()
        .unwrap()
        .contains("awaiting authorization"),);
    // Round 1: the request goes up, the relay reserves, the provider
    // authorizes and asks for the first window (2 chunks of 64 KiB).
    let log = c.round(&["a.host"]);
    assert!(log.contains("authorized (5 chunks of 65536)"), "{log}");
    assert_eq!(
        bulk_files(c.site("r.relay"), "hop").len(),
        1,
        "the relay's reservation"
    );
    let queued: Vec<_> = c
        .site("a.host")
        .list()
        .into_iter()
        .filter(|e| e["precedence"] == "bulk")
        .collect();
    assert_eq!(queued.len(), 2, "the window: {queued:?}");
    let s = c.status("a.host", &id);
    assert_eq!(s["bulk"]["phase"], "authorized", "{s}");
    // Then windows of two chunks until the provider has all five.
    let mut rounds = 1;
    while c.status("a.host", &id)["state"] != "acknowledged" {
        rounds += 1;
        assert!(
            rounds <= 6,
            "not delivered after {rounds} rounds: {}",
            c.status("a.host", &id)
        );
        c.round(&["a.host"]);
    }
    assert_eq!(
        rounds, 4,
        "paced: three windows of at most two chunks, one round each"
    );
    let got = c.site("p.hub").received();
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!(got[0].0, id);
    assert_eq!(got[0].1, data, "byte-identical");
    let s = c.status("a.host", &id);
    assert!(
        s["summary"].as_str().unwrap().contains("verified sha256:"),
        "{s}"
    );
    assert_eq!(s["bulk"]["chunks_sent"], 5, "no chunk sent twice: {s}");
    assert!(
        bulk_files(c.site("a.host"), "out")
            .iter()
            .all(|f| !f.ends_with(".data")),
        "the sender's copy is gone"
    );
    assert!(
        bulk_files(c.site("r.relay"), "hop").is_empty(),
        "the reservation ended"
    );
    assert!(bulk_files(c.site("p.hub"), "in")
        .iter()
        .all(|f| !f.ends_with(".data")));
    // A late duplicate of the whole exchange changes nothing.
    c.later(30);
    c.round(&["a.host"]);
    assert_eq!(c.site("p.hub").received().len(), 1);
    for n in ["a.host", "r.relay", "p.hub"] {
        c.site(n).assert_nothing_quarantined();
    }
}

#[test]
fn a_hop_with_a_limit_refuses_and_the_provider_never_sees_the_request() {
    let c = Chain::new();
    c.site("r.relay")
        .append_config("[bulk]\nmax_size = \"100KiB\"\n");
    let id = c.site("a.host").send(&[], &random(200 * 1024, 2));
    let p = c.round(&["a.host"]);
    assert!(!p.contains(&id), "the provider saw it: {p}");
    assert!(bulk_files(c.site("p.hub"), "in").is_empty());
    let s = c.status("a.host", &id);
    assert_eq!(s["state"], "dead", "{s}");
    let summary = s["summary"].as_str().unwrap();
    assert!(
        summary.contains("rejected") && summary.contains("r.relay") && summary.contains("max_size"),
        "{summary}"
    );
    let r = c
        .site("a.host")
        .cmd("rs-ack")
        .args(["wait", &id, "--timeout", "1s"])
        .run();
    assert_eq!(r.code, Some(69), "undeliverable: {}", r.stderr);
    assert!(c.site("p.hub").received().is_empty());
    assert!(
        bulk_files(c.site("r.relay"), "hop").is_empty(),
        "nothing reserved"
    );
}

/// A relay's `[[rule]]` that discards (or diverts) data of a class
/// refuses a transfer of that class there: the sender is told which rule,
/// the provider never sees the request, nothing is reserved. A transfer
/// of another class passes the same relay.
#[test]
fn a_relay_rule_that_takes_a_class_refuses_its_transfers() {
    let c = Chain::new();
    c.site("r.relay").append_config(
        "[[rule]]\nname = \"no-secrets\"\nclass = \"secret*\"\naction = \"discard\"\n",
    );
    let data = random(50 * 1024, 23);
    let secret = c
        .site("a.host")
        .cmd("rs-send")
        .args(["--class", "secrets", "--subclass", "dump"])
        .stdin(&data)
        .run()
        .success()
        .stdout
        .trim()
        .to_string();
    let other = c.site("a.host").send(&[], &data);
    for _ in 0..3 {
        c.round(&["a.host"]);
    }
    let s = c.status("a.host", &secret);
    assert_eq!(s["state"], "dead", "{s}");
    let summary = s["summary"].as_str().unwrap();
    assert!(
        summary.contains("no-secrets") && summary.contains("r.relay"),
        "{summary}"
    );
    assert!(!bulk_files(c.site("p.hub"), "in")
        .iter()
        .any(|f| f.starts_with(&secret)));
    assert!(!bulk_files(c.site("r.relay"), "hop")
        .iter()
        .any(|f| f.starts_with(&secret)));
    assert_eq!(c.status("a.host", &other)["state"], "acknowledged");
    let got = c.site("p.hub").received();
    assert!(got.len() == 1 && got[0].0 == other && got[0].1 == data);
}

#[test]
fn a_busy_receiver_defers_and_after_max_deferrals_the_transfer_is_dead() {
    let mut c = Chain::new();
    c.site("p.hub").append_config("[bulk]\nmax_transfers = 1\n");
    c.site("a.host")
        .append_config("[bulk]\nthreshold = \"4KiB\"\nmax_deferrals = 3\nretry = \"10m\"\n");
    // b's transfer takes the provider's only slot, and b then goes quiet.
    let b = c.site("b.host").send(&[], &random(50 * 1024, 3));
    c.round(&["b.host"]);
    assert_eq!(c.status("b.host", &b)["bulk"]["phase"], "authorized");
    let id = c.site("a.host").send(&[], &random(50 * 1024, 4));
    for n in 1..=3 {
        c.round(&["a.host"]);
        let s = c.status("a.host", &id);
        let want = if n < 3 { "bulk" } else { "dead" };
        assert_eq!(s["state"], want, "after deferral {n}: {s}");
        assert_eq!(s["bulk"]["deferrals"], n, "{s}");
        // Before the retry time nothing goes again.
        c.round(&["a.host"]);
        assert_eq!(c.status("a.host", &id)["bulk"]["deferrals"], n);
        c.later(11);
    }
    let s = c.status("a.host", &id);
    assert!(
        s["summary"].as_str().unwrap().contains("deferred 3 times"),
        "{s}"
    );
    assert!(
        s["summary"].as_str().unwrap().contains("max_transfers"),
        "{s}"
    );
    assert_eq!(s["bulk"]["requests"], 3, "{s}");
    // b, back, completes; the provider received only b's.
    for _ in 0..4 {
        c.round(&["b.host"]);
    }
    assert_eq!(c.status("b.host", &b)["state"], "acknowledged");
    let got: Vec<String> = c
        .site("p.hub")
        .received()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(got, vec![b]);
}

/// Over HTTP the request, the answers and the chunks ride the requests and
/// replies: each flush of the site and of the relay moves the transfer on.
fn over_http(cgi: bool) {
    let c = Chain::over_http(cgi, "[bulk]\nchunk_size = \"64KiB\"\nwindow = 3\n");
    let data = random(400 * 1024 + 5, 5);
    let id = c.site("a.host").send(&[], &data);
    let mut flushes = 0;
    while c.status("a.host", &id)["state"] != "acknowledged" {
        flushes += 1;
        assert!(flushes <= 12, "not delivered: {}", c.status("a.host", &id));
        c.flush("a.host");
        c.flush("r.relay");
    }
    let got = c.site("p.hub").received();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.as_str(), &got[0].1), (id.as_str(), &data));
    // Uploaded with tus through the relay, which kept nothing of it.
    let s = c.status("a.host", &id);
    assert_eq!(s["bulk"]["chunks_sent"], 0, "{s}");
    assert_eq!(s["bulk"]["uploaded"], data.len() as u64, "{s}");
    assert!(bulk_files(c.site("r.relay"), "in").is_empty());
    for n in ["a.host", "r.relay", "p.hub"] {
        c.site(n).assert_nothing_quarantined();
    }
    assert!(bulk_files(c.site("r.relay"), "hop").is_empty());
}

#[test]
fn a_bulk_file_through_a_relay_over_https() {
    over_http(false);
}

#[test]
fn a_bulk_file_through_a_relay_behind_nginx_and_cgi() {
    over_http(true);
}

/// Runs `args` on `site`, killed (SIGKILL) at a random moment within
/// `span` microseconds when `kill`, then to completion. Returns whether the
/// kill landed mid-run.
fn step(site: &Site, args: &[&str], kill: bool, rng: &mut Rng, span: &mut u64) -> bool {
    let mut landed = false;
    if kill {
        let mut cmd = site.cmd(args[0]).args(&args[1..]).command();
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .stdin(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(*span)));
        let _ = child.kill();
        landed = !child.wait().unwrap().success();
    }
    let start = std::time::Instant::now();
    let r = site.cmd(args[0]).args(&args[1..]).run();
    assert!(
        matches!(r.code, Some(0) | Some(75)),
        "{args:?}: {}",
        r.stderr
    );
    *span = (*span * 3 + start.elapsed().as_micros() as u64) / 4;
    landed
}

/// The data bytes of the chunks in `dir` not counted before (a file left
/// by a killed import is counted once).
fn chunk_bytes(dir: &std::path::Path, counted: &mut std::collections::HashSet<String>) -> u64 {
    let mut n = 0;
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type().is_file() || name.starts_with('.') || !counted.insert(name) {
            continue;
        }
        let text =
            String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default()).into_owned();
        if let Some(i) = text.find("application/vnd.rs.bulk-chunk") {
            let size = text[i..]
                .split("size=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            n += size;
        }
    }
    n
}

/// Resume: every step of transfers killed at random moments, on the
/// sender's side and the receiver's. Each file arrives intact, once, and
/// the chunk data that went over the medium is less than twice the file.
#[test]
fn bulk_transfers_killed_at_random_moments_arrive_once_and_resume() {
    killed_at_random_moments(false);
}

/// The same for sealed transfers (fewer trials: each is three chunks of
/// 3.7 MB, asked for one at a time), whose receiver writes each opened
/// chunk as its text in the message it delivers.
#[test]
fn sealed_transfers_killed_at_random_moments_arrive_once_and_resume() {
    killed_at_random_moments(true);
}

fn killed_at_random_moments(sealed: bool) {
    let trials = if sealed {
        (crash_trials() / 4).max(4)
    } else {
        crash_trials()
    };
    let mut a = Site::component("a.host");
    let mut p = Site::component("p.hub");
    let up = a.stick("to-p");
    let down = a.stick("to-a");
    a.peer(
        "p.hub",
        &format!("upstream = true\nroutes = [\"dir:{}\"]", up.display()),
    );
    p.peer("a.host", &format!("routes = [\"dir:{}\"]", down.display()));
    a.bulk_threshold("4KiB");
    if sealed {
        let (identity, recipient) = age_key(&p, "p.hub");
        a.append_config(&format!("[bulk]\nencrypt_to = [\"{recipient}\"]\n"));
        p.append_config(&format!(
            "[bulk]\nidentity = \"{}\"\nwindow = 1\n",
            identity.display()
        ));
    } else {
        p.append_config("[bulk]\nchunk_size = \"8KiB\"\nwindow = 4\n");
    }
    let (ups, downs) = (up.display().to_string(), down.display().to_string());
    // Both clocks pinned from the first send on (the receiver refuses
    // what was made a day from its time).
    a.at(&after_t0(0));
    p.at(&after_t0(0));
    let mut rng = Rng::from_env();
    let mut spans = [20_000u64; 4];
    let mut landed = [0usize; 4];
    let mut minutes = 0u64;
    let mut worst = 0f64;
    for trial in 0..trials {
        let size = if sealed {
            2 * 57 * 65536 + 1 + (trial * 997) % 40_000
        } else {
            64 * 1024 + (trial * 997) % 40_000
        };
        let data = random(size, trial as u64 + 11);
        let id = a.send(&[], &data);
        let mut counted = std::collections::HashSet::new();
        let mut bytes = 0u64;
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(
                rounds <= 40,
                "trial {trial}: {id} not delivered after 40 rounds"
            );
            // The clocks move 11 minutes a round: anything not
            // acknowledged is sent again.
            minutes += 11;
            let t = after_t0(minutes);
            a.at(&t);
            p.at(&t);
            let victim = rng.below(4) as usize;
            let steps: [(&Site, Vec<&str>); 4] = [
                (&a, vec!["rs-queue", "flush"]),
                (&p, vec!["rs-relay", "import", "--from", &ups]),
                (&p, vec!["rs-queue", "flush"]),
                (&a, vec!["rs-relay", "import", "--from", &downs]),
            ];
            for (i, (site, args)) in steps.iter().enumerate() {
                if i == 1 {
                    bytes += chunk_bytes(&up, &mut counted);
                }
                landed[i] += step(site, args, i == victim, &mut rng, &mut spans[i]) as usize;
            }
            let st = a.ack_status(&id);
            if st["state"] == "acknowledged" {
                break;
            }
            assert_eq!(st["state"], "bulk", "trial {trial}: {st}");
        }
        delivered_once(&p, &id, &data, trial);
        let ratio = bytes as f64 / size as f64;
        worst = worst.max(ratio);
        assert!(
            ratio < 2.0,
            "trial {trial}: {bytes} chunk bytes sent for {size}"
        );
    }
    assert_eq!(p.received().len(), trials, "nothing else delivered");
    eprintln!(
        "{trials} transfers; kills landed mid-run: a flush {}, p import {}, p flush {}, a import {}; worst bytes sent / size {worst:.2}",
        landed[0], landed[1], landed[2], landed[3]
    );
    for s in [&a, &p] {
        s.assert_nothing_quarantined();
    }
}

/// A download to a group behind a relay: the relay fetches it from the
/// provider once, then sends it to each member in a transfer of its own,
/// with a state per member (a member that defers is asked again as any
/// receiver is, see above; one that rejects is dead, the relay's copy for
/// it kept); the relay's copy goes when every member has it.
#[test]
fn a_group_download_reaches_every_member_once_with_one_fetch_from_the_provider() {
    let mut c = Chain::new();
    // The provider routes the group to the relay, which knows its members.
    let p_config = std::fs::read_to_string(c.site("p.hub").spool.join("config.toml")).unwrap();
    std::fs::write(
        c.site("p.hub").spool.join("config.toml"),
        p_config.replace(
            "id = \"r.relay\"\n",
            "id = \"r.relay\"\ncomponents = [\"ops\"]\n",
        ),
    )
    .unwrap();
    c.site("p.hub").bulk_threshold("4KiB");
    c.site("r.relay").append_config(
        "[[group]]\nname = \"ops\"\nmembers = [\"a.host\", \"b.host\"]\n\n[bulk]\nchunk_size = \"32KiB\"\nwindow = 8\nretry = \"10m\"\n",
    );
    // b refuses at first: it takes nothing above 100 KiB.
    c.site("b.host")
        .append_config("[bulk]\nthreshold = \"4KiB\"\nmax_size = \"100KiB\"\n");
    let download = |c: &Chain, data: &[u8]| {
        c.site("p.hub")
            .cmd("rs-send")
            .args([
                "--class",
                "firmware",
                "--subclass",
                "image",
                "--to",
                "group:ops",
            ])
            .stdin(data)
            .run()
            .success()
            .stdout
            .trim()
            .to_string()
    };
    let data = random(200 * 1024 + 3, 9);
    let id = download(&c, &data);
    // Down: p → r; r answers and asks; p sends the chunks; r verifies and
    // starts one transfer per member.
    let down = |c: &Chain| {
        c.flush("p.hub");
        c.import("r.relay");
        c.flush("r.relay");
        for s in SITES {
            c.import(s);
            c.flush(s);
        }
        c.import("r.relay");
        c.flush("r.relay");
        c.import("p.hub");
    };
    let mut rounds = 0;
    while c.status("p.hub", &id)["state"] != "acknowledged" {
        rounds += 1;
        assert!(rounds <= 6, "{}", c.status("p.hub", &id));
        down(&c);
    }
    let s = c.status("p.hub", &id);
    assert_eq!(
        s["bulk"]["chunks_sent"], 7,
        "one fetch from the provider: {s}"
    );
    let transfers = c
        .site("r.relay")
        .cmd("rs-queue")
        .args(["list", "--area", "bulk", "--json"])
        .run()
        .success()
        .json_lines();
    let out: Vec<_> = transfers
        .iter()
        .filter(|t| t["direction"] == "out")
        .collect();
    assert_eq!(out.len(), 2, "one delivery state per member: {transfers:?}");
    for _ in 0..4 {
        down(&c);
    }
    let got_a = c.site("a.host").received();
    assert_eq!(got_a.len(), 1);
    assert_eq!(got_a[0].1, data, "a.host has it, byte-identical");
    assert!(c.site("b.host").received().is_empty(), "b.host refused it");
    let b_state = |c: &Chain| {
        c.site("r.relay")
            .cmd("rs-queue")
            .args(["list", "--area", "bulk", "--json"])
            .run()
            .success()
            .json_lines()
            .into_iter()
            .find(|t| t["direction"] == "out" && t["summary"].as_str().unwrap().contains("dead"))
    };
    assert!(b_state(&c).is_some(), "b.host's transfer is dead: rejected");
    // The provider is told b.host's copy is undeliverable.
    let copy = rs::receive::decide::copy_id(
        &rs::message::MessageId::parse(&id).unwrap(),
        &rs::message::Target::Component(rs::message::Name::new("component", "b.host").unwrap()),
    );
    let told = c.status("p.hub", copy.as_str());
    assert_eq!(told["state"], "dead", "{told}");
    let summary = told["summary"].as_str().unwrap();
    assert!(
        summary.contains("undeliverable at r.relay") && summary.contains("max_size"),
        "{summary}"
    );
    // b.host takes larger transfers now: a new download goes to both, and
    // the relay's copy of it goes once both have it.
    c.site("b.host")
        .append_config("[bulk]\nthreshold = \"4KiB\"\n");
    let data2 = random(150 * 1024, 10);
    let id2 = download(&c, &data2);
    for _ in 0..8 {
        down(&c);
        c.later(1);
    }
    assert_eq!(c.status("p.hub", &id2)["state"], "acknowledged");
    for s in SITES {
        let got: Vec<_> = c
            .site(s)
            .received()
            .into_iter()
            .filter(|(_, d)| *d == data2)
            .collect();
        assert_eq!(got.len(), 1, "{s} has the second download once");
    }
    let left: Vec<String> = bulk_files(c.site("r.relay"), "out")
        .into_iter()
        .filter(|f| f.ends_with(".data"))
        .collect();
    assert_eq!(
        left.len(),
        1,
        "only the copy for b.host's dead first transfer stays: {left:?}"
    );
}

/// rs-send killed after keeping the data aside and before its request was
/// queued (the ID never printed): the next run past `[bulk] retry` asks
/// again, and the transfer completes.
#[test]
fn a_transfer_whose_request_never_left_asks_again() {
    let mut c = Chain::new();
    let data = random(40 * 1024, 12);
    let id = c.site("a.host").send(&[], &data);
    // What a kill before admission leaves: no request queued.
    for e in walkdir::WalkDir::new(c.site("a.host").spool.join("queue"))
        .into_iter()
        .flatten()
    {
        if e.file_name().to_string_lossy().contains(&id) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    c.round(&["a.host"]);
    assert_eq!(
        c.status("a.host", &id)["bulk"]["requests"],
        1,
        "not before retry"
    );
    c.later(61);
    for _ in 0..3 {
        c.round(&["a.host"]);
    }
    let s = c.status("a.host", &id);
    assert_eq!(s["state"], "acknowledged", "{s}");
    assert_eq!(s["bulk"]["requests"], 2, "{s}");
    assert_eq!(c.site("p.hub").received(), vec![(id, data)]);
}

/// An urgent message sent while a transfer's chunks wait goes first.
#[test]
fn an_urgent_message_does_not_wait_behind_the_chunks() {
    let c = Chain::new();
    c.site("p.hub")
        .append_config("[bulk]\nchunk_size = \"8KiB\"\nwindow = 16\n");
    let id = c.site("a.host").send(&[], &random(128 * 1024, 13));
    c.round(&["a.host"]);
    let urgent = c.site("a.host").send(
        &[
            "--kind",
            "alarm",
            "--precedence",
            "urgent",
            "--text",
            "disk full",
        ],
        b"",
    );
    let order: Vec<String> = c
        .site("a.host")
        .list()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["precedence"].as_str().unwrap(),
                e["id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(order.len(), 17, "16 chunks and the alarm: {order:?}");
    assert_eq!(order[0], format!("urgent {urgent}"), "{order:?}");
    assert!(
        order[1..].iter().all(|o| o.starts_with("bulk ")),
        "{order:?}"
    );
    for _ in 0..3 {
        c.round(&["a.host"]);
    }
    assert_eq!(c.status("a.host", &id)["state"], "acknowledged");
}

/// A relay over its throttle defers a transfer its budget cannot carry
/// now; the sender is told why and asks again later.
#[test]
fn a_hop_over_its_throttle_defers_the_transfer() {
    let c = Chain::new();
    c.site("r.relay")
        .append_config("[throttle]\nmax_bytes_per_day = \"64KiB\"\n");
    let id = c.site("a.host").send(&[], &random(100 * 1024, 14));
    let p = c.round(&["a.host"]);
    assert!(!p.contains(&id), "the provider saw it: {p}");
    let s = c.status("a.host", &id);
    assert_eq!(s["bulk"]["phase"], "deferred", "{s}");
    let summary = s["summary"].as_str().unwrap();
    assert!(
        summary.contains("max_bytes_per_day") && summary.contains("r.relay"),
        "{summary}"
    );
}

/// Hostile chunks: one claiming another site's transfer, one whose data
/// does not match its digest. Both go to quarantine with the reason,
/// nothing of them is written, and the real transfer completes intact.
#[test]
fn forged_and_corrupt_chunks_are_quarantined_and_the_transfer_completes() {
    let c = Chain::new();
    c.site("p.hub")
        .append_config("[bulk]\nchunk_size = \"8KiB\"\nwindow = 8\n");
    c.site("b.host").bulk_threshold("1TiB");
    // Five chunks, the last of 3,192 bytes (under a.host's threshold, so
    // a forged last chunk from a.host goes as one message).
    let data = random(40 * 1024 - 5000, 15);
    let id = c.site("a.host").send(&[], &data);
    c.round(&["a.host"]);
    assert_eq!(c.status("a.host", &id)["bulk"]["phase"], "authorized");
    let garbage = random(8192, 16);
    let digest = rs::bulk::digest_of(&garbage);
    let chunk = |index: u64, digest: &str| {
        format!("application/vnd.rs.bulk-chunk; transfer={id}; index={index}; digest={digest}")
    };
    // b.host claims a.host's transfer.
    c.site("b.host")
        .send(&["--mime-type", &chunk(0, digest.as_str())], &garbage);
    // a.host sends data that does not match the digest it names.
    let other = rs::bulk::digest_of(b"something else");
    c.site("a.host").send(
        &["--mime-type", &chunk(4, other.as_str())],
        &garbage[..3192],
    );
    for _ in 0..3 {
        c.round(&["a.host", "b.host"]);
    }
    assert_eq!(c.status("a.host", &id)["state"], "acknowledged");
    let got: Vec<_> = c
        .site("p.hub")
        .received()
        .into_iter()
        .filter(|(i, _)| *i == id)
        .collect();
    assert_eq!(got.len(), 1);
    assert!(got[0].1 == data, "intact");
    let reasons = quarantine_reasons(c.site("p.hub"));
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("b.host") && r.contains("a.host")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("does not match its digest")),
        "{reasons:?}"
    );
}

/// The Python of the virtual environment `scripts/setup.sh` makes, with
/// tuspy installed.
fn tus_python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (it installs tuspy)",
        p.display()
    );
    p
}

/// One raw HTTP/1.1 request to `url`'s host: the status and the headers
/// of the reply (lower-case names). With `cut`, only the first `cut`
/// bytes of the body are sent and the connection is closed.
fn raw(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    cut: Option<usize>,
) -> (u16, BTreeMap<String, String>) {
    use std::io::{Read, Write};
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    if let Some(n) = cut {
        s.write_all(&body[..n]).unwrap();
        s.shutdown(std::net::Shutdown::Both).unwrap();
        return (0, BTreeMap::new());
    }
    s.write_all(body).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// `a.host` and `p.hub` over directories; `p.hub` also runs `rs-relay
/// serve` (plain HTTP, `a.host` naming itself in `X-Rs-From`).
fn pair() -> (Site, Site, PathBuf, PathBuf, Serve) {
    pair_chunked("64KiB")
}

/// The same, the provider asking for chunks of `chunk_size`.
fn pair_chunked(chunk_size: &str) -> (Site, Site, PathBuf, PathBuf, Serve) {
    pair_with(chunk_size, "")
}

/// The same, the provider's configuration given `extra` (whole tables).
fn pair_with(chunk_size: &str, extra: &str) -> (Site, Site, PathBuf, PathBuf, Serve) {
    let mut a = Site::component("a.host");
    let mut p = Site::component("p.hub");
    a.at(T0);
    p.at(T0);
    let to_a = p.stick("in-a");
    let to_p = p.stick("in-p");
    p.peer(
        "a.host",
        &format!(
            "routes = [\"dir:{}\"]\nauthentication = \"none\"",
            to_a.display()
        ),
    );
    p.peer("b.host", "authentication = \"none\"");
    a.peer(
        "p.hub",
        &format!("upstream = true\nroutes = [\"dir:{}\"]", to_p.display()),
    );
    a.bulk_threshold("4KiB");
    p.append_config(&format!("[bulk]\nchunk_size = \"{chunk_size}\"\n{extra}"));
    let server = Serve::start(&p);
    (a, p, to_a, to_p, server)
}

/// A piece whose body pauses longer than `[http] request_timeout` is
/// refused for that pause, and nothing of it counts: the broken body
/// reaches the upload as an error, not as an end that came early.
#[test]
fn an_upload_piece_that_stalls_is_refused_for_its_pause() {
    use std::io::{Read, Write};
    let (a, p, _, to_p, server) = pair_with("64KiB", "[http]\nrequest_timeout = \"2s\"\n");
    let data = random(200 * 1024, 31);
    let id = a.send(&[], &data);
    a.cmd("rs-queue").args(["flush"]).run();
    let log = p.import_from(&to_p).run().stderr;
    assert!(log.contains("authorized"), "{log}");
    let host = server
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    use base64::Engine as _;
    let sum =
        base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha256(&data[..65536]));
    let head = format!(
        "PATCH /rs/uploads/{id} HTTP/1.1\r\nHost: {host}\r\nTus-Resumable: 1.0.0\r\nX-Rs-From: a.host\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n\
         Upload-Checksum: sha256 {sum}\r\nContent-Length: 65536\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&data[..10_000]).unwrap();
    // Then nothing: the server gives up after 2 s and says why.
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let tus = [
        ("Tus-Resumable", "1.0.0".to_string()),
        ("X-Rs-From", "a.host".to_string()),
    ];
    let (status, h) = raw(
        &server.url,
        "HEAD",
        &format!("/rs/uploads/{id}"),
        &tus,
        b"",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(h["upload-offset"], "0", "nothing of it counts");
}

/// `a.host` uploading to `p.hub`'s `rs-relay serve` (plain HTTP, chunks
/// of 1 MiB: pieces of 64 MiB) through a link the test can break.
fn pair_over_a_link() -> (Site, Site, Serve, Link) {
    let mut a = Site::component("a.host");
    let mut p = Site::component("p.hub");
    a.at(T0);
    p.at(T0);
    p.peer("a.host", "authentication = \"none\"");
    p.append_config("[bulk]\nchunk_size = \"1MiB\"\n");
    let server = Serve::start(&p);
    let link = Link::to(server.port);
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nauthentication = \"none\"\nroutes = [\"{}\"]",
            link.url("/rs")
        ),
    );
    a.bulk_threshold("4KiB");
    (a, p, server, link)
}

/// Where the upload of `id` stands at `server`, asked directly.
fn upload_offset(server: &Serve, id: &str) -> u64 {
    upload_offset_as(server, id, "a.host")
}

/// The same, asked as `caller`.
fn upload_offset_as(server: &Serve, id: &str, caller: &str) -> u64 {
    let tus = [
        ("Tus-Resumable", "1.0.0".to_string()),
        ("X-Rs-From", caller.to_string()),
    ];
    let (status, h) = raw(
        &server.url,
        "HEAD",
        &format!("/rs/uploads/{id}"),
        &tus,
        b"",
        None,
    );
    assert_eq!(status, 200, "{h:?}");
    h["upload-offset"].parse().unwrap()
}

/// Issue 29: a piece cut short was thrown away whole, so a killed upload
/// started again from zero. The receiver keeps the chunks that arrived
/// whole and matched their digests; the next flush resumes there.
#[test]
fn a_killed_upload_resumes_from_the_last_verified_chunk() {
    const MIB: u64 = 1 << 20;
    let (a, p, server, link) = pair_over_a_link();
    let data = random(40 << 20, 41);
    let id = a.send(&[], &data);
    // 18.5 MiB get through, in the first piece (the whole 40 MiB), then
    // the link stalls and the uploading flush is killed.
    let through = 18 * MIB + MIB / 2;
    link.budget(Some(through));
    link.stall(true);
    let mut c = a.cmd("rs-queue").args(["flush"]).command();
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .stdin(std::process::Stdio::null());
    let mut flush = c.spawn().unwrap();
    let stalled = link.wait_broken(1, Duration::from_secs(120));
    let mut at = 0;
    for _ in 0..200 {
        at = upload_offset(&server, &id);
        if !stalled || at > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = flush.kill();
    let _ = flush.wait();
    assert!(stalled, "the upload never got {through} bytes through");
    // Of what arrived (18.5 MiB less the requests' headers), the whole
    // chunks: a multiple of the chunk, at most one chunk behind.
    assert_eq!(
        at,
        18 * MIB,
        "the upload stands at {at} after {through} bytes got through"
    );
    link.budget(None);
    let before = link.carried();
    let r = a.cmd("rs-queue").args(["flush"]).run();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let rest = data.len() as u64 - at;
    assert!(
        r.stderr
            .contains(&format!("uploaded {rest} bytes over HTTP")),
        "{}",
        r.stderr
    );
    let resent = link.carried() - before;
    assert!(resent < rest + MIB, "{resent} bytes went again for {rest}");
    for _ in 0..3 {
        if a.ack_status(&id)["state"] == "acknowledged" {
            break;
        }
        a.cmd("rs-queue").args(["flush"]).run();
    }
    assert_eq!(a.ack_status(&id)["state"], "acknowledged");
    delivered_once(&p, &id, &data, 0);
    assert_eq!(p.received().len(), 1);
    for s in [&a, &p] {
        s.assert_nothing_quarantined();
    }
}

/// Issue 29: over a link that drops each connection before a piece (64
/// MiB) gets through, an upload never finished. Each connection now
/// leaves its whole chunks at the receiver, and the upload goes on.
#[test]
fn an_upload_over_a_link_that_drops_every_few_mib_still_finishes() {
    let (a, p, _server, link) = pair_over_a_link();
    let data = random(24 << 20, 43);
    let id = a.send(&[], &data);
    link.budget(Some(3 << 20));
    let mut flushes = 0;
    while a.ack_status(&id)["state"] != "acknowledged" {
        flushes += 1;
        assert!(
            flushes <= 24,
            "not delivered after {} connections cut: {}",
            link.broken(),
            a.ack_status(&id)
        );
        let r = a.cmd("rs-queue").args(["flush", "--force"]).run();
        assert!(matches!(r.code, Some(0) | Some(75)), "{}", r.stderr);
    }
    assert!(link.broken() >= 8, "{} connections cut", link.broken());
    delivered_once(&p, &id, &data, 0);
    assert_eq!(p.received().len(), 1);
    let s = a.ack_status(&id);
    assert_eq!(
        s["bulk"]["chunks_sent"], 0,
        "uploaded, not sent as chunks: {s}"
    );
    eprintln!(
        "24 MiB over a link cut every 3 MiB: {flushes} flushes, {} connections cut, {} bytes carried",
        link.broken(),
        link.carried()
    );
    for s in [&a, &p] {
        s.assert_nothing_quarantined();
    }
}

/// `a.host` → `r.relay` → `p.hub`, each relay's `rs-relay serve` on
/// plain HTTP (chunks of 1 MiB at `p.hub`), `a.host` reaching `r.relay`
/// through a link the test can break.
fn chain_over_a_link() -> (Site, Site, Site, Serve, Serve, Link) {
    let mut a = Site::component("a.host");
    let mut r = Site::component("r.relay");
    let mut p = Site::component("p.hub");
    for s in [&mut a, &mut r, &mut p] {
        s.at(T0);
    }
    p.peer("r.relay", "authentication = \"none\"");
    p.append_config("[bulk]\nchunk_size = \"1MiB\"\n");
    let p_server = Serve::start(&p);
    r.peer("a.host", "authentication = \"none\"");
    r.peer(
        "p.hub",
        &format!(
            "upstream = true\nauthentication = \"none\"\nroutes = [\"{}\"]",
            p_server.url
        ),
    );
    let r_server = Serve::start(&r);
    let link = Link::to(r_server.port);
    a.peer(
        "r.relay",
        &format!(
            "upstream = true\nauthentication = \"none\"\nroutes = [\"{}\"]",
            link.url("/rs")
        ),
    );
    a.bulk_threshold("4KiB");
    (a, r, p, p_server, r_server, link)
}

/// The same through a relay passing the upload on: the relay forwards
/// the chunks' digests with each piece, so the receiver keeps what
/// arrived of a piece the first link cut short, and the relay keeps
/// nothing.
#[test]
fn an_upload_through_a_relay_over_a_link_that_drops_still_finishes() {
    let (a, r, p, _p_server, _r_server, link) = chain_over_a_link();
    let data = random(16 << 20, 47);
    let id = a.send(&[], &data);
    link.budget(Some(3 << 20));
    let mut rounds = 0;
    while a.ack_status(&id)["state"] != "acknowledged" {
        rounds += 1;
        assert!(
            rounds <= 20,
            "not delivered after {} connections cut: {}",
            link.broken(),
            a.ack_status(&id)
        );
        for site in [&a, &r] {
            let out = site.cmd("rs-queue").args(["flush", "--force"]).run();
            assert!(matches!(out.code, Some(0) | Some(75)), "{}", out.stderr);
        }
    }
    assert!(link.broken() >= 5, "{} connections cut", link.broken());
    delivered_once(&p, &id, &data, 0);
    let s = a.ack_status(&id);
    assert_eq!(
        s["bulk"]["chunks_sent"], 0,
        "uploaded, not sent as chunks: {s}"
    );
    assert!(bulk_files(&r, "in").is_empty());
    for s in [&a, &r, &p] {
        s.assert_nothing_quarantined();
    }
}

/// A relay behind a web server that hands `rs-relay cgi` a body shorter
/// than its `CONTENT_LENGTH` (the client went away) passed it on as a
/// body that never ends, and spun; it now passes it on as broken, and the
/// receiver keeps the whole chunks that came.
#[test]
fn a_relay_passes_an_upload_body_that_ends_early_on_as_broken() {
    use base64::Engine as _;
    const MIB: usize = 1 << 20;
    let (a, r, p, p_server, _r_server, _link) = chain_over_a_link();
    let data = random(3 * MIB, 53);
    let id = a.send(&[], &data);
    // The request goes up and the answer comes back to the relay, which
    // then holds a granted reservation; a.host does not upload.
    a.cmd("rs-queue").args(["flush"]).run();
    r.cmd("rs-queue").args(["flush"]).run();
    let state = |site: &Site, path: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(site.spool.join(path)).unwrap()).unwrap()
    };
    assert_eq!(state(&r, &format!("bulk/hop/{id}.json"))["granted"], true);
    assert_eq!(
        state(&p, &format!("bulk/in/{id}.json"))["phase"],
        "receiving"
    );
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let sums: Vec<String> = data
        .chunks(MIB)
        .map(|c| b64(&openssl::sha::sha256(c)))
        .collect();
    let given = r.root().join("body");
    std::fs::write(&given, &data[..2 * MIB + MIB / 2]).unwrap();
    let mut cgi = r
        .cmd("rs-relay")
        .args(["cgi"])
        .env("REQUEST_METHOD", "PATCH")
        .env("REQUEST_URI", &format!("/rs/uploads/{id}"))
        .env("CONTENT_TYPE", "application/offset+octet-stream")
        .env("CONTENT_LENGTH", &data.len().to_string())
        .env("HTTP_TUS_RESUMABLE", "1.0.0")
        .env("HTTP_X_RS_FROM", "a.host")
        .env("HTTP_UPLOAD_OFFSET", "0")
        .env(
            "HTTP_UPLOAD_CHECKSUM",
            &format!("sha256 {}", b64(&openssl::sha::sha256(&data))),
        )
        .env(
            "HTTP_X_RS_CHUNK_CHECKSUMS",
            &format!("sha256 {MIB} {}", sums.join(",")),
        )
        .command();
    cgi.stdin(std::fs::File::open(&given).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cgi.spawn().unwrap();
    let mut ended = None;
    for _ in 0..600 {
        ended = child.try_wait().unwrap();
        if ended.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if ended.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("rs-relay cgi still passing a body that ended after 30 s");
    }
    let mut answer = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    assert!(answer.starts_with("Status: 502"), "{answer}");
    // The receiver kept the two whole chunks that came.
    let mut at = 0;
    for _ in 0..100 {
        at = upload_offset_as(&p_server, &id, "r.relay");
        if at > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(at, 2 * MIB as u64);
    assert!(bulk_files(&r, "in").is_empty());
}

#[test]
fn a_standard_tus_client_uploads_an_authorized_transfer_and_resumes_after_a_kill() {
    let python = tus_python();
    let (a, p, to_a, to_p, server) = pair();
    let data = random(640 * 1024 + 5, 11);
    let file = a.root().join("upload.bin");
    std::fs::write(&file, &data).unwrap();
    let id = a.send(&[], &data);
    // The request goes by directory; the provider authorizes it and names
    // where it may be uploaded.
    a.cmd("rs-queue").args(["flush"]).run();
    let log = p.import_from(&to_p).run().stderr;
    assert!(log.contains("authorized"), "{log}");
    let uploads = format!("{}/uploads", server.url);
    let store = a.root().join("tus.json");
    let tuspy = |transfer: Option<&str>, caller: &str| {
        let mut c = std::process::Command::new(&python);
        c.arg(env!("CARGO_MANIFEST_DIR").to_string() + "/tests/tus/upload.py")
            .args([&uploads, file.to_str().unwrap(), store.to_str().unwrap()])
            .args([caller, "65536"])
            .args(transfer)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    // No authorization: no transfer named, a transfer that does not
    // exist, another site's transfer.
    for (transfer, caller, why) in [
        (None, "a.host", "403"),
        (Some("20261202T100000-000000-deadbeef"), "a.host", "404"),
        (Some(id.as_str()), "b.host", "403"),
    ] {
        let out = tuspy(transfer, caller).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{transfer:?} as {caller} was taken");
        assert!(stderr.contains(why), "{transfer:?} as {caller}: {stderr}");
    }
    let _ = std::fs::remove_file(&store);
    // The upload, killed after three pieces.
    let mut child = tuspy(Some(&id), "a.host").spawn().unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut pieces = 0;
    for line in std::io::BufRead::lines(out).map_while(Result::ok) {
        if line.starts_with("offset") {
            pieces += 1;
            if pieces == 3 {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(pieces, 3, "tuspy stopped early");
    let path = format!("/rs/uploads/{id}");
    let tus = |extra: &[(&'static str, String)]| {
        let mut h: Vec<(&'static str, String)> = vec![
            ("Tus-Resumable", "1.0.0".to_string()),
            ("X-Rs-From", "a.host".to_string()),
        ];
        h.extend_from_slice(extra);
        h
    };
    let (status, h) = raw(&server.url, "HEAD", &path, &tus(&[]), b"", None);
    assert_eq!(status, 200);
    let at: usize = h["upload-offset"].parse().unwrap();
    assert!(at >= 3 * 65536 && at < data.len(), "offset {at}");
    assert_eq!(h["upload-length"], data.len().to_string());
    assert!(h["upload-expires"].ends_with("GMT"), "{h:?}");
    // Pieces that do not count: cut short (with a checksum), a wrong
    // checksum, a wrong offset.
    use base64::Engine as _;
    let piece = &data[at..at + 65536];
    let sum = base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha256(piece));
    let patch = |offset: usize, sum: &str| {
        tus(&[
            ("Content-Type", "application/offset+octet-stream".into()),
            ("Upload-Offset", offset.to_string()),
            ("Upload-Checksum", format!("sha256 {sum}")),
        ])
    };
    raw(
        &server.url,
        "PATCH",
        &path,
        &patch(at, &sum),
        piece,
        Some(10_000),
    );
    let bad = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    let (status, _) = raw(&server.url, "PATCH", &path, &patch(at, &bad), piece, None);
    assert_eq!(status, 460, "checksum mismatch");
    let (status, _) = raw(
        &server.url,
        "PATCH",
        &path,
        &patch(at + 1, &sum),
        piece,
        None,
    );
    assert_eq!(status, 409, "wrong offset");
    let (_, h) = raw(&server.url, "HEAD", &path, &tus(&[]), b"", None);
    assert_eq!(
        h["upload-offset"],
        at.to_string(),
        "nothing of them counted"
    );
    // tuspy again, with its store: it resumes where the upload stands.
    let out = tuspy(Some(&id), "a.host").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with(&format!("start {at}\n")), "{stdout}");
    assert!(
        stdout.ends_with(&format!("done {}\n", data.len())),
        "{stdout}"
    );
    let got = p.received();
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!((got[0].0.as_str(), &got[0].1), (id.as_str(), &data));
    // The sender hears it verified, and its copy goes.
    p.cmd("rs-queue").args(["flush"]).run();
    a.import_from(&to_a).run();
    let s = a.ack_status(&id);
    assert!(
        s["summary"].as_str().unwrap().contains("verified sha256:"),
        "{s}"
    );
    assert!(bulk_files(&a, "out").iter().all(|f| !f.ends_with(".data")));
    // Done is done: the upload stands complete; a termination is refused.
    let (_, h) = raw(&server.url, "HEAD", &path, &tus(&[]), b"", None);
    assert_eq!(h["upload-offset"], data.len().to_string());
    let (status, _) = raw(&server.url, "DELETE", &path, &tus(&[]), b"", None);
    assert_eq!(status, 409);
    let (status, h) = raw(&server.url, "OPTIONS", "/rs/uploads", &[], b"", None);
    assert_eq!(status, 204);
    assert_eq!(h["tus-version"], "1.0.0");
    assert!(h["tus-extension"].contains("termination"), "{h:?}");
    p.assert_nothing_quarantined();
}

/// A receiver killed after delivering an upload and before recording it
/// (its data gone, its state still `receiving` at the last piece) answers
/// the next PATCH and HEAD as delivered, and tells the sender, instead of
/// refusing every piece (409) for ever.
#[test]
fn an_upload_delivered_by_a_killed_receiver_is_recorded_at_the_next_request() {
    let (a, p, _to_a, to_p, server) = pair();
    let data = random(200 * 1024 + 7, 13);
    let id = a.send(&[], &data);
    a.cmd("rs-queue").args(["flush"]).run();
    p.import_from(&to_p).run();
    let path = format!("/rs/uploads/{id}");
    let tus = |offset: usize| {
        vec![
            ("Tus-Resumable", "1.0.0".to_string()),
            ("X-Rs-From", "a.host".to_string()),
            ("Content-Type", "application/offset+octet-stream".into()),
            ("Upload-Offset", offset.to_string()),
        ]
    };
    let (status, h) = raw(&server.url, "PATCH", &path, &tus(0), &data, None);
    assert_eq!(status, 204);
    assert_eq!(h["upload-offset"], data.len().to_string());
    assert_eq!(p.received().len(), 1);
    // The state as the last piece's run left it before it was killed.
    let state = p.spool.join(format!("bulk/in/{id}.json"));
    let mut st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(st["phase"], "delivered");
    st["phase"] = "receiving".into();
    st["uploaded"] = 65536.into();
    st["have"] = "0-0".into();
    std::fs::write(&state, serde_json::to_vec(&st).unwrap()).unwrap();
    let (status, h) = raw(
        &server.url,
        "PATCH",
        &path,
        &tus(65536),
        &data[65536..],
        None,
    );
    assert_eq!(status, 204, "{h:?}");
    assert_eq!(h["upload-offset"], data.len().to_string());
    let mut head = tus(0);
    head.truncate(2);
    let (status, h) = raw(&server.url, "HEAD", &path, &head, b"", None);
    assert_eq!(status, 200);
    assert_eq!(h["upload-offset"], data.len().to_string());
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(st["phase"], "delivered", "{st}");
    delivered_once(&p, &id, &data, 0);
}

#[test]
fn a_download_resumes_with_http_ranges() {
    let (a, p, to_a, to_p, server) = pair();
    let data = random(300 * 1024 + 3, 12);
    let id = p.send(&["--to", "a.host"], &data);
    p.cmd("rs-queue").args(["flush"]).run();
    a.import_from(&to_a).run();
    a.cmd("rs-queue").args(["flush"]).run();
    p.import_from(&to_p).run();
    assert_eq!(p.ack_status(&id)["bulk"]["phase"], "authorized");
    let url = format!("{}/downloads/{id}", server.url);
    let out = a.root().join("download.bin");
    let curl = |caller: &str, args: &[&str]| {
        let o = std::process::Command::new("curl")
            .args(["-s", "-o"])
            .arg(&out)
            .args(["-w", "%{http_code}", "-H"])
            .arg(format!("X-Rs-From: {caller}"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(curl("a.host", &["-r", "0-99999", &url]), "206");
    assert_eq!(std::fs::read(&out).unwrap(), data[..100_000]);
    // curl -C - asks for the rest (Range: bytes=100000-).
    assert_eq!(curl("a.host", &["-C", "-", &url]), "206");
    assert!(
        std::fs::read(&out).unwrap() == data,
        "resumed byte-identical"
    );
    assert_eq!(curl("a.host", &["-r", "400000-", &url]), "416");
    assert_eq!(curl("b.host", &[&url]), "403", "not b's");
    let unknown = format!("{}/downloads/20261202T100000-000000-deadbeef", server.url);
    assert_eq!(curl("a.host", &[&unknown]), "404");
    let dots = format!("{}/downloads/..", server.url);
    assert_eq!(curl("a.host", &["--path-as-is", &dots]), "404");
}

/// Resume over HTTP: uploads (tus) killed at random moments on either
/// side — the uploading `rs-queue flush`, or the receiver's `rs-relay
/// serve` while a flush uploads — each file arrives intact, once.
#[test]
fn tus_uploads_killed_at_random_moments_arrive_once_and_resume() {
    let trials = crash_trials() / 2;
    let mut a = Site::component("a.host");
    let mut p = Site::component("p.hub");
    a.at(T0);
    p.at(T0);
    // Retransmissions every round (a killed run may lose a reply).
    let often = "ack_timeout = \"5m\"\nretry_cap = \"10m\"";
    p.peer("a.host", &format!("authentication = \"none\"\n{often}"));
    // Pieces of 64 KiB (64 chunks): several to an upload.
    p.append_config("[bulk]\nchunk_size = \"1KiB\"\n");
    let mut server = Serve::start(&p);
    let port = server.port;
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nauthentication = \"none\"\n{often}\nroutes = [\"{}\"]",
            server.url
        ),
    );
    a.bulk_threshold("4KiB");
    let mut rng = Rng::from_env();
    let mut span = 50_000u64;
    let mut landed = [0usize; 2];
    let mut minutes = 0u64;
    for trial in 0..trials {
        let size = 100 * 1024 + (trial * 997) % 100_000;
        let data = random(size, trial as u64 + 101);
        let id = a.send(&[], &data);
        let mut rounds = 0;
        while a.ack_status(&id)["state"] != "acknowledged" {
            // The clocks move 11 minutes a round (the server restarted
            // on the new time): anything not acknowledged goes again.
            minutes += 11;
            let t = after_t0(minutes);
            a.at(&t);
            p.at(&t);
            server.kill();
            server = Serve::start_on(&p, port);
            rounds += 1;
            assert!(
                rounds <= 20,
                "trial {trial}: {id} not delivered: {}",
                a.ack_status(&id)
            );
            // --force: a link that failed is tried again at once.
            let flush = || {
                let mut c = a.cmd("rs-queue").args(["flush", "--force"]).command();
                c.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .stdin(std::process::Stdio::null());
                c.spawn().unwrap()
            };
            let mut child = flush();
            let start = std::time::Instant::now();
            std::thread::sleep(Duration::from_micros(rng.below(span)));
            if rng.below(2) == 0 {
                let _ = child.kill();
                landed[0] += !child.wait().unwrap().success() as usize;
            } else {
                server.kill();
                let _ = child.wait();
                landed[1] += 1;
                server = Serve::start_on(&p, port);
            }
            span = (span * 3 + start.elapsed().as_micros() as u64) / 4;
            let r = a.cmd("rs-queue").args(["flush", "--force"]).run();
            assert!(matches!(r.code, Some(0) | Some(75)), "{}", r.stderr);
        }
        delivered_once(&p, &id, &data, trial);
        let s = a.ack_status(&id);
        assert_eq!(
            s["bulk"]["chunks_sent"], 0,
            "uploaded, not sent as chunks: {s}"
        );
    }
    assert_eq!(p.received().len(), trials, "nothing else delivered");
    eprintln!(
        "{trials} uploads; killed: the uploader mid-run {}, the server {}",
        landed[0], landed[1]
    );
    for s in [&a, &p] {
        s.assert_nothing_quarantined();
    }
}

/// A relay reached over HTTP that carries the transfer on by messages (its
/// next hop is a directory) refuses the upload: the sender turns back to
/// chunks, and the file arrives all the same.
#[test]
fn an_upload_a_relay_cannot_pass_on_turns_back_to_chunks() {
    let mut a = Site::component("a.host");
    let mut r = Site::component("r.relay");
    let mut p = Site::component("p.hub");
    for s in [&mut a, &mut r, &mut p] {
        s.at(T0);
    }
    let to_p = r.stick("to-p");
    let to_r = r.stick("to-r");
    r.peer("a.host", "authentication = \"none\"");
    r.peer(
        "p.hub",
        &format!("upstream = true\nroutes = [\"dir:{}\"]", to_p.display()),
    );
    p.peer("r.relay", &format!("routes = [\"dir:{}\"]", to_r.display()));
    p.append_config("[bulk]\nchunk_size = \"64KiB\"\n");
    let server = Serve::start(&r);
    a.peer(
        "r.relay",
        &format!(
            "upstream = true\nauthentication = \"none\"\nroutes = [\"{}\"]",
            server.url
        ),
    );
    a.bulk_threshold("4KiB");
    let data = random(200 * 1024 + 9, 21);
    let id = a.send(&[], &data);
    let mut rounds = 0;
    while a.ack_status(&id)["state"] != "acknowledged" {
        rounds += 1;
        assert!(rounds <= 8, "not delivered: {}", a.ack_status(&id));
        a.cmd("rs-queue").args(["flush"]).run();
        r.cmd("rs-queue").args(["flush"]).run();
        p.import_from(&to_p).run();
        p.cmd("rs-queue").args(["flush"]).run();
        r.import_from(&to_r).run();
    }
    let got = p.received();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.as_str(), &got[0].1), (id.as_str(), &data));
    let s = a.ack_status(&id);
    assert_eq!(s["bulk"]["chunks_only"], true, "{s}");
    assert_eq!(s["bulk"]["chunks_sent"], 4, "{s}");
    assert!(bulk_files(&r, "in").is_empty());
}

/// Runs `cmd` with a terminal for stderr (`script`), returning what it
/// wrote there.
fn on_a_terminal(cmd: support::Cmd) -> String {
    let c = cmd.command();
    let line: Vec<String> = std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let mut s = std::process::Command::new("script");
    s.args(["-qec", &line.join(" "), "/dev/null"]);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    let out = s.stdin(std::process::Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{line:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every long bulk step shows its progress on a terminal (rs-send keeping
/// the data aside, the chunks sent and imported, the receiver verifying),
/// and prints nothing of it when stderr is not one.
#[test]
fn bulk_steps_show_progress_on_a_terminal_only() {
    let (a, p, to_a, to_p, _server) = pair_chunked("16MiB");
    let data = random(20 << 20, 31);
    let file = a.root().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    let send = a
        .cmd("rs-send")
        .args(["--class", "test", "--subclass", "case", "-f"])
        .args([&file]);
    let shown = on_a_terminal(send);
    assert!(shown.contains("of 20 MiB"), "rs-send: {shown}");
    a.cmd("rs-queue").args(["flush"]).run().success();
    p.import_from(&to_p).run();
    p.cmd("rs-queue").args(["flush"]).run();
    a.import_from(&to_a).run();
    // The two chunks go, are imported, and the whole is verified.
    let flush = on_a_terminal(a.cmd("rs-queue").args(["flush"]));
    assert!(
        flush.contains("p.hub: sending") && flush.contains("MiB"),
        "{flush}"
    );
    let import = on_a_terminal(p.import_from(&to_p));
    assert!(import.contains("importing from"), "{import}");
    // The chunks came in order: digested as they came, not read again.
    assert!(
        import.contains("verified (sha256:") && !import.contains("verifying"),
        "{import}"
    );
    assert_eq!(p.received().len(), 1);
    // Not on a terminal: nothing of it.
    let quiet = a
        .cmd("rs-send")
        .args(["--class", "test", "--subclass", "case", "-f"])
        .args([&file])
        .run();
    assert!(!quiet.stderr.contains("MiB"), "{}", quiet.stderr);
}

/// A receive killed between writing a held message's state and the
/// message leaves that state alone in `divert/`: the next receive, which
/// finishes what the intent file names, removes it.
#[test]
fn a_held_state_whose_message_never_came_is_removed() {
    let (a, p, _to_a, to_p, _server) = pair();
    let id = "20261202T100000-000000-0123456789abcdef";
    let divert = p.spool.join("divert");
    std::fs::create_dir_all(&divert).unwrap();
    let orphan = divert.join(format!("{id}.state"));
    std::fs::write(&orphan, "rule rs-bulk\nfrom a.host\nfailures 0\n").unwrap();
    std::fs::write(
        p.spool.join("state/receive.intent"),
        format!("{id} a.host 1798828620 divert 1796205600\n"),
    )
    .unwrap();
    let data = random(50 * 1024, 41);
    let sent = a.send(&[], &data);
    a.cmd("rs-queue").args(["flush"]).run();
    let log = p.import_from(&to_p).run().stderr;
    assert!(log.contains("authorized"), "{log}");
    assert!(!orphan.exists(), "the orphan state is gone");
    assert!(!p.spool.join("state/receive.intent").exists());
    assert_eq!(a.ack_status(&sent)["bulk"]["phase"], "requested");
}

/// `rs-queue delete T` of a transfer on its way withdraws its queued
/// chunks and removes the sender's copy of the data; of a delivered one,
/// it changes nothing.
#[test]
fn deleting_a_transfer_withdraws_its_chunks_and_its_data() {
    let (a, p, to_a, to_p, _server) = pair();
    let id = a.send(&[], &random(300 * 1024, 51));
    a.cmd("rs-queue").args(["flush"]).run();
    p.import_from(&to_p).run();
    p.cmd("rs-queue").args(["flush"]).run();
    a.import_from(&to_a).run();
    assert_eq!(a.ack_status(&id)["bulk"]["phase"], "authorized");
    let queued = a.list().len();
    assert!(queued >= 4, "the chunks asked for are queued: {queued}");
    let r = a.cmd("rs-queue").args(["delete", &id]).run().success();
    assert!(
        r.stderr.contains(&format!("{queued} queued message(s)"))
            && r.stderr.contains("copy of the data removed"),
        "{}",
        r.stderr
    );
    assert!(a.list().is_empty(), "nothing of it queued");
    assert!(bulk_files(&a, "out").iter().all(|f| !f.ends_with(".data")));
    let s = a.ack_status(&id);
    assert_eq!(s["state"], "dead", "{s}");
    assert!(s["summary"]
        .as_str()
        .unwrap()
        .contains("deleted by the operator"));
    assert_eq!(a.files("dead").len(), queued, "in dead/, with the reason");
    // Deleting it again finds nothing more to do, and fails nothing.
    let r = a.cmd("rs-queue").args(["delete", &id]).run().success();
    assert!(
        r.stderr.contains("no copy of the data was left"),
        "{}",
        r.stderr
    );
}

/// A request claiming more than a transfer holds (65,536 chunks of 16 MiB)
/// is rejected, one claiming more than the disk holds deferred, with
/// nothing allocated; one over `max_size` is rejected.
#[test]
fn hostile_sizes_in_a_request_allocate_nothing() {
    let (a, p, _to_a, to_p, _server) = pair();
    for (claim, expect) in [
        ("18446744073709551615", "rejected"),
        ("9223372036854775807", "rejected"),
        // Within what a transfer holds (1 TiB), more than the disk.
        ("1000000000000", "deferred"),
    ] {
        let free = fs2::available_space(&p.spool).unwrap();
        if expect == "deferred" && claim.parse::<u64>().unwrap() <= free {
            continue; // a disk that holds it: nothing to show here
        }
        let id = a.send(&[], &random(50 * 1024, 61));
        forge_size(&a, &id, claim);
        a.cmd("rs-queue").args(["flush"]).run();
        let log = p.import_from(&to_p).run().stderr;
        assert!(log.contains(&format!("{claim} bytes {expect}")), "{log}");
        assert!(
            bulk_files(&p, "in").is_empty(),
            "nothing allocated: {:?}",
            bulk_files(&p, "in")
        );
    }
    p.append_config("max_size = \"1GiB\"\n");
    let id = a.send(&[], &random(50 * 1024, 62));
    forge_size(&a, &id, "2000000000");
    a.cmd("rs-queue").args(["flush"]).run();
    let log = p.import_from(&to_p).run().stderr;
    assert!(log.contains("2000000000 bytes rejected"), "{log}");
    p.assert_nothing_quarantined();
}

/// The runs of a kill campaign: `RS_CRASH_TRIALS`, 50 by default.
fn crash_trials() -> usize {
    std::env::var("RS_CRASH_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(50)
}

/// `id` is delivered at `p` once, intact.
fn delivered_once(p: &Site, id: &str, data: &[u8], trial: usize) {
    let got: Vec<_> = p.received().into_iter().filter(|(i, _)| i == id).collect();
    assert_eq!(
        got.len(),
        1,
        "trial {trial}: {id} delivered {} times",
        got.len()
    );
    assert!(got[0].1 == data, "trial {trial}: {id} not intact");
}

/// Rewrites the size the queued request of transfer `id` (50 KiB) claims.
fn forge_size(site: &Site, id: &str, claim: &str) {
    let mut forged = 0;
    for e in walkdir::WalkDir::new(site.spool.join("queue"))
        .into_iter()
        .flatten()
    {
        if e.file_name().to_string_lossy().contains(id) {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let new = text.replace("size=\"51200\"", &format!("size=\"{claim}\""));
            assert_ne!(text, new);
            std::fs::write(e.path(), new).unwrap();
            forged += 1;
        }
    }
    assert_eq!(forged, 1, "the request of {id} is queued");
}

/// The time `minutes` after T0.
fn after_t0(minutes: u64) -> String {
    rs::time::Timestamp::parse(T0)
        .unwrap()
        .saturating_add(Duration::from_secs(minutes * 60))
        .to_rfc3339()
}

/// A transfer of more chunks than a state can name (65,536) takes larger
/// chunks instead, and completes: 65 MiB asked for in chunks of 1 KiB,
/// uploaded over HTTP in one flush.
#[test]
fn a_transfer_of_more_chunks_than_can_be_named_takes_larger_ones() {
    let mut a = Site::component("a.host");
    let mut p = Site::component("p.hub");
    a.at(T0);
    p.at(T0);
    p.peer("a.host", "authentication = \"none\"");
    p.append_config("[bulk]\nchunk_size = \"1KiB\"\n");
    let server = Serve::start(&p);
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nauthentication = \"none\"\nroutes = [\"{}\"]",
            server.url
        ),
    );
    a.bulk_threshold("4KiB");
    let data = random(65 << 20, 71);
    let id = a.send(&[], &data);
    a.cmd("rs-queue").args(["flush"]).run().success();
    let s = a.ack_status(&id);
    assert_eq!(s["state"], "acknowledged", "{s}");
    assert_eq!(
        s["bulk"]["chunk_size"],
        (65u64 << 20).div_ceil(65536),
        "{s}"
    );
    delivered_once(&p, &id, &data, 0);
}

/// An age key pair made by `age-keygen` (the standard tool) in `site`'s
/// `keys/`: the identity file, and its recipient.
fn age_key(site: &Site, name: &str) -> (PathBuf, String) {
    let dir = site.root().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.key"));
    let out = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen (scripts/setup.sh installs age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = std::process::Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    (
        path,
        String::from_utf8(r.stdout).unwrap().trim().to_string(),
    )
}

/// A chain where a.host seals what it sends for p.hub, whose `[bulk]`
/// asks for `window` chunks at a time (and has `extra` too): the chain,
/// and p.hub's age identity file.
fn sealed_chain(window: u32, extra: &str) -> (Chain, PathBuf) {
    let c = Chain::new();
    let (identity, recipient) = age_key(c.site("p.hub"), "p.hub");
    c.site("a.host")
        .append_config(&format!("[bulk]\nencrypt_to = [\"{recipient}\"]\n"));
    c.site("p.hub").append_config(&format!(
        "[bulk]\nidentity = \"{}\"\nchunk_size = \"128KiB\"\nwindow = {window}\n{extra}",
        identity.display()
    ));
    (c, identity)
}

#[test]
fn a_sealed_transfer_is_opened_only_at_its_receiver_and_age_reads_it() {
    let (c, identity) = sealed_chain(2, "");
    // Two chunks of 57 sealed segments (a whole number of base64 lines:
    // the receiver writes each where it belongs in the message it
    // delivers), and a last one of 1,016 bytes.
    let data = random(2 * 57 * 65536 + 1000, 21);
    let id = c.site("a.host").send(&[], &data);
    // What rs keeps aside is an age file: the standard tool opens it.
    let copy = c.site("a.host").spool.join(format!("bulk/out/{id}.data"));
    let opened = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert!(opened.stdout == data, "age reads what rs sealed");
    let raw = std::fs::read(&copy).unwrap();
    assert!(
        !raw.windows(64).any(|w| w == &data[1000..1064]),
        "the copy aside holds no data in the clear"
    );
    let log = c.round(&["a.host"]);
    assert!(log.contains("authorized (3 chunks of 3736464)"), "{log}");
    assert_eq!(c.status("a.host", &id)["bulk"]["sealed"], true);
    // A forged last chunk (its digest right, its sealing not), sent before
    // the real one is asked for, is set aside.
    let garbage = random(1016, 22);
    let mime = format!(
        "application/vnd.rs.bulk-chunk; transfer={id}; index=2; digest={}",
        rs::bulk::digest_of(&garbage).as_str()
    );
    c.site("a.host").send(&["--mime-type", &mime], &garbage);
    for _ in 0..2 {
        c.round(&["a.host"]);
    }
    assert_eq!(c.status("a.host", &id)["state"], "acknowledged");
    let got = c.site("p.hub").received();
    assert_eq!(got.len(), 1, "delivered once");
    assert!(got[0].1 == data, "byte-identical");
    let listed = c
        .site("p.hub")
        .cmd("rs-queue")
        .args(["list", "--area", "bulk", "--json"])
        .run()
        .success()
        .json_lines();
    let p = listed.iter().find(|e| e["id"] == id.as_str()).unwrap();
    assert_eq!(p["bulk"]["sealed"], true, "{p}");
    assert!(
        p["summary"]
            .as_str()
            .unwrap()
            .starts_with("sealed bulk transfer of 7472104 bytes"),
        "{p}"
    );
    let reasons = quarantine_reasons(c.site("p.hub"));
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("does not open"), "{reasons:?}");
    for n in ["a.host", "r.relay"] {
        c.site(n).assert_nothing_quarantined();
    }
    // Sealing shows its progress on a terminal, as copying does.
    let file = c.site("a.host").root().join("big.bin");
    std::fs::write(&file, random(20 << 20, 25)).unwrap();
    let send = c
        .site("a.host")
        .cmd("rs-send")
        .args(["--class", "test", "--subclass", "case", "-f"])
        .args([&file]);
    let shown = on_a_terminal(send);
    assert!(
        shown.contains("sealing the data aside") && shown.contains("of 20 MiB"),
        "rs-send: {shown}"
    );
}

#[test]
fn a_sealed_transfer_for_keys_the_receiver_lacks_is_rejected_with_the_reason() {
    for receiver_key in [false, true] {
        let c = Chain::new();
        let (_, recipient) = age_key(c.site("p.hub"), "someone-else");
        c.site("a.host")
            .append_config(&format!("[bulk]\nencrypt_to = [\"{recipient}\"]\n"));
        if receiver_key {
            let (identity, _) = age_key(c.site("p.hub"), "p.hub");
            c.site("p.hub")
                .append_config(&format!("[bulk]\nidentity = \"{}\"\n", identity.display()));
        }
        let id = c.site("a.host").send(&[], &random(100_000, 23));
        c.round(&["a.host"]);
        let s = c.status("a.host", &id);
        assert_eq!(s["state"], "dead", "{s}");
        let summary = s["summary"].as_str().unwrap();
        let want = if receiver_key {
            "sealed for none of this site's keys"
        } else {
            "no [bulk] identity"
        };
        assert!(summary.contains(want), "{summary}");
        assert!(
            bulk_files(c.site("p.hub"), "in").is_empty(),
            "nothing allocated"
        );
    }
}

#[test]
fn rs_send_refuses_a_recipient_that_is_not_one() {
    let s = Site::component("a.host");
    // Not a recipient; a file of recipients that is missing: each named,
    // exit 78, nothing queued.
    for (to, named) in [
        ("age1notarecipient", "[bulk] encrypt_to"),
        ("/nonexistent/recipients", "/nonexistent/recipients"),
    ] {
        s.append_config(&format!("[bulk]\nencrypt_to = [\"{to}\"]\n"));
        let r = s
            .cmd("rs-send")
            .args(["--class", "c", "--subclass", "s"])
            .stdin(&random(10_000, 24))
            .run();
        assert_eq!(r.code, Some(78), "{}", r.stderr);
        assert!(r.stderr.contains(named), "{}", r.stderr);
    }
    assert!(s.list().is_empty());
    assert!(bulk_files(&s, "out").is_empty(), "no copy left behind");
}

#[test]
fn a_sealed_chunk_this_site_cannot_open_now_waits_and_is_not_set_aside() {
    let c = Chain::new();
    let (identity, recipient) = age_key(c.site("p.hub"), "p.hub");
    c.site("a.host")
        .append_config(&format!("[bulk]\nencrypt_to = [\"{recipient}\"]\n"));
    c.site("p.hub")
        .append_config(&format!("[bulk]\nidentity = \"{}\"\n", identity.display()));
    let data = random(100_000, 26);
    let id = c.site("a.host").send(&[], &data);
    c.round(&["a.host"]);
    assert_eq!(c.status("a.host", &id)["bulk"]["phase"], "authorized");
    // The identity is gone when the chunk comes: it waits in custody.
    let aside = identity.with_file_name("moved.key");
    std::fs::rename(&identity, &aside).unwrap();
    let log = c.round(&["a.host"]);
    assert!(log.contains("stays held for the next run"), "{log}");
    assert!(c.site("p.hub").received().is_empty());
    c.site("p.hub").assert_nothing_quarantined();
    // Back: the next run opens it, delivers once, and says so.
    std::fs::rename(&aside, &identity).unwrap();
    c.round(&["a.host"]);
    c.round(&["a.host"]);
    assert_eq!(c.status("a.host", &id)["state"], "acknowledged");
    let got = c.site("p.hub").received();
    assert_eq!(got.len(), 1);
    assert!(got[0].1 == data);
    c.site("p.hub").assert_nothing_quarantined();
}

/// A chain where a.host sends p.hub a sealed transfer of three large
/// chunks (all asked for at once; p.hub's `[bulk]` has `extra` too),
/// authorized: the chain, the transfer's ID and its data.
fn sealed_and_authorized(extra: &str, seed: u64) -> (Chain, String, Vec<u8>) {
    let (c, _) = sealed_chain(3, extra);
    let data = random(2 * 57 * 65536 + 1000, seed);
    let id = c.site("a.host").send(&[], &data);
    c.round(&["a.host"]);
    assert_eq!(c.status("a.host", &id)["bulk"]["phase"], "authorized");
    (c, id, data)
}

/// Damages the data text of the first large file (a chunk) under `dir`:
/// a character in its middle that base64 has not.
fn damage_a_large_chunk(dir: &std::path::Path) -> PathBuf {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| e.metadata().is_ok_and(|m| m.len() > 4 << 20))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    let file = files.first().expect("a large chunk to damage").clone();
    let mut bytes = std::fs::read(&file).unwrap();
    let mut at = bytes.len() / 2;
    while !bytes[at].is_ascii_alphanumeric() {
        at += 1;
    }
    bytes[at] = b'*';
    std::fs::write(&file, bytes).unwrap();
    file
}

/// A large chunk damaged on the way (its data text no longer base64) is
/// set aside with the reason where it is read: at the relay that would
/// pass it on, which does not answer for it, and at the receiver, which
/// writes nothing of it. Both come again, and the transfer completes,
/// delivered once.
#[test]
fn large_chunks_damaged_on_the_way_are_set_aside_and_come_again() {
    let (mut c, id, data) = sealed_and_authorized("reservation = \"2h\"\n", 31);
    // The chunks leave; one is damaged before the relay reads it.
    c.flush("a.host");
    damage_a_large_chunk(&c.inbox["r.relay"]);
    c.import("r.relay");
    let reasons = quarantine_reasons(c.site("r.relay"));
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("cannot be read"), "{reasons:?}");
    // Another is damaged before the receiver reads it.
    c.flush("r.relay");
    damage_a_large_chunk(&c.inbox["p.hub"]);
    c.import("p.hub");
    let reasons = quarantine_reasons(c.site("p.hub"));
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("cannot be read"), "{reasons:?}");
    assert!(c.site("p.hub").received().is_empty());
    for _ in 0..6 {
        if c.status("a.host", &id)["state"] == "acknowledged" {
            break;
        }
        c.later(61);
        c.round(&["a.host"]);
    }
    assert_eq!(c.status("a.host", &id)["state"], "acknowledged");
    let got = c.site("p.hub").received();
    assert_eq!(got.len(), 1, "delivered once");
    assert!(got[0].1 == data, "byte-identical");
    assert_eq!(quarantine_reasons(c.site("r.relay")).len(), 1);
    assert_eq!(quarantine_reasons(c.site("p.hub")).len(), 1);
}

/// A large chunk a relay holds for bulk (in `divert/`, as when the bulk
/// lock was busy) and routing sends on is handed on whole: the receiver
/// gets its data, not the start its parse read.
#[test]
fn a_large_chunk_held_at_a_relay_goes_on_whole() {
    let (c, id, data) = sealed_and_authorized("", 41);
    c.flush("a.host");
    // One large chunk taken from the medium into the relay's custody for
    // bulk, with the state a held message has.
    let file = walkdir::WalkDir::new(&c.inbox["r.relay"])
        .into_iter()
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.is_file() && m.len() > 4 << 20))
        .map(|e| e.into_path())
        .min()
        .expect("a large chunk");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let chunk_id = name
        .strip_suffix(".msg")
        .and_then(|s| s.splitn(3, '-').nth(2))
        .expect("a message's wire name")
        .to_string();
    let divert = c.site("r.relay").spool.join("divert");
    std::fs::create_dir_all(&divert).unwrap();
    std::fs::rename(&file, divert.join(format!("{chunk_id}.msg"))).unwrap();
    std::fs::write(
        divert.join(format!("{chunk_id}.state")),
        "rule rs-bulk\nfrom a.host\nfailures 0\n",
    )
    .unwrap();
    for _ in 0..3 {
        if c.status("a.host", &id)["state"] == "acknowledged" {
            break;
        }
        c.round(&["a.host"]);
    }
    assert_eq!(c.status("a.host", &id)["state"], "acknowledged");
    let got = c.site("p.hub").received();
    assert_eq!(got.len(), 1, "delivered once");
    assert!(got[0].1 == data, "byte-identical");
    for n in ["r.relay", "p.hub"] {
        c.site(n).assert_nothing_quarantined();
    }
}

/// `[queue] max_bytes` counts the data of the transfers waiting to be
/// sent: one that does not fit is refused at once (75), the limit and the
/// figures named, and nothing of it kept; once the transfer before it has
/// ended, it fits. `[queue.bulk] max_bytes` counts the same way.
#[test]
fn a_transfer_over_the_queue_limit_is_refused_and_keeps_nothing() {
    let c = Chain::new();
    let a = c.site("a.host");
    a.append_config("[queue]\nmax_bytes = \"100KiB\"\n");
    let first = random(60 * 1024, 21);
    let id = a.send(&[], &first);
    let second = random(60 * 1024, 22);
    let send_second = |site: &Site| {
        site.cmd("rs-send")
            .args(["--class", "test", "--subclass", "case"])
            .stdin(&second)
            .run()
    };
    let refused = send_second(a).code(75);
    assert!(
        refused.stderr.contains("[queue] max_bytes")
            && refused.stderr.contains("61440 bytes of transfers wait")
            && refused.stderr.contains("config.toml"),
        "{}",
        refused.stderr
    );
    let out = bulk_files(a, "out");
    assert!(
        out.len() == 3 && out.iter().all(|f| f.starts_with(&id)),
        "only the first transfer's files: {out:?}"
    );
    assert!(a.files("dead").is_empty(), "nothing kept in dead/");
    for _ in 0..4 {
        c.round(&["a.host"]);
    }
    assert_eq!(c.status("a.host", &id)["state"], "acknowledged");
    let got: Vec<_> = c.site("p.hub").received();
    assert!(got.len() == 1 && got[0].1 == first);
    let id2 = send_second(a).success().stdout.trim().to_string();
    assert_ne!(id2, id);

    let b = c.site("b.host");
    b.append_config("[queue.bulk]\nmax_bytes = \"50KiB\"\n");
    let refused = send_second(b).code(75);
    assert!(
        refused.stderr.contains("[queue.bulk] max_bytes"),
        "{}",
        refused.stderr
    );
    assert!(bulk_files(b, "out").is_empty());
}
