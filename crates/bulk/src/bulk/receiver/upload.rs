//! Pieces that come over HTTP (tus): who may upload a transfer, where
//! its upload stands, and each piece written in place at the offset it
//! stands at. Invariant: what counts of a piece (whole, or its chunks
//! that matched before a break) is durable and recorded under
//! `bulk/.lock` before the answer; nothing else of it counts.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use super::{paths, request_of, save_state, settle, tell, Incoming, Phase};
use crate::bulk::{load, Said};
use crate::message::{BulkStatus, MessageId, Name};
use crate::spool::{durable, Spool};
use crate::time::Timestamp;
use crate::transport::tus::{ChunkSums, CHUNK_CHECKSUMS};

/// An upload over HTTP refused: the status to answer, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub why: String,
}

fn refused(status: u16, why: impl Into<String>) -> Refused {
    Refused {
        status,
        why: why.into(),
    }
}

fn unavailable(e: crate::spool::Error) -> Refused {
    refused(503, format!("not taken now: {}", e.for_peer()))
}

/// Where an upload stands (what tus `HEAD` says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upload {
    pub size: u64,
    pub offset: u64,
    pub expires: Timestamp,
}

/// The checksum algorithms an upload may name (tus `Upload-Checksum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
}

impl Algorithm {
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }
}

/// One piece of an upload: its bytes from `offset` on.
pub struct Patch<'a> {
    pub offset: u64,
    /// The body's length, when the caller said it.
    pub length: Option<u64>,
    /// The checksum the body must have.
    pub checksum: Option<(Algorithm, Vec<u8>)>,
    /// The SHA-256 of each chunk of the body, when the caller sent them:
    /// what arrived of a piece cut short is then kept up to its last
    /// chunk that matched.
    pub chunks: Option<ChunkSums>,
    pub body: &'a mut dyn Read,
}

/// A piece's chunks checked as its bytes come: how many bytes from its
/// start are verified, and whether one failed.
struct ChunkCheck<'a> {
    sums: &'a ChunkSums,
    hasher: openssl::sha::Sha256,
    filled: u64,
    index: usize,
    verified: u64,
    failed: Option<String>,
}

