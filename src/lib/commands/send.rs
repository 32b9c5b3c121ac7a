//! `rs-send`: build a message, queue it durably, print its ID.

use std::io::{IsTerminal, Read, Write};

use serde_json::json;

use crate::cli::send::{Kind, SendArgs};
use crate::error::{Error, ExitCode};
use crate::message::stream;
use crate::message::{
    envelope, Alarm, Content, Data, Destination, Event, Header, Locator, Message, MessageId,
    MimeType, Name, Qos, Source, Target, Text,
};
use crate::output::Out;
use crate::spool::{Admission, EntryName, Spool};
use crate::time::{parse_duration, Timestamp};

use super::Context;

pub fn run(args: SendArgs) -> Result<ExitCode, Error> {
    let ctx = Context::new("rs-send", &args.common)?;
    let now = ctx.clock.now();
    let spool = ctx.open_spool(now)?;
    let config = spool.config();

    let (header, mut body) = build(&args, &config.component, &spool, now)?;
    let id = header.id.clone();
    // Data above the bulk threshold goes as a transfer: its copy kept
    // aside, and a request queued in its place.
    let bulk_size = match &body {
        Body::Content(Content::Data(d)) => Some(d.bytes.len() as u64),
        Body::Stream { size, .. } => Some(*size),
        Body::Content(_) => None,
    }
    .filter(|n| *n > config.bulk.threshold.0 && crate::bulk::sender::can_send(&header));
    if let Some(size) = bulk_size {
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
        if let Err(detail) =
            crate::bulk::sender::room_for(&spool, size, header.qos().precedence, now)?
        {
            return Err(Error::BulkNotQueued {
                id: id.to_string(),
                detail: detail.to_string(),
                config: spool.config_path(),
            });
        }
        let request = match body {
            Body::Content(Content::Data(d)) => crate::bulk::sender::prepare(
                &spool,
                &header,
                &d.mime_type,
                size,
                crate::bulk::sender::Source::Bytes(&mut d.bytes.as_slice()),
                now,
            )?,
            Body::Stream {
                mime, mut source, ..
            } => crate::bulk::sender::prepare(
                &spool,
                &header,
                &mime,
                size,
                crate::bulk::sender::Source::File(source.file()),
                now,
            )?,
            Body::Content(_) => unreachable!("only data goes as bulk"),
        };
        body = Body::Content(request.content);
    }
    let too_big = |size: u64, what: &'static str| -> Result<(), Error> {
        match config.throttle.max_message_bytes {
            Some(max) if size > max.0 => Err(Error::TooLarge {
                id: id.to_string(),
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
            stream::write_data_envelope(&header, &mime, size, source.reader(), &mut staged)
                .map_err(|e| write_err(e, &path))?;
        }
    }
    too_big(staged.size(), "")?;
    staged.sync()?;
    let bytes_len = staged.size();

    let qos = header.qos();
    let name = EntryName {
        arrival: 0,
        id: id.clone(),
        precedence: qos.precedence,
        persistence: qos.persistence,
        addressed: matches!(header.locator, Locator::Destination(_)),
        created: header.created,
        expiry: qos.expiry,
        size: bytes_len,
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
                    "id": &id,
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

/// Builds the message the arguments describe.
fn build(
    args: &SendArgs,
    component: &Name,
    spool: &Spool,
    now: Timestamp,
) -> Result<(Header, Body), Error> {
    let usage = |e: crate::message::Error| Error::usage(e.to_string());
    let expiry = match (&args.ttl, &args.expires) {
        (Some(ttl), _) => {
            let d = parse_duration(ttl)?;
            if d.is_zero() {
                return Err(Error::usage("--ttl must be longer than zero"));
            }
            Some(now.saturating_add(d))
        }
        (None, Some(at)) => {
            let t = Timestamp::parse(at)?;
            if t <= now {
                return Err(Error::usage(format!(
                    "--expires {at} is not in the future (now is {now})"
                )));
            }
            Some(t)
        }
        (None, None) => None,
    };
    let qos = Qos {
        expiry,
        precedence: args.precedence.parse().map_err(usage)?,
        persistence: args.persistence.parse().map_err(usage)?,
    };
    let locator = if args.to.is_empty() {
        Locator::Source(Source {
            component: component.clone(),
            component_type: Name::new("type", "rs-send").map_err(usage)?,
            version: Name::new("version", env!("CARGO_PKG_VERSION")).map_err(usage)?,
            qos,
        })
    } else {
        let targets = args
            .to
            .iter()
            .map(|t| match t.strip_prefix("group:") {
                Some(g) => Name::new("--to group", g).map(Target::Group),
                None => Name::new("--to", t.as_str()).map(Target::Component),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(usage)?;
        Locator::Destination(Destination { targets, qos })
    };
    let severity = || args.severity.parse().map_err(usage);
    let event_type = || {
        Name::new(
            "--type",
            args.event_type
                .clone()
                .unwrap_or_else(|| args.subclass.clone()),
        )
        .map_err(usage)
    };
    let text = || -> Result<Text, Error> {
        let text = match &args.text {
            Some(t) => t.clone(),
            None => String::from_utf8(read_content(args)?).map_err(|_| {
                crate::message::Error::Invalid {
                    field: "text",
                    reason: "alarm and event text must be UTF-8".into(),
                }
            })?,
        };
        Ok(Text::new("text", text)?)
    };
    let body = match args.kind {
        Kind::Data => {
            let mime_type = MimeType::new(args.mime_type.as_str()).map_err(usage)?;
            match data_source(args, spool, now)? {
                Payload::Small(bytes) => Body::Content(Content::Data(Data { mime_type, bytes })),
                Payload::Large(source) => Body::Stream {
                    mime: mime_type,
                    size: source.size(),
                    source,
                },
            }
        }
        Kind::Alarm => Body::Content(Content::Alarm(Alarm {
            alarm_type: event_type()?,
            severity: severity()?,
            state: Name::new("--state", args.state.as_str()).map_err(usage)?,
            instance: args
                .instance
                .as_deref()
                .map(|i| Name::new("--instance", i))
                .transpose()
                .map_err(usage)?,
            text: text()?,
            data: None,
        })),
        Kind::Event => Body::Content(Content::Event(Event {
            event_type: event_type()?,
            severity: severity()?,
            text: text()?,
            data: None,
        })),
    };
    let header = Header {
        id: MessageId::mint(now),
        created: now,
        class: Name::new("--class", args.class.as_str()).map_err(usage)?,
        subclass: Name::new("--subclass", args.subclass.as_str()).map_err(usage)?,
        locator,
        in_reply_to: args
            .in_reply_to
            .as_deref()
            .map(MessageId::parse)
            .transpose()
            .map_err(usage)?,
        origin_key: args
            .origin_key
            .as_deref()
            .map(|k| Text::new("--origin-key", k))
            .transpose()
            .map_err(usage)?,
        epoch: None,
        routing: Vec::new(),
    };
    Ok((header, body))
}

/// What the message carries.
enum Body {
    /// Built in memory.
    Content(Content),
    /// Data written as a stream ([`stream::THRESHOLD`] and more).
    Stream {
        mime: MimeType,
        size: u64,
        source: Large,
    },
}

/// Where data comes from.
enum Payload {
    Small(Vec<u8>),
    Large(Large),
}

/// Large data: a file, or stdin copied into a file in tmp/ first (its size
/// must be known before the envelope is written; removed when dropped).
enum Large {
    File(std::fs::File, u64),
    Spilled(crate::spool::Staged, std::fs::File),
}

impl Large {
    fn size(&self) -> u64 {
        match self {
            Large::File(_, n) => *n,
            Large::Spilled(s, _) => s.size(),
        }
    }

    fn reader(&mut self) -> &mut dyn Read {
        match self {
            Large::File(f, _) | Large::Spilled(_, f) => f,
        }
    }

    fn file(&mut self) -> &mut std::fs::File {
        match self {
            Large::File(f, _) | Large::Spilled(_, f) => f,
        }
    }
}

/// The data to send: small data in memory, large data from its file or,
/// from stdin, spilled to tmp/ (memory stays bounded either way).
fn data_source(args: &SendArgs, spool: &Spool, now: Timestamp) -> Result<Payload, Error> {
    let threshold = stream::THRESHOLD;
    if let Some(path) = &args.file {
        let no_input = |e: std::io::Error| Error::Input {
            path: path.clone(),
            reason: e.to_string(),
        };
        let mut file = std::fs::File::open(path).map_err(no_input)?;
        let size = file.metadata().map_err(no_input)?.len();
        if size > threshold {
            return Ok(Payload::Large(Large::File(file, size)));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.read_to_end(&mut bytes).map_err(no_input)?;
        return Ok(Payload::Small(bytes));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Error::usage(
            "no content: give --file FILE, pipe the content to stdin, or (for alarms and events) --text",
        ));
    }
    let read_err = Error::Stdin;
    let mut lock = stdin.lock();
    let mut head = Vec::new();
    (&mut lock)
        .take(threshold + 1)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    if head.len() as u64 <= threshold {
        return Ok(Payload::Small(head));
    }
    let mut spill = spool.stage(now)?;
    let path = spill.path().to_path_buf();
    let write_err = |e: std::io::Error| Error::from(crate::spool::Error::io("write", &path, e));
    spill.write_all(&head).map_err(write_err)?;
    std::io::copy(&mut lock, &mut spill).map_err(read_err)?;
    let reader = std::fs::File::open(&path)
        .map_err(|e| Error::from(crate::spool::Error::io("open", &path, e)))?;
    Ok(Payload::Large(Large::Spilled(spill, reader)))
}

fn read_content(args: &SendArgs) -> Result<Vec<u8>, Error> {
    match &args.file {
        Some(path) => std::fs::read(path).map_err(|e| Error::Input {
            path: path.clone(),
            reason: e.to_string(),
        }),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(Error::usage(
                    "no content: give --file FILE, pipe the content to stdin, or (for alarms and events) --text",
                ));
            }
            let mut buf = Vec::new();
            stdin.lock().read_to_end(&mut buf).map_err(Error::Stdin)?;
            Ok(buf)
        }
    }
}
