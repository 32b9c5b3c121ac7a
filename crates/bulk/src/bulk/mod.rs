//! Bulk data (SPEC.md sections 11 and 12): data above `[bulk] threshold`
//! is authorized along its path before it is sent, then sent in chunks
//! the receiver asks for, and verified whole at the end.
//!
//! **The sender** (`rs-send`, [`sender::prepare`]) keeps a copy of the data
//! (`bulk/out/T.data`, T the ID it printed) and queues a
//! `bulk-data-request` (class, subclass, size, digest). It then follows the
//! receiver's answers (`bulk-data-response`): `deferred` asks again after
//! `[bulk] retry`, up to `max_deferrals` times; `rejected` ends the
//! transfer (dead, logged); `ok` with the chunks asked for (`ask`) queues
//! those chunks; `ok` with the digest verified ends it: the copy goes.
//!
//! **A hop** ([`hop`]) that carries a request may refuse it (its
//! `max_size`, its disk) by answering it itself, so the request goes no
//! further; else it reserves the space (`bulk/hop/T.json`, a lease that
//! lapses after `[bulk] reservation` unless the transfer moves) and passes
//! the request on. The reservation is granted when the receiver's `ok`
//! passes back through it, so the sender hears `ok` only once every hop on
//! the path granted its own (the lease chain); it ends with the last answer.
//!
//! **The receiver** ([`receiver`]) refuses (`max_size`), defers (more than
//! `max_transfers` at once, or no room) or authorizes: the space is
//! allocated (`bulk/in/T.data`) and the first `window` chunks asked for.
//! Chunks (`data` messages of type [`CHUNK_TYPE`], each with its index and
//! digest) are checked and written in place; when every asked chunk is
//! here the next window is asked for (the pacing); when all are here the
//! whole digest is checked and the data delivered into the Maildir as
//! message T, once; the last answer says ok (or rejected) with the digest.
//!
//! Chunks are ordinary messages: every hop acknowledges them and
//! retransmits what is not acknowledged, duplicates are dropped by the
//! duplicate memory, and a chunk that did not arrive is asked for again.
//! They go with precedence `bulk`, so urgent and normal messages pass them.
//!
//! Everything bulk takes is held in `divert/` under [`LABEL`] (so it is
//! acknowledged only once durable) and handled by [`run_held`] from
//! `relay::run_pending`; [`tick`] asks again after deferrals and lets
//! lapsed reservations go. State lives in `bulk/` under `bulk/.lock`.

pub mod claim;
mod error;
pub mod hop;
pub mod ranges;
pub mod receiver;
pub mod seal;
pub mod sender;
pub mod upload;

use std::path::{Path, PathBuf};

use crate::message::{
    BulkDataResponse, BulkStatus, Content, Destination, Header, Locator, Message, MessageId, Name,
    Persistence, Precedence, Qos, Source, Target, Text,
};
use crate::route::NextHop;
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

pub use error::Error;
pub use ranges::Ranges;

/// The `divert/` label of what bulk takes (no rule may use it).
pub const LABEL: &str = "rs-bulk";
/// The MIME type of a chunk's data; its parameters say which transfer,
/// which chunk, and the chunk's digest.
pub const CHUNK_TYPE: &str = "application/vnd.rs.bulk-chunk";
/// Where a receiver's `ok` says the data may be uploaded over HTTP (tus),
/// relative to the URL its neighbour posts to (`uploads/T`); where there
/// is no URL the chunks it asks for travel as messages.
pub const UPLOADS: &str = "uploads/";
/// The most bytes of a request or an answer read into memory.
const MAX_SMALL: u64 = 256 * 1024;

/// The directory `bulk/SUB` of the spool, made if missing.
pub fn dir(spool: &Spool, sub: &str) -> Result<PathBuf> {
    let d = spool.root().join("bulk").join(sub);
    if !d.is_dir() {
        durable::create_dir_all(&d)?;
    }
    Ok(d)
}

