//! Names of outbound files. The name carries everything the queue policy
//! needs, so listing, accounting, ordering and eviction read directories,
//! never file contents:
//!
//! ```text
//! ARRIVAL.ID.PSL.CREATED.EXPIRY.SIZE
//! 1764000312123456.20261124T160512-123456-3f9a2c7b1e4d5a60.nnf.1764000312123456.0.2411
//! ```
//! - ARRIVAL: 16-digit arrival stamp (microseconds, strictly increasing per
//!   spool), the tie-breaker that keeps arrival order within a precedence;
//! - ID: the message ID;
//! - PSL: precedence letter (u, n, b), persistence letter (n, h) and
//!   locator letter (f: forward path, with a source; d: with destinations);
//! - CREATED, EXPIRY: microseconds since the epoch (EXPIRY 0: never);
//! - SIZE: bytes of the envelope file.
//!
//! The same name is kept when the file moves between outbound areas (queue,
//! hold, sent) and into dead/. In sent/ the name carries three more fields:
//! `.ATTEMPTS.LASTSENT.PEER` (times sent, when last, in seconds since the
//! epoch, and the peer whose acknowledgement is awaited).

use std::fmt;

use crate::message::{MessageId, Name, Persistence, Precedence};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryName {
    pub arrival: u64,
    pub id: MessageId,
    pub precedence: Precedence,
    pub persistence: Persistence,
    /// Whether the message names destinations (back-channel) rather than a source.
    pub addressed: bool,
    pub created: Timestamp,
    pub expiry: Option<Timestamp>,
    pub size: u64,
}

impl EntryName {
    pub fn parse(name: &str) -> Option<EntryName> {
        let mut fields = name.split('.');
        let arrival = fields.next()?;
        if arrival.len() != 16 || !arrival.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id = MessageId::parse(fields.next()?).ok()?;
        let mut ps = fields.next()?.chars();
        let precedence = Precedence::from_letter(ps.next()?)?;
        let persistence = Persistence::from_letter(ps.next()?)?;
        let addressed = match ps.next()? {
            'f' => false,
            'd' => true,
            _ => return None,
        };
        if ps.next().is_some() {
            return None;
        }
        let created: i64 = fields.next()?.parse().ok()?;
        let expiry: i64 = fields.next()?.parse().ok()?;
        let size: u64 = fields.next()?.parse().ok()?;
        if fields.next().is_some() || created < 0 || expiry < 0 {
            return None;
        }
        Some(EntryName {
            arrival: arrival.parse().ok()?,
            id,
            precedence,
            persistence,
            addressed,
            created: Timestamp::from_micros(created),
            expiry: (expiry != 0).then(|| Timestamp::from_micros(expiry)),
            size,
        })
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }

    /// Send order: precedence, then arrival.
    pub fn send_order_key(&self) -> (usize, u64) {
        (self.precedence.rank(), self.arrival)
    }

    /// Age order for eviction ("oldest"): creation time, then arrival.
    pub fn age_key(&self) -> (Timestamp, u64) {
        (self.created, self.arrival)
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016}.{}.{}{}{}.{}.{}.{}",
            self.arrival,
            self.id,
            self.precedence.letter(),
            self.persistence.letter(),
            if self.addressed { 'd' } else { 'f' },
            self.created.as_micros(),
            self.expiry.map_or(0, |e| e.as_micros()),
            self.size
        )
    }
}

/// Where a sent message stands: awaiting an acknowledgement from `peer`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SentInfo {
    pub attempts: u32,
    pub last_sent: Timestamp,
    pub peer: Name,
}

/// Splits a sent/ file name into the entry name and its sent information.
pub fn parse_sent(name: &str) -> Option<(EntryName, SentInfo)> {
    let fields: Vec<&str> = name.splitn(9, '.').collect();
    if fields.len() != 9 {
        return None;
    }
    let entry = EntryName::parse(&fields[..6].join("."))?;
    // A time of sending past year 9999 is no time this spool wrote (and
    // would not survive writing back): the name is not one of ours.
    let last_sent: i64 = fields[7].parse().ok()?;
    if !(0..=253_402_300_799).contains(&last_sent) {
        return None;
    }
    let info = SentInfo {
        attempts: fields[6].parse().ok()?,
        last_sent: Timestamp::from_secs(last_sent),
        peer: Name::new("peer", fields[8]).ok()?,
    };
    Some((entry, info))
}

/// The sent/ file name for `entry` with `info`.
pub fn sent_file_name(entry: &EntryName, info: &SentInfo) -> String {
    format!(
        "{entry}.{}.{}.{}",
        info.attempts,
        info.last_sent.as_secs(),
        info.peer
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = EntryName {
            arrival: 1_764_000_312_123_456,
            id: MessageId::parse("20261124T160512-123456-3f9a2c7b1e4d5a60").unwrap(),
            precedence: Precedence::Bulk,
            persistence: Persistence::High,
            addressed: true,
            created: Timestamp::from_micros(1_764_000_312_123_000),
            expiry: Some(Timestamp::from_micros(1_764_086_712_000_000)),
            size: 2411,
        };
        let text = n.to_string();
        assert_eq!(
            text,
            "1764000312123456.20261124T160512-123456-3f9a2c7b1e4d5a60.bhd.1764000312123000.1764086712000000.2411"
        );
        assert_eq!(EntryName::parse(&text), Some(n.clone()));
        let never = EntryName { expiry: None, ..n };
        assert_eq!(EntryName::parse(&never.to_string()), Some(never.clone()));
        let info = SentInfo {
            attempts: 3,
            last_sent: Timestamp::from_secs(1_764_000_400),
            peer: Name::new("peer", "hub.site-2").unwrap(),
        };
        let sent = sent_file_name(&never, &info);
        assert_eq!(parse_sent(&sent), Some((never.clone(), info)));
        assert_eq!(
            EntryName::parse(&sent),
            None,
            "a sent name is not a queue name"
        );
        assert_eq!(parse_sent(&never.to_string()), None);
    }

    #[test]
    fn foreign_names_are_not_entries() {
        for bad in [
            "",
            "x",
            "README",
            "1764000312123456.id.nn.1.0",
            "1764000312123456.id.xn.1.0.5",
            "1764000312123456.id.nn.1.0.5.reason",
            "176400031212345.id.nn.1.0.5",
        ] {
            assert_eq!(EntryName::parse(bad), None, "{bad}");
        }
    }

    /// Found by the `spool_name` fuzz target: a sent name whose time of
    /// sending is past what a timestamp holds parsed to a time that wrote
    /// back differently; such a name is not one of ours.
    #[test]
    fn a_sent_time_out_of_range_is_not_a_sent_name() {
        let crash = "5207328827818961.2nnl.nnf.521514.1520755734.14.1520755734.17552507377975778.nnn-7759718968nf.5";
        assert_eq!(parse_sent(crash), None);
        let fine = "5207328827818961.2nnl.nnf.521514.1520755734.14.3.1764000000.hub.x";
        let (e, info) = parse_sent(fine).expect("a sent name");
        assert_eq!(sent_file_name(&e, &info), fine);
    }
}
