/*!
Breadcrumbs: where a worker is, kept in memory the driver can still read after the worker died.

This module is responsible for one fixed-size record in a shared memory file (a `memfd`) that the
driver creates before spawning a worker and maps for the worker's whole life. The worker writes the
request it runs, the operation it is at and the kernel it launched; the driver reads the record when
the worker dies or hangs, so a crash report names the operation and kernel without any cooperation
from the dying process.

# Consistency

The record is a seqlock: a writer makes the sequence counter odd, updates the fields, then makes it
even again; a reader retries until it sees the same even counter before and after reading. A worker
killed in the middle of an update leaves the counter odd forever; the reader then gives up after a
bounded number of attempts and marks its [`Breadcrumb`] as `torn`. Every field is an atomic, so the
two processes never race in the language's sense. Writes from several threads of the worker are
serialized by the counter itself.

# Record layout (for workers in other languages)

128 bytes, native endianness, 8-byte aligned: `magic: u64` at 0 (set by the driver to
[`MAGIC`]), `seq: u64` at 8, `request_id: u64` at 16, `op_index: u64` at 24 (`u64::MAX` when no
operation is set), `op: [u8; 48]` at 32 and `kernel: [u8; 48]` at 80, both UTF-8 padded with NUL.
*/

use std::hint::spin_loop;
use std::mem::size_of;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};

use nix::errno::Errno;
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use serde::{Deserialize, Serialize};

/// Identifies a breadcrumb record (ASCII `FFCRUMB1`).
pub const MAGIC: u64 = u64::from_le_bytes(*b"FFCRUMB1");

/// The longest operation or kernel name kept, in bytes; longer names are cut at a character
/// boundary.
pub const NAME_BYTES: usize = 48;

/// `op_index` value meaning "no operation yet".
const NO_OP: u64 = u64::MAX;

/// How many times a reader retries before calling a record torn. A live writer holds the record
/// for well under a microsecond, so only a writer that died mid-update exhausts this.
const READ_ATTEMPTS: u32 = 10_000;

#[repr(C)]
struct Record {
    magic: AtomicU64,
    seq: AtomicU64,
    request_id: AtomicU64,
    op_index: AtomicU64,
    op: [AtomicU8; NAME_BYTES],
    kernel: [AtomicU8; NAME_BYTES],
}

const RECORD_BYTES: usize = size_of::<Record>();
const _: () = assert!(RECORD_BYTES == 128, "the documented layout is 128 bytes");

/// What a driver learns from a worker's breadcrumbs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breadcrumb {
    /// The request the worker was running (or last ran).
    pub request_id: u64,
    /// The index of the operation within the request, if one was set.
    pub op_index: Option<u64>,
    /// The operation's name, if one was set.
    pub op: Option<String>,
    /// The last kernel launched within the operation, if any.
    pub kernel: Option<String>,
    /// True when the worker died in the middle of an update: fields may mix old and new values.
    pub torn: bool,
}

/// Where the record lives.
enum Backing {
    /// A shared mapping of a memfd (driver and worker).
    Shared(NonNull<Record>),
    /// Ordinary memory, for a handler run in the driver's own process.
    Local(Box<Record>),
}

/// A breadcrumb record: written by the worker ([`set_op`](Self::set_op),
/// [`set_kernel`](Self::set_kernel)), read by the driver ([`snapshot`](Self::snapshot)).
pub struct Breadcrumbs {
    backing: Backing,
}

// SAFETY: the record is only ever accessed through atomics, and a shared mapping stays valid until
// `drop` unmaps it; nothing in it is tied to a thread.
unsafe impl Send for Breadcrumbs {}
// SAFETY: as above; all methods take `&self` and use atomics only.
unsafe impl Sync for Breadcrumbs {}

