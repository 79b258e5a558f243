/*!
`forcefield merge`: one summary from the `summary.json` files of a campaign's shards (`forcefield run
--shard I/N` on several machines), printed as markdown and optionally written as JSON. Exit 1 when
the merged summary has findings, as `run` would have.

Merge rules ([`merge_summaries`]):

* the summaries must be of one campaign: same seed, backend and planted faults, and shards of the
  same count; anything else is an input error saying which field differs and in which file;
* shards are concatenated (sorted); the same shard twice is an error, since its cases would count
  twice;
* cases and environment errors are summed; **seconds is the maximum**, not the sum: shards run in
  parallel, so the campaign took as long as its slowest shard, and cases per second is then the
  throughput of all machines together;
* findings are merged by signature: occurrence counts summed; the first occurrence kept is the
  earliest in time since its shard's start (shards start together), ties broken by the lower case
  index, and its summary, case index and case size come with it, so they describe one real
  occurrence; the minimization kept is the smallest result (fewest nodes + edges + ops), with the
  time it was reached;
* the slowest cases are the slowest of all shards' (the five kept).

Only what `summary.json` holds is merged: the cases themselves stay in each shard's `findings/`.
*/

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::artifacts::write_json;
use crate::case::minimize::MinimizeReport;
use crate::client::signature::Signature;
use crate::commands::error::CliError;
use crate::hunt::campaign::{keep_slowest, Finding, Shard, Summary, SUMMARY_FORMAT};

/// Arguments of `forcefield merge`.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// The shards' `summary.json` files (or the `--out` directories that hold them).
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Write the merged summary here (JSON, the `summary.json` format).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}

/// Why summaries cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a summary.
    #[error("{}: not a campaign summary: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A summary of another format version.
    #[error("{}: unsupported summary format `{found}` (expected `{SUMMARY_FORMAT}`)", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Its format string.
        found: String,
    },
    /// A summary of another campaign.
    #[error("{}: {what} {found} differs from {expected} in {}", path.display(), first.display())]
    Differs {
        /// The file that differs.
        path: PathBuf,
        /// The first file, which the others are compared with.
        first: PathBuf,
        /// The field: `seed`, `backend`, `faults`, `shard count`.
        what: &'static str,
        /// Its value in `path`.
        found: String,
        /// Its value in `first`.
        expected: String,
    },
    /// A shard given twice.
    #[error("{}: shard {shard} is already in {}", path.display(), other.display())]
    DuplicateShard {
        /// The second file holding it.
        path: PathBuf,
        /// The first.
        other: PathBuf,
        /// The shard, `I/N`.
        shard: String,
    },
    /// A shard that cannot be (`5/2`, `0/0`).
    #[error("{}: shard {shard} is not a shard (expected I/N with 0 <= I < N)", path.display())]
    BadShard {
        /// The file.
        path: PathBuf,
        /// The shard, `I/N`.
        shard: String,
    },
    /// A sum past what a count can hold.
    #[error("{}: {what} overflows when added to the other summaries'", path.display())]
    Overflow {
        /// The file whose count overflowed the sum.
        path: PathBuf,
        /// The count: `cases`, `environment_errors`, ...
        what: String,
    },
    /// A campaign directory whose journal cannot be read.
    #[error(transparent)]
    Journal(#[from] crate::hunt::campaign_dir::OutDirError),
    /// Nothing to merge.
    #[error("no summaries to merge")]
    Empty,
}

/// `a + b`, or the overflow error naming `what` in `path`.
fn add(a: u64, b: u64, path: &Path, what: &str) -> Result<u64, MergeError> {
    a.checked_add(b).ok_or_else(|| MergeError::Overflow {
        path: path.to_path_buf(),
        what: what.to_string(),
    })
}

fn shard_text(s: &Shard) -> String {
    format!("{}/{}", s.index, s.count)
}

