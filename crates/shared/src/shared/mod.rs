//! The state a provider's relays share, for scale-out: many `rs-relay
//! serve` (or `cgi`) instances, each with a spool of its own, behind one
//! load balancer, keep in one PostgreSQL database what a single relay keeps
//! in its spool (`[shared] backend = "postgres"`):
//!
//! - the duplicate memory (`rs_accepted`): a message ID is claimed by an
//!   insert in the receiving request's transaction, so another instance
//!   taking the same ID at the same moment waits for that transaction and
//!   then sees it accepted (committed) or free (rolled back: the claimer
//!   died); a message is accepted only once the transaction commits
//!   ([`pg::PgShared`]);
//! - the components learned behind each peer (`rs_routes`);
//! - the acknowledgements owed (`rs_acks`) and the back-channel messages
//!   (`rs_outbox`), handed to one poll at a time under row locks (`FOR
//!   UPDATE SKIP LOCKED`, held until the poll's outcomes are recorded) and
//!   deleted only when the peer acknowledges them
//!   ([`outbox::PgOutbox`]); what an instance queued in its own spool (its
//!   `rs-send`, what it relays) moves into the database before it answers
//!   ([`outbox::push`]);
//! - with `[shared] nats`, what is delivered here is published to NATS
//!   JetStream (subject `PREFIX.CLASS.SUBCLASS`, the message ID as
//!   `Nats-Msg-Id`) and acknowledged only once JetStream confirmed it
//!   ([`jetstream`]).
//!
//! The schema is made and migrated by `rs-relay db init|migrate`
//! ([`migrate`]); an instance refuses a database whose schema is older or
//! newer than it knows. A connection is kept per thread for the next
//! request.

pub mod jetstream;
pub mod outbox;
pub mod pg;
pub mod plug;

use std::collections::HashSet;
use std::sync::Mutex;

use crate::config::{Backend, Config};
use crate::spool::{Error, Result};

/// The schema version this build reads and writes.
pub const SCHEMA: i32 = 1;

