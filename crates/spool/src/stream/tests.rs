//! Unit tests of streamed envelopes: written, scanned, decoded, reheaded.

use super::*;
use crate::message::*;
use crate::time::Timestamp;

fn header() -> Header {
    let name = |s: &str| Name::new("n", s).unwrap();
    Header {
        id: MessageId::parse("m1").unwrap(),
        created: Timestamp::from_secs(1_764_000_000),
        class: name("c"),
        subclass: name("s"),
        locator: Locator::Source(Source {
            component: name("a.b"),
            component_type: name("t"),
            version: name("1"),
            qos: Qos {
                expiry: None,
                precedence: Precedence::Bulk,
                persistence: Persistence::Normal,
            },
        }),
        in_reply_to: None,
        origin_key: None,
        epoch: None,
        routing: vec![],
    }
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(7919) >> 3) as u8).collect()
}

fn streamed(bytes: &[u8]) -> (tempfile::NamedTempFile, Vec<u8>) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write_data_envelope(
        &header(),
        &MimeType::octet_stream(),
        bytes.len() as u64,
        &mut &bytes[..],
        f.as_file_mut(),
    )
    .unwrap();
    let written = std::fs::read(f.path()).unwrap();
    (f, written)
}

#[test]
fn streamed_envelopes_are_ordinary_envelopes() {
    for n in [0, 1, 56, 57, 58, 1000, 200_000] {
        let bytes = data(n);
        let (mut f, written) = streamed(&bytes);
        let parsed = envelope::parse(&written).unwrap();
        assert_eq!(
            parsed[0].content,
            Content::Data(Data {
                mime_type: MimeType::octet_stream(),
                bytes: bytes.clone()
            }),
            "{n}"
        );
        let mut out = Vec::new();
        let layout = decode(f.as_file_mut(), &mut out).unwrap();
        assert_eq!(out, bytes, "{n}");
        assert_eq!(layout.size, n as u64);
        assert_eq!(layout.header, header());
    }
}

#[test]
fn an_envelope_laid_out_in_parts_is_the_streamed_one() {
    for n in [0usize, 1, 56, 57, 58, 57 * 100, 100_001] {
        let bytes = data(n);
        let (_, written) = streamed(&bytes);
        let (head, tail) = data_envelope_parts(&header(), &MimeType::octet_stream(), n as u64);
        let mut laid = head.clone();
        laid.resize(head.len() + text_len(n as u64) as usize, 0);
        // The data text placed piece by piece, from the end.
        for start in (0..n).step_by(57 * 7).rev() {
            let end = (start + 57 * 7).min(n);
            let mut text = vec![0u8; (end - start).div_ceil(57) * 77];
            let len = encode_lines(&bytes[start..end], &mut text);
            let at = head.len() + text_offset(start as u64) as usize;
            laid[at..at + len].copy_from_slice(&text[..len]);
        }
        laid.extend_from_slice(&tail);
        // Each envelope picks its boundary at random.
        let boundary = |b: &[u8]| {
            let t = String::from_utf8_lossy(b).into_owned();
            let at = t.find("=_rs_").unwrap();
            t[at..at + 29].to_string()
        };
        let laid = String::from_utf8(laid)
            .unwrap()
            .replace(&boundary(&head), "B");
        let written = String::from_utf8(written.clone())
            .unwrap()
            .replace(&boundary(&written), "B");
        assert!(laid == written, "{n}");
    }
}

#[test]
fn data_text_in_lines_of_any_length_decodes_the_same() {
    let bytes = data(600_000);
    let (_, written) = streamed(&bytes);
    let text = String::from_utf8(written).unwrap();
    let open = text.find("<data").unwrap();
    let start = open + text[open..].find('>').unwrap() + 1;
    let end = text.find("</data>").unwrap();
    let b64: String = text[start..end].split_whitespace().collect();
    let layouts = [
        format!("\n{b64}"),   // one line of 800 KB
        format!("\n{b64}\n"), // on a line of its own
        b64.as_bytes()
            .chunks(1000)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n"), // CRLF, 1,000 a line
        b64.as_bytes()
            .chunks(3)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" \n "), // 3 a line, spaces
        b64.as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\t\n"), // tabs
    ];
    for (i, l) in layouts.iter().enumerate() {
        let changed = format!("{}{l}{}", &text[..start], &text[end..]);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(changed.as_bytes()).unwrap();
        let mut out = Vec::new();
        let layout = decode(f.as_file_mut(), &mut out).unwrap_or_else(|e| panic!("{i}: {e}"));
        assert!(out == bytes, "layout {i}");
        assert_eq!(layout.size, bytes.len() as u64);
    }
}

