/* agentproto/proto.c: framing and the messages of the agent protocol.
 *
 * Each message type is described once, by a table of its fields: wire
 * name, kind, place in struct proto_msg, required or optional, limits.
 * Three walkers share the tables:
 *
 * - decode_map() reads a MessagePack map into a struct: it checks types,
 *   refuses a field given twice, notes required fields that are missing,
 *   bounds array counts before allocating them and skips unknown fields;
 * - check_map() checks what the wire types cannot say: lengths, character
 *   sets, UTF-8, numeric ranges, unique keys;
 * - pack_map() writes a struct as a map.
 *
 * Encoding runs the checks before packing and decoding runs them last, so
 * both directions apply the same rules and name fields the same way
 * ("report.items[3].state: unknown state \"runing\""). Rules that tie two
 * fields together live in check_msg().
 *
 * Decoding reads the payload twice: first to find "t" wherever it is in
 * the map (so an unknown type is reported as such, whatever comes before
 * it), then to read the fields of that type.
 *
 * The frame reader (end of the file) returns frames lying whole in the
 * chunk in place and gathers split frames in one of two buffers, so that a
 * split frame completed by a chunk stays valid while the chunk's unfinished
 * tail starts filling the other buffer. Headers are gathered in a fixed
 * 4-byte array: nothing is allocated before the announced length has been
 * checked against the maximum. */
#include "agentproto/proto.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/assert.h"
#include "common/heap.h"
#include "common/util.h"

/* Buffers of the reader larger than this are released at the next feed
 * once they hold nothing, so that an idle connection keeps little memory
 * after a large frame. */
#define READER_KEEP ((size_t)64 * 1024)

/* ------------------------------------------------------------------------
 * Names
 * --------------------------------------------------------------------- */

static const char *const type_names[PROTO_TYPE_NR] = {
    [PROTO_HELLO] = "hello",
    [PROTO_WELCOME] = "welcome",
    [PROTO_REDIRECT] = "redirect",
    [PROTO_HEARTBEAT] = "heartbeat",
    [PROTO_HEARTBEAT_ACK] = "heartbeat_ack",
    [PROTO_REPORT] = "report",
    [PROTO_COMMAND] = "command",
    [PROTO_ACK] = "ack",
    [PROTO_NACK] = "nack",
    [PROTO_ERROR] = "error",
};

static const char *const state_names[PROTO_STATE_NR] = {
    [PROTO_STATE_STOPPED] = "stopped",
    [PROTO_STATE_STARTING] = "starting",
    [PROTO_STATE_RUNNING] = "running",
    [PROTO_STATE_STOPPING] = "stopping",
    [PROTO_STATE_FAILED] = "failed",
    [PROTO_STATE_BACKOFF] = "backoff",
    [PROTO_STATE_FATAL] = "fatal",
    [PROTO_STATE_PAUSED] = "paused",
    [PROTO_STATE_QUARANTINED] = "quarantined",
};

static const char *const health_names[PROTO_HEALTH_NR] = {
    [PROTO_HEALTH_UNKNOWN] = "unknown",
    [PROTO_HEALTH_HEALTHY] = "healthy",
    [PROTO_HEALTH_UNHEALTHY] = "unhealthy",
};

static const char *const action_names[PROTO_ACTION_NR] = {
    [PROTO_ACTION_START] = "start",
    [PROTO_ACTION_STOP] = "stop",
    [PROTO_ACTION_RESTART] = "restart",
    [PROTO_ACTION_PAUSE] = "pause",
    [PROTO_ACTION_RESUME] = "resume",
    [PROTO_ACTION_QUARANTINE] = "quarantine",
    [PROTO_ACTION_PUSH_MANIFEST] = "push_manifest",
    [PROTO_ACTION_DIAGNOSTICS] = "diagnostics",
};

static const char *const reason_names[PROTO_NACK_REASON_NR] = {
    [PROTO_NACK_STALE_TERM] = "stale_term",
    [PROTO_NACK_EXPIRED] = "expired",
    [PROTO_NACK_DUPLICATE] = "duplicate",
    [PROTO_NACK_UNKNOWN_ACTION] = "unknown_action",
    [PROTO_NACK_UNKNOWN_SERVICE] = "unknown_service",
    [PROTO_NACK_FAILED] = "failed",
    [PROTO_NACK_BUSY] = "busy",
};

static const char *const error_names[PROTO_ERR_NR] = {
    [PROTO_ERR_MALFORMED] = "malformed",
    [PROTO_ERR_UNSUPPORTED_VERSION] = "unsupported_version",
    [PROTO_ERR_UNKNOWN_TYPE] = "unknown_type",
    [PROTO_ERR_TOO_BIG] = "too_big",
    [PROTO_ERR_UNAUTHORIZED] = "unauthorized",
    [PROTO_ERR_NOT_LEADER] = "not_leader",
    [PROTO_ERR_INTERNAL] = "internal",
};

static const char *name_of(const char *const *names, int nr, int v)
{
    if (v <= 0 || v >= nr || names[v] == NULL) {
        return "unknown";
    }
    return names[v];
}

const char *proto_type_name(int type)
{
    return name_of(type_names, PROTO_TYPE_NR, type);
}

const char *proto_state_name(int state)
{
    return name_of(state_names, PROTO_STATE_NR, state);
}

const char *proto_health_name(int health)
{
    return name_of(health_names, PROTO_HEALTH_NR, health);
}

const char *proto_action_name(int action)
{
    return name_of(action_names, PROTO_ACTION_NR, action);
}

const char *proto_nack_reason_name(int reason)
{
    return name_of(reason_names, PROTO_NACK_REASON_NR, reason);
}

const char *proto_error_code_name(int code)
{
    return name_of(error_names, PROTO_ERR_NR, code);
}

/* ------------------------------------------------------------------------
 * Field tables
 * --------------------------------------------------------------------- */

enum kind {
    K_U64 = 1, /* uint64_t; value in [min, max] */
    K_BOOL,    /* bool */
    K_I32,     /* int32_t, optional with F_HAS */
    K_ID,      /* proto_str identifier; length in [min, max] */
    K_TEXT,    /* proto_str UTF-8 text without NUL; length in [min, max] */
    K_ADDR,    /* proto_str "host:port" or ""; length <= max */
    K_BYTES,   /* proto_str from bin or str, packed as bin; length <= max */
    K_ENUM,    /* int; wire name from def (struct enum_def) */
    K_KV,      /* proto_kv array at off, count (size_t) at aux; kv_def */
    K_ITEMS,   /* proto_service array at off, count at aux; <= max */
    K_RESULT   /* ack.result: a string or a map; fixed places in proto_ack */
};

#define F_REQ 1u    /* Required. */
#define F_HAS 2u    /* Presence flag (bool) at has. */
#define F_UNIQUE 4u /* K_ITEMS: service names are unique. */
#define F_OPEN 8u   /* K_ENUM: an unknown name decodes as 0, name at aux. */
#define F_AT 16u    /* K_ID: '@' is allowed too (service names). */

struct enum_def {
    const char *const *names;
    int nr;
    const char *what; /* For messages: "unknown state ..." */
};

struct kv_def {
    size_t max;
    size_t key_max;
    size_t value_max;
};

struct field {
    const char *name;
    int kind;
    unsigned flags;
    size_t off;
    size_t aux;
    size_t has;
    uint64_t min;
    uint64_t max;
    const void *def;
};

