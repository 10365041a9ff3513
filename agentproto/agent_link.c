/* agentproto/agent_link.c: rems-agent's connection to the leader.
 *
 * Happy path: the retry timer fires, the target endpoint is resolved (an
 * IP literal needs no lookup), TCP connects, TLS verifies the node's name,
 * the link sends hello (agent id, labels, the fence's highest term, the
 * version and the state of every service) and the leader answers welcome.
 * From then on a heartbeat leaves every interval (the node's, or the
 * configured one when it is shorter than the lease), reports leave as soon
 * as the outbox holds changes, and commands are carried out and answered.
 *
 * Commands: a command's deadline is its receipt time plus ttl_remaining_ms,
 * on the loop's monotonic clock. The fence decides (stale term, duplicate,
 * expired, in that order), then unknown actions and services are refused,
 * then the id and term are written to the fence file, and only then, if
 * the deadline has not passed meanwhile, the action begins. The answer
 * (ack, or nack with the reason) follows when the supervisor says the
 * action is done, on the same connection only: after a reconnection the
 * leader resends, and the fence answers duplicate. An action that the
 * supervisor refused as busy or for an unknown service did not run: its id
 * is taken out of the fence again, so that the leader may resend it.
 *
 * Failures: a connection that fails at any step (resolution, TCP, TLS,
 * hello, a frame that breaks the protocol, an error frame, no
 * heartbeat_ack for min(3 intervals, lease TTL) of the time the link was
 * reading, see heard_until_ms()) is closed and the next attempt is
 * planned: a redirect names the next target (after its retry_after_ms, at
 * most reconnect.max_ms); otherwise the next configured endpoint, at
 * once, until every endpoint failed once: then a round of
 * exponential backoff with jitter (reconnect.initial_ms doubling up to
 * reconnect.max_ms; the delay is drawn between half and all of it). A lost
 * session reconnects first to the same node after a randomised initial
 * delay. The connect timeout bounds everything from the lookup to
 * welcome.
 *
 * Dead-man's switch: a timer of dead_man.timeout_ms runs whenever there is
 * no session (from the start, and from each session's end). When it fires
 * the services enter their safe state, once; the next welcome re-arms it.
 *
 * States (sm_move() checks each move against link_moves[]):
 *
 *   IDLE ------> WAITING --> RESOLVING --> CONNECTING --> HANDSHAKE
 *                  ^  ^          |             |  |           |
 *                  |  +----------+-------------+  |           v
 *                  |      (lookup or open failed) |         HELLO --> SESSION
 *                  |                              v           |          |
 *                  +--------------------------- CLOSING <-----+----------+
 *
 *   and from every state to STOPPED (agent_link_close()).
 *
 * Memory: the link owns its timers, its stream, its reader, the outbox
 * and the commands being carried out. A lookup abandoned by a timeout or
 * a close frees itself when libuv calls back. Commands still running when
 * the link closes are detached: their callbacks only free them. */
#include "agentproto/agent_link.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agentproto/agent_outbox.h"
#include "common/assert.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/queue.h"
#include "common/util.h"

/* Heartbeats remembered while they await their ack. The timeout is at
 * most three intervals, so no more than four are ever outstanding. */
#define LINK_HB_OUTSTANDING 8
/* Redirects followed in a row without a welcome, before the link falls
 * back to its own endpoints and backoff. */
#define LINK_MAX_REDIRECTS 8
/* Reports wait while this much is queued on the stream. */
#define LINK_WRITE_HIGH ((size_t)1 << 20)
/* Output lines asked for a service's diagnostics; fewer when the answer
 * would not fit in an ack. */
#define LINK_DIAG_LINES 200u
/* Backoff rounds beyond this do not grow the delay further. */
#define LINK_BACKOFF_SHIFT_MAX 30u

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

enum link_state {
    LINK_IDLE,
    LINK_WAITING,
    LINK_RESOLVING,
    LINK_CONNECTING,
    LINK_HANDSHAKE,
    LINK_HELLO,
    LINK_SESSION,
    LINK_CLOSING,
    LINK_STOPPED,
    LINK_STATE_NR
};

static const char *const link_state_names[LINK_STATE_NR] = {
    "idle",  "waiting", "resolving", "connecting", "handshake",
    "hello", "session", "closing",   "stopped",
};

#define LINK_BIT(s) (1u << (s))

static const unsigned link_moves[LINK_STATE_NR] = {
    [LINK_IDLE] = LINK_BIT(LINK_WAITING) | LINK_BIT(LINK_STOPPED),
    [LINK_WAITING] = LINK_BIT(LINK_RESOLVING) | LINK_BIT(LINK_CONNECTING) |
                     LINK_BIT(LINK_STOPPED),
    [LINK_RESOLVING] = LINK_BIT(LINK_CONNECTING) | LINK_BIT(LINK_WAITING) |
                       LINK_BIT(LINK_STOPPED),
    [LINK_CONNECTING] = LINK_BIT(LINK_HANDSHAKE) | LINK_BIT(LINK_CLOSING) |
                        LINK_BIT(LINK_WAITING) | LINK_BIT(LINK_STOPPED),
    [LINK_HANDSHAKE] =
        LINK_BIT(LINK_HELLO) | LINK_BIT(LINK_CLOSING) | LINK_BIT(LINK_STOPPED),
    [LINK_HELLO] = LINK_BIT(LINK_SESSION) | LINK_BIT(LINK_CLOSING) |
                   LINK_BIT(LINK_STOPPED),
    [LINK_SESSION] = LINK_BIT(LINK_CLOSING) | LINK_BIT(LINK_STOPPED),
    [LINK_CLOSING] = LINK_BIT(LINK_WAITING) | LINK_BIT(LINK_STOPPED),
    [LINK_STOPPED] = 0,
};

/* A frame on its way to the peer. */
struct link_write {
    struct tls_write req;
    struct agent_link *link;
};

/* A name lookup; abandoned (link NULL) when the link stopped waiting. */
struct link_resolve {
    uv_getaddrinfo_t req;
    struct agent_link *link;
};

/* A command being carried out by the services. */
struct link_cmd {
    rems_queue queue;
    struct agent_link *link; /* NULL once the link is closed. */
    uint64_t conn;           /* The connection it came on. */
    char id[PROTO_ID_MAX + 1];
    uint64_t term;
    int action;
};

struct heartbeat_out {
    uint64_t seq;
    uint64_t sent_ms;
};

struct agent_link {
    uv_loop_t *loop;
    const struct agent_config *config;
    const struct tls_context *tls;
    struct agent_fence *fence;
    struct agent_services services;
    char agent_version[PROTO_AGENT_VERSION_MAX + 1];
    size_t max_frame;
    unsigned close_linger_ms;
    enum link_state state;
    bool draining;
    uint64_t rng;

    /* Where to connect. */
    struct agent_endpoint target;
    char target_addr[AGENT_CONFIG_ADDR_SIZE];
    size_t next_endpoint; /* Index of the next configured endpoint. */
    size_t failures;      /* Attempts failed in this round. */
    unsigned round;       /* Backoff rounds since the last session. */
    unsigned redirects;   /* Redirects followed since the last session. */
    bool have_redirect;   /* redirect_to is the next target. */
    struct agent_endpoint redirect_to;
    uint64_t redirect_delay_ms; /* retry_after_ms of the last redirect. */
    bool had_session;           /* The connection being closed had a session. */

    /* The connection. */
    struct link_resolve *resolve;
    struct tls_stream *stream;
    uv_connect_t connect_req;
    struct proto_reader reader;
    struct tls_session *session; /* For resumption. */
    uint64_t conn;               /* Connections made, this one included. */