fn faults_text(s: &Summary) -> String {
    let mut names: Vec<&str> = s.faults.iter().map(|f| f.name()).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(",")
    }
}

/// Reads one summary. A directory stands for the campaign written there: its summary rebuilt
/// from its journal (`findings.jsonl`: so a campaign killed before writing its last summary still
/// counts), or its `summary.json` when it has no journal.
pub fn read_summary(path: &Path) -> Result<(PathBuf, Summary), MergeError> {
    if path.is_dir() {
        if let Some(summary) = crate::hunt::campaign_dir::read_campaign(path)? {
            return Ok((path.join(crate::hunt::campaign_dir::JOURNAL_FILE), summary));
        }
    }
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_path_buf()
    };
    let text = crate::input::read_summary_text(&file).map_err(|source| MergeError::Read {
        path: file.clone(),
        source,
    })?;
    let summary: Summary = serde_json::from_str(&text).map_err(|e| MergeError::Parse {
        path: file.clone(),
        message: e.to_string(),
    })?;
    if summary.format != SUMMARY_FORMAT {
        return Err(MergeError::Format {
            path: file,
            found: summary.format,
        });
    }
    Ok((file, summary))
}

/// Size of a minimization's result, for keeping the smallest: total, then operations.
fn minimized_size(m: &MinimizeReport) -> (u64, u64) {
    let a = m.after;
    (a.nodes + a.edges + a.ops, a.ops)
}

