/*!
The engine's fault-tolerance guarantees (ARCHITECTURE.md, "Fault tolerance"), on the CPU backend:

* a failed allocation, copy or launch during any operation returns a typed error and leaves the
  engine exactly as it was before the operation (counts, capacities, positions, velocities, edges);
* after a lost context the engine refuses work until `recover()`, which restores the state after the
  last completed operation;
* retrying the failed operation then gives bitwise the layout of the same run without faults;
* with a lazy checkpoint cadence, a failed step or SSSP is still undone exactly (on the device,
  without the host checkpoint), a lost context goes back to a state the engine had after an
  earlier operation, and a step downloads no state.

Random operation sequences, with one injected fault armed before a random operation of each run.
*/

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use forcefield::backend::layer::{Layer, Layered};
use forcefield::{
    Backend, BackendError, Checkpoint, CheckpointCadence, CpuBackend, Edge, Engine, EngineConfig,
    EngineError, EnvFault, FaultSet, GraphSpec, SimParams,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
enum Op {
    AddNodes(u32),
    RemoveNodes(Vec<u32>),
    AddEdges(Vec<Edge>),
    RemoveEdges(Vec<(u32, u32)>),
    Reserve(u32, u32),
    Shrink,
    Step(u32),
    Sssp(u32),
    SetParams(SimParams),
}

fn next_op(r: &mut ChaCha8Rng, n: u32) -> Op {
    match r.gen_range(0..10) {
        0 | 1 => Op::AddNodes(r.gen_range(1..40)),
        2 if n > 2 => Op::RemoveNodes((0..r.gen_range(1..3)).map(|_| r.gen_range(0..n)).collect()),
        3 if n > 1 => Op::AddEdges(
            (0..r.gen_range(1..20))
                .map(|_| Edge::new(r.gen_range(0..n), r.gen_range(0..n)))
                .collect(),
        ),
        4 if n > 1 => Op::RemoveEdges(vec![(r.gen_range(0..n), r.gen_range(0..n))]),
        5 => Op::Reserve(n + r.gen_range(0..50), r.gen_range(0..100)),
        6 => Op::Shrink,
        7 if n > 0 => Op::Sssp(r.gen_range(0..n)),
        8 => Op::SetParams(SimParams {
            repel_k: r.gen_range(5.0..30.0),
            ..SimParams::default()
        }),
        _ => Op::Step(r.gen_range(1..4)),
    }
}

fn apply<Bk: Backend>(e: &mut Engine<Bk>, op: &Op) -> Result<(), EngineError> {
    match op {
        Op::AddNodes(c) => e.add_nodes(*c, None).map(|_| ()),
        Op::RemoveNodes(ids) => e.remove_nodes(ids),
        Op::AddEdges(edges) => e.add_edges(edges),
        Op::RemoveEdges(pairs) => e.remove_edges(pairs).map(|_| ()),
        Op::Reserve(n, m) => e.reserve(*n, *m),
        Op::Shrink => e.shrink_to_fit(),
        Op::Step(c) => e.step(*c),
        Op::Sssp(s) => e.run_sssp(*s).map(|_| ()),
        Op::SetParams(p) => e.set_params(p.clone()),
    }
}

/// Everything the guarantee names, read back from the engine.
#[derive(Debug, PartialEq)]
struct State {
    nodes: u32,
    edges: Vec<Edge>,
    allocated: (usize, usize),
    positions: Vec<[u32; 3]>,
    velocities: Vec<[u32; 3]>,
    iteration: u32,
}

fn bits(v: Vec<[f32; 3]>) -> Vec<[u32; 3]> {
    v.into_iter()
        .map(|p| [p[0].to_bits(), p[1].to_bits(), p[2].to_bits()])
        .collect()
}

impl State {
    /// The state a checkpoint holds (what `recover` rebuilds).
    fn of_checkpoint(c: &Checkpoint) -> State {
        State {
            nodes: c.num_nodes,
            edges: c.edges.clone(),
            allocated: (c.allocated_nodes, c.allocated_edges),
            positions: bits(c.positions.clone()),
            velocities: bits(c.velocities.clone()),
            iteration: c.iteration,
        }
    }
}

/// Reads the state back. A read may itself meet an armed copy fault: it fails, changes nothing,
/// and the second try succeeds (faults fire once).
fn state<Bk: Backend>(e: &mut Engine<Bk>) -> State {
    let positions = e.positions().or_else(|_| e.positions()).unwrap();
    let velocities = e.velocities().or_else(|_| e.velocities()).unwrap();
    State {
        nodes: e.num_nodes(),
        edges: e.edges().to_vec(),
        allocated: (e.allocated_nodes(), e.allocated_edges()),
        positions: bits(positions),
        velocities: bits(velocities),
        iteration: e.iteration(),
    }
}

fn engine() -> Engine<CpuBackend> {
    let graph = GraphSpec {
        num_nodes: 20,
        edges: (0..19).map(|i| Edge::new(i, i + 1)).collect(),
        positions: None,
    };
    Engine::with_config(
        CpuBackend::with_threads(2),
        &graph,
        SimParams::default(),
        EngineConfig::default(),
        FaultSet::NONE,
    )
    .unwrap()
}

fn random_fault(r: &mut ChaCha8Rng) -> EnvFault {
    match r.gen_range(0..4) {
        0 => EnvFault::FailAlloc {
            nth: r.gen_range(1..4),
        },
        1 => EnvFault::FailCopy {
            nth: r.gen_range(1..6),
        },
        2 => EnvFault::FailLaunch {
            nth: r.gen_range(1..8),
        },
        _ => EnvFault::LoseContext {
            nth: r.gen_range(1..8),
        },
    }
}

/// Counts of what the runs exercised, so that the test fails if the faults never fire.
#[derive(Default, Debug)]
struct Seen {
    failed_ops: usize,
    recoveries: usize,
}

fn run_one(seed: u64, seen: &mut Seen) {
    run_one_with(seed, CheckpointCadence::EveryOperation, seen)
}

/// One random run under `cadence`. With a lazy cadence a lost context may go back further than
/// the failed operation: the recovered state must then be one the engine had before an earlier
/// operation of the run (the last time the checkpoint followed), and the run ends there.
fn run_one_with(seed: u64, cadence: CheckpointCadence, seen: &mut Seen) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut ops = Vec::new();
    let mut n = 20u32;
    let mut reference = engine();
    for _ in 0..25 {
        let op = next_op(&mut r, n);
        // Only operations that succeed without faults belong to the script.
        if apply(&mut reference, &op).is_ok() {
            ops.push(op);
        }
        n = reference.num_nodes();
    }
    let expected = state(&mut reference);

    let fault_at = r.gen_range(0..ops.len());
    let fault = random_fault(&mut r);
    let mut e = engine();
    e.set_checkpoint_cadence(cadence);
    let mut history = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let before = state(&mut e);
        history.push(state(&mut e));
        if i == fault_at {
            e.inject(fault);
        }
        match apply(&mut e, op) {
            Ok(()) => continue,
            Err(err) => {
                seen.failed_ops += 1;
                assert!(
                    matches!(err, EngineError::Backend(_)),
                    "seed {seed}, op {i} {op:?}: not a typed backend error: {err}"
                );
                if e.needs_recovery() {
                    assert!(
                        apply(&mut e, op).is_err(),
                        "seed {seed}: a lost engine must refuse work until recover()"
                    );
                    let checkpoint = State::of_checkpoint(e.checkpoint());
                    e.recover().unwrap();
                    seen.recoveries += 1;
                    if cadence != CheckpointCadence::EveryOperation {
                        let recovered = state(&mut e);
                        assert_eq!(
                            recovered, checkpoint,
                            "seed {seed}: recover() rebuilds the checkpoint"
                        );
                        assert!(
                            history.contains(&recovered),
                            "seed {seed}, op {i} {op:?}: recovered to a state the engine never had"
                        );
                        return;
                    }
                }
                assert_eq!(
                    state(&mut e),
                    before,
                    "seed {seed}, op {i} {op:?} failed with {err}: state changed"
                );
                apply(&mut e, op)
                    .unwrap_or_else(|e2| panic!("seed {seed}: retry of {op:?} failed: {e2}"));
            }
        }
    }
    assert_eq!(
        state(&mut e),
        expected,
        "seed {seed}: layout after the fault ({fault:?} before op {fault_at}) differs from the fault-free run"
    );
}

