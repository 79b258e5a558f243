/*!
From [`Launch`] to CUDA kernel launches: the function handles of the loaded module, the launch
shapes (mirroring the constants of the `.cu` files in `kernels/`), the backend's own scratch memory, and one
`enqueue_*` per kernel of the CPU backend that queues the CUDA function(s) doing its work.

Every argument list here is in the order of the kernel's parameters in `kernels/`, which is the
order of the fields of the `Launch` argument struct, device spans becoming pointers.
*/

use std::ffi::{c_void, CString};

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::sys;

use crate::backend::{
    BoundsReduceArgs, BuildGridArgs, CellBoundsArgs, DeviceSpan, ForcePassArgs,
    FrontierCompactArgs, GatherPositionsArgs, GridParamsArgs, IntegrateArgs, Launch, SortArgs,
    SsspRelaxArgs,
};
use crate::sanitize::Access;

/// Threads per block of the one-thread-per-item kernels (`NODE_THREADS` in `layout.cu`).
const NODE_THREADS: u32 = 256;
/// Block size of the force pass: small blocks spread a small graph's few long-running threads over
/// every multiprocessor (10k nodes in blocks of 256 occupy 40 of an H100's 132); at 1M nodes the
/// occupancy is the same (registers limit it, not blocks). Whole warps, so that a node's lanes
/// (`KernelParams::force_lanes`, a divisor of 32) are in one warp.
const FORCE_THREADS: u32 = 64;
/// Most blocks of `bounds_reduce`, which strides over the nodes.
const BOUNDS_MAX_BLOCKS: u32 = 1024;
/// Most blocks of `cell_clear`, which strides over the grid's cells (eight a multiprocessor of an
/// H100: a cap of 2M cells launched one thread a cell cost 8 µs a step whatever the grid).
const CLEAR_MAX_BLOCKS: u32 = 1056;
/// Bits per radix-sort pass (`RADIX_BITS` in `layout.cu`).
const RADIX_BITS: u32 = 8;
/// Digits per pass.
const RADIX: u32 = 1 << RADIX_BITS;
/// Threads of a sort block (`SORT_THREADS`).
const SORT_THREADS: u32 = 256;
/// Items of `sort_small`'s one tile and of a `sort_histogram` block (`SORT_TILE` =
/// `SORT_THREADS * SORT_ITEMS`).
const SORT_TILE: u32 = SORT_THREADS * 16;
/// Most radix passes of a sort (`SORT_MAX_PASSES`): 32-bit keys.
const SORT_MAX_PASSES: u32 = 4;
/// Most rounds of `SORT_THREADS` items in a one-sweep tile (`SORT_MAX_ROUNDS`: a thread holds a
/// key and a rank a round in registers).
const SORT_MAX_ROUNDS: u32 = 16;
/// Tiles a one-sweep pass aims at (see [`sort_tile_rounds`]).
const SORT_TARGET_TILES: u32 = 128;
/// Overrides [`sort_tile_rounds`] for every sort of the process, for measuring tile sizes.
pub const SORT_TILE_ROUNDS_VAR: &str = "FORCEFIELD_SORT_TILE_ROUNDS";
/// Threads of the single-block scan (`SCAN_THREADS`).
const SCAN_THREADS: u32 = 1024;
/// Threads of a compaction block (`COMPACT_THREADS` in `sssp.cu`).
const COMPACT_THREADS: u32 = 256;
/// Nodes per compaction tile (`COMPACT_TILE`).
const COMPACT_TILE: u32 = COMPACT_THREADS * 16;

/// Every `__global__` function the backend launches.
#[cfg(test)]
pub const KERNEL_NAMES: &[&str] = &[
    "bounds_reduce",
    "bounds_finalize",
    "build_grid",
    "sort_histogram",
    "sort_scan",
    "sort_scatter",
    "sort_small",
    "gather_positions",
    "cell_bounds",
    "force_pass",
    "integrate",
    "sssp_relax",
    "frontier_count",
    "frontier_compact",
];

/// Function handles of the loaded module, by kernel.
#[derive(Debug)]
pub struct Kernels {
    bounds_reduce: sys::CUfunction,
    bounds_finalize: sys::CUfunction,
    grid_params: sys::CUfunction,
    build_grid: sys::CUfunction,
    cell_clear: sys::CUfunction,
    sort_histogram: sys::CUfunction,
    sort_scan: sys::CUfunction,
    sort_scatter: sys::CUfunction,
    sort_small: sys::CUfunction,
    gather_positions: sys::CUfunction,
    cell_bounds: sys::CUfunction,
    force_pass: sys::CUfunction,
    integrate: sys::CUfunction,
    sssp_relax: sys::CUfunction,
    frontier_count: sys::CUfunction,
    frontier_compact: sys::CUfunction,
    lose_context: sys::CUfunction,
}

