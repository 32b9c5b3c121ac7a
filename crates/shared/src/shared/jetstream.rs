//! Handing what is delivered here to the provider's services through NATS
//! JetStream (`[shared] nats`): one JetStream message per rs message, on
//! subject `PREFIX.CLASS.SUBCLASS`, with the rs message ID as its
//! `Nats-Msg-Id`, so JetStream drops a second publish of the same ID
//! within its duplicate window. The shared database stops the duplicates
//! that window would miss: a message ID is claimed there before it is
//! published, and the publish is recorded (`rs_published`) in the same
//! transaction that accepts the message.
//!
//! A publish counts only once JetStream acknowledged it (stored it in the
//! stream); until then nothing is acknowledged to the sender, who sends
//! again.

use std::sync::Mutex;
use std::time::Duration;

use crate::config::Config;
use crate::spool::{Error, Result};

/// The largest message published (nats-server's default `max_payload`);
/// a larger one is delivered into the Maildir.
pub const MAX_PAYLOAD: u64 = 1 << 20;

/// How long a publish (or a connection) may take.
const TIMEOUT: Duration = Duration::from_secs(10);

struct Connection {
    url: String,
    runtime: tokio::runtime::Runtime,
    js: async_nats::jetstream::Context,
}

/// Connections idle between publishes (process-wide, never dropped: see
/// `shared::Db`).
static IDLE: Mutex<Vec<Connection>> = Mutex::new(Vec::new());

fn error(url: &str, doing: &str, e: impl std::fmt::Display) -> Error {
    Error::Shared {
        reason: format!("NATS JetStream at {url}, {doing}: {e}: start nats-server with -js, or check [shared] nats"),
    }
}

/// The stream's name.
pub fn stream(config: &Config) -> String {
    config.shared.stream.clone().unwrap_or_else(|| "RS".into())
}

/// The subject prefix.
pub fn prefix(config: &Config) -> String {
    config
        .shared
        .subject_prefix
        .clone()
        .unwrap_or_else(|| "rs".into())
}

/// The subject of a message of `class` and `subclass`: characters NATS
/// gives a meaning (`.`, `*`, `>`, spaces) become `_`.
pub fn subject(config: &Config, class: &str, subclass: &str) -> String {
    let token = |s: &str| -> String {
        let t: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if t.is_empty() {
            "_".into()
        } else {
            t
        }
    };
    format!("{}.{}.{}", prefix(config), token(class), token(subclass))
}

fn connect(url: &str) -> Result<Connection> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| error(url, "starting the client", e))?;
    let js = runtime.block_on(async {
        let client = tokio::time::timeout(
            TIMEOUT,
            async_nats::ConnectOptions::new()
                .connection_timeout(TIMEOUT)
                .connect(url),
        )
        .await
        .map_err(|_| error(url, "connecting", "timed out"))?
        .map_err(|e| error(url, "connecting", e))?;
        Ok::<_, Error>(async_nats::jetstream::new(client))
    })?;
    Ok(Connection {
        url: url.to_string(),
        runtime,
        js,
    })
}

/// Runs `f` with an idle connection to `url` (made if there is none); a
/// connection that failed is dropped, so the next call connects anew.
fn with<T>(url: &str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let idle = {
        let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter()
            .position(|c| c.url == url)
            .map(|at| idle.swap_remove(at))
    };
    let conn = match idle {
        Some(c) => c,
        None => connect(url)?,
    };
    let out = f(&conn);
    if out.is_ok() {
        let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 64 {
            idle.push(conn);
            return out;
        }
    }
    // A failed (or surplus) connection is closed: shut its runtime down
    // without waiting for its tasks.
    conn.runtime.shutdown_background();
    out
}

/// Makes the stream if it is missing (`rs-relay db init`): every subject
/// under the prefix, on disk.
pub fn ensure_stream(config: &Config, url: &str) -> Result<()> {
    let name = stream(config);
    let subjects = vec![format!("{}.>", prefix(config))];
    with(url, |conn| {
        conn.runtime.block_on(async {
            tokio::time::timeout(
                TIMEOUT,
                conn.js
                    .get_or_create_stream(async_nats::jetstream::stream::Config {
                        name: name.clone(),
                        subjects,
                        storage: async_nats::jetstream::stream::StorageType::File,
                        // Longer than JetStream's 2 minutes: a sender whose
                        // request died with the relay that published it
                        // sends again within this (its next flush).
                        duplicate_window: Duration::from_secs(600),
                        ..Default::default()
                    }),
            )
            .await
            .map_err(|_| error(url, &format!("making stream {name}"), "timed out"))?
            .map(|_| ())
            .map_err(|e| error(url, &format!("making stream {name}"), e))
        })
    })
}

/// One message to publish: its subject, its ID (`Nats-Msg-Id`) and body.
pub struct Publish {
    pub subject: String,
    pub id: String,
    pub body: Vec<u8>,
}

/// Publishes each message and waits for JetStream's acknowledgements, the
/// publishes pipelined (all sent, then all acknowledgements awaited).
/// Returns, for each in order, its stream sequence and whether JetStream
/// already held that ID (a duplicate it dropped), or why it was not
/// stored. `Err` only when no connection could be made.
pub fn publish_all(config: &Config, messages: Vec<Publish>) -> Result<Vec<Result<(u64, bool)>>> {
    let url = config
        .shared
        .nats
        .as_deref()
        .ok_or_else(|| Error::SharedSchema {
            reason: "no NATS server is configured ([shared] nats)".into(),
        })?;
    with(url, |conn| {
        let out = conn.runtime.block_on(async {
            let mut pending = Vec::with_capacity(messages.len());
            for m in messages {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, m.id.as_str());
                let sent = tokio::time::timeout(
                    TIMEOUT,
                    conn.js
                        .publish_with_headers(m.subject, headers, m.body.into()),
                )
                .await;
                pending.push((m.id, sent));
            }
            let mut out = Vec::with_capacity(pending.len());
            for (id, sent) in pending {
                let doing = format!("publishing {id}");
                out.push(match sent {
                    Err(_) => Err(error(url, &doing, "not sent in time")),
                    Ok(Err(e)) => Err(error(url, &doing, e)),
                    Ok(Ok(ack)) => match tokio::time::timeout(TIMEOUT, ack).await {
                        Err(_) => Err(error(url, &doing, "no acknowledgement in time")),
                        Ok(Err(e)) => Err(error(url, &doing, e)),
                        Ok(Ok(a)) => Ok((a.sequence, a.duplicate)),
                    },
                });
            }
            out
        });
        // A connection on which every publish failed is not kept.
        match out.iter().find_map(|r| r.as_ref().err()) {
            Some(e) if out.iter().all(Result::is_err) => Err(Error::Shared {
                reason: e.to_string(),
            }),
            _ => Ok(out),
        }
    })
}
