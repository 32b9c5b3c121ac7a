//! The relay proper, through the real binaries: rules (discard, forward,
//! divert to a handler, aggregate), groups, the back-channel two hops
//! down, redundant relays, and what cannot be delivered reported to its
//! origin.

mod support;

use std::path::Path;

use support::Site;

const T0: &str = "2026-11-24T10:00:00Z";

/// Sends a message of class/subclass from `site`; returns its ID.
fn send_classed(site: &Site, class: &str, subclass: &str, body: &[u8]) -> String {
    site.cmd("rs-send")
        .args(["--class", class, "--subclass", subclass])
        .stdin(body)
        .run()
        .success()
        .stdout
        .trim()
        .to_string()
}

/// Export from `from` to a fresh stick and import at `to`; returns the
/// import's JSON report. Only what is for `to` (its component ID, found in
/// its configuration) goes on the stick.
fn carry(from: &Site, to: &Site, name: &str) -> serde_json::Value {
    let s = from.stick(name);
    let config = std::fs::read_to_string(to.spool.join("config.toml")).unwrap();
    let component = config
        .lines()
        .find_map(|l| l.strip_prefix("component = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    from.cmd("rs-queue")
        .args(["export", "--peer", &component, "--to"])
        .args([&s])
        .run()
        .success();
    to.import_from(&s).run().success().json()
}

/// `a.host` (upstream `r.relay`), the relay (upstream `p.hub`, peers
/// `a.host` and `c.host`), with `rules` appended to the relay's configuration.
fn relay_with(rules: &str) -> (Site, Site, Site) {
    let mut a = Site::component("a.host");
    a.peer("r.relay", "upstream = true\nack_timeout = \"10m\"");
    let mut r = Site::component("r.relay");
    r.peer("p.hub", "upstream = true");
    r.peer("a.host", "");
    r.peer("c.host", "");
    r.append_config(rules);
    let mut p = Site::component("p.hub");
    p.peer("r.relay", "");
    for s in [&mut a, &mut r, &mut p] {
        s.at(T0);
    }
    (a, r, p)
}

#[test]
fn rules_discard_and_forward_and_discards_are_acknowledged_and_counted() {
    let (a, r, p) = relay_with(
        "[[rule]]\nname = \"no-debug\"\nclass = \"debug*\"\naction = \"discard\"\n\n\
         [[rule]]\nname = \"to-c\"\nclass = \"route-c\"\naction = \"forward\"\npeer = \"c.host\"\n",
    );
    let dropped = send_classed(&a, "debug-trace", "x", b"noise");
    let routed = send_classed(&a, "route-c", "x", b"for c");
    let normal = send_classed(&a, "inventory", "x", b"for p");
    let got = carry(&a, &r, "s1");
    assert_eq!(
        (got["discarded"].as_u64(), got["relayed"].as_u64()),
        (Some(1), Some(2)),
        "{got}"
    );
    assert_eq!(got["by_rule"]["no-debug"], 1);

    // The discard is acknowledged as accepted: A's copy goes, for good.
    let back = r.stick("back");
    r.cmd("rs-queue")
        .args(["export", "--peer", "a.host", "--to"])
        .args([&back])
        .run()
        .success();
    a.import_from(&back).run().success();
    assert!(a.list().is_empty(), "A keeps nothing: {:?}", a.list());
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &dropped])
        .run()
        .success()
        .json();
    assert_eq!(st["state"], "acknowledged", "{st}");
    assert!(st["acks"][0]["code"] == "discarded", "{st}");

    // The relay's queue holds the other two, each bound where its rule or
    // routing says; stats count the discard per rule.
    let r_list = r.list();
    assert_eq!(r_list.len(), 2);
    let c_stick = r.stick("to-c");
    r.cmd("rs-queue")
        .args(["export", "--peer", "c.host", "--to"])
        .args([&c_stick])
        .run()
        .success();
    assert!(c_stick.join("c.host/r.relay").read_dir().unwrap().count() == 1);
    let got = carry(&r, &p, "s2");
    assert_eq!(got["delivered"], 1);
    assert_eq!(p.received()[0].0, normal);
    let stats = r
        .cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(stats["received"]["discarded"], 1);
    assert_eq!(stats["received"]["by_rule"]["no-debug"], 1);
    let text = r.cmd("rs-queue").args(["stats"]).run().success().stdout;
    assert!(text.contains("discarded by [[rule]] no-debug: 1"), "{text}");
    let _ = routed;
}

