/*!
The idle check of a worker slot: a worker that uses no CPU time while it runs a request is a hang
long before its deadline (a deadlock sleeps), and a worker that computes for longer than the idle
limit is not one (a slow case is not a hang).
*/

use std::time::Duration;

use forcefield_harness::case::Case;
use forcefield_harness::hunt::campaign::run_isolated;
use forcefield_harness::isolate::{Outcome, SupervisorConfig, WorkerCommand, WorkerSlot};

const BIN: &str = env!("CARGO_BIN_EXE_forcefield");

fn worker() -> WorkerCommand {
    WorkerCommand::new(BIN)
        .arg("worker")
        .arg("--threads")
        .arg("1")
        .env(forcefield_harness::isolate::ENV_WORKER_TEST_MODES, "1")
}

#[test]
fn a_sleeping_worker_is_a_hang_before_its_deadline() {
    let mut slot = WorkerSlot::new(worker(), SupervisorConfig::default())
        .with_idle_limit(Some(Duration::from_millis(500)));
    let deadline = Duration::from_secs(300);
    let execution = slot
        .run(serde_json::json!({"test_mode": "hang"}), deadline)
        .unwrap();
    let Outcome::Hang { after } = execution.outcome else {
        panic!("expected a hang, got {}", execution.outcome);
    };
    // Found by the idle check, not by the deadline.
    assert!(after < deadline / 2, "{after:?}");
    slot.shutdown();
}

#[test]
fn a_computing_worker_outlives_a_short_idle_limit() {
    // Seconds of stepping (0.34 s for 40 steps on an idle 2-core machine, so 300 here): many
    // times the idle limit, all of it on the CPU.
    let case = Case::from_json(
        r#"{"format":"forcefield-case/1","graph":{"num_nodes":3000,"edges":[]},"ops":[{"op":"step","count":300}]}"#,
    )
    .unwrap();
    let mut slot = WorkerSlot::new(worker(), SupervisorConfig::default())
        .with_idle_limit(Some(Duration::from_millis(500)));
    let (verdict, execution) = run_isolated(&mut slot, &case, true, Duration::from_secs(300));
    let execution = execution.unwrap();
    assert!(
        execution.duration > Duration::from_millis(500),
        "the case must run past the idle limit to test it: {:?}",
        execution.duration
    );
    assert_eq!(
        verdict,
        forcefield_harness::client::signature::Verdict::Pass,
        "{}",
        execution.outcome
    );
    slot.shutdown();
}
