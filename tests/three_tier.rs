//! A three-tier deployment through the real binaries: two sites (`a.host`,
//! `b.host`) behind two redundant relays (`r1.relay`, its backup
//! `r2.relay`) in front of a provider (`p.hub`), once over directories and
//! once over HTTPS (`rs-relay serve`, client certificates). The relays'
//! rules discard, divert to a handler that rewrites, and aggregate
//! heartbeats; the provider sends back-channel messages two hops down,
//! to groups the relays expand, and to a component nobody can reach; the
//! primary relay is killed mid-stream and its backup takes over. In the end
//! every message is delivered exactly once or its origin knows why, and
//! nothing is left to retransmit anywhere.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::http::{route, serve_tls, Pki, Serve};
use support::Site;

const T0: &str = "2026-11-24T10:00:00Z";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Dir,
    Http,
}

/// The five spools, how they reach each other, and (over HTTP) the
/// relays' and the provider's servers.
struct World {
    mode: Mode,
    scratch: Site,
    a: Site,
    b: Site,
    r1: Site,
    r2: Site,
    p: Site,
    /// HTTP: the servers of r1, r2 and p.
    servers: BTreeMap<&'static str, Serve>,
    /// Directories: each component's inbox (`DIR/COMPONENT/FROM/`).
    inbox: BTreeMap<&'static str, PathBuf>,
    /// The minutes added to the pinned clocks so far (directories).
    minutes: i64,
}

const SITES: [&str; 2] = ["a.host", "b.host"];
const ALL: [&str; 5] = ["a.host", "b.host", "r1.relay", "r2.relay", "p.hub"];
const RELAYS: [&str; 2] = ["r1.relay", "r2.relay"];

