/*!
Case generation: random graphs of many families, extreme-but-valid parameters, and operation lists
weighted toward resize sequences — the raw material of a campaign.

Both generators here, [`generate_case`] (driven by a seeded `rand` generator, for campaigns) and
[`case_strategy_with`] (a `proptest` strategy, for shrinking), are built from the same blocks:

* a [`Family`] and a node count give the initial graph ([`generate_graph`]);
* a list of [`ParamTweak`]s, applied to the defaults, gives the parameters;
* a list of [`OpPlan`]s gives the operations. A plan is an op *relative to the state it meets*
  ("add more nodes than the capacity has room for", "remove 3 random nodes"); [`realize`] turns the
  plans into concrete [`Op`]s while tracking the live counts and the capacity the engine will have, so
  that every generated case is valid whatever the plans are. That is what lets `proptest` delete and
  shrink plans freely.

Two more choices are drawn after all of those, so that they never change the rest of a case:

* an engine grid-cell cap ([`GenConfig::small_grid_cap_probability`], for initial graphs of at most
  `max_small_nodes` nodes): a small cap (8..=4096 cells, log-uniform) makes the grid stage coarsen
  its cells, where grid-size bugs live;
* injected environment faults ([`GenConfig::inject_rate`], 0 by default): an `inject` op (an
  allocation, copy or launch failure or a lost context, `nth` 1..=6) before a plan, four times as
  likely before a resize (growth past capacity, `reserve`, `shrink_to_fit`, a resize cycle).

Every case produced here passes [`Case::validate`].

# Files

`config.rs` ([`GenConfig`], a leaf), `graphs.rs`, `params.rs`, `plans.rs`, `strategies.rs` (the
blocks, and the `proptest` strategies over them), `assemble.rs` ([`build_case`], shared by both
generators). A file imports its siblings, never this `mod.rs`, which draws a case from a seed and
re-exports the rest.
*/

use forcefield::EnvFault;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::case::Case;

mod assemble;
mod config;
mod graphs;
mod params;
mod plans;
mod strategies;

pub(crate) use assemble::build_case;
pub use config::GenConfig;
pub(crate) use config::DEFAULT_INJECT_RATE;
use graphs::bounded_cost;
pub(crate) use graphs::{wide_neighbourhoods, Family};
use params::random_tweaks;
use plans::{
    engine_section, inject_probability, random_constraint_plans, small_grid_cap, with_constraints,
    with_constraints_aligned, with_injects,
};
pub(crate) use plans::{random_env_fault, random_plan, realize, Model, OpPlan};
pub use strategies::case_strategy_with;

/// A random case: a graph of a random family (2..=`max_small_nodes` nodes mostly, occasionally up to
/// `max_large_nodes`), possibly extreme parameters, and up to `max_plans` plans weighted toward resize
/// sequences.
pub(crate) fn generate_case<R: Rng + ?Sized>(rng: &mut R, cfg: &GenConfig) -> Case {
    let family = *Family::ALL.choose(rng).unwrap_or(&Family::Path);
    let small_max = cfg.max_small_nodes.max(2);
    let nodes = if cfg.max_large_nodes > small_max && rng.gen_bool(cfg.large_probability) {
        rng.gen_range(small_max..=cfg.max_large_nodes)
    } else {
        rng.gen_range(2..=small_max)
    };
    let graph_salt = rng.gen();
    let tweaks = random_tweaks(rng, cfg.extreme_params_probability);
    let plans: Vec<OpPlan> = (0..rng.gen_range(1..=cfg.max_plans.max(1)))
        .map(|_| random_plan(rng, cfg))
        .collect();
    // Drawn after everything else, so that a case is otherwise the one the same seed always gave.
    let grid_cap = rng
        .gen_bool(cfg.small_grid_cap_probability.clamp(0.0, 1.0))
        .then(|| small_grid_cap(rng.gen()));
    let injects: Vec<Option<EnvFault>> = plans
        .iter()
        .map(|p| {
            rng.gen_bool(inject_probability(p, cfg))
                .then(|| random_env_fault(rng))
        })
        .collect();
    // From their own generator, so that `rng` draws what it drew before constraint ops existed and
    // a seed's case differs from its old one only by these ops (they change no count, so the rest
    // realizes alike).
    let constraints = random_constraint_plans(graph_salt, plans.len(), cfg);
    let plans = with_constraints(&plans, &constraints);
    let injects = with_constraints_aligned(&injects, &constraints);
    let engine = engine_section(grid_cap, nodes, cfg);
    let wide = wide_neighbourhoods(&tweaks, &plans, engine.is_some());
    let (bounded, nodes) = bounded_cost(cfg, nodes, wide);
    let mut case = build_case(
        family,
        nodes,
        graph_salt,
        &tweaks,
        &with_injects(&plans, &injects),
        &bounded,
    );
    case.engine = engine;
    case
}

/// [`generate_case`] from a fresh `ChaCha8Rng` seeded with `seed`, recorded in the case.
pub fn generate_case_from_seed(seed: u64, cfg: &GenConfig) -> Case {
    let mut case = generate_case(&mut ChaCha8Rng::seed_from_u64(seed), cfg);
    case.seed = seed;
    case
}

#[cfg(test)]
mod tests;
