//! The queue's settings (`[queue]`, `[throttle]` in `config.toml`): what
//! its policy decides with.

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::message::Precedence;
use crate::time::Window;
use crate::units::Size;

/// Size limits on what the spool holds for sending (queued, held, and sent
/// awaiting acknowledgement). Absent means unlimited.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueueLimits {
    pub max_bytes: Option<Size>,
    pub max_messages: Option<u64>,
    #[serde(default)]
    pub urgent: Limit,
    #[serde(default)]
    pub normal: Limit,
    #[serde(default)]
    pub bulk: Limit,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub max_bytes: Option<Size>,
    pub max_messages: Option<u64>,
}

impl QueueLimits {
    pub fn total(&self) -> Limit {
        Limit {
            max_bytes: self.max_bytes,
            max_messages: self.max_messages,
        }
    }

    pub fn for_precedence(&self, p: Precedence) -> Limit {
        match p {
            Precedence::Urgent => self.urgent,
            Precedence::Normal => self.normal,
            Precedence::Bulk => self.bulk,
        }
    }
}

impl Limit {
    pub fn is_unlimited(&self) -> bool {
        self.max_bytes.is_none() && self.max_messages.is_none()
    }

    /// Whether `count` messages of `bytes` in all stay within the limit.
    pub fn admits(&self, count: u64, bytes: u64) -> bool {
        self.max_bytes.is_none_or(|m| bytes <= m.0) && self.max_messages.is_none_or(|m| count <= m)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.max_bytes, self.max_messages) {
            (None, None) => f.write_str("unlimited"),
            (Some(b), None) => write!(f, "max_bytes {b}"),
            (None, Some(m)) => write!(f, "max_messages {m}"),
            (Some(b), Some(m)) => write!(f, "max_bytes {b}, max_messages {m}"),
        }
    }
}

/// Limits on sending. All unlimited by default.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub max_bytes_per_hour: Option<Size>,
    pub max_bytes_per_day: Option<Size>,
    pub max_messages_per_hour: Option<u64>,
    pub max_messages_per_day: Option<u64>,
    /// A larger message is refused at `rs-send`.
    pub max_message_bytes: Option<Size>,
    /// Local times of day when sending is allowed; empty means always.
    #[serde(default, deserialize_with = "windows")]
    pub windows: Vec<Window>,
}

fn windows<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Window>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    v.iter()
        .map(|w| Window::parse(w).map_err(serde::de::Error::custom))
        .collect()
}
