//! What `rs-send` sends: the data or text read from `--file` or stdin,
//! small in memory, large streamed from its file (stdin spilled to the
//! spool's tmp/ first, so memory stays bounded and the size is known).

use std::io::{IsTerminal, Read, Write};

use crate::cli::send::SendArgs;
use crate::error::Error;
use crate::message::{stream, Content, MimeType};
use crate::spool::Spool;
use crate::time::Timestamp;

/// What the message carries.
pub(super) enum Body {
    /// Built in memory.
    Content(Content),
    /// Data written as a stream ([`stream::THRESHOLD`] and more).
    Stream {
        mime: MimeType,
        size: u64,
        source: Large,
    },
}

/// Where data comes from.
pub(super) enum Payload {
    Small(Vec<u8>),
    Large(Large),
}

/// Large data: a file, or stdin copied into a file in tmp/ first (its size
/// must be known before the envelope is written; removed when dropped).
pub(super) enum Large {
    File(std::fs::File, u64),
    Spilled(crate::spool::Staged, std::fs::File),
}

impl Large {
    pub(super) fn size(&self) -> u64 {
        match self {
            Large::File(_, n) => *n,
            Large::Spilled(s, _) => s.size(),
        }
    }

    pub(super) fn reader(&mut self) -> &mut dyn Read {
        match self {
            Large::File(f, _) | Large::Spilled(_, f) => f,
        }
    }

    pub(super) fn file(&mut self) -> &mut std::fs::File {
        match self {
            Large::File(f, _) | Large::Spilled(_, f) => f,
        }
    }
}

/// The data to send: small data in memory, large data from its file or,
/// from stdin, spilled to tmp/ (memory stays bounded either way).
pub(super) fn data_source(
    args: &SendArgs,
    spool: &Spool,
    now: Timestamp,
) -> Result<Payload, Error> {
    let threshold = stream::THRESHOLD;
    if let Some(text) = &args.text {
        // The data is the text given (never an empty stdin read instead).
        if args.file.is_some() {
            return Err(Error::usage(
                "--text and --file both give the content: give one of them",
            ));
        }
        return Ok(Payload::Small(text.as_bytes().to_vec()));
    }
    if let Some(path) = &args.file {
        let no_input = |e: std::io::Error| Error::Input {
            path: path.clone(),
            reason: e.to_string(),
        };
        let mut file = std::fs::File::open(path).map_err(no_input)?;
        let size = file.metadata().map_err(no_input)?.len();
        if size > threshold {
            return Ok(Payload::Large(Large::File(file, size)));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.read_to_end(&mut bytes).map_err(no_input)?;
        return Ok(Payload::Small(bytes));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Error::usage(
            "no content: give --file FILE, pipe the content to stdin, or (for alarms and events) --text",
        ));
    }
    let read_err = Error::Stdin;
    let mut lock = stdin.lock();
    let mut head = Vec::new();
    (&mut lock)
        .take(threshold + 1)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    if head.len() as u64 <= threshold {
        return Ok(Payload::Small(head));
    }
    let mut spill = spool.stage(now)?;
    let path = spill.path().to_path_buf();
    let write_err = |e: std::io::Error| Error::from(crate::spool::Error::io("write", &path, e));
    spill.write_all(&head).map_err(write_err)?;
    std::io::copy(&mut lock, &mut spill).map_err(read_err)?;
    let reader = std::fs::File::open(&path)
        .map_err(|e| Error::from(crate::spool::Error::io("open", &path, e)))?;
    Ok(Payload::Large(Large::Spilled(spill, reader)))
}

pub(super) fn read_content(args: &SendArgs) -> Result<Vec<u8>, Error> {
    match &args.file {
        Some(path) => std::fs::read(path).map_err(|e| Error::Input {
            path: path.clone(),
            reason: e.to_string(),
        }),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(Error::usage(
                    "no content: give --file FILE, pipe the content to stdin, or (for alarms and events) --text",
                ));
            }
            let mut buf = Vec::new();
            stdin.lock().read_to_end(&mut buf).map_err(Error::Stdin)?;
            Ok(buf)
        }
    }
}
