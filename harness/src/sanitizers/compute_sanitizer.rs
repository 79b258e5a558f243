/*!
NVIDIA compute-sanitizer: running the CUDA engine under its four checking tools, and reading what
they report.

This module is responsible for the whole conversation with `compute-sanitizer`:

* finding the program ([`find_tool`]: `PATH`, then `$CUDA_HOME/bin`, then `/usr/local/cuda/bin`),
  and saying so in one line ([`ToolMissing`]) when it is absent;
* building the command line, with the options that make each [`Tool`] strict, around a worker
  ([`wrap_worker`]) or around a `forcefield repro` of one case ([`rerun_under_tools`]);
* parsing the `--xml --save` file into [`SanitizerRecord`]s ([`parse_xml`], [`read_xml`]) and the
  text it prints into a [`TextReport`] ([`parse_text`]): the text alone carries the distance to the
  nearest allocation and the true error totals (the XML stops at the print limit);
* naming a finding ([`signature_for`]: `sanitizer:<tool>-<error>:<kernel>`, the project's
  `class:detail:site` form) and summarising a run per tool ([`ToolReport`], [`ToolVerdict`],
  [`render_markdown`]);
* re-running one case under a tool ([`rerun_with`]); re-running the findings a campaign wrote
  is [`crate::hunt::sanitizer_findings`].

# How a run is judged

Every command carries `--error-exitcode 86` ([`SANITIZER_EXIT_CODE`]): compute-sanitizer exits 0
on errors unless told otherwise, and any other code is the program's own (`forcefield repro`:
0 pass, 1 finding, 3 no CUDA). The XML is the structured record; an empty
`<ComputeSanitizerOutput/>` is a clean run, while a missing or empty file is reported as such,
never as clean: the tool did not start, was killed, or the program never initialized CUDA (then
compute-sanitizer writes no file at all).

**Architecture Invariant:** nothing here needs a GPU or compute-sanitizer to be tested: the parsers
take text, the command builders take the program's path, and the runner takes the sanitizer's path,
so tests use real saved output and a stand-in script.
*/

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::case::BackendKind;
use crate::isolate::{run_in_group, GroupEnd, GroupLimits, WorkerCommand};

// What the tool reports is read in `sanitizer_report`; re-exported, as one conversation.
pub use crate::sanitizers::sanitizer_report::*;

/// The exit code compute-sanitizer is told to use when it reported errors.
pub const SANITIZER_EXIT_CODE: i32 = 86;
/// The program's file name.
pub const PROGRAM: &str = "compute-sanitizer";
/// Where the CUDA toolkit puts it when nothing else says.
pub(crate) const DEFAULT_CUDA_BIN: &str = "/usr/local/cuda/bin";
/// The largest XML or text file read back; real ones are far smaller, because the tool stops
/// printing at its print limit (100 errors by default).
pub(crate) const MAX_READ_BYTES: u64 = 64 << 20;
/// Between SIGTERM and SIGKILL for a run past its timeout: long enough for compute-sanitizer to
/// close its files.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a SIGKILLed run to disappear before reaping it in the background (a
/// process stuck in the GPU driver can outlive SIGKILL for a while).
const KILL_WAIT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------------------------------------
// Tools and command lines
// ------------------------------------------------------------------------------------------------

/// One of compute-sanitizer's checking tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// Out-of-bounds and misaligned accesses, hardware exceptions, API errors, leaks.
    Memcheck,
    /// Shared-memory data races.
    Racecheck,
    /// Reads of device memory never written.
    Initcheck,
    /// Invalid uses of synchronization primitives.
    Synccheck,
}

impl Tool {
    /// Every tool, in the order a re-run goes through them.
    pub const ALL: [Tool; 4] = [
        Tool::Memcheck,
        Tool::Racecheck,
        Tool::Initcheck,
        Tool::Synccheck,
    ];

