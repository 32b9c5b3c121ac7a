//! The directory route: removable media or a shared folder. Layout:
//! `DIR/TO/FROM/NAME.msg`, one envelope per file, where TO and FROM are
//! component IDs; a site imports `DIR/ITS-ID/*/`. One stick can carry
//! traffic for several sites.
//!
//! A file is written as `.tmp-NAME`, the batch is flushed with one
//! `syncfs`, then each is renamed to its name and the directory fsynced: a
//! stick pulled out mid-export holds only whole files under final names
//! (and `.tmp-` leftovers that importers ignore and the next export
//! overwrites).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Outcome, Outgoing, Transport};
use crate::message::Name;
use crate::protect::Protector;
use crate::spool::durable;

pub struct DirTransport {
    dir: PathBuf,
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
            dir: root.join(to.as_str()).join(from.as_str()),
            protector,
            now,
        }
    }

    /// Writes `src` to `tmp`: copied, or protected for the peer.
    fn write_one(&self, src: &Path, tmp: &Path) -> Result<(), String> {
        match &self.protector {
            None => fs::copy(src, tmp).map(|_| ()).map_err(|e| e.to_string()),
            Some(p) => {
                let mut input =
                    std::io::BufReader::new(fs::File::open(src).map_err(|e| e.to_string())?);
                let mut out =
                    std::io::BufWriter::new(fs::File::create(tmp).map_err(|e| e.to_string())?);
                p.protect(&mut input, &mut out, self.now)
                    .map_err(|e| e.to_string())?;
                std::io::Write::flush(&mut out).map_err(|e| e.to_string())
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes message files the next hop no longer needs: those whose
    /// message ID is not in `outbound` (acknowledged, or dead). Returns how
    /// many were removed.
    pub fn prune(&self, outbound: &HashSet<String>) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = message_id_of(&name) else {
                continue;
            };
            if !outbound.contains(id) && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
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
        format!("dir:{}", self.dir.display())
    }

    fn send(&mut self, batch: &[Outgoing]) -> Vec<Outcome> {
        if batch.is_empty() {
            return Vec::new();
        }
        if let Err(e) = fs::create_dir_all(&self.dir) {
            let why = format!("cannot create {}: {e}", self.dir.display());
            return batch
                .iter()
                .map(|_| Outcome::Deferred(why.clone()))
                .collect();
        }
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut staged = Vec::with_capacity(batch.len());
        for (i, item) in batch.iter().enumerate() {
            let tmp = self.dir.join(format!(".tmp-{}", item.wire_name));
            match self.write_one(&item.path, &tmp) {
                Ok(()) => staged.push((i, tmp)),
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    outcomes[i] = Some(Outcome::Deferred(format!(
                        "cannot write {}: {e}",
                        tmp.display()
                    )));
                }
            }
        }
        if let Err(e) = durable::sync_filesystem(&self.dir) {
            let why = e.to_string();
            return batch
                .iter()
                .map(|_| Outcome::Deferred(why.clone()))
                .collect();
        }
        for (i, tmp) in staged {
            let dest = self.dir.join(&batch[i].wire_name);
            outcomes[i] = Some(match fs::rename(&tmp, &dest) {
                Ok(()) => Outcome::Handed,
                Err(e) => Outcome::Deferred(format!("cannot rename into {}: {e}", dest.display())),
            });
        }
        if let Err(e) = durable::fsync_dir(&self.dir) {
            let why = e.to_string();
            return batch
                .iter()
                .map(|_| Outcome::Deferred(why.clone()))
                .collect();
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

/// How many files an import reads into memory at once.
const IMPORT_BATCH: usize = 1000;

/// Takes what `root` holds for this site (`root/ME/PEER/*.msg`, from
/// configured peers only) through the receive path, in batches, in name
/// (send) order. Returns the combined report.
pub fn import(
    spool: &crate::spool::Spool,
    root: &Path,
    select: Select,
    after: AfterImport,
    now: crate::time::Timestamp,
    log: &dyn Fn(String),
) -> crate::spool::Result<crate::receive::Report> {
    use crate::receive::{receive, Inbound, Payload, Report};
    let me = &spool.config().component;
    let inbox = root.join(me.as_str());
    let mut total = Report::default();
    let peers = match fs::read_dir(&inbox) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log(format!("{} holds nothing for {me}", root.display()));
            return Ok(total);
        }
        Err(e) => return Err(crate::spool::Error::io("read", &inbox, e)),
    };
    let mut peer_dirs: Vec<(Name, PathBuf)> = Vec::new();
    for p in peers.flatten() {
        let name = p.file_name().to_string_lossy().into_owned();
        match spool.config().peer(&name) {
            Some(peer) => peer_dirs.push((peer.id.clone(), p.path())),
            None => log(format!(
                "ignoring {}: {name} is not a configured peer",
                p.path().display()
            )),
        }
    }
    peer_dirs.sort();
    for (peer, dir) in peer_dirs {
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| crate::spool::Error::io("read", &dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                name.ends_with(".msg")
                    && !name.starts_with(".tmp-")
                    && (select == Select::Everything || is_ack_file(&name))
            })
            .collect();
        files.sort();
        for chunk in files.chunks(IMPORT_BATCH) {
            let mut batch = Vec::with_capacity(chunk.len());
            for path in chunk {
                let size = fs::metadata(path)
                    .map_err(|e| crate::spool::Error::io("read", path, e))?
                    .len();
                let payload = if size > crate::message::stream::THRESHOLD {
                    Payload::File(path.clone())
                } else {
                    Payload::Bytes(
                        fs::read(path).map_err(|e| crate::spool::Error::io("read", path, e))?,
                    )
                };
                batch.push(Inbound {
                    payload,
                    from: peer.clone(),
                    label: path.display().to_string(),
                });
            }
            let r = receive(spool, batch, now, log)?;
            total.add(&r);
            if after == AfterImport::Remove {
                for path in chunk {
                    let _ = fs::remove_file(path);
                }
                durable::fsync_dir(&dir)?;
            }
        }
    }
    Ok(total)
}
