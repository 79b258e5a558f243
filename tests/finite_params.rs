/*!
Property test of parameter validation: no accepted parameter set turns finite positions into
non-finite ones.

Parameters are drawn over the whole accepted range — every field from zero (or its smallest
accepted value) up to its bound, on a logarithmic scale with the bounds themselves drawn often,
dependent bounds (`repel_k / repulsion_softening_epsilon`, `spring_k * max(rest_length, 1)`,
`max_force * dt`, ...) honoured by drawing the dependent field below the bound the others leave —
and each set is checked to validate before it is used. Graphs are small, with coincident nodes
(drawn from a handful of points), self-loops and weights up to `MAX_FINITE_WEIGHT`, placed inside
the viewport; a few steps on the CPU backend must leave every coordinate finite.
*/

use forcefield::params::{
    features, MAX_FINITE_WEIGHT, MAX_GRAVITY_K, MAX_LENGTH, MAX_REPEL_K,
    MAX_REPULSION_PER_SOFTENING, MAX_SPRING_STIFFNESS, MAX_STEP_CHANGE, MAX_VIEWPORT,
    MIN_SOFTENING,
};
use forcefield::{CpuBackend, Edge, Engine, GraphSpec, SimParams};
use proptest::collection::vec;
use proptest::prelude::*;

/// Fields drawn from a position in their range.
const DRAWN_FIELDS: usize = 17;

/// A position in a range: its bottom, its top, or anywhere (logarithmically) between.
fn position() -> impl Strategy<Value = f64> {
    prop_oneof![1 => Just(0.0), 2 => Just(1.0), 5 => 0.0..=1.0f64]
}

/// The f32 at `t` of the way from `min` to `max` on a log scale (`min` > 0), never above `max`
/// once rounded to f32 (validation compares in f64).
fn scaled(min: f64, max: f64, t: f64) -> f32 {
    let (lo, hi) = (min.log10(), max.log10());
    let v = 10f64.powf(lo + (hi - lo) * t).clamp(min, max);
    let mut x = v as f32;
    while x as f64 > max {
        x = f32::from_bits(x.to_bits() - 1);
    }
    while (x as f64) < min {
        x = f32::from_bits(x.to_bits() + 1);
    }
    x
}

/// [`scaled`] from the smallest positive f32.
fn up_to(max: f64, t: f64) -> f32 {
    scaled(f32::from_bits(1) as f64, max, t)
}

/// [`up_to`], or exactly zero at the bottom of the range.
fn zero_up_to(max: f64, t: f64) -> f32 {
    if t == 0.0 {
        0.0
    } else {
        up_to(max, t)
    }
}

fn params_from(t: &[f64], flags: u32, counters: (u32, u32, u32), seed: u64) -> SimParams {
    let big = f32::MAX as f64;
    let repulsion = flags & features::REPULSION != 0;
    let dt = up_to(big, t[0]);
    let softening = if repulsion {
        scaled(MIN_SOFTENING as f64, big, t[1])
    } else {
        zero_up_to(big, t[1])
    };
    let repel_cap = if repulsion {
        (MAX_REPEL_K as f64).min(MAX_REPULSION_PER_SOFTENING * softening as f64)
    } else {
        MAX_REPEL_K as f64
    };
    let rest_length = zero_up_to(MAX_LENGTH as f64, t[3]);
    let spring_cap = MAX_SPRING_STIFFNESS / (rest_length as f64).max(1.0);
    SimParams {
        dt,
        damping: t[4] as f32,
        cooling_rate: t[5] as f32,
        boundary_damping: t[6] as f32,
        repulsion_softening_epsilon: softening,
        repel_k: zero_up_to(repel_cap, t[2]),
        rest_length,
        spring_k: zero_up_to(spring_cap, t[7]),
        viewport_bounds: up_to(MAX_VIEWPORT as f64, t[8]),
        repulsion_cutoff: up_to(MAX_LENGTH as f64, t[9]),
        separation_radius: zero_up_to(MAX_LENGTH as f64, t[10]),
        center_gravity_k: zero_up_to(MAX_GRAVITY_K as f64, t[11]),
        max_force: up_to(MAX_STEP_CHANGE / dt as f64, t[12]),
        max_velocity: up_to(MAX_STEP_CHANGE / (dt as f64).max(1.0), t[13]),
        temperature: zero_up_to(MAX_STEP_CHANGE, t[14]),
        grid_cell_size: zero_up_to(big, t[15]),
        sssp_alpha: zero_up_to(big, t[16]),
        constraint_max_force_per_node: zero_up_to(big, t[16]),
        feature_flags: flags,
        warmup_iterations: counters.0,
        iteration: counters.1,
        constraint_ramp_frames: counters.2,
        seed,
    }
}

