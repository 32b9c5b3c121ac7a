//! Registration and heartbeats through the real binaries (SPEC.md section
//! 13): a site registers in session mode (its data waits for the answer)
//! and in message mode (its data follows at once), applies the default
//! configuration it is answered with, registers again when unanswered; a
//! relay's heartbeat nests its children's; `rs-relay silent` at the
//! provider names the one that stopped.

mod support;

use support::http::{route, serve_tls, Pki, Serve};
use support::Site;

const DEFAULTS: &str = "[throttle]\nmax_messages_per_day = 5000\n[queue]\nmax_messages = 20000\n";

/// The provider: a registrar handing out `DEFAULTS`.
fn provider(root_of: &Site) -> Site {
    let p = Site::component("p.hub");
    let defaults = root_of.root().join("defaults.toml");
    std::fs::write(&defaults, DEFAULTS).unwrap();
    p.append_config(&format!(
        "[registrar]\nenabled = true\ndefaults = \"{}\"\n",
        defaults.display()
    ));
    p
}

/// A time of the test's day, `HH:MM` from 10:00: clients pin their clocks
/// to these while the servers run on the real clock, so the day is put two
/// hours before the present hour (what a server answers is then never
/// beyond `max_clock_skew` ahead of a client, whatever the date).
fn day(hhmm: &str) -> &'static str {
    let (h, m) = hhmm.split_once(':').unwrap();
    let minutes: i64 = (h.parse::<i64>().unwrap() - 10) * 60 + m.parse::<i64>().unwrap();
    let now = rs::time::system_now().as_secs();
    let base = now - now % 3600 - 2 * 3600;
    let t = rs::time::Timestamp::from_secs(base + minutes * 60).to_rfc3339();
    Box::leak(t.into_boxed_str())
}

fn registering(component: &str, extra: &str) -> Site {
    let s = Site::component(component);
    s.append_config(&format!("[registration]\nenabled = true\n{extra}"));
    s
}

fn flush(s: &Site) -> support::Run {
    s.cmd("rs-queue").args(["flush", "--force"]).run()
}

fn state(s: &Site) -> String {
    std::fs::read_to_string(s.spool.join("state/registration")).unwrap_or_default()
}

/// Contents received at `s` whose class is `test` (the data, not rs's own).
fn data(s: &Site) -> Vec<String> {
    let mut v: Vec<String> = s
        .received()
        .into_iter()
        .map(|(_, c)| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.starts_with("data "))
        .collect();
    v.sort();
    v
}

#[test]
fn in_session_mode_data_waits_for_the_answer_whose_defaults_are_applied() {
    let holder = Site::component("x.holder");
    let pki = Pki::new(holder.root(), "ca");
    let server = pki.server();
    let p = provider(&holder);
    p.peer("a.host", "");
    serve_tls(&p, &server, &pki.ca, "");
    let srv = Serve::start(&p);
    let a = registering("a.host", "");
    let cert = pki.client("a.host");
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nroutes = [\"{}\"]",
            route(&srv.url, &pki.ca, Some(&cert))
        ),
    );
    a.send(&[], b"data 1");
    a.send(&["--precedence", "urgent"], b"data 2");

    // One flush: the registration goes alone, is answered in the reply,
    // the defaults are written, then the data goes.
    let r = flush(&a).success();
    assert!(r.stderr.contains("registration"), "{}", r.stderr);
    assert!(
        r.stderr.contains("registered with p.hub as p.hub/"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("2 default setting(s) applied"),
        "{}",
        r.stderr
    );
    assert!(state(&a).contains("registered "), "{}", state(&a));
    let config = std::fs::read_to_string(a.spool.join("config.toml")).unwrap();
    assert!(config.contains("max_messages_per_day = 5000"), "{config}");
    assert!(
        config.contains("# Limits on sending."),
        "the operator's comments stay"
    );
    assert_eq!(data(&p), ["data 1", "data 2"]);
    assert!(a.list().is_empty());
    assert!(p.spool.join("state/registered/a.host").exists());
    // Registered once: the next runs send no registration.
    a.send(&[], b"data 3");
    let r = flush(&a).success();
    assert!(!r.stderr.contains("registration"), "{}", r.stderr);
    assert_eq!(data(&p).len(), 3);
}

