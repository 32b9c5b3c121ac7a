//! A request as a web server hands it to `rs-relay cgi` (its CGI variables
//! and body; the built-in server passes the same through the same
//! handler): it is always answered, with a status the protocol knows, and
//! the CGI response written is well formed. No peer here takes a claimed
//! name, so whatever the request says, it stores nothing unless a client
//! certificate the web server verified names a peer. The path and the
//! headers are fuzzed too, so uploads and downloads (tus) are reached.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rs::session::cgi::{self, Env};
use rs::spool::Spool;
use rs::time::{Clock, Timestamp};
use std::sync::OnceLock;

fn spool() -> &'static Spool {
    static S: OnceLock<Spool> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rs-fuzz-http-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::fs::write(
            dir.join("config.toml"),
            "site = \"p\"\ncomponent = \"p.hub\"\n[[peer]]\nid = \"a.host\"\n[[peer]]\nid = \"b.host\"\nauthentication = \"certificate\"\n",
        )
        .expect("write the configuration");
        Spool::open(&dir).expect("the spool opens")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(8, |&b| b == 0xff);
    let mut field = || {
        parts
            .next()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .filter(|s| !s.is_empty())
    };
    let env = Env {
        method: field(),
        content_length: field(),
        verify: field(),
        cert: field(),
        rs_from: field(),
        path: field(),
        headers: field()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect(),
        unannounced_body: data.first().is_some_and(|b| b & 1 == 1),
    };
    let body = parts.next().unwrap_or_default();
    let clock = Clock::fixed(Timestamp::from_secs(1_800_000_000));
    let resp = cgi::respond(spool(), &env, &mut &body[..], &clock, &|_| {});
    assert!(
        [
            200, 201, 204, 206, 400, 403, 404, 405, 409, 410, 411, 412, 413, 415, 416, 460, 502,
            503
        ]
        .contains(&resp.status),
        "status {}",
        resp.status
    );
    let mut out = Vec::new();
    cgi::write(&resp, &mut out).expect("written to memory");
    assert!(out.starts_with(b"Status: "), "a CGI response");
});
