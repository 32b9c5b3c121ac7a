//! The throttle and the manual stop: what may be sent now (SPEC.md section 5).
//!
//! Pure: [`due`] takes the queue in send order, the throttle settings, what
//! was sent in the current hour and day, and `now`; it returns what may go
//! and, if it stopped early, why. Over the throttle, messages stay queued:
//! they are never rejected.

use serde::{Deserialize, Serialize};

use super::entry::EntryName;
use super::settings::Throttle;
use crate::time::Timestamp;
use crate::units::Size;

/// What was sent in the current hour and the current (local) day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Start of the hour counted (seconds since the epoch).
    pub hour_start: i64,
    pub hour_bytes: u64,
    pub hour_messages: u64,
    /// Start of the local day counted (seconds since the epoch).
    pub day_start: i64,
    pub day_bytes: u64,
    pub day_messages: u64,
}

impl Sent {
    /// The counters as they stand at `now`: a period that has ended counts zero.
    pub fn at(self, now: Timestamp, utc_offset_secs: i32) -> Sent {
        let (hour, day) = period_starts(now, utc_offset_secs);
        let mut s = self;
        if s.hour_start != hour {
            (s.hour_start, s.hour_bytes, s.hour_messages) = (hour, 0, 0);
        }
        if s.day_start != day {
            (s.day_start, s.day_bytes, s.day_messages) = (day, 0, 0);
        }
        s
    }

    /// Counts one message of `bytes` sent at `now`.
    pub fn record(self, bytes: u64, now: Timestamp, utc_offset_secs: i32) -> Sent {
        self.record_many(1, bytes, now, utc_offset_secs)
    }

    /// Counts `messages` messages of `bytes` in all, sent at `now`.
    pub fn record_many(
        self,
        messages: u64,
        bytes: u64,
        now: Timestamp,
        utc_offset_secs: i32,
    ) -> Sent {
        let mut s = self.at(now, utc_offset_secs);
        s.hour_bytes += bytes;
        s.hour_messages += messages;
        s.day_bytes += bytes;
        s.day_messages += messages;
        s
    }
}

fn period_starts(now: Timestamp, utc_offset_secs: i32) -> (i64, i64) {
    let secs = now.as_secs();
    let hour = secs - secs.rem_euclid(3600);
    let local = secs + i64::from(utc_offset_secs);
    let day = local - local.rem_euclid(86_400) - i64::from(utc_offset_secs);
    (hour, day)
}

/// Why nothing more is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `rs-queue hold` stopped all sending.
    Held,
    /// Outside every configured time-of-day window.
    OutsideWindows,
    /// A period limit would be exceeded by the next message.
    Limit {
        setting: &'static str,
        limit: u64,
        used: u64,
        next: u64,
    },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Held => f.write_str("sending is on hold (rs-queue release resumes it)"),
            Stop::OutsideWindows => f.write_str("outside the throttle's time-of-day windows"),
            Stop::Limit {
                setting,
                limit,
                used,
                next,
            } if setting.contains("bytes") => write!(
                f,
                "throttle {setting} = {} reached ({} used, next message {} bytes)",
                Size(*limit),
                Size(*used),
                next
            ),
            Stop::Limit {
                setting,
                limit,
                used,
                ..
            } => {
                write!(f, "throttle {setting} = {limit} reached ({used} sent)")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// Indexes into the entries given, in send order.
    pub due: Vec<usize>,
    /// Expired entries passed over (they are never sent; prune buries them).
    pub expired: Vec<usize>,
    pub stop: Option<Stop>,
}

