//! Who a connection's caller is: its address, the identity its
//! certificate gave, its place among the pending connections, and the peer
//! it proved.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use super::pending::Left;
use super::{lock, Shared};
use crate::message::Name;
use crate::session::Identity;

/// What a connection knows of its caller.
pub(super) struct Caller {
    pub(super) addr: SocketAddr,
    pub(super) identity: Identity,
    /// Its connection's place among the pending ones.
    pub(super) place: u64,
    /// The peer it proved.
    pub(super) peer: Mutex<Option<Name>>,
    /// Whether a refusal was logged.
    pub(super) refused: AtomicBool,
}

impl Caller {
    /// The caller proved `peer`: its connection is no longer pending.
    pub(super) fn proved(&self, peer: &Name, shared: &Shared) {
        shared.pending.leave(self.place, Some(Left::Proved));
        let mut proved = lock(&self.peer);
        if proved.as_ref() != Some(peer) {
            *proved = Some(peer.clone());
        }
    }

    /// The caller, for the log: its address, and the peer it proved.
    pub(super) fn who(&self) -> String {
        match &*lock(&self.peer) {
            Some(peer) => format!("{peer} at {}", self.addr),
            None => self.addr.to_string(),
        }
    }
}
