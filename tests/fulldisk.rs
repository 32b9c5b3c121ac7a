//! Full disks, for real: spools and sticks on small tmpfs mounts (the
//! tests run as root), filled until a write fails with ENOSPC. Every
//! spool-writing command and route must refuse with exit 75 and a message
//! that names the place and its free space, leave no half-written file,
//! never acknowledge what it did not store, and complete once space
//! returns.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::Site;

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "mount a tmpfs on {} (the tests run as root)",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with the file `dir/filler`.
fn fill(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0xa5u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&[0u8]).is_ok() {}
}

fn make_room(dir: &Path) {
    std::fs::remove_file(dir.join("filler")).unwrap();
}

/// What a refusal for a full disk must say: where, and how much is free.
fn says_full(stderr: &str, place: &Path) {
    assert!(
        stderr.contains(&*place.to_string_lossy()) && stderr.contains("free"),
        "the message names {} and its free space: {stderr}",
        place.display()
    );
}

/// Files left half-written anywhere under `dir` (rs's temporary names).
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for area in ["tmp", "received/tmp"] {
        if let Ok(d) = std::fs::read_dir(dir.join(area)) {
            out.extend(
                d.flatten()
                    .map(|e| format!("{area}/{}", e.file_name().to_string_lossy())),
            );
        }
    }
    out
}

/// Files with rs's temporary prefix anywhere on a stick.
fn stick_leftovers(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// Every ID in `sent` delivered exactly once at `site`.
fn delivered_once(site: &Site, sent: &[String]) {
    let got = site.received();
    let ids: Vec<&String> = got.iter().map(|(id, _)| id).collect();
    let unique: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a message delivered twice");
    for id in sent {
        assert!(unique.contains(id), "{id} lost");
    }
}

const NO_MIN_FREE: &str = "[spool]\nmin_free = 0\n";

#[test]
fn rs_send_on_a_full_spool_refuses_and_sends_once_space_returns() {
    let site = Site::component_on_tmpfs("a.host", "4m");
    site.append_config(NO_MIN_FREE);
    fill(&site.spool);
    let big = vec![b'x'; 256 * 1024];
    let r = site
        .cmd("rs-send")
        .args(["--class", "t", "--subclass", "t"])
        .stdin(&big)
        .run()
        .code(75);
    says_full(&r.stderr, &site.spool);
    assert!(r.stdout.is_empty(), "no ID printed for what was not stored");
    assert!(
        leftovers(&site.spool).is_empty(),
        "{:?}",
        leftovers(&site.spool)
    );
    assert_eq!(site.outbound_left(None), 0);

    // The default min_free refuses before writing anything.
    let guarded = Site::component_on_tmpfs("b.host", "4m");
    let r = guarded
        .cmd("rs-send")
        .args(["--class", "t", "--subclass", "t"])
        .stdin(b"x")
        .run()
        .code(75);
    assert!(
        r.stderr.contains("min_free") && r.stderr.contains("free"),
        "{}",
        r.stderr
    );

    make_room(&site.spool);
    site.send(&[], &big);
    assert_eq!(site.outbound_left(None), 1);
}

#[test]
fn export_to_a_full_stick_marks_nothing_sent_and_completes_later() {
    let a = Site::component("a.host");
    a.peer("b.hub", "upstream = true\nack_timeout = \"10m\"");
    let b = Site::component("b.hub");
    b.peer("a.host", "");
    let stick = a.root().join("stick");
    let _mount = Tmpfs::mount(&stick, "2m");
    let sent: Vec<String> = (0..6)
        .map(|i| a.send(&[], &vec![b'0' + i as u8; 200 * 1024]))
        .collect();
    fill(&stick);
    let r = a.export_to(&stick).run().code(75);
    says_full(&r.stderr, &stick);
    assert!(
        stick_leftovers(&stick).is_empty(),
        "{:?}",
        stick_leftovers(&stick)
    );
    assert_eq!(a.files("sent"), Vec::<String>::new(), "nothing marked sent");

    make_room(&stick);
    a.export_to(&stick).run().success();
    b.import_from(&stick).run().success();
    delivered_once(&b, &sent);
}

#[test]
fn flush_over_a_dir_route_into_a_full_inbox_keeps_the_messages_queued() {
    let a = Site::component("a.host");
    let inbox = a.root().join("inbox");
    let _mount = Tmpfs::mount(&inbox, "2m");
    a.peer(
        "b.hub",
        &format!(
            "upstream = true\nack_timeout = \"10m\"\nroutes = [\"dir:{}\"]",
            inbox.display()
        ),
    );
    let b = Site::component("b.hub");
    b.peer("a.host", "");
    let sent: Vec<String> = (0..6)
        .map(|i| a.send(&[], &vec![b'a' + i as u8; 200 * 1024]))
        .collect();
    fill(&inbox);
    let r = a.cmd("rs-queue").args(["flush"]).run().code(75);
    says_full(&r.stderr, &inbox);
    assert!(
        stick_leftovers(&inbox).is_empty(),
        "{:?}",
        stick_leftovers(&inbox)
    );
    assert_eq!(a.files("sent"), Vec::<String>::new(), "nothing marked sent");

    make_room(&inbox);
    a.cmd("rs-queue").args(["flush", "--force"]).run().success();
    b.import_from(&inbox).run().success();
    delivered_once(&b, &sent);
}

#[test]
fn import_into_a_full_spool_acknowledges_only_what_it_stored() {
    let a = Site::component("a.host");
    a.peer("b.hub", "upstream = true\nack_timeout = \"10m\"");
    let b = Site::component_on_tmpfs("b.hub", "8m");
    b.peer("a.host", "");
    b.append_config(NO_MIN_FREE);
    let stick = a.stick("stick");
    let back = a.stick("back");
    let sent: Vec<String> = (0..12)
        .map(|i| a.send(&[], &vec![b'k' + i as u8; 300 * 1024]))
        .collect();
    a.export_to(&stick).run().success();
    fill(&b.spool);
    let r = b.import_from(&stick).run();
    assert_eq!(r.code, Some(75), "{}", r.stderr);
    says_full(&r.stderr, &b.spool);
    assert!(leftovers(&b.spool).is_empty(), "{:?}", leftovers(&b.spool));
    // What it owes acknowledgements for, it holds.
    let stored: HashSet<String> = b.received().into_iter().map(|(id, _)| id).collect();
    let _ = b.cmd("rs-ack").args(["emit"]).run();
    let _ = b.export_to(&back).run();
    let _ = a
        .cmd("rs-ack")
        .args(["apply", "--from"])
        .args([&back])
        .run();
    let still: HashSet<String> = a
        .list()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    for id in &sent {
        assert!(
            stored.contains(id) || still.contains(id),
            "{id} acknowledged but not stored"
        );
    }

    make_room(&b.spool);
    b.import_from(&stick).run().success();
    delivered_once(&b, &sent);
}

#[test]
fn an_http_server_on_a_full_spool_takes_nothing_and_the_client_keeps_it() {
    let p = Site::component_on_tmpfs("p.hub", "4m");
    p.peer("a.host", "authentication = \"none\"\nack_timeout = \"10m\"");
    p.append_config(NO_MIN_FREE);
    let a = Site::component("a.host");
    let srv = support::http::Serve::start(&p);
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nauthentication = \"none\"\nack_timeout = \"10m\"\nroutes = [\"{}\"]",
            srv.url
        ),
    );
    let sent: Vec<String> = (0..6)
        .map(|i| a.send(&[], &vec![b'h' + i as u8; 300 * 1024]))
        .collect();
    fill(&p.spool);
    let r = a.cmd("rs-queue").args(["flush"]).run();
    assert_eq!(r.code, Some(75), "{}", r.stderr);
    // The server's reply says what kind of trouble, never its paths.
    assert!(
        !r.stderr.contains(&*p.spool.to_string_lossy()),
        "the reply names the server's spool: {}",
        r.stderr
    );
    assert!(leftovers(&p.spool).is_empty(), "{:?}", leftovers(&p.spool));
    let stored: HashSet<String> = p.received().into_iter().map(|(id, _)| id).collect();
    assert!(stored.len() < sent.len(), "the disk was full");

    make_room(&p.spool);
    let later =
        rs::time::Timestamp::from_micros(rs::time::system_now().as_micros() + 3 * 3600 * 1_000_000)
            .to_rfc3339();
    for _ in 0..3 {
        a.cmd("rs-queue")
            .args(["flush", "--force"])
            .env("RS_NOW", &later)
            .run();
    }
    delivered_once(&p, &sent);
    drop(srv);
}

