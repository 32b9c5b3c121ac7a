//! The provider's registry (`spm/registry.xml` in its spool): what each
//! host published, each service's epoch, and the hosts marked heavily
//! loaded. Every change bumps the registry's revision (the revision of the
//! maps generated from it) and is written whole (tmp/, fsync, rename,
//! fsync) under the registry's lock (`spm/registry.lock`).
//!
//! Epoch rules (SPEC section 10): a service's first publication has epoch
//! one. It changes when the service's location changes (a host publishes
//! it elsewhere; a host starts offering it beside the others: one server
//! becomes two) or when a restart lost the state clients hold
//! (`lost_state`). It does not change when a host publishes the same
//! location again (a restart of a stateless service), nor when a host
//! withdraws (its clients fail over to the backups), nor when a withdrawn
//! host comes back where it was.

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
            });
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
                            epoch: None,
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
        let others = self.live(&p.key).any(|q| q.host != p.host);
        let bumped = match before.map(|i| &self.publications[i]) {
            _ if lost_state => Some("a restart lost the state its clients hold"),
            Some(old) if old.location != p.location => Some("its location changed"),
            Some(_) => None,
            None if others => Some("one more host offers it (one server becomes two)"),
            None => None,
        };
        if before.is_none() && self.publications.len() >= limits::ENTRIES {
            return Err(Error::TooLarge {
                what: "publications",
                limit: limits::ENTRIES,
            });
        }
        let epoch = self.epochs.entry(p.key.clone()).or_insert(0);
        if *epoch == 0 {
            *epoch = 1;
        } else if bumped.is_some() {
            *epoch += 1;
        }
        let epoch = *epoch;
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
        let revision = r.revision;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("registry.xml");
        r.save(dir.path(), &p, Timestamp::from_secs(2)).unwrap();
        let back = Registry::load(&p).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.revision, revision);
    }
}
