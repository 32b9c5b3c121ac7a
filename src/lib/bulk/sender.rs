//! The sending side of a transfer: the copy of the data, the request, and
//! what the receiver's answers make of them (see the module above).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{dir, load, save, transfers, ChunkInfo, Ranges};
use crate::message::{
    envelope, stream, BulkDataRequest, BulkDataResponse, BulkStatus, Content, Digest, Header,
    Locator, Message, MessageId, MimeType, Name, Persistence, Precedence, Sealing,
};
use crate::spool::{durable, Admission, Area, Result, Spool};
use crate::time::Timestamp;

/// Where a transfer stands at its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The request is on its way; no answer yet.
    Requested,
    /// Answered `deferred`: asked again at `retry_at`.
    Deferred,
    /// Answered `ok`: chunks go as the receiver asks for them.
    Authorized,
    /// The receiver verified the whole data: the copy is gone.
    Delivered,
    /// Rejected, deferred too often, or lost on the way: given up.
    Dead,
}

/// The state of one transfer (`bulk/out/T.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outgoing {
    pub phase: Phase,
    pub size: u64,
    pub digest: String,
    /// The request that went last.
    pub request: String,
    pub requests: u32,
    pub deferrals: u32,
    pub retry_at: Option<Timestamp>,
    pub chunk_size: Option<u64>,
    /// The chunks the receiver asked for last.
    pub asked: String,
    /// The chunks queued: index, and the ID of the message that carries it.
    pub chunks: BTreeMap<u64, String>,
    /// How many chunks in all went.
    pub chunks_sent: u64,
    /// The component that authorized the transfer: only its answers move
    /// the transfer on from then (a hop on the path may refuse before).
    #[serde(default)]
    pub receiver: Option<String>,
    pub reason: Option<String>,
    pub updated: Timestamp,
    /// Where the data is uploaded over HTTP (tus), relative to the next
    /// hop's URL (`uploads/T`): set when the receiver named it and the
    /// next hop is an HTTP route; the chunks then do not go as messages.
    #[serde(default)]
    pub upload: Option<String>,
    /// The bytes the receiver said it holds, from the last upload.
    #[serde(default)]
    pub uploaded: u64,
    /// An upload was refused on the way: the chunks go as messages.
    #[serde(default)]
    pub chunks_only: bool,
    /// A group member's transfer from a relay: the component that sent
    /// the group's transfer, told if this one dies.
    #[serde(default)]
    pub report_to: Option<String>,
    /// A sealed transfer: where its payload starts in `T.data` (after the
    /// age header); `size` is then the payload's.
    #[serde(default)]
    pub sealed_at: Option<u64>,
}

impl Outgoing {
    pub fn count(&self) -> Option<u64> {
        self.chunk_size.map(|c| self.size.div_ceil(c))
    }

    /// The data's size (a sealed transfer's `size` is its payload's).
    pub fn data_size(&self) -> u64 {
        match self.sealed_at {
            Some(_) => super::seal::plain_size(self.size).unwrap_or(self.size),
            None => self.size,
        }
    }
}

fn paths(spool: &Spool, t: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let d = dir(spool, "out")?;
    Ok((
        d.join(format!("{t}.json")),
        d.join(format!("{t}.data")),
        d.join(format!("{t}.request")),
    ))
}

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
    let mut progress = crate::output::Progress::new(format!("{t}: copying the data aside"), size);
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
    Ok(super::transfers(spool, "out")?
        .iter()
        .filter_map(|(_, path)| super::load::<Outgoing>(path))
        .filter(|st| !matches!(st.phase, Phase::Delivered | Phase::Dead))
        .map(|st| st.size)
        .sum())
}