/// The migrations, in order: `MIGRATIONS[n]` takes the schema from
/// version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the duplicate memory, learned routes, acknowledgements owed, the
    // back-channel queues and what died there, what was published to
    // JetStream by a batch that has not committed, and the throttle's
    // counters.
    r#"
    CREATE TABLE rs_meta (
        key text PRIMARY KEY,
        value bigint NOT NULL
    );
    CREATE TABLE rs_accepted (
        kind smallint NOT NULL,
        key text NOT NULL,
        keep_until bigint NOT NULL,
        created bigint NOT NULL,
        accepted bigint NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX rs_accepted_keep ON rs_accepted (keep_until);
    CREATE TABLE rs_routes (
        component text PRIMARY KEY,
        peer text NOT NULL,
        learned bigint NOT NULL
    );
    CREATE TABLE rs_acks (
        seq bigserial PRIMARY KEY,
        peer text NOT NULL,
        envelope bytea NOT NULL,
        made bigint NOT NULL
    );
    CREATE INDEX rs_acks_peer ON rs_acks (peer, seq);
    CREATE TABLE rs_outbox (
        id text PRIMARY KEY,
        peer text NOT NULL,
        rank smallint NOT NULL,
        arrival bigint NOT NULL,
        expiry bigint,
        envelope bytea NOT NULL,
        queued bigint NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        sent_to text,
        due bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX rs_outbox_peer ON rs_outbox (peer, rank, arrival);
    CREATE TABLE rs_dead (
        id text PRIMARY KEY,
        peer text NOT NULL,
        reason text NOT NULL,
        died bigint NOT NULL,
        envelope bytea NOT NULL
    );
    CREATE TABLE rs_published (
        id text PRIMARY KEY,
        subject text NOT NULL,
        sequence bigint NOT NULL,
        published bigint NOT NULL,
        keep_until bigint NOT NULL
    );
    CREATE TABLE rs_throttle (
        id smallint PRIMARY KEY CHECK (id = 0),
        hour_start bigint NOT NULL,
        hour_bytes bigint NOT NULL,
        hour_messages bigint NOT NULL,
        day_start bigint NOT NULL,
        day_bytes bigint NOT NULL,
        day_messages bigint NOT NULL
    );
    -- The one row exists from the start, so that the first polls lock it.
    INSERT INTO rs_throttle VALUES (0, 0, 0, 0, 0, 0, 0);
    "#,
];

/// A connection to the shared database, returned to this thread's cache
/// when dropped (unless it broke).
pub struct Db {
    client: Option<postgres::Client>,
    key: String,
}

/// Connections idle between requests, for the next (a process-wide pool:
/// a static is never dropped, so no client is torn down at exit after the
/// runtime it needs).
static IDLE: Mutex<Vec<(String, postgres::Client)>> = Mutex::new(Vec::new());

impl Db {
    /// Connects as `[shared]` says (or takes this thread's cached
    /// connection) and checks the schema's version.
    pub fn connect(config: &Config) -> Result<Db> {
        let mut db = Db::open(config)?;
        let version = db.version()?;
        if version != SCHEMA {
            let remedy = if version < SCHEMA {
                "run `rs-relay db migrate`"
            } else {
                "this rs is older than the database: upgrade it"
            };
            let what = if version == 0 {
                "holds no rs schema: run `rs-relay db init`".to_string()
            } else {
                format!("has schema version {version}, this rs reads {SCHEMA}: {remedy}")
            };
            return Err(Error::SharedSchema {
                reason: format!("the database ({}) {what}", db.key),
            });
        }
        Ok(db)
    }

    /// Connects without looking at the schema (`rs-relay db`).
    pub fn open(config: &Config) -> Result<Db> {
        let key = config.shared.postgres.clone().ok_or_else(|| Error::SharedSchema {
            reason: "no database is configured: set [shared] postgres = \"host=... user=... dbname=...\""
                .into(),
        })?;
        let cached = {
            let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|(_, c)| !c.is_closed());
            idle.iter()
                .position(|(k, _)| *k == key)
                .map(|at| idle.swap_remove(at).1)
        };
        let client = match cached {
            Some(c) => c,
            None => {
                let mut pg: postgres::Config = key.parse().map_err(|e| Error::SharedSchema {
                    reason: format!("[shared] postgres = \"{key}\" cannot be read: {e}"),
                })?;
                if let Some(file) = &config.shared.password_file {
                    let pw = std::fs::read_to_string(file).map_err(|e| Error::SharedSchema {
                        reason: format!(
                            "[shared] password_file {}: {e}: make it readable by this user",
                            file.display()
                        ),
                    })?;
                    pg.password(pw.trim_end_matches(['\n', '\r']));
                }
                pg.connect_timeout(std::time::Duration::from_secs(10));
                pg.application_name("rs-relay");
                let mut client = pg.connect(postgres::NoTls).map_err(|e| Error::Shared {
                    reason: format!(
                        "cannot connect to PostgreSQL ({key}): {e}: start it, or check [shared] postgres"
                    ),
                })?;
                // A transaction left open by a stalled instance must not
                // hold the IDs it claimed for long.
                client
                    .batch_execute(
                        "SET idle_in_transaction_session_timeout = '60s'; SET lock_timeout = '30s'",
                    )
                    .map_err(|e| pg_error(&key, e))?;
                client
            }
        };
        Ok(Db {
            client: Some(client),
            key,
        })
    }

    pub fn client(&mut self) -> &mut postgres::Client {
        self.client.as_mut().expect("held until dropped")
    }

    /// An error of this database, with what was being done.
    pub fn error(&self, doing: &str, e: postgres::Error) -> Error {
        pg_error(&format!("{} while {doing}", self.key), e)
    }

    /// The schema version the database holds (0: none).
    pub fn version(&mut self) -> Result<i32> {
        let row = self
            .client()
            .query_one("SELECT to_regclass('rs_meta') IS NOT NULL", &[])
            .map_err(|e| pg_error("checking the schema", e))?;
        if !row.get::<_, bool>(0) {
            return Ok(0);
        }
        let v = self
            .client()
            .query_opt("SELECT value FROM rs_meta WHERE key = 'schema'", &[])
            .map_err(|e| pg_error("reading the schema version", e))?;
        Ok(v.map_or(0, |r| r.get::<_, i64>(0) as i32))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if client.is_closed() {
                return;
            }
            let key = std::mem::take(&mut self.key);
            let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < 64 {
                idle.push((key, client));
            } else {
                // Dropped outside the lock.
                drop(idle);
                drop(client);
            }
        }
    }
}

/// A database error, as the shared state reports it.
pub fn pg_error(doing: &str, e: postgres::Error) -> Error {
    let detail = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    };
    Error::Shared {
        reason: format!("PostgreSQL, {doing}: {detail}"),
    }
}

/// Whether this site keeps its shared state in a database.
pub fn in_database(config: &Config) -> bool {
    config.shared.backend == Backend::Postgres
}

/// What `rs-relay db` did.
#[derive(Debug, PartialEq, Eq)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
}

