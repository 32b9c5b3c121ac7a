//! `lossyfs BACKING MOUNTPOINT`: test support, a FUSE file system over the
//! directory BACKING that keeps what is written to a file in memory until
//! that file is fsynced. Killing it (SIGKILL) is a power cut: the backing
//! directory then holds only what was fsynced. Names (create, rename,
//! unlink, mkdir) reach the backing directory at once, so this witness
//! checks file data; `crates/spool/src/spool/fault.rs` also undoes unsynced names.
//!
//! Note that a `syncfs` never reaches a FUSE daemon (the kernel sends
//! FUSE_SYNCFS to virtiofs only), so on this file system, as on any FUSE
//! file system that buffers, only an fsync of each file makes it durable.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

/// Attributes are never cached by the kernel: names move under it.
const TTL: Duration = Duration::ZERO;

struct Lossy {
    backing: PathBuf,
    /// Inode numbers handed to the kernel, and their paths (relative).
    paths: HashMap<u64, PathBuf>,
    inos: HashMap<PathBuf, u64>,
    next: u64,
    /// Files written since their last fsync: their whole content.
    dirty: HashMap<u64, Vec<u8>>,
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl Lossy {
    fn new(backing: PathBuf) -> Lossy {
        let mut fs = Lossy {
            backing,
            paths: HashMap::new(),
            inos: HashMap::new(),
            next: 2,
            dirty: HashMap::new(),
        };
        fs.paths.insert(1, PathBuf::new());
        fs.inos.insert(PathBuf::new(), 1);
        fs
    }

    fn real(&self, ino: u64) -> Option<PathBuf> {
        self.paths.get(&ino).map(|p| self.backing.join(p))
    }

    fn ino_for(&mut self, rel: PathBuf) -> u64 {
        if let Some(&i) = self.inos.get(&rel) {
            return i;
        }
        let i = self.next;
        self.next += 1;
        self.paths.insert(i, rel.clone());
        self.inos.insert(rel, i);
        i
    }

    fn child(&self, parent: u64, name: &OsStr) -> Option<PathBuf> {
        self.paths.get(&parent).map(|p| p.join(name))
    }

    fn attr(&self, ino: u64) -> std::io::Result<FileAttr> {
        let path = self
            .real(ino)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))?;
        let m = fs::symlink_metadata(path)?;
        let kind = if m.is_dir() {
            FileType::Directory
        } else if m.file_type().is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        let size = self.dirty.get(&ino).map_or(m.len(), |d| d.len() as u64);
        let time = |s: i64, n: i64| UNIX_EPOCH + Duration::new(s.max(0) as u64, n as u32);
        Ok(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: time(m.atime(), m.atime_nsec()),
            mtime: time(m.mtime(), m.mtime_nsec()),
            ctime: time(m.ctime(), m.ctime_nsec()),
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm: (m.mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// The content of `ino` as it is to be changed: loaded into memory on
    /// the first write since its last fsync.
    fn loaded(&mut self, ino: u64) -> std::io::Result<&mut Vec<u8>> {
        if !self.dirty.contains_key(&ino) {
            let path = self
                .real(ino)
                .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))?;
            let content = fs::read(path)?;
            self.dirty.insert(ino, content);
        }
        Ok(self.dirty.get_mut(&ino).expect("just loaded"))
    }

