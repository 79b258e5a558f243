/*!
Tests of the CUDA backend: against the CPU backend (differential), against itself (determinism), and
its error paths. On a machine without a usable CUDA device every test prints
`skipped: no CUDA device` and passes.

# The tolerance of the differential tests

Both backends run the same operations in the same order on IEEE single precision: the CUDA kernels
are compiled without fused multiply-add, division and square root are correctly rounded on both, the
bounding box is a min/max (order independent), the sort is stable on both (the same permutation),
and each node's force is summed in the same order (neighbour cells z, y, x ascending, slots
ascending, springs in CSR order, gravity, constraints). So positions are expected to agree bit for
bit, and the grid stage (keys, sorted order, cell ranges) and SSSP distances are asserted to.

Positions are compared with a tolerance all the same, so that the test states what "agree" means
should a compiler ever reorder a sum: one reordering of a sum of k terms moves it by at most about
k * 2^-24 * sum|terms|; with k ~ 100 terms of magnitude up to `max_force`, dt = 0.2, that is ~1e-4
per coordinate per step, and the dynamics amplify it over the ~20 compared steps (the layout is
chaotic: over hundreds of steps any difference grows to the size of the layout, hence cases are
short). The bound used is `|cpu - cuda| <= 1e-3 * (1 + |cpu|)` per coordinate, after every step.
The tests print how many coordinates were bit-identical: on an H200 (driver 580, NVRTC 13.0) all
3,055,008 coordinates compared by the differential test were, as were all grid-stage results.

# The checked mode

The `checked_mode_*` tests run [`CudaBackend::with_checked`]: hand-made launches that overrun a
buffer must come back as the CPU checked mode's findings (kernel, buffer, index, capacity,
direction), a wild write into a red zone as an out-of-bounds write found after the launch, and a
clean engine must compute the same bits as unchecked. The two tests of planted faults
(`sort-count-unclamped`, `grid-cap-unclamped`) need the engine's `faults` feature:
`cargo test --release --features faults --test cuda checked_mode`.
*/

mod common;

use forcefield::backend::{BoundsReduceArgs, BuildGridArgs, DeviceSpan, Launch};
use forcefield::backend::{CellBoundsArgs, GatherPositionsArgs, SortArgs};
use forcefield::params::features;
use forcefield::sanitize::{Access, Site, ViolationKind};
use forcefield::{
    Backend, BackendError, BufferName, CpuBackend, CudaBackend, Edge, Engine, EngineError,
    GraphSpec, MemoryViolation, SimParams,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Relative tolerance of the differential comparison (see the module documentation).
const TOLERANCE: f32 = 1e-3;

/// Returns early, printing the skip line, when there is no usable CUDA device.
macro_rules! require_cuda {
    () => {
        if !CudaBackend::is_available() {
            skipped();
            return;
        }
    };
}

/// Says on stdout that this test did not run. Written to the stdout handle directly, not with
/// `println!`, which the test harness captures and hides for passing tests: a skip must be visible in
/// every log.
fn skipped() {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "skipped: no CUDA device");
    let _ = out.flush();
}

fn cuda() -> CudaBackend {
    CudaBackend::new(0).unwrap_or_else(|e| panic!("CUDA backend: {e}"))
}

// ---- comparison -------------------------------------------------------------------------------

/// Counts of a differential run.
#[derive(Default, Debug)]
struct Agreement {
    coordinates: usize,
    identical: usize,
    max_relative: f32,
}

impl Agreement {
    /// Checks `cuda` against `cpu` within the tolerance; panics naming the first disagreement.
    fn compare(&mut self, what: &str, cpu: &[[f32; 3]], cuda: &[[f32; 3]]) {
        assert_eq!(cpu.len(), cuda.len(), "{what}: node counts differ");
        for (i, (a, b)) in cpu.iter().zip(cuda).enumerate() {
            for k in 0..3 {
                self.coordinates += 1;
                if a[k].to_bits() == b[k].to_bits() {
                    self.identical += 1;
                    continue;
                }
                let rel = (a[k] - b[k]).abs() / (1.0 + a[k].abs());
                assert!(
                    rel <= TOLERANCE,
                    "{what}: node {i} axis {k}: cpu {} cuda {} (relative {rel:e} > {TOLERANCE:e})",
                    a[k],
                    b[k]
                );
                self.max_relative = self.max_relative.max(rel);
            }
        }
    }

    fn report(&self, what: &str) {
        println!(
            "{what}: {} of {} coordinates bit-identical, largest relative difference {:e}",
            self.identical, self.coordinates, self.max_relative
        );
    }
}

// ---- random operation sequences ----------------------------------------------------------------

/// One operation of a case.
#[derive(Clone, Debug)]
enum Op {
    Step(u32),
    AddNodes(u32),
    RemoveNodes(Vec<u32>),
    AddEdges(Vec<Edge>),
    RemoveEdges(Vec<(u32, u32)>),
    Reserve(u32, u32),
    ShrinkToFit,
    Anchor(u32, [f32; 3], f32),
    Distance(u32, u32, f32),
    Sssp(u32),
    Params(SimParams),
}

/// Parameters of a case: defaults, or one of a few variants that reach other code paths.
fn params_variant(r: &mut ChaCha8Rng, seed: u64) -> SimParams {
    let base = SimParams {
        seed,
        ..SimParams::default()
    };
    match r.gen_range(0..6) {
        0 => base,
        1 => SimParams {
            feature_flags: features::DEFAULT | features::THERMAL_NOISE,
            temperature: 0.5,
            ..base
        },
        2 => SimParams {
            separation_radius: 2.0,
            repel_k: 80.0,
            ..base
        },
        3 => SimParams {
            feature_flags: features::DEFAULT | features::SSSP_REST_LENGTH,
            sssp_alpha: 0.5,
            ..base
        },
        4 => SimParams {
            grid_cell_size: 3.0,
            repulsion_cutoff: 6.0,
            ..base
        },
        _ => SimParams {
            viewport_bounds: 8.0,
            boundary_damping: 0.8,
            warmup_iterations: 0,
            ..base
        },
    }
}

