/*
 * Injected environment faults (see src/inject.rs). The CPU backend emulates a lost context with a
 * flag; on CUDA the loss is real: a kernel that executes `__trap()` leaves the context with a
 * sticky error (CUDA_ERROR_LAUNCH_FAILED), exactly as a faulting kernel on a production server would.
 */
#include "common.cuh"

extern "C" __global__ void lose_context(u32* __restrict__ never_written) {
    __trap();
    /* Unreachable; keeps the parameter used so the compiler has nothing to warn about. */
    never_written[0] = 0u;
}
