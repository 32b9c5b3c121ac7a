use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::Common;

/// Receive messages from any transport: drop duplicates, deliver here or
/// queue onward, and acknowledge.
///
/// Every message received is stored durably (in the received/ Maildir, or
/// in this site's queue toward its next hop) and its ID remembered before it
/// is acknowledged; a message seen before is dropped and acknowledged again,
/// so retransmissions and copies that came by another path are delivered
/// once. Acknowledgements received are applied. Files that cannot be read
/// are kept in quarantine/ with the reason. A message that expired on the
/// way, claims a creation time in the future, or is older than what the
/// duplicate memory still remembers is refused, never delivered, and its
/// origin told.
///
/// A relay's rules ([[rule]] in config.toml; see `rs-relay rules`) may
/// discard a message (acknowledged as accepted), forward it to a chosen
/// peer, divert it to a handler, or aggregate it; a message to a group
/// configured here ([[group]]) is copied to each member. What the rules
/// hold (handlers to run, aggregates due) and what cannot be delivered
/// (reported to its origin) are dealt with by every command that receives
/// or sends, and by `rs-relay serve` every 5 seconds.
///
/// Everything read from a directory (a stick, a Maildir) is hostile input:
/// symbolic links are never followed, only regular files are read, and
/// nothing outside the directory is read, written or removed.
///
/// Exit status: 0 success (including input quarantined as unreadable); 64
/// bad usage; 65 entries were skipped unread (links, FIFOs, devices,
/// directories named like messages; the rest was taken); 66 the directory
/// cannot be read, or no spool (silent never creates one); 74 I/O error; 75
/// temporary failure: something could not be taken now (queue or disk
/// full), or the directory does not exist (a medium not mounted), try
/// again; 77 a file of the spool belongs to another user; 78 bad
/// configuration.
#[derive(Parser, Debug)]
#[command(name = "rs-relay", version, verbatim_doc_comment)]
pub struct RelayArgs {
    #[command(flatten)]
    pub common: Common,

    #[command(subcommand)]
    pub command: RelayCommand,
}

