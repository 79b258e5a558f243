//! `proptest` strategies over the same blocks, so that a generated case shrinks plan by plan.

use forcefield::params::features;
use forcefield::EnvFault;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

use super::assemble::build_case;
use super::config::{GenConfig, RESIZE_INJECT_WEIGHT};
use super::graphs::{bounded_cost, wide_neighbourhoods, Family};
use super::params::ParamTweak;
use super::plans::{
    engine_section, env_fault, small_grid_cap, with_constraints, with_constraints_aligned,
    with_injects, OpPlan, WeightKind,
};
use crate::case::Case;

/// A [`ParamTweak`].
pub fn tweak_strategy() -> BoxedStrategy<ParamTweak> {
    use ParamTweak::*;
    // The seeded generator's fixed tweaks, and the iteration near its wrap (which the seeded one
    // draws as a case of its own).
    let mut fixed = ParamTweak::FIXED.to_vec();
    fixed.push(IterationNearWrap);
    let fixed = prop::sample::select(fixed);
    prop_oneof![
        8 => fixed,
        1 => (0..=features::ALL).prop_map(Features),
        1 => ParamTweak::NOISE_TEMPERATURES.prop_map(Noise),
        1 => ParamTweak::SEPARATION_RADII.prop_map(Separation),
        1 => ParamTweak::SSSP_STRETCHES.prop_map(SsspStretch),
        1 => any::<u64>().prop_map(Seed),
    ]
    .boxed()
}

/// An [`OpPlan`], weighted toward resize sequences as [`generate_case`] is.
pub fn plan_strategy(cfg: &GenConfig) -> BoxedStrategy<OpPlan> {
    let steps = 1..=cfg.max_step_count.max(1);
    let weights = prop::sample::select(WeightKind::ALL.to_vec());
    prop_oneof![
        22 => steps.prop_map(|count| OpPlan::Step { count }),
        14 => (0..8u32, any::<bool>(), any::<u64>()).prop_map(|(extra, positioned, salt)| {
            OpPlan::GrowPastCapacity { extra, positioned, salt }
        }),
        10 => (0..8u32, 1..=3u32).prop_map(|(extra, steps)| OpPlan::ResizeCycle { extra, steps }),
        8 => Just(OpPlan::ShrinkToFit),
        8 => (1..=4u32, any::<u64>()).prop_map(|(count, salt)| OpPlan::RemoveNodes { count, salt }),
        6 => (1..=4u32, any::<bool>(), any::<u64>()).prop_map(|(count, positioned, salt)| {
            OpPlan::AddNodes { count, positioned, salt }
        }),
        7 => (1..=8u32, weights, any::<u64>()).prop_map(|(count, weights, salt)| {
            OpPlan::AddEdges { count, weights, salt }
        }),
        5 => (0..8u32, any::<u64>())
            .prop_map(|(extra, salt)| OpPlan::GrowEdgesPastCapacity { extra, salt }),
        5 => (1..=3u32, any::<u64>()).prop_map(|(count, salt)| OpPlan::RemoveEdges { count, salt }),
        4 => (0..64u32, 0..64u32).prop_map(|(extra_nodes, extra_edges)| OpPlan::Reserve {
            extra_nodes,
            extra_edges
        }),
        5 => any::<u64>().prop_map(|salt| OpPlan::Sssp { salt }),
        3 => prop::collection::vec(tweak_strategy(), 0..4)
            .prop_map(|tweaks| OpPlan::SetParams { tweaks }),
        3 => Just(OpPlan::ReadPositions),
    ]
    .boxed()
}

/// An injected fault as [`random_env_fault`] draws them (shrinking toward an allocation failure of
/// the next allocation).
pub fn env_fault_strategy() -> BoxedStrategy<EnvFault> {
    (
        prop_oneof![7 => Just(0u32), 5 => Just(1u32), 5 => Just(2u32), 3 => Just(3u32)],
        1..=6u32,
    )
        .prop_map(|(kind, nth)| env_fault(kind, nth))
        .boxed()
}

