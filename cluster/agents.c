/* The leader's side of the agent links: the TLS listener, one connection
 * per agent, registration and leases, the command dispatcher and the
 * expiry of leases and commands.
 *
 * Every node listens on agent_address (when configured). A node that is not
 * the ready leader answers an agent's hello with a redirect to the leader's
 * agent address (from the replicated member table) and closes. The ready
 * leader:
 *
 *   hello      -> the certificate's id must be the hello's agent_id; an
 *                 AGENT_REGISTER entry when the agent is new or its labels
 *                 or node changed, a LEASE_GRANT entry unless this leader
 *                 already holds a lease for it, then welcome; then every
 *                 pending command of the agent is sent.
 *   heartbeat  -> the lease is renewed in memory (leases.c); heartbeat_ack
 *                 with the remaining time.
 *   report     -> the agent's service states are merged and replicated as
 *                 one AGENT_REPORT entry at a time (later changes coalesce).
 *   ack / nack -> a COMMAND_RESOLVE entry (acked / nacked); a nack
 *                 "duplicate" means the agent executed the command earlier
 *                 (its ack was lost): recorded as acked, marked duplicate.
 *
 * Commands are sent only once their COMMAND_ISSUE entry is applied on the
 * ready leader (the apply hook, or the periodic scan that also covers
 * reconnects and commands issued under an earlier leader), with the term
 * of the sending leader and ttl_remaining_ms computed by ADR 0004.
 * A periodic sweep writes LEASE_REVOKE "expired" for leases not renewed in
 * time and COMMAND_RESOLVE "expired" for pending commands past their
 * deadline plus max_clock_skew_ms.
 *
 * When this node stops being the ready leader, every agent connection is
 * closed (agents reconnect and are redirected) and the lease table is
 * forgotten: the next leader loads the replicated leases with an extra
 * election timeout (leases.h, invariant 8).
 *
 * Loop thread only. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "agentproto/proto.h"
#include "agentproto/tls.h"
#include "cluster/leases.h"
#include "cluster/node_int.h"
#include "common/assert.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/util.h"
#include "statemachine/statemachine.h"
#include "storage/storage.h"

/* How often the sweep runs (expiry, resend). */
#define SWEEP_MS 200
/* An agent that sent no hello this long after connecting is dropped. */
#define HELLO_TIMEOUT_MS 10000
/* Pending commands looked at per sweep. */
#define SWEEP_COMMANDS_MAX 4096
/* Retry hint to agents that reached a node without a ready leader. */
#define RETRY_NO_LEADER_MS 500

enum conn_state {
    CONN_HANDSHAKE = 1, /* TLS handshake running */
    CONN_HELLO,         /* waiting for the hello */
    CONN_REGISTERING,   /* register / grant entries in flight */
    CONN_ACTIVE,        /* welcomed */
    CONN_CLOSING,       /* tls_stream_close() called */
};

struct agent_conn {
    rems_queue queue; /* In agents.conns. */
    struct cluster_node *node;
    struct tls_stream *stream;
    struct proto_reader reader;
    int state;
    unsigned refs; /* Proposals and the stream that point here. */
    uint64_t opened_ms;
    char peer[64];                    /* "ip:port" of the agent */
    char id[STATEMACHINE_ID_MAX + 1]; /* from the certificate */
    char *labels;                     /* canonical JSON of the hello's */
    json_t *services;                 /* service -> status object */
    bool report_inflight;
    bool report_dirty;
    uint64_t hb_seen;
    /* Commands sent on this connection and not yet resolved. */
    char (*sent)[STATEMACHINE_ID_MAX + 1];
    size_t n_sent;
    size_t cap_sent;
};

/* A proposal made for a connection (or, with conn NULL, by the sweep). */
struct agent_write {
    struct cluster_write w;
    struct cluster_node *node;
    struct agent_conn *conn;
    int kind;
    char id[STATEMACHINE_ID_MAX + 1]; /* agent or command id */
};

enum write_kind {
    WRITE_REGISTER = 1,
    WRITE_GRANT,
    WRITE_REPORT,
    WRITE_RESOLVE,
    WRITE_EXPIRE_LEASE,
    WRITE_EXPIRE_COMMAND,
};

/* One frame on its way out. */
struct agent_frame {
    struct tls_write req;
    struct agent_conn *conn;
};

struct cluster_agents {
    struct cluster_node *node;
    struct tls_context *tls;
    uv_tcp_t listener;
    uv_timer_t sweep;
    int handles_open;
    bool listening;
    bool closing;
    bool active; /* This node is the ready leader. */
    uint64_t term;
    rems_queue conns;
    unsigned n_conns;
    struct leases leases;
    /* Ids with an expiry (lease or command) proposal in flight. */
    char (*expiring)[STATEMACHINE_ID_MAX + 1];
    size_t n_expiring;
    size_t cap_expiring;
    struct cluster_agent_metrics metrics;
};

static void conn_close(struct agent_conn *c, const char *why);
static void conn_send_pending(struct agent_conn *c);

/* ------------------------------------------------------------------ */
/* Small helpers.                                                       */

static bool id_set_has(char (*set)[STATEMACHINE_ID_MAX + 1],
                       size_t n,
                       const char *id,
                       size_t *pos)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (strcmp(set[i], id) == 0) {
            if (pos != NULL) {
                *pos = i;
            }
            return true;
        }
    }
    return false;
}

static int id_set_add(char (**set)[STATEMACHINE_ID_MAX + 1],
                      size_t *n,
                      size_t *cap,
                      const char *id)
{
    if (id_set_has(*set, *n, id, NULL)) {
        return 0;
    }
    if (*n == *cap) {
        size_t ncap = *cap == 0 ? 8 : *cap * 2;
        void *p = rems_realloc(*set, ncap * sizeof **set);
        if (p == NULL) {
            return REMS_ENOMEM;
        }
        *set = p;
        *cap = ncap;
    }
    snprintf((*set)[*n], sizeof **set, "%s", id);
    (*n)++;
    return 0;
}

static void id_set_del(char (*set)[STATEMACHINE_ID_MAX + 1],
                       size_t *n,
                       const char *id)
{
    size_t pos;
    if (id_set_has(set, *n, id, &pos)) {
        memmove(set[pos], set[*n - 1], sizeof *set);
        (*n)--;
    }
}

static void log_conn(struct agent_conn *c,
                     enum rems_log_level level,
                     const char *event,
                     const char *msg)
{
    struct rems_log_line l;
    rems_log_begin(&l, level, event);
    if (c->id[0] != '\0') {
        rems_log_str(&l, "agent", c->id);
    }
    rems_log_str(&l, "peer", c->peer);
    if (msg != NULL) {
        rems_log_str(&l, "msg", msg);
    }
    rems_log_end(&l);
}

