//! The chunks a receiver asked for, queued as messages: each read from
//! the copy of the data (with its digest, or as sealed segments that
//! authenticate themselves), written, made durable with its group, then
//! admitted to the queue with precedence `bulk` and persistence `high`.
//! Invariant: a chunk is recorded as on its way only once admitted.

use std::io::Read;
use std::os::unix::fs::FileExt;

use super::{first_request, paths, Outgoing};
use crate::bulk::{ChunkInfo, Ranges};
use crate::message::{stream, Header, Locator, MessageId, MimeType, Persistence, Precedence};
use crate::spool::{durable, Admission, Result, Spool};
use crate::time::Timestamp;

/// Chunks written before they are made durable together.
const QUEUED_AT_ONCE: usize = 64;

/// Queues every chunk asked for that is not queued yet.
pub(super) fn queue_asked(
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
    let transfer = crate::bulk::transfer_id(t, &data_path)?;
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
            digest: sealed_at.is_none().then(|| crate::bulk::digest_of(buf)),
        };
        let header = chunk_header(&model, &transfer, now);
        let mime = MimeType::new(info.mime()).map_err(|e| {
            crate::spool::Error::io("name", &data_path, std::io::Error::other(e.to_string()))
        })?;
        let mut staged = spool.stage(now)?;
        let path = staged.path().to_path_buf();
        let mut source: Box<dyn Read + '_> = match sealed_at {
            Some(_) => Box::new(Range {
                file: &data,
                at,
                left: len as u64,
            }),
            None => Box::new(&buf[..]),
        };
        stream::write_data_envelope(&header, &mime, len as u64, &mut source, &mut staged)
            .map_err(|e| crate::spool::Error::io("write", &path, e))?;
        staged.start_writeback();
        let name = crate::custody::entry_name(&header, staged.size());
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

/// `left` bytes of a file from `at`, read as a stream (whatever the
/// file's offset).
pub(crate) struct Range<'a> {
    pub file: &'a std::fs::File,
    pub at: u64,
    pub left: u64,
}

impl Read for Range<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the data is shorter than the transfer",
            ));
        }
        self.at += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}
