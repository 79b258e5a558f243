/*!
The subcommands `forcefield` and every embedding executable ([`crate::commands::embed`]) have in
common, declared once: both command lines `#[command(flatten)]` [`SharedCommand`], so the two
`--help`s say the same things and each subcommand dispatches to the same function. Which engine
such a command drives is not decided here: each resolves `--target` itself (a command line, the
embedded engine, or Forcefield's own).
*/

use clap::Subcommand;

use crate::commands::error::CliError;

/// The subcommands of both command lines.
#[derive(Debug, Subcommand)]
pub enum SharedCommand {
    /// Hunt crashes: generated cases through isolated workers; findings minimized and written.
    Run(crate::commands::run::RunArgs),
    /// Run one case file and print its outcome and signature.
    Repro(crate::commands::repro::ReproArgs),
    /// Shrink a failing case file to the smallest case with the same signature.
    Minimize(crate::commands::minimize::MinimizeArgs),
    /// The regression gate: replay the corpus, then a time-boxed campaign; exit 1 on anything new.
    Ci(crate::commands::ci::CiArgs),
    /// Merge the summary.json files of a sharded campaign.
    Merge(crate::commands::merge::MergeArgs),
    /// Rebuild a campaign's summary from its journal (after a kill) and print it.
    Report(crate::commands::report::ReportArgs),
    /// Check a target (another engine speaking forcefield-target/1).
    Target(crate::commands::target::TargetArgs),
    /// Internal: serve cases for a driver (started by this executable itself).
    #[command(hide = true)]
    Worker(crate::commands::worker::WorkerArgs),
}

impl SharedCommand {
    /// Runs the subcommand.
    pub fn dispatch(self) -> Result<(), CliError> {
        match self {
            SharedCommand::Run(args) => crate::commands::run::run(&args),
            SharedCommand::Repro(args) => crate::commands::repro::run(&args),
            SharedCommand::Minimize(args) => crate::commands::minimize::run(&args),
            SharedCommand::Ci(args) => crate::commands::ci::run(&args),
            SharedCommand::Merge(args) => crate::commands::merge::run(&args),
            SharedCommand::Report(args) => crate::commands::report::run(&args),
            SharedCommand::Target(args) => crate::commands::target::run(&args),
            SharedCommand::Worker(args) => crate::commands::worker::run(&args),
        }
    }
}
