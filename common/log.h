/* common/log.h: structured logs, one JSON object per line on stderr.
 *
 * Every line has "ts" (UTC, milliseconds), "level", "node" (once set) and
 * "event"; callers add fields. A line is written with one write(2), so lines
 * from several threads never interleave. Example:
 *
 *   struct rems_log_line l;
 *   rems_log_begin(&l, REMS_LOG_INFO, "leader_elected");
 *   rems_log_u64(&l, "term", term);
 *   rems_log_str(&l, "trace_id", trace);
 *   rems_log_end(&l);
 */
#ifndef REMS_COMMON_LOG_H
#define REMS_COMMON_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rems_log_level {
    REMS_LOG_DEBUG,
    REMS_LOG_INFO,
    REMS_LOG_WARN,
    REMS_LOG_ERROR,
    REMS_LOG_LEVEL_NR
};

#define REMS_LOG_LINE_SIZE 4096

struct rems_log_line {
    char buf[REMS_LOG_LINE_SIZE];
    size_t len;
    bool skip; /* Below the threshold: every call is a no-op. */
};

/* Set the node id written on every line (copied); NULL clears it. */
void rems_log_set_node(const char *node);

/* Lines below @level are dropped. Default REMS_LOG_INFO. */
void rems_log_set_level(enum rems_log_level level);

/* Parse "debug|info|warn|error"; returns 0 or REMS_EINVAL. */
int rems_log_level_parse(const char *s, enum rems_log_level *out);

void rems_log_begin(struct rems_log_line *l,
                    enum rems_log_level level,
                    const char *event);
void rems_log_str(struct rems_log_line *l, const char *key, const char *value);
void rems_log_strn(struct rems_log_line *l,
                   const char *key,
                   const char *value,
                   size_t len);
void rems_log_u64(struct rems_log_line *l, const char *key, uint64_t value);
void rems_log_i64(struct rems_log_line *l, const char *key, int64_t value);
void rems_log_f64(struct rems_log_line *l, const char *key, double value);
void rems_log_bool(struct rems_log_line *l, const char *key, bool value);
void rems_log_end(struct rems_log_line *l);

/* One-shot: an event with a "msg" field. */
void rems_log(enum rems_log_level level, const char *event, const char *msg);

/* Append @len bytes of @s to @out (capacity @cap, used *@used) as the inside
 * of a JSON string, escaping quotes, backslashes and control bytes. Returns
 * false (leaving a truncated, still valid prefix) when it does not fit. */
bool rems_json_escape(char *out,
                      size_t cap,
                      size_t *used,
                      const char *s,
                      size_t len);

#endif /* REMS_COMMON_LOG_H */
