//! Chunks that come as messages: each is checked (its transfer
//! authorized here, its origin the transfer's, its index, its digest or
//! its sealed segments) and written in place as it is read, in bounded
//! memory. Invariant: a chunk is recorded as held only once it matched
//! and its bytes are durable ([`Chunks::finish`] makes a run's writes
//! durable, one `fdatasync` per transfer, before it records them).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::{paths, settle, Hashed, Incoming, Phase};
use crate::bulk::{load, ChunkInfo, Error, Ranges};
use crate::message::{stream, Digest, Header, MimeType};
use crate::spool::{durable, Result, Spool};
use crate::time::Timestamp;

/// A chunk's data: in memory, or in a one-message data envelope in a file
/// (decoded as it is read, in bounded memory).
pub enum ChunkData<'a> {
    Bytes(&'a [u8]),
    File(&'a File),
}

impl ChunkData<'_> {
    /// Writes the data (decoded) into `out`.
    pub fn read_into(&self, out: &mut dyn std::io::Write) -> std::result::Result<(), Error> {
        match self {
            ChunkData::Bytes(b) => out.write_all(b).map_err(Error::ChunkData),
            ChunkData::File(f) => {
                let mut f = f.try_clone().map_err(Error::ChunkData)?;
                stream::decode(&mut f, out)?;
                Ok(())
            }
        }
    }
}

/// Why a chunk is not taken.
#[derive(Debug)]
pub enum Refusal {
    /// It never will be: set aside (quarantine), with the reason.
    Bad(String),
    /// Not now (this site cannot open it, or cannot write it): held, or
    /// left with its sender, for a later run.
    Later(String),
}

impl From<String> for Refusal {
    fn from(why: String) -> Refusal {
        Refusal::Bad(why)
    }
}

/// What cannot be read will not be read later either: set aside.
impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::Bad(e.to_string())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Bad(why) | Refusal::Later(why) => f.write_str(why),
        }
    }
}

/// Chunks handled in one run: written in place as they come, made durable
/// and recorded once per transfer at [`Chunks::finish`].
#[derive(Default)]
pub struct Chunks {
    open: BTreeMap<String, Open>,
    buffers: Buffers,
}

/// Buffers kept from chunk to chunk: sealed input short of a segment,
/// data not yet written, its text.
#[derive(Default)]
struct Buffers {
    sealed: Vec<u8>,
    plain: Vec<u8>,
    text: Vec<u8>,
}

/// A transfer chunks came for in this run.
struct Open {
    st: Incoming,
    /// None: its data is gone (delivered by a run killed before recording).
    file: Option<File>,
    path: PathBuf,
    /// A sealed transfer's key.
    key: Option<crate::bulk::seal::Key>,
    /// The data's digest so far, while its chunks come in order from the
    /// first (then the whole is not read again to check it), and the next
    /// chunk it takes.
    hashing: Option<(sha2::Sha256, u64)>,
}

impl Chunks {
    /// Checks one chunk (the data of message `h`, of type `mime`) and
    /// writes it in place as it is read. `Err`: why it is not taken.
    pub fn add(
        &mut self,
        spool: &Spool,
        h: &Header,
        mime: &MimeType,
        data: ChunkData<'_>,
        log: &dyn Fn(String),
    ) -> std::result::Result<(), Refusal> {
        let info = ChunkInfo::parse(mime.as_str())?;
        let t = info.transfer.to_string();
        if !self.open.contains_key(&t) {
            let Some(open) = Open::new(spool, h, &t, info.index, log)? else {
                return Ok(());
            };
            self.open.insert(t.clone(), open);
        }
        let open = self.open.get_mut(&t).expect("opened above");
        if open.file.is_none() {
            return Ok(());
        }
        check_origin(h, &t, &open.st)?;
        let count = open.st.count();
        if info.index >= count {
            return Err(format!("chunk {} of a transfer of {count} chunks", info.index).into());
        }
        if info.digest.is_none() && open.key.is_none() {
            return Err(format!(
                "chunk {} has no digest, and transfer {t} is not sealed",
                info.index
            )
            .into());
        }
        let mut have = Ranges::parse(&open.st.have, count).unwrap_or_default();
        if have.contains(info.index) {
            return check_copy(&open.st, &info, data);
        }
        let whole = open
            .write(&mut self.buffers, &info, data)
            .map_err(|r| match r {
                Refusal::Bad(why) => {
                    Refusal::Bad(format!("chunk {} of transfer {t}: {why}", info.index))
                }
                later => later,
            })?;
        // None when this chunk came out of order (see `Open::write`).
        open.hashing = whole.map(|h| (h, info.index + 1));
        have.insert(info.index);
        open.st.have = have.to_string();
        Ok(())
    }

