// Finds liblqlora_cuda.so at run time (dlopen), so that neither SwiftPM nor a CPU-only machine ever
// needs the CUDA toolkit. See lq_cuda.h.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lq_cuda.h"

// The layout nvcc compiles against must be this one (the same checks sit in the .cu sources).
_Static_assert(sizeof(lq_qformat) == 20, "lq_qformat layout");
_Static_assert(offsetof(lq_qtensor, numel) == 24 && offsetof(lq_qtensor, codes) == 32 &&
                   offsetof(lq_qtensor, group_absmax) == 72 && offsetof(lq_qtensor, scale_offset) == 80 &&
                   sizeof(lq_qtensor) == 88,
               "lq_qtensor layout");
_Static_assert(offsetof(lq_uniform, rows) == 24 && offsetof(lq_uniform, g_idx) == 48 && sizeof(lq_uniform) == 56,
               "lq_uniform layout");

static lq_cuda_api loaded;
static const lq_cuda_api *result;
static char failure[1536];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void *open_library(char *path, size_t path_size) {
    const char *env = getenv("LQLORA_CUDA_LIBRARY");
    if (env && *env) {
        snprintf(path, path_size, "%s", env);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) snprintf(failure, sizeof failure, "LQLORA_CUDA_LIBRARY=%s cannot be loaded: %s", env, dlerror());
        return h;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(path, path_size, "%s/%s", exe, LQ_CUDA_LIBRARY_NAME);
            if (access(path, F_OK) == 0) {
                void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
                if (!h) snprintf(failure, sizeof failure, "%s cannot be loaded: %s", path, dlerror());
                return h;
            }
        }
    }
    snprintf(path, path_size, "%s", LQ_CUDA_LIBRARY_NAME);
    void *h = dlopen(LQ_CUDA_LIBRARY_NAME, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        snprintf(failure, sizeof failure,
                 "%s not found (not next to the executable, not on the library path; build it with "
                 "scripts/build-cuda.sh or set LQLORA_CUDA_LIBRARY)",
                 LQ_CUDA_LIBRARY_NAME);
    return h;
}

#define RESOLVE(field, symbol)                                                                          \
    do {                                                                                                \
        *(void **)(&loaded.field) = dlsym(handle, #symbol);                                             \
        if (!loaded.field) {                                                                            \
            snprintf(failure, sizeof failure, "%s lacks the entry point %s", loaded.path, #symbol);     \
            dlclose(handle);                                                                            \
            return;                                                                                     \
        }                                                                                               \
    } while (0)

static void load_once(void) {
    void *handle = open_library(loaded.path, sizeof loaded.path);
    if (!handle) return;
    RESOLVE(abi_version, lq_cuda_abi_version);
    if (loaded.abi_version() != LQ_CUDA_ABI_VERSION) {
        snprintf(failure, sizeof failure, "%s has ABI version %d, this build needs %d (rebuild it with scripts/build-cuda.sh)",
                 loaded.path, loaded.abi_version(), LQ_CUDA_ABI_VERSION);
        dlclose(handle);
        return;
    }
    RESOLVE(init, lq_cuda_init);
    RESOLVE(last_error, lq_cuda_last_error);
    RESOLVE(malloc, lq_cuda_malloc);
    RESOLVE(free, lq_cuda_free);
    RESOLVE(upload, lq_cuda_upload);
    RESOLVE(download, lq_cuda_download);
    RESOLVE(copy, lq_cuda_copy);
    RESOLVE(synchronize, lq_cuda_synchronize);
    RESOLVE(matrix_upload, lq_cuda_matrix_upload);
    RESOLVE(matrix_free, lq_cuda_matrix_free);
    RESOLVE(uniform_upload, lq_cuda_uniform_upload);
    RESOLVE(dequantize, lq_cuda_dequantize);
    RESOLVE(gemv, lq_cuda_gemv);
    RESOLVE(gemm, lq_cuda_gemm);
    RESOLVE(matmul_host, lq_cuda_matmul_host);
    RESOLVE(sgemv_dense, lq_cuda_sgemv_dense);
    RESOLVE(hgemv_dense, lq_cuda_hgemv_dense);
    RESOLVE(f32_to_f16, lq_cuda_f32_to_f16);
    RESOLVE(time, lq_cuda_time);
    RESOLVE(dense_matmul, lq_cuda_dense_matmul);
    RESOLVE(rms_norm, lq_cuda_rms_norm);
    RESOLVE(add, lq_cuda_add);
    RESOLVE(add_bias, lq_cuda_add_bias);
    RESOLVE(silu_mul, lq_cuda_silu_mul);
    RESOLVE(gather_rows, lq_cuda_gather_rows);
    RESOLVE(rope, lq_cuda_rope);
    RESOLVE(attention, lq_cuda_attention);
    RESOLVE(attention_split, lq_cuda_attention_split);
    RESOLVE(token_nll, lq_cuda_token_nll);
    const char *dev = getenv("LQLORA_CUDA_DEVICE");
    int device = dev && *dev ? atoi(dev) : 0;
    if (loaded.init(device, &loaded.device) != 0) {
        snprintf(failure, sizeof failure, "%s loaded, but CUDA device %d is unusable: %s", loaded.path, device,
                 loaded.last_error());
        return;  // the library stays open: its runtime may not survive dlclose after a failed init
    }
    result = &loaded;
}

const lq_cuda_api *lq_cuda_load(char *why, size_t why_size) {
    pthread_once(&once, load_once);
    if (!result && why && why_size) snprintf(why, why_size, "%s", failure);
    return result;
}
