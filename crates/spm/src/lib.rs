//! The service point map: the file, the registry, resolving, fetching, the DNS zone, epochs, the `spm:` route, and reconfiguration.
//!
//! The modules of the crates below are re-exported under their own names,
//! so that every path in this crate reads `crate::module` (ARCHITECTURE.md,
//! "Crates").

pub mod reconfig;
pub mod spm;

pub use rs_flow::{
    ack, config, custody, exit, filter, keytext, map, message, outbound, progress, protect, queue,
    receive, route, spool, stream, time, transport, units,
};
