//! Handing bytes between two threads in chunks, so that the ASCII armor
//! (base64 and CRC-24) runs on a second core while Sequoia encrypts or
//! decrypts on the first: Sequoia's stream is serial (CFB and the SHA-1
//! MDC cannot be split), the armor around it need not wait for it.
//!
//! A bounded channel of a few chunks keeps memory bounded: the faster side
//! blocks when the slower one is `DEPTH` chunks behind. The end of a stream
//! is said (an empty chunk), never inferred: a sender that stops without
//! saying so (an error, a panic) leaves its reader with an error, so a cut
//! stream is never taken for a whole one.

use std::fmt;
use std::io::{self, Read, Write};
use std::mem;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// Bytes per chunk handed over.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight at most (so at most `CHUNK * (DEPTH + 2)` bytes held).
const DEPTH: usize = 4;

/// What travels: a chunk (empty: the end), or the error that ended the stream.
type Chunk = io::Result<Vec<u8>>;

/// A channel for chunks.
pub fn channel() -> (SyncSender<Chunk>, Receiver<Chunk>) {
    sync_channel(DEPTH)
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the thread at the other end of the stream stopped",
    )
}

/// The error a reader gets when its sender stopped before the end.
#[derive(Debug)]
pub struct Abandoned;

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stream stopped before its end")
    }
}

impl std::error::Error for Abandoned {}

/// Whether `e` says only that the sender stopped early (its own error is
/// the one worth reporting).
pub fn is_abandoned(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Abandoned>())
}

/// Collects what is written into chunks and sends each when full;
/// [`ChunkWriter::finish`] sends the rest and the end.
pub struct ChunkWriter {
    tx: SyncSender<Chunk>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    pub fn new(tx: SyncSender<Chunk>) -> Self {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let full = mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.send(Ok(full)).map_err(|_| gone())
    }

    /// Sends what is left, then the end. A writer dropped without
    /// `finish` leaves its reader with [`Abandoned`].
    pub fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.tx.send(Ok(Vec::new())).map_err(|_| gone())
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    /// Nothing to do: a chunk goes when full or at `finish`, and flushing
    /// the far end is the far end's business.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads `from` in chunks and sends them, then the end; on a read error,
/// sends a copy of it and returns it. Stops quietly if the receiver goes.
pub fn pump(mut from: impl Read, tx: SyncSender<Chunk>) -> io::Result<()> {
    loop {
        let mut chunk = vec![0; CHUNK];
        let mut len = 0;
        let got = loop {
            match from.read(&mut chunk[len..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    len += n;
                    if len == CHUNK {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        chunk.truncate(len);
        // Less than a whole chunk without an error: end of input.
        let end = len < CHUNK;
        if len > 0 && tx.send(Ok(chunk)).is_err() {
            return Ok(());
        }
        if let Err(e) = got {
            let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
        if end {
            let _ = tx.send(Ok(Vec::new()));
            return Ok(());
        }
    }
}

/// Reads what a [`pump`] or a [`ChunkWriter`] sends.
pub struct ChunkReader {
    /// In a mutex only to be `Sync`, as Sequoia wants its readers: `read`
    /// has `&mut self` and reaches it with `get_mut`, which takes no lock.
    rx: Mutex<Receiver<Chunk>>,
    chunk: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl ChunkReader {
    pub fn new(rx: Receiver<Chunk>) -> Self {
        ChunkReader {
            rx: Mutex::new(rx),
            chunk: Vec::new(),
            pos: 0,
            ended: false,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            let rx = self.rx.get_mut().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.ended = true,
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, Abandoned)),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn writer_to_reader_keeps_every_byte_in_order() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let data = bytes(n);
            let (tx, rx) = channel();
            let got = std::thread::scope(|s| {
                let reader = s.spawn(|| {
                    let mut got = Vec::new();
                    ChunkReader::new(rx).read_to_end(&mut got).unwrap();
                    got
                });
                let mut w = ChunkWriter::new(tx);
                for piece in data.chunks(1000) {
                    w.write_all(piece).unwrap();
                }
                w.finish().unwrap();
                reader.join().unwrap()
            });
            assert_eq!(got, data, "{n} bytes");
        }
    }

    #[test]
    fn pump_to_reader_keeps_every_byte_and_passes_errors_on() {
        for n in [0, 5, CHUNK, 2 * CHUNK + 3] {
            let data = bytes(n);
            let (tx, rx) = channel();
            let got = std::thread::scope(|s| {
                s.spawn(|| pump(&data[..], tx).unwrap());
                let mut got = Vec::new();
                ChunkReader::new(rx).read_to_end(&mut got).unwrap();
                got
            });
            assert_eq!(got, data, "{n} bytes");
        }
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("bad armor at line 3"));
                }
                let n = out.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        let (tx, rx) = channel();
        let err = std::thread::scope(|s| {
            let pumped = s.spawn(|| pump(Failing(CHUNK + 10), tx));
            let mut got = Vec::new();
            let err = ChunkReader::new(rx).read_to_end(&mut got).unwrap_err();
            assert_eq!(got.len(), CHUNK + 10, "what came before the error");
            assert!(pumped.join().unwrap().is_err());
            err
        });
        assert_eq!(err.to_string(), "bad armor at line 3");
    }

    #[test]
    fn a_writer_whose_reader_is_gone_fails_instead_of_blocking() {
        let (tx, rx) = channel();
        drop(rx);
        let mut w = ChunkWriter::new(tx);
        let err = w.write_all(&bytes(2 * CHUNK)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_sender_that_stops_without_finishing_leaves_an_error_not_an_end() {
        let (tx, rx) = channel();
        let err = std::thread::scope(|s| {
            s.spawn(move || {
                let mut w = ChunkWriter::new(tx);
                w.write_all(&bytes(CHUNK + 5)).unwrap();
                // dropped here, without finish: as on an error or a panic
            });
            let mut got = Vec::new();
            let err = ChunkReader::new(rx).read_to_end(&mut got).unwrap_err();
            assert_eq!(got.len(), CHUNK, "the whole chunks sent before");
            err
        });
        assert!(is_abandoned(&err), "{err}");
        assert!(!is_abandoned(&gone()));
    }
}
