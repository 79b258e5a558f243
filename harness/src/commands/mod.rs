/*!
The crash-hunting subcommands, one module each. They share the small pieces here: durations on the
command line, choosing the backend of a campaign, and how to start a worker; `flag_values` gives
the values defined below this layer (`--sanitize`, `--tool`) their clap spelling. This is the
only layer that knows clap (checked by `tests/layering.rs`) or `CliError`.
*/

pub(crate) mod backend_select;
pub(crate) mod bench;
pub(crate) mod ci;
pub mod cli;
pub mod embed;
pub(crate) mod error;
pub(crate) mod faults;
mod flag_values;
pub mod layout;
pub(crate) mod merge;
pub(crate) mod minimize;
pub(crate) mod report;
pub(crate) mod repro;
pub(crate) mod run;
pub(crate) mod selftest;
pub(crate) mod shared;
pub(crate) mod soak;
pub(crate) mod target;
pub(crate) mod worker;

use std::time::Duration;

use forcefield::CudaBackend;

use crate::case::BackendKind;
use crate::commands::backend_select::BackendChoice;
use crate::commands::error::CliError;
use crate::isolate::WorkerCommand;

/// This command line as a user would type it (`forcefield run --seed 1 ...`), for provenance.
pub fn invocation() -> String {
    let mut words = vec!["forcefield".to_string()];
    words.extend(std::env::args().skip(1));
    words.join(" ")
}

/// Parses `60s`, `10m`, `1h30m`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); try 60s, 10m or 1h"))
}

