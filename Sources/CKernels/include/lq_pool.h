// A small thread pool for our parallel loops. Its workers can spin briefly between loops before they
// sleep, so that a loop following another within ~100 µs starts on every core at once: on a 2-core
// VM libdispatch's concurrentPerform took 40-70 µs to wake its second thread, more than a decoding
// step's small matrix products take in all.
#ifndef LQ_POOL_H
#define LQ_POOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*lq_pool_task)(void *context, int64_t chunk);

/// Calls task(context, c) for every c in [0, chunks), on up to `threads` threads (the caller is
/// one of them), and returns when all calls have returned. Chunks are handed out in order, each to
/// the first thread free. When the pool is already running a loop (a nested call, or another
/// thread's), the chunks run on the calling thread instead.
void lq_pool_run(int threads, int64_t chunks, lq_pool_task task, void *context);

/// Tells spinning workers to sleep now: the caller is about to hand both cores to OpenBLAS's own
/// threads (a large sgemm), which our spinning would slow down. The next loop wakes them.
void lq_pool_rest(void);

/// Microseconds a worker spins for the next loop before it sleeps. Spinning pays when loops come
/// every few microseconds (decoding: ~200 small products per token); between large sgemm calls it
/// only competes with OpenBLAS's threads, so the default is 0. LQLORA_SPIN_US overrides both.
int lq_pool_spin_us(void);
void lq_pool_set_spin_us(int microseconds);

#ifdef __cplusplus
}
#endif
#endif