static struct agent_conn *conn_find(struct cluster_agents *a, const char *id)
{
    rems_queue *q;
    REMS_QUEUE_FOREACH(q, &a->conns)
    {
        struct agent_conn *c = REMS_QUEUE_DATA(q, struct agent_conn, queue);
        if (c->state != CONN_CLOSING && strcmp(c->id, id) == 0) {
            return c;
        }
    }
    return NULL;
}

static void conn_unref(struct agent_conn *c)
{
    REMS_ASSERT(c->refs > 0);
    if (--c->refs > 0) {
        return;
    }
    REMS_ASSERT(c->state == CONN_CLOSING);
    proto_reader_close(&c->reader);
    json_decref(c->services);
    rems_free(c->labels);
    rems_free(c->sent);
    rems_free(c);
}

/* ------------------------------------------------------------------ */
/* Frames out.                                                          */

static void frame_cb(struct tls_write *req, int status)
{
    struct agent_frame *f = req->data;
    struct agent_conn *c = f->conn;
    (void)status; /* A failed write also fails the read side: closed there. */
    rems_free(f);
    conn_unref(c);
}

static int conn_send(struct agent_conn *c, const struct proto_msg *m)
{
    struct cluster_agents *a = c->node->agents;
    char errmsg[REMS_ERRMSG_SIZE];
    struct agent_frame *f;
    struct rems_buf b;
    int rv;

    if (c->state == CONN_CLOSING) {
        return REMS_ESHUTDOWN;
    }
    rems_buf_init(&b);
    rv = proto_msg_encode(m, a->node->cfg.agent_max_frame_bytes, &b, errmsg);
    if (rv != 0) {
        rems_buf_close(&b);
        log_conn(c, REMS_LOG_ERROR, "agent_send_failed", errmsg);
        return rv;
    }
    f = rems_malloc(sizeof *f);
    if (f == NULL) {
        rems_buf_close(&b);
        return REMS_ENOMEM;
    }
    f->req.data = f;
    f->conn = c;
    rv = tls_stream_write(c->stream, &f->req, b.data, b.len, frame_cb);
    rems_buf_close(&b);
    if (rv != 0) {
        rems_free(f);
        return rv;
    }
    c->refs++;
    return 0;
}

static void send_error(struct agent_conn *c, int code, const char *msg)
{
    struct proto_msg m = {0};
    m.type = PROTO_ERROR;
    m.error.code = code;
    m.error.message.p = msg;
    m.error.message.len = strlen(msg) < PROTO_MESSAGE_MAX ? strlen(msg)
                                                          : PROTO_MESSAGE_MAX;
    conn_send(c, &m);
}

/* ------------------------------------------------------------------ */
/* Proposals.                                                           */

static void write_cb(struct cluster_write *w,
                     int status,
                     const struct statemachine_result *res);

static int propose(struct cluster_node *n,
                   struct agent_conn *c,
                   int kind,
                   const char *id,
                   struct statemachine_entry *e)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct agent_write *aw = rems_calloc(1, sizeof *aw);
    int rv;

    if (aw == NULL) {
        return REMS_ENOMEM;
    }
    aw->node = n;
    aw->conn = c;
    aw->kind = kind;
    snprintf(aw->id, sizeof aw->id, "%s", id);
    aw->w.data = aw;
    e->time_ms = rems_wall_ms();
    if (e->requested_by == NULL) {
        e->requested_by = "remsd";
        e->requested_by_len = 5;
    }
    rv = cluster_node_propose(n, &aw->w, e, write_cb, errmsg);
    if (rv != 0) {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_WARN, "agent_propose_failed");
        rems_log_str(&l, "entry", statemachine_entry_type_name(e->type));
        rems_log_str(&l, "id", id);
        rems_log_str(&l, "error", errmsg);
        rems_log_end(&l);
        rems_free(aw);
        return rv;
    }
    if (c != NULL) {
        c->refs++;
    }
    return 0;
}

static int propose_grant(struct agent_conn *c)
{
    struct cluster_node *n = c->node;
    struct statemachine_entry e;
    memset(&e, 0, sizeof e);
    e.type = STATEMACHINE_ENTRY_LEASE_GRANT;
    e.reason = "agent connected";
    e.reason_len = strlen(e.reason);
    e.agent_id = c->id;
    e.agent_id_len = strlen(c->id);
    e.ttl_ms = n->cfg.lease_ttl_ms;
    e.node_id = n->cfg.node_id;
    return propose(n, c, WRITE_GRANT, c->id, &e);
}

static void welcome(struct agent_conn *c)
{
    struct cluster_node *n = c->node;
    struct proto_msg m = {0};
    m.type = PROTO_WELCOME;
    m.welcome.version = PROTO_VERSION;
    m.welcome.node_id = n->cfg.node_id;
    m.welcome.term = n->agents->term;
    m.welcome.lease_ttl_ms = n->cfg.lease_ttl_ms;
    m.welcome.heartbeat_interval_ms = n->cfg.agent_heartbeat_ms;
    if (conn_send(c, &m) != 0) {
        conn_close(c, "welcome could not be sent");
        return;
    }
    c->state = CONN_ACTIVE;
    n->agents->metrics.connected++;
    log_conn(c, REMS_LOG_INFO, "agent_welcomed", NULL);
    conn_send_pending(c);
}

