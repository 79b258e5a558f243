/*!
`forcefield run`: a crash-hunting campaign. See [`crate::campaign`].
*/

use std::path::PathBuf;
use std::time::Duration;

use forcefield::Fault;

use crate::campaign::{run_campaign, write_outputs, Budget, CampaignConfig, Shard};
use crate::cli::{BackendChoice, CliError};
use crate::generate::{GenConfig, DEFAULT_INJECT_RATE};
use crate::minimize::MinimizeLimits;
use crate::sanitize_mode::{self, SanitizeMode};

/// Arguments of `forcefield run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Engine backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// Time budget (e.g. 60s, 10m); the default when neither --time nor --cases is given is 60s.
    #[arg(long, value_parser = super::parse_duration, conflicts_with = "cases")]
    pub time: Option<Duration>,
    /// Number of cases instead of a time budget.
    #[arg(long)]
    pub cases: Option<u64>,
    /// Campaign seed: the same seed generates the same cases.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker processes (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// With CUDA: one worker per listed GPU, e.g. `--gpus 0,1`.
    #[arg(long, value_delimiter = ',')]
    pub gpus: Vec<u32>,
    /// Planted fault to switch on (repeatable); `forcefield faults` lists them.
    #[arg(long = "fault")]
    pub faults: Vec<Fault>,
    /// Run only shard I of N (`I/N`), for spreading a campaign over machines.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Directory for summary.json and findings/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Per-case watchdog: a case still running after this is a hang.
    #[arg(long, value_parser = super::parse_duration, default_value = "10s")]
    pub case_timeout: Duration,
    /// Do not minimize findings.
    #[arg(long)]
    pub no_minimize: bool,
    /// Time budget for minimizing each finding.
    #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
    pub minimize_time: Duration,
    /// Skip the capacity-invariance re-run of each case (about twice as many cases per second).
    #[arg(long)]
    pub no_capacity_check: bool,
    /// Run cases under a sanitizer: `checked` reports invalid memory accesses as `sanitizer`
    /// findings instead of crashes; the others run workers under compute-sanitizer (CUDA).
    #[arg(long, value_enum, default_value_t = SanitizeMode::Off)]
    pub sanitize: SanitizeMode,
    /// Place injected environment faults (failed allocations, copies, launches, lost contexts) in
    /// the generated cases; the engine must tolerate each one.
    #[arg(long)]
    pub inject: bool,
}

impl RunArgs {
    fn config(&self) -> Result<CampaignConfig, CliError> {
        let jobs = self
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if jobs == 0 {
            return Err(CliError::input(anyhow::anyhow!(
                "--jobs must be at least 1"
            )));
        }
        let budget = match (self.time, self.cases) {
            (_, Some(n)) => Budget::Cases(n),
            (Some(t), None) => Budget::Time(t),
            (None, None) => Budget::Time(Duration::from_secs(60)),
        };
        let backend = super::backend_kind(self.backend)?;
        self.sanitize.validate(backend)?;
        Ok(CampaignConfig {
            backend,
            budget,
            seed: self.seed,
            jobs,
            gpus: self.gpus.clone(),
            faults: self.faults.clone(),
            shard: self.shard,
            case_deadline: self.case_timeout,
            capacity_invariance: !self.no_capacity_check,
            minimize: (!self.no_minimize).then_some(MinimizeLimits {
                max_runs: 5000,
                max_time: self.minimize_time,
            }),
            worker: sanitize_mode::worker_command(1, self.sanitize)?,
            sanitize: self.sanitize,
            generator: GenConfig {
                inject_rate: if self.inject {
                    DEFAULT_INJECT_RATE
                } else {
                    0.0
                },
                ..GenConfig::default()
            },
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        })
    }
}

/// Runs the campaign, prints the summary, writes the outputs; findings give exit code 1.
pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let config = args.config()?;
    let interrupt = crate::interrupt::flag();
    let summary = run_campaign(&config, interrupt);
    if let Some(dir) = &args.out {
        write_outputs(dir, &summary, &super::invocation()).map_err(|e| {
            CliError::environment(anyhow::anyhow!("cannot write to {}: {e}", dir.display()))
        })?;
    }
    print!("{}", summary.markdown());
    if summary.cases == summary.environment_errors && summary.cases > 0
        || summary.cases == 0 && summary.environment_message.is_some()
    {
        return Err(CliError::environment(anyhow::anyhow!(
            "{}",
            summary
                .environment_message
                .clone()
                .unwrap_or_else(|| "no case could run".into())
        )));
    }
    if !summary.findings.is_empty() {
        return Err(CliError::Findings(anyhow::anyhow!(
            "{} distinct finding(s){}",
            summary.findings.len(),
            args.out
                .as_ref()
                .map(|d| format!("; see {}", d.join("findings").display()))
                .unwrap_or_default()
        )));
    }
    Ok(())
}
