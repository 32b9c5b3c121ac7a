//! The map's part in receiving: a message sent through a map entry of
//! another epoch than the service's here is answered `epoch-mismatch`, and
//! nothing is kept: its sender fetches a fresh map and sends again (SPEC.md
//! section 12).

use crate::message::ResponseStatus;
use crate::receive::decide::{Decision, Facts};
use crate::receive::{Claims, Extension};
use crate::spool::Spool;

/// Checks the epoch of the service this site serves (`[spm] serves`).
pub struct Epochs;

impl Extension for Epochs {
    fn begin<'s>(&'s self, spool: &'s Spool, log: &dyn Fn(String)) -> Box<dyn Claims + 's> {
        let epoch = match super::served_epoch(spool.config(), spool.root()) {
            Ok(e) => e,
            Err(e) => {
                log(format!(
                    "[spm] serves: the service's epoch is unknown ({e}); epochs are not checked"
                ));
                None
            }
        };
        Box::new(EpochCheck { epoch })
    }
}

/// The check for one batch: the service's epoch here, when known.
pub struct EpochCheck {
    pub epoch: Option<u64>,
}

impl Claims for EpochCheck {
    fn check(&self, f: &Facts<'_>) -> Option<Decision> {
        let (sent, here) = (f.header.epoch?, self.epoch?);
        (sent != here).then(|| Decision::NotTaken {
            status: ResponseStatus::EpochMismatch,
            code: "epoch-mismatch",
            reason: format!(
                "sent through a map entry of epoch {sent}; the service is at epoch {here} here: fetch a fresh map"
            ),
        })
    }
}