    /// Makes what was written durable and records it; asks for the next
    /// chunks, or checks the whole data, delivers it and says so.
    pub fn finish(self, spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
        for (t, o) in self.open {
            let Open {
                mut st,
                file,
                path: data_path,
                hashing,
                ..
            } = o;
            st.hashed = hashing.as_ref().map(|(h, next)| Hashed::of(h, *next));
            let known = hashing
                .filter(|(_, next)| *next == st.count())
                .map(|(h, _)| Digest::of(h));
            let gone = file.is_none();
            if let Some(file) = file {
                durable::sync_data(&file, &data_path)
                    .map_err(|e| crate::spool::Error::io("fsync", &data_path, e))?;
            }
            settle(spool, &t, &mut st, gone, true, known, now, log)?;
        }
        Ok(())
    }
}

impl Open {
    /// Opens transfer `t` for the chunks of this run, the first of which
    /// (`index`) came in message `h`. `None`: the transfer is delivered
    /// already, and the chunk dropped. Refused when the transfer is not
    /// authorized here, not `h`'s origin's, or given up; for later when
    /// its data file or its key cannot be opened now.
    fn new(
        spool: &Spool,
        h: &Header,
        t: &str,
        index: u64,
        log: &dyn Fn(String),
    ) -> std::result::Result<Option<Open>, Refusal> {
        let (state_path, data_path, _) = paths(spool, t).map_err(|e| e.to_string())?;
        let st = load::<Incoming>(&state_path)
            .ok_or_else(|| format!("a chunk of transfer {t}, which this site did not authorize"))?;
        check_origin(h, t, &st)?;
        if st.phase == Phase::Delivered {
            log(format!(
                "{}: chunk {index} of {t}, which is delivered already: dropped",
                h.id
            ));
            return Ok(None);
        }
        if st.phase != Phase::Receiving {
            return Err(format!("a chunk of transfer {t}, which is {:?}", st.phase).into());
        }
        // No data file: a run killed after delivering it (or setting
        // it aside) and before recording that; `finish` completes it.
        let file = match durable::open(std::fs::OpenOptions::new().write(true), &data_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Refusal::Later(format!("{}: {e}", data_path.display()))),
        };
        // A key this site cannot read now is its own problem: the
        // chunk waits for the next run, it is not set aside.
        let key = st
            .key(spool)
            .map_err(|e| Refusal::Later(format!("a chunk of sealed transfer {t}: {e}")))?;
        // A sealed transfer's whole is vouched for by its segments
        // (see `complete`): it is not digested.
        let hashing = match &st.hashed {
            _ if key.is_some() => None,
            Some(h) => h.hasher(),
            None => (st.have.is_empty() && st.uploaded == 0)
                .then(|| (<sha2::Sha256 as sha2::Digest>::new(), 0)),
        };
        Ok(Some(Open {
            hashing,
            st,
            file,
            path: data_path,
            key,
        }))
    }

    /// Reads chunk `info` from `data`, opens and checks it, and writes it
    /// where it belongs in the data file (written and digested beside the
    /// reading, on a thread of its own). Not yet durable. `Ok`: the data's
    /// digest so far, when this chunk came in order (see `hashing`).
    fn write(
        &mut self,
        buffers: &mut Buffers,
        info: &ChunkInfo,
        data: ChunkData<'_>,
    ) -> std::result::Result<Option<sha2::Sha256>, Refusal> {
        use crate::bulk::seal::{SEALED_SEGMENT, SEGMENT};
        let Open {
            st,
            file: Some(file),
            path,
            key,
            hashing,
        } = self
        else {
            return Ok(None);
        };
        let offset = info.index * st.chunk_size;
        let len = st.chunk_size.min(st.size - offset);
        let in_order = matches!(hashing, Some((_, next)) if *next == info.index);
        let whole = hashing
            .as_ref()
            .filter(|_| in_order)
            .map(|(h, _)| h.clone());
        let at = match key {
            Some(_) => offset / SEALED_SEGMENT * SEGMENT,
            None => offset,
        };
        let Buffers {
            sealed,
            plain,
            text,
        } = buffers;
        sealed.clear();
        plain.clear();
        let (blocks, to_write) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(2);
        let (spare, spares) = std::sync::mpsc::channel::<Vec<u8>>();
        let text_at = st.text_at;
        let file = &*file;
        let path = path.as_path();
        let (read, written) = std::thread::scope(|scope| {
            let writer = scope
                .spawn(move || write_blocks(file, path, text_at, text, whole, to_write, spare));
            let mut place = Place {
                key: key.as_ref(),
                segment: offset / SEALED_SEGMENT,
                last_segment: st.size.div_ceil(SEALED_SEGMENT).saturating_sub(1),
                sealed,
                plain,
                at,
                text: text_at.is_some(),
                got: 0,
                len,
                digest: info
                    .digest
                    .clone()
                    .map(|want| (<sha2::Sha256 as sha2::Digest>::new(), want)),
                blocks,
                spares,
                refused: None,
            };
            let read = data.read_into(&mut place);
            // The writer ends when the blocks do (`end` drops `place`).
            let read = place.end(read);
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(Refusal::Later("the chunk's writer stopped".into())));
            (read, written)
        });
        // What the writer could not do (a full disk) comes first: the
        // reader stopped because of it.
        written.and_then(|whole| read.map(|()| whole))
    }
}

