/*
 * Shared definitions of the CUDA kernels: the parameter and grid structs (same layout as the Rust
 * `KernelParams` in src/params.rs and `GridSpec` in src/backend/mod.rs, both #[repr(C)]), the
 * feature bits, the counter-based hash of src/hash.rs, the cell arithmetic of
 * src/backend/cpu/kernels.rs, and block-level scan and reduction helpers.
 *
 * Everything here must compute exactly what its Rust twin computes: the CUDA backend is checked
 * against the CPU backend. The backend compiles with --fmad=false (no contraction of a*b+c into
 * one rounding), IEEE division and square root, so each operation rounds as Rust's f32 does.
 *
 * NVRTC compiles these sources without the standard library, so only builtin types and the CUDA
 * math functions are used. The backend pastes this header in front of each .cu file.
 */
#ifndef FORCEFIELD_COMMON_CUH
#define FORCEFIELD_COMMON_CUH

typedef unsigned int u32;
typedef unsigned long long u64;

/* Same field order as `KernelParams` (src/params.rs): 17 floats, then 4 words. */
struct KernelParams {
    float dt;
    float damping;
    float spring_k;
    float rest_length;
    float repel_k;
    float repulsion_cutoff;
    float softening_eps;
    float center_gravity_k;
    float max_force;
    float max_velocity;
    float separation_radius;
    float temperature;
    float viewport_bounds;
    float sssp_alpha;
    float boundary_damping;
    float constraint_ramp;
    float constraint_max_force;
    u32 feature_flags;
    u32 iteration;
    u32 seed_lo;
    u32 seed_hi;
};

/* Same layout as `GridSpec` (src/backend/mod.rs). */
struct GridSpec {
    float origin[3];
    float cell_size;
    u32 dims[3];
};

/* Bits of `feature_flags` (src/params.rs, module `features`). */
#define FEATURE_REPULSION (1u << 0)
#define FEATURE_SPRINGS (1u << 1)
#define FEATURE_CENTER_GRAVITY (1u << 2)
#define FEATURE_CONSTRAINTS (1u << 3)
#define FEATURE_SSSP_REST_LENGTH (1u << 4)
#define FEATURE_THERMAL_NOISE (1u << 5)

#define FULL_MASK 0xffffffffu
#define F32_INFINITY __int_as_float(0x7f800000)
#define F32_NEG_INFINITY __int_as_float(0xff800000)

/* The index of this thread in a one-dimensional launch, wide enough for any grid. */
__device__ __forceinline__ u64 global_index() {
    return (u64)blockIdx.x * (u64)blockDim.x + (u64)threadIdx.x;
}

/* ---- hashing (src/hash.rs) ------------------------------------------------------------------ */

/* SplitMix64's finalizer. Unsigned 64-bit arithmetic wraps, as Rust's wrapping_mul does. */
__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Hash of three words. */
__device__ __forceinline__ u64 mix3(u64 a, u64 b, u64 c) {
    return mix64(a ^ mix64((b + 0x9e3779b97f4a7c15ull) ^ mix64(c + 0x632be59bd9b4e019ull)));
}

/* The top 24 bits as a float in [0, 1): exact, since 24 bits fit a float's significand. */
__device__ __forceinline__ float unit_f32(u64 h) {
    return (float)(u32)(h >> 40) * (1.0f / 16777216.0f);
}

/* ---- the grid (src/backend/cpu/kernels.rs) --------------------------------------------------- */

/* Cell coordinate along one axis, clamped to the grid. Rust's `f as u32` saturates, so values at
 * or above 2^32 (and +inf) become u32::MAX before the clamp; NaN fails `f > 0` and gives 0. */
__device__ __forceinline__ u32 cell_coord(float p, float origin, float cell_size, u32 dim) {
    float f = floorf((p - origin) / cell_size);
    if (f > 0.0f) {
        u32 c = f >= 4294967296.0f ? 0xffffffffu : (u32)f;
        return c < dim - 1u ? c : dim - 1u;
    }
    return 0u;
}

/* The cell key of a point: z*dy*dx + y*dx + x (u32 arithmetic, as in Rust). */
__device__ __forceinline__ u32 cell_key(const GridSpec& grid, float x, float y, float z) {
    u32 dx = grid.dims[0], dy = grid.dims[1], dz = grid.dims[2];
    u32 cx = cell_coord(x, grid.origin[0], grid.cell_size, dx);
    u32 cy = cell_coord(y, grid.origin[1], grid.cell_size, dy);
    u32 cz = cell_coord(z, grid.origin[2], grid.cell_size, dz);
    return (cz * dy + cy) * dx + cx;
}

/* ---- order-preserving float bits (for atomic min and max on floats) ------------------------- */

/* Maps a float to an unsigned word whose unsigned order is the float order (-0 just below +0). */
__device__ __forceinline__ u32 float_to_ordered(float f) {
    u32 b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* The inverse of float_to_ordered. */
__device__ __forceinline__ float ordered_to_float(u32 o) {
    u32 b = (o & 0x80000000u) ? (o & 0x7fffffffu) : ~o;
    return __uint_as_float(b);
}

/* ---- block-wide scan ------------------------------------------------------------------------ */

/* Exclusive prefix sum of `value` over the threads of the block, in thread order; `*total` gets
 * the block's sum. Every thread of the block must call it; blockDim.x is a multiple of 32, at
 * most 1024. */
__device__ __forceinline__ u32 block_exclusive_scan(u32 value, u32* total) {
    __shared__ u32 warp_sums[32];
    const u32 lane = threadIdx.x & 31u;
    const u32 warp = threadIdx.x >> 5;
    const u32 num_warps = blockDim.x >> 5;
    u32 x = value;
    for (u32 offset = 1; offset < 32; offset <<= 1) {
        u32 y = __shfl_up_sync(FULL_MASK, x, offset);
        if (lane >= offset) x += y;
    }
    if (lane == 31u) warp_sums[warp] = x;
    __syncthreads();
    if (warp == 0) {
        u32 s = lane < num_warps ? warp_sums[lane] : 0u;
        for (u32 offset = 1; offset < 32; offset <<= 1) {
            u32 y = __shfl_up_sync(FULL_MASK, s, offset);
            if (lane >= offset) s += y;
        }
        if (lane < num_warps) warp_sums[lane] = s;
    }
    __syncthreads();
    const u32 before = warp == 0 ? 0u : warp_sums[warp - 1];
    *total = warp_sums[num_warps - 1];
    /* The sums are read; the next call may overwrite them. */
    __syncthreads();
    return before + x - value;
}

#endif /* FORCEFIELD_COMMON_CUH */
