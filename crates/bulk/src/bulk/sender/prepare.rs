//! The start of a transfer at its sender: whether data may go as one,
//! whether it fits under the queue's limits, the copy of the data kept
//! aside (sealed by `rs-queue seal` when `[bulk] encrypt_to` says so) and
//! the first request. Invariant: durable on return, in this order: the
//! data (`T.data`), the request (`T.request`), the state (`T.json`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use serde_json::Value;

use super::{paths, Outgoing, Phase};
use crate::bulk::{dir, save};
use crate::message::{
    envelope, BulkDataRequest, Content, Digest, Header, Locator, Message, MimeType, Name,
    Precedence, Sealing,
};
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

/// Whether data with header `header` can go as a transfer: on the forward
/// path, or to one component or group (a transfer to several goes as one
/// message, as smaller data does). A group's transfer is received once by
/// the relay where the group is configured, which sends it on to each
/// member.
pub fn can_send(header: &Header) -> bool {
    match &header.locator {
        Locator::Source(_) => true,
        Locator::Destination(d) => d.targets.len() == 1,
    }
}

/// Keeps a copy of `size` bytes of data from `data` for the transfer whose
/// header is `header` (its ID names the transfer), and returns the request
/// to queue. Durable on return: the data, its digest, the request.
pub fn prepare(
    spool: &Spool,
    header: &Header,
    mime: &MimeType,
    size: u64,
    data: Source<'_>,
    now: Timestamp,
) -> Result<Message> {
    let t = header.id.to_string();
    let (_, data_path, _) = paths(spool, &t)?;
    let mut staged = spool.stage(now)?;
    let tmp = staged.path().to_path_buf();
    let encrypt_to = &spool.config().bulk.encrypt_to;
    if !encrypt_to.is_empty() {
        let sealed = seal_aside(&tmp, encrypt_to, size, data, &t)?;
        staged.sync()?;
        staged.commit(&data_path)?;
        let request = request_for(spool, header, mime, size, &sealed.1, Some(sealed.0), now)?;
        save_new(spool, &request, None, now)?;
        return Ok(request);
    }
    let data: &mut dyn Read = match data {
        Source::Bytes(b) => b,
        Source::File(f) => f,
    };
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut progress = crate::progress::Progress::new(format!("{t}: copying the data aside"), size);
    loop {
        let n = data
            .read(&mut buf)
            .map_err(|e| crate::spool::Error::io("read the data for", &tmp, e))?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
        staged
            .write_all(&buf[..n])
            .map_err(|e| crate::spool::Error::io("write", &tmp, e))?;
        total += n as u64;
        progress.add(n as u64);
    }
    if total != size {
        return Err(crate::spool::Error::io(
            "copy",
            &tmp,
            std::io::Error::other(format!(
                "the data changed while it was read: {size} bytes announced, {total} read"
            )),
        ));
    }
    let digest = Digest::of(hasher);
    staged.sync()?;
    staged.commit(&data_path)?;
    let request = request_for(spool, header, mime, size, &digest, None, now)?;
    save_new(spool, &request, None, now)?;
    Ok(request)
}

/// The bytes of data this site keeps aside for transfers that have not
/// ended (their copies in `bulk/out/`). They count against `[queue]
/// max_bytes` (and `[queue.bulk]`, as their chunks go as bulk) when a new
/// transfer asks for room: see [`room_for`].
pub fn waiting_bytes(spool: &Spool) -> Result<u64> {
    Ok(crate::bulk::transfers(spool, "out")?
        .iter()
        .filter_map(|(_, path)| crate::bulk::load::<Outgoing>(path))
        .filter(|st| !matches!(st.phase, Phase::Delivered | Phase::Dead))
        .map(|st| st.size)
        .sum())
}

