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
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::case::BackendKind;
use crate::isolate::WorkerCommand;

/// The exit code compute-sanitizer is told to use when it reported errors.
pub const SANITIZER_EXIT_CODE: i32 = 86;
/// The program's file name.
pub const PROGRAM: &str = "compute-sanitizer";
/// Where the CUDA toolkit puts it when nothing else says.
pub const DEFAULT_CUDA_BIN: &str = "/usr/local/cuda/bin";
/// The largest XML or text file read back; real ones are far smaller, because the tool stops
/// printing at its print limit (100 errors by default).
const MAX_READ_BYTES: u64 = 64 << 20;
/// Between SIGTERM and SIGKILL for a run past its timeout: long enough for compute-sanitizer to
/// close its files.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a SIGKILLed run to disappear before reaping it in the background (a
/// process stuck in the GPU driver can outlive SIGKILL for a while).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often a bounded wait looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

// ------------------------------------------------------------------------------------------------
// Tools and command lines
// ------------------------------------------------------------------------------------------------

/// One of compute-sanitizer's checking tools.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
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
    candidates
        .into_iter()
        .map(|dir| dir.join(PROGRAM))
        .find(|candidate| is_executable_file(candidate))
        .ok_or(ToolMissing { searched })
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The arguments between `compute-sanitizer` and the program it runs:
/// `--tool T <strict options> --error-exitcode 86 --xml --save XML`.
pub fn sanitizer_args(tool: Tool, xml: &Path) -> Vec<OsString> {
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
pub fn wrap_worker(
    cmd: WorkerCommand,
    tool: Tool,
    xml: &Path,
) -> Result<WorkerCommand, ToolMissing> {
    Ok(wrap_command(&find_tool()?, cmd, tool, xml))
}

// ------------------------------------------------------------------------------------------------
// Records: the XML
// ------------------------------------------------------------------------------------------------

/// What a record reports, as the XML's `<kind>` names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum RecordKind {
    /// memcheck: an access error attributed to a kernel, thread and source line.
    Precise,
    /// A failing CUDA API call.
    Api,
    /// memcheck with `--leak-check full`: an allocation never freed.
    Leak,
    /// initcheck: a kernel read device memory never written.
    Initcheck,
    /// initcheck: an API call (a copy, say) read device memory never written.
    InitcheckApiError,
    /// initcheck with `--track-unused-memory`: an allocation never (fully) written.
    UnusedMemory,
    /// Any other kind (racecheck hazards, synccheck errors, hardware exceptions ...), by name:
    /// none was seen in real output yet, so none is named here.
    Other(String),
}

impl RecordKind {
    /// The XML name.
    pub fn as_str(&self) -> &str {
        match self {
            RecordKind::Precise => "Precise",
            RecordKind::Api => "Api",
            RecordKind::Leak => "Leak",
            RecordKind::Initcheck => "Initcheck",
            RecordKind::InitcheckApiError => "InitcheckApiError",
            RecordKind::UnusedMemory => "UnusedMemory",
            RecordKind::Other(name) => name,
        }
    }
}

impl From<String> for RecordKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "Precise" => RecordKind::Precise,
            "Api" => RecordKind::Api,
            "Leak" => RecordKind::Leak,
            "Initcheck" => RecordKind::Initcheck,
            "InitcheckApiError" => RecordKind::InitcheckApiError,
            "UnusedMemory" => RecordKind::UnusedMemory,
            _ => RecordKind::Other(name),
        }
    }
}

impl From<RecordKind> for String {
    fn from(kind: RecordKind) -> String {
        kind.as_str().to_string()
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side of the nearest allocation an access fell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Below its start.
    Before,
    /// Past its end.
    After,
}

/// The allocation nearest to an out-of-bounds access, as compute-sanitizer measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearestAllocation {
    /// Its start address.
    pub base: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The distance compute-sanitizer states, in bytes. It counts from the last byte of the
    /// allocation: an access starting right at its end is "1 bytes after".
    pub distance: u64,
    /// Before or after it.
    pub side: Side,
}

