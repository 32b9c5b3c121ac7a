//! Messages in files, in bounded memory (the file layer over the model in
//! `rs_model::message`, which never touches the file system): large `data`
//! messages, and any one-message envelope read with its header changed
//! ([`Reheaded`]).
//!
//! A message whose data exceeds [`THRESHOLD`] is written and read as a
//! stream: the envelope holds one message, its content part is 7-bit XML
//! whose `<data encoding="base64">` text is base64 in lines of 76. The bytes
//! are exactly those [`envelope::write`] would produce, so every
//! reader accepts them; this module only avoids holding them in memory.
//!
//! [`scan`] checks a whole envelope of that form without holding it (header
//! parsed, data decoded and counted against its stated size) and returns
//! where its content part starts, so a receiver can copy the content part
//! verbatim behind a new header part ([`write_with_header`]).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};

use base64::Engine as _;
use mailparse::MailHeaderMap;

use crate::message::envelope::{self, pick_boundary, write_head, write_part};
use crate::message::{limits, xml, Error, Header, MimeType, Result};

/// Data above this size is streamed rather than held in memory.
pub const THRESHOLD: u64 = 4 * 1024 * 1024;

/// Input bytes per base64 line (57 bytes make 76 characters).
pub const LINE_IN: usize = 57;

/// Writes a one-message envelope whose content is `size` bytes of data read
/// from `data`, in bounded memory. Fails if `data` does not hold exactly
/// `size` bytes.
pub fn write_data_envelope(
    header: &Header,
    mime: &MimeType,
    size: u64,
    data: &mut dyn Read,
    out: &mut dyn Write,
) -> io::Result<()> {
    let (head, tail) = data_envelope_parts(header, mime, size);
    let mut out = io::BufWriter::with_capacity(256 * 1024, out);
    out.write_all(&head)?;
    let mut buf = vec![0u8; LINE_IN * 1024];
    let mut text = vec![0u8; LINE_OUT * 1024];
    let mut total = 0u64;
    loop {
        let n = read_full(data, &mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        let len = encode_lines(&buf[..n], &mut text);
        out.write_all(&text[..len])?;
        if n < buf.len() {
            break;
        }
    }
    if total != size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the data changed while it was read: {size} bytes announced, {total} read"),
        ));
    }
    out.write_all(&tail)?;
    out.flush()
}

/// What a one-message envelope of `size` bytes of data holds before its
/// data text and after it: the data text between is [`encode_lines`] of
/// the data, [`text_len`] bytes (so a writer may place each part of it
/// where it belongs, in any order).
pub fn data_envelope_parts(header: &Header, mime: &MimeType, size: u64) -> (Vec<u8>, Vec<u8>) {
    let header_xml = xml::header_to_xml(header);
    let boundary = pick_boundary(std::iter::once(header_xml.as_bytes()));
    let mut head = Vec::with_capacity(4096);
    write_head(&mut head, header, 1, &boundary).expect("writes to memory");
    write_part(
        &mut head,
        &boundary,
        &format!("header.{}@rs", header.id),
        &header_xml,
    )
    .expect("writes to memory");
    write!(
        head,
        "--{boundary}\nContent-Type: application/xml; charset=utf-8\nContent-ID: <content.{}@rs>\nContent-Transfer-Encoding: 7bit\n\n\
         <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<content><data mime-type=\"{}\" size=\"{size}\" encoding=\"base64\">\n",
        header.id,
        quick_xml::escape::escape(mime.as_str()),
    )
    .expect("writes to memory");
    let tail = format!("</data></content>\n--{boundary}--\n").into_bytes();
    (head, tail)
}

/// The length of the data text of `size` bytes (lines of 76 characters
/// and their ends).
pub fn text_len(size: u64) -> u64 {
    let (full, rest) = (size / LINE_IN as u64, size % LINE_IN as u64);
    full * LINE_OUT as u64
        + if rest > 0 {
            rest.div_ceil(3) * 4 + 1
        } else {
            0
        }
}

/// Where the data text of the byte at `offset` (a multiple of `LINE_IN`)
/// starts, from the start of the data text.
pub fn text_offset(offset: u64) -> u64 {
    offset / LINE_IN as u64 * LINE_OUT as u64
}

