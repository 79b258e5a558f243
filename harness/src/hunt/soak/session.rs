//! The session loop of a soak: engine lives driven through a worker slot, chunk by chunk, with
//! crashes recorded, restarts, and the measurements taken from each reply.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::injection::{fired_counts, kind_index, InjectionSchedule, InjectionSummary, KINDS};
use super::memory::{Series, WorkerMemory};
use super::op_stream::OpStream;
use super::recorder::RecorderTally;
use super::report::{mib, CrashGroup, LifeEnd, LifeSummary};
use super::step_time::{StepSample, StepTime};
use super::{SoakConfig, FAULT_NOT_TOLERATED};
use crate::artifacts::write_json;
use crate::case::{Case, Expectation, Op, Provenance};
use crate::client::signature::{classify, Signature, Verdict};
use crate::isolate::{Execution, SupervisorConfig, WorkerSlot};
use crate::worker::execute::CaseResult;
use crate::worker::job::{Job, JobReply, SoakStats};

/// The life being run.
pub(super) struct Life {
    pub(super) summary: LifeSummary,
    pub(super) started: Instant,
    pub(super) worker_pid: Option<u32>,
    pub(super) replies: u64,
    /// Seconds from the life's start to its last request: the busy time a replay repeats.
    pub(super) last_sent: f64,
    pub(super) samples: Vec<StepSample>,
    /// Injected faults fired in this life's engine, by kind, as of its last reply.
    pub(super) fired: [u64; KINDS],
}

impl Life {
    pub(super) fn new(index: u64, start_seed: u64) -> Self {
        Life {
            summary: LifeSummary {
                index,
                start_seed,
                seconds: 0.0,
                chunks: 0,
                steps: 0,
                end: LifeEnd::EndOfRun,
                nodes: Series::default(),
                rss_bytes: Series::default(),
                device_bytes: Series::default(),
                step_time: None,
            },
            started: Instant::now(),
            worker_pid: None,
            replies: 0,
            last_sent: 0.0,
            samples: Vec::new(),
            fired: [0; KINDS],
        }
    }
}

/// Everything the driver keeps between requests.
pub(super) struct Driver<'a> {
    pub(super) config: &'a SoakConfig,
    pub(super) start: Instant,
    pub(super) slot: WorkerSlot,
    pub(super) groups: BTreeMap<Signature, CrashGroup>,
    pub(super) crash_times: Vec<f64>,
    pub(super) crash_uptimes: Vec<f64>,
    pub(super) samples: Vec<StepSample>,
    pub(super) longest_life: Option<LifeSummary>,
    pub(super) worker: Option<(u32, WorkerMemory)>,
    pub(super) longest_worker: Option<WorkerMemory>,
    pub(super) engines: u64,
    pub(super) retired: u64,
    pub(super) lost_idle: u64,
    pub(super) poisoned: u64,
    pub(super) chunks: u64,
    pub(super) ops: u64,
    pub(super) steps: u64,
    pub(super) environment: Option<String>,
    pub(super) bar: indicatif::ProgressBar,
    pub(super) schedule: Option<InjectionSchedule>,
    pub(super) injections: Option<InjectionSummary>,
}

/// How one request went, from the driver's side.
pub(super) enum Step {
    /// The engine is alive and well.
    Alive,
    /// The life ended.
    Ended(LifeEnd),
    /// The soak cannot go on here.
    Environment(String),
}

