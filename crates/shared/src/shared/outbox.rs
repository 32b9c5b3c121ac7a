//! The back-channel in the shared database: what the provider's relays
//! hold for the sites that poll them, whichever instance a poll reaches.
//!
//! A message waits in `rs_outbox` under the peer that leads to its
//! destination. A poll takes what is due for its peer with `FOR UPDATE
//! SKIP LOCKED` in a transaction it keeps open until the outcomes are
//! recorded: two polls at once, on two instances, never take the same
//! row, and an instance that dies mid-poll releases its rows at once (its
//! transaction rolls back with its connection). Handed out, a row stays
//! (`sent_to`, due again after the peer's `ack_timeout`, doubling up to
//! `retry_cap`) until the peer acknowledges it: then it is deleted
//! ([`super::pg::PgShared`]'s `apply_acks`). The acknowledgements owed to
//! a peer (`rs_acks`) are taken the same way and deleted once carried.

use std::path::PathBuf;

use super::{pg_error, Db};
use crate::config::Peer;
use crate::message::{envelope, Precedence};
use crate::outbound::{Outbox, Report};
use crate::queue::{retry, throttle};
use crate::route::{self, Learned, NextHop};
use crate::spool::{Area, Result, Spool};
use crate::time::{Clock, Timestamp};
use crate::transport::{dir, Cargo, Outcome, Outgoing};

/// How many rows one poll looks at.
const MAX_ROWS: i64 = 1000;

/// A row handed to the runner.
struct Chosen {
    id: String,
    size: u64,
    attempts: i32,
}

