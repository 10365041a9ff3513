/* cluster/policy.c: policy documents, parsed strictly with jansson.
 *
 * The document is loaded once (duplicate keys refused) and walked field by
 * field. Each helper gets the path of the object it reads ("rollout",
 * "services[2].secrets[0]") and writes "<path>.<field>: <rule>" into
 * errmsg when a rule is broken. The first broken rule in document order
 * wins, except that the cross-field rules (unique names, dependencies,
 * cycles) run once every service has been read on its own.
 *
 * The process part of a service is the service object without the
 * rems-only fields (criticality, allowed_commands, secrets), dumped to
 * canonical text and handed to sup_spec_parse_json(); its messages say
 * "services.<name>..." and are re-rooted at "services[<index>]". The same
 * canonical text is the manifest of the service, so the policy keeps it
 * and its digest.
 *
 * Everything a policy owns lives in one arena (policy_int.h), except the
 * sup_service_spec of each service, which sup_spec_parse_json() allocated
 * and sup_spec_free() releases. */
#include "cluster/policy.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/policy_int.h"
#include "common/assert.h"
#include "common/heap.h"
#include "common/util.h"

/* Room for "placement.selector.match_expressions[31].values[63]". */
#define PATH_SIZE 160

/* Canonical text: compact, keys sorted, reals with 15 significant digits
 * (a decimal of at most 15 digits survives a round trip through a double,
 * so rendering is stable). */
#define DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))

#define ENV_KEY_MAX 256 /* as agentproto/sup_spec.c */

/* ------------------------------------------------------------------------
 * Arena
 * --------------------------------------------------------------------- */

struct policy_arena_block {
    struct policy_arena_block *next;
    size_t used;
    size_t cap;
    max_align_t data[];
};

#define ARENA_ALIGN (alignof(max_align_t))
#define ARENA_DEFAULT_BLOCK ((size_t)16 * 1024)

void policy__arena_init(struct policy_arena *a, size_t block_size)
{
    a->head = NULL;
    a->block_size = block_size != 0 ? block_size : ARENA_DEFAULT_BLOCK;
}

void policy__arena_close(struct policy_arena *a)
{
    struct policy_arena_block *b = a->head;
    while (b != NULL) {
        struct policy_arena_block *next = b->next;
        rems_free(b);
        b = next;
    }
    a->head = NULL;
}

void *policy__arena_alloc(struct policy_arena *a, size_t size)
{
    struct policy_arena_block *b = a->head;
    size_t need = (size + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    char *p;

    if (need == 0) {
        need = ARENA_ALIGN;
    }
    if (need < size) {
        return NULL; /* Overflow of the rounding. */
    }
    if (b == NULL || b->cap - b->used < need) {
        size_t cap = need > a->block_size ? need : a->block_size;
        if (cap > SIZE_MAX - sizeof *b) {
            return NULL;
        }
        b = rems_malloc(sizeof *b + cap);
        if (b == NULL) {
            return NULL;
        }
        b->used = 0;
        b->cap = cap;
        /* A block bigger than the usual size goes behind the head, so
         * the room left in the head is not wasted. */
        if (a->head != NULL && cap > a->block_size) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    p = (char *)b->data + b->used;
    b->used += need;
    memset(p, 0, size);
    return p;
}

char *policy__arena_strndup(struct policy_arena *a, const char *s, size_t len)
{
    char *p;
    if (len == SIZE_MAX) {
        return NULL;
    }
    p = policy__arena_alloc(a, len + 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

char *policy__arena_strdup(struct policy_arena *a, const char *s)
{
    return policy__arena_strndup(a, s, strlen(s));
}

/* ------------------------------------------------------------------------
 * Names
 * --------------------------------------------------------------------- */

const char *policy_mode_name(int mode)
{
    switch (mode) {
        case POLICY_MODE_RECOMMEND:
            return "recommend";
        case POLICY_MODE_AUTO:
            return "auto";
        default:
            return "?";
    }
}

const char *policy_criticality_name(int criticality)
{
    switch (criticality) {
        case POLICY_OPTIONAL:
            return "optional";
        case POLICY_CRITICAL:
            return "critical";
        default:
            return "?";
    }
}

const char *policy_operator_name(int op)
{
    switch (op) {
        case POLICY_OP_IN:
            return "in";
        case POLICY_OP_NOT_IN:
            return "not_in";
        case POLICY_OP_EXISTS:
            return "exists";
        case POLICY_OP_DOES_NOT_EXIST:
            return "does_not_exist";
        default:
            return "?";
    }
}

uint64_t policy_digest(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = 14695981039346656037u;
    size_t i;
    for (i = 0; i < len; i++) {
        h ^= s[i];
        h *= 1099511628211u;
    }
    return h;
}

/* ------------------------------------------------------------------------
 * Field helpers
 * --------------------------------------------------------------------- */

/* The parse of one document. */
struct parse {
    struct policy *p;
    struct policy_arena *arena;
    char *errmsg;
};

/* The object that owns a policy and its arena. */
struct policy_box {
    struct policy p;
    struct policy_arena arena;
};


/* Release what json_dumps() returned, with jansson's own free function
 * (a program may have installed its allocator with json_set_alloc_funcs). */
static void jfree(char *text)
{
    json_free_t f = NULL;
    json_get_alloc_funcs(NULL, &f);
    (f != NULL ? f : free)(text);
}

static int fail(struct parse *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(struct parse *ps, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->errmsg, REMS_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
    return REMS_EINVAL;
}

static int oom(struct parse *ps)
{
    rems_errmsg_oom(ps->errmsg);
    return REMS_ENOMEM;
}

/* "@path.@key", or "@key" at the root (@path ""). */
static void join(char *out, const char *path, const char *key)
{
    if (path[0] == '\0') {
        snprintf(out, PATH_SIZE, "%s", key);
    } else {
        snprintf(out, PATH_SIZE, "%s.%s", path, key);
    }
}

/* A JSON string without NUL bytes. */
static bool plain_string(const json_t *v)
{
    return json_is_string(v) &&
           strlen(json_string_value(v)) == json_string_length(v);
}

/* Refuse keys of @obj that are not in @allowed (NULL-terminated). @where
 * names the object in messages ("policy" at the root). */
static int check_keys(struct parse *ps,
                      const json_t *obj,
                      const char *where,
                      const char *const *allowed)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i;
        bool ok = false;
        (void)v;
        for (i = 0; allowed[i] != NULL; i++) {
            if (strcmp(allowed[i], key) == 0) {
                ok = true;
                break;
            }
        }
        if (!ok) {
            return fail(ps, "%s: unknown field \"%.64s\"", where, key);
        }
    }
    return 0;
}

/* An optional integer field @key of @obj in @min..@max, *@out = @dflt when
 * absent. */
static int get_uint(struct parse *ps,
                    const json_t *obj,
                    const char *path,
                    const char *key,
                    uint64_t min,
                    uint64_t max,
                    uint64_t dflt,
                    uint64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    char field[PATH_SIZE];
    json_int_t n;

    join(field, path, key);
    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v)) {
        return fail(ps, "%s: must be an integer", field);
    }
    n = json_integer_value(v);
    if (n < 0 || (uint64_t)n < min) {
        return fail(ps, "%s: must be >= %" PRIu64, field, min);
    }
    if ((uint64_t)n > max) {
        if (max == POLICY_DURATION_MAX_MS) {
            return fail(ps, "%s: must be <= %" PRIu64 " (24 h)", field, max);
        }
        return fail(ps, "%s: must be <= %" PRIu64, field, max);
    }
    *out = (uint64_t)n;
    return 0;
}

static int get_bool(struct parse *ps,
                    const json_t *obj,
                    const char *path,
                    const char *key,
                    bool dflt,
                    bool *out)
{
    const json_t *v = json_object_get(obj, key);
    char field[PATH_SIZE];

    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v)) {
        join(field, path, key);
        return fail(ps, "%s: must be true or false", field);
    }
    *out = json_is_true(v);
    return 0;
}

