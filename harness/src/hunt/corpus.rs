/*!
The regression corpus: case files that must keep behaving as recorded.

A corpus directory (`corpora/` in this repository) holds the entries in its `regressions/`
subdirectory, one [`Case`] per `*.json` file, each with an expectation:

* `{"outcome": "pass"}`: the case must pass every check;
* `{"outcome": "open", "signature": "signal:SIGSEGV:sort_pairs"}`: a known bug, still open; the case
  must still fail with exactly that signature. A pass means the bug looks fixed (the entry should be
  updated to `pass`); another signature means the behaviour changed. Both break the expectation.

This module is responsible for loading entries (every problem is an error naming the file: a corpus
that silently skips a broken file guards nothing), writing new entries atomically without
overwriting a different entry, and replaying entries through isolated workers
([`crate::client::run::run_isolated`]) and judging the outcome against the expectation. Rendering the
results is [`crate::hunt::report`]'s job; the `ci` command glues both together.

An entry runs on the backend its case names: an `open` signature was recorded on that backend and
another backend may fail differently. A CUDA entry on a machine without CUDA is skipped, not failed.
*/

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::case::{BackendKind, Case, CaseError, Expectation, MAX_CASE_BYTES};
use crate::client::signature::{Signature, Verdict};
use crate::isolate::{SupervisorConfig, WorkerCommand, WorkerSlot};

/// The subdirectory of a corpus directory that holds the regression entries.
pub(crate) const REGRESSIONS: &str = "regressions";

/// Most files tried by [`write_entry`] for one signature (`<id>.json`, `<id>-2.json`, ...), so a
/// directory full of colliding names is an error rather than an endless loop.
const MAX_NAME_SUFFIX: u32 = 1000;

/// Why a corpus could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The directory cannot be listed (missing, not a directory, no permission).
    #[error("{}: cannot read the corpus directory: {source}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An entry cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An entry is larger than any case may be.
    #[error("{}: {bytes} bytes, more than the limit of {MAX_CASE_BYTES} for a case", path.display())]
    TooBig {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// An entry is not a valid case.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: CaseError,
    },
    /// An entry says nothing about what it should give.
    #[error(
        "{}: a corpus entry needs an expectation: \"expect\": {{\"outcome\": \"pass\"}} or {{\"outcome\": \"open\", \"signature\": \"...\"}}",
        path.display()
    )]
    NoExpectation {
        /// The file.
        path: PathBuf,
    },
    /// An `open` expectation whose signature does not parse.
    #[error("{}: expect: {message}", path.display())]
    BadSignature {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// An entry cannot be written.
    #[error("{}: cannot write the corpus entry: {source}", path.display())]
    Write {
        /// The file (or directory).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One corpus entry: a file and its validated case.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The file.
    pub path: PathBuf,
    /// Its case; `expect` is always set.
    pub case: Case,
}

impl Entry {
    /// The file name (`signal-SIGSEGV-sort_pairs.json`), which names the entry in reports.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// The expectation ([`load`] rejects entries without one).
    pub fn expectation(&self) -> Expectation {
        self.case.expect.clone().unwrap_or(Expectation::Pass)
    }

    /// The signature of an `open` expectation.
    pub fn open_signature(&self) -> Option<Signature> {
        match &self.case.expect {
            Some(Expectation::Open { signature }) => signature.trim().parse().ok(),
            _ => None,
        }
    }
}

/// The regression directory of a corpus directory: `corpus/regressions`.
pub(crate) fn regressions_dir(corpus: &Path) -> PathBuf {
    corpus.join(REGRESSIONS)
}

/// Whether `path` names a corpus entry file: `*.json`, not hidden (editors' and our own temporary
/// files start with a dot).
fn is_entry_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".json") && path.is_file()
}

