//! Registration and heartbeats (SPEC.md section 13): the messages rs itself
//! sends and takes, class `infrastructure`.
//!
//! **A component** with `[registration] enabled` registers with its
//! upstream peer: a `registration` message (its component and site IDs)
//! queued by the first `rs-queue flush` or `export` that finds it
//! unregistered, sent before anything else. In session mode (an HTTP or
//! `spm:` upstream route) nothing else goes upstream until the answer came
//! back; in message mode (media, mail) the data follows at once. A
//! registration not answered after `resend_after` heartbeats goes again.
//! The answer (`registration-answer`) carries default configuration, which
//! is written into `config.toml` (the operator's comments kept) once it
//! checks. Heartbeats (`heartbeat`, a `data` of type `text/xml`: this
//! component's counts, and the status its children last reported) go every
//! `[registration] heartbeat`; in session mode the poll itself is the
//! heartbeat until the registration is answered.
//!
//! **A relay** that registers takes its children's heartbeats (they are not
//! forwarded: their status is nested in its own) and holds their
//! registrations behind its own.
//!
//! **The registrar** (`[registrar] enabled`, at the provider) records each
//! registration (`state/registered/COMPONENT`) and answers it with its
//! `defaults`; it records every heartbeat, and the children nested in it,
//! in `state/heard/COMPONENT`, which `rs-relay silent` reads.
//!
//! What rs takes is held in `divert/` under the reserved label [`LABEL`]
//! and handled by [`handle`] from `relay::run_pending`, like a rule's
//! handler, so it is acknowledged only once durable and handled after a
//! crash. State here is a cache (SPEC.md section 4): lost, a component
//! registers again.

pub mod claim;
mod control;
mod document;
mod error;
pub mod gate;
mod heard;
mod heartbeat;
mod registration;
mod state;

use crate::config::{Config, Route};
use crate::message::{
    envelope, Content, Data, Header, Locator, Message, MessageId, MimeType, Name, Persistence,
    Precedence, Qos, Source,
};
use crate::route::NextHop;
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

pub use control::send_control;
pub use document::read_document;
pub use error::Error;
pub use heard::{heard, Heard};
pub use registration::apply_defaults;
pub use state::{first, held, State};

use document::{read, xml_attr};
use heartbeat::{status_xml, supersede};

/// The class of what rs itself sends and takes.
pub const CLASS: &str = "infrastructure";
pub const REGISTRATION: &str = "registration";
pub const ANSWER: &str = "registration-answer";
pub const HEARTBEAT: &str = "heartbeat";
pub const CONTROL: &str = "control";
/// What a component sends back for `get-configuration`.
pub const CONFIGURATION: &str = "configuration";

/// What a control message may ask.
pub const ACTIONS: &[&str] = &[
    "ping",
    "get-configuration",
    "set-configuration",
    "hold",
    "release",
    "deregister",
];
/// The `divert/` label of what rs takes for itself (no rule may use it).
pub const LABEL: &str = "rs-infrastructure";

/// Whether this site takes the message itself: an infrastructure message
/// for it (a registration or heartbeat at the registrar, an answer at a
/// registering component), or a child's heartbeat at a relay that
/// registers (its status rides in the relay's own heartbeat).
pub fn takes(h: &Header, hop: &NextHop, config: &Config) -> bool {
    if h.class.as_str() != CLASS {
        return false;
    }
    let sub = h.subclass.as_str();
    match hop {
        NextHop::Local => {
            (config.registrar.enabled && (sub == REGISTRATION || sub == HEARTBEAT))
                || (config.registration.enabled && sub == ANSWER)
                || sub == CONTROL
        }
        NextHop::Peer(_) => {
            config.registration.enabled
                && sub == HEARTBEAT
                && h.origin().is_some_and(|o| *o != config.component)
        }
        NextHop::Unknown(_) => false,
    }
}

/// Whose control messages and registration answers this component
/// obeys: its registrar, as `[registration] registrar` names it or as the
/// answer that registered it showed; before any answer, the answer to its
/// own pending registration, or its upstream peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authority {
    pub registrar: Option<Name>,
    /// The registration waiting for its answer.
    pub pending: Option<MessageId>,
}

impl Authority {
    pub fn of(spool: &Spool) -> Authority {
        let st = State::load(spool);
        Authority {
            registrar: spool
                .config()
                .registration
                .registrar
                .clone()
                .or(st.registrar),
            pending: st.pending,
        }
    }
}