/// One frame of the host stack saved with a record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFrame {
    /// The function, when the module has symbols for it.
    pub func: Option<String>,
    /// The shared object or executable.
    pub module: Option<String>,
    /// The offset in the module.
    pub pc: Option<u64>,
}

/// One `<record>` of compute-sanitizer's XML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanitizerRecord {
    /// The tool that reported it.
    pub tool: Tool,
    /// `<kind>`.
    pub kind: RecordKind,
    /// `<level>` (`Error`, `Warning` ...), where given.
    pub level: Option<String>,
    /// `<what><text>`: compute-sanitizer's own sentence.
    pub text: String,
    /// `<what><error>`: `out of bounds`, `CUDA_ERROR_LAUNCH_FAILED` ...
    pub error: Option<String>,
    /// `<what><api>`: the failing API call of an `Api` record.
    pub api: Option<String>,
    /// `<what><message>`: the API error's description.
    pub message: Option<String>,
    /// `<what><space>`: the memory space accessed (`__global__`, `__shared__` ...).
    pub space: Option<String>,
    /// `<what><direction>`: `read` or `write`.
    pub direction: Option<String>,
    /// `<what><size>` or `<accessSize>`: bytes accessed (or leaked).
    pub size: Option<u64>,
    /// `<what><address>` or `<accessAddress>`: the address accessed (or leaked).
    pub address: Option<u64>,
    /// `<where><func>`: the kernel.
    pub kernel: Option<String>,
    /// `<where><path>`: its source file.
    pub file: Option<String>,
    /// `<where><line>`.
    pub line: Option<u32>,
    /// `<where><pc>`: the offset in the kernel.
    pub pc: Option<u64>,
    /// `<who><threadIdx>`.
    pub thread: Option<[u32; 3]>,
    /// `<who><blockIdx>`.
    pub block: Option<[u32; 3]>,
    /// The nearest allocation: not in the XML, filled from the text by
    /// [`SanitizerReport::attach_text`].
    pub nearest_allocation: Option<NearestAllocation>,
    /// `<hostStack><saveLocation>`: when the host stack was saved (`kernel launch time`, `error`,
    /// `allocation time`).
    pub host_stack_saved_at: Option<String>,
    /// `<hostStack><frame>`s, innermost first.
    pub host_frames: Vec<HostFrame>,
}

impl SanitizerRecord {
    /// Whether the record names a kernel: a device-side finding, not an API error or a leak.
    pub fn is_device_side(&self) -> bool {
        self.kernel.is_some()
    }

    /// The first named host frame: the API call at the top of the host stack.
    pub fn host_api(&self) -> Option<&str> {
        self.host_frames
            .iter()
            .find_map(|frame| frame.func.as_deref())
    }

    /// ` in KERNEL at FILE:LINE` (the file without its directory), or nothing for a host-side
    /// record.
    fn kernel_site(&self) -> String {
        let Some(kernel) = &self.kernel else {
            return String::new();
        };
        let mut site = format!(" in {kernel}");
        if let Some(file) = &self.file {
            let name = Path::new(file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.clone());
            match self.line {
                Some(n) => site.push_str(&format!(" at {name}:{n}")),
                None => site.push_str(&format!(" at {name}")),
            }
        }
        site
    }

    /// What and where, without the thread, the address or the allocation: compute-sanitizer's
    /// sentence and the kernel (`Invalid __global__ write of size 4 bytes in sort_scatter at
    /// layout.cu:196`), or the API call of a host-side record. Short enough for one line per tool.
    pub fn headline(&self) -> String {
        let mut line = self.text.trim().to_string();
        line.push_str(&self.kernel_site());
        if !self.is_device_side() {
            if let Some(api) = self.host_api() {
                line.push_str(&format!(" (host: {api})"));
            }
        }
        line
    }

