//! `rs-spm` through the real binary: publish, withdraw, load, generate
//! (partitioned, every map type) and resolve (validity, backup order).

mod support;

use support::http::{serve_tls, Files, Pair, Pki, Serve};
use support::{free_port, Site};

const T0: &str = "2026-12-01T10:00:00Z";

fn provider() -> Site {
    let mut p = Site::component("p.hub");
    p.at(T0);
    p
}

fn spm(site: &Site, args: &[&str]) -> support::Run {
    site.cmd("rs-spm").args(args).run()
}

fn publish(site: &Site, service: &str, host: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "publish",
        "--json",
        "--service",
        service,
        "--version",
        "1.0",
        "--sphere",
        "provider.example",
        "--host",
        host,
    ];
    if !extra.iter().any(|a| *a == "--url" || *a == "--port") {
        args.extend(["--port", "8443"]);
    }
    args.extend(extra);
    spm(site, &args).success().json()
}

/// Generates the map (extra arguments for the client, type) into a file
/// beside the spool; returns its path.
fn generate(site: &Site, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let path = site.root().join(name);
    let mut args = vec!["generate", "--out", path.to_str().unwrap()];
    args.extend(extra);
    spm(site, &args).success();
    path
}

fn resolve(site: &Site, map: &std::path::Path, service: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["resolve", service, "--map", map.to_str().unwrap()];
    if !extra.contains(&"--client") {
        args.extend(["--client", "c.any"]);
    }
    args.extend(extra);
    let r = spm(site, &args);
    if r.code == Some(66) {
        return Vec::new();
    }
    r.success().stdout.lines().map(str::to_string).collect()
}

fn url(host: &str) -> String {
    format!("https://{host}:8443/rs")
}

#[test]
fn publish_generate_and_resolve_with_backups_epochs_and_withdrawal() {
    let p = provider();
    // The seed's example: service 1 on server 1, with server 3 then server
    // 2 as its backups; server 2 also offers services 2 and 3, server 3
    // service 4.
    assert_eq!(publish(&p, "svc1", "s1.provider.example", &[])["epoch"], 1);
    let two = publish(&p, "svc1", "s3.provider.example", &["--priority", "1"]);
    assert_eq!(two["epoch"], 2, "one server becomes two: {two}");
    publish(&p, "svc1", "s2.provider.example", &["--priority", "2"]);
    for s in ["svc2", "svc3"] {
        publish(&p, s, "s2.provider.example", &[]);
    }
    publish(&p, "svc4", "s3.provider.example", &[]);
    let map = generate(&p, "all.xml", &[]);
    assert_eq!(
        resolve(&p, &map, "svc1", &[]),
        [
            url("s1.provider.example"),
            url("s3.provider.example"),
            url("s2.provider.example")
        ]
    );
    // A stateless restart keeps the epoch; a restart that lost state does not.
    let again = publish(&p, "svc4", "s3.provider.example", &[]);
    assert_eq!(
        (again["epoch"].as_u64(), &again["epoch_changed"]),
        (Some(1), &serde_json::Value::Null)
    );
    let lost = publish(&p, "svc4", "s3.provider.example", &["--lost-state"]);
    assert_eq!(lost["epoch"], 2, "{lost}");
    let moved = publish(&p, "svc4", "s3.provider.example", &["--port", "9443"]);
    assert_eq!(moved["epoch"], 3, "{moved}");

    // Server 2 is heavily loaded: it keeps only what nobody else offers.
    spm(&p, &["load", "s2.provider.example"]).success();
    let map = generate(&p, "loaded.xml", &[]);
    assert_eq!(
        resolve(&p, &map, "svc1", &[]),
        [url("s1.provider.example"), url("s3.provider.example")]
    );
    assert_eq!(resolve(&p, &map, "svc2", &[]), [url("s2.provider.example")]);
    spm(&p, &["load", "s2.provider.example", "--clear"]).success();

    // Server 1 shuts down: everything of its own goes, the others stay;
    // publishing again restores it where it was, with the same epoch.
    let before = spm(&p, &["list", "--json"]).success().json_lines();
    let w = spm(&p, &["withdraw", "--json", "--host", "s1.provider.example"])
        .success()
        .json();
    assert_eq!(w["withdrawn"], 1);
    let map = generate(&p, "down.xml", &[]);
    assert_eq!(
        resolve(&p, &map, "svc1", &[]),
        [url("s3.provider.example"), url("s2.provider.example")]
    );
    assert_eq!(
        resolve(&p, &map, "svc4", &[]),
        ["https://s3.provider.example:9443/rs"]
    );
    let back = publish(&p, "svc1", "s1.provider.example", &[]);
    assert_eq!(
        back["epoch"], 3,
        "back where it was, the epoch its clients knew: {back}"
    );
    let map = generate(&p, "back.xml", &[]);
    assert_eq!(resolve(&p, &map, "svc1", &[]).len(), 3);
    let after = spm(&p, &["list", "--json"]).success().json_lines();
    assert_eq!(before.len(), after.len());
    assert!(after.iter().all(|e| e["state"] == "live"), "{after:?}");
}

