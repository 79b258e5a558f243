/*!
Campaigns: many generated cases through a pool of isolated workers, findings deduplicated by
signature and minimized, everything written to an output directory.

Roles, as in a test runner: worker threads each drive one [`WorkerSlot`] (a supervised worker
process) and never talk to the user; the coordinating thread hands out case indices, receives every
classified execution, keeps the findings, draws progress and decides when to stop (budget reached, or
Ctrl-C). Case `k` of a campaign is generated from `(seed, k)` alone, so a campaign is reproducible and
can be split into shards (`--shard i/n` runs the cases with `k % n == i`).
*/

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use forcefield::Fault;

use crate::artifacts::write_json;
use crate::case::generate::GenConfig;
use crate::case::minimize::{minimize, CaseSize, MinimizeLimits, MinimizeReport};
use crate::case::shrink::{generated_case, shrink_generated};
use crate::case::{BackendKind, Case};
use crate::client::batch;
use crate::client::signature::{Signature, Verdict};
use crate::hunt::campaign_dir::{CampaignDir, OutDirError, Record, JOURNAL_FORMAT};
use crate::hunt::time_split::{CaseTimes, TimeSplit};
use crate::hunt::watchdog::{watch, Attempt, CaseCost, Watchdog, WatchdogConfig, WatchdogReport};
use crate::isolate::{Execution, SupervisorConfig, WorkerCommand, WorkerSlot};
use crate::sanitizers::mode::SanitizeMode;

/// A shard of a campaign: cases with `k % count == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u64,
    /// Shards in all.
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a shard (expected I/N with 0 <= I < N, e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.parse::<u64>().map_err(|_| bad())?,
            n.parse::<u64>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// When a campaign stops generating cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// After this long.
    Time(Duration),
    /// After this many cases (of this shard).
    Cases(u64),
}

/// Everything a campaign needs.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    /// Backend of every case.
    pub backend: BackendKind,
    /// When to stop.
    pub budget: Budget,
    /// Campaign seed.
    pub seed: u64,
    /// Worker processes.
    pub jobs: usize,
    /// With CUDA: one worker per listed GPU (overrides `jobs`).
    pub gpus: Vec<u32>,
    /// Planted faults switched on in every case.
    pub faults: Vec<Fault>,
    /// This machine's shard.
    pub shard: Shard,
    /// Upper bound of the per-case watchdog (see [`crate::hunt::watchdog`]).
    pub case_deadline: Duration,
    /// Re-run each case under another growth policy.
    pub capacity_invariance: bool,
    /// Minimize new findings, with these limits.
    pub minimize: Option<MinimizeLimits>,
    /// How to start a worker (already under `sanitize`: see [`crate::client::sanitize_mode::worker_command`]).
    pub worker: WorkerCommand,
    /// The sanitizer the workers run under; it stretches the per-case deadline by its slowdown.
    pub sanitize: SanitizeMode,
    /// Generator settings.
    pub generator: GenConfig,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Cases each worker runs side by side in one request (`--cases-per-worker`; 1: one at a
    /// time). A worker that dies with cases of a batch unanswered has each of them run alone.
    pub cases_per_worker: usize,
    /// Whether a worker that uses no CPU time for a while is hung (the watchdog's idle check, on
    /// the CPU backend). Off when the work happens in another process than the worker: a worker
    /// hosting a `--target` program sleeps while its target computes.
    pub idle_check: bool,
    /// Against a target: who it is and the checks its capabilities skip, the start of the
    /// summary's `target` totals (`None`: Forcefield's own engine).
    pub target: Option<crate::hunt::target_totals::TargetTotals>,
}

impl CampaignConfig {
    /// The generator of every case: the settings with the campaign's faults and backend.
    pub fn case_generator(&self) -> GenConfig {
        GenConfig {
            faults: self.faults.clone(),
            backend: self.backend,
            ..self.generator.clone()
        }
    }
}

/// One distinct finding of a campaign.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finding {
    /// Its identity.
    pub signature: Signature,
    /// One line on the first occurrence.
    pub summary: String,
    /// Occurrences.
    pub count: u64,
    /// Index of the first case that showed it.
    pub first_case: u64,
    /// Seconds from the campaign's start to the first occurrence.
    pub seconds_to_first: f64,
    /// Size of the first case.
    pub case_size: CaseSize,
    /// Minimization, when done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimization: Option<MinimizeReport>,
    /// Seconds from the campaign's start until the finding was minimized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_minimized: Option<f64>,
    /// Other signatures of the same bug, merged into this finding after minimization
    /// ([`crate::hunt::dedup`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Signature>,
    /// Whether it reproduced and how far its minimization got.
    #[serde(flatten)]
    pub status: FindingStatus,
    /// The first failing case.
    #[serde(skip)]
    pub case: Option<Case>,
    /// Its minimized form.
    #[serde(skip)]
    pub minimized: Option<Case>,
    /// The first failing execution (stderr, breadcrumb).
    #[serde(skip)]
    pub execution: Option<Execution>,
}

/// How a finding stood up to re-running, and whether its minimization finished.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FindingStatus {
    /// Whether its minimization ran to its end within the campaign. `false` when it was not
    /// minimized (`--no-minimize`, never reproduced) or was cut short by the budget or a stop:
    /// `forcefield minimize findings/<id>/case.json` goes on from there.
    #[serde(default)]
    pub minimized: bool,
    /// Re-runs of its first case before minimization that gave the same signature, e.g. `0/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproduced: Option<Reproduction>,
    /// It did not reproduce every time (a worker killed from outside, a race): kept, and not
    /// minimized at length.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flaky: bool,
}

/// How many of a finding's re-runs gave its signature again, written `R/T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Reproduction {
    /// Re-runs with the same signature.
    pub reproduced: u32,
    /// Re-runs.
    pub tries: u32,
}

