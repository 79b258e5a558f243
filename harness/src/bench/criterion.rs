/*!
Reading criterion's results: every sample of every benchmark a criterion output directory holds.

Criterion (0.5) writes, for each benchmark, `<dir>/<group>/<function>/<value>/new/` with
`benchmark.json` (its id and throughput) and `sample.json` (per sample, the iteration count and the
total time in nanoseconds). This module walks a directory for those pairs and returns, per
benchmark, the time of one iteration in each sample: all samples, not criterion's summary, because
the gate's rank test needs them. The directory is found by the caller: `target/criterion` after
`cargo bench`, or wherever `CRITERION_HOME` pointed when a benchmark executable ran on its own.
*/

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Directories deeper than this below the criterion directory are not searched.
const MAX_DEPTH: usize = 8;

/// Why criterion's results cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CriterionError {
    /// The directory does not exist or cannot be listed.
    #[error("cannot read criterion results in {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A result file cannot be read or is not what criterion writes.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Throughput criterion was told of, per iteration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Throughput {
    /// `elements` or `bytes`.
    pub unit: String,
    /// How many per iteration.
    pub per_iteration: u64,
}

/// One benchmark's samples.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CriterionResult {
    /// Criterion's full id, e.g. `cpu_step/10k`.
    pub id: String,
    /// Nanoseconds per iteration, one value per sample.
    pub samples_ns: Vec<f64>,
    /// Iterations of each sample.
    pub iterations: Vec<f64>,
    /// The throughput criterion was told of, if any.
    pub throughput: Option<Throughput>,
    /// When `sample.json` was written (seconds since the epoch).
    pub measured_at: u64,
}

#[derive(Deserialize)]
struct BenchmarkJson {
    full_id: String,
    #[serde(default)]
    throughput: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct SampleJson {
    iters: Vec<f64>,
    times: Vec<f64>,
}

/// Every benchmark in criterion directory `dir`, sorted by id.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<CriterionResult>, CriterionError> {
    std::fs::read_dir(dir).map_err(|source| CriterionError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found = Vec::new();
    walk(dir, 0, &mut found)?;
    found.sort_by(|a: &CriterionResult, b| a.id.cmp(&b.id));
    Ok(found)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<CriterionResult>) -> Result<(), CriterionError> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| CriterionError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for sub in dirs {
        let name = sub.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "new" {
            if sub.join("benchmark.json").is_file() && sub.join("sample.json").is_file() {
                out.push(read_result(&sub)?);
            }
        } else if name != "base" && name != "report" && name != "change" {
            walk(&sub, depth + 1, out)?;
        }
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CriterionError> {
    let file_error = |reason: String| CriterionError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| file_error(format!("not criterion's format: {e}")))
}

/// Reads one `new/` directory.
pub(crate) fn read_result(new_dir: &Path) -> Result<CriterionResult, CriterionError> {
    let bench_path = new_dir.join("benchmark.json");
    let sample_path = new_dir.join("sample.json");
    let bench: BenchmarkJson = read_json(&bench_path)?;
    let sample: SampleJson = read_json(&sample_path)?;
    let bad = |reason: &str| CriterionError::File {
        path: sample_path.clone(),
        reason: reason.to_string(),
    };
    if sample.iters.len() != sample.times.len() {
        return Err(bad("`iters` and `times` differ in length"));
    }
    if sample.iters.is_empty() {
        return Err(bad("no samples"));
    }
    if sample
        .iters
        .iter()
        .chain(&sample.times)
        .any(|v| !v.is_finite() || *v < 0.0)
        || sample.iters.iter().any(|&i| i <= 0.0)
    {
        return Err(bad(
            "a sample is negative, not finite, or has no iterations",
        ));
    }
    let samples_ns = sample
        .times
        .iter()
        .zip(&sample.iters)
        .map(|(t, i)| t / i)
        .collect();
    let measured_at = std::fs::metadata(&sample_path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(CriterionResult {
        id: bench.full_id,
        samples_ns,
        iterations: sample.iters,
        throughput: bench.throughput.as_ref().and_then(parse_throughput),
        measured_at,
    })
}

/// Criterion writes throughput as `{"Elements": n}` or `{"Bytes": n}` (other kinds are ignored).
fn parse_throughput(value: &serde_json::Value) -> Option<Throughput> {
    let obj = value.as_object()?;
    let (kind, n) = obj.iter().next()?;
    let unit = match kind.as_str() {
        "Elements" => "elements",
        "Bytes" | "BytesDecimal" => "bytes",
        _ => return None,
    };
    Some(Throughput {
        unit: unit.to_string(),
        per_iteration: n.as_u64()?,
    })
}

/// Writes a criterion-like result directory: the two files [`read_dir`] reads. For tests and for
/// importing samples measured elsewhere.
pub fn write_result(
    dir: &Path,
    id: &str,
    iterations: &[f64],
    times_ns: &[f64],
) -> std::io::Result<PathBuf> {
    let new_dir = dir
        .join(id.replace('/', std::path::MAIN_SEPARATOR_STR))
        .join("new");
    std::fs::create_dir_all(&new_dir)?;
    let bench = serde_json::json!({
        "group_id": id.split('/').next().unwrap_or(id),
        "function_id": null,
        "value_str": null,
        "throughput": null,
        "full_id": id,
        "directory_name": id,
        "title": id,
    });
    std::fs::write(new_dir.join("benchmark.json"), bench.to_string())?;
    let sample = serde_json::json!({
        "sampling_mode": "Flat",
        "iters": iterations,
        "times": times_ns,
    });
    std::fs::write(new_dir.join("sample.json"), sample.to_string())?;
    Ok(new_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_sample_per_iteration_and_skips_baselines() {
        let dir = tempfile::tempdir().unwrap();
        write_result(dir.path(), "cpu_step/1k", &[2.0, 4.0], &[200.0, 440.0]).unwrap();
        write_result(dir.path(), "g/a/b", &[1.0], &[7.0]).unwrap();
        // A saved baseline beside `new` is not a result of this run.
        let base = dir.path().join("cpu_step/1k/base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::copy(
            dir.path().join("cpu_step/1k/new/sample.json"),
            base.join("sample.json"),
        )
        .unwrap();
        let results = read_dir(dir.path()).unwrap();
        let ids: Vec<&str> = results.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["cpu_step/1k", "g/a/b"]);
        assert_eq!(results[0].samples_ns, vec![100.0, 110.0]);
        assert_eq!(results[0].iterations, vec![2.0, 4.0]);
        assert!(results[0].measured_at > 0);
    }

    #[test]
    fn rejects_malformed_samples_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let new_dir = write_result(dir.path(), "x", &[1.0, 2.0], &[1.0]).unwrap();
        let e = read_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("sample.json") && e.contains("length"), "{e}");
        std::fs::write(new_dir.join("sample.json"), "{").unwrap();
        let e = read_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not criterion's format"), "{e}");
        let missing = read_dir(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(
            missing.contains("cannot read criterion results"),
            "{missing}"
        );
    }

    #[test]
    fn parses_throughput_kinds() {
        let t = parse_throughput(&serde_json::json!({"Elements": 1000})).unwrap();
        assert_eq!((t.unit.as_str(), t.per_iteration), ("elements", 1000));
        assert!(parse_throughput(&serde_json::json!(null)).is_none());
    }
}
