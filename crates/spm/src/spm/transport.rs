//! The `spm:SERVICE` route: wherever the service point map says the
//! service answers now. The site's map (`spm/map.xml`, see `spm::fetch`)
//! resolves the service to its locations valid now, for this site's
//! partition, in order (each entry's primary, then its backups); each is
//! an HTTP(S) session-mode route whose messages carry the entry's epoch.
//!
//! An exchange goes to the location that answered last (the first one at
//! the start of a run), then to the others in order; when every one has
//! failed, the map is fetched again, once per run, and its locations tried;
//! then the exchange is deferred. A map older than `[spm] refresh` is
//! fetched before the route is used. When the server answers
//! `epoch-mismatch`, the runner calls [`Transport::renew`]: the map is
//! fetched again (if it was not in this run already) and the refused
//! messages go once more, to where the fresh map says; never in a loop.
//!
//! A plain `http://` location is used only for a peer with
//! `authentication = "none"` (a map cannot lower a peer's protection).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{SpmRoute, SpmSettings};
use crate::message::Name;
use crate::protect::Protector;
use crate::spm::resolve::{self, Query};
use crate::spm::{fetch, Client, ServiceId, Sphere, Version};
use crate::time::Timestamp;
use crate::transport::http::HttpTransport;
use crate::transport::{Exchanged, Outcome, Outgoing, Transport, Trouble};

/// One location to call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Target {
    url: String,
    epoch: u64,
}

pub struct SpmTransport {
    route: SpmRoute,
    settings: SpmSettings,
    spool_dir: PathBuf,
    tmp: PathBuf,
    me: Name,
    protector: Option<Arc<Protector>>,
    now: Timestamp,
    /// Plain `http://` locations may be used (the peer's authentication
    /// is "none").
    plain_ok: bool,
    targets: Vec<Target>,
    /// Why there is no target, when there is none.
    unresolved: Option<String>,
    /// The target that answered last: tried first.
    current: usize,
    /// The map was fetched in this run (the once-per-run refetch is spent).
    refetched: bool,
    /// [`Transport::renew`] was called in this run.
    renewed: bool,
    notes: Vec<String>,
    /// The class of the last location's failure.
    trouble: Option<Trouble>,
    /// The HTTP client of each location called in this run.
    clients: HashMap<Target, HttpTransport>,
}

impl SpmTransport {
    /// The route `route` from component `me`, on the map of the spool at
    /// `spool_dir`; a map due for refresh is fetched first.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        route: &SpmRoute,
        settings: &SpmSettings,
        spool_dir: &Path,
        tmp: &Path,
        me: &Name,
        protector: Option<Arc<Protector>>,
        plain_ok: bool,
        now: Timestamp,
    ) -> SpmTransport {
        let mut t = SpmTransport {
            route: route.clone(),
            settings: settings.clone(),
            spool_dir: spool_dir.to_path_buf(),
            tmp: tmp.to_path_buf(),
            me: me.clone(),
            protector,
            now,
            plain_ok,
            targets: Vec::new(),
            unresolved: None,
            current: 0,
            refetched: false,
            renewed: false,
            notes: Vec::new(),
            trouble: None,
            clients: HashMap::new(),
        };
        if t.refresh_due() {
            t.refetch("due for refresh");
        }
        t.resolve();
        t
    }

    /// Whether the map is due to be fetched: a source is configured and
    /// the last attempt (good or not) is `refresh` old, or in the future.
    fn refresh_due(&self) -> bool {
        if self.settings.map_url.is_none() {
            return false;
        }
        let st = fetch::status(&self.spool_dir);
        let last = st
            .tried
            .as_deref()
            .and_then(|t| Timestamp::parse(t).ok())
            .or(st.fetched_at());
        match last {
            None => true,
            Some(t) => t > self.now || self.now.since(t) >= self.settings.refresh,
        }
    }

    /// Fetches the map again (once per run); says whether it did.
    fn refetch(&mut self, why: &str) -> bool {
        let Some(source) = self.settings.map_url.clone() else {
            return false;
        };
        if self.refetched {
            return false;
        }
        self.refetched = true;
        match fetch::fetch(
            &self.spool_dir,
            &self.tmp,
            &source,
            self.me.as_str(),
            false,
            self.now,
        ) {
            Ok(f) if f.previous == Some(f.revision) => self.notes.push(format!(
                "spm:{}: map fetched again ({why}): revision {} unchanged",
                self.route.service, f.revision
            )),
            Ok(f) => self.notes.push(format!(
                "spm:{}: map fetched again ({why}): revision {} ({} entries){}",
                self.route.service,
                f.revision,
                f.entries,
                f.previous
                    .map(|p| format!(", was {p}"))
                    .unwrap_or_default()
            )),
            Err(e) => self.notes.push(format!(
                "spm:{}: the map could not be fetched again ({why}): {e}; the map held stays in use, stale",
                self.route.service
            )),
        }
        true
    }

    /// The service's locations in the map held, valid now, for this site.
    fn resolve(&mut self) {
        self.targets.clear();
        self.current = 0;
        self.unresolved = None;
        let service = &self.route.service;
        let map = match fetch::held(&self.spool_dir) {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.unresolved = Some(format!(
                    "spm:{service}: no map is held yet (set [spm] map_url and run rs-spm fetch)"
                ));
                return;
            }
            Err(e) => {
                self.unresolved = Some(format!("spm:{service}: the map held is unusable: {e}"));
                return;
            }
        };
        // The route's fields were checked when the configuration was read.
        let Ok(id) = ServiceId::new(service) else {
            return;
        };
        let version = self
            .route
            .version
            .as_deref()
            .and_then(|v| Version::parse(v).ok());
        let sphere = self
            .route
            .sphere
            .as_deref()
            .and_then(|s| Sphere::new(s).ok());
        let found = resolve::resolve(
            &map,
            &Query {
                service: &id,
                version,
                sphere: sphere.as_ref(),
            },
            &Client {
                id: Some(self.me.as_str()),
                zone: self.settings.zone.as_deref(),
                function: self.route.function.as_deref(),
            },
            self.now,
        );
        let mut plain_skipped = 0;
        for r in found {
            if !self.plain_ok && !r.url.starts_with("https://") {
                plain_skipped += 1;
                continue;
            }
            self.targets.push(Target {
                url: r.url,
                epoch: r.entry.epoch,
            });
        }
        if self.targets.is_empty() {
            self.unresolved = Some(format!(
                "spm:{service}: map revision {} has no location of it valid now for {}{}",
                map.revision,
                self.me,
                if plain_skipped > 0 {
                    format!(
                        " ({plain_skipped} plain http:// location(s) not used: the peer's authentication is not \"none\")"
                    )
                } else {
                    String::new()
                }
            ));
        }
    }

    /// Tries each target in turn, from the current one; the exchange of
    /// the first that answered, or every failure.
    fn try_targets(&mut self, batch: &[Outgoing], errors: &mut Vec<String>) -> Option<Exchanged> {
        let n = self.targets.len();
        for k in 0..n {
            let i = (self.current + k) % n;
            let target = self.targets[i].clone();
            // One client per location for the run: its connection is
            // kept from one chunk to the next.
            let mut http = match self.clients.remove(&target) {
                Some(h) => h,
                None => match HttpTransport::new(
                    &self.route.location(&target.url),
                    &self.me,
                    self.protector.clone(),
                    self.now,
                    &self.tmp,
                ) {
                    Ok(h) => h.with_epoch(target.epoch),
                    Err(e) => {
                        errors.push(e.to_string());
                        continue;
                    }
                },
            };
            let ex = http.exchange(batch);
            self.clients.insert(target.clone(), http);
            let handed = ex.outcomes.contains(&Outcome::Handed);
            if ex.failure.is_none() || handed {
                if k > 0 || !errors.is_empty() {
                    self.notes.push(format!(
                        "spm:{}: {} answered (location {} of {}){}",
                        self.route.service,
                        target.url,
                        i + 1,
                        n,
                        if errors.is_empty() {
                            String::new()
                        } else {
                            format!(" after {}", errors.join("; "))
                        }
                    ));
                }
                self.current = i;
                return Some(ex);
            }
            self.trouble = ex.trouble.or(self.trouble);
            errors.push(
                ex.failure
                    .unwrap_or_else(|| format!("{}: failed", target.url)),
            );
        }
        None
    }
}

