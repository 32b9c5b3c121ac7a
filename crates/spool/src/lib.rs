//! The spool: areas, durable writes, the lock, recovery, quarantine, the duplicate memory, leases, and messages in files (`stream`).
//!
//! The modules of the crates below are re-exported under their own names,
//! so that every path in this crate reads `crate::module` (ARCHITECTURE.md,
//! "Crates").

pub mod message {
    //! The model's messages (`rs_model::message`), and reading and
    //! writing them in files (`crate::stream`).
    pub use crate::stream;
    pub use rs_config::message::*;
}
pub mod spool;
pub mod stream;

pub use rs_config::{access, config, exit, filter, keytext, map, queue, time, units};
