//! One test per bug found after its code was written, named after the bug.

mod support;

use std::path::{Path, PathBuf};

use rs::message::*;
use rs::time::Timestamp;
use support::Site;

/// Data that was all whitespace went as XML text, which XML parsers drop:
/// the receiver refused the message (size mismatch). Found by proptest.
#[test]
fn whitespace_only_data_round_trips() {
    for bytes in [&b" "[..], b"\n\n", b" \t \n"] {
        let m = Message {
            header: Header {
                id: MessageId::parse("m1").unwrap(),
                created: Timestamp::from_secs(1),
                class: Name::new("c", "c").unwrap(),
                subclass: Name::new("s", "s").unwrap(),
                locator: Locator::Source(Source {
                    component: Name::new("c", "a.b").unwrap(),
                    component_type: Name::new("t", "t").unwrap(),
                    version: Name::new("v", "1").unwrap(),
                    qos: Qos {
                        expiry: None,
                        precedence: Precedence::Normal,
                        persistence: Persistence::Normal,
                    },
                }),
                in_reply_to: None,
                origin_key: None,
                epoch: None,
                routing: vec![],
            },
            content: Content::Data(Data {
                mime_type: MimeType::octet_stream(),
                bytes: bytes.to_vec(),
            }),
        };
        let back = envelope::parse(&envelope::to_bytes(std::slice::from_ref(&m))).unwrap();
        assert_eq!(back, vec![m]);
    }
}

/// Two unreadable inputs quarantined in one batch got the same name and the
/// second overwrote the first: quarantined data was lost.
#[test]
fn quarantine_never_overwrites_an_earlier_file() {
    let a = Site::component("a.host");
    a.peer("b.hub", "upstream = true");
    let b = Site::component("b.hub");
    b.peer("a.host", "");
    let dir = a.root().join("stick/b.hub/a.host");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..5 {
        std::fs::write(
            dir.join(format!("1-000000000000000{i}-junk{i}.msg")),
            format!("junk {i}"),
        )
        .unwrap();
    }
    b.cmd("rs-relay")
        .args(["import", "--from"])
        .args([a.root().join("stick")])
        .run()
        .success();
    let kept: Vec<String> = b
        .files("quarantine")
        .iter()
        .map(|f| std::fs::read_to_string(b.spool.join("quarantine").join(f)).unwrap())
        .collect();
    assert_eq!(kept.len(), 5, "{kept:?}");
    for i in 0..5 {
        assert!(kept.contains(&format!("junk {i}")), "junk {i} lost");
    }
}

/// Sequoia's OpenSSL backend initialises OpenSSL from a static constructor;
/// once it was a dependency of the library, every rs-send run loaded
/// libssl and libcrypto (about 1.6 ms of start-up). OpenPGP now lives in
/// its own crate that rs-send does not link.
#[test]
fn rs_send_does_not_load_openssl() {
    let out = std::process::Command::new("ldd")
        .arg(support::bin("rs-send"))
        .output()
        .unwrap();
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(
        !libs.contains("libssl") && !libs.contains("libcrypto"),
        "{libs}"
    );
}

/// Nor does it carry the provider's database and JetStream clients (and
/// the TLS and crypto they bring): the library has them, rs-send's code
/// never reaches them.
#[test]
fn rs_send_carries_no_database_tls_or_crypto_code() {
    let out = std::process::Command::new("nm")
        .arg(support::bin("rs-send"))
        .output()
        .expect("nm (binutils)");
    assert!(out.status.success());
    let symbols = String::from_utf8_lossy(&out.stdout);
    assert!(symbols.lines().count() > 1000, "rs-send is stripped");
    for crate_name in [
        "postgres",
        "async_nats",
        "ring_core",
        "rustls",
        "sequoia",
        "tokio",
    ] {
        let n = symbols.lines().filter(|l| l.contains(crate_name)).count();
        assert_eq!(n, 0, "rs-send has {n} symbols of {crate_name}");
    }
}

// ---------------------------------------------------------------- media
// Issue 11: what a hostile stick, a replay or a wrong clock could do.

const T0: &str = "2026-11-24T10:00:00Z";

/// `a.host` (upstream `b.hub`, ack timeout 10 minutes) and `b.hub`, both at T0.
fn media_pair() -> (Site, Site) {
    let mut a = Site::component("a.host");
    a.peer(
        "b.hub",
        "upstream = true\nack_timeout = \"10m\"\nretry_cap = \"1h\"",
    );
    let mut b = Site::component("b.hub");
    b.peer("a.host", "");
    a.at(T0);
    b.at(T0);
    (a, b)
}