    /// The record in one line, for reports.
    pub fn one_line(&self) -> String {
        let mut line = self.text.trim().to_string();
        line.push_str(&self.kernel_site());
        if let Some([x, y, z]) = self.thread {
            line.push_str(&format!(", thread ({x},{y},{z})"));
        }
        if let Some([x, y, z]) = self.block {
            line.push_str(&format!(" block ({x},{y},{z})"));
        }
        if let Some(address) = self.address {
            line.push_str(&format!(", address {address:#x}"));
        }
        if let Some(near) = &self.nearest_allocation {
            let side = match near.side {
                Side::Before => "before",
                Side::After => "after",
            };
            line.push_str(&format!(
                ", {} bytes {side} the {}-byte allocation at {:#x}",
                near.distance, near.size, near.base
            ));
        }
        if !self.is_device_side() {
            if let Some(api) = self.host_api() {
                line.push_str(&format!(" (host: {api})"));
            }
        }
        line
    }
}

/// Every record of one XML file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanitizerReport {
    /// The tool that wrote it.
    pub tool: Tool,
    /// Its records, in the file's order.
    pub records: Vec<SanitizerRecord>,
}

impl SanitizerReport {
    /// No records: the tool found nothing it prints.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// How many records of each kind, by XML name.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for record in &self.records {
            *counts.entry(record.kind.to_string()).or_insert(0) += 1;
        }
        counts
    }

    /// How many records of `kind`.
    pub fn count(&self, kind: &RecordKind) -> usize {
        self.records.iter().filter(|r| &r.kind == kind).count()
    }

    /// The signature of the report's main finding; see [`signature_for`].
    pub fn signature(&self) -> Option<String> {
        signature_for(&self.records)
    }

    /// Fills in what only the text output says: the nearest allocation of each out-of-bounds
    /// access, matched by address.
    pub fn attach_text(&mut self, text: &TextReport) {
        for record in &mut self.records {
            if record.nearest_allocation.is_some() {
                continue;
            }
            if let Some(address) = record.address {
                record.nearest_allocation = text.nearest_allocations.get(&address).copied();
            }
        }
    }
}

/// Why XML text is not a compute-sanitizer report.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed XML (truncated by a killed run, say).
    #[error("not well-formed XML")]
    Xml(#[from] roxmltree::Error),
    /// Well-formed, but not compute-sanitizer's.
    #[error("the root element is <{found}>, not <ComputeSanitizerOutput>")]
    WrongRoot {
        /// The root element's name.
        found: String,
    },
    /// A record without its `<kind>`.
    #[error("record {index} has no <kind>")]
    MissingKind {
        /// The record's position, from 0.
        index: usize,
    },
    /// A field that must be a number is not.
    #[error("record {index}: <{field}> is `{value}`, not a number")]
    BadNumber {
        /// The record's position, from 0.
        index: usize,
        /// The element.
        field: String,
        /// Its text.
        value: String,
    },
}

/// Why an XML file could not be read as a report.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// There is no file: compute-sanitizer did not start, or was killed before writing it.
    #[error("{}: no compute-sanitizer XML was written", .path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file is empty: compute-sanitizer stopped before finishing it.
    #[error("{}: the compute-sanitizer XML is empty", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Larger than any real report.
    #[error("{}: {bytes} bytes is too large for a compute-sanitizer XML", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// It could not be read.
    #[error("{}: cannot read", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It is not a report.
    #[error("{}: not a compute-sanitizer report", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ParseError,
    },
}

/// Reads and parses the XML file `path` written by `tool`. A missing or empty file is an error
/// ([`ReadError::Missing`], [`ReadError::Empty`]); `<ComputeSanitizerOutput/>` is an empty
/// report.
pub fn read_xml(tool: Tool, path: &Path) -> Result<SanitizerReport, ReadError> {
    let io_error = |source: io::Error| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ReadError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_error(e)),
    };
    if meta.len() > MAX_READ_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            bytes: meta.len(),
        });
    }
    let bytes = std::fs::read(path).map_err(io_error)?;
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return Err(ReadError::Empty {
            path: path.to_path_buf(),
        });
    }
    parse_xml(tool, &text).map_err(|source| ReadError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// What a wrapped run left, read together: the XML at `xml` with the nearest allocations its
/// text output `text` gives (a worker's captured output, say), and that text's summary.
pub fn read_report(
    tool: Tool,
    xml: &Path,
    text: &str,
) -> Result<(SanitizerReport, TextReport), ReadError> {
    let text = parse_text(text);
    let mut report = read_xml(tool, xml)?;
    report.attach_text(&text);
    Ok((report, text))
}

/// Parses the text of an XML file written by `tool` with `--xml --save`.
pub fn parse_xml(tool: Tool, xml: &str) -> Result<SanitizerReport, ParseError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    if root.tag_name().name() != "ComputeSanitizerOutput" {
        return Err(ParseError::WrongRoot {
            found: root.tag_name().name().to_string(),
        });
    }
    let records = root
        .children()
        .filter(|node| node.has_tag_name("record"))
        .enumerate()
        .map(|(index, node)| parse_record(tool, index, node))
        .collect::<Result<_, _>>()?;
    Ok(SanitizerReport { tool, records })
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|c| c.has_tag_name(name))
}

