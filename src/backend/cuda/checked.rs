/*!
The CUDA backend's checked mode: the host half of what `kernels/common.cuh` and `kernels/checked.cu`
do on the device when compiled with `FF_CHECKED`.

* **Bounds checks.** Each kernel looks the buffers it names with `BUFFERS(..)` up in `ff_spans`, a
  hash table in constant memory, and its `LD`/`ST` accesses compare their index with the capacity
  found. Before each launch [`SpanTable::build`] fills the table with the launch's spans: address,
  capacity in elements and buffer id (the index in [`BufferName::ALL`]). As in the CPU checked mode,
  a capacity is the smaller of the span's and what is really allocated from its address on, so that
  a span claiming too much cannot hide an overrun, and a span outside every live allocation has
  capacity 0. An invalid access is not made (a read gives 0, a write goes to a sink): each thread
  notes it in registers and adds it to `ff_record` when the kernel returns, and the kernel carries
  on (a GPU thread cannot stop midway without breaking its block's barriers).
* **Red zones.** Every allocation is [`RED_ZONE`] bytes of [`CANARY`], the buffer, and another zone;
  the buffer's fresh bytes are [`POISON`] (NaN as a float, a huge index as an integer). After each
  launch `verify_canaries` checks the zones of every live allocation ([`Zone`]) and repairs damaged
  words, so that one overrun is reported once.
* **Host operations.** Uploads, downloads, copies and fills, and the copies and fills the backend
  queues inside a launch ([`super::launch::queued_transfers`]), are checked on the host against the
  allocations before they are made.

After each launch one read-back of the [`Record`] says whether anything was found;
[`Record::finding`] turns it into the non-sticky [`BackendError`] carrying the same
[`MemoryViolation`] the CPU checked mode reports, its message ending with the kernel source line
(`at layout.cu:198`). The record keeps the least (index, buffer, direction, file, line) over all
invalid accesses of the launch, so a finding does not depend on thread scheduling and is the one
the CPU's sequential kernels meet first wherever they meet the same accesses; `more` counts the
other invalid accesses (every one, not only one per thread as on the CPU). Indices from 2^40 on are
reported as 2^40 - 1 ([`INDEX_MAX`]).

What it costs, measured on an H200 with a debug-built host (`report_checked_overhead` in
`tests/cuda.rs`): the kernels of a step take 1.2x their unchecked time at 10k nodes, 1.25x at 100k
and 1.65x at 1M (the force pass's inner loops carry most of it), and a whole step 1.2x at 10k and
within 1.05x at 100k and 1M, where host work dominates.

This module owns the layouts shared with the kernels: [`SpanEntry`], [`Record`] and [`Zone`] are
`#[repr(C)]` twins of `FfSpan`, `FfRecord` and `FfZone`, and the constants mirror those of
`common.cuh` (unit tests compare both).
*/

use std::collections::BTreeMap;
use std::ffi::{c_void, CString};

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::sys;

use super::launch::Scratch;
use crate::backend::DeviceSpan;
use crate::buffer_name::BufferName;
use crate::error::{BackendError, BackendOp};
use crate::sanitize::{Access, MemoryViolation, Site, ViolationKind};

/// Bytes of each red zone (`FF_RED_ZONE_BYTES`).
pub const RED_ZONE: usize = 256;
/// What an intact red zone holds, in every word (`FF_CANARY`).
pub const CANARY: u32 = 0xfdfd_fdfd;
/// What fresh capacity holds, in every word: NaN as an `f32`, `u32::MAX` as an index.
pub const POISON: u32 = 0xffff_ffff;
/// log2 of the slots of the span table (`FF_TABLE_LOG2`).
const TABLE_LOG2: u32 = 6;
/// Slots of the span table (`FF_TABLE_SLOTS`): twice the most spans a launch has, and more, so
/// that probe chains stay short.
pub const TABLE_SLOTS: usize = 1 << TABLE_LOG2;
/// Bytes of the span table.
pub const TABLE_BYTES: usize = TABLE_SLOTS * std::mem::size_of::<SpanEntry>();
/// Bytes of the record.
const RECORD_BYTES: usize = std::mem::size_of::<Record>();
/// Bits of an access key below the buffer id: line, file, write flag (`FF_LINE_BITS` ...).
const LINE_BITS: u32 = 15;
const FILE_BITS: u32 = 2;
const BUFFER_BITS: u32 = 6;
const INDEX_SHIFT: u32 = LINE_BITS + FILE_BITS + 1 + BUFFER_BITS;
/// The largest index an access key holds (`FF_INDEX_MAX`); larger indices are reported as this.
pub const INDEX_MAX: u64 = (1 << (64 - INDEX_SHIFT)) - 1;
/// Threads of a `verify_canaries` block: one per word of the two zones (`FF_VERIFY_THREADS`).
const VERIFY_THREADS: u32 = 2 * (RED_ZONE / 4) as u32;
/// Source files by the id `ff_file_id` gives them in `common.cuh`.
const FILES: [&str; 4] = ["kernels", "layout.cu", "sssp.cu", "checked.cu"];

