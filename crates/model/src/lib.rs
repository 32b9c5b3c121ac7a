//! The model every other part of rs is built on: a message (header,
//! content, its XML and its MIME envelope, in memory), message IDs, time,
//! byte sizes, and queue policy (order, admission and eviction, the
//! throttle, retransmission) as pure functions.
//!
//! Architecture invariant: nothing here touches the file system or the
//! network, and nothing here names a feature built above it. Reading and
//! writing messages in files is the spool's (`rs::stream`).

pub mod exit;
pub mod keytext;
pub mod map;
pub mod message;
pub mod queue;
pub mod time;
pub mod units;
