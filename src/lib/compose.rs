//! What the rs programs are made of: the core (spool, receive pipeline,
//! outbound runner) and the features plugged into its seams, in the order
//! they are asked. This is the one place that names them all; the core
//! names none (ARCHITECTURE.md, "Layers and seams").

use crate::outbound::gate::Gates;
use crate::outbound::kinds::RouteKinds;
use crate::receive::delivery::DeliverySink;
use crate::receive::state::StateBackend;
use crate::receive::{Extension, Extensions};
use crate::spool::Spool;

/// The receive pipeline's extensions, in the order their claims are
/// asked: the map's epochs first (a check), then registration and control
/// (refused or taken before anything else claims a message), bulk
/// transfers, and last the relay's groups and rules.
pub fn extensions() -> Extensions {
    let list: Vec<Box<dyn Extension>> = vec![
        Box::new(crate::spm::claim::Epochs),
        Box::new(crate::infra::claim::Infrastructure),
        Box::new(crate::bulk::claim::Bulk),
        Box::new(crate::relay::claim::Relay),
    ];
    Extensions::new(list)
}

/// Installs the features on a spool just opened: the receive pipeline's
/// extensions, the outbound runner's gates (registration first) and route
/// kinds (the map's `spm:`), the
/// receive state's backend (the shared database, where configured) and the
/// delivery sink (JetStream, where configured).
pub fn install(spool: &mut Spool) {
    spool.install(extensions());
    spool.install(Gates::new(vec![Box::new(crate::infra::gate::Registration)]));
    spool.install(RouteKinds::new(vec![Box::new(crate::spm::transport::Kind)]));
    spool.install(StateBackend(Box::new(crate::shared::plug::Postgres)));
    spool.install(DeliverySink(Box::new(crate::shared::plug::JetStream)));
}

#[cfg(test)]
mod tests {
    //! The decisions of the rs programs: the core and the extensions
    //! `compose` installs, in the specification's order.
    use crate::config::Config;
    use crate::message::{
        Destination, Locator, MessageId, Persistence, Precedence, Qos, Source, Target,
    };
    use crate::message::{Header, Name};
    use crate::receive::decide::{decide, Decision, Facts, Keep, When};
    use crate::receive::Claims;
    use crate::route::Learned;
    use crate::time::Timestamp;
    use std::time::Duration;

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
    fn the_features_hold_under_labels_no_rule_may_take() {
        for label in [crate::infra::LABEL, crate::bulk::LABEL] {
            assert!(label.starts_with(crate::config::RESERVED_LABELS), "{label}");
            let text = format!(
                "site='b'\ncomponent='b.hub'\n[[peer]]\nid='a.host'\n[[rule]]\nname='{label}'\naction='discard'\n"
            );
            let e = Config::parse(&text).unwrap_err().to_string();
            assert!(e.contains("is rs's own: choose another"), "{e}");
        }
    }

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
            (&filtering, classed("debug-x", "s"), "", "discard: rule 1"),
            (&filtering, classed("debug-x", "s"), "id", "duplicate"),
            (&filtering, classed("c", "nightly"), "", "forward up.hub"),
            (&filtering, classed("route-c", "s"), "", "forward c.host"),
            (
                &filtering,
                classed("c", "heartbeat"),
                "",
                "aggregate: rule 4",
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
                mime: None,
                signed: true,
            };
            // The extensions of the rs programs, in their order.
            let claims: Vec<Box<dyn Claims>> = vec![
                Box::new(crate::spm::claim::EpochCheck {
                    epoch: known.contains("served").then_some(2),
                }),
                Box::new(crate::infra::claim::Batch {
                    authority: crate::infra::Authority::default(),
                    config,
                }),
                Box::new(crate::bulk::claim::Batch { config }),
                Box::new(crate::relay::claim::Batch { config }),
            ];
            let got = match decide(&f, &when, config, &learned, &claims) {
                Decision::Refuse { reason } => format!("quarantine: {reason}"),
                Decision::NotTaken { code, reason, .. } => format!("{code}: {reason}"),
                Decision::Hold {
                    label,
                    keep: Keep::Aggregate,
                    ..
                } => format!("aggregate: {label}"),
                Decision::Hold { label, .. } => format!("hold: {label}"),
                Decision::Deliver => "deliver".to_string(),
                Decision::Duplicate { by_origin_key } if by_origin_key => "origin key".into(),
                Decision::Duplicate { .. } => "duplicate".into(),
                Decision::Forward { peer, .. } => format!("forward {peer}"),
                Decision::Reject { reason, remember } if remember => format!("reject: {reason}"),
                Decision::Reject { reason, .. } => format!("refuse: {reason}"),
                Decision::Discard { label } => format!("discard: {label}"),
                Decision::Expand { targets } => format!("expand: {targets:?}"),
            };
            let (kind, detail) = expected.split_once(": ").unwrap_or((expected, ""));
            assert!(
                got.starts_with(kind) && got.contains(detail),
                "{header:?} ({known}): {got}, expected {expected}"
            );
        }
    }
}
