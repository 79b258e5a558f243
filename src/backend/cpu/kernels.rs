/*!
The CPU kernels: one function per kernel of the CUDA sources in `kernels/`, with the same names, arguments and order.

Each kernel is written the way its GPU twin is: a body per thread index `i`, reading and writing
device memory only through [`Dev`] accessors made by its [`Cx`]: raw, without bounds checks, in the
default mode (`Cx<false>`), bounds- and initialization-checked in the checked mode (`Cx<true>`).
Kernels that are data-parallel over nodes run on a few threads with [`par_for`]; each index writes
only its own outputs, so results do not depend on the thread count (bitwise determinism).
*/

use super::access::{Cx, Dev};
use crate::backend::{
    grid_for_bounds, BoundsReduceArgs, BuildGridArgs, CellBoundsArgs, DeviceSpan, ForcePassArgs,
    FrontierCompactArgs, GatherPositionsArgs, GridParamsArgs, GridSpec, IntegrateArgs, SortArgs,
    SsspRelaxArgs, GRID_WORDS, KERNEL_DISTANCE_TARGETS,
};
use crate::hash::{mix3, unit_f32};
use crate::params::{features, KernelParams, MAX_FORCE_LANES};

/// Below this many items a kernel runs on the calling thread.
const PAR_MIN: usize = 4096;

/// Runs `body(i)` for `i` in `0..n` on up to `threads` threads, in contiguous chunks.
///
/// A checked kernel stops by unwinding from the accessor that saw a violation. Each spawned thread
/// catches its own unwinding and the first is resumed on the calling thread, so that it reaches the
/// launch as one stop (an uncaught one would make the scope raise a panic of its own).
pub fn par_for(threads: usize, n: usize, body: impl Fn(usize) + Sync) {
    if threads <= 1 || n < PAR_MIN {
        (0..n).for_each(body);
        return;
    }
    let chunk = n.div_ceil(threads);
    let stopped = std::thread::scope(|s| {
        let body = &body;
        let handles: Vec<_> = (1..threads)
            .map(|t| {
                let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                s.spawn(move || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| range.for_each(body)))
                })
            })
            .collect();
        (0..chunk.min(n)).for_each(body);
        handles
            .into_iter()
            .find_map(|h| h.join().and_then(|r| r).err())
    });
    if let Some(payload) = stopped {
        std::panic::resume_unwind(payload);
    }
}

#[inline]
fn dev3<'a, const C: bool>(ctx: &Cx<'a, C>, s: &crate::backend::Span3) -> [Dev<'a, f32, C>; 3] {
    [ctx.dev(s[0]), ctx.dev(s[1]), ctx.dev(s[2])]
}

