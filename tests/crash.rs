//! Crash safety and concurrency of rs-send, through the real binary:
//! processes killed with SIGKILL at random moments, and many at once.

mod support;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Rng, Site};

/// The time `secs` seconds from now, for `RS_NOW`.
fn from_now(secs: i64) -> String {
    rs::time::Timestamp::from_micros(rs::time::system_now().as_micros() + secs * 1_000_000)
        .to_rfc3339()
}

fn outbound_ids(site: &Site) -> Vec<String> {
    site.listed_ids()
}

#[test]
fn send_killed_at_random_moments_loses_nothing_and_shows_nothing_half_written() {
    let site = Site::new();
    site.send(&[], b"first"); // creates the spool
    let payload = site.root().join("payload");
    std::fs::write(&payload, vec![b'x'; 256 * 1024]).unwrap();
    let payload = payload.to_string_lossy().into_owned();
    let args = ["--class", "crash", "--subclass", "test", "--file", &payload];

    // How long one undisturbed run takes, to spread the kills across it.
    let start = Instant::now();
    site.cmd("rs-send").args(args).run().success();
    let span = start.elapsed().as_micros() as u64 * 12 / 10;

    let mut rng = Rng::from_env();
    let mut printed = Vec::new();
    let n = trials(100);
    for _ in 0..n {
        let mut cmd = site.cmd("rs-send").args(args).command();
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span)));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            printed.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
    }
    eprintln!("{} of {n} runs completed before SIGKILL", printed.len());

    // Every ID printed is queued.
    let queued: HashSet<String> = outbound_ids(&site).into_iter().collect();
    for id in &printed {
        assert!(queued.contains(id), "{id} was printed but is not queued");
    }
    // Nothing half-written is visible: every queued file parses.
    site.cmd("rs-queue").args(["check"]).run().success();
    assert!(site.files("quarantine").is_empty());
    // The accounting matches the files, however the lock holders died.
    let stats = site
        .cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(
        stats["outbound"]["total"]["messages"].as_u64().unwrap(),
        queued.len() as u64
    );

    // The next run (a few minutes on) removes what dead writers left in tmp/.
    let later = from_now(180);
    let r = site
        .cmd("rs-queue")
        .env("RS_NOW", &later)
        .args(["stats"])
        .run()
        .success();
    assert!(
        site.files("tmp").is_empty(),
        "tmp/ still holds {:?}\n{}",
        site.files("tmp"),
        r.stderr
    );
}

