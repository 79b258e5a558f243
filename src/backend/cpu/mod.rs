/*!
The CPU backend: emulated device memory in guarded `mmap` regions, and the Rust kernels.

Device addresses are real process addresses, so a kernel that indexes past a buffer faults exactly as
a GPU kernel would on the original server: SIGSEGV. Kernel durations are wall-clock times.

A lost context is emulated: after [`Backend::lose_context`] every call fails with a sticky error until
[`Backend::reset`], which drops all memory, as a new CUDA context would.

The checked mode ([`CpuBackend::with_checked`]) is the CPU's sanitizer: kernels get bounds-checked
accessors ([`access`]), fresh allocations are poisoned and shadowed by written-marks
([`memory`]), and copies, uploads, downloads and fills are checked against their allocation. An
invalid access is not a crash but a non-sticky [`BackendError`] carrying the
[`crate::sanitize::MemoryViolation`].
*/

pub mod access;
pub mod kernels;
pub mod memory;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::backend::{Backend, DeviceAlloc, Launch};
use crate::buffer_name::BufferName;
use crate::error::{BackendError, BackendOp};
use crate::sanitize::{Access, MemoryViolation, Site, ViolationKind};
use access::{Cx, LaunchCheck};
use memory::GuardedRegion;

/// The CPU backend.
#[derive(Debug)]
pub struct CpuBackend {
    /// Allocations by start address (ordered, so that the checked mode finds the one holding an
    /// address).
    regions: BTreeMap<u64, GuardedRegion>,
    bytes: usize,
    threads: usize,
    /// The checked mode: see the module documentation.
    checked: bool,
    /// The sticky error every call returns after a lost context.
    lost: Option<BackendError>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    /// A backend whose kernels use every available core.
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads(threads)
    }

    /// A backend whose data-parallel kernels use `threads` threads (at least 1).
    pub fn with_threads(threads: usize) -> Self {
        CpuBackend {
            regions: BTreeMap::new(),
            bytes: 0,
            threads: threads.max(1),
            checked: false,
            lost: None,
        }
    }

    /// Threads used by data-parallel kernels.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// This backend with the checked mode on or off. Switch it before the first allocation: only
    /// memory allocated in the checked mode is poisoned and tracked.
    pub fn with_checked(mut self, checked: bool) -> Self {
        self.checked = checked;
        self
    }

    /// Whether the checked mode is on.
    pub fn is_checked(&self) -> bool {
        self.checked
    }

    /// Checked mode: the region holding `[addr, addr + bytes)` and the byte offset into it, or the
    /// error of `op` accessing outside its allocation.
    fn checked_range(
        &self,
        op: (BackendOp, &'static str),
        addr: u64,
        bytes: usize,
        access: Access,
    ) -> Result<(&GuardedRegion, usize), BackendError> {
        let region = self
            .regions
            .range(..=addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.offset_of(addr, 0).is_some());
        let Some(region) = region else {
            return Err(BackendError::new(
                op.0,
                format!(
                    "checked mode: `{}` of {bytes} bytes at {addr:#x}: the address is not inside any live allocation",
                    op.1
                ),
            ));
        };
        // Guarded by the lookup: `addr` is inside the region.
        let offset = (addr - region.addr()) as usize;
        if region.offset_of(addr, bytes).is_some() {
            return Ok((region, offset));
        }
        let buffer = region.shadow().map(|s| s.buffer());
        let violation = buffer.map(|buffer| MemoryViolation {
            kind: ViolationKind::OutOfBounds,
            site: Site::HostOp(op.1),
            buffer,
            index: (offset / 4) as u64,
            len: (offset + bytes).div_ceil(4),
            capacity: region.len() / 4,
            access,
            size: bytes,
            more: 0,
        });
        Err(match violation {
            Some(v) => BackendError::from_violation(op.0, v),
            // A region allocated before the checked mode was switched on: no name to report.
            None => BackendError::new(
                op.0,
                format!(
                    "checked mode: `{}` of {bytes} bytes at offset {offset} overruns an allocation of {} bytes",
                    op.1,
                    region.len()
                ),
            ),
        })
    }

    fn check_context(&self) -> Result<(), BackendError> {
        match &self.lost {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_description(&self) -> String {
        let checked = if self.checked { ", checked" } else { "" };
        format!(
            "cpu ({} threads, guarded mmap memory{checked})",
            self.threads
        )
    }

    fn alloc(&mut self, buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError> {
        self.check_context()?;
        let region = if self.checked {
            GuardedRegion::new_checked(bytes, buffer)
        } else {
            GuardedRegion::new(bytes)
        };
        let region = region.map_err(|e| {
            BackendError::new(BackendOp::Alloc, format!("mmap of {bytes} bytes: {e}"))
        })?;
        let addr = region.addr();
        // Two zero-length regions are distinct mappings, so addresses never collide.
        self.regions.insert(addr, region);
        self.bytes += bytes;
        Ok(DeviceAlloc { addr, bytes })
    }

    fn free(&mut self, alloc: DeviceAlloc) {
        if let Some(r) = self.regions.remove(&alloc.addr) {
            self.bytes -= r.len();
        }
    }

    fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), BackendError> {
        self.check_context()?;
        if self.checked {
            let op = (BackendOp::Upload, "upload");
            let (region, offset) = self.checked_range(op, dst, src.len(), Access::Write)?;
            if let Some(shadow) = region.shadow() {
                shadow.set_range(words(offset, src.len()));
            }
        }
        // SAFETY: like cuMemcpyHtoD, the caller names a device range; a wrong one faults.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError> {
        self.check_context()?;
        if self.checked {
            let op = (BackendOp::Download, "download");
            self.checked_range(op, src, dst.len(), Access::Read)?;
        }
        // SAFETY: as for `upload`.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError> {
        self.check_context()?;
        if self.checked {
            let op = (BackendOp::DeviceCopy, "copy");
            let (from, from_offset) = self.checked_range(op, src, bytes, Access::Read)?;
            let (to, to_offset) = self.checked_range(op, dst, bytes, Access::Write)?;
            // Never-written words stay never-written where they are copied to.
            if let (Some(from), Some(to)) = (from.shadow(), to.shadow()) {
                let count = words(to_offset, bytes).len();
                to.copy_from(to_offset / 4, from, from_offset / 4, count);
            }
        }
        // SAFETY: as for `upload`; registry copies never overlap (distinct allocations).
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError> {
        self.check_context()?;
        if self.checked {
            let op = (BackendOp::DeviceCopy, "fill");
            let (region, offset) = self.checked_range(op, dst, count * 4, Access::Write)?;
            if let Some(shadow) = region.shadow() {
                shadow.set_range(words(offset, count * 4));
            }
        }
        let p = dst as *mut u32;
        for i in 0..count {
            // SAFETY: as for `upload`.
            unsafe { p.add(i).write(value) };
        }
        Ok(())
    }

    fn launch(&mut self, launch: &Launch) -> Result<f64, BackendError> {
        self.check_context()?;
        let t = self.threads;
        let start = Instant::now();
        if self.checked {
            let check = LaunchCheck::new(launch.kernel_name(), &self.regions);
            check
                .run(|cx| run_kernel(launch, cx, t))
                .map_err(|v| BackendError::from_violation(BackendOp::Launch, v))?;
        } else {
            run_kernel(launch, &Cx::UNCHECKED, t);
        }
        Ok(start.elapsed().as_secs_f64())
    }

    fn synchronize(&mut self) -> Result<(), BackendError> {
        self.check_context()
    }

    fn bytes_allocated(&self) -> usize {
        self.bytes
    }

    fn lose_context(&mut self) -> BackendError {
        let mut e = BackendError::new(BackendOp::Launch, "context lost (injected)");
        e.sticky = true;
        self.lost = Some(e.clone());
        e
    }

    fn reset(&mut self) -> Result<(), BackendError> {
        self.regions.clear();
        self.bytes = 0;
        self.lost = None;
        Ok(())
    }
}

/// Runs one kernel with accessors from `cx`.
fn run_kernel<const C: bool>(launch: &Launch, cx: &Cx<'_, C>, t: usize) {
    match launch {
        Launch::BoundsReduce(a) => kernels::bounds_reduce(a, cx),
        Launch::GridParams(a) => kernels::grid_params(a, cx),
        Launch::BuildGrid(a) => kernels::build_grid(a, cx, t),
        Launch::SortPairs(a) => kernels::sort_pairs(a, cx),
        Launch::GatherPositions(a) => kernels::gather_positions(a, cx, t),
        Launch::CellBounds(a) => kernels::cell_bounds(a, cx, t),
        Launch::ForcePass(a) => kernels::force_pass(a, cx, t),
        Launch::Integrate(a) => kernels::integrate(a, cx, t),
        Launch::SsspRelax(a) => kernels::sssp_relax(a, cx),
        Launch::FrontierCompact(a) => kernels::frontier_compact(a, cx),
    }
}

/// The shadow words a byte range covers.
fn words(offset: usize, bytes: usize) -> std::ops::Range<usize> {
    offset / 4..(offset + bytes).div_ceil(4)
}