/// Whether a new transfer of `size` bytes, whose request has precedence
/// `precedence`, fits under `[queue] max_bytes` and the precedences'
/// limits, counting what the queue holds and the data of the transfers
/// waiting. `Err`: why not. Nothing is discarded to make room for one: a
/// transfer's data is not a queued message.
pub fn room_for(
    spool: &Spool,
    size: u64,
    precedence: Precedence,
    now: Timestamp,
) -> Result<std::result::Result<(), String>> {
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
            return Ok(Err(format!(
                "a bulk transfer of {size} bytes does not fit under {name} max_bytes = {max}: {queued} bytes are queued and {waiting} bytes of transfers wait"
            )));
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
    let mut progress = crate::output::Progress::new(format!("{t}: sealing the data aside"), size);
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
                size: super::seal::sealed_size(size),
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
    crate::relay::pass_on(spool, vec![request.clone()], now, log)?;
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

/// The first request of transfer `t` (its header is every later
/// message's model).
fn first_request(spool: &Spool, t: &str) -> Result<Message> {
    let (_, _, path) = paths(spool, t)?;
    let bytes = std::fs::read(&path).map_err(|e| crate::spool::Error::io("read", &path, e))?;
    envelope::parse(&bytes)
        .ok()
        .and_then(|mut ms| (ms.len() == 1).then(|| ms.remove(0)))
        .ok_or_else(|| {
            crate::spool::Error::io(
                "parse",
                &path,
                std::io::Error::other("not the one request of a transfer"),
            )
        })
}

/// Whether the transfer answer `r` names is one this site sends.
pub fn sends(spool: &Spool, r: &BulkDataResponse) -> bool {
    let t = r.transfer.as_ref().unwrap_or(&r.answers);
    spool
        .root()
        .join("bulk/out")
        .join(format!("{t}.json"))
        .exists()
}

/// What an answer from the receiver (or a hop) does to transfer it names.
pub fn on_answer(
    spool: &Spool,
    h: &Header,
    r: &BulkDataResponse,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let t = r.transfer.as_ref().unwrap_or(&r.answers).to_string();
    let (state_path, data_path, _) = paths(spool, &t)?;
    let Some(mut st) = load::<Outgoing>(&state_path) else {
        log(format!(
            "{}: an answer for transfer {t}, which is not this site's: ignored",
            h.id
        ));
        return Ok(());
    };
    if matches!(st.phase, Phase::Delivered | Phase::Dead) {
        return Ok(());
    }
    let from = h.origin().map(|o| o.to_string());
    if st.receiver.is_some() && from != st.receiver {
        log(format!(
            "{}: an answer for transfer {t} from {from:?}, not from its receiver {:?}: ignored",
            h.id, st.receiver
        ));
        return Ok(());
    }
    if r.status == BulkStatus::Ok && st.receiver.is_none() {
        st.receiver = from;
    }
    let reason = r.reason.as_ref().map(|x| x.to_string()).unwrap_or_default();
    let config = &spool.config().bulk;
    match r.status {
        BulkStatus::Rejected => give_up(&mut st, format!("rejected: {reason}"), &t, log),
        BulkStatus::Deferred if st.phase == Phase::Authorized => {}
        BulkStatus::Deferred => {
            st.deferrals += 1;
            if st.deferrals >= config.max_deferrals {
                let why = format!("deferred {} times, the last: {reason}", st.deferrals);
                give_up(&mut st, why, &t, log);
            } else {
                st.phase = Phase::Deferred;
                st.reason = Some(reason.clone());
                st.retry_at = Some(now.saturating_add(config.retry));
                log(format!(
                    "{t}: bulk transfer deferred ({reason}); asked again at {}",
                    now.saturating_add(config.retry)
                ));
            }
        }
        BulkStatus::Ok => match &r.verified {
            Some(v) if v.as_str() == st.digest => {
                st.phase = Phase::Delivered;
                st.reason = Some(format!("verified {v}"));
                let _ = durable::remove_file(&data_path);
                log(format!("{t}: bulk transfer delivered and verified ({v})"));
            }
            Some(v) => {
                let why = format!("the receiver verified {v}, not the data's {}", st.digest);
                give_up(&mut st, why, &t, log)
            }
            None => authorized(spool, &t, &mut st, r, now, log)?,
        },
    }
    st.updated = now;
    if st.phase == Phase::Dead {
        report_death(spool, &t, &st, now, log)?;
    }
    save(spool, &dir(spool, "out")?, &format!("{t}.json"), &st, now)
}

/// A group member's transfer that died: the component that sent the
/// group's transfer is told (the member's copy is undeliverable), as any
/// copy of a group message that dies at a relay. Told before the death is
/// recorded: a run killed in between tells it again (the same notice).
fn report_death(
    spool: &Spool,
    t: &str,
    st: &Outgoing,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let Some(origin) = st
        .report_to
        .as_deref()
        .and_then(|o| Name::new("component", o).ok())
    else {
        return Ok(());
    };
    let mut header = first_request(spool, t)?.header;
    header.routing = vec![crate::message::Routing {
        component: origin.clone(),
        received: None,
        sent: None,
    }];
    let learned = crate::route::Learned::load(spool);
    let why = st.reason.clone().unwrap_or_default();
    crate::relay::tell_origin(spool, &header, &learned, &why, now)?;
    log(format!(
        "{t}: {origin} is told this member's copy is undeliverable"
    ));
    Ok(())
}

fn give_up(st: &mut Outgoing, reason: String, t: &str, log: &dyn Fn(String)) {
    log(format!(
        "{t}: bulk transfer given up: {reason} (its data stays in bulk/out/{t}.data until rs-queue delete {t})"
    ));
    st.phase = Phase::Dead;
    st.reason = Some(reason);
}

/// An `ok` asking for chunks: queues those not on their way already.
fn authorized(
    spool: &Spool,
    t: &str,
    st: &mut Outgoing,
    r: &BulkDataResponse,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let cs = match (st.chunk_size, r.chunk_size) {
        (Some(c), _) => c,
        (None, Some(c)) if (1024..=16 << 20).contains(&c) => c,
        (None, c) => {
            give_up(
                st,
                format!("the receiver asked for chunks of {c:?} bytes"),
                t,
                log,
            );
            return Ok(());
        }
    };
    st.chunk_size = Some(cs);
    if st.phase != Phase::Authorized {
        log(format!(
            "{t}: bulk transfer authorized ({} bytes in chunks of {cs})",
            st.size
        ));
    }
    st.phase = Phase::Authorized;
    let count = st.size.div_ceil(cs);
    let asked = match r.ask.as_ref().map(|a| Ranges::parse(a.as_str(), count)) {
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            log(format!(
                "{t}: an answer asking for chunks it cannot name ({e}): ignored"
            ));
            return Ok(());
        }
        None => Ranges::default(),
    };
    // A chunk asked for again that is no longer on its way here went
    // astray beyond the next hop: it goes again.
    let outbound = outbound_ids(spool)?;
    for i in asked.iter() {
        if st.chunks.get(&i).is_some_and(|id| !outbound.contains(id)) {
            st.chunks.remove(&i);
        }
    }
    st.asked = asked.to_string();
    let here = format!("{}{t}", super::UPLOADS);
    let offered = r.location.as_ref().is_some_and(|l| l.as_str() == here);
    // A sealed transfer's chunks go as messages: the receiver opens each.
    if offered && !st.chunks_only && st.sealed_at.is_none() && upload_route(spool, t).is_some() {
        if st.upload.is_none() {
            log(format!("{t}: the data goes over HTTP (tus, {here})"));
        }
        st.upload = Some(here);
        return Ok(());
    }
    queue_asked(spool, t, st, now, log)
}

