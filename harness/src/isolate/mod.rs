/*!
Isolation: running requests in separate worker processes, so that whatever a request does to its
process (a segfault, an abort, a panic, a hang, a flood of output) the driver survives, classifies
it and carries on with a fresh worker.

# Brief overview

* [`WorkerSlot`] (in [`supervisor`]) is the driver's handle: it starts a worker from a
  [`WorkerCommand`], runs one request at a time under a deadline with
  [`WorkerSlot::run`], and replaces the worker after any death. One slot per job or per GPU.
* [`Execution`] and [`Outcome`] (in [`outcome`]) say how a request ended: a reply, a panic with
  message and location, a signal, an exit, a hang, resource exhaustion or a protocol error, plus
  the [`Breadcrumb`] at the end and the bounded [`CapturedOutput`].
* [`worker_main`] (in [`worker`]) is the other side: the loop of a `forcefield worker` process,
  with a handler that maps a request payload to a reply payload.
* [`run_in_group`] (in [`group`]) runs one command that is not a worker to its end in its own
  process group under a deadline, ended the way a hung worker is (compute-sanitizer's re-runs).
* [`protocol`] is the wire format; [`breadcrumbs`] the shared-memory record of the current
  operation and kernel.

**Architecture Invariant:** this layer knows nothing about cases, engines or backends: a request is
an opaque JSON payload and a reply is another. That is what lets another engine (or another
language, through the documented [`protocol`]) be put under the same harness.

# Starting a worker

The driver runs [`WorkerCommand::program`] with its arguments in a new process group, with stdin
from `/dev/null`, stdout and stderr into one bounded capture, and these variables:

* [`ENV_WORKER_FDS`](protocol::ENV_WORKER_FDS) = `R,W,B`: the descriptor numbers of the request channel (a Unix stream
  socket the worker reads), the reply channel (a pipe the worker writes) and the breadcrumb memory
  file;
* [`ENV_WORKER_PARENT`](protocol::ENV_WORKER_PARENT) = the driver's process id.

The worker must exit when the request channel closes.
*/

#[cfg(not(target_os = "linux"))]
compile_error!("worker isolation needs Linux (memfd, parent-death signal, waitid)");

pub(crate) mod breadcrumbs;
pub(crate) mod capture;
pub(crate) mod group;
#[path = "linux.rs"]
mod os;
pub(crate) mod outcome;
pub(crate) mod protocol;
pub(crate) mod supervisor;
pub(crate) mod test_modes;
pub(crate) mod worker;

// The types an `Execution` and `Breadcrumbs` carry or return.
pub use breadcrumbs::{Breadcrumb, BreadcrumbError, Breadcrumbs};
pub use capture::CapturedOutput;
pub(crate) use group::{run_in_group, GroupEnd, GroupLimits};
pub use outcome::{Execution, Outcome};
pub use supervisor::{SpawnError, SupervisorConfig, WorkerCommand, WorkerSlot};
pub use test_modes::{ENV_WORKER_TEST_CRASH_EVERY, ENV_WORKER_TEST_MODES};
pub use worker::worker_main;
