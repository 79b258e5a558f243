//! The case file format as users see it: the documented example loads and runs, every op and field
//! survives a JSON round trip bit for bit, and bad files give one-line errors that say where.

use forcefield::{Edge, Fault, SimParams};
use forcefield_harness::case::generate::{case_strategy_with, generate_case_from_seed, GenConfig};
use forcefield_harness::case::{
    BackendKind, Case, CaseError, CaseGraph, Expectation, Op, Provenance, FORMAT,
};
use forcefield_harness::worker::execute::{execute, CaseResult, ExecOptions};
use proptest::test_runner::{Config, RngSeed, TestRunner};

/// The example of the README's case-format section.
const README_EXAMPLE: &str = r#"{
  "format": "forcefield-case/1",
  "seed": 1,
  "backend": "cpu",
  "params": { "repel_k": 40.0, "grid_cell_size": 0.0 },
  "graph": {
    "num_nodes": 3,
    "edges": [ { "u": 0, "v": 1, "w": 1.0 }, { "u": 1, "v": 2, "w": 0.5 } ],
    "positions": null
  },
  "ops": [
    { "op": "step", "count": 10 },
    { "op": "add_nodes", "count": 2, "positions": null },
    { "op": "add_edges", "edges": [ { "u": 3, "v": 4, "w": 1.0 } ] },
    { "op": "step", "count": 5 },
    { "op": "remove_nodes", "ids": [1] },
    { "op": "remove_edges", "pairs": [[2, 3]] },
    { "op": "reserve", "nodes": 100, "edges": 10 },
    { "op": "shrink_to_fit" },
    { "op": "set_params", "params": { "spring_k": 0.5 } },
    { "op": "sssp", "source": 0 },
    { "op": "step", "count": 10 },
    { "op": "read_positions" }
  ],
  "expect": { "outcome": "pass" },
  "provenance": { "found_by": "hand-written", "date": "2024-01-01", "note": "README example" }
}"#;

#[test]
fn the_readme_example_loads_and_passes() {
    let case = Case::from_json(README_EXAMPLE).unwrap();
    assert_eq!(case.size(), (5, 3, 12));
    assert_eq!(case.node_counts().last(), Some(&4));
    assert_eq!(case.expect, Some(Expectation::Pass));
    let r = execute(&case, &ExecOptions::default(), &mut |_| {});
    assert_eq!(r, CaseResult::Pass);
}

fn every_field_case() -> Case {
    let mut case = Case::new(CaseGraph {
        num_nodes: 4,
        edges: vec![
            Edge {
                u: 0,
                v: 1,
                w: 1e-6,
            },
            Edge { u: 2, v: 2, w: 1e6 },
        ],
        positions: Some(vec![[0.1, -0.2, 1.0 / 3.0]; 4]),
    });
    case.seed = 42;
    case.backend = BackendKind::Cuda;
    case.faults = vec![Fault::SortCountUnclamped, Fault::LoggerRelock];
    case.params = Some(SimParams {
        repel_k: 1e6,
        seed: u64::MAX,
        ..SimParams::default()
    });
    case.ops = vec![
        Op::AddNodes {
            count: 2,
            positions: Some(vec![[f32::MIN_POSITIVE, 1e30, -0.0]; 2]),
        },
        Op::AddNodes {
            count: 1,
            positions: None,
        },
        Op::RemoveNodes { ids: vec![0, 0, 6] },
        Op::AddEdges {
            edges: vec![Edge { u: 0, v: 4, w: 0.0 }],
        },
        Op::RemoveEdges {
            pairs: vec![(0, 4), (1, 1)],
        },
        Op::SetParams {
            params: SimParams {
                viewport_bounds: 0.5,
                ..SimParams::default()
            },
        },
        Op::Reserve {
            nodes: 100,
            edges: 10,
        },
        Op::ShrinkToFit,
        Op::Step { count: 10 },
        Op::Sssp { source: 3 },
        Op::ReadPositions,
    ];
    case.expect = Some(Expectation::Open {
        signature: "signal:SIGSEGV:sort_pairs".into(),
    });
    case.provenance = Some(Provenance {
        found_by: "forcefield run --seed 1".into(),
        seed: Some(1),
        date: Some("2024-01-01".into()),
        note: Some("round trip".into()),
    });
    case
}

