/*!
The worker protocol: the messages a driver and a worker exchange, and their framing.

This module is responsible for the bytes on the two protocol channels and nothing else: it does not
know what a case is (a request's payload is opaque JSON) nor how processes are started.

# Wire format (version 1)

Each direction is a stream of frames. A frame is a 4-byte little-endian unsigned length `n`
followed by `n` bytes of UTF-8 JSON. A receiver rejects any `n` above [`MAX_MESSAGE_BYTES`] before
allocating anything, so a corrupt or hostile length cannot exhaust memory.

A request larger than [`SPILL_ABOVE_BYTES`] (a case with millions of edges) travels *spilled*: the
prefix is the marker `0xFFFFFFFF`, then an 8-byte little-endian body length `n`, and the body is
not on the socket but in a memory file (`memfd`) passed with those 12 bytes as `SCM_RIGHTS`
ancillary data: its first `n` bytes are the JSON. So the request channel has no size cliff below
[`MAX_SPILLED_BYTES`], and a large request costs neither side a second copy in a socket buffer.
A receiver reads the request channel with `recvmsg` to get the descriptor.

Worker to driver, every message has a `"type"` field:

```text
{"type":"ready","protocol":1,"pid":4242,"backend":"cpu"}     first, once, after start-up
{"type":"reply","id":7,"payload":{...}}                      one per request, same id
```

Driver to worker:

```text
{"id":7,"payload":{...}}                                     a request
```

The driver sends a request only after the previous reply arrived: one request in flight at a time.
Closing the driver-to-worker channel asks the worker to exit with status 0. A worker written in
another language needs only this section, the channel file descriptors named in
[`ENV_WORKER_FDS`], and [`super::breadcrumbs`]'s record layout (optional).
*/

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::os;

/// Names the worker's inherited descriptors: `request_read,reply_write,breadcrumbs`.
pub const ENV_WORKER_FDS: &str = "FORCEFIELD_WORKER_FDS";
/// The driver's process id, so a worker started after its driver died exits at once.
pub const ENV_WORKER_PARENT: &str = "FORCEFIELD_WORKER_PARENT";

/// The protocol version a worker announces in [`Ready`]; the driver refuses any other.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame body sent inline, on the channel itself: 64 MiB.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Requests with a larger body are spilled into a memory file (see the wire format).
pub const SPILL_ABOVE_BYTES: usize = 1 << 20;

/// The largest spilled request body: 2 GiB, far above the JSON of the largest valid case (a
/// 256 MiB case file at most doubles when written back).
pub const MAX_SPILLED_BYTES: u64 = 2 << 30;

/// Size of the length prefix in front of every frame body.
const PREFIX_BYTES: usize = 4;

/// Bytes of JSON gathered before each write while a request is encoded.
const WRITE_CHUNK_BYTES: usize = 64 << 10;

/// The prefix of a spilled frame.
const SPILL_MARKER: u32 = u32::MAX;

/// Size of a spilled body's length, after the marker.
const SPILL_LEN_BYTES: usize = 8;

/// A request from the driver: run this payload. The driver sends any serializable payload (`P`);
/// the worker reads it back as raw JSON text, so neither side builds a `serde_json::Value` of a
/// large case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request<P = serde_json::Value> {
    /// Chosen by the driver, unique per worker; the reply carries it back.
    pub id: u64,
    /// What to run; the isolation layer never looks inside (except for test modes, see
    /// [`super::worker`]).
    pub payload: P,
}

/// The worker's hello, sent once before it reads any request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// The protocol version the worker speaks; see [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The worker's process id, as the worker sees it.
    pub pid: u32,
    /// The backend the worker runs cases on, in the worker's words (for example `cpu`).
    pub backend: String,
}

/// A reply to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The id of the request this answers.
    pub id: u64,
    /// The handler's result; `{"context_lost": true}` in it makes the driver retire the worker.
    pub payload: serde_json::Value,
}

/// Everything a worker sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// The hello.
    Ready(Ready),
    /// The answer to a request.
    Reply(Reply),
}

