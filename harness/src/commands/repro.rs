/*!
`forcefield repro`: run one case file, isolated (default) or in this process (for a debugger), and
print its outcome and signature.
*/

use std::path::PathBuf;
use std::time::Duration;

use crate::campaign::run_isolated;
use crate::case::Expectation;
use crate::cli::{BackendChoice, CliError};
use crate::execute::{execute, ExecOptions};
use crate::isolate::{SupervisorConfig, WorkerSlot};
use crate::signature::{classify_result, Verdict};

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
}

/// Runs the case; a failure (or a broken expectation) gives exit code 1.
pub fn run(args: &ReproArgs) -> Result<(), CliError> {
    let mut case = super::read_case(&args.case)?;
    if let Some(choice) = args.backend {
        case.backend = super::backend_kind(choice)?;
    }
    let capacity_invariance = !args.no_capacity_check;
    let verdict = if args.in_process {
        let opts = ExecOptions {
            check_capacity_invariance: capacity_invariance,
            threads: 0,
        };
        classify_result(&execute(&case, &opts, &mut |_| {}))
    } else {
        let mut slot = WorkerSlot::new(super::worker_command(0)?, SupervisorConfig::default());
        let (verdict, execution) =
            run_isolated(&mut slot, &case, capacity_invariance, args.timeout);
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
