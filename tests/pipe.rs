//! `rs-relay receive` as an MTA's delivery pipe, without an MTA: its exit
//! statuses are the contract with the MTA (sysexits.h).

mod support;

use support::Site;

fn pair() -> (Site, Site) {
    let (a, b) = (Site::component("a.host"), Site::component("b.hub"));
    support::mail_peers(&a, &b);
    (a, b)
}

#[test]
fn a_stored_mail_exits_0_and_its_copy_is_a_duplicate() {
    let (a, b) = pair();
    let id = a.send(&[], b"by mail");
    let mail = support::mail_from_a(&a, &id);
    let r = b
        .cmd("rs-relay")
        .args(["receive", "--json"])
        .stdin(&mail)
        .run()
        .success()
        .json();
    assert_eq!(r["delivered"], 1, "identified by its From: address");
    let r = b
        .cmd("rs-relay")
        .args(["receive", "--json"])
        .stdin(&mail)
        .run()
        .success()
        .json();
    assert_eq!(r["duplicates"], 1);
    assert_eq!(b.received().len(), 1);
}

#[test]
fn junk_and_strangers_are_quarantined_with_exit_0() {
    let (_a, b) = pair();
    b.cmd("rs-relay")
        .args(["receive"])
        .stdin(b"From: a@x.test\n\nnot an envelope\n")
        .run()
        .success();
    let r = b
        .cmd("rs-relay")
        .args(["receive"])
        .stdin(b"From: mallory@evil.test\nX-Rs-From: m.allory\n\nhi\n")
        .run()
        .success();
    assert!(r.stderr.contains("not a configured peer"), "{}", r.stderr);
    b.cmd("rs-relay")
        .args(["receive"])
        .stdin(b"")
        .run()
        .success();
    assert_eq!(b.files("quarantine").len(), 3);
    assert!(b.received().is_empty());
}

