//! Shared helpers for integration tests: a temporary site (spool) and a
//! small builder that runs the real binaries against it.
//!
//! A test that fails keeps its spool and prints its path.
#![allow(dead_code)]

pub mod http;
pub mod link;
pub mod postfix;
pub mod scale;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin(name: &str) -> PathBuf {
    match name {
        "rs-send" => PathBuf::from(env!("CARGO_BIN_EXE_rs-send")),
        "rs-queue" => PathBuf::from(env!("CARGO_BIN_EXE_rs-queue")),
        "rs-relay" => PathBuf::from(env!("CARGO_BIN_EXE_rs-relay")),
        "rs-ack" => PathBuf::from(env!("CARGO_BIN_EXE_rs-ack")),
        "rs-spm" => PathBuf::from(env!("CARGO_BIN_EXE_rs-spm")),
        other => panic!("unknown binary {other}"),
    }
}

/// A site: one spool in a temporary directory.
pub struct Site {
    dir: Option<tempfile::TempDir>,
    pub spool: PathBuf,
    env: HashMap<String, String>,
    /// A tmpfs mounted on the spool (unmounted when the site is dropped).
    mounted: bool,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::Builder::new()
            .prefix("rs-test-")
            .tempdir()
            .expect("tempdir");
        let spool = dir.path().join("spool");
        Site {
            dir: Some(dir),
            spool,
            env: HashMap::new(),
            mounted: false,
        }
    }

    /// A site with component ID `component` whose spool is a tmpfs of
    /// `size` (`16m`), so that a test can fill its disk. Needs root (the
    /// tests run as root).
    pub fn component_on_tmpfs(component: &str, size: &str) -> Site {
        let mut site = Site::new();
        std::fs::create_dir_all(&site.spool).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&site.spool)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mount tmpfs (the tests run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        site.mounted = true;
        site.init(component);
        site
    }

    /// Fills the spool's file system until a write fails with ENOSPC.
    pub fn fill_disk(&self) {
        let mut f = std::fs::File::create(self.spool.join("filler")).unwrap();
        let block = vec![0xa5u8; 64 * 1024];
        loop {
            if let Err(e) = f.write_all(&block) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
        // The last partial block too.
        while f.write_all(&[0u8]).is_ok() {}
    }

    /// Creates the spool with `rs-queue init` and appends `config` to its configuration.
    pub fn with_config(config: &str) -> Site {
        let site = Site::new();
        site.init("test.a");
        site.append_config(config);
        site
    }

    /// A site with component ID `component` whose spool is `spool` (which
    /// the caller owns, e.g. on a file system it mounted).
    pub fn component_at(component: &str, spool: &Path) -> Site {
        let site = Site {
            dir: None,
            spool: spool.to_path_buf(),
            env: HashMap::new(),
            mounted: false,
        };
        site.init(component);
        site
    }

    /// A site whose spool `spool` exists already (a copy of a fixture).
    pub fn existing(spool: &Path) -> Site {
        Site {
            dir: None,
            spool: spool.to_path_buf(),
            env: HashMap::new(),
            mounted: false,
        }
    }

    /// `rs-queue init` for component ID `component` (site ID: its first label).
    fn init(&self, component: &str) {
        let site_id = component.split('.').next().unwrap_or(component);
        self.cmd("rs-queue")
            .args(["init", "--site", site_id, "--component", component])
            .run()
            .success();
        self.bulk_threshold("1TiB");
    }

    /// Sets `[bulk] threshold`. Sites start with 1 TiB, so that tests of
    /// anything but bulk send their data as one message; bulk tests lower it.
    pub fn bulk_threshold(&self, size: &str) {
        let path = self.spool.join("config.toml");
        let text = std::fs::read_to_string(&path).expect("read config");
        let mut found = false;
        let out: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("threshold = ") && !found {
                    found = true;
                    format!("threshold = \"{size}\"")
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert!(found, "no [bulk] threshold in {}", path.display());
        std::fs::write(&path, out.join("\n") + "\n").expect("write config");
    }

    /// Sets an environment variable for every later command.
    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.insert(k.into(), v.into());
    }

    /// A site with component ID `component` (site ID: its first label).
    pub fn component(component: &str) -> Site {
        let site = Site::new();
        site.init(component);
        site
    }

    /// Adds a `[[peer]]` table (after the default configuration's tables).
    pub fn peer(&self, id: &str, extra: &str) {
        let path = self.spool.join("config.toml");
        let mut text = std::fs::read_to_string(&path).expect("read config");
        text.push_str(&format!("\n[[peer]]\nid = \"{id}\"\n{extra}\n"));
        std::fs::write(&path, text).expect("write config");
    }

    /// The messages in the received Maildir: (ID, content bytes), by ID.
    pub fn received(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.spool.join("received").join(sub);
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let bytes = std::fs::read(e.path()).unwrap();
                let messages = rs::message::envelope::parse(&bytes)
                    .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
                for m in messages {
                    let content = match m.content {
                        rs::message::Content::Data(d) => d.bytes,
                        rs::message::Content::Event(e) => e.text.as_str().as_bytes().to_vec(),
                        rs::message::Content::Alarm(a) => a.text.as_str().as_bytes().to_vec(),
                        other => format!("{other:?}").into_bytes(),
                    };
                    out.push((m.header.id.to_string(), content));
                }
            }
        }
        out.sort();
        out
    }

    pub fn append_config(&self, text: &str) {
        let path = self.spool.join("config.toml");
        let old = std::fs::read_to_string(&path).expect("read config");
        // Later tables override nothing in TOML: replace the defaults' tables.
        let mut kept: Vec<&str> = Vec::new();
        let mut skip = false;
        for line in old.lines() {
            if line.starts_with('[') {
                let table = line.trim_matches(|c| c == '[' || c == ']');
                skip = text.lines().any(|l| l.trim() == format!("[{table}]"));
            }
            if !skip {
                kept.push(line);
            }
        }
        std::fs::write(&path, format!("{}\n{}\n", kept.join("\n"), text)).expect("write config");
    }

    pub fn root(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    /// A new, empty directory `name` beside the spool: a stick.
    pub fn stick(&self, name: &str) -> PathBuf {
        let p = self.root().join(name);
        std::fs::create_dir_all(&p).expect("create stick");
        p
    }

    /// `rs-queue export --json --to DIR` (not yet checked).
    pub fn export_to(&self, dir: &Path) -> Cmd {
        self.cmd("rs-queue")
            .args(["export", "--json", "--to"])
            .args([dir])
    }

    /// `rs-relay import --json --from DIR` (not yet checked).
    pub fn import_from(&self, dir: &Path) -> Cmd {
        self.cmd("rs-relay")
            .args(["import", "--json", "--from"])
            .args([dir])
    }

    /// The time pinned with [`Site::at`], if any.
    pub fn pinned_time(&self) -> Option<String> {
        self.env.get("RS_NOW").cloned()
    }

    /// Pins the clock of every later command (RS_NOW).
    pub fn at(&mut self, time: &str) -> &mut Site {
        self.env.insert("RS_NOW".into(), time.into());
        self
    }

    pub fn cmd(&self, name: &str) -> Cmd {
        let mut c = Command::new(bin(name));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TZ", "UTC")
            .env("RS_SPOOL", &self.spool);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        Cmd {
            inner: c,
            stdin: Vec::new(),
            spool: self.spool.clone(),
        }
    }

    /// Sends `content` with the given extra arguments; returns the printed ID.
    pub fn send(&self, args: &[&str], content: &[u8]) -> String {
        let mut a = vec!["--class", "test", "--subclass", "case"];
        a.extend_from_slice(args);
        self.cmd("rs-send")
            .args(a)
            .stdin(content)
            .run()
            .success()
            .stdout
            .trim()
            .to_string()
    }

    /// Where message (or transfer) `id` stands: `rs-ack status --json ID`.
    pub fn ack_status(&self, id: &str) -> serde_json::Value {
        self.cmd("rs-ack")
            .args(["status", "--json", id])
            .run()
            .success()
            .json()
    }

    /// The outbound listing (`rs-queue list --json`), in send order.
    pub fn list(&self) -> Vec<serde_json::Value> {
        self.cmd("rs-queue")
            .args(["list", "--json"])
            .run()
            .success()
            .json_lines()
    }

    pub fn listed_ids(&self) -> Vec<String> {
        self.list()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn dead(&self) -> Vec<serde_json::Value> {
        self.cmd("rs-queue")
            .args(["list", "--area", "dead", "--json"])
            .run()
            .success()
            .json_lines()
    }

    /// How many messages the outbound areas hold, by `rs-queue stats` with
    /// the clock at `now` (if given).
    pub fn outbound_left(&self, now: Option<&str>) -> u64 {
        let mut cmd = self.cmd("rs-queue").args(["stats", "--json"]);
        if let Some(now) = now {
            cmd = cmd.env("RS_NOW", now);
        }
        cmd.run().success().json()["outbound"]["total"]["messages"]
            .as_u64()
            .expect("a count")
    }

    /// Asserts that nothing went to quarantine/.
    pub fn assert_nothing_quarantined(&self) {
        let q = self.files("quarantine");
        assert!(
            q.is_empty(),
            "quarantine/ of {}: {q:?}",
            self.spool.display()
        );
    }

    /// Files directly in an area directory, `.reason` files excluded.
    pub fn files(&self, area: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.spool.join(area))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.retain(|n| !n.ends_with(".reason"));
        v.sort();
        v
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.spool).status();
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("test failed: spool kept at {}", kept.display());
            }
        }
    }
}

