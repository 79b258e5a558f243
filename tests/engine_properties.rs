/*!
Property tests of the engine on the CPU backend: random small graphs (self-loops, parallel edges, zero
weights) driven through random operation sequences that favour capacity changes (growth past
capacity, shrinking, regrowth, repeated resizes between steps).

Two properties:

* **Invariants after every operation**: positions finite and inside the viewport; live counts within
  capacity; every registered buffer sized from its class capacity and live count; after a step, the
  grid stage (bounding box, cell keys, stable key sort, cell ranges) agrees with a recomputation from
  the step's input positions; the uploaded CSR is exactly both directions of the edge list.
* **Capacity invariance**: capacity is not observable. The same sequence with extra `reserve` /
  `shrink_to_fit` calls, or with a different growth factor, gives bitwise-identical state.
*/

mod common;

use forcefield::backend::cpu::kernels::cell_key;
use forcefield::buffer::elements_for;
use forcefield::params::features;
use forcefield::{
    BufferName, CpuBackend, Edge, Engine, EngineConfig, FaultSet, GraphSpec, GrowthPolicy,
    SimParams, SizeClass,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

type TestResult = Result<(), TestCaseError>;

/// Turns an engine error into a test failure that names the operation.
fn ok<T>(what: &str, r: forcefield::error::Result<T>) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("{what} failed: {e}")))
}

// ---- inputs ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct InitialGraph {
    num_nodes: u32,
    edges: Vec<Edge>,
}

impl InitialGraph {
    fn spec(&self) -> GraphSpec {
        GraphSpec {
            num_nodes: self.num_nodes,
            edges: self.edges.clone(),
            positions: None,
        }
    }
}

/// A mild, valid change of one group of parameters.
#[derive(Clone, Debug)]
enum Tweak {
    Springs { spring_k: f32, rest_length: f32 },
    Repulsion { repel_k: f32, cutoff: f32, eps: f32 },
    Damping { damping: f32, cooling_rate: f32 },
    Gravity(f32),
    Noise { temperature: f32, seed: u64 },
    CellSize(f32),
    Separation(f32),
    Features(u32),
    SsspAlpha(f32),
}

impl Tweak {
    fn apply(&self, p: &mut SimParams) {
        match *self {
            Tweak::Springs {
                spring_k,
                rest_length,
            } => {
                p.spring_k = spring_k;
                p.rest_length = rest_length;
            }
            Tweak::Repulsion {
                repel_k,
                cutoff,
                eps,
            } => {
                p.repel_k = repel_k;
                p.repulsion_cutoff = cutoff;
                p.repulsion_softening_epsilon = eps;
            }
            Tweak::Damping {
                damping,
                cooling_rate,
            } => {
                p.damping = damping;
                p.cooling_rate = cooling_rate;
            }
            Tweak::Gravity(k) => p.center_gravity_k = k,
            Tweak::Noise { temperature, seed } => {
                p.temperature = temperature;
                p.seed = seed;
                p.feature_flags |= features::THERMAL_NOISE;
            }
            Tweak::CellSize(c) => p.grid_cell_size = c,
            Tweak::Separation(r) => p.separation_radius = r,
            Tweak::Features(f) => p.feature_flags = f,
            Tweak::SsspAlpha(a) => {
                p.sssp_alpha = a;
                p.feature_flags |= features::SSSP_REST_LENGTH;
            }
        }
    }
}

/// One operation. Node ids are raw and taken modulo the live node count when applied, so that a
/// sequence stays valid whatever came before it.
#[derive(Clone, Debug)]
enum Op {
    AddNodes {
        count: u32,
        positions: Option<Vec<[f32; 3]>>,
    },
    RemoveNodes(Vec<u32>),
    AddEdges(Vec<(u32, u32, f32)>),
    /// `(existing, a, b)`: with `existing`, remove the endpoints of live edge `a mod m`; otherwise
    /// the pair `(a mod n, b mod n)`, which may share no edge.
    RemoveEdges(Vec<(bool, u32, u32)>),
    Reserve {
        nodes: u32,
        edges: u32,
    },
    ShrinkToFit,
    SetParams(Tweak),
    Step(u32),
    Sssp(u32),
}

fn weight() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => 0.0f32..=5.0,
        1 => (0u32..=5).prop_map(|w| w as f32),
    ]
}

/// A coordinate inside the default viewport, with exact repeats (coincident nodes) and the viewport
/// faces themselves.
fn coordinate() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -60.0f32..60.0,
        1 => Just(0.0f32),
        1 => Just(1000.0f32),
        1 => Just(-1000.0f32),
    ]
}

fn graph_strategy() -> impl Strategy<Value = InitialGraph> {
    (0u32..60)
        .prop_flat_map(|n| {
            let edges = if n == 0 {
                Just(Vec::new()).boxed()
            } else {
                vec((0..n, 0..n, weight()), 0..120)
                    .prop_map(|es| es.into_iter().map(|(u, v, w)| Edge { u, v, w }).collect())
                    .boxed()
            };
            (Just(n), edges)
        })
        .prop_map(|(num_nodes, edges)| InitialGraph { num_nodes, edges })
}