#[test]
fn injected_faults_leave_the_state_intact_and_recovery_resumes_the_same_layout() {
    let mut seen = Seen::default();
    for seed in 0..120 {
        run_one(seed, &mut seen);
    }
    // The faults really fired, of both kinds of handling.
    assert!(seen.failed_ops >= 60, "{seen:?}");
    assert!(seen.recoveries >= 15, "{seen:?}");
}

#[test]
fn with_a_lazy_checkpoint_failed_steps_are_undone_on_the_device() {
    let mut seen = Seen::default();
    for seed in 0..80 {
        let cadence = if seed % 2 == 0 {
            CheckpointCadence::OnDemand
        } else {
            CheckpointCadence::EverySteps(NonZeroU32::new(3).unwrap())
        };
        run_one_with(1000 + seed, cadence, &mut seen);
    }
    assert!(seen.failed_ops >= 40, "{seen:?}");
    assert!(seen.recoveries >= 5, "{seen:?}");
}

#[test]
fn a_failed_multi_step_call_leaves_the_state_of_before() {
    for cadence in [
        CheckpointCadence::EveryOperation,
        CheckpointCadence::OnDemand,
    ] {
        for nth in 1..12 {
            let mut e = engine();
            e.set_checkpoint_cadence(cadence);
            e.step(2).unwrap();
            let before = state(&mut e);
            // Launches of later steps fail: the earlier steps of the call have written the
            // spare buffers by then.
            e.inject(EnvFault::FailLaunch { nth: 6 + nth });
            assert!(e.step(5).is_err(), "{cadence:?}, launch {nth}");
            assert_eq!(state(&mut e), before, "{cadence:?}, launch {nth}");
            e.step(5).unwrap();
            let mut twin = engine();
            twin.step(7).unwrap();
            assert_eq!(state(&mut e), state(&mut twin), "{cadence:?}, launch {nth}");
        }
    }
}

