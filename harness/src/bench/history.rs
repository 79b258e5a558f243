/*!
The benchmark history: one JSON object per line, one line per `forcefield bench record`.

An [`Entry`] holds the machine [`Fingerprint`], the [`Build`], every sample of every benchmark the
run measured, and the layout-quality metrics measured next to them. The file only grows: [`append`]
rewrites it whole through [`crate::artifacts::write_atomically`], so a reader (or a crash midway)
sees the history before or after the append, never half a line.

[`resolve`] finds entries by the names users give on the command line: an index (`0` is the
oldest, `-1` the newest), an entry id or a unique prefix of one, a commit prefix, or a label.
*/

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::criterion::Throughput;
use super::fingerprint::{Build, Fingerprint};
use super::quality::QualityRecord;

/// The `format` of every entry this version writes.
pub const FORMAT: &str = "forcefield-bench/1";

/// The samples of one benchmark in an entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRecord {
    /// Nanoseconds per iteration, one per sample.
    pub samples_ns: Vec<f64>,
    /// Iterations per sample.
    #[serde(default)]
    pub iterations: Vec<f64>,
    /// Throughput per iteration, if criterion was told of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
    /// When criterion wrote the samples (seconds since the epoch).
    pub measured_at: u64,
    /// Counted work of the same benchmark, per metric (`instructions`, ...): see
    /// [`crate::bench::counts`]. Empty when only times were recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
}

/// Where an entry's counts came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsSource {
    /// The counting tool and its version; counts of different tools are not compared.
    pub tool: String,
    /// When the counts were taken (seconds since the epoch).
    pub measured_at: u64,
}

/// One recorded run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Always [`FORMAT`].
    pub format: String,
    /// Unique id: UTC time of recording and a hash, e.g. `20250301T101500Z-3fa2c1`.
    pub id: String,
    /// When it was recorded (seconds since the epoch).
    pub recorded_at: u64,
    /// The machine.
    pub fingerprint: Fingerprint,
    /// What was measured.
    pub build: Build,
    /// Samples per benchmark id.
    pub benchmarks: BTreeMap<String, BenchRecord>,
    /// Layout quality of fixed-seed graphs, measured by the recording build.
    #[serde(default)]
    pub quality: Vec<QualityRecord>,
    /// The tool behind the benchmarks' counts, when counts were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<CountsSource>,
}

impl Entry {
    /// A short name for tables: the id and the label or commit.
    pub fn display_name(&self) -> String {
        match &self.build.label {
            Some(label) => format!("{} ({label})", self.id),
            None => format!("{} ({})", self.id, self.build.short_commit()),
        }
    }
}

/// Why the history cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file exists but cannot be read.
    #[error("cannot read history {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not an entry.
    #[error("{}:{line}: not a benchmark history entry: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file cannot be written.
    #[error("cannot write history {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A reference names no entry, or several.
    #[error("{0}")]
    Reference(String),
}

