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

/* Same field order as `KernelParams` (src/params.rs): 17 floats, then 6 words. */
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
    u32 slow_extra_work;
    u32 force_lanes;
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
/* Set by the engine, never by a user (`backend::KERNEL_DISTANCE_TARGETS`): some CSR entry has a
 * distance target. */
#define KERNEL_DISTANCE_TARGETS (1u << 31)

#define FULL_MASK 0xffffffffu
#define F32_INFINITY __int_as_float(0x7f800000)
#define F32_NEG_INFINITY __int_as_float(0xff800000)

/* The index of this thread in a one-dimensional launch, wide enough for any grid. */
__device__ __forceinline__ u64 global_index() {
    return (u64)blockIdx.x * (u64)blockDim.x + (u64)threadIdx.x;
}

/* ---- device-memory accessors and the checked mode -------------------------------------------- */
/*
 * A kernel names the global buffers it accesses once, at its top, with BUFFERS(a, b, ...), then reads
 * them with LD(buf, i) and writes them with ST(buf, i) (an lvalue: `ST(buf, i) = v`, and
 * `&ST(buf, i)` for atomics): the CUDA twins of `ctx.dev(..)`, `Dev::get` and `Dev::set` of the CPU
 * kernels (src/backend/cpu/access.rs). Shared memory is indexed directly. Without FF_CHECKED,
 * BUFFERS is nothing and LD and ST are plain `buf[i]`: the kernels compile to exactly what they were
 * without the accessors.
 *
 * With FF_CHECKED (the CUDA backend's checked mode, src/backend/cuda/checked.rs) BUFFERS looks each
 * pointer up in ff_spans, the table of the launch's buffers (address, capacity in elements, buffer
 * id) that the backend writes before every launch: open addressing on the address, FF_TABLE_SLOTS
 * slots, hashed by ff_slot (`slot` in checked.rs computes the same). Each access then compares its
 * index with a capacity held in a register. An index at or past the capacity is not made: it is
 * noted in the thread's registers, a read gives 0 and a write goes to a sink, and when the kernel
 * returns the thread adds what it noted to ff_record. The thread carries on, since a GPU thread
 * cannot be stopped midway without breaking its block's barriers and shuffles; reading 0 keeps loops
 * whose bounds come from a bad index short. Pointers that are not in the table (the backend's own
 * scratch memory, null) are not checked.
 *
 * Looking pointers up once per kernel, and noting violations in registers rather than memory, is
 * what keeps the checks cheap: a lookup is a few dependent loads from constant memory and a store
 * (or a call) between two loads keeps the compiler from issuing them together, neither of which it
 * would move out of the loops around an access by itself.
 *
 * ff_record keeps the least key (index, buffer, direction, source file, line) over every invalid
 * access of the launch, so that the finding does not depend on thread scheduling, and their count.
 * Red zones are verified by verify_canaries (checked.cu), which records into the same struct.
 */
#ifdef FF_CHECKED

#define FF_TABLE_LOG2 6u
#define FF_TABLE_SLOTS (1u << FF_TABLE_LOG2)
/* Bytes of each red zone, before and after every allocation of the checked mode. */
#define FF_RED_ZONE_BYTES 256u
/* What a red zone holds while it is intact. */
#define FF_CANARY 0xfdfdfdfdu
/* Field widths of an access key, low to high: line, source file, write flag, buffer id, index. */
#define FF_LINE_BITS 15u
#define FF_FILE_BITS 2u
#define FF_BUFFER_BITS 6u
#define FF_INDEX_SHIFT (FF_LINE_BITS + FF_FILE_BITS + 1u + FF_BUFFER_BITS)
#define FF_INDEX_MAX ((1ull << (64u - FF_INDEX_SHIFT)) - 1ull)
/* The capacity of a pointer that is not checked. */
#define FF_UNCHECKED 0xffffffffffffffffull

/* One buffer of the launch (`SpanEntry` in checked.rs); an empty slot has base 0. */
struct FfSpan {
    u64 base;
    u64 capacity;
    u32 buffer;
    u32 reserved;
};

/* What the checked launch found (`Record` in checked.rs); the backend resets it after a finding. */
struct FfRecord {
    u64 access_key;
    u64 access_count;
    u64 zone_key;
    u64 zone_count;
};

__constant__ FfSpan ff_spans[FF_TABLE_SLOTS];
__device__ FfRecord ff_record = {0xffffffffffffffffull, 0ull, 0xffffffffffffffffull, 0ull};
/* Where invalid writes go. */
__device__ u32 ff_sink[4];

