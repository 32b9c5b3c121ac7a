//! A directory rs does not trust: a removable medium, a shared folder.
//!
//! Everything below the directory the operator named (the stick's mount
//! point) may have been made by someone else: its names, links and file
//! types are hostile input. This module is the only way the directory route
//! touches such a tree, and it keeps these rules:
//!
//! - Architecture invariant: below the named root, nothing is reached
//!   through a symbolic link. Directories are opened with `O_NOFOLLOW`
//!   relative to their parent's descriptor (`openat`), files likewise, so a
//!   link planted on the medium, or swapped in while rs runs, is refused
//!   rather than followed out of the tree.
//! - Only regular files are read: a file is opened without blocking (a FIFO
//!   cannot stall the run), its type checked on the open descriptor
//!   (`fstat`), and it is read through that descriptor only, never reopened
//!   by name.
//! - Files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`: rs never
//!   writes through an existing name, so a planted link cannot redirect a
//!   write.
//! - Removal (`unlinkat`) and renames (`renameat`) act on names inside a
//!   directory rs opened this way, so they never reach outside it.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::spool::fault;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// What a directory entry is, as far as rs is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device: never opened.
    Special(&'static str),
}

impl Kind {
    fn of(t: FileType) -> Kind {
        match t {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Special("a FIFO"),
            FileType::Socket => Kind::Special("a socket"),
            FileType::CharacterDevice => Kind::Special("a character device"),
            FileType::BlockDevice => Kind::Special("a block device"),
            _ => Kind::Special("of an unknown type"),
        }
    }

    /// How a log line names this kind of entry.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Special(what) => what,
        }
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub name: OsString,
    pub kind: Kind,
}

impl Item {
    /// The name as text (names rs itself writes are ASCII).
    pub fn name_lossy(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }
}

/// An open directory of an untrusted tree.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Why an entry was not opened.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{path} is {}, not {expected}: not followed", kind.describe())]
    WrongKind {
        path: PathBuf,
        kind: Kind,
        expected: &'static str,
    },
    #[error("cannot open {path}: {err}")]
    Io { path: PathBuf, err: io::Error },
}

impl Refusal {
    fn io(path: PathBuf, err: impl Into<io::Error>) -> Refusal {
        Refusal::Io {
            path,
            err: err.into(),
        }
    }

