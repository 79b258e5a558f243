/*!
The CUDA backend: device memory and the kernels of the `.cu` files in `kernels/` through the CUDA driver API.

The driver and NVRTC are loaded at run time (`cudarc` with dynamic loading), so the crate builds and
its tests run on machines without CUDA; [`CudaBackend::is_available`] says whether this one has a
usable device, and [`CudaBackend::new`] fails with an error (never a panic) when it has not.

Each backend owns a context of its own, one stream and the module compiled from the embedded kernel
sources (NVRTC, `-lineinfo`, no fused multiply-add; PTX cached per option set for the process).
Device memory is raw driver allocations whose addresses are the `u64`s of the [`Backend`] trait.
All work is queued on the stream; [`Backend::launch`] brackets a kernel's launches with CUDA events
and waits for the second, so it returns the kernel's device time and any fault surfaces at the
launch that caused it.

Every driver failure becomes a [`BackendError`] whose `sticky` flag says whether the context is
lost; after a sticky error the backend answers every call with that error without touching the
device again. A sticky error is process-wide (CUDA's own rule: later contexts of the process fail
the same way), so continuing after one takes a new process.
*/

mod compile;
mod driver;
mod launch;

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::OnceLock;

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::sys;

use crate::backend::{Backend, DeviceAlloc, Launch};
use crate::buffer::BufferName;
use crate::error::{BackendError, BackendOp};
use driver::{backend_error, guarded, Context};
use launch::{Kernels, Queue, ScratchSet};

/// The CUDA backend.
#[derive(Debug)]
pub struct CudaBackend {
    stream: sys::CUstream,
    module: sys::CUmodule,
    kernels: Kernels,
    start: sys::CUevent,
    stop: sys::CUevent,
    /// Live allocations: address to the size the caller asked for.
    allocs: HashMap<u64, usize>,
    bytes: usize,
    scratch: ScratchSet,
    description: String,
    /// The sticky error that lost the context, if any.
    lost: Option<BackendError>,
    /// Destroyed last (see `Drop`): destroying the context frees whatever is left.
    context: Context,
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

    /// A backend on device `ordinal`: a new context, a stream, and the kernels compiled (or taken
    /// from the process cache) and loaded. Fails with [`BackendOp::Init`] when the libraries or the
    /// device are missing or the kernels do not compile (the message holds the compiler log).
    pub fn new(ordinal: usize) -> Result<Self, BackendError> {
        driver::init_driver()?;
        guarded("creating the CUDA backend", || Self::create(ordinal))
    }

    fn create(ordinal: usize) -> Result<Self, BackendError> {
        let init = |e: DriverError| backend_error(BackendOp::Init, None, e);
        let context = Context::create(ordinal)?;
        context.bind().map_err(init)?;
        let (major, minor) = context.compute_capability().map_err(init)?;
        let ptx = compile::compiled_ptx(&compile::default_options((major, minor)))?;
        // Handles are created one by one; on failure, those made so far are released by the
        // context's destruction when `context` drops.
        // SAFETY: the PTX is NUL-terminated and outlives the call.
        let module =
            unsafe { result::module::load_data(ptx.as_ptr() as *const c_void) }.map_err(init)?;
        let kernels = Kernels::load(module).map_err(init)?;
        let stream =
            result::stream::create(result::stream::StreamKind::NonBlocking).map_err(init)?;
        let start = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(init)?;
        let stop = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(init)?;
        let name = result::device::get_name(context.device()).unwrap_or_default();
        // SAFETY: the device came from cuDeviceGet.
        let memory = unsafe { result::device::total_mem(context.device()) }.unwrap_or(0);
        let description = format!(
            "cuda device {ordinal}: {name} (sm_{major}{minor}, {:.1} GiB, CUDA driver {})",
            memory as f64 / (1u64 << 30) as f64,
            driver::driver_version().unwrap_or_else(|| "?".to_string()),
        );
        Ok(CudaBackend {
            stream,
            module,
            kernels,
            start,
            stop,
            allocs: HashMap::new(),
            bytes: 0,
            scratch: ScratchSet::default(),
            description,
            lost: None,
            context,
        })
    }

