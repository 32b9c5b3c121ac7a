//! Names of outbound files. The name carries everything the queue policy
//! needs, so listing, accounting, ordering and eviction read directories,
//! never file contents:
//!
//! ```text
//! ARRIVAL.ID.PS.CREATED.EXPIRY.SIZE
//! 1764000312123456.20261124T160512-123456-3f9a2c7b1e4d5a60.nn.1764000312123456.0.2411
//! ```
//! - ARRIVAL: 16-digit arrival stamp (microseconds, strictly increasing per
//!   spool), the tie-breaker that keeps arrival order within a precedence;
//! - ID: the message ID;
//! - PS: precedence letter (u, n, b) and persistence letter (n, h);
//! - CREATED, EXPIRY: microseconds since the epoch (EXPIRY 0: never);
//! - SIZE: bytes of the envelope file.
//!
//! The same name is kept when the file moves between outbound areas (queue,
//! hold, sent) and into dead/.

use std::fmt;

use crate::message::{MessageId, Persistence, Precedence};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryName {
    pub arrival: u64,
    pub id: MessageId,
    pub precedence: Precedence,
    pub persistence: Persistence,
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
            "{:016}.{}.{}{}.{}.{}.{}",
            self.arrival,
            self.id,
            self.precedence.letter(),
            self.persistence.letter(),
            self.created.as_micros(),
            self.expiry.map_or(0, |e| e.as_micros()),
            self.size
        )
    }
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
            created: Timestamp::from_micros(1_764_000_312_123_000),
            expiry: Some(Timestamp::from_micros(1_764_086_712_000_000)),
            size: 2411,
        };
        let text = n.to_string();
        assert_eq!(
            text,
            "1764000312123456.20261124T160512-123456-3f9a2c7b1e4d5a60.bh.1764000312123000.1764086712000000.2411"
        );
        assert_eq!(EntryName::parse(&text), Some(n.clone()));
        let never = EntryName { expiry: None, ..n };
        assert_eq!(EntryName::parse(&never.to_string()), Some(never));
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
}