#[test]
fn mail_received_on_a_full_spool_is_left_with_the_mta() {
    let a = Site::component("a.host");
    let b = Site::component_on_tmpfs("b.hub", "4m");
    support::mail_peers(&a, &b);
    b.append_config(NO_MIN_FREE);
    let id = a.send(&[], &vec![b'm'; 300 * 1024]);
    let mail = support::mail_from_a(&a, &id);
    fill(&b.spool);
    let r = b.cmd("rs-relay").args(["receive"]).stdin(&mail).run();
    assert_eq!(r.code, Some(75), "the MTA keeps the mail: {}", r.stderr);
    says_full(&r.stderr, &b.spool);
    assert!(leftovers(&b.spool).is_empty(), "{:?}", leftovers(&b.spool));
    assert!(b.received().is_empty());
    assert!(
        b.files("quarantine").is_empty(),
        "{:?}",
        b.files("quarantine")
    );

    make_room(&b.spool);
    b.cmd("rs-relay")
        .args(["receive"])
        .stdin(&mail)
        .run()
        .success();
    b.cmd("rs-relay")
        .args(["receive"])
        .stdin(&mail)
        .run()
        .success();
    delivered_once(&b, &[id]);
}

#[test]
fn emit_on_a_full_spool_keeps_the_acknowledgements_owed() {
    let a = Site::component("a.host");
    a.peer("b.hub", "upstream = true\nack_timeout = \"10m\"");
    let b = Site::component_on_tmpfs("b.hub", "4m");
    b.peer("a.host", "");
    b.append_config(NO_MIN_FREE);
    let stick = a.stick("s");
    let back = a.stick("back");
    for i in 0..5 {
        a.send(&[], format!("m{i}").as_bytes());
    }
    a.export_to(&stick).run().success();
    b.import_from(&stick).run().success();
    fill(&b.spool);
    let r = b.cmd("rs-ack").args(["emit"]).run();
    assert_eq!(r.code, Some(75), "{}", r.stderr);
    says_full(&r.stderr, &b.spool);
    assert!(leftovers(&b.spool).is_empty(), "{:?}", leftovers(&b.spool));

    make_room(&b.spool);
    b.cmd("rs-ack").args(["emit"]).run().success();
    b.export_to(&back).run().success();
    a.cmd("rs-ack")
        .args(["apply", "--from"])
        .args([&back])
        .run()
        .success();
    assert_eq!(a.outbound_left(None), 0, "every message acknowledged");
}
