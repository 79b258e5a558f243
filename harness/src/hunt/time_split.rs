/*!
Where a campaign's time goes: the numbers that show the next bottleneck.

The case-running threads each report, per case, how long they spent generating it, the round trip
of running it in a worker, how much of that the worker itself reports as spent on the case, and
how much went to the watchdog's confirmation re-runs. [`TimeSplit`] sums them over a campaign:
*case work* (the worker's own time: the engine, the oracles and the CPU shadow; the capacity
re-run, which workers time from its first op, is shown as its part), *isolation* (the round trip minus the worker's time: spawning workers, framing and
parsing requests and replies, killing hung ones), *generation*, *confirmation re-runs*, *lost
batches* (a batch of cases run side by side in one worker that died: its cases then ran alone,
and the batch's time bought nothing), and *idle*
(what is left of threads × wall time: waiting for the coordinator, starting and stopping), then
*minimization*, which the driver does after the cases. Thread-seconds, not wall seconds: with two
workers a 60-second campaign has 120 of them.
*/

use serde::{Deserialize, Serialize};

/// One case's share, as its thread measured it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CaseTimes {
    /// Generating the case.
    pub generate: f64,
    /// Round trips to workers for the first run (every request of it: resumes too).
    pub round_trip: f64,
    /// Of `round_trip`, what the worker reported as spent on the case; `None` when it never
    /// replied (it crashed or hung), and then the whole round trip counts as case work.
    pub worker: Option<f64>,
    /// Round trips of the watchdog's confirmation re-run.
    pub confirm: f64,
    /// Of `worker`, the capacity re-run's seconds, when the worker reported them.
    pub capacity_rerun: Option<f64>,
    /// This case's share of a batch whose worker died before answering (the case then ran alone:
    /// that run is `round_trip`).
    pub lost: f64,
    /// Whether the verdict is that of a run alone in a private worker, the case having run first in
    /// a worker that shares the GPU without passing there (or losing its context on purpose).
    pub private_rerun: bool,
}

/// A campaign's time, summed over its case-running threads (`summary.json`'s `time`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSplit {
    /// Case-running threads (workers).
    pub workers: usize,
    /// Wall-clock seconds from the first case handed out to the last verdict.
    pub case_phase_seconds: f64,
    /// Cases whose verdict came back in that time.
    pub cases: u64,
    /// The worker's own time on cases (engine, oracles, shadow, capacity re-run).
    pub case_work_seconds: f64,
    /// Round trips minus the worker's own time: spawning, framing, parsing, killing.
    pub isolation_seconds: f64,
    /// Generating cases on the driver's threads.
    pub generation_seconds: f64,
    /// The watchdog's confirmation re-runs.
    pub confirmation_seconds: f64,
    /// Of the case work, the capacity re-runs (as workers report them).
    #[serde(default)]
    pub capacity_rerun_seconds: f64,
    /// Batches whose worker died before answering, their cases then run alone.
    #[serde(default)]
    pub lost_batch_seconds: f64,
    /// Minimizing findings, after the cases (driver wall time).
    pub minimization_seconds: f64,
    /// Cases whose verdict came from a run alone in a private worker because the campaign's
    /// workers share the GPU (`hunt::gpu_share`); their shared run's time is in the lost batches.
    #[serde(default)]
    pub private_reruns: u64,
}

impl TimeSplit {
    /// An empty split for `workers` threads.
    pub fn new(workers: usize) -> Self {
        TimeSplit {
            workers,
            ..TimeSplit::default()
        }
    }

    /// Adds one case.
    pub fn add(&mut self, case: CaseTimes) {
        self.cases += 1;
        let work = case.worker.unwrap_or(case.round_trip).min(case.round_trip);
        self.case_work_seconds += work;
        self.isolation_seconds += case.round_trip - work;
        self.generation_seconds += case.generate;
        self.confirmation_seconds += case.confirm;
        self.capacity_rerun_seconds += case.capacity_rerun.unwrap_or(0.0).min(work);
        self.lost_batch_seconds += case.lost;
        self.private_reruns += u64::from(case.private_rerun);
    }

