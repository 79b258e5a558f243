//! `ProcessTarget` against tiny fake targets (Python without NumPy, and `sh`): how deaths, hangs and
//! protocol violations are told apart, and a clean shutdown.

use std::time::Duration;

use forcefield_target::protocol::serve;
use forcefield_target::{
    Capabilities, Edge, ExitKind, Graph, Params, Point, ProcessOptions, ProcessTarget, Result,
    SpawnError, Target, TargetError, TargetInfo,
};

/// A fake target in Python: answers hello, and runs `on_step` (Python statements) on `step`;
/// everything else succeeds with `null`.
fn fake(on_step: &str) -> String {
    let script = format!(
        r#"
import json, os, signal, sys, time
for line in sys.stdin:
    r = json.loads(line)
    if r["op"] == "hello":
        v = {{"name": "fake", "version": "0", "protocol": "forcefield-target/1", "capabilities": ["sssp", "from-the-future"]}}
    elif r["op"] == "step":
        {on_step}
        v = None
    elif r["op"] == "positions":
        v = [[1.5, "NaN", "-Infinity"]]
    else:
        v = None
    print(json.dumps({{"id": r["id"], "ok": v}}), flush=True)
    if r["op"] == "shutdown":
        break
"#
    );
    format!("python3 -c {}", shell_words::quote(&script))
}

fn options() -> ProcessOptions {
    ProcessOptions {
        timeout: Duration::from_secs(2),
        grace: Duration::from_millis(200),
        die_with_parent: false,
    }
}

fn spawn(on_step: &str) -> ProcessTarget {
    ProcessTarget::spawn(&fake(on_step), options()).expect("the fake target starts")
}

#[test]
fn a_handshake_reads_name_and_known_capabilities_and_non_finite_positions_cross() {
    let mut t = spawn("pass");
    assert_eq!(t.info().name, "fake");
    assert_eq!(t.info().capabilities.to_string(), "sssp");
    assert!(t
        .hello()
        .capabilities
        .contains(&"from-the-future".to_string()));
    t.step(1).unwrap();
    let p = t.positions().unwrap();
    assert_eq!(p[0][0], 1.5);
    assert!(p[0][1].is_nan());
    assert_eq!(p[0][2], f32::NEG_INFINITY);
    t.shutdown().unwrap();
}

#[test]
fn a_segfault_is_a_death_by_signal_with_the_last_stderr_line() {
    let mut t = spawn(
        r#"print("about to crash", file=sys.stderr, flush=True); os.kill(os.getpid(), signal.SIGSEGV)"#,
    );
    let e = t.step(1).unwrap_err();
    let TargetError::Died(death) = &e else {
        panic!("expected a death, got {e:?}");
    };
    assert_eq!(death.op, "step");
    assert_eq!(death.exit, ExitKind::Signal("SIGSEGV".into()));
    assert_eq!(
        death.stderr_tail.last().map(String::as_str),
        Some("about to crash")
    );
    assert!(e.is_defect());
    assert!(
        e.to_string()
            .contains("was killed by SIGSEGV during `step`"),
        "{e}"
    );
    // The process is gone: every later request says so without waiting.
    assert_eq!(t.positions().unwrap_err(), e);
}

#[test]
fn an_exit_mid_request_is_a_death_with_its_code() {
    let mut t = spawn("sys.exit(3)");
    match t.step(1) {
        Err(TargetError::Died(d)) => assert_eq!(d.exit, ExitKind::Code(3)),
        other => panic!("expected a death, got {other:?}"),
    }
}

#[test]
fn a_target_that_does_not_answer_is_hung_and_its_process_group_is_killed() {
    // The target starts a helper in its group, then sleeps: both must be gone afterwards.
    let mut t = spawn(
        r#"import subprocess; p = subprocess.Popen(["sleep", "300"]); print(p.pid, file=sys.stderr, flush=True); time.sleep(300)"#,
    );
    let e = t.step(1).unwrap_err();
    assert!(
        matches!(&e, TargetError::Hung { op, .. } if op == "step"),
        "{e:?}"
    );
    let helper: i32 = t
        .stderr_tail()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("the helper's pid on stderr");
    // SIGKILL is delivered asynchronously: wait (boundedly) for the helper to be gone or a zombie.
    let running = || {
        std::fs::read_to_string(format!("/proc/{helper}/stat"))
            .map(|s| !s.contains(") Z ") && !s.contains(") X "))
            .unwrap_or(false)
    };
    for _ in 0..500 {
        if !running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!running(), "the helper {helper} survived the group kill");
}