    /// What the tool checks, in one line (the command line's help for `--tool NAME`).
    pub const fn description(self) -> &'static str {
        match self {
            Tool::Memcheck => {
                "Out-of-bounds and misaligned accesses, hardware exceptions, API errors, leaks"
            }
            Tool::Racecheck => "Shared-memory data races",
            Tool::Initcheck => "Reads of device memory never written",
            Tool::Synccheck => "Invalid uses of synchronization primitives",
        }
    }

    /// The name `--tool` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Tool::Memcheck => "memcheck",
            Tool::Racecheck => "racecheck",
            Tool::Initcheck => "initcheck",
            Tool::Synccheck => "synccheck",
        }
    }

    /// The options, after `--tool NAME`, that make the tool report everything it can see. Each
    /// was checked against compute-sanitizer 2025.3's `--help` and run on the clean engine on the
    /// GPU machine without a report.
    ///
    /// * memcheck: `--leak-check full` (leaks are errors); `--padding 32` (32 bytes after every
    ///   allocation, so an access just past the end lands in no neighbour and is always out of
    ///   bounds); `--check-device-heap yes` (device-side `malloc`); `--report-api-errors all`
    ///   (failing API calls, the driver's implicit ones too); `--check-cache-control` (misused
    ///   cache-control instructions); `--track-stream-ordered-races all` (stream-ordered
    ///   allocations used before their allocation or after their free);
    ///   `--detect-missing-module-unload` (modules never unloaded: valid because the engine uses
    ///   the driver API only, never the CUDA runtime).
    /// * racecheck: `--racecheck-report all` (each hazard as well as the analysis of them).
    /// * initcheck: `--check-api-memory-access yes` (copies and sets that read never-written
    ///   memory, the default, stated because it is the check that matters most for resizes).
    ///   Not `--track-unused-memory`: the engine reserves capacity ahead of use by design, and the
    ///   clean engine gets hundreds of "unused memory" reports with it.
    /// * synccheck: the defaults.
    pub const fn strict_options(self) -> &'static [&'static str] {
        match self {
            Tool::Memcheck => &[
                "--leak-check",
                "full",
                "--padding",
                "32",
                "--check-device-heap",
                "yes",
                "--report-api-errors",
                "all",
                "--check-cache-control",
                "--track-stream-ordered-races",
                "all",
                "--detect-missing-module-unload",
            ],
            Tool::Racecheck => &["--racecheck-report", "all"],
            Tool::Initcheck => &["--check-api-memory-access", "yes"],
            Tool::Synccheck => &[],
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Tool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tool::ALL
            .into_iter()
            .find(|tool| tool.name() == s)
            .ok_or_else(|| {
                format!("`{s}` is not a compute-sanitizer tool (memcheck, racecheck, initcheck, synccheck)")
            })
    }
}

/// compute-sanitizer is not installed where we looked. Its message is one line, for the CLI to
/// print before exiting with code 3.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{PROGRAM} not found (looked in {}): install the CUDA toolkit or put its bin directory on PATH",
    .searched.join(", ")
)]
pub struct ToolMissing {
    /// The places searched, in order, as a person would name them (`PATH`, `$CUDA_HOME/bin`, ...).
    pub searched: Vec<String>,
}

/// Finds compute-sanitizer: on `PATH`, then in `$CUDA_HOME/bin`, then in
/// [`DEFAULT_CUDA_BIN`].
pub fn find_tool() -> Result<PathBuf, ToolMissing> {
    find_tool_in(
        std::env::var_os("PATH").as_deref(),
        std::env::var_os("CUDA_HOME").as_deref(),
        &[Path::new(DEFAULT_CUDA_BIN)],
    )
}

