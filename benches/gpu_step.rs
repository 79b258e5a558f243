/*!
Criterion benchmarks of the layout step on the CUDA backend (group `gpu_step`).

* `gpu_step/10k`, `gpu_step/100k`, `gpu_step/1M`: one `Engine::step(1)` on a random graph with ten
  edges per node (so 1M nodes carry 10M edges).
* `gpu_step/1M_10M/<kernel>`: the same 1M-node step broken down by kernel. Before these run, the
  median of each kernel over [`BREAKDOWN_STEPS`] steps is printed to stderr as a table (for the
  smaller sizes too, where no per-kernel benchmark follows).
* `FORCEFIELD_FORCE_LANES=<L>` (1, 2, 4, ..., 32) fixes the force pass's threads a node at every
  size (otherwise the engine's rule, `forcefield::params::force_lanes_for`); each size's first line
  says which ran.
* `FORCEFIELD_GPU_STEP_PROBE=1` replaces all of this with the force pass taken apart at 1M nodes
  (`probe_force_pass`): repulsion candidates a node, and the force pass with springs or repulsion
  off.
* `FORCEFIELD_GPU_STEP_PROBE=cells` replaces all of this with the cost of the repulsion's reach
  (`probe_cell_sizes`): at each size, the automatic cell edge and fixed edges of a fraction of it,
  each with its repulsion candidates a node, its force pass and `step(32)`, and the layout it gives
  after [`CELL_PROBE_STEPS`] steps (the mean length of an edge over the mean distance of two random
  nodes: lower is tighter). The data for choosing the automatic rule.
* `gpu_sort` (printed, not a criterion group): the engine's `sort_pairs` alone on n hashed keys
  below 2^bits, for the sizes and widths of `benches/gpu_sort_cub.cu`, CUB's radix sort on the
  same keys: run both in one call on the GPU machine to compare. `FORCEFIELD_GPU_SORT=1` runs it after
  the step benchmarks, `FORCEFIELD_GPU_SORT=only` alone; `FORCEFIELD_SORT_TILE_ROUNDS=<r>` (1 to 16)
  fixes the one-sweep sort's tile of `r * 256` items (otherwise the backend's rule).
* `gpu_step/wall/<size>`: the wall-clock time of `step(1)` as a per-frame caller runs it: the
  checkpoint brought up to date only on demand ([`CheckpointCadence::OnDemand`]) and kernels
  queued without per-kernel waits (`Engine::set_kernel_timing(false)`).

After each size, a summary line gives the medians of: device time (the sum of the kernel events),
wall time of `step(1)` with per-kernel timing, wall time of `step(1)` and of `step(32)` (per step)
untimed, and wall time of `step(1)` under the default cadence (the checkpoint downloaded after every
step, as before the cadence existed).

# What is timed

The CUDA backend brackets every kernel with CUDA events and the engine records each duration in its
kernel log, so each benchmark uses `iter_custom` and returns **device time**: the sum of the event
times of the kernels of the steps it ran (for a per-kernel benchmark, that kernel's time only). This
is the number the engine's cost model is about, and it excludes what the backend does on the host
between kernels: today it waits for each kernel's closing event before the next launch, reads six
floats of bounds back, and clears the cell ranges with two memsets. Those costs are real for a
user, so the wall-clock time of each step (measured around `step(1)`, which returns only after the
last kernel's event) is collected as well and printed next to the device time in the summary line
of each size; the gap between the two is the host and launch overhead.

# Every timed step starts from the same state

A random graph contracts for tens of steps from its seeded cube into a dense ball, and the force
pass costs more as it does, so stepping one engine on would time a moving target that depends on
how many iterations criterion chose. Rebuilding the engine for every step (as the CPU benchmark does)
is too slow at 10M edges. Instead each size is warmed up once for [`WARMUP_STEPS`] steps, its
positions and velocities are copied to spare device buffers, and before every timed step they are
copied back (device to device, outside the timing) into the buffers the engine currently reads. The
step counter still advances, which changes the damping schedule but not the work.

# Run time

Criterion plans its iteration counts from the wall time of each `iter_custom` call, not from the
time the call returns, so the warm-up and measurement times below are wall-clock budgets: a
benchmark costs about its budget whatever share of a step it reports. With the graph building and
warm-ups, the whole binary runs in about a minute on an H100.

Without a usable CUDA device the binary prints `skipped: no CUDA device` and exits 0 without
registering anything. Run with `cargo bench --bench gpu_step`. Planted faults named by
`FORCEFIELD_FAULTS` are switched on in the engines.
*/

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use forcefield::backend::{DeviceAlloc, DeviceSpan, GridSpec, Launch, SortArgs, GRID_WORDS};
use forcefield::params::features;
use forcefield::{
    Backend, BackendError, BufferName, CheckpointCadence, CudaBackend, Engine, EngineConfig,
    FaultSet, SimParams,
};