/* An arena copy of the plain string @v, or REMS_ENOMEM. */
static int copy_string(struct parse *ps, const json_t *v, const char **out)
{
    char *s = policy__arena_strndup(ps->arena, json_string_value(v),
                                    json_string_length(v));
    if (s == NULL) {
        return oom(ps);
    }
    *out = s;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const struct policy_label *)a)->key,
                  ((const struct policy_label *)b)->key);
}

static int cmp_expression(const void *a, const void *b)
{
    const struct policy_expression *x = a;
    const struct policy_expression *y = b;
    int c = strcmp(x->key, y->key);
    if (c != 0) {
        return c;
    }
    return (x->op > y->op) - (x->op < y->op);
}

static int cmp_secret(const void *a, const void *b)
{
    return strcmp(((const struct policy_secret *)a)->env,
                  ((const struct policy_secret *)b)->env);
}

/* ------------------------------------------------------------------------
 * Placement
 * --------------------------------------------------------------------- */

/* An array of 1..@max unique plain strings, each checked by @valid (NULL:
 * any length 1..@len_max), copied into *@out (sorted). @rule describes a
 * valid entry for messages. */
static int string_set(struct parse *ps,
                      const json_t *arr,
                      const char *path,
                      size_t max,
                      bool (*valid)(const char *s, size_t len),
                      const char *rule,
                      const char ***out,
                      size_t *n_out)
{
    const char **items;
    size_t n = json_array_size(arr);
    size_t i;
    size_t j;
    int rv;

    if (!json_is_array(arr)) {
        return fail(ps, "%s: must be an array of strings", path);
    }
    if (n == 0 || n > max) {
        return fail(ps, "%s: must have 1..%zu entries", path, max);
    }
    items = policy__arena_alloc(ps->arena, n * sizeof *items);
    if (items == NULL) {
        return oom(ps);
    }
    for (i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!plain_string(v) ||
            !valid(json_string_value(v), json_string_length(v))) {
            return fail(ps, "%s[%zu]: %s", path, i, rule);
        }
        for (j = 0; j < i; j++) {
            if (strcmp(items[j], json_string_value(v)) == 0) {
                return fail(ps, "%s[%zu]: \"%.64s\" given twice", path, i,
                            items[j]);
            }
        }
        rv = copy_string(ps, v, &items[i]);
        if (rv != 0) {
            return rv;
        }
    }
    qsort(items, n, sizeof *items, cmp_str);
    *out = items;
    *n_out = n;
    return 0;
}

static bool agent_id_valid(const char *s, size_t len)
{
    (void)len;
    return rems_id_valid(s) != 0;
}

static bool label_value_valid(const char *s, size_t len)
{
    (void)s;
    return len <= POLICY_LABEL_VALUE_MAX;
}

static int parse_match_labels(struct parse *ps,
                              const json_t *obj,
                              const char *path,
                              struct policy_selector *sel)
{
    const char *key;
    json_t *v;
    size_t n = json_object_size(obj);
    size_t i = 0;
    char field[PATH_SIZE];
    int rv;

    if (!json_is_object(obj)) {
        return fail(ps, "%s: must be an object of strings", path);
    }
    if (n > POLICY_MATCH_LABELS_MAX) {
        return fail(ps, "%s: must have at most %d entries", path,
                    POLICY_MATCH_LABELS_MAX);
    }
    sel->match_labels =
        policy__arena_alloc(ps->arena, n * sizeof(*sel->match_labels));
    if (sel->match_labels == NULL) {
        return oom(ps);
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t klen = strlen(key);
        if (klen == 0 || klen > POLICY_LABEL_KEY_MAX) {
            return fail(ps, "%s: key \"%.64s\" must be 1..%d bytes", path, key,
                        POLICY_LABEL_KEY_MAX);
        }
        join(field, path, key);
        if (!plain_string(v)) {
            return fail(ps, "%s: must be a string", field);
        }
        if (json_string_length(v) > POLICY_LABEL_VALUE_MAX) {
            return fail(ps, "%s: must be at most %d bytes", field,
                        POLICY_LABEL_VALUE_MAX);
        }
        sel->match_labels[i].key = policy__arena_strdup(ps->arena, key);
        if (sel->match_labels[i].key == NULL) {
            return oom(ps);
        }
        rv = copy_string(ps, v, &sel->match_labels[i].value);
        if (rv != 0) {
            return rv;
        }
        i++;
    }
    sel->n_match_labels = n;
    qsort(sel->match_labels, n, sizeof *sel->match_labels, cmp_label);
    return 0;
}

