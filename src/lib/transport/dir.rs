//! The directory route: removable media or a shared folder. Layout:
//! `DIR/TO/FROM/NAME.msg`, one envelope per file, where TO and FROM are
//! component IDs; a site imports `DIR/ITS-ID/*/`. One stick can carry
//! traffic for several sites.
//!
//! A file is written as `.tmp-NAME`, the batch is flushed with one
//! `syncfs`, then each is renamed to its name and the directory fsynced: a
//! stick pulled out mid-export holds only whole files under final names
//! (and `.tmp-` leftovers that importers ignore and the next export
//! replaces).
//!
//! Everything below `DIR` is hostile: it is reached only through
//! [`super::untrusted`], which never follows a link, reads only regular
//! files, and writes only files it creates. `DIR` itself must exist (an
//! unmounted stick is a deferral, not a directory to create).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use super::untrusted::{self, Kind};
use super::{Outcome, Outgoing, Transport};
use crate::message::Name;
use crate::protect::Protector;

pub struct DirTransport {
    root: PathBuf,
    to: Name,
    from: Name,
    protector: Option<std::sync::Arc<Protector>>,
    now: crate::time::Timestamp,
}

impl DirTransport {
    /// The route through `root` from component `from` to component `to`,
    /// protecting what it writes with `protector` (as of `now`).
    pub fn new(
        root: &Path,
        from: &Name,
        to: &Name,
        protector: Option<std::sync::Arc<Protector>>,
        now: crate::time::Timestamp,
    ) -> DirTransport {
        DirTransport {
            root: root.to_path_buf(),
            to: to.clone(),
            from: from.clone(),
            protector,
            now,
        }
    }

    /// Opens (creating below the root as needed) `ROOT/TO/FROM`.
    fn open(&self, create: bool) -> Result<untrusted::Dir, String> {
        let root = untrusted::Dir::open_root(&self.root).map_err(|e| {
            format!(
                "cannot use {}: {e} (is the medium mounted? rs does not create the directory of a dir: route)",
                self.root.display()
            )
        })?;
        let sub = |d: &untrusted::Dir, name: &Name| {
            if create {
                d.create_dir(name.as_str())
            } else {
                d.open_dir(name.as_str())
            }
            .map_err(|e| e.to_string())
        };
        let to = sub(&root, &self.to)?;
        sub(&to, &self.from)
    }

    /// Writes `src` into `dir` as the new file `name`: copied, or protected
    /// for the peer.
    fn write_one(&self, src: &Path, dir: &untrusted::Dir, name: &str) -> Result<(), String> {
        let out = dir.create_file(name).map_err(|e| e.to_string())?;
        let mut out = std::io::BufWriter::new(out);
        let mut input = std::io::BufReader::new(fs::File::open(src).map_err(|e| e.to_string())?);
        match &self.protector {
            None => std::io::copy(&mut input, &mut out)
                .map(|_| ())
                .map_err(|e| e.to_string())?,
            Some(p) => p
                .protect(&mut input, &mut out, self.now)
                .map_err(|e| e.to_string())?,
        }
        std::io::Write::flush(&mut out).map_err(|e| e.to_string())
    }

    /// Removes message files the next hop no longer needs: those whose
    /// message ID is not in `outbound` (acknowledged, or dead). Returns how
    /// many were removed.
    pub fn prune(&self, outbound: &HashSet<String>) -> usize {
        let Ok(dir) = self.open(false) else {
            return 0;
        };
        let Ok(items) = dir.list() else {
            return 0;
        };
        items
            .iter()
            .filter(|i| i.kind == Kind::File)
            .filter(|i| message_id_of(&i.name_lossy()).is_some_and(|id| !outbound.contains(id)))
            .filter(|i| dir.remove(&i.name).is_ok())
            .count()
    }
}

/// The wire name of a message file: `RANK-ARRIVAL-ID.msg`, so a directory
/// listing sorts in send order.
pub fn message_wire_name(rank: usize, arrival: u64, id: &str) -> String {
    format!("{rank}-{arrival:016}-{id}.msg")
}

/// The message ID in a wire name, if it names a message (not acknowledgements).
pub fn message_id_of(wire_name: &str) -> Option<&str> {
    let stem = wire_name.strip_suffix(".msg")?;
    let mut parts = stem.splitn(3, '-');
    let rank = parts.next()?;
    let arrival = parts.next()?;
    if rank.len() != 1 || arrival.len() != 16 || !arrival.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parts.next()
}

/// Whether a wire name is an acknowledgement envelope.
pub fn is_ack_file(wire_name: &str) -> bool {
    wire_name.starts_with("ack-") && wire_name.ends_with(".msg")
}

