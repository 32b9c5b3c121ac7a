//! A real Postfix for tests: its own instance in a directory, listening on
//! 127.0.0.1 only, delivering `*@maildir.test` into Maildirs under
//! `ROOT/mail/` and `*@pipe.test` through a delivery pipe (`ROOT/pipe.sh`,
//! run as `nobody`), rejecting `dead@pipe.test` with a 550. Stopped on drop.
//! Needs root (Postfix's master runs as root); see shared notes on Postfix.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::free_port;

pub const NOBODY: u32 = 65534;

pub struct Postfix {
    pub root: PathBuf,
    /// Plain SMTP, with STARTTLS offered.
    pub port: u16,
    /// TLS from the first byte (smtps).
    pub tls_port: u16,
    /// The CA (self-signed) certificate the server's certificate is, for `localhost`.
    pub cert: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn chown(path: &Path, uid: u32) {
    run(Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(path));
}

impl Postfix {
    /// Configures and starts an instance in `root`, whose delivery pipe runs
    /// `pipe_script` (a shell script body).
    pub fn start(root: &Path, pipe_script: &str) -> Postfix {
        assert!(
            Path::new("/usr/sbin/postfix").exists(),
            "Postfix is not installed: run scripts/setup.sh (the mail tests need Debian's postfix)"
        );
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the mail tests start Postfix, which needs root"
        );
        let port = free_port();
        let tls_port = free_port();
        let r = root.display().to_string();
        for d in ["etc", "queue", "data", "mail", "flags"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        chown(&root.join("data"), 0);
        run(Command::new("chown")
            .args(["postfix"])
            .arg(root.join("data")));
        chown(&root.join("mail"), NOBODY);
        chown(&root.join("flags"), NOBODY);
        run(Command::new("chmod").args(["755"]).arg(root));
        super::self_signed(
            "localhost",
            "subjectAltName=DNS:localhost",
            &root.join("etc/key.pem"),
            &root.join("etc/cert.pem"),
        );
        std::fs::write(
            root.join("etc/main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {r}/queue
data_directory = {r}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.test
mydomain = test
myorigin = mx.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = pipe.test
transport_maps = hash:{r}/etc/transport
virtual_mailbox_domains = maildir.test
virtual_mailbox_base = {r}/mail
virtual_mailbox_maps = hash:{r}/etc/vmailbox
virtual_uid_maps = static:{NOBODY}
virtual_gid_maps = static:{NOBODY}
virtual_mailbox_limit = 0
smtpd_recipient_restrictions = check_recipient_access hash:{r}/etc/access, permit_mynetworks, reject_unauth_destination
maillog_file = {r}/maillog
maillog_file_prefixes = {r}
message_size_limit = 52428800
rspipe_destination_concurrency_limit = 2
rspipe_destination_recipient_limit = 1
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
smtpd_tls_cert_file = {r}/etc/cert.pem
smtpd_tls_key_file = {r}/etc/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
"
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("etc/master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd
127.0.0.1:{tls_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt
tlsmgr    unix  -  -  n  1000? 1 tlsmgr
pickup    unix  n  -  n  60  1  pickup
cleanup   unix  n  -  n  -   0  cleanup
qmgr      unix  n  -  n  300 1  qmgr
rewrite   unix  -  -  n  -   -  trivial-rewrite
bounce    unix  -  -  n  -   0  bounce
defer     unix  -  -  n  -   0  bounce
trace     unix  -  -  n  -   0  bounce
verify    unix  -  -  n  -   1  verify
flush     unix  n  -  n  1000? 0 flush
proxymap  unix  -  -  n  -   -  proxymap
showq     unix  n  -  n  -   -  showq
error     unix  -  -  n  -   -  error
retry     unix  -  -  n  -   -  error
discard   unix  -  -  n  -   -  discard
virtual   unix  -  n  n  -   -  virtual
anvil     unix  -  -  n  -   1  anvil
scache    unix  -  -  n  -   1  scache
postlog   unix-dgram n - n - 1 postlogd
rspipe    unix  -  n  n  -   -  pipe user=nobody argv={r}/pipe.sh
"
            ),
        )
        .unwrap();
        std::fs::write(root.join("etc/transport"), "pipe.test rspipe:\n").unwrap();
        std::fs::write(root.join("etc/vmailbox"), "a@maildir.test a/\n").unwrap();
        std::fs::write(
            root.join("etc/access"),
            "dead@pipe.test 550 5.1.1 no such mailbox\n",
        )
        .unwrap();
        for m in ["transport", "vmailbox", "access"] {
            run(Command::new("postmap")
                .args(["-c", &format!("{r}/etc")])
                .arg(root.join("etc").join(m)));
        }
        std::fs::write(root.join("pipe.sh"), format!("#!/bin/sh\n{pipe_script}\n")).unwrap();
        run(Command::new("chmod")
            .args(["755"])
            .arg(root.join("pipe.sh")));
        // Postfix accepts another configuration directory only if the
        // default one lists it.
        let default = Path::new("/etc/postfix/main.cf");
        if !default.exists() {
            std::fs::write(default, "compatibility_level = 3.6\n").unwrap();
        }
        run(Command::new("postconf")
            .args(["-e", &format!("alternate_config_directories = {r}/etc")]));
        // Postfix 3.4 to 3.9 open the maillog for postsuper's warnings after
        // dropping root privileges (fixed upstream 2024-11): a restart that
        // finds a file a killed cleanup left behind ("bogus file name") then
        // dies with "open logfile: Permission denied" unless the file
        // already exists and belongs to the mail owner.
        std::fs::write(root.join("maillog"), b"").unwrap();
        run(Command::new("chown")
            .args(["postfix:postfix"])
            .arg(root.join("maillog")));
        let pf = Postfix {
            root: root.to_path_buf(),
            port,
            tls_port,
            cert: root.join("etc/cert.pem"),
        };
        pf.start_again();
        pf
    }

    fn etc(&self) -> String {
        format!("{}/etc", self.root.display())
    }

    pub fn start_again(&self) {
        run(Command::new("postfix").args(["-c", &self.etc(), "start"]));
        // Wait until smtpd answers.
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "Postfix did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&self) {
        let _ = Command::new("postfix")
            .args(["-c", &self.etc(), "stop"])
            .output();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks Postfix to retry deferred mail now.
    pub fn flush_queue(&self) {
        let _ = Command::new("postqueue")
            .args(["-c", &self.etc(), "-f"])
            .output();
    }

    pub fn queue_is_empty(&self) -> bool {
        let out = Command::new("postqueue")
            .args(["-c", &self.etc(), "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("Mail queue is empty")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("maillog")).unwrap_or_default()
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.root.join("mail").join(user)
    }

    /// Waits (at most `limit`) until `done` holds, retrying deferred mail
    /// every second meanwhile.
    pub fn wait(&self, limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        let mut last_flush = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; Postfix log tail:\n{}",
                tail(&self.log(), 30)
            );
            if last_flush.elapsed() > Duration::from_secs(1) {
                self.flush_queue();
                last_flush = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}
