/* The admin API: routing, validation, local reads, linearizable reads
 * through the read index, writes on the leader and forwarding from
 * followers.
 *
 * One `struct call` per request, freed when the answer is sent. Paths:
 *
 *   write on the leader:   validate -> cluster_node_propose -> answer
 *   write on a follower:   validate -> forward to the leader's API (with
 *                          X-Rems-Forwarded, and a request id so a retry
 *                          is applied once) -> relay the answer
 *   linearizable read:     leader: cluster_node_read_index -> read
 *                          follower: GET /internal/read-index on the leader
 *                          -> wait until applied -> read locally
 *   stale read:            read locally at once
 *   command issue/cancel:  validate -> (follower: forward) -> leader:
 *                          cluster_node_read_index -> look the agent or
 *                          command up -> cluster_node_propose -> answer
 *                          with the command as the store now has it
 *
 * A forwarded call that reaches a node which is not (or no longer) the
 * leader is answered 503 not_leader rather than forwarded again, so calls
 * never loop between nodes. */
#include <jansson.h>
#include <http_parser.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/http.h"
#include "agentproto/agent_config.h" /* agent_yaml_to_json() */
#include "api/server_int.h"
#include "cluster/policy.h"
#include "common/assert.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/mpread.h"
#include "common/util.h"

static void read_agents(struct call *c);
static void command_propose(struct call *c);

/* ------------------------------------------------------------------ */
/* Answers.                                                             */

static void call_free(struct call *c)
{
    rems_free(c->value);
    rems_free(c->forward_body);
    rems_free(c);
}

/* Send @body (a JSON value, stolen) with @status and the usual headers. */
void api__respond_json(struct call *c,
                       int status,
                       json_t *body,
                       const struct http_header *extra,
                       size_t n_extra)
{
    struct api_server *s = c->s;
    struct http_header h[14];
    size_t nh = 0;
    char index[32];
    char contact[32];
    char leader[CONFIG_ADDR_SIZE];
    char *text;
    size_t i;

    leader[0] = '\0';
    h[nh].name = "Content-Type";
    h[nh++].value = "application/json";
    h[nh].name = "X-Rems-Trace-Id";
    h[nh++].value = c->trace_id;
    if (s->node != NULL) {
        struct cluster_status st;
        cluster_node_brief(s->node, &st);
        snprintf(index, sizeof index, "%" PRIu64, st.state_index);
        h[nh].name = "X-Rems-Index";
        h[nh++].value = index;
        snprintf(contact, sizeof contact, "%" PRIu64, st.last_contact_ms);
        h[nh].name = "X-Rems-Last-Contact";
        h[nh++].value = contact;
        if (st.leader_api_address[0] != '\0') {
            snprintf(leader, sizeof leader, "%s", st.leader_api_address);
            h[nh].name = "X-Rems-Leader";
            h[nh++].value = leader;
        }
    }
    for (i = 0; i < n_extra && nh < REMS_ARRAY_SIZE(h); i++) {
        h[nh++] = extra[i];
    }
    text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (status >= 100 && status < 600) {
        s->requests_by_class[status / 100]++;
    }
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_DEBUG, "http_request");
        rems_log_str(&l, "path", c->req->path);
        rems_log_i64(&l, "status", status);
        rems_log_str(&l, "trace_id", c->trace_id);
        rems_log_u64(&l, "ms", rems_mono_ms() - c->started_ms);
        rems_log_end(&l);
    }
    http_request_respond(c->req, status, h, nh, text != NULL ? text : "{}",
                         text != NULL ? strlen(text) : 2);
    free(text); /* jansson allocates with malloc. */
    call_free(c);
}

void api__respond_error(struct call *c,
                        int status,
                        const char *code,
                        const char *message,
                        const char *field)
{
    json_t *err = json_object();
    json_t *body = json_object();
    struct http_header h[1];
    size_t nh = 0;

    json_object_set_new(err, "code", json_string(code));
    json_object_set_new(err, "message", json_string(message));
    if (field != NULL) {
        json_object_set_new(err, "field", json_string(field));
    }
    json_object_set_new(body, "error", err);
    if (status == 503) {
        h[nh].name = "Retry-After";
        h[nh++].value = "1";
    }
    api__respond_json(c, status, body, h, nh);
}

/* Map a REMS_E* code of a write or read to an answer. */
void api__respond_status(struct call *c, int rv, const char *message)
{
    switch (rv) {
        case REMS_ENOTLEADER:
        case REMS_ENOLEADER:
            api__respond_error(c, 503, "no_leader", message, NULL);
            break;
        case REMS_ELEADERSHIPLOST:
            api__respond_error(c, 503, "unavailable",
                               "leadership was lost while the write was in "
                               "flight: its outcome is unknown; retry with the "
                               "same X-Rems-Request-Id",
                               NULL);
            break;
        case REMS_ESHUTDOWN:
            api__respond_error(c, 503, "unavailable", "node is shutting down",
                               NULL);
            break;
        case REMS_ETIMEDOUT:
            api__respond_error(c, 504, "timeout", message, NULL);
            break;
        case REMS_ENOTFOUND:
            api__respond_error(c, 404, "not_found", message, NULL);
            break;
        case REMS_EINVAL:
            api__respond_error(c, 422, "unprocessable", message, NULL);
            break;
        case REMS_EEXIST:
            api__respond_error(c, 409, "conflict", message, "id");
            break;
        case REMS_EBUSY:
            api__respond_error(c, 409, "conflict", message, NULL);
            break;
        default:
            api__respond_error(c, 500, "internal", message, NULL);
            break;
    }
}

/* ------------------------------------------------------------------ */
/* Reads from the local store.                                          */

/* A call to the leader failed in transport. For a write, "no_leader"
 * promises that the request was not delivered (no connection could be
 * made), so the write was never proposed; after a reset or a timeout it
 * may have been, and the answer says that its outcome is unknown. */
static void respond_forward_failed(struct call *c,
                                   bool write,
                                   int status,
                                   const char *errmsg)
{
    char msg[REMS_ERRMSG_SIZE];
    const char *unknown =
        write ? "; outcome unknown, retry with the same X-Rems-Request-Id"
              : "";
    snprintf(msg, sizeof msg, "leader unreachable: %s%s", errmsg,
             status == REMS_ENOLEADER ? "" : unknown);
    if (status == REMS_ETIMEDOUT) {
        api__respond_error(c, 504, "timeout", msg, NULL);
    } else if (status == REMS_ENOLEADER || !write) {
        api__respond_error(c, 503, "no_leader", msg, NULL);
    } else {
        api__respond_error(c, 503, "unavailable", msg, NULL);
    }
}

static json_t *policy_json(const struct statemachine_policy *p, bool *bad)
{
    json_t *o = json_object();
    json_error_t jerr;
    json_t *value = json_loadb(p->value, p->value_len, 0, &jerr);
    if (value == NULL) {
        *bad = true;
        value = json_null();
    }
    json_object_set_new(o, "key", json_stringn(p->key, p->key_len));
    json_object_set_new(o, "value", value);
    json_object_set_new(o, "revision", json_integer((json_int_t)p->revision));
    json_object_set_new(o, "created_index",
                        json_integer((json_int_t)p->created_index));
    json_object_set_new(o, "modified_index",
                        json_integer((json_int_t)p->modified_index));
    return o;
}

struct list_ctx {
    json_t *items;
    char last[STATEMACHINE_KEY_MAX + 1];
    uint64_t last_index;
    bool bad;
};

static int list_visit(void *data, const struct statemachine_policy *p)
{
    struct list_ctx *l = data;
    json_array_append_new(l->items, policy_json(p, &l->bad));
    memcpy(l->last, p->key, p->key_len);
    l->last[p->key_len] = '\0';
    return 0;
}

/* A JSON string of the @len bytes at @s (NULL: ""). Stored strings that
 * came from headers may hold any bytes; when they are not valid UTF-8,
 * every byte outside printable ASCII shows as '?', so the answer stays
 * valid JSON. */
