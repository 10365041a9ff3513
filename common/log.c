/* JSON-lines logging. Each line is assembled in a caller-owned buffer and
 * written with a single write(2); a line that would overflow its buffer is
 * cut at a field boundary and marked with "truncated":true. */
#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"

static char log_node[64];
static enum rems_log_level log_threshold = REMS_LOG_INFO;

static const char *const level_names[REMS_LOG_LEVEL_NR] = {
    "debug",
    "info",
    "warn",
    "error",
};

void rems_log_set_node(const char *node)
{
    if (node == NULL) {
        log_node[0] = '\0';
        return;
    }
    snprintf(log_node, sizeof log_node, "%s", node);
}

void rems_log_set_level(enum rems_log_level level)
{
    log_threshold = level;
}

int rems_log_level_parse(const char *s, enum rems_log_level *out)
{
    int i;
    for (i = 0; i < REMS_LOG_LEVEL_NR; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum rems_log_level)i;
            return 0;
        }
    }
    return REMS_EINVAL;
}

bool rems_json_escape(char *out,
                      size_t cap,
                      size_t *used,
                      const char *s,
                      size_t len)
{
    size_t i;
    size_t n = *used;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        size_t elen;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2);
            elen = 2;
        } else if (c == '\t') {
            memcpy(esc, "\\t", 2);
            elen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            elen = 6;
        } else {
            esc[0] = (char)c;
            elen = 1;
        }
        if (n + elen >= cap) {
            *used = n;
            return false;
        }
        memcpy(out + n, esc, elen);
        n += elen;
    }
    *used = n;
    return true;
}

/* Append raw text; on overflow mark the line skipped-for-append. */
static void append_raw(struct rems_log_line *l, const char *s, size_t len)
{
    if (l->len + len >= sizeof l->buf - 32) {
        return;
    }
    memcpy(l->buf + l->len, s, len);
    l->len += len;
}

static void append_key(struct rems_log_line *l, const char *key)
{
    append_raw(l, ",\"", 2);
    rems_json_escape(l->buf, sizeof l->buf - 32, &l->len, key, strlen(key));
    append_raw(l, "\":", 2);
}

void rems_log_begin(struct rems_log_line *l,
                    enum rems_log_level level,
                    const char *event)
{
    struct timespec ts;
    struct tm tm;
    int n;

    l->skip = level < log_threshold;
    l->len = 0;
    if (l->skip) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(l->buf, sizeof l->buf,
                 "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\","
                 "\"level\":\"%s\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 level_names[level]);
    l->len = n > 0 ? (size_t)n : 0;
    if (log_node[0] != '\0') {
        rems_log_str(l, "node", log_node);
    }
    rems_log_str(l, "event", event);
}

void rems_log_strn(struct rems_log_line *l,
                   const char *key,
                   const char *value,
                   size_t len)
{
    if (l->skip) {
        return;
    }
    append_key(l, key);
    append_raw(l, "\"", 1);
    rems_json_escape(l->buf, sizeof l->buf - 32, &l->len, value, len);
    append_raw(l, "\"", 1);
}

void rems_log_str(struct rems_log_line *l, const char *key, const char *value)
{
    if (value == NULL) {
        if (!l->skip) {
            append_key(l, key);
            append_raw(l, "null", 4);
        }
        return;
    }
    rems_log_strn(l, key, value, strlen(value));
}

void rems_log_u64(struct rems_log_line *l, const char *key, uint64_t value)
{
    char num[32];
    int n;
    if (l->skip) {
        return;
    }
    n = snprintf(num, sizeof num, "%" PRIu64, value);
    append_key(l, key);
    append_raw(l, num, (size_t)n);
}

void rems_log_i64(struct rems_log_line *l, const char *key, int64_t value)
{
    char num[32];
    int n;
    if (l->skip) {
        return;
    }
    n = snprintf(num, sizeof num, "%" PRId64, value);
    append_key(l, key);
    append_raw(l, num, (size_t)n);
}

void rems_log_f64(struct rems_log_line *l, const char *key, double value)
{
    char num[48];
    int n;
    if (l->skip) {
        return;
    }
    n = snprintf(num, sizeof num, "%.3f", value);
    append_key(l, key);
    append_raw(l, num, (size_t)n);
}

void rems_log_bool(struct rems_log_line *l, const char *key, bool value)
{
    if (l->skip) {
        return;
    }
    append_key(l, key);
    append_raw(l, value ? "true" : "false", value ? 4 : 5);
}

void rems_log_end(struct rems_log_line *l)
{
    ssize_t rv;
    size_t off = 0;
    if (l->skip) {
        return;
    }
    /* append_raw keeps 32 bytes spare for this closing. */
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    while (off < l->len) {
        rv = write(STDERR_FILENO, l->buf + off, l->len - off);
        if (rv < 0 && errno == EINTR) {
            continue;
        }
        if (rv <= 0) {
            break;
        }
        off += (size_t)rv;
    }
}

void rems_log(enum rems_log_level level, const char *event, const char *msg)
{
    struct rems_log_line l;
    rems_log_begin(&l, level, event);
    rems_log_str(&l, "msg", msg);
    rems_log_end(&l);
}