/// Whether a new transfer of `size` bytes, whose request has precedence
/// `precedence`, fits under `[queue] max_bytes` and the precedences'
/// limits, counting what the queue holds and the data of the transfers
/// waiting. `Err`: why not ([`Error::NoRoom`](crate::bulk::Error::NoRoom)).
/// Nothing is discarded to make room for one: a transfer's data is not a
/// queued message.
pub fn room_for(
    spool: &Spool,
    size: u64,
    precedence: Precedence,
    now: Timestamp,
) -> Result<std::result::Result<(), crate::bulk::Error>> {
    let limits = &spool.config().queue;
    // The total, the chunks' precedence, and the request's.
    let mut scopes = vec![
        (None, limits.total()),
        (Some(Precedence::Bulk), limits.bulk),
    ];
    if precedence != Precedence::Bulk {
        scopes.push((Some(precedence), limits.for_precedence(precedence)));
    }
    scopes.retain(|(_, limit)| limit.max_bytes.is_some());
    if scopes.is_empty() {
        return Ok(Ok(()));
    }
    let waiting = waiting_bytes(spool)?;
    let usage = *spool.lock(now)?.usage();
    for (scope, limit) in scopes {
        let (queued, name) = match scope {
            None => (usage.total().1, "[queue]".to_string()),
            Some(p) => (usage.of(p).1, format!("[queue.{p}]")),
        };
        let max = limit.max_bytes.map_or(u64::MAX, |m| m.0);
        if queued.saturating_add(waiting).saturating_add(size) > max {
            return Ok(Err(crate::bulk::Error::NoRoom {
                size,
                scope: name,
                max,
                queued,
                waiting,
            }));
        }
    }
    Ok(Ok(()))
}

/// The data of a transfer being prepared: in memory, or a file (read from
/// where it stands).
pub enum Source<'a> {
    Bytes(&'a mut &'a [u8]),
    File(&'a mut std::fs::File),
}

/// Seals `size` bytes of data from `data` into `path` for the recipients
/// `encrypt_to`, by `rs-queue seal` (beside this program: `rs-send` links
/// no cryptography): the sealing, and the data's digest. Durable on return.
fn seal_aside(
    path: &std::path::Path,
    encrypt_to: &[String],
    size: u64,
    data: Source<'_>,
    t: &str,
) -> Result<(Sealing, Digest)> {
    use std::process::{Command, Stdio};
    let fail = |why: String| crate::spool::Error::Sealing {
        reason: format!("{t}: cannot seal the data into {}: {why}", path.display()),
    };
    let helper = std::env::current_exe()
        .map_err(|e| fail(e.to_string()))?
        .with_file_name("rs-queue");
    let mut cmd = Command::new(&helper);
    cmd.arg("seal").arg("--out").arg(path);
    for r in encrypt_to {
        cmd.arg("--to").arg(r);
    }
    let mut progress = crate::progress::Progress::new(format!("{t}: sealing the data aside"), size);
    // A file is read by the helper itself, from where it stands; data in
    // memory goes through a pipe.
    let (stdin, mut bytes) = match data {
        Source::File(f) => (
            Stdio::from(f.try_clone().map_err(|e| fail(e.to_string()))?),
            None,
        ),
        Source::Bytes(b) => (Stdio::piped(), Some(b)),
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("{}: {e}", helper.display())))?;
    let pumped = match (child.stdin.take(), bytes.take()) {
        (Some(mut stdin), Some(b)) => stdin
            .write_all(b)
            .map_err(|e| format!("{}: {e}", helper.display())),
        _ => Ok(()),
    };
    // Progress from the sealed file's growth (its header is small).
    let mut shown = 0u64;
    while child.try_wait().ok().flatten().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = std::fs::metadata(path).map_or(0, |m| m.len()).min(size);
        progress.add(now.saturating_sub(shown));
        shown = shown.max(now);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("{}: {e}", helper.display())))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(fail(said.trim().to_string()));
    }
    pumped.map_err(fail)?;
    progress.add(size.saturating_sub(shown));
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()))?;
    let header = v["header"]
        .as_str()
        .and_then(|h| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, h).ok());
    let digest = v["digest"]
        .as_str()
        .and_then(|d| Digest::new(d.to_string()).ok());
    match (header, digest, v["size"].as_u64()) {
        (_, _, Some(n)) if n != size => Err(fail(format!(
            "the data changed while it was read: {size} bytes announced, {n} read"
        ))),
        (Some(header), Some(digest), Some(_)) => Ok((
            Sealing {
                header,
                size: crate::bulk::seal::sealed_size(size),
            },
            digest,
        )),
        _ => Err(fail(format!("{} answered {:?}", helper.display(), v))),
    }
}