/// Why a control message or registration answer must not be obeyed or
/// passed on, if it must not (SPEC.md section 13a). They travel only down
/// from the provider: a hop passes one on only when it came from its own
/// upstream peer, and a component obeys one only when it came from its
/// upstream (signed, where that peer is protected: `signed`) and was made
/// by its registrar ([`Authority`]); whoever carried it vouches only for
/// itself. The caller quarantines it with this reason and tells its origin.
pub fn refused(
    h: &Header,
    from: &Name,
    hop: &NextHop,
    signed: bool,
    authority: &Authority,
    config: &Config,
) -> Option<String> {
    let sub = h.subclass.as_str();
    if h.class.as_str() != CLASS || (sub != CONTROL && sub != ANSWER) {
        return None;
    }
    let made_by = crate::route::originator(h, from);
    let from_upstream = crate::route::is_upstream(from, config);
    match hop {
        NextHop::Peer(_) if !from_upstream => Some(format!(
            "a {sub} message made by {made_by} and carried by {from}: control messages and registration answers travel only down from the provider, so one that came from {from} is not passed on"
        )),
        NextHop::Peer(_) | NextHop::Unknown(_) => None,
        NextHop::Local => {
            let Some(up) = config.upstream() else {
                return Some(format!(
                    "a {sub} message from {from}: this site has no upstream peer to obey"
                ));
            };
            if !from_upstream {
                return Some(format!(
                    "a {sub} message from {from}: only the upstream peer ({}) is obeyed",
                    up.id
                ));
            }
            if !signed {
                return Some(format!(
                    "a {sub} message from {from} without its signature: [[peer]] {} is protected",
                    up.id
                ));
            }
            let answers_ours =
                sub == ANSWER && h.in_reply_to.is_some() && h.in_reply_to == authority.pending;
            match &authority.registrar {
                Some(r) if made_by == r => None,
                None if *made_by == up.id || answers_ours => None,
                expected => Some(format!(
                    "a {sub} message made by {made_by}: only {} is obeyed here (this component's {}), whoever carries it ({from} vouches only for itself)",
                    expected.as_ref().unwrap_or(&up.id),
                    if expected.is_some() { "registrar" } else { "upstream peer, until a registrar answers" }
                )),
            }
        }
    }
}

/// Whether the upstream link is a session (HTTP, `spm:`): registration is
/// then awaited before data goes.
pub fn session_mode(config: &Config) -> bool {
    config.upstream().is_some_and(|u| {
        u.routes
            .first()
            .is_some_and(|r| matches!(r, Route::Http(_) | Route::Spm(_)))
    })
}

fn invalid(spool: &Spool, e: impl std::fmt::Display) -> crate::spool::Error {
    crate::spool::Error::io(
        "make an infrastructure message in",
        &spool.dir(Area::State),
        std::io::Error::other(e.to_string()),
    )
}

/// A message of this component's own, class `infrastructure`.
fn message(
    spool: &Spool,
    subclass: &str,
    locator: Locator,
    in_reply_to: Option<MessageId>,
    xml: String,
    now: Timestamp,
) -> Result<Message> {
    let body = ("text/xml", xml.into_bytes());
    message_of(spool, subclass, locator, in_reply_to, body, now)
}

/// [`message`], with a content of another type.
fn message_of(
    spool: &Spool,
    subclass: &str,
    locator: Locator,
    in_reply_to: Option<MessageId>,
    (mime, bytes): (&str, Vec<u8>),
    now: Timestamp,
) -> Result<Message> {
    let bad = |e: crate::message::Error| invalid(spool, e);
    Ok(Message {
        header: Header {
            id: MessageId::mint(now),
            created: now,
            class: Name::new("class", CLASS).map_err(bad)?,
            subclass: Name::new("subclass", subclass).map_err(bad)?,
            locator,
            in_reply_to,
            origin_key: None,
            epoch: None,
            routing: Vec::new(),
        },
        content: Content::Data(Data {
            mime_type: MimeType::new(mime).map_err(bad)?,
            bytes,
        }),
    })
}

fn source(spool: &Spool, precedence: Precedence) -> Result<Locator> {
    let bad = |e: crate::message::Error| invalid(spool, e);
    Ok(Locator::Source(Source {
        component: spool.config().component.clone(),
        component_type: Name::new("type", "rs").map_err(bad)?,
        version: Name::new("version", env!("CARGO_PKG_VERSION")).map_err(bad)?,
        qos: Qos {
            expiry: None,
            precedence,
            persistence: Persistence::High,
        },
    }))
}

