/*!
The `forcefield` command line: argument parsing, dispatch to one module per subcommand, and the one
place where errors become exit codes.

Responsible for nothing else: each subcommand is a variant of [`Command`] whose arguments and work
live in its own module (`layout` in [`crate::commands::layout`]; `faults`, `soak`, `selftest` and
`bench` are added the same way; `run`, `repro`, `minimize`, `ci`, `merge`, `report`, `target` and
`worker`, which an embedding executable has too, are declared once in `commands/shared.rs`). A
subcommand returns `Result<(), CliError>`; [`main_with_args`] prints the error as one line and
returns its exit code ([`crate::exit`]):

| outcome | exit | stderr |
|---|---|---|
| success | 0 | |
| findings ([`CliError::Findings`]) | 1 | `finding: ...` |
| clap usage error (unknown flag, bad value) | 2 | clap's own message |
| bad input ([`CliError::Input`]) | 2 | `error: ...` (one line, causes joined by `: `) |
| environment, e.g. no CUDA ([`CliError::Environment`]) | 3 | `error: ...` |
| stopped by a signal ([`CliError::Interrupted`]), report written | 128 + signal | `interrupted: ...` |
*/

use std::ffi::OsString;
use std::io::Write as _;

use clap::{Parser, Subcommand};

use crate::commands::error::CliError;
use crate::commands::shared::SharedCommand;
use crate::exit;

/// Forcefield: crash hunting and benchmarks for GPU graph-layout engines.
#[derive(Debug, Parser)]
#[command(name = "forcefield", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each dispatches to its own module.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lay out a graph file; write positions (JSON) and a picture (SVG).
    Layout(crate::commands::layout::LayoutArgs),
    /// `run`, `repro`, `minimize`, `ci`, `merge`, `report`, `target` and the hidden `worker`: the
    /// subcommands an embedding executable has too.
    #[command(flatten)]
    Shared(SharedCommand),
    /// List the planted faults.
    Faults,
    /// The server's life: one engine, continuous steps, mutations and resizes; crashes recorded.
    Soak(crate::commands::soak::SoakArgs),
    /// Prove the harness: a seeded campaign per planted fault, then the clean engine; a table.
    Selftest(crate::commands::selftest::SelftestArgs),
    /// Benchmarks: record results with a machine fingerprint, compare against a baseline, draw trends.
    Bench(crate::commands::bench::BenchArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn dispatch(self) -> Result<(), CliError> {
        match self {
            Command::Layout(args) => crate::commands::layout::run(&args),
            Command::Shared(command) => command.dispatch(),
            Command::Faults => crate::commands::faults::run(),
            Command::Soak(args) => crate::commands::soak::run(&args),
            Command::Selftest(args) => crate::commands::selftest::run(&args),
            Command::Bench(args) => crate::commands::bench::run(&args),
        }
    }
}

/// Runs `forcefield` with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    main_with_args(std::env::args_os())
}

/// Runs `forcefield` with `args` (the first is the program name); returns the exit code.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    parse_and_dispatch(args, |cli: Cli| cli.command.dispatch())
}

/// Parses `args` as `P` and runs `dispatch` on it; returns the exit code. Shared by `forcefield`
/// and an embedding executable ([`crate::commands::embed`]), which parse different subcommand sets
/// and treat errors the same way.
pub(crate) fn parse_and_dispatch<P, I, T>(
    args: I,
    dispatch: impl FnOnce(P) -> Result<(), CliError>,
) -> i32
where
    P: Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match P::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // clap formats usage errors, --help and --version itself; only the code is ours.
            let _ = e.print();
            return if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            };
        }
    };
    let result = dispatch(cli);
    // The CUDA contexts kept for the process's lifetime are destroyed before it ends, so that
    // compute-sanitizer's leak and module-unload checks see a clean exit.
    forcefield::CudaBackend::release_shared_contexts();
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            // Ignore a closed stderr: the exit code still tells the caller what happened.
            let _ = writeln!(std::io::stderr(), "{}", e.report_line());
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::error::one_line;
    use anyhow::Context as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_follow_the_error_kind() {
        let e = || anyhow::anyhow!("x");
        assert_eq!(CliError::Findings(e()).exit_code(), exit::FINDINGS);
        assert_eq!(CliError::Input(e()).exit_code(), exit::BAD_INPUT);
        assert_eq!(CliError::Environment(e()).exit_code(), exit::ENVIRONMENT);
    }

    #[test]
    fn causes_are_joined_on_one_line_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone\nreally");
        let e = Err::<(), _>(io).context("cannot read g.edges").unwrap_err();
        let e = e.context("loading the graph");
        assert_eq!(
            CliError::Input(e).report_line(),
            "error: loading the graph: cannot read g.edges: gone really"
        );
        // A message that already ends with its cause does not repeat it.
        let inner = anyhow::anyhow!("line 3: bad");
        let e = inner.context("g.edges: line 3: bad");
        assert_eq!(one_line(&e), "g.edges: line 3: bad");
        assert!(CliError::Findings(anyhow::anyhow!("nan"))
            .report_line()
            .starts_with("finding: "));
    }

    #[test]
    fn usage_errors_exit_2_and_help_exits_0() {
        assert_eq!(
            main_with_args(["forcefield", "--no-such-flag"]),
            exit::BAD_INPUT
        );
        assert_eq!(main_with_args(["forcefield"]), exit::BAD_INPUT);
        assert_eq!(
            main_with_args(["forcefield", "layout", "g", "--steps", "x"]),
            exit::BAD_INPUT
        );
        assert_eq!(main_with_args(["forcefield", "--version"]), exit::OK);
    }
}
