//! A component's registration as it knows it, in `state/registration`
//! (one `KEY VALUE` line each: `pending`, `sent`, `heartbeats`,
//! `registered`, `last-heartbeat`, `id`, `registrar`, `heartbeat`), and
//! what waits on it. The file is a cache: lost or unreadable, it reads as
//! unregistered and the component registers again. It is rewritten whole
//! and durably (`write_durable`), never in place.

use std::collections::HashSet;
use std::path::PathBuf;

use super::session_mode;
use crate::message::{MessageId, Name};
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

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

pub(super) fn state_path(spool: &Spool) -> PathBuf {
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

    pub(super) fn save(&self, spool: &Spool, now: Timestamp) -> Result<()> {
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
