/*!
Soak: the server's life in a worker.

One long-lived engine, like the layout server of the original report, fed a deterministic stream of
chunks — a few mutations and resizes, then steps — through an isolated worker. The driver keeps a
flight recorder: the engine's start state and every op sent since, which is the exact history, so
when the worker dies (or an oracle fails) it is saved as a case that replays and minimizes. Then the
engine is restarted as a supervisor would, on a fresh start graph from the same seeded stream.
*/

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use forcefield::Fault;

use crate::artifacts::write_json;
use crate::case::{BackendKind, Expectation, Op, Provenance};
use crate::generate::{generate_case_from_seed, random_plan, realize, GenConfig, Model};
use crate::isolate::{Outcome, SupervisorConfig, WorkerCommand, WorkerSlot};
use crate::job::{Job, JobReply};
use crate::signature::{classify, Signature, Verdict};

/// Flight-recorder cases kept per signature (every crash is still counted).
pub const SAVED_PER_SIGNATURE: usize = 5;

/// Settings of a soak run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Backend.
    pub backend: BackendKind,
    /// How long to run.
    pub duration: Duration,
    /// Seed of the op stream.
    pub seed: u64,
    /// Planted faults.
    pub faults: Vec<Fault>,
    /// Watchdog per chunk.
    pub chunk_deadline: Duration,
    /// Steps at the end of every chunk.
    pub chunk_steps: u64,
    /// How to start a worker.
    pub worker: WorkerCommand,
    /// Where flight-recorder cases go (`crashes/`).
    pub out: Option<PathBuf>,
}

/// Crashes of one signature.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrashGroup {
    /// The signature.
    pub signature: Signature,
    /// How many times.
    pub count: u64,
    /// Seconds from the start to the first.
    pub first_at: f64,
    /// Flight-recorder cases saved.
    pub saved: Vec<PathBuf>,
}

/// What a soak run saw (`soak.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SoakReport {
    /// Always `forcefield-soak/1`.
    pub format: String,
    /// Backend.
    pub backend: BackendKind,
    /// Seed.
    pub seed: u64,
    /// Planted faults.
    pub faults: Vec<Fault>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether Ctrl-C cut it short.
    pub interrupted: bool,
    /// Engines started (1 + restarts).
    pub engines: u64,
    /// Chunks sent.
    pub chunks: u64,
    /// Steps completed.
    pub steps: u64,
    /// Crashes by signature.
    pub crashes: Vec<CrashGroup>,
    /// Mean seconds between crashes (over the whole run), when there were any.
    pub mean_seconds_between_crashes: Option<f64>,
    /// Worker resident memory at the first and last chunk of the longest engine life, and its max.
    pub rss_first_bytes: u64,
    /// See `rss_first_bytes`.
    pub rss_last_bytes: u64,
    /// See `rss_first_bytes`.
    pub rss_max_bytes: u64,
    /// Device bytes at the first and last chunk of the longest engine life.
    pub device_first_bytes: u64,
    /// See `device_first_bytes`.
    pub device_last_bytes: u64,
    /// Mean seconds per step over the first and the last 10% of chunks (all lives together).
    pub step_seconds_first: f64,
    /// See `step_seconds_first`.
    pub step_seconds_last: f64,
}

impl SoakReport {
    /// Total crashes.
    pub fn total_crashes(&self) -> u64 {
        self.crashes.iter().map(|c| c.count).sum()
    }

    /// A markdown summary.
    pub fn markdown(&self) -> String {
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        let mut s = format!(
            "soak on {} for {:.0} s, seed {}{}: {} steps in {} chunks, {} engine(s), {} crash(es)\n",
            self.backend.name(),
            self.seconds,
            self.seed,
            if self.interrupted { " (interrupted)" } else { "" },
            self.steps,
            self.chunks,
            self.engines,
            self.total_crashes()
        );
        if let Some(m) = self.mean_seconds_between_crashes {
            s.push_str(&format!("mean interval between crashes: {m:.2} s\n"));
        }
        s.push_str(&format!(
            "memory (longest engine life): worker RSS {:.1} -> {:.1} MiB (max {:.1}), device {:.2} -> {:.2} MiB\n",
            mb(self.rss_first_bytes),
            mb(self.rss_last_bytes),
            mb(self.rss_max_bytes),
            mb(self.device_first_bytes),
            mb(self.device_last_bytes)
        ));
        s.push_str(&format!(
            "step time: {:.3} ms (first 10% of chunks) -> {:.3} ms (last 10%)\n",
            self.step_seconds_first * 1e3,
            self.step_seconds_last * 1e3
        ));
        if !self.crashes.is_empty() {
            s.push_str(
                "\n| signature | crashes | first (s) | flight recorder |\n|---|---|---|---|\n",
            );
            for c in &self.crashes {
                s.push_str(&format!(
                    "| `{}` | {} | {:.2} | {} |\n",
                    c.signature,
                    c.count,
                    c.first_at,
                    c.saved
                        .first()
                        .map_or("-".to_string(), |p| p.display().to_string())
                ));
            }
        }
        s
    }
}

/// One chunk's measurements.
struct Sample {
    step_seconds: f64,
    steps: u64,
}

fn reply_of(outcome: &Outcome) -> Option<JobReply> {
    match outcome {
        Outcome::Reply { payload } => serde_json::from_value(payload.clone()).ok(),
        _ => None,
    }
}