    /// Whether the entry does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Refusal::Io { err, .. } if err.kind() == io::ErrorKind::NotFound)
    }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    if name.as_bytes().contains(&b'/') || name.is_empty() || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` is not a plain file name", name.to_string_lossy()),
        ));
    }
    CString::new(name.as_bytes()).map_err(io::Error::from)
}

impl Dir {
    /// Opens the root the operator named (a mount point). The root itself
    /// may be reached through links: it is the operator's choice, not the
    /// medium's. Fails if it does not exist or is not a directory.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of an entry, for messages.
    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// Opens the subdirectory `name`, refusing a link or anything else that
    /// is not a directory.
    pub fn open_dir(&self, name: impl AsRef<OsStr>) -> Result<Dir, Refusal> {
        let name = name.as_ref();
        let path = self.join(name);
        let c = c_name(name).map_err(|e| Refusal::io(path.clone(), e))?;
        match rustix::fs::openat(
            &self.fd,
            &c,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Dir { fd, path }),
            // ENOTDIR (not a directory) and ELOOP (a link): say what it is.
            Err(e) if e == rustix::io::Errno::NOTDIR || e == rustix::io::Errno::LOOP => {
                Err(match self.kind_of(&c) {
                    Ok(kind) => Refusal::WrongKind {
                        path,
                        kind,
                        expected: "a directory",
                    },
                    Err(e) => Refusal::io(path, e),
                })
            }
            Err(e) => Err(Refusal::io(path, e)),
        }
    }

    /// Opens the subdirectory `name`, creating it if absent (mode 0777 less
    /// the umask rs was started with: a medium is read elsewhere, by other
    /// users, so the spool's privacy is not imposed on it).
    pub fn create_dir(&self, name: impl AsRef<OsStr>) -> Result<Dir, Refusal> {
        let name = name.as_ref();
        let c = c_name(name).map_err(|e| Refusal::io(self.join(name), e))?;
        let path = self.join(name);
        let made = fault::mkdir_with(&path, || {
            rustix::fs::mkdirat(&self.fd, &c, Mode::from_raw_mode(0o700)).map_err(io::Error::from)
        })
        .map_err(|e| Refusal::io(path.clone(), e))?;
        let dir = self.open_dir(name)?;
        if made {
            rustix::fs::fchmod(
                &dir.fd,
                Mode::from_raw_mode(crate::spool::outside_mode(0o777)),
            )
            .map_err(|e| Refusal::io(path, io::Error::from(e)))?;
        }
        Ok(dir)
    }

    fn kind_of(&self, name: &CStr) -> io::Result<Kind> {
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(Kind::of(FileType::from_raw_mode(st.st_mode)))
    }

    /// The entries of this directory (`.` and `..` left out), sorted by name.
    pub fn list(&self) -> io::Result<Vec<Item>> {
        let mut dir = rustix::fs::Dir::read_from(&self.fd)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => self.kind_of(name)?,
                t => Kind::of(t),
            };
            out.push(Item {
                name: OsString::from_vec(name.to_bytes().to_vec()),
                kind,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Opens the regular file `name` for reading, refusing links, FIFOs,
    /// devices and directories without blocking on any of them.
    pub fn open_file(&self, name: impl AsRef<OsStr>) -> Result<File, Refusal> {
        let name = name.as_ref();
        let path = self.join(name);
        let c = c_name(name).map_err(|e| Refusal::io(path.clone(), e))?;
        let fd = rustix::fs::openat(
            &self.fd,
            &c,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::LOOP {
                Refusal::WrongKind {
                    path: path.clone(),
                    kind: Kind::Symlink,
                    expected: "a regular file",
                }
            } else {
                Refusal::io(path.clone(), e)
            }
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Refusal::io(path.clone(), e))?;
        let kind = Kind::of(FileType::from_raw_mode(st.st_mode));
        if kind != Kind::File {
            return Err(Refusal::WrongKind {
                path,
                kind,
                expected: "a regular file",
            });
        }
        // Reads of a regular file never block; clear the flag anyway so the
        // descriptor behaves as any other.
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| Refusal::io(path.clone(), e))?;
        rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)
            .map_err(|e| Refusal::io(path.clone(), e))?;
        Ok(File::from(fd))
    }

    /// Creates the file `name` for writing; fails if any entry of that name
    /// exists (a link included), so nothing is written through a planted name.
    pub fn create_file(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let c = c_name(name.as_ref())?;
        fault::open_with(&self.join(name.as_ref()), || {
            let fd = rustix::fs::openat(
                &self.fd,
                &c,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            // As the umask rs was started with says (see `create_dir`).
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(crate::spool::outside_mode(0o666)))?;
            Ok(File::from(fd))
        })
    }

    /// Removes the entry `name` (not a directory). A link is removed
    /// itself; what it points to is untouched.
    pub fn remove(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let c = c_name(name.as_ref())?;
        fault::remove_with(&self.join(name.as_ref()), || {
            rustix::fs::unlinkat(&self.fd, &c, AtFlags::empty()).map_err(io::Error::from)
        })
    }

    /// Renames `from` to `to` inside this directory.
    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> io::Result<()> {
        let (f, t) = (c_name(from.as_ref())?, c_name(to.as_ref())?);
        let (from, to) = (self.join(from.as_ref()), self.join(to.as_ref()));
        fault::rename_with(&from, &to, || {
            rustix::fs::renameat(&self.fd, &f, &self.fd, &t).map_err(io::Error::from)
        })
    }

    /// Renames `from` in this directory to `to` in `dest` (another
    /// directory opened this way, on the same file system): neither name
    /// is resolved through a link, so the move stays between the two.
    pub fn rename_into(
        &self,
        from: impl AsRef<OsStr>,
        dest: &Dir,
        to: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        let (f, t) = (c_name(from.as_ref())?, c_name(to.as_ref())?);
        let (from, to) = (self.join(from.as_ref()), dest.join(to.as_ref()));
        fault::rename_with(&from, &to, || {
            rustix::fs::renameat(&self.fd, &f, &dest.fd, &t).map_err(io::Error::from)
        })
    }

    /// Flushes this directory's entries to disk.
    pub fn sync(&self) -> io::Result<()> {
        fault::sync_dir_with(&self.path, || {
            rustix::fs::fsync(&self.fd).map_err(io::Error::from)
        })
    }

    /// Makes the files `names` written in this directory durable: one
    /// `syncfs` where that reaches them, else an fsync of each (FUSE; see
    /// [`crate::spool::durable::syncfs_reaches_files`]).
    pub fn sync_files<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        if crate::spool::durable::syncfs_reaches_files(&self.path) {
            return self.sync_filesystem();
        }
        for name in names {
            let c = c_name(name.as_ref())?;
            let fd = rustix::fs::openat(
                &self.fd,
                &c,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let path = self.join(name);
            fault::sync_file_with(&path, || rustix::fs::fsync(&fd).map_err(io::Error::from))?;
        }
        Ok(())
    }

    /// Flushes every written file of the file system holding this directory.
    pub fn sync_filesystem(&self) -> io::Result<()> {
        fault::syncfs_with(&self.path, || {
            rustix::fs::syncfs(self.fd.as_fd()).map_err(io::Error::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn links_fifos_and_directories_are_refused_and_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "secret").unwrap();
        let root = t.path().join("stick");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("ok.msg"), "fine").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("link.msg")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("linkdir")).unwrap();
        let fifo = CString::new(root.join("fifo.msg").as_os_str().as_bytes()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();

        let dir = Dir::open_root(&root).unwrap();
        let kinds: Vec<(String, Kind)> = dir
            .list()
            .unwrap()
            .into_iter()
            .map(|i| (i.name_lossy(), i.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("d".into(), Kind::Dir),
                ("fifo.msg".into(), Kind::Special("a FIFO")),
                ("link.msg".into(), Kind::Symlink),
                ("linkdir".into(), Kind::Symlink),
                ("ok.msg".into(), Kind::File),
            ]
        );
        let mut s = String::new();
        dir.open_file("ok.msg")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "fine");
        for (name, kind) in [
            ("link.msg", Kind::Symlink),
            ("fifo.msg", Kind::Special("a FIFO")),
            ("d", Kind::Dir),
        ] {
            match dir.open_file(name) {
                Err(Refusal::WrongKind { kind: k, .. }) => assert_eq!(k, kind, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(
            dir.open_dir("linkdir"),
            Err(Refusal::WrongKind {
                kind: Kind::Symlink,
                ..
            })
        ));
        assert!(matches!(
            dir.open_dir("ok.msg"),
            Err(Refusal::WrongKind {
                kind: Kind::File,
                ..
            })
        ));
        assert!(dir.open_dir("missing").unwrap_err().is_not_found());
        assert!(dir.open_file("../outside/secret").is_err());

        // Writing through a planted name is impossible; removing a link
        // leaves its target alone.
        assert!(dir.create_file("link.msg").is_err());
        dir.remove("link.msg").unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "secret"
        );
        let mut f = dir.create_file("new.msg").unwrap();
        f.write_all(b"x").unwrap();
        dir.rename("new.msg", "renamed.msg").unwrap();
        assert!(root.join("renamed.msg").is_file());
        // A move between two opened directories stays between them.
        let d = dir.open_dir("d").unwrap();
        dir.rename_into("renamed.msg", &d, "moved.msg").unwrap();
        assert!(root.join("d/moved.msg").is_file());
        assert!(d.rename_into("moved.msg", &dir, "../escaped.msg").is_err());
        assert!(dir.create_dir("d").is_ok(), "an existing directory is fine");
        assert!(dir.create_dir("linkdir").is_err());
    }
}
