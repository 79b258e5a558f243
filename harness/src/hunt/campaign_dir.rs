/*!
A campaign's output directory (`--out D`), kept true while the campaign runs, so that nothing found
is lost to a kill, a full disk or a second campaign.

```text
D/campaign.lock       exclusive lock (flock) of the running campaign; says who holds it
D/findings.jsonl      the journal: one JSON record per event, appended and flushed to disk
D/summary.json        the summary, rewritten atomically after each event and every 10 s
D/findings/<id>/      case.json, report.json, stderr.txt as soon as a finding is classified;
                      minimized.json (and report.json again) when its minimization ends
```

Every file is written atomically ([`crate::artifacts`]): a reader, or a campaign killed mid-write,
sees a whole old file or a whole new one. The journal is the record the others are views of:
[`read_campaign`] rebuilds the summary from it, which is how `forcefield report D` and
`forcefield merge D` recover a campaign killed with SIGKILL (its last line may be torn: it is
skipped). Until the campaign ends, `summary.json` says `"interrupted": true`: if it is the last one
written, the campaign did not finish.

**Invariant:** one campaign per directory. [`CampaignDir::open`] takes the lock before writing
anything and fails at once, naming the holder, when another campaign has it; the kernel releases it
when the holder dies, however it dies.
*/

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use forcefield::Fault;

use crate::artifacts::{check_dir_writable, write_atomically, write_json, MissingDirs};
use crate::case::minimize::MinimizeReport;
use crate::case::{BackendKind, Expectation, Provenance};
use crate::client::signature::Signature;
use crate::hunt::campaign::config::Shard;
use crate::hunt::campaign::summary::{Finding, Reproduction, SlowCase, Summary, WallClock};

/// The lock file's name.
pub const LOCK_FILE: &str = "campaign.lock";
/// The journal's name.
pub const JOURNAL_FILE: &str = "findings.jsonl";
/// The summary's name.
pub const SUMMARY_FILE: &str = "summary.json";
/// The journal's format, in its first record.
pub const JOURNAL_FORMAT: &str = "forcefield-journal/1";

/// Why an output directory cannot be used or read.
#[derive(Debug, thiserror::Error)]
pub enum OutDirError {
    /// `--out` names something that cannot be a directory (a file, or a path under one).
    #[error("{}: not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// Another campaign holds the directory.
    #[error("{} is in use by another campaign ({holder})", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
        /// Who holds it, from the lock file: pid, start time, command line.
        holder: String,
    },
    /// A file cannot be written (permissions, a read-only file system, a full disk).
    #[error("cannot write to {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The journal cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The journal.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A journal line is not a record.
    #[error("{}: line {line}: not a campaign journal record: {message}", path.display())]
    Journal {
        /// The journal.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The parser's message.
        message: String,
    },
}

impl OutDirError {
    /// Whether this is the user's input (a path that cannot be a directory, a broken journal)
    /// rather than the environment (permissions, a full disk, a directory in use).
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            OutDirError::NotADirectory { .. } | OutDirError::Journal { .. }
        )
    }
}

/// One journal record.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Record {
    /// The campaign began: what it is.
    Start {
        /// [`JOURNAL_FORMAT`].
        format: String,
        /// Its backend.
        backend: BackendKind,
        /// Its seed.
        seed: u64,
        /// Its shards.
        shards: Vec<Shard>,
        /// Its planted faults.
        faults: Vec<Fault>,
        /// Its command line.
        found_by: String,
        /// Its budget and watchdog.
        wall: WallClock,
    },
    /// A new finding, classified (its files are written).
    Finding {
        /// As the summary lists it.
        finding: Box<Finding>,
    },
    /// The counters, at a summary rewrite.
    Progress {
        /// Seconds of cases so far.
        seconds: f64,
        /// Cases run.
        cases: u64,
        /// Cases that could not run.
        environment_errors: u64,
        /// The first environment error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        environment_message: Option<String>,
        /// Occurrences by signature.
        counts: BTreeMap<Signature, u64>,
        /// Injected faults by kind.
        #[serde(default)]
        injections: BTreeMap<String, u64>,
        /// The slowest cases.
        #[serde(default)]
        slowest: Vec<SlowCase>,
        /// Against a target: its totals so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<crate::hunt::target_totals::TargetTotals>,
    },
    /// A finding's re-runs before minimization.
    Reproduced {
        /// The finding.
        signature: Signature,
        /// How many re-runs gave it again.
        reproduced: Reproduction,
    },
    /// A finding's minimization ended (`minimized.json` is written).
    Minimized {
        /// The finding.
        signature: Signature,
        /// What it did.
        minimization: MinimizeReport,
        /// Seconds from the campaign's start.
        seconds_to_minimized: f64,
        /// Whether it ran to its end (not cut short by the budget or a stop).
        complete: bool,
    },
    /// The campaign ended: its final summary.
    End {
        /// As written to `summary.json`.
        summary: Box<Summary>,
    },
}

