//! The decision step of the receive path, pure: given what is known of one
//! inbound message (looked up beforehand) and the time, what to do with it.
//!
//! The order of the rules is the specification's; the core knows steps 1,
//! 2 and 5, and asks the extensions installed on the spool (see
//! `extension`) at the points between:
//! 1. a message whose ID was accepted before is a duplicate (acknowledged
//!    again, so a lost acknowledgement heals); then the extensions' checks
//!    (one sent through a service point map entry of another epoch than
//!    the service's here is answered `epoch-mismatch`, nothing kept);
//! 2. one that cannot be proven new, or is worthless, is refused and its
//!    origin told: it expired before it arrived, it claims to be created
//!    beyond `max_clock_skew` in the future, or it was created at or before
//!    the duplicate memory's horizon (`spool::seen`);
//! 3. the extensions' claims before routing (a transfer to a group
//!    received here; a message to a group expanded into copies, each then
//!    decided on its own);
//! 4. the extensions' claims given the next hop (infrastructure messages
//!    refused or taken; transfers; the relay's rules: discard, divert,
//!    aggregate, forward to a named peer);
//! 5. else its next hop decides the rest: here (unless its origin key was
//!    delivered already: a redundant sender's report), a peer (never the
//!    one it came from; "retry later" while this relay is over its
//!    throttle), or nowhere (refused, origin told).

pub use super::decision::{Decision, Facts, Keep, When};
use super::extension::{Claim, Claims};
use crate::config::Config;
use crate::message::{Header, Locator, Name, ResponseStatus, Target};
use crate::route::{self, Learned, NextHop};

/// Decides what to do with one message, asking the extensions' `claims`
/// in order. See the module documentation.
pub fn decide(
    f: &Facts<'_>,
    when: &When,
    config: &Config,
    learned: &Learned,
    claims: &[Box<dyn Claims + '_>],
) -> Decision {
    if f.id_seen {
        return Decision::Duplicate {
            by_origin_key: false,
        };
    }
    if let Some(d) = claims.iter().find_map(|c| c.check(f)) {
        return d;
    }
    if let Some(reason) = unprovable(f.header, when) {
        return Decision::Reject {
            reason,
            remember: false,
        };
    }
    let claimed = claims
        .iter()
        .find_map(|c| c.before_routing(f, when, learned))
        .or_else(|| {
            let hop = route::next_hop(f.header, config, learned);
            claims
                .iter()
                .find_map(|c| c.after_routing(f, when, &hop, learned))
        });
    let forced = match claimed {
        Some(Claim::Decided(d)) => return d,
        Some(Claim::Route { peer }) => Some(peer),
        None => None,
    };
    let routed = route::next_hop(f.header, config, learned);
    // A peer chosen by a rule is kept with the message only where routing
    // would send it elsewhere.
    let pinned = forced
        .as_ref()
        .is_some_and(|p| routed != NextHop::Peer(p.clone()));
    let hop = match forced {
        Some(p) => NextHop::Peer(p),
        None => routed,
    };
    routed_decision(f, config, learned, hop, pinned)
}

/// What routing decides for a message no extension claimed (or one a
/// rule sent to another peer).
fn routed_decision(
    f: &Facts<'_>,
    config: &Config,
    learned: &Learned,
    hop: NextHop,
    pinned: bool,
) -> Decision {
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
            Some(why) => Decision::NotTaken {
                status: ResponseStatus::RejectedRetry,
                code: "retry",
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
    use crate::message::{Destination, Locator, MessageId, Persistence, Precedence, Qos, Target};
    use crate::time::Timestamp;
    use std::time::Duration;

    fn name(s: &str) -> Name {
        Name::new("n", s).unwrap()
    }

    /// Claims everything it is asked about at one point, to show the order.
    struct At(&'static str);

    impl Claims for At {
        fn check(&self, _f: &Facts<'_>) -> Option<Decision> {
            (self.0 == "check").then(|| Decision::Refuse {
                reason: "check".into(),
            })
        }
        fn before_routing(&self, _f: &Facts<'_>, _w: &When, _l: &Learned) -> Option<Claim> {
            (self.0 == "before").then(|| {
                Claim::Decided(Decision::Refuse {
                    reason: "before".into(),
                })
            })
        }
        fn after_routing(
            &self,
            _f: &Facts<'_>,
            _w: &When,
            hop: &NextHop,
            _l: &Learned,
        ) -> Option<Claim> {
            match self.0 {
                "after" => Some(Claim::Decided(Decision::Refuse {
                    reason: format!("after {hop:?}"),
                })),
                "route" => Some(Claim::Route {
                    peer: name("c.host"),
                }),
                _ => None,
            }
        }
    }

    #[test]
    fn the_core_asks_its_extensions_between_its_own_steps() {
        let config = Config::parse(
            "site='b'\ncomponent='b.hub'\n[[peer]]\nid='a.host'\n[[peer]]\nid='c.host'\n",
        )
        .unwrap();
        let t = |s: i64| Timestamp::from_secs(1_795_478_400 + s);
        let header = |created: i64, to: &str| Header {
            id: MessageId::parse("m1").unwrap(),
            created: t(created),
            class: name("c"),
            subclass: name("s"),
            locator: Locator::Destination(Destination {
                targets: vec![Target::Group(name(to))],
                qos: Qos {
                    expiry: None,
                    precedence: Precedence::Normal,
                    persistence: Persistence::Normal,
                },
            }),
            in_reply_to: None,
            origin_key: None,
            epoch: None,
            routing: vec![],
        };
        let when = When {
            now: t(100),
            receive_time: t(100),
            horizon: Some(t(10)),
            max_clock_skew: Duration::from_secs(60),
            minute_of_day: 0,
        };
        let from = name("a.host");
        let learned = Learned::default();
        let decide_with = |h: &Header, id_seen: bool, at: &'static str| {
            let f = Facts {
                header: h,
                from: &from,
                id_seen,
                origin_key_seen: false,
                relay_stopped: None,
                kind: "event",
                severity: None,
                mime: None,
                signed: true,
            };
            let claims: Vec<Box<dyn Claims>> = vec![Box::new(At(at))];
            decide(&f, &when, &config, &learned, &claims)
        };
        let new = header(50, "ops");
        let old = header(5, "ops");
        let refused = |r: &str| Decision::Refuse { reason: r.into() };
        // No extension answers: a group is unknown to the core.
        assert!(
            matches!(decide_with(&new, false, "none"), Decision::Reject { reason, .. } if reason.contains("group ops"))
        );
        // A duplicate is the core's before any extension is asked; the
        // check comes before the proof that a message is new, the claims
        // after it.
        assert!(matches!(
            decide_with(&new, true, "check"),
            Decision::Duplicate { .. }
        ));
        assert_eq!(decide_with(&old, false, "check"), refused("check"));
        assert!(matches!(
            decide_with(&old, false, "before"),
            Decision::Reject {
                remember: false,
                ..
            }
        ));
        assert_eq!(decide_with(&new, false, "before"), refused("before"));
        assert!(
            matches!(decide_with(&new, false, "after"), Decision::Refuse { reason } if reason.starts_with("after Unknown"))
        );
        // A route chosen by an extension is kept with the message.
        assert_eq!(
            decide_with(&new, false, "route"),
            Decision::Forward {
                peer: name("c.host"),
                pinned: true
            }
        );
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
