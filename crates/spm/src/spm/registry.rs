//! The provider's registry (`spm/registry.xml` in its spool): what each
//! host published, each service's epoch, and the hosts marked heavily
//! loaded. Every change bumps the registry's revision (the revision of the
//! maps generated from it) and is written whole (tmp/, fsync, rename,
//! fsync) under the registry's lock (`spm/registry.lock`).
//!
//! Epoch rules (SPEC section 10): a service's epoch names the set of
//! locations its clients may hold, and the state they hold there. Its
//! first publication has epoch one. Each publication remembers the last
//! epoch it was live in; the locations of the current epoch are those
//! live now and those withdrawn without the epoch changing since. A
//! publication changes the epoch unless the same host offers the same
//! location that is already one of the current epoch's: a host publishing
//! it elsewhere (its location changed), a host offering it beside the
//! others (one server becomes two), a host taking over from hosts that
//! withdrew (it moved), or a restart that lost the state clients hold
//! (`lost_state`). A withdrawal changes nothing (clients fail over to the
//! backups), and a host that comes back where it was before the epoch
//! changed keeps it (a restart of a stateless service).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::xml::{self, EntryParts, LoadedXml, PublicationFields, RegistryXml, ServiceXml};
use super::{limits, Error, Location, Partition, Result, ServiceKey, Validity};
use crate::time::Timestamp;

/// What a host published for a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    pub key: ServiceKey,
    /// The publishing host's name: with the key, what identifies it.
    pub host: String,
    /// Lower first: the order of the locations in the map (then by host).
    pub priority: u32,
    pub location: Location,
    pub valid: Validity,
    pub data: Option<String>,
    pub partition: Partition,
    pub published: Timestamp,
    /// Withdrawn (the host shut down): kept, so that its return at the
    /// same location is recognised; left out of maps.
    pub withdrawn: bool,
    /// The last epoch of its service it was live in (what [`Registry::publish`]
    /// sets; a live publication's is always its service's epoch). 0: not
    /// known (a registry written before it was kept), so that a withdrawn
    /// publication's return changes the epoch.
    pub epoch: u64,
}

/// The registry, as loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    pub revision: u64,
    pub epochs: BTreeMap<ServiceKey, u64>,
    pub publications: Vec<Publication>,
    /// Hosts marked heavily loaded.
    pub loaded: BTreeSet<String>,
}

/// What a publication did to its service's epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub epoch: u64,
    /// Why the epoch changed, if it did.
    pub bumped: Option<&'static str>,
}

/// Where the registry lives in a spool.
pub fn path(spool_dir: &Path) -> PathBuf {
    spool_dir.join("spm").join("registry.xml")
}