/// The `__global__` functions only the checked build defines.
#[cfg(test)]
pub const CHECKED_KERNEL_NAMES: &[&str] = &["verify_canaries"];

/// One slot of the span table (`FfSpan`); an empty slot has `base` 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanEntry {
    /// Device address of element 0.
    pub base: u64,
    /// Elements that may be accessed.
    pub capacity: u64,
    /// Index in [`BufferName::ALL`].
    pub buffer: u32,
    /// Padding, 0.
    pub reserved: u32,
}

/// What a checked launch found (`FfRecord`): the least key and the count of invalid accesses and
/// of damaged red-zone words.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Least access key (see [`AccessKey`]); `u64::MAX` when none.
    pub access_key: u64,
    /// Invalid accesses.
    pub access_count: u64,
    /// Least zone key (see [`ZoneKey`]); `u64::MAX` when none.
    pub zone_key: u64,
    /// Damaged red-zone words.
    pub zone_count: u64,
}

impl Record {
    /// Nothing found: what the module starts with and what the backend resets it to.
    pub const CLEAR: Record = Record {
        access_key: u64::MAX,
        access_count: 0,
        zone_key: u64::MAX,
        zone_count: 0,
    };

    fn to_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let words = [
            self.access_key,
            self.access_count,
            self.zone_key,
            self.zone_count,
        ];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        out
    }

    fn from_bytes(b: &[u8; 32]) -> Record {
        let w = |k: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&b[8 * k..8 * k + 8]);
            u64::from_ne_bytes(word)
        };
        Record {
            access_key: w(0),
            access_count: w(1),
            zone_key: w(2),
            zone_count: w(3),
        }
    }

    /// The error of a launch of `kernel` that found something: the invalid access if a kernel made
    /// one (the cause), else the damaged red zone. `None` when the record is clear.
    pub fn finding(
        &self,
        kernel: &'static str,
        table: &SpanTable,
        zones: &[Zone],
    ) -> Option<BackendError> {
        if self.access_count > 0 {
            return Some(self.access_finding(kernel, table));
        }
        if self.zone_count > 0 {
            return Some(self.zone_finding(kernel, table, zones));
        }
        None
    }

    fn access_finding(&self, kernel: &'static str, table: &SpanTable) -> BackendError {
        let key = AccessKey::decode(self.access_key);
        let file = FILES[key.file as usize];
        let Some(span) = BufferName::ALL
            .get(key.buffer as usize)
            .and_then(|&b| table.span_of(b))
        else {
            return BackendError::new(
                BackendOp::Launch,
                format!(
                    "checked mode: {} invalid accesses in kernel `{kernel}` at {file}:{}, through buffer id {}, which is not a buffer of the launch",
                    self.access_count, key.line, key.buffer
                ),
            );
        };
        let violation = MemoryViolation {
            kind: if span.allocated {
                ViolationKind::OutOfBounds
            } else {
                ViolationKind::Unallocated
            },
            site: Site::Kernel(kernel),
            buffer: span.span.buffer,
            index: key.index,
            len: span.span.len,
            capacity: span.capacity,
            access: if key.write {
                Access::Write
            } else {
                Access::Read
            },
            size: 4,
            more: self.access_count - 1,
        };
        let mut e = BackendError::from_violation(BackendOp::Launch, violation);
        e.message.push_str(&format!(" at {file}:{}", key.line));
        if key.index == INDEX_MAX {
            e.message.push_str(" (the index is at least this large)");
        }
        e
    }

    fn zone_finding(
        &self,
        kernel: &'static str,
        table: &SpanTable,
        zones: &[Zone],
    ) -> BackendError {
        let key = ZoneKey::decode(self.zone_key);
        let zone = zones.get(key.zone as usize);
        let Some((zone, buffer)) =
            zone.and_then(|z| BufferName::ALL.get(z.buffer as usize).map(|&b| (z, b)))
        else {
            return BackendError::new(
                BackendOp::Launch,
                format!(
                    "checked mode: {} red-zone words damaged after kernel `{kernel}`, in an allocation the backend does not know (the check record is corrupt)",
                    self.zone_count
                ),
            );
        };
        let bytes = zone.bytes as usize;
        let capacity = bytes / 4;
        let addr = zone.base + RED_ZONE as u64;
        // The live length if the launch named the buffer; else all of it.
        let len = table
            .spans
            .iter()
            .find(|s| s.span.addr == addr)
            .map_or(capacity, |s| s.span.len);
        let (index, side) = if key.head {
            // Before element 0: the index a kernel computing `0 - (distance + 1)` in u64 would use.
            ((key.distance + 1).wrapping_neg(), "before the start")
        } else {
            (bytes.div_ceil(4) as u64 + key.distance, "past the end")
        };
        let violation = MemoryViolation {
            kind: ViolationKind::OutOfBounds,
            site: Site::Kernel(kernel),
            buffer,
            index,
            len,
            capacity,
            access: Access::Write,
            size: 4,
            more: self.zone_count - 1,
        };
        let mut e = BackendError::from_violation(BackendOp::Launch, violation);
        e.message.push_str(&format!(
            " (a red-zone canary {} words {side} was overwritten: found by verify_canaries after the launch)",
            key.distance + 1
        ));
        e
    }
}