static int parse_expression(struct parse *ps,
                            const json_t *obj,
                            const char *path,
                            struct policy_expression *e)
{
    static const char *const allowed[] = {"key", "operator", "values", NULL};
    const json_t *key;
    const json_t *op;
    const json_t *values;
    char field[PATH_SIZE];
    const char *name;
    int rv;

    if (!json_is_object(obj)) {
        return fail(ps, "%s: must be an object", path);
    }
    rv = check_keys(ps, obj, path, allowed);
    if (rv != 0) {
        return rv;
    }
    key = json_object_get(obj, "key");
    if (key == NULL) {
        return fail(ps, "%s.key: required", path);
    }
    if (!plain_string(key) || json_string_length(key) == 0 ||
        json_string_length(key) > POLICY_LABEL_KEY_MAX) {
        return fail(ps, "%s.key: must be a string of 1..%d bytes", path,
                    POLICY_LABEL_KEY_MAX);
    }
    op = json_object_get(obj, "operator");
    if (op == NULL) {
        return fail(ps, "%s.operator: required", path);
    }
    name = json_is_string(op) ? json_string_value(op) : "";
    if (strcmp(name, "in") == 0) {
        e->op = POLICY_OP_IN;
    } else if (strcmp(name, "not_in") == 0) {
        e->op = POLICY_OP_NOT_IN;
    } else if (strcmp(name, "exists") == 0) {
        e->op = POLICY_OP_EXISTS;
    } else if (strcmp(name, "does_not_exist") == 0) {
        e->op = POLICY_OP_DOES_NOT_EXIST;
    } else {
        return fail(ps,
                    "%s.operator: must be in, not_in, exists or "
                    "does_not_exist",
                    path);
    }
    values = json_object_get(obj, "values");
    join(field, path, "values");
    if (e->op == POLICY_OP_IN || e->op == POLICY_OP_NOT_IN) {
        if (values == NULL) {
            return fail(ps, "%s: required for %s", field,
                        policy_operator_name(e->op));
        }
        rv = string_set(ps, values, field, POLICY_VALUES_MAX, label_value_valid,
                        "must be a string of at most 128 bytes", &e->values,
                        &e->n_values);
        if (rv != 0) {
            return rv;
        }
    } else if (values != NULL) {
        return fail(ps, "%s: not allowed for %s", field,
                    policy_operator_name(e->op));
    }
    return copy_string(ps, key, &e->key);
}

static int
parse_selector(struct parse *ps, const json_t *obj, struct policy_selector *sel)
{
    static const char *const allowed[] = {"match_labels", "match_expressions",
                                          NULL};
    static const char path[] = "placement.selector";
    const json_t *labels;
    const json_t *exprs;
    char field[PATH_SIZE];
    size_t n;
    size_t i;
    int rv;

    if (!json_is_object(obj)) {
        return fail(ps, "%s: must be an object", path);
    }
    rv = check_keys(ps, obj, path, allowed);
    if (rv != 0) {
        return rv;
    }
    sel->present = true;
    labels = json_object_get(obj, "match_labels");
    if (labels != NULL) {
        rv = parse_match_labels(ps, labels, "placement.selector.match_labels",
                                sel);
        if (rv != 0) {
            return rv;
        }
    }
    exprs = json_object_get(obj, "match_expressions");
    if (exprs == NULL) {
        return 0;
    }
    if (!json_is_array(exprs)) {
        return fail(ps, "%s.match_expressions: must be an array", path);
    }
    n = json_array_size(exprs);
    if (n > POLICY_EXPRESSIONS_MAX) {
        return fail(ps, "%s.match_expressions: must have at most %d entries",
                    path, POLICY_EXPRESSIONS_MAX);
    }
    sel->expressions =
        policy__arena_alloc(ps->arena, n * sizeof(*sel->expressions));
    if (sel->expressions == NULL) {
        return oom(ps);
    }
    for (i = 0; i < n; i++) {
        snprintf(field, sizeof field, "%s.match_expressions[%zu]", path, i);
        rv = parse_expression(ps, json_array_get(exprs, i), field,
                              &sel->expressions[i]);
        if (rv != 0) {
            return rv;
        }
    }
    sel->n_expressions = n;
    qsort(sel->expressions, n, sizeof *sel->expressions, cmp_expression);
    return 0;
}

static int parse_placement(struct parse *ps, const json_t *root)
{
    static const char *const allowed[] = {"agents", "selector", NULL};
    struct policy_placement *pl = &ps->p->placement;
    const json_t *obj = json_object_get(root, "placement");
    const json_t *agents;
    const json_t *selector;
    int rv;

    if (obj == NULL) {
        return fail(ps, "placement: required");
    }
    if (!json_is_object(obj)) {
        return fail(ps, "placement: must be an object");
    }
    rv = check_keys(ps, obj, "placement", allowed);
    if (rv != 0) {
        return rv;
    }
    agents = json_object_get(obj, "agents");
    selector = json_object_get(obj, "selector");
    if (agents == NULL && selector == NULL) {
        return fail(ps, "placement: must name agents or a selector");
    }
    if (agents != NULL) {
        rv = string_set(ps, agents, "placement.agents", POLICY_AGENTS_MAX,
                        agent_id_valid,
                        "must be 1..64 characters of [A-Za-z0-9_.:-]",
                        &pl->agents, &pl->n_agents);
        if (rv != 0) {
            return rv;
        }
    }
    if (selector != NULL) {
        rv = parse_selector(ps, selector, &pl->selector);
    }
    return rv;
}