/// [`find_tool`] with the search spelled out: a `PATH`-style list, a CUDA home whose `bin` is
/// searched, and directories searched last. Only an executable regular file counts.
pub fn find_tool_in(
    path_list: Option<&OsStr>,
    cuda_home: Option<&OsStr>,
    fallback_dirs: &[&Path],
) -> Result<PathBuf, ToolMissing> {
    let mut searched = vec!["PATH".to_string()];
    // An empty PATH entry means the working directory: never run a program from there by chance.
    let mut candidates: Vec<PathBuf> = path_list
        .map(|list| {
            std::env::split_paths(list)
                .filter(|dir| !dir.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = cuda_home.filter(|home| !home.is_empty()) {
        searched.push("$CUDA_HOME/bin".to_string());
        candidates.push(Path::new(home).join("bin"));
    }
    for dir in fallback_dirs {
        searched.push(dir.display().to_string());
        candidates.push(dir.to_path_buf());
    }
    first_executable(PROGRAM, candidates).ok_or(ToolMissing { searched })
}

/// `program` in the first of `dirs` where it is an executable regular file.
pub(crate) fn first_executable(
    program: &str,
    dirs: impl IntoIterator<Item = PathBuf>,
) -> Option<PathBuf> {
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))
}

/// The directories of a `PATH`-style list, then `$CUDA_HOME/bin`, then [`DEFAULT_CUDA_BIN`]: where
/// CUDA's programs are looked for. An empty `PATH` entry (the working directory) is skipped.
pub(crate) fn cuda_program_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|list| {
            std::env::split_paths(&list)
                .filter(|dir| !dir.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CUDA_HOME").filter(|home| !home.is_empty()) {
        dirs.push(Path::new(&home).join("bin"));
    }
    dirs.push(PathBuf::from(DEFAULT_CUDA_BIN));
    dirs
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The arguments between `compute-sanitizer` and the program it runs:
/// `--tool T <strict options> --error-exitcode 86 --xml --save XML`.
pub(crate) fn sanitizer_args(tool: Tool, xml: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--tool".into(), tool.name().into()];
    args.extend(tool.strict_options().iter().map(OsString::from));
    args.extend([
        "--error-exitcode".into(),
        SANITIZER_EXIT_CODE.to_string().into(),
        "--xml".into(),
        "--save".into(),
        xml.as_os_str().to_owned(),
    ]);
    args
}

/// `cmd` run under `sanitizer` with `tool`, its findings saved as XML to `xml`; the environment
/// is kept. Pure: nothing is looked up or started.
pub fn wrap_command(sanitizer: &Path, cmd: WorkerCommand, tool: Tool, xml: &Path) -> WorkerCommand {
    let mut args = sanitizer_args(tool, xml);
    args.push(cmd.program.into_os_string());
    args.extend(cmd.args);
    WorkerCommand {
        program: sanitizer.to_path_buf(),
        args,
        env: cmd.env,
    }
}

/// The `--save` name for workers wrapped with `tool`, writing into `dir`: `<tool>-worker-%p.xml`.
pub fn worker_xml_pattern(dir: &Path, tool: Tool) -> PathBuf {
    dir.join(format!("{tool}-worker-%p.xml"))
}

/// The file [`worker_xml_pattern`] becomes for the worker process `pid` (the `worker_pid` of its
/// executions: under the wrapper, that is compute-sanitizer's pid, which `%p` names).
pub fn worker_xml_path(dir: &Path, tool: Tool, pid: u32) -> PathBuf {
    dir.join(format!("{tool}-worker-{pid}.xml"))
}

/// `cmd` (a worker) run under compute-sanitizer with `tool`, its findings saved as XML to `xml`.
///
/// One worker process writes one XML file, when it exits, and a slot reuses its command for every
/// worker it starts: pass [`worker_xml_pattern`] (a name with `%p`, which compute-sanitizer
/// replaces by its own process id, the pid the slot started) so that each worker gets its own
/// file, and find it afterwards with [`worker_xml_path`].
pub(crate) fn wrap_worker(
    cmd: WorkerCommand,
    tool: Tool,
    xml: &Path,
) -> Result<WorkerCommand, ToolMissing> {
    Ok(wrap_command(&find_tool()?, cmd, tool, xml))
}

// ------------------------------------------------------------------------------------------------
// Re-running a case under each tool
// ------------------------------------------------------------------------------------------------

/// How a wrapped run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum RunStatus {
    /// It exited: [`SANITIZER_EXIT_CODE`] when the tool reported errors, else the program's code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// It was killed by a signal it did not ask for.
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// It ran past the timeout; its process group was killed.
    TimedOut {
        /// The timeout, in milliseconds.
        after_ms: u64,
    },
    /// It could not be started.
    NotStarted {
        /// Why.
        message: String,
    },
    /// It was stopped (Ctrl-C) before it finished; its process group was killed.
    Interrupted,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunStatus::Exited { code } if *code == SANITIZER_EXIT_CODE => {
                write!(f, "exit {code} (errors reported)")
            }
            RunStatus::Exited { code } => write!(f, "exit {code}"),
            RunStatus::Signaled { signal } => match Signal::try_from(*signal) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
            RunStatus::TimedOut { after_ms } => {
                write!(f, "timed out after {:.1} s", *after_ms as f64 / 1000.0)
            }
            RunStatus::NotStarted { message } => write!(f, "not started: {message}"),
            RunStatus::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// What one tool said about one case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolReport {
    /// The tool.
    pub tool: Tool,
    /// The case file run.
    pub case: PathBuf,
    /// How the run ended.
    pub status: RunStatus,
    /// Every error the tool counted (its `ERROR SUMMARY`), printed or not.
    pub errors: Option<u64>,
    /// Records in the XML, by kind.
    pub counts: BTreeMap<String, usize>,
    /// The first few records, most important first, one line each.
    pub findings: Vec<String>,
    /// The signature of the main record ([`signature_for`]).
    pub signature: Option<String>,
    /// The main record's [`SanitizerRecord::headline`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// The signature `forcefield repro` printed for the case, if it printed one: the finding as the
    /// harness sees it, next to the tool's.
    pub program_signature: Option<String>,
    /// Why the XML could not be used (missing, empty, malformed); `None` when it was read.
    pub problem: Option<String>,
    /// The XML file.
    pub xml: PathBuf,
    /// The text output (compute-sanitizer's and the program's).
    pub log: PathBuf,
}

impl ToolReport {
    /// Whether the tool reported anything: a record, or its error exit code.
    pub fn flagged(&self) -> bool {
        self.counts.values().any(|&n| n > 0)
            || self.status
                == (RunStatus::Exited {
                    code: SANITIZER_EXIT_CODE,
                })
    }

    /// What the run came to: errors, clean, or nothing to go by. Clean needs a run that ended
    /// by itself and an XML file that was read and holds no record: a run that left no usable
    /// XML, timed out, was killed or was interrupted is [`ToolVerdict::Inconclusive`], however
    /// quiet it was.
    pub fn verdict(&self) -> ToolVerdict {
        let records: usize = self.counts.values().sum();
        let exited = matches!(self.status, RunStatus::Exited { .. });
        if self.flagged() {
            ToolVerdict::Errors {
                errors: self.errors.filter(|&n| n > 0).unwrap_or(records as u64),
                headline: self.headline.clone(),
            }
        } else if exited && self.problem.is_none() {
            ToolVerdict::Clean
        } else {
            let mut reason = self.status.to_string();
            if let Some(problem) = &self.problem {
                reason.push_str(&format!("; {problem}"));
            }
            ToolVerdict::Inconclusive { reason }
        }
    }
}

/// What one tool's run on one case came to, in the fewest words ([`ToolReport::verdict`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum ToolVerdict {
    /// The tool ran to its end, wrote its XML, and reported nothing.
    Clean,
    /// The tool reported errors.
    Errors {
        /// How many: its `ERROR SUMMARY` (or hazard count), else the records in the XML. 0 when
        /// only the exit code says so.
        errors: u64,
        /// The main record's [`SanitizerRecord::headline`], when the XML was read.
        headline: Option<String>,
    },
    /// Nothing can be concluded: the run did not end by itself, or left no usable XML.
    Inconclusive {
        /// How the run ended, and what is wrong with its XML.
        reason: String,
    },
}

