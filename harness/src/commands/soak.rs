/*!
`forcefield soak`: the server's life in a worker. See [`crate::hunt::soak`].

With `--inject-rate R`, environment faults of each kind (fail-alloc, fail-copy, fail-launch,
lose-context) are injected R times a second; every one must be tolerated, and one that is not is a
crash. Exit codes: 0 when no engine crashed, 1 when any did, 3 when the soak could not run here (no
worker, no backend, an unwritable output directory) and found nothing before it stopped. Ctrl-C
stops it cleanly: `soak.json` and the summary are still written.
*/

use std::path::PathBuf;
use std::time::Duration;

use forcefield::Fault;

use crate::client::start;
use crate::commands::backend_select::BackendChoice;
use crate::commands::error::CliError;
use crate::hunt::soak::{run_soak, write_report, SoakConfig};
use crate::sanitizers::mode::SanitizeMode;

/// Arguments of `forcefield soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long to run (e.g. 60s, 10m).
    #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Planted fault to switch on (repeatable); `forcefield faults` lists them.
    #[arg(long = "fault")]
    pub faults: Vec<Fault>,
    /// Engine backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// Seed of the op stream: the same seed sends the same start graphs and chunks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Directory for soak.json and crashes/ (flight-recorder cases).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Steps at the end of every chunk of mutations.
    #[arg(long, default_value_t = 20)]
    pub chunk_steps: u64,
    /// Watchdog per chunk: a chunk still running after this is a hang.
    #[arg(long, value_parser = super::parse_duration, default_value = "10s")]
    pub chunk_timeout: Duration,
    /// Live nodes stay below this; the graph grows toward it, drops half, shrinks and regrows.
    #[arg(long, default_value_t = 512)]
    pub max_nodes: u32,
    /// Retire an engine (a planned restart) after this many steps; its flight recorder must
    /// replay, so lives never outgrow the case limits either.
    #[arg(long, default_value_t = crate::case::MAX_CASE_STEPS)]
    pub life_steps: u64,
    /// Flight-recorder cases saved per signature (every crash is counted).
    #[arg(long, default_value_t = 20)]
    pub keep_cases: usize,
    /// Do not replay a saved case of each signature at the end.
    #[arg(long)]
    pub no_replay: bool,
    /// Run the engines under a sanitizer (`checked`: an invalid memory access ends a life as a
    /// `sanitizer` crash instead of a SIGSEGV).
    #[arg(long, value_enum, default_value_t = SanitizeMode::Off)]
    pub sanitize: SanitizeMode,
    /// Inject environment faults into the engine: this many per second of each kind (fail-alloc,
    /// fail-copy, fail-launch, lose-context), on a schedule seeded by --seed. Each must be
    /// tolerated (typed error, state unchanged, recovery, retry succeeds); one that is not is a crash.
    #[arg(long, default_value_t = 0.0)]
    pub inject_rate: f64,
}

/// Most injected faults per second of each kind: far more than chunks per second, where every
/// chunk would carry one of each kind.
const MAX_INJECT_RATE: f64 = 1000.0;

/// Runs the soak, prints and writes its report; crashes give exit code 1.
pub fn run(args: &SoakArgs) -> Result<(), CliError> {
    if args.chunk_steps == 0 || args.life_steps == 0 {
        return Err(CliError::input(anyhow::anyhow!(
            "--chunk-steps and --life-steps must be at least 1"
        )));
    }
    if args.max_nodes < 2 || u64::from(args.max_nodes) > crate::case::MAX_CASE_NODES {
        return Err(CliError::input(anyhow::anyhow!(
            "--max-nodes must be between 2 and {}",
            crate::case::MAX_CASE_NODES
        )));
    }
    if !(args.inject_rate.is_finite() && (0.0..=MAX_INJECT_RATE).contains(&args.inject_rate)) {
        return Err(CliError::input(anyhow::anyhow!(
            "--inject-rate must be between 0 and {MAX_INJECT_RATE} faults per second"
        )));
    }
    let backend = super::backend_kind(args.backend)?;
    args.sanitize.validate(backend)?;
    let config = SoakConfig {
        backend,
        duration: args.duration,
        seed: args.seed,
        faults: args.faults.clone(),
        chunk_steps: args.chunk_steps,
        // A sanitizer's slowdown is not a hang.
        chunk_deadline: args
            .chunk_timeout
            .saturating_mul(args.sanitize.deadline_factor()),
        max_nodes: args.max_nodes,
        life_steps: args.life_steps,
        keep_cases: args.keep_cases,
        worker: start::sanitized_worker_command(1, args.sanitize)?,
        out: args.out.clone(),
        found_by: super::invocation(),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        replay: !args.no_replay,
        inject_rate: args.inject_rate,
    };
    if let Some(dir) = &args.out {
        super::check_output_dir(dir)?;
    }
    // A forced stop kills the worker and returns here, so the report is still written.
    let interrupt = crate::interrupt::campaign_flag();
    let report = run_soak(&config, &interrupt);
    if let Some(dir) = &args.out {
        write_report(dir, &report).map_err(|e| {
            CliError::environment(anyhow::anyhow!("cannot write to {}: {e}", dir.display()))
        })?;
    }
    print!("{}", report.markdown());
    forced_stop(format!(
        "soak stopped after {:.1} s with {} crash(es){}",
        report.seconds,
        report.total_crashes(),
        args.out
            .as_ref()
            .map(|d| format!("; see {}", d.display()))
            .unwrap_or_default()
    ))?;
    if report.total_crashes() > 0 {
        return Err(CliError::Findings(anyhow::anyhow!(
            "{} crash(es) under {} signature(s){}",
            report.total_crashes(),
            report.crashes.len(),
            args.out
                .as_ref()
                .map(|d| format!("; flight recorders in {}", d.join("crashes").display()))
                .unwrap_or_default()
        )));
    }
    if let Some(message) = report.environment_message {
        return Err(CliError::environment(anyhow::anyhow!("{message}")));
    }
    Ok(())
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
