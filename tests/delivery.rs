//! The delivery guarantee over removable media, through the real binaries:
//! round trips, repeated and redundant sticks, lost acknowledgements,
//! retransmission, a two-hop chain, expiry in transit, leases.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use support::Site;

const T0: &str = "2026-11-24T10:00:00Z";

/// Site A (a.host) whose upstream is B (b.hub), with an ack timeout of 10 minutes.
fn pair() -> (Site, Site) {
    let a = Site::component("a.host");
    a.peer(
        "b.hub",
        "upstream = true\nack_timeout = \"10m\"\nretry_cap = \"1h\"",
    );
    let b = Site::component("b.hub");
    b.peer("a.host", "");
    (a, b)
}

fn export(site: &Site, dir: &Path) -> serde_json::Value {
    site.cmd("rs-queue")
        .args(["export", "--json", "--to"])
        .arg_path(dir)
        .run()
        .success()
        .json()["peers"][0]
        .clone()
}

fn export_to_peer(site: &Site, dir: &Path, peer: &str) -> serde_json::Value {
    site.cmd("rs-queue")
        .args(["export", "--json", "--peer", peer, "--to"])
        .arg_path(dir)
        .run()
        .success()
        .json()["peers"][0]
        .clone()
}

fn import(site: &Site, dir: &Path, keep: bool) -> serde_json::Value {
    let mut c = site
        .cmd("rs-relay")
        .args(["import", "--json", "--from"])
        .arg_path(dir);
    if keep {
        c = c.args(["--keep"]);
    }
    c.run().success().json()
}

trait PathArg {
    fn arg_path(self, p: &Path) -> Self;
}
impl PathArg for support::Cmd {
    fn arg_path(self, p: &Path) -> Self {
        self.args([p.as_os_str()])
    }
}

/// Sends `n` messages of mixed precedence with distinct binary payloads;
/// returns ID → payload.
fn send_many(site: &Site, n: usize) -> HashMap<String, Vec<u8>> {
    let mut sent = HashMap::new();
    for i in 0..n {
        let precedence = ["urgent", "normal", "bulk"][i % 3];
        let payload: Vec<u8> = (0..(200 + i % 700))
            .map(|j| ((i * 31 + j * 7) % 256) as u8)
            .collect();
        let id = site.send(&["--precedence", precedence], &payload);
        sent.insert(id, payload);
    }
    sent
}

fn outbound_count(site: &Site) -> u64 {
    let s = site
        .cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json();
    s["outbound"]["total"]["messages"].as_u64().unwrap()
}

fn assert_received_exactly(b: &Site, sent: &HashMap<String, Vec<u8>>) {
    let got = b.received();
    let ids: Vec<&String> = got.iter().map(|(id, _)| id).collect();
    let unique: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "a message was delivered twice");
    assert_eq!(got.len(), sent.len(), "delivered count");
    for (id, content) in &got {
        assert_eq!(
            sent.get(id),
            Some(content),
            "{id}: content differs or was never sent"
        );
    }
}

#[test]
fn round_trip_of_1000_messages_leaves_nothing_behind() {
    let (a, b) = pair();
    let sent = send_many(&a, 1000);
    let s1 = a.stick("stick1");
    let e = export(&a, &s1);
    assert_eq!(e["sent"], 1000);
    let r = import(&b, &s1, false);
    assert_eq!(r["delivered"], 1000);
    let e = export(&b, &s1);
    assert_eq!(e["ack_files"], 1);
    let r = import(&a, &s1, false);
    assert_eq!(r["acks"]["discarded"], 1000);
    assert_eq!(outbound_count(&a), 0, "A's queue and sent areas are empty");
    assert_received_exactly(&b, &sent);
    // The status of a message says where it went.
    let id = sent.keys().next().unwrap();
    let s = a
        .cmd("rs-ack")
        .args(["status", "--json", id])
        .run()
        .success()
        .json();
    assert_eq!(s["state"], "acknowledged");
    let s = b
        .cmd("rs-ack")
        .args(["status", "--json", id])
        .run()
        .success()
        .json();
    assert_eq!(s["state"], "received");
    // Nothing of A's messages is left on the stick once acknowledged.
    export(&a, &s1);
    assert_eq!(
        std::fs::read_dir(s1.join("b.hub/a.host")).unwrap().count(),
        0
    );
}