/// Steps from the seeded positions before the state every timed step starts from is saved.
const WARMUP_STEPS: u32 = 20;
/// Steps of the per-kernel table.
const BREAKDOWN_STEPS: usize = 50;
/// Samples of each wall-time median in the summary line.
const WALL_SAMPLES: usize = 30;
/// Plain steps at the end of the probe, for a profiler.
const PROBE_TAIL_STEPS: usize = 3;
/// Steps from the warm state before the cell probe measures a layout.
const CELL_PROBE_STEPS: u32 = 300;
/// Fractions of the automatic cell edge the cell probe fixes (1.0 is the automatic rule itself).
const CELL_PROBE_FRACTIONS: [f32; 5] = [1.0, 0.8, 0.63, 0.5, 0.4];
/// Pairs the cell probe samples for its distance ratio.
const CELL_PROBE_PAIRS: usize = 200_000;
/// Steps of one multi-step call in the summary line.
const MULTI_STEPS: u32 = 32;
/// Criterion's wall-clock warm-up and measurement per size.
const SIZE_WARM_UP: Duration = Duration::from_millis(500);
const SIZE_MEASUREMENT: Duration = Duration::from_secs(3);
/// Criterion's wall-clock warm-up and measurement per kernel.
const KERNEL_WARM_UP: Duration = Duration::from_millis(300);
const KERNEL_MEASUREMENT: Duration = Duration::from_millis(1500);

/// The benchmark sizes: label and nodes.
const SIZES: [(&str, u32); 3] = [("10k", 10_000), ("100k", 100_000), ("1M", 1_000_000)];
/// The size broken down by kernel, and its label there.
const BREAKDOWN_NODES: u32 = 1_000_000;
const BREAKDOWN_LABEL: &str = "1M_10M";

/// The engine's state that the restore copies back: positions and velocities.
const SAVED: [BufferName; 6] = [
    BufferName::PosInX,
    BufferName::PosInY,
    BufferName::PosInZ,
    BufferName::VelInX,
    BufferName::VelInY,
    BufferName::VelInZ,
];

fn lock(m: &Mutex<CudaBackend>) -> MutexGuard<'_, CudaBackend> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A CUDA backend the engine and the benchmark share: the engine owns its backend, and the
/// benchmark needs the same device (and context) to save and restore the engine's buffers.
struct SharedCuda(Arc<Mutex<CudaBackend>>);

