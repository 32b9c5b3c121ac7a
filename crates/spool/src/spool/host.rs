//! This host's name, read in one place: the component ID a new spool
//! gets (`default_component`), Maildir file names, who holds a lease, and
//! the reconfiguration's network check all take it from here.

/// This host's name as the kernel has it (`gethostname`), or `None` when
/// it cannot be read or is empty.
pub fn name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// [`name`], or `localhost` when there is none.
pub fn name_or_localhost() -> String {
    name().unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernels_name_is_read() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(
            super::name().as_deref(),
            Some(kernel.trim()).filter(|k| !k.is_empty())
        );
        assert!(!super::name_or_localhost().is_empty());
    }
}