    /* The session. */
    uint64_t node_id;
    uint64_t term;
    uint64_t lease_ttl_ms;
    uint64_t hb_interval_ms;
    uint64_t hb_timeout_ms;
    uint64_t hb_seq;
    struct heartbeat_out hb_out[LINK_HB_OUTSTANDING];
    size_t n_hb_out;
    uint64_t lease_until_ms; /* Loop time when the lease runs out. */
    uint64_t session_since_ms;
    bool full_state_pending; /* hello left out the services. */

    /* Reports. */
    struct agent_outbox outbox;
    uint64_t report_seq;
    struct rems_buf wbuf;

    bool dead_man_triggered;
    rems_queue cmds; /* struct link_cmd being carried out. */

    uv_timer_t retry_timer;
    uv_timer_t phase_timer;
    uv_timer_t hb_timer;
    uv_timer_t dead_timer;
    uv_timer_t flush_timer;
    /* Stall detection (see receipt_ms()): the loop time before each of
     * the last two waits for I/O, and a timer that bounds those waits. */
    uv_prepare_t prepare;
    uv_timer_t pulse_timer;
    uint64_t wait_prev_ms;
    uint64_t wait_cur_ms;
    int handles_open;
    agent_link_close_cb close_cb;
    void *close_data;
    char errmsg[REMS_ERRMSG_SIZE];
};

static void link_drop(struct agent_link *l);
static void plan_next(struct agent_link *l);
static void schedule_flush(struct agent_link *l);

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static void sm_move(struct agent_link *l, enum link_state to)
{
    struct rems_log_line line;

    REMS_ASSERT((link_moves[l->state] & LINK_BIT(to)) != 0);
    rems_log_begin(&line, REMS_LOG_DEBUG, "link_state");
    rems_log_str(&line, "from", link_state_names[l->state]);
    rems_log_str(&line, "to", link_state_names[to]);
    rems_log_end(&line);
    l->state = to;
}

static uint64_t now_ms(struct agent_link *l)
{
    uv_update_time(l->loop);
    return uv_now(l->loop);
}

/* How often the loop wakes up at least, so that a wait for I/O is never
 * long while the process runs (see receipt_ms()). */
#define PULSE_MS 20

static void on_prepare(uv_prepare_t *p)
{
    struct agent_link *l = p->data;
    l->wait_prev_ms = l->wait_cur_ms;
    l->wait_cur_ms = now_ms(l);
}

static void on_pulse(uv_timer_t *t)
{
    (void)t; /* Waking the loop is all it is for. */
}

/* The earliest moment the bytes being handled now can have arrived, on
 * the loop's clock. Data read in this loop iteration arrived after the
 * previous wait for I/O began: had it been there before, that wait would
 * have returned it. When the process was stopped (SIGSTOP, a paused VM, a
 * long fault), a frame may have sat in the socket for the whole stop, and
 * the time of reading says nothing about it; the start of the previous
 * wait does, because the stop fell inside or after it. The pulse timer
 * keeps waits short while the process runs, so this costs at most a few
 * tens of milliseconds of a command's time in the normal case. */
static uint64_t receipt_ms(struct agent_link *l)
{
    uint64_t now = now_ms(l);
    return l->wait_prev_ms != 0 && l->wait_prev_ms < now ? l->wait_prev_ms
                                                         : now;
}

/* The moment up to which everything the node sent has been read: the
 * start of the last wait for I/O, which returned whatever had arrived by
 * then. The loop may have been busy since, in callbacks (a fence write
 * that waits for a slow disk) or stopped, and then the timers of the next
 * iteration run before the socket is read again: an answer may be waiting
 * there unread, and that time must not count against the node. */
static uint64_t heard_until_ms(struct agent_link *l, uint64_t now)
{
    return l->wait_cur_ms != 0 && l->wait_cur_ms < now ? l->wait_cur_ms : now;
}

/* xorshift64*: jitter only, so a weak generator will do. */
static uint64_t rand_u64(struct agent_link *l)
{
    l->rng ^= l->rng >> 12;
    l->rng ^= l->rng << 25;
    l->rng ^= l->rng >> 27;
    return l->rng * 2685821657736338717ull;
}

/* A delay between half of @ms and @ms. */
static uint64_t jitter(struct agent_link *l, uint64_t ms)
{
    return ms / 2 + rand_u64(l) % (ms / 2 + 1);
}

static void log_target(struct rems_log_line *line, struct agent_link *l)
{
    rems_log_str(line, "endpoint", l->target_addr);
}

static bool in_connection(const struct agent_link *l)
{
    return l->state == LINK_HELLO || l->state == LINK_SESSION;
}

static struct proto_str pstr(const char *s)
{
    struct proto_str p = {s, strlen(s)};
    return p;
}

/* ------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------ */

static void on_written(struct tls_write *req, int status)
{
    struct link_write *w = req->data;
    struct agent_link *l = w->link;

    rems_free(w);
    /* Write callbacks run before the stream's close callback, and the link
     * lives until then. */
    if (status == 0 && l->state == LINK_SESSION) {
        schedule_flush(l);
    }
}

/* Queue the @len bytes at @data on the stream. */
static int write_frame(struct agent_link *l, const char *data, size_t len)
{
    struct link_write *w;
    int rv;

    PRE(in_connection(l) && l->stream != NULL);
    w = rems_malloc(sizeof *w);
    if (w == NULL) {
        return REMS_ENOMEM;
    }
    w->link = l;
    w->req.data = w;
    rv = tls_stream_write(l->stream, &w->req, data, len, on_written);
    if (rv != 0) {
        rems_free(w);
    }
    return rv;
}

/* Encode and queue @m. On failure the caller closes the connection. */
static int send_msg(struct agent_link *l, const struct proto_msg *m)
{
    struct rems_log_line line;
    int rv;

    l->wbuf.len = 0;
    l->wbuf.failed = false;
    rv = proto_msg_encode(m, l->max_frame, &l->wbuf, l->errmsg);
    if (rv == 0) {
        rv = write_frame(l, l->wbuf.data, l->wbuf.len);
        if (rv != 0) {
            rems_errmsgf(l->errmsg, "write: %s", rems_strerror(rv));
        }
    }
    if (rv != 0) {
        rems_log_begin(&line, REMS_LOG_WARN, "send_failed");
        rems_log_str(&line, "type", proto_type_name(m->type));
        rems_log_str(&line, "error", l->errmsg);
        rems_log_end(&line);
    }
    return rv;
}

/* Send an error frame; the caller closes the connection (except for
 * unknown_type). */
static void send_error(struct agent_link *l, int code, const char *message)
{
    struct proto_msg m = {0};
    struct rems_log_line line;
    char msg[PROTO_MESSAGE_MAX + 1];

    rems_log_begin(&line, REMS_LOG_WARN, "protocol_error");
    log_target(&line, l);
    rems_log_str(&line, "code", proto_error_code_name(code));
    rems_log_str(&line, "message", message);
    rems_log_end(&line);
    snprintf(msg, sizeof msg, "%s", message);
    m.type = PROTO_ERROR;
    m.error.code = code;
    m.error.message = pstr(msg);
    (void)send_msg(l, &m);
}

/* ------------------------------------------------------------------------
 * Reports
 * ------------------------------------------------------------------------ */

