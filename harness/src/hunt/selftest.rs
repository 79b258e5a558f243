/*!
The self-test: proof that the harness finds the bugs it exists for, and nothing in a clean engine.

For every planted fault ([`forcefield::Fault`]) of the crash kind that exists on the backend, a
seeded hunt runs generated cases through isolated workers, exactly as `forcefield run --fault F`
would (same generator, same case seeds, same checks), and stops at the first finding, which is then
minimized as a campaign minimizes (proptest shrinking, then delta debugging, keeping the signature).
The clean engine runs a whole campaign ([`crate::hunt::campaign::run_campaign`]) with its budget
and must find nothing. Hunts and minimizations run one at a time, or several at once
(`SelftestConfig::lanes`, each with its own workers: on CUDA one leaves the device mostly idle);
with several, the clean campaign runs beside the minimizations. Performance faults are skipped:
only the benchmark gate can see them.

This module is responsible for

* the hunt ([`hunt`]): which case is "the first finding", deterministically. Case `k` is generated
  from `(seed, k)` alone; workers take indices in order, and once a finding shows at index `k` no
  index above `k` is started, while those below finish. The first finding is the one with the
  lowest index, whichever worker was faster, so with a case-count budget the row of a fault
  (detected, class, signature, minimized size) does not depend on timing or on `--jobs`;
* the report ([`SelftestReport`]): one row per fault, the skipped faults with why, the clean run,
  markdown for people and JSON for tools, and the verdict (what was missed).

**Architecture Invariant:** nothing here knows what a fault does. The same generator settings
(injected environment faults included) and the same checks run for every fault and for the clean
engine; a fault counts as detected when the harness's generic classification of a worker's
execution gives a finding.
*/

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use forcefield::{Fault, FaultKind};

use crate::case::generate::GenConfig;
use crate::case::minimize::{CaseSize, MinimizeLimits, MinimizeReport};
use crate::case::{BackendKind, Case};
use crate::client::signature::{Signature, Verdict};
use crate::hunt::campaign::{
    campaign_watchdog, minimize_generated, run_campaign, start_case_threads, Budget,
    CampaignConfig, CaseFeed, FindingMinimizer, Shard,
};
use crate::isolate::{SupervisorConfig, WorkerCommand, WorkerSlot};
use crate::sanitizers::mode::SanitizeMode;

/// The format string of the self-test's JSON report.
pub const SELFTEST_FORMAT: &str = "forcefield-selftest/1";

/// Settings of a self-test.
#[derive(Clone, Debug)]
pub struct SelftestConfig {
    /// Backend of every case.
    pub backend: BackendKind,
    /// Each fault's hunt stops at its first finding or at this budget.
    pub budget: Budget,
    /// The clean engine's campaign runs this whole budget.
    pub clean_budget: Budget,
    /// Seed of every hunt and of the clean campaign.
    pub seed: u64,
    /// Worker processes.
    pub jobs: usize,
    /// The faults to hunt, in this order (the applicable crash faults: see [`applicable_faults`]).
    pub faults: Vec<Fault>,
    /// Per-case watchdog (stretched by the sanitizer's slowdown).
    pub case_deadline: Duration,
    /// Re-run each case under another growth policy, as `forcefield run` does.
    pub capacity_invariance: bool,
    /// Limits for minimizing each first finding.
    pub minimize: MinimizeLimits,
    /// How to start a worker (already under `sanitize`).
    pub worker: WorkerCommand,
    /// The sanitizer the workers run under.
    pub sanitize: SanitizeMode,
    /// Generator settings, the same for every hunt and for the clean campaign.
    pub generator: GenConfig,
    /// Draw progress bars (otherwise plain progress lines) on stderr.
    pub progress: bool,
    /// Faults hunted (then minimized) at once, each with its own `jobs` workers; above one, the
    /// clean campaign runs beside the minimizations instead of after them.
    pub lanes: usize,
}

