/*!
Building a history entry from criterion's results: the samples, the fingerprint, the build, the
kept executables and the layout quality.

Results criterion left behind from an earlier run are not recorded again: a benchmark whose
samples are not newer than the newest entry holding it is *stale* and skipped (unless asked), so
recording twice without re-running the benchmarks cannot make a fake A/A pair. Executables named
with `--exe` are hashed, listed (`--bench --list`) and, when asked, copied next to the history so
that compare can re-run them later even after a rebuild overwrote the originals.
*/

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use forcefield::FaultSet;

use super::counts::CountsFile;
use super::criterion::{self, CriterionError};
use super::fingerprint::{self, fnv1a_hex, Executable, GpuProbe};
use super::history::{self, BenchRecord, CountsSource, Entry, HistoryError, FORMAT};
use super::quality::{self, QualityError};
use super::rerun;

/// What to record.
#[derive(Clone, Debug)]
pub struct RecordOptions {
    /// Criterion's output directory.
    pub criterion_dir: PathBuf,
    /// The history file.
    pub history: PathBuf,
    /// Benchmark executables to fingerprint (and keep).
    pub executables: Vec<PathBuf>,
    /// Copy the executables next to the history.
    pub keep_executables: bool,
    /// A free label.
    pub label: Option<String>,
    /// Directory of the corpus graphs for the quality suite; `None`: no quality metrics.
    pub quality_graphs: Option<PathBuf>,
    /// Whether to probe the GPU.
    pub gpu: GpuProbe,
    /// Record results even when an earlier entry already holds them.
    pub include_stale: bool,
    /// The planted faults of this run (`FORCEFIELD_FAULTS`).
    pub faults: FaultSet,
    /// The working tree whose commit is recorded.
    pub source_dir: PathBuf,
    /// Counts to store beside the samples (`forcefield bench count`'s file), if any. With counts,
    /// a criterion directory that does not exist or holds nothing is not an error: the entry
    /// holds counts only.
    pub counts: Option<CountsFile>,
}