impl Reproduction {
    /// Whether some re-run did not give the signature.
    pub fn flaky(&self) -> bool {
        self.reproduced < self.tries
    }
}

impl std::fmt::Display for Reproduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.reproduced, self.tries)
    }
}

impl From<Reproduction> for String {
    fn from(r: Reproduction) -> String {
        r.to_string()
    }
}

impl TryFrom<String> for Reproduction {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a reproduction rate (expected R/T, e.g. 0/3)");
        let (r, t) = s.split_once('/').ok_or_else(bad)?;
        let (reproduced, tries) = (
            r.parse::<u32>().map_err(|_| bad())?,
            t.parse::<u32>().map_err(|_| bad())?,
        );
        if reproduced > tries {
            return Err(bad());
        }
        Ok(Reproduction { reproduced, tries })
    }
}

/// A campaign's wall clock against its budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WallClock {
    /// The `--time` budget in seconds (none with `--cases`).
    pub budget: Option<f64>,
    /// The per-case watchdog in seconds: a case or minimization run started before the budget
    /// ran out may end this much after it.
    pub case_timeout: f64,
    /// Seconds from the start to the end, minimization included (the summary's `seconds` counts
    /// the cases only: the rate line's time).
    pub seconds: f64,
}

/// The summary of a campaign (`summary.json`), mergeable across shards.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Always `forcefield-summary/1`.
    pub format: String,
    /// Backend.
    pub backend: BackendKind,
    /// Campaign seed.
    pub seed: u64,
    /// Shards this summary covers.
    pub shards: Vec<Shard>,
    /// Planted faults.
    pub faults: Vec<Fault>,
    /// Cases run.
    pub cases: u64,
    /// Cases that could not run here.
    pub environment_errors: u64,
    /// Seconds of running cases (the rate line's time; minimization after the cases is in `wall`).
    pub seconds: f64,
    /// Whether a stop (Ctrl-C, SIGTERM, SIGHUP, a write error) cut it short, or it has not ended:
    /// summaries written while a campaign runs say `true` until the last one.
    pub interrupted: bool,
    /// Distinct findings, by signature.
    pub findings: Vec<Finding>,
    /// The first environment error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_message: Option<String>,
    /// Injected faults (`inject` ops) in the cases run, by kind (`fail-alloc`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub injections: BTreeMap<String, u64>,
    /// The slowest cases run, slowest first (at most [`SLOWEST_KEPT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slowest: Vec<SlowCase>,
    /// The wall clock against the budget (campaigns written since durable output directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall: Option<WallClock>,
    /// How the per-case limits were set, and what the watchdog did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<WatchdogReport>,
    /// Where the time went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeSplit>,
    /// Against a target: its checks and skipped ops over the campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::hunt::target_totals::TargetTotals>,
}

/// One of a campaign's slowest cases: what to look at when choosing `--case-timeout`, or when a
/// generator change makes cases slow rather than interesting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowCase {
    /// The case's index in the campaign (its seed is `case_seed(seed, case)`).
    pub case: u64,
    /// Wall-clock seconds from sending it to a worker to its verdict, resumes included.
    pub seconds: f64,
    /// Its size.
    pub size: CaseSize,
}

/// How many of the slowest cases a summary keeps.
pub const SLOWEST_KEPT: usize = 5;

/// Adds `case` to `slowest`, keeping the [`SLOWEST_KEPT`] slowest, slowest first (ties: lower
/// index first, so that merged shards give the same list in any order).
pub fn keep_slowest(slowest: &mut Vec<SlowCase>, case: SlowCase) {
    slowest.push(case);
    slowest.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.case.cmp(&b.case)));
    slowest.truncate(SLOWEST_KEPT);
}

impl Summary {
    /// Cases per second.
    pub fn cases_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.cases as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// A markdown table of the findings.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "{} cases in {:.1} s ({:.1}/s) on {}, seed {}{}: {} distinct finding(s)\n",
            self.cases,
            self.seconds,
            self.cases_per_second(),
            match &self.target {
                Some(t) => format!("target {}", t.name),
                None => self.backend.name().to_string(),
            },
            self.seed,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
            self.findings.len()
        );
        if let Some(target) = &self.target {
            s.push_str(&target.markdown());
        }
        if !self.injections.is_empty() {
            let kinds: Vec<String> = self
                .injections
                .iter()
                .map(|(kind, n)| format!("{kind}: {n}"))
                .collect();
            s.push_str(&format!("injections: {{{}}}\n", kinds.join(", ")));
        }
        if let Some(slow) = self.slowest.first() {
            s.push_str(&format!(
                "slowest case: #{} in {:.1} s ({})\n",
                slow.case, slow.seconds, slow.size
            ));
        }
        if let Some(watchdog) = &self.watchdog {
            s.push_str(&watchdog.line());
            s.push('\n');
        }
        if let Some(time) = &self.time {
            s.push_str(&time.lines());
        }
        if !self.findings.is_empty() {
            s.push_str(
                "\n| signature | count | first (s) | case | minimized |\n|---|---|---|---|---|\n",
            );
            for f in &self.findings {
                let mut min = f
                    .minimization
                    .as_ref()
                    .map_or("-".to_string(), |m| m.after.to_string());
                if f.minimization.is_some() && !f.status.minimized {
                    min.push_str(" (cut short)");
                }
                if let (true, Some(r)) = (f.status.flaky, f.status.reproduced) {
                    min = format!("{min}; flaky: reproduced {r}");
                }
                s.push_str(&format!(
                    "| `{}` | {} | {:.2} | {} | {} |\n",
                    f.signature, f.count, f.seconds_to_first, f.case_size, min
                ));
            }
        }
        s
    }
}