/// `Some` of `inner` with probability `p` (clamped to [0, 1]), shrinking toward `None`.
pub(super) fn maybe<T: std::fmt::Debug + Clone + 'static>(
    p: f64,
    inner: BoxedStrategy<T>,
) -> BoxedStrategy<Option<T>> {
    if p <= 0.0 || p.is_nan() {
        Just(None).boxed()
    } else if p >= 1.0 {
        inner.prop_map(Some).boxed()
    } else {
        prop::option::weighted(p, inner).boxed()
    }
}

/// A constraint plan, shrinking toward clearing them all.
pub fn constraint_plan_strategy() -> BoxedStrategy<OpPlan> {
    prop_oneof![
        1 => Just(OpPlan::ClearConstraints),
        4 => any::<u64>().prop_map(|salt| OpPlan::PositionConstraint { salt }),
        5 => any::<u64>().prop_map(|salt| OpPlan::DistanceConstraint { salt }),
    ]
    .boxed()
}

/// Whole cases from the same blocks as [`generate_case`]: shrinking removes plans and tweaks, lowers
/// counts and moves the family toward the simplest, and every shrunk case is still valid.
pub fn case_strategy_with(cfg: GenConfig) -> BoxedStrategy<Case> {
    let small_max = cfg.max_small_nodes.max(2);
    let nodes = if cfg.max_large_nodes > small_max && cfg.large_probability > 0.0 {
        prop_oneof![19 => 0..=small_max, 1 => small_max..=cfg.max_large_nodes].boxed()
    } else {
        (0..=small_max).boxed()
    };
    let tweaks = prop_oneof![
        4 => Just(Vec::new()),
        1 => prop::collection::vec(tweak_strategy(), 1..=4),
    ];
    let max_plans = cfg.max_plans.max(1);
    // Per plan slot: a fault before an ordinary plan, and one before a resize; which applies
    // depends on the plan. Both shrink toward none.
    let inject_slot = (
        maybe(cfg.inject_rate, env_fault_strategy()),
        maybe(cfg.inject_rate * RESIZE_INJECT_WEIGHT, env_fault_strategy()),
    );
    let grid_cap = maybe(
        cfg.small_grid_cap_probability,
        (0.0f64..=1.0).prop_map(small_grid_cap).boxed(),
    );
    let constraint_slot = maybe(cfg.constraint_rate, constraint_plan_strategy());
    // The grid cap, the constraints and the faults come after the other parts, so that they leave
    // those as the same seed always drew them; the faults come last, so that a case with them is
    // the case without them plus `inject` ops.
    (
        prop::sample::select(Family::ALL.to_vec()),
        nodes,
        any::<u64>(),
        tweaks,
        prop::collection::vec(plan_strategy(&cfg), 0..=max_plans),
        grid_cap,
        prop::collection::vec(constraint_slot, max_plans..=max_plans),
        prop::collection::vec(inject_slot, max_plans..=max_plans),
    )
        .prop_map(
            move |(family, nodes, salt, tweaks, plans, grid_cap, constraint_slots, slots)| {
                let injects: Vec<Option<EnvFault>> = plans
                    .iter()
                    .zip(&slots)
                    .map(|(plan, (other, resize))| if plan.is_resize() { *resize } else { *other })
                    .collect();
                let constraints = &constraint_slots[..plans.len().min(constraint_slots.len())];
                let injects = with_constraints_aligned(&injects, constraints);
                let plans = with_constraints(&plans, constraints);
                let plans = with_injects(&plans, &injects);
                let engine = engine_section(grid_cap, nodes, &cfg);
                let wide = wide_neighbourhoods(&tweaks, &plans, engine.is_some());
                let (bounded, nodes) = bounded_cost(&cfg, nodes, wide);
                let mut case = build_case(family, nodes, salt, &tweaks, &plans, &bounded);
                case.engine = engine;
                case
            },
        )
        .boxed()
}
