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

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::config::{Config, Route};
use crate::message::{
    envelope, Content, Data, Destination, Header, Locator, Message, MessageId, MimeType, Name,
    Persistence, Precedence, Qos, Source, Target,
};
use crate::route::NextHop;
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

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

/// Most bytes of the XML in a registration, answer or heartbeat.
const MAX_XML: usize = 256 * 1024;

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

/// A component's registration, as it knows it (`state/registration`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The registration message waiting for its answer, if one is.
    pub pending: Option<MessageId>,
    /// When it was sent (queued).
    pub sent: Option<Timestamp>,
    /// Heartbeats since.
    pub heartbeats: u32,
    /// When the positive answer came, once it did.
    pub registered: Option<Timestamp>,
    /// The last heartbeat queued (superseded by the next if still unsent).
    pub heartbeat: Option<MessageId>,
    /// The registration ID the registrar issued: presented in every
    /// heartbeat (the login).
    pub id: Option<String>,
    pub last_heartbeat: Option<Timestamp>,
    /// The component whose answer registered this one: its registrar,
    /// the one whose control messages are obeyed (unless `[registration]
    /// registrar` names it).
    pub registrar: Option<Name>,
}

fn state_path(spool: &Spool) -> PathBuf {
    spool.dir(Area::State).join("registration")
}

impl State {
    pub fn load(spool: &Spool) -> State {
        let text = std::fs::read_to_string(state_path(spool)).unwrap_or_default();
        let mut s = State::default();
        let time = |v: &str| Timestamp::parse(v).ok();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("pending", v)) => s.pending = MessageId::parse(v).ok(),
                Some(("sent", v)) => s.sent = time(v),
                Some(("heartbeats", v)) => s.heartbeats = v.parse().unwrap_or(0),
                Some(("registered", v)) => s.registered = time(v),
                Some(("last-heartbeat", v)) => s.last_heartbeat = time(v),
                Some(("id", v)) => s.id = Some(v.to_string()),
                Some(("registrar", v)) => s.registrar = Name::new("registrar", v).ok(),
                Some(("heartbeat", v)) => s.heartbeat = MessageId::parse(v).ok(),
                _ => {}
            }
        }
        s
    }

    fn save(&self, spool: &Spool, now: Timestamp) -> Result<()> {
        let mut text = String::new();
        if let Some(p) = &self.pending {
            text.push_str(&format!("pending {p}\n"));
        }
        for (k, v) in [
            ("sent", self.sent),
            ("registered", self.registered),
            ("last-heartbeat", self.last_heartbeat),
        ] {
            if let Some(t) = v {
                text.push_str(&format!("{k} {}\n", t.to_rfc3339()));
            }
        }
        if let Some(id) = &self.id {
            text.push_str(&format!("id {id}\n"));
        }
        if let Some(r) = &self.registrar {
            text.push_str(&format!("registrar {r}\n"));
        }
        if let Some(h) = &self.heartbeat {
            text.push_str(&format!("heartbeat {h}\n"));
        }
        text.push_str(&format!("heartbeats {}\n", self.heartbeats));
        durable::write_durable(
            &spool.dir(Area::Tmp),
            &spool.dir(Area::State),
            "registration",
            text.as_bytes(),
            now.as_micros(),
        )?;
        Ok(())
    }
}

/// What must wait for the registration's answer: `Some(allowed)` (the IDs
/// that may go upstream now) while a session-mode component is not
/// registered; `None` when nothing waits.
pub fn held(spool: &Spool) -> Option<HashSet<String>> {
    let config = spool.config();
    if !config.registration.enabled || !session_mode(config) {
        return None;
    }
    let st = State::load(spool);
    if st.registered.is_some() {
        return None;
    }
    Some(st.pending.iter().map(|p| p.to_string()).collect())
}