/// The peer transfer `t`'s messages go to, as routing says now.
fn next_peer(spool: &Spool, t: &str) -> Option<Name> {
    let request = first_request(spool, t).ok()?;
    let learned = crate::route::Learned::load(spool);
    match crate::route::next_hop(&request.header, spool.config(), &learned) {
        crate::route::NextHop::Peer(p) => Some(p),
        _ => None,
    }
}

/// The next hop of transfer `t` and its HTTP route, when its first route
/// is one (an upload goes there).
pub fn upload_route(spool: &Spool, t: &str) -> Option<(Name, crate::config::HttpRoute)> {
    let p = next_peer(spool, t)?;
    match spool.config().peer(p.as_str())?.routes.first()? {
        crate::config::Route::Http(h) => Some((p, h.clone())),
        _ => None,
    }
}

/// The upload of transfer `t` was refused on the way (`why`): the chunks
/// asked for go as messages from now on.
pub fn upload_refused(
    spool: &Spool,
    t: &str,
    why: &str,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let _lock = super::lock(spool)?;
    let (state_path, _, _) = paths(spool, t)?;
    let Some(mut st) = load::<Outgoing>(&state_path) else {
        return Ok(());
    };
    log(format!(
        "{t}: the upload over HTTP is refused ({why}): the chunks go as messages"
    ));
    st.upload = None;
    st.chunks_only = true;
    queue_asked(spool, t, &mut st, now, log)?;
    st.updated = now;
    save(spool, &dir(spool, "out")?, &format!("{t}.json"), &st, now)
}

