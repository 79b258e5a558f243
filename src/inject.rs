/*!
Injected environment faults: failures that are not bugs in the engine but happen to a GPU server
anyway — an allocation refused under memory pressure, a failed copy or launch, a lost context.

[`InjectingBackend`] wraps the engine's backend and makes the calls it was told to fail fail, as the
device would: with a [`BackendError`] of the right operation, sticky only for a lost context. A lost
context is real on every backend: [`Backend::lose_context`] runs a kernel that executes `__trap()` on
CUDA and marks the memory unusable on the CPU. Faults are armed one at a time by the engine
([`crate::Engine::inject`]), so a case that injects them replays exactly.
*/

use serde::{Deserialize, Serialize};

use crate::backend::layer::{Layer, Layered};
use crate::backend::{Backend, DeviceAlloc, Launch};
use crate::buffer_name::BufferName;
use crate::error::{BackendError, BackendOp};

/// An environment fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EnvFault {
    /// The `nth` next device allocation fails (1 = the next one), as under memory pressure.
    FailAlloc {
        /// Which allocation, counting from 1.
        #[serde(default = "one")]
        nth: u32,
    },
    /// The `nth` next host-to-device or device-to-host copy fails.
    FailCopy {
        /// Which copy, counting from 1.
        #[serde(default = "one")]
        nth: u32,
    },
    /// The `nth` next kernel launch fails without losing the context.
    FailLaunch {
        /// Which launch, counting from 1.
        #[serde(default = "one")]
        nth: u32,
    },
    /// The `nth` next kernel launch loses the context (a `__trap()` on CUDA).
    LoseContext {
        /// Which launch, counting from 1.
        #[serde(default = "one")]
        nth: u32,
    },
}

fn one() -> u32 {
    1
}

impl EnvFault {
    /// Every kind, for reports.
    pub const KINDS: [&'static str; 4] = ["fail-alloc", "fail-copy", "fail-launch", "lose-context"];

    /// The kind's name, as in case files.
    pub fn kind(&self) -> &'static str {
        match self {
            EnvFault::FailAlloc { .. } => "fail-alloc",
            EnvFault::FailCopy { .. } => "fail-copy",
            EnvFault::FailLaunch { .. } => "fail-launch",
            EnvFault::LoseContext { .. } => "lose-context",
        }
    }
}

/// How many faults of each kind were armed and how many fired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectionCounts {
    /// Allocations failed.
    pub alloc: u64,
    /// Copies failed.
    pub copy: u64,
    /// Launches failed.
    pub launch: u64,
    /// Contexts lost.
    pub context: u64,
}

impl InjectionCounts {
    /// All fired faults.
    pub fn total(&self) -> u64 {
        self.alloc + self.copy + self.launch + self.context
    }
}

/// What is armed: for each kind, the calls to let through before one fails, plus one. Each fault
/// fires once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Armed {
    alloc: Option<u32>,
    copy: Option<u32>,
    launch: Option<u32>,
    lose_context: Option<u32>,
}

/// Counts one call down; true when this call is the one to fail (and disarms).
fn fires(countdown: &mut Option<u32>) -> bool {
    match *countdown {
        Some(k) if k <= 1 => {
            *countdown = None;
            true
        }
        Some(k) => {
            *countdown = Some(k - 1);
            false
        }
        None => false,
    }
}

/// A backend that fails the calls it was armed to fail, then behaves like the backend it wraps: the
/// wrapped backend seen through an [`Injector`].
pub type InjectingBackend<Bk> = Layered<Bk, Injector>;

/// The layer of an [`InjectingBackend`]: what is armed and what fired.
#[derive(Debug, Default)]
pub struct Injector {
    armed: Armed,
    fired: InjectionCounts,
}

impl<Bk: Backend> InjectingBackend<Bk> {
    /// Wraps `inner` with nothing armed.
    pub fn with_nothing_armed(inner: Bk) -> Self {
        Layered::new(inner, Injector::default())
    }

