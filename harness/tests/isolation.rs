/*!
Worker isolation, end to end: real worker processes that crash, hang, flood and exit on purpose,
and a driver that must survive and classify each.

This test binary is its own worker: started with `FORCEFIELD_ISOLATION_TEST_WORKER=1`, its
`worker_entry` test runs [`worker_main`] with an echo handler. The protocol runs on dedicated
descriptors, so the test harness's own prints on stdout cannot corrupt it.
*/

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use forcefield_harness::client::signature::{classify, Verdict};
use forcefield_harness::isolate::{
    worker_main, Execution, Outcome, SpawnError, SupervisorConfig, WorkerCommand, WorkerSlot,
    ENV_WORKER_TEST_MODES,
};
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, SigHandler, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Makes this binary a worker (see `worker_entry`).
const AS_WORKER: &str = "FORCEFIELD_ISOLATION_TEST_WORKER";
/// Makes this binary a driver that then waits to be killed (see `driver_entry`).
const AS_DRIVER: &str = "FORCEFIELD_ISOLATION_TEST_DRIVER";
/// Generous: no test here should come near it unless the code under test is broken.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn worker_entry() {
    if std::env::var_os(AS_WORKER).is_none() {
        return;
    }
    let code = worker_main("test-echo", &mut |payload, _crumbs| {
        let payload: serde_json::Value = serde_json::from_str(payload.get()).unwrap_or_default();
        let mut reply = json!({"echo": payload, "pid": std::process::id()});
        if payload.get("context_lost") == Some(&json!(true)) {
            reply["context_lost"] = json!(true);
        }
        reply
    });
    std::process::exit(code);
}

#[test]
fn driver_entry() {
    if std::env::var_os(AS_DRIVER).is_none() {
        return;
    }
    let mut slot = slot();
    let pid = echo(&mut slot);
    println!("WORKER_PID {pid}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn self_as(role: &str, test: &str) -> WorkerCommand {
    let exe = std::env::current_exe().unwrap();
    WorkerCommand::new(exe)
        .arg("--exact")
        .arg(test)
        .arg("--nocapture")
        .arg("--test-threads=1")
        .env(role, "1")
}

fn config() -> SupervisorConfig {
    SupervisorConfig {
        term_grace: Duration::from_millis(200),
        ..SupervisorConfig::default()
    }
}

fn slot() -> WorkerSlot {
    WorkerSlot::new(
        self_as(AS_WORKER, "worker_entry").env(ENV_WORKER_TEST_MODES, "1"),
        config(),
    )
}

/// Runs an echo request; returns the pid of the worker that answered.
fn echo(slot: &mut WorkerSlot) -> u32 {
    let execution = slot.run(json!({"hello": [1, 2, 3]}), DEADLINE).unwrap();
    let Outcome::Reply { payload } = execution.outcome else {
        panic!(
            "echo failed: {}\n{}",
            execution.outcome,
            execution.stderr.text()
        );
    };
    assert_eq!(payload["echo"], json!({"hello": [1, 2, 3]}));
    let pid = payload["pid"].as_u64().unwrap() as u32;
    assert_eq!(pid, execution.worker_pid);
    pid
}

fn run(slot: &mut WorkerSlot, payload: Value) -> Execution {
    slot.run(payload, DEADLINE).unwrap()
}

/// True once `pid` is reaped: signalling it fails. A zombie (dead, not reaped) still answers.
fn reaped(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None) == Err(Errno::ESRCH)
}

/// After a death: the worker is reaped, the slot has no worker, and the next request gets a new,
/// working one.
fn assert_replaced(slot: &mut WorkerSlot, execution: &Execution) {
    assert!(
        reaped(execution.worker_pid),
        "worker {} not reaped",
        execution.worker_pid
    );
    assert_eq!(slot.pid(), None);
    let spawns = slot.spawns();
    let pid = echo(slot);
    assert_ne!(pid, execution.worker_pid);
    assert_eq!(slot.spawns(), spawns + 1);
}

fn signal_of(execution: &Execution) -> &str {
    match &execution.outcome {
        Outcome::Signal { signal } => signal,
        other => panic!(
            "expected a signal, got {other}\n{}",
            execution.stderr.text()
        ),
    }
}

