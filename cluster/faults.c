/* Fault injection: a raft_uv_transport that wraps raft_uv_tcp and cuts
 * the raft traffic of the peers in a blocked set (cluster/faults.h). It is
 * installed only when the node runs with fault_injection; otherwise raft_uv
 * gets raft_uv_tcp itself and none of this runs.
 *
 * Happy path: init, listen, connect and close go to the inner transport.
 * Each stream it hands over (a connect's, an accept's) is recorded with the
 * peer's id and passed on to raft_uv, which owns it from then on.
 *
 * While a peer is blocked:
 * - connect to it: no connection is tried; the request's callback runs
 *   after REFUSE_DELAY_MS with RAFT_NOCONNECTION (never from inside
 *   connect(), which raft_uv does not expect), and raft_uv retries after
 *   its connect retry delay;
 * - a connect that was in flight when the peer became blocked completes
 *   into a stream that is closed here (raft_uv never saw it) and reports
 *   RAFT_NOCONNECTION;
 * - a connection from it (its handshake names its id) is closed at accept.
 *
 * When a peer becomes blocked, the streams already handed to raft_uv for it
 * are cut with shutdown(SHUT_RDWR) on their sockets. Their handles belong
 * to raft_uv, which may have closed and freed them at any time (it closes
 * a stream on a read or write error, on EOF, when it closes, and it never
 * tells the transport), so this file never dereferences a stream after
 * handing it over: a record keeps the socket's descriptor and its identity
 * (device and inode of the socket, which stay unique while the socket
 * exists). A record whose descriptor no longer names that socket (raft_uv
 * closed it; the number may have been reused by any other socket) is
 * stale and is dropped without touching the descriptor. A live one is shut
 * down: the socket stays open under raft_uv's handle, whose next read sees
 * EOF and next write EPIPE, and raft_uv closes it itself as it does for a
 * peer that went away, then reconnects through connect(), which is
 * refused. The peer sees the FIN (or a reset) and does the same. Stale
 * records are also dropped each time a stream is recorded, so the table
 * holds about as many records as there are open raft connections.
 *
 * Unblocking changes nothing at once: raft_uv's next retry connects, and
 * the peer's connections are accepted again.
 *
 * Close (raft_uv closes the transport): refused connects waiting for their
 * timer complete with RAFT_CANCELED, the inner transport closes (failing
 * its in-flight connects, which complete through connect_cb), and the close
 * callback runs once the inner transport is closed and no request is left.
 *
 * States of the transport: OPEN -> CLOSING (close()) -> CLOSED (the close
 * callback has run); cluster__faults_free() requires CLOSED, or OPEN when
 * raft_uv never started it. */
#include "cluster/faults.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "cluster/node_int.h"
#include "common/assert.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/queue.h"

/* A refused connect reports its failure this much later. */
#define REFUSE_DELAY_MS 20

enum faults_state {
    FAULTS_OPEN,
    FAULTS_CLOSING,
    FAULTS_CLOSED,
};

/* A raft connection handed to raft_uv, by its socket (see the top). */
struct fault_stream {
    uint64_t peer;
    uv_os_fd_t fd;
    dev_t dev;
    ino_t ino;
};

struct cluster_faults {
    struct raft_uv_transport transport; /* What raft_uv is given. */
    struct raft_uv_transport *inner;    /* raft_uv_tcp; borrowed. */
    uv_loop_t *loop;
    int state; /* enum faults_state */
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
    bool inner_closed;
    unsigned n_requests; /* Connects not yet completed. */
    rems_queue refused;  /* struct fault_connect waiting for their timer. */
    uint64_t blocked[CLUSTER_FAULTS_MAX_BLOCKED]; /* Ascending. */
    size_t n_blocked;
    struct fault_stream *streams;
    size_t n_streams;
    size_t cap_streams;
};

/* One connect request of raft_uv: forwarded to the inner transport, or
 * refused (timer). */
struct fault_connect {
    struct cluster_faults *f;
    struct raft_uv_connect inner_req; /* inner_req.data = this */
    struct raft_uv_connect *req;      /* raft_uv's */
    raft_uv_connect_cb cb;
    uint64_t peer;
    uv_timer_t timer; /* Refused only. */
    int status;       /* Refused only: what the callback reports. */
    rems_queue link;  /* In f->refused; refused only. */
};

