/*!
The one accessor through which CPU kernels touch device memory, unchecked or checked.

[`Dev`] is a raw device pointer with the buffer's capacity, live length and name beside it. A kernel
makes its accessors from a [`Cx`], whose `CHECKED` parameter is a compile-time constant:

* `Cx<false>` ([`Cx::UNCHECKED`], the default mode): `get`/`set` are raw reads and writes, exactly
  like a GPU kernel's. An out-of-bounds index runs into a guard page and the process dies with
  SIGSEGV. The checks below are not compiled into this instantiation at all.
* `Cx<true>` (the checked mode, made by [`LaunchCheck::run`]): every access is bounds-checked
  against the buffer's capacity, and every read checks the region's shadow for a word never written
  since the allocation (the initcheck analog). The first invalid access is recorded as a
  [`MemoryViolation`] and stops the kernel: the accessor unwinds (without the panic hook, so a
  worker does not count it as a panic) to [`LaunchCheck::run`], which returns the violation.

Stopping at the first violation rather than carrying on with a poison value is deliberate: a kernel
that carries on computes with garbage, and garbage loop bounds (a never-written `cell_end`, say)
turn a memory error into a four-billion-iteration hang that would be reported as a hang.
*/

use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::memory::{GuardedRegion, ShadowView};
use crate::backend::DeviceSpan;
use crate::buffer_name::BufferName;
use crate::sanitize::{Access, MemoryViolation, Site, ViolationKind};

/// A typed device pointer as a CPU kernel sees it; `CHECKED` selects the checked accessor.
#[derive(Debug)]
pub struct Dev<'a, T, const CHECKED: bool = false> {
    ptr: *mut T,
    capacity: usize,
    len: usize,
    buffer: BufferName,
    /// Checked mode: the region's written-bytes from the span's first word on.
    shadow: Option<ShadowView<'a>>,
    /// Checked mode: whether the span's address lies inside a live allocation.
    allocated: bool,
    /// Checked mode: where violations go.
    check: Option<&'a LaunchCheck<'a>>,
    _t: PhantomData<T>,
}

impl<T, const C: bool> Clone for Dev<'_, T, C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, const C: bool> Copy for Dev<'_, T, C> {}

// SAFETY: `Dev` is a device pointer; kernels partition writes between threads the way GPU threads
// do. The shadow and the launch check are shared through atomics and a mutex.
unsafe impl<T, const C: bool> Send for Dev<'_, T, C> {}
unsafe impl<T, const C: bool> Sync for Dev<'_, T, C> {}

impl<T: Copy> Dev<'static, T> {
    /// The unchecked accessor for a span.
    pub fn new(span: DeviceSpan) -> Self {
        Dev::raw(span)
    }
}

impl<'a, T: Copy, const CHECKED: bool> Dev<'a, T, CHECKED> {
    fn raw(span: DeviceSpan) -> Self {
        Dev {
            ptr: span.addr as *mut T,
            capacity: span.capacity,
            len: span.len,
            buffer: span.buffer,
            shadow: None,
            allocated: true,
            check: None,
            _t: PhantomData,
        }
    }

