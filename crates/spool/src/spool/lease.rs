//! Leases (SPEC.md section 11): a time-limited right to a resource, here the
//! right to transmit a set of messages. One file per grant in `leases/`:
//!
//! ```text
//! leases/GENERATION.lease
//! kind: transmit
//! holder: export pid 4242 on host1
//! generation: 1764000312123456
//! requested: 3600
//! granted: 3600
//! granted-at: 2026-11-24T16:05:12.123456Z
//! expires: 2026-11-24T17:05:12.123456Z
//! message: 20261124T160512-123456-3f9a2c7b1e4d5a60
//! ...
//! ```
//!
//! The holder keeps its lease file open and `flock`ed. A lease is live while
//! it has not expired and, on this host, while its holder holds that lock:
//! a holder killed mid-transfer frees its messages at once (on other hosts,
//! when the lease lapses). A lapsed lease is removed by whoever finds it, so
//! its holder, waking up, finds its grant gone and must not complete the work:
//! [`Lease::is_current`] is the check the final step makes.
//!
//! Architecture invariant: grants, renewals and lapse checks happen under the
//! spool lock, so two runs never hold live leases on the same message.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{durable, Error, Result};
use crate::message::MessageId;
use crate::time::Timestamp;

/// What a grant is for, with the policy for its period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Messages being carried to a next hop.
    Transmit,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Transmit => "transmit",
        }
    }
}

/// The period asked for: a duration, or (negative in the specification)
/// infinite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    For(Duration),
    Infinite,
}

/// The grantor's policy for a kind of resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub max: Duration,
    pub allow_infinite: bool,
    pub allow_zero: bool,
}

/// Why a lease is not granted as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A zero-length lease, where the policy allows none.
    #[error("a zero-length lease is not valid for this resource")]
    ZeroLength,
}

/// Decides the period granted for a request: never longer than the policy's
/// maximum; infinite only where allowed; zero only where allowed.
pub fn grant_period(requested: Period, policy: Policy) -> Result<Period, Refused> {
    match requested {
        Period::Infinite if policy.allow_infinite => Ok(Period::Infinite),
        Period::Infinite => Ok(Period::For(policy.max)),
        Period::For(d) if d.is_zero() && !policy.allow_zero => Err(Refused::ZeroLength),
        Period::For(d) => Ok(Period::For(d.min(policy.max))),
    }
}

/// The terms of a grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub generation: u64,
    pub kind: Kind,
    pub holder: String,
    pub requested: Period,
    pub granted: Period,
    pub granted_at: Timestamp,
    pub messages: Vec<MessageId>,
}

impl Grant {
    pub fn expires(&self) -> Option<Timestamp> {
        expiry(self.granted_at, self.granted)
    }

    fn render(&self) -> String {
        let mut t = format!(
            "kind: {}\nholder: {}\ngeneration: {}\nrequested: {}\ngranted: {}\ngranted-at: {}\nexpires: {}\n",
            self.kind.as_str(),
            self.holder,
            self.generation,
            secs(self.requested),
            secs(self.granted),
            self.granted_at,
            self.expires().map_or("never".to_string(), |t| t.to_string()),
        );
        for m in &self.messages {
            t.push_str(&format!("message: {m}\n"));
        }
        t
    }
}

/// A lease this process holds: its grant, and its file, open and locked.
#[derive(Debug)]
pub struct Lease {
    pub grant: Grant,
    path: PathBuf,
    file: File,
}

/// A lease on file, as others see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub generation: u64,
    pub expires: Option<Timestamp>,
    pub messages: Vec<String>,
}

fn secs(p: Period) -> i64 {
    match p {
        Period::For(d) => d.as_secs() as i64,
        Period::Infinite => -1,
    }
}

fn expiry(at: Timestamp, p: Period) -> Option<Timestamp> {
    match p {
        Period::For(d) => Some(at.saturating_add(d)),
        Period::Infinite => None,
    }
}

/// What to ask for when granting a lease.
#[derive(Clone, Debug)]
pub struct Request {
    pub kind: Kind,
    pub period: Period,
    pub policy: Policy,
    pub messages: Vec<MessageId>,
}

impl Lease {
    /// Grants a lease (the caller holds the spool lock and has checked that
    /// no live lease covers the messages). Durable on return.
    pub fn grant(
        dir: &Path,
        tmp: &Path,
        generation: u64,
        req: Request,
        now: Timestamp,
    ) -> Result<Lease> {
        let granted = grant_period(req.period, req.policy)
            .map_err(|e| Error::io("grant a lease in", dir, std::io::Error::other(e)))?;
        let name = format!("{generation}.lease");
        let path = dir.join(&name);
        let grant = Grant {
            generation,
            kind: req.kind,
            holder: format!(
                "pid {} on {}",
                std::process::id(),
                super::host::name_or_localhost()
            ),
            requested: req.period,
            granted,
            granted_at: now,
            messages: req.messages,
        };
        durable::write_durable(tmp, dir, &name, grant.render().as_bytes(), now.as_micros())?;
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        fs2::FileExt::try_lock_exclusive(&file).map_err(|e| Error::io("lock", &path, e))?;
        Ok(Lease { grant, path, file })
    }

    /// Extends the lease from `now` by the period asked (within policy),
    /// rewriting its file in place. Returns false if the lease is no longer
    /// current: the holder must stop. Call under the spool lock.
    pub fn renew(&mut self, requested: Period, policy: Policy, now: Timestamp) -> Result<bool> {
        if !self.is_current(now) {
            return Ok(false);
        }
        self.grant.requested = requested;
        self.grant.granted = grant_period(requested, policy)
            .map_err(|e| Error::io("renew lease", &self.path, std::io::Error::other(e)))?;
        self.grant.granted_at = now;
        let text = self.grant.render();
        super::fault::write_with(&self.path, || {
            self.file.set_len(0)?;
            self.file.write_all_at(text.as_bytes(), 0)
        })
        .and_then(|_| durable::sync_data(&self.file, &self.path))
        .map_err(|e| Error::io("write", &self.path, e))?;
        Ok(true)
    }