/// Why a fault of the catalog is not hunted on a backend; `None` when it is.
pub fn skip_reason(fault: Fault, backend: BackendKind) -> Option<String> {
    if fault.kind() == FaultKind::Performance {
        return Some("benchmark gate only, see forcefield bench".to_string());
    }
    if !fault.applies_to(backend.name()) {
        return Some(format!("does not exist on the {} backend", backend.name()));
    }
    None
}

/// The faults a self-test on `backend` hunts: every crash fault that exists there, in catalog order.
pub fn applicable_faults(backend: BackendKind) -> Vec<Fault> {
    Fault::ALL
        .iter()
        .copied()
        .filter(|f| skip_reason(*f, backend).is_none())
        .collect()
}

// ---- the hunt ---------------------------------------------------------------------------------

/// The first finding of a hunt, in case order.
#[derive(Clone, Debug)]
pub struct FirstFinding {
    /// Its case index.
    pub index: u64,
    /// Its signature.
    pub signature: Signature,
    /// One line on it.
    pub summary: String,
    /// Seconds from the hunt's start until it was received.
    pub seconds: f64,
    /// The case.
    pub case: Case,
    /// The hunt's watchdog, with the rate it measured: minimization sets its limits with it.
    pub watchdog: Arc<crate::hunt::watchdog::Watchdog>,
}

/// What a hunt came to.
#[derive(Clone, Debug, Default)]
pub struct Hunt {
    /// Cases whose verdict came back.
    pub cases: u64,
    /// The finding with the lowest case index, if any.
    pub first: Option<FirstFinding>,
    /// Why cases could not run here, if they could not.
    pub environment: Option<String>,
    /// Seconds spent.
    pub seconds: f64,
}

/// The generator of a hunt: the shared settings with `faults` planted on the backend.
fn generator_for(config: &SelftestConfig, faults: &[Fault]) -> GenConfig {
    GenConfig {
        faults: faults.to_vec(),
        backend: config.backend,
        ..config.generator.clone()
    }
}

/// The per-case watchdog: adaptive limits under `--case-timeout`; a sanitizer's slowdown is not a
/// hang.
fn case_watchdog(config: &SelftestConfig) -> crate::hunt::watchdog::Watchdog {
    let upper_bound = config
        .case_deadline
        .saturating_mul(config.sanitize.deadline_factor());
    campaign_watchdog(config.backend, upper_bound, config.sanitize)
}

