/* agentproto/agent_outbox.c: the bounded queue of service-state changes.
 *
 * A ring of items, oldest at head. Each item owns one allocation holding
 * its service name and message; the proto_service inside points into it.
 * The ring grows by doubling up to its maximum, so an agent that never
 * loses its session holds only a few items.
 *
 * Encoding copies the oldest items into a scratch array (the ring may
 * wrap) and asks proto_msg_encode() for a report; when the frame would be
 * too big, a binary search finds how many items fit. proto_msg_encode()
 * checks every field, and push checks them too, so an item that reaches
 * the ring always encodes. */
#include "agentproto/agent_outbox.h"

#include <stdbool.h>
#include <string.h>

#include "common/assert.h"
#include "common/heap.h"

struct agent_outbox_item {
    struct proto_service status; /* Strings point into @strings. */
    char *strings;
};

void agent_outbox_init(struct agent_outbox *o, size_t max)
{
    PRE(o != NULL && max >= 1);
    memset(o, 0, sizeof *o);
    o->max = max;
}

static struct agent_outbox_item *item_at(const struct agent_outbox *o, size_t k)
{
    return &o->ring[(o->head + k) % o->cap];
}

void agent_outbox_close(struct agent_outbox *o)
{
    size_t k;

    if (o == NULL) {
        return;
    }
    for (k = 0; k < o->len; k++) {
        rems_free(item_at(o, k)->strings);
    }
    rems_free(o->ring);
    rems_free(o->scratch);
    o->ring = NULL;
    o->scratch = NULL;
    o->cap = 0;
    o->len = 0;
    o->head = 0;
}

size_t agent_outbox_len(const struct agent_outbox *o)
{
    PRE(o != NULL);
    return o->len;
}

uint64_t agent_outbox_dropped(const struct agent_outbox *o)
{
    PRE(o != NULL);
    return o->dropped;
}

int agent_outbox_pending(const struct agent_outbox *o)
{
    PRE(o != NULL);
    return o->len > 0 || o->dropped > 0;
}

static bool service_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
           c == '@' || c == '-';
}

/* The length of the UTF-8 sequence starting at @s (at most @n bytes), or
 * 0 when it is not well-formed (overlong forms, surrogates and code
 * points above U+10FFFF are not), as the protocol's decoder checks it. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    uint32_t cp;
    size_t len;
    size_t k;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[k] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

/* Copy the message @s of @len bytes into @dst (PROTO_MESSAGE_MAX bytes)
 * as text the protocol accepts: cut before a NUL byte, each byte of an
 * ill-formed sequence replaced by '?', and cut to PROTO_MESSAGE_MAX bytes
 * without splitting a character. Returns the length written. */
static size_t text_copy(char *dst, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t out = 0;
    size_t i = 0;
    size_t n;

    while (i < len && u[i] != 0) {
        n = utf8_char(u + i, len - i);
        if (n == 0) {
            if (out + 1 > PROTO_MESSAGE_MAX) {
                break;
            }
            dst[out++] = '?';
            i++;
            continue;
        }
        if (out + n > PROTO_MESSAGE_MAX) {
            break;
        }
        memcpy(dst + out, s + i, n);
        out += n;
        i += n;
    }
    return out;
}

static int check_status(const struct proto_service *st, char *errmsg)
{
    size_t i;

    if (st->service.len == 0 || st->service.len > PROTO_SERVICE_MAX) {
        rems_errmsgf(errmsg, "service: %zu bytes, 1 to %d allowed",
                     st->service.len, PROTO_SERVICE_MAX);
        return REMS_EINVAL;
    }
    for (i = 0; i < st->service.len; i++) {
        if (!service_char(st->service.p[i])) {
            rems_errmsgf(errmsg, "service: must be characters of "
                                 "[A-Za-z0-9_.:@-]");
            return REMS_EINVAL;
        }
    }
    if (st->state < PROTO_STATE_STOPPED || st->state >= PROTO_STATE_NR) {
        rems_errmsgf(errmsg, "%.*s: state: unknown state %d",
                     (int)st->service.len, st->service.p, st->state);
        return REMS_EINVAL;
    }
    if (st->health < PROTO_HEALTH_UNKNOWN || st->health >= PROTO_HEALTH_NR) {
        rems_errmsgf(errmsg, "%.*s: health: unknown health %d",
                     (int)st->service.len, st->service.p, st->health);
        return REMS_EINVAL;
    }
    return 0;
}

/* Make room for one more item, growing the ring up to o->max. */
static int grow(struct agent_outbox *o)
{
    struct agent_outbox_item *ring;
    size_t cap;
    size_t k;

    if (o->len < o->cap) {
        return 0;
    }
    PRE(o->cap < o->max);
    cap = o->cap == 0 ? 16 : o->cap * 2;
    if (cap > o->max) {
        cap = o->max;
    }
    ring = rems_malloc(cap * sizeof *ring);
    if (ring == NULL) {
        return REMS_ENOMEM;
    }
    for (k = 0; k < o->len; k++) {
        ring[k] = *item_at(o, k);
    }
    rems_free(o->ring);
    o->ring = ring;
    o->cap = cap;
    o->head = 0;
    return 0;
}

