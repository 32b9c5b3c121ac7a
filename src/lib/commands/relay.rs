//! `rs-relay`: receive from any transport.

use serde_json::json;

use crate::cli::relay::{RelayArgs, RelayCommand};
use crate::error::{Error, ExitCode};
use crate::output::Out;
use crate::receive::Report;
use crate::transport::dir::{self, AfterImport, Select};

use super::Context;

pub fn run(args: RelayArgs) -> Result<ExitCode, Error> {
    let pipe = matches!(args.command, RelayCommand::Receive);
    let result = run_command(args);
    if pipe {
        // An MTA must never bounce what rs could not store: any failure
        // short of junk (which is quarantined) asks it to retry.
        return result.map_err(|e| Error::new(ExitCode::TempFail, e.message));
    }
    result
}

fn run_command(args: RelayArgs) -> Result<ExitCode, Error> {
    let ctx = Context::new("rs-relay", &args.common)?;
    let now = ctx.clock.now();
    let spool = ctx.open_spool(now)?;
    let mut out = Out::new();
    match args.command {
        RelayCommand::Import { from, keep } => {
            if !from.is_dir() {
                return Err(Error::new(
                    ExitCode::NoInput,
                    format!("cannot import from {}: not a directory", from.display()),
                ));
            }
            let after = if keep {
                AfterImport::Keep
            } else {
                AfterImport::Remove
            };
            let log = |s: String| ctx.log(s);
            let report = dir::import(&spool, &from, Select::Everything, after, now, &log)?;
            print_report(&ctx, &mut out, &report, &from.display().to_string())?;
            Ok(ExitCode::Ok)
        }
        RelayCommand::Receive => receive_stdin(&ctx, &spool, &mut out, now),
        RelayCommand::Fetch { maildir } => fetch(&ctx, &spool, &mut out, &maildir, now),
    }
}

/// Most bytes `receive` reads from stdin.
const MAX_MAIL: u64 = 2 << 30;

fn receive_stdin(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_MAIL)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Error::new(
                ExitCode::TempFail,
                format!("cannot read the mail on stdin: {e}"),
            )
        })?;
    let log = |s: String| ctx.log(s);
    let report = take_mail(spool, bytes, "stdin", now, &log)?;
    print_report(ctx, out, &report, "stdin")?;
    Ok(if report.retry > 0 {
        ExitCode::TempFail
    } else {
        ExitCode::Ok
    })
}

/// Receives one mail: from its sender peer, or into quarantine if it names none.
fn take_mail(
    spool: &crate::spool::Spool,
    bytes: Vec<u8>,
    label: &str,
    now: crate::time::Timestamp,
    log: &dyn Fn(String),
) -> Result<Report, Error> {
    match crate::receive::mail::sender(spool.config(), &bytes) {
        Ok(from) => Ok(crate::receive::receive(
            spool,
            vec![crate::receive::Inbound {
                bytes,
                from,
                label: label.to_string(),
            }],
            now,
            log,
        )?),
        Err(why) => {
            let q =
                spool.quarantine_bytes(&bytes, "mail", label, &format!("{label}: {why}"), now)?;
            log(format!("quarantined {label} as {}: {why}", q.display()));
            Ok(Report {
                quarantined: 1,
                ..Report::default()
            })
        }
    }
}

fn fetch(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    maildir: &std::path::Path,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    let (new, cur) = (maildir.join("new"), maildir.join("cur"));
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&new)
        .map_err(|e| {
            Error::new(
                ExitCode::NoInput,
                format!(
                    "cannot read {}: {e} (is {} a Maildir?)",
                    new.display(),
                    maildir.display()
                ),
            )
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let log = |s: String| ctx.log(s);
    let mut total = Report::default();
    let mut code = ExitCode::Ok;
    for path in files {
        let bytes = std::fs::read(&path).map_err(|e| {
            Error::new(
                ExitCode::IoErr,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let r = take_mail(spool, bytes, &path.display().to_string(), now, &log)?;
        total.add(&r);
        if r.retry > 0 {
            // Not all of it could be taken now: leave it in new/ for the next run.
            code = ExitCode::TempFail;
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let seen = if name.contains(":2,") {
            name
        } else {
            format!("{name}:2,S")
        };
        std::fs::rename(&path, cur.join(&seen)).map_err(|e| {
            Error::new(
                ExitCode::IoErr,
                format!("cannot move {} to {}: {e}", path.display(), cur.display()),
            )
        })?;
    }
    crate::spool::durable::fsync_dir(&cur)?;
    crate::spool::durable::fsync_dir(&new)?;
    print_report(ctx, out, &total, &maildir.display().to_string())?;
    Ok(code)
}

/// Prints what a receive did: JSON, or one line for people.
pub fn print_report(ctx: &Context, out: &mut Out, r: &Report, source: &str) -> Result<(), Error> {
    if ctx.json {
        return out.json(&json!({
            "source": source,
            "messages": r.messages,
            "delivered": r.delivered,
            "relayed": r.relayed,
            "duplicates": r.duplicates,
            "rejected": r.rejected,
            "retry": r.retry,
            "quarantined": r.quarantined,
            "acks_passed_on": r.passed_on,
            "acks": {"discarded": r.acks.discarded, "rejected": r.acks.rejected, "recorded": r.acks.recorded},
        }));
    }
    ctx.log(format!(
        "{source}: {} message(s): {} delivered, {} queued onward, {} duplicate(s), {} rejected, {} to retry, {} quarantined; acknowledgements: {} copies discarded, {} refused, {} recorded, {} passed on",
        r.messages, r.delivered, r.relayed, r.duplicates, r.rejected, r.retry, r.quarantined,
        r.acks.discarded, r.acks.rejected, r.acks.recorded, r.passed_on
    ));
    Ok(())
}