/// Reads and validates one entry file.
pub(crate) fn read_entry(path: &Path) -> Result<Entry, CorpusError> {
    let read_err = |source| CorpusError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Check the size before reading, so that a huge file is an error rather than an allocation.
    let bytes = std::fs::metadata(path).map_err(read_err)?.len();
    if bytes > MAX_CASE_BYTES as u64 {
        return Err(CorpusError::TooBig {
            path: path.to_path_buf(),
            bytes,
        });
    }
    let text = crate::input::read_bounded_string(path, MAX_CASE_BYTES as u64, "case file")
        .map_err(read_err)?;
    let case = Case::from_json(&text).map_err(|source| CorpusError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    match &case.expect {
        None => {
            return Err(CorpusError::NoExpectation {
                path: path.to_path_buf(),
            })
        }
        Some(Expectation::Open { signature }) => {
            signature
                .trim()
                .parse::<Signature>()
                .map_err(|message| CorpusError::BadSignature {
                    path: path.to_path_buf(),
                    message,
                })?;
        }
        Some(Expectation::Pass) => {}
    }
    Ok(Entry {
        path: path.to_path_buf(),
        case,
    })
}

/// Loads every entry of a regression directory, sorted by file name. Files other than `*.json`
/// (the README) are ignored; any malformed entry fails the whole load, naming its file.
pub fn load(dir: &Path) -> Result<Vec<Entry>, CorpusError> {
    let listing = std::fs::read_dir(dir).map_err(|source| CorpusError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for item in listing {
        let item = item.map_err(|source| CorpusError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = item.path();
        if is_entry_file(&path) {
            paths.push(path);
        }
    }
    paths.sort();
    paths.iter().map(|p| read_entry(p)).collect()
}

/// The file name of the `n`-th entry (from 1) for a signature id: `<id>.json`, `<id>-2.json`, ...
fn entry_file_name(id: &str, n: u32) -> String {
    if n <= 1 {
        format!("{id}.json")
    } else {
        format!("{id}-{n}.json")
    }
}

/// Whether two cases are the same entry: everything but where they came from.
fn same_entry(a: &Case, b: &Case) -> bool {
    let strip = |c: &Case| Case {
        provenance: None,
        ..c.clone()
    };
    strip(a) == strip(b)
}

/// The path a new entry for `signature` would get in `dir` now: the first of `<id>.json`,
/// `<id>-2.json`, ... that does not exist. Used to print the command that adds a finding.
pub(crate) fn free_entry_path(dir: &Path, signature: &Signature) -> PathBuf {
    let id = signature.id();
    (1..=MAX_NAME_SUFFIX)
        .map(|n| dir.join(entry_file_name(&id, n)))
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.join(entry_file_name(&id, MAX_NAME_SUFFIX + 1)))
}

/// Writes `case` into `dir` as an `open` entry for `signature`, named by the signature's id
/// (`signal-SIGSEGV-sort_pairs.json`). An existing file of that name holding a different case is
/// never overwritten: the entry goes to `<id>-2.json`, `<id>-3.json` ...; an existing file holding
/// the same case (provenance aside) is kept and its path returned. The file appears atomically
/// (written aside, then linked into place only where no file is), so concurrent writers cannot
/// clobber each other either.
pub fn write_entry(dir: &Path, case: &Case, signature: &Signature) -> Result<PathBuf, CorpusError> {
    let mut entry = case.clone();
    entry.expect = Some(Expectation::Open {
        signature: signature.to_string(),
    });
    let write_err = |path: &Path, source| CorpusError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text = serde_json::to_string_pretty(&entry)
        .map_err(|e| write_err(dir, std::io::Error::other(e)))?;
    text.push('\n');
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let id = signature.id();
    for n in 1..=MAX_NAME_SUFFIX {
        let path = dir.join(entry_file_name(&id, n));
        if path.exists() {
            match read_entry(&path) {
                Ok(existing) if same_entry(&existing.case, &entry) => return Ok(path),
                _ => continue,
            }
        }
        let mut tmp = crate::artifacts::temp_file_in(dir).map_err(|e| write_err(dir, e))?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| write_err(&path, e))?;
        tmp.as_file().sync_all().map_err(|e| write_err(&path, e))?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => return Ok(path),
            // Another writer got there first: judge its file like any existing one.
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                if matches!(read_entry(&path), Ok(existing) if same_entry(&existing.case, &entry)) {
                    return Ok(path);
                }
            }
            Err(e) => return Err(write_err(&path, e.error)),
        }
    }
    Err(write_err(
        dir,
        std::io::Error::other(format!(
            "{MAX_NAME_SUFFIX} entries named {id} already exist"
        )),
    ))
}

/// How a replayed entry compares with its expectation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum ReplayStatus {
    /// As expected: a `pass` entry passed, an `open` entry failed with its signature.
    Met,
    /// Not as expected.
    Broken {
        /// What differs, and what to do about it.
        reason: String,
    },
    /// Not run here (its backend is unavailable).
    Skipped {
        /// Why.
        reason: String,
    },
    /// The entry could not run here (a worker that cannot start, an unusable backend).
    Environment {
        /// Why.
        message: String,
    },
}

