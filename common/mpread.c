/* MessagePack reader and the growable buffer; see mpread.h. */
#include "common/mpread.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/heap.h"

void mpread_init(struct mpread *r, const void *buf, size_t len)
{
    r->p = buf;
    r->end = r->p + len;
}

static bool have(const struct mpread *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n;
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Read a length-prefixed header: fix range [fix_lo, fix_hi] with @fix_mask,
 * or the 8/16/32-bit forms @b8/@b16/@b32 (0 when absent). */
static int read_len(struct mpread *r,
                    unsigned fix_lo,
                    unsigned fix_hi,
                    unsigned fix_mask,
                    unsigned b8,
                    unsigned b16,
                    unsigned b32,
                    uint32_t *n)
{
    unsigned c;
    if (!have(r, 1)) {
        return REMS_EMALFORMED;
    }
    c = r->p[0];
    if (c >= fix_lo && c <= fix_hi) {
        *n = c & fix_mask;
        r->p += 1;
        return 0;
    }
    if (b8 != 0 && c == b8 && have(r, 2)) {
        *n = (uint32_t)be(r->p + 1, 1);
        r->p += 2;
        return 0;
    }
    if (c == b16 && have(r, 3)) {
        *n = (uint32_t)be(r->p + 1, 2);
        r->p += 3;
        return 0;
    }
    if (c == b32 && have(r, 5)) {
        *n = (uint32_t)be(r->p + 1, 4);
        r->p += 5;
        return 0;
    }
    return REMS_EMALFORMED;
}

int mpread_map(struct mpread *r, uint32_t *n)
{
    return read_len(r, 0x80, 0x8f, 0x0f, 0, 0xde, 0xdf, n);
}

int mpread_array(struct mpread *r, uint32_t *n)
{
    return read_len(r, 0x90, 0x9f, 0x0f, 0, 0xdc, 0xdd, n);
}

int mpread_i64(struct mpread *r, int64_t *v)
{
    unsigned c;
    int n;
    uint64_t u;
    if (!have(r, 1)) {
        return REMS_EMALFORMED;
    }
    c = r->p[0];
    if (c <= 0x7f) {
        *v = (int64_t)c;
        r->p++;
        return 0;
    }
    if (c >= 0xe0) {
        *v = (int64_t)(int8_t)c;
        r->p++;
        return 0;
    }
    switch (c) {
        case 0xcc: case 0xd0: n = 1; break;
        case 0xcd: case 0xd1: n = 2; break;
        case 0xce: case 0xd2: n = 4; break;
        case 0xcf: case 0xd3: n = 8; break;
        default: return REMS_EMALFORMED;
    }
    if (!have(r, 1 + (size_t)n)) {
        return REMS_EMALFORMED;
    }
    u = be(r->p + 1, n);
    if (c >= 0xd0) {
        /* Sign-extend. */
        if (n < 8 && (u >> (8 * n - 1)) != 0) {
            u |= ~(uint64_t)0 << (8 * n);
        }
        *v = (int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX) {
            return REMS_EMALFORMED;
        }
        *v = (int64_t)u;
    }
    r->p += 1 + n;
    return 0;
}

int mpread_u64(struct mpread *r, uint64_t *v)
{
    unsigned c;
    int n;
    if (!have(r, 1)) {
        return REMS_EMALFORMED;
    }
    c = r->p[0];
    if (c <= 0x7f) {
        *v = c;
        r->p++;
        return 0;
    }
    switch (c) {
        case 0xcc: n = 1; break;
        case 0xcd: n = 2; break;
        case 0xce: n = 4; break;
        case 0xcf: n = 8; break;
        case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
            /* msgpack-c packs small non-negative signed values this way. */
            int64_t s;
            struct mpread save = *r;
            if (mpread_i64(r, &s) != 0 || s < 0) {
                *r = save;
                return REMS_EMALFORMED;
            }
            *v = (uint64_t)s;
            return 0;
        }
        default: return REMS_EMALFORMED;
    }
    if (!have(r, 1 + (size_t)n)) {
        return REMS_EMALFORMED;
    }
    *v = be(r->p + 1, n);
    r->p += 1 + n;
    return 0;
}