/// Takes `bulk/.lock`: one run changes bulk state at a time.
pub(crate) fn lock(spool: &Spool) -> Result<std::fs::File> {
    let d = dir(spool, "")?;
    let path = d.join(".lock");
    durable::lock_exclusive(&path).map_err(|e| crate::spool::Error::io("lock", &path, e))
}

/// Takes the lock [`lock`] takes if no one holds it: `None` when another
/// does (a caller that holds other locks must not wait for it: a run of
/// [`run_held`] holding it may wait for theirs).
pub(crate) fn try_lock(spool: &Spool) -> Result<Option<std::fs::File>> {
    let d = dir(spool, "")?;
    let path = d.join(".lock");
    durable::try_lock_exclusive(&path).map_err(|e| crate::spool::Error::io("lock", &path, e))
}

/// Whether a chunk (data of type `mime`) with header `h` belongs to a
/// transfer this site receives: it is written in place when it comes.
pub fn received_here(
    h: &Header,
    mime: Option<&str>,
    config: &crate::config::Config,
    learned: &crate::route::Learned,
) -> bool {
    mime.is_some_and(is_chunk_type)
        && (group_here(h, config).is_some()
            || crate::route::next_hop(h, config, learned) == NextHop::Local)
}

/// Whether a message of content kind `kind` (and data of `mime`) is part of
/// a transfer.
pub fn is_bulk(kind: &str, mime: Option<&str>) -> bool {
    kind == "bulk-data-request"
        || kind == "bulk-data-response"
        || (kind == "data" && mime.is_some_and(is_chunk_type))
}

pub(crate) fn is_chunk_type(mime: &str) -> bool {
    mime.split(';')
        .next()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case(CHUNK_TYPE))
}

/// Whether bulk takes a message of a transfer (see [`is_bulk`]) whose next
/// hop is `hop`: at its destination everything; at a hop the requests
/// (which it may refuse, and reserves for) and the answers (which grant
/// or end its reservation). Chunks pass a hop as any message does.
pub fn takes(kind: &str, hop: &NextHop) -> bool {
    match hop {
        NextHop::Local => true,
        NextHop::Peer(_) => kind == "bulk-data-request" || kind == "bulk-data-response",
        NextHop::Unknown(_) => false,
    }
}

/// The members of the group a transfer is addressed to, when that group
/// is configured here: this site is then the transfer's receiver (the
/// relay nearest the members fetches the data once) and sends it on to
/// each member in a transfer of its own.
pub fn group_here<'a>(h: &Header, config: &'a crate::config::Config) -> Option<&'a [Name]> {
    let Locator::Destination(d) = &h.locator else {
        return None;
    };
    match d.targets.as_slice() {
        [Target::Group(g)] => config
            .groups
            .iter()
            .find(|c| c.name == *g)
            .map(|c| c.members.as_slice()),
        _ => None,
    }
}

/// A chunk's parameters, as its MIME type carries them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    pub transfer: MessageId,
    pub index: u64,
    /// The chunk's digest: absent only from a sealed transfer's chunks,
    /// whose sealing authenticates every segment (and its place).
    pub digest: Option<crate::message::Digest>,
}

impl ChunkInfo {
    pub fn mime(&self) -> String {
        let mut m = format!(
            "{CHUNK_TYPE}; transfer={}; index={}",
            self.transfer, self.index
        );
        if let Some(d) = &self.digest {
            m.push_str(&format!("; digest={d}"));
        }
        m
    }

    /// Reads the parameters of chunk type `mime`.
    pub fn parse(mime: &str) -> std::result::Result<ChunkInfo, Error> {
        if !is_chunk_type(mime) {
            return Err(Error::NotChunkType { mime: mime.into() });
        }
        let mut transfer = None;
        let mut index = None;
        let mut digest = None;
        for p in mime.split(';').skip(1) {
            let Some((k, v)) = p.trim().split_once('=') else {
                continue;
            };
            match k.trim() {
                "transfer" => transfer = MessageId::parse(v.trim()).ok(),
                "index" => index = v.trim().parse::<u64>().ok(),
                "digest" => digest = Some(crate::message::Digest::new(v.trim()).ok()),
                _ => {}
            }
        }
        let digest = match digest {
            None => None,
            Some(d) => Some(d.ok_or_else(|| Error::ChunkDigest { mime: mime.into() })?),
        };
        match (transfer, index) {
            (Some(transfer), Some(index)) => Ok(ChunkInfo {
                transfer,
                index,
                digest,
            }),
            _ => Err(Error::ChunkUnnamed { mime: mime.into() }),
        }
    }
}