#[test]
fn the_same_stick_three_times_and_a_second_stick_of_retransmissions_deliver_once() {
    let (mut a, b) = pair();
    a.at(T0);
    let sent = send_many(&a, 120);
    let s1 = a.stick("stick1");
    export(&a, &s1);
    for _ in 0..3 {
        import(&b, &s1, true);
    }
    // No acknowledgement reaches A; after the timeout it sends everything again,
    // on a second stick.
    a.at("2026-11-24T10:11:00Z");
    let s2 = a.stick("stick2");
    let e = export(&a, &s2);
    assert_eq!(e["retransmitted"], 120);
    let r = import(&b, &s2, false);
    assert_eq!(r["duplicates"], 120);
    assert_eq!(r["delivered"], 0);
    import(&b, &s1, false);
    assert_received_exactly(&b, &sent);
    // B acknowledged every copy; applying all of it empties A.
    let back = b.stick("back");
    export(&b, &back);
    let r = import(&a, &back, false);
    assert_eq!(r["acks"]["discarded"], 120);
    assert_eq!(outbound_count(&a), 0);
}

#[test]
fn a_lost_acknowledgement_heals_by_retransmission() {
    let (mut a, b) = pair();
    a.at(T0);
    let sent = send_many(&a, 30);
    let s1 = a.stick("s1");
    export(&a, &s1);
    import(&b, &s1, false);
    let lost = b.stick("lost");
    export(&b, &lost); // the return stick is lost: never imported

    // Before the timeout nothing is due again; the acknowledgements are overdue after it.
    a.at("2026-11-24T10:05:00Z");
    assert_eq!(export(&a, &s1)["sent"], 0);
    a.at("2026-11-24T10:11:00Z");
    let overdue = a
        .cmd("rs-ack")
        .args(["overdue", "--json"])
        .run()
        .success()
        .json_lines();
    assert_eq!(overdue.len(), 30);
    let id = sent.keys().next().unwrap().clone();
    let st = a.cmd("rs-ack").args(["status", &id]).run().success();
    assert!(
        st.stdout.contains("sent 1 time(s)") && st.stdout.contains("overdue"),
        "{}",
        st.stdout
    );

    let e = export(&a, &s1);
    assert_eq!(e["retransmitted"], 30);
    let r = import(&b, &s1, false);
    assert_eq!(r["duplicates"], 30, "B drops the duplicates...");
    let back = b.stick("back");
    export(&b, &back); // ...and acknowledges them again
    import(&a, &back, false);
    assert_eq!(outbound_count(&a), 0);
    assert_received_exactly(&b, &sent);
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &id])
        .run()
        .success()
        .json();
    assert_eq!(st["state"], "acknowledged");

    // The backoff doubles: a third send comes 20 minutes after the second.
    let c = a.send(&[], b"late");
    a.at("2026-11-24T11:00:00Z");
    export(&a, &s1);
    a.at("2026-11-24T11:15:00Z");
    assert_eq!(export(&a, &s1)["retransmitted"], 1);
    a.at("2026-11-24T11:30:00Z");
    assert_eq!(
        export(&a, &s1)["retransmitted"],
        0,
        "second wait is 20 minutes"
    );
    a.at("2026-11-24T11:36:00Z");
    assert_eq!(export(&a, &s1)["retransmitted"], 1);
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &c])
        .run()
        .success()
        .json();
    assert_eq!(st["attempts"], 3);
}

