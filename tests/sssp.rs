/*!
`Engine::run_sssp` against a Dijkstra written here, over `engine.edges()` read as an undirected graph.

Both compute, for every node, the minimum over paths of the path's weights summed left to right in
`f32`: f32 addition is monotone and weights are non-negative, so the frontier relaxation's fixed point
and Dijkstra's settle order give the same bits. The comparison is therefore bitwise, for integer and for
fractional weights alike. Unreachable nodes must be `INFINITY`.
*/

mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use forcefield::{CpuBackend, Edge, Engine, GraphSpec, SimParams};
use proptest::collection::vec;
use proptest::prelude::*;
use rand::Rng;

/// Dijkstra over `edges` as an undirected graph, summing in `f32` from the source outward.
fn dijkstra(n: u32, edges: &[Edge], source: u32) -> Vec<f32> {
    let n = n as usize;
    let mut adj: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n];
    for e in edges {
        adj[e.u as usize].push((e.v as usize, e.w));
        adj[e.v as usize].push((e.u as usize, e.w));
    }
    let mut dist = vec![f32::INFINITY; n];
    dist[source as usize] = 0.0;
    // Non-negative f32s order like their bit patterns, which gives the heap a total order.
    let mut heap = BinaryHeap::new();
    heap.push(Reverse((0f32.to_bits(), source as usize)));
    while let Some(Reverse((bits, u))) = heap.pop() {
        if bits > dist[u].to_bits() {
            continue;
        }
        for &(v, w) in &adj[u] {
            let candidate = dist[u] + w;
            if candidate < dist[v] {
                dist[v] = candidate;
                heap.push(Reverse((candidate.to_bits(), v)));
            }
        }
    }
    dist
}

fn engine(num_nodes: u32, edges: Vec<Edge>) -> Engine<CpuBackend> {
    let g = GraphSpec {
        num_nodes,
        edges,
        positions: None,
    };
    Engine::new(CpuBackend::new(), &g, SimParams::default()).expect("engine from a valid graph")
}

/// Runs SSSP from `source` and compares with Dijkstra bit for bit, naming the first difference.
fn assert_matches_dijkstra(e: &mut Engine<CpuBackend>, source: u32) -> Result<(), String> {
    let got = e
        .run_sssp(source)
        .map_err(|err| format!("run_sssp: {err}"))?;
    let want = dijkstra(e.num_nodes(), e.edges(), source);
    if got.len() != want.len() {
        return Err(format!("{} distances for {} nodes", got.len(), want.len()));
    }
    match (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        None => Ok(()),
        Some(i) => Err(format!(
            "source {source}: node {i} engine {} ({:#x}) dijkstra {} ({:#x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        )),
    }
}

fn integer_weight() -> BoxedStrategy<f32> {
    (0u32..=5).prop_map(|w| w as f32).boxed()
}

/// A graph of 1 to 79 nodes with up to 3 edges per node, and a source.
fn graph(weights: BoxedStrategy<f32>) -> impl Strategy<Value = (u32, Vec<Edge>, u32)> {
    (1u32..80).prop_flat_map(move |n| {
        let edges = vec((0..n, 0..n, weights.clone()), 0..(3 * n as usize))
            .prop_map(|es| es.into_iter().map(|(u, v, w)| Edge { u, v, w }).collect());
        (Just(n), edges, 0..n)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn integer_weights_match_dijkstra((n, edges, source) in graph(integer_weight())) {
        let mut e = engine(n, edges);
        assert_matches_dijkstra(&mut e, source).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn float_weights_match_dijkstra((n, edges, source) in graph((0.0f32..=5.0).boxed())) {
        let mut e = engine(n, edges);
        assert_matches_dijkstra(&mut e, source).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn single_node_is_at_distance_zero() {
    let mut e = engine(1, vec![]);
    assert_eq!(e.run_sssp(0).unwrap(), vec![0.0]);
    let mut looped = engine(1, vec![Edge { u: 0, v: 0, w: 3.0 }]);
    assert_eq!(looped.run_sssp(0).unwrap(), vec![0.0]);
}

#[test]
fn source_out_of_range_is_an_error() {
    let mut e = engine(3, vec![Edge::new(0, 1)]);
    assert!(e.run_sssp(3).is_err());
    let mut empty = engine(0, vec![]);
    assert!(empty.run_sssp(0).is_err());
}

#[test]
fn disconnected_components_are_unreachable() {
    // Two triangles and an isolated node; weights chosen so that the direct edge 0-2 loses.
    let edges = vec![
        Edge { u: 0, v: 1, w: 1.5 },
        Edge { u: 1, v: 2, w: 2.0 },
        Edge { u: 0, v: 2, w: 4.0 },
        Edge { u: 3, v: 4, w: 1.0 },
        Edge { u: 4, v: 5, w: 1.0 },
        Edge { u: 5, v: 3, w: 0.0 },
    ];
    let mut e = engine(7, edges);
    let d = e.run_sssp(0).unwrap();
    assert_eq!(&d[..3], &[0.0, 1.5, 3.5]);
    assert!(d[3..].iter().all(|x| *x == f32::INFINITY), "{d:?}");
    let d = e.run_sssp(4).unwrap();
    assert_eq!(&d[3..6], &[1.0, 0.0, 1.0]);
    assert!(d[..3].iter().all(|x| *x == f32::INFINITY) && d[6] == f32::INFINITY);
    let d = e.run_sssp(6).unwrap();
    assert_eq!(d.iter().filter(|x| x.is_finite()).count(), 1);
    for source in 0..7 {
        assert_matches_dijkstra(&mut e, source).unwrap();
    }
}

#[test]
fn zero_weights_self_loops_and_parallel_edges() {
    let edges = vec![
        Edge { u: 0, v: 1, w: 5.0 },
        Edge {
            u: 0,
            v: 1,
            w: 0.25,
        },
        Edge { u: 1, v: 1, w: 0.0 },
        Edge { u: 1, v: 2, w: 0.0 },
        Edge { u: 2, v: 0, w: 5.0 },
    ];
    let mut e = engine(3, edges);
    assert_eq!(e.run_sssp(0).unwrap(), vec![0.0, 0.25, 0.25]);
}

/// Larger graphs, fractional weights of mixed magnitude (so sums round), every source of a sample,
/// and the graph mutated between runs (removed nodes renumber the CSR).
#[test]
fn larger_random_graphs_and_mutations_match_dijkstra() {
    let mut r = common::rng(0x5550);
    let n = 2000;
    let edges = common::random_edges(&mut r, n, 5000, |r| {
        if r.gen_bool(0.5) {
            r.gen_range(0.0f32..5.0)
        } else {
            r.gen_range(0.0f32..5.0) * 1e-3
        }
    });
    let mut e = engine(n, edges);
    for source in [0, 1, 999, 1999] {
        assert_matches_dijkstra(&mut e, source).unwrap();
    }
    let removed: Vec<u32> = (0..n).step_by(7).collect();
    e.remove_nodes(&removed).unwrap();
    let m = e.num_nodes();
    let extra = common::random_edges(&mut r, m, 300, |r| r.gen_range(0.0f32..5.0));
    e.add_edges(&extra).unwrap();
    e.add_nodes(50, None).unwrap();
    e.step(2).unwrap();
    for source in [0, m / 2, m + 10] {
        assert_matches_dijkstra(&mut e, source).unwrap();
    }
    let d = e.run_sssp(0).unwrap();
    assert!(
        d[m as usize..].iter().all(|x| *x == f32::INFINITY),
        "new nodes have no edges"
    );
}
