/*!
Stop requests: Ctrl-C (SIGINT), SIGTERM (what CI systems send a job past its limit) and SIGHUP (a
closed terminal).

The first Ctrl-C asks long work to stop cleanly: campaigns stop dispatching, finish what is in
flight, stop minimizing and still write their reports. SIGTERM, SIGHUP and a second Ctrl-C are a
*forced* stop: the process groups registered with [`kill_group_on_quit`] (every worker, see
`isolate::supervisor`) are killed at once, and then

* a command that asked for [`campaign_flag`] gets control back to write what it has (the campaign
  discards the executions that the kill cut short and writes its summary, `"interrupted": true`);
  one more signal exits at once;
* any other command exits at once.

Either way the exit code is `128 + the signal's number` ([`exit_code`]): 130 after Ctrl-C, 143 after
SIGTERM, 129 after SIGHUP, as a shell reports a process killed by that signal.

The handler itself only writes the signal's number into a pipe (async-signal-safe); a thread reads
it and does the rest, so printing, locking and killing happen in ordinary code.
*/

use std::io::Read as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use nix::sys::signal::{killpg, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// Set by a forced stop (SIGTERM, SIGHUP, a second Ctrl-C), before the groups are killed.
static FORCED: AtomicBool = AtomicBool::new(false);
/// Whether the command writes its outputs after a forced stop instead of exiting at once.
static WRITE_AFTER_FORCED: AtomicBool = AtomicBool::new(false);
/// The last stop signal received (0: none).
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The write end of the signal pipe (-1 until installed).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// Process groups to kill on a forced stop.
static GROUPS: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

/// The signals that ask a command to stop.
const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

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
/// SIGKILL on a forced stop while the returned guard lives. Drop the guard before reaping the
/// group's leader, so that a registered group id always belongs to our (maybe dead) child.
pub fn kill_group_on_quit(pgid: Pid) -> QuitGuard {
    GROUPS.lock().unwrap_or_else(|p| p.into_inner()).push(pgid);
    QuitGuard(pgid)
}

/// Kills the registered groups with SIGKILL.
pub fn kill_registered_groups() {
    kill_groups(&GROUPS.lock().unwrap_or_else(|p| p.into_inner()));
}

fn kill_groups(groups: &[Pid]) {
    for g in groups {
        let _ = killpg(*g, Signal::SIGKILL);
    }
}

/// The signal handler: the signal's number into the pipe, nothing else (async-signal-safe).
extern "C" fn on_signal(signo: libc::c_int) {
    // SAFETY: errno is thread-local; saving and restoring it keeps the interrupted code's value.
    let saved = unsafe { *libc::__errno_location() };
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signo as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is one valid byte. A full pipe (signals
        // faster than the thread reads) drops the byte: the stop is already under way.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// What the signal thread does with one signal.
fn handle(signal: Signal, flag: &AtomicBool) {
    LAST_SIGNAL.store(signal as i32, Ordering::SeqCst);
    let first = !flag.swap(true, Ordering::SeqCst);
    if first && signal == Signal::SIGINT {
        eprintln!(
            "interrupted: finishing cases in flight and writing the report (Ctrl-C again to stop now)"
        );
        return;
    }
    let already_forced = FORCED.swap(true, Ordering::SeqCst);
    kill_registered_groups();
    if already_forced || !WRITE_AFTER_FORCED.load(Ordering::SeqCst) {
        std::process::exit(128 + signal as i32);
    }
    eprintln!("{signal}: workers stopped, writing what was found (once more to quit at once)");
}

/// Installs the handlers and the thread that serves them.
fn install(flag: Arc<AtomicBool>) {
    let Ok((read, write)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        // Without a pipe the signals keep their default action: the work is lost, nothing breaks.
        return;
    };
    let _ = nix::fcntl::fcntl(
        write.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    // The write end lives as long as the process: the handler may run at any time.
    PIPE_WRITE.store(std::os::fd::IntoRawFd::into_raw_fd(write), Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || serve(read, &flag));
    if spawned.is_err() {
        return;
    }
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in STOP_SIGNALS {
        // SAFETY: `on_signal` is async-signal-safe (it only writes to a pipe, see above).
        let _ = unsafe { nix::sys::signal::sigaction(signal, &action) };
    }
}

/// The signal thread: one byte per signal.
fn serve(read: OwnedFd, flag: &AtomicBool) {
    let mut pipe = std::fs::File::from(read);
    let mut byte = [0u8; 1];
    while let Ok(1) = pipe.read(&mut byte) {
        if let Ok(signal) = Signal::try_from(i32::from(byte[0])) {
            handle(signal, flag);
        }
    }
}

/// The flag that a stop request sets, installing the handlers on first use.
pub fn flag() -> Arc<AtomicBool> {
    Arc::clone(FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        install(Arc::clone(&flag));
        flag
    }))
}

/// [`flag`], for a command that writes its outputs after a forced stop too (a campaign): then
/// the handler kills the workers and returns, and [`forced`] says to discard what they were doing.
pub fn campaign_flag() -> Arc<AtomicBool> {
    WRITE_AFTER_FORCED.store(true, Ordering::SeqCst);
    flag()
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// Whether the stop is forced: workers were killed, so what they were running has no verdict.
pub fn forced() -> bool {
    FORCED.load(Ordering::SeqCst)
}

/// The exit code a stopped command ends with (`128 + signal`), if a stop signal arrived.
pub fn exit_code() -> Option<i32> {
    match LAST_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(128 + n),
    }
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
        // Only ours: other tests of this process may have workers registered.
        let registered: Vec<Pid> = GROUPS.lock().unwrap().clone();
        kill_groups(
            &registered
                .into_iter()
                .filter(|g| *g == pgid)
                .collect::<Vec<_>>(),
        );
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    }
}
