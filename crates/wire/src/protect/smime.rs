//! S/MIME protection with OpenSSL's CMS (RFC 8551): the envelope, in
//! canonical CRLF form, is signed with a detached signature
//! (`multipart/signed`), and that entity is encrypted for the peer
//! (`application/pkcs7-mime; smime-type=enveloped-data`), as `openssl cms
//! -sign` then `openssl cms -encrypt` would make it.
//!
//! On receipt the entity is decrypted with our key, the signature is
//! checked against the peer's certificate only (it must be the signer), and
//! that certificate against the configured trust: the CA file (with its
//! CRL, if given), or the peer's certificate itself, pinned. Expiry and
//! revocation are checked there.
//!
//! OpenSSL's CMS functions take whole buffers, so S/MIME messages are held
//! in memory, up to [`MAX_BYTES`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::store::{X509Lookup, X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::X509;

/// Largest message S/MIME protects or unprotects (it is held in memory).
pub const MAX_BYTES: usize = 512 * 1024 * 1024;

pub struct Paths {
    pub our_key: PathBuf,
    pub our_cert: PathBuf,
    pub peer_cert: PathBuf,
    pub ca: Option<PathBuf>,
    pub crl: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
}

pub struct Keys {
    key: PKey<Private>,
    cert: X509,
    peer: X509,
    store: X509Store,
}

