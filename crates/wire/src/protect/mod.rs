//! Protection of what travels between peers (SPEC.md section 8): OpenPGP
//! as PGP/MIME (RFC 3156) or S/MIME (RFC 8551), sign then encrypt on the
//! way out, decrypt then verify on the way in, per peer.
//!
//! A protected file is a MIME entity wrapping the plain envelope, the same
//! on every route: on removable media it is the file, by mail it is the
//! email. The envelope inside is exactly the plain one.
//!
//! Architecture invariant: nothing from a peer whose protection is
//! configured is parsed, delivered or applied (acknowledgements included)
//! unless it decrypted and carried a valid signature by that peer's key
//! (or the peer is configured not to require signatures). Whatever fails
//! goes to quarantine with the reason and is never acknowledged, so the
//! sender keeps its copy.

pub mod smime;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use mailparse::MailHeaderMap;

use crate::config::{Peer, ProtectionKind};
use crate::time::Timestamp;

/// OpenPGP keys for one peer: what the `rs-pgp` crate provides. The
/// layers below the programs do not depend on it, so that commands which
/// protect nothing (rs-send) do not load OpenSSL; the programs that send
/// or receive install a loader on the spools they open ([`OpenPgp`]).
pub trait OpenPgpKeys: Send + Sync {
    /// Signs and encrypts `input` for the peer: an armored OpenPGP message.
    fn protect(
        &self,
        input: &mut (dyn Read + Send + Sync),
        out: &mut (dyn Write + Send + Sync),
    ) -> Result<(), OpenPgpError>;
    /// Decrypts and verifies an OpenPGP message into `out`; whether the
    /// peer's valid signature was there (absent only if not required).
    fn unprotect(
        &self,
        input: &mut (dyn Read + Send + Sync),
        out: &mut (dyn Write + Send + Sync),
        require_signature: bool,
        now: SystemTime,
    ) -> Result<bool, OpenPgpError>;
}

/// Why the OpenPGP implementation failed, as it says it (its own error
/// type, which the library does not name: see [`OpenPgpKeys`]).
pub type OpenPgpError = Box<dyn std::error::Error + Send + Sync>;

/// Loads OpenPGP keys: our secret key file, the peer's certificate file,
/// an optional passphrase file.
pub type OpenPgpLoader =
    fn(&Path, &Path, Option<&Path>) -> Result<Box<dyn OpenPgpKeys>, OpenPgpError>;

/// OpenPGP for a spool's peers: the loader a program installs on the
/// spools it opens (`Spool::install`); without it, a peer with
/// `protection = "openpgp"` cannot be served by that program.
#[derive(Clone, Copy)]
pub struct OpenPgp(pub OpenPgpLoader);

impl OpenPgp {
    /// The loader installed on `spool`, if any.
    pub fn of(spool: &crate::spool::Spool) -> Option<OpenPgpLoader> {
        spool.part::<OpenPgp>().map(|o| o.0)
    }
}

/// Loaded keys for one peer.
pub enum Protector {
    OpenPgp {
        keys: Box<dyn OpenPgpKeys>,
        require_signature: bool,
    },
    Smime {
        keys: smime::Keys,
        require_signature: bool,
    },
}

/// How an inbound file is wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Plain,
    PgpMime,
    Smime,
    /// A signed-only or otherwise protected form rs does not accept.
    Other,
}

/// Why protection failed, by what the caller does about it: the keys are
/// a configuration problem (the peer's traffic stops), a refused message
/// goes to quarantine with the reason, an I/O error is retried. Each holds
/// the message of the error below it (from [`smime::Error`] or the OpenPGP
/// implementation), which names the setting, file or peer concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The keys or certificates cannot be used (a configuration problem).
    #[error("{0}")]
    Keys(String),
    /// An inbound message is refused (tampered, unsigned, wrong signer...).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
}

fn required(p: &Option<PathBuf>, what: &str, peer: &Peer) -> Result<PathBuf, Error> {
    p.clone().ok_or_else(|| {
        Error::Keys(format!(
            "[[peer]] {}: protection = \"{}\" needs {what}",
            peer.id, peer.protection
        ))
    })
}

