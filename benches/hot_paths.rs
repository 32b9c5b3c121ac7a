//! Micro-benchmarks of the hot paths: header parse, envelope serialise,
//! duplicate lookup at several sizes of memory, and a durable spool write.
//!
//!   cargo bench --bench hot_paths
//!   RS_BENCH_SEEN_SIZES=1000,1000000,10000000 cargo bench --bench hot_paths -- seen
use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rs::message::*;
use rs::spool::seen::{Kind, Seen};
use rs::time::Timestamp;

fn message(bytes: usize) -> Message {
    let name = |s: &str| Name::new("n", s).unwrap();
    Message {
        header: Header {
            id: MessageId::mint(Timestamp::from_secs(1_764_000_000)),
            created: Timestamp::from_secs(1_764_000_000),
            class: name("bench"),
            subclass: name("w1"),
            locator: Locator::Source(Source {
                component: name("a.host"),
                component_type: name("rs-send"),
                version: name("0.1.0"),
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
            bytes: (0..bytes).map(|i| (i * 7 % 256) as u8).collect(),
        }),
    }
}

fn envelope_benches(c: &mut Criterion) {
    let m = message(1024);
    let bytes = envelope::to_bytes(std::slice::from_ref(&m));
    c.bench_function("envelope_serialize_1k", |b| {
        b.iter(|| envelope::to_bytes(black_box(std::slice::from_ref(&m))))
    });
    c.bench_function("header_parse_1k", |b| {
        b.iter(|| envelope::first_header(black_box(&bytes[..])).unwrap())
    });
    c.bench_function("envelope_parse_1k", |b| {
        b.iter(|| envelope::parse(black_box(&bytes)).unwrap())
    });
}

fn seen_benches(c: &mut Criterion) {
    // `cargo bench` passes --bench; `cargo test` runs each benchmark once
    // to check it works, where filling 10^7 IDs (minutes) is not wanted.
    let benching = std::env::args().any(|a| a == "--bench");
    let default = if benching { "1000,10000000" } else { "1000" };
    let sizes: Vec<u64> = std::env::var("RS_BENCH_SEEN_SIZES")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut group = c.benchmark_group("seen_lookup");
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Seen::open(&dir.path().join("seen.idx"), Timestamp::from_secs(0)).unwrap();
        for i in 0..n {
            seen.insert(
                Kind::Id,
                &format!("20261124T160512-{i:06}-{i:016x}"),
                Timestamp::from_secs(1 << 40),
                Timestamp::from_secs(0),
            )
            .unwrap();
        }
        seen.sync().unwrap();
        let mut i = 0u64;
        group.bench_with_input(BenchmarkId::new("present", n), &n, |b, &n| {
            b.iter(|| {
                i = (i * 6364136223846793005 + 1442695040888963407) % n;
                assert!(seen
                    .contains(Kind::Id, &format!("20261124T160512-{i:06}-{i:016x}"))
                    .unwrap());
            })
        });
        group.bench_with_input(BenchmarkId::new("absent", n), &n, |b, _| {
            b.iter(|| {
                i += 1;
                assert!(!seen.contains(Kind::Id, &format!("absent-{i}")).unwrap());
            })
        });
    }
    group.finish();
}

fn spool_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (tmp, queue) = (dir.path().join("tmp"), dir.path().join("queue"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&queue).unwrap();
    let bytes = envelope::to_bytes(&[message(1024)]);
    let mut n = 0u64;
    c.bench_function("spool_write_fsync_2k", |b| {
        b.iter(|| {
            n += 1;
            let mut s = rs::spool::Staged::create(&tmp, n as i64).unwrap();
            s.write_all(&bytes).unwrap();
            s.sync().unwrap();
            s.commit(&queue.join(n.to_string())).unwrap();
            rs::spool::durable::fsync_dir(&queue).unwrap();
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = envelope_benches, seen_benches, spool_benches
}
criterion_main!(benches);
