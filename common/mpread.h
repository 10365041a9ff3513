/* common/mpread.h: a zero-allocation MessagePack reader.
 *
 * Decodes the subset rems writes (nil, bool, unsigned and signed integers,
 * str, bin, array, map; float64 is skipped as a value) straight from a
 * borrowed buffer: strings point into it. Every read checks bounds and type
 * and returns REMS_EMALFORMED on anything else, so bytes from the network
 * or the disk can never crash the caller. Nesting is limited to 32 levels
 * when skipping. Writing uses msgpack-c's packer with struct rems_buf. */
#ifndef REMS_COMMON_MPREAD_H
#define REMS_COMMON_MPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mpread {
    const unsigned char *p;
    const unsigned char *end;
};

void mpread_init(struct mpread *r, const void *buf, size_t len);

/* Each returns 0 or REMS_EMALFORMED (wrong type, truncated). */
int mpread_map(struct mpread *r, uint32_t *n);
int mpread_array(struct mpread *r, uint32_t *n);
int mpread_u64(struct mpread *r, uint64_t *v);
int mpread_i64(struct mpread *r, int64_t *v);
int mpread_bool(struct mpread *r, bool *v);
/* A str (or, with mpread_bytes, a str or bin). */
int mpread_str(struct mpread *r, const char **s, size_t *len);
int mpread_bytes(struct mpread *r, const void **s, size_t *len);
/* True (and consumed) when the next value is nil. */
bool mpread_nil(struct mpread *r);
/* Skip one value of any supported type. */
int mpread_skip(struct mpread *r);
/* True when every byte was consumed. */
bool mpread_done(const struct mpread *r);

/* Compare a str read by mpread_str() with a C string. */
bool mpread_streq(const char *s, size_t len, const char *lit);

/* A growable byte buffer on rems_malloc, usable as msgpack-c's write
 * callback (msgpack_packer_init(&pk, &buf, rems_buf_write)). Once an
 * allocation failed, the buffer stays failed and further writes fail. */
struct rems_buf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
};

void rems_buf_init(struct rems_buf *b);
void rems_buf_close(struct rems_buf *b);
int rems_buf_write(void *data, const char *buf, size_t len);
int rems_buf_append(struct rems_buf *b, const void *data, size_t len);
int rems_buf_printf(struct rems_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* REMS_COMMON_MPREAD_H */
