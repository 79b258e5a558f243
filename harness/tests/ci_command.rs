/*!
End-to-end tests of `forcefield ci` and `forcefield merge` on temporary corpora and campaigns: exit
codes, the JUnit file (parsed back with quick-junit), the JSON report, the written findings and the
command that adds them to the corpus, and merged shard summaries. Campaigns are bounded by case
counts, so every test takes seconds.
*/

use std::path::{Path, PathBuf};
use std::process::Command;

use quick_junit::{NonSuccessKind, Report, TestCaseStatus, TestSuite};

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");

/// One node added to an empty engine, one step: with the planted fault, the seed bug's segfault.
const SEGV_CASE: &str = r#"{
  "format": "forcefield-case/1",
  "faults": ["sort-count-unclamped"],
  "graph": { "num_nodes": 0 },
  "ops": [ { "op": "add_nodes", "count": 1 }, { "op": "step", "count": 1 } ],
  "expect": EXPECT
}"#;

/// Growth, removal and shrink with steps in between; passes.
const PASS_CASE: &str = r#"{
  "format": "forcefield-case/1",
  "graph": { "num_nodes": 3, "edges": [ { "u": 0, "v": 1, "w": 1.0 } ] },
  "ops": [ { "op": "step", "count": 3 }, { "op": "add_nodes", "count": 9 },
           { "op": "remove_nodes", "ids": [1, 4] }, { "op": "shrink_to_fit" },
           { "op": "step", "count": 3 } ],
  "expect": EXPECT
}"#;

const OPEN_SEGV: &str = r#"{ "outcome": "open", "signature": "signal:SIGSEGV:sort_pairs" }"#;
const PASS: &str = r#"{ "outcome": "pass" }"#;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn forcefield(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    Output {
        // A signal gives no code; -1 fails every assertion on the code.
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A temporary corpus directory whose `regressions/` holds `entries` (file name, case text).
fn corpus(entries: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("regressions");
    std::fs::create_dir(&reg).unwrap();
    for (name, text) in entries {
        std::fs::write(reg.join(name), text).unwrap();
    }
    dir
}

fn case(template: &str, expect: &str) -> String {
    template.replace("EXPECT", expect)
}

/// Runs `ci` on `corpus` with a short campaign; returns the output and the parsed JUnit and JSON
/// reports.
fn ci(corpus: &Path, extra: &[&str]) -> (Output, Report, serde_json::Value) {
    let reports = tempfile::tempdir().unwrap();
    let junit = reports.path().join("junit.xml");
    let json = reports.path().join("ci.json");
    let mut args = vec![
        "ci",
        "--corpus",
        s(corpus),
        "--seed",
        "1",
        "--jobs",
        "2",
        "--junit",
        s(&junit),
        "--json",
        s(&json),
    ];
    args.extend_from_slice(extra);
    if !extra.contains(&"--cases") {
        args.extend_from_slice(&["--cases", "20"]);
    }
    let out = forcefield(&args);
    let xml = std::fs::read_to_string(&junit)
        .unwrap_or_else(|e| panic!("no JUnit file ({e}); stderr:\n{}", out.stderr));
    let report = Report::deserialize_from_str(&xml).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (out, report, json)
}

fn suite<'r>(report: &'r Report, name: &str) -> &'r TestSuite {
    report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == name)
        .unwrap_or_else(|| panic!("no test suite {name}"))
}

/// The failure message of test case `name` of `suite`, or None when it passed.
fn failure(suite: &TestSuite, name: &str) -> Option<String> {
    let case = suite
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == name)
        .unwrap_or_else(|| panic!("no test case {name} in {}", suite.name.as_str()));
    match &case.status {
        TestCaseStatus::Success { .. } => None,
        TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, NonSuccessKind::Failure, "{name}");
            Some(message.as_ref().map_or(String::new(), |m| m.to_string()))
        }
        TestCaseStatus::Skipped { .. } => panic!("{name} was skipped"),
    }
}

fn property<'c>(suite: &'c TestSuite, case: &str, name: &str) -> &'c str {
    let case = suite
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == case)
        .unwrap();
    case.properties
        .iter()
        .find(|p| p.name.as_str() == name)
        .map(|p| p.value.as_str())
        .unwrap()
}

