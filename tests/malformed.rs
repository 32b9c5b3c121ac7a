//! Hostile and broken input: every file of tests/corpus/malformed is refused
//! with a reason, never a panic; in the spool it is quarantined, not lost.

mod support;

use std::path::PathBuf;

use rs::message::envelope;
use support::Site;

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_valid_template_parses_so_the_corpus_tests_something() {
    for (name, bytes) in corpus("valid") {
        let messages = envelope::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(messages.len(), 1, "{name}");
        envelope::first_header(&bytes[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_malformed_envelope_is_refused_with_a_reason() {
    let files = corpus("malformed");
    assert!(files.len() >= 40);
    for (name, bytes) in files {
        match envelope::parse(&bytes) {
            Ok(m) => panic!("{name} was accepted: {m:?}"),
            Err(e) => assert!(!e.to_string().is_empty(), "{name}"),
        }
        // The header-only reader must not accept what the full parser refuses
        // because of the header (it may not see content problems).
        let _ = envelope::first_header(&bytes[..]);
        let _ = envelope::parse_headers(&bytes);
    }
}

#[test]
fn malformed_files_in_the_queue_are_quarantined_with_their_reason() {
    let site = Site::new();
    let good = site.send(&[], b"a good message");
    let files = corpus("malformed");
    for (i, (name, bytes)) in files.iter().enumerate() {
        let entry = format!(
            "{:016}.bad{i}.nnf.1764000000000000.0.{}",
            1_000 + i,
            bytes.len()
        );
        std::fs::write(site.spool.join("queue/normal").join(&entry), bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // A stray file that is not even named like a message.
    std::fs::write(site.spool.join("queue/normal/notes.txt"), "operator notes").unwrap();

    let r = site
        .cmd("rs-queue")
        .args(["check", "--json"])
        .run()
        .code(65);
    let report = r.json();
    assert_eq!(report["quarantined"].as_array().unwrap().len(), files.len());
    for q in report["quarantined"].as_array().unwrap() {
        assert!(!q["reason"].as_str().unwrap().is_empty(), "{q}");
    }
    assert_eq!(
        site.listed_ids(),
        vec![good],
        "the good message is untouched"
    );

    let quarantined = site
        .cmd("rs-queue")
        .args(["list", "--area", "quarantine", "--json"])
        .run()
        .success()
        .json_lines();
    assert_eq!(
        quarantined.len(),
        files.len() + 1,
        "every bad file kept, with the stray one"
    );
    for q in &quarantined {
        assert!(
            !q["detail"].as_str().unwrap().is_empty(),
            "reason recorded: {q}"
        );
    }
    // Nothing lost: the quarantined bytes are the bytes that were queued.
    let total: u64 = quarantined
        .iter()
        .map(|q| q["size"].as_u64().unwrap())
        .sum();
    let expected: u64 =
        files.iter().map(|(_, b)| b.len() as u64).sum::<u64>() + "operator notes".len() as u64;
    assert_eq!(total, expected);

    // The accounting no longer counts them, and a second check is clean.
    let stats = site
        .cmd("rs-queue")
        .args(["stats", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(stats["outbound"]["total"]["messages"], 1);
    site.cmd("rs-queue").args(["check"]).run().success();
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Random mutations of a valid envelope never panic the parser.
        #[test]
        fn mutated_envelopes_never_panic(
            edits in proptest::collection::vec((0usize..1200, any::<u8>()), 1..8),
            cut in 0usize..1300,
        ) {
            let mut bytes = corpus("valid").remove(0).1;
            for (pos, b) in edits {
                let n = bytes.len();
                bytes[pos % n] = b;
            }
            bytes.truncate(cut.max(1));
            let _ = envelope::parse(&bytes);
            let _ = envelope::first_header(&bytes[..]);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = envelope::parse(&bytes);
        }
    }
}
