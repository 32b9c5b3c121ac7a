//! Message IDs: unique across components and time, sortable by creation time.
//!
//! Form of the IDs rs mints: `YYYYMMDDTHHMMSS-uuuuuu-RRRRRRRRRRRRRRRR`, the UTC
//! creation time to the microsecond followed by 64 random bits in hex. Fixed
//! width, so lexical order is creation order; 64 random bits make a collision
//! between two components minting in the same microsecond negligible
//! (birthday bound: 2^32 IDs in one microsecond).
//!
//! IDs minted elsewhere are accepted if they are 1–80 characters of
//! `[A-Za-z0-9_-]` not starting with `-`: safe in file names, Maildir names
//! and MIME Content-IDs.

use std::fmt;

use super::{Error, Result};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

impl MessageId {
    /// Mints a fresh ID for a message created at `created`.
    pub fn mint(created: Timestamp) -> MessageId {
        let mut random = [0u8; 8];
        // The OS random source does not fail on Linux once booted; if it ever
        // did, fall back to mixing the PID and the clock rather than abort.
        if getrandom::fill(&mut random).is_err() {
            let mix = (u64::from(std::process::id()) << 32)
                ^ crate::time::system_now().as_micros() as u64;
            random = mix.to_be_bytes();
        }
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        MessageId(format!("{}-{}", created.to_id_prefix(), hex))
    }

    pub fn parse(text: &str) -> Result<MessageId> {
        let invalid = |reason: &str| Error::Invalid {
            field: "id",
            reason: format!("`{}`: {}", text.escape_debug(), reason),
        };
        if text.is_empty() || text.len() > 80 {
            return Err(invalid("must be 1 to 80 characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("may hold only letters, digits, - and _"));
        }
        if text.starts_with('-') {
            return Err(invalid("must not start with -"));
        }
        Ok(MessageId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl std::str::FromStr for MessageId {
    type Err = Error;
    fn from_str(s: &str) -> Result<MessageId> {
        MessageId::parse(s)
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_parse_sort_and_differ() {
        let t = Timestamp::parse("2026-11-24T16:05:12.123456Z").unwrap();
        let a = MessageId::mint(t);
        let b = MessageId::mint(t);
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("20261124T160512-123456-"));
        assert_eq!(MessageId::parse(a.as_str()).unwrap(), a);
        let later = MessageId::mint(t.saturating_add(std::time::Duration::from_micros(1)));
        assert!(a < later && b < later);
    }

    #[test]
    fn foreign_ids_must_be_file_safe() {
        for bad in [
            "",
            "../etc",
            "a.b",
            "a b",
            "-rf",
            "x/y",
            "é",
            &"x".repeat(81),
        ] {
            assert!(MessageId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(MessageId::parse("ABC_123-x").is_ok());
    }
}