/// Records that the receiver holds the first `offset` bytes of `t`.
pub fn uploaded(spool: &Spool, t: &str, offset: u64, now: Timestamp) -> Result<()> {
    let _lock = super::lock(spool)?;
    let (state_path, _, _) = paths(spool, t)?;
    let Some(mut st) = load::<Outgoing>(&state_path) else {
        return Ok(());
    };
    if st.phase == Phase::Authorized && offset > st.uploaded {
        st.uploaded = offset;
        save(spool, &dir(spool, "out")?, &format!("{t}.json"), &st, now)?;
    }
    Ok(())
}

/// Chunks written before they are made durable together.
const QUEUED_AT_ONCE: usize = 64;

/// Queues every chunk asked for that is not queued yet.
fn queue_asked(
    spool: &Spool,
    t: &str,
    st: &mut Outgoing,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let (Some(cs), Some(count)) = (st.chunk_size, st.count()) else {
        return Ok(());
    };
    if st.upload.is_some() {
        return Ok(()); // uploaded over HTTP instead
    }
    let Ok(asked) = Ranges::parse(&st.asked, count) else {
        return Ok(());
    };
    let todo: Vec<u64> = asked
        .iter()
        .filter(|i| !st.chunks.contains_key(i))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let model = first_request(spool, t)?.header;
    let (_, data_path, _) = paths(spool, t)?;
    let data = std::fs::File::open(&data_path)
        .map_err(|e| crate::spool::Error::io("open", &data_path, e))?;
    let transfer = super::transfer_id(t, &data_path)?;
    let sealed_at = st.sealed_at;
    let size = st.size;
    // One chunk's message, written (not yet durable). A sealed chunk is
    // read as it is written; another is read first, for its digest.
    let write_chunk = |i: u64, buf: &mut Vec<u8>| -> Result<_> {
        let offset = i * cs;
        let len = cs.min(size - offset) as usize;
        let at = sealed_at.unwrap_or(0) + offset;
        if sealed_at.is_none() {
            buf.resize(len, 0);
            data.read_exact_at(buf, at)
                .map_err(|e| crate::spool::Error::io("read", &data_path, e))?;
        }
        let info = ChunkInfo {
            transfer: transfer.clone(),
            index: i,
            // A sealed chunk's segments authenticate themselves.
            digest: sealed_at.is_none().then(|| super::digest_of(buf)),
        };
        let header = chunk_header(&model, &transfer, now);
        let mime = MimeType::new(info.mime()).map_err(|e| {
            crate::spool::Error::io("name", &data_path, std::io::Error::other(e.to_string()))
        })?;
        let mut staged = spool.stage(now)?;
        let path = staged.path().to_path_buf();
        let mut source: Box<dyn Read + '_> = match sealed_at {
            Some(_) => Box::new(super::upload::Range {
                file: &data,
                at,
                left: len as u64,
            }),
            None => Box::new(&buf[..]),
        };
        stream::write_data_envelope(&header, &mime, len as u64, &mut source, &mut staged)
            .map_err(|e| crate::spool::Error::io("write", &path, e))?;
        staged.start_writeback();
        let name = crate::relay::entry_name(&header, staged.size());
        Ok((i, header.id.to_string(), staged, name))
    };
    // A group at a time: written (by two threads, each its share),
    // made durable together (their writes overlap), then admitted.
    for group in todo.chunks(QUEUED_AT_ONCE) {
        let shares: Vec<Vec<u64>> = (0..2)
            .map(|k| group.iter().copied().skip(k).step_by(2).collect())
            .collect();
        let written: Vec<Result<Vec<_>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = shares
                .iter()
                .map(|share| {
                    scope.spawn(|| {
                        let mut buf = Vec::new();
                        share
                            .iter()
                            .map(|&i| write_chunk(i, &mut buf))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("a chunk writer does not panic"))
                .collect()
        });
        let mut batch = Vec::with_capacity(group.len());
        for w in written {
            batch.extend(w?);
        }
        batch.sort_by_key(|(i, ..)| *i);
        durable::sync_files(
            &spool.dir(crate::spool::Area::Tmp),
            batch.iter().map(|(_, _, s, _)| s.path()),
        )?;
        let ids: Vec<(u64, String)> = batch.iter().map(|(i, id, _, _)| (*i, id.clone())).collect();
        let admitted = spool
            .lock(now)?
            .admit_many(batch.into_iter().map(|(_, _, s, n)| (s, n)).collect(), now)?;
        for ((i, id), a) in ids.into_iter().zip(admitted) {
            match a {
                Admission::Queued { .. } => {
                    st.chunks.insert(i, id);
                    st.chunks_sent += 1;
                }
                Admission::Rejected { detail, .. } => log(format!(
                    "{t}: chunk {i} not queued now ({detail}); it goes later"
                )),
            }
        }
    }
    Ok(())
}