#[test]
fn twenty_concurrent_senders_each_get_their_message_queued_once() {
    let site = Site::new();
    site.send(&[], b"first");
    let children: Vec<_> = (0..20)
        .map(|i| {
            let mut cmd = site
                .cmd("rs-send")
                .args([
                    "--class",
                    "c",
                    "--subclass",
                    "s",
                    "--text",
                    "x",
                    "--kind",
                    "event",
                ])
                .command();
            cmd.arg("--precedence")
                .arg(["urgent", "normal", "bulk"][i % 3]);
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .stdin(Stdio::null());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut printed = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let unique: HashSet<&String> = printed.iter().collect();
    assert_eq!(unique.len(), 20, "IDs are unique");
    let listed = outbound_ids(&site);
    assert_eq!(listed.len(), 21);
    for id in &printed {
        assert_eq!(
            listed.iter().filter(|l| *l == id).count(),
            1,
            "{id} queued exactly once"
        );
    }
    let stats = site
        .cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(stats["outbound"]["total"]["messages"], 21);
}

#[test]
fn concurrent_senders_against_a_full_queue_lose_nothing() {
    let site = Site::with_config("[queue]\nmax_messages = 10\n");
    let children: Vec<_> = (0..20)
        .map(|_| {
            let mut cmd = site
                .cmd("rs-send")
                .args([
                    "--class",
                    "c",
                    "--subclass",
                    "s",
                    "--precedence",
                    "bulk",
                    "--text",
                    "x",
                    "--kind",
                    "event",
                ])
                .command();
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .stdin(Stdio::null());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut printed = HashSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a bulk message displaces older bulk ones: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.insert(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let queued: HashSet<String> = outbound_ids(&site).into_iter().collect();
    let dead: HashSet<String> = site
        .dead()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(queued.len(), 10);
    assert_eq!(dead.len(), 10);
    assert!(queued.is_disjoint(&dead));
    assert_eq!(
        queued.union(&dead).cloned().collect::<HashSet<_>>(),
        printed,
        "every message is queued or dead with a reason"
    );
}

/// One step of the delivery cycle: optionally killed at a random moment
/// within `span` (microseconds, the step's usual duration, which this
/// updates), then always run again to completion. Returns whether the kill
/// landed while the process was still running.
fn step(site: &Site, args: &[&str], kill: bool, rng: &mut Rng, span: &mut u64) -> bool {
    let mut landed = false;
    if kill {
        let mut cmd = site.cmd(args[0]).args(&args[1..]).command();
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(*span)));
        let _ = child.kill();
        landed = !child.wait().unwrap().success();
    }
    let start = Instant::now();
    site.cmd(args[0]).args(&args[1..]).run().success();
    *span = (*span * 3 + start.elapsed().as_micros() as u64) / 4;
    landed
}

#[test]
fn the_delivery_cycle_survives_sigkill_at_any_step() {
    let a = Site::component("a.host");
    a.peer("b.hub", "upstream = true\nack_timeout = \"10m\"");
    let b = Site::component("b.hub");
    b.peer("a.host", "");
    let s1 = a.root().join("to-b");
    let s2 = a.root().join("to-a");
    std::fs::create_dir_all(&s1).unwrap();
    std::fs::create_dir_all(&s2).unwrap();
    let (s1, s2) = (
        s1.to_string_lossy().into_owned(),
        s2.to_string_lossy().into_owned(),
    );
    let mut rng = Rng::from_env();
    let mut sent: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    let ops = ["export", "import", "emit", "apply"];
    let mut landed = [0usize; 4];
    let mut spans = [5_000u64; 5];
    // One operation killed per round, in turn: `trials` kills each.
    let rounds = 4 * trials(100);
    for trial in 0..rounds {
        for k in 0..3 {
            let payload: Vec<u8> = (0..(100 + (trial * 7 + k) % 900))
                .map(|j| ((trial + j * 13) % 251) as u8)
                .collect();
            let id = a.send(&["--precedence", ["urgent", "normal", "bulk"][k]], &payload);
            sent.insert(id, payload);
        }
        let victim = trial % 4;
        let kill = |i: usize| i == victim;
        let [e1, im, em, e2, ap] = &mut spans;
        landed[0] += step(
            &a,
            &["rs-queue", "export", "--to", &s1],
            kill(0),
            &mut rng,
            e1,
        ) as usize;
        landed[1] += step(
            &b,
            &["rs-relay", "import", "--from", &s1],
            kill(1),
            &mut rng,
            im,
        ) as usize;
        landed[2] += step(&b, &["rs-ack", "emit"], kill(2), &mut rng, em) as usize;
        step(
            &b,
            &["rs-queue", "export", "--to", &s2],
            false,
            &mut rng,
            e2,
        );
        landed[3] += step(
            &a,
            &["rs-ack", "apply", "--from", &s2],
            kill(3),
            &mut rng,
            ap,
        ) as usize;
    }
    eprintln!(
        "kills that landed mid-run, per operation {ops:?}: {landed:?} (of {} each)",
        rounds / 4
    );

    // Settle: an hour later anything unacknowledged is sent again.
    let later = from_now(3 * 3600);
    for _ in 0..2 {
        a.cmd("rs-queue")
            .env("RS_NOW", &later)
            .args(["export", "--to", &s1])
            .run()
            .success();
        b.cmd("rs-relay")
            .env("RS_NOW", &later)
            .args(["import", "--from", &s1])
            .run()
            .success();
        b.cmd("rs-queue")
            .env("RS_NOW", &later)
            .args(["export", "--to", &s2])
            .run()
            .success();
        a.cmd("rs-relay")
            .env("RS_NOW", &later)
            .args(["import", "--from", &s2])
            .run()
            .success();
    }

    // Nothing lost, nothing delivered twice, contents intact.
    let got = b.received();
    let ids: HashSet<&String> = got.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), got.len(), "a message was delivered twice");
    assert_eq!(got.len(), sent.len(), "messages lost");
    for (id, content) in &got {
        assert_eq!(sent.get(id), Some(content), "{id}");
    }
    let stats = a
        .cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(
        stats["outbound"]["total"]["messages"], 0,
        "A still holds messages"
    );
    assert!(
        a.files("quarantine").is_empty() && b.files("quarantine").is_empty(),
        "nothing half-written was read"
    );
    // No file is left half-written: the next runs clean the leftovers of the killed ones.
    for site in [&a, &b] {
        site.cmd("rs-queue")
            .env("RS_NOW", &later)
            .args(["stats"])
            .run()
            .success();
        assert!(site.files("tmp").is_empty(), "{:?}", site.files("tmp"));
        assert!(
            site.files("received/tmp").is_empty(),
            "{:?}",
            site.files("received/tmp")
        );
        assert!(
            site.files("leases").is_empty(),
            "{:?}",
            site.files("leases")
        );
    }
}

/// A delivery killed between writing into `received/tmp/` and the rename
/// leaves a file there; any later command removes it once it is older than
/// `tmp_max_age` (1 hour by default), and leaves a fresh one alone (it may
/// belong to a delivery in progress).
#[test]
fn leftovers_of_interrupted_deliveries_are_swept() {
    let site = Site::component("a.host");
    let tmp = site.spool.join("received/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(
        tmp.join("1795550976.20261124T200936-985067-259ca51e1570c9a0.vm"),
        b"half",
    )
    .unwrap();
    let r = site.cmd("rs-queue").args(["stats"]).run().success();
    assert_eq!(
        site.files("received/tmp").len(),
        1,
        "a fresh file is kept\n{}",
        r.stderr
    );
    let later = from_now(2 * 3600);
    let r = site
        .cmd("rs-queue")
        .env("RS_NOW", &later)
        .args(["stats"])
        .run()
        .success();
    assert!(
        site.files("received/tmp").is_empty(),
        "{:?}",
        site.files("received/tmp")
    );
    assert!(
        r.stderr.contains("removed 1 file(s) left in received/tmp/"),
        "{}",
        r.stderr
    );
}

/// How many trials a crash campaign runs: `RS_CRASH_TRIALS`, else `default`
/// (scripts/soak.sh runs 1,000).
fn trials(default: usize) -> usize {
    std::env::var("RS_CRASH_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(default)
}

/// A provider serving HTTP (a link with `authentication = "none"`) and a
/// site polling it; both acknowledge within 10 minutes.
fn http_pair() -> (Site, Site) {
    let p = Site::component("p.hub");
    p.peer("a.host", "authentication = \"none\"\nack_timeout = \"10m\"");
    let a = Site::component("a.host");
    (p, a)
}

fn route_a_to(a: &Site, url: &str) {
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nauthentication = \"none\"\nack_timeout = \"10m\"\nroutes = [\"{url}\"]"
        ),
    );
}

