//! The state of the link to each peer (`state/links/PEER`, JSON): after a
//! flush that could not reach a peer, the next attempt waits (one minute,
//! or `retry_cap` if shorter, doubling up to the peer's `retry_cap`), so
//! cron can run `rs-queue flush` often without hammering a dead relay. A
//! cache: losing it only means one early retry.
//!
//! Also when this site last exchanged with each peer (`state/polled/PEER`),
//! so that an HTTP peer is polled with nothing to send only once its
//! `poll` interval has passed. A cache too: losing it means one early poll.

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
    let first = std::time::Duration::from_secs(60).min(peer.retry_cap);
    let wait = retry::backoff(failures, first, peer.retry_cap);
    let state = LinkState {
        failures,
        since: old.map_or(now, |s| s.since),
        next_try: now.saturating_add(wait),
        last_error: why.to_string(),
    };
    let dir = spool.dir(Area::State).join("links");
    durable::create_dir_all(&dir)?;
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
    let _ = durable::remove_file(&path(spool, peer));
}

fn polled_path(spool: &Spool, peer: &Peer) -> std::path::PathBuf {
    spool.dir(Area::State).join("polled").join(peer.id.as_str())
}

/// Whether a poll of `peer` (an exchange with nothing to send) is due: its
/// `poll` interval has passed since the last exchange.
pub fn poll_due(spool: &Spool, peer: &Peer, now: Timestamp) -> bool {
    if peer.poll.is_zero() {
        return true;
    }
    let last = std::fs::read_to_string(polled_path(spool, peer))
        .ok()
        .and_then(|t| Timestamp::parse(t.trim()).ok());
    last.is_none_or(|t| now >= t.saturating_add(peer.poll) || now < t)
}

/// Records an exchange with `peer` at `now` (best effort: a cache).
pub fn exchanged(spool: &Spool, peer: &Peer, now: Timestamp) {
    if peer.poll.is_zero() {
        return;
    }
    let dir = spool.dir(Area::State).join("polled");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(peer.id.as_str()), now.to_rfc3339());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wait after a failed link starts at a minute and doubles, never
    /// past the peer's `retry_cap`, the first one included.
    #[test]
    fn a_failed_link_waits_no_longer_than_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::from_secs(1_800_000_000);
        let name = |s: &str| crate::message::Name::new("name", s).unwrap();
        let spool = Spool::create(
            &dir.path().join("s"),
            &name("a"),
            &name("a.host"),
            None,
            now,
        )
        .unwrap();
        let waits = |peer: &Peer| {
            (0..4)
                .map(|_| {
                    let st = failed(&spool, peer, "refused", now).unwrap();
                    (st.next_try.as_micros() - now.as_micros()) / 1_000_000
                })
                .collect::<Vec<_>>()
        };
        let peer: Peer = toml::from_str("id = \"hub\"").unwrap();
        assert_eq!(waits(&peer), [60, 120, 240, 480]);
        succeeded(&spool, &peer);
        assert_eq!(load(&spool, &peer), None);
        let peer: Peer = toml::from_str("id = \"hub\"\nretry_cap = \"10s\"").unwrap();
        assert_eq!(waits(&peer), [10, 10, 10, 10]);
        succeeded(&spool, &peer);
        let peer: Peer = toml::from_str("id = \"hub\"\nretry_cap = \"3m\"").unwrap();
        assert_eq!(waits(&peer), [60, 120, 180, 180]);
    }
}
