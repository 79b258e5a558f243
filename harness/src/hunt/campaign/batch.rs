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
        private_rerun: false,
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
    let feed = lone_feed(watchdog, cases.len(), capacity_invariance);
    run_side_by_side(slot, &feed, indexed(cases))
        .into_iter()
        .map(|o| (o.verdict, o.execution))
        .collect()
}

/// Runs `cases` as a campaign's thread does when its workers share the GPU
/// ([`crate::hunt::gpu_share`]): side by side in `shared`, and every case that does not pass there
/// alone in `private`; limits and confirmations from `watchdog`. Each case's verdict and
/// execution, in order, and whether it was re-run in `private`.
pub fn run_shared_watched(
    shared: &mut WorkerSlot,
    private: &mut WorkerSlot,
    watchdog: Arc<Watchdog>,
    cases: Vec<Case>,
    capacity_invariance: bool,
) -> Vec<(Verdict, Option<Execution>, bool)> {
    let feed = lone_feed(watchdog, cases.len(), capacity_invariance);
    run_shared(shared, private, &feed, indexed(cases))
        .into_iter()
        .map(|o| (o.verdict, o.execution, o.times.private_rerun))
        .collect()
}

/// The feed of a batch run outside a campaign.
fn lone_feed(watchdog: Arc<Watchdog>, cases: usize, capacity_invariance: bool) -> CaseFeed {
    CaseFeed {
        seed: 0,
        shard: Shard::default(),
        generator: GenConfig::default(),
        capacity_invariance,
        watchdog,
        limit: Arc::new(AtomicU64::new(u64::MAX)),
        stop: Arc::new(AtomicBool::new(false)),
        cases_per_worker: cases,
        shared_gpu: None,
        gpu_gate: Arc::default(),
    }
}

/// `cases` numbered from 0, generated in no time.
fn indexed(cases: Vec<Case>) -> Vec<(u64, Case, f64)> {
    cases
        .into_iter()
        .enumerate()
        .map(|(i, case)| (i as u64, case, 0.0))
        .collect()
}

/// What came of one case of a batch: its own outcome, or that it must run alone.
enum Answer {
    /// The worker's answer, the case's own.
    Own(Box<Outcome>),
    /// To be run alone.
    Alone(Box<Unanswered>),
}

impl Answer {
    fn alone(unanswered: Unanswered) -> Self {
        Answer::Alone(Box::new(unanswered))
    }
}

/// A case of a batch that must run alone.
struct Unanswered {
    index: u64,
    case: Case,
    /// Seconds to generate it.
    generate: f64,
    /// Its share of a batch whose worker died: time that bought nothing.
    lost: f64,
    /// Its share of a batch whose worker answered without it (a poisoned process resumes alone):
    /// round trip and worker seconds, counted as its run's.
    answered_share: Option<(f64, Option<f64>)>,
}

impl Unanswered {
    /// `case` (generated in `generate` seconds), to run alone, nothing spent on it yet.
    fn new(index: u64, case: Case, generate: f64) -> Self {
        Unanswered {
            index,
            case,
            generate,
            lost: 0.0,
            answered_share: None,
        }
    }
}

/// Runs `cases` (index, case, seconds to generate it) side by side in one request of `slot`'s
/// worker, under the batch's limit ([`Watchdog::batch_deadline`]); the answered ones are their own
/// outcomes (a passing one teaches the watchdog its time on its thread), every other one runs
/// alone under the watchdog — all of them when the worker died, so that no death is pinned on the
/// wrong case (see [`batch`] for when an answer is not the case's own). A case that injects a lost
/// context runs alone from the start: beside others it would end their context too.
pub(super) fn run_side_by_side(
    slot: &mut WorkerSlot,
    feed: &CaseFeed,
    cases: Vec<(u64, Case, f64)>,
) -> Vec<Outcome> {
    run_batch_then_alone(slot, feed, cases)
        .into_iter()
        .map(|answer| match answer {
            Answer::Own(outcome) => *outcome,
            Answer::Alone(alone) => run_alone(slot, feed, *alone),
        })
        .collect()
}

