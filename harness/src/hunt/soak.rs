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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use forcefield::{EnvFault, Fault};

use crate::artifacts::write_json;
use crate::case::generate::{
    generate_case_from_seed, random_plan, realize, GenConfig, Model, OpPlan,
};
use crate::case::{
    BackendKind, Case, CaseGraph, Expectation, Op, Provenance, MAX_CASE_EDGES, MAX_CASE_NODES,
    MAX_CASE_OPS, MAX_CASE_STEPS,
};
use crate::client::signature::{classify, Signature, Verdict};
use crate::isolate::{Execution, SupervisorConfig, WorkerCommand, WorkerSlot};
use crate::worker::execute::CaseResult;
use crate::worker::job::{Job, JobReply, SoakStats};

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

// ---- the op stream ----------------------------------------------------------------------------

/// Live nodes above this fraction of `max_nodes` make a drain (half the nodes removed, then
/// shrink to fit) possible in the next chunk.
const DRAIN_HIGH_WATER: f64 = 0.75;
/// Probability of a drain in a chunk that starts above the high-water mark.
const DRAIN_PROBABILITY: f64 = 0.3;
/// Most random plans in a chunk (at least one).
const MAX_PLANS_PER_CHUNK: u32 = 4;

/// The deterministic stream of engine lives and chunks of one soak.
pub struct OpStream {
    rng: ChaCha8Rng,
    gen: GenConfig,
    chunk_steps: u64,
    model: Model,
    nodes: u64,
}

impl OpStream {
    /// The stream of `seed`; `max_nodes` bounds live nodes (edges: four times as many).
    pub fn new(
        seed: u64,
        backend: BackendKind,
        faults: &[Fault],
        max_nodes: u32,
        chunk_steps: u64,
    ) -> Self {
        let max_nodes = max_nodes.max(2);
        let gen = GenConfig {
            max_small_nodes: 64.min(max_nodes),
            max_large_nodes: 64.min(max_nodes),
            large_probability: 0.0,
            max_live_nodes: max_nodes,
            max_live_edges: max_nodes.saturating_mul(4),
            faults: faults.to_vec(),
            backend,
            ..GenConfig::default()
        };
        let model = Model::new(&CaseGraph::default(), &gen);
        OpStream {
            rng: ChaCha8Rng::seed_from_u64(seed),
            gen,
            chunk_steps: chunk_steps.max(1),
            model,
            nodes: 0,
        }
    }

    /// The start of a new engine life: a graph of a random family with its parameters and the
    /// faults, no ops. Chunks from now on apply to it.
    pub fn start(&mut self) -> Case {
        let mut case = generate_case_from_seed(self.rng.gen(), &self.gen);
        case.ops.clear();
        self.model = Model::new(&case.graph, &self.gen);
        self.nodes = case.graph.num_nodes;
        case
    }

    /// Live nodes after the ops given so far in this life.
    pub fn nodes(&self) -> u64 {
        self.nodes
    }

    /// The next chunk: a few mutations and resizes, then `chunk_steps` steps.
    pub fn chunk(&mut self) -> Vec<Op> {
        let mut plans = Vec::new();
        let high_water = f64::from(self.gen.max_live_nodes) * DRAIN_HIGH_WATER;
        if self.nodes as f64 > high_water && self.rng.gen_bool(DRAIN_PROBABILITY) {
            // A server dropping a batch of nodes and trimming its memory; the growth that follows
            // goes past the shrunk capacity again.
            plans.push(OpPlan::RemoveNodes {
                count: (self.nodes / 2) as u32,
                salt: self.rng.gen(),
            });
            plans.push(OpPlan::ShrinkToFit);
        }
        for _ in 0..self.rng.gen_range(1..=MAX_PLANS_PER_CHUNK) {
            plans.push(random_plan(&mut self.rng, &self.gen));
        }
        let mut ops: Vec<Op> = plans
            .iter()
            .flat_map(|p| realize(p, &mut self.model))
            .collect();
        ops.push(Op::Step {
            count: self.chunk_steps,
        });
        for op in &ops {
            self.nodes = nodes_after(op, self.nodes);
        }
        ops
    }
}

/// The live node count after `op` (a valid op), starting from `nodes`; duplicates and ids out of
/// range remove nothing, as in the engine.
fn nodes_after(op: &Op, nodes: u64) -> u64 {
    match op {
        Op::AddNodes { count, .. } => nodes.saturating_add(*count),
        Op::RemoveNodes { ids } => {
            let distinct: BTreeSet<u32> = ids
                .iter()
                .copied()
                .filter(|&i| u64::from(i) < nodes)
                .collect();
            nodes - distinct.len() as u64
        }
        _ => nodes,
    }
}

