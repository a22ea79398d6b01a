// A small thread pool for our parallel loops. Its workers spin briefly between loops before they
// sleep, so a loop that follows another within ~100 µs starts on every core at once: on a 2-core VM
// libdispatch's concurrentPerform took 40-70 µs to wake its second thread, more than a decoding
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

/// Microseconds a worker spins for the next loop before it sleeps (default 100; env LQLORA_SPIN_US).
int lq_pool_spin_us(void);

#ifdef __cplusplus
}
#endif
#endif
