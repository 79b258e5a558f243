use forcefield::SimParams;

use super::graphs::{generate_graph, EXTREME_WEIGHTS, MAX_STACK, MAX_WIDE_NEIGHBOURHOOD_NODES};
use super::params::params_with;
use super::*;
use crate::case::{Case, Op};
use proptest::prop_assert;
use proptest::test_runner::{Config, TestRunner};

#[test]
fn every_family_gives_a_valid_graph() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for &family in Family::ALL {
        for n in [0, 1, 2, 5, 64, 300] {
            let g = generate_graph(&mut rng, family, n);
            let case = Case::new(g.clone());
            case.validate()
                .unwrap_or_else(|e| panic!("{family:?} with {n}: {e}"));
            match family {
                Family::Empty => assert_eq!(g.num_nodes, 0),
                Family::SingleNode => assert_eq!(g.num_nodes, 1),
                Family::Complete => assert_eq!(g.num_nodes, n.min(24) as u64),
                _ => assert_eq!(g.num_nodes, n as u64, "{family:?}"),
            }
        }
    }
}

#[test]
fn families_have_their_shape() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let g = generate_graph(&mut rng, Family::Complete, 6);
    assert_eq!(g.edges.len(), 15);
    let g = generate_graph(&mut rng, Family::Lattice, 27);
    // A 3x3x3 grid: 3 axes x 3 x 3 x 2 edges.
    assert_eq!(g.edges.len(), 54);
    let g = generate_graph(&mut rng, Family::SelfLoops, 10);
    assert!(g.edges.iter().any(|e| e.u == e.v));
    let g = generate_graph(&mut rng, Family::MultiEdges, 10);
    let mut pairs: Vec<_> = g.edges.iter().map(|e| (e.u, e.v)).collect();
    let all = pairs.len();
    pairs.sort_unstable();
    pairs.dedup();
    assert!(pairs.len() < all, "no repeated edge");
    let g = generate_graph(&mut rng, Family::CoincidentPositions, 10);
    // At most 3 spots, each node on one or within 1e-3 of it.
    let mut spots: Vec<[f32; 3]> = Vec::new();
    for q in g.positions.unwrap() {
        let near = |s: &[f32; 3]| (0..3).all(|k| (s[k] - q[k]).abs() <= 1e-3);
        if !spots.iter().any(near) {
            spots.push(q);
        }
    }
    assert!(spots.len() <= 3, "{spots:?}");
    let g = generate_graph(&mut rng, Family::ExtremeWeights, 40);
    assert!(g.edges.iter().all(|e| EXTREME_WEIGHTS.contains(&e.w)));
}

/// The largest number of positions within 1e-3 of one another's first.
fn largest_stack(positions: &[[f32; 3]]) -> usize {
    let mut spots: Vec<([f32; 3], usize)> = Vec::new();
    for q in positions {
        let near = |s: &[f32; 3]| (0..3).all(|k| (s[k] - q[k]).abs() <= 1e-3);
        match spots.iter_mut().find(|(s, _)| near(s)) {
            Some((_, n)) => *n += 1,
            None => spots.push((*q, 1)),
        }
    }
    spots.iter().map(|(_, n)| *n).max().unwrap_or(0)
}

#[test]
fn no_generated_stack_is_taller_than_max_stack() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for n in [1, 64, 65, 500, 3000] {
        let g = generate_graph(&mut rng, Family::CoincidentPositions, n);
        let tallest = largest_stack(&g.positions.unwrap());
        assert!(
            tallest <= MAX_STACK as usize,
            "{n} nodes: a stack of {tallest}"
        );
        // Still stacks: the family is about coincident nodes.
        assert!(
            tallest >= (n as usize).min(MAX_STACK as usize) / 4,
            "{n}: {tallest}"
        );
    }
    let cfg = GenConfig::default();
    let mut stacked = 0;
    for seed in 0..400 {
        for op in generate_case_from_seed(seed, &cfg).ops {
            if let Op::AddNodes {
                positions: Some(p), ..
            } = op
            {
                let tallest = largest_stack(&p);
                assert!(tallest <= MAX_STACK as usize, "seed {seed}: {tallest}");
                stacked += usize::from(tallest > 1);
            }
        }
    }
    assert!(stacked > 0, "no generated add_nodes stacked its nodes");
}

