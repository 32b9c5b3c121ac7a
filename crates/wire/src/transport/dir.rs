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
use std::path::{Path, PathBuf};

use super::untrusted::{self, Kind};
use super::{Error, Exchanged, Outcome, Outgoing, Transport};
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

    /// Opens `ROOT/TO/FROM`, making what is missing below the root when
    /// `create` says so (the root itself never: it is the medium).
    fn open(&self, create: Below) -> Result<untrusted::Dir, Error> {
        let root = untrusted::Dir::open_root(&self.root).map_err(|source| Error::Medium {
            root: self.root.clone(),
            source,
        })?;
        let sub = |d: &untrusted::Dir, name: &Name| match create {
            Below::Create => d.create_dir(name.as_str()),
            Below::Open => d.open_dir(name.as_str()),
        };
        let to = sub(&root, &self.to)?;
        Ok(sub(&to, &self.from)?)
    }

    /// Writes `item` into `dir` as the new file `name`: copied (a message
    /// with this hop's time sent in its trace), or protected for the peer.
    fn write_one(&self, item: &Outgoing, dir: &untrusted::Dir, name: &str) -> Result<(), Error> {
        // A full medium is said with where and how much is free.
        let said = |e: std::io::Error| Error::write(dir.path(), e);
        let out = dir.create_file(name).map_err(said)?;
        let leaving = item
            .leaving(&self.from, self.now)
            .map_err(|source| Error::Read {
                path: item.path.clone(),
                source,
            })?;
        let Some(p) = &self.protector else {
            // The new start, then the rest copied by the kernel, its
            // writeback started as it goes.
            let (head, rest) = leaving.into_parts();
            let mut at = head.len() as u64;
            std::io::Write::write_all(&mut &out, &head).map_err(said)?;
            loop {
                let mut piece = std::io::Read::take(&rest, 8 << 20);
                let n = std::io::copy(&mut piece, &mut &out).map_err(said)?;
                if n == 0 {
                    return Ok(());
                }
                crate::spool::durable::start_writeback(&out, at, n);
                at += n;
            }
        };
        let file = out.try_clone().map_err(said)?;
        let mut out = crate::spool::durable::Flowing::new(
            std::io::BufWriter::with_capacity(256 * 1024, out),
            &file,
        )
        .map_err(said)?;
        let mut input = std::io::BufReader::with_capacity(256 * 1024, leaving);
        p.protect(&mut input, &mut out, self.now)?;
        std::io::Write::flush(&mut out).map_err(said)
    }

    /// Removes message files the next hop no longer needs: those whose
    /// message ID is not in `outbound` (acknowledged, or dead). Returns how
    /// many were removed.
    pub fn prune(&self, outbound: &HashSet<String>) -> usize {
        let Ok(dir) = self.open(Below::Open) else {
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

/// Whether the directories below the route's root are made when missing.
#[derive(Clone, Copy)]
enum Below {
    Create,
    Open,
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

    fn exchange(&mut self, batch: &[Outgoing]) -> Exchanged {
        if batch.is_empty() {
            return Exchanged::default();
        }
        let all = |why: String| Exchanged::all(batch, Outcome::Deferred(why));
        let dir = match self.open(Below::Create) {
            Ok(d) => d,
            Err(why) => return all(why.to_string()),
        };
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut staged = Vec::with_capacity(batch.len());
        for (i, item) in batch.iter().enumerate() {
            let tmp = format!(".tmp-{}", item.wire_name);
            // A leftover (or anything planted) under the temporary name goes
            // first: a link is removed itself, never written through.
            let _ = dir.remove(&tmp);
            match self.write_one(item, &dir, &tmp) {
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
        if let Err(e) = dir.sync_files(staged.iter().map(|(_, tmp)| tmp.as_str())) {
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
        Exchanged {
            outcomes: outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Outcome::Deferred("not attempted".into())))
                .collect(),
            returned: Vec::new(),
            failure: None,
            trouble: None,
        }
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
