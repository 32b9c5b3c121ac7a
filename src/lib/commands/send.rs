//! `rs-send`: build a message, queue it durably, print its ID.

use std::io::{IsTerminal, Read, Write};

use serde_json::json;

use crate::cli::send::{Kind, SendArgs};
use crate::error::{Error, ExitCode};
use crate::message::{
    envelope, Alarm, Content, Data, Destination, Event, Header, Locator, Message, MessageId,
    MimeType, Name, Qos, Source, Target, Text,
};
use crate::output::Out;
use crate::spool::{Admission, EntryName};
use crate::time::{parse_duration, Timestamp};

use super::Context;

pub fn run(args: SendArgs) -> Result<ExitCode, Error> {
    let ctx = Context::new("rs-send", &args.common)?;
    let now = ctx.clock.now();
    let spool = ctx.open_spool(now)?;
    let config = spool.config();

    let message = build(&args, &config.component, now)?;
    spool.check_free_space()?;

    let bytes = envelope::to_bytes(std::slice::from_ref(&message));
    let id = &message.header.id;
    if let Some(max) = config.throttle.max_message_bytes {
        if bytes.len() as u64 > max.0 {
            return Err(Error::new(
                ExitCode::DataErr,
                format!(
                    "message {id} is {} bytes, more than [throttle] max_message_bytes = {max} in {}: send it as bulk data, or raise the limit",
                    bytes.len(),
                    spool.config_path().display()
                ),
            ));
        }
    }
    let mut staged = spool.stage(now)?;
    staged
        .write_all(&bytes)
        .map_err(|e| Error::from(crate::spool::Error::io("write", staged.path(), e)))?;
    staged.sync()?;

    let qos = message.header.qos();
    let name = EntryName {
        arrival: 0,
        id: id.clone(),
        precedence: qos.precedence,
        persistence: qos.persistence,
        addressed: matches!(message.header.locator, Locator::Destination(_)),
        created: message.header.created,
        expiry: qos.expiry,
        size: bytes.len() as u64,
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
        Admission::Rejected { name, detail, .. } => Err(Error::new(
            ExitCode::TempFail,
            format!(
                "message {id} was not queued: {detail}; it is kept as {}",
                spool
                    .dir(crate::spool::Area::Dead)
                    .join(name.to_string())
                    .display()
            ),
        )),
    }
}

/// Builds the message the arguments describe.
fn build(args: &SendArgs, component: &Name, now: Timestamp) -> Result<Message, Error> {
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
            None => String::from_utf8(read_content(args)?)
                .map_err(|_| Error::new(ExitCode::DataErr, "alarm and event text must be UTF-8"))?,
        };
        Text::new("text", text).map_err(|e| Error::new(ExitCode::DataErr, e.to_string()))
    };
    let content = match args.kind {
        Kind::Data => Content::Data(Data {
            mime_type: MimeType::new(args.mime_type.as_str()).map_err(usage)?,
            bytes: read_content(args)?,
        }),
        Kind::Alarm => Content::Alarm(Alarm {
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
        }),
        Kind::Event => Content::Event(Event {
            event_type: event_type()?,
            severity: severity()?,
            text: text()?,
            data: None,
        }),
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
    Ok(Message { header, content })
}

fn read_content(args: &SendArgs) -> Result<Vec<u8>, Error> {
    match &args.file {
        Some(path) => std::fs::read(path).map_err(|e| {
            Error::new(
                ExitCode::NoInput,
                format!("cannot read content file {}: {e}", path.display()),
            )
        }),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(Error::usage(
                    "no content: give --file FILE, pipe the content to stdin, or (for alarms and events) --text",
                ));
            }
            let mut buf = Vec::new();
            stdin
                .lock()
                .read_to_end(&mut buf)
                .map_err(|e| Error::new(ExitCode::IoErr, format!("cannot read stdin: {e}")))?;
            Ok(buf)
        }
    }
}
