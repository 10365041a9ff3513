/* agentproto/sup_spec.c: service specs of the supervisor, without a loop.
 *
 * sup_spec_parse_json() reads one service object with jansson and checks
 * it strictly: every field has one JSON type, a range and, where it is a
 * name, a character set; a field that is not known is an error, and so is
 * a field that does not belong to the check type it appears in. Each
 * message names the field by its path below "services.<name>" and the rule
 * it broke ("services.web.backoff.multiplier: must be >= 1"). Fields that
 * are absent get the defaults of supervisor.h (SUP_DEFAULT_*), which
 * docs/agent-config.md lists.
 *
 * The rest is pure: the backoff formula, the topological order of the
 * services (depth first, in the order the services were given, so that a
 * set without dependencies keeps its order) and a deep copy of a spec. */
#include "agentproto/supervisor.h"

#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "agentproto/supervisor_int.h"
#include "common/assert.h"
#include "common/heap.h"

/* Room for "services.<name>.<object>" paths. */
#define PATH_SIZE 256

/* Bounds on the arrays and strings of a spec. */
#define ARGV_MAX 256                   /* command entries */
#define ARG_LEN_MAX 32768              /* bytes of one argument */
#define ENV_MAX 256                    /* env entries */
#define ENV_KEY_MAX 256                /* bytes of an env name */
#define ENV_VALUE_MAX 32768            /* bytes of an env value */
#define DEPENDS_MAX 64                 /* depends_on entries */
#define PATH_LEN_MAX 4096              /* cwd */
#define USER_LEN_MAX 32                /* user */
#define TARGET_LEN_MAX 2048            /* url, address */
#define THRESHOLD_MAX 1000u            /* failure/success thresholds */
#define RETRIES_MAX 1000000u           /* backoff.max_retries */
#define MULTIPLIER_MAX 100.0           /* backoff.multiplier */
#define MEMORY_MAX ((uint64_t)1 << 50) /* limits.memory_max_bytes: 1 PiB */
#define CPU_PERCENT_MAX 100000u        /* limits.cpu_max_percent: 1000 CPUs */
#define NOFILE_MAX 1048576u            /* limits.nofile: Linux's nr_open */
#define LOG_BYTES_MIN 1024u            /* log.max_bytes */
#define LOG_BYTES_MAX ((uint64_t)1 << 40)
#define LOG_KEEP_MAX 100u /* log.keep */

/* ------------------------------------------------------------------------
 * Names
 * --------------------------------------------------------------------- */

static const struct {
    const char *name;
    int sig;
} signals[] = {
    {"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},   {"QUIT", SIGQUIT},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"KILL", SIGKILL},
};

const char *sup__signal_name(int sig)
{
    size_t i;
    for (i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (signals[i].sig == sig) {
            return signals[i].name;
        }
    }
    return "?";
}

static int signal_parse(const char *s)
{
    size_t i;
    if (strncmp(s, "SIG", 3) == 0) {
        s += 3;
    }
    for (i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (strcmp(signals[i].name, s) == 0) {
            return signals[i].sig;
        }
    }
    return 0;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
           c == '@' || c == '-';
}

bool sup__name_valid(const char *name)
{
    size_t n;
    for (n = 0; name[n] != '\0'; n++) {
        if (n >= PROTO_SERVICE_MAX || !name_char(name[n])) {
            return false;
        }
    }
    return n > 0;
}

static bool user_valid(const char *u)
{
    size_t n;
    if (u[0] == '-') {
        return false;
    }
    for (n = 0; u[n] != '\0'; n++) {
        char c = u[n];
        if (n >= USER_LEN_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return n > 0;
}

static bool env_key_valid(const char *k)
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

/* ------------------------------------------------------------------------
 * Targets
 * --------------------------------------------------------------------- */

static int port_parse(const char *s, int *port)
{
    long v = 0;
    size_t i;
    if (s[0] == '\0') {
        return REMS_EINVAL;
    }
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 5) {
            return REMS_EINVAL;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535) {
        return REMS_EINVAL;
    }
    *port = (int)v;
    return 0;
}

static bool host_valid(const char *h, size_t len)
{
    size_t i;
    if (len == 0) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':' ||
              c == '_' || c == '%')) {
            return false;
        }
    }
    return true;
}

/* @s is host:port (no path) of @len bytes. */
static int hostport_split(const char *s,
                          size_t len,
                          char *host,
                          size_t cap,
                          int *port,
                          bool port_optional)
{
    const char *hs;
    size_t hlen;
    const char *ps = NULL;
    size_t plen = 0;
    char pbuf[8];

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL) {
            return REMS_EINVAL;
        }
        hs = s + 1;
        hlen = (size_t)(close - hs);
        if ((size_t)(close - s) + 1 < len) {
            if (close[1] != ':') {
                return REMS_EINVAL;
            }
            ps = close + 2;
            plen = len - (size_t)(ps - s);
        }
    } else {
        const char *colon = NULL;
        size_t i;
        for (i = 0; i < len; i++) {
            if (s[i] == ':') {
                if (colon != NULL) {
                    return REMS_EINVAL; /* a bare IPv6 address needs [] */
                }
                colon = s + i;
            }
        }
        hs = s;
        hlen = colon != NULL ? (size_t)(colon - s) : len;
        if (colon != NULL) {
            ps = colon + 1;
            plen = len - (size_t)(ps - s);
        }
    }
    if (!host_valid(hs, hlen) || hlen + 1 > cap) {
        return REMS_EINVAL;
    }
    if (ps == NULL) {
        if (!port_optional) {
            return REMS_EINVAL;
        }
    } else {
        if (plen == 0 || plen >= sizeof pbuf) {
            return REMS_EINVAL;
        }
        memcpy(pbuf, ps, plen);
        pbuf[plen] = '\0';
        if (port_parse(pbuf, port) != 0) {
            return REMS_EINVAL;
        }
    }
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    return 0;
}

