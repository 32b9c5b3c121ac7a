//! `rs-relay`: receive from any transport.

use serde_json::json;

use crate::cli::relay::{RelayArgs, RelayCommand};
use crate::error::{Error, ExitCode};
use crate::message::stream;
use crate::output::Out;
use crate::receive::media::{self, AfterImport, Select};
use crate::receive::{Payload, Report};

use super::Context;

pub fn run(args: RelayArgs) -> Result<ExitCode, Error> {
    let pipe = matches!(args.command, RelayCommand::Receive);
    let result = run_command(args);
    if pipe {
        // An MTA must never bounce what rs could not store: any failure
        // short of junk (which is quarantined) asks it to retry.
        return result.map_err(|e| Error::Retry(Box::new(e)));
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
                return Err(Error::Input {
                    path: from,
                    reason: "not a directory".into(),
                });
            }
            let after = if keep {
                AfterImport::Keep
            } else {
                AfterImport::Remove
            };
            let log = |s: String| ctx.log(s);
            let report = media::import(&spool, &from, Select::Everything, after, now, &log)?;
            print_report(&ctx, &mut out, &report, &from.display().to_string())?;
            Ok(report_code(&report))
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
    use std::io::{Read, Write};
    let read_err = |e: std::io::Error| Error::Retry(Box::new(Error::Stdin(e)));
    let stdin = std::io::stdin();
    let mut lock = stdin.lock().take(MAX_MAIL);
    let mut head = Vec::new();
    (&mut lock)
        .take(stream::THRESHOLD + 1)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    // A large mail is spilled to tmp/ and read from there as a stream.
    let mut spill = None;
    let payload = if head.len() as u64 > stream::THRESHOLD {
        let mut staged = spool.stage(now)?;
        let path = staged.path().to_path_buf();
        let write_err = |e: std::io::Error| Error::from(crate::spool::Error::io("write", &path, e));
        staged.write_all(&head).map_err(write_err)?;
        std::io::copy(&mut lock, &mut staged).map_err(read_err)?;
        staged.flush().map_err(write_err)?;
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::from(crate::spool::Error::io("read", &path, e)))?;
        spill = Some(staged);
        Payload::File(file)
    } else {
        Payload::Bytes(head)
    };
    let log = |s: String| ctx.log(s);
    let report = take_mail(spool, payload, "stdin", now, &log)?;
    drop(spill);
    print_report(ctx, out, &report, "stdin")?;
    // A mail left unread (no room to quarantine it) is the MTA's to keep.
    if report.skipped > 0 {
        return Ok(ExitCode::TempFail);
    }
    Ok(report_code(&report))
}

/// The exit status a receive run's report calls for: 75 when something is
/// to be retried (the source keeps it), 65 when entries were skipped unread.
pub fn report_code(r: &Report) -> ExitCode {
    let mut code = ExitCode::Ok;
    if r.skipped > 0 {
        code = code.merge(ExitCode::DataErr);
    }
    if r.retry > 0 {
        code = code.merge(ExitCode::TempFail);
    }
    code
}

/// Receives one mail: from its sender peer, or into quarantine if it names none.
fn take_mail(
    spool: &crate::spool::Spool,
    payload: Payload,
    label: &str,
    now: crate::time::Timestamp,
    log: &dyn Fn(String),
) -> Result<Report, Error> {
    let head = payload.prefix(HEAD).map_err(|err| Error::Io {
        op: "read",
        path: label.into(),
        err,
    })?;
    match crate::receive::mail::sender(spool.config(), &head) {
        Ok(from) => Ok(crate::receive::receive(
            spool,
            vec![crate::receive::Inbound {
                payload,
                from,
                label: label.to_string(),
            }],
            now,
            log,
        )?
        .report),
        Err(why) => {
            let mut report = Report::default();
            crate::receive::set_aside(spool, &payload, label, &why, now, log, &mut report)?;
            Ok(report)
        }
    }
}

/// How much of a mail's beginning is read to find its sender.
const HEAD: usize = 128 * 1024;

fn fetch(
    ctx: &Context,
    spool: &crate::spool::Spool,
    out: &mut Out,
    maildir: &std::path::Path,
    now: crate::time::Timestamp,
) -> Result<ExitCode, Error> {
    use crate::transport::untrusted::{self, Kind};
    let (new, cur) = (maildir.join("new"), maildir.join("cur"));
    let no_maildir = |e: std::io::Error| Error::Input {
        path: new.clone(),
        reason: format!("{e} (is {} a Maildir?)", maildir.display()),
    };
    let dir = untrusted::Dir::open_root(&new).map_err(no_maildir)?;
    let log = |s: String| ctx.log(s);
    let mut total = Report::default();
    let mut code = ExitCode::Ok;
    for item in dir.list().map_err(no_maildir)? {
        let path = dir.join(&item.name);
        if item.kind != Kind::File {
            log(format!(
                "skipped {}: {}, not a regular file: not read",
                path.display(),
                item.kind.describe()
            ));
            total.skipped += 1;
            continue;
        }
        let file = match dir.open_file(&item.name) {
            Ok(f) => f,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                log(format!("skipped {e}"));
                total.skipped += 1;
                continue;
            }
        };
        let payload = Payload::of_file(file, &path)?;
        let r = take_mail(spool, payload, &path.display().to_string(), now, &log)?;
        total.add(&r);
        if r.retry > 0 || r.skipped > 0 {
            // Not all of it could be taken now: leave it in new/ for the next run.
            code = ExitCode::TempFail;
            continue;
        }
        let name = item.name_lossy();
        let seen = if name.contains(":2,") {
            name
        } else {
            format!("{name}:2,S")
        };
        std::fs::rename(&path, cur.join(&seen)).map_err(|err| Error::Io {
            op: "move into cur/",
            path: path.clone(),
            err,
        })?;
    }
    crate::spool::durable::fsync_dir(&cur)?;
    crate::spool::durable::fsync_dir(&new)?;
    print_report(ctx, out, &total, &maildir.display().to_string())?;
    Ok(code.merge(report_code(&total)))
}

/// What a receive did, as JSON (the schema `rs-relay --json` prints).
pub fn report_json(r: &Report) -> serde_json::Value {
    json!({
        "messages": r.messages,
        "delivered": r.delivered,
        "relayed": r.relayed,
        "duplicates": r.duplicates,
        "rejected": r.rejected,
        "retry": r.retry,
        "quarantined": r.quarantined,
        "skipped": r.skipped,
        "acks_passed_on": r.passed_on,
        "acks": {"discarded": r.acks.discarded, "rejected": r.acks.rejected, "recorded": r.acks.recorded, "unsigned": r.unsigned_acks},
    })
}

/// Prints what a receive did: JSON, or one line for people.
pub fn print_report(ctx: &Context, out: &mut Out, r: &Report, source: &str) -> Result<(), Error> {
    if ctx.json {
        let mut v = report_json(r);
        v["source"] = json!(source);
        return out.json(&v);
    }
    ctx.log(format!(
        "{source}: {} message(s): {} delivered, {} queued onward, {} duplicate(s), {} rejected, {} to retry, {} quarantined, {} skipped unread; acknowledgements: {} copies discarded, {} refused, {} recorded, {} passed on{}",
        r.messages, r.delivered, r.relayed, r.duplicates, r.rejected, r.retry, r.quarantined, r.skipped,
        r.acks.discarded, r.acks.rejected, r.acks.recorded, r.passed_on,
        if r.unsigned_acks > 0 { format!(", {} ignored (unsigned)", r.unsigned_acks) } else { String::new() }
    ));
    Ok(())
}