    /// Whether this grant still stands: its file exists with our generation
    /// and it has not expired. The final step of the work checks this.
    pub fn is_current(&self, now: Timestamp) -> bool {
        let Ok(text) = fs::read_to_string(&self.path) else {
            return false;
        };
        let Some(rec) = parse(&text) else {
            return false;
        };
        rec.generation == self.grant.generation && rec.expires.is_none_or(|e| now < e)
    }

    /// Gives the lease up.
    pub fn release(self) -> Result<()> {
        match durable::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &self.path, e)),
        }
    }
}

fn parse(text: &str) -> Option<Record> {
    let mut rec = Record {
        generation: 0,
        expires: None,
        messages: Vec::new(),
    };
    let mut have_generation = false;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(": ") else {
            continue;
        };
        match k {
            "generation" => {
                rec.generation = v.parse().ok()?;
                have_generation = true;
            }
            "expires" if v != "never" => rec.expires = Some(Timestamp::parse(v).ok()?),
            "message" => rec.messages.push(v.to_string()),
            _ => {}
        }
    }
    have_generation.then_some(rec)
}

/// The message IDs covered by live leases in `dir`, removing lapsed leases
/// (expired, or whose holder on this host has died). The caller holds the
/// spool lock.
pub fn live_messages(dir: &Path, now: Timestamp) -> Result<HashSet<String>> {
    let mut live = HashSet::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(live),
        Err(e) => return Err(Error::io("read", dir, e)),
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "lease") {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let holder_gone = fs2::FileExt::try_lock_exclusive(&file).is_ok();
        let rec = fs::read_to_string(&path).ok().and_then(|t| parse(&t));
        let lapsed = match &rec {
            None => true,
            Some(r) => holder_gone || r.expires.is_some_and(|x| x <= now),
        };
        if lapsed {
            let _ = durable::remove_file(&path);
            continue;
        }
        if let Some(r) = rec {
            live.extend(r.messages);
        }
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        max: Duration::from_secs(3600),
        allow_infinite: false,
        allow_zero: false,
    };

    #[test]
    fn granted_periods_follow_policy() {
        let h = |s| Period::For(Duration::from_secs(s));
        assert_eq!(grant_period(h(60), POLICY), Ok(h(60)));
        assert_eq!(
            grant_period(h(7200), POLICY),
            Ok(h(3600)),
            "shortened to the maximum"
        );
        assert_eq!(
            grant_period(Period::Infinite, POLICY),
            Ok(h(3600)),
            "infinite not allowed"
        );
        assert_eq!(grant_period(h(0), POLICY), Err(Refused::ZeroLength));
        assert_eq!(
            Refused::ZeroLength.to_string(),
            "a zero-length lease is not valid for this resource"
        );
        let open = Policy {
            allow_infinite: true,
            allow_zero: true,
            ..POLICY
        };
        assert_eq!(grant_period(Period::Infinite, open), Ok(Period::Infinite));
        assert_eq!(grant_period(h(0), open), Ok(h(0)));
    }

    #[test]
    fn leases_lapse_by_time_and_the_holder_learns_it() {
        let dir = tempfile::tempdir().unwrap();
        let (leases, tmp) = (dir.path().join("leases"), dir.path().join("tmp"));
        fs::create_dir_all(&leases).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        let t0 = Timestamp::from_secs(1000);
        let req = |id: &str| Request {
            kind: Kind::Transmit,
            period: Period::For(Duration::from_secs(60)),
            policy: POLICY,
            messages: vec![MessageId::parse(id).unwrap()],
        };
        let mut lease = Lease::grant(&leases, &tmp, 7, req("m1"), t0).unwrap();
        assert!(lease.is_current(t0));
        assert!(
            live_messages(&leases, t0).unwrap().contains("m1"),
            "live while held and unexpired"
        );
        let later = Timestamp::from_secs(1030);
        assert!(lease
            .renew(Period::For(Duration::from_secs(60)), POLICY, later)
            .unwrap());
        assert_eq!(lease.grant.expires(), Some(Timestamp::from_secs(1090)));
        let lapsed = Timestamp::from_secs(1100);
        assert!(
            live_messages(&leases, lapsed).unwrap().is_empty(),
            "lapsed: removed by whoever looks"
        );
        assert!(!lease.is_current(later), "the holder must not complete");
        assert!(!lease
            .renew(Period::For(Duration::from_secs(60)), POLICY, later)
            .unwrap());
    }

    #[test]
    fn a_lease_whose_holder_died_is_free_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (leases, tmp) = (dir.path().join("leases"), dir.path().join("tmp"));
        fs::create_dir_all(&leases).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        let t0 = Timestamp::from_secs(1000);
        let req = Request {
            kind: Kind::Transmit,
            period: Period::For(Duration::from_secs(60)),
            policy: POLICY,
            messages: vec![MessageId::parse("m2").unwrap()],
        };
        let lease = Lease::grant(&leases, &tmp, 8, req, t0).unwrap();
        // Dropping the handle closes the file and so releases the lock, as a
        // dying process would, but leaves the file behind.
        let path = lease.path.clone();
        drop(lease);
        assert!(path.exists());
        assert!(live_messages(&leases, t0).unwrap().is_empty());
        assert!(!path.exists());
    }
}
