//! The back-channel in the shared database: what the provider's relays
//! hold for the sites that poll them, whichever instance a poll reaches.
//!
//! A message waits in `rs_outbox` under the peer that leads to its
//! destination. A poll takes what is due for its peer under a row lease
//! (`FOR UPDATE SKIP LOCKED`, then `leased_until`): two polls at once,
//! on two instances, never take the same row. Handed out, a row stays
//! (`sent_to`, due again after the peer's `ack_timeout`, doubling up to
//! `retry_cap`) until the peer acknowledges it: then it is deleted
//! ([`super::pg::PgShared`]'s `apply_acks`). The acknowledgements owed to
//! a peer (`rs_acks`) are taken the same way and deleted once carried.

use std::path::PathBuf;

use super::{pg_error, Db};
use crate::config::Peer;
use crate::message::{envelope, Precedence};
use crate::outbound::{Outbox, Report};
use crate::queue::retry;
use crate::route::{self, Learned, NextHop};
use crate::spool::{Area, Result, Spool};
use crate::time::{Clock, Timestamp};
use crate::transport::{dir, Cargo, Outcome, Outgoing};

/// How many rows one poll looks at.
const MAX_ROWS: i64 = 1000;

/// This process, as the holder of the rows it leases.
fn holder() -> String {
    use std::sync::OnceLock;
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER
        .get_or_init(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default();
            let mut nonce = [0u8; 4];
            let _ = getrandom::fill(&mut nonce);
            format!(
                "{host}:{}:{:08x}",
                std::process::id(),
                u32::from_be_bytes(nonce)
            )
        })
        .clone()
}

/// A row handed to the runner: its ID and the file its envelope was
/// written to.
struct Chosen {
    id: String,
    size: u64,
    attempts: i32,
}

/// [`Outbox`] over `rs_outbox` and `rs_acks`.
pub struct PgOutbox<'s> {
    spool: &'s Spool,
    db: Db,
    holder: String,
    chosen: Vec<Chosen>,
    /// The lease taken, as `leased_until`.
    until: i64,
    /// Rows of `rs_acks` handed to the runner: (seq, file).
    acks: Vec<(i64, PathBuf)>,
    /// The files written for the transport, removed when this is dropped.
    files: Vec<PathBuf>,
}