/// The registration message ID to send before anything else, if one waits.
pub fn first(spool: &Spool) -> Option<String> {
    if !spool.config().registration.enabled {
        return None;
    }
    let st = State::load(spool);
    st.registered
        .is_none()
        .then_some(st.pending)
        .flatten()
        .map(|p| p.to_string())
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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

/// What a registration, heartbeat or answer says, as read (every field
/// optional: each kind uses its own).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
struct Said {
    #[serde(rename = "@component")]
    component: Option<String>,
    #[serde(rename = "@site")]
    site: Option<String>,
    #[serde(rename = "@status")]
    status: Option<String>,
    #[serde(rename = "@reason")]
    reason: Option<String>,
    #[serde(rename = "@outbound")]
    outbound: Option<String>,
    #[serde(rename = "@action")]
    action: Option<String>,
    #[serde(rename = "@registration-id")]
    registration_id: Option<String>,
    /// A heartbeat's children, as last heard by the relay.
    #[serde(rename = "component", default)]
    nested: Vec<Child>,
    /// An answer's default configuration.
    #[serde(rename = "$text", default)]
    text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
struct Child {
    #[serde(rename = "@id")]
    id: String,
    #[serde(rename = "@heard")]
    heard: String,
    #[serde(rename = "@outbound")]
    outbound: Option<String>,
}

impl Said {
    fn get(&self, k: &str) -> Option<&str> {
        match k {
            "component" => self.component.as_deref(),
            "site" => self.site.as_deref(),
            "status" => self.status.as_deref(),
            "reason" => self.reason.as_deref(),
            "outbound" => self.outbound.as_deref(),
            "action" => self.action.as_deref(),
            "registration-id" => self.registration_id.as_deref(),
            _ => None,
        }
    }
}

/// Reads the small XML document of an infrastructure message, through the
/// messages' guard (no DTD, no entities, bounded).
fn read(bytes: &[u8]) -> std::result::Result<Said, String> {
    if bytes.len() > MAX_XML {
        return Err(format!("more than {MAX_XML} bytes of XML"));
    }
    let text = crate::message::xml::guard(bytes, 10_000).map_err(|e| e.to_string())?;
    quick_xml::de::from_str(text).map_err(|e| e.to_string())
}

/// Whether `bytes` reads as the document of an infrastructure message
/// (for the fuzz target `infra_xml`): the reason when it does not.
pub fn read_document(bytes: &[u8]) -> std::result::Result<(), String> {
    read(bytes).map(|_| ())
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
        crate::relay::pass_on(spool, queue, now, log)?;
    }
    if beat_due || resend {
        st.save(spool, now)?;
    }
    Ok(())
}

/// Removes the previous heartbeat if it is still queued and nobody is
/// sending it: a site offline for a week sends one heartbeat when it comes
/// back, not one per interval.
fn supersede(spool: &Spool, previous: Option<MessageId>, now: Timestamp) -> Result<()> {
    let Some(id) = previous else {
        return Ok(());
    };
    let Ok(e) = spool.find(id.as_str()) else {
        return Ok(());
    };
    let leased = crate::spool::lease::live_messages(&spool.dir(Area::Leases), now)?;
    if matches!(e.area, Area::Queue(_)) && e.sent.is_none() && !leased.contains(id.as_str()) {
        spool.lock(now)?.discard_acknowledged(&[e])?;
    }
    Ok(())
}

/// This component's status, with its children's as last heard.
fn status_xml(spool: &Spool, st: &State, now: Timestamp) -> Result<String> {
    let config = spool.config();
    let (queued, bytes) = spool.area_totals(Area::Sent).unwrap_or((0, 0));
    let mut out_n = queued;
    let mut out_b = bytes;
    for p in [Precedence::Urgent, Precedence::Normal, Precedence::Bulk] {
        let (n, b) = spool.area_totals(Area::Queue(p)).unwrap_or((0, 0));
        out_n += n;
        out_b += b;
    }
    let mut xml = format!(
        "<status component=\"{}\" site=\"{}\" at=\"{}\" outbound=\"{out_n}\" outbound-bytes=\"{out_b}\" registered=\"{}\"{}>",
        xml_attr(config.component.as_str()),
        xml_attr(config.site.as_str()),
        now.to_rfc3339(),
        if st.registered.is_some() { "yes" } else { "pending" },
        st.id
            .as_ref()
            .map(|id| format!(" registration-id=\"{}\"", xml_attr(id)))
            .unwrap_or_default()
    );
    for h in heard(spool) {
        xml.push_str(&format!(
            "<component id=\"{}\" heard=\"{}\" outbound=\"{}\"/>",
            xml_attr(&h.component),
            h.at.to_rfc3339(),
            h.outbound.map(|n| n.to_string()).unwrap_or_default()
        ));
    }
    xml.push_str("</status>");
    Ok(xml)
}

/// A component as last heard here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub component: String,
    pub at: Timestamp,
    /// Messages it said were waiting to go.
    pub outbound: Option<u64>,
    /// The component whose heartbeat carried the news (itself, or its
    /// relay).
    pub via: String,
    pub registered: Option<Timestamp>,
}

