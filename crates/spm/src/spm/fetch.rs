//! A site's copy of its service point map: fetched from its source
//! (`[spm] map_url`, or one named on the command line), checked whole,
//! and kept as `spm/map.xml`, with what is known of it in `spm/map.json`.
//!
//! The last good map stays in use whatever the source does: unreachable,
//! answering an error, serving something that is not a map, an invalid
//! one, or an older revision than the one held (a replayed map would move
//! clients back to where a service no longer is). Such a map is *stale*:
//! every use says so, until a fetch succeeds again. Fetches take
//! `spm/fetch.lock`, so a cron job and a flush never write the map at once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{limits, xml, Error, Map};
use crate::config::MapSource;
use crate::spool::durable;
use crate::time::Timestamp;

/// What is known of the map held: `spm/map.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Where it came from.
    pub source: String,
    /// When it was last fetched (or found unchanged), RFC 3339.
    pub fetched: Option<String>,
    pub revision: Option<u64>,
    /// The last attempt, successful or not.
    pub tried: Option<String>,
    /// Why the last attempt failed, if it did: the map is then stale.
    pub last_error: Option<String>,
}

impl Status {
    /// When the map held was last known good.
    pub fn fetched_at(&self) -> Option<Timestamp> {
        self.fetched
            .as_deref()
            .and_then(|t| Timestamp::parse(t).ok())
    }

    /// Why the map held should not be trusted as current, if it should
    /// not: the last fetch failed, or it is older than `refresh` (or
    /// fetched "in the future": the clock moved back).
    pub fn stale(&self, refresh: Duration, now: Timestamp) -> Option<String> {
        if let Some(e) = &self.last_error {
            return Some(format!(
                "the last fetch from {} failed{}: {e}",
                self.source,
                self.tried
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            ));
        }
        match self.fetched_at() {
            None => Some("it was never fetched".into()),
            Some(t) if t > now => Some(format!(
                "it was fetched at {t}, after this clock's now ({now})"
            )),
            Some(t) if now.since(t) >= refresh => Some(format!(
                "it was fetched at {t}, more than {} ago",
                humantime::format_duration(refresh)
            )),
            Some(_) => None,
        }
    }
}

/// Why a fetch did not replace the map held.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The source did not answer with a map (down, refused, an HTTP
    /// error): try later.
    #[error("{source_name}: {reason}")]
    Unreachable { source_name: String, reason: String },
    /// The source answered with something that is not a usable map.
    #[error("{source_name}: {error}")]
    Invalid { source_name: String, error: Error },
    /// The spool could not be written.
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
}

/// What a fetch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub revision: u64,
    pub entries: usize,
    /// The revision held before, if a map was held.
    pub previous: Option<u64>,
}

/// The spool's `spm/` directory.
pub fn dir(spool_dir: &Path) -> PathBuf {
    spool_dir.join("spm")
}

/// The map a site holds.
pub fn map_path(spool_dir: &Path) -> PathBuf {
    dir(spool_dir).join("map.xml")
}

fn status_path(spool_dir: &Path) -> PathBuf {
    dir(spool_dir).join("map.json")
}

