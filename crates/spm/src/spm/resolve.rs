//! A client's view of a map: the locations of a service valid now, in the
//! order to try them (each entry's primary, then its backups; entries in
//! map order), for this client's partition.

use super::{Client, Entry, Location, Map, ServiceId, Sphere, Version};
use crate::time::Timestamp;

/// One location to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved<'m> {
    pub entry: &'m Entry,
    pub location: &'m Location,
    /// 0 for an entry's primary, then 1, 2, ... for its backups.
    pub backup: usize,
    pub url: String,
}

/// What a client asks for: a service, and optionally its version and sphere
/// (without a version, the highest the map offers).
#[derive(Clone, Debug)]
pub struct Query<'a> {
    pub service: &'a ServiceId,
    pub version: Option<Version>,
    pub sphere: Option<&'a Sphere>,
}

/// The locations of the service `q` names, valid at `now`, that `client`
/// may use, in order; each URL once.
pub fn resolve<'m>(
    map: &'m Map,
    q: &Query<'_>,
    client: &Client<'_>,
    now: Timestamp,
) -> Vec<Resolved<'m>> {
    let usable = |e: &&Entry| {
        e.key.service == *q.service
            && q.sphere.is_none_or(|s| e.key.sphere == *s)
            && e.valid.contains(now)
            && e.partition.admits(client)
    };
    let version = q.version.or_else(|| {
        map.entries
            .iter()
            .filter(usable)
            .map(|e| e.key.version)
            .max()
    });
    let mut out: Vec<Resolved<'m>> = Vec::new();
    for e in map
        .entries
        .iter()
        .filter(usable)
        .filter(|e| Some(e.key.version) == version)
    {
        let n = e.locations.len();
        let start = match (e.partition.equivalent, client.id) {
            (true, Some(id)) => super::generate::spread(id, n),
            _ => 0,
        };
        for k in 0..n {
            let location = &e.locations[(start + k) % n];
            let url = location.url();
            if out.iter().all(|r| r.url != url) {
                out.push(Resolved {
                    entry: e,
                    location,
                    backup: k,
                    url,
                });
            }
        }
    }
    out
}
