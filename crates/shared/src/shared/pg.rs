//! [`Shared`] in PostgreSQL: the receive path's memory, shared by every
//! relay of a provider.
//!
//! One receive batch is one transaction. Asking whether a message ID was
//! accepted claims it: the ID is inserted in the open transaction, so an
//! instance receiving the same ID meanwhile waits on that row until this
//! batch commits (then it sees a duplicate) or dies (its transaction rolls
//! back, and the waiter takes the message). IDs claimed but not kept (a
//! message refused, or not taken now) are deleted before the commit, so
//! what commits is exactly what was kept here.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{pg_error, Db};
use crate::ack::{self, Applied, Owed};
use crate::message::{envelope, Content, Message, Name, ResponseStatus};
use crate::receive::decide::When;
use crate::receive::state::Shared;
use crate::route::Learned;
use crate::spool::seen::Kind;
use crate::spool::{Result, Spool};
use crate::time::Timestamp;

fn kind_code(kind: Kind) -> i16 {
    match kind {
        Kind::Id => 0,
        Kind::OriginKey => 1,
        Kind::Handed => 3,
    }
}

/// The receive path's state in the shared database.
pub struct PgShared<'s> {
    spool: &'s Spool,
    db: Db,
    now: Timestamp,
    learned: Learned,
    new_routes: Vec<(String, String)>,
    in_tx: bool,
    /// IDs inserted in this transaction by [`Shared::remembered`].
    claimed: HashSet<String>,
    /// What to remember at the commit: (kind, key) → (keep until, created).
    remember: HashMap<(i16, String), (i64, i64)>,
    /// (receive time evidence, horizon), read once.
    meta: Option<(i64, i64)>,
}

impl<'s> PgShared<'s> {
    /// Connects (or takes this thread's connection) for one receive batch.
    pub fn open(spool: &'s Spool, now: Timestamp) -> Result<PgShared<'s>> {
        let mut db = Db::connect(spool.config())?;
        let rows = db
            .client()
            .query("SELECT component, peer FROM rs_routes", &[])
            .map_err(|e| pg_error("reading learned routes", e))?;
        let learned = Learned::from_pairs(rows.iter().map(|r| (r.get(0), r.get(1))));
        Ok(PgShared {
            spool,
            db,
            now,
            learned,
            new_routes: Vec::new(),
            in_tx: false,
            claimed: HashSet::new(),
            remember: HashMap::new(),
            meta: None,
        })
    }

    fn begin(&mut self) -> Result<()> {
        if !self.in_tx {
            self.db
                .client()
                .batch_execute("BEGIN")
                .map_err(|e| pg_error("starting a receive", e))?;
            self.in_tx = true;
        }
        Ok(())
    }

    fn meta(&mut self) -> Result<(i64, i64)> {
        if let Some(m) = self.meta {
            return Ok(m);
        }
        let rows = self
            .db
            .client()
            .query(
                "SELECT key, value FROM rs_meta WHERE key IN ('evidence', 'horizon')",
                &[],
            )
            .map_err(|e| pg_error("reading the duplicate memory's clock", e))?;
        let mut m = (0, 0);
        for r in rows {
            match r.get::<_, &str>(0) {
                "evidence" => m.0 = r.get(1),
                _ => m.1 = r.get(1),
            }
        }
        self.meta = Some(m);
        Ok(m)
    }

    fn receive_time(&mut self) -> Result<Timestamp> {
        let (evidence, _) = self.meta()?;
        Ok(self.now.max(Timestamp::from_micros(evidence)))
    }

    /// Stores envelopes of acknowledgements for `peer` (`rs_acks`).
    fn queue_acks(&mut self, peer: &Name, messages: &[Message]) -> Result<usize> {
        if messages.is_empty() {
            return Ok(0);
        }
        let bytes = envelope::to_bytes(messages);
        self.db
            .client()
            .execute(
                "INSERT INTO rs_acks (peer, envelope, made) VALUES ($1, $2, $3)",
                &[&peer.as_str(), &bytes, &self.now.as_micros()],
            )
            .map_err(|e| pg_error("queuing acknowledgements", e))?;
        Ok(messages.len())
    }
}

impl Drop for PgShared<'_> {
    fn drop(&mut self) {
        if self.in_tx {
            let _ = self.db.client().batch_execute("ROLLBACK");
        }
    }
}

