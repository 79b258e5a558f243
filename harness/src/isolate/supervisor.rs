/*!
The driver side of isolation: starting workers, running one request at a time under a deadline,
killing and reaping them, and starting new ones.

This module is responsible for every worker's life. A [`WorkerSlot`] owns at most one live
worker; it starts one on demand, runs requests on it, and drops it after a death, a protocol
error or a reply that says the worker's context is lost, so the next request gets a fresh process.
A pool of `J` workers is `J` slots, each driven by its own thread.

# One worker's life

```text
spawn ──hello──▶ Alive ──request──▶ waiting ──reply──▶ Alive
                   │                   ├─ exited / channel closed ─▶ sweep group, drain output, reap ─▶ Gone
                   │                   ├─ deadline passed ─▶ SIGTERM group, grace, SIGKILL group, reap ─▶ Gone
                   │                   └─ bad message ─▶ SIGKILL group, reap ─▶ Gone
                   └─ shutdown: close requests, grace, SIGKILL group, reap ─▶ Gone
```

The worker runs in its own process group, so a kill reaches anything it started. A dead worker is
observed without being reaped first (`waitid` with `WNOWAIT`): the zombie keeps the group id
reserved while the group is swept, so the signal can never reach an unrelated process. The driver
reads the worker's output in the same loop that waits for the reply, so output is attributed to
the request that produced it and a worker that floods its stderr can never block.

Requests travel over a Unix socket written with `MSG_NOSIGNAL`, so a worker that dies unread
never raises SIGPIPE in the driver, whatever the driver's SIGPIPE disposition. Being in their own
process group, workers do not receive the terminal's Ctrl-C: the driver decides, and dropping a
slot kills its worker.

**Architecture Invariant:** nothing here blocks without a deadline, so a worker can never hang
the driver; a process that survives SIGKILL past [`SupervisorConfig::kill_wait`] is reaped by a
background thread.

The parent-death signal fires when the *thread* that spawned a worker exits: drive a slot from a
thread that outlives its workers (the slot's owner).
*/

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use super::breadcrumbs::{BreadcrumbError, Breadcrumbs};
use super::capture::{Capture, CapturedOutput};
use super::group::{deadline_after, terminate_group};
use super::os::{self, ReadResult};
use super::outcome::{classify_death, Death, Execution, Outcome};
use super::protocol::{
    self, CodecError, FrameDecoder, OutgoingFrame, Request, WorkerMessage, ENV_WORKER_FDS,
    ENV_WORKER_PARENT, PROTOCOL_VERSION,
};

/// How often the driver checks that a worker is alive while waiting for its reply (a process the
/// worker started could keep the reply channel open after the worker died).
const LIVENESS_INTERVAL: Duration = Duration::from_millis(50);
/// Bytes read per system call from a worker's channels.
const READ_CHUNK: usize = 64 << 10;
/// Reads of output per loop turn, so a flooding worker cannot starve the reply channel.
const OUTPUT_READS_PER_TURN: usize = 16;

/// How to start a worker process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables added to the inherited environment (for example `CUDA_VISIBLE_DEVICES`).
    pub env: Vec<(OsString, OsString)>,
}