/* ------------------------------------------------------------------ */
/* The blocked set and the records.                                     */

static bool is_blocked(const struct cluster_faults *f, uint64_t peer)
{
    size_t i;
    for (i = 0; i < f->n_blocked; i++) {
        if (f->blocked[i] == peer) {
            return true;
        }
    }
    return false;
}

/* True when @s's descriptor no longer names the socket it was recorded
 * with. fstat() on a closed or reused descriptor is harmless. */
static bool stream_stale(const struct fault_stream *s)
{
    struct stat st;
    return fstat(s->fd, &st) != 0 || st.st_dev != s->dev || st.st_ino != s->ino;
}

/* Drop the stale records and, when @cut, shut down and drop those of
 * blocked peers. Returns how many were shut down. */
static size_t streams_sweep(struct cluster_faults *f, bool cut)
{
    size_t n_cut = 0;
    size_t i = 0;
    while (i < f->n_streams) {
        struct fault_stream *s = &f->streams[i];
        bool drop = stream_stale(s);
        if (!drop && cut && is_blocked(f, s->peer)) {
            /* Errors (ENOTCONN: the peer already went away) leave nothing
             * to do: raft_uv sees that connection fail either way. */
            (void)shutdown(s->fd, SHUT_RDWR);
            drop = true;
            n_cut++;
        }
        if (drop) {
            f->streams[i] = f->streams[--f->n_streams];
        } else {
            i++;
        }
    }
    return n_cut;
}

/* Record @stream as a connection with @peer. 0, or RAFT_NOMEM (then the
 * caller must not hand the stream over: one that could not be cut would
 * survive a block). */
static int stream_record(struct cluster_faults *f,
                         uint64_t peer,
                         struct uv_stream_s *stream)
{
    struct fault_stream s = {0};
    struct stat st;

    if (uv_fileno((uv_handle_t *)stream, &s.fd) != 0 || fstat(s.fd, &st) != 0) {
        /* An open TCP handle always has its socket: not reached. */
        return RAFT_IOERR;
    }
    s.peer = peer;
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    (void)streams_sweep(f, false);
    if (f->n_streams == f->cap_streams) {
        size_t cap = f->cap_streams == 0 ? 8 : f->cap_streams * 2;
        struct fault_stream *a =
            rems_realloc(f->streams, cap * sizeof *f->streams);
        if (a == NULL) {
            return RAFT_NOMEM;
        }
        f->streams = a;
        f->cap_streams = cap;
    }
    f->streams[f->n_streams++] = s;
    return 0;
}

/* Close a stream raft_uv never saw. The inner transport allocated it with
 * raft's allocator. */
static void stream_free_cb(uv_handle_t *h)
{
    raft_free(h);
}

static void stream_discard(struct uv_stream_s *stream)
{
    uv_close((uv_handle_t *)stream, stream_free_cb);
}

/* ------------------------------------------------------------------ */
/* The transport.                                                       */

static void maybe_closed(struct cluster_faults *f)
{
    raft_uv_transport_close_cb cb;

    if (f->state != FAULTS_CLOSING || !f->inner_closed || f->n_requests > 0) {
        return;
    }
    f->state = FAULTS_CLOSED;
    cb = f->close_cb;
    f->close_cb = NULL;
    if (cb != NULL) {
        cb(&f->transport);
    }
}

static int
faults_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct cluster_faults *f = t->impl;
    int rv = f->inner->init(f->inner, id, address);
    if (rv != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "%s", f->inner->errmsg);
    }
    return rv;
}

static void inner_accept_cb(struct raft_uv_transport *inner,
                            raft_id id,
                            const char *address,
                            struct uv_stream_s *stream)
{
    struct cluster_faults *f = inner->data;

    PRE(f->state == FAULTS_OPEN && f->accept_cb != NULL);
    if (is_blocked(f, id) || stream_record(f, id, stream) != 0) {
        stream_discard(stream);
        return;
    }
    f->accept_cb(&f->transport, id, address, stream);
}

