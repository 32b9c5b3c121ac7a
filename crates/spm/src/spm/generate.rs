//! The map a client gets, generated from the registry.
//!
//! Live publications of one service with the same validity range and
//! partition make one entry; its locations are ordered by priority, then
//! host name (the first is the primary, the rest its backups in order).
//! A host marked heavily loaded keeps only the services no other host
//! offers. For a given client the map holds only the entries its
//! partition admits (the client ID's last digit, its zone, the function it
//! asks for). An entry marked `equivalent` keeps that mark: each client
//! then starts at a location of its own (`resolve`, by a digest of its
//! ID), so clients spread over equivalent servers.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::registry::{Publication, Registry};
use super::{Client, Entry, Map, MapType, Partition, Result, ServiceKey, Validity};
use crate::time::Timestamp;

/// The map of `registry` for `client` (every field `None`: the whole map,
/// partitions marked for the clients to apply), written as `kind`.
pub fn generate(
    registry: &Registry,
    client: &Client<'_>,
    kind: MapType,
    now: Timestamp,
) -> Result<Map> {
    let live: Vec<&Publication> = registry
        .publications
        .iter()
        .filter(|p| !p.withdrawn)
        .collect();
    // A loaded host keeps a service only if no host that is not loaded
    // offers it.
    let offered_elsewhere = |p: &Publication| {
        live.iter()
            .any(|q| q.key == p.key && !registry.loaded.contains(&q.host))
    };
    let kept = live
        .iter()
        .filter(|p| !registry.loaded.contains(&p.host) || !offered_elsewhere(p));
    let mut groups: BTreeMap<(ServiceKey, Validity, Partition), Vec<&Publication>> =
        BTreeMap::new();
    for p in kept {
        if p.partition.admits(client) {
            groups
                .entry((p.key.clone(), p.valid, p.partition.clone()))
                .or_default()
                .push(p);
        }
    }
    let mut entries = Vec::with_capacity(groups.len());
    for ((key, valid, partition), mut ps) in groups {
        ps.sort_by(|a, b| (a.priority, &a.host).cmp(&(b.priority, &b.host)));
        let mut locations: Vec<_> = ps.iter().map(|p| p.location.clone()).collect();
        locations.dedup();
        locations.truncate(super::limits::LOCATIONS);
        entries.push(Entry {
            epoch: registry.epochs.get(&key).copied().unwrap_or(1),
            key,
            locations,
            valid,
            data: ps[0].data.clone(),
            partition,
        });
    }
    let map = Map {
        revision: registry.revision,
        generated: Some(now),
        kind,
        entries,
    };
    map.check()?;
    Ok(map)
}

/// Where a client starts among `n` equivalent locations.
pub fn spread(client: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let d = Sha256::digest(client.as_bytes());
    (u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) % n as u64) as usize
}