/// The trimmed text of child `name`, if it has any.
fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|c| c.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Parses `0x`-prefixed hexadecimal (addresses, pcs) or decimal (`accessAddress` is decimal).
fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.replace(',', "").parse().ok(),
    }
}

fn parse_record(
    tool: Tool,
    index: usize,
    node: roxmltree::Node<'_, '_>,
) -> Result<SanitizerRecord, ParseError> {
    let number =
        |parent: Option<roxmltree::Node<'_, '_>>, name: &str| -> Result<Option<u64>, ParseError> {
            match parent.and_then(|p| child_text(p, name)) {
                None => Ok(None),
                Some(value) => parse_number(&value).map(Some).ok_or(ParseError::BadNumber {
                    index,
                    field: name.to_string(),
                    value,
                }),
            }
        };
    let coords = |who: Option<roxmltree::Node<'_, '_>>,
                  name: &str|
     -> Result<Option<[u32; 3]>, ParseError> {
        let Some(node) = who.and_then(|w| child(w, name)) else {
            return Ok(None);
        };
        let mut xyz = [0u32; 3];
        for (slot, axis) in xyz.iter_mut().zip(["x", "y", "z"]) {
            let value = child_text(node, axis).unwrap_or_default();
            *slot = value.parse().map_err(|_| ParseError::BadNumber {
                index,
                field: format!("{name}.{axis}"),
                value,
            })?;
        }
        Ok(Some(xyz))
    };

    let kind = child_text(node, "kind").ok_or(ParseError::MissingKind { index })?;
    let what = child(node, "what");
    let place = child(node, "where");
    let who = child(node, "who");
    let line = number(place, "line")?
        .map(|n| {
            u32::try_from(n).map_err(|_| ParseError::BadNumber {
                index,
                field: "line".into(),
                value: n.to_string(),
            })
        })
        .transpose()?;
    // Access records say `size`/`address`, initcheck's API records `accessSize`/`accessAddress`
    // (in decimal), unused-memory records the `<allocation>` they are about.
    let allocation = what.and_then(|w| child(w, "allocation"));
    let size = match number(what, "size")? {
        Some(size) => Some(size),
        None => match number(what, "accessSize")? {
            Some(size) => Some(size),
            None => number(allocation, "size")?,
        },
    };
    let address = match number(what, "address")? {
        Some(address) => Some(address),
        None => match number(what, "accessAddress")? {
            Some(address) => Some(address),
            None => number(allocation, "address")?,
        },
    };
    let stack = child(node, "hostStack");
    let host_frames = match stack {
        None => Vec::new(),
        Some(stack) => stack
            .children()
            .filter(|c| c.has_tag_name("frame"))
            .map(|frame| {
                Ok(HostFrame {
                    func: child_text(frame, "func"),
                    module: child_text(frame, "module"),
                    pc: number(Some(frame), "pc")?,
                })
            })
            .collect::<Result<_, ParseError>>()?,
    };
    Ok(SanitizerRecord {
        tool,
        kind: RecordKind::from(kind),
        level: child_text(node, "level"),
        text: what.and_then(|w| child_text(w, "text")).unwrap_or_default(),
        error: what.and_then(|w| child_text(w, "error")),
        api: what.and_then(|w| child_text(w, "api")),
        message: what.and_then(|w| child_text(w, "message")),
        space: what.and_then(|w| child_text(w, "space")),
        direction: what.and_then(|w| child_text(w, "direction")),
        size,
        address,
        kernel: place.and_then(|p| child_text(p, "func")),
        file: place.and_then(|p| child_text(p, "path")),
        line,
        pc: number(place, "pc")?,
        thread: coords(who, "threadIdx")?,
        block: coords(who, "blockIdx")?,
        nearest_allocation: None,
        host_stack_saved_at: stack.and_then(|s| child_text(s, "saveLocation")),
        host_frames,
    })
}