/// The ID of transfer `t` (a name read from `bulk/`), or an error naming
/// `path`.
fn transfer_id(t: &str, path: &Path) -> Result<MessageId> {
    MessageId::parse(t)
        .map_err(|e| crate::spool::Error::io("name", path, std::io::Error::other(e.to_string())))
}

/// The digest of `bytes`.
pub fn digest_of(bytes: &[u8]) -> crate::message::Digest {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(bytes);
    crate::message::Digest::of(h)
}

/// The locator of an answer to a message with header `h`: back to its
/// origin. A forward-path request is answered on the back-channel to its
/// source; a back-channel request on the forward path, from `me`.
fn answer_locator(h: &Header, me: &Name) -> Locator {
    let qos = Qos {
        expiry: h.qos().expiry,
        precedence: Precedence::Urgent,
        persistence: Persistence::High,
    };
    match &h.locator {
        Locator::Source(s) => Locator::Destination(Destination {
            targets: vec![Target::Component(s.component.clone())],
            qos,
        }),
        Locator::Destination(_) => Locator::Source(Source {
            component: me.clone(),
            component_type: Name::new("type", "rs").expect("a valid name"),
            version: Name::new("version", env!("CARGO_PKG_VERSION")).expect("a valid name"),
            qos,
        }),
    }
}

/// What an answer says besides its status.
#[derive(Clone, Debug, Default)]
pub struct Said {
    pub reason: Option<String>,
    pub chunk_size: Option<u64>,
    pub ask: Option<Ranges>,
    pub verified: Option<crate::message::Digest>,
    /// An `ok` asking for chunks that may also come as an upload over
    /// HTTP (tus): not for a sealed transfer, whose chunks are opened one
    /// by one as messages.
    pub uploads: bool,
}

impl Said {
    /// Why (rejected, deferred).
    pub fn because(reason: Option<String>) -> Said {
        Said {
            reason,
            ..Said::default()
        }
    }

    /// The last `ok`: this digest verified.
    pub fn verified(digest: Option<crate::message::Digest>) -> Said {
        Said {
            verified: digest,
            ..Said::default()
        }
    }

    /// `ok`, asking for these chunks of this size.
    pub fn asking(chunk_size: u64, ask: Ranges) -> Said {
        Said {
            chunk_size: Some(chunk_size),
            ask: Some(ask),
            uploads: true,
            ..Said::default()
        }
    }

    /// The same, for a transfer that is sealed (`true`): no upload.
    pub fn sealed(self, sealed: bool) -> Said {
        Said {
            uploads: self.uploads && !sealed,
            ..self
        }
    }
}

/// A `bulk-data-response` to the request with header `h`, for transfer `t`.
pub fn answer(
    spool: &Spool,
    h: &Header,
    t: &MessageId,
    status: BulkStatus,
    said: Said,
    now: Timestamp,
) -> Message {
    let me = &spool.config().component;
    let text = |s: String| Text::new("reason", s.chars().take(1000).collect::<String>()).ok();
    Message {
        header: Header {
            id: MessageId::mint(now),
            created: now,
            class: h.class.clone(),
            subclass: h.subclass.clone(),
            locator: answer_locator(h, me),
            in_reply_to: Some(h.id.clone()),
            origin_key: None,
            epoch: None,
            routing: Vec::new(),
        },
        content: Content::BulkDataResponse(BulkDataResponse {
            status,
            reason: said.reason.and_then(text),
            location: (status == BulkStatus::Ok && said.verified.is_none() && said.uploads)
                .then(|| Text::new("location", format!("{UPLOADS}{t}")).expect("a valid text")),
            answers: h.id.clone(),
            transfer: Some(t.clone()),
            chunk_size: said.chunk_size,
            ask: said
                .ask
                .map(|r| Text::new("ask", r.to_string()).expect("ranges are text")),
            verified: said.verified,
        }),
    }
}