impl Protector {
    /// The protection configured for `peer`, keys loaded; `None` when the
    /// peer's messages travel unprotected.
    /// `openpgp`: the program's OpenPGP, if it has it ([`OpenPgp::of`]).
    pub fn for_peer(
        peer: &Peer,
        openpgp: Option<OpenPgpLoader>,
    ) -> Result<Option<Protector>, Error> {
        let require_signature = peer.require_signature.unwrap_or(true);
        Ok(match peer.protection {
            ProtectionKind::None => None,
            ProtectionKind::OpenPgp => Some(Protector::OpenPgp {
                keys: openpgp.ok_or_else(|| {
                    Error::Keys("this command was built without OpenPGP support".into())
                })?(
                    &required(&peer.our_key, "our_key", peer)?,
                    &required(&peer.peer_cert, "peer_cert", peer)?,
                    peer.passphrase_file.as_deref(),
                )
                .map_err(|e| Error::Keys(e.to_string()))?,
                require_signature,
            }),
            ProtectionKind::Smime => Some(Protector::Smime {
                keys: smime::Keys::load(smime::Paths {
                    our_key: required(&peer.our_key, "our_key", peer)?,
                    our_cert: required(&peer.our_cert, "our_cert", peer)?,
                    peer_cert: required(&peer.peer_cert, "peer_cert", peer)?,
                    ca: peer.ca.clone(),
                    crl: peer.crl.clone(),
                    passphrase_file: peer.passphrase_file.clone(),
                })
                .map_err(|e| Error::Keys(e.to_string()))?,
                require_signature,
            }),
        })
    }

    /// Writes `input` (a plain envelope) signed and encrypted for the peer,
    /// as a MIME entity, to `out`.
    pub fn protect(
        &self,
        input: &mut (dyn Read + Send + Sync),
        out: &mut (dyn Write + Send + Sync),
        now: Timestamp,
    ) -> Result<(), Error> {
        match self {
            Protector::OpenPgp { keys, .. } => {
                let boundary = random_boundary("pgp");
                write!(
                    out,
                    "MIME-Version: 1.0\nMessage-ID: <protected.{}@rs>\nDate: {}\nSubject: rs protected message\n\
                     Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n boundary=\"{boundary}\"\n\n\
                     This is an OpenPGP/MIME encrypted message (RFC 3156).\n\
                     --{boundary}\nContent-Type: application/pgp-encrypted\nContent-Description: PGP/MIME version identification\n\nVersion: 1\n\n\
                     --{boundary}\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\n\
                     Content-Description: OpenPGP encrypted message\nContent-Disposition: inline; filename=\"encrypted.asc\"\n\n",
                    random_hex(8),
                    date(now),
                )
                .map_err(|e| Error::Io(e.to_string()))?;
                keys.protect(input, out)
                    .map_err(|e| Error::Keys(e.to_string()))?;
                write!(out, "\n--{boundary}--\n").map_err(|e| Error::Io(e.to_string()))
            }
            Protector::Smime { keys, .. } => keys
                .protect(input, out, &date(now))
                .map_err(|e| Error::Keys(e.to_string())),
        }
    }

    /// Decrypts and verifies a protected entity from `input` into `out`
    /// (the plain envelope); whether the peer's valid signature was there
    /// (it may be absent only where `require_signature = false`). On error
    /// `out` may hold part of the plaintext: the caller discards it.
    pub fn unprotect(
        &self,
        input: &mut (dyn Read + Send + Sync),
        out: &mut (dyn Write + Send + Sync),
        now: Timestamp,
    ) -> Result<bool, Error> {
        let mut reader = BufReader::with_capacity(256 * 1024, input);
        let top = header_block(&mut reader)?;
        let wire = wire_of(&top);
        let when =
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(now.as_secs().max(0) as u64);
        match (self, wire) {
            (
                Protector::OpenPgp {
                    keys,
                    require_signature,
                },
                Wire::PgpMime,
            ) => {
                let boundary = boundary_of(&top)?;
                skip_to_armor(&mut reader, &boundary)?;
                keys.unprotect(&mut reader, out, *require_signature, when)
                    .map_err(|e| Error::Refused(e.to_string()))
            }
            (
                Protector::Smime {
                    keys,
                    require_signature,
                },
                Wire::Smime,
            ) => {
                let mut whole = top;
                reader
                    .take(smime::MAX_BYTES as u64)
                    .read_to_end(&mut whole)
                    .map_err(|e| Error::Io(e.to_string()))?;
                keys.unprotect(&whole, out, *require_signature)
                    .map_err(|e| Error::Refused(e.to_string()))
            }
            (_, Wire::Plain) => Err(Error::Refused(
                "the message is not protected, and this peer's messages must be".into(),
            )),
            (Protector::OpenPgp { .. }, other) => Err(Error::Refused(format!(
                "expected OpenPGP/MIME, found {other:?}"
            ))),
            (Protector::Smime { .. }, other) => {
                Err(Error::Refused(format!("expected S/MIME, found {other:?}")))
            }
        }
    }

