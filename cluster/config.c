/* cluster/config.c: remsd's configuration from a YAML file and the command
 * line.
 *
 * Every key is described once, in the keys[] table: its name in the file,
 * its command-line option, its type and, for integers, its range. The file
 * loader and the option parser both turn text into a field through
 * key_set(), and both report a failure with key_rule(), so a key is checked
 * and explained the same way wherever it comes from.
 *
 * The file is read into memory (rems_malloc, at most CONFIG_FILE_MAX bytes)
 * and parsed with libyaml's document API, which keeps the position of every
 * node, so each error names its line. libyaml allocates with its own
 * allocator; the tree lives only while config_load_file() runs. The walk
 * goes down a fixed depth (root mapping, peers list, peer mappings), so
 * anchors and aliases, even recursive ones, cannot make it loop.
 *
 * config_load_file() and config_parse_args() work on a copy of the
 * caller's struct and copy it back only on success, so a failure leaves the
 * caller's values untouched. config_validate() checks the rules that span
 * several keys, once everything is loaded; it repeats the per-key checks
 * too, because a struct may also be filled in by code. */
#include "cluster/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "common/assert.h"
#include "common/file.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/util.h"

/* A configuration file is a few hundred bytes; refuse anything huge before
 * handing it to the parser. */
#define CONFIG_FILE_MAX (1024 * 1024)

/* ------------------------------------------------------------------------
 * The keys
 * ------------------------------------------------------------------------ */

enum key_id {
    KEY_NODE_ID,
    KEY_DATA_DIR,
    KEY_RAFT_ADDRESS,
    KEY_API_ADDRESS,
    KEY_PEERS,
    KEY_JOIN,
    KEY_ELECTION_TIMEOUT_MS,
    KEY_HEARTBEAT_TIMEOUT_MS,
    KEY_SNAPSHOT_THRESHOLD,
    KEY_SNAPSHOT_TRAILING,
    KEY_MAX_BODY_BYTES,
    KEY_FORWARD_TIMEOUT_MS,
    KEY_LOG_LEVEL,
    KEY_FAULT_INJECTION,
    KEY_AGENT_ADDRESS,
    KEY_TLS_CERT,
    KEY_TLS_KEY,
    KEY_TLS_CA,
    KEY_TLS_CRL,
    KEY_LEASE_TTL_MS,
    KEY_AGENT_HEARTBEAT_MS,
    KEY_MAX_CLOCK_SKEW_MS,
    KEY_SEND_MARGIN_MS,
    KEY_AGENT_MAX_FRAME_BYTES,
    KEY_SITE_LABEL,
    KEY_RECONCILE_INTERVAL_MS,
    KEY_RECONCILE_RATE_WINDOW_MS,
    KEY_RECONCILE_MAX_PER_AGENT,
    KEY_RECONCILE_MAX_PER_SITE,
    KEY_RECONCILE_MAX_GLOBAL,
    KEY_RECONCILE_MAX_IN_FLIGHT,
    KEY_RECONCILE_COMMAND_TTL_MS,
    KEY_RECONCILE_GRACE_MS,
    KEY_NR,
    /* Command line only: not a key of the file. */
    KEY_CONFIG = KEY_NR,
    KEY_OPTION_NR
};

enum key_type {
    TYPE_INT,       /* Decimal digits only, within [min, max]. */
    TYPE_PATH,      /* Non-empty, shorter than CONFIG_PATH_SIZE. */
    TYPE_OPT_PATH,  /* A path, or empty for none. */
    TYPE_ADDRESS,   /* "a.b.c.d:port". */
    TYPE_JOIN,      /* An address, or empty for none. */
    TYPE_LOG_LEVEL, /* debug|info|warn|error. */
    TYPE_BOOL,      /* true|false|yes|no. */
    TYPE_LABEL,     /* A label key (1..128 printable bytes), or empty. */
    TYPE_PEERS      /* A list in the file, repeated --peer options. */
};

struct key_def {
    const char *name;   /* In the file; NULL for command-line only. */
    const char *option; /* On the command line. */
    enum key_type type;
    uint64_t min;  /* TYPE_INT only. */
    uint64_t max;  /* TYPE_INT only. */
    size_t offset; /* String keys: where the field is in struct config. */
};

/* The last four fields of a key_def, by type. */
#define INT(lo, hi) TYPE_INT, (lo), (hi), 0
#define STR(type, field) (type), 0, 0, offsetof(struct config, field)
#define OTHER(type) (type), 0, 0, 0