impl<'a> ChunkCheck<'a> {
    fn new(sums: &'a ChunkSums) -> ChunkCheck<'a> {
        ChunkCheck {
            sums,
            hasher: openssl::sha::Sha256::new(),
            filled: 0,
            index: 0,
            verified: 0,
            failed: None,
        }
    }

    /// Takes the next bytes of the piece; false once a chunk failed.
    fn take(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() && self.failed.is_none() {
            let n = (self.sums.size - self.filled).min(data.len() as u64) as usize;
            self.hasher.update(&data[..n]);
            self.filled += n as u64;
            data = &data[n..];
            if self.filled == self.sums.size {
                self.close();
            }
        }
        self.failed.is_none()
    }

    /// The piece ended whole: its last, shorter chunk is checked, and
    /// every chunk named must have come.
    fn end(&mut self) -> bool {
        if self.filled > 0 && self.failed.is_none() {
            self.close();
        }
        if self.failed.is_none() && self.index < self.sums.digests.len() {
            self.failed = Some(format!(
                "the body ended after {} of the {} chunks its {} names",
                self.index,
                self.sums.digests.len(),
                CHUNK_CHECKSUMS
            ));
        }
        self.failed.is_none()
    }

    fn close(&mut self) {
        let h = std::mem::replace(&mut self.hasher, openssl::sha::Sha256::new());
        let i = self.index;
        match self.sums.digests.get(i) {
            Some(d) if *d == h.finish() => {
                self.verified += self.filled;
                self.index += 1;
                self.filled = 0;
            }
            Some(_) => {
                self.failed = Some(format!(
                    "chunk {i} of the piece does not match its digest in {CHUNK_CHECKSUMS}"
                ))
            }
            None => {
                self.failed = Some(format!(
                    "the body runs past the {} chunks its {} names",
                    self.sums.digests.len(),
                    CHUNK_CHECKSUMS
                ))
            }
        }
    }
}

/// Transfer `t`'s state, if `caller` may upload it: it is authorized here
/// and `caller` is its origin or the neighbour its request came from.
fn upload_state(spool: &Spool, t: &str, caller: &Name) -> std::result::Result<Incoming, Refused> {
    if MessageId::parse(t).is_err() {
        return Err(refused(404, format!("{t:?} names no transfer")));
    }
    let (state_path, _, _) = paths(spool, t).map_err(unavailable)?;
    let Some(st) = load::<Incoming>(&state_path) else {
        return Err(refused(
            404,
            format!("no transfer {t} is authorized here: its bulk request comes first"),
        ));
    };
    let request = request_of(spool, t).map_err(unavailable)?;
    let me = &spool.config().component;
    let neighbour = request
        .routing
        .iter()
        .rev()
        .map(|r| &r.component)
        .find(|c| *c != me);
    if st.sealed.is_some() {
        return Err(refused(
            409,
            format!("transfer {t} is sealed: its chunks come as messages, each opened here"),
        ));
    }
    if st.origin.as_deref() != Some(caller.as_str()) && neighbour != Some(caller) {
        return Err(refused(
            403,
            format!(
                "transfer {t} comes from {} through {}: {caller} may not upload it",
                st.origin.as_deref().unwrap_or("the provider"),
                neighbour.map_or("no neighbour", |n| n.as_str())
            ),
        ));
    }
    Ok(st)
}

/// Where the upload of transfer `t` stands, as `caller` may see it.
pub fn upload_status(
    spool: &Spool,
    t: &str,
    caller: &Name,
    now: Timestamp,
    log: &dyn Fn(String),
) -> std::result::Result<Upload, Refused> {
    let st = recovered_state(spool, t, caller, now, log)?;
    match st.phase {
        Phase::Rejected => Err(refused(
            410,
            format!(
                "transfer {t} was given up: {}",
                st.reason.as_deref().unwrap_or("rejected")
            ),
        )),
        Phase::Delivered => Ok(Upload {
            size: st.size,
            offset: st.size,
            expires: st.expires,
        }),
        Phase::Receiving => Ok(Upload {
            size: st.size,
            offset: st.offset(),
            expires: st.expires,
        }),
    }
}

/// Transfer `t`'s state as `caller` may see it. A run killed after
/// delivering it (its data removed) and before recording it left it
/// `receiving` with no data: it is recorded now, as the chunks' path does
/// (delivered, the sender told).
fn recovered_state(
    spool: &Spool,
    t: &str,
    caller: &Name,
    now: Timestamp,
    log: &dyn Fn(String),
) -> std::result::Result<Incoming, Refused> {
    let st = upload_state(spool, t, caller)?;
    let (_, data_path, _) = paths(spool, t).map_err(unavailable)?;
    if st.phase != Phase::Receiving || data_path.exists() {
        return Ok(st);
    }
    let _lock = crate::bulk::lock(spool).map_err(unavailable)?;
    let mut st = upload_state(spool, t, caller)?;
    if st.phase == Phase::Receiving && !data_path.exists() {
        settle(spool, t, &mut st, true, false, None, now, log).map_err(unavailable)?;
    }
    Ok(st)
}

/// Writes one piece of transfer `t`'s upload in place: taken only at the
/// offset the upload stands at, whole, and matching its checksum. Of a
/// piece that breaks off or does not match, what counts is the chunks
/// before the break that matched their digests (`patch.chunks`), or, with
/// no checksum at all, as far as it came; with only a whole checksum,
/// nothing. What counts is durable and recorded on return, even when the
/// piece is refused; the last bytes complete the transfer (checked whole,
/// delivered, the sender told).
pub fn upload_patch(
    spool: &Spool,
    t: &str,
    caller: &Name,
    mut patch: Patch<'_>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> std::result::Result<Upload, Refused> {
    let (_, data_path, _) = paths(spool, t).map_err(unavailable)?;
    let (file, at, size) = match ready_for(spool, t, caller, &patch, now, log)? {
        Ready::Write { file, at, size } => (file, at, size),
        Ready::Answered(u) => return Ok(u),
    };
    let mut copied = copy_body(&file, &data_path, &mut patch, t, at, size)?;
    let written = copied.written;
    let record = |to: u64| record_upload(spool, t, caller, file, &data_path, to, now, log);
    let Some((status, why)) = copied.broken(at) else {
        return record(at + written);
    };
    // Each chunk was checked as it came: those before the break stay.
    let keep = copied.chunks.as_ref().map_or(0, |c| c.verified);
    if keep == 0 {
        return Err(refused(
            status,
            format!("transfer {t}: {why}: nothing of it is kept; send it again from {at}"),
        ));
    }
    let u = record(at + keep)?;
    Err(refused(
        status,
        format!(
            "transfer {t}: {why}: its {keep} bytes from {at} whose chunks matched their digests are kept; \
             the upload stands at {}: send the rest from there",
            u.offset
        ),
    ))
}

/// Whether a piece may be written now.
enum Ready {
    /// Yes: into `file` (locked: one piece of a transfer at a time) from
    /// `at`, of the transfer's `size` bytes.
    Write { file: File, at: u64, size: u64 },
    /// No need: the transfer is delivered; where its upload stands.
    Answered(Upload),
}

/// Takes the data file's lock for `patch` and checks it against where the
/// upload stands under that lock: the transfer receiving, the piece at the
/// upload's offset, within the data, its chunk digests fitting its length.
fn ready_for(
    spool: &Spool,
    t: &str,
    caller: &Name,
    patch: &Patch<'_>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> std::result::Result<Ready, Refused> {
    let (_, data_path, _) = paths(spool, t).map_err(unavailable)?;
    let st = upload_state(spool, t, caller)?;
    if st.phase == Phase::Delivered && patch.offset == st.size {
        return upload_status(spool, t, caller, now, log).map(Ready::Answered);
    }
    if st.phase != Phase::Receiving {
        return Err(refused(
            if st.phase == Phase::Rejected {
                410
            } else {
                409
            },
            format!("transfer {t} is {:?} already", st.phase),
        ));
    }
    // One piece of a transfer at a time: the data file's lock.
    let file = match durable::open(std::fs::OpenOptions::new().write(true), &data_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return upload_status(spool, t, caller, now, log).map(Ready::Answered);
        }
        Err(e) => {
            return Err(refused(
                409,
                format!("the transfer's data cannot be opened: {e}"),
            ))
        }
    };
    fs2::FileExt::lock_exclusive(&file).map_err(|e| {
        refused(
            503,
            format!("the transfer's data cannot be locked now: {e}"),
        )
    })?;
    // Read again under the lock: another piece may have come meanwhile.
    let st = upload_state(spool, t, caller)?;
    if st.phase != Phase::Receiving {
        return upload_status(spool, t, caller, now, log).map(Ready::Answered);
    }
    let at = st.offset();
    if patch.offset != at {
        return Err(refused(
            409,
            format!(
                "Upload-Offset is {}, but the upload of {t} stands at {at}",
                patch.offset
            ),
        ));
    }
    let room = st.size - at;
    if patch.length.is_some_and(|n| n > room) {
        return Err(refused(
            400,
            format!(
                "{} bytes from {at} is past the end of the {} bytes of {t}",
                patch.length.unwrap_or(0),
                st.size
            ),
        ));
    }
    if let (Some(sums), Some(n)) = (&patch.chunks, patch.length) {
        if !sums.fit(n) {
            return Err(refused(
                400,
                format!(
                    "{CHUNK_CHECKSUMS} names {} chunks of {} bytes, but the body is {n} bytes",
                    sums.digests.len(),
                    sums.size
                ),
            ));
        }
    }
    Ok(Ready::Write {
        file,
        at,
        size: st.size,
    })
}

