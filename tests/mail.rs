//! Mail as a transport, against a real Postfix on 127.0.0.1 (started and
//! stopped here). Site A sends by SMTP to b@pipe.test, which Postfix pipes
//! into B's `rs-relay receive`; B acknowledges by SMTP to a@maildir.test,
//! which Postfix delivers into a Maildir that A reads with `rs-relay fetch`.
//!
//! One Postfix serves every scenario, so this test has its own main
//! (`harness = false`); scenarios run in order. `cargo test --test mail NAME`
//! runs the scenarios whose names contain NAME.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::postfix::{chown, tail, Postfix, NOBODY};
use support::Site;

struct Env {
    pf: Postfix,
    a: Site,
    b: Site,
    _root: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let root = tempfile::Builder::new()
            .prefix("rs-mail-")
            .tempdir()
            .unwrap();
        let a = Site::component("a.host");
        let b = Site::component("b.hub");
        let relay = support::bin("rs-relay");
        let pipe = format!(
            r#"# The test MTA's delivery pipe into site B. With flags/kill-next present,
# the receiver is killed (SIGKILL) while it is still reading the mail.
RS={relay}
SPOOL={spool}
if [ -e {root}/flags/kill-next ]; then
    rm -f {root}/flags/kill-next
    exec 3<&0
    {{ head -c 3000 <&3; sleep 2; }} | $RS --spool $SPOOL receive &
    pid=$!
    sleep 0.3
    kill -9 $pid
    kill -9 $$
fi
exec $RS --spool $SPOOL receive"#,
            relay = relay.display(),
            spool = b.spool.display(),
            root = root.path().display()
        );
        let pf = Postfix::start(root.path(), &pipe);
        let smtp = |from: &str, to: &str| {
            format!(
                "routes = [\"smtp://127.0.0.1:{}?from={from}&to={to}&tls=none&timeout=5s\"]",
                pf.port
            )
        };
        a.peer(
            "b.hub",
            &format!(
                "{}\nupstream = true\nack_timeout = \"10m\"",
                smtp("a@maildir.test", "b@pipe.test")
            ),
        );
        a.peer("x.void", &smtp("a@maildir.test", "dead@pipe.test"));
        b.peer("a.host", &smtp("b@pipe.test", "a@maildir.test"));
        // B runs as the pipe's user; the tests call B's commands as that user too.
        for s in [&a, &b] {
            run_chmod(s.root());
        }
        chown(&b.spool, NOBODY);
        Env {
            pf,
            a,
            b,
            _root: root,
        }
    }

    fn b(&self, args: &[&str]) -> support::Cmd {
        self.b.cmd(args[0]).args(&args[1..]).run_as(NOBODY)
    }

    fn b_received(&self) -> Vec<(String, Vec<u8>)> {
        self.b.received()
    }

    fn a_outbound(&self) -> u64 {
        let s = self
            .a
            .cmd("rs-queue")
            .args(["stats", "--json"])
            .run()
            .success()
            .json();
        s["outbound"]["total"]["messages"].as_u64().unwrap()
    }

    /// A flushes everything now; waits until B holds `at_least` messages.
    fn flush_until_b_holds(&self, at_least: usize, limit: Duration, what: &str) {
        self.a
            .cmd("rs-queue")
            .args(["flush", "--force"])
            .run()
            .success();
        self.pf
            .wait(limit, what, || self.b_received().len() >= at_least);
    }

    /// B acknowledges by mail; A reads its Maildir; waits until A holds nothing.
    fn acknowledge(&self, expected_left: u64) {
        self.pf.wait(
            Duration::from_secs(120),
            "Postfix to deliver everything",
            || self.pf.queue_is_empty(),
        );
        self.b(&["rs-queue", "flush", "--force"]).run().success();
        let maildir = self.pf.maildir("a");
        let mut tries = 0;
        self.pf.wait(
            Duration::from_secs(120),
            "the acknowledgements to reach A",
            || {
                tries += 1;
                if self.pf.queue_is_empty() {
                    self.a
                        .cmd("rs-relay")
                        .args(["fetch", "--maildir"])
                        .args([&maildir])
                        .run()
                        .success();
                }
                self.a_outbound() == expected_left
            },
        );
    }
}

