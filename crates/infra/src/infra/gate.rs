//! Registration's say in sending: the registration goes before anything
//! else, and in session mode nothing else goes upstream until it is
//! answered (SPEC.md section 13).

use std::collections::HashSet;

use crate::outbound::gate::Gate;
use crate::spool::Spool;

/// A component that registers.
pub struct Registration;

impl Gate for Registration {
    fn first(&self, spool: &Spool) -> Option<String> {
        super::first(spool)
    }

    fn only_upstream(&self, spool: &Spool) -> Option<(HashSet<String>, &'static str)> {
        super::held(spool).map(|ids| (ids, "waiting for the registration to be answered"))
    }
}
