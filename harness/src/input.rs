/*!
Reading what a user hands the harness — case files, graphs, parameters, summaries — within limits,
and quoting it back safely in error lines.

Every reader of a user's file goes through [`BoundedReader`] (or [`read_bounded`], which reads a
whole file through it): it stops *while reading* as soon as a file passes its limit, so `/dev/zero`,
a FIFO or a file that grows while it is read costs at most the limit, never the machine's memory.
It also stops at the first NUL byte: none of the formats read here is binary, and a NUL is the
first thing a device like `/dev/zero` or a core dump passed by mistake gives.

Loader errors that echo input pass it through [`escape_control`], so that a control byte in a file
(an ESC that would clear the terminal) is shown as an escape, never sent to the terminal.

[`MAX_INPUT_NODES`] is the one node-count limit for everything a user can ask the harness to lay out
or run: graphs given to `layout` and case files.
*/

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The most nodes a graph or a case may have (`layout` and case files alike): well inside the
/// engine's own limit, so that what is accepted also runs in a worker's memory and in minutes, not
/// hours.
pub const MAX_INPUT_NODES: u32 = 1 << 20;

/// The most undirected edges a graph given to `layout` may have, and a case may create in all.
pub const MAX_INPUT_EDGES: u32 = 1 << 22;

/// Largest campaign summary (`summary.json`) `merge` reads: far above any real one (a summary
/// lists findings by signature, not cases).
pub const MAX_SUMMARY_BYTES: u64 = 64 << 20;

/// Largest parameter file: a params object is a few hundred bytes.
pub const MAX_PARAMS_BYTES: u64 = 1 << 20;

/// Why a bounded read stopped early; carried inside an [`io::Error`] of kind
/// [`io::ErrorKind::InvalidData`], so that callers keep their own I/O error types.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// More bytes than the limit.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was read (`case file`, `graph`, ...).
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A NUL byte: binary data, not the text expected.
    #[error("{what} contains a NUL byte at offset {offset}: binary data, not text")]
    Binary {
        /// What was read.
        what: String,
        /// Offset of the first NUL byte.
        offset: u64,
    },
    /// Bytes that are not UTF-8.
    #[error("{what} is not UTF-8 text")]
    NotUtf8 {
        /// What was read.
        what: String,
    },
}

impl From<InputError> for io::Error {
    fn from(e: InputError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// A reader that fails once more than `limit` bytes came through, or at the first NUL byte.
#[derive(Debug)]
pub struct BoundedReader<R> {
    inner: R,
    limit: u64,
    read: u64,
    what: String,
}

impl<R: Read> BoundedReader<R> {
    /// Wraps `inner`; `what` names the input in errors.
    pub fn new(inner: R, limit: u64, what: &str) -> Self {
        Self {
            inner,
            limit,
            read: 0,
            what: what.to_string(),
        }
    }
}

impl<R: Read> Read for BoundedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the limit is enough to know it is passed.
        let allowed = (self.limit - self.read.min(self.limit)).saturating_add(1);
        let want = buf
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if let Some(at) = buf[..n].iter().position(|&b| b == 0) {
            return Err(InputError::Binary {
                what: self.what.clone(),
                offset: self.read + at as u64,
            }
            .into());
        }
        self.read += n as u64;
        if self.read > self.limit {
            return Err(InputError::TooLarge {
                what: self.what.clone(),
                limit: self.limit,
            }
            .into());
        }
        Ok(n)
    }
}

/// Opens `path` for a bounded read: a regular file already larger than `limit` is refused before
/// any byte is read; anything else (pipes, devices, files that grow) is stopped while reading.
pub fn open_bounded(path: &Path, limit: u64, what: &str) -> io::Result<BoundedReader<File>> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > limit {
        return Err(InputError::TooLarge {
            what: what.to_string(),
            limit,
        }
        .into());
    }
    Ok(BoundedReader::new(file, limit, what))
}

/// Reads the whole of `path`, at most `limit` bytes (see [`BoundedReader`]).
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut reader = open_bounded(path, limit, what)?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read_bounded`], as UTF-8 text.
pub fn read_bounded_string(path: &Path, limit: u64, what: &str) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit, what)?).map_err(|_| {
        InputError::NotUtf8 {
            what: what.to_string(),
        }
        .into()
    })
}

/// A campaign summary's text, at most [`MAX_SUMMARY_BYTES`].
pub fn read_summary_text(path: &Path) -> io::Result<String> {
    read_bounded_string(path, MAX_SUMMARY_BYTES, "summary")
}

/// `text` with every control character (C0, DEL, C1) written as an escape (`\x1b`, `\u{9b}`), so
/// that echoing input in an error line can never drive the terminal. Everything else is kept.
pub fn escape_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn a_reader_stops_one_byte_past_its_limit() {
        let mut exact = BoundedReader::new(&b"12345"[..], 5, "thing");
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"12345");
        // An endless source: the read must end, with the limit in the message.
        let endless = std::io::repeat(b'a');
        let err = BoundedReader::new(endless, 1000, "thing")
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            err.to_string(),
            "thing is larger than the limit of 1000 bytes"
        );
    }

    #[test]
    fn a_nul_byte_is_binary_data() {
        let err = BoundedReader::new(&b"ab\0c"[..], 100, "graph")
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "graph contains a NUL byte at offset 2: binary data, not text"
        );
    }

    #[test]
    fn regular_files_over_the_limit_are_refused_before_reading() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"0123456789").unwrap();
        let err = read_bounded(file.path(), 9, "case file").unwrap_err();
        assert!(err.to_string().contains("limit of 9 bytes"), "{err}");
        assert_eq!(
            read_bounded(file.path(), 10, "case file").unwrap().len(),
            10
        );
        let text = read_bounded_string(file.path(), 10, "case file").unwrap();
        assert_eq!(text, "0123456789");
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_control("0 \u{1b}[2J1"), "0 \\x1b[2J1");
        assert_eq!(escape_control("a\tb\u{7f}\u{9b}é"), "a\\tb\\x7f\\u{9b}é");
        assert_eq!(escape_control("plain text"), "plain text");
    }
}