static void drop_oldest(struct agent_outbox *o)
{
    PRE(o->len > 0);
    rems_free(item_at(o, 0)->strings);
    o->head = (o->head + 1) % o->cap;
    o->len--;
    o->dropped++;
    o->dropped_total++;
}

int agent_outbox_push(struct agent_outbox *o,
                      const struct proto_service *status,
                      char *errmsg)
{
    struct agent_outbox_item item;
    size_t mlen;
    int rv;

    PRE(o != NULL && status != NULL && errmsg != NULL);

    rv = check_status(status, errmsg);
    if (rv != 0) {
        goto err;
    }
    item.status = *status;
    /* The message is copied to its place below; the service name first. */
    item.strings = rems_malloc(status->service.len + 2 +
                               (status->message.len < PROTO_MESSAGE_MAX
                                    ? status->message.len
                                    : PROTO_MESSAGE_MAX));
    if (item.strings == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_lost;
    }
    memcpy(item.strings, status->service.p, status->service.len);
    item.strings[status->service.len] = '\0';
    mlen = status->message.len > 0
               ? text_copy(item.strings + status->service.len + 1,
                           status->message.p, status->message.len)
               : 0;
    item.strings[status->service.len + 1 + mlen] = '\0';
    item.status.service.p = item.strings;
    item.status.message.p = item.strings + status->service.len + 1;
    item.status.message.len = mlen;

    if (o->len == o->max) {
        drop_oldest(o);
    } else if (grow(o) != 0) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_alloc;
    }
    *item_at(o, o->len) = item;
    o->len++;
    return 0;

err_after_alloc:
    rems_free(item.strings);
err_lost:
    o->dropped++;
    o->dropped_total++;
err:
    POST(rv != 0);
    return rv;
}

/* Encode a report of the @n oldest items. */
static int encode_n(struct agent_outbox *o,
                    uint64_t seq,
                    size_t n,
                    size_t max_frame,
                    struct rems_buf *out,
                    char *errmsg)
{
    struct proto_msg m = {0};
    size_t k;

    for (k = 0; k < n; k++) {
        o->scratch[k] = item_at(o, k)->status;
    }
    m.type = PROTO_REPORT;
    m.report.seq = seq;
    m.report.items = n > 0 ? o->scratch : NULL;
    m.report.n_items = n;
    m.report.dropped = o->dropped;
    return proto_msg_encode(&m, max_frame, out, errmsg);
}

int agent_outbox_encode(struct agent_outbox *o,
                        uint64_t seq,
                        size_t max_frame,
                        struct rems_buf *out,
                        size_t *n_items,
                        char *errmsg)
{
    size_t start = out->len;
    size_t n;
    size_t lo;
    size_t hi;
    size_t mid;
    int rv;

    PRE(o != NULL && out != NULL && n_items != NULL && errmsg != NULL);

    if (o->scratch == NULL) {
        o->scratch = rems_malloc(PROTO_ITEMS_MAX * sizeof *o->scratch);
        if (o->scratch == NULL) {
            rems_errmsg_oom(errmsg);
            rv = REMS_ENOMEM;
            goto err;
        }
    }
    for (;;) {
        n = o->len < PROTO_ITEMS_MAX ? o->len : PROTO_ITEMS_MAX;
        rv = encode_n(o, seq, n, max_frame, out, errmsg);
        if (rv == REMS_EINVAL && n > 0) {
            /* push checked every field the encoder checks, so this does
             * not happen; should it, the oldest item goes rather than the
             * whole queue being stuck. */
            drop_oldest(o);
            continue;
        }
        if (rv != REMS_ETOOBIG) {
            break;
        }
        /* lo items fit, hi do not. */
        lo = 0;
        hi = n;
        while (hi - lo > 1) {
            mid = lo + (hi - lo) / 2;
            rv = encode_n(o, seq, mid, max_frame, out, errmsg);
            out->len = start;
            if (rv == 0) {
                lo = mid;
            } else if (rv == REMS_ETOOBIG || rv == REMS_EINVAL) {
                hi = mid;
            } else {
                goto err;
            }
        }
        if (lo > 0) {
            n = lo;
            rv = encode_n(o, seq, n, max_frame, out, errmsg);
            break;
        }
        /* The oldest item does not fit even alone (only with a tiny
         * frame size): it can never be sent. */
        drop_oldest(o);
    }
    if (rv != 0) {
        goto err;
    }

    *n_items = n;
    return 0;

err:
    out->len = start;
    POST(rv != 0);
    return rv;
}

void agent_outbox_consume(struct agent_outbox *o, size_t n)
{
    size_t k;

    PRE(o != NULL && n <= o->len);
    for (k = 0; k < n; k++) {
        rems_free(item_at(o, 0)->strings);
        o->head = (o->head + 1) % o->cap;
        o->len--;
    }
    o->dropped = 0;
}
