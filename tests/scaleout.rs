//! Scale-out at the provider: several `rs-relay serve` instances, each
//! with a spool of its own, share their state in PostgreSQL and hand what
//! they receive to NATS JetStream (`[shared]`).

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use support::http::{route, Nginx, Pki, Serve};
use support::scale::{Balancer, Nats, Postgres};
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
    // rs-queue stats reports from the shared database too.
    let stats = ps[1]
        .cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(stats["shared"]["backend"], "postgres", "{stats}");
    assert_eq!(stats["shared"]["accepted"], 5, "{stats}");
    assert_eq!(stats["shared"]["outbox"], 0, "{stats}");
    let text = ps[1].cmd("rs-queue").args(["stats"]).run().success().stdout;
    assert!(text.contains("5 accepted IDs"), "{text}");
    // Pruning forgets an ID only after its keep-until time (30 days here),
    // and the horizon then refuses what it can no longer prove new.
    let pruned = ps[0]
        .cmd("rs-relay")
        .args(["--json", "db", "prune"])
        .run()
        .success()
        .json();
    assert_eq!(pruned["forgotten"], 0, "{pruned}");
    let pruned = ps[0]
        .cmd("rs-relay")
        .env("RS_NOW", "2027-03-01T00:00:00Z")
        .args(["--json", "db", "prune"])
        .run()
        .success()
        .json();
    assert_eq!(pruned["forgotten"], 5, "{pruned}");
    assert!(
        pruned["horizon"].as_str().unwrap().starts_with("2026-"),
        "{pruned}"
    );
    assert_eq!(pg.psql("rs", "SELECT count(*) FROM rs_accepted"), "0");
}

#[test]
fn the_throttle_counts_what_every_instance_sent_and_a_publish_never_committed_is_not_repeated() {
    let pg = Postgres::start();
    let nats = Nats::start();
    let sites = vec!["a.host".to_string()];
    let ps = provider(2, &sites, &shared(&pg, Some(&nats)));
    for p in &ps {
        p.cmd("rs-queue")
            .args(["throttle", "--max-messages-per-hour", "3"])
            .run()
            .success();
    }
    ps[0].cmd("rs-relay").args(["db", "init"]).run().success();
    // The instances' clocks pinned mid-hour: the hour's count stays one.
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:30:00Z"])
        .output()
        .expect("date");
    let now = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let s1 = Serve::start_later(&ps[0], 0, &now);
    let s2 = Serve::start_later(&ps[1], 0, &now);
    let a = site("a.host", &s1.url);

    // An instance killed after publishing a message and before its batch
    // committed leaves a record of the publish: the message sent again is
    // accepted, and not published a second time (whatever JetStream's
    // duplicate window).
    let first = a.send(&[], b"published before");
    pg.psql(
        "rs",
        &format!(
            "INSERT INTO rs_published VALUES ('{first}', 'rs.test.case', 1, 0, 9000000000000000000)"
        ),
    );
    let second = a.send(&[], b"published now");
    a.cmd("rs-queue").args(["flush"]).run().success();
    assert_eq!(a.outbound_left(None), 0, "{:?}", a.list());
    let ids = ids_in_database(&pg);
    assert!(ids.contains(&first) && ids.contains(&second), "{ids:?}");
    let js: Vec<String> = nats.messages("RS").into_iter().map(|m| m.0).collect();
    assert_eq!(js, vec![second.clone()], "only the second is published");
    assert_eq!(
        pg.psql("rs", "SELECT count(*) FROM rs_published"),
        "0",
        "accepted: the records of the publishes go with the commit"
    );

    // Five back-channel messages, three queued at instance 1 and two at
    // instance 2, under a throttle of three an hour: the site polls one
    // instance, then the other, then the first again, and three come in
    // all (each instance alone would have handed out all it holds).
    for n in 0..5 {
        ps[n % 2].send(&["--to", "a.host"], format!("order {n}").as_bytes());
    }
    let config = a.spool.join("config.toml");
    let route = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace(from, to)).unwrap();
    };
    a.cmd("rs-queue").args(["flush", "--force"]).run().success();
    assert_eq!(a.received().len(), 3, "instance 1 hands out its three");
    route(&s1.url, &s2.url);
    let out = a.cmd("rs-queue").args(["flush", "--force"]).run().success();
    assert_eq!(
        a.received().len(),
        3,
        "instance 2 counts what instance 1 sent: {}",
        out.stderr
    );
    route(&s2.url, &s1.url);
    a.cmd("rs-queue").args(["flush", "--force"]).run().success();
    assert_eq!(a.received().len(), 3);
    assert_eq!(pg.psql("rs", "SELECT hour_messages FROM rs_throttle"), "3");
    assert_eq!(pg.psql("rs", "SELECT count(*) FROM rs_outbox"), "2");
}

