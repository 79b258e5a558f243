/*!
A [`Backend`] wrapper that reports each kernel launch before it happens, and its end.

Workers use it to write the current kernel into their breadcrumbs, so that when a kernel kills the
process the driver knows which one. The engine knows nothing of this: the wrapper sits between the
engine and the real backend.
*/

use forcefield::backend::{Backend, DeviceAlloc, Launch};
use forcefield::{BackendError, BufferName};

/// Calls a hook with the kernel name before every launch and with `""` after it returns, then
/// delegates.
pub struct TracedBackend<F: FnMut(&'static str) + Send> {
    inner: Box<dyn Backend>,
    on_launch: F,
}

impl<F: FnMut(&'static str) + Send> TracedBackend<F> {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Backend>, on_launch: F) -> Self {
        TracedBackend { inner, on_launch }
    }
}

impl<F: FnMut(&'static str) + Send> Backend for TracedBackend<F> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn device_description(&self) -> String {
        self.inner.device_description()
    }
    fn alloc(&mut self, buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError> {
        self.inner.alloc(buffer, bytes)
    }
    fn free(&mut self, alloc: DeviceAlloc) {
        self.inner.free(alloc)
    }
    fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), BackendError> {
        self.inner.upload(dst, src)
    }
    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError> {
        self.inner.download(src, dst)
    }
    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError> {
        self.inner.copy(dst, src, bytes)
    }
    fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError> {
        self.inner.fill_u32(dst, count, value)
    }
    fn launch(&mut self, launch: &Launch) -> Result<f64, BackendError> {
        (self.on_launch)(launch.kernel_name());
        let result = self.inner.launch(launch);
        // Out of the kernel again: a death from here on belongs to the operation (the kernel log, a
        // copy), not to the kernel that just returned.
        (self.on_launch)("");
        result
    }
    fn synchronize(&mut self) -> Result<(), BackendError> {
        self.inner.synchronize()
    }
    fn bytes_allocated(&self) -> usize {
        self.inner.bytes_allocated()
    }
    fn lose_context(&mut self) -> BackendError {
        self.inner.lose_context()
    }
    fn reset(&mut self) -> Result<(), BackendError> {
        self.inner.reset()
    }
    fn set_faults(&mut self, faults: forcefield::FaultSet) {
        self.inner.set_faults(faults)
    }
}