#[test]
fn every_tweak_keeps_params_valid() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..500 {
        let t = random_tweaks(&mut rng, 1.0);
        params_with(&t)
            .validate()
            .unwrap_or_else(|e| panic!("{t:?}: {e}"));
    }
}

#[test]
fn generated_cases_are_valid_and_deterministic() {
    let cfg = GenConfig::default();
    let mut grew = 0;
    for seed in 0..300 {
        let case = generate_case_from_seed(seed, &cfg);
        let text = case.to_json().unwrap();
        let back = Case::from_json(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(back, case);
        assert_eq!(generate_case_from_seed(seed, &cfg), case);
        grew += case
            .ops
            .iter()
            .filter(|o| matches!(o, Op::AddNodes { .. }))
            .count();
    }
    assert!(grew > 300, "resize sequences are rare: {grew} add_nodes");
}

#[test]
fn growth_past_capacity_really_exceeds_the_capacity() {
    // 5 nodes at capacity 5: the first growth past capacity adds 1 node.
    let g = generate_graph(&mut ChaCha8Rng::seed_from_u64(0), Family::Path, 5);
    let mut m = Model::new(&g, &GenConfig::default());
    let grow = OpPlan::GrowPastCapacity {
        extra: 0,
        positioned: false,
        salt: 0,
    };
    assert_eq!(
        realize(&grow, &mut m),
        vec![Op::AddNodes {
            count: 1,
            positions: None
        }]
    );
    // Capacity is now max(6, ceil(7.5)) = 8 with 6 live: 3 more are needed to pass it.
    assert_eq!(
        realize(&grow, &mut m),
        vec![Op::AddNodes {
            count: 3,
            positions: None
        }]
    );
}

#[test]
fn the_model_tracks_the_engines_counts_and_capacity() {
    use crate::worker::execute::apply_op;
    use forcefield::{CpuBackend, Engine};
    let cfg = GenConfig::small();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for round in 0..30 {
        let family = Family::ALL[round % Family::ALL.len()];
        let nodes = rng.gen_range(0..12);
        let graph = generate_graph(&mut rng, family, nodes);
        let mut model = Model::new(&graph, &cfg);
        let spec = graph.to_spec().unwrap();
        let mut engine =
            Engine::new(CpuBackend::with_threads(1), &spec, SimParams::default()).unwrap();
        for _ in 0..12 {
            let plan = random_plan(&mut rng, &cfg);
            for op in realize(&plan, &mut model) {
                apply_op(&mut engine, &op).unwrap();
            }
            let at = format!("{family:?} after {plan:?}");
            assert_eq!(engine.num_nodes(), model.nodes, "{at}");
            assert_eq!(engine.num_edges() as usize, model.edges.len(), "{at}");
            assert_eq!(engine.allocated_nodes() as u64, model.node_cap, "{at}");
            assert_eq!(engine.allocated_edges() as u64, model.edge_cap, "{at}");
        }
    }
}

#[test]
fn strategy_cases_are_valid() {
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&case_strategy_with(GenConfig::small()), |case| {
            let back = Case::from_json(&case.to_json().unwrap());
            prop_assert!(back.is_ok(), "{:?}", back.err());
            Ok(())
        })
        .unwrap();
}

fn without_injects(mut case: Case) -> Case {
    case.ops.retain(|op| !matches!(op, Op::Inject { .. }));
    case
}