static void propose_report(struct agent_conn *c)
{
    struct statemachine_entry e;
    char *text;
    int rv;

    if (c->report_inflight || c->state != CONN_ACTIVE) {
        c->report_dirty = true;
        return;
    }
    text = json_dumps(c->services, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    memset(&e, 0, sizeof e);
    e.type = STATEMACHINE_ENTRY_AGENT_REPORT;
    e.reason = "service states reported";
    e.reason_len = strlen(e.reason);
    e.agent_id = c->id;
    e.agent_id_len = strlen(c->id);
    e.value = text;
    e.value_len = strlen(text);
    rv = propose(c->node, c, WRITE_REPORT, c->id, &e);
    free(text);
    if (rv != 0) {
        c->report_dirty = true; /* The sweep tries again. */
        return;
    }
    c->report_dirty = false;
    c->report_inflight = true;
}

static void write_cb(struct cluster_write *w,
                     int status,
                     const struct statemachine_result *res)
{
    struct agent_write *aw = w->data;
    struct agent_conn *c = aw->conn;
    struct cluster_node *n = NULL;
    struct cluster_agents *a = NULL;
    bool closing = c != NULL && c->state == CONN_CLOSING;

    if (c != NULL) {
        n = c->node;
    }
    switch (aw->kind) {
        case WRITE_REGISTER:
            if (closing) {
                break;
            }
            if (status != 0 || res->code != 0) {
                conn_close(c, "registration failed");
                break;
            }
            if (propose_grant(c) != 0) {
                conn_close(c, "lease grant failed");
            }
            break;
        case WRITE_GRANT:
            if (closing) {
                break;
            }
            if (status != 0 || res->code != 0) {
                conn_close(c, "lease grant failed");
                break;
            }
            if (c->state == CONN_REGISTERING) {
                welcome(c);
            }
            break;
        case WRITE_REPORT:
            if (closing) {
                break;
            }
            c->report_inflight = false;
            if (status != 0) {
                c->report_dirty = true;
            }
            if (c->report_dirty) {
                propose_report(c);
            }
            break;
        case WRITE_RESOLVE:
        case WRITE_EXPIRE_LEASE:
        case WRITE_EXPIRE_COMMAND:
            break;
    }
    if (aw->kind == WRITE_EXPIRE_LEASE || aw->kind == WRITE_EXPIRE_COMMAND) {
        n = aw->node;
        a = n->agents;
        if (a != NULL) {
            id_set_del(a->expiring, &a->n_expiring, aw->id);
            if (aw->kind == WRITE_EXPIRE_LEASE && status != 0) {
                leases_unmark(&a->leases, aw->id);
            }
        }
    }
    if (c != NULL) {
        conn_unref(c);
    }
    rems_free(aw);
}

/* ------------------------------------------------------------------ */
/* Commands out.                                                        */

static int action_of(const char *name, size_t len)
{
    int i;
    for (i = 1; i < PROTO_ACTION_NR; i++) {
        const char *s = proto_action_name(i);
        if (strlen(s) == len && memcmp(s, name, len) == 0) {
            return i;
        }
    }
    return PROTO_ACTION_UNKNOWN;
}

/* Send @cmd on @c unless it was sent already or its time is spent. */
static void send_command(struct agent_conn *c,
                         const struct statemachine_command *cmd)
{
    struct cluster_node *n = c->node;
    struct cluster_agents *a = n->agents;
    struct proto_msg m = {0};
    struct proto_kv *kv = NULL;
    size_t n_kv = 0;
    char id[STATEMACHINE_ID_MAX + 1];
    char *manifest = NULL;
    json_t *args = NULL;
    uint64_t ttl;
    json_error_t jerr;
    int rv;

    snprintf(id, sizeof id, "%.*s", (int)cmd->id_len, cmd->id);
    /* raft may have stepped down since the last tick: ask it, not the
     * flag the tick keeps (invariant 1: only the leader sends). */
    if (raft_state(&n->raft) != RAFT_LEADER ||
        raft_current_term(&n->raft) != a->term) {
        return;
    }
    /* Only to an agent whose lease is live: one whose lease ran out may be
     * stalled with unread data, and the sweep is about to revoke it. */
    if (leases_remaining(&a->leases, c->id, rems_mono_ms(), &ttl) != 0 ||
        ttl == 0) {
        return;
    }
    if (c->state != CONN_ACTIVE ||
        id_set_has(c->sent, c->n_sent, id, NULL) ||
        id_set_has(a->expiring, a->n_expiring, id, NULL)) {
        return;
    }
    if (!leases_command_ttl(cmd->deadline_ms, rems_wall_ms(),
                            n->cfg.max_clock_skew_ms, n->cfg.send_margin_ms,
                            PROTO_DURATION_MAX_MS, &ttl)) {
        return; /* Expired by the sweep once past deadline + skew. */
    }
    m.type = PROTO_COMMAND;
    m.command.id.p = cmd->id;
    m.command.id.len = cmd->id_len;
    m.command.term = a->term;
    m.command.ttl_remaining_ms = ttl;
    m.command.action = action_of(cmd->action, cmd->action_len);
    m.command.service.p = cmd->service;
    m.command.service.len = cmd->service_len;
    if (cmd->args_len > 0) {
        args = json_loadb(cmd->args, cmd->args_len, 0, &jerr);
    }
    if (json_is_object(args)) {
        const char *k;
        json_t *v;
        kv = rems_calloc(json_object_size(args) + 1, sizeof *kv);
        if (kv == NULL) {
            goto out;
        }
        json_object_foreach(args, k, v)
        {
            if (strcmp(k, "manifest") == 0) {
                manifest = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
                continue;
            }
            if (!json_is_string(v)) {
                continue;
            }
            kv[n_kv].key.p = k;
            kv[n_kv].key.len = strlen(k);
            kv[n_kv].value.p = json_string_value(v);
            kv[n_kv].value.len = json_string_length(v);
            n_kv++;
        }
    }
    m.command.args = kv;
    m.command.n_args = n_kv;
    if (manifest != NULL) {
        m.command.manifest.p = manifest;
        m.command.manifest.len = strlen(manifest);
    }
    rv = conn_send(c, &m);
    if (rv == 0) {
        struct rems_log_line l;
        if (id_set_add(&c->sent, &c->n_sent, &c->cap_sent, id) != 0) {
            conn_close(c, "out of memory");
            goto out;
        }
        a->metrics.commands_sent++;
        rems_log_begin(&l, REMS_LOG_INFO, "command_sent");
        rems_log_str(&l, "command", id);
        rems_log_str(&l, "agent", c->id);
        rems_log_u64(&l, "term", a->term);
        rems_log_u64(&l, "ttl_remaining_ms", m.command.ttl_remaining_ms);
        rems_log_strn(&l, "trace_id", cmd->trace_id, cmd->trace_id_len);
        rems_log_end(&l);
    } else if (rv == REMS_EINVAL || rv == REMS_ETOOBIG) {
        /* The stored command cannot be sent as it is: resolve it. */
        struct statemachine_entry e;
        memset(&e, 0, sizeof e);
        e.type = STATEMACHINE_ENTRY_COMMAND_RESOLVE;
        e.reason = "the command cannot be encoded for the agent";
        e.reason_len = strlen(e.reason);
        e.agent_id = c->id;
        e.agent_id_len = strlen(c->id);
        e.command_id = cmd->id;
        e.command_id_len = cmd->id_len;
        e.outcome = "nacked";
        e.outcome_len = 6;
        e.value = "{\"reason\":\"failed\",\"message\":\"not encodable\"}";
        e.value_len = strlen(e.value);
        propose(n, NULL, WRITE_RESOLVE, id, &e);
    }
out:
    free(manifest);
    json_decref(args);
    rems_free(kv);
}

struct pending_scan {
    struct agent_conn *conn;
};

static int visit_pending_for_conn(void *data,
                                  const struct statemachine_command *cmd)
{
    struct pending_scan *ps = data;
    send_command(ps->conn, cmd);
    return 0;
}

static void conn_send_pending(struct agent_conn *c)
{
    struct storage_txn *t;
    struct pending_scan ps = {c};
    char errmsg[REMS_ERRMSG_SIZE];
    bool more = false;

    if (storage_txn_begin(c->node->storage, false, &t, errmsg) != 0) {
        return;
    }
    statemachine_command_list(t, c->id, strlen(c->id),
                              STATEMACHINE_COMMAND_PENDING, "", 0,
                              SWEEP_COMMANDS_MAX, visit_pending_for_conn, &ps,
                              &more, errmsg);
    storage_txn_abort(t);
}

/* ------------------------------------------------------------------ */
/* Frames in.                                                           */

static void redirect(struct agent_conn *c)
{
    struct cluster_node *n = c->node;
    struct proto_msg m = {0};
    struct statemachine_member mem;
    struct storage_txn *t;
    char errmsg[REMS_ERRMSG_SIZE];
    char addr[STATEMACHINE_ADDR_MAX + 1] = "";

    if (n->leader_id != 0 && n->leader_id != n->cfg.node_id &&
        storage_txn_begin(n->storage, false, &t, errmsg) == 0) {
        if (statemachine_member_get(t, n->leader_id, &mem, errmsg) == 0) {
            snprintf(addr, sizeof addr, "%s", mem.agent_address);
        }
        storage_txn_abort(t);
    }
    if (n->leader_id == n->cfg.node_id) {
        /* Leader, not yet ready: come back here shortly. */
        snprintf(addr, sizeof addr, "%s", n->cfg.agent_address);
    }
    m.type = PROTO_REDIRECT;
    m.redirect.leader_address.p = addr;
    m.redirect.leader_address.len = strlen(addr);
    m.redirect.leader_id = addr[0] != '\0' ? n->leader_id : 0;
    m.redirect.term = n->term;
    m.redirect.retry_after_ms = addr[0] != '\0' && n->leader_id != n->cfg.node_id
                                    ? 0
                                    : RETRY_NO_LEADER_MS;
    n->agents->metrics.redirects++;
    conn_send(c, &m);
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "agent_redirected");
        rems_log_str(&l, "agent", c->id);
        rems_log_str(&l, "peer", c->peer);
        rems_log_str(&l, "leader_address", addr);
        rems_log_u64(&l, "leader_id", m.redirect.leader_id);
        rems_log_end(&l);
    }
    conn_close(c, NULL);
}