/* Source files by id, as the backend names them: 1 layout.cu, 2 sssp.cu, 3 checked.cu, 0 other. */
__host__ __device__ constexpr bool ff_same_name(const char* a, const char* b) {
    return *a == *b && (*a == '\0' || ff_same_name(a + 1, b + 1));
}
__host__ __device__ constexpr u32 ff_file_id(const char* file) {
    return ff_same_name(file, "layout.cu")    ? 1u
           : ff_same_name(file, "sssp.cu")    ? 2u
           : ff_same_name(file, "checked.cu") ? 3u
                                              : 0u;
}
/* Forces compile-time evaluation of the site code. */
template <u32 V>
struct FfConstant {
    static constexpr u32 value = V;
};
#define FF_SITE \
    (FfConstant<(ff_file_id(__FILE__) << FF_LINE_BITS) | ((u32)__LINE__ & ((1u << FF_LINE_BITS) - 1u))>::value)

__device__ __forceinline__ u32 ff_slot(u64 addr) {
    return ((u32)(addr >> 8) * 2654435761u) >> (32u - FF_TABLE_LOG2);
}

/* The table slot of `addr`, or FF_TABLE_SLOTS when it is not in the table (out of line: only a
 * collision in the first slot gets here). */
__device__ __noinline__ u32 ff_find(u64 addr) {
    u32 s = ff_slot(addr);
    for (u32 probe = 0; probe < FF_TABLE_SLOTS; ++probe) {
        const u64 base = ff_spans[s].base;
        if (base == 0ull) break;
        if (base == addr) return s;
        s = (s + 1u) & (FF_TABLE_SLOTS - 1u);
    }
    return FF_TABLE_SLOTS;
}

/* The buffer id of a pointer that is not in the table. */
#define FF_NO_BUFFER ((1u << FF_BUFFER_BITS) - 1u)

/* A buffer as a kernel accesses it: the pointer, how many elements may be accessed, its id. */
template <typename T>
struct FfBuffer {
    T* p;
    u64 capacity;
    u32 buffer;
};

/* The first probe inline, the rest of the chain (a collision) out of line. */
template <typename T>
__device__ __forceinline__ FfBuffer<T> ff_buffer(T* p) {
    const u64 addr = (u64)p;
    const u32 first = ff_slot(addr);
    const u64 base = ff_spans[first].base;
    const u32 s = base == addr ? first : base == 0ull ? FF_TABLE_SLOTS : ff_find(addr);
    if (s >= FF_TABLE_SLOTS) return FfBuffer<T>{p, FF_UNCHECKED, FF_NO_BUFFER};
    return FfBuffer<T>{p, ff_spans[s].capacity, ff_spans[s].buffer};
}

/* Adds a thread's invalid accesses to ff_record. */
__device__ __noinline__ void ff_flush(u64 key, u32 count) {
    atomicAdd(&ff_record.access_count, (u64)count);
    /* Most threads of a faulty launch do not lower the key: read before the atomic. */
    if (key < *(volatile u64*)&ff_record.access_key) atomicMin(&ff_record.access_key, key);
}

/* A thread's invalid accesses, kept in registers and added to ff_record when the kernel returns
 * (the destructor). Noting one writes no memory, so the compiler schedules the loads around an
 * access as freely as without the check. */
struct FfThreadRecord {
    u64 key;
    u32 count;

    __device__ __forceinline__ FfThreadRecord() : key(0xffffffffffffffffull), count(0u) {}

    __device__ __forceinline__ void note(u32 buffer, u64 index, u32 write, u32 site) {
        const u64 i = index < FF_INDEX_MAX ? index : FF_INDEX_MAX;
        const u64 k = (i << FF_INDEX_SHIFT) | ((u64)buffer << (FF_LINE_BITS + FF_FILE_BITS + 1u)) |
                      ((u64)write << (FF_LINE_BITS + FF_FILE_BITS)) | (u64)site;
        key = k < key ? k : key;
        ++count;
    }

    __device__ __forceinline__ ~FfThreadRecord() {
        if (count != 0u) ff_flush(key, count);
    }
};

/* T without const, for values read. */
template <typename T>
struct FfValue {
    typedef T type;
};
template <typename T>
struct FfValue<const T> {
    typedef T type;
};

template <typename T>
__device__ __forceinline__ typename FfValue<T>::type ff_load(const FfBuffer<T>& b, u64 i,
                                                             u32 site, FfThreadRecord& r) {
    if (__builtin_expect(i < b.capacity, 1)) return b.p[i];
    r.note(b.buffer, i, 0u, site);
    return (typename FfValue<T>::type)0;
}

template <typename T>
__device__ __forceinline__ T* ff_store(const FfBuffer<T>& b, u64 i, u32 site, FfThreadRecord& r) {
    if (__builtin_expect(i < b.capacity, 1)) return b.p + i;
    r.note(b.buffer, i, 1u, site);
    return (T*)ff_sink;
}

