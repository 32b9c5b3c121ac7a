//! The receiving side of a transfer: authorization (the space reserved),
//! the chunks written in place as they come, the pacing, the digest
//! checked whole, and the delivery of the data as one message, once.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{answer, dir, load, save, transfers, ChunkInfo, Ranges, Said};
use crate::message::{
    envelope, stream, BulkDataRequest, BulkStatus, Content, Digest, Header, Locator, Message,
    MessageId, MimeType, Name, Target,
};
use crate::spool::{durable, maildir, Area, Result, Spool};
use crate::time::Timestamp;
use crate::transport::tus::{ChunkSums, CHUNK_CHECKSUMS};

/// The largest chunk (a chunk travels as one message).
pub(crate) const MAX_CHUNK: u64 = 16 << 20;

/// Where a transfer stands at its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Receiving,
    Delivered,
    Rejected,
}

/// The state of one transfer (`bulk/in/T.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Incoming {
    pub phase: Phase,
    pub size: u64,
    pub digest: String,
    pub mime: String,
    /// The component that sends it (none for a back-channel transfer).
    pub origin: Option<String>,
    pub chunk_size: u64,
    pub have: String,
    pub asked: String,
    /// The reservation lapses then, unless a chunk comes first.
    pub expires: Timestamp,
    pub reason: Option<String>,
    pub updated: Timestamp,
    /// The bytes from the start written and made durable by uploads over
    /// HTTP (tus), whatever the chunks held say.
    #[serde(default)]
    pub uploaded: u64,
    /// A sealed transfer: its header (base64), opened with `[bulk]
    /// identity`. `size` and the chunks are then the sealed payload's.
    #[serde(default)]
    pub sealed: Option<String>,
    /// A sealed transfer: the data's size (in the clear).
    #[serde(default)]
    pub data_size: Option<u64>,
    /// The data file is laid out as the message it is delivered as (the
    /// data's base64 text starts here): each chunk, opened, is written as
    /// its text where it belongs, and delivery is a rename.
    #[serde(default)]
    pub text_at: Option<u64>,
    /// The data's digest so far, while its chunks come in order from the
    /// first (then the whole is not read again to check it).
    #[serde(default)]
    pub hashed: Option<Hashed>,
}

/// A digest in progress: the next chunk it takes, and its state (base64).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hashed {
    pub next: u64,
    pub state: String,
}

impl Hashed {
    fn of(h: &sha2::Sha256, next: u64) -> Hashed {
        use sha2::digest::common::hazmat::SerializableState;
        let state =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h.serialize());
        Hashed { next, state }
    }

    /// The digest again; `None` from a state this build cannot read.
    fn hasher(&self) -> Option<(sha2::Sha256, u64)> {
        use sha2::digest::common::hazmat::{SerializableState, SerializedState};
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &self.state).ok()?;
        let state = SerializedState::<sha2::Sha256>::try_from(&bytes[..]).ok()?;
        Some((sha2::Sha256::deserialize(&state).ok()?, self.next))
    }
}

impl Incoming {
    fn count(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }

    /// The data's size, as delivered.
    fn data_size(&self) -> u64 {
        self.data_size.unwrap_or(self.size)
    }

    /// The key that opens a sealed transfer's chunks.
    fn key(&self, spool: &Spool) -> std::result::Result<Option<super::seal::Key>, String> {
        let Some(h) = &self.sealed else {
            return Ok(None);
        };
        let header = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, h)
            .map_err(|e| format!("its sealing header: {e}"))?;
        open_sealed(spool, &header).map(Some)
    }

    /// The bytes from the start held: uploaded, or in the chunks held
    /// from the first on (the offset an upload resumes from).
    fn offset(&self) -> u64 {
        let have = Ranges::parse(&self.have, self.count()).unwrap_or_default();
        let first_missing = (0..self.count())
            .find(|i| !have.contains(*i))
            .unwrap_or(self.count());
        (first_missing * self.chunk_size)
            .max(self.uploaded)
            .min(self.size)
    }

    /// Records that the bytes before `offset` are here: the chunks they
    /// cover whole are held.
    fn uploaded_to(&mut self, offset: u64) {
        self.uploaded = self.uploaded.max(offset);
        self.hashed = None;
        let count = self.count();
        let mut have = Ranges::parse(&self.have, count).unwrap_or_default();
        let whole = if self.uploaded >= self.size {
            count
        } else {
            self.uploaded / self.chunk_size
        };
        for i in 0..whole {
            have.insert(i);
        }
        self.have = have.to_string();
    }
}

