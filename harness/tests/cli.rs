/*!
End-to-end tests of the `forcefield` binary: exit codes and the one-line error of every malformed
input (insta snapshots, independent of the temporary directory), a snapshot of the karate layout,
and the files `layout --out --svg` writes.
*/

use std::path::{Path, PathBuf};
use std::process::Command;

use forcefield::CudaBackend;
use forcefield_harness::commands::layout::PositionsFile;

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");
const KARATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../corpora/graphs/karate.edges"
);
const KARATE_LABELS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../corpora/graphs/karate.labels"
);

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn forcefield(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    Output {
        // A signal gives no code; -1 makes such a death fail every assertion below.
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `layout` on a graph file holding `content` (None: the file is not created), with
/// `extra` files written next to it, and returns exit code and stderr with the directory
/// replaced by `<dir>`.
fn layout_error(
    graph_name: &str,
    content: Option<&str>,
    extra: &[(&str, &str)],
    args: &[&str],
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join(graph_name);
    if let Some(content) = content {
        std::fs::write(&graph, content).unwrap();
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let mut full = vec!["layout", path_str(&graph)];
    full.extend_from_slice(args);
    let full: Vec<String> = full
        .iter()
        .map(|a| a.replace("<dir>", path_str(dir.path())))
        .collect();
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    let out = forcefield(&full);
    assert!(
        out.stdout.is_empty(),
        "no summary on failure: {}",
        out.stdout
    );
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "exactly one line on stderr: {:?}",
        out.stderr
    );
    format!(
        "exit: {}\nstderr: {}",
        out.code,
        out.stderr.replace(path_str(dir.path()), "<dir>")
    )
}

#[test]
fn junk_line() {
    let text = "0 1\n1 2\n# comment\n\n2 3\n3 4\nfoo bar\n4 5\n";
    insta::assert_snapshot!("junk_line", layout_error("g.edges", Some(text), &[], &[]));
}

#[test]
fn edge_list_id_above_the_limit() {
    let text = "0 1\n1 16777216\n";
    insta::assert_snapshot!(
        "edge_list_id_above_the_limit",
        layout_error("g.edges", Some(text), &[], &[])
    );
}

#[test]
fn json_edge_names_a_missing_node() {
    let text = r#"{"num_nodes": 3, "edges": [{"u":0,"v":1,"w":1.0},{"u":1,"v":3,"w":1.0}], "positions": null}"#;
    insta::assert_snapshot!(
        "json_edge_names_a_missing_node",
        layout_error("g.json", Some(text), &[], &[])
    );
}

#[test]
fn nan_weight() {
    let text = "0 1 1.5\n1 2 NaN\n";
    insta::assert_snapshot!("nan_weight", layout_error("g.edges", Some(text), &[], &[]));
}

#[test]
fn empty_file() {
    insta::assert_snapshot!("empty_file", layout_error("g.edges", Some(""), &[], &[]));
}

#[test]
fn missing_file() {
    insta::assert_snapshot!(
        "missing_file",
        layout_error("missing.edges", None, &[], &[])
    );
}

#[test]
fn negative_grid_cell_size() {
    let params = [("params.json", r#"{"grid_cell_size": -1.0}"#)];
    insta::assert_snapshot!(
        "negative_grid_cell_size",
        layout_error(
            "g.edges",
            Some("0 1\n"),
            &params,
            &["--params", "<dir>/params.json"]
        )
    );
}

#[test]
fn matrix_market_claiming_a_trillion_nodes() {
    let text =
        "%%MatrixMarket matrix coordinate pattern general\n1000000000000 1000000000000 1\n1 2\n";
    insta::assert_snapshot!(
        "matrix_market_claiming_a_trillion_nodes",
        layout_error("g.mtx", Some(text), &[], &[])
    );
}

#[test]
fn label_for_a_missing_node() {
    let labels = [("g.labels", "0 a\n5 b\n")];
    insta::assert_snapshot!(
        "label_for_a_missing_node",
        layout_error(
            "g.edges",
            Some("0 1\n1 2\n"),
            &labels,
            &["--labels", "<dir>/g.labels"]
        )
    );
}

/// Where `--backend cuda` fails, the line names the flag and the cause; the driver's reason
/// (missing library, no device) depends on the machine, so the snapshot holds `<reason>`.
#[test]
fn cuda_backend_is_unavailable() {
    if CudaBackend::is_available() {
        println!("skipped: a CUDA device is present");
        return;
    }
    let text = layout_error("g.edges", Some("0 1\n"), &[], &["--backend", "cuda"]);
    let prefix = "no usable CUDA device: ";
    let at = text
        .find(prefix)
        .expect("the line says no usable CUDA device")
        + prefix.len();
    assert!(!text[at..].trim().is_empty(), "a reason is given: {text}");
    let redacted = format!("{}<reason>", &text[..at]);
    insta::assert_snapshot!("cuda_backend_is_unavailable", redacted);
}

/// The backend `auto` should pick here, and the start of the note it prints.
fn expected_auto_backend() -> (&'static str, &'static str) {
    if CudaBackend::is_available() {
        ("cuda", "backend: cuda (")
    } else {
        ("cpu", "backend: cpu (no usable CUDA device: ")
    }
}

#[test]
fn positions_record_the_backend_used() {
    let dir = tempfile::tempdir().unwrap();
    let (out, path) = karate_layout(
        dir.path(),
        "cpu.json",
        &["--steps", "5", "--backend", "cpu"],
    );
    assert_eq!(read_positions(&path).backend, "cpu");
    // An explicit `cpu` needs no explanation.
    assert_eq!(out.stderr, "");
    let (auto, note) = expected_auto_backend();
    let (out, path) = karate_layout(dir.path(), "auto.json", &["--steps", "5"]);
    assert_eq!(read_positions(&path).backend, auto);
    assert!(out.stderr.starts_with(note), "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(" steps on {auto} in ")),
        "{}",
        out.stdout
    );
    if CudaBackend::is_available() {
        let (out, path) = karate_layout(
            dir.path(),
            "cuda.json",
            &["--steps", "5", "--backend", "cuda"],
        );
        assert_eq!(read_positions(&path).backend, "cuda");
        assert!(out.stderr.starts_with("backend: cuda ("), "{}", out.stderr);
    }
}

#[test]
fn usage_errors_exit_2_with_clap_message() {
    let out = forcefield(&["layout", KARATE, "--no-such-flag"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--no-such-flag"), "{}", out.stderr);
    let out = forcefield(&["layout", KARATE, "--backend", "gpu"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("gpu"), "{}", out.stderr);
    let out = forcefield(&[]);
    assert_eq!(out.code, 2);
}

#[test]
fn help_and_version_exit_0() {
    let out = forcefield(&["--help"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("layout"), "{}", out.stdout);
    let out = forcefield(&["--version"]);
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout.trim(),
        format!("forcefield {}", env!("CARGO_PKG_VERSION"))
    );
}

fn read_positions(path: &Path) -> PositionsFile {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn karate_layout(dir: &Path, name: &str, args: &[&str]) -> (Output, PathBuf) {
    let out_path = dir.join(name);
    let mut full = vec!["layout", KARATE, "--out", path_str(&out_path)];
    full.extend_from_slice(args);
    let out = forcefield(&full);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    (out, out_path)
}

#[test]
fn karate_positions_after_200_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = karate_layout(
        dir.path(),
        "p.json",
        &["--steps", "200", "--backend", "cpu"],
    );
    let file = read_positions(&path);
    assert_eq!(
        (file.backend.as_str(), file.steps, file.num_nodes),
        ("cpu", 200, 34)
    );
    let text: String = file
        .positions
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{i:2} {:9.3} {:9.3} {:9.3}\n", p[0], p[1], p[2]))
        .collect();
    insta::assert_snapshot!("karate_positions_after_200_steps", text);
}

#[test]
fn karate_layout_writes_positions_and_picture() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("p.svg");
    let (out, json_path) = karate_layout(
        dir.path(),
        "p.json",
        &["--steps", "500", "--svg", path_str(&svg_path)],
    );
    let (auto, note) = expected_auto_backend();
    assert!(
        out.stdout.starts_with(&format!(
            "layout: 34 nodes, 78 edges, 500 steps on {auto} in "
        )),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 1);
    // The note of `auto`: exactly one line saying which backend runs.
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with(note), "{}", out.stderr);

    let file = read_positions(&json_path);
    assert_eq!(file.num_nodes, 34);
    assert_eq!(file.positions.len(), 34);
    assert!(file.positions.iter().flatten().all(|c| c.is_finite()));
    // A laid-out graph is spread out, not collapsed to a point.
    let spread = file
        .positions
        .iter()
        .map(|p| p[0])
        .fold(f32::NEG_INFINITY, f32::max)
        - file
            .positions
            .iter()
            .map(|p| p[0])
            .fold(f32::INFINITY, f32::min);
    assert!(spread > 1.0, "x spread {spread}");

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert_eq!(svg.matches("<line ").count(), 78);
    assert_eq!(svg.matches("<circle ").count(), 34);
    // Only the two outputs are in the directory: no temporaries left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn same_seed_same_layout_other_seed_other_layout() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let (_, path) = karate_layout(dir.path(), name, &["--steps", "50", "--seed", seed]);
        read_positions(&path).positions
    };
    let a = run("a.json", "7");
    let b = run("b.json", "7");
    let c = run("c.json", "8");
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn seed_flag_overrides_the_params_file() {
    let dir = tempfile::tempdir().unwrap();
    let params = dir.path().join("params.json");
    std::fs::write(&params, r#"{"seed": 7}"#).unwrap();
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec!["--steps", "20"];
        args.extend_from_slice(extra);
        let (_, path) = karate_layout(dir.path(), name, &args);
        read_positions(&path).positions
    };
    let from_file = run("f.json", &["--params", path_str(&params)]);
    let from_flag = run("g.json", &["--seed", "7"]);
    let overridden = run("h.json", &["--params", path_str(&params), "--seed", "8"]);
    let plain_8 = run("i.json", &["--seed", "8"]);
    assert_eq!(from_file, from_flag);
    assert_eq!(overridden, plain_8);
    assert_ne!(overridden, from_file);
}

#[test]
fn labels_colour_the_two_karate_factions() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("p.svg");
    let out = forcefield(&[
        "layout",
        KARATE,
        "--steps",
        "10",
        "--svg",
        path_str(&svg_path),
        "--labels",
        KARATE_LABELS,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let fill_of = |id: u32| {
        let marker = format!("><title>{id}</title>");
        let end = svg.find(&marker).unwrap();
        let start = svg[..end].rfind("fill=\"").unwrap() + 6;
        svg[start..end - 1].to_string()
    };
    // Node 0 (Mr. Hi) and node 33 (the officer) led the two factions.
    assert_ne!(fill_of(0), fill_of(33));
    let mut fills: Vec<String> = (0..34).map(fill_of).collect();
    fills.sort();
    fills.dedup();
    assert_eq!(fills.len(), 2, "{fills:?}");
}