/// A campaign's output directory, locked for this campaign (see the module documentation).
#[derive(Debug)]
pub struct CampaignDir {
    root: PathBuf,
    journal: File,
    found_by: String,
    /// Held until dropped: the kernel releases it then, or when the process dies.
    _lock: Flock<File>,
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutDirError + '_ {
    move |source| OutDirError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Takes the lock of `root` for this process, writing who holds it into the lock file.
fn lock(root: &Path, found_by: &str) -> Result<Flock<File>, OutDirError> {
    let path = root.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(write_err(&path))?;
    let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((_, Errno::EWOULDBLOCK)) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "holder unknown".into());
            return Err(OutDirError::Locked {
                path: root.to_path_buf(),
                holder,
            });
        }
        Err((_, errno)) => return Err(write_err(&path)(errno.into())),
    };
    let holder = format!(
        "pid {}, started {}, `{found_by}`\n",
        std::process::id(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    locked.set_len(0).map_err(write_err(&path))?;
    locked
        .write_all(holder.as_bytes())
        .and_then(|()| locked.sync_all())
        .map_err(write_err(&path))?;
    Ok(locked)
}

/// Makes `root` (and its `findings/`) a directory we can write, or says why not.
fn prepare(root: &Path) -> Result<(), OutDirError> {
    if root.exists() && !root.is_dir() {
        return Err(OutDirError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let findings = root.join("findings");
    match check_dir_writable(&findings) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists
            ) =>
        {
            Err(OutDirError::NotADirectory {
                path: root.to_path_buf(),
            })
        }
        Err(source) => Err(OutDirError::Write {
            path: root.to_path_buf(),
            source,
        }),
    }
}

impl CampaignDir {
    /// Opens `root` for a new campaign run by `found_by` (its command line), before any case
    /// runs: creates it, checks that files can be written there, takes the lock (or fails at
    /// once naming its holder) and starts a new journal.
    pub fn open(root: &Path, found_by: &str) -> Result<Self, OutDirError> {
        prepare(root)?;
        let lock = lock(root, found_by)?;
        let path = root.join(JOURNAL_FILE);
        let journal = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(write_err(&path))?;
        Ok(CampaignDir {
            root: root.to_path_buf(),
            journal,
            found_by: found_by.to_string(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The command line of the campaign that holds it.
    pub fn found_by(&self) -> &str {
        &self.found_by
    }

    /// Appends `record` to the journal and flushes it to disk.
    pub fn append(&mut self, record: &Record) -> Result<(), OutDirError> {
        let path = self.root.join(JOURNAL_FILE);
        let mut line = serde_json::to_string(record).map_err(|e| OutDirError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push('\n');
        // One write per record: a kill mid-append leaves at most a torn last line.
        self.journal
            .write_all(line.as_bytes())
            .and_then(|()| self.journal.sync_data())
            .map_err(write_err(&path))
    }

    /// Rewrites `summary.json`.
    pub fn write_summary(&self, summary: &Summary) -> Result<(), OutDirError> {
        let path = self.root.join(SUMMARY_FILE);
        write_json(&path, summary).map_err(write_err(&path))
    }

    /// Writes a finding's files: `case.json`, `report.json`, `stderr.txt` and, once minimized,
    /// `minimized.json`.
    pub fn write_finding(&self, finding: &Finding, seed: u64) -> Result<(), OutDirError> {
        write_finding_files(&self.root, finding, seed, &self.found_by)
            .map(drop)
            .map_err(|(path, source)| OutDirError::Write { path, source })
    }
}

/// Writes `finding`'s files under `root/findings/<id>/`; the error names the file. `found_by` (the
/// command line) and `seed` go into the cases' provenance.
///
/// A new finding's directory appears whole or not at all: its files are written and flushed in a
/// temporary directory beside it (`findings/.tmp-<id>`), which is renamed into place and the
/// rename flushed; a write that fails (a full disk) removes the temporary directory. An existing
/// directory (a finding minimized since) has its files replaced one by one, each atomically, so it
/// stays whole too.
pub fn write_finding_files(
    root: &Path,
    finding: &Finding,
    seed: u64,
    found_by: &str,
) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let findings = root.join("findings");
    let id = finding.signature.id();
    let dir = findings.join(&id);
    if dir.is_dir() {
        return write_finding_files_into(&dir, finding, seed, found_by);
    }
    let staging = findings.join(format!(".tmp-{id}"));
    // A staging directory left by a campaign killed mid-write holds nothing that was recorded.
    let _ = std::fs::remove_dir_all(&staging);
    let staged = std::fs::create_dir_all(&staging)
        .map_err(|e| (staging.clone(), e))
        .and_then(|()| write_finding_files_into(&staging, finding, seed, found_by))
        .and_then(|files| {
            std::fs::rename(&staging, &dir).map_err(|e| (dir.clone(), e))?;
            crate::artifacts::sync_dir(&findings).map_err(|e| (findings.clone(), e))?;
            Ok(files)
        });
    match staged {
        Ok(files) => Ok(files
            .into_iter()
            .map(|f| dir.join(f.file_name().unwrap_or_default()))
            .collect()),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Writes `finding`'s files into `dir`, each atomically.
fn write_finding_files_into(
    dir: &Path,
    finding: &Finding,
    seed: u64,
    found_by: &str,
) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: Result<Vec<u8>, serde_json::Error>| {
        let path = dir.join(name);
        let bytes = bytes.map_err(|e| (path.clone(), std::io::Error::other(e)))?;
        write_atomically(&path, &bytes, MissingDirs::Create).map_err(|e| (path.clone(), e))?;
        written.push(path);
        Ok::<(), (PathBuf, std::io::Error)>(())
    };
    let provenance = Provenance {
        found_by: found_by.to_string(),
        seed: Some(seed),
        date: None,
        note: Some(finding.summary.clone()),
    };
    let expect = Expectation::Open {
        signature: finding.signature.to_string(),
    };
    if let Some(case) = &finding.case {
        let mut c = case.clone();
        c.expect = Some(expect.clone());
        c.provenance = Some(provenance.clone());
        put("case.json", pretty(&c))?;
    }
    if let Some(case) = &finding.minimized {
        let mut c = case.clone();
        c.expect = Some(expect);
        c.provenance = Some(provenance);
        put("minimized.json", pretty(&c))?;
    }
    let report = serde_json::json!({
        "finding": finding,
        "execution": finding.execution,
    });
    put("report.json", pretty(&report))?;
    if let Some(e) = &finding.execution {
        put("stderr.txt", Ok(e.stderr.text().into_bytes()))?;
    }
    Ok(written)
}

/// `value` as pretty JSON with a final newline.
fn pretty<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Rebuilds a campaign's summary from its journal's records (see [`Record`]). Without an `end`
/// record the campaign did not finish: the summary says `"interrupted": true`.
pub fn rebuild(records: impl IntoIterator<Item = Record>) -> Option<Summary> {
    let mut summary: Option<Summary> = None;
    let mut findings: BTreeMap<Signature, Finding> = BTreeMap::new();
    for record in records {
        match record {
            Record::Start {
                backend,
                seed,
                shards,
                faults,
                wall,
                ..
            } => {
                findings.clear();
                summary = Some(Summary {
                    format: crate::hunt::campaign::summary::SUMMARY_FORMAT.to_string(),
                    backend,
                    seed,
                    shards,
                    faults,
                    cases: 0,
                    environment_errors: 0,
                    seconds: 0.0,
                    interrupted: true,
                    findings: Vec::new(),
                    environment_message: None,
                    injections: BTreeMap::new(),
                    slowest: Vec::new(),
                    wall: Some(wall),
                    watchdog: None,
                    time: None,
                    target: None,
                });
            }
            Record::Finding { finding } => {
                findings.insert(finding.signature.clone(), *finding);
            }
            Record::Progress {
                seconds,
                cases,
                environment_errors,
                environment_message,
                counts,
                injections,
                slowest,
                target,
            } => {
                if let Some(s) = summary.as_mut() {
                    s.seconds = seconds;
                    s.cases = cases;
                    s.environment_errors = environment_errors;
                    s.environment_message = environment_message;
                    s.injections = injections;
                    s.slowest = slowest;
                    s.target = target;
                    if let Some(w) = s.wall.as_mut() {
                        w.seconds = w.seconds.max(seconds);
                    }
                }
                for (signature, count) in counts {
                    if let Some(f) = findings.get_mut(&signature) {
                        f.count = count;
                    }
                }
            }
            Record::Reproduced {
                signature,
                reproduced,
            } => {
                if let Some(f) = findings.get_mut(&signature) {
                    f.status.flaky = reproduced.flaky();
                    f.status.reproduced = Some(reproduced);
                }
            }
            Record::Minimized {
                signature,
                minimization,
                seconds_to_minimized,
                complete,
            } => {
                if let Some(f) = findings.get_mut(&signature) {
                    f.minimization = Some(minimization);
                    f.seconds_to_minimized = Some(seconds_to_minimized);
                    f.status.minimized = complete;
                }
            }
            Record::End { summary: end } => return Some(*end),
        }
    }
    summary.map(|mut s| {
        s.findings = findings.into_values().collect();
        s
    })
}

/// Reads the journal at `path`: every record, in order. A last line that does not parse is a
/// record torn by a kill and is skipped; any other bad line is an error.
pub fn read_journal(path: &Path) -> Result<Vec<Record>, OutDirError> {
    let text = read_bounded(path)?;
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(record) => records.push(record),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(OutDirError::Journal {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(records)
}

/// The most a journal may hold: far more than any campaign writes (a record per finding and per
/// 10 s), far less than what would exhaust memory.
pub const MAX_JOURNAL_BYTES: u64 = 256 << 20;

/// Reads a journal whole, refusing one past [`MAX_JOURNAL_BYTES`] while reading.
fn read_bounded(path: &Path) -> Result<String, OutDirError> {
    use std::io::Read as _;
    let read_err = |source| OutDirError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut text = String::new();
    file.take(MAX_JOURNAL_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_JOURNAL_BYTES {
        return Err(OutDirError::Journal {
            path: path.to_path_buf(),
            line: 0,
            message: format!("larger than {MAX_JOURNAL_BYTES} bytes"),
        });
    }
    Ok(text)
}

/// The summary of the campaign in directory `root`: rebuilt from its journal when it has one
/// (the journal is written first, so it is never behind), else `None`.
pub fn read_campaign(root: &Path) -> Result<Option<Summary>, OutDirError> {
    let path = root.join(JOURNAL_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let records = read_journal(&path)?;
    match rebuild(records) {
        Some(summary) => Ok(Some(summary)),
        None => Err(OutDirError::Journal {
            path,
            line: 1,
            message: "no start record".into(),
        }),
    }
}

/// Tries to take `root`'s lock without waiting, for rewriting `summary.json` from outside a
/// campaign (`forcefield report`); `Err` names the running campaign holding it.
pub fn try_lock(root: &Path) -> Result<Flock<File>, OutDirError> {
    let path = root.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(write_err(&path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => Ok(locked),
        Err((_, Errno::EWOULDBLOCK)) => Err(OutDirError::Locked {
            path: root.to_path_buf(),
            holder: std::fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .to_string(),
        }),
        Err((_, errno)) => Err(write_err(&path)(errno.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = CampaignDir::open(dir.path(), "forcefield run --seed 1").unwrap();
        let e = CampaignDir::open(dir.path(), "forcefield run --seed 2").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, OutDirError::Locked { .. }), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id()))
                && text.contains("`forcefield run --seed 1`"),
            "{text}"
        );
        drop(first);
        CampaignDir::open(dir.path(), "forcefield run --seed 2").unwrap();
    }

    #[test]
    fn a_file_or_a_path_under_one_is_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        for path in [file.clone(), file.join("sub")] {
            let e = CampaignDir::open(&path, "x").unwrap_err();
            assert!(matches!(e, OutDirError::NotADirectory { .. }), "{e}");
            assert!(e.is_input());
        }
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_bad_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let start = serde_json::to_string(&Record::Start {
            format: JOURNAL_FORMAT.into(),
            backend: BackendKind::Cpu,
            seed: 4,
            shards: vec![Shard::default()],
            faults: vec![],
            found_by: "forcefield run".into(),
            wall: WallClock {
                budget: Some(60.0),
                case_timeout: 10.0,
                seconds: 0.0,
            },
        })
        .unwrap();
        std::fs::write(&path, format!("{start}\n{{\"event\":\"progr")).unwrap();
        let summary = rebuild(read_journal(&path).unwrap()).unwrap();
        assert_eq!((summary.seed, summary.interrupted), (4, true));
        std::fs::write(&path, format!("{start}\nnot json\n{start}\n")).unwrap();
        let e = read_journal(&path).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(e.is_input());
    }
}
