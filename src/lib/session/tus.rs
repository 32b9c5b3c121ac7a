//! Uploads and downloads of bulk transfers over HTTP, beside the session
//! endpoint: `rs-relay serve` and `rs-relay cgi` answer them with
//! [`handle`] when the request path ends in `uploads`, `uploads/T` or
//! `downloads/T` (T a transfer's ID).
//!
//! **Uploads speak tus 1.0.0** (<https://tus.io/protocols/resumable-upload>)
//! with the creation, checksum (`sha1`, `sha256`), expiration and
//! termination extensions, so a standard tus client can upload, resume
//! after a broken link, and give up. An upload is taken only for a
//! transfer authorized here (its bulk request came first and the receiver
//! answered `ok`), and only from the component it comes from or the
//! neighbour its request came through: a creation (`POST …/uploads`) names
//! the transfer in `Upload-Metadata` (`transfer`, base64 of its ID) and its
//! length; the upload's URL is `…/uploads/T`, which the receiver's `ok`
//! names too (`location`). Each piece (`PATCH`) is written in place at its
//! offset and made durable before it is answered; the last one completes
//! the transfer (the digest checked whole, the data delivered, the sender
//! told). A piece with a checksum that does not match is answered 460 and
//! nothing of it counts, unless it came with the SHA-256 of each of its
//! chunks (`X-Rs-Chunk-Checksums`, which rs sends): the chunks before the
//! break (the body cut short, a chunk or the whole not matching) that
//! matched are then kept, so a broken link costs one chunk, not a piece.
//!
//! **Downloads** (`GET …/downloads/T`) give a transfer this site sends to
//! its receiver or the peer its messages go to, with byte ranges (`Range:
//! bytes=N-`, 206), so `curl -C -` resumes one.

use std::io::Read;

use super::{identify, Identity, Response, ResponseBody};
use crate::bulk::receiver::{self, Algorithm, Patch, Refused, Upload};
use crate::message::Name;
use crate::spool::Spool;
use crate::time::Clock;
use crate::transport::tus::{ChunkSums, Client, CHUNK_CHECKSUMS};

/// The tus protocol version spoken (`transport::tus::VERSION`).
pub use crate::transport::tus::VERSION;
/// The tus extensions supported.
pub const EXTENSIONS: &str = "creation,checksum,expiration,termination";

/// What a request path names besides the session endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `…/uploads`: where uploads are created.
    Uploads,
    /// `…/uploads/T`: the upload of transfer T.
    Upload(String),
    /// `…/downloads/T`: the data of transfer T.
    Download(String),
}

/// The resource `path` names (its query left out), if any.
pub fn resource(path: &str) -> Option<Resource> {
    let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
    let mut parts = path.rsplit('/');
    let last = parts.next()?;
    if last == "uploads" {
        return Some(Resource::Uploads);
    }
    match parts.next()? {
        "uploads" => Some(Resource::Upload(last.to_string())),
        "downloads" => Some(Resource::Download(last.to_string())),
        _ => None,
    }
}

/// A request for a [`Resource`], as the web server (or the built-in
/// server) hands it over.
pub struct Call<'a> {
    pub method: &'a str,
    /// The request's path (for the `Location` of a created upload).
    pub path: &'a str,
    pub resource: Resource,
    pub identity: Identity,
    /// A request header's value, by its lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    pub body: &'a mut dyn Read,
}

fn tus(r: Response) -> Response {
    r.with("Tus-Resumable", VERSION)
}

fn refused(r: Refused) -> Response {
    tus(Response::text(r.status, format!("{}\n", r.why)))
}

fn upload_headers(r: Response, u: &Upload) -> Response {
    r.with("Upload-Offset", u.offset.to_string())
        .with("Upload-Expires", u.expires.to_http_date())
}