impl WorkerCommand {
    /// `program` with no arguments and no extra environment.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The running executable with the argument `worker`: the `forcefield worker` subcommand.
    pub fn current_exe_worker() -> io::Result<Self> {
        Ok(Self::new(std::env::current_exe()?).arg("worker"))
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// Timing of a slot's workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// How long a new worker may take to say hello. Default 60 s (CUDA start-up can be slow).
    pub startup_timeout: Duration,
    /// Between SIGTERM and SIGKILL for a hung worker, and how long a worker may take to exit
    /// after closing its channel or being asked to stop. Default 500 ms.
    pub term_grace: Duration,
    /// How long to wait for a SIGKILLed worker to disappear before reaping it in the background.
    /// Default 5 s.
    pub kill_wait: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            startup_timeout: Duration::from_secs(60),
            term_grace: Duration::from_millis(500),
            kill_wait: Duration::from_secs(5),
        }
    }
}

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A pipe could not be created.
    #[error("cannot create the worker's channels")]
    Channel(#[source] Errno),
    /// The breadcrumb memory could not be created.
    #[error(transparent)]
    Breadcrumbs(#[from] BreadcrumbError),
    /// The program could not be executed.
    #[error("cannot start worker `{program}`")]
    Start {
        /// The program, as given.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The worker started but died, hung or misbehaved before its hello.
    #[error("worker failed during start-up: {outcome}")]
    Startup {
        /// What happened, classified like any execution.
        outcome: Box<Outcome>,
        /// What it printed.
        stderr: Box<CapturedOutput>,
    },
}

/// Keeps one worker alive across requests, replacing it whenever it is lost.
#[derive(Debug)]
pub struct WorkerSlot {
    command: WorkerCommand,
    config: SupervisorConfig,
    worker: Option<Worker>,
    next_request_id: u64,
    spawns: u64,
    idle_limit: Option<Duration>,
}

impl WorkerSlot {
    /// A slot that will start workers with `command`; nothing starts until the first request.
    pub fn new(command: WorkerCommand, config: SupervisorConfig) -> Self {
        Self {
            command,
            config,
            worker: None,
            next_request_id: 1,
            spawns: 0,
            idle_limit: None,
        }
    }

    /// This slot, ending a request as a hang as soon as its worker has used no CPU time and
    /// written no breadcrumb for `limit`, before its deadline: a deadlocked worker sleeps and
    /// launches nothing, a slow one computes or launches kernel after kernel (a CUDA worker
    /// sleeps while it waits for one, so its breadcrumbs are what moves), so a deadlock is found
    /// in `limit` rather than at the deadline.
    pub fn with_idle_limit(mut self, limit: Option<Duration>) -> Self {
        self.idle_limit = limit;
        self
    }

    /// Runs `payload` on this slot's worker, starting one first if there is none (or if the last
    /// one died while idle). Past `deadline` the worker is killed and the outcome is a hang.
    ///
    /// Errors only when a worker cannot be started; everything a worker does while running a
    /// request is an [`Outcome`].
    pub fn run(
        &mut self,
        payload: impl serde::Serialize,
        deadline: Duration,
    ) -> Result<Execution, SpawnError> {
        if self.worker.as_ref().is_some_and(Worker::exited) {
            // Died while idle: that death belongs to no request.
            self.worker = None;
        }
        let worker = match &mut self.worker {
            Some(worker) => worker,
            none => {
                let worker = Worker::spawn(&self.command, self.config.clone())?;
                self.spawns += 1;
                none.insert(worker)
            }
        };
        let id = self.next_request_id;
        self.next_request_id += 1;
        let execution = worker.run(id, payload, deadline, self.idle_limit);
        if worker.is_gone() {
            self.worker = None;
        } else if context_lost(&execution.outcome) {
            if let Some(worker) = self.worker.take() {
                worker.shutdown();
            }
        }
        Ok(execution)
    }

    /// The live worker's process id, if one is running.
    pub fn pid(&self) -> Option<u32> {
        self.worker.as_ref().map(|w| w.pid)
    }

    /// The backend the live worker announced, if one is running.
    pub fn backend(&self) -> Option<&str> {
        self.worker.as_ref().map(|w| w.backend.as_str())
    }

    /// How many workers this slot has started.
    pub fn spawns(&self) -> u64 {
        self.spawns
    }

    /// Stops the live worker, if any: it is asked to exit, then killed after the grace period.
    pub fn shutdown(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.shutdown();
        }
    }
}

fn context_lost(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Reply { payload } if payload.get("context_lost") == Some(&serde_json::Value::Bool(true)))
}

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Running and (as far as we know) idle or working on a request.
    Alive,
    /// Killed or exited, and reaped (or handed to a background reaper).
    Gone,
}

