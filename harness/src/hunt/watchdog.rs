/*!
The watchdog that knows the case: how long a case may run before it is a hang.

A fixed per-case limit is wrong both ways: a deadlock costs the whole limit to detect, and a
legitimately large case on a loaded machine meets it and becomes a false `hang` finding. This
module derives each case's limit from what the case asks for and from how fast this campaign's
workers have been running cases:

* [`CaseCost`] — the cost model: a case's predicted work in abstract *units*, from its sizes (live
  nodes and edges before each op, steps, SSSP runs, resizes, injected faults, the capacity re-run).
  A unit is about one node visited by one step.
* [`RateEstimator`] — seconds per unit learned from finished, passing cases: a high quantile of the
  recent observations, and a running maximum that decays, so one slow case raises the limits at
  once and a quiet machine lowers them again over the next cases.
* [`Watchdog`] — `deadline_for(case)`: the predicted seconds times a generous margin, never under a
  floor and never over the upper bound (`--case-timeout`), with the [`Basis`] it was set on. Until
  enough cases were seen, a conservative prior rate stands in for the measured one. Shared by the
  threads of a campaign (the estimator is behind a mutex).
* [`watch`] — runs a case under its limit and confirms a hang: a case whose adaptive limit fired is
  re-run once under a much larger limit ([`Watchdog::confirm_limit`]), and only if it hangs again is
  it a hang; otherwise it is recorded as slow, with no finding. That keeps a loaded machine from
  turning into false hangs. A case that met the upper bound itself is a hang at once: that is what
  `--case-timeout` says.

Nothing here runs a process or reads a clock: [`watch`] gets the run as a closure, so the whole
policy is tested with made-up timings.
*/

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::case::{BackendKind, Case, Op};
use crate::client::signature::Verdict;
use crate::isolate::Execution;

// ---- the cost model ---------------------------------------------------------------------------

// The weights were fitted to 650 cases of `run --inject` on a 2-core machine at load 12, for the
// smallest spread of seconds per unit (largest over 95th percentile: 7). Under load a step's fixed
// cost dominates small cases: every launch waits for its kernel threads to be scheduled.

/// Units of a case's fixed cost: engine creation, the checkpoint, the reply.
const CASE_UNITS: f64 = 5_000.0;
/// Units per node of the initial graph: its upload, the first grid, the checkpoint.
const INITIAL_NODE_UNITS: f64 = 50.0;
/// Units of every op besides its own work: the oracles' fixed part and the breadcrumbs.
const OP_UNITS: f64 = 1_000.0;
/// Units per live node and per live edge that the oracles read back after an op.
const ORACLE_UNITS_PER_ITEM: f64 = 0.5;
/// Units of one step besides its nodes and edges: eight launches, the bounds read-back.
const STEP_UNITS: f64 = 6_000.0;
/// Units per live node per step: the grid, the sort, the force pass over 27 cells, integration.
const NODE_STEP_UNITS: f64 = 10.0;
/// Units per live edge per step: two CSR springs.
const EDGE_STEP_UNITS: f64 = 0.5;
/// Units per live node and edge of one SSSP run: frontier relaxation on the device, and the
/// Dijkstra it is checked against.
const SSSP_UNITS_PER_ITEM: f64 = 5.0;
/// Units per live node and edge of a resize (`add_nodes`, `reserve`, `shrink_to_fit`, ...):
/// every buffer of a class reallocated and its live prefix copied.
const RESIZE_UNITS_PER_ITEM: f64 = 1.0;

/// Units per grid cell per step: the cell buffers' fill, the cell-bounds pass, and the grid
/// oracle's read-back of every cell. Only a fixed cell size makes the cell count independent of the
/// node count (the automatic size keeps a few nodes per cell, which `NODE_STEP_UNITS` covers).
const CELL_STEP_UNITS: f64 = 0.5;

/// The grid cells a step of `nodes` live nodes may use under `params` with the engine's cell cap
/// `cap`: with a fixed cell size, the cells of the generated layouts' extent (a box of side
/// `8 ∛n`, one node per 512 cubic units) at that size, at most the cap — a millimetre cell size
/// gives the cap, two million cells, whatever the node count; with the automatic size, none
/// beyond the per-node cost.
fn grid_cells(params: &forcefield::SimParams, nodes: f64, cap: f64) -> f64 {
    let size = f64::from(params.grid_cell_size);
    if size <= 0.0 {
        return 0.0;
    }
    let side = 8.0 * nodes.max(1.0).cbrt();
    ((side / size).floor() + 1.0).powi(3).min(cap)
}

/// A case's predicted work, in units (about one node visited by one step each).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct CaseCost {
    /// The units.
    pub units: f64,
}

