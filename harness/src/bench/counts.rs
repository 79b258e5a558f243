/*!
Counts of work beside the times: numbers that do not move when the neighbours do.

A time depends on everything else the machine runs; the number of instructions a deterministic
operation executes does not. This module produces such counts and reads them into a
[`CountsFile`] (`forcefield-counts/1`), which `forcefield bench record --counts` stores beside the
samples of the benchmark with the same id:

* **CPU, Callgrind** ([`run_callgrind`]): a counting executable (`benches/step_counts.rs`) marks
  each measured operation with a call of its `counted_region` function and prints
  `counted: <id>` after it. Under `valgrind --tool=callgrind --collect-atstart=no
  --toggle-collect=*::counted_region --dump-after=*::counted_region`, Callgrind collects only
  inside the region and writes one profile part when it returns; the n-th part belongs to the n-th
  id. Metrics: `instructions` (Callgrind's `Ir`), and with `--cache-sim` also `estimated_cycles`
  (`Ir + 10 × L1 misses + 100 × last-level misses`, the usual weighting).
* **GPU, Nsight Compute** ([`parse_ncu_csv`]): `ncu --csv --print-units base --metrics
  smsp__inst_executed.sum,dram__bytes.sum` over a fixed workload; per kernel, the sum over its
  launches of `instructions` (warp instructions executed) and `dram_bytes`, and `launches`.

Valgrind is run directly rather than through a benchmark framework: the regions are the history's
own benchmark ids, the profile parts are plain text, and no runner binary has to match a library
version (see ARCHITECTURE.md).
*/

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The `format` of counts files.
pub const FORMAT: &str = "forcefield-counts/1";
/// The metric the count gate judges.
pub const GATED_METRIC: &str = "instructions";
/// The marker function of counting executables (matched as `*::counted_region`).
pub const REGION_FUNCTION: &str = "counted_region";
/// The prefix of the line a counting executable prints after each region.
pub const REGION_LINE: &str = "counted: ";

/// Counts of one run of the counting tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountsFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// The tool and its version, e.g. `callgrind (valgrind-3.19.0)`: counts of different tools
    /// are not compared.
    pub tool: String,
    /// When the counts were taken (seconds since the epoch).
    pub measured_at: u64,
    /// Per benchmark id, per metric.
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Why counts cannot be taken or read.
#[derive(Debug, thiserror::Error)]
pub enum CountsError {
    /// The tool is not installed.
    #[error("{tool} not found on PATH: {hint}")]
    ToolMissing {
        /// The tool.
        tool: String,
        /// How to get it.
        hint: String,
    },
    /// The tool or the executable failed.
    #[error("{0}")]
    Run(String),
    /// A file is not what it should be.
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl CountsError {
    /// Whether the error is the user's input (exit 2) rather than the environment (exit 3).
    pub fn is_input(&self) -> bool {
        matches!(self, CountsError::Parse { .. })
    }
}

/// Reads a counts file.
pub fn load(path: &Path) -> Result<CountsFile, CountsError> {
    let parse = |reason: String| CountsError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| parse(e.to_string()))?;
    let file: CountsFile =
        serde_json::from_str(&text).map_err(|e| parse(format!("not a counts file: {e}")))?;
    if file.format != FORMAT {
        return Err(parse(format!(
            "format `{}`, expected `{FORMAT}`",
            file.format
        )));
    }
    if file.counts.is_empty() {
        return Err(parse("no counts".to_string()));
    }
    Ok(file)
}

/// The events and totals of one Callgrind profile part (`events:` names, `summary:` or
/// `totals:` values), as metrics.
pub fn parse_callgrind_part(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut events: Option<Vec<&str>> = None;
    let mut totals: Option<Vec<u64>> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("events:") {
            events = Some(rest.split_whitespace().collect());
        } else if let Some(rest) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            let values: Result<Vec<u64>, _> = rest.split_whitespace().map(str::parse).collect();
            totals = Some(values.map_err(|e| format!("bad totals line `{line}`: {e}"))?);
        }
    }
    let events = events.ok_or("no `events:` line")?;
    let totals = totals.ok_or("no `summary:` or `totals:` line")?;
    // Callgrind leaves out trailing zero events.
    let value = |name: &str| -> Option<u64> {
        let i = events.iter().position(|e| *e == name)?;
        Some(totals.get(i).copied().unwrap_or(0))
    };
    let mut out = BTreeMap::new();
    let ir = value("Ir").ok_or("no `Ir` event")?;
    out.insert(GATED_METRIC.to_string(), ir);
    let l1 = ["I1mr", "D1mr", "D1mw"].map(value);
    let ll = ["ILmr", "DLmr", "DLmw"].map(value);
    if l1.iter().chain(&ll).all(Option::is_some) {
        let sum = |v: [Option<u64>; 3]| v.iter().flatten().sum::<u64>();
        out.insert(
            "estimated_cycles".to_string(),
            ir + 10 * sum(l1) + 100 * sum(ll),
        );
    }
    Ok(out)
}

