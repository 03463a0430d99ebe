/* Core-to-core round trip through one shared cache line, between two processes.
 *
 * On a virtual machine the host may place the two virtual CPUs on cores that
 * share a cache or on cores that do not, and move them while a job runs.
 * Processes that write to the same cache lines (false sharing included) slow
 * down by about this ratio at the far placement; run it next to a benchmark
 * to tell the two placements apart.
 *
 *   cc -O2 -o /tmp/core_latency bench/core_latency.c && /tmp/core_latency
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 500000;
    _Atomic long *turn = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (turn == MAP_FAILED) { perror("mmap"); return 1; }
    atomic_store(turn, 0);
    pid_t child = fork();
    if (child < 0) { perror("fork"); return 1; }
    int me = child == 0;  /* the parent moves on even turns, the child on odd ones */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < rounds; i++) {
        while (atomic_load_explicit(turn, memory_order_acquire) % 2 != me)
            ;
        atomic_fetch_add_explicit(turn, 1, memory_order_release);
    }
    if (child == 0) return 0;
    waitpid(child, NULL, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("core-to-core round trip: %.0f ns\n", ns / rounds);
    return 0;
}