/// What of a piece's body was written, and what was checked as it came.
struct Copied<'a> {
    written: u64,
    /// Why the body broke off, if it did.
    cut: Option<String>,
    /// The piece's length and checksum, as the caller said them.
    length: Option<u64>,
    checksum: Option<&'a (Algorithm, Vec<u8>)>,
    chunks: Option<ChunkCheck<'a>>,
    sha1: openssl::sha::Sha1,
    sha256: openssl::sha::Sha256,
}

/// Writes the body of `patch` into `file` from `at` (not yet durable),
/// checking it as it comes, until it ends, breaks off, or a chunk does
/// not match. Refused when it runs past the `size` bytes of the data or
/// a write fails.
fn copy_body<'a>(
    file: &File,
    data_path: &std::path::Path,
    patch: &'a mut Patch<'_>,
    t: &str,
    at: u64,
    size: u64,
) -> std::result::Result<Copied<'a>, Refused> {
    let room = size - at;
    let Patch {
        length,
        checksum,
        chunks,
        body,
        ..
    } = patch;
    let mut c = Copied {
        written: 0,
        cut: None,
        length: *length,
        checksum: checksum.as_ref(),
        chunks: chunks.as_ref().map(ChunkCheck::new),
        sha1: openssl::sha::Sha1::new(),
        sha256: openssl::sha::Sha256::new(),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut body = body.take(room + 1);
    c.cut = loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e.to_string()),
        };
        if c.written + n as u64 > room {
            return Err(refused(
                400,
                format!("the body runs past the end of the {size} bytes of {t}"),
            ));
        }
        crate::spool::fault::write_with(data_path, || file.write_all_at(&buf[..n], at + c.written))
            .map_err(|e| {
                refused(
                    503,
                    format!("the transfer's data cannot be written now: {e}"),
                )
            })?;
        match c.checksum {
            Some((Algorithm::Sha1, _)) => c.sha1.update(&buf[..n]),
            Some((Algorithm::Sha256, _)) => c.sha256.update(&buf[..n]),
            None => {}
        }
        c.written += n as u64;
        if let Some(check) = c.chunks.as_mut() {
            if !check.take(&buf[..n]) {
                // Nothing after a chunk that does not match can count.
                break None;
            }
        }
    };
    Ok(c)
}