    /// Arms `fault`; a fault of the same kind still armed is replaced.
    pub fn arm(&mut self, fault: EnvFault) {
        let armed = &mut self.layer_mut().armed;
        match fault {
            EnvFault::FailAlloc { nth } => armed.alloc = Some(nth.max(1)),
            EnvFault::FailCopy { nth } => armed.copy = Some(nth.max(1)),
            EnvFault::FailLaunch { nth } => armed.launch = Some(nth.max(1)),
            EnvFault::LoseContext { nth } => armed.lose_context = Some(nth.max(1)),
        }
    }

    /// Whether any fault is still armed.
    pub fn is_armed(&self) -> bool {
        self.layer().armed != Armed::default()
    }

    /// Disarms everything (faults armed but not fired do not outlive a recovery).
    pub fn disarm(&mut self) {
        self.layer_mut().armed = Armed::default();
    }

    /// Faults fired so far.
    pub fn fired(&self) -> InjectionCounts {
        self.layer().fired
    }
}

impl Injector {
    fn injected(op: BackendOp, kernel: Option<&'static str>) -> BackendError {
        BackendError {
            kernel,
            ..BackendError::new(op, "injected failure")
        }
    }

    fn copy_fault(&mut self, op: BackendOp) -> Result<(), BackendError> {
        if fires(&mut self.armed.copy) {
            self.fired.copy += 1;
            return Err(Self::injected(op, None));
        }
        Ok(())
    }
}

impl Layer for Injector {
    fn alloc(
        &mut self,
        inner: &mut dyn Backend,
        buffer: BufferName,
        bytes: usize,
    ) -> Result<DeviceAlloc, BackendError> {
        if fires(&mut self.armed.alloc) {
            self.fired.alloc += 1;
            return Err(BackendError::new(
                BackendOp::Alloc,
                format!("injected failure: out of memory allocating {bytes} bytes for `{buffer}`"),
            ));
        }
        inner.alloc(buffer, bytes)
    }
    fn upload(
        &mut self,
        inner: &mut dyn Backend,
        dst: u64,
        src: &[u8],
    ) -> Result<(), BackendError> {
        self.copy_fault(BackendOp::Upload)?;
        inner.upload(dst, src)
    }
    fn download(
        &mut self,
        inner: &mut dyn Backend,
        src: u64,
        dst: &mut [u8],
    ) -> Result<(), BackendError> {
        self.copy_fault(BackendOp::Download)?;
        inner.download(src, dst)
    }
    fn launch(&mut self, inner: &mut dyn Backend, launch: &Launch) -> Result<f64, BackendError> {
        if fires(&mut self.armed.lose_context) {
            self.fired.context += 1;
            return Err(inner.lose_context());
        }
        if fires(&mut self.armed.launch) {
            self.fired.launch += 1;
            return Err(Self::injected(
                BackendOp::Launch,
                Some(launch.kernel_name()),
            ));
        }
        inner.launch(launch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    #[test]
    fn the_nth_allocation_fails_once() {
        let mut b = InjectingBackend::with_nothing_armed(CpuBackend::with_threads(1));
        b.arm(EnvFault::FailAlloc { nth: 2 });
        let first = b.alloc(BufferName::Mass, 16).unwrap();
        let e = b.alloc(BufferName::Mass, 16).unwrap_err();
        assert_eq!(e.op, BackendOp::Alloc);
        assert!(!e.sticky);
        let third = b.alloc(BufferName::Mass, 16).unwrap();
        assert_eq!(b.fired().alloc, 1);
        assert!(!b.is_armed());
        b.free(first);
        b.free(third);
    }

    #[test]
    fn a_copy_fault_fails_the_next_copy_only() {
        let mut b = InjectingBackend::with_nothing_armed(CpuBackend::with_threads(1));
        let a = b.alloc(BufferName::Mass, 16).unwrap();
        b.arm(EnvFault::FailCopy { nth: 1 });
        assert_eq!(
            b.upload(a.addr, &[1; 16]).unwrap_err().op,
            BackendOp::Upload
        );
        b.upload(a.addr, &[2; 16]).unwrap();
        let mut out = [0u8; 16];
        b.download(a.addr, &mut out).unwrap();
        assert_eq!(out, [2; 16]);
        assert_eq!(b.fired().copy, 1);
        b.free(a);
    }
}