/// Queues a round of traffic both ways: three messages from the site, two
/// back-channel messages from the provider.
fn http_round(
    p: &Site,
    a: &Site,
    trial: usize,
    up: &mut std::collections::HashMap<String, Vec<u8>>,
    down: &mut std::collections::HashMap<String, Vec<u8>>,
) {
    for k in 0..3 {
        let payload = format!("up {trial} {k} {}", "u".repeat((trial * 37 + k) % 700)).into_bytes();
        up.insert(a.send(&[], &payload), payload);
    }
    for k in 0..2 {
        let payload =
            format!("down {trial} {k} {}", "d".repeat((trial * 53 + k) % 700)).into_bytes();
        down.insert(p.send(&["--to", "a.host"], &payload), payload);
    }
}

/// After the campaign: hours later (every acknowledgement overdue), the
/// server restarted and the site flushing until everything settled; then
/// nothing lost, nothing delivered twice, both outbound areas empty.
fn settle_and_check(
    p: &Site,
    a: &Site,
    port: u16,
    up: &std::collections::HashMap<String, Vec<u8>>,
    down: &std::collections::HashMap<String, Vec<u8>>,
) {
    let later = from_now(3 * 3600);
    let srv = support::http::Serve::start_later(p, port, &later);
    for _ in 0..4 {
        a.cmd("rs-queue")
            .env("RS_NOW", &later)
            .args(["flush", "--force"])
            .run();
    }
    drop(srv);
    for (site, sent) in [(p, up), (a, down)] {
        support::assert_each_once(&site.received(), sent);
        site.assert_nothing_quarantined();
        assert_eq!(site.outbound_left(Some(&later)), 0, "outbound left");
    }
}

