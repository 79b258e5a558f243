/*!
`forcefield target`: commands about targets, engines other than Forcefield's own that speak
`forcefield-target/1` (the `forcefield-target` crate).

`forcefield target check "CMD ARGS"` starts the command (split into words as a shell would, no shell
run), runs the conformance script on it (twice: the second run is the determinism check), and prints
what passed, what was skipped for want of a capability, and what the target does wrong. Exit 0 when
it conforms, 1 with the problems listed, 2 when the command cannot be started.
*/

use std::time::Duration;

use clap::{Args, Subcommand};
use forcefield_target::{check, ProcessOptions, ProcessTarget, SpawnError, Target, TargetError};

use crate::commands::error::CliError;
use crate::commands::parse_duration;

/// Commands about other engines' targets.
#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(subcommand)]
    pub command: TargetCommand,
}

/// What to do with a target.
#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Run the conformance script on a target and list what it does wrong.
    Check(CheckArgs),
}

/// `forcefield target check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The target's command line, one argument: "python3 target.py --flag".
    pub command: String,
    /// Longest wait for one reply before the target counts as hung (and is killed).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Runs `forcefield target ...`.
pub fn run(args: &TargetArgs) -> Result<(), CliError> {
    match &args.command {
        TargetCommand::Check(check_args) => run_check(check_args),
    }
}

fn run_check(args: &CheckArgs) -> Result<(), CliError> {
    if args.timeout.is_zero() {
        return Err(CliError::input(anyhow::anyhow!(
            "--timeout must be more than 0"
        )));
    }
    let options = ProcessOptions {
        timeout: args.timeout,
        ..ProcessOptions::default()
    };
    // The first start is made here so that a command that cannot start at all is bad input (exit
    // 2); one that starts and then fails the handshake is a problem of the target (exit 1).
    let first = match ProcessTarget::spawn(&args.command, options.clone()) {
        Ok(t) => Some(t),
        Err(e @ (SpawnError::CommandLine { .. } | SpawnError::Start { .. })) => {
            return Err(CliError::input(e));
        }
        Err(SpawnError::Handshake { source, .. }) => {
            let report = check::CheckReport {
                problems: vec![check::Problem {
                    step: "handshake".into(),
                    what: source.to_string(),
                }],
                ..Default::default()
            };
            println!("{report}");
            return Err(findings(&args.command, &report));
        }
    };
    let mut first = first;
    let mut make = || -> Result<Box<dyn Target>, TargetError> {
        if let Some(t) = first.take() {
            return Ok(Box::new(t));
        }
        ProcessTarget::spawn(&args.command, options.clone())
            .map(|t| Box::new(t) as Box<dyn Target>)
            .map_err(|e| match e {
                SpawnError::Handshake { source, .. } => source,
                other => TargetError::Protocol(other.to_string()),
            })
    };
    let report = check::check(&mut make);
    println!("{report}");
    if report.passed() {
        Ok(())
    } else {
        Err(findings(&args.command, &report))
    }
}

fn findings(command: &str, report: &check::CheckReport) -> CliError {
    CliError::Findings(anyhow::anyhow!(
        "target `{command}` does not conform: {} problem(s)",
        report.problems.len()
    ))
}
