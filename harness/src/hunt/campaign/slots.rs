//! The scheduling of cases over worker slots: one thread per worker, each taking
//! [`CaseFeed::cases_per_worker`] consecutive case indices at a time ([`start_case_threads`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::time::Instant;

use super::batch::{run_shared, run_side_by_side, run_watched};
use super::config::{case_seed, Shard};
use crate::case::generate::GenConfig;
use crate::case::shrink::generated_case;
use crate::case::Case;
use crate::client::signature::Verdict;
use crate::hunt::gpu_share::SharedGpu;
use crate::hunt::time_split::CaseTimes;
use crate::hunt::watchdog::Watchdog;
use crate::isolate::{Execution, SupervisorConfig, WorkerCommand, WorkerSlot};

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
    /// When the workers share the GPU through MPS: the variables of a shared worker. Each thread
    /// then also keeps a private worker, for every case that does not pass in the shared one
    /// ([`crate::hunt::gpu_share`]).
    pub shared_gpu: Option<SharedGpu>,
    /// With a shared GPU: held for reading while a thread's shared worker runs a batch, for
    /// writing while a private worker re-runs a case, so that no shared worker's fault can reach
    /// a re-run that decides a verdict.
    pub gpu_gate: Arc<RwLock<()>>,
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
                // The slots live on this thread: workers die with the thread that started them.
                let idle_limit = feed.watchdog.config().idle_limit;
                let mut private = feed.shared_gpu.as_ref().map(|_| {
                    WorkerSlot::new(command.clone(), SupervisorConfig::default())
                        .with_idle_limit(idle_limit)
                });
                let command = match &feed.shared_gpu {
                    Some(shared) => shared
                        .env
                        .iter()
                        .fold(command, |c, (key, value)| c.env(key, value)),
                    None => command,
                };
                let mut slot = WorkerSlot::new(command, SupervisorConfig::default())
                    .with_idle_limit(idle_limit);
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
                    let outcomes = if let Some(private) = &mut private {
                        run_shared(&mut slot, private, &feed, cases)
                    } else if cases.len() == 1 {
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
                if let Some(private) = &mut private {
                    private.shutdown();
                }
            })
        })
        .collect();
    (rx, threads)
}