/// Why a frame could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The channel failed underneath.
    #[error("channel i/o failed")]
    Io(#[source] io::Error),
    /// A frame announced (or would need) more bytes than [`MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced or encoded length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The channel ended inside a frame.
    #[error("channel closed in the middle of a message")]
    Truncated,
    /// A spilled frame whose memory file is missing or shorter than announced.
    #[error("bad spilled frame: {0}")]
    Spill(String),
    /// The frame body is not the JSON message expected.
    #[error("malformed message")]
    Json(#[source] serde_json::Error),
}

/// Serializes `message` into one frame: length prefix and JSON body.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    let mut frame = vec![0u8; PREFIX_BYTES];
    serde_json::to_writer(&mut frame, message).map_err(CodecError::Json)?;
    let len = frame.len() - PREFIX_BYTES;
    let prefix = checked_len(len as u64)?;
    frame[..PREFIX_BYTES].copy_from_slice(&prefix.to_le_bytes());
    Ok(frame)
}

/// A request frame ready to send: the bytes for the channel, and for a spilled frame the memory
/// file holding its body, to pass with the first byte.
#[derive(Debug)]
pub struct OutgoingFrame {
    /// Prefix and body, or (spilled) the marker and the body length.
    pub bytes: Vec<u8>,
    /// The memory file of a spilled body.
    pub attachment: Option<OwnedFd>,
}

/// Serializes a request into one frame, inline or spilled by its size. The JSON is written once,
/// straight into the memory file once it passes [`SPILL_ABOVE_BYTES`].
pub fn encode_request<T: Serialize>(message: &T) -> Result<OutgoingFrame, CodecError> {
    // serde_json writes token by token: the buffer turns that into few large writes.
    let mut sink = BufWriter::with_capacity(
        WRITE_CHUNK_BYTES,
        SpillWriter::Memory(vec![0u8; PREFIX_BYTES]),
    );
    serde_json::to_writer(&mut sink, message).map_err(|e| {
        if e.is_io() {
            CodecError::Io(e.into())
        } else {
            CodecError::Json(e)
        }
    })?;
    let sink = sink
        .into_inner()
        .map_err(|e| CodecError::Io(e.into_error()))?;
    match sink {
        SpillWriter::Memory(mut frame) => {
            let prefix = checked_len((frame.len() - PREFIX_BYTES) as u64)?;
            frame[..PREFIX_BYTES].copy_from_slice(&prefix.to_le_bytes());
            Ok(OutgoingFrame {
                bytes: frame,
                attachment: None,
            })
        }
        SpillWriter::File { file, len } => {
            if len > MAX_SPILLED_BYTES {
                return Err(CodecError::TooLarge {
                    len,
                    max: MAX_SPILLED_BYTES as usize,
                });
            }
            let mut bytes = SPILL_MARKER.to_le_bytes().to_vec();
            bytes.extend_from_slice(&len.to_le_bytes());
            Ok(OutgoingFrame {
                bytes,
                attachment: Some(OwnedFd::from(file)),
            })
        }
    }
}

/// Where a request's JSON goes while it is written: memory up to [`SPILL_ABOVE_BYTES`] of body,
/// then a memory file.
enum SpillWriter {
    /// Prefix placeholder and body so far.
    Memory(Vec<u8>),
    /// The body, spilled; `len` bytes written.
    File { file: File, len: u64 },
}

