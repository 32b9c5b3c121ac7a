//! Route kinds that a feature brings (the service point map's `spm:`):
//! the runner opens the core's own kinds (`dir:`, `smtp://`, `http(s)://`)
//! itself and asks the [`RouteKinds`] installed on the spool for any
//! other. The runner names no feature.

use std::sync::Arc;

use crate::config::{Peer, Route};
use crate::protect::Protector;
use crate::spool::Spool;
use crate::time::Timestamp;
use crate::transport::Transport;

/// Why a route could not be opened (shown as the peer's setup error).
pub type OpenError = Box<dyn std::error::Error + Send + Sync>;

/// A feature's route kind.
pub trait RouteKind: Send + Sync {
    /// Opens `route` toward `peer` when it is of this kind; `None`: not
    /// this kind.
    fn open(
        &self,
        spool: &Spool,
        route: &Route,
        peer: &Peer,
        protector: Option<Arc<Protector>>,
        now: Timestamp,
    ) -> Option<Result<Box<dyn Transport>, OpenError>>;
}

/// The route kinds of a program, beyond the core's.
#[derive(Default)]
pub struct RouteKinds {
    list: Vec<Box<dyn RouteKind>>,
}

impl RouteKinds {
    pub fn new(list: Vec<Box<dyn RouteKind>>) -> RouteKinds {
        RouteKinds { list }
    }

    /// The route kinds installed on `spool`, or none.
    pub fn of(spool: &Spool) -> &RouteKinds {
        static NONE: RouteKinds = RouteKinds { list: Vec::new() };
        spool.part::<RouteKinds>().unwrap_or(&NONE)
    }

    /// Opens `route` with the first kind that knows it; `None` when none
    /// does (this program was built without it).
    pub fn open(
        &self,
        spool: &Spool,
        route: &Route,
        peer: &Peer,
        protector: Option<Arc<Protector>>,
        now: Timestamp,
    ) -> Option<Result<Box<dyn Transport>, OpenError>> {
        self.list
            .iter()
            .find_map(|k| k.open(spool, route, peer, protector.clone(), now))
    }
}
