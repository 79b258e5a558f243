/*!
[`ProcessTarget`]: a target in another process, of any language, driven through `forcefield-target/1`.

The command line is split into words as a POSIX shell would (`shell-words`), but no shell runs: the
first word is the program. The child leads its own process group, so that a target which starts
helpers of its own (a Python interpreter, a GPU server) is stopped as a whole.

Life of a target process:

```text
spawn ── hello ──> serving ── shutdown / drop ──> exited
                    │  reply not in time: SIGTERM to the group, grace, SIGKILL ──> Hung
                    │  stdout closed / stdin broken: reaped ──> Died (exit code or signal, stderr tail)
                    └  a line that is not a reply ──> Protocol
```

After `Died`, `Hung` or `Protocol`, every further request returns the same error: the process is
gone (killed if it still ran).
*/

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::protocol::{Hello, Reply, Request, RequestBody, PROTOCOL};
use crate::target::{
    Attributes, Buffer, Capabilities, Capability, Counts, Csr, Death, Edge, EnvFault, ExitKind,
    Graph, GridStage, Params, Point, Result, Target, TargetError, TargetInfo,
};
use crate::wire;

/// Lines of the target's stderr kept for a crash report.
pub const STDERR_TAIL_LINES: usize = 20;
/// Longest reply line accepted (a million nodes' positions fit several times).
pub const MAX_REPLY_BYTES: usize = 256 << 20;

/// How a target process is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessOptions {
    /// Longest wait for one reply (the handshake included) before the target is declared hung.
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL when the target must be stopped.
    pub grace: Duration,
    /// Whether the target is killed (SIGKILL) when the thread that spawned it ends, however it
    /// ends: for a driver that may itself be killed, such as a worker process hosting the target,
    /// so that no target outlives it. The target's own helpers are not reached.
    pub die_with_parent: bool,
}

impl Default for ProcessOptions {
    /// 30 s per request, 1 s of grace, the target left to end by itself when its driver dies
    /// (its stdin closes).
    fn default() -> Self {
        ProcessOptions {
            timeout: Duration::from_secs(30),
            grace: Duration::from_secs(1),
            die_with_parent: false,
        }
    }
}

/// Why a target process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The command line is empty or not valid shell words.
    #[error("bad target command line `{command}`: {reason}")]
    CommandLine {
        /// The command line.
        command: String,
        /// What is wrong.
        reason: String,
    },
    /// The program does not exist or cannot be executed.
    #[error("cannot start target `{program}`: {source}")]
    Start {
        /// The program.
        program: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// It started, but the handshake failed.
    #[error("target `{command}` failed the handshake: {source}")]
    Handshake {
        /// The command line.
        command: String,
        /// What went wrong.
        #[source]
        source: TargetError,
    },
}

/// A target process speaking `forcefield-target/1`.
pub struct ProcessTarget {
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_reader: Option<JoinHandle<()>>,
    options: ProcessOptions,
    next_id: u64,
    hello: Hello,
    capabilities: Capabilities,
    /// Set once the process is gone; every later request returns it.
    gone: Option<TargetError>,
}