static void on_flush(uv_timer_t *t)
{
    struct agent_link *l = t->data;
    struct rems_log_line line;
    size_t n;
    int rv;

    while (l->state == LINK_SESSION && agent_outbox_pending(&l->outbox) &&
           tls_stream_write_queue_size(l->stream) < LINK_WRITE_HIGH) {
        l->wbuf.len = 0;
        l->wbuf.failed = false;
        rv = agent_outbox_encode(&l->outbox, l->report_seq + 1, l->max_frame,
                                 &l->wbuf, &n, l->errmsg);
        if (rv == 0) {
            rv = write_frame(l, l->wbuf.data, l->wbuf.len);
        }
        if (rv != 0) {
            rems_log_begin(&line, REMS_LOG_WARN, "report_failed");
            rems_log_str(&line, "error", rems_strerror(rv));
            rems_log_end(&line);
            link_drop(l);
            return;
        }
        rems_log_begin(&line, REMS_LOG_DEBUG, "report_sent");
        rems_log_u64(&line, "seq", l->report_seq + 1);
        rems_log_u64(&line, "items", n);
        rems_log_u64(&line, "dropped", agent_outbox_dropped(&l->outbox));
        rems_log_end(&line);
        l->report_seq++;
        agent_outbox_consume(&l->outbox, n);
    }
}

static void schedule_flush(struct agent_link *l)
{
    if (l->state == LINK_SESSION && agent_outbox_pending(&l->outbox) &&
        !uv_is_active((uv_handle_t *)&l->flush_timer)) {
        uv_timer_start(&l->flush_timer, on_flush, 0, 0);
    }
}

void agent_link_report(struct agent_link *l, const struct proto_service *status)
{
    struct rems_log_line line;
    char errmsg[REMS_ERRMSG_SIZE];
    uint64_t dropped;
    int rv;

    PRE(l != NULL && status != NULL);
    if (l->state == LINK_STOPPED) {
        return;
    }
    dropped = agent_outbox_dropped(&l->outbox);
    rv = agent_outbox_push(&l->outbox, status, errmsg);
    if (rv != 0) {
        rems_log_begin(&line, REMS_LOG_WARN, "report_lost");
        rems_log_strn(&line, "service", status->service.p, status->service.len);
        rems_log_str(&line, "error", errmsg);
        rems_log_end(&line);
    } else if (agent_outbox_dropped(&l->outbox) > dropped) {
        rems_log_begin(&line, REMS_LOG_DEBUG, "report_dropped");
        rems_log_u64(&line, "dropped", agent_outbox_dropped(&l->outbox));
        rems_log_end(&line);
    }
    schedule_flush(l);
}

/* Queue the state of every service (hello could not carry it). */
static void report_full_state(struct agent_link *l)
{
    struct proto_service *items;
    size_t n;
    size_t i;

    if (l->services.ops->status(l->services.impl, &items, &n) != 0) {
        rems_log(REMS_LOG_WARN, "report_lost",
                 "could not read the state of the services");
        return;
    }
    for (i = 0; i < n; i++) {
        agent_link_report(l, &items[i]);
    }
    rems_free(items);
}

/* ------------------------------------------------------------------------
 * Answers to commands
 * ------------------------------------------------------------------------ */

static void send_nack(struct agent_link *l,
                      const char *id,
                      uint64_t term,
                      int reason,
                      const char *message)
{
    struct proto_msg m = {0};
    struct rems_log_line line;
    char msg[PROTO_MESSAGE_MAX + 1];

    rems_log_begin(&line, REMS_LOG_INFO, "command_nack");
    rems_log_str(&line, "id", id);
    rems_log_u64(&line, "term", term);
    rems_log_str(&line, "reason", proto_nack_reason_name(reason));
    rems_log_str(&line, "message", message);
    rems_log_end(&line);
    snprintf(msg, sizeof msg, "%s", message);
    m.type = PROTO_NACK;
    m.nack.id = pstr(id);
    m.nack.term = term;
    m.nack.reason = reason;
    m.nack.message = pstr(msg);
    if (send_msg(l, &m) != 0) {
        link_drop(l);
    }
}

/* Send ack @m (type and result filled in by the caller). */
static void send_ack(struct agent_link *l,
                     const char *id,
                     uint64_t term,
                     struct proto_msg *m)
{
    struct rems_log_line line;

    rems_log_begin(&line, REMS_LOG_INFO, "command_ack");
    rems_log_str(&line, "id", id);
    rems_log_u64(&line, "term", term);
    rems_log_end(&line);
    m->type = PROTO_ACK;
    m->ack.id = pstr(id);
    m->ack.term = term;
    if (send_msg(l, m) != 0) {
        link_drop(l);
    }
}

/* The nack reason for a failure @rv of the services. */
static int nack_reason_of(int rv)
{
    switch (rv) {
        case REMS_ENOTFOUND:
            return PROTO_NACK_UNKNOWN_SERVICE;
        case REMS_EBUSY:
            return PROTO_NACK_BUSY;
        default:
            return PROTO_NACK_FAILED;
    }
}

/* Command @id was recorded but did not run (busy, unknown service, its
 * deadline passed during the fence write): forget it. The leader counts a
 * nack duplicate as executed, so only ids of commands that ran may stay;
 * and a busy command may be sent again. */
static void fence_forget(struct agent_link *l, const char *id)
{
    struct rems_log_line line;
    char errmsg[REMS_ERRMSG_SIZE];

    if (agent_fence_forget(l->fence, id, errmsg) != 0) {
        rems_log_begin(&line, REMS_LOG_WARN, "fence_forget_failed");
        rems_log_str(&line, "id", id);
        rems_log_str(&line, "error", errmsg);
        rems_log_end(&line);
    }
}

static void on_cmd_done(void *data, int status, const char *msg)
{
    struct link_cmd *c = data;
    struct agent_link *l = c->link;
    struct proto_msg m = {0};
    struct rems_log_line line;
    char text[PROTO_MESSAGE_MAX + 1];

    if (l == NULL) {
        rems_free(c);
        return;
    }
    REMS_QUEUE_REMOVE(&c->queue);
    if (msg == NULL) {
        msg = "";
    }
    if (status == REMS_ENOTFOUND || status == REMS_EBUSY) {
        fence_forget(l, c->id);
    }
    if (l->state != LINK_SESSION || l->conn != c->conn) {
        /* The leader resends on the next connection; the fence answers
         * duplicate (or runs it, if it was forgotten above). */
        rems_log_begin(&line, REMS_LOG_INFO, "command_answer_lost");
        rems_log_str(&line, "id", c->id);
        rems_log_i64(&line, "status", status);
        rems_log_str(&line, "message", msg);
        rems_log_end(&line);
        rems_free(c);
        return;
    }
    if (status == 0) {
        if (msg[0] != '\0') {
            m.ack.result_kind = PROTO_RESULT_TEXT;
            m.ack.result_text.p = msg;
            m.ack.result_text.len = strlen(msg);
            if (m.ack.result_text.len > PROTO_RESULT_TEXT_MAX) {
                m.ack.result_text.len = PROTO_RESULT_TEXT_MAX;
            }
        }
        send_ack(l, c->id, c->term, &m);
    } else {
        if (msg[0] != '\0') {
            snprintf(text, sizeof text, "%s", msg);
        } else {
            snprintf(text, sizeof text, "%s", rems_strerror(status));
        }
        send_nack(l, c->id, c->term, nack_reason_of(status), text);
    }
    rems_free(c);
}

/* Whether the services know @service. */
static bool service_exists(struct agent_link *l, const char *service)
{
    struct proto_service *items;
    size_t len = strlen(service);
    bool found = false;
    size_t n;
    size_t i;

    if (l->services.ops->status(l->services.impl, &items, &n) != 0) {
        /* Let the action itself find out. */
        return true;
    }
    for (i = 0; i < n && !found; i++) {
        found = items[i].service.len == len &&
                memcmp(items[i].service.p, service, len) == 0;
    }
    rems_free(items);
    return found;
}

