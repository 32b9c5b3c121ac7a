//! The message `rs-send`'s arguments describe: its header (ID, class,
//! expiry, precedence, source or destinations) and its content (data,
//! alarm or event), every field checked as documented (exit 64).

use crate::cli::send::{Kind, SendArgs};
use crate::error::Error;
use crate::message::{
    Alarm, Content, Data, Destination, Event, Header, Locator, MessageId, MimeType, Name, Qos,
    Source, Target, Text,
};
use crate::spool::Spool;
use crate::time::{parse_duration, Timestamp};

use super::content::{data_source, read_content, Body, Payload};

/// Builds the message the arguments describe (the fields checked in the
/// order they are documented: a usage error names the first wrong one).
pub(super) fn build(
    args: &SendArgs,
    component: &Name,
    spool: &Spool,
    now: Timestamp,
) -> Result<(Header, Body), Error> {
    let qos = Qos {
        expiry: expiry(args, now)?,
        precedence: args.precedence.parse().map_err(usage)?,
        persistence: args.persistence.parse().map_err(usage)?,
    };
    let locator = locator(args, component, qos)?;
    let body = body(args, spool, now)?;
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

fn usage(e: crate::message::Error) -> Error {
    Error::usage(e.to_string())
}

/// When the message expires: `--ttl` from now, or `--expires`, which
/// must be later than now; never, without either.
fn expiry(args: &SendArgs, now: Timestamp) -> Result<Option<Timestamp>, Error> {
    Ok(match (&args.ttl, &args.expires) {
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
    })
}

/// Where the message goes: the `--to` components and groups, or (none
/// named) from this component, routed by the configuration.
fn locator(args: &SendArgs, component: &Name, qos: Qos) -> Result<Locator, Error> {
    Ok(if args.to.is_empty() {
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
    })
}

/// The content: data (from `--file` or stdin), or an alarm or event.
fn body(args: &SendArgs, spool: &Spool, now: Timestamp) -> Result<Body, Error> {
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
    Ok(match args.kind {
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
    })
}