static const struct key_def keys[KEY_OPTION_NR] = {
    [KEY_NODE_ID] = {"node_id", "--node-id", INT(1, UINT64_MAX)},
    [KEY_DATA_DIR] = {"data_dir", "--data-dir", STR(TYPE_PATH, data_dir)},
    [KEY_RAFT_ADDRESS] = {"raft_address", "--raft-address",
                          STR(TYPE_ADDRESS, raft_address)},
    [KEY_API_ADDRESS] = {"api_address", "--api-address",
                         STR(TYPE_ADDRESS, api_address)},
    [KEY_PEERS] = {"peers", "--peer", OTHER(TYPE_PEERS)},
    [KEY_JOIN] = {"join", "--join", STR(TYPE_JOIN, join)},
    [KEY_ELECTION_TIMEOUT_MS] = {"election_timeout_ms", "--election-timeout-ms",
                                 INT(50, 60000)},
    [KEY_HEARTBEAT_TIMEOUT_MS] = {"heartbeat_timeout_ms",
                                  "--heartbeat-timeout-ms", INT(10, 10000)},
    [KEY_SNAPSHOT_THRESHOLD] = {"snapshot_threshold", "--snapshot-threshold",
                                INT(16, 10000000)},
    [KEY_SNAPSHOT_TRAILING] = {"snapshot_trailing", "--snapshot-trailing",
                               INT(0, 10000000)},
    [KEY_MAX_BODY_BYTES] = {"max_body_bytes", "--max-body-bytes",
                            INT(1024, 67108864)},
    [KEY_FORWARD_TIMEOUT_MS] = {"forward_timeout_ms", "--forward-timeout-ms",
                                INT(100, 600000)},
    [KEY_LOG_LEVEL] = {"log_level", "--log-level",
                       STR(TYPE_LOG_LEVEL, log_level)},
    [KEY_FAULT_INJECTION] = {"fault_injection", "--fault-injection",
                             OTHER(TYPE_BOOL)},
    [KEY_AGENT_ADDRESS] = {"agent_address", "--agent-address",
                           STR(TYPE_JOIN, agent_address)},
    [KEY_TLS_CERT] = {"tls_cert", "--tls-cert", STR(TYPE_OPT_PATH, tls_cert)},
    [KEY_TLS_KEY] = {"tls_key", "--tls-key", STR(TYPE_OPT_PATH, tls_key)},
    [KEY_TLS_CA] = {"tls_ca", "--tls-ca", STR(TYPE_OPT_PATH, tls_ca)},
    [KEY_TLS_CRL] = {"tls_crl", "--tls-crl", STR(TYPE_OPT_PATH, tls_crl)},
    [KEY_LEASE_TTL_MS] = {"lease_ttl_ms", "--lease-ttl-ms", INT(500, 3600000)},
    [KEY_AGENT_HEARTBEAT_MS] = {"agent_heartbeat_ms", "--agent-heartbeat-ms",
                                INT(50, 600000)},
    [KEY_MAX_CLOCK_SKEW_MS] = {"max_clock_skew_ms", "--max-clock-skew-ms",
                               INT(0, 60000)},
    [KEY_SEND_MARGIN_MS] = {"send_margin_ms", "--send-margin-ms",
                            INT(0, 60000)},
    [KEY_AGENT_MAX_FRAME_BYTES] = {"agent_max_frame_bytes",
                                   "--agent-max-frame-bytes",
                                   INT(4096, 67108864)},
    [KEY_SITE_LABEL] = {"site_label", "--site-label",
                        STR(TYPE_LABEL, site_label)},
    [KEY_RECONCILE_INTERVAL_MS] = {"reconcile_interval_ms", "--reconcile-interval-ms",
        INT(100, 600000)},
    [KEY_RECONCILE_RATE_WINDOW_MS] = {"reconcile_rate_window_ms", "--reconcile-rate-window-ms",
        INT(1000, 86400000)},
    [KEY_RECONCILE_MAX_PER_AGENT] = {"reconcile_max_per_agent", "--reconcile-max-per-agent",
        INT(0, 1000000)},
    [KEY_RECONCILE_MAX_PER_SITE] = {"reconcile_max_per_site", "--reconcile-max-per-site",
        INT(0, 1000000)},
    [KEY_RECONCILE_MAX_GLOBAL] = {"reconcile_max_global", "--reconcile-max-global",
        INT(0, 1000000)},
    [KEY_RECONCILE_MAX_IN_FLIGHT] = {"reconcile_max_in_flight", "--reconcile-max-in-flight",
        INT(0, 1000000)},
    [KEY_RECONCILE_COMMAND_TTL_MS] = {"reconcile_command_ttl_ms", "--reconcile-command-ttl-ms",
        INT(1000, 86400000)},
    [KEY_RECONCILE_GRACE_MS] = {"reconcile_grace_ms", "--reconcile-grace-ms",
        INT(0, 86400000)},
    [KEY_CONFIG] = {NULL, "--config", OTHER(TYPE_PATH)},
};

#undef INT
#undef STR
#undef OTHER

/* The fields of one peer, as keys of a peers[] entry. */
enum peer_field { PEER_ID, PEER_RAFT_ADDRESS, PEER_API_ADDRESS, PEER_NR };

static const char *const peer_field_names[PEER_NR] = {
    [PEER_ID] = "id",
    [PEER_RAFT_ADDRESS] = "raft_address",
    [PEER_API_ADDRESS] = "api_address",
};

#define ADDRESS_RULE                                                           \
    "must be an IPv4 address and a port between 1 and 65535, such as "         \
    "127.0.0.1:7001"
#define PEER_OPTION_RULE                                                       \
    "must be ID=RAFT_ADDRESS,API_ADDRESS, such as "                            \
    "2=127.0.0.1:7002,127.0.0.1:7102"

/* Write into @rule (REMS_ERRMSG_SIZE bytes) what a value of key @id must
 * look like: the text after "<key>: " in every error about a bad value. */
static void key_rule(enum key_id id, char *rule)
{
    const struct key_def *k = &keys[id];

    switch (k->type) {
        case TYPE_INT:
            rems_errmsgf(rule,
                         "must be an integer between %" PRIu64 " and %" PRIu64,
                         k->min, k->max);
            break;
        case TYPE_PATH:
            rems_errmsgf(rule, "must be a non-empty path shorter than %d bytes",
                         CONFIG_PATH_SIZE);
            break;
        case TYPE_OPT_PATH:
            rems_errmsgf(rule, "must be a path shorter than %d bytes",
                         CONFIG_PATH_SIZE);
            break;
        case TYPE_ADDRESS:
        case TYPE_JOIN:
            rems_errmsgf(rule, "%s", ADDRESS_RULE);
            break;
        case TYPE_LOG_LEVEL:
            rems_errmsgf(rule, "must be one of debug, info, warn, error");
            break;
        case TYPE_BOOL:
            rems_errmsgf(rule, "must be true or false");
            break;
        case TYPE_LABEL:
            rems_errmsgf(rule, "must be a label key of 1 to %d printable "
                               "bytes, or empty for none",
                         CONFIG_LABEL_SIZE - 1);
            break;
        case TYPE_PEERS:
            rems_errmsgf(rule, "must be a list of mappings with id, "
                               "raft_address and api_address");
            break;
    }
}

