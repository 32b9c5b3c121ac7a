//! Bulk data through the real binaries (SPEC.md sections 11 and 12):
//! authorized by every hop and the receiver first, then sent in chunks the
//! receiver asks for, verified whole, delivered once.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use support::Site;

const T0: &str = "2026-12-02T10:00:00Z";

/// A site, a relay and the provider over directories (removable media):
/// `a.host` → `r.relay` → `p.hub`, and back. Clocks pinned, moved by hand.
struct Chain {
    sites: BTreeMap<&'static str, Site>,
    inbox: BTreeMap<&'static str, PathBuf>,
    minutes: u64,
}

const SITES: [&str; 2] = ["a.host", "b.host"];

impl Chain {
    fn new() -> Chain {
        let mut c = Chain {
            sites: BTreeMap::new(),
            inbox: BTreeMap::new(),
            minutes: 0,
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

    fn site(&self, n: &str) -> &Site {
        &self.sites[n]
    }

    fn set_clock(&mut self) {
        let t = rs::time::Timestamp::parse(T0)
            .unwrap()
            .saturating_add(Duration::from_secs(self.minutes * 60))
            .to_rfc3339();
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
        self.site(n)
            .cmd("rs-ack")
            .args(["status", "--json", id])
            .run()
            .success()
            .json()
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