struct msg_def {
    const struct field *fields;
    size_t n;
};

static const struct enum_def state_def = {state_names, PROTO_STATE_NR, "state"};
static const struct enum_def health_def = {health_names, PROTO_HEALTH_NR,
                                           "health"};
static const struct enum_def action_def = {action_names, PROTO_ACTION_NR,
                                           "action"};
static const struct enum_def reason_def = {reason_names, PROTO_NACK_REASON_NR,
                                           "reason"};
static const struct enum_def code_def = {error_names, PROTO_ERR_NR, "code"};

static const struct kv_def labels_def = {PROTO_LABELS_MAX, PROTO_LABEL_KEY_MAX,
                                         PROTO_LABEL_VALUE_MAX};
static const struct kv_def args_def = {PROTO_ARGS_MAX, PROTO_ARG_KEY_MAX,
                                       PROTO_ARG_VALUE_MAX};

#define MSG(member) offsetof(struct proto_msg, member)
#define SVC(member) offsetof(struct proto_service, member)

static const struct field service_fields[] = {
    {.name = "service",
     .kind = K_ID,
     .flags = F_REQ | F_AT,
     .off = SVC(service),
     .min = 1,
     .max = PROTO_SERVICE_MAX},
    {.name = "state",
     .kind = K_ENUM,
     .flags = F_REQ,
     .off = SVC(state),
     .def = &state_def},
    {.name = "generation",
     .kind = K_U64,
     .flags = F_REQ,
     .off = SVC(generation),
     .max = UINT64_MAX},
    {.name = "health",
     .kind = K_ENUM,
     .flags = F_REQ,
     .off = SVC(health),
     .def = &health_def},
    {.name = "ready", .kind = K_BOOL, .flags = F_REQ, .off = SVC(ready)},
    {.name = "exit_code",
     .kind = K_I32,
     .flags = F_HAS,
     .off = SVC(exit_code),
     .has = SVC(has_exit_code)},
    {.name = "since_ms",
     .kind = K_U64,
     .flags = F_REQ,
     .off = SVC(since_ms),
     .max = UINT64_MAX},
    {.name = "message",
     .kind = K_TEXT,
     .off = SVC(message),
     .max = PROTO_MESSAGE_MAX},
};

static const struct field hello_fields[] = {
    {.name = "v",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(hello.version),
     .min = 1,
     .max = UINT64_MAX},
    {.name = "agent_id",
     .kind = K_ID,
     .flags = F_REQ,
     .off = MSG(hello.agent_id),
     .min = 1,
     .max = PROTO_ID_MAX},
    {.name = "labels",
     .kind = K_KV,
     .off = MSG(hello.labels),
     .aux = MSG(hello.n_labels),
     .def = &labels_def},
    {.name = "highest_term",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(hello.highest_term),
     .max = UINT64_MAX},
    {.name = "agent_version",
     .kind = K_TEXT,
     .flags = F_REQ,
     .off = MSG(hello.agent_version),
     .min = 1,
     .max = PROTO_AGENT_VERSION_MAX},
    {.name = "services",
     .kind = K_ITEMS,
     .flags = F_HAS | F_UNIQUE,
     .off = MSG(hello.services),
     .aux = MSG(hello.n_services),
     .has = MSG(hello.has_services),
     .max = PROTO_ITEMS_MAX},
};

static const struct field welcome_fields[] = {
    /* The version range is checked by check_msg(), which tells an
     * unsupported version from a malformed one. */
    {.name = "v",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(welcome.version),
     .max = UINT64_MAX},
    {.name = "node_id",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(welcome.node_id),
     .min = 1,
     .max = UINT64_MAX},
    {.name = "term",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(welcome.term),
     .min = 1,
     .max = UINT64_MAX},
    {.name = "lease_ttl_ms",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(welcome.lease_ttl_ms),
     .min = 1,
     .max = PROTO_DURATION_MAX_MS},
    {.name = "heartbeat_interval_ms",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(welcome.heartbeat_interval_ms),
     .min = 1,
     .max = PROTO_DURATION_MAX_MS},
};

static const struct field redirect_fields[] = {
    {.name = "leader_address",
     .kind = K_ADDR,
     .flags = F_REQ,
     .off = MSG(redirect.leader_address),
     .max = PROTO_ADDR_MAX},
    {.name = "leader_id",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(redirect.leader_id),
     .max = UINT64_MAX},
    {.name = "term",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(redirect.term),
     .max = UINT64_MAX},
    {.name = "retry_after_ms",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(redirect.retry_after_ms),
     .max = PROTO_DURATION_MAX_MS},
};

static const struct field heartbeat_fields[] = {
    {.name = "seq",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(heartbeat.seq),
     .max = UINT64_MAX},
};

static const struct field heartbeat_ack_fields[] = {
    {.name = "seq",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(heartbeat_ack.seq),
     .max = UINT64_MAX},
    {.name = "term",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(heartbeat_ack.term),
     .min = 1,
     .max = UINT64_MAX},
    {.name = "lease_remaining_ms",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(heartbeat_ack.lease_remaining_ms),
     .max = PROTO_DURATION_MAX_MS},
};

static const struct field report_fields[] = {
    {.name = "seq",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(report.seq),
     .max = UINT64_MAX},
    {.name = "items",
     .kind = K_ITEMS,
     .flags = F_REQ,
     .off = MSG(report.items),
     .aux = MSG(report.n_items),
     .max = PROTO_ITEMS_MAX},
    {.name = "dropped",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(report.dropped),
     .max = UINT64_MAX},
};

static const struct field command_fields[] = {
    {.name = "id",
     .kind = K_ID,
     .flags = F_REQ,
     .off = MSG(command.id),
     .min = 1,
     .max = PROTO_ID_MAX},
    {.name = "term",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(command.term),
     .min = 1,
     .max = UINT64_MAX},
    {.name = "ttl_remaining_ms",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(command.ttl_remaining_ms),
     .max = PROTO_DURATION_MAX_MS},
    {.name = "action",
     .kind = K_ENUM,
     .flags = F_REQ | F_OPEN,
     .off = MSG(command.action),
     .aux = MSG(command.action_name),
     .def = &action_def},
    /* Required or not depending on the action: see check_msg(). */
    {.name = "service",
     .kind = K_ID,
     .flags = F_AT,
     .off = MSG(command.service),
     .min = 1,
     .max = PROTO_SERVICE_MAX},
    {.name = "args",
     .kind = K_KV,
     .off = MSG(command.args),
     .aux = MSG(command.n_args),
     .def = &args_def},
    {.name = "manifest",
     .kind = K_BYTES,
     .off = MSG(command.manifest),
     .max = PROTO_MANIFEST_MAX},
};

static const struct field ack_fields[] = {
    {.name = "id",
     .kind = K_ID,
     .flags = F_REQ,
     .off = MSG(ack.id),
     .min = 1,
     .max = PROTO_ID_MAX},
    {.name = "term",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(ack.term),
     .min = 1,
     .max = UINT64_MAX},
    {.name = "result", .kind = K_RESULT, .def = &args_def},
};

