/*!
Re-running the findings a campaign wrote under compute-sanitizer: each minimized case under every
tool, into the finding's own directory ([`campaign_findings`], [`rerun_findings_with`]). This is
what `forcefield run --backend cuda` does after minimizing; how one case runs under one tool is
[`crate::sanitizers::compute_sanitizer`].
*/

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::artifacts::{write_atomically, MissingDirs};
use crate::case::BackendKind;
use crate::hunt::campaign::{Finding, Summary};
use crate::sanitizers::compute_sanitizer::{
    render_markdown, rerun_one, RerunOptions, RunStatus, Tool, ToolReport,
};

/// The directory, in a finding's directory, that holds each tool's `<tool>.xml` and `<tool>.txt`.
pub const FINDING_TOOL_DIR: &str = "compute-sanitizer";
/// The markdown summary of the re-run, in a finding's directory.
pub const FINDING_MARKDOWN: &str = "compute-sanitizer.md";

/// One finding a campaign wrote, to be re-run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingCase {
    /// The finding's signature, as the campaign named it.
    pub signature: String,
    /// Its directory, `<out>/findings/<signature-id>`.
    pub dir: PathBuf,
    /// The case file to run: `minimized.json`, else `case.json`; `None` when neither is there.
    pub case: Option<PathBuf>,
}

/// The findings of `summary` where [`crate::hunt::campaign::write_outputs`] wrote them under `out_dir`,
/// in the summary's order, each with the case file to re-run.
pub fn campaign_findings(out_dir: &Path, summary: &Summary) -> Vec<FindingCase> {
    summary
        .findings
        .iter()
        .map(|finding| finding_case(out_dir, finding))
        .collect()
}

fn finding_case(out_dir: &Path, finding: &Finding) -> FindingCase {
    let dir = out_dir.join("findings").join(finding.signature.id());
    // In memory a finding says whether it was minimized, and a `minimized.json` left by an earlier
    // campaign in the same directory must not stand in for this one's case; read back from
    // summary.json it holds no cases, and the files decide.
    let try_minimized = finding.minimized.is_some() || finding.case.is_none();
    let case = [
        try_minimized.then(|| dir.join("minimized.json")),
        Some(dir.join("case.json")),
    ]
    .into_iter()
    .flatten()
    .find(|path| path.is_file());
    FindingCase {
        signature: finding.signature.to_string(),
        dir,
        case,
    }
}

/// Settings of [`rerun_findings_with`].
#[derive(Clone, Debug)]
pub struct FindingRerunOptions {
    /// The tools, run in this order on each finding.
    pub tools: Vec<Tool>,
    /// Per tool and finding. compute-sanitizer slows kernels by 10-100 times: leave room.
    pub timeout: Duration,
    /// Finding lines kept per tool in the reports.
    pub max_findings: usize,
    /// Set (by Ctrl-C) to stop: the running tool is killed and nothing more is started.
    pub stop: Option<Arc<AtomicBool>>,
}

impl FindingRerunOptions {
    /// Every tool ([`Tool::ALL`]), `timeout` per tool, 5 finding lines, no stop flag.
    pub fn new(timeout: Duration) -> Self {
        Self {
            tools: Tool::ALL.to_vec(),
            timeout,
            max_findings: 5,
            stop: None,
        }
    }
}

/// Progress of [`rerun_findings_with`], for the caller to show: the runs are slow (minutes each).
#[derive(Clone, Copy, Debug)]
pub enum RerunEvent<'a> {
    /// `tool` starts on finding `index` (from 1) of `total`.
    ToolStarted {
        /// The finding's position, from 1.
        index: usize,
        /// Findings in all.
        total: usize,
        /// The finding.
        finding: &'a FindingCase,
        /// The tool.
        tool: Tool,
    },
    /// A tool finished on finding `index` of `total`.
    ToolFinished {
        /// The finding's position, from 1.
        index: usize,
        /// Findings in all.
        total: usize,
        /// The finding.
        finding: &'a FindingCase,
        /// What the tool said.
        report: &'a ToolReport,
    },
}