impl Write for SpillWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SpillWriter::Memory(frame)
                if frame.len() - PREFIX_BYTES + buf.len() > SPILL_ABOVE_BYTES =>
            {
                let fd = memfd_create(c"forcefield-request", MemFdCreateFlag::MFD_CLOEXEC)
                    .map_err(io::Error::from)?;
                let mut file = File::from(fd);
                file.write_all(&frame[PREFIX_BYTES..])?;
                file.write_all(buf)?;
                let len = (frame.len() - PREFIX_BYTES + buf.len()) as u64;
                *self = SpillWriter::File { file, len };
                Ok(buf.len())
            }
            SpillWriter::Memory(frame) => {
                frame.extend_from_slice(buf);
                Ok(buf.len())
            }
            SpillWriter::File { file, len } => {
                file.write_all(buf)?;
                *len += buf.len() as u64;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads one request frame's body from the request socket (blocking), inline or spilled:
/// `Ok(None)` when the channel closed cleanly between frames.
pub fn read_request(socket: BorrowedFd<'_>) -> Result<Option<Vec<u8>>, CodecError> {
    let mut fds = Vec::new();
    let mut prefix = [0u8; PREFIX_BYTES];
    match recv_full(socket, &mut prefix, &mut fds)? {
        0 => return Ok(None),
        PREFIX_BYTES => {}
        _ => return Err(CodecError::Truncated),
    }
    if u32::from_le_bytes(prefix) != SPILL_MARKER {
        let len = body_len(prefix)?;
        let mut body = vec![0u8; len];
        if recv_full(socket, &mut body, &mut fds)? != len {
            return Err(CodecError::Truncated);
        }
        return Ok(Some(body));
    }
    let mut len_bytes = [0u8; SPILL_LEN_BYTES];
    if recv_full(socket, &mut len_bytes, &mut fds)? != SPILL_LEN_BYTES {
        return Err(CodecError::Truncated);
    }
    let len = u64::from_le_bytes(len_bytes);
    if len > MAX_SPILLED_BYTES {
        return Err(CodecError::TooLarge {
            len,
            max: MAX_SPILLED_BYTES as usize,
        });
    }
    // Exactly one descriptor comes with a spilled frame; any other is closed with `fds`.
    if fds.len() != 1 {
        return Err(CodecError::Spill(format!(
            "{} descriptors came with a spilled frame, expected 1",
            fds.len()
        )));
    }
    let mut file = File::from(fds.remove(0));
    let size = file.metadata().map_err(CodecError::Io)?.len();
    if size < len {
        return Err(CodecError::Spill(format!(
            "the memory file holds {size} bytes, the frame announces {len}"
        )));
    }
    file.rewind().map_err(CodecError::Io)?;
    let mut body = Vec::with_capacity(len as usize);
    file.take(len)
        .read_to_end(&mut body)
        .map_err(CodecError::Io)?;
    if body.len() as u64 != len {
        return Err(CodecError::Truncated);
    }
    Ok(Some(body))
}

/// Receives until `buf` is full or the socket ends, collecting passed descriptors; returns the
/// bytes received.
fn recv_full(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<usize, CodecError> {
    let mut filled = 0;
    while filled < buf.len() {
        match os::recv_with_fds(socket, &mut buf[filled..], fds) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(errno) => return Err(CodecError::Io(errno.into())),
        }
    }
    Ok(filled)
}

/// Sends as much of `frame` from `offset` as the non-blocking socket takes, with the attachment on
/// the first byte (it is dropped once sent). Returns the bytes sent (0: the socket is full).
pub fn send_some(
    socket: BorrowedFd<'_>,
    frame: &mut OutgoingFrame,
    offset: usize,
) -> Result<usize, nix::errno::Errno> {
    let rest = &frame.bytes[offset..];
    match &frame.attachment {
        Some(fd) => {
            let n = os::send_some_with_fd(socket, rest, fd.as_fd())?;
            if n > 0 {
                frame.attachment = None;
            }
            Ok(n)
        }
        None => os::send_some(socket, rest),
    }
}

/// Parses one frame body (without its prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(body).map_err(CodecError::Json)
}

/// Writes one frame to a blocking writer and flushes it.
pub fn write_message<T: Serialize>(writer: &mut impl Write, message: &T) -> Result<(), CodecError> {
    let frame = encode(message)?;
    writer.write_all(&frame).map_err(CodecError::Io)?;
    writer.flush().map_err(CodecError::Io)
}

/// Reads one frame from a blocking reader: `Ok(None)` when the channel closed cleanly between
/// frames. Only the tests read this way: the driver reads through a [`FrameDecoder`] (its channel
/// does not block), the worker through its own loop.
#[cfg(test)]
pub fn read_message<T: DeserializeOwned>(reader: &mut impl Read) -> Result<Option<T>, CodecError> {
    let mut prefix = [0u8; PREFIX_BYTES];
    match read_full(reader, &mut prefix)? {
        0 => return Ok(None),
        PREFIX_BYTES => {}
        _ => return Err(CodecError::Truncated),
    }
    let len = body_len(prefix)?;
    let mut body = vec![0u8; len];
    if read_full(reader, &mut body)? != len {
        return Err(CodecError::Truncated);
    }
    decode(&body).map(Some)
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
#[cfg(test)]
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, CodecError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CodecError::Io(e)),
        }
    }
    Ok(filled)
}

