//! What this site has heard of other components: their heartbeats and
//! registrations as last heard (`state/heard/COMPONENT`,
//! `state/registered/COMPONENT`), read by `rs-relay heard` and the status a
//! heartbeat reports.

use std::path::{Path, PathBuf};

use crate::message::Name;
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

/// A component as last heard here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub component: String,
    pub at: Timestamp,
    /// Messages it said were waiting to go.
    pub outbound: Option<u64>,
    /// The component whose heartbeat carried the news (itself, or its
    /// relay).
    pub via: String,
    pub registered: Option<Timestamp>,
}

pub(super) fn heard_dir(spool: &Spool) -> PathBuf {
    spool.dir(Area::State).join("heard")
}

pub(super) fn registered_dir(spool: &Spool) -> PathBuf {
    spool.dir(Area::State).join("registered")
}

/// Every component heard of here (and every one registered here, heard or
/// not), by component ID.
pub fn heard(spool: &Spool) -> Vec<Heard> {
    let mut out: Vec<Heard> = Vec::new();
    let read = |dir: &Path| -> Vec<(String, String)> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if name.starts_with('.') {
                            return None;
                        }
                        std::fs::read_to_string(e.path()).ok().map(|t| (name, t))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let field = |text: &str, k: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")).map(str::to_string))
    };
    for (name, text) in read(&heard_dir(spool)) {
        let Some(at) = field(&text, "at").and_then(|t| Timestamp::parse(&t).ok()) else {
            continue;
        };
        out.push(Heard {
            component: name,
            at,
            outbound: field(&text, "outbound").and_then(|n| n.parse().ok()),
            via: field(&text, "via").unwrap_or_default(),
            registered: None,
        });
    }
    for (name, text) in read(&registered_dir(spool)) {
        let at = field(&text, "at").and_then(|t| Timestamp::parse(&t).ok());
        match out.iter_mut().find(|h| h.component == name) {
            Some(h) => h.registered = at,
            None => out.push(Heard {
                component: name.clone(),
                at: at.unwrap_or(Timestamp::EPOCH),
                outbound: None,
                via: String::new(),
                registered: at,
            }),
        }
    }
    out.sort_by(|a, b| a.component.cmp(&b.component));
    out
}

/// Records that `component` was heard of at `at` (through `via`), unless a
/// later word of it is on record.
pub(super) fn record_heard(
    spool: &Spool,
    component: &str,
    at: Timestamp,
    outbound: Option<&str>,
    via: &str,
    now: Timestamp,
) -> Result<()> {
    if Name::new("component", component).is_err() {
        return Ok(());
    }
    let dir = heard_dir(spool);
    durable::create_dir_all(&dir)?;
    if let Ok(old) = std::fs::read_to_string(dir.join(component)) {
        let before = old
            .lines()
            .find_map(|l| l.strip_prefix("at "))
            .and_then(|t| Timestamp::parse(t).ok());
        if before.is_some_and(|b| b >= at) {
            return Ok(());
        }
    }
    let text = format!(
        "at {}\noutbound {}\nvia {via}\n",
        at.to_rfc3339(),
        outbound.unwrap_or("")
    );
    durable::write_durable(
        &spool.dir(Area::Tmp),
        &dir,
        component,
        text.as_bytes(),
        now.as_micros(),
    )?;
    Ok(())
}