/* JSON of a string map, with sorted keys (NULL on ENOMEM). */
static char *kv_json(const struct proto_kv *kv, size_t n)
{
    json_t *o = json_object();
    char *text;
    size_t i;
    if (o == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        char key[PROTO_LABEL_KEY_MAX + 1];
        snprintf(key, sizeof key, "%.*s", (int)kv[i].key.len, kv[i].key.p);
        json_object_set_new(o, key,
                            json_stringn(kv[i].value.p, kv[i].value.len));
    }
    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (text == NULL) {
        return NULL;
    }
    /* Into the rems heap, so that one allocator owns it. */
    {
        char *copy = rems_strdup(text);
        free(text);
        return copy;
    }
}

static json_t *service_json(const struct proto_service *s)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "state", json_string(proto_state_name(s->state)));
    json_object_set_new(o, "generation", json_integer((json_int_t)s->generation));
    json_object_set_new(o, "health", json_string(proto_health_name(s->health)));
    json_object_set_new(o, "ready", json_boolean(s->ready));
    if (s->has_exit_code) {
        json_object_set_new(o, "exit_code", json_integer(s->exit_code));
    }
    json_object_set_new(o, "since_ms", json_integer((json_int_t)s->since_ms));
    if (s->message.len > 0) {
        json_object_set_new(o, "message",
                            json_stringn(s->message.p, s->message.len));
    }
    return o;
}

static int merge_services(struct agent_conn *c,
                          const struct proto_service *items,
                          size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        char name[PROTO_SERVICE_MAX + 1];
        json_t *o = service_json(&items[i]);
        if (o == NULL) {
            return REMS_ENOMEM;
        }
        snprintf(name, sizeof name, "%.*s", (int)items[i].service.len,
                 items[i].service.p);
        if (json_object_set_new(c->services, name, o) != 0) {
            return REMS_ENOMEM;
        }
    }
    return 0;
}

static void on_hello(struct agent_conn *c, const struct proto_hello *h)
{
    struct cluster_node *n = c->node;
    struct cluster_agents *a = n->agents;
    struct agent_conn *old;
    struct statemachine_agent ag;
    struct storage_txn *t;
    char errmsg[REMS_ERRMSG_SIZE];
    uint64_t version;
    bool same = false;
    uint64_t remaining;

    if (h->agent_id.len != strlen(c->id) ||
        memcmp(h->agent_id.p, c->id, h->agent_id.len) != 0) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "hello.agent_id \"%.*s\" is not the certificate's id "
                 "\"%s\"",
                 (int)(h->agent_id.len > 64 ? 64 : h->agent_id.len),
                 h->agent_id.p, c->id);
        a->metrics.refused++;
        log_conn(c, REMS_LOG_WARN, "agent_refused", msg);
        send_error(c, PROTO_ERR_UNAUTHORIZED, msg);
        conn_close(c, NULL);
        return;
    }
    if (proto_version_negotiate(h->version, &version, errmsg) != 0) {
        log_conn(c, REMS_LOG_WARN, "agent_refused", errmsg);
        send_error(c, PROTO_ERR_UNSUPPORTED_VERSION, errmsg);
        conn_close(c, NULL);
        return;
    }
    a->metrics.hellos++;
    if (!a->active) {
        redirect(c);
        return;
    }
    old = conn_find(a, c->id);
    if (old != NULL && old != c) {
        log_conn(old, REMS_LOG_INFO, "agent_replaced",
                 "the agent connected again");
        conn_close(old, NULL);
    }
    c->labels = kv_json(h->labels, h->n_labels);
    if (c->labels == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    if (h->has_services && merge_services(c, h->services, h->n_services) != 0) {
        conn_close(c, "out of memory");
        return;
    }
    c->state = CONN_REGISTERING;
    if (storage_txn_begin(n->storage, false, &t, errmsg) == 0) {
        same = statemachine_agent_get(t, c->id, strlen(c->id), &ag, errmsg) ==
                   0 &&
               ag.node_id == n->cfg.node_id && ag.online &&
               ag.labels_len == strlen(c->labels) &&
               memcmp(ag.labels, c->labels, ag.labels_len) == 0;
        storage_txn_abort(t);
    }
    if (same && leases_remaining(&a->leases, c->id, rems_mono_ms(),
                                 &remaining) == 0 &&
        remaining > 0) {
        /* Known, unchanged, and its lease is held by this leader. */
        leases_renew(&a->leases, c->id, rems_mono_ms());
        welcome(c);
    } else if (same) {
        if (propose_grant(c) != 0) {
            conn_close(c, "lease grant failed");
            return;
        }
    } else {
        struct statemachine_entry e;
        memset(&e, 0, sizeof e);
        e.type = STATEMACHINE_ENTRY_AGENT_REGISTER;
        e.reason = "agent connected";
        e.reason_len = strlen(e.reason);
        e.agent_id = c->id;
        e.agent_id_len = strlen(c->id);
        e.value = c->labels;
        e.value_len = strlen(c->labels);
        e.node_id = n->cfg.node_id;
        if (propose(n, c, WRITE_REGISTER, c->id, &e) != 0) {
            conn_close(c, "registration failed");
            return;
        }
    }
    if (h->has_services && h->n_services > 0) {
        c->report_dirty = true; /* Replicated once welcomed. */
    }
}

