use std::collections::BTreeSet;

use forcefield::EnvFault;

use super::injection::{kind_index, KINDS};
use super::memory::MEMORY_SLACK_BYTES;
use super::recorder::RecorderTally;
use super::step_time::StepSample;
use super::*;
use crate::case::{Op, MAX_CASE_OPS, MAX_CASE_STEPS};

fn stream(seed: u64) -> OpStream {
    OpStream::new(seed, BackendKind::Cpu, &[], 128, 5)
}

#[test]
fn the_stream_is_a_function_of_the_seed() {
    let (mut a, mut b, mut c) = (stream(7), stream(7), stream(8));
    let (sa, sb, sc) = (a.start(), b.start(), c.start());
    assert_eq!(sa, sb);
    assert_ne!(sa, sc);
    for _ in 0..50 {
        assert_eq!(a.chunk(), b.chunk());
    }
}

#[test]
fn every_recorder_is_a_valid_case_and_the_graph_keeps_resizing_within_bounds() {
    let mut s = stream(3);
    let mut names = BTreeSet::new();
    let mut peak = 0;
    for _ in 0..4 {
        let mut recorder = s.start();
        for _ in 0..150 {
            let chunk = s.chunk();
            assert_eq!(chunk.last(), Some(&Op::Step { count: 5 }));
            names.extend(chunk.iter().map(Op::name));
            recorder.ops.extend(chunk);
            peak = peak.max(s.nodes());
            assert!(s.nodes() <= 128);
        }
        recorder.validate().unwrap();
        // The driver's count agrees with the case's own replay of the ops.
        assert_eq!(recorder.node_counts().last().copied(), Some(s.nodes()));
    }
    assert!(peak > 96, "the graph reaches the drain mark (peak {peak})");
    for op in [
        "add_nodes",
        "remove_nodes",
        "shrink_to_fit",
        "add_edges",
        "set_params",
    ] {
        assert!(names.contains(op), "{op} never drawn: {names:?}");
    }
}

#[test]
fn the_tally_refuses_a_chunk_that_would_break_the_case_limits() {
    let mut t = RecorderTally::default();
    t.add(&[Op::Step {
        count: MAX_CASE_STEPS - 5,
    }]);
    assert!(t.admits(&[Op::Step { count: 5 }]));
    assert!(!t.admits(&[Op::Step { count: 6 }]));
    let many = vec![Op::ReadPositions; MAX_CASE_OPS];
    assert!(!t.admits(&many), "one op is already recorded");
    assert!(t.admits(&many[1..]));
}

#[test]
fn step_time_compares_the_first_and_last_tenth() {
    let samples: Vec<StepSample> = (0..20)
        .map(|i| StepSample {
            seconds: if i < 2 {
                0.002
            } else if i >= 18 {
                0.006
            } else {
                1.0
            },
            steps: 2,
            nodes: i,
        })
        .collect();
    let t = StepTime::of(&samples).unwrap();
    assert_eq!((t.chunks, t.window), (20, 2));
    assert!((t.first_seconds_per_step - 0.001).abs() < 1e-12);
    assert!((t.last_seconds_per_step - 0.003).abs() < 1e-12);
    assert_eq!((t.first_mean_nodes, t.last_mean_nodes), (0.5, 18.5));
    assert_eq!(StepTime::of(&[]), None);
}

fn injects(ops: &[Op]) -> Vec<EnvFault> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Inject { fault } => Some(*fault),
            _ => None,
        })
        .collect()
}

#[test]
fn the_injection_schedule_is_a_function_of_the_seed_and_leaves_the_chunk_intact() {
    let chunk = || {
        vec![
            Op::AddNodes {
                count: 3,
                positions: None,
            },
            Op::ShrinkToFit,
            Op::Step { count: 5 },
        ]
    };
    let run = |seed: u64| {
        let mut s = InjectionSchedule::new(seed, 2.0);
        (0..200)
            .map(|i| s.place(f64::from(i) * 0.1, chunk()))
            .collect::<Vec<_>>()
    };
    let (a, b, c) = (run(5), run(5), run(6));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mut per_kind = [0usize; KINDS];
    for placed in &a {
        // The chunk's own ops, in order, with the injects among them.
        let rest: Vec<&Op> = placed
            .iter()
            .filter(|op| !matches!(op, Op::Inject { .. }))
            .collect();
        assert_eq!(rest, chunk().iter().collect::<Vec<_>>());
        let faults = injects(placed);
        let kinds: BTreeSet<usize> = faults.iter().map(kind_index).collect();
        assert_eq!(kinds.len(), faults.len(), "one fault of a kind per chunk");
        for f in &faults {
            per_kind[kind_index(f)] += 1;
        }
    }
    // 2 per second for 20 seconds, one chunk every 0.1 s: about 40 of each kind.
    for (kind, n) in per_kind.iter().enumerate() {
        assert!((20..=60).contains(n), "kind {kind}: {n} faults");
    }
}

#[test]
fn every_recorder_with_injected_faults_is_a_valid_case() {
    let mut s = stream(9);
    let mut schedule = InjectionSchedule::new(9, 50.0);
    let mut recorder = s.start();
    for i in 0..100 {
        recorder.ops.extend(schedule.place(f64::from(i), s.chunk()));
    }
    assert!(injects(&recorder.ops).len() >= 4 * 90);
    recorder.validate().unwrap();
}

#[test]
fn memory_is_flat_unless_it_grows_past_the_slack() {
    let mib = |x: u64| x << 20;
    let mut flat: Vec<u64> = (0..100).map(|i| mib(20) + (i % 3) * 4096).collect();
    flat[0] = mib(5);
    let t = MemoryTrend::of(&flat).unwrap();
    assert!(t.flat, "{t:?}");
    assert_eq!((t.replies, t.window), (100, 10));
    let leaking: Vec<u64> = (0..100).map(|i| mib(20) + i * mib(1) / 5).collect();
    let t = MemoryTrend::of(&leaking).unwrap();
    assert!(!t.flat, "{t:?}");
    assert_eq!(t.allowed_growth_bytes, MEMORY_SLACK_BYTES);
    assert_eq!(MemoryTrend::of(&flat[..19]), None);
}

#[test]
fn mean_interval_needs_two_crashes() {
    assert_eq!(mean_interval(&[]), None);
    assert_eq!(mean_interval(&[4.0]), None);
    assert_eq!(mean_interval(&[1.0, 3.0, 7.0]), Some(3.0));
}
