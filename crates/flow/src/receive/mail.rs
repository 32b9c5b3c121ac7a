//! Mail in: the adapters that take mail into the receive path, from an
//! MTA's delivery pipe ([`read`] then [`take`]) or a Maildir ([`fetch`]),
//! and which peer a mail comes from ([`sender`]).
//!
//! Outgoing mail carries `X-Rs-From: COMPONENT`; a mail without it is
//! attributed by its `From:` address to the peer whose mail route sends to
//! that address. Mail from no configured peer is quarantined, never
//! delivered and never acknowledged. (Without protection this identifies,
//! it does not authenticate: see the protection settings.)

use std::io::{Read, Write};
use std::path::Path;

use mailparse::MailHeaderMap;

use super::{receive, set_aside, Answer, Inbound, Payload, Report, Unreadable};
use crate::config::{Config, Route};
use crate::message::Name;
use crate::spool::{Error, Result, Spool, Staged};
use crate::time::Timestamp;
use crate::transport::untrusted::{self, Kind};

/// Most bytes one mail may have.
pub const MAX_MAIL: u64 = 2 << 30;

/// How much of a mail's beginning is read to find its sender.
const HEAD: usize = 128 * 1024;

/// A mail read from a pipe: in memory, or (when large) spilled to tmp/,
/// removed when this is dropped.
pub struct Piped {
    pub payload: Payload,
    _spill: Option<Staged>,
}

/// Reads one mail (at most [`MAX_MAIL`] bytes) from `input`, spilling a
/// large one to the spool's tmp/ so memory stays bounded.
pub fn read(spool: &Spool, input: &mut dyn Read, now: Timestamp) -> Result<Piped> {
    let stdin = Path::new("stdin");
    let mut input = input.take(MAX_MAIL);
    let mut head = Vec::new();
    (&mut input)
        .take(super::parse::IN_MEMORY + 1)
        .read_to_end(&mut head)
        .map_err(|e| Error::io("read", stdin, e))?;
    if head.len() as u64 <= super::parse::IN_MEMORY {
        return Ok(Piped {
            payload: Payload::Bytes(head),
            _spill: None,
        });
    }
    let mut staged = spool.stage(now)?;
    let path = staged.path().to_path_buf();
    staged
        .write_all(&head)
        .map_err(|e| Error::io("write", &path, e))?;
    std::io::copy(&mut input, &mut staged).map_err(|e| Error::io("read", stdin, e))?;
    staged.flush().map_err(|e| Error::io("write", &path, e))?;
    let file = std::fs::File::open(&path).map_err(|e| Error::io("read", &path, e))?;
    Ok(Piped {
        payload: Payload::File(file),
        _spill: Some(staged),
    })
}

/// Receives one mail: from its sender peer, or into quarantine if it names
/// none (or, when even that has no room, left with its source: skipped).
pub fn take(
    spool: &Spool,
    payload: Payload,
    label: &str,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Report> {
    let head = payload
        .prefix(HEAD)
        .map_err(|e| Error::io("read", Path::new(label), e))?;
    match sender(spool.config(), &head) {
        Ok(from) => {
            let item = Inbound {
                payload,
                from,
                label: label.to_string(),
            };
            Ok(receive(spool, vec![item], now, Answer::Owe, log)?.report)
        }
        Err(why) => {
            let mut report = Report::default();
            set_aside(
                spool,
                &payload,
                label,
                &why.to_string(),
                now,
                log,
                &mut report,
            )?;
            Ok(report)
        }
    }
}

/// What [`fetch`] did.
#[derive(Debug, Default)]
pub struct Fetched {
    pub report: Report,
    /// Mails left in `new/`, not taken now (to be fetched again).
    pub left: usize,
}

/// A Maildir `rs-relay fetch` reads: the directory the operator named,
/// and its `new/` and `cur/` opened inside it without following a link
/// (through [`untrusted`]), so nothing a link points at is read, moved or
/// removed.
pub struct Maildir {
    new: untrusted::Dir,
    cur: untrusted::Dir,
}

/// Why a Maildir cannot be read: the directory concerned, and why.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Unusable {
    pub path: std::path::PathBuf,
    pub reason: String,
}

impl Maildir {
    /// Opens the Maildir at `path`: the root as named (the operator's
    /// choice, links and all), then `new/` and `cur/` relative to it,
    /// refusing either when it is a symbolic link or not a directory.
    pub fn open(path: &Path) -> std::result::Result<Maildir, Unusable> {
        let root = untrusted::Dir::open_root(path).map_err(|e| Unusable {
            path: path.to_path_buf(),
            reason: format!("{e} (is {} a Maildir?)", path.display()),
        })?;
        let sub = |name: &str| {
            root.open_dir(name).map_err(|e| {
                let reason = match &e {
                    untrusted::Refusal::WrongKind { kind, .. } => format!(
                        "it is {}, not a directory: not followed (a Maildir's new/ and cur/ are directories inside it; replace the link with the directory, or name with --maildir the Maildir it leads to)",
                        kind.describe()
                    ),
                    untrusted::Refusal::Io { err, .. } => {
                        format!("{err} (is {} a Maildir?)", path.display())
                    }
                };
                Unusable {
                    path: root.join(name),
                    reason,
                }
            })
        };
        Ok(Maildir {
            new: sub("new")?,
            cur: sub("cur")?,
        })
    }
}