/// The seed of case `k` of a campaign.
pub fn case_seed(campaign_seed: u64, k: u64) -> u64 {
    forcefield::hash::mix3(campaign_seed, k, 0x636173)
}

// Running one case in a worker is the client's; re-exported because campaigns and their users
// reach it here.
pub use crate::client::run::{case_payload, run_isolated};

/// Longest watchdog while minimizing a hang: equal to the watchdog's confirmation floor
/// ([`crate::hunt::watchdog::CONFIRM_FLOOR`]), the limit a small case's hang is confirmed under.
pub const HANG_MINIMIZE_DEADLINE: Duration = Duration::from_secs(2);

/// The watchdog for reproducing `signature` while minimizing.
fn minimize_deadline(signature: &Signature, deadline: Duration) -> Duration {
    if signature.class == "hang" {
        deadline.min(HANG_MINIMIZE_DEADLINE)
    } else {
        deadline
    }
}

/// Minimizes `case` through `slot`, keeping only candidates with the same `signature`.
pub fn minimize_isolated(
    slot: &mut WorkerSlot,
    case: &Case,
    signature: &Signature,
    capacity_invariance: bool,
    deadline: Duration,
    limits: MinimizeLimits,
    stop: &AtomicBool,
) -> (Case, MinimizeReport) {
    // A hang costs the whole deadline on every candidate; the cases being minimized run in
    // milliseconds, so a shorter watchdog keeps hang minimization fast without mistaking a slow
    // candidate for a hang.
    let deadline = minimize_deadline(signature, deadline);
    let mut test = |candidate: &Case| {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let (verdict, _) = run_isolated(slot, candidate, capacity_invariance, deadline);
        verdict.signature() == Some(signature)
    };
    minimize(case, limits, &mut test)
}

/// How a generated finding is minimized: the settings of [`minimize_generated`].
pub struct FindingMinimizer<'a> {
    /// The generator the case came from (faults and backend included): proptest's shrinking
    /// re-draws the case from its seed with it.
    pub generator: &'a GenConfig,
    /// Whether candidates are re-run at a larger capacity, as in the campaign.
    pub capacity_invariance: bool,
    /// The campaign's watchdog: each candidate runs once under its confirmation limit (at most
    /// [`HANG_MINIMIZE_DEADLINE`] for a hang).
    pub watchdog: &'a Watchdog,
    /// Runs and time for both phases together.
    pub limits: MinimizeLimits,
    /// Set by Ctrl-C: every candidate then counts as not reproducing, and minimization ends.
    pub stop: &'a AtomicBool,
}

/// Minimizes a generated finding: first proptest's shrinking over the generator's structure
/// (half the limits), then delta debugging over what it left; every candidate runs in a worker of
/// `slot` and is kept only when it gives `signature` again. The report covers both phases: sizes
/// from `case`, runs and seconds of both.
pub fn minimize_generated(
    slot: &mut WorkerSlot,
    case: &Case,
    signature: &Signature,
    how: &FindingMinimizer<'_>,
) -> (Case, MinimizeReport) {
    let started = Instant::now();
    // A candidate runs once, so it gets the confirmation limit (a candidate that only hangs
    // under the short one is not kept as a hang), cut to the short hang watchdog for a hang.
    let limit = |c: &Case| {
        let adaptive = how
            .watchdog
            .limit_for(CaseCost::of(c, how.capacity_invariance));
        let generous = how
            .watchdog
            .confirm_limit(&adaptive)
            .unwrap_or(adaptive.limit);
        minimize_deadline(signature, generous)
    };
    let mut same = |c: &Case| {
        !how.stop.load(Ordering::Relaxed)
            && run_isolated(slot, c, how.capacity_invariance, limit(c))
                .0
                .signature()
                == Some(signature)
    };
    let (shrunk, shrink_runs) = shrink_generated(
        case.seed,
        how.generator,
        how.limits.max_runs / 2,
        how.limits.max_time / 2,
        &mut same,
    )
    .unwrap_or_else(|| (case.clone(), 0));
    let (small, mut report) = minimize(&shrunk, how.limits, &mut same);
    report.before = CaseSize::of(case);
    report.runs += shrink_runs;
    report.seconds = started.elapsed().as_secs_f64();
    (small, report)
}

/// One generated case's run, as a worker thread reports it.
pub(crate) struct Outcome {
    /// The case's index in the campaign.
    pub index: u64,
    pub case: Case,
    pub verdict: Verdict,
    pub execution: Option<Execution>,
    /// Wall-clock seconds from sending it to a worker to its verdict, resumes and the
    /// watchdog's confirmation included.
    pub seconds: f64,
    /// Where its thread's time went.
    pub times: CaseTimes,
}

/// What the case-running threads of a campaign or a self-test hunt share.
pub(crate) struct CaseFeed {
    /// Cases `case_seed(seed, k * shard.count + shard.index)` for k = 0, 1, ...
    pub seed: u64,
    pub shard: Shard,
    /// Their generator (faults and backend included).
    pub generator: GenConfig,
    pub capacity_invariance: bool,
    /// Sets each case's limit and confirms hangs; learns from every case of every thread.
    pub watchdog: Arc<Watchdog>,
    /// No thread starts a case number `k` at or above this; the caller may lower it while they run
    /// (a self-test hunt does at its first finding).
    pub limit: Arc<AtomicU64>,
    /// Set by the caller (budget spent, Ctrl-C): threads take no new case.
    pub stop: Arc<AtomicBool>,
    /// Cases a worker runs side by side in one request (1: one at a time, as before batches).
    pub cases_per_worker: usize,
}

