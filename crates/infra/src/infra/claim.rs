//! Registration and control's part in receiving: a control message or
//! registration answer not made by this site's registrar, or going up
//! where it may only come down, is refused and kept in quarantine
//! ([`super::refused`]); what rs takes itself (registrations and
//! heartbeats at the registrar, answers and control messages at a
//! component, a child's heartbeat at a relay: [`super::takes`]) is held in
//! `divert/` under [`super::LABEL`] for [`super::run_held`].

use super::{refused, takes, Authority, LABEL};
use crate::config::Config;
use crate::receive::decide::{Decision, Facts, Keep, When};
use crate::receive::{Claim, Claims, Extension};
use crate::route::{Learned, NextHop};
use crate::spool::{Result, Spool};
use crate::time::Clock;

/// Registration, heartbeats and control messages.
pub struct Infrastructure;

impl Extension for Infrastructure {
    fn begin<'s>(&'s self, spool: &'s Spool, _log: &dyn Fn(String)) -> Box<dyn Claims + 's> {
        Box::new(Batch {
            authority: Authority::of(spool),
            config: spool.config(),
        })
    }

    /// Registrations, answers and heartbeats held for rs itself.
    fn tend(&self, spool: &Spool, clock: &Clock, log: &dyn Fn(String)) -> Result<Vec<String>> {
        super::run_held(spool, clock.now(), log)?;
        Ok(Vec::new())
    }
}

/// One batch's view: whose control messages this site obeys.
pub struct Batch<'s> {
    pub authority: Authority,
    pub config: &'s Config,
}

impl Claims for Batch<'_> {
    fn after_routing(
        &self,
        f: &Facts<'_>,
        _when: &When,
        hop: &NextHop,
        _learned: &Learned,
    ) -> Option<Claim> {
        if let Some(reason) = refused(
            f.header,
            f.from,
            hop,
            f.signed,
            &self.authority,
            self.config,
        ) {
            return Some(Claim::Decided(Decision::Refuse { reason }));
        }
        takes(f.header, hop, self.config).then(|| {
            Claim::Decided(Decision::Hold {
                label: LABEL.to_string(),
                keep: Keep::Divert,
                learn: true,
            })
        })
    }
}