// ---- injected faults --------------------------------------------------------------------------

/// The kinds of injected fault, in report order (as [`EnvFault::KINDS`]).
const KINDS: usize = 4;

fn kind_index(fault: &EnvFault) -> usize {
    match fault {
        EnvFault::FailAlloc { .. } => 0,
        EnvFault::FailCopy { .. } => 1,
        EnvFault::FailLaunch { .. } => 2,
        EnvFault::LoseContext { .. } => 3,
    }
}

/// Most allocations an injected allocation fault lets through before failing one: allocations come
/// in bursts (a resize allocates every buffer of its size class), so failing the second or third of
/// a burst reaches the undo of a half-done resize as well as its start.
const MAX_ALLOC_NTH: u32 = 3;

/// The seeded schedule of injected environment faults.
///
/// Each kind (fail-alloc, fail-copy, fail-launch, lose-context) is a Poisson process of `rate`
/// faults per second of soak time: after a fault of a kind is placed, the next one is due an
/// exponentially distributed gap later. A due fault is placed in the next chunk sent, as an `inject`
/// op before a random op of the chunk (at most one of each kind per chunk: the engine holds one
/// armed fault per kind). The gaps, the placements and the faults (`nth` of an allocation fault) are
/// drawn from an RNG of the seed alone, separate from the op stream's, so switching injection on
/// changes no graph op; which chunk a fault lands in follows the clock, and the flight recorder
/// keeps the exact placement, so every life replays.
pub struct InjectionSchedule {
    rng: ChaCha8Rng,
    rate: f64,
    /// Seconds from the soak's start when each kind's next fault is due.
    due: [f64; KINDS],
}

impl InjectionSchedule {
    /// The schedule of `seed` at `rate` faults per second of each kind (`rate > 0`).
    pub fn new(seed: u64, rate: f64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(forcefield::hash::mix3(seed, 0, 0x696e6a));
        let mut due = [0.0; KINDS];
        for d in &mut due {
            *d = exponential(&mut rng, rate);
        }
        InjectionSchedule { rng, rate, due }
    }

    /// `chunk` with an `inject` op before a random op for each kind due by `now` seconds.
    pub fn place(&mut self, now: f64, mut chunk: Vec<Op>) -> Vec<Op> {
        for kind in 0..KINDS {
            if self.due[kind] > now {
                continue;
            }
            self.due[kind] = now + exponential(&mut self.rng, self.rate);
            let fault = match kind {
                0 => EnvFault::FailAlloc {
                    nth: self.rng.gen_range(1..=MAX_ALLOC_NTH),
                },
                1 => EnvFault::FailCopy { nth: 1 },
                2 => EnvFault::FailLaunch { nth: 1 },
                _ => EnvFault::LoseContext { nth: 1 },
            };
            let at = self.rng.gen_range(0..chunk.len().max(1));
            chunk.insert(at.min(chunk.len()), Op::Inject { fault });
        }
        chunk
    }
}

/// A draw from the exponential distribution of mean `1 / rate`.
fn exponential(rng: &mut ChaCha8Rng, rate: f64) -> f64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    -u.ln() / rate
}

/// Injected faults of one kind over a soak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    /// `inject` ops sent (armed). Some never fire: arming replaces a fault of the same kind still
    /// armed, and a recovery from a lost context drops every armed fault, as the engine does.
    pub armed: u64,
    /// Faults that fired (a backend call failed because of them), as the workers count them.
    pub fired: u64,
    /// Fired faults whose request then passed every check: typed error, state as before the op
    /// (after `recover()` for a lost context), the retried op succeeded, invariants held after.
    pub recovered: u64,
    /// Fired faults that poisoned the worker process (a lost context on CUDA): the life ended and a
    /// new engine started in a new worker.
    pub restarted: u64,
}

/// What the soak's injected faults came to (`soak.json`, `injections`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InjectionSummary {
    /// Faults per second of each kind.
    pub rate: f64,
    /// By kind, in the order of [`EnvFault::KINDS`].
    pub kinds: BTreeMap<String, KindCounts>,
    /// Findings of class `fault-not-tolerated` (each also a crash group with flight recorders).
    pub not_tolerated: u64,
    /// Whether the workers reported how many faults fired. A worker that does not leaves
    /// `fired` and `recovered` at 0, and then nothing can be said about recovery.
    pub counted: bool,
}

impl InjectionSummary {
    fn new(rate: f64) -> Self {
        InjectionSummary {
            rate,
            kinds: EnvFault::KINDS
                .iter()
                .map(|k| (k.to_string(), KindCounts::default()))
                .collect(),
            not_tolerated: 0,
            counted: false,
        }
    }