/// Brings the schema to [`SCHEMA`], one migration per transaction, under
/// an advisory lock so two instances never migrate at once. `init` also
/// makes it from nothing; without it an empty database is an error.
pub fn migrate(config: &Config, init: bool) -> Result<Migrated> {
    let mut db = Db::open(config)?;
    let from = db.version()?;
    if from == 0 && !init {
        return Err(Error::SharedSchema {
            reason: format!(
                "the database ({}) holds no rs schema: run `rs-relay db init` first",
                db.key
            ),
        });
    }
    if from > SCHEMA {
        return Err(Error::SharedSchema {
            reason: format!(
                "the database ({}) has schema version {from}, newer than this rs ({SCHEMA}): upgrade rs",
                db.key
            ),
        });
    }
    let mut at = from;
    while (at as usize) < MIGRATIONS.len() {
        let key = db.key.clone();
        let client = db.client();
        let mut tx = client
            .transaction()
            .map_err(|e| pg_error(&format!("{key}: migrating"), e))?;
        tx.execute("SELECT pg_advisory_xact_lock(7243012)", &[])
            .map_err(|e| pg_error("migrating", e))?;
        // Another instance may have migrated while this one waited.
        let now_at: i32 = if at == 0 {
            let exists: bool = tx
                .query_one("SELECT to_regclass('rs_meta') IS NOT NULL", &[])
                .map_err(|e| pg_error("migrating", e))?
                .get(0);
            if exists {
                -1
            } else {
                0
            }
        } else {
            tx.query_one("SELECT value FROM rs_meta WHERE key = 'schema'", &[])
                .map_err(|e| pg_error("migrating", e))?
                .get::<_, i64>(0) as i32
        };
        if now_at != at {
            drop(tx);
            at = db.version()?;
            continue;
        }
        tx.batch_execute(MIGRATIONS[at as usize])
            .map_err(|e| pg_error(&format!("migrating to schema version {}", at + 1), e))?;
        tx.execute(
            "INSERT INTO rs_meta (key, value) VALUES ('schema', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&(at as i64 + 1)],
        )
        .map_err(|e| pg_error("recording the schema version", e))?;
        tx.commit().map_err(|e| pg_error("migrating", e))?;
        at += 1;
    }
    if init {
        if let Some(url) = &config.shared.nats {
            jetstream::ensure_stream(config, url)?;
        }
    }
    Ok(Migrated { from, to: at })
}

/// What the shared database holds (`rs-relay db status`).
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub schema: i32,
    pub accepted: i64,
    pub routes: i64,
    pub outbox: i64,
    pub outbox_sent: i64,
    pub acks: i64,
    pub dead: i64,
}

/// Counts what the shared database holds.
pub fn status(config: &Config) -> Result<Status> {
    let mut db = Db::connect(config)?;
    let row = db
        .client()
        .query_one(
            "SELECT (SELECT count(*) FROM rs_accepted WHERE kind <> 3),
                    (SELECT count(*) FROM rs_routes),
                    (SELECT count(*) FROM rs_outbox),
                    (SELECT count(*) FROM rs_outbox WHERE sent_to IS NOT NULL),
                    (SELECT count(*) FROM rs_acks),
                    (SELECT count(*) FROM rs_dead)",
            &[],
        )
        .map_err(|e| pg_error("counting", e))?;
    Ok(Status {
        schema: SCHEMA,
        accepted: row.get(0),
        routes: row.get(1),
        outbox: row.get(2),
        outbox_sent: row.get(3),
        acks: row.get(4),
        dead: row.get(5),
    })
}