/// Worker processes for `--jobs` (`None`: not given) on `backend`. By default one per core on the
/// CPU backend, and one on CUDA: workers share the GPU, whose time-slicing between their contexts
/// makes every launch wait (measured on an H200: 16.5 cases/s with one worker, 10.2 with four);
/// `--gpus` gives one worker per GPU. Zero is an input error.
pub fn jobs(requested: Option<usize>, backend: BackendKind) -> Result<usize, CliError> {
    match requested {
        Some(0) => Err(CliError::input(anyhow::anyhow!(
            "--jobs must be at least 1"
        ))),
        Some(n) => Ok(n),
        None if backend == BackendKind::Cuda => Ok(1),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Cases a worker runs side by side for `--cases-per-worker` (`None`: not given) on `backend`: one
/// on the CPU backend (its workers already fill the cores), [`CUDA_CASES_PER_WORKER`] on CUDA,
/// whose one worker would otherwise leave the device idle between one case's small launches.
pub fn cases_per_worker(requested: Option<u64>, backend: BackendKind) -> usize {
    match (requested, backend) {
        (Some(k), _) => usize::try_from(k).unwrap_or(usize::MAX),
        (None, BackendKind::Cuda) => CUDA_CASES_PER_WORKER,
        (None, _) => 1,
    }
}

/// The default of `--cases-per-worker` on CUDA.
pub const CUDA_CASES_PER_WORKER: usize = 8;

/// Refuses a `--gpus` list that names a device this machine does not have (`count` devices seen),
/// or the same device twice, before any work: one line, exit 3 for a missing device (the
/// machine's fault, as for `--backend cuda` without one), exit 2 for a repeated one.
pub fn check_gpus(gpus: &[u32], count: usize) -> Result<(), CliError> {
    for (i, &g) in gpus.iter().enumerate() {
        if gpus[..i].contains(&g) {
            return Err(CliError::input(anyhow::anyhow!(
                "--gpus names GPU {g} twice"
            )));
        }
        if g as usize >= count {
            let seen = match count {
                0 => "no CUDA device".to_string(),
                1 => "1 CUDA device (0)".to_string(),
                n => format!("{n} CUDA devices (0 to {})", n - 1),
            };
            return Err(CliError::environment(anyhow::anyhow!(
                "--gpus names GPU {g}, but this machine has {seen}"
            )));
        }
    }
    Ok(())
}

/// The backend kind a campaign or replay runs on. `cuda` without a usable device is an environment
/// error (exit 3); `auto` falls back to the CPU and says so on stderr.
pub fn backend_kind(choice: BackendChoice) -> Result<BackendKind, CliError> {
    match choice {
        BackendChoice::Cpu => Ok(BackendKind::Cpu),
        BackendChoice::Cuda => {
            if CudaBackend::is_available() {
                Ok(BackendKind::Cuda)
            } else {
                Err(CliError::environment(anyhow::anyhow!(
                    "--backend cuda: no usable CUDA device on this machine"
                )))
            }
        }
        BackendChoice::Auto => {
            let kind = if CudaBackend::is_available() {
                BackendKind::Cuda
            } else {
                BackendKind::Cpu
            };
            eprintln!("backend: {} (auto)", kind.name());
            Ok(kind)
        }
    }
}

/// How to start a worker of this binary: `forcefield worker --threads N`.
pub fn worker_command(threads: usize) -> Result<WorkerCommand, CliError> {
    Ok(crate::client::start::worker_command(threads)?)
}

/// How to start a worker of this executable hosting `source` (`forcefield worker --threads 1
/// --target CMD`; an embedding executable's worker hosts its embedded engine by default).
pub fn target_worker_command(
    source: &crate::worker::target_job::TargetSource,
) -> Result<WorkerCommand, CliError> {
    let mut command = worker_command(1)?;
    for arg in source.worker_args() {
        command = command.arg(arg);
    }
    Ok(command)
}

/// A failed writability check as a command error: input (exit 2) when the path cannot be what
/// it must be (a directory named as a file, a path under a regular file), environment (exit 3)
/// otherwise (permissions, a read-only file system).
fn output_error(path: &std::path::Path, e: std::io::Error) -> CliError {
    use std::io::ErrorKind::{AlreadyExists, IsADirectory, NotADirectory};
    let kind = e.kind();
    let e = anyhow::anyhow!("cannot write to {}: {e}", path.display());
    match kind {
        NotADirectory | IsADirectory | AlreadyExists => CliError::input(e),
        _ => CliError::environment(e),
    }
}

/// Checks, before any work, that the output file `path` can be written (see
/// [`crate::artifacts::check_file_writable`]).
pub fn check_output_file(path: &std::path::Path) -> Result<(), CliError> {
    crate::artifacts::check_file_writable(path).map_err(|e| output_error(path, e))
}

/// Checks, before any work, that files can be written in the output directory `dir`.
pub fn check_output_dir(dir: &std::path::Path) -> Result<(), CliError> {
    crate::artifacts::check_dir_writable(dir).map_err(|e| output_error(dir, e))
}

/// Reads and validates a case file; every problem is an input error (exit 2).
pub fn read_case(path: &std::path::Path) -> Result<crate::case::Case, CliError> {
    let limit = crate::case::MAX_CASE_BYTES as u64;
    let text = crate::input::read_bounded_string(path, limit, "case file")
        .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", path.display())))?;
    crate::case::Case::from_json(&text)
        .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_defaults_to_one_worker_and_zero_jobs_is_an_input_error() {
        assert_eq!(jobs(None, BackendKind::Cuda).unwrap(), 1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(jobs(None, BackendKind::Cpu).unwrap(), cores);
        assert_eq!(jobs(Some(3), BackendKind::Cuda).unwrap(), 3);
        assert_eq!(cases_per_worker(None, BackendKind::Cpu), 1);
        assert_eq!(
            cases_per_worker(None, BackendKind::Cuda),
            CUDA_CASES_PER_WORKER
        );
        assert_eq!(cases_per_worker(Some(3), BackendKind::Cuda), 3);
        let e = jobs(Some(0), BackendKind::Cpu).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::BAD_INPUT);
    }
}

#[cfg(test)]
mod gpu_list_tests {
    use super::check_gpus;

    #[test]
    fn a_missing_or_repeated_gpu_is_refused_with_its_exit_code() {
        assert!(check_gpus(&[0], 1).is_ok());
        assert!(check_gpus(&[0, 1], 2).is_ok());
        assert!(check_gpus(&[], 0).is_ok());
        let missing = check_gpus(&[0, 3], 2).unwrap_err();
        assert_eq!(missing.exit_code(), 3);
        assert_eq!(
            missing.to_string(),
            "--gpus names GPU 3, but this machine has 2 CUDA devices (0 to 1)"
        );
        assert_eq!(check_gpus(&[1, 1], 2).unwrap_err().exit_code(), 2);
    }
}
