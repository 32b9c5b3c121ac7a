//! The envelope: a MIME `multipart/related` entity holding one or more
//! messages, each as a header part followed by its content part. The
//! `Content-ID` of a part names what it is and whose it is:
//! `<header.ID@rs>`, `<content.ID@rs>`.
//!
//! The same bytes are a spool file, an email body and an HTTP body: the
//! top-level headers make a valid RFC 5322 message (MIME-Version, Message-ID,
//! Date, Subject), every line is 7-bit and under 998 bytes (parts that would
//! not be go as base64), and lines end in LF (transports that need CRLF
//! convert on the wire).
//!
//! Invariant: a reader can route on the header without decoding any
//! content: [`parse_headers`] decodes header parts only, and
//! [`first_header`] reads just a bounded prefix of a file.

use std::io::{self, Read, Write};

use base64::Engine as _;
use mailparse::{MailHeaderMap, ParsedMail};

use super::*;

/// How much of a file [`first_header`] reads at most.
pub const PREFIX_BYTES: usize = limits::HEADER_BYTES * 2 + 4096;

/// Serialises messages into one envelope.
pub fn to_bytes(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write(messages, &mut out);
    out
}

/// Writes messages as one envelope to `out`.
pub fn write(messages: &[Message], out: &mut impl Write) -> io::Result<()> {
    let parts: Vec<(String, String)> = messages
        .iter()
        .flat_map(|m| {
            [
                (
                    format!("header.{}@rs", m.header.id),
                    xml::header_to_xml(&m.header),
                ),
                (
                    format!("content.{}@rs", m.header.id),
                    xml::content_to_xml(&m.content),
                ),
            ]
        })
        .collect();
    let Some(first) = messages.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an envelope holds at least one message",
        ));
    };
    let boundary = pick_boundary(parts.iter().map(|(_, body)| body.as_bytes()));
    write_head(out, &first.header, messages.len(), &boundary)?;
    for (cid, body) in &parts {
        write_part(out, &boundary, cid, body)?;
    }
    writeln!(out, "--{boundary}--")
}

/// Writes the envelope's top-level headers (for `count` messages, the first
/// having header `h`).
pub fn write_head(
    out: &mut impl Write,
    h: &Header,
    count: usize,
    boundary: &str,
) -> io::Result<()> {
    let message_id = if count == 1 {
        format!("<{}@rs>", h.id)
    } else {
        format!("<batch.{}.{count}@rs>", h.id)
    };
    write!(
        out,
        "MIME-Version: 1.0\nMessage-ID: {message_id}\nDate: {}\nSubject: rs {}/{} {}\nX-Rs-Messages: {count}\n\
         Content-Type: multipart/related; type=\"application/xml\";\n start=\"<header.{}@rs>\";\n boundary=\"{boundary}\"\n\n",
        date_rfc2822(h.created),
        h.class,
        h.subclass,
        h.id,
        h.id,
    )
}

/// Writes one part (its delimiter, headers and transfer-encoded body).
pub fn write_part(out: &mut impl Write, boundary: &str, cid: &str, body: &str) -> io::Result<()> {
    let (cte, encoded) = transfer_encode(body);
    write!(
        out,
        "--{boundary}\nContent-Type: application/xml; charset=utf-8\nContent-ID: <{cid}>\nContent-Transfer-Encoding: {cte}\n\n"
    )?;
    out.write_all(encoded.as_bytes())?;
    if !encoded.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A boundary that occurs in none of the bodies. `=_` cannot occur in base64
/// and is rare in text; the random part makes a clash with text vanishingly
/// unlikely, and the check makes it impossible.
pub fn pick_boundary<'a>(bodies: impl Iterator<Item = &'a [u8]> + Clone) -> String {
    loop {
        let mut r = [0u8; 12];
        let _ = getrandom::fill(&mut r);
        let b: String = r.iter().map(|b| format!("{b:02x}")).collect();
        let boundary = format!("=_rs_{b}");
        if !bodies.clone().any(|body| {
            body.windows(boundary.len())
                .any(|w| w == boundary.as_bytes())
        }) {
            return boundary;
        }
    }
}