#[test]
fn a_service_withdrawn_and_published_on_another_host_gets_a_new_epoch() {
    let p = provider();
    let epoch = |r: &serde_json::Value| (r["epoch"].as_u64(), r["epoch_changed"].is_string());
    let withdraw = |host: &str| {
        spm(&p, &["withdraw", "--host", host]).success();
    };
    assert_eq!(
        epoch(&publish(&p, "orders", "s1.provider.example", &[])),
        (Some(1), false)
    );
    // Its only host withdraws it; another host publishes it: clients hold
    // s1, so the epoch changes.
    withdraw("s1.provider.example");
    let moved = publish(&p, "orders", "s2.provider.example", &[]);
    assert_eq!(epoch(&moved), (Some(2), true), "{moved}");
    // A stateless restart at the same place keeps it.
    withdraw("s2.provider.example");
    let restart = publish(&p, "orders", "s2.provider.example", &[]);
    assert_eq!(epoch(&restart), (Some(2), false), "{restart}");
    // s1 back where it was, but its clients now hold s2 only: one server
    // becomes two.
    let back = publish(&p, "orders", "s1.provider.example", &[]);
    assert_eq!(epoch(&back), (Some(3), true), "{back}");
    // The map and the listing say the same epoch.
    let map = generate(&p, "orders.xml", &[]);
    let r = spm(
        &p,
        &[
            "resolve",
            "orders",
            "--json",
            "--client",
            "c.any",
            "--map",
            map.to_str().unwrap(),
        ],
    )
    .success()
    .json_lines();
    assert!(r.len() == 2 && r.iter().all(|l| l["epoch"] == 3), "{r:?}");
    let listed = spm(&p, &["list", "--json"]).success().json_lines();
    assert!(listed.iter().all(|l| l["epoch"] == 3), "{listed:?}");
}

#[test]
fn partitions_validity_and_every_map_type_resolve_alike() {
    let p = provider();
    publish(
        &p,
        "login",
        "even.provider.example",
        &["--clients", "02468"],
    );
    publish(&p, "login", "odd.provider.example", &["--clients", "13579"]);
    publish(&p, "monitor", "east.provider.example", &["--zone", "east"]);
    publish(&p, "monitor", "west.provider.example", &["--zone", "west"]);
    publish(
        &p,
        "orders",
        "create.provider.example",
        &["--function", "create"],
    );
    publish(
        &p,
        "orders",
        "query.provider.example",
        &["--function", "query"],
    );
    publish(&p, "reg", "r1.provider.example", &["--equivalent"]);
    publish(&p, "reg", "r2.provider.example", &["--equivalent"]);
    publish(&p, "reg", "r3.provider.example", &["--equivalent"]);
    // December on one server, January on another.
    publish(
        &p,
        "billing",
        "dec.provider.example",
        &[
            "--valid-from",
            "2026-12-01T00:00:00Z",
            "--valid-until",
            "2027-01-01T00:00:00Z",
        ],
    );
    publish(
        &p,
        "billing",
        "jan.provider.example",
        &[
            "--valid-from",
            "2027-01-01T00:00:00Z",
            "--valid-until",
            "2027-02-01T00:00:00Z",
        ],
    );

    // Partitioned by the provider for one client, or marked for clients
    // to apply: the same answer.
    let whole = generate(&p, "whole.xml", &[]);
    for (client, host) in [("site1.host4", "even"), ("site1.host7", "odd")] {
        let own = generate(&p, &format!("{client}.xml"), &["--client", client]);
        for map in [&whole, &own] {
            assert_eq!(
                resolve(&p, map, "login", &["--client", client]),
                [url(&format!("{host}.provider.example"))],
                "{client} {}",
                map.display()
            );
        }
        let own_map = std::fs::read_to_string(&own).unwrap();
        let other = if host == "even" { "odd" } else { "even" };
        assert!(!own_map.contains(other), "{own_map}");
    }
    let east = generate(&p, "east.xml", &["--zone", "east"]);
    assert_eq!(
        resolve(&p, &east, "monitor", &[]),
        [url("east.provider.example")]
    );
    assert_eq!(
        resolve(&p, &whole, "monitor", &["--zone", "west"]),
        [url("west.provider.example")]
    );
    assert_eq!(
        resolve(&p, &whole, "orders", &["--function", "query"]),
        [url("query.provider.example")]
    );
    // Equivalent servers: every client gets all three, not all in the
    // same order.
    let firsts: std::collections::BTreeSet<String> = (0..30)
        .map(|i| resolve(&p, &whole, "reg", &["--client", &format!("site{i}.gw")]))
        .inspect(|r| assert_eq!(r.len(), 3))
        .map(|r| r[0].clone())
        .collect();
    assert!(firsts.len() > 1, "{firsts:?}");
    // Validity: the entry of the month asked about, none outside both.
    for (at, expect) in [
        ("2026-12-15T00:00:00Z", vec![url("dec.provider.example")]),
        ("2027-01-15T00:00:00Z", vec![url("jan.provider.example")]),
        ("2027-03-01T00:00:00Z", vec![]),
    ] {
        assert_eq!(
            resolve(&p, &whole, "billing", &["--at", at]),
            expect,
            "{at}"
        );
    }
    let none = spm(
        &p,
        &[
            "resolve",
            "billing",
            "--map",
            whole.to_str().unwrap(),
            "--client",
            "c.any",
            "--at",
            "2027-03-01T00:00:00Z",
        ],
    )
    .code(66);
    assert!(
        none.stderr.contains("no location of service billing"),
        "{}",
        none.stderr
    );

    // Map types 2 to 4 resolve like type 1: one service, in one sphere.
    let one = provider();
    publish(&one, "inventory", "h1.provider.example", &[]);
    publish(
        &one,
        "inventory",
        "h2.provider.example",
        &["--priority", "1"],
    );
    let type1 = generate(&one, "t1.xml", &["--type", "1"]);
    let expected = resolve(&one, &type1, "inventory", &[]);
    assert_eq!(expected.len(), 2);
    for kind in ["2", "3", "4"] {
        let map = generate(&one, &format!("t{kind}.xml"), &["--type", kind]);
        let text = std::fs::read_to_string(&map).unwrap();
        assert!(text.contains(&format!("type=\"{kind}\"")), "{text}");
        assert_eq!(
            resolve(&one, &map, "inventory", &[]),
            expected,
            "type {kind}"
        );
    }
    // A type-2 map holds one service: refused for a registry with several.
    let r = spm(&p, &["generate", "--type", "2"]).code(65);
    assert!(r.stderr.contains("holds one service"), "{}", r.stderr);
}

