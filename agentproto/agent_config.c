/* agentproto/agent_config.c: rems-agent's configuration from a YAML file
 * and the command line.
 *
 * Every key is described once, in the keys[] table: its section (tls,
 * reconnect, dead_man, outbox, or none), its name, its type and, for
 * integers, its range. Each error is built from the same table by
 * key_rule(), so a key is explained the same way wherever it is checked:
 * "<path>:<line>: <section>.<key>: <rule>".
 *
 * The file is read into memory (rems_malloc, at most AGENT_FILE_MAX bytes)
 * and parsed with libyaml's document API, which keeps the position of
 * every node, so each error names its line. libyaml allocates with its own
 * allocator; the tree lives only while agent_config_load_file() runs. The
 * walk of the keys goes down a fixed depth; the services are converted to
 * JSON by a walk limited to JSON_DEPTH_MAX levels and JSON_TEXT_MAX bytes,
 * so anchors and aliases, even recursive ones, cannot make it loop or
 * explode.
 *
 * Each service item becomes one JSON object text that
 * sup_spec_parse_json() (agentproto/supervisor.h) parses: its messages are
 * kept whole, after the file, line and "services[i]" of the item.
 *
 * agent_config_load_file() works on a copy of the caller's struct and
 * copies it back only on success. agent_config_validate() checks the rules
 * that span several keys once everything is loaded. */
#include "agentproto/agent_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "agentproto/supervisor.h"
#include "agentproto/tls.h"
#include "common/assert.h"
#include "common/file.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/util.h"

/* A configuration file is a few kilobytes; refuse anything huge before
 * handing it to the parser. */
#define AGENT_FILE_MAX (1024 * 1024)

/* Limits of the YAML to JSON conversion. */
#define JSON_DEPTH_MAX 32
#define JSON_TEXT_MAX (1024 * 1024)

/* A key or a path in a message is printed as at most this many bytes. */
#define KEY_PRINT_MAX 64

/* ------------------------------------------------------------------------
 * The keys
 * ------------------------------------------------------------------------ */

enum key_id {
    KEY_ID,
    KEY_ENDPOINTS,
    KEY_TLS,
    KEY_TLS_CERT,
    KEY_TLS_KEY,
    KEY_TLS_CA,
    KEY_TLS_CRL,
    KEY_TLS_SERVER_NAME,
    KEY_DATA_DIR,
    KEY_LABELS,
    KEY_HEARTBEAT_INTERVAL_MS,
    KEY_RECONNECT,
    KEY_RECONNECT_INITIAL_MS,
    KEY_RECONNECT_MAX_MS,
    KEY_CONNECT_TIMEOUT_MS,
    KEY_DEAD_MAN,
    KEY_DEAD_MAN_TIMEOUT_MS,
    KEY_OUTBOX,
    KEY_OUTBOX_MAX_REPORTS,
    KEY_EXECUTED_IDS_KEPT,
    KEY_MAX_FRAME_BYTES,
    KEY_LOG_LEVEL,
    KEY_SERVICES,
    KEY_NR
};

enum key_type {
    TYPE_ID,        /* An agent id: rems_id_valid(). */
    TYPE_INT,       /* Decimal digits only, within [min, max]. */
    TYPE_INT0,      /* 0 (meaning zero_means), or within [min, max]. */
    TYPE_PATH,      /* Non-empty, shorter than AGENT_CONFIG_PATH_SIZE. */
    TYPE_OPT_PATH,  /* A path, or null / empty for none. */
    TYPE_HOST,      /* A DNS name or IP address, or null / empty. */
    TYPE_LOG_LEVEL, /* debug|info|warn|error. */
    TYPE_ENDPOINTS, /* A list of "host:port". */
    TYPE_LABELS,    /* A mapping of names to strings. */
    TYPE_SERVICES,  /* A list of service mappings. */
    TYPE_SECTION    /* A mapping of the keys whose section is this key. */
};

struct key_def {
    enum key_id section; /* KEY_NR: at the root. */
    const char *name;
    enum key_type type;
    uint64_t min;           /* TYPE_INT, TYPE_INT0. */
    uint64_t max;           /* TYPE_INT, TYPE_INT0. */
    const char *zero_means; /* TYPE_INT0. */
    size_t offset;          /* Where the field is in struct agent_config. */
    size_t size;            /* String fields: their size. */
};

#define ROOT KEY_NR
#define F(field)                                                               \
    offsetof(struct agent_config, field),                                      \
        sizeof(((struct agent_config *)0)->field)
#define NOF 0, 0

static const struct key_def keys[KEY_NR] = {
    [KEY_ID] = {ROOT, "id", TYPE_ID, 0, 0, NULL, F(id)},
    [KEY_ENDPOINTS] = {ROOT, "endpoints", TYPE_ENDPOINTS, 0, 0, NULL, NOF},
    [KEY_TLS] = {ROOT, "tls", TYPE_SECTION, 0, 0, NULL, NOF},
    [KEY_TLS_CERT] = {KEY_TLS, "cert", TYPE_PATH, 0, 0, NULL, F(tls_cert)},
    [KEY_TLS_KEY] = {KEY_TLS, "key", TYPE_PATH, 0, 0, NULL, F(tls_key)},
    [KEY_TLS_CA] = {KEY_TLS, "ca", TYPE_PATH, 0, 0, NULL, F(tls_ca)},
    [KEY_TLS_CRL] = {KEY_TLS, "crl", TYPE_OPT_PATH, 0, 0, NULL, F(tls_crl)},
    [KEY_TLS_SERVER_NAME] = {KEY_TLS, "server_name", TYPE_HOST, 0, 0, NULL,
                             F(tls_server_name)},
    [KEY_DATA_DIR] = {ROOT, "data_dir", TYPE_PATH, 0, 0, NULL, F(data_dir)},
    [KEY_LABELS] = {ROOT, "labels", TYPE_LABELS, 0, 0, NULL, NOF},
    [KEY_HEARTBEAT_INTERVAL_MS] = {ROOT, "heartbeat_interval_ms", TYPE_INT0, 10,
                                   600000, "the node's interval",
                                   F(heartbeat_interval_ms)},
    [KEY_RECONNECT] = {ROOT, "reconnect", TYPE_SECTION, 0, 0, NULL, NOF},
    [KEY_RECONNECT_INITIAL_MS] = {KEY_RECONNECT, "initial_ms", TYPE_INT, 10,
                                  600000, NULL, F(reconnect_initial_ms)},
    [KEY_RECONNECT_MAX_MS] = {KEY_RECONNECT, "max_ms", TYPE_INT, 10, 3600000,
                              NULL, F(reconnect_max_ms)},
    [KEY_CONNECT_TIMEOUT_MS] = {KEY_RECONNECT, "connect_timeout_ms", TYPE_INT,
                                100, 600000, NULL, F(connect_timeout_ms)},
    [KEY_DEAD_MAN] = {ROOT, "dead_man", TYPE_SECTION, 0, 0, NULL, NOF},
    [KEY_DEAD_MAN_TIMEOUT_MS] = {KEY_DEAD_MAN, "timeout_ms", TYPE_INT0, 100,
                                 86400000, "off", F(dead_man_timeout_ms)},
    [KEY_OUTBOX] = {ROOT, "outbox", TYPE_SECTION, 0, 0, NULL, NOF},
    [KEY_OUTBOX_MAX_REPORTS] = {KEY_OUTBOX, "max_reports", TYPE_INT, 1, 1000000,
                                NULL, F(outbox_max_reports)},
    [KEY_EXECUTED_IDS_KEPT] = {ROOT, "executed_ids_kept", TYPE_INT, 1, 1000000,
                               NULL, F(executed_ids_kept)},
    [KEY_MAX_FRAME_BYTES] = {ROOT, "max_frame_bytes", TYPE_INT, 4096, 67108864,
                             NULL, F(max_frame_bytes)},
    [KEY_LOG_LEVEL] = {ROOT, "log_level", TYPE_LOG_LEVEL, 0, 0, NULL,
                       F(log_level)},
    [KEY_SERVICES] = {ROOT, "services", TYPE_SERVICES, 0, 0, NULL, NOF},
};