/// The next operation, drawn from the current state of an engine (both engines of a differential
/// run have the same counts and edges, so drawing from either gives the same operation).
fn next_op<Bk: Backend>(r: &mut ChaCha8Rng, engine: &Engine<Bk>) -> Op {
    let n = engine.num_nodes();
    let roll = r.gen_range(0..100);
    match roll {
        0..=44 => Op::Step(r.gen_range(1..=2)),
        45..=54 => {
            // Often past capacity, to exercise growth.
            let extra = (engine.allocated_nodes() as u32).saturating_sub(n);
            Op::AddNodes(r.gen_range(1..=extra + 1 + n / 4))
        }
        55..=61 if n > 4 => {
            let k = r.gen_range(1..=(n / 8).max(1));
            Op::RemoveNodes((0..k).map(|_| r.gen_range(0..n)).collect())
        }
        62..=69 if n > 0 => {
            let k = r.gen_range(1..=n.min(64));
            Op::AddEdges(common::random_edges(r, n, k as usize, |r| {
                [0.0, 0.5, 1.0, 2.5][r.gen_range(0..4)]
            }))
        }
        70..=74 if !engine.edges().is_empty() => {
            let edges = engine.edges();
            let k = r.gen_range(1..=edges.len().min(16));
            Op::RemoveEdges(
                (0..k)
                    .map(|_| {
                        let e = edges[r.gen_range(0..edges.len())];
                        (e.u, e.v)
                    })
                    .collect(),
            )
        }
        75..=77 => Op::Reserve(n + r.gen_range(0..200), engine.num_edges() + 100),
        78..=81 => Op::ShrinkToFit,
        82..=85 if n > 0 => Op::Anchor(
            r.gen_range(0..n),
            [
                r.gen_range(-20.0..20.0),
                r.gen_range(-20.0..20.0),
                r.gen_range(-20.0..20.0),
            ],
            r.gen_range(0.0..0.5),
        ),
        86..=88 if !engine.edges().is_empty() => {
            let e = engine.edges()[r.gen_range(0..engine.edges().len())];
            Op::Distance(e.u, e.v, r.gen_range(1.0..8.0))
        }
        89..=94 if n > 0 => Op::Sssp(r.gen_range(0..n)),
        95..=99 => Op::Params(params_variant(r, engine.params().seed)),
        _ => Op::Step(1),
    }
}

/// Applies `op`; SSSP returns its distances.
fn apply<Bk: Backend>(engine: &mut Engine<Bk>, op: &Op) -> Result<Option<Vec<f32>>, EngineError> {
    match op {
        Op::Step(k) => engine.step(*k)?,
        Op::AddNodes(k) => {
            engine.add_nodes(*k, None)?;
        }
        Op::RemoveNodes(ids) => engine.remove_nodes(ids)?,
        Op::AddEdges(edges) => engine.add_edges(edges)?,
        Op::RemoveEdges(pairs) => {
            engine.remove_edges(pairs)?;
        }
        Op::Reserve(n, m) => engine.reserve(*n, *m)?,
        Op::ShrinkToFit => engine.shrink_to_fit()?,
        Op::Anchor(node, target, k) => engine.set_position_constraint(*node, *target, *k)?,
        Op::Distance(u, v, d) => engine.set_distance_constraint(*u, *v, *d)?,
        Op::Sssp(source) => return engine.run_sssp(*source).map(Some),
        Op::Params(p) => engine.set_params(p.clone())?,
    }
    Ok(None)
}

/// A random starting graph and parameters for case `seed`.
fn initial_case(seed: u64, max_nodes: u32) -> (GraphSpec, SimParams) {
    let mut r = common::rng(seed);
    let n = r.gen_range(1..=max_nodes);
    let m = r.gen_range(0..=3 * n as usize);
    let edges = common::random_edges(&mut r, n, m, |r| r.gen_range(0.0..3.0));
    let params = params_variant(&mut r, seed);
    (
        GraphSpec {
            num_nodes: n,
            edges,
            positions: None,
        },
        params,
    )
}

/// Runs case `seed` on both backends, comparing after every operation; returns the agreement.
/// `lanes` fixes the force pass's threads a node on both (`None`: the engine's rule).
fn differential_case(
    seed: u64,
    max_nodes: u32,
    steps: u32,
    lanes: Option<u32>,
    agreement: &mut Agreement,
) {
    let (graph, params) = initial_case(seed, max_nodes);
    let mut cpu = Engine::new(CpuBackend::new(), &graph, params.clone()).unwrap();
    let mut gpu = Engine::new(cuda(), &graph, params).unwrap();
    cpu.set_force_lanes(lanes).unwrap();
    gpu.set_force_lanes(lanes).unwrap();
    let mut r = common::rng(seed ^ 0x5eed);
    let mut stepped = 0;
    let mut log = Vec::new();
    while stepped < steps {
        let op = next_op(&mut r, &cpu);
        log.push(op.clone());
        let what = format!(
            "case {seed}, after {:?}",
            log.iter().rev().take(3).collect::<Vec<_>>()
        );
        let a = apply(&mut cpu, &op).unwrap_or_else(|e| panic!("cpu: {what}: {e}"));
        let b = apply(&mut gpu, &op).unwrap_or_else(|e| panic!("cuda: {what}: {e}"));
        if let (Some(a), Some(b)) = (&a, &b) {
            assert_eq!(
                common::bits3(&a.iter().map(|&d| [d, 0.0, 0.0]).collect::<Vec<_>>()),
                common::bits3(&b.iter().map(|&d| [d, 0.0, 0.0]).collect::<Vec<_>>()),
                "{what}: SSSP distances differ"
            );
        }
        if let Op::Step(k) = op {
            stepped += k;
        }
        assert_eq!(cpu.num_nodes(), gpu.num_nodes());
        agreement.compare(
            &format!("{what}: positions"),
            &cpu.positions().unwrap(),
            &gpu.positions().unwrap(),
        );
        agreement.compare(
            &format!("{what}: velocities"),
            &cpu.velocities().unwrap(),
            &gpu.velocities().unwrap(),
        );
    }
    assert!(gpu.lost_context().is_none());
}

// ---- tests ------------------------------------------------------------------------------------

#[test]
fn backend_moves_memory_like_the_cpu_backend() {
    require_cuda!();
    let mut b = cuda();
    assert_eq!(b.name(), "cuda");
    assert!(b.device_description().contains("cuda"));
    let base = b.bytes_allocated();
    let a = b.alloc(BufferName::PosInX, 4096).unwrap();
    let c = b.alloc(BufferName::PosInY, 4096).unwrap();
    let empty = b.alloc(BufferName::Mass, 0).unwrap();
    assert_eq!(empty.bytes, 0, "a zero-byte buffer reports zero bytes");
    assert!(empty.addr != 0 && empty.addr != a.addr && empty.addr != c.addr);
    assert_eq!(b.bytes_allocated(), base + 8192);

    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    b.upload(a.addr, &data).unwrap();
    b.copy(c.addr, a.addr, 4096).unwrap();
    b.fill_u32(c.addr + 1024, 16, 0xdead_beef).unwrap();
    let mut back = vec![0u8; 4096];
    b.download(c.addr, &mut back).unwrap();
    let mut expected = data.clone();
    for w in 0..16 {
        expected[1024 + 4 * w..1024 + 4 * w + 4].copy_from_slice(&0xdead_beefu32.to_ne_bytes());
    }
    assert_eq!(back, expected);
    // An upload at an offset lands there.
    b.upload(a.addr + 8, &[1, 2, 3, 4]).unwrap();
    let mut word = [0u8; 4];
    b.download(a.addr + 8, &mut word).unwrap();
    assert_eq!(word, [1, 2, 3, 4]);
    b.synchronize().unwrap();

    b.free(a);
    b.free(c);
    b.free(empty);
    assert_eq!(b.bytes_allocated(), base);
}

