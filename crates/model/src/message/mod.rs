//! The message: a header that every hop may read and route on, and one
//! content element that only the final receiver needs to understand
//! (SPEC.md section 3).
//!
//! This module owns the in-memory model and its invariants; `xml` maps it to
//! and from the XML parts, `envelope` wraps parts into MIME `multipart/related`.
//!
//! Invariant: a value of these types can always be serialised, and what is
//! serialised parses back to an equal value. Constructors and parsers refuse
//! strings that XML 1.0 cannot carry or that would be unsafe in file names.

pub mod envelope;
pub mod id;
pub mod xml;

use std::fmt;
use std::str::FromStr;

pub use id::MessageId;

use crate::time::Timestamp;

/// Bounds on what a message may contain; input beyond them is refused.
pub mod limits {
    /// Largest header part (XML, after transfer decoding).
    pub const HEADER_BYTES: usize = 64 * 1024;
    /// Largest XML nesting depth in either part.
    pub const XML_DEPTH: usize = 16;
    /// Most XML elements in a header part.
    pub const HEADER_ELEMENTS: usize = 2_048;
    /// Most XML elements in a content part.
    pub const CONTENT_ELEMENTS: usize = 64;
    /// Longest free text (alarm, event and response text).
    pub const TEXT_BYTES: usize = 1024 * 1024;
    /// Longest identifier-like value (class, component, type, ...).
    pub const NAME_BYTES: usize = 128;
    /// Most routing elements (hops) a header may carry.
    pub const ROUTING: usize = 256;
    /// Most destinations a back-channel header may list.
    pub const DESTINATIONS: usize = 1_024;
    /// Most messages in one envelope.
    pub const ENVELOPE_MESSAGES: usize = 10_000;
    /// Largest age header a sealed bulk request carries (its recipient
    /// stanzas, MAC, nonce).
    pub const SEALED_HEADER: usize = 16 * 1024;
    /// Most header lines in one MIME part.
    pub const MIME_HEADERS: usize = 64;
    /// Most header lines at the top of an envelope (mail relays add
    /// `Received:` lines on the way).
    pub const ENVELOPE_HEADERS: usize = 512;
    /// Most bytes of header lines at the top of an envelope.
    pub const ENVELOPE_HEADER_BYTES: usize = 64 * 1024;
    /// Most bytes of header lines of one part.
    pub const PART_HEADER_BYTES: usize = 16 * 1024;
    /// Longest line of an envelope that is read into memory (envelopes rs
    /// writes keep lines under 998 bytes, as mail requires).
    pub const LINE_BYTES: usize = 64 * 1024;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("XML: {0}")]
    Xml(String),
    #[error("MIME: {0}")]
    Mime(String),
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge { what: &'static str, limit: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub content: Content,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: MessageId,
    /// When the originating component made the message; eviction's "oldest"
    /// and every diagnosis use this, never file times.
    pub created: Timestamp,
    pub class: Name,
    pub subclass: Name,
    pub locator: Locator,
    pub in_reply_to: Option<MessageId>,
    pub origin_key: Option<Text>,
    pub epoch: Option<u64>,
    pub routing: Vec<Routing>,
}

impl Header {
    /// Records that component `me` received the message at `now`: a
    /// routing element of its own (none past the routing limit, which a
    /// looping message reaches).
    pub fn stamp_received(&mut self, me: &Name, now: Timestamp) {
        if self.routing.len() < limits::ROUTING {
            self.routing.push(Routing {
                component: me.clone(),
                received: Some(now),
                sent: None,
            });
        }
    }

    /// Records that component `me` received the message from peer
    /// `carrier` at `now` ([`Header::stamp_received`]); a back-channel
    /// message that comes with no trace was made by the peer that carried
    /// it, whose element then goes first, so that its origin stays known
    /// ([`Header::origin`]) however far it travels.
    pub fn stamp_received_from(&mut self, carrier: &Name, me: &Name, now: Timestamp) {
        if matches!(self.locator, Locator::Destination(_)) && self.routing.is_empty() {
            self.routing.push(Routing {
                component: carrier.clone(),
                received: None,
                sent: None,
            });
        }
        self.stamp_received(me, now);
    }

