//! Diverted messages (`divert/ID.msg`, with `divert/ID.state`: the rule's
//! label, the peer it came from, the failures so far and the last error)
//! and their handlers: a configured program, run without a shell, with the
//! message on stdin and a time limit.
//!
//! Exit 0: consumed (the message was acknowledged when it was taken into
//! custody); if the handler printed an envelope, the messages in it are
//! handed on in place of the original. Anything else (an exit status, a
//! signal, the time limit, an envelope that does not parse) is a failure:
//! the message stays for the next run; after the rule's `max_failures` it
//! goes to dead/ with the handler's stderr as the reason, and its origin is
//! told.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{entry_name, pass_on, tell_origin, Pending};
use crate::custody::remove;
use crate::filter::{Action, Rule};
use crate::message::envelope;
use crate::route::Learned;
use crate::spool::{durable, Area, DeadKind, Error, Result, Spool};
use crate::time::{Clock, Timestamp};

/// Most bytes of a handler's stdout taken (a rewritten envelope).
const MAX_OUTPUT: u64 = 64 << 20;
/// Bytes of a handler's stderr kept as the reason.
const MAX_STDERR: usize = 4096;

/// A diverted message's state file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    rule: String,
    from: String,
    failures: u32,
    error: String,
}

impl State {
    fn parse(text: &str) -> State {
        let mut s = State::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("rule", v)) => s.rule = v.to_string(),
                Some(("from", v)) => s.from = v.to_string(),
                Some(("failures", v)) => s.failures = v.parse().unwrap_or(0),
                Some(("error", v)) => s.error = v.to_string(),
                _ => {}
            }
        }
        s
    }

    fn text(&self) -> String {
        format!(
            "rule {}\nfrom {}\nfailures {}\nerror {}\n",
            self.rule,
            self.from,
            self.failures,
            self.error.replace('\n', " ")
        )
    }
}

/// How one handler run ended.
#[derive(Debug)]
pub struct Ran {
    /// Exit 0 within the time limit.
    pub ok: bool,
    pub stdout: Vec<u8>,
    /// Why it failed, for the reason: the status and the end of stderr.
    pub why: String,
}

/// Runs `rule`'s handler on the message in `message` (its stdin), killing
/// it at the rule's time limit.
pub fn run_handler(rule: &Rule, message: &Path, env: &[(&str, &str)]) -> std::io::Result<Ran> {
    use std::os::unix::process::CommandExt;
    let handler = rule.handler.clone().unwrap_or_default();
    // A process group of its own: at the time limit, whatever the handler
    // started goes with it (and stops holding its output open).
    let mut child = Command::new(&handler)
        .process_group(0)
        .args(&rule.args)
        .envs(env.iter().copied())
        .stdin(Stdio::from(std::fs::File::open(message)?))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = (&mut stdout).take(MAX_OUTPUT).read_to_end(&mut b);
        // Drain the rest so the handler never blocks on a full pipe.
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        let start = b.len().saturating_sub(MAX_STDERR);
        String::from_utf8_lossy(&b[start..]).trim().to_string()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() >= rule.timeout {
            // SAFETY: kill(2) on the process group of a child we started.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let (ok, what) = match status {
        None => (
            false,
            format!(
                "{} did not finish within {}",
                handler.display(),
                crate::time::format_duration(rule.timeout)
            ),
        ),
        Some(s) if s.success() => (true, String::new()),
        Some(s) => (false, format!("{} ended with {s}", handler.display())),
    };
    let why = if stderr.is_empty() {
        what
    } else {
        format!("{what}: {stderr}")
    };
    Ok(Ran { ok, stdout, why })
}

/// Runs the handler of every diverted message (each once), in the order
/// of their names; rs's own held messages (registration, bulk) are left to
/// their runs. Each message ends consumed (what its handler printed handed
/// on, durable, before it is removed), counted as a failure (the state
/// file rewritten durably), or given up to dead/ with its origin told.
pub fn run(spool: &Spool, clock: &Clock, log: &dyn Fn(String), p: &mut Pending) -> Result<()> {
    let dir = spool.dir(Area::Divert);
    let mut messages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io("read", &dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "msg"))
        .collect();
    if messages.is_empty() {
        return Ok(());
    }
    messages.sort();
    let config = spool.config();
    let mut run = Run {
        spool,
        learned: Learned::load(spool),
        dir,
        log,
        p,
    };
    for msg in messages {
        let held = Held::read(&run.dir, msg);
        let now = clock.now();
        if held.state.rule.starts_with(crate::config::RESERVED_LABELS) {
            // rs's own (a registration, an answer, a heartbeat): handled
            // by `infra::run_held`.
            continue;
        }
        let rule = config
            .rules
            .iter()
            .enumerate()
            .find(|(i, r)| r.label(*i) == held.state.rule && r.action == Action::Divert)
            .map(|(_, r)| r);
        let Some(rule) = rule else {
            run.routing_decides(&held, now)?;
            continue;
        };
        match handled(rule, &held) {
            Outcome::Consumed(rewritten) => run.consumed(&held, rewritten, now)?,
            Outcome::Failed(why) => run.failed(held, rule, why, now)?,
        }
    }
    Ok(())
}

/// One message in `divert/`: its ID, its file, its state file and state.
struct Held {
    id: String,
    msg: PathBuf,
    state_path: PathBuf,
    state: State,
}