fn heard_dir(spool: &Spool) -> PathBuf {
    spool.dir(Area::State).join("heard")
}

fn registered_dir(spool: &Spool) -> PathBuf {
    spool.dir(Area::State).join("registered")
}

/// Every component heard of here (and every one registered here, heard or
/// not), by component ID.
pub fn heard(spool: &Spool) -> Vec<Heard> {
    let mut out: Vec<Heard> = Vec::new();
    let read = |dir: &Path| -> Vec<(String, String)> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if name.starts_with('.') {
                            return None;
                        }
                        std::fs::read_to_string(e.path()).ok().map(|t| (name, t))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let field = |text: &str, k: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")).map(str::to_string))
    };
    for (name, text) in read(&heard_dir(spool)) {
        let Some(at) = field(&text, "at").and_then(|t| Timestamp::parse(&t).ok()) else {
            continue;
        };
        out.push(Heard {
            component: name,
            at,
            outbound: field(&text, "outbound").and_then(|n| n.parse().ok()),
            via: field(&text, "via").unwrap_or_default(),
            registered: None,
        });
    }
    for (name, text) in read(&registered_dir(spool)) {
        let at = field(&text, "at").and_then(|t| Timestamp::parse(&t).ok());
        match out.iter_mut().find(|h| h.component == name) {
            Some(h) => h.registered = at,
            None => out.push(Heard {
                component: name.clone(),
                at: at.unwrap_or(Timestamp::EPOCH),
                outbound: None,
                via: String::new(),
                registered: at,
            }),
        }
    }
    out.sort_by(|a, b| a.component.cmp(&b.component));
    out
}

/// Records that `component` was heard of at `at` (through `via`), unless a
/// later word of it is on record.
fn record_heard(
    spool: &Spool,
    component: &str,
    at: Timestamp,
    outbound: Option<&str>,
    via: &str,
    now: Timestamp,
) -> Result<()> {
    if Name::new("component", component).is_err() {
        return Ok(());
    }
    let dir = heard_dir(spool);
    durable::create_dir_all(&dir)?;
    if let Ok(old) = std::fs::read_to_string(dir.join(component)) {
        let before = old
            .lines()
            .find_map(|l| l.strip_prefix("at "))
            .and_then(|t| Timestamp::parse(t).ok());
        if before.is_some_and(|b| b >= at) {
            return Ok(());
        }
    }
    let text = format!(
        "at {}\noutbound {}\nvia {via}\n",
        at.to_rfc3339(),
        outbound.unwrap_or("")
    );
    durable::write_durable(
        &spool.dir(Area::Tmp),
        &dir,
        component,
        text.as_bytes(),
        now.as_micros(),
    )?;
    Ok(())
}

/// Whether relay `relay`'s heartbeat, carried by peer `from`, may speak
/// for `child` (SPEC.md section 13a): the child registered through the
/// relay (its registration passed it), or, without a registration here,
/// it is routed behind the peer that carried the heartbeat.
fn nests(spool: &Spool, child: &str, relay: &str, from: &str) -> bool {
    if child == relay || child == spool.config().component.as_str() {
        return false;
    }
    let Ok(c) = Name::new("component", child) else {
        return false;
    };
    let registered = std::fs::read_to_string(registered_dir(spool).join(child)).ok();
    if let Some(path) = registered
        .as_deref()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("path ")))
    {
        return path.split(' ').any(|p| p == relay);
    }
    let learned = crate::route::Learned::load(spool);
    matches!(
        crate::route::toward(&c, spool.config(), &learned),
        Some(NextHop::Peer(p)) if p.as_str() == from
    )
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
        HEARTBEAT => {
            if spool.config().registrar.enabled {
                if let Some(why) = login(spool, &origin, &said, now)? {
                    return Ok(format!("heartbeat of {origin} refused: {why}"));
                }
            }
            record_heard(
                spool,
                &origin,
                h.created.min(now),
                said.get("outbound"),
                &origin,
                now,
            )?;
            let mut n = 0;
            let mut strangers = Vec::new();
            for child in &said.nested {
                if !nests(spool, &child.id, &origin, from) {
                    strangers.push(child.id.as_str());
                    continue;
                }
                if let Ok(at) = Timestamp::parse(&child.heard) {
                    let outbound = child.outbound.as_deref();
                    record_heard(spool, &child.id, at.min(now), outbound, &origin, now)?;
                    n += 1;
                }
            }
            Ok(format!(
                "heartbeat of {origin} heard{}{}",
                if n > 0 {
                    format!(", with {n} component(s) behind it")
                } else {
                    String::new()
                },
                if strangers.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; the status it nests for {} ignored: not registered through {origin} nor routed behind it",
                        strangers.join(", ")
                    )
                }
            ))
        }
        REGISTRATION => register(spool, m, &said, &origin, now),
        ANSWER => answered(spool, m, &said, from, now),
        CONTROL => control(spool, m, &said, &origin, now),
        other => Ok(format!("{}: {other}: not handled here", h.id)),
    }
}