#[test]
fn every_op_and_field_round_trips_bit_for_bit() {
    let case = every_field_case();
    case.validate().unwrap();
    for text in [case.to_json().unwrap(), case.to_json_pretty().unwrap()] {
        let back = Case::from_json(&text).unwrap();
        assert_eq!(back, case);
        // PartialEq on f32 treats -0.0 == 0.0; positions must come back with the same bits.
        let bits = |c: &Case| match &c.ops[0] {
            Op::AddNodes {
                positions: Some(p), ..
            } => p.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        assert_eq!(bits(&back), bits(&case));
    }
    let text = case.to_json().unwrap();
    assert!(text.contains(r#""faults":["sort-count-unclamped","logger-relock"]"#));
    assert!(text.contains(r#""op":"shrink_to_fit""#));
    assert!(text.contains(r#""outcome":"open""#));
}

#[test]
fn optional_parts_are_left_out_when_empty() {
    let case = Case::new(CaseGraph {
        num_nodes: 1,
        ..CaseGraph::default()
    });
    let text = case.to_json().unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"format":"{FORMAT}","seed":0,"backend":"cpu","graph":{{"num_nodes":1,"edges":[]}},"ops":[]}}"#
        )
    );
}

#[test]
fn load_errors_are_one_line_and_name_the_place() {
    let cases = [
        (
            r#"{"format":"forcefield-case/1","graph":{"num_nodes":1000000000000}}"#,
            "graph: node count 1000000000000 exceeds the limit of 1048576",
        ),
        (
            r#"{"format":"forcefield-case/0","graph":{"num_nodes":1}}"#,
            "unsupported case format `forcefield-case/0` (expected `forcefield-case/1`)",
        ),
        (
            r#"{"format":"forcefield-case/1","graph":{"num_nodes":5},
               "ops":[{"op":"step","count":1},{"op":"remove_nodes","ids":[4]},{"op":"step","count":1},
                      {"op":"remove_nodes","ids":[4]}]}"#,
            "op 3 (remove_nodes): node id 4 out of range (4 nodes)",
        ),
        (
            r#"{"format":"forcefield-case/1","graph":{"num_nodes":2},
               "ops":[{"op":"set_params","params":{"grid_cell_size":-1}}]}"#,
            "op 0 (set_params): invalid parameter `grid_cell_size`: must be finite and >= 0 (0 = auto), got -1",
        ),
        (
            r#"{"format":"forcefield-case/1","graph":{"num_nodes":2},
               "ops":[{"op":"add_nodes","count":1,"positions":[[0,0,0],[1,1,1]]}]}"#,
            "op 0 (add_nodes): 2 positions given for 1 nodes",
        ),
    ];
    for (text, want) in cases {
        let e = Case::from_json(text).unwrap_err();
        assert_eq!(e.to_string(), want);
        assert!(!e.to_string().contains('\n'));
    }
    let e = Case::from_json(r#"{"format":"forcefield-case/1","graph":{"num_nodes":1},"opz":[]}"#)
        .unwrap_err();
    assert!(
        matches!(e, CaseError::Parse(ref m) if m.contains("opz")),
        "{e}"
    );
}

#[test]
fn generated_cases_survive_the_file_format() {
    for seed in 0..100 {
        let case = generate_case_from_seed(seed, &GenConfig::default());
        let text = case.to_json_pretty().unwrap();
        assert_eq!(Case::from_json(&text).unwrap(), case, "seed {seed}");
    }
    let mut runner = TestRunner::new(Config {
        cases: 100,
        rng_seed: RngSeed::Fixed(7),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case_strategy_with(GenConfig::default()), |case| {
            let back = Case::from_json(&case.to_json().unwrap()).unwrap();
            proptest::prop_assert_eq!(back, case);
            Ok(())
        })
        .unwrap();
}
