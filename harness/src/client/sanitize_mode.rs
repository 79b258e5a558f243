/*!
`--sanitize`: which sanitizer a campaign, a replay or a soak runs its cases under, how workers are
started for it, and how a sanitizer finding travels from the backend to the verdict.

* [`SanitizeMode`] is the flag's value. `checked` is the engine's own checked mode (the CPU
  backend's bounds-checked accessors, poison and written-marks; see `forcefield::backend::cpu`); the
  other modes are `compute-sanitizer` tools wrapped around the worker process.
* [`worker_command`] starts workers under a mode: `forcefield worker --sanitize checked`, or the
  worker wrapped in a compute-sanitizer tool.
* [`Recorded`] sits between an engine and its backend and keeps the first
  [`forcefield::MemoryViolation`] any backend call reports; the job handler turns it into the
  reply's [`SanitizerFinding`], which [`crate::client::signature`] classifies as
  `sanitizer:<kind>:<kernel>`.
*/

use std::sync::{Arc, Mutex};

use forcefield::backend::{Backend, DeviceAlloc, Launch};
use forcefield::{BackendError, BufferName, MemoryViolation};
use serde::{Deserialize, Serialize};

use crate::case::BackendKind;
use crate::commands::cli::CliError;
use crate::sanitizers::compute_sanitizer::Tool;
use crate::isolate::WorkerCommand;

/// The sanitizer cases run under.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SanitizeMode {
    /// No sanitizer: kernels access memory unchecked, as in production.
    #[default]
    Off,
    /// The engine's checked mode: an invalid access is a `sanitizer` finding instead of a crash.
    Checked,
    /// compute-sanitizer's memcheck (CUDA): out-of-bounds and misaligned accesses, leaks.
    Memcheck,
    /// compute-sanitizer's racecheck (CUDA): shared-memory data races.
    Racecheck,
    /// compute-sanitizer's initcheck (CUDA): reads of uninitialized global memory.
    Initcheck,
    /// compute-sanitizer's synccheck (CUDA): invalid synchronization.
    Synccheck,
}