fn paths(spool: &Spool, t: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let d = dir(spool, "in")?;
    Ok((
        d.join(format!("{t}.json")),
        d.join(format!("{t}.data")),
        d.join(format!("{t}.request")),
    ))
}

fn save_state(spool: &Spool, t: &str, st: &Incoming, now: Timestamp) -> Result<()> {
    save(spool, &dir(spool, "in")?, &format!("{t}.json"), st, now)
}

/// Opens a sealing header with this site's `[bulk] identity`.
fn open_sealed(spool: &Spool, header: &[u8]) -> std::result::Result<super::seal::Key, String> {
    let Some(path) = &spool.config().bulk.identity else {
        return Err(format!(
            "the data is sealed, and {} has no [bulk] identity to open it (age-keygen -o FILE, then identity = \"FILE\")",
            spool.config().component
        ));
    };
    let ids = super::seal::Identity::read(path)?;
    super::seal::open(header, &ids)
}

/// The request that authorized transfer `t`.
fn request_of(spool: &Spool, t: &str) -> Result<Header> {
    let (_, _, path) = paths(spool, t)?;
    let bytes = std::fs::read(&path).map_err(|e| crate::spool::Error::io("read", &path, e))?;
    envelope::parse(&bytes)
        .ok()
        .and_then(|ms| ms.into_iter().next())
        .map(|m| m.header)
        .ok_or_else(|| {
            crate::spool::Error::io("parse", &path, std::io::Error::other("not a request"))
        })
}

fn send(spool: &Spool, m: Message, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    crate::relay::pass_on(spool, vec![m], now, log).map(|_| ())
}

/// Answers the request with header `request` of transfer `t`: queued
/// toward the sender, durable on return.
fn tell(
    spool: &Spool,
    request: &Header,
    t: &MessageId,
    status: BulkStatus,
    said: Said,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    send(
        spool,
        answer(spool, request, t, status, said, now),
        now,
        log,
    )
}