/// Selects what may be sent now from `entries` (which must be in send
/// order). Sending stops at the first message the throttle does not allow,
/// so precedence and arrival order are kept.
pub fn due(
    entries: &[EntryName],
    throttle: &Throttle,
    held: bool,
    sent: Sent,
    now: Timestamp,
    utc_offset_secs: i32,
) -> Due {
    let mut out = Due {
        due: Vec::new(),
        expired: Vec::new(),
        stop: None,
    };
    if let Some(stop) = closed(throttle, held, now, utc_offset_secs) {
        out.stop = Some(stop);
        return out;
    }
    let mut s = sent.at(now, utc_offset_secs);
    for (i, e) in entries.iter().enumerate() {
        if e.is_expired(now) {
            out.expired.push(i);
            continue;
        }
        if let Some(stop) = refuses(throttle, s, e.size) {
            out.stop = Some(stop);
            return out;
        }
        s = s.record(e.size, now, utc_offset_secs);
        out.due.push(i);
    }
    out
}

/// Why nothing may be sent now whatever its size: a hold, or a time outside
/// every window.
pub fn closed(
    throttle: &Throttle,
    held: bool,
    now: Timestamp,
    utc_offset_secs: i32,
) -> Option<Stop> {
    let minute = now.minute_of_day(utc_offset_secs);
    if held {
        Some(Stop::Held)
    } else if !throttle.windows.is_empty() && !throttle.windows.iter().any(|w| w.contains(minute)) {
        Some(Stop::OutsideWindows)
    } else {
        None
    }
}