fn run_chmod(p: &std::path::Path) {
    let _ = std::process::Command::new("chmod")
        .args(["755"])
        .arg(p)
        .status();
}

fn send(site: &Site, args: &[&str], content: &[u8]) -> String {
    site.send(args, content)
}

/// The envelope a fresh site for `component` makes of `content`, as it
/// would travel unprotected.
fn envelope_of(component: &str, content: &[u8]) -> Vec<u8> {
    let s = Site::component(component);
    s.send(&[], content);
    let f = support::first_file(&s.spool.join("queue/normal"));
    std::fs::read(f).unwrap()
}

/// Mails each body straight to B's pipe, as if from A.
fn mail_to_b_as_a(env: &Env, bodies: &[Vec<u8>]) {
    let mailer = lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(env.pf.port)
        .build();
    let envelope = lettre::address::Envelope::new(
        Some("a@maildir.test".parse().unwrap()),
        vec!["b@pipe.test".parse().unwrap()],
    )
    .unwrap();
    for body in bodies {
        let mut mail = b"From: a@maildir.test\r\nTo: b@pipe.test\r\nX-Rs-From: a.host\r\n".to_vec();
        mail.extend_from_slice(&rs::message::envelope::to_crlf(body));
        lettre::Transport::send_raw(&mailer, &envelope, &mail).unwrap();
    }
}

/// The 500-message round trip: mixed precedence, a 5 MiB binary message,
/// non-ASCII text.
fn round_trip_of_500_messages(env: &Env) {
    let mut sent: HashMap<String, Vec<u8>> = HashMap::new();
    let big: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    sent.insert(
        send(
            &env.a,
            &[
                "--precedence",
                "bulk",
                "--mime-type",
                "application/octet-stream",
            ],
            &big,
        ),
        big,
    );
    let text = "Überlauf auf /var — 98 % belegt ✓ 日本語";
    sent.insert(
        send(
            &env.a,
            &["--kind", "event", "--severity", "major", "--text", text],
            b"",
        ),
        text.as_bytes().to_vec(),
    );
    for i in 0..498usize {
        let payload: Vec<u8> = (0..(64 + i % 300))
            .map(|j| ((i * 17 + j) % 256) as u8)
            .collect();
        sent.insert(
            send(
                &env.a,
                &["--precedence", ["urgent", "normal", "bulk"][i % 3]],
                &payload,
            ),
            payload,
        );
    }
    let start = Instant::now();
    let r = env
        .a
        .cmd("rs-queue")
        .args(["flush", "--json"])
        .run()
        .success()
        .json();
    let flushed = start.elapsed();
    assert_eq!(r["peers"][0]["sent"], 500, "{r}");
    env.pf.wait(
        Duration::from_secs(300),
        "B to receive 500 messages",
        || env.b_received().len() >= 500,
    );
    let delivered = start.elapsed();
    env.acknowledge(0);
    let total = start.elapsed();
    let got = env.b_received();
    let ids: HashSet<&String> = got.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), got.len(), "a message was delivered twice");
    assert_eq!(got.len(), 500);
    for (id, content) in &got {
        assert_eq!(sent.get(id), Some(content), "{id}: content differs");
    }
    println!(
        "    500 messages (5 MiB among them): flush {:.1} s, delivered at B after {:.1} s ({:.0} messages/s), acknowledged at A after {:.1} s",
        flushed.as_secs_f64(),
        delivered.as_secs_f64(),
        500.0 / delivered.as_secs_f64(),
        total.as_secs_f64()
    );
}

