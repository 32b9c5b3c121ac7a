//! Queue policy through the real binaries: ordering, expiry, eviction (each
//! step of the algorithm), per-precedence limits, holds and the throttle.

mod support;

use support::Site;

const T0: &str = "2026-11-24T10:00:00Z";
const T0_PLUS_2H: &str = "2026-11-24T12:00:00Z";

fn dead_reason(site: &Site, id: &str) -> String {
    let dead = site.dead();
    let d = dead
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in dead/: {dead:?}"));
    d["reason"].as_str().unwrap().to_string()
}

#[test]
fn ordering_is_precedence_then_arrival_even_with_equal_timestamps() {
    let mut site = Site::new();
    site.at(T0);
    let b1 = site.send(&["--precedence", "bulk"], b"b1");
    let n1 = site.send(&["--precedence", "normal"], b"n1");
    let u1 = site.send(&["--precedence", "urgent"], b"u1");
    let n2 = site.send(&["--precedence", "normal"], b"n2");
    let b2 = site.send(&["--precedence", "bulk"], b"b2");
    let u2 = site.send(&["--precedence", "urgent"], b"u2");
    assert_eq!(site.listed_ids(), vec![u1, u2, n1, n2, b1, b2]);
    // Every message carries the same creation time: the order is arrival's.
    let created: Vec<_> = site.list().iter().map(|v| v["created"].clone()).collect();
    assert!(created.windows(2).all(|w| w[0] == w[1]), "{created:?}");
}