impl Shared for PgShared<'_> {
    fn remembered(&mut self, kind: Kind, key: &str) -> Result<bool> {
        self.begin()?;
        let code = kind_code(kind);
        if kind == Kind::OriginKey {
            let row = self
                .db
                .client()
                .query_opt(
                    "SELECT 1 FROM rs_accepted WHERE kind = $1 AND key = $2",
                    &[&code, &key],
                )
                .map_err(|e| pg_error("looking up an origin key", e))?;
            return Ok(row.is_some());
        }
        if self.claimed.contains(key) {
            return Ok(false);
        }
        // Waits while another instance's open batch holds the same ID.
        let n = self
            .db
            .client()
            .execute(
                "INSERT INTO rs_accepted (kind, key, keep_until, created, accepted)
                 VALUES ($1, $2, 0, 0, $3) ON CONFLICT (kind, key) DO NOTHING",
                &[&code, &key, &self.now.as_micros()],
            )
            .map_err(|e| pg_error(&format!("claiming message {key}"), e))?;
        if n == 1 {
            self.claimed.insert(key.to_string());
        }
        Ok(n == 0)
    }

    fn when(&mut self, max_clock_skew: Duration) -> Result<When> {
        let receive_time = self.receive_time()?;
        let (_, horizon) = self.meta()?;
        Ok(When {
            now: self.now,
            receive_time,
            horizon: (horizon != 0).then(|| Timestamp::from_micros(horizon)),
            max_clock_skew,
            minute_of_day: self.now.minute_of_day(crate::time::local_offset_secs()),
        })
    }

    fn keep_until(&mut self, expiry: Option<Timestamp>) -> Result<Timestamp> {
        let retention = self.spool.config().receive.dedupe_retention;
        let floor = self.receive_time()?.saturating_add(retention);
        Ok(expiry.map_or(floor, |e| e.max(floor)))
    }

    fn remember(
        &mut self,
        kind: Kind,
        key: &str,
        keep_until: Timestamp,
        created: Timestamp,
    ) -> Result<()> {
        self.remember.insert(
            (kind_code(kind), key.to_string()),
            (keep_until.as_micros(), created.as_micros()),
        );
        Ok(())
    }

    fn sent(&mut self) -> Result<crate::queue::throttle::Sent> {
        super::throttle_sent(self.db.client(), false)
    }

    fn learned(&self) -> &Learned {
        &self.learned
    }

    fn learn(&mut self, component: &Name, peer: &Name) {
        if self.learned.peer_for(component.as_str()).is_none() {
            self.learned.learn(component, peer);
            self.new_routes
                .push((component.to_string(), peer.to_string()));
        }
    }

    fn commit(&mut self) -> Result<()> {
        if self.remember.is_empty() && self.claimed.is_empty() && self.new_routes.is_empty() {
            if self.in_tx {
                self.in_tx = false;
                self.db
                    .client()
                    .batch_execute("COMMIT")
                    .map_err(|e| pg_error("ending a receive", e))?;
            }
            return Ok(());
        }
        self.begin()?;
        let now = self.now.as_micros();
        let mut kinds = Vec::new();
        let mut keys = Vec::new();
        let mut keeps = Vec::new();
        let mut created = Vec::new();
        let mut newest = 0i64;
        for ((k, key), (keep, c)) in self.remember.drain() {
            kinds.push(k);
            keys.push(key);
            keeps.push(keep);
            created.push(c);
            newest = newest.max(c);
        }
        let kept: HashSet<&str> = kinds
            .iter()
            .zip(&keys)
            .filter(|(k, _)| **k == 0)
            .map(|(_, key)| key.as_str())
            .collect();
        let dropped: Vec<&str> = self
            .claimed
            .iter()
            .map(String::as_str)
            .filter(|c| !kept.contains(c))
            .collect();
        let client = self.db.client();
        if !dropped.is_empty() {
            client
                .execute(
                    "DELETE FROM rs_accepted WHERE kind = 0 AND key = ANY($1)",
                    &[&dropped],
                )
                .map_err(|e| pg_error("releasing IDs not kept", e))?;
        }
        if !keys.is_empty() {
            client
                .execute(
                    "INSERT INTO rs_accepted (kind, key, keep_until, created, accepted)
                     SELECT k, key, keep, c, $5
                     FROM UNNEST($1::smallint[], $2::text[], $3::bigint[], $4::bigint[])
                          AS t(k, key, keep, c)
                     ON CONFLICT (kind, key) DO UPDATE
                     SET keep_until = GREATEST(rs_accepted.keep_until, EXCLUDED.keep_until),
                         created = EXCLUDED.created",
                    &[&kinds, &keys, &keeps, &created, &now],
                )
                .map_err(|e| pg_error("remembering accepted IDs", e))?;
            client
                .execute(
                    "INSERT INTO rs_meta (key, value) VALUES ('evidence', $1)
                     ON CONFLICT (key) DO UPDATE
                     SET value = GREATEST(rs_meta.value, EXCLUDED.value)",
                    &[&newest],
                )
                .map_err(|e| pg_error("recording the receive time", e))?;
        }
        if !kept.is_empty() && self.spool.config().shared.nats.is_some() {
            // Accepted: the database stops a second copy from here on.
            let kept: Vec<&str> = kept.into_iter().collect();
            client
                .execute("DELETE FROM rs_published WHERE id = ANY($1)", &[&kept])
                .map_err(|e| pg_error("forgetting publishes now accepted", e))?;
        }
        for (component, peer) in self.new_routes.drain(..) {
            client
                .execute(
                    "INSERT INTO rs_routes (component, peer, learned) VALUES ($1, $2, $3)
                     ON CONFLICT (component) DO NOTHING",
                    &[&component, &peer, &now],
                )
                .map_err(|e| pg_error("recording a learned route", e))?;
        }
        client
            .batch_execute("COMMIT")
            .map_err(|e| pg_error("committing a receive", e))?;
        self.in_tx = false;
        self.claimed.clear();
        Ok(())
    }

    fn owe(&mut self, peer: &Name, owed: &[Owed]) -> Result<()> {
        let messages: Vec<Message> = owed.iter().map(|o| ack::message(o, self.now)).collect();
        self.queue_acks(peer, &messages).map(|_| ())
    }

    fn pass_on(&mut self, peer: &Name, messages: &[Message], _now: Timestamp) -> Result<usize> {
        self.queue_acks(peer, messages)
    }

    fn handed(&mut self, id: &str, peer: &Name) -> Result<bool> {
        let key = format!("{id} {peer}");
        let row = self
            .db
            .client()
            .query_opt(
                "SELECT 1 FROM rs_accepted WHERE kind = 3 AND key = $1",
                &[&key],
            )
            .map_err(|e| pg_error("looking up who was handed a message", e))?;
        if row.is_some() {
            return Ok(true);
        }
        // What this instance sent from its own spool.
        crate::ack::Handed::new(self.spool, self.now).was(id, peer)
    }

    fn apply_acks(
        &mut self,
        acks: &[Message],
        from: &Name,
        now: Timestamp,
        log: &dyn Fn(String),
    ) -> Result<Applied> {
        let answers = |status: ResponseStatus| -> Vec<&str> {
            acks.iter()
                .filter_map(|m| match &m.content {
                    Content::MessageResponse(r)
                        if r.status == status
                            && !r.reason_code.as_ref().is_some_and(|c| {
                                c.as_str().starts_with("final-")
                                    || c.as_str().starts_with("control-")
                            }) =>
                    {
                        Some(r.answers.as_str())
                    }
                    _ => None,
                })
                .collect()
        };
        let accepted = answers(ResponseStatus::Accepted);
        let rejected = answers(ResponseStatus::Rejected);
        let client = self.db.client();
        let mut done: HashSet<String> = HashSet::new();
        let mut applied = Applied::default();
        if !accepted.is_empty() {
            let rows = client
                .query(
                    "DELETE FROM rs_outbox WHERE id = ANY($1) AND sent_to = $2 RETURNING id",
                    &[&accepted, &from.as_str()],
                )
                .map_err(|e| pg_error("discarding acknowledged messages", e))?;
            applied.discarded += rows.len();
            done.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        if !rejected.is_empty() {
            let rows = client
                .query(
                    "WITH gone AS (
                         DELETE FROM rs_outbox WHERE id = ANY($1) AND sent_to = $2
                         RETURNING id, peer, envelope)
                     INSERT INTO rs_dead (id, peer, reason, died, envelope)
                     SELECT id, peer, $3, $4, envelope FROM gone
                     ON CONFLICT (id) DO NOTHING
                     RETURNING id",
                    &[
                        &rejected,
                        &from.as_str(),
                        &format!("rejected by {from}"),
                        &now.as_micros(),
                    ],
                )
                .map_err(|e| pg_error("burying refused messages", e))?;
            for r in &rows {
                log(format!(
                    "{} rejected by {from}: moved to the shared database's dead messages (rs_dead)",
                    r.get::<_, &str>(0)
                ));
            }
            applied.rejected += rows.len();
            done.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        // The rest concern what this instance's own spool sent (and the
        // journal of delivery notices).
        let rest: Vec<Message> = acks
            .iter()
            .filter(|m| match &m.content {
                Content::MessageResponse(r) => !done.contains(r.answers.as_str()),
                _ => true,
            })
            .cloned()
            .collect();
        let local = ack::apply(self.spool, &rest, from, now, log)?;
        applied.discarded += local.discarded;
        applied.rejected += local.rejected;
        applied.recorded += local.recorded;
        applied.requeued += local.requeued;
        Ok(applied)
    }
}
