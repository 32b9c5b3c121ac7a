//! `rs-send`: build a message, queue it durably, print its ID. `build`
//! makes the message from the arguments, `content` reads the data it
//! carries; this file queues it: as a bulk transfer's request when the
//! data is above the bulk threshold, within the size limits, admitted to
//! the spool (which may evict or reject), and prints what became of it.

mod build;
mod content;

use std::io::Write;

use serde_json::json;

use crate::cli::send::SendArgs;
use crate::error::{Error, ExitCode};
use crate::message::stream;
use crate::message::{envelope, Content, Header, Locator, Message};
use crate::output::Out;
use crate::spool::{Admission, EntryName, Spool, Staged};
use crate::time::Timestamp;

use super::Context;
use content::Body;

pub fn run(args: SendArgs) -> Result<ExitCode, Error> {
    let ctx = Context::new("rs-send", &args.common)?;
    let now = ctx.clock.now();
    let spool = ctx.open_spool(now)?;
    let config = spool.config();

    let (header, body) = build::build(&args, &config.component, &spool, now)?;
    // Data above the bulk threshold goes as a transfer: its copy kept
    // aside, and a request queued in its place.
    let bulk_size = match &body {
        Body::Content(Content::Data(d)) => Some(d.bytes.len() as u64),
        Body::Stream { size, .. } => Some(*size),
        Body::Content(_) => None,
    }
    .filter(|n| *n > config.bulk.threshold.0 && crate::bulk::sender::can_send(&header));
    let body = match bulk_size {
        Some(size) => as_bulk(&spool, &header, body, size, now)?,
        None => body,
    };
    let staged = stage(&spool, &header, body, now)?;
    admit(&ctx, &spool, &header, staged, bulk_size, now)
}

/// A bulk transfer of `body`'s `size` bytes prepared (its data kept
/// aside), within `[bulk] max_size` and the room for transfers; the
/// request to queue in its place.
fn as_bulk(
    spool: &Spool,
    header: &Header,
    body: Body,
    size: u64,
    now: Timestamp,
) -> Result<Body, Error> {
    let config = spool.config();
    let id = &header.id;
    if let Some(max) = config.bulk.max_size.filter(|m| size > m.0) {
        return Err(Error::TooLarge {
            id: id.to_string(),
            what: "",
            size,
            max,
            config: spool.config_path(),
        });
    }
    spool.check_free_space(size)?;
    if let Err(detail) = crate::bulk::sender::room_for(spool, size, header.qos().precedence, now)? {
        return Err(Error::BulkNotQueued {
            id: id.to_string(),
            detail: detail.to_string(),
            config: spool.config_path(),
        });
    }
    let request = match body {
        Body::Content(Content::Data(d)) => crate::bulk::sender::prepare(
            spool,
            header,
            &d.mime_type,
            size,
            crate::bulk::sender::Source::Bytes(&mut d.bytes.as_slice()),
            now,
        )?,
        Body::Stream {
            mime, mut source, ..
        } => crate::bulk::sender::prepare(
            spool,
            header,
            &mime,
            size,
            crate::bulk::sender::Source::File(source.file()),
            now,
        )?,
        Body::Content(_) => unreachable!("only data goes as bulk"),
    };
    Ok(Body::Content(request.content))
}

/// The message's envelope written to a staged file and synced, checked
/// against `[throttle] max_message_bytes` (an estimate first, for a
/// stream) and the free space kept.
fn stage(spool: &Spool, header: &Header, body: Body, now: Timestamp) -> Result<Staged, Error> {
    let config = spool.config();
    let too_big = |size: u64, what: &'static str| -> Result<(), Error> {
        match config.throttle.max_message_bytes {
            Some(max) if size > max.0 => Err(Error::TooLarge {
                id: header.id.to_string(),
                what,
                size,
                max,
                config: spool.config_path(),
            }),
            _ => Ok(()),
        }
    };
    let mut staged = spool.stage(now)?;
    let write_err = |e: std::io::Error, path: &std::path::Path| {
        Error::from(crate::spool::Error::io("write", path, e))
    };
    match body {
        Body::Content(content) => {
            spool.check_free_space(0)?;
            let bytes = envelope::to_bytes(&[Message {
                header: header.clone(),
                content,
            }]);
            too_big(bytes.len() as u64, "")?;
            staged
                .write_all(&bytes)
                .map_err(|e| write_err(e, staged.path()))?;
        }
        Body::Stream {
            mime,
            size,
            mut source,
        } => {
            // Base64 grows data by a third, plus a newline every 76 characters.
            let estimate = size + size / 3 + size / 57 + 4096;
            too_big(estimate, "about ")?;
            spool.check_free_space(estimate)?;
            let path = staged.path().to_path_buf();
            stream::write_data_envelope(header, &mime, size, source.reader(), &mut staged)
                .map_err(|e| write_err(e, &path))?;
        }
    }
    too_big(staged.size(), "")?;
    staged.sync()?;
    Ok(staged)
}

/// The staged message admitted to the queue; says what was evicted for
/// it, and prints its ID (or what was queued, as JSON); a rejection is
/// the error `NotQueued`, naming where the message is kept.
fn admit(
    ctx: &Context,
    spool: &Spool,
    header: &Header,
    staged: Staged,
    bulk_size: Option<u64>,
    now: Timestamp,
) -> Result<ExitCode, Error> {
    let id = &header.id;
    let qos = header.qos();
    let name = EntryName {
        arrival: 0,
        id: id.clone(),
        precedence: qos.precedence,
        persistence: qos.persistence,
        addressed: matches!(header.locator, Locator::Destination(_)),
        created: header.created,
        expiry: qos.expiry,
        size: staged.size(),
    };
    let admission = spool.lock(now)?.admit(staged, name, now)?;
    let evicted = match &admission {
        Admission::Queued { evicted, .. } | Admission::Rejected { evicted, .. } => evicted,
    };
    for (victim, detail) in evicted {
        ctx.log(format!("{} moved to dead/: {detail}", victim.id));
    }
    match admission {
        Admission::Queued { entry, evicted } => {
            let mut out = Out::new();
            if ctx.json {
                out.json(&json!({
                    "id": id,
                    "queued": true,
                    "bulk": bulk_size.map(|size| json!({"size": size, "state": "requested"})),
                    "precedence": entry.name.precedence,
                    "persistence": entry.name.persistence,
                    "size": entry.name.size,
                    "created": entry.name.created,
                    "expires": entry.name.expiry,
                    "file": spool.entry_path(&entry),
                    "evicted": evicted.iter().map(|(n, d)| json!({"id": n.id, "reason": d})).collect::<Vec<_>>(),
                }))?;
            } else {
                out.line(id.as_str())?;
            }
            Ok(ExitCode::Ok)
        }
        Admission::Rejected { name, detail, .. } => Err(Error::NotQueued {
            id: id.to_string(),
            detail,
            kept: spool.dir(crate::spool::Area::Dead).join(name.to_string()),
        }),
    }
}