#[test]
fn bounds_of_no_nodes_are_zeros_and_of_some_nodes_exact() {
    require_cuda!();
    let mut b = cuda();
    let pos = [
        b.alloc(BufferName::PosInX, 4 * 3).unwrap(),
        b.alloc(BufferName::PosInY, 4 * 3).unwrap(),
        b.alloc(BufferName::PosInZ, 4 * 3).unwrap(),
    ];
    let bounds = b.alloc(BufferName::Bounds, 24).unwrap();
    let span = |a: forcefield::backend::DeviceAlloc, name, cap| DeviceSpan {
        addr: a.addr,
        capacity: cap,
        len: cap,
        buffer: name,
    };
    let coords: [[f32; 3]; 3] = [[1.5, -2.0, 0.0], [-7.25, 3.0, -0.5], [2.0, 1.0, 9.0]];
    for (axis, a) in pos.iter().enumerate() {
        let bytes: Vec<u8> = coords.iter().flat_map(|p| p[axis].to_ne_bytes()).collect();
        b.upload(a.addr, &bytes).unwrap();
    }
    let read = |b: &mut CudaBackend| {
        let mut raw = [0u8; 24];
        b.download(bounds.addr, &mut raw).unwrap();
        raw.chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<_>>()
    };
    let args = |n| {
        Launch::BoundsReduce(BoundsReduceArgs {
            pos: [
                span(pos[0], BufferName::PosInX, 3),
                span(pos[1], BufferName::PosInY, 3),
                span(pos[2], BufferName::PosInZ, 3),
            ],
            bounds: span(bounds, BufferName::Bounds, 6),
            num_nodes: n,
        })
    };
    b.fill_u32(bounds.addr, 6, 0x7fc0_0000).unwrap();
    let seconds = b.launch(&args(0)).unwrap();
    assert!(seconds >= 0.0);
    assert_eq!(read(&mut b), vec![0.0; 6]);
    b.launch(&args(3)).unwrap();
    assert_eq!(read(&mut b), vec![-7.25, -2.0, -0.5, 2.0, 3.0, 9.0]);
}

/// The grid stage of one step (bounding box, keys, stable sort, cell ranges) on both backends.
fn assert_grid_stage_equal(label: &str, graph: &GraphSpec, params: SimParams) {
    let mut cpu = Engine::new(CpuBackend::new(), graph, params.clone()).unwrap();
    let mut gpu = Engine::new(cuda(), graph, params).unwrap();
    for step in 0..3 {
        cpu.step(1).unwrap();
        gpu.step(1).unwrap();
        let a = cpu.inspect_grid().unwrap().unwrap();
        let b = gpu.inspect_grid().unwrap().unwrap();
        assert_eq!(a.grid, b.grid, "{label}, step {step}: grids differ");
        assert_eq!(a.cell_keys, b.cell_keys, "{label}, step {step}: cell keys");
        assert_eq!(
            a.sorted_keys, b.sorted_keys,
            "{label}, step {step}: sorted keys"
        );
        assert_eq!(
            a.sorted_nodes, b.sorted_nodes,
            "{label}, step {step}: sorted nodes (stability)"
        );
        assert_eq!(
            a.cell_start, b.cell_start,
            "{label}, step {step}: cell starts"
        );
        assert_eq!(a.cell_end, b.cell_end, "{label}, step {step}: cell ends");
        let mut agreement = Agreement::default();
        agreement.compare(label, &cpu.positions().unwrap(), &gpu.positions().unwrap());
        if step == 2 {
            agreement.report(label);
        }
    }
}

#[test]
fn grid_stage_equals_the_cpu_bit_for_bit() {
    require_cuda!();
    let mut r = common::rng(11);
    let n = 20_000;
    let edges = common::random_edges(&mut r, n, 40_000, |_| 1.0);
    let graph = GraphSpec {
        num_nodes: n,
        edges,
        positions: None,
    };
    // Automatic cell size: about one radix pass per 8 bits of the cell count.
    assert_grid_stage_equal("auto cells", &graph, SimParams::default());
    // Tiny cells: the cell cap binds, ~2M cells, three radix passes.
    let tiny = SimParams {
        grid_cell_size: 0.5,
        repulsion_cutoff: 0.5,
        ..SimParams::default()
    };
    assert_grid_stage_equal("cell-capped grid", &graph, tiny);
    // Huge cells: a few cells with thousands of nodes each, spanning many sort tiles (stability).
    let huge = SimParams {
        grid_cell_size: 60.0,
        repulsion_cutoff: 2.0,
        ..SimParams::default()
    };
    assert_grid_stage_equal("crowded cells", &graph, huge);
    // Every node at one point: one cell, the sort is a copy.
    let same = GraphSpec {
        num_nodes: 5_000,
        edges: vec![Edge::new(0, 1)],
        positions: Some(vec![[3.0, -1.0, 2.0]; 5_000]),
    };
    assert_grid_stage_equal("coincident nodes", &same, SimParams::default());
    // The same within one sort tile (`sort_small`): a pass the grid does not need is left out
    // there, and with one cell the sort is one copy.
    let small_same = GraphSpec {
        num_nodes: 3_000,
        edges: vec![Edge::new(0, 1)],
        positions: Some(vec![[3.0, -1.0, 2.0]; 3_000]),
    };
    assert_grid_stage_equal(
        "coincident nodes, one tile",
        &small_same,
        SimParams::default(),
    );
    let small = GraphSpec {
        num_nodes: 3_000,
        edges: common::random_edges(&mut r, 3_000, 6_000, |_| 1.0),
        positions: None,
    };
    assert_grid_stage_equal("auto cells, one tile", &small, SimParams::default());
}

#[test]
fn positions_follow_the_cpu_step_by_step_through_resizes() {
    require_cuda!();
    let mut agreement = Agreement::default();
    for seed in 0..24 {
        differential_case(seed, 400, 20, None, &mut agreement);
    }
    for seed in 100..103 {
        differential_case(seed, 12_000, 12, None, &mut agreement);
    }
    agreement.report("differential");
}

/// The force pass's lanes (`KernelParams::force_lanes`): the CUDA kernel's threads a node and its
/// shuffle tree against the CPU kernel's emulation of them, at every lane count, with node counts
/// that leave a partial block (`num_nodes * lanes` threads in blocks of 64). The same operations in
/// the same order, so every coordinate must be the same bits.
#[test]
fn positions_equal_the_cpu_bit_for_bit_at_every_lane_count() {
    require_cuda!();
    for lanes in [1, 2, 4, 8, 16, 32] {
        let mut agreement = Agreement::default();
        for seed in 200..206 {
            differential_case(seed, 3_000, 12, Some(lanes), &mut agreement);
        }
        agreement.report(&format!("{lanes} lanes"));
        assert_eq!(
            agreement.identical, agreement.coordinates,
            "{lanes} lanes: coordinates that are not the CPU's bits"
        );
    }
}

