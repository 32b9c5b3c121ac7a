//! The service point map (SPEC.md section 10): which service lives where.
//!
//! A map lists entries: a service (alphanumeric ID, version `x.y`, and the
//! sphere, the provider's domain name, it belongs to), its epoch, an
//! ordered list of locations (the primary, then backups), an optional
//! validity range, optional service-specific data (never executed by rs),
//! and the partition it is meant for (clients by the last digit of their
//! ID, a topology zone, a function). Map types 1 to 4 differ only in where
//! the service spec and the sphere are written (in each entry, or once in
//! the map's header); once read, every map is a list of complete entries
//! and resolves the same way.
//!
//! - `xml`: the file format (`<service-map format="1">`), read through the
//!   same guard as messages (no DTD, no entities, bounded depth and size).
//! - `registry`: the provider's published entries, their epochs, and the
//!   hosts marked heavily loaded (`spm/registry.xml` in the spool).
//! - `generate`: the map a client gets, partitioned for it.
//! - `resolve`: a client's ordered locations for a service, valid now.
//! - `fetch`: a site's copy of its map (`spm/map.xml`), fetched and kept;
//!   the last good one stays in use, said to be stale, when a fetch fails.
//! - `zone`: a map as a DNS zone (SRV and TXT records), for DNS servers.
//!
//! Everything in a map is hostile input until [`Map::check`] passed.

pub mod claim;
pub mod fetch;
pub mod generate;
pub mod ops;
pub mod registry;
pub mod resolve;
pub mod transport;
pub mod xml;
pub mod zone;

pub use crate::map::*;

/// The epoch of the service this site serves (`[spm] serves`), if it
/// serves one whose epoch is known: configured, or as published in the
/// registry of the spool at `spool_dir`.
pub fn served_epoch(
    config: &crate::config::Config,
    spool_dir: &std::path::Path,
) -> Result<Option<u64>> {
    let Some(sv) = &config.spm.serves else {
        return Ok(None);
    };
    if sv.epoch.is_some() {
        return Ok(sv.epoch);
    }
    let key = sv.key()?;
    let path = registry::path(spool_dir);
    if !path.exists() {
        return Ok(None);
    }
    let r = registry::Registry::load(&path)?;
    Ok(r.epochs.get(&key).copied())
}