/// Characters per base64 line, with its line end.
pub const LINE_OUT: usize = 77;

/// Encodes `data` as base64 lines of 76 characters (the last shorter),
/// each ended by a newline, into `text` (at least `LINE_OUT` bytes for
/// each `LINE_IN` of data, rounded up); returns the bytes written.
pub fn encode_lines(data: &[u8], text: &mut [u8]) -> usize {
    use base64_simd::AsOut;
    // 64 lines at a time, encoded whole, then cut into lines.
    const LINES: usize = 64;
    let mut block = [0u8; LINES * 76];
    let mut at = 0;
    for group in data.chunks(LINE_IN * LINES) {
        let encoded = base64_simd::STANDARD.encode(group, block.as_mut_slice().as_out());
        for line in encoded.chunks(76) {
            text[at..at + line.len()].copy_from_slice(line);
            at += line.len();
            text[at] = b'\n';
            at += 1;
        }
    }
    at
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Where the parts of a one-message data envelope are.
#[derive(Clone, Debug)]
pub struct Layout {
    pub header: Header,
    pub mime_type: MimeType,
    /// Decoded data size.
    pub size: u64,
    /// Offset of the delimiter line that opens the content part.
    pub content_start: u64,
    pub boundary: String,
}

/// A line reader with a bound on line length and an offset.
struct Lines<R> {
    r: BufReader<R>,
    offset: u64,
}

impl<R: Read> Lines<R> {
    /// The next line without its line end (CRLF or LF), or `None` at the end.
    fn next(&mut self, max: usize) -> Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let n = (&mut self.r)
            .take(max as u64 + 2)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::Mime(format!("read: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with(b"\n") && n as u64 >= max as u64 + 2 {
            return Err(Error::TooLarge {
                what: "line",
                limit: max,
            });
        }
        self.offset += n as u64;
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }

    /// Header lines up to the blank line, as one block (with LF ends).
    fn header_block(&mut self, max: usize) -> Result<Vec<u8>> {
        let mut block = Vec::new();
        loop {
            let line = self
                .next(max)?
                .ok_or_else(|| Error::Mime("the input ends inside a header block".into()))?;
            if line.is_empty() {
                block.push(b'\n');
                return Ok(block);
            }
            block.extend_from_slice(&line);
            block.push(b'\n');
            if block.len() > max {
                return Err(Error::TooLarge {
                    what: "header block",
                    limit: max,
                });
            }
        }
    }
}

fn header_value(block: &[u8], name: &str) -> Result<Option<String>> {
    let (headers, _) = mailparse::parse_headers(block).map_err(|e| Error::Mime(e.to_string()))?;
    Ok(headers.get_first_value(name))
}

/// Checks, in bounded memory, that `file` holds one data message in the
/// streamable form and returns its layout. Reads the whole file (the data
/// is decoded and counted, not kept).
pub fn scan(file: &mut File) -> Result<Layout> {
    decode(file, &mut io::sink())
}

/// Like [`scan`], writing the decoded data to `out`.
pub fn decode(file: &mut File, out: &mut dyn Write) -> Result<Layout> {
    read(file, Some(out))
}

/// Reads the start of a one-message data envelope, up to its data (which
/// is not checked: its size is the one the envelope states), and returns
/// its layout.
pub fn scan_head(file: &mut File) -> Result<Layout> {
    read(file, None)
}

/// [`decode`]; without `out`, [`scan_head`].
fn read(file: &mut File, out: Option<&mut dyn Write>) -> Result<Layout> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::Mime(format!("seek: {e}")))?;
    let mut lines = Lines {
        r: BufReader::with_capacity(256 * 1024, file),
        offset: 0,
    };
    let boundary = top_boundary(&mut lines)?;
    let delimiter = format!("--{boundary}");
    skip_preamble(&mut lines, &delimiter)?;
    let (header, content_start) = header_part(&mut lines, &delimiter)?;
    let opening = content_opening(&mut lines, header.id.as_str())?;
    let (mime_type, size, end) = data_tag(&opening)?;
    let layout = Layout {
        header,
        mime_type,
        size,
        content_start,
        boundary,
    };
    let Some(out) = out else {
        return Ok(layout);
    };
    let tail = decode_data(&mut lines, &opening[end..], out, size)?;
    if tail.trim() != "</data></content>" {
        return Err(Error::Mime(format!(
            "unexpected end of the content part: {}",
            tail.trim()
        )));
    }
    let close = lines
        .next(1000)?
        .ok_or_else(|| Error::Mime("the envelope is not closed".into()))?;
    if close != format!("{delimiter}--").as_bytes() {
        return Err(Error::Mime(
            "the content part is not followed by the closing delimiter".into(),
        ));
    }
    Ok(layout)
}

