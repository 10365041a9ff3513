/* tests/lib/heap.h: a counting heap that can fail the n-th allocation.
 * test_heap_install() hooks it into rems_malloc() and friends. */
#ifndef REMS_TESTS_LIB_HEAP_H
#define REMS_TESTS_LIB_HEAP_H

#include "common/heap.h"

struct test_heap {
    struct rems_heap hooks;
    long live;        /* Allocations not yet freed. */
    long fail_after;  /* Succeed this many more times, then fail; -1 never. */
    long allocations; /* Total successful allocations. */
};

void test_heap_install(struct test_heap *h);
void test_heap_uninstall(struct test_heap *h);
void test_heap_fail_after(struct test_heap *h, long n);

#endif
