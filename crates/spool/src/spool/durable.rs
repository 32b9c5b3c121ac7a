//! Durable file operations: the only place rs calls `fsync`.
//!
//! The pattern everywhere: write a file under `tmp/`, fsync it, rename it
//! into its area, fsync the area's directory. A reader never sees half a
//! file, and after a crash the file is either absent or complete.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{fault, Error, Result};

/// Flushes a directory's entries (renames, creations, removals) to disk.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    fault::sync_dir_with(dir, || File::open(dir).and_then(|d| d.sync_all()))
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Creates `dir` and any missing parents, fsyncing the directory that
/// holds each one made, so that what is later made durable inside them
/// cannot vanish with an entry the disk never saw.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    let made = fault::mkdir_with(dir, || std::fs::create_dir(dir))
        .map_err(|e| Error::io("create directory", dir, e))?;
    if made {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// Removes the file `path`; the caller fsyncs its directory.
pub fn remove_file(path: &Path) -> std::io::Result<()> {
    fault::remove_with(path, || std::fs::remove_file(path))
}

/// Opens `path` with `options` to write it.
pub fn open(options: &OpenOptions, path: &Path) -> std::io::Result<File> {
    fault::open_with(path, || options.open(path))
}

/// Makes the data written to the open `file` at `path` durable
/// (`fdatasync`).
pub fn sync_data(file: &File, path: &Path) -> std::io::Result<()> {
    fault::sync_file_with(path, || file.sync_data())
}

/// Makes the open `file` at `path` durable, data and size (`fsync`).
pub fn sync_all(file: &File, path: &Path) -> std::io::Result<()> {
    fault::sync_file_with(path, || file.sync_all())
}

/// A file being written under `tmp/`, locked by its writer so that recovery
/// can tell a live writer from a dead one. Dropped without
/// [`Staged::commit`], it is removed.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

impl Staged {
    /// Creates a new, empty, exclusively locked file in `tmp_dir`.
    pub fn create(tmp_dir: &Path, now_micros: i64) -> Result<Staged> {
        let mut random = [0u8; 6];
        let _ = getrandom::fill(&mut random);
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("{now_micros}.{}.{hex}", std::process::id());
        let path = tmp_dir.join(name);
        let file = open(
            OpenOptions::new().write(true).read(true).create_new(true),
            &path,
        )
        .map_err(|e| Error::io("create", &path, e))?;
        // A lock we cannot take only weakens crash recovery (the age bound
        // still applies), so it is not an error.
        let _ = fs2::FileExt::try_lock_exclusive(&file);
        Ok(Staged {
            path,
            file: Some(file),
            size: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Starts writing what was written to the disk, without waiting (see
    /// [`start_writeback`]): for a batch of files made durable together.
    pub fn start_writeback(&self) {
        if let Some(f) = &self.file {
            start_writeback(f, 0, self.size);
        }
    }

    /// Makes the content durable: returns after fsync of the file.
    pub fn sync(&mut self) -> Result<()> {
        if let Some(f) = &self.file {
            sync_all(f, &self.path).map_err(|e| Error::io("fsync", &self.path, e))?;
        }
        Ok(())
    }

    /// Renames the (synced) file to `dest`. The caller fsyncs `dest`'s
    /// directory, once per batch.
    pub fn commit(mut self, dest: &Path) -> Result<()> {
        fault::rename_with(&self.path, dest, || std::fs::rename(&self.path, dest))
            .map_err(|e| Error::io("rename into place", dest, e))?;
        self.file = None;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("staged file already committed"))?;
        let n = f.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `dir/name` durably: returns after fsync of the file and
/// of `dir`.
pub fn write_durable(
    tmp_dir: &Path,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    now_micros: i64,
) -> Result<PathBuf> {
    let mut staged = Staged::create(tmp_dir, now_micros)?;
    staged
        .write_all(bytes)
        .map_err(|e| Error::io("write", staged.path(), e))?;
    staged.sync()?;
    let dest = dir.join(name);
    staged.commit(&dest)?;
    fsync_dir(dir)?;
    Ok(dest)
}

/// Renames `from` to `to`; the caller fsyncs the directories involved.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fault::rename_with(from, to, || std::fs::rename(from, to))
        .map_err(|e| Error::io("rename", from, e))
}

/// Flushes every written file of the file system holding `path` (one
/// `syncfs`): the group commit that makes a batch of files durable at once,
/// before they are renamed into place.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    fault::syncfs_with(path, || {
        // SAFETY: syncfs takes a valid open descriptor, which `f` holds.
        let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    })
    .map_err(|e| Error::io("syncfs", path, e))
}

/// Whether a `syncfs` of the file system holding `dir` makes its files
/// durable. Not on FUSE: the kernel passes a `syncfs` on to virtiofs only,
/// so a FUSE daemon that buffers (sshfs, a cloud mount, a test's lossyfs)
/// is never asked to write; only an fsync of each file reaches it.
pub fn syncfs_reaches_files(dir: &Path) -> bool {
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return true;
    };
    // SAFETY: statfs fills the struct we pass, for a valid C string.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return true;
    }
    s.f_type as i64 != FUSE_SUPER_MAGIC
}

