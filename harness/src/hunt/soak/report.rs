//! The soak's report (`soak.json`, [`SOAK_FORMAT`](super::SOAK_FORMAT)): engine lives, crash
//! groups, and the text summary.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use forcefield::{EnvFault, Fault};

use super::injection::InjectionSummary;
use super::memory::{MemoryTrend, Series, WorkerMemory};
use super::step_time::StepTime;
use crate::case::BackendKind;
use crate::client::signature::Signature;

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
    pub(super) shortest_ops: usize,
    /// Watchdog for replaying `shortest` in one request: its life's busy time, with room.
    #[serde(skip)]
    pub(super) shortest_deadline: Duration,
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

pub(super) fn mib(bytes: u64) -> f64 {
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

pub(super) fn drift(t: &StepTime) -> String {
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
