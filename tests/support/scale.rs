//! The provider's scale-out components for tests: PostgreSQL (initdb into a
//! temporary directory, on 127.0.0.1), nats-server with JetStream, and
//! nginx balancing over several `rs-relay serve` instances. Each is
//! started bounded in time and stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

fn postgres_bin(tool: &str) -> PathBuf {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(base)
        .unwrap_or_else(|_| panic!("{} is missing: run scripts/setup.sh (the scale-out tests need Debian's postgresql)", base.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(tool)
}

/// A PostgreSQL server of its own, in a temporary directory.
pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    pub port: u16,
}

impl Postgres {
    /// initdb (as the `postgres` user: it refuses root), then start on
    /// 127.0.0.1 and make database `rs`. fsync stays on.
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("rs-pg-")
            .tempdir()
            .expect("tempdir");
        let data = dir.path().join("data");
        let run = |args: &[&str]| {
            let out = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("runuser");
            assert!(
                out.status.success(),
                "{args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let chown = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(chown.success());
        let initdb = postgres_bin("initdb");
        run(&[
            initdb.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "rs",
            "--no-sync",
        ]);
        let port = free_port();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} -c max_connections=200",
            dir.path().display()
        );
        let log = dir.path().join("log");
        run(&[
            postgres_bin("pg_ctl").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ]);
        let pg = Postgres {
            _dir: dir,
            data,
            port,
        };
        pg.psql("postgres", "CREATE DATABASE rs");
        pg
    }

    /// The `[shared] postgres` connection string.
    pub fn conn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=rs dbname=rs connect_timeout=10",
            self.port
        )
    }

    /// Runs `sql` in database `db` with psql; its output, unaligned.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "rs"])
            .args(["-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(postgres_bin("pg_ctl"))
            .args(["-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// nats-server with JetStream on 127.0.0.1, storing in a temporary
/// directory; killed on drop.
pub struct Nats {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Nats {
    pub fn start() -> Nats {
        let bin = Path::new("/usr/sbin/nats-server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/setup.sh (the scale-out tests need Debian's nats-server)",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("rs-nats-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let log = dir.path().join("log");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path().join("js"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server is ready") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nats-server did not start within 20 s: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats {
            child,
            _dir: dir,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Every message in `stream`: (its Nats-Msg-Id, subject, payload).
    pub fn messages(&self, stream: &str) -> Vec<(String, String, Vec<u8>)> {
        let url = self.url();
        let stream = stream.to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = async_nats::connect(&url).await.expect("connect to nats");
            let js = async_nats::jetstream::new(client);
            let mut s = js.get_stream(&stream).await.expect("the stream");
            let last = s.info().await.expect("stream info").state.last_sequence;
            let mut out = Vec::new();
            for seq in 1..=last {
                let m = match s.get_raw_message(seq).await {
                    Ok(m) => m,
                    Err(_) => continue,
                };
                let id = m
                    .headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                out.push((id, m.subject.to_string(), m.payload.to_vec()));
            }
            out
        })
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx on 127.0.0.1 balancing plain HTTP over `ports` (round robin; a
/// server that refuses connections is passed over for 2 s).
pub struct Balancer {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Balancer {
    pub fn start(ports: &[u16]) -> Balancer {
        let nginx = Path::new("/usr/sbin/nginx");
        assert!(
            nginx.exists(),
            "{} is missing: run scripts/setup.sh",
            nginx.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("rs-lb-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path().display().to_string();
        let port = free_port();
        let servers: String = ports
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
                 client_max_body_size 64m;\n\
                 upstream rs {{\n{servers}    }}\n\
                 server {{\n        listen 127.0.0.1:{port};\n        location / {{\n\
                         proxy_pass http://rs;\n            proxy_http_version 1.1;\n\
                         proxy_read_timeout 60s;\n            proxy_next_upstream error timeout;\n        }}\n    }}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nginx did not listen within 20 s: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Balancer {
            child,
            _dir: dir,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/rs", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
