//! Fills a spool's queue with N messages quickly, for benchmarks at scale
//! (scripts/bench.sh W4): 64 distinct envelopes per precedence are written,
//! and every other entry is a hard link to one of them under its own entry
//! name (the names are what listing, accounting and eviction read).
//!
//!   cargo run --release --example fill_queue -- SPOOL N
use std::path::PathBuf;

use rs::message::*;
use rs::spool::EntryName;
use rs::time::Timestamp;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let spool = PathBuf::from(args.next().ok_or("usage: fill_queue SPOOL N")?);
    let n: u64 = args.next().ok_or("usage: fill_queue SPOOL N")?.parse()?;
    let base = Timestamp::parse("2026-01-01T00:00:00Z")?;
    let name = |s: &str| Name::new("n", s).map_err(|e| e.to_string());
    let mut templates: Vec<Vec<PathBuf>> = vec![Vec::new(); 3];
    for (rank, p) in Precedence::ALL.iter().enumerate() {
        let dir = spool.join("queue").join(p.as_str());
        std::fs::create_dir_all(&dir)?;
        for t in 0..64u64 {
            let created = Timestamp::from_micros(base.as_micros() + t as i64);
            let m = Message {
                header: Header {
                    id: MessageId::mint(created),
                    created,
                    class: name("bench")?,
                    subclass: name("w4")?,
                    locator: Locator::Source(Source {
                        component: name("a.host")?,
                        component_type: name("rs-send")?,
                        version: name("0.1.0")?,
                        qos: Qos {
                            expiry: None,
                            precedence: *p,
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
                    bytes: vec![b'x'; 1024],
                }),
            };
            let path = spool.join("tmp").join(format!("template-{rank}-{t}"));
            std::fs::write(&path, envelope::to_bytes(&[m]))?;
            templates[rank].push(path);
        }
    }
    for i in 0..n {
        let rank = match i % 10 {
            0 => 0,
            1..=6 => 1,
            _ => 2,
        };
        let p = Precedence::ALL[rank];
        let template = &templates[rank][(i % 64) as usize];
        let created = Timestamp::from_micros(base.as_micros() + i as i64);
        let entry = EntryName {
            arrival: 1_000_000_000_000_000 + i,
            id: MessageId::mint(created),
            precedence: p,
            persistence: Persistence::Normal,
            addressed: false,
            created,
            expiry: None,
            size: std::fs::metadata(template)?.len(),
        };
        std::fs::hard_link(
            template,
            spool.join("queue").join(p.as_str()).join(entry.to_string()),
        )?;
    }
    for t in templates.iter().flatten() {
        std::fs::remove_file(t)?;
    }
    // The ledger is rebuilt from the names on the next run.
    let _ = std::fs::remove_file(spool.join("state/usage"));
    println!("{n} entries in {}", spool.display());
    Ok(())
}
