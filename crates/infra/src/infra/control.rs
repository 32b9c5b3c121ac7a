//! Control messages (SPEC.md section 13): made at the provider
//! ([`send_control`]) and obeyed at a component ([`control`]), which owes
//! its origin an end-to-end answer saying what was done (`control-done`)
//! or why nothing was (`control-refused`). Who may send one is decided
//! before it gets here (`super::refused`); an action refused here changes
//! nothing.

use super::document::{xml_attr, Said};
use super::registration::apply_defaults;
use super::state::state_path;
use super::{message, message_of, source, Error, ACTIONS, CONFIGURATION, CONTROL};
use crate::config::Config;
use crate::message::{
    Destination, Locator, Message, MessageId, Name, Persistence, Precedence, Qos, Target,
};
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

/// A control message from the provider: does what it says and owes its
/// origin an answer saying what was done (an end-to-end acknowledgement,
/// `control-done` or `control-refused`, shown by `rs-ack status ID` there).
pub(super) fn control(
    spool: &Spool,
    m: &Message,
    said: &Said,
    origin: &str,
    now: Timestamp,
) -> Result<String> {
    let action = said.get("action").unwrap_or_default().to_string();
    let id = m.header.id.clone();
    let outcome: std::result::Result<String, Error> = match action.as_str() {
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
        other => Err(Error::UnknownAction {
            action: other.to_string(),
            known: ACTIONS.join(", "),
        }),
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
) -> std::result::Result<String, Error> {
    let path = spool.config_path();
    let text = std::fs::read_to_string(&path).map_err(|source| Error::ReadConfig {
        path: path.clone(),
        source,
    })?;
    let reply = message_of(
        spool,
        CONFIGURATION,
        source(spool, Precedence::Normal)?,
        Some(m.header.id.clone()),
        ("application/toml", text.into_bytes()),
        now,
    )?;
    let rid = reply.header.id.clone();
    crate::custody::pass_on(spool, vec![reply], now, &|_| {})?;
    Ok(format!("configuration sent as message {rid}"))
}

/// `deregister`: this component stops registering and heartbeating
/// (`[registration] enabled = false`, the operator's comments kept) and
/// forgets its registration.
fn deregister(spool: &Spool, now: Timestamp) -> std::result::Result<String, Error> {
    let path = spool.config_path();
    let text = std::fs::read_to_string(&path).map_err(|source| Error::ReadConfig {
        path: path.clone(),
        source,
    })?;
    let invalid = |e: String| Error::Config { reason: e };
    let text = crate::config::edit(&text, "registration", "enabled", Some(false.into()))
        .map_err(|e| invalid(e.to_string()))?;
    Config::parse(&text).map_err(|e| invalid(e.to_string()))?;
    durable::write_durable(
        &spool.dir(Area::Tmp),
        spool.root(),
        crate::config::FILE_NAME,
        text.as_bytes(),
        now.as_micros(),
    )?;
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
    crate::custody::pass_on(spool, vec![m], now, log)?;
    Ok(id)
}
