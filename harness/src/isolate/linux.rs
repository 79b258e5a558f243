/*!
The operating-system calls behind isolation, for Linux: pipes, descriptor flags, process groups,
waiting without reaping, and the few calls a freshly forked child makes before `exec`.

This module is responsible for every `unsafe` system call the supervisor and the worker need, so
that they read as state machines rather than as libc. Wait statuses are decoded here with raw
libc calls because a real-time signal number has no `nix` name and must not turn a death into an
error.
*/

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::outcome::Death;

/// How often a wait for a process to exit looks again.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// A pipe whose ends are close-on-exec (so no other child inherits them by accident) and numbered
/// above the standard streams (so a child's stdio set-up cannot clobber them).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// A connected pair of Unix stream sockets, close-on-exec and above the standard streams. The
/// request channel is one, not a pipe, only so that the driver can write to it with
/// `MSG_NOSIGNAL`: writing to a dead worker must give `EPIPE`, never a SIGPIPE that would kill the
/// driver if its SIGPIPE disposition is the default.
pub(crate) fn socket_pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0 as RawFd; 2];
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    // SAFETY: socketpair writes two descriptors into `fds`.
    Errno::result(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) })?;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let [a, b] = fds.map(|fd| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    Ok((above_stdio(a)?, above_stdio(b)?))
}

fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let raw = fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: `raw` was just returned by F_DUPFD_CLOEXEC and is owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// Makes reads and writes on `fd` return `EAGAIN` instead of blocking.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

/// Makes `fd` close-on-exec, so that processes the worker starts do not hold its channels open.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop)
}

