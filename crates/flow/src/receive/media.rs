//! Taking what a directory holds for this site: the inbound side of the
//! directory route (removable media, a shared folder), `rs-relay import`
//! and `rs-ack apply --from`. An adapter: it lists `DIR/ME/PEER/*.msg`
//! through [`crate::transport::untrusted`] (no link followed, only regular
//! files read) and hands the files, in batches, to [`super::receive`].

use std::ffi::OsStr;
use std::path::Path;

use crate::message::Name;
use crate::transport::dir::is_ack_file;
use crate::transport::untrusted::{self, Kind};

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
) -> crate::spool::Result<super::Report> {
    use super::Report;
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
    total: &mut super::Report,
    now: crate::time::Timestamp,
    log: &dyn Fn(String),
) -> crate::spool::Result<bool> {
    use super::{receive, Fate, Inbound, Payload};
    // Progress on a terminal only (the sizes cost an open each).
    let mut progress = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let total = names
            .iter()
            .filter_map(|n| dir.open_file(n).ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        crate::progress::Progress::new(format!("importing from {}", dir.path().display()), total)
    });
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
        let received = receive(spool, batch, now, super::Answer::Owe, log)?;
        if let Some(p) = &mut progress {
            p.add(bytes);
        }
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
    total: &mut super::Report,
    now: crate::time::Timestamp,
    log: &dyn Fn(String),
) -> crate::spool::Result<()> {
    use super::{set_aside, Fate, Payload};
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