impl Backend for SharedCuda {
    fn name(&self) -> &'static str {
        lock(&self.0).name()
    }
    fn device_description(&self) -> String {
        lock(&self.0).device_description()
    }
    fn alloc(&mut self, buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError> {
        lock(&self.0).alloc(buffer, bytes)
    }
    fn free(&mut self, alloc: DeviceAlloc) {
        lock(&self.0).free(alloc)
    }
    fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), BackendError> {
        lock(&self.0).upload(dst, src)
    }
    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError> {
        lock(&self.0).download(src, dst)
    }
    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError> {
        lock(&self.0).copy(dst, src, bytes)
    }
    fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError> {
        lock(&self.0).fill_u32(dst, count, value)
    }
    fn launch(&mut self, launch: &Launch) -> Result<f64, BackendError> {
        lock(&self.0).launch(launch)
    }
    fn synchronize(&mut self) -> Result<(), BackendError> {
        lock(&self.0).synchronize()
    }
    fn bytes_allocated(&self) -> usize {
        lock(&self.0).bytes_allocated()
    }
    fn lose_context(&mut self) -> BackendError {
        lock(&self.0).lose_context()
    }
    fn reset(&mut self) -> Result<(), BackendError> {
        lock(&self.0).reset()
    }
    fn set_faults(&mut self, faults: forcefield::FaultSet) {
        lock(&self.0).set_faults(faults)
    }
    fn set_kernel_timing(&mut self, on: bool) {
        lock(&self.0).set_kernel_timing(on)
    }
}

/// The times of one step.
#[derive(Clone, Debug, Default)]
struct StepTime {
    /// Wall clock around `step(1)`.
    wall: Duration,
    /// Event time of each kernel launched, in launch order.
    kernels: Vec<(&'static str, Duration)>,
}

impl StepTime {
    /// Sum of the kernels' event times.
    fn device(&self) -> Duration {
        self.kernels.iter().map(|(_, d)| *d).sum()
    }

    /// Sum of the event times of `kernel`'s launches.
    fn kernel(&self, kernel: &str) -> Duration {
        self.kernels
            .iter()
            .filter(|(k, _)| *k == kernel)
            .map(|(_, d)| *d)
            .sum()
    }
}

/// One benchmark size: an engine at its warmed-up state and the saved copy of that state.
struct Case {
    engine: Engine<SharedCuda>,
    device: Arc<Mutex<CudaBackend>>,
    saved: Vec<(BufferName, DeviceAlloc)>,
}

impl Case {
    /// Builds the random graph of `num_nodes`, runs the warm-up and saves the state.
    fn new(num_nodes: u32, faults: FaultSet) -> Result<Case, Box<dyn std::error::Error>> {
        let device = Arc::new(Mutex::new(CudaBackend::new(0)?));
        // The CPU benchmark's graphs, so that both time the same work.
        let graph = common::random_graph(num_nodes, common::EDGES_PER_NODE, common::GRAPH_SEED);
        let mut engine = Engine::with_config(
            SharedCuda(Arc::clone(&device)),
            &graph,
            SimParams::default(),
            EngineConfig::default(),
            faults,
        )?;
        // Timed steps measure the step, not the checkpoint's download (see `wall_of_step`).
        engine.set_checkpoint_cadence(CheckpointCadence::OnDemand);
        engine.step(WARMUP_STEPS)?;
        let mut saved = Vec::new();
        for name in SAVED {
            let bytes = num_nodes as usize * 4;
            let mut backend = lock(&device);
            let copy = backend.alloc(name, bytes)?;
            backend.copy(copy.addr, Self::live_addr(&engine, name)?, bytes)?;
            saved.push((name, copy));
        }
        lock(&device).synchronize()?;
        Ok(Case {
            engine,
            device,
            saved,
        })
    }

    /// The address the engine reads `name` from now (in/out buffers swap every step).
    fn live_addr(engine: &Engine<SharedCuda>, name: BufferName) -> Result<u64, String> {
        engine
            .buffers()
            .find(|b| b.name == name)
            .map(|b| b.alloc.addr)
            .ok_or_else(|| format!("the engine has no buffer {}", name.as_str()))
    }

    /// Copies the saved state back and waits for the copies, so that none of it is timed.
    fn restore(&mut self) {
        let bytes = self.engine.num_nodes() as usize * 4;
        let mut backend = lock(&self.device);
        for (name, copy) in &self.saved {
            let dst = Self::live_addr(&self.engine, *name).expect("the engine's buffer exists");
            backend
                .copy(dst, copy.addr, bytes)
                .expect("restoring the saved state");
        }
        backend.synchronize().expect("restoring the saved state");
    }

