//! The receiving side of a transfer: authorization (the space reserved),
//! the chunks written in place as they come, the pacing, the digest
//! checked whole, and the delivery of the data as one message, once.
//!
//! This module owns a transfer's state at its receiver (`bulk/in/T.json`,
//! [`Incoming`]) and the steps that move it on: [`request`] authorizes
//! (the space allocated, the first window asked for), [`chunks`] writes
//! chunks that come as messages, [`upload`] writes pieces that come over
//! HTTP (tus), and [`deliver`] checks the whole and delivers it, once.
//! Invariant: the state is changed only under `bulk/.lock`, and only after
//! the data it records is durable; what the sender is told is said before
//! it is recorded (a run killed in between says it again).

mod chunks;
mod deliver;
mod request;
mod upload;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{answer, dir, load, save, transfers, Ranges, Said};
use crate::message::{envelope, BulkStatus, Digest, Header, Message, MessageId};
use crate::spool::{durable, Result, Spool};
use crate::time::Timestamp;

pub use chunks::{ChunkData, Chunks, Refusal};
pub use request::on_request;
pub use upload::{
    upload_patch, upload_status, upload_terminate, Algorithm, Patch, Refused, Upload,
};

/// The largest chunk (a chunk travels as one message).
pub(crate) const MAX_CHUNK: u64 = 16 << 20;

/// Where a transfer stands at its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Receiving,
    Delivered,
    Rejected,
}

/// The state of one transfer (`bulk/in/T.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Incoming {
    pub phase: Phase,
    pub size: u64,
    pub digest: String,
    pub mime: String,
    /// The component that sends it (none for a back-channel transfer).
    pub origin: Option<String>,
    pub chunk_size: u64,
    pub have: String,
    pub asked: String,
    /// The reservation lapses then, unless a chunk comes first.
    pub expires: Timestamp,
    pub reason: Option<String>,
    pub updated: Timestamp,
    /// The bytes from the start written and made durable by uploads over
    /// HTTP (tus), whatever the chunks held say.
    #[serde(default)]
    pub uploaded: u64,
    /// A sealed transfer: its header (base64), opened with `[bulk]
    /// identity`. `size` and the chunks are then the sealed payload's.
    #[serde(default)]
    pub sealed: Option<String>,
    /// A sealed transfer: the data's size (in the clear).
    #[serde(default)]
    pub data_size: Option<u64>,
    /// The data file is laid out as the message it is delivered as (the
    /// data's base64 text starts here): each chunk, opened, is written as
    /// its text where it belongs, and delivery is a rename.
    #[serde(default)]
    pub text_at: Option<u64>,
    /// The data's digest so far, while its chunks come in order from the
    /// first (then the whole is not read again to check it).
    #[serde(default)]
    pub hashed: Option<Hashed>,
}

/// A digest in progress: the next chunk it takes, and its state (base64).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hashed {
    pub next: u64,
    pub state: String,
}

impl Hashed {
    fn of(h: &sha2::Sha256, next: u64) -> Hashed {
        use sha2::digest::common::hazmat::SerializableState;
        let state =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h.serialize());
        Hashed { next, state }
    }

    /// The digest again; `None` from a state this build cannot read.
    fn hasher(&self) -> Option<(sha2::Sha256, u64)> {
        use sha2::digest::common::hazmat::{SerializableState, SerializedState};
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &self.state).ok()?;
        let state = SerializedState::<sha2::Sha256>::try_from(&bytes[..]).ok()?;
        Some((sha2::Sha256::deserialize(&state).ok()?, self.next))
    }
}

impl Incoming {
    fn count(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }

    /// The data's size, as delivered.
    fn data_size(&self) -> u64 {
        self.data_size.unwrap_or(self.size)
    }

    /// The key that opens a sealed transfer's chunks.
    fn key(&self, spool: &Spool) -> std::result::Result<Option<super::seal::Key>, super::Error> {
        let Some(h) = &self.sealed else {
            return Ok(None);
        };
        let header = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, h)
            .map_err(super::Error::SealingHeader)?;
        open_sealed(spool, &header).map(Some)
    }

    /// The bytes from the start held: uploaded, or in the chunks held
    /// from the first on (the offset an upload resumes from).
    fn offset(&self) -> u64 {
        let have = Ranges::parse(&self.have, self.count()).unwrap_or_default();
        let first_missing = (0..self.count())
            .find(|i| !have.contains(*i))
            .unwrap_or(self.count());
        (first_missing * self.chunk_size)
            .max(self.uploaded)
            .min(self.size)
    }

    /// Records that the bytes before `offset` are here: the chunks they
    /// cover whole are held.
    fn uploaded_to(&mut self, offset: u64) {
        self.uploaded = self.uploaded.max(offset);
        self.hashed = None;
        let count = self.count();
        let mut have = Ranges::parse(&self.have, count).unwrap_or_default();
        let whole = if self.uploaded >= self.size {
            count
        } else {
            self.uploaded / self.chunk_size
        };
        for i in 0..whole {
            have.insert(i);
        }
        self.have = have.to_string();
    }
}