#[test]
fn a_spool_that_cannot_take_the_mail_asks_the_mta_to_retry() {
    let (a, _b) = pair();
    let id = a.send(&[], b"x");
    let mail = support::mail_from_a(&a, &id);
    // A spool that cannot even be created.
    let r = std::process::Command::new(support::bin("rs-relay"))
        .args(["--spool", "/proc/no/such/spool", "receive"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            // It may exit before reading its stdin: that is its answer.
            let _ = c.stdin.take().unwrap().write_all(&mail);
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // A relay whose queue is full cannot take custody: 75, nothing stored.
    let relay = Site::component("b.relay");
    relay.peer(
        "a.host",
        "routes = [\"smtp://127.0.0.1:1?from=b@y.test&to=a@x.test&tls=none\"]",
    );
    relay.peer("c.hub", "upstream = true");
    relay.append_config("[queue]\nmax_messages = 0\n");
    relay
        .cmd("rs-relay")
        .args(["receive"])
        .stdin(&mail)
        .run()
        .code(75);
    assert!(relay.listed_ids().is_empty());
}

#[test]
fn usage_errors_exit_64() {
    let b = Site::new();
    b.cmd("rs-relay")
        .args(["receive", "--bogus"])
        .run()
        .code(64);
    b.cmd("rs-send").args(["--no-such-flag"]).run().code(64);
}

#[test]
fn fetch_takes_new_mail_into_cur_once_stored() {
    let (a, b) = pair();
    let id = a.send(&[], b"via maildir");
    let md = b.root().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    std::fs::write(md.join("new/1.good.host"), support::mail_from_a(&a, &id)).unwrap();
    std::fs::write(md.join("new/2.junk.host"), b"From: a@x.test\n\njunk").unwrap();
    let r = b
        .cmd("rs-relay")
        .args(["fetch", "--json", "--maildir"])
        .args([&md])
        .run()
        .success()
        .json();
    assert_eq!(
        (r["delivered"].as_u64(), r["quarantined"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(std::fs::read_dir(md.join("new")).unwrap().count(), 0);
    let mut cur: Vec<String> = std::fs::read_dir(md.join("cur"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cur.sort();
    assert_eq!(cur, vec!["1.good.host:2,S", "2.junk.host:2,S"]);
}

/// Issue 32, item 6: a stick not mounted is a temporary failure (75) for
/// reading as for writing; a path that is not a directory stays 66.
#[test]
fn importing_from_a_medium_not_mounted_is_tried_again() {
    let (_a, b) = pair();
    let gone = b.root().join("media").join("usb");
    let r = b
        .cmd("rs-relay")
        .args(["import", "--from", gone.to_str().unwrap()])
        .run();
    assert_eq!(r.code, Some(75), "{}", r.stderr);
    assert!(r.stderr.contains("is the medium mounted?"), "{}", r.stderr);
    let file = b.root().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let r = b
        .cmd("rs-relay")
        .args(["import", "--from", file.to_str().unwrap()])
        .run();
    assert_eq!(r.code, Some(66), "{}", r.stderr);
}

/// Issue 32, item 6: mail an IMAP server or a mail client moved to `cur/`
/// unread (no `S` flag) is taken too, and marked seen; mail a person read
/// first (`S`) and mail rs took already are left alone.
#[test]
fn fetch_takes_unseen_mail_an_imap_server_moved_to_cur() {
    let (a, b) = pair();
    let ids: Vec<String> = (0..3)
        .map(|i| a.send(&[], format!("moved {i}").as_bytes()))
        .collect();
    let md = b.root().join("Maildir");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    std::fs::write(
        md.join("cur/1.moved.host:2,"),
        support::mail_from_a(&a, &ids[0]),
    )
    .unwrap();
    std::fs::write(
        md.join("cur/2.flagged.host:2,F"),
        support::mail_from_a(&a, &ids[1]),
    )
    .unwrap();
    std::fs::write(
        md.join("cur/3.read.host:2,S"),
        support::mail_from_a(&a, &ids[2]),
    )
    .unwrap();
    let fetch = || {
        b.cmd("rs-relay")
            .args(["fetch", "--json", "--maildir"])
            .args([&md])
            .run()
            .success()
            .json()
    };
    let r = fetch();
    assert_eq!(r["delivered"].as_u64(), Some(2), "{r}");
    let mut cur: Vec<String> = std::fs::read_dir(md.join("cur"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cur.sort();
    assert_eq!(
        cur,
        vec!["1.moved.host:2,S", "2.flagged.host:2,FS", "3.read.host:2,S"]
    );
    let r = fetch();
    assert_eq!(r["delivered"].as_u64(), Some(0), "taken once: {r}");
    assert_eq!(b.received().len(), 2);
}

/// Issue 29, item 5: `rs-relay fetch` opens the Maildir's `new/` and
/// `cur/` inside it without following a link. Either one a link is
/// refused (66) naming it, and what lies outside the Maildir is neither
/// read, moved nor removed; a mail in `new/` that is a link or a FIFO is
/// skipped unread (65), its target left alone.
#[test]
fn a_maildir_whose_new_is_a_link_is_not_followed() {
    let (a, b) = pair();
    let id = a.send(&[], b"lies outside the Maildir");
    let mail = support::mail_from_a(&a, &id);
    let outside = b.root().join("outside");
    for d in ["new", "cur"] {
        std::fs::create_dir_all(outside.join(d)).unwrap();
    }
    std::fs::write(outside.join("new/1.outside.host"), &mail).unwrap();
    let listing = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let fetch = |md: &std::path::Path| {
        b.cmd("rs-relay")
            .args(["fetch", "--maildir"])
            .args([md])
            .run()
    };

    // new/ a link to a directory outside: refused, nothing taken.
    let md = b.root().join("Maildir");
    std::fs::create_dir_all(md.join("cur")).unwrap();
    std::fs::create_dir_all(md.join("tmp")).unwrap();
    std::os::unix::fs::symlink(outside.join("new"), md.join("new")).unwrap();
    let r = fetch(&md).code(66);
    let named = md.join("new").display().to_string();
    assert!(
        r.stderr.contains(&named) && r.stderr.contains("symbolic link"),
        "{}",
        r.stderr
    );
    assert_eq!(listing(&outside.join("new")), ["1.outside.host"]);
    assert_eq!(
        std::fs::read(outside.join("new/1.outside.host")).unwrap(),
        mail
    );
    assert!(listing(&md.join("cur")).is_empty());
    assert!(b.received().is_empty(), "nothing outside was read");

    // cur/ a link to a directory outside: refused before anything is
    // read, the mail stays in new/, nothing moves out of the Maildir.
    let md2 = b.root().join("Maildir2");
    for d in ["new", "tmp"] {
        std::fs::create_dir_all(md2.join(d)).unwrap();
    }
    std::fs::write(md2.join("new/2.inside.host"), &mail).unwrap();
    std::os::unix::fs::symlink(outside.join("cur"), md2.join("cur")).unwrap();
    let r = fetch(&md2).code(66);
    assert!(
        r.stderr.contains(&md2.join("cur").display().to_string())
            && r.stderr.contains("symbolic link"),
        "{}",
        r.stderr
    );
    assert_eq!(listing(&md2.join("new")), ["2.inside.host"]);
    assert!(listing(&outside.join("cur")).is_empty());
    assert!(b.received().is_empty());

    // A mail that is a link (to the mail outside) or a FIFO: skipped
    // unread and reported (65), left where it is; the link's target is
    // untouched. The regular mail beside them is taken.
    let md3 = b.root().join("Maildir3");
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(md3.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(
        outside.join("new/1.outside.host"),
        md3.join("new/3.link.host"),
    )
    .unwrap();
    let fifo = md3.join("new/4.fifo.host");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::fs::write(md3.join("new/5.good.host"), &mail).unwrap();
    let r = fetch(&md3).code(65);
    assert!(
        r.stderr.contains("3.link.host") && r.stderr.contains("4.fifo.host"),
        "{}",
        r.stderr
    );
    assert_eq!(listing(&md3.join("new")), ["3.link.host", "4.fifo.host"]);
    assert_eq!(listing(&md3.join("cur")), ["5.good.host:2,S"]);
    assert_eq!(listing(&outside.join("new")), ["1.outside.host"]);
    assert_eq!(b.received().len(), 1);
}
