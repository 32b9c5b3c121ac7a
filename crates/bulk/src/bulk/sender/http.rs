//! A transfer's data over HTTP: the upload (tus) to the next hop when the
//! receiver offers one and the next hop is an HTTP route, and the
//! download a receiver or the next hop may make. Invariant: only the
//! transfer's receiver, or the peer its messages go to, may download its
//! data, and only while it is authorized.

use std::path::PathBuf;

use super::{first_request, paths, queue_asked, Outgoing, Phase};
use crate::bulk::{dir, load, save};
use crate::message::{MessageId, Name};
use crate::spool::{Result, Spool};
use crate::time::Timestamp;

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
    let _lock = crate::bulk::lock(spool)?;
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
    let _lock = crate::bulk::lock(spool)?;
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

/// The data of transfer `t`, if `caller` may download it (over HTTP,
/// with ranges): the transfer is authorized, and `caller` its receiver or
/// the peer its messages go to. `Err`: the HTTP status, and why.
pub fn download(
    spool: &Spool,
    t: &str,
    caller: &Name,
) -> std::result::Result<(PathBuf, u64, String), (u16, String)> {
    let fail = |e: crate::spool::Error| (503, format!("not now: {}", e.for_peer()));
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
