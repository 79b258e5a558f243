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

    /// The grid as the `grid_params` kernel stores it on the device: origin and cell edge as float
    /// bits, the dimensions, then the cell count as a wrapping 32-bit product (what the kernels
    /// that run over cells read).
    pub fn to_words(&self) -> [u32; GRID_WORDS] {
        let [dx, dy, dz] = self.dims;
        [
            self.origin[0].to_bits(),
            self.origin[1].to_bits(),
            self.origin[2].to_bits(),
            self.cell_size.to_bits(),
            dx,
            dy,
            dz,
            dz.wrapping_mul(dy).wrapping_mul(dx),
        ]
    }

    /// The inverse of [`GridSpec::to_words`] (the cell count is derived, not read).
    pub fn from_words(w: &[u32]) -> GridSpec {
        let word = |i: usize| w.get(i).copied().unwrap_or(0);
        GridSpec {
            origin: [
                f32::from_bits(word(0)),
                f32::from_bits(word(1)),
                f32::from_bits(word(2)),
            ],
            cell_size: f32::from_bits(word(3)),
            dims: [word(4), word(5), word(6)],
        }
    }
}

/// Words of the device-side grid (`grid` buffer): see [`GridSpec::to_words`].
pub const GRID_WORDS: usize = 8;

/// What sizes the grid besides the bounding box: the parameters and the cell cap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridInputs {
    /// The cell edge from the parameters (`<= 0`: automatic).
    pub cell_size: f32,
    /// The repulsion cutoff.
    pub cutoff: f32,
    /// Live nodes.
    pub num_nodes: u32,
    /// Cap on the total cell count (infinite only under a planted fault).
    pub max_cells: f64,
}

/// Target mean occupancy of a cell when the cell edge is chosen automatically.
pub const AUTO_NODES_PER_CELL: f64 = 2.0;

/// Most growths of the cell edge before the grid falls back to a single cell (a cap of at least one
/// cell is met after a few: each growth divides the count by about the excess).
const MAX_CELL_GROWTHS: u32 = 64;

/// The cube root of `x`, computed with IEEE-rounded `+`, `*` and `/` only, so that the CUDA twin in
/// `kernels/layout.cu` (with `__dmul_rn` and friends, which forbid fused multiply-adds) gives the same
/// bits; a library `cbrt` is not correctly rounded and differs between the two. Newton's iteration
/// from the power of two nearest below `x`'s exponent / 3.
pub fn cube_root(x: f64) -> f64 {
    if !(x > 0.0 && x.is_finite()) {
        return x;
    }
    let exponent = ((x.to_bits() >> 52) & 0x7ff) as i64 - 1023;
    let mut y = f64::from_bits(((exponent.div_euclid(3) + 1023) as u64) << 52);
    for _ in 0..8 {
        y = (2.0 * y + x / (y * y)) / 3.0;
    }
    y
}

