/*!
A backend that reports each kernel launch before it happens, and its end.

Workers use it to write the current kernel into their breadcrumbs, so that when a kernel kills the
process the driver knows which one. The engine knows nothing of this: the [`Trace`] layer sits
between the engine and the real backend.
*/

use forcefield::backend::layer::{Layer, Layered};
use forcefield::backend::{Backend, Launch};
use forcefield::BackendError;

/// A backend whose launches are reported to a hook (see [`Trace`]).
pub type TracedBackend<F> = Layered<Box<dyn Backend>, Trace<F>>;

/// Calls its hook with the kernel name before every launch and with `""` after it returns.
pub struct Trace<F: FnMut(&'static str) + Send>(pub F);

impl<F: FnMut(&'static str) + Send> Layer for Trace<F> {
    fn launch(&mut self, inner: &mut dyn Backend, launch: &Launch) -> Result<f64, BackendError> {
        (self.0)(launch.kernel_name());
        let result = inner.launch(launch);
        // Out of the kernel again: a death from here on belongs to the operation (the kernel log, a
        // copy), not to the kernel that just returned.
        (self.0)("");
        result
    }
}