fn paths(spool: &Spool, t: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let d = dir(spool, "in")?;
    Ok((
        d.join(format!("{t}.json")),
        d.join(format!("{t}.data")),
        d.join(format!("{t}.request")),
    ))
}

fn save_state(spool: &Spool, t: &str, st: &Incoming, now: Timestamp) -> Result<()> {
    save(spool, &dir(spool, "in")?, &format!("{t}.json"), st, now)
}

/// Opens a sealing header with this site's `[bulk] identity`.
fn open_sealed(
    spool: &Spool,
    header: &[u8],
) -> std::result::Result<super::seal::Key, super::Error> {
    let Some(path) = &spool.config().bulk.identity else {
        return Err(super::Error::NoIdentity {
            component: spool.config().component.to_string(),
        });
    };
    let ids = super::seal::Identity::read(path)?;
    Ok(super::seal::open(header, &ids)?)
}

/// The request that authorized transfer `t`.
fn request_of(spool: &Spool, t: &str) -> Result<Header> {
    let (_, _, path) = paths(spool, t)?;
    let bytes = std::fs::read(&path).map_err(|e| crate::spool::Error::io("read", &path, e))?;
    envelope::parse(&bytes)
        .ok()
        .and_then(|ms| ms.into_iter().next())
        .map(|m| m.header)
        .ok_or_else(|| {
            crate::spool::Error::io("parse", &path, std::io::Error::other("not a request"))
        })
}

fn send(spool: &Spool, m: Message, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    crate::custody::pass_on(spool, vec![m], now, log).map(|_| ())
}

/// Answers the request with header `request` of transfer `t`: queued
/// toward the sender, durable on return.
fn tell(
    spool: &Spool,
    request: &Header,
    t: &MessageId,
    status: BulkStatus,
    said: Said,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    send(
        spool,
        answer(spool, request, t, status, said, now),
        now,
        log,
    )
}

/// What is still asked for and not here (or, when all asked is here, the
/// next window).
fn still_asked(st: &Incoming) -> Ranges {
    let count = st.count();
    let have = Ranges::parse(&st.have, count).unwrap_or_default();
    let asked = Ranges::parse(&st.asked, count).unwrap_or_default();
    let missing: Vec<u64> = asked.iter().filter(|i| !have.contains(*i)).collect();
    if missing.is_empty() {
        have.missing(count, window_of(st))
    } else {
        let mut r = Ranges::default();
        for i in missing {
            r.insert(i);
        }
        r
    }
}

fn window_of(st: &Incoming) -> u64 {
    Ranges::parse(&st.asked, st.count()).map_or(1, |a| a.len().max(1))
}

/// Records transfer `t` after data came (durable already): when all of it
/// is here, checks it whole, delivers it and says so; else, with
/// `ask_next`, asks for the next window once the asked chunks are here.
/// `gone`: the data file is gone (a run killed after delivering it).
#[allow(clippy::too_many_arguments)]
fn settle(
    spool: &Spool,
    t: &str,
    st: &mut Incoming,
    gone: bool,
    ask_next: bool,
    known: Option<Digest>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let config = &spool.config().bulk;
    let (_, data_path, _) = paths(spool, t)?;
    st.expires = now.saturating_add(config.reservation);
    st.updated = now;
    let count = st.count();
    let have = Ranges::parse(&st.have, count).unwrap_or_default();
    let request = request_of(spool, t)?;
    let transfer = super::transfer_id(t, &data_path)?;
    if have.len() == count || st.uploaded >= st.size || gone {
        // Said before it is recorded: a run killed in between says it
        // again (the sender takes the second as the first).
        deliver::complete(spool, t, st, &request, known, now, log)?;
        let said = match st.phase {
            Phase::Delivered => Said::verified(Digest::new(st.digest.clone()).ok()),
            _ => Said::because(st.reason.clone()),
        };
        let status = if st.phase == Phase::Delivered {
            BulkStatus::Ok
        } else {
            BulkStatus::Rejected
        };
        tell(spool, &request, &transfer, status, said, now, log)?;
        return save_state(spool, t, st, now);
    }
    let asked = Ranges::parse(&st.asked, count).unwrap_or_default();
    if ask_next && have.covers(&asked) {
        let next = have.missing(count, config.window as u64);
        st.asked = next.to_string();
        let said = Said::asking(st.chunk_size, next).sealed(st.sealed.is_some());
        tell(spool, &request, &transfer, BulkStatus::Ok, said, now, log)?;
    }
    save_state(spool, t, st, now)
}