/// Why a breadcrumb record could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum BreadcrumbError {
    /// The shared memory file could not be created or sized.
    #[error("cannot create the breadcrumb memory")]
    Create(#[source] Errno),
    /// The shared memory could not be mapped.
    #[error("cannot map the breadcrumb memory")]
    Map(#[source] Errno),
    /// The inherited file is not a breadcrumb record.
    #[error("the inherited breadcrumb file is not a breadcrumb record")]
    NotARecord,
}

impl Breadcrumbs {
    /// A record in ordinary memory, for running a handler in-process (under a debugger, say):
    /// the same writer API, nobody else reading.
    pub fn in_process() -> Self {
        let record = Box::new(Record {
            magic: AtomicU64::new(MAGIC),
            seq: AtomicU64::new(0),
            request_id: AtomicU64::new(0),
            op_index: AtomicU64::new(NO_OP),
            op: std::array::from_fn(|_| AtomicU8::new(0)),
            kernel: std::array::from_fn(|_| AtomicU8::new(0)),
        });
        Self {
            backing: Backing::Local(record),
        }
    }

    /// Creates a shared record (driver side). The returned file is close-on-exec; the supervisor
    /// hands it to exactly one worker.
    pub(crate) fn create_shared() -> Result<(Self, OwnedFd), BreadcrumbError> {
        let fd = memfd_create(c"forcefield-breadcrumbs", MemFdCreateFlag::MFD_CLOEXEC)
            .map_err(BreadcrumbError::Create)?;
        nix::unistd::ftruncate(&fd, RECORD_BYTES as i64).map_err(BreadcrumbError::Create)?;
        let crumbs = Self::map(&fd)?;
        let record = crumbs.record();
        record.magic.store(MAGIC, Ordering::Release);
        record.op_index.store(NO_OP, Ordering::Relaxed);
        Ok((crumbs, fd))
    }

    /// Maps a record inherited from the driver (worker side). The file can be closed afterwards.
    pub(crate) fn open_inherited(fd: &OwnedFd) -> Result<Self, BreadcrumbError> {
        let stat = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(BreadcrumbError::Map)?;
        if stat.st_size < RECORD_BYTES as i64 {
            return Err(BreadcrumbError::NotARecord);
        }
        let crumbs = Self::map(fd)?;
        if crumbs.record().magic.load(Ordering::Acquire) != MAGIC {
            return Err(BreadcrumbError::NotARecord);
        }
        Ok(crumbs)
    }

    fn map(fd: &OwnedFd) -> Result<Self, BreadcrumbError> {
        let len = NonZeroUsize::new(RECORD_BYTES).ok_or(BreadcrumbError::NotARecord)?;
        // SAFETY: a fresh shared mapping of a file we own; no existing memory is affected.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .map_err(BreadcrumbError::Map)?;
        Ok(Self {
            backing: Backing::Shared(ptr.cast()),
        })
    }

    fn record(&self) -> &Record {
        match &self.backing {
            // SAFETY: the mapping is RECORD_BYTES long, page aligned, lives until drop, and any
            // bit pattern is a valid `Record` (integers only).
            Backing::Shared(ptr) => unsafe { ptr.as_ref() },
            Backing::Local(record) => record,
        }
    }

    /// Marks the start of a request: the operation and kernel are cleared.
    pub(crate) fn begin_request(&self, request_id: u64) {
        self.write(|r| {
            r.request_id.store(request_id, Ordering::Relaxed);
            r.op_index.store(NO_OP, Ordering::Relaxed);
            store_name(&r.op, "");
            store_name(&r.kernel, "");
        });
    }

    /// Records the operation about to run; clears the kernel, which belonged to the previous one.
    pub fn set_op(&self, index: u64, name: &str) {
        self.write(|r| {
            r.op_index.store(index, Ordering::Relaxed);
            store_name(&r.op, name);
            store_name(&r.kernel, "");
        });
    }

    /// Records the kernel about to be launched within the current operation.
    pub fn set_kernel(&self, name: &str) {
        self.write(|r| store_name(&r.kernel, name));
    }

    /// The seqlock's counter: it moves on every write (an operation, a kernel launch), so a
    /// worker whose counter stands still is not launching anything.
    pub(crate) fn sequence(&self) -> u64 {
        self.record().seq.load(Ordering::Acquire)
    }

    /// One seqlock write section.
    fn write(&self, update: impl FnOnce(&Record)) {
        let r = self.record();
        let start = loop {
            let seq = r.seq.load(Ordering::Relaxed);
            if seq % 2 == 0
                && r.seq
                    .compare_exchange_weak(seq, seq + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                break seq;
            }
            spin_loop();
        };
        // Orders the odd counter before the field stores, so a reader that sees a new field value
        // also sees the counter changed.
        fence(Ordering::Release);
        update(r);
        r.seq.store(start + 2, Ordering::Release);
    }

    /// Reads the record; never blocks for long, even if the writer died mid-update.
    pub fn snapshot(&self) -> Breadcrumb {
        let r = self.record();
        let mut last = None;
        for attempt in 0..READ_ATTEMPTS {
            let before = r.seq.load(Ordering::Acquire);
            let crumb = read_fields(r);
            fence(Ordering::Acquire);
            let after = r.seq.load(Ordering::Relaxed);
            if before == after && before % 2 == 0 {
                return crumb;
            }
            last = Some(crumb);
            if attempt % 64 == 63 {
                std::thread::yield_now();
            } else {
                spin_loop();
            }
        }
        let mut crumb = last.unwrap_or_else(|| read_fields(r));
        crumb.torn = true;
        crumb
    }
}

impl Drop for Breadcrumbs {
    fn drop(&mut self) {
        if let Backing::Shared(ptr) = self.backing {
            // SAFETY: the mapping was created in `map` with this length and is unmapped once.
            // Failure leaves a 4 KiB mapping behind; there is nothing better to do in drop.
            let _ = unsafe { munmap(ptr.cast(), RECORD_BYTES) };
        }
    }
}

impl std::fmt::Debug for Breadcrumbs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Breadcrumbs")
            .field(&self.snapshot())
            .finish()
    }
}

