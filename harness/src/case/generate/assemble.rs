//! A case assembled from its blocks (a graph family and size, parameter tweaks, op plans): the
//! one assembly that both the seeded generator and the `proptest` strategies use.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::config::GenConfig;
use super::graphs::{generate_graph, Family};
use super::params::{params_with, ParamTweak};
use super::plans::{realize, Model, OpPlan};
use crate::case::Case;

/// Builds a case from its blocks: the graph of `family` with `nodes` nodes (choices seeded by
/// `graph_salt`), the defaults with `tweaks` (none: no `params` in the file), and `plans` realized
/// in order.
pub fn build_case(
    family: Family,
    nodes: u32,
    graph_salt: u64,
    tweaks: &[ParamTweak],
    plans: &[OpPlan],
    cfg: &GenConfig,
) -> Case {
    let graph = generate_graph(&mut ChaCha8Rng::seed_from_u64(graph_salt), family, nodes);
    let mut model = Model::new(&graph, cfg);
    let ops = plans.iter().flat_map(|p| realize(p, &mut model)).collect();
    let mut case = Case::new(graph);
    case.params = (!tweaks.is_empty()).then(|| params_with(tweaks));
    case.ops = ops;
    case.faults = cfg.faults.clone();
    case.backend = cfg.backend;
    case
}
