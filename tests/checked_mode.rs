/*!
The CPU backend's checked mode: invalid device-memory accesses come back as sanitizer findings (a
non-sticky error carrying a [`MemoryViolation`] that names the kernel, the buffer, the index and the
capacity) instead of a SIGSEGV, and a clean engine computes exactly the same bits as without it.

The violation tests launch the real kernels on hand-made buffers, so that each one plants exactly
one defect; the engine test runs a scripted life (growth, removal, shrink, SSSP) both ways.
*/

mod common;

use forcefield::backend::{BoundsReduceArgs, Span3};
use forcefield::backend::{DeviceSpan, GatherPositionsArgs, Launch, SortArgs};
use forcefield::sanitize::{Access, Site, ViolationKind};
use forcefield::{Backend, BackendError, BufferName, CpuBackend, Edge, Engine, GraphSpec};
use forcefield::{MemoryViolation, SimParams};

/// A buffer of `capacity` 4-byte elements with `values` uploaded at its start.
fn buffer(b: &mut CpuBackend, name: BufferName, capacity: usize, values: &[u32]) -> DeviceSpan {
    let alloc = b.alloc(name, capacity * 4).expect("alloc");
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
    if !bytes.is_empty() {
        b.upload(alloc.addr, &bytes).expect("upload");
    }
    DeviceSpan {
        addr: alloc.addr,
        capacity,
        len: values.len(),
        buffer: name,
    }
}