#undef ROOT
#undef F
#undef NOF

/* "section.name" or "name" into @out (64 bytes). */
static const char *key_name(enum key_id id, char *out)
{
    const struct key_def *k = &keys[id];

    if (k->section == KEY_NR) {
        snprintf(out, 64, "%s", k->name);
    } else {
        snprintf(out, 64, "%s.%s", keys[k->section].name, k->name);
    }
    return out;
}

/* Write into @rule (REMS_ERRMSG_SIZE bytes) what a value of key @id must
 * look like: the text after "<key>: " in every error about a bad value. */
static void key_rule(enum key_id id, char *rule)
{
    const struct key_def *k = &keys[id];
    size_t used;
    size_t i;

    switch (k->type) {
        case TYPE_ID:
            rems_errmsgf(rule,
                         "must be 1 to %d characters of "
                         "[A-Za-z0-9_.:-]",
                         PROTO_ID_MAX);
            break;
        case TYPE_INT:
            rems_errmsgf(rule,
                         "must be an integer between %" PRIu64 " and %" PRIu64,
                         k->min, k->max);
            break;
        case TYPE_INT0:
            rems_errmsgf(rule,
                         "must be 0 (%s) or an integer between %" PRIu64
                         " and %" PRIu64,
                         k->zero_means, k->min, k->max);
            break;
        case TYPE_PATH:
            rems_errmsgf(rule, "must be a non-empty path shorter than %d bytes",
                         AGENT_CONFIG_PATH_SIZE);
            break;
        case TYPE_OPT_PATH:
            rems_errmsgf(rule, "must be a path shorter than %d bytes",
                         AGENT_CONFIG_PATH_SIZE);
            break;
        case TYPE_HOST:
            rems_errmsgf(rule, "must be a DNS name or an IP address");
            break;
        case TYPE_LOG_LEVEL:
            rems_errmsgf(rule, "must be one of debug, info, warn, error");
            break;
        case TYPE_ENDPOINTS:
            rems_errmsgf(rule, "must be a list of 1 to %d endpoints host:port",
                         AGENT_CONFIG_MAX_ENDPOINTS);
            break;
        case TYPE_LABELS:
            rems_errmsgf(rule, "must be a mapping of label names to strings");
            break;
        case TYPE_SERVICES:
            rems_errmsgf(rule, "must be a list of services");
            break;
        case TYPE_SECTION:
            rems_errmsgf(rule, "must be a mapping with the keys");
            used = strlen(rule);
            for (i = 0; i < KEY_NR; i++) {
                if (keys[i].section != id || used >= REMS_ERRMSG_SIZE) {
                    continue;
                }
                used += (size_t)snprintf(rule + used, REMS_ERRMSG_SIZE - used,
                                         " %s", keys[i].name);
            }
            break;
    }
}

static uint64_t *int_field(struct agent_config *c, enum key_id id)
{
    PRE(keys[id].type == TYPE_INT || keys[id].type == TYPE_INT0);
    return (uint64_t *)(void *)((char *)c + keys[id].offset);
}

static const uint64_t *int_field_const(const struct agent_config *c,
                                       enum key_id id)
{
    PRE(keys[id].type == TYPE_INT || keys[id].type == TYPE_INT0);
    return (const uint64_t *)(const void *)((const char *)c + keys[id].offset);
}

static char *string_field(struct agent_config *c, enum key_id id)
{
    PRE(keys[id].size != 0);
    return (char *)c + keys[id].offset;
}

static const char *string_field_const(const struct agent_config *c,
                                      enum key_id id)
{
    PRE(keys[id].size != 0);
    return (const char *)c + keys[id].offset;
}

/* Write the message of strerror(@errnum) into @buf (@size bytes). */
static void strerror_into(int errnum, char *buf, size_t size)
{
    /* With _POSIX_C_SOURCE and without _GNU_SOURCE this is the XSI
     * strerror_r, which returns an int and fills @buf. */
    if (strerror_r(errnum, buf, size) != 0) {
        snprintf(buf, size, "error %d", errnum);
    }
}

/* ------------------------------------------------------------------------
 * Hosts and endpoints
 * ------------------------------------------------------------------------ */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

/* A DNS name: labels of 1..63 bytes of [A-Za-z0-9-], not starting or
 * ending with '-', separated by dots; 1..253 bytes in all. A trailing dot
 * is not accepted (certificates never carry one). */
static bool dns_name_valid(const char *s, size_t len)
{
    size_t label = 0;
    size_t i;

    if (len == 0 || len > AGENT_CONFIG_HOST_SIZE - 1) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (label == 0 || s[i - 1] == '-') {
                return false;
            }
            label = 0;
            continue;
        }
        if (!is_alnum(s[i]) && s[i] != '-') {
            return false;
        }
        if (label == 0 && s[i] == '-') {
            return false;
        }
        if (++label > 63) {
            return false;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

static bool ip_literal_valid(const char *s, size_t len, int af)
{
    unsigned char addr[16];
    char buf[64];

    if (len >= sizeof buf) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(af, buf, addr) == 1;
}

/* A host as tls.server_name takes it: a DNS name or an IP address (IPv6
 * without brackets). */
static bool host_valid(const char *s, size_t len)
{
    return ip_literal_valid(s, len, AF_INET) ||
           ip_literal_valid(s, len, AF_INET6) || dns_name_valid(s, len);
}

int agent_endpoint_parse(const char *s, size_t len, struct agent_endpoint *out)
{
    const char *colon = NULL;
    const char *host;
    size_t host_len;
    uint64_t port = 0;
    size_t i;

    PRE(s != NULL && out != NULL);
    for (i = len; i > 0; i--) {
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    }
    if (colon == NULL || colon + 1 == s + len || s + len - colon - 1 > 5) {
        return REMS_EINVAL;
    }
    for (i = (size_t)(colon + 1 - s); i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return REMS_EINVAL;
        }
        port = port * 10 + (uint64_t)(s[i] - '0');
    }
    if (port < 1 || port > 65535) {
        return REMS_EINVAL;
    }
    host = s;
    host_len = (size_t)(colon - s);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        if (!ip_literal_valid(host + 1, host_len - 2, AF_INET6)) {
            return REMS_EINVAL;
        }
        host++;
        host_len -= 2;
    } else if (!ip_literal_valid(host, host_len, AF_INET) &&
               !dns_name_valid(host, host_len)) {
        return REMS_EINVAL;
    }

    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = (uint16_t)port;
    return 0;
}

void agent_endpoint_format(const struct agent_endpoint *e, char *out)
{
    PRE(e != NULL && out != NULL);
    if (strchr(e->host, ':') != NULL) {
        snprintf(out, AGENT_CONFIG_ADDR_SIZE, "[%s]:%u", e->host,
                 (unsigned)e->port);
    } else {
        snprintf(out, AGENT_CONFIG_ADDR_SIZE, "%s:%u", e->host,
                 (unsigned)e->port);
    }
}

static bool endpoint_equal(const struct agent_endpoint *a,
                           const struct agent_endpoint *b)
{
    return a->port == b->port && strcasecmp(a->host, b->host) == 0;
}

/* ------------------------------------------------------------------------
 * Setting one key from text
 * ------------------------------------------------------------------------ */

/* Set key @id of @c from the text @value ("" for a null). Returns 0, or
 * REMS_EINVAL when the value breaks the key's rule (see key_rule()),
 * leaving @c as it was. Lists, mappings and sections have their own
 * loaders. */