/// A chunk held already, come again: a copy that does not match its
/// digest is still refused (set aside); else it is taken, and nothing
/// written.
fn check_copy(
    st: &Incoming,
    info: &ChunkInfo,
    data: ChunkData<'_>,
) -> std::result::Result<(), Refusal> {
    let Some(want) = &info.digest else {
        return Ok(());
    };
    let offset = info.index * st.chunk_size;
    let len = st.chunk_size.min(st.size - offset);
    let mut sink = Digesting::default();
    data.read_into(&mut sink)
        .map_err(|e| format!("chunk {} cannot be read: {e}", info.index))?;
    if sink.len != len || Digest::of(sink.hash) != *want {
        return Err(format!("chunk {} does not match its digest", info.index).into());
    }
    Ok(())
}

/// Refuses a chunk of transfer `t` (state `st`) that its sender did not
/// send.
fn check_origin(h: &Header, t: &str, st: &Incoming) -> std::result::Result<(), Refusal> {
    let origin = h.origin().map(|o| o.to_string());
    if origin != st.origin {
        return Err(format!(
            "a chunk of transfer {t} from {origin:?}; the transfer is {:?}'s",
            st.origin
        )
        .into());
    }
    Ok(())
}

/// A writer that digests and counts what it is given.
#[derive(Default)]
struct Digesting {
    hash: sha2::Sha256,
    len: u64,
}

impl std::io::Write for Digesting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.hash, buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One chunk on its way into its transfer's data file: its bytes opened
/// (sealed segments) and checked as they come, and handed a block at a
/// time to [`write_blocks`].
struct Place<'a> {
    key: Option<&'a crate::bulk::seal::Key>,
    /// The next sealed segment's index, and the payload's last.
    segment: u64,
    last_segment: u64,
    sealed: &'a mut Vec<u8>,
    /// The data not yet handed on, which starts at `at` in the data.
    plain: &'a mut Vec<u8>,
    at: u64,
    /// Blocks are whole lines of text (the data is written as text).
    text: bool,
    /// Bytes of the chunk taken, and the chunk's length.
    got: u64,
    len: u64,
    /// The chunk's digest so far and the one it carries (such a chunk is
    /// written only once it matches).
    digest: Option<(sha2::Sha256, Digest)>,
    blocks: std::sync::mpsc::SyncSender<(u64, Vec<u8>)>,
    /// Blocks written, to fill again.
    spares: std::sync::mpsc::Receiver<Vec<u8>>,
    refused: Option<Refusal>,
}

/// Data handed on at a time: whole base64 lines, about 230 KB.
const BLOCK: usize = stream::LINE_IN * 4096;