fn floats(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// The violation a failed launch carries.
fn violation(r: Result<f64, BackendError>) -> MemoryViolation {
    let e = r.expect_err("the launch must report a violation");
    assert!(!e.sticky, "a sanitizer finding does not lose the context");
    *e.violation.expect("the error carries the violation")
}

fn checked() -> CpuBackend {
    CpuBackend::with_threads(1).with_checked(true)
}

/// A device-side grid of 3 cells along x.
fn three_cells() -> [u32; 8] {
    forcefield::GridSpec {
        origin: [0.0; 3],
        cell_size: 1.0,
        dims: [3, 1, 1],
    }
    .to_words()
}

/// A sort of 6 items whose key and value outputs hold only 4: the planted `sort-count-unclamped`.
fn short_sort(b: &mut CpuBackend) -> SortArgs {
    let keys = [2, 0, 1, 2, 0, 1];
    SortArgs {
        keys_in: buffer(b, BufferName::CellKeys, 6, &keys),
        values_in: buffer(b, BufferName::NodeOrder, 6, &[0, 1, 2, 3, 4, 5]),
        keys_out: buffer(b, BufferName::SortedKeys, 4, &[0; 4]),
        values_out: buffer(b, BufferName::SortedNodes, 4, &[0; 4]),
        cell_counts: buffer(b, BufferName::CellCounts, 3, &[]),
        grid: buffer(b, BufferName::Grid, 8, &three_cells()),
        num_items: 6,
        max_cells: 3,
    }
}

#[test]
fn an_out_of_bounds_write_names_kernel_buffer_index_and_capacity() {
    let mut b = checked();
    let args = short_sort(&mut b);
    let v = violation(b.launch(&Launch::SortPairs(args)));
    assert_eq!(v.kind, ViolationKind::OutOfBounds);
    assert_eq!(v.site, Site::Kernel("sort_pairs"));
    assert_eq!(v.access, Access::Write);
    // Keys 0,0 go to slots 0-1, keys 1,1 to slots 2-3; the first key 2 is the first write past
    // the end.
    assert_eq!(v.buffer, BufferName::SortedKeys);
    assert_eq!((v.index, v.capacity, v.len), (4, 4, 4));
    assert_eq!(v.more, 0, "one thread stops at its first violation");
    let text = v.to_string();
    assert!(
        text.contains("Invalid __global__ write of size 4 bytes")
            && text.contains("`sorted_keys` index 4 >= capacity 4")
            && text.contains("`sort_pairs`"),
        "{text}"
    );

    // Not sticky: the same backend still runs a correct sort.
    let mut fixed = short_sort(&mut b);
    fixed.keys_out = buffer(&mut b, BufferName::SortedKeys, 6, &[]);
    fixed.values_out = buffer(&mut b, BufferName::SortedNodes, 6, &[]);
    b.launch(&Launch::SortPairs(fixed)).expect("a correct sort");
    let mut out = [0u8; 24];
    b.download(fixed.values_out.addr, &mut out).unwrap();
    let order: Vec<u32> = out
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(order, [1, 4, 2, 5, 0, 3], "stable by key");
}

#[test]
fn the_same_sort_unchecked_would_write_past_the_allocation() {
    // The test above is only meaningful if the capacity is the real allocation: the checked mode
    // bounds by what is allocated, so a span claiming more cannot hide the overrun.
    let mut b = checked();
    let mut args = short_sort(&mut b);
    args.keys_out.capacity = 100;
    let v = violation(b.launch(&Launch::SortPairs(args)));
    assert_eq!(
        (v.buffer, v.index, v.capacity),
        (BufferName::SortedKeys, 4, 4)
    );
}

fn pos3(b: &mut CpuBackend, capacity: usize, x: &[f32], y: &[f32], z: &[f32]) -> Span3 {
    [
        buffer(b, BufferName::PosInX, capacity, &floats(x)),
        buffer(b, BufferName::PosInY, capacity, &floats(y)),
        buffer(b, BufferName::PosInZ, capacity, &floats(z)),
    ]
}

#[test]
fn an_out_of_bounds_read_names_kernel_buffer_index_and_capacity() {
    let mut b = checked();
    let p = [1.0, 2.0, 3.0];
    let args = GatherPositionsArgs {
        pos: pos3(&mut b, 3, &p, &p, &p),
        // Slot 2 names node 9 of 3.
        sorted_nodes: buffer(&mut b, BufferName::SortedNodes, 3, &[0, 1, 9]),
        sorted_pos: [
            buffer(&mut b, BufferName::SortedPosX, 3, &[]),
            buffer(&mut b, BufferName::SortedPosY, 3, &[]),
            buffer(&mut b, BufferName::SortedPosZ, 3, &[]),
        ],
        num_nodes: 3,
    };
    let v = violation(b.launch(&Launch::GatherPositions(args)));
    assert_eq!(v.kind, ViolationKind::OutOfBounds);
    assert_eq!(v.site, Site::Kernel("gather_positions"));
    assert_eq!(v.access, Access::Read);
    assert_eq!(v.buffer, BufferName::PosInX);
    assert_eq!((v.index, v.capacity, v.len), (9, 3, 3));
    assert!(
        v.to_string().starts_with(
            "Invalid __global__ read of size 4 bytes: buffer `pos_in_x` index 9 >= capacity 3"
        ),
        "{v}"
    );
}

#[test]
fn a_read_of_never_written_memory_is_reported_and_fresh_memory_is_poisoned() {
    let mut b = checked();
    // z holds 4 elements of which only 2 were uploaded.
    let p = [1.0, -2.0, 3.0, 0.5];
    let pos = pos3(&mut b, 4, &p, &p, &p[..2]);
    let bounds = buffer(&mut b, BufferName::Bounds, 6, &[]);
    let mut poison = [0u8; 8];
    b.download(pos[2].addr + 8, &mut poison).unwrap();
    assert_eq!(poison, [0xFF; 8], "fresh capacity is poisoned");
    assert!(
        f32::from_bits(u32::MAX).is_nan(),
        "and poison is a NaN as a float"
    );

    let args = BoundsReduceArgs {
        pos,
        bounds,
        num_nodes: 4,
    };
    let v = violation(b.launch(&Launch::BoundsReduce(args)));
    assert_eq!(v.kind, ViolationKind::Uninitialized);
    assert_eq!(v.site, Site::Kernel("bounds_reduce"));
    assert_eq!(v.access, Access::Read);
    assert_eq!(v.buffer, BufferName::PosInZ);
    assert_eq!((v.index, v.capacity), (2, 4));
    assert!(
        v.to_string().starts_with(
            "Uninitialized __global__ memory read of size 4 bytes: buffer `pos_in_z` index 2"
        ),
        "{v}"
    );

    // A fill, a device copy and kernel writes count as writes: after them the same launch is clean,
    // and the kernel's own output is readable by the next kernel.
    b.fill_u32(pos[2].addr + 8, 1, 0f32.to_bits()).unwrap();
    let copy_src = buffer(&mut b, BufferName::PosOutZ, 1, &floats(&[7.0]));
    b.copy(pos[2].addr + 12, copy_src.addr, 4).unwrap();
    b.launch(&Launch::BoundsReduce(args))
        .expect("every read was written");
    let mut out = [0u8; 24];
    b.download(bounds.addr, &mut out).unwrap();
    let hi_z = f32::from_ne_bytes(out[20..24].try_into().unwrap());
    assert_eq!(hi_z, 7.0);

    // A copy of never-written words does not make them written.
    let blank = buffer(&mut b, BufferName::PosOutY, 4, &[]);
    b.copy(pos[1].addr, blank.addr, 16).unwrap();
    let v = violation(b.launch(&Launch::BoundsReduce(args)));
    assert_eq!(
        (v.kind, v.buffer, v.index),
        (ViolationKind::Uninitialized, BufferName::PosInY, 0)
    );
}

#[test]
fn freed_memory_and_host_overruns_are_reported_too() {
    let mut b = checked();
    let p = [1.0, 2.0];
    let pos = pos3(&mut b, 2, &p, &p, &p);
    let bounds_alloc = b.alloc(BufferName::Bounds, 24).unwrap();
    let bounds = DeviceSpan {
        addr: bounds_alloc.addr,
        capacity: 6,
        len: 6,
        buffer: BufferName::Bounds,
    };
    b.free(bounds_alloc);
    let args = BoundsReduceArgs {
        pos,
        bounds,
        num_nodes: 2,
    };
    let v = violation(b.launch(&Launch::BoundsReduce(args)));
    assert_eq!(v.kind, ViolationKind::Unallocated);
    assert_eq!((v.buffer, v.access), (BufferName::Bounds, Access::Write));

    // An upload of 3 elements into the second slot of a 2-element buffer.
    let e = b
        .upload(pos[0].addr + 4, &[0u8; 12])
        .expect_err("an upload past the allocation");
    let v = e.violation.expect("a host overrun is a violation");
    assert_eq!(v.site, Site::HostOp("upload"));
    assert_eq!(
        (v.buffer, v.index, v.len, v.capacity),
        (BufferName::PosInX, 1, 4, 2)
    );
    assert!(
        v.to_string()
            .contains("buffer `pos_in_x` elements 1..4 exceed capacity 2 by `upload`"),
        "{v}"
    );
}

#[test]
fn many_threads_out_of_bounds_give_one_finding() {
    // Above the parallel threshold, every thread's first node is out of bounds: each thread stops
    // at its first violation, one is reported and the others are counted.
    let n = 10_000;
    let mut b = CpuBackend::with_threads(4).with_checked(true);
    let zeros = vec![0.0f32; 16];
    let args = GatherPositionsArgs {
        pos: pos3(&mut b, 16, &zeros, &zeros, &zeros),
        sorted_nodes: buffer(&mut b, BufferName::SortedNodes, n, &vec![20; n]),
        sorted_pos: [
            buffer(&mut b, BufferName::SortedPosX, n, &[]),
            buffer(&mut b, BufferName::SortedPosY, n, &[]),
            buffer(&mut b, BufferName::SortedPosZ, n, &[]),
        ],
        num_nodes: n as u32,
    };
    let v = violation(b.launch(&Launch::GatherPositions(args)));
    assert_eq!(
        (v.kind, v.buffer, v.index, v.capacity),
        (ViolationKind::OutOfBounds, BufferName::PosInX, 20, 16)
    );
    assert_eq!(v.more, 3, "the other three threads stopped at theirs");
    assert!(
        v.to_string().ends_with("(and 3 more in this launch)"),
        "{v}"
    );
}

#[test]
fn a_clean_engine_gives_the_same_bits_checked_and_unchecked() {
    let plain = common::scripted_bits(CpuBackend::with_threads(2));
    let checked = common::scripted_bits(CpuBackend::with_threads(2).with_checked(true));
    common::assert_same_moving_layout(&plain, &checked, "the checked mode");
}

/// With the planted faults compiled in (the workspace build turns the feature on for the harness),
/// the seed bug of this project is a finding in the sort, not a SIGSEGV.
#[cfg(feature = "faults")]
#[test]
fn the_seed_bug_is_a_sort_finding() {
    use forcefield::{EngineConfig, EngineError, Fault, FaultSet};
    let graph = GraphSpec {
        num_nodes: 8,
        edges: vec![Edge::new(0, 1)],
        positions: None,
    };
    let mut e = Engine::with_config(
        CpuBackend::with_threads(1).with_checked(true),
        &graph,
        SimParams::default(),
        EngineConfig::default(),
        FaultSet::of(&[Fault::SortCountUnclamped]),
    )
    .unwrap();
    e.step(2).unwrap();
    e.add_nodes(8, None).unwrap();
    let err: EngineError = e.step(1).expect_err("the sort overruns its scratch");
    let v = err.violation().expect("a sanitizer finding");
    assert_eq!(
        (v.kind, v.site),
        (ViolationKind::OutOfBounds, Site::Kernel("sort_pairs"))
    );
    assert!(matches!(
        v.buffer,
        BufferName::SortedKeys | BufferName::SortedNodes
    ));
    assert_eq!(v.capacity, 8);
    assert!(v.index >= 8);
    assert!(!err.is_sticky());
}
