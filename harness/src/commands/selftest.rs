/*!
`forcefield selftest`: a seeded hunt per planted fault, then the clean engine. See
[`crate::hunt::selftest`].

Exit codes: 0 when every crash fault that exists on the backend was detected and the clean engine
gave nothing; 1 otherwise, with one line saying what was missed; 3 when cases cannot run here. The
table is printed (and `--json` written) in every case, Ctrl-C included.
*/

use std::path::PathBuf;
use std::time::Duration;

use forcefield::Fault;

use crate::artifacts::write_json;
use crate::case::generate::{GenConfig, DEFAULT_INJECT_RATE};
use crate::case::minimize::MinimizeLimits;
use crate::client::start;
use crate::commands::backend_select::BackendChoice;
use crate::commands::error::CliError;
use crate::hunt::campaign::Budget;
use crate::hunt::selftest::{applicable_faults, run_selftest, skip_reason, SelftestConfig};
use crate::sanitizers::mode::SanitizeMode;

/// Arguments of `forcefield selftest`.
#[derive(Debug, Clone, clap::Args)]
pub struct SelftestArgs {
    /// Engine backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// Time budget of each fault's hunt (it stops at its first finding); default 30s.
    #[arg(long, value_parser = super::parse_duration, conflicts_with = "cases")]
    pub budget: Option<Duration>,
    /// Case budget of each fault's hunt instead of a time budget: the table's deterministic
    /// columns then do not depend on the machine's speed.
    #[arg(long)]
    pub cases: Option<u64>,
    /// Time budget of the clean engine's campaign (default: the per-fault budget times the
    /// number of faults hunted).
    #[arg(long, value_parser = super::parse_duration, conflicts_with = "clean_cases")]
    pub clean_budget: Option<Duration>,
    /// Case budget of the clean engine's campaign instead of a time budget.
    #[arg(long)]
    pub clean_cases: Option<u64>,
    /// Seed of every hunt and of the clean campaign.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hunt only this fault (repeatable; default: every crash fault that exists on the backend).
    #[arg(long = "fault")]
    pub faults: Vec<Fault>,
    /// Worker processes (default: one per core on the CPU backend, one on CUDA, where workers
    /// contend for the GPU).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Faults hunted at once, each hunt (and its minimization) with its own workers; above one,
    /// the clean engine's campaign runs beside the hunts. Default: 4 on CUDA, where one hunt's
    /// small cases and worker restarts leave the device mostly idle; 1 on the CPU, where `--jobs`
    /// already fills the cores.
    #[arg(long)]
    pub hunts: Option<usize>,
    /// Also write the report as JSON to this file (atomically).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Upper bound of the per-case watchdog: each case's limit follows from its predicted cost
    /// and the measured rate, as in `forcefield run`, and no case runs longer than this.
    #[arg(long, value_parser = super::parse_duration, default_value = "30s")]
    pub case_timeout: Duration,
    /// Time budget for minimizing each fault's first finding.
    #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
    pub minimize_time: Duration,
    /// Run the workers under a sanitizer, as `forcefield run --sanitize` does.
    #[arg(long, value_enum, default_value_t = SanitizeMode::Off)]
    pub sanitize: SanitizeMode,
}

/// The per-fault budget when none is given.
const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