json_t *api__nstr(const char *s, size_t len)
{
    json_t *v;
    char *copy;
    size_t i;

    if (s == NULL) {
        return json_string("");
    }
    v = json_stringn(s, len);
    if (v != NULL) {
        return v;
    }
    copy = rems_malloc(len + 1);
    if (copy == NULL) {
        return NULL;
    }
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        copy[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    v = json_stringn(copy, len);
    rems_free(copy);
    return v;
}

static int audit_visit(void *data, const struct statemachine_audit *a)
{
    struct list_ctx *l = data;
    json_t *o = json_object();
    json_object_set_new(o, "index", json_integer((json_int_t)a->index));
    json_object_set_new(o, "time_ms", json_integer((json_int_t)a->time_ms));
    json_object_set_new(o, "type",
                        json_string(statemachine_entry_type_name(a->type)));
    json_object_set_new(o, "key", api__nstr(a->key, a->key_len));
    json_object_set_new(o, "requested_by",
                        api__nstr(a->requested_by, a->requested_by_len));
    json_object_set_new(o, "reason", api__nstr(a->reason, a->reason_len));
    json_object_set_new(o, "trace_id", api__nstr(a->trace_id, a->trace_id_len));
    json_object_set_new(o, "request_id",
                        api__nstr(a->request_id, a->request_id_len));
    json_object_set_new(o, "result",
                        json_string(a->code == 0 ? "ok"
                                    : a->code == REMS_ECONFLICT
                                        ? "conflict"
                                    : a->code == REMS_ENOTFOUND
                                        ? "not_found"
                                        : rems_errname(a->code)));
    json_object_set_new(o, "revision", json_integer((json_int_t)a->revision));
    json_array_append_new(l->items, o);
    l->last_index = a->index;
    return 0;
}

static void read_local(struct call *c)
{
    struct storage_txn *t;
    char errmsg[REMS_ERRMSG_SIZE];
    struct list_ctx l;
    json_t *body;
    bool more = false;
    int rv;

    if (c->kind >= CALL_AGENT_GET && c->kind <= CALL_COMMAND_LIST) {
        read_agents(c);
        return;
    }
    if (c->kind >= CALL_INCIDENT_LIST && c->kind < CALL_INCIDENT_UPDATE) {
        api__reconcile_read(c);
        return;
    }

    rv = storage_txn_begin(cluster_node_storage(c->s->node), false, &t,
                           errmsg);
    if (rv != 0) {
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    memset(&l, 0, sizeof l);
    if (c->kind == CALL_POLICY_GET) {
        struct statemachine_policy p;
        char rev[32];
        struct http_header h[1];
        rv = statemachine_policy_get(t, c->key, c->key_len, &p, errmsg);
        if (rv == REMS_ENOTFOUND) {
            storage_txn_abort(t);
            rems_errmsgf(errmsg, "no policy with key %s", c->key);
            api__respond_error(c, 404, "not_found", errmsg, "key");
            return;
        }
        if (rv != 0) {
            storage_txn_abort(t);
            api__respond_error(c, 500, "internal", errmsg, NULL);
            return;
        }
        body = policy_json(&p, &l.bad);
        snprintf(rev, sizeof rev, "%" PRIu64, p.revision);
        storage_txn_abort(t);
        h[0].name = "X-Rems-Revision";
        h[0].value = rev;
        api__respond_json(c, 200, body, h, 1);
        return;
    }
    l.items = json_array();
    if (c->kind == CALL_POLICY_LIST) {
        rv = statemachine_policy_list(t, c->prefix, strlen(c->prefix),
                                      c->after, strlen(c->after), c->limit,
                                      list_visit, &l, &more, errmsg);
    } else {
        rv = statemachine_audit_list(t, c->after_index, c->limit, audit_visit,
                                     &l, &more, errmsg);
    }
    storage_txn_abort(t);
    if (rv != 0) {
        json_decref(l.items);
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    body = json_object();
    json_object_set_new(body, "items", l.items);
    if (c->kind == CALL_POLICY_LIST) {
        json_object_set_new(body, "next_after",
                            more ? json_string(l.last) : json_null());
    } else {
        json_object_set_new(body, "next_after",
                            more ? json_integer((json_int_t)l.last_index)
                                 : json_null());
    }
    {
        struct cluster_status st;
        cluster_node_brief(c->s->node, &st);
        json_object_set_new(body, "index",
                            json_integer((json_int_t)st.state_index));
    }
    api__respond_json(c, 200, body, NULL, 0);
}

static void applied_cb(struct cluster_wait *w, int status, uint64_t index)
{
    struct call *c = w->data;
    (void)index;
    if (status != 0) {
        api__respond_status(
            c, status,
            status == REMS_ETIMEDOUT
                ? "this node did not apply the read index in time"
                : rems_strerror(status));
        return;
    }
    read_local(c);
}

static void read_index_cb(struct cluster_wait *w, int status, uint64_t index)
{
    struct call *c = w->data;
    if (status != 0) {
        api__respond_status(c, status, "leadership could not be confirmed");
        return;
    }
    if (c->kind == CALL_READ_INDEX) {
        json_t *body = json_object();
        json_object_set_new(body, "index", json_integer((json_int_t)index));
        api__respond_json(c, 200, body, NULL, 0);
        return;
    }
    if (c->kind == CALL_COMMAND_ISSUE || c->kind == CALL_COMMAND_CANCEL) {
        command_propose(c);
        return;
    }
    read_local(c);
}

static void forwarded_read_index_cb(struct cluster_forward *f,
                                    int status,
                                    long http_status,
                                    const char *body,
                                    size_t len)
{
    struct call *c = f->data;
    json_error_t jerr;
    json_t *o;
    json_t *idx;

    if (status != 0) {
        respond_forward_failed(c, false, status, f->errmsg);
        return;
    }
    if (http_status != 200) {
        api__respond_error(c, 503, "no_leader",
                           "the leader could not confirm its leadership", NULL);
        return;
    }
    o = json_loadb(body, len, 0, &jerr);
    idx = o != NULL ? json_object_get(o, "index") : NULL;
    if (!json_is_integer(idx) || json_integer_value(idx) < 0) {
        json_decref(o);
        api__respond_error(c, 502, "internal", "bad read-index answer", NULL);
        return;
    }
    c->wait.data = c;
    cluster_node_wait_applied(c->s->node, &c->wait,
                              (uint64_t)json_integer_value(idx),
                              c->s->cfg.forward_timeout_ms, applied_cb);
    json_decref(o);
}

void api__do_read(struct call *c)
{
    struct cluster_status st;
    int rv;

    if (c->stale) {
        read_local(c);
        return;
    }
    cluster_node_brief(c->s->node, &st);
    if (st.role == CLUSTER_ROLE_LEADER) {
        c->wait.data = c;
        rv = cluster_node_read_index(c->s->node, &c->wait, read_index_cb);
        if (rv != 0) {
            api__respond_status(c, rv, "this node is not the leader");
        }
        return;
    }
    if (st.leader_api_address[0] == '\0') {
        api__respond_error(c, 503, "no_leader",
                           "no leader is known; use consistency=stale for a "
                           "local read",
                           NULL);
        return;
    }
    {
        const char *hdr[1];
        char trace[128];
        snprintf(trace, sizeof trace, "X-Rems-Trace-Id: %s", c->trace_id);
        hdr[0] = trace;
        c->forward.data = c;
        rv = cluster_node_forward(c->s->node, &c->forward,
                                  st.leader_api_address, "GET",
                                  "/internal/read-index", hdr, 1, NULL, 0,
                                  c->s->cfg.forward_timeout_ms,
                                  forwarded_read_index_cb);
        if (rv != 0) {
            api__respond_status(c, rv, "cannot reach the leader");
        }
    }
}

/* ------------------------------------------------------------------ */
/* Writes.                                                              */

static void write_cb(struct cluster_write *w,
                     int status,
                     const struct statemachine_result *res)
{
    struct call *c = w->data;
    json_t *body;
    char rev[32];
    struct http_header h[1];
    char msg[REMS_ERRMSG_SIZE];

    if (status != 0) {
        api__respond_status(c, status, rems_strerror(status));
        return;
    }
    if (res->code == REMS_ECONFLICT) {
        json_t *err = json_object();
        body = json_object();
        snprintf(msg, sizeof msg, "revision is %" PRIu64
                                  ", If-Match asked for %" PRIu64,
                 res->current_revision, c->if_match);
        json_object_set_new(err, "code", json_string("conflict"));
        json_object_set_new(err, "message", json_string(msg));
        json_object_set_new(err, "field", json_string("If-Match"));
        json_object_set_new(err, "current_revision",
                            json_integer((json_int_t)res->current_revision));
        json_object_set_new(body, "error", err);
        api__respond_json(c, 409, body, NULL, 0);
        return;
    }
    if (res->code == REMS_ENOTFOUND) {
        snprintf(msg, sizeof msg, "no policy with key %s", c->key);
        api__respond_error(c, 404, "not_found", msg, "key");
        return;
    }
    if (res->code != 0) {
        api__respond_error(c, 500, "internal", rems_strerror(res->code), NULL);
        return;
    }
    body = json_object();
    json_object_set_new(body, "key", json_string(c->key));
    json_object_set_new(body, "revision", json_integer((json_int_t)res->revision));
    if (c->kind == CALL_POLICY_PUT) {
        json_object_set_new(body, "created", json_boolean(res->created));
    } else {
        json_object_set_new(body, "deleted", json_true());
    }
    json_object_set_new(body, "index", json_integer((json_int_t)res->index));
    if (res->duplicate) {
        json_object_set_new(body, "duplicate", json_true());
    }
    snprintf(rev, sizeof rev, "%" PRIu64, res->revision);
    h[0].name = "X-Rems-Revision";
    h[0].value = rev;
    api__respond_json(c, 200, body, h, 1);
}

static const char *role_name(int role)
{
    return role == RAFT_VOTER     ? "voter"
           : role == RAFT_STANDBY ? "standby"
                                  : "spare";
}

static void change_cb(struct cluster_change *ch,
                      int status,
                      const char *errmsg)
{
    struct call *c = ch->data;
    json_t *body;
    if (status != 0) {
        api__respond_status(c, status, errmsg);
        return;
    }
    body = json_object();
    switch (c->kind) {
        case CALL_MEMBER_ADD:
        case CALL_MEMBER_ROLE:
            json_object_set_new(body, "id",
                                json_integer((json_int_t)c->member_id));
            json_object_set_new(body, "role", json_string(role_name(c->role)));
            break;
        case CALL_MEMBER_REMOVE:
            json_object_set_new(body, "id",
                                json_integer((json_int_t)c->member_id));
            json_object_set_new(body, "removed", json_true());
            break;
        default:
            json_object_set_new(body, "leader_id",
                                json_integer((json_int_t)ch->id));
            break;
    }
    api__respond_json(c, 200, body, NULL, 0);
}

static void forwarded_cb(struct cluster_forward *f,
                         int status,
                         long http_status,
                         const char *body,
                         size_t len)
{
    struct call *c = f->data;
    json_error_t jerr;
    json_t *o;

    if (status != 0) {
        respond_forward_failed(c, true, status, f->errmsg);
        return;
    }
    o = json_loadb(body, len, 0, &jerr);
    if (o == NULL) {
        api__respond_error(c, 502, "internal",
                           "the leader's answer is not JSON", NULL);
        return;
    }
    {
        struct http_header h[3];
        size_t nh = 0;
        char rev[32];
        char location[STATEMACHINE_ID_MAX + 32];
        json_t *r = json_object_get(o, "revision");
        const char *id = json_string_value(json_object_get(o, "id"));
        if (http_status == 200 && json_is_integer(r)) {
            snprintf(rev, sizeof rev, "%" JSON_INTEGER_FORMAT,
                     json_integer_value(r));
            h[nh].name = "X-Rems-Revision";
            h[nh++].value = rev;
        }
        /* The forward returns no headers, so the leader's Location is
         * made again: 201 answers only come from POST /v1/commands, whose
         * body names the command. */
        if (http_status == 201 && id != NULL &&
            statemachine_id_check(id, strlen(id))) {
            snprintf(location, sizeof location, "/v1/commands/%s", id);
            h[nh].name = "Location";
            h[nh++].value = location;
        }
        if (http_status == 503) {
            h[nh].name = "Retry-After";
            h[nh++].value = "1";
        }
        api__respond_json(c, (int)http_status, o, h, nh);
    }
}

/* Forward the call unchanged to the leader's API. */
static void forward_write(struct call *c, const char *leader_api)
{
    const char *hdr[8];
    char lines[8][700];
    size_t nh = 0;
    static const char *const copy[] = {"content-type", "if-match",
                                       "x-rems-user", "x-rems-reason"};
    char path[2048];
    size_t i;
    int rv;

    snprintf(lines[nh], sizeof lines[nh], "X-Rems-Forwarded: 1");
    hdr[nh] = lines[nh];
    nh++;
    snprintf(lines[nh], sizeof lines[nh], "X-Rems-Trace-Id: %s", c->trace_id);
    hdr[nh] = lines[nh];
    nh++;
    snprintf(lines[nh], sizeof lines[nh], "X-Rems-Request-Id: %s",
             c->request_id);
    hdr[nh] = lines[nh];
    nh++;
    /* When this node gives up waiting (and answers 504, outcome unknown):
     * the leader proposes nothing that arrives later than that, so a call
     * held up in the network cannot take effect long after its caller was
     * told it timed out (a command would otherwise run long after the
     * caller's idea of its TTL). */
    snprintf(lines[nh], sizeof lines[nh], "X-Rems-Not-After: %" PRIu64,
             rems_wall_ms() + c->s->cfg.forward_timeout_ms);
    hdr[nh] = lines[nh];
    nh++;
    for (i = 0; i < REMS_ARRAY_SIZE(copy); i++) {
        const char *v = http_request_header(c->req, copy[i]);
        if (v != NULL) {
            snprintf(lines[nh], sizeof lines[nh], "%s: %s", copy[i], v);
            hdr[nh] = lines[nh];
            nh++;
        }
    }
    snprintf(path, sizeof path, "%s%s%s", c->req->raw_path,
             c->req->query != NULL ? "?" : "",
             c->req->query != NULL ? c->req->query : "");
    c->forward.data = c;
    rv = cluster_node_forward(
        c->s->node, &c->forward, leader_api,
        http_method_str((enum http_method)c->req->method), path, hdr, nh,
        c->forward_body != NULL ? c->forward_body : c->req->body,
        c->forward_body != NULL ? strlen(c->forward_body) : c->req->body_len,
        c->s->cfg.forward_timeout_ms, forwarded_cb);
    if (rv != 0) {
        api__respond_status(c, rv, "cannot forward to the leader");
    }
}

void api__fill_entry_meta(struct call *c, struct statemachine_entry *e)
{
    const char *user = http_request_header(c->req, "x-rems-user");
    const char *reason = http_request_header(c->req, "x-rems-reason");
    e->time_ms = rems_wall_ms();
    e->trace_id = c->trace_id;
    e->trace_id_len = strlen(c->trace_id);
    e->request_id = c->request_id;
    e->request_id_len = strlen(c->request_id);
    e->requested_by = user != NULL ? user : "anonymous";
    e->requested_by_len = strlen(e->requested_by);
    e->reason = reason != NULL ? reason : "";
    e->reason_len = strlen(e->reason);
}

/* A forwarded write that reached the leader after the forwarding node's
 * X-Rems-Not-After (its wall clock, plus max_clock_skew_ms for the clocks'
 * difference) is answered 504 and not proposed: that node has already
 * answered its caller. Returns true when it answered. */
static bool forwarded_too_late(struct call *c)
{
    const struct config *cfg = cluster_node_config(c->s->node);
    const char *v = http_request_header(c->req, "x-rems-not-after");
    uint64_t not_after;
    uint64_t now;
    char msg[REMS_ERRMSG_SIZE];

    if (v == NULL || http_request_header(c->req, "x-rems-forwarded") == NULL ||
        rems_parse_u64(v, &not_after) != 0) {
        return false;
    }
    now = rems_wall_ms();
    if (not_after > UINT64_MAX - cfg->max_clock_skew_ms ||
        now <= not_after + cfg->max_clock_skew_ms) {
        return false;
    }
    snprintf(msg, sizeof msg,
             "the call reached the leader %" PRIu64
             " ms after the forwarding node stopped waiting; not proposed",
             now - not_after);
    api__respond_error(c, 504, "timeout", msg, NULL);
    return true;
}

void api__do_write(struct call *c)
{
    struct cluster_status st;
    char errmsg[REMS_ERRMSG_SIZE];
    int rv = 0;

    cluster_node_brief(c->s->node, &st);
    if (st.role != CLUSTER_ROLE_LEADER) {
        if (http_request_header(c->req, "x-rems-forwarded") != NULL) {
            api__respond_error(c, 503, "no_leader",
                               "this node is no longer the leader", NULL);
        } else if (st.leader_api_address[0] == '\0') {
            api__respond_error(c, 503, "no_leader",
                               "no leader is known; retry later", NULL);
        } else {
            forward_write(c, st.leader_api_address);
        }
        return;
    }
    if (forwarded_too_late(c)) {
        return;
    }
    errmsg[0] = '\0';
    switch (c->kind) {
        case CALL_POLICY_PUT:
        case CALL_POLICY_DELETE: {
            struct statemachine_entry e;
            memset(&e, 0, sizeof e);
            e.type = c->kind == CALL_POLICY_PUT
                         ? STATEMACHINE_ENTRY_POLICY_PUT
                         : STATEMACHINE_ENTRY_POLICY_DELETE;
            api__fill_entry_meta(c, &e);
            e.key = c->key;
            e.key_len = c->key_len;
            e.value = c->value;
            e.value_len = c->value != NULL ? strlen(c->value) : 0;
            e.has_if_revision = c->has_if_match;
            e.if_revision = c->if_match;
            c->write.data = c;
            rv = cluster_node_propose(c->s->node, &c->write, &e, write_cb,
                                      errmsg);
            break;
        }
        case CALL_MEMBER_ADD:
            c->change.data = c;
            rv = cluster_node_member_add(c->s->node, &c->change, c->member_id,
                                         c->raft_address, c->api_address,
                                         c->role, change_cb, errmsg);
            break;
        case CALL_MEMBER_REMOVE:
            c->change.data = c;
            if (c->member_id == st.id) {
                /* Hand leadership over first; the caller retries and the
                 * new leader removes this node. */
                rv = cluster_node_transfer(c->s->node, &c->change, 0,
                                           change_cb, errmsg);
                if (rv == 0) {
                    c->kind = CALL_TRANSFER;
                }
                break;
            }
            rv = cluster_node_member_remove(c->s->node, &c->change,
                                            c->member_id, change_cb, errmsg);
            break;
        case CALL_MEMBER_ROLE:
            c->change.data = c;
            rv = cluster_node_member_assign(c->s->node, &c->change,
                                            c->member_id, c->role, change_cb,
                                            errmsg);
            break;
        case CALL_TRANSFER:
            c->change.data = c;
            rv = cluster_node_transfer(c->s->node, &c->change, c->member_id,
                                       change_cb, errmsg);
            break;
        case CALL_COMMAND_ISSUE:
        case CALL_COMMAND_CANCEL:
            /* The agent (issue) or the command (cancel) is looked up in a
             * state that holds every write acknowledged before this call:
             * after a read index, as a linearizable read. */
            c->wait.data = c;
            rv = cluster_node_read_index(c->s->node, &c->wait, read_index_cb);
            if (rv != 0) {
                rems_errmsgf(errmsg, "this node is not the leader");
            }
            break;
        default:
            REMS_ASSERT(c->kind >= CALL_INCIDENT_UPDATE);
            rv = api__reconcile_propose(c, errmsg);
            break;
    }
    if (rv != 0) {
        api__respond_status(c, rv,
                            errmsg[0] != '\0' ? errmsg : rems_strerror(rv));
    }
}

/* ------------------------------------------------------------------ */
/* Agents, leases and commands.                                         */

/* Stop a walk of the store early; not a REMS_E* code. */
#define VISIT_STOP (-1)

#define COMMAND_TTL_DEFAULT_MS 30000
#define COMMAND_ARGS_MAX 64
#define COMMAND_ARG_KEY_MAX 128
#define COMMAND_ARG_VALUE_MAX 1024
#define COMMAND_MANIFEST_MAX (512 * 1024) /* Serialized, as agents take. */

static const struct {
    const char *name;
    bool needs_service; /* Else a service is optional. */
} command_actions[] = {
    {"start", true},          {"stop", true},         {"restart", true},
    {"pause", true},          {"resume", true},       {"quarantine", true},
    {"push_manifest", false}, {"diagnostics", false},
};

#define COMMAND_ACTIONS_TEXT                                                   \
    "start, stop, restart, pause, resume, quarantine, push_manifest or "       \
    "diagnostics"

/* JSON text stored by the state machine (labels, service states, args, a
 * result): the parsed value, null when empty, the text as a string when it
 * is not JSON. */
static json_t *blob_json(const char *s, size_t len)
{
    json_error_t jerr;
    json_t *v;
    if (s == NULL || len == 0) {
        return json_null();
    }
    v = json_loadb(s, len, JSON_DECODE_ANY, &jerr);
    return v != NULL ? v : api__nstr(s, len);
}

/* An integer that 0 means "unknown" or "not yet": null then. */
json_t *api__index_or_null(uint64_t v)
{
    return v != 0 ? json_integer((json_int_t)v) : json_null();
}

static json_t *lease_json(const struct statemachine_lease *l, bool with_agent)
{
    json_t *o = json_object();
    if (with_agent) {
        json_object_set_new(o, "agent",
                            api__nstr(l->agent_id, l->agent_id_len));
    }
    json_object_set_new(o, "ttl_ms", json_integer((json_int_t)l->ttl_ms));
    json_object_set_new(o, "granted_index",
                        json_integer((json_int_t)l->granted_index));
    json_object_set_new(o, "granted_ms",
                        json_integer((json_int_t)l->granted_ms));
    json_object_set_new(o, "node_id", api__index_or_null(l->node_id));
    return o;
}

/* The agent @a as the API shows it, with its lease from @t. */
static int agent_json(struct storage_txn *t,
                      const struct statemachine_agent *a,
                      json_t **out,
                      char *errmsg)
{
    struct statemachine_lease l;
    json_t *lease;
    json_t *labels;
    json_t *o;
    int rv;

    rv = statemachine_lease_get(t, a->id, a->id_len, &l, errmsg);
    if (rv == 0) {
        lease = lease_json(&l, false);
    } else if (rv == REMS_ENOTFOUND) {
        lease = json_null();
    } else {
        return rv;
    }
    labels = blob_json(a->labels, a->labels_len);
    if (json_is_null(labels)) {
        json_decref(labels);
        labels = json_object();
    }
    o = json_object();
    json_object_set_new(o, "id", api__nstr(a->id, a->id_len));
    json_object_set_new(o, "labels", labels);
    json_object_set_new(o, "online", json_boolean(a->online));
    json_object_set_new(
        o, "offline_reason",
        a->online || a->offline_reason_len == 0
            ? json_null()
            : api__nstr(a->offline_reason, a->offline_reason_len));
    json_object_set_new(o, "node_id", api__index_or_null(a->node_id));
    json_object_set_new(o, "registered_index",
                        json_integer((json_int_t)a->registered_index));
    json_object_set_new(o, "updated_index",
                        json_integer((json_int_t)a->updated_index));
    json_object_set_new(o, "services", blob_json(a->services, a->services_len));
    json_object_set_new(o, "lease", lease);
    *out = o;
    return 0;
}

/* What only the ready leader knows of an agent (not in the log). */
static json_t *live_json(const struct cluster_agent_live *live)
{
    json_t *o = json_object();
    json_object_set_new(o, "connected", json_boolean(live->connected));
    json_object_set_new(
        o, "peer", live->connected ? json_string(live->peer) : json_null());
    json_object_set_new(o, "lease_remaining_ms",
                        live->has_lease
                            ? json_integer((json_int_t)live->lease_remaining_ms)
                            : json_null());
    json_object_set_new(o, "commands_in_flight",
                        json_integer((json_int_t)live->commands_in_flight));
    return o;
}

/* The command @cmd as the API shows it. The stored arguments of
 * push_manifest also hold the manifest (key "manifest"): it is shown
 * apart, and only with @with_manifest (lists leave it out). */
static json_t *command_json(const struct statemachine_command *cmd,
                            bool with_manifest)
{
    json_t *o = json_object();
    json_t *args = blob_json(cmd->args, cmd->args_len);
    json_t *manifest = NULL;
    bool push = cmd->action_len == strlen("push_manifest") &&
                memcmp(cmd->action, "push_manifest", cmd->action_len) == 0;

    if (json_is_null(args)) {
        json_decref(args);
        args = json_object();
    }
    if (push && json_is_object(args)) {
        manifest = json_incref(json_object_get(args, "manifest"));
        json_object_del(args, "manifest");
    }
    json_object_set_new(o, "id", api__nstr(cmd->id, cmd->id_len));
    json_object_set_new(o, "agent",
                        api__nstr(cmd->agent_id, cmd->agent_id_len));
    json_object_set_new(o, "action", api__nstr(cmd->action, cmd->action_len));
    json_object_set_new(o, "service",
                        cmd->service_len > 0
                            ? api__nstr(cmd->service, cmd->service_len)
                            : json_null());
    json_object_set_new(o, "args", args);
    if (push && with_manifest) {
        json_object_set_new(o, "manifest",
                            manifest != NULL ? manifest : json_null());
    } else {
        json_decref(manifest);
    }
    json_object_set_new(
        o, "state", json_string(statemachine_command_state_name(cmd->state)));
    json_object_set_new(o, "result", blob_json(cmd->result, cmd->result_len));
    json_object_set_new(o, "term", json_integer((json_int_t)cmd->term));
    json_object_set_new(o, "ttl_ms", json_integer((json_int_t)cmd->ttl_ms));
    json_object_set_new(o, "issued_index",
                        json_integer((json_int_t)cmd->issued_index));
    json_object_set_new(o, "issued_ms",
                        json_integer((json_int_t)cmd->issued_ms));
    json_object_set_new(o, "deadline_ms",
                        json_integer((json_int_t)cmd->deadline_ms));
    json_object_set_new(o, "resolved_index",
                        api__index_or_null(cmd->resolved_index));
    json_object_set_new(o, "requested_by",
                        api__nstr(cmd->requested_by, cmd->requested_by_len));
    json_object_set_new(o, "reason", api__nstr(cmd->reason, cmd->reason_len));
    json_object_set_new(o, "trace_id",
                        api__nstr(cmd->trace_id, cmd->trace_id_len));
    return o;
}

/* Walks of the agents, leases and commands tables into "items". */
struct walk_ctx {
    struct storage_txn *t;
    json_t *items;
    size_t limit;
    int online; /* -1: any. */
    bool more;
    char last[STATEMACHINE_ID_MAX + 1];
    char *errmsg;
};

static void walk_last(struct walk_ctx *w, const char *id, size_t len)
{
    if (len > STATEMACHINE_ID_MAX) {
        len = STATEMACHINE_ID_MAX; /* Ids are checked at apply. */
    }
    memcpy(w->last, id, len);
    w->last[len] = '\0';
}

/* The online filter is applied here, so the walk has no limit of its own:
 * the visitor stops it at the first match beyond @limit. */
static int agents_visit(void *data, const struct statemachine_agent *a)
{
    struct walk_ctx *w = data;
    json_t *o;
    int rv;

    if (w->online >= 0 && a->online != (w->online == 1)) {
        return 0;
    }
    if (json_array_size(w->items) == w->limit) {
        w->more = true;
        return VISIT_STOP;
    }
    rv = agent_json(w->t, a, &o, w->errmsg);
    if (rv != 0) {
        return rv;
    }
    json_array_append_new(w->items, o);
    walk_last(w, a->id, a->id_len);
    return 0;
}

static int leases_visit(void *data, const struct statemachine_lease *l)
{
    struct walk_ctx *w = data;
    json_array_append_new(w->items, lease_json(l, true));
    return 0;
}

static int commands_visit(void *data, const struct statemachine_command *cmd)
{
    struct walk_ctx *w = data;
    json_array_append_new(w->items, command_json(cmd, false));
    walk_last(w, cmd->id, cmd->id_len);
    return 0;
}

/* Build the answer of a read of agents, leases or commands from @t into
 * *@out. REMS_ENOTFOUND for an unknown id. */
static int
agents_query(struct call *c, struct storage_txn *t, json_t **out, char *errmsg)
{
    struct walk_ctx w;
    bool more = false;
    int rv;

    memset(&w, 0, sizeof w);
    w.t = t;
    w.limit = c->limit;
    w.online = c->online_filter;
    w.errmsg = errmsg;
    switch (c->kind) {
        case CALL_AGENT_GET: {
            struct statemachine_agent a;
            struct cluster_agent_live live;
            rv = statemachine_agent_get(t, c->id, strlen(c->id), &a, errmsg);
            if (rv == 0) {
                rv = agent_json(t, &a, out, errmsg);
            }
            if (rv == 0) {
                json_object_set_new(
                    *out, "live",
                    cluster_node_agent_live(c->s->node, c->id, &live) == 0
                        ? live_json(&live)
                        : json_null());
            }
            return rv;
        }
        case CALL_COMMAND_GET: {
            struct statemachine_command cmd;
            rv =
                statemachine_command_get(t, c->id, strlen(c->id), &cmd, errmsg);
            if (rv == 0) {
                *out = command_json(&cmd, true);
            }
            return rv;
        }
        case CALL_AGENT_LIST:
            w.items = json_array();
            rv =
                statemachine_agent_list(t, c->after, strlen(c->after), SIZE_MAX,
                                        agents_visit, &w, &more, errmsg);
            if (rv == VISIT_STOP) {
                rv = 0;
            }
            more = w.more;
            break;
        case CALL_LEASE_LIST:
            w.items = json_array();
            rv = statemachine_lease_list(t, leases_visit, &w, errmsg);
            break;
        default:
            w.items = json_array();
            rv = statemachine_command_list(
                t, c->has_agent_filter ? c->agent : NULL, strlen(c->agent),
                c->state_filter, c->after, strlen(c->after), c->limit,
                commands_visit, &w, &more, errmsg);
            break;
    }
    if (rv != 0) {
        json_decref(w.items);
        return rv;
    }
    *out = json_object();
    json_object_set_new(*out, "items", w.items);
    if (c->kind != CALL_LEASE_LIST) {
        json_object_set_new(*out, "next_after",
                            more ? json_string(w.last) : json_null());
    }
    return 0;
}

static void read_agents(struct call *c)
{
    struct storage_txn *t;
    char errmsg[REMS_ERRMSG_SIZE];
    char msg[REMS_ERRMSG_SIZE];
    json_t *body = NULL;
    int rv;

    rv = storage_txn_begin(cluster_node_storage(c->s->node), false, &t, errmsg);
    if (rv != 0) {
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    rv = agents_query(c, t, &body, errmsg);
    storage_txn_abort(t);
    if (rv == REMS_ENOTFOUND) {
        snprintf(msg, sizeof msg, "no %s with id %s",
                 c->kind == CALL_AGENT_GET ? "agent" : "command", c->id);
        api__respond_error(c, 404, "not_found", msg, "id");
        return;
    }
    if (rv != 0) {
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    if (c->kind == CALL_AGENT_LIST || c->kind == CALL_LEASE_LIST ||
        c->kind == CALL_COMMAND_LIST) {
        struct cluster_status st;
        cluster_node_brief(c->s->node, &st);
        json_object_set_new(body, "index",
                            json_integer((json_int_t)st.state_index));
    }
    api__respond_json(c, 200, body, NULL, 0);
}

/* Answer with command c->id as GET shows it: 201 with Location after an
 * issue, else 200. */
static void respond_command(struct call *c, int status, bool duplicate)
{
    struct storage_txn *t;
    struct statemachine_command cmd;
    char errmsg[REMS_ERRMSG_SIZE];
    char location[STATEMACHINE_ID_MAX + 32];
    struct http_header h[1];
    json_t *body;
    int rv;

    rv = storage_txn_begin(cluster_node_storage(c->s->node), false, &t, errmsg);
    if (rv != 0) {
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    rv = statemachine_command_get(t, c->id, strlen(c->id), &cmd, errmsg);
    if (rv != 0) {
        storage_txn_abort(t);
        /* Applied here before this callback: it must be there. */
        api__respond_error(
            c, 500, "internal",
            rv == REMS_ENOTFOUND ? "the command applied is missing" : errmsg,
            NULL);
        return;
    }
    body = command_json(&cmd, true);
    storage_txn_abort(t);
    if (duplicate) {
        json_object_set_new(body, "duplicate", json_true());
    }
    snprintf(location, sizeof location, "/v1/commands/%s", c->id);
    h[0].name = "Location";
    h[0].value = location;
    api__respond_json(c, status, body, h, status == 201 ? 1 : 0);
}

struct audit_find {
    uint64_t index;
    int type;
    char key[STATEMACHINE_ID_MAX + 1];
    bool found;
};

static int audit_find_visit(void *data, const struct statemachine_audit *a)
{
    struct audit_find *af = data;
    if (a->index == af->index && a->key_len <= STATEMACHINE_ID_MAX) {
        af->found = true;
        af->type = a->type;
        memcpy(af->key, a->key, a->key_len);
        af->key[a->key_len] = '\0';
    }
    return 0;
}

/* A retried request id is answered with its first result, whose command id
 * may differ from this call's (a generated id): take the id from the audit
 * record of the first application. False (answered) when that record is
 * not a command entry of this call's kind, i.e. the request id was first
 * used for something else. */
static bool duplicate_command_id(struct call *c,
                                 const struct statemachine_result *res)
{
    struct storage_txn *t;
    struct audit_find af;
    char errmsg[REMS_ERRMSG_SIZE];
    bool more;
    int want = c->kind == CALL_COMMAND_ISSUE
                   ? STATEMACHINE_ENTRY_COMMAND_ISSUE
                   : STATEMACHINE_ENTRY_COMMAND_RESOLVE;
    int rv;

    memset(&af, 0, sizeof af);
    af.index = res->index;
    rv = storage_txn_begin(cluster_node_storage(c->s->node), false, &t, errmsg);
    if (rv == 0) {
        rv = statemachine_audit_list(t, res->index - 1, 1, audit_find_visit,
                                     &af, &more, errmsg);
        storage_txn_abort(t);
    }
    if (rv != 0) {
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return false;
    }
    if (!af.found || af.type != want ||
        (c->kind == CALL_COMMAND_CANCEL && strcmp(af.key, c->id) != 0)) {
        api__respond_error(c, 409, "conflict",
                           "this X-Rems-Request-Id was first used by another "
                           "request",
                           "X-Rems-Request-Id");
        return false;
    }
    snprintf(c->id, sizeof c->id, "%s", af.key);
    return true;
}

static void command_written_cb(struct cluster_write *w,
                               int status,
                               const struct statemachine_result *res)
{
    struct call *c = w->data;
    bool issue = c->kind == CALL_COMMAND_ISSUE;
    char msg[REMS_ERRMSG_SIZE];
    json_t *body;
    json_t *err;

    if (status != 0) {
        api__respond_status(c, status, rems_strerror(status));
        return;
    }
    if (res->duplicate && !duplicate_command_id(c, res)) {
        return;
    }
    switch (res->code) {
        case 0:
            respond_command(c, issue ? 201 : 200, res->duplicate);
            return;
        case REMS_ENOTFOUND:
            if (issue) {
                snprintf(msg, sizeof msg, "no agent with id %s", c->agent);
                api__respond_error(c, 404, "not_found", msg, "agent");
            } else {
                snprintf(msg, sizeof msg, "no command with id %s", c->id);
                api__respond_error(c, 404, "not_found", msg, "id");
            }
            return;
        case REMS_EEXIST:
        case REMS_ECONFLICT:
            if (res->code == REMS_EEXIST) {
                snprintf(msg, sizeof msg,
                         "a command with id %s exists already (state %s)",
                         c->id,
                         statemachine_command_state_name(res->command_state));
            } else {
                snprintf(msg, sizeof msg, "command %s has already ended: %s",
                         c->id,
                         statemachine_command_state_name(res->command_state));
            }
            err = json_object();
            json_object_set_new(err, "code", json_string("conflict"));
            json_object_set_new(err, "message", json_string(msg));
            json_object_set_new(err, "field", json_string("id"));
            json_object_set_new(err, "state",
                                json_string(statemachine_command_state_name(
                                    res->command_state)));
            body = json_object();
            json_object_set_new(body, "error", err);
            api__respond_json(c, 409, body, NULL, 0);
            return;
        default:
            api__respond_error(c, 500, "internal", rems_strerror(res->code),
                               NULL);
            return;
    }
}

/* On the leader, after a read index: look the agent (issue) or the command
 * (cancel) up, then propose. A cancel is proposed whatever the command's
 * state, so that a retried cancel gets its first answer; apply refuses a
 * second final state (409). */
static void command_propose(struct call *c)
{
    struct storage_txn *t;
    struct statemachine_entry e;
    struct cluster_status st;
    char errmsg[REMS_ERRMSG_SIZE];
    char msg[REMS_ERRMSG_SIZE];
    bool issue = c->kind == CALL_COMMAND_ISSUE;
    bool pending = false;
    int rv;

    /* Checked again here: the read index before this may have taken long. */
    if (forwarded_too_late(c)) {
        return;
    }
    rv = storage_txn_begin(cluster_node_storage(c->s->node), false, &t, errmsg);
    if (rv != 0) {
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    if (issue) {
        struct statemachine_agent a;
        rv = statemachine_agent_get(t, c->agent, strlen(c->agent), &a, errmsg);
    } else {
        struct statemachine_command cmd;
        rv = statemachine_command_get(t, c->id, strlen(c->id), &cmd, errmsg);
        if (rv == 0 &&
            (cmd.agent_id_len == 0 || cmd.agent_id_len > STATEMACHINE_ID_MAX)) {
            rems_errmsgf(errmsg, "commands[%s]: bad agent id", c->id);
            rv = REMS_ECORRUPT;
        }
        if (rv == 0) {
            memcpy(c->agent, cmd.agent_id, cmd.agent_id_len);
            c->agent[cmd.agent_id_len] = '\0';
            pending = cmd.state == STATEMACHINE_COMMAND_PENDING;
        }
    }
    storage_txn_abort(t);
    if (rv == REMS_ENOTFOUND) {
        snprintf(msg, sizeof msg, "no %s with id %s",
                 issue ? "agent" : "command", issue ? c->agent : c->id);
        api__respond_error(c, 404, "not_found", msg, issue ? "agent" : "id");
        return;
    }
    if (rv != 0) {
        api__respond_error(c, 500, "internal", errmsg, NULL);
        return;
    }
    if (pending && !c->force &&
        cluster_node_command_delivered(c->s->node, c->id)) {
        json_t *err = json_object();
        json_t *body = json_object();
        snprintf(msg, sizeof msg,
                 "command %s was sent to agent %s, which has not answered: it "
                 "may be running; wait for its answer or its deadline, or "
                 "cancel with force=true",
                 c->id, c->agent);
        json_object_set_new(err, "code", json_string("conflict"));
        json_object_set_new(err, "message", json_string(msg));
        json_object_set_new(err, "field", json_string("id"));
        json_object_set_new(err, "state", json_string("pending"));
        json_object_set_new(err, "delivered", json_true());
        json_object_set_new(body, "error", err);
        api__respond_json(c, 409, body, NULL, 0);
        return;
    }
    if (!issue) {
        /* The result of a cancel says who cancelled and why. */
        json_t *r = json_object();
        const char *user = http_request_header(c->req, "x-rems-user");
        const char *why = http_request_header(c->req, "x-rems-reason");
        char *text;
        json_object_set_new(
            r, "cancelled_by",
            api__nstr(user != NULL ? user : "anonymous",
                      strlen(user != NULL ? user : "anonymous")));
        json_object_set_new(
            r, "reason",
            api__nstr(why != NULL ? why : "", why != NULL ? strlen(why) : 0));
        text = json_dumps(r, JSON_COMPACT);
        json_decref(r);
        c->value = text != NULL ? rems_strdup(text) : NULL;
        free(text); /* jansson allocates with malloc. */
        if (c->value == NULL) {
            api__respond_error(c, 500, "internal", "out of memory", NULL);
            return;
        }
    }
    memset(&e, 0, sizeof e);
    api__fill_entry_meta(c, &e);
    if (c->has_reason) {
        e.reason = c->reason;
        e.reason_len = strlen(c->reason);
    }
    e.agent_id = c->agent;
    e.agent_id_len = strlen(c->agent);
    e.command_id = c->id;
    e.command_id_len = strlen(c->id);
    e.value = c->value;
    e.value_len = strlen(c->value);
    if (issue) {
        cluster_node_brief(c->s->node, &st);
        e.type = STATEMACHINE_ENTRY_COMMAND_ISSUE;
        e.action = c->action;
        e.action_len = strlen(c->action);
        e.service = c->service;
        e.service_len = strlen(c->service);
        e.ttl_ms = c->ttl_ms;
        e.term = st.term;
    } else {
        e.type = STATEMACHINE_ENTRY_COMMAND_RESOLVE;
        e.outcome = "cancelled";
        e.outcome_len = strlen("cancelled");
    }
    errmsg[0] = '\0';
    c->write.data = c;
    rv = cluster_node_propose(c->s->node, &c->write, &e, command_written_cb,
                              errmsg);
    if (rv != 0) {
        api__respond_status(c, rv,
                            errmsg[0] != '\0' ? errmsg : rems_strerror(rv));
    }
}

/* ------------------------------------------------------------------ */
/* Status, health, metrics.                                             */

static json_t *members_json(const struct cluster_status *st)
{
    json_t *a = json_array();
    size_t i;
    for (i = 0; i < st->n_members; i++) {
        const struct cluster_member *m = &st->members[i];
        json_t *o = json_object();
        json_object_set_new(o, "id", json_integer((json_int_t)m->id));
        json_object_set_new(o, "raft_address", json_string(m->raft_address));
        json_object_set_new(o, "api_address",
                            m->api_address[0] != '\0'
                                ? json_string(m->api_address)
                                : json_null());
        json_object_set_new(o, "role", json_string(role_name(m->role)));
        json_array_append_new(a, o);
    }
    return a;
}

static void serve_status(struct call *c)
{
    struct cluster_status st;
    json_t *body = json_object();
    cluster_node_status(c->s->node, &st);
    json_object_set_new(body, "node_id", json_integer((json_int_t)st.id));
    json_object_set_new(body, "role", json_string(cluster_role_name(st.role)));
    json_object_set_new(body, "term", json_integer((json_int_t)st.term));
    if (st.leader_id != 0) {
        json_t *l = json_object();
        json_object_set_new(l, "id", json_integer((json_int_t)st.leader_id));
        json_object_set_new(l, "raft_address",
                            json_string(st.leader_raft_address));
        json_object_set_new(l, "api_address",
                            st.leader_api_address[0] != '\0'
                                ? json_string(st.leader_api_address)
                                : json_null());
        json_object_set_new(body, "leader", l);
    } else {
        json_object_set_new(body, "leader", json_null());
    }
    json_object_set_new(body, "members", members_json(&st));
    json_object_set_new(body, "commit_index",
                        json_integer((json_int_t)st.commit_index));
    json_object_set_new(body, "applied_index",
                        json_integer((json_int_t)st.applied_index));
    json_object_set_new(body, "state_index",
                        json_integer((json_int_t)st.state_index));
    json_object_set_new(body, "last_index",
                        json_integer((json_int_t)st.last_index));
    json_object_set_new(body, "last_contact_ms",
                        json_integer((json_int_t)st.last_contact_ms));
    json_object_set_new(body, "leader_ready", json_boolean(st.leader_ready));
    json_object_set_new(body, "version", json_string(REMS_VERSION));
    api__respond_json(c, 200, body, NULL, 0);
}

static void serve_members(struct call *c)
{
    struct cluster_status st;
    json_t *body = json_object();
    cluster_node_status(c->s->node, &st);
    json_object_set_new(body, "members", members_json(&st));
    json_object_set_new(body, "leader_id",
                        json_integer((json_int_t)st.leader_id));
    api__respond_json(c, 200, body, NULL, 0);
}

static void serve_readyz(struct call *c)
{
    struct cluster_status st;
    char why[128];
    json_t *body = json_object();
    cluster_node_brief(c->s->node, &st);
    if (st.leader_id == 0) {
        json_object_set_new(body, "ready", json_false());
        json_object_set_new(body, "reason", json_string("no leader known"));
        api__respond_json(c, 503, body, NULL, 0);
        return;
    }
    if (st.applied_index < st.commit_index) {
        snprintf(why, sizeof why, "applying: applied %" PRIu64 " of %" PRIu64,
                 st.applied_index, st.commit_index);
        json_object_set_new(body, "ready", json_false());
        json_object_set_new(body, "reason", json_string(why));
        api__respond_json(c, 503, body, NULL, 0);
        return;
    }
    json_object_set_new(body, "ready", json_true());
    api__respond_json(c, 200, body, NULL, 0);
}

struct store_counts {
    uint64_t online;
    uint64_t offline;
    uint64_t pending;
};

static int count_agent(void *data, const struct statemachine_agent *a)
{
    struct store_counts *n = data;
    if (a->online) {
        n->online++;
    } else {
        n->offline++;
    }
    return 0;
}

static int count_command(void *data, const struct statemachine_command *cmd)
{
    struct store_counts *n = data;
    (void)cmd;
    n->pending++;
    return 0;
}

static void serve_metrics(struct call *c)
{
    struct cluster_status st;
    struct cluster_metrics m;
    struct rems_buf b;
    struct storage_txn *t;
    struct store_counts counts = {0};
    char errmsg[REMS_ERRMSG_SIZE];
    size_t policies = 0;
    struct http_header h[1];
    bool more;
    int i;

    cluster_node_brief(c->s->node, &st);
    cluster_node_metrics(c->s->node, &m);
    if (storage_txn_begin(cluster_node_storage(c->s->node), false, &t,
                          errmsg) == 0) {
        statemachine_policy_count(t, &policies, errmsg);
        /* Walks of the agents and of the pending commands (an index of
         * their own): cheap while they number thousands. */
        statemachine_agent_list(t, NULL, 0, SIZE_MAX, count_agent, &counts,
                                &more, errmsg);
        statemachine_command_list(t, NULL, 0, STATEMACHINE_COMMAND_PENDING,
                                  NULL, 0, SIZE_MAX, count_command, &counts,
                                  &more, errmsg);
        storage_txn_abort(t);
    }
    rems_buf_init(&b);
    rems_buf_printf(&b,
                    "# HELP rems_raft_term Current raft term.\n"
                    "# TYPE rems_raft_term gauge\n"
                    "rems_raft_term %" PRIu64 "\n"
                    "# HELP rems_raft_commit_index Highest committed index.\n"
                    "# TYPE rems_raft_commit_index gauge\n"
                    "rems_raft_commit_index %" PRIu64 "\n"
                    "# HELP rems_raft_applied_index Highest applied index.\n"
                    "# TYPE rems_raft_applied_index gauge\n"
                    "rems_raft_applied_index %" PRIu64 "\n"
                    "# HELP rems_raft_is_leader 1 on the leader.\n"
                    "# TYPE rems_raft_is_leader gauge\n"
                    "rems_raft_is_leader %d\n"
                    "# HELP rems_raft_last_contact_ms Since the leader was "
                    "last heard.\n"
                    "# TYPE rems_raft_last_contact_ms gauge\n"
                    "rems_raft_last_contact_ms %" PRIu64 "\n",
                    st.term, st.commit_index, st.applied_index,
                    st.role == CLUSTER_ROLE_LEADER, st.last_contact_ms);
    rems_buf_printf(&b,
                    "# HELP rems_writes_total Writes proposed here, by "
                    "result.\n"
                    "# TYPE rems_writes_total counter\n"
                    "rems_writes_total{result=\"ok\"} %" PRIu64 "\n"
                    "rems_writes_total{result=\"failed\"} %" PRIu64 "\n"
                    "# HELP rems_forwarded_total Calls sent to another "
                    "node.\n"
                    "# TYPE rems_forwarded_total counter\n"
                    "rems_forwarded_total %" PRIu64 "\n"
                    "# HELP rems_read_index_rounds_total Quorum rounds for "
                    "linearizable reads.\n"
                    "# TYPE rems_read_index_rounds_total counter\n"
                    "rems_read_index_rounds_total %" PRIu64 "\n"
                    "# HELP rems_snapshots_total Snapshots taken and "
                    "restored.\n"
                    "# TYPE rems_snapshots_total counter\n"
                    "rems_snapshots_total{op=\"taken\"} %" PRIu64 "\n"
                    "rems_snapshots_total{op=\"restored\"} %" PRIu64 "\n"
                    "# HELP rems_elections_won_total Times this node became "
                    "leader.\n"
                    "# TYPE rems_elections_won_total counter\n"
                    "rems_elections_won_total %" PRIu64 "\n"
                    "# HELP rems_policies Stored policies.\n"
                    "# TYPE rems_policies gauge\n"
                    "rems_policies %zu\n"
                    "# HELP rems_http_requests_total Answers by status "
                    "class.\n"
                    "# TYPE rems_http_requests_total counter\n",
                    m.writes_ok, m.writes_failed, m.forwarded,
                    m.read_index_rounds, m.snapshots_taken,
                    m.snapshots_restored, m.elections_won, policies);
    for (i = 1; i < 6; i++) {
        rems_buf_printf(&b, "rems_http_requests_total{code=\"%dxx\"} %" PRIu64
                            "\n",
                        i, c->s->requests_by_class[i]);
    }
    rems_buf_printf(&b,
                    "# HELP rems_agents Registered agents, by state.\n"
                    "# TYPE rems_agents gauge\n"
                    "rems_agents{state=\"online\"} %" PRIu64 "\n"
                    "rems_agents{state=\"offline\"} %" PRIu64 "\n"
                    "# HELP rems_commands_pending Commands without a final "
                    "state.\n"
                    "# TYPE rems_commands_pending gauge\n"
                    "rems_commands_pending %" PRIu64 "\n",
                    counts.online, counts.offline, counts.pending);
    {
        struct cluster_agent_metrics am;
        cluster_node_agent_metrics(c->s->node, &am);
        rems_buf_printf(
            &b,
            "# HELP rems_agent_connections Open agent connections on this "
            "node, and those welcomed by it as leader.\n"
            "# TYPE rems_agent_connections gauge\n"
            "rems_agent_connections{state=\"open\"} %" PRIu64 "\n"
            "rems_agent_connections{state=\"welcomed\"} %" PRIu64 "\n"
            "# HELP rems_agent_leases Leases this node holds as leader.\n"
            "# TYPE rems_agent_leases gauge\n"
            "rems_agent_leases %" PRIu64 "\n"
            "# HELP rems_agent_messages_total Agent link events on this "
            "node.\n"
            "# TYPE rems_agent_messages_total counter\n"
            "rems_agent_messages_total{kind=\"hello\"} %" PRIu64 "\n"
            "rems_agent_messages_total{kind=\"redirect\"} %" PRIu64 "\n"
            "rems_agent_messages_total{kind=\"refused\"} %" PRIu64 "\n"
            "rems_agent_messages_total{kind=\"bad_frame\"} %" PRIu64 "\n"
            "rems_agent_messages_total{kind=\"heartbeat\"} %" PRIu64 "\n"
            "rems_agent_messages_total{kind=\"ack\"} %" PRIu64 "\n"
            "rems_agent_messages_total{kind=\"nack\"} %" PRIu64 "\n"
            "# HELP rems_commands_sent_total Commands sent to agents by "
            "this node as leader.\n"
            "# TYPE rems_commands_sent_total counter\n"
            "rems_commands_sent_total %" PRIu64 "\n"
            "# HELP rems_expired_total Expiry entries applied while this "
            "node led.\n"
            "# TYPE rems_expired_total counter\n"
            "rems_expired_total{kind=\"command\"} %" PRIu64 "\n"
            "rems_expired_total{kind=\"lease\"} %" PRIu64 "\n",
            am.connections, am.connected, am.leases, am.hellos, am.redirects,
            am.refused, am.bad_frames, am.heartbeats, am.acks, am.nacks,
            am.commands_sent, am.commands_expired, am.leases_expired);
    }
    api__reconcile_metrics(c, &b);
    h[0].name = "Content-Type";
    h[0].value = "text/plain; version=0.0.4";
    c->s->requests_by_class[2]++;
    if (b.failed) {
        rems_buf_close(&b);
        api__respond_error(c, 500, "internal", "out of memory", NULL);
        return;
    }
    http_request_respond(c->req, 200, h, 1, b.data, b.len);
    rems_buf_close(&b);
    call_free(c);
}

/* ------------------------------------------------------------------ */
/* Parsing and routing.                                                 */

/* Common write headers: If-Match, X-Rems-Request-Id, user, reason. */
bool api__parse_write_headers(struct call *c)
{
    const char *v;
    char msg[REMS_ERRMSG_SIZE];

    v = http_request_header(c->req, "if-match");
    if (v != NULL) {
        char tmp[32];
        size_t len = strlen(v);
        /* Accept an ETag-style quoted revision too. */
        if (len >= 2 && v[0] == '"' && v[len - 1] == '"' && len < 32) {
            memcpy(tmp, v + 1, len - 2);
            tmp[len - 2] = '\0';
            v = tmp;
        }
        if (rems_parse_u64(v, &c->if_match) != 0) {
            api__respond_error(c, 400, "bad_request",
                               "If-Match must be a revision (a non-negative "
                               "integer)",
                               "If-Match");
            return false;
        }
        c->has_if_match = true;
    }
    v = http_request_header(c->req, "x-rems-request-id");
    if (v != NULL) {
        if (!rems_id_valid(v)) {
            api__respond_error(
                c, 400, "bad_request",
                "X-Rems-Request-Id must be 1 to 64 characters of "
                "A-Z a-z 0-9 _ . : -",
                "X-Rems-Request-Id");
            return false;
        }
        snprintf(c->request_id, sizeof c->request_id, "%s", v);
    } else {
        rems_id_random(c->request_id);
    }
    v = http_request_header(c->req, "x-rems-user");
    if (v != NULL && (strlen(v) == 0 || strlen(v) > STATEMACHINE_USER_MAX)) {
        snprintf(msg, sizeof msg, "X-Rems-User must be 1 to %d bytes",
                 STATEMACHINE_USER_MAX);
        api__respond_error(c, 400, "bad_request", msg, "X-Rems-User");
        return false;
    }
    v = http_request_header(c->req, "x-rems-reason");
    if (v != NULL && strlen(v) > STATEMACHINE_REASON_MAX) {
        snprintf(msg, sizeof msg, "X-Rems-Reason must be at most %d bytes",
                 STATEMACHINE_REASON_MAX);
        api__respond_error(c, 400, "bad_request", msg, "X-Rems-Reason");
        return false;
    }
    return true;
}

bool api__parse_consistency(struct call *c)
{
    char v[32];
    int rv = http_request_query(c->req, "consistency", v, sizeof v);
    if (rv == 0) {
        return true;
    }
    if (rv > 0 && strcmp(v, "stale") == 0) {
        c->stale = true;
        return true;
    }
    if (rv > 0 && strcmp(v, "linearizable") == 0) {
        return true;
    }
    api__respond_error(c, 400, "bad_request",
                       "consistency must be linearizable or stale",
                       "consistency");
    return false;
}

bool api__parse_limit(struct call *c)
{
    char v[32];
    uint64_t n;
    int rv = http_request_query(c->req, "limit", v, sizeof v);
    c->limit = LIST_DEFAULT_LIMIT;
    if (rv == 0) {
        return true;
    }
    if (rv < 0 || rems_parse_u64(v, &n) != 0 || n < 1 || n > LIST_MAX_LIMIT) {
        api__respond_error(c, 400, "bad_request",
                           "limit must be an integer between 1 and 1000",
                           "limit");
        return false;
    }
    c->limit = (size_t)n;
    return true;
}

static bool parse_key(struct call *c, const char *key)
{
    char errmsg[REMS_ERRMSG_SIZE];
    size_t len = strlen(key);
    if (statemachine_key_check(key, len, errmsg) != 0) {
        api__respond_error(c, 400, "bad_request", errmsg, "key");
        return false;
    }
    memcpy(c->key, key, len + 1);
    c->key_len = len;
    return true;
}

json_t *api__parse_body_object(struct call *c)
{
    json_error_t jerr;
    json_t *o;
    char msg[REMS_ERRMSG_SIZE];
    if (c->req->body_len == 0) {
        api__respond_error(c, 400, "bad_request",
                           "a JSON object body is required", "body");
        return NULL;
    }
    o = json_loadb(c->req->body, c->req->body_len, JSON_REJECT_DUPLICATES,
                   &jerr);
    if (o == NULL) {
        snprintf(msg, sizeof msg, "invalid JSON at line %d column %d: %s",
                 jerr.line, jerr.column, jerr.text);
        api__respond_error(c, 400, "bad_request", msg, "body");
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        api__respond_error(c, 400, "bad_request",
                           "the body must be a JSON object", "body");
        return NULL;
    }
    return o;
}

/* True when the request's Content-Type is application/yaml or
 * application/x-yaml (parameters such as charset aside). */
static bool body_is_yaml(struct call *c)
{
    const char *v = http_request_header(c->req, "content-type");
    size_t i;
    char type[32];

    if (v == NULL) {
        return false;
    }
    for (i = 0;
         v[i] != '\0' && v[i] != ';' && v[i] != ' ' && i + 1 < sizeof type;
         i++) {
        type[i] = (char)(v[i] >= 'A' && v[i] <= 'Z' ? v[i] - 'A' + 'a' : v[i]);
    }
    type[i] = '\0';
    return strcmp(type, "application/yaml") == 0 ||
           strcmp(type, "application/x-yaml") == 0;
}

/* The body of a policy put as a JSON object: parsed from JSON, or from
 * YAML converted as the agent's configuration is (agent_yaml_to_json()).
 * NULL when answered. */
static json_t *policy_body(struct call *c)
{
    struct rems_buf json;
    char errmsg[REMS_ERRMSG_SIZE];
    char msg[REMS_ERRMSG_SIZE + 32];
    json_error_t jerr;
    json_t *o;
    int rv;

    if (!body_is_yaml(c)) {
        return api__parse_body_object(c);
    }
    rems_buf_init(&json);
    rv = agent_yaml_to_json(c->req->body, c->req->body_len, &json, errmsg);
    if (rv == REMS_ENOMEM || (rv == 0 && json.failed)) {
        rems_buf_close(&json);
        api__respond_error(c, 500, "internal", "out of memory", NULL);
        return NULL;
    }
    if (rv != 0) {
        rems_buf_close(&json);
        snprintf(msg, sizeof msg, "body: %s", errmsg);
        api__respond_error(c, 400, "bad_request", msg, "body");
        return NULL;
    }
    o = json_loadb(json.data, json.len, JSON_REJECT_DUPLICATES, &jerr);
    rems_buf_close(&json);
    if (!json_is_object(o)) {
        json_decref(o);
        api__respond_error(c, 400, "bad_request",
                           "body: the YAML document must be a mapping", "body");
        return NULL;
    }
    return o;
}

/* PUT /v1/policies/{key}: the body must be a valid policy document
 * (policy_parse_json(), the reconciler's own validator); it is stored as
 * compact JSON. A refusal names the field by its path and the rule. */
static void route_policy_put(struct call *c)
{
    json_t *o = policy_body(c);
    struct policy *p = NULL;
    char errmsg[REMS_ERRMSG_SIZE];
    char field[REMS_ERRMSG_SIZE];
    const char *colon;
    char *text;
    int rv;

    if (o == NULL) {
        return;
    }
    text = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(o);
    if (text == NULL) {
        api__respond_error(c, 500, "internal", "out of memory", NULL);
        return;
    }
    rv = policy_parse_json(text, strlen(text), &p, errmsg);
    policy_free(p);
    if (rv == REMS_ENOMEM) {
        free(text);
        api__respond_error(c, 500, "internal", "out of memory", NULL);
        return;
    }
    if (rv != 0) {
        free(text);
        /* "services[1].depends_on: unknown service \"db\"": the field is
         * the path before the first ": ". */
        colon = strstr(errmsg, ": ");
        snprintf(field, sizeof field, "%.*s",
                 colon != NULL ? (int)(colon - errmsg) : 4,
                 colon != NULL ? errmsg : "body");
        /* 'policy: unknown field "colour"': the field is "colour"; below
         * the top, "services[0].colour". */
        if (colon != NULL && strncmp(colon, ": unknown field \"", 17) == 0 &&
            strchr(colon + 17, '"') != NULL) {
            const char *name = colon + 17;
            int len = (int)(strchr(name, '"') - name);
            char path[REMS_ERRMSG_SIZE];
            snprintf(path, sizeof path, "%s", field);
            if (strcmp(path, "policy") == 0) {
                snprintf(field, sizeof field, "%.*s", len, name);
            } else {
                snprintf(field, sizeof field, "%s.%.*s", path, len, name);
            }
        }
        api__respond_error(c, 400, "bad_request", errmsg, field);
        return;
    }
    c->value = rems_strdup(text);
    free(text); /* jansson allocates with malloc. */
    if (c->value == NULL) {
        api__respond_error(c, 500, "internal", "out of memory", NULL);
        return;
    }
    c->kind = CALL_POLICY_PUT;
    api__do_write(c);
}

static bool parse_role(struct call *c, json_t *o, bool required)
{
    json_t *r = json_object_get(o, "role");
    const char *s;
    c->role = RAFT_VOTER;
    if (r == NULL) {
        if (required) {
            api__respond_error(c, 400, "bad_request",
                               "role is required: voter, standby or spare",
                               "role");
            return false;
        }
        return true;
    }
    s = json_string_value(r);
    if (s != NULL && strcmp(s, "voter") == 0) {
        c->role = RAFT_VOTER;
    } else if (s != NULL && strcmp(s, "standby") == 0) {
        c->role = RAFT_STANDBY;
    } else if (s != NULL && strcmp(s, "spare") == 0) {
        c->role = RAFT_SPARE;
    } else {
        api__respond_error(c, 400, "bad_request",
                           "role must be voter, standby or spare", "role");
        return false;
    }
    return true;
}

static bool parse_address_field(struct call *c,
                                json_t *o,
                                const char *field,
                                char *out)
{
    json_t *v = json_object_get(o, field);
    char host[CONFIG_ADDR_SIZE];
    uint16_t port;
    char msg[REMS_ERRMSG_SIZE];
    const char *s = json_string_value(v);
    if (s == NULL || strlen(s) >= CONFIG_ADDR_SIZE ||
        config_split_address(s, host, &port) != 0) {
        snprintf(msg, sizeof msg,
                 "%s is required: an IPv4 address and port, such as "
                 "127.0.0.1:7004",
                 field);
        api__respond_error(c, 400, "bad_request", msg, field);
        return false;
    }
    snprintf(out, CONFIG_ADDR_SIZE, "%s", s);
    return true;
}

static void route_member_add(struct call *c)
{
    json_t *o = api__parse_body_object(c);
    json_t *id;
    if (o == NULL) {
        return;
    }
    id = json_object_get(o, "id");
    if (!json_is_integer(id) || json_integer_value(id) < 1) {
        json_decref(o);
        api__respond_error(c, 400, "bad_request", "id must be an integer >= 1",
                           "id");
        return;
    }
    c->member_id = (uint64_t)json_integer_value(id);
    if (!parse_address_field(c, o, "raft_address", c->raft_address) ||
        !parse_address_field(c, o, "api_address", c->api_address) ||
        !parse_role(c, o, false)) {
        json_decref(o);
        return;
    }
    json_decref(o);
    c->kind = CALL_MEMBER_ADD;
    api__do_write(c);
}

static bool parse_id_segment(struct call *c, const char *s, size_t len)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf) {
        api__respond_error(c, 400, "bad_request",
                           "member id must be an integer", "id");
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (rems_parse_u64(buf, &c->member_id) != 0 || c->member_id == 0) {
        api__respond_error(c, 400, "bad_request",
                           "member id must be an integer >= 1", "id");
        return false;
    }
    return true;
}

/* An agent or command id from the path; 400 naming "id" otherwise. */
static bool parse_path_id(struct call *c, const char *s)
{
    size_t len = strlen(s);
    if (!statemachine_id_check(s, len)) {
        api__respond_error(
            c, 400, "bad_request",
            "the id must be 1 to 64 characters of A-Z a-z 0-9 _ . "
            ": -",
            "id");
        return false;
    }
    memcpy(c->id, s, len + 1);
    return true;
}

/* `after` of the agent and command lists: an id, at most 64 bytes. */
static bool parse_after_id(struct call *c)
{
    int rv =
        http_request_query(c->req, "after", c->after, STATEMACHINE_ID_MAX + 1);
    if (rv < 0) {
        api__respond_error(c, 400, "bad_request",
                           "after must be at most 64 bytes", "after");
        return false;
    }
    if (rv == 0) {
        c->after[0] = '\0';
    }
    return true;
}

static bool parse_online(struct call *c)
{
    char v[16];
    int rv = http_request_query(c->req, "online", v, sizeof v);
    c->online_filter = -1;
    if (rv == 0) {
        return true;
    }
    if (rv > 0 && strcmp(v, "true") == 0) {
        c->online_filter = 1;
    } else if (rv > 0 && strcmp(v, "false") == 0) {
        c->online_filter = 0;
    } else {
        api__respond_error(c, 400, "bad_request",
                           "online must be true or false", "online");
        return false;
    }
    return true;
}

/* `agent` and `state` of the command list. */
static bool parse_command_filters(struct call *c)
{
    char v[32];
    int rv;

    rv = http_request_query(c->req, "agent", c->agent, sizeof c->agent);
    if (rv < 0 ||
        (rv > 0 && !statemachine_id_check(c->agent, strlen(c->agent)))) {
        api__respond_error(
            c, 400, "bad_request",
            "agent must be an agent id: 1 to 64 characters of A-Z "
            "a-z 0-9 _ . : -",
            "agent");
        return false;
    }
    c->has_agent_filter = rv > 0;
    if (rv == 0) {
        c->agent[0] = '\0';
    }
    c->state_filter = -1;
    rv = http_request_query(c->req, "state", v, sizeof v);
    if (rv == 0) {
        return true;
    }
    if (rv > 0 && strcmp(v, "pending") == 0) {
        c->state_filter = STATEMACHINE_COMMAND_PENDING;
        return true;
    }
    if (rv > 0 && statemachine_command_outcome_parse(v, strlen(v),
                                                     &c->state_filter) == 0) {
        return true;
    }
    c->state_filter = -1;
    api__respond_error(
        c, 400, "bad_request",
        "state must be pending, acked, nacked, expired or cancelled", "state");
    return false;
}

/* `force` of DELETE /v1/commands/{id}. */
static bool parse_force(struct call *c)
{
    char v[16];
    int rv = http_request_query(c->req, "force", v, sizeof v);
    c->force = false;
    if (rv == 0 || (rv > 0 && strcmp(v, "false") == 0)) {
        return true;
    }
    if (rv > 0 && strcmp(v, "true") == 0) {
        c->force = true;
        return true;
    }
    api__respond_error(c, 400, "bad_request", "force must be true or false",
                       "force");
    return false;
}

/* Command writes take the usual write headers, but no If-Match. */
static bool parse_command_write_headers(struct call *c)
{
    if (!api__parse_write_headers(c)) {
        return false;
    }
    if (c->has_if_match) {
        api__respond_error(c, 400, "bad_request",
                           "If-Match does not apply to commands", "If-Match");
        return false;
    }
    return true;
}

/* A service name: 1 to 64 bytes of [A-Za-z0-9._:@-]. */
bool api__service_valid(const char *s, size_t len)
{
    size_t i;
    if (len == 0 || len > STATEMACHINE_NAME_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9');
        if (!alnum && strchr("._:@-", ch) == NULL) {
            return false;
        }
    }
    return true;
}

/* Validate the arguments of POST /v1/commands and append them to @value.
 * False when answered. */
static bool parse_command_args(struct call *c, json_t *args, json_t *value)
{
    const char *k;
    json_t *v;
    char msg[REMS_ERRMSG_SIZE];

    if (args == NULL || json_is_null(args)) {
        return true;
    }
    if (!json_is_object(args)) {
        api__respond_error(c, 400, "bad_request",
                           "args must be an object of strings", "args");
        return false;
    }
    if (json_object_size(args) > COMMAND_ARGS_MAX) {
        snprintf(msg, sizeof msg, "args has %zu entries, at most %d allowed",
                 json_object_size(args), COMMAND_ARGS_MAX);
        api__respond_error(c, 422, "unprocessable", msg, "args");
        return false;
    }
    json_object_foreach(args, k, v)
    {
        size_t klen = strlen(k);
        if (klen == 0 || klen > COMMAND_ARG_KEY_MAX) {
            snprintf(msg, sizeof msg,
                     "args: keys must be 1 to %d bytes, '%.40s%s' is %zu",
                     COMMAND_ARG_KEY_MAX, k, klen > 40 ? "..." : "", klen);
            api__respond_error(c, 422, "unprocessable", msg, "args");
            return false;
        }
        if (strcmp(k, "manifest") == 0) {
            api__respond_error(c, 422, "unprocessable",
                               "args: the key manifest is reserved (a manifest "
                               "goes in the manifest field of push_manifest)",
                               "args");
            return false;
        }
        if (!json_is_string(v)) {
            snprintf(msg, sizeof msg,
                     "args: the value of '%.40s%s' must be "
                     "a string",
                     k, klen > 40 ? "..." : "");
            api__respond_error(c, 400, "bad_request", msg, "args");
            return false;
        }
        if (json_string_length(v) > COMMAND_ARG_VALUE_MAX) {
            snprintf(msg, sizeof msg,
                     "args: the value of '%.40s%s' is %zu bytes, at most %d "
                     "allowed",
                     k, klen > 40 ? "..." : "", json_string_length(v),
                     COMMAND_ARG_VALUE_MAX);
            api__respond_error(c, 422, "unprocessable", msg, "args");
            return false;
        }
        json_object_set(value, k, v);
    }
    return true;
}

/* Copy an optional string field of at most @max bytes into @out (@max + 1
 * bytes). False when answered; *@present tells whether it was given. */
bool api__parse_string_field(struct call *c,
                             json_t *o,
                             const char *field,
                             size_t max,
                             char *out,
                             bool *present)
{
    json_t *v = json_object_get(o, field);
    char msg[REMS_ERRMSG_SIZE];
    *present = false;
    out[0] = '\0';
    if (v == NULL || json_is_null(v)) {
        return true;
    }
    if (!json_is_string(v)) {
        snprintf(msg, sizeof msg, "%s must be a string", field);
        api__respond_error(c, 400, "bad_request", msg, field);
        return false;
    }
    if (json_string_length(v) > max) {
        snprintf(msg, sizeof msg, "%s is %zu bytes, at most %zu allowed", field,
                 json_string_length(v), max);
        api__respond_error(c, 422, "unprocessable", msg, field);
        return false;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    *present = true;
    return true;
}

/* Check every field of an issue body, in a fixed order, and fill the call.
 * False when answered. */
static bool parse_command_body(struct call *c, json_t *o)
{
    static const char *const known[] = {"id",   "agent",    "action", "service",
                                        "args", "manifest", "ttl_ms", "reason"};
    const char *k;
    json_t *v;
    json_t *value;
    json_t *manifest;
    json_t *ttl;
    char msg[REMS_ERRMSG_SIZE];
    char *text;
    size_t len;
    size_t i;
    bool present;
    bool needs_service = false;
    bool push;

    json_object_foreach(o, k, v)
    {
        for (i = 0; i < REMS_ARRAY_SIZE(known); i++) {
            if (strcmp(k, known[i]) == 0) {
                break;
            }
        }
        if (i == REMS_ARRAY_SIZE(known)) {
            snprintf(msg, sizeof msg, "unknown field '%.64s'", k);
            api__respond_error(c, 400, "bad_request", msg, k);
            return false;
        }
    }
    if (!api__parse_string_field(c, o, "id", STATEMACHINE_ID_MAX, c->id,
                                 &present)) {
        return false;
    }
    if (present && !statemachine_id_check(c->id, strlen(c->id))) {
        api__respond_error(
            c, 400, "bad_request",
            "id must be 1 to 64 characters of A-Z a-z 0-9 _ . : -", "id");
        return false;
    }
    if (!present) {
        rems_id_random(c->id);
    }
    v = json_object_get(o, "agent");
    if (!json_is_string(v) ||
        !statemachine_id_check(json_string_value(v), json_string_length(v))) {
        api__respond_error(
            c, 400, "bad_request",
            "agent is required: an agent id, 1 to 64 characters of "
            "A-Z a-z 0-9 _ . : -",
            "agent");
        return false;
    }
    memcpy(c->agent, json_string_value(v), json_string_length(v) + 1);
    v = json_object_get(o, "action");
    if (!json_is_string(v)) {
        api__respond_error(c, 400, "bad_request",
                           "action is required: " COMMAND_ACTIONS_TEXT,
                           "action");
        return false;
    }
    for (i = 0; i < REMS_ARRAY_SIZE(command_actions); i++) {
        if (strcmp(json_string_value(v), command_actions[i].name) == 0) {
            needs_service = command_actions[i].needs_service;
            break;
        }
    }
    if (i == REMS_ARRAY_SIZE(command_actions)) {
        api__respond_error(c, 422, "unprocessable",
                           "action must be " COMMAND_ACTIONS_TEXT, "action");
        return false;
    }
    snprintf(c->action, sizeof c->action, "%s", command_actions[i].name);
    push = strcmp(c->action, "push_manifest") == 0;
    v = json_object_get(o, "service");
    if (v != NULL && !json_is_null(v) &&
        (!json_is_string(v) ||
         !api__service_valid(json_string_value(v), json_string_length(v)))) {
        api__respond_error(
            c, 400, "bad_request",
            "service must be a service name: 1 to 64 characters of "
            "A-Z a-z 0-9 . _ : @ -",
            "service");
        return false;
    }
    if (json_is_string(v)) {
        memcpy(c->service, json_string_value(v), json_string_length(v) + 1);
    } else if (needs_service) {
        snprintf(msg, sizeof msg, "service is required for action %s",
                 c->action);
        api__respond_error(c, 422, "unprocessable", msg, "service");
        return false;
    }
    value = json_object();
    if (value == NULL) {
        api__respond_error(c, 500, "internal", "out of memory", NULL);
        return false;
    }
    if (!parse_command_args(c, json_object_get(o, "args"), value)) {
        json_decref(value);
        return false;
    }
    manifest = json_object_get(o, "manifest");
    if (manifest != NULL && json_is_null(manifest)) {
        manifest = NULL;
    }
    if (manifest != NULL && !push) {
        json_decref(value);
        api__respond_error(c, 422, "unprocessable",
                           "manifest is only for action push_manifest",
                           "manifest");
        return false;
    }
    if (push && !json_is_object(manifest)) {
        json_decref(value);
        api__respond_error(
            c, manifest == NULL ? 422 : 400,
            manifest == NULL ? "unprocessable" : "bad_request",
            "manifest is required for push_manifest: a JSON object",
            "manifest");
        return false;
    }
    if (push) {
        len = json_dumpb(manifest, NULL, 0, JSON_COMPACT);
        if (len > COMMAND_MANIFEST_MAX) {
            json_decref(value);
            snprintf(msg, sizeof msg,
                     "manifest is %zu bytes serialized, at most %d allowed",
                     len, COMMAND_MANIFEST_MAX);
            api__respond_error(c, 422, "unprocessable", msg, "manifest");
            return false;
        }
        json_object_set(value, "manifest", manifest);
    }
    ttl = json_object_get(o, "ttl_ms");
    c->ttl_ms = COMMAND_TTL_DEFAULT_MS;
    if (ttl != NULL && !json_is_null(ttl)) {
        if (!json_is_integer(ttl)) {
            json_decref(value);
            api__respond_error(c, 400, "bad_request",
                               "ttl_ms must be an integer (milliseconds)",
                               "ttl_ms");
            return false;
        }
        if (json_integer_value(ttl) < 1 ||
            json_integer_value(ttl) > (json_int_t)STATEMACHINE_TTL_MAX_MS) {
            json_decref(value);
            api__respond_error(c, 422, "unprocessable",
                               "ttl_ms must be between 1 and 86400000 (a day)",
                               "ttl_ms");
            return false;
        }
        c->ttl_ms = (uint64_t)json_integer_value(ttl);
    }
    if (!api__parse_string_field(c, o, "reason", STATEMACHINE_REASON_MAX,
                                 c->reason, &c->has_reason)) {
        json_decref(value);
        return false;
    }
    text = json_dumps(value, JSON_COMPACT);
    json_decref(value);
    if (text == NULL) {
        api__respond_error(c, 500, "internal", "out of memory", NULL);
        return false;
    }
    len = strlen(text);
    if (len > STATEMACHINE_BLOB_MAX) {
        free(text);
        snprintf(msg, sizeof msg,
                 "args and manifest together are %zu bytes serialized, at "
                 "most %d can be stored",
                 len, STATEMACHINE_BLOB_MAX);
        api__respond_error(c, 422, "unprocessable", msg,
                           push ? "manifest" : "args");
        return false;
    }
    c->value = rems_strdup(text);
    free(text); /* jansson allocates with malloc. */
    if (c->value == NULL) {
        api__respond_error(c, 500, "internal", "out of memory", NULL);
        return false;
    }
    return true;
}

static void route_command_issue(struct call *c)
{
    json_t *o = api__parse_body_object(c);
    bool ok;
    if (o == NULL) {
        return;
    }
    ok = parse_command_body(c, o);
    json_decref(o);
    if (ok) {
        c->kind = CALL_COMMAND_ISSUE;
        api__do_write(c);
    }
}

void api__method_not_allowed(struct call *c)
{
    api__respond_error(c, 405, "method_not_allowed",
                       "this method is not allowed on this path", NULL);
}

static void route(struct call *c)
{
    const char *p = c->req->path;
    int m = c->req->method;

    if (strcmp(p, "/healthz") == 0) {
        json_t *body = json_object();
        json_object_set_new(body, "status", json_string("ok"));
        api__respond_json(c, 200, body, NULL, 0);
        return;
    }
    if (c->s->node == NULL) {
        api__respond_error(c, 503, "unavailable", "node is starting", NULL);
        return;
    }
    if (strcmp(p, "/readyz") == 0) {
        serve_readyz(c);
    } else if (strcmp(p, "/status") == 0) {
        serve_status(c);
    } else if (strcmp(p, "/metrics") == 0) {
        serve_metrics(c);
    } else if (strcmp(p, "/internal/read-index") == 0) {
        c->kind = CALL_READ_INDEX;
        c->wait.data = c;
        {
            int rv = cluster_node_read_index(c->s->node, &c->wait,
                                             read_index_cb);
            if (rv != 0) {
                api__respond_status(c, rv, "this node is not the leader");
            }
        }
    } else if (strcmp(p, "/v1/policies") == 0) {
        if (m != HTTP_GET) {
            api__method_not_allowed(c);
            return;
        }
        if (!api__parse_consistency(c) || !api__parse_limit(c)) {
            return;
        }
        if (http_request_query(c->req, "prefix", c->prefix, sizeof c->prefix) <
                0 ||
            http_request_query(c->req, "after", c->after, sizeof c->after) <
                0) {
            api__respond_error(c, 400, "bad_request",
                               "prefix and after must be at most 256 bytes",
                               "prefix");
            return;
        }
        c->kind = CALL_POLICY_LIST;
        api__do_read(c);
    } else if (strncmp(p, "/v1/policies/", 13) == 0) {
        if (!parse_key(c, p + 13)) {
            return;
        }
        if (m == HTTP_GET) {
            if (!api__parse_consistency(c)) {
                return;
            }
            c->kind = CALL_POLICY_GET;
            api__do_read(c);
        } else if (m == HTTP_PUT) {
            if (api__parse_write_headers(c)) {
                route_policy_put(c);
            }
        } else if (m == HTTP_DELETE) {
            if (api__parse_write_headers(c)) {
                c->kind = CALL_POLICY_DELETE;
                api__do_write(c);
            }
        } else {
            api__method_not_allowed(c);
        }
    } else if (strcmp(p, "/v1/audit") == 0) {
        char v[32];
        int rv;
        if (m != HTTP_GET) {
            api__method_not_allowed(c);
            return;
        }
        if (!api__parse_consistency(c) || !api__parse_limit(c)) {
            return;
        }
        rv = http_request_query(c->req, "after", v, sizeof v);
        if (rv < 0 || (rv > 0 && rems_parse_u64(v, &c->after_index) != 0)) {
            api__respond_error(
                c, 400, "bad_request",
                "after must be an index (a non-negative integer)", "after");
            return;
        }
        c->kind = CALL_AUDIT_LIST;
        api__do_read(c);
    } else if (strcmp(p, "/v1/members") == 0) {
        if (m == HTTP_GET) {
            serve_members(c);
        } else if (m == HTTP_POST) {
            if (api__parse_write_headers(c)) {
                route_member_add(c);
            }
        } else {
            api__method_not_allowed(c);
        }
    } else if (strncmp(p, "/v1/members/", 12) == 0) {
        const char *id = p + 12;
        const char *slash = strchr(id, '/');
        if (slash == NULL) {
            if (m != HTTP_DELETE) {
                api__method_not_allowed(c);
                return;
            }
            if (parse_id_segment(c, id, strlen(id))) {
                c->kind = CALL_MEMBER_REMOVE;
                api__do_write(c);
            }
        } else if (strcmp(slash, "/role") == 0) {
            json_t *o;
            if (m != HTTP_POST) {
                api__method_not_allowed(c);
                return;
            }
            if (!parse_id_segment(c, id, (size_t)(slash - id))) {
                return;
            }
            o = api__parse_body_object(c);
            if (o == NULL) {
                return;
            }
            if (!parse_role(c, o, true)) {
                json_decref(o);
                return;
            }
            json_decref(o);
            c->kind = CALL_MEMBER_ROLE;
            api__do_write(c);
        } else {
            api__respond_error(c, 404, "not_found", "no such path", NULL);
        }
    } else if (strcmp(p, "/v1/agents") == 0) {
        if (m != HTTP_GET) {
            api__method_not_allowed(c);
            return;
        }
        if (api__parse_consistency(c) && api__parse_limit(c) &&
            parse_after_id(c) && parse_online(c)) {
            c->kind = CALL_AGENT_LIST;
            api__do_read(c);
        }
    } else if (strncmp(p, "/v1/agents/", 11) == 0) {
        if (m != HTTP_GET) {
            api__method_not_allowed(c);
            return;
        }
        if (parse_path_id(c, p + 11) && api__parse_consistency(c)) {
            c->kind = CALL_AGENT_GET;
            api__do_read(c);
        }
    } else if (strcmp(p, "/v1/leases") == 0) {
        if (m != HTTP_GET) {
            api__method_not_allowed(c);
            return;
        }
        if (api__parse_consistency(c)) {
            c->kind = CALL_LEASE_LIST;
            api__do_read(c);
        }
    } else if (strcmp(p, "/v1/commands") == 0) {
        if (m == HTTP_GET) {
            if (api__parse_consistency(c) && api__parse_limit(c) &&
                parse_after_id(c) && parse_command_filters(c)) {
                c->kind = CALL_COMMAND_LIST;
                api__do_read(c);
            }
        } else if (m == HTTP_POST) {
            if (parse_command_write_headers(c)) {
                route_command_issue(c);
            }
        } else {
            api__method_not_allowed(c);
        }
    } else if (strncmp(p, "/v1/commands/", 13) == 0) {
        if (m != HTTP_GET && m != HTTP_DELETE) {
            api__method_not_allowed(c);
            return;
        }
        if (!parse_path_id(c, p + 13)) {
            return;
        }
        if (m == HTTP_GET) {
            if (api__parse_consistency(c)) {
                c->kind = CALL_COMMAND_GET;
                api__do_read(c);
            }
        } else if (parse_command_write_headers(c) && parse_force(c)) {
            c->kind = CALL_COMMAND_CANCEL;
            api__do_write(c);
        }
    } else if (strcmp(p, "/v1/faults") == 0) {
        api__faults_serve(c);
    } else if (strcmp(p, "/v1/leadership/transfer") == 0) {
        json_t *o;
        json_t *id;
        if (m != HTTP_POST) {
            api__method_not_allowed(c);
            return;
        }
        c->member_id = 0;
        if (c->req->body_len > 0) {
            o = api__parse_body_object(c);
            if (o == NULL) {
                return;
            }
            id = json_object_get(o, "id");
            if (id != NULL &&
                (!json_is_integer(id) || json_integer_value(id) < 0)) {
                json_decref(o);
                api__respond_error(c, 400, "bad_request",
                                   "id must be a member id (0: any voter)",
                                   "id");
                return;
            }
            if (id != NULL) {
                c->member_id = (uint64_t)json_integer_value(id);
            }
            json_decref(o);
        }
        c->kind = CALL_TRANSFER;
        api__do_write(c);
    } else if (!api__reconcile_route(c)) {
        api__respond_error(c, 404, "not_found", "no such path", NULL);
    }
}

static void handler(struct http_request *req, void *data)
{
    struct api_server *s = data;
    struct call *c = rems_calloc(1, sizeof *c);
    const char *trace;

    if (c == NULL) {
        http_request_respond(req, 503, NULL, 0, NULL, 0);
        return;
    }
    c->s = s;
    c->req = req;
    c->started_ms = rems_mono_ms();
    c->state_filter = -1;
    c->online_filter = -1;
    trace = http_request_header(req, "x-rems-trace-id");
    if (trace != NULL && rems_id_valid(trace)) {
        snprintf(c->trace_id, sizeof c->trace_id, "%s", trace);
    } else {
        rems_id_random(c->trace_id);
    }
    route(c);
}

/* ------------------------------------------------------------------ */
/* Lifecycle.                                                           */

int api_server_start(uv_loop_t *loop,
                     const struct config *cfg,
                     struct api_server **out,
                     char *errmsg)
{
    struct api_server *s;
    struct http_server_options opts;
    char host[CONFIG_ADDR_SIZE];
    uint16_t port;
    int rv;

    if (config_split_address(cfg->api_address, host, &port) != 0) {
        rems_errmsgf(errmsg, "api_address: %s is not IPv4:port",
                     cfg->api_address);
        return REMS_ECONFIG;
    }
    s = rems_calloc(1, sizeof *s);
    if (s == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    s->loop = loop;
    s->cfg = *cfg;
    memset(&opts, 0, sizeof opts);
    opts.host = host;
    opts.port = port;
    opts.max_body = cfg->max_body_bytes;
    opts.handler = handler;
    opts.data = s;
    rv = http_server_start(loop, &opts, &s->http, errmsg);
    if (rv != 0) {
        rems_free(s);
        return rv;
    }
    *out = s;
    return 0;
}

void api_server_attach(struct api_server *s, struct cluster_node *node)
{
    s->node = node;
}

static void http_closed_cb(void *data)
{
    struct api_server *s = data;
    api_close_cb cb = s->close_cb;
    void *cb_data = s->close_data;
    rems_free(s);
    if (cb != NULL) {
        cb(cb_data);
    }
}

void api_server_stop(struct api_server *s, api_close_cb cb, void *data)
{
    s->close_cb = cb;
    s->close_data = data;
    http_server_stop(s->http, http_closed_cb, s);
}