static int faults_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct cluster_faults *f = t->impl;
    int rv;

    f->accept_cb = cb;
    rv = f->inner->listen(f->inner, inner_accept_cb);
    if (rv != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "%s", f->inner->errmsg);
    }
    return rv;
}

/* A forwarded connect completed. */
static void inner_connect_cb(struct raft_uv_connect *inner_req,
                             struct uv_stream_s *stream,
                             int status)
{
    struct fault_connect *c = inner_req->data;
    struct cluster_faults *f = c->f;
    struct raft_uv_connect *req = c->req;
    raft_uv_connect_cb cb = c->cb;

    /* While closing, raft_uv takes and closes whatever it gets. */
    if (status == 0 && f->state == FAULTS_OPEN) {
        if (is_blocked(f, c->peer)) {
            stream_discard(stream);
            stream = NULL;
            status = RAFT_NOCONNECTION;
        } else if (stream_record(f, c->peer, stream) != 0) {
            stream_discard(stream);
            stream = NULL;
            status = RAFT_NOCONNECTION;
        }
    }
    rems_free(c);
    f->n_requests--;
    cb(req, status == 0 ? stream : NULL, status);
    maybe_closed(f);
}

static void refused_closed_cb(uv_handle_t *h)
{
    struct fault_connect *c = h->data;
    struct cluster_faults *f = c->f;
    struct raft_uv_connect *req = c->req;
    raft_uv_connect_cb cb = c->cb;
    int status = c->status;

    REMS_QUEUE_REMOVE(&c->link);
    rems_free(c);
    f->n_requests--;
    cb(req, NULL, status);
    maybe_closed(f);
}

static void refused_timer_cb(uv_timer_t *timer)
{
    struct fault_connect *c = timer->data;
    c->status = RAFT_NOCONNECTION;
    uv_close((uv_handle_t *)timer, refused_closed_cb);
}

static int faults_connect(struct raft_uv_transport *t,
                          struct raft_uv_connect *req,
                          raft_id id,
                          const char *address,
                          raft_uv_connect_cb cb)
{
    struct cluster_faults *f = t->impl;
    struct fault_connect *c;
    int rv;

    PRE(f->state == FAULTS_OPEN);
    c = rems_calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(t->errmsg, sizeof t->errmsg, "out of memory");
        return RAFT_NOMEM;
    }
    c->f = f;
    c->req = req;
    c->cb = cb;
    c->peer = id;
    if (is_blocked(f, id)) {
        c->status = RAFT_NOCONNECTION;
        uv_timer_init(f->loop, &c->timer);
        c->timer.data = c;
        uv_timer_start(&c->timer, refused_timer_cb, REFUSE_DELAY_MS, 0);
        REMS_QUEUE_PUSH(&f->refused, &c->link);
        f->n_requests++;
        return 0;
    }
    c->inner_req.data = c;
    f->n_requests++;
    rv = f->inner->connect(f->inner, &c->inner_req, id, address,
                           inner_connect_cb);
    if (rv != 0) {
        f->n_requests--;
        rems_free(c);
        snprintf(t->errmsg, sizeof t->errmsg, "%s", f->inner->errmsg);
        return rv;
    }
    return 0;
}

static void inner_close_cb(struct raft_uv_transport *inner)
{
    struct cluster_faults *f = inner->data;
    f->inner_closed = true;
    maybe_closed(f);
}

static void faults_close(struct raft_uv_transport *t,
                         raft_uv_transport_close_cb cb)
{
    struct cluster_faults *f = t->impl;
    rems_queue *q;

    PRE(f->state == FAULTS_OPEN);
    f->state = FAULTS_CLOSING;
    f->close_cb = cb;
    REMS_QUEUE_FOREACH(q, &f->refused)
    {
        struct fault_connect *c =
            REMS_QUEUE_DATA(q, struct fault_connect, link);
        if (!uv_is_closing((uv_handle_t *)&c->timer)) {
            c->status = RAFT_CANCELED;
            uv_close((uv_handle_t *)&c->timer, refused_closed_cb);
        }
    }
    f->inner->close(f->inner, inner_close_cb);
}

/* ------------------------------------------------------------------ */
/* Life cycle (node.c).                                                 */