/// 7bit when every line is printable ASCII under 998 bytes, else base64.
fn transfer_encode(body: &str) -> (&'static str, String) {
    let clean = body
        .split('\n')
        .all(|l| l.len() < 998 && l.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)));
    if clean {
        ("7bit", body.to_string())
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
        let mut out = String::new();
        for chunk in encoded.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        ("base64", out)
    }
}

fn date_rfc2822(t: crate::time::Timestamp) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp(t.as_secs())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    dt.format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".to_string())
}

// ---------------------------------------------------------------- reading

/// Parses a whole envelope: every header and content part.
pub fn parse(bytes: &[u8]) -> Result<Vec<Message>> {
    let mail = parse_mime(bytes)?;
    let parts = our_parts(&mail)?;
    let mut messages = Vec::with_capacity(parts.len() / 2);
    let mut iter = parts.into_iter();
    while let Some((role, id, part)) = iter.next() {
        if role != Role::Header {
            return Err(Error::Mime(format!(
                "content part for {id} without a header part before it"
            )));
        }
        let header = decode_header(part, &id)?;
        let Some((Role::Content, cid, cpart)) = iter.next() else {
            return Err(Error::Mime(format!(
                "header part for {id} is not followed by its content part"
            )));
        };
        if cid != id {
            return Err(Error::Mime(format!(
                "header part for {id} is followed by the content part of {cid}"
            )));
        }
        let body = part_body(cpart)?;
        let content = xml::content_from_xml(&body)?;
        messages.push(Message { header, content });
    }
    Ok(messages)
}

/// Turns bare LF line ends into CRLF (SMTP's), leaving CRLF as it is.
pub fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Parses only the header parts of an envelope; content parts are located
/// but not decoded.
pub fn parse_headers(bytes: &[u8]) -> Result<Vec<Header>> {
    let mail = parse_mime(bytes)?;
    our_parts(&mail)?
        .into_iter()
        .filter(|(role, _, _)| *role == Role::Header)
        .map(|(_, id, part)| decode_header(part, &id))
        .collect()
}

/// Reads the header of the first message in the envelope held by `reader`,
/// reading at most a bounded prefix (about 130 KiB) whatever the envelope's size.
pub fn first_header(reader: impl Read) -> Result<Header> {
    let mut prefix = Vec::with_capacity(8192);
    reader
        .take(PREFIX_BYTES as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| Error::Mime(format!("read: {e}")))?;
    let mail = parse_mime(&prefix)?;
    if mail.subparts.len() < 2 {
        return Err(Error::Mime(
            "no complete header part at the start of the envelope".into(),
        ));
    }
    let (role, id) = identify(&mail.subparts[0])?;
    if role != Role::Header {
        return Err(Error::Mime("the first part is not a header part".into()));
    }
    decode_header(&mail.subparts[0], &id)
}

/// The new start of the one-message envelope whose first bytes are
/// `prefix`, and the offset where its content part starts.
pub fn rehead(prefix: &[u8], edit: impl FnOnce(&mut Header)) -> Option<(Vec<u8>, u64)> {
    let mail = parse_mime(prefix).ok()?;
    if mail.headers.get_first_value("X-Rs-Messages").as_deref() != Some("1")
        || mail.subparts.len() < 2
    {
        return None;
    }
    let boundary = mail.ctype.params.get("boundary")?.clone();
    let (role, id) = identify(&mail.subparts[0]).ok()?;
    if role != Role::Header {
        return None;
    }
    let mut h = decode_header(&mail.subparts[0], &id).ok()?;
    // The delimiter lines open the header part, then the content part.
    let delimiter = format!("\n--{boundary}\n");
    let find = |from: usize| {
        prefix[from..]
            .windows(delimiter.len())
            .position(|w| w == delimiter.as_bytes())
            .map(|at| from + at)
    };
    let content = find(find(0)? + 1)? + 1;
    edit(&mut h);
    let xml = xml::header_to_xml(&h);
    if xml.contains(&boundary) {
        return None;
    }
    let mut head = Vec::with_capacity(content + 256);
    write_head(&mut head, &h, 1, &boundary).ok()?;
    write_part(&mut head, &boundary, &format!("header.{}@rs", h.id), &xml).ok()?;
    Some((head, content as u64))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Header,
    Content,
}