#[test]
fn an_unanswered_registration_is_sent_again_after_the_configured_heartbeats() {
    let holder = Site::component("x.holder");
    let pki = Pki::new(holder.root(), "ca");
    let server = pki.server();
    // A provider that is no registrar: the registration is delivered
    // there as data, and never answered.
    let p = Site::component("p.hub");
    p.peer("a.host", "");
    serve_tls(&p, &server, &pki.ca, "");
    let srv = Serve::start(&p);
    let mut a = registering("a.host", "heartbeat = \"10m\"\nresend_after = 2\n");
    let cert = pki.client("a.host");
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nroutes = [\"{}\"]",
            route(&srv.url, &pki.ca, Some(&cert))
        ),
    );
    a.send(&[], b"data held");
    let registrations = |p: &Site| {
        p.received()
            .into_iter()
            .filter(|(_, c)| c.starts_with(b"<registration "))
            .count()
    };
    for (at, expected) in [
        (day("10:00"), 1), // sent
        (day("10:05"), 1), // no heartbeat due yet
        (day("10:10"), 1), // heartbeat 1
        (day("10:20"), 2), // heartbeat 2: sent again
        (day("10:30"), 2),
    ] {
        a.at(at);
        let r = flush(&a).success();
        assert_eq!(registrations(&p), expected, "at {at}: {}", r.stderr);
        assert!(data(&p).is_empty(), "data waits for the answer");
    }
    assert_eq!(a.list().len(), 1);
}

