/*!
Interleaved re-runs of unsure benchmarks, with the criterion executables an entry kept.

`forcefield bench record --exe PATH` copies each benchmark executable next to the history
(`<history>.exes/<name>-<hash>`) and lists the benchmark ids it runs. When compare is unsure about
a benchmark and both entries kept the executable that runs it, [`ExeRerunner`] measures it again:
`rounds` times baseline then current (the order alternating every round, ABBA..., so drift of the
machine falls on both sides), each run `EXE --bench --exact ID` with a fresh `CRITERION_HOME` and
the entry's own `FORCEFIELD_FAULTS`, and pools each side's samples. The verdict is then taken on
those samples alone: they were measured under the same conditions, which the recorded ones were not.
*/

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::compare::Rerun;
use super::criterion;
use super::fingerprint::{fnv1a_hex, Executable};
use super::history::Entry;

/// Re-runs benchmarks with the executables two entries kept.
pub struct ExeRerunner<'a> {
    /// Directory that kept copies are relative to (the history file's).
    pub history_dir: PathBuf,
    /// The baseline entry.
    pub baseline: &'a Entry,
    /// The current entry.
    pub current: &'a Entry,
    /// Rounds of alternation.
    pub rounds: usize,
    /// Extra criterion arguments (e.g. `--sample-size 20`).
    pub extra_args: Vec<String>,
}

impl ExeRerunner<'_> {
    /// Re-measures `id` on both builds, alternating.
    pub fn rerun(&self, id: &str) -> Result<Rerun, String> {
        let base = usable_exe(&self.history_dir, self.baseline, id)
            .map_err(|why| format!("baseline {why}"))?;
        let cur = usable_exe(&self.history_dir, self.current, id)
            .map_err(|why| format!("current {why}"))?;
        let mut rerun = Rerun {
            baseline: Vec::new(),
            current: Vec::new(),
            rounds: self.rounds,
        };
        for round in 0..self.rounds {
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for is_base in order {
                let (exe, entry) = if is_base {
                    (&base, self.baseline)
                } else {
                    (&cur, self.current)
                };
                let samples = run_one(exe, id, &entry.build.faults, &self.extra_args)?;
                if is_base {
                    rerun.baseline.extend(samples);
                } else {
                    rerun.current.extend(samples);
                }
            }
        }
        Ok(rerun)
    }
}

/// The path of an executable of `entry` that runs `id` and still has the recorded content.
fn usable_exe(history_dir: &Path, entry: &Entry, id: &str) -> Result<PathBuf, String> {
    let exe: &Executable = entry
        .build
        .executables
        .iter()
        .find(|e| e.benchmarks.iter().any(|b| b == id))
        .ok_or_else(|| {
            format!(
                "entry {} kept no executable that runs it (record with --exe)",
                entry.id
            )
        })?;
    let mut candidates = Vec::new();
    if let Some(stored) = &exe.stored {
        candidates.push(history_dir.join(stored));
    }
    candidates.push(PathBuf::from(&exe.path));
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            if fnv1a_hex(&bytes) == exe.hash {
                return Ok(path);
            }
        }
    }
    Err(format!(
        "executable `{}` of entry {} is gone or was rebuilt since",
        exe.name, entry.id
    ))
}

/// One run of `exe` for benchmark `id`: its samples, in nanoseconds per iteration.
fn run_one(exe: &Path, id: &str, faults: &[String], extra: &[String]) -> Result<Vec<f64>, String> {
    let home =
        tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let mut command = Command::new(exe);
    command
        .args(["--bench", "--exact", id])
        .args(extra)
        .env("CRITERION_HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if faults.is_empty() {
        command.env_remove(forcefield::faults::FAULTS_ENV);
    } else {
        command.env(forcefield::faults::FAULTS_ENV, faults.join(","));
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("").trim().to_string();
        return Err(format!("{} failed ({}): {last}", exe.display(), out.status));
    }
    let results = criterion::read_dir(home.path()).map_err(|e| e.to_string())?;
    results
        .into_iter()
        .find(|r| r.id == id)
        .map(|r| r.samples_ns)
        .ok_or_else(|| format!("{} ran no benchmark `{id}`", exe.display()))
}

/// The benchmark ids an executable runs, from criterion's `--list` (`ID: benchmark` lines).
pub fn list_benchmarks(exe: &Path) -> Result<Vec<String>, String> {
    let out = Command::new(exe)
        .args(["--bench", "--list"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --bench --list failed ({})",
            exe.display(),
            out.status
        ));
    }
    Ok(parse_list(&String::from_utf8_lossy(&out.stdout)))
}

/// The ids of criterion's `--list` output.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_suffix(": benchmark"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criterion_listings() {
        let text = "cpu_step/1k: benchmark\ncpu_kernels/10k/force_pass: benchmark\nskipped: no CUDA device\n";
        assert_eq!(
            parse_list(text),
            ["cpu_step/1k", "cpu_kernels/10k/force_pass"]
        );
    }
}
