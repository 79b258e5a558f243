/*!
Test-only worker behaviours: ways for a worker to die on purpose, so that tests can check that each
is survived and classified right.

This module is responsible for misbehaving on request. A worker obeys only when it was started with
[`ENV_WORKER_TEST_MODES`]` = 1`, so a case file can never crash a
production worker through these. A request selects a mode with `"test_mode"`; before acting, the
worker writes the optional `"breadcrumb": {"op_index": N, "op": "...", "kernel": "..."}` so tests
can check what the driver reads after the death.

| `test_mode`    | extra fields                     | what happens                                   |
|----------------|----------------------------------|------------------------------------------------|
| `segfault`     |                                  | reads a `PROT_NONE` page: SIGSEGV              |
| `bus`          |                                  | reads past the end of a mapped file: SIGBUS    |
| `abort`        |                                  | `std::process::abort`: SIGABRT                 |
| `panic`        |                                  | `panic!("test panic")`                         |
| `hang`         | `ignore_sigterm` (bool)          | sleeps forever                                 |
| `flood-stderr` | `bytes` (default 50 000 000)     | writes that much to stderr, then replies       |
| `exit`         | `code` (default 1)               | exits with that status without replying        |
| `oom`          |                                  | an allocation fails: the allocator aborts      |
| `signal`       | `signal` (name, e.g. `SIGFPE`)   | raises that signal                             |

One behaviour is chosen by the environment instead of a request: with
[`ENV_WORKER_TEST_CRASH_EVERY`]` = N` the worker dies of SIGSEGV on receiving every `N`th request,
before handling it — what a worker sharing a GPU through MPS suffers when another client's fault
ends its context, for the tests of the campaign's rule about shared workers.
*/

use std::io::Write;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::mman::{mmap, mmap_anonymous, MapFlags, ProtFlags};
use nix::sys::signal::{raise, signal, SigHandler, Signal};
use serde_json::Value;

use super::breadcrumbs::Breadcrumbs;

/// Set to `1` in a worker's environment to let requests select the test-only behaviours of
/// this module (crash, hang, flood ...). Never set it for real campaigns.
pub const ENV_WORKER_TEST_MODES: &str = "FORCEFIELD_WORKER_TEST_MODES";

/// With [`ENV_WORKER_TEST_MODES`]` = 1`: the worker dies of SIGSEGV on receiving every `N`th
/// request (`N` the value), before handling it.
pub const ENV_WORKER_TEST_CRASH_EVERY: &str = "FORCEFIELD_WORKER_TEST_CRASH_EVERY";

/// The environment's [`ENV_WORKER_TEST_CRASH_EVERY`], counted over a worker's requests.
#[derive(Debug, Default)]
pub(crate) struct CrashEvery {
    every: Option<u64>,
    received: u64,
}

impl CrashEvery {
    /// From the environment; off unless a positive count is set.
    pub(crate) fn from_env() -> Self {
        let every = std::env::var(ENV_WORKER_TEST_CRASH_EVERY)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&n| n > 0);
        CrashEvery { every, received: 0 }
    }

    /// Counts a request; dies on the `N`th.
    pub(crate) fn on_request(&mut self) {
        self.received += 1;
        if self.every.is_some_and(|n| self.received % n == 0) {
            segfault();
        }
    }
}

/// Acts on the request's `test_mode`, if any. Returns only for modes that end in a normal reply.
pub(crate) fn act(payload: &Value, crumbs: &Breadcrumbs) {
    let Some(mode) = payload.get("test_mode").and_then(Value::as_str) else {
        return;
    };
    if let Some(crumb) = payload.get("breadcrumb") {
        let index = crumb.get("op_index").and_then(Value::as_u64).unwrap_or(0);
        if let Some(op) = crumb.get("op").and_then(Value::as_str) {
            crumbs.set_op(index, op);
        }
        if let Some(kernel) = crumb.get("kernel").and_then(Value::as_str) {
            crumbs.set_kernel(kernel);
        }
    }
    match mode {
        "segfault" => segfault(),
        "bus" => bus_error(),
        "abort" => std::process::abort(),
        "panic" => panic!("test panic"),
        "hang" => hang(
            payload
                .get("ignore_sigterm")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        "flood-stderr" => flood_stderr(
            payload
                .get("bytes")
                .and_then(Value::as_u64)
                .unwrap_or(50_000_000),
        ),
        "exit" => {
            let code = payload.get("code").and_then(Value::as_i64).unwrap_or(1);
            std::process::exit(i32::try_from(code).unwrap_or(1))
        }
        "oom" => out_of_memory(),
        "signal" => {
            let name = payload
                .get("signal")
                .and_then(Value::as_str)
                .unwrap_or("SIGFPE");
            match Signal::from_str(name) {
                Ok(sig) => {
                    let _ = raise(sig);
                }
                Err(_) => panic!("unknown signal `{name}` in test mode"),
            }
        }
        other => panic!("unknown test mode `{other}`"),
    }
}

fn segfault() {
    let len = NonZeroUsize::MIN.saturating_add(4095);
    // SAFETY: a fresh anonymous mapping; reading it faults by design.
    let page = unsafe {
        mmap_anonymous(None, len, ProtFlags::PROT_NONE, MapFlags::MAP_PRIVATE)
            .unwrap_or_else(|e| panic!("cannot map a guard page: {e}"))
    };
    // SAFETY: deliberately invalid: the page is PROT_NONE, so this read raises SIGSEGV.
    let _ = unsafe { std::ptr::read_volatile(page.as_ptr().cast::<u8>()) };
    unreachable!("a PROT_NONE page was readable");
}

fn bus_error() {
    let file = memfd_create(c"forcefield-bus", MemFdCreateFlag::MFD_CLOEXEC)
        .unwrap_or_else(|e| panic!("cannot create a file to fault on: {e}"));
    let len = NonZeroUsize::MIN.saturating_add(4095);
    // SAFETY: a fresh shared mapping of an empty file; touching it faults by design.
    let page = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
            &file,
            0,
        )
        .unwrap_or_else(|e| panic!("cannot map the file: {e}"))
    };
    // SAFETY: deliberately invalid: the page lies past the end of a zero-length file: SIGBUS.
    let _ = unsafe { std::ptr::read_volatile(page.as_ptr().cast::<u8>()) };
    unreachable!("a page past the end of a file was readable");
}

fn hang(ignore_sigterm: bool) -> ! {
    if ignore_sigterm {
        // SAFETY: installing SIG_IGN runs no code in signal context.
        let _ = unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) };
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn flood_stderr(bytes: u64) {
    let chunk = [b'#'; 64 << 10];
    let mut stderr = std::io::stderr().lock();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if stderr.write_all(&chunk[..n]).is_err() {
            return;
        }
        left -= n as u64;
    }
}

fn out_of_memory() -> ! {
    // No machine has 2^62 bytes to give; the allocation fails and the allocator's failure handler
    // prints its message and aborts, as for any out-of-memory in a worker.
    // black_box on both sides: in release builds the optimizer may otherwise assume an unused
    // allocation succeeded and remove it.
    let size = std::hint::black_box(1usize << 62);
    let layout =
        std::alloc::Layout::from_size_align(size, 1).unwrap_or_else(|e| panic!("bad layout: {e}"));
    // SAFETY: the layout has a non-zero size.
    let ptr = std::hint::black_box(unsafe { std::alloc::alloc(layout) });
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    unreachable!("an allocation of 2^62 bytes succeeded");
}
