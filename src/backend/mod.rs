/*!
The backend interface: device memory and kernel launches.

A [`Backend`] owns device memory (addresses are plain `u64`s, as CUDA device pointers are) and runs
the engine's kernels. Kernels are named by [`Launch`]: one variant per kernel, each with an argument
struct that holds device spans and scalars in the order the kernel takes them. The CPU backend runs the
Rust kernels of `backend/cpu/kernels.rs`; the CUDA backend launches the functions of the same names in
the CUDA sources in `kernels/`. The trait is object safe, so `Box<dyn Backend>` chooses a backend at run time.

**Architecture Invariant:** backends know nothing of the graph model, the buffer registry's policies or
the harness: they allocate, copy, fill and launch what they are told.
*/

pub mod cpu;
pub mod cuda;
pub mod layer;

use crate::buffer_name::BufferName;
use crate::error::BackendError;
use crate::params::KernelParams;

/// A device allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceAlloc {
    /// Device address of the first byte.
    pub addr: u64,
    /// Size in bytes.
    pub bytes: usize,
}

/// What a kernel receives for one buffer argument: its address, its capacity in elements (what a
/// checked mode bounds against), its live length and its name (what a finding reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSpan {
    /// Device address.
    pub addr: u64,
    /// Allocated elements.
    pub capacity: usize,
    /// Live elements (what a sanitizer finding reports beside the capacity; never a bound).
    pub len: usize,
    /// The registered buffer.
    pub buffer: BufferName,
}

/// The uniform grid of one step: origin, cell edge and dimensions. `dims` respect the cell cap.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct GridSpec {
    /// Minimum corner.
    pub origin: [f32; 3],
    /// Edge of a cell.
    pub cell_size: f32,
    /// Cells along x, y and z.
    pub dims: [u32; 3],
}

impl GridSpec {
    /// Total cells.
    pub fn num_cells(&self) -> usize {
        self.dims.iter().map(|&d| d as usize).product()
    }
}

/// A bit of [`KernelParams::feature_flags`] that the engine sets and a user never can (user flags are
/// validated against [`crate::params::features::ALL`]): some CSR entry on the device has a distance
/// target. Without it the force pass skips the walk of the CSR row that sums distance constraints,
/// which would add nothing (at 1M nodes and 10M edges it cost 0.28 ms of a 2.1 ms force pass).
pub const KERNEL_DISTANCE_TARGETS: u32 = 1 << 31;

/// Three spans, x, y and z.
pub type Span3 = [DeviceSpan; 3];

/// `bounds_reduce`: min and max of positions over `num_nodes`, into `bounds` as
/// `[min_x, min_y, min_z, max_x, max_y, max_z]`.
#[derive(Clone, Copy, Debug)]
pub struct BoundsReduceArgs {
    /// Positions.
    pub pos: Span3,
    /// Output, 6 floats.
    pub bounds: DeviceSpan,
    /// Live nodes.
    pub num_nodes: u32,
}

/// `build_grid`: cell key of each node (`z*dy*dx + y*dx + x`, clamped to the grid) and the identity
/// permutation as sort values.
#[derive(Clone, Copy, Debug)]
pub struct BuildGridArgs {
    /// Positions.
    pub pos: Span3,
    /// Output keys.
    pub cell_keys: DeviceSpan,
    /// Output values (identity).
    pub node_order: DeviceSpan,
    /// The grid.
    pub grid: GridSpec,
    /// Live nodes.
    pub num_nodes: u32,
}

/// The key-value counting sort by cell (`sort_histogram`, `sort_scan`, `sort_scatter`): stable, so
/// nodes of one cell stay in ascending index order.
#[derive(Clone, Copy, Debug)]
pub struct SortArgs {
    /// Input keys.
    pub keys_in: DeviceSpan,
    /// Input values.
    pub values_in: DeviceSpan,
    /// Output keys (the sort's scratch).
    pub keys_out: DeviceSpan,
    /// Output values (the sort's scratch).
    pub values_out: DeviceSpan,
    /// Per-cell counts, then offsets.
    pub cell_counts: DeviceSpan,
    /// Items to sort.
    pub num_items: u32,
    /// Cells (key range).
    pub num_cells: u32,
}