// ------------------------------------------------------------------------------------------------
// The text output
// ------------------------------------------------------------------------------------------------

/// What compute-sanitizer's text output (and the program's own lines mixed into it) says beyond
/// the XML.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextReport {
    /// `ERROR SUMMARY: N errors`: every error, printed or not.
    pub errors: Option<u64>,
    /// `ERROR SUMMARY: N errors were not printed`: those past the print limit (absent from the
    /// XML too).
    pub errors_not_printed: Option<u64>,
    /// `LEAK SUMMARY: B bytes leaked in N allocations`: (bytes, allocations).
    pub leaked: Option<(u64, u64)>,
    /// `RACECHECK SUMMARY: H hazards displayed (E errors, W warnings)`: (hazards, errors,
    /// warnings).
    pub hazards: Option<(u64, u64, u64)>,
    /// `Target application returned an error`: the program itself exited non-zero.
    pub target_failed: bool,
    /// The nearest allocation of each out-of-bounds access, by the access's address.
    pub nearest_allocations: BTreeMap<u64, NearestAllocation>,
    /// The `signature: ...` line `forcefield repro` printed, if it printed one.
    pub program_signature: Option<String>,
}

/// The prefix of every line compute-sanitizer prints.
const TEXT_PREFIX: &str = "=========";

/// Parses compute-sanitizer's text output (stdout and stderr of the wrapped run, which may hold
/// the program's own lines too). Lines it does not know are skipped.
pub fn parse_text(text: &str) -> TextReport {
    let mut report = TextReport::default();
    let mut last_access: Option<u64> = None;
    for raw in text.lines() {
        let Some(body) = raw.strip_prefix(TEXT_PREFIX) else {
            if let Some(signature) = raw.strip_prefix("signature: ") {
                report.program_signature = Some(signature.trim().to_string());
            }
            continue;
        };
        // A new error starts at an unindented line; details are indented below it.
        let indented = body.starts_with("  ");
        let line = body.trim();
        if !indented {
            last_access = None;
        }
        if let Some(rest) = line.strip_prefix("ERROR SUMMARY: ") {
            let count = first_number(rest);
            if rest.contains("not printed") {
                report.errors_not_printed = count;
            } else {
                report.errors = count;
            }
        } else if let Some(rest) = line.strip_prefix("LEAK SUMMARY: ") {
            let numbers = numbers_in(rest);
            if let [bytes, allocations, ..] = numbers[..] {
                report.leaked = Some((bytes, allocations));
            }
        } else if let Some(rest) = line.strip_prefix("RACECHECK SUMMARY: ") {
            let numbers = numbers_in(rest);
            if let [hazards, errors, warnings, ..] = numbers[..] {
                report.hazards = Some((hazards, errors, warnings));
            }
        } else if line.starts_with("Target application returned an error") {
            report.target_failed = true;
        } else if line.starts_with("Access") || line.starts_with("Address") {
            last_access = line
                .split_whitespace()
                .find(|word| word.starts_with("0x"))
                .and_then(parse_number);
        } else if let (Some(access), Some(near)) = (last_access, parse_nearest(line)) {
            report.nearest_allocations.insert(access, near);
        }
    }
    report
}