    /// Records that component `me` sends the message on at `now`: its
    /// routing element (the last one, when `me` received it) gets the time
    /// sent; a message that starts at `me` gets an element with no time
    /// received. A retransmission stamps the time of this send.
    pub fn stamp_sent(&mut self, me: &Name, now: Timestamp) {
        let count = self.routing.len();
        match self.routing.last_mut() {
            Some(r) if r.component == *me => r.sent = Some(now),
            _ if count < limits::ROUTING => self.routing.push(Routing {
                component: me.clone(),
                received: None,
                sent: Some(now),
            }),
            _ => {}
        }
    }

    /// The component the message started at: its source, or for a message
    /// with destinations the first element of its trace (every hop,
    /// the origin included, stamps one as the message leaves it).
    pub fn origin(&self) -> Option<&Name> {
        match &self.locator {
            Locator::Source(s) => Some(&s.component),
            Locator::Destination(_) => self.routing.first().map(|r| &r.component),
        }
    }

    pub fn qos(&self) -> &Qos {
        match &self.locator {
            Locator::Source(s) => &s.qos,
            Locator::Destination(d) => &d.qos,
        }
    }
}

/// Forward-path messages carry their source; back-channel messages carry
/// their destinations. Both carry the QoS the queues act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Locator {
    Source(Source),
    Destination(Destination),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub component: Name,
    pub component_type: Name,
    pub version: Name,
    pub qos: Qos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub targets: Vec<Target>,
    pub qos: Qos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Component(Name),
    Group(Name),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qos {
    /// After this instant the message is worthless: never sent, pruned to dead.
    pub expiry: Option<Timestamp>,
    pub precedence: Precedence,
    pub persistence: Persistence,
}

impl Qos {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }
}

/// One hop's record of handling the message, for diagnosing delays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    pub component: Name,
    pub received: Option<Timestamp>,
    pub sent: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Alarm(Alarm),
    Event(Event),
    MessageResponse(MessageResponse),
    BulkDataRequest(BulkDataRequest),
    BulkDataResponse(BulkDataResponse),
    Data(Data),
}

impl Content {
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Alarm(_) => "alarm",
            Content::Event(_) => "event",
            Content::MessageResponse(_) => "message-response",
            Content::BulkDataRequest(_) => "bulk-data-request",
            Content::BulkDataResponse(_) => "bulk-data-response",
            Content::Data(_) => "data",
        }
    }
}

/// A stateful systems-management alarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm {
    pub alarm_type: Name,
    pub severity: Severity,
    pub state: Name,
    pub instance: Option<Name>,
    pub text: Text,
    pub data: Option<Data>,
}