    fn kind_mut(&mut self, index: usize) -> Option<&mut KindCounts> {
        self.kinds.get_mut(EnvFault::KINDS[index])
    }

    /// Faults that fired, all kinds.
    pub fn fired(&self) -> u64 {
        self.kinds.values().map(|k| k.fired).sum()
    }

    /// Whether every fault that fired was recovered from and none was not tolerated.
    pub fn all_recovered(&self) -> bool {
        self.counted
            && self.not_tolerated == 0
            && self
                .kinds
                .values()
                .all(|k| k.recovered + k.restarted == k.fired)
    }
}

/// The injection counts a worker sends with each soak reply (`soak.injections`): faults fired in
/// the session's engine since it started, by kind.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
struct FiredCounts {
    #[serde(default)]
    alloc: u64,
    #[serde(default)]
    copy: u64,
    #[serde(default)]
    launch: u64,
    #[serde(default)]
    context: u64,
}

impl FiredCounts {
    fn by_kind(&self) -> [u64; KINDS] {
        [self.alloc, self.copy, self.launch, self.context]
    }
}

/// The fired counts of a soak reply, when the worker sends them.
fn fired_counts(execution: &Execution) -> Option<FiredCounts> {
    match &execution.outcome {
        crate::isolate::Outcome::Reply { payload } => payload
            .get("soak")
            .and_then(|s| s.get("injections"))
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
        _ => None,
    }
}

/// What a life's flight recorder holds against the case limits that [`Case::validate`] enforces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecorderTally {
    /// Operations.
    pub ops: u64,
    /// Steps in all.
    pub steps: u64,
    /// Nodes created in all (start graph plus every `add_nodes`).
    pub nodes_created: u64,
    /// Edges created in all (start graph plus every `add_edges`).
    pub edges_created: u64,
}

impl RecorderTally {
    /// The tally of a start case (its ops are ignored: a life starts with none).
    pub fn of_start(case: &Case) -> Self {
        RecorderTally {
            ops: 0,
            steps: 0,
            nodes_created: case.graph.num_nodes,
            edges_created: case.graph.edges.len() as u64,
        }
    }

    fn with(&self, chunk: &[Op]) -> Self {
        let mut t = self.clone();
        for op in chunk {
            t.ops += 1;
            match op {
                Op::Step { count } => t.steps += count,
                Op::AddNodes { count, .. } => t.nodes_created += count,
                Op::AddEdges { edges } => t.edges_created += edges.len() as u64,
                _ => {}
            }
        }
        t
    }

    /// Whether the recorder with `chunk` appended is still a loadable case. Live counts need no
    /// check here: the stream's model keeps them far below the limits.
    pub fn admits(&self, chunk: &[Op]) -> bool {
        let t = self.with(chunk);
        t.ops <= MAX_CASE_OPS as u64
            && t.steps <= MAX_CASE_STEPS
            && t.nodes_created <= 4 * MAX_CASE_NODES
            && t.edges_created <= MAX_CASE_EDGES
    }

    /// Appends `chunk`.
    pub fn add(&mut self, chunk: &[Op]) {
        *self = self.with(chunk);
    }
}

// ---- measurements -----------------------------------------------------------------------------

/// One chunk's steps, for step-time drift.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSample {
    /// Seconds spent stepping.
    pub seconds: f64,
    /// Steps taken.
    pub steps: u64,
    /// Live nodes at the end of the chunk, where its closing steps run.
    pub nodes: u64,
}

/// Step-time drift: mean seconds per step over the first and the last tenth of the chunks (in the
/// order they ran), with the mean live node count of each window, since step time grows with the
/// graph and the graph's size wanders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTime {
    /// Chunks that stepped.
    pub chunks: u64,
    /// Chunks in each window.
    pub window: u64,
    /// Mean seconds per step, first window.
    pub first_seconds_per_step: f64,
    /// Mean seconds per step, last window.
    pub last_seconds_per_step: f64,
    /// Mean live nodes, first window.
    pub first_mean_nodes: f64,
    /// Mean live nodes, last window.
    pub last_mean_nodes: f64,
}

