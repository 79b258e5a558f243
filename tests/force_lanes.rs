/*!
The force pass with several threads a node (`KernelParams::force_lanes`): one lane sums exactly as
one thread a node did (the digests below were recorded from the engine before lanes existed), more
lanes sum the same terms in another fixed order (within the CPU/CUDA differential tolerance of one
lane, bitwise reproducible, and really another order), planted performance faults keep the bits,
and the lanes follow the live node count, never the capacity.
*/

mod common;

use forcefield::params::{self, features};
use forcefield::{CpuBackend, Engine, EngineConfig, Fault, FaultSet, GraphSpec, SimParams};

use common::Bits;

/// Digests of [`common::scripted_bits`] and of [`coincident_run`] on the CPU backend, recorded with
/// one thread a node before the force pass had lanes.
const ONE_THREAD_SCRIPTED: u64 = 0x069e_4b9f_ef1e_fc13;
const ONE_THREAD_COINCIDENT: u64 = 0xa277_7f17_9690_0b62;

/// The lane counts other than 1.
const MORE_LANES: [u32; 5] = [2, 4, 8, 16, 32];

/// FNV-1a over the bits of every state.
fn digest(states: &[Bits]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for (p, v) in states {
        for w in p.iter().chain(v).flatten() {
            for b in w.to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}

/// 600 nodes, a third of them at the same point as another node (the coincident-pair offset), and
/// 1,800 random springs.
fn coincident_graph() -> (GraphSpec, SimParams) {
    let n = 600u32;
    let mut r = common::rng(0x1A7E);
    let edges = common::random_edges(&mut r, n, 3 * n as usize, |_| 1.0);
    let positions: Vec<[f32; 3]> = (0..n)
        .map(|i| {
            let k = if i % 3 == 0 { i + 1 } else { i } as f32;
            [
                (k * 0.37).sin() * 9.0,
                (k * 0.71).cos() * 9.0,
                (k * 0.13).sin() * 9.0,
            ]
        })
        .collect();
    let graph = GraphSpec {
        num_nodes: n,
        edges,
        positions: Some(positions),
    };
    let params = SimParams {
        seed: 11,
        feature_flags: features::DEFAULT,
        ..SimParams::default()
    };
    (graph, params)
}

fn coincident_engine(lanes: Option<u32>, faults: FaultSet) -> Engine<CpuBackend> {
    let (graph, params) = coincident_graph();
    let mut e = Engine::with_config(
        CpuBackend::new(),
        &graph,
        params,
        EngineConfig::default(),
        faults,
    )
    .expect("engine");
    e.set_force_lanes(lanes).expect("lanes");
    e
}

/// The state after every 5 of 20 steps.
fn coincident_run(e: &mut Engine<CpuBackend>) -> Vec<Bits> {
    (0..4)
        .map(|_| {
            e.step(5).unwrap();
            common::state_bits(e)
        })
        .collect()
}

#[test]
fn one_lane_gives_the_bits_of_one_thread_a_node() {
    let scripted = common::scripted_bits_with_lanes(CpuBackend::new(), Some(1));
    assert_eq!(digest(&scripted), ONE_THREAD_SCRIPTED);
    let coincident = coincident_run(&mut coincident_engine(Some(1), FaultSet::NONE));
    assert_eq!(digest(&coincident), ONE_THREAD_COINCIDENT);
}

/// Asserts that `b` is within the CPU/CUDA differential tolerance of `a` (`what` names the run).
fn assert_within_tolerance(a: &[[f32; 3]], b: &[[f32; 3]], what: &str) {
    assert_eq!(a.len(), b.len());
    for (node, (pa, pb)) in a.iter().zip(b).enumerate() {
        for k in 0..3 {
            let (x, y) = (pa[k], pb[k]);
            assert!(
                (x - y).abs() <= 1e-3 * (1.0 + x.abs()),
                "{what}, node {node}, axis {k}: {x} vs {y}"
            );
        }
    }
}

#[test]
fn more_lanes_sum_the_same_forces_in_another_fixed_order() {
    // Each of 20 steps, from the one-lane trajectory's state, taken once more with each lane count.
    // (Whole trajectories of different orders part after ~15 steps: rounding differences grow about
    // tenfold every 5 steps of this start, and a pair crossing the cutoff or a node crossing a cell
    // makes them jump, so only a step from the same state can be held to a tolerance.)
    let mut one = coincident_engine(Some(1), FaultSet::NONE);
    for step in 0..20 {
        let before = one.sync_checkpoint().unwrap().clone();
        one.step(1).unwrap();
        let expected = one.positions().unwrap();
        for lanes in MORE_LANES {
            let mut other = Engine::from_checkpoint(
                CpuBackend::new(),
                &before,
                EngineConfig::default(),
                FaultSet::NONE,
            )
            .unwrap();
            other.set_force_lanes(Some(lanes)).unwrap();
            other.step(1).unwrap();
            let got = other.positions().unwrap();
            assert_within_tolerance(&expected, &got, &format!("step {step}, {lanes} lanes"));
        }
    }

    let one_run = coincident_run(&mut coincident_engine(Some(1), FaultSet::NONE));
    for lanes in MORE_LANES {
        let run = coincident_run(&mut coincident_engine(Some(lanes), FaultSet::NONE));
        let again = coincident_run(&mut coincident_engine(Some(lanes), FaultSet::NONE));
        assert!(run == again, "{lanes} lanes: two runs differ");
        assert!(
            run[0] != one_run[0],
            "{lanes} lanes: the bits of one lane (no other order)"
        );
    }
}

#[test]
fn planted_slowdowns_keep_the_bits_with_lanes() {
    let clean = coincident_run(&mut coincident_engine(Some(8), FaultSet::NONE));
    for fault in [Fault::SlowForcePass, Fault::SlowForcePass3] {
        let slow = coincident_run(&mut coincident_engine(Some(8), FaultSet::of(&[fault])));
        assert!(slow == clean, "{fault} changed the bits at 8 lanes");
    }
}

#[test]
fn lanes_follow_the_live_count_not_the_capacity() {
    assert_eq!(params::force_lanes_for(1), params::SMALL_GRAPH_FORCE_LANES);
    assert_eq!(
        params::force_lanes_for(params::MANY_LANES_BELOW_NODES - 1),
        params::SMALL_GRAPH_FORCE_LANES
    );
    assert_eq!(
        params::force_lanes_for(params::MANY_LANES_BELOW_NODES),
        params::MEDIUM_GRAPH_FORCE_LANES
    );
    assert_eq!(
        params::force_lanes_for(params::SOME_LANES_BELOW_NODES - 1),
        params::MEDIUM_GRAPH_FORCE_LANES
    );
    assert_eq!(params::force_lanes_for(params::SOME_LANES_BELOW_NODES), 1);

    let mut plain = coincident_engine(None, FaultSet::NONE);
    let mut reserved = coincident_engine(None, FaultSet::NONE);
    reserved
        .reserve(params::SOME_LANES_BELOW_NODES + 1, 0)
        .unwrap();
    assert!(reserved.allocated_nodes() > params::SOME_LANES_BELOW_NODES as usize);
    assert_eq!(reserved.force_lanes(), params::SMALL_GRAPH_FORCE_LANES);
    assert_eq!(plain.force_lanes(), reserved.force_lanes());
    assert!(coincident_run(&mut plain) == coincident_run(&mut reserved));
}

#[test]
fn a_lane_count_that_is_not_a_power_of_two_up_to_32_is_refused() {
    let mut e = coincident_engine(Some(4), FaultSet::NONE);
    for bad in [0, 3, 12, 64] {
        let err = e.set_force_lanes(Some(bad)).unwrap_err().to_string();
        assert!(err.contains("force_lanes"), "{err}");
        assert_eq!(e.force_lanes(), 4);
    }
    e.set_force_lanes(None).unwrap();
    assert_eq!(e.force_lanes(), params::SMALL_GRAPH_FORCE_LANES);
}