    /// One step from the saved state, with its times.
    fn timed_step(&mut self) -> StepTime {
        self.restore();
        let iteration = self.engine.iteration();
        let started = Instant::now();
        self.engine.step(1).expect("step succeeds");
        let wall = started.elapsed();
        let kernels = self
            .engine
            .kernel_log()
            .recent()
            .into_iter()
            .filter(|r| r.iteration == iteration)
            .map(|r| (r.kernel, Duration::from_secs_f64(r.duration_us * 1e-6)))
            .collect();
        StepTime { wall, kernels }
    }

    /// Wall time of one `step(count)` call from the saved state, divided by `count`: untimed
    /// (kernels queued, one wait at the end) under `cadence`, or with per-kernel timing.
    fn wall_of_step(&mut self, count: u32, cadence: CheckpointCadence, timed: bool) -> Duration {
        self.engine.set_checkpoint_cadence(cadence);
        self.engine.set_kernel_timing(timed);
        self.restore();
        let started = Instant::now();
        self.engine.step(count).expect("step succeeds");
        let wall = started.elapsed();
        self.engine.set_kernel_timing(true);
        self.engine
            .set_checkpoint_cadence(CheckpointCadence::OnDemand);
        wall / count
    }

    /// Median of [`WALL_SAMPLES`] calls of [`Case::wall_of_step`].
    fn median_wall(&mut self, count: u32, cadence: CheckpointCadence, timed: bool) -> Duration {
        let mut samples: Vec<Duration> = (0..WALL_SAMPLES)
            .map(|_| self.wall_of_step(count, cadence, timed))
            .collect();
        median(&mut samples)
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let mut backend = lock(&self.device);
        for (_, copy) in self.saved.drain(..) {
            backend.free(copy);
        }
    }
}

/// Median of `samples` (which it sorts); zero when empty.
fn median(samples: &mut [Duration]) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `gpu_step/<size>`: the device time of one step.
fn bench_size(c: &mut Criterion, label: &str, case: &mut Case) {
    let mut group = c.benchmark_group("gpu_step");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.warm_up_time(SIZE_WARM_UP);
    group.measurement_time(SIZE_MEASUREMENT);
    group.throughput(Throughput::Elements(case.engine.num_nodes() as u64));
    let mut steps: Vec<StepTime> = Vec::new();
    group.bench_function(BenchmarkId::from_parameter(label), |b| {
        b.iter_custom(|iters| {
            let mut device = Duration::ZERO;
            for _ in 0..iters {
                let step = case.timed_step();
                device += step.device();
                steps.push(step);
            }
            device
        })
    });
    group.finish();
    let lazy = CheckpointCadence::OnDemand;
    let untimed = case.median_wall(1, lazy, false);
    let multi = case.median_wall(MULTI_STEPS, lazy, false);
    let strict = case.median_wall(1, CheckpointCadence::EveryOperation, true);
    // Nothing ran when criterion's filter skipped the benchmark: what a caller waits still shows.
    if steps.is_empty() {
        eprintln!(
            "gpu_step/{label}: medians: wall step(1) untimed {:.1} us, step({MULTI_STEPS}) untimed {:.1} us a step, default cadence {:.1} us",
            micros(untimed),
            micros(multi),
            micros(strict),
        );
        return;
    }
    let mut device: Vec<Duration> = steps.iter().map(StepTime::device).collect();
    let mut wall: Vec<Duration> = steps.iter().map(|s| s.wall).collect();
    eprintln!(
        "gpu_step/{label}: {} nodes, {} edges; medians: device (kernel events) {:.1} us; wall step(1): timed {:.1} us, untimed {:.1} us, step({MULTI_STEPS}) untimed {:.1} us a step, default cadence {:.1} us",
        case.engine.num_nodes(),
        case.engine.num_edges(),
        micros(median(&mut device)),
        micros(median(&mut wall)),
        micros(untimed),
        micros(multi),
        micros(strict),
    );
    let mut group = c.benchmark_group("gpu_step");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.warm_up_time(SIZE_WARM_UP);
    group.measurement_time(SIZE_MEASUREMENT);
    group.throughput(Throughput::Elements(case.engine.num_nodes() as u64));
    group.bench_function(BenchmarkId::new("wall", label), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| case.wall_of_step(1, lazy, false)).sum())
    });
    group.finish();
}