/// What waiting on a worker produced.
enum Event {
    /// A complete message.
    Message(WorkerMessage),
    /// The process exited (observed, not reaped).
    Exited(Death),
    /// The reply channel ended.
    ChannelClosed,
    /// The deadline passed first.
    DeadlinePassed,
    /// The worker used no CPU time and wrote no breadcrumb for the idle limit.
    Idle,
    /// The channel carried something that is not a valid message, or failed.
    Broken(String),
}

/// One worker process and the driver's ends of its channels.
struct Worker {
    pid: u32,
    backend: String,
    config: SupervisorConfig,
    life: Life,
    /// Driver to worker; `None` once closed.
    requests: Option<OwnedFd>,
    /// Worker to driver.
    replies: OwnedFd,
    /// The worker's merged stdout and stderr; `None` once it ended.
    output: Option<OwnedFd>,
    decoder: FrameDecoder,
    capture: Capture,
    crumbs: Breadcrumbs,
    /// Keeps the group registered for a forced stop (SIGTERM, a second Ctrl-C) until it is reaped.
    quit: Option<crate::interrupt::QuitGuard>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("pid", &self.pid)
            .field("backend", &self.backend)
            .field("life", &self.life)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts a worker and waits for its hello.
    fn spawn(command: &WorkerCommand, config: SupervisorConfig) -> Result<Self, SpawnError> {
        let (request_read, request_write) = os::socket_pair().map_err(SpawnError::Channel)?;
        let (reply_read, reply_write) = os::pipe().map_err(SpawnError::Channel)?;
        let (output_read, output_write) = os::pipe().map_err(SpawnError::Channel)?;
        let (crumbs, crumb_fd) = Breadcrumbs::create_shared()?;
        let inherited = [
            request_read.as_raw_fd(),
            reply_write.as_raw_fd(),
            crumb_fd.as_raw_fd(),
        ];
        let output_for_stdout = output_write.try_clone().map_err(|e| SpawnError::Start {
            program: command.program.display().to_string(),
            source: e,
        })?;

        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .env(
                ENV_WORKER_FDS,
                format!("{},{},{}", inherited[0], inherited[1], inherited[2]),
            )
            .env(ENV_WORKER_PARENT, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(output_for_stdout))
            .stderr(Stdio::from(output_write))
            .process_group(0);
        // SAFETY: the closure only calls async-signal-safe functions (see `child_before_exec`).
        unsafe {
            cmd.pre_exec(move || os::child_before_exec(&inherited));
        }
        let spawned = cmd.spawn();
        // The child's ends must be closed here, or the driver would never see them end.
        drop(cmd);
        drop((request_read, reply_write, crumb_fd));
        let child = spawned.map_err(|source| SpawnError::Start {
            program: command.program.display().to_string(),
            source,
        })?;
        // `Child` neither kills nor reaps on drop; the worker's life is managed by pid from here.
        let pid = child.id();
        drop(child);

        let mut worker = Self {
            pid,
            backend: String::new(),
            config,
            life: Life::Alive,
            requests: Some(request_write),
            replies: reply_read,
            output: Some(output_read),
            decoder: FrameDecoder::new(),
            capture: Capture::default(),
            crumbs,
            quit: Some(crate::interrupt::kill_group_on_quit(
                nix::unistd::Pid::from_raw(pid as i32),
            )),
        };
        let nonblocking = [
            worker.requests.as_ref(),
            Some(&worker.replies),
            worker.output.as_ref(),
        ]
        .into_iter()
        .flatten()
        .try_for_each(|fd| os::set_nonblocking(fd.as_fd()));
        if let Err(errno) = nonblocking {
            worker.kill();
            return Err(SpawnError::Channel(errno));
        }
        worker.handshake()?;
        Ok(worker)
    }

