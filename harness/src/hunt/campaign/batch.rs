//! Running cases under the watchdog: one alone, or a batch side by side in one request, the
//! unanswered cases of a dead batch each alone.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::Shard;
use super::slots::{CaseFeed, Outcome};
use crate::case::generate::GenConfig;
use crate::case::Case;
use crate::client::batch;
use crate::client::run::run_isolated;
use crate::client::signature::Verdict;
use crate::hunt::time_split::CaseTimes;
use crate::hunt::watchdog::{watch, Attempt, CaseCost, Watchdog};
use crate::isolate::{Execution, WorkerSlot};

/// Runs one case alone under the watchdog (with its confirmation re-run); `lost` is its share of
/// a batch that died before answering it.
pub(super) fn run_watched(
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
pub(super) fn run_side_by_side(
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
