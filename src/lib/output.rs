//! Output for people and for programs, kept apart (STYLE.md 11), and the
//! one-event-a-line log on stderr.

use std::io::{self, BufWriter, Stdout, Write};

use crate::error::{Error, ExitCode};

/// Buffered stdout. A closed stdout (`| head`) ends the command quietly
/// with success: see the `From<io::Error>` below.
pub struct Out {
    w: BufWriter<Stdout>,
}

impl Out {
    pub fn new() -> Out {
        Out {
            w: BufWriter::new(io::stdout()),
        }
    }

    pub fn line(&mut self, text: impl AsRef<str>) -> Result<(), Error> {
        self.w.write_all(text.as_ref().as_bytes())?;
        self.w.write_all(b"\n")?;
        Ok(())
    }

    pub fn json(&mut self, value: &serde_json::Value) -> Result<(), Error> {
        serde_json::to_writer(&mut self.w, value).map_err(io::Error::from)?;
        self.w.write_all(b"\n")?;
        Ok(())
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.w.write_all(bytes)?;
        Ok(())
    }

    /// Copies `r` to stdout as it is (bounded memory).
    pub fn copy_from(&mut self, r: &mut dyn std::io::Read) -> Result<(), Error> {
        io::copy(r, &mut self.w)?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), Error> {
        self.w.flush()?;
        Ok(())
    }
}

impl Default for Out {
    fn default() -> Self {
        Out::new()
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let _ = self.w.flush();
    }
}

/// Writing to stdout failed: a closed pipe is the reader's choice (see
/// [`Error::StdoutClosed`]); anything else is an I/O error.
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Error::StdoutClosed
        } else {
            Error::Stdout(e)
        }
    }
}

/// Logs one event, one line, on stderr: `PROG: TEXT`.
pub fn log(prog: &str, text: impl AsRef<str>) {
    let _ = writeln!(io::stderr().lock(), "{prog}: {}", text.as_ref());
}

/// Runs a command's body and turns its result into the process's exit
/// status, reporting an error as `PROG: error: ...` on stderr (a closed
/// stdout says nothing: its reader chose to stop).
pub fn exit_with(prog: &str, result: Result<ExitCode, Error>) -> ! {
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            if !e.is_closed_stdout() {
                log(prog, format!("error: {e}"));
            }
            e.code()
        }
    };
    std::process::exit(code.code())
}

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