/// The envelope's top header block, read; the boundary of its
/// `multipart/related` body.
fn top_boundary<R: Read>(lines: &mut Lines<R>) -> Result<String> {
    let top = lines.header_block(limits::ENVELOPE_HEADER_BYTES)?;
    let ctype =
        header_value(&top, "Content-Type")?.ok_or_else(|| Error::Mime("no Content-Type".into()))?;
    let ctype = mailparse::parse_content_type(&ctype);
    if ctype.mimetype != "multipart/related" {
        return Err(Error::Mime(format!(
            "top-level type is {}, expected multipart/related",
            ctype.mimetype
        )));
    }
    ctype
        .params
        .get("boundary")
        .cloned()
        .ok_or_else(|| Error::Mime("multipart/related without a boundary".into()))
}

/// Reads past the preamble: on return the next line is the header part's
/// first header.
fn skip_preamble<R: Read>(lines: &mut Lines<R>, delimiter: &str) -> Result<()> {
    loop {
        let line = lines
            .next(1000)?
            .ok_or_else(|| Error::Mime("no part in the envelope".into()))?;
        if line == delimiter.as_bytes() {
            return Ok(());
        }
        if lines.offset > limits::ENVELOPE_HEADER_BYTES as u64 * 2 {
            return Err(Error::Mime(
                "no part delimiter where one was expected".into(),
            ));
        }
    }
}

/// Reads the header part (its headers, its body to the next delimiter):
/// the message header it holds, checked against the part's Content-ID,
/// and the offset of the delimiter that opens the content part.
fn header_part<R: Read>(lines: &mut Lines<R>, delimiter: &str) -> Result<(Header, u64)> {
    let part = lines.header_block(limits::PART_HEADER_BYTES)?;
    let id = cid(&part, "header")?;
    let cte = header_value(&part, "Content-Transfer-Encoding")?.unwrap_or_else(|| "7bit".into());
    let mut body = Vec::new();
    let content_start = loop {
        let start = lines.offset;
        let line = lines.next(1000)?.ok_or_else(|| {
            Error::Mime("the header part is not followed by a content part".into())
        })?;
        if line == delimiter.as_bytes() {
            break start;
        }
        if line.starts_with(delimiter.as_bytes()) {
            return Err(Error::Mime(
                "the envelope ends after the header part".into(),
            ));
        }
        body.extend_from_slice(&line);
        body.push(b'\n');
        if body.len() > limits::HEADER_BYTES * 2 {
            return Err(Error::TooLarge {
                what: "header part",
                limit: limits::HEADER_BYTES,
            });
        }
    };
    let header_xml = match cte.trim().to_ascii_lowercase().as_str() {
        "7bit" | "8bit" => body,
        "base64" => {
            let compact: Vec<u8> = body
                .into_iter()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| Error::Mime(format!("header part: bad base64: {e}")))?
        }
        other => {
            return Err(Error::Mime(format!(
                "header part: unsupported transfer encoding {other}"
            )))
        }
    };
    let header = xml::header_from_xml(&header_xml)?;
    if header.id.as_str() != id {
        return Err(Error::Mime(format!(
            "the header part named {id} holds message {}",
            header.id
        )));
    }
    Ok((header, content_start))
}