impl CaseCost {
    /// The predicted work of running `case` once, or twice with `capacity_invariance` (the
    /// re-run under another growth policy repeats every op).
    ///
    /// Edge counts only grow here (a removed node's edges are not subtracted): the model may
    /// over-predict, which only lengthens a limit, never under-predicts for that reason.
    pub fn of(case: &Case, capacity_invariance: bool) -> CaseCost {
        let counts = case.node_counts();
        let mut params = case.initial_params();
        let cap = case
            .engine
            .as_ref()
            .and_then(|e| e.max_grid_cells)
            .map_or(forcefield::engine::DEFAULT_MAX_GRID_CELLS as f64, |c| {
                c as f64
            });
        let mut edges = case.graph.edges.len() as f64;
        let mut units = CASE_UNITS + INITIAL_NODE_UNITS * case.graph.num_nodes as f64 + edges;
        for (index, op) in case.ops.iter().enumerate() {
            let nodes = counts.get(index).copied().unwrap_or(0) as f64;
            let live = nodes + edges;
            units += OP_UNITS + ORACLE_UNITS_PER_ITEM * live;
            units += match op {
                Op::Step { count } => {
                    let cells = grid_cells(&params, nodes, cap);
                    *count as f64
                        * (STEP_UNITS
                            + NODE_STEP_UNITS * nodes
                            + EDGE_STEP_UNITS * edges
                            + CELL_STEP_UNITS * cells)
                        + ORACLE_UNITS_PER_ITEM * cells
                }
                Op::Sssp { .. } => SSSP_UNITS_PER_ITEM * live,
                Op::AddNodes { count, .. } => RESIZE_UNITS_PER_ITEM * (live + *count as f64),
                Op::AddEdges { edges: added } => {
                    edges += added.len() as f64;
                    RESIZE_UNITS_PER_ITEM * (live + added.len() as f64)
                }
                Op::RemoveEdges { pairs } => {
                    edges = (edges - pairs.len() as f64).max(0.0);
                    RESIZE_UNITS_PER_ITEM * live
                }
                Op::RemoveNodes { .. } | Op::Reserve { .. } | Op::ShrinkToFit => {
                    RESIZE_UNITS_PER_ITEM * live
                }
                // A lost context rebuilds the engine from its checkpoint (on CUDA in a new
                // process): another case's fixed cost.
                Op::Inject { .. } => CASE_UNITS,
                Op::SetParams { params: new } => {
                    params = new.clone();
                    0.0
                }
                Op::ReadPositions
                | Op::SetPositionConstraint { .. }
                | Op::SetDistanceConstraint { .. }
                | Op::ClearConstraints => 0.0,
            };
        }
        if capacity_invariance {
            units *= 2.0;
        }
        CaseCost { units }
    }
}

// ---- the rate estimator -----------------------------------------------------------------------

/// Seconds per unit learned from finished cases.
///
/// The estimate is the larger of the [`RATE_QUANTILE`] quantile of the last [`RATE_WINDOW`]
/// observations and a running maximum that decays by [`RATE_DECAY`] per observation: a high
/// quantile, because the limit must hold for nearly every case, not the typical one; the decaying
/// maximum, because a machine that just got slower (another job started) must raise the limits
/// with the next case, not after a window's worth of them.
#[derive(Clone, Debug, Default)]
pub(crate) struct RateEstimator {
    recent: VecDeque<f64>,
    decaying_max: f64,
    observed: u64,
}

/// Observations the quantile is taken over.
pub(crate) const RATE_WINDOW: usize = 256;
/// The quantile of the window that the estimate follows.
pub(crate) const RATE_QUANTILE: f64 = 0.95;
/// Factor the running maximum loses per observation (a slow outlier's weight halves in about 70
/// cases).
pub(crate) const RATE_DECAY: f64 = 0.99;

impl RateEstimator {
    /// Records a finished case of `cost` that took `seconds`.
    pub fn observe(&mut self, cost: CaseCost, seconds: f64) {
        if !(cost.units > 0.0 && seconds.is_finite() && seconds >= 0.0) {
            return;
        }
        let rate = seconds / cost.units;
        if self.recent.len() == RATE_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(rate);
        self.decaying_max = (self.decaying_max * RATE_DECAY).max(rate);
        self.observed += 1;
    }

    /// Cases observed so far.
    pub fn observed(&self) -> u64 {
        self.observed
    }

    /// The estimate, once anything was observed.
    pub fn seconds_per_unit(&self) -> Option<f64> {
        if self.recent.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let rank = ((sorted.len() - 1) as f64 * RATE_QUANTILE).ceil() as usize;
        let quantile = sorted[rank.min(sorted.len() - 1)];
        Some(quantile.max(self.decaying_max))
    }
}

// ---- the policy -------------------------------------------------------------------------------

