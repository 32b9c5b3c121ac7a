//! rs: reliable store-and-forward messaging between badly connected sites.
//!
//! Modules follow a message's journey: `message` (model, XML, MIME envelope,
//! IDs) → `spool` (areas, atomic writes, the lock, recovery, quarantine) →
//! `queue` (pure policy: order, eviction, throttle) → `transport` (the seam
//! routes plug into). `cli` and `commands` are the command-line front ends.
//! See ARCHITECTURE.md for the map and the invariants.

pub mod ack;
pub mod bulk;
pub mod cli;
pub mod commands;
pub mod compose;
pub mod config;
pub mod custody;
pub mod cycle;
pub mod error;
pub mod filter;
pub mod infra;
pub mod message {
    //! The model's messages (`rs_model::message`), and reading and
    //! writing them in files (`crate::stream`).
    pub use crate::stream;
    pub use rs_model::message::*;
}
pub mod outbound;
pub mod output;
pub mod progress;
pub mod protect;
pub use rs_model::{exit, keytext, map, queue, units};
pub mod receive;
pub mod reconfig;
pub mod relay;
pub mod route;
pub mod session;
pub mod shared;
pub mod spm;
pub mod spool;
pub use rs_model::time;
pub mod stream;
pub mod transport;