/// The per-kernel table of one size (printed to stderr): the median of each kernel over
/// [`BREAKDOWN_STEPS`] steps, in launch order.
fn kernel_table(case: &mut Case, label: &str) -> Vec<(&'static str, Duration)> {
    let mut per_kernel: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    let mut device = Vec::new();
    let mut wall = Vec::new();
    // Launch order, for the table.
    let mut order: Vec<&'static str> = Vec::new();
    for _ in 0..BREAKDOWN_STEPS {
        let step = case.timed_step();
        for &(kernel, _) in &step.kernels {
            if !order.contains(&kernel) {
                order.push(kernel);
            }
        }
        for &kernel in &order {
            per_kernel
                .entry(kernel)
                .or_default()
                .push(step.kernel(kernel));
        }
        device.push(step.device());
        wall.push(step.wall);
    }
    eprintln!(
        "gpu_step/{label}: median per kernel over {BREAKDOWN_STEPS} steps ({} nodes, {} edges)",
        case.engine.num_nodes(),
        case.engine.num_edges()
    );
    let mut medians = Vec::new();
    for &kernel in &order {
        let m = median(per_kernel.entry(kernel).or_default());
        medians.push((kernel, m));
        eprintln!("  {kernel:<16} {:>10.1} us", micros(m));
    }
    let sum: Duration = medians.iter().map(|(_, m)| *m).sum();
    eprintln!("  {:<16} {:>10.1} us", "(sum of medians)", micros(sum));
    eprintln!(
        "  {:<16} {:>10.1} us",
        "(step, device)",
        micros(median(&mut device))
    );
    eprintln!(
        "  {:<16} {:>10.1} us",
        "(step, wall)",
        micros(median(&mut wall))
    );
    medians
}

/// The per-kernel table and `gpu_step/1M_10M/<kernel>`.
fn bench_kernels(c: &mut Criterion, case: &mut Case) {
    let medians = kernel_table(case, BREAKDOWN_LABEL);
    let mut group = c.benchmark_group("gpu_step");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(KERNEL_WARM_UP);
    group.measurement_time(KERNEL_MEASUREMENT);
    group.throughput(Throughput::Elements(case.engine.num_nodes() as u64));
    for (kernel, _) in medians {
        let id = format!("{BREAKDOWN_LABEL}/{kernel}");
        group.bench_function(id.as_str(), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| case.timed_step().kernel(kernel)).sum())
        });
    }
    group.finish();
}

/// The force pass taken apart at 1M nodes (`FORCEFIELD_GPU_STEP_PROBE=1`): the grid's occupancy and
/// repulsion candidates per node (counted on the host from the grid stage), and the force pass's
/// median with springs off and with repulsion off, so that its time can be split between the
/// 27-cell walk and the CSR rows. Then `PROBE_TAIL_STEPS` plain steps for a profiler to catch.
fn probe_force_pass(case: &mut Case) -> Result<(), Box<dyn std::error::Error>> {
    case.restore();
    case.engine.step(1)?;
    let g = GridOccupancy::read(case)?;
    eprintln!(
        "gpu_probe: grid {:?} cell {:.4} ({} cells, {} non-empty, {:.2} nodes a non-empty cell); repulsion candidates a node: mean {:.1}, max {}",
        g.dims,
        g.cell_size,
        g.cells,
        g.nonempty,
        g.nodes as f64 / g.nonempty.max(1) as f64,
        g.mean_candidates,
        g.max_candidates
    );
    let base = case.engine.params().clone();
    let variants = [
        ("all forces", base.feature_flags),
        ("springs off", base.feature_flags & !features::SPRINGS),
        ("repulsion off", base.feature_flags & !features::REPULSION),
        (
            "both off",
            base.feature_flags & !(features::SPRINGS | features::REPULSION),
        ),
    ];
    for (label, flags) in variants {
        let mut p = base.clone();
        p.feature_flags = flags;
        case.engine.set_params(p)?;
        let mut force: Vec<Duration> = (0..BREAKDOWN_STEPS)
            .map(|_| case.timed_step().kernel("force_pass"))
            .collect();
        eprintln!(
            "gpu_probe: force_pass {label:<14} {:>9.1} us",
            micros(median(&mut force))
        );
    }
    case.engine.set_params(base)?;
    for _ in 0..PROBE_TAIL_STEPS {
        case.timed_step();
    }
    Ok(())
}

