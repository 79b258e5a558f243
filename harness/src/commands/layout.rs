/*!
`forcefield layout`: lay out a graph file with the engine and write what came out.

Responsible for the subcommand's flags ([`LayoutArgs`]), running the engine for a number of steps
with a progress bar ([`compute_layout`], on the backend [`open_backend`] chose: one
`Engine<Box<dyn Backend>>` path for CPU and CUDA), and writing the outputs: a positions file (JSON, see
[`PositionsFile`]) and a picture (SVG, nodes optionally coloured by a label file). Every output is
written atomically ([`write_atomically`]): a reader sees the old file or the new one, never half.
Reading inputs is [`crate::graph_io`]'s job; drawing is [`crate::svg`]'s.
*/

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::artifacts::{write_atomically, MissingDirs};
use forcefield::{Engine, EngineConfig, EngineError, Fault, FaultSet, GraphSpec, SimParams};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::commands::backend_select::open_backend;
use crate::commands::backend_select::{BackendChoice, ResolvedBackend};
use crate::commands::error::CliError;
use crate::graph_io::{read_graph, read_labels, read_params};
use crate::svg::{render_svg, SvgStyle};

/// Runs with at least this many steps show a progress bar (when stderr is a terminal).
pub const PROGRESS_MIN_STEPS: u32 = 1000;
/// Runs of at least this many node-steps show one too, however few their steps.
pub const PROGRESS_MIN_NODE_STEPS: u64 = 10_000_000;

/// Arguments of `forcefield layout`.
#[derive(Debug, Clone, clap::Args)]
pub struct LayoutArgs {
    /// Graph file: edge list (`u v [w]`), Matrix Market (`.mtx`) or the JSON graph form (`.json`).
    pub graph: PathBuf,
    /// Steps to run.
    #[arg(long, default_value_t = 500)]
    pub steps: u32,
    /// Engine backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Simulation parameters (JSON; fields not named keep their defaults).
    #[arg(long, value_name = "FILE.json")]
    pub params: Option<PathBuf>,
    /// Seed of the initial positions (overrides the params file's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write positions here (JSON).
    #[arg(long, value_name = "FILE.json")]
    pub out: Option<PathBuf>,
    /// Draw the xy projection here (SVG).
    #[arg(long, value_name = "FILE.svg")]
    pub svg: Option<PathBuf>,
    /// Colour the picture's nodes by class: `id class` per line.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Planted fault to switch on (repeatable; `forcefield faults` lists them): how the GPU count
    /// benchmark lays out with a graded slowdown.
    #[arg(long = "fault", value_name = "FAULT")]
    pub faults: Vec<Fault>,
}

/// The positions file written by `--out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionsFile {
    /// The backend that computed the layout: `cpu` or `cuda`.
    pub backend: String,
    /// Steps run.
    pub steps: u32,
    /// Nodes (= `positions.len()`).
    pub num_nodes: u32,
    /// `[x, y, z]` per node. Non-finite coordinates are written as `null`.
    pub positions: Vec<[f32; 3]>,
}

/// Runs `forcefield layout`.
pub fn run(args: &LayoutArgs) -> Result<(), CliError> {
    // Outputs are checked before anything runs: a typo in a path must not cost a whole layout.
    for path in [&args.out, &args.svg].into_iter().flatten() {
        check_writable(path).map_err(CliError::input)?;
    }
    // An unusable backend fails before any input is read, so the user learns of it at once.
    let (backend, note) = open_backend(args.backend)?;
    let graph = read_graph(&args.graph).map_err(CliError::input)?;
    let mut params = match &args.params {
        Some(path) => read_params(path).map_err(CliError::input)?,
        None => SimParams::default(),
    };
    if let Some(seed) = args.seed {
        params.seed = seed;
    }
    let labels = match &args.labels {
        Some(path) => Some(read_labels(path, graph.num_nodes).map_err(CliError::input)?),
        None => None,
    };
    if let Some(line) = &note.line {
        let _ = writeln!(std::io::stderr(), "{line}");
    }

    let bar = progress_bar(args.steps, graph.num_nodes);
    let started = Instant::now();
    let faults = FaultSet::of(&args.faults);
    let positions = compute_layout(backend, &graph, params, faults, args.steps, |n| {
        bar.inc(n as u64)
    })
    .map_err(engine_error)?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();

    if let Some(path) = &args.out {
        let file = PositionsFile {
            backend: note.resolved.name().to_string(),
            steps: args.steps,
            num_nodes: graph.num_nodes,
            positions: positions.clone(),
        };
        let mut json = serde_json::to_vec(&file).map_err(CliError::environment)?;
        json.push(b'\n');
        write_output(path, &json).map_err(CliError::input)?;
    }
    if let Some(path) = &args.svg {
        let svg = render_svg(
            &positions,
            &graph.edges,
            labels.as_deref(),
            &SvgStyle::default(),
        );
        write_output(path, svg.as_bytes()).map_err(CliError::input)?;
    }
    let _ = writeln!(
        std::io::stdout(),
        "{}",
        summary(&graph, args.steps, note.resolved, elapsed)
    );

    let broken = positions
        .iter()
        .filter(|p| p.iter().any(|c| !c.is_finite()))
        .count();
    if broken > 0 {
        return Err(CliError::Findings(anyhow::anyhow!(
            "{broken} of {} nodes have non-finite positions after {} steps",
            positions.len(),
            args.steps
        )));
    }
    Ok(())
}

