/*!
`forcefield bench`: record criterion results into a history, compare the newest entry with a
baseline (exit 1 on a regression), calibrate the gate on A/A entries, and draw trend reports.

The work is in [`crate::bench`]; this module parses the command line, chooses default paths and
maps every error to its exit code: bad input (a missing criterion directory, an unreadable history
line, an unknown reference, entries that are not comparable) is 2, an environment failure (a file
that cannot be written) is 3, a regression is 1.
*/

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use crate::bench::calibrate::{self, Thresholds};
use crate::bench::compare::{self, BaselineChoice, GateConfig, Rerun};
use crate::bench::counts::{self, CallgrindOptions};
use crate::bench::fingerprint::GpuProbe;
use crate::bench::history::{self, HistoryError};
use crate::bench::record::{self, RecordOptions};
use crate::bench::report;
use crate::bench::rerun::ExeRerunner;
use crate::commands::error::CliError;

/// The history used when `--history` is not given.
pub const DEFAULT_HISTORY: &str = "bench-history.jsonl";

/// Arguments of `forcefield bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The `bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Append criterion's results (all samples), a machine fingerprint and layout quality to the history.
    Record(RecordArgs),
    /// Compare the newest entry with a baseline; a markdown table; exit 1 on a regression.
    Compare(CompareArgs),
    /// Derive per-benchmark noise thresholds from A/A entries (same build, same machine) and
    /// report the gate's false-alarm rate and the smallest slowdown it catches.
    Calibrate(CalibrateArgs),
    /// SVG trend charts per benchmark with change points, and a markdown/HTML page.
    Report(ReportArgs),
    /// Count the work of benchmarks (instructions under Callgrind, or per-kernel counts from an
    /// Nsight Compute CSV) into a counts file for `bench record --counts`.
    Count(CountArgs),
}

/// Arguments of `forcefield bench count`.
#[derive(Debug, Args)]
pub struct CountArgs {
    /// A counting executable to run under Callgrind (repeatable), e.g. the `step_counts` bench.
    #[arg(long = "exe", required_unless_present = "ncu_csv")]
    pub executables: Vec<PathBuf>,
    /// Arguments for every counting executable (e.g. `--sizes 1k`), as one string split at spaces.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub exe_args: String,
    /// Simulate the caches too, for estimated cycles beside the instructions (about 2x slower).
    #[arg(long)]
    pub cache_sim: bool,
    /// Instead of running Callgrind: read Nsight Compute's `--csv --print-units base` output of
    /// `smsp__inst_executed.sum,dram__bytes.sum` (per kernel, summed over launches).
    #[arg(long, conflicts_with_all = ["executables", "cache_sim"])]
    pub ncu_csv: Option<PathBuf>,
    /// Benchmark id prefix of the kernels of `--ncu-csv` (ids are `<prefix>/<kernel>`).
    #[arg(long, default_value = "gpu_kernels")]
    pub prefix: String,
    /// The tool named in the counts file for `--ncu-csv` (e.g. the output of `ncu --version`).
    #[arg(long, default_value = "ncu")]
    pub tool: String,
    /// The counts file to write.
    #[arg(long, default_value = "bench-counts.json")]
    pub out: PathBuf,
}

/// Whether to probe the GPU for the fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GpuChoice {
    /// Open CUDA device 0 when one is usable; `none` otherwise.
    Auto,
    /// Record `none` without probing.
    None,
}

