//! Bulk data sealed once, when it is queued: an age file (age-encryption.org/v1)
//! to X25519 recipients, so that `age -d -i KEY` reads what rs writes and
//! `age-keygen` makes the keys.
//!
//! The payload is ChaCha20-Poly1305 over segments of 64 KiB, each sealed
//! with its index (and whether it is the last) in its nonce. A transfer's
//! chunks are whole segments ([`SEALED_SEGMENT`] bytes each), so the
//! receiver opens each chunk where it lands, in any order, and writes the
//! data in place: export and relaying only copy sealed bytes. The header
//! (the recipients' stanzas, its MAC, and the payload's nonce) travels in
//! the transfer's request.
//!
//! The primitives are OpenSSL's (X25519, HKDF-SHA-256, HMAC-SHA-256,
//! ChaCha20-Poly1305), already linked for S/MIME and TLS. The `age` crate
//! is not used: its reader opens one seekable stream of the whole file,
//! and a receiver never holds one (it holds the data in the clear, chunk
//! by chunk, from the first run that receives a chunk).
//!
//! Nothing here is linked into `rs-send`: it runs `rs-queue seal`.

use std::io::{Read, Write};
use std::path::Path;

use crate::keytext::bech32_key;
pub use crate::keytext::KeyError;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use bech32::{Bech32, Hrp};
use openssl::derive::Deriver;
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::pkey::{Id, PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::sign::Signer;
use openssl::symm::{Cipher, Crypter, Mode};

use crate::message::Digest;

/// The data in one segment.
pub const SEGMENT: u64 = 64 * 1024;
/// The authentication tag after each segment.
pub const TAG: u64 = 16;
/// One sealed segment.
pub const SEALED_SEGMENT: u64 = SEGMENT + TAG;
/// The largest header a request may carry (many recipients fit).
pub const MAX_HEADER: usize = crate::message::limits::SEALED_HEADER;

const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";
const X25519_INFO: &[u8] = b"age-encryption.org/v1/X25519";
const NONCE: usize = 16;

/// Why sealing or opening failed, or a key could not be read. The
/// message names the key, file or segment concerned and, where there is
/// one, the remedy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{text:?} is not an age recipient (age1...): {why}")]
    NotARecipient { text: String, why: KeyError },
    #[error("[bulk] encrypt_to: {path}: {source} (an age1... recipient, or a file of them)")]
    RecipientFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    InRecipientFile { path: String, source: Box<Error> },
    #[error("not an age identity (AGE-SECRET-KEY-1...): {0}")]
    NotAnIdentity(KeyError),
    #[error("[bulk] identity {}: {source}", path.display())]
    IdentityFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("[bulk] identity {}: {source}", path.display())]
    InIdentityFile {
        path: std::path::PathBuf,
        source: Box<Error>,
    },
    #[error("[bulk] identity {}: no AGE-SECRET-KEY-1... line (make one with age-keygen -o)", path.display())]
    NoIdentity { path: std::path::PathBuf },
    #[error("no recipient to seal for ([bulk] encrypt_to)")]
    NoRecipient,
    /// OpenSSL refused `what` (X25519, HKDF, HMAC, ChaCha20-Poly1305).
    /// Its error is boxed: `rs-send` shows this enum (a transfer with no
    /// room) and must not link OpenSSL to do so.
    #[error("{what}: {source}")]
    Crypto {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("X25519: not 32 bytes")]
    SharedSecret,
    #[error("random: {0}")]
    Random(getrandom::Error),
    #[error("a sealing header of {len} bytes")]
    HeaderSize { len: usize },
    #[error("not an age header: {0}")]
    NotAgeHeader(&'static str),
    /// None of `ours` (this site's recipients) opens the header.
    #[error("sealed for none of this site's keys ([bulk] identity: {})", listed(.ours))]
    NotForUs { ours: Vec<String> },
    #[error("the sealing header was altered (its MAC does not match)")]
    HeaderAltered,
    #[error("a sealed segment of {len} bytes")]
    SegmentSize { len: usize },
    #[error("a sealed segment shorter than its tag")]
    SegmentShort,
    #[error("a segment that does not open (altered, or not this transfer's)")]
    SegmentAltered,
}

