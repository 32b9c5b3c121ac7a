//! HTTP for tests: a small PKI made with `openssl` (a CA, a server
//! certificate for 127.0.0.1, client certificates), the built-in server
//! (`rs-relay serve`) and nginx + fcgiwrap running `rs-relay cgi`, each on
//! 127.0.0.1 on a port of its own and stopped on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{bin, free_port, Site};

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority in a directory, and what it signs.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named `name` in `dir/name/`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            &dir,
        );
        Pki {
            ca: dir.join("ca.pem"),
            dir,
        }
    }

    fn sign(&self, cn: &str, ext: &str) -> Pair {
        let d = &self.dir;
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{cn}.key"),
                "-out",
                &format!("{cn}.csr"),
            ],
            d,
        );
        std::fs::write(d.join(format!("{cn}.ext")), ext).unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{cn}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-out",
                &format!("{cn}.pem"),
                "-extfile",
                &format!("{cn}.ext"),
            ],
            d,
        );
        Pair {
            cert: d.join(format!("{cn}.pem")),
            key: d.join(format!("{cn}.key")),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Pair {
        self.sign(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
    }

    /// A client certificate whose subject CN is `cn` (a component ID).
    pub fn client(&self, cn: &str) -> Pair {
        self.sign(cn, "extendedKeyUsage=clientAuth\n")
    }
}

/// A route to `url` trusting `ca`, presenting `client` (if any).
pub fn route(url: &str, ca: &Path, client: Option<&Pair>) -> String {
    let mut r = format!("{url}?ca={}", ca.display());
    if let Some(c) = client {
        r.push_str(&format!(
            "&cert={}&key={}",
            c.cert.display(),
            c.key.display()
        ));
    }
    r
}

/// Gives `site` an `[http]` server configuration with this certificate and
/// client CA (and `extra` lines).
pub fn serve_tls(site: &Site, server: &Pair, client_ca: &Path, extra: &str) {
    site.append_config(&format!(
        "[http]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n{extra}",
        server.cert.display(),
        server.key.display(),
        client_ca.display()
    ));
}

/// `rs-relay serve` for a site, on a port of its own; killed on drop.
pub struct Serve {
    child: Child,
    pub port: u16,
    pub url: String,
}

impl Serve {
    pub fn start(site: &Site) -> Serve {
        Serve::start_on(site, 0)
    }

    /// Starts the server on `port` (0: any free one).
    pub fn start_on(site: &Site, port: u16) -> Serve {
        Serve::spawn(site.cmd("rs-relay"), port)
    }

    /// Starts the server on `port` with its clock pinned at `now`.
    pub fn start_later(site: &Site, port: u16, now: &str) -> Serve {
        Serve::spawn(site.cmd("rs-relay").env("RS_NOW", now), port)
    }

    /// Starts the server with `cmd` (`rs-relay` with its environment).
    pub fn spawn(cmd: super::Cmd, port: u16) -> Serve {
        let listen = format!("127.0.0.1:{port}");
        let mut c = cmd.args(["serve", "--listen", &listen]).command();
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn rs-relay serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("listening on ") {
                    let _ = tx.send(line.clone());
                    sent = true;
                }
                if std::env::var_os("RS_TEST_VERBOSE").is_some() {
                    eprintln!("serve: {line}");
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("rs-relay serve did not start listening within 20 s");
        let url = line
            .rsplit("listening on ")
            .next()
            .unwrap()
            .trim()
            .to_string();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Serve {
            child,
            port,
            url: format!("{url}/rs"),
        }
    }

    /// The server's exit status, waiting up to `limit` for it to end.
    pub fn exit_within(&mut self, limit: Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx (TLS, client certificates verified against `client_ca`) in front
/// of fcgiwrap running `rs-relay cgi` on a site's spool.
pub struct Nginx {
    nginx: Child,
    fcgiwrap: Child,
    pub port: u16,
    pub url: String,
    pub dir: PathBuf,
}

impl Nginx {
    /// Starts nginx and fcgiwrap in `dir` for `site`, which the CGI sees
    /// with its spool and pinned clock.
    pub fn start(dir: &Path, site: &Site, server: &Pair, client_ca: &Path) -> Nginx {
        for tool in ["/usr/sbin/nginx", "/usr/sbin/fcgiwrap"] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: run scripts/setup.sh (the HTTP tests need Debian's nginx-light and fcgiwrap)"
            );
        }
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let script = dir.join("rs-cgi");
        let mut env = format!("export RS_SPOOL='{}'\n", site.spool.display());
        if let Some(now) = site.pinned_time() {
            env.push_str(&format!("export RS_NOW='{now}'\n"));
        }
        std::fs::write(
            &script,
            format!("#!/bin/sh\n{env}exec '{}' cgi\n", bin("rs-relay").display()),
        )
        .unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(&script)
            .status()
            .unwrap();
        let sock = dir.join("fcgi.sock");
        // Each in a process group of its own, so that the children it
        // forks stop with it (see Drop).
        use std::os::unix::process::CommandExt;
        let fcgiwrap = Command::new("/usr/sbin/fcgiwrap")
            .process_group(0)
            .args(["-c", "4", "-s"])
            .arg(format!("unix:{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("fcgiwrap.log")).unwrap(),
            ))
            .spawn()
            .expect("fcgiwrap");
        let server_block = format!(
            r#"        ssl_client_certificate {ca};
        ssl_verify_client optional_no_ca;
        client_max_body_size 64m;
        location /rs {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME {script};
            fastcgi_param SSL_CLIENT_VERIFY $ssl_client_verify;
            fastcgi_param SSL_CLIENT_CERT $ssl_client_escaped_cert;
            fastcgi_param HTTP_X_RS_FROM $http_x_rs_from;
            fastcgi_read_timeout 120s;
            fastcgi_pass unix:{sock};
        }}
"#,
            ca = client_ca.display(),
            script = script.display(),
            sock = sock.display(),
        );
        let (nginx, port) = spawn_nginx(dir, server, &server_block, 0, &sock);
        Nginx {
            nginx,
            fcgiwrap,
            port,
            url: format!("https://127.0.0.1:{port}/rs"),
            dir: dir.to_path_buf(),
        }
    }
}

/// Starts nginx in `dir` with one TLS server on 127.0.0.1:`port` (0: a
/// free one) whose `server` block holds `server_block`; returns when it
/// (and the file `also`, a socket, if given) is there.
fn spawn_nginx(
    dir: &Path,
    server: &Pair,
    server_block: &str,
    port: u16,
    also: &Path,
) -> (Child, u16) {
    assert!(
        Path::new("/usr/sbin/nginx").exists(),
        "/usr/sbin/nginx is missing: run scripts/setup.sh (the HTTP tests need Debian's nginx-light)"
    );
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let port = if port == 0 { free_port() } else { port };
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {d}/tmp/body;
    fastcgi_temp_path {d}/tmp/fastcgi;
    proxy_temp_path {d}/tmp/proxy;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    access_log {d}/access.log;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
{server_block}    }}
}}
"#,
        cert = server.cert.display(),
        key = server.key.display(),
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    use std::os::unix::process::CommandExt;
    let nginx = Command::new("/usr/sbin/nginx")
        .process_group(0)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("nginx.stderr")).unwrap(),
        ))
        .spawn()
        .expect("nginx");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || !also.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nginx did not start: {}{}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("nginx.stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (nginx, port)
}

/// nginx serving the files of `dir/www` over HTTPS (a map, a
/// configuration), with `extra` directives in its server block; stopped
/// on drop.
pub struct Files {
    nginx: Child,
    pub port: u16,
    /// `https://127.0.0.1:PORT`
    pub base: String,
    pub www: PathBuf,
}

impl Files {
    pub fn start(dir: &Path, server: &Pair, extra: &str) -> Files {
        Files::start_on(dir, server, extra, 0)
    }

    /// On `port` (0: a free one): a restarted server keeps its address.
    pub fn start_on(dir: &Path, server: &Pair, extra: &str, port: u16) -> Files {
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        let block = format!(
            "        root {};
        location / {{ }}
{extra}",
            www.display()
        );
        let (nginx, port) = spawn_nginx(dir, server, &block, port, &www);
        Files {
            nginx,
            port,
            base: format!("https://127.0.0.1:{port}"),
            www,
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a process group this test started.
        unsafe {
            libc::kill(-(self.nginx.id() as i32), libc::SIGKILL);
        }
        let _ = self.nginx.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Whole process groups: nginx's workers and fcgiwrap's children too.
        for child in [&mut self.nginx, &mut self.fcgiwrap] {
            // SAFETY: kill(2) on a process group this test started.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }
}
