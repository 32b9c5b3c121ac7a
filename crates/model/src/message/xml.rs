//! The XML form of the header and content parts.
//!
//! Header:
//! ```xml
//! <header id="…" created="…" class="…" subclass="…">
//!   <source component="…" type="…" version="…"><qos expiry="…" precedence="normal" persistence="normal"/></source>
//!   <in-reply-to>…</in-reply-to><origin-key>…</origin-key><epoch>3</epoch>
//!   <routing component="…" received="…" sent="…"/>
//! </header>
//! ```
//! (or `<destination><target kind="component|group">…</target>…<qos …/></destination>`
//! in place of `<source>`). Content: `<content>` around exactly one of
//! `alarm`, `event`, `message-response`, `bulk-data-request`,
//! `bulk-data-response`, `data`.
//!
//! Input is hostile until proven otherwise: before serde sees a byte, [`guard`]
//! refuses DTDs (so no entity can be declared, let alone expanded), processing
//! instructions, unknown entity references, excessive depth and element counts.
//! Unknown elements and attributes are ignored, so newer senders interoperate.

use base64::Engine as _;
use quick_xml::events::Event as XmlEvent;
use serde::{Deserialize, Serialize};

use super::*;

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

#[derive(Serialize, Deserialize)]
#[serde(rename = "header")]
struct HeaderXml {
    #[serde(rename = "@id")]
    id: String,
    #[serde(rename = "@created")]
    created: String,
    #[serde(rename = "@class")]
    class: String,
    #[serde(rename = "@subclass")]
    subclass: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<SourceXml>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    destination: Option<DestinationXml>,
    #[serde(
        rename = "in-reply-to",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    in_reply_to: Option<String>,
    #[serde(
        rename = "origin-key",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    origin_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routing: Vec<RoutingXml>,
}

#[derive(Serialize, Deserialize)]
struct SourceXml {
    #[serde(rename = "@component")]
    component: String,
    #[serde(rename = "@type")]
    component_type: String,
    #[serde(rename = "@version")]
    version: String,
    qos: QosXml,
}

#[derive(Serialize, Deserialize)]
struct DestinationXml {
    #[serde(default)]
    target: Vec<TargetXml>,
    qos: QosXml,
}

#[derive(Serialize, Deserialize)]
struct TargetXml {
    #[serde(rename = "@kind")]
    kind: String,
    #[serde(rename = "$text")]
    name: String,
}

#[derive(Serialize, Deserialize)]
struct QosXml {
    #[serde(rename = "@expiry", default, skip_serializing_if = "Option::is_none")]
    expiry: Option<String>,
    #[serde(rename = "@precedence")]
    precedence: String,
    #[serde(rename = "@persistence")]
    persistence: String,
}

#[derive(Serialize, Deserialize)]
struct RoutingXml {
    #[serde(rename = "@component")]
    component: String,
    #[serde(rename = "@received", default, skip_serializing_if = "Option::is_none")]
    received: Option<String>,
    #[serde(rename = "@sent", default, skip_serializing_if = "Option::is_none")]
    sent: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "content")]
struct ContentXml {
    #[serde(rename = "$value")]
    body: BodyXml,
}

#[derive(Serialize, Deserialize)]
enum BodyXml {
    #[serde(rename = "alarm")]
    Alarm(AlarmXml),
    #[serde(rename = "event")]
    Event(EventXml),
    #[serde(rename = "message-response")]
    MessageResponse(ResponseXml),
    #[serde(rename = "bulk-data-request")]
    BulkDataRequest(BulkRequestXml),
    #[serde(rename = "bulk-data-response")]
    BulkDataResponse(BulkResponseXml),
    #[serde(rename = "data")]
    Data(DataXml),
}

#[derive(Serialize, Deserialize)]
struct AlarmXml {
    #[serde(rename = "@type")]
    alarm_type: String,
    #[serde(rename = "@severity")]
    severity: String,
    #[serde(rename = "@state")]
    state: String,
    #[serde(rename = "@instance", default, skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[serde(default)]
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<DataXml>,
}

#[derive(Serialize, Deserialize)]
struct EventXml {
    #[serde(rename = "@type")]
    event_type: String,
    #[serde(rename = "@severity")]
    severity: String,
    #[serde(default)]
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<DataXml>,
}