/// Takes every mail a mail server delivered into the Maildir `maildir`:
/// each file of `new/`, and each of `cur/` that nobody has seen yet (no
/// `S` flag: an IMAP server or a mail client moved it there unread), goes
/// through [`take`] (regular files only, no link followed) and is marked
/// seen in `cur/` once what it holds is durable here (or quarantined);
/// what could not be taken now stays where it is. A mail a person read
/// before rs fetched it (`S` set) is not taken: that person saw it first.
pub fn fetch(
    spool: &Spool,
    maildir: &Maildir,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<Fetched> {
    let (new, cur) = (&maildir.new, &maildir.cur);
    let mut fetched = Fetched::default();
    for item in new.list().map_err(|e| Error::io("read", new.path(), e))? {
        take_one(spool, new, cur, &item, now, log, &mut fetched)?;
    }
    for item in cur.list().map_err(|e| Error::io("read", cur.path(), e))? {
        if unseen(&item.name_lossy()) {
            take_one(spool, cur, cur, &item, now, log, &mut fetched)?;
        }
    }
    cur.sync()
        .map_err(|e| Error::io("fsync directory", cur.path(), e))?;
    new.sync()
        .map_err(|e| Error::io("fsync directory", new.path(), e))?;
    Ok(fetched)
}

/// Takes one mail of `dir` and, once taken, renames it into `cur` marked
/// seen; one that could not be taken now stays.
fn take_one(
    spool: &Spool,
    dir: &untrusted::Dir,
    cur: &untrusted::Dir,
    item: &untrusted::Item,
    now: Timestamp,
    log: &dyn Fn(String),
    fetched: &mut Fetched,
) -> Result<()> {
    let path = dir.join(&item.name);
    if item.kind != Kind::File {
        log(format!(
            "skipped {}: {}, not a regular file: not read",
            path.display(),
            item.kind.describe()
        ));
        fetched.report.skipped += 1;
        return Ok(());
    }
    let file = match dir.open_file(&item.name) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => {
            log(format!("skipped {e}"));
            fetched.report.skipped += 1;
            return Ok(());
        }
    };
    let payload = Payload::of_file(file, &path)?;
    let r = take(spool, payload, &path.display().to_string(), now, log)?;
    fetched.report.add(&r);
    if r.retry > 0 || r.skipped > 0 {
        // Not all of it could be taken now: leave it for the next run.
        fetched.left += 1;
        return Ok(());
    }
    dir.rename_into(&item.name, cur, seen(&item.name_lossy()))
        .map_err(|e| Error::io("rename", &path, e))
}

/// Whether a mail of `cur/` named `name` is unseen: no `S` among the flags
/// of its info (`NAME:2,FLAGS`), or no info at all.
fn unseen(name: &str) -> bool {
    name.split_once(":2,")
        .is_none_or(|(_, flags)| !flags.contains('S'))
}

/// `name` marked seen: the flag `S` added to its info, the flags in ASCII
/// order as Maildir wants them.
fn seen(name: &str) -> String {
    match name.split_once(":2,") {
        Some((_, flags)) if flags.contains('S') => name.to_string(),
        Some((base, flags)) => {
            let mut f: Vec<char> = flags.chars().chain(['S']).collect();
            f.sort_unstable();
            format!("{base}:2,{}", f.into_iter().collect::<String>())
        }
        None => format!("{name}:2,S"),
    }
}

/// The peer that sent `mail`, or why none can be named.
pub fn sender(config: &Config, mail: &[u8]) -> std::result::Result<Name, Unreadable> {
    let (headers, _) = mailparse::parse_headers(mail)?;
    if let Some(component) = headers.get_first_value("X-Rs-From") {
        let component = component.trim();
        return config.peer(component).map(|p| p.id.clone()).ok_or_else(|| {
            Unreadable::UnknownComponent {
                component: component.to_string(),
            }
        });
    }
    let from = headers.get_first_value("From").unwrap_or_default();
    let address = address_of(&from).to_ascii_lowercase();
    config
        .peers
        .iter()
        .find(|p| {
            p.routes
                .iter()
                .any(|r| matches!(r, Route::Smtp(s) if s.to.eq_ignore_ascii_case(&address)))
        })
        .map(|p| p.id.clone())
        .ok_or_else(|| Unreadable::UnknownAddress {
            from: from.trim().to_string(),
        })
}

/// The bare address in a From: value (`Name <a@b>` or `a@b`).
fn address_of(from: &str) -> &str {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].trim(),
        _ => from.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_is_marked_seen_once_and_only_the_unseen_are_taken() {
        assert_eq!(seen("1.2.host"), "1.2.host:2,S");
        assert_eq!(seen("1.2.host:2,"), "1.2.host:2,S");
        assert_eq!(seen("1.2.host:2,FT"), "1.2.host:2,FST");
        assert_eq!(seen("1.2.host:2,RS"), "1.2.host:2,RS");
        assert!(unseen("1.2.host") && unseen("1.2.host:2,") && unseen("1.2.host:2,F"));
        assert!(!unseen("1.2.host:2,S") && !unseen("1.2.host:2,RS"));
    }

    fn config() -> Config {
        Config::parse("site='b'\ncomponent='b.hub'\n[[peer]]\nid='a.host'\nroutes=['smtp://mx?from=b@y.test&to=a@x.test']\n").unwrap()
    }

    #[test]
    fn senders_are_named_by_header_or_address() {
        let c = config();
        assert_eq!(
            sender(&c, b"X-Rs-From: a.host\nFrom: x@y\n\nbody")
                .unwrap()
                .as_str(),
            "a.host"
        );
        assert_eq!(
            sender(&c, b"From: Site A <A@X.test>\n\nbody")
                .unwrap()
                .as_str(),
            "a.host"
        );
        assert!(sender(&c, b"X-Rs-From: m.allory\n\n")
            .unwrap_err()
            .to_string()
            .contains("not a configured peer"));
        assert!(sender(&c, b"From: stranger@z\n\n")
            .unwrap_err()
            .to_string()
            .contains("stranger@z"));
        assert!(sender(&c, b"Subject: no from\n\n").is_err());
    }
}
