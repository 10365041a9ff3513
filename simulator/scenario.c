/* simulator/scenario.c: reading and checking scenario files.
 *
 * The file is loaded whole with libyaml's document API (as cluster/config.c
 * loads remsd's configuration), then walked: every mapping goes through
 * map_fields(), which refuses a node that is not a mapping, a key that is
 * not a name, an unknown key and a key given twice, and hands back the
 * value node of each known key (NULL when absent). Each section then reads
 * its values with the scalar readers (integers, numbers, booleans,
 * strings, node names, agent counts), which name the field by its path in
 * their errors. The cluster is read before the steps, so a node id is
 * checked against the cluster's size where it stands.
 *
 * Ownership: the strings of a scenario (name, description, the
 * apply_policy and crash_services fields) are rems_malloc'd and released
 * by scenario_close(); on failure scenario_parse() releases what it built
 * and leaves the output untouched. */
#include "simulator/scenario.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "agentproto/proto.h"
#include "common/assert.h"
#include "common/file.h"
#include "common/heap.h"
#include "common/util.h"
#include "statemachine/statemachine.h" /* statemachine_key_check() */

/* A field path is at most this long ("steps[255].issue_commands.rate"). */
#define WHERE_SIZE 96
/* Most keys one mapping of the schema has. */
#define FIELDS_MAX 12
/* A key is printed as at most this many bytes, in case it is long junk. */
#define KEY_PRINT_MAX 64

struct parser {
    const char *path;
    yaml_document_t doc;
    char *errmsg;
    struct scenario *s;
};

/* ------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------ */

static const char *const step_names[SCENARIO_STEP_NR] = {
    [SCENARIO_STEP_WAIT] = "wait",
    [SCENARIO_STEP_WAIT_AGENTS] = "wait_agents",
    [SCENARIO_STEP_WAIT_LEADER] = "wait_leader",
    [SCENARIO_STEP_APPLY_POLICY] = "apply_policy",
    [SCENARIO_STEP_ISSUE_COMMANDS] = "issue_commands",
    [SCENARIO_STEP_KILL_LEADER] = "kill_leader",
    [SCENARIO_STEP_KILL_NODE] = "kill_node",
    [SCENARIO_STEP_PAUSE_LEADER] = "pause_leader",
    [SCENARIO_STEP_PAUSE_NODE] = "pause_node",
    [SCENARIO_STEP_ISOLATE] = "isolate",
    [SCENARIO_STEP_RESTART_NODE] = "restart_node",
    [SCENARIO_STEP_TRANSFER_LEADERSHIP] = "transfer_leadership",
    [SCENARIO_STEP_ROLLING_RESTART] = "rolling_restart",
    [SCENARIO_STEP_CRASH_SERVICES] = "crash_services",
    [SCENARIO_STEP_RECONNECT_ALL] = "reconnect_all",
    [SCENARIO_STEP_WAIT_ROLLOUT] = "wait_rollout",
};

static const char *const assertion_names[SCENARIO_ASSERT_NR] = {
    [SCENARIO_ASSERT_LEADER_WITHIN_MS] = "leader_within_ms",
    [SCENARIO_ASSERT_COMMANDS_EXACTLY_ONCE] = "commands_exactly_once",
    [SCENARIO_ASSERT_NO_LATE_EXECUTION] = "no_late_execution",
    [SCENARIO_ASSERT_DRIFT_DETECTED_WITHIN_MS] = "drift_detected_within_ms",
    [SCENARIO_ASSERT_NOMINAL_WITHIN_MS] = "nominal_within_ms",
};

static const char *const behaviour_names[SCENARIO_BEHAVIOUR_NR] = {
    [SCENARIO_BEHAVIOUR_HEALTHY] = "healthy",
    [SCENARIO_BEHAVIOUR_CRASH_LOOP] = "crash_loop",
    [SCENARIO_BEHAVIOUR_CRASH_AFTER] = "crash_after",
    [SCENARIO_BEHAVIOUR_SLOW_HEALTH] = "slow_health",
    [SCENARIO_BEHAVIOUR_HUNG_STOP] = "hung_stop",
};

const char *scenario_step_name(enum scenario_step_kind kind)
{
    if (kind <= 0 || kind >= SCENARIO_STEP_NR) {
        return "unknown";
    }
    return step_names[kind];
}

const char *scenario_assertion_name(enum scenario_assertion_kind kind)
{
    if (kind <= 0 || kind >= SCENARIO_ASSERT_NR) {
        return "unknown";
    }
    return assertion_names[kind];
}

const char *scenario_behaviour_name(enum scenario_behaviour_kind kind)
{
    if (kind <= 0 || kind >= SCENARIO_BEHAVIOUR_NR) {
        return "unknown";
    }
    return behaviour_names[kind];
}

size_t scenario_count_of(const struct scenario_count *c, size_t total)
{
    size_t n;

    if (c->all) {
        return total;
    }
    if (c->percent) {
        n = (total * c->value + 99) / 100;
    } else {
        n = c->value;
    }
    if (n == 0 && c->value != 0) {
        n = 1;
    }
    return n < total ? n : total;
}

/* ------------------------------------------------------------------------
 * Errors and nodes
 * ------------------------------------------------------------------------ */