/// The limit a next message of `size` bytes would pass, with `s` sent in
/// the current periods (see [`Sent::at`]).
pub fn refuses(throttle: &Throttle, s: Sent, size: u64) -> Option<Stop> {
    let checks: [(&'static str, Option<u64>, u64, u64); 4] = [
        (
            "max_bytes_per_hour",
            throttle.max_bytes_per_hour.map(|x| x.0),
            s.hour_bytes,
            size,
        ),
        (
            "max_bytes_per_day",
            throttle.max_bytes_per_day.map(|x| x.0),
            s.day_bytes,
            size,
        ),
        (
            "max_messages_per_hour",
            throttle.max_messages_per_hour,
            s.hour_messages,
            1,
        ),
        (
            "max_messages_per_day",
            throttle.max_messages_per_day,
            s.day_messages,
            1,
        ),
    ];
    checks.into_iter().find_map(|(setting, limit, used, next)| {
        limit.filter(|l| used + next > *l).map(|limit| Stop::Limit {
            setting,
            limit,
            used,
            next,
        })
    })
}

/// Whether a relay is over its throttle: a period's limit is used up, so
/// what it took in custody could not go on within the period. A relay over
/// its throttle answers "rejected, retry" (the sender keeps its copy); holds
/// and windows do not count (a held relay still takes custody).
pub fn over(throttle: &Throttle, sent: Sent, now: Timestamp, utc_offset_secs: i32) -> Option<Stop> {
    // Used up: not even one more message of one byte fits.
    refuses(throttle, sent.at(now, utc_offset_secs), 1).map(|stop| match stop {
        Stop::Limit {
            setting,
            limit,
            used,
            ..
        } => Stop::Limit {
            setting,
            limit,
            used,
            next: 0,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MessageId, Persistence, Precedence};
    use crate::time::Window;

    const NOW: i64 = 1_764_001_800; // 2025-11-24T16:30:00Z

    fn entries(sizes: &[u64]) -> Vec<EntryName> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| EntryName {
                arrival: i as u64,
                id: MessageId::parse(&format!("m{i}")).unwrap(),
                precedence: Precedence::Normal,
                persistence: Persistence::Normal,
                addressed: false,
                created: Timestamp::from_secs(NOW),
                expiry: None,
                size,
            })
            .collect()
    }

    fn run(sizes: &[u64], t: &Throttle, sent: Sent) -> Due {
        due(
            &entries(sizes),
            t,
            false,
            sent,
            Timestamp::from_secs(NOW),
            0,
        )
    }

    #[test]
    fn unlimited_by_default() {
        let d = run(&[10, 20, 30], &Throttle::default(), Sent::default());
        assert_eq!(d.due, vec![0, 1, 2]);
        assert_eq!(d.stop, None);
    }

    #[test]
    fn bytes_per_hour_counts_what_was_sent_this_hour() {
        let t = Throttle {
            max_bytes_per_hour: Some(Size(100)),
            ..Throttle::default()
        };
        let sent = Sent::default().record(60, Timestamp::from_secs(NOW - 10), 0);
        let d = run(&[30, 20], &t, sent);
        assert_eq!(d.due, vec![0]);
        assert!(matches!(
            d.stop,
            Some(Stop::Limit {
                setting: "max_bytes_per_hour",
                ..
            })
        ));
        // Last hour's sending no longer counts.
        let old = Sent::default().record(60, Timestamp::from_secs(NOW - 3600), 0);
        assert_eq!(run(&[30, 20], &t, old).due, vec![0, 1]);
    }

    #[test]
    fn stops_at_the_first_message_that_does_not_fit_to_keep_order() {
        let t = Throttle {
            max_bytes_per_day: Some(Size(100)),
            ..Throttle::default()
        };
        assert_eq!(run(&[50, 60, 10], &t, Sent::default()).due, vec![0]);
    }

    #[test]
    fn messages_per_period() {
        let t = Throttle {
            max_messages_per_day: Some(2),
            ..Throttle::default()
        };
        assert_eq!(run(&[1, 1, 1], &t, Sent::default()).due, vec![0, 1]);
        let t = Throttle {
            max_messages_per_hour: Some(0),
            ..Throttle::default()
        };
        assert_eq!(run(&[1], &t, Sent::default()).due, Vec::<usize>::new());
    }

    #[test]
    fn windows_and_hold() {
        let t = Throttle {
            windows: vec![Window::parse("22:00-06:00").unwrap()],
            ..Throttle::default()
        };
        let d = run(&[1], &t, Sent::default()); // 16:30 UTC
        assert_eq!((d.due.len(), d.stop), (0, Some(Stop::OutsideWindows)));
        // At UTC+8 it is midnight: inside the window.
        let d = due(
            &entries(&[1]),
            &t,
            false,
            Sent::default(),
            Timestamp::from_secs(NOW),
            8 * 3600,
        );
        assert_eq!(d.due, vec![0]);
        let d = due(
            &entries(&[1]),
            &Throttle::default(),
            true,
            Sent::default(),
            Timestamp::from_secs(NOW),
            0,
        );
        assert_eq!(d.stop, Some(Stop::Held));
    }

    #[test]
    fn expired_messages_are_never_due() {
        let mut e = entries(&[1, 1]);
        e[0].expiry = Some(Timestamp::from_secs(NOW));
        let d = due(
            &e,
            &Throttle::default(),
            false,
            Sent::default(),
            Timestamp::from_secs(NOW),
            0,
        );
        assert_eq!((d.due, d.expired), (vec![1], vec![0]));
    }

    #[test]
    fn local_day_starts_at_local_midnight() {
        // 16:30 UTC at UTC-10 is 06:30 local; the day began 6.5 hours ago.
        let (_, day) = period_starts(Timestamp::from_secs(NOW), -10 * 3600);
        assert_eq!(NOW - day, 6 * 3600 + 1800);
    }

    #[test]
    fn a_relay_is_over_its_throttle_once_a_limit_is_used_up() {
        let throttle = Throttle {
            max_messages_per_hour: Some(2),
            ..Throttle::default()
        };
        let now = Timestamp::from_secs(1_795_478_400);
        let sent = Sent::default().record(10, now, 0);
        assert_eq!(over(&throttle, sent, now, 0), None);
        let sent = sent.record(10, now, 0);
        assert!(matches!(
            over(&throttle, sent, now, 0),
            Some(Stop::Limit {
                setting: "max_messages_per_hour",
                ..
            })
        ));
        let next_hour = Timestamp::from_secs(1_795_478_400 + 3600);
        assert_eq!(over(&throttle, sent, next_hour, 0), None, "a new hour");
        assert_eq!(over(&Throttle::default(), sent, now, 0), None, "unlimited");
    }
}
