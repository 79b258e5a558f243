/*!
Bitwise reproducibility of the CPU backend: the same inputs and operations give the same bits, run to
run and whatever the kernels' thread count (every node's outputs are computed independently, so
splitting nodes across threads must not change a single bit).
*/

mod common;

use forcefield::params::features;
use forcefield::{CpuBackend, Edge, Engine, GraphSpec, SimParams};
use rand::Rng;

use common::Bits;

/// Builds a random graph of `n` nodes and runs a fixed script of mutations and steps, returning the
/// state after each stepping phase and the SSSP distances as bits.
fn scripted_run(backend: CpuBackend, n: u32, steps_per_phase: u32) -> (Vec<Bits>, Vec<u32>) {
    let mut r = common::rng(0xD373);
    let edges = common::random_edges(&mut r, n, 2 * n as usize, |r| r.gen_range(0.0f32..=5.0));
    let graph = GraphSpec {
        num_nodes: n,
        edges,
        positions: None,
    };
    let params = SimParams {
        seed: 42,
        temperature: 0.05,
        feature_flags: features::DEFAULT | features::THERMAL_NOISE,
        ..SimParams::default()
    };
    let mut e = Engine::new(backend, &graph, params).expect("engine");
    let mut phases = Vec::new();

    e.step(steps_per_phase).unwrap();
    phases.push(common::state_bits(&mut e));

    // Growth past capacity, with and without given positions, and new edges to the new nodes.
    e.add_nodes(n / 10, None).unwrap();
    let given: Vec<[f32; 3]> = (0..n / 20)
        .map(|_| [r.gen_range(-30.0..30.0), r.gen_range(-30.0..30.0), 0.0])
        .collect();
    e.add_nodes(given.len() as u32, Some(&given)).unwrap();
    let m = e.num_nodes();
    let extra: Vec<Edge> = (n..m)
        .map(|v| Edge {
            u: r.gen_range(0..n),
            v,
            w: 1.0,
        })
        .collect();
    e.add_edges(&extra).unwrap();
    e.step(steps_per_phase).unwrap();
    phases.push(common::state_bits(&mut e));

    // Removal, a shrink, a constraint and SSSP-stretched springs.
    let removed: Vec<u32> = (0..m).filter(|i| i % 9 == 4).collect();
    e.remove_nodes(&removed).unwrap();
    let first = e.edges()[0];
    e.remove_edges(&[(first.u, first.v)]).unwrap();
    e.shrink_to_fit().unwrap();
    e.set_position_constraint(0, [10.0, 10.0, 10.0], 0.5)
        .unwrap();
    let sssp = e.run_sssp(1).unwrap();
    let mut p = e.params().clone();
    p.sssp_alpha = 0.2;
    p.feature_flags |= features::SSSP_REST_LENGTH;
    e.set_params(p).unwrap();
    e.step(steps_per_phase).unwrap();
    phases.push(common::state_bits(&mut e));

    (phases, sssp.iter().map(|x| x.to_bits()).collect())
}

fn first_difference(a: &[Bits], b: &[Bits]) -> Option<String> {
    for (phase, (x, y)) in a.iter().zip(b).enumerate() {
        if x.0.len() != y.0.len() {
            return Some(format!(
                "phase {phase}: {} vs {} nodes",
                x.0.len(),
                y.0.len()
            ));
        }
        for (what, (u, v)) in [("position", (&x.0, &y.0)), ("velocity", (&x.1, &y.1))] {
            if let Some(i) = (0..u.len()).find(|&i| u[i] != v[i]) {
                return Some(format!(
                    "phase {phase}: {what} of node {i}: {:?} vs {:?}",
                    u[i].map(f32::from_bits),
                    v[i].map(f32::from_bits)
                ));
            }
        }
    }
    None
}

#[test]
fn same_case_twice_gives_identical_bits() {
    let (a, sa) = scripted_run(CpuBackend::new(), 500, 50);
    let (b, sb) = scripted_run(CpuBackend::new(), 500, 50);
    assert_eq!(a.len(), 3);
    assert!(
        first_difference(&a, &b).is_none(),
        "{:?}",
        first_difference(&a, &b)
    );
    assert_eq!(sa, sb);
    // The layout moved: identical bits from a frozen engine would prove nothing.
    assert_ne!(a[0].0, a[1].0[..a[0].0.len()].to_vec());
}

#[test]
fn thread_count_does_not_change_bits() {
    // Above the kernels' parallel threshold (4096 items), so that 4 threads really split the nodes.
    let n = 6000;
    let one = CpuBackend::with_threads(1);
    let four = CpuBackend::with_threads(4);
    assert_eq!((one.threads(), four.threads()), (1, 4));
    let (a, sa) = scripted_run(one, n, 8);
    let (b, sb) = scripted_run(four, n, 8);
    assert!(
        first_difference(&a, &b).is_none(),
        "{:?}",
        first_difference(&a, &b)
    );
    assert_eq!(sa, sb);
    assert!(a.iter().all(|(p, _)| p.len() >= 4096));
}
