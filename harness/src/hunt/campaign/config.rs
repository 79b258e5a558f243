//! A campaign's configuration: its [`Shard`], [`Budget`] and [`CampaignConfig`], the seed of each
//! case ([`case_seed`]) and the watchdog its settings give ([`campaign_watchdog`]).

use std::time::Duration;

use forcefield::Fault;
use serde::{Deserialize, Serialize};

use crate::case::generate::GenConfig;
use crate::case::minimize::MinimizeLimits;
use crate::case::BackendKind;
use crate::hunt::watchdog::{Watchdog, WatchdogConfig};
use crate::isolate::WorkerCommand;
use crate::sanitizers::mode::SanitizeMode;

/// A shard of a campaign: cases with `k % count == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u64,
    /// Shards in all.
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a shard (expected I/N with 0 <= I < N, e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.parse::<u64>().map_err(|_| bad())?,
            n.parse::<u64>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// When a campaign stops generating cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// After this long.
    Time(Duration),
    /// After this many cases (of this shard).
    Cases(u64),
}

/// Everything a campaign needs.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    /// Backend of every case.
    pub backend: BackendKind,
    /// When to stop.
    pub budget: Budget,
    /// Campaign seed.
    pub seed: u64,
    /// Worker processes.
    pub jobs: usize,
    /// With CUDA: one worker per listed GPU (overrides `jobs`).
    pub gpus: Vec<u32>,
    /// Planted faults switched on in every case.
    pub faults: Vec<Fault>,
    /// This machine's shard.
    pub shard: Shard,
    /// Upper bound of the per-case watchdog (see [`crate::hunt::watchdog`]).
    pub case_deadline: Duration,
    /// Re-run each case under another growth policy.
    pub capacity_invariance: bool,
    /// Minimize new findings, with these limits.
    pub minimize: Option<MinimizeLimits>,
    /// How to start a worker (already under `sanitize`: see [`crate::client::sanitize_mode::worker_command`]).
    pub worker: WorkerCommand,
    /// The sanitizer the workers run under; it stretches the per-case deadline by its slowdown.
    pub sanitize: SanitizeMode,
    /// Generator settings.
    pub generator: GenConfig,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Cases each worker runs side by side in one request (`--cases-per-worker`; 1: one at a
    /// time). A worker that dies with cases of a batch unanswered has each of them run alone.
    pub cases_per_worker: usize,
    /// Whether a worker that uses no CPU time for a while is hung (the watchdog's idle check, on
    /// the CPU backend). Off when the work happens in another process than the worker: a worker
    /// hosting a `--target` program sleeps while its target computes.
    pub idle_check: bool,
    /// Against a target: who it is and the checks its capabilities skip, the start of the
    /// summary's `target` totals (`None`: Forcefield's own engine).
    pub target: Option<crate::hunt::target_totals::TargetTotals>,
    /// With CUDA: the workers share the GPU through MPS, and every case that does not pass in a
    /// shared worker is re-run in a private one ([`crate::hunt::gpu_share`]). `None`: each worker
    /// has a context of its own.
    pub shared_gpu: Option<crate::hunt::gpu_share::SharedGpu>,
}

impl CampaignConfig {
    /// The generator of every case: the settings with the campaign's faults and backend.
    pub fn case_generator(&self) -> GenConfig {
        GenConfig {
            faults: self.faults.clone(),
            backend: self.backend,
            ..self.generator.clone()
        }
    }
}

/// The seed of case `k` of a campaign.
pub fn case_seed(campaign_seed: u64, k: u64) -> u64 {
    forcefield::hash::mix3(campaign_seed, k, 0x636173)
}

/// The watchdog of a campaign's cases: adaptive limits under `upper_bound` (`--case-timeout`,
/// already stretched by the sanitizer's slowdown), the adaptive ones stretched by it too.
pub(crate) fn campaign_watchdog(
    backend: BackendKind,
    upper_bound: Duration,
    sanitize: SanitizeMode,
) -> Watchdog {
    Watchdog::new(WatchdogConfig::for_backend(
        backend,
        upper_bound,
        sanitize.deadline_factor(),
    ))
}
