//! A protected message past its kind: the OpenPGP/MIME wrapper (headers,
//! boundary, the way to the armored part; the OpenPGP packets themselves
//! are Sequoia's, fuzzed there) and S/MIME (CMS through OpenSSL with a real
//! key and certificate). Unprotecting never panics and never yields
//! content without a signature that is required.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rs::protect::{smime, OpenPgpError, OpenPgpKeys, Protector};
use rs::time::Timestamp;
use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::SystemTime;

/// Reads what the wrapper hands it to the end, decrypting nothing.
struct Drain;

impl OpenPgpKeys for Drain {
    fn protect(
        &self,
        _input: &mut (dyn Read + Send + Sync),
        _out: &mut (dyn Write + Send + Sync),
    ) -> Result<(), OpenPgpError> {
        Err("not used".into())
    }

    fn unprotect(
        &self,
        input: &mut (dyn Read + Send + Sync),
        _out: &mut (dyn Write + Send + Sync),
        _require_signature: bool,
        _now: SystemTime,
    ) -> Result<bool, OpenPgpError> {
        let mut sink = Vec::new();
        input.read_to_end(&mut sink)?;
        Err("drained".into())
    }
}

/// A key and self-signed certificate, made once, for both ends.
fn smime_keys() -> smime::Keys {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
        let dir = std::env::temp_dir().join(format!("rs-fuzz-smime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "a.host").unwrap();
        let name = name.build();
        let mut b = x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(3650).unwrap()).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        std::fs::write(dir.join("key.pem"), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.to_pem().unwrap()).unwrap();
        dir
    });
    smime::Keys::load(smime::Paths {
        our_key: dir.join("key.pem"),
        our_cert: dir.join("cert.pem"),
        peer_cert: dir.join("cert.pem"),
        ca: None,
        crl: None,
        passphrase_file: None,
    })
    .expect("the keys load")
}

fn protectors() -> &'static [Protector] {
    static P: OnceLock<Vec<Protector>> = OnceLock::new();
    P.get_or_init(|| {
        vec![
            Protector::OpenPgp {
                keys: Box::new(Drain),
                require_signature: true,
            },
            Protector::Smime {
                keys: smime_keys(),
                require_signature: true,
            },
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let now = Timestamp::from_secs(1_800_000_000);
    for p in protectors() {
        let mut out = Vec::new();
        if let Ok(signed) = p.unprotect(&mut &data[..], &mut out, now) {
            assert!(signed, "content without the required signature");
        }
    }
});