/// `rs-relay cgi` behind nginx and `rs-relay serve` are instances of the
/// same provider: a site posting through the CGI is remembered and
/// published once, and polls the back-channel queued at the server.
#[test]
fn a_cgi_instance_shares_the_database_with_a_server() {
    let pg = Postgres::start();
    let nats = Nats::start();
    let sites = vec!["a.host".to_string(), "b.host".to_string()];
    let ps = provider(2, &sites, &shared(&pg, Some(&nats)));
    ps[0].cmd("rs-relay").args(["db", "init"]).run().success();
    let srv = Serve::start(&ps[0]);
    let pki = Pki::new(ps[1].root(), "ca");
    let web = Nginx::start(&ps[1].root().join("nginx"), &ps[1], &pki.server(), &pki.ca);
    let a = site("a.host", &route(&web.url, &pki.ca, None));
    let mine: HashSet<String> = (0..3)
        .map(|n| a.send(&[], format!("reading {n}").as_bytes()))
        .collect();
    let back: HashSet<String> = (0..2)
        .map(|n| ps[0].send(&["--to", "a.host"], format!("order {n}").as_bytes()))
        .collect();
    // The server moves what it queued into the database at its next
    // request; then the CGI hands it out.
    let b = site("b.host", &srv.url);
    b.cmd("rs-queue").args(["flush"]).run().success();
    a.cmd("rs-queue").args(["flush"]).run().success();
    assert_eq!(a.outbound_left(None), 0, "{:?}", a.list());
    assert_eq!(ids_in_database(&pg), mine);
    let js: HashSet<String> = nats.messages("RS").into_iter().map(|m| m.0).collect();
    assert_eq!(js, mine);
    let got: HashSet<String> = a.received().into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, back);
    // The acknowledgements go with the next request, through the CGI.
    a.cmd("rs-queue").args(["flush"]).run().success();
    assert_eq!(pg.psql("rs", "SELECT count(*) FROM rs_outbox"), "0");
    assert!(ps[1].received().is_empty() && ps[1].files("quarantine").is_empty());
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The time a day from now, for `RS_NOW`.
fn a_day_later() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", "+1 day", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// POSTs `body` to `url` as peer `from`; the reply's status and body.
fn post(url: &str, from: &str, body: &[u8]) -> (u16, String) {
    let reply = ureq::post(url)
        .config()
        .http_status_as_error(false)
        .build()
        .header("X-Rs-From", from)
        .header("Content-Type", "application/octet-stream")
        .send(body)
        .expect("the POST");
    let status = reply.status().as_u16();
    let text = reply.into_body().read_to_string().unwrap_or_default();
    (status, text)
}

