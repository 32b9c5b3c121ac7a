use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::Common;

/// The service point map: which service lives where.
///
/// At the provider, services publish their locations (`publish`), withdraw
/// them (`withdraw`, one entry or everything a host offers), and the map a
/// client gets is generated from them (`generate`), partitioned for it. At a
/// site, `resolve` lists where a service answers now, in the order to try:
/// each entry's primary, then its backups.
///
/// A map entry names a service (an alphanumeric ID, a version MAJOR.MINOR,
/// and the sphere: the provider's domain name), its epoch, its locations,
/// an optional validity range, optional service-specific data (never
/// executed by rs), and the clients it is for. The epoch changes when the
/// service moves (elsewhere on its host, or to another host, also after
/// its hosts withdrew it), when one more host offers it, or when a restart
/// lost the state clients hold (--lost-state); not on a withdrawal, nor
/// when a stateless service restarts where it was. The published entries
/// live in the spool's
/// spm/registry.xml; a site's map in spm/map.xml. Formats: spool/README.md.
///
/// Exit status: 0 success; 64 bad usage (a field named as wrong); 65 a map
/// or registry that cannot be used (the file and field named); 66 a map
/// file that cannot be read, no location for the service, or no spool (list
/// and resolve never create one); 74 I/O error; 75 the map's source cannot
/// be reached now (the map held stays in use); 77 a file of the spool
/// belongs to another user; 78 bad configuration (fetch with no map source).
#[derive(Parser, Debug)]
#[command(name = "rs-spm", version, verbatim_doc_comment)]
pub struct SpmArgs {
    #[command(flatten)]
    pub common: Common,

    #[command(subcommand)]
    pub command: SpmCommand,
}

/// A service: ID, version, sphere.
#[derive(Args, Debug, Clone)]
pub struct ServiceArgs {
    /// The service ID (letters and digits).
    #[arg(long, value_name = "ID")]
    pub service: String,
    /// Its version, MAJOR.MINOR.
    #[arg(long, value_name = "X.Y")]
    pub version: String,
    /// The sphere: the provider's domain name.
    #[arg(long, value_name = "DOMAIN")]
    pub sphere: String,
}