impl World {
    fn new(mode: Mode) -> World {
        let scratch = Site::new();
        let rewrite = scratch.root().join("rewrite");
        std::fs::write(
            &rewrite,
            "#!/bin/sh\nexec sed 's/subclass=\"raw\"/subclass=\"cooked\"/'\n",
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("755")
            .arg(&rewrite)
            .status()
            .unwrap();
        // Over HTTP the clocks run (the servers keep theirs): the ack
        // timeout is seconds; on directories the clocks are pinned and
        // moved by hand.
        let timeout = match mode {
            Mode::Dir => "10m",
            Mode::Http => "4s",
        };
        let mut w = World {
            mode,
            a: Site::component("a.host"),
            b: Site::component("b.host"),
            r1: Site::component("r1.relay"),
            r2: Site::component("r2.relay"),
            p: Site::component("p.hub"),
            scratch,
            servers: BTreeMap::new(),
            inbox: BTreeMap::new(),
            minutes: 0,
        };
        for r in [&w.r1, &w.r2] {
            r.append_config(&format!(
                "[[rule]]\nname = \"no-debug\"\nclass = \"debug\"\naction = \"discard\"\n\n\
                 [[rule]]\nname = \"cook\"\nsubclass = \"raw\"\naction = \"divert\"\nhandler = \"{}\"\n\n\
                 [[rule]]\nname = \"beats\"\nsubclass = \"heartbeat\"\naction = \"aggregate\"\ncount = 4\nage = \"6h\"\n\n\
                 [[group]]\nname = \"ops\"\nmembers = [\"a.host\", \"b.host\"]\n\n\
                 [[group]]\nname = \"east\"\nmembers = [\"a.host\"]\n",
                rewrite.display()
            ));
        }
        // Tier by tier from the top (a server reads its configuration when
        // it starts): each component's peers, with routes to the tier
        // above; over HTTP, then the tier's servers.
        let pki = (mode == Mode::Http).then(|| Pki::new(w.scratch.root(), "ca"));
        let server = pki.as_ref().map(|p| p.server());
        for c in ALL {
            w.inbox.insert(c, w.scratch.stick(&format!("in-{c}")));
        }
        // The route from `from` to `to`: its inbox, or its server with
        // `from`'s client certificate.
        let way = |w: &World, from: &str, to: &str| match &pki {
            None => format!("dir:{}", w.inbox[to].display()),
            Some(pki) => format!(
                "{}&batch=20&timeout=10s",
                route(&w.servers[to].url, &pki.ca, Some(&pki.client(from)))
            ),
        };
        // Downward routes exist only on media: over HTTP the lower tier polls.
        let down = |w: &World, from: &str, to: &str| match mode {
            Mode::Dir => format!("\nroutes = [\"{}\"]", way(w, from, to)),
            Mode::Http => String::new(),
        };
        let start = |w: &mut World, names: &[&'static str]| {
            if let (Some(pki), Some(server)) = (&pki, &server) {
                for &n in names {
                    serve_tls(w.site(n), server, &pki.ca, "");
                    let s = Serve::start(w.site(n));
                    w.servers.insert(n, s);
                }
            }
        };
        // The provider knows both relays, twins, and the groups and
        // components configured behind the first.
        w.p.peer(
            "r1.relay",
            &format!(
                "backup = \"r2.relay\"\ncomponents = [\"ops\", \"east\", \"a.gone\"]\nack_timeout = \"{timeout}\"{}",
                down(&w, "p.hub", "r1.relay")
            ),
        );
        w.p.peer(
            "r2.relay",
            &format!(
                "ack_timeout = \"{timeout}\"{}",
                down(&w, "p.hub", "r2.relay")
            ),
        );
        start(&mut w, &["p.hub"]);
        for r in RELAYS {
            for s in SITES {
                w.site(r)
                    .peer(s, &format!("ack_timeout = \"{timeout}\"{}", down(&w, r, s)));
            }
            w.site(r).peer(
                "p.hub",
                &format!(
                    "upstream = true\nack_timeout = \"{timeout}\"\nroutes = [\"{}\"]",
                    way(&w, r, "p.hub")
                ),
            );
        }
        start(&mut w, &RELAYS);
        for s in SITES {
            w.site(s).peer(
                "r1.relay",
                &format!(
                    "upstream = true\nbackup = \"r2.relay\"\nack_timeout = \"{timeout}\"\nroutes = [\"{}\"]",
                    way(&w, s, "r1.relay")
                ),
            );
            w.site(s).peer(
                "r2.relay",
                &format!(
                    "ack_timeout = \"{timeout}\"\nroutes = [\"{}\"]",
                    way(&w, s, "r2.relay")
                ),
            );
        }
        if mode == Mode::Dir {
            w.set_clocks();
        }
        w
    }

    fn site(&self, name: &str) -> &Site {
        match name {
            "a.host" => &self.a,
            "b.host" => &self.b,
            "r1.relay" => &self.r1,
            "r2.relay" => &self.r2,
            "p.hub" => &self.p,
            other => panic!("no site {other}"),
        }
    }

    fn set_clocks(&mut self) {
        let t = rs::time::Timestamp::parse(T0)
            .unwrap()
            .saturating_add(Duration::from_secs(self.minutes as u64 * 60))
            .to_rfc3339();
        for s in [
            &mut self.a,
            &mut self.b,
            &mut self.r1,
            &mut self.r2,
            &mut self.p,
        ] {
            s.at(&t);
        }
    }

    /// Lets more than an ack timeout pass.
    fn wait_out_ack_timeout(&mut self) {
        match self.mode {
            Mode::Dir => {
                self.minutes += 11;
                self.set_clocks();
            }
            Mode::Http => std::thread::sleep(Duration::from_secs(5)),
        }
    }

    fn flush(&self, name: &str) {
        let mut args = vec!["flush"];
        if self.mode == Mode::Http {
            // A relay found dead is tried again at once, not after its
            // retry time: the test restarts it within seconds.
            args.push("--force");
        }
        let r = self.site(name).cmd("rs-queue").args(args).run();
        assert!(
            matches!(r.code, Some(0) | Some(75)),
            "{name} flush: {}",
            r.stderr
        );
    }

    fn import(&self, name: &str) {
        if let (Mode::Dir, Some(dir)) = (self.mode, self.inbox.get(name)) {
            let site = self.site(name);
            let r = site.import_from(dir).run();
            assert!(
                matches!(r.code, Some(0) | Some(75)),
                "{name} import: {}",
                r.stderr
            );
        }
    }

    /// One round trip through the tree, skipping the components `down`:
    /// the sites send, the relays pass on, the provider answers, the
    /// relays pass back, the sites take what came back.
    fn round(&self, down: &[&str]) {
        let up = |n: &&&str| !down.contains(*n);
        for s in SITES.iter().filter(up) {
            self.flush(s);
        }
        for r in RELAYS.iter().filter(up) {
            self.import(r);
            self.flush(r);
        }
        self.import("p.hub");
        self.flush("p.hub");
        for r in RELAYS.iter().filter(up) {
            self.import(r);
            self.flush(r);
        }
        for s in SITES.iter().filter(up) {
            self.import(s);
            self.flush(s);
            self.import(s);
        }
    }

    /// The IDs waiting anywhere (queued or sent, not yet acknowledged).
    fn waiting(&self) -> BTreeMap<&'static str, Vec<String>> {
        let mut out = BTreeMap::new();
        for n in ALL {
            let ids = self.site(n).listed_ids();
            if !ids.is_empty() {
                out.insert(n, ids);
            }
        }
        out
    }
}

