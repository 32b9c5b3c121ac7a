//! The sending side over HTTP: a transfer authorized with an upload
//! location, whose next hop is an HTTP route, is uploaded with tus
//! (`transport::tus`) by `rs-queue flush` instead of going as chunk
//! messages: in pieces, each with its SHA-256 and the SHA-256 of each of
//! its chunks, from the offset the server says the upload stands at. The
//! receiver keeps what arrived of a piece cut short up to its last whole
//! chunk, so a broken link or a killed run resumes without resending more
//! than a chunk. A hop that refuses the upload (it carries the transfer on
//! by messages, or is not the way any more) turns the transfer back to
//! chunks.

use std::io::Read;

use super::sender::{self, Outgoing, Phase, Range};
use super::{load, transfers};
use crate::message::Name;
use crate::spool::{Result, Spool};
use crate::time::Timestamp;
use crate::transport::tus::{ChunkSums, Client, Failure};

/// A piece sent in one request is 64 of the receiver's chunks (64 MiB by
/// default) or a 64th of the data, within these bounds; halved while a
/// server answers 413. It is read twice from the file (its digests, then
/// the body), never held whole.
const MIN_PIECE: u64 = 64 << 10;
const MAX_PIECE: u64 = 64 << 20;
/// A piece carries the SHA-256 of each of its chunks, at most this many
/// (a chunk is then a whole number of the receiver's chunks): what
/// arrived of a piece cut short is kept up to its last whole chunk.
const CHUNKS_PER_PIECE: u64 = 64;

/// The piece and the chunk digested in it, for a transfer of `size`
/// bytes whose receiver asks for chunks of `chunk` bytes: both whole
/// numbers of the receiver's chunks (so a piece cut short keeps an offset
/// on a chunk's bound), the piece at most 64 of its chunks.
fn piece_and_chunk(size: u64, chunk: u64) -> (u64, u64) {
    let chunk = chunk.max(1);
    let target = (chunk * 64)
        .max(size.div_ceil(64))
        .clamp(MIN_PIECE, MAX_PIECE);
    let unit = chunk * target.div_ceil(chunk * CHUNKS_PER_PIECE);
    ((target / unit).max(1) * unit, unit)
}

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
    let chunk = st.chunk_size.unwrap_or(1 << 20).max(1);
    let (mut piece, mut unit) = piece_and_chunk(st.size, chunk);
    let mut sent = 0u64;
    let mut conflicts = 0;
    let mut progress = crate::progress::Progress::new(format!("{t}: uploading"), st.size);
    progress.add(offset.min(st.size));
    while offset < st.size {
        let len = piece.min(st.size - offset);
        let (sum, chunks) = digests_of_range(&data, offset, len, unit)
            .map_err(|e| crate::spool::Error::io("read", &data_path, e))?;
        let mut body = Range {
            file: &data,
            at: offset,
            left: len,
        };
        match client.patch(url, offset, &mut body, len, &sum, &chunks) {
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
            Err(Failure::Status(413, _)) if piece > MIN_PIECE && piece > chunk => {
                piece = (piece / 2 / chunk).max(1) * chunk;
                unit = unit.min(piece);
            }
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
                // The receiver keeps what arrived of a piece up to its
                // last whole chunk: go on from there while it moves on.
                match client.offset(url) {
                    Ok(next) if next > offset && next <= st.size => {
                        log(format!(
                            "{t}: a piece from {offset} broke off ({url}: {e}); the receiver kept it up to {next}: going on from there"
                        ));
                        sent += next - offset;
                        progress.add(next - offset);
                        offset = next;
                    }
                    _ => {
                        log(format!("{t}: upload stopped at {offset}: {url}: {e}"));
                        break;
                    }
                }
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

/// The SHA-256 of `len` bytes of `file` from `at`, and of each `unit`
/// of them (the last possibly shorter), read once.
fn digests_of_range(
    file: &std::fs::File,
    at: u64,
    len: u64,
    unit: u64,
) -> std::io::Result<([u8; 32], ChunkSums)> {
    let mut whole = openssl::sha::Sha256::new();
    let mut chunks = ChunkSums {
        size: unit,
        digests: Vec::new(),
    };
    let mut buf = vec![0u8; unit.min(1 << 20) as usize];
    let mut done = 0;
    while done < len {
        let n = unit.min(len - done);
        let mut h = openssl::sha::Sha256::new();
        let mut body = Range {
            file,
            at: at + done,
            left: n,
        };
        loop {
            let got = body.read(&mut buf)?;
            if got == 0 {
                break;
            }
            h.update(&buf[..got]);
            whole.update(&buf[..got]);
        }
        chunks.digests.push(h.finish());
        done += n;
    }
    Ok((whole.finish(), chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_hold_at_most_64_digested_chunks_on_the_receivers_bounds() {
        // (size, receiver's chunk) → (piece, chunk digested)
        let cases = [
            (50 << 20, 1 << 20, 64 << 20, 1 << 20),
            (10 << 30, 1 << 20, 64 << 20, 1 << 20),
            (100 << 10, 1 << 10, 64 << 10, 1 << 10),
            (1 << 30, 64 << 10, 16 << 20, 256 << 10),
            (1 << 30, 16 << 20, 64 << 20, 16 << 20),
            (100 << 20, 3000, 1_620_000, 27_000),
        ];
        for (size, chunk, piece, unit) in cases {
            let got = piece_and_chunk(size, chunk);
            assert_eq!(got, (piece, unit), "{size} {chunk}");
            assert_eq!(got.1 % chunk, 0);
            assert!(got.0.div_ceil(got.1) <= CHUNKS_PER_PIECE);
        }
    }
}