/* diagnostics without a service: what the agent knows of itself. */
static void
diagnostics_agent(struct agent_link *l, const char *id, uint64_t term)
{
    struct proto_msg m = {0};
    struct proto_kv kv[12];
    char values[12][32];
    struct proto_service *items;
    uint64_t now = now_ms(l);
    size_t n_services = 0;
    size_t n = 0;

#define KV(k, fmt, v)                                                          \
    do {                                                                       \
        snprintf(values[n], sizeof values[n], fmt, v);                         \
        kv[n].key = PROTO_STR(k);                                              \
        kv[n].value = pstr(values[n]);                                         \
        n++;                                                                   \
    } while (0)

    if (l->services.ops->status(l->services.impl, &items, &n_services) == 0) {
        rems_free(items);
    }
    kv[n].key = PROTO_STR("agent_id");
    kv[n].value = pstr(l->config->id);
    n++;
    kv[n].key = PROTO_STR("agent_version");
    kv[n].value = pstr(l->agent_version);
    n++;
    kv[n].key = PROTO_STR("endpoint");
    kv[n].value = pstr(l->target_addr);
    n++;
    KV("node_id", "%" PRIu64, l->node_id);
    KV("term", "%" PRIu64, l->term);
    KV("highest_term", "%" PRIu64, agent_fence_highest_term(l->fence));
    KV("executed_ids", "%zu", agent_fence_count(l->fence));
    KV("services", "%zu", n_services);
    KV("outbox", "%zu", agent_outbox_len(&l->outbox));
    KV("reports_dropped", "%" PRIu64, l->outbox.dropped_total);
    KV("session_ms", "%" PRIu64, now - l->session_since_ms);
    KV("lease_remaining_ms", "%" PRIu64,
       l->lease_until_ms > now ? l->lease_until_ms - now : 0);
#undef KV
    REMS_ASSERT(n <= REMS_ARRAY_SIZE(kv));
    m.ack.result_kind = PROTO_RESULT_MAP;
    m.ack.result = kv;
    m.ack.n_result = n;
    send_ack(l, id, term, &m);
}

static void diagnostics_service(struct agent_link *l,
                                const char *id,
                                uint64_t term,
                                const char *service)
{
    struct proto_msg m = {0};
    struct rems_buf out;
    char errmsg[REMS_ERRMSG_SIZE];
    unsigned lines = LINK_DIAG_LINES;
    int rv;

    rems_buf_init(&out);
    for (;;) {
        out.len = 0;
        rv = l->services.ops->diagnostics(l->services.impl, service, lines,
                                          &out, errmsg);
        if (rv != 0 || out.len <= PROTO_RESULT_TEXT_MAX || lines == 0) {
            break;
        }
        lines /= 2;
    }
    if (rv == 0 && out.len > PROTO_RESULT_TEXT_MAX) {
        rv = REMS_ETOOBIG;
        rems_errmsgf(errmsg, "diagnostics: %zu bytes, at most %d fit in an ack",
                     out.len, PROTO_RESULT_TEXT_MAX);
    }
    if (rv != 0) {
        send_nack(l, id, term, nack_reason_of(rv), errmsg);
    } else {
        m.ack.result_kind = PROTO_RESULT_TEXT;
        m.ack.result_text.p = out.data;
        m.ack.result_text.len = out.len;
        send_ack(l, id, term, &m);
    }
    rems_buf_close(&out);
}

/* Begin an asynchronous action of the services for command @c. */
static void cmd_begin(struct agent_link *l,
                      const struct proto_command *pc,
                      const char *id,
                      const char *service,
                      uint64_t remaining_ms)
{
    struct link_cmd *c;
    char errmsg[REMS_ERRMSG_SIZE];
    int rv;

    c = rems_calloc(1, sizeof *c);
    if (c == NULL) {
        fence_forget(l, id);
        send_nack(l, id, pc->term, PROTO_NACK_FAILED, "out of memory");
        return;
    }
    c->link = l;
    c->conn = l->conn;
    memcpy(c->id, id, strlen(id) + 1);
    c->term = pc->term;
    c->action = pc->action;
    REMS_QUEUE_PUSH(&l->cmds, &c->queue);
    /* The callback may run before the call returns, and frees @c. */
    if (pc->action == PROTO_ACTION_PUSH_MANIFEST) {
        rv = l->services.ops->push_manifest(l->services.impl, service,
                                            pc->manifest.p, pc->manifest.len,
                                            on_cmd_done, c, errmsg);
    } else {
        rv = l->services.ops->action(l->services.impl, service, pc->action,
                                     remaining_ms, on_cmd_done, c, errmsg);
    }
    if (rv != 0) {
        /* Nothing was done. */
        REMS_QUEUE_REMOVE(&c->queue);
        rems_free(c);
        fence_forget(l, id);
        send_nack(l, id, pc->term, nack_reason_of(rv), errmsg);
    }
}

static bool action_has_service(int action)
{
    return action >= PROTO_ACTION_START && action <= PROTO_ACTION_QUARANTINE;
}

static void on_command(struct agent_link *l, const struct proto_command *pc)
{
    struct rems_log_line line;
    char id[PROTO_ID_MAX + 1];
    char service[PROTO_SERVICE_MAX + 1];
    char msg[REMS_ERRMSG_SIZE];
    uint64_t received = receipt_ms(l);
    uint64_t elapsed;
    int verdict;
    int rv;

    /* The decoder checked both lengths. */
    memcpy(id, pc->id.p, pc->id.len);
    id[pc->id.len] = '\0';
    memcpy(service, pc->service.p, pc->service.len);
    service[pc->service.len] = '\0';

    rems_log_begin(&line, REMS_LOG_INFO, "command_received");
    rems_log_str(&line, "id", id);
    rems_log_u64(&line, "term", pc->term);
    rems_log_u64(&line, "ttl_remaining_ms", pc->ttl_remaining_ms);
    rems_log_u64(&line, "waited_ms", now_ms(l) - received);
    rems_log_strn(&line, "action", pc->action_name.p, pc->action_name.len);
    if (service[0] != '\0') {
        rems_log_str(&line, "service", service);
    }
    rems_log_end(&line);

    /* Time that may already have passed since the frame arrived: a stop
     * of the process while it waited in the socket (receipt_ms()). */
    verdict = agent_fence_check(l->fence, id, pc->term, pc->ttl_remaining_ms,
                                now_ms(l) - received, rems_wall_ms(), msg);
    if (verdict != AGENT_FENCE_ACCEPT) {
        send_nack(l, id, pc->term, verdict, msg);
        return;
    }
    if (pc->action == PROTO_ACTION_UNKNOWN) {
        rems_errmsgf(msg, "action \"%.*s\" is unknown to agent version %s",
                     (int)pc->action_name.len, pc->action_name.p,
                     l->agent_version);
        send_nack(l, id, pc->term, PROTO_NACK_UNKNOWN_ACTION, msg);
        return;
    }
    if ((action_has_service(pc->action) ||
         (pc->action == PROTO_ACTION_DIAGNOSTICS && service[0] != '\0')) &&
        !service_exists(l, service)) {
        rems_errmsgf(msg, "no service \"%s\" on this agent", service);
        send_nack(l, id, pc->term, PROTO_NACK_UNKNOWN_SERVICE, msg);
        return;
    }
    if (l->draining) {
        send_nack(l, id, pc->term, PROTO_NACK_BUSY,
                  "the agent is shutting down");
        return;
    }
    /* Accepted: on disk before anything runs (invariants 4 and 6). */
    rv = agent_fence_record(l->fence, id, pc->term, rems_wall_ms(),
                            pc->ttl_remaining_ms, msg);
    if (rv != 0) {
        rems_errmsg_wrap(msg, "fence");
        rems_log_begin(&line, REMS_LOG_ERROR, "fence_write_failed");
        rems_log_str(&line, "id", id);
        rems_log_str(&line, "error", msg);
        rems_log_end(&line);
        send_nack(l, id, pc->term, PROTO_NACK_FAILED, msg);
        return;
    }
    /* The write took time: the deadline is checked again (invariant 5). */
    elapsed = now_ms(l) - received;
    if (elapsed >= pc->ttl_remaining_ms) {
        rems_errmsgf(msg,
                     "ttl of %" PRIu64 " ms spent %" PRIu64
                     " ms ago, before it could begin",
                     pc->ttl_remaining_ms, elapsed - pc->ttl_remaining_ms);
        /* It did not run: a resend must not count as a duplicate, which
         * the leader records as executed. */
        fence_forget(l, id);
        send_nack(l, id, pc->term, PROTO_NACK_EXPIRED, msg);
        return;
    }
    /* The execution record (what the partition-testing harness checks
     * invariants 4-6 against): the action begins now. */
    rems_log_begin(&line, REMS_LOG_INFO, "command_started");
    rems_log_str(&line, "id", id);
    rems_log_u64(&line, "term", pc->term);
    rems_log_u64(&line, "ttl_remaining_ms", pc->ttl_remaining_ms);
    rems_log_u64(&line, "elapsed_ms", elapsed);
    rems_log_strn(&line, "action", pc->action_name.p, pc->action_name.len);
    if (service[0] != '\0') {
        rems_log_str(&line, "service", service);
    }
    rems_log_end(&line);
    switch (pc->action) {
        case PROTO_ACTION_DIAGNOSTICS:
            if (service[0] == '\0') {
                diagnostics_agent(l, id, pc->term);
            } else {
                diagnostics_service(l, id, pc->term, service);
            }
            break;
        default:
            cmd_begin(l, pc, id, service, pc->ttl_remaining_ms - elapsed);
            break;
    }
}