pub struct Cmd {
    inner: Command,
    stdin: Vec<u8>,
    spool: PathBuf,
}

impl Cmd {
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Adds `--help`.
    pub fn arg_help(mut self) -> Cmd {
        self.inner.arg("--help");
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.inner.env(k, v);
        self
    }

    /// Runs the command as another user (the tests run as root).
    pub fn run_as(mut self, uid: u32) -> Cmd {
        use std::os::unix::process::CommandExt;
        self.inner.uid(uid).gid(uid);
        self
    }

    /// Runs the command with this umask (the tests' own may differ).
    pub fn umask(mut self, mask: u32) -> Cmd {
        use std::os::unix::process::CommandExt;
        // SAFETY: umask is async-signal-safe and touches only the child.
        unsafe {
            self.inner.pre_exec(move || {
                libc::umask(mask as libc::mode_t);
                Ok(())
            });
        }
        self
    }

    pub fn stdin(mut self, bytes: &[u8]) -> Cmd {
        self.stdin = bytes.to_vec();
        self
    }

    pub fn command(self) -> Command {
        self.inner
    }

    /// Runs the command with `stdin_file` (or nothing) as its input and
    /// output discarded; returns its exit status and peak resident memory
    /// in KiB (from `wait4`).
    // The child is reaped by wait4, which also yields its peak memory.
    #[allow(clippy::zombie_processes)]
    pub fn run_measured(mut self, stdin_file: Option<&Path>) -> (Option<i32>, u64) {
        use std::os::unix::process::ExitStatusExt;
        let stdin = match stdin_file {
            Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
            None => Stdio::null(),
        };
        self.inner
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = self.inner.spawn().expect("spawn");
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child, with valid out-pointers.
        let rc = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        assert_eq!(rc, child.id() as libc::pid_t, "wait4");
        let status = std::process::ExitStatus::from_raw(status);
        (status.code(), usage.ru_maxrss as u64)
    }