/// Runs cases `0, 1, 2, ...` of `config.seed` with `faults` planted through `config.jobs` isolated
/// workers until a finding shows, the budget is spent or `interrupt` is set. `tick` is called about
/// ten times a second with the cases done so far.
pub fn hunt(
    config: &SelftestConfig,
    faults: &[Fault],
    budget: Budget,
    interrupt: &AtomicBool,
    tick: &mut dyn FnMut(u64),
) -> Hunt {
    let start = Instant::now();
    let generator = generator_for(config, faults);
    let watchdog = Arc::new(case_watchdog(config));
    // Workers start no index at or above `limit`: the budget's case count, lowered to the index
    // of the first finding as soon as one shows.
    let limit = Arc::new(AtomicU64::new(match budget {
        Budget::Cases(n) => n,
        Budget::Time(_) => u64::MAX,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let (rx, threads) = start_case_threads(
        vec![config.worker.clone(); config.jobs.max(1)],
        CaseFeed {
            seed: config.seed,
            shard: Shard::default(),
            generator,
            capacity_invariance: config.capacity_invariance,
            watchdog: Arc::clone(&watchdog),
            limit: Arc::clone(&limit),
            stop: Arc::clone(&stop),
            cases_per_worker: 1,
            shared_gpu: None,
            gpu_gate: Arc::default(),
        },
    );

    let mut result = Hunt::default();
    loop {
        let over_time = matches!(budget, Budget::Time(t) if start.elapsed() >= t);
        if over_time || interrupt.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            // Killed by a forced stop: no verdict.
            Ok(_) if crate::interrupt::forced() => {}
            Ok(outcome) => {
                result.cases += 1;
                match outcome.verdict {
                    Verdict::Pass => {}
                    Verdict::Environment { message } => {
                        stop.store(true, Ordering::Relaxed);
                        result.environment.get_or_insert(message);
                    }
                    Verdict::Finding { signature, summary } => {
                        limit.fetch_min(outcome.index, Ordering::Relaxed);
                        let earlier = result
                            .first
                            .as_ref()
                            .is_none_or(|f| outcome.index < f.index);
                        if earlier {
                            result.first = Some(FirstFinding {
                                index: outcome.index,
                                signature,
                                summary,
                                seconds: start.elapsed().as_secs_f64(),
                                case: outcome.case,
                                watchdog: Arc::clone(&watchdog),
                            });
                        }
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        tick(result.cases);
    }
    for t in threads {
        if t.join().is_err() {
            // A panic on a driver thread (in the generator, say) is the harness's own bug: the
            // fault was not hunted, which must not read as "not detected".
            result
                .environment
                .get_or_insert_with(|| "a hunt thread panicked (see stderr)".to_string());
        }
    }
    result.seconds = start.elapsed().as_secs_f64();
    result
}

/// Minimizes a hunt's first finding as a campaign minimizes its findings: proptest shrinking over
/// the generator's structure, then delta debugging, every candidate run in an isolated worker and
/// kept only when it gives the same signature.
pub fn minimize_first(
    config: &SelftestConfig,
    faults: &[Fault],
    first: &FirstFinding,
    interrupt: &AtomicBool,
) -> (Case, MinimizeReport) {
    let generator = generator_for(config, faults);
    let mut slot = WorkerSlot::new(config.worker.clone(), SupervisorConfig::default())
        .with_idle_limit(first.watchdog.config().idle_limit);
    let how = FindingMinimizer {
        generator: &generator,
        capacity_invariance: config.capacity_invariance,
        watchdog: &first.watchdog,
        limits: config.minimize,
        stop: interrupt,
    };
    let minimized = minimize_generated(&mut slot, &first.case, &first.signature, &how);
    slot.shutdown();
    minimized
}

// ---- the report -------------------------------------------------------------------------------

/// One planted fault's hunt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultRow {
    /// The fault.
    pub fault: Fault,
    /// Whether a finding showed.
    pub detected: bool,
    /// The first finding's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    /// One line on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Seconds from the hunt's start to the first finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_first: Option<f64>,
    /// Cases in case order up to and including the first finding (independent of timing and
    /// `--jobs`); every case run when nothing showed.
    pub cases: u64,
    /// Size of the first failing case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_size: Option<CaseSize>,
    /// Its minimization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimization: Option<MinimizeReport>,
    /// The minimized reproducer (with the fault in it), ready for `forcefield repro`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimized: Option<Case>,
    /// Seconds spent on this fault, hunt and minimization.
    pub seconds: f64,
    /// Whether Ctrl-C cut the hunt or its minimization short.
    pub interrupted: bool,
}

impl FaultRow {
    /// The outcome class of the first finding (`signal`, `hang`, `invariant`, ...).
    pub fn class(&self) -> Option<&str> {
        self.signature.as_ref().map(|s| s.class.as_str())
    }
}

/// A catalog fault the self-test does not hunt on this backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFault {
    /// The fault.
    pub fault: Fault,
    /// Why.
    pub reason: String,
}

/// Everything a self-test saw (`--json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SelftestReport {
    /// Always [`SELFTEST_FORMAT`].
    pub format: String,
    /// Backend.
    pub backend: BackendKind,
    /// Seed of every hunt and of the clean campaign.
    pub seed: u64,
    /// Each fault's budget, as a person reads it (`30s`, `200 cases`).
    pub budget: String,
    /// The clean campaign's budget.
    pub clean_budget: String,
    /// Worker processes.
    pub jobs: usize,
    /// The generator's probability of an injected environment fault before a plan, in every hunt
    /// and in the clean campaign.
    pub inject_rate: f64,
    /// The faults meant to be hunted, in order (rows exist for those that were).
    pub planned: Vec<Fault>,
    /// One row per fault hunted.
    pub faults: Vec<FaultRow>,
    /// Catalog faults not hunted here, with why.
    pub skipped: Vec<SkippedFault>,
    /// The clean engine's campaign, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean: Option<crate::hunt::campaign::Summary>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether Ctrl-C cut it short.
    pub interrupted: bool,
    /// Why cases could not run here, if they could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_message: Option<String>,
}

/// A budget as a person reads it.
pub fn budget_text(budget: Budget) -> String {
    match budget {
        Budget::Time(t) => humantime::format_duration(t).to_string(),
        Budget::Cases(n) => format!("{n} cases"),
    }
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

impl SelftestReport {
    /// Hunted faults that showed nothing in their whole budget.
    pub fn missed(&self) -> Vec<Fault> {
        self.faults
            .iter()
            .filter(|r| !r.detected && !r.interrupted)
            .map(|r| r.fault)
            .collect()
    }

    /// Faults whose hunt Ctrl-C cut short before anything showed.
    pub fn cut_short(&self) -> Vec<Fault> {
        self.faults
            .iter()
            .filter(|r| !r.detected && r.interrupted)
            .map(|r| r.fault)
            .collect()
    }

    /// Planned faults never hunted (Ctrl-C, or the environment failed first).
    pub fn not_run(&self) -> Vec<Fault> {
        self.planned
            .iter()
            .copied()
            .filter(|f| !self.faults.iter().any(|r| r.fault == *f))
            .collect()
    }

    /// One line on what the self-test missed, or `None` when every fault was detected and the clean
    /// engine gave nothing.
    pub fn failure(&self) -> Option<String> {
        let names = |faults: &[Fault]| {
            faults
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        let missed = self.missed();
        if !missed.is_empty() {
            parts.push(format!(
                "not detected within {} each: {}",
                self.budget,
                names(&missed)
            ));
        }
        let cut_short = self.cut_short();
        if !cut_short.is_empty() {
            parts.push(format!("hunt interrupted: {}", names(&cut_short)));
        }
        let not_run = self.not_run();
        if !not_run.is_empty() {
            parts.push(format!("not hunted: {}", names(&not_run)));
        }
        match &self.clean {
            None => parts.push("the clean engine was not run".to_string()),
            Some(clean) if !clean.findings.is_empty() => {
                let signatures: Vec<String> = clean
                    .findings
                    .iter()
                    .map(|f| f.signature.to_string())
                    .collect();
                parts.push(format!(
                    "the clean engine gave {} finding(s): {}",
                    signatures.len(),
                    signatures.join(", ")
                ));
            }
            Some(clean) if clean.cases == 0 => {
                parts.push("the clean engine ran no case".to_string())
            }
            Some(clean) if clean.interrupted => {
                parts.push("the clean run was interrupted".to_string())
            }
            Some(_) => {}
        }
        if self.interrupted && parts.is_empty() {
            parts.push("interrupted".to_string());
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The table, with a heading line and the clean run, as markdown.
    pub fn markdown(&self) -> String {
        let detected = self.faults.iter().filter(|r| r.detected).count();
        let mut s = format!(
            "selftest on {}, seed {}, {} per fault, {} worker(s), injected faults at rate {}{}: {} of {} fault(s) detected\n\n",
            self.backend.name(),
            self.seed,
            self.budget,
            self.jobs,
            self.inject_rate,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
            detected,
            self.planned.len()
        );
        s.push_str(
            "| fault | detected | outcome class | signature | seconds to first detection | cases run | minimized size (nodes, edges, ops) |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for r in &self.faults {
            let minimized = match (&r.minimization, r.detected) {
                (Some(m), _) => format!("{}, {}, {}", m.after.nodes, m.after.edges, m.after.ops),
                (None, true) => "not minimized".to_string(),
                (None, false) => "-".to_string(),
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.fault,
                match (r.detected, r.interrupted) {
                    (true, _) => "yes",
                    (false, true) => "interrupted",
                    (false, false) => "**no**",
                },
                or_dash(r.class()),
                r.signature
                    .as_ref()
                    .map_or("-".to_string(), |sig| format!("`{sig}`")),
                or_dash(r.seconds_to_first.map(|t| format!("{t:.2}"))),
                r.cases,
                minimized
            ));
        }
        for f in self.not_run() {
            s.push_str(&format!("| {f} | not run | - | - | - | - | - |\n"));
        }
        for k in &self.skipped {
            s.push_str(&format!(
                "| {} | skipped: {} | - | - | - | - | - |\n",
                k.fault, k.reason
            ));
        }
        s.push('\n');
        match &self.clean {
            Some(clean) => {
                s.push_str(&format!("clean engine, {}: ", self.clean_budget));
                s.push_str(&clean.markdown());
            }
            None => s.push_str("clean engine: not run\n"),
        }
        s
    }
}

// ---- the whole self-test ----------------------------------------------------------------------

/// Progress on stderr: a spinner on a terminal, a line every few seconds otherwise.
struct Progress {
    bar: indicatif::ProgressBar,
    plain: bool,
    last_line: Instant,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        let bar = if enabled {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress {
            bar,
            plain: !enabled,
            last_line: Instant::now(),
        }
    }

    /// A line that stays.
    fn line(&mut self, text: String) {
        if self.plain {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
        self.last_line = Instant::now();
    }

    /// The running state: drawn on the spinner, or printed every 10 seconds.
    fn status(&mut self, text: String) {
        if self.plain {
            if self.last_line.elapsed() >= Duration::from_secs(10) {
                self.line(format!("  {text}"));
            }
        } else {
            self.bar.set_message(text);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Runs the self-test: a hunt per fault of `config.faults`, then each first finding minimized and
/// the clean campaign. With `config.lanes` above one, that many hunts run at once, then that many
/// minimizations with the clean campaign beside them (the hunts, whose budget is the user's, do
/// not share the machine with it). Stops early, with the rows so far, when `interrupt` is set or
/// cases cannot run here. Never panics on worker trouble.
pub fn run_selftest(config: &SelftestConfig, interrupt: Arc<AtomicBool>) -> SelftestReport {
    let start = Instant::now();
    let lanes = config.lanes.clamp(1, config.faults.len().max(1));
    // One lane draws a spinner; several print lines only, each naming its fault.
    let progress = Mutex::new(Progress::new(config.progress && lanes == 1));
    let mut report = SelftestReport {
        format: SELFTEST_FORMAT.to_string(),
        backend: config.backend,
        seed: config.seed,
        budget: budget_text(config.budget),
        clean_budget: budget_text(config.clean_budget),
        jobs: config.jobs.max(1),
        inject_rate: config.generator.inject_rate,
        planned: config.faults.clone(),
        faults: Vec::new(),
        skipped: Fault::ALL
            .iter()
            .filter(|f| !config.faults.contains(f))
            .filter_map(|f| {
                skip_reason(*f, config.backend).map(|reason| SkippedFault { fault: *f, reason })
            })
            .collect(),
        clean: None,
        seconds: 0.0,
        interrupted: false,
        environment_message: None,
    };
    let total = config.faults.len();
    let name = |i: usize| format!("[{}/{total}] {}", i + 1, config.faults[i]);
    let environment: Mutex<Option<String>> = Mutex::new(None);
    let stopped = || interrupt.load(Ordering::Relaxed) || lock(&environment).is_some();

    // The hunts. A hunt that could not run a case ends the self-test: its row is not kept.
    let hunts: Mutex<Vec<Option<Hunt>>> = Mutex::new(vec![None; total]);
    let panicked = in_lanes(lanes, total, &stopped, &|i| {
        let hunted = hunt_one(config, &name(i), config.faults[i], &progress, &interrupt);
        match (&hunted.environment, &hunted.first) {
            (Some(message), None) => {
                lock(&environment).get_or_insert(message.clone());
            }
            _ => lock(&hunts)[i] = Some(hunted),
        }
    });
    if panicked {
        lock(&environment).get_or_insert_with(|| "a hunt thread panicked (see stderr)".to_string());
    }
    let hunts = hunts.into_inner().unwrap_or_else(|e| e.into_inner());

    // The minimizations, and the clean campaign (beside them when there are several lanes).
    let clean_runs = !interrupt.load(Ordering::Relaxed) && lock(&environment).is_none();
    let minimized: Mutex<Vec<Option<(Case, MinimizeReport)>>> = Mutex::new(vec![None; total]);
    let mut clean = None;
    std::thread::scope(|scope| {
        let beside = (clean_runs && lanes > 1).then(|| {
            line(
                &progress,
                format!(
                    "selftest: the clean engine ({} budget), beside the minimizations",
                    budget_text(config.clean_budget)
                ),
            );
            scope.spawn(|| run_clean(config, &interrupt, true))
        });
        let interrupted = || interrupt.load(Ordering::Relaxed);
        in_lanes(lanes, total, &interrupted, &|i| {
            let Some(first) = hunts[i].as_ref().and_then(|h| h.first.as_ref()) else {
                return;
            };
            let result = minimize_one(
                config,
                &name(i),
                config.faults[i],
                first,
                &progress,
                &interrupt,
            );
            lock(&minimized)[i] = Some(result);
        });
        if let Some(h) = beside {
            clean = h.join().ok();
        }
    });
    let mut minimized = minimized.into_inner().unwrap_or_else(|e| e.into_inner());
    report.faults = hunts
        .into_iter()
        .enumerate()
        .filter_map(|(i, hunted)| {
            let hunted = hunted?;
            Some(fault_row(
                config.faults[i],
                hunted,
                minimized[i].take(),
                &interrupt,
            ))
        })
        .collect();
    report.environment_message = environment.into_inner().unwrap_or_else(|e| e.into_inner());

    if clean_runs && lanes == 1 && !interrupt.load(Ordering::Relaxed) {
        line(
            &progress,
            format!(
                "selftest: the clean engine ({} budget)",
                budget_text(config.clean_budget)
            ),
        );
        lock(&progress).finish();
        clean = Some(run_clean(config, &interrupt, false));
    }
    lock(&progress).finish();
    if let Some(clean) = clean {
        if clean.cases == clean.environment_errors && clean.environment_message.is_some() {
            report
                .environment_message
                .get_or_insert_with(|| clean.environment_message.clone().unwrap_or_default());
        }
        report.clean = Some(clean);
    }
    report.interrupted = interrupt.load(Ordering::Relaxed);
    report.seconds = start.elapsed().as_secs_f64();
    report
}

/// Calls `work(i)` for every `i` in `0..n`, started in order on `lanes` threads, until `stop`
/// says to start no more; whether a thread panicked.
fn in_lanes(
    lanes: usize,
    n: usize,
    stop: &(dyn Fn() -> bool + Sync),
    work: &(dyn Fn(usize) + Sync),
) -> bool {
    let next = AtomicUsize::new(0);
    let lane = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n || stop() {
            break;
        }
        work(i);
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..lanes).map(|_| scope.spawn(lane)).collect();
        handles.into_iter().any(|h| h.join().is_err())
    })
}

/// One fault's hunt, with its progress lines (`name` says which fault, as lanes interleave).
fn hunt_one(
    config: &SelftestConfig,
    name: &str,
    fault: Fault,
    progress: &Mutex<Progress>,
    interrupt: &AtomicBool,
) -> Hunt {
    line(
        progress,
        format!(
            "selftest: {name}: hunting ({} budget)",
            budget_text(config.budget)
        ),
    );
    let began = Instant::now();
    let hunted = hunt(config, &[fault], config.budget, interrupt, &mut |cases| {
        lock(progress).status(format!(
            "{name}: {:.1} s, {cases} cases",
            began.elapsed().as_secs_f64()
        ))
    });
    match &hunted.first {
        None => line(
            progress,
            format!(
                "  {name}: not detected: {} cases in {:.1} s",
                hunted.cases, hunted.seconds
            ),
        ),
        Some(first) => line(
            progress,
            format!(
                "  {name}: detected after {:.2} s, case {}: {}: {}",
                first.seconds, first.index, first.signature, first.summary
            ),
        ),
    }
    hunted
}

/// The minimization of one fault's first finding, with its progress lines.
fn minimize_one(
    config: &SelftestConfig,
    name: &str,
    fault: Fault,
    first: &FirstFinding,
    progress: &Mutex<Progress>,
    interrupt: &AtomicBool,
) -> (Case, MinimizeReport) {
    lock(progress).status(format!("{name}: minimizing {}", CaseSize::of(&first.case)));
    let (small, minimization) = minimize_first(config, &[fault], first, interrupt);
    line(
        progress,
        format!(
            "  {name}: minimized {} -> {} in {:.1} s ({} runs)",
            minimization.before, minimization.after, minimization.seconds, minimization.runs
        ),
    );
    (small, minimization)
}

/// A fault's row: its hunt and, when it was minimized, the minimization.
fn fault_row(
    fault: Fault,
    hunted: Hunt,
    minimized: Option<(Case, MinimizeReport)>,
    interrupt: &AtomicBool,
) -> FaultRow {
    let mut row = FaultRow {
        fault,
        detected: hunted.first.is_some(),
        signature: None,
        summary: None,
        seconds_to_first: None,
        cases: hunted.cases,
        case_size: None,
        minimization: None,
        minimized: None,
        seconds: hunted.seconds,
        interrupted: interrupt.load(Ordering::Relaxed),
    };
    if let Some(first) = hunted.first {
        row.signature = Some(first.signature);
        row.summary = Some(first.summary);
        row.seconds_to_first = Some(first.seconds);
        row.cases = first.index + 1;
        row.case_size = Some(CaseSize::of(&first.case));
    }
    if let Some((small, minimization)) = minimized {
        row.seconds += minimization.seconds;
        row.minimized = Some(small);
        row.minimization = Some(minimization);
    }
    row
}

/// The clean engine's campaign: no fault planted, the whole clean budget; `beside` the hunts, it
/// draws no progress of its own.
fn run_clean(
    config: &SelftestConfig,
    interrupt: &Arc<AtomicBool>,
    beside: bool,
) -> crate::hunt::campaign::Summary {
    run_campaign(
        &CampaignConfig {
            backend: config.backend,
            budget: config.clean_budget,
            seed: config.seed,
            jobs: config.jobs.max(1),
            gpus: Vec::new(),
            faults: Vec::new(),
            shard: Shard::default(),
            case_deadline: config.case_deadline,
            capacity_invariance: config.capacity_invariance,
            minimize: Some(config.minimize),
            worker: config.worker.clone(),
            sanitize: config.sanitize,
            generator: generator_for(config, &[]),
            // Beside the hunts, the campaign's own progress would interleave with theirs.
            progress: config.progress && !beside,
            cases_per_worker: 1,
            idle_check: true,
            target: None,
            shared_gpu: None,
        },
        Arc::clone(interrupt),
    )
}

/// A progress line that stays.
fn line(progress: &Mutex<Progress>, text: String) {
    lock(progress).line(text);
}

/// The lock, whether or not another lane panicked holding it (its data stays usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn performance_faults_and_faults_of_another_backend_are_skipped() {
        let cpu = applicable_faults(BackendKind::Cpu);
        assert!(!cpu.contains(&Fault::SlowForcePass));
        assert!(!cpu.contains(&Fault::RaceIntegrate));
        assert!(cpu.contains(&Fault::SortCountUnclamped));
        let cuda = applicable_faults(BackendKind::Cuda);
        assert!(cuda.contains(&Fault::RaceIntegrate));
        assert!(!cuda.contains(&Fault::SlowForcePass));
        assert_eq!(cuda.len(), cpu.len() + 1);
        assert!(skip_reason(Fault::SlowForcePass, BackendKind::Cuda)
            .is_some_and(|r| r.contains("forcefield bench")));
    }

    fn row(fault: Fault, detected: bool, interrupted: bool) -> FaultRow {
        FaultRow {
            fault,
            detected,
            signature: detected.then(|| "signal:SIGSEGV:sort_pairs".parse().unwrap()),
            summary: None,
            seconds_to_first: detected.then_some(0.5),
            cases: 3,
            case_size: None,
            minimization: None,
            minimized: None,
            seconds: 1.0,
            interrupted,
        }
    }

    fn clean(findings: usize) -> crate::hunt::campaign::Summary {
        let finding = crate::hunt::campaign::Finding {
            signature: "invariant:cell-ranges:step".parse().unwrap(),
            summary: String::new(),
            count: 1,
            first_case: 0,
            seconds_to_first: 0.0,
            case_size: CaseSize {
                nodes: 1,
                edges: 0,
                ops: 1,
            },
            minimization: None,
            seconds_to_minimized: None,
            aliases: Vec::new(),
            status: Default::default(),
            case: None,
            minimized: None,
            execution: None,
        };
        crate::hunt::campaign::Summary {
            format: crate::hunt::campaign::SUMMARY_FORMAT.to_string(),
            backend: BackendKind::Cpu,
            seed: 0,
            shards: vec![Shard::default()],
            faults: Vec::new(),
            cases: 10,
            environment_errors: 0,
            seconds: 1.0,
            interrupted: false,
            findings: vec![finding; findings],
            environment_message: None,
            injections: Default::default(),
            slowest: Vec::new(),
            wall: None,
            watchdog: None,
            time: None,
            target: None,
        }
    }

    fn report(rows: Vec<FaultRow>, planned: Vec<Fault>, clean_findings: usize) -> SelftestReport {
        SelftestReport {
            format: SELFTEST_FORMAT.to_string(),
            backend: BackendKind::Cpu,
            seed: 0,
            budget: "30s".to_string(),
            clean_budget: "1m".to_string(),
            jobs: 2,
            inject_rate: 0.1,
            planned,
            faults: rows,
            skipped: Vec::new(),
            clean: Some(clean(clean_findings)),
            seconds: 2.0,
            interrupted: false,
            environment_message: None,
        }
    }

    #[test]
    fn the_verdict_names_what_was_missed_and_passes_only_when_nothing_was() {
        let (a, b, c) = (
            Fault::SortCountUnclamped,
            Fault::LeakOnResize,
            Fault::NoSoftening,
        );
        let all = report(
            vec![row(a, true, false), row(b, true, false)],
            vec![a, b],
            0,
        );
        assert_eq!(all.failure(), None);
        assert!(all.markdown().contains(
            "| sort-count-unclamped | yes | signal | `signal:SIGSEGV:sort_pairs` | 0.50 | 3 | not minimized |"
        ));

        let missed = report(
            vec![
                row(a, true, false),
                row(b, false, false),
                row(c, false, true),
            ],
            vec![a, b, c, Fault::LoggerRelock],
            1,
        );
        let line = missed.failure().unwrap();
        assert!(
            line.contains("not detected within 30s each: leak-on-resize"),
            "{line}"
        );
        assert!(line.contains("hunt interrupted: no-softening"), "{line}");
        assert!(line.contains("not hunted: logger-relock"), "{line}");
        assert!(line.contains("the clean engine gave 1 finding(s): invariant:cell-ranges:step"));
        assert!(!line.contains('\n'));
        let table = missed.markdown();
        assert!(table.contains("| leak-on-resize | **no** |"), "{table}");
        assert!(table.contains("| no-softening | interrupted |"), "{table}");
        assert!(table.contains("| logger-relock | not run |"), "{table}");

        let mut unclean = report(vec![row(a, true, false)], vec![a], 0);
        unclean.clean = None;
        assert!(unclean
            .failure()
            .unwrap()
            .contains("the clean engine was not run"));
    }
}
