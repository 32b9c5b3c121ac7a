//! One test per bug found after its code was written, named after the bug.

mod support;

use rs::message::*;
use rs::time::Timestamp;
use support::Site;

/// Data that was all whitespace went as XML text, which XML parsers drop:
/// the receiver refused the message (size mismatch). Found by proptest.
#[test]
fn whitespace_only_data_round_trips() {
    for bytes in [&b" "[..], b"\n\n", b" \t \n"] {
        let m = Message {
            header: Header {
                id: MessageId::parse("m1").unwrap(),
                created: Timestamp::from_secs(1),
                class: Name::new("c", "c").unwrap(),
                subclass: Name::new("s", "s").unwrap(),
                locator: Locator::Source(Source {
                    component: Name::new("c", "a.b").unwrap(),
                    component_type: Name::new("t", "t").unwrap(),
                    version: Name::new("v", "1").unwrap(),
                    qos: Qos {
                        expiry: None,
                        precedence: Precedence::Normal,
                        persistence: Persistence::Normal,
                    },
                }),
                in_reply_to: None,
                origin_key: None,
                epoch: None,
                routing: vec![],
            },
            content: Content::Data(Data {
                mime_type: MimeType::octet_stream(),
                bytes: bytes.to_vec(),
            }),
        };
        let back = envelope::parse(&envelope::to_bytes(std::slice::from_ref(&m))).unwrap();
        assert_eq!(back, vec![m]);
    }
}

/// Two unreadable inputs quarantined in one batch got the same name and the
/// second overwrote the first: quarantined data was lost.
#[test]
fn quarantine_never_overwrites_an_earlier_file() {
    let a = Site::component("a.host");
    a.peer("b.hub", "upstream = true");
    let b = Site::component("b.hub");
    b.peer("a.host", "");
    let dir = a.root().join("stick/b.hub/a.host");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..5 {
        std::fs::write(
            dir.join(format!("1-000000000000000{i}-junk{i}.msg")),
            format!("junk {i}"),
        )
        .unwrap();
    }
    b.cmd("rs-relay")
        .args(["import", "--from"])
        .args([a.root().join("stick")])
        .run()
        .success();
    let kept: Vec<String> = b
        .files("quarantine")
        .iter()
        .map(|f| std::fs::read_to_string(b.spool.join("quarantine").join(f)).unwrap())
        .collect();
    assert_eq!(kept.len(), 5, "{kept:?}");
    for i in 0..5 {
        assert!(kept.contains(&format!("junk {i}")), "junk {i} lost");
    }
}

/// Sequoia's OpenSSL backend initialises OpenSSL from a static constructor;
/// once it was a dependency of the library, every rs-send run loaded
/// libssl and libcrypto (about 1.6 ms of start-up). OpenPGP now lives in
/// its own crate that rs-send does not link.
#[test]
fn rs_send_does_not_load_openssl() {
    let out = std::process::Command::new("ldd")
        .arg(support::bin("rs-send"))
        .output()
        .unwrap();
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(
        !libs.contains("libssl") && !libs.contains("libcrypto"),
        "{libs}"
    );
}