int sup__hostport_parse(const char *s, char *host, size_t cap, int *port)
{
    return hostport_split(s, strlen(s), host, cap, port, false);
}

int sup__url_parse(const char *url,
                   char *host,
                   size_t hcap,
                   int *port,
                   char *path,
                   size_t pcap)
{
    static const char scheme[] = "http://";
    const char *auth;
    const char *slash;
    size_t alen;
    size_t i;
    int p = 80;

    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        return REMS_EINVAL;
    }
    auth = url + sizeof scheme - 1;
    slash = strchr(auth, '/');
    alen = slash != NULL ? (size_t)(slash - auth) : strlen(auth);
    if (memchr(auth, '@', alen) != NULL || memchr(auth, '?', alen) != NULL ||
        memchr(auth, '#', alen) != NULL) {
        return REMS_EINVAL;
    }
    if (hostport_split(auth, alen, host, hcap, &p, true) != 0) {
        return REMS_EINVAL;
    }
    if (slash == NULL) {
        slash = "/";
    }
    if (strlen(slash) + 1 > pcap) {
        return REMS_EINVAL;
    }
    for (i = 0; slash[i] != '\0'; i++) {
        unsigned char c = (unsigned char)slash[i];
        if (c <= 0x20 || c >= 0x7f || c == '#') {
            return REMS_EINVAL;
        }
    }
    memcpy(path, slash, strlen(slash) + 1);
    *port = p;
    return 0;
}

/* ------------------------------------------------------------------------
 * String vectors
 * --------------------------------------------------------------------- */

static size_t strv_len(char *const *v)
{
    size_t n = 0;
    while (v != NULL && v[n] != NULL) {
        n++;
    }
    return n;
}

static void strv_free(char **v)
{
    size_t i;
    if (v == NULL) {
        return;
    }
    for (i = 0; v[i] != NULL; i++) {
        rems_free(v[i]);
    }
    rems_free(v);
}

static int strv_dup(char *const *v, char ***out)
{
    size_t n = strv_len(v);
    char **c;
    size_t i;
    if (v == NULL) {
        *out = NULL;
        return 0;
    }
    c = rems_calloc(n + 1, sizeof *c);
    if (c == NULL) {
        return REMS_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        c[i] = rems_strdup(v[i]);
        if (c[i] == NULL) {
            strv_free(c);
            return REMS_ENOMEM;
        }
    }
    *out = c;
    return 0;
}

static int str_dup(const char *s, char **out)
{
    if (s == NULL) {
        *out = NULL;
        return 0;
    }
    *out = rems_strdup(s);
    return *out != NULL ? 0 : REMS_ENOMEM;
}

/* ------------------------------------------------------------------------
 * Free and copy
 * --------------------------------------------------------------------- */

static void check_free(struct sup_check *c)
{
    rems_free(c->target);
    strv_free(c->argv);
    c->target = NULL;
    c->argv = NULL;
}

void sup_spec_free(struct sup_service_spec *spec)
{
    if (spec == NULL) {
        return;
    }
    rems_free(spec->name);
    strv_free(spec->argv);
    strv_free(spec->env);
    rems_free(spec->cwd);
    rems_free(spec->user);
    check_free(&spec->liveness);
    check_free(&spec->fallback);
    check_free(&spec->readiness);
    strv_free(spec->depends_on);
    rems_free(spec);
}

static int check_copy(const struct sup_check *src, struct sup_check *dst)
{
    int rv;
    *dst = *src;
    dst->target = NULL;
    dst->argv = NULL;
    rv = str_dup(src->target, &dst->target);
    if (rv == 0) {
        rv = strv_dup(src->argv, &dst->argv);
    }
    return rv;
}

int sup__spec_copy(const struct sup_service_spec *spec,
                   struct sup_service_spec **out)
{
    struct sup_service_spec *c;
    int rv;

