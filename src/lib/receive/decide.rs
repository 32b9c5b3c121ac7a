//! The decision step of the receive path, pure: given what is known of one
//! inbound message (looked up beforehand) and the time, what to do with it.
//!
//! The order of the rules is the specification's:
//! 1. a message whose ID was accepted before is a duplicate (acknowledged
//!    again, so a lost acknowledgement heals); one sent through a service
//!    point map entry of another epoch than the service's here is answered
//!    `epoch-mismatch` (nothing kept: the sender fetches a fresh map);
//! 2. one that cannot be proven new, or is worthless, is refused and its
//!    origin told: it expired before it arrived, it claims to be created
//!    beyond `max_clock_skew` in the future, or it was created at or before
//!    the duplicate memory's horizon (`spool::seen`);
//! 3. a message addressed to a group configured here (`[[group]]`) is
//!    expanded: one copy per member (and per other destination), each
//!    then decided on its own; rs takes its own infrastructure messages
//!    (registrations, answers, heartbeats: `infra::takes`);
//! 4. the relay's rules (`[[rule]]`, in order; see `filter`) may discard
//!    it (acknowledged as accepted, counted), divert it to a handler,
//!    aggregate it, or forward it to a named peer;
//! 5. else its next hop decides the rest: here (unless its origin key was
//!    delivered already: a redundant sender's report), a peer (never the
//!    one it came from; "retry later" while this relay is over its
//!    throttle), or nowhere (refused, origin told).
//!
//! Filters, aggregation and control messages (the relay, registration)
//! plug in here as further rules and decisions.

use std::time::Duration;

use crate::config::Config;
use crate::filter::{self, Action};
use crate::message::{Header, Locator, Name, Target};
use crate::route::{self, Learned, NextHop};
use crate::time::Timestamp;

/// What is known of one message before deciding, besides its header.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub header: &'a Header,
    /// The peer whose route carried it.
    pub from: &'a Name,
    /// Its ID is remembered, or came earlier in this batch.
    pub id_seen: bool,
    /// Its origin key (if it has one) was delivered here already, or came
    /// earlier in this batch.
    pub origin_key_seen: bool,
    /// Why this site, as a relay, takes nothing onward now (it is over its
    /// throttle), if it is.
    pub relay_stopped: Option<&'a str>,
    /// The content's kind (`alarm`, `event`, `data`, ...) and severity.
    pub kind: &'a str,
    pub severity: Option<&'a str>,
    /// It is part of a bulk transfer (a request, an answer, a chunk).
    pub bulk: bool,
    /// The epoch of the service this site serves (`[spm] serves`), when
    /// known.
    pub service_epoch: Option<u64>,
    /// Its envelope was signed by the peer's key (or the peer is not
    /// protected).
    pub signed: bool,
    /// Whose control messages and registration answers this site obeys.
    pub authority: &'a crate::infra::Authority,
}

/// The receiver's time, as the duplicate memory sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct When {
    /// This run's clock.
    pub now: Timestamp,
    /// The later of the clock and the evidence of accepted creation times.
    pub receive_time: Timestamp,
    /// Newest creation time among forgotten IDs.
    pub horizon: Option<Timestamp>,
    pub max_clock_skew: Duration,
    /// Minutes since local midnight (for rules' windows).
    pub minute_of_day: u32,
}