#[test]
fn echo_round_trips_on_one_persistent_worker() {
    let mut slot = slot();
    let first = echo(&mut slot);
    let execution = run(&mut slot, json!({"second": true}));
    assert!(execution.outcome.is_reply());
    assert_eq!(execution.worker_pid, first, "the worker is reused");
    assert_eq!(slot.spawns(), 1);
    assert_eq!(slot.backend(), Some("test-echo"));
    let crumb = execution.breadcrumb.expect("the worker marks each request");
    assert_eq!(
        (crumb.request_id, crumb.op_index),
        (execution.request_id, None)
    );
    assert_eq!(
        execution.stderr.total_bytes,
        0,
        "{}",
        execution.stderr.text()
    );
}

#[test]
fn segfault_is_sigsegv_with_the_breadcrumb_set_before_it() {
    let mut slot = slot();
    echo(&mut slot);
    let execution = run(
        &mut slot,
        json!({"test_mode": "segfault", "breadcrumb": {"op_index": 4, "op": "step", "kernel": "build_grid"}}),
    );
    assert_eq!(signal_of(&execution), "SIGSEGV");
    let crumb = execution
        .breadcrumb
        .clone()
        .expect("breadcrumb of the crashed request");
    assert_eq!(crumb.request_id, execution.request_id);
    assert_eq!(crumb.op_index, Some(4));
    assert_eq!(crumb.op.as_deref(), Some("step"));
    assert_eq!(crumb.kernel.as_deref(), Some("build_grid"));
    assert!(!crumb.torn);
    assert_replaced(&mut slot, &execution);
}

#[test]
fn bus_error_is_sigbus() {
    let mut slot = slot();
    let execution = run(&mut slot, json!({"test_mode": "bus"}));
    assert_eq!(signal_of(&execution), "SIGBUS");
    assert_replaced(&mut slot, &execution);
}

#[test]
fn abort_is_sigabrt() {
    let mut slot = slot();
    let execution = run(&mut slot, json!({"test_mode": "abort"}));
    assert_eq!(signal_of(&execution), "SIGABRT");
    assert_replaced(&mut slot, &execution);
}

#[test]
fn raised_signals_keep_their_names() {
    let mut slot = slot();
    for name in ["SIGFPE", "SIGILL", "SIGKILL"] {
        let execution = run(&mut slot, json!({"test_mode": "signal", "signal": name}));
        assert_eq!(signal_of(&execution), name);
        assert_replaced(&mut slot, &execution);
    }
}

#[test]
fn panic_is_classified_with_message_and_location() {
    let mut slot = slot();
    let execution = run(&mut slot, json!({"test_mode": "panic"}));
    let Outcome::Panic { message, location } = &execution.outcome else {
        panic!(
            "expected a panic, got {}\n{}",
            execution.outcome,
            execution.stderr.text()
        );
    };
    assert_eq!(message, "test panic");
    assert!(location.contains("test_modes.rs:"), "{location}");
    // The default report is kept for people reading the captured output.
    assert!(
        execution.stderr.text().contains("panicked at"),
        "{}",
        execution.stderr.text()
    );
    assert_replaced(&mut slot, &execution);
}

#[test]
fn hang_is_killed_with_its_process_group() {
    let mut slot = slot();
    echo(&mut slot);
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let execution = slot.run(json!({"test_mode": "hang"}), deadline).unwrap();
    let Outcome::Hang { after } = execution.outcome else {
        panic!("expected a hang, got {}", execution.outcome);
    };
    assert!(after >= deadline);
    // Liveness, not timing: the driver must come back at all, and not after a minute.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(
        killpg(Pid::from_raw(execution.worker_pid as i32), None),
        Err(Errno::ESRCH)
    );
    assert_replaced(&mut slot, &execution);
}