#[test]
fn sssp_distances_equal_the_cpu_exactly() {
    require_cuda!();
    for seed in 0..12u64 {
        let mut r = common::rng(1000 + seed);
        let n = [1, 2, 50, 700, 9_000, 30_000][seed as usize % 6];
        let m = r.gen_range(0..=4 * n as usize);
        // Weights that round differently along different paths, and zeros.
        let edges = common::random_edges(&mut r, n, m, |r| match r.gen_range(0..4) {
            0 => 0.0,
            1 => 0.1,
            2 => r.gen_range(0.0..10.0),
            _ => 1.0 / 3.0,
        });
        let graph = GraphSpec {
            num_nodes: n,
            edges,
            positions: None,
        };
        let mut cpu = Engine::new(CpuBackend::new(), &graph, SimParams::default()).unwrap();
        let mut gpu = Engine::new(cuda(), &graph, SimParams::default()).unwrap();
        for _ in 0..3 {
            let source = r.gen_range(0..n);
            let a = cpu.run_sssp(source).unwrap();
            let b = gpu.run_sssp(source).unwrap();
            assert_eq!(a.len(), b.len());
            for (v, (x, y)) in a.iter().zip(&b).enumerate() {
                assert_eq!(
                    x.to_bits(),
                    y.to_bits(),
                    "graph {seed} (n = {n}, m = {m}), source {source}, node {v}: cpu {x} cuda {y}"
                );
            }
            assert_eq!(b[source as usize], 0.0);
        }
    }
}