impl Kernels {
    /// Looks every kernel up in `module`.
    pub fn load(module: sys::CUmodule) -> Result<Self, DriverError> {
        let get = |name: &str| {
            // Kernel names are literals without NUL bytes.
            let c = CString::new(name).unwrap_or_default();
            // SAFETY: the module is loaded and outlives the handles (both owned by the backend).
            unsafe { result::module::get_function(module, c) }
        };
        Ok(Kernels {
            bounds_reduce: get("bounds_reduce")?,
            bounds_finalize: get("bounds_finalize")?,
            grid_params: get("grid_params")?,
            build_grid: get("build_grid")?,
            cell_clear: get("cell_clear")?,
            sort_histogram: get("sort_histogram")?,
            sort_scan: get("sort_scan")?,
            sort_scatter: get("sort_scatter")?,
            sort_small: get("sort_small")?,
            cell_bounds: get("cell_bounds")?,
            force_pass: get("force_pass")?,
            gather_positions: get("gather_positions")?,
            integrate: get("integrate")?,
            sssp_relax: get("sssp_relax")?,
            frontier_count: get("frontier_count")?,
            frontier_compact: get("frontier_compact")?,
            lose_context: get("lose_context")?,
        })
    }
}

/// A device allocation the backend owns for a kernel's temporary data, grown on demand.
#[derive(Debug, Default)]
pub struct Scratch {
    addr: u64,
    bytes: usize,
    /// The stream the allocation is ordered on (set by the first `ensure`).
    stream: Option<sys::CUstream>,
}

impl Scratch {
    /// The address of at least `bytes` bytes, reallocating (1.5x) when too small. Both the new
    /// allocation and the release of the old one are ordered on `stream`, after the launches
    /// queued on it (which may still use the old memory).
    pub fn ensure(&mut self, bytes: usize, stream: sys::CUstream) -> Result<u64, DriverError> {
        if bytes > self.bytes || self.addr == 0 {
            let want = bytes.max(self.bytes + self.bytes / 2).max(256);
            // SAFETY: a stream-ordered allocation on the backend's live stream.
            let addr = unsafe { result::malloc_async(stream, want) }?;
            self.release();
            self.addr = addr;
            self.bytes = want;
            self.stream = Some(stream);
        }
        Ok(self.addr)
    }

    /// Frees the allocation after the work queued on its stream (errors ignored: nothing can be
    /// done about them here).
    pub fn release(&mut self) {
        if let (true, Some(stream)) = (self.addr != 0, self.stream) {
            // SAFETY: allocated by `ensure` on `stream`, freed once.
            let _ = unsafe { result::free_async(self.addr, stream) };
        }
        self.addr = 0;
        self.bytes = 0;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The address held (0 before the first `ensure`).
    pub fn addr(&self) -> u64 {
        self.addr
    }
}

/// The scratch memory of the kernels that need it.
#[derive(Debug, Default)]
pub struct ScratchSet {
    /// Per-tile digit counts of the radix sort, then their offsets.
    pub sort_hist: Scratch,
    /// Keys between radix passes.
    pub sort_keys: Scratch,
    /// Values between radix passes.
    pub sort_values: Scratch,
    /// Per-tile flagged counts of the frontier compaction, then their offsets.
    pub compact_tiles: Scratch,
}

impl ScratchSet {
    /// Frees everything.
    pub fn release(&mut self) {
        self.sort_hist.release();
        self.sort_keys.release();
        self.sort_values.release();
        self.compact_tiles.release();
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.sort_hist.bytes()
            + self.sort_keys.bytes()
            + self.sort_values.bytes()
            + self.compact_tiles.bytes()
    }
}

/// Pointers to the kernel arguments, in parameter order, for `cuLaunchKernel` (which copies the
/// values at launch, so the referenced locals need only outlive the call).
macro_rules! kernel_args {
    ($($arg:expr),* $(,)?) => {
        [$( ($arg) as *const _ as *mut c_void ),*]
    };
}

/// Where kernels are queued.
pub struct Queue<'a> {
    /// The backend's stream.
    pub stream: sys::CUstream,
    /// The module's functions.
    pub kernels: &'a Kernels,
    /// The backend's scratch memory.
    pub scratch: &'a mut ScratchSet,
}

fn blocks_for(items: u32, per_block: u32) -> u32 {
    items.div_ceil(per_block)
}