/// A group member's transfer, started by the relay where the group is
/// configured (see [`start_linked`]).
pub struct Member<'a> {
    /// The member's request header (its ID derived from the group's).
    pub header: &'a Header,
    /// The component that sent the group's transfer, told if this dies.
    pub report_to: Option<&'a Name>,
    pub mime: &'a MimeType,
    pub digest: &'a Digest,
    /// The verified data (linked, not copied).
    pub data: &'a std::path::Path,
}

/// Starts a member's transfer of the data at `member.data` (linked, not
/// copied: the link goes when the transfer is delivered) and queues its
/// request, unless it was started before. Durable on return.
pub fn start_linked(
    spool: &Spool,
    member: Member<'_>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let Member {
        header,
        report_to,
        mime,
        digest,
        data,
    } = member;
    let size = std::fs::metadata(data)
        .map_err(|e| crate::spool::Error::io("read", data, e))?
        .len();
    let t = header.id.to_string();
    let (state_path, data_path, _) = paths(spool, &t)?;
    if state_path.exists() {
        return Ok(());
    }
    if !data_path.exists() {
        std::fs::hard_link(data, &data_path)
            .map_err(|e| crate::spool::Error::io("link", &data_path, e))?;
    }
    let request = request_for(spool, header, mime, size, digest, None, now)?;
    // Queued before it is recorded: a run killed in between queues the
    // same request (the same ID) again, a duplicate the receiver drops.
    crate::custody::pass_on(spool, vec![request.clone()], now, log)?;
    save_new(spool, &request, report_to.map(|o| o.to_string()), now)
}

/// The first request of transfer `header.id`, kept in `bulk/out/T.request`.
fn request_for(
    spool: &Spool,
    header: &Header,
    mime: &MimeType,
    size: u64,
    digest: &Digest,
    sealed: Option<Sealing>,
    now: Timestamp,
) -> Result<Message> {
    let t = header.id.to_string();
    let (_, _, request_path) = paths(spool, &t)?;
    let out_dir = dir(spool, "out")?;
    let request = Message {
        header: header.clone(),
        content: Content::BulkDataRequest(BulkDataRequest {
            class: header.class.clone(),
            subclass: header.subclass.clone(),
            size,
            transfer: None,
            digest: Some(digest.clone()),
            mime_type: Some(mime.clone()),
            sealed,
        }),
    };
    let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    durable::write_durable(
        &spool.dir(Area::Tmp),
        &out_dir,
        &name(&request_path),
        &envelope::to_bytes(std::slice::from_ref(&request)),
        now.as_micros(),
    )?;
    Ok(request)
}

/// Records a new transfer whose first request is `request`.
fn save_new(
    spool: &Spool,
    request: &Message,
    report_to: Option<String>,
    now: Timestamp,
) -> Result<()> {
    let Content::BulkDataRequest(r) = &request.content else {
        return Ok(());
    };
    let t = request.header.id.to_string();
    let st = Outgoing {
        phase: Phase::Requested,
        size: r.sealed.as_ref().map_or(r.size, |x| x.size),
        digest: r.digest.as_ref().map(|d| d.to_string()).unwrap_or_default(),
        request: t.clone(),
        requests: 1,
        deferrals: 0,
        retry_at: None,
        chunk_size: None,
        asked: String::new(),
        chunks: BTreeMap::new(),
        chunks_sent: 0,
        receiver: None,
        reason: None,
        updated: now,
        upload: None,
        uploaded: 0,
        chunks_only: false,
        report_to,
        sealed_at: r.sealed.as_ref().map(|x| x.header.len() as u64),
    };
    save(spool, &dir(spool, "out")?, &format!("{t}.json"), &st, now)
}