/// [`Outbox`] over `rs_outbox` and `rs_acks`.
pub struct PgOutbox<'s> {
    spool: &'s Spool,
    db: Db,
    /// The transaction holding the rows taken is open.
    in_tx: bool,
    chosen: Vec<Chosen>,
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
            in_tx: false,
            chosen: Vec::new(),
            acks: Vec::new(),
            files: Vec::new(),
        })
    }

    fn begin(&mut self) -> Result<()> {
        if !self.in_tx {
            self.db
                .client()
                .batch_execute("BEGIN")
                .map_err(|e| pg_error("taking what is due", e))?;
            self.in_tx = true;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if self.in_tx {
            self.in_tx = false;
            self.db
                .client()
                .batch_execute("COMMIT")
                .map_err(|e| pg_error("recording what was handed out", e))?;
        }
        Ok(())
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
        // What was not recorded is free for the next poll.
        if self.in_tx {
            let _ = self.db.client().batch_execute("ROLLBACK");
        }
        for p in self.files.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Outbox for PgOutbox<'_> {
    fn acks(&mut self, peer: &Peer, _now: Timestamp) -> Result<Vec<Outgoing>> {
        self.begin()?;
        let rows = self
            .db
            .client()
            .query(
                "SELECT seq, envelope FROM rs_acks WHERE peer = $1
                 ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED",
                &[&peer.id.as_str()],
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
        // With no message to record, the runner ends here.
        if self.chosen.is_empty() {
            self.commit()?;
        }
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
        let limit = self.spool.config().http.max_reply.0;
        self.begin()?;
        let client = self.db.client();
        // What expired waiting is dead, with the reason.
        let expired = client
            .query(
                "WITH gone AS (
                     DELETE FROM rs_outbox WHERE id IN (
                         SELECT id FROM rs_outbox WHERE peer = $1 AND expiry < $2
                         FOR UPDATE SKIP LOCKED)
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
        // Candidates in send order, locked by this poll's transaction;
        // rows another poll holds are passed over.
        let rows = client
            .query(
                "SELECT id, octet_length(envelope), attempts FROM rs_outbox
                 WHERE peer = $1 AND due <= $2
                 ORDER BY rank, arrival LIMIT $3 FOR UPDATE SKIP LOCKED",
                &[&peer.id.as_str(), &now, &MAX_ROWS],
            )
            .map_err(|e| pg_error("taking back-channel messages", e))?;
        // The throttle counts what every instance sent: with a limit set,
        // its row is locked until this poll is recorded, so polls at
        // several instances count one after the other.
        let throttle = &self.spool.config().throttle;
        let (moment, offset) = (clock.now(), clock.utc_offset_secs());
        let limited = throttle.max_bytes_per_hour.is_some()
            || throttle.max_bytes_per_day.is_some()
            || throttle.max_messages_per_hour.is_some()
            || throttle.max_messages_per_day.is_some();
        let stop = throttle::closed(throttle, self.spool.is_held(), moment, offset);
        let mut sent = super::throttle_sent(client, limited)?.at(moment, offset);
        let mut total = 0u64;
        let mut ids: Vec<String> = Vec::new();
        report.stopped = stop.as_ref().map(ToString::to_string);
        for r in rows.iter().filter(|_| stop.is_none()) {
            let size = r.get::<_, i32>(1) as u64;
            if total > 0 && total + size > limit {
                break;
            }
            if let Some(stop) = throttle::refuses(throttle, sent, size) {
                report.stopped = Some(stop.to_string());
                break;
            }
            sent = sent.record(size, moment, offset);
            total += size;
            ids.push(r.get(0));
        }
        let taken = client
            .query(
                "SELECT id, envelope, rank, arrival, attempts FROM rs_outbox
                 WHERE id = ANY($1) ORDER BY rank, arrival",
                &[&ids],
            )
            .map_err(|e| pg_error("reading back-channel messages", e))?;
        let mut out = Vec::new();
        for r in taken {
            let id: String = r.get(0);
            let bytes: &[u8] = r.get(1);
            let (rank, arrival): (i16, i64) = (r.get(2), r.get(3));
            let path = self.staged(&id, bytes)?;
            out.push(Outgoing {
                wire_name: dir::message_wire_name(rank as usize, arrival as u64, &id),
                path,
                cargo: Cargo::Message,
            });
            self.chosen.push(Chosen {
                id,
                size: bytes.len() as u64,
                attempts: r.get(4),
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
        let end = (first + outcomes.len()).min(self.chosen.len());
        let mut ids: Vec<String> = Vec::new();
        let mut dues: Vec<i64> = Vec::new();
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
                    ids.push(c.id.clone());
                    dues.push(due.as_micros());
                    report.sent += 1;
                    report.bytes += c.size;
                    if c.attempts > 0 {
                        report.retransmitted += 1;
                    }
                }
                // Left as it was: due at the next poll.
                Outcome::Deferred(why) => {
                    report.deferred += 1;
                    report.last_error = Some(why.clone());
                }
                Outcome::Refused(why) => {
                    report.refused += 1;
                    refused.push((c.id.clone(), why.clone()));
                }
            }
        }
        let client = self.db.client();
        let bytes: u64 = self.chosen[first.min(end)..end]
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| matches!(o, Outcome::Handed))
            .map(|(c, _)| c.size)
            .sum();
        super::record_sent(
            client,
            ids.len() as u64,
            bytes,
            now,
            clock.utc_offset_secs(),
        )?;
        client
            .execute(
                "UPDATE rs_outbox o SET attempts = o.attempts + 1, sent_to = $3, due = t.due
                 FROM UNNEST($1::text[], $2::bigint[]) AS t(id, due) WHERE o.id = t.id",
                &[&ids, &dues, &peer.id.as_str()],
            )
            .map_err(|e| pg_error("recording what was handed out", e))?;
        // Who holds what, for the notices that come back (kind 3: see
        // `ack::note_handed`); kept as long as an ID is remembered.
        let keep = now
            .saturating_add(self.spool.config().receive.dedupe_retention)
            .as_micros();
        client
            .execute(
                "INSERT INTO rs_accepted (kind, key, keep_until, created, accepted)
                 SELECT 3, t.id || ' ' || $2, $3, $4, $4 FROM UNNEST($1::text[]) AS t(id)
                 ON CONFLICT (kind, key) DO UPDATE
                 SET keep_until = GREATEST(rs_accepted.keep_until, EXCLUDED.keep_until)",
                &[&ids, &peer.id.as_str(), &keep, &now.as_micros()],
            )
            .map_err(|e| pg_error("recording who was handed what", e))?;
        for (id, why) in &refused {
            client
                .execute(
                    "WITH gone AS (DELETE FROM rs_outbox WHERE id = $1 RETURNING id, peer, envelope)
                     INSERT INTO rs_dead (id, peer, reason, died, envelope)
                     SELECT id, peer, $2, $3, envelope FROM gone ON CONFLICT (id) DO NOTHING",
                    &[id, why, &now.as_micros()],
                )
                .map_err(|e| pg_error("burying a refused message", e))?;
            log(format!(
                "{id} refused by {}: {why}: moved to rs_dead",
                peer.id
            ));
        }
        // The last chunk's outcomes end the poll.
        if end == self.chosen.len() {
            self.commit()?;
        }
        Ok(true)
    }

    fn release(&mut self) -> Result<()> {
        self.commit()?;
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
