/* common/queue.h: intrusive circular doubly-linked queues (libuv style).
 * A queue head and every element are `void *q[2]`; REMS_QUEUE_DATA recovers
 * the element from its link. */
#ifndef REMS_COMMON_QUEUE_H
#define REMS_COMMON_QUEUE_H

#include <stddef.h>

typedef void *rems_queue[2];

#define REMS_QUEUE_NEXT(q) (*(rems_queue **)&((*(q))[0]))
#define REMS_QUEUE_PREV(q) (*(rems_queue **)&((*(q))[1]))

#define REMS_QUEUE_INIT(q)                                                     \
    do {                                                                       \
        REMS_QUEUE_NEXT(q) = (q);                                              \
        REMS_QUEUE_PREV(q) = (q);                                              \
    } while (0)

#define REMS_QUEUE_EMPTY(q) ((void *)(q) == (void *)REMS_QUEUE_NEXT(q))
#define REMS_QUEUE_HEAD(q) (REMS_QUEUE_NEXT(q))

#define REMS_QUEUE_PUSH(h, q)                                                  \
    do {                                                                       \
        REMS_QUEUE_NEXT(q) = (h);                                              \
        REMS_QUEUE_PREV(q) = REMS_QUEUE_PREV(h);                               \
        REMS_QUEUE_NEXT(REMS_QUEUE_PREV(q)) = (q);                             \
        REMS_QUEUE_PREV(h) = (q);                                              \
    } while (0)

#define REMS_QUEUE_REMOVE(q)                                                   \
    do {                                                                       \
        REMS_QUEUE_NEXT(REMS_QUEUE_PREV(q)) = REMS_QUEUE_NEXT(q);              \
        REMS_QUEUE_PREV(REMS_QUEUE_NEXT(q)) = REMS_QUEUE_PREV(q);              \
    } while (0)

#define REMS_QUEUE_DATA(ptr, type, field)                                      \
    ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

#define REMS_QUEUE_FOREACH(q, h)                                               \
    for ((q) = REMS_QUEUE_NEXT(h); (q) != (h); (q) = REMS_QUEUE_NEXT(q))

#endif /* REMS_COMMON_QUEUE_H */
