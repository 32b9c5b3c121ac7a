//! Why OpenPGP keys do not load, or a message is not protected or not
//! accepted. Key errors name the setting and its file, or the key's
//! fingerprint; the message is what rs records (a quarantine reason, a
//! deferral, a configuration error), as Sequoia or the armor says it.

use std::io;
use std::path::PathBuf;

use sequoia_openpgp as openpgp;

use openpgp::anyhow;
use openpgp::Fingerprint;

/// Why OpenPGP protection failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file of setting `what` (`our_key`, `peer_cert`) does not hold
    /// a certificate.
    #[error("{what} {}: {cause}", path.display())]
    Cert {
        what: &'static str,
        path: PathBuf,
        cause: anyhow::Error,
    },
    /// `our_key` holds a certificate without its secret key.
    #[error("our_key {} holds no secret key (export it with gpg --export-secret-keys)", path.display())]
    NoSecretKey { path: PathBuf },
    /// The passphrase file cannot be read.
    #[error("passphrase_file {}: {source}", path.display())]
    Passphrase { path: PathBuf, source: io::Error },
    #[error("our secret key is protected by a passphrase: give passphrase_file")]
    NeedPassphrase,
    #[error("cannot unlock our secret key: {0}")]
    Unlock(anyhow::Error),
    /// `what` (our key, the peer's certificate) is not valid under the
    /// standard policy.
    #[error("{what} {fingerprint} is not valid: {cause}")]
    Invalid {
        what: &'static str,
        fingerprint: Fingerprint,
        cause: anyhow::Error,
    },
    #[error("{what} {fingerprint} is revoked")]
    Revoked {
        what: &'static str,
        fingerprint: Fingerprint,
    },
    #[error("{what} {fingerprint} has expired: {cause}")]
    Expired {
        what: &'static str,
        fingerprint: Fingerprint,
        cause: anyhow::Error,
    },
    #[error("our key {0} has no valid signing key (expired or revoked?)")]
    NoSigningKey(Fingerprint),
    #[error("the peer's certificate {0} has no valid encryption key (expired or revoked?)")]
    NoEncryptionKey(Fingerprint),
    /// Reading the plaintext to encrypt failed.
    #[error("encrypting: {0}")]
    Encrypt(io::Error),
    /// Writing the armored message failed.
    #[error("writing the armored message: {0}")]
    Armor(io::Error),
    /// A helper thread (`armor`, `dearmor`) panicked.
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
    #[error("not an OpenPGP message: {0}")]
    NotOpenPgp(anyhow::Error),
    /// Decrypting or verifying failed: what Sequoia or the helper said
    /// (a bad signature, not encrypted to us, the output not written).
    #[error("{}", io_cause(.0))]
    Open(io::Error),
    /// Sequoia failed setting up a step (its message as it gives it).
    #[error("{0}")]
    Sequoia(anyhow::Error),
    /// Reading the input, or the armor around it, failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What broke a decryption: the error inside the I/O error Sequoia
/// reports, when there is one.
fn io_cause(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: Error, expected: &str) {
        assert_eq!(e.to_string(), expected);
    }

    #[test]
    fn messages_name_the_setting_the_file_or_the_key() {
        check(
            Error::Cert {
                what: "peer_cert",
                path: "/etc/rs/peer.pgp".into(),
                cause: anyhow::anyhow!("Malformed packet"),
            },
            "peer_cert /etc/rs/peer.pgp: Malformed packet",
        );
        check(
            Error::NoSecretKey {
                path: "/etc/rs/me.pgp".into(),
            },
            "our_key /etc/rs/me.pgp holds no secret key (export it with gpg --export-secret-keys)",
        );
        check(
            Error::Passphrase {
                path: "/etc/rs/pass".into(),
                source: io::Error::from(io::ErrorKind::NotFound),
            },
            "passphrase_file /etc/rs/pass: entity not found",
        );
        check(
            Error::NeedPassphrase,
            "our secret key is protected by a passphrase: give passphrase_file",
        );
        let fp: Fingerprint = "0123456789ABCDEF0123456789ABCDEF01234567".parse().unwrap();
        check(
            Error::Revoked {
                what: "the peer's certificate",
                fingerprint: fp.clone(),
            },
            "the peer's certificate 0123456789ABCDEF0123456789ABCDEF01234567 is revoked",
        );
        check(
            Error::NoSigningKey(fp),
            "our key 0123456789ABCDEF0123456789ABCDEF01234567 has no valid signing key (expired or revoked?)",
        );
        check(Error::Panicked("armor"), "the armor thread panicked");
        check(
            Error::Armor(io::Error::other("No space left on device")),
            "writing the armored message: No space left on device",
        );
        check(
            Error::Open(io::Error::other("bad signature: x")),
            "bad signature: x",
        );
        check(
            Error::Open(io::Error::from(io::ErrorKind::UnexpectedEof)),
            "unexpected end of file",
        );
    }
}
