//! The state of the link to each peer (`state/links/PEER`, JSON): after a
//! flush that could not reach a peer, the next attempt waits (one minute,
//! doubling up to the peer's `retry_cap`), so cron can run `rs-queue flush`
//! often without hammering a dead relay. A cache: losing it only means one
//! early retry.

use serde::{Deserialize, Serialize};

use crate::config::Peer;
use crate::queue::retry;
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    pub failures: u32,
    pub since: Timestamp,
    pub next_try: Timestamp,
    pub last_error: String,
}

fn path(spool: &Spool, peer: &Peer) -> std::path::PathBuf {
    spool.dir(Area::State).join("links").join(peer.id.as_str())
}

pub fn load(spool: &Spool, peer: &Peer) -> Option<LinkState> {
    let text = std::fs::read_to_string(path(spool, peer)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Records a failed attempt; returns the new state.
pub fn failed(spool: &Spool, peer: &Peer, why: &str, now: Timestamp) -> Result<LinkState> {
    let old = load(spool, peer);
    let failures = old.as_ref().map_or(0, |s| s.failures) + 1;
    let wait = retry::backoff(failures, std::time::Duration::from_secs(60), peer.retry_cap);
    let state = LinkState {
        failures,
        since: old.map_or(now, |s| s.since),
        next_try: now.saturating_add(wait),
        last_error: why.to_string(),
    };
    let dir = spool.dir(Area::State).join("links");
    std::fs::create_dir_all(&dir)
        .map_err(|e| crate::spool::Error::io("create directory", &dir, e))?;
    let text = serde_json::to_string(&state).unwrap_or_default();
    durable::write_durable(
        &spool.dir(Area::Tmp),
        &dir,
        peer.id.as_str(),
        text.as_bytes(),
        now.as_micros(),
    )?;
    Ok(state)
}

/// Records that the link works.
pub fn succeeded(spool: &Spool, peer: &Peer) {
    let _ = std::fs::remove_file(path(spool, peer));
}