/// `gather_positions`: positions copied into sorted (cell) order, so that the force pass reads the
/// candidates of a cell from contiguous memory.
#[derive(Clone, Copy, Debug)]
pub struct GatherPositionsArgs {
    /// Positions by node id.
    pub pos: Span3,
    /// Node ids sorted by cell.
    pub sorted_nodes: DeviceSpan,
    /// Output: position of the node in each sorted slot.
    pub sorted_pos: Span3,
    /// Live nodes.
    pub num_nodes: u32,
}

/// `cell_bounds`: `cell_start`/`cell_end` of every non-empty cell from sorted keys, launched over
/// nodes. Empty cells keep the `start == end == 0` the engine filled in.
#[derive(Clone, Copy, Debug)]
pub struct CellBoundsArgs {
    /// Sorted keys.
    pub sorted_keys: DeviceSpan,
    /// Output.
    pub cell_start: DeviceSpan,
    /// Output.
    pub cell_end: DeviceSpan,
    /// Threads launched (live nodes).
    pub num_items: u32,
    /// Cells.
    pub num_cells: u32,
}

/// `force_pass`: repulsion from the 27 neighbouring cells, CSR springs, centre gravity and
/// constraints, into `force`.
#[derive(Clone, Copy, Debug)]
pub struct ForcePassArgs {
    /// Positions.
    pub pos: Span3,
    /// Output forces.
    pub force: Span3,
    /// Node ids sorted by cell.
    pub sorted_nodes: DeviceSpan,
    /// Positions in sorted order (from `gather_positions`).
    pub sorted_pos: Span3,
    /// First sorted slot of each cell.
    pub cell_start: DeviceSpan,
    /// One past the last sorted slot of each cell.
    pub cell_end: DeviceSpan,
    /// CSR rows.
    pub row_offsets: DeviceSpan,
    /// CSR columns.
    pub col_indices: DeviceSpan,
    /// CSR weights.
    pub weights: DeviceSpan,
    /// Distance-constraint target per CSR entry (< 0: none).
    pub edge_target: DeviceSpan,
    /// Position-constraint targets.
    pub anchor: Span3,
    /// Position-constraint stiffness (0: none).
    pub anchor_k: DeviceSpan,
    /// SSSP distances (for rest-length stretching).
    pub sssp_dist: DeviceSpan,
    /// The grid.
    pub grid: GridSpec,
    /// Parameters.
    pub params: KernelParams,
    /// Live nodes.
    pub num_nodes: u32,
    /// Cells neighbouring each cell along an axis that are scanned (1 = the 27-cell stencil).
    pub stencil_radius: u32,
}

/// `integrate`: forces to velocities to positions, with caps, damping, noise and the viewport.
#[derive(Clone, Copy, Debug)]
pub struct IntegrateArgs {
    /// Positions in.
    pub pos_in: Span3,
    /// Velocities in.
    pub vel_in: Span3,
    /// Forces.
    pub force: Span3,
    /// Masses.
    pub mass: DeviceSpan,
    /// Positions out.
    pub pos_out: Span3,
    /// Velocities out.
    pub vel_out: Span3,
    /// Parameters.
    pub params: KernelParams,
    /// Live nodes.
    pub num_nodes: u32,
}

/// `sssp_relax`: relaxes the out-edges of every frontier node, flagging improved nodes.
#[derive(Clone, Copy, Debug)]
pub struct SsspRelaxArgs {
    /// CSR rows.
    pub row_offsets: DeviceSpan,
    /// CSR columns.
    pub col_indices: DeviceSpan,
    /// CSR weights (lengths).
    pub weights: DeviceSpan,
    /// Distances.
    pub dist: DeviceSpan,
    /// Current frontier.
    pub frontier: DeviceSpan,
    /// Improved-node flags.
    pub flags: DeviceSpan,
    /// Frontier length.
    pub frontier_len: u32,
}

