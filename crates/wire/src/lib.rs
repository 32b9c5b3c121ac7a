//! What goes over the wire: protection (OpenPGP, S/MIME) and the route clients (directory, SMTP, HTTP, tus).
//!
//! The modules of the crates below are re-exported under their own names,
//! so that every path in this crate reads `crate::module` (ARCHITECTURE.md,
//! "Crates").

pub mod protect;
pub mod transport;

pub use rs_spool::{
    config, exit, filter, keytext, map, message, queue, spool, stream, time, units,
};