static int key_set(struct agent_config *c, enum key_id id, const char *value)
{
    const struct key_def *k = &keys[id];
    enum rems_log_level level;
    size_t len = strlen(value);
    uint64_t v;

    switch (k->type) {
        case TYPE_ID:
            if (!rems_id_valid(value)) {
                return REMS_EINVAL;
            }
            break;
        case TYPE_INT:
        case TYPE_INT0:
            if (rems_parse_u64(value, &v) != 0) {
                return REMS_EINVAL;
            }
            if ((v < k->min || v > k->max) &&
                !(k->type == TYPE_INT0 && v == 0)) {
                return REMS_EINVAL;
            }
            *int_field(c, id) = v;
            return 0;
        case TYPE_PATH:
            if (len == 0 || len >= k->size) {
                return REMS_EINVAL;
            }
            break;
        case TYPE_OPT_PATH:
            if (len >= k->size) {
                return REMS_EINVAL;
            }
            break;
        case TYPE_HOST:
            if (len != 0 && !host_valid(value, len)) {
                return REMS_EINVAL;
            }
            break;
        case TYPE_LOG_LEVEL:
            if (rems_log_level_parse(value, &level) != 0) {
                return REMS_EINVAL;
            }
            break;
        default:
            REMS_ASSERT(0 && "not a scalar key");
            return REMS_EINVAL;
    }
    /* A string that passed its check fits its field. */
    REMS_ASSERT(len < k->size);
    memcpy(string_field(c, id), value, len + 1);
    return 0;
}

/* ------------------------------------------------------------------------
 * Defaults
 * ------------------------------------------------------------------------ */

void agent_config_init(struct agent_config *c)
{
    PRE(c != NULL);
    memset(c, 0, sizeof *c);
    c->heartbeat_interval_ms = 0;
    c->reconnect_initial_ms = 500;
    c->reconnect_max_ms = 30000;
    c->connect_timeout_ms = 10000;
    c->dead_man_timeout_ms = 0;
    c->outbox_max_reports = 10000;
    c->executed_ids_kept = 10000;
    c->max_frame_bytes = PROTO_FRAME_MAX_DEFAULT;
    strcpy(c->log_level, "info");
}

static void services_free(struct sup_service_spec **services, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        sup_spec_free(services[i]);
    }
    rems_free(services);
}

void agent_config_close(struct agent_config *c)
{
    if (c == NULL) {
        return;
    }
    services_free(c->services, c->n_services);
    c->services = NULL;
    c->n_services = 0;
}

/* ------------------------------------------------------------------------
 * YAML to JSON
 * ------------------------------------------------------------------------ */

/* One conversion: the document, where its text goes, and where the node
 * being converted is (for messages). */
struct conv {
    yaml_document_t *doc;
    struct rems_buf *out;
    size_t start;     /* out->len when the conversion began. */
    const char *file; /* For messages: "<file>:<line>: " or "line <n>: ". */
    char path[160];   /* "services[2].env.A" */
    size_t path_len;
    char *errmsg;
};

static int
conv_error(struct conv *cv, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
conv_error(struct conv *cv, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[REMS_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cv->file != NULL) {
        rems_errmsgf(cv->errmsg, "%s:%zu: %s%s%s", cv->file,
                     n->start_mark.line + 1, cv->path,
                     cv->path_len > 0 ? ": " : "", msg);
    } else {
        rems_errmsgf(cv->errmsg, "line %zu: %s%s%s", n->start_mark.line + 1,
                     cv->path, cv->path_len > 0 ? ": " : "", msg);
    }
    return REMS_EINVAL;
}

static yaml_node_t *doc_node(yaml_document_t *doc, int index)
{
    yaml_node_t *n = yaml_document_get_node(doc, index);
    REMS_ASSERT(n != NULL); /* libyaml links only nodes it made. */
    return n;
}

/* Append ".key" (@key of @len bytes, cut when long) or "[i]" to the path;
 * returns the old length, for path_pop(). */
static size_t path_push_key(struct conv *cv, const char *key, size_t len)
{
    size_t old = cv->path_len;
    int n;

    n = snprintf(cv->path + old, sizeof cv->path - old, "%s%.*s",
                 old > 0 ? "." : "",
                 (int)(len < KEY_PRINT_MAX ? len : KEY_PRINT_MAX), key);
    cv->path_len = n < 0 ? old : old + (size_t)n;
    if (cv->path_len >= sizeof cv->path) {
        cv->path_len = sizeof cv->path - 1;
    }
    return old;
}

static size_t path_push_index(struct conv *cv, size_t i)
{
    size_t old = cv->path_len;
    int n;

    n = snprintf(cv->path + old, sizeof cv->path - old, "[%zu]", i);
    cv->path_len = n < 0 ? old : old + (size_t)n;
    if (cv->path_len >= sizeof cv->path) {
        cv->path_len = sizeof cv->path - 1;
    }
    return old;
}

static void path_pop(struct conv *cv, size_t old)
{
    cv->path_len = old;
    cv->path[old] = '\0';
}

/* Whether the @len bytes at @s are a number in JSON's syntax:
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number(const char *s, size_t len)
{
    size_t i = 0;
    size_t digits;

    if (i < len && s[i] == '-') {
        i++;
    }
    if (i < len && s[i] == '0') {
        i++;
    } else {
        for (digits = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            digits++;
        }
        if (digits == 0) {
            return false;
        }
    }
    if (i < len && s[i] == '.') {
        i++;
        for (digits = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            digits++;
        }
        if (digits == 0) {
            return false;
        }
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        for (digits = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            digits++;
        }
        if (digits == 0) {
            return false;
        }
    }
    return i == len;
}

static bool
word_in(const char *s, size_t len, const char *const *words, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strlen(words[i]) == len && memcmp(s, words[i], len) == 0) {
            return true;
        }
    }
    return false;
}

/* Append @len bytes of @s as a JSON string. */
static void json_string(struct rems_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6] = {'\\', 'u', '0', '0', 0, 0};
    size_t from = 0;
    size_t i;

    rems_buf_append(out, "\"", 1);
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            continue;
        }
        rems_buf_append(out, s + from, i - from);
        if (ch == '"' || ch == '\\') {
            esc[1] = (char)ch;
            rems_buf_append(out, esc, 2);
            esc[1] = 'u';
        } else {
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 0xf];
            rems_buf_append(out, esc, 6);
        }
        from = i + 1;
    }
    rems_buf_append(out, s + from, len - from);
    rems_buf_append(out, "\"", 1);
}

static void conv_scalar(struct conv *cv, const yaml_node_t *n, bool as_text)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    static const char *const trues[] = {"true", "True", "TRUE"};
    static const char *const falses[] = {"false", "False", "FALSE"};
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;

    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !as_text) {
        if (word_in(s, len, nulls, REMS_ARRAY_SIZE(nulls))) {
            rems_buf_append(cv->out, "null", 4);
            return;
        }
        if (word_in(s, len, trues, REMS_ARRAY_SIZE(trues))) {
            rems_buf_append(cv->out, "true", 4);
            return;
        }
        if (word_in(s, len, falses, REMS_ARRAY_SIZE(falses))) {
            rems_buf_append(cv->out, "false", 5);
            return;
        }
        if (json_number(s, len)) {
            rems_buf_append(cv->out, s, len);
            return;
        }
    }
    json_string(cv->out, s, len);
}

static int conv_node(struct conv *cv, yaml_node_t *n, int depth, bool as_text);

/* Keys whose values hold only strings (a service's command line, its
 * environment, its dependencies): their plain scalars stay strings, so
 * that "command: [/bin/web, --port, 8080]" means what it says. */
static bool text_key(const char *name, size_t len)
{
    static const char *const names[] = {"command", "env", "depends_on"};
    return word_in(name, len, names, REMS_ARRAY_SIZE(names));
}

