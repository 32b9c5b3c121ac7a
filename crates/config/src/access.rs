//! What to tell an operator when a file of the spool cannot be reached
//! for its owner: the classic is a spool made by root and then used as
//! `rs`. The hint names the path, its owner, who this runs as, and the
//! `chown` that gives the spool back.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// For a `Permission denied` on `path`: its owner, this process's user,
/// and the remedy, as a parenthesis to append to the error; empty for any
/// other error, or when this process already owns it.
pub fn hint(path: &Path, err: &std::io::Error) -> String {
    if !matches!(err.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
        return String::new();
    }
    // The nearest ancestor that can be looked at (the path itself may not
    // exist, or may be behind the directory refused).
    let Some((at, meta)) = path
        .ancestors()
        .find_map(|a| std::fs::symlink_metadata(a).ok().map(|m| (a, m)))
    else {
        return String::new();
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() == me && meta.mode() & 0o700 == 0o700 {
        return String::new();
    }
    // The spool holding it: the nearest ancestor with a config.toml.
    let spool = path
        .ancestors()
        .find(|a| a.join("config.toml").exists())
        .unwrap_or(at);
    let (owner, user) = (user_name(meta.uid()), user_name(me));
    format!(
        " ({} belongs to {owner}, and this runs as {user}: run the command as {owner}, or give the spool to {user} with `chown -R {user}: {}`)",
        at.display(),
        spool.display()
    )
}

/// The name of user `uid`, or the number when it has none.
fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid returns null or a pointer to static storage, read
    // at once (this program runs no other thread that calls it).
    let pw = unsafe { libc::getpwuid(uid) };
    if pw.is_null() {
        return uid.to_string();
    }
    // SAFETY: pw_name of a non-null passwd entry is a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr((*pw).pw_name) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_gets_a_hint() {
        let other = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(hint(Path::new("/"), &other), "");
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            // "/" belongs to root: the hint names it and the remedy.
            let h = hint(Path::new("/"), &denied);
            assert!(
                h.contains("/ belongs to root") && h.contains("chown -R"),
                "{h}"
            );
        } else {
            assert_eq!(user_name(0), "root");
        }
    }
}