impl ProcessTarget {
    /// Starts `command_line` and shakes hands.
    ///
    /// ```no_run
    /// use forcefield_target::{ProcessOptions, ProcessTarget, Target};
    /// let mut t = ProcessTarget::spawn("python3 examples/python-target/target.py", ProcessOptions::default())?;
    /// println!("{} {}", t.hello().name, t.info().capabilities);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn(command_line: &str, options: ProcessOptions) -> Result<Self, SpawnError> {
        let words = shell_words::split(command_line).map_err(|e| SpawnError::CommandLine {
            command: command_line.into(),
            reason: e.to_string(),
        })?;
        let Some((program, args)) = words.split_first() else {
            return Err(SpawnError::CommandLine {
                command: command_line.into(),
                reason: "it is empty".into(),
            });
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if options.die_with_parent {
            // SAFETY: the closure runs in the forked child before `exec` and makes one
            // async-signal-safe system call (prctl); it allocates nothing and takes no lock.
            unsafe {
                command.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
        }
        let mut child = command.spawn().map_err(|source| SpawnError::Start {
            program: program.clone(),
            source,
        })?;
        // The pipes were requested just above, so they are there.
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SpawnError::Start {
                program: program.clone(),
                source: std::io::Error::other("no pipes to the child"),
            });
        };

        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let line = read_bounded_line(&mut reader);
                let end = !matches!(line, Ok(Some(_)));
                let sent = match line {
                    Ok(Some(l)) => tx.send(Ok(l)),
                    Ok(None) => break,
                    Err(e) => tx.send(Err(e)),
                };
                if end || sent.is_err() {
                    break;
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr_tail);
        let stderr_reader = std::thread::spawn(move || {
            let reader = BufReader::new(stderr);
            for line in reader.split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(text);
                }
            }
        });

        let mut target = ProcessTarget {
            command: command_line.into(),
            child,
            stdin: Some(stdin),
            lines,
            stderr_tail,
            stderr_reader: Some(stderr_reader),
            options,
            next_id: 1,
            hello: Hello {
                name: String::new(),
                version: String::new(),
                protocol: String::new(),
                capabilities: Vec::new(),
            },
            capabilities: Capabilities::none(),
            gone: None,
        };
        let handshake = target
            .request(RequestBody::Hello {
                protocol: PROTOCOL.into(),
            })
            .and_then(|v| {
                serde_json::from_value::<Hello>(v)
                    .map_err(|e| TargetError::Protocol(format!("the hello reply: {e}")))
            })
            .and_then(|hello| {
                if hello.protocol == PROTOCOL {
                    Ok(hello)
                } else {
                    Err(TargetError::Protocol(format!(
                        "the target speaks `{}`, not {PROTOCOL}",
                        hello.protocol
                    )))
                }
            });
        match handshake {
            Ok(hello) => {
                target.capabilities = hello
                    .capabilities
                    .iter()
                    .filter_map(|n| Capability::from_name(n))
                    .collect();
                target.hello = hello;
                Ok(target)
            }
            Err(source) => Err(SpawnError::Handshake {
                command: command_line.into(),
                source,
            }),
        }
    }

    /// What the target said in its handshake (capability names it declared that this version
    /// does not know included).
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The target's last lines on stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Says `shutdown`, then waits for the process to exit (killing it after the timeout). A
    /// target that does not exit with code 0 is reported as [`TargetError::Died`].
    pub fn shutdown(mut self) -> Result<()> {
        self.request(RequestBody::Shutdown)?;
        drop(self.stdin.take());
        let status = self.wait_or_kill(self.options.timeout);
        match status {
            Some(s) if s.code() == Some(0) => Ok(()),
            Some(s) => Err(TargetError::Died(self.death("shutdown", s))),
            None => Err(TargetError::Hung {
                op: "shutdown".into(),
                timeout: self.options.timeout,
            }),
        }
    }

    /// Sends one request and waits for its reply.
    fn request(&mut self, body: RequestBody) -> Result<Value> {
        if let Some(gone) = &self.gone {
            return Err(gone.clone());
        }
        let op = body.op();
        let id = self.next_id;
        self.next_id += 1;
        let line = Request { id, body }.to_line();
        let written = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{line}").and_then(|()| stdin.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        let result = match written {
            // A broken pipe means the process is gone or going: its exit says why.
            Err(_) => Err(self.died(op)),
            Ok(()) => match self.lines.recv_timeout(self.options.timeout) {
                Ok(Ok(line)) => self.decode(op, id, &line),
                Ok(Err(e)) => Err(TargetError::Protocol(format!(
                    "reading the reply to `{op}`: {e}"
                ))),
                Err(RecvTimeoutError::Disconnected) => Err(self.died(op)),
                Err(RecvTimeoutError::Timeout) => {
                    self.stop();
                    Err(TargetError::Hung {
                        op: op.into(),
                        timeout: self.options.timeout,
                    })
                }
            },
        };
        if let Err(e) = &result {
            if matches!(
                e,
                TargetError::Died(_) | TargetError::Hung { .. } | TargetError::Protocol(_)
            ) {
                self.stop();
                self.gone = Some(e.clone());
            }
        }
        result
    }

    fn decode(&mut self, op: &str, id: u64, line: &str) -> Result<Value> {
        let reply = Reply::from_line(line).map_err(TargetError::Protocol)?;
        if reply.id != Some(id) {
            let got = reply.id.map_or("null".to_string(), |i| i.to_string());
            return Err(TargetError::Protocol(format!(
                "the reply to `{op}` (id {id}) carries id {got}"
            )));
        }
        reply.outcome.map_err(TargetError::from)
    }

    /// The process closed its stdout or stdin: reap it (killing it if it lingers) and say how it
    /// ended.
    fn died(&mut self, op: &str) -> TargetError {
        match self.wait_or_kill(self.options.grace) {
            Some(status) => TargetError::Died(self.death(op, status)),
            None => TargetError::Protocol(format!(
                "the target closed its stdout during `{op}` but did not exit"
            )),
        }
    }

    fn death(&mut self, op: &str, status: ExitStatus) -> Death {
        // The stderr reader ends when every writer of the pipe is gone; give it a moment to take
        // the last lines (a grandchild holding the pipe open must not block the report).
        if let Some(reader) = self.stderr_reader.take() {
            let until = Instant::now() + Duration::from_millis(500);
            while !reader.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        let exit = match (status.code(), status.signal()) {
            (Some(code), _) => ExitKind::Code(code),
            (None, Some(sig)) => ExitKind::Signal(
                Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.to_string()),
            ),
            (None, None) => ExitKind::Code(-1),
        };
        Death {
            op: op.into(),
            exit,
            stderr_tail: self.stderr_tail(),
        }
    }

    /// Waits up to `limit` for the process to exit; past it, stops the group. `None` only when
    /// even SIGKILL did not end it in time.
    fn wait_or_kill(&mut self, limit: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.wait_for(limit) {
            return Some(status);
        }
        self.stop();
        self.child.try_wait().ok().flatten()
    }

    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
                _ => return None,
            }
        }
    }

    /// Stops the whole process group: SIGTERM, the grace period, SIGKILL; reaps the leader.
    fn stop(&mut self) {
        drop(self.stdin.take());
        let group = Pid::from_raw(self.child.id() as i32);
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = killpg(group, Signal::SIGTERM);
            if self.wait_for(self.options.grace).is_some() {
                // The leader is gone; helpers it left in the group get no grace beyond its own.
                let _ = killpg(group, Signal::SIGKILL);
                return;
            }
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }

    fn call<T: DeserializeOwned>(&mut self, body: RequestBody) -> Result<T> {
        let op = body.op();
        let v = self.request(body)?;
        serde_json::from_value(v).map_err(|e| {
            let e = TargetError::Protocol(format!("the reply to `{op}` has the wrong shape: {e}"));
            self.gone = Some(e.clone());
            self.stop();
            e
        })
    }

    fn unit(&mut self, body: RequestBody) -> Result<()> {
        self.request(body).map(|_| ())
    }
}

