/* The allocator hooks behind rems_malloc() and friends. */
#include "common/heap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *libc_malloc(void *data, size_t size)
{
    (void)data;
    return malloc(size);
}

static void *libc_realloc(void *data, void *ptr, size_t size)
{
    (void)data;
    return realloc(ptr, size);
}

static void libc_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

static const struct rems_heap libc_heap = {
    .data = NULL,
    .malloc = libc_malloc,
    .realloc = libc_realloc,
    .free = libc_free,
};

static const struct rems_heap *current = &libc_heap;

void rems_heap_set(const struct rems_heap *heap)
{
    current = heap != NULL ? heap : &libc_heap;
}

void *rems_malloc(size_t size)
{
    return current->malloc(current->data, size);
}

void *rems_calloc(size_t nmemb, size_t size)
{
    void *p;
    if (size != 0 && nmemb > SIZE_MAX / size) {
        return NULL;
    }
    p = rems_malloc(nmemb * size);
    if (p != NULL) {
        memset(p, 0, nmemb * size);
    }
    return p;
}

void *rems_realloc(void *ptr, size_t size)
{
    return current->realloc(current->data, ptr, size);
}

void rems_free(void *ptr)
{
    if (ptr != NULL) {
        current->free(current->data, ptr);
    }
}

char *rems_strndup(const char *s, size_t n)
{
    char *p = rems_malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *rems_strdup(const char *s)
{
    return rems_strndup(s, strlen(s));
}
