//! The relay's part in receiving: a message to a group configured here
//! (`[[group]]`) is expanded into one copy per member (and per other
//! destination), each then decided on its own; the rules (`[[rule]]`, in
//! order: see `filter`) may discard a message (acknowledged as accepted,
//! counted), divert it to a handler, gather it into an aggregate, or send
//! it to a named peer.

use crate::config::Config;
use crate::filter::{self, Action};
use crate::message::{Header, Locator, Name, Target};
use crate::receive::decide::{Decision, Facts, Keep, When};
use crate::receive::{Claim, Claims, Extension};
use crate::route::{Learned, NextHop};
use crate::spool::{Result, Spool};
use crate::time::Clock;

/// Groups and rules.
pub struct Relay;

impl Extension for Relay {
    fn begin<'s>(&'s self, spool: &'s Spool, _log: &dyn Fn(String)) -> Box<dyn Claims + 's> {
        Box::new(Batch {
            config: spool.config(),
        })
    }

    /// The handlers of diverted messages, and the aggregates due.
    fn tend(&self, spool: &Spool, clock: &Clock, log: &dyn Fn(String)) -> Result<Vec<String>> {
        let p = super::tend(spool, clock, log)?;
        Ok(super::describe(&p).into_iter().collect())
    }
}

/// One batch's view: this site's groups and rules.
pub struct Batch<'s> {
    pub config: &'s Config,
}

impl Claims for Batch<'_> {
    fn before_routing(&self, f: &Facts<'_>, _when: &When, _learned: &Learned) -> Option<Claim> {
        expansion(f.header, self.config).map(|targets| Claim::Decided(Decision::Expand { targets }))
    }

    fn after_routing(
        &self,
        f: &Facts<'_>,
        when: &When,
        _hop: &NextHop,
        _learned: &Learned,
    ) -> Option<Claim> {
        let facts = filter::Facts {
            header: f.header,
            kind: f.kind,
            severity: f.severity,
            minute_of_day: when.minute_of_day,
        };
        let (i, rule) = filter::first_match(&self.config.rules, &facts)?;
        let label = rule.label(i);
        let held = |keep| {
            Some(Claim::Decided(Decision::Hold {
                label: label.clone(),
                keep,
                learn: false,
            }))
        };
        match rule.action {
            Action::Discard => Some(Claim::Decided(Decision::Discard {
                label: label.clone(),
            })),
            Action::Divert => held(Keep::Divert),
            Action::Aggregate => held(Keep::Aggregate),
            Action::Forward => rule.peer.clone().map(|peer| Claim::Route { peer }),
        }
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
