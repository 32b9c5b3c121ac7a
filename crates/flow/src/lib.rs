//! The flow of messages: routing, the receive pipeline, the outbound runner, acknowledgements, and the seams the features plug into.
//!
//! The modules of the crates below are re-exported under their own names,
//! so that every path in this crate reads `crate::module` (ARCHITECTURE.md,
//! "Crates").

pub mod ack;
pub mod custody;
pub mod outbound;
pub mod progress;
pub mod receive;
pub mod route;

pub use rs_wire::{
    config, exit, filter, keytext, map, message, protect, queue, spool, stream, time, transport,
    units,
};
