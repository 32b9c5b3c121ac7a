use clap::{Parser, Subcommand, ValueEnum};

use super::Common;

/// Look at and manage the outbound queue.
///
/// Messages wait in the spool's outbound areas: queue/ (waiting to be sent,
/// one directory per precedence), hold/ (held by an operator), sent/ (sent,
/// awaiting acknowledgement). What cannot be delivered goes to dead/ with a
/// reason; files that cannot be read go to quarantine/.
///
/// Exit status: 0 success; 64 bad usage; 66 no such message, or no spool
/// (list, show, stats, due and check never create one); 74 I/O error; 75
/// temporary failure; 77 a file of the spool belongs to another user (the
/// message names it, its owner and the chown that fixes it); 78 bad
/// configuration.
#[derive(Parser, Debug)]
#[command(name = "rs-queue", version, verbatim_doc_comment)]
pub struct QueueArgs {
    #[command(flatten)]
    pub common: Common,

    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Create a spool for a site and component (a spool is otherwise
    /// created with default IDs on first use).
    Init {
        /// The site (customer) ID.
        #[arg(long, value_name = "SITE")]
        site: String,
        /// This component's ID. Default: SITE.HOSTNAME.
        #[arg(long, value_name = "ID")]
        component: Option<String>,
        /// A group whose members may read the spool (directories 2750,
        /// files 0640). Default: the owner only (0700, 0600), whatever the
        /// umask.
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
    },
    /// List messages in send order (precedence, then arrival). With --json,
    /// one JSON object per line.
    List {
        /// Which messages: outbound (queued, held, sent), dead or quarantine;
        /// or bulk: the transfers this site sends and receives, and where
        /// each stands (authorized, chunks acknowledged or held, verified).
        #[arg(long, value_enum, default_value_t = ListArea::Outbound)]
        area: ListArea,
    },
    /// Show one message's header and content summary.
    Show {
        /// The message ID.
        id: String,
        /// Print the envelope exactly as stored.
        #[arg(long, conflicts_with = "content")]
        raw: bool,
        /// Print the decoded content bytes (the data, or the alarm or event text).
        #[arg(long)]
        content: bool,
    },
    /// Count messages and bytes per area and precedence; show limits, hold
    /// state and throttle counters.
    Stats,
    /// Stop sending: with no ID, all sending (the manual stop); with IDs,
    /// just those messages (moved to hold/).
    Hold {
        /// Messages to hold.
        ids: Vec<String>,
    },
    /// Resume sending: with no ID, lift the manual stop; with IDs, release
    /// those held messages back to the queue.
    Release {
        /// Messages to release.
        ids: Vec<String>,
    },
    /// Withdraw messages: they move to dead/ with reason `deleted`. The ID
    /// of a bulk transfer sent from here withdraws what of it is queued
    /// and removes this site's copy of its data (a dead transfer's copy,
    /// kept until then, too).
    Delete {
        /// Messages to delete.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Move expired messages to dead/ with reason `expired`.
    Prune,
    /// Show or change the throttle (written to config.toml). Sizes take
    /// units (500k, 10MiB); `none` removes a limit.
    Throttle {
        /// Maximum bytes sent per hour.
        #[arg(long, value_name = "SIZE|none")]
        max_bytes_per_hour: Option<String>,
        /// Maximum bytes sent per local day.
        #[arg(long, value_name = "SIZE|none")]
        max_bytes_per_day: Option<String>,
        /// Maximum messages sent per hour.
        #[arg(long, value_name = "N|none")]
        max_messages_per_hour: Option<String>,
        /// Maximum messages sent per local day.
        #[arg(long, value_name = "N|none")]
        max_messages_per_day: Option<String>,
        /// Largest message rs-send accepts.
        #[arg(long, value_name = "SIZE|none")]
        max_message_bytes: Option<String>,
        /// Allow sending only in this local time window (HH:MM-HH:MM);
        /// repeat for several. Replaces the configured windows.
        #[arg(long, value_name = "HH:MM-HH:MM")]
        window: Vec<String>,
        /// Remove all time windows (send at any time).
        #[arg(long, conflicts_with = "window")]
        no_windows: bool,
    },
    /// List what may be sent now, in send order, as the throttle and holds
    /// allow. With --json, one JSON object: `due` holds the messages (each
    /// as `list` prints it), then the counts and why sending stopped.
    Due,
    /// Verify every outbound file parses; quarantine those that do not, and
    /// clean up after crashed writers.
    Check,
    /// Write what is due to DIR (removable media) for the other side's
    /// `rs-relay import`: messages (in send order, as the throttle and holds
    /// allow; retransmissions whose acknowledgement is overdue; never expired
    /// ones) and the acknowledgements owed. Files appear whole or not at all.
    /// What was written is marked sent, awaiting acknowledgement.
    Export {
        /// The directory to write to (the stick's mount point). It must
        /// exist: a medium that is not mounted is a temporary failure (exit
        /// 75), and nothing is marked sent.
        #[arg(long, value_name = "DIR")]
        to: std::path::PathBuf,
        /// Only for this peer (default: every configured peer).
        #[arg(long, value_name = "PEER")]
        peer: Option<String>,
    },
    /// Internal: run by `rs-send` to seal bulk data at queue time (an age
    /// file for the [bulk] encrypt_to recipients). Reads the data on
    /// standard input, writes and fsyncs FILE, prints the data's size,
    /// digest and the sealing header as one JSON object.
    #[command(hide = true)]
    Seal {
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
        /// A recipient (age1...) or a file of them; repeat for several.
        #[arg(long = "to", value_name = "RECIPIENT", required = true)]
        to: Vec<String>,
    },
    /// Send what is due over each peer's configured routes (dir: routes
    /// write to their directory, which must exist). A message a peer did
    /// not acknowledge within its ack_timeout goes again to its backup
    /// (backup = "PEER"), and what waits for a peer whose link failed goes
    /// to the backup at once. What expired, or waited for a peer past its
    /// hold time, goes to dead/ and its origin is told. An spm:SERVICE
    /// route tries the service's locations from the site's map in order,
    /// and fetches the map again once when all fail. A link that fails for
    /// want of a connection or because its client certificate is rejected
    /// gets one repair attempt (a new configuration or certificate from
    /// [recovery] config_url; see spool/README.md), then a new test. A new
    /// configuration that runs a program or names a key file the one in
    /// use does not is refused unless RS_CONFIG_TRUST (programs, keys) in
    /// the environment allows it; so is a plain http:// configuration URL
    /// off [recovery] site_networks. Bulk
    /// transfers authorized over an HTTP route are uploaded (tus, resumed
    /// from where the server says they stand; progress on a terminal).
    /// Exit status 75 if something due could not be sent (try again later);
    /// 78 if a repair was refused on those terms (nothing installed).
    Flush {
        /// Only to this peer (default: every configured peer).
        #[arg(long, value_name = "PEER")]
        peer: Option<String>,
        /// Try peers whose link failed recently now, instead of waiting for
        /// the retry time (one minute after a failure, doubling up to the
        /// peer's retry_cap).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListArea {
    Outbound,
    Dead,
    Quarantine,
    Bulk,
}