/// Runs `cases` on a worker that shares the GPU ([`crate::hunt::gpu_share`]): side by side in
/// `shared`, where only a pass counts; every other verdict, every case the batch did not answer
/// and every case that injects a lost context is run alone in `private`, a worker with a context
/// of its own, whose verdict is the case's. After anything but passes `shared`'s worker is
/// replaced: its context may have ended with another client's fault, and the server admits no
/// new client while one of its old ones lives. The private runs hold [`CaseFeed::gpu_gate`] for
/// writing: no shared batch runs beside a run that decides a verdict.
pub(super) fn run_shared(
    shared: &mut WorkerSlot,
    private: &mut WorkerSlot,
    feed: &CaseFeed,
    cases: Vec<(u64, Case, f64)>,
) -> Vec<Outcome> {
    let answers = {
        let _batch = feed.gpu_gate.read().unwrap_or_else(|e| e.into_inner());
        run_batch_then_alone(shared, feed, cases)
    };
    let trusted = |answer: &Answer| matches!(answer, Answer::Own(outcome) if matches!(outcome.verdict, Verdict::Pass));
    let mut alone_gate = None;
    if answers.iter().any(|answer| !trusted(answer)) {
        shared.shutdown();
        alone_gate = Some(feed.gpu_gate.write().unwrap_or_else(|e| e.into_inner()));
    }
    let outcomes = answers
        .into_iter()
        .map(|answer| {
            let alone = match answer {
                Answer::Own(outcome) if matches!(outcome.verdict, Verdict::Pass) => {
                    return *outcome
                }
                Answer::Own(doubted) => Unanswered {
                    index: doubted.index,
                    case: doubted.case,
                    generate: doubted.times.generate,
                    lost: doubted.times.round_trip,
                    answered_share: None,
                },
                Answer::Alone(unanswered) => *unanswered,
            };
            let mut outcome = run_alone(private, feed, alone);
            outcome.times.private_rerun = true;
            outcome
        })
        .collect();
    drop(alone_gate);
    outcomes
}

/// The cases that inject a lost context set aside to run alone, the others run side by side in
/// `slot`: per case, in index order, its outcome or that it must run alone.
fn run_batch_then_alone(
    slot: &mut WorkerSlot,
    feed: &CaseFeed,
    cases: Vec<(u64, Case, f64)>,
) -> Vec<Answer> {
    let (alone, together): (Vec<_>, Vec<_>) = cases
        .into_iter()
        .partition(|(_, case, _)| case.injects_lost_context());
    let mut answers = if together.is_empty() {
        Vec::new()
    } else {
        run_together(slot, feed, together)
    };
    answers.extend(
        alone
            .into_iter()
            .map(|(index, case, generate)| Answer::alone(Unanswered::new(index, case, generate))),
    );
    // The coordinator takes a thread's outcomes in case order.
    answers.sort_by_key(|answer| match answer {
        Answer::Own(outcome) => outcome.index,
        Answer::Alone(alone) => alone.index,
    });
    answers
}

/// One case the batch did not answer, alone under the watchdog in `slot`.
fn run_alone(slot: &mut WorkerSlot, feed: &CaseFeed, alone: Unanswered) -> Outcome {
    let mut outcome = run_watched(
        slot,
        feed,
        alone.index,
        alone.case,
        alone.generate,
        alone.lost,
    );
    if let Some((round_trip, worker)) = alone.answered_share {
        outcome.times.round_trip += round_trip;
        outcome.times.worker = outcome.times.worker.map(|w| w + worker.unwrap_or(0.0));
    }
    outcome
}

/// Runs `cases` side by side in one request of `slot`'s worker: per case, in order, its outcome
/// when the worker answered it, or that it must run alone.
fn run_together(
    slot: &mut WorkerSlot,
    feed: &CaseFeed,
    cases: Vec<(u64, Case, f64)>,
) -> Vec<Answer> {
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
                        Answer::Own(Box::new(Outcome {
                            index,
                            case,
                            verdict: answer.verdict,
                            execution: Some(answer.execution),
                            seconds,
                            times: CaseTimes {
                                generate,
                                round_trip: share,
                                worker: worker_share,
                                capacity_rerun: answer.capacity_rerun_seconds,
                                ..CaseTimes::default()
                            },
                        }))
                    }
                    // Its process was poisoned, or its reply not understood: alone, from the
                    // start; the batch's share counts as the run's (its worker did answer).
                    None => Answer::alone(Unanswered {
                        answered_share: Some((share, worker_share)),
                        ..Unanswered::new(index, case, generate)
                    }),
                })
                .collect()
        }
        batch::BatchRun::Died { .. } => cases
            .into_iter()
            .map(|(index, case, generate)| {
                Answer::alone(Unanswered {
                    lost: share,
                    ..Unanswered::new(index, case, generate)
                })
            })
            .collect(),
        batch::BatchRun::Environment { message } => cases
            .into_iter()
            .map(|(index, case, generate)| {
                Answer::Own(Box::new(Outcome {
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
                }))
            })
            .collect(),
    }
}