/// Starts one thread per worker command, each driving one isolated worker through the cases of
/// `feed`, taken [`CaseFeed::cases_per_worker`] at a time; each outcome goes to the returned
/// channel, a batch's in case order. A thread ends at the limit, at `stop`, when the channel
/// closes, or after an environment error (its worker cannot run cases). Join the threads after
/// the channel disconnects.
pub(crate) fn start_case_threads(
    commands: Vec<WorkerCommand>,
    feed: CaseFeed,
) -> (mpsc::Receiver<Outcome>, Vec<std::thread::JoinHandle<()>>) {
    let feed = Arc::new(feed);
    let next = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<Outcome>();
    let threads = commands
        .into_iter()
        .map(|command| {
            let (tx, next, feed) = (tx.clone(), Arc::clone(&next), Arc::clone(&feed));
            std::thread::spawn(move || {
                // The slot lives on this thread: workers die with the thread that started them.
                let mut slot = WorkerSlot::new(command, SupervisorConfig::default())
                    .with_idle_limit(feed.watchdog.config().idle_limit);
                let per_worker = feed.cases_per_worker.max(1) as u64;
                while !feed.stop.load(Ordering::Relaxed) {
                    let first = next.fetch_add(per_worker, Ordering::Relaxed);
                    let end = first
                        .saturating_add(per_worker)
                        .min(feed.limit.load(Ordering::Relaxed));
                    if first >= end {
                        break;
                    }
                    let mut cases = Vec::new();
                    for k in first..end {
                        let index = k * feed.shard.count + feed.shard.index;
                        let generating = Instant::now();
                        if let Some(case) =
                            generated_case(case_seed(feed.seed, index), &feed.generator)
                        {
                            cases.push((index, case, generating.elapsed().as_secs_f64()));
                        }
                    }
                    let outcomes = if cases.len() == 1 {
                        cases
                            .pop()
                            .map(|(index, case, generate)| {
                                vec![run_watched(&mut slot, &feed, index, case, generate, 0.0)]
                            })
                            .unwrap_or_default()
                    } else {
                        run_side_by_side(&mut slot, &feed, cases)
                    };
                    let mut stop = false;
                    for outcome in outcomes {
                        let environment = matches!(outcome.verdict, Verdict::Environment { .. });
                        if tx.send(outcome).is_err() || environment {
                            stop = true;
                            break;
                        }
                    }
                    if stop {
                        break;
                    }
                }
                slot.shutdown();
            })
        })
        .collect();
    (rx, threads)
}

/// Runs one case alone under the watchdog (with its confirmation re-run); `lost` is its share of
/// a batch that died before answering it.
fn run_watched(
    slot: &mut WorkerSlot,
    feed: &CaseFeed,
    index: u64,
    case: Case,
    generate: f64,
    lost: f64,
) -> Outcome {
    let began = Instant::now();
    let mut run = |limit: Duration| {
        let began = Instant::now();
        let (verdict, execution) = run_isolated(slot, &case, feed.capacity_invariance, limit);
        let seconds = began.elapsed().as_secs_f64();
        Attempt {
            verdict,
            execution,
            seconds,
        }
    };
    let watched = watch(&feed.watchdog, &case, feed.capacity_invariance, &mut run);
    let seconds = began.elapsed().as_secs_f64();
    let confirm = watched
        .confirmation
        .map_or(0.0, |_| watched.attempt.seconds);
    // After a confirmation the worker's reply is the re-run's.
    let reply = match watched.confirmation {
        Some(_) => None,
        None => watched.attempt.execution.as_ref(),
    };
    let times = CaseTimes {
        generate,
        round_trip: seconds - confirm,
        worker: reply.and_then(batch::worker_seconds),
        confirm,
        capacity_rerun: reply.and_then(batch::capacity_rerun_seconds),
        lost,
    };
    let Attempt {
        verdict, execution, ..
    } = watched.attempt;
    Outcome {
        index,
        case,
        verdict,
        execution,
        seconds: seconds + lost,
        times,
    }
}

/// Runs `cases` side by side in one request of `slot`'s worker as a campaign's thread does under
/// `--cases-per-worker`, limits and confirmations from `watchdog`: each case's verdict and
/// execution, in order. A case the batch answered has its own reply's verdict; when the worker
/// died, every case's is that of its run alone.
pub fn run_side_by_side_watched(
    slot: &mut WorkerSlot,
    watchdog: Arc<Watchdog>,
    cases: Vec<Case>,
    capacity_invariance: bool,
) -> Vec<(Verdict, Option<Execution>)> {
    let feed = CaseFeed {
        seed: 0,
        shard: Shard::default(),
        generator: GenConfig::default(),
        capacity_invariance,
        watchdog,
        limit: Arc::new(AtomicU64::new(u64::MAX)),
        stop: Arc::new(AtomicBool::new(false)),
        cases_per_worker: cases.len(),
    };
    let indexed = cases
        .into_iter()
        .enumerate()
        .map(|(i, case)| (i as u64, case, 0.0))
        .collect();
    run_side_by_side(slot, &feed, indexed)
        .into_iter()
        .map(|o| (o.verdict, o.execution))
        .collect()
}

