//! Admission and eviction when a new message does not fit (SPEC.md section 5).
//!
//! Pure: a function of the outbound entries, the limits, the new message and
//! `now`, returning a plan the spool applies. The plan is made in full before
//! anything is discarded, so a message that is rejected in the end costs the
//! queue nothing but messages that had expired anyway.

use super::entry::EntryName;
use super::settings::{Limit, QueueLimits};
use crate::message::{Persistence, Precedence};
use crate::time::Timestamp;

/// Why an entry is discarded to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Step 1: the oldest message whose expiry has passed.
    Expired,
    /// Step 2: the oldest bulk message of normal persistence.
    OldestBulk,
    /// Step 4: for an urgent newcomer, the oldest normal message of normal persistence.
    OldestNormalForUrgent,
}

impl Rule {
    pub fn describe(self) -> &'static str {
        match self {
            Rule::Expired => "oldest expired message",
            Rule::OldestBulk => "oldest bulk message of normal persistence",
            Rule::OldestNormalForUrgent => {
                "oldest normal message of normal persistence, for an urgent message"
            }
        }
    }
}

/// Which limit a decision was made against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Total,
    Precedence(Precedence),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Total => f.write_str("[queue]"),
            Scope::Precedence(p) => write!(f, "[queue.{p}]"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eviction {
    /// Index into the entries given to [`plan`].
    pub index: usize,
    pub rule: Rule,
    pub scope: Scope,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub scope: Scope,
    pub limit: Limit,
    /// Step 3 (a bulk newcomer) or step 5 (nothing more may be discarded).
    pub new_is_bulk: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Admit {
        evict: Vec<Eviction>,
    },
    /// `evict` holds expired entries only.
    Reject {
        evict: Vec<Eviction>,
        rejection: Rejection,
    },
}

/// Decides whether `new` may join `entries` under `limits`, and what must be
/// discarded for it. The new message must fit its precedence's limit
/// (counting only that precedence) and the total.
pub fn plan(entries: &[EntryName], new: &EntryName, limits: &QueueLimits, now: Timestamp) -> Plan {
    let mut gone = vec![false; entries.len()];
    let mut evict = Vec::new();
    let scopes = [
        (
            Scope::Precedence(new.precedence),
            limits.for_precedence(new.precedence),
        ),
        (Scope::Total, limits.total()),
    ];
    for (scope, limit) in scopes {
        if limit.is_unlimited() {
            continue;
        }
        let in_scope = |e: &EntryName| match scope {
            Scope::Total => true,
            Scope::Precedence(p) => e.precedence == p,
        };
        // What the scope would hold with the newcomer; kept up to date as
        // entries are planned away (one pass, however many are evicted).
        let (mut count, mut bytes) = entries
            .iter()
            .zip(&gone)
            .filter(|(e, g)| !**g && in_scope(e))
            .fold((1u64, new.size), |(c, b), (e, _)| (c + 1, b + e.size));
        loop {
            if limit.admits(count, bytes) {
                break;
            }
            let oldest = |pred: &dyn Fn(&EntryName) -> bool| {
                entries
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| !gone[*i] && in_scope(e) && pred(e))
                    .min_by_key(|(_, e)| e.age_key())
                    .map(|(i, _)| i)
            };
            let normal_persistence = |e: &EntryName| e.persistence == Persistence::Normal;
            let victim = if let Some(i) = oldest(&|e| e.is_expired(now)) {
                Some((i, Rule::Expired))
            } else if let Some(i) =
                oldest(&|e| e.precedence == Precedence::Bulk && normal_persistence(e))
            {
                Some((i, Rule::OldestBulk))
            } else if new.precedence == Precedence::Bulk {
                None
            } else if new.precedence == Precedence::Urgent {
                oldest(&|e| e.precedence == Precedence::Normal && normal_persistence(e))
                    .map(|i| (i, Rule::OldestNormalForUrgent))
            } else {
                None
            };
            match victim {
                Some((index, rule)) => {
                    gone[index] = true;
                    count -= 1;
                    bytes -= entries[index].size;
                    evict.push(Eviction { index, rule, scope });
                }
                None => {
                    evict.retain(|e| e.rule == Rule::Expired);
                    return Plan::Reject {
                        evict,
                        rejection: Rejection {
                            scope,
                            limit,
                            new_is_bulk: new.precedence == Precedence::Bulk,
                        },
                    };
                }
            }
        }
    }
    Plan::Admit { evict }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageId;
    use crate::units::Size;

    const NOW: i64 = 1_000_000;

    /// `spec` is "PS:created:size[:x]" with x meaning expired.
    fn entry(i: u64, spec: &str) -> EntryName {
        let f: Vec<&str> = spec.split(':').collect();
        let mut ps = f[0].chars();
        EntryName {
            arrival: i,
            id: MessageId::parse(&format!("m{i}")).unwrap(),
            precedence: Precedence::from_letter(ps.next().unwrap()).unwrap(),
            persistence: Persistence::from_letter(ps.next().unwrap()).unwrap(),
            addressed: false,
            created: Timestamp::from_secs(f[1].parse().unwrap()),
            expiry: f.get(3).map(|_| Timestamp::from_secs(NOW - 1)),
            size: f[2].parse().unwrap(),
        }
    }

    fn limits(total: u64) -> QueueLimits {
        QueueLimits {
            max_bytes: Some(Size(total)),
            ..QueueLimits::default()
        }
    }

    /// Evicted arrivals with their rules, or the expired arrivals evicted and the rejection.
    type Outcome = Result<Vec<(u64, Rule)>, (Vec<u64>, Rejection)>;

    /// Runs the plan.
    fn check(queue: &[&str], new: &str, limits: QueueLimits) -> Outcome {
        let entries: Vec<EntryName> = queue
            .iter()
            .enumerate()
            .map(|(i, s)| entry(i as u64, s))
            .collect();
        let new = entry(99, new);
        match plan(&entries, &new, &limits, Timestamp::from_secs(NOW)) {
            Plan::Admit { evict } => Ok(evict
                .iter()
                .map(|e| (entries[e.index].arrival, e.rule))
                .collect()),
            Plan::Reject { evict, rejection } => Err((
                evict.iter().map(|e| entries[e.index].arrival).collect(),
                rejection,
            )),
        }
    }

    #[test]
    fn fits_without_eviction() {
        assert_eq!(check(&["nn:1:10"], "nn:2:10", limits(20)), Ok(vec![]));
        assert_eq!(
            check(&["nn:1:10"], "nn:2:10", QueueLimits::default()),
            Ok(vec![])
        );
    }

    #[test]
    fn step1_oldest_expired_goes_first_even_before_bulk() {
        let q = ["bn:1:10", "nn:5:10:x", "nn:3:10:x"];
        assert_eq!(
            check(&q, "nn:9:10", limits(30)),
            Ok(vec![(2, Rule::Expired)])
        );
    }

    #[test]
    fn step2_oldest_bulk_of_normal_persistence() {
        let q = ["bh:1:10", "bn:4:10", "bn:2:10", "nn:1:10"];
        assert_eq!(
            check(&q, "nn:9:10", limits(40)),
            Ok(vec![(2, Rule::OldestBulk)])
        );
    }

    #[test]
    fn step2_repeats_until_it_fits() {
        let q = ["bn:1:10", "bn:2:10", "nn:1:10"];
        assert_eq!(
            check(&q, "nn:9:25", limits(40)),
            Ok(vec![(0, Rule::OldestBulk), (1, Rule::OldestBulk)])
        );
    }

    #[test]
    fn step3_bulk_newcomer_is_rejected_and_nothing_but_expired_is_discarded() {
        let q = ["nn:1:10", "nn:2:10:x", "bh:3:10"];
        let (evicted, r) = check(&q, "bn:9:25", limits(30)).unwrap_err();
        assert_eq!(evicted, vec![1]);
        assert!(r.new_is_bulk);
        assert_eq!(r.scope, Scope::Total);
    }

    #[test]
    fn step4_urgent_newcomer_displaces_oldest_normal_of_normal_persistence() {
        let q = ["nh:1:10", "nn:5:10", "nn:3:10", "un:0:10"];
        assert_eq!(
            check(&q, "un:9:10", limits(40)),
            Ok(vec![(2, Rule::OldestNormalForUrgent)])
        );
    }

    #[test]
    fn step5_normal_newcomer_is_rejected() {
        let q = ["nn:1:10", "un:2:10"];
        let (evicted, r) = check(&q, "nn:9:10", limits(20)).unwrap_err();
        assert!(evicted.is_empty());
        assert!(!r.new_is_bulk);
    }

    #[test]
    fn a_plan_that_ends_in_rejection_discards_no_live_message() {
        // Evicting the bulk message would not make room for 35 bytes.
        let q = ["bn:1:10", "nh:2:10", "uh:3:10"];
        assert!(matches!(check(&q, "un:9:35", limits(40)), Err((ref e, _)) if e.is_empty()));
    }

    #[test]
    fn high_persistence_and_urgent_are_never_evicted() {
        let q = ["bh:1:10", "nh:2:10", "un:3:10"];
        assert!(check(&q, "un:9:10", limits(30)).is_err());
    }

    #[test]
    fn per_precedence_limit_counts_only_that_precedence() {
        let mut l = QueueLimits::default();
        l.bulk.max_messages = Some(2);
        // Plenty of normal messages do not count against the bulk limit...
        assert_eq!(
            check(&["nn:1:1", "nn:2:1", "bn:3:1"], "bn:9:1", l.clone()),
            Ok(vec![])
        );
        // ...but a third bulk message displaces the oldest bulk one.
        assert_eq!(
            check(&["bn:1:1", "nn:2:1", "bn:3:1"], "bn:9:1", l.clone()),
            Ok(vec![(0, Rule::OldestBulk)])
        );
        // An urgent limit can only be met by expiry.
        let mut l = QueueLimits::default();
        l.urgent.max_messages = Some(1);
        let (_, r) = check(&["un:1:1", "nn:2:1"], "un:9:1", l.clone()).unwrap_err();
        assert_eq!(r.scope, Scope::Precedence(Precedence::Urgent));
        assert_eq!(
            check(&["un:1:1:x", "nn:2:1"], "un:9:1", l),
            Ok(vec![(0, Rule::Expired)])
        );
    }

    #[test]
    fn both_limits_must_hold() {
        let mut l = limits(30);
        l.normal.max_bytes = Some(Size(100));
        // Fits the normal limit but not the total: step 2 frees a bulk message.
        assert_eq!(
            check(&["nn:1:10", "bn:2:10", "nn:3:10"], "nn:9:10", l),
            Ok(vec![(1, Rule::OldestBulk)])
        );
    }

    #[test]
    fn oldest_is_by_creation_time_not_arrival() {
        let q = ["bn:7:10", "bn:3:10"];
        assert_eq!(
            check(&q, "nn:9:10", limits(20)),
            Ok(vec![(1, Rule::OldestBulk)])
        );
    }
}