/// Every entry of the history at `path`, oldest first; empty when the file does not exist.
pub fn load(path: &Path) -> Result<Vec<Entry>, HistoryError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(HistoryError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, HistoryError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parse_error = |reason: String| HistoryError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let entry: Entry = serde_json::from_str(line).map_err(|e| parse_error(e.to_string()))?;
        if entry.format != FORMAT {
            return Err(parse_error(format!(
                "format `{}`, expected `{FORMAT}`",
                entry.format
            )));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Appends `entry` to the history at `path` (created with its directories), atomically.
pub fn append(path: &Path, entry: &Entry) -> Result<(), HistoryError> {
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(HistoryError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    // The existing lines must stay readable: never append to a history this version cannot parse.
    parse(path, &text)?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let line = serde_json::to_string(entry).map_err(|e| HistoryError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push_str(&line);
    text.push('\n');
    crate::artifacts::write_atomically(path, text.as_bytes(), crate::artifacts::MissingDirs::Create)
        .map_err(|source| HistoryError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// The index of the entry `reference` names among `entries`: an index of up to six digits (`0`
/// oldest, `-1` newest),
/// an entry id or unique id prefix, a commit prefix (newest match) or a label (newest match).
pub fn resolve(entries: &[Entry], reference: &str) -> Result<usize, HistoryError> {
    let n = entries.len() as i64;
    // Short numbers are indices; long ones are more likely the date prefix of an entry id.
    let digits = reference.trim_start_matches('-');
    let index = (digits.len() <= 6)
        .then(|| reference.parse::<i64>().ok())
        .flatten();
    if let Some(k) = index {
        let index = if k < 0 { n + k } else { k };
        return if (0..n).contains(&index) {
            Ok(index as usize)
        } else {
            Err(HistoryError::Reference(format!(
                "entry {reference} does not exist (the history has {n} entries)"
            )))
        };
    }
    if let Some(i) = entries.iter().position(|e| e.id == reference) {
        return Ok(i);
    }
    let by_id: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].id.starts_with(reference))
        .collect();
    match by_id.len() {
        1 => return Ok(by_id[0]),
        0 => {}
        _ => {
            return Err(HistoryError::Reference(format!(
                "`{reference}` is the prefix of {} entry ids; give more of one",
                by_id.len()
            )))
        }
    }
    let hex = reference.len() >= 4 && reference.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(i) = (0..entries.len())
        .rev()
        .find(|&i| hex && entries[i].build.commit.starts_with(reference))
    {
        return Ok(i);
    }
    if let Some(i) = (0..entries.len())
        .rev()
        .find(|&i| entries[i].build.label.as_deref() == Some(reference))
    {
        return Ok(i);
    }
    Err(HistoryError::Reference(format!(
        "no entry is named `{reference}` (give an index such as -2, an entry id, a commit prefix or a label)"
    )))
}

/// A new entry id from the recording time and a hash of the entry's content.
pub fn new_id(recorded_at: u64, content: &[u8]) -> String {
    let hash = super::fingerprint::fnv1a_hex(content);
    format!("{}-{}", utc_compact(recorded_at), &hash[..6])
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time.
pub fn utc_compact(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Unix time, for tables.
pub fn utc_readable(secs: u64) -> String {
    let (y, mo, d, h, mi, _) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
}

/// Calendar date and time (UTC) of a Unix time (Howard Hinnant's days-from-civil, inverted).
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::fingerprint::GpuFingerprint;

    pub(crate) fn entry(id: &str, commit: &str, label: Option<&str>) -> Entry {
        Entry {
            format: FORMAT.into(),
            id: id.into(),
            recorded_at: 0,
            fingerprint: Fingerprint {
                cpu_model: "cpu".into(),
                cpu_cores: 2,
                gpu: GpuFingerprint::none(),
                rustc: "rustc".into(),
            },
            build: Build {
                commit: commit.into(),
                dirty: false,
                diff_hash: None,
                faults: vec![],
                label: label.map(str::to_string),
                executables: vec![],
            },
            benchmarks: BTreeMap::new(),
            quality: vec![],
            counts: None,
        }
    }

    #[test]
    fn appends_lines_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/history.jsonl");
        assert!(load(&path).unwrap().is_empty());
        let a = entry("a", "1111", None);
        let b = entry("b", "2222", Some("x"));
        append(&path, &a).unwrap();
        append(&path, &b).unwrap();
        assert_eq!(load(&path).unwrap(), vec![a, b]);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_bad_line_is_named_and_never_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        std::fs::write(&path, "{\"format\": \"x\"}\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("h.jsonl:1"), "{e}");
        assert!(append(&path, &entry("a", "1", None)).is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"format\": \"x\"}\n"
        );
    }

    #[test]
    fn resolves_indices_ids_commits_and_labels() {
        let entries = vec![
            entry("20250101T000000Z-aaaaaa", "abcdef01", Some("clean")),
            entry("20250102T000000Z-bbbbbb", "abcdef01", None),
            entry("20250103T000000Z-cccccc", "12345678", Some("slow")),
        ];
        assert_eq!(resolve(&entries, "0").unwrap(), 0);
        assert_eq!(resolve(&entries, "-1").unwrap(), 2);
        assert_eq!(resolve(&entries, "-3").unwrap(), 0);
        assert!(resolve(&entries, "3").is_err());
        assert_eq!(resolve(&entries, "20250102").unwrap(), 1);
        assert!(resolve(&entries, "2025").is_err(), "ambiguous prefix");
        assert_eq!(
            resolve(&entries, "abcdef").unwrap(),
            1,
            "newest commit match"
        );
        assert_eq!(resolve(&entries, "clean").unwrap(), 0);
        assert!(resolve(&entries, "nope").is_err());
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(utc_compact(0), "19700101T000000Z");
        assert_eq!(utc_compact(1_709_251_199), "20240229T235959Z");
        assert_eq!(utc_readable(951_782_400), "2000-02-29 00:00");
    }
}
