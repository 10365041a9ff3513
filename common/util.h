/* common/util.h: clocks, ids and small helpers shared by every module. */
#ifndef REMS_COMMON_UTIL_H
#define REMS_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define REMS_CONTAINER_OF(ptr, type, member)                                   \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define REMS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Wall clock, milliseconds since the epoch. */
uint64_t rems_wall_ms(void);

/* Monotonic clock, milliseconds. */
uint64_t rems_mono_ms(void);

/* Length of a trace or request id string, without the terminator. */
#define REMS_ID_LEN 32
#define REMS_ID_SIZE (REMS_ID_LEN + 1)

/* Write a random 128-bit id as 32 lower-case hex digits into @out
 * (REMS_ID_SIZE bytes). Uses getrandom(2). */
void rems_id_random(char *out);

/* True when @s is 1..64 characters of [A-Za-z0-9_.:-] (a valid id given by a
 * client, such as X-Rems-Trace-Id or X-Rems-Request-Id). */
int rems_id_valid(const char *s);

/* Parse a decimal uint64 that fills the whole of @s; returns 0 or
 * REMS_EINVAL (empty, sign, garbage, overflow). */
int rems_parse_u64(const char *s, uint64_t *out);

#endif /* REMS_COMMON_UTIL_H */
