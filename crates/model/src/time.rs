//! Time as rs sees it: instants in microseconds since the Unix epoch (UTC),
//! the clock that produces them, and the textual forms they take on disk, in
//! XML and on the command line.
//!
//! Invariant: nothing below the command layer reads the system clock. Commands
//! ask [`Clock`] once and pass the instant down, so policy is a pure function of
//! `(state, now)` and tests can pin time with `RS_NOW`.

use std::fmt;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// An instant, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("`{0}` is not a time: use RFC 3339 (2026-11-24T16:05:00Z) or @UNIX-SECONDS")]
    BadTime(String),
    #[error("`{0}` is not a duration: use forms like 90s, 15m, 2h, 7d")]
    BadDuration(String),
    #[error("`{0}` is not a time of day window: use HH:MM-HH:MM")]
    BadWindow(String),
}

impl Timestamp {
    pub const EPOCH: Timestamp = Timestamp(0);

    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    pub const fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(micros))
    }

    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(micros))
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    fn to_datetime(self) -> OffsetDateTime {
        let nanos = i128::from(self.0) * 1000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// RFC 3339 in UTC with exactly six fractional digits; the form used in
    /// XML and JSON, so that it round-trips exactly.
    pub fn to_rfc3339(self) -> String {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        self.to_datetime()
            .format(&fmt)
            .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_string())
    }

    /// The HTTP date (RFC 9110 IMF-fixdate): `Wed, 02 Dec 2026 15:10:44 GMT`.
    pub fn to_http_date(self) -> String {
        let fmt = format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        self.to_datetime()
            .format(&fmt)
            .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 GMT".to_string())
    }

    /// The compact UTC form used at the front of message IDs:
    /// `YYYYMMDDTHHMMSS-uuuuuu`, fixed width, so IDs sort by creation time.
    pub fn to_id_prefix(self) -> String {
        let fmt =
            format_description!("[year][month][day]T[hour][minute][second]-[subsecond digits:6]");
        self.to_datetime()
            .format(&fmt)
            .unwrap_or_else(|_| "19700101T000000-000000".to_string())
    }

    /// Parses RFC 3339 (any offset, any fractional precision down to the
    /// microsecond) or `@SECONDS`.
    pub fn parse(text: &str) -> Result<Timestamp, Error> {
        let text = text.trim();
        if let Some(secs) = text.strip_prefix('@') {
            return secs
                .parse::<i64>()
                .map(Timestamp::from_secs)
                .map_err(|_| Error::BadTime(text.to_string()));
        }
        let dt =
            OffsetDateTime::parse(text, &Rfc3339).map_err(|_| Error::BadTime(text.to_string()))?;
        let micros = dt.unix_timestamp_nanos() / 1000;
        i64::try_from(micros)
            .map(Timestamp)
            .map_err(|_| Error::BadTime(text.to_string()))
    }

    /// Minutes since local midnight, given the local offset from UTC in seconds.
    pub fn minute_of_day(self, utc_offset_secs: i32) -> u32 {
        let local = self.as_secs() + i64::from(utc_offset_secs);
        (local.rem_euclid(86_400) / 60) as u32
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where commands get "now" from: the system clock, or `RS_NOW` when a test
/// (or an operator replaying a scenario) pins it.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pinned: Option<Timestamp>,
    /// `None`: the local offset, read when first needed.
    utc_offset_secs: Option<i32>,
}

/// The local offset from UTC, read once per process (from the time zone
/// database, which only some commands need).
/// The local UTC offset in seconds, read once per process (before any
/// thread starts, or it reads as 0).
pub fn local_offset_secs() -> i32 {
    static OFFSET: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        time::UtcOffset::current_local_offset()
            .map(|o| o.whole_seconds())
            .unwrap_or(0)
    })
}

impl Clock {
    /// The system clock, unless `RS_NOW` holds a time (RFC 3339 or @SECONDS).
    /// The local UTC offset (for time-of-day windows and local days) is read
    /// on first use; commands are single-threaded, as reading it requires.
    pub fn from_env() -> Result<Clock, Error> {
        let pinned = match std::env::var("RS_NOW") {
            Ok(v) if !v.trim().is_empty() => Some(Timestamp::parse(&v)?),
            _ => None,
        };
        Ok(Clock {
            pinned,
            utc_offset_secs: None,
        })
    }