/// How long an undisturbed exchange of one round takes (microseconds).
/// The rounds it sends are delivered, checked and consumed.
fn http_span(p: &Site, a: &Site) -> u64 {
    let (mut up, mut down) = Default::default();
    let mut total = 0;
    for trial in 0..3 {
        http_round(p, a, 1000 + trial, &mut up, &mut down);
        let start = Instant::now();
        a.cmd("rs-queue").args(["flush", "--force"]).run().success();
        total += start.elapsed().as_micros() as u64;
    }
    a.cmd("rs-queue").args(["flush", "--force"]).run().success();
    for (site, n) in [(p, 9), (a, 6)] {
        assert_eq!(site.received().len(), n, "calibration round");
        for e in std::fs::read_dir(site.spool.join("received/new")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    total / 3
}

#[test]
fn http_client_killed_at_random_moments_loses_nothing() {
    let (p, a) = http_pair();
    let srv = support::http::Serve::start(&p);
    route_a_to(&a, &srv.url);
    let mut rng = Rng::from_env();
    // Kills spread a little past the usual run, so some land after it.
    let mut span = http_span(&p, &a) * 13 / 10;
    let (mut up, mut down) = Default::default();
    let mut landed = 0;
    let n = trials(100);
    for trial in 0..n {
        http_round(&p, &a, trial, &mut up, &mut down);
        let args = ["rs-queue", "flush", "--force"];
        landed += step(&a, &args, true, &mut rng, &mut span) as usize;
    }
    eprintln!("kills of rs-queue flush that landed mid-run: {landed} of {n}");
    let port = srv.port;
    drop(srv);
    settle_and_check(&p, &a, port, &up, &down);
}

#[test]
fn http_server_killed_at_random_moments_loses_nothing() {
    let (p, a) = http_pair();
    let mut srv = support::http::Serve::start(&p);
    let port = srv.port;
    route_a_to(&a, &srv.url);
    let mut rng = Rng::from_env();
    let span = http_span(&p, &a) * 13 / 10;
    let (mut up, mut down) = Default::default();
    let n = trials(100);
    let mut failed = 0;
    for trial in 0..n {
        http_round(&p, &a, trial, &mut up, &mut down);
        let mut flush = a.cmd("rs-queue").args(["flush", "--force"]).command();
        flush
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let mut child = flush.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span)));
        srv.kill();
        failed += usize::from(!child.wait().unwrap().success());
        srv = support::http::Serve::start_on(&p, port);
    }
    eprintln!("flushes that failed because the server died under them: {failed} of {n}");
    drop(srv);
    settle_and_check(&p, &a, port, &up, &down);
}