static void on_heartbeat(struct agent_conn *c, const struct proto_heartbeat *h)
{
    struct cluster_agents *a = c->node->agents;
    struct proto_msg m = {0};
    uint64_t now = rems_mono_ms();
    uint64_t remaining = 0;

    if (leases_renew(&a->leases, c->id, now) != 0) {
        /* The lease expired (and was revoked) while the agent still
         * talks: grant a new one. */
        if (propose_grant(c) != 0) {
            conn_close(c, "lease grant failed");
            return;
        }
    }
    leases_remaining(&a->leases, c->id, now, &remaining);
    c->hb_seen++;
    a->metrics.heartbeats++;
    m.type = PROTO_HEARTBEAT_ACK;
    m.heartbeat_ack.seq = h->seq;
    m.heartbeat_ack.term = a->term;
    m.heartbeat_ack.lease_remaining_ms =
        remaining > PROTO_DURATION_MAX_MS ? PROTO_DURATION_MAX_MS : remaining;
    conn_send(c, &m);
}

static void on_resolve(struct agent_conn *c, const struct proto_msg *m)
{
    struct cluster_node *n = c->node;
    struct cluster_agents *a = n->agents;
    const struct proto_str *id = m->type == PROTO_ACK ? &m->ack.id
                                                       : &m->nack.id;
    struct statemachine_entry e;
    char cid[STATEMACHINE_ID_MAX + 1];
    json_t *o = NULL;
    char *text = NULL;
    const char *outcome = "acked";

    snprintf(cid, sizeof cid, "%.*s", (int)id->len, id->p);
    if (m->type == PROTO_ACK) {
        a->metrics.acks++;
        if (m->ack.result_kind == PROTO_RESULT_TEXT) {
            o = json_stringn(m->ack.result_text.p, m->ack.result_text.len);
        } else if (m->ack.result_kind == PROTO_RESULT_MAP) {
            size_t i;
            o = json_object();
            for (i = 0; o != NULL && i < m->ack.n_result; i++) {
                char key[PROTO_ARG_KEY_MAX + 1];
                snprintf(key, sizeof key, "%.*s",
                         (int)m->ack.result[i].key.len,
                         m->ack.result[i].key.p);
                json_object_set_new(o, key,
                                    json_stringn(m->ack.result[i].value.p,
                                                 m->ack.result[i].value.len));
            }
        }
    } else {
        a->metrics.nacks++;
        o = json_object();
        if (o != NULL) {
            json_object_set_new(
                o, "reason",
                json_string(proto_nack_reason_name(m->nack.reason)));
            json_object_set_new(o, "message",
                                json_stringn(m->nack.message.p,
                                             m->nack.message.len));
        }
        if (m->nack.reason == PROTO_NACK_DUPLICATE) {
            /* Executed before (an earlier send), its ack lost: the command
             * ran once, so it is acked, and marked as such. */
            json_object_set_new(o, "duplicate", json_true());
        } else {
            outcome = "nacked";
        }
    }
    if (o != NULL) {
        /* A text result is a bare JSON string. */
        text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        json_decref(o);
    }
    memset(&e, 0, sizeof e);
    e.type = STATEMACHINE_ENTRY_COMMAND_RESOLVE;
    e.reason = m->type == PROTO_ACK ? "agent acknowledged"
                                    : "agent refused or failed";
    e.reason_len = strlen(e.reason);
    e.agent_id = c->id;
    e.agent_id_len = strlen(c->id);
    e.command_id = cid;
    e.command_id_len = strlen(cid);
    e.outcome = outcome;
    e.outcome_len = strlen(outcome);
    e.value = text;
    e.value_len = text != NULL ? strlen(text) : 0;
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "command_answered");
        rems_log_str(&l, "command", cid);
        rems_log_str(&l, "agent", c->id);
        rems_log_str(&l, "answer", proto_type_name(m->type));
        rems_log_str(&l, "outcome", outcome);
        if (m->type == PROTO_NACK) {
            rems_log_str(&l, "reason", proto_nack_reason_name(m->nack.reason));
        }
        rems_log_end(&l);
    }
    propose(n, c, WRITE_RESOLVE, cid, &e);
    free(text);
}

static void on_frame(struct agent_conn *c, const void *frame, size_t len)
{
    struct cluster_agents *a = c->node->agents;
    char errmsg[REMS_ERRMSG_SIZE];
    struct proto_msg m;
    int rv;

    rv = proto_msg_decode(frame, len, &m, errmsg);
    if (rv != 0) {
        a->metrics.bad_frames++;
        log_conn(c, REMS_LOG_WARN, "agent_bad_frame", errmsg);
        send_error(c, proto_error_code_for(rv, m.type), errmsg);
        if (rv == REMS_EUNSUPPORTED && m.type == PROTO_TYPE_NONE) {
            return; /* An unknown type: answered, the link goes on. */
        }
        conn_close(c, NULL);
        return;
    }
    if (c->state == CONN_HELLO) {
        if (m.type != PROTO_HELLO) {
            send_error(c, PROTO_ERR_MALFORMED, "t: the first message must be "
                                               "hello");
            conn_close(c, "no hello");
        } else {
            on_hello(c, &m.hello);
        }
        proto_msg_close(&m);
        return;
    }
    switch (m.type) {
        case PROTO_HEARTBEAT:
            on_heartbeat(c, &m.heartbeat);
            break;
        case PROTO_REPORT:
            if (merge_services(c, m.report.items, m.report.n_items) != 0) {
                conn_close(c, "out of memory");
                break;
            }
            if (m.report.dropped > 0) {
                struct rems_log_line l;
                rems_log_begin(&l, REMS_LOG_WARN, "agent_reports_dropped");
                rems_log_str(&l, "agent", c->id);
                rems_log_u64(&l, "dropped", m.report.dropped);
                rems_log_end(&l);
            }
            propose_report(c);
            break;
        case PROTO_ACK:
        case PROTO_NACK:
            on_resolve(c, &m);
            break;
        case PROTO_ERROR:
            log_conn(c, REMS_LOG_WARN, "agent_error",
                     proto_error_code_name(m.error.code));
            /* unknown_type: the agent did not understand one message
             * (a newer node); the link goes on, as docs/protocol.md says. */
            if (m.error.code != PROTO_ERR_UNKNOWN_TYPE) {
                conn_close(c, NULL);
            }
            break;
        default:
            snprintf(errmsg, sizeof errmsg,
                     "t: %s is not sent by agents", proto_type_name(m.type));
            send_error(c, PROTO_ERR_MALFORMED, errmsg);
            conn_close(c, NULL);
            break;
    }
    proto_msg_close(&m);
}