/// What to do with one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Seen before: drop it, acknowledge it again. `by_origin_key` says it
    /// is a redundant sender's report of an event delivered already (its
    /// own ID is then remembered too).
    Duplicate { by_origin_key: bool },
    /// This site is its destination: deliver it into the Maildir.
    Deliver,
    /// Queue it toward `peer`; `pinned` when a rule chose the peer (the
    /// choice is kept with the message: routing would send it elsewhere).
    Forward { peer: Name, pinned: bool },
    /// Not now: the sender keeps its copy and retries (this relay is over
    /// its throttle). Nothing is kept or remembered.
    Retry { reason: String },
    /// Sent through a service point map entry of another epoch than the
    /// service's here: the sender fetches a fresh map and sends again.
    /// Nothing is kept or remembered.
    EpochMismatch { reason: String },
    /// Discard it on purpose (rule `rule`, the index into `[[rule]]`):
    /// acknowledged as accepted, remembered, counted, never passed on.
    Discard { rule: usize },
    /// Addressed to a group configured here: one copy to each of these
    /// (members, and the message's other destinations), decided each.
    Expand { targets: Vec<Target> },
    /// Hand it to rule `rule`'s handler.
    Divert { rule: usize },
    /// Gather it into rule `rule`'s next aggregate.
    Aggregate { rule: usize },
    /// rs takes it itself (a registration, an answer, a heartbeat: see
    /// `infra`).
    Infrastructure,
    /// Not from whom it may come (SPEC.md section 13a: a control message
    /// or registration answer not made by this site's registrar, or going
    /// up where it may only come down): kept in quarantine with the reason,
    /// refused, its origin told.
    Refuse { reason: String },
    /// Part of a bulk transfer that this site handles (see `bulk`): at its
    /// destination, or a request or answer passing through.
    Bulk,
    /// Refuse it for good, with the reason; its origin is told.
    /// `remember` says whether its ID is remembered (so a retransmission is
    /// a duplicate): not for messages refused as not provably new, which
    /// would be refused again anyway.
    Reject { reason: String, remember: bool },
}

/// Decides what to do with one message. See the module documentation.
pub fn decide(f: &Facts<'_>, when: &When, config: &Config, learned: &Learned) -> Decision {
    if f.id_seen {
        return Decision::Duplicate {
            by_origin_key: false,
        };
    }
    if let (Some(sent), Some(here)) = (f.header.epoch, f.service_epoch) {
        if sent != here {
            return Decision::EpochMismatch {
                reason: format!(
                    "sent through a map entry of epoch {sent}; the service is at epoch {here} here: fetch a fresh map"
                ),
            };
        }
    }
    if let Some(reason) = unprovable(f.header, when) {
        return Decision::Reject {
            reason,
            remember: false,
        };
    }
    // A transfer to a group configured here is received here, once, and
    // sent on to each member from here (see `bulk`).
    if f.bulk && crate::bulk::group_here(f.header, config).is_some() {
        return Decision::Bulk;
    }
    if let Some(targets) = expansion(f.header, config) {
        return Decision::Expand { targets };
    }
    let hop = route::next_hop(f.header, config, learned);
    if let Some(reason) =
        crate::infra::refused(f.header, f.from, &hop, f.signed, f.authority, config)
    {
        return Decision::Refuse { reason };
    }
    if crate::infra::takes(f.header, &hop, config) {
        return Decision::Infrastructure;
    }
    if f.bulk {
        let passing = matches!(&hop, NextHop::Peer(p) if p != f.from);
        if crate::bulk::takes(f.kind, &hop) && (!passing || f.relay_stopped.is_none()) {
            return Decision::Bulk;
        }
    }
    let rule = filter::first_match(
        &config.rules,
        &filter::Facts {
            header: f.header,
            kind: f.kind,
            severity: f.severity,
            minute_of_day: when.minute_of_day,
        },
    );
    let forced = match rule {
        Some((i, r)) => match r.action {
            Action::Discard => return Decision::Discard { rule: i },
            Action::Divert => return Decision::Divert { rule: i },
            Action::Aggregate => return Decision::Aggregate { rule: i },
            Action::Forward => r.peer.clone(),
        },
        None => None,
    };
    let routed = route::next_hop(f.header, config, learned);
    // A rule's peer is kept with the message only where routing would
    // send it elsewhere.
    let pinned = forced
        .as_ref()
        .is_some_and(|p| routed != NextHop::Peer(p.clone()));
    let hop = match forced {
        Some(p) => NextHop::Peer(p),
        None => routed,
    };
    match hop {
        NextHop::Local if f.origin_key_seen => Decision::Duplicate {
            by_origin_key: true,
        },
        NextHop::Local => Decision::Deliver,
        NextHop::Peer(p) if p == *f.from => Decision::Reject {
            reason: match unknown_here(f.header, config, learned) {
                Some(c) => format!(
                    "component {c} is unknown at {}: no peer of it leads there (it came from {p}, which sent it here)",
                    config.component
                ),
                None => format!("its next hop would be {p}, the peer it came from"),
            },
            remember: true,
        },
        NextHop::Peer(p) => match f.relay_stopped {
            Some(why) => Decision::Retry {
                reason: format!("{why}: this relay takes nothing onward now"),
            },
            None => Decision::Forward { peer: p, pinned },
        },
        NextHop::Unknown(reason) => Decision::Reject {
            reason,
            remember: true,
        },
    }
}