/// Copies a stick (its directory tree of regular files), as someone who
/// keeps a copy in a drawer would.
fn copy_stick(from: &Path, to: &Path) {
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

/// Days after T0, as RS_NOW text.
fn t0_plus_days(days: i64) -> String {
    Timestamp::from_secs(Timestamp::parse(T0).unwrap().as_secs() + days * 86_400).to_rfc3339()
}

/// Every byte quarantined at `site`, concatenated.
fn quarantined_bytes(site: &Site) -> Vec<u8> {
    let mut all = Vec::new();
    for f in site.files("quarantine") {
        all.extend(std::fs::read(site.spool.join("quarantine").join(f)).unwrap());
    }
    all
}

fn quarantine_reasons(site: &Site) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(site.spool.join("quarantine"))
        .unwrap()
        .flatten()
    {
        if e.file_name().to_string_lossy().ends_with(".reason") {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap());
        }
    }
    all
}

/// A secret file outside every spool and stick.
fn secret(site: &Site) -> PathBuf {
    let p = site.root().join("secret");
    std::fs::write(&p, "root:SECRET-HASH:19000::::::\n").unwrap();
    p
}

/// A symbolic link named like a message (and one named like an
/// acknowledgement envelope) on the stick, pointing at a secret: import and
/// `rs-ack apply` read the secret into quarantine/ and exited 0.
#[test]
fn a_symlinked_message_on_a_stick_is_not_followed() {
    let (a, b) = media_pair();
    let s = a.stick("s");
    let id = a.send(&[], b"fine");
    a.export_to(&s).run().success();
    let inbox = s.join("b.hub/a.host");
    let secret = secret(&a);
    std::os::unix::fs::symlink(&secret, inbox.join("1-0000000000000009-evil.msg")).unwrap();
    std::os::unix::fs::symlink(&secret, inbox.join("ack-1-2-3.msg")).unwrap();

    let r = b
        .cmd("rs-ack")
        .args(["apply", "--json", "--from"])
        .args([&s])
        .run()
        .code(65);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    let r = b.import_from(&s).run().code(65);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert_eq!(r.json()["delivered"], 1, "the valid message still arrives");
    assert_eq!(r.json()["skipped"], 2);
    assert_eq!(b.received()[0].0, id);
    assert!(
        !String::from_utf8_lossy(&quarantined_bytes(&b)).contains("SECRET"),
        "the link's target was read"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "root:SECRET-HASH:19000::::::\n"
    );
}

/// `STICK/TO/FROM` as a link to another directory: import read every
/// `*.msg` there, quarantined it and deleted the original; export wrote
/// message files into it.
#[test]
fn a_symlinked_peer_directory_on_a_stick_is_not_followed() {
    let (a, b) = media_pair();
    let elsewhere = a.root().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(
        elsewhere.join("1-0000000000000001-precious.msg"),
        "precious",
    )
    .unwrap();

    // Import through a linked peer directory.
    let s = a.stick("s");
    std::fs::create_dir_all(s.join("b.hub")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.join("b.hub/a.host")).unwrap();
    let r = b.import_from(&s).run().code(65);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("1-0000000000000001-precious.msg")).unwrap(),
        "precious",
        "a file behind the link was touched"
    );
    assert!(b.files("quarantine").is_empty());

    // Export through a linked peer directory, and through a linked
    // destination directory.
    a.send(&[], b"payload");
    for (link, target) in [("b.hub/a.host", "s2"), ("b.hub", "s3")] {
        let s = a.stick(target);
        std::fs::create_dir_all(s.join(link).parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, s.join(link)).unwrap();
        let r = a
            .cmd("rs-queue")
            .args(["export", "--to"])
            .args([&s])
            .run()
            .code(75);
        assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
        let names: Vec<String> = std::fs::read_dir(&elsewhere)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["1-0000000000000001-precious.msg".to_string()]);
        assert_eq!(a.list()[0]["state"], "queued", "nothing was marked sent");
    }
}

/// A link planted on the stick under the name export writes to (its
/// `.tmp-` name, or the final name) redirected the write.
#[test]
fn export_never_writes_through_a_planted_link() {
    let (mut a, _b) = media_pair();
    let s = a.stick("s");
    a.send(&[], b"payload");
    a.export_to(&s).run().success();
    let dir = s.join("b.hub/a.host");
    let name = support::first_file(&dir);
    let name = name.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(dir.join(&name)).unwrap();
    let victim = a.root().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(format!(".tmp-{name}"))).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(&name)).unwrap();
    // Past the ack timeout: the message is sent again.
    a.at(&t0_plus_days(1));
    a.export_to(&s).run().success();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let meta = std::fs::symlink_metadata(dir.join(&name)).unwrap();
    assert!(meta.is_file(), "the message is a regular file on the stick");
}