/// The header of a chunk of the transfer whose first request has header
/// `model`: the same class, subclass and way, with precedence `bulk` (so
/// nothing waits behind it) and persistence `high` (never evicted).
fn chunk_header(model: &Header, transfer: &MessageId, now: Timestamp) -> Header {
    let mut locator = model.locator.clone();
    let qos = match &mut locator {
        Locator::Source(s) => &mut s.qos,
        Locator::Destination(d) => &mut d.qos,
    };
    qos.precedence = Precedence::Bulk;
    qos.persistence = Persistence::High;
    Header {
        id: MessageId::mint(now),
        created: now,
        class: model.class.clone(),
        subclass: model.subclass.clone(),
        locator,
        in_reply_to: Some(transfer.clone()),
        origin_key: None,
        epoch: None,
        routing: Vec::new(),
    }
}

/// Asks again after deferrals; queues chunks asked for that could not be
/// queued; gives up transfers whose request or a chunk is dead.
pub fn tick(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    let list = transfers(spool, "out")?;
    if list.is_empty() {
        return Ok(());
    }
    let mut dead: Option<Vec<(String, String)>> = None;
    let mut dead_of = |id: &str| -> Result<Option<String>> {
        if dead.is_none() {
            dead = Some(
                spool
                    .scan_dead()?
                    .into_iter()
                    .map(|(n, r)| (n.id.to_string(), r.detail))
                    .collect(),
            );
        }
        Ok(dead
            .as_ref()
            .and_then(|d| d.iter().find(|(i, _)| i == id).map(|(_, r)| r.clone())))
    };
    for (t, path) in list {
        let Some(mut st) = load::<Outgoing>(&path) else {
            continue;
        };
        let before = st.clone();
        match st.phase {
            Phase::Deferred if st.retry_at.is_none_or(|at| now >= at) => {
                ask_again(spool, &t, &mut st, now)?;
                log(format!("{t}: bulk request asked again ({})", st.request));
            }
            Phase::Requested => {
                if let Some(why) = dead_of(&st.request)? {
                    give_up(&mut st, format!("its request is dead: {why}"), &t, log);
                } else if spool.find(&st.request).is_err() && {
                    // Never queued (rs-send killed before it printed the
                    // ID: no acknowledgement on record) and `retry` past,
                    // or gone and unanswered for half a reservation.
                    let bulk = &spool.config().bulk;
                    let left = crate::ack::journal(spool, &st.request).is_ok_and(|j| !j.is_empty());
                    let wait = if left {
                        bulk.reservation / 2
                    } else {
                        bulk.retry
                    };
                    now >= st.updated.saturating_add(wait)
                } {
                    ask_again(spool, &t, &mut st, now)?;
                    st.updated = now;
                    log(format!(
                        "{t}: no answer to the bulk request: asked again ({})",
                        st.request
                    ));
                }
            }
            Phase::Authorized if now >= st.updated.saturating_add(spool.config().bulk.retry) => {
                // Nothing heard for `retry`: the request goes again and
                // the receiver answers where the transfer stands (an
                // answer lost on the way heals).
                ask_again(spool, &t, &mut st, now)?;
                st.phase = Phase::Authorized;
                st.updated = now;
                log(format!(
                    "{t}: nothing heard of the transfer: asked where it stands ({})",
                    st.request
                ));
            }
            Phase::Authorized => {
                let lost = st
                    .chunks
                    .iter()
                    .map(|(i, id)| (*i, id.clone()))
                    .collect::<Vec<_>>();
                for (i, id) in lost {
                    if let Some(why) = dead_of(&id)? {
                        give_up(&mut st, format!("chunk {i} ({id}) is dead: {why}"), &t, log);
                        break;
                    }
                }
                if st.phase == Phase::Authorized {
                    queue_asked(spool, &t, &mut st, now, log)?;
                }
            }
            _ => {}
        }
        if st.phase == Phase::Dead && before.phase != Phase::Dead {
            report_death(spool, &t, &st, now, log)?;
        }
        if st.phase != before.phase
            || st.chunks != before.chunks
            || st.request != before.request
            || st.updated != before.updated
        {
            st.updated = now;
            save(spool, &dir(spool, "out")?, &format!("{t}.json"), &st, now)?;
        }
    }
    Ok(())
}