/// The registration and heartbeat work of `rs-queue flush` and `export`:
/// queues the registration when none is pending (or again after
/// `resend_after` heartbeats), and a heartbeat when one is due.
pub fn tick(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    let config = spool.config();
    if !config.registration.enabled {
        return Ok(());
    }
    let r = &config.registration;
    let session = session_mode(config);
    let mut st = State::load(spool);
    let beat_due = st
        .last_heartbeat
        .is_none_or(|t| t > now || now.since(t) >= r.heartbeat);
    let mut queue: Vec<Message> = Vec::new();
    if beat_due {
        if st.registered.is_none() && st.pending.is_some() {
            st.heartbeats += 1;
        }
        st.last_heartbeat = Some(now);
    }
    // A registration that has not left yet (the medium is not there) is
    // not unanswered: heartbeats count from when it went.
    if let Some(p) = &st.pending {
        if spool
            .find(p.as_str())
            .is_ok_and(|e| matches!(e.area, Area::Queue(_)))
        {
            st.heartbeats = 0;
        }
    }
    let resend =
        st.registered.is_none() && (st.pending.is_none() || st.heartbeats >= r.resend_after);
    if resend {
        let again = st.pending.is_some();
        let xml = format!(
            "<registration component=\"{}\" site=\"{}\" type=\"{}\" version=\"{}\"/>",
            xml_attr(config.component.as_str()),
            xml_attr(config.site.as_str()),
            if config.peers.len() > 1 {
                "relay"
            } else {
                "component"
            },
            env!("CARGO_PKG_VERSION")
        );
        let m = message(
            spool,
            REGISTRATION,
            source(spool, Precedence::Urgent)?,
            None,
            xml,
            now,
        )?;
        log(format!(
            "registration {} queued for {}{}",
            m.header.id,
            config.upstream().map(|u| u.id.as_str()).unwrap_or("?"),
            if again {
                format!(" (again: not answered after {} heartbeats)", st.heartbeats)
            } else {
                String::new()
            }
        ));
        st.pending = Some(m.header.id.clone());
        st.sent = Some(now);
        st.heartbeats = 0;
        queue.push(m);
    }
    // Until a session-mode registration is answered, the poll is the
    // heartbeat; afterwards, and in message mode, a heartbeat message.
    if beat_due && (st.registered.is_some() || !session) {
        supersede(spool, st.heartbeat.take(), now)?;
        let xml = status_xml(spool, &st, now)?;
        let beat = message(
            spool,
            HEARTBEAT,
            source(spool, Precedence::Normal)?,
            None,
            xml,
            now,
        )?;
        st.heartbeat = Some(beat.header.id.clone());
        queue.push(beat);
    }
    if !queue.is_empty() {
        crate::custody::pass_on(spool, queue, now, log)?;
    }
    if beat_due || resend {
        st.save(spool, now)?;
    }
    Ok(())
}

/// Handles a message rs took for itself (held in `divert/`), which came
/// from peer `from`. Returns what it did, for the log; an error leaves it
/// for the next run.
pub fn handle(spool: &Spool, m: &Message, from: &str, now: Timestamp) -> Result<String> {
    let h = &m.header;
    let Content::Data(d) = &m.content else {
        return Ok(format!("{}: {} without data: ignored", h.id, h.subclass));
    };
    let said = match read(&d.bytes) {
        Ok(s) => s,
        Err(e) => {
            return Ok(format!(
                "{}: {} unreadable ({e}): ignored",
                h.id, h.subclass
            ))
        }
    };
    let origin = h.origin().map(|o| o.to_string()).unwrap_or_default();
    match h.subclass.as_str() {
        HEARTBEAT => heartbeat::heard_from(spool, m, &said, from, now),
        REGISTRATION => registration::register(spool, m, &said, &origin, now),
        ANSWER => registration::answered(spool, m, &said, from, now),
        CONTROL => control::control(spool, m, &said, &origin, now),
        other => Ok(format!("{}: {other}: not handled here", h.id)),
    }
}

/// Handles what rs took for itself and holds in `divert/` (under
/// `divert/.infra.lock`: one run at a time), each message once; what
/// cannot be handled now stays for the next run.
pub fn run_held(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    let dir = spool.dir(Area::Divert);
    let held = crate::custody::held(spool, LABEL)?;
    if held.is_empty() {
        return Ok(());
    }
    let lock_path = dir.join(".infra.lock");
    let _lock = durable::lock_exclusive(&lock_path)
        .map_err(|e| crate::spool::Error::io("lock", &lock_path, e))?;
    for (from, msg, state) in held {
        // Another run may have handled it while this one waited.
        let Ok(bytes) = std::fs::read(&msg) else {
            continue;
        };
        match envelope::parse(&bytes) {
            Ok(ms) => {
                for m in &ms {
                    log(handle(spool, m, &from, now)?);
                }
            }
            Err(e) => log(format!("{}: cannot be read ({e}): removed", msg.display())),
        }
        crate::custody::remove(&dir, &msg, &state)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_attributes_children_and_text() {
        let s = read(b"<status component=\"a.b\" outbound=\"3\"><component id=\"c.d\" heard=\"2026-12-01T00:00:00Z\"/></status>").unwrap();
        assert_eq!(s.get("outbound"), Some("3"));
        assert_eq!(s.nested.len(), 1);
        let a = read(b"<registration-answer status=\"accepted\"><![CDATA[[queue]\nmax_messages = 5\n]]></registration-answer>").unwrap();
        assert!(a.text.contains("max_messages = 5"));
        assert!(read(b"<!DOCTYPE x [<!ENTITY e \"x\">]><status/>").is_err());
    }
}
