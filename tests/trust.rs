//! Who may say what (SPEC.md section 13a, RELIABILITY.md's table): a peer
//! that carries a message vouches only for itself. Each test is a row of
//! that table, tried as an attacker would, through the real binaries:
//! control messages only from the component's registrar, notices only from
//! a component on the message's path, a relay's heartbeat only for what is
//! behind it.

mod support;

use std::path::Path;

use support::Site;

const T0: &str = "2026-11-24T10:00:00Z";

/// Export what `from` holds for `to` onto a fresh stick, and import it at
/// `to`; returns the import's JSON report.
fn carry(from: &Site, to: &Site, name: &str) -> serde_json::Value {
    let s = from.stick(name);
    from.cmd("rs-queue")
        .args(["export", "--peer", &component(to), "--to"])
        .args([&s])
        .run()
        .success();
    to.import_from(&s).run().success().json()
}

fn component(s: &Site) -> String {
    std::fs::read_to_string(s.spool.join("config.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("component = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string()
}

/// The provider `p.hub` and two sites of it, `acme.gw` and `beta.gw`,
/// connected by sticks.
fn provider_and_two_sites(extra: &str) -> (Site, Site, Site) {
    let mut p = Site::component("p.hub");
    p.peer("acme.gw", "");
    p.peer("beta.gw", "");
    let mut acme = Site::component("acme.gw");
    acme.peer("p.hub", &format!("upstream = true\n{extra}"));
    let mut beta = Site::component("beta.gw");
    beta.peer("p.hub", &format!("upstream = true\n{extra}"));
    for s in [&mut p, &mut acme, &mut beta] {
        s.at(T0);
    }
    (p, acme, beta)
}

/// The `.reason` files in `s`'s quarantine.
fn reasons(s: &Site) -> Vec<String> {
    std::fs::read_dir(s.spool.join("quarantine"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".reason"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect()
}

fn status(s: &Site, id: &str) -> serde_json::Value {
    s.ack_status(id)
}

/// Puts `bytes` on a stick as an envelope that peer `from` wrote for `to`.
fn forge_on_stick(stick: &Path, to: &str, from: &str, bytes: &[u8]) {
    let dir = stick.join(to).join(from);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0-forged.msg"), bytes).unwrap();
}

/// Issue 29, item 1: `rs-relay control acme.gw hold` run at another site of
/// the same provider traveled beta → provider → acme, and acme obeyed it
/// because its upstream handed it over.
#[test]
fn a_site_cannot_steer_another_site_through_the_provider() {
    let (p, acme, beta) = provider_and_two_sites("");
    for action in [
        vec!["hold"],
        vec!["set-configuration", "--set", "queue.max_bytes=\"1 KiB\""],
    ] {
        let mut args = vec!["control", "acme.gw"];
        args.extend(&action);
        let id = beta
            .cmd("rs-relay")
            .args(args)
            .run()
            .success()
            .stdout
            .trim()
            .to_string();
        // The provider does not pass on a control message a site made: it
        // keeps it in quarantine with the reason and tells its origin.
        let up = carry(&beta, &p, &format!("up-{}", action[0]));
        let down = carry(&p, &acme, &format!("down-{}", action[0]));
        assert!(!acme.spool.join("state/hold").exists(), "acme held");
        assert_eq!(down["messages"], 0, "nothing reached acme: {down}");
        assert_eq!(
            (&up["refused"], &up["relayed"]),
            (&1.into(), &0.into()),
            "{up}"
        );
        carry(&p, &beta, &format!("back-{}", action[0]));
        let st = status(&beta, &id);
        assert_eq!(st["state"], "dead", "{st}");
        assert!(
            st["summary"]
                .as_str()
                .unwrap()
                .contains("travel only down from the provider"),
            "{st}"
        );
    }
    assert!(!acme.spool.join("state/hold").exists(), "acme not held");
    let config = std::fs::read_to_string(acme.spool.join("config.toml")).unwrap();
    assert!(!config.contains("1 KiB"), "acme's queue not shrunk");
    let reasons = reasons(&p);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    for r in &reasons {
        assert!(
            r.contains("reason: refused") && r.contains("made by beta.gw"),
            "{r}"
        );
    }

    // A provider that did pass one on (an older release, a bug) would not
    // make acme obey either: acme obeys only what its registrar made,
    // whoever carried it. Here beta's exported control message is handed
    // to acme as if the provider carried it.
    let id = beta
        .cmd("rs-relay")
        .args(["control", "acme.gw", "hold"])
        .run()
        .success()
        .stdout
        .trim()
        .to_string();
    let up = beta.stick("exported");
    beta.cmd("rs-queue")
        .args(["export", "--peer", "p.hub", "--to"])
        .args([&up])
        .run()
        .success();
    let envelope = std::fs::read_dir(up.join("p.hub/beta.gw"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .find(|b| String::from_utf8_lossy(b).contains(&id))
        .expect("beta's control message on its stick");
    let down = acme.stick("handed-down");
    forge_on_stick(&down, "acme.gw", "p.hub", &envelope);
    let got = acme.import_from(&down).run().success().json();
    assert_eq!(got["refused"], 1, "{got}");
    assert!(!acme.spool.join("state/hold").exists(), "acme not held");

    // The provider's own control messages are still obeyed.
    p.cmd("rs-relay")
        .args(["control", "acme.gw", "hold"])
        .run()
        .success();
    carry(&p, &acme, "genuine");
    assert!(
        acme.spool.join("state/hold").exists(),
        "held by its provider"
    );
}

/// An acknowledgement as component `to` would receive it: `code` saying
/// `status` of message `id`.
fn notice(
    id: &str,
    status: rs::message::ResponseStatus,
    code: &'static str,
    to: &str,
) -> rs::message::Message {
    let owed = rs::ack::Owed {
        id: rs::message::MessageId::parse(id).unwrap(),
        status,
        code,
        to: rs::message::Name::new("to", to).unwrap(),
        reason: "forged by acme".into(),
    };
    rs::ack::message(&owed, rs::time::Timestamp::parse(T0).unwrap())
}

/// Issue 29, item 2: with its own valid identity, acme posted a
/// `final-rejected` for a message of beta's that the provider had
/// delivered; the provider passed it on and beta's status said
/// "undeliverable: forged by acme". A notice for a message beta had not
/// even sent was journalled too, and a hop's rejection passed on by the
/// provider buried a message beta was waiting on.
#[test]
fn a_notice_about_another_sites_message_from_off_its_path_is_refused() {
    use rs::message::ResponseStatus::{Accepted, Rejected};
    let (p, acme, beta) = provider_and_two_sites("");
    let delivered = beta.send(&[], b"for the provider");
    carry(&beta, &p, "first");
    carry(&p, &beta, "first-ack");
    assert_eq!(status(&beta, &delivered)["state"], "acknowledged");
    // On its way: handed to the provider, not yet acknowledged.
    let waiting = beta.send(&[], b"on its way");
    let _stick_in_transit = beta.stick("in-transit");
    beta.cmd("rs-queue")
        .args(["export", "--peer", "p.hub", "--to"])
        .args([&_stick_in_transit])
        .run()
        .success();
    let unsent = beta.send(&[], b"not sent yet");

    let forged = [
        notice(&delivered, Rejected, "final-rejected", "beta.gw"),
        notice(&unsent, Accepted, "final-delivered", "beta.gw"),
        notice(&waiting, Rejected, "rejected", "beta.gw"),
    ];
    let stick = acme.stick("forged");
    forge_on_stick(
        &stick,
        "p.hub",
        "acme.gw",
        &rs::message::envelope::to_bytes(&forged),
    );
    let got = p.import_from(&stick).run().success().json();
    carry(&p, &beta, "back");

    let st = status(&beta, &delivered);
    assert_eq!(st["state"], "acknowledged", "{st}");
    assert!(!st.to_string().contains("forged"), "{st}");
    beta.cmd("rs-ack")
        .args(["wait", &delivered, "--timeout", "1s"])
        .run()
        .success();
    let st = status(&beta, &waiting);
    assert_eq!(st["state"], "sent", "still awaiting the provider: {st}");
    let st = status(&beta, &unsent);
    assert_eq!(st["state"], "queued", "{st}");
    assert!(!st.to_string().contains("forged"), "{st}");
    assert_eq!(got["refused"], 3, "{got}");
    assert_eq!(got["acks_passed_on"], 0, "{got}");
    assert_eq!(reasons(&p).len(), 3);
}

/// A site whose registration is enabled (heartbeats every ten minutes).
fn registering(component: &str) -> Site {
    let s = Site::component(component);
    s.append_config("[registration]\nenabled = true\nheartbeat = \"10m\"\n");
    s
}

/// Issue 29, item 3: a relay nested in its heartbeat the status of a leaf
/// it calls `acme.gw` locally; the provider recorded `heard acme.gw via
/// e.gw`, and the real acme.gw, silent, vanished from `rs-relay silent`.
#[test]
fn a_relays_heartbeat_speaks_only_for_what_is_behind_it() {
    let mut p = Site::component("p.hub");
    p.append_config("[registrar]\nenabled = true\n");
    p.peer("acme.gw", "");
    p.peer("e.gw", "");
    let mut acme = registering("acme.gw");
    acme.peer("p.hub", "upstream = true");
    let mut e = registering("e.gw");
    e.peer("p.hub", "upstream = true");
    e.peer("acme.gw", "");
    // e.gw's own leaf, which it calls acme.gw.
    let mut leaf = registering("acme.gw");
    leaf.peer("e.gw", "upstream = true");
    let at = |t: &str, sites: &mut [&mut Site]| {
        for s in sites.iter_mut() {
            s.at(t);
        }
    };

    at(
        "2026-11-24T10:00:00Z",
        &mut [&mut p, &mut acme, &mut e, &mut leaf],
    );
    carry(&acme, &p, "acme-reg");
    carry(&p, &acme, "acme-answer");
    carry(&e, &p, "e-reg");
    carry(&p, &e, "e-answer");
    carry(&leaf, &e, "leaf-reg");
    carry(&e, &leaf, "leaf-answer");
    // The real acme.gw falls silent; the leaf beats at e.gw, whose
    // heartbeat nests it.
    at("2026-11-24T10:30:00Z", &mut [&mut e, &mut leaf]);
    carry(&leaf, &e, "leaf-beat");
    at("2026-11-24T10:31:00Z", &mut [&mut e, &mut p]);
    carry(&e, &p, "e-beat");
    assert!(p.spool.join("state/heard/e.gw").exists());
    let heard = std::fs::read_to_string(p.spool.join("state/heard/acme.gw")).unwrap();
    assert!(!heard.contains("via e.gw"), "{heard}");

    let silent = p
        .cmd("rs-relay")
        .env("RS_NOW", "2026-11-24T10:45:00Z")
        .args(["silent", "--for", "20m", "--json"])
        .run()
        .success()
        .json_lines();
    let names: Vec<&str> = silent
        .iter()
        .map(|v| v["component"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme.gw"], "{silent:?}");
}

/// Runs `rs-relay cgi` at `site` as a web server would, for a POST from
/// `from` (a peer without certificates) with `body`; `length` says whether
/// CONTENT_LENGTH is passed. Returns the status line and the body.
fn cgi_post(site: &Site, from: &str, body: &[u8], length: bool) -> (String, Vec<u8>) {
    let mut cmd = site
        .cmd("rs-relay")
        .args(["cgi"])
        .env("REQUEST_METHOD", "POST")
        .env("HTTP_X_RS_FROM", from)
        .stdin(body);
    if length {
        cmd = cmd.env("CONTENT_LENGTH", &body.len().to_string());
    }
    let out = cmd.run().stdout;
    let (head, body) = out.split_once("\r\n\r\n").expect("a CGI response");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.as_bytes().to_vec())
}

/// The messages of the envelope each queued file of `site` holds, in one
/// envelope.
fn queued_envelope(site: &Site) -> Vec<u8> {
    let mut all = Vec::new();
    for p in ["urgent", "normal", "bulk"] {
        let Ok(d) = std::fs::read_dir(site.spool.join("queue").join(p)) else {
            continue;
        };
        for e in d.flatten() {
            all.extend(rs::message::envelope::parse(&std::fs::read(e.path()).unwrap()).unwrap());
        }
    }
    rs::message::envelope::to_bytes(&all)
}

/// Issue 29, item 12: a control message refused for its origin made the
/// whole request 400 and was remembered, so its resend was answered
/// `duplicate` and its sender's status ended "acknowledged (duplicate)";
/// and a body without CONTENT_LENGTH was answered 204 as an empty poll,
/// the body dropped.
#[test]
fn over_http_a_refused_control_message_is_refused_alone_and_a_body_needs_its_length() {
    let b = Site::component("b.hub");
    b.peer("a.host", "authentication = \"none\"");
    b.peer("c.host", "");
    let a = Site::component("a.host");
    a.peer("b.hub", "upstream = true");
    let control = a
        .cmd("rs-relay")
        .args(["control", "c.host", "hold"])
        .run()
        .success()
        .stdout
        .trim()
        .to_string();
    let data = a.send(&[], b"data beside it");
    let body = queued_envelope(&a);

    let (status, _) = cgi_post(&b, "a.host", &body, false);
    assert!(status.contains("411"), "{status}");
    assert!(b.received().is_empty() && b.list().is_empty());

    for round in 0..2 {
        let (status, reply) = cgi_post(&b, "a.host", &body, true);
        assert!(status.contains("200"), "round {round}: {status}");
        let answers: Vec<(String, String)> = rs::message::envelope::parse(&reply)
            .unwrap()
            .into_iter()
            .filter_map(|m| match m.content {
                rs::message::Content::MessageResponse(r) => Some((
                    r.answers.to_string(),
                    r.reason_code.map(|c| c.to_string()).unwrap_or_default(),
                )),
                _ => None,
            })
            .collect();
        let code = |id: &str| {
            answers
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, c)| c.clone())
                .unwrap_or_default()
        };
        assert_eq!(code(&control), "rejected", "round {round}: {answers:?}");
        let want = if round == 0 { "delivered" } else { "duplicate" };
        assert_eq!(code(&data), want, "round {round}: {answers:?}");
    }
    assert_eq!(b.received().len(), 1);
    for r in reasons(&b) {
        assert!(r.contains("reason: refused"), "{r}");
    }
}
