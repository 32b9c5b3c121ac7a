//! Scale-out at the provider: several `rs-relay serve` instances, each
//! with a spool of its own, share their state in PostgreSQL and hand what
//! they receive to NATS JetStream (`[shared]`).

mod support;

use std::collections::{HashMap, HashSet};

use support::http::Serve;
use support::scale::{Nats, Postgres};
use support::Site;

/// The provider's configuration for the shared backend.
fn shared(pg: &Postgres, nats: Option<&Nats>) -> String {
    let mut s = format!(
        "\n[shared]\nbackend = \"postgres\"\npostgres = \"{}\"\n",
        pg.conn()
    );
    if let Some(n) = nats {
        s.push_str(&format!("nats = \"{}\"\n", n.url()));
    }
    s
}

/// `n` provider instances (`p.hub`), each with its own spool, on the
/// shared backend, knowing `sites` as peers that poll over plain HTTP.
fn provider(n: usize, sites: &[String], config: &str) -> Vec<Site> {
    (0..n)
        .map(|_| {
            let p = Site::component("p.hub");
            for s in sites {
                p.peer(
                    s,
                    "authentication = \"none\"\nack_timeout = \"2s\"\nretry_cap = \"4s\"",
                );
            }
            p.append_config(config);
            p
        })
        .collect()
}

/// A site whose upstream is the provider at `url`.
fn site(id: &str, url: &str) -> Site {
    let a = Site::component(id);
    a.peer(
        "p.hub",
        &format!(
            "upstream = true\nauthentication = \"none\"\nack_timeout = \"2s\"\nretry_cap = \"4s\"\nroutes = [\"{url}\"]"
        ),
    );
    a
}

fn ids_in_database(pg: &Postgres) -> HashSet<String> {
    pg.psql("rs", "SELECT key FROM rs_accepted WHERE kind = 0")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn db_init_makes_the_schema_and_the_stream_and_refuses_what_does_not_fit() {
    let pg = Postgres::start();
    let nats = Nats::start();
    let p = provider(1, &[], &shared(&pg, Some(&nats))).pop().unwrap();
    // Before init, an instance refuses the empty database with the remedy.
    let out = p.cmd("rs-relay").args(["db", "status"]).run().code(78);
    assert!(out.stderr.contains("rs-relay db init"), "{}", out.stderr);
    let out = p.cmd("rs-relay").args(["db", "migrate"]).run().code(78);
    assert!(out.stderr.contains("rs-relay db init"), "{}", out.stderr);
    let out = p.cmd("rs-relay").args(["db", "init"]).run().success();
    assert!(out.stdout.contains("0 -> 1"), "{}", out.stdout);
    // Again: nothing to do.
    let out = p.cmd("rs-relay").args(["db", "init"]).run().success();
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
    p.cmd("rs-relay").args(["db", "migrate"]).run().success();
    let s = p
        .cmd("rs-relay")
        .args(["--json", "db", "status"])
        .run()
        .success()
        .json();
    assert_eq!(s["schema"], 1);
    assert_eq!(s["accepted"], 0);
    // A database newer than this rs is refused.
    pg.psql("rs", "UPDATE rs_meta SET value = 99 WHERE key = 'schema'");
    let out = p.cmd("rs-relay").args(["db", "status"]).run().code(78);
    assert!(out.stderr.contains("upgrade"), "{}", out.stderr);
    pg.psql("rs", "UPDATE rs_meta SET value = 1 WHERE key = 'schema'");
    // The stream exists.
    assert!(nats.messages("RS").is_empty());
    // A password in the connection string is refused: it goes in a file.
    let bad = Site::component("p.hub");
    bad.append_config(
        "\n[shared]\nbackend = \"postgres\"\npostgres = \"host=127.0.0.1 password=secret\"\n",
    );
    let out = bad.cmd("rs-relay").args(["db", "status"]).run().code(78);
    assert!(out.stderr.contains("password_file"), "{}", out.stderr);
    // An unreachable database is a temporary failure.
    let gone = Site::component("p.hub");
    gone.append_config(&format!(
        "\n[shared]\nbackend = \"postgres\"\npostgres = \"host=127.0.0.1 port={} user=rs dbname=rs connect_timeout=2\"\n",
        support::free_port()
    ));
    let out = gone.cmd("rs-relay").args(["db", "status"]).run().code(75);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
}

#[test]
fn two_instances_share_duplicates_the_back_channel_and_acknowledgements() {
    let pg = Postgres::start();
    let nats = Nats::start();
    let sites = vec!["a.host".to_string(), "b.host".to_string()];
    let ps = provider(2, &sites, &shared(&pg, Some(&nats)));
    ps[0].cmd("rs-relay").args(["db", "init"]).run().success();
    let s1 = Serve::start(&ps[0]);
    let s2 = Serve::start(&ps[1]);
    // Two sites, each reaching the provider through another instance.
    let a = site("a.host", &s1.url);
    let b = site("b.host", &s2.url);
    // A message posted to instance 1 is published once and remembered in
    // the database.
    let mut sent = HashMap::new();
    for n in 0..5 {
        let body = format!("reading {n}");
        sent.insert(a.send(&[], body.as_bytes()), body);
    }
    a.cmd("rs-queue").args(["flush"]).run().success();
    assert_eq!(a.outbound_left(None), 0, "{:?}", a.list());
    let ids = ids_in_database(&pg);
    for id in sent.keys() {
        assert!(ids.contains(id), "{id} not in rs_accepted");
    }
    let js = nats.messages("RS");
    assert_eq!(js.len(), 5, "{js:?}");
    for (id, subject, payload) in &js {
        assert_eq!(subject, "rs.test.case");
        let body = sent
            .get(id)
            .unwrap_or_else(|| panic!("{id:?} not sent: {:?}", sent.keys()));
        assert!(
            String::from_utf8_lossy(payload).contains(body.as_str()),
            "{id}"
        );
    }
    // Nothing went into either instance's Maildir.
    assert!(ps[0].received().is_empty());
    // Back-channel: queued at instance 2, handed out by instance 1.
    let back: Vec<String> = (0..4)
        .map(|n| ps[1].send(&["--to", "a.host"], format!("order {n}").as_bytes()))
        .collect();
    // Instance 2 moves them to the database at its next request.
    b.cmd("rs-queue").args(["flush"]).run().success();
    a.cmd("rs-queue").args(["flush"]).run().success();
    let got: Vec<String> = a.received().into_iter().map(|(id, _)| id).collect();
    for id in &back {
        assert!(got.contains(id), "{id} not delivered: {got:?}");
    }
    assert_eq!(got.len(), 4, "{got:?}");
    // Kept until acknowledged: the next request carries the acks.
    let status = ps[0]
        .cmd("rs-relay")
        .args(["--json", "db", "status"])
        .run()
        .success()
        .json();
    assert_eq!(status["outbox"], 4, "{status}");
    a.cmd("rs-queue").args(["flush"]).run().success();
    b.cmd("rs-queue").args(["flush"]).run().success();
    let status = ps[0]
        .cmd("rs-relay")
        .args(["--json", "db", "status"])
        .run()
        .success()
        .json();
    assert_eq!(status["outbox"], 0, "{status}");
}