impl ReplayStatus {
    /// Whether the expectation is broken.
    pub fn is_broken(&self) -> bool {
        matches!(self, ReplayStatus::Broken { .. })
    }
}

/// Judges one run of a case against its expectation.
pub(crate) fn judge(expectation: &Expectation, verdict: &Verdict) -> ReplayStatus {
    let broken = |reason: String| ReplayStatus::Broken { reason };
    match (expectation, verdict) {
        (_, Verdict::Environment { message }) => ReplayStatus::Environment {
            message: message.clone(),
        },
        (Expectation::Pass, Verdict::Pass) => ReplayStatus::Met,
        (Expectation::Pass, Verdict::Finding { signature, summary }) => {
            broken(format!("expected pass, got {signature} ({summary})"))
        }
        (
            Expectation::Open {
                signature: expected,
            },
            Verdict::Pass,
        ) => broken(format!(
            "expected open {expected}, but the case passes: fixed? update the expectation to pass"
        )),
        (
            Expectation::Open {
                signature: expected,
            },
            Verdict::Finding { signature, summary },
        ) => {
            let same = match expected.trim().parse::<Signature>() {
                Ok(parsed) => parsed == *signature,
                Err(_) => expected.trim() == signature.to_string(),
            };
            if same {
                ReplayStatus::Met
            } else {
                broken(format!(
                    "expected open {expected}, got {signature} ({summary}): another failure than the one recorded"
                ))
            }
        }
    }
}

/// The outcome of replaying one entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplayResult {
    /// The entry's file name.
    pub entry: String,
    /// Its path.
    pub path: PathBuf,
    /// What it should give.
    pub expected: Expectation,
    /// What it gave (absent when skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The comparison.
    #[serde(flatten)]
    pub status: ReplayStatus,
    /// Seconds the run took.
    pub seconds: f64,
}

/// How to replay a corpus.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// How to start a worker.
    pub worker: WorkerCommand,
    /// Worker processes running entries in parallel.
    pub jobs: usize,
    /// Per-entry watchdog (an `open` hang waits this long).
    pub deadline: Duration,
    /// Re-run each entry under another growth policy, as campaigns do.
    pub capacity_invariance: bool,
    /// Whether the CUDA backend is usable here; CUDA entries are skipped when it is not.
    pub cuda_available: bool,
}