    c = rems_calloc(1, sizeof *c);
    if (c == NULL) {
        rv = REMS_ENOMEM;
        goto err;
    }
    *c = *spec;
    c->name = NULL;
    c->argv = NULL;
    c->env = NULL;
    c->cwd = NULL;
    c->user = NULL;
    c->liveness.target = c->fallback.target = c->readiness.target = NULL;
    c->liveness.argv = c->fallback.argv = c->readiness.argv = NULL;
    c->depends_on = NULL;
    /* From here sup_spec_free() releases whatever was copied so far. */
    rv = str_dup(spec->name, &c->name);
    if (rv == 0) {
        rv = strv_dup(spec->argv, &c->argv);
    }
    if (rv == 0) {
        rv = strv_dup(spec->env, &c->env);
    }
    if (rv == 0) {
        rv = str_dup(spec->cwd, &c->cwd);
    }
    if (rv == 0) {
        rv = str_dup(spec->user, &c->user);
    }
    if (rv == 0) {
        rv = check_copy(&spec->liveness, &c->liveness);
    }
    if (rv == 0) {
        rv = check_copy(&spec->fallback, &c->fallback);
    }
    if (rv == 0) {
        rv = check_copy(&spec->readiness, &c->readiness);
    }
    if (rv == 0) {
        rv = strv_dup(spec->depends_on, &c->depends_on);
    }
    if (rv != 0) {
        goto err_after_alloc;
    }
    *out = c;
    return 0;

err_after_alloc:
    sup_spec_free(c);
err:
    POST(rv != 0);
    return rv;
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool strv_eq(char *const *a, char *const *b)
{
    size_t i;
    if (a == NULL || b == NULL) {
        return a == b;
    }
    for (i = 0; a[i] != NULL && b[i] != NULL; i++) {
        if (strcmp(a[i], b[i]) != 0) {
            return false;
        }
    }
    return a[i] == NULL && b[i] == NULL;
}

static bool check_eq(const struct sup_check *a, const struct sup_check *b)
{
    return a->kind == b->kind && str_eq(a->target, b->target) &&
           strv_eq(a->argv, b->argv) && a->interval_ms == b->interval_ms &&
           a->timeout_ms == b->timeout_ms &&
           a->failure_threshold == b->failure_threshold &&
           a->success_threshold == b->success_threshold &&
           a->initial_delay_ms == b->initial_delay_ms;
}

bool sup__spec_equal(const struct sup_service_spec *a,
                     const struct sup_service_spec *b)
{
    return str_eq(a->name, b->name) && strv_eq(a->argv, b->argv) &&
           strv_eq(a->env, b->env) && str_eq(a->cwd, b->cwd) &&
           str_eq(a->user, b->user) && a->restart == b->restart &&
           a->backoff.initial_ms == b->backoff.initial_ms &&
           a->backoff.multiplier == b->backoff.multiplier &&
           a->backoff.max_ms == b->backoff.max_ms &&
           a->backoff.jitter == b->backoff.jitter &&
           a->backoff.max_retries == b->backoff.max_retries &&
           a->backoff.reset_after_ms == b->backoff.reset_after_ms &&
           a->stop_signal == b->stop_signal &&
           a->stop_timeout_ms == b->stop_timeout_ms &&
           check_eq(&a->liveness, &b->liveness) &&
           check_eq(&a->fallback, &b->fallback) &&
           check_eq(&a->readiness, &b->readiness) &&
           strv_eq(a->depends_on, b->depends_on) &&
           a->limits.memory_max_bytes == b->limits.memory_max_bytes &&
           a->limits.cpu_max_percent == b->limits.cpu_max_percent &&
           a->limits.nofile == b->limits.nofile &&
           a->log.max_bytes == b->log.max_bytes && a->log.keep == b->log.keep &&
           a->safe_state == b->safe_state && a->autostart == b->autostart;
}

/* ------------------------------------------------------------------------
 * JSON field readers
 *
 * Each reads obj[key] into *out when the key is present and leaves *out
 * (the default) alone otherwise. @path is the object's path.
 * --------------------------------------------------------------------- */

static bool key_in(const char *key, const char *const *allowed)
{
    size_t i;
    for (i = 0; allowed[i] != NULL; i++) {
        if (strcmp(allowed[i], key) == 0) {
            return true;
        }
    }
    return false;
}

static int check_keys(json_t *obj,
                      const char *path,
                      const char *const *allowed,
                      char *errmsg)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        (void)v;
        if (!key_in(key, allowed)) {
            rems_errmsgf(errmsg, "%s: unknown field \"%.64s\"", path, key);
            return REMS_EINVAL;
        }
    }
    return 0;
}

/* A string without NUL bytes. */
static bool plain_string(json_t *v)
{
    return json_is_string(v) &&
           strlen(json_string_value(v)) == json_string_length(v);
}

static int get_uint(json_t *obj,
                    const char *path,
                    const char *key,
                    uint64_t min,
                    uint64_t max,
                    uint64_t *out,
                    char *errmsg)
{
    json_t *v = json_object_get(obj, key);
    json_int_t i;
    if (v == NULL) {
        return 0;
    }
    if (!json_is_integer(v)) {
        rems_errmsgf(errmsg, "%s.%s: must be an integer", path, key);
        return REMS_EINVAL;
    }
    i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < min) {
        rems_errmsgf(errmsg, "%s.%s: must be >= %" PRIu64, path, key, min);
        return REMS_EINVAL;
    }
    if ((uint64_t)i > max) {
        if (max == PROTO_DURATION_MAX_MS) {
            rems_errmsgf(errmsg, "%s.%s: must be <= %" PRIu64 " (24 h)", path,
                         key, max);
        } else {
            rems_errmsgf(errmsg, "%s.%s: must be <= %" PRIu64, path, key, max);
        }
        return REMS_EINVAL;
    }
    *out = (uint64_t)i;
    return 0;
}

static int get_duration(json_t *obj,
                        const char *path,
                        const char *key,
                        uint64_t min,
                        uint64_t *out,
                        char *errmsg)
{
    return get_uint(obj, path, key, min, PROTO_DURATION_MAX_MS, out, errmsg);
}

static int get_unsigned(json_t *obj,
                        const char *path,
                        const char *key,
                        unsigned min,
                        unsigned max,
                        unsigned *out,
                        char *errmsg)
{
    uint64_t v = *out;
    int rv = get_uint(obj, path, key, min, max, &v, errmsg);
    if (rv == 0) {
        *out = (unsigned)v;
    }
    return rv;
}

static int get_number(json_t *obj,
                      const char *path,
                      const char *key,
                      double min,
                      double max,
                      double *out,
                      char *errmsg)
{
    json_t *v = json_object_get(obj, key);
    double d;
    if (v == NULL) {
        return 0;
    }
    if (!json_is_number(v)) {
        rems_errmsgf(errmsg, "%s.%s: must be a number", path, key);
        return REMS_EINVAL;
    }
    d = json_number_value(v);
    if (d < min) {
        rems_errmsgf(errmsg, "%s.%s: must be >= %g", path, key, min);
        return REMS_EINVAL;
    }
    if (d > max) {
        rems_errmsgf(errmsg, "%s.%s: must be <= %g", path, key, max);
        return REMS_EINVAL;
    }
    *out = d;
    return 0;
}