/// A to a relay R to a provider P over `dir:` routes: every command of the
/// chain (flush at each hop, import with the relay passing messages on and
/// acknowledgements coming back) is killed at a random moment in every
/// round, then run to completion.
#[test]
fn a_relay_chain_over_dir_routes_survives_sigkill_at_every_step() {
    let (a, r, p) = (
        Site::component("a.host"),
        Site::component("r.relay"),
        Site::component("p.hub"),
    );
    let dir = |name: &str| a.stick(name).to_string_lossy().into_owned();
    let (in_a, in_r, in_p) = (dir("in-a"), dir("in-r"), dir("in-p"));
    let route = |d: &str| format!("ack_timeout = \"10m\"\nroutes = [\"dir:{d}\"]");
    a.peer("r.relay", &format!("upstream = true\n{}", route(&in_r)));
    r.peer("a.host", &route(&in_a));
    r.peer("p.hub", &format!("upstream = true\n{}", route(&in_p)));
    p.peer("r.relay", &route(&in_r));
    let steps: [(&Site, Vec<&str>); 7] = [
        (&a, vec!["rs-queue", "flush", "--force"]),
        (&r, vec!["rs-relay", "import", "--from", &in_r]),
        (&r, vec!["rs-queue", "flush", "--force"]),
        (&p, vec!["rs-relay", "import", "--from", &in_p]),
        (&p, vec!["rs-queue", "flush", "--force"]),
        (&r, vec!["rs-relay", "import", "--from", &in_r]),
        (&a, vec!["rs-relay", "import", "--from", &in_a]),
    ];
    let mut rng = Rng::from_env();
    let mut spans = [5_000u64; 7];
    let mut landed = [0usize; 7];
    let mut sent = std::collections::HashMap::new();
    let n = trials(100);
    for trial in 0..n {
        for k in 0..2 {
            let payload = format!("relayed {trial} {k} {}", "r".repeat((trial * 31 + k) % 900));
            sent.insert(a.send(&[], payload.as_bytes()), payload.into_bytes());
        }
        for (i, (site, args)) in steps.iter().enumerate() {
            landed[i] += step(site, args, true, &mut rng, &mut spans[i]) as usize;
        }
    }
    eprintln!("kills that landed mid-run, per step: {landed:?} (of {n} each)");
    let later = from_now(3 * 3600);
    for _ in 0..3 {
        for (site, args) in &steps {
            let r = site
                .cmd(args[0])
                .env("RS_NOW", &later)
                .args(&args[1..])
                .run();
            assert!(
                matches!(r.code, Some(0) | Some(75)),
                "{args:?}: {}",
                r.stderr
            );
        }
    }
    support::assert_each_once(&p.received(), &sent);
    for site in [&a, &r, &p] {
        site.assert_nothing_quarantined();
        assert_eq!(site.outbound_left(Some(&later)), 0, "outbound left");
    }
}

/// `rs-relay receive` (an MTA's delivery pipe) killed at random moments:
/// the MTA keeps a mail it was not told was taken and pipes it again; each
/// message is delivered once.
#[test]
fn mail_receive_killed_at_random_moments_delivers_each_message_once() {
    let a = Site::component("a.host");
    let b = Site::component("b.hub");
    support::mail_peers(&a, &b);
    let mut rng = Rng::from_env();
    let mut span = 5_000u64;
    let mut ids = Vec::new();
    let mut landed = 0;
    let n = trials(100);
    for trial in 0..n {
        let id = a.send(
            &[],
            format!("mail {trial} {}", "m".repeat(trial % 700)).as_bytes(),
        );
        let mail = support::mail_from_a(&a, &id);
        // Killed once; the MTA then retries until it hears 0.
        let mut child = b
            .cmd("rs-relay")
            .args(["receive"])
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(&mail);
        }
        std::thread::sleep(Duration::from_micros(rng.below(span)));
        let _ = child.kill();
        let taken = child.wait().unwrap().success();
        landed += usize::from(!taken);
        let start = Instant::now();
        b.cmd("rs-relay")
            .args(["receive"])
            .stdin(&mail)
            .run()
            .success();
        span = (span * 3 + start.elapsed().as_micros() as u64) / 4;
        ids.push(id);
    }
    eprintln!("kills of rs-relay receive that landed mid-run: {landed} of {n}");
    let got = b.received();
    let unique: HashSet<&String> = got.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), got.len(), "a message was delivered twice");
    for id in &ids {
        assert!(unique.contains(id), "{id} lost");
    }
    assert!(
        b.files("quarantine").is_empty(),
        "{:?}",
        b.files("quarantine")
    );
}

