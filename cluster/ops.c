/* Writes, linearizable reads, apply waits, membership changes and joining.
 * See node.c for the design of the read index and the waits. */
#include <stdio.h>
#include <string.h>

#include "cluster/node_int.h"
#include "common/assert.h"
#include "common/log.h"
#include "common/util.h"

/* ------------------------------------------------------------------ */
/* Writes.                                                              */

static void apply_cb(struct raft_apply *a, int status, void *result)
{
    struct cluster_write *w = REMS_CONTAINER_OF(a, struct cluster_write,
                                                apply);
    struct cluster_node *n = w->node;
    int rv;

    (void)result;
    REMS_QUEUE_REMOVE(&w->queue);
    if (status == 0 && !w->has_res) {
        /* Applied, but not through our FSM hook: cannot happen for
         * commands; treat as unknown. */
        status = RAFT_LEADERSHIPLOST;
    }
    rv = cluster__raft_error(status);
    if (rv == 0) {
        n->metrics.writes_ok++;
    } else {
        n->metrics.writes_failed++;
    }
    w->cb(w, rv, rv == 0 ? &w->res : NULL);
}

int cluster_node_propose(struct cluster_node *n,
                         struct cluster_write *req,
                         const struct statemachine_entry *e,
                         cluster_write_cb cb,
                         char *errmsg)
{
    struct raft_buffer buf;
    void *data;
    size_t len;
    int rv;

    if (n->stopping) {
        rems_errmsgf(errmsg, "node is shutting down");
        return REMS_ESHUTDOWN;
    }
    if (raft_state(&n->raft) != RAFT_LEADER) {
        rems_errmsgf(errmsg, "this node is not the leader");
        return REMS_ENOTLEADER;
    }
    rv = statemachine_entry_encode(e, raft_malloc, &data, &len, errmsg);
    if (rv != 0) {
        return rv;
    }
    buf.base = data;
    buf.len = len;
    req->node = n;
    req->cb = cb;
    req->has_res = false;
    memset(&req->res, 0, sizeof req->res);
    rv = raft_apply(&n->raft, &req->apply, &buf, 1, apply_cb);
    if (rv != 0) {
        /* raft 0.22's legacy layer frees the buffer once the entry reached
         * its in-memory log, even when a later step (the disk append)
         * fails, and returns no sign of which happened. Freeing here would
         * be a double free; not freeing leaks one buffer on the rare early
         * failures (checked above: not leader). */
        rems_errmsgf(errmsg, "propose: %s: %s", raft_strerror(rv),
                     raft_errmsg(&n->raft));
        return cluster__raft_error(rv);
    }
    /* raft assigned the next index synchronously; proposals are in index
     * order. */
    REMS_QUEUE_PUSH(&n->writes, &req->queue);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Read index.                                                          */

static void answer_reads(rems_queue *from, int status, uint64_t index)
{
    while (!REMS_QUEUE_EMPTY(from)) {
        rems_queue *q = REMS_QUEUE_HEAD(from);
        struct cluster_wait *w = REMS_QUEUE_DATA(q, struct cluster_wait,
                                                 queue);
        REMS_QUEUE_REMOVE(q);
        w->cb(w, status, index);
    }
}

static void read_barrier_cb(struct raft_barrier *req, int status)
{
    struct cluster_node *n = req->data;
    uint64_t index = req->index;
    rems_queue done;

    n->read_barrier_inflight = false;
    REMS_QUEUE_INIT(&done);
    /* Move the answered reads aside first: callbacks may queue new reads. */
    if (!REMS_QUEUE_EMPTY(&n->reads_inflight)) {
        REMS_QUEUE_NEXT(&done) = REMS_QUEUE_NEXT(&n->reads_inflight);
        REMS_QUEUE_PREV(&done) = REMS_QUEUE_PREV(&n->reads_inflight);
        REMS_QUEUE_PREV(REMS_QUEUE_NEXT(&done)) = &done;
        REMS_QUEUE_NEXT(REMS_QUEUE_PREV(&done)) = &done;
        REMS_QUEUE_INIT(&n->reads_inflight);
    }
    if (status == 0) {
        REMS_ASSERT(raft_last_applied(&n->raft) >= index);
        answer_reads(&done, 0, index);
    } else {
        answer_reads(&done, cluster__raft_error(status) == REMS_ESHUTDOWN
                                ? REMS_ESHUTDOWN
                                : REMS_ENOTLEADER,
                     0);
    }
    if (!n->stopping) {
        cluster__reads_start(n);
    }
}

void cluster__reads_start(struct cluster_node *n)
{
    int rv;
    if (n->read_barrier_inflight || REMS_QUEUE_EMPTY(&n->reads_next) ||
        !n->leader_ready) {
        return;
    }
    n->read_barrier.data = n;
    rv = raft_barrier(&n->raft, &n->read_barrier, read_barrier_cb);
    if (rv != 0) {
        answer_reads(&n->reads_next, cluster__raft_error(rv) == REMS_ENOMEM
                                         ? REMS_ENOMEM
                                         : REMS_ENOTLEADER,
                     0);
        return;
    }
    n->read_barrier_inflight = true;
    n->metrics.read_index_rounds++;
    /* Every read queued so far arrived before this barrier was proposed. */
    REMS_QUEUE_NEXT(&n->reads_inflight) = REMS_QUEUE_NEXT(&n->reads_next);
    REMS_QUEUE_PREV(&n->reads_inflight) = REMS_QUEUE_PREV(&n->reads_next);
    REMS_QUEUE_PREV(REMS_QUEUE_NEXT(&n->reads_inflight)) = &n->reads_inflight;
    REMS_QUEUE_NEXT(REMS_QUEUE_PREV(&n->reads_inflight)) = &n->reads_inflight;
    REMS_QUEUE_INIT(&n->reads_next);
}

void cluster__reads_fail(struct cluster_node *n, int status)
{
    answer_reads(&n->reads_next, status, 0);
    /* Reads tied to an in-flight barrier are answered by its callback,
     * which raft runs with an error when leadership is lost. */
    if (status == REMS_ESHUTDOWN) {
        answer_reads(&n->reads_inflight, status, 0);
    }
}

int cluster_node_read_index(struct cluster_node *n,
                            struct cluster_wait *req,
                            cluster_wait_cb cb)
{
    if (n->stopping) {
        return REMS_ESHUTDOWN;
    }
    if (raft_state(&n->raft) != RAFT_LEADER) {
        return REMS_ENOTLEADER;
    }
    req->node = n;
    req->cb = cb;
    REMS_QUEUE_PUSH(&n->reads_next, &req->queue);
    cluster__reads_start(n);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Apply waits.                                                         */

static void check_cb(uv_check_t *c)
{
    struct cluster_node *n = c->data;
    uint64_t applied = raft_last_applied(&n->raft);
    rems_queue *q;
    rems_queue *next;

    for (q = REMS_QUEUE_NEXT(&n->waits); q != &n->waits; q = next) {
        struct cluster_wait *w = REMS_QUEUE_DATA(q, struct cluster_wait,
                                                 queue);
        next = REMS_QUEUE_NEXT(q);
        if (w->index <= applied) {
            REMS_QUEUE_REMOVE(q);
            w->cb(w, 0, w->index);
        }
    }
    if (REMS_QUEUE_EMPTY(&n->waits)) {
        uv_check_stop(&n->check);
        n->check_active = false;
    }
}

void cluster__waits_kick(struct cluster_node *n)
{
    if (!n->check_active && !REMS_QUEUE_EMPTY(&n->waits) && !n->stopping) {
        uv_check_start(&n->check, check_cb);
        n->check_active = true;
    }
}

void cluster__waits_expire(struct cluster_node *n)
{
    uint64_t now = rems_mono_ms();
    rems_queue *q;
    rems_queue *next;
    for (q = REMS_QUEUE_NEXT(&n->waits); q != &n->waits; q = next) {
        struct cluster_wait *w = REMS_QUEUE_DATA(q, struct cluster_wait,
                                                 queue);
        next = REMS_QUEUE_NEXT(q);
        if (w->deadline <= now) {
            REMS_QUEUE_REMOVE(q);
            w->cb(w, REMS_ETIMEDOUT, w->index);
        }
    }
}

void cluster__waits_fail(struct cluster_node *n, int status)
{
    answer_reads(&n->waits, status, 0);
    if (n->check_active) {
        uv_check_stop(&n->check);
        n->check_active = false;
    }
}

void cluster_node_wait_applied(struct cluster_node *n,
                               struct cluster_wait *req,
                               uint64_t index,
                               unsigned timeout_ms,
                               cluster_wait_cb cb)
{
    req->node = n;
    req->cb = cb;
    req->index = index;
    req->deadline = rems_mono_ms() + timeout_ms;
    REMS_QUEUE_PUSH(&n->waits, &req->queue);
    if (n->stopping) {
        cluster__waits_fail(n, REMS_ESHUTDOWN);
        return;
    }
    /* Answered from the check handle, never synchronously. */
    if (!n->check_active) {
        uv_check_start(&n->check, check_cb);
        n->check_active = true;
    }
}

/* ------------------------------------------------------------------ */
/* Membership.                                                          */

enum { CHANGE_ADD = 1, CHANGE_REMOVE, CHANGE_ASSIGN, CHANGE_TRANSFER };

static void change_finish(struct cluster_change *c, int status)
{
    struct rems_log_line l;
    rems_log_begin(&l, status == 0 ? REMS_LOG_INFO : REMS_LOG_WARN,
                   "membership_change");
    rems_log_str(&l, "kind", c->kind == CHANGE_ADD      ? "add"
                             : c->kind == CHANGE_REMOVE ? "remove"
                             : c->kind == CHANGE_ASSIGN ? "assign"
                                                        : "transfer");
    rems_log_u64(&l, "id", c->id);
    rems_log_str(&l, "result", rems_errname(status));
    if (status != 0) {
        rems_log_str(&l, "error", c->errmsg);
    }
    rems_log_end(&l);
    c->cb(c, status, c->errmsg);
}

static void change_done_cb(struct raft_change *rc, int status)
{
    struct cluster_change *c = rc->data;
    struct cluster_node *n = c->node;
    int rv;

    if (status != 0) {
        rems_errmsgf(c->errmsg, "%s", raft_strerror(status));
        change_finish(c, cluster__raft_error(status));
        return;
    }
    if (c->kind == CHANGE_ADD && c->role != RAFT_SPARE) {
        /* Added as a spare; now promote (raft catches it up first). */
        c->kind = CHANGE_ASSIGN;
        c->change.data = c;
        rv = raft_assign(&n->raft, &c->change, c->id, c->role, change_done_cb);
        if (rv != 0) {
            rems_errmsgf(c->errmsg, "assign role: %s", raft_strerror(rv));
            change_finish(c, cluster__raft_error(rv));
        }
        return;
    }
    c->errmsg[0] = '\0';
    change_finish(c, 0);
}

static void member_set_cb(struct cluster_write *w,
                          int status,
                          const struct statemachine_result *res)
{
    struct cluster_change *c = w->data;
    struct cluster_node *n = c->node;
    int rv;

    (void)res;
    if (status != 0) {
        rems_errmsgf(c->errmsg, "record member addresses: %s",
                     rems_strerror(status));
        change_finish(c, status);
        return;
    }
    c->change.data = c;
    rv = raft_add(&n->raft, &c->change, c->id, c->raft_address,
                  change_done_cb);
    if (rv == RAFT_DUPLICATEID) {
        /* Already a member (a retried join): only fix the role. */
        unsigned i;
        for (i = 0; i < n->raft.configuration.n; i++) {
            const struct raft_server *s = &n->raft.configuration.servers[i];
            if (s->id == c->id) {
                if (strcmp(s->address, c->raft_address) != 0) {
                    rems_errmsgf(c->errmsg,
                                 "id: node %llu is a member with raft "
                                 "address %s",
                                 (unsigned long long)c->id, s->address);
                    change_finish(c, REMS_EEXIST);
                    return;
                }
                if (s->role == c->role) {
                    c->errmsg[0] = '\0';
                    change_finish(c, 0);
                    return;
                }
            }
        }
        c->kind = CHANGE_ASSIGN;
        rv = raft_assign(&n->raft, &c->change, c->id, c->role, change_done_cb);
    }
    if (rv != 0) {
        rems_errmsgf(c->errmsg, "add member: %s", raft_strerror(rv));
        change_finish(c, cluster__raft_error(rv));
    }
}

static void change_init(struct cluster_change *req,
                        struct cluster_node *n,
                        cluster_change_cb cb,
                        int kind,
                        uint64_t id)
{
    memset(req->errmsg, 0, sizeof req->errmsg);
    req->node = n;
    req->cb = cb;
    req->kind = kind;
    req->id = id;
    req->change.data = req;
}

int cluster_node_member_add(struct cluster_node *n,
                            struct cluster_change *req,
                            uint64_t id,
                            const char *raft_address,
                            const char *api_address,
                            int role,
                            cluster_change_cb cb,
                            char *errmsg)
{
    struct statemachine_entry e;
    char trace[REMS_ID_SIZE];

    unsigned i;

    /* Refuse an id taken by another address before anything is recorded:
     * the addresses proposed below would otherwise overwrite the member's
     * known API address. */
    for (i = 0; i < n->raft.configuration.n; i++) {
        const struct raft_server *srv = &n->raft.configuration.servers[i];
        if (srv->id == id && strcmp(srv->address, raft_address) != 0) {
            rems_errmsgf(errmsg, "id: node %llu is a member with raft "
                                 "address %s",
                         (unsigned long long)id, srv->address);
            return REMS_EEXIST;
        }
        if (srv->id != id && strcmp(srv->address, raft_address) == 0) {
            rems_errmsgf(errmsg, "raft_address: %s belongs to member %llu",
                         raft_address, (unsigned long long)srv->id);
            return REMS_EEXIST;
        }
    }
    change_init(req, n, cb, CHANGE_ADD, id);
    req->role = role;
    snprintf(req->raft_address, sizeof req->raft_address, "%s", raft_address);
    snprintf(req->api_address, sizeof req->api_address, "%s", api_address);
    rems_id_random(trace);
    memset(&e, 0, sizeof e);
    e.type = STATEMACHINE_ENTRY_MEMBER_SET;
    e.time_ms = rems_wall_ms();
    e.trace_id = trace;
    e.trace_id_len = strlen(trace);
    e.member_id = id;
    e.raft_address = req->raft_address;
    e.raft_address_len = strlen(req->raft_address);
    e.api_address = req->api_address;
    e.api_address_len = strlen(req->api_address);
    req->write.data = req;
    return cluster_node_propose(n, &req->write, &e, member_set_cb, errmsg);
}

int cluster_node_member_remove(struct cluster_node *n,
                               struct cluster_change *req,
                               uint64_t id,
                               cluster_change_cb cb,
                               char *errmsg)
{
    int rv;
    change_init(req, n, cb, CHANGE_REMOVE, id);
    rv = raft_remove(&n->raft, &req->change, id, change_done_cb);
    if (rv != 0) {
        rems_errmsgf(errmsg, "remove member %llu: %s", (unsigned long long)id,
                     raft_strerror(rv));
        return cluster__raft_error(rv);
    }
    return 0;
}

int cluster_node_member_assign(struct cluster_node *n,
                               struct cluster_change *req,
                               uint64_t id,
                               int role,
                               cluster_change_cb cb,
                               char *errmsg)
{
    int rv;
    change_init(req, n, cb, CHANGE_ASSIGN, id);
    req->role = role;
    rv = raft_assign(&n->raft, &req->change, id, role, change_done_cb);
    if (rv != 0) {
        rems_errmsgf(errmsg, "assign role to %llu: %s", (unsigned long long)id,
                     raft_strerror(rv));
        return cluster__raft_error(rv);
    }
    return 0;
}

static void transfer_cb(struct raft_transfer *t)
{
    struct cluster_change *c = t->data;
    raft_id leader = 0;
    const char *addr = NULL;
    raft_leader(&c->node->raft, &leader, &addr);
    if (c->id != 0 && leader != c->id) {
        rems_errmsgf(c->errmsg, "leadership did not move to node %llu",
                     (unsigned long long)c->id);
        change_finish(c, REMS_ETIMEDOUT);
        return;
    }
    if (c->id == 0 && leader == c->node->cfg.node_id) {
        rems_errmsgf(c->errmsg, "leadership did not move");
        change_finish(c, REMS_ETIMEDOUT);
        return;
    }
    c->id = leader;
    change_finish(c, 0);
}

int cluster_node_transfer(struct cluster_node *n,
                          struct cluster_change *req,
                          uint64_t id,
                          cluster_change_cb cb,
                          char *errmsg)
{
    int rv;
    change_init(req, n, cb, CHANGE_TRANSFER, id);
    req->transfer.data = req;
    rv = raft_transfer(&n->raft, &req->transfer, id, transfer_cb);
    if (rv != 0) {
        rems_errmsgf(errmsg, "transfer leadership: %s", raft_strerror(rv));
        return cluster__raft_error(rv);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Joining.                                                             */

static void join_cb(struct cluster_forward *f,
                    int status,
                    long http_status,
                    const char *body,
                    size_t body_len)
{
    struct cluster_node *n = f->data;
    struct rems_log_line l;
    n->join_inflight = false;
    rems_log_begin(&l, status == 0 && http_status == 200 ? REMS_LOG_INFO
                                                          : REMS_LOG_WARN,
                   "join_attempt");
    rems_log_str(&l, "via", n->cfg.join);
    rems_log_i64(&l, "http_status", http_status);
    if (status != 0) {
        rems_log_str(&l, "error", f->errmsg);
    } else {
        rems_log_strn(&l, "answer", body, body_len < 300 ? body_len : 300);
    }
    rems_log_end(&l);
    /* Done once the leader answers 200: it answers only when its committed
     * configuration lists this node as a voter with this raft address. The
     * configuration this node holds itself is no proof: during catch-up it
     * is an old one from the log (for a reused id, the bootstrap
     * configuration lists this node as a voter), and a node added as a
     * spare hears from the leader before its promotion, which may still
     * fail. Until then the tick retries every second; asking again is
     * harmless (an existing member only gets its role fixed). */
    if (status == 0 && http_status == 200) {
        n->joining = false;
        rems_log(REMS_LOG_INFO, "joined",
                 "the leader lists this node as a voter");
    }
}

void cluster__join_tick(struct cluster_node *n)
{
    char body[512];
    static const char *const headers[] = {
        "Content-Type: application/json",
    };
    uint64_t now = rems_mono_ms();
    int len;

    if (!n->joining || n->join_inflight || n->stopping ||
        now < n->join_next_ms) {
        return;
    }
    n->join_next_ms = now + 1000;
    len = snprintf(body, sizeof body,
                   "{\"id\":%llu,\"raft_address\":\"%s\","
                   "\"api_address\":\"%s\",\"role\":\"voter\"}",
                   (unsigned long long)n->cfg.node_id, n->cfg.raft_address,
                   n->cfg.api_address);
    n->join_req.data = n;
    if (cluster_node_forward(n, &n->join_req, n->cfg.join, "POST",
                             "/v1/members", headers, 1, body, (size_t)len,
                             n->cfg.forward_timeout_ms, join_cb) == 0) {
        n->join_inflight = true;
    }
}
