/*!
The CPU backend: emulated device memory in guarded `mmap` regions, and the Rust kernels.

Device addresses are real process addresses, so a kernel that indexes past a buffer faults exactly as
a GPU kernel would on the original server: SIGSEGV. Kernel durations are wall-clock times.
*/

pub mod access;
pub mod kernels;
pub mod memory;

use std::collections::HashMap;
use std::time::Instant;

use crate::backend::{Backend, DeviceAlloc, Launch};
use crate::buffer::BufferName;
use crate::error::{BackendError, BackendOp};
use memory::GuardedRegion;

/// The CPU backend.
#[derive(Debug)]
pub struct CpuBackend {
    regions: HashMap<u64, GuardedRegion>,
    bytes: usize,
    threads: usize,
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
            regions: HashMap::new(),
            bytes: 0,
            threads: threads.max(1),
        }
    }

    /// Threads used by data-parallel kernels.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_description(&self) -> String {
        format!("cpu ({} threads, guarded mmap memory)", self.threads)
    }

    fn alloc(&mut self, _buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError> {
        let region = GuardedRegion::new(bytes).map_err(|e| {
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
        // SAFETY: like cuMemcpyHtoD, the caller names a device range; a wrong one faults.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError> {
        // SAFETY: as for `upload`.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError> {
        // SAFETY: as for `upload`; registry copies never overlap (distinct allocations).
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError> {
        let p = dst as *mut u32;
        for i in 0..count {
            // SAFETY: as for `upload`.
            unsafe { p.add(i).write(value) };
        }
        Ok(())
    }

    fn launch(&mut self, launch: &Launch) -> Result<f64, BackendError> {
        let t = self.threads;
        let start = Instant::now();
        match launch {
            Launch::BoundsReduce(a) => kernels::bounds_reduce(a),
            Launch::BuildGrid(a) => kernels::build_grid(a, t),
            Launch::SortPairs(a) => kernels::sort_pairs(a),
            Launch::GatherPositions(a) => kernels::gather_positions(a, t),
            Launch::CellBounds(a) => kernels::cell_bounds(a, t),
            Launch::ForcePass(a) => kernels::force_pass(a, t),
            Launch::Integrate(a) => kernels::integrate(a, t),
            Launch::SsspRelax(a) => kernels::sssp_relax(a),
            Launch::FrontierCompact(a) => kernels::frontier_compact(a),
        }
        Ok(start.elapsed().as_secs_f64())
    }

    fn synchronize(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    fn bytes_allocated(&self) -> usize {
        self.bytes
    }
}