/// How long the concurrency soak runs: `RS_SOAK_SECONDS`, else `default`
/// (scripts/soak.sh runs 600).
fn soak_seconds(default: u64) -> u64 {
    std::env::var("RS_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Every command at once, as several cron jobs would run them, for a
/// bounded time: senders, export, import, emit, export back, apply, and
/// an operator's check, stats, hold and release, each in a loop of its
/// own. Then everything settles: each message sent is delivered once.
#[test]
fn every_command_running_at_once_loses_nothing_and_duplicates_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let a = Arc::new(Site::component("a.host"));
    a.peer("b.hub", "upstream = true\nack_timeout = \"10m\"");
    let b = Arc::new(Site::component("b.hub"));
    b.peer("a.host", "");
    let to_b = a.stick("to-b").to_string_lossy().into_owned();
    let to_a = a.stick("to-a").to_string_lossy().into_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let mut loops = Vec::new();
    let runs = Arc::new(Mutex::new(
        std::collections::BTreeMap::<String, usize>::new(),
    ));
    let spawn_loop = |site: Arc<Site>, args: Vec<String>| {
        let (stop, runs) = (stop.clone(), runs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = site.cmd(&args[0]).args(&args[1..]).run();
                assert!(
                    matches!(r.code, Some(0) | Some(75)),
                    "{args:?}: {:?} {}",
                    r.code,
                    r.stderr
                );
                *runs.lock().unwrap().entry(args.join(" ")).or_default() += 1;
            }
        })
    };
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for args in [
        v(&["rs-queue", "export", "--to", &to_b]),
        v(&["rs-ack", "apply", "--from", &to_a]),
        v(&["rs-queue", "check"]),
        v(&["rs-queue", "stats"]),
        v(&["rs-queue", "hold"]),
        v(&["rs-queue", "release"]),
    ] {
        loops.push(spawn_loop(a.clone(), args));
    }
    for args in [
        v(&["rs-relay", "import", "--from", &to_b]),
        v(&["rs-ack", "emit"]),
        v(&["rs-queue", "export", "--to", &to_a]),
    ] {
        loops.push(spawn_loop(b.clone(), args));
    }
    for t in 0..2 {
        let (a, stop, sent) = (a.clone(), stop.clone(), sent.clone());
        loops.push(std::thread::spawn(move || {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let payload = format!("sender {t} message {k}").into_bytes();
                let id = a.send(&[], &payload);
                sent.lock().unwrap().insert(id, payload);
                k += 1;
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(soak_seconds(10)));
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().expect("a loop failed");
    }
    eprintln!("runs per command: {:?}", runs.lock().unwrap());

    a.cmd("rs-queue").args(["release"]).run().success();
    let later = from_now(3 * 3600);
    for _ in 0..2 {
        for (site, args) in [
            (&a, v(&["rs-queue", "export", "--to", &to_b])),
            (&b, v(&["rs-relay", "import", "--from", &to_b])),
            (&b, v(&["rs-ack", "emit"])),
            (&b, v(&["rs-queue", "export", "--to", &to_a])),
            (&a, v(&["rs-ack", "apply", "--from", &to_a])),
        ] {
            site.cmd(&args[0])
                .env("RS_NOW", &later)
                .args(&args[1..])
                .run()
                .success();
        }
    }
    let sent = sent.lock().unwrap();
    support::assert_each_once(&b.received(), &sent);
    eprintln!("{} message(s) sent and delivered once each", sent.len());
    for site in [&a, &b] {
        site.assert_nothing_quarantined();
    }
    assert_eq!(a.outbound_left(Some(&later)), 0, "A still holds messages");
}