fn read_fields(r: &Record) -> Breadcrumb {
    let op_index = r.op_index.load(Ordering::Relaxed);
    Breadcrumb {
        request_id: r.request_id.load(Ordering::Relaxed),
        op_index: (op_index != NO_OP).then_some(op_index),
        op: load_name(&r.op),
        kernel: load_name(&r.kernel),
        torn: false,
    }
}

fn store_name(slot: &[AtomicU8; NAME_BYTES], name: &str) {
    let kept = truncate_at_char_boundary(name, NAME_BYTES).as_bytes();
    for (i, cell) in slot.iter().enumerate() {
        cell.store(kept.get(i).copied().unwrap_or(0), Ordering::Relaxed);
    }
}

fn load_name(slot: &[AtomicU8; NAME_BYTES]) -> Option<String> {
    let bytes: Vec<u8> = slot
        .iter()
        .map(|cell| cell.load(Ordering::Relaxed))
        .take_while(|&b| b != 0)
        .collect();
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_shared_record_is_empty() {
        let (crumbs, _fd) = Breadcrumbs::create_shared().unwrap();
        let crumb = crumbs.snapshot();
        assert_eq!(
            crumb,
            Breadcrumb {
                request_id: 0,
                op_index: None,
                op: None,
                kernel: None,
                torn: false
            }
        );
    }

    #[test]
    fn writes_through_one_mapping_are_read_through_another() {
        let (driver, fd) = Breadcrumbs::create_shared().unwrap();
        let worker = Breadcrumbs::open_inherited(&fd).unwrap();
        drop(fd);
        worker.begin_request(7);
        worker.set_op(3, "step");
        worker.set_kernel("build_grid");
        let crumb = driver.snapshot();
        assert_eq!(crumb.request_id, 7);
        assert_eq!(crumb.op_index, Some(3));
        assert_eq!(crumb.op.as_deref(), Some("step"));
        assert_eq!(crumb.kernel.as_deref(), Some("build_grid"));
        assert!(!crumb.torn);
        // The driver's mapping outlives the worker's.
        drop(worker);
        assert_eq!(driver.snapshot(), crumb);
    }

    #[test]
    fn a_new_op_clears_the_kernel_and_a_new_request_clears_both() {
        let crumbs = Breadcrumbs::in_process();
        crumbs.set_op(0, "add_nodes");
        crumbs.set_kernel("bbox");
        crumbs.set_op(1, "step");
        assert_eq!(crumbs.snapshot().kernel, None);
        crumbs.begin_request(2);
        let crumb = crumbs.snapshot();
        assert_eq!(
            (crumb.request_id, crumb.op_index, crumb.op),
            (2, None, None)
        );
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let crumbs = Breadcrumbs::in_process();
        // 47 ASCII bytes then a 2-byte character that would straddle the limit.
        let name = format!("{}é", "a".repeat(47));
        crumbs.set_kernel(&name);
        assert_eq!(crumbs.snapshot().kernel, Some("a".repeat(47)));
    }

    #[test]
    fn a_writer_that_died_mid_update_gives_a_torn_snapshot() {
        let crumbs = Breadcrumbs::in_process();
        crumbs.set_op(5, "step");
        // What a worker killed inside `write` leaves behind: an odd counter.
        crumbs.record().seq.fetch_add(1, Ordering::Relaxed);
        let crumb = crumbs.snapshot();
        assert!(crumb.torn);
        assert_eq!(crumb.op_index, Some(5));
    }

    #[test]
    fn another_file_is_not_a_record() {
        let fd = memfd_create(c"not-crumbs", MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, RECORD_BYTES as i64).unwrap();
        assert!(matches!(
            Breadcrumbs::open_inherited(&fd),
            Err(BreadcrumbError::NotARecord)
        ));
        let empty = memfd_create(c"empty", MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        assert!(matches!(
            Breadcrumbs::open_inherited(&empty),
            Err(BreadcrumbError::NotARecord)
        ));
    }

    #[test]
    fn concurrent_writers_and_a_reader_never_see_a_mixed_record() {
        // Each writer writes a request id and an op name derived from it; a consistent snapshot
        // must have them agree.
        let crumbs = Breadcrumbs::in_process();
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let crumbs = &crumbs;
                s.spawn(move || {
                    for i in 0..20_000u64 {
                        let id = t * 1_000_000 + i;
                        crumbs.write(|r| {
                            r.request_id.store(id, Ordering::Relaxed);
                            store_name(&r.op, &format!("op-{id}"));
                        });
                    }
                });
            }
            for _ in 0..20_000 {
                let crumb = crumbs.snapshot();
                if !crumb.torn && crumb.request_id != 0 {
                    assert_eq!(crumb.op, Some(format!("op-{}", crumb.request_id)));
                }
            }
        });
    }
}
