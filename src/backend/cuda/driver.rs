/*!
The CUDA driver, loaded at run time: finding the libraries without panicking, turning driver errors
into [`BackendError`]s that say whether the context is lost, and owning one device context.

`cudarc` loads `libcuda` and `libnvrtc` lazily and panics when a library or a symbol is missing.
Everything that may be the first call into a library is checked for the library's presence first and
runs under `catch_unwind`, so that a machine without CUDA gets an error value, never a panic.
*/

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, OnceLock};

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::sys;

use crate::error::{BackendError, BackendOp};

/// Driver error codes after which the context is unusable: every later call fails the same way
/// (the CUDA documentation's "the process must be terminated and relaunched" errors, plus the
/// uncorrectable hardware errors).
const STICKY_CODES: &[u32] = &[
    214, // CUDA_ERROR_ECC_UNCORRECTABLE
    220, // CUDA_ERROR_NVLINK_UNCORRECTABLE
    700, // CUDA_ERROR_ILLEGAL_ADDRESS
    702, // CUDA_ERROR_LAUNCH_TIMEOUT
    709, // CUDA_ERROR_CONTEXT_IS_DESTROYED
    710, // CUDA_ERROR_ASSERT
    714, // CUDA_ERROR_HARDWARE_STACK_ERROR
    715, // CUDA_ERROR_ILLEGAL_INSTRUCTION
    716, // CUDA_ERROR_MISALIGNED_ADDRESS
    717, // CUDA_ERROR_INVALID_ADDRESS_SPACE
    718, // CUDA_ERROR_INVALID_PC
    719, // CUDA_ERROR_LAUNCH_FAILED
    721, // CUDA_ERROR_TENSOR_MEMORY_LEAK
    725, // CUDA_ERROR_CONTAINED
    911, // CUDA_ERROR_EXTERNAL_DEVICE
];

/// Whether driver error `code` loses the context.
pub fn is_sticky_code(code: u32) -> bool {
    STICKY_CODES.contains(&code)
}

/// `CUDA_ERROR_NAME (code): description`, without failing when the driver cannot describe it.
pub fn describe(e: DriverError) -> String {
    let code = e.0 as u32;
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "CUDA_ERROR_?".to_string());
    let text = e
        .error_string()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name} ({code}): {text}")
}

/// The [`BackendError`] of a failed driver call.
pub fn backend_error(op: BackendOp, kernel: Option<&'static str>, e: DriverError) -> BackendError {
    BackendError {
        op,
        kernel,
        message: describe(e),
        sticky: is_sticky_code(e.0 as u32),
        violation: None,
    }
}

/// Runs `f`, turning a panic inside `cudarc`'s lazy library loading into an error.
pub fn guarded<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(BackendError::new(
                BackendOp::Init,
                format!("{what}: the CUDA libraries could not be used ({detail})"),
            ))
        }
    }
}

/// Loads `libcuda` and calls `cuInit`, once per process.
pub fn init_driver() -> Result<(), BackendError> {
    static DRIVER: OnceLock<Result<(), String>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            guarded("loading the CUDA driver", || {
                // SAFETY: only tries to open the library by its usual names.
                if !unsafe { sys::is_culib_present() } {
                    return Err(BackendError::new(
                        BackendOp::Init,
                        "the CUDA driver library (libcuda) was not found",
                    ));
                }
                result::init().map_err(|e| {
                    BackendError::new(BackendOp::Init, format!("cuInit failed: {}", describe(e)))
                })
            })
            .map_err(|e| e.message)
        })
        .clone()
        .map_err(|m| BackendError::new(BackendOp::Init, m))
}

/// Whether `libnvrtc` can be loaded (checked without panicking).
pub fn nvrtc_present() -> bool {
    catch_unwind(|| {
        // SAFETY: only tries to open the library by its usual names.
        unsafe { cudarc::nvrtc::sys::is_culib_present() }
    })
    .unwrap_or(false)
}

/// Number of CUDA devices, 0 when the driver cannot be used.
pub fn device_count() -> usize {
    if init_driver().is_err() {
        return 0;
    }
    guarded("counting devices", || {
        result::device::get_count().map_err(|e| backend_error(BackendOp::Init, None, e))
    })
    .map_or(0, |c| c.max(0) as usize)
}