impl Copied<'_> {
    /// Why the piece (from `at`) does not count whole, if it does not:
    /// the HTTP status and the reason. A piece with neither checksum nor
    /// digests (plain tus) counts as far as it came.
    fn broken(&mut self, at: u64) -> Option<(u16, String)> {
        let written = self.written;
        let failed = |c: &Option<ChunkCheck>| c.as_ref().and_then(|c| c.failed.clone());
        if self.checksum.is_none() && self.chunks.is_none() {
            return None;
        }
        if let Some(why) = failed(&self.chunks) {
            return Some((460, why));
        }
        if let Some(why) = &self.cut {
            let why = format!("the body broke off after {written} bytes ({why})");
            return Some((400, why));
        }
        if self.length.is_some_and(|n| written < n) {
            let why = format!("the body ended after {written} bytes, short of its Content-Length");
            return Some((400, why));
        }
        if self.chunks.as_mut().is_some_and(|c| !c.end()) {
            return failed(&self.chunks).map(|why| (460, why));
        }
        let (algorithm, expected) = self.checksum?;
        let got = match algorithm {
            Algorithm::Sha1 => std::mem::replace(&mut self.sha1, openssl::sha::Sha1::new())
                .finish()
                .to_vec(),
            Algorithm::Sha256 => std::mem::replace(&mut self.sha256, openssl::sha::Sha256::new())
                .finish()
                .to_vec(),
        };
        (got != *expected).then(|| {
            (
                460,
                format!("the {written} bytes from {at} do not match their Upload-Checksum"),
            )
        })
    }
}