/// The settings of a [`Watchdog`].
#[derive(Clone, Debug, PartialEq)]
pub struct WatchdogConfig {
    /// No case runs longer than this (`--case-timeout`, stretched by a sanitizer's slowdown).
    pub upper_bound: Duration,
    /// No adaptive limit is shorter than this: it absorbs what the model does not see (a worker's
    /// first request opening the device, a scheduler hiccup on a loaded machine).
    pub floor: Duration,
    /// Predicted seconds times this is the limit.
    pub margin: f64,
    /// A fired adaptive limit is confirmed under this many times the limit...
    pub confirm_factor: f64,
    /// ...and never under this.
    pub confirm_floor: Duration,
    /// Seconds per unit before anything was measured, and the least rate until [`Self::warm_up`]
    /// cases were: the first cases of a campaign are the ones a deadlock is most often found in,
    /// so the prior is a typical rate rather than a pessimistic one, and the measured rate (a
    /// maximum over so few cases) takes over as soon as it is higher.
    pub prior_seconds_per_unit: f64,
    /// Passing cases measured before the estimate alone sets the rate.
    pub warm_up: u64,
    /// Multiplies every limit but the upper bound: a sanitizer's slowdown is not a hang.
    pub slowdown: u32,
    /// A worker that uses no CPU time and launches nothing this long while it runs a case is
    /// hung, whatever its limit ([`crate::isolate::WorkerSlot::with_idle_limit`]): a deadlock
    /// sleeps, a slow case computes or launches kernels.
    /// `None` on CUDA, where a worker waiting for its kernels sleeps too.
    pub idle_limit: Option<Duration>,
}

/// The adaptive limit's floor on the CPU backend.
pub(crate) const CPU_FLOOR: Duration = Duration::from_millis(500);
/// The adaptive limit's floor on CUDA: a fresh worker's first case creates a context and compiles
/// the kernels (NVRTC: 130-430 ms, a context 110-180 ms), and every lost context costs a worker.
pub(crate) const CUDA_FLOOR: Duration = Duration::from_secs(2);
/// Default margin over the predicted seconds.
pub(crate) const MARGIN: f64 = 8.0;
/// Default factor of the confirmation limit over the adaptive one.
pub(crate) const CONFIRM_FACTOR: f64 = 4.0;
/// Default floor of the confirmation limit.
pub(crate) const CONFIRM_FLOOR: Duration = Duration::from_secs(2);
/// Default warm-up, in passing cases.
pub(crate) const WARM_UP: u64 = 8;
/// How long a CPU worker may use no CPU time while it runs a case before it is hung. A CPU case
/// computes from its request to its reply (its kernels' threads are joined, never waited for
/// idly), and a process that is runnable gets the CPU many times a second even at a load of six
/// per core, so a second without a single clock tick is a process blocked for good: the
/// `logger-relock` deadlock waits on a mutex it holds.
pub(crate) const CPU_IDLE_LIMIT: Duration = Duration::from_secs(1);
/// How long a CUDA worker may use no CPU time and launch no kernel while it runs a case before it
/// is hung. A CUDA case sleeps while it waits for a kernel, but the kernels of a case the harness
/// generates run for micro- to milliseconds and each launch writes a breadcrumb, and a context's
/// creation and a module's load take 110-430 ms each. With 2 s, `logger-relock` took 6.05 s to
/// find on an H100 (the idle limit twice: the case, then its confirmation).
pub(crate) const CUDA_IDLE_LIMIT: Duration = Duration::from_secs(1);
/// Default prior: 0.15 µs per unit. Measured on a 2-core machine at load 12 (650 cases of
/// `run --inject`): 5th percentile 0.13 µs per unit, median 0.38, 95th percentile 2.9, 99th 14.5,
/// largest 21. A quieter machine is faster, and a loaded one raises the rate with its first cases.
pub(crate) const PRIOR_SECONDS_PER_UNIT: f64 = 1.5e-7;

impl WatchdogConfig {
    /// The defaults for `backend` under the upper bound `upper_bound`, every limit but the upper
    /// bound stretched by `slowdown` (a sanitizer's; 1 for none).
    pub fn for_backend(backend: BackendKind, upper_bound: Duration, slowdown: u32) -> Self {
        WatchdogConfig {
            upper_bound,
            floor: match backend {
                BackendKind::Cpu => CPU_FLOOR,
                BackendKind::Cuda => CUDA_FLOOR,
            },
            margin: MARGIN,
            confirm_factor: CONFIRM_FACTOR,
            confirm_floor: CONFIRM_FLOOR,
            prior_seconds_per_unit: PRIOR_SECONDS_PER_UNIT,
            warm_up: WARM_UP,
            slowdown: slowdown.max(1),
            idle_limit: match backend {
                BackendKind::Cpu => Some(CPU_IDLE_LIMIT),
                // Under a compute-sanitizer tool one kernel may run for many seconds.
                BackendKind::Cuda if slowdown <= 2 => Some(CUDA_IDLE_LIMIT),
                BackendKind::Cuda => None,
            },
        }
    }
}

/// What a case's limit was set on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// The measured rate times the margin.
    Measured,
    /// The prior rate, or the rate of the few cases measured if higher, times the margin (not
    /// enough cases measured yet).
    Prior,
    /// The floor: the case is predicted to be quick.
    Floor,
    /// The upper bound: the case is predicted to be slower than the margin allows under it.
    UpperBound,
}