/// Arguments of `forcefield bench record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The history file (JSON lines).
    #[arg(long, default_value = DEFAULT_HISTORY)]
    pub history: PathBuf,
    /// Criterion's output directory [default: $CRITERION_HOME, else target/criterion].
    #[arg(long)]
    pub criterion_dir: Option<PathBuf>,
    /// A benchmark executable that produced the results (repeatable): hashed, listed and kept
    /// next to the history so that `compare` can re-run unsure results with it.
    #[arg(long = "exe")]
    pub executables: Vec<PathBuf>,
    /// Do not copy the executables next to the history (they then cannot be re-run after a rebuild).
    #[arg(long)]
    pub no_keep_exes: bool,
    /// A free label for the entry (e.g. `clean`, `slow-force-pass`); also a `--baseline` reference.
    #[arg(long)]
    pub label: Option<String>,
    /// Directory of the corpus graphs of the quality suite.
    #[arg(long, default_value = "corpora/graphs")]
    pub graphs: PathBuf,
    /// Skip the layout-quality suite.
    #[arg(long)]
    pub no_quality: bool,
    /// GPU fingerprint.
    #[arg(long, value_enum, default_value_t = GpuChoice::Auto)]
    pub gpu: GpuChoice,
    /// Record results even when an earlier entry holds the same ones.
    #[arg(long)]
    pub include_stale: bool,
    /// A counts file of `forcefield bench count`: stored beside the samples of the same ids.
    /// With it, a missing criterion directory is not an error (the entry holds counts only).
    #[arg(long)]
    pub counts: Option<PathBuf>,
}

/// Arguments of `forcefield bench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The history file.
    #[arg(long, default_value = DEFAULT_HISTORY)]
    pub history: PathBuf,
    /// The baseline: an index (-2: the one before the newest), an entry id or prefix, a commit
    /// prefix or a label [default: the previous entry with the same fingerprint].
    #[arg(long, allow_hyphen_values = true)]
    pub baseline: Option<String>,
    /// The entry to judge [default: the newest].
    #[arg(long, allow_hyphen_values = true)]
    pub current: Option<String>,
    /// Calibrated thresholds [default: <history stem>.thresholds.json beside the history].
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// Do not re-run unsure results.
    #[arg(long)]
    pub no_rerun: bool,
    /// Rounds of interleaved re-runs per build.
    #[arg(long, default_value_t = 2)]
    pub rerun_rounds: usize,
    /// Significance level of the rank test.
    #[arg(long, default_value_t = crate::bench::stats::DEFAULT_ALPHA)]
    pub alpha: f64,
    /// Relative change of a quality metric reported as a change.
    #[arg(long, default_value_t = crate::bench::quality::DEFAULT_TOLERANCE)]
    pub quality_tolerance: f64,
    /// Relative change of the instructions the count gate fails on, for benchmarks whose counts
    /// are not calibrated.
    #[arg(long, default_value_t = crate::bench::compare::DEFAULT_COUNT_THRESHOLD)]
    pub count_threshold: f64,
    /// Fail on uncalibrated time verdicts too (against the default threshold), after re-running
    /// unsure ones; by default uncalibrated times are reported, not gated.
    #[arg(long)]
    pub gate_uncalibrated_times: bool,
    /// Also write the markdown table (for a pull-request comment) to this file.
    #[arg(long, visible_alias = "out")]
    pub markdown: Option<PathBuf>,
}

/// Arguments of `forcefield bench calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The history file.
    #[arg(long, default_value = DEFAULT_HISTORY)]
    pub history: PathBuf,
    /// Where to write the thresholds [default: <history stem>.thresholds.json beside the history].
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// The machine to calibrate, as the fingerprint of this entry [default: the newest].
    #[arg(long, allow_hyphen_values = true)]
    pub entry: Option<String>,
    /// Threshold = margin x the largest A/A change of the median.
    #[arg(long, default_value_t = calibrate::DEFAULT_MARGIN)]
    pub margin: f64,
    /// Smallest threshold.
    #[arg(long, default_value_t = calibrate::DEFAULT_FLOOR)]
    pub floor: f64,
    /// Significance level of the rank test in the evaluation.
    #[arg(long, default_value_t = crate::bench::stats::DEFAULT_ALPHA)]
    pub alpha: f64,
}

