/*!
The CPU backend's emulated device memory faults like a GPU's: a raw kernel read one element past a
buffer (or one before a page-aligned one) lands on a guard page and the process dies with SIGSEGV.

A fault kills the whole process, so each faulting read runs in a child: the test re-executes its own
binary with `--exact <test>` and an environment variable naming the case; the child performs the
out-of-bounds read, and the parent asserts that the child was killed by SIGSEGV. The in-bounds edge
(the last element, read in the parent) must work.
*/

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use forcefield::backend::cpu::access::Dev;
use forcefield::backend::cpu::memory::page_size;
use forcefield::backend::DeviceSpan;
use forcefield::{Backend, BufferName, CpuBackend, Edge, Engine, GraphSpec, SimParams};
use nix::sys::signal::Signal;

/// Set in a child to the case it must run.
const CHILD_ENV: &str = "FORCEFIELD_GUARD_CHILD";

/// Whether this process is a child asked to run `case`.
fn is_child(case: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|c| c == case)
}

/// Runs `test` of this binary in a child with the case variable set, and asserts that SIGSEGV killed
/// it. The child's output is shown on failure.
fn assert_child_segfaults(test: &str, case: &str) {
    let exe = std::env::current_exe().expect("own test binary");
    let out = Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, case)
        .output()
        .expect("spawn child");
    let signal = out.status.signal();
    assert_eq!(
        signal,
        Some(Signal::SIGSEGV as i32),
        "child `{case}` ended with {:?} instead of SIGSEGV\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A core file per run would litter the working directory; the child turns core dumps off, and
    // this checks that the kill really came from the fault rather than an abort after a panic.
    assert!(!out.status.core_dumped());
}

/// In a child: no core file, then the read. Reaching the end means the read did not fault.
fn child_read(span: DeviceSpan, index: usize) -> ! {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .expect("disable core dumps");
    let value = Dev::<f32>::new(span).get(index);
    println!(
        "read {} past {:?} gave {value} without a fault",
        index, span.buffer
    );
    std::process::exit(0);
}

fn backend_buffer(backend: &mut CpuBackend, elements: usize) -> DeviceSpan {
    let alloc = backend
        .alloc(BufferName::PosInX, elements * 4)
        .expect("alloc");
    let data: Vec<u8> = (0..elements)
        .flat_map(|i| (i as f32 + 0.5).to_ne_bytes())
        .collect();
    backend.upload(alloc.addr, &data).expect("upload");
    DeviceSpan {
        addr: alloc.addr,
        capacity: elements,
        len: elements,
        buffer: BufferName::PosInX,
    }
}

#[test]
fn read_one_past_a_backend_allocation_segfaults() {
    let mut backend = CpuBackend::new();
    let span = backend_buffer(&mut backend, 10);
    if is_child("alloc") {
        child_read(span, 10);
    }
    let dev = Dev::<f32>::new(span);
    assert_eq!(
        dev.get(9),
        9.5,
        "the last element reads back what was uploaded"
    );
    dev.set(9, -1.0);
    assert_eq!(dev.get(9), -1.0);
    assert_child_segfaults("read_one_past_a_backend_allocation_segfaults", "alloc");
}

#[test]
fn read_one_before_a_page_sized_allocation_segfaults() {
    // Data sits flush against the trailing guard page, so only an allocation of whole pages also
    // starts flush against the leading one.
    let elements = page_size() / 4;
    let mut backend = CpuBackend::new();
    let span = backend_buffer(&mut backend, elements);
    let before = DeviceSpan {
        addr: span.addr - 4,
        ..span
    };
    if is_child("before") {
        child_read(before, 0);
    }
    let dev = Dev::<f32>::new(span);
    assert_eq!(dev.get(0), 0.5);
    assert_eq!(dev.get(elements - 1), elements as f32 - 0.5);
    assert_child_segfaults(
        "read_one_before_a_page_sized_allocation_segfaults",
        "before",
    );
}

#[test]
fn read_one_past_an_engine_buffer_segfaults() {
    let graph = GraphSpec {
        num_nodes: 10,
        edges: vec![Edge::new(0, 1)],
        positions: None,
    };
    let mut e = Engine::new(CpuBackend::new(), &graph, SimParams::default()).expect("engine");
    // A grown and stepped buffer, not just a fresh one: the guard must follow every reallocation
    // and the double-buffer swap.
    e.add_nodes(1, None).unwrap();
    e.step(3).unwrap();
    let info = *e
        .buffers()
        .find(|b| b.name == BufferName::PosInX)
        .expect("pos_in_x is registered");
    assert!(info.capacity > e.num_nodes() as usize, "growth left slack");
    let span = DeviceSpan {
        addr: info.alloc.addr,
        capacity: info.capacity,
        len: info.len,
        buffer: info.name,
    };
    if is_child("engine") {
        child_read(span, info.capacity);
    }
    let x0 = e.positions().unwrap()[0][0];
    let dev = Dev::<f32>::new(span);
    assert_eq!(
        dev.get(0).to_bits(),
        x0.to_bits(),
        "the span is the live pos_in_x"
    );
    let _ = dev.get(info.capacity - 1);
    assert_child_segfaults("read_one_past_an_engine_buffer_segfaults", "engine");
}
