//! The sending side over HTTP: a transfer authorized with an upload
//! location, whose next hop is an HTTP route, is uploaded with tus
//! (`transport::tus`) by `rs-queue flush` instead of going as chunk
//! messages: in pieces, each with its SHA-256, from the offset the server
//! says the upload stands at (so a broken link or a killed run resumes
//! without resending what arrived). A hop that refuses the upload (it
//! carries the transfer on by messages, or is not the way any more) turns
//! the transfer back to chunks.

use std::io::Read;
use std::os::unix::fs::FileExt;

use super::sender::{self, Outgoing, Phase};
use super::{load, transfers};
use crate::message::Name;
use crate::spool::{Result, Spool};
use crate::time::Timestamp;
use crate::transport::tus::{Client, Failure};

/// A piece sent in one request is 64 of the receiver's chunks (64 MiB by
/// default) or a 64th of the data, within these bounds; halved while a
/// server answers 413. It is read twice from the file (its digest, then
/// the body), never held whole.
const MIN_PIECE: u64 = 64 << 10;
const MAX_PIECE: u64 = 64 << 20;

/// One transfer's upload in this run.
#[derive(Debug)]
pub struct Uploaded {
    pub transfer: String,
    pub peer: Name,
    /// Bytes sent in this run.
    pub bytes: u64,
    /// The receiver holds all of it.
    pub complete: bool,
}

/// Uploads every transfer due over HTTP (to peer `only`, when given).
pub fn run(
    spool: &Spool,
    only: Option<&str>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Vec<Uploaded>> {
    if !spool.root().join("bulk/out").is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (t, path) in transfers(spool, "out")? {
        let Some(st) = load::<Outgoing>(&path) else {
            continue;
        };
        let Some(location) = st.upload.clone().filter(|_| st.phase == Phase::Authorized) else {
            continue;
        };
        let Some((peer, route)) = sender::upload_route(spool, &t) else {
            sender::upload_refused(spool, &t, "the next hop has no HTTP route now", now, log)?;
            continue;
        };
        if only.is_some_and(|o| o != peer.as_str()) {
            continue;
        }
        let client = match Client::new(&route, &spool.config().component) {
            Ok(c) => c,
            Err(e) => {
                log(format!("{t}: not uploaded now: {e}"));
                continue;
            }
        };
        let url = format!("{}/{location}", route.url.trim_end_matches('/'));
        if let Some(u) = one(spool, &t, &st, &client, &url, now, log)? {
            out.push(Uploaded {
                transfer: t,
                peer,
                bytes: u.0,
                complete: u.1,
            });
        }
    }
    Ok(out)
}

/// Uploads transfer `t` to `url`: the bytes sent and whether it is all
/// there; `None` when another run is uploading it.
fn one(
    spool: &Spool,
    t: &str,
    st: &Outgoing,
    client: &Client,
    url: &str,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Option<(u64, bool)>> {
    let data_path = spool.root().join("bulk/out").join(format!("{t}.data"));
    let data = match std::fs::File::open(&data_path) {
        Ok(f) => f,
        Err(e) => return Err(crate::spool::Error::io("open", &data_path, e)),
    };
    if fs2::FileExt::try_lock_exclusive(&data).is_err() {
        return Ok(None);
    }
    let refused = |why: String| -> Result<Option<(u64, bool)>> {
        sender::upload_refused(spool, t, &why, now, log)?;
        Ok(None)
    };
    let gone = |s: u16| matches!(s, 403 | 404 | 405 | 501);
    let mut offset = match client.offset(url) {
        Ok(o) => o,
        Err(Failure::Status(s, why)) if gone(s) => return refused(format!("{url} {s}: {why}")),
        Err(e) => {
            log(format!("{t}: not uploaded now: {url}: {e}"));
            return Ok(Some((0, false)));
        }
    };
    // 64 chunks, or a 64th of the data when that is more: few requests,
    // and few records of the offset at the receiver.
    let mut piece = (st.chunk_size.unwrap_or(1 << 20) * 64)
        .max(st.size.div_ceil(64))
        .clamp(MIN_PIECE, MAX_PIECE);
    let mut sent = 0u64;
    let mut conflicts = 0;
    let mut progress = crate::output::Progress::new(format!("{t}: uploading"), st.size);
    progress.add(offset.min(st.size));
    while offset < st.size {
        let len = piece.min(st.size - offset);
        let sum = digest_of_range(&data, offset, len)
            .map_err(|e| crate::spool::Error::io("read", &data_path, e))?;
        let mut body = Range {
            file: &data,
            at: offset,
            left: len,
        };
        match client.patch(url, offset, &mut body, len, &sum) {
            Ok(next) if next > offset && next <= st.size => {
                sent += next - offset;
                progress.add(next - offset);
                offset = next;
            }
            Ok(next) => {
                log(format!(
                    "{t}: the upload stands at {next} after a piece from {offset}: stopped for now"
                ));
                break;
            }
            Err(Failure::Status(413, _)) if piece > MIN_PIECE => piece /= 2,
            Err(Failure::Status(409, _)) if conflicts < 3 => {
                conflicts += 1;
                match client.offset(url) {
                    Ok(o) => offset = o,
                    Err(e) => {
                        log(format!("{t}: not uploaded now: {url}: {e}"));
                        break;
                    }
                }
            }
            Err(Failure::Status(s, why)) if gone(s) => {
                drop(progress);
                return refused(format!("{url} {s}: {why}"));
            }
            Err(e) => {
                log(format!("{t}: upload stopped at {offset}: {url}: {e}"));
                break;
            }
        }
    }
    drop(progress);
    sender::uploaded(spool, t, offset, now)?;
    if sent > 0 {
        log(format!(
            "{t}: uploaded {sent} bytes over HTTP; the receiver holds {offset} of {}",
            st.size
        ));
    }
    Ok(Some((sent, offset >= st.size)))
}

/// The SHA-256 of `len` bytes of `file` from `at`.
fn digest_of_range(file: &std::fs::File, at: u64, len: u64) -> std::io::Result<[u8; 32]> {
    let mut h = openssl::sha::Sha256::new();
    let mut body = Range {
        file,
        at,
        left: len,
    };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// `left` bytes of a file from `at`, read as a stream (whatever the
/// file's offset).
pub(super) struct Range<'a> {
    pub file: &'a std::fs::File,
    pub at: u64,
    pub left: u64,
}

impl Read for Range<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the data is shorter than the transfer",
            ));
        }
        self.at += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}
