//! What the features composed into a program may say about sending: a
//! message that goes before anything else, and, while something waits,
//! the only messages that may go to the upstream peer now (a component
//! that registers sends its registration first, and in session mode
//! nothing else upstream until it is answered). The runner names no
//! feature; the program installs its [`Gates`] on the spool.

use std::collections::HashSet;

use crate::spool::Spool;

/// A feature's say in what is sent when.
pub trait Gate: Send + Sync {
    /// The ID of a message to send before anything else, if one waits.
    fn first(&self, _spool: &Spool) -> Option<String> {
        None
    }

    /// When only some messages may go to the upstream peer now: their IDs,
    /// and why the rest wait.
    fn only_upstream(&self, _spool: &Spool) -> Option<(HashSet<String>, &'static str)> {
        None
    }
}

/// The gates of a program, in order: the first that answers decides.
#[derive(Default)]
pub struct Gates {
    list: Vec<Box<dyn Gate>>,
}

impl Gates {
    pub fn new(list: Vec<Box<dyn Gate>>) -> Gates {
        Gates { list }
    }

    /// The gates installed on `spool`, or none.
    pub fn of(spool: &Spool) -> &Gates {
        static NONE: Gates = Gates { list: Vec::new() };
        spool.part::<Gates>().unwrap_or(&NONE)
    }

    /// The message to send first, if one waits.
    pub fn first(&self, spool: &Spool) -> Option<String> {
        self.list.iter().find_map(|g| g.first(spool))
    }

    /// The only messages that may go upstream now, and why, if restricted.
    pub fn only_upstream(&self, spool: &Spool) -> Option<(HashSet<String>, &'static str)> {
        self.list.iter().find_map(|g| g.only_upstream(spool))
    }
}