/// The fields of an access key (`ff_report` in `common.cuh`), most significant first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessKey {
    /// Element index, at most [`INDEX_MAX`].
    pub index: u64,
    /// Buffer id.
    pub buffer: u32,
    /// A write (else a read).
    pub write: bool,
    /// Source file id (see `FILES`).
    pub file: u32,
    /// Source line.
    pub line: u32,
}

impl AccessKey {
    /// Splits a key.
    pub fn decode(key: u64) -> Self {
        AccessKey {
            index: key >> INDEX_SHIFT,
            buffer: ((key >> (LINE_BITS + FILE_BITS + 1)) & ((1 << BUFFER_BITS) - 1)) as u32,
            write: (key >> (LINE_BITS + FILE_BITS)) & 1 == 1,
            file: ((key >> LINE_BITS) & ((1 << FILE_BITS) - 1)) as u32,
            line: (key & ((1 << LINE_BITS) - 1)) as u32,
        }
    }

    /// The key the kernels make (for tests of the decoding).
    #[cfg(test)]
    fn encode(&self) -> u64 {
        (self.index.min(INDEX_MAX) << INDEX_SHIFT)
            | (u64::from(self.buffer) << (LINE_BITS + FILE_BITS + 1))
            | (u64::from(self.write) << (LINE_BITS + FILE_BITS))
            | (u64::from(self.file) << LINE_BITS)
            | u64::from(self.line)
    }
}

/// The fields of a zone key (`verify_canaries` in `checked.cu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneKey {
    /// Index in the zone table.
    pub zone: u32,
    /// The zone before the buffer (else the one after).
    pub head: bool,
    /// Words between the damaged word and the buffer.
    pub distance: u64,
}

impl ZoneKey {
    /// Splits a key.
    pub fn decode(key: u64) -> Self {
        ZoneKey {
            zone: (key >> 32) as u32,
            head: (key >> 31) & 1 == 1,
            distance: key & 0x7fff_ffff,
        }
    }
}

/// One live allocation in the zone table (`FfZone`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone {
    /// Address of the first red zone (what was allocated).
    pub base: u64,
    /// Bytes of the buffer, which starts [`RED_ZONE`] bytes after `base`.
    pub bytes: u64,
    /// Index in [`BufferName::ALL`].
    pub buffer: u32,
    /// Padding, 0.
    pub reserved: u32,
}

/// A live allocation of the CUDA backend.
#[derive(Clone, Copy, Debug)]
pub struct Allocation {
    /// What the driver allocated (and what is freed): the address given out, less [`RED_ZONE`] in
    /// the checked mode.
    pub raw: u64,
    /// Bytes asked for.
    pub bytes: usize,
    /// The buffer it was allocated for.
    pub buffer: BufferName,
}

/// Live allocations by the address given out.
pub type Allocations = BTreeMap<u64, Allocation>;

/// The id of a buffer in the kernels' tables: its index in [`BufferName::ALL`].
pub fn buffer_id(b: BufferName) -> u32 {
    b as u32
}

