//! Step-time measurements of a soak: per-chunk samples and the drift between the first and last
//! tenth of them.

use serde::{Deserialize, Serialize};

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