impl Transport for DirTransport {
    fn describe(&self) -> String {
        format!(
            "dir:{}",
            self.root
                .join(self.to.as_str())
                .join(self.from.as_str())
                .display()
        )
    }

    fn send(&mut self, batch: &[Outgoing]) -> Vec<Outcome> {
        if batch.is_empty() {
            return Vec::new();
        }
        let all = |why: String| {
            batch
                .iter()
                .map(|_| Outcome::Deferred(why.clone()))
                .collect()
        };
        let dir = match self.open(true) {
            Ok(d) => d,
            Err(why) => return all(why),
        };
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut staged = Vec::with_capacity(batch.len());
        for (i, item) in batch.iter().enumerate() {
            let tmp = format!(".tmp-{}", item.wire_name);
            // A leftover (or anything planted) under the temporary name goes
            // first: a link is removed itself, never written through.
            let _ = dir.remove(&tmp);
            match self.write_one(&item.path, &dir, &tmp) {
                Ok(()) => staged.push((i, tmp)),
                Err(e) => {
                    let _ = dir.remove(&tmp);
                    outcomes[i] = Some(Outcome::Deferred(format!(
                        "cannot write {}: {e}",
                        dir.join(&tmp).display()
                    )));
                }
            }
        }
        if let Err(e) = dir.sync_filesystem() {
            return all(format!("cannot sync {}: {e}", dir.path().display()));
        }
        for (i, tmp) in staged {
            let name = &batch[i].wire_name;
            outcomes[i] = Some(match dir.rename(&tmp, name) {
                Ok(()) => Outcome::Handed,
                Err(e) => Outcome::Deferred(format!(
                    "cannot rename into {}: {e}",
                    dir.join(name).display()
                )),
            });
        }
        if let Err(e) = dir.sync() {
            return all(format!("cannot sync {}: {e}", dir.path().display()));
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Deferred("not attempted".into())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names() {
        let n = message_wire_name(1, 42, "20261124T160512-123456-3f9a2c7b1e4d5a60");
        assert_eq!(
            n,
            "1-0000000000000042-20261124T160512-123456-3f9a2c7b1e4d5a60.msg"
        );
        assert_eq!(
            message_id_of(&n),
            Some("20261124T160512-123456-3f9a2c7b1e4d5a60")
        );
        assert_eq!(message_id_of("ack-1-2-3.msg"), None);
        assert_eq!(message_id_of(".tmp-1-0000000000000042-x.msg"), None);
        assert!(is_ack_file("ack-1764000000-12-0.msg"));
    }
}

/// Which files an import takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Everything,
    /// Only acknowledgement envelopes (`rs-ack apply --from`).
    AcksOnly,
}

/// What happens to files once what they hold is durable here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterImport {
    Remove,
    Keep,
}

/// Most files an import reads before handing them to the receive path.
const IMPORT_BATCH: usize = 1000;
/// Most bytes of files in one import batch: bounds memory (small files are
/// read whole) and what a full disk can refuse at once.
const IMPORT_BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// Takes what `root` holds for this site (`root/ME/PEER/*.msg`, from
/// configured peers only) through the receive path, in batches, in name
/// (send) order. Links, FIFOs, devices and directories where files belong
/// are reported (counted as skipped) and left alone; a regular file where a
/// peer's directory belongs is quarantined. Stops after a batch with
/// messages that could not be taken now (a full disk), leaving them on the
/// medium. Returns the combined report.
pub fn import(
    spool: &crate::spool::Spool,
    root: &Path,
    select: Select,
    after: AfterImport,
    now: crate::time::Timestamp,
    log: &dyn Fn(String),
) -> crate::spool::Result<crate::receive::Report> {
    use crate::receive::Report;
    let me = &spool.config().component;
    let mut total = Report::default();
    let io = |op, path: &Path, e| crate::spool::Error::io(op, path, e);
    let root_dir = untrusted::Dir::open_root(root).map_err(|e| io("open", root, e))?;
    let inbox = match root_dir.open_dir(me.as_str()) {
        Ok(d) => d,
        Err(e) if e.is_not_found() => {
            log(format!("{} holds nothing for {me}", root.display()));
            return Ok(total);
        }
        Err(e) => {
            log(format!("skipped {e}"));
            total.skipped += 1;
            return Ok(total);
        }
    };
    let mut peer_dirs: Vec<(Name, untrusted::Dir)> = Vec::new();
    for item in inbox.list().map_err(|e| io("read", inbox.path(), e))? {
        let name = item.name_lossy();
        let path = inbox.join(&item.name);
        let Some(peer) = spool.config().peer(&name) else {
            log(format!(
                "ignoring {}: {name} is not a configured peer",
                path.display()
            ));
            continue;
        };
        match item.kind {
            Kind::Dir => match inbox.open_dir(&item.name) {
                Ok(d) => peer_dirs.push((peer.id.clone(), d)),
                Err(e) => {
                    log(format!("skipped {e}"));
                    total.skipped += 1;
                }
            },
            Kind::File if select == Select::Everything => {
                let why = format!("a regular file where the directory of peer {name} belongs");
                quarantine_entry(spool, &inbox, &item.name, &why, after, &mut total, now, log)?;
            }
            Kind::File => {}
            kind => {
                log(format!(
                    "skipped {}: {}, not a directory: not followed",
                    path.display(),
                    kind.describe()
                ));
                total.skipped += 1;
            }
        }
    }
    for (peer, dir) in peer_dirs {
        let mut names = Vec::new();
        for item in dir.list().map_err(|e| io("read", dir.path(), e))? {
            let name = item.name_lossy();
            let wanted = name.ends_with(".msg")
                && !name.starts_with(".tmp-")
                && (select == Select::Everything || is_ack_file(&name));
            if !wanted {
                continue;
            }
            if item.kind == Kind::File {
                names.push(item.name);
            } else {
                log(format!(
                    "skipped {}: {}, not a regular file: not read",
                    dir.join(&item.name).display(),
                    item.kind.describe()
                ));
                total.skipped += 1;
            }
        }
        let done = import_files(spool, &peer, &dir, names, after, &mut total, now, log)?;
        if !done {
            return Ok(total);
        }
    }
    Ok(total)
}

