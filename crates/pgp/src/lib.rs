//! OpenPGP protection for rs with Sequoia (OpenSSL backend): sign then
//! encrypt into one OpenPGP message (RFC 3156 section 6.2, what `gpg --sign
//! --encrypt` makes), and decrypt then verify, as streams.
//!
//! A crate of its own because Sequoia's OpenSSL backend initialises OpenSSL
//! from a static constructor, which runs in every binary that has this
//! crate in its dependency graph: `rs-send` must not pay for that.

mod armor;
mod error;
mod handoff;

pub use error::Error;

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::crypto::{KeyPair, Password, SessionKey};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Signer};
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, Fingerprint, KeyHandle};

/// How much plaintext the decryptor holds back until it has checked the
/// signature at the end (it releases the rest as it goes): bounds memory.
const BUFFER: usize = 1024 * 1024;

pub struct Keys {
    /// Our transferable secret key.
    ours: Cert,
    /// The peer's certificate.
    peer: Cert,
    password: Option<Password>,
}

fn policy() -> StandardPolicy<'static> {
    StandardPolicy::new()
}

impl Keys {
    pub fn load(
        our_key: &Path,
        peer_cert: &Path,
        passphrase_file: Option<&Path>,
    ) -> Result<Keys, Error> {
        let cert = |what, path: &Path| {
            Cert::from_file(path).map_err(|cause| Error::Cert {
                what,
                path: path.to_path_buf(),
                cause,
            })
        };
        let ours = cert("our_key", our_key)?;
        if !ours.is_tsk() {
            return Err(Error::NoSecretKey {
                path: our_key.to_path_buf(),
            });
        }
        let peer = cert("peer_cert", peer_cert)?;
        let password = match passphrase_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| Error::Passphrase {
                    path: p.to_path_buf(),
                    source,
                })?;
                Some(Password::from(text.trim_end_matches(['\n', '\r'])))
            }
            None => None,
        };
        Ok(Keys {
            ours,
            peer,
            password,
        })
    }

    pub fn peer_fingerprint(&self) -> Fingerprint {
        self.peer.fingerprint()
    }

    fn unlock(
        &self,
        key: openpgp::packet::Key<
            openpgp::packet::key::SecretParts,
            openpgp::packet::key::UnspecifiedRole,
        >,
    ) -> Result<KeyPair, Error> {
        let key = if key.has_unencrypted_secret() {
            key
        } else {
            let password = self.password.as_ref().ok_or(Error::NeedPassphrase)?;
            key.decrypt_secret(password).map_err(Error::Unlock)?
        };
        key.into_keypair().map_err(Error::Sequoia)
    }

    fn signer(&self) -> Result<KeyPair, Error> {
        let p = policy();
        usable(&self.ours, "our key")?;
        let key = self
            .ours
            .keys()
            .secret()
            .with_policy(&p, None)
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
            .next()
            .ok_or_else(|| Error::NoSigningKey(self.ours.fingerprint()))?;
        self.unlock(key.key().clone().role_into_unspecified())
    }

    /// Signs and encrypts `input` for the peer, writing an armored OpenPGP
    /// message to `out` (armored by [`armor`], not by Sequoia: faster).
    pub fn protect(
        &self,
        input: &mut (dyn Read + Send + Sync),
        out: &mut (dyn Write + Send + Sync),
    ) -> Result<(), Error> {
        let p = policy();
        usable(&self.peer, "the peer's certificate")?;
        let recipients: Vec<_> = self
            .peer
            .keys()
            .with_policy(&p, None)
            .supported()
            .alive()
            .revoked(false)
            .for_transport_encryption()
            .collect();
        if recipients.is_empty() {
            return Err(Error::NoEncryptionKey(self.peer.fingerprint()));
        }
        let signer = self.signer()?;
        // Sequoia signs and encrypts here; a second thread armors and writes.
        let (tx, rx) = handoff::channel();
        std::thread::scope(|s| {
            let armorer = s.spawn(move || -> io::Result<()> {
                let mut armored = armor::Armorer::new(out)?;
                io::copy(&mut handoff::ChunkReader::new(rx), &mut armored)?;
                armored.finish()?;
                Ok(())
            });
            let sealed = (|| -> Result<(), Error> {
                let mut sink = handoff::ChunkWriter::new(tx);
                let message = Message::new(&mut sink);
                let message = Encryptor::for_recipients(message, recipients)
                    .build()
                    .map_err(Error::Sequoia)?;
                let message = Signer::new(message, signer)
                    .map_err(Error::Sequoia)?
                    .build()
                    .map_err(Error::Sequoia)?;
                let mut message = LiteralWriter::new(message)
                    .build()
                    .map_err(Error::Sequoia)?;
                io::copy(input, &mut message).map_err(Error::Encrypt)?;
                message.finalize().map_err(Error::Sequoia)?;
                Ok(sink.finish()?)
            })();
            let armored = armorer.join().map_err(|_| Error::Panicked("armor"))?;
            // Whichever side failed first has the cause: the other one
            // only saw the stream break (and the armor was left unfinished).
            match (sealed, armored) {
                (Err(e), Err(a)) if handoff::is_abandoned(&a) => Err(e),
                (_, Err(a)) => Err(Error::Armor(a)),
                (sealed, Ok(())) => sealed,
            }
        })
    }

    /// Decrypts `input` (an OpenPGP message, armored or not) into `out`,
    /// requiring a valid signature by the peer when `require_signature`;
    /// says whether the peer's valid signature was there (it may be absent
    /// only when not required). On error, `out` may hold a prefix of the
    /// plaintext: discard it.
    pub fn unprotect(
        &self,
        input: &mut (dyn Read + Send + Sync),
        out: &mut (dyn Write + Send + Sync),
        require_signature: bool,
        now: SystemTime,
    ) -> Result<bool, Error> {
        // Armored (as RFC 3156 has it) or binary: look at the start.
        let mut prefix = Vec::with_capacity(64);
        input.take(64).read_to_end(&mut prefix)?;
        let input = io::Cursor::new(prefix).chain(input);
        if !armor::is_armored(input.get_ref().0.get_ref()) {
            return self.open(input, out, require_signature, now);
        }
        // A second thread reads and dearmors; Sequoia decrypts and verifies here.
        let (tx, rx) = handoff::channel();
        std::thread::scope(|s| {
            let dearmorer = s.spawn(move || handoff::pump(armor::Dearmor::new(input), tx));
            let opened = self.open(handoff::ChunkReader::new(rx), out, require_signature, now);
            // Broken armor (a message cut short on the way, say) is the
            // cause of whatever Sequoia made of the stream it broke.
            dearmorer.join().map_err(|_| Error::Panicked("dearmor"))??;
            opened
        })
    }

    /// Decrypts and verifies a binary OpenPGP message; whether the peer signed it.
    fn open(
        &self,
        input: impl Read + Send + Sync,
        out: &mut (dyn Write + Send + Sync),
        require_signature: bool,
        now: SystemTime,
    ) -> Result<bool, Error> {
        let p = policy();
        let helper = Helper {
            keys: self,
            require_signature,
            now,
            signed: false,
        };
        let mut decryptor = DecryptorBuilder::from_reader(input)
            .map_err(Error::NotOpenPgp)?
            .buffer_size(BUFFER)
            .with_policy(&p, now, helper)
            .map_err(Error::Sequoia)?;
        io::copy(&mut decryptor, out).map_err(Error::Open)?;
        // The whole message is read: `check` has run.
        Ok(decryptor.helper_ref().signed)
    }
}

