use super::*;

fn tiny(ops: &str) -> String {
    format!(
        r#"{{"format":"forcefield-case/1","graph":{{"num_nodes":5,"edges":[{{"u":0,"v":1,"w":1.0}}]}},"ops":{ops}}}"#
    )
}

#[test]
fn minimal_case_parses_with_defaults() {
    let c = Case::from_json(&tiny("[]")).unwrap();
    assert_eq!(c.backend, BackendKind::Cpu);
    assert_eq!(c.seed, 0);
    assert!(c.faults.is_empty());
    assert_eq!(c.initial_params(), SimParams::default());
    assert_eq!(c.size(), (5, 1, 0));
}

#[test]
fn rejects_a_trillion_nodes_as_too_large() {
    let e =
        Case::from_json(r#"{"format":"forcefield-case/1","graph":{"num_nodes":1000000000000}}"#)
            .unwrap_err();
    assert_eq!(
        e.to_string(),
        "graph: node count 1000000000000 exceeds the limit of 1048576"
    );
    let e = Case::from_json(&tiny(r#"[{"op":"add_nodes","count":1000000000000}]"#)).unwrap_err();
    assert_eq!(e.op_index(), Some(0));
    assert!(e
        .to_string()
        .starts_with("op 0 (add_nodes): added node count"));
}

#[test]
fn rejects_bad_or_missing_format() {
    let e =
        Case::from_json(r#"{"format":"forcefield-case/2","graph":{"num_nodes":1},"new_field":1}"#)
            .unwrap_err();
    assert_eq!(
        e,
        CaseError::Format {
            found: "forcefield-case/2".into()
        }
    );
    let e = Case::from_json(r#"{"graph":{"num_nodes":1}}"#).unwrap_err();
    assert!(matches!(e, CaseError::Format { ref found } if found.is_empty()));
    assert!(matches!(
        Case::from_json("not json").unwrap_err(),
        CaseError::Parse(_)
    ));
}

#[test]
fn id_out_of_range_after_a_removal_names_the_op() {
    // 5 nodes; removing two leaves ids 0..3, so id 3 in op 2 is out of range though it was
    // valid when the case began.
    let e = Case::from_json(&tiny(
            r#"[{"op":"step","count":1},{"op":"remove_nodes","ids":[1,4,4]},{"op":"remove_nodes","ids":[3]}]"#,
        ))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "op 2 (remove_nodes): node id 3 out of range (3 nodes)"
    );
    let ok = Case::from_json(&tiny(
        r#"[{"op":"remove_nodes","ids":[1,4,4]},{"op":"remove_nodes","ids":[2]}]"#,
    ))
    .unwrap();
    assert_eq!(ok.node_counts(), vec![5, 3, 2]);
}

#[test]
fn edges_and_pairs_are_checked_against_the_running_count() {
    let e = Case::from_json(&tiny(
        r#"[{"op":"add_nodes","count":1},{"op":"add_edges","edges":[{"u":5,"v":6,"w":1}]}]"#,
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "op 1 (add_edges): node id 6 out of range (6 nodes)"
    );
    let e = Case::from_json(&tiny(r#"[{"op":"remove_edges","pairs":[[0,9]]}]"#)).unwrap_err();
    assert_eq!(e.op_index(), Some(0));
    let e = Case::from_json(&tiny(
        r#"[{"op":"add_edges","edges":[{"u":0,"v":1,"w":-1}]}]"#,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("invalid weight -1"), "{e}");
}

#[test]
fn non_finite_params_are_rejected() {
    let mut c = Case::from_json(&tiny("[]")).unwrap();
    c.params = Some(SimParams {
        dt: f32::NAN,
        ..SimParams::default()
    });
    let e = c.validate().unwrap_err();
    assert_eq!(
        e.to_string(),
        "params: invalid parameter `dt`: must be finite and >= 0, got NaN"
    );
    // JSON has no NaN, but a number beyond f32 becomes infinite when read.
    let e =
        Case::from_json(&tiny(r#"[{"op":"set_params","params":{"repel_k":1e39}}]"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "op 0 (set_params): invalid parameter `repel_k`: must be finite and >= 0, got inf"
    );
}

#[test]
fn step_totals_and_op_counts_are_capped() {
    let e = Case::from_json(&tiny(
        r#"[{"op":"step","count":600000},{"op":"step","count":600000}]"#,
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "op 1 (step): total step count 1200000 exceeds the limit of 1000000"
    );
    let e = Case::from_json(&tiny(r#"[{"op":"reserve","nodes":16777216}]"#)).unwrap_err();
    assert_eq!(e.op_index(), Some(0));
}

#[test]
fn unknown_ops_fields_and_faults_are_parse_errors() {
    for ops in [
        r#"[{"op":"explode"}]"#,
        r#"[{"op":"step","count":1,"extra":2}]"#,
        r#"[{"op":"step"}]"#,
    ] {
        assert!(
            matches!(Case::from_json(&tiny(ops)), Err(CaseError::Parse(_))),
            "{ops}"
        );
    }
    let text =
        r#"{"format":"forcefield-case/1","faults":["no-such-fault"],"graph":{"num_nodes":1}}"#;
    assert!(matches!(Case::from_json(text), Err(CaseError::Parse(_))));
}

#[test]
fn positions_must_match_and_be_finite() {
    let e = Case::from_json(
        r#"{"format":"forcefield-case/1","graph":{"num_nodes":2,"positions":[[0,0,0]]}}"#,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "graph: 1 positions given for 2 nodes");
}

#[test]
fn open_expectations_need_a_signature() {
    let text = r#"{"format":"forcefield-case/1","graph":{"num_nodes":1},"expect":{"outcome":"open","signature":" "}}"#;
    assert_eq!(
        Case::from_json(text).unwrap_err().to_string(),
        "expect: an open expectation needs a signature"
    );
}

#[test]
fn inject_ops_parse_round_trip_and_check_nth() {
    let c = Case::from_json(&tiny(
            r#"[{"op":"inject","fault":{"kind":"fail-copy","nth":2}},{"op":"inject","fault":{"kind":"lose-context"}},{"op":"step","count":1}]"#,
        ))
        .unwrap();
    assert_eq!(
        c.ops[0],
        Op::Inject {
            fault: EnvFault::FailCopy { nth: 2 }
        }
    );
    // nth defaults to 1 where the engine's format says so.
    assert_eq!(
        c.ops[1],
        Op::Inject {
            fault: EnvFault::LoseContext { nth: 1 }
        }
    );
    assert_eq!(c.ops[0].name(), "inject");
    assert_eq!(Case::from_json(&c.to_json().unwrap()).unwrap(), c);
    let e = Case::from_json(&tiny(
        r#"[{"op":"step","count":1},{"op":"inject","fault":{"kind":"fail-alloc","nth":65}}]"#,
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "op 1 (inject): fail-alloc fault has nth 65, outside 1..=64"
    );
    let e = Case::from_json(&tiny(
        r#"[{"op":"inject","fault":{"kind":"fail-launch","nth":0}}]"#,
    ))
    .unwrap_err();
    assert_eq!(e.op_index(), Some(0));
    assert!(matches!(
        Case::from_json(&tiny(
            r#"[{"op":"inject","fault":{"kind":"melt","nth":1}}]"#
        )),
        Err(CaseError::Parse(_))
    ));
}

#[test]
fn the_engine_section_sets_the_grid_cap() {
    let text =
        r#"{"format":"forcefield-case/1","engine":{"max_grid_cells":8},"graph":{"num_nodes":1}}"#;
    let c = Case::from_json(text).unwrap();
    let config = c.engine_config(GrowthPolicy { factor: 3.0 });
    assert_eq!(config.max_grid_cells, 8);
    assert_eq!(config.growth, GrowthPolicy { factor: 3.0 });
    assert_eq!(
        Case::from_json(&c.to_json().unwrap()).unwrap().engine,
        c.engine
    );
    // Absent: the engine's default.
    let plain = Case::from_json(&tiny("[]")).unwrap();
    assert_eq!(
        plain.engine_config(GrowthPolicy::default()),
        EngineConfig::default()
    );
    assert!(!plain.to_json().unwrap().contains("engine"));
    for bad in ["0", "8388609"] {
        let text = format!(
            r#"{{"format":"forcefield-case/1","engine":{{"max_grid_cells":{bad}}},"graph":{{"num_nodes":1}}}}"#
        );
        let e = Case::from_json(&text).unwrap_err();
        assert!(e.to_string().starts_with("engine: max_grid_cells"), "{e}");
    }
    let unknown =
        r#"{"format":"forcefield-case/1","engine":{"threads":2},"graph":{"num_nodes":1}}"#;
    assert!(matches!(Case::from_json(unknown), Err(CaseError::Parse(_))));
}

#[test]
fn only_a_case_with_an_injected_lost_context_loses_it_on_purpose() {
    let config = crate::case::generate::GenConfig {
        inject_rate: 1.0,
        ..crate::case::generate::GenConfig::default()
    };
    let cases: Vec<Case> = (0..200)
        .filter_map(|seed| crate::case::shrink::generated_case(seed, &config))
        .collect();
    let losing = cases.iter().filter(|c| c.injects_lost_context()).count();
    assert!(
        losing > 0 && losing < cases.len(),
        "{losing} of {}",
        cases.len()
    );
    for case in &cases {
        let json = serde_json::to_string(&case.ops).unwrap();
        assert_eq!(case.injects_lost_context(), json.contains("lose-context"));
    }
}