/// Where a held message sorts: not a chunk first, then chunks by transfer
/// and index (read from the start of its file, where its data's type is).
fn chunk_key(msg: &Path) -> Option<(MessageId, u64)> {
    use std::io::Read;
    let mut start = Vec::with_capacity(16 * 1024);
    std::fs::File::open(msg)
        .ok()?
        .take(16 * 1024)
        .read_to_end(&mut start)
        .ok()?;
    let text = String::from_utf8_lossy(&start);
    let at = text.find(CHUNK_TYPE)?;
    let mime = text[at..].split(['"', '\n']).next()?;
    let info = ChunkInfo::parse(mime).ok()?;
    Some((info.transfer, info.index))
}

/// Writes `value` as JSON to `dir/name`, durably (tmp, fsync, rename).
fn save<T: serde::Serialize>(
    spool: &Spool,
    dir: &Path,
    name: &str,
    value: &T,
    now: Timestamp,
) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("state serialises");
    durable::write_durable(&spool.dir(Area::Tmp), dir, name, &bytes, now.as_micros())?;
    Ok(())
}

/// Reads the JSON state at `path`; `None` when absent or unreadable.
fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Why this site's `[[rule]]`s keep the data a bulk request announces from
/// passing, if they do: the first rule that matches the request as data
/// (its class, subclass, source, destination, the time of day) discards,
/// diverts or aggregates it. A message would be taken by that rule; a
/// transfer is refused instead, so the sender is told and no data moves
/// (bulk data is not held for handlers or aggregates). A `forward` rule
/// does not change a transfer's path: its chunks follow routing.
fn ruled_out(h: &Header, config: &crate::config::Config, now: Timestamp) -> Option<String> {
    use crate::filter::Action;
    let facts = crate::filter::Facts {
        header: h,
        kind: "data",
        severity: None,
        minute_of_day: now.minute_of_day(crate::time::local_offset_secs()),
    };
    let (i, rule) = crate::filter::first_match(&config.rules, &facts)?;
    let what = match rule.action {
        Action::Forward => return None,
        Action::Discard => "discards",
        Action::Divert => "diverts to a handler",
        Action::Aggregate => "aggregates",
    };
    Some(format!(
        "[[rule]] \"{}\" of {} {what} data of class {} subclass {}, and bulk data is not held here",
        rule.label(i),
        config.component,
        h.class,
        h.subclass
    ))
}

/// Handles what bulk took and holds in `divert/` (see the module
/// documentation), each message once; what cannot be handled now stays for
/// the next run. A message that can never be handled goes to quarantine.
/// Chunks written in this run are made durable and recorded before the
/// messages that carried them leave `divert/`.
pub fn run_held(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    let mut held = crate::custody::held(spool, LABEL)?;
    if held.is_empty() {
        return Ok(());
    }
    // Requests and answers first, then each transfer's chunks in order
    // (a transfer whose chunks all come in order is digested as they
    // come, not read again).
    held.sort_by_cached_key(|(_, msg, _)| chunk_key(msg));
    let _lock = lock(spool)?;
    let learned = crate::route::Learned::load(spool);
    let mut chunks = receiver::Chunks::default();
    let mut done: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (from, msg, state) in held {
        let Ok(mut file) = std::fs::File::open(&msg) else {
            continue; // another run handled it while this one waited
        };
        let quarantine = |why: String| -> Result<()> {
            let kept = spool.quarantine(&msg, &from, &why, now)?;
            log(format!(
                "{}: {why}: quarantined as {}",
                msg.display(),
                kept.display()
            ));
            crate::custody::remove(&spool.dir(Area::Divert), &msg, &state)
        };
        let (messages, large) = match read_held(&msg, &mut file) {
            Ok(read) => read,
            Err(e) => {
                quarantine(format!("a bulk message that cannot be read: {e}"))?;
                continue;
            }
        };
        let large = large.then_some(&file);
        let (mut refused, mut later) = (None, None);
        for m in messages {
            let id = m.header.id.clone();
            match take(spool, &learned, &mut chunks, m, large, now, log)? {
                Taken::Done => {}
                Taken::Refused(why) => refused = Some(format!("{id}: {why}")),
                Taken::Later(why) => later = Some(format!("{id}: {why}")),
            }
        }
        match (refused, later) {
            (Some(why), _) => quarantine(why)?,
            (None, Some(why)) => log(format!("{why}; it stays held for the next run")),
            (None, None) => done.push((msg, state)),
        }
    }
    chunks.finish(spool, now, log)?;
    for (msg, state) in done {
        crate::custody::remove(&spool.dir(Area::Divert), &msg, &state)?;
    }
    Ok(())
}