#[inline]
fn load3<const C: bool>(p: &[Dev<'_, f32, C>; 3], i: usize) -> [f32; 3] {
    [p[0].get(i), p[1].get(i), p[2].get(i)]
}

#[inline]
fn store3<const C: bool>(p: &[Dev<'_, f32, C>; 3], i: usize, v: [f32; 3]) {
    p[0].set(i, v[0]);
    p[1].set(i, v[1]);
    p[2].set(i, v[2]);
}

/// Cell coordinate along one axis, clamped to the grid.
#[inline]
pub fn cell_coord(p: f32, origin: f32, cell_size: f32, dim: u32) -> u32 {
    let f = ((p - origin) / cell_size).floor();
    if f > 0.0 {
        (f as u32).min(dim - 1)
    } else {
        0
    }
}

/// The cell key of a point: `z*dy*dx + y*dx + x`, in 32-bit arithmetic that wraps as the GPU's
/// does (a grid within the cell cap never wraps; an uncapped one must behave the same in every
/// build profile).
#[inline]
pub fn cell_key(grid: &GridSpec, p: [f32; 3]) -> u32 {
    let [dx, dy, dz] = grid.dims;
    let x = cell_coord(p[0], grid.origin[0], grid.cell_size, dx);
    let y = cell_coord(p[1], grid.origin[1], grid.cell_size, dy);
    let z = cell_coord(p[2], grid.origin[2], grid.cell_size, dz);
    z.wrapping_mul(dy)
        .wrapping_add(y)
        .wrapping_mul(dx)
        .wrapping_add(x)
}

/// Step 1, `bounds_reduce`: the bounding box of live positions (zeros for an empty graph).
pub fn bounds_reduce<const C: bool>(a: &BoundsReduceArgs, ctx: &Cx<'_, C>) {
    let pos = dev3(ctx, &a.pos);
    let out = ctx.dev::<f32>(a.bounds);
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for i in 0..a.num_nodes as usize {
        let p = load3(&pos, i);
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    for k in 0..3 {
        if lo[k] > hi[k] {
            lo[k] = 0.0;
            hi[k] = 0.0;
        }
        out.set(k, lo[k]);
        out.set(3 + k, hi[k]);
    }
}

/// The grid that `grid_params` stored on the device, and its cell count (word 7).
fn load_grid<const C: bool>(ctx: &Cx<'_, C>, span: DeviceSpan) -> (GridSpec, u32) {
    let words = ctx.dev::<u32>(span);
    let w: [u32; GRID_WORDS] = std::array::from_fn(|i| words.get(i));
    (GridSpec::from_words(&w), w[7])
}

/// Step 2, `grid_params`: the grid of the bounding box, computed where the box is (one thread on
/// the GPU), so that no step waits for the host.
pub fn grid_params<const C: bool>(a: &GridParamsArgs, ctx: &Cx<'_, C>) {
    let bounds = ctx.dev::<f32>(a.bounds);
    let out = ctx.dev::<u32>(a.grid);
    let lo = [bounds.get(0), bounds.get(1), bounds.get(2)];
    let hi = [bounds.get(3), bounds.get(4), bounds.get(5)];
    for (i, w) in grid_for_bounds(lo, hi, &a.inputs)
        .to_words()
        .into_iter()
        .enumerate()
    {
        out.set(i, w);
    }
}

/// Step 3, `build_grid`: the cell key of every node, and the identity permutation as sort values.
pub fn build_grid<const C: bool>(a: &BuildGridArgs, ctx: &Cx<'_, C>, threads: usize) {
    let pos = dev3(ctx, &a.pos);
    let keys = ctx.dev::<u32>(a.cell_keys);
    let order = ctx.dev::<u32>(a.node_order);
    let (grid, _) = load_grid(ctx, a.grid);
    par_for(threads, a.num_nodes as usize, |i| {
        keys.set(i, cell_key(&grid, load3(&pos, i)));
        order.set(i, i as u32);
    });
}

/// Step 4, `sort_pairs`: stable counting sort of (key, value) by key, in three phases like its GPU twin:
/// `sort_histogram` (count per cell), `sort_scan` (exclusive prefix sum), `sort_scatter`.
pub fn sort_pairs<const C: bool>(a: &SortArgs, ctx: &Cx<'_, C>) {
    let keys_in = ctx.dev::<u32>(a.keys_in);
    let values_in = ctx.dev::<u32>(a.values_in);
    let keys_out = ctx.dev::<u32>(a.keys_out);
    let values_out = ctx.dev::<u32>(a.values_out);
    let counts = ctx.dev::<u32>(a.cell_counts);
    let (_, num_cells) = load_grid(ctx, a.grid);
    let n = a.num_items as usize;
    // sort_histogram
    for c in 0..num_cells as usize {
        counts.set(c, 0);
    }
    for i in 0..n {
        let k = keys_in.get(i) as usize;
        counts.set(k, counts.get(k) + 1);
    }
    // sort_scan
    let mut running = 0u32;
    for c in 0..num_cells as usize {
        let count = counts.get(c);
        counts.set(c, running);
        running += count;
    }
    // sort_scatter
    for i in 0..n {
        let k = keys_in.get(i);
        let slot = counts.get(k as usize);
        counts.set(k as usize, slot + 1);
        keys_out.set(slot as usize, k);
        values_out.set(slot as usize, values_in.get(i));
    }
}

/// Step 4b, `gather_positions`: the position of the node in each sorted slot, so that the force pass
/// reads a cell's candidates from contiguous memory.
pub fn gather_positions<const C: bool>(a: &GatherPositionsArgs, ctx: &Cx<'_, C>, threads: usize) {
    let pos = dev3(ctx, &a.pos);
    let sorted_nodes = ctx.dev::<u32>(a.sorted_nodes);
    let sorted_pos = dev3(ctx, &a.sorted_pos);
    par_for(threads, a.num_nodes as usize, |t| {
        store3(&sorted_pos, t, load3(&pos, sorted_nodes.get(t) as usize));
    });
}

/// Step 5, `cell_bounds`: `cell_clear` (every cell of the grid empty), then for every sorted slot
/// that begins or ends a run of equal keys, the run as that cell's `[start, end)`. Launched over
/// nodes (sorted slots), not cells.
pub fn cell_bounds<const C: bool>(a: &CellBoundsArgs, ctx: &Cx<'_, C>, threads: usize) {
    let keys = ctx.dev::<u32>(a.sorted_keys);
    let start = ctx.dev::<u32>(a.cell_start);
    let end = ctx.dev::<u32>(a.cell_end);
    let (_, num_cells) = load_grid(ctx, a.grid);
    // cell_clear
    par_for(threads, num_cells as usize, |c| {
        start.set(c, 0);
        end.set(c, 0);
    });
    let n = if a.over_cells != 0 {
        num_cells as usize
    } else {
        a.num_items as usize
    };
    par_for(threads, n, |i| {
        let k = keys.get(i);
        if i == 0 || keys.get(i - 1) != k {
            start.set(k as usize, i as u32);
        }
        if i + 1 == n || keys.get(i + 1) != k {
            end.set(k as usize, i as u32 + 1);
        }
    });
}

#[inline]
fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[inline]
fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[inline]
fn axpy(acc: &mut [f32; 3], s: f32, d: [f32; 3]) {
    acc[0] += s * d[0];
    acc[1] += s * d[1];
    acc[2] += s * d[2];
}

/// The planted graded slowdowns' work: `per_mille` dummy iterations per 1000 candidates scanned
/// (dithered by node, so that the total follows the fraction), each a square root and a division
/// like a candidate's, the result discarded through `black_box` so that it is neither optimized
/// away nor able to change a force.
#[inline]
fn planted_extra_work(scanned: u32, per_mille: u32, node: usize, x: f32) {
    let dither = (node as u64).wrapping_mul(619) % 1000;
    let n = (scanned as u64 * per_mille as u64 + dither) / 1000;
    let mut acc = 0.0f32;
    for k in 0..n {
        let d = x + k as f32;
        acc = std::hint::black_box(acc + 1.0 / (d * d + 1.0).sqrt());
    }
    std::hint::black_box(acc);
}

/// Step 6, `force_pass`: the total force on every node.
///
/// Emulates the CUDA kernel's `L = params.lanes()` threads a node: lane `l` sums, into its own
/// partial force, the repulsion candidates whose ordinal `k` in the node's scan has `k % L == l`
/// (the ordinal counts every slot of the 27-cell stencil scanned, the node's own slot included, so
/// that it does not depend on which slot is skipped; the outer cells of a wider stencil have an
/// ordinal of their own, so that scanning them leaves the sum's order as it was), then the spring
/// entries `e` of the node's CSR row with `(e - row_start) % L == l`. The partial forces are then
/// added in a fixed tree, `acc[l] = acc[l] + acc[l + off]` for `off` = `L/2, L/4, …, 1` and
/// `l < off` (the CUDA kernel's `__shfl_down_sync`), and lane 0 alone adds gravity and the
/// constraint force. With `L = 1` this is the scan-order sum of one thread a node.
pub fn force_pass<const C: bool>(a: &ForcePassArgs, ctx: &Cx<'_, C>, threads: usize) {
    // One instance per lane count: with `L` a constant the lane arithmetic of `L = 1` disappears
    // (with a run-time `L` the one-lane pass counted 27% more instructions at 1k nodes).
    match a.params.lanes() {
        1 => force_pass_lanes::<C, 1>(a, ctx, threads),
        2 => force_pass_lanes::<C, 2>(a, ctx, threads),
        4 => force_pass_lanes::<C, 4>(a, ctx, threads),
        8 => force_pass_lanes::<C, 8>(a, ctx, threads),
        16 => force_pass_lanes::<C, 16>(a, ctx, threads),
        _ => force_pass_lanes::<C, { MAX_FORCE_LANES as usize }>(a, ctx, threads),
    }
}

/// The lane of ordinal `k` among `L` lanes (a power of two): `k % L`. Spelled out for `L = 1`,
/// which the optimizer did not fold from `k & 0` (the one-lane pass counted 19% more
/// instructions).
#[inline(always)]
fn lane_of<const L: usize>(k: usize) -> usize {
    if L == 1 {
        0
    } else {
        k & (L - 1)
    }
}

/// [`force_pass`] with `L` lanes a node.
fn force_pass_lanes<const C: bool, const L: usize>(
    a: &ForcePassArgs,
    ctx: &Cx<'_, C>,
    threads: usize,
) {
    let pos = dev3(ctx, &a.pos);
    let force = dev3(ctx, &a.force);
    let sorted_nodes = ctx.dev::<u32>(a.sorted_nodes);
    let sorted_pos = dev3(ctx, &a.sorted_pos);
    let cell_start = ctx.dev::<u32>(a.cell_start);
    let cell_end = ctx.dev::<u32>(a.cell_end);
    let row_offsets = ctx.dev::<u32>(a.row_offsets);
    let col_indices = ctx.dev::<u32>(a.col_indices);
    let weights = ctx.dev::<f32>(a.weights);
    let edge_target = ctx.dev::<f32>(a.edge_target);
    let anchor = dev3(ctx, &a.anchor);
    let anchor_k = ctx.dev::<f32>(a.anchor_k);
    let sssp_dist = ctx.dev::<f32>(a.sssp_dist);
    let p: &KernelParams = &a.params;
    let (grid, _) = load_grid(ctx, a.grid);
    let radius = a.stencil_radius as i64;
    // Thread t computes node sorted_nodes[t], as on the GPU: neighbouring t scan the same cells, so
    // their candidates stay in cache. Each node's sum is the same whichever thread computes it.
    par_for(threads, a.num_nodes as usize, |t| {
        let i = sorted_nodes.get(t) as usize;
        let pi = load3(&pos, i);
        // The partial force of each lane.
        let mut acc = [[0.0f32; 3]; L];

        if p.feature_flags & features::REPULSION != 0 {
            let mut scanned = 0u32;
            // Ordinals of the next slot among the stencil's slots and among the outer cells' ones.
            let (mut inner_k, mut outer_k) = (0usize, 0usize);
            let cutoff2 = p.repulsion_cutoff * p.repulsion_cutoff;
            let [dx, dy, dz] = grid.dims;
            let cx = cell_coord(pi[0], grid.origin[0], grid.cell_size, dx) as i64;
            let cy = cell_coord(pi[1], grid.origin[1], grid.cell_size, dy) as i64;
            let cz = cell_coord(pi[2], grid.origin[2], grid.cell_size, dz) as i64;
            for z in (cz - radius).max(0)..=(cz + radius).min(dz as i64 - 1) {
                for y in (cy - radius).max(0)..=(cy + radius).min(dy as i64 - 1) {
                    for x in (cx - radius).max(0)..=(cx + radius).min(dx as i64 - 1) {
                        let key = ((z * dy as i64 + y) * dx as i64 + x) as usize;
                        // Cells beyond the 27-cell stencil (only with a wider stencil_radius) are
                        // scanned and their candidates dropped: the cost of a wider scan, the same
                        // sum.
                        let outer = (z - cz).abs() > 1 || (y - cy).abs() > 1 || (x - cx).abs() > 1;
                        let (s, e) = (cell_start.get(key), cell_end.get(key));
                        scanned = scanned.wrapping_add(e.wrapping_sub(s));
                        // The ordinal of slot `s`; the cell's slots follow it.
                        let ordinal = if outer { &mut outer_k } else { &mut inner_k };
                        let first = *ordinal;
                        if L > 1 {
                            *ordinal += e.saturating_sub(s) as usize;
                        }
                        for slot in s..e {
                            let lane = lane_of::<L>(first + (slot - s) as usize);
                            // Slot t holds node i itself (sorted_nodes is a permutation); the
                            // CUDA kernel compares slots to spare a load per candidate, and so
                            // does this one, so that both skip the same candidates under any
                            // input.
                            if slot as usize == t {
                                continue;
                            }
                            let mut d = sub(pi, load3(&sorted_pos, slot as usize));
                            if d == [0.0; 3] {
                                d = coincident_offset(
                                    p,
                                    i,
                                    sorted_nodes.get(slot as usize) as usize,
                                );
                            }
                            let d2 = dot(d, d);
                            if d2 >= cutoff2 || (outer && !d2.is_nan()) {
                                continue;
                            }
                            // F = repel_k * d / (d² + eps)^(3/2): about repel_k / d² along d
                            // when d² >> eps; softening keeps near-coincident pairs finite.
                            let soft2 = d2 + p.softening_eps;
                            let soft = soft2.sqrt();
                            let mut scale = p.repel_k / (soft2 * soft);
                            if p.separation_radius > 0.0 && soft < p.separation_radius {
                                scale += p.repel_k * (p.separation_radius - soft)
                                    / (p.separation_radius * soft);
                            }
                            axpy(&mut acc[lane], scale, d);
                        }
                    }
                }
            }
            // Planted `slow-force-pass-<n>pct` (`slow_extra_work` is 0 otherwise): once a node, by
            // lane 0 on the GPU, from the node's whole scan.
            if p.slow_extra_work != 0 {
                planted_extra_work(scanned, p.slow_extra_work, i, pi[0]);
            }
        }

        let row = row_offsets.get(i) as usize..row_offsets.get(i + 1) as usize;
        if p.feature_flags & features::SPRINGS != 0 {
            let stretch = p.feature_flags & features::SSSP_REST_LENGTH != 0 && p.sssp_alpha > 0.0;
            for e in row.clone() {
                let j = col_indices.get(e) as usize;
                let d = sub(load3(&pos, j), pi);
                let dist = dot(d, d).sqrt();
                if dist == 0.0 {
                    continue;
                }
                let mut rest = p.rest_length;
                if stretch {
                    let (du, dv) = (sssp_dist.get(i), sssp_dist.get(j));
                    if du.is_finite() && dv.is_finite() {
                        rest += p.sssp_alpha * (du - dv).abs();
                    }
                }
                axpy(
                    &mut acc[lane_of::<L>(e - row.start)],
                    p.spring_k * (dist - rest) * weights.get(e) / dist,
                    d,
                );
            }
        }

        // The lanes' partial forces in the CUDA kernel's shuffle tree; lane 0 carries on alone.
        let mut off = L / 2;
        while off > 0 {
            for l in 0..off {
                let other = acc[l + off];
                acc[l] = [
                    acc[l][0] + other[0],
                    acc[l][1] + other[1],
                    acc[l][2] + other[2],
                ];
            }
            off /= 2;
        }
        let mut f = acc[0];

        if p.feature_flags & features::CENTER_GRAVITY != 0 {
            axpy(&mut f, -p.center_gravity_k, pi);
        }

        if p.feature_flags & features::CONSTRAINTS != 0 && p.constraint_ramp > 0.0 {
            let mut fc = [0.0f32; 3];
            let k = anchor_k.get(i);
            if k > 0.0 {
                axpy(&mut fc, k, sub(load3(&anchor, i), pi));
            }
            // Without a distance target on the device the walk would add nothing (as in CUDA).
            let targets = if p.feature_flags & KERNEL_DISTANCE_TARGETS != 0 {
                row
            } else {
                row.start..row.start
            };
            for e in targets {
                let target = edge_target.get(e);
                if target < 0.0 {
                    continue;
                }
                let d = sub(load3(&pos, col_indices.get(e) as usize), pi);
                let dist = dot(d, d).sqrt();
                if dist > 0.0 {
                    axpy(&mut fc, (dist - target) / dist, d);
                }
            }
            let m = dot(fc, fc).sqrt();
            let cap = if m > p.constraint_max_force {
                p.constraint_max_force / m
            } else {
                1.0
            };
            axpy(&mut f, cap * p.constraint_ramp, fc);
        }

        store3(&force, i, f);
    });
}

/// The separation used for two nodes at exactly the same point: a small seeded direction, opposite
/// for the two nodes of the pair, so that coincident nodes are pushed apart deterministically.
#[inline]
pub fn coincident_offset(p: &KernelParams, i: usize, j: usize) -> [f32; 3] {
    let seed = (p.seed_hi as u64) << 32 | p.seed_lo as u64;
    let (lo, hi) = if i < j { (i, j) } else { (j, i) };
    let sign = if i < j { 1.0f32 } else { -1.0f32 };
    // Bounded by the softening length: softening is what keeps near pairs finite, so without it a
    // coincident pair gets no separation (and 0/0).
    let scale = (p.repulsion_cutoff * 1e-3).min(p.softening_eps.sqrt());
    let mut d = [0.0f32; 3];
    for (k, dk) in d.iter_mut().enumerate() {
        let u = unit_f32(mix3(seed, lo as u64, hi as u64 * 3 + k as u64)) * 2.0 - 1.0;
        *dk = sign * u * scale;
    }
    d
}

/// Thermal noise in [-1, 1) for node `i`, axis `axis`, at this step.
#[inline]
pub fn noise(p: &KernelParams, i: usize, axis: u64) -> f32 {
    let seed = (p.seed_hi as u64) << 32 | p.seed_lo as u64;
    unit_f32(mix3(seed, p.iteration as u64, i as u64 * 3 + axis)) * 2.0 - 1.0
}

/// Step 7, `integrate`: cap force, `vel = (vel + F*dt/m) * damping`, noise, cap velocity, move, clamp to
/// the viewport reflecting with `boundary_damping`.
pub fn integrate<const C: bool>(a: &IntegrateArgs, ctx: &Cx<'_, C>, threads: usize) {
    let pos_in = dev3(ctx, &a.pos_in);
    let vel_in = dev3(ctx, &a.vel_in);
    let force = dev3(ctx, &a.force);
    let mass = ctx.dev::<f32>(a.mass);
    let pos_out = dev3(ctx, &a.pos_out);
    let vel_out = dev3(ctx, &a.vel_out);
    let p: &KernelParams = &a.params;
    par_for(threads, a.num_nodes as usize, |i| {
        let mut f = load3(&force, i);
        let fm = dot(f, f).sqrt();
        if fm > p.max_force {
            let s = p.max_force / fm;
            f = [f[0] * s, f[1] * s, f[2] * s];
        }
        let inv_m = p.dt / mass.get(i);
        let mut v = load3(&vel_in, i);
        for k in 0..3 {
            v[k] = (v[k] + f[k] * inv_m) * p.damping;
        }
        if p.feature_flags & features::THERMAL_NOISE != 0 && p.temperature > 0.0 {
            for (k, vk) in v.iter_mut().enumerate() {
                *vk += p.temperature * noise(p, i, k as u64);
            }
        }
        let vm = dot(v, v).sqrt();
        if vm > p.max_velocity {
            let s = p.max_velocity / vm;
            v = [v[0] * s, v[1] * s, v[2] * s];
        }
        let mut x = load3(&pos_in, i);
        for k in 0..3 {
            x[k] += v[k] * p.dt;
            if x[k] > p.viewport_bounds {
                x[k] = p.viewport_bounds;
                v[k] = -v[k] * p.boundary_damping;
            } else if x[k] < -p.viewport_bounds {
                x[k] = -p.viewport_bounds;
                v[k] = -v[k] * p.boundary_damping;
            }
        }
        store3(&pos_out, i, x);
        store3(&vel_out, i, v);
    });
}

/// SSSP `sssp_relax`: for each frontier node, relax its CSR entries; flag every improved node.
pub fn sssp_relax<const C: bool>(a: &SsspRelaxArgs, ctx: &Cx<'_, C>) {
    let row_offsets = ctx.dev::<u32>(a.row_offsets);
    let col_indices = ctx.dev::<u32>(a.col_indices);
    let weights = ctx.dev::<f32>(a.weights);
    let dist = ctx.dev::<f32>(a.dist);
    let frontier = ctx.dev::<u32>(a.frontier);
    let flags = ctx.dev::<u32>(a.flags);
    for t in 0..a.frontier_len as usize {
        let u = frontier.get(t) as usize;
        let du = dist.get(u);
        for e in row_offsets.get(u) as usize..row_offsets.get(u + 1) as usize {
            let v = col_indices.get(e) as usize;
            let candidate = du + weights.get(e);
            if candidate < dist.get(v) {
                dist.set(v, candidate);
                flags.set(v, 1);
            }
        }
    }
}

/// SSSP `frontier_compact`: flagged nodes, ascending, become the next frontier; flags are cleared.
pub fn frontier_compact<const C: bool>(a: &FrontierCompactArgs, ctx: &Cx<'_, C>) {
    let flags = ctx.dev::<u32>(a.flags);
    let frontier = ctx.dev::<u32>(a.frontier);
    let len = ctx.dev::<u32>(a.frontier_len);
    let mut count = 0usize;
    for v in 0..a.num_nodes as usize {
        if flags.get(v) != 0 {
            frontier.set(count, v as u32);
            count += 1;
            flags.set(v, 0);
        }
    }
    len.set(0, count as u32);
}