/* BUFFERS(a, b, ...): the thread's record, then `const auto ff_buffer_a = ff_buffer(a); ...` for up
 * to 24 names. */
#define FF_DECLARE(buf) const auto ff_buffer_##buf = ff_buffer(buf);
#define FF_EXPAND(x) x
#define FF_CAT_(a, b) a##b
#define FF_CAT(a, b) FF_CAT_(a, b)
#define FF_EACH_1(m, a) m(a)
#define FF_EACH_2(m, a, ...) m(a) FF_EXPAND(FF_EACH_1(m, __VA_ARGS__))
#define FF_EACH_3(m, a, ...) m(a) FF_EXPAND(FF_EACH_2(m, __VA_ARGS__))
#define FF_EACH_4(m, a, ...) m(a) FF_EXPAND(FF_EACH_3(m, __VA_ARGS__))
#define FF_EACH_5(m, a, ...) m(a) FF_EXPAND(FF_EACH_4(m, __VA_ARGS__))
#define FF_EACH_6(m, a, ...) m(a) FF_EXPAND(FF_EACH_5(m, __VA_ARGS__))
#define FF_EACH_7(m, a, ...) m(a) FF_EXPAND(FF_EACH_6(m, __VA_ARGS__))
#define FF_EACH_8(m, a, ...) m(a) FF_EXPAND(FF_EACH_7(m, __VA_ARGS__))
#define FF_EACH_9(m, a, ...) m(a) FF_EXPAND(FF_EACH_8(m, __VA_ARGS__))
#define FF_EACH_10(m, a, ...) m(a) FF_EXPAND(FF_EACH_9(m, __VA_ARGS__))
#define FF_EACH_11(m, a, ...) m(a) FF_EXPAND(FF_EACH_10(m, __VA_ARGS__))
#define FF_EACH_12(m, a, ...) m(a) FF_EXPAND(FF_EACH_11(m, __VA_ARGS__))
#define FF_EACH_13(m, a, ...) m(a) FF_EXPAND(FF_EACH_12(m, __VA_ARGS__))
#define FF_EACH_14(m, a, ...) m(a) FF_EXPAND(FF_EACH_13(m, __VA_ARGS__))
#define FF_EACH_15(m, a, ...) m(a) FF_EXPAND(FF_EACH_14(m, __VA_ARGS__))
#define FF_EACH_16(m, a, ...) m(a) FF_EXPAND(FF_EACH_15(m, __VA_ARGS__))
#define FF_EACH_17(m, a, ...) m(a) FF_EXPAND(FF_EACH_16(m, __VA_ARGS__))
#define FF_EACH_18(m, a, ...) m(a) FF_EXPAND(FF_EACH_17(m, __VA_ARGS__))
#define FF_EACH_19(m, a, ...) m(a) FF_EXPAND(FF_EACH_18(m, __VA_ARGS__))
#define FF_EACH_20(m, a, ...) m(a) FF_EXPAND(FF_EACH_19(m, __VA_ARGS__))
#define FF_EACH_21(m, a, ...) m(a) FF_EXPAND(FF_EACH_20(m, __VA_ARGS__))
#define FF_EACH_22(m, a, ...) m(a) FF_EXPAND(FF_EACH_21(m, __VA_ARGS__))
#define FF_EACH_23(m, a, ...) m(a) FF_EXPAND(FF_EACH_22(m, __VA_ARGS__))
#define FF_EACH_24(m, a, ...) m(a) FF_EXPAND(FF_EACH_23(m, __VA_ARGS__))
#define FF_COUNT_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, \
                  _19, _20, _21, _22, _23, _24, n, ...)                                             \
    n
#define FF_COUNT(...)                                                                              \
    FF_EXPAND(FF_COUNT_(__VA_ARGS__, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, \
                        8, 7, 6, 5, 4, 3, 2, 1, 0))

#define BUFFERS(...)      \
    FfThreadRecord ff_thread; \
    FF_EXPAND(FF_CAT(FF_EACH_, FF_COUNT(__VA_ARGS__))(FF_DECLARE, __VA_ARGS__))
#define LD(buf, i) ff_load(ff_buffer_##buf, (u64)(i), FF_SITE, ff_thread)
#define ST(buf, i) (*ff_store(ff_buffer_##buf, (u64)(i), FF_SITE, ff_thread))

#else

#define BUFFERS(...)
#define LD(buf, i) ((buf)[i])
#define ST(buf, i) ((buf)[i])

#endif /* FF_CHECKED */

/* A compile-time flag passed as a value (`Flag<true>{}`), so that a generic lambda can branch on
 * it with `if constexpr` or let the optimizer drop a branch. */
template <bool B>
struct Flag {
    static constexpr bool value = B;
};

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