fn checked_len(len: u64) -> Result<u32, CodecError> {
    if len > MAX_MESSAGE_BYTES as u64 {
        return Err(CodecError::TooLarge {
            len,
            max: MAX_MESSAGE_BYTES,
        });
    }
    // MAX_MESSAGE_BYTES < u32::MAX, so this cannot fail once the check above passed.
    u32::try_from(len).map_err(|_| CodecError::TooLarge {
        len,
        max: MAX_MESSAGE_BYTES,
    })
}

fn body_len(prefix: [u8; PREFIX_BYTES]) -> Result<usize, CodecError> {
    let len = u32::from_le_bytes(prefix);
    checked_len(u64::from(len)).map(|len| len as usize)
}

/// Reassembles frames from bytes that arrive in arbitrary pieces (the driver reads its channel
/// without blocking, so a frame may come in many reads, or several frames in one).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffered: Vec<u8>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the channel.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffered.extend_from_slice(bytes);
    }

    /// Takes the next complete frame body, if one is buffered. An oversized length is reported as
    /// soon as its prefix is complete, before the body is waited for.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        let Some(prefix) = self.buffered.get(..PREFIX_BYTES) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; PREFIX_BYTES];
        len_bytes.copy_from_slice(prefix);
        let len = body_len(len_bytes)?;
        if self.buffered.len() < PREFIX_BYTES + len {
            return Ok(None);
        }
        let body = self.buffered[PREFIX_BYTES..PREFIX_BYTES + len].to_vec();
        self.buffered.drain(..PREFIX_BYTES + len);
        Ok(Some(body))
    }

    /// Whether part of a frame is buffered (so a channel that ends now ends mid-message).
    #[cfg(test)]
    pub fn is_mid_frame(&self) -> bool {
        !self.buffered.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(id: u64) -> WorkerMessage {
        WorkerMessage::Reply(Reply {
            id,
            payload: json!({"x": [1, 2, 3], "s": "é"}),
        })
    }

    #[test]
    fn a_frame_is_a_little_endian_length_then_json() {
        let frame = encode(&Request {
            id: 3,
            payload: json!(null),
        })
        .unwrap();
        let body = br#"{"id":3,"payload":null}"#;
        assert_eq!(&frame[..4], &(body.len() as u32).to_le_bytes());
        assert_eq!(&frame[4..], body);
    }

    #[test]
    fn worker_messages_are_tagged_by_type() {
        let ready = WorkerMessage::Ready(Ready {
            protocol: 1,
            pid: 9,
            backend: "cpu".into(),
        });
        let text = serde_json::to_string(&ready).unwrap();
        assert_eq!(
            text,
            r#"{"type":"ready","protocol":1,"pid":9,"backend":"cpu"}"#
        );
    }

    #[test]
    fn blocking_round_trip_then_clean_end() {
        let mut wire = Vec::new();
        write_message(&mut wire, &reply(1)).unwrap();
        write_message(&mut wire, &reply(2)).unwrap();
        let mut reader = wire.as_slice();
        assert_eq!(
            read_message::<WorkerMessage>(&mut reader).unwrap(),
            Some(reply(1))
        );
        assert_eq!(
            read_message::<WorkerMessage>(&mut reader).unwrap(),
            Some(reply(2))
        );
        assert_eq!(read_message::<WorkerMessage>(&mut reader).unwrap(), None);
    }

    #[test]
    fn a_channel_ending_inside_a_frame_is_truncated() {
        let frame = encode(&reply(1)).unwrap();
        for cut in [2, 4, frame.len() - 1] {
            let err = read_message::<WorkerMessage>(&mut &frame[..cut]).unwrap_err();
            assert!(
                matches!(err, CodecError::Truncated),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading_the_body() {
        // Only the prefix is present: had the reader tried to allocate and read the body it would
        // report truncation, not the size.
        let prefix = u32::MAX.to_le_bytes();
        let err = read_message::<WorkerMessage>(&mut &prefix[..]).unwrap_err();
        assert!(
            matches!(err, CodecError::TooLarge { len, max } if len == u64::from(u32::MAX) && max == MAX_MESSAGE_BYTES),
            "{err:?}"
        );
        let mut decoder = FrameDecoder::new();
        decoder.push(&((MAX_MESSAGE_BYTES + 1) as u32).to_le_bytes());
        assert!(matches!(
            decoder.next_frame(),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_largest_allowed_length_is_accepted() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&(MAX_MESSAGE_BYTES as u32).to_le_bytes());
        assert!(
            matches!(decoder.next_frame(), Ok(None)),
            "waits for the body"
        );
        assert!(decoder.is_mid_frame());
    }

    #[test]
    fn encoding_refuses_an_oversized_message() {
        let big = "a".repeat(MAX_MESSAGE_BYTES);
        let err = encode(&Request {
            id: 0,
            payload: json!(big),
        })
        .unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { len, .. } if len > MAX_MESSAGE_BYTES as u64));
    }

    #[test]
    fn the_decoder_reassembles_frames_split_anywhere() {
        let mut wire = encode(&reply(1)).unwrap();
        wire.extend(encode(&reply(2)).unwrap());
        let mut decoder = FrameDecoder::new();
        let mut bodies = Vec::new();
        for byte in &wire {
            decoder.push(std::slice::from_ref(byte));
            while let Some(body) = decoder.next_frame().unwrap() {
                bodies.push(decode::<WorkerMessage>(&body).unwrap());
            }
        }
        assert_eq!(bodies, vec![reply(1), reply(2)]);
        assert!(!decoder.is_mid_frame());
    }

    /// Sends `frame` whole over a socket pair and reads it back as the worker does.
    fn through_socket(mut frame: OutgoingFrame) -> Result<Option<Vec<u8>>, CodecError> {
        let (driver, worker) = os::socket_pair().unwrap();
        let mut sent = 0;
        while sent < frame.bytes.len() {
            sent += send_some(driver.as_fd(), &mut frame, sent).unwrap();
        }
        assert!(
            frame.attachment.is_none(),
            "the attachment went with the first byte"
        );
        drop(driver);
        read_request(worker.as_fd())
    }

    #[test]
    fn small_requests_travel_inline() {
        let request = Request {
            id: 5,
            payload: json!({"x": 1}),
        };
        let frame = encode_request(&request).unwrap();
        assert!(frame.attachment.is_none());
        assert_eq!(frame.bytes, encode(&request).unwrap());
        let body = through_socket(frame).unwrap().unwrap();
        assert_eq!(decode::<Request>(&body).unwrap(), request);
    }

    #[test]
    fn large_requests_are_spilled_into_a_memory_file_and_read_back_whole() {
        // Above the inline limit too: this was a protocol error before.
        let big = "b".repeat(MAX_MESSAGE_BYTES + 10);
        let request = Request {
            id: 9,
            payload: json!({"big": big}),
        };
        let frame = encode_request(&request).unwrap();
        assert!(frame.attachment.is_some());
        assert_eq!(frame.bytes.len(), PREFIX_BYTES + SPILL_LEN_BYTES);
        assert_eq!(frame.bytes[..4], SPILL_MARKER.to_le_bytes());
        let body = through_socket(frame).unwrap().unwrap();
        assert_eq!(decode::<Request>(&body).unwrap(), request);
    }

    #[test]
    fn a_spilled_frame_without_its_file_is_an_error() {
        let mut frame = encode_request(&Request {
            id: 1,
            payload: json!("c".repeat(SPILL_ABOVE_BYTES + 1)),
        })
        .unwrap();
        frame.attachment = None;
        let err = through_socket(frame).unwrap_err();
        assert!(matches!(err, CodecError::Spill(_)), "{err:?}");
    }

    #[test]
    fn garbage_is_a_json_error() {
        let err = decode::<WorkerMessage>(b"{\"type\":\"nonsense\"}").unwrap_err();
        assert!(matches!(err, CodecError::Json(_)));
    }
}