/// What is known of the map held (default when nothing is).
pub fn status(spool_dir: &Path) -> Status {
    std::fs::read(status_path(spool_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The map held, if any, checked.
pub fn held(spool_dir: &Path) -> Result<Option<Map>, Error> {
    let path = map_path(spool_dir);
    match read_bounded(&path) {
        Ok(bytes) => xml::map_from_xml(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Map(format!("cannot read {}: {e}", path.display()))),
    }
}

/// At most one byte more than a map may hold.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limits::MAP_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Fetches the map from `source` as component `me`, checks it, and (when
/// it is usable and not older than the one held, unless `accept_older`)
/// makes it the map held. The status is updated either way.
pub fn fetch(
    spool_dir: &Path,
    tmp: &Path,
    source: &MapSource,
    me: &str,
    accept_older: bool,
    now: Timestamp,
) -> Result<Fetched, Failure> {
    let spm = dir(spool_dir);
    durable::create_dir_all(&spm)?;
    let lock_path = spm.join("fetch.lock");
    let _lock = durable::lock_exclusive(&lock_path)
        .map_err(|e| crate::spool::Error::io("lock", &lock_path, e))?;
    let mut st = status(spool_dir);
    let result = fetch_locked(spool_dir, tmp, source, me, accept_older, now);
    if st.source != source.to_string() && result.is_ok() {
        st = Status::default();
    }
    st.tried = Some(now.to_rfc3339());
    match &result {
        Ok(f) => {
            st.source = source.to_string();
            st.fetched = Some(now.to_rfc3339());
            st.revision = Some(f.revision);
            st.last_error = None;
        }
        Err(Failure::Spool(_)) => {}
        Err(e) => {
            if st.source.is_empty() {
                st.source = source.to_string();
            }
            st.last_error = Some(e.to_string());
        }
    }
    let json = serde_json::to_vec_pretty(&st).expect("a status serializes");
    durable::write_durable(tmp, &spm, "map.json", &json, now.as_micros())?;
    result
}

fn fetch_locked(
    spool_dir: &Path,
    tmp: &Path,
    source: &MapSource,
    me: &str,
    accept_older: bool,
    now: Timestamp,
) -> Result<Fetched, Failure> {
    let source_name = source.to_string();
    let bytes = download(source, me)?;
    let invalid = |error: Error| Failure::Invalid {
        source_name: source_name.clone(),
        error,
    };
    if bytes.len() > limits::MAP_BYTES {
        return Err(invalid(Error::TooLarge {
            what: "bytes of a map",
            limit: limits::MAP_BYTES,
        }));
    }
    let map = xml::map_from_xml(&bytes).map_err(invalid)?;
    // What is held is trusted only as far as it checks: a damaged copy
    // does not block a good one.
    let previous = held(spool_dir).ok().flatten();
    if let Some(p) = &previous {
        if map.revision < p.revision && !accept_older {
            return Err(invalid(Error::Map(format!(
                "revision {} is older than the revision {} held: refused (a replayed map would send clients where services no longer are; rs-spm fetch --accept-older takes it)",
                map.revision, p.revision
            ))));
        }
        if map.revision == p.revision && map.entries != p.entries {
            return Err(invalid(Error::Map(format!(
                "revision {} again, with other entries than the map held of that revision: refused (every edit changes the revision)",
                map.revision
            ))));
        }
    }
    if previous.as_ref().map(|p| &p.entries) != Some(&map.entries)
        || previous.as_ref().map(|p| p.revision) != Some(map.revision)
    {
        durable::write_durable(tmp, &dir(spool_dir), "map.xml", &bytes, now.as_micros())?;
    }
    Ok(Fetched {
        revision: map.revision,
        entries: map.entries.len(),
        previous: previous.map(|p| p.revision),
    })
}

/// The source's bytes, at most one more than a map may hold.
fn download(source: &MapSource, me: &str) -> Result<Vec<u8>, Failure> {
    let unreachable = |reason: String| Failure::Unreachable {
        source_name: source.to_string(),
        reason,
    };
    match source {
        MapSource::File(p) => read_bounded(p).map_err(|e| unreachable(e.to_string())),
        MapSource::Http(route) => {
            let agent =
                crate::transport::http::agent(route).map_err(|e| unreachable(e.to_string()))?;
            let resp = agent
                .get(&route.url)
                .header("X-Rs-From", me)
                .header("Accept", "application/xml")
                .call()
                .map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            if status != 200 {
                let location = resp
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .map(|l| format!(" (to {l}; redirects are not followed)"))
                    .unwrap_or_default();
                return Err(unreachable(format!("answered {status}{location}")));
            }
            let mut bytes = Vec::new();
            resp.into_body()
                .into_with_config()
                .limit(limits::MAP_BYTES as u64 + 1)
                .reader()
                .take(limits::MAP_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| unreachable(format!("reading the map: {e}")))?;
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_is_stale_after_a_failure_or_the_refresh_interval() {
        let now = Timestamp::from_secs(100_000);
        let mut s = Status {
            source: "file:///m".into(),
            fetched: Some(Timestamp::from_secs(99_000).to_rfc3339()),
            revision: Some(3),
            tried: None,
            last_error: None,
        };
        assert_eq!(s.stale(Duration::from_secs(3600), now), None);
        assert!(s.stale(Duration::from_secs(600), now).is_some());
        s.fetched = Some(Timestamp::from_secs(200_000).to_rfc3339());
        assert!(s
            .stale(Duration::from_secs(3600), now)
            .unwrap()
            .contains("after this clock's now"));
        s.fetched = Some(Timestamp::from_secs(99_000).to_rfc3339());
        s.last_error = Some("connection refused".into());
        assert!(s
            .stale(Duration::from_secs(3600), now)
            .unwrap()
            .contains("connection refused"));
        assert!(Status::default()
            .stale(Duration::from_secs(3600), now)
            .is_some());
    }
}