    /// Runs the command, killing it if it has not ended after `limit`;
    /// `None` if it had to be killed (it hung).
    pub fn run_within(mut self, limit: std::time::Duration) -> Option<Run> {
        self.inner
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.inner.spawn().expect("spawn");
        let start = std::time::Instant::now();
        loop {
            if child.try_wait().expect("wait").is_some() {
                let out = child.wait_with_output().expect("wait");
                return Some(Run::from(out, self.spool));
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn run(mut self) -> Run {
        self.inner
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.inner.spawn().expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = std::mem::take(&mut self.stdin);
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("wait");
        let _ = writer.join();
        Run::from(out, self.spool)
    }
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
    spool: PathBuf,
}

impl Run {
    fn from(o: Output, spool: PathBuf) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stdout_bytes: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            spool,
        }
    }

    pub fn success(self) -> Run {
        self.code(0)
    }

    pub fn code(self, expected: i32) -> Run {
        assert_eq!(
            self.code,
            Some(expected),
            "exit status (spool {})\nstdout:\n{}\nstderr:\n{}",
            self.spool.display(),
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

/// The first file `read_dir` lists in `dir`: the one file a test put
/// there (an export of one message, a queue of one).
pub fn first_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .next()
        .unwrap_or_else(|| panic!("{} is empty", dir.display()))
        .unwrap()
        .path()
}

/// Makes a self-signed RSA certificate for `/CN=cn` with one extension
/// (`extendedKeyUsage=emailProtection`, `subjectAltName=DNS:localhost`...),
/// its unencrypted key in `key`, the certificate in `cert`.
pub fn self_signed(cn: &str, extension: &str, key: &Path, cert: &Path) {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", &format!("/CN={cn}"), "-addext", extension])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP port free on 127.0.0.1 now (for a server a test starts, or for
/// an address where nothing listens).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asserts that `got` (as [`Site::received`] lists it) holds every message
/// of `sent` exactly once with its content, and nothing else.
pub fn assert_each_once(got: &[(String, Vec<u8>)], sent: &HashMap<String, Vec<u8>>) {
    let ids: std::collections::HashSet<&String> = got.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), got.len(), "a message was delivered twice");
    assert_eq!(got.len(), sent.len(), "messages lost");
    for (id, content) in got {
        assert_eq!(sent.get(id), Some(content), "{id}");
    }
}

/// Makes `a` (a.host) and `b` (b.hub) peers over mail: each names the
/// other's address, so `rs-relay receive` knows a mail from a@x.test as
/// A's. The routes point at a closed port: nothing is sent by SMTP.
pub fn mail_peers(a: &Site, b: &Site) {
    a.peer(
        "b.hub",
        "upstream = true\nroutes = [\"smtp://127.0.0.1:1?from=a@x.test&to=b@y.test&tls=none\"]",
    );
    b.peer(
        "a.host",
        "routes = [\"smtp://127.0.0.1:1?from=b@y.test&to=a@x.test&tls=none\"]",
    );
}

/// The mail an MTA would pipe to B for A's queued message `id`.
pub fn mail_from_a(a: &Site, id: &str) -> Vec<u8> {
    let queued = walkdir::WalkDir::new(a.spool.join("queue"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains(id))
        .unwrap_or_else(|| panic!("{id} is not in A's queue"))
        .into_path();
    let mut mail =
        b"Return-Path: <a@x.test>\nReceived: from mx by mx\nFrom: Site A <a@x.test>\nTo: b@y.test\n"
            .to_vec();
    mail.extend(std::fs::read(queued).expect("read the queued message"));
    mail
}

/// A small deterministic generator (xorshift), seeded per run and printed,
/// so a failure can be replayed with RS_TEST_SEED.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> Rng {
        let seed = std::env::var("RS_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("RS_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