#[test]
fn met_expectations_and_a_clean_campaign_pass() {
    let dir = corpus(&[
        ("open.json", case(SEGV_CASE, OPEN_SEGV)),
        ("pass.json", case(PASS_CASE, PASS)),
    ]);
    let (out, junit, json) = ci(dir.path(), &[]);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!((junit.failures, junit.errors), (0, 0));
    let corpus = suite(&junit, "corpus");
    let names: Vec<&str> = corpus.test_cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["open.json", "pass.json"]);
    assert_eq!(failure(corpus, "open.json"), None);
    assert_eq!(failure(corpus, "pass.json"), None);
    let campaign = suite(&junit, "campaign");
    assert_eq!(failure(campaign, "generated cases"), None);
    let cases: u64 = property(campaign, "generated cases", "cases")
        .parse()
        .unwrap();
    assert!(cases > 0 && cases <= 20, "{cases}");
    assert_eq!(json["campaign"]["cases"], cases);
    assert_eq!(json["result"], "pass");
    assert_eq!(json["replay"][0]["status"], "met");
    assert!(out.stdout.contains("**Result: pass**"), "{}", out.stdout);
    assert!(out.stdout.contains("| `open.json` | open `signal:SIGSEGV:sort_pairs` | `signal:SIGSEGV:sort_pairs` | ok (still open) |"), "{}", out.stdout);
}

#[test]
fn broken_expectations_fail_the_gate_with_their_reasons() {
    let dir = corpus(&[
        // Fails, but says pass.
        ("crashes.json", case(SEGV_CASE, PASS)),
        // Passes, but says open.
        ("fixed.json", case(PASS_CASE, OPEN_SEGV)),
        // Fails, but not as recorded.
        (
            "changed.json",
            case(
                SEGV_CASE,
                r#"{ "outcome": "open", "signature": "hang:sort_pairs" }"#,
            ),
        ),
    ]);
    let (out, junit, json) = ci(dir.path(), &["--cases", "5"]);
    assert_eq!(
        out.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr
            .contains("finding: 3 broken expectation(s), 0 new finding(s)"),
        "{}",
        out.stderr
    );
    let corpus = suite(&junit, "corpus");
    assert_eq!(corpus.failures, 3);
    let msg = |name| failure(corpus, name).unwrap();
    assert!(
        msg("crashes.json").starts_with("expected pass, got signal:SIGSEGV:sort_pairs"),
        "{}",
        msg("crashes.json")
    );
    assert!(
        msg("fixed.json").contains("but the case passes: fixed? update the expectation to pass"),
        "{}",
        msg("fixed.json")
    );
    assert!(
        msg("changed.json")
            .starts_with("expected open hang:sort_pairs, got signal:SIGSEGV:sort_pairs"),
        "{}",
        msg("changed.json")
    );
    assert_eq!(json["result"], "fail");
    assert_eq!(suite(&junit, "campaign").failures, 0);
    assert!(out
        .stdout
        .contains("**Result: FAIL** (3 broken expectation(s), 0 new finding(s))"));
}

