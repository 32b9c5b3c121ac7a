//! A tus 1.0.0 client over an HTTP route: rs uploads a transfer's data to
//! the server it posts to (see `session::tus`), and a relay passes an
//! upload through to its next hop with it. Same TLS, client certificate,
//! timeouts and refusal of redirects as the session route.

use std::io::Read;

use ureq::http;

use super::http::{agent, SetupError};
use crate::config::HttpRoute;
use crate::message::Name;

/// The tus protocol version spoken (the server's too: `session::tus`).
pub const VERSION: &str = "1.0.0";

/// Why a request got no answer that moves the upload on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered this status, saying why.
    Status(u16, String),
    /// No answer: the link, TLS, a timeout.
    Link(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s, why) => write!(f, "answered {s}: {why}"),
            Failure::Link(why) => f.write_str(why),
        }
    }
}

/// An answer, as the client got it: the status, the headers that matter
/// to tus and ranges, and the start of the body (text).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn offset(&self) -> Result<u64, Failure> {
        self.header("Upload-Offset")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Failure::Status(self.status, "no Upload-Offset in the answer".into()))
    }
}

/// The request header that carries the SHA-256 of each chunk of a piece
/// (rs's own, beside tus's `Upload-Checksum`): `sha256 SIZE D0,D1,…`, the
/// digests (base64) of the piece's bytes `SIZE` at a time from its offset,
/// the last chunk possibly shorter. A receiver keeps what arrived of a
/// piece cut short up to its last chunk that matched; a hop passes it on.
pub const CHUNK_CHECKSUMS: &str = "X-Rs-Chunk-Checksums";

/// The most chunk digests one piece may carry (a header line stays a few
/// KiB: under nginx's 8 KiB for 64 of them, which is what rs sends).
pub const MAX_CHUNK_SUMS: usize = 1024;

/// Why an `X-Rs-Chunk-Checksums` value is refused (it comes from anyone).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadChunkSums {
    #[error("{CHUNK_CHECKSUMS} is not \"sha256 SIZE DIGEST,DIGEST,…\"")]
    Form,
    #[error("{CHUNK_CHECKSUMS}: algorithm {0:?} is not supported (sha256)")]
    Algorithm(String),
    #[error("{CHUNK_CHECKSUMS}: the chunk size {0:?} is not a positive number")]
    Size(String),
    /// More digests than [`MAX_CHUNK_SUMS`].
    #[error("{CHUNK_CHECKSUMS} names {0} chunks, more than the {MAX_CHUNK_SUMS} a piece may have")]
    TooMany(usize),
    /// The digest at this index is not one.
    #[error("{CHUNK_CHECKSUMS}: digest {0} is not the base64 of a SHA-256")]
    Digest(usize),
}

/// The SHA-256 of each `size` bytes of a piece, in order from its offset
/// (the last may cover fewer bytes: the piece's end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkSums {
    pub size: u64,
    pub digests: Vec<[u8; 32]>,
}

impl ChunkSums {
    /// The header's value.
    pub fn header(&self) -> String {
        use base64::Engine as _;
        let digests: Vec<String> = self
            .digests
            .iter()
            .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
            .collect();
        format!("sha256 {} {}", self.size, digests.join(","))
    }

    /// Parses the header's value (from anyone: checked whole).
    pub fn parse(text: &str) -> Result<ChunkSums, BadChunkSums> {
        use base64::Engine as _;
        let mut it = text.split_ascii_whitespace();
        let (Some(algorithm), Some(size), Some(list), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(BadChunkSums::Form);
        };
        if algorithm != "sha256" {
            return Err(BadChunkSums::Algorithm(algorithm.to_string()));
        }
        let size = size
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| BadChunkSums::Size(size.to_string()))?;
        let items: Vec<&str> = list.split(',').collect();
        if items.len() > MAX_CHUNK_SUMS {
            return Err(BadChunkSums::TooMany(items.len()));
        }
        let digests = items
            .iter()
            .enumerate()
            .map(|(i, d)| {
                base64::engine::general_purpose::STANDARD
                    .decode(d)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or(BadChunkSums::Digest(i))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChunkSums { size, digests })
    }

    /// Whether they describe a piece of `len` bytes: one digest to each
    /// chunk, the last possibly shorter.
    pub fn fit(&self, len: u64) -> bool {
        len.div_ceil(self.size) == self.digests.len() as u64
    }
}

/// The headers an answer passes on.
const PASSED: [&str; 9] = [
    "Upload-Offset",
    "Upload-Length",
    "Upload-Expires",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Cache-Control",
];

/// A tus client for one route, calling as component `me`.
pub struct Client {
    agent: ureq::Agent,
    me: Name,
}

impl Client {
    pub fn new(route: &HttpRoute, me: &Name) -> Result<Client, SetupError> {
        Ok(Client {
            agent: agent(route)?,
            me: me.clone(),
        })
    }

