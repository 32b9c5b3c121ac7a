//! Bulk's part in receiving: the requests, answers and chunks of a
//! transfer ([`super::is_bulk`]) that this site handles are held under
//! [`super::LABEL`]: a transfer to a group configured here whatever its
//! next hop ([`super::group_here`]), else one that ends here or a request
//! or answer passing through ([`super::takes`]; not while this relay takes
//! nothing onward). A chunk of a transfer received here is written in
//! place ([`super::received_here`]); the rest waits in `divert/` for
//! [`super::run_held`].

use super::receiver::{ChunkData, Chunks, Refusal};
use super::{group_here, is_bulk, is_chunk_type, received_here, takes, LABEL};
use crate::config::Config;
use crate::receive::decide::{Decision, Facts, Keep, When};
use crate::receive::extension::{DataRef, InPlace, Written};
use crate::receive::{Claim, Claims, Extension};
use crate::route::{Learned, NextHop};
use crate::spool::{Result, Spool};
use crate::time::{Clock, Timestamp};

/// Transfers of bulk data.
pub struct Bulk;

impl Extension for Bulk {
    fn begin<'s>(&'s self, spool: &'s Spool, _log: &dyn Fn(String)) -> Box<dyn Claims + 's> {
        Box::new(Batch {
            config: spool.config(),
        })
    }

    fn reads_data_in_place(&self, mime: &str) -> bool {
        is_chunk_type(mime)
    }

    /// Transfers held for rs itself, then the transfers whose time came
    /// (asked again after deferrals, reservations lapsed).
    fn tend(&self, spool: &Spool, clock: &Clock, log: &dyn Fn(String)) -> Result<Vec<String>> {
        super::run_held(spool, clock.now(), log)?;
        super::tick(spool, clock.now(), log)?;
        Ok(Vec::new())
    }

    /// Writes chunks in place under the bulk lock, if it is free now (this
    /// run holds the receive lock, which a run holding the bulk lock may
    /// wait for); made durable and recorded before this returns. A chunk
    /// that cannot be taken now is held for [`super::run_held`].
    fn write_in_place(
        &self,
        spool: &Spool,
        items: &[InPlace<'_>],
        now: Timestamp,
        log: &dyn Fn(String),
    ) -> Result<Vec<Written>> {
        let Some(_lock) = super::try_lock(spool)? else {
            let busy = || Written::Later("the bulk lock is busy".into());
            return Ok(items.iter().map(|_| busy()).collect());
        };
        let mut chunks = Chunks::default();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let data = match item.data {
                DataRef::Bytes(b) => ChunkData::Bytes(b),
                DataRef::File(f) => ChunkData::File(f),
            };
            out.push(match chunks.add(spool, item.header, item.mime, data, log) {
                Ok(()) => Written::Kept,
                Err(Refusal::Bad(why)) => Written::Bad(why),
                Err(Refusal::Later(why)) => {
                    log(format!("{}: {why}: held for a later run", item.header.id));
                    Written::Later(why)
                }
            });
        }
        chunks.finish(spool, now, log)?;
        Ok(out)
    }
}

/// One batch's view: this site's configuration.
pub struct Batch<'s> {
    pub config: &'s Config,
}

impl Batch<'_> {
    fn hold(&self, f: &Facts<'_>, learned: &Learned) -> Claim {
        let keep = if received_here(f.header, f.mime, self.config, learned) {
            Keep::InPlace
        } else {
            Keep::Divert
        };
        Claim::Decided(Decision::Hold {
            label: LABEL.to_string(),
            keep,
            learn: true,
        })
    }
}

impl Claims for Batch<'_> {
    fn before_routing(&self, f: &Facts<'_>, _when: &When, learned: &Learned) -> Option<Claim> {
        // A transfer to a group configured here is received here, once,
        // and sent on to each member from here.
        (is_bulk(f.kind, f.mime) && group_here(f.header, self.config).is_some())
            .then(|| self.hold(f, learned))
    }

    fn after_routing(
        &self,
        f: &Facts<'_>,
        _when: &When,
        hop: &NextHop,
        learned: &Learned,
    ) -> Option<Claim> {
        if !is_bulk(f.kind, f.mime) {
            return None;
        }
        let passing = matches!(hop, NextHop::Peer(p) if p != f.from);
        (takes(f.kind, hop) && (!passing || f.relay_stopped.is_none()))
            .then(|| self.hold(f, learned))
    }
}