/// The component a back-channel message is addressed to, when nothing
/// here leads to it (routing falls back to the upstream peer).
fn unknown_here<'h>(h: &'h Header, config: &Config, learned: &Learned) -> Option<&'h Name> {
    let Locator::Destination(d) = &h.locator else {
        return None;
    };
    match d.targets.first() {
        Some(Target::Component(c)) if route::toward(c, config, learned).is_none() => Some(c),
        _ => None,
    }
}

/// The destinations a message addressed to a group configured here is
/// copied to: each member of such groups, and each other destination;
/// `None` when no destination is a group configured here.
fn expansion(h: &Header, config: &Config) -> Option<Vec<Target>> {
    let Locator::Destination(d) = &h.locator else {
        return None;
    };
    let group = |g: &Name| config.groups.iter().find(|c| c.name == *g);
    if !d
        .targets
        .iter()
        .any(|t| matches!(t, Target::Group(g) if group(g).is_some()))
    {
        return None;
    }
    let mut out: Vec<Target> = Vec::new();
    for t in &d.targets {
        let more: Vec<Target> = match t {
            Target::Group(g) => match group(g) {
                Some(c) => c.members.iter().cloned().map(Target::Component).collect(),
                None => vec![t.clone()],
            },
            Target::Component(_) => vec![t.clone()],
        };
        for m in more {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    Some(out)
}

/// The ID of the copy of message `id` for `target`: derived, so a group
/// message expanded twice makes the same copies.
pub fn copy_id(id: &crate::message::MessageId, target: &Target) -> crate::message::MessageId {
    use sha2::{Digest, Sha256};
    let name = match target {
        Target::Component(c) => format!("c:{c}"),
        Target::Group(g) => format!("g:{g}"),
    };
    let d = Sha256::digest(format!("{id}\n{name}").as_bytes());
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    let base: String = id.as_str().chars().take(60).collect();
    crate::message::MessageId::parse(&format!("{base}-{hex}")).unwrap_or_else(|_| id.clone())
}

/// The message a copy made by [`copy_id`] was copied from, when `id` has
/// the shape of a copy of a minted ID (the original, itself ending in 16
/// hex digits, then `-` and 16 hex digits).
pub fn original_of(id: &str) -> Option<&str> {
    fn tail(s: &str) -> Option<&str> {
        s.rsplit_once('-')
            .filter(|(_, hex)| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|(base, _)| base)
    }
    let base = tail(id)?;
    tail(base)?;
    crate::message::MessageId::parse(base)
        .is_ok()
        .then_some(base)
}

/// Why a new message cannot be taken, whatever its route.
fn unprovable(h: &Header, when: &When) -> Option<String> {
    if let Some(expiry) = h.qos().expiry.filter(|e| *e <= when.now) {
        return Some(format!("it expired at {expiry}, before it arrived here"));
    }
    if h.created > when.receive_time.saturating_add(when.max_clock_skew) {
        return Some(format!(
            "it was created at {}, later than this site's time {} by more than max_clock_skew: the clock of its sender is wrong",
            h.created, when.receive_time
        ));
    }
    match when.horizon {
        Some(z) if h.created <= z => Some(format!(
            "it was created at {}, at or before {z}, the newest creation time among the IDs this site has forgotten: it cannot be proven new, so it is not delivered (raise [receive] dedupe_retention to remember IDs longer)",
            h.created
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{
        Destination, Locator, MessageId, Persistence, Precedence, Qos, Source, Target,
    };

    fn name(s: &str) -> Name {
        Name::new("n", s).unwrap()
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_secs(1_795_478_400 + secs)
    }

    /// A forward-path message from `source`, created at `created`,
    /// expiring at `expiry`.
    fn forward(source: &str, created: i64, expiry: Option<i64>) -> Header {
        Header {
            id: MessageId::parse("m1").unwrap(),
            created: t(created),
            class: name("c"),
            subclass: name("s"),
            locator: Locator::Source(Source {
                component: name(source),
                component_type: name("t"),
                version: name("1"),
                qos: Qos {
                    expiry: expiry.map(t),
                    precedence: Precedence::Normal,
                    persistence: Persistence::Normal,
                },
            }),
            in_reply_to: None,
            origin_key: None,
            epoch: None,
            routing: vec![],
        }
    }

    fn to_group(group: &str) -> Header {
        let mut h = to("x");
        h.locator = Locator::Destination(Destination {
            targets: vec![Target::Group(name(group))],
            qos: Qos {
                expiry: None,
                precedence: Precedence::Normal,
                persistence: Persistence::Normal,
            },
        });
        h
    }

    fn to(component: &str) -> Header {
        let mut h = forward("x", 9 * DAY, None);
        h.locator = Locator::Destination(Destination {
            targets: vec![Target::Component(name(component))],
            qos: Qos {
                expiry: None,
                precedence: Precedence::Normal,
                persistence: Persistence::Normal,
            },
        });
        h
    }

    const DAY: i64 = 86_400;

    #[test]
    fn decisions_in_the_specifications_order() {
        let top = Config::parse(
            "site='b'\ncomponent='b.hub'\n[[peer]]\nid='a.host'\n[[peer]]\nid='c.host'\n",
        )
        .unwrap();
        let relay = Config::parse(
            "site='b'\ncomponent='b.hub'\n[[peer]]\nid='a.host'\n[[peer]]\nid='up.hub'\nupstream=true\n",
        )
        .unwrap();
        let filtering = Config::parse(
            "site='b'\ncomponent='b.hub'\n[[peer]]\nid='a.host'\n[[peer]]\nid='c.host'\n\
             [[peer]]\nid='up.hub'\nupstream=true\n\
             [[rule]]\nclass='debug*'\naction='discard'\n\
             [[rule]]\nsubclass='nightly'\nwindow='00:00-06:00'\naction='discard'\n\
             [[rule]]\nclass='route-c'\naction='forward'\npeer='c.host'\n\
             [[rule]]\nsubclass='heartbeat'\naction='aggregate'\ncount=10\n\
             [[group]]\nname='ops'\nmembers=['a.host', 'c.host', 'b.hub']\n",
        )
        .unwrap();
        let classed = |class: &str, subclass: &str| {
            let mut h = forward("a.host", 9 * DAY, None);
            h.class = name(class);
            h.subclass = name(subclass);
            h
        };
        let when = When {
            now: t(10 * DAY),
            receive_time: t(10 * DAY),
            horizon: Some(t(2 * DAY)),
            max_clock_skew: Duration::from_secs(DAY as u64),
            minute_of_day: 12 * 60,
        };
        let learned = Learned::default();
        let from = name("a.host");
        let stop = "throttle max_messages_per_hour = 1 reached (1 sent)";
        // (configuration, message, what is known: `id` its ID seen, `key`
        // its origin key seen, `stop` the relay over its throttle) and what
        // the decision says, in few words: `deliver`, `duplicate`, `origin
        // key`, `forward PEER`, `retry: REASON`, `reject: REASON` (the ID
        // remembered) or `refuse: REASON` (not remembered).
        let cases = [
            (&top, forward("a.host", 9 * DAY, None), "", "deliver"),
            (&top, forward("a.host", 9 * DAY, None), "id", "duplicate"),
            (&top, forward("a.host", DAY, None), "id", "duplicate"),
            (&top, forward("a.host", 9 * DAY, None), "key", "origin key"),
            (
                &top,
                forward("a.host", DAY, None),
                "",
                "refuse: cannot be proven new",
            ),
            (
                &top,
                forward("a.host", 2 * DAY, None),
                "",
                "refuse: cannot be proven new",
            ),
            (
                &top,
                forward("a.host", 9 * DAY, Some(10 * DAY)),
                "",
                "refuse: expired",
            ),
            (&top, forward("a.host", 12 * DAY, None), "", "refuse: clock"),
            (
                &top,
                forward("a.host", 10 * DAY + 3600, None),
                "",
                "deliver",
            ),
            (&top, forward("a.host", 9 * DAY, None), "stop", "deliver"),
            (
                &relay,
                forward("a.host", 9 * DAY, None),
                "",
                "forward up.hub",
            ),
            (
                &relay,
                forward("a.host", 9 * DAY, None),
                "stop",
                "retry: max_messages_per_hour",
            ),
            (
                &relay,
                forward("a.host", 9 * DAY, None),
                "id stop",
                "duplicate",
            ),
            (&top, to("c.host"), "", "forward c.host"),
            (&top, to("a.host"), "", "reject: the peer it came from"),
            (&top, to("z.nowhere"), "", "reject: no route"),
            (&filtering, classed("debug-x", "s"), "", "discard: rule 0"),
            (&filtering, classed("debug-x", "s"), "id", "duplicate"),
            (&filtering, classed("c", "nightly"), "", "forward up.hub"),
            (&filtering, classed("route-c", "s"), "", "forward c.host"),
            (
                &filtering,
                classed("c", "heartbeat"),
                "",
                "aggregate: rule 3",
            ),
            (&filtering, classed("debug-x", "s"), "", "discard"),
            (&filtering, to_group("ops"), "", "expand: [Component(Name(\"a.host\")), Component(Name(\"c.host\")), Component(Name(\"b.hub\"))]"),
            (&filtering, to_group("ops"), "id", "duplicate"),
            (&filtering, to_group("elsewhere"), "", "reject: no route to group elsewhere"),
            (&top, at_epoch(to("c.host"), 1), "served", "epoch-mismatch: epoch 1; the service is at epoch 2"),
            (&top, at_epoch(to("c.host"), 1), "served id", "duplicate"),
            (&top, at_epoch(to("c.host"), 2), "served", "forward c.host"),
            (&top, to("c.host"), "served", "forward c.host"),
            (&top, at_epoch(to("c.host"), 1), "", "forward c.host"),
        ];
        fn at_epoch(mut h: Header, epoch: u64) -> Header {
            h.epoch = Some(epoch);
            h
        }
        for (config, header, known, expected) in cases {
            let f = Facts {
                header: &header,
                from: &from,
                id_seen: known.contains("id"),
                origin_key_seen: known.contains("key"),
                relay_stopped: known.contains("stop").then_some(stop),
                kind: "event",
                severity: Some("info"),
                bulk: false,
                service_epoch: known.contains("served").then_some(2),
                signed: true,
                authority: &crate::infra::Authority::default(),
            };
            let got = match decide(&f, &when, config, &learned) {
                Decision::Refuse { reason } => format!("quarantine: {reason}"),
                Decision::EpochMismatch { reason } => format!("epoch-mismatch: {reason}"),
                Decision::Infrastructure => "infrastructure".into(),
                Decision::Bulk => "bulk".into(),
                Decision::Deliver => "deliver".to_string(),
                Decision::Duplicate { by_origin_key } if by_origin_key => "origin key".into(),
                Decision::Duplicate { .. } => "duplicate".into(),
                Decision::Forward { peer, .. } => format!("forward {peer}"),
                Decision::Retry { reason } => format!("retry: {reason}"),
                Decision::Reject { reason, remember } if remember => format!("reject: {reason}"),
                Decision::Reject { reason, .. } => format!("refuse: {reason}"),
                Decision::Discard { rule } => format!("discard: rule {rule}"),
                Decision::Divert { rule } => format!("divert: rule {rule}"),
                Decision::Aggregate { rule } => format!("aggregate: rule {rule}"),
                Decision::Expand { targets } => format!("expand: {targets:?}"),
            };
            let (kind, detail) = expected.split_once(": ").unwrap_or((expected, ""));
            assert!(
                got.starts_with(kind) && got.contains(detail),
                "{header:?} ({known}): {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn a_copy_names_its_original() {
        let id = MessageId::parse("20261124T100000-000000-1fab2de850fd5440").unwrap();
        let copy = copy_id(&id, &Target::Component(name("b.host")));
        assert_eq!(original_of(copy.as_str()), Some(id.as_str()));
        assert_eq!(original_of(id.as_str()), None);
        assert_eq!(original_of("m1-xyz"), None);
    }
}