impl SanitizeMode {
    /// The flag's spelling.
    pub const fn name(self) -> &'static str {
        match self {
            SanitizeMode::Off => "off",
            SanitizeMode::Checked => "checked",
            SanitizeMode::Memcheck => "memcheck",
            SanitizeMode::Racecheck => "racecheck",
            SanitizeMode::Initcheck => "initcheck",
            SanitizeMode::Synccheck => "synccheck",
        }
    }

    /// Whether backends open in their checked mode.
    pub const fn is_checked(self) -> bool {
        matches!(self, SanitizeMode::Checked)
    }

    /// The compute-sanitizer tool of a tool mode.
    pub const fn compute_sanitizer_tool(self) -> Option<Tool> {
        match self {
            SanitizeMode::Off | SanitizeMode::Checked => None,
            SanitizeMode::Memcheck => Some(Tool::Memcheck),
            SanitizeMode::Racecheck => Some(Tool::Racecheck),
            SanitizeMode::Initcheck => Some(Tool::Initcheck),
            SanitizeMode::Synccheck => Some(Tool::Synccheck),
        }
    }

    /// How many times the normal per-case deadline a case gets under this mode, so that a
    /// sanitizer's slowdown is not mistaken for a hang. The checked mode costs little (see the
    /// project's measurements); compute-sanitizer tools instrument every access and often cost
    /// one or two orders of magnitude.
    pub const fn deadline_factor(self) -> u32 {
        match self {
            SanitizeMode::Off => 1,
            SanitizeMode::Checked => 2,
            _ => 20,
        }
    }

    /// Checks that the mode can run cases on `backend`: compute-sanitizer tools watch CUDA kernels
    /// only (exit 2 on the CPU backend).
    pub fn validate(self, backend: BackendKind) -> Result<(), CliError> {
        if let (Some(tool), BackendKind::Cpu) = (self.compute_sanitizer_tool(), backend) {
            return Err(CliError::input(anyhow::anyhow!(
                "--sanitize {} runs compute-sanitizer, which watches CUDA kernels: use it with --backend cuda (the CPU backend's sanitizer is --sanitize checked)",
                tool.name()
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for SanitizeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How to start a worker under `mode`: `forcefield worker --threads N [--sanitize checked]`, or
/// that command wrapped in a compute-sanitizer tool.
pub fn worker_command(threads: usize, mode: SanitizeMode) -> Result<WorkerCommand, CliError> {
    let command = crate::commands::worker_command(threads)?;
    match mode {
        SanitizeMode::Off => Ok(command),
        SanitizeMode::Checked => Ok(command.arg("--sanitize").arg(mode.name())),
        tool => wrap_in_compute_sanitizer(command, tool),
    }
}

/// The worker command run under a compute-sanitizer tool: `compute-sanitizer --tool T <strict
/// options> --error-exitcode 86 --xml --save DIR/<tool>-worker-<pid>.xml forcefield worker ...`.
/// Crashes, hangs and lost contexts are classified as without the tool; the tool's own records are
/// per worker process (written when the worker exits) and land in [`tool_output_dir`]. A finding is
/// attributed to its case by `forcefield repro --sanitize <tool>` on the case, which runs it alone
/// under the tool (campaigns on CUDA do that for every minimized finding).
fn wrap_in_compute_sanitizer(
    command: WorkerCommand,
    mode: SanitizeMode,
) -> Result<WorkerCommand, CliError> {
    let Some(tool) = mode.compute_sanitizer_tool() else {
        return Ok(command);
    };
    let dir = tool_output_dir();
    std::fs::create_dir_all(&dir).map_err(|e| {
        CliError::environment(anyhow::anyhow!("cannot create {}: {e}", dir.display()))
    })?;
    let xml = crate::sanitizers::compute_sanitizer::worker_xml_pattern(&dir, tool);
    let wrapped = crate::sanitizers::compute_sanitizer::wrap_worker(command, tool, &xml)
        .map_err(|e| CliError::environment(anyhow::anyhow!("{e}")))?;
    eprintln!(
        "sanitize: workers run under compute-sanitizer {}; its reports go to {}",
        tool.name(),
        dir.display()
    );
    Ok(wrapped)
}

/// Where wrapped workers' compute-sanitizer reports go: `$FORCEFIELD_SANITIZER_DIR`, else a
/// directory of this process under the system's temporary directory.
pub fn tool_output_dir() -> std::path::PathBuf {
    match std::env::var_os("FORCEFIELD_SANITIZER_DIR") {
        Some(d) => d.into(),
        None => std::env::temp_dir().join(format!("forcefield-sanitizer-{}", std::process::id())),
    }
}

/// A sanitizer finding as a worker reports it: a [`MemoryViolation`] in serializable form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanitizerFinding {
    /// `out-of-bounds`, `uninitialized` or `unallocated`.
    pub kind: String,
    /// The kernel (or host operation: `upload`, `download`, `copy`, `fill`).
    pub kernel: String,
    /// The buffer.
    pub buffer: String,
    /// The element index.
    pub index: u64,
    /// The buffer's live length (for a host operation: the transfer's end element).
    pub len: u64,
    /// The buffer's capacity in elements.
    pub capacity: u64,
    /// `read` or `write`.
    pub access: String,
    /// Bytes accessed.
    pub size: u64,
    /// Violations in the same launch not recorded.
    #[serde(default)]
    pub more: u64,
    /// The finding in compute-sanitizer's words.
    pub message: String,
}

impl From<&MemoryViolation> for SanitizerFinding {
    fn from(v: &MemoryViolation) -> Self {
        SanitizerFinding {
            kind: v.kind.name().to_string(),
            kernel: v.kernel().to_string(),
            buffer: v.buffer.as_str().to_string(),
            index: v.index,
            len: v.len as u64,
            capacity: v.capacity as u64,
            access: v.access.name().to_string(),
            size: v.size as u64,
            more: v.more,
            message: v.to_string(),
        }
    }
}

/// Where a [`Recorded`] backend keeps the first violation; clones share it.
#[derive(Clone, Debug, Default)]
pub struct ViolationLog(Arc<Mutex<Option<MemoryViolation>>>);

impl ViolationLog {
    /// Keeps `violation` unless one is kept already.
    fn note(&self, violation: &MemoryViolation) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(violation.clone());
        }
    }

    /// The kept violation, as a finding; the log is empty again afterwards.
    pub fn take(&self) -> Option<SanitizerFinding> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.take().as_ref().map(SanitizerFinding::from)
    }
}

/// A backend that records in a [`ViolationLog`] every memory violation its calls report, then
/// passes the result on unchanged.
///
/// The engine turns a failed call into an error of the operation, and the case executor into a
/// string; recording at the backend keeps the typed violation whatever happens to the error above
/// (a violation only in the capacity-invariance re-run, say, is still a sanitizer finding).
pub struct Recorded<B> {
    inner: B,
    log: ViolationLog,
}

impl<B: Backend> Recorded<B> {
    /// Wraps `inner`, recording into `log`.
    pub fn new(inner: B, log: ViolationLog) -> Self {
        Recorded { inner, log }
    }

    fn seen<T>(&self, r: Result<T, BackendError>) -> Result<T, BackendError> {
        if let Err(BackendError {
            violation: Some(v), ..
        }) = &r
        {
            self.log.note(v);
        }
        r
    }
}

impl<B: Backend> Backend for Recorded<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn device_description(&self) -> String {
        self.inner.device_description()
    }
    fn alloc(&mut self, buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError> {
        let r = self.inner.alloc(buffer, bytes);
        self.seen(r)
    }
    fn free(&mut self, alloc: DeviceAlloc) {
        self.inner.free(alloc)
    }
    fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), BackendError> {
        let r = self.inner.upload(dst, src);
        self.seen(r)
    }
    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError> {
        let r = self.inner.download(src, dst);
        self.seen(r)
    }
    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError> {
        let r = self.inner.copy(dst, src, bytes);
        self.seen(r)
    }
    fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError> {
        let r = self.inner.fill_u32(dst, count, value);
        self.seen(r)
    }
    fn launch(&mut self, launch: &Launch) -> Result<f64, BackendError> {
        let r = self.inner.launch(launch);
        self.seen(r)
    }
    fn synchronize(&mut self) -> Result<(), BackendError> {
        let r = self.inner.synchronize();
        self.seen(r)
    }
    fn bytes_allocated(&self) -> usize {
        self.inner.bytes_allocated()
    }
    fn lose_context(&mut self) -> BackendError {
        self.inner.lose_context()
    }
    fn reset(&mut self) -> Result<(), BackendError> {
        let r = self.inner.reset();
        self.seen(r)
    }
    fn set_faults(&mut self, faults: forcefield::FaultSet) {
        self.inner.set_faults(faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forcefield::backend::{BoundsReduceArgs, DeviceSpan};
    use forcefield::CpuBackend;

    #[test]
    fn names_and_tools() {
        use clap::ValueEnum;
        let names: Vec<&str> = SanitizeMode::value_variants()
            .iter()
            .map(|m| m.name())
            .collect();
        assert_eq!(
            names,
            [
                "off",
                "checked",
                "memcheck",
                "racecheck",
                "initcheck",
                "synccheck"
            ]
        );
        for m in SanitizeMode::value_variants() {
            let parsed = SanitizeMode::from_str(m.name(), false).unwrap();
            assert_eq!(parsed, *m);
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        assert_eq!(SanitizeMode::Checked.compute_sanitizer_tool(), None);
        for m in SanitizeMode::value_variants() {
            if let Some(tool) = m.compute_sanitizer_tool() {
                assert_eq!(tool.name(), m.name());
            }
        }
        assert!(SanitizeMode::Checked.is_checked() && !SanitizeMode::Off.is_checked());
    }

    #[test]
    fn tools_on_the_cpu_are_an_input_error() {
        let e = SanitizeMode::Memcheck
            .validate(BackendKind::Cpu)
            .unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::BAD_INPUT);
        assert!(SanitizeMode::Checked.validate(BackendKind::Cpu).is_ok());
        assert!(SanitizeMode::Memcheck.validate(BackendKind::Cuda).is_ok());
    }

    #[test]
    fn the_recorder_keeps_the_first_violation_and_passes_errors_on() {
        let log = ViolationLog::default();
        let mut b = Recorded::new(CpuBackend::with_threads(1).with_checked(true), log.clone());
        let pos = b.alloc(BufferName::PosInX, 8).unwrap();
        b.upload(pos.addr, &[0u8; 8]).unwrap();
        assert!(log.take().is_none(), "clean calls record nothing");
        let span = |name| DeviceSpan {
            addr: pos.addr,
            capacity: 2,
            len: 2,
            buffer: name,
        };
        let bounds = b.alloc(BufferName::Bounds, 4).unwrap();
        let args = BoundsReduceArgs {
            pos: [span(BufferName::PosInX); 3],
            bounds: DeviceSpan {
                addr: bounds.addr,
                capacity: 1,
                len: 1,
                buffer: BufferName::Bounds,
            },
            num_nodes: 2,
        };
        let e = b.launch(&Launch::BoundsReduce(args)).unwrap_err();
        assert!(e.violation.is_some(), "the error still carries it");
        let _ = b.launch(&Launch::BoundsReduce(args));
        let f = log.take().expect("recorded");
        assert_eq!(
            (f.kind.as_str(), f.kernel.as_str(), f.buffer.as_str()),
            ("out-of-bounds", "bounds_reduce", "bounds")
        );
        assert_eq!((f.index, f.capacity, f.access.as_str()), (3, 1, "write"));
        assert!(f.message.contains("index 3 >= capacity 1"), "{}", f.message);
        assert!(log.take().is_none(), "taken once");
    }
}