#[test]
fn three_relays_behind_nginx_take_every_message_once_while_one_is_killed() {
    let messages = count("RS_SCALE_MESSAGES", 10_000);
    let back = count("RS_SCALE_BACK", 2_000);
    let n_sites = 20;
    let pg = Postgres::start();
    let nats = Nats::start();
    let ids: Vec<String> = (1..=n_sites).map(|n| format!("s{n:02}.host")).collect();
    let ps = provider(3, &ids, &shared(&pg, Some(&nats)));
    ps[0].cmd("rs-relay").args(["db", "init"]).run().success();
    let mut serves: Vec<Serve> = ps.iter().map(Serve::start).collect();
    let ports: Vec<u16> = serves.iter().map(|s| s.port).collect();
    let lb = Balancer::start(&ports);
    let sites: Vec<Site> = ids.iter().map(|id| site(id, &lb.url())).collect();

    // Each site queues its share; a copy of every queued envelope is kept
    // to post again a day later.
    let copies = tempfile::tempdir().unwrap();
    let sent: Vec<HashSet<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = sites
            .iter()
            .enumerate()
            .map(|(k, site)| {
                let copies = copies.path().join(k.to_string());
                s.spawn(move || {
                    let mut mine = HashSet::new();
                    for n in 0..messages / n_sites {
                        mine.insert(site.send(&[], format!("site {k} reading {n}").as_bytes()));
                    }
                    std::fs::create_dir_all(&copies).unwrap();
                    for f in std::fs::read_dir(site.spool.join("queue/normal")).unwrap() {
                        let f = f.unwrap();
                        std::fs::copy(f.path(), copies.join(f.file_name())).unwrap();
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sent.iter().map(HashSet::len).sum::<usize>(), messages);
    // The provider's services queue the back-channel at any instance.
    let mut expected: Vec<HashSet<String>> = vec![HashSet::new(); n_sites];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let p = &ps[i];
                let ids = &ids;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for n in (i..back).step_by(3) {
                        let k = n % n_sites;
                        let id = p.send(&["--to", &ids[k]], format!("order {n}").as_bytes());
                        out.push((k, id));
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            for (k, id) in h.join().unwrap() {
                expected[k].insert(id);
            }
        }
    });

    // The sites flush (four at a time) until everything is through; one
    // relay is killed once a quarter of the messages are in, and started
    // again on its port.
    let started = Instant::now();
    let deadline = Duration::from_secs(600);
    let done = std::sync::atomic::AtomicBool::new(false);
    let rounds = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..4 {
            let (sites, done, rounds) = (&sites, &done, &rounds);
            s.spawn(move || {
                while !done.load(std::sync::atomic::Ordering::SeqCst)
                    && started.elapsed() < deadline
                {
                    // --force: a request that met the killed relay marks
                    // the link failed, retried a minute later otherwise.
                    for site in sites.iter().skip(w).step_by(4) {
                        site.cmd("rs-queue").args(["flush", "--force"]).run();
                    }
                    rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        let mut killed = false;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let accepted: usize = pg
                .psql("rs", "SELECT count(*) FROM rs_accepted WHERE kind = 0")
                .parse()
                .unwrap();
            if !killed && accepted >= messages / 4 {
                serves[1].kill();
                std::thread::sleep(Duration::from_secs(1));
                serves[1] = Serve::start_on(&ps[1], ports[1]);
                killed = true;
            }
            let outbox: usize = pg
                .psql("rs", "SELECT count(*) FROM rs_outbox")
                .parse()
                .unwrap();
            let delivered: usize = sites.iter().map(|s| s.received().len()).sum();
            let queued_at_provider: usize = ps.iter().map(|p| p.files("queue/normal").len()).sum();
            if std::env::var_os("RS_TEST_VERBOSE").is_some() {
                eprintln!(
                    "{:.1} s: accepted {accepted}, back-channel delivered {delivered}, {outbox} in rs_outbox, {queued_at_provider} queued at instances",
                    started.elapsed().as_secs_f64()
                );
            }
            if killed
                && accepted >= messages
                && outbox == 0
                && queued_at_provider == 0
                && delivered >= back
            {
                break;
            }
            assert!(
                started.elapsed() < deadline,
                "not through in {deadline:?}: accepted {accepted} of {messages}, back-channel delivered {delivered} of {back}, {outbox} in rs_outbox, {queued_at_provider} queued at instances"
            );
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let took = started.elapsed();

    // Every site's queue is empty, and it holds its back-channel messages
    // exactly once.
    for (k, site) in sites.iter().enumerate() {
        // A last flush carries the acknowledgements of the last poll.
        site.cmd("rs-queue").args(["flush"]).run();
        assert_eq!(site.outbound_left(None), 0, "{}: {:?}", ids[k], site.list());
        let got: Vec<String> = site.received().into_iter().map(|(id, _)| id).collect();
        let unique: HashSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), unique.len(), "{}: delivered twice", ids[k]);
        assert_eq!(unique, expected[k], "{}", ids[k]);
        site.assert_nothing_quarantined();
    }
    // Every message ID exactly once in JetStream and in the database.
    let all: HashSet<String> = sent.iter().flatten().cloned().collect();
    let js = nats.messages("RS");
    let mut seen = HashMap::new();
    for (id, _, _) in &js {
        *seen.entry(id.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), all);
    assert_eq!(js.len(), messages);
    assert_eq!(ids_in_database(&pg), all);
    assert_eq!(
        pg.psql("rs", "SELECT count(*) FROM rs_outbox"),
        "0",
        "kept until acknowledged, and all acknowledged"
    );
    assert_eq!(pg.psql("rs", "SELECT count(*) FROM rs_dead"), "0");
    eprintln!(
        "{messages} messages in and {back} back-channel messages out through 3 relays in {:.1} s ({} flush rounds), one relay killed and restarted",
        took.as_secs_f64(),
        rounds.load(std::sync::atomic::Ordering::SeqCst)
    );

    // A day later (the relays' clock pinned there), the same envelopes
    // posted again are duplicates: acknowledged, not published again.
    drop(serves);
    let later = a_day_later();
    let serves: Vec<Serve> = ps
        .iter()
        .zip(&ports)
        .map(|(p, port)| Serve::start_later(p, *port, &later))
        .collect();
    let mut reposted = 0;
    for (k, id) in ids.iter().enumerate() {
        let dir = copies.path().join(k.to_string());
        for f in std::fs::read_dir(&dir).unwrap().take(10) {
            let body = std::fs::read(f.unwrap().path()).unwrap();
            let (status, reply) = post(&lb.url(), id, &body);
            assert_eq!(status, 200, "{reply}");
            assert!(reply.contains("accepted"), "{reply}");
            reposted += 1;
        }
    }
    assert_eq!(
        nats.messages("RS").len(),
        messages,
        "nothing published again"
    );
    assert_eq!(ids_in_database(&pg).len(), messages);
    eprintln!("{reposted} envelopes posted again a day later: all duplicates");
    drop(serves);
}
