/*!
Opening the engine backend a command asked for: `--backend cpu|cuda|auto` becomes a
`Box<dyn Backend>`, so that every command builds one `Engine<Box<dyn Backend>>` and runs one code
path on either backend.

Responsible for the policy all commands share ([`open_backend`]):

| choice | CUDA usable | result | stderr note |
|---|---|---|---|
| `cpu` | (not probed) | CPU | none |
| `cuda` | yes | CUDA | `backend: cuda (<device>)` |
| `cuda` | no | [`CliError::Environment`] (exit 3), one line saying why | |
| `auto` | yes | CUDA | `backend: cuda (<device>)` |
| `auto` | no | CPU | `backend: cpu (no usable CUDA device: <reason>)` |

"Usable" means what [`CudaBackend::new`] checks: the driver and NVRTC load, the device exists, a
context can be created and the kernels compile. Its error is the reason given to the user, so a
machine without the driver, one without a device and one whose NVRTC fails each say which.
*/

use forcefield::{Backend, BackendError, CpuBackend, CudaBackend};

use clap::ValueEnum;

use crate::commands::error::CliError;

/// Which engine backend a command should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The CPU backend (emulated device memory with guard pages).
    Cpu,
    /// The CUDA backend.
    Cuda,
    /// CUDA when a device is usable, otherwise CPU.
    Auto,
}

/// A backend a command can actually run on: what [`crate::commands::backend_select::open_backend`] opened
/// for a [`BackendChoice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolvedBackend {
    /// [`forcefield::CpuBackend`].
    Cpu,
    /// [`forcefield::CudaBackend`].
    Cuda,
}

impl ResolvedBackend {
    /// The name written into outputs and summaries (the backend's own [`forcefield::Backend::name`]).
    pub fn name(self) -> &'static str {
        match self {
            ResolvedBackend::Cpu => "cpu",
            ResolvedBackend::Cuda => "cuda",
        }
    }
}

/// The CUDA device commands run on.
pub const CUDA_DEVICE: usize = 0;

/// What [`open_backend`] says about the backend it opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendNote {
    /// The backend opened; its name goes into outputs and summaries.
    pub resolved: ResolvedBackend,
    /// One line for stderr saying which backend runs and why (none for an explicit `cpu`, which
    /// needs no explanation).
    pub line: Option<String>,
}

/// Opens the backend `choice` asks for (see the module documentation for the policy). Fails only
/// for `cuda` without a usable device, with an environment error (exit 3).
pub fn open_backend(choice: BackendChoice) -> Result<(Box<dyn Backend>, BackendNote), CliError> {
    select(choice, || CudaBackend::new(CUDA_DEVICE))
}

/// [`open_backend`] with the CUDA opener passed in, so that the policy is testable on machines
/// without a GPU. `open_cuda` is called at most once, and never for `cpu`.
pub fn select<C, F>(
    choice: BackendChoice,
    open_cuda: F,
) -> Result<(Box<dyn Backend>, BackendNote), CliError>
where
    C: Backend + 'static,
    F: FnOnce() -> Result<C, BackendError>,
{
    if choice == BackendChoice::Cpu {
        return Ok((
            Box::new(CpuBackend::new()),
            BackendNote {
                resolved: ResolvedBackend::Cpu,
                line: None,
            },
        ));
    }
    match open_cuda() {
        Ok(cuda) => {
            let line = format!("backend: cuda ({})", cuda.device_description());
            Ok((
                Box::new(cuda),
                BackendNote {
                    resolved: ResolvedBackend::Cuda,
                    line: Some(line),
                },
            ))
        }
        Err(e) if choice == BackendChoice::Cuda => Err(CliError::environment(
            anyhow::Error::new(e).context("--backend cuda: no usable CUDA device"),
        )),
        Err(e) => {
            // The reason goes on the note's one line whatever the driver's message holds.
            let reason = crate::commands::error::one_line(&anyhow::Error::new(e));
            Ok((
                Box::new(CpuBackend::new()),
                BackendNote {
                    resolved: ResolvedBackend::Cpu,
                    line: Some(format!("backend: cpu (no usable CUDA device: {reason})")),
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forcefield::error::BackendOp;
    use forcefield::{Edge, Engine, GraphSpec, SimParams};

    fn no_device() -> Result<CpuBackend, BackendError> {
        Err(BackendError::new(
            BackendOp::Init,
            "no CUDA device found\n(probe)",
        ))
    }

    /// Stands in for a CUDA backend: what `select` does with a backend that opened does not
    /// depend on its type.
    fn fake_device() -> Result<CpuBackend, BackendError> {
        Ok(CpuBackend::new())
    }

    #[test]
    fn cpu_never_probes_cuda_and_says_nothing() {
        let (backend, note) = select(BackendChoice::Cpu, || -> Result<CpuBackend, _> {
            panic!("cpu must not probe CUDA")
        })
        .unwrap();
        assert_eq!(backend.name(), "cpu");
        assert_eq!(
            note,
            BackendNote {
                resolved: ResolvedBackend::Cpu,
                line: None
            }
        );
    }

    #[test]
    fn auto_without_a_device_falls_back_to_cpu_with_the_reason_on_one_line() {
        let (backend, note) = select(BackendChoice::Auto, no_device).unwrap();
        assert_eq!(backend.name(), "cpu");
        assert_eq!(note.resolved, ResolvedBackend::Cpu);
        assert_eq!(
            note.line.as_deref(),
            Some("backend: cpu (no usable CUDA device: init failed: no CUDA device found (probe))")
        );
    }

    #[test]
    fn auto_and_cuda_with_a_device_take_it_and_name_it() {
        for choice in [BackendChoice::Auto, BackendChoice::Cuda] {
            let (backend, note) = select(choice, fake_device).unwrap();
            assert_eq!(note.resolved, ResolvedBackend::Cuda);
            let expected = format!("backend: cuda ({})", CpuBackend::new().device_description());
            assert_eq!(note.line.as_deref(), Some(expected.as_str()));
            // The box is the opened backend itself.
            assert_eq!(
                backend.device_description(),
                CpuBackend::new().device_description()
            );
        }
    }

    #[test]
    fn cuda_without_a_device_is_an_environment_error_on_one_line() {
        let e = select(BackendChoice::Cuda, no_device).err().unwrap();
        assert_eq!(e.exit_code(), crate::exit::ENVIRONMENT);
        assert_eq!(
            e.report_line(),
            "error: --backend cuda: no usable CUDA device: init failed: no CUDA device found (probe)"
        );
    }

    #[test]
    fn the_real_opener_agrees_with_is_available() {
        let (backend, note) = open_backend(BackendChoice::Auto).unwrap();
        let expected = if CudaBackend::is_available() {
            ResolvedBackend::Cuda
        } else {
            ResolvedBackend::Cpu
        };
        assert_eq!(note.resolved, expected);
        assert_eq!(backend.name(), expected.name());
        let cuda = open_backend(BackendChoice::Cuda);
        assert_eq!(cuda.is_ok(), CudaBackend::is_available());
    }

    #[test]
    fn an_engine_runs_on_the_boxed_backend() {
        let (backend, _) = open_backend(BackendChoice::Auto).unwrap();
        let graph = GraphSpec {
            num_nodes: 3,
            edges: vec![Edge::new(0, 1), Edge::new(1, 2)],
            positions: None,
        };
        let mut engine = Engine::new(backend, &graph, SimParams::default()).unwrap();
        engine.step(5).unwrap();
        let p = engine.positions().unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.iter().flatten().all(|c| c.is_finite()));
    }
}