#[test]
fn a_case_run_twice_on_cuda_gives_identical_bits() {
    require_cuda!();
    for seed in [3u64, 7, 104] {
        let max_nodes = if seed > 100 { 12_000 } else { 400 };
        let run = || {
            let (graph, params) = initial_case(seed, max_nodes);
            let mut e = Engine::new(cuda(), &graph, params).unwrap();
            let mut r = common::rng(seed ^ 0x5eed);
            let mut trace = Vec::new();
            let mut stepped = 0;
            while stepped < 30 {
                let op = next_op(&mut r, &e);
                if let Some(d) = apply(&mut e, &op).unwrap() {
                    trace.push(d.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                }
                if let Op::Step(k) = op {
                    stepped += k;
                    let (p, v) = common::state_bits(&mut e);
                    trace.push(p.into_iter().chain(v).flatten().collect());
                }
            }
            trace
        };
        let first = run();
        let second = run();
        assert_eq!(first.len(), second.len());
        for (i, (a, b)) in first.iter().zip(&second).enumerate() {
            assert!(a == b, "case {seed}: record {i} differs between two runs");
        }
    }
}

/// Untimed launches (queued, one wait per step call) and a checkpoint that follows only on demand
/// change no bit of a layout, and a failed launch in the middle of an untimed multi-step call still
/// leaves the state of before the call (the live buffers are exchanged only after the wait).
#[test]
fn untimed_launches_and_a_lazy_checkpoint_give_the_same_bits_and_undo_failures() {
    require_cuda!();
    for seed in [5u64, 104] {
        let max_nodes = if seed > 100 { 12_000 } else { 400 };
        let (graph, params) = initial_case(seed, max_nodes);
        let mut reference = Engine::new(cuda(), &graph, params.clone()).unwrap();
        let mut fast = Engine::new(cuda(), &graph, params).unwrap();
        fast.set_kernel_timing(false);
        fast.set_checkpoint_cadence(forcefield::CheckpointCadence::OnDemand);
        reference.step(3).unwrap();
        fast.step(3).unwrap();
        assert_eq!(
            common::state_bits(&mut reference),
            common::state_bits(&mut fast)
        );
        assert!(
            fast.kernel_log().recent().is_empty(),
            "untimed launches record nothing"
        );
        let before = common::state_bits(&mut fast);
        let iteration = fast.iteration();
        fast.inject(forcefield::EnvFault::FailLaunch { nth: 12 });
        assert!(
            fast.step(4).is_err(),
            "case {seed}: the injected launch failure is reported"
        );
        assert_eq!(common::state_bits(&mut fast), before, "case {seed}");
        assert_eq!(fast.iteration(), iteration);
        let distances = fast.run_sssp(0).unwrap();
        assert_eq!(
            common::bits3(&distances.iter().map(|&d| [d, 0.0, 0.0]).collect::<Vec<_>>()),
            common::bits3(
                &reference
                    .run_sssp(0)
                    .unwrap()
                    .iter()
                    .map(|&d| [d, 0.0, 0.0])
                    .collect::<Vec<_>>()
            )
        );
        fast.step(10).unwrap();
        reference.step(10).unwrap();
        assert_eq!(
            common::state_bits(&mut reference),
            common::state_bits(&mut fast)
        );
        let now = common::state_bits(&mut fast);
        let checkpoint = fast.sync_checkpoint().unwrap().clone();
        let mut restarted = Engine::from_checkpoint(
            cuda(),
            &checkpoint,
            forcefield::EngineConfig::default(),
            forcefield::FaultSet::NONE,
        )
        .unwrap();
        assert_eq!(common::state_bits(&mut restarted), now);
    }
}

/// Set in the child process that provokes a sticky fault.
const STICKY_CHILD: &str = "FORCEFIELD_CUDA_STICKY_CHILD";

/// A sticky fault loses CUDA for the whole process (CUDA says the process must be restarted; a new
/// context fails the same way), so the fault is provoked in a child: this test binary running only
/// this test, with `STICKY_CHILD` set. The parent checks that the child passed.
#[test]
fn a_sticky_fault_is_reported_and_then_every_call_refused() {
    require_cuda!();
    const NAME: &str = "a_sticky_fault_is_reported_and_then_every_call_refused";
    if std::env::var_os(STICKY_CHILD).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(STICKY_CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("sticky fault checked"),
            "child process failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        return;
    }
    let mut b = cuda();
    let keys = b.alloc(BufferName::CellKeys, 1024).unwrap();
    let bogus = |addr| DeviceSpan {
        addr,
        capacity: 1 << 24,
        len: 1 << 24,
        buffer: BufferName::PosInX,
    };
    // Positions read from an unmapped address: the kernel faults.
    let launch = Launch::BuildGrid(BuildGridArgs {
        pos: [bogus(0x100), bogus(0x100), bogus(0x100)],
        cell_keys: bogus(keys.addr),
        node_order: bogus(keys.addr),
        grid: bogus(0x100),
        num_nodes: 1 << 20,
    });
    let e = b.launch(&launch).unwrap_err();
    assert!(e.sticky, "expected a sticky error, got {e}");
    assert_eq!(e.kernel, Some("build_grid"));
    assert!(e.message.contains("CUDA_ERROR"), "{e}");
    assert_eq!(b.lost_context(), Some(&e));
    // Nothing touches the lost context again: every call gives the same error.
    assert_eq!(b.synchronize().unwrap_err(), e);
    assert_eq!(b.alloc(BufferName::Mass, 4).unwrap_err(), e);
    let mut out = [0u8; 4];
    assert_eq!(b.download(keys.addr, &mut out).unwrap_err(), e);
    b.free(keys);
    drop(b);
    // The loss is process-wide: a new backend fails to start, with an error rather than a panic.
    let again = CudaBackend::new(0).unwrap_err();
    assert!(again.sticky, "{again}");
    println!("sticky fault checked: {e}; a new backend then fails with: {again}");
}

#[test]
fn a_boxed_cuda_backend_steps_and_logs_every_kernel() {
    require_cuda!();
    let graph = GraphSpec {
        num_nodes: 3,
        edges: vec![Edge::new(0, 1)],
        positions: None,
    };
    let backend: Box<dyn Backend> = Box::new(cuda());
    let mut e = Engine::new(backend, &graph, SimParams::default()).unwrap();
    e.step(2).unwrap();
    assert!(e
        .positions()
        .unwrap()
        .iter()
        .flatten()
        .all(|c| c.is_finite()));
    // Eight kernels per step, each timed by CUDA events.
    assert_eq!(e.kernel_log().launches(), 16);
    let records = e.kernel_log().recent();
    for name in [
        "bounds_reduce",
        "grid_params",
        "build_grid",
        "sort_pairs",
        "gather_positions",
        "cell_bounds",
        "force_pass",
        "integrate",
    ] {
        assert!(
            records.iter().any(|r| r.kernel == name),
            "{name} not logged"
        );
    }
    assert!(records
        .iter()
        .all(|r| r.duration_us.is_finite() && r.duration_us >= 0.0));
}

/// Not a test of correctness: prints the median device time of each kernel and the wall time of a
/// whole step (which includes the bounding-box read-back and the per-launch synchronization) at
/// 10k, 100k and 1M nodes with 10 edges per node. Run explicitly:
/// `cargo test --release --test cuda -- --ignored report_gpu_step_times --nocapture`.
#[test]
#[ignore = "prints timings; run explicitly on a GPU machine"]
fn report_gpu_step_times() {
    require_cuda!();
    for n in [10_000u32, 100_000, 1_000_000] {
        let mut r = common::rng(n as u64);
        let edges = common::random_edges(&mut r, n, 10 * n as usize, |_| 1.0);
        let graph = GraphSpec {
            num_nodes: n,
            edges,
            positions: None,
        };
        let mut e = Engine::new(cuda(), &graph, SimParams::default()).unwrap();
        e.step(5).unwrap();
        let steps = 40;
        let t = std::time::Instant::now();
        e.step(steps).unwrap();
        let wall_ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
        let records = e.kernel_log().recent();
        let mut line = format!("n = {n}, m = {}: step wall {wall_ms:.3} ms;", 10 * n);
        let mut total = 0.0;
        for name in [
            "bounds_reduce",
            "build_grid",
            "sort_pairs",
            "cell_bounds",
            "force_pass",
            "integrate",
        ] {
            let mut d: Vec<f64> = records
                .iter()
                .filter(|r| r.kernel == name)
                .map(|r| r.duration_us)
                .collect();
            d.sort_by(f64::total_cmp);
            let median = d.get(d.len() / 2).copied().unwrap_or(f64::NAN);
            total += median;
            line.push_str(&format!(" {name} {median:.1} us"));
        }
        line.push_str(&format!("; kernels {:.3} ms", total / 1e3));
        if let Some(g) = e.grid() {
            line.push_str(&format!("; {} cells", g.num_cells()));
        }
        println!("{line}");
    }
}

/// A context lost by `__trap()` (the injected fault of `kernels/inject.cu`) is sticky, and
/// `reset` either gives a working backend again or says, with a sticky init error, that this
/// process cannot have one (CUDA's documented rule for sticky errors). Runs in a child process,
/// since the loss may poison the whole process.
#[test]
fn a_trapped_context_is_lost_and_reset_reports_what_it_can_do() {
    require_cuda!();
    const NAME: &str = "a_trapped_context_is_lost_and_reset_reports_what_it_can_do";
    if std::env::var_os(STICKY_CHILD).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(STICKY_CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{stdout}");
        assert!(
            out.status.success() && stdout.contains("trap checked"),
            "child process failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        return;
    }
    // Backends share the process's context (see `driver.rs`); the loss below must not let the
    // shared context, or a module given back to it, hide that the process is poisoned.
    drop(cuda());
    let mut b = cuda();
    let buf = b.alloc(BufferName::Mass, 16).unwrap();
    let e = b.lose_context();
    assert!(e.sticky, "the trap must lose the context: {e}");
    assert_eq!(b.alloc(BufferName::Mass, 4).unwrap_err(), e);
    match b.reset() {
        Ok(()) => {
            let fresh = b.alloc(BufferName::Mass, 16).unwrap();
            b.upload(fresh.addr, &[7u8; 16]).unwrap();
            let mut back = [0u8; 16];
            b.download(fresh.addr, &mut back).unwrap();
            assert_eq!(back, [7u8; 16]);
            println!("trap checked: lost with `{e}`; reset gave a working context");
        }
        Err(r) => {
            // A new backend is refused the same way: the lost shared context was retired.
            let other = CudaBackend::new(0).err();
            assert!(
                other.is_some(),
                "reset refused (`{r}`) but a new backend was given"
            );
            println!(
                "trap checked: lost with `{e}`; reset refused: `{r}` (sticky: {}); a new backend too",
                r.sticky
            );
        }
    }
    let _ = buf;
}

/// The context and its modules are shared and reused (see `driver.rs`): an engine on a module that
/// another engine used and gave back lays out bit for bit as the first, and starts with no memory
/// of its own.
#[test]
fn a_reused_context_gives_the_same_bits_and_starts_empty() {
    require_cuda!();
    let first = common::scripted_bits(cuda());
    // The backend of `first` dropped clean, so these run on reused contexts.
    let again = common::scripted_bits(cuda());
    common::assert_same_moving_layout(&first, &again, "a reused context");
    let b = cuda();
    assert_eq!(b.bytes_allocated(), 0);
    println!("reuse checked: {} states equal", first.len());
}

/// Engines running at the same time on threads of one process share its context, each on its own
/// stream with its own leased module: every one lays out bit for bit as an engine alone, in the
/// default and the checked mode (whose kernels keep launch state in module globals).
#[test]
fn engines_running_at_once_in_one_context_keep_their_own_bits() {
    require_cuda!();
    for checked in [false, true] {
        let open = || CudaBackend::with_checked(0, checked).unwrap_or_else(|e| panic!("{e}"));
        let alone = common::scripted_bits(open());
        let together: Vec<Vec<common::Bits>> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| common::scripted_bits(open())))
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for (i, bits) in together.iter().enumerate() {
            common::assert_same_moving_layout(&alone, bits, &format!("engine {i} of 4 at once"));
        }
        println!("concurrency checked (checked mode: {checked}): 4 engines at once, equal bits");
    }
}