/// Answers one call. See the module documentation.
pub fn handle(spool: &Spool, call: Call<'_>, clock: &Clock, log: &dyn Fn(String)) -> Response {
    let header = call.header;
    let method = header("x-http-method-override")
        .filter(|_| call.method == "POST")
        .unwrap_or_else(|| call.method.to_string());
    let config = spool.config();
    if method == "OPTIONS" {
        let mut r = tus(Response::empty(204))
            .with("Tus-Version", VERSION)
            .with("Tus-Extension", EXTENSIONS)
            .with("Tus-Checksum-Algorithm", "sha1,sha256");
        if let Some(max) = config.bulk.max_size {
            r = r.with("Tus-Max-Size", max.0.to_string());
        }
        return r;
    }
    let is_tus = !matches!(call.resource, Resource::Download(_));
    if is_tus && header("tus-resumable").as_deref() != Some(VERSION) {
        return tus(Response::text(
            412,
            format!("this server speaks tus {VERSION} (Tus-Resumable: {VERSION})\n"),
        ))
        .with("Tus-Version", VERSION);
    }
    let claimed = header("x-rs-from");
    let caller = match identify(config, &call.identity, claimed.as_deref()) {
        Ok(p) => p.id.clone(),
        Err(why) => {
            log(format!("{method} {} refused (403): {why}", call.path));
            return tus(Response::text(403, format!("forbidden: {why}\n")));
        }
    };
    let now = clock.now();
    let answer = match (&call.resource, method.as_str()) {
        (Resource::Uploads, "POST") => create(spool, &call, &caller, now, log),
        (Resource::Upload(t), m @ ("HEAD" | "PATCH" | "DELETE")) if passes_through(spool, t) => {
            pass(spool, t, m, call.body, header, &caller, now)
        }
        (Resource::Upload(t), "HEAD") => receiver::upload_status(spool, t, &caller, now, log)
            .map(|u| {
                upload_headers(tus(Response::empty(200)), &u)
                    .with("Upload-Length", u.size.to_string())
                    .with("Cache-Control", "no-store")
            })
            .unwrap_or_else(refused),
        (Resource::Upload(t), "PATCH") => patch(spool, t, call.body, header, &caller, now, log),
        (Resource::Upload(t), "DELETE") => {
            match receiver::upload_terminate(spool, t, &caller, now, log) {
                Ok(()) => tus(Response::empty(204)),
                Err(r) => refused(r),
            }
        }
        (Resource::Download(t), "GET" | "HEAD") => download(spool, t, header, &caller),
        (Resource::Uploads, _) => tus(Response::text(405, "uploads are created with POST\n"))
            .with("Allow", "POST, OPTIONS"),
        (Resource::Upload(_), _) => {
            tus(Response::text(405, "an upload takes HEAD, PATCH, DELETE\n"))
                .with("Allow", "HEAD, PATCH, DELETE, OPTIONS")
        }
        (Resource::Download(_), _) => {
            Response::text(405, "a download takes GET\n").with("Allow", "GET, HEAD")
        }
    };
    if answer.status >= 400 {
        log(format!(
            "{method} {} from {caller}: {} {}",
            call.path,
            answer.status,
            String::from_utf8_lossy(answer.bytes()).trim_end()
        ));
    }
    answer
}

/// `Upload-Metadata`: comma-separated `key base64-value` pairs.
fn metadata(text: &str) -> Vec<(String, Option<String>)> {
    use base64::Engine as _;
    text.split(',')
        .filter_map(|pair| {
            let mut it = pair.trim().splitn(2, ' ');
            let key = it.next().filter(|k| !k.is_empty())?;
            let value = it.next().map(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
            });
            Some((key.to_string(), value.flatten()))
        })
        .collect()
}

/// Whether transfer `t` only passes through this site (a hop's
/// reservation, no state as its receiver): its upload goes on to the next
/// hop as it comes, and nothing of it is kept here.
fn passes_through(spool: &Spool, t: &str) -> bool {
    let bulk = spool.root().join("bulk");
    crate::message::MessageId::parse(t).is_ok()
        && !bulk.join("in").join(format!("{t}.json")).exists()
        && bulk.join("hop").join(format!("{t}.json")).exists()
}

/// Passes one request of transfer `t`'s upload on to the next hop, as
/// this site, streaming the body; the next hop's answer is the answer.
fn pass(
    spool: &Spool,
    t: &str,
    method: &str,
    body: &mut dyn Read,
    header: &dyn Fn(&str) -> Option<String>,
    caller: &Name,
    now: crate::time::Timestamp,
) -> Response {
    let (peer, route) = match crate::bulk::hop::upload_route(spool, t, caller, now) {
        Ok(x) => x,
        Err((status, why)) => return tus(Response::text(status, format!("{why}\n"))),
    };
    let client = match Client::new(&route, &spool.config().component) {
        Ok(c) => c,
        Err(e) => return tus(Response::text(502, format!("{e}\n"))),
    };
    let url = format!(
        "{}/{}{t}",
        route.url.trim_end_matches('/'),
        crate::bulk::UPLOADS
    );
    // The chunks' digests go on too: the next hop keeps what arrived of a
    // piece cut short on either link, as this site would.
    let chunks = CHUNK_CHECKSUMS.to_ascii_lowercase();
    let headers: Vec<(&str, String)> = [
        "content-type",
        "upload-offset",
        "upload-checksum",
        chunks.as_str(),
    ]
    .into_iter()
    .filter_map(|name| Some((name, header(name)?)))
    .collect();
    let body = if method == "PATCH" {
        let Some(len) = header("content-length").and_then(|v| v.trim().parse::<u64>().ok()) else {
            return tus(Response::text(
                411,
                "a PATCH passed on needs its Content-Length\n",
            ));
        };
        Some((body, len))
    } else {
        None
    };
    // A body that ends early is passed on as broken, never as an end
    // (the next hop then keeps what it can verify of it).
    let mut exact;
    let body = match body {
        Some((body, len)) => {
            exact = Exact { body, left: len };
            Some((&mut exact as &mut dyn Read, len))
        }
        None => None,
    };
    match client.call(method, &url, &headers, body) {
        Ok(a) => {
            let mut r = if a.text.is_empty() || a.status == 204 {
                Response::empty(a.status)
            } else {
                Response::text(a.status, format!("{}\n", a.text))
            };
            r.headers = a.headers;
            r
        }
        Err(e) => tus(Response::text(
            502,
            format!("the next hop {peer} cannot be reached: {e}\n"),
        )),
    }
}

