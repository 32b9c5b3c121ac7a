//! The relay's rules (`[[rule]]` in `config.toml`), pure: what a rule
//! matches and what it does. Rules are evaluated in order; the first whose
//! every given field matches decides; no rule matching means the message is
//! routed as usual.
//!
//! A field is a pattern (`*` matches any run of characters) or a list of
//! patterns (any may match). Fields: `class`, `subclass`, `kind` (the
//! content: alarm, event, data, message-response, bulk-data-request,
//! bulk-data-response), `severity` (alarms and events), `source` (the
//! originating component), `destination` (any component or group the
//! message is addressed to), `window` (local time of day, `HH:MM-HH:MM`).
//!
//! Actions: `discard` (acknowledged as accepted, counted, never passed on),
//! `forward` (to `peer`, or where routing sends it), `divert` (to the
//! program `handler`, run without a shell, the message on stdin), and
//! `aggregate` (gathered into one message of the relay's own, when `count`
//! inputs are waiting or the oldest is `age` old).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::message::{Content, Header, Locator, Name, Target};
use crate::time::Window;

/// What is wrong with a rule's settings (the configuration says which
/// rule, before this message).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("action = \"divert\" needs handler = \"/path/to/program\"")]
    NoHandler,
    #[error("max_failures must be at least 1")]
    NoFailures,
    #[error("action = \"aggregate\" needs count = N (at least 1) or age = \"DURATION\"")]
    NoThreshold,
    /// `handler` given to a rule that does not divert.
    #[error("handler is for action = \"divert\"")]
    HandlerWithout,
    /// `peer` given to a rule that does not forward.
    #[error("peer is for action = \"forward\"")]
    PeerWithout,
    /// `count` or `age` given to a rule that does not aggregate.
    #[error("count and age are for action = \"aggregate\"")]
    ThresholdWithout,
    /// The handler cannot be looked at.
    #[error("handler {}: {source}", path.display())]
    Handler {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("handler {} is not an executable file", path.display())]
    NotExecutable { path: PathBuf },
}

/// A pattern, or several (any may match).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patterns(pub Vec<String>);

impl Patterns {
    pub fn matches(&self, value: &str) -> bool {
        self.0.iter().any(|p| glob(p, value))
    }
}

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let v = match Raw::deserialize(d)? {
            Raw::One(s) => vec![s],
            Raw::Many(v) => v,
        };
        if v.is_empty() || v.iter().any(|p| p.is_empty()) {
            return Err(serde::de::Error::custom("an empty pattern matches nothing"));
        }
        Ok(Patterns(v))
    }
}

/// `*` matches any run of characters (none included); all else is literal.
fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last)
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// What a rule does with the messages it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Discard,
    Forward,
    Divert,
    Aggregate,
}

/// One `[[rule]]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for logs and counters (default: `rule N`).
    pub name: Option<String>,
    pub class: Option<Patterns>,
    pub subclass: Option<Patterns>,
    pub kind: Option<Patterns>,
    pub severity: Option<Patterns>,
    pub source: Option<Patterns>,
    pub destination: Option<Patterns>,
    #[serde(default, deserialize_with = "window")]
    pub window: Option<Window>,
    pub action: Action,
    /// `forward`: the peer to send to (default: where routing sends it).
    #[serde(default, deserialize_with = "crate::config::name_opt")]
    pub peer: Option<Name>,
    /// `divert`: the program (run without a shell; the message on stdin).
    pub handler: Option<PathBuf>,
    /// `divert`: arguments given to the handler.
    #[serde(default)]
    pub args: Vec<String>,
    /// `divert`: the longest a handler may run.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// `divert`: failures before the message goes to dead/.
    #[serde(default = "default_failures")]
    pub max_failures: u32,
    /// `aggregate`: inputs that make an aggregate.
    pub count: Option<u32>,
    /// `aggregate`: the oldest input's age that makes an aggregate.
    #[serde(default, deserialize_with = "duration_opt")]
    pub age: Option<Duration>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_failures() -> u32 {
    5
}

