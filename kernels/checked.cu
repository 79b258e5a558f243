/*
 * The red-zone check of the checked mode (src/backend/cuda/checked.rs), compiled only with
 * FF_CHECKED.
 *
 * In the checked mode every allocation is FF_RED_ZONE_BYTES of canary, the buffer, and another
 * FF_RED_ZONE_BYTES of canary. After each launch verify_canaries reads every zone of every live
 * allocation (one block per allocation, one thread per canary word) and records the damaged word
 * nearest its buffer, by the least key, into ff_record (common.cuh), then writes the canary back so
 * that one overrun is reported once. Kernel accesses are bounds-checked before they happen; the zones
 * catch what no kernel check sees, such as a copy or a fill that runs past a buffer.
 */
#include "common.cuh"

#ifdef FF_CHECKED

#define FF_ZONE_WORDS (FF_RED_ZONE_BYTES / 4u)
/* Threads of a verify_canaries block: one per word of the two zones. */
#define FF_VERIFY_THREADS (2u * FF_ZONE_WORDS)

/* One live allocation (`Zone` in checked.rs): the address of its first red zone and the bytes of
 * its buffer, which start FF_RED_ZONE_BYTES later; the second zone follows them, 4-byte aligned. */
struct FfZone {
    u64 base;
    u64 bytes;
    u32 buffer;
    u32 reserved;
};

/* A damaged word's key: the allocation, then the tail zone before the head zone, then the distance
 * from the buffer in words (0 is the word just past the end, or just before the start). */
extern "C" __global__ void verify_canaries(const FfZone* __restrict__ zones, u32 num_zones) {
    const u32 z = blockIdx.x;
    if (z >= num_zones || threadIdx.x >= FF_VERIFY_THREADS) return;
    const FfZone zone = zones[z];
    const bool head = threadIdx.x < FF_ZONE_WORDS;
    const u32 w = head ? threadIdx.x : threadIdx.x - FF_ZONE_WORDS;
    const u64 tail_start = zone.base + FF_RED_ZONE_BYTES + ((zone.bytes + 3ull) & ~3ull);
    u32* word = head ? (u32*)zone.base + w : (u32*)tail_start + w;
    if (*word != FF_CANARY) {
        const u64 distance = head ? (u64)(FF_ZONE_WORDS - 1u - w) : (u64)w;
        const u64 key = ((u64)z << 32) | ((head ? 1ull : 0ull) << 31) | distance;
        atomicAdd(&ff_record.zone_count, 1ull);
        atomicMin(&ff_record.zone_key, key);
        *word = FF_CANARY;
    }
}

#endif /* FF_CHECKED */