#[derive(Subcommand, Debug)]
pub enum RelayCommand {
    /// Take every message addressed to this site from DIR (removable media
    /// written by `rs-queue export`): DIR/THIS-COMPONENT/PEER/*.msg. Safe to
    /// run on the same directory any number of times. Works in batches: when
    /// the disk has too little room left above [spool] min_free, what was
    /// taken is removed from DIR, the rest stays for the next run (exit 75).
    Import {
        /// The directory to read (the stick's mount point).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// Leave the files in DIR (by default each is removed once what it
        /// holds is durable here).
        #[arg(long)]
        keep: bool,
    },
    /// Take one mail on stdin: for an MTA's delivery pipe (an alias
    /// `"|rs-relay --spool DIR receive"`, .forward, or a pipe transport).
    /// Exit 0 once it is stored durably, or quarantined with the reason if
    /// it cannot be read (junk is kept, never bounced); exit 75 when the
    /// spool cannot take it now, so the MTA keeps the mail and retries.
    Receive,
    /// Take every mail a mail server delivered into a Maildir: process
    /// DIR/new/, and the mail in DIR/cur/ nobody has seen (no S flag: an
    /// IMAP server or a mail client moved it unread), and mark each seen
    /// in DIR/cur/ only once what it holds is stored durably here (or
    /// quarantined). DIR/new and DIR/cur must be
    /// directories inside DIR: either one a symbolic link is refused (66),
    /// nothing read, moved or removed; a mail that is a link, a FIFO or a
    /// device is skipped unread (65).
    Fetch {
        /// The Maildir (holding new/ and cur/).
        #[arg(long, value_name = "DIR")]
        maildir: PathBuf,
    },
    /// Answer one HTTP request as a CGI program behind a web server (nginx
    /// with fcgiwrap, Apache): a peer's POST of messages and
    /// acknowledgements, answered with a response per message, the
    /// acknowledgements owed to it, and the back-channel messages waiting
    /// for it. The web server does TLS and verifies client certificates; it
    /// passes SSL_CLIENT_VERIFY and SSL_CLIENT_CERT (see README), which are
    /// believed whole: whoever can reach the FastCGI socket can claim to be
    /// any peer, so give it a socket only the web server can reach (the
    /// examples rs-fcgiwrap.socket and nginx-rs.conf). Paths
    /// ending in uploads, uploads/ID or downloads/ID are bulk transfers:
    /// tus 1.0.0 uploads of authorized transfers (passed on to the next
    /// hop at a relay) and downloads with byte ranges. A stdout closed
    /// before the reply is written exits 74, never 0.
    Cgi,
    /// List the relay's rules ([[rule]] in config.toml), in the order they
    /// are evaluated; with `test`, say which rule a message meets and what
    /// would be done with it, without doing it.
    Rules {
        #[command(subcommand)]
        command: Option<RulesCommand>,
    },
    /// List the components not heard from (no heartbeat, registration or
    /// word of them through a relay's heartbeat) for at least DURATION:
    /// those registered here and those heard of here ([registrar]). Exit
    /// 0 whether or not any is silent; --json: one object a line.
    Silent {
        /// Silent for at least this long (90s, 15m, 2h, 7d).
        #[arg(long = "for", value_name = "DURATION", default_value = "1h")]
        for_: String,
    },
    /// Send a control message to COMPONENT (the provider steering a site):
    /// ping, get-configuration (its config.toml comes back as a message
    /// into the Maildir), set-configuration (--set; queue, throttle and
    /// registration settings, checked at the component: an invalid or
    /// unknown one changes nothing), hold or release its forwarding,
    /// deregister. Prints the message ID; `rs-ack status ID` shows what
    /// the component did once its answer is back.
    Control {
        /// The component to steer.
        component: String,
        /// ping, get-configuration, set-configuration, hold, release,
        /// deregister.
        action: String,
        /// For set-configuration: TABLE.KEY=VALUE (a TOML value), as
        /// throttle.max_messages_per_day=500; repeatable.
        #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
        set: Vec<String>,
    },
    /// Run the built-in HTTP server (for tests and small sites): HTTPS with
    /// client certificates when [http] cert, key and client_ca are set,
    /// else plain HTTP (for peers with authentication = "none"). Answers
    /// what `rs-relay cgi` answers, bulk uploads (tus) and downloads
    /// included. Runs until stopped. Bounded by who calls: a new connection
    /// must prove a configured peer within [http] handshake_timeout (TLS
    /// handshake and first request's headers), among at most
    /// max_handshakes pending ones (a new one pushes out the oldest idle
    /// one); a request that proves no peer gets 403, its body unread, and
    /// its connection closed; a peer's requests take one of
    /// max_connections slots while read and handled, and hold at most
    /// max_body of bodies in memory at once; request_timeout bounds a
    /// request's arrival, a pause in an upload's body, an unread reply and
    /// an idle connection.
    Serve {
        /// The address to listen on (`127.0.0.1:8443`; port 0 picks one,
        /// which is printed on stderr).
        #[arg(long, value_name = "ADDR")]
        listen: String,
    },
    /// The database a provider's relays share ([shared] backend =
    /// "postgres"): make its schema (init; also the JetStream stream when
    /// [shared] nats is set), bring it to this version (migrate), or show
    /// what it holds (status). Exit 75 when it cannot be reached, 78 when
    /// its schema does not fit this rs.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Make the schema in an empty database (and the JetStream stream);
    /// on a database already made, migrate it. Safe to run again.
    Init,
    /// Apply the migrations this rs has and the database lacks, one
    /// transaction each, under a lock (two instances never migrate at once).
    Migrate,
    /// Forget the accepted IDs whose keep-until time passed (each is
    /// kept until its message's expiry, and at least [receive]
    /// dedupe_retention): a message created before the newest of them
    /// and not remembered is refused as not provably new. Run it from cron
    /// at one instance.
    Prune,
    /// The schema version and how many rows each table holds: IDs
    /// accepted, learned routes, back-channel messages (and those handed
    /// out awaiting acknowledgement), acknowledgements owed, dead messages.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Which rule a message meets and what would happen to it here: a
    /// message ID (in the outbound areas, dead/ or the received Maildir) or
    /// an envelope FILE.
    Test {
        /// A message ID, or the path of an envelope file.
        #[arg(value_name = "ID|FILE")]
        message: String,
    },
}