/* ------------------------------------------------------------------------
 * The session
 * ------------------------------------------------------------------------ */

static void on_dead_man(uv_timer_t *t)
{
    struct agent_link *l = t->data;
    struct rems_log_line line;

    if (l->dead_man_triggered || l->state == LINK_SESSION) {
        return;
    }
    l->dead_man_triggered = true;
    rems_log_begin(&line, REMS_LOG_ERROR, "dead_man_triggered");
    rems_log_u64(&line, "timeout_ms", l->config->dead_man_timeout_ms);
    rems_log_str(&line, "msg",
                 "no leader session for the dead-man timeout: services "
                 "enter their safe state");
    rems_log_end(&line);
    l->services.ops->safe_state(l->services.impl);
}

static void dead_man_arm(struct agent_link *l)
{
    if (l->config->dead_man_timeout_ms > 0 && !l->dead_man_triggered) {
        uv_timer_start(&l->dead_timer, on_dead_man,
                       l->config->dead_man_timeout_ms, 0);
    }
}

static void on_heartbeat_timer(uv_timer_t *t)
{
    struct agent_link *l = t->data;
    struct proto_msg m = {0};
    struct rems_log_line line;
    uint64_t now = now_ms(l);
    uint64_t heard = heard_until_ms(l, now);

    if (l->state != LINK_SESSION) {
        return;
    }
    /* Late only if the ack is missing from all that was read: judged by
     * the time the node had, not by the time the loop was busy. */
    if (l->n_hb_out > 0 && heard > l->hb_out[0].sent_ms &&
        heard - l->hb_out[0].sent_ms >= l->hb_timeout_ms) {
        rems_log_begin(&line, REMS_LOG_WARN, "heartbeat_timeout");
        log_target(&line, l);
        rems_log_u64(&line, "seq", l->hb_out[0].seq);
        rems_log_u64(&line, "waited_ms", now - l->hb_out[0].sent_ms);
        rems_log_end(&line);
        link_drop(l);
        return;
    }
    l->hb_seq++;
    if (l->n_hb_out < LINK_HB_OUTSTANDING) {
        l->hb_out[l->n_hb_out].seq = l->hb_seq;
        l->hb_out[l->n_hb_out].sent_ms = now;
        l->n_hb_out++;
    }
    m.type = PROTO_HEARTBEAT;
    m.heartbeat.seq = l->hb_seq;
    if (send_msg(l, &m) != 0) {
        link_drop(l);
    }
}

static void on_heartbeat_ack(struct agent_link *l,
                             const struct proto_heartbeat_ack *a)
{
    struct rems_log_line line;
    uint64_t now = now_ms(l);
    size_t k = 0;

    while (k < l->n_hb_out && l->hb_out[k].seq <= a->seq) {
        k++;
    }
    memmove(&l->hb_out[0], &l->hb_out[k],
            (l->n_hb_out - k) * sizeof l->hb_out[0]);
    l->n_hb_out -= k;
    if (a->term != l->term) {
        rems_log_begin(&line, REMS_LOG_INFO, "leader_term");
        rems_log_u64(&line, "term", a->term);
        rems_log_u64(&line, "previous", l->term);
        rems_log_end(&line);
        l->term = a->term;
    }
    l->lease_until_ms = now + a->lease_remaining_ms;
    rems_log_begin(&line, REMS_LOG_DEBUG, "heartbeat_ack");
    rems_log_u64(&line, "seq", a->seq);
    rems_log_u64(&line, "lease_remaining_ms", a->lease_remaining_ms);
    rems_log_end(&line);
}

static void on_welcome(struct agent_link *l, const struct proto_welcome *w)
{
    struct rems_log_line line;
    uint64_t interval = w->heartbeat_interval_ms;
    uint64_t conf = l->config->heartbeat_interval_ms;

    sm_move(l, LINK_SESSION);
    uv_timer_stop(&l->phase_timer);
    if (conf != 0 && conf < w->lease_ttl_ms) {
        interval = conf;
    } else if (conf != 0) {
        rems_log_begin(&line, REMS_LOG_WARN, "heartbeat_interval_ignored");
        rems_log_u64(&line, "heartbeat_interval_ms", conf);
        rems_log_u64(&line, "lease_ttl_ms", w->lease_ttl_ms);
        rems_log_str(&line, "msg",
                     "the configured interval is not below the lease; "
                     "using the node's");
        rems_log_end(&line);
    }
    l->node_id = w->node_id;
    l->term = w->term;
    l->lease_ttl_ms = w->lease_ttl_ms;
    l->hb_interval_ms = interval;
    l->hb_timeout_ms =
        3 * interval < w->lease_ttl_ms ? 3 * interval : w->lease_ttl_ms;
    l->hb_seq = 0;
    l->n_hb_out = 0;
    l->session_since_ms = now_ms(l);
    l->lease_until_ms = l->session_since_ms + w->lease_ttl_ms;
    l->redirects = 0;
    l->round = 0;
    l->failures = 0;

    uv_timer_stop(&l->dead_timer);
    if (l->dead_man_triggered) {
        l->dead_man_triggered = false;
        rems_log(REMS_LOG_INFO, "dead_man_rearmed", "a leader session is back");
    }
    rems_log_begin(&line, REMS_LOG_INFO, "agent_connected");
    log_target(&line, l);
    rems_log_u64(&line, "node_id", w->node_id);
    rems_log_u64(&line, "term", w->term);
    rems_log_u64(&line, "version", w->version);
    rems_log_u64(&line, "lease_ttl_ms", w->lease_ttl_ms);
    rems_log_u64(&line, "heartbeat_interval_ms", interval);
    rems_log_bool(&line, "resumed", tls_stream_session_reused(l->stream));
    rems_log_end(&line);

    uv_timer_start(&l->hb_timer, on_heartbeat_timer, interval, interval);
    if (l->full_state_pending) {
        l->full_state_pending = false;
        report_full_state(l);
    }
    schedule_flush(l);
}

