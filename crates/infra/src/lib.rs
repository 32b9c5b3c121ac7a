//! Registration, heartbeats and control messages between components and their provider.
//!
//! The modules of the crates below are re-exported under their own names,
//! so that every path in this crate reads `crate::module` (ARCHITECTURE.md,
//! "Crates").

pub mod infra;

pub use rs_flow::{
    ack, config, custody, exit, filter, keytext, map, message, outbound, progress, protect, queue,
    receive, route, spool, stream, time, transport, units,
};
