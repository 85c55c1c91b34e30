/* A small work-sharing pool: the parallel loops of every C kernel.
 *
 * sn_parallel_for(nitems, task, ctx) runs task(ctx, item, slot) for every
 * item, on the calling thread and the pool's workers. Items are claimed one
 * at a time from a shared counter, and the caller claims too, so:
 * - a worker that the OS has not scheduled yet is never waited for: the
 *   caller and the running workers take its share, and the call returns as
 *   soon as every claimed item is done;
 * - when the caller sleeps (waiting for items still running elsewhere) its
 *   core is free, so the OS can move a descheduled worker onto it.
 * A worker that finds no work spins a short while (yielding its core to
 * any other runnable thread), then sleeps on a condition variable.
 *
 * Results never depend on which thread runs an item: each item writes only
 * its own outputs. `slot` (0 for the caller, 1..workers) indexes
 * per-thread scratch; it is below sn_pool_slots(), fixed for the call.
 *
 * sn_pool_attach adds a second, independent loop to the calling thread's
 * next call: both loops' items in one job, so one barrier instead of two.
 *
 * A call made while the pool is busy (from another Python thread, or from
 * inside a task) runs all its items on the calling thread. After fork() the
 * child starts with no workers and makes new ones when needed.
 */
#include "scratchnet.h"

#include <stddef.h>

/* The loop sn_pool_attach left for this thread's next sn_parallel_for (a thread's own, so other
 * Python threads calling kernels at the same time never take it). The initial-exec model reads it at
 * a fixed offset from the thread pointer: no call to the dynamic loader's __tls_get_addr, so the
 * extension still needs nothing beyond libc and libm (tools/smoke_wheel.sh checks). */
static __attribute__((tls_model("initial-exec"))) _Thread_local sn_job attached;

/* The attached loop's items first (so a long one starts early), then the call's own. */
struct joined {
    sn_job extra, own;
};

static void joined_item(void *arg, int64_t item, int slot)
{
    const struct joined *j = arg;
    if (item < j->extra.nitems)
        j->extra.task(j->extra.ctx, item, slot);
    else
        j->own.task(j->own.ctx, item - j->extra.nitems, slot);
}

void sn_pool_attach(const sn_job *job)
{
    attached = *job;
}

void sn_pool_flush(void)
{
    if (attached.nitems > 0)
        sn_parallel_for(0, sn_pool_slots(), NULL, NULL); /* a job of the attached items alone */
}

#ifdef SN_SERIAL /* built without threads: every loop runs on the caller */

void sn_parallel_for(int64_t nitems, int slots, sn_task task, void *ctx)
{
    struct joined j = {attached, {nitems, task, ctx}};
    attached.nitems = 0;
    for (int64_t i = 0; i < j.extra.nitems + nitems; i++)
        joined_item(&j, i, 0);
}

int sn_pool_slots(void)
{
    return 1;
}

int sn_set_num_threads(int n)
{
    return n >= 1 && n <= 256 ? 0 : -1;
}

int sn_get_num_threads(void)
{
    return 1;
}

#else

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define MAX_THREADS 256
#define SPIN_NS 200000 /* how long an idle worker looks for work before sleeping (0.2 ms) */
#define ITEM_BITS 40   /* the claim word: generation << ITEM_BITS | next item */
#define ITEM_MASK ((UINT64_C(1) << ITEM_BITS) - 1)

static struct {
    pthread_mutex_t busy; /* held by the thread running a job */
    pthread_mutex_t lock; /* guards sleeping and waking */
    pthread_cond_t work;  /* workers sleep here */
    pthread_cond_t done;  /* the caller sleeps here */
    sn_task task;
    void *ctx;
    int64_t nitems;
    int slots;                   /* threads that may take part in this job, caller included */
    _Atomic uint64_t generation; /* of the current job */
    _Atomic uint64_t claim;      /* generation and next item of the current job */
    _Atomic int64_t pending;     /* items of the current job not finished */
    _Atomic int sleepers;        /* workers asleep on `work` */
    _Atomic int caller_sleeping;
    _Atomic int threads;         /* sn_set_num_threads */
    int started;                 /* workers running */
} pool = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .threads = 1,
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Claim and run items of job `gen` until none are left (or a newer job began). */
static void run_items(uint64_t gen, int slot)
{
    sn_task task = pool.task;
    void *ctx = pool.ctx;
    uint64_t n = (uint64_t)pool.nitems;
    uint64_t tag = gen << ITEM_BITS;
    uint64_t c = atomic_load(&pool.claim);
    for (;;) {
        /* A claim succeeds only while the word still carries `gen`: a job is
         * replaced only after all its items are done, so task and ctx, read
         * after seeing `gen`, are still this job's. */
        if ((c & ~ITEM_MASK) != tag || (c & ITEM_MASK) >= n)
            return;
        if (!atomic_compare_exchange_weak(&pool.claim, &c, c + 1))
            continue;
        task(ctx, (int64_t)(c & ITEM_MASK), slot);
        if (atomic_fetch_sub(&pool.pending, 1) == 1 && atomic_load(&pool.caller_sleeping)) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
        c = atomic_load(&pool.claim);
    }
}