int cluster__faults_open(uv_loop_t *loop,
                         struct raft_uv_transport *inner,
                         struct cluster_faults **out,
                         char *errmsg)
{
    struct cluster_faults *f;

    PRE(loop != NULL && inner != NULL && out != NULL);
    f = rems_calloc(1, sizeof *f);
    if (f == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    f->loop = loop;
    f->inner = inner;
    f->state = FAULTS_OPEN;
    REMS_QUEUE_INIT(&f->refused);
    inner->data = f;
    f->transport.version = 1;
    f->transport.impl = f;
    f->transport.init = faults_init;
    f->transport.listen = faults_listen;
    f->transport.connect = faults_connect;
    f->transport.close = faults_close;
    rems_log(REMS_LOG_WARN, "faults_enabled",
             "fault injection is on: raft traffic to chosen peers can be cut "
             "through /v1/faults (drills only)");
    *out = f;
    return 0;
}

struct raft_uv_transport *cluster__faults_transport(struct cluster_faults *f)
{
    return &f->transport;
}

void cluster__faults_free(struct cluster_faults *f)
{
    if (f == NULL) {
        return;
    }
    PRE(f->state != FAULTS_CLOSING && f->n_requests == 0);
    rems_free(f->streams);
    rems_free(f);
}

/* ------------------------------------------------------------------ */
/* The switch (cluster/faults.h).                                       */

bool cluster_node_faults_enabled(const struct cluster_node *n)
{
    return n->faults != NULL;
}

size_t cluster_node_faults_get(const struct cluster_node *n,
                               uint64_t out[CLUSTER_FAULTS_MAX_BLOCKED])
{
    if (n->faults == NULL) {
        return 0;
    }
    memcpy(out, n->faults->blocked,
           n->faults->n_blocked * sizeof n->faults->blocked[0]);
    return n->faults->n_blocked;
}

int cluster_node_faults_set(struct cluster_node *n,
                            const uint64_t *ids,
                            size_t n_ids,
                            char *errmsg)
{
    struct cluster_faults *f = n->faults;
    uint64_t set[CLUSTER_FAULTS_MAX_BLOCKED];
    size_t n_set = 0;
    size_t i;
    size_t j;
    char text[CLUSTER_FAULTS_MAX_BLOCKED * 21 + 1];
    size_t len = 0;
    size_t n_cut;

    if (f == NULL) {
        rems_errmsgf(errmsg, "fault injection is off");
        return REMS_EUNSUPPORTED;
    }
    if (n_ids > CLUSTER_FAULTS_MAX_BLOCKED) {
        rems_errmsgf(errmsg, "at most %d peers may be blocked",
                     CLUSTER_FAULTS_MAX_BLOCKED);
        return REMS_EINVAL;
    }
    /* Insertion sort with duplicates merged: at most 16 ids. */
    for (i = 0; i < n_ids; i++) {
        uint64_t id = ids[i];
        if (id == 0) {
            rems_errmsgf(errmsg, "0 is not a node id (ids start at 1)");
            return REMS_EINVAL;
        }
        if (id == n->cfg.node_id) {
            rems_errmsgf(errmsg, "%llu is this node's own id",
                         (unsigned long long)id);
            return REMS_EINVAL;
        }
        j = n_set;
        while (j > 0 && set[j - 1] > id) {
            j--;
        }
        if (j > 0 && set[j - 1] == id) {
            continue;
        }
        memmove(&set[j + 1], &set[j], (n_set - j) * sizeof set[0]);
        set[j] = id;
        n_set++;
    }
    memcpy(f->blocked, set, n_set * sizeof set[0]);
    f->n_blocked = n_set;
    n_cut = streams_sweep(f, true);

    text[0] = '\0';
    for (i = 0; i < n_set; i++) {
        int w = snprintf(text + len, sizeof text - len, "%s%llu",
                         i > 0 ? "," : "", (unsigned long long)set[i]);
        if (w > 0) {
            len += (size_t)w;
        }
    }
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_WARN, "faults_set");
        rems_log_str(&l, "blocked_peers", text);
        rems_log_u64(&l, "n_blocked", n_set);
        rems_log_u64(&l, "connections_cut", n_cut);
        rems_log_end(&l);
    }
    return 0;
}
