//! The end of a transfer at its receiver: the data checked whole against
//! the digest its request announced, then delivered into the Maildir as
//! message T (or, for a group, handed on to each member in a transfer of
//! its own), once. Invariant: data that does not match is never
//! delivered; it goes to quarantine.

use std::fs::File;

use super::{paths, Incoming, Phase};
use crate::message::{stream, Digest, Header, Locator, MimeType, Name, Target};
use crate::spool::{durable, maildir, Result, Spool};
use crate::time::Timestamp;

/// Every chunk is here: the digest is checked whole; the data is delivered
/// as message `t` (unless a run killed after delivering did it already)
/// or, not matching, set aside in quarantine.
/// `known`: the data's digest, computed as it came (else it is read, unless
/// the transfer is sealed).
pub(super) fn complete(
    spool: &Spool,
    t: &str,
    st: &mut Incoming,
    request: &Header,
    known: Option<Digest>,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let (_, data_path, _) = paths(spool, t)?;
    let members = crate::bulk::group_here(request, spool.config());
    let handed_on = |m: &Name| {
        let id = crate::receive::decide::copy_id(&request.id, &Target::Component(m.clone()));
        spool
            .root()
            .join("bulk/out")
            .join(format!("{id}.json"))
            .exists()
    };
    let done = match members {
        Some(ms) => {
            ms.iter()
                .all(|m| *m == spool.config().component || handed_on(m))
                && !data_path.exists()
        }
        None => maildir::ids(spool)?.contains(t),
    };
    if done {
        // A run killed after delivering it: done already.
        let _ = durable::remove_file(&data_path);
        st.phase = Phase::Delivered;
        st.reason = None;
        return Ok(());
    }
    let mut f = match File::open(&data_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A run killed after setting a data that did not match aside.
            st.phase = Phase::Rejected;
            st.reason = Some(
                "its data is gone: set aside after a digest mismatch, or its reservation lapsed"
                    .into(),
            );
            return Ok(());
        }
        Err(e) => return Err(crate::spool::Error::io("open", &data_path, e)),
    };
    let got = match known {
        Some(d) => d,
        // Every segment of a sealed transfer was opened before it was
        // written (nothing else writes its data: it takes no upload), each
        // under the key its request carried, at its own index, the last as
        // the last: the whole is the payload as sealed, whose digest the
        // request announced. Reading it again would prove nothing more.
        None if st.sealed.is_some() => Digest::new(st.digest.clone())
            .map_err(|e| crate::spool::Error::io("read", &data_path, std::io::Error::other(e)))?,
        None => read_digest(&mut f, st, &data_path, t)?,
    };
    if got.as_str() != st.digest {
        let why = format!("the data's digest is {got}, not {} as announced", st.digest);
        let kept = spool.quarantine(&data_path, "bulk", &format!("transfer {t}: {why}"), now)?;
        log(format!(
            "{t}: bulk transfer rejected: {why} (kept as {})",
            kept.display()
        ));
        st.phase = Phase::Rejected;
        st.reason = Some(why);
        return Ok(());
    }
    if let Some(members) = members {
        fan_out(spool, t, st, request, members, &data_path, &got, now, log)?;
    } else if st.text_at.is_some() {
        // The file is the message (made durable as its chunks came):
        // delivered by its rename.
        maildir::deliver_file(
            spool,
            &crate::bulk::transfer_id(t, &data_path)?,
            &data_path,
            now,
        )?;
    } else {
        let mut header = request.clone();
        header.id = crate::bulk::transfer_id(t, &data_path)?;
        let mime = MimeType::new(st.mime.clone()).unwrap_or_else(|_| MimeType::octet_stream());
        deliver_copy(spool, header, &mime, st.data_size(), &data_path, now)?;
    }
    let _ = durable::remove_file(&data_path);
    st.phase = Phase::Delivered;
    st.reason = None;
    log(format!(
        "{t}: bulk transfer of {} bytes verified ({got}) and delivered",
        st.data_size()
    ));
    Ok(())
}

/// The digest of transfer `st`'s data as its file holds it (in the clear,
/// or as the text of the message it is laid out as).
fn read_digest(
    f: &mut File,
    st: &Incoming,
    data_path: &std::path::Path,
    t: &str,
) -> Result<Digest> {
    struct Hashing(sha2::Sha256, crate::progress::Progress);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            sha2::Digest::update(&mut self.0, buf);
            self.1.add(buf.len() as u64);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let progress = crate::progress::Progress::new(format!("{t}: verifying"), st.data_size());
    let mut hashing = Hashing(<sha2::Sha256 as sha2::Digest>::new(), progress);
    if st.text_at.is_some() {
        let layout = stream::decode(f, &mut hashing).map_err(|e| {
            crate::spool::Error::io("read", data_path, std::io::Error::other(e.to_string()))
        })?;
        if layout.size != st.data_size() {
            return Err(crate::spool::Error::io(
                "read",
                data_path,
                std::io::Error::other("not the size authorized"),
            ));
        }
    } else {
        std::io::copy(f, &mut hashing)
            .map_err(|e| crate::spool::Error::io("read", data_path, e))?;
    }
    Ok(Digest::of(hashing.0))
}

/// The data of group transfer `t`, verified here, goes on to each member
/// of the group in a transfer of its own (its ID derived from `t` and the
/// member, its data a link to this one), or into this site's Maildir when
/// it is a member itself. Each member's transfer keeps its own state
/// (`bulk/out/`): refused, deferred and retried on its own; the data's
/// last link goes with the last member's delivery.
#[allow(clippy::too_many_arguments)]
fn fan_out(
    spool: &Spool,
    t: &str,
    st: &Incoming,
    request: &Header,
    members: &[Name],
    data_path: &std::path::Path,
    digest: &Digest,
    now: Timestamp,
    log: &dyn Fn(String),
) -> Result<()> {
    let me = &spool.config().component;
    let mime = MimeType::new(st.mime.clone()).unwrap_or_else(|_| MimeType::octet_stream());
    for m in members {
        let target = Target::Component(m.clone());
        let mut header = request.clone();
        header.id = crate::receive::decide::copy_id(&request.id, &target);
        if let Locator::Destination(d) = &mut header.locator {
            d.targets = vec![target];
        }
        if m == me {
            deliver_copy(spool, header, &mime, st.data_size(), data_path, now)?;
            continue;
        }
        // The member's transfer is this site's: its messages start their
        // routing here, and the member answers this site.
        header.routing.clear();
        let member = crate::bulk::sender::Member {
            header: &header,
            report_to: request.origin(),
            mime: &mime,
            digest,
            data: data_path,
        };
        crate::bulk::sender::start_linked(spool, member, now, log)?;
    }
    log(format!(
        "{t}: bulk transfer to group of {} members verified here and handed on to each",
        members.len()
    ));
    Ok(())
}

/// Delivers the data at `data_path` as the message with header `header`
/// (a transfer's, or this site's copy of a group's), unless it is here.
fn deliver_copy(
    spool: &Spool,
    header: Header,
    mime: &MimeType,
    size: u64,
    data_path: &std::path::Path,
    now: Timestamp,
) -> Result<()> {
    if maildir::ids(spool)?.contains(header.id.as_str()) {
        return Ok(());
    }
    let (path, mime) = (data_path.to_path_buf(), mime.clone());
    let id = header.id.clone();
    let write: maildir::Writer<'_> = Box::new(move |out| {
        let mut f = File::open(&path)?;
        stream::write_data_envelope(&header, &mime, size, &mut f, out)
    });
    maildir::deliver(spool, &[(id, write)], now)?;
    Ok(())
}