/// The allocation whose bytes hold `addr` (one past the end counts, so that a zero-byte allocation
/// holds its own address), with the address it was given out at.
fn containing(allocs: &Allocations, addr: u64) -> Option<(u64, &Allocation)> {
    allocs
        .range(..=addr)
        .next_back()
        .filter(|(&start, a)| addr - start <= a.bytes as u64)
        .map(|(&start, a)| (start, a))
}

/// The slot a buffer address hashes to (`ff_slot` in `common.cuh`).
pub fn slot(addr: u64) -> usize {
    (((addr >> 8) as u32).wrapping_mul(2_654_435_761) >> (32 - TABLE_LOG2)) as usize
}

/// A span of a launch as the checked mode bounds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedSpan {
    /// The span the launch gave.
    pub span: DeviceSpan,
    /// Elements that may be accessed: the smaller of the span's capacity and the allocation's.
    pub capacity: usize,
    /// Whether the address is inside a live allocation.
    pub allocated: bool,
}

/// The span table of one launch, as the kernels will see it, and the spans it was built from.
#[derive(Clone, Debug)]
pub struct SpanTable {
    slots: [SpanEntry; TABLE_SLOTS],
    spans: Vec<CheckedSpan>,
}

impl SpanTable {
    /// The table of a launch's `spans` over the live `allocs`. A second span at an address already
    /// in the table is bounded by the first.
    pub fn build(spans: &[DeviceSpan], allocs: &Allocations) -> Self {
        let mut table = SpanTable {
            slots: [SpanEntry::default(); TABLE_SLOTS],
            spans: Vec::with_capacity(spans.len()),
        };
        for &span in spans {
            let (capacity, allocated) = match containing(allocs, span.addr) {
                Some((start, a)) => {
                    let room = (start + a.bytes as u64 - span.addr) as usize / 4;
                    (span.capacity.min(room), true)
                }
                None => (0, false),
            };
            table.spans.push(CheckedSpan {
                span,
                capacity,
                allocated,
            });
            table.insert(SpanEntry {
                base: span.addr,
                capacity: capacity as u64,
                buffer: buffer_id(span.buffer),
                reserved: 0,
            });
        }
        table
    }

    fn insert(&mut self, entry: SpanEntry) {
        // Null is never looked up: the kernels treat it as unchecked.
        if entry.base == 0 {
            return;
        }
        let mut s = slot(entry.base);
        for _ in 0..TABLE_SLOTS {
            let here = &mut self.slots[s];
            if here.base == 0 {
                *here = entry;
                return;
            }
            if here.base == entry.base {
                return;
            }
            s = (s + 1) % TABLE_SLOTS;
        }
        // A full table (impossible with TABLE_SLOTS above twice the most spans of a launch) leaves
        // the span unchecked rather than failing the launch.
    }

    /// The slot of `addr` as the kernels' lookup finds it (for tests of the hashing).
    #[cfg(test)]
    fn lookup(&self, addr: u64) -> Option<&SpanEntry> {
        let mut s = slot(addr);
        for _ in 0..TABLE_SLOTS {
            let e = &self.slots[s];
            if e.base == 0 {
                return None;
            }
            if e.base == addr {
                return Some(e);
            }
            s = (s + 1) % TABLE_SLOTS;
        }
        None
    }

    /// The first span of `buffer`.
    pub fn span_of(&self, buffer: BufferName) -> Option<&CheckedSpan> {
        self.spans.iter().find(|s| s.span.buffer == buffer)
    }

    /// Writes the table's bytes, as `ff_spans` holds them, into `out` ([`TABLE_BYTES`] long).
    pub fn write_to(&self, out: &mut [u8]) {
        for (e, chunk) in self.slots.iter().zip(out.chunks_exact_mut(24)) {
            chunk[..8].copy_from_slice(&e.base.to_ne_bytes());
            chunk[8..16].copy_from_slice(&e.capacity.to_ne_bytes());
            chunk[16..20].copy_from_slice(&e.buffer.to_ne_bytes());
            chunk[20..].copy_from_slice(&e.reserved.to_ne_bytes());
        }
    }

