//! The power-loss campaign on a real file system that forgets: both
//! spools and both sticks on `lossyfs` (crates/lossyfs: FUSE, file data
//! kept in memory until fsynced), so the in-process fault layer is not the
//! only witness. In each trial one of `rs-send`, `rs-queue export` and
//! `rs-relay import` meets a power cut at a random moment: the file system
//! is killed (what was not fsynced is gone), then the command; the file
//! system comes back ("reboot", with a new boot ID) and everything runs to
//! completion. Every ID `rs-send` printed must be delivered exactly once,
//! intact; nothing may be quarantined or left queued.
//!
//! Needs root and /dev/fuse (the tests run as root). `RS_CRASH_TRIALS`
//! sets the trials per command (default 20; scripts/soak.sh: 1,000).
#![cfg(feature = "fault-injection")]

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::Site;

/// lossyfs mounted on `mnt` over `backing`.
struct Lossy {
    child: Child,
    mnt: PathBuf,
    backing: PathBuf,
}

fn mounted(mnt: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&*mnt.to_string_lossy()) && l.contains("lossyfs"))
}

impl Lossy {
    fn mount(backing: &Path, mnt: &Path) -> Lossy {
        Lossy {
            child: Lossy::spawn(backing, mnt),
            mnt: mnt.to_path_buf(),
            backing: backing.to_path_buf(),
        }
    }

    fn spawn(backing: &Path, mnt: &Path) -> Child {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: this test needs FUSE (the tests run as root)"
        );
        std::fs::create_dir_all(backing).unwrap();
        std::fs::create_dir_all(mnt).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lossyfs"))
            .arg(backing)
            .arg(mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start lossyfs");
        let start = Instant::now();
        while !mounted(mnt) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "lossyfs did not mount"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    /// The power cut: the file system dies with what it did not write.
    fn cut(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
    }

    fn reboot(&mut self) {
        self.cut();
        self.child = Lossy::spawn(&self.backing, &self.mnt);
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn trials() -> usize {
    std::env::var("RS_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

fn from_now(secs: i64) -> String {
    rs::time::Timestamp::from_micros(rs::time::system_now().as_micros() + secs * 1_000_000)
        .to_rfc3339()
}

#[test]
fn send_export_and_import_cut_off_on_a_forgetful_file_system_lose_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let mnt = scratch.path().join("mnt");
    let mut fs = Lossy::mount(&scratch.path().join("backing"), &mnt);
    let mut a = Site::component_at("a.host", &mnt.join("a"));
    a.peer("b.hub", "upstream = true\nack_timeout = \"10m\"");
    a.append_config("[spool]\nmin_free = 0\n");
    let mut b = Site::component_at("b.hub", &mnt.join("b"));
    b.peer("a.host", "");
    b.append_config("[spool]\nmin_free = 0\n");
    // What the test wrote (the peers in the configurations) is made
    // durable before the first cut.
    for e in walkdir::WalkDir::new(&mnt).into_iter().flatten() {
        if e.file_type().is_file() {
            std::fs::File::open(e.path()).unwrap().sync_all().unwrap();
        }
    }
    let (stick, back) = (mnt.join("stick"), mnt.join("back"));
    for d in [&stick, &back] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut rng = support::Rng::from_env();
    let mut boot = 0;
    let mut sent: HashMap<String, Vec<u8>> = HashMap::new();
    let mut payloads: HashSet<Vec<u8>> = HashSet::new();
    let mut spans = [20_000u64; 3];
    let mut cut_mid_run = [0usize; 3];
    let n = trials();
    for trial in 0..3 * n {
        let victim = trial % 3;
        let payload = format!("trial {trial} {}", "p".repeat(trial * 37 % 2000)).into_bytes();
        payloads.insert(payload.clone());
        let stick_s = stick.display().to_string();
        let steps: [Vec<&str>; 3] = [
            vec!["rs-send", "--class", "t", "--subclass", "p"],
            vec!["rs-queue", "export", "--to", &stick_s],
            vec!["rs-relay", "import", "--from", &stick_s],
        ];
        let mut rebooted = false;
        for (i, args) in steps.iter().enumerate() {
            if i == victim {
                let site = if i == 2 { &b } else { &a };
                let mut cmd = site.cmd(args[0]).args(&args[1..]).command();
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null());
                let start = Instant::now();
                let mut child = cmd.spawn().unwrap();
                {
                    use std::io::Write;
                    let _ = child.stdin.take().unwrap().write_all(&payload);
                }
                std::thread::sleep(Duration::from_micros(rng.below(spans[i])));
                let still = child.try_wait().unwrap().is_none();
                fs.cut();
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                cut_mid_run[i] += usize::from(still);
                spans[i] = (spans[i] * 3 + start.elapsed().as_micros() as u64) / 4;
                if out.status.success() && i == 0 && !still {
                    // It printed its ID before the cut: the message is owed.
                    sent.insert(
                        String::from_utf8_lossy(&out.stdout).trim().to_string(),
                        payload.clone(),
                    );
                }
                fs.reboot();
                boot += 1;
                rebooted = true;
                for site in [&mut a, &mut b] {
                    site.set_env("RS_FAULT_BOOT", &format!("boot-{boot}"));
                }
            }
            let site = if i == 2 { &b } else { &a };
            let r = site.cmd(args[0]).args(&args[1..]).stdin(&payload).run();
            assert_eq!(
                r.code,
                Some(0),
                "{args:?} after trial {trial}: {}",
                r.stderr
            );
            if i == 0 {
                sent.insert(r.stdout.trim().to_string(), payload.clone());
            }
        }
        assert!(rebooted);
        // Acknowledgements back, so A's sent copies go.
        b.cmd("rs-ack").args(["emit"]).run().success();
        b.export_to(&back).run().success();
        a.cmd("rs-ack")
            .args(["apply", "--from"])
            .args([&back])
            .run()
            .success();
    }
    eprintln!("cuts that landed mid-run (send, export, import): {cut_mid_run:?} of {n} each");

    let later = from_now(3 * 3600);
    for _ in 0..2 {
        a.cmd("rs-queue")
            .env("RS_NOW", &later)
            .args(["export", "--to"])
            .args([&stick])
            .run()
            .success();
        b.cmd("rs-relay")
            .env("RS_NOW", &later)
            .args(["import", "--from"])
            .args([&stick])
            .run()
            .success();
        b.cmd("rs-ack")
            .env("RS_NOW", &later)
            .args(["emit"])
            .run()
            .success();
        b.cmd("rs-queue")
            .env("RS_NOW", &later)
            .args(["export", "--to"])
            .args([&back])
            .run()
            .success();
        a.cmd("rs-ack")
            .env("RS_NOW", &later)
            .args(["apply", "--from"])
            .args([&back])
            .run()
            .success();
    }
    let got = b.received();
    let ids: HashSet<&String> = got.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), got.len(), "a message was delivered twice");
    for (id, content) in &got {
        assert!(payloads.contains(content), "{id} altered");
    }
    for (id, payload) in &sent {
        let d = got.iter().find(|(g, _)| g == id);
        assert!(d.is_some(), "{id} (printed by rs-send) lost");
        assert_eq!(&d.unwrap().1, payload, "{id}");
    }
    for site in [&a, &b] {
        site.assert_nothing_quarantined();
    }
    assert_eq!(a.outbound_left(Some(&later)), 0, "A still holds messages");
    drop(fs);
}
