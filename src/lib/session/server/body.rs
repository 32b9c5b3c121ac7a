//! A reply as hyper sends it: the handler's [`Response`] with its status
//! and headers, its body in memory or a range of a file read as it goes.

use hyper::body::Bytes;
use hyper::StatusCode;

use crate::session::{Response, ResponseBody};

/// A reply's body: bytes in memory, or a range of a file read as it goes.
pub enum Body {
    Bytes(Option<Bytes>),
    File {
        file: std::fs::File,
        at: u64,
        left: u64,
    },
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        use std::os::unix::fs::FileExt;
        let frame = match self.get_mut() {
            Body::Bytes(b) => b.take().map(|b| Ok(hyper::body::Frame::data(b))),
            Body::File { left: 0, .. } => None,
            Body::File { file, at, left } => {
                let mut buf = vec![0u8; (*left).min(256 << 10) as usize];
                Some(match file.read_at(&mut buf, *at) {
                    Ok(0) => Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file is shorter than it was",
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        *at += n as u64;
                        *left -= n as u64;
                        Ok(hyper::body::Frame::data(Bytes::from(buf)))
                    }
                    Err(e) => Err(e),
                })
            }
        };
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Bytes(b) => b.is_none(),
            Body::File { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Bytes(b) => {
                hyper::body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::File { left, .. } => hyper::body::SizeHint::with_exact(*left),
        }
    }
}

pub(super) fn reply(r: Response) -> hyper::Response<Body> {
    let body = match &r.body {
        ResponseBody::File { path, start, len } => match std::fs::File::open(path) {
            Ok(file) => Body::File {
                file,
                at: *start,
                left: *len,
            },
            Err(e) => {
                return reply(Response::text(
                    503,
                    format!("cannot open {}: {e}\n", path.display()),
                ))
            }
        },
        _ if r.bytes().is_empty() => Body::Bytes(None),
        _ => Body::Bytes(Some(Bytes::copy_from_slice(r.bytes()))),
    };
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(r.content_type()) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    for (name, value) in &r.headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes());
        if let (Ok(n), Ok(v)) = (name, hyper::header::HeaderValue::from_str(value)) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}