static int p_error(struct parser *p, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write "<path>:<line>: <message>" with the line of @n; REMS_ECONFIG. */
static int p_error(struct parser *p, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[REMS_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rems_errmsgf(p->errmsg, "%s:%zu: %s", p->path, n->start_mark.line + 1, msg);
    return REMS_ECONFIG;
}

static int p_oom(struct parser *p)
{
    rems_errmsg_oom(p->errmsg);
    return REMS_ENOMEM;
}

static yaml_node_t *p_node(struct parser *p, int index)
{
    yaml_node_t *n = yaml_document_get_node(&p->doc, index);
    REMS_ASSERT(n != NULL); /* libyaml links only nodes it made. */
    return n;
}

static unsigned line_of(const yaml_node_t *n)
{
    return (unsigned)n->start_mark.line + 1;
}

/* The text of scalar @n, or NULL when it is not a scalar or holds a NUL. */
static const char *scalar(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE ||
        strlen((const char *)n->data.scalar.value) != n->data.scalar.length) {
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

static bool is_plain(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE &&
           n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* A plain null: "", "~", "null". */
static bool is_null(const yaml_node_t *n)
{
    const char *s = scalar(n);
    return s != NULL && is_plain(n) &&
           (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
            strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0);
}

/* Check that @n (at @where, "" for the top) is a mapping whose keys are
 * among the @n_names @names, each at most once, and store each key's value
 * node in @values (NULL when absent). @what describes the mapping in the
 * error for a node of another type. A plain null counts as an empty
 * mapping when @null_ok. */
static int map_fields(struct parser *p,
                      yaml_node_t *n,
                      const char *where,
                      const char *what,
                      bool null_ok,
                      const char *const *names,
                      size_t n_names,
                      yaml_node_t **values)
{
    size_t seen[FIELDS_MAX] = {0};
    const char *dot = where[0] != '\0' ? "." : "";
    yaml_node_pair_t *pair;
    size_t i;

    PRE(n_names <= FIELDS_MAX);
    for (i = 0; i < n_names; i++) {
        values[i] = NULL;
    }
    if (null_ok && is_null(n)) {
        return 0;
    }
    if (n->type != YAML_MAPPING_NODE) {
        return p_error(p, n, "%s%s must be %s", where,
                       where[0] != '\0' ? ":" : "the file", what);
    }
    for (pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *key = p_node(p, pair->key);
        const char *name = scalar(key);
        size_t len;

        if (name == NULL) {
            return p_error(p, key, "%s%skeys must be names", where,
                           where[0] != '\0' ? ": " : "");
        }
        for (i = 0; i < n_names; i++) {
            if (strcmp(name, names[i]) == 0) {
                break;
            }
        }
        if (i == n_names) {
            len = strlen(name);
            return p_error(p, key, "%s%s%.*s: unknown key", where, dot,
                           (int)(len < KEY_PRINT_MAX ? len : KEY_PRINT_MAX),
                           name);
        }
        if (seen[i] != 0) {
            return p_error(p, key, "%s%s%s: duplicate key (first on line %zu)",
                           where, dot, name, seen[i]);
        }
        seen[i] = key->start_mark.line + 1;
        values[i] = p_node(p, pair->value);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Scalars
 * ------------------------------------------------------------------------ */

/* An integer @min..@max, plain (quotes make a string). */
static int get_uint(struct parser *p,
                    const yaml_node_t *n,
                    const char *where,
                    const char *field,
                    uint64_t min,
                    uint64_t max,
                    uint64_t *out)
{
    const char *s = scalar(n);
    uint64_t v;

    if (s == NULL || !is_plain(n) || rems_parse_u64(s, &v) != 0 || v < min ||
        v > max) {
        return p_error(p, n, "%s.%s: must be an integer between %llu and %llu",
                       where, field, (unsigned long long)min,
                       (unsigned long long)max);
    }
    *out = v;
    return 0;
}

static int get_unsigned(struct parser *p,
                        const yaml_node_t *n,
                        const char *where,
                        const char *field,
                        unsigned min,
                        unsigned max,
                        unsigned *out)
{
    uint64_t v;
    int rv = get_uint(p, n, where, field, min, max, &v);
    if (rv == 0) {
        *out = (unsigned)v;
    }
    return rv;
}

/* A decimal number, plain, in (@min, @max] when @min_excl, else
 * [@min, @max]. */
static int get_number(struct parser *p,
                      const yaml_node_t *n,
                      const char *where,
                      const char *field,
                      double min,
                      bool min_excl,
                      double max,
                      double *out)
{
    const char *s = scalar(n);
    char *end;
    double v;

    if (s == NULL || !is_plain(n) || s[0] == '\0' ||
        strspn(s, "0123456789.") != strlen(s)) {
        goto bad;
    }
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) ||
        (min_excl ? v <= min : v < min) || v > max) {
        goto bad;
    }
    *out = v;
    return 0;

bad:
    return p_error(p, n, "%s.%s: must be a number %s %g and at most %g", where,
                   field, min_excl ? "above" : "of at least", min, max);
}

static int get_bool(struct parser *p,
                    const yaml_node_t *n,
                    const char *where,
                    const char *field,
                    bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE",
                                      "yes",  "Yes",  "YES"};
    static const char *const no[] = {"false", "False", "FALSE",
                                     "no",    "No",    "NO"};
    const char *s = scalar(n);
    size_t i;

    for (i = 0; s != NULL && is_plain(n) && i < REMS_ARRAY_SIZE(yes); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return p_error(p, n, "%s.%s: must be true or false", where, field);
}

/* A string of 1..@max bytes without control characters, copied. */
static int get_string(struct parser *p,
                      const yaml_node_t *n,
                      const char *where,
                      const char *field,
                      size_t max,
                      char **out)
{
    const char *s = scalar(n);
    size_t i;
    char *copy;

    if (s == NULL || is_null(n) || strlen(s) > max) {
        goto bad;
    }
    for (i = 0; s[i] != '\0'; i++) {
        if ((unsigned char)s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') {
            goto bad;
        }
    }
    copy = rems_strdup(s);
    if (copy == NULL) {
        return p_oom(p);
    }
    *out = copy;
    return 0;

bad:
    return p_error(p, n, "%s.%s: must be a string of 1 to %zu bytes", where,
                   field, max);
}

/* A service name: 1..64 bytes of [A-Za-z0-9._:@-] (docs/api.md). */
static bool service_name_valid(const char *s)
{
    size_t len = strlen(s);
    return len >= 1 && len <= 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._:@-") == len;
}

static int get_service(struct parser *p,
                       const yaml_node_t *n,
                       const char *where,
                       char **out)
{
    const char *s = scalar(n);
    char *copy;

    if (s == NULL || is_null(n) || !service_name_valid(s)) {
        return p_error(p, n,
                       "%s.service: must be a service name (1 to 64 of "
                       "A-Z a-z 0-9 . _ : @ -)",
                       where);
    }
    copy = rems_strdup(s);
    if (copy == NULL) {
        return p_oom(p);
    }
    *out = copy;
    return 0;
}

/* A node: leader, follower, or an id 1..cluster.nodes. */
static int get_node(struct parser *p,
                    const yaml_node_t *n,
                    const char *where,
                    const char *field,
                    struct scenario_node *out)
{
    const char *s = scalar(n);
    uint64_t id;

    out->line = line_of(n);
    out->field = field;
    if (s != NULL && strcmp(s, "leader") == 0) {
        out->kind = SCENARIO_NODE_LEADER;
        return 0;
    }
    if (s != NULL && strcmp(s, "follower") == 0) {
        out->kind = SCENARIO_NODE_FOLLOWER;
        return 0;
    }
    if (s != NULL && is_plain(n) && rems_parse_u64(s, &id) == 0 && id >= 1 &&
        id <= p->s->cluster.nodes) {
        out->kind = SCENARIO_NODE_ID;
        out->id = id;
        return 0;
    }
    return p_error(p, n, "%s.%s: must be leader, follower or a node id 1..%u",
                   where, field, p->s->cluster.nodes);
}

/* A count of agents: all, an integer >= 1, or "N%" with N 1..100. */
static int get_count(struct parser *p,
                     const yaml_node_t *n,
                     const char *where,
                     const char *field,
                     struct scenario_count *out)
{
    const char *s = scalar(n);
    char digits[16];
    size_t len;
    uint64_t v;

    memset(out, 0, sizeof *out);
    if (s == NULL) {
        goto bad;
    }
    if (strcmp(s, "all") == 0) {
        out->all = true;
        return 0;
    }
    len = strlen(s);
    if (len >= 2 && len < sizeof digits && s[len - 1] == '%') {
        memcpy(digits, s, len - 1);
        digits[len - 1] = '\0';
        if (rems_parse_u64(digits, &v) == 0 && v >= 1 && v <= 100) {
            out->percent = true;
            out->value = (unsigned)v;
            return 0;
        }
        goto bad;
    }
    if (is_plain(n) && rems_parse_u64(s, &v) == 0 && v >= 1 &&
        v <= SCENARIO_MAX_AGENTS) {
        out->value = (unsigned)v;
        return 0;
    }

bad:
    return p_error(p, n,
                   "%s.%s: must be all, a count of agents from 1 or a "
                   "percent such as \"10%%\"",
                   where, field);
}

/* ------------------------------------------------------------------------
 * YAML to JSON (inline policy documents)
 * ------------------------------------------------------------------------ */

/* Plain scalars become JSON integers, reals, booleans and null as YAML 1.2
 * reads them; anything quoted stays a string. */
static json_t *scalar_json(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    uint64_t u;
    char *end;
    double d;

    if (!is_plain(n)) {
        return json_stringn(s, n->data.scalar.length);
    }
    if (is_null(n)) {
        return json_null();
    }
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        return json_boolean(s[0] == 't');
    }
    if (rems_parse_u64(s, &u) == 0 && u <= (uint64_t)INT64_MAX) {
        return json_integer((json_int_t)u);
    }
    if (s[0] == '-' && rems_parse_u64(s + 1, &u) == 0 &&
        u <= (uint64_t)INT64_MAX) {
        return json_integer(-(json_int_t)u);
    }
    if (strspn(s, "0123456789.-+eE") == strlen(s)) {
        d = strtod(s, &end);
        if (*end == '\0' && isfinite(d)) {
            return json_real(d);
        }
    }
    return json_stringn(s, n->data.scalar.length);
}

/* Convert @n; NULL with @errmsg set on failure (REMS_ECONFIG or ENOMEM in
 * *@rv). */
static json_t *
to_json(struct parser *p, yaml_node_t *n, const char *where, int depth, int *rv)
{
    yaml_node_pair_t *pair;
    yaml_node_item_t *item;
    json_t *o;
    json_t *v;

    if (depth > 64) {
        *rv = p_error(p, n, "%s: nested too deeply", where);
        return NULL;
    }
    switch (n->type) {
        case YAML_SCALAR_NODE:
            o = scalar_json(n);
            if (o == NULL) {
                *rv = p_oom(p);
            }
            return o;
        case YAML_SEQUENCE_NODE:
            o = json_array();
            if (o == NULL) {
                *rv = p_oom(p);
                return NULL;
            }
            for (item = n->data.sequence.items.start;
                 item < n->data.sequence.items.top; item++) {
                v = to_json(p, p_node(p, *item), where, depth + 1, rv);
                if (v == NULL || json_array_append_new(o, v) != 0) {
                    if (v != NULL) {
                        *rv = p_oom(p);
                    }
                    json_decref(o);
                    return NULL;
                }
            }
            return o;
        case YAML_MAPPING_NODE:
            o = json_object();
            if (o == NULL) {
                *rv = p_oom(p);
                return NULL;
            }
            for (pair = n->data.mapping.pairs.start;
                 pair < n->data.mapping.pairs.top; pair++) {
                yaml_node_t *key = p_node(p, pair->key);
                const char *name = scalar(key);
                if (name == NULL) {
                    *rv = p_error(p, key, "%s: keys must be names", where);
                    json_decref(o);
                    return NULL;
                }
                v = to_json(p, p_node(p, pair->value), where, depth + 1, rv);
                if (v == NULL || json_object_set_new(o, name, v) != 0) {
                    if (v != NULL) {
                        *rv = p_oom(p);
                    }
                    json_decref(o);
                    return NULL;
                }
            }
            return o;
        default:
            *rv = p_error(p, n, "%s: not a YAML value", where);
            return NULL;
    }
}

/* ------------------------------------------------------------------------
 * Sections
 * ------------------------------------------------------------------------ */

static int load_cluster(struct parser *p, yaml_node_t *n)
{
    static const char *const names[] = {
        "nodes",        "election_timeout_ms", "heartbeat_timeout_ms",
        "lease_ttl_ms", "agent_heartbeat_ms",  "reconcile_interval_ms",
    };
    struct scenario_cluster *c = &p->s->cluster;
    yaml_node_t *v[REMS_ARRAY_SIZE(names)];
    int rv;

    rv = map_fields(p, n, "cluster", "a mapping of the cluster's settings",
                    true, names, REMS_ARRAY_SIZE(names), v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] != NULL) {
        const char *s = scalar(v[0]);
        if (s == NULL || !is_plain(v[0]) ||
            (strcmp(s, "3") != 0 && strcmp(s, "5") != 0)) {
            return p_error(p, v[0], "cluster.nodes: must be 3 or 5");
        }
        c->nodes = (unsigned)(s[0] - '0');
    }
    if ((v[1] != NULL &&
         (rv = get_unsigned(p, v[1], "cluster", names[1], 50, 60000,
                            &c->election_timeout_ms)) != 0) ||
        (v[2] != NULL &&
         (rv = get_unsigned(p, v[2], "cluster", names[2], 10, 10000,
                            &c->heartbeat_timeout_ms)) != 0) ||
        (v[3] != NULL && (rv = get_unsigned(p, v[3], "cluster", names[3], 500,
                                            3600000, &c->lease_ttl_ms)) != 0) ||
        (v[4] != NULL &&
         (rv = get_unsigned(p, v[4], "cluster", names[4], 50, 600000,
                            &c->agent_heartbeat_ms)) != 0) ||
        (v[5] != NULL &&
         (rv = get_unsigned(p, v[5], "cluster", names[5], 100, 600000,
                            &c->reconcile_interval_ms)) != 0)) {
        return rv;
    }
    if (c->election_timeout_ms < 2 * c->heartbeat_timeout_ms) {
        return p_error(p, v[1] != NULL ? v[1] : n,
                       "cluster.election_timeout_ms: must be at least twice "
                       "heartbeat_timeout_ms (%u < 2 * %u)",
                       c->election_timeout_ms, c->heartbeat_timeout_ms);
    }
    if (c->lease_ttl_ms < 2 * c->agent_heartbeat_ms) {
        return p_error(p, v[3] != NULL ? v[3] : n,
                       "cluster.lease_ttl_ms: must be at least twice "
                       "agent_heartbeat_ms (%u < 2 * %u)",
                       c->lease_ttl_ms, c->agent_heartbeat_ms);
    }
    return 0;
}

/* The behaviours, and which of the keys crash_after_ms (bit 0),
 * restart_ms (1), health_delay_ms (2), stop_hang_ms (3) each takes. */
static const struct {
    const char *name;
    enum scenario_behaviour_kind kind;
    unsigned keys;
} behaviour_keys[] = {
    {"healthy", SCENARIO_BEHAVIOUR_HEALTHY, 0},
    {"crash_after", SCENARIO_BEHAVIOUR_CRASH_AFTER, 1u},
    {"crash_loop", SCENARIO_BEHAVIOUR_CRASH_LOOP, 1u | 2u},
    {"slow_health", SCENARIO_BEHAVIOUR_SLOW_HEALTH, 4u},
    {"hung_stop", SCENARIO_BEHAVIOUR_HUNG_STOP, 8u},
};

static int load_behaviour(struct parser *p,
                          yaml_node_t *n,
                          size_t index,
                          struct scenario_behaviour *b)
{
    static const char *const names[] = {"behaviour",       "fraction",
                                        "crash_after_ms",  "restart_ms",
                                        "health_delay_ms", "stop_hang_ms"};
    static const unsigned min_ms[] = {100, 1, 1, 1};
    unsigned *const dest[] = {&b->crash_after_ms, &b->restart_ms,
                              &b->health_delay_ms, &b->stop_hang_ms};
    yaml_node_t *v[REMS_ARRAY_SIZE(names)];
    char where[WHERE_SIZE];
    const char *s;
    size_t kind;
    size_t k;
    int rv;

    snprintf(where, sizeof where, "agents.behaviours[%zu]", index);
    rv = map_fields(p, n, where,
                    "a mapping with behaviour and fraction (and the "
                    "behaviour's own keys)",
                    false, names, REMS_ARRAY_SIZE(names), v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] == NULL) {
        return p_error(p, n, "%s.behaviour: required", where);
    }
    s = scalar(v[0]);
    for (kind = 0; kind < REMS_ARRAY_SIZE(behaviour_keys); kind++) {
        if (s != NULL && strcmp(s, behaviour_keys[kind].name) == 0) {
            break;
        }
    }
    if (kind == REMS_ARRAY_SIZE(behaviour_keys)) {
        return p_error(p, v[0],
                       "%s.behaviour: must be healthy, crash_after, "
                       "crash_loop, slow_health or hung_stop",
                       where);
    }
    b->kind = behaviour_keys[kind].kind;
    if (v[1] == NULL) {
        return p_error(p, n, "%s.fraction: required", where);
    }
    rv = get_number(p, v[1], where, "fraction", 0, true, 1, &b->fraction);
    if (rv != 0) {
        return rv;
    }
    b->crash_after_ms = SCENARIO_DEFAULT_CRASH_AFTER_MS;
    b->restart_ms = SCENARIO_DEFAULT_RESTART_MS;
    b->health_delay_ms = SCENARIO_DEFAULT_HEALTH_DELAY_MS;
    b->stop_hang_ms = SCENARIO_DEFAULT_STOP_HANG_MS;
    for (k = 0; k < REMS_ARRAY_SIZE(dest); k++) {
        yaml_node_t *x = v[k + 2];
        if (x == NULL) {
            continue;
        }
        if ((behaviour_keys[kind].keys & (1u << k)) == 0) {
            return p_error(p, x, "%s.%s: %s does not take %s", where,
                           names[k + 2], behaviour_keys[kind].name,
                           names[k + 2]);
        }
        rv = get_unsigned(p, x, where, names[k + 2], min_ms[k],
                          SCENARIO_MS_MAX, dest[k]);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int load_agents(struct parser *p, yaml_node_t *n)
{
    static const char *const names[] = {"count", "services", "heartbeat_ms",
                                        "ramp_per_s", "behaviours"};
    struct scenario_agents *a = &p->s->agents;
    yaml_node_t *v[REMS_ARRAY_SIZE(names)];
    yaml_node_item_t *item;
    double sum = 0;
    int rv;

    rv = map_fields(p, n, "agents", "a mapping of the agents' settings", true,
                    names, REMS_ARRAY_SIZE(names), v);
    if (rv != 0) {
        return rv;
    }
    if ((v[0] != NULL &&
         (rv = get_unsigned(p, v[0], "agents", names[0], 1, SCENARIO_MAX_AGENTS,
                            &a->count)) != 0) ||
        (v[1] != NULL &&
         (rv = get_unsigned(p, v[1], "agents", names[1], 0,
                            SCENARIO_MAX_SERVICES, &a->services)) != 0) ||
        (v[2] != NULL && (rv = get_unsigned(p, v[2], "agents", names[2], 0,
                                            600000, &a->heartbeat_ms)) != 0) ||
        (v[3] != NULL && (rv = get_number(p, v[3], "agents", names[3], 0, false,
                                          1e6, &a->ramp_per_s)) != 0)) {
        return rv;
    }
    if (v[4] == NULL || is_null(v[4])) {
        return 0;
    }
    if (v[4]->type != YAML_SEQUENCE_NODE) {
        return p_error(p, v[4],
                       "agents.behaviours: must be a list of mappings with "
                       "behaviour and fraction");
    }
    for (item = v[4]->data.sequence.items.start;
         item < v[4]->data.sequence.items.top; item++) {
        yaml_node_t *e = p_node(p, *item);
        if (a->n_behaviours == SCENARIO_MAX_BEHAVIOURS) {
            return p_error(p, e, "agents.behaviours: at most %u entries",
                           SCENARIO_MAX_BEHAVIOURS);
        }
        rv = load_behaviour(p, e, a->n_behaviours,
                            &a->behaviours[a->n_behaviours]);
        if (rv != 0) {
            return rv;
        }
        sum += a->behaviours[a->n_behaviours].fraction;
        a->n_behaviours++;
    }
    if (sum > 1.0 + 1e-9) {
        return p_error(p, v[4],
                       "agents.behaviours: the fractions add up to %g, more "
                       "than 1",
                       sum);
    }
    return 0;
}

/* A policy key by the state machine's own rule (statemachine_key_check). */
static bool policy_key_valid(const char *k)
{
    char ignored[REMS_ERRMSG_SIZE];

    return statemachine_key_check(k, strlen(k), ignored) == 0;
}

/* The path of @file as the scenario names it: absolute as it is, else
 * relative to the scenario's directory. */
static char *resolve_file(const char *scenario_path, const char *file)
{
    const char *slash = strrchr(scenario_path, '/');
    size_t dir_len;
    char *out;

    if (file[0] == '/' || slash == NULL) {
        return rems_strdup(file);
    }
    dir_len = (size_t)(slash - scenario_path);
    out = rems_malloc(dir_len + 1 + strlen(file) + 1);
    if (out != NULL) {
        memcpy(out, scenario_path, dir_len);
        out[dir_len] = '/';
        strcpy(out + dir_len + 1, file);
    }
    return out;
}

static int load_apply_policy(struct parser *p,
                             yaml_node_t *n,
                             const char *where,
                             struct scenario_step *st)
{
    static const char *const names[] = {"key", "file", "inline"};
    yaml_node_t *v[REMS_ARRAY_SIZE(names)];
    json_free_t json_free;
    char *file;
    char *text;
    json_t *doc;
    int rv = 0;

    rv = map_fields(p, n, where, "a mapping with key, and file or inline",
                    false, names, REMS_ARRAY_SIZE(names), v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] == NULL) {
        return p_error(p, n, "%s.key: required", where);
    }
    rv = get_string(p, v[0], where, "key", 256, &st->u.apply_policy.key);
    if (rv != 0) {
        return rv;
    }
    if (!policy_key_valid(st->u.apply_policy.key)) {
        return p_error(p, v[0],
                       "%s.key: must be a policy key (1 to 256 of A-Z a-z 0-9 "
                       ". _ / -, no empty, . or .. segment)",
                       where);
    }
    if ((v[1] == NULL) == (v[2] == NULL)) {
        return p_error(p, n, "%s: needs exactly one of file and inline", where);
    }
    if (v[1] != NULL) {
        rv = get_string(p, v[1], where, "file", 4096, &file);
        if (rv != 0) {
            return rv;
        }
        st->u.apply_policy.file = resolve_file(p->path, file);
        rems_free(file);
        if (st->u.apply_policy.file == NULL) {
            return p_oom(p);
        }
        if (access(st->u.apply_policy.file, R_OK) != 0) {
            return p_error(p, v[1], "%s.file: cannot read %s: %s", where,
                           st->u.apply_policy.file, strerror(errno));
        }
        return 0;
    }
    if (v[2]->type != YAML_MAPPING_NODE) {
        return p_error(p, v[2],
                       "%s.inline: must be a mapping (the policy "
                       "document)",
                       where);
    }
    doc = to_json(p, v[2], where, 0, &rv);
    if (doc == NULL) {
        return rv;
    }
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL) {
        return p_oom(p);
    }
    /* json_dumps() allocates with jansson's allocator (a program may
     * install its own): copy to ours and free with jansson's. */
    json_get_alloc_funcs(NULL, &json_free);
    st->u.apply_policy.inline_json = rems_strdup(text);
    json_free(text);
    if (st->u.apply_policy.inline_json == NULL) {
        return p_oom(p);
    }
    return 0;
}

static int load_issue_commands(struct parser *p,
                               yaml_node_t *n,
                               const char *where,
                               struct scenario_step *st)
{
    static const char *const names[] = {"rate",    "duration_ms", "action",
                                        "service", "ttl_ms",      "background"};
    yaml_node_t *v[REMS_ARRAY_SIZE(names)];
    const char *s;
    int a;
    int rv;

    rv = map_fields(p, n, where, "a mapping with rate and duration_ms", false,
                    names, REMS_ARRAY_SIZE(names), v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] == NULL || v[1] == NULL) {
        return p_error(p, n, "%s.%s: required", where,
                       v[0] == NULL ? "rate" : "duration_ms");
    }
    st->u.issue_commands.action = PROTO_ACTION_RESTART;
    st->u.issue_commands.ttl_ms = SCENARIO_DEFAULT_COMMAND_TTL_MS;
    if ((rv = get_number(p, v[0], where, "rate", 0, true, 1000,
                         &st->u.issue_commands.rate)) != 0 ||
        (rv = get_uint(p, v[1], where, "duration_ms", 1, SCENARIO_MS_MAX,
                       &st->u.issue_commands.duration_ms)) != 0 ||
        (v[3] != NULL &&
         (rv = get_service(p, v[3], where, &st->u.issue_commands.service)) !=
             0) ||
        (v[4] != NULL &&
         (rv = get_uint(p, v[4], where, "ttl_ms", 1, SCENARIO_MS_MAX,
                        &st->u.issue_commands.ttl_ms)) != 0) ||
        (v[5] != NULL &&
         (rv = get_bool(p, v[5], where, "background",
                        &st->u.issue_commands.background)) != 0)) {
        return rv;
    }
    if (v[2] != NULL) {
        s = scalar(v[2]);
        for (a = PROTO_ACTION_START; s != NULL && a < PROTO_ACTION_NR; a++) {
            if (a != PROTO_ACTION_PUSH_MANIFEST &&
                strcmp(s, proto_action_name(a)) == 0) {
                break;
            }
        }
        if (s == NULL || a == PROTO_ACTION_NR) {
            return p_error(p, v[2],
                           "%s.action: must be start, stop, restart, pause, "
                           "resume, quarantine or diagnostics",
                           where);
        }
        st->u.issue_commands.action = a;
    }
    if (st->u.issue_commands.action != PROTO_ACTION_DIAGNOSTICS &&
        st->u.issue_commands.service == NULL && p->s->agents.services == 0) {
        return p_error(p, n,
                       "%s.action: %s needs a service, and the agents have "
                       "none (agents.services is 0)",
                       where, proto_action_name(st->u.issue_commands.action));
    }
    return 0;
}

