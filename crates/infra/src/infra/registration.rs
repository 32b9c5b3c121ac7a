//! Registration and its answers. At the registrar a registration is
//! checked (it registers the component that made it, whose ID derives
//! from its site's), recorded in `state/registered/COMPONENT` with the
//! relays it passed, and answered with the registrar's defaults; a
//! heartbeat's registration ID is checked against what was issued. At a
//! component the answer is applied: the defaults written into
//! `config.toml` only if the whole result checks and only `[queue]`,
//! `[throttle]` and `[registration]` settings (never `[registration]
//! registrar`), the registration recorded in the state file.

use super::document::{xml_attr, Said};
use super::heard::{record_heard, registered_dir};
use super::state::State;
use super::{invalid, message, Error, ANSWER};
use crate::config::Config;
use crate::message::{
    Destination, Locator, Message, MessageId, Name, Persistence, Precedence, Qos, Target,
};
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

/// At the registrar: records a registration and answers it.
pub(super) fn register(
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
    crate::custody::pass_on(spool, vec![m], now, &|_| {})?;
    Ok(())
}

/// At the registrar: a heartbeat's registration ID (its login) checked
/// against what was issued; an unknown one is answered `unknown`, which
/// tells the component to register again. Returns why it was refused.
pub(super) fn login(
    spool: &Spool,
    origin: &str,
    said: &Said,
    now: Timestamp,
) -> Result<Option<String>> {
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
pub(super) fn answered(
    spool: &Spool,
    m: &Message,
    said: &Said,
    from: &str,
    now: Timestamp,
) -> Result<String> {
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
) -> std::result::Result<usize, Error> {
    if defaults.trim().is_empty() {
        return Ok(0);
    }
    let doc: toml_edit::DocumentMut = defaults.parse()?;
    let path = spool.config_path();
    let mut text = std::fs::read_to_string(&path).map_err(|source| Error::ReadConfig {
        path: path.clone(),
        source,
    })?;
    let mut n = 0;
    for (table, item) in doc.iter() {
        if !["queue", "throttle", "registration"].contains(&table) {
            return Err(Error::NotPermitted {
                table: table.to_string(),
            });
        }
        let t = item.as_table().ok_or_else(|| Error::NotTable {
            table: table.to_string(),
        })?;
        for (key, v) in t.iter() {
            if table == "registration" && key == "registrar" {
                return Err(Error::Registrar);
            }
            let v = v.as_value().ok_or_else(|| Error::NotValue {
                table: table.to_string(),
                key: key.to_string(),
            })?;
            text = crate::config::edit(&text, table, key, Some(v.clone())).map_err(|e| {
                Error::Config {
                    reason: e.to_string(),
                }
            })?;
            n += 1;
        }
    }
    Config::parse(&text).map_err(|e| Error::Check {
        reason: e.to_string(),
    })?;
    let dir = spool.root();
    durable::write_durable(
        &spool.dir(Area::Tmp),
        dir,
        crate::config::FILE_NAME,
        text.as_bytes(),
        now.as_micros(),
    )?;
    Ok(n)
}
