//! `rs-relay cgi`: one request handed over by a web server (CGI/1.1, as
//! nginx with fcgiwrap or Apache run it). The web server does TLS and
//! verifies the client certificate; it passes what it found in
//! `SSL_CLIENT_VERIFY` (`SUCCESS`, `NONE`, `FAILED:...`) and the
//! certificate itself in `SSL_CLIENT_CERT` (PEM, URL-escaped as nginx's
//! `$ssl_client_escaped_cert`, or plain as Apache's).
//!
//! The reply goes to stdout as a CGI response. A stdout that closes before
//! the reply is written is an error (the caller did not get its answers):
//! never a success.

use std::io::{Read, Write};

use super::{handle, Identity, Request, Response};
use crate::spool::Spool;
use crate::time::Clock;
use crate::transport::Payload;

/// The CGI variables the handler reads.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub method: Option<String>,
    pub content_length: Option<String>,
    pub verify: Option<String>,
    pub cert: Option<String>,
    pub rs_from: Option<String>,
    /// The request's path (`REQUEST_URI`, else `SCRIPT_NAME` and
    /// `PATH_INFO`): an upload or a download, or the session endpoint.
    pub path: Option<String>,
    /// Every request header passed (`HTTP_*`, `CONTENT_TYPE`), by its
    /// lower-case name.
    pub headers: Vec<(String, String)>,
    /// A body waits on stdin although no CONTENT_LENGTH was passed.
    pub unannounced_body: bool,
}

impl Env {
    /// Reads the variables from this process's environment.
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            unannounced_body: var("CONTENT_LENGTH").is_none() && body_waiting(),
            method: var("REQUEST_METHOD"),
            content_length: var("CONTENT_LENGTH"),
            verify: var("SSL_CLIENT_VERIFY"),
            cert: var("SSL_CLIENT_CERT"),
            rs_from: var("HTTP_X_RS_FROM"),
            path: var("REQUEST_URI").or_else(|| {
                let script = var("SCRIPT_NAME").unwrap_or_default();
                let info = var("PATH_INFO").unwrap_or_default();
                Some(format!("{script}{info}")).filter(|p| !p.is_empty())
            }),
            headers: std::env::vars()
                .filter_map(|(k, v)| {
                    let name = match k.strip_prefix("HTTP_") {
                        Some(n) => n,
                        None if k == "CONTENT_TYPE" || k == "CONTENT_LENGTH" => &k,
                        None => return None,
                    };
                    Some((name.to_ascii_lowercase().replace('_', "-"), v))
                })
                .collect(),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// What the web server found of the client's certificate.
    pub fn identity(&self) -> Identity {
        match self.verify.as_deref() {
            None | Some("NONE") => Identity::None,
            Some("SUCCESS") => {
                let Some(cert) = &self.cert else {
                    return Identity::Failed(
                        "SSL_CLIENT_VERIFY is SUCCESS but SSL_CLIENT_CERT is not passed (fastcgi_param SSL_CLIENT_CERT $ssl_client_escaped_cert)".into(),
                    );
                };
                let pem = percent_decode(cert);
                match openssl::x509::X509::from_pem(&pem).and_then(|c| c.to_der()) {
                    Ok(der) => Identity::Verified(der),
                    Err(e) => {
                        Identity::Failed(format!("SSL_CLIENT_CERT is not a certificate: {e}"))
                    }
                }
            }
            Some(other) => Identity::Failed(other.to_string()),
        }
    }
}