impl Drop for ProcessTarget {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // Closing stdin is the polite way to end a target; one that lingers is stopped.
            drop(self.stdin.take());
            if self.wait_for(self.options.grace).is_none() {
                self.stop();
            }
        }
    }
}

/// Reads one line (without its newline), at most [`MAX_REPLY_BYTES`]; `None` at the end of input.
fn read_bounded_line(reader: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        let read = reader
            .by_ref()
            .take((MAX_REPLY_BYTES + 1 - line.len()) as u64)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok((!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned()));
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            return String::from_utf8(line).map(Some).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "a reply is not UTF-8")
            });
        }
        if line.len() > MAX_REPLY_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a reply line longer than {MAX_REPLY_BYTES} bytes"),
            ));
        }
    }
}

/// A points reply: `[[x, y, z], ...]` with non-finite coordinates as strings.
#[derive(serde::Deserialize)]
struct WirePoints(#[serde(with = "wire::points")] Vec<Point>);

/// A floats reply.
#[derive(serde::Deserialize)]
struct WireFloats(#[serde(with = "wire::floats")] Vec<f32>);

impl Target for ProcessTarget {
    fn info(&self) -> TargetInfo {
        TargetInfo {
            name: self.hello.name.clone(),
            version: self.hello.version.clone(),
            capabilities: self.capabilities.clone(),
        }
    }
    fn create(&mut self, graph: &Graph, params: Option<&Params>) -> Result<()> {
        self.unit(RequestBody::Create {
            graph: graph.clone(),
            params: params.cloned(),
        })
    }
    fn add_nodes(&mut self, count: u64, positions: Option<&[Point]>) -> Result<()> {
        self.unit(RequestBody::AddNodes {
            count,
            positions: positions.map(<[Point]>::to_vec),
        })
    }
    fn remove_nodes(&mut self, ids: &[u32]) -> Result<()> {
        self.unit(RequestBody::RemoveNodes { ids: ids.to_vec() })
    }
    fn add_edges(&mut self, edges: &[Edge]) -> Result<()> {
        self.unit(RequestBody::AddEdges {
            edges: edges.to_vec(),
        })
    }
    fn remove_edges(&mut self, pairs: &[(u32, u32)]) -> Result<()> {
        self.unit(RequestBody::RemoveEdges {
            pairs: pairs.to_vec(),
        })
    }
    fn step(&mut self, count: u64) -> Result<()> {
        self.unit(RequestBody::Step { count })
    }
    fn positions(&mut self) -> Result<Vec<Point>> {
        self.call::<WirePoints>(RequestBody::Positions).map(|p| p.0)
    }
    fn set_params(&mut self, params: &Params) -> Result<()> {
        self.unit(RequestBody::SetParams {
            params: params.clone(),
        })
    }
    fn reserve(&mut self, nodes: u64, edges: u64) -> Result<()> {
        self.unit(RequestBody::Reserve { nodes, edges })
    }
    fn shrink_to_fit(&mut self) -> Result<()> {
        self.unit(RequestBody::ShrinkToFit)
    }
    fn sssp(&mut self, source: u32) -> Result<Vec<f32>> {
        self.call::<WireFloats>(RequestBody::Sssp { source })
            .map(|d| d.0)
    }
    fn set_position_constraint(&mut self, node: u32, target: Point, stiffness: f32) -> Result<()> {
        self.unit(RequestBody::SetPositionConstraint {
            node,
            target,
            stiffness,
        })
    }
    fn set_distance_constraint(&mut self, u: u32, v: u32, distance: f32) -> Result<()> {
        self.unit(RequestBody::SetDistanceConstraint { u, v, distance })
    }
    fn clear_constraints(&mut self) -> Result<()> {
        self.unit(RequestBody::ClearConstraints)
    }
    fn counts(&mut self) -> Result<Counts> {
        self.call(RequestBody::Counts)
    }
    fn device_bytes(&mut self) -> Result<u64> {
        self.call(RequestBody::DeviceBytes)
    }
    fn buffers(&mut self) -> Result<Vec<Buffer>> {
        self.call(RequestBody::Buffers)
    }
    fn grid(&mut self) -> Result<Option<GridStage>> {
        self.call(RequestBody::Grid)
    }
    fn csr(&mut self) -> Result<Csr> {
        self.call(RequestBody::Csr)
    }
    fn checkpoint(&mut self) -> Result<Value> {
        self.request(RequestBody::Checkpoint)
    }
    fn restore(&mut self, state: &Value) -> Result<()> {
        self.unit(RequestBody::Restore {
            state: state.clone(),
        })
    }
    fn inject(&mut self, fault: &EnvFault) -> Result<()> {
        self.unit(RequestBody::Inject { fault: *fault })
    }
    fn injections_fired(&mut self) -> Result<u64> {
        // A target of an older revision of this version answers `unsupported` to an op it does
        // not know: it cannot tell.
        self.call(RequestBody::InjectionsFired)
    }
    fn velocities(&mut self) -> Result<Vec<Point>> {
        self.call::<WirePoints>(RequestBody::Velocities)
            .map(|p| p.0)
    }
    fn attributes(&mut self) -> Result<Attributes> {
        self.call(RequestBody::Attributes)
    }
}
