/*!
Helpers shared by the engine's integration tests: reading the edge lists of `corpora/graphs`, random
graphs from fixed seeds (uniform and stochastic block model), bit-level snapshots of engine state and
layout-quality measures.

Each test binary compiles this module separately and uses only part of it, hence the `dead_code`
allowance below.
*/
#![allow(dead_code)]

use std::path::PathBuf;

use forcefield::params::features;
use forcefield::{Backend, Edge, Engine, GraphSpec, SimParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A deterministic random generator for test inputs.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Path of a file of the bundled graph corpus.
pub fn corpus_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpora")
        .join("graphs")
        .join(file)
}

/// Parses an edge list: one `u v` per line, `#` starts a comment, blank lines are ignored. The node
/// count is one more than the largest id. Edges get weight 1.
pub fn parse_edge_list(text: &str) -> Result<(u32, Vec<Edge>), String> {
    let mut edges = Vec::new();
    let mut max_id: Option<u32> = None;
    for (lineno, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let ids: Vec<&str> = line.split_whitespace().collect();
        if ids.len() != 2 {
            return Err(format!("line {}: expected `u v`, got {raw:?}", lineno + 1));
        }
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|e| format!("line {}: bad node id {s:?}: {e}", lineno + 1))
        };
        let (u, v) = (parse(ids[0])?, parse(ids[1])?);
        max_id = Some(max_id.unwrap_or(0).max(u).max(v));
        edges.push(Edge::new(u, v));
    }
    Ok((max_id.map_or(0, |m| m + 1), edges))
}

