//! Progress of a long step, for the person at a terminal: quiet in cron,
//! pipes and MTA deliveries (the library's long steps report through it,
//! and it decides whether anyone sees them).

/// Progress of a long step on a terminal (`what: 312 of 1024 MiB (30%)`),
/// redrawn at most five times a second on stderr; nothing at all when
/// stderr is not a terminal (cron, pipes, an MTA), so logs stay clean.
pub struct Progress {
    what: String,
    total: u64,
    done: u64,
    shown: Option<std::time::Instant>,
    on: bool,
}

impl Progress {
    /// Progress of `what` over `total` bytes; shown only for 16 MiB and more.
    pub fn new(what: impl Into<String>, total: u64) -> Progress {
        use std::io::IsTerminal;
        Progress {
            what: what.into(),
            total,
            done: 0,
            shown: None,
            on: total >= 16 << 20 && std::io::stderr().is_terminal(),
        }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if !self.on || self.shown.is_some_and(|t| t.elapsed().as_millis() < 200) {
            return;
        }
        self.shown = Some(std::time::Instant::now());
        let pct = self.done.saturating_mul(100) / self.total.max(1);
        eprint!(
            "\r{}: {} of {} MiB ({pct}%)   ",
            self.what,
            self.done >> 20,
            self.total >> 20
        );
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.on && self.shown.is_some() {
            eprintln!(
                "\r{}: {} of {} MiB (done)   ",
                self.what,
                self.done >> 20,
                self.total >> 20
            );
        }
    }
}