/// The client a map is made or resolved for.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// The client's ID (default for resolve: this spool's component ID).
    #[arg(long, value_name = "ID")]
    pub client: Option<String>,
    /// The client's topology zone.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// The function of the service the client uses.
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum SpmCommand {
    /// Publish (or publish again) where a host offers a service; prints the
    /// service's epoch, and why it changed if it did.
    Publish {
        #[command(flatten)]
        service: ServiceArgs,
        /// The publishing host's DNS name (with the service, what the
        /// publication is known by).
        #[arg(long, value_name = "NAME")]
        host: String,
        /// The host's address, for clients without DNS.
        #[arg(long, value_name = "IP")]
        address: Option<String>,
        /// The port it answers on (HTTPS), with --path.
        #[arg(long, value_name = "PORT", conflicts_with = "url")]
        port: Option<u16>,
        /// The path below the port (default /rs).
        #[arg(long, value_name = "PATH", requires = "port")]
        path: Option<String>,
        /// The full URL to call instead of a port.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Lower goes first in the map's location order (then by host).
        #[arg(long, value_name = "N", default_value_t = 0)]
        priority: u32,
        /// The entry holds from this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        valid_from: Option<String>,
        /// The entry holds until this time (RFC 3339, exclusive).
        #[arg(long, value_name = "TIME")]
        valid_until: Option<String>,
        /// Service-specific data (text; never executed by rs).
        #[arg(long, value_name = "TEXT", conflicts_with = "data_file")]
        data: Option<String>,
        /// Service-specific data from a file.
        #[arg(long, value_name = "FILE")]
        data_file: Option<PathBuf>,
        /// Only for clients whose ID's last digit is one of these (02468).
        #[arg(long, value_name = "DIGITS")]
        clients: Option<String>,
        /// Only for clients in this topology zone.
        #[arg(long, value_name = "ZONE")]
        zone: Option<String>,
        /// Only for clients using this function of the service.
        #[arg(long, value_name = "NAME")]
        function: Option<String>,
        /// Any of the service's servers will do: each client starts at a
        /// server of its own.
        #[arg(long)]
        equivalent: bool,
        /// This (re)start lost the state clients hold about the service:
        /// the epoch changes.
        #[arg(long)]
        lost_state: bool,
    },
    /// Withdraw what a host published: one service, or (without --service)
    /// everything it offers, as when it shuts down. Publishing again
    /// restores it.
    Withdraw {
        /// The host.
        #[arg(long, value_name = "NAME")]
        host: String,
        /// Only this service (with --version and --sphere).
        #[arg(long, value_name = "ID", requires_all = ["version", "sphere"])]
        service: Option<String>,
        #[arg(long, value_name = "X.Y")]
        version: Option<String>,
        #[arg(long, value_name = "DOMAIN")]
        sphere: Option<String>,
    },
    /// Mark a host heavily loaded (it keeps only the services no other host
    /// offers), or no longer.
    Load {
        /// The host.
        host: String,
        /// Heavily loaded (default), or not (--clear).
        #[arg(long)]
        clear: bool,
    },
    /// List what is published (withdrawn entries marked), with epochs.
    List,
    /// Write the map for a client (default: the whole map, partitions
    /// marked for clients to apply) to stdout or a file.
    Generate {
        #[command(flatten)]
        client: ClientArgs,
        /// Map type: 1 standard, 2 one service (in the header), 3 one
        /// sphere, 4 both.
        #[arg(long = "type", value_name = "N", default_value_t = 1)]
        kind: u32,
        /// Write here (atomically) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Fetch this site's map from [spm] map_url (or --from) into the
    /// spool's spm/map.xml. The map held stays in use when the source is
    /// unreachable (exit 75) or serves an invalid map or an older revision
    /// (exit 65); it is then said to be stale. With neither [spm] map_url
    /// nor --from, exits 78 (a configuration problem).
    Fetch {
        /// The source instead of [spm] map_url: file:///PATH, http:// or
        /// https://HOST/PATH[?ca=FILE][&cert=FILE&key=FILE][&timeout=DURATION].
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// Take a map whose revision is older than the one held (after the
        /// provider rebuilt its registry).
        #[arg(long)]
        accept_older: bool,
    },
    /// Write the map valid now as a DNS zone file (RFC 1035) for ZONE,
    /// which knot, nsd and BIND load as it is: the SOA, the NS (with
    /// --ns-address when it lies in the zone), and per service SRV records
    /// whose priorities give the order to try (backups after the primary)
    /// and TXT records with the epoch, validity, scheme and path; address
    /// records for the locations' hosts in the zone, and a host name
    /// lN.SERVICE.vX-Y.SPHERE for each location known only by its address.
    /// Entries for a partition of clients only with the client named.
    /// Default source: the registry (at the provider), else the map held.
    Export {
        /// The zone's origin, a domain the services' spheres lie in.
        #[arg(long, value_name = "DOMAIN")]
        zone: String,
        /// The zone's name server (default ns.ZONE).
        #[arg(long, value_name = "NAME")]
        ns: Option<String>,
        /// The name server's address (an A or AAAA record in the zone):
        /// needed when the name server lies in the zone, as the default
        /// does; refused when it does not. May be given twice (IPv4 and
        /// IPv6).
        #[arg(long, value_name = "IP")]
        ns_address: Vec<String>,
        /// Seconds records may be cached (never past an entry's validity).
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        ttl: u32,
        /// Export for this client ID (entries partitioned by client ID are
        /// left out otherwise).
        #[arg(long, value_name = "ID")]
        client: Option<String>,
        /// Export for clients in this topology zone.
        #[arg(long, value_name = "ZONE")]
        client_zone: Option<String>,
        /// Export for clients of this function.
        #[arg(long, value_name = "NAME")]
        function: Option<String>,
        /// The map to export instead.
        #[arg(long, value_name = "FILE")]
        map: Option<PathBuf>,
        /// As valid at this time (RFC 3339; default now).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Write here (atomically) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Where SERVICE answers now, in the order to try: one URL a line
    /// (--json: with epoch, entry and data). Exit 66 if nowhere.
    Resolve {
        /// The service ID.
        service: String,
        /// Its version (default: the highest the map offers).
        #[arg(long, value_name = "X.Y")]
        version: Option<String>,
        /// Its sphere (default: any).
        #[arg(long, value_name = "DOMAIN")]
        sphere: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
        /// The map to read (default: the spool's spm/map.xml).
        #[arg(long, value_name = "FILE")]
        map: Option<PathBuf>,
        /// Resolve as of this time (RFC 3339; default now).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
}
