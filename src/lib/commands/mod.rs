//! What each command does, given its parsed arguments. The binaries in
//! `src/bin/` only parse, call `run`, and exit with the status returned.

pub mod ack;
pub mod queue;
pub mod relay;
pub mod send;
pub mod spm;

use std::path::PathBuf;

use crate::cli::Common;
use crate::error::Error;
use crate::output::log;
use crate::spool::Spool;
use crate::time::{Clock, Timestamp};

/// What every command carries: its name (for logs), the clock, the output
/// mode, the spool's location, and what it installs on the spool it opens.
pub struct Context {
    pub prog: &'static str,
    pub clock: Clock,
    pub json: bool,
    pub spool_dir: PathBuf,
    /// Installs the program's features on a spool just opened (nothing,
    /// for `rs-send`, which only queues: it links none of them).
    pub install: fn(&mut Spool),
    /// How the program fetches a first configuration over HTTP(S) (none
    /// for `rs-send`, which links no TLS).
    pub fetch: Option<crate::reconfig::HttpGet>,
    /// What the program links beyond the library (OpenPGP), installed on
    /// every spool it opens.
    pub linked: Linked,
}

/// What a program brings from beyond the library, from its `main`: the
/// library does not link OpenPGP (`rs-openpgp`, Sequoia over OpenSSL), so
/// that `rs-send` never loads OpenSSL; the programs that send or receive
/// hand it in here.
#[derive(Clone, Copy, Default)]
pub struct Linked {
    pub openpgp: Option<crate::protect::OpenPgp>,
}

impl Context {
    /// The context of a program without features (`rs-send`).
    pub fn new(prog: &'static str, common: &Common) -> Result<Context, Error> {
        Ok(Context {
            prog,
            clock: Clock::from_env()?,
            json: common.json,
            spool_dir: common.spool_dir(),
            install: |_| {},
            fetch: None,
            linked: Linked::default(),
        })
    }

    /// The context of a program that receives and sends: every spool it
    /// opens has the features of `compose` installed, and what the program
    /// links (`linked`).
    pub fn with_features(
        prog: &'static str,
        common: &Common,
        linked: Linked,
    ) -> Result<Context, Error> {
        Ok(Context {
            install: crate::compose::install,
            fetch: Some(crate::reconfig::http_get),
            linked,
            ..Context::new(prog, common)?
        })
    }

    pub fn log(&self, text: impl AsRef<str>) {
        log(self.prog, text)
    }

    /// Whether to say nothing when there was nothing to do: true when
    /// stderr is not a terminal (cron), so idle runs do not send mail.
    pub fn quiet_when_idle(&self) -> bool {
        !std::io::IsTerminal::is_terminal(&std::io::stderr())
    }

    /// Opens the spool for a command that only reads it: one that does not
    /// exist is an error (66) naming the path and how to create it, never
    /// a new spool made by a typo in `--spool` or `RS_SPOOL`.
    pub fn open_existing_spool(&self, now: Timestamp) -> Result<Spool, Error> {
        let config = self.spool_dir.join(crate::config::FILE_NAME);
        let absent = |p: &std::path::Path| matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        // Absent, not merely unreadable (that is for the opening to say),
        // and no configuration URL to make it from (the source chain's).
        let url = matches!(
            crate::reconfig::source(
                &self.spool_dir,
                std::env::var(crate::reconfig::ENV_URL).ok()
            ),
            crate::reconfig::Source::Url { .. }
        );
        if !url && absent(&config) && absent(&self.spool_dir.join("queue")) {
            return Err(Error::NoSpool {
                path: self.spool_dir.clone(),
            });
        }
        self.open_spool(now)
    }

    /// Opens the spool (creating it on first use, with a note on stderr)
    /// and recovers what crashed runs left behind.
    pub fn open_spool(&self, now: Timestamp) -> Result<Spool, Error> {
        // The configuration's source chain: the file, else a URL (the
        // environment's, else the built-in one), else a local default.
        if let crate::reconfig::Source::Url { url, from } = crate::reconfig::source(
            &self.spool_dir,
            std::env::var(crate::reconfig::ENV_URL).ok(),
        ) {
            // What the operator allows a fetched configuration: from this
            // environment only, never from what is fetched.
            let trust = std::env::var(crate::reconfig::ENV_TRUST).ok();
            let c = crate::reconfig::Trust::parse(trust.as_deref())
                .and_then(|trust| {
                    crate::reconfig::bootstrap(&self.spool_dir, &url, trust, now, self.fetch)
                })
                .map_err(|e| {
                    let unreachable = matches!(e, crate::reconfig::Error::Fetch { .. });
                    let e = Error::ConfigEdit {
                        path: self.spool_dir.join(crate::config::FILE_NAME),
                        reason: format!("no configuration here, and none from {from}: {e}"),
                    };
                    // A source that cannot be reached now may be later (75).
                    if unreachable {
                        Error::Retry(Box::new(e))
                    } else {
                        e
                    }
                })?;
            self.log(format!(
                "configuration for site {} component {} fetched from {url} ({from}) into {}",
                c.site,
                c.component,
                self.spool_dir.join(crate::config::FILE_NAME).display()
            ));
        }
        let (mut spool, created) = Spool::open_or_create(&self.spool_dir, now)?;
        (self.install)(&mut spool);
        if let Some(openpgp) = self.linked.openpgp {
            spool.install(openpgp);
        }
        for w in spool.config().exposed_secrets() {
            self.log(w);
        }
        if created {
            self.log(format!(
                "created spool {} for component {} (set the site and component IDs in {})",
                self.spool_dir.display(),
                spool.config().component,
                spool.config_path().display()
            ));
            if spool.config().peers.is_empty() {
                self.log(format!(
                    "the new spool has no peers yet: nothing it queues goes anywhere until a [[peer]] is added to {}",
                    spool.config_path().display()
                ));
            }
        }
        let cleaned = spool.clean_tmp(now)?;
        if cleaned > 0 {
            self.log(format!(
                "removed {cleaned} file(s) left in tmp/ by crashed writers"
            ));
        }
        // Deliveries into the Maildir that died (an import killed, say)
        // leave files in received/tmp/ that no later delivery may touch:
        // any command sweeps them once they are older than tmp_max_age.
        let cleaned = spool.clean_maildir_tmp(now)?;
        if cleaned > 0 {
            self.log(format!(
                "removed {cleaned} file(s) left in received/tmp/ by interrupted deliveries"
            ));
        }
        Ok(spool)
    }
}

impl Context {
    /// Runs what the relay's rules hold and says what it did
    /// (`cycle::tend`; `expired`: bury what expired too); a
    /// failure is logged, never fatal to the command that called it (what
    /// it holds is safe and waits).
    pub fn run_pending(&self, spool: &Spool, expired: bool) {
        crate::cycle::tend(spool, &self.clock, expired, &|s| self.log(s));
    }
}