static void on_redirect(struct agent_link *l, const struct proto_redirect *r)
{
    struct rems_log_line line;
    struct agent_endpoint to;
    bool usable;

    usable = r->leader_address.len > 0 &&
             agent_endpoint_parse(r->leader_address.p, r->leader_address.len,
                                  &to) == 0 &&
             l->redirects < LINK_MAX_REDIRECTS;
    rems_log_begin(&line, REMS_LOG_INFO, "redirected");
    log_target(&line, l);
    rems_log_strn(&line, "leader_address", r->leader_address.p,
                  r->leader_address.len);
    rems_log_u64(&line, "leader_id", r->leader_id);
    rems_log_u64(&line, "term", r->term);
    rems_log_u64(&line, "retry_after_ms", r->retry_after_ms);
    if (!usable) {
        rems_log_str(&line, "next",
                     r->leader_address.len == 0
                         ? "no leader known: next endpoint"
                     : l->redirects >= LINK_MAX_REDIRECTS
                         ? "too many redirects: next endpoint"
                         : "leader address not usable: next endpoint");
    }
    rems_log_end(&line);
    l->redirect_delay_ms = r->retry_after_ms < l->config->reconnect_max_ms
                               ? r->retry_after_ms
                               : l->config->reconnect_max_ms;
    if (usable) {
        l->have_redirect = true;
        l->redirect_to = to;
        l->redirects++;
    }
    link_drop(l);
}

static void on_node_error(struct agent_link *l, const struct proto_error *e)
{
    struct rems_log_line line;

    rems_log_begin(&line, REMS_LOG_WARN, "node_error");
    log_target(&line, l);
    rems_log_str(&line, "code", proto_error_code_name(e->code));
    rems_log_strn(&line, "message", e->message.p, e->message.len);
    rems_log_end(&line);
    if (e->code != PROTO_ERR_UNKNOWN_TYPE) {
        link_drop(l);
    }
}

static void handle_msg(struct agent_link *l, const struct proto_msg *m)
{
    char msg[REMS_ERRMSG_SIZE];

    switch (m->type) {
        case PROTO_WELCOME:
            if (l->state == LINK_HELLO) {
                on_welcome(l, &m->welcome);
                return;
            }
            break;
        case PROTO_REDIRECT:
            on_redirect(l, &m->redirect);
            return;
        case PROTO_ERROR:
            on_node_error(l, &m->error);
            return;
        case PROTO_HEARTBEAT_ACK:
            if (l->state == LINK_SESSION) {
                on_heartbeat_ack(l, &m->heartbeat_ack);
                return;
            }
            break;
        case PROTO_COMMAND:
            if (l->state == LINK_SESSION) {
                on_command(l, &m->command);
                return;
            }
            break;
        default:
            break;
    }
    rems_errmsgf(msg, "%s: not expected %s", proto_type_name(m->type),
                 l->state == LINK_HELLO ? "before welcome" : "from a node");
    send_error(l, PROTO_ERR_MALFORMED, msg);
    link_drop(l);
}

static void handle_frame(struct agent_link *l, const void *frame, size_t len)
{
    struct proto_msg m;
    int rv;

    rv = proto_msg_decode(frame, len, &m, l->errmsg);
    if (rv == REMS_EUNSUPPORTED && m.type == PROTO_TYPE_NONE) {
        /* A newer node's message: said, and ignored. */
        send_error(l, PROTO_ERR_UNKNOWN_TYPE, l->errmsg);
        return;
    }
    if (rv != 0) {
        send_error(l, proto_error_code_for(rv, m.type), l->errmsg);
        link_drop(l);
        return;
    }
    handle_msg(l, &m);
    proto_msg_close(&m);
}

/* ------------------------------------------------------------------------
 * The connection
 * ------------------------------------------------------------------------ */

static void
on_read(struct tls_stream *s, int status, const char *data, size_t len)
{
    struct agent_link *l = tls_stream_data(s);
    struct rems_log_line line;
    const void *frame;
    size_t flen;
    int rv;

    PRE(in_connection(l));
    if (status != 0 || len == 0) {
        rems_log_begin(&line, REMS_LOG_WARN, "agent_disconnected");
        log_target(&line, l);
        rems_log_str(&line, "reason",
                     status != 0 ? tls_stream_errmsg(s)
                                 : "the node closed the connection");
        if (proto_reader_pending(&l->reader) > 0) {
            rems_log_u64(&line, "cut_frame_bytes",
                         proto_reader_pending(&l->reader));
        }
        rems_log_end(&line);
        link_drop(l);
        return;
    }
    proto_reader_feed(&l->reader, data, len);
    for (;;) {
        rv = proto_reader_next(&l->reader, &frame, &flen, l->errmsg);
        if (rv != 0) {
            send_error(l, proto_error_code_for(rv, PROTO_TYPE_NONE), l->errmsg);
            link_drop(l);
            return;
        }
        if (frame == NULL) {
            return;
        }
        handle_frame(l, frame, flen);
        if (!in_connection(l)) {
            /* Closing: the rest of the chunk is not read, and the reader
             * is reset before the next connection. */
            return;
        }
    }
}

static void send_hello(struct agent_link *l)
{
    struct proto_kv labels[PROTO_LABELS_MAX];
    struct rems_log_line line;
    struct proto_service *items = NULL;
    struct proto_msg m = {0};
    size_t n = 0;
    size_t i;
    int rv;

    for (i = 0; i < l->config->n_labels; i++) {
        labels[i].key = pstr(l->config->labels[i].key);
        labels[i].value = pstr(l->config->labels[i].value);
    }
    m.type = PROTO_HELLO;
    m.hello.version = PROTO_VERSION;
    m.hello.agent_id = pstr(l->config->id);
    m.hello.labels = labels;
    m.hello.n_labels = l->config->n_labels;
    m.hello.highest_term = agent_fence_highest_term(l->fence);
    m.hello.agent_version = pstr(l->agent_version);
    l->full_state_pending = true;
    if (l->services.ops->status(l->services.impl, &items, &n) == 0 &&
        n <= PROTO_ITEMS_MAX) {
        m.hello.has_services = true;
        m.hello.services = items;
        m.hello.n_services = n;
    }
    l->wbuf.len = 0;
    l->wbuf.failed = false;
    rv = proto_msg_encode(&m, l->max_frame, &l->wbuf, l->errmsg);
    if (rv == 0 && m.hello.has_services) {
        l->full_state_pending = false;
    } else if (rv == REMS_ETOOBIG || rv == REMS_EINVAL) {
        /* Too many or too large to fit: the states follow in reports
         * right after welcome. */
        m.hello.has_services = false;
        m.hello.services = NULL;
        m.hello.n_services = 0;
        rv = proto_msg_encode(&m, l->max_frame, &l->wbuf, l->errmsg);
    }
    rems_free(items);
    if (rv == 0) {
        rv = write_frame(l, l->wbuf.data, l->wbuf.len);
    }
    if (rv != 0) {
        rems_log_begin(&line, REMS_LOG_WARN, "send_failed");
        rems_log_str(&line, "type", "hello");
        rems_log_str(&line, "error", rems_strerror(rv));
        rems_log_end(&line);
        link_drop(l);
    }
}