    /// The first of the backend's own copies and fills for the launch (`transfers`: span, elements
    /// from its start, direction) that would leave its buffer, as the violation of `kernel`.
    pub fn check_transfers(
        &self,
        kernel: &'static str,
        transfers: &[(DeviceSpan, usize, Access)],
    ) -> Option<MemoryViolation> {
        transfers.iter().find_map(|&(span, elements, access)| {
            let checked = self.spans.iter().find(|s| s.span == span)?;
            (elements > checked.capacity).then_some(MemoryViolation {
                kind: if checked.allocated {
                    ViolationKind::OutOfBounds
                } else {
                    ViolationKind::Unallocated
                },
                site: Site::Kernel(kernel),
                buffer: span.buffer,
                index: checked.capacity as u64,
                len: span.len,
                capacity: checked.capacity,
                access,
                size: 4,
                more: 0,
            })
        })
    }
}

/// Checks that a host operation's bytes `[addr, addr + bytes)` lie inside one live allocation: the
/// CUDA twin of the CPU checked mode's `checked_range`, with the same findings.
pub fn check_range(
    allocs: &Allocations,
    op: (BackendOp, &'static str),
    addr: u64,
    bytes: usize,
    access: Access,
) -> Result<(), BackendError> {
    let Some((start, a)) = containing(allocs, addr) else {
        return Err(BackendError::new(
            op.0,
            format!(
                "checked mode: `{}` of {bytes} bytes at {addr:#x}: the address is not inside any live allocation",
                op.1
            ),
        ));
    };
    let offset = (addr - start) as usize;
    if offset + bytes <= a.bytes {
        return Ok(());
    }
    let violation = MemoryViolation {
        kind: ViolationKind::OutOfBounds,
        site: Site::HostOp(op.1),
        buffer: a.buffer,
        index: (offset / 4) as u64,
        len: (offset + bytes).div_ceil(4),
        capacity: a.bytes / 4,
        access,
        size: bytes,
        more: 0,
    };
    Err(BackendError::from_violation(op.0, violation))
}

/// The device side of the checked mode: the module's symbols, the zone table and its buffer.
#[derive(Debug)]
pub struct CheckedDevice {
    /// Address of `ff_spans`.
    spans_symbol: u64,
    /// Address of `ff_record`.
    record_symbol: u64,
    verify: sys::CUfunction,
    /// Page-locked host memory, [`TABLE_BYTES`] for the span table then the record: the two
    /// copies of every launch are then plain DMA, queued without staging or waiting. Each launch
    /// waits for its own copies before the next one rewrites the bytes.
    staging: *mut u8,
    /// What the zone buffer holds once `zones_dirty` is false.
    zones: Vec<Zone>,
    zones_dirty: bool,
    zone_buffer: Scratch,
}

impl CheckedDevice {
    /// Finds the checked build's symbols in `module`; fails when the module was not compiled with
    /// `FF_CHECKED` or its layouts differ from this module's.
    pub fn load(module: sys::CUmodule) -> Result<Self, BackendError> {
        let init = |e| super::driver::backend_error(BackendOp::Init, None, e);
        let global = |name: &str, expected: usize| -> Result<u64, BackendError> {
            // Symbol names are literals without NUL bytes.
            let c = CString::new(name).unwrap_or_default();
            // SAFETY: the module is loaded and outlives the symbols (both owned by the backend).
            let (addr, bytes) = unsafe { result::module::get_global(module, c) }.map_err(init)?;
            if bytes != expected {
                return Err(BackendError::new(
                    BackendOp::Init,
                    format!("checked mode: `{name}` has {bytes} bytes on the device, {expected} on the host"),
                ));
            }
            Ok(addr)
        };
        let spans_symbol = global("ff_spans", TABLE_BYTES)?;
        let record_symbol = global("ff_record", RECORD_BYTES)?;
        let c = CString::new("verify_canaries").unwrap_or_default();
        // SAFETY: as above.
        let verify = unsafe { result::module::get_function(module, c) }.map_err(init)?;
        // SAFETY: a plain page-locked allocation, freed by `release` (or with the context).
        let staging =
            unsafe { result::malloc_host(TABLE_BYTES + RECORD_BYTES, 0) }.map_err(init)? as *mut u8;
        Ok(CheckedDevice {
            spans_symbol,
            record_symbol,
            verify,
            staging,
            zones: Vec::new(),
            zones_dirty: true,
            zone_buffer: Scratch::default(),
        })
    }

    /// Says that allocations changed: the zone table is rebuilt before the next verification.
    pub fn mark_dirty(&mut self) {
        self.zones_dirty = true;
    }

    /// The zone table the last verification used.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// Bytes of the zone buffer.
    pub fn bytes(&self) -> usize {
        self.zone_buffer.bytes()
    }

    /// Frees the zone buffer and the staging memory.
    pub fn release(&mut self) {
        self.zone_buffer.release();
        if !self.staging.is_null() {
            // SAFETY: allocated by `load`, freed once.
            let _ = unsafe { result::free_host(self.staging as *mut c_void) };
            self.staging = std::ptr::null_mut();
        }
    }

    /// The staging bytes `[start, start + len)`.
    ///
    /// # Safety
    /// No copy queued from or into these bytes may still be running.
    unsafe fn staged(&mut self, start: usize, len: usize) -> &mut [u8] {
        debug_assert!(!self.staging.is_null() && start + len <= TABLE_BYTES + RECORD_BYTES);
        // SAFETY: inside the staging allocation (alive until `release`), borrowed mutably from
        // `self`; the caller rules out the device.
        unsafe { std::slice::from_raw_parts_mut(self.staging.add(start), len) }
    }

    /// Queues the upload of a launch's span table (and of the zone table, if allocations changed).
    /// The previous launch's copies must have finished (every launch waits for its own).
    pub fn prepare(
        &mut self,
        table: &SpanTable,
        allocs: &Allocations,
        stream: sys::CUstream,
    ) -> Result<(), DriverError> {
        let dst = self.spans_symbol;
        // SAFETY: the previous launch's copies are done (above); `ff_spans` has exactly
        // TABLE_BYTES (checked in `load`), and the staging bytes stay untouched until this launch
        // has waited for its stream.
        unsafe {
            let bytes = self.staged(0, TABLE_BYTES);
            table.write_to(bytes);
            result::memcpy_htod_async(dst, bytes, stream)?;
        }
        self.upload_zones(allocs, stream)
    }

    fn upload_zones(
        &mut self,
        allocs: &Allocations,
        stream: sys::CUstream,
    ) -> Result<(), DriverError> {
        if !self.zones_dirty {
            return Ok(());
        }
        self.zones = allocs
            .values()
            .map(|a| Zone {
                base: a.raw,
                bytes: a.bytes as u64,
                buffer: buffer_id(a.buffer),
                reserved: 0,
            })
            .collect();
        if !self.zones.is_empty() {
            let mut bytes = Vec::with_capacity(self.zones.len() * std::mem::size_of::<Zone>());
            for z in &self.zones {
                bytes.extend_from_slice(&z.base.to_ne_bytes());
                bytes.extend_from_slice(&z.bytes.to_ne_bytes());
                bytes.extend_from_slice(&z.buffer.to_ne_bytes());
                bytes.extend_from_slice(&z.reserved.to_ne_bytes());
            }
            // Every earlier verification has finished (each launch waits for its own), so the
            // buffer may be replaced.
            let dst = self.zone_buffer.ensure(bytes.len(), stream)?;
            // SAFETY: `dst` holds at least `bytes.len()` bytes; staged as in `prepare`.
            unsafe { result::memcpy_htod_async(dst, &bytes, stream) }?;
        }
        self.zones_dirty = false;
        Ok(())
    }

    /// Queues `verify_canaries` over every live allocation, reads the record back and waits for it.
    pub fn verify_and_read(
        &mut self,
        allocs: &Allocations,
        stream: sys::CUstream,
    ) -> Result<Record, DriverError> {
        self.upload_zones(allocs, stream)?;
        let num_zones = u32::try_from(self.zones.len()).unwrap_or(u32::MAX);
        if num_zones > 0 {
            let zones_addr = self.zone_buffer.addr();
            let mut args = [
                &zones_addr as *const u64 as *mut c_void,
                &num_zones as *const u32 as *mut c_void,
            ];
            // SAFETY: `verify_canaries(const FfZone*, u32)`; the zone buffer holds `num_zones`
            // entries, each naming a live allocation with its red zones.
            unsafe {
                result::launch_kernel(
                    self.verify,
                    (num_zones, 1, 1),
                    (VERIFY_THREADS, 1, 1),
                    0,
                    stream,
                    &mut args,
                )
            }?;
        }
        let src = self.record_symbol;
        // SAFETY: `ff_record` has exactly RECORD_BYTES (checked in `load`); the stream is
        // synchronized before the staged bytes are read.
        let bytes = unsafe {
            let staged = self.staged(TABLE_BYTES, RECORD_BYTES);
            result::memcpy_dtoh_async(staged, src, stream)?;
            result::stream::synchronize(stream)?;
            let mut bytes = [0u8; RECORD_BYTES];
            bytes.copy_from_slice(staged);
            bytes
        };
        Ok(Record::from_bytes(&bytes))
    }

    /// Resets the record after a finding, so that the next launch starts clean.
    pub fn clear_record(&self, stream: sys::CUstream) -> Result<(), DriverError> {
        // SAFETY: as in `verify_and_read`; waited for before `clear` goes.
        unsafe {
            result::memcpy_htod_async(self.record_symbol, &Record::CLEAR.to_bytes(), stream)?;
            result::stream::synchronize(stream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(addr: u64, capacity: usize, buffer: BufferName) -> DeviceSpan {
        DeviceSpan {
            addr,
            capacity,
            len: capacity,
            buffer,
        }
    }

    fn allocs(list: &[(u64, usize, BufferName)]) -> Allocations {
        list.iter()
            .map(|&(addr, bytes, buffer)| {
                (
                    addr,
                    Allocation {
                        raw: addr - RED_ZONE as u64,
                        bytes,
                        buffer,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn buffer_ids_are_indices_in_all() {
        for (i, &b) in BufferName::ALL.iter().enumerate() {
            assert_eq!(buffer_id(b) as usize, i, "{b}");
        }
        assert!(BufferName::ALL.len() < 1 << BUFFER_BITS);
    }

    #[test]
    fn the_table_finds_every_span_and_bounds_it_by_its_allocation() {
        // Addresses as the driver gives them (512-byte aligned) plus the red zone, many colliding
        // in the hash, to exercise the probing.
        let mut list = Vec::new();
        let mut spans = Vec::new();
        for k in 0..24u64 {
            let addr = 0x7f00_0000_0000 + k * 0x20_0000 + RED_ZONE as u64;
            let b = BufferName::ALL[k as usize];
            list.push((addr, 400, b));
            spans.push(span(addr, 100 + k as usize, b));
        }
        let a = allocs(&list);
        let t = SpanTable::build(&spans, &a);
        for (k, s) in spans.iter().enumerate() {
            let e = t.lookup(s.addr).expect("every span is found");
            // 400 bytes hold 100 elements: the allocation bounds spans that claim more.
            assert_eq!(e.capacity, 100, "span {k}");
            assert_eq!(e.buffer, k as u32);
        }
        assert_eq!(
            t.lookup(0x1234_5600),
            None,
            "an unknown pointer is unchecked"
        );
        assert_eq!(t.lookup(0), None);
        let mut bytes = vec![0u8; TABLE_BYTES];
        t.write_to(&mut bytes);
        let first = t.slots.iter().position(|e| e.base != 0).unwrap();
        assert_eq!(
            bytes[first * 24..first * 24 + 8],
            t.slots[first].base.to_ne_bytes()
        );
        assert_eq!(TABLE_BYTES, 1536);
    }

    #[test]
    fn spans_outside_allocations_get_no_room_and_inner_spans_the_rest() {
        let a = allocs(&[(0x10_0100, 64, BufferName::Mass)]);
        let t = SpanTable::build(
            &[
                span(0x10_0100 + 16, 100, BufferName::Mass),
                span(0x90_0000, 8, BufferName::Bounds),
            ],
            &a,
        );
        let inner = t.span_of(BufferName::Mass).unwrap();
        assert_eq!((inner.capacity, inner.allocated), (12, true));
        let outside = t.span_of(BufferName::Bounds).unwrap();
        assert_eq!((outside.capacity, outside.allocated), (0, false));
        assert_eq!(t.lookup(0x90_0000).unwrap().capacity, 0);
    }

    #[test]
    fn access_keys_order_by_index_then_buffer_and_decode_to_their_fields() {
        let k = AccessKey {
            index: 4,
            buffer: 22,
            write: true,
            file: 1,
            line: 177,
        };
        assert_eq!(AccessKey::decode(k.encode()), k);
        let later = AccessKey {
            index: 5,
            buffer: 0,
            ..k
        };
        assert!(k.encode() < later.encode(), "a smaller index wins");
        let other = AccessKey { buffer: 23, ..k };
        assert!(k.encode() < other.encode(), "then a smaller buffer id");
        let huge = AccessKey {
            index: u64::MAX,
            ..k
        };
        assert_eq!(AccessKey::decode(huge.encode()).index, INDEX_MAX);
    }

    #[test]
    fn an_access_record_becomes_the_cpu_checked_modes_violation() {
        let a = allocs(&[(0x20_0100, 16, BufferName::SortedKeys)]);
        let t = SpanTable::build(&[span(0x20_0100, 4, BufferName::SortedKeys)], &a);
        let key = AccessKey {
            index: 4,
            buffer: buffer_id(BufferName::SortedKeys),
            write: true,
            file: 1,
            line: 201,
        };
        let record = Record {
            access_key: key.encode(),
            access_count: 3,
            ..Record::CLEAR
        };
        let e = record.finding("sort_pairs", &t, &[]).unwrap();
        assert!(!e.sticky);
        assert_eq!(e.kernel, Some("sort_pairs"));
        let v = e.violation.as_deref().unwrap();
        assert_eq!(
            (v.kind, v.buffer, v.index, v.capacity, v.len, v.access, v.more),
            (
                ViolationKind::OutOfBounds,
                BufferName::SortedKeys,
                4,
                4,
                4,
                Access::Write,
                2
            )
        );
        assert!(
            e.message.starts_with(
                "Invalid __global__ write of size 4 bytes: buffer `sorted_keys` index 4 >= capacity 4"
            ) && e.message.ends_with(" at layout.cu:201"),
            "{}",
            e.message
        );
        assert!(Record::CLEAR.finding("sort_pairs", &t, &[]).is_none());
    }

    #[test]
    fn a_zone_record_is_an_out_of_bounds_write_past_the_end_or_before_the_start() {
        let a = allocs(&[(0x30_0100, 40, BufferName::CellStart)]);
        let t = SpanTable::build(&[span(0x30_0100, 10, BufferName::CellStart)], &a);
        let zones = [Zone {
            base: 0x30_0000,
            bytes: 40,
            buffer: buffer_id(BufferName::CellStart),
            reserved: 0,
        }];
        let tail = Record {
            zone_key: 2,
            zone_count: 1,
            ..Record::CLEAR
        };
        let v = *tail
            .finding("cell_bounds", &t, &zones)
            .unwrap()
            .violation
            .unwrap();
        assert_eq!(
            (v.buffer, v.index, v.capacity, v.access, v.site),
            (
                BufferName::CellStart,
                12,
                10,
                Access::Write,
                Site::Kernel("cell_bounds")
            )
        );
        let head = Record {
            zone_key: 1 << 31,
            zone_count: 2,
            ..Record::CLEAR
        };
        let v = *head
            .finding("cell_bounds", &t, &zones)
            .unwrap()
            .violation
            .unwrap();
        assert_eq!(
            (v.index, v.more),
            (u64::MAX, 1),
            "one element before the start"
        );
    }

    #[test]
    fn transfers_past_a_buffer_and_host_operations_past_an_allocation_are_violations() {
        let a = allocs(&[(0x40_0100, 16, BufferName::SortedKeys)]);
        let keys = span(0x40_0100, 4, BufferName::SortedKeys);
        let t = SpanTable::build(&[keys], &a);
        assert_eq!(
            t.check_transfers("sort_pairs", &[(keys, 4, Access::Write)]),
            None
        );
        let v = t
            .check_transfers("sort_pairs", &[(keys, 6, Access::Write)])
            .unwrap();
        assert_eq!(
            (v.index, v.capacity, v.site),
            (4, 4, Site::Kernel("sort_pairs"))
        );

        let op = (BackendOp::Upload, "upload");
        assert!(check_range(&a, op, 0x40_0100 + 4, 12, Access::Write).is_ok());
        let e = check_range(&a, op, 0x40_0100 + 4, 16, Access::Write).unwrap_err();
        let v = e.violation.unwrap();
        assert_eq!((v.index, v.len, v.capacity, v.size), (1, 5, 4, 16));
        assert_eq!(v.site, Site::HostOp("upload"));
        let e = check_range(&a, op, 0x50_0000, 4, Access::Write).unwrap_err();
        assert!(e.violation.is_none() && e.message.contains("not inside any live allocation"));
    }

    #[test]
    fn record_bytes_round_trip() {
        let r = Record {
            access_key: 1,
            access_count: 2,
            zone_key: 3,
            zone_count: 4,
        };
        assert_eq!(Record::from_bytes(&r.to_bytes()), r);
        assert_eq!(std::mem::size_of::<Record>(), 32);
        assert_eq!(std::mem::size_of::<SpanEntry>(), 24);
        assert_eq!(std::mem::size_of::<Zone>(), 24);
    }
}
