/*
 * Single-source shortest paths, the CUDA twins of `sssp_relax` and `frontier_compact` in
 * src/backend/cpu/kernels.rs.
 *
 * The CPU relaxes the frontier sequentially; here one thread relaxes each frontier node's CSR row
 * and lowers distances with an atomic minimum. The order of relaxations differs, but the fixed point
 * does not: every distance is the float sum along some path, and relaxation stops only when no edge
 * can lower any distance, so each distance ends as the least such sum over all paths (float
 * addition of a non-negative weight is monotone). CPU and GPU distances are therefore equal.
 *
 * The frontier is compacted by a scan, so it is in ascending node order, as on the CPU:
 *   frontier_compact = frontier_count + sort_scan (layout.cu) + frontier_compact
 *
 * Global memory goes through BUFFERS, LD and ST (common.cuh), as in layout.cu.
 */
#include "common.cuh"

#define COMPACT_THREADS 256u
#define COMPACT_ITEMS 16u
#define COMPACT_TILE (COMPACT_THREADS * COMPACT_ITEMS)

/* Distances are non-negative floats or +inf, whose bit patterns order like the floats as signed
 * integers, so atomicMin on the bits is a float minimum. */
extern "C" __global__ void sssp_relax(const u32* __restrict__ row_offsets,
                                      const u32* __restrict__ col_indices,
                                      const float* __restrict__ weights, float* __restrict__ dist,
                                      const u32* __restrict__ frontier, u32* __restrict__ flags,
                                      u32 frontier_len) {
    BUFFERS(row_offsets, col_indices, weights, dist, frontier, flags);
    const u64 t = global_index();
    if (t >= frontier_len) return;
    const u32 u = LD(frontier, t);
    /* Another thread may lower dist[u] meanwhile; it then flags u, which is relaxed again. */
    const float du = LD(dist, u);
    const u32 end = LD(row_offsets, u + 1);
    for (u32 e = LD(row_offsets, u); e < end; ++e) {
        const u32 v = LD(col_indices, e);
        const float candidate = du + LD(weights, e);
        if (candidate < LD(dist, v)) {
            const int old = atomicMin((int*)&ST(dist, v), __float_as_int(candidate));
            if (candidate < __int_as_float(old)) ST(flags, v) = 1u;
        }
    }
}

/* Flagged nodes in each tile of COMPACT_TILE nodes. */
extern "C" __global__ void frontier_count(const u32* __restrict__ flags,
                                          u32* __restrict__ tile_counts, u32 num_nodes) {
    BUFFERS(flags, tile_counts);
    __shared__ u32 warp_totals[COMPACT_THREADS / 32u];
    const u64 base = (u64)blockIdx.x * COMPACT_TILE;
    u32 count = 0u;
    for (u32 r = 0; r < COMPACT_ITEMS; ++r) {
        const u64 v = base + (u64)r * COMPACT_THREADS + threadIdx.x;
        if (v < num_nodes && LD(flags, v) != 0u) ++count;
    }
    for (u32 offset = 16; offset > 0; offset >>= 1)
        count += __shfl_down_sync(FULL_MASK, count, offset);
    if ((threadIdx.x & 31u) == 0u) warp_totals[threadIdx.x >> 5] = count;
    __syncthreads();
    if (threadIdx.x == 0) {
        u32 total = 0u;
        for (u32 w = 0; w < COMPACT_THREADS / 32u; ++w) total += warp_totals[w];
        ST(tile_counts, blockIdx.x) = total;
    }
}

/* Writes each tile's flagged nodes, ascending, from the tile's offset (the scanned tile_counts; the
 * scan also wrote the total into frontier_len) and clears their flags. */
extern "C" __global__ void frontier_compact(u32* __restrict__ flags, u32* __restrict__ frontier,
                                            const u32* __restrict__ frontier_len, u32 num_nodes,
                                            const u32* __restrict__ tile_offsets) {
    (void)frontier_len;
    BUFFERS(flags, frontier, tile_offsets);
    const u64 base = (u64)blockIdx.x * COMPACT_TILE;
    u32 next = LD(tile_offsets, blockIdx.x);
    for (u32 r = 0; r < COMPACT_ITEMS; ++r) {
        const u64 round_base = base + (u64)r * COMPACT_THREADS;
        /* Block-uniform: the whole block leaves together. */
        if (round_base >= num_nodes) break;
        const u64 v = round_base + threadIdx.x;
        const bool flagged = v < num_nodes && LD(flags, v) != 0u;
        u32 round_total = 0u;
        const u32 rank = block_exclusive_scan(flagged ? 1u : 0u, &round_total);
        if (flagged) {
            ST(frontier, next + rank) = (u32)v;
            ST(flags, v) = 0u;
        }
        next += round_total;
    }
}
