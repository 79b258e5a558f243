/*!
The kernel performance log: every launch timed and recorded, with an anomaly flag when a sample
exceeds the mean plus three standard deviations of that kernel's recent window.

This is the component whose re-entrant locking hung the original server. The rule here: the metrics
lock is taken once per record and released before anything else that could lock is called; the sink
has its own lock, taken only after the metrics lock is dropped.
*/

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

/// Samples kept per kernel for the anomaly statistic.
pub const WINDOW: usize = 64;
/// Samples needed before anything is flagged.
pub const MIN_SAMPLES: usize = 8;
/// Records kept in memory for inspection.
pub const KEEP: usize = 1024;

/// One kernel launch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelRecord {
    /// Kernel name.
    pub kernel: &'static str,
    /// Duration in microseconds.
    pub duration_us: f64,
    /// Live nodes.
    pub num_nodes: u32,
    /// Live edges.
    pub num_edges: u32,
    /// Step number.
    pub iteration: u32,
    /// Whether the sample exceeded mean + 3σ of the window.
    pub anomaly: bool,
}

#[derive(Default, Debug)]
struct Metrics {
    windows: HashMap<&'static str, VecDeque<f64>>,
    launches: u64,
    anomalies: u64,
}

/// The log. Cheap to record into; optionally writes JSON lines to a sink.
#[derive(Default)]
pub struct KernelLog {
    metrics: Mutex<Metrics>,
    recent: Mutex<VecDeque<KernelRecord>>,
    sink: Mutex<Option<Box<dyn Write + Send>>>,
    relock_on_anomaly: bool,
}

impl std::fmt::Debug for KernelLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelLog").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `sample` exceeds mean + 3σ of `window` (population σ).
pub fn is_anomaly(window: &VecDeque<f64>, sample: f64) -> bool {
    if window.len() < MIN_SAMPLES {
        return false;
    }
    let n = window.len() as f64;
    let mean = window.iter().sum::<f64>() / n;
    let var = window.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    sample > mean + 3.0 * var.sqrt()
}

impl KernelLog {
    /// A log that keeps records in memory only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also writes each record as a JSON line to `sink`.
    pub fn set_sink(&self, sink: Box<dyn Write + Send>) {
        *lock(&self.sink) = Some(sink);
    }

    /// Planted fault `logger-relock`: re-lock the metrics on an anomaly, as the seed's logger did.
    pub(crate) fn set_relock_on_anomaly(&mut self, on: bool) {
        self.relock_on_anomaly = on;
    }

    /// Records one launch; returns whether it was flagged.
    pub fn record(&self, mut rec: KernelRecord) -> bool {
        {
            let mut m = lock(&self.metrics);
            let w = m.windows.entry(rec.kernel).or_default();
            rec.anomaly = is_anomaly(w, rec.duration_us);
            w.push_back(rec.duration_us);
            if w.len() > WINDOW {
                w.pop_front();
            }
            m.launches += 1;
            if rec.anomaly {
                m.anomalies += 1;
                if self.relock_on_anomaly {
                    // The seed's bug: a helper that locks the metrics again while this guard lives.
                    let _ = self.anomalies();
                }
            }
        }
        if let Some(sink) = lock(&self.sink).as_mut() {
            if let Ok(line) = serde_json::to_string(&rec) {
                let _ = writeln!(sink, "{line}");
            }
        }
        let anomaly = rec.anomaly;
        let mut recent = lock(&self.recent);
        recent.push_back(rec);
        if recent.len() > KEEP {
            recent.pop_front();
        }
        anomaly
    }

    /// Launches recorded.
    pub fn launches(&self) -> u64 {
        lock(&self.metrics).launches
    }

    /// Launches flagged as anomalies.
    pub fn anomalies(&self) -> u64 {
        lock(&self.metrics).anomalies
    }

    /// The most recent records (up to [`KEEP`]).
    pub fn recent(&self) -> Vec<KernelRecord> {
        lock(&self.recent).iter().cloned().collect()
    }

    /// Flushes the sink.
    pub fn flush(&self) {
        if let Some(sink) = lock(&self.sink).as_mut() {
            let _ = sink.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(d: f64) -> KernelRecord {
        KernelRecord {
            kernel: "k",
            duration_us: d,
            num_nodes: 1,
            num_edges: 0,
            iteration: 0,
            anomaly: false,
        }
    }

    #[test]
    fn flags_outliers_only_after_enough_samples() {
        let log = KernelLog::new();
        assert!(!log.record(rec(1000.0)));
        for i in 0..20 {
            assert!(!log.record(rec(10.0 + (i % 3) as f64)));
        }
        assert!(log.record(rec(1000.0)));
        assert_eq!(log.anomalies(), 1);
        assert_eq!(log.launches(), 22);
    }

    #[test]
    fn writes_json_lines() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                lock(&self.0).extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Shared::default();
        let log = KernelLog::new();
        log.set_sink(Box::new(buf.clone()));
        log.record(rec(5.0));
        let text = String::from_utf8(lock(&buf.0).clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["kernel"], "k");
        assert_eq!(v["duration_us"], 5.0);
    }
}