/// Arguments of `forcefield bench report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The history file.
    #[arg(long, default_value = DEFAULT_HISTORY)]
    pub history: PathBuf,
    /// Output directory (index.md, index.html, charts/).
    #[arg(long, default_value = "bench-report")]
    pub out: PathBuf,
    /// Calibrated thresholds [default: <history stem>.thresholds.json beside the history].
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
}

/// Runs the bench subcommand.
pub fn run(args: &BenchArgs) -> Result<(), CliError> {
    match &args.command {
        BenchCommand::Record(a) => run_record(a),
        BenchCommand::Compare(a) => run_compare(a),
        BenchCommand::Calibrate(a) => run_calibrate(a),
        BenchCommand::Report(a) => run_report(a),
        BenchCommand::Count(a) => run_count(a),
    }
}

/// `<stem>.thresholds.json` beside the history.
pub fn default_thresholds(history: &Path) -> PathBuf {
    let stem = history
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("history");
    history.with_file_name(format!("{stem}.thresholds.json"))
}

fn history_error(e: HistoryError) -> CliError {
    match e {
        HistoryError::Write { .. } => CliError::environment(e),
        _ => CliError::input(e),
    }
}

fn load_history(path: &Path) -> Result<Vec<history::Entry>, CliError> {
    let entries = history::load(path).map_err(history_error)?;
    if entries.is_empty() {
        return Err(CliError::input(anyhow::anyhow!(
            "{}: no entries; record some with `forcefield bench record`",
            path.display()
        )));
    }
    Ok(entries)
}

fn load_thresholds(
    explicit: Option<&Path>,
    history: &Path,
) -> Result<Option<Thresholds>, CliError> {
    let path = explicit.map_or_else(|| default_thresholds(history), Path::to_path_buf);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // A default that does not exist just means "not calibrated"; a named one must exist.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(None)
        }
        Err(e) => return Err(CliError::input(anyhow::anyhow!("{}: {e}", path.display()))),
    };
    let t: Thresholds = serde_json::from_str(&text).map_err(|e| {
        CliError::input(anyhow::anyhow!(
            "{}: not a thresholds file: {e}",
            path.display()
        ))
    })?;
    if t.format != calibrate::FORMAT {
        return Err(CliError::input(anyhow::anyhow!(
            "{}: format `{}`, expected `{}`",
            path.display(),
            t.format,
            calibrate::FORMAT
        )));
    }
    Ok(Some(t))
}

fn run_record(a: &RecordArgs) -> Result<(), CliError> {
    let faults =
        forcefield::FaultSet::from_env().map_err(|e| CliError::input(anyhow::anyhow!(e)))?;
    let criterion_dir = a.criterion_dir.clone().unwrap_or_else(|| {
        std::env::var_os("CRITERION_HOME")
            .map_or_else(|| PathBuf::from("target/criterion"), PathBuf::from)
    });
    let opts = RecordOptions {
        criterion_dir,
        history: a.history.clone(),
        executables: a.executables.clone(),
        keep_executables: !a.no_keep_exes,
        label: a.label.clone(),
        quality_graphs: (!a.no_quality).then(|| a.graphs.clone()),
        gpu: match a.gpu {
            GpuChoice::Auto => GpuProbe::Auto,
            GpuChoice::None => GpuProbe::Skip,
        },
        include_stale: a.include_stale,
        faults,
        source_dir: PathBuf::from("."),
        counts: match &a.counts {
            Some(path) => Some(counts::load(path).map_err(CliError::input)?),
            None => None,
        },
    };
    let outcome = record::record(&opts).map_err(|e| {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::environment(e)
        }
    })?;
    let e = &outcome.entry;
    for note in &outcome.notes {
        eprintln!("bench: {note}");
    }
    let counted = e
        .benchmarks
        .values()
        .filter(|b| !b.counts.is_empty())
        .count();
    println!(
        "recorded {} into {}: {} benchmarks ({counted} with counts){}, {} quality graphs",
        e.id,
        a.history.display(),
        e.benchmarks.len(),
        if outcome.stale.is_empty() {
            String::new()
        } else {
            format!(" ({} already recorded, skipped)", outcome.stale.len())
        },
        e.quality.len()
    );
    println!("machine: {}", e.fingerprint.summary());
    println!(
        "build: {}{}{}",
        e.build.short_commit(),
        if e.build.faults.is_empty() {
            String::new()
        } else {
            format!(", faults {}", e.build.faults.join(","))
        },
        e.build
            .label
            .as_ref()
            .map_or(String::new(), |l| format!(", label {l}"))
    );
    Ok(())
}