static int
conv_mapping(struct conv *cv, yaml_node_t *n, int depth, bool as_text)
{
    yaml_node_pair_t *pair;
    yaml_node_pair_t *prev;
    size_t old;
    int rv;

    rems_buf_append(cv->out, "{", 1);
    for (pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *key = doc_node(cv->doc, pair->key);
        const char *name;
        size_t len;

        if (key->type != YAML_SCALAR_NODE) {
            rv = conv_error(cv, key, "keys must be strings");
            goto err;
        }
        name = (const char *)key->data.scalar.value;
        len = key->data.scalar.length;
        for (prev = n->data.mapping.pairs.start; prev < pair; prev++) {
            yaml_node_t *pk = doc_node(cv->doc, prev->key);
            if (pk->data.scalar.length == len &&
                memcmp(pk->data.scalar.value, name, len) == 0) {
                old = path_push_key(cv, name, len);
                rv = conv_error(cv, key, "duplicate key (first on line %zu)",
                                pk->start_mark.line + 1);
                path_pop(cv, old);
                goto err;
            }
        }
        if (pair != n->data.mapping.pairs.start) {
            rems_buf_append(cv->out, ",", 1);
        }
        json_string(cv->out, name, len);
        rems_buf_append(cv->out, ":", 1);
        old = path_push_key(cv, name, len);
        rv = conv_node(cv, doc_node(cv->doc, pair->value), depth + 1,
                       as_text || text_key(name, len));
        path_pop(cv, old);
        if (rv != 0) {
            goto err;
        }
    }
    rems_buf_append(cv->out, "}", 1);
    return 0;

err:
    POST(rv != 0);
    return rv;
}

static int
conv_sequence(struct conv *cv, yaml_node_t *n, int depth, bool as_text)
{
    yaml_node_item_t *item;
    size_t old;
    size_t i = 0;
    int rv;

    rems_buf_append(cv->out, "[", 1);
    for (item = n->data.sequence.items.start; item < n->data.sequence.items.top;
         item++, i++) {
        if (i > 0) {
            rems_buf_append(cv->out, ",", 1);
        }
        old = path_push_index(cv, i);
        rv = conv_node(cv, doc_node(cv->doc, *item), depth + 1, as_text);
        path_pop(cv, old);
        if (rv != 0) {
            goto err;
        }
    }
    rems_buf_append(cv->out, "]", 1);
    return 0;

err:
    POST(rv != 0);
    return rv;
}

static int conv_node(struct conv *cv, yaml_node_t *n, int depth, bool as_text)
{
    if (depth > JSON_DEPTH_MAX) {
        return conv_error(cv, n, "nested more than %d levels deep",
                          JSON_DEPTH_MAX);
    }
    if (cv->out->len - cv->start > JSON_TEXT_MAX) {
        return conv_error(cv, n, "more than %d bytes once aliases are expanded",
                          JSON_TEXT_MAX);
    }
    switch (n->type) {
        case YAML_SCALAR_NODE:
            conv_scalar(cv, n, as_text);
            return 0;
        case YAML_SEQUENCE_NODE:
            return conv_sequence(cv, n, depth, as_text);
        case YAML_MAPPING_NODE:
            return conv_mapping(cv, n, depth, as_text);
        default:
            return conv_error(cv, n, "empty node");
    }
}

/* Convert node @n of @doc, appending to @out (NUL-terminated on success).
 * Messages start with "<file>:<line>: @path: " (@file may be NULL). On
 * failure @out holds what it held before. */
static int yaml_node_to_json(yaml_document_t *doc,
                             yaml_node_t *n,
                             const char *file,
                             const char *path,
                             struct rems_buf *out,
                             char *errmsg)
{
    struct conv cv;
    int rv;

    memset(&cv, 0, sizeof cv);
    cv.doc = doc;
    cv.out = out;
    cv.start = out->len;
    cv.file = file;
    cv.errmsg = errmsg;
    snprintf(cv.path, sizeof cv.path, "%s", path);
    cv.path_len = strlen(cv.path);
    rv = conv_node(&cv, n, 0, false);
    if (rv == 0 && rems_buf_append(out, "", 1) == 0) {
        out->len--; /* The NUL terminates; it is not part of the text. */
    }
    if (rv == 0 && out->failed) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
    }
    if (rv != 0) {
        out->len = cv.start;
        out->failed = false;
        goto err;
    }
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* Report the parse error of @parser, after "<file>: " when @file is set. */
static int
yaml_syntax_error(const yaml_parser_t *parser, const char *file, char *errmsg)
{
    const char *problem = parser->problem != NULL ? parser->problem : "error";
    const char *sep = file != NULL ? ":" : "line ";

    if (file == NULL) {
        file = "";
    }
    switch (parser->error) {
        case YAML_MEMORY_ERROR:
            rems_errmsg_oom(errmsg);
            return REMS_ENOMEM;
        case YAML_READER_ERROR:
            /* The reader (encoding) knows only a byte offset. */
            rems_errmsgf(errmsg, "%s%sinvalid YAML: %s at byte %zu", file,
                         file[0] != '\0' ? ": " : "", problem,
                         parser->problem_offset);
            return REMS_EMALFORMED;
        default:
            if (parser->context != NULL) {
                rems_errmsgf(errmsg,
                             "%s%s%zu: invalid YAML: %s (%s on line "
                             "%zu)",
                             file, sep, parser->problem_mark.line + 1, problem,
                             parser->context, parser->context_mark.line + 1);
            } else {
                rems_errmsgf(errmsg, "%s%s%zu: invalid YAML: %s", file, sep,
                             parser->problem_mark.line + 1, problem);
            }
            return REMS_EMALFORMED;
    }
}

/* Load the one document of @len bytes of @text into @doc; a second
 * document is an error. */
static int yaml_load_one(const char *text,
                         size_t len,
                         const char *file,
                         yaml_document_t *doc,
                         char *errmsg)
{
    yaml_parser_t parser;
    yaml_document_t extra;
    yaml_node_t *extra_root;
    int rv;

    if (yaml_parser_initialize(&parser) == 0) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    /* On failure yaml_parser_load() frees what it built of the document. */
    if (yaml_parser_load(&parser, doc) == 0) {
        rv = yaml_syntax_error(&parser, file, errmsg);
        goto err_after_parser_init;
    }
    /* Parse to the end: a syntax error or a second document after the
     * first is an error too. At the end of the stream yaml_parser_load()
     * gives a document without a root. */
    if (yaml_parser_load(&parser, &extra) == 0) {
        rv = yaml_syntax_error(&parser, file, errmsg);
        goto err_after_load;
    }
    extra_root = yaml_document_get_root_node(&extra);
    if (extra_root != NULL) {
        if (file != NULL) {
            rems_errmsgf(errmsg,
                         "%s:%zu: only one YAML document is allowed per file",
                         file, extra_root->start_mark.line + 1);
        } else {
            rems_errmsgf(errmsg, "line %zu: only one YAML document is allowed",
                         extra_root->start_mark.line + 1);
        }
        yaml_document_delete(&extra);
        rv = REMS_EMALFORMED;
        goto err_after_load;
    }
    yaml_document_delete(&extra);
    yaml_parser_delete(&parser);
    return 0;

err_after_load:
    yaml_document_delete(doc);
err_after_parser_init:
    yaml_parser_delete(&parser);
err:
    POST(rv != 0);
    return rv;
}

int agent_yaml_to_json(const char *yaml,
                       size_t len,
                       struct rems_buf *out,
                       char *errmsg)
{
    yaml_document_t doc;
    yaml_node_t *root;
    int rv;

    PRE(yaml != NULL && out != NULL && errmsg != NULL);
    rv = yaml_load_one(yaml, len, NULL, &doc, errmsg);
    if (rv != 0) {
        goto err;
    }
    root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        rems_errmsgf(errmsg, "empty document");
        rv = REMS_EMALFORMED;
        goto err_after_load;
    }
    rv = yaml_node_to_json(&doc, root, NULL, "", out, errmsg);
    if (rv != 0) {
        goto err_after_load;
    }
    yaml_document_delete(&doc);
    return 0;

err_after_load:
    yaml_document_delete(&doc);
