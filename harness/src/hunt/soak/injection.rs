//! Injected environment faults of a soak: the seeded schedule that places `inject` ops, and the
//! counts by kind (armed, fired, recovered) the report gives.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use forcefield::EnvFault;

use crate::case::Op;
use crate::isolate::Execution;

/// The kinds of injected fault, in report order (as [`EnvFault::KINDS`]).
pub(super) const KINDS: usize = 4;

pub(super) fn kind_index(fault: &EnvFault) -> usize {
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
pub(super) const MAX_ALLOC_NTH: u32 = 3;

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
pub(super) fn exponential(rng: &mut ChaCha8Rng, rate: f64) -> f64 {
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
    pub(super) fn new(rate: f64) -> Self {
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

    pub(super) fn kind_mut(&mut self, index: usize) -> Option<&mut KindCounts> {
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
pub(super) struct FiredCounts {
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
    pub(super) fn by_kind(&self) -> [u64; KINDS] {
        [self.alloc, self.copy, self.launch, self.context]
    }
}

/// The fired counts of a soak reply, when the worker sends them.
pub(super) fn fired_counts(execution: &Execution) -> Option<FiredCounts> {
    match &execution.outcome {
        crate::isolate::Outcome::Reply { payload } => payload
            .get("soak")
            .and_then(|s| s.get("injections"))
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
        _ => None,
    }
}
