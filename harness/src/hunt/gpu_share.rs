/*!
Several CUDA workers on one GPU through MPS, and the rule that keeps each finding its own case's.

One worker process runs at most ~75-85 cases a second on an H100, however many cases it runs side
by side: the driver serializes a process's calls into its context (`benches/GPU-NOTES.md`, round
5). Several processes without MPS time-slice the GPU (two: 43 cases/s); under MPS, the CUDA
Multi-Process Service, their work overlaps (four workers: ~200 cases/s). But MPS does not contain
faults: a fatal exception in one client — the illegal addresses this harness exists to provoke —
ends the context of every client of the server, and the server admits no new client until all of
them have exited. A shared worker's case may therefore fail for another worker's bug.

The rule: **a shared worker's verdict counts only when it is a pass.** A fault never makes a case
pass; everything else — a finding, a death, a poisoned context, a worker that could not start — is
re-run alone in a *private* worker, one started without the variables of [`SharedGpu`], which does
not connect to the server and has a context of its own, and that run's verdict is the case's (see
`hunt::campaign::batch::run_shared`). The shared worker is restarted, so that the server can
recover. A case that loses its context on purpose (an injected `lose-context`,
`Case::injects_lost_context`) runs privately from the start: in the shared context it would end
everyone's.

[`MpsDaemon`] starts a control daemon of the campaign's own, its pipe and log directories in a
temporary directory (so it meets no other MPS on the machine, and workers without its variables
never find it), and quits it when dropped.
*/

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::sanitizers::compute_sanitizer::{cuda_program_dirs, first_executable};

/// The MPS control program.
pub const MPS_CONTROL: &str = "nvidia-cuda-mps-control";

/// How long the control program may take to answer a command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How workers of a campaign share its GPU: the variables that connect a worker to the MPS server.
/// Workers started with them are *shared*; workers started without them are *private*.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedGpu {
    /// Added to a shared worker's environment.
    pub env: Vec<(OsString, OsString)>,
}

/// Why the campaign's MPS daemon could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MpsError {
    /// The control program is not installed where CUDA's programs are looked for.
    #[error("{MPS_CONTROL} not found (looked on PATH, in $CUDA_HOME/bin and the CUDA default)")]
    NotFound,
    /// Its temporary directory could not be made.
    #[error("cannot make a directory for the MPS daemon: {0}")]
    Directory(std::io::Error),
    /// The daemon did not start, or does not answer.
    #[error("the MPS daemon did not start: {0}")]
    Start(String),
}

/// A running MPS control daemon of this campaign; quit when dropped.
#[derive(Debug)]
pub struct MpsDaemon {
    control: PathBuf,
    dir: tempfile::TempDir,
}

impl MpsDaemon {
    /// Starts a control daemon with its own pipe and log directories, and checks that it answers.
    pub fn start() -> Result<Self, MpsError> {
        let control =
            first_executable(MPS_CONTROL, cuda_program_dirs()).ok_or(MpsError::NotFound)?;
        Self::start_with(control)
    }

    /// [`MpsDaemon::start`] with the control program at `control`.
    fn start_with(control: PathBuf) -> Result<Self, MpsError> {
        let dir = tempfile::Builder::new()
            .prefix("forcefield-mps-")
            .tempdir()
            .map_err(MpsError::Directory)?;
        for sub in ["pipe", "log"] {
            std::fs::create_dir(dir.path().join(sub)).map_err(MpsError::Directory)?;
        }
        let daemon = MpsDaemon { control, dir };
        let started = daemon
            .command()
            .arg("-d")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| MpsError::Start(format!("{}: {e}", daemon.control.display())))?;
        if !started.status.success() {
            return Err(MpsError::Start(failure(&started)));
        }
        // The daemon forks and returns at once; it is up when it answers on its pipe.
        let answer = daemon
            .ask("get_server_list")
            .map_err(|e| MpsError::Start(format!("it does not answer: {e}")))?;
        if !answer.status.success() {
            return Err(MpsError::Start(format!(
                "it does not answer: {}",
                failure(&answer)
            )));
        }
        Ok(daemon)
    }

    /// The variables that make a worker a client of this daemon's server.
    pub fn shared_gpu(&self) -> SharedGpu {
        SharedGpu {
            env: vec![
                ("CUDA_MPS_PIPE_DIRECTORY".into(), self.pipe_dir().into()),
                (
                    "CUDA_MPS_LOG_DIRECTORY".into(),
                    self.dir.path().join("log").into(),
                ),
            ],
        }
    }

    fn pipe_dir(&self) -> PathBuf {
        self.dir.path().join("pipe")
    }

    /// The control program with this daemon's directories.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.control);
        for (key, value) in self.shared_gpu().env {
            command.env(key, value);
        }
        command
    }

    /// Sends one command to the daemon on the control program's standard input.
    fn ask(&self, line: &str) -> std::io::Result<Output> {
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{line}")?;
        }
        let began = Instant::now();
        while child.try_wait()?.is_none() {
            if began.elapsed() > ANSWER_TIMEOUT {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output()
    }

    /// The directory that holds the daemon's pipes and logs.
    pub fn directory(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MpsDaemon {
    fn drop(&mut self) {
        // Quitting stops the server too; its clients (our workers) are gone by now.
        let _ = self.ask("quit");
    }
}

/// One line of what a failed control command said.
fn failure(output: &Output) -> String {
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said.trim();
    let said = if said.is_empty() {
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    } else {
        said.to_string()
    };
    match said.lines().next() {
        Some(line) => format!("{} ({line})", output.status),
        None => output.status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the control program: logs its arguments, its pipe directory and what it
    /// reads, and fails `-d` when `fail` is set.
    fn fake_control(dir: &Path, fail: bool) -> PathBuf {
        let program = dir.join(MPS_CONTROL);
        let log = dir.join("calls.log");
        let script = format!(
            "#!/bin/sh\n\
             if [ \"$1\" = -d ]; then echo \"start $CUDA_MPS_PIPE_DIRECTORY\" >> {log}; {fail}exit 0; fi\n\
             read line; echo \"ask $line $CUDA_MPS_PIPE_DIRECTORY\" >> {log}\n",
            log = log.display(),
            fail = if fail { "echo 'An instance of this daemon is already running' >&2; exit 1; " } else { "" },
        );
        std::fs::write(&program, script).unwrap();
        let mut perms = std::fs::metadata(&program).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&program, perms).unwrap();
        program
    }

    #[test]
    fn the_daemon_is_started_in_its_own_directory_checked_and_quit_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = MpsDaemon::start_with(fake_control(dir.path(), false)).unwrap();
        let pipe = daemon.directory().join("pipe");
        assert!(pipe.is_dir());
        let shared = daemon.shared_gpu();
        assert!(shared
            .env
            .contains(&("CUDA_MPS_PIPE_DIRECTORY".into(), pipe.clone().into())));
        let own = daemon.directory().to_path_buf();
        drop(daemon);
        let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap();
        let pipe = pipe.display();
        assert_eq!(
            calls,
            format!("start {pipe}\nask get_server_list {pipe}\nask quit {pipe}\n")
        );
        assert!(!own.exists(), "the daemon's directory is removed with it");
    }

    #[test]
    fn a_daemon_that_does_not_start_is_an_error_that_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let error = MpsDaemon::start_with(fake_control(dir.path(), true)).unwrap_err();
        let line = error.to_string();
        assert!(line.starts_with("the MPS daemon did not start"), "{line}");
        assert!(line.contains("already running"), "{line}");
    }
}