/// Reads a graph of the bundled corpus.
pub fn read_corpus_graph(file: &str) -> (u32, Vec<Edge>) {
    let path = corpus_path(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_edge_list(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Reads a label file of the bundled corpus (`id label` per line, `#` comments) into one label per
/// node, indexed by id.
pub fn read_corpus_labels(file: &str) -> Vec<u32> {
    let path = corpus_path(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut labels = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<u32> = line
            .split_whitespace()
            .map(|f| {
                f.parse()
                    .unwrap_or_else(|e| panic!("{}: {line:?}: {e}", path.display()))
            })
            .collect();
        assert_eq!(fields.len(), 2, "{}: {line:?}", path.display());
        let (id, label) = (fields[0] as usize, fields[1]);
        if labels.len() <= id {
            labels.resize(id + 1, u32::MAX);
        }
        labels[id] = label;
    }
    assert!(
        !labels.contains(&u32::MAX),
        "{}: ids missing",
        path.display()
    );
    labels
}

/// Fraction of nodes nearer the centroid of their own group than to that of any other group.
pub fn fraction_nearest_own_centroid(pos: &[[f32; 3]], group: &[u32]) -> f64 {
    assert_eq!(pos.len(), group.len());
    let groups = group.iter().max().map_or(0, |g| *g as usize + 1);
    let mut centroid = vec![[0f64; 3]; groups];
    let mut size = vec![0usize; groups];
    for (p, &g) in pos.iter().zip(group) {
        for k in 0..3 {
            centroid[g as usize][k] += p[k] as f64;
        }
        size[g as usize] += 1;
    }
    for (c, &s) in centroid.iter_mut().zip(&size) {
        c.iter_mut().for_each(|x| *x /= s.max(1) as f64);
    }
    let to = |p: [f32; 3], c: [f64; 3]| {
        (0..3)
            .map(|k| (p[k] as f64 - c[k]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let nearest_own = pos
        .iter()
        .zip(group)
        .filter(|(p, &g)| {
            let own = to(**p, centroid[g as usize]);
            (0..groups)
                .filter(|&o| o != g as usize && size[o] > 0)
                .all(|o| own < to(**p, centroid[o]))
        })
        .count();
    nearest_own as f64 / pos.len() as f64
}

/// `m` edges with uniform random endpoints in `0..n` (self-loops and parallel edges included) and
/// weights from `weight`.
pub fn random_edges(
    rng: &mut ChaCha8Rng,
    n: u32,
    m: usize,
    mut weight: impl FnMut(&mut ChaCha8Rng) -> f32,
) -> Vec<Edge> {
    assert!(n > 0 || m == 0, "edges need nodes");
    (0..m)
        .map(|_| {
            let u = rng.gen_range(0..n);
            let v = rng.gen_range(0..n);
            let w = weight(rng);
            Edge { u, v, w }
        })
        .collect()
}

/// A stochastic block model: `n` nodes in `blocks` equal contiguous blocks, each pair joined with
/// probability `p_in` inside a block and `p_out` across. Returns the edges and each node's block.
pub fn stochastic_block_model(
    seed: u64,
    n: u32,
    blocks: u32,
    p_in: f64,
    p_out: f64,
) -> (Vec<Edge>, Vec<u32>) {
    let mut r = rng(seed);
    let block_of: Vec<u32> = (0..n).map(|i| i * blocks / n).collect();
    let mut edges = Vec::new();
    for u in 0..n {
        for v in u + 1..n {
            let p = if block_of[u as usize] == block_of[v as usize] {
                p_in
            } else {
                p_out
            };
            if r.gen_bool(p) {
                edges.push(Edge::new(u, v));
            }
        }
    }
    (edges, block_of)
}

/// Bits of every coordinate, for bitwise comparison (NaNs with equal payloads compare equal).
pub fn bits3(v: &[[f32; 3]]) -> Vec<[u32; 3]> {
    v.iter()
        .map(|p| [p[0].to_bits(), p[1].to_bits(), p[2].to_bits()])
        .collect()
}

/// Positions and velocities, as bits.
pub type Bits = (Vec<[u32; 3]>, Vec<[u32; 3]>);

/// Positions and velocities of an engine, as bits.
pub fn state_bits<Bk: Backend>(engine: &mut Engine<Bk>) -> Bits {
    let p = engine.positions().expect("positions");
    let v = engine.velocities().expect("velocities");
    (bits3(&p), bits3(&v))
}

/// Positions and velocities, as bits, after a scripted life of 4,500 nodes (above the kernels'
/// parallel threshold of 4,096 items) that grows, removes, shrinks, constrains, runs SSSP and steps
/// with SSSP-stretched springs and noise: one state per stepping phase. For comparing two
/// configurations of one backend bit for bit (checked and unchecked, say).
pub fn scripted_bits<Bk: Backend>(backend: Bk) -> Vec<Bits> {
    scripted_bits_with_lanes(backend, None)
}

/// [`scripted_bits`] with the force pass's threads a node fixed (`None`: the engine's rule).
pub fn scripted_bits_with_lanes<Bk: Backend>(backend: Bk, lanes: Option<u32>) -> Vec<Bits> {
    let n = 4500;
    let mut r = rng(0xC4EC);
    let edges = random_edges(&mut r, n, 2 * n as usize, |r| r.gen_range(0.5f32..=3.0));
    let graph = GraphSpec {
        num_nodes: n,
        edges,
        positions: None,
    };
    let params = SimParams {
        seed: 7,
        temperature: 0.05,
        feature_flags: features::DEFAULT | features::THERMAL_NOISE,
        ..SimParams::default()
    };
    let mut e = Engine::new(backend, &graph, params).expect("engine");
    e.set_force_lanes(lanes).expect("lanes");
    let mut out = Vec::new();
    e.step(4).unwrap();
    out.push(state_bits(&mut e));
    e.add_nodes(n / 3, None).unwrap();
    e.add_edges(&[Edge::new(0, n + 1), Edge::new(n + 2, 5), Edge::new(0, 1)])
        .unwrap();
    e.step(4).unwrap();
    out.push(state_bits(&mut e));
    let removed: Vec<u32> = (0..e.num_nodes()).filter(|i| i % 7 == 3).collect();
    e.remove_nodes(&removed).unwrap();
    e.shrink_to_fit().unwrap();
    e.set_position_constraint(0, [5.0, 5.0, 5.0], 0.5).unwrap();
    e.set_distance_constraint(0, 1, 2.0).unwrap();
    e.run_sssp(1).unwrap();
    let mut p = e.params().clone();
    p.sssp_alpha = 0.2;
    p.feature_flags |= features::SSSP_REST_LENGTH;
    e.set_params(p).unwrap();
    e.step(4).unwrap();
    out.push(state_bits(&mut e));
    out
}

/// Asserts that two runs of [`scripted_bits`] gave the same bits (`what` says what differed
/// between them) and that the layout really moved.
pub fn assert_same_moving_layout(a: &[Bits], b: &[Bits], what: &str) {
    assert_eq!(a.len(), 3);
    assert!(a == b, "{what} changed the layout");
    assert_ne!(a[0].0, a[1].0[..a[0].0.len()], "the layout moved");
}

/// Euclidean distance.
pub fn dist(a: [f32; 3], b: [f32; 3]) -> f64 {
    (0..3)
        .map(|k| (a[k] as f64 - b[k] as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Mean length of the non-loop edges.
pub fn mean_edge_length(pos: &[[f32; 3]], edges: &[Edge]) -> f64 {
    let lengths: Vec<f64> = edges
        .iter()
        .filter(|e| e.u != e.v)
        .map(|e| dist(pos[e.u as usize], pos[e.v as usize]))
        .collect();
    assert!(!lengths.is_empty(), "no edges to measure");
    lengths.iter().sum::<f64>() / lengths.len() as f64
}

/// Mean distance between `samples` random pairs of distinct nodes, drawn with `seed`.
pub fn mean_random_pair_distance(pos: &[[f32; 3]], samples: usize, seed: u64) -> f64 {
    assert!(pos.len() >= 2, "need two nodes");
    let mut r = rng(seed);
    let n = pos.len();
    let mut total = 0.0;
    for _ in 0..samples {
        let a = r.gen_range(0..n);
        let mut b = r.gen_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        total += dist(pos[a], pos[b]);
    }
    total / samples as f64
}