/// Why a finding was not re-run (in part or at all), or its summary not written.
#[derive(Debug, thiserror::Error)]
pub enum FindingRerunError {
    /// Neither case file is in the finding's directory.
    #[error("{}: neither minimized.json nor case.json is there", .dir.display())]
    NoCase {
        /// The finding's directory.
        dir: PathBuf,
    },
    /// Stopped (Ctrl-C) before every tool had run on it.
    #[error("interrupted before every tool had run")]
    Interrupted,
    /// The directory for the tools' files could not be created.
    #[error("cannot create {}", .path.display())]
    ToolDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The markdown summary could not be written.
    #[error("cannot write {}", .path.display())]
    Markdown {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What the tools said about one finding.
#[derive(Debug)]
pub struct FindingRerun {
    /// The finding.
    pub finding: FindingCase,
    /// One report per tool that ran, in the order run.
    pub reports: Vec<ToolReport>,
    /// The markdown summary (`<dir>/compute-sanitizer.md`), when it was written.
    pub markdown: Option<PathBuf>,
    /// Why not every tool ran, or the summary was not written.
    pub error: Option<FindingRerunError>,
}

/// Re-runs each finding's case under each tool, one run at a time ([`rerun_with`]'s command line,
/// each run under `options.timeout`): the tools' files go to `<dir>/compute-sanitizer/`
/// (`<tool>.xml`, `<tool>.txt`), and `<dir>/compute-sanitizer.md` ([`finding_markdown`]) is
/// written atomically once the finding's tools have run. A finding's trouble (no case file, a
/// directory that cannot be written) is in its [`FindingRerun`] and does not stop the others;
/// `options.stop` does.
pub fn rerun_findings_with(
    sanitizer: &Path,
    program: &Path,
    backend: BackendKind,
    findings: &[FindingCase],
    options: &FindingRerunOptions,
    on_event: &mut dyn FnMut(RerunEvent<'_>),
) -> Vec<FindingRerun> {
    let never = AtomicBool::new(false);
    let stop: &AtomicBool = options.stop.as_deref().unwrap_or(&never);
    let total = findings.len();
    findings
        .iter()
        .enumerate()
        .map(|(i, finding)| {
            let mut rerun = FindingRerun {
                finding: finding.clone(),
                reports: Vec::new(),
                markdown: None,
                error: None,
            };
            if stop.load(Ordering::Relaxed) {
                rerun.error = Some(FindingRerunError::Interrupted);
                return rerun;
            }
            let Some(case) = &finding.case else {
                rerun.error = Some(FindingRerunError::NoCase {
                    dir: finding.dir.clone(),
                });
                return rerun;
            };
            let tool_dir = finding.dir.join(FINDING_TOOL_DIR);
            if let Err(source) = std::fs::create_dir_all(&tool_dir) {
                rerun.error = Some(FindingRerunError::ToolDir {
                    path: tool_dir,
                    source,
                });
                return rerun;
            }
            let run_options = RerunOptions {
                out_dir: tool_dir,
                timeout: options.timeout,
                max_findings: options.max_findings,
            };
            for &tool in &options.tools {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let index = i + 1;
                on_event(RerunEvent::ToolStarted {
                    index,
                    total,
                    finding,
                    tool,
                });
                let report = rerun_one(sanitizer, program, case, backend, tool, &run_options, stop);
                on_event(RerunEvent::ToolFinished {
                    index,
                    total,
                    finding,
                    report: &report,
                });
                rerun.reports.push(report);
            }
            let interrupted = rerun.reports.len() < options.tools.len()
                || rerun
                    .reports
                    .iter()
                    .any(|r| r.status == RunStatus::Interrupted);
            if interrupted {
                rerun.error = Some(FindingRerunError::Interrupted);
            }
            // What did run is worth keeping, interrupted or not.
            let path = finding.dir.join(FINDING_MARKDOWN);
            let text = finding_markdown(finding, backend, &rerun.reports);
            match write_atomically(&path, text.as_bytes(), MissingDirs::Create) {
                Ok(()) => rerun.markdown = Some(path),
                Err(source) => {
                    rerun.error = Some(FindingRerunError::Markdown { path, source });
                }
            }
            rerun
        })
        .collect()
}

/// The `compute-sanitizer.md` of a finding: a title naming it, the case run, each tool's verdict
/// in one line ([`ToolReport::verdict`]), then [`render_markdown`].
pub(crate) fn finding_markdown(
    finding: &FindingCase,
    backend: BackendKind,
    reports: &[ToolReport],
) -> String {
    let case = finding
        .case
        .as_deref()
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "-".to_string());
    let mut out = format!(
        "# compute-sanitizer on `{}`\n\n`{case}` run as `forcefield repro --in-process --backend {}` \
         under each tool; each tool's XML and text output are in `{FINDING_TOOL_DIR}/`.\n\n",
        finding.signature,
        backend.name(),
    );
    for report in reports {
        out.push_str(&format!("- {}: {}\n", report.tool, report.verdict()));
    }
    if !reports.is_empty() {
        out.push('\n');
    }
    out.push_str(&render_markdown(reports));
    out
}