impl Driver<'_> {
    pub(super) fn running(&self, interrupt: &AtomicBool) -> bool {
        self.environment.is_none()
            && self.start.elapsed() < self.config.duration
            && !interrupt.load(Ordering::Relaxed)
    }

    /// Sends one job of `life` and judges the answer; `recorder` is the life's history so far.
    pub(super) fn request(
        &mut self,
        job: &Job,
        life: &mut Life,
        recorder: &Case,
        nodes: u64,
    ) -> Step {
        let payload = match serde_json::to_value(job) {
            Ok(p) => p,
            Err(e) => return Step::Environment(format!("cannot encode a request: {e}")),
        };
        let execution = match self.slot.run(payload, self.config.chunk_deadline) {
            Ok(e) => e,
            Err(e) => return Step::Environment(format!("cannot start a worker: {e}")),
        };
        // A forced stop (SIGTERM, SIGHUP, a second Ctrl-C) killed the worker: its death is ours,
        // not the engine's, and gives no verdict.
        if crate::interrupt::forced() {
            return Step::Ended(LifeEnd::EndOfRun);
        }
        let reply = reply_of(&execution);
        if matches!(job, Job::SoakOps { .. }) && reply.is_some() {
            // A reply from another process than the one holding the engine: that one died while
            // idle and its replacement has no engine (it answers "soak-ops before soak-start").
            if life.worker_pid != Some(execution.worker_pid) {
                return Step::Ended(LifeEnd::LostIdle);
            }
        }
        if let Some(stats) = reply.as_ref().and_then(|r| r.soak.clone()) {
            self.measure(life, &execution, &stats, nodes);
        }
        let verdict = classify(&execution);
        let poisoned = reply
            .as_ref()
            .is_some_and(|r| matches!(r.result, CaseResult::Poisoned { .. }));
        self.count_injections(life, &execution, &verdict, poisoned);
        if poisoned {
            self.poisoned += 1;
            return Step::Ended(LifeEnd::Poisoned);
        }
        match verdict {
            Verdict::Pass => {
                life.worker_pid = Some(execution.worker_pid);
                Step::Alive
            }
            Verdict::Environment { message } => Step::Environment(message),
            Verdict::Finding { signature, summary } => {
                match self.record_crash(&signature, &summary, recorder, life) {
                    Ok(()) => Step::Ended(LifeEnd::Crash { signature }),
                    Err(message) => Step::Environment(message),
                }
            }
        }
    }

    /// Counts the injected faults that fired during a request (the worker reports them since its
    /// engine started) and, when the request passed, counts them recovered: the worker checked
    /// every guarantee after each. A `fault-not-tolerated` finding is counted apart.
    pub(super) fn count_injections(
        &mut self,
        life: &mut Life,
        execution: &Execution,
        verdict: &Verdict,
        poisoned: bool,
    ) {
        let Some(summary) = self.injections.as_mut() else {
            return;
        };
        if let Verdict::Finding { signature, .. } = verdict {
            if signature.class == FAULT_NOT_TOLERATED {
                summary.not_tolerated += 1;
            }
        }
        let Some(counts) = fired_counts(execution) else {
            return;
        };
        summary.counted = true;
        let passed = matches!(verdict, Verdict::Pass);
        for (kind, now) in counts.by_kind().into_iter().enumerate() {
            let delta = now.saturating_sub(life.fired[kind]);
            life.fired[kind] = now;
            if let Some(k) = summary.kind_mut(kind) {
                k.fired += delta;
                if passed {
                    k.recovered += delta;
                } else if poisoned {
                    k.restarted += delta;
                }
            }
        }
    }

    pub(super) fn measure(
        &mut self,
        life: &mut Life,
        execution: &Execution,
        stats: &SoakStats,
        nodes: u64,
    ) {
        let first = life.replies == 0;
        life.replies += 1;
        life.summary.nodes.push(nodes, first);
        life.summary.rss_bytes.push(stats.rss_bytes, first);
        life.summary.device_bytes.push(stats.device_bytes, first);
        life.summary.steps += stats.request_steps;
        self.steps += stats.request_steps;
        if stats.request_steps > 0 {
            let sample = StepSample {
                seconds: stats.step_seconds,
                steps: stats.request_steps,
                nodes,
            };
            life.samples.push(sample);
            self.samples.push(sample);
        }
        let pid = execution.worker_pid;
        if self.worker.as_ref().map(|(p, _)| *p) != Some(pid) {
            self.retire_worker();
            self.worker = Some((pid, WorkerMemory::default()));
        }
        if let Some((_, w)) = self.worker.as_mut() {
            w.rss_bytes.push(stats.rss_bytes, w.replies == 0);
            w.rss_samples.push(stats.rss_bytes);
            w.replies += 1;
            if first {
                w.rss_at_engine_start.push(stats.rss_bytes, w.engines == 0);
                w.engines += 1;
            }
        }
    }

    pub(super) fn retire_worker(&mut self) {
        if let Some((_, w)) = self.worker.take() {
            if self
                .longest_worker
                .as_ref()
                .is_none_or(|l| w.replies > l.replies)
            {
                self.longest_worker = Some(w);
            }
        }
    }

    pub(super) fn record_crash(
        &mut self,
        signature: &Signature,
        summary: &str,
        recorder: &Case,
        life: &Life,
    ) -> Result<(), String> {
        let now = self.start.elapsed().as_secs_f64();
        self.crash_times.push(now);
        self.crash_uptimes
            .push(life.started.elapsed().as_secs_f64());
        let number = self.crash_times.len();
        let group = self
            .groups
            .entry(signature.clone())
            .or_insert_with(|| CrashGroup {
                signature: signature.clone(),
                summary: summary.to_string(),
                count: 0,
                first_at: now,
                last_at: now,
                saved: Vec::new(),
                shortest: None,
                replay: None,
                shortest_ops: usize::MAX,
                shortest_deadline: Duration::ZERO,
            });
        if group.count == 0 {
            self.bar.println(format!("crash: {signature}: {summary}"));
        }
        group.count += 1;
        group.last_at = now;
        let Some(dir) = &self.config.out else {
            return Ok(());
        };
        if group.saved.len() >= self.config.keep_cases {
            return Ok(());
        }
        let path = dir
            .join("crashes")
            .join(format!("{number:05}-{}.json", signature.id()));
        let mut case = recorder.clone();
        case.expect = Some(Expectation::Open {
            signature: signature.to_string(),
        });
        let when = match life.summary.chunks {
            0 => "at its start".to_string(),
            n => format!("in its chunk {n}"),
        };
        case.provenance = Some(Provenance {
            found_by: self.config.found_by.clone(),
            seed: Some(self.config.seed),
            date: None,
            note: Some(format!(
                "soak flight recorder: engine #{} {when}, {:.2} s and {} steps into its life: {summary}",
                life.summary.index,
                life.started.elapsed().as_secs_f64(),
                life.summary.steps
            )),
        });
        write_json(&path, &case).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if case.ops.len() < group.shortest_ops {
            group.shortest_ops = case.ops.len();
            group.shortest = Some(path.clone());
            // One request replays the whole life: give it the life's busy time twice over (the
            // oracles run after every op, as in the soak) on top of one chunk's watchdog.
            group.shortest_deadline =
                self.config.chunk_deadline + Duration::from_secs_f64(2.0 * life.last_sent);
        }
        group.saved.push(path);
        Ok(())
    }

    pub(super) fn end_life(&mut self, mut life: Life, end: LifeEnd) {
        if end == LifeEnd::Retired {
            self.retired += 1;
        }
        if end == LifeEnd::LostIdle {
            self.lost_idle += 1;
            self.bar
                .println("a worker died between two requests; starting a new engine");
        }
        life.summary.end = end;
        life.summary.seconds = life.started.elapsed().as_secs_f64();
        life.summary.step_time = StepTime::of(&life.samples);
        if self
            .longest_life
            .as_ref()
            .is_none_or(|l| life.summary.steps > l.steps)
        {
            self.longest_life = Some(life.summary);
        }
    }

    /// One engine life: start, chunks until it ends.
    pub(super) fn life(&mut self, stream: &mut OpStream, interrupt: &AtomicBool) {
        self.engines += 1;
        let start_case = stream.start();
        let mut life = Life::new(self.engines, start_case.seed);
        let mut tally = RecorderTally::of_start(&start_case);
        let mut recorder = start_case.clone();
        let start = Job::SoakStart { case: start_case };
        match self.request(&start, &mut life, &recorder, stream.nodes()) {
            Step::Alive => {}
            Step::Ended(end) => return self.end_life(life, end),
            Step::Environment(message) => {
                self.environment = Some(message);
                return self.end_life(life, LifeEnd::EndOfRun);
            }
        }
        while self.running(interrupt) {
            if life.summary.steps >= self.config.life_steps {
                return self.end_life(life, LifeEnd::Retired);
            }
            let mut ops = stream.chunk();
            if let Some(schedule) = self.schedule.as_mut() {
                ops = schedule.place(self.start.elapsed().as_secs_f64(), ops);
            }
            if !tally.admits(&ops) {
                return self.end_life(life, LifeEnd::Retired);
            }
            self.count_armed(&ops);
            tally.add(&ops);
            recorder.ops.extend(ops.iter().cloned());
            self.chunks += 1;
            self.ops += ops.len() as u64;
            life.summary.chunks += 1;
            life.last_sent = life.started.elapsed().as_secs_f64();
            let job = Job::SoakOps { ops };
            let step = self.request(&job, &mut life, &recorder, stream.nodes());
            self.draw(&life);
            match step {
                Step::Alive => {}
                Step::Ended(end) => return self.end_life(life, end),
                Step::Environment(message) => {
                    self.environment = Some(message);
                    break;
                }
            }
        }
        self.end_life(life, LifeEnd::EndOfRun);
    }

    pub(super) fn count_armed(&mut self, ops: &[Op]) {
        let Some(summary) = self.injections.as_mut() else {
            return;
        };
        for op in ops {
            if let Op::Inject { fault } = op {
                if let Some(k) = summary.kind_mut(kind_index(fault)) {
                    k.armed += 1;
                }
            }
        }
    }

    pub(super) fn draw(&self, life: &Life) {
        let crashes: u64 = self.groups.values().map(|g| g.count).sum();
        let injected = self
            .injections
            .as_ref()
            .map(|i| format!(", {} injected faults fired", i.fired()))
            .unwrap_or_default();
        self.bar.set_message(
            format!(
            "{} steps, {} crash(es) under {} signature(s), engine #{} at {} nodes, RSS {:.1} MiB",
            self.steps,
            crashes,
            self.groups.len(),
            life.summary.index,
            life.summary.nodes.last,
            mib(life.summary.rss_bytes.last)
        ) + &injected,
        );
    }

    /// Replays the shortest saved case of each signature as a plain case in a fresh worker.
    pub(super) fn replay(&mut self, interrupt: &AtomicBool) {
        let mut slot = WorkerSlot::new(self.config.worker.clone(), SupervisorConfig::default());
        for group in self.groups.values_mut() {
            if interrupt.load(Ordering::Relaxed) {
                break;
            }
            let Some(path) = &group.shortest else {
                continue;
            };
            let case = match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| Case::from_json(&t).map_err(|e| e.to_string()))
            {
                Ok(c) => c,
                Err(e) => {
                    group.replay = Some(format!("unreadable: {e}"));
                    continue;
                }
            };
            let (verdict, _) =
                crate::client::run::run_isolated(&mut slot, &case, false, group.shortest_deadline);
            group.replay = Some(match verdict {
                Verdict::Pass => "pass".to_string(),
                Verdict::Finding { signature, .. } => signature.to_string(),
                Verdict::Environment { message } => format!("not run: {message}"),
            });
        }
        slot.shutdown();
    }
}

pub(super) fn reply_of(execution: &Execution) -> Option<JobReply> {
    match &execution.outcome {
        crate::isolate::Outcome::Reply { payload } => serde_json::from_value(payload.clone()).ok(),
        _ => None,
    }
}

pub(super) fn spinner(progress: bool) -> indicatif::ProgressBar {
    if !progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