#[test]
fn the_in_memory_writer_output_scans_too() {
    let m = Message {
        header: header(),
        content: Content::Data(Data {
            mime_type: MimeType::octet_stream(),
            bytes: data(70_000),
        }),
    };
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&envelope::to_bytes(&[m])).unwrap();
    assert_eq!(scan(f.as_file_mut()).unwrap().size, 70_000);
}

#[test]
fn a_new_header_keeps_the_content_byte_for_byte() {
    let bytes = data(100_000);
    let (mut f, _) = streamed(&bytes);
    let layout = scan(f.as_file_mut()).unwrap();
    let mut h = header();
    h.routing.push(Routing {
        component: Name::new("r", "b.hub").unwrap(),
        received: Some(Timestamp::from_secs(5)),
        sent: None,
    });
    let mut out = Vec::new();
    write_with_header(f.as_file_mut(), &layout, &h, &mut out).unwrap();
    let m = envelope::parse(&out).unwrap().remove(0);
    assert_eq!(m.header, h);
    assert_eq!(
        m.content,
        Content::Data(Data {
            mime_type: MimeType::octet_stream(),
            bytes
        })
    );
}

#[test]
fn a_leaving_message_carries_its_trace_and_its_content_verbatim() {
    let me = Name::new("r", "b.hub").unwrap();
    for n in [0, 1000, 200_000] {
        let bytes = data(n);
        let (f, _) = streamed(&bytes);
        for received in [None, Some(Timestamp::from_secs(5))] {
            let mut original = header();
            if let Some(t) = received {
                original.stamp_received(&me, t);
            }
            // The file as the spool holds it (received here, or not).
            let m = Message {
                header: original.clone(),
                content: Content::Data(Data {
                    mime_type: MimeType::octet_stream(),
                    bytes: bytes.clone(),
                }),
            };
            std::fs::write(f.path(), envelope::to_bytes(&[m])).unwrap();
            let mut r =
                Reheaded::open(f.path(), |h| h.stamp_sent(&me, Timestamp::from_secs(9))).unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out.len() as u64, r.len(), "{n}");
            let got = envelope::parse(&out).unwrap().remove(0);
            assert_eq!(got.header.routing.len(), 1, "{n}");
            let trace = &got.header.routing[0];
            assert_eq!(
                (&trace.component, trace.received, trace.sent),
                (&me, received, Some(Timestamp::from_secs(9)))
            );
            assert_eq!(
                got.content,
                Content::Data(Data {
                    mime_type: MimeType::octet_stream(),
                    bytes: bytes.clone()
                })
            );
        }
    }
    // Not an envelope: read as it is.
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), b"not mime").unwrap();
    let mut out = Vec::new();
    Reheaded::open(f.path(), |_| panic!("no header to edit"))
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, b"not mime");
}

#[test]
fn damage_is_refused() {
    let (_, good) = streamed(&data(10_000));
    let text = String::from_utf8(good.clone()).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        good[..good.len() / 2].to_vec(),
        good[..good.len() - 3].to_vec(),
        text.replacen("size=\"10000\"", "size=\"10001\"", 1)
            .into_bytes(),
        text.replacen("encoding=\"base64\"", "encoding=\"text\"", 1)
            .into_bytes(),
        {
            let mut b = good.clone();
            let i = b.len() / 2;
            b[i] = b'!';
            b
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(c).unwrap();
        assert!(scan(f.as_file_mut()).is_err(), "case {i} accepted");
    }
}

#[test]
fn data_that_changes_while_read_is_an_error() {
    let bytes = data(1000);
    let mut out = Vec::new();
    assert!(write_data_envelope(
        &header(),
        &MimeType::octet_stream(),
        999,
        &mut &bytes[..],
        &mut out
    )
    .is_err());
}
