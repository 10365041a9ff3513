/* common/heap.h: the one allocator of rems.
 *
 * Every allocation goes through these functions. A test installs its own
 * hooks (tests/lib/heap.h) to count allocations and to fail the n-th one.
 * remsd installs the same hooks in libuv and raft at startup, so one heap
 * sees every allocation. Library modules return REMS_ENOMEM on NULL. */
#ifndef REMS_COMMON_HEAP_H
#define REMS_COMMON_HEAP_H

#include <stddef.h>

struct rems_heap {
    void *data;
    void *(*malloc)(void *data, size_t size);
    void *(*realloc)(void *data, void *ptr, size_t size);
    void (*free)(void *data, void *ptr);
};

/* Install @heap (borrowed; must outlive its use); NULL restores libc's. */
void rems_heap_set(const struct rems_heap *heap);

void *rems_malloc(size_t size);
void *rems_calloc(size_t nmemb, size_t size);
void *rems_realloc(void *ptr, size_t size);
void rems_free(void *ptr);
char *rems_strdup(const char *s);
char *rems_strndup(const char *s, size_t n);

#endif /* REMS_COMMON_HEAP_H */
