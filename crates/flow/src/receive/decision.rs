//! What the receive path may decide of one inbound message ([`Decision`],
//! and where a held message is kept: [`Keep`]), and what it is decided
//! from ([`Facts`], [`When`]): the words the pipeline and its extensions
//! share (`decide` decides; `extension` lets features claim).

use std::time::Duration;

use crate::message::{Header, Name, ResponseStatus, Target};
use crate::time::Timestamp;

/// What is known of one message before deciding, besides its header.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub header: &'a Header,
    /// The peer whose route carried it.
    pub from: &'a Name,
    /// Its ID is remembered, or came earlier in this batch.
    pub id_seen: bool,
    /// Its origin key (if it has one) was delivered here already, or came
    /// earlier in this batch.
    pub origin_key_seen: bool,
    /// Why this site, as a relay, takes nothing onward now (it is over its
    /// throttle), if it is.
    pub relay_stopped: Option<&'a str>,
    /// The content's kind (`alarm`, `event`, `data`, ...) and severity.
    pub kind: &'a str,
    pub severity: Option<&'a str>,
    /// The MIME type of its data, when it carries data.
    pub mime: Option<&'a str>,
    /// Its envelope was signed by the peer's key (or the peer is not
    /// protected).
    pub signed: bool,
}

/// The receiver's time, as the duplicate memory sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct When {
    /// This run's clock.
    pub now: Timestamp,
    /// The later of the clock and the evidence of accepted creation times.
    pub receive_time: Timestamp,
    /// Newest creation time among forgotten IDs.
    pub horizon: Option<Timestamp>,
    pub max_clock_skew: Duration,
    /// Minutes since local midnight (for rules' windows).
    pub minute_of_day: u32,
}

/// What to do with one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Seen before: drop it, acknowledge it again. `by_origin_key` says it
    /// is a redundant sender's report of an event delivered already (its
    /// own ID is then remembered too).
    Duplicate { by_origin_key: bool },
    /// This site is its destination: deliver it into the Maildir.
    Deliver,
    /// Queue it toward `peer`; `pinned` when a rule chose the peer (the
    /// choice is kept with the message: routing would send it elsewhere).
    Forward { peer: Name, pinned: bool },
    /// Not now, or not as sent: answered with `status` and `code` (the
    /// sender keeps its copy: it retries, or fetches a fresh map first).
    /// Nothing is kept or remembered.
    NotTaken {
        status: ResponseStatus,
        code: &'static str,
        reason: String,
    },
    /// Discard it on purpose (the rule labelled `label`): acknowledged as
    /// accepted, remembered, counted, never passed on.
    Discard { label: String },
    /// Copy it to each of these (the members of a group configured here,
    /// and the message's other destinations), each decided on its own.
    Expand { targets: Vec<Target> },
    /// Keep it for an extension, under `label` (a rule's, or the
    /// extension's own), as `keep` says; `learn`: the route back to its
    /// source is learned from it, as from a message delivered or passed on.
    Hold {
        label: String,
        keep: Keep,
        learn: bool,
    },
    /// Not from whom it may come (SPEC.md section 13a: a control message
    /// or registration answer not made by this site's registrar, or going
    /// up where it may only come down): kept in quarantine with the reason,
    /// refused, its origin told.
    Refuse { reason: String },
    /// Refuse it for good, with the reason; its origin is told.
    /// `remember` says whether its ID is remembered (so a retransmission is
    /// a duplicate): not for messages refused as not provably new, which
    /// would be refused again anyway.
    Reject { reason: String, remember: bool },
}

/// How a message held for an extension is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// In `divert/LABEL/`, for the extension's handler.
    Divert,
    /// In `aggregate/LABEL/`, for the next aggregate.
    Aggregate,
    /// Its data written in place by the extension that reads it so (see
    /// `Extension::reads_data_in_place`); in `divert/LABEL/` when that
    /// cannot be done now.
    InPlace,
}