/// A FIFO named like a message or an acknowledgement envelope made import
/// and `rs-ack apply` block forever.
#[test]
fn a_fifo_on_a_stick_does_not_block_import() {
    let (a, b) = media_pair();
    let s = a.stick("s");
    a.send(&[], b"fine");
    a.export_to(&s).run().success();
    let inbox = s.join("b.hub/a.host");
    for name in ["1-0000000000000009-fifo.msg", "ack-fifo.msg"] {
        let status = std::process::Command::new("mkfifo")
            .arg(inbox.join(name))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let limit = std::time::Duration::from_secs(30);
    let r = b
        .cmd("rs-ack")
        .args(["apply", "--from"])
        .args([&s])
        .run_within(limit)
        .expect("rs-ack apply hung on a FIFO");
    assert_eq!(r.code, Some(65), "{}", r.stderr);
    let r = b
        .cmd("rs-relay")
        .args(["import", "--from"])
        .args([&s])
        .run_within(limit)
        .expect("rs-relay import hung on a FIFO");
    assert_eq!(r.code, Some(65), "{}", r.stderr);
    assert!(r.stderr.contains("FIFO"), "{}", r.stderr);
    assert_eq!(b.received().len(), 1);
}

/// A stick kept in a drawer and imported again a year later delivered its
/// messages a second time: their IDs had been forgotten after 30 days.
#[test]
fn a_stick_imported_again_a_year_later_delivers_nothing_twice() {
    let (a, mut b) = media_pair();
    let s = a.stick("s");
    let drawer = a.root().join("drawer");
    a.send(&[], b"once");
    a.export_to(&s).run().success();
    copy_stick(&s, &drawer);
    b.import_from(&s).run().success();
    b.at(&t0_plus_days(365));
    let r = b.import_from(&drawer).run().success().json();
    assert_eq!(
        (r["delivered"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(b.received().len(), 1);
}

/// Once newer traffic lets the receiver forget old IDs, a replayed old
/// message can no longer be proven new: it is refused (and its origin
/// told), never delivered a second time.
#[test]
fn a_replay_older_than_the_duplicate_memory_is_refused_and_its_origin_told() {
    let (mut a, mut b) = media_pair();
    let s = a.stick("s");
    let drawer = a.root().join("drawer");
    let old = a.send(&[], b"old");
    a.export_to(&s).run().success();
    copy_stick(&s, &drawer);
    b.import_from(&s).run().success();

    // Forty days later, new traffic: the old ID is past its 30 days.
    a.at(&t0_plus_days(40));
    b.at(&t0_plus_days(40));
    let s2 = a.stick("s2");
    a.send(&[], b"new");
    a.export_to(&s2).run().success();
    b.import_from(&s2).run().success();

    b.at(&t0_plus_days(41));
    let r = b.import_from(&drawer).run().success().json();
    assert_eq!(
        (r["delivered"].as_u64(), r["rejected"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    assert_eq!(b.received().len(), 2, "old delivered once, new once");
    let owed = std::fs::read_to_string(b.spool.join("acks/pending/a.host")).unwrap();
    assert!(
        owed.lines()
            .any(|l| l.starts_with(&format!("{old} rejected"))),
        "the origin is told: {owed}"
    );
}

/// A message that expired before it arrived was delivered anyway.
#[test]
fn a_message_that_expired_in_transit_is_refused_and_its_origin_told() {
    let (mut a, mut b) = media_pair();
    let s = a.stick("s");
    let id = a.send(&["--ttl", "1d"], b"stale");
    a.export_to(&s).run().success();
    b.at(&t0_plus_days(2));
    let r = b.import_from(&s).run().success().json();
    assert_eq!(
        (r["delivered"].as_u64(), r["rejected"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    assert!(b.received().is_empty());
    // The refusal travels back: the sender's copy goes to dead/ with why.
    let back = b.stick("back");
    b.export_to(&back).run().success();
    a.at(&t0_plus_days(2));
    // The sender's own expiry pass may bury it first; either way it is dead
    // and never acknowledged as delivered.
    a.import_from(&back).run().success();
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &id])
        .run()
        .success()
        .json();
    assert_eq!(st["state"], "dead", "{st}");
}

/// One import with the clock 400 days ahead forgot every accepted ID, and
/// the next import at the right time delivered an old stick again.
#[test]
fn an_import_with_the_clock_far_ahead_forgets_nothing() {
    let (a, mut b) = media_pair();
    let s1 = a.stick("s1");
    let drawer = a.root().join("drawer");
    a.send(&[], b"first");
    a.export_to(&s1).run().success();
    copy_stick(&s1, &drawer);
    b.import_from(&s1).run().success();

    let s2 = a.stick("s2");
    a.send(&[], b"second");
    a.export_to(&s2).run().success();
    b.at(&t0_plus_days(400));
    b.import_from(&s2).run().success();

    b.at(&t0_plus_days(1));
    let r = b.import_from(&drawer).run().success().json();
    assert_eq!(
        (r["delivered"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    assert_eq!(b.received().len(), 2);
}

/// An import with the clock 400 days behind remembered what it accepted
/// only until a date long past, so the next run forgot it.
#[test]
fn an_import_with_the_clock_far_behind_forgets_nothing() {
    let (mut a, mut b) = media_pair();
    let s1 = a.stick("s1");
    a.send(&[], b"first");
    a.export_to(&s1).run().success();
    b.import_from(&s1).run().success();

    let s2 = a.stick("s2");
    let drawer = a.root().join("drawer");
    a.send(&[], b"second");
    a.export_to(&s2).run().success();
    copy_stick(&s2, &drawer);
    b.at(&t0_plus_days(-400));
    b.import_from(&s2).run().success();

    // A day later (right clock), new traffic; then the replay.
    a.at(&t0_plus_days(1));
    b.at(&t0_plus_days(1));
    let s3 = a.stick("s3");
    a.send(&[], b"third");
    a.export_to(&s3).run().success();
    b.import_from(&s3).run().success();
    b.at(&t0_plus_days(2));
    let r = b.import_from(&drawer).run().success().json();
    assert_eq!(
        (r["delivered"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    assert_eq!(b.received().len(), 3);
}

/// A stick holding more than the receiver's free space was never imported:
/// the whole batch went to received/tmp/ first, the run failed with 75, and
/// the next run did the same. Now each run delivers what fits.
#[test]
fn a_stick_larger_than_free_space_is_imported_in_part_each_run() {
    let (a, _) = media_pair();
    let mut b = Site::component_on_tmpfs("b.hub", "40m");
    b.peer("a.host", "");
    b.append_config("[spool]\ntmp_max_age = \"1h\"\nmin_free = \"4 MiB\"\n");
    b.at(T0);
    let s = a.stick("s");
    let mut sent = std::collections::HashMap::new();
    for i in 0..20u32 {
        let payload: Vec<u8> = (0..2 * 1024 * 1024u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
            .collect();
        sent.insert(a.send(&[], &payload), payload);
    }
    a.export_to(&s).run().success();

    let r = b.import_from(&s).run().code(75);
    let first = r.json()["delivered"].as_u64().unwrap();
    assert!((5..20).contains(&first), "delivered {first}: {}", r.stderr);
    assert!(
        std::fs::read_dir(b.spool.join("received/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "nothing left behind in received/tmp/"
    );
    let left = std::fs::read_dir(s.join("b.hub/a.host")).unwrap().count() as u64;
    assert_eq!(
        left,
        20 - first,
        "what was delivered left the stick, the rest stayed"
    );

    // The consumer takes what arrived; the next run delivers the rest.
    let got = b.received();
    for e in std::fs::read_dir(b.spool.join("received/new")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let r = b.import_from(&s).run().success();
    assert_eq!(r.json()["delivered"].as_u64().unwrap(), 20 - first);
    let mut all = got;
    all.extend(b.received());
    assert_eq!(all.len(), 20);
    for (id, content) in all {
        assert_eq!(sent.get(&id), Some(&content), "{id}");
    }
}

/// A directory named like a message, or a regular file where a peer's
/// directory belongs, aborted the import (74) and every valid message
/// after it waited.
#[test]
fn one_bad_entry_does_not_block_the_rest_of_a_stick() {
    let (a, b) = media_pair();
    b.peer("c.host", "");
    b.peer("d.host", "");
    let s = a.stick("s");
    a.send(&[], b"one");
    a.send(&[], b"two");
    a.export_to(&s).run().success();
    std::fs::create_dir_all(s.join("b.hub/a.host/1-0000000000000000-adir.msg")).unwrap();
    std::fs::write(s.join("b.hub/c.host"), "a file, not a directory").unwrap();
    let mut d = Site::component("d.host");
    d.peer("b.hub", "upstream = true");
    d.at(T0);
    d.send(&[], b"three");
    d.export_to(&s).run().success();

    let r = b.import_from(&s).run().code(65);
    assert_eq!(r.json()["delivered"], 3, "{}", r.stderr);
    assert!(r.stderr.contains("adir.msg"), "{}", r.stderr);
    assert!(r.stderr.contains("c.host"), "{}", r.stderr);
    assert!(String::from_utf8_lossy(&quarantined_bytes(&b)).contains("a file, not a directory"));
    assert!(
        !s.join("b.hub/c.host").exists(),
        "its bytes are in quarantine now"
    );
}

/// A full spool could not apply acknowledgements (the only thing that
/// would free it): the run failed writing its statistics.
#[test]
fn acknowledgements_apply_on_a_full_spool() {
    let mut a = Site::component_on_tmpfs("a.host", "8m");
    a.peer(
        "b.hub",
        "upstream = true\nack_timeout = \"10m\"\nretry_cap = \"1h\"",
    );
    a.append_config("[spool]\ntmp_max_age = \"1h\"\nmin_free = 0\n");
    a.at(T0);
    let mut b = Site::component("b.hub");
    b.peer("a.host", "");
    b.at(T0);
    let s = b.stick("s");
    for i in 0..20 {
        a.send(&[], format!("message {i}").as_bytes());
    }
    a.export_to(&s).run().success();
    b.import_from(&s).run().success();
    b.export_to(&s).run().success();
    a.fill_disk();

    for (cmd, args) in [
        ("rs-ack", ["apply", "--from"]),
        ("rs-relay", ["import", "--from"]),
    ] {
        let r = a.cmd(cmd).args(args).args([&s]).run();
        assert_eq!(r.code, Some(0), "{cmd}: {}", r.stderr);
    }
    assert!(a.list().is_empty(), "every acknowledged copy discarded");
}

/// A 200 MB header line was read whole (200 MB of memory) before it was
/// refused.
#[test]
fn a_huge_header_line_is_refused_in_bounded_memory() {
    let (a, b) = media_pair();
    let s = a.stick("s");
    let dir = s.join("b.hub/a.host");
    std::fs::create_dir_all(&dir).unwrap();
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.join("1-0000000000000001-huge.msg")).unwrap(),
        );
        f.write_all(b"MIME-Version: 1.0\nSubject: ").unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..200 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\nContent-Type: multipart/related; boundary=x\n\n--x--\n")
            .unwrap();
    }
    let (code, peak_kib) = b
        .cmd("rs-relay")
        .args(["import", "--from"])
        .args([&s])
        .run_measured(None);
    assert_eq!(code, Some(0));
    assert!(peak_kib < 64 * 1024, "peak {peak_kib} KiB");
    assert_eq!(b.files("quarantine").len(), 1);
    assert!(
        quarantine_reasons(&b).contains("line"),
        "{}",
        quarantine_reasons(&b)
    );
}

/// A message in acme's directory claiming another component as its source
/// was delivered: a peer could speak for anyone.
#[test]
fn a_peer_may_not_speak_for_another_component() {
    let b = Site::component("b.hub");
    b.peer("a.host", "");
    b.peer("c.host", "");
    b.peer("r.relay", "components = [\"x.host\"]");
    let s = b.stick("s");
    // Messages made by sites that claim these components, carried in the
    // directory of the peer named second.
    let forge = |claimed: &str, carrier: &str| {
        let f = Site::component(claimed);
        // A site may not name itself as its peer: the one claiming to be
        // b.hub exports toward another hub.
        let hub = if claimed == "b.hub" { "q.hub" } else { "b.hub" };
        f.peer(hub, "upstream = true");
        f.send(&[], format!("from {claimed} via {carrier}").as_bytes());
        let tmp = f.stick("tmp");
        f.export_to(&tmp).run().success();
        let to = s.join("b.hub").join(carrier);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(tmp.join(hub).join(claimed)).unwrap() {
            let e = e.unwrap();
            std::fs::rename(e.path(), to.join(e.file_name())).unwrap();
        }
        b.import_from(&s).run()
    };
    // Refused: a configured peer, this site itself, a component configured
    // behind another peer.
    for (claimed, carrier) in [
        ("c.host", "a.host"),
        ("b.hub", "a.host"),
        ("x.host", "a.host"),
    ] {
        let r = forge(claimed, carrier).success();
        assert_eq!(r.json()["quarantined"], 1, "{claimed} via {carrier}");
        assert!(
            quarantine_reasons(&b).contains(&format!("{carrier} may not speak for {claimed}")),
            "{}",
            quarantine_reasons(&b)
        );
    }
    // Allowed: a component configured behind its carrier; an unknown one,
    // learned behind the first peer that carries it, and then refused from
    // another.
    assert_eq!(forge("x.host", "r.relay").success().json()["delivered"], 1);
    assert_eq!(forge("z.host", "a.host").success().json()["delivered"], 1);
    assert_eq!(forge("z.host", "c.host").success().json()["quarantined"], 1);
    assert_eq!(forge("z.host", "a.host").success().json()["delivered"], 1);
    assert_eq!(b.received().len(), 3);
}

/// A 0-byte file was quarantined as "top-level type is text/plain".
#[test]
fn an_empty_file_is_quarantined_as_empty() {
    let (a, b) = media_pair();
    let s = a.stick("s");
    std::fs::create_dir_all(s.join("b.hub/a.host")).unwrap();
    std::fs::write(s.join("b.hub/a.host/1-0000000000000001-zero.msg"), "").unwrap();
    b.import_from(&s).run().success();
    assert!(
        quarantine_reasons(&b).contains("is empty (0 bytes)"),
        "{}",
        quarantine_reasons(&b)
    );
}

// ---------------------------------------------------------------- configuration

/// A spool whose config.toml went missing was silently given a default
/// one (and a dangling config.toml link was overwritten).
#[test]
fn a_missing_or_dangling_config_in_an_existing_spool_is_an_error() {
    let a = Site::component("a.host");
    let config = a.spool.join("config.toml");
    std::fs::remove_file(&config).unwrap();
    let r = a.cmd("rs-queue").args(["list"]).run().code(78);
    assert!(r.stderr.contains("config.toml"), "{}", r.stderr);
    assert!(!config.exists(), "no default configuration was written");

    std::os::unix::fs::symlink(a.root().join("etc/rs.toml"), &config).unwrap();
    let r = a.cmd("rs-queue").args(["list"]).run().code(78);
    assert!(r.stderr.contains("etc/rs.toml"), "{}", r.stderr);
    a.cmd("rs-queue")
        .args(["init", "--site", "a"])
        .run()
        .code(73);
    assert!(std::fs::symlink_metadata(&config)
        .unwrap()
        .file_type()
        .is_symlink());
}

/// A config.toml that is a directory exited 74 (I/O) instead of 78.
#[test]
fn a_config_that_is_a_directory_is_a_configuration_error() {
    let a = Site::component("a.host");
    let config = a.spool.join("config.toml");
    std::fs::remove_file(&config).unwrap();
    std::fs::create_dir(&config).unwrap();
    let r = a.cmd("rs-queue").args(["list"]).run().code(78);
    assert!(r.stderr.contains("directory"), "{}", r.stderr);
}

/// A `dir:` route to a missing directory (an unmounted stick) was created
/// and the messages marked sent.
#[test]
fn a_dir_route_to_a_missing_directory_defers() {
    let a = Site::component("a.host");
    let mount = a.root().join("media/usb");
    a.peer(
        "b.hub",
        &format!("upstream = true\nroutes = [\"dir:{}\"]", mount.display()),
    );
    a.send(&[], b"waiting");
    let r = a.cmd("rs-queue").args(["flush"]).run().code(75);
    assert!(r.stderr.contains("media/usb"), "{}", r.stderr);
    assert!(!mount.exists(), "the mount point was created");
    assert_eq!(a.list()[0]["state"], "queued");
    let r = a
        .cmd("rs-queue")
        .args(["export", "--to"])
        .args([&mount])
        .run()
        .code(75);
    assert!(r.stderr.contains("media/usb"), "{}", r.stderr);
    assert!(!mount.exists());
}

/// A peer configured twice, or a binary config.toml, was reported with no
/// line number.
#[test]
fn configuration_errors_name_the_line() {
    let a = Site::component("a.host");
    a.peer("b.hub", "");
    a.peer("b.hub", "");
    let text = std::fs::read_to_string(a.spool.join("config.toml")).unwrap();
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[peer]]")
        .nth(1)
        .unwrap()
        .0
        + 1;
    let r = a.cmd("rs-queue").args(["list"]).run().code(78);
    assert!(r.stderr.contains(&format!("line {second}")), "{}", r.stderr);

    let mut bytes = b"site = \"a\"\ncomponent = \"a.host\"\n".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, 0x00, 0x01, b'\n']);
    std::fs::write(a.spool.join("config.toml"), bytes).unwrap();
    let r = a.cmd("rs-queue").args(["list"]).run().code(78);
    assert!(r.stderr.contains("line 3"), "{}", r.stderr);
}

/// `rs-queue due --json` printed one object while its help promised one per
/// line. Every listing's output now has the shape its help states.
#[test]
fn json_output_has_the_shape_help_states() {
    let a = Site::component("a.host");
    a.peer("b.hub", "upstream = true\nack_timeout = \"1m\"");
    let id = a.send(&[], b"one");
    a.send(&[], b"two");
    for (bin, args) in [
        ("rs-queue", vec!["list"]),
        ("rs-queue", vec!["due"]),
        ("rs-queue", vec!["stats"]),
        ("rs-ack", vec!["overdue"]),
        ("rs-ack", vec!["status", id.as_str()]),
    ] {
        let help = a.cmd(bin).args(&args).arg_help().run().success().stdout;
        let per_line = help.replace('\n', " ").contains("object per line");
        let out = a.cmd(bin).args(&args).args(["--json"]).run().success();
        let lines: Vec<serde_json::Value> = out.json_lines();
        if per_line {
            assert!(
                lines.iter().all(|v| v.is_object()),
                "{bin} {args:?}: {}",
                out.stdout
            );
        } else {
            assert_eq!(lines.len(), 1, "{bin} {args:?}: one object\n{}", out.stdout);
        }
        if args == ["due"] || args == ["list"] {
            let ids = lines.iter().filter(|v| v.get("id").is_some()).count();
            let arrays = lines.iter().filter(|v| v.get("due").is_some()).count();
            assert!(ids == 2 || arrays == 1, "{bin} {args:?}: {}", out.stdout);
            assert_eq!(per_line, ids == 2, "{bin} {args:?}: help and output differ");
        }
    }
}

/// Junk larger than the room left above min_free was copied into
/// quarantine until the disk filled, failing the import (and every later
/// one at the same file). It is now left on the medium, and the rest taken.
#[test]
fn junk_too_large_to_quarantine_is_left_and_the_rest_imported() {
    let (a, _) = media_pair();
    let mut b = Site::component_on_tmpfs("b.hub", "16m");
    b.peer("a.host", "");
    b.append_config("[spool]\ntmp_max_age = \"1h\"\nmin_free = \"1 MiB\"\n");
    b.at(T0);
    let s = a.stick("s");
    a.send(&[], b"fine");
    a.export_to(&s).run().success();
    let junk = s.join("b.hub/a.host/0-0000000000000000-junk.msg");
    std::fs::write(&junk, vec![b'x'; 20 << 20]).unwrap();
    let r = b.import_from(&s).run().code(65);
    assert_eq!(r.json()["delivered"], 1, "{}", r.stderr);
    assert!(junk.exists(), "the junk stays on the medium");
    assert!(b.files("quarantine").is_empty());
}

/// A mail whose X-Rs-From names one peer but whose message claims another
/// component as its source was delivered.
#[test]
fn a_mail_may_not_speak_for_another_component() {
    let mut b = Site::component("b.hub");
    b.peer("a.host", "");
    b.peer("c.host", "");
    b.at(T0);
    let mut c = Site::component("c.host");
    c.peer("b.hub", "upstream = true");
    c.at(T0);
    c.send(&[], b"claims c.host");
    let s = c.stick("s");
    c.export_to(&s).run().success();
    let mut mail = b"X-Rs-From: a.host\n".to_vec();
    mail.extend(std::fs::read(support::first_file(&s.join("b.hub/c.host"))).unwrap());
    let r = b
        .cmd("rs-relay")
        .args(["receive", "--json"])
        .stdin(&mail)
        .run()
        .success();
    assert_eq!(r.json()["quarantined"], 1, "{}", r.stderr);
    assert!(quarantine_reasons(&b).contains("a.host may not speak for c.host"));
    assert!(b.received().is_empty());
}

/// A run stopped while it held the spool lock (SIGSTOP, a hung NFS
/// write) stalled every later run for ever: cron jobs piled up. A run now
/// waits at most `[spool] lock_wait`, then exits 75 naming the lock.
#[test]
fn a_spool_lock_held_too_long_is_given_up_with_exit_75() {
    let site = Site::with_config("");
    site.send(&[], b"first");
    let text = std::fs::read_to_string(site.spool.join("config.toml")).unwrap();
    std::fs::write(
        site.spool.join("config.toml"),
        text.replace("lock_wait = \"10m\"", "lock_wait = \"1s\""),
    )
    .unwrap();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(site.spool.join("state/usage"))
        .unwrap();
    fs2::FileExt::lock_exclusive(&lock).unwrap();
    let start = std::time::Instant::now();
    let r = site
        .cmd("rs-send")
        .args(["--class", "t", "--subclass", "t"])
        .stdin(b"waits")
        .run()
        .code(75);
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    assert!(
        r.stderr.contains("state/usage") && r.stderr.contains("lock_wait"),
        "{}",
        r.stderr
    );
    fs2::FileExt::unlock(&lock).unwrap();
    site.send(&[], b"after");
    assert_eq!(site.listed_ids().len(), 2);
}

/// Every directory and file under `root` with a mode other than
/// `dir_mode`/`file_mode` (permission bits, with setgid for directories).
fn modes_other_than(root: &Path, dir_mode: u32, file_mode: u32) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?.permissions().mode() & 0o7777;
            let want = if e.file_type().is_dir() {
                dir_mode
            } else {
                file_mode
            };
            (m != want).then(|| format!("{} {m:o}", e.path().display()))
        })
        .collect()
}

/// Issue 29, item 4: spools made by `rs-queue init` or on first use were
/// 755 with 644 files under umask 022, so any local user read every
/// received message and quarantined input. Private, whatever the umask;
/// what goes on a stick still follows the operator's umask.
#[test]
fn a_spool_is_private_to_its_owner_whatever_the_umask() {
    let (a, b) = media_pair();
    let stick = a.stick("s");
    a.cmd("rs-send")
        .umask(0o022)
        .args(["--class", "c", "--subclass", "s"])
        .stdin(b"private")
        .run()
        .success();
    a.cmd("rs-queue")
        .umask(0o022)
        .args(["export", "--peer", "b.hub", "--to"])
        .args([&stick])
        .run()
        .success();
    b.import_from(&stick).umask(0o022).run().success();
    b.cmd("rs-relay")
        .umask(0o022)
        .args(["receive"])
        .stdin(b"not a mail at all")
        .run()
        .success();
    assert_eq!(b.received().len(), 1);
    assert!(!b.files("quarantine").is_empty());
    for s in [&a, &b] {
        let loose = modes_other_than(&s.spool, 0o700, 0o600);
        assert!(loose.is_empty(), "readable by others: {loose:#?}");
    }
    // First use too.
    let c = Site::new();
    c.cmd("rs-send")
        .umask(0o002)
        .args(["--class", "c", "--subclass", "s"])
        .stdin(b"x")
        .run()
        .success();
    let loose = modes_other_than(&c.spool, 0o700, 0o600);
    assert!(loose.is_empty(), "readable by others: {loose:#?}");
    // The stick is read elsewhere: as the umask said.
    let on_stick = modes_other_than(&stick, 0o755, 0o644);
    assert!(on_stick.is_empty(), "{on_stick:#?}");

    // With a group, its members read the spool.
    let g = Site::new();
    g.cmd("rs-queue")
        .umask(0o077)
        .args(["init", "--site", "g", "--group", "root"])
        .run()
        .success();
    g.cmd("rs-send")
        .umask(0o077)
        .args(["--class", "c", "--subclass", "s"])
        .stdin(b"x")
        .run()
        .success();
    use std::os::unix::fs::PermissionsExt;
    let root_mode = std::fs::metadata(&g.spool).unwrap().permissions().mode() & 0o7777;
    assert_eq!(root_mode, 0o2750);
    let loose = modes_other_than(&g.spool.join("queue"), 0o2750, 0o640);
    assert!(loose.is_empty(), "{loose:#?}");
    let bad = g
        .cmd("rs-queue")
        .args(["init", "--site", "h", "--group", "no-such-group-here"])
        .env("RS_SPOOL", g.root().join("h").to_str().unwrap())
        .run()
        .code(64);
    assert!(bad.stderr.contains("groupadd"), "{}", bad.stderr);
}

/// Issue 29, item 10: 20 `rs-send` started at once on a new spool: a third
/// to a half of them failed with "holds a spool but its config.toml is
/// missing"; and a creator killed at the wrong moment left areas without
/// `config.toml`, so every command after it exited 78.
#[cfg(feature = "fault-injection")]
#[test]
fn creating_a_spool_on_first_use_is_all_or_nothing() {
    let site = Site::new();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let mut c = site
                .cmd("rs-send")
                .args([
                    "--class",
                    "c",
                    "--subclass",
                    "s",
                    "--text",
                    &format!("m{i}"),
                ])
                .command();
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .stdin(std::process::Stdio::null());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(site.list().len(), 20);

    // A power cut at each durable operation of the run that creates it:
    // the next command finds a spool it can use, or none (and creates it).
    let mut cut = 0;
    for n in 1..400 {
        let s = Site::new();
        let r = s
            .cmd("rs-send")
            .args(["--class", "c", "--subclass", "s"])
            .env("RS_FAULT", &format!("crash@{n}"))
            .env("RS_FAULT_MODE", if n % 2 == 0 { "drop" } else { "mix" })
            .env("RS_FAULT_SEED", &n.to_string())
            .stdin(b"first")
            .run();
        if r.code != Some(rs::spool::fault::CRASH_EXIT) {
            assert_eq!(r.code, Some(0), "{}", r.stderr);
            break;
        }
        cut += 1;
        s.cmd("rs-send")
            .env("RS_FAULT_BOOT", "after-the-cut")
            .args(["--class", "c", "--subclass", "s"])
            .stdin(b"second")
            .run()
            .success();
        s.cmd("rs-queue")
            .env("RS_FAULT_BOOT", "after-the-cut")
            .args(["check"])
            .run()
            .success();
    }
    assert!(cut > 5, "the creating run makes {cut} durable operations");
}
