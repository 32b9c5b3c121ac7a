//! Heartbeats and what the registrar heard. A component's heartbeat
//! carries its counts and the status its children last reported; a relay
//! that registers keeps its children's heartbeats (nesting their status in
//! its own) instead of forwarding them. What is heard is recorded per
//! component in `state/heard/COMPONENT` (newer news only), with the
//! registrations in `state/registered/` beside it; `rs-relay silent`
//! reads both through [`heard`]. A relay's heartbeat speaks only for the
//! children that registered through it or are routed behind its carrier
//! ([`nests`]).

use super::heard::{heard, record_heard, registered_dir};

use super::document::{xml_attr, Said};
use super::state::State;
use crate::message::{Message, MessageId, Name, Precedence};
use crate::route::NextHop;
use crate::spool::{Area, Result, Spool};
use crate::time::Timestamp;

/// Removes the previous heartbeat if it is still queued and nobody is
/// sending it: a site offline for a week sends one heartbeat when it comes
/// back, not one per interval.
pub(super) fn supersede(spool: &Spool, previous: Option<MessageId>, now: Timestamp) -> Result<()> {
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
pub(super) fn status_xml(spool: &Spool, st: &State, now: Timestamp) -> Result<String> {
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

/// A heartbeat from `origin` (carried by peer `from`): at the registrar
/// its registration ID is checked first ([`login`]); then the news of the
/// component and of the children it may speak for is recorded. Returns
/// what was heard, for the log.
pub(super) fn heard_from(
    spool: &Spool,
    m: &Message,
    said: &Said,
    from: &str,
    now: Timestamp,
) -> Result<String> {
    let h = &m.header;
    let origin = h.origin().map(|o| o.to_string()).unwrap_or_default();
    if spool.config().registrar.enabled {
        if let Some(why) = super::registration::login(spool, &origin, said, now)? {
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
