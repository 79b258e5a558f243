//! Minimizing a finding through a worker ([`minimize_isolated`], [`minimize_generated`]) and the
//! campaign's minimizer thread, which re-runs and minimizes each new finding while the cases go on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

use super::config::CampaignConfig;
use super::summary::Reproduction;
use crate::case::generate::GenConfig;
use crate::case::minimize::{minimize, CaseSize, MinimizeLimits, MinimizeReport};
use crate::case::shrink::shrink_generated;
use crate::case::Case;
use crate::client::run::run_isolated;
use crate::client::signature::Signature;
use crate::hunt::watchdog::{CaseCost, Watchdog};
use crate::isolate::{SupervisorConfig, WorkerSlot};

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

/// What the minimizing thread reports.
pub(super) enum MinimizerEvent {
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
pub(super) fn start_minimizer(
    config: &CampaignConfig,
    limits: MinimizeLimits,
    tries: u32,
    watchdog: Arc<Watchdog>,
    stop: Arc<AtomicBool>,
    interrupt: Arc<AtomicBool>,
    gpu_gate: Option<Arc<RwLock<()>>>,
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
            // Under a shared GPU, its runs decide verdicts: no shared batch runs beside them
            // (another worker's trap would reach this worker's context).
            let _exclusive = gpu_gate
                .as_ref()
                .map(|gate| gate.write().unwrap_or_else(|e| e.into_inner()));
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