/// A device context of its own (not the device's primary context), so that dropping the backend
/// destroys everything it allocated, even after the context was lost.
///
/// A separate context does not contain a sticky error: CUDA documents that after one "the process
/// must be terminated and relaunched", and on the GPU machine (driver 580) creating a new context in
/// the same process indeed fails with the same error. Recovery from a lost context therefore needs
/// a new process, which is how the harness runs cases anyway.
///
/// Creating a context costs 110–180 ms on the GPU machine, and the harness builds several engines
/// per case (the capacity re-run, restart-equivalence rebuilds), so contexts are reused: a backend
/// that drops clean — every allocation freed, its stream, events and module destroyed, no sticky
/// error — gives its empty context back ([`Context::recycle_on_drop`]) to a small process-wide
/// pool, and [`Context::acquire`] takes from it before creating one.
#[derive(Debug)]
pub struct Context {
    ctx: sys::CUcontext,
    device: sys::CUdevice,
    ordinal: usize,
    /// Go back to the pool when dropped, instead of being destroyed.
    recycle: bool,
}

// SAFETY: a context handle may be used from any thread once made current there, which every user
// does first ([`Context::bind`]); the pool hands each context to one owner at a time.
unsafe impl Send for Context {}

/// Empty contexts kept for reuse, at most [`POOL_CAPACITY`].
static POOL: Mutex<Vec<Context>> = Mutex::new(Vec::new());
/// How many empty contexts the process keeps (a few engines live at once in a worker).
const POOL_CAPACITY: usize = 4;

fn pool() -> MutexGuard<'static, Vec<Context>> {
    // Nothing is left half-done under the lock, so a poisoned lock is usable.
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Destroys the pooled contexts. Called on a sticky error: the process is poisoned then, and a
/// pooled context would fail at its first use where a new one fails at creation.
pub fn drain_pool() {
    let drained = std::mem::take(&mut *pool());
    drop(drained);
}

impl Context {
    /// An empty context on device `ordinal`, current on the calling thread: a pooled one when there
    /// is one, else a new one.
    pub fn acquire(ordinal: usize) -> Result<Self, BackendError> {
        let pooled = {
            let mut pool = pool();
            let found = pool.iter().position(|c| c.ordinal == ordinal);
            found.map(|i| pool.swap_remove(i))
        };
        if let Some(context) = pooled {
            if context.bind().is_ok() {
                return Ok(context);
            }
            // Unusable after all: destroyed here, and a new one made.
        }
        Self::create(ordinal)
    }

    /// Keeps this context for reuse when it drops. Only for a context left empty: everything made
    /// in it released, no sticky error seen.
    pub fn recycle_on_drop(&mut self) {
        self.recycle = true;
    }

    /// A new context on device `ordinal`, current on the calling thread.
    pub fn create(ordinal: usize) -> Result<Self, BackendError> {
        let init = |e| backend_error(BackendOp::Init, None, e);
        let index = i32::try_from(ordinal).map_err(|_| {
            BackendError::new(
                BackendOp::Init,
                format!("device ordinal {ordinal} is too large"),
            )
        })?;
        let count = result::device::get_count().map_err(init)?;
        if count <= 0 {
            return Err(BackendError::new(BackendOp::Init, "no CUDA device found"));
        }
        if index >= count {
            return Err(BackendError::new(
                BackendOp::Init,
                format!("no CUDA device {ordinal} (the machine has {count})"),
            ));
        }
        let device = result::device::get(index).map_err(init)?;
        let mut ctx: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: `device` came from cuDeviceGet; null creation parameters ask for the defaults.
        unsafe { sys::cuCtxCreate_v4(&mut ctx, std::ptr::null_mut(), 0, device) }
            .result()
            .map_err(init)?;
        Ok(Context {
            ctx,
            device,
            ordinal,
            recycle: false,
        })
    }

    /// Makes this context current on the calling thread (the backend may move between threads).
    pub fn bind(&self) -> Result<(), DriverError> {
        // SAFETY: the context is alive until `self` is dropped.
        unsafe { result::ctx::set_current(self.ctx) }
    }

    /// The device.
    pub fn device(&self) -> sys::CUdevice {
        self.device
    }

    /// The compute capability, `(major, minor)`.
    pub fn compute_capability(&self) -> Result<(i32, i32), DriverError> {
        use sys::CUdevice_attribute as A;
        // SAFETY: the device came from cuDeviceGet.
        unsafe {
            Ok((
                result::device::get_attribute(
                    self.device,
                    A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                )?,
                result::device::get_attribute(
                    self.device,
                    A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                )?,
            ))
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if self.recycle {
            let mut pool = pool();
            if pool.len() < POOL_CAPACITY {
                pool.push(Context {
                    recycle: false,
                    ..*self
                });
                return;
            }
        }
        // SAFETY: the context was created by `create` and is destroyed once. Destroying a lost
        // context is how its resources are released; the error, if any, cannot be acted on.
        let _ = unsafe { sys::cuCtxDestroy_v2(self.ctx) };
    }
}

/// The driver's CUDA version as `major.minor`, for descriptions.
pub fn driver_version() -> Option<String> {
    let mut v = 0i32;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut v) }.result().ok()?;
    Some(format!("{}.{}", v / 1000, (v % 1000) / 10))
}