/// Imports the named files of one peer's directory in batches. Returns
/// false when a batch left messages to retry (the import should stop).
#[allow(clippy::too_many_arguments)]
fn import_files(
    spool: &crate::spool::Spool,
    peer: &Name,
    dir: &untrusted::Dir,
    names: Vec<std::ffi::OsString>,
    after: AfterImport,
    total: &mut crate::receive::Report,
    now: crate::time::Timestamp,
    log: &dyn Fn(String),
) -> crate::spool::Result<bool> {
    use crate::receive::{receive, Fate, Inbound, Payload};
    let mut pending = names.into_iter().peekable();
    while pending.peek().is_some() {
        let mut batch = Vec::new();
        let mut batch_names = Vec::new();
        let mut bytes = 0u64;
        while batch.len() < IMPORT_BATCH && bytes < IMPORT_BATCH_BYTES {
            let Some(name) = pending.next() else { break };
            let path = dir.join(&name);
            let file = match dir.open_file(&name) {
                Ok(f) => f,
                Err(e) if e.is_not_found() => continue,
                Err(e) => {
                    log(format!("skipped {e}"));
                    total.skipped += 1;
                    continue;
                }
            };
            let payload = Payload::of_file(file, &path)?;
            bytes += payload.len()?;
            batch.push(Inbound {
                payload,
                from: peer.clone(),
                label: path.display().to_string(),
            });
            batch_names.push(name);
        }
        if batch.is_empty() {
            continue;
        }
        let received = receive(spool, batch, now, log)?;
        total.add(&received.report);
        if after == AfterImport::Remove {
            for (name, fate) in batch_names.iter().zip(&received.fates) {
                if *fate == Fate::Taken {
                    let _ = dir.remove(name);
                }
            }
            dir.sync()
                .map_err(|e| crate::spool::Error::io("fsync directory", dir.path(), e))?;
        }
        let retry = received.fates.iter().filter(|f| **f == Fate::Retry).count();
        if retry > 0 {
            log(format!(
                "stopped importing from {}: {} file(s) stay on the medium for the next import",
                dir.path().display(),
                retry + pending.count()
            ));
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies the regular file `name` of `dir` into quarantine with `why`
/// (room permitting), removing it from the medium when imports remove what
/// they take.
#[allow(clippy::too_many_arguments)]
fn quarantine_entry(
    spool: &crate::spool::Spool,
    dir: &untrusted::Dir,
    name: &OsStr,
    why: &str,
    after: AfterImport,
    total: &mut crate::receive::Report,
    now: crate::time::Timestamp,
    log: &dyn Fn(String),
) -> crate::spool::Result<()> {
    use crate::receive::{set_aside, Fate, Payload};
    let label = dir.join(name).display().to_string();
    let file = match dir.open_file(name) {
        Ok(f) => f,
        Err(e) => {
            log(format!("skipped {e}"));
            total.skipped += 1;
            return Ok(());
        }
    };
    let fate = set_aside(spool, &Payload::File(file), &label, why, now, log, total)?;
    if fate == Fate::Taken && after == AfterImport::Remove {
        let _ = dir.remove(name);
        let _ = dir.sync();
    }
    Ok(())
}