/// The one-line summary printed on stdout.
fn summary(graph: &GraphSpec, steps: u32, backend: ResolvedBackend, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        format!(", {:.0} steps/s", steps as f64 / secs)
    } else {
        String::new()
    };
    format!(
        "layout: {} nodes, {} edges, {steps} steps on {} in {secs:.3} s{rate}",
        graph.num_nodes,
        graph.edges.len(),
        backend.name()
    )
}

/// Engine errors caused by the input are input errors; the rest (a failed allocation, a lost
/// device) are the environment's.
fn engine_error(e: EngineError) -> CliError {
    match e {
        EngineError::Params(_) | EngineError::Graph(_) => CliError::input(e),
        _ => CliError::environment(e),
    }
}

/// A progress bar on stderr for long runs (many steps, or a large graph); hidden for short ones and
/// when stderr is not a terminal (indicatif draws nothing to a non-terminal).
fn progress_bar(steps: u32, nodes: u32) -> ProgressBar {
    if steps < PROGRESS_MIN_STEPS && (steps as u64) * (nodes as u64) < PROGRESS_MIN_NODE_STEPS {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "layout {bar:40} {pos}/{len} steps, {elapsed} elapsed, eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Lays out `graph` on `backend`: builds an engine, runs `steps` steps in chunks (calling
/// `progress` with the steps of each chunk) and returns the positions. Chunking does not change
/// the result: the engine's steps are the same however they are grouped.
pub fn compute_layout<Bk: forcefield::Backend>(
    backend: Bk,
    graph: &GraphSpec,
    params: SimParams,
    faults: FaultSet,
    steps: u32,
    mut progress: impl FnMut(u32),
) -> Result<Vec<[f32; 3]>, EngineError> {
    let mut engine = Engine::with_config(backend, graph, params, EngineConfig::default(), faults)?;
    // About a hundred progress updates per run, each at most a hundred steps.
    let chunk = (steps / 100).clamp(1, 100);
    let mut done = 0;
    while done < steps {
        let n = chunk.min(steps - done);
        engine.step(n)?;
        done += n;
        progress(n);
    }
    engine.positions()
}

/// Checks that `path` can be written: its directory exists and takes a new file, and `path` is not
/// a directory. Nothing is left behind.
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    let context = || format!("cannot write {}", path.display());
    if path.is_dir() {
        return Err(anyhow::anyhow!("it is a directory")).with_context(context);
    }
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(anyhow::anyhow!("no directory {}", dir.display())).with_context(context);
    }
    // The same kind of temporary file the atomic write makes, so this fails exactly when it would.
    tempfile::Builder::new()
        .prefix(".forcefield-check")
        .tempfile_in(dir)
        .map(drop)
        .with_context(context)
}

/// Writes an output file atomically ([`write_atomically`]). The directory must exist: a typo in
/// `--out` is an error, not a new directory.
pub fn write_output(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomically(path, bytes, MissingDirs::Refuse)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use forcefield::{CpuBackend, Edge};

    fn path_graph(n: u32) -> GraphSpec {
        GraphSpec {
            num_nodes: n,
            edges: (1..n).map(|i| Edge::new(i - 1, i)).collect(),
            positions: None,
        }
    }

    #[test]
    fn chunked_steps_match_one_call_and_report_every_step() {
        let g = path_graph(6);
        let mut reported = Vec::new();
        let chunked = compute_layout(
            CpuBackend::new(),
            &g,
            SimParams::default(),
            FaultSet::NONE,
            250,
            |n| reported.push(n),
        )
        .unwrap();
        assert_eq!(reported.iter().sum::<u32>(), 250);
        assert!(
            reported.len() > 1,
            "expected several chunks, got {reported:?}"
        );
        let mut engine = Engine::new(CpuBackend::new(), &g, SimParams::default()).unwrap();
        engine.step(250).unwrap();
        assert_eq!(chunked, engine.positions().unwrap());
    }

    #[test]
    fn zero_steps_return_the_initial_positions() {
        let g = path_graph(3);
        let mut calls = 0;
        let p = compute_layout(
            CpuBackend::new(),
            &g,
            SimParams::default(),
            FaultSet::NONE,
            0,
            |_| calls += 1,
        )
        .unwrap();
        assert_eq!(calls, 0);
        let mut engine = Engine::new(CpuBackend::new(), &g, SimParams::default()).unwrap();
        assert_eq!(p, engine.positions().unwrap());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_output(&path, b"old").unwrap();
        write_output(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/dir/out.json");
        let e = write_output(&missing, b"x").unwrap_err();
        assert!(e.to_string().starts_with("cannot write "), "{e}");
    }

    #[test]
    fn engine_errors_map_to_input_or_environment() {
        let bad = SimParams {
            dt: f32::NAN,
            ..SimParams::default()
        };
        let e = compute_layout(
            CpuBackend::new(),
            &path_graph(2),
            bad,
            FaultSet::NONE,
            1,
            |_| {},
        )
        .unwrap_err();
        assert_eq!(engine_error(e).exit_code(), crate::exit::BAD_INPUT);
        assert_eq!(
            engine_error(EngineError::NoCheckpoint).exit_code(),
            crate::exit::ENVIRONMENT
        );
    }
}