fn run_compare(a: &CompareArgs) -> Result<(), CliError> {
    let entries = load_history(&a.history)?;
    let current = match &a.current {
        Some(r) => history::resolve(&entries, r).map_err(history_error)?,
        None => entries.len() - 1,
    };
    let baseline = match &a.baseline {
        Some(r) => {
            let b = history::resolve(&entries, r).map_err(history_error)?;
            if b == current {
                return Err(CliError::input(anyhow::anyhow!(
                    "--baseline {r} is the entry being judged ({})",
                    entries[b].id
                )));
            }
            let diff = entries[b]
                .fingerprint
                .differences(&entries[current].fingerprint);
            if !diff.is_empty() {
                return Err(CliError::input(anyhow::anyhow!(
                    "entry {} is not comparable with {}: {}",
                    entries[b].id,
                    entries[current].id,
                    diff.join(", ")
                )));
            }
            b
        }
        None => match compare::default_baseline(&entries, current) {
            BaselineChoice::Found(b) => b,
            BaselineChoice::NoneComparable(reasons) => {
                println!(
                    "No comparable baseline for {}: nothing to compare.",
                    entries[current].id
                );
                for r in reasons {
                    println!("- not comparable: {r}");
                }
                return Ok(());
            }
        },
    };
    let thresholds = load_thresholds(a.thresholds.as_deref(), &a.history)?;
    if !(a.count_threshold.is_finite() && a.count_threshold >= 0.0) {
        return Err(CliError::input(anyhow::anyhow!(
            "--count-threshold must be finite and >= 0"
        )));
    }
    let config = GateConfig {
        alpha: a.alpha,
        quality_tolerance: a.quality_tolerance,
        count_threshold: a.count_threshold,
        gate_uncalibrated_times: a.gate_uncalibrated_times,
        ..GateConfig::default()
    };
    let rerunner = ExeRerunner {
        history_dir: record::history_dir(&a.history),
        baseline: &entries[baseline],
        current: &entries[current],
        rounds: a.rerun_rounds.max(1),
        extra_args: Vec::new(),
    };
    let mut rerun = |id: &str| -> Result<Rerun, String> {
        if a.no_rerun {
            return Err("--no-rerun".to_string());
        }
        eprintln!(
            "bench: {id} is unsure; re-running it interleaved ({} rounds per build)",
            rerunner.rounds
        );
        rerunner.rerun(id)
    };
    let comparison = compare::compare(
        &entries[baseline],
        &entries[current],
        thresholds.as_ref(),
        &config,
        &mut rerun,
    );
    let md = comparison.markdown();
    print!("{md}");
    if let Some(out) = &a.markdown {
        crate::artifacts::write_atomically(
            out,
            md.as_bytes(),
            crate::artifacts::MissingDirs::Create,
        )
        .map_err(|e| {
            CliError::environment(anyhow::anyhow!("cannot write {}: {e}", out.display()))
        })?;
    }
    let regressions = comparison.regressions();
    if regressions.is_empty() {
        Ok(())
    } else {
        Err(CliError::Findings(anyhow::anyhow!(
            "{} regression(s): {}",
            regressions.len(),
            regressions.join("; ")
        )))
    }
}

