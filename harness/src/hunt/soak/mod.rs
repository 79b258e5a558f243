/*!
Soak: the server's life in a worker.

One long-lived engine, like the layout server of the original report, fed a deterministic stream of
chunks through an isolated worker: a few mutations and resizes (growth past capacity, removals,
shrink to fit, regrowth, edges, `set_params`), then steps. This module is responsible for

* the op stream ([`OpStream`]): a pure function of the seed. Each engine life starts from a graph of
  a random family; chunks are realized against the generator's [`Model`] so every op is valid for
  the state it meets. The graph's size wanders within `--max-nodes`: near the top, a chunk may drop
  half the nodes and shrink to fit, so growth past capacity keeps happening all life long instead of
  the graph settling at its cap;
* the flight recorder: the life's start case plus every op sent since, the exact history, so it
  replays. When the worker dies (signal, panic, hang, protocol error) or a reply reports a failed
  oracle, the recorder is saved as a case with `expect: open <signature>` and the engine is
  restarted as a supervisor would (the [`WorkerSlot`] respawns a dead worker; a fresh engine gets a
  new start graph from the continuing stream);
* injected environment faults (`--inject-rate`, [`InjectionSchedule`]): `inject` ops placed in
  the chunks on a seeded schedule. The worker applies every op under the fault-tolerance oracle
  (typed error, state as before the op, `recover()` after a lost context, the retried op
  succeeds), so the engine keeps going through each fault; one that is not tolerated is a
  `fault-not-tolerated` crash with its flight recorder saved like any other. The workers report
  the faults that fired; the report counts them by kind, armed / fired / recovered;
* the measurements ([`SoakReport`]): steps, crashes by signature, the interval between crashes,
  memory (worker RSS and device bytes) over the longest engine life and the longest-serving worker
  process with a verdict on whether it stayed flat ([`MemoryTrend`]), and step-time drift.

A life is also retired (a planned restart, not a crash) before its recorder would break the case
limits of [`crate::case`] (`--life-steps` can make lives shorter): a recorder that cannot be loaded
could not be replayed.

# What the numbers mean

* Every crash is counted; only the first `keep_cases` recorders of a signature are saved (a crash
  every few milliseconds would otherwise write thousands of files a minute). At the end, the saved
  recorder with the fewest ops of each signature is replayed as a plain case in a fresh worker, and
  the signature it gave is reported next to the one the soak saw.
* The mean interval between crashes is `(last - first) / (crashes - 1)`, restarts included, as a
  supervisor's log would show it; the mean uptime before a crash counts from each engine's start.
* Memory: worker RSS and the engine's device bytes, first / last / max over the replies of the
  longest engine life (most steps); and, for the worker process that answered most requests, RSS
  over all its replies and at each engine's start. A worker outlives failed oracles and planned
  restarts, so a leak past an engine's drop shows as RSS at engine start creeping up.
* Step-time drift: mean seconds per step over the first and the last tenth of the chunks that
  stepped, in the order they ran, over the whole run (all lives) and within the longest life, each
  window with its mean live node count, since step time follows the graph's size.

**Architecture Invariant:** the driver never runs engine code and never looks at which fault is
planted: crashes are whatever [`classify`] makes of the worker's executions.
*/

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use forcefield::Fault;

use crate::artifacts::write_json;
use crate::case::BackendKind;
use crate::isolate::{SupervisorConfig, WorkerCommand, WorkerSlot};

mod injection;
mod memory;
mod op_stream;
mod recorder;
mod report;
mod session;
mod step_time;

pub(crate) use injection::{InjectionSchedule, InjectionSummary};
pub(crate) use memory::MemoryTrend;
pub(crate) use op_stream::OpStream;
pub(crate) use report::{mean_interval, SoakReport};
use session::{spinner, Driver};
pub(crate) use step_time::StepTime;

/// The signature class of an injected fault the engine did not tolerate.
const FAULT_NOT_TOLERATED: &str = "fault-not-tolerated";

/// The format string of `soak.json`.
pub const SOAK_FORMAT: &str = "forcefield-soak/1";