    /// Thread-seconds of the case phase not accounted for by the parts.
    pub fn idle_seconds(&self) -> f64 {
        let total = self.workers as f64 * self.case_phase_seconds;
        (total
            - self.case_work_seconds
            - self.isolation_seconds
            - self.generation_seconds
            - self.confirmation_seconds
            - self.lost_batch_seconds)
            .max(0.0)
    }

    /// Cases per second of the case phase.
    pub fn cases_per_second(&self) -> f64 {
        if self.case_phase_seconds > 0.0 {
            self.cases as f64 / self.case_phase_seconds
        } else {
            0.0
        }
    }

    /// Two lines for people (three when cases were re-run in private workers).
    pub fn lines(&self) -> String {
        let total = (self.workers as f64 * self.case_phase_seconds).max(f64::MIN_POSITIVE);
        let part = |name: &str, seconds: f64| {
            format!("{name} {seconds:.1} s ({:.0}%)", 100.0 * seconds / total)
        };
        format!(
            "pace: {:.1} cases/s over {:.1} s of cases; minimization {:.1} s (its own worker, beside the cases)\n\
             time of {} worker thread(s) x {:.1} s: {} (of which {}), {}, {}, {}, {}, {}\n",
            self.cases_per_second(),
            self.case_phase_seconds,
            self.minimization_seconds,
            self.workers,
            self.case_phase_seconds,
            part(
                "case work (engine with its oracles and shadow)",
                self.case_work_seconds
            ),
            part("capacity re-run", self.capacity_rerun_seconds),
            part("isolation", self.isolation_seconds),
            part("generation", self.generation_seconds),
            part("confirmation re-runs", self.confirmation_seconds),
            part("lost batches", self.lost_batch_seconds),
            part("idle", self.idle_seconds()),
        ) + &self.private_line()
    }

    fn private_line(&self) -> String {
        if self.private_reruns == 0 {
            return String::new();
        }
        format!(
            "{} case(s) re-run alone in a private worker: they did not pass in a worker sharing the GPU, or lose their context on purpose\n",
            self.private_reruns
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_add_up_to_the_threads_time() {
        let mut split = TimeSplit::new(2);
        split.case_phase_seconds = 10.0;
        split.add(CaseTimes {
            generate: 0.5,
            round_trip: 4.0,
            worker: Some(3.0),
            confirm: 0.0,
            capacity_rerun: Some(1.0),
            lost: 0.0,
            private_rerun: false,
        });
        // A crash: no reply, the round trip was the case's.
        split.add(CaseTimes {
            generate: 0.5,
            round_trip: 2.0,
            worker: None,
            confirm: 6.0,
            capacity_rerun: None,
            lost: 0.0,
            private_rerun: true,
        });
        // A worker clock that disagrees never makes isolation negative.
        split.add(CaseTimes {
            generate: 0.0,
            round_trip: 1.0,
            worker: Some(1.5),
            confirm: 0.0,
            capacity_rerun: None,
            lost: 2.0,
            private_rerun: false,
        });
        assert_eq!(split.cases, 3);
        assert_eq!(split.case_work_seconds, 6.0);
        assert_eq!(split.isolation_seconds, 1.0);
        assert_eq!(split.generation_seconds, 1.0);
        assert_eq!(split.confirmation_seconds, 6.0);
        assert_eq!(split.capacity_rerun_seconds, 1.0);
        assert_eq!(split.lost_batch_seconds, 2.0);
        assert_eq!(split.idle_seconds(), 20.0 - 16.0);
        assert_eq!(split.cases_per_second(), 0.3);
        let lines = split.lines();
        assert!(
            lines.starts_with("pace: 0.3 cases/s over 10.0 s of cases"),
            "{lines}"
        );
        assert!(lines.contains("isolation 1.0 s (5%)"), "{lines}");
        assert!(
            lines.contains("(of which capacity re-run 1.0 s (5%))"),
            "{lines}"
        );
        assert!(lines.contains("lost batches 2.0 s (10%)"), "{lines}");
        assert!(lines.contains("idle 4.0 s (20%)"), "{lines}");
        assert_eq!(split.private_reruns, 1);
        assert!(
            lines.contains("1 case(s) re-run alone in a private worker"),
            "{lines}"
        );
    }
}