/// A request whose destination is this site: answered `rejected`,
/// `deferred` or `ok` (the space allocated, the first chunks asked for);
/// a request for a transfer known here is answered as it stands.
pub fn on_request(
    spool: &Spool,
    h: &Header,
    r: &BulkDataRequest,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let t = r.transfer.as_ref().unwrap_or(&h.id).clone();
    let ts = t.to_string();
    let (state_path, data_path, _) = paths(spool, &ts)?;
    let config = &spool.config().bulk;
    let reply = |status, said: Said| send(spool, answer(spool, h, &t, status, said, now), now, log);
    if let Some(st) = load::<Incoming>(&state_path) {
        return match st.phase {
            Phase::Receiving => reply(
                BulkStatus::Ok,
                Said::asking(st.chunk_size, still_asked(&st)).sealed(st.sealed.is_some()),
            ),
            Phase::Delivered => reply(
                BulkStatus::Ok,
                Said::verified(Digest::new(st.digest.clone()).ok()),
            ),
            Phase::Rejected => reply(BulkStatus::Rejected, Said::because(st.reason.clone())),
        };
    }
    let refuse = |status: BulkStatus, why: String| {
        log(format!(
            "{ts}: bulk transfer of {} bytes {status}: {why}",
            r.size
        ));
        reply(status, Said::because(Some(why)))
    };
    let Some(digest) = &r.digest else {
        return refuse(
            BulkStatus::Rejected,
            "a request without the data's digest".into(),
        );
    };
    if r.size == 0 {
        return refuse(BulkStatus::Rejected, "a request for no data".into());
    }
    if let Some(x) = &r.sealed {
        if x.size != super::seal::sealed_size(r.size) {
            return refuse(
                BulkStatus::Rejected,
                format!(
                    "{} bytes sealed are {} bytes, not {}",
                    r.size,
                    super::seal::sealed_size(r.size),
                    x.size
                ),
            );
        }
        if let Err(why) = open_sealed(spool, &x.header) {
            // An identity file this site cannot read now is its own
            // problem: asked again later. Anything else will not change.
            let status = match &spool.config().bulk.identity {
                Some(p) if std::fs::metadata(p).is_err() => BulkStatus::Deferred,
                _ => BulkStatus::Rejected,
            };
            return refuse(status, why);
        }
    }
    let me = &spool.config().component;
    if let Some(max) = config.max_size {
        if r.size > max.0 {
            return refuse(
                BulkStatus::Rejected,
                format!(
                    "{} bytes is more than {me} takes ([bulk] max_size {max})",
                    r.size
                ),
            );
        }
    }
    let most = super::ranges::MAX_INDICES * MAX_CHUNK;
    if r.size > most {
        return refuse(
            BulkStatus::Rejected,
            format!(
                "{} bytes is more than a transfer holds ({} chunks of at most {})",
                r.size,
                super::ranges::MAX_INDICES,
                crate::config::Size(MAX_CHUNK)
            ),
        );
    }
    let receiving = transfers(spool, "in")?
        .into_iter()
        .filter_map(|(_, p)| load::<Incoming>(&p))
        .filter(|s| s.phase == Phase::Receiving)
        .count() as u32;
    if receiving >= config.max_transfers {
        return refuse(
            BulkStatus::Deferred,
            format!("{me} receives {receiving} transfers already ([bulk] max_transfers)"),
        );
    }
    let in_dir = dir(spool, "in")?;
    let min_free = spool.config().spool.min_free;
    let free = fs2::available_space(&in_dir).unwrap_or(0);
    if free < r.size.saturating_add(min_free.0) {
        return refuse(
            BulkStatus::Deferred,
            format!(
                "{me} has {} free, and keeps {min_free} ([spool] min_free)",
                crate::config::Size(free)
            ),
        );
    }
    // A sealed transfer (not a group's, which is handed on in the clear)
    // is received into the very message it is delivered as.
    let parts = (r.sealed.is_some() && super::group_here(h, spool.config()).is_none()).then(|| {
        let mut header = h.clone();
        header.id = t.clone();
        let mime = r.mime_type.clone().unwrap_or_else(MimeType::octet_stream);
        stream::data_envelope_parts(&header, &mime, r.size)
    });
    let allocated = match &parts {
        Some((head, tail)) => head.len() as u64 + stream::text_len(r.size) + tail.len() as u64,
        None => r.size,
    };
    // The reservation: the space itself, allocated.
    let file = durable::open(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true),
        &data_path,
    )
    .map_err(|e| crate::spool::Error::io("create", &data_path, e))?;
    let placed = durable::allocate(&file, allocated).and_then(|_| match &parts {
        Some((head, tail)) => file
            .write_all_at(head, 0)
            .and_then(|_| file.write_all_at(tail, allocated - tail.len() as u64)),
        None => Ok(()),
    });
    if let Err(e) = placed {
        let _ = durable::remove_file(&data_path);
        return refuse(
            BulkStatus::Deferred,
            format!("{me} could not reserve {allocated} bytes: {e}"),
        );
    }
    durable::sync_data(&file, &data_path)
        .map_err(|e| crate::spool::Error::io("fsync", &data_path, e))?;
    durable::write_durable(
        &spool.dir(Area::Tmp),
        &in_dir,
        &format!("{ts}.request"),
        &envelope::to_bytes(&[Message {
            header: h.clone(),
            content: Content::BulkDataRequest(r.clone()),
        }]),
        now.as_micros(),
    )?;
    // At most MAX_INDICES chunks, so that what is held stays nameable; a
    // sealed transfer's are whole sealed segments (each opened alone).
    let size = r.sealed.as_ref().map_or(r.size, |x| x.size);
    let chunk_size = match &r.sealed {
        None => config
            .chunk_size
            .0
            .max(size.div_ceil(super::ranges::MAX_INDICES)),
        Some(_) => {
            // Whole segments, and (laid out in place) a whole number of
            // base64 lines of data: 57 segments or a multiple.
            let segments = size.div_ceil(super::seal::SEALED_SEGMENT);
            let mut per_chunk = (config.chunk_size.0 / super::seal::SEGMENT)
                .max(segments.div_ceil(super::ranges::MAX_INDICES))
                .max(1);
            if parts.is_some() {
                let line = stream::LINE_IN as u64;
                per_chunk = per_chunk.div_ceil(line) * line;
            }
            per_chunk * super::seal::SEALED_SEGMENT
        }
    };
    let count = size.div_ceil(chunk_size);
    let asked = Ranges::span(0, count.min(config.window as u64));
    let st = Incoming {
        phase: Phase::Receiving,
        size,
        digest: digest.to_string(),
        mime: r
            .mime_type
            .as_ref()
            .map_or("application/octet-stream".into(), |m| {
                m.as_str().to_string()
            }),
        origin: h.origin().map(|o| o.to_string()),
        chunk_size,
        have: String::new(),
        asked: asked.to_string(),
        expires: now.saturating_add(config.reservation),
        reason: None,
        updated: now,
        uploaded: 0,
        sealed: r
            .sealed
            .as_ref()
            .map(|x| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &x.header)),
        data_size: r.sealed.as_ref().map(|_| r.size),
        text_at: parts.as_ref().map(|(head, _)| head.len() as u64),
        hashed: None,
    };
    save_state(spool, &ts, &st, now)?;
    log(format!(
        "{ts}: bulk transfer of {} bytes authorized ({count} chunks of {chunk_size})",
        r.size
    ));
    reply(
        BulkStatus::Ok,
        Said::asking(chunk_size, asked).sealed(r.sealed.is_some()),
    )
}