impl StepTime {
    /// The drift of `samples`; `None` without any.
    pub fn of(samples: &[StepSample]) -> Option<StepTime> {
        if samples.is_empty() {
            return None;
        }
        let window = (samples.len() / 10).max(1);
        let (first, last) = (&samples[..window], &samples[samples.len() - window..]);
        let per_step = |s: &[StepSample]| {
            let steps: u64 = s.iter().map(|x| x.steps).sum();
            s.iter().map(|x| x.seconds).sum::<f64>() / steps.max(1) as f64
        };
        let nodes =
            |s: &[StepSample]| s.iter().map(|x| x.nodes as f64).sum::<f64>() / s.len() as f64;
        Some(StepTime {
            chunks: samples.len() as u64,
            window: window as u64,
            first_seconds_per_step: per_step(first),
            last_seconds_per_step: per_step(last),
            first_mean_nodes: nodes(first),
            last_mean_nodes: nodes(last),
        })
    }
}

/// First, last and largest value of a quantity over a series of replies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// At the first reply.
    pub first: u64,
    /// At the last reply.
    pub last: u64,
    /// The largest.
    pub max: u64,
}

impl Series {
    fn push(&mut self, value: u64, first: bool) {
        if first {
            *self = Series {
                first: value,
                last: value,
                max: value,
            };
        } else {
            self.last = value;
            self.max = self.max.max(value);
        }
    }
}

/// How an engine life ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "end", rename_all = "kebab-case")]
pub enum LifeEnd {
    /// It crashed (or an oracle failed) with this signature.
    Crash {
        /// The signature.
        signature: Signature,
    },
    /// Retired before its recorder outgrew the case limits or `--life-steps`.
    Retired,
    /// Its worker died between two requests: no request to blame, nothing to replay.
    LostIdle,
    /// An injected lost context poisoned its worker process (CUDA after a real `__trap()`): the
    /// engine cannot recover in that process, so the supervisor starts a new one, as a server's
    /// would.
    Poisoned,
    /// The soak ended (duration over, Ctrl-C, or the environment failed).
    EndOfRun,
}

/// One engine life's measurements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LifeSummary {
    /// 1 for the first engine.
    pub index: u64,
    /// Seed of its start case.
    pub start_seed: u64,
    /// Seconds from its start request to its end.
    pub seconds: f64,
    /// Chunks sent to it (the last one may have killed it).
    pub chunks: u64,
    /// Steps it completed.
    pub steps: u64,
    /// How it ended.
    pub end: LifeEnd,
    /// Live nodes, by reply.
    pub nodes: Series,
    /// Worker resident memory in bytes, by reply.
    pub rss_bytes: Series,
    /// Device bytes held by the engine, by reply.
    pub device_bytes: Series,
    /// Step-time drift within the life.
    pub step_time: Option<StepTime>,
}

/// Resident memory of one worker process over every request it answered (across engine lives: a
/// worker survives failed oracles and planned restarts, so a leak past an engine's drop shows here).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerMemory {
    /// Replies it sent.
    pub replies: u64,
    /// Engines it served.
    pub engines: u64,
    /// Resident bytes, by reply.
    pub rss_bytes: Series,
    /// Resident bytes when each engine had just started (a small graph): what creeps up here
    /// across engines was not given back when the engine before was dropped.
    pub rss_at_engine_start: Series,
    /// Resident bytes of every reply, in order, for [`MemoryTrend`].
    #[serde(skip)]
    rss_samples: Vec<u64>,
}

/// Least growth of resident memory that counts as memory not flat: allocators and caches settle
/// by a few MiB in a process's first minutes, a leak keeps growing.
const MEMORY_SLACK_BYTES: u64 = 8 << 20;
/// ... or this fraction of the resident memory, when larger.
const MEMORY_SLACK_FRACTION: f64 = 0.10;

/// Whether memory stayed flat in the worker process that answered the most requests: its mean
/// resident memory over the last tenth of its replies against the second tenth (the first tenth is
/// warm-up: the allocator's arenas and the backend's first buffers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryTrend {
    /// Replies of that worker.
    pub replies: u64,
    /// Replies in each window.
    pub window: u64,
    /// Mean resident bytes, second tenth of the replies.
    pub early_rss_bytes: u64,
    /// Mean resident bytes, last tenth.
    pub late_rss_bytes: u64,
    /// Growth allowed before memory counts as not flat.
    pub allowed_growth_bytes: u64,
    /// Whether the growth stayed within it.
    pub flat: bool,
}

impl MemoryTrend {
    /// The trend of one worker's resident memory over its replies; `None` under 20 replies (too
    /// few to tell warm-up from growth).
    pub fn of(rss: &[u64]) -> Option<MemoryTrend> {
        if rss.len() < 20 {
            return None;
        }
        let window = rss.len() / 10;
        let mean = |w: &[u64]| w.iter().sum::<u64>() / w.len().max(1) as u64;
        let early = mean(&rss[window..2 * window]);
        let late = mean(&rss[rss.len() - window..]);
        let allowed = MEMORY_SLACK_BYTES.max((early as f64 * MEMORY_SLACK_FRACTION) as u64);
        Some(MemoryTrend {
            replies: rss.len() as u64,
            window: window as u64,
            early_rss_bytes: early,
            late_rss_bytes: late,
            allowed_growth_bytes: allowed,
            flat: late <= early.saturating_add(allowed),
        })
    }
}