/* ------------------------------------------------------------------------
 * Services
 * --------------------------------------------------------------------- */

/* Rewrite @msg of sup_spec_parse_json() ("services.<name>.backoff: ...",
 * "services.name: required") into @errmsg, rooted at services[@i]. */
static void reroot(char *errmsg, size_t i, const char *name, const char *msg)
{
    static const char prefix[] = "services.";
    const char *rest;
    size_t nl = name != NULL ? strlen(name) : 0;

    if (strncmp(msg, prefix, sizeof prefix - 1) != 0) {
        rems_errmsgf(errmsg, "services[%zu]: %s", i, msg);
        return;
    }
    rest = msg + sizeof prefix - 1;
    if (nl > 0 && strncmp(rest, name, nl) == 0 &&
        (rest[nl] == '.' || rest[nl] == ':')) {
        rems_errmsgf(errmsg, "services[%zu]%s", i, rest + nl);
        return;
    }
    rems_errmsgf(errmsg, "services[%zu].%s", i, rest);
}

static bool env_name_valid(const char *k)
{
    size_t n;
    if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z') ||
          k[0] == '_')) {
        return false;
    }
    for (n = 0; k[n] != '\0'; n++) {
        char c = k[n];
        if (n >= ENV_KEY_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

/* "scheme://rest": scheme [a-z][a-z0-9+.-]*, rest 1.. printable ASCII
 * bytes without spaces; 1..POLICY_SECRET_REF_MAX bytes in all. */
static bool ref_valid(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 0 || len > POLICY_SECRET_REF_MAX ||
        !(s[0] >= 'a' && s[0] <= 'z')) {
        return false;
    }
    while (i < len &&
           ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
            s[i] == '+' || s[i] == '.' || s[i] == '-')) {
        i++;
    }
    if (len - i < 4 || memcmp(s + i, "://", 3) != 0) {
        return false;
    }
    for (i += 3; i < len; i++) {
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

static int parse_secrets(struct parse *ps,
                         const json_t *arr,
                         const char *path,
                         const struct sup_service_spec *spec,
                         struct policy_service *svc)
{
    static const char *const allowed[] = {"env", "ref", NULL};
    char field[PATH_SIZE];
    size_t n;
    size_t i;
    size_t j;
    int rv;

    if (!json_is_array(arr)) {
        return fail(ps, "%s: must be an array", path);
    }
    n = json_array_size(arr);
    if (n > POLICY_SECRETS_MAX) {
        return fail(ps, "%s: must have at most %d entries", path,
                    POLICY_SECRETS_MAX);
    }
    svc->secrets = policy__arena_alloc(ps->arena, n * sizeof(*svc->secrets));
    if (svc->secrets == NULL) {
        return oom(ps);
    }
    for (i = 0; i < n; i++) {
        const json_t *obj = json_array_get(arr, i);
        const json_t *env;
        const json_t *ref;
        const char *name;

        snprintf(field, sizeof field, "%s[%zu]", path, i);
        if (!json_is_object(obj)) {
            return fail(ps, "%s: must be an object {env, ref}", field);
        }
        if (json_object_get(obj, "value") != NULL) {
            return fail(ps,
                        "%s.value: not allowed: a secret is a reference "
                        "(ref), never a value",
                        field);
        }
        rv = check_keys(ps, obj, field, allowed);
        if (rv != 0) {
            return rv;
        }
        env = json_object_get(obj, "env");
        if (env == NULL) {
            return fail(ps, "%s.env: required", field);
        }
        if (!plain_string(env) || !env_name_valid(json_string_value(env))) {
            return fail(ps, "%s.env: must match [A-Za-z_][A-Za-z0-9_]*", field);
        }
        name = json_string_value(env);
        for (j = 0; j < i; j++) {
            if (strcmp(svc->secrets[j].env, name) == 0) {
                return fail(ps, "%s.env: \"%.64s\" given twice", field, name);
            }
        }
        for (j = 0; spec->env != NULL && spec->env[j] != NULL; j++) {
            size_t len = strlen(name);
            if (strncmp(spec->env[j], name, len) == 0 &&
                spec->env[j][len] == '=') {
                return fail(ps, "%s.env: \"%.64s\" is also set in env", field,
                            name);
            }
        }
        ref = json_object_get(obj, "ref");
        if (ref == NULL) {
            return fail(ps, "%s.ref: required", field);
        }
        if (!plain_string(ref) ||
            !ref_valid(json_string_value(ref), json_string_length(ref))) {
            return fail(ps,
                        "%s.ref: must be a reference scheme://location "
                        "(1..%d bytes, no spaces)",
                        field, POLICY_SECRET_REF_MAX);
        }
        rv = copy_string(ps, env, &svc->secrets[i].env);
        if (rv == 0) {
            rv = copy_string(ps, ref, &svc->secrets[i].ref);
        }
        if (rv != 0) {
            return rv;
        }
    }
    svc->n_secrets = n;
    qsort(svc->secrets, n, sizeof *svc->secrets, cmp_secret);
    return 0;
}

static int parse_allowed(struct parse *ps,
                         const json_t *arr,
                         const char *path,
                         unsigned *out)
{
    unsigned bits = 0;
    size_t i;

    if (!json_is_array(arr)) {
        return fail(ps, "%s: must be an array of command names", path);
    }
    for (i = 0; i < json_array_size(arr); i++) {
        const json_t *v = json_array_get(arr, i);
        const char *name = plain_string(v) ? json_string_value(v) : NULL;
        int a;
        int found = 0;

        if (name == NULL) {
            return fail(ps, "%s[%zu]: must be a string", path, i);
        }
        for (a = PROTO_ACTION_START; a <= PROTO_ACTION_DIAGNOSTICS; a++) {
            if (strcmp(proto_action_name(a), name) == 0) {
                found = a;
                break;
            }
        }
        if (found == 0) {
            return fail(ps,
                        "%s[%zu]: unknown command \"%.64s\" (start, stop, "
                        "restart, pause, resume, quarantine, push_manifest, "
                        "diagnostics)",
                        path, i, name);
        }
        if ((bits & (1u << found)) != 0) {
            return fail(ps, "%s[%zu]: \"%s\" given twice", path, i, name);
        }
        bits |= 1u << found;
    }
    *out = bits;
    return 0;
}

/* The rems-only fields of a service object; the rest is the process. */
static const char *const rems_fields[] = {"criticality", "allowed_commands",
                                          "secrets", NULL};

static int parse_service(struct parse *ps,
                         const json_t *obj,
                         size_t i,
                         struct policy_service *svc)
{
    char path[PATH_SIZE];
    char field[PATH_SIZE];
    char msg[REMS_ERRMSG_SIZE];
    const json_t *name;
    const json_t *v;
    json_t *proc;
    char *text;
    size_t k;
    int rv;

    snprintf(path, sizeof path, "services[%zu]", i);
    if (!json_is_object(obj)) {
        return fail(ps, "%s: must be an object", path);
    }
    proc = json_copy((json_t *)obj);
    if (proc == NULL) {
        return oom(ps);
    }
    for (k = 0; rems_fields[k] != NULL; k++) {
        json_object_del(proc, rems_fields[k]);
    }
    text = json_dumps(proc, DUMP_FLAGS);
    json_decref(proc);
    if (text == NULL) {
        return oom(ps);
    }
    rv = sup_spec_parse_json(text, strlen(text), &svc->spec, msg);
    if (rv != 0) {
        jfree(text);
        if (rv == REMS_ENOMEM) {
            return oom(ps);
        }
        name = json_object_get(obj, "name");
        reroot(ps->errmsg, i,
               plain_string(name) ? json_string_value(name) : NULL, msg);
        return REMS_EINVAL;
    }
    svc->manifest_len = strlen(text);
    svc->manifest = policy__arena_strndup(ps->arena, text, svc->manifest_len);
    jfree(text);
    if (svc->manifest == NULL) {
        return oom(ps);
    }
    svc->digest = policy_digest(svc->manifest, svc->manifest_len);
    svc->name = svc->spec->name;

    svc->criticality = POLICY_OPTIONAL;
    v = json_object_get(obj, "criticality");
    if (v != NULL) {
        const char *c = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(c, "critical") == 0) {
            svc->criticality = POLICY_CRITICAL;
        } else if (strcmp(c, "optional") != 0) {
            return fail(ps, "%s.criticality: must be critical or optional",
                        path);
        }
    }
    svc->allowed = POLICY_ALLOWED_ALL;
    v = json_object_get(obj, "allowed_commands");
    if (v != NULL) {
        join(field, path, "allowed_commands");
        rv = parse_allowed(ps, v, field, &svc->allowed);
        if (rv != 0) {
            return rv;
        }
    }
    v = json_object_get(obj, "secrets");
    if (v != NULL) {
        join(field, path, "secrets");
        rv = parse_secrets(ps, v, field, svc->spec, svc);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* Unique names, known dependencies (as indexes), no cycle, the order. */
static int link_services(struct parse *ps)
{
    struct policy *p = ps->p;
    const struct sup_service_spec **specs;
    char msg[REMS_ERRMSG_SIZE];
    size_t *order;
    size_t i;
    size_t j;
    int rv;

    for (i = 0; i < p->n_services; i++) {
        for (j = 0; j < i; j++) {
            if (strcmp(p->services[i].name, p->services[j].name) == 0) {
                return fail(ps,
                            "services[%zu].name: \"%s\" is also "
                            "services[%zu]",
                            i, p->services[i].name, j);
            }
        }
    }
    for (i = 0; i < p->n_services; i++) {
        struct policy_service *svc = &p->services[i];
        char *const *deps = svc->spec->depends_on;
        size_t n = 0;
        size_t *idx;

        while (deps != NULL && deps[n] != NULL) {
            n++;
        }
        idx = policy__arena_alloc(ps->arena, n * sizeof *idx);
        if (idx == NULL) {
            return oom(ps);
        }
        for (j = 0; j < n; j++) {
            idx[j] = policy_service_find(p, deps[j]);
            if (idx[j] == SIZE_MAX) {
                return fail(ps,
                            "services[%zu].depends_on: unknown service "
                            "\"%s\"",
                            i, deps[j]);
            }
        }
        svc->deps = idx;
        svc->n_deps = n;
    }
    specs = policy__arena_alloc(ps->arena, p->n_services * sizeof *specs);
    order = policy__arena_alloc(ps->arena, p->n_services * sizeof *order);
    if (specs == NULL || order == NULL) {
        return oom(ps);
    }
    for (i = 0; i < p->n_services; i++) {
        specs[i] = p->services[i].spec;
    }
    rv = sup_spec_order(specs, p->n_services, order, msg);
    if (rv == REMS_ENOMEM) {
        return oom(ps);
    }
    if (rv != 0) {
        return fail(ps, "services: %s", msg);
    }
    p->order = order;
    return 0;
}

static int parse_services(struct parse *ps, const json_t *root)
{
    struct policy *p = ps->p;
    const json_t *arr = json_object_get(root, "services");
    size_t n;
    size_t i;
    int rv;

    if (arr == NULL) {
        return fail(ps, "services: required");
    }
    if (!json_is_array(arr)) {
        return fail(ps, "services: must be an array");
    }
    n = json_array_size(arr);
    if (n > POLICY_SERVICES_MAX) {
        return fail(ps, "services: must have at most %d entries",
                    POLICY_SERVICES_MAX);
    }
    p->services = policy__arena_alloc(ps->arena, n * sizeof *p->services);
    if (p->services == NULL) {
        return oom(ps);
    }
    for (i = 0; i < n; i++) {
        /* Counted first, so that policy_free() frees a spec parsed before
         * a later rule of the same service failed. */
        p->n_services = i + 1;
        rv = parse_service(ps, json_array_get(arr, i), i, &p->services[i]);
        if (rv != 0) {
            return rv;
        }
    }
    return link_services(ps);
}

/* ------------------------------------------------------------------------
 * Rollout, remediation, the document
 * --------------------------------------------------------------------- */

/* "N%" with N 1..100. */
static bool percent_parse(const char *s, unsigned *out)
{
    unsigned v = 0;
    size_t i;
    for (i = 0; s[i] >= '0' && s[i] <= '9' && i < 3; i++) {
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (i == 0 || strcmp(s + i, "%") != 0 || v < 1 || v > 100) {
        return false;
    }
    *out = v;
    return true;
}

static int parse_rollout(struct parse *ps, const json_t *root)
{
    static const char *const allowed[] = {
        "canary",         "health_gate_ms", "gate_timeout_ms", "batch_size",
        "batch_pause_ms", "auto_rollback",  NULL};
    static const char rule[] =
        "rollout.canary: must be 1..100 percent or a count >= 1";
    struct policy_rollout *r = &ps->p->rollout;
    const json_t *obj = json_object_get(root, "rollout");
    const json_t *canary;
    uint64_t v;
    int rv;

    r->canary = POLICY_DEFAULT_CANARY;
    r->health_gate_ms = POLICY_DEFAULT_HEALTH_GATE_MS;
    r->gate_timeout_ms = 4 * POLICY_DEFAULT_HEALTH_GATE_MS;
    r->batch_size = POLICY_DEFAULT_BATCH_SIZE;
    r->batch_pause_ms = POLICY_DEFAULT_BATCH_PAUSE_MS;
    r->auto_rollback = true;
    if (obj == NULL) {
        return 0;
    }
    if (!json_is_object(obj)) {
        return fail(ps, "rollout: must be an object");
    }
    rv = check_keys(ps, obj, "rollout", allowed);
    if (rv != 0) {
        return rv;
    }
    canary = json_object_get(obj, "canary");
    if (canary != NULL) {
        if (json_is_integer(canary)) {
            json_int_t n = json_integer_value(canary);
            if (n < 1) {
                return fail(ps, "%s", rule);
            }
            if (n > POLICY_CANARY_COUNT_MAX) {
                return fail(ps, "rollout.canary: a count must be <= %d",
                            POLICY_CANARY_COUNT_MAX);
            }
            r->canary = (unsigned)n;
        } else if (plain_string(canary) &&
                   percent_parse(json_string_value(canary), &r->canary)) {
            r->canary_percent = true;
        } else {
            return fail(ps, "%s", rule);
        }
    }
    rv = get_uint(ps, obj, "rollout", "health_gate_ms", 0,
                  POLICY_DURATION_MAX_MS, POLICY_DEFAULT_HEALTH_GATE_MS,
                  &r->health_gate_ms);
    if (rv == 0) {
        rv = get_uint(ps, obj, "rollout", "batch_size", 1,
                      POLICY_BATCH_SIZE_MAX, POLICY_DEFAULT_BATCH_SIZE, &v);
        r->batch_size = (unsigned)v;
    }
    if (rv == 0) {
        rv = get_uint(ps, obj, "rollout", "batch_pause_ms", 0,
                      POLICY_DURATION_MAX_MS, POLICY_DEFAULT_BATCH_PAUSE_MS,
                      &r->batch_pause_ms);
    }
    if (rv == 0) {
        rv = get_bool(ps, obj, "rollout", "auto_rollback", true,
                      &r->auto_rollback);
    }
    if (rv == 0) {
        /* Default: four health gates, at least a minute, at most 24 h. */
        uint64_t def = r->health_gate_ms * 4;
        if (def < POLICY_DEFAULT_GATE_TIMEOUT_MS) {
            def = POLICY_DEFAULT_GATE_TIMEOUT_MS;
        }
        if (def > POLICY_DURATION_MAX_MS) {
            def = POLICY_DURATION_MAX_MS;
        }
        rv = get_uint(ps, obj, "rollout", "gate_timeout_ms", 1,
                      POLICY_DURATION_MAX_MS, def, &r->gate_timeout_ms);
    }
    if (rv == 0 && r->gate_timeout_ms < r->health_gate_ms) {
        rv = fail(ps, "rollout.gate_timeout_ms: must be >= "
                      "rollout.health_gate_ms (%" PRIu64 ")",
                  r->health_gate_ms);
    }
    return rv;
}

static int parse_remediation(struct parse *ps, const json_t *root)
{
    static const char *const allowed[] = {"max_attempts", "backoff_ms",
                                          "reset_after_ms", NULL};
    struct policy_remediation *r = &ps->p->remediation;
    const json_t *obj = json_object_get(root, "remediation");
    uint64_t v;
    int rv;

    r->max_attempts = POLICY_DEFAULT_MAX_ATTEMPTS;
    r->backoff_ms = POLICY_DEFAULT_BACKOFF_MS;
    r->reset_after_ms = POLICY_DEFAULT_RESET_AFTER_MS;
    if (obj == NULL) {
        return 0;
    }
    if (!json_is_object(obj)) {
        return fail(ps, "remediation: must be an object");
    }
    rv = check_keys(ps, obj, "remediation", allowed);
    if (rv != 0) {
        return rv;
    }
    rv = get_uint(ps, obj, "remediation", "max_attempts", 1,
                  POLICY_MAX_ATTEMPTS_MAX, POLICY_DEFAULT_MAX_ATTEMPTS, &v);
    r->max_attempts = (unsigned)v;
    if (rv == 0) {
        rv = get_uint(ps, obj, "remediation", "backoff_ms", 0,
                      POLICY_DURATION_MAX_MS, POLICY_DEFAULT_BACKOFF_MS,
                      &r->backoff_ms);
    }
    if (rv == 0) {
        rv = get_uint(ps, obj, "remediation", "reset_after_ms", 1,
                      POLICY_DURATION_MAX_MS, POLICY_DEFAULT_RESET_AFTER_MS,
                      &r->reset_after_ms);
    }
    return rv;
}

static int parse_document(struct parse *ps, const json_t *root)
{
    static const char *const allowed[] = {
        "description", "metadata",    "placement", "mode",
        "services",    "rollout",     "remediation", NULL};
    const json_t *v;
    int rv;

    rv = check_keys(ps, root, "policy", allowed);
    if (rv != 0) {
        return rv;
    }
    ps->p->description = "";
    v = json_object_get(root, "description");
    if (v != NULL) {
        if (!plain_string(v) ||
            json_string_length(v) > POLICY_DESCRIPTION_MAX) {
            return fail(ps,
                        "description: must be a string of at most %d "
                        "bytes",
                        POLICY_DESCRIPTION_MAX);
        }
        rv = copy_string(ps, v, &ps->p->description);
        if (rv != 0) {
            return rv;
        }
    }
    ps->p->metadata = "{}";
    v = json_object_get(root, "metadata");
    if (v != NULL) {
        char *text;
        if (!json_is_object(v)) {
            return fail(ps, "metadata: must be an object");
        }
        text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        if (text == NULL) {
            return oom(ps);
        }
        ps->p->metadata = policy__arena_strdup(ps->arena, text);
        jfree(text);
        if (ps->p->metadata == NULL) {
            return oom(ps);
        }
    }
    rv = parse_placement(ps, root);
    if (rv != 0) {
        return rv;
    }
    ps->p->mode = POLICY_MODE_RECOMMEND;
    v = json_object_get(root, "mode");
    if (v != NULL) {
        const char *m = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(m, "auto") == 0) {
            ps->p->mode = POLICY_MODE_AUTO;
        } else if (strcmp(m, "recommend") != 0) {
            return fail(ps, "mode: must be recommend or auto");
        }
    }
    rv = parse_services(ps, root);
    if (rv == 0) {
        rv = parse_rollout(ps, root);
    }
    if (rv == 0) {
        rv = parse_remediation(ps, root);
    }
    return rv;
}

int policy_parse_json(const char *json,
                      size_t len,
                      struct policy **out,
                      char *errmsg)
{
    struct policy_box *box;
    struct parse ps;
    json_error_t jerr;
    json_t *root;
    int rv;

    PRE(json != NULL && out != NULL && errmsg != NULL);

    if (len > POLICY_DOC_MAX) {
        rems_errmsgf(errmsg, "policy: must be at most %d bytes",
                     POLICY_DOC_MAX);
        rv = REMS_ETOOBIG;
        goto err;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rems_errmsgf(errmsg, "policy: not JSON: line %d: %s", jerr.line,
                     jerr.text);
        rv = REMS_EMALFORMED;
        goto err;
    }
    if (!json_is_object(root)) {
        rems_errmsgf(errmsg, "policy: must be a JSON object");
        rv = REMS_EMALFORMED;
        goto err_after_load;
    }
    box = rems_calloc(1, sizeof *box);
    if (box == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_load;
    }
    policy__arena_init(&box->arena, 0);
    box->p.priv = box;
    ps.p = &box->p;
    ps.arena = &box->arena;
    ps.errmsg = errmsg;
    rv = parse_document(&ps, root);
    if (rv != 0) {
        goto err_after_alloc;
    }
    json_decref(root);
    *out = &box->p;
    return 0;

err_after_alloc:
    policy_free(&box->p);
err_after_load:
    json_decref(root);
err:
    POST(rv != 0);
    return rv;
}

void policy_free(struct policy *p)
{
    struct policy_box *box;
    size_t i;

    if (p == NULL) {
        return;
    }
    box = p->priv;
    for (i = 0; i < p->n_services; i++) {
        sup_spec_free(p->services[i].spec);
    }
    policy__arena_close(&box->arena);
    rems_free(box);
}

size_t policy_service_find(const struct policy *p, const char *name)
{
    size_t i;
    for (i = 0; i < p->n_services; i++) {
        if (p->services[i].name != NULL &&
            strcmp(p->services[i].name, name) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* ------------------------------------------------------------------------
 * Rendering
 * --------------------------------------------------------------------- */

/* json_object_set_new() that remembers a failure in *@ok. */
static void set(json_t *obj, const char *key, json_t *v, bool *ok)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0) {
        *ok = false;
    }
}

static void append(json_t *arr, json_t *v, bool *ok)
{
    if (v == NULL || json_array_append_new(arr, v) != 0) {
        *ok = false;
    }
}

static json_t *strings_json(const char *const *items, size_t n, bool *ok)
{
    json_t *arr = json_array();
    size_t i;
    if (arr == NULL) {
        *ok = false;
        return NULL;
    }
    for (i = 0; i < n; i++) {
        append(arr, json_string(items[i]), ok);
    }
    return arr;
}

static json_t *placement_json(const struct policy_placement *pl, bool *ok)
{
    json_t *o = json_object();
    json_t *sel;
    json_t *labels;
    json_t *exprs;
    size_t i;

    if (o == NULL) {
        *ok = false;
        return NULL;
    }
    if (pl->n_agents > 0) {
        set(o, "agents", strings_json(pl->agents, pl->n_agents, ok), ok);
    }
    if (!pl->selector.present) {
        return o;
    }
    sel = json_object();
    labels = json_object();
    exprs = json_array();
    for (i = 0; labels != NULL && i < pl->selector.n_match_labels; i++) {
        set(labels, pl->selector.match_labels[i].key,
            json_string(pl->selector.match_labels[i].value), ok);
    }
    for (i = 0; exprs != NULL && i < pl->selector.n_expressions; i++) {
        const struct policy_expression *e = &pl->selector.expressions[i];
        json_t *x = json_object();
        if (x != NULL) {
            set(x, "key", json_string(e->key), ok);
            set(x, "operator", json_string(policy_operator_name(e->op)), ok);
            if (e->n_values > 0) {
                set(x, "values", strings_json(e->values, e->n_values, ok), ok);
            }
        }
        append(exprs, x, ok);
    }
    if (sel != NULL) {
        set(sel, "match_labels", labels, ok);
        set(sel, "match_expressions", exprs, ok);
    } else {
        json_decref(labels);
        json_decref(exprs);
    }
    set(o, "selector", sel, ok);
    return o;
}

static json_t *service_json(const struct policy_service *svc, bool *ok)
{
    json_t *o = json_loadb(svc->manifest, svc->manifest_len, 0, NULL);
    json_t *allowed;
    json_t *secrets;
    int a;
    size_t i;

    if (o == NULL) {
        *ok = false;
        return NULL;
    }
    set(o, "criticality",
        json_string(policy_criticality_name(svc->criticality)), ok);
    allowed = json_array();
    for (a = PROTO_ACTION_START;
         allowed != NULL && a <= PROTO_ACTION_DIAGNOSTICS; a++) {
        if ((svc->allowed & (1u << a)) != 0) {
            append(allowed, json_string(proto_action_name(a)), ok);
        }
    }
    set(o, "allowed_commands", allowed, ok);
    secrets = json_array();
    for (i = 0; secrets != NULL && i < svc->n_secrets; i++) {
        json_t *s = json_object();
        if (s != NULL) {
            set(s, "env", json_string(svc->secrets[i].env), ok);
            set(s, "ref", json_string(svc->secrets[i].ref), ok);
        }
        append(secrets, s, ok);
    }
    set(o, "secrets", secrets, ok);
    return o;
}

int policy_render_json(const struct policy *p,
                       char **out,
                       size_t *len,
                       char *errmsg)
{
    json_t *root;
    json_t *services;
    json_t *rollout;
    json_t *remediation;
    bool ok = true;
    char *text;
    char *copy;
    char canary[8];
    size_t i;
    int rv;

    PRE(p != NULL && out != NULL && len != NULL && errmsg != NULL);

    root = json_object();
    if (root == NULL) {
        rv = REMS_ENOMEM;
        goto err;
    }
    set(root, "description", json_string(p->description), &ok);
    set(root, "metadata", json_loads(p->metadata, 0, NULL), &ok);
    set(root, "placement", placement_json(&p->placement, &ok), &ok);
    set(root, "mode", json_string(policy_mode_name(p->mode)), &ok);
    services = json_array();
    for (i = 0; services != NULL && i < p->n_services; i++) {
        append(services, service_json(&p->services[i], &ok), &ok);
    }
    set(root, "services", services, &ok);
    rollout = json_object();
    if (rollout != NULL) {
        if (p->rollout.canary_percent) {
            snprintf(canary, sizeof canary, "%u%%", p->rollout.canary);
            set(rollout, "canary", json_string(canary), &ok);
        } else {
            set(rollout, "canary", json_integer(p->rollout.canary), &ok);
        }
        set(rollout, "health_gate_ms",
            json_integer((json_int_t)p->rollout.health_gate_ms), &ok);
        set(rollout, "gate_timeout_ms",
            json_integer((json_int_t)p->rollout.gate_timeout_ms), &ok);
        set(rollout, "batch_size", json_integer(p->rollout.batch_size), &ok);
        set(rollout, "batch_pause_ms",
            json_integer((json_int_t)p->rollout.batch_pause_ms), &ok);
        set(rollout, "auto_rollback", json_boolean(p->rollout.auto_rollback),
            &ok);
    }
    set(root, "rollout", rollout, &ok);
    remediation = json_object();
    if (remediation != NULL) {
        set(remediation, "max_attempts",
            json_integer(p->remediation.max_attempts), &ok);
        set(remediation, "backoff_ms",
            json_integer((json_int_t)p->remediation.backoff_ms), &ok);
        set(remediation, "reset_after_ms",
            json_integer((json_int_t)p->remediation.reset_after_ms), &ok);
    }
    set(root, "remediation", remediation, &ok);
    if (!ok) {
        rv = REMS_ENOMEM;
        goto err_after_root;
    }
    text = json_dumps(root, DUMP_FLAGS);
    if (text == NULL) {
        rv = REMS_ENOMEM;
        goto err_after_root;
    }
    /* Into the rems heap, so that the caller frees it with rems_free(). */
    copy = rems_strdup(text);
    jfree(text);
    if (copy == NULL) {
        rv = REMS_ENOMEM;
        goto err_after_root;
    }
    json_decref(root);
    *out = copy;
    *len = strlen(copy);
    return 0;

err_after_root:
    json_decref(root);
err:
    rems_errmsg_oom(errmsg);
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * Selection
 * --------------------------------------------------------------------- */

static const char *
label_get(const struct policy_label *labels, size_t n, const char *key)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (strcmp(labels[i].key, key) == 0) {
            return labels[i].value;
        }
    }
    return NULL;
}

static bool value_in(const struct policy_expression *e, const char *v)
{
    const char **hit =
        bsearch(&v, e->values, e->n_values, sizeof *e->values, cmp_str);
    return hit != NULL;
}

bool policy_selects(const struct policy *p,
                    const char *agent_id,
                    const struct policy_label *labels,
                    size_t n_labels)
{
    const struct policy_placement *pl = &p->placement;
    const struct policy_selector *sel = &pl->selector;
    size_t i;

    PRE(p != NULL && agent_id != NULL);
    if (pl->n_agents > 0 && bsearch(&agent_id, pl->agents, pl->n_agents,
                                    sizeof *pl->agents, cmp_str) != NULL) {
        return true;
    }
    if (!sel->present) {
        return false;
    }
    for (i = 0; i < sel->n_match_labels; i++) {
        const char *v = label_get(labels, n_labels, sel->match_labels[i].key);
        if (v == NULL || strcmp(v, sel->match_labels[i].value) != 0) {
            return false;
        }
    }
    for (i = 0; i < sel->n_expressions; i++) {
        const struct policy_expression *e = &sel->expressions[i];
        const char *v = label_get(labels, n_labels, e->key);
        bool hold;
        switch (e->op) {
            case POLICY_OP_IN:
                hold = v != NULL && value_in(e, v);
                break;
            case POLICY_OP_NOT_IN:
                hold = v == NULL || !value_in(e, v);
                break;
            case POLICY_OP_EXISTS:
                hold = v != NULL;
                break;
            default:
                hold = v == NULL;
                break;
        }
        if (!hold) {
            return false;
        }
    }
    return true;
}