/// A stateless notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_type: Name,
    pub severity: Severity,
    pub text: Text,
    pub data: Option<Data>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageResponse {
    pub status: ResponseStatus,
    pub reason_code: Option<Name>,
    pub answers: MessageId,
    pub reason: Text,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkDataRequest {
    pub class: Name,
    pub subclass: Name,
    pub size: u64,
    /// The transfer asked for: the ID the sender printed (absent: this
    /// request's own ID). A request asked again after `deferred` has an
    /// ID of its own and the same transfer.
    pub transfer: Option<MessageId>,
    /// The whole data's digest, which the receiver verifies.
    pub digest: Option<Digest>,
    /// What the data is, as delivered.
    pub mime_type: Option<MimeType>,
    /// Set when the data was sealed when it was queued (an age file): the
    /// chunks then carry the sealed payload, and only a receiver holding
    /// one of its recipients' identities opens it.
    pub sealed: Option<Sealing>,
}

/// How a transfer's data was sealed (see `bulk::seal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealing {
    /// The age header, the payload's nonce at its end.
    pub header: Vec<u8>,
    /// The sealed payload's size: what the chunks carry.
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkDataResponse {
    pub status: BulkStatus,
    pub reason: Option<Text>,
    pub location: Option<Text>,
    pub answers: MessageId,
    /// The transfer answered (see [`BulkDataRequest::transfer`]).
    pub transfer: Option<MessageId>,
    /// The size of the chunks the receiver takes (where they travel as
    /// messages).
    pub chunk_size: Option<u64>,
    /// The chunks the receiver asks for now (`0-7,9`): it paces the
    /// transfer, and asks again for what did not arrive.
    pub ask: Option<Text>,
    /// On the receiver's last answer: the digest of the data it verified
    /// (`ok`), after which the sender discards its copy.
    pub verified: Option<Digest>,
}

/// A SHA-256 digest, `sha256:` and 64 lower-case hexadecimal digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn new(value: impl Into<String>) -> Result<Digest> {
        let value = value.into();
        match value.strip_prefix("sha256:") {
            Some(hex)
                if hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(Digest(value))
            }
            _ => Err(Error::Invalid {
                field: "digest",
                reason: format!(
                    "`{}`: must be sha256: and 64 lower-case hexadecimal digits",
                    value.chars().take(80).collect::<String>().escape_debug()
                ),
            }),
        }
    }

    /// The digest of what `hasher` read.
    pub fn of(hasher: sha2::Sha256) -> Digest {
        use sha2::Digest as _;
        let bytes = hasher.finalize();
        let mut s = String::with_capacity(7 + 64);
        s.push_str("sha256:");
        for b in bytes.iter() {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Anything else: bytes of a stated MIME type, binary allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    pub mime_type: MimeType,
    pub bytes: Vec<u8>,
}

macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(Error::Invalid {
                        field: stringify!($name),
                        reason: format!(
                            "`{}` is not one of: {}",
                            s,
                            [$($text),+].join(", ")
                        ),
                    }),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

keyword_enum!(
    /// Send order: urgent before normal before bulk.
    Precedence { Urgent => "urgent", Normal => "normal", Bulk => "bulk" }
);
keyword_enum!(
    /// `high` may not be evicted in favour of other messages (only expiry removes it).
    Persistence { Normal => "normal", High => "high" }
);
keyword_enum!(
    Severity {
        Critical => "critical",
        Major => "major",
        Minor => "minor",
        Warning => "warning",
        Info => "info",
    }
);
keyword_enum!(
    ResponseStatus {
        Accepted => "accepted",
        Rejected => "rejected",
        RejectedRetry => "rejected-retry",
        EpochMismatch => "epoch-mismatch",
    }
);
keyword_enum!(
    BulkStatus { Ok => "ok", Deferred => "deferred", Rejected => "rejected" }
);

impl Precedence {
    /// 0 for the first to be sent.
    pub fn rank(self) -> usize {
        match self {
            Precedence::Urgent => 0,
            Precedence::Normal => 1,
            Precedence::Bulk => 2,
        }
    }

    pub fn letter(self) -> char {
        match self {
            Precedence::Urgent => 'u',
            Precedence::Normal => 'n',
            Precedence::Bulk => 'b',
        }
    }

    pub fn from_letter(c: char) -> Option<Precedence> {
        Precedence::ALL.iter().copied().find(|p| p.letter() == c)
    }
}

impl Persistence {
    pub fn letter(self) -> char {
        match self {
            Persistence::Normal => 'n',
            Persistence::High => 'h',
        }
    }

    pub fn from_letter(c: char) -> Option<Persistence> {
        Persistence::ALL.iter().copied().find(|p| p.letter() == c)
    }
}

/// An identifier-like value (class, component ID, type, MIME type ...):
/// 1 to 128 printable ASCII characters without spaces, quotes, slashes or colons,
/// so it is safe in XML attributes, MIME parameters, logs and file names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    pub fn new(field: &'static str, value: impl Into<String>) -> Result<Name> {
        let value = value.into();
        let invalid = |reason: &str| Error::Invalid {
            field,
            reason: format!("`{}`: {}", value.escape_debug(), reason),
        };
        if value.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if value.len() > limits::NAME_BYTES {
            return Err(invalid("longer than 128 bytes"));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || "._-+@=,".contains(c);
        if !value.chars().all(ok) {
            return Err(invalid("may hold only letters, digits and . _ - + : @ = ,"));
        }
        if value.starts_with(['.', '-']) {
            return Err(invalid("must not start with . or -"));
        }
        Ok(Name(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A MIME type such as `text/plain; charset=utf-8`: printable ASCII, at
/// most 255 bytes, `type/subtype` before any parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MimeType(String);

impl MimeType {
    pub fn new(value: impl Into<String>) -> Result<MimeType> {
        let value = value.into();
        let invalid = |reason: &str| Error::Invalid {
            field: "mime-type",
            reason: format!("`{}`: {}", value.escape_debug(), reason),
        };
        if value.len() > 255 {
            return Err(invalid("longer than 255 bytes"));
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(invalid("may hold only printable ASCII"));
        }
        let essence = value.split(';').next().unwrap_or("").trim();
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        match essence.split_once('/') {
            Some((t, sub)) if token(t) && token(sub) => Ok(MimeType(value)),
            _ => Err(invalid("must have the form type/subtype")),
        }
    }

    pub fn octet_stream() -> MimeType {
        MimeType("application/octet-stream".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MimeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Free text that XML 1.0 can carry (no control characters but tab,
/// newline and carriage return), at most 1 MiB.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Text(String);

impl Text {
    pub fn new(field: &'static str, value: impl Into<String>) -> Result<Text> {
        let value = value.into();
        if value.len() > limits::TEXT_BYTES {
            return Err(Error::TooLarge {
                what: field,
                limit: limits::TEXT_BYTES,
            });
        }
        if let Some(c) = value.chars().find(|&c| !is_xml_char(c)) {
            return Err(Error::Invalid {
                field,
                reason: format!("contains U+{:04X}, which XML cannot carry", c as u32),
            });
        }
        Ok(Text(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Characters allowed by XML 1.0 (section 2.2).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_what_is_unsafe_in_files_and_xml() {
        for bad in [
            "",
            "a b",
            "a/b",
            "../x",
            "-x",
            "a\"b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(Name::new("class", bad).is_err(), "{bad:?} accepted");
        }
        for good in ["inventory", "site-1.host_2", "a@b.c", "1.0"] {
            assert!(Name::new("class", good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn mime_types() {
        for good in [
            "text/plain",
            "application/octet-stream",
            "text/xml; charset=utf-8",
        ] {
            assert!(MimeType::new(good).is_ok(), "{good} refused");
        }
        for bad in ["", "text", "/x", "text/", "a b/c", "text/plain\n"] {
            assert!(MimeType::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn text_refuses_control_characters() {
        assert!(Text::new("text", "ok\ttab\nnewline é ✓").is_ok());
        assert!(Text::new("text", "nul\0").is_err());
        assert!(Text::new("text", "\u{1b}[31m").is_err());
    }

    #[test]
    fn keywords_parse_and_print() {
        for p in Precedence::ALL {
            assert_eq!(p.as_str().parse::<Precedence>().unwrap(), *p);
            assert_eq!(Precedence::from_letter(p.letter()), Some(*p));
        }
        assert!("high".parse::<Precedence>().is_err());
        assert_eq!(
            "rejected-retry".parse::<ResponseStatus>().unwrap(),
            ResponseStatus::RejectedRetry
        );
    }
}