/// Why nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Criterion's results cannot be read.
    #[error(transparent)]
    Criterion(#[from] CriterionError),
    /// The history cannot be read or written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// Criterion's directory holds no result.
    #[error("no benchmark results in {0}: run the benchmarks first (cargo bench, or a bench executable with --bench)")]
    NoResults(PathBuf),
    /// Every result was recorded before.
    #[error("every result in {dir} was already recorded (newest in entry {entry}): re-run the benchmarks first, or pass --include-stale")]
    AllStale {
        /// The criterion directory.
        dir: PathBuf,
        /// The entry that holds them.
        entry: String,
    },
    /// The counts were recorded before.
    #[error("these counts were already recorded (entry {entry}): count again with `forcefield bench count`, or pass --include-stale")]
    StaleCounts {
        /// The entry that holds them.
        entry: String,
    },
    /// An executable cannot be read or kept.
    #[error("executable {}: {reason}", path.display())]
    Executable {
        /// The path given.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The quality suite failed.
    #[error(transparent)]
    Quality(#[from] QualityError),
}

impl RecordError {
    /// Whether the error is the user's input (exit 2) rather than the environment (exit 3).
    pub fn is_input(&self) -> bool {
        match self {
            RecordError::Criterion(_)
            | RecordError::NoResults(_)
            | RecordError::AllStale { .. }
            | RecordError::StaleCounts { .. } => true,
            RecordError::Executable { .. } => true,
            RecordError::History(HistoryError::Parse { .. }) => true,
            RecordError::Quality(QualityError::Graph(_)) => true,
            RecordError::History(_) | RecordError::Quality(_) => false,
        }
    }
}

/// What a record did.
#[derive(Clone, Debug)]
pub struct RecordOutcome {
    /// The entry appended.
    pub entry: Entry,
    /// Benchmarks skipped as stale.
    pub stale: Vec<String>,
    /// Notes for the user (executables that could not be listed, ...).
    pub notes: Vec<String>,
}

/// The directory kept executables go to: `<history stem>.exes` beside the history.
pub fn exe_store(history: &Path) -> PathBuf {
    let stem = history
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("history");
    history.with_file_name(format!("{stem}.exes"))
}

/// The directory paths stored in entries are relative to.
pub fn history_dir(history: &Path) -> PathBuf {
    match history.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The short name of a cargo bench executable: `step-0123abcd` gives `step`.
pub fn exe_name(path: &Path) -> String {
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("bench")
        .to_string();
    match file.rsplit_once('-') {
        Some((name, hash)) if !name.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => file,
    }
}

/// Records one entry and appends it to the history.
pub fn record(opts: &RecordOptions) -> Result<RecordOutcome, RecordError> {
    let previous = history::load(&opts.history)?;
    let results = match criterion::read_dir(&opts.criterion_dir) {
        // Counts alone make an entry (a machine that only counts, such as a profiler run).
        Err(CriterionError::Dir { .. }) if opts.counts.is_some() => Vec::new(),
        other => other?,
    };
    if results.is_empty() && opts.counts.is_none() {
        return Err(RecordError::NoResults(opts.criterion_dir.clone()));
    }
    if let Some(counts) = &opts.counts {
        let holder = previous.iter().rev().find(|e| {
            e.counts
                .as_ref()
                .is_some_and(|c| c.tool == counts.tool && c.measured_at >= counts.measured_at)
        });
        if let (Some(entry), false) = (holder, opts.include_stale) {
            return Err(RecordError::StaleCounts {
                entry: entry.id.clone(),
            });
        }
    }
    let mut benchmarks = BTreeMap::new();
    let mut stale = Vec::new();
    let mut newest_holder = String::new();
    for r in results {
        let holder = previous
            .iter()
            .rev()
            .find_map(|e| e.benchmarks.get(&r.id).map(|b| (e, b.measured_at)));
        if let Some((entry, measured_at)) = holder {
            if !opts.include_stale && r.measured_at <= measured_at {
                newest_holder = entry.id.clone();
                stale.push(r.id);
                continue;
            }
        }
        benchmarks.insert(
            r.id,
            BenchRecord {
                samples_ns: r.samples_ns,
                iterations: r.iterations,
                throughput: r.throughput,
                measured_at: r.measured_at,
                counts: BTreeMap::new(),
            },
        );
    }
    if let Some(counts) = &opts.counts {
        for (id, metrics) in &counts.counts {
            let record = benchmarks.entry(id.clone()).or_insert_with(|| BenchRecord {
                samples_ns: Vec::new(),
                iterations: Vec::new(),
                throughput: None,
                measured_at: counts.measured_at,
                counts: BTreeMap::new(),
            });
            record.counts = metrics.clone();
        }
    }
    if benchmarks.is_empty() {
        return Err(RecordError::AllStale {
            dir: opts.criterion_dir.clone(),
            entry: newest_holder,
        });
    }
    let mut notes = Vec::new();
    let faults: Vec<String> = opts.faults.iter().map(|f| f.name().to_string()).collect();
    let mut build = fingerprint::detect_build(&opts.source_dir, faults, opts.label.clone());
    for path in &opts.executables {
        build
            .executables
            .push(keep_executable(opts, path, &mut notes)?);
    }
    let fingerprint = fingerprint::detect(opts.gpu);
    let quality = match &opts.quality_graphs {
        Some(dir) => quality::measure_suite(dir, opts.faults)?,
        None => Vec::new(),
    };
    let recorded_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut entry = Entry {
        format: FORMAT.to_string(),
        id: String::new(),
        recorded_at,
        fingerprint,
        build,
        benchmarks,
        quality,
        counts: opts.counts.as_ref().map(|c| CountsSource {
            tool: c.tool.clone(),
            measured_at: c.measured_at,
        }),
    };
    let content = serde_json::to_vec(&entry).unwrap_or_default();
    entry.id = history::new_id(recorded_at, &content);
    history::append(&opts.history, &entry)?;
    Ok(RecordOutcome {
        entry,
        stale,
        notes,
    })
}

fn keep_executable(
    opts: &RecordOptions,
    path: &Path,
    notes: &mut Vec<String>,
) -> Result<Executable, RecordError> {
    let fail = |reason: String| RecordError::Executable {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let hash = fnv1a_hex(&bytes);
    let name = exe_name(path);
    let benchmarks = match rerun::list_benchmarks(path) {
        Ok(list) => list,
        Err(why) => {
            notes.push(format!(
                "{name}: cannot list its benchmarks ({why}); it will not be re-run"
            ));
            Vec::new()
        }
    };
    let stored = if opts.keep_executables {
        let store = exe_store(&opts.history);
        let file = format!("{name}-{hash}");
        let dest = store.join(&file);
        if !dest.is_file() {
            std::fs::create_dir_all(&store)
                .map_err(|e| fail(format!("cannot create {}: {e}", store.display())))?;
            // Copied under a temporary name and renamed, so a kept executable is never half there.
            let tmp = store.join(format!(".{file}.partial"));
            std::fs::copy(path, &tmp)
                .map_err(|e| fail(format!("cannot copy to {}: {e}", tmp.display())))?;
            std::fs::rename(&tmp, &dest)
                .map_err(|e| fail(format!("cannot rename to {}: {e}", dest.display())))?;
        }
        let dir_name = store
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("history.exes")
            .to_string();
        Some(format!("{dir_name}/{file}"))
    } else {
        None
    };
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Executable {
        name,
        path: absolute.display().to_string(),
        hash,
        stored,
        benchmarks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_places() {
        assert_eq!(
            exe_name(Path::new("target/release/deps/step-c6ee18fcaace033a")),
            "step"
        );
        assert_eq!(exe_name(Path::new("gpu_step-0a1b")), "gpu_step");
        assert_eq!(exe_name(Path::new("my-bench")), "my-bench");
        assert_eq!(
            exe_store(Path::new("out/bench-history.jsonl")),
            PathBuf::from("out/bench-history.exes")
        );
        assert_eq!(history_dir(Path::new("h.jsonl")), PathBuf::from("."));
    }
}
