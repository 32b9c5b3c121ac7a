//! Simulated power loss and I/O errors at every durable operation of the
//! delivery cycle, through the real binaries (built with the feature
//! `fault-injection`; see crates/spool/src/spool/fault.rs).
//!
//! For each command of a representative run and each operation index N of
//! it, a fresh pair of sites runs the cycle up to that command, which then
//! meets its fault at operation N: a power cut (what was not fsynced undone
//! or torn), or a disk that is full from N on. The machine "reboots" (a new
//! boot ID), every command runs to completion, retransmissions settle, and
//! then: every message whose ID `rs-send` printed is delivered exactly
//! once, intact; nothing else is delivered twice; nothing is left queued,
//! dead or quarantined.
//!
//! The HTTP exchange carries a bulk transfer too (its request, answers and
//! tus upload in one flush), so every durable point of an upload meets
//! the fault on either side.
//!
//! `RS_POWERLOSS_MODES` (default: one mode per index, in turn) and
//! `RS_POWERLOSS_STEP` (every Nth index) bound the campaign;
//! scripts/soak.sh runs every mode at every index.
#![cfg(feature = "fault-injection")]

mod support;

use std::collections::{HashMap, HashSet};

use support::Site;

const CRASH_EXIT: i32 = rs::spool::fault::CRASH_EXIT;
const MODES: [&str; 3] = ["drop", "tear", "mix"];

/// The time `secs` seconds from now, for `RS_NOW`.
fn from_now(secs: i64) -> String {
    rs::time::Timestamp::from_micros(rs::time::system_now().as_micros() + secs * 1_000_000)
        .to_rfc3339()
}

/// Which deployment a campaign runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// A's messages to B over removable media (export, import) and B's
    /// acknowledgements back (emit, export, apply).
    Media,
    /// A to a relay R to a provider P, each hop a `dir:` route (flush)
    /// into the next one's inbox (import): R passes the message on.
    Relay,
    /// The media cycle with an operator's commands on the way: hold and
    /// release (one message, then all sending), throttle, check, prune.
    Operator,
    /// A's message by mail: `rs-relay receive` at B as the MTA's pipe,
    /// piped again until it exits 0 (what an MTA does).
    Mail,
    /// A's message posted to B's `rs-relay cgi` as a web server runs it
    /// (one process per request), posted again until it is answered.
    Cgi,
}