    fn handshake(&mut self) -> Result<(), SpawnError> {
        let started = Instant::now();
        let nothing = OutgoingFrame {
            bytes: Vec::new(),
            attachment: None,
        };
        let event = self.exchange(
            nothing,
            deadline_after(started, self.config.startup_timeout),
            None,
        );
        let outcome = match event {
            Event::Message(WorkerMessage::Ready(ready)) if ready.protocol == PROTOCOL_VERSION => {
                self.backend = ready.backend;
                self.drain_output_now();
                // Start-up chatter belongs to no request.
                self.capture.take();
                return Ok(());
            }
            Event::Message(WorkerMessage::Ready(ready)) => {
                self.kill();
                Outcome::ProtocolError {
                    detail: format!(
                        "worker speaks protocol {}, the driver speaks {PROTOCOL_VERSION}",
                        ready.protocol
                    ),
                }
            }
            Event::Message(WorkerMessage::Reply(_)) => {
                self.kill();
                Outcome::ProtocolError {
                    detail: "a reply before the hello".into(),
                }
            }
            other => self.conclude_death(other, started),
        };
        Err(SpawnError::Startup {
            outcome: Box::new(outcome),
            stderr: Box::new(self.capture.take()),
        })
    }

    /// Whether the worker has exited (it is not reaped by this).
    fn exited(&self) -> bool {
        self.life == Life::Gone || os::exited_without_reaping(self.pid).is_some()
    }

    fn is_gone(&self) -> bool {
        self.life == Life::Gone
    }

    /// Runs one request to its outcome.
    fn run(
        &mut self,
        id: u64,
        payload: impl serde::Serialize,
        deadline: Duration,
        idle_limit: Option<Duration>,
    ) -> Execution {
        let started = Instant::now();
        let frame = match protocol::encode_request(&Request { id, payload }) {
            Ok(frame) => frame,
            // The request never left the driver: the worker is untouched and stays.
            Err(e) => {
                let outcome = Outcome::ProtocolError {
                    detail: format!("request not sent: {e}"),
                };
                return self.execution(id, outcome, started);
            }
        };
        let outcome = match self.exchange(frame, deadline_after(started, deadline), idle_limit) {
            Event::Message(WorkerMessage::Reply(reply)) if reply.id == id => {
                self.drain_output_now();
                Outcome::Reply {
                    payload: reply.payload,
                }
            }
            Event::Message(WorkerMessage::Reply(reply)) => {
                self.kill();
                Outcome::ProtocolError {
                    detail: format!("reply to request {} while {id} was running", reply.id),
                }
            }
            Event::Message(WorkerMessage::Ready(_)) => {
                self.kill();
                Outcome::ProtocolError {
                    detail: "a second hello instead of a reply".into(),
                }
            }
            other => self.conclude_death(other, started),
        };
        self.execution(id, outcome, started)
    }

    fn execution(&mut self, id: u64, outcome: Outcome, started: Instant) -> Execution {
        let crumb = self.crumbs.snapshot();
        Execution {
            request_id: id,
            outcome,
            // A breadcrumb of an earlier request says nothing about this one.
            breadcrumb: (crumb.request_id == id).then_some(crumb),
            stderr: self.capture.take(),
            duration: started.elapsed(),
            worker_pid: self.pid,
        }
    }

    /// Turns anything but a message into an outcome, leaving the worker gone.
    fn conclude_death(&mut self, event: Event, started: Instant) -> Outcome {
        match event {
            Event::Message(_) => {
                self.kill();
                Outcome::ProtocolError {
                    detail: "unexpected message".into(),
                }
            }
            Event::Exited(death) => self.bury(death),
            Event::ChannelClosed => {
                // Exiting closes the channel a moment before the exit is visible.
                let grace = deadline_after(Instant::now(), self.config.term_grace);
                match os::wait_exited_until(self.pid, grace) {
                    Some(death) => self.bury(death),
                    None => {
                        self.kill();
                        Outcome::ProtocolError {
                            detail: "worker closed its reply channel but kept running".into(),
                        }
                    }
                }
            }
            Event::DeadlinePassed | Event::Idle => {
                let after = started.elapsed();
                self.terminate();
                Outcome::Hang { after }
            }
            Event::Broken(detail) => {
                self.kill();
                Outcome::ProtocolError { detail }
            }
        }
    }