/* The parameters of step @st, node @n (the value of its kind key). */
static int load_step_params(struct parser *p,
                            yaml_node_t *n,
                            const char *where,
                            struct scenario_step *st)
{
    const char *const no_names[1] = {NULL};
    const char *names[FIELDS_MAX];
    yaml_node_t *v[FIELDS_MAX];
    size_t k = 0;
    int rv;

    switch (st->kind) {
        case SCENARIO_STEP_APPLY_POLICY:
            return load_apply_policy(p, n, where, st);
        case SCENARIO_STEP_ISSUE_COMMANDS:
            return load_issue_commands(p, n, where, st);
        case SCENARIO_STEP_WAIT:
            names[k++] = "ms";
            break;
        case SCENARIO_STEP_WAIT_AGENTS:
            names[k++] = "connected";
            names[k++] = "timeout_ms";
            break;
        case SCENARIO_STEP_WAIT_LEADER:
            names[k++] = "timeout_ms";
            break;
        case SCENARIO_STEP_WAIT_ROLLOUT:
            names[k++] = "key";
            names[k++] = "timeout_ms";
            break;
        case SCENARIO_STEP_KILL_LEADER:
        case SCENARIO_STEP_RECONNECT_ALL:
            break;
        case SCENARIO_STEP_KILL_NODE:
            names[k++] = "node";
            break;
        case SCENARIO_STEP_PAUSE_LEADER:
            names[k++] = "ms";
            break;
        case SCENARIO_STEP_PAUSE_NODE:
        case SCENARIO_STEP_ISOLATE:
            names[k++] = "node";
            names[k++] = "ms";
            break;
        case SCENARIO_STEP_RESTART_NODE:
            names[k++] = "node";
            names[k++] = "graceful";
            names[k++] = "down_ms";
            break;
        case SCENARIO_STEP_TRANSFER_LEADERSHIP:
            names[k++] = "to";
            names[k++] = "timeout_ms";
            break;
        case SCENARIO_STEP_ROLLING_RESTART:
            names[k++] = "graceful";
            names[k++] = "timeout_ms";
            break;
        case SCENARIO_STEP_CRASH_SERVICES:
            names[k++] = "agents";
            names[k++] = "service";
            break;
        default:
            REMS_ASSERT(0);
    }
    rv =
        map_fields(p, n, where,
                   k == 0 ? "empty ({})" : "a mapping of the step's parameters",
                   true, k == 0 ? no_names : names, k, v);
    if (rv != 0) {
        return rv;
    }
    /* Required fields, then values, by kind. */
    switch (st->kind) {
        case SCENARIO_STEP_WAIT:
            if (v[0] == NULL) {
                return p_error(p, n, "%s.ms: required", where);
            }
            return get_uint(p, v[0], where, "ms", 0, SCENARIO_MS_MAX,
                            &st->u.wait.ms);
        case SCENARIO_STEP_WAIT_AGENTS:
            st->u.wait_agents.connected.all = true;
            st->u.wait_agents.timeout_ms = SCENARIO_DEFAULT_WAIT_AGENTS_MS;
            if ((v[0] != NULL &&
                 (rv = get_count(p, v[0], where, "connected",
                                 &st->u.wait_agents.connected)) != 0) ||
                (v[1] != NULL &&
                 (rv =
                      get_uint(p, v[1], where, "timeout_ms", 1, SCENARIO_MS_MAX,
                               &st->u.wait_agents.timeout_ms)) != 0)) {
                return rv;
            }
            return 0;
        case SCENARIO_STEP_WAIT_LEADER:
            st->u.wait_leader.timeout_ms = SCENARIO_DEFAULT_WAIT_LEADER_MS;
            if (v[0] != NULL) {
                return get_uint(p, v[0], where, "timeout_ms", 1,
                                SCENARIO_MS_MAX, &st->u.wait_leader.timeout_ms);
            }
            return 0;
        case SCENARIO_STEP_WAIT_ROLLOUT:
            st->u.wait_rollout.timeout_ms = SCENARIO_DEFAULT_WAIT_ROLLOUT_MS;
            if (v[0] == NULL) {
                return p_error(p, n, "%s.key: required", where);
            }
            rv = get_string(p, v[0], where, "key", 256,
                            &st->u.wait_rollout.key);
            if (rv != 0) {
                return rv;
            }
            if (!policy_key_valid(st->u.wait_rollout.key)) {
                return p_error(p, v[0],
                               "%s.key: must be a policy key (1 to 256 of "
                               "A-Z a-z 0-9 . _ / -, no empty, . or .. "
                               "segment)",
                               where);
            }
            if (v[1] != NULL) {
                return get_uint(p, v[1], where, "timeout_ms", 1,
                                SCENARIO_MS_MAX,
                                &st->u.wait_rollout.timeout_ms);
            }
            return 0;
        case SCENARIO_STEP_KILL_LEADER:
            st->u.kill.node.kind = SCENARIO_NODE_LEADER;
            return 0;
        case SCENARIO_STEP_RECONNECT_ALL:
            return 0;
        case SCENARIO_STEP_KILL_NODE:
            if (v[0] == NULL) {
                return p_error(p, n, "%s.node: required", where);
            }
            return get_node(p, v[0], where, "node", &st->u.kill.node);
        case SCENARIO_STEP_PAUSE_LEADER:
            st->u.pause.node.kind = SCENARIO_NODE_LEADER;
            if (v[0] == NULL) {
                return p_error(p, n, "%s.ms: required", where);
            }
            return get_uint(p, v[0], where, "ms", 1, SCENARIO_MS_MAX,
                            &st->u.pause.ms);
        case SCENARIO_STEP_PAUSE_NODE:
        case SCENARIO_STEP_ISOLATE:
            if (v[0] == NULL || v[1] == NULL) {
                return p_error(p, n, "%s.%s: required", where,
                               v[0] == NULL ? "node" : "ms");
            }
            /* pause and isolate have the same layout. */
            if (st->kind == SCENARIO_STEP_PAUSE_NODE) {
                if ((rv = get_node(p, v[0], where, "node",
                                   &st->u.pause.node)) != 0) {
                    return rv;
                }
                return get_uint(p, v[1], where, "ms", 1, SCENARIO_MS_MAX,
                                &st->u.pause.ms);
            }
            if ((rv = get_node(p, v[0], where, "node", &st->u.isolate.node)) !=
                0) {
                return rv;
            }
            return get_uint(p, v[1], where, "ms", 1, SCENARIO_MS_MAX,
                            &st->u.isolate.ms);
        case SCENARIO_STEP_RESTART_NODE:
            if (v[0] == NULL) {
                return p_error(p, n, "%s.node: required", where);
            }
            st->u.restart.graceful = true;
            if ((rv = get_node(p, v[0], where, "node", &st->u.restart.node)) !=
                    0 ||
                (v[1] != NULL &&
                 (rv = get_bool(p, v[1], where, "graceful",
                                &st->u.restart.graceful)) != 0) ||
                (v[2] != NULL &&
                 (rv = get_uint(p, v[2], where, "down_ms", 0, SCENARIO_MS_MAX,
                                &st->u.restart.down_ms)) != 0)) {
                return rv;
            }
            return 0;
        case SCENARIO_STEP_TRANSFER_LEADERSHIP:
            st->u.transfer.to.kind = SCENARIO_NODE_ANY;
            st->u.transfer.timeout_ms = SCENARIO_DEFAULT_TRANSFER_MS;
            if ((v[0] != NULL && (rv = get_node(p, v[0], where, "to",
                                                &st->u.transfer.to)) != 0) ||
                (v[1] != NULL &&
                 (rv = get_uint(p, v[1], where, "timeout_ms", 1,
                                SCENARIO_MS_MAX, &st->u.transfer.timeout_ms)) !=
                     0)) {
                return rv;
            }
            if (st->u.transfer.to.kind == SCENARIO_NODE_LEADER) {
                return p_error(p, v[0],
                               "%s.to: must be follower or a node id 1..%u "
                               "(not the leader itself)",
                               where, p->s->cluster.nodes);
            }
            return 0;
        case SCENARIO_STEP_ROLLING_RESTART:
            st->u.rolling.graceful = true;
            st->u.rolling.timeout_ms = SCENARIO_DEFAULT_ROLLING_MS;
            if ((v[0] != NULL &&
                 (rv = get_bool(p, v[0], where, "graceful",
                                &st->u.rolling.graceful)) != 0) ||
                (v[1] != NULL &&
                 (rv = get_uint(p, v[1], where, "timeout_ms", 1,
                                SCENARIO_MS_MAX, &st->u.rolling.timeout_ms)) !=
                     0)) {
                return rv;
            }
            return 0;
        case SCENARIO_STEP_CRASH_SERVICES:
            if (v[0] == NULL) {
                return p_error(p, n, "%s.agents: required", where);
            }
            if ((rv = get_count(p, v[0], where, "agents",
                                &st->u.crash.agents)) != 0 ||
                (v[1] != NULL &&
                 (rv = get_service(p, v[1], where, &st->u.crash.service)) !=
                     0)) {
                return rv;
            }
            if (p->s->agents.services == 0) {
                return p_error(p, n,
                               "%s: the agents have no services to crash "
                               "(agents.services is 0)",
                               where);
            }
            return 0;
        default:
            REMS_ASSERT(0);
    }
    return 0;
}