/// A deadlock reached through two different kernels of one op is one finding. The driver reads each
/// run's kernel from the breadcrumbs, but a hang is signed by its op (the watchdog fires at whatever
/// kernel the endless loop happened to be in), and a campaign keys its findings by signature. A
/// crash, by contrast, keeps its kernel: two kernels, two findings.
#[test]
fn a_hang_reached_through_two_kernels_is_one_finding_and_a_crash_is_two() {
    let mut slot = slot();
    let mut hang_kernels = Vec::new();
    let mut hang_signatures = Vec::new();
    let mut crash_signatures = Vec::new();
    for kernel in ["force_pass", "sort_pairs"] {
        let crumb = json!({"op_index": 4, "op": "step", "kernel": kernel});
        let execution = slot
            .run(
                json!({"test_mode": "hang", "breadcrumb": crumb}),
                Duration::from_millis(300),
            )
            .unwrap();
        assert!(
            matches!(execution.outcome, Outcome::Hang { .. }),
            "expected a hang, got {}",
            execution.outcome
        );
        hang_kernels.push(execution.breadcrumb.as_ref().and_then(|b| b.kernel.clone()));
        let Verdict::Finding { signature, .. } = classify(&execution) else {
            panic!("a hang must be a finding");
        };
        hang_signatures.push(signature.to_string());

        let execution = run(
            &mut slot,
            json!({"test_mode": "segfault", "breadcrumb": crumb}),
        );
        let Verdict::Finding { signature, .. } = classify(&execution) else {
            panic!("a segfault must be a finding");
        };
        crash_signatures.push(signature.to_string());
    }
    assert_eq!(
        hang_kernels,
        [
            Some("force_pass".to_string()),
            Some("sort_pairs".to_string())
        ],
        "the driver must read each run's own kernel"
    );
    assert_eq!(hang_signatures, ["hang:step", "hang:step"]);
    let distinct: std::collections::BTreeSet<_> = crash_signatures.iter().collect();
    assert_eq!(distinct.len(), 2, "{crash_signatures:?}");
}

#[test]
fn hang_that_ignores_sigterm_is_killed_anyway() {
    let mut slot = slot();
    let deadline = Duration::from_millis(300);
    let execution = slot
        .run(
            json!({"test_mode": "hang", "ignore_sigterm": true}),
            deadline,
        )
        .unwrap();
    assert!(
        matches!(execution.outcome, Outcome::Hang { .. }),
        "{}",
        execution.outcome
    );
    assert_eq!(
        killpg(Pid::from_raw(execution.worker_pid as i32), None),
        Err(Errno::ESRCH)
    );
    assert_replaced(&mut slot, &execution);
}

#[test]
fn a_stderr_flood_is_bounded_and_the_reply_still_arrives() {
    let mut slot = slot();
    let pid = echo(&mut slot);
    let bytes = 50_000_000u64;
    let execution = run(
        &mut slot,
        json!({"test_mode": "flood-stderr", "bytes": bytes}),
    );
    assert!(execution.outcome.is_reply(), "{}", execution.outcome);
    assert_eq!(
        execution.worker_pid, pid,
        "a flood does not cost the worker"
    );
    let kept = (128 << 10) as u64;
    assert_eq!(execution.stderr.total_bytes, bytes);
    assert_eq!(execution.stderr.dropped_bytes, bytes - kept);
    assert!(execution.stderr.text().len() as u64 <= kept + 64);
    // Nothing of the flood leaks into the next request's capture.
    let next = run(&mut slot, json!({}));
    assert_eq!(next.stderr.total_bytes, 0);
}

#[test]
fn exit_is_classified_with_its_code() {
    let mut slot = slot();
    let execution = run(&mut slot, json!({"test_mode": "exit", "code": 7}));
    assert_eq!(execution.outcome, Outcome::Exit { code: 7 });
    assert_replaced(&mut slot, &execution);
}

#[test]
fn allocation_failure_is_resource_exhaustion() {
    let mut slot = slot();
    let execution = run(&mut slot, json!({"test_mode": "oom"}));
    let Outcome::ResourceExhausted { detail } = &execution.outcome else {
        panic!("expected resource exhaustion, got {}", execution.outcome);
    };
    assert!(detail.starts_with("memory allocation of"), "{detail}");
    assert_replaced(&mut slot, &execution);
}

#[test]
fn a_lost_context_retires_the_worker_after_its_reply() {
    let mut slot = slot();
    let execution = run(&mut slot, json!({"context_lost": true}));
    let Outcome::Reply { payload } = &execution.outcome else {
        panic!("expected a reply, got {}", execution.outcome);
    };
    assert_eq!(payload["context_lost"], json!(true));
    assert_replaced(&mut slot, &execution);
}

#[test]
fn shutdown_stops_and_reaps_the_worker() {
    let mut slot = slot();
    let pid = echo(&mut slot);
    slot.shutdown();
    assert!(reaped(pid));
    assert_eq!(slot.pid(), None);
}

#[test]
fn a_worker_that_dies_at_start_up_is_a_spawn_error() {
    let command = WorkerCommand::new("sh")
        .arg("-c")
        .arg("echo starting up >&2; exit 3");
    let err = WorkerSlot::new(command, config())
        .run(json!({}), DEADLINE)
        .unwrap_err();
    let SpawnError::Startup { outcome, stderr } = err else {
        panic!("{err:?}")
    };
    assert_eq!(*outcome, Outcome::Exit { code: 3 });
    assert_eq!(stderr.text(), "starting up\n");
}

