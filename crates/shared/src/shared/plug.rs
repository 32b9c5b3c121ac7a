//! The shared backend's parts in receiving, installed on the spool by the
//! programs: the receive state in PostgreSQL (`[shared] backend =
//! "postgres"`), and final delivery published to JetStream (`[shared]
//! nats`).

use std::collections::HashSet;

use super::jetstream::{self, Publish, MAX_PAYLOAD};
use crate::receive::delivery::{Delivered, Delivery, Offered};
use crate::receive::state::{Backend, Shared};
use crate::spool::{Result, Spool};
use crate::time::Timestamp;

/// The receive state in the shared database, where configured.
pub struct Postgres;

impl Backend for Postgres {
    fn open<'s>(&self, spool: &'s Spool, now: Timestamp) -> Result<Option<Box<dyn Shared + 's>>> {
        if !super::in_database(spool.config()) {
            return Ok(None);
        }
        Ok(Some(Box::new(super::pg::PgShared::open(spool, now)?)))
    }
}

/// Final delivery published to JetStream, where configured.
pub struct JetStream;

impl Delivery for JetStream {
    fn active(&self, spool: &Spool) -> bool {
        spool.config().shared.nats.is_some()
    }

    /// Publishes, pipelined, and records each publish in the database at
    /// once; what was published by a batch that never committed is not
    /// published again. What is too large for a JetStream message goes
    /// into the Maildir; what JetStream did not take is `Later`.
    fn deliver(
        &self,
        spool: &Spool,
        state: &mut dyn Shared,
        offered: &[Offered<'_>],
        now: Timestamp,
        log: &dyn Fn(String),
    ) -> Result<Vec<Delivered>> {
        let config = spool.config();
        let ids: Vec<&str> = offered.iter().map(|o| o.header.id.as_str()).collect();
        let before: HashSet<String> = super::published_among(config, &ids)?;
        let mut out = vec![Delivered::Maildir; offered.len()];
        let mut batch: Vec<(usize, Publish)> = Vec::new();
        for (i, o) in offered.iter().enumerate() {
            let mut h = o.header.clone();
            h.stamp_received(&config.component, now);
            if before.contains(h.id.as_str()) {
                log(format!(
                    "{}: published to JetStream before, by a batch that did not commit: not again",
                    h.id
                ));
                out[i] = Delivered::Taken;
                continue;
            }
            let mut body = Vec::new();
            if o.size > MAX_PAYLOAD
                || (o.write)(&h, &mut body).is_err()
                || body.len() as u64 > MAX_PAYLOAD
            {
                log(format!(
                    "{} is larger than a JetStream message may be ({MAX_PAYLOAD} bytes): delivered into the Maildir instead",
                    h.id
                ));
                continue;
            }
            let subject = jetstream::subject(config, h.class.as_str(), h.subclass.as_str());
            batch.push((
                i,
                Publish {
                    subject,
                    id: h.id.to_string(),
                    body,
                },
            ));
        }
        if batch.is_empty() {
            return Ok(out);
        }
        let (indexes, messages): (Vec<usize>, Vec<Publish>) = batch.into_iter().unzip();
        let names: Vec<(String, String)> = messages
            .iter()
            .map(|m| (m.id.clone(), m.subject.clone()))
            .collect();
        let results = match jetstream::publish_all(config, messages) {
            Ok(r) => r,
            Err(e) => {
                log(format!("{} message(s) not taken now: {e}", indexes.len()));
                for &i in &indexes {
                    out[i] = Delivered::Later(e.to_string());
                }
                return Ok(out);
            }
        };
        let mut published = Vec::new();
        for ((&i, (id, subject)), result) in indexes.iter().zip(names).zip(results) {
            out[i] = match result {
                Ok((sequence, _)) => {
                    // As long as the duplicate memory would keep its ID.
                    let keep = state.keep_until(offered[i].header.qos().expiry)?;
                    published.push((id, subject, sequence, keep));
                    Delivered::Taken
                }
                Err(e) => {
                    log(format!("{id} not taken now: {e}"));
                    Delivered::Later(e.to_string())
                }
            };
        }
        if let Err(e) = super::record_published(config, &published, now) {
            // Published: JetStream's window stops a second copy sent soon;
            // the batch's commit decides.
            log(format!("{} publish(es) not recorded: {e}", published.len()));
        }
        Ok(out)
    }
}