fn run_calibrate(a: &CalibrateArgs) -> Result<(), CliError> {
    let entries = load_history(&a.history)?;
    let at = match &a.entry {
        Some(r) => history::resolve(&entries, r).map_err(history_error)?,
        None => entries.len() - 1,
    };
    if !(a.margin.is_finite() && a.margin >= 0.0 && a.floor.is_finite() && a.floor >= 0.0) {
        return Err(CliError::input(anyhow::anyhow!(
            "--margin and --floor must be finite and >= 0"
        )));
    }
    let fingerprint = entries[at].fingerprint.clone();
    let groups = calibrate::aa_groups(&entries, &fingerprint);
    if groups.is_empty() {
        return Err(CliError::input(anyhow::anyhow!(
            "no A/A entries: calibration needs two or more entries of the same build on this machine ({}); run the benchmarks and `bench record` twice without changing anything",
            fingerprint.summary()
        )));
    }
    let thresholds = calibrate::calibrate(&entries, &groups, &fingerprint, a.margin, a.floor);
    let evaluation = calibrate::evaluate(&entries, &groups, a.margin, a.floor, a.alpha);
    let path = a
        .thresholds
        .clone()
        .unwrap_or_else(|| default_thresholds(&a.history));
    crate::artifacts::write_json(&path, &thresholds).map_err(|e| {
        CliError::environment(anyhow::anyhow!("cannot write {}: {e}", path.display()))
    })?;
    println!(
        "## Calibration on {} A/A entries ({} groups), {}\n",
        thresholds.entries.len(),
        groups.len(),
        fingerprint.summary()
    );
    print!("{}", evaluation.markdown());
    println!("\nThresholds written to {}.", path.display());
    Ok(())
}

fn run_report(a: &ReportArgs) -> Result<(), CliError> {
    let entries = load_history(&a.history)?;
    let thresholds = load_thresholds(a.thresholds.as_deref(), &a.history)?;
    let summary = report::write_report(&entries, thresholds.as_ref(), &a.out).map_err(|e| {
        CliError::environment(anyhow::anyhow!(
            "cannot write the report to {}: {e}",
            a.out.display()
        ))
    })?;
    println!(
        "report of {} entries written to {}: {} charts, {} change points",
        entries.len(),
        a.out.join("index.html").display(),
        summary.charts,
        summary.change_points
    );
    Ok(())
}

fn run_count(a: &CountArgs) -> Result<(), CliError> {
    let to_cli = |e: counts::CountsError| {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::environment(e)
        }
    };
    let file = match &a.ncu_csv {
        Some(csv) => counts::from_ncu_csv(csv, &a.prefix, &a.tool).map_err(to_cli)?,
        None => {
            for exe in &a.executables {
                if !exe.is_file() {
                    return Err(CliError::input(anyhow::anyhow!(
                        "--exe {}: no such file",
                        exe.display()
                    )));
                }
            }
            let faults = forcefield::FaultSet::from_env()
                .map_err(|e| CliError::input(anyhow::anyhow!(e)))?;
            let names: Vec<&str> = faults.iter().map(|f| f.name()).collect();
            let opts = CallgrindOptions {
                executables: a.executables.clone(),
                args: a.exe_args.split_whitespace().map(str::to_string).collect(),
                cache_sim: a.cache_sim,
                faults: names.join(","),
            };
            eprintln!(
                "bench: counting {} executable(s) under callgrind",
                opts.executables.len()
            );
            counts::run_callgrind(&opts).map_err(to_cli)?
        }
    };
    crate::artifacts::write_json(&a.out, &file).map_err(|e| {
        CliError::environment(anyhow::anyhow!("cannot write {}: {e}", a.out.display()))
    })?;
    println!(
        "counted {} benchmarks with {} into {}",
        file.counts.len(),
        file.tool,
        a.out.display()
    );
    Ok(())
}