impl Place<'_> {
    /// Opens the whole sealed segments taken, and hands on what is due.
    fn take(&mut self, last: bool) -> std::result::Result<(), Refusal> {
        use crate::bulk::seal::SEALED_SEGMENT;
        if let Some(key) = self.key {
            let whole = if last {
                self.sealed.len()
            } else {
                self.sealed.len() / SEALED_SEGMENT as usize * SEALED_SEGMENT as usize
            };
            for seg in self.sealed[..whole].chunks(SEALED_SEGMENT as usize) {
                key.open(
                    self.segment,
                    self.segment == self.last_segment,
                    seg,
                    self.plain,
                )
                .map_err(|e| Refusal::Bad(e.to_string()))?;
                self.segment += 1;
            }
            self.sealed.drain(..whole);
        }
        if (self.plain.len() >= BLOCK && self.digest.is_none()) || last {
            self.hand_on(last)?;
        }
        Ok(())
    }

    /// Hands on the data held: whole lines of it (all, when `last`).
    fn hand_on(&mut self, last: bool) -> std::result::Result<(), Refusal> {
        let n = if last || !self.text {
            self.plain.len()
        } else {
            self.plain.len() / stream::LINE_IN * stream::LINE_IN
        };
        if n == 0 {
            return Ok(());
        }
        let mut next = self.spares.try_recv().unwrap_or_default();
        next.clear();
        next.extend_from_slice(&self.plain[n..]);
        self.plain.truncate(n);
        let block = std::mem::replace(self.plain, next);
        self.blocks
            .send((self.at, block))
            .map_err(|_| Refusal::Later("the chunk's writer stopped".into()))?;
        self.at += n as u64;
        Ok(())
    }

    /// The chunk's end, once `read`: checked whole, the rest handed on.
    fn end(mut self, read: std::result::Result<(), Error>) -> std::result::Result<(), Refusal> {
        if let Some(refusal) = self.refused.take() {
            return Err(refusal);
        }
        read.map_err(|e| Refusal::Bad(format!("it cannot be read: {e}")))?;
        if self.got != self.len {
            return Err(Refusal::Bad(format!(
                "{} bytes, not {}",
                self.got, self.len
            )));
        }
        if let Some((h, want)) = self.digest.take() {
            if Digest::of(h) != want {
                return Err(Refusal::Bad("it does not match its digest".into()));
            }
        }
        self.take(true)
    }
}

/// Writes the blocks of a chunk where they belong in `file` (as the text
/// of the message the data is delivered as, from `text_at`, when the file
/// is laid out so), digesting them into `whole`, until they end.
fn write_blocks(
    file: &File,
    path: &std::path::Path,
    text_at: Option<u64>,
    text: &mut Vec<u8>,
    mut whole: Option<sha2::Sha256>,
    blocks: std::sync::mpsc::Receiver<(u64, Vec<u8>)>,
    spare: std::sync::mpsc::Sender<Vec<u8>>,
) -> std::result::Result<Option<sha2::Sha256>, Refusal> {
    for (at, block) in blocks {
        let (written, at) = match text_at {
            None => (&block[..], at),
            Some(text_at) => {
                text.resize(block.len().div_ceil(stream::LINE_IN) * stream::LINE_OUT, 0);
                let len = stream::encode_lines(&block, text);
                (&text[..len], text_at + stream::text_offset(at))
            }
        };
        crate::spool::fault::write_with(path, || file.write_all_at(written, at))
            .map_err(|e| Refusal::Later(format!("write {}: {e}", path.display())))?;
        durable::start_writeback(file, at, written.len() as u64);
        if let Some(h) = &mut whole {
            sha2::Digest::update(h, &block);
        }
        let _ = spare.send(block);
    }
    Ok(whole)
}

impl std::io::Write for Place<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let fail = |p: &mut Self, r: Refusal| {
            let e = std::io::Error::other(r.to_string());
            p.refused = Some(r);
            e
        };
        self.got += buf.len() as u64;
        if self.got > self.len {
            let r = Refusal::Bad(format!("more than the chunk's {} bytes", self.len));
            return Err(fail(self, r));
        }
        if let Some((h, _)) = &mut self.digest {
            sha2::Digest::update(h, buf);
        }
        match self.key {
            Some(_) => self.sealed.extend_from_slice(buf),
            None => self.plain.extend_from_slice(buf),
        }
        if let Err(r) = self.take(false) {
            return Err(fail(self, r));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
