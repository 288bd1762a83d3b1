/* Task ranges with stealing (fk_cpu_ranges_init / fk_cpu_ranges_next in
 * src/backend/cpu/cpu.h), the scheduler of the AMX attention.
 *
 * - Serial, every thread count 1..5 and task count 0..40: one "thread"
 *   draining everything gets its own range front to back, then the rest,
 *   each task exactly once, always from the back of the range with the most
 *   left (the order is checked against a model of the rule).
 * - Interleaved (serial, round robin over the threads): each task once, and
 *   each thread's own tasks come in increasing order.
 * - Concurrent (OpenMP, 2..4 threads): every task of 4000 runs exactly once,
 *   also when thread 0 is slowed down (1 ms a task): then the others take
 *   most of its range (thread 0 does well under its share of a static
 *   split, which is what the stealing is for).
 */
#include "backend/cpu/cpu.h"
#include "test.h"

#include <time.h>

static fk_cpu_impl *impl_for(int nt) {
    fk_cpu_impl *impl = calloc(1, sizeof(*impl));
    impl->n_threads = nt;
    impl->ranges = fk_alloc((size_t)nt * 8 * sizeof(uint64_t));
    return impl;
}

static void impl_free(fk_cpu_impl *impl) {
    fk_free(impl->ranges);
    free(impl);
}

/* The model: thread 0 drains all; own range front to back, then the back of
 * the range with the most left (lowest thread on ties). */
static void model_drain(int nt, int64_t ntasks, int64_t *order) {
    int64_t lo[8], hi[8];
    for (int i = 0; i < nt; i++) lo[i] = ntasks * i / nt, hi[i] = ntasks * (i + 1) / nt;
    int64_t n = 0;
    while (lo[0] < hi[0]) order[n++] = lo[0]++;
    for (;;) {
        int v = -1;
        int64_t best = 0;
        for (int i = 0; i < nt; i++)
            if (hi[i] - lo[i] > best) best = hi[i] - lo[i], v = i;
        if (v < 0) break;
        order[n++] = --hi[v];
    }
}

static void test_serial(void) {
    for (int nt = 1; nt <= 5; nt++)
        for (int64_t ntasks = 0; ntasks <= 40; ntasks++) {
            fk_cpu_impl *impl = impl_for(nt);
            int64_t want[64], got[64];
            int seen[64] = {0};
            model_drain(nt, ntasks, want);
            fk_cpu_ranges_init(impl, nt, ntasks);
            int64_t n = 0, t;
            while (n <= ntasks && (t = fk_cpu_ranges_next(impl, nt, 0)) >= 0) got[n++] = t;
            CHECKF(n == ntasks, "nt %d ntasks %lld: %lld tasks handed out", nt, (long long)ntasks,
                   (long long)n);
            int bad = 0;
            for (int64_t i = 0; i < n && i < ntasks; i++) {
                if (got[i] != want[i]) bad++;
                if (got[i] >= 0 && got[i] < ntasks) seen[got[i]]++;
            }
            for (int64_t i = 0; i < ntasks; i++) bad += seen[i] != 1;
            CHECKF(bad == 0, "nt %d ntasks %lld: order / multiplicity off in %d places", nt,
                   (long long)ntasks, bad);
            /* empty for every thread afterwards */
            for (int i = 0; i < nt; i++) CHECK(fk_cpu_ranges_next(impl, nt, i) == -1);
            impl_free(impl);
        }
}

static void test_interleaved(void) {
    for (int nt = 2; nt <= 4; nt++) {
        const int64_t ntasks = 37;
        fk_cpu_impl *impl = impl_for(nt);
        fk_cpu_ranges_init(impl, nt, ntasks);
        int seen[37] = {0};
        int64_t last_own[4] = {-1, -1, -1, -1};
        int out_of_order = 0, done = 0;
        for (int round = 0; done < nt; round++) {
            int tid = round % nt;
            int64_t t = fk_cpu_ranges_next(impl, nt, tid);
            if (t < 0) {
                done++;
                continue;
            }
            done = 0;
            if (t >= 0 && t < ntasks) seen[t]++;
            bool own = t >= ntasks * tid / nt && t < ntasks * (tid + 1) / nt;
            if (own) {
                if (t <= last_own[tid]) out_of_order++;
                last_own[tid] = t;
            }
        }
        int bad = 0;
        for (int64_t i = 0; i < ntasks; i++) bad += seen[i] != 1;
        CHECKF(bad == 0 && out_of_order == 0, "nt %d: %d tasks not run once, %d out of order", nt,
               bad, out_of_order);
        impl_free(impl);
    }
}

static void test_concurrent(void) {
#ifdef FK_HAVE_OPENMP
    const int64_t ntasks = 4000;
    int *runs = calloc((size_t)ntasks, sizeof(int)), *who = calloc((size_t)ntasks, sizeof(int));
    for (int nt = 2; nt <= 4; nt++)
        for (int slow = 0; slow <= 1; slow++) {
            const int64_t n = slow ? 200 * nt : ntasks;
            fk_cpu_impl *impl = impl_for(nt);
            memset(runs, 0, (size_t)ntasks * sizeof(int));
            fk_cpu_ranges_init(impl, nt, n);
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int th = 0; th < nt; th++) {
                int tid = omp_get_thread_num();
                for (int64_t t; (t = fk_cpu_ranges_next(impl, nt, tid)) >= 0;) {
                    __atomic_fetch_add(&runs[t], 1, __ATOMIC_RELAXED);
                    who[t] = tid;
                    if (slow && tid == 0) nanosleep(&(struct timespec){0, 1000000}, NULL);
                }
            }
            int bad = 0;
            int64_t by0 = 0;
            for (int64_t i = 0; i < n; i++) bad += runs[i] != 1, by0 += who[i] == 0;
            CHECKF(bad == 0, "nt %d slow %d: %d of %lld tasks not run exactly once", nt, slow,
                   bad, (long long)n);
            if (slow) /* its static share is n / nt = 200 tasks, 0.2 s asleep */
                CHECKF(by0 < 100, "nt %d: the slow thread ran %lld of its 200 tasks", nt,
                       (long long)by0);
            impl_free(impl);
        }
    free(runs);
    free(who);
#endif
}

int main(void) {
    test_serial();
    test_interleaved();
    test_concurrent();
    return fk_test_finish("test_cpu_ranges");
}