/// What is still asked for and not here (or, when all asked is here, the
/// next window).
fn still_asked(st: &Incoming) -> Ranges {
    let count = st.count();
    let have = Ranges::parse(&st.have, count).unwrap_or_default();
    let asked = Ranges::parse(&st.asked, count).unwrap_or_default();
    let missing: Vec<u64> = asked.iter().filter(|i| !have.contains(*i)).collect();
    if missing.is_empty() {
        have.missing(count, window_of(st))
    } else {
        let mut r = Ranges::default();
        for i in missing {
            r.insert(i);
        }
        r
    }
}

fn window_of(st: &Incoming) -> u64 {
    Ranges::parse(&st.asked, st.count()).map_or(1, |a| a.len().max(1))
}

/// A chunk's data: in memory, or in a one-message data envelope in a file
/// (decoded as it is read, in bounded memory).
pub enum ChunkData<'a> {
    Bytes(&'a [u8]),
    File(&'a File),
}

impl ChunkData<'_> {
    /// Writes the data (decoded) into `out`.
    pub fn read_into(&self, out: &mut dyn std::io::Write) -> std::result::Result<(), String> {
        match self {
            ChunkData::Bytes(b) => out.write_all(b).map_err(|e| e.to_string()),
            ChunkData::File(f) => {
                let mut f = f.try_clone().map_err(|e| e.to_string())?;
                stream::decode(&mut f, out)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
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
    /// Buffers kept from chunk to chunk: sealed input short of a segment,
    /// data not yet written, its text.
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
    key: Option<super::seal::Key>,
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
            let (state_path, data_path, _) = paths(spool, &t).map_err(|e| e.to_string())?;
            let st = load::<Incoming>(&state_path).ok_or_else(|| {
                format!("a chunk of transfer {t}, which this site did not authorize")
            })?;
            check_origin(h, &t, &st)?;
            if st.phase == Phase::Delivered {
                log(format!(
                    "{}: chunk {} of {t}, which is delivered already: dropped",
                    h.id, info.index
                ));
                return Ok(());
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
            self.open.insert(
                t.clone(),
                Open {
                    hashing,
                    st,
                    file,
                    path: data_path,
                    key,
                },
            );
        }
        let Open {
            st,
            file,
            path,
            key,
            hashing,
        } = self.open.get_mut(&t).expect("opened above");
        let Some(file) = file else {
            return Ok(());
        };
        check_origin(h, &t, st)?;
        let count = st.count();
        if info.index >= count {
            return Err(format!("chunk {} of a transfer of {count} chunks", info.index).into());
        }
        if info.digest.is_none() && key.is_none() {
            return Err(format!(
                "chunk {} has no digest, and transfer {t} is not sealed",
                info.index
            )
            .into());
        }
        let offset = info.index * st.chunk_size;
        let len = st.chunk_size.min(st.size - offset);
        let mut have = Ranges::parse(&st.have, count).unwrap_or_default();
        if have.contains(info.index) {
            // Held already: a copy that does not match is still set aside.
            if let Some(want) = &info.digest {
                let mut sink = Digesting::default();
                data.read_into(&mut sink)
                    .map_err(|e| format!("chunk {} cannot be read: {e}", info.index))?;
                if sink.len != len || Digest::of(sink.hash) != *want {
                    return Err(format!("chunk {} does not match its digest", info.index).into());
                }
            }
            return Ok(());
        }
        let in_order = matches!(hashing, Some((_, next)) if *next == info.index);
        let whole = hashing
            .as_ref()
            .filter(|_| in_order)
            .map(|(h, _)| h.clone());
        let at = match key {
            Some(_) => offset / super::seal::SEALED_SEGMENT * super::seal::SEGMENT,
            None => offset,
        };
        let (sealed, plain, text) = (&mut self.sealed, &mut self.plain, &mut self.text);
        sealed.clear();
        plain.clear();
        // Read, opened and checked here; written and digested beside it.
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
                segment: offset / super::seal::SEALED_SEGMENT,
                last_segment: st
                    .size
                    .div_ceil(super::seal::SEALED_SEGMENT)
                    .saturating_sub(1),
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
        let whole = written
            .and_then(|whole| read.map(|()| whole))
            .map_err(|r| match r {
                Refusal::Bad(why) => {
                    Refusal::Bad(format!("chunk {} of transfer {t}: {why}", info.index))
                }
                later => later,
            })?;
        // None when this chunk came out of order (see `whole`).
        *hashing = whole.map(|h| (h, info.index + 1));
        have.insert(info.index);
        st.have = have.to_string();
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
    key: Option<&'a super::seal::Key>,
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
        use super::seal::SEALED_SEGMENT;
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
                .map_err(Refusal::Bad)?;
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
    fn end(mut self, read: std::result::Result<(), String>) -> std::result::Result<(), Refusal> {
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

/// Records transfer `t` after data came (durable already): when all of it
/// is here, checks it whole, delivers it and says so; else, with
/// `ask_next`, asks for the next window once the asked chunks are here.
/// `gone`: the data file is gone (a run killed after delivering it).
#[allow(clippy::too_many_arguments)]
fn settle(
    spool: &Spool,
    t: &str,
    st: &mut Incoming,
    gone: bool,
    ask_next: bool,
    known: Option<Digest>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let config = &spool.config().bulk;
    let (_, data_path, _) = paths(spool, t)?;
    st.expires = now.saturating_add(config.reservation);
    st.updated = now;
    let count = st.count();
    let have = Ranges::parse(&st.have, count).unwrap_or_default();
    let request = request_of(spool, t)?;
    let transfer = super::transfer_id(t, &data_path)?;
    if have.len() == count || st.uploaded >= st.size || gone {
        // Said before it is recorded: a run killed in between says it
        // again (the sender takes the second as the first).
        complete(spool, t, st, &request, known, now, log)?;
        let said = match st.phase {
            Phase::Delivered => Said::verified(Digest::new(st.digest.clone()).ok()),
            _ => Said::because(st.reason.clone()),
        };
        let status = if st.phase == Phase::Delivered {
            BulkStatus::Ok
        } else {
            BulkStatus::Rejected
        };
        tell(spool, &request, &transfer, status, said, now, log)?;
        return save_state(spool, t, st, now);
    }
    let asked = Ranges::parse(&st.asked, count).unwrap_or_default();
    if ask_next && have.covers(&asked) {
        let next = have.missing(count, config.window as u64);
        st.asked = next.to_string();
        let said = Said::asking(st.chunk_size, next).sealed(st.sealed.is_some());
        tell(spool, &request, &transfer, BulkStatus::Ok, said, now, log)?;
    }
    save_state(spool, t, st, now)
}

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
    refused(503, format!("not taken now: {e}"))
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
    let _lock = super::lock(spool).map_err(unavailable)?;
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
    patch: Patch<'_>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> std::result::Result<Upload, Refused> {
    let (_, data_path, _) = paths(spool, t).map_err(unavailable)?;
    let st = upload_state(spool, t, caller)?;
    if st.phase == Phase::Delivered && patch.offset == st.size {
        return upload_status(spool, t, caller, now, log);
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
            return upload_status(spool, t, caller, now, log);
        }
        Err(e) => return Err(refused(409, format!("{}: {e}", data_path.display()))),
    };
    fs2::FileExt::lock_exclusive(&file)
        .map_err(|e| refused(503, format!("lock {}: {e}", data_path.display())))?;
    // Read again under the lock: another piece may have come meanwhile.
    let st = upload_state(spool, t, caller)?;
    if st.phase != Phase::Receiving {
        return upload_status(spool, t, caller, now, log);
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
    let mut sha1 = openssl::sha::Sha1::new();
    let mut sha256 = openssl::sha::Sha256::new();
    let mut chunks = patch.chunks.as_ref().map(ChunkCheck::new);
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let mut body = patch.body.take(room + 1);
    let cut = loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e.to_string()),
        };
        if written + n as u64 > room {
            return Err(refused(
                400,
                format!("the body runs past the end of the {} bytes of {t}", st.size),
            ));
        }
        crate::spool::fault::write_with(&data_path, || file.write_all_at(&buf[..n], at + written))
            .map_err(|e| refused(503, format!("write {}: {e}", data_path.display())))?;
        match patch.checksum {
            Some((Algorithm::Sha1, _)) => sha1.update(&buf[..n]),
            Some((Algorithm::Sha256, _)) => sha256.update(&buf[..n]),
            None => {}
        }
        written += n as u64;
        if let Some(c) = chunks.as_mut() {
            if !c.take(&buf[..n]) {
                // Nothing after a chunk that does not match can count.
                break None;
            }
        }
    };
    let short = patch.length.is_some_and(|n| written < n);
    // Why the piece does not count whole, if it does not. A piece with
    // neither checksum nor digests (plain tus) counts as far as it came.
    let plain = patch.checksum.is_none() && chunks.is_none();
    let failed = |c: &Option<ChunkCheck>| c.as_ref().and_then(|c| c.failed.clone());
    let broken = if plain {
        None
    } else if let Some(why) = failed(&chunks) {
        Some((460, why))
    } else if let Some(why) = cut {
        Some((
            400,
            format!("the body broke off after {written} bytes ({why})"),
        ))
    } else if short {
        Some((
            400,
            format!("the body ended after {written} bytes, short of its Content-Length"),
        ))
    } else if chunks.as_mut().is_some_and(|c| !c.end()) {
        failed(&chunks).map(|why| (460, why))
    } else {
        let whole = patch.checksum.as_ref().is_none_or(|(algorithm, expected)| {
            let got = match algorithm {
                Algorithm::Sha1 => sha1.finish().to_vec(),
                Algorithm::Sha256 => sha256.finish().to_vec(),
            };
            got == *expected
        });
        (!whole).then(|| {
            (
                460,
                format!("the {written} bytes from {at} do not match their Upload-Checksum"),
            )
        })
    };
    let record = |to: u64| record_upload(spool, t, caller, file, &data_path, to, now, log);
    let Some((status, why)) = broken else {
        return record(at + written);
    };
    // Each chunk was checked as it came: those before the break stay.
    let keep = chunks.as_ref().map_or(0, |c| c.verified);
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
    durable::sync_data(&file, data_path)
        .map_err(|e| refused(503, format!("fsync {}: {e}", data_path.display())))?;
    // Recorded under the bulk lock, the state read again (chunks may have
    // come as messages meanwhile).
    let _lock = super::lock(spool).map_err(unavailable)?;
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
    let _lock = super::lock(spool).map_err(unavailable)?;
    let mut st = upload_state(spool, t, caller)?;
    match st.phase {
        Phase::Rejected => return Ok(()),
        Phase::Delivered => return Err(refused(409, format!("transfer {t} is delivered already"))),
        Phase::Receiving => {}
    }
    let (_, data_path, _) = paths(spool, t).map_err(unavailable)?;
    let request = request_of(spool, t).map_err(unavailable)?;
    let transfer = super::transfer_id(t, &data_path).map_err(unavailable)?;
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

/// Every chunk is here: the digest is checked whole; the data is delivered
/// as message `t` (unless a run killed after delivering did it already)
/// or, not matching, set aside in quarantine.
/// `known`: the data's digest, computed as it came (else it is read, unless
/// the transfer is sealed).
fn complete(
    spool: &Spool,
    t: &str,
    st: &mut Incoming,
    request: &Header,
    known: Option<Digest>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let (_, data_path, _) = paths(spool, t)?;
    let members = super::group_here(request, spool.config());
    let handed_on = |m: &Name| {
        let id = crate::receive::decide::copy_id(&request.id, &Target::Component(m.clone()));
        spool
            .root()
            .join("bulk/out")
            .join(format!("{id}.json"))
            .exists()
    };
    let done = match members {
        Some(ms) => {
            ms.iter()
                .all(|m| *m == spool.config().component || handed_on(m))
                && !data_path.exists()
        }
        None => maildir::ids(spool)?.contains(t),
    };
    if done {
        // A run killed after delivering it: done already.
        let _ = durable::remove_file(&data_path);
        st.phase = Phase::Delivered;
        st.reason = None;
        return Ok(());
    }
    let mut f = match File::open(&data_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A run killed after setting a data that did not match aside.
            st.phase = Phase::Rejected;
            st.reason = Some(
                "its data is gone: set aside after a digest mismatch, or its reservation lapsed"
                    .into(),
            );
            return Ok(());
        }
        Err(e) => return Err(crate::spool::Error::io("open", &data_path, e)),
    };
    let got = match known {
        Some(d) => d,
        // Every segment of a sealed transfer was opened before it was
        // written (nothing else writes its data: it takes no upload), each
        // under the key its request carried, at its own index, the last as
        // the last: the whole is the payload as sealed, whose digest the
        // request announced. Reading it again would prove nothing more.
        None if st.sealed.is_some() => Digest::new(st.digest.clone())
            .map_err(|e| crate::spool::Error::io("read", &data_path, std::io::Error::other(e)))?,
        None => read_digest(&mut f, st, &data_path, t)?,
    };
    if got.as_str() != st.digest {
        let why = format!("the data's digest is {got}, not {} as announced", st.digest);
        let kept = spool.quarantine(&data_path, "bulk", &format!("transfer {t}: {why}"), now)?;
        log(format!(
            "{t}: bulk transfer rejected: {why} (kept as {})",
            kept.display()
        ));
        st.phase = Phase::Rejected;
        st.reason = Some(why);
        return Ok(());
    }
    if let Some(members) = members {
        fan_out(spool, t, st, request, members, &data_path, &got, now, log)?;
    } else if st.text_at.is_some() {
        // The file is the message (made durable as its chunks came):
        // delivered by its rename.
        maildir::deliver_file(spool, &super::transfer_id(t, &data_path)?, &data_path, now)?;
    } else {
        let mut header = request.clone();
        header.id = super::transfer_id(t, &data_path)?;
        let mime = MimeType::new(st.mime.clone()).unwrap_or_else(|_| MimeType::octet_stream());
        deliver_copy(spool, header, &mime, st.data_size(), &data_path, now)?;
    }
    let _ = durable::remove_file(&data_path);
    st.phase = Phase::Delivered;
    st.reason = None;
    log(format!(
        "{t}: bulk transfer of {} bytes verified ({got}) and delivered",
        st.data_size()
    ));
    Ok(())
}

/// The digest of transfer `st`'s data as its file holds it (in the clear,
/// or as the text of the message it is laid out as).
fn read_digest(
    f: &mut File,
    st: &Incoming,
    data_path: &std::path::Path,
    t: &str,
) -> Result<Digest> {
    struct Hashing(sha2::Sha256, crate::output::Progress);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            sha2::Digest::update(&mut self.0, buf);
            self.1.add(buf.len() as u64);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let progress = crate::output::Progress::new(format!("{t}: verifying"), st.data_size());
    let mut hashing = Hashing(<sha2::Sha256 as sha2::Digest>::new(), progress);
    if st.text_at.is_some() {
        let layout = stream::decode(f, &mut hashing).map_err(|e| {
            crate::spool::Error::io("read", data_path, std::io::Error::other(e.to_string()))
        })?;
        if layout.size != st.data_size() {
            return Err(crate::spool::Error::io(
                "read",
                data_path,
                std::io::Error::other("not the size authorized"),
            ));
        }
    } else {
        std::io::copy(f, &mut hashing)
            .map_err(|e| crate::spool::Error::io("read", data_path, e))?;
    }
    Ok(Digest::of(hashing.0))
}

/// The data of group transfer `t`, verified here, goes on to each member
/// of the group in a transfer of its own (its ID derived from `t` and the
/// member, its data a link to this one), or into this site's Maildir when
/// it is a member itself. Each member's transfer keeps its own state
/// (`bulk/out/`): refused, deferred and retried on its own; the data's
/// last link goes with the last member's delivery.
#[allow(clippy::too_many_arguments)]
fn fan_out(
    spool: &Spool,
    t: &str,
    st: &Incoming,
    request: &Header,
    members: &[Name],
    data_path: &std::path::Path,
    digest: &Digest,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let me = &spool.config().component;
    let mime = MimeType::new(st.mime.clone()).unwrap_or_else(|_| MimeType::octet_stream());
    for m in members {
        let target = Target::Component(m.clone());
        let mut header = request.clone();
        header.id = crate::receive::decide::copy_id(&request.id, &target);
        if let Locator::Destination(d) = &mut header.locator {
            d.targets = vec![target];
        }
        if m == me {
            deliver_copy(spool, header, &mime, st.data_size(), data_path, now)?;
            continue;
        }
        // The member's transfer is this site's: its messages start their
        // routing here, and the member answers this site.
        header.routing.clear();
        let member = super::sender::Member {
            header: &header,
            report_to: request.origin(),
            mime: &mime,
            digest,
            data: data_path,
        };
        super::sender::start_linked(spool, member, now, log)?;
    }
    log(format!(
        "{t}: bulk transfer to group of {} members verified here and handed on to each",
        members.len()
    ));
    Ok(())
}

/// Delivers the data at `data_path` as the message with header `header`
/// (a transfer's, or this site's copy of a group's), unless it is here.
fn deliver_copy(
    spool: &Spool,
    header: Header,
    mime: &MimeType,
    size: u64,
    data_path: &std::path::Path,
    now: Timestamp,
) -> Result<()> {
    if maildir::ids(spool)?.contains(header.id.as_str()) {
        return Ok(());
    }
    let (path, mime) = (data_path.to_path_buf(), mime.clone());
    let id = header.id.clone();
    let write: maildir::Writer<'_> = Box::new(move |out| {
        let mut f = File::open(&path)?;
        stream::write_data_envelope(&header, &mime, size, &mut f, out)
    });
    maildir::deliver(spool, &[(id, write)], now)?;
    Ok(())
}

