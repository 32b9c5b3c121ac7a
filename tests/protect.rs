//! Protection (OpenPGP and S/MIME) through the real binaries, with keys and
//! certificates made here by GnuPG and OpenSSL: round trips, both-way
//! interoperability with `gpg` and `openssl cms`/`openssl smime`, and every
//! refusal (tampering, wrong or missing signature, expired or revoked keys,
//! forged acknowledgements) leaving nothing lost and nothing discarded.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::Site;

fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> std::process::Output {
    let cmd = cmd.borrow_mut();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A GnuPG home of its own.
struct Gpg {
    home: PathBuf,
}

impl Gpg {
    fn new(dir: &Path, name: &str) -> Gpg {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        run(Command::new("chmod").arg("700").arg(&home));
        Gpg { home }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &self.home).args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        c
    }

    /// Makes a key (ed25519 for signing, cv25519 for encryption); `at` fakes the clock.
    fn generate(&self, email: &str, expire: &str, at: Option<&str>) -> String {
        let mut c = self.cmd();
        if let Some(t) = at {
            c.args(["--faked-system-time", t]);
        }
        run(c.args([
            "--quick-gen-key",
            &format!("Site <{email}>"),
            "future-default",
            "default",
            expire,
        ]));
        self.fingerprint(email)
    }

    fn fingerprint(&self, email: &str) -> String {
        let out = run(self.cmd().args(["--with-colons", "--list-keys", email]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string()
    }

    fn export(&self, email: &str, secret: bool, to: &Path) {
        let what = if secret {
            "--export-secret-keys"
        } else {
            "--export"
        };
        let out = run(self.cmd().args(["--armor", what, email]));
        std::fs::write(to, out.stdout).unwrap();
    }
}

/// A's and B's OpenPGP keys, and a stranger's.
struct PgpKeys {
    dir: PathBuf,
    gpg: Gpg,
}

impl PgpKeys {
    fn new(site: &Site) -> PgpKeys {
        let dir = site.root().join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        let gpg = Gpg::new(&dir, "gnupg");
        for who in ["a", "b", "m"] {
            gpg.generate(&format!("{who}@test"), "1y", None);
            gpg.export(
                &format!("{who}@test"),
                true,
                &dir.join(format!("{who}.key")),
            );
            gpg.export(
                &format!("{who}@test"),
                false,
                &dir.join(format!("{who}.pub")),
            );
        }
        PgpKeys { dir, gpg }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn pgp_peer(our_key: &str, peer_cert: &str, extra: &str) -> String {
    format!(
        "protection = \"openpgp\"\nour_key = \"{our_key}\"\npeer_cert = \"{peer_cert}\"\n{extra}"
    )
}

fn export(site: &Site, dir: &Path) -> serde_json::Value {
    site.cmd("rs-queue")
        .args(["export", "--json", "--to"])
        .args([dir])
        .run()
        .success()
        .json()["peers"][0]
        .clone()
}

fn import(site: &Site, dir: &Path) -> support::Run {
    site.cmd("rs-relay")
        .args(["import", "--json", "--from"])
        .args([dir])
        .run()
        .success()
}

fn send_many(site: &Site, n: usize) -> HashMap<String, Vec<u8>> {
    (0..n)
        .map(|i| {
            let payload: Vec<u8> = (0..(100 + i % 500))
                .map(|j| ((i * 31 + j * 7) % 256) as u8)
                .collect();
            (
                site.send(
                    &["--precedence", ["urgent", "normal", "bulk"][i % 3]],
                    &payload,
                ),
                payload,
            )
        })
        .collect()
}

fn outbound(site: &Site) -> u64 {
    site.cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json()["outbound"]["total"]["messages"]
        .as_u64()
        .unwrap()
}

/// The 1,000-message round trip of the delivery issue, over protected files.
fn protected_round_trip(a: &Site, b: &Site, marker: &str) {
    round_trip_of(a, b, marker, 1000);
}

/// `n` messages from A to B over protected files, and B's acknowledgements back.
fn round_trip_of(a: &Site, b: &Site, marker: &str, n: usize) {
    let sent = send_many(a, n);
    let s = a.stick("round");
    assert_eq!(export(a, &s)["sent"], n);
    // What is on the stick is protected: the payloads are not readable there.
    let f = support::first_file(&s.join("b.hub/a.host"));
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains(marker), "{}", &text[..300.min(text.len())]);
    assert!(!text.contains("<header"), "the envelope travels encrypted");
    let r = import(b, &s).json();
    assert_eq!(r["delivered"], n, "{r}");
    export(b, &s);
    let r = import(a, &s).json();
    assert_eq!(
        r["acks"]["discarded"], n,
        "signed acknowledgements are applied"
    );
    assert_eq!(outbound(a), 0);
    let got = b.received();
    assert_eq!(got.len(), n);
    for (id, content) in &got {
        assert_eq!(sent.get(id), Some(content), "{id}");
    }
}

fn pgp_pair(keys: &PgpKeys) -> (Site, Site) {
    pgp_pair_with(keys, "")
}

/// A and B with OpenPGP; `a_extra` goes into A's configuration of B.
fn pgp_pair_with(keys: &PgpKeys, a_extra: &str) -> (Site, Site) {
    let a = Site::component("a.host");
    a.peer(
        "b.hub",
        &pgp_peer(
            &keys.path("a.key"),
            &keys.path("b.pub"),
            &format!("upstream = true\nack_timeout = \"10m\"\n{a_extra}"),
        ),
    );
    let b = Site::component("b.hub");
    b.peer(
        "a.host",
        &pgp_peer(&keys.path("b.key"), &keys.path("a.pub"), ""),
    );
    (a, b)
}

#[test]
fn openpgp_round_trip_of_1000_messages() {
    let scratch = Site::new();
    let keys = PgpKeys::new(&scratch);
    let (a, b) = pgp_pair(&keys);
    protected_round_trip(&a, &b, "application/pgp-encrypted");
}

/// The armored OpenPGP message inside a PGP/MIME file.
fn armored(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let start = text.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = text.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
    text[start..end].to_string() + "\n"
}

fn pgp_mime(armored: &str) -> String {
    format!(
        "MIME-Version: 1.0\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"XYZ\"\n\n\
         --XYZ\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n--XYZ\nContent-Type: application/octet-stream\n\n{armored}\n--XYZ--\n"
    )
}

/// An envelope made by rs for component `from` (as a third party would see it).
fn plain_envelope(from: &str, text: &str) -> (String, PathBuf, Site) {
    let s = Site::component(from);
    let id = s.send(&[], text.as_bytes());
    let f = support::first_file(&s.spool.join("queue/normal"));
    (id, f, s)
}

fn drop_on_stick(stick: &Path, to: &str, from: &str, id: &str, bytes: &[u8]) {
    let d = stick.join(to).join(from);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(format!("1-0000000000000001-{id}.msg")), bytes).unwrap();
}

#[test]
fn openpgp_interoperates_with_gpg_both_ways() {
    let scratch = Site::new();
    let keys = PgpKeys::new(&scratch);
    let (a, b) = pgp_pair(&keys);
    // rs → gpg: gpg (holding B's key) decrypts and verifies A's signature.
    a.send(&[], b"for gpg to read");
    let s = a.stick("s");
    export(&a, &s);
    let f = support::first_file(&s.join("b.hub/a.host"));
    let asc = scratch.root().join("m.asc");
    std::fs::write(&asc, armored(&f)).unwrap();
    let out = run(keys
        .gpg
        .cmd()
        .args(["--status-fd", "2", "--decrypt"])
        .arg(&asc));
    let status = String::from_utf8_lossy(&out.stderr);
    let a_fpr = keys.gpg.fingerprint("a@test");
    assert!(
        status.contains("[GNUPG:] GOODSIG") && status.contains(&format!("VALIDSIG {a_fpr}")),
        "{status}"
    );
    let inner = rs::message::envelope::parse(&out.stdout).unwrap();
    assert_eq!(
        inner[0].content,
        rs::message::Content::Data(rs::message::Data {
            mime_type: rs::message::MimeType::octet_stream(),
            bytes: b"for gpg to read".to_vec()
        })
    );

    // gpg → rs: a PGP/MIME message gpg signed (as A) and encrypted (to B) is accepted.
    let (id, inner, _keep) = plain_envelope("a.host", "made by gpg");
    let out = run(keys
        .gpg
        .cmd()
        .args([
            "--armor",
            "--sign",
            "--encrypt",
            "-u",
            "a@test",
            "-r",
            "b@test",
            "-o",
            "-",
        ])
        .arg(&inner));
    let s2 = a.stick("s2");
    drop_on_stick(
        &s2,
        "b.hub",
        "a.host",
        &id,
        pgp_mime(&String::from_utf8_lossy(&out.stdout)).as_bytes(),
    );
    let r = import(&b, &s2).json();
    assert_eq!(r["delivered"], 1, "{r}");
    assert!(b
        .received()
        .iter()
        .any(|(i, c)| *i == id && c == b"made by gpg"));
}

/// Imports `bytes` as a message from A on a fresh stick; asserts it is
/// quarantined with a reason containing `why`, and not delivered.
fn refused(b: &Site, id: &str, bytes: &[u8], why: &str) {
    let s = b.stick(&format!("refused-{}", why.replace(' ', "-")));
    drop_on_stick(&s, "b.hub", "a.host", id, bytes);
    let before = b.files("quarantine").len();
    let r = import(b, &s);
    let j = r.json();
    assert_eq!(
        (j["quarantined"].as_u64(), j["delivered"].as_u64()),
        (Some(1), Some(0)),
        "{j}\n{}",
        r.stderr
    );
    assert!(
        r.stderr.to_lowercase().contains(&why.to_lowercase()),
        "reason should mention `{why}`: {}",
        r.stderr
    );
    assert_eq!(
        b.files("quarantine").len(),
        before + 1,
        "kept in quarantine"
    );
    assert!(!b.received().iter().any(|(i, _)| i == id));
    // Nothing is acknowledged for it.
    let back = b.stick(&format!("back-{}", why.replace(' ', "-")));
    export(b, &back);
    assert!(
        !back.join("a.host/b.hub").exists()
            || std::fs::read_dir(back.join("a.host/b.hub"))
                .unwrap()
                .count()
                == 0
    );
}

#[test]
fn openpgp_refusals() {
    let scratch = Site::new();
    let keys = PgpKeys::new(&scratch);
    let (_a, b) = pgp_pair(&keys);
    let gpg = |args: &[&str], input: &Path| {
        String::from_utf8(
            run(keys
                .gpg
                .cmd()
                .args(["--armor", "-o", "-"])
                .args(args)
                .arg(input))
            .stdout,
        )
        .unwrap()
    };

    let (id, inner, _k1) = plain_envelope("a.host", "tampered");
    let good = gpg(
        &["--sign", "--encrypt", "-u", "a@test", "-r", "b@test"],
        &inner,
    );
    // Tampered ciphertext: one base64 character of the body changed.
    let lines: Vec<&str> = good.lines().collect();
    let mut tampered = lines.clone();
    let mid = lines.len() / 2;
    let flipped: String = lines[mid]
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 10 {
                if c == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                c
            }
        })
        .collect();
    tampered[mid] = &flipped;
    refused(
        &b,
        &id,
        pgp_mime(&(tampered.join("\n") + "\n")).as_bytes(),
        "",
    );

    // Signed by someone else.
    let (id, inner, _k2) = plain_envelope("a.host", "wrong signer");
    refused(
        &b,
        &id,
        pgp_mime(&gpg(
            &["--sign", "--encrypt", "-u", "m@test", "-r", "b@test"],
            &inner,
        ))
        .as_bytes(),
        "signature",
    );

    // Not signed at all.
    let (id, inner, _k3) = plain_envelope("a.host", "unsigned");
    refused(
        &b,
        &id,
        pgp_mime(&gpg(&["--encrypt", "-r", "b@test"], &inner)).as_bytes(),
        "not signed",
    );

    // Not protected at all.
    let (id, inner, _k4) = plain_envelope("a.host", "plain");
    refused(&b, &id, &std::fs::read(&inner).unwrap(), "not protected");

    // A tampered signature: A's signed packets with the signature's last
    // byte changed, encrypted to B (assembled with Sequoia).
    let (id, inner, _k5) = plain_envelope("a.host", "bad signature");
    let signed = run(keys
        .gpg
        .cmd()
        .args(["--sign", "-u", "a@test", "-o", "-"])
        .arg(&inner))
    .stdout;
    let mut bad = signed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    refused(
        &b,
        &id,
        pgp_mime(&encrypt_raw_packets(&keys.dir.join("b.pub"), &bad)).as_bytes(),
        "signature",
    );
}