/// Queues a new request for transfer `t` (its own ID, the same transfer).
fn ask_again(spool: &Spool, t: &str, st: &mut Outgoing, now: Timestamp) -> Result<()> {
    let first = first_request(spool, t)?;
    let mut header = first.header.clone();
    header.id = MessageId::mint(now);
    header.created = now;
    let Content::BulkDataRequest(mut r) = first.content else {
        return Ok(());
    };
    r.transfer = Some(first.header.id.clone());
    let m = Message {
        header: header.clone(),
        content: Content::BulkDataRequest(r),
    };
    let mut staged = spool.stage(now)?;
    let path = staged.path().to_path_buf();
    envelope::write(std::slice::from_ref(&m), &mut staged)
        .map_err(|e| crate::spool::Error::io("write", &path, e))?;
    staged.sync()?;
    let name = crate::relay::entry_name(&header, staged.size());
    if let Admission::Queued { .. } = spool.lock(now)?.admit(staged, name, now)? {
        st.phase = Phase::Requested;
        st.request = header.id.to_string();
        st.requests += 1;
        st.retry_at = None;
    }
    Ok(())
}

/// The IDs of every message still in this site's outbound areas (queued,
/// held, sent and not acknowledged), from one scan of their names.
fn outbound_ids(spool: &Spool) -> Result<std::collections::HashSet<String>> {
    let mut ids = std::collections::HashSet::new();
    for area in Area::OUTBOUND {
        let (entries, _) = spool.scan(area)?;
        ids.extend(entries.into_iter().map(|e| e.name.id.to_string()));
    }
    Ok(ids)
}

/// `rs-queue delete T` of a transfer this site sends: what of it is still
/// queued (its request, its chunks) goes to dead/ as deleted, its copy of
/// the data is removed, and it is dead. A dead transfer's copy (kept for
/// the operator) is removed the same way. `None` when T is no transfer
/// sent from here; else what was done.
pub fn delete(spool: &Spool, t: &str, now: Timestamp) -> Result<Option<String>> {
    if MessageId::parse(t).is_err() {
        return Ok(None);
    }
    let (state_path, data_path, _) = paths(spool, t)?;
    let _lock = super::lock(spool)?;
    let Some(mut st) = load::<Outgoing>(&state_path) else {
        return Ok(None);
    };
    if st.phase == Phase::Delivered {
        return Ok(Some(format!(
            "{t}: delivered and verified already: nothing to delete"
        )));
    }
    let why = "deleted by the operator (rs-queue delete)";
    let mut ids: Vec<&str> = st.chunks.values().map(String::as_str).collect();
    ids.push(&st.request);
    let mut buried = 0;
    {
        let mut locked = spool.lock(now)?;
        for area in Area::OUTBOUND {
            let (entries, _) = spool.scan(area)?;
            for e in entries.iter().filter(|e| ids.contains(&e.name.id.as_str())) {
                locked.bury(e, crate::spool::DeadKind::Deleted, why, now)?;
                buried += 1;
            }
        }
    }
    let had_data = data_path.exists();
    if had_data {
        durable::remove_file(&data_path)
            .map_err(|e| crate::spool::Error::io("remove", &data_path, e))?;
        durable::fsync_dir(&dir(spool, "out")?)?;
    }
    if st.phase != Phase::Dead {
        st.phase = Phase::Dead;
        st.reason = Some(why.to_string());
    }
    st.upload = None;
    st.updated = now;
    save(spool, &dir(spool, "out")?, &format!("{t}.json"), &st, now)?;
    Ok(Some(format!(
        "{t}: bulk transfer deleted: {buried} queued message(s) of it moved to dead/, {}",
        if had_data {
            "its copy of the data removed"
        } else {
            "no copy of the data was left"
        }
    )))
}

