//! A spool written by an earlier release is read and served as it was
//! (issue 30: no behaviour or format change). `tests/fixtures/release-2026-12/`
//! holds two sites caught mid-exchange, made once by
//! `tests/fixtures/make-release-spools.sh` with that release's binaries:
//! every area holds something. This test copies them, asks today's
//! binaries what they hold (JSON, compared with what that release said,
//! `tests/fixtures/release-2026-12.expected.json`), then lets the exchange
//! finish: every message is delivered once, and nothing is left but the
//! message that expired.
//!
//! The fixture is kept as git stores it, without empty directories (the
//! maker's output had 29, e.g. `acks/b.hub/`): opening a spool recreates the
//! areas it needs, which is part of what this test checks.
//!
//! `RS_FIXTURE_BLESS=1 cargo test --test fixture` rewrites the expected
//! answers (only when a change of them is meant).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::Site;

const FIXTURE: &str = "tests/fixtures/release-2026-12";
const NOW: &str = "2026-12-01T13:05:00Z";

fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// The fixture's two sites and its stick, copied into the temporary
/// directory of `holder`.
fn sites(holder: &Site) -> (Site, Site, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let base = holder.root().join("fixture");
    copy_tree(&root, &base);
    let mut a = Site::existing(&base.join("a"));
    let mut b = Site::existing(&base.join("b"));
    a.at(NOW);
    b.at(NOW);
    (a, b, base.join("stick"))
}

/// What a command printed, with this run's paths taken out.
fn said(site: &Site, args: &[&str], base: &Path) -> serde_json::Value {
    let out = site.cmd(args[0]).args(&args[1..]).run().success().stdout;
    let out = out.replace(&base.display().to_string(), "FIXTURE");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or(serde_json::Value::String(l.into())))
        .collect();
    serde_json::Value::Array(lines)
}

fn ids_in(site: &Site, area: &str) -> Vec<String> {
    let v = site
        .cmd("rs-queue")
        .args(["list", "--json", "--area", area])
        .run()
        .success()
        .json_lines();
    v.iter()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_spool_of_the_earlier_release_is_read_and_served_as_it_was() {
    let holder = Site::new();
    let (a, b, stick) = sites(&holder);
    let base = stick.parent().unwrap().to_path_buf();
    let mut answers: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (name, site) in [("a", &a), ("b", &b)] {
        for args in [
            &["rs-queue", "list", "--json"][..],
            &["rs-queue", "list", "--json", "--area", "dead"],
            &["rs-queue", "list", "--json", "--area", "quarantine"],
            &["rs-queue", "list", "--json", "--area", "bulk"],
            &["rs-queue", "stats", "--json"],
            &["rs-queue", "due", "--json"],
        ] {
            answers.insert(
                format!("{name}: {}", args.join(" ")),
                said(site, args, &base),
            );
        }
        let mut ids = ids_in(site, "outbound");
        ids.extend(ids_in(site, "dead"));
        for id in ids {
            let args = ["rs-ack", "status", "--json", &id];
            answers.insert(
                format!("{name}: {}", args.join(" ")),
                said(site, &args, &base),
            );
        }
    }
    let expected_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("{FIXTURE}.expected.json"));
    let got = serde_json::to_string_pretty(&answers).unwrap() + "\n";
    if std::env::var_os("RS_FIXTURE_BLESS").is_some() {
        std::fs::write(&expected_path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap();
    let expected: BTreeMap<String, serde_json::Value> = serde_json::from_str(&expected).unwrap();
    for (k, v) in &expected {
        assert_eq!(answers.get(k), Some(v), "{k}");
    }
    assert_eq!(answers.len(), expected.len());

    // Served: the stick in transit, then round trips until nothing moves.
    b.import_from(&stick).run().success();
    let held: Vec<String> = a
        .list()
        .into_iter()
        .filter(|e| e["state"] == "held")
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(held.len(), 1, "the message held by the operator");
    a.cmd("rs-queue")
        .args(["release"])
        .args(&held)
        .run()
        .success();
    for round in 0..4 {
        for (from, to, peer) in [(&b, &a, "a.host"), (&a, &b, "b.hub")] {
            let s = holder.stick(&format!("round-{round}-{peer}"));
            from.cmd("rs-queue")
                .args(["export", "--peer", peer, "--to"])
                .args([&s])
                .run()
                .success();
            to.import_from(&s).run().success();
        }
    }
    let contents = |s: &Site| -> Vec<String> {
        let mut v: Vec<String> = s
            .received()
            .into_iter()
            .map(|(_, c)| String::from_utf8_lossy(&c).trim_end().to_string())
            .map(|c| {
                if c.len() > 40 {
                    format!("{} bytes", c.len())
                } else {
                    c
                }
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        contents(&b),
        [
            "20000 bytes",
            "a bulk event",
            "an urgent alarm",
            "first delivered",
            "held by the operator",
            "in transit",
            "still queued"
        ],
        "every message of a.host delivered once at b.hub"
    );
    assert_eq!(contents(&a), ["to b, back-channel"]);
    assert!(
        a.list().is_empty() && b.list().is_empty(),
        "{:?} {:?}",
        a.list(),
        b.list()
    );
    assert_eq!(ids_in(&a, "dead").len(), 1, "only the message that expired");
    a.assert_nothing_quarantined();
}