/// The messages of a held file (`msg`, open as `file`), and whether it is
/// large: a large one is a chunk, read up to its data here (its data is
/// read, and checked, once, as it is written in place or handed on).
fn read_held(
    msg: &Path,
    file: &mut std::fs::File,
) -> std::result::Result<(Vec<Message>, bool), Error> {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size <= MAX_SMALL {
        let bytes = std::fs::read(msg).map_err(|source| Error::Read {
            path: msg.to_path_buf(),
            source,
        })?;
        return Ok((crate::message::envelope::parse(&bytes)?, false));
    }
    let l = crate::message::stream::scan_head(file)?;
    if l.size > receiver::MAX_CHUNK {
        return Err(Error::NotAChunk {
            path: msg.to_path_buf(),
            size: l.size,
        });
    }
    let m = Message {
        header: l.header,
        content: Content::Data(crate::message::Data {
            mime_type: l.mime_type,
            bytes: Vec::new(),
        }),
    };
    Ok((vec![m], true))
}

/// What became of one held message of a transfer.
enum Taken {
    /// Handled: answered, passed on, or (a chunk) written in place.
    Done,
    /// Never to be handled (its file goes to quarantine), and why.
    Refused(String),
    /// Not now (it stays held for the next run), and why.
    Later(String),
}

