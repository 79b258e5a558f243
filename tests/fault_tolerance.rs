/*!
The engine's fault-tolerance guarantees (ARCHITECTURE.md, "Fault tolerance"), on the CPU backend:

* a failed allocation, copy or launch during any operation returns a typed error and leaves the
  engine exactly as it was before the operation (counts, capacities, positions, velocities, edges);
* after a lost context the engine refuses work until `recover()`, which restores the state after the
  last completed operation;
* retrying the failed operation then gives bitwise the layout of the same run without faults.

Random operation sequences, with one injected fault armed before a random operation of each run.
*/

use forcefield::{
    CpuBackend, Edge, Engine, EngineConfig, EngineError, EnvFault, FaultSet, GraphSpec, SimParams,
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

fn apply(e: &mut Engine<CpuBackend>, op: &Op) -> Result<(), EngineError> {
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

/// Reads the state back. A read may itself meet an armed copy fault: it fails, changes nothing,
/// and the second try succeeds (faults fire once).
fn state(e: &mut Engine<CpuBackend>) -> State {
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
    for (i, op) in ops.iter().enumerate() {
        let before = state(&mut e);
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
                    e.recover().unwrap();
                    seen.recoveries += 1;
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
fn recover_without_a_lost_context_rebuilds_the_same_state() {
    let mut e = engine();
    e.step(5).unwrap();
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
    twin.step(8).unwrap();
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