/// What a new backend costs (context shared, module leased) and what a small engine's life costs,
/// the per-case overhead of a campaign:
/// `cargo test --release --test cuda -- --ignored report_backend_creation --nocapture`.
#[test]
#[ignore = "prints timings; run explicitly on a GPU machine"]
fn report_backend_creation() {
    require_cuda!();
    let t = std::time::Instant::now();
    drop(cuda());
    println!("first backend: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    for checked in [false, true] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = std::time::Instant::now();
            drop(CudaBackend::with_checked(0, checked).unwrap());
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "backend new+drop (checked: {checked}): median {:.3} ms, max {:.3} ms over 20",
            times[10], times[19]
        );
    }
    let graph = GraphSpec {
        num_nodes: 100,
        edges: (0..99).map(|i| Edge::new(i, i + 1)).collect(),
        positions: None,
    };
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = std::time::Instant::now();
        let mut e = Engine::new(cuda(), &graph, SimParams::default()).unwrap();
        e.step(10).unwrap();
        let _ = e.positions().unwrap();
        drop(e);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "100-node engine, 10 steps, read back, drop: median {:.3} ms, max {:.3} ms over 20",
        times[10], times[19]
    );
}

// ---- the checked mode ---------------------------------------------------------------------------

fn checked_cuda() -> CudaBackend {
    CudaBackend::with_checked(0, true).unwrap_or_else(|e| panic!("checked CUDA backend: {e}"))
}

/// A buffer of `capacity` 4-byte elements with `values` uploaded at its start.
fn device_buffer(
    b: &mut CudaBackend,
    name: BufferName,
    capacity: usize,
    values: &[u32],
) -> DeviceSpan {
    let alloc = b.alloc(name, capacity * 4).expect("alloc");
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
    if !bytes.is_empty() {
        b.upload(alloc.addr, &bytes).expect("upload");
    }
    DeviceSpan {
        addr: alloc.addr,
        capacity,
        len: values.len(),
        buffer: name,
    }
}