fn tweak_strategy() -> impl Strategy<Value = Tweak> {
    let flag_mask = features::DEFAULT | features::THERMAL_NOISE | features::SSSP_REST_LENGTH;
    prop_oneof![
        (0.05f32..0.5, 1.0f32..8.0).prop_map(|(spring_k, rest_length)| Tweak::Springs {
            spring_k,
            rest_length
        }),
        (10.0f32..80.0, 4.0f32..20.0, 0.1f32..1.0).prop_map(|(repel_k, cutoff, eps)| {
            Tweak::Repulsion {
                repel_k,
                cutoff,
                eps,
            }
        }),
        (0.5f32..0.95, 0.3f32..0.9).prop_map(|(damping, cooling_rate)| Tweak::Damping {
            damping,
            cooling_rate
        }),
        (0.0f32..0.05).prop_map(Tweak::Gravity),
        (0.0f32..0.5, any::<u64>())
            .prop_map(|(temperature, seed)| Tweak::Noise { temperature, seed }),
        prop_oneof![Just(0.0f32), 5.0f32..30.0].prop_map(Tweak::CellSize),
        prop_oneof![Just(0.0f32), 0.5f32..2.0].prop_map(Tweak::Separation),
        any::<u32>().prop_map(move |f| Tweak::Features(f & flag_mask)),
        (0.0f32..0.5).prop_map(Tweak::SsspAlpha),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let add_nodes = (1u32..40).prop_flat_map(|count| {
        let positions = proptest::option::of(vec(
            [coordinate(), coordinate(), coordinate()],
            count as usize,
        ));
        (Just(count), positions)
    });
    prop_oneof![
        4 => add_nodes.prop_map(|(count, positions)| Op::AddNodes { count, positions }),
        3 => vec(any::<u32>(), 0..30).prop_map(Op::RemoveNodes),
        3 => vec((any::<u32>(), any::<u32>(), weight()), 0..40).prop_map(Op::AddEdges),
        2 => vec((any::<bool>(), any::<u32>(), any::<u32>()), 0..10).prop_map(Op::RemoveEdges),
        3 => (0u32..300, 0u32..400).prop_map(|(nodes, edges)| Op::Reserve { nodes, edges }),
        3 => Just(Op::ShrinkToFit),
        1 => tweak_strategy().prop_map(Op::SetParams),
        5 => (1u32..=5).prop_map(Op::Step),
        1 => any::<u32>().prop_map(Op::Sssp),
    ]
}

// ---- applying operations --------------------------------------------------------------------

/// What an operation produced that a check needs.
#[derive(Default)]
struct Outcome {
    /// Positions at the start of the last step taken, when the operation stepped a non-empty graph.
    last_step_input: Option<Vec<[f32; 3]>>,
    /// SSSP distances, when the operation ran SSSP.
    sssp: Option<Vec<f32>>,
}

fn apply(e: &mut Engine<CpuBackend>, op: &Op) -> Result<Outcome, TestCaseError> {
    let n = e.num_nodes();
    let mut out = Outcome::default();
    match op {
        Op::AddNodes { count, positions } => {
            let ids = ok("add_nodes", e.add_nodes(*count, positions.as_deref()))?;
            prop_assert_eq!(ids, n..n + count);
        }
        Op::RemoveNodes(raw) => {
            if n > 0 {
                let ids: Vec<u32> = raw.iter().map(|r| r % n).collect();
                let mut distinct = ids.clone();
                distinct.sort_unstable();
                distinct.dedup();
                ok("remove_nodes", e.remove_nodes(&ids))?;
                prop_assert_eq!(e.num_nodes() as usize, n as usize - distinct.len());
            }
        }
        Op::AddEdges(raw) => {
            if n > 0 {
                let edges: Vec<Edge> = raw
                    .iter()
                    .map(|&(u, v, w)| Edge {
                        u: u % n,
                        v: v % n,
                        w,
                    })
                    .collect();
                let before = e.num_edges();
                ok("add_edges", e.add_edges(&edges))?;
                prop_assert_eq!(e.num_edges() as usize, before as usize + edges.len());
            }
        }
        Op::RemoveEdges(raw) => {
            if n > 0 {
                let live = e.edges().to_vec();
                let pairs: Vec<(u32, u32)> = raw
                    .iter()
                    .map(|&(existing, a, b)| {
                        if existing && !live.is_empty() {
                            let edge = live[a as usize % live.len()];
                            (edge.u, edge.v)
                        } else {
                            (a % n, b % n)
                        }
                    })
                    .collect();
                let hit = |x: &Edge| {
                    pairs
                        .iter()
                        .any(|&(u, v)| (x.u, x.v) == (u, v) || (x.u, x.v) == (v, u))
                };
                let expected: Vec<Edge> = live.iter().copied().filter(|x| !hit(x)).collect();
                let removed = ok("remove_edges", e.remove_edges(&pairs))?;
                prop_assert_eq!(removed, live.len() - expected.len());
                prop_assert_eq!(e.edges(), &expected[..]);
            }
        }
        Op::Reserve { nodes, edges } => {
            ok("reserve", e.reserve(*nodes, *edges))?;
            prop_assert!(e.allocated_nodes() >= *nodes as usize);
            prop_assert!(e.allocated_edges() >= *edges as usize);
        }
        Op::ShrinkToFit => {
            ok("shrink_to_fit", e.shrink_to_fit())?;
            prop_assert_eq!(e.allocated_nodes(), e.num_nodes() as usize);
            prop_assert_eq!(e.allocated_edges(), e.num_edges() as usize);
        }
        Op::SetParams(tweak) => {
            let mut p = e.params().clone();
            tweak.apply(&mut p);
            ok("set_params", e.set_params(p.clone()))?;
            prop_assert_eq!(e.params(), &p);
        }
        Op::Step(k) => {
            // step(k) is k single steps; splitting off the last one exposes its input positions,
            // against which the grid stage is recomputed.
            let it = e.iteration();
            ok("step", e.step(k - 1))?;
            if n > 0 {
                out.last_step_input = Some(ok("positions", e.positions())?);
            }
            ok("step", e.step(1))?;
            prop_assert_eq!(e.iteration(), it.wrapping_add(*k));
        }
        Op::Sssp(raw) => {
            if n > 0 {
                let source = raw % n;
                let d = ok("run_sssp", e.run_sssp(source))?;
                prop_assert_eq!(d.len(), n as usize);
                prop_assert_eq!(d[source as usize].to_bits(), 0f32.to_bits());
                prop_assert!(d.iter().all(|x| *x >= 0.0 && !x.is_nan()));
                out.sssp = Some(d);
            }
        }
    }
    Ok(out)
}

// ---- invariants -----------------------------------------------------------------------------

fn check_positions(e: &mut Engine<CpuBackend>) -> TestResult {
    let bound = e.params().viewport_bounds;
    let pos = ok("positions", e.positions())?;
    prop_assert_eq!(pos.len(), e.num_nodes() as usize);
    for (i, p) in pos.iter().enumerate() {
        prop_assert!(
            p.iter().all(|c| c.is_finite() && c.abs() <= bound),
            "node {} at {:?} is non-finite or outside ±{}",
            i,
            p,
            bound
        );
    }
    Ok(())
}

fn check_capacities(e: &Engine<CpuBackend>) -> TestResult {
    let n = e.num_nodes() as usize;
    let m = e.num_edges() as usize;
    prop_assert!(
        n <= e.allocated_nodes(),
        "{} nodes > capacity {}",
        n,
        e.allocated_nodes()
    );
    prop_assert!(
        m <= e.allocated_edges(),
        "{} edges > capacity {}",
        m,
        e.allocated_edges()
    );
    let cells = e.grid().map(|g| g.num_cells());
    if let Some(c) = cells {
        prop_assert!(c <= e.allocated_cells());
    }
    let mut seen = Vec::new();
    for b in e.buffers() {
        seen.push(b.name);
        prop_assert!(
            b.len <= b.capacity,
            "{}: len {} > capacity {}",
            b.name,
            b.len,
            b.capacity
        );
        prop_assert_eq!(
            b.alloc.bytes,
            b.capacity * b.name.elem().size(),
            "{}",
            b.name
        );
        // A buffer whose capacity lags behind its class is the bug class this engine is built to
        // expose, so every buffer must match its class capacity exactly.
        let (class_cap, live) = match b.name.class() {
            SizeClass::Node => (e.allocated_nodes(), Some(n)),
            SizeClass::Edge => (e.allocated_edges(), Some(m)),
            SizeClass::Cell => (e.allocated_cells(), cells),
            SizeClass::Fixed => (0, None),
        };
        prop_assert_eq!(
            b.capacity,
            elements_for(b.name, class_cap),
            "{} capacity",
            b.name
        );
        if let Some(live) = live {
            prop_assert_eq!(b.len, elements_for(b.name, live), "{} live length", b.name);
        }
    }
    prop_assert_eq!(
        seen.len(),
        BufferName::ALL.len(),
        "registered buffers: {:?}",
        seen
    );
    Ok(())
}

fn check_grid(e: &mut Engine<CpuBackend>, step_input: Option<&[[f32; 3]]>) -> TestResult {
    let Some(g) = ok("inspect_grid", e.inspect_grid())? else {
        prop_assert!(step_input.is_none(), "a step over nodes left no grid");
        return Ok(());
    };
    let n = e.num_nodes() as usize;
    prop_assert!(n > 0, "a grid with no nodes");
    let cells = g.grid.num_cells();
    prop_assert!(cells > 0 && cells <= EngineConfig::default().max_grid_cells);
    prop_assert_eq!(g.cell_keys.len(), n);
    prop_assert_eq!(g.sorted_keys.len(), n);
    prop_assert_eq!(g.sorted_nodes.len(), n);
    prop_assert_eq!(g.cell_start.len(), cells);
    prop_assert_eq!(g.cell_end.len(), cells);

    // The sort: keys non-decreasing, a permutation, keys carried with their nodes, stable.
    let mut node_seen = vec![false; n];
    for s in 0..n {
        let node = g.sorted_nodes[s] as usize;
        prop_assert!(node < n, "sorted_nodes[{}] = {} out of range", s, node);
        prop_assert!(!node_seen[node], "node {} sorted twice", node);
        node_seen[node] = true;
        prop_assert!(
            (g.sorted_keys[s] as usize) < cells,
            "key {} >= {} cells",
            g.sorted_keys[s],
            cells
        );
        prop_assert_eq!(g.sorted_keys[s], g.cell_keys[node], "slot {}", s);
        if s > 0 {
            prop_assert!(
                g.sorted_keys[s - 1] <= g.sorted_keys[s],
                "keys decrease at slot {}",
                s
            );
            if g.sorted_keys[s - 1] == g.sorted_keys[s] {
                prop_assert!(
                    g.sorted_nodes[s - 1] < g.sorted_nodes[s],
                    "unstable at slot {}",
                    s
                );
            }
        }
    }

    // Cell ranges: each non-empty cell's range holds exactly its nodes; the ranges partition 0..n.
    let mut per_cell = std::collections::BTreeMap::<u32, usize>::new();
    for &k in &g.cell_keys {
        *per_cell.entry(k).or_default() += 1;
    }
    let mut covered = vec![0u32; n];
    for c in 0..cells {
        let (s, t) = (g.cell_start[c] as usize, g.cell_end[c] as usize);
        match per_cell.get(&(c as u32)) {
            None => prop_assert_eq!(s, t, "empty cell {} has a non-empty range", c),
            Some(&count) => {
                prop_assert!(
                    s <= t && t <= n,
                    "cell {} range {}..{} with n {}",
                    c,
                    s,
                    t,
                    n
                );
                prop_assert_eq!(t - s, count, "cell {} range length", c);
                for (times, key) in covered[s..t].iter_mut().zip(&g.sorted_keys[s..t]) {
                    *times += 1;
                    prop_assert_eq!(*key, c as u32);
                }
            }
        }
    }
    prop_assert!(
        covered.iter().all(|&c| c == 1),
        "ranges do not partition the slots: {:?}",
        covered
    );

    // Recompute the grid stage from the positions the last step started from.
    if let Some(input) = step_input {
        prop_assert_eq!(input.len(), n);
        let mut lo = [f32::INFINITY; 3];
        let mut hi = [f32::NEG_INFINITY; 3];
        for p in input {
            for k in 0..3 {
                lo[k] = lo[k].min(p[k]);
                hi[k] = hi[k].max(p[k]);
            }
        }
        let expected = e.grid_for_bounds(lo, hi);
        prop_assert_eq!(g.grid, expected);
        for (i, p) in input.iter().enumerate() {
            prop_assert_eq!(
                g.cell_keys[i],
                cell_key(&g.grid, *p),
                "node {} at {:?}",
                i,
                p
            );
        }
    }
    Ok(())
}

fn check_csr(e: &mut Engine<CpuBackend>) -> TestResult {
    let n = e.num_nodes() as usize;
    let edges = e.edges().to_vec();
    let csr = ok("inspect_csr", e.inspect_csr())?;
    let r = &csr.row_offsets;
    prop_assert_eq!(r.len(), n + 1);
    prop_assert_eq!(r[0], 0);
    prop_assert_eq!(r[n] as usize, 2 * edges.len());
    prop_assert!(
        r.windows(2).all(|w| w[0] <= w[1]),
        "row offsets decrease: {:?}",
        r
    );
    let mut got = Vec::with_capacity(2 * edges.len());
    for row in 0..n {
        for slot in r[row] as usize..r[row + 1] as usize {
            prop_assert!(
                (csr.col_indices[slot] as usize) < n,
                "column {} >= n",
                csr.col_indices[slot]
            );
            got.push((
                row as u32,
                csr.col_indices[slot],
                csr.weights[slot].to_bits(),
            ));
        }
    }
    let mut want: Vec<(u32, u32, u32)> = edges
        .iter()
        .flat_map(|x| [(x.u, x.v, x.w.to_bits()), (x.v, x.u, x.w.to_bits())])
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    prop_assert_eq!(got, want);
    Ok(())
}

fn check_all(e: &mut Engine<CpuBackend>, out: &Outcome) -> TestResult {
    check_positions(e)?;
    check_capacities(e)?;
    check_grid(e, out.last_step_input.as_deref())?;
    check_csr(e)
}

// ---- capacity invariance --------------------------------------------------------------------

/// Capacity changes inserted before an operation in the perturbed run.
#[derive(Clone, Debug)]
enum CapNoise {
    None,
    Reserve(u32, u32),
    Shrink,
    ShrinkThenReserve(u32, u32),
}

fn noise_strategy() -> impl Strategy<Value = CapNoise> {
    prop_oneof![
        2 => Just(CapNoise::None),
        2 => (0u32..300, 0u32..400).prop_map(|(a, b)| CapNoise::Reserve(a, b)),
        2 => Just(CapNoise::Shrink),
        1 => (0u32..300, 0u32..400).prop_map(|(a, b)| CapNoise::ShrinkThenReserve(a, b)),
    ]
}

fn apply_noise(e: &mut Engine<CpuBackend>, noise: &CapNoise) -> TestResult {
    match *noise {
        CapNoise::None => {}
        CapNoise::Reserve(a, b) => ok("reserve", e.reserve(a, b))?,
        CapNoise::Shrink => ok("shrink_to_fit", e.shrink_to_fit())?,
        CapNoise::ShrinkThenReserve(a, b) => {
            ok("shrink_to_fit", e.shrink_to_fit())?;
            ok("reserve", e.reserve(a, b))?;
        }
    }
    Ok(())
}

fn engine(graph: &InitialGraph, config: EngineConfig) -> Engine<CpuBackend> {
    Engine::with_config(
        CpuBackend::new(),
        &graph.spec(),
        SimParams::default(),
        config,
        FaultSet::NONE,
    )
    .expect("engine from a valid graph")
}

/// Applies `ops` to a graph, checking every invariant before and after each.
fn run_invariants(graph: &InitialGraph, ops: &[Op]) -> TestResult {
    let mut e = engine(graph, EngineConfig::default());
    check_all(&mut e, &Outcome::default())?;
    for op in ops {
        let out = apply(&mut e, op)?;
        check_all(&mut e, &out)?;
    }
    Ok(())
}

fn sssp_bits(d: &Option<Vec<f32>>) -> Option<Vec<u32>> {
    d.as_ref().map(|d| d.iter().map(|x| x.to_bits()).collect())
}

/// Runs `ops` in lockstep on a default engine, one with the capacity changes of `noise` inserted,
/// and one with growth factor 3; all state must agree bit for bit after every operation.
fn run_capacity_invariance(graph: &InitialGraph, ops: &[(Op, CapNoise)]) -> TestResult {
    let wide = EngineConfig {
        growth: GrowthPolicy { factor: 3.0 },
        ..EngineConfig::default()
    };
    let mut base = engine(graph, EngineConfig::default());
    let mut perturbed = engine(graph, EngineConfig::default());
    let mut grown = engine(graph, wide);
    for (i, (op, noise)) in ops.iter().enumerate() {
        apply_noise(&mut perturbed, noise)?;
        let a = apply(&mut base, op)?;
        let b = apply(&mut perturbed, op)?;
        let c = apply(&mut grown, op)?;
        let want = common::state_bits(&mut base);
        prop_assert_eq!(
            &common::state_bits(&mut perturbed),
            &want,
            "op {} {:?} with extra {:?}",
            i,
            op,
            noise
        );
        prop_assert_eq!(
            &common::state_bits(&mut grown),
            &want,
            "op {} {:?} with growth 3.0",
            i,
            op
        );
        prop_assert_eq!(sssp_bits(&b.sssp), sssp_bits(&a.sssp));
        prop_assert_eq!(sssp_bits(&c.sssp), sssp_bits(&a.sssp));
        let grid = ok("inspect_grid", base.inspect_grid())?;
        // A resize drops the grid stage's scratch data (it is not carried over), and the three
        // engines resize at different times, so one may have no grid to show; when two have one,
        // it is the same.
        if let (Some(g), Some(_)) = (ok("inspect_grid", perturbed.inspect_grid())?, &grid) {
            prop_assert_eq!(Some(g), grid.clone(), "op {}", i);
        }
        if let (Some(g), Some(_)) = (ok("inspect_grid", grown.inspect_grid())?, &grid) {
            prop_assert_eq!(Some(g), grid.clone(), "op {}", i);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn invariants_hold_after_every_operation(
        graph in graph_strategy(),
        ops in vec(op_strategy(), 1..30),
    ) {
        run_invariants(&graph, &ops)?;
    }

    #[test]
    fn capacity_is_not_observable(
        graph in graph_strategy(),
        ops in vec((op_strategy(), noise_strategy()), 1..25),
    ) {
        run_capacity_invariance(&graph, &ops)?;
    }
}

/// A fixed sequence that exercises every resize path, checked the same way; it pins down growth,
/// shrink to zero and regrowth even if the random cases happen to miss one.
#[test]
fn grow_shrink_to_zero_regrow() {
    let graph = InitialGraph {
        num_nodes: 3,
        edges: vec![Edge::new(0, 1), Edge { u: 2, v: 2, w: 0.0 }],
    };
    let mut e = engine(&graph, EngineConfig::default());
    let ops = [
        Op::Step(2),
        Op::AddNodes {
            count: 10,
            positions: None,
        },
        Op::AddEdges(vec![(0, 12, 1.0), (5, 5, 2.5), (3, 4, 0.0), (3, 4, 5.0)]),
        Op::Step(3),
        Op::ShrinkToFit,
        Op::Step(1),
        Op::RemoveNodes((0..13).collect()),
        Op::Step(2),
        Op::ShrinkToFit,
        Op::Reserve { nodes: 0, edges: 0 },
        Op::AddNodes {
            count: 1,
            positions: Some(vec![[1000.0, -1000.0, 0.0]]),
        },
        Op::Step(1),
        Op::AddNodes {
            count: 39,
            positions: None,
        },
        Op::AddEdges((0..39).map(|i| (i, i + 1, 1.0)).collect()),
        Op::Reserve {
            nodes: 200,
            edges: 5,
        },
        Op::Step(5),
        Op::ShrinkToFit,
        Op::Sssp(0),
        Op::Step(5),
    ];
    let mut capacities = Vec::new();
    for op in &ops {
        let out = apply(&mut e, op).unwrap_or_else(|err| panic!("{op:?}: {err}"));
        check_all(&mut e, &out).unwrap_or_else(|err| panic!("after {op:?}: {err}"));
        capacities.push(e.allocated_nodes());
    }
    assert!(
        capacities.contains(&0),
        "never shrank to zero: {capacities:?}"
    );
    assert!(capacities.contains(&200), "never reserved: {capacities:?}");
    assert_eq!(e.num_nodes(), 40);
}

/// Zero softening with repulsion on would give NaN for coincident nodes: it is rejected up front.
#[test]
fn zero_softening_is_rejected_while_repulsion_is_on() {
    let graph = GraphSpec {
        num_nodes: 3,
        edges: vec![],
        positions: Some(vec![[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [5.0, 0.0, 0.0]]),
    };
    let params = SimParams {
        repulsion_softening_epsilon: 0.0,
        ..SimParams::default()
    };
    let err = Engine::new(CpuBackend::new(), &graph, params).unwrap_err();
    assert!(
        err.to_string().contains("repulsion_softening_epsilon"),
        "{err}"
    );
}

/// Two nodes at the same point are pushed apart along a seeded direction (`coincident_offset`).
#[test]
fn coincident_nodes_separate() {
    let graph = GraphSpec {
        num_nodes: 2,
        edges: vec![],
        positions: Some(vec![[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]),
    };
    let mut e = Engine::new(CpuBackend::new(), &graph, SimParams::default()).expect("engine");
    e.step(50).unwrap();
    let pos = e.positions().unwrap();
    assert!(common::dist(pos[0], pos[1]) > 1.0, "{pos:?}");
}

// ---- the state machine: every operation against a reference model ----------------------------

/// An operation of the state-machine test, ids as raw numbers taken modulo the live count.
#[derive(Clone, Debug)]
enum ModelOp {
    AddNodes(u32, bool),
    RemoveNodes(Vec<u32>),
    AddEdges(Vec<(u32, u32, f32)>),
    /// `(take an existing edge, reversed, a, b)`.
    RemoveEdges(Vec<(bool, bool, u32, u32)>),
    PositionConstraint(u32, [f32; 3], f32),
    DistanceConstraint(bool, u32, u32, f32),
    ClearConstraints,
    Reserve(u32, u32),
    ShrinkToFit,
    Step(u32),
}

fn model_op_strategy() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        3 => (1u32..8, any::<bool>()).prop_map(|(n, p)| ModelOp::AddNodes(n, p)),
        2 => vec(any::<u32>(), 0..4).prop_map(ModelOp::RemoveNodes),
        3 => vec((any::<u32>(), any::<u32>(), weight()), 0..6).prop_map(ModelOp::AddEdges),
        2 => vec((any::<bool>(), any::<bool>(), any::<u32>(), any::<u32>()), 0..4)
            .prop_map(ModelOp::RemoveEdges),
        1 => (any::<u32>(), [coordinate(), coordinate(), coordinate()], 0.0f32..2.0)
            .prop_map(|(n, t, k)| ModelOp::PositionConstraint(n, t, k)),
        1 => (any::<bool>(), any::<u32>(), any::<u32>(), -1.0f32..10.0)
            .prop_map(|(e, a, b, d)| ModelOp::DistanceConstraint(e, a, b, d)),
        1 => Just(ModelOp::ClearConstraints),
        1 => (0u32..100, 0u32..100).prop_map(|(n, e)| ModelOp::Reserve(n, e)),
        1 => Just(ModelOp::ShrinkToFit),
        2 => (1u32..=3).prop_map(ModelOp::Step),
    ]
}

/// What the engine must hold: per node position, velocity and position constraint (as bits), and
/// the edges `(u, v, weight bits, distance target bits)` in insertion order. Written from the
/// documented semantics (`src/engine.rs`, "What each operation leaves behind"), sharing nothing with
/// the engine's editing code.
#[derive(Clone, Debug, Default)]
struct StateModel {
    positions: Vec<[u32; 3]>,
    velocities: Vec<[u32; 3]>,
    anchors: Vec<[u32; 4]>,
    edges: Vec<(u32, u32, u32, u32)>,
}

fn bits3(p: [f32; 3]) -> [u32; 3] {
    p.map(f32::to_bits)
}

impl StateModel {
    fn joins(e: &(u32, u32, u32, u32), a: u32, b: u32) -> bool {
        (e.0, e.1) == (a, b) || (e.0, e.1) == (b, a)
    }

    /// The CSR rows the edges define: `(column, weight bits, target bits)` in edge order.
    fn rows(&self) -> Vec<Vec<(u32, u32, u32)>> {
        let mut rows = vec![Vec::new(); self.positions.len()];
        for &(u, v, w, t) in &self.edges {
            rows[u as usize].push((v, w, t));
            rows[v as usize].push((u, w, t));
        }
        rows
    }

    fn check(&self, e: &mut Engine<CpuBackend>, moved: bool, what: &str) -> TestResult {
        prop_assert_eq!(e.num_nodes() as usize, self.positions.len(), "{}", what);
        prop_assert_eq!(e.num_edges() as usize, self.edges.len(), "{}", what);
        let csr = ok("inspect_csr", e.inspect_csr())?;
        let attributes = ok("inspect_constraints", e.inspect_constraints())?;
        for (r, want) in self.rows().iter().enumerate() {
            let entries = csr.row_offsets[r] as usize..csr.row_offsets[r + 1] as usize;
            let got: Vec<(u32, u32, u32)> = entries
                .map(|k| {
                    (
                        csr.col_indices[k],
                        csr.weights[k].to_bits(),
                        attributes.edge_targets[k].to_bits(),
                    )
                })
                .collect();
            prop_assert_eq!(&got, want, "{}: row {}", what, r);
        }
        let anchors: Vec<[u32; 4]> = attributes
            .anchors
            .iter()
            .map(|a| a.map(f32::to_bits))
            .collect();
        prop_assert_eq!(&anchors, &self.anchors, "{}", what);
        if !moved {
            let pos: Vec<[u32; 3]> = ok("positions", e.positions())?
                .into_iter()
                .map(bits3)
                .collect();
            let vel: Vec<[u32; 3]> = ok("velocities", e.velocities())?
                .into_iter()
                .map(bits3)
                .collect();
            prop_assert_eq!(&pos, &self.positions, "{}: positions", what);
            prop_assert_eq!(&vel, &self.velocities, "{}: velocities", what);
        }
        Ok(())
    }
}

/// The elements of `v` whose index is not `gone`.
fn kept<T: Copy>(v: &[T], gone: &dyn Fn(usize) -> bool) -> Vec<T> {
    v.iter()
        .enumerate()
        .filter(|(i, _)| !gone(*i))
        .map(|(_, x)| *x)
        .collect()
}

/// Applies `op` to the engine and to the model; returns whether nodes may have moved (a step).
fn apply_both(
    e: &mut Engine<CpuBackend>,
    m: &mut StateModel,
    op: &ModelOp,
) -> Result<bool, TestCaseError> {
    let n = m.positions.len() as u32;
    let none = (-1f32).to_bits();
    match op {
        ModelOp::AddNodes(count, positioned) => {
            // Explicit positions only: where seeded nodes start is pinned by the harness's model.
            let given: Vec<[f32; 3]> = (0..*count)
                .map(|k| [(n + k) as f32 * 1.5, -(k as f32), 0.25])
                .collect();
            if *positioned {
                ok("add_nodes", e.add_nodes(*count, Some(&given)))?;
                m.positions.extend(given.iter().copied().map(bits3));
            } else {
                ok("add_nodes", e.add_nodes(*count, None))?;
                let all = ok("positions", e.positions())?;
                m.positions
                    .extend(all[n as usize..].iter().copied().map(bits3));
            }
            m.velocities
                .extend((0..*count).map(|_| [0f32.to_bits(); 3]));
            m.anchors.extend((0..*count).map(|_| [0f32.to_bits(); 4]));
        }
        ModelOp::RemoveNodes(raw) if n > 0 => {
            let ids: Vec<u32> = raw.iter().map(|r| r % n).collect();
            ok("remove_nodes", e.remove_nodes(&ids))?;
            let gone = |i: usize| ids.contains(&(i as u32));
            let new_id = |old: u32| {
                old - ids
                    .iter()
                    .filter(|&&r| r < old)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len() as u32
            };
            m.positions = kept(&m.positions, &gone);
            m.velocities = kept(&m.velocities, &gone);
            m.anchors = kept(&m.anchors, &gone);
            m.edges = m
                .edges
                .iter()
                .filter(|e| !gone(e.0 as usize) && !gone(e.1 as usize))
                .map(|&(u, v, w, t)| (new_id(u), new_id(v), w, t))
                .collect();
        }
        ModelOp::AddEdges(raw) if n > 0 => {
            let edges: Vec<Edge> = raw
                .iter()
                .map(|&(u, v, w)| Edge {
                    u: u % n,
                    v: v % n,
                    w,
                })
                .collect();
            ok("add_edges", e.add_edges(&edges))?;
            m.edges
                .extend(edges.iter().map(|x| (x.u, x.v, x.w.to_bits(), none)));
        }
        ModelOp::RemoveEdges(raw) if n > 0 => {
            let pairs: Vec<(u32, u32)> = raw
                .iter()
                .map(|&(existing, reversed, a, b)| {
                    match m.edges.get(a as usize % m.edges.len().max(1)) {
                        Some(&(u, v, _, _)) if existing && reversed => (v, u),
                        Some(&(u, v, _, _)) if existing => (u, v),
                        _ => (a % n, b % n),
                    }
                })
                .collect();
            let before = m.edges.len();
            m.edges
                .retain(|x| !pairs.iter().any(|&(a, b)| StateModel::joins(x, a, b)));
            let removed = ok("remove_edges", e.remove_edges(&pairs))?;
            prop_assert_eq!(removed, before - m.edges.len());
        }
        ModelOp::PositionConstraint(node, target, k) if n > 0 => {
            let node = node % n;
            ok(
                "set_position_constraint",
                e.set_position_constraint(node, *target, *k),
            )?;
            m.anchors[node as usize] = [target[0], target[1], target[2], *k].map(f32::to_bits);
        }
        ModelOp::DistanceConstraint(existing, a, b, d) if n > 0 => {
            let (u, v) = match m.edges.get(*a as usize % m.edges.len().max(1)) {
                Some(&(u, v, _, _)) if *existing => (v, u),
                _ => (a % n, b % n),
            };
            let joined = m.edges.iter().any(|x| StateModel::joins(x, u, v));
            let r = e.set_distance_constraint(u, v, *d);
            prop_assert_eq!(
                r.is_ok(),
                joined,
                "set_distance_constraint({}, {}): {:?}",
                u,
                v,
                r
            );
            for x in m.edges.iter_mut().filter(|x| StateModel::joins(x, u, v)) {
                x.3 = d.to_bits();
            }
        }
        ModelOp::ClearConstraints => {
            ok("clear_constraints", e.clear_constraints())?;
            m.anchors.iter_mut().for_each(|a| *a = [0f32.to_bits(); 4]);
            m.edges.iter_mut().for_each(|x| x.3 = none);
        }
        ModelOp::Reserve(nodes, edges) => ok("reserve", e.reserve(*nodes, *edges))?,
        ModelOp::ShrinkToFit => ok("shrink_to_fit", e.shrink_to_fit())?,
        ModelOp::Step(k) => {
            ok("step", e.step(*k))?;
            m.positions = ok("positions", e.positions())?
                .into_iter()
                .map(bits3)
                .collect();
            m.velocities = ok("velocities", e.velocities())?
                .into_iter()
                .map(bits3)
                .collect();
            return Ok(true);
        }
        // Ops on an empty graph that need a node.
        _ => {}
    }
    Ok(false)
}

fn run_state_machine(graph: &InitialGraph, ops: &[ModelOp], faults: FaultSet) -> TestResult {
    let spec = GraphSpec {
        positions: Some(
            (0..graph.num_nodes)
                .map(|i| [i as f32, 1.0, -2.0])
                .collect(),
        ),
        ..graph.spec()
    };
    let mut e = Engine::with_config(
        CpuBackend::new(),
        &spec,
        SimParams::default(),
        EngineConfig::default(),
        faults,
    )
    .expect("engine from a valid graph");
    let mut m = StateModel {
        positions: spec
            .positions
            .iter()
            .flatten()
            .copied()
            .map(bits3)
            .collect(),
        velocities: vec![[0f32.to_bits(); 3]; graph.num_nodes as usize],
        anchors: vec![[0f32.to_bits(); 4]; graph.num_nodes as usize],
        edges: graph
            .edges
            .iter()
            .map(|x| (x.u, x.v, x.w.to_bits(), (-1f32).to_bits()))
            .collect(),
    };
    m.check(&mut e, false, "after construction")?;
    for (i, op) in ops.iter().enumerate() {
        let moved = apply_both(&mut e, &mut m, op)?;
        m.check(&mut e, moved, &format!("after op {i} {op:?}"))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every operation does what its documentation says: counts, the edge multiset as the device
    /// holds it, constraints, and (but for steps) every position and velocity bit for bit.
    #[test]
    fn every_operation_matches_the_reference_model(
        graph in graph_strategy(),
        ops in vec(model_op_strategy(), 1..25),
    ) {
        run_state_machine(&graph, &ops, FaultSet::NONE)?;
    }
}

/// The state machine sees both planted faults that break an op's meaning and no invariant.
#[test]
fn the_state_machine_sees_meaning_breaking_faults() {
    use forcefield::Fault;
    let duplicate = InitialGraph {
        num_nodes: 2,
        edges: vec![Edge { u: 0, v: 1, w: 1.0 }],
    };
    let ops = [ModelOp::AddEdges(vec![(1, 0, 2.0)])];
    run_state_machine(&duplicate, &ops, FaultSet::NONE).unwrap();
    let e = run_state_machine(
        &duplicate,
        &ops,
        FaultSet::of(&[Fault::AddEdgesDeduplicated]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("after op 0"), "{e}");

    let ops = [ModelOp::Step(2), ModelOp::RemoveNodes(vec![0])];
    run_state_machine(&duplicate, &ops, FaultSet::NONE).unwrap();
    let e = run_state_machine(
        &duplicate,
        &ops,
        FaultSet::of(&[Fault::RemoveNodesVelocitiesStale]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("velocities"), "{e}");
}