    /// Whether an unprotected message from this peer may be accepted.
    pub fn accepts_plain(&self) -> bool {
        match self {
            Protector::OpenPgp {
                require_signature, ..
            }
            | Protector::Smime {
                require_signature, ..
            } => !require_signature,
        }
    }
}

/// How the entity whose beginning is `prefix` is wrapped.
pub fn wire(prefix: &[u8]) -> Wire {
    wire_of(prefix)
}

fn wire_of(headers: &[u8]) -> Wire {
    let Ok((hs, _)) = mailparse::parse_headers(headers) else {
        return Wire::Plain;
    };
    let Some(ct) = hs.get_first_value("Content-Type") else {
        return Wire::Plain;
    };
    let ct = mailparse::parse_content_type(&ct);
    match ct.mimetype.as_str() {
        "multipart/encrypted"
            if ct
                .params
                .get("protocol")
                .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-encrypted")) =>
        {
            Wire::PgpMime
        }
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => Wire::Smime,
        "multipart/encrypted" | "multipart/signed" => Wire::Other,
        _ => Wire::Plain,
    }
}

fn boundary_of(headers: &[u8]) -> Result<String, Error> {
    let (hs, _) = mailparse::parse_headers(headers).map_err(|e| Error::Refused(e.to_string()))?;
    let ct = mailparse::parse_content_type(&hs.get_first_value("Content-Type").unwrap_or_default());
    ct.params
        .get("boundary")
        .cloned()
        .ok_or_else(|| Error::Refused("multipart/encrypted without a boundary".into()))
}

/// Reads the top header block (to the blank line), at most 64 KiB.
fn header_block(r: &mut dyn BufRead) -> Result<Vec<u8>, Error> {
    let mut block = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r
            .take(8192)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::Io(e.to_string()))?;
        if n == 0 || line == b"\n" || line == b"\r\n" {
            block.extend_from_slice(b"\n");
            return Ok(block);
        }
        block.extend_from_slice(&line);
        if block.len() > 64 * 1024 {
            return Err(Error::Refused("header block too large".into()));
        }
    }
}

/// Advances past the second part's headers of a PGP/MIME entity, so the
/// reader is at the armored message.
fn skip_to_armor(r: &mut dyn BufRead, boundary: &str) -> Result<(), Error> {
    let delimiter = format!("--{boundary}");
    let mut parts = 0;
    let mut scanned = 0usize;
    loop {
        let mut line = Vec::new();
        let n = r
            .take(8192)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::Io(e.to_string()))?;
        if n == 0 {
            return Err(Error::Refused(
                "PGP/MIME entity without its encrypted part".into(),
            ));
        }
        scanned += n;
        if scanned > 256 * 1024 {
            return Err(Error::Refused(
                "no encrypted part where one was expected".into(),
            ));
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim_end() == delimiter {
            parts += 1;
            if parts == 2 {
                // The part's headers, up to the blank line.
                header_block(r)?;
                return Ok(());
            }
        }
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_boundary(kind: &str) -> String {
    format!("=_rs_{kind}_{}", random_hex(12))
}

fn date(now: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(now.as_secs())
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_reason_as_the_layer_below_gives_it() {
        let refused = Error::Refused(smime::Error::Unsigned.to_string());
        assert_eq!(
            refused.to_string(),
            "the message is not signed, and this peer's messages must be"
        );
        let keys = Error::Keys(
            smime::Error::Read {
                what: "our_key",
                path: "/etc/rs/key.pem".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            }
            .to_string(),
        );
        assert_eq!(
            keys.to_string(),
            "our_key /etc/rs/key.pem: permission denied"
        );
        assert_eq!(Error::Io("disk full".into()).to_string(), "disk full");
    }

    #[test]
    fn a_pgp_mime_entity_cut_short_is_refused_with_the_reason() {
        assert_eq!(wire(b"Content-Type: text/plain\n\nhello\n"), Wire::Plain);
        let mut cut = &b"preamble\n--b\nContent-Type: application/pgp-encrypted\n"[..];
        let e = skip_to_armor(&mut cut, "b").unwrap_err();
        assert!(matches!(e, Error::Refused(_)));
        assert_eq!(e.to_string(), "PGP/MIME entity without its encrypted part");
    }
}