fn accepted_params() -> impl Strategy<Value = SimParams> {
    let counters = (
        prop_oneof![Just(0u32), 0..200u32, Just(u32::MAX)],
        prop_oneof![Just(0u32), 0..200u32, Just(u32::MAX - 2)],
        prop_oneof![Just(0u32), 0..60u32],
    );
    (
        vec(position(), DRAWN_FIELDS),
        0..=features::ALL,
        counters,
        any::<u64>(),
    )
        .prop_map(|(t, flags, counters, seed)| params_from(&t, flags, counters, seed))
}

/// A small graph inside a viewport of half-width `bounds`: nodes drawn from a few points (so
/// coincident nodes are common), edges with self-loops and weights from 0 to the bound.
fn graph_inside(bounds: f32) -> impl Strategy<Value = GraphSpec> {
    (2u32..8).prop_flat_map(move |n| {
        let point = (-1.0f32..=1.0, -1.0f32..=1.0, -1.0f32..=1.0);
        let weight = prop_oneof![
            Just(0.0f32),
            Just(1.0f32),
            Just(MAX_FINITE_WEIGHT),
            0.0f32..=MAX_FINITE_WEIGHT
        ];
        (
            vec(point, 1..4),
            vec(0usize..4, n as usize),
            vec((0..n, 0..n, weight), 0..12),
        )
            .prop_map(move |(points, picks, edges)| {
                let positions = picks
                    .iter()
                    .map(|&k| {
                        let (x, y, z) = points[k % points.len()];
                        [x, y, z].map(|c| (c * bounds).clamp(-bounds, bounds))
                    })
                    .collect();
                GraphSpec {
                    num_nodes: n,
                    edges: edges
                        .into_iter()
                        .map(|(u, v, w)| Edge { u, v, w })
                        .collect(),
                    positions: Some(positions),
                }
            })
    })
}

fn params_and_graph() -> impl Strategy<Value = (SimParams, GraphSpec)> {
    accepted_params().prop_flat_map(|p| {
        let bounds = p.viewport_bounds;
        (Just(p), graph_inside(bounds))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn accepted_params_keep_positions_finite((params, graph) in params_and_graph()) {
        prop_assert!(params.validate().is_ok(), "{:?}: {params:?}", params.validate());
        let mut engine = Engine::new(CpuBackend::with_threads(1), &graph, params.clone())
            .map_err(|e| TestCaseError::fail(format!("engine: {e}")))?;
        for step in 1..=4 {
            engine.step(1).map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
            let positions = engine
                .positions()
                .map_err(|e| TestCaseError::fail(format!("positions: {e}")))?;
            let broken = positions.iter().position(|p| p.iter().any(|c| !c.is_finite()));
            prop_assert!(
                broken.is_none(),
                "node {broken:?} not finite after step {step}: {positions:?}"
            );
        }
    }
}

/// The report's parameters: accepted before, NaN on two coincident nodes two steps later. Now a
/// validation error, so the engine never starts.
#[test]
fn the_reported_repel_k_is_refused() {
    let params: SimParams = serde_json::from_str(r#"{"repel_k": 3.4e38}"#).unwrap();
    let graph = GraphSpec {
        num_nodes: 2,
        edges: Vec::new(),
        positions: Some(vec![[0.0; 3]; 2]),
    };
    let Err(err) = Engine::new(CpuBackend::with_threads(1), &graph, params) else {
        panic!("repel_k 3.4e38 was accepted");
    };
    assert!(err.to_string().contains("repel_k"), "{err}");
}
