/*!
`forcefield minimize`: shrink any case file to the smallest case that still fails with the same
signature, through isolated workers.
*/

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::artifacts::write_json;
use crate::case::minimize::MinimizeLimits;
use crate::case::Expectation;
use crate::client::run::run_isolated;
use crate::client::signature::Verdict;
use crate::commands::error::CliError;
use crate::hunt::campaign::minimize_isolated;
use crate::isolate::{SupervisorConfig, WorkerSlot};

/// Arguments of `forcefield minimize`.
#[derive(Debug, Clone, clap::Args)]
pub struct MinimizeArgs {
    /// The failing case file.
    pub case: PathBuf,
    /// Where to write the minimized case.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Watchdog for each isolated run.
    #[arg(long, value_parser = super::parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Wall-clock budget.
    #[arg(long, value_parser = super::parse_duration, default_value = "120s")]
    pub max_time: Duration,
    /// Most candidate runs.
    #[arg(long, default_value_t = 5000)]
    pub max_runs: usize,
    /// Skip the capacity-invariance re-run.
    #[arg(long)]
    pub no_capacity_check: bool,
    /// Run the candidates on another engine, a program speaking `forcefield-target/1` (as
    /// `forcefield run --target`).
    #[arg(long)]
    pub target: Option<String>,
}

/// Minimizes the case and writes it (atomically) with its signature as the expectation.
pub fn run(args: &MinimizeArgs) -> Result<(), CliError> {
    let case = super::read_case(&args.case)?;
    let capacity_invariance = !args.no_capacity_check;
    let worker = match crate::worker::target_job::TargetSource::resolve(args.target.as_deref()) {
        Some(source) => super::target_worker_command(&source)?,
        None => super::worker_command(1)?,
    };
    let mut slot = WorkerSlot::new(worker, SupervisorConfig::default());
    let (verdict, _) = run_isolated(&mut slot, &case, capacity_invariance, args.timeout);
    let signature = match verdict {
        Verdict::Finding { signature, .. } => signature,
        Verdict::Pass => {
            return Err(CliError::input(anyhow::anyhow!(
                "{}: the case passes; there is nothing to minimize",
                args.case.display()
            )))
        }
        Verdict::Environment { message } => {
            return Err(CliError::environment(anyhow::anyhow!("{message}")))
        }
    };
    eprintln!("minimizing {signature}");
    let limits = MinimizeLimits {
        max_runs: args.max_runs,
        max_time: args.max_time,
    };
    let interrupt = crate::interrupt::flag();
    let (mut small, report) = minimize_isolated(
        &mut slot,
        &case,
        &signature,
        capacity_invariance,
        args.timeout,
        limits,
        &interrupt as &AtomicBool,
    );
    slot.shutdown();
    small.expect = Some(Expectation::Open {
        signature: signature.to_string(),
    });
    write_json(&args.out, &small).map_err(|e| {
        CliError::environment(anyhow::anyhow!("cannot write {}: {e}", args.out.display()))
    })?;
    println!(
        "{signature}: {} -> {} ({} runs, {:.1} s{}); written to {}",
        report.before,
        report.after,
        report.runs,
        report.seconds,
        if report.hit_limit {
            ", stopped at a limit"
        } else {
            ""
        },
        args.out.display()
    );
    Ok(())
}