/// In a forked child before `exec`: lets `fds` survive the `exec` and asks for SIGKILL when the
/// parent thread dies, closing the window before the worker sets that itself.
///
/// Only async-signal-safe calls (`fcntl`, `prctl`), no allocation: the child of a multithreaded
/// parent may run nothing else.
pub(crate) fn child_before_exec(fds: &[RawFd]) -> io::Result<()> {
    for &fd in fds {
        // SAFETY: plain fcntl on a descriptor number; no memory is touched.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    } == -1
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to the process group `pgid`; a group that no longer exists is not an error.
pub(crate) fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    // ESRCH (nobody left) is the expected result after a death; EPERM cannot happen for our own
    // children. Either way there is nothing more to do.
    let _ = killpg(Pid::from_raw(raw), signal);
}

/// The exit status of child `pid` if it has exited, without reaping it: the zombie keeps its pid
/// and process group id reserved, so signalling the group afterwards cannot hit a stranger.
pub(crate) fn exited_without_reaping(pid: u32) -> Option<Death> {
    // SAFETY: a zeroed siginfo_t is a valid output buffer for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: waitid writes only into `info`.
    let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
    // SAFETY: si_pid and si_status are valid for SIGCHLD siginfo; si_pid is 0 when nothing exited.
    let (si_pid, si_status) = unsafe { (info.si_pid(), info.si_status()) };
    if rc == -1 || si_pid == 0 {
        return None;
    }
    match info.si_code {
        libc::CLD_EXITED => Some(Death::Exited { code: si_status }),
        libc::CLD_KILLED | libc::CLD_DUMPED => Some(Death::Signaled { signal: si_status }),
        _ => None,
    }
}

/// Waits until child `pid` has exited or `deadline` passes, without reaping it.
pub(crate) fn wait_exited_until(pid: u32, deadline: Instant) -> Option<Death> {
    loop {
        if let Some(death) = exited_without_reaping(pid) {
            return Some(death);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(EXIT_POLL_INTERVAL.min(deadline - now));
    }
}

/// Reaps child `pid` if it has exited; returns its death, or `None` if it is still running.
pub(crate) fn reap(pid: u32) -> Option<Death> {
    let Ok(raw) = i32::try_from(pid) else {
        return None;
    };
    let mut status = 0;
    // SAFETY: waitpid writes only into `status`.
    let rc = unsafe { libc::waitpid(raw, &mut status, libc::WNOHANG) };
    if rc != raw {
        return None;
    }
    let status = ExitStatus::from_raw(status);
    match (status.code(), status.signal()) {
        (Some(code), _) => Some(Death::Exited { code }),
        (None, Some(signal)) => Some(Death::Signaled { signal }),
        (None, None) => None,
    }
}

/// Reaps child `pid` on a detached thread: for a process that ignored SIGKILL for longer than we
/// wait (stuck in the kernel, in a GPU driver say), so that it never becomes a zombie and the
/// driver never blocks on it.
pub(crate) fn reap_in_background(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let spawned = std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || {
            let mut status = 0;
            // SAFETY: blocking waitpid on our own child, writing only into `status`.
            while unsafe { libc::waitpid(raw, &mut status, 0) } == -1
                && Errno::last() == Errno::EINTR
            {}
        });
    // If no thread can be started the child stays a zombie until the driver exits: a leak, not an
    // error worth failing a campaign for.
    drop(spawned);
}

/// CPU time (user and system, every thread, exited threads included) process `pid` has used, in
/// clock ticks, from `/proc/<pid>/stat`; `None` when it cannot be read (the process is gone).
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state (3), ..., utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Reads whatever is available from a non-blocking descriptor.
pub(crate) enum ReadResult {
    /// Some bytes.
    Data(usize),
    /// Nothing now; try after the next poll.
    WouldBlock,
    /// The other end is closed and everything was read.
    Closed,
}

pub(crate) fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<ReadResult, Errno> {
    loop {
        return match nix::unistd::read(fd.as_raw_fd(), buf) {
            Ok(0) => Ok(ReadResult::Closed),
            Ok(n) => Ok(ReadResult::Data(n)),
            Err(Errno::EAGAIN) => Ok(ReadResult::WouldBlock),
            Err(Errno::EINTR) => continue,
            Err(e) => Err(e),
        };
    }
}

/// Sends as much as the non-blocking socket takes; `Ok(0)` when it is full. Never raises SIGPIPE.
pub(crate) fn send_some(socket: BorrowedFd<'_>, bytes: &[u8]) -> Result<usize, Errno> {
    loop {
        let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
        // SAFETY: send reads at most `bytes.len()` bytes from `bytes`.
        let rc = unsafe {
            libc::send(
                socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                flags,
            )
        };
        return match Errno::result(rc) {
            Ok(n) => Ok(n as usize),
            Err(Errno::EAGAIN) => Ok(0),
            Err(Errno::EINTR) => continue,
            Err(e) => Err(e),
        };
    }
}

/// [`send_some`], with `attachment` passed along (`SCM_RIGHTS`) on the first byte sent: the worker
/// receives its own descriptor for the same open file. Nothing is attached when `Ok(0)`.
pub(crate) fn send_some_with_fd(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    attachment: BorrowedFd<'_>,
) -> Result<usize, Errno> {
    const FD_BYTES: u32 = std::mem::size_of::<RawFd>() as u32;
    // u64 elements keep the control buffer aligned for `cmsghdr`.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(FD_BYTES) } as usize;
    assert!(space <= std::mem::size_of_val(&control), "control buffer");
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer holds `space` bytes, enough for one header and one descriptor, so
    // CMSG_FIRSTHDR is non-null and its data fits.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(FD_BYTES) as _;
        std::ptr::write_unaligned(
            libc::CMSG_DATA(header).cast::<RawFd>(),
            attachment.as_raw_fd(),
        );
    }
    loop {
        let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
        // SAFETY: `msg` points at `bytes` (read only) and at the control buffer built above.
        let rc = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, flags) };
        return match Errno::result(rc) {
            Ok(n) => Ok(n as usize),
            Err(Errno::EAGAIN) => Ok(0),
            Err(Errno::EINTR) => continue,
            Err(e) => Err(e),
        };
    }
}

/// Receives into `buf` from a blocking socket, keeping any descriptors passed with the bytes
/// (close-on-exec). `Ok((0, _))` when the other end closed.
pub(crate) fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<usize, Errno> {
    // Room for a few descriptors: a sender passes at most one per frame, more are closed.
    let mut control = [0u64; 16];
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is a valid empty message.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: `msg` points at `buf` and at the control buffer, both writable for their lengths.
        let rc = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        let n = match Errno::result(rc) {
            Ok(n) => n as usize,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        // SAFETY: the kernel filled `msg_controllen` bytes of well-formed headers; each
        // SCM_RIGHTS header carries descriptors now owned by this process.
        unsafe {
            let mut header = libc::CMSG_FIRSTHDR(&msg);
            while !header.is_null() {
                if (*header).cmsg_level == libc::SOL_SOCKET
                    && (*header).cmsg_type == libc::SCM_RIGHTS
                {
                    let data = libc::CMSG_DATA(header).cast::<RawFd>();
                    let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    for i in 0..bytes / std::mem::size_of::<RawFd>() {
                        let fd = std::ptr::read_unaligned(data.add(i));
                        fds.push(<OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd));
                    }
                }
                header = libc::CMSG_NXTHDR(&msg, header);
            }
        }
        return Ok(n);
    }
}