#[test]
fn a_failed_sssp_leaves_the_distances_of_before() {
    let mut e = engine();
    e.set_checkpoint_cadence(CheckpointCadence::OnDemand);
    let first = e.run_sssp(0).unwrap();
    e.inject(EnvFault::FailLaunch { nth: 3 });
    assert!(e.run_sssp(19).is_err());
    let mut e2 = engine();
    e2.run_sssp(0).unwrap();
    // The distances stretch spring rest lengths: equal layouts after steps mean equal distances.
    let mut params = SimParams::default();
    params.feature_flags |= forcefield::params::features::SSSP_REST_LENGTH;
    params.sssp_alpha = 0.5;
    e.set_params(params.clone()).unwrap();
    e2.set_params(params).unwrap();
    e.step(4).unwrap();
    e2.step(4).unwrap();
    assert_eq!(state(&mut e), state(&mut e2));
    assert_eq!(e.run_sssp(0).unwrap(), first);
}

/// Counts the bytes a backend downloads to the host.
struct CountDownloads(Arc<AtomicUsize>);

impl Layer for CountDownloads {
    fn download(
        &mut self,
        inner: &mut dyn Backend,
        src: u64,
        dst: &mut [u8],
    ) -> Result<(), BackendError> {
        self.0.fetch_add(dst.len(), Ordering::Relaxed);
        inner.download(src, dst)
    }
}

/// A CPU backend that counts the bytes it downloads to the host.
type CountingBackend = Layered<CpuBackend, CountDownloads>;

#[test]
fn a_step_downloads_no_state_unless_the_cadence_asks() {
    let nodes = 3000usize;
    let graph = GraphSpec {
        num_nodes: nodes as u32,
        edges: (0..nodes as u32 - 1).map(|i| Edge::new(i, i + 1)).collect(),
        positions: None,
    };
    let downloaded = Arc::new(AtomicUsize::new(0));
    let backend = CountingBackend::new(
        CpuBackend::with_threads(2),
        CountDownloads(Arc::clone(&downloaded)),
    );
    let mut e = Engine::new(backend, &graph, SimParams::default()).unwrap();
    let state_bytes = nodes * 4 * 7; // positions, velocities, distances
    let bytes_of_step = |e: &mut Engine<CountingBackend>, steps: u32| {
        let start = downloaded.load(Ordering::Relaxed);
        e.step(steps).unwrap();
        downloaded.load(Ordering::Relaxed) - start
    };
    assert!(
        bytes_of_step(&mut e, 1) >= state_bytes,
        "the default follows every step"
    );
    e.set_checkpoint_cadence(CheckpointCadence::OnDemand);
    // Only the six floats of the bounding box come back, per step.
    assert!(bytes_of_step(&mut e, 1) <= 64);
    assert!(bytes_of_step(&mut e, 4) <= 4 * 64);
    let stale = State::of_checkpoint(e.checkpoint());
    let now = state(&mut e);
    assert_ne!(stale, now, "the checkpoint lags behind");
    e.sync_checkpoint().unwrap();
    assert_eq!(State::of_checkpoint(e.checkpoint()), now);
    e.set_checkpoint_cadence(CheckpointCadence::EverySteps(NonZeroU32::new(3).unwrap()));
    assert!(bytes_of_step(&mut e, 2) <= 2 * 64);
    assert!(
        bytes_of_step(&mut e, 1) >= state_bytes,
        "the third step brings it up to date"
    );
    assert_eq!(State::of_checkpoint(e.checkpoint()), state(&mut e));
}

