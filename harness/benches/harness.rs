/*!
Criterion benchmarks of the harness itself: how fast it can hunt.

* `harness/isolated_cases`: a batch of [`BATCH`] small generated cases (fixed seeds) run one after
  another through one live isolated worker, with the oracles and the capacity-invariance re-run
  (throughput in cases per second).
* `harness/worker_start/cpu` and `harness/worker_start/cuda`: starting a worker process and getting
  the reply to a trivial case on that backend — process start, handshake, backend creation (for
  CUDA: context and kernel loading). The CUDA benchmark exists only where a CUDA device is usable.
* `harness/minimize/sort_pairs_crash`: minimizing a fixed failing case (a 60-node graph and eight
  operations that crash with the planted fault `sort-count-unclamped`) through isolated workers,
  as `forcefield minimize` does; every crashing candidate costs a worker restart.

Each sample is one batch, one start or one whole minimization, and reports CPU time, not wall
time (on a shared two-core machine the wall time mostly measures the neighbours): this process's
CPU time plus its workers' — read from `/proc/<pid>/task/<tid>/schedstat` for the live worker of
`isolated_cases`, and from the reaped children's usage for the workers that `worker_start` and
`minimize` start and stop. Workers are the `forcefield`
binary cargo builds for the benchmark (`FORCEFIELD_BIN` overrides it, for running this executable
on another machine). Run with `cargo bench -p forcefield-harness --bench harness` (about 30 s on two
cores).
*/

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use forcefield::{CudaBackend, Edge, Fault};
use forcefield_harness::case::generate::{generate_case_from_seed, GenConfig};
use forcefield_harness::case::minimize::MinimizeLimits;
use forcefield_harness::case::{BackendKind, Case, CaseGraph, Op};
use forcefield_harness::client::signature::Verdict;
use forcefield_harness::hunt::campaign::{case_seed, minimize_isolated, run_isolated};
use forcefield_harness::isolate::{SupervisorConfig, WorkerCommand, WorkerSlot};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Cases per `isolated_cases` sample.
const BATCH: usize = 10;
/// Watchdog of every isolated run.
const DEADLINE: Duration = Duration::from_secs(20);

/// CPU time of this process so far (all threads), in nanoseconds.
fn self_cpu_ns() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e9 + t.tv_nsec as f64
}

/// CPU time of every reaped child so far, in nanoseconds (microsecond resolution).
fn children_cpu_ns() -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    (us(u.ru_utime) + us(u.ru_stime)) * 1e3
}

/// CPU time of the live process `pid` (all its threads), in nanoseconds; 0 when it is gone.
fn live_cpu_ns(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum()
}

fn ns(total: f64) -> Duration {
    Duration::from_secs_f64(total.max(0.0) * 1e-9)
}

fn worker_binary() -> PathBuf {
    std::env::var_os("FORCEFIELD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_forcefield")))
}

fn slot() -> WorkerSlot {
    let command = WorkerCommand::new(worker_binary())
        .arg("worker")
        .arg("--threads")
        .arg("1");
    WorkerSlot::new(command, SupervisorConfig::default())
}

/// Sample count without a time budget: one measured operation per sample (criterion's own
/// `--sample-size`, `--measurement-time` and `--warm-up-time` win when given).
fn fixed_samples(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: usize,
) {
    let has =
        |flag: &str| std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    group.sampling_mode(SamplingMode::Flat);
    if !has("--sample-size") {
        group.sample_size(n);
    }
    if !has("--measurement-time") && !has("--warm-up-time") {
        group.warm_up_time(Duration::from_nanos(1));
        group.measurement_time(Duration::from_nanos(1));
    }
}

fn isolated_cases(c: &mut Criterion) {
    let cases: Vec<Case> = (0..BATCH as u64)
        .map(|k| generate_case_from_seed(case_seed(0x6265_6e63, k), &GenConfig::small()))
        .collect();
    let mut group = c.benchmark_group("harness");
    fixed_samples(&mut group, 20);
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut worker = slot();
    // Start the worker outside the measurement.
    let _ = run_isolated(
        &mut worker,
        &trivial_case(BackendKind::Cpu),
        false,
        DEADLINE,
    );
    group.bench_function("isolated_cases", |b| {
        b.iter_custom(|iters| {
            let mut total = 0.0;
            for _ in 0..iters {
                let pid = worker.pid();
                let started = self_cpu_ns() + live_cpu_ns(pid);
                for case in &cases {
                    let (verdict, _) = run_isolated(&mut worker, case, true, DEADLINE);
                    if let Verdict::Environment { message } = verdict {
                        panic!("isolated run failed: {message}");
                    }
                }
                assert_eq!(worker.pid(), pid, "a passing batch keeps its worker");
                total += self_cpu_ns() + live_cpu_ns(pid) - started;
            }
            ns(total)
        })
    });
    group.finish();
    worker.shutdown();
}