static const struct field nack_fields[] = {
    {.name = "id",
     .kind = K_ID,
     .flags = F_REQ,
     .off = MSG(nack.id),
     .min = 1,
     .max = PROTO_ID_MAX},
    {.name = "term",
     .kind = K_U64,
     .flags = F_REQ,
     .off = MSG(nack.term),
     .min = 1,
     .max = UINT64_MAX},
    {.name = "reason",
     .kind = K_ENUM,
     .flags = F_REQ,
     .off = MSG(nack.reason),
     .def = &reason_def},
    {.name = "message",
     .kind = K_TEXT,
     .flags = F_REQ,
     .off = MSG(nack.message),
     .max = PROTO_MESSAGE_MAX},
};

static const struct field error_fields[] = {
    {.name = "code",
     .kind = K_ENUM,
     .flags = F_REQ,
     .off = MSG(error.code),
     .def = &code_def},
    {.name = "message",
     .kind = K_TEXT,
     .flags = F_REQ,
     .off = MSG(error.message),
     .max = PROTO_MESSAGE_MAX},
};

#define DEF(fields)                                                            \
    {                                                                          \
        (fields), REMS_ARRAY_SIZE(fields)                                      \
    }

static const struct msg_def msg_defs[PROTO_TYPE_NR] = {
    [PROTO_HELLO] = DEF(hello_fields),
    [PROTO_WELCOME] = DEF(welcome_fields),
    [PROTO_REDIRECT] = DEF(redirect_fields),
    [PROTO_HEARTBEAT] = DEF(heartbeat_fields),
    [PROTO_HEARTBEAT_ACK] = DEF(heartbeat_ack_fields),
    [PROTO_REPORT] = DEF(report_fields),
    [PROTO_COMMAND] = DEF(command_fields),
    [PROTO_ACK] = DEF(ack_fields),
    [PROTO_NACK] = DEF(nack_fields),
    [PROTO_ERROR] = DEF(error_fields),
};

/* Typed access to a field at byte offset @off of @base. */
#define AT(base, off, T) ((T *)(void *)((char *)(base) + (off)))
#define CAT(base, off, T)                                                      \
    ((const T *)(const void *)((const char *)(base) + (off)))
/* The same for a pointer field holding a T *. */
#define CATP(base, off, T)                                                     \
    ((T *const *)(const void *)((const char *)(base) + (off)))

/* ------------------------------------------------------------------------
 * Error messages and string rules
 * --------------------------------------------------------------------- */

/* Write "@path.@name: <fmt...>" (or "@path: ..." when @name is NULL) into
 * @errmsg and return @rv. */
static int failf(char *errmsg,
                 int rv,
                 const char *path,
                 const char *name,
                 const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));