/// Refuses a certificate that is revoked, expired or otherwise invalid now.
fn usable(cert: &Cert, what: &'static str) -> Result<(), Error> {
    let p = policy();
    let vc = cert.with_policy(&p, None).map_err(|cause| Error::Invalid {
        what,
        fingerprint: cert.fingerprint(),
        cause,
    })?;
    if let openpgp::types::RevocationStatus::Revoked(_) = vc.revocation_status() {
        return Err(Error::Revoked {
            what,
            fingerprint: cert.fingerprint(),
        });
    }
    vc.alive().map_err(|cause| Error::Expired {
        what,
        fingerprint: cert.fingerprint(),
        cause,
    })
}

struct Helper<'a> {
    keys: &'a Keys,
    require_signature: bool,
    #[allow(dead_code)]
    now: SystemTime,
    /// Set by `check`: the peer's valid signature was found.
    signed: bool,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(vec![self.keys.peer.clone()])
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut signed = false;
        let mut encrypted = false;
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::Encryption { .. } => encrypted = true,
                MessageLayer::Compression { .. } => {}
                MessageLayer::SignatureGroup { results } => {
                    for r in results {
                        match r {
                            Ok(good)
                                if good.ka.cert().fingerprint() == self.keys.peer.fingerprint() =>
                            {
                                signed = true
                            }
                            Ok(good) => {
                                return Err(anyhow_msg(format!(
                                    "signed by {}, not by the peer's key {}",
                                    good.ka.cert().fingerprint(),
                                    self.keys.peer.fingerprint()
                                )))
                            }
                            Err(e) => return Err(anyhow_msg(format!("bad signature: {e}"))),
                        }
                    }
                }
            }
        }
        if !encrypted {
            return Err(anyhow_msg("the message is not encrypted".into()));
        }
        if self.require_signature && !signed {
            return Err(anyhow_msg(
                "the message is not signed, and this peer's messages must be".into(),
            ));
        }
        self.signed = signed;
        Ok(())
    }
}