/// Crashes of one signature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrashGroup {
    /// The signature.
    pub signature: Signature,
    /// One line on the first occurrence.
    pub summary: String,
    /// Occurrences.
    pub count: u64,
    /// Seconds from the start to the first.
    pub first_at: f64,
    /// Seconds from the start to the last.
    pub last_at: f64,
    /// Flight-recorder cases saved (the first `keep_cases`).
    pub saved: Vec<PathBuf>,
    /// The saved case with the fewest ops: the one to minimize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortest: Option<PathBuf>,
    /// What `shortest` gave when replayed as a plain case in a fresh worker: its signature, or
    /// `pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
    #[serde(skip)]
    shortest_ops: usize,
    /// Watchdog for replaying `shortest` in one request: its life's busy time, with room.
    #[serde(skip)]
    shortest_deadline: Duration,
}

/// What a soak run saw (`soak.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoakReport {
    /// Always [`SOAK_FORMAT`].
    pub format: String,
    /// Backend.
    pub backend: BackendKind,
    /// Seed of the op stream.
    pub seed: u64,
    /// Planted faults.
    pub faults: Vec<Fault>,
    /// Steps at the end of every chunk.
    pub chunk_steps: u64,
    /// The bound on live nodes.
    pub max_nodes: u32,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether Ctrl-C cut it short.
    pub interrupted: bool,
    /// Engine lives started.
    pub engines: u64,
    /// Lives retired by plan (recorder at the case limits, or `--life-steps`).
    pub retired: u64,
    /// Worker processes started.
    pub workers: u64,
    /// Workers found dead between two requests.
    pub lost_idle: u64,
    /// Lives ended by an injected lost context that poisoned the worker process.
    #[serde(default)]
    pub poisoned: u64,
    /// Chunk requests sent.
    pub chunks: u64,
    /// Ops sent in those chunks.
    pub ops: u64,
    /// Steps completed.
    pub steps: u64,
    /// Crashes by signature.
    pub crashes: Vec<CrashGroup>,
    /// Mean seconds from one crash to the next (restart included), with two crashes or more.
    pub mean_seconds_between_crashes: Option<f64>,
    /// Mean seconds an engine ran before it crashed (from its start request).
    pub mean_uptime_before_crash: Option<f64>,
    /// The life with the most steps.
    pub longest_life: Option<LifeSummary>,
    /// The worker process that answered the most requests.
    pub longest_worker: Option<WorkerMemory>,
    /// Step-time drift over the whole run (all lives, in order).
    pub step_time: Option<StepTime>,
    /// Whether memory stayed flat in the longest-serving worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryTrend>,
    /// Injected environment faults, with `--inject-rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injections: Option<InjectionSummary>,
    /// Why the soak stopped early, when the environment failed (no worker, no backend, no disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_message: Option<String>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl SoakReport {
    /// Total crashes.
    pub fn total_crashes(&self) -> u64 {
        self.crashes.iter().map(|c| c.count).sum()
    }

    /// A markdown summary.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "soak on {} for {:.1} s, seed {}{}{}: {} steps in {} chunks ({} ops), {} engine(s), {} crash(es)\n\n",
            self.backend.name(),
            self.seconds,
            self.seed,
            if self.faults.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = self.faults.iter().map(|f| f.to_string()).collect();
                format!(", faults {}", names.join(","))
            },
            if self.interrupted { " (interrupted)" } else { "" },
            self.steps,
            self.chunks,
            self.ops,
            self.engines,
            self.total_crashes()
        );
        s.push_str("| measure | value |\n|---|---|\n");
        if let Some(m) = self.mean_seconds_between_crashes {
            s.push_str(&format!("| mean interval between crashes | {m:.3} s |\n"));
        }
        if let Some(m) = self.mean_uptime_before_crash {
            s.push_str(&format!(
                "| mean engine uptime before a crash | {m:.3} s |\n"
            ));
        }
        s.push_str(&format!(
            "| workers started / lost while idle | {} / {} |\n| lives retired by plan | {} |\n",
            self.workers, self.lost_idle, self.retired
        ));
        if self.poisoned > 0 {
            s.push_str(&format!(
                "| lives ended by a poisoned worker (restarted) | {} |\n",
                self.poisoned
            ));
        }
        if let Some(l) = &self.longest_life {
            s.push_str(&format!(
                "| longest life | #{}: {} steps, {} chunks, {:.1} s, nodes {} -> {} (max {}) |\n",
                l.index, l.steps, l.chunks, l.seconds, l.nodes.first, l.nodes.last, l.nodes.max
            ));
            s.push_str(&format!(
                "| longest life: worker RSS first / last / max | {:.1} / {:.1} / {:.1} MiB |\n",
                mib(l.rss_bytes.first),
                mib(l.rss_bytes.last),
                mib(l.rss_bytes.max)
            ));
            s.push_str(&format!(
                "| longest life: device bytes first / last / max | {:.3} / {:.3} / {:.3} MiB |\n",
                mib(l.device_bytes.first),
                mib(l.device_bytes.last),
                mib(l.device_bytes.max)
            ));
            if let Some(t) = &l.step_time {
                s.push_str(&format!(
                    "| longest life: step time first / last 10% | {} |\n",
                    drift(t)
                ));
            }
        }
        if let Some(w) = &self.longest_worker {
            s.push_str(&format!(
                "| longest worker ({} engines, {} replies): RSS first / last / max | {:.1} / {:.1} / {:.1} MiB |\n",
                w.engines,
                w.replies,
                mib(w.rss_bytes.first),
                mib(w.rss_bytes.last),
                mib(w.rss_bytes.max)
            ));
            if w.engines > 1 {
                s.push_str(&format!(
                    "| longest worker: RSS at engine start, first / last / max | {:.1} / {:.1} / {:.1} MiB |\n",
                    mib(w.rss_at_engine_start.first),
                    mib(w.rss_at_engine_start.last),
                    mib(w.rss_at_engine_start.max)
                ));
            }
        }
        if let Some(t) = &self.step_time {
            s.push_str(&format!(
                "| whole run: step time first / last 10% | {} |\n",
                drift(t)
            ));
        }
        if let Some(m) = &self.memory {
            s.push_str(&format!(
                "| memory flat | {}: longest worker RSS {:.1} MiB (replies 10-20%) -> {:.1} MiB (last 10%), growth {:+.1} MiB, limit {:.1} MiB, {} replies |\n",
                if m.flat { "yes" } else { "**no**" },
                mib(m.early_rss_bytes),
                mib(m.late_rss_bytes),
                mib(m.late_rss_bytes) - mib(m.early_rss_bytes),
                mib(m.allowed_growth_bytes),
                m.replies
            ));
        }
        if let Some(i) = &self.injections {
            s.push_str(&format!(
                "| every injected fault recovered | {} |\n",
                if i.all_recovered() {
                    format!("yes: {} of {} fired faults", i.fired(), i.fired())
                } else if !i.counted {
                    "unknown: the workers did not report fired faults".to_string()
                } else {
                    let recovered: u64 = i.kinds.values().map(|k| k.recovered).sum();
                    format!(
                        "**no**: {recovered} of {} fired recovered, {} not tolerated",
                        i.fired(),
                        i.not_tolerated
                    )
                }
            ));
            for kind in EnvFault::KINDS {
                if let Some(k) = i.kinds.get(kind) {
                    s.push_str(&format!(
                        "| injected {kind} ({}/s): armed / fired / recovered{} | {} / {} / {}{} |\n",
                        i.rate,
                        if self.poisoned > 0 { " / restarted" } else { "" },
                        k.armed,
                        k.fired,
                        k.recovered,
                        if self.poisoned > 0 {
                            format!(" / {}", k.restarted)
                        } else {
                            String::new()
                        }
                    ));
                }
            }
        }
        if let Some(m) = &self.environment_message {
            s.push_str(&format!("| stopped early | {m} |\n"));
        }
        if !self.crashes.is_empty() {
            s.push_str(
                "\n| signature | crashes | first (s) | saved | replay | flight recorder to minimize |\n|---|---|---|---|---|---|\n",
            );
            for c in &self.crashes {
                s.push_str(&format!(
                    "| `{}` | {} | {:.2} | {} | {} | {} |\n",
                    c.signature,
                    c.count,
                    c.first_at,
                    c.saved.len(),
                    c.replay.as_deref().unwrap_or("-"),
                    c.shortest
                        .as_ref()
                        .map_or("-".to_string(), |p| p.display().to_string())
                ));
            }
        }
        s
    }
}