/// The engine's current grid and how full it is, counted on the host from the grid stage: the
/// repulsion candidates of a node are the slots of the 27 cells around its own.
struct GridOccupancy {
    dims: [u32; 3],
    cell_size: f32,
    cells: u64,
    nonempty: usize,
    nodes: usize,
    mean_candidates: f64,
    max_candidates: u64,
}

impl GridOccupancy {
    fn read(case: &mut Case) -> Result<GridOccupancy, Box<dyn std::error::Error>> {
        let Some(g) = case.engine.inspect_grid()? else {
            return Err("no grid after a step".into());
        };
        let dims = g.grid.dims.map(|d| d as i64);
        let count = |x: i64, y: i64, z: i64| -> u64 {
            if x < 0 || y < 0 || z < 0 || x >= dims[0] || y >= dims[1] || z >= dims[2] {
                return 0;
            }
            let key = ((z * dims[1] + y) * dims[0] + x) as usize;
            (g.cell_end[key] - g.cell_start[key]) as u64
        };
        let (mut candidates, mut max_candidates) = (0u64, 0u64);
        for &key in &g.sorted_keys {
            let key = key as i64;
            let (x, y, z) = (
                key % dims[0],
                (key / dims[0]) % dims[1],
                key / (dims[0] * dims[1]),
            );
            let mut c = 0;
            for dz in -1..=1 {
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        c += count(x + dx, y + dy, z + dz);
                    }
                }
            }
            candidates += c;
            max_candidates = max_candidates.max(c);
        }
        let nodes = g.sorted_keys.len();
        Ok(GridOccupancy {
            dims: g.grid.dims,
            cell_size: g.grid.cell_size,
            cells: g.grid.num_cells() as u64,
            nonempty: g
                .cell_start
                .iter()
                .zip(&g.cell_end)
                .filter(|(s, e)| e > s)
                .count(),
            nodes,
            mean_candidates: candidates as f64 / nodes.max(1) as f64,
            max_candidates,
        })
    }
}

/// The mean length of a sampled edge over the mean distance of sampled random pairs.
fn distance_ratio(positions: &[[f32; 3]], edges: &[forcefield::Edge]) -> f64 {
    let dist = |a: usize, b: usize| -> f64 {
        let (p, q) = (positions[a], positions[b]);
        let d: f64 = (0..3).map(|k| (p[k] as f64 - q[k] as f64).powi(2)).sum();
        d.sqrt()
    };
    let n = positions.len() as u64;
    if n < 2 || edges.is_empty() {
        return f64::NAN;
    }
    // A fixed SplitMix64 stream, so that every run samples the same pairs.
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (mut connected, mut random) = (0.0, 0.0);
    for _ in 0..CELL_PROBE_PAIRS {
        let e = &edges[(next() % edges.len() as u64) as usize];
        connected += dist(e.u as usize, e.v as usize);
        random += dist((next() % n) as usize, (next() % n) as usize);
    }
    connected / random
}

