/*!
The worker side of isolation: the loop a `forcefield worker` process runs.

This module is responsible for making a process a well-behaved worker: it dies with its driver,
never writes a core file, reports a panic as one parseable line and then aborts (so a panic is
never mistaken for a plain SIGABRT, and a half-updated engine never runs another request), and
answers requests one at a time through the channels the driver passed in [`ENV_WORKER_FDS`].

What a request means is the handler's business. The handler gets the request's payload and the
[`Breadcrumbs`] to mark its progress in, and returns the reply payload; a reply containing
`"context_lost": true` makes the driver replace this worker after the reply.

The protocol runs on dedicated descriptors, so stray prints cannot corrupt it: the worker's stdout
and stderr both go to the driver's bounded capture, and appear in crash reports. Prefer stderr for
logs all the same.
*/

use std::fs::File;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::Signal;
use nix::unistd::{getppid, Pid};
use serde_json::value::RawValue;
use serde_json::Value;

use std::sync::Arc;

use super::breadcrumbs::{BreadcrumbError, Breadcrumbs};
use super::os;
use super::outcome::{PanicRecord, PANIC_PREFIX};
use super::protocol::{
    self, CodecError, Ready, Reply, Request, WorkerMessage, ENV_WORKER_FDS, ENV_WORKER_PARENT,
    PROTOCOL_VERSION,
};

/// What a worker does with a request: its payload (raw JSON text, to be parsed into whatever the
/// handler expects) and the breadcrumbs to mark progress in; returns the reply payload.
pub type RequestHandler<'a> = &'a mut dyn FnMut(&RawValue, &Arc<Breadcrumbs>) -> Value;
use super::test_modes::{self, ENV_WORKER_TEST_MODES};
use crate::exit;

/// The longest panic message reported, in bytes; the line must stay well inside the captured
/// tail.
const PANIC_MESSAGE_BYTES: usize = 4096;

