//! A hop on a transfer's path (a relay): it may refuse a request (its
//! `[bulk] max_size`, its disk), answering it itself so that the request
//! goes no further; else it reserves the space and passes the request on.
//! Its reservation is granted when the receiver's `ok` passes back through
//! it (the lease chain: the sender hears `ok` only after every hop granted
//! its own), ends with the last answer, and lapses after `[bulk]
//! reservation` without one.

use serde::{Deserialize, Serialize};

use super::{answer, dir, load, save, transfers, Said};
use crate::message::{BulkDataRequest, BulkDataResponse, BulkStatus, Message, MessageId, Name};
use crate::spool::{durable, Result, Spool};
use crate::time::Timestamp;

/// A reservation at this hop (`bulk/hop/T.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reservation {
    pub size: u64,
    pub granted: bool,
    pub expires: Timestamp,
    /// The component the transfer comes from.
    #[serde(default)]
    pub origin: Option<String>,
    /// The neighbour the request came from.
    #[serde(default)]
    pub from: Option<String>,
    /// The peer the request went on to.
    #[serde(default)]
    pub to: Option<String>,
}

/// The bytes reserved by live reservations.
fn reserved(spool: &Spool, now: Timestamp) -> Result<u64> {
    Ok(transfers(spool, "hop")?
        .into_iter()
        .filter_map(|(_, p)| load::<Reservation>(&p))
        .filter(|r| r.expires >= now)
        .map(|r| r.size)
        .sum())
}

/// A request passing through: refused here, or reserved for and passed on.
pub fn on_request(
    spool: &Spool,
    m: &Message,
    r: &BulkDataRequest,
    to: &Name,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let t = r.transfer.as_ref().unwrap_or(&m.header.id).clone();
    let ts = t.to_string();
    let hop_dir = dir(spool, "hop")?;
    let path = hop_dir.join(format!("{ts}.json"));
    let config = spool.config();
    let me = &config.component;
    let refusal = if load::<Reservation>(&path).is_some_and(|x| x.expires >= now) {
        None
    } else if let Some(max) = config.bulk.max_size.filter(|max| r.size > max.0) {
        Some((
            BulkStatus::Rejected,
            format!(
                "{} bytes is more than {me} takes ([bulk] max_size {max})",
                r.size
            ),
        ))
    } else if let Some(why) = over_throttle(spool, r.size, now) {
        Some((BulkStatus::Deferred, why))
    } else {
        let free = fs2::available_space(&hop_dir).unwrap_or(0);
        let taken = reserved(spool, now)?;
        let min_free = config.spool.min_free.0;
        (free.saturating_sub(taken) < r.size.saturating_add(min_free)).then(|| {
            (
                BulkStatus::Deferred,
                format!(
                    "{me} has {} free, {} of it reserved for other transfers",
                    crate::config::Size(free),
                    crate::config::Size(taken)
                ),
            )
        })
    };
    if let Some((status, why)) = refusal {
        log(format!(
            "{ts}: bulk request {} {status} here: {why}",
            m.header.id
        ));
        let said = Said::because(Some(why));
        let a = answer(spool, &m.header, &t, status, said, now);
        crate::custody::pass_on(spool, vec![a], now, log)?;
        return Ok(());
    }
    let res = Reservation {
        size: r.size,
        granted: false,
        expires: now.saturating_add(config.bulk.reservation),
        origin: m.header.origin().map(|o| o.to_string()),
        from: m
            .header
            .routing
            .iter()
            .rev()
            .map(|x| &x.component)
            .find(|c| *c != me)
            .map(|c| c.to_string()),
        to: Some(to.to_string()),
    };
    save(spool, &hop_dir, &format!("{ts}.json"), &res, now)?;
    crate::custody::pass_on(spool, vec![m.clone()], now, log)?;
    Ok(())
}