/// Runs a soak until the duration is over or `interrupt` is set.
pub fn run_soak(config: &SoakConfig, interrupt: &AtomicBool) -> std::io::Result<SoakReport> {
    let start = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let gen = GenConfig {
        faults: config.faults.clone(),
        backend: config.backend,
        large_probability: 0.0,
        ..GenConfig::default()
    };
    let mut slot = WorkerSlot::new(config.worker.clone(), SupervisorConfig::default());
    let mut groups: BTreeMap<Signature, CrashGroup> = BTreeMap::new();
    let (mut engines, mut chunks, mut steps) = (0u64, 0u64, 0u64);
    let mut samples: Vec<Sample> = Vec::new();
    // Memory of the longest engine life: (chunks, rss first, rss last, rss max, dev first, dev last).
    let mut longest = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let running =
        |start: &Instant| start.elapsed() < config.duration && !interrupt.load(Ordering::Relaxed);
    while running(&start) {
        // A new engine life.
        engines += 1;
        let mut first = generate_case_from_seed(rng.gen(), &gen);
        first.ops.clear();
        let mut recorder = first.clone();
        let mut model = Model::new(&first.graph, &gen);
        let mut life = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut failure = None;
        let payload = serde_json::to_value(Job::SoakStart {
            case: first.clone(),
        })
        .unwrap_or_default();
        match slot.run(payload, config.chunk_deadline) {
            Ok(e) => {
                if let verdict @ Verdict::Finding { .. } = classify(&e) {
                    failure = Some(verdict);
                }
            }
            Err(e) => return Err(std::io::Error::other(format!("cannot start a worker: {e}"))),
        }
        while failure.is_none() && running(&start) {
            let mut ops: Vec<Op> = Vec::new();
            for _ in 0..rng.gen_range(1..=4) {
                ops.extend(realize(&random_plan(&mut rng, &gen), &mut model));
            }
            ops.push(Op::Step {
                count: config.chunk_steps,
            });
            recorder.ops.extend(ops.iter().cloned());
            let payload = serde_json::to_value(Job::SoakOps { ops }).unwrap_or_default();
            let execution = match slot.run(payload, config.chunk_deadline) {
                Ok(e) => e,
                Err(e) => return Err(std::io::Error::other(format!("cannot start a worker: {e}"))),
            };
            chunks += 1;
            match classify(&execution) {
                Verdict::Pass => {}
                Verdict::Environment { message } => return Err(std::io::Error::other(message)),
                finding => failure = Some(finding),
            }
            if let Some(stats) = reply_of(&execution.outcome).and_then(|r| r.soak) {
                steps += stats.request_steps;
                if stats.request_steps > 0 {
                    samples.push(Sample {
                        step_seconds: stats.step_seconds,
                        steps: stats.request_steps,
                    });
                }
                if life.0 == 0 {
                    life.1 = stats.rss_bytes;
                    life.4 = stats.device_bytes;
                }
                life.0 += 1;
                life.2 = stats.rss_bytes;
                life.3 = life.3.max(stats.rss_bytes);
                life.5 = stats.device_bytes;
            }
        }
        if life.0 > longest.0 {
            longest = life;
        }
        if let Some(Verdict::Finding { signature, summary }) = failure {
            let group = groups
                .entry(signature.clone())
                .or_insert_with(|| CrashGroup {
                    signature: signature.clone(),
                    count: 0,
                    first_at: start.elapsed().as_secs_f64(),
                    saved: Vec::new(),
                });
            group.count += 1;
            if let (Some(dir), true) = (&config.out, group.saved.len() < SAVED_PER_SIGNATURE) {
                let path =
                    dir.join("crashes")
                        .join(format!("{:04}-{}.json", engines, signature.id()));
                recorder.expect = Some(Expectation::Open {
                    signature: signature.to_string(),
                });
                recorder.provenance = Some(Provenance {
                    found_by: format!("forcefield soak --seed {}", config.seed),
                    seed: Some(config.seed),
                    date: None,
                    note: Some(format!(
                        "flight recorder of engine life {engines}: {summary}"
                    )),
                });
                write_json(&path, &recorder)?;
                group.saved.push(path);
            }
        }
    }
    slot.shutdown();
    let total: u64 = groups.values().map(|g| g.count).sum();
    let tenth = (samples.len() / 10).max(1);
    let mean = |s: &[Sample]| {
        let steps: u64 = s.iter().map(|x| x.steps).sum();
        if steps == 0 {
            0.0
        } else {
            s.iter().map(|x| x.step_seconds).sum::<f64>() / steps as f64
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    Ok(SoakReport {
        format: "forcefield-soak/1".to_string(),
        backend: config.backend,
        seed: config.seed,
        faults: config.faults.clone(),
        seconds,
        interrupted: interrupt.load(Ordering::Relaxed),
        engines,
        chunks,
        steps,
        mean_seconds_between_crashes: (total > 0).then(|| seconds / total as f64),
        crashes: groups.into_values().collect(),
        rss_first_bytes: longest.1,
        rss_last_bytes: longest.2,
        rss_max_bytes: longest.3,
        device_first_bytes: longest.4,
        device_last_bytes: longest.5,
        step_seconds_first: mean(&samples[..tenth.min(samples.len())]),
        step_seconds_last: mean(&samples[samples.len().saturating_sub(tenth)..]),
    })
}

/// Writes `soak.json` under `dir`.
pub fn write_report(dir: &Path, report: &SoakReport) -> std::io::Result<()> {
    write_json(&dir.join("soak.json"), report)
}