/// `%XX` escapes decoded (nginx escapes the PEM it passes).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Answers the request in `env` whose body is `input`; the response is
/// what to write to stdout.
pub fn respond(
    spool: &Spool,
    env: &Env,
    input: &mut dyn Read,
    clock: &Clock,
    log: &dyn Fn(String),
) -> Response {
    let length: u64 = match env.content_length.as_deref().map(str::parse) {
        None if env.header("transfer-encoding").is_some() || env.unannounced_body => {
            log("request refused (411): a body without CONTENT_LENGTH".into());
            return Response::text(
                411,
                "a body without CONTENT_LENGTH: the web server must pass its length (nginx: fastcgi_param CONTENT_LENGTH $content_length, and a client that sends Content-Length)\n",
            );
        }
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Response::text(400, "CONTENT_LENGTH is not a number\n"),
    };
    let path = env.path.clone().unwrap_or_default();
    if let Some(resource) = super::tus::resource(&path) {
        let method = env.method.clone().unwrap_or_default();
        let header = |name: &str| env.header(name);
        let mut body = input.take(length);
        let call = super::tus::Call {
            method: &method,
            path: &path,
            resource,
            identity: env.identity(),
            header: &header,
            body: &mut body,
        };
        let mut r = super::tus::handle(spool, call, clock, log);
        if method == "HEAD" {
            r.body = super::ResponseBody::Empty;
        }
        return r;
    }
    if env.method.as_deref() != Some("POST") {
        return Response::text(405, "rs answers POST only\n");
    }
    let max = spool.config().http.max_body.0;
    if length > max {
        log(format!(
            "request of {length} bytes refused (413): [http] max_body is {max}"
        ));
        return Response::text(
            413,
            format!("the body is {length} bytes, more than the {max} this site takes\n"),
        );
    }
    let mut body = Vec::with_capacity(length as usize);
    if let Err(e) = input.take(length).read_to_end(&mut body) {
        return Response::text(400, format!("cannot read the body: {e}\n"));
    }
    if (body.len() as u64) < length {
        return Response::text(400, "the body ended before CONTENT_LENGTH\n");
    }
    let req = Request {
        identity: env.identity(),
        claimed: env.rs_from.clone(),
        body: Payload::Bytes(body),
    };
    handle(spool, req, clock, log)
}

/// Whether a body waits on stdin although no CONTENT_LENGTH announced
/// one (a chunked body, a web server that does not pass the length): a
/// request that would otherwise pass for an empty poll, its body dropped.
/// Looks for at most 200 ms and reads nothing.
fn body_waiting() -> bool {
    let mut fds = [libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd, its length given.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 200) };
    if ready <= 0 || fds[0].revents & libc::POLLIN == 0 {
        return false;
    }
    // Readable: data, or the end of an empty body. FIONREAD tells which.
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::FIONREAD, &mut n) };
    rc == 0 && n > 0
}

/// Writes `resp` as a CGI response.
pub fn write(resp: &Response, out: &mut dyn Write) -> std::io::Result<()> {
    write!(
        out,
        "Status: {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        resp.status,
        resp.reason(),
        resp.content_type(),
        resp.len()
    )?;
    for (name, value) in &resp.headers {
        // A header's value never ends the header block.
        if !value.contains(['\r', '\n']) {
            write!(out, "{name}: {value}\r\n")?;
        }
    }
    out.write_all(b"\r\n")?;
    match &resp.body {
        super::ResponseBody::File { path, start, len } => {
            let mut f = std::fs::File::open(path)?;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(*start))?;
            let copied = std::io::copy(&mut f.take(*len), out)?;
            if copied < *len {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} is shorter than it was", path.display()),
                ));
            }
        }
        _ => out.write_all(resp.bytes())?,
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_pem_decodes() {
        assert_eq!(
            percent_decode("-----BEGIN%20CERT-----%0AAB%2Bc%0A"),
            b"-----BEGIN CERT-----\nAB+c\n"
        );
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz"), b"%zz");
    }

    #[test]
    fn identities_from_the_web_server() {
        let env = |verify: Option<&str>| Env {
            verify: verify.map(String::from),
            ..Env::default()
        };
        assert_eq!(env(None).identity(), Identity::None);
        assert_eq!(env(Some("NONE")).identity(), Identity::None);
        assert!(matches!(
            env(Some("FAILED:certificate has expired")).identity(),
            Identity::Failed(w) if w.contains("expired")
        ));
        assert!(matches!(
            env(Some("SUCCESS")).identity(),
            Identity::Failed(_)
        ));
    }
}