/// Why a worker stopped other than by its driver closing the channel.
#[derive(Debug, thiserror::Error)]
enum WorkerError {
    /// Started by hand, or with a broken environment.
    #[error("not started by a forcefield driver: {0}")]
    NotUnderDriver(String),
    /// The driver was already gone when the worker started.
    #[error("the driver (pid {0}) is gone")]
    DriverGone(i32),
    /// A start-up step failed.
    #[error("cannot {step}")]
    Setup {
        step: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
    /// The breadcrumb record could not be opened.
    #[error(transparent)]
    Breadcrumbs(#[from] BreadcrumbError),
    /// Reading a request or writing a reply failed.
    #[error("protocol channel failed")]
    Channel(#[from] CodecError),
}

impl WorkerError {
    fn exit_code(&self) -> i32 {
        match self {
            WorkerError::NotUnderDriver(_) => exit::BAD_INPUT,
            _ => exit::ENVIRONMENT,
        }
    }
}

/// Runs the worker loop until the driver closes the request channel; returns the process exit
/// status (0 on a clean end). `backend` is announced to the driver in the hello.
///
/// Call it from `main` (the `worker` subcommand) and exit with its result. It installs a panic
/// hook for the rest of the process's life.
pub fn worker_main(backend: &str, handler: RequestHandler<'_>) -> i32 {
    match serve(backend, handler) {
        Ok(()) => exit::OK,
        Err(error) => {
            let mut text = format!("forcefield worker: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{text}");
            error.exit_code()
        }
    }
}

fn serve(backend: &str, handler: RequestHandler<'_>) -> Result<(), WorkerError> {
    let channels = Channels::from_env()?;
    die_with_driver()?;
    // Soft and hard: nothing this process starts may turn dumps back on. A core file of a
    // GPU process can take minutes to write and fill a disk.
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|source| WorkerError::Setup {
        step: "turn core dumps off",
        source,
    })?;
    // Shared, so that a handler can give the record to hooks that outlive one request (a soak
    // engine's kernel hook).
    let crumbs = Arc::new(Breadcrumbs::open_inherited(&channels.crumbs)?);
    drop(channels.crumbs);
    install_panic_hook();
    let test_modes = std::env::var_os(ENV_WORKER_TEST_MODES).is_some_and(|v| v == "1");
    let mut crash_every = test_modes
        .then(test_modes::CrashEvery::from_env)
        .unwrap_or_default();

    let requests = channels.requests;
    let mut replies = File::from(channels.replies);
    let hello = Ready {
        protocol: PROTOCOL_VERSION,
        pid: std::process::id(),
        backend: backend.to_owned(),
    };
    protocol::write_message(&mut replies, &WorkerMessage::Ready(hello))?;
    while let Some(body) = protocol::read_request(requests.as_fd())? {
        // The payload stays raw text: the handler parses it once into its own types.
        let request: Request<&RawValue> =
            serde_json::from_slice(&body).map_err(CodecError::Json)?;
        crumbs.begin_request(request.id);
        if test_modes {
            crash_every.on_request();
            if let Ok(payload) = serde_json::from_str::<Value>(request.payload.get()) {
                test_modes::act(&payload, &crumbs);
            }
        }
        let payload = handler(request.payload, &crumbs);
        protocol::write_message(
            &mut replies,
            &WorkerMessage::Reply(Reply {
                id: request.id,
                payload,
            }),
        )?;
    }
    Ok(())
}

/// The descriptors named in [`ENV_WORKER_FDS`].
struct Channels {
    requests: OwnedFd,
    replies: OwnedFd,
    crumbs: OwnedFd,
}

impl Channels {
    fn from_env() -> Result<Self, WorkerError> {
        let value = std::env::var(ENV_WORKER_FDS)
            .map_err(|_| WorkerError::NotUnderDriver(format!("{ENV_WORKER_FDS} is not set")))?;
        let fds: Vec<RawFd> = value
            .split(',')
            .map(|part| part.trim().parse::<RawFd>())
            .collect::<Result<_, _>>()
            .map_err(|_| WorkerError::NotUnderDriver(format!("{ENV_WORKER_FDS}={value:?}")))?;
        let [requests, replies, crumbs] = fds[..] else {
            return Err(WorkerError::NotUnderDriver(format!(
                "{ENV_WORKER_FDS}={value:?}: three numbers expected"
            )));
        };
        let distinct = requests != replies && replies != crumbs && requests != crumbs;
        let open =
            |fd: RawFd| fd > 2 && nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok();
        if !distinct || ![requests, replies, crumbs].into_iter().all(open) {
            return Err(WorkerError::NotUnderDriver(format!(
                "{ENV_WORKER_FDS}={value:?} does not name three open descriptors"
            )));
        }
        // SAFETY: the driver passed these open descriptors to this process for its exclusive use,
        // they are distinct, and nothing else in the process owns them.
        let [requests, replies, crumbs] =
            [requests, replies, crumbs].map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        for fd in [&requests, &replies] {
            // Processes the handler starts must not keep the channels open.
            os::set_cloexec(fd.as_fd()).map_err(|source| WorkerError::Setup {
                step: "protect the protocol channels",
                source,
            })?;
        }
        Ok(Self {
            requests,
            replies,
            crumbs,
        })
    }
}

/// SIGKILL when the driver dies, then a check that it has not died already. Under a wrapper (a
/// sanitizer, say) the parent is the wrapper, which the driver started with the same signal; the
/// driver itself must then still be alive.
fn die_with_driver() -> Result<(), WorkerError> {
    let driver = std::env::var(ENV_WORKER_PARENT)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .ok_or_else(|| WorkerError::NotUnderDriver(format!("{ENV_WORKER_PARENT} is not a pid")))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|source| WorkerError::Setup {
        step: "set the parent-death signal",
        source,
    })?;
    let parent_is_driver = getppid().as_raw() == driver;
    let driver_alive = nix::sys::signal::kill(Pid::from_raw(driver), None).is_ok();
    if parent_is_driver || driver_alive {
        Ok(())
    } else {
        Err(WorkerError::DriverGone(driver))
    }
}

/// After the default report (kept for people reading stderr), one line the driver parses, then
/// abort: a worker never unwinds into another request.
fn install_panic_hook() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "unknown location".to_owned());
        let record = PanicRecord {
            message: cut(message, PANIC_MESSAGE_BYTES),
            location,
        };
        if let Ok(json) = serde_json::to_string(&record) {
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "{PANIC_PREFIX}{json}");
        }
        std::process::abort();
    }));
}

fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
