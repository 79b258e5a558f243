/*!
One command run to its end in a process group of its own, under a deadline: for runs that are not
workers (compute-sanitizer's re-runs of a case), with the same ending as a worker's.

[`run_in_group`] starts the command as the leader of a new group, waits until it exits, its
deadline passes or a stop flag is set, then ends the group with [`terminate_group`] (SIGTERM to
the group, a grace period, SIGKILL) — the sequence [`crate::isolate::WorkerSlot`] uses for a hung
worker — sweeps the group with SIGKILL while the leader still holds the group id, and reaps the
leader (on a background thread when it outlives SIGKILL, stuck in a GPU driver say). Output goes
wherever the caller pointed the command's stdio. All raw calls are in `linux.rs`.
*/

use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::os;
use super::outcome::Death;

/// How often a bounded wait looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The time limits of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupLimits {
    /// From the start until the group is terminated.
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL.
    pub term_grace: Duration,
    /// How long to wait for a SIGKILLed leader to disappear before reaping it in the background.
    pub kill_wait: Duration,
}

/// How a run in a process group ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupEnd {
    /// The leader exited by itself with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The leader was killed by this signal before its deadline (or outlived SIGKILL).
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The deadline passed; the group was terminated.
    TimedOut,
    /// The stop flag was set; the group was terminated.
    Stopped,
}

/// Runs `command` (stdin from `/dev/null`, stdout and stderr as the caller set them) as the leader of a new
/// process group until it exits, `limits.timeout` passes or `stop` is set; the group never
/// outlives the call. The error is the command's failure to start.
///
/// The group is the command's own, so a Ctrl-C at the terminal does not reach it: `stop` (the
/// interrupt flag) is how it learns of one; a forced stop (a second Ctrl-C) kills the group.
pub fn run_in_group(
    command: &mut Command,
    limits: &GroupLimits,
    stop: &AtomicBool,
) -> io::Result<GroupEnd> {
    let mut child = command.stdin(Stdio::null()).process_group(0).spawn()?;
    let Ok(raw) = i32::try_from(child.id()) else {
        // A pid that does not fit a pid_t cannot happen on Linux; do not signal a wrong group.
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::other("process id out of range"));
    };
    // `Child` neither kills nor reaps on drop; the run's life is managed by pid from here.
    let pid = child.id();
    drop(child);
    // A second Ctrl-C exits at once; the group must not outlive it.
    let quit = crate::interrupt::kill_group_on_quit(Pid::from_raw(raw));
    let waited = wait_exited(pid, deadline_after(Instant::now(), limits.timeout), stop);
    if waited != Waited::Exited {
        terminate_group(pid, limits.term_grace);
    }
    // The leader has exited (or is dying) but is not reaped: its group id is still ours, so this
    // sweep cannot reach an unrelated process.
    let exited = os::wait_exited_until(pid, deadline_after(Instant::now(), limits.kill_wait));
    os::signal_group(pid, Signal::SIGKILL);
    drop(quit);
    let death = match exited {
        Some(_) => os::reap(pid),
        None => {
            os::reap_in_background(pid);
            None
        }
    };
    Ok(match (waited, death) {
        (Waited::Deadline, _) => GroupEnd::TimedOut,
        (Waited::Stopped, _) => GroupEnd::Stopped,
        (Waited::Exited, Some(Death::Exited { code })) => GroupEnd::Exited { code },
        (Waited::Exited, Some(Death::Signaled { signal })) => GroupEnd::Signaled { signal },
        (Waited::Exited, None) => GroupEnd::Signaled {
            signal: Signal::SIGKILL as i32,
        },
    })
}

/// Ends the process group `pgid`: SIGTERM, up to `grace` for its leader to exit, then SIGKILL.
/// The leader is left unreaped, so the group id stays ours for a final sweep.
pub(crate) fn terminate_group(pgid: u32, grace: Duration) {
    os::signal_group(pgid, Signal::SIGTERM);
    if os::wait_exited_until(pgid, deadline_after(Instant::now(), grace)).is_none() {
        os::signal_group(pgid, Signal::SIGKILL);
    }
}

/// `start + wait`, or a century from `start` for waits too long to represent ("no deadline").
pub(crate) fn deadline_after(start: Instant, wait: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    start.checked_add(wait.min(CENTURY)).unwrap_or(start)
}

/// How a bounded wait for a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waited {
    /// The child exited (it is left unreaped).
    Exited,
    /// The deadline came first.
    Deadline,
    /// The stop flag was set first.
    Stopped,
}

/// Waits until child `pid` has exited, `deadline` passes or `stop` is set, whichever is first;
/// the child is left unreaped.
fn wait_exited(pid: u32, deadline: Instant, stop: &AtomicBool) -> Waited {
    loop {
        if os::exited_without_reaping(pid).is_some() {
            return Waited::Exited;
        }
        if stop.load(Ordering::Relaxed) {
            return Waited::Stopped;
        }
        let now = Instant::now();
        if now >= deadline {
            return Waited::Deadline;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}