/// Whether `candidate` is a smaller minimization than `current` (any beats none).
fn smaller(candidate: Option<&MinimizeReport>, current: Option<&MinimizeReport>) -> bool {
    match (candidate, current) {
        (Some(c), Some(k)) => minimized_size(c) < minimized_size(k),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Whether `candidate`'s first occurrence comes before `current`'s.
fn earlier(candidate: &Finding, current: &Finding) -> bool {
    candidate
        .seconds_to_first
        .total_cmp(&current.seconds_to_first)
        .then(candidate.first_case.cmp(&current.first_case))
        == Ordering::Less
}

/// Merges the summaries of one campaign's shards (see the module documentation for the rules).
/// Each summary comes with the file it was read from, for error messages.
pub fn merge_summaries(inputs: &[(PathBuf, Summary)]) -> Result<Summary, MergeError> {
    let Some((first_path, first)) = inputs.first() else {
        return Err(MergeError::Empty);
    };
    let shard_count = first.shards.first().map(|s| s.count);
    let mut shards: BTreeMap<(u64, u64), &PathBuf> = BTreeMap::new();
    let mut findings: BTreeMap<Signature, Finding> = BTreeMap::new();
    let mut merged = Summary {
        format: SUMMARY_FORMAT.to_string(),
        backend: first.backend,
        seed: first.seed,
        shards: Vec::new(),
        faults: first.faults.clone(),
        cases: 0,
        environment_errors: 0,
        seconds: 0.0,
        interrupted: false,
        findings: Vec::new(),
        environment_message: None,
        injections: BTreeMap::new(),
        slowest: Vec::new(),
        wall: None,
        // Each shard's own summary says how its limits were set and where its time went.
        watchdog: None,
        time: None,
        target: None,
    };
    for (path, s) in inputs {
        let differs = |what, found: String, expected: String| MergeError::Differs {
            path: path.clone(),
            first: first_path.clone(),
            what,
            found,
            expected,
        };
        if s.seed != first.seed {
            return Err(differs("seed", s.seed.to_string(), first.seed.to_string()));
        }
        if s.backend != first.backend {
            return Err(differs(
                "backend",
                s.backend.to_string(),
                first.backend.to_string(),
            ));
        }
        if faults_text(s) != faults_text(first) {
            return Err(differs("faults", faults_text(s), faults_text(first)));
        }
        for shard in &s.shards {
            if shard.count == 0 || shard.index >= shard.count {
                return Err(MergeError::BadShard {
                    path: path.clone(),
                    shard: shard_text(shard),
                });
            }
            // Shards of different counts overlap (0/2 and 0/3 both run case 0).
            if Some(shard.count) != shard_count {
                return Err(differs(
                    "shard count",
                    shard.count.to_string(),
                    shard_count.map_or("(none)".into(), |c| c.to_string()),
                ));
            }
            if let Some(other) = shards.insert((shard.index, shard.count), path) {
                return Err(MergeError::DuplicateShard {
                    path: path.clone(),
                    other: other.clone(),
                    shard: shard_text(shard),
                });
            }
        }
        merged.cases = add(merged.cases, s.cases, path, "cases")?;
        merged.environment_errors = add(
            merged.environment_errors,
            s.environment_errors,
            path,
            "environment_errors",
        )?;
        merged.seconds = merged.seconds.max(s.seconds);
        merged.interrupted |= s.interrupted;
        if let Some(w) = s.wall {
            // Shards run in parallel: the campaign's wall clock is its slowest shard's.
            merged.wall = Some(match merged.wall {
                Some(m) if m.seconds >= w.seconds => m,
                _ => w,
            });
        }
        for (kind, n) in &s.injections {
            let sum = merged.injections.entry(kind.clone()).or_default();
            *sum = add(*sum, *n, path, &format!("injections of {kind}"))?;
        }
        for slow in &s.slowest {
            keep_slowest(&mut merged.slowest, slow.clone());
        }
        if let Some(t) = &s.target {
            match merged.target.as_mut() {
                Some(m) => m.merge(t),
                None => merged.target = Some(t.clone()),
            }
        }
        if merged.environment_message.is_none() {
            merged.environment_message = s.environment_message.clone();
        }
        for f in &s.findings {
            let Some(kept) = findings.get_mut(&f.signature) else {
                findings.insert(f.signature.clone(), f.clone());
                continue;
            };
            kept.count = add(
                kept.count,
                f.count,
                path,
                &format!("count of {}", f.signature),
            )?;
            if let Some(r) = f.status.reproduced {
                kept.status.reproduced = Some(match kept.status.reproduced {
                    // Rates of the same finding in several shards: all their re-runs.
                    Some(k) => crate::hunt::campaign::Reproduction {
                        reproduced: k.reproduced.saturating_add(r.reproduced),
                        tries: k.tries.saturating_add(r.tries),
                    },
                    None => r,
                });
            }
            kept.status.flaky |= f.status.flaky;
            if earlier(f, kept) {
                kept.summary = f.summary.clone();
                kept.first_case = f.first_case;
                kept.seconds_to_first = f.seconds_to_first;
                kept.case_size = f.case_size;
            }
            if smaller(f.minimization.as_ref(), kept.minimization.as_ref()) {
                kept.minimization = f.minimization.clone();
                kept.seconds_to_minimized = f.seconds_to_minimized;
                kept.status.minimized = f.status.minimized;
            }
        }
    }
    merged.shards = shards
        .keys()
        .map(|&(index, count)| Shard { index, count })
        .collect();
    merged.findings = findings.into_values().collect();
    Ok(merged)
}

/// One line on which shards the merged summary covers.
fn coverage_line(inputs: usize, s: &Summary) -> String {
    let count = s.shards.first().map_or(0, |x| x.count);
    let missing: Vec<String> = (0..count)
        .filter(|i| !s.shards.iter().any(|x| x.index == *i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    format!(
        "merged {inputs} summaries: shards {}{}\n",
        s.shards
            .iter()
            .map(shard_text)
            .collect::<Vec<_>>()
            .join(", "),
        if missing.is_empty() {
            format!(" (all {count})")
        } else {
            format!(" (missing {})", missing.join(", "))
        }
    )
}

/// Merges, prints and writes; findings give exit code 1.
pub fn run(args: &MergeArgs) -> Result<(), CliError> {
    if let Some(path) = &args.out {
        super::check_output_file(path)?;
    }
    let inputs = args
        .reports
        .iter()
        .map(|p| read_summary(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::input)?;
    let merged = merge_summaries(&inputs).map_err(CliError::input)?;
    if let Some(path) = &args.out {
        write_json(path, &merged).map_err(|e| {
            CliError::environment(anyhow::anyhow!("cannot write {}: {e}", path.display()))
        })?;
    }
    print!("{}", coverage_line(inputs.len(), &merged));
    print!("{}", merged.markdown());
    if !merged.findings.is_empty() {
        return Err(CliError::Findings(anyhow::anyhow!(
            "{} distinct finding(s) across the shards",
            merged.findings.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::minimize::CaseSize;
    use crate::case::BackendKind;

    fn size(nodes: u64, edges: u64, ops: u64) -> CaseSize {
        CaseSize { nodes, edges, ops }
    }

    fn finding(sig: &str, count: u64, first: (f64, u64), min: Option<CaseSize>) -> Finding {
        Finding {
            signature: sig.parse().unwrap(),
            summary: format!("case {}", first.1),
            count,
            first_case: first.1,
            seconds_to_first: first.0,
            case_size: size(first.1, 0, 0),
            minimization: min.map(|after| MinimizeReport {
                before: size(100, 100, 100),
                after,
                runs: 1,
                accepted: 1,
                seconds: 0.1,
                hit_limit: false,
            }),
            seconds_to_minimized: min.map(|m| m.nodes as f64),
            aliases: Vec::new(),
            status: Default::default(),
            case: None,
            minimized: None,
            execution: None,
        }
    }

    fn shard(index: u64, cases: u64, seconds: f64, findings: Vec<Finding>) -> (PathBuf, Summary) {
        (
            PathBuf::from(format!("s{index}/summary.json")),
            Summary {
                format: SUMMARY_FORMAT.into(),
                backend: BackendKind::Cpu,
                seed: 1,
                shards: vec![Shard { index, count: 3 }],
                faults: vec![forcefield::Fault::SortCountUnclamped],
                cases,
                environment_errors: 0,
                seconds,
                interrupted: false,
                findings,
                environment_message: None,
                injections: BTreeMap::new(),
                slowest: Vec::new(),
                wall: None,
                watchdog: None,
                time: None,
                target: None,
            },
        )
    }

    #[test]
    fn counts_sum_seconds_take_the_max_and_findings_merge_by_signature() {
        let segv = "signal:SIGSEGV:sort_pairs";
        let merged = merge_summaries(&[
            shard(
                2,
                10,
                5.0,
                vec![finding(segv, 4, (0.9, 2), Some(size(2, 1, 3)))],
            ),
            shard(
                0,
                20,
                7.0,
                vec![
                    finding(segv, 6, (0.2, 30), Some(size(1, 0, 4))),
                    finding("hang:force_pass", 1, (3.0, 9), None),
                ],
            ),
            shard(1, 5, 6.0, vec![finding(segv, 1, (0.2, 7), None)]),
        ])
        .unwrap();
        assert_eq!(merged.cases, 35);
        assert_eq!(merged.seconds, 7.0);
        assert_eq!(
            merged.shards,
            [0, 1, 2].map(|index| Shard { index, count: 3 })
        );
        assert_eq!(merged.findings.len(), 2);
        let f = merged
            .findings
            .iter()
            .find(|f| f.signature.to_string() == segv)
            .unwrap();
        assert_eq!(f.count, 11);
        // Earliest in time; the tie at 0.2 s goes to the lower case index, with its summary.
        assert_eq!((f.first_case, f.summary.as_str()), (7, "case 7"));
        // Smallest minimization (1+0+4 = 5 < 2+1+3 = 6), with its time.
        assert_eq!(f.minimization.as_ref().unwrap().after, size(1, 0, 4));
        assert_eq!(f.seconds_to_minimized, Some(1.0));
    }

    #[test]
    fn the_slowest_cases_are_the_slowest_of_all_shards() {
        use crate::hunt::campaign::{SlowCase, SLOWEST_KEPT};
        let slow = |case: u64, seconds: f64| SlowCase {
            case,
            seconds,
            size: size(1, 0, 1),
        };
        let mut a = shard(0, 4, 1.0, vec![]);
        a.1.slowest = vec![slow(0, 9.0), slow(3, 2.0), slow(6, 1.0)];
        let mut b = shard(1, 4, 1.0, vec![]);
        b.1.slowest = vec![slow(1, 5.0), slow(4, 2.0), slow(7, 0.5), slow(10, 0.1)];
        let merged = merge_summaries(&[b, a]).unwrap();
        let got: Vec<(u64, f64)> = merged.slowest.iter().map(|s| (s.case, s.seconds)).collect();
        assert_eq!(got.len(), SLOWEST_KEPT);
        // Slowest first; the tie at 2 s goes to the lower index whatever the shard order.
        assert_eq!(got, [(0, 9.0), (1, 5.0), (3, 2.0), (4, 2.0), (6, 1.0)]);
    }

    #[test]
    fn summaries_of_other_campaigns_or_repeated_shards_are_refused() {
        let mut other = shard(1, 1, 1.0, vec![]);
        other.1.seed = 2;
        let e = merge_summaries(&[shard(0, 1, 1.0, vec![]), other]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "s1/summary.json: seed 2 differs from 1 in s0/summary.json"
        );
        let mut other = shard(1, 1, 1.0, vec![]);
        other.1.faults.clear();
        let e = merge_summaries(&[shard(0, 1, 1.0, vec![]), other]).unwrap_err();
        assert!(e
            .to_string()
            .contains("faults (none) differs from sort-count-unclamped"));
        let mut other = shard(1, 1, 1.0, vec![]);
        other.1.shards[0].count = 4;
        let e = merge_summaries(&[shard(0, 1, 1.0, vec![]), other]).unwrap_err();
        assert!(
            e.to_string().contains("shard count 4 differs from 3"),
            "{e}"
        );
        let (p, s) = shard(0, 1, 1.0, vec![]);
        let e = merge_summaries(&[(p.clone(), s.clone()), ("again.json".into(), s)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "again.json: shard 0/3 is already in s0/summary.json"
        );
        assert!(matches!(merge_summaries(&[]), Err(MergeError::Empty)));
    }

    #[test]
    fn impossible_shards_and_overflowing_counts_are_refused() {
        for (index, count) in [(5, 2), (0, 0), (2, 2)] {
            let mut bad = shard(0, 1, 1.0, vec![]);
            bad.1.shards = vec![Shard { index, count }];
            let e = merge_summaries(&[bad]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("s0/summary.json: shard {index}/{count} is not a shard (expected I/N with 0 <= I < N)")
            );
        }
        let e = merge_summaries(&[shard(0, u64::MAX, 1.0, vec![]), shard(1, 1, 1.0, vec![])])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "s1/summary.json: cases overflows when added to the other summaries'"
        );
        let segv = "signal:SIGSEGV:sort_pairs";
        let e = merge_summaries(&[
            shard(0, 1, 1.0, vec![finding(segv, u64::MAX, (0.1, 0), None)]),
            shard(1, 1, 1.0, vec![finding(segv, 1, (0.1, 1), None)]),
        ])
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("count of signal:SIGSEGV:sort_pairs overflows"),
            "{e}"
        );
    }

    #[test]
    fn coverage_names_missing_shards() {
        let merged =
            merge_summaries(&[shard(0, 1, 1.0, vec![]), shard(2, 1, 1.0, vec![])]).unwrap();
        assert_eq!(
            coverage_line(2, &merged),
            "merged 2 summaries: shards 0/3, 2/3 (missing 1/3)\n"
        );
    }
}
