use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::Common;

/// The delivery guarantee: acknowledgements owed and received, and the
/// status of a message.
///
/// A receiver acknowledges a message once it holds it durably; the sender
/// then discards its copy. Without an acknowledgement in time the sender
/// sends again (the wait doubles up to a cap), until the message is
/// acknowledged or expires; an expired or refused message is reported dead.
///
/// Exit status: 0 success; 64 bad usage; 65 (apply) entries of the
/// directory were skipped unread (links, FIFOs, devices); 66 unknown message
/// ID, or no spool (status, wait and overdue never create one); 69 (wait)
/// the message is dead: undeliverable; 75 (wait) timed out; 74 I/O error;
/// 77 a file of the spool belongs to another user.
#[derive(Parser, Debug)]
#[command(name = "rs-ack", version, verbatim_doc_comment)]
pub struct AckArgs {
    #[command(flatten)]
    pub common: Common,

    #[command(subcommand)]
    pub command: AckCommand,
}

#[derive(Subcommand, Debug)]
pub enum AckCommand {
    /// Batch the acknowledgements owed into acknowledgement messages toward
    /// each peer (export and flush also do this for the peer they serve).
    Emit {
        /// Only those owed to this peer.
        #[arg(long, value_name = "PEER")]
        peer: Option<String>,
    },
    /// Apply received acknowledgements: discard the copies of messages the
    /// next hop now holds. An acknowledgement for an ID never sent to that
    /// peer changes nothing and is logged.
    Apply {
        /// Read acknowledgement files from DIR (as written by `rs-queue
        /// export`: DIR/THIS-COMPONENT/PEER/ack-*.msg).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// Leave the files in DIR.
        #[arg(long)]
        keep: bool,
    },
    /// Where a message stands: queued, sent N times (last at T), acknowledged
    /// (by whom, when; delivered where), or dead (why).
    Status {
        /// The message ID.
        id: String,
    },
    /// Wait until a message is acknowledged (exit 0), dead (69) or the
    /// timeout passes (75).
    Wait {
        /// The message ID.
        id: String,
        /// How long to wait (e.g. 30s, 10m).
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        timeout: String,
        /// How often to look.
        #[arg(long, value_name = "DURATION", default_value = "1s")]
        interval: String,
    },
    /// List sent messages whose acknowledgement is overdue (sent longer ago
    /// than their peer's ack timeout). With --json, one object per line.
    Overdue,
}
