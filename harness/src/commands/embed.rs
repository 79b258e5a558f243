/*!
Embedding: one executable that is both the driver and the worker of a user's engine.

A crate that implements [`Target`] for its engine depends on this library and makes a binary
whose `main` is one call:

```no_run
use forcefield_target::{Capabilities, Edge, Graph, Params, Point, Result, Target, TargetInfo};

/// A stand-in engine: nodes that never move.
#[derive(Default)]
struct Still {
    points: Vec<Point>,
}

impl Target for Still {
    fn info(&self) -> TargetInfo {
        TargetInfo { name: "still".into(), version: "1".into(), capabilities: Capabilities::none() }
    }
    fn create(&mut self, graph: &Graph, _params: Option<&Params>) -> Result<()> {
        self.points = match &graph.positions {
            Some(p) => p.clone(),
            None => (0..graph.num_nodes).map(|i| [i as f32, 0.0, 0.0]).collect(),
        };
        Ok(())
    }
    fn add_nodes(&mut self, count: u64, positions: Option<&[Point]>) -> Result<()> {
        for i in 0..count as usize {
            let n = self.points.len() as f32;
            self.points.push(positions.map_or([n, 0.0, 0.0], |p| p[i]));
        }
        Ok(())
    }
    fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
        let mut i = 0;
        self.points.retain(|_| { i += 1; !ids.contains(&(i - 1)) });
        Ok(())
    }
    fn add_edges(&mut self, _edges: &[Edge]) -> Result<()> { Ok(()) }
    fn remove_edges(&mut self, _pairs: &[(u32, u32)]) -> Result<()> { Ok(()) }
    fn step(&mut self, _count: u64) -> Result<()> { Ok(()) }
    fn positions(&mut self) -> Result<Vec<Point>> { Ok(self.points.clone()) }
}

fn main() -> std::process::ExitCode {
    forcefield_harness::embed::main(Still::default)
}
```

Its subcommands are `forcefield`'s target ones, the same declaration and code
(`commands/shared.rs`): `run` (a campaign: isolation, signatures, minimization, `summary.json` and
`findings/`), `repro`, `minimize`, `ci` (corpus replay and a campaign), `report`, `merge` and
`target check`; each hunts the embedded engine unless given `--target "CMD"`. Workers are this
executable re-run as `worker`: each builds the engine in its own process (a fresh one per case) and
calls the trait directly, so a panic, an abort or a hang of the engine kills a worker, never the
driver, and is signed like any worker's death. `target check` runs the conformance script on this
executable re-run as `serve-target`, which speaks `forcefield-target/1` on stdin and stdout.
*/

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use forcefield_target::Target;

use crate::commands::error::CliError;
use crate::commands::shared::SharedCommand;
use crate::commands::target::SERVE_TARGET;
use crate::worker::target_job::{register_embedded, TargetFactory};

/// The command line of an embedding executable.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Hunt crashes in this engine: campaigns, replay, minimization, a corpus gate."
)]
struct EmbedCli {
    #[command(subcommand)]
    command: EmbedCommand,
}

/// The subcommands of an embedding executable: `forcefield`'s shared ones, on the embedded engine,
/// and the one that serves it.
#[derive(Debug, Subcommand)]
enum EmbedCommand {
    // Boxed: the shared set's arguments are large and `ServeTarget` carries none.
    #[command(flatten)]
    Shared(Box<SharedCommand>),
    /// Internal: serve the engine over forcefield-target/1 on stdin and stdout (`target check`).
    #[command(name = SERVE_TARGET, hide = true)]
    ServeTarget,
}

/// Runs the embedding executable of the engine `make` builds, with the process's arguments; the
/// whole body of its `main`.
pub fn main<T, F>(make: F) -> ExitCode
where
    T: Target + 'static,
    F: Fn() -> T + Send + Sync + 'static,
{
    main_with_args(make, std::env::args_os())
}

/// [`main`] with `args` (the first is the program name).
pub fn main_with_args<T, F, I, A>(make: F, args: I) -> ExitCode
where
    T: Target + 'static,
    F: Fn() -> T + Send + Sync + 'static,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let make = Arc::new(make);
    let factory = Arc::clone(&make);
    let factory: Arc<TargetFactory> = Arc::new(move || Ok(Box::new(factory()) as Box<dyn Target>));
    register_embedded(factory);
    let code = crate::commands::cli::parse_and_dispatch(args, |cli: EmbedCli| {
        dispatch(cli.command, &*make)
    });
    // Exit codes are 0 to 3 and 128 + a signal number: all fit.
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

fn dispatch<T: Target>(command: EmbedCommand, make: &dyn Fn() -> T) -> Result<(), CliError> {
    match command {
        EmbedCommand::Shared(command) => command.dispatch(),
        EmbedCommand::ServeTarget => forcefield_target::serve_stdio(make())
            .map_err(|e| CliError::environment(anyhow::anyhow!("serving the target: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        EmbedCli::command().debug_assert();
    }
}