    /// Bytes of the backend's own scratch memory (sort histograms and ping-pong buffers, frontier
    /// tile counts), which [`Backend::bytes_allocated`] leaves out: that counts the engine's buffers.
    pub fn scratch_bytes(&self) -> usize {
        self.scratch.bytes()
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
        }
        err
    }

    fn sync_stream(&self) -> Result<(), DriverError> {
        // SAFETY: the stream is alive until drop.
        unsafe { result::stream::synchronize(self.stream) }
    }

    fn timed_launch(&mut self, launch: &Launch) -> Result<f64, DriverError> {
        // SAFETY: events and stream are alive until drop.
        unsafe { result::event::record(self.start, self.stream) }?;
        let mut queue = Queue {
            stream: self.stream,
            kernels: &self.kernels,
            scratch: &mut self.scratch,
        };
        queue.enqueue(launch)?;
        // SAFETY: as above.
        unsafe {
            result::event::record(self.stop, self.stream)?;
            result::event::synchronize(self.stop)?;
            let ms = result::event::elapsed(self.start, self.stop)?;
            Ok(ms as f64 * 1e-3)
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

    fn alloc(&mut self, _buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError> {
        self.ready(BackendOp::Alloc)?;
        // A zero-byte request still gets a distinct, valid address.
        // SAFETY: a plain device allocation in the current context.
        let addr = unsafe { result::malloc_sync(bytes.max(4)) }
            .map_err(|e| self.fail(BackendOp::Alloc, None, e))?;
        self.allocs.insert(addr, bytes);
        self.bytes += bytes;
        Ok(DeviceAlloc { addr, bytes })
    }

    fn free(&mut self, alloc: DeviceAlloc) {
        let Some(bytes) = self.allocs.remove(&alloc.addr) else {
            return;
        };
        self.bytes -= bytes;
        // After a lost context the memory goes with the context when the backend drops.
        if self.ready(BackendOp::DeviceCopy).is_err() {
            return;
        }
        // Queued copies may still read the allocation (a resize copies, then frees the old one).
        if let Err(e) = self.sync_stream() {
            self.fail(BackendOp::Synchronize, None, e);
            return;
        }
        // SAFETY: allocated by `alloc`, removed from the map, so freed once.
        if let Err(e) = unsafe { result::free_sync(alloc.addr) } {
            self.fail(BackendOp::DeviceCopy, None, e);
        }
    }

    fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), BackendError> {
        self.ready(BackendOp::Upload)?;
        // SAFETY: like the CPU backend's upload, the caller names a device range; the stream is
        // synchronized before `src` is released.
        let r = unsafe { result::memcpy_htod_async(dst, src, self.stream) }
            .and_then(|()| self.sync_stream());
        r.map_err(|e| self.fail(BackendOp::Upload, None, e))
    }

    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError> {
        self.ready(BackendOp::Download)?;
        // SAFETY: as for `upload`; `dst` is filled when the stream synchronizes.
        let r = unsafe { result::memcpy_dtoh_async(dst, src, self.stream) }
            .and_then(|()| self.sync_stream());
        r.map_err(|e| self.fail(BackendOp::Download, None, e))
    }

    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError> {
        self.ready(BackendOp::DeviceCopy)?;
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: as for `upload`.
        unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream) }
            .map_err(|e| self.fail(BackendOp::DeviceCopy, None, e))
    }

    fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError> {
        self.ready(BackendOp::DeviceCopy)?;
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
        self.timed_launch(launch)
            .map_err(|e| self.fail(BackendOp::Launch, Some(kernel), e))
    }

    fn synchronize(&mut self) -> Result<(), BackendError> {
        self.ready(BackendOp::Synchronize)?;
        self.sync_stream()
            .map_err(|e| self.fail(BackendOp::Synchronize, None, e))
    }

    fn bytes_allocated(&self) -> usize {
        self.bytes
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        // Errors are ignored: a lost context fails these calls, and destroying the context (when
        // `self.context` drops after this) releases everything anyway.
        if self.context.bind().is_err() {
            return;
        }
        if self.lost.is_none() {
            let _ = self.sync_stream();
            self.scratch.release();
            for (&addr, _) in self.allocs.iter() {
                // SAFETY: allocated by `alloc` and not yet freed.
                let _ = unsafe { result::free_sync(addr) };
            }
        }
        // SAFETY: each handle was created in `create` and is destroyed once, here.
        unsafe {
            let _ = result::event::destroy(self.start);
            let _ = result::event::destroy(self.stop);
            let _ = result::stream::destroy(self.stream);
            let _ = result::module::unload(self.module);
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