/// Handles one message of a transfer, as routing (or a group configured
/// here) says: a request this site's rules rule out is rejected here; a
/// request is authorized here or reserved for on the way; an answer moves
/// the transfer this site sends on, or passes a hop; a chunk for this site
/// is written in place (into `chunks`); anything else is handed on.
/// `large`: the file the message is in, read only up to its data.
fn take(
    spool: &Spool,
    learned: &crate::route::Learned,
    chunks: &mut receiver::Chunks,
    m: Message,
    large: Option<&std::fs::File>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Taken> {
    let config = spool.config();
    let hop = match group_here(&m.header, config) {
        Some(_) => NextHop::Local,
        None => crate::route::next_hop(&m.header, config, learned),
    };
    if let (Content::BulkDataRequest(r), Some(why)) =
        (&m.content, ruled_out(&m.header, config, now))
    {
        let t = r.transfer.as_ref().unwrap_or(&m.header.id);
        log(format!(
            "{t}: bulk request {} rejected here: {why}",
            m.header.id
        ));
        let said = Said::because(Some(why));
        let a = answer(spool, &m.header, t, BulkStatus::Rejected, said, now);
        crate::custody::pass_on(spool, vec![a], now, log)?;
        return Ok(Taken::Done);
    }
    match (&m.content, hop) {
        (Content::BulkDataRequest(r), NextHop::Local) => {
            receiver::on_request(spool, &m.header, r, now, log)?
        }
        (Content::BulkDataRequest(r), NextHop::Peer(to)) => {
            hop::on_request(spool, &m, r, &to, now, log)?
        }
        // An answer for a transfer this site sends is its own,
        // whichever way routing would take it (a relay sending a
        // group's data on hears its members' answers on their way
        // up).
        (Content::BulkDataResponse(r), hop) if hop == NextHop::Local || sender::sends(spool, r) => {
            sender::on_answer(spool, &m.header, r, now, log)?
        }
        (Content::BulkDataResponse(r), NextHop::Peer(_)) => hop::on_answer(spool, &m, r, now, log)?,
        (Content::Data(d), NextHop::Local) => {
            let data = match large {
                Some(file) => receiver::ChunkData::File(file),
                None => receiver::ChunkData::Bytes(&d.bytes),
            };
            return Ok(
                match chunks.add(spool, &m.header, &d.mime_type, data, log) {
                    Ok(()) => Taken::Done,
                    Err(receiver::Refusal::Bad(why)) => Taken::Refused(why),
                    Err(receiver::Refusal::Later(why)) => Taken::Later(why),
                },
            );
        }
        (_, hop) => return hand_on(spool, m, large, hop, now, log),
    }
    Ok(Taken::Done)
}

/// A message of a transfer with nowhere to go here (`hop`): handed on as
/// routing says, whole (a large one was read only up to its data: its
/// data is read from `large` now).
fn hand_on(
    spool: &Spool,
    m: Message,
    large: Option<&std::fs::File>,
    hop: NextHop,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Taken> {
    log(format!(
        "{}: a bulk message with nowhere to go here ({hop:?}): handed on as routing says",
        m.header.id
    ));
    let m = match (large, m.content) {
        (Some(file), Content::Data(d)) => {
            let mut bytes = Vec::new();
            if let Err(why) = receiver::ChunkData::File(file).read_into(&mut bytes) {
                return Ok(Taken::Refused(why.to_string()));
            }
            Message {
                header: m.header,
                content: Content::Data(crate::message::Data {
                    mime_type: d.mime_type,
                    bytes,
                }),
            }
        }
        (_, content) => Message {
            header: m.header,
            content,
        },
    };
    crate::custody::pass_on(spool, vec![m], now, log)?;
    Ok(Taken::Done)
}

/// What is due without a message: requests asked again after a deferral,
/// reservations that lapsed.
pub fn tick(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    if !spool.root().join("bulk").is_dir() {
        return Ok(());
    }
    let _lock = lock(spool)?;
    sender::tick(spool, now, log)?;
    receiver::tick(spool, now, log)?;
    hop::tick(spool, now, log)
}

/// Every transfer this site sends (`direction` `out`) and receives
/// (`in`), as `rs-queue list --area bulk` shows them.
pub fn list(spool: &Spool) -> Result<Vec<serde_json::Value>> {
    if !spool.root().join("bulk").is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (t, _) in transfers(spool, "out")? {
        if let Some(mut v) = sender::status(spool, &t) {
            v["direction"] = "out".into();
            out.push(v);
        }
    }
    for (t, path) in transfers(spool, "in")? {
        if let Some(v) = receiver::status(&t, &path) {
            out.push(v);
        }
    }
    Ok(out)
}

/// The transfers in `bulk/SUB`, by ID, with the path of each state file.
fn transfers(spool: &Spool, sub: &str) -> Result<Vec<(String, PathBuf)>> {
    let d = dir(spool, sub)?;
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&d)
        .map_err(|e| crate::spool::Error::io("read", &d, e))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json")?;
            MessageId::parse(id).ok()?;
            Some((id.to_string(), e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_parameters_round_trip_and_junk_is_refused() {
        let c = ChunkInfo {
            transfer: MessageId::mint(Timestamp::from_secs(1_800_000_000)),
            index: 7,
            digest: Some(digest_of(b"abc")),
        };
        assert_eq!(ChunkInfo::parse(&c.mime()).unwrap(), c);
        let sealed = ChunkInfo {
            digest: None,
            ..c.clone()
        };
        assert_eq!(ChunkInfo::parse(&sealed.mime()).unwrap(), sealed);
        assert!(ChunkInfo::parse(&format!("{}; digest=nonsense", sealed.mime())).is_err());
        assert!(ChunkInfo::parse("application/octet-stream").is_err());
        assert!(ChunkInfo::parse(&format!("{CHUNK_TYPE}; index=1")).is_err());
        assert!(is_bulk("data", Some(&c.mime())));
        assert!(!is_bulk("data", Some("text/plain")));
        assert_eq!(
            digest_of(b"abc").as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