impl SelftestArgs {
    fn config(&self) -> Result<SelftestConfig, CliError> {
        let backend = super::backend_kind(self.backend)?;
        let jobs = super::jobs(self.jobs, backend)?;
        self.sanitize.validate(backend)?;
        let faults = if self.faults.is_empty() {
            applicable_faults(backend)
        } else {
            for f in &self.faults {
                if let Some(reason) = skip_reason(*f, backend) {
                    return Err(CliError::input(anyhow::anyhow!(
                        "--fault {f}: not hunted by the self-test on {}: {reason}",
                        backend.name()
                    )));
                }
            }
            let mut faults = self.faults.clone();
            faults.sort();
            faults.dedup();
            faults
        };
        let hunts = faults.len().max(1) as u32;
        let budget = match (self.cases, self.budget) {
            (Some(n), _) => Budget::Cases(n),
            (None, t) => Budget::Time(t.unwrap_or(DEFAULT_BUDGET)),
        };
        let clean_budget = match (self.clean_cases, self.clean_budget, budget) {
            (Some(n), _, _) => Budget::Cases(n),
            (None, Some(t), _) => Budget::Time(t),
            (None, None, Budget::Cases(n)) => Budget::Cases(n.saturating_mul(u64::from(hunts))),
            (None, None, Budget::Time(t)) => Budget::Time(t.saturating_mul(hunts)),
        };
        Ok(SelftestConfig {
            backend,
            budget,
            clean_budget,
            seed: self.seed,
            jobs,
            faults,
            case_deadline: self.case_timeout,
            capacity_invariance: true,
            minimize: MinimizeLimits {
                max_runs: 5000,
                max_time: self.minimize_time,
            },
            worker: start::sanitized_worker_command(1, self.sanitize)?,
            sanitize: self.sanitize,
            // Every hunt and the clean campaign inject environment faults as `forcefield run
            // --inject` does: the same generator for all, so that no hunt is tuned to its fault
            // (a fault that only a failed allocation exposes is found the same way as the rest).
            generator: GenConfig {
                inject_rate: DEFAULT_INJECT_RATE,
                ..GenConfig::default()
            },
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            lanes: hunts_at_once(self.hunts, backend)?,
        })
    }
}

/// Faults hunted at once on CUDA when `--hunts` is not given.
const CUDA_HUNTS: usize = 4;

/// `--hunts`, or the backend's default; 0 is refused.
fn hunts_at_once(
    given: Option<usize>,
    backend: crate::case::BackendKind,
) -> Result<usize, CliError> {
    match given {
        Some(0) => Err(CliError::input(anyhow::anyhow!(
            "--hunts 0: at least one fault must be hunted at a time"
        ))),
        Some(n) => Ok(n),
        None if backend == crate::case::BackendKind::Cuda => Ok(CUDA_HUNTS),
        None => Ok(1),
    }
}

/// Runs the self-test, prints the table, writes `--json`; anything missed gives exit code 1.
pub fn run(args: &SelftestArgs) -> Result<(), CliError> {
    let config = args.config()?;
    if let Some(path) = &args.json {
        super::check_output_file(path)?;
    }
    // A forced stop kills the hunts' workers and returns here, so the report is still written.
    let interrupt = crate::interrupt::campaign_flag();
    let report = run_selftest(&config, interrupt);
    print!("{}", report.markdown());
    if let Some(path) = &args.json {
        write_json(path, &report).map_err(|e| {
            CliError::environment(anyhow::anyhow!("cannot write {}: {e}", path.display()))
        })?;
    }
    forced_stop(format!(
        "selftest stopped with {} of {} fault(s) hunted{}",
        report.faults.iter().filter(|r| !r.interrupted).count(),
        report.planned.len(),
        args.json
            .as_ref()
            .map(|p| format!("; see {}", p.display()))
            .unwrap_or_default()
    ))?;
    if let Some(message) = &report.environment_message {
        if report.faults.iter().all(|r| !r.detected) {
            return Err(CliError::environment(anyhow::anyhow!("{message}")));
        }
    }
    match report.failure() {
        Some(line) => Err(CliError::Findings(anyhow::anyhow!("selftest: {line}"))),
        None => Ok(()),
    }
}

/// After a forced stop (SIGTERM, SIGHUP, a second Ctrl-C) whose report is written: the exit
/// `128 + signal`, with `message`. A first Ctrl-C is a clean stop and ends as the work would have.
fn forced_stop(message: String) -> Result<(), CliError> {
    if !crate::interrupt::forced() {
        return Ok(());
    }
    Err(CliError::Interrupted {
        message,
        code: crate::interrupt::exit_code().unwrap_or(crate::exit::interrupted(
            nix::sys::signal::Signal::SIGTERM as i32,
        )),
    })
}
