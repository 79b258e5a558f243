/*!
Benchmark results over time: recording criterion's samples with a machine fingerprint, deciding
regressions against a baseline with a statistic calibrated on this machine's noise, tracking layout
quality next to time, and drawing trends. `forcefield bench` ([`crate::commands::bench`]) is the
command line over this module.

# Brief overview

* [`criterion`] reads every sample criterion wrote; [`fingerprint`] identifies the machine (CPU,
  GPU, driver, CUDA, rustc) and the build (commit, dirty diff, planted faults, executables).
* [`counts`] takes counts of work that do not depend on the machine's load (instructions under
  Callgrind, per-kernel instructions and DRAM bytes from Nsight Compute) for record to store beside
  the samples.
* [`history`] is the JSON-lines file of [`history::Entry`]s, appended atomically; [`record`] builds
  an entry; [`quality`] measures the layouts of fixed-seed graphs for it.
* [`stats`] holds the rank test and [`stats::decide`], the verdict on one benchmark;
  [`calibrate`] derives per-benchmark noise thresholds from A/A entries and measures the gate's
  false-alarm rate and the smallest slowdown it catches; [`compare`] compares two entries (with
  [`rerun`] re-measuring unsure results interleaved); [`report`] draws the trend charts.

**Architecture Invariant:** entries are compared only when their fingerprints are equal; nothing
here ever puts numbers of two machines on the same axis or in the same verdict.
*/

pub(crate) mod calibrate;
pub(crate) mod compare;
pub(crate) mod counts;
pub mod criterion;
pub(crate) mod fingerprint;
pub(crate) mod history;
pub(crate) mod quality;
pub(crate) mod record;
pub(crate) mod report;
pub(crate) mod rerun;
pub(crate) mod stats;