/// The registry's lock, held while it is read, changed and written.
pub struct Lock(#[allow(dead_code)] std::fs::File);

impl Lock {
    pub fn take(spool_dir: &Path) -> std::io::Result<Lock> {
        let dir = spool_dir.join("spm");
        std::fs::create_dir_all(&dir)?;
        crate::spool::durable::lock_exclusive(&dir.join("registry.lock")).map(Lock)
    }
}

impl Registry {
    /// Reads the registry at `path`; none yet is an empty one.
    pub fn load(path: &Path) -> Result<Registry> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::default()),
            Err(e) => return Err(Error::Map(format!("{}: {e}", path.display()))),
        };
        let at = |e: Error| Error::Map(format!("{}: {e}", path.display()));
        let x = xml::registry_from_xml(&bytes).map_err(at)?;
        if x.publication.len() > limits::ENTRIES {
            return Err(at(Error::TooLarge {
                what: "publications",
                limit: limits::ENTRIES,
            }));
        }
        let mut r = Registry {
            revision: x.revision.parse().unwrap_or(0),
            ..Registry::default()
        };
        for s in &x.epoch {
            let key = ServiceKey {
                service: super::ServiceId::new(&s.service).map_err(at)?,
                version: super::Version::parse(&s.version).map_err(at)?,
                sphere: super::Sphere::new(&s.sphere).map_err(at)?,
            };
            r.epochs.insert(key, s.epoch.parse().unwrap_or(1));
        }
        for p in &x.publication {
            let f = xml::publication_fields(p).map_err(at)?;
            let location = f
                .parts
                .locations
                .first()
                .cloned()
                .ok_or_else(|| at(Error::Map("a publication has no location".into())))?;
            r.publications.push(Publication {
                key: f.key,
                host: f.host,
                priority: f.priority,
                location,
                valid: f.parts.valid,
                data: f.parts.data,
                partition: f.parts.partition,
                published: f.published.unwrap_or(Timestamp::EPOCH),
                withdrawn: f.withdrawn,
                epoch: f.parts.epoch.unwrap_or(0),
            });
        }
        // A live publication belongs to its service's current epoch
        // whatever the file says.
        for p in &mut r.publications {
            if !p.withdrawn {
                p.epoch = r.epochs.get(&p.key).copied().unwrap_or(0);
            }
        }
        r.loaded = x.loaded.into_iter().map(|l| l.host).collect();
        Ok(r)
    }

    /// Writes the registry whole, durably, through `tmp`.
    pub fn save(&self, tmp: &Path, path: &Path, now: Timestamp) -> Result<()> {
        let x = RegistryXml {
            format: super::FORMAT.to_string(),
            revision: self.revision.to_string(),
            epoch: self
                .epochs
                .iter()
                .map(|(k, e)| ServiceXml {
                    service: k.service.as_str().to_string(),
                    version: k.version.to_string(),
                    sphere: k.sphere.as_str().to_string(),
                    epoch: e.to_string(),
                })
                .collect(),
            publication: self
                .publications
                .iter()
                .map(|p| {
                    xml::publication_xml(&PublicationFields {
                        key: p.key.clone(),
                        host: p.host.clone(),
                        priority: p.priority,
                        published: Some(p.published),
                        withdrawn: p.withdrawn,
                        parts: EntryParts {
                            epoch: Some(p.epoch),
                            locations: vec![p.location.clone()],
                            valid: p.valid,
                            data: p.data.clone(),
                            partition: p.partition.clone(),
                        },
                    })
                })
                .collect(),
            loaded: self
                .loaded
                .iter()
                .map(|h| LoadedXml { host: h.clone() })
                .collect(),
        };
        let text = xml::registry_to_xml(&x);
        let dir = path
            .parent()
            .ok_or_else(|| Error::Map(format!("{}: no directory", path.display())))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::spool::durable::write_durable(tmp, dir, &name, text.as_bytes(), now.as_micros())
            .map_err(|e| Error::Map(e.to_string()))?;
        Ok(())
    }

    /// The publications of `key` that are live (not withdrawn).
    fn live<'a>(&'a self, key: &'a ServiceKey) -> impl Iterator<Item = &'a Publication> + 'a {
        self.publications
            .iter()
            .filter(move |p| p.key == *key && !p.withdrawn)
    }

    /// Records `p` (replacing what its host published for the service
    /// before), applying the epoch rules.
    pub fn publish(&mut self, p: Publication, lost_state: bool) -> Result<Published> {
        super::Entry {
            key: p.key.clone(),
            epoch: 0,
            locations: vec![p.location.clone()],
            valid: p.valid,
            data: p.data.clone(),
            partition: p.partition.clone(),
        }
        .check()?;
        let before = self
            .publications
            .iter()
            .position(|q| q.key == p.key && q.host == p.host);
        let current = self.epochs.get(&p.key).copied().unwrap_or(0);
        let others = self.live(&p.key).any(|q| q.host != p.host);
        let bumped = match before.map(|i| &self.publications[i]) {
            _ if current == 0 => None,
            _ if lost_state => Some("a restart lost the state its clients hold"),
            Some(old) if old.location == p.location && old.epoch == current => None,
            Some(old) if old.location != p.location => Some("its location changed"),
            _ if others => Some("one more host offers it (one server becomes two)"),
            _ => Some("it moved: its clients hold other locations"),
        };
        if before.is_none() && self.publications.len() >= limits::ENTRIES {
            return Err(Error::TooLarge {
                what: "publications",
                limit: limits::ENTRIES,
            });
        }
        let epoch = match (current, bumped) {
            (0, _) => 1,
            (e, Some(_)) => e + 1,
            (e, None) => e,
        };
        self.epochs.insert(p.key.clone(), epoch);
        // What is live stays in the clients' set of locations: it belongs
        // to the new epoch too.
        for q in &mut self.publications {
            if q.key == p.key && !q.withdrawn {
                q.epoch = epoch;
            }
        }
        let p = Publication { epoch, ..p };
        match before {
            Some(i) => self.publications[i] = p,
            None => self.publications.push(p),
        }
        self.revision += 1;
        Ok(Published { epoch, bumped })
    }

    /// Withdraws what `host` published (for `key` only, or everything);
    /// returns how many publications it withdrew.
    pub fn withdraw(&mut self, host: &str, key: Option<&ServiceKey>) -> usize {
        let mut n = 0;
        for p in &mut self.publications {
            if p.host == host && !p.withdrawn && key.is_none_or(|k| p.key == *k) {
                p.withdrawn = true;
                n += 1;
            }
        }
        if n > 0 {
            self.revision += 1;
        }
        n
    }

    /// Marks `host` heavily loaded (or not); returns whether that changed.
    pub fn set_loaded(&mut self, host: &str, loaded: bool) -> bool {
        let changed = if loaded {
            self.loaded.insert(host.to_string())
        } else {
            self.loaded.remove(host)
        };
        if changed {
            self.revision += 1;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spm::{ServiceId, Sphere, Version};

    fn key(s: &str) -> ServiceKey {
        ServiceKey {
            service: ServiceId::new(s).unwrap(),
            version: Version::parse("1.0").unwrap(),
            sphere: Sphere::new("provider.example").unwrap(),
        }
    }

    fn publication(s: &str, host: &str, port: u16) -> Publication {
        Publication {
            key: key(s),
            host: host.into(),
            priority: 0,
            location: Location {
                host: Some(host.into()),
                address: None,
                port: Some(port),
                path: None,
                url: None,
            },
            valid: Validity::default(),
            data: None,
            partition: Partition::default(),
            published: Timestamp::from_secs(1),
            withdrawn: false,
            epoch: 0,
        }
    }

    #[test]
    fn epochs_follow_location_and_lost_state_not_restarts() {
        let mut r = Registry::default();
        let e = |r: &mut Registry, p, lost| r.publish(p, lost).unwrap().epoch;
        assert_eq!(e(&mut r, publication("inv", "h1", 443), false), 1);
        // A stateless restart at the same place: the same epoch.
        assert_eq!(e(&mut r, publication("inv", "h1", 443), false), 1);
        // A restart that lost state; a move; one server becomes two.
        assert_eq!(e(&mut r, publication("inv", "h1", 443), true), 2);
        assert_eq!(e(&mut r, publication("inv", "h1", 8443), false), 3);
        assert_eq!(e(&mut r, publication("inv", "h2", 443), false), 4);
        // A host going down withdraws everything of its own; back where it
        // was, the epoch is the one its clients knew.
        r.publish(publication("log", "h2", 443), false).unwrap();
        assert_eq!(r.withdraw("h2", None), 2);
        assert_eq!(r.epochs[&key("inv")], 4);
        assert_eq!(e(&mut r, publication("inv", "h2", 443), false), 4);
        assert_eq!(e(&mut r, publication("log", "h2", 443), false), 1);
        // Withdrawn from its only host, published on another: it moved.
        r.publish(publication("db", "h1", 443), false).unwrap();
        r.withdraw("h1", None);
        assert_eq!(e(&mut r, publication("db", "h2", 443), false), 2);
        // Back on the first host now that clients hold the second: one
        // server becomes two; the second's stateless restart keeps it.
        assert_eq!(e(&mut r, publication("db", "h1", 443), false), 3);
        r.withdraw("h2", None);
        assert_eq!(e(&mut r, publication("db", "h2", 443), false), 3);
        // The epoch moves on while the first host is away (a restart of the
        // second lost state); then the second goes too, and the first
        // comes back where it was: its clients hold the second only.
        r.withdraw("h1", None);
        assert_eq!(e(&mut r, publication("db", "h2", 443), true), 4);
        r.withdraw("h2", None);
        assert_eq!(e(&mut r, publication("db", "h1", 443), false), 5);
        // Both gone, the last one live comes back: a stateless restart.
        r.withdraw("h1", None);
        assert_eq!(e(&mut r, publication("db", "h1", 443), false), 5);
        let revision = r.revision;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("registry.xml");
        r.save(dir.path(), &p, Timestamp::from_secs(2)).unwrap();
        let back = Registry::load(&p).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.revision, revision);
    }
}
