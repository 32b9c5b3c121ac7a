//! Fencing (SPEC.md section 11): a run that holds a lease on messages and
//! stalls past its expiry (SIGSTOP: a paused VM, a swapped-out process)
//! while another run takes the same messages over must, when it wakes,
//! record nothing; the receiver sees each message once.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::Site;

const T0: &str = "2026-11-24T10:00:00Z";
const LATER: &str = "2026-11-24T12:00:00Z";

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill with a pid we spawned and a valid signal number.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

#[test]
fn a_sender_stalled_past_its_lease_records_nothing_and_the_message_arrives_once() {
    let mut a = Site::component("a.host");
    a.at(T0);
    let inbox = a.stick("inbox");
    a.peer(
        "b.hub",
        &format!(
            "upstream = true\nack_timeout = \"10m\"\nroutes = [\"dir:{}\"]",
            inbox.display()
        ),
    );
    a.append_config("[spool]\nmin_free = 0\n");
    let mut b = Site::component("b.hub");
    b.peer("a.host", "");
    b.at(LATER);
    // Large enough that the transfer is still writing when it is stopped.
    let big = vec![b'f'; 48 * 1024 * 1024];
    let ids: Vec<String> = (0..3).map(|_| a.send(&[], &big)).collect();

    let first = a
        .cmd("rs-queue")
        .args(["flush", "--json"])
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped once it holds its lease and writes the messages (no spool
    // lock is held while a message body is written).
    let writing = || {
        walkdir::WalkDir::new(&inbox)
            .into_iter()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
    };
    let start = Instant::now();
    while !writing() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no transfer began"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    signal(first.id(), libc::SIGSTOP);
    assert_eq!(a.files("leases").len(), 1, "the stalled run holds a lease");

    // Two hours later (the lease was for at most one): another run takes
    // the messages over and hands them on.
    let second = a
        .cmd("rs-queue")
        .args(["flush", "--force", "--json"])
        .env("RS_NOW", LATER)
        .run()
        .success()
        .json();
    assert_eq!(second["peers"][0]["sent"], 3, "{second}");
    let sent_before = a.files("sent");
    assert_eq!(sent_before.len(), 3);

    // The stalled run wakes: it finds its grant gone and records nothing.
    signal(first.id(), libc::SIGCONT);
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    assert_eq!(
        report["peers"][0]["lease_lapsed"], true,
        "{report} {stderr}"
    );
    assert!(stderr.contains("lapsed"), "{stderr}");
    assert_eq!(
        a.files("sent"),
        sent_before,
        "the late holder changed nothing"
    );
    assert!(a.files("leases").is_empty(), "{:?}", a.files("leases"));

    // The receiver sees each message once; the acknowledgements clear A.
    let back = a.stick("back");
    b.import_from(&inbox).run().success();
    b.import_from(&inbox).run().success();
    let got = b.received();
    assert_eq!(got.len(), 3, "each message delivered once");
    for id in &ids {
        assert_eq!(got.iter().filter(|(g, _)| g == id).count(), 1, "{id}");
    }
    b.cmd("rs-ack").args(["emit"]).run().success();
    b.export_to(&back).run().success();
    a.cmd("rs-ack")
        .env("RS_NOW", LATER)
        .args(["apply", "--from"])
        .args([&back])
        .run()
        .success();
    assert!(a.listed_ids().is_empty(), "{:?}", a.listed_ids());
}
