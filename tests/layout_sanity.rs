/*!
Layout quality with default parameters after 500 steps: connected nodes sit much closer than random
pairs (mean edge length against the mean distance of 5000 random pairs), and known groups separate
(nodes nearer the centroid of their own group than of any other), on Zachary's karate club and on a
1000-node, 4-block stochastic block model.

A random or collapsed layout has a ratio near 1, so these bounds fail on a broken force pass.
*/

mod common;

use forcefield::{CpuBackend, Edge, Engine, GraphSpec, SimParams};

const STEPS: u32 = 500;
const PAIR_SAMPLES: usize = 5000;

/// Lays out the graph and returns (mean edge length, mean random-pair distance, positions).
fn layout(num_nodes: u32, edges: &[Edge]) -> (f64, f64, Vec<[f32; 3]>) {
    let g = GraphSpec {
        num_nodes,
        edges: edges.to_vec(),
        positions: None,
    };
    let mut e = Engine::new(CpuBackend::new(), &g, SimParams::default()).expect("engine");
    e.step(STEPS).unwrap();
    let pos = e.positions().unwrap();
    let bound = e.params().viewport_bounds;
    assert!(pos
        .iter()
        .flatten()
        .all(|c| c.is_finite() && c.abs() <= bound));
    let connected = common::mean_edge_length(&pos, edges);
    let random = common::mean_random_pair_distance(&pos, PAIR_SAMPLES, 0x9A1D);
    (connected, random, pos)
}

/// The bound: connected pairs closer than half the random-pair distance. Karate is small and
/// dense (mean shortest path 2.41 hops, so a layout that kept graph distances exactly would score
/// about 0.41); the default parameters were chosen so that it holds with margin (about 0.47).
const KARATE_MAX_RATIO: f64 = 0.5;

#[test]
fn karate_edges_are_short_and_factions_separate() {
    let (n, edges) = common::read_corpus_graph("karate.edges");
    assert_eq!(
        (n, edges.len()),
        (34, 78),
        "karate has 34 members and 78 ties"
    );
    let faction = common::read_corpus_labels("karate.labels");
    assert_eq!(faction.len(), 34);
    let (connected, random, pos) = layout(n, &edges);
    let ratio = connected / random;
    let split = common::fraction_nearest_own_centroid(&pos, &faction);
    println!(
        "karate: mean edge {connected:.3}, mean random pair {random:.3}, ratio {ratio:.3}, \
         members nearest their own faction {split:.3}"
    );
    assert!(
        ratio < KARATE_MAX_RATIO,
        "karate ratio {ratio:.3} (edge {connected:.3}, random {random:.3})"
    );
    assert!(split >= 0.85, "factions do not separate: {split:.3}");
}

#[test]
fn stochastic_block_model_edges_are_short_and_blocks_separate() {
    let n = 1000;
    let (edges, block) = common::stochastic_block_model(0x5B3, n, 4, 0.05, 0.001);
    let (connected, random, pos) = layout(n, &edges);
    let ratio = connected / random;
    let split = common::fraction_nearest_own_centroid(&pos, &block);
    println!(
        "sbm: {} edges, mean edge {connected:.3}, mean random pair {random:.3}, ratio {ratio:.3}, \
         nodes nearest their own block {split:.3}",
        edges.len()
    );
    assert!(
        ratio < 0.5,
        "sbm ratio {ratio:.3} (edge {connected:.3}, random {random:.3})"
    );
    assert!(split > 0.9, "blocks do not separate: {split:.3}");
}

#[test]
fn edge_list_parser_reads_comments_and_rejects_garbage() {
    let (n, e) = common::parse_edge_list("# header\n0 1\n\n 2 5 # trailing\n").unwrap();
    assert_eq!(n, 6);
    assert_eq!(e, vec![Edge::new(0, 1), Edge::new(2, 5)]);
    assert!(common::parse_edge_list("0 1 2\n").is_err());
    assert!(common::parse_edge_list("0 x\n").is_err());
    assert_eq!(common::parse_edge_list("# nothing\n").unwrap(), (0, vec![]));
}