#[test]
fn rules_are_listed_and_tested_without_acting() {
    let (a, r, _) = relay_with(
        "[[rule]]\nname = \"no-debug\"\nclass = \"debug*\"\naction = \"discard\"\n\n\
         [[rule]]\nsubclass = [\"heartbeat\", \"beat\"]\nkind = \"event\"\naction = \"forward\"\n",
    );
    let listed = r.cmd("rs-relay").args(["rules"]).run().success().stdout;
    assert!(
        listed.contains("no-debug") && listed.contains("class=debug* -> discard"),
        "{listed}"
    );
    assert!(
        listed.contains("rule 2") && listed.contains("subclass=heartbeat|beat"),
        "{listed}"
    );
    let id = send_classed(&a, "debug-x", "y", b"z");
    let file = support::first_file(&a.spool.join("queue/normal"));
    let r1 = r
        .cmd("rs-relay")
        .args(["rules", "test"])
        .args([&file])
        .run()
        .success();
    assert!(
        r1.stdout.contains("meets rule 1 (no-debug): discarded"),
        "{}",
        r1.stdout
    );
    let r2 = a
        .cmd("rs-relay")
        .args(["rules", "test", &id])
        .run()
        .success();
    assert!(r2.stdout.contains("meets no rule"), "{}", r2.stdout);
    assert_eq!(a.list().len(), 1, "testing does nothing");
}

fn refused(site: &Site, config: &str, expect: &[&str]) {
    let path = site.spool.join("config.toml");
    let keep = std::fs::read_to_string(&path).unwrap();
    site.append_config(config);
    let r = site.cmd("rs-queue").args(["list"]).run().code(78);
    for e in expect {
        assert!(r.stderr.contains(e), "{config}: {}", r.stderr);
    }
    std::fs::write(&path, keep).unwrap();
}

#[test]
fn rules_are_validated_naming_file_line_and_rule() {
    let r = Site::component("r.relay");
    let not_exec = r.root().join("handler.txt");
    std::fs::write(&not_exec, "not a program").unwrap();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "[[rule]]\nclass = \"x\"\naction = \"discard\"\ncolour = \"red\"\n".into(),
            vec!["config.toml", "line", "colour"],
        ),
        (
            "[[rule]]\nwindow = \"25:00-26:00\"\naction = \"discard\"\n".into(),
            vec!["config.toml", "line", "25:00-26:00"],
        ),
        (
            format!(
                "[[rule]]\nname = \"run-it\"\naction = \"divert\"\nhandler = \"{}\"\n",
                not_exec.display()
            ),
            vec!["config.toml", "line", "run-it", "not an executable file"],
        ),
        (
            "[[rule]]\naction = \"aggregate\"\n".into(),
            vec!["config.toml", "line", "count"],
        ),
        (
            "[[rule]]\naction = \"forward\"\npeer = \"nobody.here\"\n".into(),
            vec!["config.toml", "line", "nobody.here"],
        ),
    ];
    for (config, expect) in &cases {
        refused(&r, config, expect);
    }
    let _ = Path::new("");
}