fn drift(t: &StepTime) -> String {
    format!(
        "{:.3} ms ({:.0} nodes) -> {:.3} ms ({:.0} nodes), {} of {} chunks each",
        t.first_seconds_per_step * 1e3,
        t.first_mean_nodes,
        t.last_seconds_per_step * 1e3,
        t.last_mean_nodes,
        t.window,
        t.chunks
    )
}

/// Mean seconds from one crash to the next, over crash times in order.
pub fn mean_interval(times: &[f64]) -> Option<f64> {
    match times {
        [first, .., last] => Some((last - first) / (times.len() - 1) as f64),
        _ => None,
    }
}

// ---- the driver -------------------------------------------------------------------------------

/// The life being run.
struct Life {
    summary: LifeSummary,
    started: Instant,
    worker_pid: Option<u32>,
    replies: u64,
    /// Seconds from the life's start to its last request: the busy time a replay repeats.
    last_sent: f64,
    samples: Vec<StepSample>,
    /// Injected faults fired in this life's engine, by kind, as of its last reply.
    fired: [u64; KINDS],
}

impl Life {
    fn new(index: u64, start_seed: u64) -> Self {
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
struct Driver<'a> {
    config: &'a SoakConfig,
    start: Instant,
    slot: WorkerSlot,
    groups: BTreeMap<Signature, CrashGroup>,
    crash_times: Vec<f64>,
    crash_uptimes: Vec<f64>,
    samples: Vec<StepSample>,
    longest_life: Option<LifeSummary>,
    worker: Option<(u32, WorkerMemory)>,
    longest_worker: Option<WorkerMemory>,
    engines: u64,
    retired: u64,
    lost_idle: u64,
    poisoned: u64,
    chunks: u64,
    ops: u64,
    steps: u64,
    environment: Option<String>,
    bar: indicatif::ProgressBar,
    schedule: Option<InjectionSchedule>,
    injections: Option<InjectionSummary>,
}

/// How one request went, from the driver's side.
enum Step {
    /// The engine is alive and well.
    Alive,
    /// The life ended.
    Ended(LifeEnd),
    /// The soak cannot go on here.
    Environment(String),
}

impl Driver<'_> {
    fn running(&self, interrupt: &AtomicBool) -> bool {
        self.environment.is_none()
            && self.start.elapsed() < self.config.duration
            && !interrupt.load(Ordering::Relaxed)
    }