/// Radix passes of a sort over keys below `num_cells`: as many digits as the largest key has (0
/// with a single cell, when the sort is a copy).
fn radix_passes(num_cells: u32) -> u32 {
    let max_key = num_cells.saturating_sub(1);
    (u32::BITS - max_key.leading_zeros()).div_ceil(RADIX_BITS)
}

/// Rounds of `SORT_THREADS` items in a tile of the one-sweep sort of `n` items: the fewest (a power
/// of two) that keep the tiles at or below `SORT_TARGET_TILES`, so that small sorts still spread
/// over the multiprocessors and large ones pay the per-tile look-back and barriers less often
/// (measured on an H100 at 21-bit keys: 1 round at 10k items, 4 at 100k, 16 at 1M and 10M).
/// `FORCEFIELD_SORT_TILE_ROUNDS` (1 to 16) fixes it, for measuring.
fn sort_tile_rounds(n: u32) -> u32 {
    static FIXED: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    let fixed = FIXED.get_or_init(|| {
        std::env::var(SORT_TILE_ROUNDS_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|r| (1..=SORT_MAX_ROUNDS).contains(r))
    });
    fixed.unwrap_or_else(|| {
        n.div_ceil(SORT_TARGET_TILES * SORT_THREADS)
            .next_power_of_two()
            .clamp(1, SORT_MAX_ROUNDS)
    })
}

/// Where the one-sweep sort's scratch words are: the digit totals of every pass (`passes * RADIX`
/// words), one tile counter a pass (`SORT_MAX_PASSES` words, so that the 8-byte words after them
/// are aligned), then each pass's published words, one 8-byte word per tile and digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OnesweepLayout {
    passes: u32,
    tiles: u32,
    tile_rounds: u32,
}

impl OnesweepLayout {
    fn new(n: u32, passes: u32, tile_rounds: u32) -> Self {
        OnesweepLayout {
            passes,
            tiles: blocks_for(n, tile_rounds * SORT_THREADS),
            tile_rounds,
        }
    }

    /// Byte offset of pass `pass`'s digit totals.
    fn totals_at(&self, pass: u32) -> u64 {
        u64::from(pass * RADIX) * 4
    }

    /// Byte offset of pass `pass`'s tile counter.
    fn counter_at(&self, pass: u32) -> u64 {
        self.totals_at(SORT_MAX_PASSES) + u64::from(pass) * 4
    }

    /// Byte offset of pass `pass`'s published words (8-byte aligned: 4 * (4 * 256 + 4) bytes in).
    fn status_at(&self, pass: u32) -> u64 {
        self.counter_at(SORT_MAX_PASSES)
            + u64::from(pass) * u64::from(self.tiles) * u64::from(RADIX) * 8
    }

    /// 4-byte words of the whole scratch.
    fn words(&self) -> usize {
        (self.status_at(self.passes) / 4) as usize
    }
}

/// The copies and fills that [`Queue::enqueue`] queues for `launch` besides its kernels, as (span,
/// elements from its start, direction). No kernel check sees them, so the checked mode bounds them
/// on the host before the launch.
pub fn queued_transfers(launch: &Launch) -> Vec<(DeviceSpan, usize, Access)> {
    match launch {
        Launch::BoundsReduce(a) => vec![(a.bounds, 6, Access::Write)],
        Launch::SortPairs(a) if a.num_items > 0 && radix_passes(a.max_cells) == 0 => {
            let n = a.num_items as usize;
            vec![
                (a.keys_in, n, Access::Read),
                (a.values_in, n, Access::Read),
                (a.keys_out, n, Access::Write),
                (a.values_out, n, Access::Write),
            ]
        }
        Launch::FrontierCompact(a) if a.num_nodes == 0 => vec![(a.frontier_len, 1, Access::Write)],
        _ => Vec::new(),
    }
}