impl Held {
    /// The message `msg` in `dir` and its state (empty when unreadable).
    fn read(dir: &Path, msg: PathBuf) -> Held {
        let id = msg
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let state_path = dir.join(format!("{id}.state"));
        let state = State::parse(&std::fs::read_to_string(&state_path).unwrap_or_default());
        Held {
            id,
            msg,
            state_path,
            state,
        }
    }
}

/// How a handler's run on a held message ended.
enum Outcome {
    /// Exit 0: the message is consumed; these go on in its place.
    Consumed(Vec<crate::message::Message>),
    /// Anything else, and why.
    Failed(String),
}

/// Runs `rule`'s handler on `held`: consumed when it exits 0 printing
/// nothing or an envelope; failed otherwise.
fn handled(rule: &Rule, held: &Held) -> Outcome {
    let ran = run_handler(
        rule,
        &held.msg,
        &[
            ("RS_MESSAGE_ID", held.id.as_str()),
            ("RS_RULE", held.state.rule.as_str()),
            ("RS_FROM", held.state.from.as_str()),
        ],
    );
    match ran {
        Err(e) => Outcome::Failed(format!(
            "cannot run {}: {e}",
            rule.handler.as_deref().unwrap_or(Path::new("")).display()
        )),
        Ok(r) if !r.ok => Outcome::Failed(r.why),
        Ok(r) if r.stdout.iter().all(u8::is_ascii_whitespace) => Outcome::Consumed(Vec::new()),
        Ok(r) => match envelope::parse(&r.stdout) {
            Ok(ms) => Outcome::Consumed(ms),
            Err(e) => Outcome::Failed(format!(
                "the handler printed something that is not an envelope: {e}"
            )),
        },
    }
}

/// One run over `divert/`: what every held message's step needs.
struct Run<'a> {
    spool: &'a Spool,
    learned: Learned,
    dir: PathBuf,
    log: &'a dyn Fn(String),
    p: &'a mut Pending,
}

impl Run<'_> {
    /// A message whose rule no longer diverts: handed on as routing says
    /// and removed (durable first); one that cannot be read stays.
    fn routing_decides(&self, held: &Held, now: Timestamp) -> Result<()> {
        let (id, msg, log) = (&held.id, &held.msg, self.log);
        log(format!(
            "{id}: [[rule]] {} no longer diverts; handed on as routing says",
            held.state.rule
        ));
        let bytes = std::fs::read(msg).map_err(|e| Error::io("read", msg, e))?;
        match envelope::parse(&bytes) {
            Ok(ms) => {
                pass_on(self.spool, ms, now, log)?;
                remove(&self.dir, msg, &held.state_path)?;
            }
            Err(e) => log(format!(
                "{id}: cannot be read ({e}); left in {}",
                self.dir.display()
            )),
        }
        Ok(())
    }

    /// A message its handler consumed: what it printed is handed on
    /// (durable) before the message is removed.
    fn consumed(
        &mut self,
        held: &Held,
        rewritten: Vec<crate::message::Message>,
        now: Timestamp,
    ) -> Result<()> {
        let n = pass_on(self.spool, rewritten, now, self.log)?;
        self.p.rewritten += n;
        self.p.handled += 1;
        remove(&self.dir, &held.msg, &held.state_path)?;
        (self.log)(format!(
            "{}: consumed by the handler of [[rule]] {}{}",
            held.id,
            held.state.rule,
            if n > 0 {
                format!(", {n} message(s) handed on in its place")
            } else {
                String::new()
            }
        ));
        Ok(())
    }

    /// A handler that failed (`why`): the failure is counted in the state
    /// file (durable) and the message tried again on the next run; after
    /// the rule's `max_failures` it goes to dead/ (quarantine, when its
    /// header cannot be read) and its origin is told.
    fn failed(&mut self, mut held: Held, rule: &Rule, why: String, now: Timestamp) -> Result<()> {
        let (id, dir, spool) = (&held.id, &self.dir, self.spool);
        self.p.failures += 1;
        held.state.failures += 1;
        held.state.error = why.clone();
        let state = &held.state;
        if state.failures < rule.max_failures {
            (self.log)(format!(
                "{id}: handler of [[rule]] {} failed ({} of {}): {why}; it is tried again on the next run",
                state.rule, state.failures, rule.max_failures
            ));
            durable::write_durable(
                &spool.dir(Area::Tmp),
                dir,
                &format!("{id}.state"),
                state.text().as_bytes(),
                now.as_micros(),
            )?;
            return Ok(());
        }
        let detail = format!(
            "the handler of rule {} failed {} time(s): {why}",
            state.rule, state.failures
        );
        let msg = &held.msg;
        let header = std::fs::File::open(msg)
            .ok()
            .and_then(|f| envelope::first_header(f).ok());
        let size = std::fs::metadata(msg).map(|m| m.len()).unwrap_or(0);
        match &header {
            Some(h) => {
                spool.lock(now)?.bury_held(
                    msg,
                    entry_name(h, size),
                    DeadKind::Rejected,
                    "divert",
                    &detail,
                    now,
                )?;
                tell_origin(spool, h, &self.learned, &detail, now)?;
            }
            None => {
                spool.quarantine(msg, "divert", &detail, now)?;
            }
        }
        let _ = durable::remove_file(&held.state_path);
        durable::fsync_dir(dir)?;
        self.p.gave_up += 1;
        (self.log)(format!("{id}: given up: {detail}"));
        Ok(())
    }
}