/// A body of `left` bytes more: ending before them is an error.
struct Exact<'a> {
    body: &'a mut dyn Read,
    left: u64,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.body.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the body ended {} bytes short of its Content-Length",
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Creation: the upload of an authorized transfer, named in the metadata.
fn create(
    spool: &Spool,
    call: &Call<'_>,
    caller: &Name,
    now: crate::time::Timestamp,
    log: &dyn Fn(String),
) -> Response {
    let header = call.header;
    if header("upload-defer-length").is_some() {
        return tus(Response::text(
            400,
            "Upload-Defer-Length is not supported: a transfer's length is known when it is authorized\n",
        ));
    }
    let Some(length) = header("upload-length").and_then(|v| v.trim().parse::<u64>().ok()) else {
        return tus(Response::text(
            400,
            "Upload-Length is missing or not a number\n",
        ));
    };
    let meta = metadata(&header("upload-metadata").unwrap_or_default());
    let Some(t) = meta
        .iter()
        .find(|(k, _)| k == "transfer")
        .and_then(|(_, v)| v.clone())
    else {
        return tus(Response::text(
            403,
            "an upload is taken only for an authorized bulk transfer: send its bulk request first (rs-send), then name the transfer's ID in Upload-Metadata (transfer <base64 of the ID>)\n",
        ));
    };
    let upload = if passes_through(spool, &t) {
        // Created here; the next hop says where the upload stands.
        let a = pass(
            spool,
            &t,
            "HEAD",
            &mut std::io::empty(),
            &|_| None,
            caller,
            now,
        );
        let field = |name: &str| {
            a.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        };
        match (a.status, field("Upload-Offset"), field("Upload-Length")) {
            (200, Some(offset), Some(size)) => Upload {
                size,
                offset,
                expires: now.saturating_add(spool.config().bulk.reservation),
            },
            _ => return a,
        }
    } else {
        match receiver::upload_status(spool, &t, caller, now, log) {
            Ok(u) => u,
            Err(r) => return refused(r),
        }
    };
    if upload.size != length {
        return tus(Response::text(
            400,
            format!(
                "Upload-Length is {length}, but transfer {t} was authorized for {} bytes\n",
                upload.size
            ),
        ));
    }
    let base = call
        .path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    upload_headers(tus(Response::empty(201)), &upload).with("Location", format!("{base}/{t}"))
}

/// Why an `Upload-Checksum` header is refused (answered 400).
#[derive(Debug, thiserror::Error)]
pub enum BadChecksum {
    #[error("Upload-Checksum {0:?} is not \"algorithm base64\"")]
    Form(String),
    #[error("checksum algorithm {0:?} is not supported (sha1, sha256)")]
    Algorithm(String),
    #[error("Upload-Checksum is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// `Upload-Checksum`: an algorithm and the base64 of the digest.
fn checksum(text: &str) -> Result<(Algorithm, Vec<u8>), BadChecksum> {
    use base64::Engine as _;
    let (name, value) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| BadChecksum::Form(text.to_string()))?;
    let algorithm =
        Algorithm::parse(name).ok_or_else(|| BadChecksum::Algorithm(name.to_string()))?;
    let digest = base64::engine::general_purpose::STANDARD.decode(value.trim())?;
    Ok((algorithm, digest))
}

fn patch(
    spool: &Spool,
    t: &str,
    body: &mut dyn Read,
    header: &dyn Fn(&str) -> Option<String>,
    caller: &Name,
    now: crate::time::Timestamp,
    log: &dyn Fn(String),
) -> Response {
    let ty = header("content-type").unwrap_or_default();
    if ty.split(';').next().map(str::trim) != Some("application/offset+octet-stream") {
        return tus(Response::text(
            415,
            "a PATCH's Content-Type is application/offset+octet-stream\n",
        ));
    }
    let Some(offset) = header("upload-offset").and_then(|v| v.trim().parse::<u64>().ok()) else {
        return tus(Response::text(
            400,
            "Upload-Offset is missing or not a number\n",
        ));
    };
    let length = match header("content-length").map(|v| v.trim().parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return tus(Response::text(400, "Content-Length is not a number\n")),
    };
    let checksum = match header("upload-checksum").map(|c| checksum(&c)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(why)) => return tus(Response::text(400, format!("{why}\n"))),
    };
    let chunks = match header(&CHUNK_CHECKSUMS.to_ascii_lowercase()).map(|c| ChunkSums::parse(&c)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(why)) => return tus(Response::text(400, format!("{why}\n"))),
    };
    let patch = Patch {
        offset,
        length,
        checksum,
        chunks,
        body,
    };
    match receiver::upload_patch(spool, t, caller, patch, now, log) {
        Ok(u) => upload_headers(tus(Response::empty(204)), &u),
        Err(r) => refused(r),
    }
}