/// Reads the content part's headers (checked: message `id`'s, 7-bit) and
/// its text up to the end of the `<data ...>` start tag, which it returns
/// (it may run on into the data).
fn content_opening<R: Read>(lines: &mut Lines<R>, id: &str) -> Result<String> {
    let part = lines.header_block(limits::PART_HEADER_BYTES)?;
    let cid2 = cid(&part, "content")?;
    if cid2 != id {
        return Err(Error::Mime(format!(
            "header part for {id} is followed by the content part of {cid2}"
        )));
    }
    let cte = header_value(&part, "Content-Transfer-Encoding")?.unwrap_or_else(|| "7bit".into());
    if !cte.trim().eq_ignore_ascii_case("7bit") {
        return Err(Error::Mime(format!(
            "a streamed content part must be 7bit, not {cte}"
        )));
    }
    let mut opening = String::new();
    while !opening.contains("<data") || !opening[opening.find("<data").unwrap_or(0)..].contains('>')
    {
        let line = lines
            .next(4096)?
            .ok_or_else(|| Error::Mime("the content part ends before its data".into()))?;
        opening.push_str(
            std::str::from_utf8(&line)
                .map_err(|_| Error::Mime("content part is not UTF-8".into()))?,
        );
        opening.push('\n');
        if opening.len() > 8192 {
            return Err(Error::Mime(
                "no <data> element at the start of the content part".into(),
            ));
        }
    }
    Ok(opening)
}

/// The data's mime-type and size, from the content part's `opening`
/// (nothing but `<content>` may come before `<data`), and where in
/// `opening` the start tag ends.
fn data_tag(opening: &str) -> Result<(MimeType, u64, usize)> {
    let at = opening.find("<data").unwrap_or(0);
    let prefix = opening[..at].trim();
    let prefix = prefix
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .unwrap_or(prefix)
        .trim();
    if prefix != "<content>" {
        return Err(Error::Mime(format!(
            "unexpected content before <data>: {prefix}"
        )));
    }
    let end = opening[at..]
        .find('>')
        .map_or(opening.len(), |e| at + e + 1);
    let (mime_type, size) = data_attributes(&opening[at..end])?;
    Ok((mime_type, size, end))
}

/// Decodes the data text (`rest`, what followed the start tag on its line,
/// then the lines that follow) into `out`; checks it decodes to exactly
/// `size` bytes. Returns the line that ends the data (from its `<`).
fn decode_data<R: Read>(
    lines: &mut Lines<R>,
    rest: &str,
    out: &mut dyn Write,
    size: u64,
) -> Result<String> {
    let mut feed = Base64Feed {
        out,
        decoded: 0,
        pending: Vec::with_capacity(256 * 1024),
        out_buf: Vec::with_capacity(192 * 1024),
    };
    let tail = match rest.find('<') {
        Some(lt) => {
            feed.feed(&rest.as_bytes()[..lt], Flush::All)?;
            rest[lt..].to_string()
        }
        None => {
            feed.feed(rest.as_bytes(), Flush::Whole)?;
            loop {
                let buf = lines
                    .r
                    .fill_buf()
                    .map_err(|e| Error::Mime(format!("read: {e}")))?;
                if buf.is_empty() {
                    return Err(Error::Mime("the content part ends inside its data".into()));
                }
                if let Some(lt) = memchr::memchr(b'<', buf) {
                    feed.feed(&buf[..lt], Flush::All)?;
                    lines.r.consume(lt);
                    lines.offset += lt as u64;
                    let line = lines.next(4096)?.unwrap_or_default();
                    break String::from_utf8_lossy(&line).into_owned();
                }
                let n = buf.len();
                feed.feed(buf, Flush::Whole)?;
                lines.r.consume(n);
                lines.offset += n as u64;
            }
        }
    };
    if feed.decoded != size {
        return Err(Error::Invalid {
            field: "data",
            reason: format!("size says {size} bytes, content has {}", feed.decoded),
        });
    }
    Ok(tail)
}

/// How much of the pending base64 text a feed decodes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Whole quanta of four characters (more text follows).
    Whole,
    /// Everything (the text ends here).
    All,
}

/// Base64 text decoded in blocks as the reader holds them (base64 lines
/// are short: one at a time costs more than the decoding), written to
/// `out` and counted.
struct Base64Feed<'a> {
    out: &'a mut dyn Write,
    decoded: u64,
    /// Text not yet decoded, line ends taken out.
    pending: Vec<u8>,
    out_buf: Vec<u8>,
}