static int get_bool(
    json_t *obj, const char *path, const char *key, bool *out, char *errmsg)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        rems_errmsgf(errmsg, "%s.%s: must be true or false", path, key);
        return REMS_EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

/* A string of 1..@max bytes, without NUL, for a field whose value is
 * checked by the caller. Sets *@out to the borrowed value or NULL. */
static int get_cstr(json_t *obj,
                    const char *path,
                    const char *key,
                    size_t max,
                    const char **out,
                    char *errmsg)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL) {
        return 0;
    }
    if (!plain_string(v)) {
        rems_errmsgf(errmsg, "%s.%s: must be a string", path, key);
        return REMS_EINVAL;
    }
    if (json_string_length(v) == 0 || json_string_length(v) > max) {
        rems_errmsgf(errmsg, "%s.%s: must be 1..%zu bytes", path, key, max);
        return REMS_EINVAL;
    }
    *out = json_string_value(v);
    return 0;
}

static int dup_or_oom(const char *s, char **out, char *errmsg)
{
    *out = rems_strdup(s);
    if (*out == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    return 0;
}

/* An array of strings: 1..@max entries when @nonempty, else 0..@max. For
 * a command, the first entry must not be empty. */
static int get_strv(json_t *obj,
                    const char *path,
                    const char *key,
                    size_t max,
                    bool command,
                    char ***out,
                    char *errmsg)
{
    json_t *v = json_object_get(obj, key);
    size_t n;
    size_t i;
    char **strv;

    if (v == NULL) {
        return 0;
    }
    if (!json_is_array(v)) {
        rems_errmsgf(errmsg, "%s.%s: must be an array of strings", path, key);
        return REMS_EINVAL;
    }
    n = json_array_size(v);
    if ((command && n == 0) || n > max) {
        rems_errmsgf(errmsg, "%s.%s: must have %s..%zu entries", path, key,
                     command ? "1" : "0", max);
        return REMS_EINVAL;
    }
    for (i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!plain_string(e)) {
            rems_errmsgf(errmsg, "%s.%s[%zu]: must be a string", path, key, i);
            return REMS_EINVAL;
        }
        if (json_string_length(e) > ARG_LEN_MAX) {
            rems_errmsgf(errmsg, "%s.%s[%zu]: must be at most %d bytes", path,
                         key, i, ARG_LEN_MAX);
            return REMS_EINVAL;
        }
        if (command && i == 0 && json_string_length(e) == 0) {
            rems_errmsgf(errmsg, "%s.%s[0]: must not be empty", path, key);
            return REMS_EINVAL;
        }
    }
    strv = rems_calloc(n + 1, sizeof *strv);
    if (strv == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        if (dup_or_oom(json_string_value(json_array_get(v, i)), &strv[i],
                       errmsg) != 0) {
            strv_free(strv);
            return REMS_ENOMEM;
        }
    }
    strv_free(*out);
    *out = strv;
    return 0;
}