/// Lets lapsed reservations go (the sender is told), and asks again for
/// chunks that have not come for half of `[bulk] reservation`.
pub fn tick(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    let config = &spool.config().bulk;
    for (t, path) in transfers(spool, "in")? {
        let Some(mut st) = load::<Incoming>(&path) else {
            continue;
        };
        if st.phase != Phase::Receiving {
            continue;
        }
        let Ok(request) = request_of(spool, &t) else {
            continue;
        };
        let Ok(transfer) = MessageId::parse(&t) else {
            continue;
        };
        if now > st.expires {
            let (_, data_path, _) = paths(spool, &t)?;
            let _ = durable::remove_file(&data_path);
            let why = format!(
                "the reservation lapsed at {} with no chunk since",
                st.expires
            );
            log(format!("{t}: bulk transfer given up here: {why}"));
            st.phase = Phase::Rejected;
            st.reason = Some(why.clone());
            st.updated = now;
            save_state(spool, &t, &st, now)?;
            let said = Said::because(Some(why));
            tell(
                spool,
                &request,
                &transfer,
                BulkStatus::Rejected,
                said,
                now,
                log,
            )?;
        } else if now > st.updated.saturating_add(config.reservation / 2) {
            let ask = still_asked(&st);
            log(format!("{t}: chunks {ask} not here yet: asked again"));
            st.updated = now;
            let said = Said::asking(st.chunk_size, ask).sealed(st.sealed.is_some());
            tell(spool, &request, &transfer, BulkStatus::Ok, said, now, log)?;
            save_state(spool, &t, &st, now)?;
        }
    }
    Ok(())
}

/// Where transfer `t` (its state at `path`) stands here, for listings.
pub fn status(t: &str, path: &std::path::Path) -> Option<serde_json::Value> {
    let st = load::<Incoming>(path)?;
    let count = st.count();
    let held = Ranges::parse(&st.have, count).map_or(0, |h| h.len());
    let sealed = if st.sealed.is_some() { "sealed " } else { "" };
    let summary = match st.phase {
        Phase::Receiving => format!(
            "{}bulk transfer of {} bytes from {}: authorized, {held} of {count} chunks held, chunks {} asked for; lapses at {}",
            sealed,
            st.data_size(),
            st.origin.as_deref().unwrap_or("the provider"),
            st.asked,
            st.expires
        ),
        Phase::Delivered => format!("{sealed}bulk transfer of {} bytes: verified ({}) and delivered", st.data_size(), st.digest),
        Phase::Rejected => format!(
            "{sealed}bulk transfer of {} bytes: rejected: {}",
            st.data_size(),
            st.reason.clone().unwrap_or_default()
        ),
    };
    Some(serde_json::json!({
        "id": t, "direction": "in", "state": st.phase, "summary": summary,
        "bulk": {
            "phase": st.phase, "size": st.data_size(), "digest": st.digest, "origin": st.origin,
            "sealed": st.sealed.is_some(),
            "chunk_size": st.chunk_size, "chunks": count, "chunks_held": held,
            "asked": st.asked, "expires": st.expires, "reason": st.reason, "updated": st.updated,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A digest kept in a state file between chunks goes on where it
    /// stopped, at any length (a partial block included).
    #[test]
    fn a_digest_in_progress_survives_its_state_file() {
        use sha2::Digest as _;
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for cut in [0, 1, 63, 64, 65, 4096, 9_999, 10_000] {
            let mut h = sha2::Sha256::new();
            h.update(&data[..cut]);
            let kept = serde_json::to_string(&Hashed::of(&h, 3)).unwrap();
            let back: Hashed = serde_json::from_str(&kept).unwrap();
            let (mut h, next) = back.hasher().expect("read back");
            assert_eq!(next, 3);
            h.update(&data[cut..]);
            assert_eq!(Digest::of(h), crate::bulk::digest_of(&data), "cut at {cut}");
        }
        let junk = Hashed {
            next: 0,
            state: "zz".into(),
        };
        assert!(junk.hasher().is_none());
        let short = Hashed {
            next: 0,
            state: "AP8=".into(),
        };
        assert!(short.hasher().is_none());
    }
}
