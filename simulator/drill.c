/* simulator/drill.c: rems-sim's step engine. See simulator/drill.h and
 * docs/adr/0006-drills.md.
 *
 * Threads. Four kinds, one lock (struct drill.mu) for what they share:
 *
 *   - the drill thread (the caller of drill_run()) runs the steps in
 *     order, then the settle phase, then computes the result;
 *   - the engine thread runs a libuv loop with the simulated agents
 *     (simulator/simagents.h). Only it touches the engine; the other
 *     threads ask it through `eng_req` and a uv_async_t (crash services,
 *     drop every connection, stop). Its event callback records sessions
 *     and executions into the shared logs;
 *   - the poller thread asks every node's GET /status (libcurl multi, all
 *     nodes at once, every 20 ms while a failover is measured, else every
 *     200 ms), sends the first-commit probe, polls /v1/drift while a crash
 *     is not yet seen and /v1/summary for the nominal state, samples the
 *     timeline and prints the progress line;
 *   - an issuer thread per background issue_commands step (a foreground
 *     one runs on the drill thread) sends POST /v1/commands at its rate
 *     through libcurl multi, so a node that does not answer does not slow
 *     the rate down.
 *
 * The cluster (struct simcluster) is only touched with the lock held.
 * HTTP calls are made without it. */
#define _GNU_SOURCE
#include "simulator/drill.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "agentproto/agent_config.h" /* agent_yaml_to_json() */
#include "agentproto/proto.h"
#include "common/file.h"
#include "common/heap.h"
#include "common/mpread.h" /* struct rems_buf */
#include "common/util.h"
#include "simulator/simagents.h"

/* How long a failover is measured at most, from its fault. */
#define FAULT_MEASURE_MS 60000u
#define STATUS_TIMEOUT_FAST_MS 150L
#define STATUS_TIMEOUT_IDLE_MS 1000L
#define PROBE_TIMEOUT_MS 500L
#define VIEW_TIMEOUT_MS 2000u
#define COMMAND_TIMEOUT_MS 5000L
#define API_TIMEOUT_MS 5000u
/* Writes of steps (apply_policy, transfer) retry this long on 503. */
#define WRITE_RETRY_MS 15000u
#define MAX_ISSUERS 16u
#define ID_SIZE 48u
#define PROBE_PATH "/v1/maintenance-windows/rems-sim-probe"
#define PROBE_BODY                                                             \
    "{\"scope\":\"agent\",\"target\":\"rems-sim-probe\","                    \
    "\"mode\":\"never_inside\",\"start_ms\":1,\"end_ms\":2}"

/* ------------------------------------------------------------------------
 * Shared state
 * ------------------------------------------------------------------------ */

/* What a node said in the last poll round. */
struct node_view {
    bool answered;
    uint8_t role; /* as drill_node_sample.role */
    bool ready;
    uint64_t term;
    uint64_t leader_id;
};

/* A command the drill sent. */
enum cmd_outcome {
    CMD_SENDING = 0,
    CMD_ISSUED,  /* 201 */
    CMD_REFUSED, /* 4xx, 503 no_leader */
    CMD_UNKNOWN  /* no answer, 503 unavailable, 504, 5xx */
};

struct cmd {
    char id[ID_SIZE];
    uint32_t agent;
    uint64_t sent_ms;
    uint8_t outcome;  /* enum cmd_outcome */
    uint8_t state;    /* 0 unknown/not in the log, 1 pending, 2 acked,
                         3 nacked, 4 expired, 5 cancelled */
    bool in_log;
};

struct session_event {
    uint64_t t_ms;
    uint32_t agent;
    bool up;
};

struct crash {
    uint32_t agent;
    char service[PROTO_SERVICE_MAX + 1];
    uint64_t t_ms;
    int64_t detected_ms; /* latency; -1 while not seen */
    bool done;           /* the engine crashed it */
};

struct nominal_change {
    uint64_t t_ms;
    bool nominal;
};

#define VEC(T)                                                                 \
    struct {                                                                   \
        T *v;                                                                  \
        size_t n;                                                              \
        size_t cap;                                                            \
    }

/* Append a zeroed element to the vector whose pointer is at @vp (a T **,
 * read and written with memcpy so no type is punned), with @n elements of
 * @elem bytes and room for *@cap. Returns it, or NULL when out of memory
 * (the vector is unchanged). */
static void *vec_push(void *vp, size_t *n, size_t *cap, size_t elem)
{
    char *v;

    memcpy(&v, vp, sizeof v);
    if (*n == *cap) {
        size_t bigger = *cap == 0 ? 64 : *cap * 2;
        char *p = rems_realloc(v, bigger * elem);
        if (p == NULL) {
            return NULL;
        }
        v = p;
        memcpy(vp, &v, sizeof v);
        *cap = bigger;
    }
    memset(v + *n * elem, 0, elem);
    return v + (*n)++ * elem;
}

#define VPUSH(vec)                                                             \
    ((__typeof__((vec).v))vec_push(&(vec).v, &(vec).n, &(vec).cap,           \
                                   sizeof *(vec).v))

enum eng_req_kind { ENG_CRASH = 1, ENG_DROP_ALL, ENG_STOP };

struct drill {
    const struct drill_options *o;
    const struct scenario *s;
    struct simcluster *c;
    struct drill_result *r;
    size_t n_agents;
    uint64_t t0; /* rems_mono_ms() at the start of the run */
    uint64_t rng;
    char id_prefix[32]; /* "sim<seed>-<run>-" of the drill's ids */

    pthread_mutex_t mu;
    pthread_cond_t cv;

    /* Engine (its thread only, except the request fields under mu). */
    uv_loop_t loop;
    uv_async_t async;
    struct simagents *sa;
    struct simagents_share shares[SCENARIO_MAX_BEHAVIOURS];
    pthread_t engine_thread;
    bool engine_started;
    bool engine_stopped; /* under mu: the stop callback ran */
    size_t crash_next;   /* under mu: crashes[] handed to the engine */
    bool drop_all;       /* under mu */
    bool stop;           /* under mu */
    uint64_t drop_done;  /* under mu: drop_all requests done */

    /* Logs, under mu. */
    uint64_t connected;
    VEC(struct session_event) sessions;
    VEC(struct simagents_exec) execs;
    VEC(uint64_t) exec_ms; /* drill time of each of execs */
    VEC(struct cmd) cmds;
    VEC(struct crash) crashes;
    VEC(struct drill_fault) faults;
    VEC(struct drill_sample) samples;
    VEC(struct nominal_change) nominal;
    VEC(struct drill_step_result) steps;
    uint64_t commands_sent;
    uint64_t commands_executed;
    uint64_t drill_executed; /* executions of the drill's own commands */
    bool oom; /* a log could not grow: the result says so */

    /* Poller, under mu. */
    pthread_t poller_thread;
    bool poller_started;
    bool poller_stop;
    struct node_view views[SIMCLUSTER_MAX_NODES];
    uint64_t round; /* poll rounds done */
    size_t leader;  /* agreed ready leader's index, or SIZE_MAX */
    uint64_t leader_term;
    size_t current_step; /* index, for the progress line */
    bool settling;

    /* Issuers. */
    pthread_t issuers[MAX_ISSUERS];
    size_t n_issuers;
};

static uint64_t now_ms(const struct drill *d)
{
    return rems_mono_ms() - d->t0;
}