static int get_env(json_t *obj, const char *path, char ***out, char *errmsg)
{
    json_t *v = json_object_get(obj, "env");
    const char *key;
    json_t *val;
    size_t n;
    size_t i = 0;
    char **env;

    if (v == NULL) {
        return 0;
    }
    if (!json_is_object(v)) {
        rems_errmsgf(errmsg, "%s.env: must be an object of strings", path);
        return REMS_EINVAL;
    }
    n = json_object_size(v);
    if (n > ENV_MAX) {
        rems_errmsgf(errmsg, "%s.env: must have at most %d entries", path,
                     ENV_MAX);
        return REMS_EINVAL;
    }
    json_object_foreach(v, key, val)
    {
        if (!env_key_valid(key)) {
            rems_errmsgf(errmsg,
                         "%s.env: name \"%.64s\" must match "
                         "[A-Za-z_][A-Za-z0-9_]* (at most %d bytes)",
                         path, key, ENV_KEY_MAX);
            return REMS_EINVAL;
        }
        if (!plain_string(val) || json_string_length(val) > ENV_VALUE_MAX) {
            rems_errmsgf(errmsg,
                         "%s.env.%.64s: must be a string of at most %d bytes",
                         path, key, ENV_VALUE_MAX);
            return REMS_EINVAL;
        }
    }
    env = rems_calloc(n + 1, sizeof *env);
    if (env == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    json_object_foreach(v, key, val)
    {
        size_t klen = strlen(key);
        size_t vlen = json_string_length(val);
        env[i] = rems_malloc(klen + vlen + 2);
        if (env[i] == NULL) {
            strv_free(env);
            rems_errmsg_oom(errmsg);
            return REMS_ENOMEM;
        }
        memcpy(env[i], key, klen);
        env[i][klen] = '=';
        memcpy(env[i] + klen + 1, json_string_value(val), vlen + 1);
        i++;
    }
    *out = env;
    return 0;
}

/* ------------------------------------------------------------------------
 * Objects
 * --------------------------------------------------------------------- */

static const char *const check_type_names[] = {
    [SUP_CHECK_HTTP] = "http",
    [SUP_CHECK_TCP] = "tcp",
    [SUP_CHECK_EXEC] = "exec",
    [SUP_CHECK_PROCESS] = "process",
};

static int parse_check(json_t *obj,
                       const char *parent,
                       const char *key,
                       struct sup_check *c,
                       char *errmsg)
{
    static const char *const allowed[] = {"type",
                                          "url",
                                          "address",
                                          "command",
                                          "interval_ms",
                                          "timeout_ms",
                                          "failure_threshold",
                                          "success_threshold",
                                          "initial_delay_ms",
                                          NULL};
    /* The one target field of each type. */
    static const char *const target_field[] = {
        [SUP_CHECK_HTTP] = "url",
        [SUP_CHECK_TCP] = "address",
        [SUP_CHECK_EXEC] = "command",
        [SUP_CHECK_PROCESS] = NULL,
    };
    char path[PATH_SIZE];
    json_t *v = json_object_get(obj, key);
    const char *type;
    const char *target;
    int kind = SUP_CHECK_NONE;
    int k;
    char host[256];
    char upath[TARGET_LEN_MAX + 1];
    int port;
    int rv;

    if (v == NULL) {
        return 0;
    }
    snprintf(path, sizeof path, "%s.%s", parent, key);
    if (!json_is_object(v)) {
        rems_errmsgf(errmsg, "%s: must be an object", path);
        return REMS_EINVAL;
    }
    rv = check_keys(v, path, allowed, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = get_cstr(v, path, "type", 16, &type, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (type == NULL) {
        rems_errmsgf(errmsg, "%s.type: required", path);
        return REMS_EINVAL;
    }
    for (k = SUP_CHECK_HTTP; k <= SUP_CHECK_PROCESS; k++) {
        if (strcmp(type, check_type_names[k]) == 0) {
            kind = k;
        }
    }
    if (kind == SUP_CHECK_NONE) {
        rems_errmsgf(errmsg, "%s.type: must be one of http, tcp, exec, process",
                     path);
        return REMS_EINVAL;
    }
    for (k = SUP_CHECK_HTTP; k <= SUP_CHECK_PROCESS; k++) {
        if (k == kind || target_field[k] == NULL) {
            continue;
        }
        if (json_object_get(v, target_field[k]) != NULL) {
            rems_errmsgf(errmsg, "%s.%s: only for type %s", path,
                         target_field[k], check_type_names[k]);
            return REMS_EINVAL;
        }
    }
    if (target_field[kind] != NULL &&
        json_object_get(v, target_field[kind]) == NULL) {
        rems_errmsgf(errmsg, "%s.%s: required for type %s", path,
                     target_field[kind], type);
        return REMS_EINVAL;
    }

    check_free(c);
    c->kind = kind;
    c->interval_ms = SUP_DEFAULT_CHECK_INTERVAL_MS;
    c->timeout_ms = SUP_DEFAULT_CHECK_TIMEOUT_MS;
    c->failure_threshold = SUP_DEFAULT_CHECK_FAILURE_THRESHOLD;
    c->success_threshold = SUP_DEFAULT_CHECK_SUCCESS_THRESHOLD;
    c->initial_delay_ms = 0;

    switch (kind) {
        case SUP_CHECK_HTTP:
            rv = get_cstr(v, path, "url", TARGET_LEN_MAX, &target, errmsg);
            if (rv != 0) {
                return rv;
            }
            if (sup__url_parse(target, host, sizeof host, &port, upath,
                               sizeof upath) != 0) {
                rems_errmsgf(errmsg,
                             "%s.url: must be http://host[:port][/path]", path);
                return REMS_EINVAL;
            }
            rv = dup_or_oom(target, &c->target, errmsg);
            break;
        case SUP_CHECK_TCP:
            rv = get_cstr(v, path, "address", TARGET_LEN_MAX, &target, errmsg);
            if (rv != 0) {
                return rv;
            }
            if (sup__hostport_parse(target, host, sizeof host, &port) != 0) {
                rems_errmsgf(errmsg,
                             "%s.address: must be host:port or [ipv6]:port",
                             path);
                return REMS_EINVAL;
            }
            rv = dup_or_oom(target, &c->target, errmsg);
            break;
        case SUP_CHECK_EXEC:
            rv = get_strv(v, path, "command", ARGV_MAX, true, &c->argv, errmsg);
            break;
        default:
            break;
    }
    if (rv == 0) {
        rv = get_duration(v, path, "interval_ms", 1, &c->interval_ms, errmsg);
    }
    if (rv == 0) {
        rv = get_duration(v, path, "timeout_ms", 1, &c->timeout_ms, errmsg);
    }
    if (rv == 0) {
        rv = get_unsigned(v, path, "failure_threshold", 1, THRESHOLD_MAX,
                          &c->failure_threshold, errmsg);
    }
    if (rv == 0) {
        rv = get_unsigned(v, path, "success_threshold", 1, THRESHOLD_MAX,
                          &c->success_threshold, errmsg);
    }
    if (rv == 0) {
        rv = get_duration(v, path, "initial_delay_ms", 0, &c->initial_delay_ms,
                          errmsg);
    }
    return rv;
}

static int parse_backoff(json_t *obj,
                         const char *parent,
                         struct sup_backoff *b,
                         char *errmsg)
{
    static const char *const allowed[] = {
        "initial_ms",  "multiplier",     "max_ms", "jitter",
        "max_retries", "reset_after_ms", NULL};
    char path[PATH_SIZE];
    json_t *v = json_object_get(obj, "backoff");
    bool has_max;
    int rv;

    if (v == NULL) {
        return 0;
    }
    snprintf(path, sizeof path, "%s.backoff", parent);
    if (!json_is_object(v)) {
        rems_errmsgf(errmsg, "%s: must be an object", path);
        return REMS_EINVAL;
    }
    rv = check_keys(v, path, allowed, errmsg);
    if (rv == 0) {
        rv = get_duration(v, path, "initial_ms", 1, &b->initial_ms, errmsg);
    }
    if (rv == 0) {
        rv = get_number(v, path, "multiplier", 1.0, MULTIPLIER_MAX,
                        &b->multiplier, errmsg);
    }
    has_max = json_object_get(v, "max_ms") != NULL;
    if (rv == 0) {
        rv = get_duration(v, path, "max_ms", 1, &b->max_ms, errmsg);
    }
    if (rv == 0 && b->max_ms < b->initial_ms) {
        if (has_max) {
            rems_errmsgf(errmsg,
                         "%s.max_ms: must be >= initial_ms (%" PRIu64 ")", path,
                         b->initial_ms);
            return REMS_EINVAL;
        }
        b->max_ms = b->initial_ms; /* Only initial_ms was raised. */
    }
    if (rv == 0) {
        rv = get_number(v, path, "jitter", 0.0, 1.0, &b->jitter, errmsg);
    }
    if (rv == 0) {
        rv = get_unsigned(v, path, "max_retries", 0, RETRIES_MAX,
                          &b->max_retries, errmsg);
    }
    if (rv == 0) {
        rv = get_duration(v, path, "reset_after_ms", 1, &b->reset_after_ms,
                          errmsg);
    }
    return rv;
}

static int parse_limits(json_t *obj,
                        const char *parent,
                        struct sup_limits *l,
                        char *errmsg)
{
    static const char *const allowed[] = {"memory_max_bytes", "cpu_max_percent",
                                          "nofile", NULL};
    char path[PATH_SIZE];
    json_t *v = json_object_get(obj, "limits");
    uint64_t nofile = l->nofile;
    int rv;

    if (v == NULL) {
        return 0;
    }
    snprintf(path, sizeof path, "%s.limits", parent);
    if (!json_is_object(v)) {
        rems_errmsgf(errmsg, "%s: must be an object", path);
        return REMS_EINVAL;
    }
    rv = check_keys(v, path, allowed, errmsg);
    if (rv == 0) {
        rv = get_uint(v, path, "memory_max_bytes", 0, MEMORY_MAX,
                      &l->memory_max_bytes, errmsg);
    }
    if (rv == 0) {
        rv = get_unsigned(v, path, "cpu_max_percent", 0, CPU_PERCENT_MAX,
                          &l->cpu_max_percent, errmsg);
    }
    if (rv == 0) {
        rv = get_uint(v, path, "nofile", 0, NOFILE_MAX, &nofile, errmsg);
    }
    if (rv == 0) {
        l->nofile = nofile;
    }
    return rv;
}

static int
parse_log(json_t *obj, const char *parent, struct sup_log *l, char *errmsg)
{
    static const char *const allowed[] = {"max_bytes", "keep", NULL};
    char path[PATH_SIZE];
    json_t *v = json_object_get(obj, "log");
    int rv;

    if (v == NULL) {
        return 0;
    }
    snprintf(path, sizeof path, "%s.log", parent);
    if (!json_is_object(v)) {
        rems_errmsgf(errmsg, "%s: must be an object", path);
        return REMS_EINVAL;
    }
    rv = check_keys(v, path, allowed, errmsg);
    if (rv == 0) {
        rv = get_uint(v, path, "max_bytes", LOG_BYTES_MIN, LOG_BYTES_MAX,
                      &l->max_bytes, errmsg);
    }
    if (rv == 0) {
        rv = get_unsigned(v, path, "keep", 0, LOG_KEEP_MAX, &l->keep, errmsg);
    }
    return rv;
}

static int parse_depends(json_t *obj,
                         const char *path,
                         struct sup_service_spec *spec,
                         char *errmsg)
{
    size_t i;
    size_t j;
    int rv;

    rv = get_strv(obj, path, "depends_on", DEPENDS_MAX, false,
                  &spec->depends_on, errmsg);
    if (rv != 0 || spec->depends_on == NULL) {
        return rv;
    }
    for (i = 0; spec->depends_on[i] != NULL; i++) {
        const char *d = spec->depends_on[i];
        if (!sup__name_valid(d)) {
            rems_errmsgf(errmsg,
                         "%s.depends_on[%zu]: must be a service name "
                         "(1..%d characters of [A-Za-z0-9._:@-])",
                         path, i, PROTO_SERVICE_MAX);
            return REMS_EINVAL;
        }
        if (strcmp(d, spec->name) == 0) {
            rems_errmsgf(errmsg, "%s.depends_on[%zu]: names the service itself",
                         path, i);
            return REMS_EINVAL;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(spec->depends_on[j], d) == 0) {
                rems_errmsgf(errmsg, "%s.depends_on[%zu]: \"%s\" given twice",
                             path, i, d);
                return REMS_EINVAL;
            }
        }
    }
    return 0;
}

static void spec_defaults(struct sup_service_spec *spec)
{
    spec->restart = SUP_RESTART_PERMANENT;
    spec->backoff.initial_ms = SUP_DEFAULT_BACKOFF_INITIAL_MS;
    spec->backoff.multiplier = SUP_DEFAULT_BACKOFF_MULTIPLIER;
    spec->backoff.max_ms = SUP_DEFAULT_BACKOFF_MAX_MS;
    spec->backoff.jitter = SUP_DEFAULT_BACKOFF_JITTER;
    spec->backoff.max_retries = SUP_DEFAULT_BACKOFF_MAX_RETRIES;
    spec->backoff.reset_after_ms = SUP_DEFAULT_BACKOFF_RESET_AFTER_MS;
    spec->stop_signal = SIGTERM;
    spec->stop_timeout_ms = SUP_DEFAULT_STOP_TIMEOUT_MS;
    spec->log.max_bytes = SUP_DEFAULT_LOG_MAX_BYTES;
    spec->log.keep = SUP_DEFAULT_LOG_KEEP;
    spec->safe_state = SUP_SAFE_KEEP;
    spec->autostart = true;
}

/* Every field but name, which the caller has read. */
static int parse_fields(json_t *root,
                        const char *path,
                        struct sup_service_spec *spec,
                        char *errmsg)
{
    const char *s;
    int rv;

    if (json_object_get(root, "command") == NULL) {
        rems_errmsgf(errmsg, "%s.command: required", path);
        return REMS_EINVAL;
    }
    rv = get_strv(root, path, "command", ARGV_MAX, true, &spec->argv, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = get_env(root, path, &spec->env, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = get_cstr(root, path, "cwd", PATH_LEN_MAX, &s, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (s != NULL) {
        if (s[0] != '/') {
            rems_errmsgf(errmsg, "%s.cwd: must be an absolute path", path);
            return REMS_EINVAL;
        }
        rv = dup_or_oom(s, &spec->cwd, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    rv = get_cstr(root, path, "user", USER_LEN_MAX, &s, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (s != NULL) {
        if (!user_valid(s)) {
            rems_errmsgf(errmsg,
                         "%s.user: must be a user name ([A-Za-z0-9._-], not "
                         "starting with -)",
                         path);
            return REMS_EINVAL;
        }
        rv = dup_or_oom(s, &spec->user, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    rv = get_cstr(root, path, "restart", 16, &s, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (s != NULL) {
        if (strcmp(s, "permanent") == 0) {
            spec->restart = SUP_RESTART_PERMANENT;
        } else if (strcmp(s, "transient") == 0) {
            spec->restart = SUP_RESTART_TRANSIENT;
        } else if (strcmp(s, "temporary") == 0) {
            spec->restart = SUP_RESTART_TEMPORARY;
        } else {
            rems_errmsgf(errmsg,
                         "%s.restart: must be one of permanent, transient, "
                         "temporary",
                         path);
            return REMS_EINVAL;
        }
    }
    rv = parse_backoff(root, path, &spec->backoff, errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = get_cstr(root, path, "stop_signal", 16, &s, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (s != NULL) {
        spec->stop_signal = signal_parse(s);
        if (spec->stop_signal == 0) {
            rems_errmsgf(errmsg,
                         "%s.stop_signal: must be one of TERM, INT, HUP, QUIT, "
                         "USR1, USR2, KILL (with or without SIG)",
                         path);
            return REMS_EINVAL;
        }
    }
    rv = get_duration(root, path, "stop_timeout_ms", 0, &spec->stop_timeout_ms,
                      errmsg);
    if (rv != 0) {
        return rv;
    }
    rv = parse_check(root, path, "liveness", &spec->liveness, errmsg);
    if (rv == 0) {
        rv = parse_check(root, path, "readiness", &spec->readiness, errmsg);
    }
    if (rv == 0) {
        rv = parse_check(root, path, "fallback", &spec->fallback, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    if (spec->fallback.kind != SUP_CHECK_NONE &&
        spec->liveness.kind == SUP_CHECK_NONE) {
        rems_errmsgf(errmsg, "%s.fallback: needs a liveness check", path);
        return REMS_EINVAL;
    }
    rv = parse_depends(root, path, spec, errmsg);
    if (rv == 0) {
        rv = parse_limits(root, path, &spec->limits, errmsg);
    }
    if (rv == 0) {
        rv = parse_log(root, path, &spec->log, errmsg);
    }
    if (rv != 0) {
        return rv;
    }
    rv = get_cstr(root, path, "safe_state", 16, &s, errmsg);
    if (rv != 0) {
        return rv;
    }
    if (s != NULL) {
        if (strcmp(s, "keep") == 0) {
            spec->safe_state = SUP_SAFE_KEEP;
        } else if (strcmp(s, "stop") == 0) {
            spec->safe_state = SUP_SAFE_STOP;
        } else {
            rems_errmsgf(errmsg, "%s.safe_state: must be keep or stop", path);
            return REMS_EINVAL;
        }
    }
    return get_bool(root, path, "autostart", &spec->autostart, errmsg);
}

int sup_spec_parse_json(const char *json,
                        size_t len,
                        struct sup_service_spec **out,
                        char *errmsg)
{
    static const char *const allowed[] = {
        "name",       "command",     "env",
        "cwd",        "user",        "restart",
        "backoff",    "stop_signal", "stop_timeout_ms",
        "liveness",   "readiness",   "fallback",
        "depends_on", "limits",      "log",
        "safe_state", "autostart",   NULL};
    struct sup_service_spec *spec;
    char path[PATH_SIZE];
    json_error_t jerr;
    json_t *root;
    json_t *name;
    int rv;

    PRE(json != NULL && out != NULL && errmsg != NULL);

    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rems_errmsgf(errmsg, "service: not JSON: line %d: %s", jerr.line,
                     jerr.text);
        rv = REMS_EMALFORMED;
        goto err;
    }
    if (!json_is_object(root)) {
        rems_errmsgf(errmsg, "service: must be a JSON object");
        rv = REMS_EMALFORMED;
        goto err_after_load;
    }
    name = json_object_get(root, "name");
    if (name == NULL) {
        rems_errmsgf(errmsg, "services.name: required");
        rv = REMS_EINVAL;
        goto err_after_load;
    }
    if (!plain_string(name) || !sup__name_valid(json_string_value(name))) {
        rems_errmsgf(errmsg,
                     "services.name: must be 1..%d characters of "
                     "[A-Za-z0-9._:@-]",
                     PROTO_SERVICE_MAX);
        rv = REMS_EINVAL;
        goto err_after_load;
    }
    snprintf(path, sizeof path, "services.%s", json_string_value(name));
    rv = check_keys(root, path, allowed, errmsg);
    if (rv != 0) {
        goto err_after_load;
    }
    spec = rems_calloc(1, sizeof *spec);
    if (spec == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_load;
    }
    spec_defaults(spec);
    rv = dup_or_oom(json_string_value(name), &spec->name, errmsg);
    if (rv == 0) {
        rv = parse_fields(root, path, spec, errmsg);
    }
    if (rv != 0) {
        goto err_after_alloc;
    }
    json_decref(root);
    *out = spec;
    return 0;

err_after_alloc:
    sup_spec_free(spec);
err_after_load:
    json_decref(root);
err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * Backoff
 * --------------------------------------------------------------------- */

uint64_t sup_backoff_delay_ms(const struct sup_backoff *b,
                              unsigned attempt,
                              double rand01)
{
    double max = (double)b->max_ms;
    double d = (double)b->initial_ms;
    unsigned i;

    PRE(b != NULL);
    /* Multiply step by step rather than with pow(): it stops at the cap,
     * so a large attempt number can neither overflow nor loop long. */
    for (i = 1; i < attempt && d < max && b->multiplier > 1.0; i++) {
        d *= b->multiplier;
    }
    if (d > max) {
        d = max;
    }
    d *= 1.0 + b->jitter * (2.0 * rand01 - 1.0);
    if (d < 0.0) {
        d = 0.0;
    }
    return (uint64_t)(d + 0.5);
}

/* ------------------------------------------------------------------------
 * Dependency order
 * --------------------------------------------------------------------- */

enum { WHITE = 0, GRAY, BLACK };

struct order_walk {
    const struct sup_service_spec *const *specs;
    size_t n;
    size_t *order;
    size_t done;
    unsigned char *color;
    size_t *stack; /* The path of the depth-first walk. */
    size_t depth;
    char *errmsg;
};

static size_t spec_find(const struct order_walk *w, const char *name)
{
    size_t i;
    for (i = 0; i < w->n; i++) {
        if (strcmp(w->specs[i]->name, name) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

static void cycle_message(const struct order_walk *w, size_t at)
{
    size_t used;
    size_t k;
    int n;

    n = snprintf(w->errmsg, REMS_ERRMSG_SIZE, "dependency cycle: ");
    used = (size_t)n;
    for (k = 0; k < w->depth && w->stack[k] != at; k++) {
    }
    for (; k < w->depth && used < REMS_ERRMSG_SIZE; k++) {
        n = snprintf(w->errmsg + used, REMS_ERRMSG_SIZE - used, "%s -> ",
                     w->specs[w->stack[k]]->name);
        used += (size_t)n;
    }
    if (used < REMS_ERRMSG_SIZE) {
        snprintf(w->errmsg + used, REMS_ERRMSG_SIZE - used, "%s",
                 w->specs[at]->name);
    }
}

static int visit(struct order_walk *w, size_t i)
{
    char *const *deps = w->specs[i]->depends_on;
    size_t k;
    int rv;

    w->color[i] = GRAY;
    w->stack[w->depth++] = i;
    for (k = 0; deps != NULL && deps[k] != NULL; k++) {
        size_t j = spec_find(w, deps[k]);
        if (j == SIZE_MAX) {
            rems_errmsgf(w->errmsg,
                         "services.%s.depends_on: unknown service \"%s\"",
                         w->specs[i]->name, deps[k]);
            return REMS_EINVAL;
        }
        if (w->color[j] == GRAY) {
            cycle_message(w, j);
            return REMS_EINVAL;
        }
        if (w->color[j] == WHITE) {
            rv = visit(w, j);
            if (rv != 0) {
                return rv;
            }
        }
    }
    w->depth--;
    w->color[i] = BLACK;
    w->order[w->done++] = i;
    return 0;
}

int sup_spec_order(const struct sup_service_spec *const *specs,
                   size_t n,
                   size_t *order,
                   char *errmsg)
{
    struct order_walk w = {0};
    size_t *tmp;
    size_t i;
    size_t j;
    int rv;

    PRE(n == 0 || (specs != NULL && order != NULL));
    PRE(errmsg != NULL);
    for (i = 0; i < n; i++) {
        for (j = 0; j < i; j++) {
            if (strcmp(specs[i]->name, specs[j]->name) == 0) {
                rems_errmsgf(errmsg, "services.%s: defined twice",
                             specs[i]->name);
                rv = REMS_EINVAL;
                goto err;
            }
        }
    }
    if (n == 0) {
        return 0;
    }
    /* The order is written to a scratch array so that @order stays
     * untouched on failure. */
    tmp = rems_calloc(2 * n, sizeof *tmp);
    if (tmp == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    w.color = rems_calloc(n, 1);
    if (w.color == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_tmp;
    }
    w.specs = specs;
    w.n = n;
    w.order = tmp;
    w.stack = tmp + n;
    w.errmsg = errmsg;
    for (i = 0; i < n; i++) {
        if (w.color[i] == WHITE) {
            rv = visit(&w, i);
            if (rv != 0) {
                goto err_after_color;
            }
        }
    }
    POST(w.done == n);
    memcpy(order, tmp, n * sizeof *order);
    rems_free(w.color);
    rems_free(tmp);
    return 0;

err_after_color:
    rems_free(w.color);
err_after_tmp:
    rems_free(tmp);
err:
    POST(rv != 0);
    return rv;
}