static int load_step(struct parser *p,
                     yaml_node_t *n,
                     size_t index,
                     struct scenario_step *st)
{
    char where[WHERE_SIZE];
    yaml_node_pair_t *pair;
    yaml_node_t *key;
    const char *name;
    int k;

    st->line = line_of(n);
    if (n->type != YAML_MAPPING_NODE ||
        n->data.mapping.pairs.top - n->data.mapping.pairs.start != 1) {
        return p_error(p, n,
                       "steps[%zu]: must be a mapping with one key, the "
                       "step's kind (such as wait: {ms: 1000})",
                       index);
    }
    pair = n->data.mapping.pairs.start;
    key = p_node(p, pair->key);
    name = scalar(key);
    for (k = 1; name != NULL && k < SCENARIO_STEP_NR; k++) {
        if (strcmp(name, step_names[k]) == 0) {
            break;
        }
    }
    if (name == NULL || k == SCENARIO_STEP_NR) {
        return p_error(p, key,
                       "steps[%zu].%.*s: unknown step (the steps are "
                       "listed in docs/drills.md)",
                       index, KEY_PRINT_MAX, name != NULL ? name : "");
    }
    st->kind = (enum scenario_step_kind)k;
    snprintf(where, sizeof where, "steps[%zu].%s", index, name);
    return load_step_params(p, p_node(p, pair->value), where, st);
}