#[test]
fn in_message_mode_the_data_follows_the_registration_at_once() {
    let holder = Site::component("x.holder");
    let p = provider(&holder);
    p.peer(
        "a.host",
        "routes = [\"dir:STICK\"]"
            .replace("STICK", holder.root().join("down").to_str().unwrap())
            .as_str(),
    );
    std::fs::create_dir_all(holder.root().join("down")).unwrap();
    let a = registering("a.host", "");
    let up = holder.root().join("up");
    std::fs::create_dir_all(&up).unwrap();
    a.peer(
        "p.hub",
        &format!("upstream = true\nroutes = [\"dir:{}\"]", up.display()),
    );
    a.send(&["--precedence", "urgent"], b"data 1");
    a.send(&[], b"data 2");
    flush(&a).success();
    // On the stick: the registration first, then the data.
    let mut files: Vec<String> = std::fs::read_dir(up.join("p.hub/a.host"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        4,
        "registration, two data, a heartbeat: {files:?}"
    );
    let first = std::fs::read_to_string(up.join("p.hub/a.host").join(&files[0])).unwrap();
    assert!(
        first.contains("Subject: rs infrastructure/registration "),
        "{first}"
    );
    p.import_from(&up).run().success();
    assert_eq!(data(&p), ["data 1", "data 2"]);
    assert!(p.spool.join("state/registered/a.host").exists());
    // The answer comes back by the stick too, and is applied.
    flush(&p).success();
    a.import_from(&holder.root().join("down")).run().success();
    assert!(state(&a).contains("registered "), "{}", state(&a));
    let config = std::fs::read_to_string(a.spool.join("config.toml")).unwrap();
    assert!(config.contains("max_messages = 20000"), "{config}");
}

#[test]
fn a_relays_heartbeat_nests_its_children_and_silent_names_the_one_that_stopped() {
    let holder = Site::component("x.holder");
    let pki = Pki::new(holder.root(), "ca");
    let server = pki.server();
    let p = provider(&holder);
    p.peer("r.relay", "components = [\"a.host\", \"b.host\"]");
    serve_tls(&p, &server, &pki.ca, "");
    let p_srv = Serve::start(&p);
    let mut r = registering("r.relay", "heartbeat = \"10m\"\n");
    let r_cert = pki.client("r.relay");
    r.peer(
        "p.hub",
        &format!(
            "upstream = true\nroutes = [\"{}\"]",
            route(&p_srv.url, &pki.ca, Some(&r_cert))
        ),
    );
    r.peer("a.host", "");
    r.peer("b.host", "");
    serve_tls(&r, &server, &pki.ca, "");
    let r_srv = Serve::start(&r);
    let mut leaves = Vec::new();
    for name in ["a.host", "b.host"] {
        let s = registering(name, "heartbeat = \"10m\"\n");
        let cert = pki.client(name);
        s.peer(
            "r.relay",
            &format!(
                "upstream = true\nroutes = [\"{}\"]",
                route(&r_srv.url, &pki.ca, Some(&cert))
            ),
        );
        leaves.push(s);
    }
    let round = |at: &str, r: &mut Site, leaves: &mut [Site], who: &[usize]| {
        for &i in who {
            leaves[i].at(at);
            flush(&leaves[i]).success();
        }
        r.at(at);
        flush(r).success();
        for &i in who {
            flush(&leaves[i]).success();
        }
    };
    // Everyone registers (the relay first; its children's registrations
    // wait behind its own).
    round(day("10:00"), &mut r, &mut leaves, &[0, 1]);
    round(day("10:01"), &mut r, &mut leaves, &[0, 1]);
    for s in leaves.iter().chain([&r]) {
        assert!(state(s).contains("registered "), "{}", state(s));
    }
    let registered_at = |c: &str| {
        std::fs::read_to_string(p.spool.join("state/registered").join(c))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("at ").map(str::to_string))
            .unwrap()
    };
    for c in ["a.host", "b.host"] {
        assert!(
            registered_at("r.relay") < registered_at(c),
            "{c}'s registration went behind the relay's"
        );
    }
    // Heartbeats: both leaves, then only a.host.
    round(day("10:15"), &mut r, &mut leaves, &[0, 1]);
    round(day("10:50"), &mut r, &mut leaves, &[0]);
    // The relay took its children's heartbeats; its own nests them.
    assert!(r.spool.join("state/heard/a.host").exists());
    let silent = p
        .cmd("rs-relay")
        .env("RS_NOW", day("10:55"))
        .args(["silent", "--for", "20m", "--json"])
        .run()
        .success()
        .json_lines();
    let names: Vec<&str> = silent
        .iter()
        .map(|v| v["component"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b.host"], "{silent:?}");
    assert_eq!(silent[0]["via"], "r.relay");
    // Nobody is silent for 2 hours.
    let none = p
        .cmd("rs-relay")
        .env("RS_NOW", day("10:55"))
        .args(["silent", "--for", "2h", "--json"])
        .run()
        .success()
        .json_lines();
    assert!(none.is_empty(), "{none:?}");
}

/// The journal lines about message `id` at `s`.
fn journal(s: &Site, id: &str) -> String {
    std::fs::read_dir(s.spool.join("acks/journal"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect::<String>()
        })
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(id))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn control_messages_do_what_they_say_are_answered_and_a_strangers_is_quarantined() {
    let holder = Site::component("x.holder");
    let pki = Pki::new(holder.root(), "ca");
    let server = pki.server();
    let p = provider(&holder);
    p.peer("a.host", "");
    serve_tls(&p, &server, &pki.ca, "");
    let srv = Serve::start(&p);
    let a = registering("a.host", "");
    let cert = pki.client("a.host");
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nroutes = [\"{}\"]",
            route(&srv.url, &pki.ca, Some(&cert))
        ),
    );
    flush(&a).success();
    assert!(state(&a).contains("registered "));
    let ctl = |args: &[&str]| {
        let mut v = vec!["control", "a.host"];
        v.extend(args);
        p.cmd("rs-relay")
            .args(v)
            .run()
            .success()
            .stdout
            .trim()
            .to_string()
    };
    // The control message comes with the first poll, its answer goes with
    // the next.
    let exchange = || {
        flush(&a).success();
        flush(&a).success();
    };
    let config = || std::fs::read_to_string(a.spool.join("config.toml")).unwrap();

    let ping = ctl(&["ping"]);
    exchange();
    assert!(
        journal(&p, &ping).contains("control a.host control-done pong from a.host"),
        "{}",
        journal(&p, &ping)
    );

    let set = ctl(&[
        "set-configuration",
        "--set",
        "throttle.max_messages_per_day=123",
    ]);
    exchange();
    assert!(
        config().contains("max_messages_per_day = 123"),
        "{}",
        config()
    );
    assert!(
        journal(&p, &set).contains("control-done 1 setting(s) written"),
        "{}",
        journal(&p, &set)
    );
    for bad in [
        "throttle.max_messages_per_day=\"lots\"",
        "throttle.no_such_limit=1",
        "peer.id=\"x\"",
    ] {
        let before = config();
        let id = ctl(&["set-configuration", "--set", bad]);
        exchange();
        assert_eq!(config(), before, "{bad} changed nothing");
        assert!(
            journal(&p, &id).contains("control-refused nothing changed"),
            "{bad}: {}",
            journal(&p, &id)
        );
    }

    let hold = ctl(&["hold"]);
    exchange();
    assert!(a.spool.join("state/hold").exists());
    a.send(&[], b"data while held");
    exchange();
    assert!(data(&p).is_empty(), "held: nothing forwarded");
    ctl(&["release"]);
    exchange();
    assert!(!a.spool.join("state/hold").exists());
    flush(&a).success();
    assert_eq!(data(&p), ["data while held"]);
    assert!(journal(&p, &hold).contains("control-done forwarding held"));

    let get = ctl(&["get-configuration"]);
    exchange();
    let copies: Vec<String> = p
        .received()
        .into_iter()
        .map(|(_, c)| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.contains("component = \"a.host\""))
        .collect();
    assert_eq!(copies.len(), 1, "the configuration came back");
    assert!(copies[0].contains("max_messages_per_day = 123"));
    assert!(journal(&p, &get).contains("configuration sent as message"));

    let dereg = ctl(&["deregister"]);
    exchange();
    assert!(config().contains("enabled = false"), "{}", config());
    assert!(!a.spool.join("state/registration").exists());
    assert!(journal(&p, &dereg).contains("deregistered"));

    // A control message from another peer than the upstream: quarantined
    // with the reason, nothing done.
    let z = Site::component("z.host");
    let stick = z.root().join("stick");
    std::fs::create_dir_all(&stick).unwrap();
    z.peer("a.host", &format!("routes = [\"dir:{}\"]", stick.display()));
    a.peer("z.host", "");
    z.cmd("rs-relay")
        .args(["control", "a.host", "hold"])
        .run()
        .success();
    z.cmd("rs-queue").args(["flush"]).run().success();
    let r = a.import_from(&stick).run();
    assert!(r.stderr.contains("only the upstream peer"), "{}", r.stderr);
    assert!(!a.spool.join("state/hold").exists(), "not obeyed");
    assert_eq!(
        a.files("quarantine").len(),
        1,
        "{:?}",
        a.files("quarantine")
    );
}

fn registration_id(s: &Site) -> String {
    state(s)
        .lines()
        .find_map(|l| l.strip_prefix("id ").map(str::to_string))
        .unwrap_or_default()
}

/// A returning component logs in with the ID it was issued (in its
/// heartbeats); a registrar that does not know it says so, and the
/// component registers again, only then. Two registrars with no shared
/// state issue different IDs.
#[test]
fn an_unknown_registration_is_refused_and_the_component_registers_again_when_told() {
    let holder = Site::component("x.holder");
    let pki = Pki::new(holder.root(), "ca");
    let server = pki.server();
    let mut ids = Vec::new();
    for registrar in ["p.hub", "q.hub"] {
        let p = Site::component(registrar);
        let defaults = holder.root().join("defaults.toml");
        std::fs::write(&defaults, DEFAULTS).unwrap();
        p.append_config(&format!(
            "[registrar]\nenabled = true\ndefaults = \"{}\"\n",
            defaults.display()
        ));
        p.peer("a.host", "");
        serve_tls(&p, &server, &pki.ca, "");
        let srv = Serve::start(&p);
        let mut a = registering("a.host", "heartbeat = \"10m\"\n");
        let cert = pki.client("a.host");
        a.peer(
            registrar,
            &format!(
                "upstream = true\nroutes = [\"{}\"]",
                route(&srv.url, &pki.ca, Some(&cert))
            ),
        );
        a.at(day("10:00"));
        flush(&a).success();
        let first = registration_id(&a);
        assert!(first.starts_with(&format!("{registrar}/")), "{}", state(&a));
        ids.push(first.clone());
        if registrar == "q.hub" {
            continue;
        }
        // Known: the heartbeats pass.
        a.at(day("10:11"));
        let r = flush(&a).success();
        assert!(!r.stderr.contains("registering again"), "{}", r.stderr);
        // The provider loses its record: the next heartbeat is refused,
        // the component says so and registers again, with a new ID.
        std::fs::remove_file(p.spool.join("state/registered/a.host")).unwrap();
        a.at(day("10:22"));
        let r = flush(&a).success();
        assert!(
            r.stderr
                .contains(&format!("does not know registration {first}"))
                && r.stderr.contains("registering again"),
            "{}",
            r.stderr
        );
        a.at(day("10:23"));
        flush(&a).success();
        let second = registration_id(&a);
        assert!(!second.is_empty() && second != first, "{}", state(&a));
        let on_record = std::fs::read_to_string(p.spool.join("state/registered/a.host")).unwrap();
        assert!(on_record.contains(&format!("id {second}")), "{on_record}");
    }
    assert_ne!(
        ids[0], ids[1],
        "two registrars, no shared state, different IDs"
    );
}

/// Heartbeats that cannot go (the medium is not there) do not pile up:
/// each supersedes the last one still queued.
#[test]
fn unsent_heartbeats_do_not_pile_up() {
    let mut a = registering("a.host", "heartbeat = \"10m\"\n");
    let missing = a.root().join("not-mounted");
    a.peer(
        "p.hub",
        &format!("upstream = true\nroutes = [\"dir:{}\"]", missing.display()),
    );
    a.send(&[], b"data 1");
    for at in [day("10:00"), day("10:20"), day("10:40"), day("11:00")] {
        a.at(at);
        flush(&a).code(75);
    }
    let subclasses: Vec<String> = a
        .list()
        .iter()
        .map(|m| m["subclass"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        subclasses.iter().filter(|s| *s == "heartbeat").count(),
        1,
        "{subclasses:?}"
    );
    assert_eq!(
        subclasses.iter().filter(|s| *s == "registration").count(),
        1,
        "{subclasses:?}"
    );
}
