//! What `rs-spm`'s subcommands do, as library calls that return data: the
//! registry read and changed under its lock (publish, withdraw, load,
//! list), the map a client gets from it, a map file read and checked, and
//! the map an export is made from. The command parses, calls, prints.
//!
//! Invariants: the registry is only ever changed under its lock
//! (`spm/registry.lock`), and written back (durably, through the spool's
//! tmp/) only when its revision changed; a map file is read bounded
//! ([`super::limits::MAP_BYTES`] + 1 bytes at most) and taken only once
//! checked. Nothing here prints.

use std::path::{Path, PathBuf};

use super::registry::{self, Publication, Published, Registry};
use super::{fetch, generate, xml, Client, Map, MapType, ServiceKey};
use crate::time::Timestamp;

/// Why an `rs-spm` operation could not be done; each names the file it
/// concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry's lock could not be taken.
    #[error("cannot lock {path}: {err}")]
    Lock { path: PathBuf, err: std::io::Error },
    /// A registry or map file that cannot be used as it is.
    #[error("{}: {error}", .path.display())]
    File { path: PathBuf, error: super::Error },
    /// A map file that cannot be read (`missing`: there is none yet).
    #[error("cannot read {}: {reason}", .path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// What was asked is not as documented (a publication the registry
    /// refuses).
    #[error("{0}")]
    Refused(super::Error),
}

/// Where the registry and the temporary files of a spool are.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    /// The spool's directory (holding `spm/`).
    pub root: &'a Path,
    /// The spool's tmp/, where the registry is written before it is
    /// renamed into place.
    pub tmp: &'a Path,
}

/// The registry, read under its lock, changed by `change`, written back
/// when its revision changed; what `change` returned and the registry as
/// it is now.
fn with_registry<T>(
    place: Place<'_>,
    now: Timestamp,
    change: impl FnOnce(&mut Registry) -> Result<T, Error>,
) -> Result<(T, Registry), Error> {
    let _lock = registry::Lock::take(place.root).map_err(|err| Error::Lock {
        path: place.root.join("spm/registry.lock"),
        err,
    })?;
    let path = registry::path(place.root);
    let file = |error| Error::File {
        path: path.clone(),
        error,
    };
    let mut r = Registry::load(&path).map_err(file)?;
    let revision = r.revision;
    let out = change(&mut r)?;
    if r.revision != revision {
        r.save(place.tmp, &path, now).map_err(file)?;
    }
    Ok((out, r))
}

/// The registry as it stands (read under its lock).
pub fn registry(place: Place<'_>, now: Timestamp) -> Result<Registry, Error> {
    with_registry(place, now, |_| Ok(())).map(|(_, r)| r)
}

/// Publishes a location of a service (`lost_state`: the service lost its
/// state, which changes its epoch); the epoch it has now, and the registry.
pub fn publish(
    place: Place<'_>,
    publication: Publication,
    lost_state: bool,
    now: Timestamp,
) -> Result<(Published, Registry), Error> {
    with_registry(place, now, |r| {
        r.publish(publication, lost_state).map_err(Error::Refused)
    })
}

/// Withdraws what `host` publishes (of the service `key` only, when
/// given); how many publications were withdrawn, and the registry.
pub fn withdraw(
    place: Place<'_>,
    host: &str,
    key: Option<&ServiceKey>,
    now: Timestamp,
) -> Result<(usize, Registry), Error> {
    with_registry(place, now, |r| Ok(r.withdraw(host, key)))
}

/// Marks `host` heavily loaded or not; whether that changed anything.
pub fn set_loaded(
    place: Place<'_>,
    host: &str,
    loaded: bool,
    now: Timestamp,
) -> Result<bool, Error> {
    with_registry(place, now, |r| Ok(r.set_loaded(host, loaded))).map(|(changed, _)| changed)
}

/// The map of type `kind` that `client` gets from the registry.
pub fn generate(
    place: Place<'_>,
    client: &Client<'_>,
    kind: MapType,
    now: Timestamp,
) -> Result<Map, Error> {
    let r = registry(place, now)?;
    generate::generate(&r, client, kind, now).map_err(|error| Error::File {
        path: registry::path(place.root),
        error,
    })
}

/// The map a zone export is made from, and the file it came from: the
/// registry's standard map for every client when this spool keeps a
/// registry, else the map the site holds.
pub fn map_to_export(place: Place<'_>, now: Timestamp) -> Result<(Map, PathBuf), Error> {
    let reg = registry::path(place.root);
    if !reg.exists() {
        let path = fetch::map_path(place.root);
        return Ok((read_map(&path)?, path));
    }
    let m = generate(place, &Client::default(), MapType::Standard, now)?;
    Ok((m, reg))
}

/// A map file, read (bounded) and checked.
pub fn read_map(path: &Path) -> Result<Map, Error> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            std::io::Read::read_to_end(
                &mut std::io::Read::take(f, super::limits::MAP_BYTES as u64 + 1),
                &mut bytes,
            )
        })
        .map_err(|e| Error::Unreadable {
            path: path.to_path_buf(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "no map here yet (rs-spm fetch, or --map FILE)".into()
            } else {
                e.to_string()
            },
        })?;
    let file = |error| Error::File {
        path: path.to_path_buf(),
        error,
    };
    if bytes.len() > super::limits::MAP_BYTES {
        return Err(file(super::Error::TooLarge {
            what: "bytes of a map",
            limit: super::limits::MAP_BYTES,
        }));
    }
    xml::map_from_xml(&bytes).map_err(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_map_says_how_to_get_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.xml");
        let e = read_map(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read {}: no map here yet (rs-spm fetch, or --map FILE)",
                path.display()
            )
        );
    }

    #[test]
    fn a_map_too_large_is_refused_whole_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.xml");
        std::fs::write(&path, vec![b' '; super::super::limits::MAP_BYTES + 1]).unwrap();
        match read_map(&path).unwrap_err() {
            Error::File { path: p, error } => {
                assert_eq!(p, path);
                assert!(matches!(error, super::super::Error::TooLarge { .. }));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_registry_lists_nothing_and_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let place = Place {
            root: dir.path(),
            tmp: &tmp,
        };
        let r = registry(place, Timestamp::from_micros(0)).unwrap();
        assert!(r.publications.is_empty());
        assert!(!registry::path(dir.path()).exists());
    }
}