impl Base64Feed<'_> {
    fn feed(&mut self, text: &[u8], flush: Flush) -> Result<()> {
        // Line by line (a byte at a time costs more than the decoding),
        // CRLF or LF. Other whitespace (rare: spaces, tabs) makes the
        // decoding fail; it is then taken out and the text decoded again.
        let mut rest = text;
        while let Some(p) = memchr::memchr(b'\n', rest) {
            let line = &rest[..p];
            self.pending
                .extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            rest = &rest[p + 1..];
        }
        self.pending.extend_from_slice(rest);
        for retry in [false, true] {
            if retry {
                self.pending.retain(|b| !b.is_ascii_whitespace());
            }
            let usable = match flush {
                Flush::All => self.pending.len(),
                Flush::Whole => self.pending.len() / 4 * 4,
            };
            if usable == 0 {
                return Ok(());
            }
            self.out_buf.clear();
            match base64_simd::STANDARD.decode_append(&self.pending[..usable], &mut self.out_buf) {
                Ok(_) => {
                    self.decoded += self.out_buf.len() as u64;
                    self.out
                        .write_all(&self.out_buf)
                        .map_err(|e| Error::Mime(format!("write: {e}")))?;
                    self.pending.drain(..usable);
                    return Ok(());
                }
                Err(_) if !retry && self.pending.iter().any(u8::is_ascii_whitespace) => {}
                Err(e) => {
                    return Err(Error::Invalid {
                        field: "data",
                        reason: format!("bad base64: {e}"),
                    })
                }
            }
        }
        Ok(())
    }
}

/// The ID a part's Content-ID names, checking its role.
fn cid(part: &[u8], role: &str) -> Result<String> {
    let cid = header_value(part, "Content-ID")?
        .ok_or_else(|| Error::Mime("a part has no Content-ID".into()))?;
    cid.trim()
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix("@rs>"))
        .and_then(|s| s.strip_prefix(&format!("{role}.")))
        .map(str::to_string)
        .ok_or_else(|| Error::Mime(format!("Content-ID {cid} is not <{role}.ID@rs>")))
}

/// The mime-type and size of a `<data ...>` start tag with base64 encoding.
fn data_attributes(tag: &str) -> Result<(MimeType, u64)> {
    let empty = format!("{}/>", tag.trim_end_matches('>').trim_end_matches('/'));
    let mut reader = quick_xml::Reader::from_str(&empty);
    let ev = reader.read_event().map_err(|e| Error::Xml(e.to_string()))?;
    let quick_xml::events::Event::Empty(e) = ev else {
        return Err(Error::Xml(format!("not a data element: {tag}")));
    };
    let (mut mime, mut size, mut encoding) = (None, None, None);
    for a in e.attributes() {
        let a = a.map_err(|e| Error::Xml(e.to_string()))?;
        let v = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| Error::Xml(e.to_string()))?
            .into_owned();
        match a.key.as_ref() {
            "mime-type" => mime = Some(v),
            "size" => size = Some(v),
            "encoding" => encoding = Some(v),
            _ => {}
        }
    }
    if encoding.as_deref() != Some("base64") {
        return Err(Error::Invalid {
            field: "data encoding",
            reason: "a streamed data element must be base64".into(),
        });
    }
    let size = size
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Invalid {
            field: "data",
            reason: "no valid size".into(),
        })?;
    let mime = MimeType::new(mime.ok_or_else(|| Error::Invalid {
        field: "data",
        reason: "no mime-type".into(),
    })?)?;
    Ok((mime, size))
}

/// Envelope files this large or smaller may be read into memory when they
/// are not in the streamable one-message form.
pub const MAX_IN_MEMORY: u64 = 256 * 1024 * 1024;

/// An envelope read from a file.
#[derive(Debug)]
pub enum Loaded {
    /// Parsed in memory.
    Messages(Vec<crate::message::Message>),
    /// A large one-message data envelope, checked in bounded memory.
    Large(Box<Layout>),
}

/// Reads the envelope in the file at `path`: large files as a stream
/// ([`scan`]), falling back to memory for other forms up to
/// [`MAX_IN_MEMORY`]; small files in memory.
pub fn load(path: &std::path::Path) -> Result<Loaded> {
    let f = File::open(path).map_err(|e| Error::Mime(format!("{}: {e}", path.display())))?;
    load_file(&f)
}

