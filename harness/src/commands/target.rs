/*!
`forcefield target`: commands about targets, engines other than Forcefield's own that speak
`forcefield-target/1` (the `forcefield-target` crate).

`forcefield target check "CMD ARGS"` starts the command (split into words as a shell would, no shell
run), runs the conformance script on it (twice: the second run is the determinism check), and prints
what passed, what was skipped for want of a capability, and what the target does wrong. Exit 0 when
it conforms, 1 with the problems listed, 2 when the command cannot be started. In an embedding
executable the command may be left out: the embedded engine is checked, served by this very
executable re-run as `serve-target` (so that its panic is reported, not suffered).
*/

use std::time::Duration;

use clap::{Args, Subcommand};
use forcefield_target::{check, ProcessOptions, ProcessTarget, SpawnError, Target, TargetError};

use crate::commands::error::CliError;
use crate::commands::parse_duration;
use crate::worker::target_job::TargetSource;

/// The hidden subcommand of an embedding executable ([`crate::commands::embed`]) that serves its
/// engine over `forcefield-target/1` on stdin and stdout.
pub const SERVE_TARGET: &str = "serve-target";

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
    /// The target's command line, one argument: "python3 target.py --flag" (in an embedding
    /// executable, left out: the embedded engine).
    pub command: Option<String>,
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

/// The command line `target check` starts: the one given, or this executable serving its
/// embedded engine.
fn check_command(args: &CheckArgs) -> Result<String, CliError> {
    match (&args.command, TargetSource::resolve(None)) {
        (Some(command), _) => Ok(command.clone()),
        (None, Some(TargetSource::Embedded(_))) => {
            let exe = std::env::current_exe().map_err(|e| {
                CliError::environment(anyhow::anyhow!("cannot find this program: {e}"))
            })?;
            let exe = exe.to_str().ok_or_else(|| {
                CliError::environment(anyhow::anyhow!(
                    "this program's path is not UTF-8: {}",
                    exe.display()
                ))
            })?;
            Ok(format!("{} {}", shell_words::quote(exe), SERVE_TARGET))
        }
        (None, _) => Err(CliError::input(anyhow::anyhow!(
            "name the target's command: forcefield target check \"CMD ARGS\""
        ))),
    }
}

fn run_check(args: &CheckArgs) -> Result<(), CliError> {
    if args.timeout.is_zero() {
        return Err(CliError::input(anyhow::anyhow!(
            "--timeout must be more than 0"
        )));
    }
    let command = check_command(args)?;
    let options = ProcessOptions {
        timeout: args.timeout,
        ..ProcessOptions::default()
    };
    // The first start is made here so that a command that cannot start at all is bad input (exit
    // 2); one that starts and then fails the handshake is a problem of the target (exit 1).
    let first = match ProcessTarget::spawn(&command, options.clone()) {
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
            return Err(findings(&command, &report));
        }
    };
    let mut first = first;
    let mut make = || -> Result<Box<dyn Target>, TargetError> {
        if let Some(t) = first.take() {
            return Ok(Box::new(t));
        }
        ProcessTarget::spawn(&command, options.clone())
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
        Err(findings(&command, &report))
    }
}

fn findings(command: &str, report: &check::CheckReport) -> CliError {
    CliError::Findings(anyhow::anyhow!(
        "target `{command}` does not conform: {} problem(s)",
        report.problems.len()
    ))
}

/// What a campaign against a target learns from its handshake before the first case: who it is,
/// and which generic checks run on it and which are skipped for want of a capability. Written to
/// the campaign directory as `target.json` and printed before the campaign.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetPlan {
    /// The command line.
    pub command: String,
    /// The name its handshake gives.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The capabilities it declares.
    pub capabilities: Vec<String>,
    /// The checks that run.
    pub checks: Vec<String>,
    /// The checks skipped, each with the capability it needs (`sssp-dijkstra (needs sssp)`).
    pub skipped_checks: Vec<String>,
    /// The op kinds of cases never sent to it, with why.
    pub skipped_ops: Vec<String>,
}

impl TargetPlan {
    /// The start of a campaign's `target` totals: who it is and what its capabilities skip.
    pub fn totals(&self) -> crate::hunt::target_totals::TargetTotals {
        crate::hunt::target_totals::TargetTotals {
            name: format!("{} {}", self.name, self.version),
            checks_skipped: self.skipped_checks.clone(),
            ..Default::default()
        }
    }

    /// The lines printed before a campaign.
    pub fn lines(&self) -> Vec<String> {
        let none = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        vec![
            format!(
                "target: {} {} (`{}`), capabilities: {}",
                self.name,
                self.version,
                self.command,
                none(&self.capabilities)
            ),
            format!("checks: {}", none(&self.checks)),
            format!(
                "checks skipped for want of a capability: {}",
                none(&self.skipped_checks)
            ),
            format!("ops not sent: {}", none(&self.skipped_ops)),
        ]
    }
}

/// Starts the target once for its handshake and says what a campaign will check on it. A command
/// that cannot start or fails the handshake is bad input (exit 2): no case could run.
pub fn plan_target(source: &TargetSource) -> Result<TargetPlan, CliError> {
    use crate::case::Op;
    use crate::worker::target_case::{plan_checks, skip_reason, CaseParams};
    let info = source.info().map_err(CliError::input)?;
    let params = source.case_params();
    let (run, skipped) = plan_checks(&info.capabilities);
    // The capacity re-run runs on a second engine the worker builds to grow otherwise, and the
    // reference model and physics know Forcefield's semantics: only ours (the target whose
    // parameters are the case's) gets them.
    let ours = params == CaseParams::Send;
    let (run, not_ours): (Vec<_>, Vec<_>) =
        run.into_iter().partition(|c| ours || !c.forcefield_only);
    // One op of each kind that a capability gates (their contents do not matter here).
    let gated = [
        Op::SetParams {
            params: forcefield::SimParams::default(),
        },
        Op::Reserve { nodes: 0, edges: 0 },
        Op::ShrinkToFit,
        Op::Sssp { source: 0 },
        Op::SetPositionConstraint {
            node: 0,
            target: [0.0; 3],
            stiffness: 0.0,
        },
        Op::SetDistanceConstraint {
            u: 0,
            v: 0,
            distance: 0.0,
        },
        Op::ClearConstraints,
        Op::Inject {
            fault: forcefield::EnvFault::FailAlloc { nth: 1 },
        },
    ];
    Ok(TargetPlan {
        command: source.describe(),
        name: info.name,
        version: info.version,
        capabilities: info.capabilities.names(),
        checks: run.iter().map(|c| c.name.to_string()).collect(),
        skipped_checks: skipped
            .iter()
            .map(|c| {
                let missing: Vec<&str> = c
                    .needs
                    .iter()
                    .filter(|&&need| !info.capabilities.has(need))
                    .map(|need| need.name())
                    .collect();
                format!("{} (needs {})", c.name, missing.join(", "))
            })
            .chain(
                not_ours
                    .iter()
                    .map(|c| format!("{} (Forcefield's engine only)", c.name)),
            )
            .collect(),
        skipped_ops: gated
            .iter()
            .filter_map(|op| skip_reason(op, &info.capabilities, params).map(str::to_string))
            .collect(),
    })
}