/// Runs `cases` (index, case, seconds to generate it) side by side in one request of `slot`'s
/// worker, under the batch's limit ([`Watchdog::batch_deadline`]); the answered ones are their own outcomes (a passing
/// one teaches the watchdog its time on its thread), every other one runs alone under the
/// watchdog — all of them when the worker died, so that no death is pinned on the wrong case.
fn run_side_by_side(
    slot: &mut WorkerSlot,
    feed: &CaseFeed,
    cases: Vec<(u64, Case, f64)>,
) -> Vec<Outcome> {
    let plain: Vec<Case> = cases.iter().map(|(_, case, _)| case.clone()).collect();
    let Some(deadline) = feed
        .watchdog
        .batch_deadline(&plain, feed.capacity_invariance)
    else {
        return Vec::new();
    };
    let began = Instant::now();
    let run = batch::run_batch(slot, &plain, feed.capacity_invariance, deadline.limit);
    let round_trip = began.elapsed().as_secs_f64();
    let share = round_trip / cases.len() as f64;
    match run {
        batch::BatchRun::Answered {
            cases: answers,
            worker_seconds,
        } => {
            let worker_share = worker_seconds.map(|w| w / cases.len() as f64);
            cases
                .into_iter()
                .zip(answers)
                .map(|((index, case, generate), answer)| match answer {
                    Some(answer) => {
                        let seconds = answer.worker_seconds.unwrap_or(share);
                        if matches!(answer.verdict, Verdict::Pass) {
                            feed.watchdog
                                .observe(CaseCost::of(&case, feed.capacity_invariance), seconds);
                        }
                        Outcome {
                            index,
                            case,
                            verdict: answer.verdict,
                            execution: Some(answer.execution),
                            seconds,
                            times: CaseTimes {
                                generate,
                                round_trip: share,
                                worker: worker_share,
                                confirm: 0.0,
                                capacity_rerun: answer.capacity_rerun_seconds,
                                lost: 0.0,
                            },
                        }
                    }
                    // Its process was poisoned, or its reply not understood: alone, from the start.
                    None => {
                        let mut alone = run_watched(slot, feed, index, case, generate, 0.0);
                        alone.times.round_trip += share;
                        alone.times.worker =
                            alone.times.worker.map(|w| w + worker_share.unwrap_or(0.0));
                        alone
                    }
                })
                .collect()
        }
        batch::BatchRun::Died { .. } => cases
            .into_iter()
            .map(|(index, case, generate)| run_watched(slot, feed, index, case, generate, share))
            .collect(),
        batch::BatchRun::Environment { message } => cases
            .into_iter()
            .map(|(index, case, generate)| Outcome {
                index,
                case,
                verdict: Verdict::Environment {
                    message: message.clone(),
                },
                execution: None,
                seconds: share,
                times: CaseTimes {
                    generate,
                    round_trip: share,
                    ..CaseTimes::default()
                },
            })
            .collect(),
    }
}

/// Re-runs of a finding before it is minimized, by default.
pub const REPRODUCE_TRIES: u32 = 3;

/// How often `summary.json` is rewritten while nothing new happens.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(2);

/// Where and how a campaign records itself as it runs (see [`run_campaign_into`]).
#[derive(Debug)]
pub struct Recording<'a> {
    /// The output directory, locked; `None`: nothing written while running.
    pub out: Option<&'a mut CampaignDir>,
    /// Re-runs of each finding's first case before minimizing it (0: none).
    pub reproduce_tries: u32,
}

impl Default for Recording<'_> {
    fn default() -> Self {
        Recording {
            out: None,
            reproduce_tries: REPRODUCE_TRIES,
        }
    }
}

/// How a campaign ended.
#[derive(Debug)]
pub struct CampaignEnd {
    /// Its summary (also in `summary.json` when it was recorded).
    pub summary: Summary,
    /// The write error that stopped it, if one did; what was written before it is whole.
    pub write_error: Option<OutDirError>,
}

/// Runs a campaign until its budget is spent or `interrupt` is set (Ctrl-C), minimizing findings
/// as they come. Never panics on worker trouble: a worker that cannot start is an environment
/// error in the summary. Nothing is written; see [`run_campaign_into`].
pub fn run_campaign(config: &CampaignConfig, interrupt: Arc<AtomicBool>) -> Summary {
    run_campaign_into(config, interrupt, Recording::default()).summary
}

/// What the minimizing thread reports.
enum MinimizerEvent {
    /// A finding's re-runs.
    Reproduced {
        signature: Signature,
        reproduced: Reproduction,
    },
    /// A finding's minimization ended.
    Minimized {
        signature: Signature,
        case: Box<Case>,
        report: MinimizeReport,
        complete: bool,
    },
}

/// Starts the thread that re-runs and minimizes each finding sent to it, in its own worker, while
/// the cases go on. It stops working when `stop` is set (the budget, a stop, a write error): a
/// minimization then ends with what it has, and re-runs cut short give no verdict.
fn start_minimizer(
    config: &CampaignConfig,
    limits: MinimizeLimits,
    tries: u32,
    watchdog: Arc<Watchdog>,
    stop: Arc<AtomicBool>,
    interrupt: Arc<AtomicBool>,
) -> (
    mpsc::Sender<(Signature, Case)>,
    mpsc::Receiver<MinimizerEvent>,
    std::thread::JoinHandle<()>,
) {
    let (job_tx, job_rx) = mpsc::channel::<(Signature, Case)>();
    let (event_tx, event_rx) = mpsc::channel();
    let config = config.clone();
    let thread = std::thread::spawn(move || {
        let mut slot = WorkerSlot::new(config.worker.clone(), SupervisorConfig::default())
            .with_idle_limit(watchdog.config().idle_limit);
        let generator = config.case_generator();
        // A run that a stop cut short (its worker killed by a forced stop) says nothing.
        let stopped = || stop.load(Ordering::SeqCst) || interrupt.load(Ordering::SeqCst);
        for (signature, case) in job_rx {
            if stopped() {
                continue;
            }
            let deadline = minimize_deadline(&signature, config.case_deadline);
            let mut reproduced = Reproduction {
                reproduced: 0,
                tries: 0,
            };
            while reproduced.tries < tries && !stopped() {
                let (verdict, _) =
                    run_isolated(&mut slot, &case, config.capacity_invariance, deadline);
                if stopped() {
                    break;
                }
                reproduced.tries += 1;
                reproduced.reproduced += u32::from(verdict.signature() == Some(&signature));
            }
            if reproduced.tries < tries {
                continue;
            }
            if tries > 0 {
                let event = MinimizerEvent::Reproduced {
                    signature: signature.clone(),
                    reproduced,
                };
                if event_tx.send(event).is_err() {
                    break;
                }
                if reproduced.reproduced == 0 {
                    continue;
                }
            }
            // A finding that does not always reproduce rejects good candidates at random: a
            // tenth of the budget finds what it can without spending the campaign on it.
            let limits = if reproduced.flaky() {
                MinimizeLimits {
                    max_runs: limits.max_runs / 10,
                    max_time: limits.max_time / 10,
                }
            } else {
                limits
            };
            let how = FindingMinimizer {
                generator: &generator,
                capacity_invariance: config.capacity_invariance,
                watchdog: &watchdog,
                limits,
                stop: &stop,
            };
            let (small, report) = minimize_generated(&mut slot, &case, &signature, &how);
            let event = MinimizerEvent::Minimized {
                signature,
                case: Box::new(small),
                report,
                complete: !stopped(),
            };
            if event_tx.send(event).is_err() {
                break;
            }
        }
        slot.shutdown();
    });
    (job_tx, event_rx, thread)
}