static int failf(char *errmsg,
                 int rv,
                 const char *path,
                 const char *name,
                 const char *fmt,
                 ...)
{
    char what[REMS_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (name != NULL) {
        rems_errmsgf(errmsg, "%s.%s: %s", path, name, what);
    } else {
        rems_errmsgf(errmsg, "%s: %s", path, what);
    }
    return rv;
}

#define QUOTE_SIZE 48
#define QUOTE_SHOWN 24

/* @s as a double-quoted string for messages: bytes outside printable ASCII
 * (and '"', '\\') as \xHH, cut after QUOTE_SHOWN bytes with "...". */
static const char *quote(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    size_t i;

    out[o++] = '"';
    for (i = 0; i < len && i < QUOTE_SHOWN; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 5 > QUOTE_SIZE - 5) {
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o++] = '"';
    if (i < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static bool str_eq(struct proto_str a, struct proto_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* The characters of ids (rems_id_valid(), also used for the agent id in
 * certificates), and '@' in service names when @at. */
static bool ident_char(unsigned char c, bool at)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
           c == ':' || (at && c == '@');
}

/* Well-formed UTF-8 (no overlong forms, surrogates or code points above
 * U+10FFFF) without NUL. */
static bool utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        uint32_t cp;
        size_t len;
        size_t k;

        if (c == 0) {
            return false;
        }
        if (c < 0x80) {
            i++;
            continue;
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
            return false;
        }
        if (n - i < len) {
            return false;
        }
        for (k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((len == 3 && cp < 0x800) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += len;
    }
    return true;
}

/* "host:port" with a port of 1..65535, a non-empty host (an IPv6 address
 * in brackets) and printable ASCII without spaces throughout. */
static bool addr_valid(const char *s, size_t n)
{
    size_t colon = n;
    size_t i;
    unsigned long port = 0;

    for (i = 0; i < n; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f) {
            return false;
        }
        if (s[i] == ':') {
            colon = i;
        }
    }
    if (colon == n || colon == 0 || n - colon - 1 < 1 || n - colon - 1 > 5) {
        return false;
    }
    for (i = colon + 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    if (port < 1 || port > 65535) {
        return false;
    }
    if (s[0] == '[') {
        return colon >= 3 && s[colon - 1] == ']' &&
               memchr(s + 1, '[', colon - 1) == NULL &&
               memchr(s + 1, ']', colon - 2) == NULL;
    }
    for (i = 0; i < colon; i++) {
        if (s[i] == ':' || s[i] == '[' || s[i] == ']') {
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Checks shared by encoding and decoding
 * --------------------------------------------------------------------- */

static int check_str(const struct field *f,
                     struct proto_str s,
                     const char *path,
                     char *errmsg)
{
    size_t i;

    if (s.p == NULL && s.len != 0) {
        return failf(errmsg, REMS_EINVAL, path, f->name,
                     "NULL with a length of %zu", s.len);
    }
    if (s.len == 0) {
        /* An empty optional string is an absent one. */
        if ((f->flags & F_REQ) && f->min > 0) {
            return failf(errmsg, REMS_EINVAL, path, f->name,
                         "must not be empty");
        }
        return 0;
    }
    if (s.len > f->max) {
        return failf(errmsg, REMS_EINVAL, path, f->name,
                     "%zu bytes, at most %" PRIu64 " allowed", s.len, f->max);
    }
    switch (f->kind) {
        case K_ID:
            for (i = 0; i < s.len; i++) {
                if (!ident_char((unsigned char)s.p[i], f->flags & F_AT)) {
                    return failf(errmsg, REMS_EINVAL, path, f->name,
                                 "byte %zu: only letters, digits and . _ - "
                                 ": %sare allowed",
                                 i, f->flags & F_AT ? "@ " : "");
                }
            }
            return 0;
        case K_TEXT:
            if (!utf8_valid(s.p, s.len)) {
                return failf(errmsg, REMS_EINVAL, path, f->name,
                             "must be UTF-8 text without NUL");
            }
            return 0;
        case K_ADDR:
            if (!addr_valid(s.p, s.len)) {
                return failf(errmsg, REMS_EINVAL, path, f->name,
                             "must be \"host:port\" or empty");
            }
            return 0;
        default:
            return 0;
    }
}

static int check_kv(const char *path,
                    const char *name,
                    const struct kv_def *def,
                    const struct proto_kv *kv,
                    size_t n,
                    char *errmsg)
{
    char q[QUOTE_SIZE];
    size_t i;
    size_t j;

    if (n > def->max) {
        return failf(errmsg, REMS_EINVAL, path, name,
                     "%zu entries, at most %zu allowed", n, def->max);
    }
    if (n > 0 && kv == NULL) {
        return failf(errmsg, REMS_EINVAL, path, name, "NULL with %zu entries",
                     n);
    }
    for (i = 0; i < n; i++) {
        struct proto_str k = kv[i].key;
        struct proto_str v = kv[i].value;
        if ((k.p == NULL && k.len != 0) || (v.p == NULL && v.len != 0)) {
            return failf(errmsg, REMS_EINVAL, path, name,
                         "entry %zu: NULL with a length", i);
        }
        if (k.len == 0) {
            return failf(errmsg, REMS_EINVAL, path, name,
                         "entry %zu: the key must not be empty", i);
        }
        if (k.len > def->key_max) {
            return failf(errmsg, REMS_EINVAL, path, name,
                         "entry %zu: key of %zu bytes, at most %zu allowed", i,
                         k.len, def->key_max);
        }
        if (!utf8_valid(k.p, k.len)) {
            return failf(errmsg, REMS_EINVAL, path, name,
                         "entry %zu: the key must be UTF-8 text without NUL",
                         i);
        }
        if (v.len > def->value_max) {
            return failf(errmsg, REMS_EINVAL, path, name,
                         "%s: %zu bytes, at most %zu allowed",
                         quote(q, k.p, k.len), v.len, def->value_max);
        }
        if (!utf8_valid(v.p, v.len)) {
            return failf(errmsg, REMS_EINVAL, path, name,
                         "%s: must be UTF-8 text without NUL",
                         quote(q, k.p, k.len));
        }
        for (j = 0; j < i; j++) {
            if (str_eq(kv[j].key, k)) {
                return failf(errmsg, REMS_EINVAL, path, name,
                             "key %s appears twice", quote(q, k.p, k.len));
            }
        }
    }
    return 0;
}

static int check_map(const struct field *fields,
                     size_t nf,
                     const void *base,
                     const char *path,
                     bool encoding,
                     char *errmsg);

static int check_items(const struct field *f,
                       const void *base,
                       const char *path,
                       bool encoding,
                       char *errmsg)
{
    const struct proto_service *items =
        *CATP(base, f->off, const struct proto_service);
    size_t n = *CAT(base, f->aux, size_t);
    char sub[96];
    char q[QUOTE_SIZE];
    size_t i;
    size_t j;
    int rv;

    if (n > f->max) {
        return failf(errmsg, REMS_EINVAL, path, f->name,
                     "%zu items, at most %" PRIu64 " allowed", n, f->max);
    }
    if (n > 0 && items == NULL) {
        return failf(errmsg, REMS_EINVAL, path, f->name, "NULL with %zu items",
                     n);
    }
    for (i = 0; i < n; i++) {
        snprintf(sub, sizeof sub, "%s.%s[%zu]", path, f->name, i);
        rv = check_map(service_fields, REMS_ARRAY_SIZE(service_fields),
                       &items[i], sub, encoding, errmsg);
        if (rv != 0) {
            return rv;
        }
        if (!(f->flags & F_UNIQUE)) {
            continue;
        }
        for (j = 0; j < i; j++) {
            if (str_eq(items[j].service, items[i].service)) {
                return failf(errmsg, REMS_EINVAL, sub, "service",
                             "%s is already listed at index %zu",
                             quote(q, items[i].service.p, items[i].service.len),
                             j);
            }
        }
    }
    return 0;
}

static int check_field(const struct field *f,
                       const void *base,
                       const char *path,
                       bool encoding,
                       char *errmsg)
{
    const struct enum_def *e;
    const struct proto_ack *ack;
    uint64_t u;
    int v;

    switch (f->kind) {
        case K_U64:
            u = *CAT(base, f->off, uint64_t);
            if (u < f->min) {
                return failf(errmsg, REMS_EINVAL, path, f->name,
                             "must be at least %" PRIu64, f->min);
            }
            if (u > f->max) {
                return failf(errmsg, REMS_EINVAL, path, f->name,
                             "%" PRIu64 " is above the maximum of %" PRIu64, u,
                             f->max);
            }
            return 0;
        case K_ID:
        case K_TEXT:
        case K_ADDR:
        case K_BYTES:
            return check_str(f, *CAT(base, f->off, struct proto_str), path,
                             errmsg);
        case K_ENUM:
            e = f->def;
            v = *CAT(base, f->off, int);
            if ((v > 0 && v < e->nr) ||
                (v == 0 && !encoding && (f->flags & F_OPEN))) {
                return 0;
            }
            return failf(errmsg, REMS_EINVAL, path, f->name,
                         "invalid %s value %d", e->what, v);
        case K_KV:
            return check_kv(path, f->name, f->def,
                            *CATP(base, f->off, const struct proto_kv),
                            *CAT(base, f->aux, size_t), errmsg);
        case K_ITEMS:
            return check_items(f, base, path, encoding, errmsg);
        case K_RESULT:
            ack = &((const struct proto_msg *)base)->ack;
            switch (ack->result_kind) {
                case PROTO_RESULT_NONE:
                    return 0;
                case PROTO_RESULT_TEXT: {
                    const struct field text = {.name = f->name,
                                               .kind = K_TEXT,
                                               .max = PROTO_RESULT_TEXT_MAX};
                    return check_str(&text, ack->result_text, path, errmsg);
                }
                case PROTO_RESULT_MAP:
                    return check_kv(path, f->name, f->def, ack->result,
                                    ack->n_result, errmsg);
                default:
                    return failf(errmsg, REMS_EINVAL, path, f->name,
                                 "invalid result kind %d", ack->result_kind);
            }
        default:
            /* K_BOOL and K_I32: the C type holds only valid values. */
            return 0;
    }
}

static int check_map(const struct field *fields,
                     size_t nf,
                     const void *base,
                     const char *path,
                     bool encoding,
                     char *errmsg)
{
    size_t i;
    int rv;

    for (i = 0; i < nf; i++) {
        rv = check_field(&fields[i], base, path, encoding, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static bool action_needs_service(int action)
{
    return action != PROTO_ACTION_UNKNOWN &&
           action != PROTO_ACTION_PUSH_MANIFEST &&
           action != PROTO_ACTION_DIAGNOSTICS;
}

/* Every rule of @m. REMS_EUNSUPPORTED for a welcome whose version this side
 * does not speak, REMS_EINVAL for anything else (the decoder turns it into
 * REMS_EMALFORMED). */
static int check_msg(const struct proto_msg *m, bool encoding, char *errmsg)
{
    const struct msg_def *def = &msg_defs[m->type];
    const char *path = type_names[m->type];
    const struct proto_command *c = &m->command;
    int rv;

    rv = check_map(def->fields, def->n, m, path, encoding, errmsg);
    if (rv != 0) {
        return rv;
    }
    switch (m->type) {
        case PROTO_WELCOME:
            if (m->welcome.version < PROTO_VERSION_MIN ||
                m->welcome.version > PROTO_VERSION) {
                return failf(errmsg, REMS_EUNSUPPORTED, path, "v",
                             "version %" PRIu64 " is not supported (this side "
                             "speaks %d to %d)",
                             m->welcome.version, PROTO_VERSION_MIN,
                             PROTO_VERSION);
            }
            if (m->welcome.heartbeat_interval_ms >= m->welcome.lease_ttl_ms) {
                return failf(errmsg, REMS_EINVAL, path, "heartbeat_interval_ms",
                             "must be below lease_ttl_ms (%" PRIu64 ")",
                             m->welcome.lease_ttl_ms);
            }
            return 0;
        case PROTO_COMMAND:
            if (action_needs_service(c->action) && c->service.len == 0) {
                return failf(errmsg, REMS_EINVAL, path, "service",
                             "required for action %s",
                             proto_action_name(c->action));
            }
            if (c->action == PROTO_ACTION_PUSH_MANIFEST &&
                c->manifest.len == 0) {
                return failf(errmsg, REMS_EINVAL, path, "manifest",
                             "required for action push_manifest");
            }
            if (c->action != PROTO_ACTION_PUSH_MANIFEST &&
                c->action != PROTO_ACTION_UNKNOWN && c->manifest.len != 0) {
                return failf(errmsg, REMS_EINVAL, path, "manifest",
                             "only allowed with action push_manifest");
            }
            return 0;
        default:
            return 0;
    }
}

/* ------------------------------------------------------------------------
 * Encoding
 * --------------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s != NULL ? s : "", len);
}

static void pack_kv(msgpack_packer *pk, const struct proto_kv *kv, size_t n)
{
    size_t i;

    msgpack_pack_map(pk, n);
    for (i = 0; i < n; i++) {
        pack_str(pk, kv[i].key.p, kv[i].key.len);
        pack_str(pk, kv[i].value.p, kv[i].value.len);
    }
}

/* Whether @f goes on the wire: required fields always, optional ones when
 * they hold something. */
static bool present(const struct field *f, const void *base)
{
    if (f->flags & F_REQ) {
        return true;
    }
    if (f->kind == K_ITEMS) {
        /* hello.services: present when flagged, or when not empty. */
        return *CAT(base, f->has, bool) || *CAT(base, f->aux, size_t) > 0;
    }
    if (f->flags & F_HAS) {
        return *CAT(base, f->has, bool);
    }
    switch (f->kind) {
        case K_ID:
        case K_TEXT:
        case K_ADDR:
        case K_BYTES:
            return CAT(base, f->off, struct proto_str)->len > 0;
        case K_KV:
            return *CAT(base, f->aux, size_t) > 0;
        case K_RESULT:
            return ((const struct proto_msg *)base)->ack.result_kind !=
                   PROTO_RESULT_NONE;
        default:
            return true;
    }
}

static void pack_map(msgpack_packer *pk,
                     const struct field *fields,
                     size_t nf,
                     const void *base,
                     const char *type);

static void
pack_field(msgpack_packer *pk, const struct field *f, const void *base)
{
    const struct proto_str *s;
    const struct enum_def *e;
    const struct proto_ack *ack;
    const struct proto_service *items;
    size_t n;
    size_t i;

    switch (f->kind) {
        case K_U64:
            msgpack_pack_uint64(pk, *CAT(base, f->off, uint64_t));
            break;
        case K_BOOL:
            if (*CAT(base, f->off, bool)) {
                msgpack_pack_true(pk);
            } else {
                msgpack_pack_false(pk);
            }
            break;
        case K_I32:
            msgpack_pack_int32(pk, *CAT(base, f->off, int32_t));
            break;
        case K_ID:
        case K_TEXT:
        case K_ADDR:
            s = CAT(base, f->off, struct proto_str);
            pack_str(pk, s->p, s->len);
            break;
        case K_BYTES:
            s = CAT(base, f->off, struct proto_str);
            msgpack_pack_bin(pk, s->len);
            msgpack_pack_bin_body(pk, s->p != NULL ? s->p : "", s->len);
            break;
        case K_ENUM:
            e = f->def;
            pack_str(pk, e->names[*CAT(base, f->off, int)],
                     strlen(e->names[*CAT(base, f->off, int)]));
            break;
        case K_KV:
            pack_kv(pk, *CATP(base, f->off, const struct proto_kv),
                    *CAT(base, f->aux, size_t));
            break;
        case K_ITEMS:
            items = *CATP(base, f->off, const struct proto_service);
            n = *CAT(base, f->aux, size_t);
            msgpack_pack_array(pk, n);
            for (i = 0; i < n; i++) {
                pack_map(pk, service_fields, REMS_ARRAY_SIZE(service_fields),
                         &items[i], NULL);
            }
            break;
        case K_RESULT:
            ack = &((const struct proto_msg *)base)->ack;
            if (ack->result_kind == PROTO_RESULT_TEXT) {
                pack_str(pk, ack->result_text.p, ack->result_text.len);
            } else {
                pack_kv(pk, ack->result, ack->n_result);
            }
            break;
        default:
            REMS_ASSERT(0);
    }
}

/* Pack the present fields of @base as a map, preceded by "t": @type unless
 * @type is NULL. */
static void pack_map(msgpack_packer *pk,
                     const struct field *fields,
                     size_t nf,
                     const void *base,
                     const char *type)
{
    size_t count = type != NULL ? 1 : 0;
    size_t i;

    for (i = 0; i < nf; i++) {
        count += present(&fields[i], base) ? 1 : 0;
    }
    msgpack_pack_map(pk, count);
    if (type != NULL) {
        pack_str(pk, "t", 1);
        pack_str(pk, type, strlen(type));
    }
    for (i = 0; i < nf; i++) {
        if (present(&fields[i], base)) {
            pack_str(pk, fields[i].name, strlen(fields[i].name));
            pack_field(pk, &fields[i], base);
        }
    }
}

static void put_be32(char *p, uint32_t v)
{
    p[0] = (char)(unsigned char)(v >> 24);
    p[1] = (char)(unsigned char)(v >> 16);
    p[2] = (char)(unsigned char)(v >> 8);
    p[3] = (char)(unsigned char)v;
}

int proto_msg_encode(const struct proto_msg *m,
                     size_t max_frame,
                     struct rems_buf *out,
                     char *errmsg)
{
    static const char zero_header[PROTO_HEADER_SIZE] = {0};
    const struct msg_def *def;
    msgpack_packer pk;
    size_t start;
    size_t payload;
    int rv;

    PRE(m != NULL && out != NULL && errmsg != NULL);
    PRE(max_frame <= PROTO_FRAME_MAX_LIMIT);
    if (max_frame == 0) {
        max_frame = PROTO_FRAME_MAX_DEFAULT;
    }
    if (m->type <= PROTO_TYPE_NONE || m->type >= PROTO_TYPE_NR) {
        rems_errmsgf(errmsg, "t: invalid message type %d", m->type);
        rv = REMS_EINVAL;
        goto err;
    }
    if (check_msg(m, true, errmsg) != 0) {
        rv = REMS_EINVAL;
        goto err;
    }
    if (out->failed) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    start = out->len;
    def = &msg_defs[m->type];
    msgpack_packer_init(&pk, out, rems_buf_write);
    /* The header is written once the payload's length is known. */
    rems_buf_append(out, zero_header, sizeof zero_header);
    pack_map(&pk, def->fields, def->n, m, type_names[m->type]);
    if (out->failed) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_append;
    }
    payload = out->len - start - PROTO_HEADER_SIZE;
    if (payload > max_frame) {
        rems_errmsgf(errmsg,
                     "%s: %zu bytes encoded, at most %zu allowed in a frame",
                     type_names[m->type], payload, max_frame);
        rv = REMS_ETOOBIG;
        goto err_after_append;
    }
    put_be32(out->data + start, (uint32_t)payload);
    return 0;

err_after_append:
    /* A failed rems_buf_append() leaves data as it was: undo the length and
     * the failure, so that @out is as the caller gave it. */
    out->len = start;
    out->failed = false;
    if (out->data != NULL) {
        out->data[start] = '\0';
    }
err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * Decoding
 * --------------------------------------------------------------------- */

/* Allocate a zeroed array owned by @m (released by proto_msg_close()). */
static void *msg_alloc(struct proto_msg *m, size_t n, size_t size)
{
    size_t i;

    for (i = 0; i < REMS_ARRAY_SIZE(m->owned); i++) {
        if (m->owned[i] == NULL) {
            m->owned[i] = rems_calloc(n, size);
            return m->owned[i];
        }
    }
    /* No message has more arrays than m->owned has slots. */
    REMS_ASSERT(0);
    return NULL;
}

static size_t remaining(const struct mpread *r)
{
    return (size_t)(r->end - r->p);
}

static int read_kv(struct mpread *r,
                   const char *path,
                   const char *name,
                   const struct kv_def *def,
                   struct proto_msg *m,
                   const struct proto_kv **out,
                   size_t *n_out,
                   char *errmsg)
{
    struct proto_kv *kv = NULL;
    uint32_t n;
    uint32_t i;

    if (mpread_map(r, &n) != 0) {
        return failf(errmsg, REMS_EMALFORMED, path, name,
                     "must be a map of strings");
    }
    if (n > def->max) {
        return failf(errmsg, REMS_EMALFORMED, path, name,
                     "%" PRIu32 " entries, at most %zu allowed", n, def->max);
    }
    /* Each entry takes at least two bytes: refuse before allocating. */
    if (n > remaining(r) / 2) {
        return failf(errmsg, REMS_EMALFORMED, path, name, "truncated");
    }
    if (n > 0) {
        kv = msg_alloc(m, n, sizeof *kv);
        if (kv == NULL) {
            rems_errmsg_oom(errmsg);
            return REMS_ENOMEM;
        }
    }
    for (i = 0; i < n; i++) {
        if (mpread_str(r, &kv[i].key.p, &kv[i].key.len) != 0) {
            return failf(errmsg, REMS_EMALFORMED, path, name,
                         "entry %" PRIu32 ": the key must be a string", i);
        }
        if (mpread_str(r, &kv[i].value.p, &kv[i].value.len) != 0) {
            return failf(errmsg, REMS_EMALFORMED, path, name,
                         "entry %" PRIu32 ": the value must be a string", i);
        }
    }
    *out = kv;
    *n_out = n;
    return 0;
}

static int decode_map(struct mpread *r,
                      const char *path,
                      const struct field *fields,
                      size_t nf,
                      void *base,
                      bool top,
                      struct proto_msg *m,
                      char *errmsg);

static int read_items(struct mpread *r,
                      const char *path,
                      const struct field *f,
                      void *base,
                      struct proto_msg *m,
                      char *errmsg)
{
    struct proto_service *items = NULL;
    char sub[96];
    uint32_t n;
    uint32_t i;
    int rv;

    if (mpread_array(r, &n) != 0) {
        return failf(errmsg, REMS_EMALFORMED, path, f->name,
                     "must be an array");
    }
    if (n > f->max) {
        return failf(errmsg, REMS_EMALFORMED, path, f->name,
                     "%" PRIu32 " items, at most %" PRIu64 " allowed", n,
                     f->max);
    }
    if (n > remaining(r)) {
        return failf(errmsg, REMS_EMALFORMED, path, f->name, "truncated");
    }
    if (n > 0) {
        items = msg_alloc(m, n, sizeof *items);
        if (items == NULL) {
            rems_errmsg_oom(errmsg);
            return REMS_ENOMEM;
        }
    }
    for (i = 0; i < n; i++) {
        snprintf(sub, sizeof sub, "%s.%s[%" PRIu32 "]", path, f->name, i);
        rv = decode_map(r, sub, service_fields, REMS_ARRAY_SIZE(service_fields),
                        &items[i], false, m, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    *AT(base, f->off, const struct proto_service *) = items;
    *AT(base, f->aux, size_t) = n;
    return 0;
}

static int read_field(struct mpread *r,
                      const char *path,
                      const struct field *f,
                      void *base,
                      struct proto_msg *m,
                      char *errmsg)
{
    const struct enum_def *e;
    struct proto_str *s;
    struct proto_ack *ack;
    struct proto_str name;
    const void *bytes;
    char q[QUOTE_SIZE];
    int64_t i64;
    int v;

    switch (f->kind) {
        case K_U64:
            if (mpread_u64(r, AT(base, f->off, uint64_t)) != 0) {
                return failf(errmsg, REMS_EMALFORMED, path, f->name,
                             "must be an unsigned integer");
            }
            return 0;
        case K_BOOL:
            if (mpread_bool(r, AT(base, f->off, bool)) != 0) {
                return failf(errmsg, REMS_EMALFORMED, path, f->name,
                             "must be a boolean");
            }
            return 0;
        case K_I32:
            if (mpread_i64(r, &i64) != 0) {
                return failf(errmsg, REMS_EMALFORMED, path, f->name,
                             "must be an integer");
            }
            if (i64 < INT32_MIN || i64 > INT32_MAX) {
                return failf(errmsg, REMS_EMALFORMED, path, f->name,
                             "%" PRId64 " does not fit in 32 bits", i64);
            }
            *AT(base, f->off, int32_t) = (int32_t)i64;
            return 0;
        case K_ID:
        case K_TEXT:
        case K_ADDR:
            s = AT(base, f->off, struct proto_str);
            if (mpread_str(r, &s->p, &s->len) != 0) {
                return failf(errmsg, REMS_EMALFORMED, path, f->name,
                             "must be a string");
            }
            return 0;
        case K_BYTES:
            s = AT(base, f->off, struct proto_str);
            if (mpread_bytes(r, &bytes, &s->len) != 0) {
                return failf(errmsg, REMS_EMALFORMED, path, f->name,
                             "must be bin or a string");
            }
            s->p = bytes;
            return 0;
        case K_ENUM:
            e = f->def;
            /* Only open enums keep their wire name. */
            s = (f->flags & F_OPEN) ? AT(base, f->aux, struct proto_str)
                                    : &name;
            if (mpread_str(r, &s->p, &s->len) != 0) {
                return failf(errmsg, REMS_EMALFORMED, path, f->name,
                             "must be a string");
            }
            for (v = 1; v < e->nr; v++) {
                if (mpread_streq(s->p, s->len, e->names[v])) {
                    *AT(base, f->off, int) = v;
                    return 0;
                }
            }
            if (f->flags & F_OPEN && s->len > 0) {
                *AT(base, f->off, int) = 0;
                return 0;
            }
            return failf(errmsg, REMS_EMALFORMED, path, f->name,
                         "unknown %s %s", e->what, quote(q, s->p, s->len));
        case K_KV:
            return read_kv(r, path, f->name, f->def, m,
                           AT(base, f->off, const struct proto_kv *),
                           AT(base, f->aux, size_t), errmsg);
        case K_ITEMS:
            return read_items(r, path, f, base, m, errmsg);
        case K_RESULT:
            ack = &((struct proto_msg *)base)->ack;
            if (mpread_str(r, &ack->result_text.p, &ack->result_text.len) ==
                0) {
                ack->result_kind = PROTO_RESULT_TEXT;
                return 0;
            }
            if (r->p < r->end &&
                ((*r->p & 0xf0) == 0x80 || *r->p == 0xde || *r->p == 0xdf)) {
                ack->result_kind = PROTO_RESULT_MAP;
                return read_kv(r, path, f->name, f->def, m, &ack->result,
                               &ack->n_result, errmsg);
            }
            return failf(errmsg, REMS_EMALFORMED, path, f->name,
                         "must be a string or a map of strings");
        default:
            REMS_ASSERT(0);
            return REMS_EMALFORMED;
    }
}

/* Give every string field of @base the value "" (absent strings are never
 * NULL). */
static void set_defaults(const struct field *fields, size_t nf, void *base)
{
    size_t i;

    for (i = 0; i < nf; i++) {
        switch (fields[i].kind) {
            case K_ID:
            case K_TEXT:
            case K_ADDR:
            case K_BYTES:
                *AT(base, fields[i].off, struct proto_str) = PROTO_STR("");
                break;
            case K_ENUM:
                if (fields[i].flags & F_OPEN) {
                    *AT(base, fields[i].aux, struct proto_str) = PROTO_STR("");
                }
                break;
            case K_RESULT:
                ((struct proto_msg *)base)->ack.result_text = PROTO_STR("");
                break;
            default:
                break;
        }
    }
}

/* Read one map into @base by @fields. @top: the message itself, where "t"
 * is expected (and skipped: find_type() read it). */
static int decode_map(struct mpread *r,
                      const char *path,
                      const struct field *fields,
                      size_t nf,
                      void *base,
                      bool top,
                      struct proto_msg *m,
                      char *errmsg)
{
    char q[QUOTE_SIZE];
    uint32_t seen = 0;
    bool seen_t = false;
    uint32_t n;
    uint32_t i;
    size_t j;
    int rv;

    REMS_ASSERT(nf <= 32);
    set_defaults(fields, nf, base);
    if (mpread_map(r, &n) != 0) {
        return failf(errmsg, REMS_EMALFORMED, path, NULL, "must be a map");
    }
    for (i = 0; i < n; i++) {
        const char *k;
        size_t kl;

        if (mpread_str(r, &k, &kl) != 0) {
            return failf(errmsg, REMS_EMALFORMED, path, NULL,
                         "keys must be strings");
        }
        for (j = 0; j < nf; j++) {
            if (mpread_streq(k, kl, fields[j].name)) {
                break;
            }
        }
        if (j == nf) {
            if (top && mpread_streq(k, kl, "t")) {
                if (seen_t) {
                    return failf(errmsg, REMS_EMALFORMED, "t", NULL,
                                 "appears twice");
                }
                seen_t = true;
            }
            /* Unknown fields are skipped: a peer may add fields within a
             * version. */
            if (mpread_skip(r) != 0) {
                return failf(errmsg, REMS_EMALFORMED, path, NULL,
                             "value of %s is truncated or malformed",
                             quote(q, k, kl));
            }
            continue;
        }
        if (seen & (1u << j)) {
            return failf(errmsg, REMS_EMALFORMED, path, fields[j].name,
                         "appears twice");
        }
        seen |= 1u << j;
        if (!(fields[j].flags & F_REQ) && mpread_nil(r)) {
            continue; /* nil is the same as absent. */
        }
        rv = read_field(r, path, &fields[j], base, m, errmsg);
        if (rv != 0) {
            return rv;
        }
        if (fields[j].flags & F_HAS) {
            *AT(base, fields[j].has, bool) = true;
        }
    }
    for (j = 0; j < nf; j++) {
        if ((fields[j].flags & F_REQ) && !(seen & (1u << j))) {
            return failf(errmsg, REMS_EMALFORMED, path, fields[j].name,
                         "required");
        }
    }
    return 0;
}

/* First pass: find "t" and the message type. Stops scanning at a value it
 * cannot skip, so that the second pass names the field that is broken. */
static int
find_type(const void *buf, size_t len, struct proto_msg *m, char *errmsg)
{
    struct mpread r;
    char q[QUOTE_SIZE];
    const char *t = NULL;
    size_t tl = 0;
    const char *k = NULL;
    size_t kl = 0;
    bool broken = false;
    uint32_t n;
    uint32_t i;
    int type;

    mpread_init(&r, buf, len);
    if (mpread_map(&r, &n) != 0) {
        return failf(errmsg, REMS_EMALFORMED, "frame", NULL, "must be a map");
    }
    for (i = 0; i < n && !broken; i++) {
        if (mpread_str(&r, &k, &kl) != 0) {
            return failf(errmsg, REMS_EMALFORMED, "frame", NULL,
                         "keys must be strings");
        }
        if (mpread_streq(k, kl, "t")) {
            if (t != NULL) {
                return failf(errmsg, REMS_EMALFORMED, "t", NULL,
                             "appears twice");
            }
            if (mpread_str(&r, &t, &tl) != 0) {
                return failf(errmsg, REMS_EMALFORMED, "t", NULL,
                             "must be a string");
            }
        } else if (mpread_skip(&r) != 0) {
            broken = true;
        }
    }
    if (t == NULL) {
        if (broken) {
            return failf(errmsg, REMS_EMALFORMED, "frame", NULL,
                         "value of %s is truncated or malformed",
                         quote(q, k, kl));
        }
        if (!mpread_done(&r)) {
            return failf(errmsg, REMS_EMALFORMED, "frame", NULL,
                         "trailing bytes after the map");
        }
        return failf(errmsg, REMS_EMALFORMED, "t", NULL, "required");
    }
    m->type_name.p = t;
    m->type_name.len = tl;
    for (type = PROTO_TYPE_NONE + 1; type < PROTO_TYPE_NR; type++) {
        if (mpread_streq(t, tl, type_names[type])) {
            m->type = type;
            return 0;
        }
    }
    rems_errmsgf(errmsg, "t: unknown message type %s", quote(q, t, tl));
    return REMS_EUNSUPPORTED;
}

static void msg_release(struct proto_msg *m)
{
    size_t i;

    for (i = 0; i < REMS_ARRAY_SIZE(m->owned); i++) {
        rems_free(m->owned[i]);
    }
    memset(m, 0, sizeof *m);
}

int proto_msg_decode(const void *buf,
                     size_t len,
                     struct proto_msg *m,
                     char *errmsg)
{
    const struct msg_def *def;
    const char *path;
    struct mpread r;
    struct proto_str type_name;
    int type;
    int rv;

    PRE(m != NULL && errmsg != NULL && (buf != NULL || len == 0));
    if (buf == NULL) {
        buf = ""; /* No arithmetic on a null pointer, even + 0. */
    }
    memset(m, 0, sizeof *m);
    m->type_name = PROTO_STR("");
    rv = find_type(buf, len, m, errmsg);
    if (rv != 0) {
        goto err;
    }
    def = &msg_defs[m->type];
    path = type_names[m->type];
    mpread_init(&r, buf, len);
    rv = decode_map(&r, path, def->fields, def->n, m, true, m, errmsg);
    if (rv == 0 && !mpread_done(&r)) {
        rv = failf(errmsg, REMS_EMALFORMED, path, NULL,
                   "trailing bytes after the map");
    }
    if (rv != 0) {
        goto err_after_decode;
    }
    rv = check_msg(m, false, errmsg);
    if (rv != 0) {
        if (rv != REMS_EUNSUPPORTED) {
            rv = REMS_EMALFORMED;
        }
        goto err_after_decode;
    }
    return 0;

err_after_decode:
    /* Keep what tells the caller which error frame to answer with. */
    type = m->type;
    type_name = m->type_name;
    msg_release(m);
    m->type = type;
    m->type_name = type_name;
err:
    POST(rv != 0);
    return rv;
}

void proto_msg_close(struct proto_msg *m)
{
    if (m == NULL) {
        return;
    }
    msg_release(m);
}

int proto_error_code_for(int rv, int type)
{
    switch (rv) {
        case REMS_EMALFORMED:
            return PROTO_ERR_MALFORMED;
        case REMS_EUNSUPPORTED:
            return type == PROTO_TYPE_NONE ? PROTO_ERR_UNKNOWN_TYPE
                                           : PROTO_ERR_UNSUPPORTED_VERSION;
        case REMS_ETOOBIG:
            return PROTO_ERR_TOO_BIG;
        default:
            return PROTO_ERR_INTERNAL;
    }
}

int proto_version_negotiate(uint64_t offered, uint64_t *version, char *errmsg)
{
    PRE(version != NULL && errmsg != NULL);
    if (offered < PROTO_VERSION_MIN) {
        rems_errmsgf(errmsg,
                     "hello.v: version %" PRIu64 " is not supported (this "
                     "node speaks %d to %d)",
                     offered, PROTO_VERSION_MIN, PROTO_VERSION);
        return REMS_EUNSUPPORTED;
    }
    *version = offered < PROTO_VERSION ? offered : PROTO_VERSION;
    return 0;
}

/* ------------------------------------------------------------------------
 * Frame reader
 * --------------------------------------------------------------------- */

static const unsigned char no_bytes[1];

void proto_reader_init(struct proto_reader *r, size_t max_frame)
{
    PRE(r != NULL);
    PRE(max_frame <= PROTO_FRAME_MAX_LIMIT);
    memset(r, 0, sizeof *r);
    r->max_frame = max_frame != 0 ? max_frame : PROTO_FRAME_MAX_DEFAULT;
    r->chunk = no_bytes;
}

void proto_reader_close(struct proto_reader *r)
{
    if (r == NULL) {
        return;
    }
    rems_free(r->buf[0]);
    rems_free(r->buf[1]);
    memset(r, 0, sizeof *r);
}

/* True while a split frame's payload is being gathered in buf[fill]. */
static bool gathering(const struct proto_reader *r)
{
    return r->hdr_len == PROTO_HEADER_SIZE;
}

void proto_reader_feed(struct proto_reader *r, const void *data, size_t len)
{
    int i;

    PRE(r != NULL && (data != NULL || len == 0));
    PRE(r->error != 0 || r->chunk_off == r->chunk_len);
    /* Never NULL: no arithmetic on a null pointer, even + 0. */
    r->chunk = data != NULL ? data : no_bytes;
    r->chunk_len = len;
    r->chunk_off = 0;
    for (i = 0; i < 2; i++) {
        r->locked[i] = false;
        if (r->cap[i] > READER_KEEP && !(gathering(r) && r->fill == i)) {
            rems_free(r->buf[i]);
            r->buf[i] = NULL;
            r->cap[i] = 0;
        }
    }
}

static int reader_fail(struct proto_reader *r, int rv, char *errmsg)
{
    r->error = rv;
    memcpy(r->errmsg, errmsg, REMS_ERRMSG_SIZE);
    return rv;
}

/* The header in @hdr announces @n payload bytes: refuse a bad length, or
 * make room for the payload in a buffer no frame was returned from since
 * the last feed. */
static int reader_start(struct proto_reader *r,
                        const unsigned char *hdr,
                        bool split,
                        size_t *n_out,
                        char *errmsg)
{
    size_t n = ((size_t)hdr[0] << 24) | ((size_t)hdr[1] << 16) |
               ((size_t)hdr[2] << 8) | (size_t)hdr[3];
    int i;

    if (n == 0) {
        rems_errmsgf(errmsg, "frame: a length of 0 is not allowed");
        return reader_fail(r, REMS_EMALFORMED, errmsg);
    }
    if (n > r->max_frame) {
        rems_errmsgf(errmsg, "frame: %zu bytes announced, at most %zu allowed",
                     n, r->max_frame);
        return reader_fail(r, REMS_ETOOBIG, errmsg);
    }
    *n_out = n;
    if (!split) {
        return 0;
    }
    /* At most one split frame completes per chunk, so one buffer is free. */
    i = r->locked[0] ? 1 : 0;
    REMS_ASSERT(!r->locked[i]);
    if (r->cap[i] < n) {
        rems_free(r->buf[i]);
        r->cap[i] = 0;
        r->buf[i] = rems_malloc(n);
        if (r->buf[i] == NULL) {
            rems_errmsg_oom(errmsg);
            return reader_fail(r, REMS_ENOMEM, errmsg);
        }
        r->cap[i] = n;
    }
    r->fill = i;
    r->need = n;
    r->have = 0;
    return 0;
}

int proto_reader_next(struct proto_reader *r,
                      const void **frame,
                      size_t *len,
                      char *errmsg)
{
    const unsigned char *p;
    size_t avail;
    size_t n;
    size_t k;
    int rv;

    PRE(r != NULL && frame != NULL && len != NULL && errmsg != NULL);
    if (r->error != 0) {
        memcpy(errmsg, r->errmsg, REMS_ERRMSG_SIZE);
        return r->error;
    }
    p = r->chunk + r->chunk_off;
    avail = r->chunk_len - r->chunk_off;

    if (r->hdr_len == 0 && avail >= PROTO_HEADER_SIZE) {
        /* A frame starts in this chunk: return it in place if it is whole. */
        rv = reader_start(r, p, false, &n, errmsg);
        if (rv != 0) {
            return rv;
        }
        if (avail - PROTO_HEADER_SIZE >= n) {
            r->chunk_off += PROTO_HEADER_SIZE + n;
            *frame = p + PROTO_HEADER_SIZE;
            *len = n;
            return 0;
        }
    }
    if (r->hdr_len < PROTO_HEADER_SIZE) {
        /* Gather the header of a split frame in hdr. */
        k = PROTO_HEADER_SIZE - r->hdr_len;
        k = k < avail ? k : avail;
        if (k > 0) {
            memcpy(r->hdr + r->hdr_len, p, k);
        }
        r->hdr_len += k;
        r->chunk_off += k;
        p += k;
        avail -= k;
        if (r->hdr_len < PROTO_HEADER_SIZE) {
            *frame = NULL;
            *len = 0;
            return 0;
        }
        rv = reader_start(r, r->hdr, true, &n, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    /* Gather the payload of a split frame in buf[fill]. */
    k = r->need - r->have;
    k = k < avail ? k : avail;
    if (k > 0) {
        memcpy(r->buf[r->fill] + r->have, p, k);
    }
    r->have += k;
    r->chunk_off += k;
    if (r->have < r->need) {
        *frame = NULL;
        *len = 0;
        return 0;
    }
    r->locked[r->fill] = true;
    *frame = r->buf[r->fill];
    *len = r->need;
    r->hdr_len = 0;
    r->need = 0;
    r->have = 0;
    return 0;
}

size_t proto_reader_pending(const struct proto_reader *r)
{
    PRE(r != NULL);
    return r->hdr_len + r->have;
}