fn anyhow_msg(s: String) -> openpgp::anyhow::Error {
    openpgp::anyhow::anyhow!(s)
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        let p = policy();
        let keys: Vec<_> = self
            .keys
            .ours
            .keys()
            .secret()
            .with_policy(&p, None)
            .supported()
            .for_transport_encryption()
            .collect();
        for pkesk in pkesks {
            for ka in &keys {
                if pkesk
                    .recipient()
                    .is_some_and(|r| !r.aliases(ka.key().key_handle()))
                {
                    continue;
                }
                let Ok(mut pair) = self.keys.unlock(ka.key().clone().role_into_unspecified())
                else {
                    continue;
                };
                if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo) {
                    if decrypt(algo, &sk) {
                        return Ok(Some(self.keys.ours.clone()));
                    }
                }
            }
        }
        Err(anyhow_msg(
            "cannot decrypt: not encrypted to our key".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::CertBuilder;
    use openpgp::serialize::Serialize;

    /// A's keys (sending to B) and B's (receiving from A), in `dir`.
    fn pair(dir: &Path) -> (Keys, Keys) {
        let mut files = Vec::new();
        for who in ["a", "b"] {
            let (cert, _) = CertBuilder::general_purpose(Some(format!("{who} <{who}@test>")))
                .generate()
                .unwrap();
            let key = dir.join(format!("{who}.key"));
            let public = dir.join(format!("{who}.pub"));
            cert.as_tsk()
                .serialize(&mut std::fs::File::create(&key).unwrap())
                .unwrap();
            cert.serialize(&mut std::fs::File::create(&public).unwrap())
                .unwrap();
            files.push((key, public));
        }
        let a = Keys::load(&files[0].0, &files[1].1, None).unwrap();
        let b = Keys::load(&files[1].0, &files[0].1, None).unwrap();
        (a, b)
    }

    fn protect(a: &Keys, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        a.protect(&mut &data[..], &mut out).unwrap();
        out
    }

    /// B's reading of `sealed`.
    fn unprotect(b: &Keys, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        b.unprotect(&mut &sealed[..], &mut out, true, SystemTime::now())
            .map(|signed| {
                assert!(signed);
                out
            })
    }

    /// A writer that fails after `0` bytes, as a full disk does.
    struct Full(usize);
    impl Write for Full {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("No space left on device"));
            }
            let n = data.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn round_trips_across_many_chunks_and_names_the_failures_of_either_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = pair(dir.path());
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i * 7 + i / 4099) as u8)
            .collect();
        let sealed = protect(&a, &data);
        assert!(sealed.starts_with(b"-----BEGIN PGP MESSAGE-----"));
        assert_eq!(unprotect(&b, &sealed).unwrap(), data);
        assert!(unprotect(&a, &sealed).is_err(), "only B can read it");

        // Armor that stops short, and armor with garbage in the middle:
        // the dearmoring thread's error reaches the caller.
        let text = String::from_utf8(sealed.clone()).unwrap();
        let cut = &text[..text[..text.len() * 3 / 5].rfind('\n').unwrap() + 1];
        let err = unprotect(&b, cut.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("armor ends before"), "{err}");
        let mut lines: Vec<&str> = text.lines().collect();
        let mid = lines.len() / 2;
        lines.insert(mid, "!!!! not base64 !!!!");
        let err = unprotect(&b, lines.join("\n").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad armor"), "{err}");

        // A full disk under the armoring thread is the error reported.
        let err = a
            .protect(&mut &data[..], &mut Full(100_000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("No space left on device"), "{err}");
        // An input that fails: its error, and no armor footer that would
        // make the cut message look whole.
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("Input/output error"));
                }
                let n = out.len().min(self.0);
                out[..n].fill(b'x');
                self.0 -= n;
                Ok(n)
            }
        }
        let mut cut = Vec::new();
        let err = a
            .protect(&mut Failing(1_000_000), &mut cut)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Input/output error"), "{err}");
        assert!(!String::from_utf8_lossy(&cut).contains("-----END"));
        // And under the decrypting side.
        let err = b
            .unprotect(
                &mut &sealed[..],
                &mut Full(100_000),
                true,
                SystemTime::now(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("No space left on device"), "{err}");
    }
}