fn download_u32(b: &mut CudaBackend, addr: u64, count: usize) -> Vec<u32> {
    let mut raw = vec![0u8; count * 4];
    b.download(addr, &mut raw).expect("download");
    raw.chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The violation a failed launch carries; the error must not be sticky.
fn found(r: Result<f64, BackendError>) -> (MemoryViolation, String) {
    let e = r.expect_err("the launch must report a violation");
    assert!(
        !e.sticky,
        "a sanitizer finding does not lose the context: {e}"
    );
    let v = *e.violation.expect("the error carries the violation");
    (v, e.message)
}

/// A device-side grid of `n` cells along x, as `grid_params` stores it.
fn cells_along_x(n: u32) -> [u32; 8] {
    forcefield::GridSpec {
        origin: [0.0; 3],
        cell_size: 1.0,
        dims: [n, 1, 1],
    }
    .to_words()
}

/// A sort of 6 items whose key and value outputs hold only 4 (what the planted
/// `sort-count-unclamped` does): three cells, so the radix kernels run.
fn short_sort(b: &mut CudaBackend, num_cells: u32) -> SortArgs {
    let keys: Vec<u32> = [2, 0, 1, 2, 0, 1].map(|k| k % num_cells).to_vec();
    SortArgs {
        keys_in: device_buffer(b, BufferName::CellKeys, 6, &keys),
        values_in: device_buffer(b, BufferName::NodeOrder, 6, &[0, 1, 2, 3, 4, 5]),
        keys_out: device_buffer(b, BufferName::SortedKeys, 4, &[0; 4]),
        values_out: device_buffer(b, BufferName::SortedNodes, 4, &[0; 4]),
        cell_counts: device_buffer(b, BufferName::CellCounts, 3, &[]),
        grid: device_buffer(b, BufferName::Grid, 8, &cells_along_x(num_cells)),
        num_items: 6,
        max_cells: num_cells,
    }
}

#[test]
fn checked_mode_reports_out_of_bounds_writes_and_reads_like_the_cpu() {
    require_cuda!();
    let mut b = checked_cuda();
    assert!(b.is_checked());
    assert!(b.device_description().ends_with(", checked)"));

    // A write: the radix sort's scatter puts keys 2 into slots 4 and 5 of 4. Every invalid access
    // is counted; the least (index, buffer) is reported, so the finding is the CPU's.
    let args = short_sort(&mut b, 3);
    let (v, message) = found(b.launch(&Launch::SortPairs(args)));
    assert_eq!(v.kind, ViolationKind::OutOfBounds);
    assert_eq!(v.site, Site::Kernel("sort_pairs"));
    assert_eq!(
        (v.buffer, v.access),
        (BufferName::SortedKeys, Access::Write)
    );
    assert_eq!((v.index, v.capacity, v.len), (4, 4, 4));
    assert_eq!(v.more, 3, "keys and values, slots 4 and 5");
    assert!(
        message.starts_with(
            "Invalid __global__ write of size 4 bytes: buffer `sorted_keys` index 4 >= capacity 4"
        ) && message.contains(" at layout.cu:"),
        "{message}"
    );
    // The writes in bounds were made; the others were not: the allocation is intact.
    assert_eq!(download_u32(&mut b, args.keys_out.addr, 4), [0, 0, 1, 1]);

    // The same sort with one cell is a copy queued by the backend: checked before it is made.
    let one_cell = short_sort(&mut b, 1);
    let (v, _) = found(b.launch(&Launch::SortPairs(one_cell)));
    assert_eq!(
        (v.buffer, v.index, v.capacity, v.access),
        (BufferName::SortedKeys, 4, 4, Access::Write)
    );

    // Not sticky, and the record was reset: a correct sort on the same backend succeeds.
    let mut fixed = short_sort(&mut b, 3);
    fixed.keys_out = device_buffer(&mut b, BufferName::SortedKeys, 6, &[]);
    fixed.values_out = device_buffer(&mut b, BufferName::SortedNodes, 6, &[]);
    b.launch(&Launch::SortPairs(fixed)).expect("a correct sort");
    assert_eq!(
        download_u32(&mut b, fixed.values_out.addr, 6),
        [1, 4, 2, 5, 0, 3],
        "stable by key"
    );

    // A read: slot 2 names node 9 of 3.
    let p = [1.0f32, 2.0, 3.0].map(f32::to_bits);
    let pos = [
        device_buffer(&mut b, BufferName::PosInX, 3, &p),
        device_buffer(&mut b, BufferName::PosInY, 3, &p),
        device_buffer(&mut b, BufferName::PosInZ, 3, &p),
    ];
    let gather = GatherPositionsArgs {
        pos,
        sorted_nodes: device_buffer(&mut b, BufferName::SortedNodes, 3, &[0, 1, 9]),
        sorted_pos: [
            device_buffer(&mut b, BufferName::SortedPosX, 3, &[]),
            device_buffer(&mut b, BufferName::SortedPosY, 3, &[]),
            device_buffer(&mut b, BufferName::SortedPosZ, 3, &[]),
        ],
        num_nodes: 3,
    };
    let (v, message) = found(b.launch(&Launch::GatherPositions(gather)));
    assert_eq!(v.site, Site::Kernel("gather_positions"));
    assert_eq!((v.buffer, v.access), (BufferName::PosInX, Access::Read));
    assert_eq!((v.index, v.capacity, v.len), (9, 3, 3));
    assert_eq!(v.more, 2, "x, y and z");
    assert!(
        message.starts_with(
            "Invalid __global__ read of size 4 bytes: buffer `pos_in_x` index 9 >= capacity 3"
        ),
        "{message}"
    );

    // Cell bounds over a cell buffer smaller than the keys (what `grid-cap-unclamped` does).
    let cells = CellBoundsArgs {
        sorted_keys: device_buffer(&mut b, BufferName::SortedKeys, 4, &[0, 1, 7, 7]),
        cell_start: device_buffer(&mut b, BufferName::CellStart, 4, &[0; 4]),
        cell_end: device_buffer(&mut b, BufferName::CellEnd, 4, &[0; 4]),
        grid: device_buffer(&mut b, BufferName::Grid, 8, &cells_along_x(4)),
        num_items: 4,
        max_cells: 4,
        over_cells: 0,
    };
    let (v, _) = found(b.launch(&Launch::CellBounds(cells)));
    assert_eq!(v.site, Site::Kernel("cell_bounds"));
    assert_eq!(
        (v.buffer, v.index, v.capacity, v.access),
        (BufferName::CellStart, 7, 4, Access::Write)
    );
}

#[test]
fn checked_mode_poisons_fresh_memory_and_checks_host_operations_and_freed_buffers() {
    require_cuda!();
    let mut b = checked_cuda();
    let fresh = device_buffer(&mut b, BufferName::PosInX, 4, &[]);
    assert_eq!(
        download_u32(&mut b, fresh.addr, 4),
        [u32::MAX; 4],
        "fresh capacity is poisoned"
    );

    // An upload of 3 elements into the second slot of a 2-element buffer: the CPU's finding.
    let two = device_buffer(&mut b, BufferName::PosInY, 2, &[1, 2]);
    let e = b
        .upload(two.addr + 4, &[0u8; 12])
        .expect_err("an upload past the allocation");
    let v = e.violation.expect("a host overrun is a violation");
    assert_eq!(v.site, Site::HostOp("upload"));
    assert_eq!(
        (v.buffer, v.index, v.len, v.capacity),
        (BufferName::PosInY, 1, 4, 2)
    );
    assert_eq!(
        download_u32(&mut b, two.addr, 2),
        [1, 2],
        "nothing was written"
    );
    let e = b.fill_u32(two.addr, 3, 0).expect_err("a fill past the end");
    assert_eq!(e.violation.map(|v| v.site), Some(Site::HostOp("fill")));
    let e = b
        .copy(fresh.addr, two.addr, 16)
        .expect_err("a copy reading past the end");
    assert_eq!(
        e.violation.map(|v| (v.buffer, v.access)),
        Some((BufferName::PosInY, Access::Read))
    );

    // A launch naming a freed buffer: every access to it is reported as unallocated.
    let pos = [fresh, two, fresh];
    let bounds_alloc = b.alloc(BufferName::Bounds, 24).unwrap();
    let bounds = DeviceSpan {
        addr: bounds_alloc.addr,
        capacity: 6,
        len: 6,
        buffer: BufferName::Bounds,
    };
    b.free(bounds_alloc);
    let (v, _) = found(b.launch(&Launch::BoundsReduce(BoundsReduceArgs {
        pos,
        bounds,
        num_nodes: 2,
    })));
    assert_eq!(v.kind, ViolationKind::Unallocated);
    assert_eq!((v.buffer, v.access), (BufferName::Bounds, Access::Write));
}

#[test]
fn checked_mode_reports_a_damaged_red_zone_once() {
    require_cuda!();
    let mut b = checked_cuda();
    // A buffer no launch names, overwritten by a wild write 3 elements past its end.
    let victim = b.alloc(BufferName::Mass, 16).unwrap();
    let p = [0.5f32, -1.0, 2.0].map(f32::to_bits);
    let pos = [
        device_buffer(&mut b, BufferName::PosInX, 3, &p),
        device_buffer(&mut b, BufferName::PosInY, 3, &p),
        device_buffer(&mut b, BufferName::PosInZ, 3, &p),
    ];
    let bounds = device_buffer(&mut b, BufferName::Bounds, 6, &[]);
    let launch = Launch::BoundsReduce(BoundsReduceArgs {
        pos,
        bounds,
        num_nodes: 3,
    });
    b.launch(&launch).expect("a clean launch");
    b.write_unchecked(victim.addr + 16 + 8, &7u32.to_ne_bytes())
        .unwrap();
    let (v, message) = found(b.launch(&launch));
    assert_eq!(v.kind, ViolationKind::OutOfBounds);
    assert_eq!(v.site, Site::Kernel("bounds_reduce"));
    assert_eq!(
        (v.buffer, v.index, v.capacity, v.access),
        (BufferName::Mass, 6, 4, Access::Write)
    );
    assert!(message.contains("red-zone canary"), "{message}");
    // The canary was repaired: the next launch is clean.
    b.launch(&launch).expect("reported once");

    // Before the start: one element before element 0.
    b.write_unchecked(victim.addr - 4, &7u32.to_ne_bytes())
        .unwrap();
    let (v, _) = found(b.launch(&launch));
    assert_eq!((v.buffer, v.index), (BufferName::Mass, u64::MAX));
    b.launch(&launch).expect("reported once");
    // The launch itself computed the right box all along (the same three values on every axis).
    let out = download_u32(&mut b, bounds.addr, 6);
    let out: Vec<f32> = out.into_iter().map(f32::from_bits).collect();
    assert_eq!(out, [-1.0, -1.0, -1.0, 2.0, 2.0, 2.0]);
}

#[test]
fn checked_mode_gives_the_same_bits_as_unchecked_through_resizes() {
    require_cuda!();
    let plain = common::scripted_bits(cuda());
    let checked = common::scripted_bits(checked_cuda());
    common::assert_same_moving_layout(&plain, &checked, "the checked mode");
}

/// With the planted faults compiled in (`--features faults`), the seed bug is a finding in the
/// sort, not a silent overrun.
#[cfg(feature = "faults")]
#[test]
fn checked_mode_catches_the_planted_sort_count_unclamped() {
    use forcefield::{EngineConfig, Fault, FaultSet};
    require_cuda!();
    let graph = GraphSpec {
        num_nodes: 8,
        edges: vec![Edge::new(0, 1)],
        positions: None,
    };
    let mut e = Engine::with_config(
        checked_cuda(),
        &graph,
        SimParams::default(),
        EngineConfig::default(),
        FaultSet::of(&[Fault::SortCountUnclamped]),
    )
    .unwrap();
    e.step(2).unwrap();
    e.add_nodes(8, None).unwrap();
    let err: EngineError = e.step(1).expect_err("the sort overruns its outputs");
    assert!(!err.is_sticky(), "{err}");
    let v = err.violation().expect("a sanitizer finding");
    assert_eq!(
        (v.kind, v.site),
        (ViolationKind::OutOfBounds, Site::Kernel("sort_pairs"))
    );
    // The first pass writes past the outputs' end and, with more than one radix pass (the default
    // cell cap has 21 bits: three), the second reads that slot back; the least access reported is
    // then the read.
    assert!(matches!(v.access, Access::Write | Access::Read), "{v}");
    // Slot `capacity` is always touched, and of the two outputs sorted_keys comes first.
    assert_eq!(v.buffer, BufferName::SortedKeys);
    assert_eq!(v.index, v.capacity as u64);
    assert!((8..16).contains(&v.capacity), "{v}");
    println!("sort-count-unclamped: {err}");
}

/// With the planted faults compiled in, uncapped grid dimensions over capped cell buffers are a
/// finding on a cell buffer.
#[cfg(feature = "faults")]
#[test]
fn checked_mode_catches_the_planted_grid_cap_unclamped() {
    use forcefield::{EngineConfig, Fault, FaultSet};
    require_cuda!();
    let mut r = common::rng(77);
    let n = 2000;
    let graph = GraphSpec {
        num_nodes: n,
        edges: common::random_edges(&mut r, n, 2000, |_| 1.0),
        positions: None,
    };
    let params = SimParams {
        grid_cell_size: 0.5,
        repulsion_cutoff: 0.5,
        ..SimParams::default()
    };
    let config = EngineConfig {
        max_grid_cells: 64,
        ..EngineConfig::default()
    };
    let mut e = Engine::with_config(
        checked_cuda(),
        &graph,
        params,
        config,
        FaultSet::of(&[Fault::GridCapUnclamped]),
    )
    .unwrap();
    let err: EngineError = e.step(1).expect_err("cell buffers overrun");
    assert!(!err.is_sticky(), "{err}");
    let v = err.violation().expect("a sanitizer finding");
    assert_eq!(v.kind, ViolationKind::OutOfBounds);
    assert!(
        matches!(
            v.buffer,
            BufferName::CellStart | BufferName::CellEnd | BufferName::CellCounts
        ),
        "{v}"
    );
    assert_eq!(v.access, Access::Write);
    // A kernel's index, or a host fill's end, lies past the capacity.
    assert!(v.index >= v.capacity as u64 || v.len > v.capacity, "{v}");
    println!("grid-cap-unclamped: {err}");
}

/// Not a test of correctness: prints the wall time of a step and the device time of its kernels,
/// unchecked and checked, at 10k, 100k and 1M nodes with 10 edges per node (both engines compute
/// the same bits, so they do the same work). Run explicitly:
/// `cargo test --release --test cuda -- --ignored report_checked_overhead --nocapture`.
#[test]
#[ignore = "prints timings; run explicitly on a GPU machine"]
fn report_checked_overhead() {
    require_cuda!();
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    /// Wall and summed kernel time per step, in ms, over `steps` steps, and each launch's kernel
    /// and device time in us.
    fn run<Bk: Backend>(e: &mut Engine<Bk>, steps: u32) -> (f64, f64, Vec<(&'static str, f64)>) {
        let before = e.kernel_log().launches();
        let t = std::time::Instant::now();
        e.step(steps).unwrap();
        let wall = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
        let launched = (e.kernel_log().launches() - before) as usize;
        let records = e.kernel_log().recent();
        let launches: Vec<_> = records[records.len() - launched..]
            .iter()
            .map(|r| (r.kernel, r.duration_us))
            .collect();
        let device: f64 = launches.iter().map(|l| l.1).sum();
        (wall, device / 1e3 / steps as f64, launches)
    }
    for n in [10_000u32, 100_000, 1_000_000] {
        let mut r = common::rng(n as u64);
        let edges = common::random_edges(&mut r, n, 10 * n as usize, |_| 1.0);
        let graph = GraphSpec {
            num_nodes: n,
            edges,
            positions: None,
        };
        let mut plain = Engine::new(cuda(), &graph, SimParams::default()).unwrap();
        let mut checked = Engine::new(checked_cuda(), &graph, SimParams::default()).unwrap();
        plain.step(5).unwrap();
        checked.step(5).unwrap();
        let (mut pw, mut pd, mut cw, mut cd) = (vec![], vec![], vec![], vec![]);
        let (mut pk, mut ck) = (vec![], vec![]);
        // Interleaved rounds, so that both see the same clocks and the same layout phase.
        for _ in 0..5 {
            let (w, d, k) = run(&mut plain, 8);
            pw.push(w);
            pd.push(d);
            pk.extend(k);
            let (w, d, k) = run(&mut checked, 8);
            cw.push(w);
            cd.push(d);
            ck.extend(k);
        }
        let (pw, pd, cw, cd) = (median(pw), median(pd), median(cw), median(cd));
        println!(
            "n = {n}, m = {}: step wall {pw:.3} ms unchecked, {cw:.3} ms checked (x{:.2}); kernels {pd:.3} ms unchecked, {cd:.3} ms checked (x{:.2})",
            10 * n,
            cw / pw,
            cd / pd
        );
        let of = |k: &[(&str, f64)], name: &str| {
            median(k.iter().filter(|l| l.0 == name).map(|l| l.1).collect())
        };
        let mut line = "  median us unchecked/checked:".to_string();
        for name in [
            "bounds_reduce",
            "build_grid",
            "sort_pairs",
            "gather_positions",
            "cell_bounds",
            "force_pass",
            "integrate",
        ] {
            line.push_str(&format!(
                " {name} {:.1}/{:.1}",
                of(&pk, name),
                of(&ck, name)
            ));
        }
        println!("{line}");
        assert!(
            common::state_bits(&mut plain) == common::state_bits(&mut checked),
            "both engines did the same work"
        );
    }
}
