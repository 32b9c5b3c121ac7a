//! Retransmission: when a sent, unacknowledged message is due again.
//!
//! Pure. The first retransmission comes one ack timeout after the first
//! send; each later wait doubles, up to the peer's cap.

use std::time::Duration;

use super::entry::SentInfo;
use crate::time::Timestamp;

/// The wait after the `attempts`-th send before the next one.
pub fn backoff(attempts: u32, ack_timeout: Duration, cap: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(32);
    ack_timeout
        .saturating_mul(1u32 << doublings.min(31))
        .min(cap.max(ack_timeout))
}

/// When the message described by `info` is due to be sent again.
pub fn retransmit_at(info: &SentInfo, ack_timeout: Duration, cap: Duration) -> Timestamp {
    info.last_sent
        .saturating_add(backoff(info.attempts, ack_timeout, cap))
}

/// Whether its acknowledgement is overdue (one ack timeout since the last send).
pub fn is_overdue(info: &SentInfo, ack_timeout: Duration, now: Timestamp) -> bool {
    info.last_sent.saturating_add(ack_timeout) <= now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Name;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let h = Duration::from_secs(3600);
        let cap = Duration::from_secs(6 * 3600);
        let waits: Vec<u64> = (1..=6)
            .map(|n| backoff(n, h, cap).as_secs() / 3600)
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 6, 6, 6]);
        assert_eq!(backoff(1000, h, cap), cap, "no overflow");
        assert_eq!(
            backoff(1, h, Duration::from_secs(1)),
            h,
            "a cap below the timeout does not shorten it"
        );
    }

    #[test]
    fn due_again_after_the_backoff() {
        let info = SentInfo {
            attempts: 2,
            last_sent: Timestamp::from_secs(10_000),
            peer: Name::new("peer", "p").unwrap(),
        };
        let t = Duration::from_secs(100);
        assert_eq!(
            retransmit_at(&info, t, Duration::from_secs(1000)),
            Timestamp::from_secs(10_200)
        );
        assert!(!is_overdue(&info, t, Timestamp::from_secs(10_099)));
        assert!(is_overdue(&info, t, Timestamp::from_secs(10_100)));
    }
}