fn send(site: &Site, class: &str, subclass: &str, body: &str) -> String {
    site.cmd("rs-send")
        .args(["--class", class, "--subclass", subclass])
        .stdin(body.as_bytes())
        .run()
        .success()
        .stdout
        .trim()
        .to_string()
}

fn status(site: &Site, id: &str) -> serde_json::Value {
    site.cmd("rs-ack")
        .args(["status", "--json", id])
        .run()
        .success()
        .json()
}

/// Content as text, for the messages a site received.
fn received(site: &Site) -> Vec<(String, String)> {
    site.received()
        .into_iter()
        .map(|(id, c)| (id, String::from_utf8_lossy(&c).into_owned()))
        .collect()
}

/// How many messages `site` holds in its queue.
fn queued(site: &Site) -> usize {
    ["urgent", "normal", "bulk"]
        .iter()
        .map(|p| {
            std::fs::read_dir(site.spool.join("queue").join(p))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum()
}

/// Waits (at most 60 s) until `cond` holds or `child` exits.
fn wait_until(child: &mut std::process::Child, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() && child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "nothing happens");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn spawn_quiet(mut cmd: std::process::Command) -> std::process::Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

fn scenario(mode: Mode) {
    let mut w = World::new(mode);

    // 1. Forward traffic from both sites, through the primary relay.
    let mut plain: BTreeMap<String, &str> = BTreeMap::new();
    let mut beats = BTreeSet::new();
    for (s, name) in [(&w.a, "a.host"), (&w.b, "b.host")] {
        for i in 0..3 {
            plain.insert(
                send(s, "inventory", "x", &format!("{name} plain {i}")),
                name,
            );
        }
        for i in 0..4 {
            beats.insert(send(
                s,
                "infrastructure",
                "heartbeat",
                &format!("{name} beat {i}"),
            ));
        }
    }
    let noise = send(&w.a, "debug", "x", "noise");
    let raw = send(&w.b, "inventory", "raw", "cook me");
    for _ in 0..2 {
        w.round(&[]);
    }

    // 2. The provider answers two hops down: each site, both sites'
    //    group, one site's group, and a component the relay cannot reach.
    let mut back: BTreeMap<String, &str> = BTreeMap::new();
    for s in SITES {
        for i in 0..2 {
            back.insert(w.p.send(&["--to", s], format!("to {s} {i}").as_bytes()), s);
        }
    }
    let ops = w.p.send(&["--to", "group:ops"], b"to ops");
    let east = w.p.send(&["--to", "group:east"], b"to east");
    let gone = w.p.send(&["--to", "a.gone"], b"to nobody");
    for _ in 0..3 {
        w.round(&[]);
    }

    // 3. The primary relay is killed while it takes a batch from a.host;
    //    it stays down past the ack timeout; the backup takes over.
    let mut batch = BTreeSet::new();
    for i in 0..150 {
        batch.insert(send(&w.a, "inventory", "batch", &format!("batch {i}")));
    }
    // Killed once it holds part of the batch: the relay dies mid-stream
    // with some of it acknowledged (or about to be) and the rest not.
    let before = queued(&w.r1);
    let taken = || queued(&w.r1) > before;
    match mode {
        Mode::Dir => {
            w.flush("a.host");
            let mut import = spawn_quiet(
                w.r1.cmd("rs-relay")
                    .args(["import", "--from"])
                    .args([&w.inbox["r1.relay"]])
                    .command(),
            );
            wait_until(&mut import, taken);
            let _ = import.kill();
            let _ = import.wait();
        }
        Mode::Http => {
            let mut flush = spawn_quiet(w.a.cmd("rs-queue").args(["flush", "--force"]).command());
            wait_until(&mut flush, taken);
            w.servers.get_mut("r1.relay").unwrap().kill();
            let start = Instant::now();
            while flush.try_wait().unwrap().is_none() {
                assert!(start.elapsed() < Duration::from_secs(60), "flush hangs");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let held = queued(&w.r1) - before;
    assert!(
        held > 0,
        "{mode:?}: the primary took part of the batch before it died"
    );
    eprintln!("{mode:?}: the primary held {held} of the batch when it was killed");
    // More traffic while the primary is down.
    for i in 0..10 {
        batch.insert(send(&w.a, "inventory", "batch", &format!("late {i}")));
    }
    // Sent to the primary (on a medium, nothing tells the site it is down)
    // and not acknowledged: after the timeout, sent again to the backup.
    for _ in 0..2 {
        w.wait_out_ack_timeout();
        w.round(&["r1.relay"]);
    }
    let at_p: BTreeSet<String> = w.p.received().into_iter().map(|(id, _)| id).collect();
    assert!(
        batch.iter().all(|id| at_p.contains(id)),
        "{mode:?}: with the primary down, the backup carried every message of the batch ({} of {})",
        batch.iter().filter(|id| at_p.contains(*id)).count(),
        batch.len()
    );

    // 4. The primary comes back with whatever it had taken.
    if mode == Mode::Http {
        let port = w.servers["r1.relay"].port;
        w.servers.insert("r1.relay", Serve::start_on(&w.r1, port));
    }
    for _ in 0..12 {
        w.round(&[]);
        if w.waiting().is_empty() {
            break;
        }
        w.wait_out_ack_timeout();
    }
    assert!(
        w.waiting().is_empty(),
        "{mode:?}: nothing may be left to retransmit: {:?}",
        w.waiting()
    );

    // Exactly once at the provider: the plain messages, the batch, the
    // cooked one (same ID, rewritten), and aggregates holding each
    // heartbeat once; the discarded one nowhere.
    let got = received(&w.p);
    let mut ids = BTreeSet::new();
    let mut nested = BTreeSet::new();
    for (id, content) in &got {
        assert!(ids.insert(id.clone()), "{mode:?}: {id} delivered twice");
        if id.contains("-agg-") {
            for m in rs::message::envelope::parse(content.as_bytes()).unwrap() {
                assert!(
                    nested.insert(m.header.id.to_string()),
                    "{mode:?}: a heartbeat in two aggregates"
                );
            }
        }
    }
    assert_eq!(
        nested, beats,
        "{mode:?}: every heartbeat in exactly one aggregate"
    );
    let expected: BTreeSet<String> = plain.keys().chain(&batch).chain([&raw]).cloned().collect();
    let singles: BTreeSet<String> = ids
        .iter()
        .filter(|i| !i.contains("-agg-"))
        .cloned()
        .collect();
    assert_eq!(singles, expected, "{mode:?}: the provider's deliveries");
    assert!(!ids.contains(&noise));
    let cooked = std::fs::read_dir(w.p.spool.join("received/new"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .find(|t| t.contains(&raw))
        .unwrap();
    assert!(
        cooked.contains("subclass=\"cooked\""),
        "{mode:?}: the handler's rewrite went on"
    );

    // Two hops down: each site got its own, its groups' copies, once.
    for s in SITES {
        let got = received(w.site(s));
        let mut seen = BTreeSet::new();
        for (id, _) in &got {
            assert!(seen.insert(id.clone()), "{mode:?}: {s} got {id} twice");
        }
        let own: BTreeSet<String> = back
            .iter()
            .filter(|(_, to)| **to == s)
            .map(|(id, _)| id.clone())
            .collect();
        assert!(
            own.is_subset(&seen),
            "{mode:?}: {s} misses its own: {got:?}"
        );
        let groups: Vec<&String> = got
            .iter()
            .filter(|(_, c)| c.starts_with("to ops") || c.starts_with("to east"))
            .map(|(_, c)| c)
            .collect();
        let expected = if s == "a.host" { 2 } else { 1 };
        assert_eq!(groups.len(), expected, "{mode:?}: {s}: {groups:?}");
        assert_eq!(
            got.len(),
            own.len() + expected,
            "{mode:?}: {s} got more: {got:?}"
        );
    }
    for r in RELAYS {
        assert!(
            w.site(r).received().is_empty(),
            "{mode:?}: a relay is no member"
        );
    }

    // The origins know: delivered, discarded, rejected with the reason.
    let origins = plain
        .iter()
        .map(|(id, s)| (id, *s))
        .chain(batch.iter().map(|id| (id, "a.host")));
    for (id, origin) in origins {
        let st = status(w.site(origin), id);
        assert!(
            st["summary"]
                .as_str()
                .unwrap()
                .contains("delivered at p.hub"),
            "{mode:?}: {st}"
        );
    }
    let st = status(&w.a, &noise);
    assert_eq!(st["acks"][0]["code"], "discarded", "{mode:?}: {st}");
    let st = status(&w.p, &gone);
    assert_eq!(st["state"], "dead", "{mode:?}: {st}");
    assert!(
        st["summary"].as_str().unwrap().contains("rejected"),
        "{mode:?}: {st}"
    );
    for id in [&ops, &east] {
        let st = status(&w.p, id);
        assert_eq!(st["state"], "acknowledged", "{mode:?}: {st}");
    }
}

#[test]
fn three_tiers_over_directories() {
    scenario(Mode::Dir);
}

#[test]
fn three_tiers_over_https() {
    scenario(Mode::Http);
}