/// An executable script `name` with `body` under `site`'s directory.
fn script(site: &Site, name: &str, body: &str) -> std::path::PathBuf {
    let path = site.root().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    let status = std::process::Command::new("chmod")
        .arg("755")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

fn status_of(site: &Site, id: &str) -> serde_json::Value {
    site.cmd("rs-ack")
        .args(["status", "--json", id])
        .run()
        .success()
        .json()
}

#[test]
fn a_handler_consumes_or_rewrites_and_a_failing_one_gives_up_and_tells_the_origin() {
    let scratch = Site::new();
    let seen = scratch.root().join("seen");
    std::fs::create_dir_all(&seen).unwrap();
    let consume = script(
        &scratch,
        "consume",
        &format!("cat > '{}/'\"$RS_MESSAGE_ID\"", seen.display()),
    );
    let rewrite = script(
        &scratch,
        "rewrite",
        "sed 's/subclass=\"raw\"/subclass=\"cooked\"/'",
    );
    let fail = script(&scratch, "fail", "echo 'boom: no database' >&2; exit 3");
    let slow = script(&scratch, "slow", "sleep 20");
    let (a, r, p) = relay_with(&format!(
        "[[rule]]\nname = \"consume\"\nclass = \"consume\"\naction = \"divert\"\nhandler = \"{}\"\n\n\
         [[rule]]\nname = \"rewrite\"\nsubclass = \"raw\"\naction = \"divert\"\nhandler = \"{}\"\n\n\
         [[rule]]\nname = \"fail\"\nclass = \"fail\"\naction = \"divert\"\nhandler = \"{}\"\nmax_failures = 2\n\n\
         [[rule]]\nname = \"slow\"\nclass = \"slow\"\naction = \"divert\"\nhandler = \"{}\"\ntimeout = \"1s\"\nmax_failures = 1\n",
        consume.display(),
        rewrite.display(),
        fail.display(),
        slow.display()
    ));
    let consumed = send_classed(&a, "consume", "x", b"eat me");
    let rewritten = send_classed(&a, "inventory", "raw", b"cook me");
    let failing = send_classed(&a, "fail", "x", b"never");
    let slow_id = send_classed(&a, "slow", "x", b"too slow");
    let got = carry(&a, &r, "s1");
    assert_eq!(got["diverted"], 4, "{got}");

    // Consumed: the handler had the message on stdin; nothing goes on.
    let kept = std::fs::read_to_string(seen.join(&consumed)).unwrap();
    assert!(kept.contains("eat me"), "{kept}");
    // Rewritten: the handler's envelope goes on in place of the original.
    carry(&r, &p, "s2");
    let at_p = p.received();
    assert_eq!(at_p.len(), 1, "{at_p:?}");
    assert_eq!(at_p[0].0, rewritten);
    let file = std::fs::read_dir(p.spool.join("received/new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(std::fs::read_to_string(file)
        .unwrap()
        .contains("subclass=\"cooked\""));

    // The failing handler is tried again on the next run, then given up:
    // dead with its stderr, the origin told; the slow one is cut off.
    r.cmd("rs-queue").args(["flush"]).run();
    let dead = r.dead();
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| format!("{} {}", d["id"], d["detail"]))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|d| d.contains(&failing) && d.contains("boom: no database")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|d| d.contains(&slow_id) && d.contains("did not finish within 1s")),
        "{reasons:?}"
    );
    assert!(std::fs::read_dir(r.spool.join("divert"))
        .unwrap()
        .next()
        .is_none());
    let back = r.stick("back");
    let e = r
        .cmd("rs-queue")
        .args(["export", "--peer", "a.host", "--to"])
        .args([&back])
        .run()
        .success();
    let i = a.import_from(&back).run().success();
    eprintln!(
        "export: {}
import: {}",
        e.stderr, i.stderr
    );
    let st = status_of(&a, &failing);
    assert_eq!(st["state"], "dead", "{st}");
    assert!(st["summary"].as_str().unwrap().contains("boom"), "{st}");
    assert_eq!(status_of(&a, &consumed)["state"], "acknowledged");
}

#[test]
fn heartbeats_are_aggregated_by_count_and_by_age() {
    let (a, mut r, p) = relay_with(
        "[[rule]]\nname = \"beats\"\nsubclass = \"heartbeat\"\naction = \"aggregate\"\ncount = 3\nage = \"1h\"\n",
    );
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(send_classed(
            &a,
            "infrastructure",
            "heartbeat",
            format!("beat {i}").as_bytes(),
        ));
    }
    let got = carry(&a, &r, "s1");
    assert_eq!(got["aggregated"], 7, "{got}");
    // Every input is acknowledged once it is held for the aggregate.
    let back = r.stick("back");
    r.cmd("rs-queue")
        .args(["export", "--peer", "a.host", "--to"])
        .args([&back])
        .run()
        .success();
    a.import_from(&back).run().success();
    assert!(a.list().is_empty());
    // Two aggregates of three went on; the seventh waits for the hour.
    let got = carry(&r, &p, "s2");
    assert_eq!(got["delivered"], 2, "{got}");
    r.at("2026-11-24T11:30:00Z");
    let got = carry(&r, &p, "s3");
    assert_eq!(got["delivered"], 1, "{got}");
    let mut nested = Vec::new();
    for (id, content) in p.received() {
        assert!(id.contains("-agg-"), "{id}");
        let inner = rs::message::envelope::parse(&content).unwrap();
        for m in inner {
            assert_eq!(m.header.subclass.as_str(), "heartbeat");
            nested.push(m.header.id.to_string());
        }
    }
    nested.sort();
    ids.sort();
    assert_eq!(nested, ids, "each heartbeat in exactly one aggregate");
    let agg = p.received()[0].0.clone();
    let h = p
        .cmd("rs-relay")
        .args(["rules", "test", &agg])
        .run()
        .success();
    assert!(h.stdout.contains("meets no rule"), "{}", h.stdout);
}