/// At the registrar: records a registration and answers it.
fn register(
    spool: &Spool,
    m: &Message,
    said: &Said,
    origin: &str,
    now: Timestamp,
) -> Result<String> {
    let config = spool.config();
    let component = said.get("component").unwrap_or_default();
    let site = said.get("site").unwrap_or_default();
    let refusal = if component != origin {
        Some(format!(
            "it registers {component:?} but comes from {origin}"
        ))
    } else if site.is_empty() || !component.starts_with(&format!("{site}.")) {
        Some(format!(
            "component ID {component:?} does not derive from site ID {site:?} (SITE.NAME)"
        ))
    } else {
        None
    };
    let defaults = match (&refusal, &config.registrar.defaults) {
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                return Err(crate::spool::Error::io("read", path, e));
            }
        },
        _ => String::new(),
    };
    // Unique without shared state: this registrar's own component ID and a
    // fresh message ID (time and randomness).
    let issued = format!("{}/{}", config.component, MessageId::mint(now));
    if refusal.is_none() {
        let dir = registered_dir(spool);
        durable::create_dir_all(&dir)?;
        // The components its registration passed: the relays whose
        // heartbeats may nest its status.
        let path: Vec<&str> = m
            .header
            .routing
            .iter()
            .map(|r| r.component.as_str())
            .collect();
        let text = format!(
            "at {}\nsite {site}\nregistration {}\nid {issued}\npath {}\n",
            now.to_rfc3339(),
            m.header.id,
            path.join(" ")
        );
        durable::write_durable(
            &spool.dir(Area::Tmp),
            &dir,
            component,
            text.as_bytes(),
            now.as_micros(),
        )?;
        record_heard(
            spool,
            component,
            m.header.created.min(now),
            None,
            origin,
            now,
        )?;
    }
    let xml = format!(
        "<registration-answer status=\"{}\" component=\"{}\"{}><![CDATA[{}]]></registration-answer>",
        if refusal.is_none() { "accepted" } else { "rejected" },
        xml_attr(origin),
        match &refusal {
            Some(r) => format!(" reason=\"{}\"", xml_attr(r)),
            None => format!(" registration-id=\"{}\"", xml_attr(&issued)),
        },
        defaults.replace("]]>", "]]]]><![CDATA[>")
    );
    answer(spool, origin, Some(m.header.id.clone()), xml, now)?;
    Ok(match refusal {
        None => format!("{origin} registered; answered with the default configuration"),
        Some(r) => format!("registration of {origin} refused: {r}"),
    })
}

/// Queues a registration answer for component `to`.
fn answer(
    spool: &Spool,
    to: &str,
    in_reply_to: Option<MessageId>,
    xml: String,
    now: Timestamp,
) -> Result<()> {
    let bad = |e: crate::message::Error| invalid(spool, e);
    let locator = Locator::Destination(Destination {
        targets: vec![Target::Component(Name::new("component", to).map_err(bad)?)],
        qos: Qos {
            expiry: None,
            precedence: Precedence::Urgent,
            persistence: Persistence::High,
        },
    });
    let m = message(spool, ANSWER, locator, in_reply_to, xml, now)?;
    crate::relay::pass_on(spool, vec![m], now, &|_| {})?;
    Ok(())
}