static void on_handshake(struct tls_stream *s, int status)
{
    struct agent_link *l = tls_stream_data(s);
    struct rems_log_line line;
    struct tls_session *session;
    char errmsg[REMS_ERRMSG_SIZE];

    if (l->state != LINK_HANDSHAKE) {
        return; /* REMS_ECANCELED: the stream is being closed. */
    }
    if (status != 0) {
        rems_log_begin(&line, REMS_LOG_WARN, "connect_failed");
        log_target(&line, l);
        rems_log_str(&line, "step", "tls");
        rems_log_str(&line, "error", tls_stream_errmsg(s));
        rems_log_end(&line);
        link_drop(l);
        return;
    }
    if (tls_stream_session_get(s, &session, errmsg) == 0) {
        tls_session_free(l->session);
        l->session = session;
    }
    sm_move(l, LINK_HELLO);
    send_hello(l);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct agent_link *l = req->data;
    struct rems_log_line line;

    if (l->state != LINK_CONNECTING) {
        return; /* UV_ECANCELED: the stream is being closed. */
    }
    if (status == 0 && tls_stream_start(l->stream, l->errmsg) == 0) {
        sm_move(l, LINK_HANDSHAKE);
        return;
    }
    rems_log_begin(&line, REMS_LOG_WARN, "connect_failed");
    log_target(&line, l);
    rems_log_str(&line, "step", "tcp");
    rems_log_str(&line, "error", status != 0 ? uv_strerror(status) : l->errmsg);
    rems_log_end(&line);
    link_drop(l);
}