/// Lets lapsed reservations go (the sender is told), and asks again for
/// chunks that have not come for half of `[bulk] reservation`.
pub fn tick(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    let config = &spool.config().bulk;
    for (t, path) in transfers(spool, "in")? {
        let Some(mut st) = load::<Incoming>(&path) else {
            continue;
        };
        if st.phase != Phase::Receiving {
            continue;
        }
        let Ok(request) = request_of(spool, &t) else {
            continue;
        };
        let Ok(transfer) = MessageId::parse(&t) else {
            continue;
        };
        if now > st.expires {
            let (_, data_path, _) = paths(spool, &t)?;
            let _ = durable::remove_file(&data_path);
            let why = format!(
                "the reservation lapsed at {} with no chunk since",
                st.expires
            );
            log(format!("{t}: bulk transfer given up here: {why}"));
            st.phase = Phase::Rejected;
            st.reason = Some(why.clone());
            st.updated = now;
            save_state(spool, &t, &st, now)?;
            let said = Said::because(Some(why));
            tell(
                spool,
                &request,
                &transfer,
                BulkStatus::Rejected,
                said,
                now,
                log,
            )?;
        } else if now > st.updated.saturating_add(config.reservation / 2) {
            let ask = still_asked(&st);
            log(format!("{t}: chunks {ask} not here yet: asked again"));
            st.updated = now;
            let said = Said::asking(st.chunk_size, ask).sealed(st.sealed.is_some());
            tell(spool, &request, &transfer, BulkStatus::Ok, said, now, log)?;
            save_state(spool, &t, &st, now)?;
        }
    }
    Ok(())
}