/// The sites of a layout and what has been sent through them.
struct World {
    layout: Layout,
    /// Sites by name; the first sends, the last receives.
    sites: Vec<(&'static str, Site)>,
    /// Directories by name: sticks or inboxes.
    dirs: HashMap<&'static str, String>,
    /// Payloads by the ID `rs-send` printed.
    sent: HashMap<String, Vec<u8>>,
    /// Every payload handed to rs-send, printed or not.
    payloads: HashSet<Vec<u8>>,
    /// The ID rs-send printed last.
    last: String,
    boot: &'static str,
    /// What the last command said.
    stderr: String,
}

/// One command: the site that runs it and its arguments (a directory's
/// name stands for its path).
type Step = (&'static str, &'static [&'static str]);

const MEDIA: [Step; 6] = [
    ("a", &["rs-send"]),
    ("a", &["rs-queue", "export", "--to", "to-b"]),
    ("b", &["rs-relay", "import", "--from", "to-b"]),
    ("b", &["rs-ack", "emit"]),
    ("b", &["rs-queue", "export", "--to", "to-a"]),
    ("a", &["rs-ack", "apply", "--from", "to-a"]),
];

const RELAY: [Step; 8] = [
    ("a", &["rs-send"]),
    ("a", &["rs-queue", "flush"]),
    ("r", &["rs-relay", "import", "--from", "in-r"]),
    ("r", &["rs-queue", "flush"]),
    ("p", &["rs-relay", "import", "--from", "in-p"]),
    ("p", &["rs-queue", "flush"]),
    ("r", &["rs-relay", "import", "--from", "in-r"]),
    ("a", &["rs-relay", "import", "--from", "in-a"]),
];

/// `LAST` stands for the ID rs-send printed last, `COUNT` for a number
/// that changes with every message sent.
const OPERATOR: [Step; 13] = [
    ("a", &["rs-send"]),
    ("a", &["rs-queue", "hold", "LAST"]),
    ("a", &["rs-queue", "release", "LAST"]),
    ("a", &["rs-queue", "hold"]),
    ("a", &["rs-queue", "release"]),
    (
        "a",
        &["rs-queue", "throttle", "--max-messages-per-day", "COUNT"],
    ),
    ("a", &["rs-queue", "check"]),
    ("a", &["rs-queue", "prune"]),
    MEDIA[1],
    MEDIA[2],
    MEDIA[3],
    MEDIA[4],
    MEDIA[5],
];

/// `MAIL`: the mail carrying the message rs-send printed last.
const MAIL: [Step; 2] = [("a", &["rs-send"]), ("b", &["rs-relay", "receive", "MAIL"])];

/// `BODY`: a request posting the message rs-send printed last.
const CGI: [Step; 2] = [("a", &["rs-send"]), ("b", &["rs-relay", "cgi", "BODY"])];

impl Layout {
    /// The commands of the cycle that meet faults (the operator's layout
    /// leaves the media steps to the media campaign).
    fn faulted(self) -> std::ops::Range<usize> {
        match self {
            Layout::Operator => 1..8,
            _ => 0..self.cycle().len(),
        }
    }

    fn cycle(self) -> &'static [Step] {
        match self {
            Layout::Media => &MEDIA,
            Layout::Relay => &RELAY,
            Layout::Operator => &OPERATOR,
            Layout::Mail => &MAIL,
            Layout::Cgi => &CGI,
        }
    }
}

impl World {
    fn new(layout: Layout) -> World {
        let mut w = World {
            layout,
            sites: Vec::new(),
            dirs: HashMap::new(),
            sent: HashMap::new(),
            payloads: HashSet::new(),
            last: String::new(),
            boot: "boot-1",
            stderr: String::new(),
        };
        match layout {
            Layout::Media | Layout::Operator => {
                let a = Site::component("a.host");
                a.peer("b.hub", "upstream = true\nack_timeout = \"10m\"");
                let b = Site::component("b.hub");
                b.peer("a.host", "");
                for d in ["to-b", "to-a"] {
                    w.dirs.insert(d, a.stick(d).to_string_lossy().into_owned());
                }
                w.sites = vec![("a", a), ("b", b)];
            }
            Layout::Cgi => {
                let (a, b) = (Site::component("a.host"), Site::component("b.hub"));
                b.peer("a.host", "authentication = \"none\"");
                w.sites = vec![("a", a), ("b", b)];
            }
            Layout::Mail => {
                let (a, b) = (Site::component("a.host"), Site::component("b.hub"));
                support::mail_peers(&a, &b);
                w.sites = vec![("a", a), ("b", b)];
            }
            Layout::Relay => {
                let (a, r, p) = (
                    Site::component("a.host"),
                    Site::component("r.relay"),
                    Site::component("p.hub"),
                );
                for d in ["in-a", "in-r", "in-p"] {
                    w.dirs.insert(d, a.stick(d).to_string_lossy().into_owned());
                }
                let route = |d: &str| format!("routes = [\"dir:{}\"]", w.dirs[d]);
                let timeout = "ack_timeout = \"10m\"";
                a.peer(
                    "r.relay",
                    &format!("upstream = true\n{timeout}\n{}", route("in-r")),
                );
                r.peer("a.host", &format!("{timeout}\n{}", route("in-a")));
                r.peer(
                    "p.hub",
                    &format!("upstream = true\n{timeout}\n{}", route("in-p")),
                );
                p.peer("r.relay", &format!("{timeout}\n{}", route("in-r")));
                w.sites = vec![("a", a), ("r", r), ("p", p)];
            }
        }
        // Something already delivered and acknowledged, so every file the
        // cycle keeps exists before the step under test.
        for &step in layout.cycle() {
            assert_eq!(w.run(step, &[], None), 0, "{step:?}: {}", w.stderr);
        }
        w
    }

    fn site(&self, name: &str) -> &Site {
        &self
            .sites
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a site")
            .1
    }

    /// Runs `step` with the extra environment `env`; returns its status.
    fn run(&mut self, step: Step, env: &[(&str, &str)], now: Option<&str>) -> i32 {
        let (name, args) = step;
        let payload = format!("message {} of the campaign", self.payloads.len()).into_bytes();
        let mut cmd = self
            .site(name)
            .cmd(args[0])
            .args(
                args[1..]
                    .iter()
                    .filter(|&&a| a != "MAIL" && a != "BODY")
                    .map(|&a| match a {
                        "LAST" => self.last.clone(),
                        "COUNT" => (1000 + self.payloads.len()).to_string(),
                        _ => self.dirs.get(a).map_or(a, |d| d.as_str()).to_string(),
                    }),
            )
            .env("RS_FAULT_BOOT", self.boot);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        if let Some(now) = now {
            cmd = cmd.env("RS_NOW", now);
        }
        let sending = args[0] == "rs-send";
        if args.last() == Some(&"BODY") {
            let body = queued(self.site("a"), &self.last);
            cmd = cmd
                .env("REQUEST_METHOD", "POST")
                .env("CONTENT_LENGTH", &body.len().to_string())
                .env("HTTP_X_RS_FROM", "a.host")
                .stdin(&body);
        }
        if args.last() == Some(&"MAIL") {
            cmd = cmd.stdin(&support::mail_from_a(self.site("a"), &self.last));
        }
        if sending {
            cmd = cmd
                .args(["--class", "t", "--subclass", "p"])
                .stdin(&payload);
            self.payloads.insert(payload.clone());
        }
        let r = cmd.run();
        let code = r.code.unwrap_or(-1);
        self.stderr = r.stderr.clone();
        if sending && code == 0 {
            self.last = r.stdout.trim().to_string();
            self.sent.insert(self.last.clone(), payload);
        }
        code
    }

    /// After a reboot: the rest of the cycle, then rounds hours apart
    /// until retransmissions settle.
    fn finish(&mut self, from: usize) {
        self.boot = "boot-2";
        let cycle = self.layout.cycle();
        for &step in &cycle[from..] {
            let code = self.run(step, &[], None);
            assert_eq!(code, 0, "{step:?} after the reboot: {}", self.stderr);
        }
        for round in 1..=2 {
            let later = from_now(round * 3 * 3600);
            let carries = |(_, a): &&Step| {
                ["export", "import", "emit", "apply", "flush"]
                    .contains(&a.get(1).copied().unwrap_or(""))
            };
            for &step in cycle.iter().filter(carries) {
                let code = self.run(step, &[], Some(&later));
                assert_eq!(code, 0, "{step:?} while settling: {}", self.stderr);
            }
        }
    }

    /// Nothing acknowledged lost, nothing delivered twice, nothing left.
    fn check(&self, what: &str) {
        let got = self.sites.last().expect("a receiver").1.received();
        let mut ids = HashSet::new();
        for (id, content) in &got {
            assert!(ids.insert(id), "{what}: {id} delivered twice");
            assert!(
                self.payloads.contains(content),
                "{what}: {id} delivered with content nobody sent"
            );
        }
        for (id, payload) in &self.sent {
            let delivered = got.iter().find(|(g, _)| g == id);
            assert!(delivered.is_some(), "{what}: {id} (queued) lost");
            assert_eq!(&delivered.unwrap().1, payload, "{what}: {id}");
        }
        for (name, site) in &self.sites {
            if matches!(self.layout, Layout::Mail | Layout::Cgi) && *name == "a" {
                // Acknowledged by mail, or in a reply only a client reads:
                // this run carries neither back.
                continue;
            }
            let stats = site
                .cmd("rs-queue")
                .args(["stats", "--json"])
                .env("RS_FAULT_BOOT", self.boot)
                .run()
                .success()
                .json();
            assert_eq!(
                stats["outbound"]["total"]["messages"], 0,
                "{what}: {name} still holds messages"
            );
            for area in ["dead", "quarantine"] {
                let left = site.files(area);
                assert!(left.is_empty(), "{what}: {name} {area}/ holds {left:?}");
            }
        }
    }
}

/// The envelope of `id` as `site` queued it (what a client posts).
fn queued(site: &Site, id: &str) -> Vec<u8> {
    let path = walkdir::WalkDir::new(site.spool.join("queue"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains(id))
        .expect("the message in the queue")
        .into_path();
    std::fs::read(path).expect("read the queued message")
}

fn modes() -> Vec<String> {
    std::env::var("RS_POWERLOSS_MODES")
        .map(|m| m.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

fn stride() -> u64 {
    std::env::var("RS_POWERLOSS_STEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The modes to try at operation `n`: one in turn, or those chosen.
fn modes_at(n: u64) -> Vec<String> {
    let every = modes();
    if every.is_empty() {
        vec![MODES[(n % 3) as usize].to_string()]
    } else {
        every
    }
}

/// Counts the lines of the trace a run with `RS_FAULT_TRACE` left.
fn traced(trace: &std::path::Path) -> u64 {
    std::fs::read_to_string(trace)
        .map(|t| t.lines().count() as u64)
        .unwrap_or(0)
}

/// How many operations the command at `index` of the cycle makes.
fn operations(layout: Layout, index: usize) -> u64 {
    let mut w = World::new(layout);
    let cycle = layout.cycle();
    for &before in &cycle[..index] {
        assert_eq!(w.run(before, &[], None), 0, "{before:?}");
    }
    let trace = w.sites[0].1.root().join("trace");
    let trace_s = trace.to_string_lossy().into_owned();
    let code = w.run(
        cycle[index],
        &[("RS_FAULT", "crash@1000000"), ("RS_FAULT_TRACE", &trace_s)],
        None,
    );
    assert_eq!(code, 0, "{}", w.stderr);
    traced(&trace)
}

/// Runs the campaign for one kind of fault: `plan(n)` is the `RS_FAULT`
/// value for operation n; `expect(code)` says whether the exit status of
/// the run that met it is right.
fn campaign(
    layout: Layout,
    kind: &str,
    plan: impl Fn(u64) -> String,
    expect: impl Fn(i32) -> bool,
) {
    let mut trials = 0;
    for index in layout.faulted() {
        let step = layout.cycle()[index];
        let total = operations(layout, index);
        assert!(total > 0, "{step:?} makes no durable operation");
        eprintln!("{kind}: {step:?} makes {total} operation(s)");
        for n in (1..=total).step_by(stride() as usize) {
            for mode in modes_at(n) {
                let mut w = World::new(layout);
                for &before in &layout.cycle()[..index] {
                    assert_eq!(w.run(before, &[], None), 0, "{before:?}");
                }
                let fault = plan(n);
                let seed = n.to_string();
                let code = w.run(
                    step,
                    &[
                        ("RS_FAULT", &fault),
                        ("RS_FAULT_MODE", &mode),
                        ("RS_FAULT_SEED", &seed),
                    ],
                    None,
                );
                let what = format!("{kind}: {step:?} with RS_FAULT={fault} RS_FAULT_MODE={mode}");
                assert!(expect(code), "{what}: exit status {code}: {}", w.stderr);
                trials += 1;
                w.finish(index);
                w.check(&what);
            }
        }
    }
    eprintln!("{kind} ({layout:?}): {trials} trial(s), 0 lost, 0 duplicated");
}

fn cut(code: i32) -> bool {
    code == CRASH_EXIT
}

/// A failed write: the command says so (data, cannot create, I/O,
/// temporary) or, where what failed was only a cache, carries on.
fn clean_failure(code: i32) -> bool {
    [0, 65, 73, 74, 75].contains(&code)
}

#[test]
fn a_power_cut_at_any_operation_of_the_media_cycle_loses_nothing() {
    campaign(Layout::Media, "power cut", |n| format!("crash@{n}"), cut);
}

#[test]
fn a_disk_that_fills_at_any_operation_of_the_media_cycle_fails_cleanly() {
    campaign(
        Layout::Media,
        "full disk",
        |n| format!("enospc@{n}+"),
        clean_failure,
    );
}

#[test]
fn an_io_error_at_any_operation_of_the_media_cycle_fails_cleanly() {
    campaign(
        Layout::Media,
        "I/O error",
        |n| format!("eio@{n}"),
        clean_failure,
    );
}

#[test]
fn a_power_cut_at_any_operation_of_an_operators_command_loses_nothing() {
    campaign(Layout::Operator, "power cut", |n| format!("crash@{n}"), cut);
}

#[test]
fn a_disk_that_fills_at_any_operation_of_an_operators_command_fails_cleanly() {
    campaign(
        Layout::Operator,
        "full disk",
        |n| format!("enospc@{n}+"),
        clean_failure,
    );
}

#[test]
fn a_power_cut_at_any_operation_of_mail_received_loses_nothing() {
    campaign(Layout::Mail, "power cut", |n| format!("crash@{n}"), cut);
}

#[test]
fn a_disk_that_fills_at_any_operation_of_mail_received_is_left_with_the_mta() {
    // Any failure but 75 would make the MTA bounce the mail.
    campaign(
        Layout::Mail,
        "full disk",
        |n| format!("enospc@{n}+"),
        |c| c == 0 || c == 75,
    );
}

#[test]
fn a_power_cut_at_any_operation_of_a_cgi_request_loses_nothing() {
    campaign(Layout::Cgi, "power cut", |n| format!("crash@{n}"), cut);
}

#[test]
fn a_disk_that_fills_at_any_operation_of_a_cgi_request_fails_cleanly() {
    campaign(
        Layout::Cgi,
        "full disk",
        |n| format!("enospc@{n}+"),
        clean_failure,
    );
}

#[test]
fn a_power_cut_at_any_operation_of_a_relayed_flush_loses_nothing() {
    campaign(Layout::Relay, "power cut", |n| format!("crash@{n}"), cut);
}

#[test]
fn a_disk_that_fills_at_any_operation_of_a_relayed_flush_fails_cleanly() {
    campaign(
        Layout::Relay,
        "full disk",
        |n| format!("enospc@{n}+"),
        clean_failure,
    );
}

/// A site posting to a provider's `rs-relay serve` (plain HTTP, a link
/// without authentication) and taking its back-channel in the replies.
struct Http {
    p: Site,
    a: Site,
    port: u16,
    up: HashMap<String, Vec<u8>>,
    down: HashMap<String, Vec<u8>>,
    payloads: HashSet<Vec<u8>>,
    boot: &'static str,
}

/// Which side of the exchange meets the fault.
#[derive(Clone, Copy, Debug)]
enum Side {
    Server,
    Client,
}

impl Http {
    fn new() -> Http {
        let p = Site::component("p.hub");
        p.peer("a.host", "authentication = \"none\"\nack_timeout = \"10m\"");
        // Pieces of 64 KiB (64 chunks): three to the upload.
        p.append_config("[bulk]\nchunk_size = \"1KiB\"\n");
        let a = Site::component("a.host");
        a.bulk_threshold("4KiB");
        let port = support::free_port();
        a.peer(
            "p.hub",
            &format!(
                "upstream = true\nauthentication = \"none\"\nack_timeout = \"10m\"\nroutes = [\"http://127.0.0.1:{port}/rs\"]"
            ),
        );
        let mut h = Http {
            p,
            a,
            port,
            up: HashMap::new(),
            down: HashMap::new(),
            payloads: HashSet::new(),
            boot: "boot-1",
        };
        // One exchange first, so the files an exchange keeps exist.
        h.round();
        let _srv = h.serve(&[]);
        assert_eq!(h.flush(&[], None), 0);
        assert_eq!(h.flush(&[], None), 0);
        h
    }

    /// One message each way, and a bulk transfer up (its request, the
    /// answer, the upload with tus and the last answer, all in one flush).
    fn round(&mut self) {
        let n = self.payloads.len();
        let bulk: Vec<u8> = (0..150_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ n as u8)
            .collect();
        let id = self.a.send(&[], &bulk);
        self.up.insert(id, bulk.clone());
        self.payloads.insert(bulk);
        for (site, to, map) in [
            (&self.a, None, &mut self.up),
            (&self.p, Some("a.host"), &mut self.down),
        ] {
            let payload = format!("exchange {n} {}", to.unwrap_or("up")).into_bytes();
            let mut args = vec![];
            if let Some(to) = to {
                args = vec!["--to", to];
            }
            let id = site.send(&args, &payload);
            map.insert(id, payload.clone());
            self.payloads.insert(payload);
        }
    }

    fn serve(&self, env: &[(&str, &str)]) -> support::http::Serve {
        let mut cmd = self.p.cmd("rs-relay").env("RS_FAULT_BOOT", self.boot);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        support::http::Serve::spawn(cmd, self.port)
    }

    fn flush(&self, env: &[(&str, &str)], now: Option<&str>) -> i32 {
        let mut cmd = self
            .a
            .cmd("rs-queue")
            .args(["flush", "--force"])
            .env("RS_FAULT_BOOT", self.boot);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        if let Some(now) = now {
            cmd = cmd.env("RS_NOW", now);
        }
        cmd.run().code.unwrap_or(-1)
    }

    /// The exchange with the fault on `side`; returns the faulted run's
    /// exit status.
    fn exchange(&mut self, side: Side, env: &[(&str, &str)]) -> i32 {
        self.round();
        match side {
            Side::Client => {
                let _srv = self.serve(&[]);
                self.flush(env, None)
            }
            Side::Server => {
                let mut srv = self.serve(env);
                let client = self.flush(&[], None);
                assert!(
                    [0, 75].contains(&client),
                    "the client's exit status {client}"
                );
                // A cut ends the server; a failed write leaves it serving.
                let cut = env
                    .iter()
                    .any(|(k, v)| *k == "RS_FAULT" && v.starts_with("crash@"));
                let code = match cut {
                    true => srv.exit_within(std::time::Duration::from_secs(2)),
                    false => None,
                };
                srv.kill();
                code.unwrap_or(0)
            }
        }
    }

    /// After a reboot: the server up again and the site flushing, then
    /// hours later, until everything settled.
    fn finish(&mut self) {
        self.boot = "boot-2";
        let srv = self.serve(&[]);
        for _ in 0..2 {
            self.flush(&[], None);
        }
        drop(srv);
        let later = from_now(3 * 3600);
        let srv = self.serve(&[("RS_NOW", &later)]);
        for _ in 0..3 {
            self.flush(&[], Some(&later));
        }
        drop(srv);
    }

    fn check(&self, what: &str) {
        for (site, sent, name) in [(&self.p, &self.up, "P"), (&self.a, &self.down, "A")] {
            let got = site.received();
            let mut ids = HashSet::new();
            for (id, content) in &got {
                assert!(ids.insert(id), "{what}: {id} delivered twice at {name}");
                assert!(self.payloads.contains(content), "{what}: {id} altered");
            }
            for (id, payload) in sent {
                let delivered = got.iter().find(|(g, _)| g == id);
                assert!(
                    delivered.is_some(),
                    "{what}: {id} lost on the way to {name}"
                );
                assert_eq!(&delivered.unwrap().1, payload, "{what}: {id}");
            }
            for area in ["dead", "quarantine"] {
                let left = site.files(area);
                assert!(left.is_empty(), "{what}: {name} {area}/ holds {left:?}");
            }
        }
    }
}

fn http_campaign(kind: &str, plan: impl Fn(u64) -> String, expect: impl Fn(i32) -> bool) {
    let mut trials = 0;
    for side in [Side::Server, Side::Client] {
        let total = {
            let mut h = Http::new();
            let trace = h.a.root().join("trace");
            let trace_s = trace.to_string_lossy().into_owned();
            h.exchange(
                side,
                &[("RS_FAULT", "crash@1000000"), ("RS_FAULT_TRACE", &trace_s)],
            );
            traced(&trace)
        };
        assert!(total > 0, "the {side:?} makes no durable operation");
        eprintln!("{kind}: the HTTP {side:?} makes {total} operation(s) in an exchange");
        for n in (1..=total).step_by(stride() as usize) {
            for mode in modes_at(n) {
                let mut h = Http::new();
                let fault = plan(n);
                let seed = n.to_string();
                let code = h.exchange(
                    side,
                    &[
                        ("RS_FAULT", &fault),
                        ("RS_FAULT_MODE", &mode),
                        ("RS_FAULT_SEED", &seed),
                    ],
                );
                let what =
                    format!("{kind}: the HTTP {side:?} with RS_FAULT={fault} RS_FAULT_MODE={mode}");
                assert!(expect(code), "{what}: exit status {code}");
                trials += 1;
                h.finish();
                h.check(&what);
            }
        }
    }
    eprintln!("{kind} over HTTP: {trials} trial(s), 0 lost, 0 duplicated");
}

#[test]
fn a_power_cut_at_any_operation_of_an_http_exchange_loses_nothing() {
    http_campaign("power cut", |n| format!("crash@{n}"), cut);
}

#[test]
fn a_full_disk_at_any_operation_of_an_http_exchange_loses_nothing() {
    http_campaign("full disk", |n| format!("enospc@{n}+"), clean_failure);
}