int mpread_bool(struct mpread *r, bool *v)
{
    if (!have(r, 1) || (r->p[0] != 0xc2 && r->p[0] != 0xc3)) {
        return REMS_EMALFORMED;
    }
    *v = r->p[0] == 0xc3;
    r->p++;
    return 0;
}

bool mpread_nil(struct mpread *r)
{
    if (have(r, 1) && r->p[0] == 0xc0) {
        r->p++;
        return true;
    }
    return false;
}

int mpread_str(struct mpread *r, const char **s, size_t *len)
{
    struct mpread save = *r;
    uint32_t n;
    if (read_len(r, 0xa0, 0xbf, 0x1f, 0xd9, 0xda, 0xdb, &n) != 0 ||
        !have(r, n)) {
        *r = save;
        return REMS_EMALFORMED;
    }
    *s = (const char *)r->p;
    *len = n;
    r->p += n;
    return 0;
}

int mpread_bytes(struct mpread *r, const void **s, size_t *len)
{
    struct mpread save = *r;
    uint32_t n;
    const char *str;
    if (mpread_str(r, &str, len) == 0) {
        *s = str;
        return 0;
    }
    if (read_len(r, 0x100, 0x100, 0, 0xc4, 0xc5, 0xc6, &n) != 0 ||
        !have(r, n)) {
        *r = save;
        return REMS_EMALFORMED;
    }
    *s = r->p;
    *len = n;
    r->p += n;
    return 0;
}

static int skip_depth(struct mpread *r, int depth)
{
    uint32_t n;
    uint32_t i;
    const void *b;
    size_t len;
    uint64_t u;
    int64_t s;
    bool bo;

    if (depth > 32 || !have(r, 1)) {
        return REMS_EMALFORMED;
    }
    if (mpread_nil(r) || mpread_bool(r, &bo) == 0 || mpread_u64(r, &u) == 0 ||
        mpread_i64(r, &s) == 0 || mpread_bytes(r, &b, &len) == 0) {
        return 0;
    }
    if (r->p[0] == 0xcb) { /* float64 */
        if (!have(r, 9)) {
            return REMS_EMALFORMED;
        }
        r->p += 9;
        return 0;
    }
    if (r->p[0] == 0xca) { /* float32 */
        if (!have(r, 5)) {
            return REMS_EMALFORMED;
        }
        r->p += 5;
        return 0;
    }
    if (mpread_array(r, &n) == 0) {
        for (i = 0; i < n; i++) {
            if (skip_depth(r, depth + 1) != 0) {
                return REMS_EMALFORMED;
            }
        }
        return 0;
    }
    if (mpread_map(r, &n) == 0) {
        for (i = 0; i < 2 * (uint64_t)n; i++) {
            if (skip_depth(r, depth + 1) != 0) {
                return REMS_EMALFORMED;
            }
        }
        return 0;
    }
    return REMS_EMALFORMED;
}

int mpread_skip(struct mpread *r)
{
    return skip_depth(r, 0);
}

bool mpread_done(const struct mpread *r)
{
    return r->p == r->end;
}

bool mpread_streq(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

void rems_buf_init(struct rems_buf *b)
{
    memset(b, 0, sizeof *b);
}

void rems_buf_close(struct rems_buf *b)
{
    rems_free(b->data);
    rems_buf_init(b);
}

int rems_buf_append(struct rems_buf *b, const void *data, size_t len)
{
    if (b->failed) {
        return REMS_ENOMEM;
    }
    if (len == 0) {
        return 0;
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 256 : b->cap;
        char *p;
        while (cap < b->len + len + 1) {
            cap *= 2;
        }
        p = rems_realloc(b->data, cap);
        if (p == NULL) {
            b->failed = true;
            return REMS_ENOMEM;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int rems_buf_write(void *data, const char *buf, size_t len)
{
    return rems_buf_append(data, buf, len) == 0 ? 0 : -1;
}

int rems_buf_printf(struct rems_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return REMS_EINVAL;
    }
    if ((size_t)n < sizeof small) {
        return rems_buf_append(b, small, (size_t)n);
    }
    {
        char *big = rems_malloc((size_t)n + 1);
        int rv;
        if (big == NULL) {
            b->failed = true;
            return REMS_ENOMEM;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        rv = rems_buf_append(b, big, (size_t)n);
        rems_free(big);
        return rv;
    }
}