/// Why this relay's throttle (`[throttle] max_bytes_per_hour`, `_per_day`)
/// cannot take `size` more bytes now, if it cannot.
fn over_throttle(spool: &Spool, size: u64, now: Timestamp) -> Option<String> {
    let t = &spool.config().throttle;
    let sent = spool
        .throttle_sent()
        .at(now, crate::time::local_offset_secs());
    let me = &spool.config().component;
    [
        (t.max_bytes_per_hour, sent.hour_bytes, "max_bytes_per_hour", "this hour"),
        (t.max_bytes_per_day, sent.day_bytes, "max_bytes_per_day", "today"),
    ]
    .into_iter()
    .find_map(|(max, sent, key, when)| {
        let max = max?;
        (sent.saturating_add(size) > max.0).then(|| {
            format!(
                "{me} sent {} {when} and sends at most {max} ([throttle] {key}): no room for {size} bytes now",
                crate::config::Size(sent)
            )
        })
    })
}

/// An answer passing back through: grants the reservation (`ok` asking
/// for chunks) or ends it (the last answer, `deferred`, `rejected`).
pub fn on_answer(
    spool: &Spool,
    m: &Message,
    r: &BulkDataResponse,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let t = r.transfer.as_ref().unwrap_or(&r.answers).to_string();
    let hop_dir = dir(spool, "hop")?;
    let path = hop_dir.join(format!("{t}.json"));
    if let Some(mut res) = load::<Reservation>(&path) {
        if r.status == BulkStatus::Ok && r.verified.is_none() {
            res.granted = true;
            res.expires = now.saturating_add(spool.config().bulk.reservation);
            save(spool, &hop_dir, &format!("{t}.json"), &res, now)?;
        } else {
            durable::remove_file(&path).map_err(|e| crate::spool::Error::io("remove", &path, e))?;
            durable::fsync_dir(&hop_dir)?;
        }
    }
    crate::custody::pass_on(spool, vec![m.clone()], now, log)?;
    Ok(())
}

/// Lets lapsed reservations go.
pub fn tick(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<()> {
    let mut gone = false;
    for (t, path) in transfers(spool, "hop")? {
        if load::<Reservation>(&path).is_some_and(|r| r.expires < now) {
            log(format!(
                "{t}: bulk reservation lapsed here: its space is free again"
            ));
            durable::remove_file(&path).map_err(|e| crate::spool::Error::io("remove", &path, e))?;
            gone = true;
        }
    }
    if gone {
        durable::fsync_dir(&dir(spool, "hop")?)?;
    }
    Ok(())
}

/// Where an upload of transfer `t` from `caller` goes on from this hop:
/// the next peer and its HTTP route. `Err`: the HTTP status and why (404
/// when this hop does not carry the transfer, or carries it on by
/// messages).
pub fn upload_route(
    spool: &Spool,
    t: &str,
    caller: &Name,
    now: Timestamp,
) -> std::result::Result<(Name, crate::config::HttpRoute), (u16, String)> {
    if MessageId::parse(t).is_err() {
        return Err((404, format!("{t:?} names no transfer")));
    }
    let path = spool.root().join("bulk/hop").join(format!("{t}.json"));
    let Some(res) = load::<Reservation>(&path).filter(|r| r.expires >= now) else {
        return Err((
            404,
            format!("no transfer {t} is authorized here: its bulk request comes first"),
        ));
    };
    let caller_s = Some(caller.as_str());
    if res.origin.as_deref() != caller_s && res.from.as_deref() != caller_s {
        return Err((
            403,
            format!(
                "transfer {t} comes from {} through {}: {caller} may not upload it",
                res.origin.as_deref().unwrap_or("the provider"),
                res.from.as_deref().unwrap_or("no neighbour")
            ),
        ));
    }
    if !res.granted {
        return Err((409, format!("transfer {t} is not authorized yet")));
    }
    let to = res.to.as_deref().unwrap_or("");
    match spool.config().peer(to).and_then(|p| p.routes.first()) {
        Some(crate::config::Route::Http(h)) => Ok((
            Name::new("component", to).map_err(|e| (404, e.to_string()))?,
            h.clone(),
        )),
        _ => Err((
            404,
            format!("transfer {t} goes on from here to {to} by messages: send its chunks"),
        )),
    }
}