/* splitmix64 */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *state, uint64_t n)
{
    return n == 0 ? 0 : rng_next(state) % n;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool interrupted(const struct drill *d)
{
    return d->o->interrupt != NULL && *d->o->interrupt != 0;
}

/* Sleep @ms in slices, returning early (false) when interrupted. */
static bool nap(const struct drill *d, uint64_t ms)
{
    uint64_t end = rems_mono_ms() + ms;
    uint64_t now;

    while ((now = rems_mono_ms()) < end) {
        if (interrupted(d)) {
            return false;
        }
        sleep_ms(end - now < 50 ? end - now : 50);
    }
    return !interrupted(d);
}

static void agent_id(size_t i, char *out, size_t size)
{
    snprintf(out, size, "%s-%zu", SIMAGENTS_DEFAULT_PREFIX, i + 1);
}

/* ------------------------------------------------------------------------
 * The engine thread
 * ------------------------------------------------------------------------ */

static void on_engine_event(struct simagents *sa,
                            size_t agent,
                            enum simagents_event event,
                            const struct simagents_exec *exec)
{
    struct drill *d = simagents_data(sa);
    uint64_t t = now_ms(d);

    pthread_mutex_lock(&d->mu);
    if (event == SIMAGENTS_EVENT_SESSION_UP ||
        event == SIMAGENTS_EVENT_SESSION_DOWN) {
        struct session_event *e = VPUSH(d->sessions);
        bool up = event == SIMAGENTS_EVENT_SESSION_UP;
        if (e == NULL) {
            d->oom = true;
        } else {
            e->t_ms = t;
            e->agent = (uint32_t)agent;
            e->up = up;
        }
        if (up) {
            d->connected++;
        } else if (d->connected > 0) {
            d->connected--;
        }
    } else if (event == SIMAGENTS_EVENT_EXEC && exec != NULL) {
        struct simagents_exec *x = VPUSH(d->execs);
        uint64_t *xt = VPUSH(d->exec_ms);
        if (x == NULL || xt == NULL) {
            d->oom = true;
            if (x != NULL) {
                d->execs.n--;
            }
        } else {
            *x = *exec;
            *xt = t;
        }
        d->commands_executed++;
        if (strncmp(exec->id, d->id_prefix, strlen(d->id_prefix)) == 0) {
            d->drill_executed++;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

static void on_engine_stopped(struct simagents *sa)
{
    struct drill *d = simagents_data(sa);

    uv_close((uv_handle_t *)&d->async, NULL);
    pthread_mutex_lock(&d->mu);
    d->engine_stopped = true;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void on_engine_async(uv_async_t *a)
{
    struct drill *d = a->data;
    struct crash todo[64];
    size_t n_todo;
    bool drop;
    bool stop;
    size_t i;

    do {
        n_todo = 0;
        pthread_mutex_lock(&d->mu);
        while (d->crash_next < d->crashes.n && n_todo < 64) {
            todo[n_todo++] = d->crashes.v[d->crash_next++];
        }
        drop = d->drop_all;
        d->drop_all = false;
        stop = d->stop;
        d->stop = false;
        pthread_mutex_unlock(&d->mu);
        for (i = 0; i < n_todo; i++) {
            size_t k;
            size_t n_svc = simagents_service_count(d->sa, todo[i].agent);
            for (k = 0; k < n_svc; k++) {
                char name[PROTO_SERVICE_MAX + 1];
                simagents_service_name(d->sa, todo[i].agent, k, name);
                if (strcmp(name, todo[i].service) == 0) {
                    (void)simagents_crash_service(d->sa, todo[i].agent, k);
                    break;
                }
            }
        }
        if (drop) {
            for (i = 0; i < d->n_agents; i++) {
                simagents_agent_drop(d->sa, i);
            }
            pthread_mutex_lock(&d->mu);
            d->drop_done++;
            pthread_cond_broadcast(&d->cv);
            pthread_mutex_unlock(&d->mu);
        }
        if (stop) {
            simagents_stop(d->sa, on_engine_stopped);
            return;
        }
    } while (n_todo == 64);
}

static void *engine_main(void *arg)
{
    struct drill *d = arg;
    char errmsg[REMS_ERRMSG_SIZE];

    if (simagents_start(d->sa, errmsg) != 0) {
        on_engine_stopped(d->sa);
    }
    uv_run(&d->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void engine_poke(struct drill *d)
{
    uv_async_send(&d->async);
}

/* ------------------------------------------------------------------------
 * HTTP
 * ------------------------------------------------------------------------ */

/* The index of a node that is up, a seeded choice, or SIZE_MAX; lock
 * held. Prefers the agreed leader when @leader_first. */
static size_t pick_up_node(struct drill *d, bool leader_first)
{
    size_t up[SIMCLUSTER_MAX_NODES];
    size_t n = 0;
    size_t i;

    if (leader_first && d->leader != SIZE_MAX &&
        simcluster_up(d->c, d->leader)) {
        return d->leader;
    }
    for (i = 0; i < d->c->n; i++) {
        if (simcluster_up(d->c, i)) {
            up[n++] = i;
        }
    }
    return n == 0 ? SIZE_MAX : up[rng_below(&d->rng, n)];
}

/* One blocking API call to a node that is up (the leader first when
 * @leader_first), retried on no answer and on 503 for up to @retry_ms
 * (0: once). @request_id makes the retries one write. */
static int api_call(struct drill *d,
                    const char *method,
                    const char *path,
                    const char *body,
                    const char *request_id,
                    bool leader_first,
                    uint64_t retry_ms,
                    long *status,
                    char **resp)
{
    uint64_t end = rems_mono_ms() + retry_ms;
    char header[128];
    const char *headers[3] = {NULL, NULL, NULL};
    int rv;

    if (request_id != NULL) {
        snprintf(header, sizeof header, "X-Rems-Request-Id: %s", request_id);
        headers[0] = header;
        headers[1] = "X-Rems-User: rems-sim";
    } else {
        headers[0] = "X-Rems-User: rems-sim";
    }
    for (;;) {
        char address[SIMCLUSTER_ADDR_SIZE];
        size_t i;

        pthread_mutex_lock(&d->mu);
        i = pick_up_node(d, leader_first);
        if (i != SIZE_MAX) {
            snprintf(address, sizeof address, "%s",
                     d->c->nodes[i].api_address);
        }
        pthread_mutex_unlock(&d->mu);
        rv = REMS_EIO;
        *status = 0;
        if (i != SIZE_MAX) {
            rv = simcluster_http_ex(method, address, path, body, headers,
                                    API_TIMEOUT_MS, status, resp);
            if (rv == REMS_ENOMEM) {
                return rv;
            }
            if (rv == 0 && *status != 503) {
                return 0;
            }
            if (rv == 0 && resp != NULL) {
                if (rems_mono_ms() >= end) {
                    return 0;
                }
                rems_free(*resp);
                *resp = NULL;
            }
        }
        if (rems_mono_ms() >= end || interrupted(d)) {
            return rv == 0 ? 0 : REMS_EIO;
        }
        sleep_ms(100);
    }
}

/* The "message" of an error answer, or the body's start. */
static void error_text(const char *body, char *out, size_t size)
{
    json_t *j = body != NULL ? json_loads(body, 0, NULL) : NULL;
    const char *m = j != NULL ? json_string_value(json_object_get(
                                    json_object_get(j, "error"), "message"))
                              : NULL;

    snprintf(out, size, "%.200s", m != NULL ? m : body != NULL ? body : "");
    json_decref(j);
}

/* ------------------------------------------------------------------------
 * The poller thread
 * ------------------------------------------------------------------------ */

struct poll_req {
    CURL *h;
    struct simcluster_buf body;
    bool active;
    bool done;
    long status;
};

static int req_init(struct poll_req *q)
{
    memset(q, 0, sizeof *q);
    q->h = curl_easy_init();
    if (q->h == NULL) {
        return REMS_ENOMEM;
    }
    curl_easy_setopt(q->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(q->h, CURLOPT_WRITEFUNCTION, simcluster_curl_body);
    curl_easy_setopt(q->h, CURLOPT_WRITEDATA, &q->body);
    curl_easy_setopt(q->h, CURLOPT_PRIVATE, q);
    return 0;
}

static void req_reset_body(struct poll_req *q)
{
    rems_free(q->body.p);
    q->body.p = NULL;
    q->body.len = 0;
    q->body.oom = false;
    q->done = false;
    q->status = 0;
}

static void req_start(CURLM *m,
                      struct poll_req *q,
                      const char *address,
                      const char *path,
                      const char *method,
                      const char *body,
                      long timeout_ms)
{
    char url[SIMCLUSTER_ADDR_SIZE + 256];

    req_reset_body(q);
    snprintf(url, sizeof url, "http://%s%s", address, path);
    curl_easy_setopt(q->h, CURLOPT_URL, url);
    curl_easy_setopt(q->h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(q->h, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (body != NULL) {
        curl_easy_setopt(q->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(q->h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(q->h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(q->h, CURLOPT_CUSTOMREQUEST, method);
    }
    q->active = curl_multi_add_handle(m, q->h) == CURLM_OK;
}

/* Run @m until every active request is done. */
static void multi_run(CURLM *m)
{
    int running = 1;
    CURLMsg *msg;
    int left;

    while (running > 0) {
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            break;
        }
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            struct poll_req *q = NULL;
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
            if (msg->data.result == CURLE_OK) {
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE,
                                  &q->status);
            }
            q->done = true;
            q->active = false;
            curl_multi_remove_handle(m, msg->easy_handle);
        }
        if (running > 0) {
            curl_multi_poll(m, NULL, 0, 20, NULL);
        }
    }
}

static void parse_status(const struct poll_req *q, struct node_view *v)
{
    json_t *st;
    json_t *l;
    const char *role;

    memset(v, 0, sizeof *v);
    if (!q->done || q->status != 200 || q->body.p == NULL) {
        return;
    }
    st = json_loads(q->body.p, 0, NULL);
    if (st == NULL) {
        return;
    }
    v->answered = true;
    role = json_string_value(json_object_get(st, "role"));
    v->role = role == NULL                     ? 0
              : strcmp(role, "leader") == 0    ? 3
              : strcmp(role, "candidate") == 0 ? 2
              : strcmp(role, "follower") == 0  ? 1
                                               : 0;
    v->ready = json_is_true(json_object_get(st, "leader_ready"));
    v->term = (uint64_t)json_integer_value(json_object_get(st, "term"));
    l = json_object_get(st, "leader");
    v->leader_id = json_is_object(l) ? (uint64_t)json_integer_value(
                                           json_object_get(l, "id"))
                                     : 0;
    json_decref(st);
}

/* Whether fault @f is still being measured. */
static bool fault_open(const struct drill *d,
                       const struct drill_fault *f,
                       uint64_t t)
{
    (void)d;
    return f->removed_leader && t < f->at_ms + FAULT_MEASURE_MS &&
           (f->detection_ms < 0 || f->election_ms < 0 ||
            f->first_commit_ms < 0);
}

/* After a round: the agreed leader and the failover figures. Lock held. */
static void round_update(struct drill *d, uint64_t t)
{
    size_t n_up = 0;
    size_t n_leaders = 0;
    size_t index = SIZE_MAX;
    uint64_t leader_id = 0;
    uint64_t term = 0;
    bool agree = true;
    size_t i;
    size_t k;

    for (i = 0; i < d->c->n; i++) {
        const struct node_view *v = &d->views[i];
        if (!simcluster_up(d->c, i)) {
            continue;
        }
        n_up++;
        if (!v->answered) {
            agree = false;
            continue;
        }
        if (v->role == 3) {
            n_leaders++;
            index = i;
            if (!v->ready) {
                agree = false;
            }
        }
        if (v->leader_id == 0) {
            agree = false;
        } else if (leader_id == 0) {
            leader_id = v->leader_id;
            term = v->term;
        } else if (leader_id != v->leader_id || term != v->term) {
            agree = false;
        }
    }
    if (n_up > 0 && n_leaders == 1 && agree &&
        d->c->nodes[index].id == leader_id) {
        d->leader = index;
        d->leader_term = term;
    } else {
        d->leader = SIZE_MAX;
    }

    for (k = 0; k < d->faults.n; k++) {
        struct drill_fault *f = &d->faults.v[k];
        bool all_answered = true;
        bool any_answered = false;
        bool names_old = false;
        if (!fault_open(d, f, t)) {
            continue;
        }
        for (i = 0; i < d->c->n; i++) {
            const struct node_view *v = &d->views[i];
            if (d->c->nodes[i].id == f->old_leader ||
                !simcluster_up(d->c, i)) {
                continue;
            }
            if (!v->answered) {
                all_answered = false;
                continue;
            }
            any_answered = true;
            if (v->leader_id == f->old_leader) {
                names_old = true;
            }
            if (f->election_ms < 0 && v->role == 3 && v->ready &&
                v->term > f->old_term) {
                f->election_ms = (int64_t)(t - f->at_ms);
                f->new_leader = d->c->nodes[i].id;
                f->new_term = v->term;
            }
        }
        if (f->detection_ms < 0 && any_answered && all_answered &&
            !names_old) {
            f->detection_ms = (int64_t)(t - f->at_ms);
        }
        if (f->election_ms >= 0 && f->detection_ms < 0) {
            /* A new leader was seen first: nobody names the old one. */
            f->detection_ms = f->election_ms;
        }
    }
}

/* The open fault still waiting for its first commit, or NULL. Lock held. */
static struct drill_fault *probe_fault(struct drill *d, uint64_t t)
{
    size_t k;

    for (k = d->faults.n; k > 0; k--) {
        struct drill_fault *f = &d->faults.v[k - 1];
        if (fault_open(d, f, t) && f->first_commit_ms < 0) {
            return f;
        }
    }
    return NULL;
}

static void take_sample(struct drill *d, uint64_t t)
{
    struct drill_sample *s;
    size_t i;

    if (d->samples.n >= DRILL_MAX_SAMPLES) {
        return;
    }
    s = VPUSH(d->samples);
    if (s == NULL) {
        d->oom = true;
        return;
    }
    s->t_ms = t;
    for (i = 0; i < d->c->n; i++) {
        s->nodes[i].state = (uint8_t)d->c->nodes[i].state;
        if (d->views[i].answered) {
            s->nodes[i].role = d->views[i].role;
            s->nodes[i].term = d->views[i].term;
            s->nodes[i].leader_id = d->views[i].leader_id;
        }
    }
    s->agents_connected = d->connected;
    s->commands_sent = d->commands_sent;
    s->commands_executed = d->commands_executed;
}

static void progress_line(struct drill *d, uint64_t t)
{
    char leader[48];
    uint64_t issued = 0;
    uint64_t executed = 0;
    size_t i;

    if (d->leader != SIZE_MAX) {
        snprintf(leader, sizeof leader, "leader %" PRIu64 " term %" PRIu64,
                 d->c->nodes[d->leader].id, d->leader_term);
    } else {
        snprintf(leader, sizeof leader, "no leader");
    }
    for (i = 0; i < d->cmds.n; i++) {
        if (d->cmds.v[i].outcome == CMD_ISSUED) {
            issued++;
        }
    }
    executed = d->drill_executed;
    fprintf(stderr,
            "rems-sim: %7.1f s  %s %zu/%zu %-20s  %s  agents %" PRIu64
            "/%zu  commands issued %" PRIu64 ", pending %" PRIu64 "\n",
            (double)t / 1000.0, d->settling ? "settle" : "step",
            d->settling ? d->s->n_steps : d->current_step + 1, d->s->n_steps,
            d->settling ? ""
                        : scenario_step_name(
                              d->s->steps[d->current_step < d->s->n_steps
                                              ? d->current_step
                                              : d->s->n_steps - 1]
                                  .kind),
            leader, d->connected, d->n_agents, issued,
            issued > executed ? issued - executed : 0);
}

/* Drift: mark the crashes seen in /v1/drift of the leader. */
static void poll_drift(struct drill *d, const char *address)
{
    long status;
    char *body = NULL;
    json_t *j;
    json_t *items;
    size_t i;
    size_t k;
    uint64_t t;

    if (simcluster_http("GET", address, "/v1/drift", NULL, VIEW_TIMEOUT_MS,
                        &status, &body) != 0) {
        return;
    }
    t = now_ms(d);
    j = status == 200 ? json_loads(body, 0, NULL) : NULL;
    rems_free(body);
    items = json_object_get(j, "items");
    pthread_mutex_lock(&d->mu);
    for (k = 0; k < d->crashes.n; k++) {
        struct crash *c = &d->crashes.v[k];
        char id[64];
        if (c->detected_ms >= 0 || !c->done) {
            continue;
        }
        agent_id(c->agent, id, sizeof id);
        for (i = 0; i < json_array_size(items); i++) {
            json_t *it = json_array_get(items, i);
            const char *a = json_string_value(json_object_get(it, "agent"));
            const char *s = json_string_value(json_object_get(it, "service"));
            const char *kind = json_string_value(json_object_get(it, "kind"));
            /* A crash shows as an unhealthy service, or, for a service
             * whose drift was escalated before, as its open incident or
             * failed deployment; other drift of that service (a rollout
             * not yet there) says nothing about the crash. */
            bool down = kind != NULL &&
                        (strcmp(kind, "unhealthy_service") == 0 ||
                         strcmp(kind, "unresolved_incident") == 0 ||
                         strcmp(kind, "failed_deployment") == 0);
            if (down && a != NULL && s != NULL && strcmp(a, id) == 0 &&
                strcmp(s, c->service) == 0) {
                c->detected_ms = (int64_t)(t - c->t_ms);
                break;
            }
        }
    }
    pthread_mutex_unlock(&d->mu);
    json_decref(j);
}

static void poll_summary(struct drill *d, const char *address)
{
    long status;
    char *body = NULL;
    json_t *j;
    const char *state;
    uint64_t t;

    if (simcluster_http("GET", address,
                        "/v1/summary?agent=rems-sim-none&site=rems-sim-none",
                        NULL, VIEW_TIMEOUT_MS, &status, &body) != 0) {
        return;
    }
    t = now_ms(d);
    j = status == 200 ? json_loads(body, 0, NULL) : NULL;
    rems_free(body);
    state = json_string_value(
        json_object_get(json_object_get(j, "cluster"), "state"));
    if (state != NULL) {
        bool nominal = strcmp(state, "nominal") == 0;
        pthread_mutex_lock(&d->mu);
        if (d->nominal.n == 0 ||
            d->nominal.v[d->nominal.n - 1].nominal != nominal) {
            struct nominal_change *c = VPUSH(d->nominal);
            if (c == NULL) {
                d->oom = true;
            } else {
                c->t_ms = t;
                c->nominal = nominal;
            }
        }
        pthread_mutex_unlock(&d->mu);
    }
    json_decref(j);
}

static void *poller_main(void *arg)
{
    struct drill *d = arg;
    struct poll_req reqs[SIMCLUSTER_MAX_NODES];
    struct poll_req probe;
    CURLM *m = curl_multi_init();
    uint64_t next_sample = 0;
    uint64_t next_progress = 1000;
    uint64_t next_drift = 0;
    uint64_t next_summary = 0;
    size_t i;
    bool ok = m != NULL && req_init(&probe) == 0;

    for (i = 0; i < SIMCLUSTER_MAX_NODES && ok; i++) {
        ok = req_init(&reqs[i]) == 0;
    }
    if (!ok) {
        pthread_mutex_lock(&d->mu);
        d->oom = true;
        pthread_mutex_unlock(&d->mu);
    }
    while (ok) {
        char addr[SIMCLUSTER_MAX_NODES][SIMCLUSTER_ADDR_SIZE];
        bool up[SIMCLUSTER_MAX_NODES];
        char probe_addr[SIMCLUSTER_ADDR_SIZE] = "";
        char leader_addr[SIMCLUSTER_ADDR_SIZE] = "";
        bool fast = false;
        bool want_drift = false;
        uint64_t start = rems_mono_ms();
        uint64_t t = now_ms(d);
        size_t n;
        size_t k;

        pthread_mutex_lock(&d->mu);
        if (d->poller_stop) {
            pthread_mutex_unlock(&d->mu);
            break;
        }
        n = d->c->n;
        for (i = 0; i < n; i++) {
            if (d->c->local) {
                simcluster_reap(d->c, i);
            }
            up[i] = simcluster_up(d->c, i);
            snprintf(addr[i], sizeof addr[i], "%s", d->c->nodes[i].api_address);
        }
        for (k = 0; k < d->faults.n; k++) {
            if (fault_open(d, &d->faults.v[k], t)) {
                fast = true;
            }
        }
        {
            struct drill_fault *f = probe_fault(d, t);
            if (f != NULL) {
                size_t j = f->new_leader != 0
                               ? simcluster_index(d->c, f->new_leader)
                               : SIZE_MAX;
                if (j == SIZE_MAX || !up[j]) {
                    /* Any survivor: it forwards, or says no_leader. */
                    for (i = 0; i < n; i++) {
                        if (up[i] && d->c->nodes[i].id != f->old_leader) {
                            j = i;
                            break;
                        }
                    }
                }
                if (j != SIZE_MAX && up[j]) {
                    snprintf(probe_addr, sizeof probe_addr, "%s", addr[j]);
                }
            }
        }
        for (k = 0; k < d->crashes.n; k++) {
            if (d->crashes.v[k].done && d->crashes.v[k].detected_ms < 0) {
                want_drift = true;
            }
        }
        pthread_mutex_unlock(&d->mu);

        for (i = 0; i < n; i++) {
            req_reset_body(&reqs[i]);
            if (up[i]) {
                req_start(m, &reqs[i], addr[i], "/status", "GET", NULL,
                          fast ? STATUS_TIMEOUT_FAST_MS
                               : STATUS_TIMEOUT_IDLE_MS);
            }
        }
        req_reset_body(&probe);
        if (probe_addr[0] != '\0') {
            req_start(m, &probe, probe_addr, PROBE_PATH, "PUT", PROBE_BODY,
                      PROBE_TIMEOUT_MS);
        }
        multi_run(m);
        t = now_ms(d);

        pthread_mutex_lock(&d->mu);
        for (i = 0; i < n; i++) {
            parse_status(&reqs[i], &d->views[i]);
        }
        d->round++;
        if (probe.done && probe.status == 200) {
            struct drill_fault *f = probe_fault(d, t);
            if (f != NULL) {
                f->first_commit_ms = (int64_t)(t - f->at_ms);
            }
        }
        round_update(d, t);
        if (d->leader != SIZE_MAX) {
            snprintf(leader_addr, sizeof leader_addr, "%s", addr[d->leader]);
        }
        if (t >= next_sample) {
            take_sample(d, t);
            next_sample = t + DRILL_SAMPLE_MS;
        }
        if (d->o->progress && t >= next_progress) {
            progress_line(d, t);
            next_progress = t + 1000;
        }
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);

        if (leader_addr[0] != '\0') {
            if (want_drift && t >= next_drift) {
                poll_drift(d, leader_addr);
                next_drift = t + DRILL_DRIFT_POLL_MS;
            }
            if (t >= next_summary) {
                poll_summary(d, leader_addr);
                next_summary = t + DRILL_SUMMARY_POLL_MS;
            }
        }
        {
            uint64_t spent = rems_mono_ms() - start;
            uint64_t period = fast ? DRILL_STATUS_POLL_MS : DRILL_STATUS_IDLE_MS;
            if (want_drift && period > DRILL_DRIFT_POLL_MS) {
                period = DRILL_DRIFT_POLL_MS;
            }
            if (spent < period) {
                sleep_ms(period - spent);
            }
        }
    }
    for (i = 0; i < SIMCLUSTER_MAX_NODES; i++) {
        if (reqs[i].h != NULL) {
            req_reset_body(&reqs[i]);
            curl_easy_cleanup(reqs[i].h);
        }
    }
    if (probe.h != NULL) {
        req_reset_body(&probe);
        curl_easy_cleanup(probe.h);
    }
    if (m != NULL) {
        curl_multi_cleanup(m);
    }
    return NULL;
}

/* Wait until the poller has done a round that began after now. */
static void wait_fresh_round(struct drill *d)
{
    uint64_t target;

    pthread_mutex_lock(&d->mu);
    target = d->round + 2;
    while (d->round < target && !interrupted(d)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
    }
    pthread_mutex_unlock(&d->mu);
}

/* Wait for an agreed ready leader, up to @timeout_ms. Returns its index
 * or SIZE_MAX. */
static size_t wait_leader(struct drill *d, uint64_t timeout_ms)
{
    uint64_t end = rems_mono_ms() + timeout_ms;
    size_t leader;

    wait_fresh_round(d);
    for (;;) {
        pthread_mutex_lock(&d->mu);
        leader = d->leader;
        pthread_mutex_unlock(&d->mu);
        if (leader != SIZE_MAX || rems_mono_ms() >= end || interrupted(d)) {
            return leader;
        }
        sleep_ms(DRILL_STATUS_POLL_MS);
    }
}

/* ------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------ */

struct issue_job {
    struct drill *d;
    const struct scenario_step *st;
    uint64_t seed;
    size_t step_index;
};

struct issue_req {
    struct poll_req q;
    size_t cmd; /* index in d->cmds */
    char *body;
    struct curl_slist *headers;
};

static void issue_done(struct drill *d, struct issue_req *r)
{
    uint8_t outcome;

    if (!r->q.done || r->q.status == 0) {
        outcome = CMD_UNKNOWN;
    } else if (r->q.status == 201) {
        outcome = CMD_ISSUED;
    } else if (r->q.status == 503) {
        outcome = r->q.body.p != NULL &&
                          strstr(r->q.body.p, "\"no_leader\"") != NULL
                      ? CMD_REFUSED
                      : CMD_UNKNOWN;
    } else if (r->q.status >= 400 && r->q.status < 500) {
        outcome = CMD_REFUSED;
    } else {
        outcome = CMD_UNKNOWN;
    }
    pthread_mutex_lock(&d->mu);
    d->cmds.v[r->cmd].outcome = outcome;
    pthread_mutex_unlock(&d->mu);
    rems_free(r->body);
    r->body = NULL;
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    req_reset_body(&r->q);
    curl_easy_cleanup(r->q.h);
    rems_free(r);
}

static void issue_reap(struct drill *d, CURLM *m, size_t *in_flight)
{
    CURLMsg *msg;
    int left;
    int running;

    curl_multi_perform(m, &running);
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        struct poll_req *q = NULL;
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
        if (msg->data.result == CURLE_OK) {
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE,
                              &q->status);
        }
        q->done = true;
        curl_multi_remove_handle(m, msg->easy_handle);
        issue_done(d, (struct issue_req *)q); /* q is the first member */
        (*in_flight)--;
    }
}

/* @j as compact JSON text on rems_malloc, or NULL. */
static char *dumps(const json_t *j)
{
    json_free_t jfree;
    char *text = json_dumps(j, JSON_COMPACT);
    char *copy = text != NULL ? rems_strdup(text) : NULL;

    json_get_alloc_funcs(NULL, &jfree);
    if (text != NULL) {
        jfree(text);
    }
    return copy;
}

static const char *action_name(int action)
{
    return proto_action_name(action);
}

/* Send one command; false when out of memory. */
static bool issue_one(struct issue_job *j, CURLM *m, uint64_t *rng, size_t *n)
{
    struct drill *d = j->d;
    const struct scenario_step *st = j->st;
    struct issue_req *r = rems_calloc(1, sizeof *r);
    char address[SIMCLUSTER_ADDR_SIZE] = "";
    char agent[64];
    char service[PROTO_SERVICE_MAX + 1];
    char header[128];
    struct cmd *c;
    size_t agent_index = (size_t)rng_below(rng, d->n_agents);
    size_t i;
    json_t *body;

    if (r == NULL || req_init(&r->q) != 0) {
        rems_free(r);
        return false;
    }
    agent_id(agent_index, agent, sizeof agent);
    if (st->u.issue_commands.service != NULL) {
        snprintf(service, sizeof service, "%s", st->u.issue_commands.service);
    } else {
        snprintf(service, sizeof service, "%s-%u",
                 SIMAGENTS_DEFAULT_SERVICE_PREFIX,
                 (unsigned)rng_below(rng, d->s->agents.services));
    }
    pthread_mutex_lock(&d->mu);
    c = VPUSH(d->cmds);
    if (c == NULL) {
        d->oom = true;
        pthread_mutex_unlock(&d->mu);
        curl_easy_cleanup(r->q.h);
        rems_free(r);
        return false;
    }
    snprintf(c->id, sizeof c->id, "%s%02zu-%08zu", d->id_prefix, j->step_index,
             (*n)++);
    c->agent = (uint32_t)agent_index;
    c->sent_ms = now_ms(d);
    c->outcome = CMD_SENDING;
    r->cmd = d->cmds.n - 1;
    i = pick_up_node(d, false);
    if (i != SIZE_MAX) {
        snprintf(address, sizeof address, "%s", d->c->nodes[i].api_address);
    }
    d->commands_sent++;
    body = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "id", c->id, "agent",
                     agent, "action", action_name(st->u.issue_commands.action),
                     "service", service, "ttl_ms",
                     (json_int_t)st->u.issue_commands.ttl_ms, "reason",
                     "rems-sim drill");
    snprintf(header, sizeof header, "X-Rems-Request-Id: %s", c->id);
    pthread_mutex_unlock(&d->mu);
    r->body = body != NULL ? dumps(body) : NULL;
    json_decref(body);
    r->headers = curl_slist_append(NULL, header);
    if (r->body == NULL || r->headers == NULL) {
        issue_done(d, r);
        return false;
    }
    {
        struct curl_slist *more;
        more = curl_slist_append(r->headers, "Content-Type: application/json");
        if (more != NULL) {
            r->headers = more;
            more = curl_slist_append(r->headers, "X-Rems-User: rems-sim");
        }
        if (more == NULL) {
            issue_done(d, r);
            return false;
        }
        r->headers = more;
        more = curl_slist_append(r->headers, "Expect:");
        if (more == NULL) {
            issue_done(d, r);
            return false;
        }
        r->headers = more;
    }
    if (address[0] == '\0') {
        /* No node is up: not sent, never proposed. */
        r->q.done = true;
        r->q.status = 0;
        issue_done(d, r);
        return true;
    }
    curl_easy_setopt(r->q.h, CURLOPT_HTTPHEADER, r->headers);
    req_start(m, &r->q, address, "/v1/commands", "POST", r->body,
              COMMAND_TIMEOUT_MS);
    if (!r->q.active) {
        issue_done(d, r);
        return false;
    }
    return true;
}

static void *issue_main(void *arg)
{
    struct issue_job *j = arg;
    struct drill *d = j->d;
    const struct scenario_step *st = j->st;
    CURLM *m = curl_multi_init();
    uint64_t rng = j->seed;
    uint64_t start = rems_mono_ms();
    uint64_t end = start + st->u.issue_commands.duration_ms;
    size_t in_flight = 0;
    size_t sent = 0;
    size_t n = 0;

    if (m == NULL) {
        pthread_mutex_lock(&d->mu);
        d->oom = true;
        pthread_mutex_unlock(&d->mu);
        rems_free(j);
        return NULL;
    }
    for (;;) {
        uint64_t now = rems_mono_ms();
        uint64_t due;
        if (now >= end || interrupted(d)) {
            break;
        }
        due = start + (uint64_t)((double)sent * 1000.0 /
                                 st->u.issue_commands.rate);
        if (now >= due) {
            if (issue_one(j, m, &rng, &n)) {
                in_flight++;
            }
            sent++;
            continue;
        }
        curl_multi_poll(m, NULL, 0, (int)(due - now < 20 ? due - now : 20),
                        NULL);
        issue_reap(d, m, &in_flight);
    }
    while (in_flight > 0) {
        curl_multi_poll(m, NULL, 0, 20, NULL);
        issue_reap(d, m, &in_flight);
    }
    curl_multi_cleanup(m);
    rems_free(j);
    return NULL;
}

/* Page through GET /v1/commands from the drill's first id and record the
 * state of each of the drill's commands. Returns the number of drill
 * commands (issued or unknown) still without a final state, or -1 when
 * the log could not be read. */
static long fetch_commands(struct drill *d)
{
    char after[ID_SIZE + 8];
    long open = 0;
    size_t k;

    snprintf(after, sizeof after, "%s", d->id_prefix);
    /* Ids sort after the prefix itself. */
    for (;;) {
        char path[256];
        long status;
        char *body = NULL;
        json_t *j;
        json_t *items;
        const char *next;
        size_t i;
        bool past = false;

        snprintf(path, sizeof path, "/v1/commands?limit=1000&after=%s", after);
        if (api_call(d, "GET", path, NULL, NULL, true, 5000, &status, &body) !=
                0 ||
            status != 200) {
            rems_free(body);
            return -1;
        }
        j = json_loads(body, 0, NULL);
        rems_free(body);
        items = json_object_get(j, "items");
        if (!json_is_array(items)) {
            json_decref(j);
            return -1;
        }
        pthread_mutex_lock(&d->mu);
        for (i = 0; i < json_array_size(items); i++) {
            json_t *it = json_array_get(items, i);
            const char *id = json_string_value(json_object_get(it, "id"));
            const char *state = json_string_value(json_object_get(it, "state"));
            size_t lo = 0;
            size_t hi = d->cmds.n;
            if (id == NULL || state == NULL) {
                continue;
            }
            if (strncmp(id, d->id_prefix, strlen(d->id_prefix)) != 0) {
                past = strcmp(id, d->id_prefix) > 0;
                if (past) {
                    break;
                }
                continue;
            }
            /* The drill's ids are made in ascending order per step; steps
             * run in order but background issuers interleave, so search. */
            for (lo = 0; lo < hi; lo++) {
                if (strcmp(d->cmds.v[lo].id, id) == 0) {
                    break;
                }
            }
            if (lo < hi) {
                struct cmd *c = &d->cmds.v[lo];
                c->in_log = true;
                c->state = strcmp(state, "pending") == 0     ? 1
                           : strcmp(state, "acked") == 0     ? 2
                           : strcmp(state, "nacked") == 0    ? 3
                           : strcmp(state, "expired") == 0   ? 4
                           : strcmp(state, "cancelled") == 0 ? 5
                                                             : 0;
            }
        }
        pthread_mutex_unlock(&d->mu);
        next = json_string_value(json_object_get(j, "next_after"));
        if (past || next == NULL) {
            json_decref(j);
            break;
        }
        snprintf(after, sizeof after, "%s", next);
        json_decref(j);
    }
    pthread_mutex_lock(&d->mu);
    for (k = 0; k < d->cmds.n; k++) {
        const struct cmd *c = &d->cmds.v[k];
        if ((c->outcome == CMD_ISSUED || c->outcome == CMD_UNKNOWN ||
             c->outcome == CMD_SENDING) &&
            (c->in_log ? c->state <= 1 : c->outcome != CMD_UNKNOWN)) {
            open++;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return open;
}

/* ------------------------------------------------------------------------
 * Steps
 * ------------------------------------------------------------------------ */

/* Resolve the node a step names; SIZE_MAX with @err when none. */
static size_t resolve_node(struct drill *d,
                           const struct scenario_node *n,
                           char *err)
{
    size_t i;

    if (n->kind == SCENARIO_NODE_LEADER) {
        i = wait_leader(d, SCENARIO_DEFAULT_WAIT_LEADER_MS);
        if (i == SIZE_MAX) {
            rems_errmsgf(err, "no ready leader within %u ms",
                         SCENARIO_DEFAULT_WAIT_LEADER_MS);
        }
        return i;
    }
    if (n->kind == SCENARIO_NODE_FOLLOWER) {
        size_t leader = wait_leader(d, SCENARIO_DEFAULT_WAIT_LEADER_MS);
        size_t cand[SIMCLUSTER_MAX_NODES];
        size_t k = 0;
        pthread_mutex_lock(&d->mu);
        for (i = 0; i < d->c->n; i++) {
            if (i != leader && simcluster_up(d->c, i)) {
                cand[k++] = i;
            }
        }
        i = k == 0 ? SIZE_MAX : cand[rng_below(&d->rng, k)];
        pthread_mutex_unlock(&d->mu);
        if (i == SIZE_MAX) {
            rems_errmsgf(err, "no follower is up");
        }
        return i;
    }
    pthread_mutex_lock(&d->mu);
    i = simcluster_index(d->c, n->id);
    pthread_mutex_unlock(&d->mu);
    if (i == SIZE_MAX) {
        rems_errmsgf(err, "no node has id %" PRIu64, n->id);
    }
    return i;
}

/* Record a fault on node @i at now; lock held. */
static struct drill_fault *fault_add(struct drill *d,
                                     const char *kind,
                                     size_t i)
{
    struct drill_fault *f = VPUSH(d->faults);

    if (f == NULL) {
        d->oom = true;
        return NULL;
    }
    snprintf(f->kind, sizeof f->kind, "%s", kind);
    f->node_id = i == SIZE_MAX ? 0 : d->c->nodes[i].id;
    f->at_ms = now_ms(d);
    f->end_ms = f->at_ms;
    f->removed_leader = i != SIZE_MAX && d->leader == i;
    f->old_leader = f->removed_leader ? d->c->nodes[i].id : 0;
    f->old_term = f->removed_leader ? d->leader_term : 0;
    f->detection_ms = -1;
    f->election_ms = -1;
    f->first_commit_ms = -1;
    f->commands_resumed_ms = -1;
    f->reconnect_p50_ms = -1;
    f->reconnect_p99_ms = -1;
    f->reconnect_max_ms = -1;
    d->r->last_fault_ms = f->at_ms;
    return f;
}

static int step_signal(struct drill *d,
                       const struct scenario_node *node,
                       const char *kind,
                       int (*act)(struct simcluster *, size_t),
                       char *err)
{
    size_t i = resolve_node(d, node, err);
    int rv;

    if (i == SIZE_MAX) {
        return REMS_EINVAL;
    }
    if (!d->c->local) {
        rems_errmsgf(err, "%s needs a cluster rems-sim started (attached "
                          "nodes are only addresses)",
                     kind);
        return REMS_EUNSUPPORTED;
    }
    pthread_mutex_lock(&d->mu);
    rv = act(d->c, i);
    if (rv == 0) {
        fault_add(d, kind, i);
    } else {
        rems_errmsgf(err, "node %" PRIu64 " does not run",
                     d->c->nodes[i].id);
    }
    pthread_mutex_unlock(&d->mu);
    return rv;
}

/* Set node @i's blocked peers (all others when @on, none otherwise), and
 * every other node's (node @i, or none). */
static int set_isolation(struct drill *d, size_t i, bool on, char *err)
{
    size_t n;
    size_t k;
    int rv = 0;

    pthread_mutex_lock(&d->mu);
    n = d->c->n;
    pthread_mutex_unlock(&d->mu);
    for (k = 0; k < n; k++) {
        char body[256];
        char address[SIMCLUSTER_ADDR_SIZE];
        long status = 0;
        size_t len = 0;
        size_t x;

        pthread_mutex_lock(&d->mu);
        snprintf(address, sizeof address, "%s", d->c->nodes[k].api_address);
        len += (size_t)snprintf(body, sizeof body, "{\"blocked_peers\":[");
        if (on && k == i) {
            bool first = true;
            for (x = 0; x < n; x++) {
                if (x != i) {
                    len += (size_t)snprintf(body + len, sizeof body - len,
                                            "%s%" PRIu64, first ? "" : ",",
                                            d->c->nodes[x].id);
                    first = false;
                }
            }
        } else if (on) {
            len += (size_t)snprintf(body + len, sizeof body - len,
                                    "%" PRIu64, d->c->nodes[i].id);
        }
        snprintf(body + len, sizeof body - len, "]}");
        x = simcluster_up(d->c, k);
        pthread_mutex_unlock(&d->mu);
        if (!x) {
            continue;
        }
        if (simcluster_http("PUT", address, "/v1/faults", body, API_TIMEOUT_MS,
                            &status, NULL) != 0 ||
            status != 200) {
            rems_errmsgf(err, "PUT /v1/faults on %s: %s", address,
                         status == 404 ? "fault injection is off on that node"
                                       : "no success");
            rv = REMS_EIO;
        }
    }
    return rv;
}

static int step_isolate(struct drill *d,
                        const struct scenario_step *st,
                        char *err)
{
    size_t i = resolve_node(d, &st->u.isolate.node, err);
    struct drill_fault *f;
    size_t fi;
    int rv;

    if (i == SIZE_MAX) {
        return REMS_EINVAL;
    }
    pthread_mutex_lock(&d->mu);
    f = fault_add(d, "isolate", i);
    fi = f != NULL ? d->faults.n - 1 : SIZE_MAX;
    pthread_mutex_unlock(&d->mu);
    rv = set_isolation(d, i, true, err);
    nap(d, st->u.isolate.ms);
    if (set_isolation(d, i, false, rv == 0 ? err : (char[REMS_ERRMSG_SIZE]){0}) !=
            0 &&
        rv == 0) {
        rv = REMS_EIO;
    }
    if (fi != SIZE_MAX) {
        pthread_mutex_lock(&d->mu);
        d->faults.v[fi].end_ms = now_ms(d);
        pthread_mutex_unlock(&d->mu);
    }
    return rv;
}

static int step_pause(struct drill *d,
                      const struct scenario_step *st,
                      char *err)
{
    size_t fi;
    int rv = step_signal(d, &st->u.pause.node, "pause", simcluster_pause, err);

    if (rv != 0) {
        return rv;
    }
    pthread_mutex_lock(&d->mu);
    fi = d->faults.n - 1;
    pthread_mutex_unlock(&d->mu);
    nap(d, st->u.pause.ms);
    pthread_mutex_lock(&d->mu);
    simcluster_resume(d->c, simcluster_index(d->c, d->faults.v[fi].node_id));
    d->faults.v[fi].end_ms = now_ms(d);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

/* Stop node @i (SIGTERM or SIGKILL), wait until it is reaped, wait
 * @down_ms, start it again. Records a "restart" fault. */
static int restart_one(struct drill *d,
                       size_t i,
                       bool graceful,
                       uint64_t down_ms,
                       char *err)
{
    uint64_t end;
    size_t fi = SIZE_MAX;
    int rv;

    if (!d->c->local) {
        rems_errmsgf(err, "restart needs a cluster rems-sim started");
        return REMS_EUNSUPPORTED;
    }
    pthread_mutex_lock(&d->mu);
    rv = graceful ? simcluster_stop(d->c, i) : simcluster_kill(d->c, i);
    if (rv == 0 && fault_add(d, "restart", i) != NULL) {
        fi = d->faults.n - 1;
    }
    pthread_mutex_unlock(&d->mu);
    if (rv != 0) {
        rems_errmsgf(err, "node %zu does not run", i + 1);
        return rv;
    }
    end = rems_mono_ms() + SIMCLUSTER_STOP_GRACE_MS + 1000;
    for (;;) {
        bool down;
        pthread_mutex_lock(&d->mu);
        down = simcluster_reap(d->c, i);
        if (!down && rems_mono_ms() >= end) {
            simcluster_kill(d->c, i);
        }
        pthread_mutex_unlock(&d->mu);
        if (down) {
            break;
        }
        sleep_ms(20);
    }
    nap(d, down_ms);
    pthread_mutex_lock(&d->mu);
    rv = simcluster_start_node(d->c, i, err);
    if (fi != SIZE_MAX) {
        d->faults.v[fi].end_ms = now_ms(d);
    }
    pthread_mutex_unlock(&d->mu);
    return rv;
}

static int step_restart(struct drill *d,
                        const struct scenario_step *st,
                        char *err)
{
    size_t i = resolve_node(d, &st->u.restart.node, err);

    if (i == SIZE_MAX) {
        return REMS_EINVAL;
    }
    return restart_one(d, i, st->u.restart.graceful, st->u.restart.down_ms,
                       err);
}

static int step_rolling(struct drill *d,
                        const struct scenario_step *st,
                        char *err)
{
    size_t order[SIMCLUSTER_MAX_NODES];
    size_t n = 0;
    size_t leader = wait_leader(d, st->u.rolling.timeout_ms);
    size_t i;
    int rv;

    if (leader == SIZE_MAX) {
        rems_errmsgf(err, "no ready leader within %" PRIu64 " ms",
                     st->u.rolling.timeout_ms);
        return REMS_ETIMEDOUT;
    }
    for (i = 0; i < d->c->n; i++) {
        if (i != leader) {
            order[n++] = i;
        }
    }
    order[n++] = leader;
    for (i = 0; i < n; i++) {
        rv = restart_one(d, order[i], st->u.rolling.graceful, 0, err);
        if (rv != 0) {
            return rv;
        }
        /* The node is back when it names the same ready leader as the
         * others. */
        wait_fresh_round(d);
        {
            uint64_t end = rems_mono_ms() + st->u.rolling.timeout_ms;
            for (;;) {
                bool back;
                pthread_mutex_lock(&d->mu);
                back = d->leader != SIZE_MAX && d->views[order[i]].answered &&
                       d->views[order[i]].leader_id != 0;
                pthread_mutex_unlock(&d->mu);
                if (back) {
                    break;
                }
                if (rems_mono_ms() >= end || interrupted(d)) {
                    rems_errmsgf(err,
                                 "node %" PRIu64 " restarted, but no ready "
                                 "leader it agrees on within %" PRIu64 " ms",
                                 d->c->nodes[order[i]].id,
                                 st->u.rolling.timeout_ms);
                    return REMS_ETIMEDOUT;
                }
                sleep_ms(DRILL_STATUS_POLL_MS);
            }
        }
    }
    return 0;
}

static int step_transfer(struct drill *d,
                         const struct scenario_step *st,
                         char *err)
{
    size_t leader = wait_leader(d, SCENARIO_DEFAULT_WAIT_LEADER_MS);
    char body[64];
    char address[SIMCLUSTER_ADDR_SIZE];
    char *resp = NULL;
    long status = 0;
    int rv;

    if (leader == SIZE_MAX) {
        rems_errmsgf(err, "no ready leader within %u ms",
                     SCENARIO_DEFAULT_WAIT_LEADER_MS);
        return REMS_ETIMEDOUT;
    }
    if (st->u.transfer.to.kind == SCENARIO_NODE_ANY) {
        snprintf(body, sizeof body, "{}");
    } else {
        size_t to = resolve_node(d, &st->u.transfer.to, err);
        if (to == SIZE_MAX) {
            return REMS_EINVAL;
        }
        if (to == leader) {
            rems_errmsgf(err, "node %" PRIu64 " already leads",
                         d->c->nodes[to].id);
            return REMS_EINVAL;
        }
        snprintf(body, sizeof body, "{\"id\":%" PRIu64 "}",
                 d->c->nodes[to].id);
    }
    pthread_mutex_lock(&d->mu);
    snprintf(address, sizeof address, "%s", d->c->nodes[leader].api_address);
    fault_add(d, "transfer", leader);
    pthread_mutex_unlock(&d->mu);
    rv = simcluster_http("POST", address, "/v1/leadership/transfer", body,
                         (unsigned)st->u.transfer.timeout_ms + 1000, &status,
                         &resp);
    if (rv != 0 || status != 200) {
        char text[REMS_ERRMSG_SIZE];
        error_text(resp, text, sizeof text);
        rems_errmsgf(err, "POST /v1/leadership/transfer: %s%s%ld %s",
                     rv != 0 ? "no answer" : "", rv != 0 ? "" : "status ",
                     status, text);
        rems_free(resp);
        return REMS_EIO;
    }
    rems_free(resp);
    return 0;
}


static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s);
    size_t b = strlen(suffix);

    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int step_apply_policy(struct drill *d,
                             const struct scenario_step *st,
                             size_t step_index,
                             char *err)
{
    struct rems_buf json;
    const char *doc = st->u.apply_policy.inline_json;
    char *text = NULL;
    size_t len = 0;
    char path[512];
    char request_id[64];
    char *resp = NULL;
    long status = 0;
    int rv = 0;

    rems_buf_init(&json);
    if (doc == NULL) {
        const char *file = st->u.apply_policy.file;
        rv = rems_read_file(file, SCENARIO_FILE_MAX, &text, &len, err);
        if (rv == 0 && (ends_with(file, ".yaml") || ends_with(file, ".yml"))) {
            rv = agent_yaml_to_json(text, len, &json, err);
            if (rv == 0) {
                rv = rems_buf_append(&json, "", 1) != 0 ? REMS_ENOMEM : 0;
            }
            doc = json.data;
        } else {
            doc = text;
        }
    }
    if (rv == 0) {
        snprintf(path, sizeof path, "/v1/policies/%s",
                 st->u.apply_policy.key);
        snprintf(request_id, sizeof request_id, "%sp%02zu", d->id_prefix,
                 step_index);
        rv = api_call(d, "PUT", path, doc, request_id, true, WRITE_RETRY_MS,
                      &status, &resp);
        if (rv != 0 || status != 200) {
            char t[REMS_ERRMSG_SIZE];
            error_text(resp, t, sizeof t);
            rems_errmsgf(err, "PUT %s: %s (status %ld) %s", path,
                         rv != 0 ? "no answer" : "refused", status, t);
            rv = rv != 0 ? rv : REMS_EINVAL;
        }
    }
    rems_free(resp);
    rems_free(text);
    rems_buf_close(&json);
    return rv;
}

static int step_crash(struct drill *d,
                      const struct scenario_step *st,
                      char *err)
{
    size_t n = scenario_count_of(&st->u.crash.agents, d->n_agents);
    size_t *perm = rems_malloc(d->n_agents * sizeof *perm);
    size_t i;
    uint64_t t = now_ms(d);

    if (d->s->agents.services == 0 && st->u.crash.service == NULL) {
        rems_free(perm);
        rems_errmsgf(err, "the agents have no services to crash (agents."
                          "services is 0)");
        return REMS_EINVAL;
    }
    if (perm == NULL) {
        return REMS_ENOMEM;
    }
    for (i = 0; i < d->n_agents; i++) {
        perm[i] = i;
    }
    pthread_mutex_lock(&d->mu);
    for (i = 0; i < n; i++) {
        size_t j = i + (size_t)rng_below(&d->rng, d->n_agents - i);
        size_t x = perm[i];
        struct crash *c;
        perm[i] = perm[j];
        perm[j] = x;
        c = VPUSH(d->crashes);
        if (c == NULL) {
            d->oom = true;
            break;
        }
        c->agent = (uint32_t)perm[i];
        if (st->u.crash.service != NULL) {
            snprintf(c->service, sizeof c->service, "%s", st->u.crash.service);
        } else {
            snprintf(c->service, sizeof c->service, "%s-%u",
                     SIMAGENTS_DEFAULT_SERVICE_PREFIX,
                     (unsigned)rng_below(&d->rng, d->s->agents.services));
        }
        c->t_ms = t;
        c->detected_ms = -1;
        c->done = true;
    }
    pthread_mutex_unlock(&d->mu);
    rems_free(perm);
    engine_poke(d);
    return 0;
}

static int step_reconnect_all(struct drill *d)
{
    uint64_t target;

    pthread_mutex_lock(&d->mu);
    fault_add(d, "reconnect", SIZE_MAX);
    d->drop_all = true;
    target = d->drop_done + 1;
    pthread_mutex_unlock(&d->mu);
    engine_poke(d);
    pthread_mutex_lock(&d->mu);
    while (d->drop_done < target && !d->engine_stopped) {
        pthread_cond_wait(&d->cv, &d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    return 0;
}

/* Until the rollout of policy @key is done; a rollout that ended
 * otherwise (rolled back, aborted) or did not end in time fails the step. */
static int step_wait_rollout(struct drill *d,
                             const struct scenario_step *st,
                             char *err)
{
    uint64_t end = rems_mono_ms() + st->u.wait_rollout.timeout_ms;
    char path[300];
    char last[64] = "no answer";

    snprintf(path, sizeof path, "/v1/rollouts/%s", st->u.wait_rollout.key);
    for (;;) {
        long status = 0;
        char *body = NULL;
        json_t *j = NULL;
        const char *state = NULL;

        if (api_call(d, "GET", path, NULL, NULL, true, 0, &status, &body) ==
                0 &&
            status == 200) {
            j = json_loads(body, 0, NULL);
            state = json_string_value(json_object_get(j, "state"));
        } else if (status == 404) {
            snprintf(last, sizeof last, "no rollout");
        }
        rems_free(body);
        if (state != NULL) {
            snprintf(last, sizeof last, "%s", state);
        }
        json_decref(j);
        if (strcmp(last, "done") == 0) {
            return 0;
        }
        if (strcmp(last, "rolled_back") == 0 || strcmp(last, "aborted") == 0) {
            rems_errmsgf(err, "the rollout of %s ended %s",
                         st->u.wait_rollout.key, last);
            return REMS_ECONFLICT;
        }
        if (rems_mono_ms() >= end || interrupted(d)) {
            rems_errmsgf(err,
                         "the rollout of %s not done after %" PRIu64
                         " ms (state: %s)",
                         st->u.wait_rollout.key,
                         st->u.wait_rollout.timeout_ms, last);
            return REMS_ETIMEDOUT;
        }
        sleep_ms(DRILL_SUMMARY_POLL_MS);
    }
}

static int step_wait_agents(struct drill *d,
                            const struct scenario_step *st,
                            char *err)
{
    size_t want = scenario_count_of(&st->u.wait_agents.connected,
                                    d->n_agents);
    uint64_t end = rems_mono_ms() + st->u.wait_agents.timeout_ms;
    uint64_t have;

    for (;;) {
        pthread_mutex_lock(&d->mu);
        have = d->connected;
        pthread_mutex_unlock(&d->mu);
        if (have >= want) {
            return 0;
        }
        if (rems_mono_ms() >= end || interrupted(d)) {
            rems_errmsgf(err,
                         "%" PRIu64 " of %zu agents connected after %" PRIu64
                         " ms, %zu wanted",
                         have, d->n_agents, st->u.wait_agents.timeout_ms,
                         want);
            return REMS_ETIMEDOUT;
        }
        sleep_ms(50);
    }
}

static int step_issue(struct drill *d,
                      const struct scenario_step *st,
                      size_t step_index,
                      char *err)
{
    struct issue_job *j = rems_calloc(1, sizeof *j);

    if (j == NULL) {
        return REMS_ENOMEM;
    }
    if (d->s->agents.services == 0 && st->u.issue_commands.service == NULL) {
        rems_free(j);
        rems_errmsgf(err, "the agents have no services to command (agents."
                          "services is 0); name one with service");
        return REMS_EINVAL;
    }
    j->d = d;
    j->st = st;
    j->step_index = step_index;
    j->seed = rng_next(&d->rng);
    if (!st->u.issue_commands.background) {
        issue_main(j);
        return 0;
    }
    if (d->n_issuers == MAX_ISSUERS) {
        rems_free(j);
        rems_errmsgf(err, "at most %u issue_commands steps run in the "
                          "background at once",
                     MAX_ISSUERS);
        return REMS_EINVAL;
    }
    if (pthread_create(&d->issuers[d->n_issuers], NULL, issue_main, j) != 0) {
        rems_free(j);
        return REMS_ENOMEM;
    }
    d->n_issuers++;
    return 0;
}

static int run_step(struct drill *d, size_t k, char *err)
{
    const struct scenario_step *st = &d->s->steps[k];

    switch (st->kind) {
        case SCENARIO_STEP_WAIT:
            nap(d, st->u.wait.ms);
            return 0;
        case SCENARIO_STEP_WAIT_AGENTS:
            return step_wait_agents(d, st, err);
        case SCENARIO_STEP_WAIT_LEADER:
            if (wait_leader(d, st->u.wait_leader.timeout_ms) == SIZE_MAX) {
                rems_errmsgf(err, "no ready leader within %" PRIu64 " ms",
                             st->u.wait_leader.timeout_ms);
                return REMS_ETIMEDOUT;
            }
            return 0;
        case SCENARIO_STEP_APPLY_POLICY:
            return step_apply_policy(d, st, k, err);
        case SCENARIO_STEP_ISSUE_COMMANDS:
            return step_issue(d, st, k, err);
        case SCENARIO_STEP_KILL_LEADER:
        case SCENARIO_STEP_KILL_NODE:
            return step_signal(d, &st->u.kill.node, "kill", simcluster_kill,
                               err);
        case SCENARIO_STEP_PAUSE_LEADER:
        case SCENARIO_STEP_PAUSE_NODE:
            return step_pause(d, st, err);
        case SCENARIO_STEP_ISOLATE:
            return step_isolate(d, st, err);
        case SCENARIO_STEP_RESTART_NODE:
            return step_restart(d, st, err);
        case SCENARIO_STEP_TRANSFER_LEADERSHIP:
            return step_transfer(d, st, err);
        case SCENARIO_STEP_ROLLING_RESTART:
            return step_rolling(d, st, err);
        case SCENARIO_STEP_CRASH_SERVICES:
            return step_crash(d, st, err);
        case SCENARIO_STEP_RECONNECT_ALL:
            return step_reconnect_all(d);
        case SCENARIO_STEP_WAIT_ROLLOUT:
            return step_wait_rollout(d, st, err);
        default:
            rems_errmsgf(err, "unknown step kind %d", (int)st->kind);
            return REMS_EINVAL;
    }
}

/* ------------------------------------------------------------------------
 * The result
 * ------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y ? 1 : 0;
}

double drill_percentile(const double *v, size_t n, double p)
{
    size_t rank;

    if (n == 0) {
        return -1;
    }
    rank = (size_t)(p * (double)n + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > n) {
        rank = n;
    }
    return v[rank - 1];
}

/* Reconnects after each fault: agents whose session ended in [at, next
 * fault), and the time from the fault to their next welcome. */
static int compute_reconnects(struct drill *d)
{
    const uint64_t COUNTED = UINT64_MAX - 1;
    double *lat = rems_malloc((d->n_agents + 1) * sizeof *lat);
    uint64_t *down = rems_malloc((d->n_agents + 1) * sizeof *down);
    size_t k;
    size_t e;

    if (lat == NULL || down == NULL) {
        rems_free(lat);
        rems_free(down);
        return REMS_ENOMEM;
    }
    for (k = 0; k < d->faults.n; k++) {
        struct drill_fault *f = &d->faults.v[k];
        uint64_t until = k + 1 < d->faults.n ? d->faults.v[k + 1].at_ms
                                              : UINT64_MAX;
        size_t n = 0;
        size_t a;
        for (a = 0; a < d->n_agents; a++) {
            down[a] = UINT64_MAX;
        }
        for (e = 0; e < d->sessions.n; e++) {
            const struct session_event *s = &d->sessions.v[e];
            if (s->t_ms < f->at_ms) {
                continue;
            }
            if (!s->up && s->t_ms < until && down[s->agent] == UINT64_MAX) {
                down[s->agent] = s->t_ms;
                f->agents_dropped++;
            } else if (s->up && down[s->agent] != UINT64_MAX &&
                       down[s->agent] != COUNTED) {
                lat[n++] = (double)(s->t_ms - f->at_ms);
                down[s->agent] = COUNTED;
                f->agents_reconnected++;
            }
        }
        qsort(lat, n, sizeof *lat, cmp_double);
        f->reconnect_p50_ms = drill_percentile(lat, n, 0.5);
        f->reconnect_p99_ms = drill_percentile(lat, n, 0.99);
        f->reconnect_max_ms = n > 0 ? lat[n - 1] : -1;
    }
    rems_free(lat);
    rems_free(down);
    return 0;
}

static struct cmd *find_cmd(struct drill *d, const char *id)
{
    size_t i;

    if (strncmp(id, d->id_prefix, strlen(d->id_prefix)) != 0) {
        return NULL;
    }
    for (i = 0; i < d->cmds.n; i++) {
        if (strcmp(d->cmds.v[i].id, id) == 0) {
            return &d->cmds.v[i];
        }
    }
    return NULL;
}

static int exec_cmp(const void *a, const void *b)
{
    const struct simagents_exec *x = a;
    const struct simagents_exec *y = b;
    int c = x->agent < y->agent ? -1 : x->agent > y->agent ? 1 : 0;

    return c != 0 ? c : strcmp(x->id, y->id);
}

static void problem(struct drill_commands *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct drill_commands *c, const char *fmt, ...)
{
    va_list ap;

    if (c->first_problem[0] != '\0') {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(c->first_problem, sizeof c->first_problem, fmt, ap);
    va_end(ap);
}

static int compute_commands(struct drill *d)
{
    struct drill_commands *c = &d->r->commands;
    struct simagents_exec *sorted = NULL;
    size_t i;
    size_t k;

    c->sent = d->cmds.n;
    for (i = 0; i < d->cmds.n; i++) {
        const struct cmd *x = &d->cmds.v[i];
        bool issued = x->outcome == CMD_ISSUED ||
                      (x->outcome != CMD_REFUSED && x->in_log);
        if (x->outcome == CMD_REFUSED && x->in_log) {
            problem(c, "command %s was refused, but is in the log", x->id);
        }
        if (issued) {
            c->issued++;
        } else if (x->outcome == CMD_REFUSED) {
            c->refused++;
        } else {
            c->unknown++; /* outcome unknown and not in the log: never
                             proposed, or lost */
        }
        if (x->outcome == CMD_UNKNOWN && x->in_log) {
            /* Issued after all: counted as issued above. */
        }
        switch (x->state) {
            case 2:
                c->acked++;
                break;
            case 3:
                c->nacked++;
                break;
            case 4:
                c->expired++;
                break;
            case 5:
                c->cancelled++;
                break;
            default:
                if (issued) {
                    c->lost++;
                    problem(c, "command %s was issued but has no final state "
                               "after the settle time",
                            x->id);
                }
                break;
        }
        if (x->outcome == CMD_ISSUED && !x->in_log) {
            problem(c, "command %s was answered 201, but is not in the log",
                    x->id);
        }
    }
    if (d->execs.n > 0) {
        sorted = rems_malloc(d->execs.n * sizeof *sorted);
        if (sorted == NULL) {
            return REMS_ENOMEM;
        }
        memcpy(sorted, d->execs.v, d->execs.n * sizeof *sorted);
        qsort(sorted, d->execs.n, sizeof *sorted, exec_cmp);
    }
    for (i = 0; i < d->execs.n; i++) {
        const struct simagents_exec *x = &sorted[i];
        struct cmd *cm = find_cmd(d, x->id);
        if (i > 0 && sorted[i - 1].agent == x->agent &&
            strcmp(sorted[i - 1].id, x->id) == 0) {
            c->duplicated++;
            problem(c, "command %s executed twice on agent %u (invariant 4)",
                    x->id, (unsigned)x->agent + 1);
        }
        if (x->exec_mono_us >= x->receipt_mono_us + x->ttl_remaining_ms * 1000) {
            c->late++;
            problem(c,
                    "command %s executed %" PRIu64
                    " us after its deadline (invariant 5)",
                    x->id,
                    x->exec_mono_us -
                        (x->receipt_mono_us + x->ttl_remaining_ms * 1000));
        }
        if (cm != NULL) {
            c->executed++;
            if (cm->agent != x->agent) {
                problem(c, "command %s was for agent %u, agent %u executed it",
                        x->id, (unsigned)cm->agent + 1, (unsigned)x->agent + 1);
            }
            if (cm->state == 4) {
                c->executed_expired++;
            } else if (cm->state == 3 || cm->state == 5) {
                problem(c, "command %s executed, but the log says %s", x->id,
                        cm->state == 3 ? "nacked" : "cancelled");
            }
        }
    }
    for (k = 0; k < d->cmds.n; k++) {
        const struct cmd *x = &d->cmds.v[k];
        bool found = false;
        if (x->state != 2) {
            continue;
        }
        for (i = 0; i < d->execs.n && !found; i++) {
            found = strcmp(d->execs.v[i].id, x->id) == 0;
        }
        if (!found) {
            c->acked_not_executed++;
            problem(c, "command %s is acked in the log, but no agent "
                       "executed it",
                    x->id);
        }
    }
    rems_free(sorted);
    {
        char msg[REMS_ERRMSG_SIZE];
        int rv = simagents_exec_check(d->execs.v, d->execs.n, msg);
        if (rv == REMS_ECONFLICT) {
            problem(c, "%s", msg);
        } else if (rv != 0) {
            return rv;
        }
    }
    /* Commands resumed: the first command sent after a fault that an agent
     * executed. */
    for (k = 0; k < d->faults.n; k++) {
        struct drill_fault *f = &d->faults.v[k];
        if (!f->removed_leader) {
            continue;
        }
        for (i = 0; i < d->execs.n; i++) {
            struct cmd *cm = find_cmd(d, d->execs.v[i].id);
            if (cm != NULL && cm->sent_ms >= f->at_ms &&
                d->exec_ms.v[i] >= f->at_ms &&
                (f->commands_resumed_ms < 0 ||
                 (int64_t)(d->exec_ms.v[i] - f->at_ms) <
                     f->commands_resumed_ms)) {
                f->commands_resumed_ms = (int64_t)(d->exec_ms.v[i] - f->at_ms);
            }
        }
    }
    return 0;
}

static void compute_drift(struct drill *d)
{
    struct drill_drift *dr = &d->r->drift;
    double *lat = d->crashes.n > 0
                      ? rems_malloc(d->crashes.n * sizeof *lat)
                      : NULL;
    size_t n = 0;
    size_t i;

    dr->crashes = d->crashes.n;
    for (i = 0; i < d->crashes.n; i++) {
        if (d->crashes.v[i].detected_ms < 0 && dr->first_missed[0] == '\0') {
            char id[64];
            agent_id(d->crashes.v[i].agent, id, sizeof id);
            rems_errmsgf(dr->first_missed, "%s %s at %" PRIu64 " ms", id,
                         d->crashes.v[i].service, d->crashes.v[i].t_ms);
        }
        if (d->crashes.v[i].detected_ms >= 0) {
            dr->detected++;
            if (lat != NULL) {
                lat[n++] = (double)d->crashes.v[i].detected_ms;
            }
        }
    }
    if (lat != NULL) {
        qsort(lat, n, sizeof *lat, cmp_double);
    }
    dr->p50_ms = drill_percentile(lat, n, 0.5);
    dr->p99_ms = drill_percentile(lat, n, 0.99);
    dr->max_ms = n > 0 ? lat[n - 1] : -1;
    rems_free(lat);
}

/* The moment faults and crashes end counting from: the last fault, or
 * else the last crash step. */
static uint64_t last_disturbance(const struct drill *d)
{
    uint64_t t = d->r->last_fault_ms;

    if (d->crashes.n > 0 && d->crashes.v[d->crashes.n - 1].t_ms > t) {
        t = d->crashes.v[d->crashes.n - 1].t_ms;
    }
    return t;
}

static int64_t nominal_after(const struct drill *d, uint64_t from)
{
    size_t i;

    /* The first moment at or after @from that the summary was nominal. */
    for (i = 0; i < d->nominal.n; i++) {
        const struct nominal_change *c = &d->nominal.v[i];
        bool until_next_nominal =
            c->nominal &&
            (i + 1 == d->nominal.n || d->nominal.v[i + 1].t_ms > from);
        if (!until_next_nominal) {
            continue;
        }
        return c->t_ms >= from ? (int64_t)(c->t_ms - from) : 0;
    }
    return -1;
}

static void verdicts(struct drill *d)
{
    struct drill_result *r = d->r;
    size_t i;
    size_t k;

    r->passed = !r->step_failed && !r->interrupted;
    for (i = 0; i < d->s->n_assertions; i++) {
        const struct scenario_assertion *a = &d->s->assertions[i];
        struct drill_verdict *v = &r->verdicts[r->n_verdicts++];
        v->kind = a->kind;
        v->ms = a->ms;
        v->passed = false;
        switch (a->kind) {
            case SCENARIO_ASSERT_LEADER_WITHIN_MS: {
                size_t n = 0;
                v->passed = true;
                for (k = 0; k < r->n_faults; k++) {
                    const struct drill_fault *f = &r->faults[k];
                    if (!f->removed_leader) {
                        continue;
                    }
                    n++;
                    if (f->election_ms < 0 || (uint64_t)f->election_ms > a->ms) {
                        v->passed = false;
                        if (f->election_ms < 0) {
                            rems_errmsgf(v->detail,
                                         "%s of node %" PRIu64 " at %" PRIu64
                                         " ms: no new leader seen",
                                         f->kind, f->node_id, f->at_ms);
                        } else {
                            rems_errmsgf(v->detail,
                                         "%s of node %" PRIu64 " at %" PRIu64
                                         " ms: new leader after %" PRId64
                                         " ms",
                                         f->kind, f->node_id, f->at_ms,
                                         f->election_ms);
                        }
                        break;
                    }
                }
                if (n == 0) {
                    v->passed = false;
                    rems_errmsgf(v->detail, "no fault removed the leader");
                } else if (v->passed) {
                    int64_t worst = 0;
                    for (k = 0; k < r->n_faults; k++) {
                        if (r->faults[k].removed_leader &&
                            r->faults[k].election_ms > worst) {
                            worst = r->faults[k].election_ms;
                        }
                    }
                    rems_errmsgf(v->detail,
                                 "%zu failover(s), slowest new leader after "
                                 "%" PRId64 " ms",
                                 n, worst);
                }
                break;
            }
            case SCENARIO_ASSERT_COMMANDS_EXACTLY_ONCE: {
                const struct drill_commands *c = &r->commands;
                v->passed = c->lost == 0 && c->duplicated == 0 &&
                            c->acked_not_executed == 0 &&
                            c->first_problem[0] == '\0' && c->issued > 0;
                if (c->issued == 0) {
                    rems_errmsgf(v->detail, "no command was issued");
                } else if (v->passed) {
                    rems_errmsgf(v->detail,
                                 "%" PRIu64 " issued: %" PRIu64
                                 " acked, %" PRIu64 " nacked, %" PRIu64
                                 " expired, %" PRIu64 " cancelled",
                                 c->issued, c->acked, c->nacked, c->expired,
                                 c->cancelled);
                } else {
                    rems_errmsgf(v->detail,
                                 "%" PRIu64 " lost, %" PRIu64
                                 " duplicated: %s",
                                 c->lost, c->duplicated, c->first_problem);
                }
                break;
            }
            case SCENARIO_ASSERT_NO_LATE_EXECUTION:
                v->passed = r->commands.late == 0;
                rems_errmsgf(v->detail,
                             "%" PRIu64 " executions checked, %" PRIu64
                             " after their deadline",
                             (uint64_t)d->execs.n, r->commands.late);
                break;
            case SCENARIO_ASSERT_DRIFT_DETECTED_WITHIN_MS:
                v->passed = r->drift.crashes > 0 &&
                            r->drift.detected == r->drift.crashes &&
                            r->drift.max_ms <= (double)a->ms;
                if (r->drift.crashes == 0) {
                    rems_errmsgf(v->detail, "no crash_services step ran");
                } else {
                    rems_errmsgf(v->detail,
                                 "%" PRIu64 " of %" PRIu64
                                 " crashes seen in /v1/drift, slowest %.0f ms",
                                 r->drift.detected, r->drift.crashes,
                                 r->drift.max_ms);
                }
                break;
            case SCENARIO_ASSERT_NOMINAL_WITHIN_MS:
                v->passed = r->nominal_ms >= 0 &&
                            (uint64_t)r->nominal_ms <= a->ms;
                if (r->nominal_ms < 0) {
                    rems_errmsgf(v->detail,
                                 "the summary was not nominal after %" PRIu64
                                 " ms",
                                 last_disturbance(d));
                } else {
                    rems_errmsgf(v->detail,
                                 "nominal %" PRId64 " ms after %" PRIu64 " ms",
                                 r->nominal_ms, last_disturbance(d));
                }
                break;
            default:
                rems_errmsgf(v->detail, "unknown assertion");
                break;
        }
        if (!v->passed) {
            r->passed = false;
        }
    }
}

/* ------------------------------------------------------------------------
 * The run
 * ------------------------------------------------------------------------ */

static bool settled(struct drill *d, long open)
{
    bool ok = open == 0;
    size_t i;

    for (i = 0; i < d->s->n_assertions && ok; i++) {
        const struct scenario_assertion *a = &d->s->assertions[i];
        if (a->kind == SCENARIO_ASSERT_NOMINAL_WITHIN_MS) {
            pthread_mutex_lock(&d->mu);
            ok = nominal_after(d, last_disturbance(d)) >= 0;
            pthread_mutex_unlock(&d->mu);
        } else if (a->kind == SCENARIO_ASSERT_DRIFT_DETECTED_WITHIN_MS) {
            size_t k;
            pthread_mutex_lock(&d->mu);
            for (k = 0; k < d->crashes.n && ok; k++) {
                ok = d->crashes.v[k].detected_ms >= 0;
            }
            pthread_mutex_unlock(&d->mu);
        }
    }
    return ok;
}

static void settle(struct drill *d)
{
    uint64_t end = rems_mono_ms() + d->s->settle_ms;
    size_t i;

    for (i = 0; i < d->n_issuers; i++) {
        pthread_join(d->issuers[i], NULL);
    }
    d->n_issuers = 0;
    /* Wait for the nominal assertion's own bound when it is longer. */
    for (i = 0; i < d->s->n_assertions; i++) {
        const struct scenario_assertion *a = &d->s->assertions[i];
        if (a->kind == SCENARIO_ASSERT_NOMINAL_WITHIN_MS ||
            a->kind == SCENARIO_ASSERT_DRIFT_DETECTED_WITHIN_MS) {
            uint64_t from;
            uint64_t bound;
            pthread_mutex_lock(&d->mu);
            from = last_disturbance(d);
            pthread_mutex_unlock(&d->mu);
            bound = d->t0 + from + a->ms + 1000;
            if (bound > end) {
                end = bound;
            }
        }
    }
    for (;;) {
        long open = fetch_commands(d);
        if ((open >= 0 && settled(d, open)) || rems_mono_ms() >= end ||
            interrupted(d)) {
            break;
        }
        sleep_ms(500);
    }
}

static void free_logs(struct drill *d)
{
    rems_free(d->sessions.v);
    rems_free(d->execs.v);
    rems_free(d->exec_ms.v);
    rems_free(d->cmds.v);
    rems_free(d->crashes.v);
    rems_free(d->faults.v);
    rems_free(d->samples.v);
    rems_free(d->nominal.v);
    rems_free(d->steps.v);
}

/* A scenario's behaviour share as the simulated agents take it. */
static void share_of(const struct scenario_behaviour *b,
                     struct simagents_share *out)
{
    memset(out, 0, sizeof *out);
    switch (b->kind) {
        case SCENARIO_BEHAVIOUR_CRASH_LOOP:
            out->behaviour = SIMAGENTS_CRASH_LOOP;
            break;
        case SCENARIO_BEHAVIOUR_CRASH_AFTER:
            out->behaviour = SIMAGENTS_CRASH_ONCE;
            break;
        case SCENARIO_BEHAVIOUR_SLOW_HEALTH:
            out->behaviour = SIMAGENTS_SLOW_HEALTH;
            break;
        case SCENARIO_BEHAVIOUR_HUNG_STOP:
            out->behaviour = SIMAGENTS_HUNG_STOP;
            break;
        default:
            out->behaviour = SIMAGENTS_HEALTHY;
            break;
    }
    out->fraction = b->fraction;
    out->crash_after_ms = b->crash_after_ms;
    out->restart_ms = b->restart_ms;
    out->health_delay_ms = b->health_delay_ms;
    out->stop_hang_ms = b->stop_hang_ms;
}

static int open_agents(struct drill *d, char *errmsg)
{
    struct simagents_options ao;
    const char *endpoints[SIMCLUSTER_MAX_NODES];
    size_t i;

    memset(&ao, 0, sizeof ao);
    for (i = 0; i < d->c->n; i++) {
        endpoints[i] = d->c->nodes[i].agent_address;
    }
    ao.n_agents = d->n_agents;
    ao.endpoints = endpoints;
    ao.n_endpoints = d->c->n;
    ao.ca_cert = d->c->ca_cert;
    ao.ca_key = d->c->ca_key;
    ao.resume = true;
    ao.n_services = d->s->agents.services;
    ao.heartbeat_ms = d->s->agents.heartbeat_ms;
    ao.ramp_per_s = d->s->agents.ramp_per_s;
    ao.record_execs = false;
    ao.seed = rng_next(&d->rng) | 1u;
    ao.event_cb = on_engine_event;
    ao.data = d;
    for (i = 0; i < d->s->agents.n_behaviours && i < SIMAGENTS_MAX_SHARES;
         i++) {
        share_of(&d->s->agents.behaviours[i], &d->shares[i]);
    }
    ao.shares = d->shares;
    ao.n_shares = i;
    return simagents_open(&d->loop, &ao, &d->sa, errmsg);
}

int drill_run(const struct drill_options *o,
              struct drill_result **out,
              char *errmsg)
{
    struct drill *d;
    struct drill_result *r;
    size_t k;
    int rv;

    if (o->scenario == NULL || o->cluster == NULL || o->cluster->n == 0) {
        rems_errmsgf(errmsg, "drill: a scenario and a cluster are needed");
        return REMS_EINVAL;
    }
    d = rems_calloc(1, sizeof *d);
    r = rems_calloc(1, sizeof *r);
    if (d == NULL || r == NULL) {
        rems_free(d);
        rems_free(r);
        return REMS_ENOMEM;
    }
    d->o = o;
    d->s = o->scenario;
    d->c = o->cluster;
    d->r = r;
    d->n_agents = o->agents != 0 ? o->agents : d->s->agents.count;
    d->rng = o->seed;
    d->leader = SIZE_MAX;
    /* The seed's and the run's: a cluster that outlives a run (attached,
     * or a kept directory) must never see a command id or request id of
     * an earlier run again (a request id would be answered with the
     * earlier result and applied not at all). */
    snprintf(d->id_prefix, sizeof d->id_prefix,
             "sim%08" PRIx64 "-%011" PRIx64 "-",
             (o->seed ^ (o->seed >> 32)) & 0xffffffffu,
             (uint64_t)(rems_wall_ms() & 0xfffffffffffull));
    snprintf(r->name, sizeof r->name, "%s", d->s->name);
    r->seed = o->seed;
    r->n_nodes = d->c->n;
    r->n_agents = d->n_agents;
    r->nominal_ms = -1;
    for (k = 0; k < d->c->n; k++) {
        r->node_ids[k] = d->c->nodes[k].id;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    rv = uv_loop_init(&d->loop);
    if (rv != 0) {
        rems_errmsgf(errmsg, "uv_loop_init: %s", uv_strerror(rv));
        rv = REMS_EIO;
        goto err_loop;
    }
    rv = open_agents(d, errmsg);
    if (rv != 0) {
        goto err_agents;
    }
    uv_async_init(&d->loop, &d->async, on_engine_async);
    d->async.data = d;
    d->t0 = rems_mono_ms();
    if (pthread_create(&d->poller_thread, NULL, poller_main, d) != 0) {
        rems_errmsgf(errmsg, "drill: cannot start a thread");
        rv = REMS_ENOMEM;
        goto err_threads;
    }
    d->poller_started = true;
    if (pthread_create(&d->engine_thread, NULL, engine_main, d) != 0) {
        rems_errmsgf(errmsg, "drill: cannot start a thread");
        rv = REMS_ENOMEM;
        goto err_threads;
    }
    d->engine_started = true;

    for (k = 0; k < d->s->n_steps; k++) {
        char err[REMS_ERRMSG_SIZE] = "";
        struct drill_step_result *sr;
        pthread_mutex_lock(&d->mu);
        d->current_step = k;
        sr = VPUSH(d->steps);
        if (sr == NULL) {
            d->oom = true;
        } else {
            sr->kind = d->s->steps[k].kind;
            sr->start_ms = now_ms(d);
        }
        pthread_mutex_unlock(&d->mu);
        if (o->progress) {
            fprintf(stderr, "rems-sim: %7.1f s  step %zu/%zu %s (line %u)\n",
                    (double)now_ms(d) / 1000.0, k + 1, d->s->n_steps,
                    scenario_step_name(d->s->steps[k].kind),
                    d->s->steps[k].line);
        }
        rv = run_step(d, k, err);
        pthread_mutex_lock(&d->mu);
        if (sr != NULL) {
            d->steps.v[d->steps.n - 1].end_ms = now_ms(d);
            d->steps.v[d->steps.n - 1].failed = rv != 0;
        }
        pthread_mutex_unlock(&d->mu);
        if (rv == REMS_ENOMEM) {
            d->oom = true;
        }
        if (rv != 0) {
            r->step_failed = true;
            rems_errmsgf(r->error, "step %zu (%s, line %u): %s", k + 1,
                         scenario_step_name(d->s->steps[k].kind),
                         d->s->steps[k].line, err);
            if (o->progress) {
                fprintf(stderr, "rems-sim: %s\n", r->error);
            }
            break;
        }
        if (interrupted(d)) {
            r->interrupted = true;
            break;
        }
    }
    pthread_mutex_lock(&d->mu);
    d->settling = true;
    pthread_mutex_unlock(&d->mu);
    if (o->progress) {
        fprintf(stderr, "rems-sim: %7.1f s  settling (up to %" PRIu64
                        " ms): commands end, the summary returns to nominal\n",
                (double)now_ms(d) / 1000.0, d->s->settle_ms);
    }
    settle(d);
    if (interrupted(d)) {
        r->interrupted = true;
    }
    rv = 0;

err_threads:
    for (k = 0; k < d->n_issuers; k++) {
        pthread_join(d->issuers[k], NULL);
    }
    if (d->poller_started) {
        pthread_mutex_lock(&d->mu);
        d->poller_stop = true;
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->poller_thread, NULL);
    }
    if (d->engine_started) {
        pthread_mutex_lock(&d->mu);
        d->stop = true;
        pthread_mutex_unlock(&d->mu);
        engine_poke(d);
        pthread_join(d->engine_thread, NULL);
    } else {
        uv_close((uv_handle_t *)&d->async, NULL);
        uv_run(&d->loop, UV_RUN_DEFAULT);
    }
    simagents_close(d->sa);
err_agents:
    uv_loop_close(&d->loop);
err_loop:
    if (rv == 0) {
        r->duration_ms = now_ms(d);
        rv = compute_reconnects(d);
        if (rv == 0) {
            rv = compute_commands(d);
        }
        compute_drift(d);
        {
            uint64_t from = last_disturbance(d);
            r->nominal_ms = nominal_after(d, from);
        }
        /* Hand the logs over to the result. */
        r->faults = d->faults.v;
        r->n_faults = d->faults.n;
        d->faults.v = NULL;
        r->samples = d->samples.v;
        r->n_samples = d->samples.n;
        d->samples.v = NULL;
        r->steps = d->steps.v;
        r->n_steps = d->steps.n;
        d->steps.v = NULL;
        verdicts(d);
        if (d->oom) {
            r->passed = false;
            if (r->error[0] == '\0') {
                rems_errmsgf(r->error, "out of memory: some records of the "
                                       "run are missing");
            }
        }
    }
    free_logs(d);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    rems_free(d);
    if (rv != 0) {
        drill_result_free(r);
        return rv;
    }
    *out = r;
    return 0;
}

void drill_result_free(struct drill_result *r)
{
    if (r == NULL) {
        return;
    }
    rems_free(r->steps);
    rems_free(r->faults);
    rems_free(r->samples);
    rems_free(r);
}
