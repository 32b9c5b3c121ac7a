//! Why bulk could not read what it was given: a chunk's parameters, a
//! held message, the sealing of a transfer, a chunk's data. Each message
//! is what a sender is told, or the reason a message is set aside, as it
//! was worded before it was typed: callers quote it unchanged.

use std::path::PathBuf;

/// Why a message, a chunk or a sealed transfer cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `mime` is not the type of a chunk ([`CHUNK_TYPE`](super::CHUNK_TYPE)).
    #[error("`{}` is not a chunk", .mime.escape_debug())]
    NotChunkType { mime: String },
    /// The chunk type `mime` names a digest that is not one.
    #[error("a chunk whose digest is not one")]
    ChunkDigest { mime: String },
    /// The chunk type `mime` lacks its transfer or index.
    #[error("a chunk without a valid transfer and index")]
    ChunkUnnamed { mime: String },
    /// A held message's file at `path` that cannot be read.
    #[error("{source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A message, or a chunk's data envelope, that does not parse.
    #[error("{0}")]
    Message(#[from] crate::message::Error),
    /// A held message at `path` larger than a small message, whose data
    /// (`size` bytes) is more than a chunk holds.
    #[error("{size} bytes of data: not a chunk")]
    NotAChunk { path: PathBuf, size: u64 },
    /// A chunk's data that cannot be read.
    #[error("{0}")]
    ChunkData(std::io::Error),
    /// A sealed transfer, and `component` has no `[bulk] identity`.
    #[error(
        "the data is sealed, and {component} has no [bulk] identity to open it \
         (age-keygen -o FILE, then identity = \"FILE\")"
    )]
    NoIdentity { component: String },
    /// A sealed transfer's header, kept in its state, that is not base64.
    #[error("its sealing header: {0}")]
    SealingHeader(base64::DecodeError),
    /// A sealing that does not open with this site's identity.
    #[error(transparent)]
    Seal(#[from] super::seal::Error),
    /// A new transfer of `size` bytes that does not fit under the
    /// `max_bytes` of `scope` (`[queue]` or `[queue.PRECEDENCE]`), with
    /// `queued` bytes queued and `waiting` bytes of transfers not ended.
    #[error(
        "a bulk transfer of {size} bytes does not fit under {scope} max_bytes = {max}: \
         {queued} bytes are queued and {waiting} bytes of transfers wait"
    )]
    NoRoom {
        size: u64,
        scope: String,
        max: u64,
        queued: u64,
        waiting: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages a sender is told, or a quarantined message's reason,
    /// word for word as before they were typed.
    #[test]
    fn messages_are_the_reasons_people_read() {
        let io = || std::io::Error::other("disk on fire");
        for (e, message) in [
            (
                Error::NotChunkType {
                    mime: "text/plain; x=\"y\"".into(),
                },
                "`text/plain; x=\\\"y\\\"` is not a chunk",
            ),
            (
                Error::ChunkDigest { mime: "m".into() },
                "a chunk whose digest is not one",
            ),
            (
                Error::ChunkUnnamed { mime: "m".into() },
                "a chunk without a valid transfer and index",
            ),
            (
                Error::Read {
                    path: "divert/x.msg".into(),
                    source: io(),
                },
                "disk on fire",
            ),
            (
                Error::NotAChunk {
                    path: "divert/x.msg".into(),
                    size: 17_000_000,
                },
                "17000000 bytes of data: not a chunk",
            ),
            (Error::ChunkData(io()), "disk on fire"),
            (
                Error::NoIdentity {
                    component: "hq".into(),
                },
                "the data is sealed, and hq has no [bulk] identity to open it \
                 (age-keygen -o FILE, then identity = \"FILE\")",
            ),
            (
                Error::NoRoom {
                    size: 5000,
                    scope: "[queue.bulk]".into(),
                    max: 8000,
                    queued: 2000,
                    waiting: 1500,
                },
                "a bulk transfer of 5000 bytes does not fit under [queue.bulk] max_bytes = 8000: \
                 2000 bytes are queued and 1500 bytes of transfers wait",
            ),
            (
                Error::Seal(super::super::seal::Error::HeaderAltered),
                "the sealing header was altered (its MAC does not match)",
            ),
        ] {
            assert_eq!(e.to_string(), message);
        }
        let header =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, "*").unwrap_err();
        assert!(Error::SealingHeader(header)
            .to_string()
            .starts_with("its sealing header: "));
    }
}
