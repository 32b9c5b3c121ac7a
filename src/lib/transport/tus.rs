//! A tus 1.0.0 client over an HTTP route: rs uploads a transfer's data to
//! the server it posts to (see `session::tus`), and a relay passes an
//! upload through to its next hop with it. Same TLS, client certificate,
//! timeouts and refusal of redirects as the session route.

use std::io::Read;

use ureq::http;

use super::http::{agent, SetupError};
use crate::config::HttpRoute;
use crate::message::Name;

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
            .header("Tus-Resumable", crate::session::tus::VERSION)
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
    /// (`checksum`, the raw digest): the offset the upload stands at then.
    pub fn patch(
        &self,
        url: &str,
        offset: u64,
        body: &mut dyn Read,
        len: u64,
        checksum: &[u8],
    ) -> Result<u64, Failure> {
        use base64::Engine as _;
        let headers = [
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