/// The cost of the repulsion's reach (`FORCEFIELD_GPU_STEP_PROBE=cells`): at each size, the
/// automatic cell edge and fixed edges of [`CELL_PROBE_FRACTIONS`] of it. A smaller cell means
/// fewer candidates a node (the stencil holds fewer nodes) and a shorter repulsion (it reaches
/// only the stencil): this prints both sides, the time and the layout.
fn probe_cell_sizes(faults: FaultSet) -> Result<(), Box<dyn std::error::Error>> {
    for (label, num_nodes) in SIZES {
        let mut case = Case::new(num_nodes, faults)?;
        let base = case.engine.params().clone();
        case.restore();
        case.engine.step(1)?;
        let auto_cell = GridOccupancy::read(&mut case)?.cell_size;
        for fraction in CELL_PROBE_FRACTIONS {
            let mut p = base.clone();
            // 1.0 keeps the automatic rule (0), which follows the bounds step by step.
            p.grid_cell_size = if fraction == 1.0 {
                0.0
            } else {
                auto_cell * fraction
            };
            case.engine.set_params(p)?;
            case.restore();
            case.engine.step(1)?;
            let grid = GridOccupancy::read(&mut case)?;
            let (cell, candidates) = (grid.cell_size, grid.mean_candidates);
            let mut force: Vec<Duration> = (0..BREAKDOWN_STEPS)
                .map(|_| case.timed_step().kernel("force_pass"))
                .collect();
            let mut device: Vec<Duration> = (0..BREAKDOWN_STEPS)
                .map(|_| case.timed_step().device())
                .collect();
            let multi = case.median_wall(MULTI_STEPS, CheckpointCadence::OnDemand, false);
            case.restore();
            case.engine.set_kernel_timing(false);
            case.engine.step(CELL_PROBE_STEPS)?;
            case.engine.set_kernel_timing(true);
            let positions = case.engine.positions()?;
            let ratio = distance_ratio(&positions, case.engine.edges());
            eprintln!(
                "gpu_cells/{label}: cell {cell:.4} ({fraction:.2} of auto {auto_cell:.4}): candidates a node {candidates:.1}, force_pass {:.1} us, kernels {:.1} us, step(32) {:.1} us a step; after {CELL_PROBE_STEPS} steps edge/random distance {ratio:.4}",
                micros(median(&mut force)),
                micros(median(&mut device)),
                micros(multi)
            );
        }
        case.engine.set_params(base)?;
    }
    Ok(())
}

/// The keys of `benches/gpu_sort_cub.cu`'s `fill`: SplitMix64 of the index, cut to `bits`.
fn hashed_key(i: u32, bits: u32) -> u32 {
    let mut z = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x5eed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z & ((1u64 << bits) - 1)) as u32
}

/// `gpu_sort`: the median of 50 `sort_pairs` launches (after 5 warm-ups) per size and key width,
/// each output checked to be the stable sort.
fn bench_sort() -> Result<(), Box<dyn std::error::Error>> {
    let mut b = CudaBackend::new(0)?;
    for n in [10_000u32, 100_000, 1 << 20, 1_000_000, 10_000_000] {
        for bits in [16u32, 19, 21] {
            let num_cells = 1u32 << bits;
            let keys: Vec<u32> = (0..n).map(|i| hashed_key(i, bits)).collect();
            let values: Vec<u32> = (0..n).collect();
            let to_bytes = |v: &[u32]| v.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
            let mut span = |name: BufferName, len: usize| -> Result<DeviceSpan, BackendError> {
                let alloc = b.alloc(name, len * 4)?;
                Ok(DeviceSpan {
                    addr: alloc.addr,
                    capacity: len,
                    len,
                    buffer: name,
                })
            };
            let args = SortArgs {
                keys_in: span(BufferName::CellKeys, n as usize)?,
                values_in: span(BufferName::NodeOrder, n as usize)?,
                keys_out: span(BufferName::SortedKeys, n as usize)?,
                values_out: span(BufferName::SortedNodes, n as usize)?,
                cell_counts: span(BufferName::CellCounts, num_cells as usize)?,
                grid: span(BufferName::Grid, GRID_WORDS)?,
                num_items: n,
                max_cells: num_cells,
            };
            let grid = GridSpec {
                origin: [0.0; 3],
                cell_size: 1.0,
                dims: [num_cells, 1, 1],
            };
            b.upload(args.grid.addr, &to_bytes(&grid.to_words()))?;
            b.upload(args.keys_in.addr, &to_bytes(&keys))?;
            b.upload(args.values_in.addr, &to_bytes(&values))?;
            let mut times = Vec::new();
            for r in 0..55 {
                let seconds = b.launch(&Launch::SortPairs(args))?;
                if r >= 5 {
                    times.push(Duration::from_secs_f64(seconds));
                }
            }
            let mut out_keys = vec![0u8; n as usize * 4];
            let mut out_values = vec![0u8; n as usize * 4];
            b.download(args.keys_out.addr, &mut out_keys)?;
            b.download(args.values_out.addr, &mut out_values)?;
            let word = |v: &[u8], i: usize| {
                u32::from_ne_bytes([v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]])
            };
            for i in 1..n as usize {
                let (k0, k1) = (word(&out_keys, i - 1), word(&out_keys, i));
                if k0 > k1 || (k0 == k1 && word(&out_values, i - 1) >= word(&out_values, i)) {
                    return Err(format!(
                        "sort_pairs: not a stable sort at {i} (n = {n}, bits {bits})"
                    )
                    .into());
                }
            }
            eprintln!(
                "gpu_sort: ours sort_pairs: n = {n}, key bits {bits}: median {:.1} us",
                micros(median(&mut times))
            );
            for s in [
                args.keys_in,
                args.values_in,
                args.keys_out,
                args.values_out,
                args.cell_counts,
            ] {
                b.free(DeviceAlloc {
                    addr: s.addr,
                    bytes: s.capacity * 4,
                });
            }
        }
    }
    Ok(())
}

