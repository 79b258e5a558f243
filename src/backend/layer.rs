/*!
Wrappers around a backend, written once: [`Layered`] passes every [`Backend`] call through a
[`Layer`], which changes only the calls it is about.

The engine always holds its backend inside the fault injector, the harness adds a layer that writes
the running kernel into its breadcrumbs and one that records sanitizer violations, the benches one
that counts instructions per kernel or times kernels in CPU time. Written as full `Backend`
implementations, each of these repeated every method as a forwarding line, and each new method
of the trait had to be forwarded in all of them — a wrapper that forgot one (say
`set_kernel_timing`) silently changed what the backend under it did. Here the forwarding is written
once, in `Layered`; a layer overrides the methods it watches or alters, and the rest pass through.

```
use forcefield::backend::layer::{Layer, Layered};
use forcefield::backend::{Backend, Launch};
use forcefield::{BackendError, BufferName, CpuBackend};

/// Counts launches.
#[derive(Default)]
struct Launches(usize);

impl Layer for Launches {
    fn launch(&mut self, inner: &mut dyn Backend, launch: &Launch) -> Result<f64, BackendError> {
        self.0 += 1;
        inner.launch(launch)
    }
}

let mut backend = Layered::new(CpuBackend::with_threads(1), Launches::default());
let a = backend.alloc(BufferName::Mass, 16).unwrap(); // passed through
assert_eq!(backend.bytes_allocated(), 16);
assert_eq!(backend.layer().0, 0);
backend.free(a);
```
*/

use crate::backend::{Backend, DeviceAlloc, Launch};
use crate::buffer_name::BufferName;
use crate::error::BackendError;
use crate::faults::FaultSet;

/// What a wrapper changes about a backend. Every method receives the wrapped backend and, unless
/// overridden, passes the call to it unchanged. Calls that cannot fail or only describe the backend
/// (`name`, `free`, `bytes_allocated`, `set_faults`, `set_kernel_timing`, ...) always pass through.
pub trait Layer: Send {
    /// [`Backend::alloc`].
    fn alloc(
        &mut self,
        inner: &mut dyn Backend,
        buffer: BufferName,
        bytes: usize,
    ) -> Result<DeviceAlloc, BackendError> {
        inner.alloc(buffer, bytes)
    }
    /// [`Backend::upload`].
    fn upload(
        &mut self,
        inner: &mut dyn Backend,
        dst: u64,
        src: &[u8],
    ) -> Result<(), BackendError> {
        inner.upload(dst, src)
    }
    /// [`Backend::download`].
    fn download(
        &mut self,
        inner: &mut dyn Backend,
        src: u64,
        dst: &mut [u8],
    ) -> Result<(), BackendError> {
        inner.download(src, dst)
    }
    /// [`Backend::copy`].
    fn copy(
        &mut self,
        inner: &mut dyn Backend,
        dst: u64,
        src: u64,
        bytes: usize,
    ) -> Result<(), BackendError> {
        inner.copy(dst, src, bytes)
    }
    /// [`Backend::fill_u32`].
    fn fill_u32(
        &mut self,
        inner: &mut dyn Backend,
        dst: u64,
        count: usize,
        value: u32,
    ) -> Result<(), BackendError> {
        inner.fill_u32(dst, count, value)
    }
    /// [`Backend::launch`].
    fn launch(&mut self, inner: &mut dyn Backend, launch: &Launch) -> Result<f64, BackendError> {
        inner.launch(launch)
    }
    /// [`Backend::synchronize`].
    fn synchronize(&mut self, inner: &mut dyn Backend) -> Result<(), BackendError> {
        inner.synchronize()
    }
    /// [`Backend::reset`].
    fn reset(&mut self, inner: &mut dyn Backend) -> Result<(), BackendError> {
        inner.reset()
    }
    /// Sees the error of every failed call (after the layer's own method returned it), including
    /// the error [`Backend::lose_context`] returns. For layers that record what fails.
    fn failed(&mut self, _error: &BackendError) {}
}