/// `and is N bytes after|before the nearest allocation at 0xBASE of size M bytes`.
fn parse_nearest(line: &str) -> Option<NearestAllocation> {
    let rest = line.strip_prefix("and is ")?;
    let (distance, rest) = rest.split_once(" bytes ")?;
    let (side, rest) = if let Some(rest) = rest.strip_prefix("after ") {
        (Side::After, rest)
    } else {
        (Side::Before, rest.strip_prefix("before ")?)
    };
    let rest = rest.strip_prefix("the nearest allocation at ")?;
    let (base, rest) = rest.split_once(" of size ")?;
    let size = rest.strip_suffix(" bytes").unwrap_or(rest);
    Some(NearestAllocation {
        base: parse_number(base)?,
        size: parse_number(size)?,
        distance: parse_number(distance)?,
        side,
    })
}

/// The numbers in `text`, thousands separators allowed (`2,048`).
fn numbers_in(text: &str) -> Vec<u64> {
    text.split(|c: char| !(c.is_ascii_digit() || c == ','))
        .filter_map(|word| {
            let digits = word.replace(',', "");
            if digits.is_empty() {
                None
            } else {
                digits.parse().ok()
            }
        })
        .collect()
}

fn first_number(text: &str) -> Option<u64> {
    numbers_in(text).first().copied()
}

// ------------------------------------------------------------------------------------------------
// Signatures
// ------------------------------------------------------------------------------------------------

/// The signature of the main finding among `records`, in the project's `class:detail:site` form:
/// `sanitizer:<tool>-<error>:<site>`, e.g. `sanitizer:memcheck-out-of-bounds-write:sort_scatter`.
///
/// The main finding is the first device-side record (it names a kernel), else the first API
/// error, else the first leak or unused allocation: a kernel's bad access comes first in
/// importance even when an API error or a leak was printed before it. The site is the kernel, else
/// the failing API call, else the first named host frame. `None` when there are no records.
pub fn signature_for(records: &[SanitizerRecord]) -> Option<String> {
    let main = main_record(records)?;
    let detail = format!("{}-{}", main.tool, detail_of(main));
    Some(format!("sanitizer:{detail}:{}", site_of(main)))
}

/// Importance of a record for naming and listing: lower first.
fn rank(record: &SanitizerRecord) -> u8 {
    if record.is_device_side() {
        0
    } else if matches!(record.kind, RecordKind::Leak | RecordKind::UnusedMemory) {
        2
    } else {
        1
    }
}

fn main_record(records: &[SanitizerRecord]) -> Option<&SanitizerRecord> {
    // `min_by_key` keeps the first of equals: the earliest record of the best rank.
    records.iter().min_by_key(|r| rank(r))
}

/// What went wrong, as a slug: `out-of-bounds-write`, `cuda-error-launch-failed`, `leak` ...
fn detail_of(record: &SanitizerRecord) -> String {
    match (&record.kind, &record.error) {
        (RecordKind::Leak, _) => "leak".to_string(),
        (RecordKind::UnusedMemory, _) => "unused-memory".to_string(),
        (RecordKind::InitcheckApiError, _) => "uninitialized-api-access".to_string(),
        (RecordKind::Initcheck, None) => {
            format!("uninitialized-{}", direction_of(record).unwrap_or("access"))
        }
        (_, Some(error)) => match direction_of(record) {
            Some(direction) if record.kind != RecordKind::Api => {
                format!("{}-{direction}", slug(error))
            }
            _ => slug(error),
        },
        (kind, None) => {
            // No error field: the sentence without its numbers, so that sizes and counts do not
            // split one bug into many signatures.
            let words: Vec<&str> = record
                .text
                .split_whitespace()
                .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                .take(6)
                .collect();
            let text = slug(&words.join(" "));
            if text.is_empty() {
                slug(kind.as_str())
            } else {
                text
            }
        }
    }
}

/// `read` or `write`: from `<direction>`, else from the sentence.
fn direction_of(record: &SanitizerRecord) -> Option<&'static str> {
    let said = record
        .direction
        .as_deref()
        .unwrap_or(record.text.as_str())
        .to_ascii_lowercase();
    let words: Vec<&str> = said.split_whitespace().collect();
    if words.contains(&"write") {
        Some("write")
    } else if words.contains(&"read") {
        Some("read")
    } else {
        None
    }
}

