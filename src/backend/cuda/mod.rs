/*!
The CUDA backend: device memory and the kernels of the `.cu` files in `kernels/` through the CUDA driver API.

The driver and NVRTC are loaded at run time (`cudarc` with dynamic loading), so the crate builds and
its tests run on machines without CUDA; [`CudaBackend::is_available`] says whether this one has a
usable device, and [`CudaBackend::new`] fails with an error (never a panic) when it has not.

The backends of a process share one context per device (creating one costs 110–180 ms, and engines
that run at once overlap on the device only within one context; see `driver.rs`); each backend has
its own stream, events and allocations, and leases a module compiled from the embedded kernel
sources (NVRTC, `-lineinfo`, no fused multiply-add; PTX cached per option set, on disk too), loaded
once per process and concurrent user and given back when the backend drops clean.
Device memory is raw driver allocations whose addresses are the `u64`s of the [`Backend`] trait,
stream-ordered on the backend's stream (`cuMemAllocAsync`/`cuMemFreeAsync`, the device's default
pool keeping freed memory), so that no engine's resize waits for the other engines of the process.
All work is queued on the stream; [`Backend::launch`] brackets a kernel's launches with CUDA events
and waits for the second, so it returns the kernel's device time and any fault surfaces at the
launch that caused it.

Every driver failure becomes a [`BackendError`] whose `sticky` flag says whether the context is
lost; after a sticky error the backend answers every call with that error without touching the
device again. A sticky error is process-wide (CUDA's own rule: later contexts of the process fail
the same way), so continuing after one takes a new process.

The checked mode ([`CudaBackend::with_checked`]) is the CUDA twin of the CPU backend's: the kernels
are compiled with bounds checks that record an invalid access instead of making it, every
allocation has red zones verified after each launch, fresh memory is poisoned, and host operations
are checked against their allocation (see `checked.rs`). What it finds comes back as a non-sticky
[`BackendError`] carrying the same [`crate::sanitize::MemoryViolation`] the CPU reports.
*/

mod checked;
mod compile;
mod driver;
mod launch;

use std::sync::{Arc, OnceLock};

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::sys;

use crate::backend::{Backend, DeviceAlloc, Launch};
use crate::buffer_name::BufferName;
use crate::error::{BackendError, BackendOp};
use crate::sanitize::Access;
use checked::{Allocation, Allocations, CheckedDevice, Record, SpanTable, RED_ZONE};
use driver::{backend_error, guarded, Context, Module};
use launch::{Kernels, Queue, ScratchSet};

/// The CUDA backend.
#[derive(Debug)]
pub struct CudaBackend {
    stream: sys::CUstream,
    /// Leased from the context; `None` only while dropping.
    module: Option<Module>,
    /// The options `module` was compiled with, to give it back under them.
    options: Vec<String>,
    kernels: Kernels,
    start: sys::CUevent,
    stop: sys::CUevent,
    /// Live allocations by the address given out.
    allocs: Allocations,
    bytes: usize,
    scratch: ScratchSet,
    description: String,
    /// The sticky error that lost the context, if any.
    lost: Option<BackendError>,
    /// The device, for [`Backend::reset`].
    ordinal: usize,
    /// Planted `race-integrate`: the force pass is not waited for and integrate runs on
    /// `side_stream`, with no dependency between the two.
    race_integrate: bool,
    side_stream: Option<sys::CUstream>,
    /// The checked mode's device state; `None` in the default mode.
    checked: Option<CheckedDevice>,
    /// Whether each launch is bracketed by events and waited for (see
    /// [`Backend::set_kernel_timing`]).
    timing: bool,
    /// Shared with the process's other backends on this device; destroyed with the last of them
    /// (see `Drop`), which frees whatever is left.
    context: Arc<Context>,
}

// SAFETY: the handles are owned by this value alone, and every method makes the context current on
// the calling thread before using them, so the backend may move to another thread between calls.
unsafe impl Send for CudaBackend {}

