/* Counting, failing heap for tests. Blocks carry a 16-byte header holding
 * their size so realloc can be counted. */
#include "tests/lib/heap.h"

#include <stdlib.h>
#include <string.h>

#define HDR 16

static int should_fail(struct test_heap *h)
{
    if (h->fail_after < 0) {
        return 0;
    }
    if (h->fail_after == 0) {
        return 1;
    }
    h->fail_after--;
    return 0;
}

static void *th_malloc(void *data, size_t size)
{
    struct test_heap *h = data;
    char *p;
    if (should_fail(h)) {
        return NULL;
    }
    p = malloc(size + HDR);
    if (p == NULL) {
        return NULL;
    }
    h->live++;
    h->allocations++;
    return p + HDR;
}

static void *th_realloc(void *data, void *ptr, size_t size)
{
    struct test_heap *h = data;
    char *p;
    if (ptr == NULL) {
        return th_malloc(data, size);
    }
    if (should_fail(h)) {
        return NULL;
    }
    p = realloc((char *)ptr - HDR, size + HDR);
    if (p == NULL) {
        return NULL;
    }
    return p + HDR;
}

static void th_free(void *data, void *ptr)
{
    struct test_heap *h = data;
    if (ptr == NULL) {
        return;
    }
    h->live--;
    free((char *)ptr - HDR);
}

void test_heap_install(struct test_heap *h)
{
    memset(h, 0, sizeof *h);
    h->fail_after = -1;
    h->hooks.data = h;
    h->hooks.malloc = th_malloc;
    h->hooks.realloc = th_realloc;
    h->hooks.free = th_free;
    rems_heap_set(&h->hooks);
}

void test_heap_uninstall(struct test_heap *h)
{
    (void)h;
    rems_heap_set(NULL);
}

void test_heap_fail_after(struct test_heap *h, long n)
{
    h->fail_after = n;
}