impl Queue<'_> {
    fn launch(
        &self,
        f: sys::CUfunction,
        blocks: u32,
        threads: u32,
        args: &mut [*mut c_void],
    ) -> Result<(), DriverError> {
        // SAFETY: `f` belongs to the loaded module; `args` point to values of the kernel's
        // parameter types in its parameter order (see each caller); device addresses come from the
        // engine's registry, as on the CPU backend, which is what the harness hunts bugs in.
        unsafe { result::launch_kernel(f, (blocks, 1, 1), (threads, 1, 1), 0, self.stream, args) }
    }

    fn memset_u32(&self, dst: u64, value: u32, count: usize) -> Result<(), DriverError> {
        // SAFETY: as for `launch`.
        unsafe { sys::cuMemsetD32Async(dst, value, count, self.stream) }.result()
    }

    fn copy(&self, dst: u64, src: u64, bytes: usize) -> Result<(), DriverError> {
        // SAFETY: as for `launch`.
        unsafe { result::memcpy_dtod_async(dst, src, bytes, self.stream) }
    }

    /// Queues the `__trap()` kernel of `kernels/inject.cu`: the context is lost when it runs.
    pub fn lose_context(&mut self) -> Result<(), DriverError> {
        let unused: u64 = 0;
        let mut args = kernel_args![&unused];
        self.launch(self.kernels.lose_context, 1, 1, &mut args)
    }

    /// Queues the kernels of one [`Launch`].
    pub fn enqueue(&mut self, launch: &Launch) -> Result<(), DriverError> {
        match launch {
            Launch::BoundsReduce(a) => self.bounds_reduce(a),
            Launch::GridParams(a) => self.grid_params(a),
            Launch::BuildGrid(a) => self.build_grid(a),
            Launch::SortPairs(a) => self.sort_pairs(a),
            Launch::GatherPositions(a) => self.gather_positions(a),
            Launch::CellBounds(a) => self.cell_bounds(a),
            Launch::ForcePass(a) => self.force_pass(a),
            Launch::Integrate(a) => self.integrate(a),
            Launch::SsspRelax(a) => self.sssp_relax(a),
            Launch::FrontierCompact(a) => self.frontier_compact(a),
        }
    }

    /// `bounds_reduce`: identities into the six words, the block reduction (none for an empty
    /// graph), then `bounds_finalize` (which gives zeros for an empty box, as the CPU does).
    fn bounds_reduce(&mut self, a: &BoundsReduceArgs) -> Result<(), DriverError> {
        let bounds = a.bounds.addr;
        self.memset_u32(bounds, u32::MAX, 3)?;
        self.memset_u32(bounds + 12, 0, 3)?;
        if a.num_nodes > 0 {
            let blocks = blocks_for(a.num_nodes, NODE_THREADS).min(BOUNDS_MAX_BLOCKS);
            let mut args = kernel_args![
                &a.pos[0].addr,
                &a.pos[1].addr,
                &a.pos[2].addr,
                &bounds,
                &a.num_nodes,
            ];
            self.launch(self.kernels.bounds_reduce, blocks, NODE_THREADS, &mut args)?;
        }
        let mut args = kernel_args![&bounds];
        self.launch(self.kernels.bounds_finalize, 1, 32, &mut args)
    }

    /// `grid_params`: one thread turns the bounding box into the grid, on the device.
    fn grid_params(&mut self, a: &GridParamsArgs) -> Result<(), DriverError> {
        let i = &a.inputs;
        let mut args = kernel_args![
            &a.bounds.addr,
            &a.grid.addr,
            &i.cell_size,
            &i.cutoff,
            &i.num_nodes,
            &i.max_cells,
        ];
        self.launch(self.kernels.grid_params, 1, 32, &mut args)
    }

    fn build_grid(&mut self, a: &BuildGridArgs) -> Result<(), DriverError> {
        if a.num_nodes == 0 {
            return Ok(());
        }
        let mut args = kernel_args![
            &a.pos[0].addr,
            &a.pos[1].addr,
            &a.pos[2].addr,
            &a.cell_keys.addr,
            &a.node_order.addr,
            &a.grid.addr,
            &a.num_nodes,
        ];
        let blocks = blocks_for(a.num_nodes, NODE_THREADS);
        self.launch(self.kernels.build_grid, blocks, NODE_THREADS, &mut args)
    }

    /// `sort_pairs`: a stable LSD radix sort over the bits of the largest possible key,
    /// `max_cells - 1` (see `layout.cu`): the grid's own count stays on the device. Passes alternate
    /// between the output and scratch buffers so that the last one writes the output; the inputs are
    /// never written (the engine reads the unsorted keys back for its oracles). With a single cell
    /// every key is 0 and the sort is a copy. Above one tile the sort is one fill, `sort_histogram`
    /// (the digit counts of every pass) and one `sort_scatter` a pass (the one-sweep scheme).
    /// `cell_counts` is not used: the counts and the tiles' published words live in scratch memory,
    /// since their size depends on the item count, not on the cell count.
    fn sort_pairs(&mut self, a: &SortArgs) -> Result<(), DriverError> {
        let n = a.num_items;
        if n == 0 {
            return Ok(());
        }
        let passes = radix_passes(a.max_cells);
        let bytes = n as usize * 4;
        if passes == 0 {
            self.copy(a.keys_out.addr, a.keys_in.addr, bytes)?;
            return self.copy(a.values_out.addr, a.values_in.addr, bytes);
        }
        if n <= SORT_TILE {
            return self.sort_small(a, passes);
        }
        let layout = OnesweepLayout::new(n, passes, sort_tile_rounds(n));
        let scratch = self
            .scratch
            .sort_hist
            .ensure(layout.words() * 4, self.stream)?;
        let (tmp_keys, tmp_values) = self.sort_tmp(passes, bytes)?;
        // The digit totals, the tile counters and every tile's published words start at zero.
        self.memset_u32(scratch, 0, layout.words())?;
        let mut args = kernel_args![&a.keys_in.addr, &n, &passes, &scratch, &a.grid.addr];
        self.launch(
            self.kernels.sort_histogram,
            blocks_for(n, SORT_TILE),
            SORT_THREADS,
            &mut args,
        )?;
        for pass in 0..passes {
            let pass_totals = scratch + layout.totals_at(pass);
            let pass_counter = scratch + layout.counter_at(pass);
            let pass_status = scratch + layout.status_at(pass);
            // Each kernel reads the grid's cell count and picks its input and output from the
            // passes the grid needs (`sort_scatter` in layout.cu): the launches stay those of the
            // capacity, and a pass the grid does not need does nothing.
            let mut args = kernel_args![
                &a.keys_in.addr,
                &a.values_in.addr,
                &a.keys_out.addr,
                &a.values_out.addr,
                &tmp_keys,
                &tmp_values,
                &pass_totals,
                &pass_counter,
                &pass_status,
                &n,
                &pass,
                &passes,
                &layout.tile_rounds,
                &a.grid.addr,
            ];
            self.launch(
                self.kernels.sort_scatter,
                layout.tiles,
                SORT_THREADS,
                &mut args,
            )?;
        }
        Ok(())
    }

    /// The keys and values between radix passes (`bytes` each): none for a single pass.
    fn sort_tmp(&mut self, passes: u32, bytes: usize) -> Result<(u64, u64), DriverError> {
        if passes < 2 {
            return Ok((0, 0));
        }
        Ok((
            self.scratch.sort_keys.ensure(bytes, self.stream)?,
            self.scratch.sort_values.ensure(bytes, self.stream)?,
        ))
    }

    /// `sort_small`: the whole sort of at most one tile of items by one block, in one launch (the
    /// large sort's fill and two launches at least cost more than the sort itself there).
    fn sort_small(&mut self, a: &SortArgs, passes: u32) -> Result<(), DriverError> {
        let n = a.num_items;
        let bytes = n as usize * 4;
        let (tmp_keys, tmp_values) = self.sort_tmp(passes, bytes)?;
        let mut args = kernel_args![
            &a.keys_in.addr,
            &a.values_in.addr,
            &a.keys_out.addr,
            &a.values_out.addr,
            &tmp_keys,
            &tmp_values,
            &n,
            &passes,
            &a.grid.addr,
        ];
        self.launch(self.kernels.sort_small, 1, SORT_THREADS, &mut args)
    }

    /// `cell_clear` over the cell capacity (threads past the grid's cell count idle), then
    /// `cell_bounds` over the sorted items.
    fn cell_bounds(&mut self, a: &CellBoundsArgs) -> Result<(), DriverError> {
        if a.num_items == 0 {
            return Ok(());
        }
        let blocks = blocks_for(a.max_cells, NODE_THREADS);
        let reach = u64::from(blocks) * u64::from(NODE_THREADS);
        let mut args = kernel_args![&a.cell_start.addr, &a.cell_end.addr, &a.grid.addr, &reach];
        let blocks = blocks.min(CLEAR_MAX_BLOCKS);
        self.launch(self.kernels.cell_clear, blocks, NODE_THREADS, &mut args)?;
        let mut args = kernel_args![
            &a.sorted_keys.addr,
            &a.cell_start.addr,
            &a.cell_end.addr,
            &a.grid.addr,
            &a.num_items,
            &a.max_cells,
            &a.over_cells,
        ];
        // Planted `cell-bounds-over-cells` reads the item count from the grid: up to the capacity.
        let items = if a.over_cells != 0 {
            a.max_cells
        } else {
            a.num_items
        };
        let blocks = blocks_for(items, NODE_THREADS);
        self.launch(self.kernels.cell_bounds, blocks, NODE_THREADS, &mut args)
    }

    fn gather_positions(&mut self, a: &GatherPositionsArgs) -> Result<(), DriverError> {
        if a.num_nodes == 0 {
            return Ok(());
        }
        let mut args = kernel_args![
            &a.pos[0].addr,
            &a.pos[1].addr,
            &a.pos[2].addr,
            &a.sorted_nodes.addr,
            &a.sorted_pos[0].addr,
            &a.sorted_pos[1].addr,
            &a.sorted_pos[2].addr,
            &a.num_nodes,
        ];
        let blocks = blocks_for(a.num_nodes, NODE_THREADS);
        self.launch(
            self.kernels.gather_positions,
            blocks,
            NODE_THREADS,
            &mut args,
        )
    }

    fn force_pass(&mut self, a: &ForcePassArgs) -> Result<(), DriverError> {
        if a.num_nodes == 0 {
            return Ok(());
        }
        let mut args = kernel_args![
            &a.pos[0].addr,
            &a.pos[1].addr,
            &a.pos[2].addr,
            &a.force[0].addr,
            &a.force[1].addr,
            &a.force[2].addr,
            &a.sorted_nodes.addr,
            &a.sorted_pos[0].addr,
            &a.sorted_pos[1].addr,
            &a.sorted_pos[2].addr,
            &a.cell_start.addr,
            &a.cell_end.addr,
            &a.row_offsets.addr,
            &a.col_indices.addr,
            &a.weights.addr,
            &a.edge_target.addr,
            &a.anchor[0].addr,
            &a.anchor[1].addr,
            &a.anchor[2].addr,
            &a.anchor_k.addr,
            &a.sssp_dist.addr,
            &a.grid.addr,
            &a.params,
            &a.num_nodes,
            &a.stencil_radius,
        ];
        // `params.lanes()` threads a node, as the kernel reads them (`force_lanes` in layout.cu);
        // a block holds whole warps, so a node's lanes never straddle two warps. At most
        // 2^24 nodes of 32 lanes: 2^23 blocks of 64.
        let threads = u64::from(a.num_nodes) * u64::from(a.params.lanes());
        let blocks = threads.div_ceil(u64::from(FORCE_THREADS));
        let blocks = blocks.min(u64::from(u32::MAX)) as u32;
        self.launch(self.kernels.force_pass, blocks, FORCE_THREADS, &mut args)
    }

    fn integrate(&mut self, a: &IntegrateArgs) -> Result<(), DriverError> {
        if a.num_nodes == 0 {
            return Ok(());
        }
        let mut args = kernel_args![
            &a.pos_in[0].addr,
            &a.pos_in[1].addr,
            &a.pos_in[2].addr,
            &a.vel_in[0].addr,
            &a.vel_in[1].addr,
            &a.vel_in[2].addr,
            &a.force[0].addr,
            &a.force[1].addr,
            &a.force[2].addr,
            &a.mass.addr,
            &a.pos_out[0].addr,
            &a.pos_out[1].addr,
            &a.pos_out[2].addr,
            &a.vel_out[0].addr,
            &a.vel_out[1].addr,
            &a.vel_out[2].addr,
            &a.params,
            &a.num_nodes,
        ];
        let blocks = blocks_for(a.num_nodes, NODE_THREADS);
        self.launch(self.kernels.integrate, blocks, NODE_THREADS, &mut args)
    }

    fn sssp_relax(&mut self, a: &SsspRelaxArgs) -> Result<(), DriverError> {
        if a.frontier_len == 0 {
            return Ok(());
        }
        let mut args = kernel_args![
            &a.row_offsets.addr,
            &a.col_indices.addr,
            &a.weights.addr,
            &a.dist.addr,
            &a.frontier.addr,
            &a.flags.addr,
            &a.frontier_len,
        ];
        let blocks = blocks_for(a.frontier_len, NODE_THREADS);
        self.launch(self.kernels.sssp_relax, blocks, NODE_THREADS, &mut args)
    }

    /// `frontier_compact`: flagged counts per tile, their scan (which also writes the new frontier
    /// length), then each tile's flagged nodes in order.
    fn frontier_compact(&mut self, a: &FrontierCompactArgs) -> Result<(), DriverError> {
        let n = a.num_nodes;
        if n == 0 {
            return self.memset_u32(a.frontier_len.addr, 0, 1);
        }
        let tiles = blocks_for(n, COMPACT_TILE);
        let counts = self
            .scratch
            .compact_tiles
            .ensure(tiles as usize * 4, self.stream)?;
        let mut args = kernel_args![&a.flags.addr, &counts, &n];
        self.launch(
            self.kernels.frontier_count,
            tiles,
            COMPACT_THREADS,
            &mut args,
        )?;
        let mut args = kernel_args![&counts, &tiles, &a.frontier_len.addr];
        self.launch(self.kernels.sort_scan, 1, SCAN_THREADS, &mut args)?;
        let mut args = kernel_args![
            &a.flags.addr,
            &a.frontier.addr,
            &a.frontier_len.addr,
            &n,
            &counts,
        ];
        self.launch(
            self.kernels.frontier_compact,
            tiles,
            COMPACT_THREADS,
            &mut args,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::compile::SOURCES;

    fn source(name: &str) -> &'static str {
        SOURCES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .unwrap()
    }

    /// The value of `#define NAME <value>` in a kernel source, with its `u` suffix dropped.
    fn define(file: &str, name: &str) -> String {
        let prefix = format!("#define {name} ");
        source(file)
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{name} not defined in {file}"))
            .trim()
            .to_string()
    }

    #[test]
    fn the_one_sweep_scratch_holds_every_pass_apart_and_aligned() {
        // 1M items in tiles of 4 rounds, three passes (a 2^21-cell capacity).
        let l = OnesweepLayout::new(1_000_000, radix_passes(1 << 21), 4);
        assert_eq!(l.tiles, 977);
        assert_eq!(l.passes, 3);
        // Totals, then counters, then published words: no overlap, 8-byte words aligned.
        assert_eq!(l.totals_at(3) + u64::from(RADIX) * 4, l.totals_at(4));
        assert!(l.counter_at(0) >= l.totals_at(SORT_MAX_PASSES));
        assert!(l.status_at(0) >= l.counter_at(SORT_MAX_PASSES));
        for pass in 0..=l.passes {
            assert_eq!(l.status_at(pass) % 8, 0);
        }
        assert_eq!(
            l.status_at(1) - l.status_at(0),
            u64::from(l.tiles) * u64::from(RADIX) * 8
        );
        assert_eq!(l.words() * 4, l.status_at(3) as usize);
        // The last item falls in the last tile.
        assert!(u64::from(l.tiles) * u64::from(4 * SORT_THREADS) >= 1_000_000);
        assert!(u64::from(l.tiles - 1) * u64::from(4 * SORT_THREADS) < 1_000_000);
    }

    #[test]
    fn tiles_grow_with_the_item_count_up_to_sixteen_rounds() {
        if std::env::var_os(SORT_TILE_ROUNDS_VAR).is_some() {
            println!("skipped: {SORT_TILE_ROUNDS_VAR} is set");
            return;
        }
        assert_eq!(sort_tile_rounds(SORT_TILE + 1), 1);
        assert_eq!(sort_tile_rounds(10_000), 1);
        assert_eq!(sort_tile_rounds(100_000), 4);
        assert_eq!(sort_tile_rounds(1_000_000), 16);
        assert_eq!(sort_tile_rounds(u32::MAX), 16);
        // Never more than the target's tiles below the largest tile.
        for n in [50_000u32, 300_000, 2_000_000] {
            let r = sort_tile_rounds(n);
            assert!(n.div_ceil(r * SORT_THREADS) <= SORT_TARGET_TILES || r == SORT_MAX_ROUNDS);
        }
    }

    #[test]
    fn launch_shapes_match_the_kernel_sources() {
        assert_eq!(
            define("layout.cu", "NODE_THREADS"),
            format!("{NODE_THREADS}u")
        );
        assert_eq!(define("layout.cu", "RADIX_BITS"), format!("{RADIX_BITS}u"));
        assert_eq!(
            define("layout.cu", "SORT_THREADS"),
            format!("{SORT_THREADS}u")
        );
        assert_eq!(
            define("layout.cu", "SORT_ITEMS"),
            format!("{}u", SORT_TILE / SORT_THREADS)
        );
        assert_eq!(
            define("layout.cu", "SCAN_THREADS"),
            format!("{SCAN_THREADS}u")
        );
        assert_eq!(
            define("layout.cu", "SORT_MAX_PASSES"),
            format!("{SORT_MAX_PASSES}u")
        );
        assert_eq!(radix_passes(u32::MAX), SORT_MAX_PASSES);
        assert_eq!(
            define("layout.cu", "SORT_MAX_ROUNDS"),
            format!("{SORT_MAX_ROUNDS}u")
        );
        assert_eq!(
            define("sssp.cu", "COMPACT_THREADS"),
            format!("{COMPACT_THREADS}u")
        );
        assert_eq!(
            define("sssp.cu", "COMPACT_ITEMS"),
            format!("{}u", COMPACT_TILE / COMPACT_THREADS)
        );
        // The sort's per-block shared counters are indexed by thread: one digit per thread.
        assert_eq!(RADIX, SORT_THREADS);
        // A force-pass block is whole warps, each holding whole groups of a node's lanes.
        assert_eq!(FORCE_THREADS % 32, 0);
        assert_eq!(32 % crate::params::MAX_FORCE_LANES, 0);
    }

    /// Field names of `struct NAME { ... }` in `text`, in order (`type name;` or `pub name: type,`).
    fn fields(text: &str, open: &str) -> Vec<String> {
        let start = text
            .find(open)
            .unwrap_or_else(|| panic!("{open} not found"));
        let body = &text[start + open.len()..];
        let body = &body[..body.find('}').unwrap()];
        body.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("/*"))
            .map(|l| {
                if let Some(rust) = l.strip_prefix("pub ") {
                    rust.split(':').next().unwrap().trim().to_string()
                } else {
                    let decl = l.trim_end_matches(';');
                    let name = decl.split_whitespace().last().unwrap();
                    name.split('[').next().unwrap().to_string()
                }
            })
            .collect()
    }

    #[test]
    fn structs_have_the_rust_field_order() {
        let cuh = source("common.cuh");
        let params = include_str!("../../params.rs");
        let backend = include_str!("../mod.rs");
        assert_eq!(
            fields(cuh, "struct KernelParams {"),
            fields(params, "pub struct KernelParams {")
        );
        assert_eq!(
            fields(cuh, "struct GridSpec {"),
            fields(backend, "pub struct GridSpec {")
        );
        assert_eq!(std::mem::size_of::<crate::params::KernelParams>(), 23 * 4);
        assert_eq!(std::mem::size_of::<crate::backend::GridSpec>(), 7 * 4);
        // The checked mode's tables and record.
        let checked = include_str!("checked.rs");
        let zone_src = source("checked.cu");
        for (cuda, text, rust) in [
            ("struct FfSpan {", cuh, "pub struct SpanEntry {"),
            ("struct FfRecord {", cuh, "pub struct Record {"),
            ("struct FfZone {", zone_src, "pub struct Zone {"),
        ] {
            assert_eq!(fields(text, cuda), fields(checked, rust), "{cuda}");
        }
    }

    #[test]
    fn checked_mode_constants_match_the_kernel_sources() {
        use crate::backend::cuda::checked::{CANARY, RED_ZONE, TABLE_SLOTS};
        assert_eq!(
            define("common.cuh", "FF_RED_ZONE_BYTES"),
            format!("{RED_ZONE}u")
        );
        assert_eq!(define("common.cuh", "FF_CANARY"), format!("{CANARY:#x}u"));
        assert_eq!(
            define("common.cuh", "FF_TABLE_LOG2"),
            format!("{}u", TABLE_SLOTS.trailing_zeros())
        );
        for (name, value) in [
            ("FF_LINE_BITS", 15),
            ("FF_FILE_BITS", 2),
            ("FF_BUFFER_BITS", 6),
        ] {
            assert_eq!(define("common.cuh", name), format!("{value}u"), "{name}");
        }
        // The hash of the span table: Fibonacci hashing of the address's bits above 256 bytes.
        assert!(source("common.cuh")
            .contains("((u32)(addr >> 8) * 2654435761u) >> (32u - FF_TABLE_LOG2)"));
    }

    #[test]
    fn queued_transfers_are_the_copies_and_fills_of_enqueue() {
        use crate::backend::{DeviceSpan, SortArgs};
        use crate::buffer_name::BufferName;
        let span = |buffer| DeviceSpan {
            addr: 0x1000,
            capacity: 8,
            len: 8,
            buffer,
        };
        let sort = |num_cells| {
            Launch::SortPairs(SortArgs {
                keys_in: span(BufferName::CellKeys),
                values_in: span(BufferName::NodeOrder),
                keys_out: span(BufferName::SortedKeys),
                values_out: span(BufferName::SortedNodes),
                cell_counts: span(BufferName::CellCounts),
                grid: span(BufferName::Grid),
                num_items: 8,
                max_cells: num_cells,
            })
        };
        // One cell: the sort is two copies of 8 elements each way.
        let t = queued_transfers(&sort(1));
        assert_eq!(t.len(), 4);
        assert!(t.iter().all(|&(_, n, _)| n == 8));
        assert_eq!(t[2].0.buffer, BufferName::SortedKeys);
        assert_eq!(t[2].2, Access::Write);
        // More cells: kernels only.
        assert!(queued_transfers(&sort(2)).is_empty());
        assert_eq!(
            (radix_passes(1), radix_passes(256), radix_passes(257)),
            (0, 1, 2)
        );
    }
}