#[derive(Serialize, Deserialize)]
struct ResponseXml {
    #[serde(rename = "@status")]
    status: String,
    #[serde(
        rename = "@reason-code",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    reason_code: Option<String>,
    #[serde(rename = "@answers")]
    answers: String,
    #[serde(default)]
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct BulkRequestXml {
    #[serde(rename = "@class")]
    class: String,
    #[serde(rename = "@subclass")]
    subclass: String,
    #[serde(rename = "@size")]
    size: u64,
    #[serde(rename = "@transfer", default, skip_serializing_if = "Option::is_none")]
    transfer: Option<String>,
    #[serde(rename = "@digest", default, skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(
        rename = "@mime-type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    mime_type: Option<String>,
    #[serde(rename = "@sealed", default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
    #[serde(
        rename = "@sealed-size",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    sealed_size: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct BulkResponseXml {
    #[serde(rename = "@status")]
    status: String,
    #[serde(rename = "@answers")]
    answers: String,
    #[serde(rename = "@transfer", default, skip_serializing_if = "Option::is_none")]
    transfer: Option<String>,
    #[serde(
        rename = "@chunk-size",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    chunk_size: Option<u64>,
    #[serde(rename = "@ask", default, skip_serializing_if = "Option::is_none")]
    ask: Option<String>,
    #[serde(rename = "@verified", default, skip_serializing_if = "Option::is_none")]
    verified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    location: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct DataXml {
    #[serde(rename = "@mime-type")]
    mime_type: String,
    #[serde(rename = "@size")]
    size: u64,
    #[serde(rename = "@encoding")]
    encoding: String,
    #[serde(rename = "$text", default)]
    payload: String,
}

// ---------------------------------------------------------------- writing

/// The header part's XML (with declaration), UTF-8.
pub fn header_to_xml(h: &Header) -> String {
    let qos = |q: &Qos| QosXml {
        expiry: q.expiry.map(|t| t.to_rfc3339()),
        precedence: q.precedence.as_str().to_string(),
        persistence: q.persistence.as_str().to_string(),
    };
    let (source, destination) = match &h.locator {
        Locator::Source(s) => (
            Some(SourceXml {
                component: s.component.to_string(),
                component_type: s.component_type.to_string(),
                version: s.version.to_string(),
                qos: qos(&s.qos),
            }),
            None,
        ),
        Locator::Destination(d) => (
            None,
            Some(DestinationXml {
                target: d
                    .targets
                    .iter()
                    .map(|t| match t {
                        Target::Component(n) => TargetXml {
                            kind: "component".into(),
                            name: n.to_string(),
                        },
                        Target::Group(n) => TargetXml {
                            kind: "group".into(),
                            name: n.to_string(),
                        },
                    })
                    .collect(),
                qos: qos(&d.qos),
            }),
        ),
    };
    let xml = HeaderXml {
        id: h.id.to_string(),
        created: h.created.to_rfc3339(),
        class: h.class.to_string(),
        subclass: h.subclass.to_string(),
        source,
        destination,
        in_reply_to: h.in_reply_to.as_ref().map(|i| i.to_string()),
        origin_key: h.origin_key.as_ref().map(|k| k.to_string()),
        epoch: h.epoch,
        routing: h
            .routing
            .iter()
            .map(|r| RoutingXml {
                component: r.component.to_string(),
                received: r.received.map(|t| t.to_rfc3339()),
                sent: r.sent.map(|t| t.to_rfc3339()),
            })
            .collect(),
    };
    to_xml(&xml)
}

/// The content part's XML (with declaration), UTF-8.
pub fn content_to_xml(c: &Content) -> String {
    let body = match c {
        Content::Alarm(a) => BodyXml::Alarm(AlarmXml {
            alarm_type: a.alarm_type.to_string(),
            severity: a.severity.as_str().to_string(),
            state: a.state.to_string(),
            instance: a.instance.as_ref().map(|i| i.to_string()),
            text: a.text.to_string(),
            data: a.data.as_ref().map(data_to_xml),
        }),
        Content::Event(e) => BodyXml::Event(EventXml {
            event_type: e.event_type.to_string(),
            severity: e.severity.as_str().to_string(),
            text: e.text.to_string(),
            data: e.data.as_ref().map(data_to_xml),
        }),
        Content::MessageResponse(r) => BodyXml::MessageResponse(ResponseXml {
            status: r.status.as_str().to_string(),
            reason_code: r.reason_code.as_ref().map(|c| c.to_string()),
            answers: r.answers.to_string(),
            reason: r.reason.to_string(),
        }),
        Content::BulkDataRequest(r) => BodyXml::BulkDataRequest(BulkRequestXml {
            class: r.class.to_string(),
            subclass: r.subclass.to_string(),
            size: r.size,
            transfer: r.transfer.as_ref().map(|t| t.to_string()),
            digest: r.digest.as_ref().map(|d| d.to_string()),
            mime_type: r.mime_type.as_ref().map(|m| m.as_str().to_string()),
            sealed: r
                .sealed
                .as_ref()
                .map(|x| base64::engine::general_purpose::STANDARD.encode(&x.header)),
            sealed_size: r.sealed.as_ref().map(|x| x.size),
        }),
        Content::BulkDataResponse(r) => BodyXml::BulkDataResponse(BulkResponseXml {
            status: r.status.as_str().to_string(),
            answers: r.answers.to_string(),
            transfer: r.transfer.as_ref().map(|t| t.to_string()),
            chunk_size: r.chunk_size,
            ask: r.ask.as_ref().map(|t| t.to_string()),
            verified: r.verified.as_ref().map(|d| d.to_string()),
            reason: r.reason.as_ref().map(|t| t.to_string()),
            location: r.location.as_ref().map(|t| t.to_string()),
        }),
        Content::Data(d) => BodyXml::Data(data_to_xml(d)),
    };
    to_xml(&ContentXml { body })
}

fn to_xml<T: Serialize>(value: &T) -> String {
    let mut out = String::from(XML_DECL);
    // Serialising our own plain structs into a String cannot fail.
    if let Err(e) = quick_xml::se::to_writer(&mut out, value) {
        unreachable!("serialising a message part failed: {e}");
    }
    out.push('\n');
    out
}

/// Text data is carried as XML text when that is exact and mail-safe
/// (printable ASCII, short lines); anything else as wrapped base64.
fn data_to_xml(d: &Data) -> DataXml {
    let (encoding, payload) = if is_plain_text(&d.bytes) {
        ("text", String::from_utf8_lossy(&d.bytes).into_owned())
    } else {
        ("base64", encode_base64_lines(&d.bytes))
    };
    DataXml {
        mime_type: d.mime_type.to_string(),
        size: d.bytes.len() as u64,
        encoding: encoding.to_string(),
        payload,
    }
}

fn is_plain_text(bytes: &[u8]) -> bool {
    // XML parsers drop text that is all whitespace: such data goes as base64.
    let has_content = bytes.is_empty() || bytes.iter().any(|b| !b.is_ascii_whitespace());
    has_content
        && bytes.len() <= 64 * 1024
        && bytes.split(|&b| b == b'\n').all(|line| line.len() <= 900)
        && bytes
            .iter()
            .all(|&b| b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Base64 in lines of 76 characters, each ending in a newline.
pub fn encode_base64_lines(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 + 2);
    out.push('\n');
    for chunk in encoded.as_bytes().chunks(76) {
        // Chunks of ASCII are valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------- reading

/// Parses a header part. Bounded: refuses input above [`limits::HEADER_BYTES`].
pub fn header_from_xml(bytes: &[u8]) -> Result<Header> {
    if bytes.len() > limits::HEADER_BYTES {
        return Err(Error::TooLarge {
            what: "header part",
            limit: limits::HEADER_BYTES,
        });
    }
    let text = guard(bytes, limits::HEADER_ELEMENTS)?;
    let x: HeaderXml = quick_xml::de::from_str(text).map_err(|e| Error::Xml(e.to_string()))?;
    let qos = |q: QosXml| -> Result<Qos> {
        Ok(Qos {
            expiry: q.expiry.as_deref().map(time_field("expiry")).transpose()?,
            precedence: q.precedence.parse()?,
            persistence: q.persistence.parse()?,
        })
    };
    let locator = match (x.source, x.destination) {
        (Some(s), None) => Locator::Source(Source {
            component: Name::new("component", s.component)?,
            component_type: Name::new("type", s.component_type)?,
            version: Name::new("version", s.version)?,
            qos: qos(s.qos)?,
        }),
        (None, Some(d)) => {
            if d.target.is_empty() {
                return Err(invalid("destination", "names no target"));
            }
            if d.target.len() > limits::DESTINATIONS {
                return Err(Error::TooLarge {
                    what: "destination list",
                    limit: limits::DESTINATIONS,
                });
            }
            let targets = d
                .target
                .into_iter()
                .map(|t| match t.kind.as_str() {
                    "component" => Ok(Target::Component(Name::new("target", t.name)?)),
                    "group" => Ok(Target::Group(Name::new("target", t.name)?)),
                    other => Err(invalid(
                        "target kind",
                        &format!("`{other}` is not component or group"),
                    )),
                })
                .collect::<Result<Vec<_>>>()?;
            Locator::Destination(Destination {
                targets,
                qos: qos(d.qos)?,
            })
        }
        (Some(_), Some(_)) => return Err(invalid("header", "has both source and destination")),
        (None, None) => return Err(invalid("header", "has neither source nor destination")),
    };
    if x.routing.len() > limits::ROUTING {
        return Err(Error::TooLarge {
            what: "routing list",
            limit: limits::ROUTING,
        });
    }
    let routing = x
        .routing
        .into_iter()
        .map(|r| {
            Ok(Routing {
                component: Name::new("routing component", r.component)?,
                received: r
                    .received
                    .as_deref()
                    .map(time_field("received"))
                    .transpose()?,
                sent: r.sent.as_deref().map(time_field("sent")).transpose()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Header {
        id: MessageId::parse(&x.id)?,
        created: time_field("created")(&x.created)?,
        class: Name::new("class", x.class)?,
        subclass: Name::new("subclass", x.subclass)?,
        locator,
        in_reply_to: x.in_reply_to.as_deref().map(MessageId::parse).transpose()?,
        origin_key: x
            .origin_key
            .map(|k| Text::new("origin-key", k))
            .transpose()?,
        epoch: x.epoch,
        routing,
    })
}

/// Parses a content part.
pub fn content_from_xml(bytes: &[u8]) -> Result<Content> {
    let text = guard(bytes, limits::CONTENT_ELEMENTS)?;
    let x: ContentXml = quick_xml::de::from_str(text).map_err(|e| Error::Xml(e.to_string()))?;
    Ok(match x.body {
        BodyXml::Alarm(a) => Content::Alarm(Alarm {
            alarm_type: Name::new("alarm type", a.alarm_type)?,
            severity: a.severity.parse()?,
            state: Name::new("alarm state", a.state)?,
            instance: a
                .instance
                .map(|i| Name::new("alarm instance", i))
                .transpose()?,
            text: Text::new("alarm text", a.text)?,
            data: a.data.map(data_from_xml).transpose()?,
        }),
        BodyXml::Event(e) => Content::Event(Event {
            event_type: Name::new("event type", e.event_type)?,
            severity: e.severity.parse()?,
            text: Text::new("event text", e.text)?,
            data: e.data.map(data_from_xml).transpose()?,
        }),
        BodyXml::MessageResponse(r) => Content::MessageResponse(MessageResponse {
            status: r.status.parse()?,
            reason_code: r
                .reason_code
                .map(|c| Name::new("reason-code", c))
                .transpose()?,
            answers: MessageId::parse(&r.answers)?,
            reason: Text::new("reason", r.reason)?,
        }),
        BodyXml::BulkDataRequest(r) => Content::BulkDataRequest(BulkDataRequest {
            class: Name::new("class", r.class)?,
            subclass: Name::new("subclass", r.subclass)?,
            size: r.size,
            transfer: r.transfer.map(|t| MessageId::parse(&t)).transpose()?,
            digest: r.digest.map(Digest::new).transpose()?,
            mime_type: r.mime_type.map(MimeType::new).transpose()?,
            sealed: match (r.sealed, r.sealed_size) {
                (None, None) => None,
                (Some(h), Some(size)) if h.len() <= 2 * limits::SEALED_HEADER => Some(Sealing {
                    header: base64::engine::general_purpose::STANDARD
                        .decode(h.trim())
                        .map_err(|_| invalid("sealed", "not base64"))?,
                    size,
                }),
                _ => {
                    return Err(invalid(
                        "sealed",
                        "sealed and sealed-size go together, the header at most 16 KiB",
                    ))
                }
            },
        }),
        BodyXml::BulkDataResponse(r) => Content::BulkDataResponse(BulkDataResponse {
            status: r.status.parse()?,
            reason: r.reason.map(|t| Text::new("reason", t)).transpose()?,
            location: r.location.map(|t| Text::new("location", t)).transpose()?,
            answers: MessageId::parse(&r.answers)?,
            transfer: r.transfer.map(|t| MessageId::parse(&t)).transpose()?,
            chunk_size: r.chunk_size,
            ask: r.ask.map(|t| Text::new("ask", t)).transpose()?,
            verified: r.verified.map(Digest::new).transpose()?,
        }),
        BodyXml::Data(d) => Content::Data(data_from_xml(d)?),
    })
}

fn data_from_xml(d: DataXml) -> Result<Data> {
    let bytes = match d.encoding.as_str() {
        "text" => d.payload.into_bytes(),
        "base64" => {
            let compact: Vec<u8> = d
                .payload
                .bytes()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| invalid("data", &format!("bad base64: {e}")))?
        }
        other => {
            return Err(invalid(
                "data encoding",
                &format!("`{other}` is not text or base64"),
            ))
        }
    };
    if bytes.len() as u64 != d.size {
        return Err(invalid(
            "data",
            &format!("size says {} bytes, content has {}", d.size, bytes.len()),
        ));
    }
    Ok(Data {
        mime_type: MimeType::new(d.mime_type)?,
        bytes,
    })
}

fn time_field(field: &'static str) -> impl Fn(&str) -> Result<Timestamp> {
    move |s| Timestamp::parse(s).map_err(|e| invalid(field, &e.to_string()))
}

fn invalid(field: &'static str, reason: &str) -> Error {
    Error::Invalid {
        field,
        reason: reason.to_string(),
    }
}

/// Checks that `bytes` are UTF-8 XML with no DTD, no processing instruction
/// (other than the declaration), no entity beyond the five predefined ones
/// and character references, nesting at most [`limits::XML_DEPTH`] and at
/// most `max_elements` elements. Returns the text for serde.
pub fn guard(bytes: &[u8], max_elements: usize) -> Result<&str> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::Xml(format!("not UTF-8 (at byte {})", e.valid_up_to())))?;
    let mut reader = quick_xml::Reader::from_str(text);
    let (mut depth, mut elements, mut roots) = (0usize, 0usize, 0usize);
    loop {
        let event = reader
            .read_event()
            .map_err(|e| Error::Xml(format!("at byte {}: {e}", reader.buffer_position())))?;
        match event {
            XmlEvent::Start(_) | XmlEvent::Empty(_) => {
                elements += 1;
                if depth == 0 {
                    roots += 1;
                }
                if elements > max_elements {
                    return Err(Error::TooLarge {
                        what: "element count",
                        limit: max_elements,
                    });
                }
                if matches!(event, XmlEvent::Start(_)) {
                    depth += 1;
                    if depth > limits::XML_DEPTH {
                        return Err(Error::TooLarge {
                            what: "nesting depth",
                            limit: limits::XML_DEPTH,
                        });
                    }
                }
            }
            XmlEvent::End(_) => depth = depth.saturating_sub(1),
            XmlEvent::DocType(_) => {
                return Err(Error::Xml(
                    "DOCTYPE is not allowed (no DTDs, no entities)".into(),
                ))
            }
            XmlEvent::PI(_) => {
                return Err(Error::Xml("processing instructions are not allowed".into()))
            }
            XmlEvent::GeneralRef(r) => {
                let predefined = matches!(&*r, "lt" | "gt" | "amp" | "apos" | "quot");
                if !predefined && !r.is_char_ref() {
                    return Err(Error::Xml(format!("unknown entity &{};", &*r)));
                }
            }
            XmlEvent::Text(t) if depth == 0 && !t.bytes().all(|b| b.is_ascii_whitespace()) => {
                return Err(Error::Xml("text outside the root element".into()));
            }
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    if roots != 1 {
        return Err(Error::Xml(format!(
            "expected one root element, found {roots}"
        )));
    }
    if depth != 0 {
        return Err(Error::Xml("unclosed element".into()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_refuses_entity_tricks() {
        let cases = [
            "<!DOCTYPE x [<!ENTITY a 'aaaa'>]><header/>",
            "<!DOCTYPE x SYSTEM 'file:///etc/passwd'><header/>",
            "<header>&ext;</header>",
            "<?php evil ?><header/>",
            "<a/><b/>",
            "junk<a/>",
        ];
        for case in cases {
            assert!(guard(case.as_bytes(), 100).is_err(), "{case} accepted");
        }
        assert!(guard(b"<a>&lt;&#65;&#x42;</a>", 100).is_ok());
        let deep = "<a>".repeat(17) + &"</a>".repeat(17);
        assert!(matches!(
            guard(deep.as_bytes(), 100),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn data_chooses_text_only_when_exact_and_mail_safe() {
        let d = |bytes: &[u8]| {
            data_to_xml(&Data {
                mime_type: MimeType::octet_stream(),
                bytes: bytes.to_vec(),
            })
            .encoding
        };
        assert_eq!(d(b"plain text\n"), "text");
        assert_eq!(d(b"caf\xc3\xa9"), "base64");
        assert_eq!(d(b"\0\x01"), "base64");
        assert_eq!(d(b"cr\r\n"), "base64");
        assert_eq!(d(b" \n\t"), "base64");
        assert_eq!(d(b""), "text");
        assert_eq!(d(&vec![b'x'; 1000]), "base64");
    }
}
