//! Command-line definitions (clap), one file per command. These types are
//! what the user typed; `commands` resolves them against the spool's
//! configuration and does the work. Man pages are generated from them.

pub mod ack;
pub mod queue;
pub mod relay;
pub mod send;
pub mod spm;

use std::path::PathBuf;

use clap::Args;

/// The spool used when neither --spool nor RS_SPOOL names one. A packager
/// may set RS_DEFAULT_SPOOL at build time.
pub const DEFAULT_SPOOL: &str = match option_env!("RS_DEFAULT_SPOOL") {
    Some(dir) => dir,
    None => "/var/spool/rs",
};

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The spool directory. Default: $RS_SPOOL, else /var/spool/rs. A spool
    /// that does not exist yet is created, with a note on stderr.
    #[arg(long, value_name = "DIR", env = "RS_SPOOL", global = true)]
    pub spool: Option<PathBuf>,

    /// Print data as JSON (documented, stable) instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Common {
    pub fn spool_dir(&self) -> PathBuf {
        self.spool
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL))
    }
}

/// Parses the command line; on a usage error prints it and exits 64
/// (`EX_USAGE`), as every rs command reports usage errors; `--help` and
/// `--version` exit 0.
pub fn parse_or_exit<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                crate::error::ExitCode::Usage.code()
            } else {
                0
            })
        }
    }
}