/// Which of `ids` were published to JetStream by a receive batch that
/// never committed (its instance killed between the two): they are not
/// published again, whatever JetStream's duplicate window.
pub fn published_among(config: &Config, ids: &[&str]) -> Result<HashSet<String>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let mut db = Db::connect(config)?;
    let rows = db
        .client()
        .query("SELECT id FROM rs_published WHERE id = ANY($1)", &[&ids])
        .map_err(|e| pg_error("reading what was published", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Records at once (apart from the receive batch's transaction, which
/// deletes the records when it commits) that each message was published:
/// (ID, subject, stream sequence, kept until at most).
pub fn record_published(
    config: &Config,
    published: &[(String, String, u64, crate::time::Timestamp)],
    now: crate::time::Timestamp,
) -> Result<()> {
    if published.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = published.iter().map(|p| p.0.as_str()).collect();
    let subjects: Vec<&str> = published.iter().map(|p| p.1.as_str()).collect();
    let sequences: Vec<i64> = published.iter().map(|p| p.2 as i64).collect();
    let keeps: Vec<i64> = published.iter().map(|p| p.3.as_micros()).collect();
    // Committed without waiting for the disk: what it guards against is
    // an instance killed, not the database's host.
    let mut db = Db::connect(config)?;
    let mut tx = db
        .client()
        .transaction()
        .map_err(|e| pg_error("recording publishes", e))?;
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .map_err(|e| pg_error("recording publishes", e))?;
    tx.execute(
        "INSERT INTO rs_published (id, subject, sequence, published, keep_until)
         SELECT id, subject, seq, $5, keep
         FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[])
              AS t(id, subject, seq, keep)
         ON CONFLICT (id) DO NOTHING",
        &[&ids, &subjects, &sequences, &keeps, &now.as_micros()],
    )
    .map_err(|e| pg_error("recording publishes", e))?;
    tx.commit().map_err(|e| pg_error("recording publishes", e))
}

/// What the throttle counted as sent by every instance together (`lock`:
/// the row stays locked until `client`'s transaction ends, so that
/// instances count one after the other).
pub fn throttle_sent(
    client: &mut impl postgres::GenericClient,
    lock: bool,
) -> Result<crate::queue::throttle::Sent> {
    let sql = format!(
        "SELECT hour_start, hour_bytes, hour_messages, day_start, day_bytes, day_messages
         FROM rs_throttle WHERE id = 0{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client
        .query_opt(sql.as_str(), &[])
        .map_err(|e| pg_error("reading the throttle's counters", e))?;
    let n = |r: &postgres::Row, i: usize| r.get::<_, i64>(i).max(0) as u64;
    Ok(
        row.map_or_else(Default::default, |r| crate::queue::throttle::Sent {
            hour_start: r.get(0),
            hour_bytes: n(&r, 1),
            hour_messages: n(&r, 2),
            day_start: r.get(3),
            day_bytes: n(&r, 4),
            day_messages: n(&r, 5),
        }),
    )
}

/// Counts `messages` of `bytes` in all as sent at `now`, in `client`'s
/// open transaction.
pub fn record_sent(
    client: &mut impl postgres::GenericClient,
    messages: u64,
    bytes: u64,
    now: crate::time::Timestamp,
    utc_offset_secs: i32,
) -> Result<()> {
    if messages == 0 {
        return Ok(());
    }
    let before = throttle_sent(client, true)?;
    let s = before.record_many(messages, bytes, now, utc_offset_secs);
    client
        .execute(
            "INSERT INTO rs_throttle VALUES (0, $1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET hour_start = $1, hour_bytes = $2,
                 hour_messages = $3, day_start = $4, day_bytes = $5, day_messages = $6",
            &[
                &s.hour_start,
                &(s.hour_bytes as i64),
                &(s.hour_messages as i64),
                &s.day_start,
                &(s.day_bytes as i64),
                &(s.day_messages as i64),
            ],
        )
        .map(|_| ())
        .map_err(|e| pg_error("counting what was sent", e))
}

/// Forgets the accepted IDs whose keep-until time is before `now`, and
/// raises the horizon to the newest creation time among them. Returns how
/// many were forgotten and the horizon. Records of publishes whose
/// messages' keep-until passed go too.
pub fn prune(
    config: &Config,
    now: crate::time::Timestamp,
) -> Result<(u64, Option<crate::time::Timestamp>)> {
    let mut db = Db::connect(config)?;
    let mut tx = db
        .client()
        .transaction()
        .map_err(|e| pg_error("pruning", e))?;
    // Claims in flight (keep_until 0) are other batches' and not visible;
    // only committed rows are forgotten.
    let row = tx
        .query_one(
            "WITH gone AS (
                 DELETE FROM rs_accepted WHERE kind <> 3 AND keep_until > 0 AND keep_until < $1
                 RETURNING created)
             SELECT count(*), max(created) FROM gone",
            &[&now.as_micros()],
        )
        .map_err(|e| pg_error("pruning", e))?;
    // Hand-off records (kind 3, see `ack::note_handed`) are no accepted
    // IDs: forgetting them raises no horizon.
    tx.execute(
        "DELETE FROM rs_accepted WHERE kind = 3 AND keep_until < $1",
        &[&now.as_micros()],
    )
    .map_err(|e| pg_error("pruning hand-off records", e))?;
    let n: i64 = row.get(0);
    let newest: Option<i64> = row.get(1);
    if let Some(c) = newest {
        tx.execute(
            "INSERT INTO rs_meta (key, value) VALUES ('horizon', $1)
             ON CONFLICT (key) DO UPDATE SET value = GREATEST(rs_meta.value, EXCLUDED.value)",
            &[&c],
        )
        .map_err(|e| pg_error("recording the horizon", e))?;
    }
    tx.execute(
        "DELETE FROM rs_published WHERE keep_until < $1",
        &[&now.as_micros()],
    )
    .map_err(|e| pg_error("pruning what was published", e))?;
    let horizon: Option<i64> = tx
        .query_opt("SELECT value FROM rs_meta WHERE key = 'horizon'", &[])
        .map_err(|e| pg_error("pruning", e))?
        .map(|r| r.get(0));
    tx.commit().map_err(|e| pg_error("pruning", e))?;
    Ok((n as u64, horizon.map(crate::time::Timestamp::from_micros)))
}