/// At the registrar: a heartbeat's registration ID (its login) checked
/// against what was issued; an unknown one is answered `unknown`, which
/// tells the component to register again. Returns why it was refused.
fn login(spool: &Spool, origin: &str, said: &Said, now: Timestamp) -> Result<Option<String>> {
    let Some(presented) = said.get("registration-id") else {
        return Ok(None);
    };
    let issued = std::fs::read_to_string(registered_dir(spool).join(origin))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("id ").map(str::to_string))
        });
    if issued.as_deref() == Some(presented) {
        return Ok(None);
    }
    let why = format!("registration {presented} of {origin} is not known here: register again");
    let xml = format!(
        "<registration-answer status=\"unknown\" component=\"{}\" reason=\"{}\"/>",
        xml_attr(origin),
        xml_attr(&why)
    );
    answer(spool, origin, None, xml, now)?;
    Ok(Some(why))
}

/// At a component: the registrar's answer. Applies the defaults it
/// carries (if they check) and records the registration.
fn answered(spool: &Spool, m: &Message, said: &Said, from: &str, now: Timestamp) -> Result<String> {
    let config = spool.config();
    if config.upstream().is_none_or(|u| u.id.as_str() != from) {
        return Ok(format!(
            "{}: a registration answer from {from}, not the upstream peer: ignored",
            m.header.id
        ));
    }
    let mut st = State::load(spool);
    if said.get("status") == Some("unknown") {
        // Told to: this component registers again at its next run.
        let was = st.id.take().unwrap_or_default();
        st.registered = None;
        st.pending = None;
        st.heartbeats = 0;
        st.save(spool, now)?;
        return Ok(format!(
            "{from} does not know registration {was} ({}): registering again",
            said.get("reason").unwrap_or("no reason given")
        ));
    }
    if said.get("status") != Some("accepted") {
        return Ok(format!(
            "registration refused by {from}: {}; it waits (resent after {} heartbeats)",
            said.get("reason").unwrap_or("no reason given"),
            config.registration.resend_after
        ));
    }
    let applied = match apply_defaults(spool, &said.text, now) {
        Ok(n) => format!("{n} default setting(s) applied"),
        Err(e) => format!("the default configuration was not applied: {e}"),
    };
    st.registered = Some(now);
    st.pending = None;
    st.heartbeats = 0;
    st.id = said.get("registration-id").map(str::to_string);
    st.registrar = m.header.origin().cloned();
    st.save(spool, now)?;
    Ok(format!(
        "registered with {from} as {}; {applied}",
        st.id.as_deref().unwrap_or("(no ID issued)")
    ))
}

/// The keys of `defaults` (TOML: `[queue]`, `[throttle]`, `[registration]`
/// values) written into `config.toml`, keeping every other line and
/// comment; nothing is written unless the result checks. Returns how many.
pub fn apply_defaults(
    spool: &Spool,
    defaults: &str,
    now: Timestamp,
) -> std::result::Result<usize, String> {
    if defaults.trim().is_empty() {
        return Ok(0);
    }
    let doc: toml_edit::DocumentMut = defaults
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    let path = spool.config_path();
    let mut text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let mut n = 0;
    for (table, item) in doc.iter() {
        if !["queue", "throttle", "registration"].contains(&table) {
            return Err(format!("[{table}] is not a setting a provider may change"));
        }
        let t = item
            .as_table()
            .ok_or_else(|| format!("{table} is not a table"))?;
        for (key, v) in t.iter() {
            if table == "registration" && key == "registrar" {
                return Err(
                    "[registration] registrar is this site's own choice: a provider may not change it"
                        .into(),
                );
            }
            let v = v
                .as_value()
                .ok_or_else(|| format!("[{table}] {key}: not a plain value"))?;
            text = crate::config::edit(&text, table, key, Some(v.clone()))?;
            n += 1;
        }
    }
    Config::parse(&text).map_err(|e| format!("the result does not check: {e}"))?;
    let dir = spool.root();
    durable::write_durable(
        &spool.dir(Area::Tmp),
        dir,
        crate::config::FILE_NAME,
        text.as_bytes(),
        now.as_micros(),
    )
    .map_err(|e| e.to_string())?;
    Ok(n)
}