/// The MTA stops in the middle of a flush: what was not handed over stays
/// queued, flush exits 75, a later flush delivers it, and B has each once.
fn mta_stopped_during_a_flush(env: &Env) {
    let before = env.b_received().len();
    let ids: Vec<String> = (0..300)
        .map(|i| send(&env.a, &[], format!("stop test {i}").as_bytes()))
        .collect();
    let mut flush = env.a.cmd("rs-queue").args(["flush"]).command();
    flush.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = flush.spawn().unwrap();
    let sent_dir = env.a.spool.join("sent");
    let start = Instant::now();
    while std::fs::read_dir(&sent_dir).map(|d| d.count()).unwrap_or(0) < 20
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    env.pf.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(75),
        "flush over a stopped MTA exits 75: {stderr}"
    );
    assert!(
        env.a.listed_ids().iter().any(|id| ids.contains(id)),
        "messages stay queued"
    );
    // While the link is down and the retry time has not come, flush does not try.
    let again = env.a.cmd("rs-queue").args(["flush"]).run().code(75);
    assert!(again.stderr.contains("next try at"), "{}", again.stderr);
    // A stop in mid-delivery may leave a half-written queue file that the
    // restart warns about; leave one always, so that a restart which cannot
    // log that warning fails here every time, not once in a while.
    std::fs::write(env.pf.root.join("queue/incoming/999999.12345"), b"x").unwrap();
    env.pf.start_again();
    env.flush_until_b_holds(
        before + 300,
        Duration::from_secs(120),
        "B to receive the rest",
    );
    env.acknowledge(0);
    let got = env.b_received();
    let unique: HashSet<&String> = got.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), got.len(), "no duplicate at B");
    for id in &ids {
        assert!(unique.contains(id), "{id} lost");
    }
}