impl<'s> PgOutbox<'s> {
    pub fn open(spool: &'s Spool) -> Result<PgOutbox<'s>> {
        Ok(PgOutbox {
            spool,
            db: Db::connect(spool.config())?,
            holder: holder(),
            chosen: Vec::new(),
            until: 0,
            acks: Vec::new(),
            files: Vec::new(),
        })
    }

    fn lease(&self) -> std::time::Duration {
        self.spool.config().lease.transmit_max
    }

    /// A file in tmp/ holding `bytes`, for the transport to read.
    fn staged(&mut self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self
            .spool
            .dir(Area::Tmp)
            .join(format!("db-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).map_err(|e| crate::spool::Error::io("write", &path, e))?;
        self.files.push(path.clone());
        Ok(path)
    }
}

impl Drop for PgOutbox<'_> {
    fn drop(&mut self) {
        let _ = self.release();
        // Acknowledgements taken and not carried are free for the next poll.
        let seqs: Vec<i64> = self.acks.drain(..).map(|(s, _)| s).collect();
        if !seqs.is_empty() {
            let _ = self.db.client().execute(
                "UPDATE rs_acks SET leased_until = 0 WHERE seq = ANY($1)",
                &[&seqs],
            );
        }
        for p in self.files.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Outbox for PgOutbox<'_> {
    fn acks(&mut self, peer: &Peer, now: Timestamp) -> Result<Vec<Outgoing>> {
        let until = now.saturating_add(self.lease()).as_micros();
        let rows = self
            .db
            .client()
            .query(
                "UPDATE rs_acks SET leased_until = $3 WHERE seq IN (
                     SELECT seq FROM rs_acks WHERE peer = $1 AND leased_until < $2
                     ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED)
                 RETURNING seq, envelope",
                &[&peer.id.as_str(), &now.as_micros(), &until],
            )
            .map_err(|e| pg_error("taking acknowledgements owed", e))?;
        let mut out = Vec::new();
        for r in rows {
            let seq: i64 = r.get(0);
            let bytes: &[u8] = r.get(1);
            let path = self.staged(&format!("ack-{seq}"), bytes)?;
            self.acks.push((seq, path.clone()));
            out.push(Outgoing {
                wire_name: format!("ack-db-{seq:016}"),
                path,
                cargo: Cargo::Acks,
            });
        }
        Ok(out)
    }

    fn acks_taken(&mut self, taken: &[&Outgoing]) -> Result<()> {
        let seqs: Vec<i64> = self
            .acks
            .iter()
            .filter(|(_, p)| taken.iter().any(|t| t.path == *p))
            .map(|(s, _)| *s)
            .collect();
        if !seqs.is_empty() {
            self.db
                .client()
                .execute("DELETE FROM rs_acks WHERE seq = ANY($1)", &[&seqs])
                .map_err(|e| pg_error("forgetting acknowledgements carried", e))?;
        }
        self.acks.retain(|(s, _)| !seqs.contains(s));
        Ok(())
    }

    fn take_due(
        &mut self,
        peer: &Peer,
        clock: &Clock,
        report: &mut Report,
        log: &dyn Fn(String),
    ) -> Result<Vec<Outgoing>> {
        let now = clock.now().as_micros();
        let config = self.spool.config();
        let until = clock.now().saturating_add(self.lease()).as_micros();
        let client = self.db.client();
        // What expired waiting is dead, with the reason.
        let expired = client
            .query(
                "WITH gone AS (
                     DELETE FROM rs_outbox WHERE peer = $1 AND expiry < $2
                     RETURNING id, peer, envelope)
                 INSERT INTO rs_dead (id, peer, reason, died, envelope)
                 SELECT id, peer, 'expired before it was acknowledged', $2, envelope FROM gone
                 ON CONFLICT (id) DO NOTHING RETURNING id",
                &[&peer.id.as_str(), &now],
            )
            .map_err(|e| pg_error("burying expired messages", e))?;
        for r in &expired {
            log(format!(
                "{} for {} expired before it was acknowledged: moved to rs_dead",
                r.get::<_, &str>(0),
                peer.id
            ));
        }
        report.expired += expired.len();
        // Candidates in send order, each row locked by this transaction
        // only; rows another poll holds are passed over.
        let mut tx = client
            .transaction()
            .map_err(|e| pg_error("taking back-channel messages", e))?;
        let rows = tx
            .query(
                "SELECT id, octet_length(envelope), attempts FROM rs_outbox
                 WHERE peer = $1 AND due <= $2 AND leased_until < $2
                 ORDER BY rank, arrival LIMIT $3 FOR UPDATE SKIP LOCKED",
                &[&peer.id.as_str(), &now, &MAX_ROWS],
            )
            .map_err(|e| pg_error("taking back-channel messages", e))?;
        let limit = config.http.max_reply.0;
        let mut total = 0u64;
        let mut ids: Vec<String> = Vec::new();
        for r in &rows {
            let size = r.get::<_, i32>(1) as u64;
            if total > 0 && total + size > limit {
                break;
            }
            total += size;
            ids.push(r.get(0));
        }
        let taken = tx
            .query(
                "UPDATE rs_outbox SET leased_until = $2, holder = $3 WHERE id = ANY($1)
                 RETURNING id, envelope, rank, arrival, attempts",
                &[&ids, &until, &self.holder],
            )
            .map_err(|e| pg_error("leasing back-channel messages", e))?;
        tx.commit()
            .map_err(|e| pg_error("leasing back-channel messages", e))?;
        self.until = until;
        let mut taken: Vec<_> = taken
            .into_iter()
            .map(|r| {
                (
                    r.get::<_, i16>(2),
                    r.get::<_, i64>(3),
                    r.get::<_, String>(0),
                    r.get::<_, Vec<u8>>(1),
                    r.get::<_, i32>(4),
                )
            })
            .collect();
        taken.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut out = Vec::new();
        for (rank, arrival, id, bytes, attempts) in taken {
            let path = self.staged(&id, &bytes)?;
            out.push(Outgoing {
                wire_name: dir::message_wire_name(rank as usize, arrival as u64, &id),
                path,
                cargo: Cargo::Message,
            });
            self.chosen.push(Chosen {
                id,
                size: bytes.len() as u64,
                attempts,
            });
        }
        report.waiting += rows.len().saturating_sub(out.len());
        Ok(out)
    }

    fn record(
        &mut self,
        peer: &Peer,
        first: usize,
        outcomes: &[Outcome],
        _route: &str,
        clock: &Clock,
        report: &mut Report,
        log: &dyn Fn(String),
    ) -> Result<bool> {
        let now = clock.now();
        let renewed = now.saturating_add(self.lease()).as_micros();
        let end = (first + outcomes.len()).min(self.chosen.len());
        let mut handed: Vec<(String, i64)> = Vec::new();
        let mut deferred: Vec<String> = Vec::new();
        let mut refused: Vec<(String, String)> = Vec::new();
        for (c, o) in self.chosen[first.min(end)..end].iter().zip(outcomes) {
            match o {
                Outcome::Handed => {
                    let attempts = c.attempts as u32 + 1;
                    let due = now.saturating_add(retry::backoff(
                        attempts,
                        peer.ack_timeout,
                        peer.retry_cap,
                    ));
                    handed.push((c.id.clone(), due.as_micros()));
                    report.sent += 1;
                    report.bytes += c.size;
                    if c.attempts > 0 {
                        report.retransmitted += 1;
                    }
                }
                Outcome::Deferred(why) => {
                    report.deferred += 1;
                    report.last_error = Some(why.clone());
                    deferred.push(c.id.clone());
                }
                Outcome::Refused(why) => {
                    report.refused += 1;
                    refused.push((c.id.clone(), why.clone()));
                }
            }
        }
        let mut tx = self
            .db
            .client()
            .transaction()
            .map_err(|e| pg_error("recording what was handed out", e))?;
        // Only rows still leased to this poll are recorded; a lapsed lease
        // records nothing (another poll may have them now).
        let (ids, dues): (Vec<String>, Vec<i64>) = handed.into_iter().unzip();
        let mut ours =
            tx.execute(
                "UPDATE rs_outbox o SET attempts = o.attempts + 1, sent_to = $3, due = t.due,
                        leased_until = 0, holder = NULL
                 FROM UNNEST($1::text[], $2::bigint[]) AS t(id, due)
                 WHERE o.id = t.id AND o.holder = $4 AND o.leased_until = $5",
                &[&ids, &dues, &peer.id.as_str(), &self.holder, &self.until],
            )
            .map_err(|e| pg_error("recording what was handed out", e))? as usize;
        ours += tx
            .execute(
                "UPDATE rs_outbox SET leased_until = 0, holder = NULL
                 WHERE id = ANY($1) AND holder = $2 AND leased_until = $3",
                &[&deferred, &self.holder, &self.until],
            )
            .map_err(|e| pg_error("recording what was deferred", e))? as usize;
        for (id, why) in &refused {
            let n = tx
                .execute(
                    "WITH gone AS (
                         DELETE FROM rs_outbox WHERE id = $1 AND holder = $2 AND leased_until = $3
                         RETURNING id, peer, envelope)
                     INSERT INTO rs_dead (id, peer, reason, died, envelope)
                     SELECT id, peer, $4, $5, envelope FROM gone ON CONFLICT (id) DO NOTHING",
                    &[id, &self.holder, &self.until, why, &now.as_micros()],
                )
                .map_err(|e| pg_error("burying a refused message", e))?;
            if n == 1 {
                log(format!(
                    "{id} refused by {}: {why}: moved to rs_dead",
                    peer.id
                ));
            }
            ours += 1;
        }
        if ours < end - first.min(end) {
            report.lease_lapsed = true;
            drop(tx);
            return Ok(false);
        }
        // The lease on what is left is renewed.
        let until = renewed;
        tx.execute(
            "UPDATE rs_outbox SET leased_until = $3 WHERE holder = $1 AND leased_until = $2",
            &[&self.holder, &self.until, &until],
        )
        .map_err(|e| pg_error("renewing a lease", e))?;
        tx.commit()
            .map_err(|e| pg_error("recording what was handed out", e))?;
        self.until = until;
        Ok(true)
    }

