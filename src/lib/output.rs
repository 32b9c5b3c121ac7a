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

pub use crate::progress::Progress;