/// A backend `B` seen through the layer `L` (see the module documentation).
#[derive(Debug)]
pub struct Layered<B, L> {
    inner: B,
    layer: L,
}

impl<B: Backend, L: Layer> Layered<B, L> {
    /// `inner` seen through `layer`.
    pub fn new(inner: B, layer: L) -> Self {
        Layered { inner, layer }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The layer.
    pub fn layer(&self) -> &L {
        &self.layer
    }

    /// The layer, to change its settings.
    pub fn layer_mut(&mut self) -> &mut L {
        &mut self.layer
    }

    /// The result of a call, shown to the layer first when it failed.
    fn seen<T>(&mut self, result: Result<T, BackendError>) -> Result<T, BackendError> {
        if let Err(e) = &result {
            self.layer.failed(e);
        }
        result
    }
}

impl<B: Backend, L: Layer> Backend for Layered<B, L> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn device_description(&self) -> String {
        self.inner.device_description()
    }
    fn alloc(&mut self, buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError> {
        let r = self.layer.alloc(&mut self.inner, buffer, bytes);
        self.seen(r)
    }
    fn free(&mut self, alloc: DeviceAlloc) {
        self.inner.free(alloc)
    }
    fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), BackendError> {
        let r = self.layer.upload(&mut self.inner, dst, src);
        self.seen(r)
    }
    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError> {
        let r = self.layer.download(&mut self.inner, src, dst);
        self.seen(r)
    }
    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError> {
        let r = self.layer.copy(&mut self.inner, dst, src, bytes);
        self.seen(r)
    }
    fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError> {
        let r = self.layer.fill_u32(&mut self.inner, dst, count, value);
        self.seen(r)
    }
    fn launch(&mut self, launch: &Launch) -> Result<f64, BackendError> {
        let r = self.layer.launch(&mut self.inner, launch);
        self.seen(r)
    }
    fn synchronize(&mut self) -> Result<(), BackendError> {
        let r = self.layer.synchronize(&mut self.inner);
        self.seen(r)
    }
    fn bytes_allocated(&self) -> usize {
        self.inner.bytes_allocated()
    }
    fn lose_context(&mut self) -> BackendError {
        let e = self.inner.lose_context();
        self.layer.failed(&e);
        e
    }
    fn reset(&mut self) -> Result<(), BackendError> {
        let r = self.layer.reset(&mut self.inner);
        self.seen(r)
    }
    fn set_faults(&mut self, faults: FaultSet) {
        self.inner.set_faults(faults)
    }
    fn set_kernel_timing(&mut self, on: bool) {
        self.inner.set_kernel_timing(on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::error::BackendOp;

    /// Refuses every upload and counts the failures it sees.
    #[derive(Default)]
    struct RefuseUploads {
        failures: usize,
    }

    impl Layer for RefuseUploads {
        fn upload(&mut self, _: &mut dyn Backend, _: u64, _: &[u8]) -> Result<(), BackendError> {
            Err(BackendError::new(BackendOp::Upload, "refused"))
        }
        fn failed(&mut self, _: &BackendError) {
            self.failures += 1;
        }
    }

    #[test]
    fn a_layer_changes_only_what_it_overrides_and_sees_every_failure() {
        let mut b = Layered::new(CpuBackend::with_threads(1), RefuseUploads::default());
        let a = b.alloc(BufferName::Mass, 16).unwrap();
        assert_eq!(b.bytes_allocated(), 16, "alloc passed through");
        assert_eq!(
            b.upload(a.addr, &[1u8; 16]).unwrap_err().op,
            BackendOp::Upload
        );
        let mut back = [7u8; 16];
        b.download(a.addr, &mut back).unwrap();
        assert_ne!(
            back, [1u8; 16],
            "the refused upload never reached the backend"
        );
        assert_eq!(b.layer().failures, 1, "the layer saw its own refusal");
        // A failure of the backend itself is seen too.
        let lost = b.lose_context();
        assert!(lost.sticky);
        assert_eq!(b.layer().failures, 2);
        b.reset().unwrap();
        assert_eq!(b.bytes_allocated(), 0, "reset passed through");
    }
}