#[test]
fn a_two_hop_chain_delivers_and_acknowledges_end_to_end() {
    let a = Site::component("a.host");
    a.peer("b.relay", "upstream = true");
    let b = Site::component("b.relay");
    b.peer("a.host", "");
    b.peer("c.hub", "upstream = true");
    let c = Site::component("c.hub");
    c.peer("b.relay", "");

    let sent = send_many(&a, 60);
    let ab = a.stick("ab");
    let bc = a.stick("bc");
    export(&a, &ab);
    let r = import(&b, &ab, false);
    assert_eq!(
        (r["relayed"].as_u64(), r["delivered"].as_u64()),
        (Some(60), Some(0)),
        "B queues onward"
    );
    assert_eq!(outbound_count(&b), 60);
    export_to_peer(&b, &ab, "a.host"); // custody acknowledgements back to A
    export_to_peer(&b, &bc, "c.hub");
    import(&a, &ab, false);
    assert_eq!(outbound_count(&a), 0, "A discards on B's custody");
    let id = sent.keys().next().unwrap().clone();
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &id])
        .run()
        .success()
        .json();
    assert!(st["summary"].as_str().unwrap().contains("custody"), "{st}");

    let r = import(&c, &bc, false);
    assert_eq!(r["delivered"], 60);
    assert_received_exactly(&c, &sent);
    export(&c, &bc); // acknowledgements to B, and delivery notices for A through B
    let r = import(&b, &bc, false);
    assert_eq!(r["acks"]["discarded"], 60);
    assert_eq!(r["acks_passed_on"], 60);
    assert_eq!(outbound_count(&b), 0);
    export_to_peer(&b, &ab, "a.host");
    import(&a, &ab, false);
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &id])
        .run()
        .success()
        .json();
    let summary = st["summary"].as_str().unwrap();
    assert!(
        summary.contains("delivered at c.hub"),
        "the origin learns of final delivery: {summary}"
    );
    // Each hop appended its routing element: the origin with the time it
    // sent, each relay with the times it received and sent, the final
    // receiver with the time it received.
    let files = std::fs::read_dir(c.spool.join("received/new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let m = rs::message::envelope::parse(&std::fs::read(files).unwrap())
        .unwrap()
        .remove(0);
    let hops: Vec<&str> = m
        .header
        .routing
        .iter()
        .map(|r| r.component.as_str())
        .collect();
    assert_eq!(hops, vec!["a.host", "b.relay", "c.hub"]);
    let times: Vec<(bool, bool)> = m
        .header
        .routing
        .iter()
        .map(|r| (r.received.is_some(), r.sent.is_some()))
        .collect();
    assert_eq!(times, vec![(false, true), (true, true), (true, false)]);
}

#[test]
fn a_message_that_expires_before_it_is_sent_is_never_sent_and_reported_dead() {
    let (mut a, b) = pair();
    a.at(T0);
    let short = a.send(&["--ttl", "5m"], b"short");
    let long = a.send(&[], b"long");
    a.at("2026-11-24T10:06:00Z");
    let s1 = a.stick("s1");
    let e = export(&a, &s1);
    assert_eq!(
        (e["sent"].as_u64(), e["expired"].as_u64()),
        (Some(1), Some(1))
    );
    import(&b, &s1, false);
    let got: Vec<String> = b.received().into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, vec![long]);
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &short])
        .run()
        .success()
        .json();
    assert_eq!(st["state"], "dead");
    assert_eq!(st["dead"]["reason"], "expired");
    let stats = a
        .cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(stats["areas"]["dead"]["total"]["messages"], 1);
    a.cmd("rs-ack")
        .args(["wait", &short, "--timeout", "1s"])
        .run()
        .code(69);
}

#[test]
fn an_acknowledgement_from_the_wrong_peer_discards_nothing() {
    let a = Site::component("a.host");
    a.peer("b.hub", "upstream = true");
    a.peer("m.other", "");
    let b = Site::component("b.hub");
    b.peer("a.host", "");
    let m = Site::component("m.other");
    m.peer("a.host", "");
    let id = a.send(&[], b"x");
    let s1 = a.stick("s1");
    export(&a, &s1);
    // m.other received a copy by other means and acknowledges it to A.
    std::fs::create_dir_all(s1.join("m.other/a.host")).unwrap();
    for f in std::fs::read_dir(s1.join("b.hub/a.host"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(f.path(), s1.join("m.other/a.host").join(f.file_name())).unwrap();
    }
    import(&m, &s1, false);
    export(&m, &s1);
    let r = a
        .cmd("rs-relay")
        .args(["import", "--json", "--from"])
        .arg_path(&s1)
        .run()
        .success();
    assert_eq!(r.json()["acks"]["discarded"], 0);
    assert!(
        r.stderr.contains("not sent to m.other"),
        "logged: {}",
        r.stderr
    );
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &id])
        .run()
        .success()
        .json();
    assert_eq!(st["state"], "sent", "A keeps its copy");
}