#[test]
fn injected_faults_are_drawn_after_the_rest_of_the_case() {
    let quiet = GenConfig::default();
    let noisy = GenConfig {
        inject_rate: 0.5,
        ..GenConfig::default()
    };
    let (mut injected, mut before_resize, mut plans_seen) = (0, 0, 0);
    for seed in 0..200 {
        let a = generate_case_from_seed(seed, &quiet);
        let b = generate_case_from_seed(seed, &noisy);
        assert!(!a.ops.iter().any(|op| matches!(op, Op::Inject { .. })));
        assert_eq!(without_injects(b.clone()), a, "seed {seed}");
        plans_seen += a.ops.len();
        for (i, op) in b.ops.iter().enumerate() {
            if let Op::Inject { fault } = op {
                injected += 1;
                let nth = match *fault {
                    EnvFault::FailAlloc { nth }
                    | EnvFault::FailCopy { nth }
                    | EnvFault::FailLaunch { nth }
                    | EnvFault::LoseContext { nth } => nth,
                };
                assert!((1..=6).contains(&nth));
                if matches!(
                    b.ops.get(i + 1),
                    Some(Op::Reserve { .. } | Op::ShrinkToFit | Op::AddNodes { .. })
                ) {
                    before_resize += 1;
                }
            }
        }
    }
    assert!(
        injected > plans_seen / 4,
        "{injected} faults in {plans_seen} ops"
    );
    assert!(
        before_resize * 2 > injected,
        "{before_resize} of {injected} faults before a resize"
    );
    // The same holds for the proptest strategy campaigns draw from.
    for seed in 0..50 {
        let a = crate::case::shrink::generated_case(seed, &quiet).unwrap();
        let b = crate::case::shrink::generated_case(seed, &noisy).unwrap();
        assert_eq!(without_injects(b), a, "strategy seed {seed}");
    }
}

#[test]
fn small_grid_caps_go_to_small_graphs() {
    let cfg = GenConfig {
        small_grid_cap_probability: 0.5,
        large_probability: 0.3,
        ..GenConfig::default()
    };
    let mut capped = 0;
    for seed in 0..300 {
        let case = generate_case_from_seed(seed, &cfg);
        if let Some(cells) = case.engine.and_then(|e| e.max_grid_cells) {
            capped += 1;
            assert!((8..=4096).contains(&cells), "{cells}");
            assert!(case.graph.num_nodes <= cfg.max_small_nodes as u64);
        }
    }
    assert!(capped > 60, "{capped} capped cases of 300");
    assert_eq!(small_grid_cap(0.0), 8);
    assert_eq!(small_grid_cap(1.0), 4096);
}

#[test]
fn a_case_whose_cells_can_hold_every_node_stays_small() {
    // The seed whose case reached 6,000 nodes in one cell (30 s on the CPU) before the bound.
    let case = generate_case_from_seed(
        crate::hunt::campaign::case_seed(21, 33209),
        &GenConfig {
            inject_rate: DEFAULT_INJECT_RATE,
            ..GenConfig::default()
        },
    );
    let one_cell = case
        .params
        .as_ref()
        .is_some_and(|p| p.grid_cell_size >= 1e5);
    assert!(one_cell, "the case no longer has huge cells");
    let cfg = GenConfig::default();
    let (mut wide, mut large) = (0, 0);
    for case in (0..3000)
        .map(|seed| generate_case_from_seed(seed, &cfg))
        .chain([case])
    {
        let most = case.node_counts().into_iter().max().unwrap_or(0);
        let huge = |p: &SimParams| p.grid_cell_size >= 1e5 || p.repulsion_cutoff >= 1e4;
        let is_wide = case.engine.is_some()
            || case.params.as_ref().is_some_and(huge)
            || case
                .ops
                .iter()
                .any(|op| matches!(op, Op::SetParams { params } if huge(params)));
        if is_wide {
            wide += 1;
            assert!(
                most <= u64::from(MAX_WIDE_NEIGHBOURHOOD_NODES),
                "seed {}: {most} nodes with wide neighbourhoods",
                case.seed
            );
        } else if most > u64::from(MAX_WIDE_NEIGHBOURHOOD_NODES) {
            large += 1;
        }
    }
    // Both kinds are still generated: the bound applies only where it must.
    assert!(wide > 0 && large > 0, "{wide} wide, {large} large");
}