/// `frontier_compact`: the flagged nodes, in ascending order, become the next frontier; flags reset.
#[derive(Clone, Copy, Debug)]
pub struct FrontierCompactArgs {
    /// Improved-node flags.
    pub flags: DeviceSpan,
    /// Output frontier.
    pub frontier: DeviceSpan,
    /// Output length (1 element).
    pub frontier_len: DeviceSpan,
    /// Live nodes.
    pub num_nodes: u32,
}

/// One kernel launch, by name.
#[derive(Clone, Copy, Debug)]
pub enum Launch {
    /// See [`BoundsReduceArgs`].
    BoundsReduce(BoundsReduceArgs),
    /// See [`BuildGridArgs`].
    BuildGrid(BuildGridArgs),
    /// See [`SortArgs`].
    SortPairs(SortArgs),
    /// See [`GatherPositionsArgs`].
    GatherPositions(GatherPositionsArgs),
    /// See [`CellBoundsArgs`].
    CellBounds(CellBoundsArgs),
    /// See [`ForcePassArgs`].
    ForcePass(ForcePassArgs),
    /// See [`IntegrateArgs`].
    Integrate(IntegrateArgs),
    /// See [`SsspRelaxArgs`].
    SsspRelax(SsspRelaxArgs),
    /// See [`FrontierCompactArgs`].
    FrontierCompact(FrontierCompactArgs),
}

impl Launch {
    /// The kernel's name, as in the CUDA sources in `kernels/` and the kernel log.
    pub fn kernel_name(&self) -> &'static str {
        match self {
            Launch::BoundsReduce(_) => "bounds_reduce",
            Launch::BuildGrid(_) => "build_grid",
            Launch::SortPairs(_) => "sort_pairs",
            Launch::GatherPositions(_) => "gather_positions",
            Launch::CellBounds(_) => "cell_bounds",
            Launch::ForcePass(_) => "force_pass",
            Launch::Integrate(_) => "integrate",
            Launch::SsspRelax(_) => "sssp_relax",
            Launch::FrontierCompact(_) => "frontier_compact",
        }
    }

    /// Every device span of the launch, in the order of its argument struct's fields (a [`Span3`]
    /// gives x, y, z): what a checked mode bounds the kernel's accesses by.
    pub fn spans(&self) -> Vec<DeviceSpan> {
        let mut v = Vec::with_capacity(24);
        match self {
            Launch::BoundsReduce(a) => {
                v.extend(a.pos);
                v.push(a.bounds);
            }
            Launch::BuildGrid(a) => {
                v.extend(a.pos);
                v.extend([a.cell_keys, a.node_order]);
            }
            Launch::SortPairs(a) => v.extend([
                a.keys_in,
                a.values_in,
                a.keys_out,
                a.values_out,
                a.cell_counts,
            ]),
            Launch::GatherPositions(a) => {
                v.extend(a.pos);
                v.push(a.sorted_nodes);
                v.extend(a.sorted_pos);
            }
            Launch::CellBounds(a) => v.extend([a.sorted_keys, a.cell_start, a.cell_end]),
            Launch::ForcePass(a) => {
                v.extend(a.pos);
                v.extend(a.force);
                v.push(a.sorted_nodes);
                v.extend(a.sorted_pos);
                v.extend([
                    a.cell_start,
                    a.cell_end,
                    a.row_offsets,
                    a.col_indices,
                    a.weights,
                    a.edge_target,
                ]);
                v.extend(a.anchor);
                v.extend([a.anchor_k, a.sssp_dist]);
            }
            Launch::Integrate(a) => {
                for s in [a.pos_in, a.vel_in, a.force] {
                    v.extend(s);
                }
                v.push(a.mass);
                v.extend(a.pos_out);
                v.extend(a.vel_out);
            }
            Launch::SsspRelax(a) => v.extend([
                a.row_offsets,
                a.col_indices,
                a.weights,
                a.dist,
                a.frontier,
                a.flags,
            ]),
            Launch::FrontierCompact(a) => v.extend([a.flags, a.frontier, a.frontier_len]),
        }
        v
    }
}