    pub fn fixed(at: Timestamp) -> Clock {
        Clock {
            pinned: Some(at),
            utc_offset_secs: Some(0),
        }
    }

    pub fn now(&self) -> Timestamp {
        if let Some(t) = self.pinned {
            return t;
        }
        system_now()
    }

    pub fn utc_offset_secs(&self) -> i32 {
        self.utc_offset_secs.unwrap_or_else(local_offset_secs)
    }

    /// This clock with the local UTC offset read now: for a process about
    /// to start threads, after which it can no longer be read.
    pub fn with_offset_resolved(self) -> Clock {
        Clock {
            utc_offset_secs: Some(self.utc_offset_secs()),
            ..self
        }
    }
}

pub fn system_now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Parses a duration such as `90s`, `15m`, `2h`, `7d`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    humantime::parse_duration(text.trim()).map_err(|_| Error::BadDuration(text.to_string()))
}

/// Formats a duration for people and for configuration files (`2h 30m`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// A daily window of local time, `start` inclusive, `end` exclusive, in
/// minutes since midnight. A window whose end is before its start wraps
/// past midnight (22:00-06:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: u32,
    pub end: u32,
}

impl Window {
    pub fn parse(text: &str) -> Result<Window, Error> {
        let bad = || Error::BadWindow(text.to_string());
        let (a, b) = text.trim().split_once('-').ok_or_else(bad)?;
        let minutes = |s: &str| -> Result<u32, Error> {
            let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
            let h: u32 = h.parse().map_err(|_| bad())?;
            let m: u32 = m.parse().map_err(|_| bad())?;
            if h > 24 || m > 59 || (h == 24 && m != 0) {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        let (start, end) = (minutes(a)?, minutes(b)?);
        if start == end {
            return Err(bad());
        }
        Ok(Window { start, end })
    }

    pub fn contains(&self, minute_of_day: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute_of_day)
        } else {
            minute_of_day >= self.start || minute_of_day < self.end
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_to_the_microsecond() {
        for micros in [0, 1, 1_764_000_312_123_456, 4_102_444_800_000_000] {
            let t = Timestamp::from_micros(micros);
            assert_eq!(Timestamp::parse(&t.to_rfc3339()), Ok(t), "{}", t);
        }
    }

    #[test]
    fn parses_offsets_and_unix_seconds() {
        let utc = Timestamp::parse("2026-11-24T16:00:00Z").unwrap();
        assert_eq!(Timestamp::parse("2026-11-24T17:00:00+01:00").unwrap(), utc);
        assert_eq!(
            Timestamp::parse(&format!("@{}", utc.as_secs())).unwrap(),
            utc
        );
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn id_prefix_is_fixed_width_and_sorts() {
        let a = Timestamp::parse("2026-01-02T03:04:05.000006Z").unwrap();
        assert_eq!(a.to_id_prefix(), "20260102T030405-000006");
        let b = a.saturating_add(Duration::from_micros(1));
        assert!(a.to_id_prefix() < b.to_id_prefix());
    }

    #[test]
    fn windows() {
        let check = |w: &str, minute: u32, expected: bool| {
            assert_eq!(
                Window::parse(w).unwrap().contains(minute),
                expected,
                "{w} at {minute}"
            );
        };
        check("08:00-18:00", 8 * 60, true);
        check("08:00-18:00", 18 * 60, false);
        check("22:00-06:00", 23 * 60, true);
        check("22:00-06:00", 5 * 60 + 59, true);
        check("22:00-06:00", 12 * 60, false);
        check("00:00-24:00", 0, true);
        assert!(Window::parse("10:00-10:00").is_err());
        assert!(Window::parse("25:00-26:00").is_err());
        assert_eq!(
            Window::parse("22:00-06:30").unwrap().to_string(),
            "22:00-06:30"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("soon").is_err());
    }
}