/// Where transfer `t` (its state at `path`) stands here, for listings.
pub fn status(t: &str, path: &std::path::Path) -> Option<serde_json::Value> {
    let st = load::<Incoming>(path)?;
    let count = st.count();
    let held = Ranges::parse(&st.have, count).map_or(0, |h| h.len());
    let sealed = if st.sealed.is_some() { "sealed " } else { "" };
    let summary = match st.phase {
        Phase::Receiving => format!(
            "{}bulk transfer of {} bytes from {}: authorized, {held} of {count} chunks held, chunks {} asked for; lapses at {}",
            sealed,
            st.data_size(),
            st.origin.as_deref().unwrap_or("the provider"),
            st.asked,
            st.expires
        ),
        Phase::Delivered => format!("{sealed}bulk transfer of {} bytes: verified ({}) and delivered", st.data_size(), st.digest),
        Phase::Rejected => format!(
            "{sealed}bulk transfer of {} bytes: rejected: {}",
            st.data_size(),
            st.reason.clone().unwrap_or_default()
        ),
    };
    Some(serde_json::json!({
        "id": t, "direction": "in", "state": st.phase, "summary": summary,
        "bulk": {
            "phase": st.phase, "size": st.data_size(), "digest": st.digest, "origin": st.origin,
            "sealed": st.sealed.is_some(),
            "chunk_size": st.chunk_size, "chunks": count, "chunks_held": held,
            "asked": st.asked, "expires": st.expires, "reason": st.reason, "updated": st.updated,
        }
    }))
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

    /// A digest kept in a state file between chunks goes on where it
    /// stopped, at any length (a partial block included).
    #[test]
    fn a_digest_in_progress_survives_its_state_file() {
        use sha2::Digest as _;
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for cut in [0, 1, 63, 64, 65, 4096, 9_999, 10_000] {
            let mut h = sha2::Sha256::new();
            h.update(&data[..cut]);
            let kept = serde_json::to_string(&Hashed::of(&h, 3)).unwrap();
            let back: Hashed = serde_json::from_str(&kept).unwrap();
            let (mut h, next) = back.hasher().expect("read back");
            assert_eq!(next, 3);
            h.update(&data[cut..]);
            assert_eq!(Digest::of(h), crate::bulk::digest_of(&data), "cut at {cut}");
        }
        let junk = Hashed {
            next: 0,
            state: "zz".into(),
        };
        assert!(junk.hasher().is_none());
        let short = Hashed {
            next: 0,
            state: "AP8=".into(),
        };
        assert!(short.hasher().is_none());
    }
}