/// Device memory and kernels.
pub trait Backend: Send {
    /// `"cpu"` or `"cuda"`.
    fn name(&self) -> &'static str;
    /// A human description of the device (for reports and fingerprints).
    fn device_description(&self) -> String;
    /// Allocates `bytes` for buffer `buffer`. Fresh memory holds unspecified values.
    fn alloc(&mut self, buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError>;
    /// Frees an allocation.
    fn free(&mut self, alloc: DeviceAlloc);
    /// Copies host bytes to device address `dst`.
    fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), BackendError>;
    /// Copies device bytes at `src` to the host.
    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError>;
    /// Copies `bytes` between device addresses.
    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError>;
    /// Sets `count` 32-bit words at `dst` to `value`.
    fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError>;
    /// Runs a kernel and returns its duration in seconds.
    fn launch(&mut self, launch: &Launch) -> Result<f64, BackendError>;
    /// Waits for all queued work.
    fn synchronize(&mut self) -> Result<(), BackendError>;
    /// Bytes currently allocated.
    fn bytes_allocated(&self) -> usize;
    /// Loses the device context for real, as an Xid or a trapped kernel would, and returns the
    /// sticky error that every later call will also return until [`Backend::reset`]. CUDA launches a
    /// kernel that executes `__trap()`; the CPU backend marks its memory unusable.
    fn lose_context(&mut self) -> BackendError;
    /// Starts over on a fresh context (CUDA) or fresh memory (CPU). Every earlier allocation is gone;
    /// callers must forget their addresses rather than free them.
    fn reset(&mut self) -> Result<(), BackendError>;
    /// Tells the backend which planted faults are on (only backend-level faults need to know).
    fn set_faults(&mut self, _faults: crate::faults::FaultSet) {}
    /// Whether [`Backend::launch`] waits for each kernel and returns its device time (the
    /// default), or only queues it and returns 0: then a kernel's error surfaces at the next
    /// [`Backend::synchronize`] or download. Backends whose launches are synchronous ignore it.
    fn set_kernel_timing(&mut self, _on: bool) {}
}

impl Backend for Box<dyn Backend> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn device_description(&self) -> String {
        (**self).device_description()
    }
    fn alloc(&mut self, buffer: BufferName, bytes: usize) -> Result<DeviceAlloc, BackendError> {
        (**self).alloc(buffer, bytes)
    }
    fn free(&mut self, alloc: DeviceAlloc) {
        (**self).free(alloc)
    }
    fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), BackendError> {
        (**self).upload(dst, src)
    }
    fn download(&mut self, src: u64, dst: &mut [u8]) -> Result<(), BackendError> {
        (**self).download(src, dst)
    }
    fn copy(&mut self, dst: u64, src: u64, bytes: usize) -> Result<(), BackendError> {
        (**self).copy(dst, src, bytes)
    }
    fn fill_u32(&mut self, dst: u64, count: usize, value: u32) -> Result<(), BackendError> {
        (**self).fill_u32(dst, count, value)
    }
    fn launch(&mut self, launch: &Launch) -> Result<f64, BackendError> {
        (**self).launch(launch)
    }
    fn synchronize(&mut self) -> Result<(), BackendError> {
        (**self).synchronize()
    }
    fn bytes_allocated(&self) -> usize {
        (**self).bytes_allocated()
    }
    fn lose_context(&mut self) -> BackendError {
        (**self).lose_context()
    }
    fn reset(&mut self) -> Result<(), BackendError> {
        (**self).reset()
    }
    fn set_faults(&mut self, faults: crate::faults::FaultSet) {
        (**self).set_faults(faults)
    }
    fn set_kernel_timing(&mut self, on: bool) {
        (**self).set_kernel_timing(on)
    }
}
