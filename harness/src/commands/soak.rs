/*!
`forcefield soak`: the server's life in a worker. See [`crate::soak`].
*/

use std::path::PathBuf;
use std::time::Duration;

use forcefield::Fault;

use crate::cli::{BackendChoice, CliError};
use crate::soak::{run_soak, write_report, SoakConfig};

/// Arguments of `forcefield soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long to run (e.g. 60s, 10m).
    #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Planted fault to switch on (repeatable).
    #[arg(long = "fault")]
    pub faults: Vec<Fault>,
    /// Engine backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cpu)]
    pub backend: BackendChoice,
    /// Seed of the op stream.
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
}

/// Runs the soak, prints and writes its report; crashes give exit code 1.
pub fn run(args: &SoakArgs) -> Result<(), CliError> {
    if args.chunk_steps == 0 {
        return Err(CliError::input(anyhow::anyhow!(
            "--chunk-steps must be at least 1"
        )));
    }
    let config = SoakConfig {
        backend: super::backend_kind(args.backend)?,
        duration: args.duration,
        seed: args.seed,
        faults: args.faults.clone(),
        chunk_deadline: args.chunk_timeout,
        chunk_steps: args.chunk_steps,
        worker: super::worker_command(1)?,
        out: args.out.clone(),
    };
    let interrupt = crate::interrupt::flag();
    let report =
        run_soak(&config, &interrupt).map_err(|e| CliError::environment(anyhow::anyhow!("{e}")))?;
    if let Some(dir) = &args.out {
        write_report(dir, &report).map_err(|e| {
            CliError::environment(anyhow::anyhow!("cannot write to {}: {e}", dir.display()))
        })?;
    }
    print!("{}", report.markdown());
    if report.total_crashes() > 0 {
        return Err(CliError::Findings(anyhow::anyhow!(
            "{} crash(es) under {} signature(s)",
            report.total_crashes(),
            report.crashes.len()
        )));
    }
    Ok(())
}