/// A case's limit and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Deadline {
    /// How long the case may run.
    pub limit: Duration,
    /// What it was set on.
    pub basis: Basis,
    /// The case's predicted work.
    pub cost: CaseCost,
}

/// Adaptive limits for the cases of one campaign; shared by its threads.
#[derive(Debug)]
pub struct Watchdog {
    config: WatchdogConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    estimator: RateEstimator,
    counts: WatchCounts,
}

/// What the watchdog did over a campaign.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchCounts {
    /// Limits set on the measured rate, the prior, the floor, the upper bound.
    pub measured: u64,
    /// See `measured`.
    pub prior: u64,
    /// See `measured`.
    pub floor: u64,
    /// See `measured`.
    pub upper_bound: u64,
    /// Adaptive limits that fired (the case was then re-run to confirm).
    pub fired: u64,
    /// Of those, hangs again under the confirmation limit: `hang` findings.
    pub confirmed: u64,
    /// Of those, cases that finished under the confirmation limit: slow, not hung.
    pub slow: u64,
    /// Seconds spent in confirmation re-runs.
    pub confirm_seconds: f64,
}

impl Watchdog {
    /// A watchdog with `config` and nothing measured yet.
    pub fn new(config: WatchdogConfig) -> Self {
        Watchdog {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &WatchdogConfig {
        &self.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is counters and observations, each update complete before the next: a panic
        // elsewhere while it was held leaves nothing half-done, so a poisoned lock is still good.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The limit for a case of `cost`, without counting it (see [`Self::deadline_for`]).
    pub fn limit_for(&self, cost: CaseCost) -> Deadline {
        let (rate, measured) = {
            let state = self.state();
            let prior = self.config.prior_seconds_per_unit;
            match state.estimator.seconds_per_unit() {
                Some(rate) if state.estimator.observed() >= self.config.warm_up => (rate, true),
                Some(rate) => (rate.max(prior), false),
                None => (prior, false),
            }
        };
        let c = &self.config;
        let upper = c.upper_bound;
        let floor = c.floor.saturating_mul(c.slowdown).min(upper);
        let predicted = cost.units * rate * c.margin * f64::from(c.slowdown);
        let (limit, basis) = if predicted >= upper.as_secs_f64() {
            (upper, Basis::UpperBound)
        } else if predicted <= floor.as_secs_f64() {
            (floor, Basis::Floor)
        } else {
            let basis = if measured {
                Basis::Measured
            } else {
                Basis::Prior
            };
            (Duration::from_secs_f64(predicted), basis)
        };
        Deadline { limit, basis, cost }
    }

    /// The limit for `case` (run twice with `capacity_invariance`), counted in the report.
    pub fn deadline_for(&self, case: &Case, capacity_invariance: bool) -> Deadline {
        let deadline = self.limit_for(CaseCost::of(case, capacity_invariance));
        let mut state = self.state();
        let counts = &mut state.counts;
        *match deadline.basis {
            Basis::Measured => &mut counts.measured,
            Basis::Prior => &mut counts.prior,
            Basis::Floor => &mut counts.floor,
            Basis::UpperBound => &mut counts.upper_bound,
        } += 1;
        deadline
    }

    /// The limit of a batch of `cases` run side by side (each twice with `capacity_invariance`):
    /// the sum of the cases' limits, at most the upper bound, with the basis of the slowest case.
    /// Not the slowest case's alone: the threads share the worker's cores, so on a two-core
    /// machine four cases side by side take about as long as one after another, and a batch of
    /// small cases under one case's floor can fire; with the slowest case's limit a clean 20 s
    /// campaign at load 8 lost 6% of its time to batches re-run alone. On the CPU a deadlock is
    /// still found by the idle check, not by this limit. Each case is counted in the report as
    /// [`Self::deadline_for`] counts it.
    pub fn batch_deadline(&self, cases: &[Case], capacity_invariance: bool) -> Option<Deadline> {
        let deadlines: Vec<Deadline> = cases
            .iter()
            .map(|case| self.deadline_for(case, capacity_invariance))
            .collect();
        let slowest = deadlines.iter().max_by(|a, b| a.limit.cmp(&b.limit))?;
        let sum = deadlines.iter().map(|d| d.limit).sum::<Duration>();
        Some(Deadline {
            limit: sum.min(self.config.upper_bound),
            basis: slowest.basis,
            cost: CaseCost {
                units: deadlines.iter().map(|d| d.cost.units).sum(),
            },
        })
    }

    /// The limit that confirms a hang after `first` fired: [`WatchdogConfig::confirm_factor`]
    /// times it, at least the confirmation floor, at most the upper bound; `None` when `first`
    /// was the upper bound already (a case past `--case-timeout` is a hang, by definition).
    pub fn confirm_limit(&self, first: &Deadline) -> Option<Duration> {
        let c = &self.config;
        if first.limit >= c.upper_bound {
            return None;
        }
        let longer = first
            .limit
            .mul_f64(c.confirm_factor)
            .max(c.confirm_floor.saturating_mul(c.slowdown));
        Some(longer.min(c.upper_bound))
    }

    /// Records a passing case of `cost` that took `seconds`.
    pub fn observe(&self, cost: CaseCost, seconds: f64) {
        self.state().estimator.observe(cost, seconds);
    }

    fn count(&self, update: impl FnOnce(&mut WatchCounts)) {
        update(&mut self.state().counts);
    }

    /// What it did so far, for the summary.
    pub fn report(&self) -> WatchdogReport {
        let state = self.state();
        let c = &self.config;
        WatchdogReport {
            mode: "adaptive".to_string(),
            upper_bound_seconds: c.upper_bound.as_secs_f64(),
            floor_seconds: c.floor.saturating_mul(c.slowdown).as_secs_f64(),
            margin: c.margin,
            confirm_factor: c.confirm_factor,
            slowdown: c.slowdown,
            rate_cases: state.estimator.observed(),
            warm_up: c.warm_up,
            seconds_per_unit: state.estimator.seconds_per_unit(),
            idle_limit_seconds: c.idle_limit.map(|d| d.as_secs_f64()),
            counts: state.counts.clone(),
        }
    }
}

/// How a campaign's limits were set, and what the watchdog did (`summary.json`'s `watchdog`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchdogReport {
    /// Always `adaptive`.
    pub mode: String,
    /// `--case-timeout` (stretched by a sanitizer), the upper bound of every limit.
    pub upper_bound_seconds: f64,
    /// The shortest adaptive limit.
    pub floor_seconds: f64,
    /// Predicted seconds times this is the limit.
    pub margin: f64,
    /// A fired limit is confirmed under this many times it.
    pub confirm_factor: f64,
    /// A sanitizer's slowdown applied to the limits.
    pub slowdown: u32,
    /// Passing cases the rate was measured from.
    pub rate_cases: u64,
    /// Cases measured before the rate replaces the prior.
    pub warm_up: u64,
    /// The rate at the end, seconds per unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_per_unit: Option<f64>,
    /// A worker using no CPU time and launching nothing this long while it ran a case was hung.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_limit_seconds: Option<f64>,
    /// What happened.
    pub counts: WatchCounts,
}

impl WatchdogReport {
    /// One line for people: how the limits were set, then what fired.
    pub fn line(&self) -> String {
        let mut s = format!(
            "watchdog: {}, floor {} s, margin {}x, rate measured from {} case(s){}; \
             --case-timeout {} s upper bound",
            self.mode,
            self.floor_seconds,
            self.margin,
            self.rate_cases,
            if self.rate_cases < self.warm_up {
                format!(" (prior used until {})", self.warm_up)
            } else {
                String::new()
            },
            self.upper_bound_seconds,
        );
        if self.slowdown > 1 {
            s.push_str(&format!(" (limits x{} for the sanitizer)", self.slowdown));
        }
        if let Some(idle) = self.idle_limit_seconds {
            s.push_str(&format!(
                "; a worker idle (no CPU time, no launch) for {idle} s is hung"
            ));
        }
        let c = &self.counts;
        if c.fired > 0 {
            s.push_str(&format!(
                "; {} limit(s) fired: {} hang(s) confirmed, {} slow case(s) passed on a re-run \
                 ({:.1} s of re-runs)",
                c.fired, c.confirmed, c.slow, c.confirm_seconds
            ));
        }
        s
    }
}

// ---- running a case under it ------------------------------------------------------------------

/// One run of a case under a limit, as the caller's runner reports it.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    /// Its classified verdict.
    pub verdict: Verdict,
    /// The last execution, when a worker ran it.
    pub execution: Option<Execution>,
    /// Wall-clock seconds it took.
    pub seconds: f64,
}

impl Attempt {
    fn is_hang(&self) -> bool {
        matches!(&self.verdict, Verdict::Finding { signature, .. } if signature.class == "hang")
    }
}

/// What came of a case under the watchdog.
#[derive(Clone, Debug)]
pub(crate) struct Watched {
    /// The verdict: a confirmed hang, or what the confirmation run gave.
    pub attempt: Attempt,
    /// What the confirmation did, if the first limit fired.
    pub confirmation: Option<Confirmation>,
}

/// A confirmation run's conclusion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Confirmation {
    /// It hung again, under `limit`: a hang.
    Hang {
        /// The confirmation limit.
        limit: Duration,
    },
    /// It finished under `limit` after `seconds`: slow, not hung.
    Slow {
        /// The confirmation limit.
        limit: Duration,
        /// How long it took.
        seconds: f64,
    },
}