impl fmt::Display for ToolVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolVerdict::Clean => f.write_str("clean"),
            ToolVerdict::Errors { errors, headline } => {
                match errors {
                    0 => f.write_str("errors reported")?,
                    1 => f.write_str("1 error")?,
                    n => write!(f, "{n} errors")?,
                }
                match headline {
                    Some(headline) => write!(f, " ({headline})"),
                    None => f.write_str(" (no record read)"),
                }
            }
            ToolVerdict::Inconclusive { reason } => write!(f, "no verdict: {reason}"),
        }
    }
}

/// One finished run of a tool: what [`summarize`] needs besides the files' contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ToolRun {
    /// The tool.
    pub tool: Tool,
    /// The case file run.
    pub case: PathBuf,
    /// How the run ended.
    pub status: RunStatus,
    /// Where its XML was to be saved.
    pub xml: PathBuf,
    /// Where its text output went.
    pub log: PathBuf,
}

/// Builds a [`ToolReport`] from what one run left: its XML (or why there is none) and its text
/// output. Keeps at most `max_findings` finding lines.
pub(crate) fn summarize(
    run: ToolRun,
    xml: Result<SanitizerReport, ReadError>,
    text: &TextReport,
    max_findings: usize,
) -> ToolReport {
    let mut report = ToolReport {
        tool: run.tool,
        case: run.case,
        status: run.status,
        // racecheck prints no ERROR SUMMARY; its hazard summary counts the errors.
        errors: text.errors.or(text.hazards.map(|(_, errors, _)| errors)),
        counts: BTreeMap::new(),
        findings: Vec::new(),
        signature: None,
        headline: None,
        program_signature: text.program_signature.clone(),
        problem: None,
        xml: run.xml,
        log: run.log,
    };
    match xml {
        Ok(mut parsed) => {
            parsed.attach_text(text);
            report.counts = parsed.counts();
            report.signature = parsed.signature();
            report.headline = main_record(&parsed.records).map(SanitizerRecord::headline);
            let mut ordered: Vec<&SanitizerRecord> = parsed.records.iter().collect();
            // Stable: within a rank, the file's order.
            ordered.sort_by_key(|r| rank(r));
            report.findings = ordered
                .into_iter()
                .take(max_findings)
                .map(SanitizerRecord::one_line)
                .collect();
        }
        Err(error) => report.problem = Some(error_chain(&error)),
    }
    report
}