static void read_cb(struct tls_stream *s,
                    int status,
                    const char *data,
                    size_t len)
{
    struct agent_conn *c = tls_stream_data(s);
    char errmsg[REMS_ERRMSG_SIZE];
    const void *frame;
    size_t flen;
    int rv;

    if (status != 0 || len == 0) {
        conn_close(c, status != 0 ? tls_stream_errmsg(s) : "closed by agent");
        return;
    }
    proto_reader_feed(&c->reader, data, len);
    while (c->state != CONN_CLOSING &&
           (rv = proto_reader_next(&c->reader, &frame, &flen, errmsg)) == 0 &&
           frame != NULL) {
        on_frame(c, frame, flen);
    }
    if (c->state != CONN_CLOSING && rv != 0) {
        c->node->agents->metrics.bad_frames++;
        log_conn(c, REMS_LOG_WARN, "agent_bad_frame", errmsg);
        send_error(c, proto_error_code_for(rv, PROTO_TYPE_NONE), errmsg);
        conn_close(c, NULL);
    }
}

static void handshake_cb(struct tls_stream *s, int status)
{
    struct agent_conn *c = tls_stream_data(s);
    const char *id;

    if (status == REMS_ECANCELED) {
        return;
    }
    if (status != 0) {
        c->node->agents->metrics.refused++;
        log_conn(c, REMS_LOG_WARN, "agent_refused", tls_stream_errmsg(s));
        conn_close(c, NULL);
        return;
    }
    id = tls_stream_peer_id(s);
    if (id == NULL) {
        c->node->agents->metrics.refused++;
        log_conn(c, REMS_LOG_WARN, "agent_refused",
                 "the certificate names no agent id");
        send_error(c, PROTO_ERR_UNAUTHORIZED,
                   "the certificate names no agent id");
        conn_close(c, NULL);
        return;
    }
    snprintf(c->id, sizeof c->id, "%s", id);
    c->state = CONN_HELLO;
}

static void stream_closed_cb(struct tls_stream *s)
{
    struct agent_conn *c = tls_stream_data(s);
    struct cluster_agents *a = c->node->agents;
    REMS_QUEUE_REMOVE(&c->queue);
    a->n_conns--;
    conn_unref(c);
    if (a->closing) {
        cluster__stop_continue(a->node);
    }
}

static void conn_close(struct agent_conn *c, const char *why)
{
    struct cluster_agents *a = c->node->agents;
    if (c->state == CONN_CLOSING) {
        return;
    }
    if (c->state == CONN_ACTIVE) {
        a->metrics.connected--;
    }
    if (why != NULL) {
        log_conn(c, REMS_LOG_INFO, "agent_disconnected", why);
    }
    c->state = CONN_CLOSING;
    tls_stream_close(c->stream, stream_closed_cb);
}

static void connection_cb(uv_stream_t *server, int status)
{
    struct cluster_agents *a = server->data;
    struct cluster_node *n = a->node;
    struct tls_stream_options opts = {0};
    char errmsg[REMS_ERRMSG_SIZE];
    struct agent_conn *c;
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    int rv;

    if (status < 0 || a->closing) {
        return;
    }
    c = rems_calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    c->node = n;
    c->services = json_object();
    if (c->services == NULL) {
        rems_free(c);
        return;
    }
    proto_reader_init(&c->reader, n->cfg.agent_max_frame_bytes);
    opts.handshake_cb = handshake_cb;
    opts.read_cb = read_cb;
    opts.data = c;
    rv = tls_stream_open(n->loop, a->tls, &opts, &c->stream, errmsg);
    if (rv != 0) {
        json_decref(c->services);
        rems_free(c);
        return;
    }
    c->refs = 1; /* The stream's, dropped by stream_closed_cb. */
    c->state = CONN_HANDSHAKE;
    c->opened_ms = rems_mono_ms();
    REMS_QUEUE_PUSH(&a->conns, &c->queue);
    a->n_conns++;
    if (uv_accept(server, (uv_stream_t *)tls_stream_tcp(c->stream)) != 0) {
        conn_close(c, NULL);
        return;
    }
    if (uv_tcp_getpeername(tls_stream_tcp(c->stream), (struct sockaddr *)&ss,
                           &sl) == 0 &&
        ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "%s:%u", ip,
                 (unsigned)ntohs(sin->sin_port));
    }
    uv_tcp_nodelay(tls_stream_tcp(c->stream), 1);
    if (tls_stream_start(c->stream, errmsg) != 0) {
        conn_close(c, errmsg);
    }
}

/* ------------------------------------------------------------------ */
/* Leadership.                                                          */

static int load_lease(void *data, const struct statemachine_lease *l)
{
    struct cluster_agents *a = data;
    char id[STATEMACHINE_ID_MAX + 1];
    snprintf(id, sizeof id, "%.*s", (int)l->agent_id_len, l->agent_id);
    return leases_load(&a->leases, id, l->ttl_ms, rems_mono_ms(),
                       a->node->cfg.election_timeout_ms);
}

void cluster__agents_activate(struct cluster_node *n)
{
    struct cluster_agents *a = n->agents;
    struct storage_txn *t;
    char errmsg[REMS_ERRMSG_SIZE];
    int rv;

    if (a == NULL || a->closing) {
        return;
    }
    leases_clear(&a->leases);
    a->term = n->term;
    rv = storage_txn_begin(n->storage, false, &t, errmsg);
    if (rv == 0) {
        rv = statemachine_lease_list(t, load_lease, a, errmsg);
        storage_txn_abort(t);
    }
    if (rv != 0) {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_ERROR, "leases_load_failed");
        rems_log_str(&l, "error", errmsg);
        rems_log_end(&l);
        return; /* Stays inactive: agents are redirected here and retry. */
    }
    a->active = true;
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "agents_active");
        rems_log_u64(&l, "term", a->term);
        rems_log_u64(&l, "leases", a->leases.n);
        rems_log_end(&l);
    }
}

void cluster__agents_deactivate(struct cluster_node *n)
{
    struct cluster_agents *a = n->agents;
    rems_queue *q;
    if (a == NULL) {
        return;
    }
    if (a->active) {
        rems_log(REMS_LOG_INFO, "agents_inactive",
                 "not the leader any more: agent links closed");
    }
    a->active = false;
    leases_clear(&a->leases);
    a->n_expiring = 0;
    REMS_QUEUE_FOREACH(q, &a->conns)
    {
        struct agent_conn *c = REMS_QUEUE_DATA(q, struct agent_conn, queue);
        if (c->state == CONN_CLOSING) {
            continue;
        }
        if (c->state != CONN_HANDSHAKE) {
            send_error(c, PROTO_ERR_NOT_LEADER, "this node is not the leader");
        }
        conn_close(c, "leadership lost");
    }
}