/// Runs `case` through `run` (which runs it once under the limit it is given) under the limit
/// `watchdog` sets, confirms a fired adaptive limit with one re-run under
/// [`Watchdog::confirm_limit`], and feeds a passing case's time back to the estimator.
pub(crate) fn watch(
    watchdog: &Watchdog,
    case: &Case,
    capacity_invariance: bool,
    run: &mut dyn FnMut(Duration) -> Attempt,
) -> Watched {
    let deadline = watchdog.deadline_for(case, capacity_invariance);
    let first = run(deadline.limit);
    let (attempt, confirmation) = match (first.is_hang(), watchdog.confirm_limit(&deadline)) {
        (true, Some(limit)) => {
            let again = run(limit);
            let confirmation = if again.is_hang() {
                Confirmation::Hang { limit }
            } else {
                Confirmation::Slow {
                    limit,
                    seconds: again.seconds,
                }
            };
            watchdog.count(|c| {
                c.fired += 1;
                c.confirm_seconds += again.seconds;
                match confirmation {
                    Confirmation::Hang { .. } => c.confirmed += 1,
                    Confirmation::Slow { .. } => c.slow += 1,
                }
            });
            (again, Some(confirmation))
        }
        _ => (first, None),
    };
    if matches!(attempt.verdict, Verdict::Pass) {
        watchdog.observe(deadline.cost, attempt.seconds);
    }
    Watched {
        attempt,
        confirmation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::CaseGraph;

    fn case(nodes: u64, ops: Vec<Op>) -> Case {
        let mut case = Case::new(CaseGraph {
            num_nodes: nodes,
            edges: Vec::new(),
            positions: None,
        });
        case.ops = ops;
        case
    }

    fn steps(nodes: u64, count: u64) -> Case {
        case(nodes, vec![Op::Step { count }])
    }

    fn config(upper: u64) -> WatchdogConfig {
        WatchdogConfig::for_backend(BackendKind::Cpu, Duration::from_secs(upper), 1)
    }

    #[test]
    fn a_fixed_tiny_cell_size_costs_its_cells_from_the_op_that_sets_it() {
        let auto = CaseCost::of(&steps(12, 20), false).units;
        let mut tiny = steps(12, 20);
        let mut params = forcefield::SimParams {
            grid_cell_size: 1e-3,
            ..forcefield::SimParams::default()
        };
        tiny.params = Some(params.clone());
        // Twenty steps over two million cells: far beyond twelve nodes' cost.
        assert!(CaseCost::of(&tiny, false).units > 100.0 * auto);
        // The case's own cap bounds the cells.
        tiny.engine = Some(crate::case::CaseEngine {
            max_grid_cells: Some(8),
        });
        assert!(CaseCost::of(&tiny, false).units < 2.0 * auto);
        // Set by `set_params`: only the steps after it pay.
        params.grid_cell_size = 1e-3;
        let later = case(12, vec![Op::Step { count: 20 }, Op::SetParams { params }]);
        assert_eq!(
            CaseCost::of(&later, false).units,
            auto + OP_UNITS + 12.0 * ORACLE_UNITS_PER_ITEM
        );
    }

    #[test]
    fn the_cost_grows_with_nodes_steps_sssp_runs_and_the_capacity_rerun() {
        let small = CaseCost::of(&steps(10, 1), false).units;
        assert!(CaseCost::of(&steps(1000, 1), false).units > small);
        assert!(CaseCost::of(&steps(10, 20), false).units > small);
        let sssp = case(1000, vec![Op::Sssp { source: 0 }]);
        let read = case(1000, vec![Op::ReadPositions]);
        assert!(CaseCost::of(&sssp, false).units > CaseCost::of(&read, false).units);
        assert_eq!(
            CaseCost::of(&steps(100, 3), true).units,
            2.0 * CaseCost::of(&steps(100, 3), false).units
        );
        // Work follows the live count: nodes added before a step make it dearer.
        let grown = case(
            10,
            vec![
                Op::AddNodes {
                    count: 990,
                    positions: None,
                },
                Op::Step { count: 5 },
            ],
        );
        let late = case(
            10,
            vec![
                Op::Step { count: 5 },
                Op::AddNodes {
                    count: 990,
                    positions: None,
                },
            ],
        );
        assert!(CaseCost::of(&grown, false).units > CaseCost::of(&late, false).units);
        // A 6,000-node case of 20 steps is predicted as a hundred times a small one.
        assert!(CaseCost::of(&steps(6000, 20), false).units > 100.0 * small);
    }

    #[test]
    fn the_estimate_is_a_high_quantile_and_a_slow_case_raises_it_at_once() {
        let mut e = RateEstimator::default();
        assert_eq!(e.seconds_per_unit(), None);
        let unit = CaseCost { units: 1.0 };
        for i in 0..100 {
            e.observe(unit, 1.0 + (i % 10) as f64 * 0.01);
        }
        let steady = e.seconds_per_unit().unwrap();
        assert!((1.08..=1.1).contains(&steady), "{steady}");
        e.observe(unit, 5.0);
        assert_eq!(
            e.seconds_per_unit(),
            Some(5.0),
            "the slow case counts at once"
        );
        for _ in 0..1000 {
            e.observe(unit, 1.0);
        }
        let quiet = e.seconds_per_unit().unwrap();
        assert!(quiet < 1.01, "the outlier decays away: {quiet}");
        assert_eq!(e.observed(), 1101);
        // Nonsense is ignored.
        e.observe(CaseCost { units: 0.0 }, 1.0);
        e.observe(unit, f64::NAN);
        assert_eq!(e.observed(), 1101);
    }

    #[test]
    fn limits_stay_between_the_floor_and_the_upper_bound_and_say_why() {
        let w = Watchdog::new(config(30));
        let tiny = CaseCost { units: 1.0 };
        let huge = CaseCost { units: 1e12 };
        // Before the warm-up: the prior.
        let d = w.limit_for(CaseCost { units: 1e6 });
        assert_eq!(d.basis, Basis::Prior);
        assert_eq!(
            d.limit,
            Duration::from_secs_f64(1e6 * PRIOR_SECONDS_PER_UNIT * MARGIN)
        );
        // A few slow cases raise it at once; fast ones never lower it under the prior.
        let early = Watchdog::new(config(30));
        early.observe(CaseCost { units: 1e6 }, 1e6 * PRIOR_SECONDS_PER_UNIT * 3.0);
        let raised = early.limit_for(CaseCost { units: 1e6 });
        assert_eq!(raised.basis, Basis::Prior);
        assert!(raised.limit > d.limit.mul_f64(2.9), "{raised:?}");
        let quick = Watchdog::new(config(30));
        quick.observe(CaseCost { units: 1e6 }, 1e-3);
        assert_eq!(quick.limit_for(CaseCost { units: 1e6 }).limit, d.limit);
        assert_eq!(w.limit_for(tiny).basis, Basis::Floor);
        assert_eq!(w.limit_for(tiny).limit, CPU_FLOOR);
        assert_eq!(w.limit_for(huge).basis, Basis::UpperBound);
        assert_eq!(w.limit_for(huge).limit, Duration::from_secs(30));
        // After it: the measured rate (1 ms per 1000 units).
        for _ in 0..WARM_UP {
            w.observe(CaseCost { units: 1000.0 }, 0.001);
        }
        let d = w.limit_for(CaseCost { units: 1e6 });
        assert_eq!(d.basis, Basis::Measured);
        assert!((d.limit.as_secs_f64() - 1e6 * 1e-6 * MARGIN).abs() < 1e-6);
        for units in [0.0, 1.0, 1e3, 1e6, 1e9, 1e15] {
            let d = w.limit_for(CaseCost { units });
            assert!(d.limit >= CPU_FLOOR && d.limit <= Duration::from_secs(30));
        }
        // An upper bound under the floor wins.
        let tight = Watchdog::new(config(0));
        assert_eq!(tight.limit_for(tiny).limit, Duration::ZERO);
    }

    #[test]
    fn a_sanitizer_stretches_the_adaptive_limits_but_not_the_upper_bound() {
        let w = Watchdog::new(WatchdogConfig::for_backend(
            BackendKind::Cuda,
            Duration::from_secs(600),
            20,
        ));
        let d = w.limit_for(CaseCost { units: 1.0 });
        assert_eq!(d.limit, CUDA_FLOOR * 20);
        assert_eq!(
            w.limit_for(CaseCost { units: 1e15 }).limit,
            Duration::from_secs(600)
        );
        assert_eq!(w.confirm_limit(&d), Some(CUDA_FLOOR * 20 * 4));
    }

    #[test]
    fn the_confirmation_limit_is_much_longer_but_bounded() {
        let w = Watchdog::new(config(30));
        let at = |secs: f64, basis| Deadline {
            limit: Duration::from_secs_f64(secs),
            basis,
            cost: CaseCost { units: 1.0 },
        };
        assert_eq!(w.confirm_limit(&at(0.5, Basis::Floor)), Some(CONFIRM_FLOOR));
        assert_eq!(
            w.confirm_limit(&at(3.0, Basis::Measured)),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            w.confirm_limit(&at(20.0, Basis::Measured)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(w.confirm_limit(&at(30.0, Basis::UpperBound)), None);
    }

    /// A made-up case that needs `needs` seconds: a hang when its limit is shorter, a pass
    /// otherwise; `None` never finishes (a deadlock).
    fn runner(
        needs: Option<f64>,
        limits: &mut Vec<Duration>,
    ) -> impl FnMut(Duration) -> Attempt + '_ {
        move |limit| {
            limits.push(limit);
            match needs {
                Some(s) if s <= limit.as_secs_f64() => Attempt {
                    verdict: Verdict::Pass,
                    execution: None,
                    seconds: s,
                },
                _ => Attempt {
                    verdict: Verdict::Finding {
                        signature: "hang:step".parse().unwrap(),
                        summary: String::new(),
                    },
                    execution: None,
                    seconds: limit.as_secs_f64(),
                },
            }
        }
    }

    fn warmed(units: f64, seconds: f64) -> Watchdog {
        let w = Watchdog::new(config(30));
        for _ in 0..WARM_UP {
            w.observe(CaseCost { units }, seconds);
        }
        w
    }

    #[test]
    fn a_slow_case_the_estimate_under_predicts_is_not_a_hang_after_the_rerun() {
        // Small cases taught the watchdog a rate; a large one (a quadratic neighbourhood, say)
        // runs 3 times longer than its adaptive limit.
        let w = warmed(CaseCost::of(&steps(10, 1), false).units, 0.005);
        let big = steps(6000, 20);
        let first = w.limit_for(CaseCost::of(&big, false)).limit.as_secs_f64();
        assert!(first < 30.0 / 4.0, "the limit is adaptive: {first}");
        let mut limits = Vec::new();
        let watched = watch(&w, &big, false, &mut runner(Some(first * 3.0), &mut limits));
        assert!(matches!(watched.attempt.verdict, Verdict::Pass));
        assert!(matches!(
            watched.confirmation,
            Some(Confirmation::Slow { .. })
        ));
        assert_eq!(limits.len(), 2);
        assert!(
            limits[1]
                >= limits[0]
                    .mul_f64(CONFIRM_FACTOR)
                    .min(Duration::from_secs(30))
        );
        let counts = w.report().counts;
        assert_eq!((counts.fired, counts.confirmed, counts.slow), (1, 0, 1));
        // Its time was learned: the next such case gets a limit that holds it.
        let next = w.limit_for(CaseCost::of(&big, false)).limit.as_secs_f64();
        assert!(next >= first * 3.0, "{next} vs {}", first * 3.0);
    }

    #[test]
    fn a_deadlock_is_a_hang_within_seconds_and_a_quick_case_runs_once() {
        let w = warmed(CaseCost::of(&steps(10, 1), false).units, 0.005);
        let small = steps(20, 4);
        let mut limits = Vec::new();
        let watched = watch(&w, &small, true, &mut runner(None, &mut limits));
        assert!(watched.attempt.is_hang());
        assert_eq!(
            watched.confirmation,
            Some(Confirmation::Hang {
                limit: CONFIRM_FLOOR
            })
        );
        assert_eq!(limits, vec![CPU_FLOOR, CONFIRM_FLOOR]);
        let total: Duration = limits.iter().sum();
        assert!(total <= Duration::from_secs(5), "{total:?}");

        let mut limits = Vec::new();
        let watched = watch(&w, &small, true, &mut runner(Some(0.03), &mut limits));
        assert!(matches!(watched.attempt.verdict, Verdict::Pass));
        assert_eq!(watched.confirmation, None);
        assert_eq!(limits.len(), 1);
        let report = w.report();
        assert_eq!(report.counts.confirmed, 1);
        assert_eq!(report.rate_cases, WARM_UP + 1);
    }

    #[test]
    fn a_batch_gets_the_sum_of_its_cases_limits_under_the_upper_bound() {
        let w = Watchdog::new(config(30));
        let small = steps(10, 2);
        let floor = w.limit_for(CaseCost::of(&small, false)).limit;
        assert_eq!(floor, CPU_FLOOR);
        let batch = w
            .batch_deadline(&[small.clone(), small.clone(), small.clone()], false)
            .unwrap();
        assert_eq!(batch.limit, 3 * CPU_FLOOR);
        assert_eq!(batch.basis, Basis::Floor);
        // Every case counted, as one at a time.
        assert_eq!(w.report().counts.floor, 3);
        // Two cases each under an upper bound of 3 s, together over it.
        let tight = Watchdog::new(config(3));
        let big = steps(6000, 20);
        let one = tight.limit_for(CaseCost::of(&big, false)).limit;
        assert!(one < Duration::from_secs(3) && 2 * one > Duration::from_secs(3));
        let capped = tight.batch_deadline(&[big.clone(), big], false).unwrap();
        assert_eq!(capped.limit, Duration::from_secs(3));
        assert_eq!(w.batch_deadline(&[], false), None);
    }

    #[test]
    fn a_case_past_the_upper_bound_is_a_hang_without_a_rerun() {
        let w = Watchdog::new(config(1));
        let mut limits = Vec::new();
        let watched = watch(&w, &steps(6000, 20), false, &mut runner(None, &mut limits));
        assert!(watched.attempt.is_hang());
        assert_eq!(watched.confirmation, None);
        assert_eq!(limits, vec![Duration::from_secs(1)]);
        assert_eq!(w.report().counts.upper_bound, 1);
    }

    #[test]
    fn the_report_line_says_how_the_limit_was_set() {
        let w = warmed(1000.0, 0.001);
        let line = w.report().line();
        assert_eq!(
            line,
            "watchdog: adaptive, floor 0.5 s, margin 8x, rate measured from 8 case(s); \
             --case-timeout 30 s upper bound; a worker idle (no CPU time, no launch) for 1 s is hung"
        );
        let cold = Watchdog::new(config(10)).report().line();
        assert!(
            cold.contains("rate measured from 0 case(s) (prior used until 8)"),
            "{cold}"
        );
    }
}
