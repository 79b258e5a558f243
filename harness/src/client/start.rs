/*!
Starting workers: the command line of a `forcefield worker` process (plain, under `--sanitize
checked`, or wrapped in a compute-sanitizer tool), and why one cannot be started
([`StartError`], which the command line maps to exit 2 or 3).
*/

use crate::isolate::WorkerCommand;
use crate::sanitizers::mode::SanitizeMode;

/// Why a worker command cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// What was asked cannot work (a compute-sanitizer tool on the CPU backend): exit 2.
    #[error("{0}")]
    Input(String),
    /// The machine lacks something (this program's path, a directory, the tool): exit 3.
    #[error("{0}")]
    Environment(String),
}

/// `forcefield worker --threads N`, this very executable re-run as a worker.
pub fn worker_command(threads: usize) -> Result<WorkerCommand, StartError> {
    let command = WorkerCommand::current_exe_worker().map_err(|e| {
        StartError::Environment(format!("cannot find this program to start workers: {e}"))
    })?;
    Ok(command.arg("--threads").arg(threads.to_string()))
}

/// How to start a worker under `mode`: `forcefield worker --threads N [--sanitize checked]`, or
/// that command wrapped in a compute-sanitizer tool.
pub fn sanitized_worker_command(
    threads: usize,
    mode: SanitizeMode,
) -> Result<WorkerCommand, StartError> {
    let command = worker_command(threads)?;
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
) -> Result<WorkerCommand, StartError> {
    let Some(tool) = mode.compute_sanitizer_tool() else {
        return Ok(command);
    };
    let dir = tool_output_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| StartError::Environment(format!("cannot create {}: {e}", dir.display())))?;
    let xml = crate::sanitizers::compute_sanitizer::worker_xml_pattern(&dir, tool);
    let wrapped = crate::sanitizers::compute_sanitizer::wrap_worker(command, tool, &xml)
        .map_err(|e| StartError::Environment(e.to_string()))?;
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