/* ------------------------------------------------------------------ */
/* Apply hook and sweep.                                                */

void cluster__agents_applied(struct cluster_node *n,
                             const void *buf,
                             size_t len,
                             const struct statemachine_result *res)
{
    struct cluster_agents *a = n->agents;
    struct statemachine_entry e;
    char errmsg[REMS_ERRMSG_SIZE];
    char id[STATEMACHINE_ID_MAX + 1];
    struct agent_conn *c;

    if (a == NULL || !a->active || res->code != 0 || res->duplicate ||
        res->skipped) {
        return;
    }
    if (res->type < STATEMACHINE_ENTRY_LEASE_GRANT ||
        res->type > STATEMACHINE_ENTRY_COMMAND_RESOLVE ||
        res->type == STATEMACHINE_ENTRY_AGENT_REPORT) {
        return;
    }
    if (statemachine_entry_decode(buf, len, &e, errmsg) != 0) {
        return;
    }
    snprintf(id, sizeof id, "%.*s", (int)e.agent_id_len, e.agent_id);
    switch (e.type) {
        case STATEMACHINE_ENTRY_LEASE_GRANT:
            if (leases_grant(&a->leases, id, e.ttl_ms, rems_mono_ms()) != 0) {
                c = conn_find(a, id);
                if (c != NULL) {
                    conn_close(c, "out of memory");
                }
            }
            break;
        case STATEMACHINE_ENTRY_LEASE_REVOKE:
            leases_revoke(&a->leases, id);
            c = conn_find(a, id);
            if (c != NULL && c->state == CONN_ACTIVE) {
                send_error(c, PROTO_ERR_UNAUTHORIZED, "lease expired");
                conn_close(c, "lease expired");
            }
            break;
        case STATEMACHINE_ENTRY_COMMAND_ISSUE: {
            struct storage_txn *t;
            struct statemachine_command cmd;
            c = conn_find(a, id);
            if (c == NULL || c->state != CONN_ACTIVE ||
                storage_txn_begin(n->storage, false, &t, errmsg) != 0) {
                break;
            }
            if (statemachine_command_get(t, e.command_id, e.command_id_len,
                                         &cmd, errmsg) == 0) {
                send_command(c, &cmd);
            }
            storage_txn_abort(t);
            break;
        }
        case STATEMACHINE_ENTRY_COMMAND_RESOLVE: {
            char cid[STATEMACHINE_ID_MAX + 1];
            snprintf(cid, sizeof cid, "%.*s", (int)e.command_id_len,
                     e.command_id);
            c = conn_find(a, id);
            if (c != NULL) {
                id_set_del(c->sent, &c->n_sent, cid);
            }
            if (res->command_state == STATEMACHINE_COMMAND_EXPIRED) {
                a->metrics.commands_expired++;
            }
            break;
        }
        default:
            break;
    }
}

struct sweep_scan {
    struct cluster_agents *a;
    uint64_t now_wall;
};

static int visit_pending_sweep(void *data,
                               const struct statemachine_command *cmd)
{
    struct sweep_scan *ss = data;
    struct cluster_agents *a = ss->a;
    struct cluster_node *n = a->node;
    char id[STATEMACHINE_ID_MAX + 1];
    char agent[STATEMACHINE_ID_MAX + 1];
    struct agent_conn *c;

    snprintf(id, sizeof id, "%.*s", (int)cmd->id_len, cmd->id);
    snprintf(agent, sizeof agent, "%.*s", (int)cmd->agent_id_len,
             cmd->agent_id);
    if (id_set_has(a->expiring, a->n_expiring, id, NULL)) {
        return 0;
    }
    if (leases_command_expired(cmd->deadline_ms, ss->now_wall,
                               n->cfg.max_clock_skew_ms)) {
        struct statemachine_entry e;
        memset(&e, 0, sizeof e);
        e.type = STATEMACHINE_ENTRY_COMMAND_RESOLVE;
        e.reason = "no answer before the deadline";
        e.reason_len = strlen(e.reason);
        e.agent_id = cmd->agent_id;
        e.agent_id_len = cmd->agent_id_len;
        e.command_id = cmd->id;
        e.command_id_len = cmd->id_len;
        e.outcome = "expired";
        e.outcome_len = 7;
        if (id_set_add(&a->expiring, &a->n_expiring, &a->cap_expiring, id) ==
            0) {
            if (propose(n, NULL, WRITE_EXPIRE_COMMAND, id, &e) != 0) {
                id_set_del(a->expiring, &a->n_expiring, id);
            }
        }
        return 0;
    }
    c = conn_find(a, agent);
    if (c != NULL) {
        send_command(c, cmd); /* No-op when sent already. */
    }
    return 0;
}

static void sweep_cb(uv_timer_t *timer)
{
    struct cluster_agents *a = timer->data;
    struct cluster_node *n = a->node;
    const char *expired[64];
    struct storage_txn *t;
    struct sweep_scan ss;
    char errmsg[REMS_ERRMSG_SIZE];
    uint64_t now = rems_mono_ms();
    rems_queue *q;
    bool more = false;
    size_t k;
    size_t m;

    /* Connections that never said hello. */
    REMS_QUEUE_FOREACH(q, &a->conns)
    {
        struct agent_conn *c = REMS_QUEUE_DATA(q, struct agent_conn, queue);
        if ((c->state == CONN_HANDSHAKE || c->state == CONN_HELLO) &&
            now - c->opened_ms > HELLO_TIMEOUT_MS) {
            conn_close(c, "no hello in time");
        } else if (c->state == CONN_ACTIVE && c->report_dirty &&
                   !c->report_inflight) {
            propose_report(c);
        }
    }
    if (!a->active || n->stopping) {
        return;
    }
    m = leases_expired(&a->leases, now, expired, REMS_ARRAY_SIZE(expired));
    for (k = 0; k < m; k++) {
        char id[STATEMACHINE_ID_MAX + 1];
        struct statemachine_entry e;
        struct rems_log_line l;
        snprintf(id, sizeof id, "%s", expired[k]);
        memset(&e, 0, sizeof e);
        e.type = STATEMACHINE_ENTRY_LEASE_REVOKE;
        e.reason = "lease expired: no heartbeat in time";
        e.reason_len = strlen(e.reason);
        e.agent_id = id;
        e.agent_id_len = strlen(id);
        e.outcome = "expired";
        e.outcome_len = 7;
        rems_log_begin(&l, REMS_LOG_WARN, "lease_expired");
        rems_log_str(&l, "agent", id);
        rems_log_end(&l);
        a->metrics.leases_expired++;
        if (propose(n, NULL, WRITE_EXPIRE_LEASE, id, &e) != 0) {
            leases_unmark(&a->leases, id);
        }
    }
    if (storage_txn_begin(n->storage, false, &t, errmsg) != 0) {
        return;
    }
    ss.a = a;
    ss.now_wall = rems_wall_ms();
    statemachine_command_list(t, NULL, 0, STATEMACHINE_COMMAND_PENDING, "", 0,
                              SWEEP_COMMANDS_MAX, visit_pending_sweep, &ss,
                              &more, errmsg);
    storage_txn_abort(t);
}