fn listed(ours: &[String]) -> String {
    if ours.is_empty() {
        "none".to_string()
    } else {
        ours.join(", ")
    }
}

fn ssl(what: &'static str) -> impl Fn(openssl::error::ErrorStack) -> Error {
    move |source| Error::Crypto {
        what,
        source: Box::new(source),
    }
}

/// Someone data can be sealed for: an X25519 public key (`age1...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient([u8; 32]);

impl Recipient {
    /// Parses an age recipient, `age1...` as `age-keygen` prints it.
    pub fn parse(s: &str) -> Result<Recipient, Error> {
        let key = bech32_key(s.trim(), "age").map_err(|why| Error::NotARecipient {
            text: s.trim().to_string(),
            why,
        })?;
        Ok(Recipient(key))
    }

    /// The recipients named by `entries`: each an `age1...` recipient, or
    /// the path of a file of them (one a line, `#` comments), as `age -R`.
    pub fn from_config(entries: &[String]) -> Result<Vec<Recipient>, Error> {
        let mut all = Vec::new();
        for e in entries {
            if e.starts_with("age1") {
                all.push(Recipient::parse(e)?);
                continue;
            }
            let text = std::fs::read_to_string(e).map_err(|source| Error::RecipientFile {
                path: e.clone(),
                source,
            })?;
            for line in lines(&text) {
                all.push(
                    Recipient::parse(line).map_err(|err| Error::InRecipientFile {
                        path: e.clone(),
                        source: Box::new(err),
                    })?,
                );
            }
        }
        Ok(all)
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hrp = Hrp::parse("age").expect("a valid prefix");
        let s = bech32::encode_lower::<Bech32>(hrp, &self.0).map_err(|_| std::fmt::Error)?;
        f.write_str(&s)
    }
}

/// A secret key data is opened with (`AGE-SECRET-KEY-1...`).
pub struct Identity {
    key: PKey<Private>,
}

impl Identity {
    /// Parses an identity, `AGE-SECRET-KEY-1...` as `age-keygen` writes it.
    pub fn parse(s: &str) -> Result<Identity, Error> {
        let secret = bech32_key(s.trim(), "age-secret-key-").map_err(Error::NotAnIdentity)?;
        let key = PKey::private_key_from_raw_bytes(&secret, Id::X25519)
            .map_err(ssl("an age identity"))?;
        Ok(Identity { key })
    }

    /// The identities in file `path` (`age-keygen -o`: one a line, `#`
    /// comments).
    pub fn read(path: &Path) -> Result<Vec<Identity>, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::IdentityFile {
            path: path.to_path_buf(),
            source,
        })?;
        let all = lines(&text)
            .map(Identity::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::InIdentityFile {
                path: path.to_path_buf(),
                source: Box::new(e),
            })?;
        if all.is_empty() {
            return Err(Error::NoIdentity {
                path: path.to_path_buf(),
            });
        }
        Ok(all)
    }

    /// The recipient this identity opens.
    pub fn recipient(&self) -> Recipient {
        let raw = self.key.raw_public_key().expect("an X25519 key has one");
        Recipient(raw.try_into().expect("32 bytes"))
    }
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn hkdf(ikm: &[u8], salt: &[u8], info: &[u8]) -> Result<[u8; 32], Error> {
    let mut ctx = PkeyCtx::new_id(Id::HKDF).map_err(ssl("HKDF"))?;
    ctx.derive_init().map_err(ssl("HKDF"))?;
    ctx.set_hkdf_md(Md::sha256()).map_err(ssl("HKDF"))?;
    ctx.set_hkdf_key(ikm).map_err(ssl("HKDF"))?;
    if !salt.is_empty() {
        ctx.set_hkdf_salt(salt).map_err(ssl("HKDF"))?;
    }
    ctx.add_hkdf_info(info).map_err(ssl("HKDF"))?;
    let mut out = [0u8; 32];
    ctx.derive(Some(&mut out)).map_err(ssl("HKDF"))?;
    Ok(out)
}

fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
    let pkey = PKey::hmac(key).map_err(ssl("HMAC"))?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).map_err(ssl("HMAC"))?;
    signer.update(data).map_err(ssl("HMAC"))?;
    signer.sign_to_vec().map_err(ssl("HMAC"))
}

fn x25519(ours: &PKey<Private>, theirs: &[u8; 32]) -> Result<[u8; 32], Error> {
    let peer = PKey::public_key_from_raw_bytes(theirs, Id::X25519).map_err(ssl("X25519"))?;
    let mut d = Deriver::new(ours).map_err(ssl("X25519"))?;
    d.set_peer(&peer).map_err(ssl("X25519"))?;
    // OpenSSL refuses an all-zero shared secret (a low-order point).
    let shared = d.derive_to_vec().map_err(ssl("X25519"))?;
    shared.try_into().map_err(|_| Error::SharedSecret)
}

/// ChaCha20-Poly1305 with `nonce`, appending to `out`; opening checks the
/// tag at the end of `input`.
fn aead(
    key: &[u8; 32],
    nonce: &[u8; 12],
    input: &[u8],
    out: &mut Vec<u8>,
    seal: bool,
) -> Result<(), Error> {
    let cipher = Cipher::chacha20_poly1305();
    let mode = if seal { Mode::Encrypt } else { Mode::Decrypt };
    let mut c = Crypter::new(cipher, mode, key, Some(nonce)).map_err(ssl("ChaCha20-Poly1305"))?;
    let (body, tag) = if seal {
        (input, &[][..])
    } else {
        if input.len() < TAG as usize {
            return Err(Error::SegmentShort);
        }
        input.split_at(input.len() - TAG as usize)
    };
    if !seal {
        c.set_tag(tag).map_err(ssl("ChaCha20-Poly1305"))?;
    }
    let start = out.len();
    out.resize(start + body.len() + 1, 0);
    let n = c
        .update(body, &mut out[start..])
        .map_err(ssl("ChaCha20-Poly1305"))?;
    let m = c
        .finalize(&mut out[start + n..])
        .map_err(|_| Error::SegmentAltered)?;
    out.truncate(start + n + m);
    if seal {
        let mut t = [0u8; TAG as usize];
        c.get_tag(&mut t).map_err(ssl("ChaCha20-Poly1305"))?;
        out.extend_from_slice(&t);
    }
    Ok(())
}

fn segment_nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    // An 11-byte counter: a u64 fills its low 8 bytes.
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// The payload key of one sealed file: what seals and opens its segments.
pub struct Key([u8; 32]);

impl Key {
    /// Seals segment `index` (`last`: the file's last) of at most
    /// [`SEGMENT`] bytes, appending it to `out`.
    pub fn seal(
        &self,
        index: u64,
        last: bool,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        aead(&self.0, &segment_nonce(index, last), plain, out, true)
    }

    /// Opens sealed segment `index`, appending its data to `out`.
    pub fn open(
        &self,
        index: u64,
        last: bool,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if sealed.len() as u64 > SEALED_SEGMENT {
            return Err(Error::SegmentSize { len: sealed.len() });
        }
        aead(&self.0, &segment_nonce(index, last), sealed, out, false)
    }
}

