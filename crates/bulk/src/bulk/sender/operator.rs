//! What the operator sees of a transfer this site sends (`rs-ack status`,
//! `rs-queue list --area bulk`) and ends (`rs-queue delete T`).
//! Invariant: deleting buries what of the transfer is still queued in
//! `dead/` before its copy of the data is removed.

use serde_json::{json, Value};

use super::{outbound_ids, paths, Outgoing, Phase};
use crate::bulk::{dir, load, save};
use crate::message::MessageId;
use crate::spool::{durable, Area, Result, Spool};
use crate::time::Timestamp;

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
    let _lock = crate::bulk::lock(spool)?;
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