#[test]
fn a_new_finding_fails_the_gate_until_it_is_added_to_the_corpus() {
    let dir = corpus(&[]);
    let out_dir = tempfile::tempdir().unwrap();
    let fault = [
        "--fault",
        "sort-count-unclamped",
        "--out",
        s(out_dir.path()),
    ];
    let (out, junit, json) = ci(dir.path(), &fault);
    assert_eq!(
        out.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let campaign = suite(&junit, "campaign");
    let message = failure(campaign, "signal:SIGSEGV:sort_pairs").expect("a failing test case");
    assert!(message.starts_with("new finding: "), "{message}");
    assert_eq!(suite(&junit, "corpus").tests, 0);

    // The minimized case is written, and the report says how to keep it.
    let minimized = out_dir
        .path()
        .join("findings/signal-SIGSEGV-sort_pairs/minimized.json");
    assert!(minimized.is_file());
    let command = json["findings"][0]["add_command"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        out.stdout.contains(&format!("    {command}\n")),
        "{}",
        out.stdout
    );
    let parts: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(parts.len(), 3, "{command}");
    assert_eq!(parts[0], "cp");
    assert_eq!(Path::new(parts[1]), minimized);
    assert_eq!(
        Path::new(parts[2]),
        dir.path()
            .join("regressions/signal-SIGSEGV-sort_pairs.json")
    );

    // Following the advice makes the finding known: the gate passes, the entry replays as open.
    std::fs::copy(parts[1], parts[2]).unwrap();
    let (out, junit, json) = ci(dir.path(), &fault);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(junit.failures, 0);
    assert_eq!(
        failure(suite(&junit, "corpus"), "signal-SIGSEGV-sort_pairs.json"),
        None
    );
    assert_eq!(
        json["findings"][0]["known_in"],
        "signal-SIGSEGV-sort_pairs.json"
    );
}

#[test]
fn a_malformed_entry_is_an_input_error_naming_the_file() {
    let dir = corpus(&[
        ("good.json", case(PASS_CASE, PASS)),
        (
            "bad.json",
            r#"{ "format": "forcefield-case/1" }"#.to_string(),
        ),
    ]);
    let out = forcefield(&["ci", "--corpus", s(dir.path()), "--cases", "1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("bad.json: not a valid case"),
        "{}",
        out.stderr
    );
    let out = forcefield(&[
        "ci",
        "--corpus",
        s(&dir.path().join("nope")),
        "--cases",
        "1",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot read the corpus directory"),
        "{}",
        out.stderr
    );
}

/// Runs `cases` cases of shard `shard` of a campaign into a new directory and returns it with its summary.
fn shard(shard: &str, cases: &str, extra: &[&str]) -> (tempfile::TempDir, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "run",
        "--cases",
        cases,
        "--seed",
        "3",
        "--jobs",
        "2",
        "--shard",
        shard,
        "--out",
        s(dir.path()),
    ];
    args.extend_from_slice(extra);
    let out = forcefield(&args);
    assert!(out.code == 0 || out.code == 1, "{}", out.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    (dir, summary)
}

fn merge(inputs: &[&Path]) -> (Output, Option<serde_json::Value>) {
    let out_dir = tempfile::tempdir().unwrap();
    let merged: PathBuf = out_dir.path().join("merged.json");
    let mut args = vec!["merge"];
    args.extend(inputs.iter().map(|p| s(p)));
    args.extend_from_slice(&["--out", s(&merged)]);
    let out = forcefield(&args);
    let json = std::fs::read_to_string(&merged)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (out, json)
}

#[test]
fn merged_shards_sum_their_cases() {
    let (a, sa) = shard("0/2", "20", &[]);
    let (b, sb) = shard("1/2", "20", &[]);
    let (out, merged) = merge(&[
        &a.path().join("summary.json"),
        // A directory stands for its summary.json.
        b.path(),
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let merged = merged.unwrap();
    let total = sa["cases"].as_u64().unwrap() + sb["cases"].as_u64().unwrap();
    assert!(total > 0, "{total}");
    assert_eq!(merged["cases"], total);
    assert_eq!(
        merged["shards"],
        serde_json::json!([{"index": 0, "count": 2}, {"index": 1, "count": 2}])
    );
    let max = sa["seconds"]
        .as_f64()
        .unwrap()
        .max(sb["seconds"].as_f64().unwrap());
    assert_eq!(merged["seconds"].as_f64().unwrap(), max);
    assert!(
        out.stdout
            .contains("merged 2 summaries: shards 0/2, 1/2 (all 2)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("{total} cases in")),
        "{}",
        out.stdout
    );

    // The same shard twice would count its cases twice.
    let (out, merged) = merge(&[a.path(), a.path()]);
    assert_eq!(out.code, 2);
    assert!(merged.is_none());
    assert!(
        out.stderr.contains("shard 0/2 is already in"),
        "{}",
        out.stderr
    );
}

#[test]
fn merged_findings_sum_their_counts_and_shards_of_other_campaigns_are_refused() {
    let fault = ["--fault", "sort-count-unclamped"];
    let (a, sa) = shard("0/2", "20", &fault);
    let (b, sb) = shard("1/2", "20", &fault);
    let (out, merged) = merge(&[a.path(), b.path()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let merged = merged.unwrap();
    let count = |s: &serde_json::Value| s["findings"][0]["count"].as_u64().unwrap();
    assert_eq!(merged["findings"].as_array().unwrap().len(), 1);
    assert_eq!(count(&merged), count(&sa) + count(&sb));
    assert_eq!(
        merged["findings"][0]["signature"],
        "signal:SIGSEGV:sort_pairs"
    );
    assert!(merged["findings"][0]["minimization"].is_object());

    // A clean shard is of another campaign (no planted fault).
    let (clean, _) = shard("1/2", "1", &[]);
    let (out, _) = merge(&[a.path(), clean.path()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("faults (none) differs from sort-count-unclamped"),
        "{}",
        out.stderr
    );
}