/// A new sealing to `recipients`: the header (with the payload's nonce at
/// its end) and the payload key.
pub fn start(recipients: &[Recipient]) -> Result<(Vec<u8>, Key), Error> {
    if recipients.is_empty() {
        return Err(Error::NoRecipient);
    }
    let mut file_key = [0u8; 16];
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut file_key).map_err(Error::Random)?;
    getrandom::fill(&mut nonce).map_err(Error::Random)?;
    let mut header = VERSION_LINE.to_vec();
    for r in recipients {
        let eph = PKey::generate_x25519().map_err(ssl("X25519"))?;
        let share = eph.raw_public_key().map_err(ssl("X25519"))?;
        let shared = x25519(&eph, &r.0)?;
        let mut salt = share.clone();
        salt.extend_from_slice(&r.0);
        let wrap = hkdf(&shared, &salt, X25519_INFO)?;
        let mut body = Vec::new();
        aead(&wrap, &[0u8; 12], &file_key, &mut body, true)?;
        header.extend_from_slice(b"-> X25519 ");
        header.extend_from_slice(STANDARD_NO_PAD.encode(&share).as_bytes());
        header.push(b'\n');
        // 32 bytes are 43 characters: one line, shorter than 64.
        header.extend_from_slice(STANDARD_NO_PAD.encode(&body).as_bytes());
        header.push(b'\n');
    }
    header.extend_from_slice(b"---");
    let mac = hmac(&hkdf(&file_key, &[], b"header")?, &header)?;
    header.push(b' ');
    header.extend_from_slice(STANDARD_NO_PAD.encode(&mac).as_bytes());
    header.push(b'\n');
    header.extend_from_slice(&nonce);
    let key = Key(hkdf(&file_key, &nonce, b"payload")?);
    Ok((header, key))
}

/// Opens `header` (an age header followed by the payload's nonce and
/// nothing else) with one of `identities`: the payload key.
pub fn open(header: &[u8], identities: &[Identity]) -> Result<Key, Error> {
    if header.len() > MAX_HEADER {
        return Err(Error::HeaderSize { len: header.len() });
    }
    let bad = Error::NotAgeHeader;
    let rest = header
        .strip_prefix(VERSION_LINE)
        .ok_or_else(|| bad("no age-encryption.org/v1 line"))?;
    let mut pos = header.len() - rest.len();
    let line_at = |pos: usize| -> Result<(&[u8], usize), Error> {
        let end = header[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("a line without its end"))?;
        Ok((&header[pos..pos + end], pos + end + 1))
    };
    let mut file_key = None;
    loop {
        let (line, next) = line_at(pos)?;
        if line.starts_with(b"---") {
            let mac_text = line.strip_prefix(b"--- ").ok_or_else(|| bad("no MAC"))?;
            let nonce = &header[next..];
            if nonce.len() != NONCE {
                return Err(bad("not 16 bytes of nonce after it"));
            }
            let key: [u8; 16] = file_key.ok_or_else(|| Error::NotForUs {
                ours: identities
                    .iter()
                    .map(|i| i.recipient().to_string())
                    .collect(),
            })?;
            let mac = STANDARD_NO_PAD
                .decode(mac_text)
                .map_err(|_| bad("a MAC that is not base64"))?;
            let want = hmac(&hkdf(&key, &[], b"header")?, &header[..pos + 3])?;
            if !openssl::memcmp::eq(&mac, &want) || mac.len() != want.len() {
                return Err(Error::HeaderAltered);
            }
            return Ok(Key(hkdf(&key, nonce, b"payload")?));
        }
        let args = line
            .strip_prefix(b"-> ")
            .ok_or_else(|| bad("a line that is neither a stanza nor the MAC"))?;
        // The body: base64 lines of 64 characters, ending with a shorter one.
        let mut body_text = Vec::new();
        pos = next;
        loop {
            let (l, n) = line_at(pos)?;
            pos = n;
            if l.len() > 64 {
                return Err(bad("a stanza line longer than 64 characters"));
            }
            body_text.extend_from_slice(l);
            if l.len() < 64 {
                break;
            }
        }
        let mut words = args.split(|&b| b == b' ');
        if words.next() != Some(b"X25519") || file_key.is_some() {
            continue; // another kind of recipient, or one opened already
        }
        let (Some(share_text), None) = (words.next(), words.next()) else {
            return Err(bad("an X25519 stanza without its one share"));
        };
        let share: [u8; 32] = STANDARD_NO_PAD
            .decode(share_text)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("an X25519 share that is not 32 bytes of base64"))?;
        let body = STANDARD_NO_PAD
            .decode(&body_text)
            .map_err(|_| bad("a stanza body that is not base64"))?;
        if body.len() != 32 {
            return Err(bad("an X25519 stanza body that is not 32 bytes"));
        }
        for id in identities {
            let Ok(shared) = x25519(&id.key, &share) else {
                continue;
            };
            let mut salt = share.to_vec();
            salt.extend_from_slice(&id.recipient().0);
            let wrap = hkdf(&shared, &salt, X25519_INFO)?;
            let mut out = Vec::new();
            if aead(&wrap, &[0u8; 12], &body, &mut out, false).is_ok() {
                file_key = out.try_into().ok();
                break;
            }
        }
    }
}