/// Why S/MIME keys do not load, or a message is not protected or not
/// accepted. Key and certificate errors name the setting and its file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file of setting `what` cannot be read.
    #[error("{what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file of setting `what` holds no usable key, certificate or CRL.
    #[error("{what} {}: {source}", path.display())]
    Parse {
        what: &'static str,
        path: PathBuf,
        source: ErrorStack,
    },
    #[error("the peer's certificate expired on {0}")]
    PeerExpired(String),
    #[error("our certificate expired on {0}")]
    OursExpired(String),
    /// The message is larger than S/MIME takes.
    #[error("S/MIME protects messages up to {MAX_BYTES} bytes (held in memory); use OpenPGP for larger ones")]
    TooLarge,
    #[error("signing: {0}")]
    Sign(ErrorStack),
    #[error("encrypting: {0}")]
    Encrypt(ErrorStack),
    #[error("not an S/MIME message: {0}")]
    NotSmime(ErrorStack),
    #[error("cannot decrypt (not encrypted to our certificate, or tampered): {0}")]
    Decrypt(ErrorStack),
    #[error("decrypted content: {0}")]
    Content(mailparse::MailParseError),
    #[error("multipart/signed without exactly a content and a signature")]
    SignedParts,
    #[error("signature part: {0}")]
    SignaturePart(mailparse::MailParseError),
    #[error("signature: {0}")]
    Signature(ErrorStack),
    #[error("the signature is not the peer's, or not valid: {0}")]
    NotPeers(ErrorStack),
    #[error("the message is not signed, and this peer's messages must be")]
    Unsigned,
    /// OpenSSL failed outside any step above (out of memory, say).
    #[error("{0}")]
    OpenSsl(#[from] ErrorStack),
    /// Reading the message or writing the result failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The error of setting `what`'s file at `path` that does not parse.
fn bad(what: &'static str, path: &Path) -> impl FnOnce(ErrorStack) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Parse { what, path, source }
}

impl Keys {
    pub fn load(p: Paths) -> Result<Keys, Error> {
        let key_pem = read(&p.our_key, "our_key")?;
        let key = match &p.passphrase_file {
            Some(f) => {
                let pass = read(f, "passphrase_file")?;
                let pass: &[u8] = match pass.strip_suffix(b"\n") {
                    Some(s) => s,
                    None => &pass,
                };
                PKey::private_key_from_pem_passphrase(&key_pem, pass)
            }
            None => PKey::private_key_from_pem(&key_pem),
        }
        .map_err(bad("our_key", &p.our_key))?;
        let cert = X509::from_pem(&read(&p.our_cert, "our_cert")?)
            .map_err(bad("our_cert", &p.our_cert))?;
        let peer = X509::from_pem(&read(&p.peer_cert, "peer_cert")?)
            .map_err(bad("peer_cert", &p.peer_cert))?;
        let mut store = X509StoreBuilder::new()?;
        match &p.ca {
            Some(ca) => {
                for c in X509::stack_from_pem(&read(ca, "ca")?).map_err(bad("ca", ca))? {
                    store.add_cert(c)?;
                }
            }
            None => store.add_cert(peer.clone())?,
        }
        if let Some(crl) = &p.crl {
            let lookup = store.add_lookup(X509Lookup::file())?;
            lookup
                .load_crl_file(crl, openssl::ssl::SslFiletype::PEM)
                .map_err(bad("crl", crl))?;
            store.set_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL)?;
        }
        Ok(Keys {
            key,
            cert,
            peer,
            store: store.build(),
        })
    }

    /// Signs (detached) then encrypts `input` for the peer; writes the
    /// S/MIME entity with the given Date header.
    pub fn protect(
        &self,
        input: &mut (dyn Read + Send + Sync),
        out: &mut (dyn Write + Send + Sync),
        date: &str,
    ) -> Result<(), Error> {
        if self.peer.not_after() < openssl::asn1::Asn1Time::days_from_now(0)? {
            return Err(Error::PeerExpired(self.peer.not_after().to_string()));
        }
        if self.cert.not_after() < openssl::asn1::Asn1Time::days_from_now(0)? {
            return Err(Error::OursExpired(self.cert.not_after().to_string()));
        }
        let mut plain = Vec::new();
        input.take(MAX_BYTES as u64 + 1).read_to_end(&mut plain)?;
        if plain.len() > MAX_BYTES {
            return Err(Error::TooLarge);
        }
        let content = crate::message::envelope::to_crlf(&plain);
        drop(plain);
        let signature = CmsContentInfo::sign(
            Some(&self.cert),
            Some(&self.key),
            None,
            Some(&content),
            CMSOptions::DETACHED | CMSOptions::BINARY,
        )
        .and_then(|c| c.to_der())
        .map_err(Error::Sign)?;
        let boundary = format!("=_rs_smime_{}", hex(&random(12)));
        let mut signed = format!(
            "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=\"sha-256\";\r\n boundary=\"{boundary}\"\r\n\r\n\
             This is an S/MIME signed message\r\n--{boundary}\r\n"
        )
        .into_bytes();
        signed.extend_from_slice(&content);
        drop(content);
        signed.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\
                 Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n{}\r\n--{boundary}--\r\n",
                base64_lines(&signature, "\r\n")
            )
            .as_bytes(),
        );
        let mut peers = Stack::new()?;
        peers.push(self.peer.clone())?;
        let encrypted =
            CmsContentInfo::encrypt(&peers, &signed, Cipher::aes_256_cbc(), CMSOptions::BINARY)
                .and_then(|c| c.to_der())
                .map_err(Error::Encrypt)?;
        drop(signed);
        write!(
            out,
            "MIME-Version: 1.0\nMessage-ID: <protected.{}@rs>\nDate: {date}\nSubject: rs protected message\n\
             Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\n\
             Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"smime.p7m\"\n\n{}",
            hex(&random(8)),
            base64_lines(&encrypted, "\n")
        )?;
        Ok(())
    }

    /// Decrypts `entity` (a whole S/MIME message), checks the signature is
    /// the peer's, and writes the signed content (the envelope) to `out`;
    /// whether it was signed (it may not be only if not required).
    pub fn unprotect(
        &self,
        entity: &[u8],
        out: &mut (dyn Write + Send + Sync),
        require_signature: bool,
    ) -> Result<bool, Error> {
        let cms = CmsContentInfo::smime_read_cms(entity).map_err(Error::NotSmime)?;
        let inner = cms.decrypt(&self.key, &self.cert).map_err(Error::Decrypt)?;
        let mail = mailparse::parse_mail(&inner).map_err(Error::Content)?;
        let (content, signed): (&[u8], bool) = match mail.ctype.mimetype.as_str() {
            "multipart/signed" => {
                if mail.subparts.len() != 2 {
                    return Err(Error::SignedParts);
                }
                let content = mail.subparts[0].raw_bytes;
                let sig = mail.subparts[1]
                    .get_body_raw()
                    .map_err(Error::SignaturePart)?;
                let mut sig = CmsContentInfo::from_der(&sig).map_err(Error::Signature)?;
                let mut signers = Stack::new()?;
                signers.push(self.peer.clone())?;
                sig.verify(
                    Some(&signers),
                    Some(&self.store),
                    Some(content),
                    None,
                    CMSOptions::NOINTERN,
                )
                .map_err(Error::NotPeers)?;
                (content, true)
            }
            _ if require_signature => return Err(Error::Unsigned),
            _ => (&inner, false),
        };
        out.write_all(content)?;
        Ok(signed)
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    let _ = getrandom::fill(&mut b);
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_lines(bytes: &[u8], eol: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 64 * eol.len() + eol.len());
    for chunk in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str(eol);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_setting_and_its_file() {
        let check = |e: Error, expected: &str| assert_eq!(e.to_string(), expected);
        check(
            Error::Read {
                what: "our_cert",
                path: "/etc/rs/me.pem".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
            "our_cert /etc/rs/me.pem: entity not found",
        );
        check(
            Error::PeerExpired("Jan  1 00:00:00 2026 GMT".into()),
            "the peer's certificate expired on Jan  1 00:00:00 2026 GMT",
        );
        check(
            Error::OursExpired("Jan  1 00:00:00 2026 GMT".into()),
            "our certificate expired on Jan  1 00:00:00 2026 GMT",
        );
        check(
            Error::TooLarge,
            "S/MIME protects messages up to 536870912 bytes (held in memory); use OpenPGP for larger ones",
        );
        check(
            Error::SignedParts,
            "multipart/signed without exactly a content and a signature",
        );
        check(
            Error::Unsigned,
            "the message is not signed, and this peer's messages must be",
        );
        let parse = Error::Parse {
            what: "ca",
            path: "/etc/rs/ca.pem".into(),
            source: ErrorStack::get(),
        };
        assert!(
            parse.to_string().starts_with("ca /etc/rs/ca.pem: "),
            "{parse}"
        );
        let refused = Error::NotPeers(ErrorStack::get());
        assert!(refused
            .to_string()
            .starts_with("the signature is not the peer's, or not valid: "));
    }
}
