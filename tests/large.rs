//! Large data messages travel in bounded memory through the real binaries:
//! rs-send (from a file and from stdin), export, import, relaying, and
//! rs-queue show --content, each measured by its peak resident memory.

mod support;

use std::io::Write;

use sha2::{Digest, Sha256};
use support::Site;

const SIZE: usize = 48 * 1024 * 1024;
/// Far below the data's size: memory does not grow with the message.
const MAX_RSS_KIB: u64 = 40 * 1024;

fn big_file(site: &Site, name: &str, seed: u8) -> (std::path::PathBuf, Vec<u8>) {
    let path = site.root().join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut h = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    for i in 0..SIZE / block.len() {
        for (j, b) in block.iter_mut().enumerate() {
            *b = ((i * 131 + j * 7) as u8) ^ seed;
        }
        h.update(&block);
        f.write_all(&block).unwrap();
    }
    (path, h.finalize().to_vec())
}

/// SHA-256 of what `rs-queue show --content ID` prints, read as a stream so
/// this test process stays small (a forked child starts with its parent's
/// memory, which would count in the children's peak RSS).
fn digest_of_content(site: &Site, id: &str) -> Vec<u8> {
    use std::io::Read;
    let mut cmd = site
        .cmd("rs-queue")
        .args(["show", "--content", id])
        .command();
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    assert!(child.wait().unwrap().success());
    h.finalize().to_vec()
}

#[test]
fn a_large_message_travels_in_bounded_memory() {
    let a = Site::component("a.host");
    a.peer("b.relay", "upstream = true");
    let b = Site::component("b.relay");
    b.peer("a.host", "");
    b.peer("c.hub", "upstream = true");
    let c = Site::component("c.hub");
    c.peer("b.relay", "");
    let (file, digest) = big_file(&a, "big.bin", 0);
    let (file2, digest2) = big_file(&a, "big2.bin", 0x5a);

    let check = |what: &str, (code, rss): (Option<i32>, u64)| {
        eprintln!("{what}: peak RSS {} KiB", rss);
        assert_eq!(code, Some(0), "{what} failed");
        assert!(
            rss < MAX_RSS_KIB,
            "{what} used {rss} KiB for a {} MiB message",
            SIZE >> 20
        );
    };
    check(
        "rs-send --file",
        a.cmd("rs-send")
            .args(["--class", "bulk", "--subclass", "image", "--file"])
            .args([&file])
            .run_measured(None),
    );
    check(
        "rs-send < stdin",
        a.cmd("rs-send")
            .args(["--class", "bulk", "--subclass", "image"])
            .run_measured(Some(&file2)),
    );
    let ids = a.listed_ids();
    assert_eq!(ids.len(), 2);
    assert_eq!(digest_of_content(&a, &ids[0]), digest);
    assert_eq!(digest_of_content(&a, &ids[1]), digest2);

    let ab = a.root().join("ab");
    let bc = a.root().join("bc");
    std::fs::create_dir_all(&ab).unwrap();
    std::fs::create_dir_all(&bc).unwrap();
    check(
        "export",
        a.cmd("rs-queue")
            .args(["export", "--to"])
            .args([&ab])
            .run_measured(None),
    );
    check(
        "import and relay",
        b.cmd("rs-relay")
            .args(["import", "--from"])
            .args([&ab])
            .run_measured(None),
    );
    assert_eq!(b.listed_ids().len(), 2, "B holds both on their way to C");
    assert_eq!(
        digest_of_content(&b, &ids[0]),
        digest,
        "relayed byte for byte"
    );
    check(
        "export at the relay",
        b.cmd("rs-queue")
            .args(["export", "--peer", "c.hub", "--to"])
            .args([&bc])
            .run_measured(None),
    );
    check(
        "import at the destination",
        c.cmd("rs-relay")
            .args(["import", "--from"])
            .args([&bc])
            .run_measured(None),
    );
    // The Maildir holds them, with each hop's routing element, content intact.
    let files: Vec<_> = std::fs::read_dir(c.spool.join("received/new"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 2);
    let mut digests = Vec::new();
    for f in files {
        let mut out = Sha256::new();
        struct H<'a>(&'a mut Sha256);
        impl Write for H<'_> {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.update(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let layout =
            rs::message::stream::decode(&mut std::fs::File::open(&f).unwrap(), &mut H(&mut out))
                .unwrap();
        let hops: Vec<&str> = layout
            .header
            .routing
            .iter()
            .map(|r| r.component.as_str())
            .collect();
        assert_eq!(hops, vec!["a.host", "b.relay", "c.hub"]);
        assert!(layout.header.routing[1].sent.is_some());
        digests.push(out.finalize().to_vec());
    }
    assert!(digests.contains(&digest) && digests.contains(&digest2));
    // Acknowledgements flow back; every copy is released.
    c.cmd("rs-queue")
        .args(["export", "--to"])
        .args([&bc])
        .run()
        .success();
    b.cmd("rs-relay")
        .args(["import", "--from"])
        .args([&bc])
        .run()
        .success();
    b.cmd("rs-queue")
        .args(["export", "--peer", "a.host", "--to"])
        .args([&ab])
        .run()
        .success();
    a.cmd("rs-relay")
        .args(["import", "--from"])
        .args([&ab])
        .run()
        .success();
    assert!(a.listed_ids().is_empty() && b.listed_ids().is_empty());
}

#[test]
fn a_truncated_large_message_is_quarantined_not_delivered() {
    let a = Site::component("a.host");
    a.peer("b.hub", "upstream = true");
    let b = Site::component("b.hub");
    b.peer("a.host", "");
    let (file, _) = big_file(&a, "big.bin", 1);
    a.cmd("rs-send")
        .args(["--class", "bulk", "--subclass", "x", "--file"])
        .args([&file])
        .run()
        .success();
    let stick = a.root().join("s");
    std::fs::create_dir_all(&stick).unwrap();
    a.cmd("rs-queue")
        .args(["export", "--to"])
        .args([&stick])
        .run()
        .success();
    let f = support::first_file(&stick.join("b.hub/a.host"));
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len * 2 / 3)
        .unwrap();
    let r = b
        .cmd("rs-relay")
        .args(["import", "--json", "--from"])
        .args([&stick])
        .run()
        .success()
        .json();
    assert_eq!(
        (r["quarantined"].as_u64(), r["delivered"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(b.files("received/new").is_empty());
}