#[test]
fn expired_messages_are_never_due_and_prune_to_dead() {
    let mut site = Site::new();
    site.at(T0);
    let short = site.send(&["--ttl", "1h"], b"short-lived");
    let long = site.send(&["--ttl", "1d"], b"long-lived");
    let due = site
        .cmd("rs-queue")
        .args(["due", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(due["messages"], 2);

    site.at(T0_PLUS_2H);
    let listed = site.list();
    assert_eq!(listed[0]["expired"], true);
    let due = site
        .cmd("rs-queue")
        .args(["due", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(due["messages"], 1);
    assert_eq!(due["expired"], 1);
    assert_eq!(due["due"][0]["id"], long.as_str());

    site.cmd("rs-queue").args(["prune"]).run().success();
    assert_eq!(site.listed_ids(), vec![long]);
    assert_eq!(dead_reason(&site, &short), "expired");
    let shown = site
        .cmd("rs-queue")
        .args(["show", "--json", &short])
        .run()
        .success()
        .json();
    assert_eq!(shown["state"], "dead");
    assert_eq!(shown["dead"]["reason"], "expired");
}

#[test]
fn expiry_in_the_past_is_refused() {
    let mut site = Site::new();
    site.at(T0);
    let r = site
        .cmd("rs-send")
        .args([
            "--class",
            "a",
            "--subclass",
            "b",
            "--expires",
            "2026-11-24T09:00:00Z",
        ])
        .stdin(b"x")
        .run()
        .code(64);
    assert!(r.stderr.contains("not in the future"), "{}", r.stderr);
}

#[test]
fn eviction_step1_discards_the_oldest_expired_message() {
    let mut site = Site::with_config("[queue]\nmax_messages = 2\n");
    site.at(T0);
    let expiring = site.send(
        &[
            "--ttl",
            "1h",
            "--precedence",
            "urgent",
            "--persistence",
            "high",
        ],
        b"a",
    );
    let kept = site.send(&["--precedence", "bulk"], b"b");
    site.at(T0_PLUS_2H);
    let new = site.send(&[], b"c");
    assert_eq!(
        site.listed_ids(),
        vec![new, kept],
        "the expired message went first, not the bulk one"
    );
    assert_eq!(dead_reason(&site, &expiring), "expired");
}

#[test]
fn eviction_step2_discards_the_oldest_bulk_message_of_normal_persistence() {
    let site = Site::with_config("[queue]\nmax_messages = 3\n");
    let bulk_high = site.send(&["--precedence", "bulk", "--persistence", "high"], b"a");
    let bulk_old = site.send(&["--precedence", "bulk"], b"b");
    let bulk_young = site.send(&["--precedence", "bulk"], b"c");
    let new = site.send(&["--precedence", "normal"], b"d");
    assert_eq!(site.listed_ids(), vec![new, bulk_high, bulk_young]);
    assert_eq!(dead_reason(&site, &bulk_old), "evicted");
    let detail = site.dead()[0]["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("oldest bulk message") && detail.contains("max_messages 3"),
        "{detail}"
    );
}

#[test]
fn eviction_step3_rejects_a_bulk_newcomer_and_keeps_it_in_dead() {
    let site = Site::with_config("[queue]\nmax_messages = 2\n");
    let a = site.send(&["--precedence", "normal"], b"a");
    let b = site.send(&["--precedence", "bulk", "--persistence", "high"], b"b");
    let r = site
        .cmd("rs-send")
        .args(["--class", "t", "--subclass", "t", "--precedence", "bulk"])
        .stdin(b"rejected")
        .run()
        .code(75);
    assert!(
        r.stderr.contains("queue is full") && r.stderr.contains("max_messages 2"),
        "{}",
        r.stderr
    );
    assert_eq!(site.listed_ids(), vec![a, b]);
    let dead = site.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], "rejected");
    assert!(
        r.stderr.contains(dead[0]["id"].as_str().unwrap()),
        "the error names the rejected ID"
    );
}

#[test]
fn eviction_step4_an_urgent_newcomer_displaces_the_oldest_normal_message() {
    let site = Site::with_config("[queue]\nmax_messages = 3\n");
    let high = site.send(&["--precedence", "normal", "--persistence", "high"], b"a");
    let old = site.send(&["--precedence", "normal"], b"b");
    let young = site.send(&["--precedence", "normal"], b"c");
    let urgent = site.send(&["--precedence", "urgent"], b"d");
    assert_eq!(site.listed_ids(), vec![urgent, high, young]);
    assert_eq!(dead_reason(&site, &old), "evicted");
}

#[test]
fn eviction_step5_rejects_a_normal_newcomer_when_nothing_may_go() {
    let site = Site::with_config("[queue]\nmax_messages = 2\n");
    let a = site.send(&["--precedence", "urgent"], b"a");
    let b = site.send(&["--precedence", "normal"], b"b");
    site.cmd("rs-send")
        .args(["--class", "t", "--subclass", "t"])
        .stdin(b"c")
        .run()
        .code(75);
    assert_eq!(
        site.listed_ids(),
        vec![a, b],
        "nothing was discarded for the rejected message"
    );
    assert_eq!(site.dead().len(), 1);
}

#[test]
fn a_message_that_will_be_rejected_costs_the_queue_nothing() {
    // Discarding the bulk message would not make room for the big one, so
    // the plan ends in rejection and the bulk message must stay.
    let site = Site::new();
    let bulk = site.send(&["--precedence", "bulk"], b"small bulk");
    let high = site.send(&["--persistence", "high"], b"small normal");
    let used: u64 = site
        .list()
        .iter()
        .map(|v| v["size"].as_u64().unwrap())
        .sum();
    site.append_config(&format!("[queue]\nmax_bytes = {}\n", used + 500));
    site.cmd("rs-send")
        .args(["--class", "t", "--subclass", "t"])
        .stdin(&vec![b'x'; 4000])
        .run()
        .code(75);
    assert_eq!(site.listed_ids(), vec![high, bulk]);
    assert_eq!(site.dead().len(), 1, "only the rejected message is dead");
}

#[test]
fn per_precedence_limits_count_only_their_precedence() {
    let site =
        Site::with_config("[queue.bulk]\nmax_messages = 2\n[queue.urgent]\nmax_messages = 1\n");
    let n1 = site.send(&[], b"n1");
    let n2 = site.send(&[], b"n2");
    let b1 = site.send(&["--precedence", "bulk"], b"b1");
    let b2 = site.send(&["--precedence", "bulk"], b"b2");
    // The normal messages do not count against the bulk limit: a third bulk
    // message displaces the oldest bulk one, not a normal one.
    let b3 = site.send(&["--precedence", "bulk"], b"b3");
    assert_eq!(
        site.listed_ids(),
        vec![n1.clone(), n2.clone(), b2.clone(), b3.clone()]
    );
    assert_eq!(dead_reason(&site, &b1), "evicted");
    // The urgent limit can be met only by expiry: a second urgent message is
    // rejected although normal messages could be displaced under a total limit.
    let u1 = site.send(&["--precedence", "urgent"], b"u1");
    let r = site
        .cmd("rs-send")
        .args(["--class", "t", "--subclass", "t", "--precedence", "urgent"])
        .stdin(b"u2")
        .run()
        .code(75);
    assert!(r.stderr.contains("[queue.urgent]"), "{}", r.stderr);
    assert_eq!(site.listed_ids(), vec![u1, n1, n2, b2, b3]);
}

#[test]
fn per_precedence_and_total_limits_both_apply() {
    let site = Site::with_config("[queue]\nmax_messages = 3\n[queue.normal]\nmax_messages = 10\n");
    let b = site.send(&["--precedence", "bulk"], b"b");
    let n1 = site.send(&[], b"n1");
    let n2 = site.send(&[], b"n2");
    let n3 = site.send(&[], b"n3");
    assert_eq!(site.listed_ids(), vec![n1, n2, n3]);
    assert_eq!(dead_reason(&site, &b), "evicted");
}

#[test]
fn max_message_bytes_refuses_and_names_the_limit() {
    let site = Site::with_config("[throttle]\nmax_message_bytes = \"2 KiB\"\n");
    let r = site
        .cmd("rs-send")
        .args(["--class", "t", "--subclass", "t"])
        .stdin(&vec![0u8; 4096])
        .run()
        .code(65);
    assert!(
        r.stderr.contains("max_message_bytes = 2 KiB"),
        "{}",
        r.stderr
    );
    assert!(site.listed_ids().is_empty());
    assert!(site.files("tmp").is_empty(), "nothing left half-written");
}

#[test]
fn a_nearly_full_disk_refuses_cleanly() {
    let site = Site::with_config("[spool]\nmin_free = \"1 TiB\"\ntmp_max_age = \"1h\"\n");
    let r = site
        .cmd("rs-send")
        .args(["--class", "t", "--subclass", "t"])
        .stdin(b"x")
        .run()
        .code(75);
    assert!(r.stderr.contains("min_free"), "{}", r.stderr);
    assert!(site.files("tmp").is_empty());
}

#[test]
fn hold_and_release_stop_and_start_sending() {
    let site = Site::new();
    let a = site.send(&[], b"a");
    let b = site.send(&[], b"b");
    let due = |site: &Site| {
        site.cmd("rs-queue")
            .args(["due", "--json"])
            .run()
            .success()
            .json()
    };

    site.cmd("rs-queue").args(["hold"]).run().success();
    let d = due(&site);
    assert_eq!(d["messages"], 0);
    assert!(d["stopped"].as_str().unwrap().contains("hold"));
    site.cmd("rs-queue").args(["release"]).run().success();
    assert_eq!(due(&site)["messages"], 2);

    site.cmd("rs-queue").args(["hold", &a]).run().success();
    let listed = site.list();
    assert_eq!(
        listed.iter().find(|v| v["id"] == a.as_str()).unwrap()["state"],
        "held"
    );
    assert_eq!(due(&site)["due"][0]["id"], b.as_str());
    site.cmd("rs-queue").args(["release", &a]).run().success();
    assert_eq!(site.listed_ids(), vec![a, b]);
    assert_eq!(due(&site)["messages"], 2);
}

#[test]
fn throttle_settings_limit_what_is_due_and_survive_in_config() {
    let mut site = Site::new();
    site.at(T0);
    site.send(&[], b"1");
    site.send(&[], b"2");
    site.send(&[], b"3");
    site.cmd("rs-queue")
        .args(["throttle", "--max-messages-per-hour", "2"])
        .run()
        .success();
    let d = site
        .cmd("rs-queue")
        .args(["due", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(d["messages"], 2);
    assert!(d["stopped"]
        .as_str()
        .unwrap()
        .contains("max_messages_per_hour"));

    site.cmd("rs-queue")
        .args(["throttle", "--window", "22:00-06:00"])
        .run()
        .success();
    let d = site
        .cmd("rs-queue")
        .args(["due", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(d["messages"], 0, "10:00 UTC is outside 22:00-06:00");
    site.at("2026-11-24T23:00:00Z");
    let d = site
        .cmd("rs-queue")
        .args(["due", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(d["messages"], 2);

    let t = site
        .cmd("rs-queue")
        .args([
            "throttle",
            "--json",
            "--max-messages-per-hour",
            "none",
            "--no-windows",
        ])
        .run()
        .success()
        .json();
    assert_eq!(t["max_messages_per_hour"], serde_json::Value::Null);
    let d = site
        .cmd("rs-queue")
        .args(["due", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(d["messages"], 3);
    let config = std::fs::read_to_string(site.spool.join("config.toml")).unwrap();
    assert!(config.contains("# Limits on sending"), "comments kept");
}

#[test]
fn delete_moves_to_dead_and_unknown_ids_fail_clearly() {
    let site = Site::new();
    let a = site.send(&[], b"a");
    site.cmd("rs-queue").args(["delete", &a]).run().success();
    assert!(site.listed_ids().is_empty());
    assert_eq!(dead_reason(&site, &a), "deleted");
    let r = site
        .cmd("rs-queue")
        .args(["delete", "nosuchid"])
        .run()
        .code(66);
    assert!(r.stderr.contains("nosuchid"), "{}", r.stderr);
    let r = site
        .cmd("rs-queue")
        .args(["show", "nosuchid"])
        .run()
        .code(66);
    assert!(r.stderr.contains("nosuchid"));
}

#[test]
fn stats_count_per_area_and_precedence() {
    let site = Site::new();
    site.send(&["--precedence", "urgent"], b"a");
    site.send(&[], b"b");
    let c = site.send(&["--precedence", "bulk"], b"c");
    site.cmd("rs-queue").args(["hold", &c]).run().success();
    let s = site
        .cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(s["areas"]["queue"]["urgent"]["messages"], 1);
    assert_eq!(s["areas"]["queue"]["normal"]["messages"], 1);
    assert_eq!(s["areas"]["hold"]["bulk"]["messages"], 1);
    assert_eq!(s["outbound"]["total"]["messages"], 3);
    let bytes: u64 = site
        .list()
        .iter()
        .map(|v| v["size"].as_u64().unwrap())
        .sum();
    assert_eq!(s["outbound"]["total"]["bytes"], bytes);
}

#[test]
fn show_gives_the_header_and_the_exact_content() {
    let site = Site::new();
    let payload: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let id = site.send(
        &[
            "--mime-type",
            "application/x-test",
            "--origin-key",
            "host7/alarm42",
        ],
        &payload,
    );
    let shown = site
        .cmd("rs-queue")
        .args(["show", "--json", &id])
        .run()
        .success()
        .json();
    assert_eq!(shown["class"], "test");
    assert_eq!(shown["origin_key"], "host7/alarm42");
    assert_eq!(shown["content"]["kind"], "data");
    let content = site
        .cmd("rs-queue")
        .args(["show", "--content", &id])
        .run()
        .success();
    assert_eq!(content.stdout_bytes, payload);

    let ev = site.send(
        &[
            "--kind",
            "alarm",
            "--severity",
            "major",
            "--text",
            "disque plein ✓",
            "--instance",
            "host7",
        ],
        b"",
    );
    let content = site
        .cmd("rs-queue")
        .args(["show", "--content", &ev])
        .run()
        .success();
    assert_eq!(content.stdout, "disque plein ✓");
}

#[test]
fn text_given_for_data_is_the_data_never_an_empty_stdin() {
    let site = Site::new();
    // As cron runs it: stdin is empty, not a terminal.
    let id = site.send(&["--text", "hello"], b"");
    let content = site
        .cmd("rs-queue")
        .args(["show", "--content", &id])
        .run()
        .success();
    assert_eq!(content.stdout, "hello");
    let both = site
        .cmd("rs-send")
        .args([
            "--class",
            "test",
            "--subclass",
            "case",
            "--text",
            "x",
            "--file",
            "/etc/hostname",
        ])
        .run();
    assert_eq!(both.code, Some(64), "{}", both.stderr);
    assert!(
        both.stderr
            .contains("--text and --file both give the content"),
        "{}",
        both.stderr
    );
}

/// Issue 32, item 5: a typo in --spool or RS_SPOOL never makes a spool
/// for a command that only reads (66, naming the path and how to make
/// one); a spool made on first use says it has no peers yet.
#[test]
fn commands_that_only_read_never_make_a_spool() {
    let site = Site::new();
    let typo = site.root().join("typo").join("spool");
    for (cmd, args) in [
        ("rs-queue", vec!["list"]),
        ("rs-queue", vec!["stats"]),
        ("rs-queue", vec!["due"]),
        ("rs-ack", vec!["status", "m1"]),
        ("rs-spm", vec!["list"]),
    ] {
        let r = site
            .cmd(cmd)
            .args(&args)
            .env("RS_SPOOL", typo.to_str().unwrap())
            .run();
        assert_eq!(r.code, Some(66), "{cmd} {args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "{} is not an rs spool (it has no config.toml): create one with `rs-queue init --site SITE --spool {}`",
                typo.display(),
                typo.display()
            )),
            "{cmd} {args:?}: {}",
            r.stderr
        );
        assert!(
            !site.root().join("typo").exists(),
            "{cmd} made {}",
            typo.display()
        );
    }
    let fresh = site.root().join("fresh");
    let r = site
        .cmd("rs-send")
        .args(["--class", "test", "--subclass", "case", "--text", "x"])
        .env("RS_SPOOL", fresh.to_str().unwrap())
        .run();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("the new spool has no peers yet"),
        "{}",
        r.stderr
    );
}

/// Issue 32, item 5: a spool made by root, then used as another user:
/// exit 77, naming the path, its owner and the chown that gives it back.
#[test]
fn a_spool_of_another_user_is_named_with_its_owner_and_the_remedy() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run a command as another user");
        return;
    }
    let site = Site::new();
    site.send(&[], b"made by root");
    let bin = support::bin("rs-queue");
    let r = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "env"])
        .arg(format!("RS_SPOOL={}", site.spool.display()))
        .arg(&bin)
        .arg("list")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(77), "{stderr}");
    assert!(
        stderr.contains("belongs to root, and this runs as nobody")
            && stderr.contains(&format!("chown -R nobody: {}", site.spool.display())),
        "{stderr}"
    );
}

#[test]
fn list_stops_quietly_when_its_reader_goes_away() {
    let site = Site::new();
    for i in 0..50 {
        site.send(&[], format!("{i}").as_bytes());
    }
    let script = format!(
        "RS_SPOOL={} {} list | head -n 2",
        site.spool.display(),
        support::bin("rs-queue").display()
    );
    let out = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn usage_errors_explain_themselves() {
    let site = Site::new();
    let r = site
        .cmd("rs-send")
        .args(["--class", "a b", "--subclass", "c"])
        .stdin(b"x")
        .run()
        .code(64);
    assert!(r.stderr.contains("--class"), "{}", r.stderr);
    let r = site
        .cmd("rs-send")
        .args(["--class", "a", "--subclass", "c", "--ttl", "soon"])
        .stdin(b"x")
        .run()
        .code(64);
    assert!(r.stderr.contains("soon"), "{}", r.stderr);
    let r = site
        .cmd("rs-send")
        .args([
            "--class",
            "a",
            "--subclass",
            "c",
            "--file",
            "/nonexistent/x",
        ])
        .run()
        .code(66);
    assert!(r.stderr.contains("/nonexistent/x"), "{}", r.stderr);
}

#[test]
fn a_bad_configuration_names_the_file_and_the_key() {
    let site = Site::with_config("[queue]\nmax_byts = 10\n");
    let r = site
        .cmd("rs-send")
        .args(["--class", "a", "--subclass", "c"])
        .stdin(b"x")
        .run()
        .code(78);
    assert!(
        r.stderr.contains("config.toml") && r.stderr.contains("max_byts"),
        "{}",
        r.stderr
    );
}
