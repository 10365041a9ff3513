/* cluster/policy_int.h: a bump allocator shared by policy.c and
 * reconcile.c (private to cluster/ and its tests).
 *
 * A parsed policy and a reconcile pass's output own many small strings and
 * arrays that all die together: they come from one arena, whose blocks are
 * rems_malloc()ed and released by one policy__arena_close(). Pointers into
 * an arena stay valid until it is closed. */
#ifndef REMS_CLUSTER_POLICY_INT_H
#define REMS_CLUSTER_POLICY_INT_H

#include <stddef.h>

struct policy_arena_block;

struct policy_arena {
    struct policy_arena_block *head; /* The block being filled. */
    size_t block_size;               /* Bytes of a new block; 0 = 16 KiB. */
};

/* An empty arena whose blocks hold at least @block_size bytes (0: 16 KiB).
 * Allocates nothing. */
void policy__arena_init(struct policy_arena *a, size_t block_size);

/* Free every block; the arena is empty again. */
void policy__arena_close(struct policy_arena *a);

/* @size zeroed bytes aligned for any type, or NULL (out of memory).
 * @size 0 gives a valid unique pointer. */
void *policy__arena_alloc(struct policy_arena *a, size_t size);

/* A copy of the @len bytes at @s plus a terminator, or NULL. */
char *policy__arena_strndup(struct policy_arena *a, const char *s, size_t len);

/* A copy of the string @s, or NULL. */
char *policy__arena_strdup(struct policy_arena *a, const char *s);

#endif /* REMS_CLUSTER_POLICY_INT_H */