/// Settings of a soak run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Backend of every engine.
    pub backend: BackendKind,
    /// How long to run.
    pub duration: Duration,
    /// Seed of the op stream.
    pub seed: u64,
    /// Planted faults.
    pub faults: Vec<Fault>,
    /// Steps at the end of every chunk.
    pub chunk_steps: u64,
    /// Watchdog per request: a chunk still running after this is a hang.
    pub chunk_deadline: Duration,
    /// The graph's size wanders below this many live nodes.
    pub max_nodes: u32,
    /// Retire an engine (a planned restart) after this many steps; the case limits apply anyway.
    pub life_steps: u64,
    /// Flight-recorder cases saved per signature (every crash is counted).
    pub keep_cases: usize,
    /// How to start a worker.
    pub worker: WorkerCommand,
    /// Where `crashes/` (flight-recorder cases) goes; nothing is saved without it.
    pub out: Option<PathBuf>,
    /// The command line, recorded in each saved case's provenance.
    pub found_by: String,
    /// Draw a spinner with running counts on stderr.
    pub progress: bool,
    /// After the run, replay one saved case per signature in a fresh worker.
    pub replay: bool,
    /// Injected environment faults per second of each kind (0: none); see [`InjectionSchedule`].
    pub inject_rate: f64,
}

/// Runs a soak until the duration is over, `interrupt` is set (Ctrl-C) or the environment fails
/// (then [`SoakReport::environment_message`] says why). Never panics on worker trouble.
pub fn run_soak(config: &SoakConfig, interrupt: &AtomicBool) -> SoakReport {
    let mut driver = Driver {
        config,
        start: Instant::now(),
        slot: WorkerSlot::new(config.worker.clone(), SupervisorConfig::default()),
        groups: BTreeMap::new(),
        crash_times: Vec::new(),
        crash_uptimes: Vec::new(),
        samples: Vec::new(),
        longest_life: None,
        worker: None,
        longest_worker: None,
        engines: 0,
        retired: 0,
        lost_idle: 0,
        poisoned: 0,
        chunks: 0,
        ops: 0,
        steps: 0,
        environment: None,
        bar: spinner(config.progress),
        schedule: (config.inject_rate > 0.0)
            .then(|| InjectionSchedule::new(config.seed, config.inject_rate)),
        injections: (config.inject_rate > 0.0).then(|| InjectionSummary::new(config.inject_rate)),
    };
    let mut stream = OpStream::new(
        config.seed,
        config.backend,
        &config.faults,
        config.max_nodes,
        config.chunk_steps,
    );
    while driver.running(interrupt) {
        driver.life(&mut stream, interrupt);
    }
    let seconds = driver.start.elapsed().as_secs_f64();
    driver.slot.shutdown();
    driver.retire_worker();
    driver.bar.finish_and_clear();
    if config.replay && !interrupt.load(Ordering::Relaxed) {
        driver.replay(interrupt);
    }
    let uptimes = &driver.crash_uptimes;
    let memory = driver
        .longest_worker
        .as_ref()
        .and_then(|w| MemoryTrend::of(&w.rss_samples));
    SoakReport {
        format: SOAK_FORMAT.to_string(),
        backend: config.backend,
        seed: config.seed,
        faults: config.faults.clone(),
        chunk_steps: config.chunk_steps,
        max_nodes: config.max_nodes,
        seconds,
        interrupted: interrupt.load(Ordering::Relaxed),
        engines: driver.engines,
        retired: driver.retired,
        workers: driver.slot.spawns(),
        lost_idle: driver.lost_idle,
        poisoned: driver.poisoned,
        chunks: driver.chunks,
        ops: driver.ops,
        steps: driver.steps,
        mean_seconds_between_crashes: mean_interval(&driver.crash_times),
        mean_uptime_before_crash: (!uptimes.is_empty())
            .then(|| uptimes.iter().sum::<f64>() / uptimes.len() as f64),
        crashes: driver.groups.into_values().collect(),
        longest_life: driver.longest_life,
        longest_worker: driver.longest_worker,
        step_time: StepTime::of(&driver.samples),
        memory,
        injections: driver.injections,
        environment_message: driver.environment,
    }
}

/// Writes `soak.json` under `dir`, atomically.
pub fn write_report(dir: &Path, report: &SoakReport) -> std::io::Result<()> {
    write_json(&dir.join("soak.json"), report)
}

#[cfg(test)]
mod tests;