#[test]
fn a_line_that_is_not_a_reply_is_a_protocol_violation() {
    let mut t = spawn(r#"print("debug output on stdout", flush=True)"#);
    match t.step(1) {
        Err(TargetError::Protocol(m)) => {
            assert!(
                m.contains("not a JSON reply") && m.contains("stderr"),
                "{m}"
            )
        }
        other => panic!("expected a protocol violation, got {other:?}"),
    }
}

#[test]
fn a_program_that_does_not_exist_and_a_bad_command_line_fail_to_spawn() {
    let e = ProcessTarget::spawn("no-such-target-program --x", options())
        .err()
        .unwrap();
    assert!(matches!(e, SpawnError::Start { .. }), "{e:?}");
    assert!(e
        .to_string()
        .starts_with("cannot start target `no-such-target-program`"));
    let e = ProcessTarget::spawn("python3 'unclosed", options())
        .err()
        .unwrap();
    assert!(matches!(e, SpawnError::CommandLine { .. }), "{e:?}");
    let e = ProcessTarget::spawn("  ", options()).err().unwrap();
    assert!(matches!(e, SpawnError::CommandLine { .. }), "{e:?}");
}

#[test]
fn a_target_that_exits_before_the_handshake_fails_it() {
    let e = ProcessTarget::spawn("sh -c 'echo broken >&2; exit 7'", options())
        .err()
        .unwrap();
    let SpawnError::Handshake { source, .. } = &e else {
        panic!("expected a handshake failure, got {e:?}");
    };
    match source {
        TargetError::Died(d) => {
            assert_eq!(d.exit, ExitKind::Code(7));
            assert_eq!(d.stderr_tail, vec!["broken".to_string()]);
        }
        other => panic!("expected a death, got {other:?}"),
    }
}

/// An in-process target that refuses everything but the required operations.
struct Points(Vec<Point>);

impl Target for Points {
    fn info(&self) -> TargetInfo {
        TargetInfo {
            name: "points".into(),
            version: "1".into(),
            capabilities: Capabilities::none(),
        }
    }
    fn create(&mut self, g: &Graph, _: Option<&Params>) -> Result<()> {
        self.0 = vec![[0.0; 3]; g.num_nodes as usize];
        Ok(())
    }
    fn add_nodes(&mut self, count: u64, _: Option<&[Point]>) -> Result<()> {
        self.0
            .extend(std::iter::repeat_n([f32::INFINITY; 3], count as usize));
        Ok(())
    }
    fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
        Err(TargetError::Rejected(format!("no removal of {ids:?}")))
    }
    fn add_edges(&mut self, _: &[Edge]) -> Result<()> {
        Ok(())
    }
    fn remove_edges(&mut self, _: &[(u32, u32)]) -> Result<()> {
        Ok(())
    }
    fn step(&mut self, _: u64) -> Result<()> {
        Ok(())
    }
    fn positions(&mut self) -> Result<Vec<Point>> {
        Ok(self.0.clone())
    }
}

#[test]
fn serve_answers_each_line_in_order_with_typed_errors_and_stops_at_shutdown() {
    let input = [
        r#"{"id": 1, "op": "hello", "protocol": "forcefield-target/1"}"#,
        r#"{"id": 2, "op": "create", "graph": {"num_nodes": 1}}"#,
        r#"{"id": 3, "op": "add_nodes", "count": 1}"#,
        r#"{"id": 4, "op": "positions"}"#,
        r#"{"id": 5, "op": "remove_nodes", "ids": [0]}"#,
        r#"{"id": 6, "op": "sssp", "source": 0}"#,
        r#"{"id": 7, "op": "teleport"}"#,
        r#"not json"#,
        r#"{"id": 8, "op": "step"}"#,
        r#"{"id": 9, "op": "shutdown"}"#,
        r#"{"id": 10, "op": "step", "count": 1}"#,
    ]
    .join("\n");
    let mut out = Vec::new();
    serve(&mut Points(Vec::new()), input.as_bytes(), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"id":1,"ok":{"capabilities":[],"name":"points","protocol":"forcefield-target/1","version":"1"}}"#
    );
    assert_eq!(lines[1], r#"{"id":2,"ok":null}"#);
    assert_eq!(
        lines[3],
        r#"{"id":4,"ok":[[0.0,0.0,0.0],["Infinity","Infinity","Infinity"]]}"#
    );
    assert!(
        lines[4].starts_with(r#"{"error":{"kind":"rejected""#),
        "{}",
        lines[4]
    );
    assert!(
        lines[5].starts_with(r#"{"error":{"kind":"unsupported""#),
        "{}",
        lines[5]
    );
    assert!(
        lines[6].contains(r#""kind":"unsupported","message":"unknown op `teleport`"#),
        "{}",
        lines[6]
    );
    assert!(
        lines[7].contains(r#""kind":"rejected""#) && lines[7].ends_with(r#""id":null}"#),
        "{}",
        lines[7]
    );
    assert!(
        lines[8].contains(r#""kind":"rejected""#) && lines[8].ends_with(r#""id":8}"#),
        "{}",
        lines[8]
    );
    assert_eq!(lines[9], r#"{"id":9,"ok":null}"#);
    assert_eq!(lines.len(), 10, "nothing is served after shutdown");
}
