/*!
Input the harness must refuse cheaply or run without false findings, end to end through the
`forcefield` binary:

* endless or binary input (`/dev/zero`) as a case, a graph, a params file or a summary: exit 2 with
  one line, stopped while reading;
* control bytes in echoed input are escaped in the error line;
* `layout` has the cases' node-count limit, and checks its output paths before any work;
* a valid case far larger than a protocol frame (62 MB: 2 nodes, 3.1M edges) passes isolated, as it
  does in-process.
*/

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");
const KARATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../corpora/graphs/karate.edges"
);

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn forcefield(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Exit 2 and exactly one line on stderr, containing `needle`.
fn assert_refused(out: &Output, needle: &str) {
    assert_eq!(out.code, 2, "stderr: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {:?}", out.stderr);
    assert!(
        out.stderr.contains(needle),
        "{needle:?} in {:?}",
        out.stderr
    );
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn dev_zero_is_refused_as_a_case_a_graph_params_and_a_summary() {
    // Each of these read /dev/zero whole (gigabytes) before; a bounded reader stops at once.
    let nul = "NUL byte at offset 0";
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.json");
    assert_refused(&forcefield(&["repro", "/dev/zero"]), nul);
    assert_refused(
        &forcefield(&["minimize", "/dev/zero", "-o", path_str(&small)]),
        nul,
    );
    assert_refused(&forcefield(&["layout", "/dev/zero"]), nul);
    assert_refused(
        &forcefield(&["layout", KARATE, "--params", "/dev/zero"]),
        nul,
    );
    assert_refused(&forcefield(&["merge", "/dev/zero"]), nul);
}

#[test]
fn an_endless_line_is_refused_at_the_line_limit() {
    // A FIFO fed without end: the size is unknowable up front, so only reading can stop it.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("graph.edges");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(writer_path) else {
            return;
        };
        let chunk = vec![b'7'; 1 << 16];
        // Ends when the reader closes the FIFO (EPIPE: the test binary ignores SIGPIPE).
        while file.write_all(&chunk).is_ok() {}
    });
    let out = forcefield(&["layout", path_str(&fifo)]);
    assert_refused(&out, "line 1: longer than 4096 bytes");
    writer.join().unwrap();
}

#[test]
fn control_bytes_in_echoed_input_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("g.edges");
    std::fs::write(&graph, "0 1\n0 \u{1b}[2J1\n").unwrap();
    let out = forcefield(&["layout", path_str(&graph)]);
    assert_refused(&out, "got `0 \\x1b[2J1`");
    assert!(!out.stderr.contains('\u{1b}'), "raw ESC: {:?}", out.stderr);

    let case = dir.path().join("case.json");
    std::fs::write(&case, r#"{"format": "\u001b[2Jforcefield-case/1"}"#).unwrap();
    let out = forcefield(&["repro", path_str(&case)]);
    assert_refused(&out, "unsupported case format `\\x1b[2Jforcefield-case/1`");
    assert!(!out.stderr.contains('\u{1b}'), "raw ESC: {:?}", out.stderr);
}

#[test]
fn layout_has_the_case_node_limit() {
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("g.edges");
    // 16M nodes from one line: ran for minutes before.
    std::fs::write(&graph, "0 16000000\n").unwrap();
    let out = forcefield(&["layout", path_str(&graph)]);
    assert_refused(
        &out,
        "line 1: node id 16000000 is too large (ids must be below 1048576)",
    );
}

#[test]
fn layout_checks_its_outputs_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing/dir/p.json");
    // The graph does not even exist: the output path is refused first, so nothing was read or run.
    let absent_graph = dir.path().join("absent.edges");
    let out = forcefield(&[
        "layout",
        path_str(&absent_graph),
        "--out",
        path_str(&missing),
    ]);
    assert_refused(&out, "missing/dir/p.json: no directory");
    let svg_dir = dir.path().to_path_buf();
    let out = forcefield(&[
        "layout",
        path_str(&absent_graph),
        "--svg",
        path_str(&svg_dir),
    ]);
    assert_refused(&out, "it is a directory");
    assert!(out.stdout.is_empty());
    // Nothing is left behind by the check.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The case of the report: valid (2 nodes, 3.1M edges, 62 MB; the validator allows 256 MB), and
/// larger than the largest inline protocol frame once written back (68 MB).
fn write_large_case(path: &Path) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    file.write_all(br#"{"format":"forcefield-case/1","graph":{"num_nodes":2,"edges":["#)
        .unwrap();
    const EDGES: usize = 3_100_000;
    for i in 0..EDGES {
        let sep = if i + 1 < EDGES { "," } else { "" };
        write!(file, r#"{{"u":0,"v":1,"w":1}}{sep}"#).unwrap();
    }
    file.write_all(b"]}}").unwrap();
    file.flush().unwrap();
}

#[test]
fn a_valid_case_larger_than_a_frame_passes_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("large.json");
    write_large_case(&case);
    let bytes = std::fs::metadata(&case).unwrap().len();
    assert!(bytes > 60_000_000, "{bytes} bytes");
    let out = forcefield(&["repro", path_str(&case), "--no-capacity-check"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "outcome: pass"),
        "stderr: {}",
        out.stderr
    );
}
