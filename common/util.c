/* Clocks, ids and number parsing. */
#define _GNU_SOURCE /* getrandom() */
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/error.h"

uint64_t rems_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t rems_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void rems_id_random(char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[REMS_ID_LEN / 2];
    size_t got = 0;
    size_t i;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            /* getrandom cannot fail otherwise on Linux >= 3.17. */
            memset(raw + got, 0, sizeof raw - got);
            break;
        }
        got += (size_t)n;
    }
    for (i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 0xf];
    }
    out[REMS_ID_LEN] = '\0';
}

int rems_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= 64) {
            return 0;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
              c == '-')) {
            return 0;
        }
    }
    return n > 0;
}

int rems_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || *s == '\0') {
        return REMS_EINVAL;
    }
    for (; *s != '\0'; s++) {
        unsigned d;
        if (*s < '0' || *s > '9') {
            return REMS_EINVAL;
        }
        d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return REMS_EINVAL;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}
