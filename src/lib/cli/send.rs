use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use super::Common;

/// Queue a message durably for delivery, and print its ID.
///
/// The message is built from the options and the content (from --file, or
/// stdin), given a unique ID, written to the spool and fsynced before the ID
/// is printed: once rs-send exits 0, the message is delivered exactly once or
/// reported undeliverable (see rs-ack(1)).
///
/// Data larger than [bulk] threshold (4 KiB unless configured) goes as a
/// bulk transfer: rs-send keeps a copy (bulk/out/ID.data) and queues a
/// bulk-data-request; every hop may refuse it, the receiver answers ok,
/// deferred or rejected, then asks for the data in chunks and verifies it
/// whole before it is delivered as message ID. `rs-ack status ID` and
/// `rs-queue list --area bulk` show where a transfer stands. Data to a
/// group or to several destinations goes as one message whatever its size.
///
/// When the queue is full, the eviction order decides: expired messages go
/// first, then the oldest bulk messages of normal persistence; a bulk message
/// is rejected rather than displace others; an urgent message displaces the
/// oldest normal message of normal persistence; otherwise the new message is
/// rejected. Every discarded or rejected message is kept in the spool's dead/
/// area with its reason.
///
/// Exit status: 0 queued; 64 bad usage; 65 the message is larger than the
/// throttle's max_message_bytes or otherwise invalid; 66 the content file
/// cannot be read; 75 rejected because the queue is full or the disk nearly
/// full (try again later); 77 a file of the spool belongs to another user
/// (the message names it, its owner and the chown that fixes it); 78 bad
/// configuration.
#[derive(Parser, Debug)]
#[command(name = "rs-send", version, verbatim_doc_comment)]
pub struct SendArgs {
    #[command(flatten)]
    pub common: Common,

    /// What the data is (e.g. `inventory`): relays filter and route on it.
    #[arg(long, value_name = "CLASS")]
    pub class: String,

    /// The kind of data within the class (e.g. `patch`, `heartbeat`).
    #[arg(long, value_name = "SUBCLASS")]
    pub subclass: String,

    /// The content element: `data` (bytes of any MIME type, binary allowed),
    /// `alarm` (stateful) or `event` (stateless notification).
    #[arg(long, value_enum, default_value_t = Kind::Data)]
    pub kind: Kind,

    /// Severity of an alarm or event: critical, major, minor, warning, info.
    #[arg(long, value_name = "SEVERITY", default_value = "info")]
    pub severity: String,

    /// Alarm or event type (e.g. `disk-full`). Default: the subclass.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,

    /// Alarm state (e.g. `raised`, `cleared`).
    #[arg(long, value_name = "STATE", default_value = "raised")]
    pub state: String,

    /// The originating instance an alarm is about (e.g. a host's ID).
    #[arg(long, value_name = "INSTANCE")]
    pub instance: Option<String>,

    /// Alarm or event text; for `data`, the data itself (as UTF-8 bytes).
    /// Without it, the content is read from the file given, or from stdin.
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,

    /// Send order: urgent before normal before bulk.
    #[arg(long, value_name = "PRECEDENCE", default_value = "normal",
          value_parser = ["urgent", "normal", "bulk"])]
    pub precedence: String,

    /// Time to live (e.g. `30m`, `2h`, `7d`): after it the message is
    /// worthless, never sent, and pruned to dead/.
    #[arg(long, value_name = "DURATION", conflicts_with = "expires")]
    pub ttl: Option<String>,

    /// Absolute expiry time (RFC 3339, e.g. 2026-12-01T00:00:00Z, or @UNIX-SECONDS).
    #[arg(long, value_name = "TIME")]
    pub expires: Option<String>,

    /// `high`: never evicted to make room for others (only expiry removes it).
    #[arg(long, value_name = "PERSISTENCE", default_value = "normal",
          value_parser = ["normal", "high"])]
    pub persistence: String,

    /// A destination (back-channel message): a component ID, or
    /// `group:NAME`. Repeat for several. Without --to the message goes on
    /// the forward path, with this component as its source.
    #[arg(long = "to", value_name = "DEST")]
    pub to: Vec<String>,

    /// Read the content from FILE instead of stdin.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// MIME type of `data` content.
    #[arg(long, value_name = "TYPE", default_value = "application/octet-stream")]
    pub mime_type: String,

    /// The ID of the message this one answers.
    #[arg(long, value_name = "ID")]
    pub in_reply_to: Option<String>,

    /// Identity of the originating instance and event, so that a receiver
    /// keeps one of the reports two redundant senders make of one event.
    #[arg(long, value_name = "KEY")]
    pub origin_key: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Data,
    Alarm,
    Event,
}