#[test]
fn invalid_entries_and_hostile_maps_are_refused_naming_the_field() {
    let p = provider();
    for (args, says) in [
        (vec!["--version", "1"], "version \"1\""),
        (vec!["--version", "1.1.1"], "version \"1.1.1\""),
        (vec!["--service", "in/ventory"], "service \"in/ventory\""),
        (vec!["--sphere", "not a domain"], "sphere \"not a domain\""),
        (vec!["--clients", "even"], "clients \"even\""),
        (
            vec![
                "--valid-from",
                "2027-01-01T00:00:00Z",
                "--valid-until",
                "2026-01-01T00:00:00Z",
            ],
            "ends before it starts",
        ),
    ] {
        let mut a = vec![
            "publish",
            "--service",
            "inventory",
            "--version",
            "1.0",
            "--sphere",
            "provider.example",
            "--host",
            "h.provider.example",
            "--port",
            "443",
        ];
        // Later flags win: the bad value replaces the good one.
        for pair in args.chunks(2) {
            if let Some(i) = a.iter().position(|x| *x == pair[0]) {
                a[i + 1] = pair[1];
            } else {
                a.extend(pair);
            }
        }
        let r = spm(&p, &a).code(64);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    assert!(
        !p.spool.join("spm/registry.xml").exists(),
        "nothing was published"
    );

    let good = {
        publish(
            &p,
            "inventory",
            "h.provider.example",
            &["--data", "run: rm -rf /"],
        );
        std::fs::read_to_string(generate(&p, "good.xml", &[])).unwrap()
    };
    // The data is kept as text, never run.
    let json = spm(
        &p,
        &[
            "resolve",
            "inventory",
            "--json",
            "--client",
            "c.any",
            "--map",
            p.root().join("good.xml").to_str().unwrap(),
        ],
    )
    .success()
    .json();
    assert_eq!(json["data"], "run: rm -rf /");
    let hostile = [
        (
            format!("<!DOCTYPE m [<!ENTITY x \"{}\">]>{good}", "x".repeat(100)),
            "DOCTYPE",
        ),
        (
            good.replace("<entry ", &format!("{}<entry ", "<a>".repeat(100))),
            "depth",
        ),
        (format!("{good}{}", " ".repeat(5 << 20)), "bytes of a map"),
        (good.replace("epoch=\"1\"", "epoch=\"-1\""), "epoch"),
        (good.replace("<data>", "<data>&xxe;"), "entity"),
    ];
    for (i, (text, says)) in hostile.iter().enumerate() {
        let f = p.root().join(format!("hostile{i}.xml"));
        std::fs::write(&f, text).unwrap();
        let r = spm(
            &p,
            &[
                "resolve",
                "inventory",
                "--client",
                "c.any",
                "--map",
                f.to_str().unwrap(),
            ],
        )
        .code(65);
        assert!(
            r.stderr.contains(says) && r.stderr.contains(f.to_str().unwrap()),
            "{says}: {}",
            r.stderr
        );
    }
}

/// A client site `c.site` whose map comes from `source` (a URL with its
/// parameters).
fn client(source: &str) -> Site {
    let c = Site::component("c.site");
    c.append_config(&format!("[spm]\nmap_url = \"{source}\"\n"));
    c
}

fn fetch(site: &Site, extra: &[&str]) -> support::Run {
    let mut a = vec!["fetch", "--json"];
    a.extend(extra);
    spm(site, &a)
}

/// What `c` resolves `service` to from its own map, and what it said on
/// stderr.
fn resolve_held(c: &Site, service: &str) -> (Vec<String>, String) {
    let r = spm(c, &["resolve", service]).success();
    (r.stdout.lines().map(str::to_string).collect(), r.stderr)
}

#[test]
fn fetch_without_a_map_source_is_a_configuration_problem() {
    let c = Site::component("c.site");
    let r = fetch(&c, &[]);
    assert_eq!(r.code, Some(78), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("config.toml: no map source: set [spm] map_url there, or give --from URL"),
        "{}",
        r.stderr
    );
}

#[test]
fn fetch_keeps_the_last_good_map_and_says_when_it_is_stale() {
    let p = provider();
    let pki = Pki::new(p.root(), "ca");
    let web_dir = p.root().join("web");
    let web = Files::start(&web_dir, &pki.server(), "");
    let source = format!("{}/map.xml?ca={}", web.base, pki.ca.display());
    let c = client(&source);

    publish(&p, "inventory", "h1.provider.example", &[]);
    let first = generate(&p, "first.xml", &[]);
    std::fs::copy(&first, web.www.join("map.xml")).unwrap();
    let got = fetch(&c, &[]).success().json();
    let r1 = got["revision"].as_u64().unwrap();
    assert_eq!(
        (got["entries"].as_u64(), got["changed"].as_bool()),
        (Some(1), Some(true))
    );
    let (urls, said) = resolve_held(&c, "inventory");
    assert_eq!(urls, [url("h1.provider.example")]);
    assert!(!said.contains("stale"), "{said}");

    publish(&p, "inventory", "h2.provider.example", &[]);
    let second = generate(&p, "second.xml", &[]);
    std::fs::copy(&second, web.www.join("map.xml")).unwrap();
    let got = fetch(&c, &[]).success().json();
    assert!(got["revision"].as_u64().unwrap() > r1, "{got}");
    assert_eq!(got["previous"].as_u64(), Some(r1));
    let both = [url("h1.provider.example"), url("h2.provider.example")];
    assert_eq!(resolve_held(&c, "inventory").0, both);
    let held = std::fs::read(c.spool.join("spm/map.xml")).unwrap();

    // What the source serves from now on is refused whole, and the map
    // held stays as it was: an older revision (a replay), a map with a
    // DTD, one over the size limit, one with an invalid entry.
    let hostile: Vec<(Vec<u8>, &str)> = vec![
        (std::fs::read(&first).unwrap(), "older than the revision"),
        (
            b"<!DOCTYPE m [<!ENTITY a \"b\">]><service-map format=\"1\" revision=\"99\"/>".to_vec(),
            "DTD",
        ),
        (vec![b'x'; 5 << 20], "over the limit"),
        (
            format!(
                "<service-map format=\"1\" revision=\"99\">{}{}</service-map>",
                "<entry>".repeat(200),
                "</entry>".repeat(200)
            )
            .into_bytes(),
            "nesting depth",
        ),
        (
            std::fs::read_to_string(&second)
                .unwrap()
                .replace(
                    "</entry>",
                    "<data>$(touch /tmp/rs-pwned)\u{1b}]0;x\u{7}</data></entry>",
                )
                .replace(
                    &format!("revision=\"{}\"", got["revision"]),
                    "revision=\"99\"",
                )
                .into_bytes(),
            "control characters",
        ),
        (
            std::fs::read_to_string(&second)
                .unwrap()
                .replace(
                    "<entry service=\"inventory\" version=\"1.0\"",
                    "<entry service=\"inventory\" version=\"1.0.0\"",
                )
                .replace(
                    &format!("revision=\"{}\"", got["revision"]),
                    "revision=\"99\"",
                )
                .into_bytes(),
            "version \"1.0.0\"",
        ),
    ];
    for (bytes, says) in hostile {
        std::fs::write(web.www.join("map.xml"), &bytes).unwrap();
        let r = fetch(&c, &[]).code(65);
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
        assert!(r.stderr.contains("stays in use"), "{}", r.stderr);
        assert_eq!(std::fs::read(c.spool.join("spm/map.xml")).unwrap(), held);
        let (urls, said) = resolve_held(&c, "inventory");
        assert_eq!(urls, both);
        assert!(said.contains("stale") && said.contains(says), "{said}");
    }

    // The source goes away: exit 75, the map held still answers, stale.
    drop(web);
    let r = fetch(&c, &[]).code(75);
    assert!(
        r.stderr.contains("map.xml") && r.stderr.contains("stays in use, stale"),
        "{}",
        r.stderr
    );
    let (urls, said) = resolve_held(&c, "inventory");
    assert_eq!(urls, both);
    assert!(said.contains("is stale: the last fetch from"), "{said}");

    // Another source, named for once; an older map only when asked.
    let from = format!("file://{}", first.display());
    fetch(&c, &["--from", &from]).code(65);
    let got = fetch(&c, &["--from", &from, "--accept-older"])
        .success()
        .json();
    assert_eq!(got["revision"].as_u64(), Some(r1));
    assert_eq!(
        resolve_held(&c, "inventory").0,
        [url("h1.provider.example")]
    );
    fetch(&c, &["--from", "ftp://x/map.xml"]).code(64);
}

/// The provider's servers for service `inventory`: sites with component
/// `p.hub` serving HTTPS, with the client `c.site` as a peer.
fn hub(pki: &Pki, server: &Pair, extra: &str) -> Site {
    let h = Site::component("p.hub");
    h.peer("c.site", "ack_timeout = \"1h\"");
    serve_tls(&h, server, &pki.ca, "");
    h.append_config(extra);
    h
}

/// `c` reaches `p.hub` through the map's service `inventory`.
fn c_uses_the_map(c: &Site, pki: &Pki, cert: &Pair) {
    c.peer(
        "p.hub",
        &format!(
            "upstream = true\nack_timeout = \"1h\"\nroutes = [\"spm:inventory?ca={}&cert={}&key={}&timeout=10s\"]",
            pki.ca.display(),
            cert.cert.display(),
            cert.key.display()
        ),
    );
}

fn flush(c: &Site) -> support::Run {
    c.cmd("rs-queue").args(["flush"]).run()
}

#[test]
fn an_spm_route_fails_over_in_order_then_fetches_the_map_once_then_defers() {
    let p = provider();
    let pki = Pki::new(p.root(), "ca");
    let server = pki.server();
    let web = Files::start(&p.root().join("web"), &server, "");
    let c = client(&format!("{}/map.xml?ca={}", web.base, pki.ca.display()));
    let cert = pki.client("c.site");
    c_uses_the_map(&c, &pki, &cert);

    // The primary is down (nothing listens on its port); the backup runs.
    let dead = format!("https://127.0.0.1:{}/rs", free_port());
    let b = hub(&pki, &server, "");
    let mut b_srv = Serve::start(&b);
    // Executable-looking service data travels as text, and nothing runs it.
    let pwned = c.root().join("pwned");
    let data = format!("$(touch {0}) `touch {0}`; touch {0}", pwned.display());
    publish(
        &p,
        "inventory",
        "a.provider.example",
        &["--url", &dead, "--data", &data],
    );
    publish(
        &p,
        "inventory",
        "b.provider.example",
        &["--url", &b_srv.url, "--priority", "1"],
    );
    generate(&p, "web/www/map.xml", &[]);
    fetch(&c, &[]).success();

    let one = c.send(&[], b"one");
    let r = flush(&c).success();
    assert!(
        r.stderr
            .contains(&format!("{} answered (location 2 of 2) after", b_srv.url)),
        "{}",
        r.stderr
    );
    assert_eq!(
        b.received().iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
        [one]
    );
    assert!(c.list().is_empty(), "acknowledged in the reply");
    let json = spm(&c, &["resolve", "inventory", "--json"])
        .success()
        .json_lines();
    assert_eq!(json[0]["data"].as_str(), Some(data.as_str()));
    assert!(!pwned.exists(), "service data was run");

    // The service moves to a third server; the client's map does not know
    // yet. Both old locations fail: the map is fetched again, once, and
    // its new location answers.
    let third = hub(&pki, &server, "");
    let third_srv = Serve::start(&third);
    spm(&p, &["withdraw", "--host", "a.provider.example"]).success();
    spm(&p, &["withdraw", "--host", "b.provider.example"]).success();
    publish(
        &p,
        "inventory",
        "c.provider.example",
        &["--url", &third_srv.url],
    );
    generate(&p, "web/www/map.xml", &[]);
    b_srv.kill();
    let two = c.send(&[], b"two");
    let r = flush(&c).success();
    assert_eq!(
        r.stderr
            .matches("map fetched again (every location failed)")
            .count(),
        1,
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("{} answered", third_srv.url)),
        "{}",
        r.stderr
    );
    assert_eq!(
        third
            .received()
            .iter()
            .map(|m| m.0.clone())
            .collect::<Vec<_>>(),
        [two]
    );

    // Every location down and the map unchanged: fetched once, then the
    // run defers (exit 75) and the message waits.
    drop(third_srv);
    let three = c.send(&[], b"three");
    let r = flush(&c).code(75);
    assert_eq!(
        r.stderr.matches("map fetched again").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("no location answered"), "{}", r.stderr);
    assert_eq!(c.listed_ids(), [three]);
}