/// [`load`] for a file already open (read from its start; the descriptor's
/// offset is not relied on).
pub fn load_file(file: &File) -> Result<Loaded> {
    let io_err = |e: io::Error| Error::Mime(format!("read: {e}"));
    let mut f = file.try_clone().map_err(io_err)?;
    let size = f.metadata().map_err(io_err)?.len();
    if size > THRESHOLD {
        match scan(&mut f) {
            Ok(layout) => return Ok(Loaded::Large(Box::new(layout))),
            Err(e) if size > MAX_IN_MEMORY => {
                return Err(Error::Mime(format!(
                    "{size} bytes, and not a one-message data envelope: {e}"
                )))
            }
            Err(_) => {}
        }
        // Before holding it in memory, make sure no line is absurdly long:
        // a parser would otherwise hold the whole line before refusing it.
        check_lines(&mut f)?;
    }
    f.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    f.read_to_end(&mut bytes).map_err(io_err)?;
    envelope::parse(&bytes).map(Loaded::Messages)
}

/// Reads `f` from its start in bounded memory, failing at the first line
/// longer than [`limits::LINE_BYTES`].
fn check_lines(f: &mut File) -> Result<()> {
    f.seek(SeekFrom::Start(0))
        .map_err(|e| Error::Mime(format!("seek: {e}")))?;
    let mut lines = Lines {
        r: BufReader::with_capacity(256 * 1024, f),
        offset: 0,
    };
    while lines.next(limits::LINE_BYTES)?.is_some() {}
    Ok(())
}

/// Writes the envelope in `file` (laid out as `layout` says) with its header
/// part replaced by `header`, copying the content part verbatim.
pub fn write_with_header(
    file: &mut File,
    layout: &Layout,
    header: &Header,
    out: &mut dyn Write,
) -> io::Result<()> {
    let header_xml = xml::header_to_xml(header);
    if header_xml.contains(&layout.boundary) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the new header holds the boundary",
        ));
    }
    let mut out = io::BufWriter::with_capacity(256 * 1024, out);
    write_head(&mut out, header, 1, &layout.boundary)?;
    write_part(
        &mut out,
        &layout.boundary,
        &format!("header.{}@rs", header.id),
        &header_xml,
    )?;
    file.seek(SeekFrom::Start(layout.content_start))?;
    io::copy(file, &mut out)?;
    out.flush()
}

/// A one-message envelope file read with its header changed: new
/// top-level headers and header part, then the content part copied
/// verbatim from the file, never held in memory. How a message leaves a
/// hop with the hop's trace ([`crate::message::Header::stamp_sent`]) whatever its size.
/// The file reads unchanged when it is not a one-message envelope whose
/// content part starts within the bounded prefix (a spool file always is).
pub struct Reheaded {
    head: io::Cursor<Vec<u8>>,
    rest: std::fs::File,
    len: u64,
}

impl Reheaded {
    /// Opens the envelope at `path`, its header changed by `edit`.
    pub fn open(path: &std::path::Path, edit: impl FnOnce(&mut Header)) -> io::Result<Reheaded> {
        use std::io::{Seek, SeekFrom};
        let mut rest = std::fs::File::open(path)?;
        let size = rest.metadata()?.len();
        let mut prefix = Vec::with_capacity(8192);
        (&mut rest)
            .take(envelope::PREFIX_BYTES as u64)
            .read_to_end(&mut prefix)?;
        let (head, from) = envelope::rehead(&prefix, edit).unwrap_or_default();
        rest.seek(SeekFrom::Start(from))?;
        Ok(Reheaded {
            len: head.len() as u64 + size.saturating_sub(from),
            head: io::Cursor::new(head),
            rest,
        })
    }

    /// The file at `path` as it is.
    pub fn verbatim(path: &std::path::Path) -> io::Result<Reheaded> {
        let rest = std::fs::File::open(path)?;
        Ok(Reheaded {
            len: rest.metadata()?.len(),
            head: io::Cursor::new(Vec::new()),
            rest,
        })
    }

    /// What it reads: the new start (bytes), then the rest of the file
    /// from where the file stands.
    pub fn into_parts(self) -> (Vec<u8>, std::fs::File) {
        let at = self.head.position() as usize;
        let mut head = self.head.into_inner();
        head.drain(..at.min(head.len()));
        (head, self.rest)
    }

    /// The bytes it reads, in all.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for Reheaded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.head.read(buf)? {
            0 => self.rest.read(buf),
            n => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests;