fn window<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Window>, D::Error> {
    let s = String::deserialize(d)?;
    Window::parse(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::time::parse_duration(&s).map_err(serde::de::Error::custom)
}

fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

impl Rule {
    /// The name logs and counters use: the configured one, or `rule N`
    /// (N counting from 1 in the file's order).
    pub fn label(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("rule {}", index + 1))
    }

    /// What is wrong with this rule's settings, if anything (beyond what
    /// parsing checks): a field that its action does not take, or one it
    /// needs and lacks.
    pub fn check(&self) -> Result<(), Error> {
        let needs = |ok: bool, what: Error| if ok { Ok(()) } else { Err(what) };
        match self.action {
            Action::Divert => {
                let handler = self.handler.as_ref().ok_or(Error::NoHandler)?;
                is_executable(handler)?;
                needs(self.max_failures >= 1, Error::NoFailures)?;
            }
            Action::Aggregate => needs(
                self.count.is_some_and(|c| c >= 1) || self.age.is_some_and(|a| !a.is_zero()),
                Error::NoThreshold,
            )?,
            Action::Discard | Action::Forward => {}
        }
        if self.handler.is_some() && self.action != Action::Divert {
            return Err(Error::HandlerWithout);
        }
        if self.peer.is_some() && self.action != Action::Forward {
            return Err(Error::PeerWithout);
        }
        if (self.count.is_some() || self.age.is_some()) && self.action != Action::Aggregate {
            return Err(Error::ThresholdWithout);
        }
        Ok(())
    }

    /// Whether `m` (described by `facts`) meets every field of this rule.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        let field = |p: &Option<Patterns>, v: Option<&str>| match (p, v) {
            (None, _) => true,
            (Some(p), Some(v)) => p.matches(v),
            (Some(_), None) => false,
        };
        field(&self.class, Some(facts.header.class.as_str()))
            && field(&self.subclass, Some(facts.header.subclass.as_str()))
            && field(&self.kind, Some(facts.kind))
            && field(&self.severity, facts.severity)
            && field(&self.source, facts.source())
            && self
                .destination
                .as_ref()
                .is_none_or(|p| facts.destinations().iter().any(|d| p.matches(d)))
            && self.window.is_none_or(|w| w.contains(facts.minute_of_day))
    }
}

/// Whether `path` is a regular file this process may execute.
fn is_executable(path: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| Error::Handler {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::NotExecutable {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// What rules look at.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub header: &'a Header,
    /// The content's kind (`alarm`, `event`, `data`, ...).
    pub kind: &'a str,
    pub severity: Option<&'a str>,
    /// Minutes since local midnight.
    pub minute_of_day: u32,
}

impl Facts<'_> {
    fn source(&self) -> Option<&str> {
        match &self.header.locator {
            Locator::Source(s) => Some(s.component.as_str()),
            Locator::Destination(_) => None,
        }
    }

    fn destinations(&self) -> Vec<&str> {
        match &self.header.locator {
            Locator::Source(_) => Vec::new(),
            Locator::Destination(d) => d
                .targets
                .iter()
                .map(|t| match t {
                    Target::Component(c) | Target::Group(c) => c.as_str(),
                })
                .collect(),
        }
    }
}

/// The kind and severity of a content, for [`Facts`].
pub fn kind_of(content: &Content) -> (&'static str, Option<&'static str>) {
    let severity = match content {
        Content::Alarm(a) => Some(a.severity.as_str()),
        Content::Event(e) => Some(e.severity.as_str()),
        _ => None,
    };
    (content.kind(), severity)
}

/// The first rule `facts` meets, with its index.
pub fn first_match<'r>(rules: &'r [Rule], facts: &Facts<'_>) -> Option<(usize, &'r Rule)> {
    rules.iter().enumerate().find(|(_, r)| r.matches(facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, v, ok) in [
            ("a", "a", true),
            ("a", "ab", false),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "abd", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxcyyb", false),
            ("site*.host", "site12.host", true),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob(p, v), ok, "{p} ~ {v}");
        }
    }

    #[test]
    fn a_rule_that_does_not_check_says_why() {
        for (e, expected) in [
            (
                Error::NoHandler,
                "action = \"divert\" needs handler = \"/path/to/program\"",
            ),
            (Error::NoFailures, "max_failures must be at least 1"),
            (
                Error::NoThreshold,
                "action = \"aggregate\" needs count = N (at least 1) or age = \"DURATION\"",
            ),
            (Error::HandlerWithout, "handler is for action = \"divert\""),
            (Error::PeerWithout, "peer is for action = \"forward\""),
            (
                Error::ThresholdWithout,
                "count and age are for action = \"aggregate\"",
            ),
            (
                Error::Handler {
                    path: "/usr/local/bin/h".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                },
                "handler /usr/local/bin/h: entity not found",
            ),
            (
                Error::NotExecutable {
                    path: "/etc/passwd".into(),
                },
                "handler /etc/passwd is not an executable file",
            ),
        ] {
            assert_eq!(e.to_string(), expected);
        }
    }
}