impl Transport for SpmTransport {
    fn describe(&self) -> String {
        match self.targets.get(self.current) {
            Some(t) => format!("spm:{} ({})", self.route.service, t.url),
            None => format!("spm:{}", self.route.service),
        }
    }

    fn exchange(&mut self, batch: &[Outgoing]) -> Exchanged {
        let mut errors = Vec::new();
        if let Some(ex) = self.try_targets(batch, &mut errors) {
            return ex;
        }
        let tried = self.targets.clone();
        if self.refetch("every location failed") {
            self.resolve();
            // Only what the fresh map changed is worth a call now.
            let fresh = self.targets.clone();
            self.targets.retain(|t| !tried.contains(t));
            let answered = self.try_targets(batch, &mut errors);
            let current = self.targets.get(self.current).cloned();
            self.targets = fresh;
            self.current = current
                .and_then(|c| self.targets.iter().position(|t| *t == c))
                .unwrap_or(0);
            if let Some(ex) = answered {
                return ex;
            }
        }
        let why = match (&self.unresolved, errors.is_empty()) {
            (Some(u), true) => u.clone(),
            _ => format!(
                "spm:{}: no location answered: {}",
                self.route.service,
                errors.join("; ")
            ),
        };
        let mut ex = Exchanged::all(batch, Outcome::Deferred(why.clone()));
        ex.failure = Some(why);
        ex.trouble = self.trouble.take();
        ex
    }

    fn chunk_size(&self) -> usize {
        self.route.http.batch
    }

    fn polls(&self) -> bool {
        true
    }

    fn notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn renew(&mut self) -> bool {
        if self.renewed {
            return false;
        }
        self.renewed = true;
        self.refetch("the service answered epoch-mismatch");
        self.resolve();
        !self.targets.is_empty()
    }
}

/// The `spm:` route kind, for the outbound runner.
pub struct Kind;

impl crate::outbound::kinds::RouteKind for Kind {
    fn open(
        &self,
        spool: &crate::spool::Spool,
        route: &crate::config::Route,
        peer: &crate::config::Peer,
        protector: Option<Arc<Protector>>,
        now: Timestamp,
    ) -> Option<Result<Box<dyn Transport>, crate::outbound::kinds::OpenError>> {
        let crate::config::Route::Spm(r) = route else {
            return None;
        };
        Some(Ok(Box::new(SpmTransport::new(
            r,
            &spool.config().spm,
            spool.root(),
            &spool.dir(crate::spool::Area::Tmp),
            &spool.config().component,
            protector,
            peer.authentication == crate::config::Authentication::None,
            now,
        ))))
    }
}
