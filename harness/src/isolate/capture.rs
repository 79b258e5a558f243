/*!
Bounded capture of a worker's output (its stderr, and its stdout, which the protocol leaves free).

This module is responsible for keeping memory bounded however much a worker prints: it keeps the
first [`HEAD_BYTES`] and the last [`TAIL_BYTES`] of one execution and counts what fell in between.
The head holds start-up and early warnings; the tail holds what was printed just before a crash
(a panic message, an allocator's complaint), which is what classification reads.
*/

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Bytes kept from the start of an execution's output.
pub const HEAD_BYTES: usize = 64 << 10;
/// Bytes kept from the end of an execution's output.
pub const TAIL_BYTES: usize = 64 << 10;

/// The output of one execution, bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedOutput {
    /// The first bytes, lossily decoded as UTF-8.
    pub head: String,
    /// The last bytes after the head, lossily decoded as UTF-8; empty when everything fit in the
    /// head.
    pub tail: String,
    /// Bytes between head and tail that were not kept.
    pub dropped_bytes: u64,
    /// Every byte the worker wrote during the execution, kept or not.
    pub total_bytes: u64,
}

impl CapturedOutput {
    /// The kept text as one string, with a marker where bytes were dropped (for `stderr.txt`).
    pub fn text(&self) -> String {
        if self.dropped_bytes == 0 {
            return format!("{}{}", self.head, self.tail);
        }
        format!(
            "{}\n[... {} bytes dropped ...]\n{}",
            self.head, self.dropped_bytes, self.tail
        )
    }

    /// The kept lines that start with `prefix`, oldest first. A line is never split between head
    /// and tail: when nothing was dropped the two are one text.
    pub fn lines_starting_with(&self, prefix: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }
}

/// Accumulates output as it arrives.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
    total: u64,
}

impl Capture {
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let head_room = HEAD_BYTES - self.head.len();
        if head_room > 0 {
            let taken = head_room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..taken]);
            bytes = &bytes[taken..];
        }
        if bytes.len() >= TAIL_BYTES {
            self.dropped += (self.tail.len() + bytes.len() - TAIL_BYTES) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - TAIL_BYTES..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        self.tail.drain(..overflow);
        self.dropped += overflow as u64;
        self.tail.extend(bytes);
    }

    /// What was captured so far, leaving it in place.
    pub(crate) fn peek(&self) -> CapturedOutput {
        let (front, back) = self.tail.as_slices();
        CapturedOutput {
            head: String::from_utf8_lossy(&self.head).into_owned(),
            tail: String::from_utf8_lossy(&[front, back].concat()).into_owned(),
            dropped_bytes: self.dropped,
            total_bytes: self.total,
        }
    }

    /// Hands over what was captured and starts afresh for the next execution.
    pub(crate) fn take(&mut self) -> CapturedOutput {
        let captured = self.peek();
        *self = Self::default();
        captured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut capture = Capture::default();
        capture.push(b"hello ");
        capture.push(b"world\n");
        let out = capture.take();
        assert_eq!(out.text(), "hello world\n");
        assert_eq!((out.dropped_bytes, out.total_bytes), (0, 12));
    }

    #[test]
    fn large_output_keeps_head_and_tail_and_counts_the_rest() {
        let mut capture = Capture::default();
        let total = 1_000_000usize;
        // Bytes that encode their position, pushed in odd-sized pieces.
        let data: Vec<u8> = (0..total).map(|i| b'a' + (i % 26) as u8).collect();
        for piece in data.chunks(7_777) {
            capture.push(piece);
        }
        let out = capture.take();
        assert_eq!(out.head.as_bytes(), &data[..HEAD_BYTES]);
        assert_eq!(out.tail.as_bytes(), &data[total - TAIL_BYTES..]);
        assert_eq!(out.dropped_bytes, (total - HEAD_BYTES - TAIL_BYTES) as u64);
        assert_eq!(out.total_bytes, total as u64);
    }

    #[test]
    fn one_huge_piece_is_bounded_too() {
        let mut capture = Capture::default();
        capture.push(&vec![b'x'; 10 * TAIL_BYTES]);
        capture.push(b"END");
        let out = capture.take();
        assert_eq!(out.head.len() + out.tail.len(), HEAD_BYTES + TAIL_BYTES);
        assert!(out.tail.ends_with("END"));
        assert_eq!(
            out.dropped_bytes + (HEAD_BYTES + TAIL_BYTES) as u64,
            out.total_bytes
        );
    }

    #[test]
    fn take_starts_afresh() {
        let mut capture = Capture::default();
        capture.push(b"first");
        capture.take();
        capture.push(b"second");
        assert_eq!(capture.take().text(), "second");
    }

    #[test]
    fn prefixed_lines_are_found_in_head_and_tail() {
        let out = CapturedOutput {
            head: "noise\nMARK one\n".into(),
            tail: "MARK two\nMARKnot\n".into(),
            dropped_bytes: 5,
            total_bytes: 40,
        };
        assert_eq!(out.lines_starting_with("MARK "), ["MARK one", "MARK two"]);
        assert!(out.text().contains("[... 5 bytes dropped ...]"));
    }

    #[test]
    fn a_line_straddling_head_and_tail_is_whole_when_nothing_was_dropped() {
        let mut capture = Capture::default();
        capture.push(&vec![b'.'; HEAD_BYTES - 3]);
        capture.push(b"\nMARK across the boundary\n");
        let out = capture.take();
        assert!(!out.tail.is_empty());
        assert_eq!(
            out.lines_starting_with("MARK"),
            ["MARK across the boundary"]
        );
    }
}