    /// After an exit we observed: classify it with everything the worker printed.
    fn bury(&mut self, death: Death) -> Outcome {
        self.finish();
        classify_death(death, &self.capture.peek())
    }

    /// Hang: SIGTERM to the group, the grace period, then SIGKILL.
    fn terminate(&mut self) {
        terminate_group(self.pid, self.config.term_grace);
        self.finish();
    }

    /// SIGKILL to the group at once.
    fn kill(&mut self) {
        if self.life == Life::Alive {
            os::signal_group(self.pid, Signal::SIGKILL);
            self.finish();
        }
    }

    /// Asks the worker to exit by closing its request channel, then kills it after the grace.
    fn shutdown(mut self) {
        self.requests = None;
        let grace = deadline_after(Instant::now(), self.config.term_grace);
        if os::wait_exited_until(self.pid, grace).is_none() {
            os::signal_group(self.pid, Signal::SIGKILL);
        }
        self.finish();
    }

    /// The end of every life: sweep the group while the (exited or dying) leader still holds its
    /// id, collect the last output, reap.
    fn finish(&mut self) {
        if self.life == Life::Gone {
            return;
        }
        let exited = os::wait_exited_until(
            self.pid,
            deadline_after(Instant::now(), self.config.kill_wait),
        );
        // Whatever the worker started dies too; the group id is still ours because the leader
        // is not reaped yet.
        os::signal_group(self.pid, Signal::SIGKILL);
        self.drain_output_until(deadline_after(Instant::now(), self.config.term_grace));
        self.requests = None;
        self.output = None;
        // Unregistered while the leader still holds the group id: a forced stop never signals a
        // group that is no longer ours.
        self.quit = None;
        let reaped = exited.is_some() && os::reap(self.pid).is_some();
        if !reaped {
            os::reap_in_background(self.pid);
        }
        self.life = Life::Gone;
    }

