//! Quarantine: a file that cannot be read, verified or believed moves to
//! `quarantine/` under a name never used before, with a `.reason` file
//! written (and made durable) first. Input that never had a file of its
//! own (stdin, a request body, an open file on a medium) is staged in
//! `tmp/` and moved the same way. Nothing quarantined is ever
//! acknowledged.

use std::fs;
use std::path::{Path, PathBuf};

use super::{durable, Area, Entry, Error, Locked, Quarantined, Reason, Result, Spool};
use crate::time::Timestamp;

impl Spool {
    /// Moves an unreadable file into `quarantine/` with a `.reason` file.
    /// Returns the quarantined file's path.
    pub fn quarantine(
        &self,
        path: &Path,
        from: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        self.quarantine_as(Quarantined::Unreadable, path, from, detail, now)
    }

    /// Moves a file into `quarantine/` with a `.reason` file saying why
    /// (`kind`, and `detail`). Returns the quarantined file's path.
    pub fn quarantine_as(
        &self,
        kind: Quarantined,
        path: &Path,
        from: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().replace(['/', ':'], "_"))
            .unwrap_or_default();
        let qdir = self.dir(Area::Quarantine);
        // Never overwrite an earlier quarantined file.
        let mut name = format!("{}.{}.{}", now.as_micros(), std::process::id(), base);
        let mut n = 1;
        while qdir.join(&name).exists() {
            name = format!("{}.{}.{}.{n}", now.as_micros(), std::process::id(), base);
            n += 1;
        }
        let reason = Reason {
            id: String::new(),
            time: now,
            kind: kind.as_str().into(),
            from: from.into(),
            detail: detail.into(),
        };
        durable::write_durable(
            &self.dir(Area::Tmp),
            &qdir,
            &format!("{name}.reason"),
            reason.to_text().as_bytes(),
            now.as_micros(),
        )?;
        let dest = qdir.join(&name);
        durable::rename(path, &dest)?;
        durable::fsync_dir(&qdir)?;
        Ok(dest)
    }

    /// Stores `bytes` in `quarantine/` with a `.reason` file (for input that
    /// never had a file of its own, such as a message on stdin).
    pub fn quarantine_bytes(
        &self,
        kind: Quarantined,
        bytes: &[u8],
        label: &str,
        from: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        self.quarantine_with(kind, |out| out.write_all(bytes), label, from, detail, now)
    }

    /// Like [`Spool::quarantine_bytes`], for what `write` writes.
    pub fn quarantine_with(
        &self,
        kind: Quarantined,
        write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
        label: &str,
        from: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        let mut staged = self.stage(now)?;
        write(&mut staged).map_err(|e| Error::io("write", staged.path(), e))?;
        staged.sync()?;
        let mut tmp_name = staged.path().as_os_str().to_os_string();
        tmp_name.push(format!(".{label}"));
        let tmp_path = PathBuf::from(tmp_name);
        staged.commit(&tmp_path)?;
        self.quarantine_as(kind, &tmp_path, from, detail, now)
    }

    /// Copies an open file (from its start; the file stays where it is)
    /// into `quarantine/` with a `.reason` file. `label` names where it came
    /// from; its last path component names the copy.
    pub fn quarantine_file(
        &self,
        kind: Quarantined,
        file: &fs::File,
        label: &str,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        let staged = self.stage(now)?;
        let base = Path::new(label)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut tmp_name = staged.path().as_os_str().to_os_string();
        tmp_name.push(format!(".{base}"));
        let tmp_path = PathBuf::from(tmp_name);
        let copy = || -> std::io::Result<()> {
            // Whatever it is, it may be secret: readable by the spool's owner only.
            let mut out = durable::open(
                std::os::unix::fs::OpenOptionsExt::mode(
                    fs::OpenOptions::new().write(true).create_new(true),
                    0o600,
                ),
                &tmp_path,
            )?;
            let mut input = std::io::BufReader::new(file);
            std::io::Seek::seek(&mut input, std::io::SeekFrom::Start(0))?;
            std::io::copy(&mut input, &mut out)?;
            durable::sync_all(&out, &tmp_path)
        };
        if let Err(e) = copy() {
            let _ = durable::remove_file(&tmp_path);
            return Err(Error::io("copy into quarantine", Path::new(label), e));
        }
        drop(staged);
        self.quarantine_as(kind, &tmp_path, label, detail, now)
    }

    /// Quarantined files (name, size) and their reasons.
    pub fn scan_quarantine(&self) -> Result<Vec<(String, u64, Reason)>> {
        let dir = self.dir(Area::Quarantine);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir)
            .map_err(|e| Error::io("read", &dir, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".reason") {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let text = fs::read_to_string(dir.join(format!("{name}.reason"))).unwrap_or_default();
            out.push((name, size, Reason::parse(&text)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

impl Locked<'_> {
    /// Moves an unreadable outbound file to `quarantine/` with its reason,
    /// taking it out of the accounting. Returns the quarantined path.
    pub fn quarantine_entry(
        &mut self,
        entry: &Entry,
        detail: &str,
        now: Timestamp,
    ) -> Result<PathBuf> {
        self.ledger.mark_dirty(&self.usage)?;
        let path = self.spool.entry_path(entry);
        let q = self
            .spool
            .quarantine(&path, entry.area.dir_name(), detail, now)?;
        self.usage.remove(&entry.name);
        durable::fsync_dir(&self.spool.dir(entry.area))?;
        Ok(q)
    }
}