/// What a campaign has seen so far.
#[derive(Default)]
struct Tally {
    findings: BTreeMap<Signature, Finding>,
    cases: u64,
    environment_errors: u64,
    environment_message: Option<String>,
    injections: BTreeMap<String, u64>,
    slowest: Vec<SlowCase>,
    /// Where the case threads' time went.
    time: Option<TimeSplit>,
    /// How the case limits were set, filled in at the end.
    watchdog: Option<WatchdogReport>,
    /// Against a target: its totals so far.
    target: Option<crate::hunt::target_totals::TargetTotals>,
}

impl Tally {
    /// Counts `outcome`; returns the finding when it is a new one.
    fn add(&mut self, outcome: Outcome, seconds: f64) -> Option<&Finding> {
        self.cases += 1;
        keep_slowest(
            &mut self.slowest,
            SlowCase {
                case: outcome.index,
                seconds: outcome.seconds,
                size: CaseSize::of(&outcome.case),
            },
        );
        if let Some(target) = self.target.as_mut() {
            target.add_execution(outcome.execution.as_ref());
        }
        for op in &outcome.case.ops {
            if let crate::case::Op::Inject { fault } = op {
                *self.injections.entry(fault.kind().to_string()).or_default() += 1;
            }
        }
        match outcome.verdict {
            Verdict::Pass => None,
            Verdict::Environment { message } => {
                self.environment_errors += 1;
                self.environment_message.get_or_insert(message);
                None
            }
            Verdict::Finding { signature, summary } => {
                let new = !self.findings.contains_key(&signature);
                let entry = self
                    .findings
                    .entry(signature.clone())
                    .or_insert_with(|| Finding {
                        signature,
                        summary,
                        count: 0,
                        first_case: outcome.index,
                        seconds_to_first: seconds,
                        case_size: CaseSize::of(&outcome.case),
                        minimization: None,
                        seconds_to_minimized: None,
                        aliases: Vec::new(),
                        status: FindingStatus::default(),
                        case: Some(outcome.case),
                        minimized: None,
                        execution: outcome.execution,
                    });
                entry.count += 1;
                new.then_some(&*entry)
            }
        }
    }

    /// The counters as a journal record.
    fn progress(&self, seconds: f64) -> Record {
        Record::Progress {
            seconds,
            cases: self.cases,
            environment_errors: self.environment_errors,
            environment_message: self.environment_message.clone(),
            counts: self
                .findings
                .iter()
                .map(|(s, f)| (s.clone(), f.count))
                .collect(),
            injections: self.injections.clone(),
            slowest: self.slowest.clone(),
            target: self.target.clone(),
        }
    }

    fn summary(
        &self,
        config: &CampaignConfig,
        seconds: f64,
        interrupted: bool,
        wall: WallClock,
    ) -> Summary {
        Summary {
            format: SUMMARY_FORMAT.to_string(),
            backend: config.backend,
            seed: config.seed,
            shards: vec![config.shard],
            faults: config.faults.clone(),
            cases: self.cases,
            environment_errors: self.environment_errors,
            seconds,
            interrupted,
            findings: self.findings.values().cloned().collect(),
            environment_message: self.environment_message.clone(),
            injections: self.injections.clone(),
            slowest: self.slowest.clone(),
            wall: Some(wall),
            watchdog: self.watchdog.clone(),
            time: self.time.clone(),
            target: self.target.clone(),
        }
    }
}

/// The output directory while the campaign runs: the first write error is kept and ends all
/// writing (and the campaign), so what is on disk stays whole.
struct Writer<'a> {
    out: Option<&'a mut CampaignDir>,
    error: Option<OutDirError>,
}

impl Writer<'_> {
    fn with(&mut self, f: impl FnOnce(&mut CampaignDir) -> Result<(), OutDirError>) {
        if self.error.is_some() {
            return;
        }
        if let Some(out) = self.out.as_deref_mut() {
            if let Err(e) = f(out) {
                self.error = Some(e);
            }
        }
    }
}