/// A 5xx for a recipient makes the message dead with the server's reply.
fn a_5xx_reply_makes_the_message_dead_with_the_reply(env: &Env) {
    let id = send(
        &env.a,
        &["--to", "x.void"],
        b"to a mailbox that does not exist",
    );
    let r = env
        .a
        .cmd("rs-queue")
        .args(["flush", "--peer", "x.void", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(r["peers"][0]["refused"], 1, "{r}");
    let st = env
        .a
        .cmd("rs-ack")
        .args(["status", "--json", &id])
        .run()
        .success()
        .json();
    assert_eq!(st["state"], "dead");
    let detail = st["dead"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("550") && detail.contains("no such mailbox"),
        "{detail}"
    );
    let stats = env
        .a
        .cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json();
    assert!(
        stats["areas"]["dead"]["total"]["messages"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

/// The delivery pipe is killed (SIGKILL) in the middle of a mail: Postfix
/// keeps the mail and retries, and B ends with one copy.
fn the_pipe_killed_mid_message_is_retried_by_the_mta(env: &Env) {
    let before = env.b_received().len();
    let flag = env.pf.root.join("flags/kill-next");
    std::fs::write(&flag, "").unwrap();
    chown(&flag, NOBODY);
    let payload = vec![b'k'; 50_000];
    let id = send(&env.a, &[], &payload);
    env.a
        .cmd("rs-queue")
        .args(["flush", "--force"])
        .run()
        .success();
    env.pf
        .wait(Duration::from_secs(60), "the kill to happen", || {
            !flag.exists()
        });
    env.pf
        .wait(Duration::from_secs(120), "the retried delivery", || {
            env.b_received().len() > before
        });
    let log = env.pf.log();
    assert!(
        log.contains("signal 9") || log.contains("died"),
        "Postfix saw the pipe die:\n{}",
        tail(&log, 20)
    );
    let copies = env.b_received().iter().filter(|(i, _)| *i == id).count();
    assert_eq!(copies, 1);
    env.acknowledge(0);
}

/// Fifty malformed mails through the pipe: each quarantined with a reason,
/// each pipe run exits 0 (Postfix says "sent", never "bounced").
fn fifty_malformed_mails_are_quarantined(env: &Env) {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/malformed");
    let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(&corpus)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    bodies.sort();
    // Ten more: a real envelope cut short at several points, a wrong
    // boundary, a huge header, invalid XML.
    let good = envelope_of("a.host", &[b'g'; 2000]);
    for cut in [200, 600, 900, 1400, 2100, 2600] {
        bodies.push(good[..cut.min(good.len() - 1)].to_vec());
    }
    let text = String::from_utf8_lossy(&good).into_owned();
    bodies.push(
        text.replacen("boundary=\"=_rs_", "boundary=\"=_xx_", 1)
            .into_bytes(),
    );
    bodies.push(format!("X-Huge: {}\n{text}", "h".repeat(80_000)).into_bytes());
    bodies.push(text.replacen("<header ", "<header <<", 1).into_bytes());
    bodies.push(text.replacen("</content>", "</contnet>", 1).into_bytes());
    assert_eq!(bodies.len(), 50);

    let before = env.b.files("quarantine").len();
    let sent_before = env.pf.log().matches("delivered via rspipe service").count();
    mail_to_b_as_a(env, &bodies);
    env.pf.wait(
        Duration::from_secs(120),
        "50 junk mails to be piped",
        || {
            env.pf.queue_is_empty()
                && env.pf.log().matches("delivered via rspipe service").count() >= sent_before + 50
        },
    );
    let log = env.pf.log();
    assert!(
        !log.contains("status=bounced"),
        "nothing bounced:\n{}",
        tail(&log, 20)
    );
    let quarantined = env.b.files("quarantine");
    assert_eq!(
        quarantined.len() - before,
        50,
        "each malformed mail is kept in quarantine"
    );
    for q in &quarantined {
        let reason =
            std::fs::read_to_string(env.b.spool.join("quarantine").join(format!("{q}.reason")))
                .unwrap();
        assert!(
            reason.contains("detail: ")
                && reason
                    .lines()
                    .any(|l| l.starts_with("detail: ") && l.len() > 12),
            "{reason}"
        );
    }
}

/// With `batch=20` in the route, 100 messages travel in 5 emails.
fn batched_emails_carry_many_messages_each(env: &Env) {
    let config = env.a.spool.join("config.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        original.replace(
            "to=b@pipe.test&tls=none",
            "to=b@pipe.test&tls=none&batch=20",
        ),
    )
    .unwrap();
    let before = env.b_received().len();
    let piped_before = env.pf.log().matches("delivered via rspipe service").count();
    let ids: Vec<String> = (0..100)
        .map(|i| send(&env.a, &[], format!("batched {i}").as_bytes()))
        .collect();
    env.flush_until_b_holds(
        before + 100,
        Duration::from_secs(60),
        "100 batched messages",
    );
    env.pf
        .wait(Duration::from_secs(30), "the queue to drain", || {
            env.pf.queue_is_empty()
        });
    let piped = env.pf.log().matches("delivered via rspipe service").count() - piped_before;
    assert_eq!(piped, 5, "100 messages in emails of 20");
    std::fs::write(&config, original).unwrap();
    env.acknowledge(0);
    let got: HashSet<String> = env.b_received().into_iter().map(|(id, _)| id).collect();
    assert!(ids.iter().all(|id| got.contains(id)));
}

/// STARTTLS and implicit TLS routes, trusting the relay's certificate
/// through `ca=`; without that CA the certificate is refused and nothing
/// is sent.
fn tls_routes_verify_the_relay(env: &Env) {
    let config = env.a.spool.join("config.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let plain = format!(
        "smtp://127.0.0.1:{}?from=a@maildir.test&to=b@pipe.test&tls=none",
        env.pf.port
    );
    assert!(original.contains(&plain));
    let cert = env.pf.cert.display().to_string();
    let route = |port: u16, tls: &str| {
        format!("smtp://localhost:{port}?from=a@maildir.test&to=b@pipe.test&{tls}")
    };
    for (route, name) in [
        (
            route(env.pf.port, &format!("tls=starttls&ca={cert}")),
            "starttls",
        ),
        (
            route(env.pf.tls_port, &format!("tls=tls&ca={cert}")),
            "implicit tls",
        ),
    ] {
        std::fs::write(&config, original.replacen(&plain, &route, 1)).unwrap();
        let before = env.b_received().len();
        let id = send(&env.a, &[], name.as_bytes());
        env.flush_until_b_holds(before + 1, Duration::from_secs(60), name);
        assert!(env.b_received().iter().any(|(i, _)| *i == id), "{name}");
    }
    let log = env.pf.log();
    assert!(
        log.contains("TLS connection established"),
        "Postfix saw TLS:\n{}",
        tail(&log, 20)
    );
    // Without the CA, the self-signed certificate is refused: nothing is sent.
    std::fs::write(
        &config,
        original.replacen(&plain, &route(env.pf.port, "tls=starttls"), 1),
    )
    .unwrap();
    let id = send(&env.a, &[], b"must not leave");
    let r = env
        .a
        .cmd("rs-queue")
        .args(["flush", "--force"])
        .run()
        .code(75);
    assert!(
        r.stderr.to_lowercase().contains("certificate"),
        "{}",
        r.stderr
    );
    std::fs::write(&config, &original).unwrap();
    assert!(env.a.listed_ids().contains(&id));
    env.a
        .cmd("rs-queue")
        .args(["flush", "--force"])
        .run()
        .success();
    env.acknowledge(0);
}

/// A scenario's name and body.
/// Bulk data by mail with a relay between: A mails the request and the
/// chunks to B (Postfix pipes them into `rs-relay receive`), B, a relay
/// for this scenario, passes them on to P over a directory; P's answers
/// come back the same way and reach A by mail (A's Maildir).
fn bulk_through_mail_and_a_relay(env: &Env) {
    let b_config = std::fs::read_to_string(env.b.spool.join("config.toml")).unwrap();
    let a_config = std::fs::read_to_string(env.a.spool.join("config.toml")).unwrap();
    let p = Site::component("p.hub");
    p.append_config("[bulk]\nchunk_size = \"16KiB\"\nwindow = 4\n");
    let (to_p, to_b) = (p.stick("to-p"), p.stick("to-b"));
    for d in [&to_p, &to_b] {
        chown(d, NOBODY);
    }
    run_chmod(p.root());
    p.peer("b.hub", &format!("routes = [\"dir:{}\"]", to_b.display()));
    chown(&p.spool, NOBODY);
    env.b.peer(
        "p.hub",
        &format!("upstream = true\nroutes = [\"dir:{}\"]", to_p.display()),
    );
    env.a.bulk_threshold("4KiB");
    let data: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let id = send(&env.a, &[], &data);
    let p_cmd = |args: &[&str]| p.cmd(args[0]).args(&args[1..]).run_as(NOBODY).run();
    let maildir = env.pf.maildir("a");
    let mut rounds = 0;
    let status = || {
        env.a
            .cmd("rs-ack")
            .args(["status", "--json", &id])
            .run()
            .success()
            .json()
    };
    while status()["state"] != "acknowledged" {
        rounds += 1;
        assert!(
            rounds <= 10,
            "not delivered after {rounds} rounds: {}",
            status()
        );
        env.a.cmd("rs-queue").args(["flush", "--force"]).run();
        env.pf.wait(
            Duration::from_secs(60),
            "Postfix to pipe the mail into B",
            || env.pf.queue_is_empty(),
        );
        env.b(&["rs-queue", "flush"]).run();
        p_cmd(&["rs-relay", "import", "--from", &to_p.display().to_string()]);
        p_cmd(&["rs-queue", "flush"]);
        env.b(&["rs-relay", "import", "--from", &to_b.display().to_string()])
            .run();
        env.b(&["rs-queue", "flush", "--force"]).run();
        env.pf
            .wait(Duration::from_secs(60), "Postfix to deliver to A", || {
                env.pf.queue_is_empty()
            });
        env.a
            .cmd("rs-relay")
            .args(["fetch", "--maildir"])
            .args([&maildir])
            .run()
            .success();
    }
    let got: Vec<_> = p.received().into_iter().filter(|(i, _)| *i == id).collect();
    assert_eq!(got.len(), 1, "delivered once");
    assert!(got[0].1 == data, "byte-identical");
    let s = status();
    assert_eq!(s["bulk"]["chunks_sent"], 7, "{s}");
    assert!(
        env.b.received().iter().all(|(i, _)| *i != id),
        "the relay kept nothing"
    );
    println!(
        "  bulk by mail: {} bytes in 7 chunks, {rounds} round trips",
        data.len()
    );
    std::fs::write(env.b.spool.join("config.toml"), b_config).unwrap();
    std::fs::write(env.a.spool.join("config.toml"), a_config).unwrap();
}

type Scenario = (&'static str, fn(&Env));

/// Protection over mail, OpenPGP then S/MIME: A signs and encrypts what it
/// mails to B, B's pipe decrypts and verifies before delivering, and B's
/// acknowledgements come back signed and encrypted too. A plain mail that
/// claims to come from A is quarantined, never delivered.
fn protected_mail_both_formats(env: &Env) {
    let keys = env.pf.root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let gnupg = keys.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    let tool = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    tool(std::process::Command::new("chmod").arg("700").arg(&gnupg));
    let gpg = || {
        let mut c = std::process::Command::new("gpg");
        c.env("GNUPGHOME", &gnupg).args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        c
    };
    for who in ["a", "b"] {
        let email = format!("{who}@keys.test");
        tool(gpg().args(["--quick-gen-key", &email, "future-default", "default", "1y"]));
        let secret = tool(gpg().args(["--armor", "--export-secret-keys", &email]));
        std::fs::write(keys.join(format!("{who}.key")), secret).unwrap();
        let public = tool(gpg().args(["--armor", "--export", &email]));
        std::fs::write(keys.join(format!("{who}.pub")), public).unwrap();
        support::self_signed(
            who,
            "extendedKeyUsage=emailProtection",
            &keys.join(format!("{who}.pem.key")),
            &keys.join(format!("{who}.pem")),
        );
    }
    // B's pipe runs as nobody: its keys are in its spool, owned by it.
    for (site, me) in [(&env.a, "a"), (&env.b, "b")] {
        let dir = site.spool.join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&keys).unwrap().flatten() {
            if f.path().is_file() {
                std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
            }
        }
        if me == "b" {
            chown(&dir, NOBODY);
            for f in std::fs::read_dir(&dir).unwrap().flatten() {
                chown(&f.path(), NOBODY);
            }
        }
    }
    let originals: Vec<String> = [&env.a, &env.b]
        .iter()
        .map(|s| std::fs::read_to_string(s.spool.join("config.toml")).unwrap())
        .collect();
    let protect = |site: &Site, peer: &str, me: &str, them: &str, kind: &str, original: &str| {
        let k = site.spool.join("keys");
        let settings = if kind == "openpgp" {
            format!(
                "protection = \"openpgp\"\nour_key = \"{}\"\npeer_cert = \"{}\"",
                k.join(format!("{me}.key")).display(),
                k.join(format!("{them}.pub")).display()
            )
        } else {
            format!(
                "protection = \"smime\"\nour_key = \"{}\"\nour_cert = \"{}\"\npeer_cert = \"{}\"",
                k.join(format!("{me}.pem.key")).display(),
                k.join(format!("{me}.pem")).display(),
                k.join(format!("{them}.pem")).display()
            )
        };
        let from = format!("[[peer]]\nid = \"{peer}\"\n");
        assert!(original.contains(&from));
        let path = site.spool.join("config.toml");
        std::fs::write(
            &path,
            original.replacen(&from, &format!("{from}{settings}\n"), 1),
        )
        .unwrap();
        if me == "b" {
            chown(&path, NOBODY);
        }
    };
    for kind in ["openpgp", "smime"] {
        protect(&env.a, "b.hub", "a", "b", kind, &originals[0]);
        protect(&env.b, "a.host", "b", "a", kind, &originals[1]);
        let before = env.b_received().len();
        let mut sent = HashMap::new();
        for i in 0..20usize {
            let content: Vec<u8> = if i == 0 {
                (0..1_000_000u32).map(|j| (j * 7 + j / 251) as u8).collect()
            } else {
                format!("{kind} message {i} über Mail").into_bytes()
            };
            sent.insert(send(&env.a, &[], &content), content);
        }
        env.flush_until_b_holds(
            before + 20,
            Duration::from_secs(120),
            "B to receive the protected mail",
        );
        let got: HashMap<String, Vec<u8>> = env.b_received().into_iter().collect();
        for (id, content) in &sent {
            assert_eq!(got.get(id), Some(content), "{kind}: {id} arrived intact");
        }
        env.acknowledge(0);

        // A plain mail naming A as its sender is refused.
        let quarantined = env.b.files("quarantine").len();
        let plain = envelope_of("a.host", b"unprotected, claims to be from a.host");
        mail_to_b_as_a(env, &[plain]);
        env.pf.wait(
            Duration::from_secs(60),
            "the plain mail to be quarantined",
            || env.b.files("quarantine").len() > quarantined,
        );
        let reason = env.b.files("quarantine").iter().find_map(|q| {
            let p = env.b.spool.join("quarantine").join(format!("{q}.reason"));
            std::fs::read_to_string(p)
                .ok()
                .filter(|r| r.contains("not protected"))
        });
        assert!(
            reason.is_some(),
            "{kind}: the plain mail's reason says it was not protected"
        );
        assert_eq!(
            env.b_received().len(),
            before + 20,
            "{kind}: nothing more delivered"
        );
    }
    std::fs::write(env.a.spool.join("config.toml"), &originals[0]).unwrap();
    std::fs::write(env.b.spool.join("config.toml"), &originals[1]).unwrap();
    chown(&env.b.spool.join("config.toml"), NOBODY);
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let scenarios: [Scenario; 9] = [
        ("round_trip_of_500_messages", round_trip_of_500_messages),
        ("tls_routes_verify_the_relay", tls_routes_verify_the_relay),
        (
            "batched_emails_carry_many_messages_each",
            batched_emails_carry_many_messages_each,
        ),
        (
            "a_5xx_reply_makes_the_message_dead_with_the_reply",
            a_5xx_reply_makes_the_message_dead_with_the_reply,
        ),
        (
            "the_pipe_killed_mid_message_is_retried_by_the_mta",
            the_pipe_killed_mid_message_is_retried_by_the_mta,
        ),
        (
            "fifty_malformed_mails_are_quarantined",
            fifty_malformed_mails_are_quarantined,
        ),
        ("mta_stopped_during_a_flush", mta_stopped_during_a_flush),
        ("protected_mail_both_formats", protected_mail_both_formats),
        (
            "bulk_through_mail_and_a_relay",
            bulk_through_mail_and_a_relay,
        ),
    ];
    let chosen: Vec<_> = scenarios
        .iter()
        .filter(|(n, _)| filter.is_empty() || filter.iter().any(|f| n.contains(f.as_str())))
        .collect();
    println!(
        "running {} mail scenario(s) against a real Postfix",
        chosen.len()
    );
    if chosen.is_empty() {
        return;
    }
    let env = Env::new();
    let mut failed = Vec::new();
    for (name, f) in chosen {
        let start = Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&env))) {
            Ok(()) => println!(
                "test {name} ... ok ({:.1} s)",
                start.elapsed().as_secs_f64()
            ),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    drop(env);
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(101);
    }
    println!("test result: ok");
}
