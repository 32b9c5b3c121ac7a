//! rs: reliable store-and-forward messaging between badly connected sites.
//!
//! This crate composes the layers below it (ARCHITECTURE.md, "Crates"):
//! `rs-model` (messages, IDs, time, queue policy) → `rs-config` →
//! `rs-spool` → `rs-wire` (protection, route clients) → `rs-flow` (the
//! receive pipeline, the outbound runner, acknowledgements, the seams) →
//! the features (`rs-bulk`, `rs-infra`, `rs-relay`, `rs-spm`,
//! `rs-shared`). Here: what composes them (`compose`), the sending cycle
//! (`cycle`), the HTTP server and CGI (`session`), and the command line
//! (`cli`, `commands`, `output`, `error`). Every module below is
//! re-exported under its own name, so `rs::spool` or `rs::receive` read as
//! before.

pub mod cli;
pub mod commands;
pub mod compose;
pub mod cycle;
pub mod error;
pub mod output;
pub mod session;

pub use rs_bulk::bulk;
pub use rs_flow::{
    ack, config, custody, exit, filter, keytext, map, message, outbound, progress, protect, queue,
    receive, route, spool, stream, time, transport, units,
};
pub use rs_infra::infra;
pub use rs_relay::relay;
pub use rs_shared::shared;
pub use rs_spm::{reconfig, spm};