fn parse_mime(bytes: &[u8]) -> Result<ParsedMail<'_>> {
    let mail = mailparse::parse_mail(bytes).map_err(|e| Error::Mime(e.to_string()))?;
    if mail.ctype.mimetype != "multipart/related" {
        return Err(Error::Mime(format!(
            "top-level type is {}, expected multipart/related",
            mail.ctype.mimetype
        )));
    }
    if !mail.ctype.params.contains_key("boundary") {
        return Err(Error::Mime("multipart/related without a boundary".into()));
    }
    if mail.headers.len() > limits::ENVELOPE_HEADERS {
        return Err(Error::TooLarge {
            what: "envelope header lines",
            limit: limits::ENVELOPE_HEADERS,
        });
    }
    if header_bytes(&mail) > limits::ENVELOPE_HEADER_BYTES {
        return Err(Error::TooLarge {
            what: "envelope header bytes",
            limit: limits::ENVELOPE_HEADER_BYTES,
        });
    }
    Ok(mail)
}

fn our_parts<'m, 'a>(
    mail: &'m ParsedMail<'a>,
) -> Result<Vec<(Role, MessageId, &'m ParsedMail<'a>)>> {
    if mail.subparts.is_empty() {
        return Err(Error::Mime("the envelope holds no parts".into()));
    }
    if mail.subparts.len() > 2 * limits::ENVELOPE_MESSAGES {
        return Err(Error::TooLarge {
            what: "messages in one envelope",
            limit: limits::ENVELOPE_MESSAGES,
        });
    }
    mail.subparts
        .iter()
        .map(|p| identify(p).map(|(role, id)| (role, id, p)))
        .collect()
}

fn identify(part: &ParsedMail<'_>) -> Result<(Role, MessageId)> {
    if part.headers.len() > limits::MIME_HEADERS {
        return Err(Error::TooLarge {
            what: "part header lines",
            limit: limits::MIME_HEADERS,
        });
    }
    if header_bytes(part) > limits::PART_HEADER_BYTES {
        return Err(Error::TooLarge {
            what: "part header bytes",
            limit: limits::PART_HEADER_BYTES,
        });
    }
    let cid = part
        .headers
        .get_first_value("Content-ID")
        .ok_or_else(|| Error::Mime("a part has no Content-ID".into()))?;
    let inner = cid
        .trim()
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .and_then(|s| s.strip_suffix("@rs"))
        .ok_or_else(|| {
            Error::Mime(format!(
                "Content-ID {cid} is not <header.ID@rs> or <content.ID@rs>"
            ))
        })?;
    let (role, id) = if let Some(id) = inner.strip_prefix("header.") {
        (Role::Header, id)
    } else if let Some(id) = inner.strip_prefix("content.") {
        (Role::Content, id)
    } else {
        return Err(Error::Mime(format!(
            "Content-ID {cid} names neither a header nor a content part"
        )));
    };
    if part.ctype.mimetype != "application/xml" && part.ctype.mimetype != "text/xml" {
        return Err(Error::Mime(format!(
            "part {cid} has type {}, expected application/xml",
            part.ctype.mimetype
        )));
    }
    Ok((role, MessageId::parse(id)?))
}

/// Bytes of a MIME entity's header lines.
fn header_bytes(mail: &ParsedMail<'_>) -> usize {
    mail.headers
        .iter()
        .map(|h| h.get_key_raw().len() + h.get_value_raw().len() + 2)
        .sum()
}

fn part_body(part: &ParsedMail<'_>) -> Result<Vec<u8>> {
    part.get_body_raw()
        .map_err(|e| Error::Mime(format!("part body: {e}")))
}

fn decode_header(part: &ParsedMail<'_>, id: &MessageId) -> Result<Header> {
    if part.raw_bytes.len() > limits::HEADER_BYTES * 2 {
        return Err(Error::TooLarge {
            what: "header part",
            limit: limits::HEADER_BYTES,
        });
    }
    let header = xml::header_from_xml(&part_body(part)?)?;
    if &header.id != id {
        return Err(Error::Mime(format!(
            "the header part named {id} in its Content-ID holds message {}",
            header.id
        )));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_become_crlf_once() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_crlf(b""), b"");
    }
}