#[test]
fn concurrent_exports_never_take_the_same_message() {
    let (a, _b) = pair();
    let sent = send_many(&a, 200);
    let d1 = a.stick("one");
    let d2 = a.stick("two");
    let spawn = |d: &Path| {
        let mut c = a
            .cmd("rs-queue")
            .args(["export", "--to"])
            .arg_path(d)
            .command();
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (c1, c2) = (spawn(&d1), spawn(&d2));
    assert!(c1.wait_with_output().unwrap().status.success());
    assert!(c2.wait_with_output().unwrap().status.success());
    let ids = |d: &Path| -> HashSet<String> {
        std::fs::read_dir(d.join("b.hub/a.host"))
            .map(|r| {
                r.flatten()
                    .filter_map(|e| {
                        rs::transport::dir::message_id_of(&e.file_name().to_string_lossy())
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (one, two) = (ids(&d1), ids(&d2));
    assert!(
        one.is_disjoint(&two),
        "{} messages exported twice",
        one.intersection(&two).count()
    );
    assert_eq!(one.len() + two.len(), sent.len());
}

#[test]
fn an_export_killed_mid_transfer_leaves_a_lease_that_frees_its_messages() {
    let (a, _b) = pair();
    send_many(&a, 5);
    // A lease as a killed exporter leaves it: file present, holder gone.
    let ids: Vec<String> = a.listed_ids();
    let mut text = String::from("kind: transmit\nholder: pid 1 on elsewhere\ngeneration: 1\nrequested: 3600\ngranted: 3600\ngranted-at: 2026-11-24T10:00:00.000000Z\nexpires: 2999-01-01T00:00:00.000000Z\n");
    for id in &ids {
        text.push_str(&format!("message: {id}\n"));
    }
    std::fs::write(a.spool.join("leases/1.lease"), text).unwrap();
    let e = export(&a, &a.stick("s"));
    assert_eq!(e["sent"], 5, "a lease without a live holder is void");
    assert!(!a.spool.join("leases/1.lease").exists());
}

#[test]
fn wait_returns_when_acknowledged_and_times_out_otherwise() {
    let (a, b) = pair();
    let id = a.send(&[], b"x");
    let s1 = a.stick("s1");
    export(&a, &s1);
    let r = a
        .cmd("rs-ack")
        .args(["wait", &id, "--timeout", "200ms", "--interval", "50ms"])
        .run()
        .code(75);
    assert!(r.stderr.contains("not acknowledged"), "{}", r.stderr);
    import(&b, &s1, false);
    export(&b, &s1);
    import(&a, &s1, false);
    a.cmd("rs-ack")
        .args(["wait", &id, "--timeout", "5s"])
        .run()
        .success();
    a.cmd("rs-ack").args(["status", "nosuchid"]).run().code(66);
}

#[test]
fn junk_on_a_stick_is_quarantined_and_never_acknowledged() {
    let (a, b) = pair();
    let id = a.send(&[], b"good");
    let s1 = a.stick("s1");
    export(&a, &s1);
    let dir = s1.join("b.hub/a.host");
    std::fs::write(dir.join("1-0000000000000001-junk.msg"), b"not an envelope").unwrap();
    // A half-copied file (a stick pulled out during a copy) is refused too.
    let whole = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains(&id))
        .unwrap()
        .path();
    let bytes = std::fs::read(&whole).unwrap();
    std::fs::write(
        dir.join("1-0000000000000002-half.msg"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    // An exporter's unfinished file is ignored.
    std::fs::write(dir.join(".tmp-1-0000000000000003-x.msg"), &bytes[..10]).unwrap();
    let r = import(&b, &s1, false);
    assert_eq!(r["delivered"], 1);
    assert_eq!(r["quarantined"], 2);
    assert_eq!(b.files("quarantine").len(), 2);
    let back = b.stick("back");
    export(&b, &back);
    let r = import(&a, &back, false);
    assert_eq!(
        r["acks"]["discarded"], 1,
        "only the good message is acknowledged"
    );
}

#[test]
fn a_message_with_no_route_is_rejected_and_the_sender_told() {
    let (a, b) = pair();
    let id = a.send(&["--to", "x.nowhere"], b"lost cause");
    let s1 = a.stick("s1");
    export(&a, &s1);
    let r = import(&b, &s1, false);
    assert_eq!(r["rejected"], 1);
    export(&b, &s1);
    import(&a, &s1, false);
    let st = a
        .cmd("rs-ack")
        .args(["status", "--json", &id])
        .run()
        .success()
        .json();
    assert_eq!(st["state"], "dead");
    assert!(
        st["dead"]["detail"].as_str().unwrap().contains("x.nowhere"),
        "{st}"
    );
    a.cmd("rs-ack")
        .args(["wait", &id, "--timeout", "1s"])
        .run()
        .code(69);
}

#[test]
fn redundant_senders_reporting_one_event_deliver_it_once() {
    let b = Site::component("b.hub");
    b.peer("a1.host", "");
    b.peer("a2.host", "");
    let s = b.stick("s");
    let mut ids = Vec::new();
    for name in ["a1.host", "a2.host"] {
        let a = Site::component(name);
        a.peer("b.hub", "upstream = true");
        ids.push(a.send(
            &[
                "--kind",
                "alarm",
                "--text",
                "disk full",
                "--origin-key",
                "host7/alarm-42",
            ],
            b"",
        ));
        ids.push(a.send(&["--kind", "event", "--text", "unrelated"], b""));
        export(&a, &s);
    }
    let r = import(&b, &s, false);
    assert_eq!(
        (r["delivered"].as_u64(), r["duplicates"].as_u64()),
        (Some(3), Some(1))
    );
    let got: Vec<String> = b.received().into_iter().map(|(id, _)| id).collect();
    assert!(
        got.contains(&ids[0]) && !got.contains(&ids[2]),
        "the second report of the event is dropped"
    );
}