/// Two nodes, one edge, one step.
fn trivial_case(backend: BackendKind) -> Case {
    let mut case = Case::new(CaseGraph {
        num_nodes: 2,
        edges: vec![Edge::new(0, 1)],
        positions: None,
    });
    case.backend = backend;
    case.ops = vec![Op::Step { count: 1 }];
    case
}

fn worker_start(c: &mut Criterion) {
    let mut backends = vec![("cpu", BackendKind::Cpu)];
    if CudaBackend::is_available() {
        backends.push(("cuda", BackendKind::Cuda));
    }
    let mut group = c.benchmark_group("harness");
    fixed_samples(&mut group, 20);
    for (name, backend) in backends {
        let case = trivial_case(backend);
        group.bench_function(format!("worker_start/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = 0.0;
                for _ in 0..iters {
                    let mut worker = slot();
                    let started = self_cpu_ns() + children_cpu_ns();
                    let (verdict, _) = run_isolated(&mut worker, &case, false, DEADLINE);
                    // Stopping reaps the worker, which is what makes its CPU time visible.
                    worker.shutdown();
                    total += self_cpu_ns() + children_cpu_ns() - started;
                    assert!(
                        verdict == Verdict::Pass,
                        "trivial case on {name}: {verdict:?}"
                    );
                }
                ns(total)
            })
        });
    }
    group.finish();
}

/// A 60-node graph, eight operations; node growth then a step crashes in `sort_pairs` with the
/// planted fault `sort-count-unclamped`. Minimization brings it down to a node and two ops.
fn failing_case() -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(0x6d69_6e69);
    let mut edge = |n: u32| {
        let u = rng.gen_range(0..n);
        Edge::new(u, (u + rng.gen_range(1..n)) % n)
    };
    let mut case = Case::new(CaseGraph {
        num_nodes: 60,
        edges: (0..120).map(|_| edge(60)).collect(),
        positions: None,
    });
    case.faults = vec![Fault::SortCountUnclamped];
    case.ops = vec![
        Op::Step { count: 2 },
        Op::AddEdges {
            edges: (0..10).map(|_| edge(60)).collect(),
        },
        Op::Step { count: 1 },
        Op::Sssp { source: 0 },
        Op::AddNodes {
            count: 30,
            positions: None,
        },
        Op::ReadPositions,
        Op::Step { count: 2 },
        Op::Step { count: 1 },
    ];
    case
}

fn minimize(c: &mut Criterion) {
    let case = failing_case();
    let mut worker = slot();
    let (verdict, _) = run_isolated(&mut worker, &case, false, DEADLINE);
    let Some(signature) = verdict.signature().cloned() else {
        eprintln!("harness/minimize: the fixed case does not fail ({verdict:?}); skipped");
        return;
    };
    let mut group = c.benchmark_group("harness");
    fixed_samples(&mut group, 10);
    let stop = AtomicBool::new(false);
    group.bench_function("minimize/sort_pairs_crash", |b| {
        b.iter_custom(|iters| {
            let mut total = 0.0;
            for _ in 0..iters {
                let started = self_cpu_ns() + children_cpu_ns() + live_cpu_ns(worker.pid());
                let (small, report) = minimize_isolated(
                    &mut worker,
                    &case,
                    &signature,
                    false,
                    DEADLINE,
                    MinimizeLimits::default(),
                    &stop,
                );
                total += self_cpu_ns() + children_cpu_ns() + live_cpu_ns(worker.pid()) - started;
                assert!(
                    small.ops.len() < case.ops.len() && !report.hit_limit,
                    "minimization did not converge: {report:?}"
                );
            }
            ns(total)
        })
    });
    group.finish();
    worker.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default().nresamples(10_000);
    targets = isolated_cases, worker_start, minimize
}
criterion_main!(benches);