#[test]
fn untimed_kernels_give_the_same_layout_and_log_nothing() {
    let mut timed = engine();
    let mut untimed = engine();
    untimed.set_kernel_timing(false);
    timed.step(6).unwrap();
    untimed.step(6).unwrap();
    assert_eq!(state(&mut timed), state(&mut untimed));
    assert!(!timed.kernel_log().recent().is_empty());
    assert!(untimed.kernel_log().recent().is_empty());
}

#[test]
fn recover_without_a_lost_context_rebuilds_the_same_state() {
    let mut e = engine();
    e.step(5).unwrap();
    // A checkpoint that lags is brought up to date first while the device still answers.
    e.set_checkpoint_cadence(CheckpointCadence::OnDemand);
    e.step(2).unwrap();
    let before = state(&mut e);
    let bytes = e.device_bytes();
    e.recover().unwrap();
    assert_eq!(state(&mut e), before);
    assert_eq!(
        e.device_bytes(),
        bytes,
        "recovery reallocates at the same capacities"
    );
    e.step(3).unwrap();
    let mut twin = engine();
    twin.step(10).unwrap();
    assert_eq!(state(&mut e), state(&mut twin));
}

#[test]
fn an_engine_restarted_from_its_checkpoint_steps_identically() {
    let mut e = engine();
    e.add_nodes(7, None).unwrap();
    e.step(4).unwrap();
    e.run_sssp(0).unwrap();
    let mut restarted = Engine::from_checkpoint(
        CpuBackend::with_threads(1),
        e.checkpoint(),
        EngineConfig::default(),
        FaultSet::NONE,
    )
    .unwrap();
    assert_eq!(state(&mut restarted), state(&mut e));
    e.step(6).unwrap();
    restarted.step(6).unwrap();
    assert_eq!(state(&mut restarted), state(&mut e));
}

/// The force pass walks the distance targets only while the engine knows the device holds one
/// (`KERNEL_DISTANCE_TARGETS`): a target must pull its nodes, still pull after an edit that failed
/// and was rolled back, and the same run without the failed edit must give the same bits.
#[test]
fn distance_targets_pull_through_a_rolled_back_edit() {
    let constraints_only = SimParams {
        feature_flags: forcefield::params::features::CONSTRAINTS,
        ..SimParams::default()
    };
    let mut e = engine();
    let mut twin = engine();
    for x in [&mut e, &mut twin] {
        x.set_params(constraints_only.clone()).unwrap();
        x.set_distance_constraint(0, 1, 50.0).unwrap();
    }
    // The failed edit: a second target, whose CSR upload fails after the first of its copies.
    e.inject(EnvFault::FailCopy { nth: 2 });
    assert!(e.set_distance_constraint(2, 3, 50.0).is_err());
    let before = e.positions().unwrap();
    e.step(3).unwrap();
    twin.step(3).unwrap();
    let after = e.positions().unwrap();
    assert_ne!(after[0], before[0], "the target of edge 0-1 pulls node 0");
    assert_ne!(after[1], before[1], "the target of edge 0-1 pulls node 1");
    assert_eq!(
        after[2], before[2],
        "the rolled-back target of edge 2-3 is gone"
    );
    assert_eq!(after[5], before[5], "a node without a target does not move");
    assert_eq!(state(&mut e), state(&mut twin));
    // Cleared, the targets stop pulling: the velocities alone move the nodes, in both runs alike.
    for x in [&mut e, &mut twin] {
        x.clear_constraints().unwrap();
        x.step(2).unwrap();
    }
    assert_eq!(state(&mut e), state(&mut twin));
}
