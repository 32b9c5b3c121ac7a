//! Private by default: what a spool holds is readable by its owner only
//! (umask 0077), or by the spool's group too (0027), whatever umask rs was
//! started with; what rs writes outside the spool (a medium, a map or
//! zone file) follows the umask it was started with.

/// The umask rs was started with, before a spool made what it creates
/// private (`u32::MAX`: none yet).
static STARTING_UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// Makes everything this process creates from now on private to the
/// spool's owner (umask 0077), or readable by the spool's group too
/// (0027), whatever umask it was started with (which [`outside_mode`]
/// keeps for what rs writes outside the spool).
pub fn make_private(group: bool) {
    let mask: libc::mode_t = if group { 0o027 } else { 0o077 };
    // SAFETY: umask only sets this process's file mode creation mask.
    let old = unsafe { libc::umask(mask) };
    let _ = STARTING_UMASK.compare_exchange(
        u32::MAX,
        old,
        std::sync::atomic::Ordering::SeqCst,
        std::sync::atomic::Ordering::SeqCst,
    );
}

/// `mode` less the umask rs was started with: for what it creates outside
/// the spool (a medium, read elsewhere by other users), where the
/// operator's umask rules, not the spool's privacy.
pub fn outside_mode(mode: u32) -> u32 {
    match STARTING_UMASK.load(std::sync::atomic::Ordering::SeqCst) {
        u32::MAX => {
            // Not changed yet: the current umask is the starting one.
            // SAFETY: umask only sets this process's file mode creation mask.
            let m = unsafe { libc::umask(0o022) };
            // SAFETY: as above, putting it back.
            unsafe { libc::umask(m) };
            mode & !m
        }
        m => mode & !m,
    }
}