/// A control message from the provider: does what it says and owes its
/// origin an answer saying what was done (an end-to-end acknowledgement,
/// `control-done` or `control-refused`, shown by `rs-ack status ID` there).
fn control(
    spool: &Spool,
    m: &Message,
    said: &Said,
    origin: &str,
    now: Timestamp,
) -> Result<String> {
    let action = said.get("action").unwrap_or_default().to_string();
    let id = m.header.id.clone();
    let outcome: std::result::Result<String, String> = match action.as_str() {
        "ping" => Ok(format!("pong from {}", spool.config().component)),
        "get-configuration" => send_configuration(spool, m, now),
        "set-configuration" => apply_defaults(spool, &said.text, now)
            .map(|n| format!("{n} setting(s) written into config.toml")),
        "hold" | "release" => {
            let held = action == "hold";
            spool.lock(now)?.set_held(held, now)?;
            Ok(if held {
                "forwarding held (rs-queue release, or a release control message, resumes it)"
                    .into()
            } else {
                "forwarding released".into()
            })
        }
        "deregister" => deregister(spool, now),
        other => Err(format!(
            "unknown action {other:?} (known: {})",
            ACTIONS.join(", ")
        )),
    };
    let (status, code, reason) = match &outcome {
        Ok(what) => (
            crate::message::ResponseStatus::Accepted,
            "control-done",
            what.clone(),
        ),
        Err(why) => (
            crate::message::ResponseStatus::Rejected,
            "control-refused",
            format!("nothing changed: {why}"),
        ),
    };
    if let (Some(up), Ok(to)) = (spool.config().upstream(), Name::new("to", origin)) {
        let _lock = crate::receive::ReceiveLock::take(spool)?;
        crate::ack::owe(
            spool,
            &up.id,
            &[crate::ack::Owed {
                id,
                status,
                code,
                to,
                reason: reason.replace(['\n', '\r'], " "),
            }],
        )?;
    }
    Ok(format!("control {action} from {origin}: {reason}"))
}

/// `get-configuration`: this site's `config.toml`, as a message to the
/// provider (class `infrastructure`, subclass `configuration`, in reply to
/// the control message).
fn send_configuration(
    spool: &Spool,
    m: &Message,
    now: Timestamp,
) -> std::result::Result<String, String> {
    let text = std::fs::read_to_string(spool.config_path()).map_err(|e| e.to_string())?;
    let reply = message_of(
        spool,
        CONFIGURATION,
        source(spool, Precedence::Normal).map_err(|e| e.to_string())?,
        Some(m.header.id.clone()),
        ("application/toml", text.into_bytes()),
        now,
    )
    .map_err(|e| e.to_string())?;
    let rid = reply.header.id.clone();
    crate::relay::pass_on(spool, vec![reply], now, &|_| {}).map_err(|e| e.to_string())?;
    Ok(format!("configuration sent as message {rid}"))
}

/// `deregister`: this component stops registering and heartbeating
/// (`[registration] enabled = false`, the operator's comments kept) and
/// forgets its registration.
fn deregister(spool: &Spool, now: Timestamp) -> std::result::Result<String, String> {
    let path = spool.config_path();
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let text = crate::config::edit(&text, "registration", "enabled", Some(false.into()))?;
    Config::parse(&text)?;
    durable::write_durable(
        &spool.dir(Area::Tmp),
        spool.root(),
        crate::config::FILE_NAME,
        text.as_bytes(),
        now.as_micros(),
    )
    .map_err(|e| e.to_string())?;
    let _ = durable::remove_file(&state_path(spool));
    Ok("deregistered: registration and heartbeats stopped".into())
}

/// A control message for `component` from this site (the provider):
/// `action` one of [`ACTIONS`]; `settings` (TOML) for `set-configuration`.
/// Queued toward the component; returns its ID.
pub fn send_control(
    spool: &Spool,
    component: &Name,
    action: &str,
    settings: &str,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<MessageId> {
    let xml = format!(
        "<control action=\"{}\"><![CDATA[{}]]></control>",
        xml_attr(action),
        settings.replace("]]>", "]]]]><![CDATA[>")
    );
    let to = Locator::Destination(Destination {
        targets: vec![Target::Component(component.clone())],
        qos: Qos {
            expiry: None,
            precedence: Precedence::Urgent,
            persistence: Persistence::High,
        },
    });
    let m = message(spool, CONTROL, to, None, xml, now)?;
    let id = m.header.id.clone();
    crate::relay::pass_on(spool, vec![m], now, log)?;
    Ok(id)
}

/// Handles what rs took for itself and holds in `divert/` (under
/// `divert/.infra.lock`: one run at a time), each message once; what
/// cannot be handled now stays for the next run.
pub fn run_held(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    let dir = spool.dir(Area::Divert);
    let held = crate::relay::divert::held(spool, LABEL)?;
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
        crate::relay::divert::remove(&dir, &msg, &state)?;
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