#[test]
fn a_worker_that_never_says_hello_is_a_start_up_hang() {
    let command = WorkerCommand::new("sh").arg("-c").arg("sleep 600 & wait");
    let config = SupervisorConfig {
        startup_timeout: Duration::from_millis(300),
        ..config()
    };
    let err = WorkerSlot::new(command, config)
        .run(json!({}), DEADLINE)
        .unwrap_err();
    let SpawnError::Startup { outcome, .. } = err else {
        panic!("{err:?}")
    };
    assert!(matches!(*outcome, Outcome::Hang { .. }), "{outcome}");
}

#[test]
fn an_oversized_message_is_a_protocol_error() {
    // A "worker" whose hello announces a 4 GiB message: refused before anything is allocated.
    let script = r#"set -- $(echo "$FORCEFIELD_WORKER_FDS" | tr , ' '); eval "printf '\377\377\377\377' >&$2"; sleep 600"#;
    // bash, not sh: the protocol descriptors may be numbered 10 or more, which dash cannot redirect to.
    let command = WorkerCommand::new("bash").arg("-c").arg(script);
    let err = WorkerSlot::new(command, config())
        .run(json!({}), DEADLINE)
        .unwrap_err();
    let SpawnError::Startup { outcome, .. } = err else {
        panic!("{err:?}")
    };
    let Outcome::ProtocolError { detail } = *outcome else {
        panic!("{outcome}")
    };
    assert!(detail.contains("exceeds the limit"), "{detail}");
}

#[test]
fn writing_to_a_dead_worker_never_raises_sigpipe_in_the_driver() {
    // A driver whose SIGPIPE is fatal (the C default, which CLIs often restore) must still
    // survive a worker that dies without reading its request. If it did not, this whole test
    // binary would die here.
    // SAFETY: setting a disposition runs no code in signal context.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }.unwrap();
    // A "worker" that says hello in 52 bytes, then exits without reading anything.
    let script = r#"set -- $(echo "$FORCEFIELD_WORKER_FDS" | tr , ' '); eval "printf '\064\000\000\000{\"type\":\"ready\",\"protocol\":1,\"pid\":1,\"backend\":\"sh\"}' >&$2"; exit 5"#;
    let mut slot = WorkerSlot::new(WorkerCommand::new("bash").arg("-c").arg(script), config());
    // Larger than any socket buffer, so the driver is still writing when the worker is gone.
    let execution = slot
        .run(json!({"big": "x".repeat(4 << 20)}), DEADLINE)
        .unwrap();
    assert_eq!(execution.outcome, Outcome::Exit { code: 5 });
    assert_eq!(execution.breadcrumb, None, "the request never started");
}

#[test]
fn a_missing_program_is_a_start_error() {
    let command = WorkerCommand::new("forcefield-no-such-program");
    let err = WorkerSlot::new(command, config())
        .run(json!({}), DEADLINE)
        .unwrap_err();
    assert!(matches!(err, SpawnError::Start { .. }), "{err:?}");
}

#[test]
fn a_worker_started_by_hand_refuses_to_run() {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker_entry", "--nocapture", "--test-threads=1"])
        .env(AS_WORKER, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(forcefield_harness::exit::BAD_INPUT));
}

#[test]
fn workers_die_with_their_driver() {
    let exe = std::env::current_exe().unwrap();
    let mut driver = Command::new(exe)
        .args(["--exact", "driver_entry", "--nocapture", "--test-threads=1"])
        .env(AS_DRIVER, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = driver.stdout.take().unwrap();
    let worker_pid: i32 = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // The test harness may print the test's name on the same line first.
        .find_map(|line| {
            line.split_once("WORKER_PID ")
                .map(|(_, pid)| pid.trim().parse().unwrap())
        })
        .expect("the driver reports its worker");
    assert!(alive(worker_pid));
    driver.kill().unwrap();
    driver.wait().unwrap();
    // The worker is not our child: once dead, whoever adopted it reaps it. Wait for that
    // (liveness, bounded generously), counting a zombie as dead.
    let started = Instant::now();
    while alive(worker_pid) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "worker {worker_pid} outlived its driver"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesized command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