#[test]
fn a_group_message_reaches_exactly_its_members_once() {
    let mut p = Site::component("p.hub");
    p.peer("r.relay", "components = [\"ops\"]");
    let mut r = Site::component("r.relay");
    r.peer("p.hub", "upstream = true");
    for m in ["a.host", "c.host", "d.host"] {
        r.peer(m, "");
    }
    r.append_config("[[group]]\nname = \"ops\"\nmembers = [\"a.host\", \"c.host\", \"r.relay\"]\n");
    p.at(T0);
    r.at(T0);
    let id = p.send(&["--to", "group:ops"], b"to the ops group");
    carry(&p, &r, "down");
    // Twice: the second carry of the same message is a duplicate.
    let again = p.stick("again");
    std::fs::create_dir_all(again.join("r.relay/p.hub")).unwrap();
    let file = support::first_file(&p.spool.join("sent"));
    std::fs::copy(&file, again.join("r.relay/p.hub/1-0000000000000001-x.msg")).unwrap();
    let dup = r.import_from(&again).run().success().json();
    assert_eq!(dup["duplicates"], 1, "{dup}");

    assert_eq!(r.received().len(), 1, "the relay is a member: its own copy");
    let mut got = Vec::new();
    for m in ["a.host", "c.host", "d.host"] {
        let mut leaf = Site::component(m);
        leaf.peer("r.relay", "upstream = true");
        leaf.at(T0);
        carry(&r, &leaf, &format!("to-{m}"));
        got.push((m, leaf.received()));
    }
    for (m, received) in &got {
        let expected = usize::from(*m != "d.host");
        assert_eq!(received.len(), expected, "{m}: {received:?}");
        for (_, content) in received {
            assert_eq!(content, b"to the ops group");
        }
    }
    // The provider's copy is acknowledged once every copy was taken.
    carry(&r, &p, "up");
    assert!(p.list().is_empty(), "{:?}", p.list());
    let st = status_of(&p, &id);
    assert_eq!(st["state"], "acknowledged", "{st}");
}

