//! What a relay does with the messages its rules hold once they are in
//! custody (SPEC.md section 9): handlers run on diverted messages
//! (`divert`), aggregates made of gathered ones (`aggregate`), and what
//! such a message becomes handed on like any other (`pass_on`), and the
//! origins of what cannot be delivered told (`outbound::untold`). No daemon:
//! every command that receives or sends runs [`tend`] (through
//! `custody::tend`), and `rs-relay serve` runs it every few seconds.
//!
//! Architecture invariant: a held message leaves `divert/` or
//! `aggregate/` only after what replaces it is durable (the rewritten
//! message delivered or queued, the aggregate queued) or it is in dead/
//! with its reason and its origin told.

pub mod aggregate;
pub mod claim;
pub mod divert;

pub use crate::custody::{entry_name, pass_on};
pub use crate::outbound::untold::{self, tell_origin};
use crate::spool::{Result, Spool};
use crate::time::Clock;

/// What [`tend`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Diverted messages a handler consumed.
    pub handled: usize,
    /// Messages handlers handed back, passed on in place of the originals.
    pub rewritten: usize,
    /// Handler runs that failed (the message stays for a retry).
    pub failures: usize,
    /// Diverted messages given up after too many failures (now dead).
    pub gave_up: usize,
    /// Aggregates made, and the inputs they hold.
    pub aggregates: usize,
    pub aggregated: usize,
}

/// Runs the handlers of diverted messages and makes the aggregates that
/// are due (the relay's share of `custody::tend`).
pub fn tend(spool: &Spool, clock: &Clock, log: &dyn Fn(String)) -> Result<Pending> {
    let mut p = Pending::default();
    divert::run(spool, clock, log, &mut p)?;
    aggregate::run(spool, clock, log, &mut p)?;
    Ok(p)
}

/// The line saying what the rules' pending work did (handlers,
/// aggregates); none when it did nothing.
pub fn describe(p: &Pending) -> Option<String> {
    (*p != Pending::default()).then(|| {
        format!(
            "rules: {} diverted message(s) handled ({} handed on in their place, {} failure(s), {} given up); {} aggregate(s) of {} message(s)",
            p.handled, p.rewritten, p.failures, p.gave_up, p.aggregates, p.aggregated
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_line_says_what_was_done_and_nothing_says_nothing() {
        assert_eq!(describe(&Pending::default()), None);
        let p = Pending {
            handled: 2,
            rewritten: 1,
            aggregates: 1,
            aggregated: 5,
            ..Pending::default()
        };
        assert_eq!(
            describe(&p).unwrap(),
            "rules: 2 diverted message(s) handled (1 handed on in their place, 0 failure(s), 0 given up); 1 aggregate(s) of 5 message(s)"
        );
    }
}