err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * The YAML file
 * ------------------------------------------------------------------------ */

struct file {
    const char *path;
    yaml_document_t doc;
    char *errmsg;
    /* Services built by this load (NULL when the file has none). */
    struct sup_service_spec **services;
    size_t n_services;
    bool has_services;
};

/* Write "<path>:<line>: <message>" into the error message, with the line
 * of @node, and return REMS_ECONFIG. */
static int
file_error(struct file *f, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
file_error(struct file *f, const yaml_node_t *node, const char *fmt, ...)
{
    char msg[REMS_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rems_errmsgf(f->errmsg, "%s:%zu: %s", f->path, node->start_mark.line + 1,
                 msg);
    return REMS_ECONFIG;
}

/* The error "<key>: <rule>" about the value @n of key @id. */
static int file_rule_error(struct file *f, const yaml_node_t *n, enum key_id id)
{
    char rule[REMS_ERRMSG_SIZE];
    char name[64];

    key_rule(id, rule);
    return file_error(f, n, "%s: %s", key_name(id, name), rule);
}

/* Whether scalar @n holds no NUL byte, so that it can be used as a C
 * string. */
static bool scalar_is_text(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE &&
           strlen((const char *)n->data.scalar.value) == n->data.scalar.length;
}

/* The text of scalar @n for key type @type, or NULL when @n is not a
 * scalar, holds a NUL byte, or is quoted where a number is expected (in
 * YAML, quotes make a string). A plain null ("", "~", "null") gives "". */
static const char *scalar_text(const yaml_node_t *n, enum key_type type)
{
    static const char *const nulls[] = {"~", "null", "Null", "NULL"};
    const char *s;
    bool plain;
    size_t i;

    if (!scalar_is_text(n)) {
        return NULL;
    }
    s = (const char *)n->data.scalar.value;
    plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (!plain && (type == TYPE_INT || type == TYPE_INT0)) {
        return NULL;
    }
    for (i = 0; plain && i < REMS_ARRAY_SIZE(nulls); i++) {
        if (strcmp(s, nulls[i]) == 0) {
            return "";
        }
    }
    return s;
}

/* Find mapping key @key among the keys of section @section (KEY_NR for
 * the root) and store it in *@found. @seen holds the line of each key
 * found so far, 0 for none. Errors: not a name, unknown, given twice. */
static int file_key_find(struct file *f,
                         const yaml_node_t *key,
                         enum key_id section,
                         size_t *seen,
                         enum key_id *found)
{
    char where[64];
    const char *name;
    size_t len;
    size_t i;
    int rv;

    if (section == KEY_NR) {
        where[0] = '\0';
    } else {
        snprintf(where, sizeof where, "%s.", keys[section].name);
    }
    if (!scalar_is_text(key)) {
        if (section == KEY_NR) {
            rv = file_error(f, key, "keys must be names");
        } else {
            rv = file_error(f, key, "%s: keys must be names",
                            keys[section].name);
        }
        goto err;
    }
    name = (const char *)key->data.scalar.value;
    for (i = 0; i < KEY_NR; i++) {
        if (keys[i].section == section && strcmp(name, keys[i].name) == 0) {
            break;
        }
    }
    if (i == KEY_NR) {
        len = strlen(name);
        rv = file_error(f, key, "%s%.*s: unknown key", where,
                        (int)(len < KEY_PRINT_MAX ? len : KEY_PRINT_MAX), name);
        goto err;
    }
    if (seen[i] != 0) {
        rv = file_error(f, key, "%s%s: duplicate key (first on line %zu)",
                        where, name, seen[i]);
        goto err;
    }
    seen[i] = key->start_mark.line + 1;

    *found = (enum key_id)i;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

static int
file_load_endpoints(struct file *f, yaml_node_t *n, struct agent_config *c)
{
    struct agent_endpoint endpoints[AGENT_CONFIG_MAX_ENDPOINTS];
    char addr[AGENT_CONFIG_ADDR_SIZE];
    yaml_node_item_t *item;
    const char *text;
    size_t count = 0;
    size_t j;
    int rv;

    if (n->type != YAML_SEQUENCE_NODE) {
        rv = file_rule_error(f, n, KEY_ENDPOINTS);
        goto err;
    }
    memset(endpoints, 0, sizeof endpoints);
    for (item = n->data.sequence.items.start; item < n->data.sequence.items.top;
         item++) {
        yaml_node_t *entry = doc_node(&f->doc, *item);
        if (count == AGENT_CONFIG_MAX_ENDPOINTS) {
            rv = file_error(f, entry,
                            "endpoints: at most %d endpoints are allowed",
                            AGENT_CONFIG_MAX_ENDPOINTS);
            goto err;
        }
        text = scalar_text(entry, TYPE_ENDPOINTS);
        if (text == NULL ||
            agent_endpoint_parse(text, strlen(text), &endpoints[count]) != 0) {
            rv = file_error(f, entry, "endpoints[%zu]: %s", count,
                            AGENT_ENDPOINT_RULE);
            goto err;
        }
        for (j = 0; j < count; j++) {
            if (endpoint_equal(&endpoints[j], &endpoints[count])) {
                agent_endpoint_format(&endpoints[count], addr);
                rv = file_error(f, entry,
                                "endpoints[%zu]: %s is also "
                                "endpoints[%zu]",
                                count, addr, j);
                goto err;
            }
        }
        count++;
    }
    if (count == 0) {
        rv = file_error(f, n, "endpoints: must list at least one endpoint");
        goto err;
    }

    memcpy(c->endpoints, endpoints, sizeof endpoints);
    c->n_endpoints = count;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

static int
file_load_labels(struct file *f, yaml_node_t *n, struct agent_config *c)
{
    struct agent_label labels[PROTO_LABELS_MAX];
    yaml_node_pair_t *pair;
    yaml_node_pair_t *prev;
    size_t count = 0;
    size_t klen;
    size_t vlen;
    int rv;

    if (n->type != YAML_MAPPING_NODE) {
        rv = file_rule_error(f, n, KEY_LABELS);
        goto err;
    }
    for (pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *key = doc_node(&f->doc, pair->key);
        yaml_node_t *value = doc_node(&f->doc, pair->value);
        const char *k;
        const char *v;

        if (count == PROTO_LABELS_MAX) {
            rv = file_error(f, key, "labels: at most %d labels are allowed",
                            PROTO_LABELS_MAX);
            goto err;
        }
        k = scalar_text(key, TYPE_LABELS);
        if (k == NULL || k[0] == '\0') {
            rv = file_error(f, key, "labels: keys must be non-empty names");
            goto err;
        }
        klen = strlen(k);
        if (klen > PROTO_LABEL_KEY_MAX) {
            rv = file_error(f, key,
                            "labels: key \"%.*s...\": %zu bytes, at most %d "
                            "allowed",
                            KEY_PRINT_MAX / 2, k, klen, PROTO_LABEL_KEY_MAX);
            goto err;
        }
        for (prev = n->data.mapping.pairs.start; prev < pair; prev++) {
            yaml_node_t *pk = doc_node(&f->doc, prev->key);
            if (strcmp((const char *)pk->data.scalar.value, k) == 0) {
                rv = file_error(f, key,
                                "labels.%s: duplicate key (first on line %zu)",
                                k, pk->start_mark.line + 1);
                goto err;
            }
        }
        v = scalar_text(value, TYPE_LABELS);
        if (v == NULL) {
            rv = file_error(f, value, "labels.%s: must be a string", k);
            goto err;
        }
        vlen = strlen(v);
        if (vlen > PROTO_LABEL_VALUE_MAX) {
            rv =
                file_error(f, value, "labels.%s: %zu bytes, at most %d allowed",
                           k, vlen, PROTO_LABEL_VALUE_MAX);
            goto err;
        }
        memcpy(labels[count].key, k, klen + 1);
        memcpy(labels[count].value, v, vlen + 1);
        count++;
    }

    memcpy(c->labels, labels, count * sizeof labels[0]);
    c->n_labels = count;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* Parse service item @i, node @n, into *@out. */
static int file_load_service(struct file *f,
                             yaml_node_t *n,
                             size_t i,
                             struct sup_service_spec **out)
{
    char msg[REMS_ERRMSG_SIZE];
    char path[32];
    struct rems_buf json;
    int rv;

    snprintf(path, sizeof path, "services[%zu]", i);
    if (n->type != YAML_MAPPING_NODE) {
        rv = file_error(f, n, "%s: must be a mapping (a service)", path);
        goto err;
    }
    rems_buf_init(&json);
    rv = yaml_node_to_json(&f->doc, n, f->path, path, &json, f->errmsg);
    if (rv == REMS_EINVAL) {
        rv = REMS_ECONFIG;
    }
    if (rv != 0) {
        goto err_after_buf;
    }
    rv = sup_spec_parse_json(json.data, json.len, out, msg);
    if (rv == REMS_ENOMEM) {
        rems_errmsg_oom(f->errmsg);
        goto err_after_buf;
    }
    if (rv != 0) {
        rv = file_error(f, n, "%s: %s", path, msg);
        goto err_after_buf;
    }
    rems_buf_close(&json);
    return 0;

err_after_buf:
    rems_buf_close(&json);
err:
    POST(rv != 0);
    return rv;
}

static int file_load_services(struct file *f, yaml_node_t *n)
{
    struct sup_service_spec **services;
    yaml_node_item_t *item;
    size_t count = 0;
    size_t total;
    size_t j;
    int rv;

    if (n->type != YAML_SEQUENCE_NODE) {
        rv = file_rule_error(f, n, KEY_SERVICES);
        goto err;
    }
    total = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (total > PROTO_ITEMS_MAX) {
        rv = file_error(f, n, "services: at most %d services are allowed",
                        PROTO_ITEMS_MAX);
        goto err;
    }
    services = rems_calloc(total > 0 ? total : 1, sizeof *services);
    if (services == NULL) {
        rems_errmsg_oom(f->errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    for (item = n->data.sequence.items.start; item < n->data.sequence.items.top;
         item++) {
        yaml_node_t *entry = doc_node(&f->doc, *item);
        rv = file_load_service(f, entry, count, &services[count]);
        if (rv != 0) {
            goto err_after_alloc;
        }
        count++;
        for (j = 0; j + 1 < count; j++) {
            if (strcmp(services[j]->name, services[count - 1]->name) == 0) {
                rv = file_error(f, entry,
                                "services[%zu]: service \"%s\" is also "
                                "services[%zu]",
                                count - 1, services[count - 1]->name, j);
                goto err_after_alloc;
            }
        }
    }

    f->services = services;
    f->n_services = count;
    f->has_services = true;
    return 0;

err_after_alloc:
    services_free(services, count);
err:
    POST(rv != 0);
    return rv;
}

/* Load mapping @n, the value of section key @section, into @c. */
static int file_load_section(struct file *f,
                             yaml_node_t *n,
                             enum key_id section,
                             struct agent_config *c)
{
    size_t seen[KEY_NR] = {0}; /* Line of each key, 0 if absent. */
    yaml_node_pair_t *pair;
    enum key_id id;
    int rv;

    if (n->type != YAML_MAPPING_NODE) {
        rv = file_rule_error(f, n, section);
        goto err;
    }
    for (pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *key = doc_node(&f->doc, pair->key);
        yaml_node_t *value = doc_node(&f->doc, pair->value);
        const char *text;

        rv = file_key_find(f, key, section, seen, &id);
        if (rv != 0) {
            goto err;
        }
        text = scalar_text(value, keys[id].type);
        if (text == NULL || key_set(c, id, text) != 0) {
            rv = file_rule_error(f, value, id);
            goto err;
        }
    }
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* Load the document's root node into @c. */
static int file_load_root(struct file *f, struct agent_config *c)
{
    size_t seen[KEY_NR] = {0}; /* Line of each key, 0 if absent. */
    yaml_node_pair_t *pair;
    yaml_node_t *root;
    enum key_id id;
    int rv;

    root = yaml_document_get_root_node(&f->doc);
    if (root == NULL) {
        rems_errmsgf(f->errmsg,
                     "%s: empty file, expected a mapping of keys to values",
                     f->path);
        rv = REMS_ECONFIG;
        goto err;
    }
    if (root->type != YAML_MAPPING_NODE) {
        rv = file_error(f, root, "expected a mapping of keys to values");
        goto err;
    }
    for (pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = doc_node(&f->doc, pair->key);
        yaml_node_t *value = doc_node(&f->doc, pair->value);
        const char *text;

        rv = file_key_find(f, key, KEY_NR, seen, &id);
        if (rv != 0) {
            goto err;
        }
        switch (keys[id].type) {
            case TYPE_ENDPOINTS:
                rv = file_load_endpoints(f, value, c);
                break;
            case TYPE_LABELS:
                rv = file_load_labels(f, value, c);
                break;
            case TYPE_SERVICES:
                rv = file_load_services(f, value);
                break;
            case TYPE_SECTION:
                rv = file_load_section(f, value, id, c);
                break;
            default:
                text = scalar_text(value, keys[id].type);
                if (text == NULL || key_set(c, id, text) != 0) {
                    rv = file_rule_error(f, value, id);
                } else {
                    rv = 0;
                }
                break;
        }
        if (rv != 0) {
            goto err;
        }
    }
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* Read the whole file @path into *@out (rems_malloc'd, *@len bytes). */
static int file_read(const char *path, char **out, size_t *len, char *errmsg)
{
    int rv = rems_read_file(path, AGENT_FILE_MAX, out, len, errmsg);

    return rv == REMS_ETOOBIG ? REMS_ECONFIG : rv;
}

int agent_config_load_file(struct agent_config *c,
                           const char *path,
                           char *errmsg)
{
    struct agent_config *next;
    struct file f;
    char *text;
    size_t len;
    int rv;

    PRE(c != NULL && path != NULL && errmsg != NULL);

    /* The struct is large (labels); keep it off the stack. */
    next = rems_malloc(sizeof *next);
    if (next == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    *next = *c;
    memset(&f, 0, sizeof f);
    f.path = path;
    f.errmsg = errmsg;
    rv = file_read(path, &text, &len, errmsg);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = yaml_load_one(text, len, path, &f.doc, errmsg);
    if (rv == REMS_EMALFORMED) {
        rv = REMS_ECONFIG;
    }
    if (rv != 0) {
        goto err_after_read;
    }
    rv = file_load_root(&f, next);
    if (rv != 0) {
        goto err_after_load;
    }
    yaml_document_delete(&f.doc);
    rems_free(text);

    if (f.has_services) {
        agent_config_close(c);
        next->services = f.services;
        next->n_services = f.n_services;
    }
    *c = *next;
    rems_free(next);
    return 0;

err_after_load:
    yaml_document_delete(&f.doc);
    /* A failure after the services were built: only the labels or keys
     * that follow them can fail, so release what was built. */
    if (f.has_services) {
        services_free(f.services, f.n_services);
    }
err_after_read:
    rems_free(text);
err_after_alloc:
    rems_free(next);
err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * The command line
 * ------------------------------------------------------------------------ */

enum opt_id {
    OPT_CONFIG,
    OPT_DATA_DIR,
    OPT_LOG_LEVEL,
    OPT_CHECK_CONFIG,
    OPT_VERSION,
    OPT_HELP,
    OPT_NR
};

static const struct {
    const char *name;
    bool takes_value;
} options[OPT_NR] = {
    [OPT_CONFIG] = {"--config", true},
    [OPT_DATA_DIR] = {"--data-dir", true},
    [OPT_LOG_LEVEL] = {"--log-level", true},
    [OPT_CHECK_CONFIG] = {"--check-config", false},
    [OPT_VERSION] = {"--version", false},
    [OPT_HELP] = {"--help", false},
};

int agent_config_parse_args(int argc,
                            char **argv,
                            struct agent_cli *cli,
                            char *errmsg)
{
    struct agent_cli next;
    bool given[OPT_NR] = {false};
    const char *value;
    const char *arg;
    const char *eq;
    size_t name_len;
    size_t k;
    int i;
    int rv;

    PRE(argc >= 0 && (argc == 0 || argv != NULL) && cli != NULL &&
        errmsg != NULL);

    memset(&next, 0, sizeof next);
    for (i = 0; i < argc; i++) {
        arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            rems_errmsgf(errmsg, "%.*s: unexpected argument", KEY_PRINT_MAX,
                         arg);
            rv = REMS_ECONFIG;
            goto err;
        }
        eq = strchr(arg, '=');
        name_len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        for (k = 0; k < OPT_NR; k++) {
            if (strlen(options[k].name) == name_len &&
                memcmp(arg, options[k].name, name_len) == 0) {
                break;
            }
        }
        if (k == OPT_NR) {
            rems_errmsgf(
                errmsg, "%.*s: unknown option",
                (int)(name_len < KEY_PRINT_MAX ? name_len : KEY_PRINT_MAX),
                arg);
            rv = REMS_ECONFIG;
            goto err;
        }
        if (given[k]) {
            rems_errmsgf(errmsg, "%s: given more than once", options[k].name);
            rv = REMS_ECONFIG;
            goto err;
        }
        given[k] = true;
        value = NULL;
        if (!options[k].takes_value) {
            if (eq != NULL) {
                rems_errmsgf(errmsg, "%s: takes no value", options[k].name);
                rv = REMS_ECONFIG;
                goto err;
            }
        } else if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            /* A following option is not taken as a value: "--config
             * --check-config" is a mistake, not a file named so. */
            value = argv[++i];
        } else {
            rems_errmsgf(errmsg, "%s: needs a value", options[k].name);
            rv = REMS_ECONFIG;
            goto err;
        }
        switch ((enum opt_id)k) {
            case OPT_CONFIG:
                if (value[0] == '\0' ||
                    strlen(value) >= AGENT_CONFIG_PATH_SIZE) {
                    rems_errmsgf(errmsg,
                                 "--config: must be a non-empty path shorter "
                                 "than %d bytes",
                                 AGENT_CONFIG_PATH_SIZE);
                    rv = REMS_ECONFIG;
                    goto err;
                }
                next.config = value;
                break;
            case OPT_DATA_DIR:
                next.data_dir = value;
                break;
            case OPT_LOG_LEVEL:
                next.log_level = value;
                break;
            case OPT_CHECK_CONFIG:
                next.check_config = true;
                break;
            case OPT_VERSION:
                next.version = true;
                break;
            case OPT_HELP:
                next.help = true;
                break;
            case OPT_NR:
                break;
        }
    }
    if (next.config == NULL && !next.version && !next.help) {
        rems_errmsgf(errmsg, "--config: required");
        rv = REMS_ECONFIG;
        goto err;
    }

    *cli = next;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

int agent_config_apply_cli(struct agent_config *c,
                           const struct agent_cli *cli,
                           char *errmsg)
{
    char data_dir[AGENT_CONFIG_PATH_SIZE];
    char log_level[sizeof c->log_level];
    char rule[REMS_ERRMSG_SIZE];
    int rv;

    PRE(c != NULL && cli != NULL && errmsg != NULL);

    /* Check both before changing either. */
    memcpy(data_dir, c->data_dir, sizeof data_dir);
    memcpy(log_level, c->log_level, sizeof log_level);
    if (cli->data_dir != NULL && key_set(c, KEY_DATA_DIR, cli->data_dir) != 0) {
        key_rule(KEY_DATA_DIR, rule);
        rems_errmsgf(errmsg, "--data-dir: %s", rule);
        rv = REMS_ECONFIG;
        goto err;
    }
    if (cli->log_level != NULL &&
        key_set(c, KEY_LOG_LEVEL, cli->log_level) != 0) {
        key_rule(KEY_LOG_LEVEL, rule);
        rems_errmsgf(errmsg, "--log-level: %s", rule);
        rv = REMS_ECONFIG;
        goto err_after_data_dir;
    }
    return 0;

err_after_data_dir:
    memcpy(c->data_dir, data_dir, sizeof data_dir);
    memcpy(c->log_level, log_level, sizeof log_level);
err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------ */

static int validate_error(enum key_id id, char *errmsg)
{
    char rule[REMS_ERRMSG_SIZE];
    char name[64];

    key_rule(id, rule);
    rems_errmsgf(errmsg, "%s: %s", key_name(id, name), rule);
    return REMS_ECONFIG;
}

/* Each scalar key's own rule, again. */
static int validate_keys(const struct agent_config *c, char *errmsg)
{
    struct agent_config *probe;
    const struct key_def *k;
    char name[64];
    size_t i;
    int rv = 0;

    /* key_set() is the one place that knows the rules; run each value
     * through it on a scratch copy. */
    probe = rems_malloc(sizeof *probe);
    if (probe == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    *probe = *c;
    for (i = 0; i < KEY_NR && rv == 0; i++) {
        k = &keys[i];
        if (k->type == TYPE_INT || k->type == TYPE_INT0) {
            char text[24];
            snprintf(text, sizeof text, "%" PRIu64,
                     *int_field_const(c, (enum key_id)i));
            if (key_set(probe, (enum key_id)i, text) != 0) {
                rv = validate_error((enum key_id)i, errmsg);
            }
        } else if (k->size != 0) {
            const char *s = string_field_const(c, (enum key_id)i);
            if (memchr(s, '\0', k->size) == NULL) {
                rv = validate_error((enum key_id)i, errmsg);
            } else if (s[0] == '\0' && k->type != TYPE_OPT_PATH &&
                       k->type != TYPE_HOST) {
                rems_errmsgf(errmsg, "%s: required",
                             key_name((enum key_id)i, name));
                rv = REMS_ECONFIG;
            } else if (key_set(probe, (enum key_id)i, s) != 0) {
                rv = validate_error((enum key_id)i, errmsg);
            }
        }
    }
    rems_free(probe);
    return rv;
}

static int validate_lists(const struct agent_config *c, char *errmsg)
{
    char addr[AGENT_CONFIG_ADDR_SIZE];
    size_t i;
    size_t j;

    if (c->n_endpoints == 0) {
        rems_errmsgf(errmsg, "endpoints: required");
        return REMS_ECONFIG;
    }
    if (c->n_endpoints > AGENT_CONFIG_MAX_ENDPOINTS) {
        return validate_error(KEY_ENDPOINTS, errmsg);
    }
    for (i = 0; i < c->n_endpoints; i++) {
        const struct agent_endpoint *e = &c->endpoints[i];
        struct agent_endpoint check;
        if (memchr(e->host, '\0', sizeof e->host) == NULL) {
            rems_errmsgf(errmsg, "endpoints[%zu]: %s", i, AGENT_ENDPOINT_RULE);
            return REMS_ECONFIG;
        }
        agent_endpoint_format(e, addr);
        if (agent_endpoint_parse(addr, strlen(addr), &check) != 0) {
            rems_errmsgf(errmsg, "endpoints[%zu]: %s", i, AGENT_ENDPOINT_RULE);
            return REMS_ECONFIG;
        }
        for (j = 0; j < i; j++) {
            if (endpoint_equal(&c->endpoints[j], e)) {
                rems_errmsgf(errmsg,
                             "endpoints[%zu]: %s is also endpoints[%zu]", i,
                             addr, j);
                return REMS_ECONFIG;
            }
        }
    }
    if (c->n_labels > PROTO_LABELS_MAX) {
        rems_errmsgf(errmsg, "labels: at most %d labels are allowed",
                     PROTO_LABELS_MAX);
        return REMS_ECONFIG;
    }
    for (i = 0; i < c->n_labels; i++) {
        const struct agent_label *l = &c->labels[i];
        if (memchr(l->key, '\0', sizeof l->key) == NULL ||
            memchr(l->value, '\0', sizeof l->value) == NULL ||
            l->key[0] == '\0') {
            rems_errmsgf(errmsg, "labels[%zu]: %s", i,
                         "keys must be 1 to 128 bytes, values at most 128");
            return REMS_ECONFIG;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(c->labels[j].key, l->key) == 0) {
                rems_errmsgf(errmsg, "labels.%s: duplicate key", l->key);
                return REMS_ECONFIG;
            }
        }
    }
    return 0;
}

static int validate_services(const struct agent_config *c, char *errmsg)
{
    char msg[REMS_ERRMSG_SIZE];
    size_t *order;
    size_t i;
    size_t j;
    int rv;

    if (c->n_services > PROTO_ITEMS_MAX) {
        rems_errmsgf(errmsg, "services: at most %d services are allowed",
                     PROTO_ITEMS_MAX);
        return REMS_ECONFIG;
    }
    for (i = 0; i < c->n_services; i++) {
        for (j = 0; j < i; j++) {
            if (strcmp(c->services[i]->name, c->services[j]->name) == 0) {
                rems_errmsgf(errmsg,
                             "services[%zu]: service \"%s\" is also "
                             "services[%zu]",
                             i, c->services[i]->name, j);
                return REMS_ECONFIG;
            }
        }
    }
    if (c->n_services == 0) {
        return 0;
    }
    order = rems_calloc(c->n_services, sizeof *order);
    if (order == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    rv = sup_spec_order((const struct sup_service_spec *const *)c->services,
                        c->n_services, order, msg);
    rems_free(order);
    if (rv == REMS_ENOMEM) {
        rems_errmsg_oom(errmsg);
        return rv;
    }
    if (rv != 0) {
        /* The supervisor names the service ("services.web.depends_on:
         * ..."); a cycle is about the list as a whole. */
        if (strncmp(msg, "services", 8) == 0) {
            rems_errmsgf(errmsg, "%s", msg);
        } else {
            rems_errmsgf(errmsg, "services: %s", msg);
        }
        return REMS_ECONFIG;
    }
    return 0;
}

int agent_config_validate(const struct agent_config *c, char *errmsg)
{
    int rv;

    PRE(c != NULL && errmsg != NULL);

    if (c->id[0] == '\0') {
        rems_errmsgf(errmsg, "id: required");
        return REMS_ECONFIG;
    }
    rv = validate_lists(c, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = validate_keys(c, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (c->reconnect_initial_ms > c->reconnect_max_ms) {
        rems_errmsgf(errmsg,
                     "reconnect.initial_ms: must not exceed reconnect.max_ms "
                     "(%" PRIu64 " > %" PRIu64 ")",
                     c->reconnect_initial_ms, c->reconnect_max_ms);
        return REMS_ECONFIG;
    }
    return validate_services(c, errmsg);
}

/* ------------------------------------------------------------------------
 * The certificate's agent id
 * ------------------------------------------------------------------------ */

/* Copy @len bytes at @p into @id when they are a valid id. */
static bool cert_id_set(const unsigned char *p, int len, char *id)
{
    char buf[PROTO_ID_MAX + 1];

    if (len <= 0 || len > PROTO_ID_MAX || memchr(p, '\0', (size_t)len)) {
        return false;
    }
    memcpy(buf, p, (size_t)len);
    buf[len] = '\0';
    if (!rems_id_valid(buf)) {
        return false;
    }
    memcpy(id, buf, (size_t)len + 1);
    return true;
}

/* The id of @cert by the rule of tls.h; @why says what is wrong when it
 * names none. */
static bool cert_id_of(X509 *cert, char *id, char *why, size_t why_size)
{
    static const char prefix[] = TLS_AGENT_URI_PREFIX;
    const int plen = (int)(sizeof prefix - 1);
    GENERAL_NAMES *names;
    X509_NAME *subject;
    X509_NAME_ENTRY *entry;
    const unsigned char *uri;
    unsigned char *utf8;
    bool ok = false;
    int found = 0;
    int len;
    int i;

    names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI) {
            continue;
        }
        uri = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (len < plen || memcmp(uri, prefix, (size_t)plen) != 0) {
            continue;
        }
        if (found++ == 0) {
            ok = cert_id_set(uri + plen, len - plen, id);
            if (!ok) {
                snprintf(why, why_size, "its %s URI does not hold a valid id",
                         TLS_AGENT_URI_PREFIX);
            }
        }
    }
    GENERAL_NAMES_free(names);
    if (found > 1) {
        snprintf(why, why_size, "it has %d %s URIs", found,
                 TLS_AGENT_URI_PREFIX);
        return false;
    }
    if (found == 1) {
        return ok;
    }
    subject = X509_get_subject_name(cert);
    i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i < 0) {
        snprintf(why, why_size, "it has neither a %s URI nor a common name",
                 TLS_AGENT_URI_PREFIX);
        return false;
    }
    if (X509_NAME_get_index_by_NID(subject, NID_commonName, i) >= 0) {
        snprintf(why, why_size, "it has several common names");
        return false;
    }
    entry = X509_NAME_get_entry(subject, i);
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
    if (len < 0) {
        snprintf(why, why_size, "its common name is not text");
        return false;
    }
    ok = cert_id_set(utf8, len, id);
    if (!ok) {
        snprintf(why, why_size,
                 "its common name \"%.*s\" is not a valid id (1 to %d "
                 "characters of [A-Za-z0-9_.:-])",
                 len < KEY_PRINT_MAX ? len : KEY_PRINT_MAX, (const char *)utf8,
                 PROTO_ID_MAX);
    }
    OPENSSL_free(utf8);
    return ok;
}

int agent_config_cert_id(const char *path, char *id, char *errmsg)
{
    char reason[128];
    char why[160];
    char got[PROTO_ID_MAX + 1];
    X509 *cert;
    FILE *fp;
    int rv;

    PRE(path != NULL && id != NULL && errmsg != NULL);

    fp = fopen(path, "re");
    if (fp == NULL) {
        strerror_into(errno, reason, sizeof reason);
        rems_errmsgf(errmsg, "%s: %s", path, reason);
        rv = REMS_EIO;
        goto err;
    }
    cert = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    if (cert == NULL) {
        unsigned long e = ERR_peek_last_error();
        ERR_clear_error();
        if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE) {
            rems_errmsg_oom(errmsg);
            rv = REMS_ENOMEM;
            goto err;
        }
        rems_errmsgf(errmsg, "%s: no PEM certificate", path);
        rv = REMS_ECONFIG;
        goto err;
    }
    if (!cert_id_of(cert, got, why, sizeof why)) {
        rems_errmsgf(errmsg, "%s: names no agent: %s", path, why);
        rv = REMS_ECONFIG;
        goto err_after_read;
    }
    X509_free(cert);
    ERR_clear_error();

    memcpy(id, got, strlen(got) + 1);
    return 0;

err_after_read:
    X509_free(cert);
    ERR_clear_error();
err:
    POST(rv != 0);
    return rv;
}

int agent_config_check_cert(const struct agent_config *c, char *errmsg)
{
    char id[PROTO_ID_MAX + 1];
    int rv;

    PRE(c != NULL && errmsg != NULL);

    rv = agent_config_cert_id(c->tls_cert, id, errmsg);
    if (rv != 0) {
        rems_errmsg_wrap(errmsg, "tls.cert");
        return rv;
    }
    if (strcmp(id, c->id) != 0) {
        rems_errmsgf(errmsg,
                     "id: \"%s\" differs from the agent id of tls.cert "
                     "(%.*s): \"%s\"",
                     c->id, KEY_PRINT_MAX * 2, c->tls_cert, id);
        return REMS_ECONFIG;
    }
    return 0;
}
