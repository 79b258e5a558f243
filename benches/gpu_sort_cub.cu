/*
 * The peer of the engine's `sort_pairs`: CUB's radix sort of (cell key, node index) pairs, timed
 * with CUDA events on the same kind of input as a layout step sorts: n pairs whose keys are cell
 * indices below 2^bits (hashed, so every cell is about equally likely) and whose values are the
 * identity. CUB sorts only the key bits [0, bits), as a sort that knows the cell count would.
 *
 * Build and run on a GPU machine (CUB ships with the CUDA toolkit):
 *   nvcc -O3 -arch=native -o gpu_sort_cub benches/gpu_sort_cub.cu && ./gpu_sort_cub
 * Prints one line per (n, bits): the median of 50 sorts after 5 warm-ups, and checks the output is
 * sorted and stable (equal keys keep ascending values), so that a wrong sort is never timed.
 */
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(call)                                                                   \
    do {                                                                              \
        cudaError_t err_ = (call);                                                    \
        if (err_ != cudaSuccess) {                                                    \
            std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__,                   \
                         cudaGetErrorString(err_));                                   \
            std::exit(3);                                                             \
        }                                                                             \
    } while (0)

__global__ void fill(unsigned* keys, unsigned* values, unsigned n, unsigned bits) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned long long z = (unsigned long long)i * 0x9E3779B97F4A7C15ull + 0x5eedull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    keys[i] = (unsigned)(z & ((1ull << bits) - 1ull));
    values[i] = i;
}

int main() {
    const unsigned sizes[] = {10000u, 100000u, 1u << 20, 1000000u, 10000000u};
    const unsigned widths[] = {16u, 19u, 21u};
    for (unsigned n : sizes) {
        for (unsigned bits : widths) {
            unsigned *keys, *values, *keys_out, *values_out;
            CHECK(cudaMalloc(&keys, n * 4ull));
            CHECK(cudaMalloc(&values, n * 4ull));
            CHECK(cudaMalloc(&keys_out, n * 4ull));
            CHECK(cudaMalloc(&values_out, n * 4ull));
            fill<<<(n + 255) / 256, 256>>>(keys, values, n, bits);
            CHECK(cudaGetLastError());
            size_t temp_bytes = 0;
            CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys, keys_out, values,
                                                  values_out, (int)n, 0, (int)bits));
            void* temp;
            CHECK(cudaMalloc(&temp, temp_bytes));
            cudaEvent_t start, stop;
            CHECK(cudaEventCreate(&start));
            CHECK(cudaEventCreate(&stop));
            std::vector<float> ms;
            for (int r = 0; r < 55; ++r) {
                CHECK(cudaEventRecord(start));
                CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys, keys_out, values,
                                                      values_out, (int)n, 0, (int)bits));
                CHECK(cudaEventRecord(stop));
                CHECK(cudaEventSynchronize(stop));
                float t = 0.0f;
                CHECK(cudaEventElapsedTime(&t, start, stop));
                if (r >= 5) ms.push_back(t);
            }
            std::vector<unsigned> k(n), v(n);
            CHECK(cudaMemcpy(k.data(), keys_out, n * 4ull, cudaMemcpyDeviceToHost));
            CHECK(cudaMemcpy(v.data(), values_out, n * 4ull, cudaMemcpyDeviceToHost));
            for (unsigned i = 1; i < n; ++i) {
                if (k[i - 1] > k[i] || (k[i - 1] == k[i] && v[i - 1] >= v[i])) {
                    std::fprintf(stderr, "not a stable sort at %u\n", i);
                    return 1;
                }
            }
            std::sort(ms.begin(), ms.end());
            std::printf("cub SortPairs: n = %u, key bits %u: median %.1f us\n", n, bits,
                        ms[ms.size() / 2] * 1e3f);
            CHECK(cudaFree(temp));
            CHECK(cudaFree(keys));
            CHECK(cudaFree(values));
            CHECK(cudaFree(keys_out));
            CHECK(cudaFree(values_out));
        }
    }
    return 0;
}