/// Records that transfer `t`'s upload holds its bytes up to `to` (written
/// through `file`, which is made durable first): the last bytes complete
/// it (checked whole, delivered, the sender told).
#[allow(clippy::too_many_arguments)]
fn record_upload(
    spool: &Spool,
    t: &str,
    caller: &Name,
    file: File,
    data_path: &std::path::Path,
    to: u64,
    now: Timestamp,
    log: &dyn Fn(String),
) -> std::result::Result<Upload, Refused> {
    durable::sync_data(&file, data_path).map_err(|e| {
        refused(
            503,
            format!("the transfer's data cannot be made durable now: {e}"),
        )
    })?;
    // Recorded under the bulk lock, the state read again (chunks may have
    // come as messages meanwhile).
    let _lock = crate::bulk::lock(spool).map_err(unavailable)?;
    let mut st = upload_state(spool, t, caller)?;
    if st.phase != Phase::Receiving {
        return upload_status(spool, t, caller, now, log);
    }
    st.uploaded_to(to);
    let done = st.offset() == st.size;
    if done {
        drop(file);
        settle(spool, t, &mut st, false, false, None, now, log).map_err(unavailable)?;
    } else {
        st.expires = now.saturating_add(spool.config().bulk.reservation);
        st.updated = now;
        save_state(spool, t, &st, now).map_err(unavailable)?;
    }
    Ok(Upload {
        size: st.size,
        offset: if st.phase == Phase::Delivered {
            st.size
        } else {
            st.offset()
        },
        expires: st.expires,
    })
}

/// Ends the upload of transfer `t` at the uploader's word (tus `DELETE`):
/// the space is freed and the sender hears `rejected`.
pub fn upload_terminate(
    spool: &Spool,
    t: &str,
    caller: &Name,
    now: Timestamp,
    log: &dyn Fn(String),
) -> std::result::Result<(), Refused> {
    let _lock = crate::bulk::lock(spool).map_err(unavailable)?;
    let mut st = upload_state(spool, t, caller)?;
    match st.phase {
        Phase::Rejected => return Ok(()),
        Phase::Delivered => return Err(refused(409, format!("transfer {t} is delivered already"))),
        Phase::Receiving => {}
    }
    let (_, data_path, _) = paths(spool, t).map_err(unavailable)?;
    let request = request_of(spool, t).map_err(unavailable)?;
    let transfer = crate::bulk::transfer_id(t, &data_path).map_err(unavailable)?;
    let why = format!("its upload was terminated by {caller}");
    tell(
        spool,
        &request,
        &transfer,
        BulkStatus::Rejected,
        Said::because(Some(why.clone())),
        now,
        log,
    )
    .map_err(unavailable)?;
    let _ = durable::remove_file(&data_path);
    log(format!("{t}: bulk transfer given up here: {why}"));
    st.phase = Phase::Rejected;
    st.reason = Some(why);
    st.updated = now;
    save_state(spool, t, &st, now).map_err(unavailable)
}
#[cfg(test)]
mod tests {
    use super::*;

    /// A piece's chunks are verified as they come, however the body is
    /// split: what counts is the chunks before the first that does not
    /// match, or before the break.
    #[test]
    fn a_pieces_chunks_count_up_to_the_first_that_fails() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 13 + i / 7) as u8).collect();
        let sums = ChunkSums {
            size: 3000,
            digests: data.chunks(3000).map(openssl::sha::sha256).collect(),
        };
        // (bytes given, in reads of, whether the piece ended there) → verified, failed
        for (len, step, ended, verified, fails) in [
            (10_000, 1000, true, 10_000, false),
            (10_000, 4096, true, 10_000, false),
            (10_000, 10_000, true, 10_000, false),
            (7_500, 700, false, 6_000, false),
            (2_999, 1, false, 0, false),
            (9_000, 3000, true, 9_000, true),
        ] {
            let mut c = ChunkCheck::new(&sums);
            for part in data[..len].chunks(step) {
                assert!(c.take(part));
            }
            if ended {
                assert_eq!(c.end(), !fails, "{len} {step}");
            }
            assert_eq!(c.verified, verified, "{len} {step}");
            assert_eq!(c.failed.is_some(), fails, "{len} {step}");
        }
        let mut bad = data.clone();
        bad[6_500] ^= 1;
        let mut c = ChunkCheck::new(&sums);
        assert!(!c.take(&bad));
        assert_eq!(c.verified, 6_000);
        assert!(c.failed.unwrap().contains("chunk 2"));
        // More than the digests name.
        let three = ChunkSums {
            size: 3000,
            digests: sums.digests[..3].to_vec(),
        };
        let mut c = ChunkCheck::new(&three);
        assert!(c.take(&data[..9_010]));
        assert!(!c.end());
        assert_eq!(c.verified, 9_000);
        assert!(c.failed.unwrap().contains("runs past"));
    }
}