/// Grid dimensions from the bounding box: the cell edge from the parameters (or automatic), grown
/// until the total cell count respects the cap. The `grid_params` kernel (CPU and CUDA) computes
/// exactly this on the device, in this order of operations.
pub fn grid_for_bounds(lo: [f32; 3], hi: [f32; 3], inputs: &GridInputs) -> GridSpec {
    let ext = [0, 1, 2].map(|k| (hi[k] as f64 - lo[k] as f64).max(0.0));
    let cutoff = inputs.cutoff as f64;
    let mut cell = if inputs.cell_size > 0.0 {
        inputs.cell_size as f64
    } else {
        // Auto: about AUTO_NODES_PER_CELL nodes per cell of the bounding volume, kept in
        // [cutoff / 64, cutoff]. A sparse layout gets cells of the cutoff (the 27-cell stencil
        // covers every pair within it); a dense one gets smaller cells, which bounds the
        // candidates per node and truncates repulsion to the stencil.
        let floor = cutoff / 64.0;
        let volume = ext[0].max(floor) * ext[1].max(floor) * ext[2].max(floor);
        let auto = cube_root(AUTO_NODES_PER_CELL * volume / inputs.num_nodes.max(1) as f64);
        // Comparisons rather than `clamp`, which panics on a NaN bound.
        if auto < floor {
            floor
        } else if auto > cutoff {
            cutoff
        } else {
            auto
        }
    };
    for _ in 0..MAX_CELL_GROWTHS {
        let cell32 = cell as f32;
        let dims = ext.map(|e| ((e / cell32 as f64).floor() + 1.0).min(u32::MAX as f64));
        let total = dims[0] * dims[1] * dims[2];
        if total <= inputs.max_cells {
            return GridSpec {
                origin: lo,
                cell_size: cell32,
                dims: dims.map(|d| d as u32),
            };
        }
        cell *= cube_root(total / inputs.max_cells) * 1.0001 + 1e-9;
    }
    GridSpec {
        origin: lo,
        cell_size: cell as f32,
        dims: [1, 1, 1],
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

/// `grid_params`: the grid of [`grid_for_bounds`] from the bounding box on the device, into the
/// `grid` buffer ([`GRID_WORDS`] words), where the grid stage's kernels read it: no host round trip.
#[derive(Clone, Copy, Debug)]
pub struct GridParamsArgs {
    /// The bounding box (from `bounds_reduce`), 6 floats.
    pub bounds: DeviceSpan,
    /// Output, [`GRID_WORDS`] words.
    pub grid: DeviceSpan,
    /// Parameters and cap.
    pub inputs: GridInputs,
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
    /// The grid (from `grid_params`).
    pub grid: DeviceSpan,
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
    /// The grid (from `grid_params`): its cell count is the key range.
    pub grid: DeviceSpan,
    /// Items to sort.
    pub num_items: u32,
    /// The cell capacity: every key is below it (the GPU sorts as many digits as it has).
    pub max_cells: u32,
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

/// `cell_bounds`: `start == end == 0` for every cell of the grid (`cell_clear`), then
/// `cell_start`/`cell_end` of every non-empty cell from sorted keys, launched over nodes.
#[derive(Clone, Copy, Debug)]
pub struct CellBoundsArgs {
    /// Sorted keys.
    pub sorted_keys: DeviceSpan,
    /// Output.
    pub cell_start: DeviceSpan,
    /// Output.
    pub cell_end: DeviceSpan,
    /// The grid (from `grid_params`): its cell count bounds the clear.
    pub grid: DeviceSpan,
    /// Sorted items (live nodes).
    pub num_items: u32,
    /// The cell capacity (the GPU launches the clear over it; threads past the grid's count idle).
    pub max_cells: u32,
    /// Non-zero under the planted `cell-bounds-over-cells`: the item count is the grid's cell count.
    pub over_cells: u32,
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
    /// The grid (from `grid_params`).
    pub grid: DeviceSpan,
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
    /// See [`GridParamsArgs`].
    GridParams(GridParamsArgs),
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
            Launch::GridParams(_) => "grid_params",
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
            Launch::GridParams(a) => v.extend([a.bounds, a.grid]),
            Launch::BuildGrid(a) => {
                v.extend(a.pos);
                v.extend([a.cell_keys, a.node_order, a.grid]);
            }
            Launch::SortPairs(a) => v.extend([
                a.keys_in,
                a.values_in,
                a.keys_out,
                a.values_out,
                a.cell_counts,
                a.grid,
            ]),
            Launch::GatherPositions(a) => {
                v.extend(a.pos);
                v.push(a.sorted_nodes);
                v.extend(a.sorted_pos);
            }
            Launch::CellBounds(a) => {
                v.extend([a.sorted_keys, a.cell_start, a.cell_end, a.grid]);
            }
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
                v.extend([a.anchor_k, a.sssp_dist, a.grid]);
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

#[cfg(test)]
mod grid_tests {
    use super::*;

    #[test]
    fn cube_root_is_within_an_ulp_or_two_of_the_library_one() {
        for x in [1e-30, 0.5, 1.0, 2.0, 27.0, 1234.5678, 8e21, 3.3e300] {
            let (ours, lib) = (cube_root(x), f64::cbrt(x));
            assert!(
                (ours - lib).abs() <= 4.0 * f64::EPSILON * lib,
                "{x}: {ours} vs {lib}"
            );
        }
        assert_eq!(cube_root(0.0), 0.0);
        assert!(cube_root(f64::NAN).is_nan());
    }

    #[test]
    fn the_grid_respects_the_cap_and_grows_cells_only_as_needed() {
        let inputs = |max_cells| GridInputs {
            cell_size: 0.0,
            cutoff: 12.0,
            num_nodes: 1_000_000,
            max_cells,
        };
        let (lo, hi) = ([-64.0; 3], [64.0; 3]);
        let free = grid_for_bounds(lo, hi, &inputs(f64::INFINITY));
        assert!(free.num_cells() > 1000);
        let capped = grid_for_bounds(lo, hi, &inputs(1000.0));
        assert!(capped.num_cells() <= 1000 && capped.num_cells() > 100);
        assert!(capped.cell_size > free.cell_size);
        assert_eq!(capped.origin, lo);
        // Words round-trip, and the count word is the wrapping product the kernels read.
        let w = capped.to_words();
        assert_eq!(GridSpec::from_words(&w), capped);
        assert_eq!(w[7] as usize, capped.num_cells());
    }
}
