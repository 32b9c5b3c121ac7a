//! The sending side of a transfer: the copy of the data, the request, and
//! what the receiver's answers make of them (see the module above).
//!
//! This module owns a transfer's state at its sender (`bulk/out/T.json`,
//! [`Outgoing`]) and what moves it on: the answers ([`on_answer`]) and
//! time ([`tick`]). [`prepare`] starts a transfer (the copy of the data,
//! the request), [`chunks`] queues the chunks asked for, [`http`] serves
//! the data over HTTP (an upload, a download), and [`operator`] is what
//! `rs-ack status` and `rs-queue delete` see and do. Invariant: only the
//! receiver that authorized a transfer moves it on from then; the copy of
//! the data goes only once the receiver verified it (or the operator
//! deletes it).

mod chunks;
mod http;
mod operator;
mod prepare;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{dir, load, save, transfers, Ranges};
use crate::message::{
    envelope, BulkDataResponse, BulkStatus, Content, Header, Message, MessageId, Name,
};
use crate::spool::{durable, Admission, Area, Result, Spool};
use crate::time::Timestamp;

use chunks::queue_asked;
pub(crate) use chunks::Range;
pub use http::{download, upload_refused, upload_route, uploaded};
pub use operator::{delete, status};
pub use prepare::{can_send, prepare, room_for, start_linked, waiting_bytes, Member, Source};

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
    crate::outbound::untold::tell_origin(spool, &header, &learned, &why, now)?;
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
    let name = crate::custody::entry_name(&header, staged.size());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bulk::Said;
    use crate::message::{
        Digest, Locator, MimeType, Name, Persistence, Precedence, Qos, Routing, Source,
    };

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