fn main() {
    if !CudaBackend::is_available() {
        println!("skipped: no CUDA device");
        return;
    }
    // Planted faults named by FORCEFIELD_FAULTS (the root package's benches are built with the
    // `faults` feature), e.g. `slow-force-pass` to check that the gate sees a slower force pass.
    let faults = match FaultSet::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    // FORCEFIELD_FORCE_LANES fixes the force pass's threads a node for every engine (the rule
    // otherwise): a bad value is bad input, not a set-up failure.
    if let Err(e) = forcefield::params::force_lanes_from_env() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    if std::env::var("FORCEFIELD_GPU_STEP_PROBE").is_ok_and(|v| v == "cells") {
        if let Err(e) = probe_cell_sizes(faults) {
            eprintln!("gpu_cells: {e}");
            std::process::exit(1);
        }
        return;
    }
    if std::env::var_os("FORCEFIELD_GPU_STEP_PROBE").is_some() {
        let probed =
            Case::new(BREAKDOWN_NODES, faults).and_then(|mut case| probe_force_pass(&mut case));
        if let Err(e) = probed {
            eprintln!("gpu_probe: {e}");
            std::process::exit(1);
        }
        return;
    }
    // FORCEFIELD_GPU_SORT=only: the sort comparison alone.
    let sort_only = std::env::var("FORCEFIELD_GPU_SORT").is_ok_and(|v| v == "only");
    let mut criterion = Criterion::default().configure_from_args();
    for (label, num_nodes) in SIZES.into_iter().filter(|_| !sort_only) {
        let mut case = match Case::new(num_nodes, faults) {
            Ok(case) => case,
            Err(e) => {
                // A device that is present but unusable (no context, kernels that do not compile)
                // is a broken environment, not a reason to report nothing silently.
                eprintln!("gpu_step: cannot set up {label}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!(
            "gpu_step/{label}: {}; force pass {} threads a node",
            case.engine.backend().device_description(),
            case.engine.force_lanes()
        );
        bench_size(&mut criterion, label, &mut case);
        if num_nodes == BREAKDOWN_NODES {
            bench_kernels(&mut criterion, &mut case);
        } else {
            // The smaller sizes' tables say where a step's time goes when kernels are short.
            kernel_table(&mut case, label);
        }
    }
    criterion.final_summary();
    if std::env::var_os("FORCEFIELD_GPU_SORT").is_some() {
        if let Err(e) = bench_sort() {
            eprintln!("gpu_sort: {e}");
            std::process::exit(1);
        }
    }
}