/// The sealed size of `plain` bytes of data.
pub fn sealed_size(plain: u64) -> u64 {
    // Saturating: a size from a hostile request cannot overflow it.
    plain.saturating_add(plain.div_ceil(SEGMENT).max(1) * TAG)
}

/// The data size of a payload of `sealed` bytes (None: no payload is
/// that long).
pub fn plain_size(sealed: u64) -> Option<u64> {
    let segments = sealed.div_ceil(SEALED_SEGMENT).max(1);
    let plain = sealed.checked_sub(segments * TAG)?;
    (sealed_size(plain) == sealed).then_some(plain)
}

/// What [`seal_stream`] wrote.
#[derive(Debug)]
pub struct Sealed {
    /// The data's size and digest.
    pub size: u64,
    pub digest: Digest,
    /// The header (with the payload's nonce), also at the file's start.
    pub header: Vec<u8>,
}

/// Seals all of `input` for `recipients` into `out` (the header, then the
/// segments), the digest of the data computed on the way: reading and
/// digesting on this thread, sealing and writing on another.
pub fn seal_stream(
    recipients: &[Recipient],
    input: &mut dyn Read,
    out: &mut (dyn Write + Send),
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<Sealed> {
    const BLOCK: usize = 16 * SEGMENT as usize;
    let (header, key) = start(recipients).map_err(std::io::Error::other)?;
    out.write_all(&header)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, bool)>(4);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let writer = std::thread::scope(|s| {
        let w = s.spawn(move || -> std::io::Result<()> {
            let mut index = 0u64;
            let mut sealed = Vec::with_capacity(BLOCK + 16 * TAG as usize + 1);
            for (block, last) in rx {
                sealed.clear();
                let mut segments = block.chunks(SEGMENT as usize).peekable();
                if block.is_empty() {
                    key.seal(index, true, &[], &mut sealed)
                        .map_err(std::io::Error::other)?;
                }
                while let Some(seg) = segments.next() {
                    let is_last = last && segments.peek().is_none();
                    key.seal(index, is_last, seg, &mut sealed)
                        .map_err(std::io::Error::other)?;
                    index += 1;
                }
                out.write_all(&sealed)?;
                let _ = back_tx.send(block);
            }
            Ok(())
        });
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut total = 0u64;
        let mut pending: Option<Vec<u8>> = None;
        let read_result = (|| -> std::io::Result<()> {
            loop {
                let mut block = back_rx
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(BLOCK));
                block.resize(BLOCK, 0);
                let mut n = 0;
                while n < BLOCK {
                    match input.read(&mut block[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                block.truncate(n);
                sha2::Digest::update(&mut hasher, &block);
                total += n as u64;
                progress(n as u64);
                if n == 0 {
                    // The last block went as not last only if data followed it.
                    let last = pending.take().unwrap_or_default();
                    let _ = tx.send((last, true));
                    return Ok(());
                }
                if let Some(prev) = pending.replace(block) {
                    if tx.send((prev, false)).is_err() {
                        return Ok(()); // the writer failed: its error says why
                    }
                }
            }
        })();
        drop(tx);
        let wrote = w.join().expect("the sealing thread does not panic");
        read_result.and(wrote).map(|_| (hasher, total))
    });
    let (hasher, size) = writer?;
    Ok(Sealed {
        size,
        digest: Digest::of(hasher),
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Identity, Recipient) {
        let key = PKey::generate_x25519().unwrap();
        let raw = key.raw_private_key().unwrap();
        let hrp = Hrp::parse("AGE-SECRET-KEY-").unwrap();
        let text = bech32::encode_upper::<Bech32>(hrp, &raw).unwrap();
        let id = Identity::parse(&text).unwrap();
        let r = id.recipient();
        (id, r)
    }

    fn open_all(header_len: usize, file: &[u8], ids: &[Identity]) -> Result<Vec<u8>, Error> {
        let key = open(&file[..header_len], ids)?;
        let payload = &file[header_len..];
        let n = payload.len().div_ceil(SEALED_SEGMENT as usize);
        let mut out = Vec::new();
        for (i, seg) in payload.chunks(SEALED_SEGMENT as usize).enumerate() {
            key.open(i as u64, i + 1 == n, seg, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn what_is_sealed_opens_with_the_identity_and_only_with_it() {
        let (id, r) = pair();
        let (other, _) = pair();
        assert_eq!(Recipient::parse(&r.to_string()).unwrap(), r);
        for size in [0usize, 1, 65535, 65536, 65537, 3 * 1024 * 1024 + 5] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let mut file = Vec::new();
            let s = seal_stream(
                std::slice::from_ref(&r),
                &mut data.as_slice(),
                &mut file,
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(s.size, size as u64);
            assert_eq!(
                file.len() - s.header.len(),
                sealed_size(size as u64) as usize
            );
            assert_eq!(plain_size(sealed_size(size as u64)), Some(size as u64));
            assert_eq!(
                open_all(s.header.len(), &file, &[id_clone(&id)]).unwrap(),
                data
            );
            let e = open_all(s.header.len(), &file, &[id_clone(&other)]).unwrap_err();
            assert!(e.to_string().contains("none of this site's keys"), "{e}");
        }
    }

    fn id_clone(id: &Identity) -> Identity {
        Identity {
            key: PKey::private_key_from_raw_bytes(&id.key.raw_private_key().unwrap(), Id::X25519)
                .unwrap(),
        }
    }

    #[test]
    fn an_altered_header_or_segment_does_not_open() {
        let (id, r) = pair();
        let data = vec![7u8; 200_000];
        let mut file = Vec::new();
        let s = seal_stream(&[r], &mut data.as_slice(), &mut file, &mut |_| {}).unwrap();
        let h = s.header.len();
        // The MAC line's last character altered.
        let mut bad = file.clone();
        bad[h - NONCE - 2] ^= 1;
        assert!(open_all(h, &bad, &[id_clone(&id)]).is_err());
        // A segment's byte altered; segments swapped; the last cut off.
        let mut bad = file.clone();
        bad[h + 10] ^= 1;
        assert!(open_all(h, &bad, &[id_clone(&id)]).is_err());
        let key = open(&file[..h], &[id_clone(&id)]).unwrap();
        let seg = |i: usize| {
            &file[h + i * SEALED_SEGMENT as usize..h + (i + 1) * SEALED_SEGMENT as usize]
        };
        assert!(key.open(0, false, seg(1), &mut Vec::new()).is_err());
        assert!(key.open(1, true, seg(1), &mut Vec::new()).is_err());
        assert!(key.open(1, false, seg(1), &mut Vec::new()).is_ok());
        assert_eq!(plain_size(SEALED_SEGMENT + 1), None);
        assert_eq!(sealed_size(u64::MAX), u64::MAX);
        assert_eq!(plain_size(SEALED_SEGMENT + TAG + 1), Some(SEGMENT + 1));
    }

    #[test]
    fn headers_that_are_not_age_are_refused_without_panicking() {
        let (id, _) = pair();
        for h in [
            &b""[..],
            b"age-encryption.org/v1\n",
            b"age-encryption.org/v1\n-> X25519\n\n--- x\n0123456789abcdef",
            b"age-encryption.org/v1\n-> X25519 AAAA\nAAAA\n--- x\n0123456789abcdef",
            b"age-encryption.org/v1\n--- \n",
        ] {
            assert!(open(h, &[id_clone(&id)]).is_err());
        }
    }

    /// The messages an operator reads (`rs-send`, `rs-queue seal`, a
    /// request refused), naming the key, file or segment concerned.
    #[test]
    fn errors_name_the_key_file_or_segment() {
        let x = || Error::NotARecipient {
            text: "x".into(),
            why: KeyError::Prefix("age"),
        };
        for (e, message) in [
            (
                x(),
                "\"x\" is not an age recipient (age1...): the prefix is not age",
            ),
            (
                Error::InRecipientFile {
                    path: "r.txt".into(),
                    source: Box::new(x()),
                },
                "r.txt: \"x\" is not an age recipient (age1...): the prefix is not age",
            ),
            (
                Error::NotAnIdentity(KeyError::Length),
                "not an age identity (AGE-SECRET-KEY-1...): not 32 bytes",
            ),
            (
                Error::InIdentityFile {
                    path: "k.txt".into(),
                    source: Box::new(Error::NotAnIdentity(KeyError::Length)),
                },
                "[bulk] identity k.txt: not an age identity (AGE-SECRET-KEY-1...): not 32 bytes",
            ),
            (
                Error::NoIdentity {
                    path: "k.txt".into(),
                },
                "[bulk] identity k.txt: no AGE-SECRET-KEY-1... line (make one with age-keygen -o)",
            ),
            (
                Error::NoRecipient,
                "no recipient to seal for ([bulk] encrypt_to)",
            ),
            (Error::SharedSecret, "X25519: not 32 bytes"),
            (
                Error::HeaderSize { len: 9000 },
                "a sealing header of 9000 bytes",
            ),
            (Error::NotAgeHeader("no MAC"), "not an age header: no MAC"),
            (
                Error::NotForUs { ours: Vec::new() },
                "sealed for none of this site's keys ([bulk] identity: none)",
            ),
            (
                Error::NotForUs {
                    ours: vec!["age1a".into(), "age1b".into()],
                },
                "sealed for none of this site's keys ([bulk] identity: age1a, age1b)",
            ),
            (
                Error::HeaderAltered,
                "the sealing header was altered (its MAC does not match)",
            ),
            (Error::SegmentSize { len: 5 }, "a sealed segment of 5 bytes"),
            (Error::SegmentShort, "a sealed segment shorter than its tag"),
            (
                Error::SegmentAltered,
                "a segment that does not open (altered, or not this transfer's)",
            ),
        ] {
            assert_eq!(e.to_string(), message);
        }
        let e = Recipient::parse(" age1xyz ").unwrap_err().to_string();
        assert!(
            e.starts_with("\"age1xyz\" is not an age recipient (age1...): "),
            "{e}"
        );
        let e = Identity::read(Path::new("/nonexistent/k.txt"))
            .err()
            .expect("no such file")
            .to_string();
        assert!(e.starts_with("[bulk] identity /nonexistent/k.txt: "), "{e}");
        let e = Recipient::from_config(&["/nonexistent/r.txt".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("[bulk] encrypt_to: /nonexistent/r.txt: ")
                && e.ends_with(" (an age1... recipient, or a file of them)"),
            "{e}"
        );
    }
}