static void step_free(struct scenario_step *st)
{
    switch (st->kind) {
        case SCENARIO_STEP_APPLY_POLICY:
            rems_free(st->u.apply_policy.key);
            rems_free(st->u.apply_policy.file);
            rems_free(st->u.apply_policy.inline_json);
            break;
        case SCENARIO_STEP_ISSUE_COMMANDS:
            rems_free(st->u.issue_commands.service);
            break;
        case SCENARIO_STEP_CRASH_SERVICES:
            rems_free(st->u.crash.service);
            break;
        case SCENARIO_STEP_WAIT_ROLLOUT:
            rems_free(st->u.wait_rollout.key);
            break;
        default:
            break;
    }
}

static int load_steps(struct parser *p, yaml_node_t *n)
{
    struct scenario *s = p->s;
    yaml_node_item_t *item;
    size_t count;
    int rv;

    if (n->type != YAML_SEQUENCE_NODE ||
        n->data.sequence.items.top == n->data.sequence.items.start) {
        return p_error(p, n, "steps: must be a non-empty list of steps");
    }
    count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > SCENARIO_MAX_STEPS) {
        return p_error(p, n, "steps: at most %u steps", SCENARIO_MAX_STEPS);
    }
    s->steps = rems_calloc(count, sizeof *s->steps);
    if (s->steps == NULL) {
        return p_oom(p);
    }
    for (item = n->data.sequence.items.start; item < n->data.sequence.items.top;
         item++) {
        struct scenario_step *st = &s->steps[s->n_steps];
        rv = load_step(p, p_node(p, *item), s->n_steps, st);
        /* Count it also on failure: it may own strings already. */
        s->n_steps++;
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int load_assertions(struct parser *p, yaml_node_t *n)
{
    struct scenario *s = p->s;
    unsigned first[SCENARIO_ASSERT_NR] = {0};
    yaml_node_item_t *item;
    size_t index = 0;
    int rv;

    if (is_null(n)) {
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE) {
        return p_error(p, n, "assertions: must be a list of assertions");
    }
    for (item = n->data.sequence.items.start; item < n->data.sequence.items.top;
         item++, index++) {
        yaml_node_t *e = p_node(p, *item);
        yaml_node_t *key;
        yaml_node_t *value;
        const char *name;
        char where[WHERE_SIZE];
        bool on;
        int k;

        if (e->type != YAML_MAPPING_NODE ||
            e->data.mapping.pairs.top - e->data.mapping.pairs.start != 1) {
            return p_error(p, e,
                           "assertions[%zu]: must be a mapping with one key, "
                           "the assertion (such as leader_within_ms: 5000)",
                           index);
        }
        key = p_node(p, e->data.mapping.pairs.start->key);
        value = p_node(p, e->data.mapping.pairs.start->value);
        name = scalar(key);
        for (k = 1; name != NULL && k < SCENARIO_ASSERT_NR; k++) {
            if (strcmp(name, assertion_names[k]) == 0) {
                break;
            }
        }
        if (name == NULL || k == SCENARIO_ASSERT_NR) {
            return p_error(p, key,
                           "assertions[%zu].%.*s: unknown assertion "
                           "(leader_within_ms, commands_exactly_once, "
                           "no_late_execution, drift_detected_within_ms, "
                           "nominal_within_ms)",
                           index, KEY_PRINT_MAX, name != NULL ? name : "");
        }
        if (first[k] != 0) {
            return p_error(p, key,
                           "assertions[%zu].%s: given twice (first on line "
                           "%u)",
                           index, name, first[k]);
        }
        first[k] = line_of(key);
        snprintf(where, sizeof where, "assertions[%zu]", index);
        if (k == SCENARIO_ASSERT_COMMANDS_EXACTLY_ONCE ||
            k == SCENARIO_ASSERT_NO_LATE_EXECUTION) {
            rv = get_bool(p, value, where, name, &on);
            if (rv != 0) {
                return rv;
            }
            if (!on) {
                continue; /* false: not checked */
            }
            s->assertions[s->n_assertions].ms = 0;
        } else {
            rv = get_uint(p, value, where, name, 1, SCENARIO_MS_MAX,
                          &s->assertions[s->n_assertions].ms);
            if (rv != 0) {
                return rv;
            }
        }
        s->assertions[s->n_assertions].kind = (enum scenario_assertion_kind)k;
        s->assertions[s->n_assertions].line = line_of(key);
        s->n_assertions++;
    }
    return 0;
}

/* A scenario's name: 1..64 of [A-Za-z0-9._-]. */
static bool name_valid(const char *s)
{
    size_t len = strlen(s);
    return len >= 1 && len <= SCENARIO_NAME_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._-") == len;
}

static int load_root(struct parser *p)
{
    static const char *const names[] = {"name",     "description", "cluster",
                                        "agents",   "steps",       "assertions",
                                        "settle_ms"};
    struct scenario *s = p->s;
    yaml_node_t *v[REMS_ARRAY_SIZE(names)];
    yaml_node_t *root = yaml_document_get_root_node(&p->doc);
    int rv;

    if (root == NULL) {
        rems_errmsgf(p->errmsg, "%s: empty file, expected a scenario", p->path);
        return REMS_ECONFIG;
    }
    rv = map_fields(p, root, "",
                    "a mapping with name, cluster, agents, steps and "
                    "assertions",
                    false, names, REMS_ARRAY_SIZE(names), v);
    if (rv != 0) {
        return rv;
    }
    if (v[0] == NULL) {
        return p_error(p, root, "name: required");
    }
    if (scalar(v[0]) == NULL || !name_valid(scalar(v[0]))) {
        return p_error(p, v[0],
                       "name: must be 1 to 64 of A-Z a-z 0-9 . _ - (such as "
                       "leader-kill)");
    }
    s->name = rems_strdup(scalar(v[0]));
    if (s->name == NULL) {
        return p_oom(p);
    }
    if (v[1] != NULL && !is_null(v[1])) {
        const char *d = scalar(v[1]);
        if (d == NULL || strlen(d) > 4096) {
            return p_error(p, v[1],
                           "description: must be a string of at most 4096 "
                           "bytes");
        }
        s->description = rems_strdup(d);
    } else {
        s->description = rems_strdup("");
    }
    if (s->description == NULL) {
        return p_oom(p);
    }
    if (v[6] != NULL) {
        const char *sm = scalar(v[6]);
        uint64_t ms;
        if (sm == NULL || !is_plain(v[6]) || rems_parse_u64(sm, &ms) != 0 ||
            ms > SCENARIO_MS_MAX) {
            return p_error(p, v[6],
                           "settle_ms: must be an integer between 0 and %u",
                           SCENARIO_MS_MAX);
        }
        s->settle_ms = ms;
    }
    if ((v[2] != NULL && (rv = load_cluster(p, v[2])) != 0) ||
        (v[3] != NULL && (rv = load_agents(p, v[3])) != 0)) {
        return rv;
    }
    if (v[4] == NULL) {
        return p_error(p, root, "steps: required");
    }
    if ((rv = load_steps(p, v[4])) != 0 ||
        (v[5] != NULL && (rv = load_assertions(p, v[5])) != 0)) {
        return rv;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Public
 * ------------------------------------------------------------------------ */

static int syntax_error(struct parser *p, const yaml_parser_t *yp)
{
    const char *problem = yp->problem != NULL ? yp->problem : "error";

    switch (yp->error) {
        case YAML_MEMORY_ERROR:
            return p_oom(p);
        case YAML_READER_ERROR:
            rems_errmsgf(p->errmsg, "%s: invalid YAML: %s at byte %zu", p->path,
                         problem, yp->problem_offset);
            return REMS_ECONFIG;
        default:
            if (yp->context != NULL) {
                rems_errmsgf(p->errmsg,
                             "%s:%zu: invalid YAML: %s (%s on line %zu)",
                             p->path, yp->problem_mark.line + 1, problem,
                             yp->context, yp->context_mark.line + 1);
            } else {
                rems_errmsgf(p->errmsg, "%s:%zu: invalid YAML: %s", p->path,
                             yp->problem_mark.line + 1, problem);
            }
            return REMS_ECONFIG;
    }
}

static void defaults(struct scenario *s)
{
    s->settle_ms = SCENARIO_DEFAULT_SETTLE_MS;
    s->cluster.nodes = SCENARIO_DEFAULT_NODES;
    s->cluster.election_timeout_ms = SCENARIO_DEFAULT_ELECTION_TIMEOUT_MS;
    s->cluster.heartbeat_timeout_ms = SCENARIO_DEFAULT_HEARTBEAT_TIMEOUT_MS;
    s->cluster.lease_ttl_ms = SCENARIO_DEFAULT_LEASE_TTL_MS;
    s->cluster.agent_heartbeat_ms = SCENARIO_DEFAULT_AGENT_HEARTBEAT_MS;
    s->cluster.reconcile_interval_ms = SCENARIO_DEFAULT_RECONCILE_INTERVAL_MS;
    s->agents.count = SCENARIO_DEFAULT_AGENTS;
    s->agents.services = SCENARIO_DEFAULT_SERVICES;
}

int scenario_parse(const char *path,
                   const char *text,
                   size_t len,
                   struct scenario *out,
                   char *errmsg)
{
    struct scenario s;
    struct parser p;
    yaml_parser_t yp;
    yaml_document_t extra;
    yaml_node_t *extra_root;
    int rv;

    PRE(path != NULL && text != NULL && out != NULL && errmsg != NULL);

    memset(&s, 0, sizeof s);
    defaults(&s);
    p.path = path;
    p.errmsg = errmsg;
    p.s = &s;
    s.path = rems_strdup(path);
    if (s.path == NULL) {
        rv = p_oom(&p);
        goto err;
    }
    if (yaml_parser_initialize(&yp) == 0) {
        rv = p_oom(&p);
        goto err_after_scenario;
    }
    yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
    /* On failure yaml_parser_load() frees what it built of the document. */
    if (yaml_parser_load(&yp, &p.doc) == 0) {
        rv = syntax_error(&p, &yp);
        goto err_after_parser;
    }
    rv = load_root(&p);
    if (rv != 0) {
        goto err_after_load;
    }
    /* A syntax error or a second document after the first is an error too;
     * at the end of the stream yaml_parser_load() gives an empty document. */
    if (yaml_parser_load(&yp, &extra) == 0) {
        rv = syntax_error(&p, &yp);
        goto err_after_load;
    }
    extra_root = yaml_document_get_root_node(&extra);
    if (extra_root != NULL) {
        rv = p_error(&p, extra_root,
                     "only one YAML document is allowed per file");
        yaml_document_delete(&extra);
        goto err_after_load;
    }
    yaml_document_delete(&extra);
    yaml_document_delete(&p.doc);
    yaml_parser_delete(&yp);

    *out = s;
    return 0;

err_after_load:
    yaml_document_delete(&p.doc);
err_after_parser:
    yaml_parser_delete(&yp);
err_after_scenario:
    scenario_close(&s);
err:
    POST(rv != 0);
    return rv;
}

int scenario_load(const char *path, struct scenario *out, char *errmsg)
{
    char *buf;
    size_t len;
    int rv;

    PRE(path != NULL && out != NULL && errmsg != NULL);
    rv = rems_read_file(path, SCENARIO_FILE_MAX, &buf, &len, errmsg);
    if (rv != 0) {
        /* A file that cannot be read or is too large is a scenario
         * error like any other. */
        return rv == REMS_ENOMEM ? rv : REMS_ECONFIG;
    }
    rv = scenario_parse(path, buf, len, out, errmsg);
    rems_free(buf);
    return rv;
}

static const struct scenario_node *step_node(const struct scenario_step *st)
{
    switch (st->kind) {
        case SCENARIO_STEP_KILL_NODE:
            return &st->u.kill.node;
        case SCENARIO_STEP_PAUSE_NODE:
            return &st->u.pause.node;
        case SCENARIO_STEP_ISOLATE:
            return &st->u.isolate.node;
        case SCENARIO_STEP_RESTART_NODE:
            return &st->u.restart.node;
        case SCENARIO_STEP_TRANSFER_LEADERSHIP:
            return &st->u.transfer.to;
        default:
            return NULL;
    }
}

int scenario_check_nodes(const struct scenario *s,
                         unsigned n_nodes,
                         char *errmsg)
{
    size_t i;

    for (i = 0; i < s->n_steps; i++) {
        const struct scenario_node *n = step_node(&s->steps[i]);
        if (n != NULL && n->kind == SCENARIO_NODE_ID &&
            (n->id < 1 || n->id > n_nodes)) {
            rems_errmsgf(errmsg,
                         "%s:%u: steps[%zu].%s.%s: must be leader, follower "
                         "or a node id 1..%u",
                         s->path, n->line, i,
                         scenario_step_name(s->steps[i].kind), n->field,
                         n_nodes);
            return REMS_ECONFIG;
        }
    }
    return 0;
}

void scenario_close(struct scenario *s)
{
    size_t i;

    if (s == NULL) {
        return;
    }
    for (i = 0; i < s->n_steps; i++) {
        step_free(&s->steps[i]);
    }
    rems_free(s->steps);
    rems_free(s->name);
    rems_free(s->description);
    rems_free(s->path);
    memset(s, 0, sizeof *s);
}
