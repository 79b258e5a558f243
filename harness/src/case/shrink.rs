/*!
Proptest shrinking for generated cases.

A campaign's case `k` is drawn from [`case_strategy_with`] with a proptest RNG seeded from
`(campaign seed, k)`, so the value tree behind any finding can be rebuilt from its seed alone. Shrinking
walks that tree with proptest's own simplify/complicate protocol, judging each candidate with the
caller's test (in campaigns: the same signature in an isolated worker). It works on the generator's
structure — fewer plans, smaller counts, simpler families — which ddmin over the flat case cannot see;
[`crate::case::minimize`] then finishes on the result.
*/

use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::case::generate::{case_strategy_with, GenConfig};
use crate::case::Case;

fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&forcefield::hash::mix3(seed, i as u64, 0x7072).to_le_bytes());
    }
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

fn tree(seed: u64, cfg: &GenConfig) -> Option<impl ValueTree<Value = Case>> {
    case_strategy_with(cfg.clone())
        .new_tree(&mut runner(seed))
        .ok()
}

/// The case the strategy draws for `seed` (with `cfg`'s faults and backend), stamped with the seed.
/// `None` only if the strategy rejects every draw, which it does not do today.
pub fn generated_case(seed: u64, cfg: &GenConfig) -> Option<Case> {
    let mut case = tree(seed, cfg)?.current();
    case.seed = seed;
    Some(case)
}

/// Shrinks the case drawn for `seed` while `test` (still fails the same way) holds, for at most
/// `max_runs` candidates or `max_time`. Returns the smallest failing case and the candidates tried.
pub fn shrink_generated(
    seed: u64,
    cfg: &GenConfig,
    max_runs: usize,
    max_time: Duration,
    test: &mut dyn FnMut(&Case) -> bool,
) -> Option<(Case, usize)> {
    let mut tree = tree(seed, cfg)?;
    let stamp = |mut c: Case| {
        c.seed = seed;
        c
    };
    let mut best = stamp(tree.current());
    let start = Instant::now();
    let mut runs = 0;
    if !tree.simplify() {
        return Some((best, runs));
    }
    while runs < max_runs && start.elapsed() < max_time {
        let candidate = stamp(tree.current());
        runs += 1;
        let fails = candidate.validate().is_ok() && test(&candidate);
        let moved = if fails {
            best = candidate;
            tree.simplify()
        } else {
            tree.complicate()
        };
        if !moved {
            break;
        }
    }
    Some((best, runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_case() {
        let cfg = GenConfig::default();
        assert_eq!(generated_case(7, &cfg), generated_case(7, &cfg));
        assert_ne!(generated_case(7, &cfg), generated_case(8, &cfg));
    }

    #[test]
    fn shrinking_keeps_the_failure_and_makes_the_case_smaller() {
        let cfg = GenConfig::default();
        // A "bug" any case with at least 3 nodes at the start shows.
        let seed = (0..1000)
            .find(|&s| {
                generated_case(s, &cfg).is_some_and(|c| c.graph.num_nodes >= 10 && c.ops.len() >= 4)
            })
            .unwrap();
        let original = generated_case(seed, &cfg).unwrap();
        let mut test = |c: &Case| c.graph.num_nodes >= 3;
        let (small, runs) =
            shrink_generated(seed, &cfg, 10_000, Duration::from_secs(30), &mut test).unwrap();
        assert!(runs > 0);
        assert!(test(&small));
        assert_eq!(
            small.graph.num_nodes, 3,
            "shrinks the node count to the boundary"
        );
        assert!(small.ops.len() <= original.ops.len());
    }
}
