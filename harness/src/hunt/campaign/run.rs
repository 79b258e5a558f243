//! The coordinating loop of a campaign ([`run_campaign_into`]): cases handed out, outcomes
//! tallied and recorded as they come, findings minimized and merged, the summary written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

use super::config::{campaign_watchdog, Budget, CampaignConfig};
use super::minimizer::{start_minimizer, FindingMinimizer};
use super::progress::progress_bar;
use super::slots::{start_case_threads, CaseFeed};
use super::summary::{Summary, WallClock};
use super::tally::{apply, Tally, Writer};
use crate::artifacts::write_json;
use crate::case::BackendKind;
use crate::hunt::campaign_dir::{CampaignDir, OutDirError, Record, JOURNAL_FORMAT};
use crate::hunt::time_split::TimeSplit;
use crate::hunt::watchdog::{Watchdog, WatchdogConfig};
use crate::isolate::{SupervisorConfig, WorkerCommand, WorkerSlot};

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
    // With a shared GPU: shared batches read it, runs that decide a verdict alone write it.
    let gpu_gate: Arc<RwLock<()>> = Arc::default();
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
            shared_gpu: config.shared_gpu.clone(),
            gpu_gate: Arc::clone(&gpu_gate),
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
            config.shared_gpu.is_some().then(|| Arc::clone(&gpu_gate)),
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
