//! Authorization at the receiver: a request whose destination is this
//! site is refused (`rejected`: too large, unsealable, malformed),
//! deferred (too many transfers, no room, the identity unreadable now) or
//! authorized. Authorizing allocates the whole data file (laid out as the
//! message it is delivered as, for a sealed transfer), keeps the request
//! (`T.request`) and records the state (`T.json`), each durable, before
//! the `ok` asking for the first window is queued.

use std::os::unix::fs::FileExt;

use super::{open_sealed, paths, save_state, send, still_asked, Incoming, Phase, MAX_CHUNK};
use crate::bulk::{answer, dir, load, transfers, Ranges, Said};
use crate::message::{
    envelope, stream, BulkDataRequest, BulkStatus, Content, Digest, Header, Message, MimeType,
};
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

/// A request whose destination is this site: answered `rejected`,
/// `deferred` or `ok` (the space allocated, the first chunks asked for);
/// a request for a transfer known here is answered as it stands.
/// Durable on return: the data file allocated, the request and the state
/// kept, the answer queued.
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
        let (status, said) = as_it_stands(&st);
        return reply(status, said);
    }
    let refuse = |status: BulkStatus, why: String| {
        log(format!(
            "{ts}: bulk transfer of {} bytes {status}: {why}",
            r.size
        ));
        reply(status, Said::because(Some(why)))
    };
    let digest = match verdict(spool, r)? {
        Verdict::Authorize(digest) => digest,
        Verdict::Refuse(status, why) => return refuse(status, why),
    };
    // A sealed transfer (not a group's, which is handed on in the clear)
    // is received into the very message it is delivered as.
    let parts =
        (r.sealed.is_some() && crate::bulk::group_here(h, spool.config()).is_none()).then(|| {
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
    if let Err(e) = lay_out(&file, allocated, parts.as_ref()) {
        let _ = durable::remove_file(&data_path);
        let me = &spool.config().component;
        return refuse(
            BulkStatus::Deferred,
            format!("{me} could not reserve {allocated} bytes: {e}"),
        );
    }
    durable::sync_data(&file, &data_path)
        .map_err(|e| crate::spool::Error::io("fsync", &data_path, e))?;
    durable::write_durable(
        &spool.dir(Area::Tmp),
        &dir(spool, "in")?,
        &format!("{ts}.request"),
        &envelope::to_bytes(&[Message {
            header: h.clone(),
            content: Content::BulkDataRequest(r.clone()),
        }]),
        now.as_micros(),
    )?;
    let chunk_size = chunk_size_for(config, r, parts.is_some());
    let count = r
        .sealed
        .as_ref()
        .map_or(r.size, |x| x.size)
        .div_ceil(chunk_size);
    let asked = Ranges::span(0, count.min(config.window as u64));
    let st = Incoming {
        digest: digest.to_string(),
        asked: asked.to_string(),
        text_at: parts.as_ref().map(|(head, _)| head.len() as u64),
        ..authorized(config, h, r, chunk_size, now)
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

/// The answer to a request for a transfer known here: where it stands.
fn as_it_stands(st: &Incoming) -> (BulkStatus, Said) {
    match st.phase {
        Phase::Receiving => (
            BulkStatus::Ok,
            Said::asking(st.chunk_size, still_asked(st)).sealed(st.sealed.is_some()),
        ),
        Phase::Delivered => (
            BulkStatus::Ok,
            Said::verified(Digest::new(st.digest.clone()).ok()),
        ),
        Phase::Rejected => (BulkStatus::Rejected, Said::because(st.reason.clone())),
    }
}

/// Whether a new request may be authorized here.
enum Verdict<'a> {
    /// Yes: the data it announces has this digest.
    Authorize(&'a Digest),
    /// No: the status to answer (`rejected`, or `deferred` when it may
    /// change), and why, as the sender is told.
    Refuse(BulkStatus, String),
}

/// Judges a new request: refused for good when it is malformed, cannot
/// be opened here, or is larger than this site or a transfer takes;
/// deferred when this site receives too many transfers or lacks room.
fn verdict<'a>(spool: &Spool, r: &'a BulkDataRequest) -> Result<Verdict<'a>> {
    let Some(digest) = &r.digest else {
        let why = "a request without the data's digest".into();
        return Ok(Verdict::Refuse(BulkStatus::Rejected, why));
    };
    if let Some((status, why)) = malformed_or_too_large(spool, r) {
        return Ok(Verdict::Refuse(status, why));
    }
    let config = &spool.config().bulk;
    let me = &spool.config().component;
    let receiving = transfers(spool, "in")?
        .into_iter()
        .filter_map(|(_, p)| load::<Incoming>(&p))
        .filter(|s| s.phase == Phase::Receiving)
        .count() as u32;
    if receiving >= config.max_transfers {
        let why = format!("{me} receives {receiving} transfers already ([bulk] max_transfers)");
        return Ok(Verdict::Refuse(BulkStatus::Deferred, why));
    }
    let in_dir = dir(spool, "in")?;
    let min_free = spool.config().spool.min_free;
    let free = fs2::available_space(&in_dir).unwrap_or(0);
    if free < r.size.saturating_add(min_free.0) {
        let why = format!(
            "{me} has {} free, and keeps {min_free} ([spool] min_free)",
            crate::config::Size(free)
        );
        return Ok(Verdict::Refuse(BulkStatus::Deferred, why));
    }
    Ok(Verdict::Authorize(digest))
}

/// Why request `r` is refused whatever this site holds, if it is: no
/// data, a sealed size that does not fit, a sealing this site cannot open
/// (deferred while the identity file cannot be read), more than
/// `[bulk] max_size` or than a transfer can name.
fn malformed_or_too_large(spool: &Spool, r: &BulkDataRequest) -> Option<(BulkStatus, String)> {
    use crate::bulk::{ranges::MAX_INDICES, seal};
    if r.size == 0 {
        return Some((BulkStatus::Rejected, "a request for no data".into()));
    }
    if let Some(x) = &r.sealed {
        if x.size != seal::sealed_size(r.size) {
            let why = format!(
                "{} bytes sealed are {} bytes, not {}",
                r.size,
                seal::sealed_size(r.size),
                x.size
            );
            return Some((BulkStatus::Rejected, why));
        }
        if let Err(why) = open_sealed(spool, &x.header) {
            // An identity file this site cannot read now is its own
            // problem: asked again later. Anything else will not change.
            let status = match &spool.config().bulk.identity {
                Some(p) if std::fs::metadata(p).is_err() => BulkStatus::Deferred,
                _ => BulkStatus::Rejected,
            };
            return Some((status, why.to_string()));
        }
    }
    let me = &spool.config().component;
    if let Some(max) = spool.config().bulk.max_size {
        if r.size > max.0 {
            let why = format!(
                "{} bytes is more than {me} takes ([bulk] max_size {max})",
                r.size
            );
            return Some((BulkStatus::Rejected, why));
        }
    }
    if r.size > MAX_INDICES * MAX_CHUNK {
        let why = format!(
            "{} bytes is more than a transfer holds ({} chunks of at most {})",
            r.size,
            MAX_INDICES,
            crate::config::Size(MAX_CHUNK)
        );
        return Some((BulkStatus::Rejected, why));
    }
    None
}

/// Allocates `allocated` bytes of the data file and, for a transfer laid
/// out as the message it is delivered as, writes that message's head and
/// tail around the space its text takes. Not yet durable.
fn lay_out(
    file: &std::fs::File,
    allocated: u64,
    parts: Option<&(Vec<u8>, Vec<u8>)>,
) -> std::io::Result<()> {
    durable::allocate(file, allocated)?;
    match parts {
        Some((head, tail)) => {
            file.write_all_at(head, 0)?;
            file.write_all_at(tail, allocated - tail.len() as u64)
        }
        None => Ok(()),
    }
}

/// The size of the chunks of request `r`'s data: at most
/// [`MAX_INDICES`](crate::bulk::ranges::MAX_INDICES) chunks, so that what
/// is held stays nameable; a sealed transfer's are whole sealed segments
/// (each opened alone) and, laid out in place (`in_place`), a whole number
/// of base64 lines of data.
fn chunk_size_for(
    config: &crate::config::BulkSettings,
    r: &BulkDataRequest,
    in_place: bool,
) -> u64 {
    use crate::bulk::{ranges::MAX_INDICES, seal};
    let size = r.sealed.as_ref().map_or(r.size, |x| x.size);
    if r.sealed.is_none() {
        return config.chunk_size.0.max(size.div_ceil(MAX_INDICES));
    }
    // 57 segments (one base64 line each), or a multiple.
    let segments = size.div_ceil(seal::SEALED_SEGMENT);
    let mut per_chunk = (config.chunk_size.0 / seal::SEGMENT)
        .max(segments.div_ceil(MAX_INDICES))
        .max(1);
    if in_place {
        let line = stream::LINE_IN as u64;
        per_chunk = per_chunk.div_ceil(line) * line;
    }
    per_chunk * seal::SEALED_SEGMENT
}

/// The state of the transfer request `r` (header `h`) starts, authorized
/// now with chunks of `chunk_size`, the reservation lapsing after `[bulk]
/// reservation`. Its digest, the chunks asked for and its layout are the
/// caller's to fill in.
fn authorized(
    config: &crate::config::BulkSettings,
    h: &Header,
    r: &BulkDataRequest,
    chunk_size: u64,
    now: Timestamp,
) -> Incoming {
    Incoming {
        phase: Phase::Receiving,
        size: r.sealed.as_ref().map_or(r.size, |x| x.size),
        digest: String::new(),
        mime: r
            .mime_type
            .as_ref()
            .map_or("application/octet-stream".into(), |m| {
                m.as_str().to_string()
            }),
        origin: h.origin().map(|o| o.to_string()),
        chunk_size,
        have: String::new(),
        asked: String::new(),
        expires: now.saturating_add(config.reservation),
        reason: None,
        updated: now,
        uploaded: 0,
        sealed: r
            .sealed
            .as_ref()
            .map(|x| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &x.header)),
        data_size: r.sealed.as_ref().map(|_| r.size),
        text_at: None,
        hashed: None,
    }
}