/// Encrypts already-formed OpenPGP packets (no literal wrapper) to the cert in `cert`.
fn encrypt_raw_packets(cert: &Path, packets: &[u8]) -> String {
    use openpgp::parse::Parse;
    use openpgp::serialize::stream::{Armorer, Encryptor, Message};
    use sequoia_openpgp as openpgp;
    use std::io::Write;
    let cert = openpgp::Cert::from_file(cert).unwrap();
    let p = openpgp::policy::StandardPolicy::new();
    let recipients: Vec<_> = cert
        .keys()
        .with_policy(&p, None)
        .for_transport_encryption()
        .collect();
    let mut out = Vec::new();
    {
        let m = Message::new(&mut out);
        let m = Armorer::new(m).build().unwrap();
        let mut m = Encryptor::for_recipients(m, recipients).build().unwrap();
        m.write_all(packets).unwrap();
        m.finalize().unwrap();
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn expired_and_revoked_openpgp_keys_are_refused() {
    let scratch = Site::new();
    let dir = scratch.root().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let gpg = Gpg::new(&dir, "g");
    let p = |n: &str| dir.join(n).display().to_string();
    gpg.generate("b@test", "1y", None);
    gpg.export("b@test", true, &dir.join("b.key"));
    gpg.export("b@test", false, &dir.join("b.pub"));
    // A's key was made in 2020 to last a day; B holds that certificate...
    let fpr = gpg.generate("a@test", "1d", Some("20200101T000000!"));
    gpg.export("a@test", false, &dir.join("a-expired.pub"));
    // ...while A has since extended it, and signs with it.
    run(gpg.cmd().args(["--quick-set-expire", &fpr, "1y"]));
    run(gpg.cmd().args(["--quick-set-expire", &fpr, "1y", "*"]));
    gpg.export("a@test", true, &dir.join("a.key"));
    gpg.export("a@test", false, &dir.join("a.pub"));

    let a = Site::component("a.host");
    a.peer(
        "b.hub",
        &pgp_peer(&p("a.key"), &p("b.pub"), "upstream = true"),
    );
    let b = Site::component("b.hub");
    b.peer("a.host", &pgp_peer(&p("b.key"), &p("a-expired.pub"), ""));
    let id = a.send(&[], b"from a key B thinks expired");
    let s = a.stick("s");
    export(&a, &s);
    let r = import(&b, &s);
    assert_eq!(r.json()["quarantined"], 1, "{}", r.stderr);
    assert!(!b.received().iter().any(|(i, _)| *i == id));

    // Revoked: B imports A's revocation certificate.
    let rev = std::fs::read_to_string(gpg.home.join("openpgp-revocs.d").join(format!("{fpr}.rev")))
        .unwrap();
    let rev = rev.replace(":-----BEGIN", "-----BEGIN");
    std::fs::write(dir.join("a.rev"), rev).unwrap();
    run(gpg.cmd().arg("--import").arg(dir.join("a.rev")));
    gpg.export("a@test", false, &dir.join("a-revoked.pub"));
    let b2 = Site::component("b.hub");
    b2.peer("a.host", &pgp_peer(&p("b.key"), &p("a-revoked.pub"), ""));
    let id2 = a.send(&[], b"from a revoked key");
    let s3 = a.stick("s3");
    export(&a, &s3);
    let r = import(&b2, &s3);
    assert!(
        r.json()["quarantined"].as_u64().unwrap() >= 1,
        "{}",
        r.stderr
    );
    assert!(!b2.received().iter().any(|(i, _)| *i == id2));

    // Sending to a revoked certificate is refused at the sender, with the reason.
    let a2 = Site::component("a.host");
    a2.peer(
        "b.hub",
        &pgp_peer(&p("b.key"), &p("a-revoked.pub"), "upstream = true"),
    );
    a2.send(&[], b"never leaves");
    let s4 = a2.stick("s4");
    let r = a2
        .cmd("rs-queue")
        .args(["export", "--to"])
        .args([&s4])
        .run()
        .code(75);
    assert!(r.stderr.contains("is revoked"), "{}", r.stderr);
    assert_eq!(outbound(&a2), 1, "the message stays queued");
}

/// Makes `site` (posing as B) acknowledge `ids` to A without having
/// received them, and export the acknowledgements to `dir`.
fn ack_blind<'a>(site: &Site, ids: impl Iterator<Item = &'a String>, dir: &Path) {
    let owed: String = ids
        .map(|id| format!("{id} accepted delivered a.host \n"))
        .collect();
    std::fs::create_dir_all(site.spool.join("acks/pending")).unwrap();
    std::fs::write(site.spool.join("acks/pending/a.host"), owed).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    site.cmd("rs-queue")
        .args(["export", "--to"])
        .args([dir])
        .run()
        .success();
}

#[test]
fn a_forged_acknowledgement_discards_nothing() {
    let scratch = Site::new();
    let keys = PgpKeys::new(&scratch);
    let (a, b) = pgp_pair(&keys);
    let sent = send_many(&a, 5);
    let s = a.stick("s");
    export(&a, &s);
    // Mallory, who has B's public certificate but not its key, forges
    // acknowledgements for the real IDs: signed with her own key, or unsigned.
    let forger = Site::component("b.hub");
    forger.peer(
        "a.host",
        &pgp_peer(&keys.path("m.key"), &keys.path("a.pub"), ""),
    );
    let fake = forger.stick("fake");
    std::fs::create_dir_all(fake.join("b.hub/a.host")).unwrap();
    for f in std::fs::read_dir(s.join("b.hub/a.host")).unwrap().flatten() {
        std::fs::copy(f.path(), fake.join("b.hub/a.host").join(f.file_name())).unwrap();
    }
    let plain_forger = Site::component("b.hub");
    plain_forger.peer("a.host", "");
    let plain = plain_forger.stick("plain");
    std::fs::create_dir_all(plain.join("b.hub/a.host")).unwrap();
    // Both "receive" the messages: Mallory cannot decrypt them, so she acks them blind.
    for (site, dir) in [(&forger, &fake), (&plain_forger, &plain)] {
        ack_blind(site, sent.keys(), dir);
        let r = a
            .cmd("rs-relay")
            .args(["import", "--json", "--from"])
            .args([dir])
            .run()
            .success();
        let j = r.json();
        assert_eq!(j["acks"]["discarded"], 0, "{j}");
        assert_eq!(
            j["quarantined"], 1,
            "the forged acknowledgements are kept in quarantine: {}",
            r.stderr
        );
        assert_eq!(outbound(&a), 5, "A keeps every copy");
    }
    // B's real acknowledgements do discard.
    import(&b, &s);
    export(&b, &s);
    let r = import(&a, &s).json();
    assert_eq!(r["acks"]["discarded"], 5);
    // A replayed message (captured signed copy re-sent later) is a duplicate.
    let replay = a.stick("replay");
    std::fs::create_dir_all(replay.join("b.hub/a.host")).unwrap();
    for f in std::fs::read_dir(fake.join("b.hub/a.host"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(f.path(), replay.join("b.hub/a.host").join(f.file_name())).unwrap();
    }
    let r = import(&b, &replay).json();
    assert_eq!(
        (r["duplicates"].as_u64(), r["delivered"].as_u64()),
        (Some(5), Some(0))
    );
    let ids: HashSet<String> = b.received().into_iter().map(|(i, _)| i).collect();
    assert_eq!(ids.len(), 5);
}

// ------------------------------------------------------------------ S/MIME

/// A small CA (with `openssl ca`), and certificates for A, B, a stranger,
/// an expired A and a revoked A, plus its CRL.
struct Pki {
    dir: PathBuf,
}

/// How `openssl req` makes the PKI's keys.
const RSA: &[&str] = &["-newkey", "rsa:2048"];
const EC_P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl Pki {
    fn new(site: &Site) -> Pki {
        Pki::of_keys(site, RSA)
    }

    /// A PKI whose keys `openssl req` makes with `key` (e.g. [`EC_P256`]).
    fn of_keys(site: &Site, key: &[&str]) -> Pki {
        let dir = site.root().join("pki");
        for d in ["", "newcerts"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(dir.join("crlnumber"), "1000\n").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = ca_default\n[ca_default]\ndir = {d}\ndatabase = $dir/index.txt\nnew_certs_dir = $dir/newcerts\n\
                 certificate = $dir/ca.pem\nprivate_key = $dir/ca.key\nserial = $dir/serial\ncrlnumber = $dir/crlnumber\n\
                 default_md = sha256\npolicy = any\ndefault_days = 30\ndefault_crl_days = 30\nunique_subject = no\n\
                 [any]\ncommonName = supplied\n[usr]\nkeyUsage = digitalSignature,keyEncipherment,keyAgreement\nextendedKeyUsage = emailProtection\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let pki = Pki { dir };
        run(pki.openssl(&["req", "-x509"]).args(key).args([
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]));
        for (name, dates) in [
            ("a", None),
            ("b", None),
            ("m", None),
            ("a-expired", Some(("20200101000000Z", "20200201000000Z"))),
            ("a-revoked", None),
        ] {
            run(pki.openssl(&["req"]).args(key).args([
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]));
            let mut args = vec![
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-extensions",
                "usr",
                "-in",
            ];
            let csr = format!("{name}.csr");
            let pem = format!("{name}.pem");
            args.extend([csr.as_str(), "-out", pem.as_str()]);
            if let Some((start, end)) = dates {
                args.extend(["-startdate", start, "-enddate", end]);
            }
            run(pki.openssl(&args));
        }
        run(pki.openssl(&["ca", "-config", "ca.cnf", "-revoke", "a-revoked.pem"]));
        run(pki.openssl(&["ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem"]));
        pki
    }

    fn openssl(&self, args: &[&str]) -> Command {
        let mut c = Command::new("openssl");
        c.current_dir(&self.dir).args(args);
        c
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn peer(&self, ours: &str, theirs: &str, extra: &str) -> String {
        format!(
            "protection = \"smime\"\nour_key = \"{}\"\nour_cert = \"{}\"\npeer_cert = \"{}\"\nca = \"{}\"\ncrl = \"{}\"\n{extra}",
            self.path(&format!("{ours}.key")),
            self.path(&format!("{ours}.pem")),
            self.path(&format!("{theirs}.pem")),
            self.path("ca.pem"),
            self.path("crl.pem"),
        )
    }
}

fn smime_pair(pki: &Pki) -> (Site, Site) {
    smime_pair_with(pki, "")
}

/// A and B with S/MIME; `a_extra` goes into A's configuration of B.
fn smime_pair_with(pki: &Pki, a_extra: &str) -> (Site, Site) {
    let a = Site::component("a.host");
    a.peer(
        "b.hub",
        &pki.peer(
            "a",
            "b",
            &format!("upstream = true\nack_timeout = \"10m\"\n{a_extra}"),
        ),
    );
    let b = Site::component("b.hub");
    b.peer("a.host", &pki.peer("b", "a", ""));
    (a, b)
}

#[test]
fn smime_round_trip_of_1000_messages() {
    let scratch = Site::new();
    let pki = Pki::new(&scratch);
    let (a, b) = smime_pair(&pki);
    protected_round_trip(&a, &b, "application/pkcs7-mime");
}

#[test]
fn smime_interoperates_with_openssl_both_ways() {
    let scratch = Site::new();
    let pki = Pki::new(&scratch);
    let (a, b) = smime_pair(&pki);
    // rs → openssl cms: decrypt with B's key, verify A's signature against the CA.
    a.send(&[], b"for openssl to read");
    let s = a.stick("s");
    export(&a, &s);
    let f = support::first_file(&s.join("b.hub/a.host"));
    let dec = scratch.root().join("dec.eml");
    run(pki
        .openssl(&[
            "cms", "-decrypt", "-recip", "b.pem", "-inkey", "b.key", "-out",
        ])
        .arg(&dec)
        .arg("-in")
        .arg(&f));
    let inner = scratch.root().join("inner.eml");
    run(pki
        .openssl(&["cms", "-verify", "-CAfile", "ca.pem", "-out"])
        .arg(&inner)
        .arg("-in")
        .arg(&dec));
    let m = rs::message::envelope::parse(&std::fs::read(&inner).unwrap()).unwrap();
    assert_eq!(
        m[0].content,
        rs::message::Content::Data(rs::message::Data {
            mime_type: rs::message::MimeType::octet_stream(),
            bytes: b"for openssl to read".to_vec()
        })
    );

    // openssl cms and openssl smime → rs.
    for tool in ["cms", "smime"] {
        let (id, env, _keep) = plain_envelope("a.host", &format!("made by openssl {tool}"));
        let signed = scratch.root().join(format!("{tool}-signed.eml"));
        let enc = scratch.root().join(format!("{tool}-enc.eml"));
        run(pki
            .openssl(&[tool, "-sign", "-signer", "a.pem", "-inkey", "a.key", "-in"])
            .arg(&env)
            .arg("-out")
            .arg(&signed));
        run(pki
            .openssl(&[tool, "-encrypt", "-aes256", "-in"])
            .arg(&signed)
            .arg("-out")
            .arg(&enc)
            .arg("b.pem"));
        let s2 = a.stick(&format!("from-{tool}"));
        drop_on_stick(&s2, "b.hub", "a.host", &id, &std::fs::read(&enc).unwrap());
        let r = import(&b, &s2).json();
        assert_eq!(r["delivered"], 1, "{tool}: {r}");
    }
}

#[test]
fn smime_refusals() {
    let scratch = Site::new();
    let pki = Pki::new(&scratch);
    let (_a, b) = smime_pair(&pki);
    let make = |signer: Option<&str>, env: &Path, name: &str| -> Vec<u8> {
        let input = match signer {
            Some(who) => {
                let signed = scratch.root().join(format!("{name}.signed"));
                run(pki
                    .openssl(&[
                        "cms",
                        "-sign",
                        "-signer",
                        &format!("{who}.pem"),
                        "-inkey",
                        &format!("{who}.key"),
                        "-in",
                    ])
                    .arg(env)
                    .arg("-out")
                    .arg(&signed));
                signed
            }
            None => env.to_path_buf(),
        };
        let out = scratch.root().join(format!("{name}.p7m"));
        run(pki
            .openssl(&["cms", "-encrypt", "-aes256", "-in"])
            .arg(&input)
            .arg("-out")
            .arg(&out)
            .arg("b.pem"));
        std::fs::read(out).unwrap()
    };
    let (id, env, _k) = plain_envelope("a.host", "s1");
    let mut tampered = make(Some("a"), &env, "tampered");
    let n = tampered.len();
    let pos = n - 200;
    tampered[pos] = if tampered[pos] == b'A' { b'B' } else { b'A' };
    refused(&b, &id, &tampered, "");
    let (id, env, _k) = plain_envelope("a.host", "s2");
    refused(&b, &id, &make(Some("m"), &env, "wrong"), "signature");
    let (id, env, _k) = plain_envelope("a.host", "s3");
    refused(&b, &id, &make(None, &env, "unsigned"), "not signed");
    let (id, env, _k) = plain_envelope("a.host", "s4");
    refused(&b, &id, &std::fs::read(&env).unwrap(), "not protected");
    // Expired and revoked certificates (B is configured with them as A's).
    for (which, why) in [("a-expired", "expired"), ("a-revoked", "revoked")] {
        let b2 = Site::component("b.hub");
        b2.peer("a.host", &pki.peer("b", which, ""));
        let (id, env, _k) = plain_envelope("a.host", which);
        refused(&b2, &id, &make(Some(which), &env, which), why);
    }
    // A sender whose own certificate expired refuses to send, and says why.
    let a2 = Site::component("a.host");
    a2.peer("b.hub", &pki.peer("a-expired", "b", "upstream = true"));
    a2.send(&[], b"never leaves");
    let s = a2.stick("s");
    let r = a2
        .cmd("rs-queue")
        .args(["export", "--to"])
        .args([&s])
        .run()
        .code(75);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
    assert_eq!(outbound(&a2), 1);
}

#[test]
fn a_passphrase_protected_key_is_unlocked_from_its_file_only() {
    let scratch = Site::new();
    let keys = PgpKeys::new(&scratch);
    let dir = &keys.dir;
    // A second key for A, protected by a passphrase.
    let locked = |args: &[&str]| {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &keys.gpg.home)
            .args([
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "sekret",
            ])
            .args(args);
        run(c)
    };
    locked(&[
        "--quick-gen-key",
        "Site <locked@test>",
        "future-default",
        "default",
        "1y",
    ]);
    std::fs::write(
        dir.join("locked.key"),
        locked(&["--armor", "--export-secret-keys", "locked@test"]).stdout,
    )
    .unwrap();
    std::fs::write(
        dir.join("locked.pub"),
        locked(&["--armor", "--export", "locked@test"]).stdout,
    )
    .unwrap();
    std::fs::write(dir.join("passphrase"), "sekret\n").unwrap();

    let b = Site::component("b.hub");
    b.peer(
        "a.host",
        &pgp_peer(&keys.path("b.key"), &keys.path("locked.pub"), ""),
    );
    // Without the passphrase file the key cannot be used, and the error says so.
    let a = Site::component("a.host");
    a.peer(
        "b.hub",
        &pgp_peer(
            &keys.path("locked.key"),
            &keys.path("b.pub"),
            "upstream = true",
        ),
    );
    let id = a.send(&[], b"signed with a locked key");
    let s = a.stick("s");
    let r = a
        .cmd("rs-queue")
        .args(["export", "--to"])
        .args([&s])
        .run()
        .code(75);
    assert!(r.stderr.contains("passphrase_file"), "{}", r.stderr);
    // With it, the message goes, and B verifies the signature.
    let config = a.spool.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text + &format!("passphrase_file = \"{}\"\n", keys.path("passphrase")),
    )
    .unwrap();
    let s2 = a.stick("s2");
    export(&a, &s2);
    let r = import(&b, &s2).json();
    assert_eq!(r["delivered"], 1, "{r}");
    assert!(b.received().iter().any(|(i, _)| *i == id));
}

#[test]
fn smime_tampered_signature_is_refused() {
    let scratch = Site::new();
    let pki = Pki::new(&scratch);
    let (_a, b) = smime_pair(&pki);
    let (id, env, _k) = plain_envelope("a.host", "tampered signature");
    let signed = scratch.root().join("signed.eml");
    run(pki
        .openssl(&["cms", "-sign", "-signer", "a.pem", "-inkey", "a.key", "-in"])
        .arg(&env)
        .arg("-out")
        .arg(&signed));
    // Change one base64 character inside the detached signature.
    let text = std::fs::read_to_string(&signed).unwrap();
    let at = text.rfind("smime.p7s").unwrap();
    let body = text[at..]
        .find("\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| text[at..].find("\n\n").map(|i| i + 2))
        .expect("the signature part has a body");
    let sig_start = at + body + 120;
    let mut bytes = text.into_bytes();
    bytes[sig_start] = if bytes[sig_start] == b'A' { b'B' } else { b'A' };
    std::fs::write(&signed, bytes).unwrap();
    let enc = scratch.root().join("enc.p7m");
    run(pki
        .openssl(&["cms", "-encrypt", "-aes256", "-in"])
        .arg(&signed)
        .arg("-out")
        .arg(&enc)
        .arg("b.pem"));
    refused(&b, &id, &std::fs::read(&enc).unwrap(), "signature");
}

/// Keys of other kinds than the other tests': RSA for OpenPGP (what many
/// operators' gpg keys are), elliptic-curve (P-256) certificates for S/MIME
/// (key agreement instead of key transport).
#[test]
fn rsa_openpgp_keys_and_ec_smime_certificates_work() {
    let scratch = Site::new();
    let dir = scratch.root().join("rsa");
    std::fs::create_dir_all(&dir).unwrap();
    let gpg = Gpg::new(&dir, "gnupg");
    for who in ["a", "b"] {
        let uid = format!("Site <{who}@rsa>");
        run(gpg
            .cmd()
            .args(["--quick-gen-key", &uid, "rsa3072", "sign,cert", "1y"]));
        let fpr = gpg.fingerprint(&format!("{who}@rsa"));
        run(gpg
            .cmd()
            .args(["--quick-add-key", &fpr, "rsa3072", "encr", "1y"]));
        gpg.export(&format!("{who}@rsa"), true, &dir.join(format!("{who}.key")));
        gpg.export(
            &format!("{who}@rsa"),
            false,
            &dir.join(format!("{who}.pub")),
        );
    }
    let path = |f: &str| dir.join(f).display().to_string();
    let a = Site::component("a.host");
    a.peer(
        "b.hub",
        &pgp_peer(&path("a.key"), &path("b.pub"), "upstream = true"),
    );
    let b = Site::component("b.hub");
    b.peer("a.host", &pgp_peer(&path("b.key"), &path("a.pub"), ""));
    round_trip_of(&a, &b, "application/pgp-encrypted", 50);

    let pki = Pki::of_keys(&scratch, EC_P256);
    let (a, b) = smime_pair(&pki);
    round_trip_of(&a, &b, "application/pkcs7-mime", 50);
}

/// `require_signature = false` lets a peer's unsigned messages in, but an
/// acknowledgement that is not signed by the peer's key (plain, or
/// encrypted to us without a signature: `encrypt_to_a` makes that) discards
/// nothing and is logged; the peer's signed ones still do. A and B are
/// configured so, A with `require_signature = false`.
fn unsigned_acks_discard_nothing(a: &Site, b: &Site, encrypt_to_a: impl Fn(&Path) -> Vec<u8>) {
    let sent = send_many(a, 3);
    let s = a.stick("s");
    export(a, &s);

    let plain_forger = Site::component("b.hub");
    plain_forger.peer("a.host", "");
    let plain = plain_forger.stick("plain");
    ack_blind(&plain_forger, sent.keys(), &plain);
    let acks_file = support::first_file(&plain.join("a.host/b.hub"));
    let sealed = a.stick("sealed");
    let d = sealed.join("a.host/b.hub");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join(acks_file.file_name().unwrap()),
        encrypt_to_a(&acks_file),
    )
    .unwrap();

    for dir in [&plain, &sealed] {
        let r = import(a, dir);
        let j = r.json();
        assert_eq!(j["quarantined"], 0, "{j}");
        assert_eq!(j["acks"]["discarded"], 0, "{j}");
        assert_eq!(j["acks"]["unsigned"], 3, "{j}");
        assert!(
            r.stderr.contains("not signed by b.hub's key"),
            "{}",
            r.stderr
        );
        assert_eq!(outbound(a), 3, "A keeps every copy");
    }
    // B's signed acknowledgements discard.
    import(b, &s);
    export(b, &s);
    let r = import(a, &s).json();
    assert_eq!(r["acks"]["discarded"], 3, "{r}");
    assert_eq!(outbound(a), 0);
}

#[test]
fn unsigned_openpgp_acknowledgements_discard_nothing() {
    let scratch = Site::new();
    let keys = PgpKeys::new(&scratch);
    let (a, b) = pgp_pair_with(&keys, "require_signature = false");
    unsigned_acks_discard_nothing(&a, &b, |plain| {
        let out = run(keys
            .gpg
            .cmd()
            .args(["--armor", "--encrypt", "-r", "a@test", "-o", "-"])
            .arg(plain));
        pgp_mime(&String::from_utf8(out.stdout).unwrap()).into_bytes()
    });
}

#[test]
fn unsigned_smime_acknowledgements_discard_nothing() {
    let scratch = Site::new();
    let pki = Pki::new(&scratch);
    let (a, b) = smime_pair_with(&pki, "require_signature = false");
    unsigned_acks_discard_nothing(&a, &b, |plain| {
        let enc = scratch.root().join("unsigned.p7m");
        run(pki
            .openssl(&["cms", "-encrypt", "-aes256", "-in"])
            .arg(plain)
            .arg("-out")
            .arg(&enc)
            .arg("a.pem"));
        std::fs::read(&enc).unwrap()
    });
}

/// OpenPGP works over HTTP exactly as over media and mail: requests and
/// replies are signed and encrypted, both ways, back-channel included; a
/// plain request from the same peer is refused and kept in quarantine.
#[test]
fn openpgp_over_http_both_ways() {
    let scratch = Site::new();
    let keys = PgpKeys::new(&scratch);
    let b = Site::component("b.hub");
    b.peer(
        "a.host",
        &pgp_peer(
            &keys.path("b.key"),
            &keys.path("a.pub"),
            "authentication = \"none\"",
        ),
    );
    let srv = support::http::Serve::start(&b);
    let a = Site::component("a.host");
    a.peer(
        "b.hub",
        &pgp_peer(
            &keys.path("a.key"),
            &keys.path("b.pub"),
            &format!(
                "upstream = true\nauthentication = \"none\"\nroutes = [\"{}\"]",
                srv.url
            ),
        ),
    );
    let up = send_many(&a, 50);
    let mut down = HashMap::new();
    for i in 0..50 {
        let payload = format!("back {i}").into_bytes();
        down.insert(b.send(&["--to", "a.host"], &payload), payload);
    }
    for _ in 0..3 {
        a.cmd("rs-queue").args(["flush"]).run().success();
    }
    for (site, sent) in [(&b, &up), (&a, &down)] {
        let got = site.received();
        assert_eq!(got.len(), sent.len());
        for (id, content) in &got {
            assert_eq!(sent.get(id), Some(content), "{id}");
        }
        assert_eq!(outbound(site), 0);
    }

    // The same peer without its protection: refused, kept, nothing taken.
    let plain = Site::component("a.host");
    plain.peer(
        "b.hub",
        &format!(
            "upstream = true\nauthentication = \"none\"\nroutes = [\"{}\"]",
            srv.url
        ),
    );
    plain.send(&[], b"not protected");
    let r = plain.cmd("rs-queue").args(["flush"]).run().code(75);
    assert!(r.stderr.contains("400"), "{}", r.stderr);
    assert_eq!(b.files("quarantine").len(), 1);
    assert_eq!(b.received().len(), 50);
}

/// A control message that does not carry the upstream's signature, where
/// the upstream is protected, is quarantined and changes nothing: whether
/// the peer's unsigned messages are refused outright (the default) or
/// admitted (`require_signature = false`).
#[test]
fn an_unsigned_control_message_from_a_protected_upstream_is_quarantined() {
    let scratch = Site::new();
    let keys = PgpKeys::new(&scratch);
    for extra in ["", "require_signature = false"] {
        let (a, _b) = pgp_pair_with(&keys, extra);
        let forger = Site::component("b.hub");
        let stick = forger.stick("forged");
        forger.peer("a.host", &format!("routes = [\"dir:{}\"]", stick.display()));
        forger
            .cmd("rs-relay")
            .args(["control", "a.host", "hold"])
            .run()
            .success();
        forger.cmd("rs-queue").args(["flush"]).run().success();
        let r = a.import_from(&stick).run();
        assert!(
            !a.spool.join("state/hold").exists(),
            "{extra}: obeyed: {}",
            r.stderr
        );
        assert_eq!(a.files("quarantine").len(), 1, "{extra}: {}", r.stderr);
        if !extra.is_empty() {
            assert!(r.stderr.contains("without its signature"), "{}", r.stderr);
        }
    }
}

/// A private key (or passphrase file) its group or others can read is
/// named in a warning, with the remedy, by every command.
#[test]
fn a_key_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Site::new();
    let keys = PgpKeys::new(&scratch);
    let (a, _b) = pgp_pair(&keys);
    let key = keys.path("a.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = a.cmd("rs-queue").args(["list"]).run().success();
    assert!(
        r.stderr.contains(&format!("chmod 600 {key}")) && r.stderr.contains("mode 644"),
        "{}",
        r.stderr
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = a.cmd("rs-queue").args(["list"]).run().success();
    assert!(!r.stderr.contains("chmod 600"), "{}", r.stderr);
}

/// Issue 29, item 6c: every secret file a setting names is warned about
/// while its group or others can read it, as `our_key` is: `[http] key`,
/// `[bulk] identity`, a mail route's `auth=` password file, `[shared]
/// password_file`. A certificate is public: never warned about.
#[test]
fn every_key_file_with_a_loose_mode_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let a = Site::component("a.host");
    let dir = a.root().join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| {
        let f = dir.join(name);
        std::fs::write(&f, "secret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        f
    };
    let (cert, key, identity, auth, password) = (
        file("server.pem"),
        file("server.key"),
        file("bulk.key"),
        file("smtp-auth"),
        file("db-password"),
    );
    a.append_config(&format!(
        "[http]\ncert = \"{}\"\nkey = \"{}\"\n[bulk]\nidentity = \"{}\"\n[shared]\npassword_file = \"{}\"\n",
        cert.display(),
        key.display(),
        identity.display(),
        password.display()
    ));
    a.peer(
        "b.hub",
        &format!(
            "routes = [\"smtp://127.0.0.1:1?from=a@x.test&to=b@y.test&tls=none&auth={}\"]",
            auth.display()
        ),
    );
    let r = a.cmd("rs-queue").args(["list"]).run().success();
    for (f, setting) in [
        (&key, "[http] key"),
        (&identity, "[bulk] identity"),
        (&auth, "route auth= of [[peer]] b.hub"),
        (&password, "[shared] password_file"),
    ] {
        let line = format!(
            "warning: {} ({setting}) can be read by its group or others (mode 644): chmod 600 {}",
            f.display(),
            f.display()
        );
        assert!(r.stderr.contains(&line), "no `{line}` in:\n{}", r.stderr);
    }
    assert!(
        !r.stderr.contains(&format!("chmod 600 {}", cert.display())),
        "{}",
        r.stderr
    );
    for f in [&key, &identity, &auth, &password] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let r = a.cmd("rs-queue").args(["list"]).run().success();
    assert!(!r.stderr.contains("chmod 600"), "{}", r.stderr);
}