impl CudaBackend {
    /// Whether the CUDA driver and NVRTC load and at least one device is present (checked once).
    pub fn is_available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| driver::device_count() > 0 && driver::nvrtc_present())
    }

    /// Lets go of the process's shared contexts: each is destroyed (its idle modules unloaded) once
    /// the last backend holding it drops, at once when none does. A command calls it before the
    /// process exits, so that compute-sanitizer's leak and module-unload checks do not count the
    /// contexts kept for the process's lifetime; a backend made later opens a new one.
    pub fn release_shared_contexts() {
        driver::retire_shared();
    }

    /// How many CUDA devices this process sees (0 when the driver cannot be used), so that a
    /// command can refuse a device ordinal that does not exist before it starts any work.
    pub fn device_count() -> usize {
        driver::device_count()
    }

    /// A backend on device `ordinal`: a new context, a stream, and the kernels compiled (or taken
    /// from the process cache) and loaded. Fails with [`BackendOp::Init`] when the libraries or the
    /// device are missing or the kernels do not compile (the message holds the compiler log).
    pub fn new(ordinal: usize) -> Result<Self, BackendError> {
        Self::with_checked(ordinal, false)
    }

    /// A backend on device `ordinal`, in the checked mode when `checked` (see `checked.rs`): kernels
    /// compiled with `FF_CHECKED` (a second NVRTC build, cached like the first), red zones around
    /// and poison in every allocation, and every launch followed by the canary check and one
    /// read-back of what was found. Fails like [`CudaBackend::new`].
    pub fn with_checked(ordinal: usize, checked: bool) -> Result<Self, BackendError> {
        driver::init_driver()?;
        guarded("creating the CUDA backend", || {
            Self::create(ordinal, checked)
        })
    }

    fn create(ordinal: usize, checked: bool) -> Result<Self, BackendError> {
        let init = |e: DriverError| backend_error(BackendOp::Init, None, e);
        let context = Context::shared(ordinal)?;
        let (major, minor) = context.compute_capability().map_err(init)?;
        let options = if checked {
            compile::checked_options((major, minor))
        } else {
            compile::default_options((major, minor))
        };
        let ptx = compile::compiled_ptx(&options)?;
        // Handles are created one by one; on failure, those made so far are released with the
        // context (a module not given back is unloaded then).
        let module = context.lease_module(&options, &ptx).map_err(init)?;
        let kernels = Kernels::load(module.0).map_err(init)?;
        let checked = if checked {
            Some(CheckedDevice::load(module.0)?)
        } else {
            None
        };
        let stream =
            result::stream::create(result::stream::StreamKind::NonBlocking).map_err(init)?;
        let start = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(init)?;
        let stop = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(init)?;
        let name = result::device::get_name(context.device()).unwrap_or_default();
        // SAFETY: the device came from cuDeviceGet.
        let memory = unsafe { result::device::total_mem(context.device()) }.unwrap_or(0);
        let description = format!(
            "cuda device {ordinal}: {name} (sm_{major}{minor}, {:.1} GiB, CUDA driver {}{})",
            memory as f64 / (1u64 << 30) as f64,
            driver::driver_version().unwrap_or_else(|| "?".to_string()),
            if checked.is_some() { ", checked" } else { "" },
        );
        Ok(CudaBackend {
            stream,
            module: Some(module),
            options,
            kernels,
            start,
            stop,
            allocs: Allocations::new(),
            bytes: 0,
            scratch: ScratchSet::default(),
            description,
            lost: None,
            ordinal,
            race_integrate: false,
            side_stream: None,
            checked,
            timing: true,
            context,
        })
    }

    /// Whether the checked mode is on.
    pub fn is_checked(&self) -> bool {
        self.checked.is_some()
    }

    /// Bytes of the backend's own scratch memory (sort histograms and ping-pong buffers, frontier
    /// tile counts, the checked mode's zone table), which [`Backend::bytes_allocated`] leaves out:
    /// that counts the engine's buffers (red zones not included).
    pub fn scratch_bytes(&self) -> usize {
        self.scratch.bytes() + self.checked.as_ref().map_or(0, CheckedDevice::bytes)
    }

    /// Writes `bytes` into device memory at `addr` with no check of any kind, as a kernel with a
    /// wild pointer would. For tests of the checked mode's red zones, which only such a write can
    /// reach: everything else the backend does is checked before it is made.
    #[doc(hidden)]
    pub fn write_unchecked(&mut self, addr: u64, bytes: &[u8]) -> Result<(), BackendError> {
        self.ready(BackendOp::Upload)?;
        // SAFETY: none, deliberately: the caller chose the address (see above); the stream is
        // synchronized before `bytes` is released.
        let r = unsafe { result::memcpy_htod_async(addr, bytes, self.stream) }
            .and_then(|()| self.sync_stream());
        r.map_err(|e| self.fail(BackendOp::Upload, None, e))
    }

    /// Checked mode: fails unless `[addr, addr + bytes)` lies inside one live allocation.
    fn check_range(
        &self,
        op: (BackendOp, &'static str),
        addr: u64,
        bytes: usize,
        access: Access,
    ) -> Result<(), BackendError> {
        match self.checked {
            Some(_) => checked::check_range(&self.allocs, op, addr, bytes, access),
            None => Ok(()),
        }
    }

    /// Checked mode: the canaries of a fresh allocation's red zones and the poison of its bytes.
    fn paint(&self, raw: u64, padded: usize) -> Result<(), DriverError> {
        let zone_words = RED_ZONE / 4;
        let addr = raw + RED_ZONE as u64;
        let fill = |dst: u64, value: u32, count: usize| {
            // SAFETY: inside the allocation of `padded + 2 * RED_ZONE` bytes at `raw`.
            unsafe { sys::cuMemsetD32Async(dst, value, count, self.stream) }.result()
        };
        fill(raw, checked::CANARY, zone_words)?;
        if padded > 0 {
            fill(addr, checked::POISON, padded / 4)?;
        }
        fill(addr + padded as u64, checked::CANARY, zone_words)
    }

    /// The sticky error that lost this backend's context, if any.
    pub fn lost_context(&self) -> Option<&BackendError> {
        self.lost.as_ref()
    }

    /// Refuses work after a sticky error; otherwise binds the context to this thread.
    fn ready(&mut self, op: BackendOp) -> Result<(), BackendError> {
        if let Some(e) = &self.lost {
            return Err(e.clone());
        }
        self.context.bind().map_err(|e| self.fail(op, None, e))
    }

    /// The error of a failed call, remembering it when it lost the context.
    fn fail(
        &mut self,
        op: BackendOp,
        kernel: Option<&'static str>,
        e: DriverError,
    ) -> BackendError {
        let err = backend_error(op, kernel, e);
        if err.sticky && self.lost.is_none() {
            self.lost = Some(err.clone());
            driver::retire_shared();
        }
        err
    }

    fn sync_stream(&self) -> Result<(), DriverError> {
        // SAFETY: the stream is alive until drop.
        unsafe { result::stream::synchronize(self.stream) }
    }

    /// Planted `race-integrate`: the force pass is queued and not waited for; integrate goes to a
    /// second stream that does not wait for it. (Correct code runs both on one stream, in order.)
    ///
    /// Checked mode: the force pass's table is uploaded and its findings are read after integrate,
    /// both reported as integrate's; integrate keeps the force pass's table (rewriting it while the
    /// force pass may still read it could tear an entry), so its own buffers that the force pass
    /// does not have go unchecked.
    fn racy_launch(
        &mut self,
        launch: &Launch,
        table: Option<&SpanTable>,
    ) -> Result<Option<(f64, Option<Record>)>, DriverError> {
        let stream = match launch {
            Launch::ForcePass(_) => self.stream,
            Launch::Integrate(_) => match self.side_stream {
                Some(s) => s,
                None => {
                    let s = result::stream::create(result::stream::StreamKind::NonBlocking)?;
                    self.side_stream = Some(s);
                    s
                }
            },
            _ => return Ok(None),
        };
        if let (Some(checked), Some(table), Launch::ForcePass(_)) =
            (self.checked.as_mut(), table, launch)
        {
            checked.prepare(table, &self.allocs, stream)?;
        }
        let mut queue = Queue {
            stream,
            kernels: &self.kernels,
            scratch: &mut self.scratch,
        };
        queue.enqueue(launch)?;
        let mut record = None;
        if matches!(launch, Launch::Integrate(_)) {
            // SAFETY: both streams are alive until drop.
            unsafe { result::stream::synchronize(stream) }?;
            self.sync_stream()?;
            if let Some(checked) = self.checked.as_mut() {
                record = Some(checked.verify_and_read(&self.allocs, self.stream)?);
            }
        }
        Ok(Some((0.0, record)))
    }

    /// Queues `launch` between the two events and waits for it; returns its device time and, in the
    /// checked mode, what the launch's checks found (its table is uploaded first, the red zones
    /// are verified after the closing event, so the time is the kernels' own).
    fn timed_launch(
        &mut self,
        launch: &Launch,
        table: Option<&SpanTable>,
    ) -> Result<(f64, Option<Record>), DriverError> {
        if self.race_integrate {
            if let Some(done) = self.racy_launch(launch, table)? {
                return Ok(done);
            }
        }
        if let (Some(checked), Some(table)) = (self.checked.as_mut(), table) {
            checked.prepare(table, &self.allocs, self.stream)?;
        }
        // SAFETY: events and stream are alive until drop.
        unsafe { result::event::record(self.start, self.stream) }?;
        let mut queue = Queue {
            stream: self.stream,
            kernels: &self.kernels,
            scratch: &mut self.scratch,
        };
        queue.enqueue(launch)?;
        // SAFETY: as above.
        unsafe { result::event::record(self.stop, self.stream) }?;
        let record = match self.checked.as_mut() {
            Some(checked) => Some(checked.verify_and_read(&self.allocs, self.stream)?),
            None => None,
        };
        // SAFETY: as above.
        unsafe {
            result::event::synchronize(self.stop)?;
            let ms = result::event::elapsed(self.start, self.stop)?;
            Ok((ms as f64 * 1e-3, record))
        }
    }

    /// Checked mode: the launch's span table, or the violation of a copy or fill the backend would
    /// queue for it past a buffer (checked before anything runs).
    fn checked_table(&self, launch: &Launch) -> Result<Option<SpanTable>, BackendError> {
        if self.checked.is_none() {
            return Ok(None);
        }
        let table = SpanTable::build(&launch.spans(), &self.allocs);
        let transfers = launch::queued_transfers(launch);
        match table.check_transfers(launch.kernel_name(), &transfers) {
            Some(v) => Err(BackendError::from_violation(BackendOp::Launch, v)),
            None => Ok(Some(table)),
        }
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_description(&self) -> String {
        self.description.clone()
    }

    fn alloc(&mut self, buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError> {
        self.ready(BackendOp::Alloc)?;
        // Checked: zone, buffer (4-byte aligned), zone. A zero-byte request still gets a distinct,
        // valid address.
        let padded = bytes.div_ceil(4) * 4;
        let (raw_bytes, offset) = match self.checked {
            Some(_) => (padded + 2 * RED_ZONE, RED_ZONE as u64),
            None => (bytes.max(4), 0),
        };
        // SAFETY: a stream-ordered allocation on the backend's live stream (every use of the
        // memory is queued on that stream or follows a synchronization of it); see
        // `driver::keep_freed_memory` for why not `cuMemAlloc`.
        let raw = unsafe { result::malloc_async(self.stream, raw_bytes) }
            .map_err(|e| self.fail(BackendOp::Alloc, None, e))?;
        if self.checked.is_some() {
            if let Err(e) = self.paint(raw, padded) {
                let err = self.fail(BackendOp::Alloc, None, e);
                // SAFETY: allocated above and not given out.
                let _ = unsafe { result::free_async(raw, self.stream) };
                return Err(err);
            }
        }
        let addr = raw + offset;
        self.allocs.insert(addr, Allocation { raw, bytes, buffer });
        if let Some(checked) = self.checked.as_mut() {
            checked.mark_dirty();
        }
        self.bytes += bytes;
        Ok(DeviceAlloc { addr, bytes })
    }

    fn free(&mut self, alloc: DeviceAlloc) {
        let Some(Allocation { raw, bytes, .. }) = self.allocs.remove(&alloc.addr) else {
            return;
        };
        if let Some(checked) = self.checked.as_mut() {
            checked.mark_dirty();
        }
        self.bytes -= bytes;
        // After a lost context the memory goes with the context when the backend drops.
        if self.ready(BackendOp::DeviceCopy).is_err() {
            return;
        }
        // Ordered after the work queued on the stream, which may still read the allocation (a
        // resize copies, then frees the old one): no wait, for this engine or any other.
        // SAFETY: allocated by `alloc` on this stream, removed from the map, so freed once.
        if let Err(e) = unsafe { result::free_async(raw, self.stream) } {
            self.fail(BackendOp::DeviceCopy, None, e);
        }
    }

    fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), BackendError> {
        self.ready(BackendOp::Upload)?;
        self.check_range((BackendOp::Upload, "upload"), dst, src.len(), Access::Write)?;
        // SAFETY: like the CPU backend's upload, the caller names a device range; the stream is
        // synchronized before `src` is released.
        let r = unsafe { result::memcpy_htod_async(dst, src, self.stream) }
            .and_then(|()| self.sync_stream());
        r.map_err(|e| self.fail(BackendOp::Upload, None, e))
    }

    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError> {
        self.ready(BackendOp::Download)?;
        self.check_range(
            (BackendOp::Download, "download"),
            src,
            dst.len(),
            Access::Read,
        )?;
        // SAFETY: as for `upload`; `dst` is filled when the stream synchronizes.
        let r = unsafe { result::memcpy_dtoh_async(dst, src, self.stream) }
            .and_then(|()| self.sync_stream());
        r.map_err(|e| self.fail(BackendOp::Download, None, e))
    }

    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError> {
        self.ready(BackendOp::DeviceCopy)?;
        let op = (BackendOp::DeviceCopy, "copy");
        self.check_range(op, src, bytes, Access::Read)?;
        self.check_range(op, dst, bytes, Access::Write)?;
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: as for `upload`.
        unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream) }
            .map_err(|e| self.fail(BackendOp::DeviceCopy, None, e))
    }

    fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError> {
        self.ready(BackendOp::DeviceCopy)?;
        self.check_range(
            (BackendOp::DeviceCopy, "fill"),
            dst,
            count * 4,
            Access::Write,
        )?;
        if count == 0 {
            return Ok(());
        }
        // SAFETY: as for `upload`.
        unsafe { sys::cuMemsetD32Async(dst, value, count, self.stream) }
            .result()
            .map_err(|e| self.fail(BackendOp::DeviceCopy, None, e))
    }

    fn launch(&mut self, launch: &Launch) -> Result<f64, BackendError> {
        let kernel = launch.kernel_name();
        if let Some(e) = &self.lost {
            return Err(e.clone());
        }
        self.context
            .bind()
            .map_err(|e| self.fail(BackendOp::Launch, Some(kernel), e))?;
        if !self.timing && self.checked.is_none() && !self.race_integrate {
            // Queued, not waited for: an error of the kernel surfaces at the next synchronize
            // or download, which the engine makes before an operation completes.
            let mut queue = Queue {
                stream: self.stream,
                kernels: &self.kernels,
                scratch: &mut self.scratch,
            };
            return queue
                .enqueue(launch)
                .map(|()| 0.0)
                .map_err(|e| self.fail(BackendOp::Launch, Some(kernel), e));
        }
        let table = self.checked_table(launch)?;
        let (seconds, record) = self
            .timed_launch(launch, table.as_ref())
            .map_err(|e| self.fail(BackendOp::Launch, Some(kernel), e))?;
        if let (Some(record), Some(table), Some(checked)) = (record, &table, &self.checked) {
            if let Some(finding) = record.finding(kernel, table, checked.zones()) {
                checked
                    .clear_record(self.stream)
                    .map_err(|e| self.fail(BackendOp::Launch, Some(kernel), e))?;
                return Err(finding);
            }
        }
        Ok(seconds)
    }

    fn synchronize(&mut self) -> Result<(), BackendError> {
        self.ready(BackendOp::Synchronize)?;
        self.sync_stream()
            .map_err(|e| self.fail(BackendOp::Synchronize, None, e))
    }

    fn bytes_allocated(&self) -> usize {
        self.bytes
    }

    fn lose_context(&mut self) -> BackendError {
        if let Err(e) = self.ready(BackendOp::Launch) {
            return e;
        }
        let mut queue = Queue {
            stream: self.stream,
            kernels: &self.kernels,
            scratch: &mut self.scratch,
        };
        let r = queue.lose_context().and_then(|()| self.sync_stream());
        match r {
            Err(e) => self.fail(BackendOp::Launch, Some("lose_context"), e),
            // A trap that did not lose the context would be a driver we do not understand; say so
            // rather than pretend.
            Ok(()) => BackendError::new(
                BackendOp::Launch,
                "lose_context: __trap() returned without an error",
            ),
        }
    }

    fn reset(&mut self) -> Result<(), BackendError> {
        // The new backend is made first: on the shared context when this one's was not lost, else
        // on a new context (a lost one was retired by `fail`). Then the old one drops.
        let checked = self.checked.is_some();
        let fresh = guarded("resetting the CUDA backend", || {
            Self::create(self.ordinal, checked)
        })?;
        // Dropping the old backend frees its memory, or, when its context was lost, lets go of
        // that context, destroyed with everything in it once no backend holds it.
        let timing = self.timing;
        drop(std::mem::replace(self, fresh));
        self.timing = timing;
        Ok(())
    }

    fn set_faults(&mut self, faults: crate::faults::FaultSet) {
        self.race_integrate = faults.contains(crate::faults::Fault::RaceIntegrate);
    }

    fn set_kernel_timing(&mut self, on: bool) {
        self.timing = on;
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        // Errors are ignored: a lost context fails these calls, and destroying the context (when its
        // last backend drops) releases everything anyway.
        if self.context.bind().is_err() {
            return;
        }
        let mut clean = false;
        if self.lost.is_none() {
            self.scratch.release();
            if let Some(checked) = self.checked.as_mut() {
                checked.release();
            }
            let mut freed = true;
            for a in self.allocs.values() {
                // SAFETY: allocated by `alloc` on this stream and not yet freed.
                freed &= unsafe { result::free_async(a.raw, self.stream) }.is_ok();
            }
            // The frees, like everything else, run before the stream goes.
            let synced = self.sync_stream().is_ok();
            clean = synced && freed;
        }
        // SAFETY: each handle was created in `create` and is destroyed once, here.
        unsafe {
            let _ = result::event::destroy(self.start);
            let _ = result::event::destroy(self.stop);
            let _ = result::stream::destroy(self.stream);
            if let Some(s) = self.side_stream {
                let _ = result::stream::destroy(s);
            }
        }
        // A module whose backend ended clean serves the next backend; otherwise it stays loaded
        // until the context goes (its globals may hold a half-done launch's state).
        if let Some(module) = self.module.take().filter(|_| clean) {
            self.context
                .give_back_module(std::mem::take(&mut self.options), module);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_codes_are_the_context_losing_ones() {
        for code in [700, 714, 715, 716, 719, 710] {
            assert!(driver::is_sticky_code(code), "{code}");
        }
        // Out of memory, invalid value, launch out of resources: the context survives.
        for code in [2, 1, 701, 999] {
            assert!(!driver::is_sticky_code(code), "{code}");
        }
    }

    #[test]
    fn without_a_device_new_fails_cleanly() {
        if CudaBackend::is_available() {
            return;
        }
        let e = CudaBackend::new(0).unwrap_err();
        assert_eq!(e.op, BackendOp::Init);
        assert!(!e.sticky);
        assert!(!e.message.is_empty());
    }
}