/// Where: the kernel, else the API call, else `host`. Made safe for a signature's last field,
/// which may hold no `:` (a C++ kernel's `ns::name(int)` becomes `ns.name`).
fn site_of(record: &SanitizerRecord) -> String {
    let name = record
        .kernel
        .as_deref()
        .or(record.api.as_deref())
        .or_else(|| record.host_api())
        .unwrap_or("host");
    let name = name.split('(').next().unwrap_or(name).trim();
    let site: String = name
        .replace("::", ".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if site.is_empty() {
        "host".to_string()
    } else {
        site
    }
}

/// Lower case, runs of anything but letters and digits turned into one `-`.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
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
pub struct ToolRun {
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
pub fn summarize(
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
pub fn rerun_under_tools(
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
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    match command.spawn() {
        Ok(child) => supervise(child, timeout, stop),
        Err(e) => not_started(&format!("cannot start {}", cmd.program.display()), e),
    }
}

/// Waits for `child` (the leader of its own process group) until `timeout` or until `stop` is
/// set; then SIGTERM to the group, a grace period, SIGKILL. Whatever the group started dies with
/// it either way.
///
/// The group is the child's own, so a Ctrl-C at the terminal does not reach it: `stop` (the
/// interrupt flag) is how it learns of one.
fn supervise(mut child: Child, timeout: Duration, stop: &AtomicBool) -> RunStatus {
    let Ok(raw) = i32::try_from(child.id()) else {
        // A pid that does not fit a pid_t cannot happen on Linux; do not signal a wrong group.
        let _ = child.kill();
        let _ = child.wait();
        return RunStatus::NotStarted {
            message: "process id out of range".into(),
        };
    };
    let pid = Pid::from_raw(raw);
    // A second Ctrl-C exits at once; the group must not outlive it.
    let _quit = crate::interrupt::kill_group_on_quit(pid);
    let started = Instant::now();
    let never = AtomicBool::new(false);
    let waited = wait_exited(pid, started + timeout, stop);
    if waited != Waited::Exited {
        let _ = killpg(pid, Signal::SIGTERM);
        if wait_exited(pid, Instant::now() + TERM_GRACE, &never) != Waited::Exited {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
    // The leader has exited (or is dying) but is not reaped: its group id is still ours, so this
    // sweep cannot reach an unrelated process.
    let exited = wait_exited(pid, Instant::now() + KILL_WAIT, &never) == Waited::Exited;
    let _ = killpg(pid, Signal::SIGKILL);
    let status = if exited {
        child.wait().ok()
    } else {
        // Stuck past SIGKILL (in a GPU driver, say): reap it in the background, never block here.
        let reaper = std::thread::Builder::new()
            .name(format!("reap-{raw}"))
            .spawn(move || {
                let _ = child.wait();
            });
        drop(reaper);
        None
    };
    match waited {
        Waited::Exited => {}
        Waited::Deadline => {
            return RunStatus::TimedOut {
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }
        }
        Waited::Stopped => return RunStatus::Interrupted,
    }
    match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => RunStatus::Exited { code },
            (None, Some(signal)) => RunStatus::Signaled { signal },
            (None, None) => RunStatus::NotStarted {
                message: "no exit status".into(),
            },
        },
        None => RunStatus::Signaled {
            signal: Signal::SIGKILL as i32,
        },
    }
}

/// How a bounded wait for a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waited {
    /// The child exited (it is left unreaped).
    Exited,
    /// The deadline came first.
    Deadline,
    /// The stop flag was set first.
    Stopped,
}

/// Waits until child `pid` has exited, `deadline` passes or `stop` is set, whichever is first;
/// the child is left unreaped.
fn wait_exited(pid: Pid, deadline: Instant, stop: &AtomicBool) -> Waited {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            // Exited, or no such child any more (already reaped): either way it is not running.
            Ok(_) | Err(_) => return Waited::Exited,
        }
        if stop.load(Ordering::Relaxed) {
            return Waited::Stopped;
        }
        let now = Instant::now();
        if now >= deadline {
            return Waited::Deadline;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
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