    fn reply_entry(&mut self, rel: PathBuf, reply: ReplyEntry) {
        let ino = self.ino_for(rel);
        match self.attr(ino) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Moves the names under `from` to `to` (a renamed file or directory).
    fn moved(&mut self, from: &Path, to: &Path) {
        if let Some(old) = self.inos.remove(to) {
            self.paths.remove(&old);
            self.dirty.remove(&old);
        }
        let moved: Vec<(PathBuf, u64)> = self
            .inos
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (p, i) in moved {
            let rest = p.strip_prefix(from).expect("under from").to_path_buf();
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            self.inos.remove(&p);
            self.inos.insert(new.clone(), i);
            self.paths.insert(i, new);
        }
    }
}

impl Filesystem for Lossy {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let Some(rel) = self.child(parent, name) else {
            return reply.error(libc::ENOENT);
        };
        if fs::symlink_metadata(self.backing.join(&rel)).is_err() {
            return reply.error(libc::ENOENT);
        }
        self.reply_entry(rel, reply);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyAttr) {
        match self.attr(ino) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let Some(path) = self.real(ino) else {
            return reply.error(libc::ENOENT);
        };
        if let Some(mode) = mode {
            if let Err(e) = fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777)) {
                return reply.error(errno(&e));
            }
        }
        if let Some(size) = size {
            match self.loaded(ino) {
                Ok(d) => d.resize(size as usize, 0),
                Err(e) => return reply.error(errno(&e)),
            }
        }
        self.getattr(_req, ino, reply);
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let Some(rel) = self.child(parent, name) else {
            return reply.error(libc::ENOENT);
        };
        let made = fs::create_dir(self.backing.join(&rel)).and_then(|_| {
            fs::set_permissions(
                self.backing.join(&rel),
                fs::Permissions::from_mode(mode & 0o7777),
            )
        });
        match made {
            Ok(()) => self.reply_entry(rel, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let Some(rel) = self.child(parent, name) else {
            return reply.error(libc::ENOENT);
        };
        match fs::remove_file(self.backing.join(&rel)) {
            Ok(()) => {
                if let Some(i) = self.inos.remove(&rel) {
                    self.dirty.remove(&i);
                }
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let Some(rel) = self.child(parent, name) else {
            return reply.error(libc::ENOENT);
        };
        match fs::remove_dir(self.backing.join(&rel)) {
            Ok(()) => {
                self.inos.remove(&rel);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let (Some(from), Some(to)) = (self.child(parent, name), self.child(newparent, newname))
        else {
            return reply.error(libc::ENOENT);
        };
        let real_to = self.backing.join(&to);
        if flags & libc::RENAME_NOREPLACE != 0 && fs::symlink_metadata(&real_to).is_ok() {
            return reply.error(libc::EEXIST);
        }
        match fs::rename(self.backing.join(&from), &real_to) {
            Ok(()) => {
                self.moved(&from, &to);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(rel) = self.child(parent, name) else {
            return reply.error(libc::ENOENT);
        };
        let mut options = OpenOptions::new();
        options.write(true).mode(mode & 0o7777);
        if flags & libc::O_EXCL != 0 {
            options.create_new(true);
        } else {
            options.create(true).truncate(false);
        }
        if let Err(e) = options.open(self.backing.join(&rel)) {
            return reply.error(errno(&e));
        }
        let ino = self.ino_for(rel);
        // A new file's content is not durable until fsynced.
        if flags & libc::O_TRUNC != 0 || !self.dirty.contains_key(&ino) {
            let _ = self.loaded(ino);
        }
        match self.attr(ino) {
            Ok(a) => reply.created(&TTL, &a, 0, 0, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let offset = offset.max(0) as usize;
        if let Some(d) = self.dirty.get(&ino) {
            let end = (offset + size as usize).min(d.len());
            return reply.data(if offset < end { &d[offset..end] } else { &[] });
        }
        let Some(path) = self.real(ino) else {
            return reply.error(libc::ENOENT);
        };
        let mut buf = vec![0u8; size as usize];
        match File::open(path).and_then(|f| f.read_at(&mut buf, offset as u64)) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let offset = offset.max(0) as usize;
        match self.loaded(ino) {
            Ok(d) => {
                if d.len() < offset + data.len() {
                    d.resize(offset + data.len(), 0);
                }
                d[offset..offset + data.len()].copy_from_slice(data);
                reply.written(data.len() as u32)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _owner: u64, reply: ReplyEmpty) {
        // Closing a file makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let Some(content) = self.dirty.remove(&ino) else {
            return reply.ok();
        };
        let Some(path) = self.real(ino) else {
            return reply.ok();
        };
        // In place, as a disk writes pages: cut off during this, the file
        // holds old and new pages, never a shorter prefix.
        let written = OpenOptions::new().write(true).open(&path).and_then(|f| {
            f.write_all_at(&content, 0)?;
            f.set_len(content.len() as u64)?;
            f.sync_all()
        });
        match written {
            Ok(()) => reply.ok(),
            Err(e) => {
                self.dirty.insert(ino, content);
                reply.error(errno(&e))
            }
        }
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        // Names reach the backing directory at once.
        reply.ok();
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let Some(rel) = self.paths.get(&ino).cloned() else {
            return reply.error(libc::ENOENT);
        };
        let entries = match fs::read_dir(self.backing.join(&rel)) {
            Ok(d) => d,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut all: Vec<(u64, FileType, std::ffi::OsString)> = vec![
            (ino, FileType::Directory, ".".into()),
            (ino, FileType::Directory, "..".into()),
        ];
        let mut names: Vec<(std::ffi::OsString, bool)> = entries
            .flatten()
            .map(|e| {
                (
                    e.file_name(),
                    e.file_type().map(|t| t.is_dir()).unwrap_or(false),
                )
            })
            .collect();
        names.sort();
        for (name, dir) in names {
            let i = self.ino_for(rel.join(&name));
            let kind = if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            all.push((i, kind, name));
        }
        for (n, (i, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(i, (n + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let c =
            std::ffi::CString::new(self.backing.as_os_str().as_encoded_bytes()).expect("a path");
        // SAFETY: statvfs fills the struct we pass for a valid C string.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return reply.error(libc::EIO);
        }
        reply.statfs(
            s.f_blocks,
            s.f_bfree,
            s.f_bavail,
            s.f_files,
            s.f_ffree,
            s.f_bsize as u32,
            s.f_namemax as u32,
            s.f_frsize as u32,
        );
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        let end = (offset + length).max(0) as usize;
        match self.loaded(ino) {
            Ok(d) => {
                if d.len() < end {
                    d.resize(end, 0);
                }
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: lossyfs BACKING MOUNTPOINT");
        std::process::exit(64);
    }
    let fs = Lossy::new(PathBuf::from(&args[1]));
    let options = [MountOption::FSName("lossyfs".into()), MountOption::RW];
    if let Err(e) = fuser::mount2(fs, &args[2], &options) {
        eprintln!("lossyfs: cannot mount {}: {e}", args[2]);
        std::process::exit(71);
    }
}