/// A site with two redundant relays (`r1.relay`, its backup `r2.relay`) in
/// front of a provider, every link a directory route: a message the primary
/// does not acknowledge in time goes to the backup; what waits while the
/// primary's medium is missing goes to the backup at once; the primary,
/// back later with its copies, adds no second delivery; acknowledgements
/// from either relay free the site.
#[test]
fn a_primary_relay_that_does_not_acknowledge_is_failed_over_to_its_backup() {
    let net = Site::new();
    let dir = |name: &str| net.stick(name).display().to_string();
    let (up1, up2, down1, down2, top) = (
        dir("up1"),
        dir("up2"),
        dir("down1"),
        dir("down2"),
        dir("top"),
    );
    let mut a = Site::component("a.host");
    a.peer(
        "r1.relay",
        &format!("upstream = true\nbackup = \"r2.relay\"\nack_timeout = \"10m\"\nroutes = [\"dir:{up1}\"]"),
    );
    a.peer(
        "r2.relay",
        &format!("ack_timeout = \"10m\"\nroutes = [\"dir:{up2}\"]"),
    );
    let mut relays = Vec::new();
    for (name, down) in [("r1.relay", &down1), ("r2.relay", &down2)] {
        let mut r = Site::component(name);
        r.peer(
            "p.hub",
            &format!("upstream = true\nroutes = [\"dir:{top}\"]"),
        );
        r.peer("a.host", &format!("routes = [\"dir:{down}\"]"));
        r.at(T0);
        relays.push(r);
    }
    let mut p = Site::component("p.hub");
    p.peer(
        "r1.relay",
        &format!("backup = \"r2.relay\"\nroutes = [\"dir:{down1}\"]"),
    );
    p.peer("r2.relay", &format!("routes = [\"dir:{down2}\"]"));
    a.at(T0);
    p.at(T0);
    let flush = |s: &Site| s.cmd("rs-queue").args(["flush", "--json"]).run();
    let import = |s: &Site, d: &str| s.import_from(Path::new(d)).run().success().json();

    // 1. Sent to the primary, which never takes it; after the timeout the
    //    retransmission goes to the backup.
    let first: Vec<String> = (0..5)
        .map(|i| send_classed(&a, "inventory", "x", format!("first {i}").as_bytes()))
        .collect();
    flush(&a).success();
    assert_eq!(
        std::fs::read_dir(Path::new(&up1).join("r1.relay/a.host"))
            .unwrap()
            .count(),
        5
    );
    a.at("2026-11-24T10:11:00Z");
    let again = flush(&a).success().json();
    assert_eq!(again["peers"][1]["retransmitted"], 5, "{again}");
    let got = import(&relays[1], &up2);
    assert_eq!(got["relayed"], 5, "{got}");
    flush(&relays[1]).success();
    import(&a, &down2);
    assert!(
        a.list().is_empty(),
        "the backup's acknowledgements free the site: {:?}",
        a.list()
    );

    // 2. The primary's medium is gone: new messages go to the backup in the
    //    same run. (What the site wrote for the primary is kept aside.)
    let kept = net.stick("kept");
    std::fs::rename(&up1, &kept).unwrap();
    let second: Vec<String> = (0..3)
        .map(|i| send_classed(&a, "inventory", "x", format!("second {i}").as_bytes()))
        .collect();
    let run = flush(&a).code(0).json();
    assert_eq!(run["peers"][1]["sent"], 3, "{run}");
    assert_eq!(import(&relays[1], &up2)["relayed"], 3);

    // 3. The provider gets everything from the backup; the primary comes
    //    back with the five copies it was handed: duplicates there,
    //    acknowledged, not delivered again.
    flush(&relays[1]).success();
    assert_eq!(import(&p, &top)["delivered"], 8);
    let r1 = &relays[0];
    assert_eq!(import(r1, &kept.display().to_string())["relayed"], 5);
    flush(r1).success();
    let dup = import(&p, &top);
    assert_eq!(
        (dup["duplicates"].as_u64(), dup["delivered"].as_u64()),
        (Some(5), Some(0)),
        "{dup}"
    );
    let mut ids: Vec<String> = p.received().into_iter().map(|(id, _)| id).collect();
    ids.sort();
    let mut all: Vec<String> = first.iter().chain(&second).cloned().collect();
    all.sort();
    assert_eq!(ids, all, "each message delivered once");

    // 4. The provider's acknowledgements free both relays; the final notices
    //    reach the site through the relay that carried its first message.
    flush(&p).success();
    for (r, down) in relays.iter().zip([&down1, &down2]) {
        import(r, down);
        assert!(
            r.list().iter().all(|m| m["to"] == "a.host"),
            "{:?}",
            r.list()
        );
        flush(r).success();
        import(&a, down);
    }
    let st = status_of(&a, &first[0]);
    assert!(
        st["summary"]
            .as_str()
            .unwrap()
            .contains("delivered at p.hub"),
        "{st}"
    );
    for r in &relays {
        assert!(r.list().is_empty(), "{:?}", r.list());
    }
}

