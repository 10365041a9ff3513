/* The fault-injection switch of the admin API (docs/api.md, "Fault
 * injection"), for drills and tests:
 *
 *   GET /v1/faults       {"enabled": true, "blocked_peers": [2, 3]}
 *   PUT /v1/faults       body {"blocked_peers": [ids]}: replaces the set
 *   DELETE /v1/faults    clears it
 *
 * PUT and DELETE answer as GET does, with the new set. The set belongs to
 * the node that answers: the call is never forwarded and nothing is
 * replicated (cluster/faults.h). A node started without fault_injection
 * answers 404 on every method, saying that fault injection is off.
 *
 * A PUT body is checked field by field and refused with 400 naming the
 * field: blocked_peers is required, an array of at most
 * CLUSTER_FAULTS_MAX_BLOCKED integers >= 1, none the node's own id; any
 * other field is unknown. */
#include <http_parser.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/server_int.h"
#include "cluster/faults.h"

#define FIELD "blocked_peers"

static void bad(struct call *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 400 bad_request naming @field, the message "@field: <rule>". */
static void bad(struct call *c, const char *field, const char *fmt, ...)
{
    char rule[REMS_ERRMSG_SIZE];
    char msg[REMS_ERRMSG_SIZE + 64];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(rule, sizeof rule, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "%s: %s", field, rule);
    api__respond_error(c, 400, "bad_request", msg, field);
}

/* Answer 200 with the node's switch as GET shows it. */
static void respond_faults(struct call *c)
{
    uint64_t ids[CLUSTER_FAULTS_MAX_BLOCKED];
    size_t n = cluster_node_faults_get(c->s->node, ids);
    json_t *body = json_object();
    json_t *list = json_array();
    bool ok = body != NULL && list != NULL;
    size_t i;

    for (i = 0; ok && i < n; i++) {
        ok = json_array_append_new(list, json_integer((json_int_t)ids[i])) == 0;
    }
    ok = ok && json_object_set_new(body, "enabled", json_true()) == 0;
    ok = ok && json_object_set(body, FIELD, list) == 0;
    json_decref(list);
    if (!ok) {
        json_decref(body);
        api__respond_error(c, 500, "internal", "out of memory", NULL);
        return;
    }
    api__respond_json(c, 200, body, NULL, 0);
}

/* Set the node's blocked peers to @ids and answer. */
static void set_faults(struct call *c, const uint64_t *ids, size_t n)
{
    char errmsg[REMS_ERRMSG_SIZE];
    int rv = cluster_node_faults_set(c->s->node, ids, n, errmsg);
    if (rv != 0) {
        /* The checks of put_faults() come first: not reached. */
        bad(c, FIELD, "%s", errmsg);
        return;
    }
    respond_faults(c);
}

static void put_faults(struct call *c)
{
    const struct config *cfg = cluster_node_config(c->s->node);
    uint64_t ids[CLUSTER_FAULTS_MAX_BLOCKED];
    size_t n;
    size_t i;
    json_t *o;
    json_t *list;
    json_t *v;
    const char *k;

    o = api__parse_body_object(c);
    if (o == NULL) {
        return;
    }
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, FIELD) != 0) {
            char field[80];
            snprintf(field, sizeof field, "%.64s", k);
            json_decref(o);
            bad(c, field, "unknown field");
            return;
        }
    }
    list = json_object_get(o, FIELD);
    if (!json_is_array(list)) {
        json_decref(o);
        bad(c, FIELD,
            "required: an array of node ids (integers >= 1), [] to clear");
        return;
    }
    n = json_array_size(list);
    if (n > CLUSTER_FAULTS_MAX_BLOCKED) {
        json_decref(o);
        bad(c, FIELD, "at most %d peers may be blocked (%zu given)",
            CLUSTER_FAULTS_MAX_BLOCKED, n);
        return;
    }
    for (i = 0; i < n; i++) {
        v = json_array_get(list, i);
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            json_decref(o);
            bad(c, FIELD, "item %zu: a node id must be an integer >= 1", i);
            return;
        }
        ids[i] = (uint64_t)json_integer_value(v);
        if (ids[i] == cfg->node_id) {
            json_decref(o);
            bad(c, FIELD,
                "item %zu: %llu is this node's own id (block its peers "
                "instead)",
                i, (unsigned long long)ids[i]);
            return;
        }
    }
    json_decref(o);
    set_faults(c, ids, n);
}

void api__faults_serve(struct call *c)
{
    if (!cluster_node_faults_enabled(c->s->node)) {
        api__respond_error(c, 404, "not_found",
                           "fault injection is off on this node (start remsd "
                           "with --fault-injection or fault_injection: true "
                           "to use /v1/faults)",
                           NULL);
        return;
    }
    switch (c->req->method) {
        case HTTP_GET:
            respond_faults(c);
            break;
        case HTTP_PUT:
            put_faults(c);
            break;
        case HTTP_DELETE:
            set_faults(c, NULL, 0);
            break;
        default:
            api__method_not_allowed(c);
            break;
    }
}