/// The ids a counting executable printed, in order.
pub fn region_ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(REGION_LINE))
        .map(|id| id.trim().to_string())
        .collect()
}

/// Adds the metrics of the parts (in order) to the ids (in order): parts of one id are summed.
pub fn assign_parts(
    ids: &[String],
    parts: &[BTreeMap<String, u64>],
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, String> {
    if ids.len() != parts.len() {
        return Err(format!(
            "{} regions named on stdout but {} profile parts written",
            ids.len(),
            parts.len()
        ));
    }
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (id, metrics) in ids.iter().zip(parts) {
        let slot = out.entry(id.clone()).or_default();
        for (metric, value) in metrics {
            *slot.entry(metric.clone()).or_insert(0) += value;
        }
    }
    Ok(out)
}

/// What to run under Callgrind.
#[derive(Clone, Debug)]
pub struct CallgrindOptions {
    /// Counting executables (each prints `counted: <id>` after each region).
    pub executables: Vec<PathBuf>,
    /// Arguments for every executable (e.g. `--sizes 1k`).
    pub args: Vec<String>,
    /// Simulate the caches too (estimated cycles; about twice as slow).
    pub cache_sim: bool,
    /// Planted faults for the executables (`FORCEFIELD_FAULTS`), comma-separated; empty: none.
    pub faults: String,
}

/// The valgrind version, e.g. `valgrind-3.19.0`; `ToolMissing` when valgrind cannot be run.
pub fn valgrind_version() -> Result<String, CountsError> {
    let missing = || CountsError::ToolMissing {
        tool: "valgrind".to_string(),
        hint: "install it (Debian/Ubuntu: apt-get install valgrind)".to_string(),
    };
    let out = Command::new("valgrind")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|_| missing())?;
    if !out.status.success() {
        return Err(missing());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs each executable once under Callgrind and returns the counts of every region.
pub fn run_callgrind(opts: &CallgrindOptions) -> Result<CountsFile, CountsError> {
    let version = valgrind_version()?;
    let mut counts = BTreeMap::new();
    for exe in &opts.executables {
        for (id, metrics) in callgrind_one(exe, opts)? {
            if counts.insert(id.clone(), metrics).is_some() {
                return Err(CountsError::Run(format!(
                    "region `{id}` is counted by two executables"
                )));
            }
        }
    }
    if counts.is_empty() {
        return Err(CountsError::Run(
            "the executables counted no region (is it a counting executable such as step_counts?)"
                .to_string(),
        ));
    }
    Ok(CountsFile {
        format: FORMAT.to_string(),
        tool: format!("callgrind ({version})"),
        measured_at: now(),
        counts,
    })
}

fn callgrind_one(
    exe: &Path,
    opts: &CallgrindOptions,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, CountsError> {
    let dir = tempfile::tempdir()
        .map_err(|e| CountsError::Run(format!("cannot create a temporary directory: {e}")))?;
    let out_file = dir.path().join("callgrind.out");
    // Valgrind looks a bare name up on PATH, not in the working directory.
    let exe = std::path::absolute(exe).unwrap_or_else(|_| exe.to_path_buf());
    let exe = exe.as_path();
    let region = format!("*::{REGION_FUNCTION}");
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect={region}"))
        .arg(format!("--dump-after={region}"))
        .arg(format!(
            "--cache-sim={}",
            if opts.cache_sim { "yes" } else { "no" }
        ))
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(exe)
        .args(&opts.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if opts.faults.is_empty() {
        command.env_remove(forcefield::faults::FAULTS_ENV);
    } else {
        command.env(forcefield::faults::FAULTS_ENV, &opts.faults);
    }
    let out = command
        .output()
        .map_err(|e| CountsError::Run(format!("cannot run valgrind: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("=="))
            .unwrap_or("")
            .trim()
            .to_string();
        return Err(CountsError::Run(format!(
            "{} under callgrind failed ({}): {last}",
            exe.display(),
            out.status
        )));
    }
    let ids = region_ids(&String::from_utf8_lossy(&out.stdout));
    // Parts are `callgrind.out.<n>`, n from 1 in dump order; the file without a number holds
    // what ran after the last region (nothing is collected there).
    let mut numbered: Vec<(u64, PathBuf)> = std::fs::read_dir(dir.path())
        .map_err(|e| CountsError::Run(format!("cannot list {}: {e}", dir.path().display())))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = name.strip_prefix("callgrind.out.")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    numbered.sort();
    let mut parts = Vec::with_capacity(numbered.len());
    for (_, path) in &numbered {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CountsError::Run(format!("cannot read {}: {e}", path.display())))?;
        parts.push(
            parse_callgrind_part(&text).map_err(|reason| CountsError::Parse {
                path: path.clone(),
                reason,
            })?,
        );
    }
    assign_parts(&ids, &parts).map_err(|e| CountsError::Run(format!("{}: {e}", exe.display())))
}

/// Per-kernel counts from Nsight Compute's `--csv` output (one row per launch and metric):
/// `<prefix>/<kernel>` → `instructions` (`smsp__inst_executed.sum`), `dram_bytes`
/// (`dram__bytes.sum`) and `launches`, each summed over the kernel's launches.
pub fn parse_ncu_csv(
    text: &str,
    prefix: &str,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, String> {
    let mut lines = text
        .lines()
        // ncu prints its own `==PROF==` lines and the program's output around the table.
        .filter(|l| l.starts_with('"'));
    let header = lines
        .next()
        .ok_or("no CSV table (was ncu run with --csv?)")?;
    let columns = split_csv(header);
    let col = |name: &str| {
        columns
            .iter()
            .position(|c| c == name)
            .ok_or(format!("no `{name}` column"))
    };
    let (id_col, kernel_col) = (col("ID")?, col("Kernel Name")?);
    let (metric_col, unit_col, value_col) = (
        col("Metric Name")?,
        col("Metric Unit")?,
        col("Metric Value")?,
    );
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut launches: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for line in lines {
        let row = split_csv(line);
        let field = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        // Kernel names may come with their parameter list: `force_pass(const float *, ...)`.
        let kernel = field(kernel_col).split('(').next().unwrap_or("").trim();
        if kernel.is_empty() {
            return Err(format!("a row without a kernel name: {line}"));
        }
        let metric = match field(metric_col) {
            "smsp__inst_executed.sum" => "instructions",
            "dram__bytes.sum" => "dram_bytes",
            _ => continue,
        };
        let scale = match field(unit_col) {
            "" | "inst" | "byte" | "warp" => 1.0,
            "Kbyte" => 1e3,
            "Mbyte" => 1e6,
            "Gbyte" => 1e9,
            other => {
                return Err(format!(
                    "unknown unit `{other}` (run ncu with --print-units base)"
                ))
            }
        };
        let raw = field(value_col).replace(',', "");
        let value: f64 = raw
            .parse()
            .map_err(|_| format!("metric value `{raw}` of {kernel} is not a number"))?;
        let id = format!("{prefix}/{kernel}");
        *out.entry(id.clone())
            .or_default()
            .entry(metric.to_string())
            .or_insert(0) += (value * scale).round() as u64;
        launches
            .entry(id)
            .or_default()
            .insert(field(id_col).to_string());
    }
    if out.is_empty() {
        return Err("no smsp__inst_executed.sum or dram__bytes.sum rows".to_string());
    }
    for (id, ids) in launches {
        if let Some(m) = out.get_mut(&id) {
            m.insert("launches".to_string(), ids.len() as u64);
        }
    }
    Ok(out)
}

/// The fields of one CSV line as ncu writes it (every field quoted, `""` for a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// A counts file from Nsight Compute's CSV (`tool` names the ncu version).
pub fn from_ncu_csv(path: &Path, prefix: &str, tool: &str) -> Result<CountsFile, CountsError> {
    let parse = |reason: String| CountsError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| parse(e.to_string()))?;
    let counts = parse_ncu_csv(&text, prefix).map_err(parse)?;
    Ok(CountsFile {
        format: FORMAT.to_string(),
        tool: tool.to_string(),
        measured_at: now(),
        counts,
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PART: &str = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 1\ncmd:  ./t\npart: 2\n\ndesc: Trigger: --dump-after=*::counted_region\n\npositions: line\nevents: Ir\nsummary: 900787\n\n\nfl= (1)\nfn= (1)\n0 5\ntotals: 900787\n";

    #[test]
    fn reads_instructions_and_estimates_cycles_with_cache_simulation() {
        assert_eq!(
            parse_callgrind_part(PART).unwrap(),
            BTreeMap::from([("instructions".to_string(), 900_787)])
        );
        // Trailing zero events are left out by callgrind.
        let sim =
            "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\nsummary: 1000 300 200 4 5 6 1 2\n";
        let m = parse_callgrind_part(sim).unwrap();
        assert_eq!(m["instructions"], 1000);
        assert_eq!(m["estimated_cycles"], 1000 + 10 * 15 + 100 * 3);
        assert!(parse_callgrind_part("events: Ir\n").is_err());
        assert!(parse_callgrind_part("summary: 5\n").is_err());
        assert!(parse_callgrind_part("events: Ir\nsummary: x\n").is_err());
    }

    #[test]
    fn parts_are_matched_to_ids_in_order_and_repeated_ids_summed() {
        let ids = region_ids("warming up\ncounted: a\ncounted: k/x\ncounted: k/x\n");
        assert_eq!(ids, ["a", "k/x", "k/x"]);
        let part = |n: u64| BTreeMap::from([("instructions".to_string(), n)]);
        let out = assign_parts(&ids, &[part(1), part(10), part(100)]).unwrap();
        assert_eq!(out["a"]["instructions"], 1);
        assert_eq!(out["k/x"]["instructions"], 110);
        assert!(assign_parts(&ids, &[part(1)])
            .unwrap_err()
            .contains("3 regions named on stdout but 1 profile parts"));
    }

    #[test]
    fn ncu_csv_gives_per_kernel_sums_over_launches() {
        let csv = "==PROF== Connected to process 1\n\
\"ID\",\"Process ID\",\"Process Name\",\"Host Name\",\"Kernel Name\",\"Context\",\"Stream\",\"Block Size\",\"Grid Size\",\"Device\",\"CC\",\"Section Name\",\"Metric Name\",\"Metric Unit\",\"Metric Value\"\n\
\"0\",\"1\",\"forcefield\",\"h\",\"force_pass\",\"1\",\"7\",\"(256, 1, 1)\",\"(4, 1, 1)\",\"0\",\"9.0\",\"Command line profiler metrics\",\"dram__bytes.sum\",\"byte\",\"39,168\"\n\
\"0\",\"1\",\"forcefield\",\"h\",\"force_pass\",\"1\",\"7\",\"(256, 1, 1)\",\"(4, 1, 1)\",\"0\",\"9.0\",\"Command line profiler metrics\",\"smsp__inst_executed.sum\",\"inst\",\"9,012\"\n\
\"1\",\"1\",\"forcefield\",\"h\",\"force_pass\",\"1\",\"7\",\"(256, 1, 1)\",\"(4, 1, 1)\",\"0\",\"9.0\",\"Command line profiler metrics\",\"smsp__inst_executed.sum\",\"inst\",\"9,000\"\n\
\"2\",\"1\",\"forcefield\",\"h\",\"integrate(const float *, float *)\",\"1\",\"7\",\"(256, 1, 1)\",\"(4, 1, 1)\",\"0\",\"9.0\",\"Command line profiler metrics\",\"dram__bytes.sum\",\"Kbyte\",\"1.5\"\n\
==PROF== Disconnected from process 1\n";
        let out = parse_ncu_csv(csv, "gpu_kernels/karate").unwrap();
        let fp = &out["gpu_kernels/karate/force_pass"];
        assert_eq!(fp["instructions"], 18_012);
        assert_eq!(fp["dram_bytes"], 39_168);
        assert_eq!(fp["launches"], 2);
        assert_eq!(out["gpu_kernels/karate/integrate"]["dram_bytes"], 1_500);
        assert!(parse_ncu_csv("no table\n", "p").is_err());
    }
}