/// `Range: bytes=A-B`, `bytes=A-` or `bytes=-N` of a body of `size`
/// bytes: the first byte and the length; `Err` when it cannot be given.
/// Only one range is given (the first).
fn range(text: &str, size: u64) -> Result<(u64, u64), ()> {
    let spec = text.trim().strip_prefix("bytes=").ok_or(())?;
    let first = spec.split(',').next().ok_or(())?.trim();
    let (a, b) = first.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().map_err(|_| ())?, b.parse().map_err(|_| ())?);
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || start >= size || end < start {
        return Err(());
    }
    Ok((start, end - start + 1))
}

fn download(
    spool: &Spool,
    t: &str,
    header: &dyn Fn(&str) -> Option<String>,
    caller: &Name,
) -> Response {
    let (path, size, digest) = match crate::bulk::sender::download(spool, t, caller) {
        Ok(d) => d,
        Err((status, why)) => return Response::text(status, format!("{why}\n")),
    };
    let etag = format!("\"{digest}\"");
    // A range is given only for the same data (If-Range names its tag).
    let ranged = header("range").filter(|_| header("if-range").is_none_or(|v| v.trim() == etag));
    let (status, start, len) = match ranged.map(|r| range(&r, size)) {
        None => (200, 0, size),
        Some(Ok((start, len))) => (206, start, len),
        Some(Err(())) => {
            return Response::text(416, format!("the range cannot be given: {size} bytes\n"))
                .with("Content-Range", format!("bytes */{size}"))
        }
    };
    let mut r = Response {
        status,
        headers: Vec::new(),
        body: ResponseBody::File { path, start, len },
    }
    .with("Accept-Ranges", "bytes")
    .with("ETag", etag);
    if status == 206 {
        r = r.with(
            "Content-Range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resources() {
        assert_eq!(resource("/rs/uploads"), Some(Resource::Uploads));
        assert_eq!(resource("/rs/uploads/"), Some(Resource::Uploads));
        assert_eq!(
            resource("/rs/uploads/T1?x=1"),
            Some(Resource::Upload("T1".into()))
        );
        assert_eq!(
            resource("/downloads/T2"),
            Some(Resource::Download("T2".into()))
        );
        assert_eq!(resource("/rs"), None);
        assert_eq!(resource("/"), None);
        assert_eq!(resource(""), None);
    }

    #[test]
    fn ranges_are_bounded() {
        assert_eq!(range("bytes=0-99", 1000), Ok((0, 100)));
        assert_eq!(range("bytes=900-", 1000), Ok((900, 100)));
        assert_eq!(range("bytes=-100", 1000), Ok((900, 100)));
        assert_eq!(range("bytes=990-2000", 1000), Ok((990, 10)));
        assert_eq!(range("bytes=0-0,5-9", 1000), Ok((0, 1)));
        assert_eq!(range("bytes=1000-", 1000), Err(()));
        assert_eq!(range("bytes=5-4", 1000), Err(()));
        assert_eq!(range("items=0-1", 1000), Err(()));
        assert_eq!(range("bytes=x-", 1000), Err(()));
        assert_eq!(range("bytes=0-", 0), Err(()));
    }

    #[test]
    fn metadata_and_checksums_parse() {
        assert_eq!(
            metadata("transfer VDE=,flag,name   bm8="),
            vec![
                ("transfer".into(), Some("T1".into())),
                ("flag".into(), None),
                ("name".into(), Some("no".into()))
            ]
        );
        assert_eq!(metadata("bad !!!"), vec![("bad".into(), None)]);
        assert_eq!(
            checksum("sha1 qUqP5cyxm6YcTAhz05Hph5gvu9M=").unwrap().0,
            Algorithm::Sha1
        );
        assert_eq!(
            checksum("md5 AAAA").unwrap_err().to_string(),
            "checksum algorithm \"md5\" is not supported (sha1, sha256)"
        );
        assert!(checksum("sha256 !!").is_err());
        assert_eq!(
            checksum("sha256").unwrap_err().to_string(),
            "Upload-Checksum \"sha256\" is not \"algorithm base64\""
        );
    }
}