    /// Sends one job of `life` and judges the answer; `recorder` is the life's history so far.
    fn request(&mut self, job: &Job, life: &mut Life, recorder: &Case, nodes: u64) -> Step {
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
    fn count_injections(
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

    fn measure(&mut self, life: &mut Life, execution: &Execution, stats: &SoakStats, nodes: u64) {
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

    fn retire_worker(&mut self) {
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

    fn record_crash(
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

    fn end_life(&mut self, mut life: Life, end: LifeEnd) {
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
    fn life(&mut self, stream: &mut OpStream, interrupt: &AtomicBool) {
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

    fn count_armed(&mut self, ops: &[Op]) {
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

    fn draw(&self, life: &Life) {
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
    fn replay(&mut self, interrupt: &AtomicBool) {
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

fn reply_of(execution: &Execution) -> Option<JobReply> {
    match &execution.outcome {
        crate::isolate::Outcome::Reply { payload } => serde_json::from_value(payload.clone()).ok(),
        _ => None,
    }
}

fn spinner(progress: bool) -> indicatif::ProgressBar {
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
mod tests {
    use super::*;

    fn stream(seed: u64) -> OpStream {
        OpStream::new(seed, BackendKind::Cpu, &[], 128, 5)
    }

    #[test]
    fn the_stream_is_a_function_of_the_seed() {
        let (mut a, mut b, mut c) = (stream(7), stream(7), stream(8));
        let (sa, sb, sc) = (a.start(), b.start(), c.start());
        assert_eq!(sa, sb);
        assert_ne!(sa, sc);
        for _ in 0..50 {
            assert_eq!(a.chunk(), b.chunk());
        }
    }

    #[test]
    fn every_recorder_is_a_valid_case_and_the_graph_keeps_resizing_within_bounds() {
        let mut s = stream(3);
        let mut names = BTreeSet::new();
        let mut peak = 0;
        for _ in 0..4 {
            let mut recorder = s.start();
            for _ in 0..150 {
                let chunk = s.chunk();
                assert_eq!(chunk.last(), Some(&Op::Step { count: 5 }));
                names.extend(chunk.iter().map(Op::name));
                recorder.ops.extend(chunk);
                peak = peak.max(s.nodes());
                assert!(s.nodes() <= 128);
            }
            recorder.validate().unwrap();
            // The driver's count agrees with the case's own replay of the ops.
            assert_eq!(recorder.node_counts().last().copied(), Some(s.nodes()));
        }
        assert!(peak > 96, "the graph reaches the drain mark (peak {peak})");
        for op in [
            "add_nodes",
            "remove_nodes",
            "shrink_to_fit",
            "add_edges",
            "set_params",
        ] {
            assert!(names.contains(op), "{op} never drawn: {names:?}");
        }
    }

    #[test]
    fn the_tally_refuses_a_chunk_that_would_break_the_case_limits() {
        let mut t = RecorderTally::default();
        t.add(&[Op::Step {
            count: MAX_CASE_STEPS - 5,
        }]);
        assert!(t.admits(&[Op::Step { count: 5 }]));
        assert!(!t.admits(&[Op::Step { count: 6 }]));
        let many = vec![Op::ReadPositions; MAX_CASE_OPS];
        assert!(!t.admits(&many), "one op is already recorded");
        assert!(t.admits(&many[1..]));
    }

    #[test]
    fn step_time_compares_the_first_and_last_tenth() {
        let samples: Vec<StepSample> = (0..20)
            .map(|i| StepSample {
                seconds: if i < 2 {
                    0.002
                } else if i >= 18 {
                    0.006
                } else {
                    1.0
                },
                steps: 2,
                nodes: i,
            })
            .collect();
        let t = StepTime::of(&samples).unwrap();
        assert_eq!((t.chunks, t.window), (20, 2));
        assert!((t.first_seconds_per_step - 0.001).abs() < 1e-12);
        assert!((t.last_seconds_per_step - 0.003).abs() < 1e-12);
        assert_eq!((t.first_mean_nodes, t.last_mean_nodes), (0.5, 18.5));
        assert_eq!(StepTime::of(&[]), None);
    }

    fn injects(ops: &[Op]) -> Vec<EnvFault> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Inject { fault } => Some(*fault),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_injection_schedule_is_a_function_of_the_seed_and_leaves_the_chunk_intact() {
        let chunk = || {
            vec![
                Op::AddNodes {
                    count: 3,
                    positions: None,
                },
                Op::ShrinkToFit,
                Op::Step { count: 5 },
            ]
        };
        let run = |seed: u64| {
            let mut s = InjectionSchedule::new(seed, 2.0);
            (0..200)
                .map(|i| s.place(f64::from(i) * 0.1, chunk()))
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (run(5), run(5), run(6));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut per_kind = [0usize; KINDS];
        for placed in &a {
            // The chunk's own ops, in order, with the injects among them.
            let rest: Vec<&Op> = placed
                .iter()
                .filter(|op| !matches!(op, Op::Inject { .. }))
                .collect();
            assert_eq!(rest, chunk().iter().collect::<Vec<_>>());
            let faults = injects(placed);
            let kinds: BTreeSet<usize> = faults.iter().map(kind_index).collect();
            assert_eq!(kinds.len(), faults.len(), "one fault of a kind per chunk");
            for f in &faults {
                per_kind[kind_index(f)] += 1;
            }
        }
        // 2 per second for 20 seconds, one chunk every 0.1 s: about 40 of each kind.
        for (kind, n) in per_kind.iter().enumerate() {
            assert!((20..=60).contains(n), "kind {kind}: {n} faults");
        }
    }

    #[test]
    fn every_recorder_with_injected_faults_is_a_valid_case() {
        let mut s = stream(9);
        let mut schedule = InjectionSchedule::new(9, 50.0);
        let mut recorder = s.start();
        for i in 0..100 {
            recorder.ops.extend(schedule.place(f64::from(i), s.chunk()));
        }
        assert!(injects(&recorder.ops).len() >= 4 * 90);
        recorder.validate().unwrap();
    }

    #[test]
    fn memory_is_flat_unless_it_grows_past_the_slack() {
        let mib = |x: u64| x << 20;
        let mut flat: Vec<u64> = (0..100).map(|i| mib(20) + (i % 3) * 4096).collect();
        flat[0] = mib(5);
        let t = MemoryTrend::of(&flat).unwrap();
        assert!(t.flat, "{t:?}");
        assert_eq!((t.replies, t.window), (100, 10));
        let leaking: Vec<u64> = (0..100).map(|i| mib(20) + i * mib(1) / 5).collect();
        let t = MemoryTrend::of(&leaking).unwrap();
        assert!(!t.flat, "{t:?}");
        assert_eq!(t.allowed_growth_bytes, MEMORY_SLACK_BYTES);
        assert_eq!(MemoryTrend::of(&flat[..19]), None);
    }

    #[test]
    fn mean_interval_needs_two_crashes() {
        assert_eq!(mean_interval(&[]), None);
        assert_eq!(mean_interval(&[4.0]), None);
        assert_eq!(mean_interval(&[1.0, 3.0, 7.0]), Some(3.0));
    }
}
