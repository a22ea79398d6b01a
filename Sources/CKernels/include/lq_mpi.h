#ifndef LQ_MPI_H
#define LQ_MPI_H

#include <stddef.h>
#include <stdint.h>

// The MPI boundary. libmpi is opened at run time (dlopen) only when the process was started by
// an MPI launcher, so that lqlora builds and runs on machines without MPI, as one process. The
// handles are OpenMPI's ABI: MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ... are the addresses of the
// exported globals ompi_mpi_comm_world, ompi_mpi_float, ompi_mpi_op_sum (mpi.h's
// OMPI_PREDEFINED_GLOBAL), MPI_IN_PLACE is (void *)1 and MPI_THREAD_SERIALIZED is 2;
// scripts/test-mpi-abi.sh checks these against mpi.h. Every call is on MPI_COMM_WORLD; a count
// above INT_MAX is sent in pieces. Errors keep MPI's default handler (MPI_ERRORS_ARE_FATAL: the
// job is aborted with MPI's message), so these calls return only on success.

/// Whether an MPI launcher started this process: OpenMPI's mpirun sets OMPI_COMM_WORLD_SIZE,
/// PMIx launchers PMIX_RANK.
int lq_mpi_launched(void);

/// Opens libmpi (LQLORA_MPI_LIBRARY, else libmpi.so.40), resolves the entry points and calls
/// MPI_Init_thread(MPI_THREAD_SERIALIZED). 0 on success; otherwise -1 with the reason in `why`.
int lq_mpi_init(char *why, size_t why_size);
int lq_mpi_rank(void);
int lq_mpi_size(void);
/// The library that was opened ("" before lq_mpi_init succeeded).
const char *lq_mpi_library(void);

/// In-place sums over all ranks (MPI_Allreduce with MPI_IN_PLACE, MPI_SUM).
void lq_mpi_allreduce_sum_f32(float *data, int64_t count);
void lq_mpi_allreduce_sum_f64(double *data, int64_t count);
/// MPI_Bcast of `bytes` bytes from `root`.
void lq_mpi_bcast(void *data, int64_t bytes, int root);
/// MPI_Gather of one int64 per rank into `out` (size entries, read at root only).
void lq_mpi_gather_i64(int64_t value, int64_t *out, int root);
/// MPI_Gatherv of bytes: `counts` and `displacements` (size entries each) are read at root only.
void lq_mpi_gatherv_bytes(const void *send, int send_count, void *recv, const int *counts, const int *displacements, int root);
void lq_mpi_barrier(void);
/// MPI_Abort(MPI_COMM_WORLD, code): ends every rank of the job.
void lq_mpi_abort(int code);
void lq_mpi_finalize(void);

/// CPUs this process may run on (sched_getaffinity; mpirun binds ranks to cores or sockets), 0 if unknown.
int lq_affinity_cpus(void);

/// On SIGTERM (what mpirun sends the other ranks when one fails or the job is cancelled) writes
/// `message` to stderr and exits with status 143, so that every rank says why it stopped.
void lq_mpi_explain_termination(const char *message);

#endif