/* ------------------------------------------------------------------ */
/* Start, stop, queries.                                                */

int cluster__agents_start(struct cluster_node *n, char *errmsg)
{
    struct cluster_agents *a;
    struct tls_context_options topts = {0};
    char host[CONFIG_ADDR_SIZE];
    uint16_t port;
    struct sockaddr_in sa;
    int rv;

    if (n->cfg.agent_address[0] == '\0') {
        return 0;
    }
    a = rems_calloc(1, sizeof *a);
    if (a == NULL) {
        rv = REMS_ENOMEM;
        goto err;
    }
    a->node = n;
    REMS_QUEUE_INIT(&a->conns);
    leases_init(&a->leases);
    topts.role = TLS_ROLE_SERVER;
    topts.cert_file = n->cfg.tls_cert;
    topts.key_file = n->cfg.tls_key;
    topts.ca_file = n->cfg.tls_ca;
    topts.crl_file = n->cfg.tls_crl[0] != '\0' ? n->cfg.tls_crl : NULL;
    topts.require_client_cert = true;
    rv = tls_context_open(&topts, &a->tls, errmsg);
    if (rv != 0) {
        goto err_after_alloc;
    }
    if (config_split_address(n->cfg.agent_address, host, &port) != 0 ||
        uv_ip4_addr(host, port, &sa) != 0) {
        rems_errmsgf(errmsg, "agent_address: %s: not an IPv4 address",
                     n->cfg.agent_address);
        rv = REMS_ECONFIG;
        goto err_after_tls;
    }
    uv_tcp_init(n->loop, &a->listener);
    a->listener.data = a;
    a->handles_open++;
    rv = uv_tcp_bind(&a->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&a->listener, 128, connection_cb);
    }
    if (rv != 0) {
        rems_errmsgf(errmsg, "agent_address: listen on %s: %s",
                     n->cfg.agent_address, uv_strerror(rv));
        rv = rv == UV_EADDRINUSE ? REMS_EADDRINUSE : REMS_EIO;
        goto err_after_listener;
    }
    a->listening = true;
    uv_timer_init(n->loop, &a->sweep);
    a->sweep.data = a;
    a->handles_open++;
    uv_timer_start(&a->sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
    n->agents = a;
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "agents_listening");
        rems_log_str(&l, "agent_address", n->cfg.agent_address);
        rems_log_end(&l);
    }
    return 0;

err_after_listener:
    /* The handle must be closed through the loop before the memory goes:
     * run the loop until it is. */
    uv_close((uv_handle_t *)&a->listener, NULL);
    uv_run(n->loop, UV_RUN_NOWAIT);
err_after_tls:
    tls_context_close(a->tls);
err_after_alloc:
    leases_close(&a->leases);
    rems_free(a);
err:
    POST(rv != 0);
    return rv;
}

static void agents_handle_closed_cb(uv_handle_t *h)
{
    struct cluster_agents *a = h->data;
    a->handles_open--;
    cluster__stop_continue(a->node);
}

void cluster__agents_close(struct cluster_node *n)
{
    struct cluster_agents *a = n->agents;
    rems_queue *q;
    if (a == NULL || a->closing) {
        return;
    }
    a->closing = true;
    a->active = false;
    REMS_QUEUE_FOREACH(q, &a->conns)
    {
        struct agent_conn *c = REMS_QUEUE_DATA(q, struct agent_conn, queue);
        if (c->state != CONN_CLOSING) {
            if (c->state != CONN_HANDSHAKE) {
                send_error(c, PROTO_ERR_NOT_LEADER, "node is shutting down");
            }
            conn_close(c, "node stopping");
        }
    }
    uv_close((uv_handle_t *)&a->listener, agents_handle_closed_cb);
    uv_close((uv_handle_t *)&a->sweep, agents_handle_closed_cb);
}

/* True when nothing of the agents module is open any more; then frees it. */
bool cluster__agents_idle(struct cluster_node *n)
{
    struct cluster_agents *a = n->agents;
    if (a == NULL) {
        return true;
    }
    if (a->handles_open > 0 || !REMS_QUEUE_EMPTY(&a->conns)) {
        return false;
    }
    return true;
}

void cluster__agents_free(struct cluster_node *n)
{
    struct cluster_agents *a = n->agents;
    if (a == NULL) {
        return;
    }
    tls_context_close(a->tls);
    leases_close(&a->leases);
    rems_free(a->expiring);
    rems_free(a);
    n->agents = NULL;
}

bool cluster_node_command_delivered(struct cluster_node *n, const char *id)
{
    struct cluster_agents *a = n->agents;
    rems_queue *q;
    if (a == NULL) {
        return false;
    }
    REMS_QUEUE_FOREACH(q, &a->conns)
    {
        struct agent_conn *c = REMS_QUEUE_DATA(q, struct agent_conn, queue);
        if (id_set_has(c->sent, c->n_sent, id, NULL)) {
            return true;
        }
    }
    return false;
}

int cluster_node_agent_live(struct cluster_node *n,
                            const char *id,
                            struct cluster_agent_live *out)
{
    struct cluster_agents *a = n->agents;
    struct agent_conn *c;
    uint64_t remaining;

    memset(out, 0, sizeof *out);
    if (a == NULL || !a->active) {
        return REMS_ENOTLEADER;
    }
    c = conn_find(a, id);
    if (c != NULL && c->state == CONN_ACTIVE) {
        out->connected = true;
        snprintf(out->peer, sizeof out->peer, "%s", c->peer);
        out->commands_in_flight = c->n_sent;
    }
    if (leases_remaining(&a->leases, id, rems_mono_ms(), &remaining) == 0) {
        out->has_lease = true;
        out->lease_remaining_ms = remaining;
    }
    return 0;
}

void cluster_node_agent_metrics(const struct cluster_node *n,
                                struct cluster_agent_metrics *out)
{
    memset(out, 0, sizeof *out);
    if (n->agents != NULL) {
        *out = n->agents->metrics;
        out->connections = n->agents->n_conns;
        out->leases = n->agents->leases.n;
    }
}
