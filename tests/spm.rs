//! `rs-spm` through the real binary: publish, withdraw, load, generate
//! (partitioned, every map type) and resolve (validity, backup order).

mod support;

use support::Site;

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