    /// One request: `method` on `url` with `headers` (and `Tus-Resumable`,
    /// `X-Rs-From`), and a body of `len` bytes read from `body`.
    pub fn call(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<(&mut dyn Read, u64)>,
    ) -> Result<Answer, Failure> {
        let mut b = http::Request::builder()
            .method(method)
            .uri(url)
            .header("Tus-Resumable", VERSION)
            .header("X-Rs-From", self.me.as_str());
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        let sent = match body {
            Some((reader, len)) => {
                let req = b
                    .header("Content-Length", len.to_string())
                    .body(ureq::SendBody::from_reader(reader))
                    .map_err(|e| Failure::Link(format!("{url}: {e}")))?;
                self.agent.run(req)
            }
            None => {
                let req = b
                    .body(ureq::SendBody::none())
                    .map_err(|e| Failure::Link(format!("{url}: {e}")))?;
                self.agent.run(req)
            }
        };
        let resp = sent.map_err(|e| Failure::Link(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let headers = PASSED
            .iter()
            .filter_map(|k| {
                let v = resp.headers().get(*k)?.to_str().ok()?;
                Some((*k, v.to_string()))
            })
            .collect();
        let mut text = Vec::new();
        if method != "HEAD" {
            let _ = resp
                .into_body()
                .into_with_config()
                .limit(64 * 1024)
                .reader()
                .take(4096)
                .read_to_end(&mut text);
        }
        Ok(Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&text).trim().to_string(),
        })
    }

    fn expect(&self, a: Answer, ok: u16) -> Result<Answer, Failure> {
        if a.status == ok {
            Ok(a)
        } else {
            let why = a.text.lines().next().unwrap_or("").to_string();
            Err(Failure::Status(a.status, why))
        }
    }

    /// Where the upload at `url` stands: its offset.
    pub fn offset(&self, url: &str) -> Result<u64, Failure> {
        let a = self.call("HEAD", url, &[], None)?;
        self.expect(a, 200)?.offset()
    }

    /// Uploads `len` bytes from `body` at `offset`, with their SHA-256
    /// (`checksum`, the raw digest) and their chunks': the offset the
    /// upload stands at then.
    pub fn patch(
        &self,
        url: &str,
        offset: u64,
        body: &mut dyn Read,
        len: u64,
        checksum: &[u8],
        chunks: &ChunkSums,
    ) -> Result<u64, Failure> {
        use base64::Engine as _;
        let headers = [
            (CHUNK_CHECKSUMS, chunks.header()),
            (
                "Content-Type",
                "application/offset+octet-stream".to_string(),
            ),
            ("Upload-Offset", offset.to_string()),
            (
                "Upload-Checksum",
                format!(
                    "sha256 {}",
                    base64::engine::general_purpose::STANDARD.encode(checksum)
                ),
            ),
        ];
        let a = self.call("PATCH", url, &headers, Some((body, len)))?;
        self.expect(a, 204)?.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_checksums_read_back_and_refuse_what_is_not_them() {
        let sums = ChunkSums {
            size: 1 << 20,
            digests: vec![openssl::sha::sha256(b"a"), openssl::sha::sha256(b"b")],
        };
        assert_eq!(ChunkSums::parse(&sums.header()), Ok(sums.clone()));
        assert!(sums.fit(2 << 20) && sums.fit((1 << 20) + 1));
        assert!(!sums.fit(1 << 20) && !sums.fit((2 << 20) + 1));
        let one = sums.header().replace(',', " ");
        for bad in [
            "",
            "sha256 1048576",
            "sha1 1048576 AAAA",
            "sha256 0 AAAA",
            "sha256 -1 AAAA",
            "sha256 1048576 AAAA",
            "sha256 1048576 !!!",
            one.as_str(),
        ] {
            assert!(ChunkSums::parse(bad).is_err(), "{bad:?}");
        }
        let d = sums.header().rsplit(',').next().unwrap().to_string();
        let many = vec![d; MAX_CHUNK_SUMS + 1].join(",");
        assert!(ChunkSums::parse(&format!("sha256 1 {many}")).is_err());
    }

    #[test]
    fn a_refused_chunk_checksums_header_says_why() {
        let check = |text: &str, expected: &str| {
            assert_eq!(ChunkSums::parse(text).unwrap_err().to_string(), expected);
        };
        check(
            "sha256 1",
            "X-Rs-Chunk-Checksums is not \"sha256 SIZE DIGEST,DIGEST,…\"",
        );
        check(
            "sha1 1 AAAA",
            "X-Rs-Chunk-Checksums: algorithm \"sha1\" is not supported (sha256)",
        );
        check(
            "sha256 0 AAAA",
            "X-Rs-Chunk-Checksums: the chunk size \"0\" is not a positive number",
        );
        check(
            "sha256 1 !!!",
            "X-Rs-Chunk-Checksums: digest 0 is not the base64 of a SHA-256",
        );
        let many = vec!["AAAA"; MAX_CHUNK_SUMS + 1].join(",");
        check(
            &format!("sha256 1 {many}"),
            "X-Rs-Chunk-Checksums names 1025 chunks, more than the 1024 a piece may have",
        );
    }
}