    /// Reads element `i`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> T {
        if CHECKED {
            self.check_read(i);
        }
        // SAFETY: unchecked, none, deliberately: like a GPU kernel, an index past the allocation is
        // undefined behaviour that the guard pages turn into SIGSEGV. Checked, `check_read` stopped
        // the kernel unless `i` is inside the allocation.
        unsafe { self.ptr.add(i).read() }
    }

    /// Writes element `i`.
    #[inline(always)]
    pub fn set(&self, i: usize, v: T) {
        if CHECKED {
            self.check_bounds(i, Access::Write);
        }
        // SAFETY: as for `get`.
        unsafe { self.ptr.add(i).write(v) }
        if CHECKED {
            if let Some(shadow) = self.shadow {
                shadow.set(i);
            }
        }
    }

    /// The buffer's capacity in elements (what the checked mode bounds against).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The buffer's live length in elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no live elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's name.
    pub fn buffer(&self) -> BufferName {
        self.buffer
    }

    #[inline(always)]
    fn check_bounds(&self, i: usize, access: Access) {
        if i >= self.capacity {
            let kind = if self.allocated {
                ViolationKind::OutOfBounds
            } else {
                ViolationKind::Unallocated
            };
            self.fail(kind, i, access);
        }
    }

    #[inline(always)]
    fn check_read(&self, i: usize) {
        self.check_bounds(i, Access::Read);
        if let Some(shadow) = self.shadow {
            if !shadow.is_set(i) {
                self.fail(ViolationKind::Uninitialized, i, Access::Read);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn fail(&self, kind: ViolationKind, i: usize, access: Access) -> ! {
        let kernel = self.check.map_or("unknown", |c| c.kernel);
        let violation = MemoryViolation {
            kind,
            site: Site::Kernel(kernel),
            buffer: self.buffer,
            index: i as u64,
            len: self.len,
            capacity: self.capacity,
            access,
            size: std::mem::size_of::<T>(),
            more: 0,
        };
        if let Some(check) = self.check {
            check.record(violation);
        }
        resume_unwind(Box::new(KernelStopped))
    }
}

/// The unwinding payload that stops a checked kernel at its first violation.
struct KernelStopped;

/// Whether an unwinding payload is a checked kernel stopping (rather than a real panic).
pub fn is_kernel_stop(payload: &(dyn Any + Send)) -> bool {
    payload.is::<KernelStopped>()
}

/// How a kernel makes its accessors; `CHECKED` is fixed at compile time, so the unchecked kernels
/// are the same machine code as with no checked mode at all.
#[derive(Clone, Copy, Debug)]
pub struct Cx<'a, const CHECKED: bool> {
    check: Option<&'a LaunchCheck<'a>>,
}

impl Cx<'static, false> {
    /// The unchecked context: raw accessors.
    pub const UNCHECKED: Self = Cx { check: None };
}

impl<'a, const CHECKED: bool> Cx<'a, CHECKED> {
    /// The accessor for a span of `T` (4-byte elements).
    #[inline(always)]
    pub fn dev<T: Copy>(&self, span: DeviceSpan) -> Dev<'a, T, CHECKED> {
        match self.check {
            Some(check) if CHECKED => check.dev(span),
            _ => Dev::raw(span),
        }
    }
}

/// The checked mode's state for one launch: the kernel's name, the device memory, and the first
/// violation any thread of the kernel made.
#[derive(Debug)]
pub struct LaunchCheck<'a> {
    kernel: &'static str,
    regions: &'a BTreeMap<u64, GuardedRegion>,
    first: Mutex<Option<MemoryViolation>>,
    more: AtomicU64,
}

impl<'a> LaunchCheck<'a> {
    /// The check for one launch of `kernel` over the backend's `regions` (keyed by start address).
    pub fn new(kernel: &'static str, regions: &'a BTreeMap<u64, GuardedRegion>) -> Self {
        LaunchCheck {
            kernel,
            regions,
            first: Mutex::new(None),
            more: AtomicU64::new(0),
        }
    }

    /// Runs a kernel with checked accessors; its first invalid access, if any, stopped it and is
    /// returned. A real panic inside the kernel goes on unwinding.
    pub fn run(&self, kernel: impl FnOnce(&Cx<'_, true>)) -> Result<(), MemoryViolation> {
        let cx = Cx { check: Some(self) };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| kernel(&cx))) {
            if !is_kernel_stop(payload.as_ref()) {
                resume_unwind(payload);
            }
        }
        let first = self
            .first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match first {
            Some(mut v) => {
                v.more = self.more.load(Ordering::Relaxed);
                Err(v)
            }
            None => Ok(()),
        }
    }

    /// The checked accessor for a span: bounded by the smaller of the span's capacity and what is
    /// really allocated from its address on, so that a lying capacity cannot reach a guard page.
    fn dev<'b, T: Copy, const C: bool>(&'b self, span: DeviceSpan) -> Dev<'b, T, C> {
        const {
            assert!(
                std::mem::size_of::<T>() == 4,
                "device elements are 4-byte words"
            )
        };
        let mut dev = Dev::raw(span);
        dev.check = Some(self);
        let region = self
            .regions
            .range(..=span.addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.offset_of(span.addr, 0).is_some());
        match region {
            Some(r) => {
                // Guarded by the lookup: `span.addr` is inside the region.
                let offset = (span.addr - r.addr()) as usize;
                let room = (r.len() - offset) / 4;
                dev.capacity = span.capacity.min(room);
                dev.shadow = r.shadow().map(|s| s.from_word(offset / 4));
            }
            None => {
                dev.capacity = 0;
                dev.allocated = false;
            }
        }
        dev
    }

    fn record(&self, violation: MemoryViolation) {
        let mut first = self
            .first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if first.is_none() {
            *first = Some(violation);
        } else {
            self.more.fetch_add(1, Ordering::Relaxed);
        }
    }
}