    /// Waits for one message, the worker's exit, the deadline or (with `idle_limit`) that long
    /// without the worker using CPU time or writing a breadcrumb (a CUDA worker waiting for its
    /// kernels sleeps, but launches the next one soon), while writing `outgoing` to the worker and capturing
    /// its output.
    fn exchange(
        &mut self,
        mut outgoing: OutgoingFrame,
        deadline: Instant,
        idle_limit: Option<Duration>,
    ) -> Event {
        let mut sent = 0;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut next_liveness_check = Instant::now() + LIVENESS_INTERVAL;
        // CPU ticks and breadcrumb writes last seen, and when either last changed.
        let progress = |slot: &Self| (os::cpu_ticks(slot.pid), slot.crumbs.sequence());
        let mut busy = (progress(self), Instant::now());
        loop {
            match self.decoder.next_frame() {
                Ok(Some(body)) => {
                    return match protocol::decode::<WorkerMessage>(&body) {
                        Ok(message) => Event::Message(message),
                        Err(e) => Event::Broken(error_chain(&e)),
                    }
                }
                Ok(None) => {}
                Err(e) => return Event::Broken(error_chain(&e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Event::DeadlinePassed;
            }
            if now >= next_liveness_check {
                if let Some(death) = os::exited_without_reaping(self.pid) {
                    return Event::Exited(death);
                }
                if let Some(limit) = idle_limit {
                    let seen = progress(self);
                    if seen != busy.0 || seen.0.is_none() {
                        busy = (seen, now);
                    } else if now.duration_since(busy.1) >= limit {
                        return Event::Idle;
                    }
                }
                next_liveness_check = now + LIVENESS_INTERVAL;
            }
            let wake = deadline.min(next_liveness_check) - now;
            let ready = match self.wait_ready(sent < outgoing.bytes.len(), wake) {
                Ok(ready) => ready,
                Err(errno) => return Event::Broken(format!("poll failed: {errno}")),
            };
            if ready.output {
                self.read_output(&mut buf, OUTPUT_READS_PER_TURN);
            }
            if ready.requests {
                if let Some(fd) = &self.requests {
                    match protocol::send_some(fd.as_fd(), &mut outgoing, sent) {
                        Ok(n) => sent += n,
                        // EPIPE: the worker closed its end, so it is going away; its exit or the
                        // end of the reply channel will say how.
                        Err(_) => {
                            sent = outgoing.bytes.len();
                            self.requests = None;
                        }
                    }
                }
            }
            if ready.replies {
                match os::read_some(self.replies.as_fd(), &mut buf) {
                    Ok(ReadResult::Data(n)) => self.decoder.push(&buf[..n]),
                    Ok(ReadResult::WouldBlock) => {}
                    Ok(ReadResult::Closed) => return Event::ChannelClosed,
                    Err(errno) => return Event::Broken(format!("reading replies failed: {errno}")),
                }
            }
        }
    }

    /// Polls the channels; says which are ready.
    fn wait_ready(&self, want_write: bool, wake: Duration) -> Result<Ready, Errno> {
        let io_flags = PollFlags::POLLIN;
        let mut fds = vec![PollFd::new(self.replies.as_fd(), io_flags)];
        let output_index = self.output.as_ref().map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), io_flags));
            fds.len() - 1
        });
        let requests_index = self.requests.as_ref().filter(|_| want_write).map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
            fds.len() - 1
        });
        // Round up, so a wait shorter than a millisecond does not spin.
        let millis = wake.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Ready::default()),
            Err(e) => return Err(e),
        }
        let is_ready = |index: Option<usize>| {
            index
                .and_then(|i| fds[i].revents())
                .is_some_and(|revents| !revents.is_empty())
        };
        Ok(Ready {
            replies: is_ready(Some(0)),
            output: is_ready(output_index),
            requests: is_ready(requests_index),
        })
    }

    /// Reads up to `reads` chunks of output; notes when it ends.
    fn read_output(&mut self, buf: &mut [u8], reads: usize) -> bool {
        for _ in 0..reads {
            let Some(fd) = &self.output else { return true };
            match os::read_some(fd.as_fd(), buf) {
                Ok(ReadResult::Data(n)) => self.capture.push(&buf[..n]),
                Ok(ReadResult::WouldBlock) => return false,
                Ok(ReadResult::Closed) | Err(_) => {
                    self.output = None;
                    return true;
                }
            }
        }
        false
    }

    /// Reads the output already written, without waiting for more: everything the worker printed
    /// before its last message is in the pipe by the time the message arrives.
    fn drain_output_now(&mut self) {
        let mut buf = vec![0u8; READ_CHUNK];
        // Bounded so a worker thread printing without pause cannot keep the driver here.
        self.read_output(&mut buf, 4 * OUTPUT_READS_PER_TURN);
    }

    /// Reads the output until it ends (every writer gone) or `deadline`.
    fn drain_output_until(&mut self, deadline: Instant) {
        let mut buf = vec![0u8; READ_CHUNK];
        while let Some(fd) = &self.output {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            let millis = (deadline - now).as_millis().clamp(1, i32::MAX as u128) as i32;
            let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(_) => return,
            }
            if self.read_output(&mut buf, OUTPUT_READS_PER_TURN) {
                return;
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which channels `poll` found ready.
#[derive(Default)]
struct Ready {
    replies: bool,
    output: bool,
    requests: bool,
}

/// An error and its causes on one line, for outcome details.
fn error_chain(error: &CodecError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