static uint64_t int_field_get(const struct config *c, enum key_id id)
{
    switch (id) {
        case KEY_NODE_ID:
            return c->node_id;
        case KEY_ELECTION_TIMEOUT_MS:
            return c->election_timeout_ms;
        case KEY_HEARTBEAT_TIMEOUT_MS:
            return c->heartbeat_timeout_ms;
        case KEY_SNAPSHOT_THRESHOLD:
            return c->snapshot_threshold;
        case KEY_SNAPSHOT_TRAILING:
            return c->snapshot_trailing;
        case KEY_MAX_BODY_BYTES:
            return c->max_body_bytes;
        case KEY_FORWARD_TIMEOUT_MS:
            return c->forward_timeout_ms;
        case KEY_LEASE_TTL_MS:
            return c->lease_ttl_ms;
        case KEY_AGENT_HEARTBEAT_MS:
            return c->agent_heartbeat_ms;
        case KEY_MAX_CLOCK_SKEW_MS:
            return c->max_clock_skew_ms;
        case KEY_SEND_MARGIN_MS:
            return c->send_margin_ms;
        case KEY_AGENT_MAX_FRAME_BYTES:
            return c->agent_max_frame_bytes;
        case KEY_RECONCILE_INTERVAL_MS:
            return c->reconcile_interval_ms;
        case KEY_RECONCILE_RATE_WINDOW_MS:
            return c->reconcile_rate_window_ms;
        case KEY_RECONCILE_MAX_PER_AGENT:
            return c->reconcile_max_per_agent;
        case KEY_RECONCILE_MAX_PER_SITE:
            return c->reconcile_max_per_site;
        case KEY_RECONCILE_MAX_GLOBAL:
            return c->reconcile_max_global;
        case KEY_RECONCILE_MAX_IN_FLIGHT:
            return c->reconcile_max_in_flight;
        case KEY_RECONCILE_COMMAND_TTL_MS:
            return c->reconcile_command_ttl_ms;
        case KEY_RECONCILE_GRACE_MS:
            return c->reconcile_grace_ms;
        default:
            REMS_ASSERT(0 && "not an integer key");
            return 0;
    }
}

/* @v is within the key's range, and every range fits the field's type. */
static void int_field_set(struct config *c, enum key_id id, uint64_t v)
{
    switch (id) {
        case KEY_NODE_ID:
            c->node_id = v;
            break;
        case KEY_ELECTION_TIMEOUT_MS:
            c->election_timeout_ms = (unsigned)v;
            break;
        case KEY_HEARTBEAT_TIMEOUT_MS:
            c->heartbeat_timeout_ms = (unsigned)v;
            break;
        case KEY_SNAPSHOT_THRESHOLD:
            c->snapshot_threshold = (unsigned)v;
            break;
        case KEY_SNAPSHOT_TRAILING:
            c->snapshot_trailing = (unsigned)v;
            break;
        case KEY_MAX_BODY_BYTES:
            c->max_body_bytes = (size_t)v;
            break;
        case KEY_FORWARD_TIMEOUT_MS:
            c->forward_timeout_ms = (unsigned)v;
            break;
        case KEY_LEASE_TTL_MS:
            c->lease_ttl_ms = (unsigned)v;
            break;
        case KEY_AGENT_HEARTBEAT_MS:
            c->agent_heartbeat_ms = (unsigned)v;
            break;
        case KEY_MAX_CLOCK_SKEW_MS:
            c->max_clock_skew_ms = (unsigned)v;
            break;
        case KEY_SEND_MARGIN_MS:
            c->send_margin_ms = (unsigned)v;
            break;
        case KEY_AGENT_MAX_FRAME_BYTES:
            c->agent_max_frame_bytes = (size_t)v;
            break;
        case KEY_RECONCILE_INTERVAL_MS:
            c->reconcile_interval_ms = (unsigned)v;
            break;
        case KEY_RECONCILE_RATE_WINDOW_MS:
            c->reconcile_rate_window_ms = (unsigned)v;
            break;
        case KEY_RECONCILE_MAX_PER_AGENT:
            c->reconcile_max_per_agent = (unsigned)v;
            break;
        case KEY_RECONCILE_MAX_PER_SITE:
            c->reconcile_max_per_site = (unsigned)v;
            break;
        case KEY_RECONCILE_MAX_GLOBAL:
            c->reconcile_max_global = (unsigned)v;
            break;
        case KEY_RECONCILE_MAX_IN_FLIGHT:
            c->reconcile_max_in_flight = (unsigned)v;
            break;
        case KEY_RECONCILE_COMMAND_TTL_MS:
            c->reconcile_command_ttl_ms = (unsigned)v;
            break;
        case KEY_RECONCILE_GRACE_MS:
            c->reconcile_grace_ms = (unsigned)v;
            break;
        default:
            REMS_ASSERT(0 && "not an integer key");
    }
}

/* The value of string key @id. (No string is at offset 0: node_id is.) */
static const char *string_get(const struct config *c, enum key_id id)
{
    PRE(id < KEY_NR && keys[id].offset != 0);
    return (const char *)c + keys[id].offset;
}

/* A label key: 1..CONFIG_LABEL_SIZE-1 printable ASCII bytes, or empty. */
static bool label_valid(const char *s)
{
    size_t i;
    size_t len = strlen(s);
    if (len >= CONFIG_LABEL_SIZE) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (s[i] <= ' ' || s[i] > '~') {
            return false;
        }
    }
    return true;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE",
                                      "yes",  "Yes",  "YES"};
    static const char *const no[] = {"false", "False", "FALSE",
                                     "no",    "No",    "NO"};
    size_t i;

    for (i = 0; i < REMS_ARRAY_SIZE(yes); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return REMS_EINVAL;
}

/* Split "a.b.c.d:port" into @host (CONFIG_ADDR_SIZE bytes), the address
 * in host byte order and the port. Returns 0 or REMS_EINVAL, leaving the
 * outputs untouched. */