#[test]
fn an_epoch_mismatch_renews_the_map_and_sends_once_more_never_in_a_loop() {
    let ca_site = provider();
    let pki = Pki::new(ca_site.root(), "ca");
    let server = pki.server();
    // The server is the provider's registry too: it knows its service's
    // epoch from what was published.
    let h = hub(
        &pki,
        &server,
        "[spm]\nserves = { service = \"inventory\", version = \"1.0\", sphere = \"provider.example\" }\n",
    );
    let srv = Serve::start(&h);
    let web = Files::start(&h.root().join("web"), &server, "");
    let c = client(&format!("{}/map.xml?ca={}", web.base, pki.ca.display()));
    let cert = pki.client("c.site");
    c_uses_the_map(&c, &pki, &cert);
    let map = h.root().join("web/www/map.xml");
    let generate_into = |path: &std::path::Path| {
        spm(&h, &["generate", "--out", path.to_str().unwrap()]).success();
    };
    assert_eq!(
        publish(&h, "inventory", "a.provider.example", &["--url", &srv.url])["epoch"],
        1
    );
    generate_into(&map);
    fetch(&c, &[]).success();

    // One server becomes two: epoch 2. The client's map still says 1.
    let dead = format!("https://127.0.0.1:{}/rs", free_port());
    let two = publish(
        &h,
        "inventory",
        "b.provider.example",
        &["--url", &dead, "--priority", "1"],
    );
    assert_eq!(two["epoch"], 2);
    generate_into(&map);
    let one = c.send(&[], b"one");
    let r = flush(&c).success();
    assert_eq!(
        r.stderr
            .matches("map fetched again (the service answered epoch-mismatch)")
            .count(),
        1,
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("refused for an outdated map epoch: sending again after a fresh map"),
        "{}",
        r.stderr
    );
    assert_eq!(
        h.received().iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&one)
    );
    assert!(c.list().is_empty());
    let journal: String = std::fs::read_dir(c.spool.join("acks/journal"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        journal.contains(&format!("{one} epoch-mismatch p.hub")),
        "{journal}"
    );

    // The service restarts and loses its clients' state (epoch 3), but the
    // map served is not regenerated: the fresh map disagrees too. Sent
    // again once, refused again, then it waits: no loop.
    publish(
        &h,
        "inventory",
        "a.provider.example",
        &["--url", &srv.url, "--lost-state"],
    );
    let two = c.send(&[], b"two");
    let r = flush(&c).code(75);
    assert_eq!(
        r.stderr
            .matches("refused for an outdated epoch again")
            .count(),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(c.listed_ids(), std::slice::from_ref(&two));
    assert_eq!(h.received().len(), 1);
    // Once the map is right, it goes.
    generate_into(&map);
    c.cmd("rs-queue").args(["flush", "--force"]).run().success();
    assert!(c.list().is_empty());
    let got: Vec<String> = h.received().iter().map(|m| m.0.clone()).collect();
    assert_eq!(got.len(), 2);
    assert!(got.contains(&two));
}

/// knotd serving one zone file on 127.0.0.1; killed on drop.
struct Knot {
    child: std::process::Child,
    port: u16,
}

impl Knot {
    fn start(dir: &std::path::Path, zone: &str, file: &std::path::Path) -> Knot {
        assert!(
            std::path::Path::new("/usr/sbin/knotd").exists(),
            "/usr/sbin/knotd is missing: run scripts/setup.sh (the map export test needs Debian's knot and knot-dnsutils)"
        );
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let port = free_port();
        let conf = dir.join("knot.conf");
        std::fs::write(
            &conf,
            format!(
                "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}/db\nzone:\n  - domain: {zone}\n    file: {f}\n",
                d = dir.display(),
                f = file.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("/usr/sbin/knotd")
            .arg("-c")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("knot.log")).unwrap())
            .spawn()
            .expect("knotd");
        let k = Knot { child, port };
        let start = std::time::Instant::now();
        while k.dig("SOA", zone).is_empty() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "knotd did not serve {zone}: {}",
                std::fs::read_to_string(dir.join("knot.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        k
    }

    /// `kdig +short` over TCP, with a time limit.
    fn dig(&self, kind: &str, name: &str) -> Vec<String> {
        let out = std::process::Command::new("kdig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+tcp",
                "+short",
                "+time=2",
                "+retry=0",
                kind,
                name,
            ])
            .output()
            .expect("kdig (knot-dnsutils)");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_exported_zone_served_by_knot_matches_resolve() {
    let p = provider();
    publish(
        &p,
        "inventory",
        "s1.provider.example",
        &["--address", "192.0.2.1"],
    );
    publish(
        &p,
        "inventory",
        "s3.provider.example",
        &[
            "--url",
            "https://s3.provider.example/rsx",
            "--priority",
            "1",
        ],
    );
    publish(
        &p,
        "inventory",
        "s2.example.net",
        &["--port", "9443", "--priority", "2"],
    );
    // Not valid now: in neither the zone nor resolve.
    publish(
        &p,
        "inventory",
        "later.provider.example",
        &["--priority", "3", "--valid-from", "2027-06-01T00:00:00Z"],
    );
    for host in ["10.0.0.4", "10.0.0.5"] {
        publish(
            &p,
            "stats",
            &format!("s{}.provider.example", &host[7..]),
            &["--url", &format!("https://{host}:8443/s"), "--equivalent"],
        );
    }
    let zone = export(&p, &[]);
    let knot = Knot::start(&p.root().join("knot"), "provider.example", &zone);
    assert_eq!(knot.dig("A", "ns.provider.example"), ["192.0.2.53"]);

    let map = generate(&p, "map.xml", &[]);
    let resolved = spm(
        &p,
        &[
            "resolve",
            "inventory",
            "--json",
            "--client",
            "c.any",
            "--map",
            map.to_str().unwrap(),
        ],
    )
    .success()
    .json_lines();
    assert_eq!(resolved.len(), 3);
    let owner = "_inventory._tcp.v1-0.provider.example";
    let mut srv = knot.dig("SRV", owner);
    srv.sort_by_key(|l| l.split(' ').next().unwrap().parse::<u32>().unwrap());
    let mut txt = knot.dig("TXT", owner);
    txt.sort_by_key(|l| {
        l.split("\"priority=")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    });
    assert_eq!(srv.len(), 3, "{srv:?}");
    for (i, r) in resolved.iter().enumerate() {
        let url = url::Url::parse(r["url"].as_str().unwrap()).unwrap();
        let host = url.host_str().unwrap();
        let port = url.port_or_known_default().unwrap();
        assert_eq!(srv[i], format!("{i} 0 {port} {host}."), "{srv:?} vs {r}");
        assert!(
            txt[i].contains(&format!("\"epoch={}\"", r["epoch"]))
                && txt[i].contains(&format!("\"target={host}\""))
                && txt[i].contains(&format!("\"path={}\"", url.path())),
            "{txt:?} vs {r}"
        );
    }
    assert_eq!(knot.dig("A", "s1.provider.example"), ["192.0.2.1"]);
    // Equivalent servers: one priority, equal weights, an address each.
    let stats = knot.dig("SRV", "_stats._tcp.v1-0.provider.example");
    assert_eq!(stats.len(), 2, "{stats:?}");
    assert!(
        stats.iter().all(|l| l.starts_with("0 1 8443 l")),
        "{stats:?}"
    );
    let mut addresses: Vec<String> = stats
        .iter()
        .flat_map(|l| knot.dig("A", l.rsplit(' ').next().unwrap()))
        .collect();
    addresses.sort();
    assert_eq!(addresses, ["10.0.0.4", "10.0.0.5"]);
    // A zone the services are not in is refused, naming the spheres.
    let r = spm(
        &p,
        &[
            "export",
            "--zone",
            "elsewhere.example",
            "--ns-address",
            "192.0.2.53",
        ],
    )
    .code(65);
    assert!(r.stderr.contains("provider.example"), "{}", r.stderr);
    spm(&p, &["export", "--zone", "not a zone"]).code(64);
}

/// Exports the provider's map as zone provider.example (default name
/// server ns.provider.example at 192.0.2.53, unless `extra` names one)
/// into a file beside the spool; returns its path.
fn export(p: &Site, extra: &[&str]) -> std::path::PathBuf {
    let zone = p.root().join("provider.example.zone");
    let mut args = vec![
        "export",
        "--zone",
        "provider.example",
        "--out",
        zone.to_str().unwrap(),
    ];
    if !extra.contains(&"--ns") {
        args.extend(["--ns-address", "192.0.2.53"]);
    }
    args.extend(extra);
    spm(p, &args).success();
    zone
}

/// `named-checkzone` (BIND) on a zone file, with its default checks:
/// whether it loads, and what it said.
fn bind_checks(zone: &str, file: &std::path::Path) -> (bool, String) {
    assert!(
        std::path::Path::new("/usr/bin/named-checkzone").exists(),
        "/usr/bin/named-checkzone is missing: run scripts/setup.sh (the map export test needs Debian's bind9-utils)"
    );
    let out = std::process::Command::new("/usr/bin/named-checkzone")
        .arg(zone)
        .arg(file)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("named-checkzone");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_exported_zone_loads_in_bind_as_the_readme_says() {
    let p = provider();
    // A host in the zone with its address, and locations known only by an
    // address (IPv4 and IPv6), for an ordinary and an equivalent entry.
    publish(
        &p,
        "inventory",
        "s1.provider.example",
        &["--address", "192.0.2.1"],
    );
    publish(
        &p,
        "inventory",
        "s2.provider.example",
        &["--url", "https://192.0.2.2:8443/rs", "--priority", "1"],
    );
    for (host, url) in [
        ("s4.provider.example", "https://10.0.0.4:8443/s"),
        ("s5.provider.example", "https://[2001:db8::5]:8443/s"),
    ] {
        publish(&p, "stats", host, &["--url", url, "--equivalent"]);
    }
    // The default name server, given its address.
    let zone = export(&p, &[]);
    let text = std::fs::read_to_string(&zone).unwrap();
    let (loads, said) = bind_checks("provider.example", &zone);
    assert!(loads, "BIND refuses the zone:\n{said}\n{text}");
    // Nothing to warn about either: every name is a host name, the name
    // server has its address.
    assert_eq!(
        said.lines()
            .filter(|l| !l.contains("loaded serial") && *l != "OK")
            .count(),
        0,
        "{said}\n{text}"
    );
    // knot serves the same file, with the names the README gives.
    let knot = Knot::start(&p.root().join("knot"), "provider.example", &zone);
    assert_eq!(
        knot.dig("SRV", "_inventory._tcp.v1-0.provider.example")
            .len(),
        2
    );
    assert_eq!(
        knot.dig("A", "l1.inventory.v1-0.provider.example"),
        ["192.0.2.2"]
    );
    let mut stats: Vec<String> = ["A", "AAAA"]
        .iter()
        .flat_map(|k| {
            ["l1", "l2"]
                .iter()
                .flat_map(|l| knot.dig(k, &format!("{l}.stats.v1-0.provider.example")))
                .collect::<Vec<_>>()
        })
        .collect();
    stats.sort();
    assert_eq!(stats, ["10.0.0.4", "2001:db8::5"]);
    drop(knot);

    // A name server outside the zone needs no address there, and loads.
    let outside = export(&p, &["--ns", "ns1.example.net"]);
    let (loads, said) = bind_checks("provider.example", &outside);
    assert!(loads, "{said}");
    // An in-zone name server without an address is refused before
    // anything is written, naming the remedy; an address for one outside
    // the zone is refused too.
    let r = spm(&p, &["export", "--zone", "provider.example"]).code(64);
    assert!(
        r.stderr.contains("ns.provider.example") && r.stderr.contains("--ns-address"),
        "{}",
        r.stderr
    );
    let r = spm(
        &p,
        &[
            "export",
            "--zone",
            "provider.example",
            "--ns",
            "ns1.example.net",
            "--ns-address",
            "192.0.2.53",
        ],
    )
    .code(64);
    assert!(
        r.stderr.contains("outside zone provider.example"),
        "{}",
        r.stderr
    );
    spm(
        &p,
        &[
            "export",
            "--zone",
            "provider.example",
            "--ns-address",
            "not-an-ip",
        ],
    )
    .code(64);
}

#[test]
fn the_map_nesting_limit_is_the_one_the_spool_readme_states() {
    let p = provider();
    publish(&p, "inventory", "h.provider.example", &[]);
    let good = std::fs::read_to_string(generate(&p, "good.xml", &[])).unwrap();
    // What spool/README.md says of the map files: "at most N levels deep".
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("spool/README.md"),
    )
    .unwrap();
    let section = &readme[readme.find("## Service point map").unwrap()..];
    let stated: usize = section
        .split("levels deep")
        .next()
        .and_then(|before| before.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .expect("spool/README.md states how deep a map nests");
    // The map nests <service-map>, <entry>, then elements a reader ignores.
    let nested = |levels: usize| {
        let f = p.root().join(format!("nested{levels}.xml"));
        let inner = levels - 2;
        std::fs::write(
            &f,
            good.replacen(
                "<location ",
                &format!("{}{}<location ", "<x>".repeat(inner), "</x>".repeat(inner)),
                1,
            ),
        )
        .unwrap();
        spm(
            &p,
            &[
                "resolve",
                "inventory",
                "--client",
                "c.any",
                "--map",
                f.to_str().unwrap(),
            ],
        )
    };
    nested(stated).success();
    let r = nested(stated + 1).code(65);
    assert!(
        r.stderr.contains("nesting depth") && r.stderr.contains(&format!("limit of {stated}")),
        "spool/README.md says {stated} levels: {}",
        r.stderr
    );
}

#[test]
fn a_map_older_than_its_refresh_interval_is_fetched_before_use() {
    let p = provider();
    let pki = Pki::new(p.root(), "ca");
    let server = pki.server();
    let web = Files::start(&p.root().join("web"), &server, "");
    let mut c = client(&format!("{}/map.xml?ca={}", web.base, pki.ca.display()));
    c.append_config("refresh = \"1h\"\n");
    let cert = pki.client("c.site");
    c_uses_the_map(&c, &pki, &cert);
    let old = hub(&pki, &server, "");
    let old_srv = Serve::start(&old);
    let new = hub(&pki, &server, "");
    let new_srv = Serve::start(&new);
    publish(
        &p,
        "inventory",
        "old.provider.example",
        &["--url", &old_srv.url],
    );
    generate(&p, "web/www/map.xml", &[]);
    c.at("2026-12-01T10:00:00Z");
    fetch(&c, &[]).success();

    // The service moves; the site's map is younger than an hour: the old
    // place (still answering) gets the message.
    spm(&p, &["withdraw", "--host", "old.provider.example"]).success();
    publish(
        &p,
        "inventory",
        "new.provider.example",
        &["--url", &new_srv.url],
    );
    generate(&p, "web/www/map.xml", &[]);
    c.at("2026-12-01T10:30:00Z");
    c.send(&[], b"early");
    let r = flush(&c).success();
    assert!(!r.stderr.contains("map fetched again"), "{}", r.stderr);
    assert_eq!(old.received().len(), 1);

    // Two hours on, the map is fetched before the route is used.
    c.at("2026-12-01T12:00:00Z");
    c.send(&[], b"late");
    let r = flush(&c).success();
    assert!(
        r.stderr.contains("map fetched again (due for refresh)"),
        "{}",
        r.stderr
    );
    assert_eq!(new.received().len(), 1);
    assert_eq!(old.received().len(), 1);
}