/// How [`rerun_under_tools`] runs each tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RerunOptions {
    /// Where each tool's XML (`<tool>.xml`) and text output (`<tool>.txt`) go; created if needed.
    pub out_dir: PathBuf,
    /// Per tool. compute-sanitizer slows kernels by 10-100 times: leave room.
    pub timeout: Duration,
    /// Finding lines kept per tool.
    pub max_findings: usize,
}

impl RerunOptions {
    /// Files in `out_dir`, 10 minutes per tool, 5 finding lines.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            out_dir: out_dir.into(),
            timeout: Duration::from_secs(600),
            max_findings: 5,
        }
    }
}

/// Why a re-run could not happen at all (a single tool's failure is in its [`ToolReport`]).
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    /// compute-sanitizer is not installed.
    #[error(transparent)]
    ToolMissing(#[from] ToolMissing),
    /// The running program could not be found, to run `repro` under the tool.
    #[error("cannot find this program to re-run the case")]
    CurrentExe(#[source] io::Error),
    /// The output directory could not be created.
    #[error("cannot create {}", .path.display())]
    OutDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Re-runs `case` under each of `tools`: `compute-sanitizer --tool T ... <this program> repro
/// --in-process --backend B CASE`, one after another, each under `options.timeout`, and says per
/// tool what it reported. Errors only when nothing can run (no compute-sanitizer, no output
/// directory).
pub(crate) fn rerun_under_tools(
    case: &Path,
    backend: BackendKind,
    tools: &[Tool],
    options: &RerunOptions,
) -> Result<Vec<ToolReport>, RerunError> {
    let sanitizer = find_tool()?;
    let program = std::env::current_exe().map_err(RerunError::CurrentExe)?;
    rerun_with(&sanitizer, &program, case, backend, tools, options)
}

/// [`rerun_under_tools`] with the sanitizer and the `forcefield` program given.
pub fn rerun_with(
    sanitizer: &Path,
    program: &Path,
    case: &Path,
    backend: BackendKind,
    tools: &[Tool],
    options: &RerunOptions,
) -> Result<Vec<ToolReport>, RerunError> {
    std::fs::create_dir_all(&options.out_dir).map_err(|source| RerunError::OutDir {
        path: options.out_dir.clone(),
        source,
    })?;
    let never = AtomicBool::new(false);
    let reports = tools
        .iter()
        .map(|&tool| rerun_one(sanitizer, program, case, backend, tool, options, &never))
        .collect();
    Ok(reports)
}

/// One tool of [`rerun_with`], into the existing `options.out_dir`; `stop` ends the run early
/// ([`RunStatus::Interrupted`]).
pub(crate) fn rerun_one(
    sanitizer: &Path,
    program: &Path,
    case: &Path,
    backend: BackendKind,
    tool: Tool,
    options: &RerunOptions,
    stop: &AtomicBool,
) -> ToolReport {
    let repro = WorkerCommand::new(program)
        .arg("repro")
        .arg("--in-process")
        .arg("--backend")
        .arg(backend.name())
        .arg(case.as_os_str());
    let xml = options.out_dir.join(format!("{tool}.xml"));
    let log = options.out_dir.join(format!("{tool}.txt"));
    let wrapped = wrap_command(sanitizer, repro, tool, &xml);
    let status = run_to_files(&wrapped, &xml, &log, options.timeout, stop);
    let text = parse_text(&read_tail(&log, MAX_READ_BYTES).unwrap_or_default());
    let xml_report = read_xml(tool, &xml);
    let run = ToolRun {
        tool,
        case: case.to_path_buf(),
        status,
        xml,
        log,
    };
    summarize(run, xml_report, &text, options.max_findings)
}

/// Runs `cmd` in its own process group, stdout and stderr into `log`, killing the group past
/// `timeout` or once `stop` is set. A stale `xml` from an earlier run is removed first, so it is
/// never read as this run's.
fn run_to_files(
    cmd: &WorkerCommand,
    xml: &Path,
    log: &Path,
    timeout: Duration,
    stop: &AtomicBool,
) -> RunStatus {
    let not_started = |what: &str, e: io::Error| RunStatus::NotStarted {
        message: format!("{what}: {e}"),
    };
    match std::fs::remove_file(xml) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return not_started(&format!("cannot remove {}", xml.display()), e),
    }
    let out = match File::create(log) {
        Ok(file) => file,
        Err(e) => return not_started(&format!("cannot create {}", log.display()), e),
    };
    let err = match out.try_clone() {
        Ok(file) => file,
        Err(e) => return not_started(&format!("cannot share {}", log.display()), e),
    };
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdout(out)
        .stderr(err);
    let limits = GroupLimits {
        timeout,
        term_grace: TERM_GRACE,
        kill_wait: KILL_WAIT,
    };
    match run_in_group(&mut command, &limits, stop) {
        Ok(GroupEnd::Exited { code }) => RunStatus::Exited { code },
        Ok(GroupEnd::Signaled { signal }) => RunStatus::Signaled { signal },
        Ok(GroupEnd::TimedOut) => RunStatus::TimedOut {
            after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        },
        Ok(GroupEnd::Stopped) => RunStatus::Interrupted,
        Err(e) => not_started(&format!("cannot start {}", cmd.program.display()), e),
    }
}

/// The last `max` bytes of `path`, lossily decoded (the summaries are at the end).
fn read_tail(path: &Path, max: u64) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        file.seek(SeekFrom::Start(len - max))?;
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

// ------------------------------------------------------------------------------------------------
// Reports
// ------------------------------------------------------------------------------------------------

/// A markdown section on what each tool said: a table (tool, how it ended, errors, records by
/// kind, signature), then each tool's first findings.
pub fn render_markdown(reports: &[ToolReport]) -> String {
    let mut out = String::from("### compute-sanitizer\n\n");
    if reports.is_empty() {
        out.push_str("No tool was run.\n");
        return out;
    }
    out.push_str("| tool | run | errors | records | signature |\n|---|---|---|---|---|\n");
    for report in reports {
        let records = if report.counts.is_empty() {
            match &report.problem {
                Some(_) => "no XML".to_string(),
                None => "none".to_string(),
            }
        } else {
            report
                .counts
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let errors = report
            .errors
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".to_string());
        let signature = report
            .signature
            .as_deref()
            .map(|s| format!("`{s}`"))
            .unwrap_or_else(|| "-".to_string());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            report.tool,
            cell(&report.status.to_string()),
            errors,
            cell(&records),
            cell(&signature),
        ));
    }
    for report in reports {
        let has_detail = !report.findings.is_empty()
            || report.problem.is_some()
            || report.program_signature.is_some();
        if !has_detail {
            continue;
        }
        out.push_str(&format!("\n**{}**", report.tool));
        if let Some(signature) = &report.program_signature {
            out.push_str(&format!(" (the case's own signature: `{signature}`)"));
        }
        out.push('\n');
        if let Some(problem) = &report.problem {
            out.push_str(&format!("- no findings read: {problem}\n"));
        }
        for finding in &report.findings {
            out.push_str(&format!("- {finding}\n"));
        }
        let shown = report.findings.len();
        let total: usize = report.counts.values().sum();
        if total > shown {
            out.push_str(&format!(
                "- ... {} more records in `{}`\n",
                total - shown,
                report.xml.display()
            ));
        }
    }
    out
}

/// Text safe in a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