/// Makes the written files `files` (on the file system holding `dir`)
/// durable: one `syncfs`, the group commit, where that reaches them; else
/// an fsync of each.
pub fn sync_files<'a>(dir: &Path, files: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    if syncfs_reaches_files(dir) {
        return sync_filesystem(dir);
    }
    for path in files {
        let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
        sync_all(&f, path).map_err(|e| Error::io("fsync", path, e))?;
    }
    Ok(())
}

/// Appends `text` to the file at `path` (creating it) and returns after
/// fsync of the file (and of its directory when the file is new).
pub fn append_durable(path: &Path, text: &[u8]) -> Result<()> {
    let existed = path.exists();
    let mut f = open(OpenOptions::new().append(true).create(true), path)
        .map_err(|e| Error::io("open", path, e))?;
    f.write_all(text)
        .map_err(|e| Error::io("append to", path, e))?;
    sync_data(&f, path).map_err(|e| Error::io("fsync", path, e))?;
    if !existed {
        if let Some(dir) = path.parent() {
            fsync_dir(dir)?;
        }
    }
    Ok(())
}

/// Allocates `len` bytes for the open `file` (not a sparse extension: a
/// later write into them cannot meet a full disk).
pub fn allocate(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: posix_fallocate takes a valid open descriptor, which `file`
    // holds; it returns the error number rather than setting errno.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        rc => Err(std::io::Error::from_raw_os_error(rc)),
    }
}

/// Opens (creating it if need be) the lock file at `path` and waits for
/// its exclusive lock, held until the file returned is dropped.
pub fn lock_exclusive(path: &Path) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    fs2::FileExt::lock_exclusive(&f)?;
    Ok(f)
}

/// Starts writing `len` bytes of `file` from `at` to the disk, without
/// waiting: a later fsync of a file written in large parts then waits for
/// the last of them, not for all (advice: a failure is the fsync's).
pub fn start_writeback(file: &File, at: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (i64::try_from(at), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for the call; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), at, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// A writer to a file that starts writing to the disk what it was given
/// every few MiB (see [`start_writeback`]): a large file's final fsync
/// then waits for its last part, not for all of it.
pub struct Flowing<W> {
    inner: W,
    file: File,
    at: u64,
    started: u64,
}

impl<W: std::io::Write> Flowing<W> {
    /// Writes through `inner`, which writes `file` from its start.
    pub fn new(inner: W, file: &File) -> io::Result<Flowing<W>> {
        Ok(Flowing {
            inner,
            file: file.try_clone()?,
            at: 0,
            started: 0,
        })
    }
}

impl<W: std::io::Write> std::io::Write for Flowing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        const EVERY: u64 = 8 << 20;
        let n = self.inner.write(buf)?;
        self.at += n as u64;
        if self.at - self.started >= EVERY {
            self.inner.flush()?;
            start_writeback(&self.file, self.started, self.at - self.started);
            self.started = self.at;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Like [`lock_exclusive`], without waiting: `None` when another holds it.
pub fn try_lock_exclusive(path: &Path) -> std::io::Result<Option<File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match fs2::FileExt::try_lock_exclusive(&f) {
        Ok(()) => Ok(Some(f)),
        Err(e) if e.kind() == fs2::lock_contended_error().kind() => Ok(None),
        Err(e) => Err(e),
    }
}