static int
address_split(const char *addr, char *host, uint32_t *ip, uint16_t *port)
{
    char h[CONFIG_ADDR_SIZE];
    struct in_addr in;
    const char *colon;
    uint64_t p;
    size_t host_len;
    int rv;

    colon = strrchr(addr, ':');
    if (colon == NULL) {
        rv = REMS_EINVAL;
        goto err;
    }
    host_len = (size_t)(colon - addr);
    if (host_len == 0 || host_len >= sizeof h) {
        rv = REMS_EINVAL;
        goto err;
    }
    memcpy(h, addr, host_len);
    h[host_len] = '\0';
    /* inet_pton() takes only the dotted-quad form, in decimal, without
     * leading zeros, so each address has one spelling. */
    if (inet_pton(AF_INET, h, &in) != 1) {
        rv = REMS_EINVAL;
        goto err;
    }
    if (rems_parse_u64(colon + 1, &p) != 0 || p < 1 || p > 65535) {
        rv = REMS_EINVAL;
        goto err;
    }

    memcpy(host, h, host_len + 1);
    *ip = ntohl(in.s_addr);
    *port = (uint16_t)p;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* Parse @addr into a number that is equal for equal addresses, whatever
 * the spelling of the port: the IPv4 address above the 16-bit port. */
static int address_parse(const char *addr, uint64_t *out)
{
    char host[CONFIG_ADDR_SIZE];
    uint32_t ip;
    uint16_t port;

    if (address_split(addr, host, &ip, &port) != 0) {
        return REMS_EINVAL;
    }
    *out = ((uint64_t)ip << 16) | port;
    return 0;
}

static bool address_valid(const char *addr)
{
    uint64_t unused;
    return address_parse(addr, &unused) == 0;
}

/* Whether @a and @b are the same valid address. */
static bool address_equal(const char *a, const char *b)
{
    uint64_t x;
    uint64_t y;

    return address_parse(a, &x) == 0 && address_parse(b, &y) == 0 && x == y;
}

/* Set key @id of @c from the text @value. Returns 0, or REMS_EINVAL when
 * the value breaks the key's rule (see key_rule()), leaving @c as it was.
 * TYPE_PEERS has its own parsers. */
static int key_set(struct config *c, enum key_id id, const char *value)
{
    const struct key_def *k = &keys[id];
    enum rems_log_level level;
    uint64_t v;
    bool b;

    PRE(id < KEY_NR && k->type != TYPE_PEERS);

    switch (k->type) {
        case TYPE_INT:
            if (rems_parse_u64(value, &v) != 0 || v < k->min || v > k->max) {
                return REMS_EINVAL;
            }
            int_field_set(c, id, v);
            break;
        case TYPE_PATH:
            if (value[0] == '\0' || strlen(value) >= CONFIG_PATH_SIZE) {
                return REMS_EINVAL;
            }
            break;
        case TYPE_OPT_PATH:
            if (strlen(value) >= CONFIG_PATH_SIZE) {
                return REMS_EINVAL;
            }
            break;
        case TYPE_JOIN:
            if (value[0] != '\0' && !address_valid(value)) {
                return REMS_EINVAL;
            }
            break;
        case TYPE_ADDRESS:
            if (!address_valid(value)) {
                return REMS_EINVAL;
            }
            break;
        case TYPE_LOG_LEVEL:
            if (rems_log_level_parse(value, &level) != 0) {
                return REMS_EINVAL;
            }
            break;
        case TYPE_LABEL:
            if (!label_valid(value)) {
                return REMS_EINVAL;
            }
            break;
        case TYPE_BOOL:
            if (parse_bool(value, &b) != 0) {
                return REMS_EINVAL;
            }
            c->fault_injection = b;
            break;
        case TYPE_PEERS:
            return REMS_EINVAL;
    }
    if (k->offset != 0) {
        /* A string that passed its check fits its field. */
        strcpy((char *)c + k->offset, value);
    }
    return 0;
}

/* Set field @field of @p from @value; REMS_EINVAL when it is invalid. */
static int
peer_field_set(struct config_peer *p, enum peer_field field, const char *value)
{
    uint64_t id;

    switch (field) {
        case PEER_ID:
            if (rems_parse_u64(value, &id) != 0 || id == 0) {
                return REMS_EINVAL;
            }
            p->id = id;
            return 0;
        case PEER_RAFT_ADDRESS:
        case PEER_API_ADDRESS:
            if (!address_valid(value)) {
                return REMS_EINVAL;
            }
            strcpy(field == PEER_RAFT_ADDRESS ? p->raft_address
                                              : p->api_address,
                   value);
            return 0;
        default:
            REMS_ASSERT(0 && "no such peer field");
            return REMS_EINVAL;
    }
}

/* The rule for peer field @field, like key_rule(). */
static void peer_field_rule(enum peer_field field, char *rule)
{
    if (field == PEER_ID) {
        key_rule(KEY_NODE_ID, rule);
    } else {
        rems_errmsgf(rule, "%s", ADDRESS_RULE);
    }
}

/* ------------------------------------------------------------------------
 * Defaults and addresses
 * ------------------------------------------------------------------------ */

void config_defaults(struct config *c)
{
    PRE(c != NULL);
    memset(c, 0, sizeof *c);
    c->election_timeout_ms = 1000;
    c->heartbeat_timeout_ms = 100;
    c->snapshot_threshold = 8192;
    c->snapshot_trailing = 8192;
    c->max_body_bytes = 1048576;
    c->forward_timeout_ms = 5000;
    c->lease_ttl_ms = 10000;
    c->agent_heartbeat_ms = 1000;
    c->max_clock_skew_ms = 500;
    c->send_margin_ms = 100;
    c->agent_max_frame_bytes = 1048576;
    strcpy(c->site_label, "site");
    c->reconcile_interval_ms = 2000;
    c->reconcile_rate_window_ms = 600000;
    c->reconcile_max_per_agent = 3;
    c->reconcile_max_per_site = 20;
    c->reconcile_max_global = 100;
    c->reconcile_max_in_flight = 50;
    c->reconcile_command_ttl_ms = 60000;
    c->reconcile_grace_ms = 60000;
    strcpy(c->log_level, "info");
    c->fault_injection = false;
}

int config_split_address(const char *addr, char *host, uint16_t *port)
{
    uint32_t ip;

    PRE(addr != NULL && host != NULL && port != NULL);
    return address_split(addr, host, &ip, port);
}

/* ------------------------------------------------------------------------
 * The YAML file
 * ------------------------------------------------------------------------ */

struct file {
    const char *path;
    yaml_document_t doc;
    char *errmsg;
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

static yaml_node_t *file_node(struct file *f, int index)
{
    yaml_node_t *n = yaml_document_get_node(&f->doc, index);
    REMS_ASSERT(n != NULL); /* libyaml links only nodes it made. */
    return n;
}

/* The text of scalar @n for a value of type @type, or NULL when @n is not
 * a scalar, holds a NUL byte, or is quoted where a number or boolean is
 * expected (in YAML, quotes make a string). A plain null ("", "~", "null")
 * gives "", which only the join key accepts. */
static const char *scalar_text(const yaml_node_t *n, enum key_type type)
{
    static const char *const nulls[] = {"~", "null", "Null", "NULL"};
    const char *s;
    bool plain;
    size_t i;

    if (n->type != YAML_SCALAR_NODE) {
        return NULL;
    }
    s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length) {
        return NULL;
    }
    plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (!plain && (type == TYPE_INT || type == TYPE_BOOL)) {
        return NULL;
    }
    for (i = 0; plain && i < REMS_ARRAY_SIZE(nulls); i++) {
        if (strcmp(s, nulls[i]) == 0) {
            return "";
        }
    }
    return s;
}

/* A key must be a scalar without NUL bytes, so that comparing it as a C
 * string compares all of it. */
static bool scalar_is_name(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE &&
           strlen((const char *)n->data.scalar.value) == n->data.scalar.length;
}

/* A key is printed as at most this many bytes, in case it is long junk. */
#define KEY_PRINT_MAX 64

static const char *root_key_name(size_t i)
{
    return keys[i].name;
}

static const char *peer_key_name(size_t i)
{
    return peer_field_names[i];
}

/* Find mapping key @key among the @n names given by @name_of and store its
 * index in *@found. @seen holds the line of each name found so far, 0 for
 * none. Errors name the key after @where ("" or "peers[1]"): not a name,
 * unknown, or given twice. */
static int file_key_find(struct file *f,
                         const yaml_node_t *key,
                         const char *where,
                         const char *(*name_of)(size_t),
                         size_t n,
                         size_t *seen,
                         size_t *found)
{
    const char *dot = where[0] != '\0' ? "." : "";
    const char *name;
    size_t len;
    size_t i;
    int rv;

    if (!scalar_is_name(key)) {
        rv = file_error(f, key, "%s%skeys must be names", where,
                        where[0] != '\0' ? ": " : "");
        goto err;
    }
    name = (const char *)key->data.scalar.value;
    for (i = 0; i < n; i++) {
        if (strcmp(name, name_of(i)) == 0) {
            break;
        }
    }
    if (i == n) {
        len = strlen(name);
        rv = file_error(f, key, "%s%s%.*s: unknown key", where, dot,
                        (int)(len < KEY_PRINT_MAX ? len : KEY_PRINT_MAX), name);
        goto err;
    }
    if (seen[i] != 0) {
        rv = file_error(f, key, "%s%s%s: duplicate key (first on line %zu)",
                        where, dot, name, seen[i]);
        goto err;
    }
    seen[i] = key->start_mark.line + 1;

    *found = i;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* Load entry @index of the peers list, node @n, into @p. */
static int file_load_peer(struct file *f,
                          yaml_node_t *n,
                          size_t index,
                          struct config_peer *p)
{
    size_t seen[PEER_NR] = {0}; /* Line of each field, 0 if absent. */
    char rule[REMS_ERRMSG_SIZE];
    char where[32];
    yaml_node_pair_t *pair;
    size_t i;
    int rv;

    snprintf(where, sizeof where, "peers[%zu]", index);
    if (n->type != YAML_MAPPING_NODE) {
        rv = file_error(f, n,
                        "%s: must be a mapping with id, raft_address and "
                        "api_address",
                        where);
        goto err;
    }
    for (pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *key = file_node(f, pair->key);
        yaml_node_t *value = file_node(f, pair->value);
        const char *text;

        rv = file_key_find(f, key, where, peer_key_name, PEER_NR, seen, &i);
        if (rv != 0) {
            goto err;
        }
        text = scalar_text(value, i == PEER_ID ? TYPE_INT : TYPE_ADDRESS);
        if (text == NULL || peer_field_set(p, (enum peer_field)i, text) != 0) {
            peer_field_rule((enum peer_field)i, rule);
            rv = file_error(f, value, "%s.%s: %s", where, peer_field_names[i],
                            rule);
            goto err;
        }
    }
    for (i = 0; i < PEER_NR; i++) {
        if (seen[i] == 0) {
            rv =
                file_error(f, n, "%s.%s: required", where, peer_field_names[i]);
            goto err;
        }
    }
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* The file's peers list, node @n, replaces the peers of @c. */
static int file_load_peers(struct file *f, yaml_node_t *n, struct config *c)
{
    struct config_peer peers[CONFIG_MAX_PEERS];
    char rule[REMS_ERRMSG_SIZE];
    yaml_node_item_t *item;
    size_t count = 0;
    int rv;

    if (n->type != YAML_SEQUENCE_NODE) {
        key_rule(KEY_PEERS, rule);
        rv = file_error(f, n, "peers: %s", rule);
        goto err;
    }
    memset(peers, 0, sizeof peers);
    for (item = n->data.sequence.items.start; item < n->data.sequence.items.top;
         item++) {
        yaml_node_t *entry = file_node(f, *item);
        if (count == CONFIG_MAX_PEERS) {
            rv = file_error(f, entry, "peers: at most %d peers are allowed",
                            CONFIG_MAX_PEERS);
            goto err;
        }
        rv = file_load_peer(f, entry, count, &peers[count]);
        if (rv != 0) {
            goto err;
        }
        count++;
    }

    memcpy(c->peers, peers, sizeof peers);
    c->n_peers = count;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* Load the document's root node into @c. */
static int file_load_root(struct file *f, struct config *c)
{
    size_t seen[KEY_NR] = {0}; /* Line of each key, 0 if absent. */
    char rule[REMS_ERRMSG_SIZE];
    yaml_node_pair_t *pair;
    yaml_node_t *root;
    size_t i;
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
        yaml_node_t *key = file_node(f, pair->key);
        yaml_node_t *value = file_node(f, pair->value);
        const char *text;

        rv = file_key_find(f, key, "", root_key_name, KEY_NR, seen, &i);
        if (rv != 0) {
            goto err;
        }
        if (i == KEY_PEERS) {
            rv = file_load_peers(f, value, c);
            if (rv != 0) {
                goto err;
            }
            continue;
        }
        text = scalar_text(value, keys[i].type);
        if (text == NULL || key_set(c, (enum key_id)i, text) != 0) {
            key_rule((enum key_id)i, rule);
            rv = file_error(f, value, "%s: %s", keys[i].name, rule);
            goto err;
        }
    }
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* Report the parse error of @parser. */
static int file_syntax_error(struct file *f, const yaml_parser_t *parser)
{
    const char *problem = parser->problem != NULL ? parser->problem : "error";

    switch (parser->error) {
        case YAML_MEMORY_ERROR:
            rems_errmsg_oom(f->errmsg);
            return REMS_ENOMEM;
        case YAML_READER_ERROR:
            /* The reader (encoding) knows only a byte offset. */
            rems_errmsgf(f->errmsg, "%s: invalid YAML: %s at byte %zu", f->path,
                         problem, parser->problem_offset);
            return REMS_ECONFIG;
        default:
            if (parser->context != NULL) {
                rems_errmsgf(f->errmsg,
                             "%s:%zu: invalid YAML: %s (%s on line %zu)",
                             f->path, parser->problem_mark.line + 1, problem,
                             parser->context, parser->context_mark.line + 1);
            } else {
                rems_errmsgf(f->errmsg, "%s:%zu: invalid YAML: %s", f->path,
                             parser->problem_mark.line + 1, problem);
            }
            return REMS_ECONFIG;
    }
}

/* Read the whole file @path into *@out (rems_malloc'd, @*len bytes). */
static int file_read(const char *path, char **out, size_t *len, char *errmsg)
{
    int rv = rems_read_file(path, CONFIG_FILE_MAX, out, len, errmsg);

    return rv == REMS_ETOOBIG ? REMS_ECONFIG : rv;
}

int config_load_file(struct config *c, const char *path, char *errmsg)
{
    struct config next;
    struct file f;
    yaml_parser_t parser;
    yaml_document_t extra;
    yaml_node_t *extra_root;
    char *text;
    size_t len;
    int rv;

    PRE(c != NULL && path != NULL && errmsg != NULL);

    next = *c;
    f.path = path;
    f.errmsg = errmsg;
    rv = file_read(path, &text, &len, errmsg);
    if (rv != 0) {
        goto err;
    }
    if (yaml_parser_initialize(&parser) == 0) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_read;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    /* On failure yaml_parser_load() frees what it built of the document. */
    if (yaml_parser_load(&parser, &f.doc) == 0) {
        rv = file_syntax_error(&f, &parser);
        goto err_after_parser_init;
    }
    rv = file_load_root(&f, &next);
    if (rv != 0) {
        goto err_after_load;
    }
    /* Parse to the end: a syntax error or a second document after the
     * first is an error too. At the end of the stream yaml_parser_load()
     * gives a document without a root. */
    if (yaml_parser_load(&parser, &extra) == 0) {
        rv = file_syntax_error(&f, &parser);
        goto err_after_load;
    }
    extra_root = yaml_document_get_root_node(&extra);
    if (extra_root != NULL) {
        rv = file_error(&f, extra_root,
                        "only one YAML document is allowed per file");
        yaml_document_delete(&extra);
        goto err_after_load;
    }
    yaml_document_delete(&extra);
    yaml_document_delete(&f.doc);
    yaml_parser_delete(&parser);
    rems_free(text);

    *c = next;
    return 0;

err_after_load:
    yaml_document_delete(&f.doc);
err_after_parser_init:
    yaml_parser_delete(&parser);
err_after_read:
    rems_free(text);
err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * The command line
 * ------------------------------------------------------------------------ */

/* Parse "ID=RAFT_ADDRESS,API_ADDRESS" into @p. */
static int peer_option_parse(const char *s, struct config_peer *p)
{
    char buf[3 * CONFIG_ADDR_SIZE];
    struct config_peer next;
    char *eq;
    char *comma;
    int rv;

    if (strlen(s) >= sizeof buf) {
        rv = REMS_EINVAL;
        goto err;
    }
    strcpy(buf, s);
    eq = strchr(buf, '=');
    comma = eq != NULL ? strchr(eq, ',') : NULL;
    if (comma == NULL) {
        rv = REMS_EINVAL;
        goto err;
    }
    *eq = '\0';
    *comma = '\0';
    memset(&next, 0, sizeof next);
    if (peer_field_set(&next, PEER_ID, buf) != 0 ||
        peer_field_set(&next, PEER_RAFT_ADDRESS, eq + 1) != 0 ||
        peer_field_set(&next, PEER_API_ADDRESS, comma + 1) != 0) {
        rv = REMS_EINVAL;
        goto err;
    }

    *p = next;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* Recognise the option at argv[*i]: its key in *@id and its value, if it
 * takes one, in *@value (NULL for a bare --fault-injection). Advances *@i
 * past a separate value. */
static int option_next(int argc,
                       char **argv,
                       int *i,
                       enum key_id *id,
                       const char **value,
                       char *errmsg)
{
    const char *arg = argv[*i];
    const char *eq;
    size_t name_len;
    size_t k;
    int rv;

    if (arg[0] != '-') {
        rems_errmsgf(errmsg, "%s: unexpected argument", arg);
        rv = REMS_ECONFIG;
        goto err;
    }
    eq = strchr(arg, '=');
    name_len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    for (k = 0; k < KEY_OPTION_NR; k++) {
        if (strlen(keys[k].option) == name_len &&
            memcmp(arg, keys[k].option, name_len) == 0) {
            break;
        }
    }
    if (k == KEY_OPTION_NR) {
        rems_errmsgf(errmsg, "%.*s: unknown option", (int)name_len, arg);
        rv = REMS_ECONFIG;
        goto err;
    }
    if (eq != NULL) {
        *value = eq + 1;
    } else if (keys[k].type == TYPE_BOOL) {
        *value = NULL;
    } else if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) {
        /* A following option is not taken as a value: "--data-dir
         * --node-id 1" is a mistake, not a directory named "--node-id".
         * Such a value can still be given as --data-dir=--odd. */
        *i += 1;
        *value = argv[*i];
    } else {
        rems_errmsgf(errmsg, "%s: needs a value", keys[k].option);
        rv = REMS_ECONFIG;
        goto err;
    }

    *id = (enum key_id)k;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* Apply option @id with @value to @c; *@peers_given tells whether an
 * earlier --peer already replaced the file's peers. */
static int option_apply(struct config *c,
                        enum key_id id,
                        const char *value,
                        bool *peers_given,
                        char *errmsg)
{
    char rule[REMS_ERRMSG_SIZE];
    const char *option = keys[id].option;
    int rv;

    if (id == KEY_PEERS) {
        if (!*peers_given) {
            c->n_peers = 0;
            *peers_given = true;
        }
        if (c->n_peers == CONFIG_MAX_PEERS) {
            rems_errmsgf(errmsg, "%s: at most %d peers are allowed", option,
                         CONFIG_MAX_PEERS);
            rv = REMS_ECONFIG;
            goto err;
        }
        if (peer_option_parse(value, &c->peers[c->n_peers]) != 0) {
            rems_errmsgf(errmsg, "%s: %s", option, PEER_OPTION_RULE);
            rv = REMS_ECONFIG;
            goto err;
        }
        c->n_peers++;
    } else if (key_set(c, id, value != NULL ? value : "true") != 0) {
        key_rule(id, rule);
        rems_errmsgf(errmsg, "%s: %s", option, rule);
        rv = REMS_ECONFIG;
        goto err;
    }
    return 0;

err:
    POST(rv != 0);
    return rv;
}

int config_parse_args(struct config *c, int argc, char **argv, char *errmsg)
{
    struct config next;
    const char *config_path = NULL;
    const char *value;
    bool peers_given = false;
    enum key_id id;
    char rule[REMS_ERRMSG_SIZE];
    int i;
    int rv;

    PRE(c != NULL && argc >= 0 && (argc == 0 || argv != NULL) &&
        errmsg != NULL);

    /* First pass: the shape of every option, and where the file is. */
    for (i = 0; i < argc; i++) {
        rv = option_next(argc, argv, &i, &id, &value, errmsg);
        if (rv != 0) {
            goto err;
        }
        if (id != KEY_CONFIG) {
            continue;
        }
        if (config_path != NULL) {
            rems_errmsgf(errmsg, "--config: given more than once");
            rv = REMS_ECONFIG;
            goto err;
        }
        if (value[0] == '\0' || strlen(value) >= CONFIG_PATH_SIZE) {
            key_rule(KEY_CONFIG, rule);
            rems_errmsgf(errmsg, "--config: %s", rule);
            rv = REMS_ECONFIG;
            goto err;
        }
        config_path = value;
    }

    next = *c;
    if (config_path != NULL) {
        rv = config_load_file(&next, config_path, errmsg);
        if (rv != 0) {
            goto err;
        }
    }
    /* Second pass: the other options override the file, in order. */
    for (i = 0; i < argc; i++) {
        rv = option_next(argc, argv, &i, &id, &value, errmsg);
        REMS_ASSERT(rv == 0); /* The first pass saw the same options. */
        if (id == KEY_CONFIG) {
            continue;
        }
        rv = option_apply(&next, id, value, &peers_given, errmsg);
        if (rv != 0) {
            goto err;
        }
    }

    *c = next;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------ */

/* One address of the cluster, for the uniqueness check. */
struct address_use {
    const char *address;
    char name[48]; /* "peers[8].raft_address" */
};

/* Check the peers list: each entry valid, ids unique, every address used
 * once, and this node among them with its own addresses. */
static int validate_peers(const struct config *c, char *errmsg)
{
    struct address_use uses[2 * CONFIG_MAX_PEERS];
    const struct config_peer *p;
    char rule[REMS_ERRMSG_SIZE];
    bool self_found = false;
    size_t n_uses = 0;
    size_t i;
    size_t j;
    int rv;

    if (c->n_peers > CONFIG_MAX_PEERS) {
        rems_errmsgf(errmsg, "peers: at most %d peers are allowed",
                     CONFIG_MAX_PEERS);
        rv = REMS_ECONFIG;
        goto err;
    }
    for (i = 0; i < c->n_peers; i++) {
        p = &c->peers[i];
        if (p->id == 0) {
            peer_field_rule(PEER_ID, rule);
            rems_errmsgf(errmsg, "peers[%zu].id: %s", i, rule);
            rv = REMS_ECONFIG;
            goto err;
        }
        for (j = 0; j < i; j++) {
            if (c->peers[j].id == p->id) {
                rems_errmsgf(errmsg,
                             "peers[%zu].id: %" PRIu64
                             " is also the id of peers[%zu]",
                             i, p->id, j);
                rv = REMS_ECONFIG;
                goto err;
            }
        }
        uses[n_uses].address = p->raft_address;
        snprintf(uses[n_uses].name, sizeof uses[n_uses].name,
                 "peers[%zu].raft_address", i);
        n_uses++;
        uses[n_uses].address = p->api_address;
        snprintf(uses[n_uses].name, sizeof uses[n_uses].name,
                 "peers[%zu].api_address", i);
        n_uses++;
    }
    for (i = 0; i < n_uses; i++) {
        if (!address_valid(uses[i].address)) {
            rems_errmsgf(errmsg, "%s: %s", uses[i].name, ADDRESS_RULE);
            rv = REMS_ECONFIG;
            goto err;
        }
        for (j = 0; j < i; j++) {
            if (address_equal(uses[i].address, uses[j].address)) {
                rems_errmsgf(errmsg, "%s: %s is also %s", uses[i].name,
                             uses[i].address, uses[j].name);
                rv = REMS_ECONFIG;
                goto err;
            }
        }
    }
    for (i = 0; i < c->n_peers; i++) {
        p = &c->peers[i];
        if (p->id == c->node_id &&
            address_equal(p->raft_address, c->raft_address) &&
            address_equal(p->api_address, c->api_address)) {
            self_found = true;
        }
    }
    if (c->n_peers > 0 && !self_found) {
        rems_errmsgf(errmsg,
                     "peers: must contain this node (node_id %" PRIu64
                     ") with raft_address %s and api_address %s",
                     c->node_id, c->raft_address, c->api_address);
        rv = REMS_ECONFIG;
        goto err;
    }
    return 0;

err:
    POST(rv != 0);
    return rv;
}

int config_validate(const struct config *c, char *errmsg)
{
    static const enum key_id strings[] = {KEY_DATA_DIR, KEY_RAFT_ADDRESS,
                                          KEY_API_ADDRESS, KEY_JOIN,
                                          KEY_AGENT_ADDRESS};
    enum rems_log_level level;
    char rule[REMS_ERRMSG_SIZE];
    const char *s;
    enum key_id id;
    uint64_t v;
    size_t i;
    int rv;

    PRE(c != NULL && errmsg != NULL);

    if (c->node_id == 0) {
        rems_errmsgf(errmsg, "node_id: required");
        rv = REMS_ECONFIG;
        goto err;
    }
    for (i = 0; i < REMS_ARRAY_SIZE(strings); i++) {
        id = strings[i];
        if (id != KEY_JOIN && id != KEY_AGENT_ADDRESS &&
            string_get(c, id)[0] == '\0') {
            rems_errmsgf(errmsg, "%s: required", keys[id].name);
            rv = REMS_ECONFIG;
            goto err;
        }
    }
    /* The struct may have been filled in by code rather than parsed, so
     * each field's own rule is checked again. */
    for (i = 0; i < REMS_ARRAY_SIZE(strings); i++) {
        id = strings[i];
        s = string_get(c, id);
        if (keys[id].type == TYPE_PATH ||
            (keys[id].type == TYPE_JOIN && s[0] == '\0')) {
            continue;
        }
        if (!address_valid(s)) {
            key_rule(id, rule);
            rems_errmsgf(errmsg, "%s: %s", keys[id].name, rule);
            rv = REMS_ECONFIG;
            goto err;
        }
    }
    if (!label_valid(c->site_label)) {
        key_rule(KEY_SITE_LABEL, rule);
        rems_errmsgf(errmsg, "site_label: %s", rule);
        rv = REMS_ECONFIG;
        goto err;
    }
    if (address_equal(c->raft_address, c->api_address)) {
        rems_errmsgf(errmsg, "api_address: must differ from raft_address");
        rv = REMS_ECONFIG;
        goto err;
    }
    if (c->agent_address[0] != '\0' &&
        (address_equal(c->agent_address, c->raft_address) ||
         address_equal(c->agent_address, c->api_address))) {
        rems_errmsgf(errmsg, "agent_address: must differ from raft_address "
                             "and api_address");
        rv = REMS_ECONFIG;
        goto err;
    }
    if (c->agent_address[0] != '\0') {
        static const enum key_id tls[] = {KEY_TLS_CERT, KEY_TLS_KEY,
                                          KEY_TLS_CA};
        for (i = 0; i < REMS_ARRAY_SIZE(tls); i++) {
            if (string_get(c, tls[i])[0] == '\0') {
                rems_errmsgf(errmsg,
                             "%s: required when agent_address is set "
                             "(agents are authenticated with mTLS)",
                             keys[tls[i]].name);
                rv = REMS_ECONFIG;
                goto err;
            }
        }
    }
    for (i = 0; i < KEY_NR; i++) {
        if (keys[i].type != TYPE_INT) {
            continue;
        }
        v = int_field_get(c, (enum key_id)i);
        if (v < keys[i].min || v > keys[i].max) {
            key_rule((enum key_id)i, rule);
            rems_errmsgf(errmsg, "%s: %s", keys[i].name, rule);
            rv = REMS_ECONFIG;
            goto err;
        }
    }
    if (c->election_timeout_ms < 2 * (uint64_t)c->heartbeat_timeout_ms) {
        rems_errmsgf(errmsg,
                     "election_timeout_ms: must be at least twice "
                     "heartbeat_timeout_ms (%u < 2 * %u)",
                     c->election_timeout_ms, c->heartbeat_timeout_ms);
        rv = REMS_ECONFIG;
        goto err;
    }
    if (c->lease_ttl_ms < 2 * (uint64_t)c->agent_heartbeat_ms) {
        rems_errmsgf(errmsg,
                     "lease_ttl_ms: must be at least twice agent_heartbeat_ms "
                     "(%u < 2 * %u)",
                     c->lease_ttl_ms, c->agent_heartbeat_ms);
        rv = REMS_ECONFIG;
        goto err;
    }
    if (c->snapshot_trailing > c->snapshot_threshold) {
        rems_errmsgf(errmsg,
                     "snapshot_trailing: must not exceed snapshot_threshold "
                     "(%u > %u)",
                     c->snapshot_trailing, c->snapshot_threshold);
        rv = REMS_ECONFIG;
        goto err;
    }
    if (rems_log_level_parse(c->log_level, &level) != 0) {
        key_rule(KEY_LOG_LEVEL, rule);
        rems_errmsgf(errmsg, "log_level: %s", rule);
        rv = REMS_ECONFIG;
        goto err;
    }
    rv = validate_peers(c, errmsg);
    if (rv != 0) {
        goto err;
    }
    if (c->join[0] != '\0' && c->n_peers > 0) {
        rems_errmsgf(errmsg, "join: cannot be combined with peers");
        rv = REMS_ECONFIG;
        goto err;
    }
    return 0;

err:
    POST(rv != 0);
    return rv;
}