/// The data of transfer `t`, if `caller` may download it (over HTTP,
/// with ranges): the transfer is authorized, and `caller` its receiver or
/// the peer its messages go to. `Err`: the HTTP status, and why.
pub fn download(
    spool: &Spool,
    t: &str,
    caller: &Name,
) -> std::result::Result<(PathBuf, u64, String), (u16, String)> {
    let fail = |e: crate::spool::Error| (503, format!("not now: {e}"));
    if MessageId::parse(t).is_err() {
        return Err((404, format!("{t:?} names no transfer")));
    }
    let (state_path, data_path, _) = paths(spool, t).map_err(fail)?;
    let Some(st) = load::<Outgoing>(&state_path) else {
        return Err((404, format!("no transfer {t} is sent from here")));
    };
    let next = next_peer(spool, t);
    if st.receiver.as_deref() != Some(caller.as_str()) && next.as_ref() != Some(caller) {
        return Err((
            403,
            format!(
                "transfer {t} goes to {:?}: {caller} may not download it",
                st.receiver
            ),
        ));
    }
    if st.phase != Phase::Authorized {
        return Err((
            409,
            format!("transfer {t} is {:?}, not authorized", st.phase),
        ));
    }
    Ok((data_path, st.size, st.digest))
}

/// Where transfer `id` stands at its sender, as `rs-ack status` shows it
/// (`None`: not a transfer of this site's).
pub fn status(spool: &Spool, id: &str) -> Option<Value> {
    MessageId::parse(id).ok()?;
    let path = spool.root().join("bulk/out").join(format!("{id}.json"));
    let st = load::<Outgoing>(&path)?;
    let count = st.count();
    let size = st.data_size();
    let sealed = if st.sealed_at.is_some() {
        "sealed "
    } else {
        ""
    };
    let outbound = outbound_ids(spool).ok()?;
    let acknowledged = st
        .chunks
        .values()
        .filter(|c| !outbound.contains(*c))
        .count();
    let (state, summary) = match st.phase {
        Phase::Requested => (
            "bulk",
            format!(
                "{sealed}bulk transfer of {} bytes: requested ({} request(s)), awaiting authorization",
                size, st.requests
            ),
        ),
        Phase::Deferred => (
            "bulk",
            format!(
                "{sealed}bulk transfer of {} bytes: deferred {} time(s), asked again at {}: {}",
                size,
                st.deferrals,
                st.retry_at.map(|t| t.to_string()).unwrap_or_default(),
                st.reason.clone().unwrap_or_default()
            ),
        ),
        Phase::Authorized if st.upload.is_some() => (
            "bulk",
            format!(
                "{sealed}bulk transfer of {} bytes: authorized, uploading over HTTP: {} bytes held by the receiver",
                size, st.uploaded
            ),
        ),
        Phase::Authorized => (
            "bulk",
            format!(
                "{sealed}bulk transfer of {} bytes: authorized, {acknowledged} of {} chunks acknowledged",
                size,
                count.unwrap_or(0)
            ),
        ),
        Phase::Delivered => (
            "acknowledged",
            format!(
                "{sealed}bulk transfer of {} bytes: delivered, {}",
                size,
                st.reason.clone().unwrap_or_default()
            ),
        ),
        Phase::Dead => (
            "dead",
            format!(
                "{sealed}bulk transfer of {} bytes: dead: {}",
                size,
                st.reason.clone().unwrap_or_default()
            ),
        ),
    };
    Some(json!({
        "id": id, "state": state, "summary": summary,
        "bulk": {
            "phase": st.phase, "size": size, "digest": st.digest, "sealed": st.sealed_at.is_some(),
            "requests": st.requests, "deferrals": st.deferrals,
            "chunk_size": st.chunk_size, "chunks": count,
            "chunks_acknowledged": acknowledged, "chunks_sent": st.chunks_sent,
            "upload": st.upload, "uploaded": st.uploaded, "chunks_only": st.chunks_only,
            "reason": st.reason, "updated": st.updated,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bulk::Said;
    use crate::message::{Name, Qos, Routing, Source};

    fn name(s: &str) -> Name {
        Name::new("name", s).unwrap()
    }

    /// The answer `said` from component `who` to the request `request`.
    fn answer_from(
        spool: &Spool,
        who: &str,
        request: &Header,
        status: BulkStatus,
        said: Said,
        now: Timestamp,
    ) -> (Header, BulkDataResponse) {
        let mut m = crate::bulk::answer(spool, request, &request.id, status, said, now);
        m.header.routing = vec![Routing {
            component: name(who),
            received: None,
            sent: Some(now),
        }];
        let Content::BulkDataResponse(r) = m.content else {
            unreachable!("an answer")
        };
        (m.header, r)
    }

    /// Once a receiver authorized a transfer, an answer from anyone else
    /// (a forged "verified", a forged rejection) changes nothing.
    #[test]
    fn only_the_receiver_that_authorized_a_transfer_moves_it_on() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::from_secs(1_800_000_000);
        let spool = Spool::create(
            &dir.path().join("s"),
            &name("a"),
            &name("a.host"),
            None,
            now,
        )
        .unwrap();
        let request = Header {
            id: MessageId::mint(now),
            created: now,
            class: name("c"),
            subclass: name("s"),
            locator: Locator::Source(Source {
                component: name("a.host"),
                component_type: name("rs"),
                version: name("1"),
                qos: Qos {
                    expiry: None,
                    precedence: Precedence::Normal,
                    persistence: Persistence::Normal,
                },
            }),
            in_reply_to: None,
            origin_key: None,
            epoch: None,
            routing: Vec::new(),
        };
        let t = request.id.clone();
        let data = vec![7u8; 10_000];
        let mime = MimeType::octet_stream();
        prepare(
            &spool,
            &request,
            &mime,
            10_000,
            crate::bulk::sender::Source::Bytes(&mut data.as_slice()),
            now,
        )
        .unwrap();
        let state_path = spool.root().join(format!("bulk/out/{t}.json"));
        let data_path = spool.root().join(format!("bulk/out/{t}.data"));
        let state = || load::<Outgoing>(&state_path).unwrap();
        let digest = Digest::new(state().digest).unwrap();
        let log = |_: String| {};
        let ask = Said::asking(4096, Ranges::span(0, 1));
        let (h, r) = answer_from(&spool, "p.hub", &request, BulkStatus::Ok, ask, now);
        on_answer(&spool, &h, &r, now, &log).unwrap();
        assert_eq!(state().phase, Phase::Authorized);
        assert_eq!(state().receiver.as_deref(), Some("p.hub"));
        let forged = [
            (BulkStatus::Ok, Said::verified(Some(digest.clone()))),
            (BulkStatus::Rejected, Said::because(Some("forged".into()))),
        ];
        for (status, said) in forged {
            let (h, r) = answer_from(&spool, "evil.host", &request, status, said, now);
            on_answer(&spool, &h, &r, now, &log).unwrap();
            assert_eq!(state().phase, Phase::Authorized, "a forged answer moved it");
            assert!(data_path.exists());
        }
        let done = Said::verified(Some(digest));
        let (h, r) = answer_from(&spool, "p.hub", &request, BulkStatus::Ok, done, now);
        on_answer(&spool, &h, &r, now, &log).unwrap();
        assert_eq!(state().phase, Phase::Delivered);
        assert!(
            !data_path.exists(),
            "the copy goes once its receiver verified it"
        );
    }
}