/* Open a stream and connect it to @addr. */
static void connect_to(struct agent_link *l, const struct sockaddr *addr)
{
    struct tls_stream_options o = {0};
    struct rems_log_line line;
    int rv;

    sm_move(l, LINK_CONNECTING);
    o.server_name = l->config->tls_server_name[0] != '\0'
                        ? l->config->tls_server_name
                        : l->target.host;
    o.session = l->session;
    o.close_linger_ms = l->close_linger_ms;
    o.handshake_cb = on_handshake;
    o.read_cb = on_read;
    o.data = l;
    rv = tls_stream_open(l->loop, l->tls, &o, &l->stream, l->errmsg);
    if (rv != 0) {
        rems_log_begin(&line, REMS_LOG_WARN, "connect_failed");
        log_target(&line, l);
        rems_log_str(&line, "step", "open");
        rems_log_str(&line, "error", l->errmsg);
        rems_log_end(&line);
        uv_timer_stop(&l->phase_timer);
        l->had_session = false;
        sm_move(l, LINK_WAITING);
        plan_next(l);
        return;
    }
    l->conn++;
    l->connect_req.data = l;
    rv = uv_tcp_connect(&l->connect_req, tls_stream_tcp(l->stream), addr,
                        on_connect);
    if (rv != 0) {
        rems_log_begin(&line, REMS_LOG_WARN, "connect_failed");
        log_target(&line, l);
        rems_log_str(&line, "step", "tcp");
        rems_log_str(&line, "error", uv_strerror(rv));
        rems_log_end(&line);
        link_drop(l);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct link_resolve *r = REMS_CONTAINER_OF(req, struct link_resolve, req);
    struct agent_link *l = r->link;
    struct rems_log_line line;

    rems_free(r);
    if (l == NULL) {
        uv_freeaddrinfo(res);
        return; /* Abandoned. */
    }
    l->resolve = NULL;
    if (status != 0 || res == NULL) {
        rems_log_begin(&line, REMS_LOG_WARN, "connect_failed");
        log_target(&line, l);
        rems_log_str(&line, "step", "resolve");
        rems_log_str(&line, "error",
                     status != 0 ? uv_strerror(status) : "no address");
        rems_log_end(&line);
        uv_freeaddrinfo(res);
        uv_timer_stop(&l->phase_timer);
        l->had_session = false;
        sm_move(l, LINK_WAITING);
        plan_next(l);
        return;
    }
    connect_to(l, res->ai_addr);
    uv_freeaddrinfo(res);
}

static void resolve_abandon(struct agent_link *l)
{
    if (l->resolve != NULL) {
        l->resolve->link = NULL;
        uv_cancel((uv_req_t *)&l->resolve->req);
        l->resolve = NULL;
    }
}

static void on_phase_timeout(uv_timer_t *t)
{
    struct agent_link *l = t->data;
    struct rems_log_line line;

    rems_log_begin(&line, REMS_LOG_WARN, "connect_failed");
    log_target(&line, l);
    rems_log_str(&line, "step", link_state_names[l->state]);
    rems_log_str(&line, "error", "timed out");
    rems_log_u64(&line, "connect_timeout_ms", l->config->connect_timeout_ms);
    rems_log_end(&line);
    if (l->state == LINK_RESOLVING) {
        resolve_abandon(l);
        l->had_session = false;
        sm_move(l, LINK_WAITING);
        plan_next(l);
        return;
    }
    link_drop(l);
}

/* Begin an attempt on l->target. */
static void on_retry(uv_timer_t *t)
{
    struct agent_link *l = t->data;
    struct rems_log_line line;
    struct sockaddr_storage ss;
    struct addrinfo hints;
    struct link_resolve *r;
    char port[8];
    int rv;

    PRE(l->state == LINK_WAITING);
    agent_endpoint_format(&l->target, l->target_addr);
    rems_log_begin(&line, REMS_LOG_DEBUG, "agent_connecting");
    log_target(&line, l);
    rems_log_end(&line);
    uv_timer_start(&l->phase_timer, on_phase_timeout,
                   l->config->connect_timeout_ms, 0);
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(l->target.host, l->target.port,
                    (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(l->target.host, l->target.port,
                    (struct sockaddr_in6 *)&ss) == 0) {
        connect_to(l, (const struct sockaddr *)&ss);
        return;
    }
    sm_move(l, LINK_RESOLVING);
    r = rems_malloc(sizeof *r);
    rv = REMS_ENOMEM;
    if (r != NULL) {
        r->link = l;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof port, "%u", (unsigned)l->target.port);
        rv = uv_getaddrinfo(l->loop, &r->req, on_resolved, l->target.host, port,
                            &hints);
    }
    if (rv != 0) {
        rems_log_begin(&line, REMS_LOG_WARN, "connect_failed");
        log_target(&line, l);
        rems_log_str(&line, "step", "resolve");
        rems_log_str(&line, "error",
                     r == NULL ? "out of memory" : uv_strerror(rv));
        rems_log_end(&line);
        rems_free(r);
        uv_timer_stop(&l->phase_timer);
        l->had_session = false;
        sm_move(l, LINK_WAITING);
        plan_next(l);
        return;
    }
    l->resolve = r;
}

/* Choose the next target and when to try it; start the retry timer. */
static void plan_next(struct agent_link *l)
{
    const struct agent_config *c = l->config;
    struct rems_log_line line;
    uint64_t delay = 0;
    uint64_t backoff;
    unsigned shift;

    PRE(l->state == LINK_WAITING);
    if (l->have_redirect) {
        l->have_redirect = false;
        l->target = l->redirect_to;
        delay = l->redirect_delay_ms;
    } else if (l->had_session) {
        /* Back to the node that was the leader, after a short while. */
        l->round = 0;
        l->failures = 0;
        delay = jitter(l, c->reconnect_initial_ms);
    } else {
        l->failures++;
        delay = l->redirect_delay_ms;
        if (l->failures >= c->n_endpoints) {
            l->failures = 0;
            shift = l->round < LINK_BACKOFF_SHIFT_MAX ? l->round
                                                      : LINK_BACKOFF_SHIFT_MAX;
            backoff = c->reconnect_initial_ms << shift;
            if (backoff > c->reconnect_max_ms ||
                (backoff >> shift) != c->reconnect_initial_ms) {
                backoff = c->reconnect_max_ms;
            }
            backoff = jitter(l, backoff);
            delay = delay > backoff ? delay : backoff;
            l->round++;
        }
        l->target = c->endpoints[l->next_endpoint];
        l->next_endpoint = (l->next_endpoint + 1) % c->n_endpoints;
    }
    l->redirect_delay_ms = 0;
    l->had_session = false;
    rems_log_begin(&line, REMS_LOG_DEBUG, "reconnect_planned");
    agent_endpoint_format(&l->target, l->target_addr);
    log_target(&line, l);
    rems_log_u64(&line, "delay_ms", delay);
    rems_log_end(&line);
    uv_timer_start(&l->retry_timer, on_retry, delay, 0);
}

static void maybe_free(struct agent_link *l);

static void on_stream_closed(struct tls_stream *s)
{
    struct agent_link *l = tls_stream_data(s);

    l->stream = NULL;
    proto_reader_close(&l->reader);
    proto_reader_init(&l->reader, l->max_frame);
    if (l->state == LINK_STOPPED) {
        maybe_free(l);
        return;
    }
    sm_move(l, LINK_WAITING);
    plan_next(l);
}

/* Close the connection (whatever its step) and plan the next attempt once
 * it is closed. */
static void link_drop(struct agent_link *l)
{
    struct rems_log_line line;

    PRE(l->state == LINK_CONNECTING || l->state == LINK_HANDSHAKE ||
        in_connection(l));
    l->had_session = l->state == LINK_SESSION;
    if (l->had_session) {
        rems_log_begin(&line, REMS_LOG_INFO, "session_ended");
        log_target(&line, l);
        rems_log_u64(&line, "node_id", l->node_id);
        rems_log_u64(&line, "term", l->term);
        rems_log_u64(&line, "session_ms", now_ms(l) - l->session_since_ms);
        rems_log_end(&line);
        uv_timer_stop(&l->hb_timer);
        uv_timer_stop(&l->flush_timer);
        dead_man_arm(l);
    }
    uv_timer_stop(&l->phase_timer);
    sm_move(l, LINK_CLOSING);
    tls_stream_close(l->stream, on_stream_closed);
}

/* ------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------ */

int agent_link_open(uv_loop_t *loop,
                    const struct agent_link_options *opts,
                    struct agent_link **out,
                    char *errmsg)
{
    const struct agent_services_ops *ops;
    struct agent_link *l;
    size_t vlen;
    int rv;

    PRE(loop != NULL && opts != NULL && out != NULL && errmsg != NULL);
    ops = opts->services.ops;
    if (opts->config == NULL || opts->tls == NULL || opts->fence == NULL ||
        ops == NULL || ops->status == NULL || ops->action == NULL ||
        ops->push_manifest == NULL || ops->diagnostics == NULL ||
        ops->safe_state == NULL || opts->agent_version == NULL) {
        rems_errmsgf(errmsg, "agent link: missing option");
        rv = REMS_EINVAL;
        goto err;
    }
    vlen = strlen(opts->agent_version);
    if (vlen == 0 || vlen > PROTO_AGENT_VERSION_MAX ||
        opts->config->n_endpoints == 0 ||
        opts->max_frame > PROTO_FRAME_MAX_LIMIT ||
        opts->config->outbox_max_reports == 0) {
        rems_errmsgf(errmsg, "agent link: invalid options");
        rv = REMS_EINVAL;
        goto err;
    }
    l = rems_calloc(1, sizeof *l);
    if (l == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    l->loop = loop;
    l->config = opts->config;
    l->tls = opts->tls;
    l->fence = opts->fence;
    l->services = opts->services;
    memcpy(l->agent_version, opts->agent_version, vlen + 1);
    l->max_frame =
        opts->max_frame != 0 ? opts->max_frame : PROTO_FRAME_MAX_DEFAULT;
    l->close_linger_ms = opts->close_linger_ms;
    l->state = LINK_IDLE;
    l->rng =
        rems_wall_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)l;
    if (l->rng == 0) {
        l->rng = 1;
    }
    l->target = opts->config->endpoints[0];
    l->next_endpoint = 1 % opts->config->n_endpoints;
    agent_endpoint_format(&l->target, l->target_addr);
    proto_reader_init(&l->reader, l->max_frame);
    agent_outbox_init(&l->outbox, (size_t)opts->config->outbox_max_reports);
    rems_buf_init(&l->wbuf);
    REMS_QUEUE_INIT(&l->cmds);
    uv_timer_init(loop, &l->retry_timer);
    uv_timer_init(loop, &l->phase_timer);
    uv_timer_init(loop, &l->hb_timer);
    uv_timer_init(loop, &l->dead_timer);
    uv_timer_init(loop, &l->flush_timer);
    uv_prepare_init(loop, &l->prepare);
    uv_timer_init(loop, &l->pulse_timer);
    l->retry_timer.data = l;
    l->phase_timer.data = l;
    l->hb_timer.data = l;
    l->dead_timer.data = l;
    l->flush_timer.data = l;
    l->prepare.data = l;
    l->pulse_timer.data = l;
    uv_prepare_start(&l->prepare, on_prepare);
    uv_timer_start(&l->pulse_timer, on_pulse, PULSE_MS, PULSE_MS);
    /* Neither keeps the loop alive on its own. */
    uv_unref((uv_handle_t *)&l->prepare);
    uv_unref((uv_handle_t *)&l->pulse_timer);
    l->handles_open = 7;

    *out = l;
    return 0;

err:
    POST(rv != 0);
    return rv;
}

int agent_link_start(struct agent_link *l, char *errmsg)
{
    PRE(l != NULL && errmsg != NULL && l->state == LINK_IDLE);
    sm_move(l, LINK_WAITING);
    dead_man_arm(l);
    uv_timer_start(&l->retry_timer, on_retry, 0, 0);
    return 0;
}

void agent_link_drain(struct agent_link *l)
{
    PRE(l != NULL);
    l->draining = true;
}

bool agent_link_has_session(const struct agent_link *l)
{
    PRE(l != NULL);
    return l->state == LINK_SESSION;
}

bool agent_link_dead_man_triggered(const struct agent_link *l)
{
    PRE(l != NULL);
    return l->dead_man_triggered;
}

static void maybe_free(struct agent_link *l)
{
    agent_link_close_cb cb = l->close_cb;
    void *data = l->close_data;

    if (l->handles_open > 0 || l->stream != NULL) {
        return;
    }
    proto_reader_close(&l->reader);
    agent_outbox_close(&l->outbox);
    rems_buf_close(&l->wbuf);
    tls_session_free(l->session);
    rems_free(l);
    if (cb != NULL) {
        cb(data);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    struct agent_link *l = h->data;

    l->handles_open--;
    maybe_free(l);
}

void agent_link_close(struct agent_link *l, agent_link_close_cb cb, void *data)
{
    enum link_state was;
    rems_queue *q;

    PRE(l != NULL && l->state != LINK_STOPPED);
    was = l->state;
    if (was == LINK_SESSION) {
        rems_log(REMS_LOG_INFO, "session_ended", "the agent is stopping");
    }
    l->close_cb = cb;
    l->close_data = data;
    sm_move(l, LINK_STOPPED);
    while (!REMS_QUEUE_EMPTY(&l->cmds)) {
        q = REMS_QUEUE_HEAD(&l->cmds);
        REMS_QUEUE_REMOVE(q);
        REMS_QUEUE_DATA(q, struct link_cmd, queue)->link = NULL;
    }
    resolve_abandon(l);
    if (l->stream != NULL && was != LINK_CLOSING) {
        tls_stream_close(l->stream, on_stream_closed);
    }
    uv_close((uv_handle_t *)&l->retry_timer, on_timer_closed);
    uv_close((uv_handle_t *)&l->phase_timer, on_timer_closed);
    uv_close((uv_handle_t *)&l->hb_timer, on_timer_closed);
    uv_close((uv_handle_t *)&l->dead_timer, on_timer_closed);
    uv_close((uv_handle_t *)&l->flush_timer, on_timer_closed);
    uv_close((uv_handle_t *)&l->prepare, on_timer_closed);
    uv_close((uv_handle_t *)&l->pulse_timer, on_timer_closed);
}