    fn release(&mut self) -> Result<()> {
        if !self.chosen.is_empty() {
            let ids: Vec<&str> = self.chosen.iter().map(|c| c.id.as_str()).collect();
            let (holder, until) = (self.holder.clone(), self.until);
            self.db
                .client()
                .execute(
                    "UPDATE rs_outbox SET leased_until = 0, holder = NULL
                     WHERE id = ANY($1) AND holder = $2 AND leased_until = $3",
                    &[&ids, &holder, &until],
                )
                .map_err(|e| pg_error("releasing a lease", e))?;
        }
        self.chosen.clear();
        Ok(())
    }
}

/// Moves what this instance queued in its own spool (its `rs-send`, what
/// it relays) into the shared back-channel, so a poll at any instance
/// finds it. Each message is inserted (once: its ID is the key) and
/// committed before its file is removed, so a kill in between leaves a
/// copy the next push finds already there. A message whose next hop is
/// not known yet stays queued here. Returns how many moved.
pub fn push(spool: &Spool, now: Timestamp, log: &dyn Fn(String)) -> Result<usize> {
    let config = spool.config();
    let mut candidates = Vec::new();
    for p in Precedence::ALL {
        candidates.extend(spool.scan(Area::Queue(*p))?.0);
    }
    if candidates.is_empty() {
        return Ok(0);
    }
    let mut db = Db::connect(config)?;
    let rows = db
        .client()
        .query("SELECT component, peer FROM rs_routes", &[])
        .map_err(|e| pg_error("reading learned routes", e))?;
    let learned = Learned::from_pairs(rows.iter().map(|r| (r.get(0), r.get(1))));
    let mut locked = spool.lock(now)?;
    let mut moved = Vec::new();
    for e in candidates {
        let path = spool.entry_path(&e);
        let Ok(bytes) = std::fs::read(&path) else {
            continue; // taken by another run meanwhile
        };
        let Ok(header) = envelope::first_header(&bytes[..]) else {
            continue; // the spool's own checks deal with it
        };
        let peer = match route::next_hop(&header, config, &learned) {
            NextHop::Peer(p) => p,
            _ => continue,
        };
        let expiry = header.qos().expiry.map(|t| t.as_micros());
        db.client()
            .execute(
                "INSERT INTO rs_outbox (id, peer, rank, arrival, expiry, envelope, queued)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                &[
                    &e.name.id.as_str(),
                    &peer.as_str(),
                    &(e.name.precedence.rank() as i16),
                    &(e.name.arrival as i64),
                    &expiry,
                    &bytes,
                    &now.as_micros(),
                ],
            )
            .map_err(|err| pg_error(&format!("moving {} to the shared queue", e.name.id), err))?;
        moved.push(e);
    }
    let n = locked.discard_acknowledged(&moved)?;
    for p in Precedence::ALL {
        crate::spool::durable::fsync_dir(&spool.dir(Area::Queue(*p)))?;
    }
    if n > 0 {
        log(format!(
            "moved {n} queued message(s) to the shared back-channel"
        ));
    }
    Ok(n)
}