/// Undeliverable after custody, end to end: a message that expires at the
/// relay, a back-channel message its component leaves unclaimed past the
/// hold time, one for a component nobody knows: each origin learns why.
#[test]
fn what_cannot_be_delivered_after_custody_is_reported_to_its_origin() {
    let (mut a, mut r, mut p) = relay_with("");
    r.append_config("");
    // The relay holds back-channel messages for a.host one hour.
    let config = r.spool.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[[peer]]\nid = \"a.host\"\n",
        "[[peer]]\nid = \"a.host\"\nhold = \"1h\"\n",
    );
    std::fs::write(&config, text).unwrap();
    p.peer("r.relay", "components = [\"a.host\", \"a.ghost\"]");
    let config = p.spool.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // The first r.relay table (from relay_with) is replaced by the one with components.
    let text = text.replacen("\n[[peer]]\nid = \"r.relay\"\n\n", "\n", 1);
    std::fs::write(&config, text).unwrap();

    let short = a.send(&["--ttl", "1h"], b"too late");
    let back = p.send(&["--to", "a.host"], b"never fetched");
    let ghost = p.send(&["--to", "a.ghost"], b"for nobody");
    carry(&a, &r, "up1");
    let got = carry(&p, &r, "down1");
    assert_eq!(got["relayed"], 1, "{got}");
    assert_eq!(
        got["rejected"], 1,
        "a.ghost has no way on from the relay: {got}"
    );

    // Two hours later, nothing has moved on: the relay buries both and
    // owes each origin a notice.
    for s in [&mut a, &mut r, &mut p] {
        s.at("2026-11-24T12:00:00Z");
    }
    let flushed = r.cmd("rs-queue").args(["flush"]).run();
    assert!(
        flushed.stderr.contains("unclaimed") || flushed.stderr.contains("expired"),
        "{}",
        flushed.stderr
    );
    let dead: Vec<String> = r
        .dead()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert!(dead.contains(&short) && dead.contains(&back), "{dead:?}");
    carry(&r, &a, "down2");
    carry(&r, &p, "up2");
    let st = status_of(&a, &short);
    assert_eq!(st["state"], "dead", "{st}");
    let summary = st["summary"].as_str().unwrap();
    assert!(
        summary.contains("undeliverable at r.relay: expired at"),
        "{st}"
    );
    let st = status_of(&p, &back);
    assert_eq!(st["state"], "dead", "{st}");
    assert!(
        st["summary"]
            .as_str()
            .unwrap()
            .contains("did not take it within its hold time"),
        "{st}"
    );
    let st = status_of(&p, &ghost);
    assert!(
        st["summary"]
            .as_str()
            .unwrap()
            .contains("component a.ghost is unknown at r.relay"),
        "{st}"
    );
}

/// A relay whose queue is full makes room for an urgent message by
/// discarding the oldest bulk one it holds: that message's origin is told.
#[test]
fn a_message_evicted_at_the_relay_is_reported_to_its_origin() {
    let (a, r, _p) = relay_with("[queue]\nmax_messages = 2\n");
    let bulk: Vec<String> = (0..2)
        .map(|i| a.send(&["--precedence", "bulk"], format!("bulk {i}").as_bytes()))
        .collect();
    carry(&a, &r, "s1");
    let urgent = a.send(&["--precedence", "urgent"], b"urgent");
    let got = carry(&a, &r, "s2");
    assert_eq!(got["relayed"], 1, "{got}");
    let dead = r.dead();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["id"], bulk[0].as_str());
    // Any command the relay runs owes the notice; it travels back.
    carry(&r, &a, "back");
    let st = status_of(&a, &bulk[0]);
    assert_eq!(st["state"], "dead", "{st}");
    assert!(
        st["summary"].as_str().unwrap().contains("to make room for"),
        "{st}"
    );
    assert_eq!(status_of(&a, &urgent)["state"], "acknowledged");
}

/// Issue 29, item 13: `rs-relay rules test` ignored `[[group]]` (it said
/// "rejected: no route to group ops" where import expands the message):
/// both now take one code path, the receive path's decision.
#[test]
fn rules_test_expands_a_group_as_import_does() {
    let (_a, r, p) = relay_with("[[group]]\nname = \"ops\"\nmembers = [\"a.host\", \"c.host\"]\n");
    p.send(&["--to", "group:ops"], b"for the group");
    let file = support::first_file(&p.spool.join("queue/normal"));
    let said = r
        .cmd("rs-relay")
        .args(["rules", "test"])
        .args([&file])
        .run()
        .success()
        .stdout;
    assert!(
        said.contains("expanded here into one copy for each of a.host, c.host"),
        "{said}"
    );
    // Import does as the test said.
    let stick = p.stick("down");
    let dir = stick.join("r.relay/p.hub");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&file, dir.join("0-group.msg")).unwrap();
    let got = r.import_from(&stick).run().success().json();
    assert_eq!(got["relayed"], 2, "{got}");
}
