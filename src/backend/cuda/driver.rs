/*!
The CUDA driver, loaded at run time: finding the libraries without panicking, turning driver errors
into [`BackendError`]s that say whether the context is lost, and owning one device context.

`cudarc` loads `libcuda` and `libnvrtc` lazily and panics when a library or a symbol is missing.
Everything that may be the first call into a library is checked for the library's presence first and
runs under `catch_unwind`, so that a machine without CUDA gets an error value, never a panic.
*/

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

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

/// The process's context on one device, shared by every backend on that device, with the modules
/// loaded into it.
///
/// One context, not one per backend, for two reasons measured on the GPU machine: creating a
/// context costs 110–180 ms and loading the kernels' module into it more, and the harness builds
/// several engines per case (the capacity re-run, restart-equivalence rebuilds); and engines that
/// run at the same time in one process (a worker running several cases) only overlap on the device
/// when they share a context — kernels of different contexts are time-sliced, those of different
/// streams of one context run side by side. Each backend keeps its own stream, events and
/// allocations, so a backend that drops frees exactly what it made.
///
/// A separate context per backend would not contain a sticky error anyway: CUDA documents that after
/// one "the process must be terminated and relaunched", and on the GPU machine (driver 580)
/// creating a new context in the same process indeed fails with the same error. A sticky error
/// therefore retires the shared context ([`retire_shared`]): the backends holding it keep failing
/// with their error, and the next backend of the process tries a new context (and is refused by
/// the driver).
///
/// It is not the device's primary context, so that destroying it (when its last holder drops)
/// releases everything in it, even after it was lost.
#[derive(Debug)]
pub struct Context {
    ctx: sys::CUcontext,
    device: sys::CUdevice,
    ordinal: usize,
    /// Modules loaded into this context and not leased to a backend, with their compile options.
    idle_modules: Mutex<Vec<(Vec<String>, Module)>>,
}

/// A loaded module, leased to one backend at a time: the checked mode's kernels keep per-launch
/// state in module globals (`ff_spans`, `ff_record`), so two backends running at once need two
/// modules; a module goes back to its context when its backend drops clean.
#[derive(Debug)]
pub struct Module(pub sys::CUmodule);

// SAFETY: a context or module handle may be used from any thread once the context is made current
// there, which every user does first ([`Context::bind`]); the driver API is thread safe. The idle
// modules are behind a mutex, and a leased module has one owner.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}
unsafe impl Send for Module {}

/// The shared context of each device used so far (at most one per ordinal).
static SHARED: Mutex<Vec<Arc<Context>>> = Mutex::new(Vec::new());

fn shared() -> MutexGuard<'static, Vec<Arc<Context>>> {
    // Nothing is left half-done under the lock, so a poisoned lock is usable.
    SHARED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets the shared contexts. Called on a sticky error: the process is poisoned then, and a
/// backend made later must not be handed the lost context as if it worked (it tries a new one,
/// which the driver refuses in a poisoned process).
pub fn retire_shared() {
    let retired = std::mem::take(&mut *shared());
    drop(retired);
}

/// Backends allocate stream-ordered (`cuMemAllocAsync` / `cuMemFreeAsync` on their own stream):
/// `cuMemFree` waits for the whole device, so one engine's resize stalled every engine running
/// beside it in the process (eight cases of a batch ran no faster than one). The device's default
/// pool keeps what is freed for the next allocation instead of returning it at every
/// synchronization (its default threshold is zero); it is returned with the context.
fn keep_freed_memory(device: sys::CUdevice) -> Result<(), DriverError> {
    // SAFETY: `device` came from cuDeviceGet; the attribute takes a u64 (cuuint64_t).
    unsafe {
        let pool = result::device::get_default_mem_pool(device)?;
        let mut threshold: u64 = u64::MAX;
        result::mem_pool::set_attribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
    }
}

impl Context {
    /// The process's context on device `ordinal`, current on the calling thread: the shared one when
    /// there is one, else a new one, shared from now on.
    pub fn shared(ordinal: usize) -> Result<Arc<Self>, BackendError> {
        let mut shared = shared();
        if let Some(context) = shared.iter().find(|c| c.ordinal == ordinal) {
            context
                .bind()
                .map_err(|e| backend_error(BackendOp::Init, None, e))?;
            return Ok(Arc::clone(context));
        }
        let context = Arc::new(Self::create(ordinal)?);
        shared.push(Arc::clone(&context));
        Ok(context)
    }

    /// A new context on device `ordinal`, current on the calling thread.
    fn create(ordinal: usize) -> Result<Self, BackendError> {
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
        keep_freed_memory(device).map_err(init)?;
        Ok(Context {
            ctx,
            device,
            ordinal,
            idle_modules: Mutex::new(Vec::new()),
        })
    }

    /// A module compiled with `options` for the caller alone: an idle one loaded earlier, else
    /// `ptx` loaded now. The context must be current.
    pub fn lease_module(&self, options: &[String], ptx: &[u8]) -> Result<Module, DriverError> {
        let idle = {
            let mut idle = self.idle_modules.lock().unwrap_or_else(|p| p.into_inner());
            let found = idle.iter().position(|(o, _)| o.as_slice() == options);
            found.map(|i| idle.swap_remove(i).1)
        };
        if let Some(module) = idle {
            return Ok(module);
        }
        // SAFETY: the PTX is NUL-terminated (as `compile` returns it) and outlives the call.
        let module = unsafe { result::module::load_data(ptx.as_ptr() as *const c_void) }?;
        Ok(Module(module))
    }

    /// Takes back a module leased with `options`, for the next backend. Only a module whose
    /// backend saw no sticky error and left no launch running.
    pub fn give_back_module(&self, options: Vec<String>, module: Module) {
        let mut idle = self.idle_modules.lock().unwrap_or_else(|p| p.into_inner());
        idle.push((options, module));
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
        // The idle modules are unloaded one by one first: destroying the context would release
        // them too, but compute-sanitizer's `--detect-missing-module-unload` reports every module
        // left for the context to release.
        let idle =
            std::mem::take(&mut *self.idle_modules.lock().unwrap_or_else(|p| p.into_inner()));
        // SAFETY: the context was created by `create` and is destroyed once, when its last holder
        // drops; the idle modules were loaded into it and no backend holds them. Destroying it
        // releases whatever a lost backend could not free; errors (a lost context) cannot be acted
        // on.
        unsafe {
            if !idle.is_empty() && result::ctx::set_current(self.ctx).is_ok() {
                for (_, module) in idle {
                    let _ = sys::cuModuleUnload(module.0);
                }
            }
            let _ = sys::cuCtxDestroy_v2(self.ctx);
        }
    }
}

/// The driver's CUDA version as `major.minor`, for descriptions.
pub fn driver_version() -> Option<String> {
    let mut v = 0i32;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut v) }.result().ok()?;
    Some(format!("{}.{}", v / 1000, (v % 1000) / 10))
}