/// Runs a campaign like [`run_campaign`], recording it in `recording.out` as it goes (see
/// [`crate::hunt::campaign_dir`]): each new finding's files, then a journal record, then the summary,
/// as soon as it is classified; the summary again after each re-run and minimization and every
/// [`SUMMARY_INTERVAL`]; the final summary at the end.
///
/// Each finding's first case is re-run `recording.reproduce_tries` times and minimized, in a
/// worker of its own while the cases go on; one that never reproduces is not minimized, one that
/// reproduces only sometimes is `flaky` and gets a tenth of the minimization budget. With a time
/// budget everything stops when it is spent: a case or minimization run in flight may end up to
/// one case timeout later; findings whose minimization did not finish say `"minimized": false`.
///
/// A forced stop ([`crate::interrupt::forced`]: SIGTERM, SIGHUP, a second Ctrl-C) has killed the
/// workers: what they were running is discarded, the rest is written. A write error stops the
/// campaign the same way (without killing anything) and is returned with the summary.
pub fn run_campaign_into(
    config: &CampaignConfig,
    interrupt: Arc<AtomicBool>,
    recording: Recording<'_>,
) -> CampaignEnd {
    let start = Instant::now();
    // A sanitizer's slowdown is not a hang.
    let config = &CampaignConfig {
        case_deadline: config
            .case_deadline
            .saturating_mul(config.sanitize.deadline_factor()),
        ..config.clone()
    };
    let time_budget = match config.budget {
        Budget::Time(limit) => Some(limit),
        Budget::Cases(_) => None,
    };
    let wall = |seconds: f64| WallClock {
        budget: time_budget.map(|t| t.as_secs_f64()),
        case_timeout: config.case_deadline.as_secs_f64(),
        seconds,
    };
    let mut writer = Writer {
        out: recording.out,
        error: None,
    };
    let found_by = writer
        .out
        .as_deref()
        .map(|o| o.found_by().to_string())
        .unwrap_or_default();
    writer.with(|out| {
        out.append(&Record::Start {
            format: JOURNAL_FORMAT.to_string(),
            backend: config.backend,
            seed: config.seed,
            shards: vec![config.shard],
            faults: config.faults.clone(),
            found_by,
            wall: wall(0.0),
        })
    });

    // Set by the budget, a stop or a write error; workers stop taking cases when it is.
    let stop = Arc::new(AtomicBool::new(false));
    let commands: Vec<WorkerCommand> =
        if config.backend == BackendKind::Cuda && !config.gpus.is_empty() {
            config
                .gpus
                .iter()
                .map(|g| {
                    config
                        .worker
                        .clone()
                        .env("CUDA_VISIBLE_DEVICES", g.to_string())
                })
                .collect()
        } else {
            vec![config.worker.clone(); config.jobs.max(1)]
        };
    let workers = commands.len();
    let mut watchdog = campaign_watchdog(config.backend, config.case_deadline, config.sanitize);
    if !config.idle_check {
        watchdog = Watchdog::new(WatchdogConfig {
            idle_limit: None,
            ..watchdog.config().clone()
        });
    }
    let watchdog = Arc::new(watchdog);
    let (rx, threads) = start_case_threads(
        commands,
        CaseFeed {
            seed: config.seed,
            shard: config.shard,
            generator: config.case_generator(),
            capacity_invariance: config.capacity_invariance,
            watchdog: Arc::clone(&watchdog),
            limit: Arc::new(AtomicU64::new(match config.budget {
                Budget::Cases(n) => n,
                Budget::Time(_) => u64::MAX,
            })),
            stop: Arc::clone(&stop),
            cases_per_worker: config.cases_per_worker,
        },
    );
    // Set when the minimizer must stop: the budget, a stop, a write error.
    let minimizer_stop = Arc::new(AtomicBool::new(false));
    let mut minimizer = config.minimize.map(|limits| {
        start_minimizer(
            config,
            limits,
            recording.reproduce_tries,
            Arc::clone(&watchdog),
            Arc::clone(&minimizer_stop),
            Arc::clone(&interrupt),
        )
    });

    let bar = progress_bar(config);
    let mut tally = Tally {
        time: Some(TimeSplit::new(workers)),
        target: config.target.clone(),
        ..Tally::default()
    };
    let mut case_seconds: Option<f64> = None;
    let mut last_summary = Instant::now();
    let mut killed_again = false;
    loop {
        let over_time = time_budget.is_some_and(|limit| start.elapsed() >= limit);
        let stopping = interrupt.load(Ordering::SeqCst) || writer.error.is_some();
        if over_time || stopping {
            stop.store(true, Ordering::SeqCst);
            minimizer_stop.store(true, Ordering::SeqCst);
        }
        if crate::interrupt::forced() && !killed_again {
            // A worker started between the stop and the kill escaped it.
            killed_again = true;
            crate::interrupt::kill_registered_groups();
        }
        let mut changed = false;
        if case_seconds.is_none() {
            match rx.recv_timeout(Duration::from_millis(100)) {
                // Killed by a forced stop: no verdict.
                Ok(_) if crate::interrupt::forced() => {}
                Ok(outcome) => {
                    let seconds = start.elapsed().as_secs_f64();
                    if let Some(time) = tally.time.as_mut() {
                        time.add(outcome.times);
                    }
                    if let Some(f) = tally.add(outcome, seconds) {
                        bar.println(format!("finding: {}: {}", f.signature, f.summary));
                        let seed = config.seed;
                        writer.with(|out| {
                            out.write_finding(f, seed)?;
                            out.append(&Record::Finding {
                                finding: Box::new(f.clone()),
                            })
                        });
                        if let (Some((jobs, _, _)), Some(case)) = (&minimizer, &f.case) {
                            let _ = jobs.send((f.signature.clone(), case.clone()));
                        }
                        changed = true;
                    }
                    bar.set_position(tally.cases);
                    bar.set_message(format!("{} finding(s)", tally.findings.len()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    case_seconds = Some(start.elapsed().as_secs_f64());
                    // No more findings: the minimizer ends when its queue is done.
                    if let Some((jobs, events, thread)) = minimizer.take() {
                        drop(jobs);
                        minimizer = Some((mpsc::channel().0, events, thread));
                    }
                }
            }
        } else if minimizer.is_none() {
            break;
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut minimizer_done = false;
        if let Some((_, events, _)) = &minimizer {
            loop {
                let event = match events.try_recv() {
                    Ok(event) => event,
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        minimizer_done = true;
                        break;
                    }
                };
                if apply(&mut tally, &mut writer, event, config.seed, &start) {
                    changed = true;
                }
            }
        }
        if minimizer_done && case_seconds.is_some() {
            minimizer = None;
        }
        if changed || last_summary.elapsed() >= SUMMARY_INTERVAL {
            last_summary = Instant::now();
            let seconds = case_seconds.unwrap_or_else(|| start.elapsed().as_secs_f64());
            let snapshot =
                tally.summary(config, seconds, true, wall(start.elapsed().as_secs_f64()));
            let progress = tally.progress(seconds);
            writer.with(|out| {
                out.append(&progress)?;
                out.write_summary(&snapshot)
            });
        }
    }
    for t in threads {
        let _ = t.join();
    }
    bar.finish_and_clear();

    let seconds = case_seconds.unwrap_or_else(|| start.elapsed().as_secs_f64());
    let interrupted = interrupt.load(Ordering::SeqCst) || writer.error.is_some();
    // One bug, one finding: merge those whose minimized cases show they are the same — only with
    // budget left, since it re-runs each minimized case once.
    let budget_left = time_budget.is_none_or(|limit| start.elapsed() < limit);
    if let Some(limits) = config.minimize.filter(|_| !interrupted && budget_left) {
        if tally.findings.len() > 1 {
            let mut slot = WorkerSlot::new(config.worker.clone(), SupervisorConfig::default());
            let generator = config.case_generator();
            let how = FindingMinimizer {
                generator: &generator,
                capacity_invariance: config.capacity_invariance,
                watchdog: &watchdog,
                limits,
                stop: &interrupt,
            };
            let list = std::mem::take(&mut tally.findings).into_values().collect();
            let merged = crate::hunt::dedup::rerun_and_merge(list, &mut slot, &how);
            tally.findings = merged
                .into_iter()
                .map(|f| (f.signature.clone(), f))
                .collect();
            slot.shutdown();
        }
    }
    tally.watchdog = Some(watchdog.report());
    if let Some(time) = tally.time.as_mut() {
        time.case_phase_seconds = seconds;
        // The minimizer runs beside the cases: its own seconds, not the wall clock's.
        time.minimization_seconds = tally
            .findings
            .values()
            .filter_map(|f| f.minimization.as_ref())
            .map(|m| m.seconds)
            .sum::<f64>()
            // An empty float sum is -0.0.
            .abs();
    }
    let summary = tally.summary(
        config,
        seconds,
        interrupted,
        wall(start.elapsed().as_secs_f64()),
    );
    writer.with(|out| {
        out.append(&Record::End {
            summary: Box::new(summary.clone()),
        })?;
        out.write_summary(&summary)
    });
    CampaignEnd {
        summary,
        write_error: writer.error,
    }
}

/// Applies a minimizer's event to the tally and records it; whether anything changed.
fn apply(
    tally: &mut Tally,
    writer: &mut Writer<'_>,
    event: MinimizerEvent,
    seed: u64,
    start: &Instant,
) -> bool {
    match event {
        MinimizerEvent::Reproduced {
            signature,
            reproduced,
        } => {
            let Some(f) = tally.findings.get_mut(&signature) else {
                return false;
            };
            f.status.reproduced = Some(reproduced);
            f.status.flaky = reproduced.flaky();
            if f.status.flaky {
                eprintln!("{signature}: flaky, reproduced {reproduced}");
            }
            writer.with(|out| {
                out.append(&Record::Reproduced {
                    signature,
                    reproduced,
                })
            });
        }
        MinimizerEvent::Minimized {
            signature,
            case,
            report,
            complete,
        } => {
            // A forced stop killed the last candidate: what was accepted before still holds.
            let Some(f) = tally.findings.get_mut(&signature) else {
                return false;
            };
            eprintln!(
                "minimized {signature}: {} -> {} in {:.1} s ({} runs{})",
                report.before,
                report.after,
                report.seconds,
                report.runs,
                if complete { "" } else { ", cut short" }
            );
            let at = start.elapsed().as_secs_f64();
            f.minimized = Some(*case);
            f.minimization = Some(report.clone());
            f.seconds_to_minimized = Some(at);
            f.status.minimized = complete;
            let f = &*f;
            writer.with(|out| {
                out.write_finding(f, seed)?;
                out.append(&Record::Minimized {
                    signature,
                    minimization: report,
                    seconds_to_minimized: at,
                    complete,
                })
            });
        }
    }
    true
}

/// The watchdog of a campaign's cases: adaptive limits under `upper_bound` (`--case-timeout`,
/// already stretched by the sanitizer's slowdown), the adaptive ones stretched by it too.
pub(crate) fn campaign_watchdog(
    backend: BackendKind,
    upper_bound: Duration,
    sanitize: SanitizeMode,
) -> Watchdog {
    Watchdog::new(WatchdogConfig::for_backend(
        backend,
        upper_bound,
        sanitize.deadline_factor(),
    ))
}

/// The summary format string.
pub const SUMMARY_FORMAT: &str = "forcefield-summary/1";

fn progress_bar(config: &CampaignConfig) -> indicatif::ProgressBar {
    if !config.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match config.budget {
        Budget::Cases(n) => indicatif::ProgressBar::new(n),
        Budget::Time(_) => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {pos} cases ({per_sec}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Writes `summary.json` and `findings/<signature-id>/{case.json, minimized.json, report.json,
/// stderr.txt}` under `dir`, each file atomically. `found_by` is the command line that ran the
/// campaign, recorded in each case's provenance.
pub fn write_outputs(
    dir: &Path,
    summary: &Summary,
    found_by: &str,
) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for f in &summary.findings {
        let files = crate::hunt::campaign_dir::write_finding_files(dir, f, summary.seed, found_by)
            .map_err(|(_, e)| e)?;
        written.extend(files);
    }
    write_json(&dir.join("summary.json"), summary)?;
    written.push(dir.join("summary.json"));
    Ok(written)
}
