/*!
Ctrl-C: the first one asks long work to stop cleanly (campaigns stop dispatching, finish what is in
flight, skip minimization and still write their reports); a second one exits at once, killing first
the process groups registered with [`kill_group_on_quit`] (children in their own group do not get
the terminal's SIGINT, and not all of them die with their parent).
*/

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static PRESSES: AtomicUsize = AtomicUsize::new(0);
/// Process groups to kill before a second Ctrl-C exits.
static GROUPS: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

/// Keeps a process group registered for [`kill_group_on_quit`]; dropping it unregisters the group.
#[derive(Debug)]
#[must_use = "the group is unregistered when this is dropped"]
pub struct QuitGuard(Pid);

impl Drop for QuitGuard {
    fn drop(&mut self) {
        let mut groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = groups.iter().position(|g| *g == self.0) {
            groups.swap_remove(i);
        }
    }
}

/// Registers process group `pgid` (a child started with `process_group(0)`) to be killed with
/// SIGKILL if the user quits with a second Ctrl-C while the returned guard lives.
pub fn kill_group_on_quit(pgid: Pid) -> QuitGuard {
    GROUPS.lock().unwrap_or_else(|p| p.into_inner()).push(pgid);
    QuitGuard(pgid)
}

/// Kills the registered groups (the second Ctrl-C's last act).
fn kill_registered_groups() {
    let groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    for g in groups.iter() {
        let _ = killpg(*g, Signal::SIGKILL);
    }
}

/// The flag that Ctrl-C sets, installing the handler on first use.
pub fn flag() -> Arc<AtomicBool> {
    Arc::clone(FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = Arc::clone(&flag);
        // Failing to install (a handler already set by an embedding program) leaves Ctrl-C's default
        // behaviour: the work is lost but nothing else breaks.
        let _ = ctrlc::set_handler(move || {
            if PRESSES.fetch_add(1, Ordering::SeqCst) >= 1 {
                kill_registered_groups();
                std::process::exit(130);
            }
            eprintln!("interrupted: finishing cases in flight and writing the report (Ctrl-C again to quit now)");
            handler_flag.store(true, Ordering::SeqCst);
        });
        flag
    }))
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    #[test]
    fn registered_groups_are_killed_and_dropped_guards_forget_theirs() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = Pid::from_raw(child.id() as i32);
        let forgotten = kill_group_on_quit(Pid::from_raw(i32::MAX));
        drop(forgotten);
        let _guard = kill_group_on_quit(pgid);
        assert!(GROUPS.lock().unwrap().contains(&pgid));
        assert!(!GROUPS.lock().unwrap().contains(&Pid::from_raw(i32::MAX)));
        kill_registered_groups();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    }
}
