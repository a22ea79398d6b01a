// The thread pool of lq_pool.h: workers wait for a generation counter to move, spinning (with a
// pause, and yielding the core to others every so often) for lq_pool_spin_us() and then sleeping
// on a condition variable; the caller takes chunks too, so a loop never waits for a wake-up to
// make progress.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "lq_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define LQ_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define LQ_PAUSE() __asm__ __volatile__("yield")
#else
#define LQ_PAUSE() ((void)0)
#endif

enum { MAX_WORKERS = 255 };

static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER;   // one loop at a time
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int worker_count;                       // started workers (grows, never shrinks)
static _Atomic int64_t generation;            // bumped for each loop, after its fields are set
static _Atomic int sleepers;                  // workers blocked on `wake`
static _Atomic int active_limit;              // workers with index < this join the current loop
// The current loop. A thread may read these while the next loop is being set up (a slow worker);
// it only runs a chunk it claimed with a ticket of its own generation, which it cannot get then.
static _Atomic(lq_pool_task) current_task;
static _Atomic(void *) current_context;
static _Atomic int64_t chunk_count;
// Tickets: the loop's generation (low 32 bits) in the high half, the next chunk in the low half
// (all ones while the loop is being set up: no chunk to claim).
static _Atomic uint64_t next_ticket;
static _Atomic int64_t chunks_done;
static _Atomic int resting;                   // set by lq_pool_rest, cleared by the next loop
static _Thread_local int inside_pool;         // set on workers and on a caller running a loop

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static _Atomic int spin_us;
static _Atomic int spin_fixed;  // LQLORA_SPIN_US was set: lq_pool_set_spin_us changes nothing
static pthread_once_t spin_once = PTHREAD_ONCE_INIT;

static void read_spin_us(void) {
    const char *s = getenv("LQLORA_SPIN_US");
    if (s && *s) {
        int v = atoi(s);
        atomic_store(&spin_us, v < 0 ? 0 : v);
        atomic_store(&spin_fixed, 1);
    }
}

int lq_pool_spin_us(void) {
    pthread_once(&spin_once, read_spin_us);
    return atomic_load_explicit(&spin_us, memory_order_relaxed);
}

void lq_pool_set_spin_us(int microseconds) {
    pthread_once(&spin_once, read_spin_us);
    if (!atomic_load(&spin_fixed)) atomic_store(&spin_us, microseconds < 0 ? 0 : microseconds);
}

/// Runs chunks of loop `gen` until none are left (or that loop is over). The loads are sequentially
/// consistent: if any of the loop fields read here already belongs to the next loop, the ticket read
/// after them is that loop's closed ticket (stored before its fields), so nothing runs with them.
static void drain(int64_t gen) {
    const lq_pool_task task = atomic_load(&current_task);
    void *const context = atomic_load(&current_context);
    const int64_t count = atomic_load(&chunk_count);
    uint64_t ticket = atomic_load(&next_ticket);
    for (;;) {
        if ((ticket >> 32) != (uint32_t)gen) return;  // another loop
        const int64_t c = (int64_t)(ticket & 0xffffffffu);
        if (c >= count) return;
        if (!atomic_compare_exchange_weak(&next_ticket, &ticket, ticket + 1)) continue;  // `ticket` is now current
        task(context, c);
        atomic_fetch_add_explicit(&chunks_done, 1, memory_order_release);
        ticket = atomic_load(&next_ticket);
    }
}

static void *worker_main(void *arg) {
    const int index = (int)(intptr_t)arg;
    inside_pool = 1;
    int64_t seen = atomic_load_explicit(&generation, memory_order_acquire);
    for (;;) {
        // Spin for the next loop, then sleep until one is posted.
        const double deadline = now_us() + lq_pool_spin_us();
        int64_t g;
        unsigned spins = 0;
        while ((g = atomic_load_explicit(&generation, memory_order_acquire)) == seen) {
            LQ_PAUSE();
            if ((++spins & 63) == 0) {
                if (now_us() > deadline || atomic_load_explicit(&resting, memory_order_relaxed)) break;
                sched_yield();  // a runnable thread on this core (OpenBLAS's, say) goes first
            }
        }
        if (g == seen) {
            pthread_mutex_lock(&sleep_lock);
            atomic_fetch_add(&sleepers, 1);
            while ((g = atomic_load_explicit(&generation, memory_order_acquire)) == seen) pthread_cond_wait(&wake, &sleep_lock);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&sleep_lock);
        }
        seen = g;
        if (index < atomic_load_explicit(&active_limit, memory_order_acquire)) drain(g);
    }
    return NULL;
}

void lq_pool_rest(void) {
    if (!atomic_load_explicit(&resting, memory_order_relaxed)) atomic_store_explicit(&resting, 1, memory_order_relaxed);
}

static void run_inline(int64_t chunks, lq_pool_task task, void *context) {
    for (int64_t c = 0; c < chunks; c++) task(context, c);
}

void lq_pool_run(int threads, int64_t chunks, lq_pool_task task, void *context) {
    if (chunks <= 0) return;
    if (threads <= 1 || chunks == 1 || inside_pool || pthread_mutex_trylock(&run_lock) != 0) {
        run_inline(chunks, task, context);
        return;
    }
    int helpers = threads - 1;
    if (helpers > MAX_WORKERS) helpers = MAX_WORKERS;
    while (worker_count < helpers) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker_main, (void *)(intptr_t)worker_count) != 0) break;
        pthread_detach(t);
        worker_count++;
    }
    if (helpers > worker_count) helpers = worker_count;
    inside_pool = 1;
    // Close the ticket before the fields change (see drain), then open it, then announce the loop.
    const int64_t gen = atomic_load(&generation) + 1;
    atomic_store(&next_ticket, ((uint64_t)(uint32_t)gen << 32) | 0xffffffffu);
    atomic_store(&current_task, task);
    atomic_store(&current_context, context);
    atomic_store(&chunk_count, chunks);
    atomic_store(&chunks_done, 0);
    atomic_store(&active_limit, helpers);
    atomic_store_explicit(&resting, 0, memory_order_relaxed);
    atomic_store(&next_ticket, (uint64_t)(uint32_t)gen << 32);
    atomic_store(&generation, gen);
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    drain(gen);
    while (atomic_load_explicit(&chunks_done, memory_order_acquire) < chunks) LQ_PAUSE();
    inside_pool = 0;
    pthread_mutex_unlock(&run_lock);
}