/* Wait for a job newer than `seen`: spin (yielding) up to SPIN_NS, then sleep. */
static uint64_t next_job(uint64_t seen)
{
    int64_t until = now_ns() + SPIN_NS;
    uint64_t gen;
    while ((gen = atomic_load(&pool.generation)) == seen) {
        if (now_ns() > until) {
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((gen = atomic_load(&pool.generation)) == seen)
                pthread_cond_wait(&pool.work, &pool.lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.lock);
            break;
        }
        sched_yield();
    }
    return gen;
}

static void *worker(void *arg)
{
    int slot = (int)(intptr_t)arg;
    uint64_t gen = atomic_load(&pool.generation);
    for (;;) {
        gen = next_job(gen);
        if (slot < pool.slots)
            run_items(gen, slot);
    }
    return NULL;
}

static void start_workers(int want)
{
    while (pool.started < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, worker, (void *)(intptr_t)(pool.started + 1));
        pthread_attr_destroy(&attr);
        if (failed)
            break; /* fewer workers: the caller and the others take their share */
        pool.started++;
    }
}

/* After fork() only the forking thread exists in the child: forget the workers. */
static void reset_in_child(void)
{
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.work, NULL);
    pthread_cond_init(&pool.done, NULL);
    atomic_store(&pool.sleepers, 0);
    atomic_store(&pool.caller_sleeping, 0);
    pool.started = 0;
}

static pthread_once_t at_fork_once = PTHREAD_ONCE_INIT;

static void register_at_fork(void)
{
    pthread_atfork(NULL, NULL, reset_in_child);
}

int sn_pool_slots(void)
{
    int n = atomic_load(&pool.threads);
    return n < 1 ? 1 : n;
}

void sn_parallel_for(int64_t nitems, int slots, sn_task task, void *ctx)
{
    struct joined j = {attached, {nitems, task, ctx}};
    if (j.extra.nitems > 0) { /* one job of both loops */
        attached.nitems = 0;
        nitems += j.extra.nitems;
        task = joined_item;
        ctx = &j;
    }
    if (slots > sn_pool_slots())
        slots = sn_pool_slots();
    if (nitems < 2 || slots < 2 || pthread_mutex_trylock(&pool.busy) != 0) {
        for (int64_t i = 0; i < nitems; i++) /* serial: one thread, or the pool is busy */
            task(ctx, i, 0);
        return;
    }
    pthread_once(&at_fork_once, register_at_fork);
    start_workers(slots - 1);
    pool.task = task;
    pool.ctx = ctx;
    pool.nitems = nitems;
    pool.slots = slots;
    atomic_store(&pool.pending, nitems);
    uint64_t gen = (atomic_load(&pool.generation) + 1) & (~UINT64_C(0) >> ITEM_BITS);
    atomic_store(&pool.claim, gen << ITEM_BITS);
    atomic_store(&pool.generation, gen);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.work);
        pthread_mutex_unlock(&pool.lock);
    }
    run_items(gen, 0);
    /* Items claimed by workers may still run: spin briefly, then sleep. */
    int64_t until = now_ns() + SPIN_NS / 4;
    while (atomic_load(&pool.pending) > 0 && now_ns() < until)
        sched_yield();
    if (atomic_load(&pool.pending) > 0) {
        pthread_mutex_lock(&pool.lock);
        atomic_store(&pool.caller_sleeping, 1);
        while (atomic_load(&pool.pending) > 0)
            pthread_cond_wait(&pool.done, &pool.lock);
        atomic_store(&pool.caller_sleeping, 0);
        pthread_mutex_unlock(&pool.lock);
    }
    pthread_mutex_unlock(&pool.busy);
}

int sn_set_num_threads(int n)
{
    if (n < 1 || n > MAX_THREADS)
        return -1;
    atomic_store(&pool.threads, n);
    return 0;
}

int sn_get_num_threads(void)
{
    return atomic_load(&pool.threads);
}

#endif /* SN_SERIAL */
