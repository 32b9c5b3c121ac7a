//! The received area: a real Maildir (`received/tmp`, `new`, `cur`) that
//! any mail tool can read.
//!
//! Names follow the Maildir rules: `TIME.UNIQUE.HOST,S=SIZE`, where UNIQUE
//! is the message ID (unique by construction) and HOST the host name with
//! `/` and `:` written as `\057` and `\072`. Mail readers may move files to
//! `cur/` and append `:2,FLAGS`; the ID stays the second dot-separated field.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{durable, Area, Error, Result, Spool};
use crate::message::MessageId;
use crate::time::Timestamp;

fn host() -> String {
    super::host::name_or_localhost()
        .replace('/', "\\057")
        .replace(':', "\\072")
}

/// The message ID a Maildir file name carries, if it is one of ours.
pub fn id_of(name: &str) -> Option<&str> {
    let id = name.split('.').nth(1)?;
    MessageId::parse(id).ok().map(|_| id)
}

/// Writes one message's envelope.
pub type Writer<'a> = Box<dyn Fn(&mut dyn Write) -> std::io::Result<()> + 'a>;

/// Delivers messages (ID and a writer of the envelope) into
/// `received/new/`: writes each in `received/tmp/`, flushes them with one
/// `syncfs`, renames them into `new/` and fsyncs it. Durable on return.
pub fn deliver(
    spool: &Spool,
    items: &[(MessageId, Writer<'_>)],
    now: Timestamp,
) -> Result<Vec<PathBuf>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let root = spool.dir(Area::Received);
    let (tmp, new) = (root.join("tmp"), root.join("new"));
    let host = host();
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(items.len());
    let result = write_and_rename(&tmp, &new, &host, items, now, &mut staged);
    if result.is_err() {
        // Nothing half-written stays behind (a full disk must not fill
        // received/tmp/ until tmp_max_age): what was not renamed goes.
        for (from, _) in &staged {
            let _ = durable::remove_file(from);
        }
    }
    result?;
    Ok(staged.into_iter().map(|(_, to)| to).collect())
}

/// Delivers the message file at `path` (written and fsynced by the
/// caller, on this file system) as message `id` into `received/new/`, by
/// renaming it. Durable on return.
pub fn deliver_file(spool: &Spool, id: &MessageId, path: &Path, now: Timestamp) -> Result<PathBuf> {
    let new = spool.dir(Area::Received).join("new");
    let size = fs::metadata(path)
        .map_err(|e| Error::io("read", path, e))?
        .len();
    let to = new.join(format!("{}.{id}.{},S={size}", now.as_secs(), host()));
    durable::rename(path, &to)?;
    durable::fsync_dir(new.as_path())?;
    Ok(to)
}

fn write_and_rename(
    tmp: &Path,
    new: &Path,
    host: &str,
    items: &[(MessageId, Writer<'_>)],
    now: Timestamp,
    staged: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<()> {
    for (id, write) in items {
        let base = format!("{}.{id}.{host}", now.as_secs());
        let path = tmp.join(&base);
        let file = durable::open(
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
            &path,
        )
        .map_err(|e| Error::io("create", &path, e))?;
        staged.push((path.clone(), PathBuf::new()));
        let mut f = std::io::BufWriter::new(file);
        write(&mut f)
            .and_then(|_| f.flush())
            .map_err(|e| Error::io("write", &path, e))?;
        let size = f.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
        if let Some(last) = staged.last_mut() {
            last.1 = new.join(format!("{base},S={size}"));
        }
    }
    durable::sync_files(tmp, staged.iter().map(|(from, _)| from.as_path()))?;
    for (from, to) in staged.iter() {
        durable::rename(from, to)?;
    }
    durable::fsync_dir(new)
}

/// The IDs of every message in `new/` and `cur/`.
pub fn ids(spool: &Spool) -> Result<HashSet<String>> {
    let root = spool.dir(Area::Received);
    let mut out = HashSet::new();
    for sub in ["new", "cur"] {
        let dir = root.join(sub);
        for e in fs::read_dir(&dir)
            .map_err(|e| Error::io("read", &dir, e))?
            .flatten()
        {
            if let Some(id) = id_of(&e.file_name().to_string_lossy()) {
                out.insert(id.to_string());
            }
        }
    }
    Ok(out)
}

/// Every message file in `new/` and `cur/`.
pub fn files(spool: &Spool) -> Result<Vec<PathBuf>> {
    let root = spool.dir(Area::Received);
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let dir = root.join(sub);
        for e in fs::read_dir(&dir)
            .map_err(|e| Error::io("read", &dir, e))?
            .flatten()
        {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_flags_and_dotted_hosts() {
        assert_eq!(
            id_of("1764000000.20261124T160512-123456-3f9a2c7b1e4d5a60.host.example.org,S=12:2,S"),
            Some("20261124T160512-123456-3f9a2c7b1e4d5a60")
        );
        assert_eq!(id_of("1764000000.M123P45.host"), Some("M123P45"));
        assert_eq!(id_of("junk"), None);
    }
}