/// Replays one entry in `slot`.
fn replay_one(entry: &Entry, slot: &mut WorkerSlot, options: &ReplayOptions) -> ReplayResult {
    let expected = entry.expectation();
    let start = Instant::now();
    let (verdict, status) = if entry.case.backend == BackendKind::Cuda && !options.cuda_available {
        (
            None,
            ReplayStatus::Skipped {
                reason: "a CUDA entry, and no usable CUDA device here".into(),
            },
        )
    } else {
        let (verdict, _) = crate::client::run::run_isolated(
            slot,
            &entry.case,
            options.capacity_invariance,
            options.deadline,
        );
        let status = judge(&expected, &verdict);
        (Some(verdict), status)
    };
    ReplayResult {
        entry: entry.name(),
        path: entry.path.clone(),
        expected,
        verdict,
        status,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Replays every entry through isolated workers (`options.jobs` of them) and returns the results in
/// the order of `entries`. `on_result` is called as each finishes (for progress lines).
pub fn replay(
    entries: &[Entry],
    options: &ReplayOptions,
    on_result: &(dyn Fn(&ReplayResult) + Sync),
) -> Vec<ReplayResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ReplayResult>>> = Mutex::new(vec![None; entries.len()]);
    let lanes = options.jobs.clamp(1, entries.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..lanes {
            scope.spawn(|| {
                // One slot per thread: a worker serves one case at a time and dies with its slot.
                let mut slot = WorkerSlot::new(options.worker.clone(), SupervisorConfig::default());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(entry) = entries.get(i) else { break };
                    let result = replay_one(entry, &mut slot, options);
                    on_result(&result);
                    // A poisoned lock means another lane panicked; its panic is reported by the
                    // scope, and this lane's result is still worth keeping.
                    let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
                    all[i] = Some(result);
                }
                slot.shutdown();
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::CaseGraph;

    fn case(nodes: u64) -> Case {
        Case::new(CaseGraph {
            num_nodes: nodes,
            ..CaseGraph::default()
        })
    }

    fn sig(s: &str) -> Signature {
        s.parse().unwrap()
    }

    #[test]
    fn judging_follows_the_expectation() {
        let segv = Verdict::Finding {
            signature: sig("signal:SIGSEGV:sort_pairs"),
            summary: "worker killed by SIGSEGV in sort_pairs".into(),
        };
        let open = |s: &str| Expectation::Open {
            signature: s.into(),
        };
        assert_eq!(judge(&Expectation::Pass, &Verdict::Pass), ReplayStatus::Met);
        assert_eq!(
            judge(&open("signal:SIGSEGV:sort_pairs"), &segv),
            ReplayStatus::Met
        );
        let ReplayStatus::Broken { reason } = judge(&Expectation::Pass, &segv) else {
            panic!("a failing pass entry must be broken")
        };
        assert!(
            reason.starts_with("expected pass, got signal:SIGSEGV:sort_pairs"),
            "{reason}"
        );
        let ReplayStatus::Broken { reason } =
            judge(&open("signal:SIGSEGV:sort_pairs"), &Verdict::Pass)
        else {
            panic!("a passing open entry must be broken")
        };
        assert!(
            reason.contains("fixed? update the expectation to pass"),
            "{reason}"
        );
        assert!(judge(&open("signal:SIGBUS:sort_pairs"), &segv).is_broken());
        assert!(matches!(
            judge(
                &Expectation::Pass,
                &Verdict::Environment {
                    message: "no worker".into()
                }
            ),
            ReplayStatus::Environment { .. }
        ));
    }

    #[test]
    fn loading_sorts_entries_ignores_other_files_and_names_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut pass = case(2);
        pass.expect = Some(Expectation::Pass);
        for name in ["b.json", "a.json"] {
            std::fs::write(dir.path().join(name), serde_json::to_string(&pass).unwrap()).unwrap();
        }
        std::fs::write(dir.path().join("README.md"), "not a case").unwrap();
        std::fs::write(dir.path().join(".tmpXYZ.json"), "half a file").unwrap();
        let names: Vec<String> = load(dir.path()).unwrap().iter().map(Entry::name).collect();
        assert_eq!(names, ["a.json", "b.json"]);

        std::fs::write(dir.path().join("c.json"), "{ nope").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("c.json: not a valid case"), "{e}");

        std::fs::write(
            dir.path().join("c.json"),
            serde_json::to_string(&case(1)).unwrap(),
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("c.json: a corpus entry needs an expectation"),
            "{e}"
        );

        let mut bad = case(1);
        bad.expect = Some(Expectation::Open {
            signature: "nonsense".into(),
        });
        std::fs::write(
            dir.path().join("c.json"),
            serde_json::to_string(&bad).unwrap(),
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("c.json: expect: `nonsense` is not a signature"),
            "{e}"
        );

        let e = load(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("cannot read the corpus directory"), "{e}");
    }

    #[test]
    fn entries_are_named_by_signature_and_never_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let s = sig("signal:SIGSEGV:sort_pairs");
        assert_eq!(
            free_entry_path(dir.path(), &s),
            dir.path().join("signal-SIGSEGV-sort_pairs.json")
        );
        let first = write_entry(dir.path(), &case(1), &s).unwrap();
        assert_eq!(first, dir.path().join("signal-SIGSEGV-sort_pairs.json"));
        // The same case again (another provenance) is the same entry.
        let mut again = case(1);
        again.provenance = Some(crate::case::Provenance {
            found_by: "another run".into(),
            ..Default::default()
        });
        assert_eq!(write_entry(dir.path(), &again, &s).unwrap(), first);
        // A different case with the same signature goes next to it.
        let second = write_entry(dir.path(), &case(2), &s).unwrap();
        assert_eq!(second, dir.path().join("signal-SIGSEGV-sort_pairs-2.json"));
        assert_eq!(
            free_entry_path(dir.path(), &s),
            dir.path().join("signal-SIGSEGV-sort_pairs-3.json")
        );
        let entries = load(dir.path()).unwrap();
        assert_eq!(entries.len(), 2);
        let nodes = |name: &str| {
            let e = entries.iter().find(|e| e.name() == name).unwrap();
            e.case.graph.num_nodes
        };
        assert_eq!(nodes("signal-SIGSEGV-sort_pairs.json"), 1);
        assert_eq!(nodes("signal-SIGSEGV-sort_pairs-2.json"), 2);
        assert!(entries
            .iter()
            .all(|e| e.open_signature() == Some(s.clone())));
    }
}
