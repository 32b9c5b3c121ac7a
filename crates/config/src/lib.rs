//! rs's configuration: `config.toml` read, checked and written (sites, peers, routes, every section), and the relay's rules (`filter`).
//!
//! The modules of the crates below are re-exported under their own names,
//! so that every path in this crate reads `crate::module` (ARCHITECTURE.md,
//! "Crates").

pub mod access;
pub mod config;
pub mod filter;

pub use rs_model::{exit, keytext, map, message, queue, time, units};
