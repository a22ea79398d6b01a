// Opens OpenMPI's libmpi at run time (dlopen), so that neither SwiftPM nor a machine without MPI
// ever needs it. See lq_mpi.h.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lq_mpi.h"

// OpenMPI's handles are pointers to its predefined objects; in this file they are void *.
typedef void *mpi_handle;
enum { MPI_SUCCESS_ = 0, MPI_THREAD_SERIALIZED_ = 2 };
#define MPI_IN_PLACE_ ((void *)1)

static struct {
    int (*init_thread)(int *, char ***, int, int *);
    int (*comm_rank)(mpi_handle, int *);
    int (*comm_size)(mpi_handle, int *);
    int (*allreduce)(const void *, void *, int, mpi_handle, mpi_handle, mpi_handle);
    int (*bcast)(void *, int, mpi_handle, int, mpi_handle);
    int (*gather)(const void *, int, mpi_handle, void *, int, mpi_handle, int, mpi_handle);
    int (*gatherv)(const void *, int, mpi_handle, void *, const int *, const int *, mpi_handle, int, mpi_handle);
    int (*barrier)(mpi_handle);
    int (*abort)(mpi_handle, int);
    int (*finalize)(void);
    mpi_handle world, f32, f64, byte, i64, sum;
} mpi;
static int rank_ = 0, size_ = 1;
static char library[512];

int lq_mpi_launched(void) {
    const char *ompi = getenv("OMPI_COMM_WORLD_SIZE"), *pmix = getenv("PMIX_RANK");
    return (ompi && *ompi) || (pmix && *pmix);
}

#define RESOLVE(field, symbol)                                                                             \
    do {                                                                                                   \
        *(void **)(&mpi.field) = dlsym(handle, #symbol);                                                   \
        if (!mpi.field) {                                                                                  \
            snprintf(why, why_size, "%s lacks %s: lqlora speaks OpenMPI's ABI (install openmpi-bin, or "   \
                     "set LQLORA_MPI_LIBRARY to OpenMPI's libmpi.so.40)", library, #symbol);               \
            return -1;                                                                                     \
        }                                                                                                  \
    } while (0)

int lq_mpi_init(char *why, size_t why_size) {
    const char *env = getenv("LQLORA_MPI_LIBRARY");
    snprintf(library, sizeof library, "%s", env && *env ? env : "libmpi.so.40");
    // RTLD_GLOBAL: OpenMPI's own plugins, which it dlopens in turn, resolve libmpi's symbols globally.
    void *handle = dlopen(library, RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
        snprintf(why, why_size, "started by an MPI launcher, but %s cannot be loaded (%s): install OpenMPI "
                 "(Debian: openmpi-bin) or set LQLORA_MPI_LIBRARY", library, dlerror());
        library[0] = 0;
        return -1;
    }
    RESOLVE(init_thread, MPI_Init_thread);
    RESOLVE(comm_rank, MPI_Comm_rank);
    RESOLVE(comm_size, MPI_Comm_size);
    RESOLVE(allreduce, MPI_Allreduce);
    RESOLVE(bcast, MPI_Bcast);
    RESOLVE(gather, MPI_Gather);
    RESOLVE(gatherv, MPI_Gatherv);
    RESOLVE(barrier, MPI_Barrier);
    RESOLVE(abort, MPI_Abort);
    RESOLVE(finalize, MPI_Finalize);
    RESOLVE(world, ompi_mpi_comm_world);
    RESOLVE(f32, ompi_mpi_float);
    RESOLVE(f64, ompi_mpi_double);
    RESOLVE(byte, ompi_mpi_byte);
    RESOLVE(i64, ompi_mpi_int64_t);
    RESOLVE(sum, ompi_mpi_op_sum);
    int provided = 0;
    int rc = mpi.init_thread(NULL, NULL, MPI_THREAD_SERIALIZED_, &provided);
    if (rc != MPI_SUCCESS_) {
        snprintf(why, why_size, "MPI_Init_thread failed (error %d) in %s", rc, library);
        return -1;
    }
    if (provided < MPI_THREAD_SERIALIZED_) {
        snprintf(why, why_size, "%s provides thread level %d; lqlora needs MPI_THREAD_SERIALIZED (2)", library, provided);
        mpi.abort(mpi.world, 1);
        return -1;
    }
    mpi.comm_rank(mpi.world, &rank_);
    mpi.comm_size(mpi.world, &size_);
    return 0;
}

int lq_mpi_rank(void) { return rank_; }
int lq_mpi_size(void) { return size_; }
const char *lq_mpi_library(void) { return library; }

// MPI counts are ints: larger buffers go in pieces of at most 2^30 elements.
static const int64_t piece = (int64_t)1 << 30;

void lq_mpi_allreduce_sum_f32(float *data, int64_t count) {
    for (int64_t i = 0; i < count; i += piece) {
        int n = (int)(count - i < piece ? count - i : piece);
        mpi.allreduce(MPI_IN_PLACE_, data + i, n, mpi.f32, mpi.sum, mpi.world);
    }
}

void lq_mpi_allreduce_sum_f64(double *data, int64_t count) {
    for (int64_t i = 0; i < count; i += piece) {
        int n = (int)(count - i < piece ? count - i : piece);
        mpi.allreduce(MPI_IN_PLACE_, data + i, n, mpi.f64, mpi.sum, mpi.world);
    }
}

void lq_mpi_bcast(void *data, int64_t bytes, int root) {
    for (int64_t i = 0; i < bytes; i += piece) {
        int n = (int)(bytes - i < piece ? bytes - i : piece);
        mpi.bcast((char *)data + i, n, mpi.byte, root, mpi.world);
    }
}

void lq_mpi_gather_i64(int64_t value, int64_t *out, int root) {
    mpi.gather(&value, 1, mpi.i64, out, 1, mpi.i64, root, mpi.world);
}

void lq_mpi_gatherv_bytes(const void *send, int send_count, void *recv, const int *counts, const int *displacements, int root) {
    mpi.gatherv(send, send_count, mpi.byte, recv, counts, displacements, mpi.byte, root, mpi.world);
}

void lq_mpi_barrier(void) { mpi.barrier(mpi.world); }

void lq_mpi_abort(int code) {
    if (mpi.abort) mpi.abort(mpi.world, code);
    _exit(code);
}

void lq_mpi_finalize(void) {
    if (mpi.finalize) mpi.finalize();
}

int lq_affinity_cpus(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
#endif
    return 0;
}

static char termination[1024];

static void on_sigterm(int sig) {
    (void)sig;
    ssize_t ignored = write(STDERR_FILENO, termination, strlen(termination));
    (void)ignored;
    _exit(143);
}

void lq_mpi_explain_termination(const char *message) {
    snprintf(termination, sizeof termination, "%s\n", message);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigterm;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
}
