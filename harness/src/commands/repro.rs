/*!
`forcefield repro`: run one case file, isolated (default) or in this process (for a debugger), and
print its outcome and signature.
*/

use std::path::PathBuf;
use std::time::Duration;

use crate::case::Expectation;
use crate::client::run::run_isolated;
use crate::client::signature::{classify_reply, Verdict};
use crate::client::start;
use crate::commands::backend_select::BackendChoice;
use crate::commands::error::CliError;
use crate::isolate::{SupervisorConfig, WorkerSlot};
use crate::sanitizers::compute_sanitizer::{
    render_markdown, rerun_under_tools, RerunOptions, Tool,
};
use crate::sanitizers::mode::SanitizeMode;
use crate::worker::execute::ExecOptions;
use crate::worker::job::{run_case, CaseBackends};

/// Arguments of `forcefield repro`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReproArgs {
    /// The case file (JSON, `forcefield-case/1`).
    pub case: PathBuf,
    /// Run in this process instead of an isolated worker (a crash then kills this process: use it
    /// under a debugger).
    #[arg(long)]
    pub in_process: bool,
    /// Override the case's backend.
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// Watchdog for the isolated run.
    #[arg(long, value_parser = super::parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Skip the capacity-invariance re-run.
    #[arg(long)]
    pub no_capacity_check: bool,
    /// Run the case under a sanitizer (`checked`: an invalid memory access is a `sanitizer` finding
    /// instead of a crash, also with --in-process).
    #[arg(long, value_enum, default_value_t = SanitizeMode::Off)]
    pub sanitize: SanitizeMode,
    /// Run the case on another engine, a program speaking `forcefield-target/1` (as `forcefield
    /// run --target`), in an isolated worker.
    #[arg(long, conflicts_with_all = ["in_process", "backend"])]
    pub target: Option<String>,
}

/// Runs the case; a failure (or a broken expectation) gives exit code 1.
pub fn run(args: &ReproArgs) -> Result<(), CliError> {
    let mut case = super::read_case(&args.case)?;
    if let Some(choice) = args.backend {
        case.backend = super::backend_kind(choice)?;
    }
    args.sanitize.validate(case.backend)?;
    let has_target =
        args.target.is_some() || crate::worker::target_job::TargetSource::resolve(None).is_some();
    if has_target && args.sanitize != SanitizeMode::Off {
        return Err(CliError::input(anyhow::anyhow!(
            "--sanitize is about Forcefield's own engine and does not apply with --target"
        )));
    }
    if let (Some(tool), false) = (args.sanitize.compute_sanitizer_tool(), args.in_process) {
        return run_under_tool(args, &case, tool);
    }
    let capacity_invariance = !args.no_capacity_check;
    let target = crate::worker::target_job::TargetSource::resolve(args.target.as_deref());
    if target.is_some() && args.in_process {
        return Err(CliError::input(anyhow::anyhow!(
            "--in-process runs Forcefield's own engine; a target's case runs in a worker"
        )));
    }
    let verdict = if args.in_process {
        let opts = ExecOptions {
            check_capacity_invariance: capacity_invariance,
            threads: 0,
            reference_model: true,
        };
        if args.sanitize.compute_sanitizer_tool().is_some() {
            return Err(CliError::input(anyhow::anyhow!(
                "--sanitize {} wraps a worker process: it cannot run --in-process",
                args.sanitize
            )));
        }
        let backends = CaseBackends {
            kind: case.backend,
            threads: 0,
            sanitize: args.sanitize,
            crumbs: None,
        };
        classify_reply(&run_case(&case, &opts, &backends, None, &mut |_| {}))
    } else {
        let worker = match &target {
            Some(source) => super::target_worker_command(source)?,
            None => start::sanitized_worker_command(0, args.sanitize)?,
        };
        let mut slot = WorkerSlot::new(worker, SupervisorConfig::default());
        // A sanitizer's slowdown is not a hang.
        let timeout = args.timeout.saturating_mul(args.sanitize.deadline_factor());
        let (verdict, execution) = run_isolated(&mut slot, &case, capacity_invariance, timeout);
        slot.shutdown();
        if let (Some(e), Verdict::Finding { .. }) = (&execution, &verdict) {
            let text = e.stderr.text();
            if !text.trim().is_empty() {
                eprintln!("--- worker stderr ---\n{}\n---", text.trim_end());
            }
        }
        verdict
    };
    match &verdict {
        Verdict::Pass => println!("outcome: pass"),
        Verdict::Finding { signature, summary } => {
            println!("outcome: {summary}");
            println!("signature: {signature}");
        }
        Verdict::Environment { message } => {
            return Err(CliError::environment(anyhow::anyhow!("{message}")))
        }
    }
    let got = verdict.signature().map(|s| s.to_string());
    match (&case.expect, got) {
        (None, None) => Ok(()),
        (None, Some(sig)) => Err(CliError::Findings(anyhow::anyhow!("the case fails: {sig}"))),
        (Some(Expectation::Pass), None) => Ok(()),
        (Some(Expectation::Pass), Some(sig)) => Err(CliError::Findings(anyhow::anyhow!(
            "expected pass, got {sig}"
        ))),
        (Some(Expectation::Open { signature }), Some(sig)) if *signature == sig => {
            println!("expectation: still open as recorded ({signature})");
            Err(CliError::Findings(anyhow::anyhow!(
                "the case fails: {sig} (known, open)"
            )))
        }
        (Some(Expectation::Open { signature }), got) => Err(CliError::Findings(anyhow::anyhow!(
            "expected open {signature}, got {}",
            got.unwrap_or_else(|| "pass".into())
        ))),
    }
}

/// `repro --sanitize <tool>`: the case alone under the compute-sanitizer tool (`forcefield repro
/// --in-process` wrapped in it), its records parsed and printed; exit 1 when the tool or the case
/// reports anything.
fn run_under_tool(args: &ReproArgs, case: &crate::case::Case, tool: Tool) -> Result<(), CliError> {
    let out_dir = crate::client::start::tool_output_dir();
    let mut options = RerunOptions::new(&out_dir);
    options.timeout = args.timeout.saturating_mul(args.sanitize.deadline_factor());
    // A missing tool or an unusable program is the environment's (exit 3).
    let reports = rerun_under_tools(&args.case, case.backend, &[tool], &options)
        .map_err(|e| CliError::environment(anyhow::anyhow!("{e}")))?;
    print!("{}", render_markdown(&reports));
    let flagged: Vec<String> = reports
        .iter()
        .filter(|r| r.flagged())
        .map(|r| {
            r.signature
                .clone()
                .or_else(|| r.program_signature.clone())
                .unwrap_or_else(|| format!("sanitizer:{}-exit:case", r.tool.name()))
        })
        .collect();
    match flagged.first() {
        None => {
            println!("outcome: pass");
            Ok(())
        }
        Some(sig) => {
            println!("signature: {sig}");
            Err(CliError::Findings(anyhow::anyhow!(
                "compute-sanitizer {} reports: {sig}",
                tool.name()
            )))
        }
    }
}
