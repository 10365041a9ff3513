/* agentproto/supervisor.c: rems-agent's process supervisor on one loop.
 *
 * Objects. The supervisor holds its services (struct sup_svc) in the
 * order they were added, with their dependency order beside them. A
 * service owns four timers (its "timer" for the backoff delay or the stop
 * timeout, a timer bounding the pending operator action, and one per
 * watched check, liveness and readiness), its spec, its log file and the
 * pending action. Each start of its process is a run (struct sup_run): the
 * process handle and the stdout and stderr pipes of one generation. A run
 * lives until its three handles are closed, which may be after the
 * service has moved on (a grandchild keeps a pipe open) or even after the
 * service is gone: then the run is detached (run->svc NULL) and only
 * drains and closes. Health-check attempts (sup_check.c) are the same:
 * canceled ones finish closing on their own.
 *
 * Happy path. supervisor_put() adds a service in "stopped".
 * supervisor_start_all() marks the autostart ones pending; the pump starts
 * each pending service whose dependencies are all running. A launch
 * increments the generation and spawns the process detached (it leads its
 * own process group, pgid = pid) with stdin on /dev/null and stdout and
 * stderr on pipes, then applies the rlimits with prlimit() and the cgroup
 * limits, and moves to "starting". The liveness and readiness watches
 * start with the generation; without a readiness check the service moves
 * to "running" (ready) at once, else when readiness passes
 * success_threshold times in a row.
 *
 * Exits. When the process exits, whatever is left of its group gets
 * SIGKILL, the exit code is recorded (128 + signal for a signal) and the
 * restart policy decides: permanent restarts always, transient after an
 * abnormal exit (non-zero or a signal, or a kill for failed liveness),
 * temporary never. Not restarted: "stopped" after exit 0, else "failed".
 * Restarted: a run that lasted reset_after_ms resets the retry count; the
 * count goes up; beyond max_retries (if not 0) the service is "fatal",
 * else it waits in "backoff" for sup_backoff_delay_ms(count) and launches
 * again. A spawn that fails (program missing, unknown user) counts as a
 * failed run.
 *
 * Stops. A stop sends stop_signal to the process group (and SIGCONT when
 * paused), moves to "stopping" and arms the stop timeout, after which the
 * whole group gets SIGKILL. The exit then completes what the stop was for
 * (after_stop): "stopped", "quarantined", a new launch (restart, a new
 * spec) or the restart policy (liveness failure).
 *
 * Generations. Every callback that acts on a process carries the
 * generation it was started for, and is dropped when the service's
 * current process is of another generation: exits (svc_on_exit), health
 * verdicts (svc_health) and the backoff and stop timers (timer_gen).
 *
 * Operator actions (supervisor_action) complete when the service reaches
 * their target state (act_check after every change); a later action, a
 * stop_all or close cancels them. Their callbacks and the stop_all
 * callback are always called from the kick (a zero timer), never from
 * inside a supervisor_* call. Events are delivered synchronously after
 * each change.
 *
 * Service states (enum proto_state), the moves allowed by moves[] and
 * checked by set_state():
 *
 *   stopped, failed, fatal, backoff, quarantined --launch--> starting
 *   starting --ready--> running
 *   starting, running --SIGSTOP--> paused --SIGCONT--> starting/running
 *   starting, running, paused --stop, unhealthy--> stopping
 *   stopping --exit--> stopped, quarantined, starting (restart), or as
 *                      an exit below (liveness failure)
 *   starting, running, paused --exit--> backoff, fatal, failed, stopped
 *   launch failed --> backoff, fatal, failed, stopped
 *   backoff, failed, fatal --stop--> stopped
 *   any state without a process --quarantine--> quarantined
 *
 * Failure modes: a spawn failure is a failed run (and fails a pending
 * start action with REMS_EIO); a log file that cannot be opened or
 * rotated, rlimits or cgroup settings that cannot be applied and limits
 * exceeded are SUP_EVENT_WARNING events; a check that cannot run uses the
 * fallback check, else counts as failed. Output is written to the log
 * file synchronously from the pipe's read callback (small appends to a
 * local file). */
#define _GNU_SOURCE /* prlimit() */
#include "agentproto/supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "agentproto/supervisor_int.h"
#include "common/assert.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/queue.h"
#include "common/util.h"

/* Bytes read from a child's pipe at a time. */
#define READ_SIZE ((size_t)64 << 10)

/* Diagnostics: bytes read from the end of each log file, and lines. */
#define TAIL_BYTES ((size_t)64 << 10)
#define TAIL_LINES_MAX 1000u

/* The PATH of a service that sets none. */
#define DEFAULT_PATH                                                           \
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Room for the paths the supervisor builds (log files, cgroup files). */
#define PATH_MAX_LEN 4096

/* cgroup v2 cpu.max period, microseconds. */
#define CPU_PERIOD_US 100000u

enum after_stop {
    AFTER_STOPPED = 1, /* "stopped" */
    AFTER_QUARANTINED, /* "quarantined" */
    AFTER_RESTART,     /* launch again (restart action, new spec) */
    AFTER_POLICY,      /* the restart policy, as an abnormal exit */
};

/* A pending operator action (or removal). */
#define ACT_REMOVE 100

struct sup_act {
    rems_queue link; /* in s->done once completed */
    int action;      /* enum sup_action or ACT_REMOVE */
    supervisor_action_cb cb;
    void *data;
    uint64_t timeout_ms;
    bool armed; /* start-like: the launch it waits for has happened */
    int status;
    char msg[REMS_ERRMSG_SIZE];
};

struct sup_svc;

/* One watched check (liveness with its fallback, or readiness). */
struct sup_watch {
    struct sup_svc *svc;
    int which; /* enum sup_watch_kind */
    uv_timer_t timer;
    struct sup_probe *probe; /* the attempt in flight */
    bool active;
    bool on_fallback; /* the attempt in flight is the fallback check */
    uint64_t generation;
    int pid;
    unsigned passes; /* in a row */
    unsigned fails;  /* in a row */
    int health;      /* enum proto_health: the verdict so far */
};

struct sup_run {
    rems_queue link; /* s->runs */
    struct supervisor *s;
    struct sup_svc *svc; /* NULL once detached */
    uint64_t generation;
    uv_process_t proc;
    uv_pipe_t out[2]; /* stdout, stderr */
    bool out_open[2];
    int open; /* handles not yet closed */
    bool exited;
    bool killed; /* SIGKILL after the stop timeout */
    int pid;
    uint64_t start_mono;
    int stop_signal;
    uint64_t stop_timeout_ms;
};

struct sup_svc {
    struct supervisor *s;
    struct sup_service_spec *spec;
    /* Status. */
    int state; /* enum proto_state */
    uint64_t generation;
    int health;
    bool ready;
    bool has_exit_code;
    int32_t exit_code;
    uint64_t since_ms;
    char message[REMS_ERRMSG_SIZE];
    /* Process. */
    struct sup_run *run; /* the current process, NULL when none */
    int after_stop;      /* enum after_stop, while stopping */
    bool quarantined;
    bool pending_start; /* start_all: waiting for its dependencies */
    bool removing;
    unsigned retries;  /* failed runs in a row */
    uint64_t restarts; /* restarts by policy, in all */
    uv_timer_t timer;  /* backoff delay or stop timeout */
    uint64_t timer_gen;
    uv_timer_t act_timer;
    struct sup_act *act;
    struct sup_watch watch[SUP_WATCH_NR];
    int handles; /* of the four timers, not yet closed */
    /* What the current generation was spawned with (exec checks too). */
    char **env;
    bool set_ids;
    uv_uid_t uid;
    uv_gid_t gid;
    /* Output. */
    int log_fd;
    uint64_t log_size;
    bool log_warned;
    /* Usage of the current process. */
    bool sampled;
    uint64_t rss_bytes;
    double cpu_percent;
    bool has_cpu;
    long fds;
    uint64_t sampled_ms;
    uint64_t cpu_ticks;
    uint64_t cpu_mono;
    bool mem_over;
    bool cpu_over;
    /* Sums of the sample being taken, over the process group. */
    unsigned acc_procs;
    uint64_t acc_rss;
    uint64_t acc_ticks;
    long acc_fds;
};

struct supervisor {
    uv_loop_t *loop;
    char *log_dir;
    char *cgroup_dir;
    char *work_dir;
    supervisor_event_cb event_cb;
    void *data;
    uint64_t usage_interval_ms;
    struct sup_svc **svcs; /* in the order they were added */
    size_t n;
    size_t *order; /* dependency order: indexes into svcs */
    rems_queue runs;
    rems_queue done; /* completed actions, called back from the kick */
    uv_timer_t kick;
    uv_timer_t usage;
    uint64_t rng;
    bool pumping;
    bool pump_again;
    bool stopping_all;
    bool stop_done;
    supervisor_stop_cb stop_cb;
    bool closing;
    supervisor_close_cb close_cb;
    unsigned live; /* handles and requests not yet closed or completed */
    char rbuf[READ_SIZE];
};

static void pump(struct supervisor *s);
static void act_check(struct sup_svc *svc);
static void launch(struct sup_svc *svc, const char *why);
static void begin_stop(struct sup_svc *svc, int after, const char *why);
static void watch_stop(struct sup_watch *w);
static void kick(struct supervisor *s);
static void kick_cb(uv_timer_t *t);
static void watch_timer_cb(uv_timer_t *t);

/* ------------------------------------------------------------------------
 * Small helpers
 * --------------------------------------------------------------------- */

uv_loop_t *sup__loop(struct supervisor *s)
{
    return s->loop;
}

void *supervisor_data(const struct supervisor *s)
{
    return s->data;
}

static double rand01(struct supervisor *s)
{
    /* xorshift64*: enough to spread the restarts of many services. */
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
}

static bool state_active(int state)
{
    return state == PROTO_STATE_STARTING || state == PROTO_STATE_RUNNING ||
           state == PROTO_STATE_STOPPING || state == PROTO_STATE_PAUSED ||
           state == PROTO_STATE_BACKOFF;
}

static bool has_process(int state)
{
    return state == PROTO_STATE_STARTING || state == PROTO_STATE_RUNNING ||
           state == PROTO_STATE_PAUSED;
}

static struct sup_svc *svc_find(struct supervisor *s, const char *name)
{
    size_t i;
    for (i = 0; i < s->n; i++) {
        if (strcmp(s->svcs[i]->spec->name, name) == 0) {
            return s->svcs[i];
        }
    }
    return NULL;
}

static bool depends_on(const struct sup_svc *svc, const char *name)
{
    char *const *d = svc->spec->depends_on;
    size_t i;
    for (i = 0; d != NULL && d[i] != NULL; i++) {
        if (strcmp(d[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static void describe_exit(char *buf, size_t cap, int64_t status, int sig)
{
    const char *name = sup__signal_name(sig);
    if (sig != 0 && strcmp(name, "?") != 0) {
        snprintf(buf, cap, "killed by signal %d (SIG%s)", sig, name);
    } else if (sig != 0) {
        snprintf(buf, cap, "killed by signal %d", sig);
    } else {
        snprintf(buf, cap, "exited with %lld", (long long)status);
    }
}

/* ------------------------------------------------------------------------
 * Handle bookkeeping
 * --------------------------------------------------------------------- */

static void finish_close(struct supervisor *s);

void sup__live_hold(struct supervisor *s)
{
    s->live++;
}

void sup__live_release(struct supervisor *s)
{
    REMS_ASSERT(s->live > 0);
    s->live--;
    if (s->closing && s->live == 0) {
        finish_close(s);
    }
}

/* ------------------------------------------------------------------------
 * Events and logs
 * --------------------------------------------------------------------- */

static void status_fill(const struct sup_svc *svc, struct proto_service *st)
{
    memset(st, 0, sizeof *st);
    st->service.p = svc->spec->name;
    st->service.len = strlen(svc->spec->name);
    st->state = svc->state;
    st->generation = svc->generation;
    st->health = svc->health;
    st->ready = svc->ready;
    st->has_exit_code = svc->has_exit_code;
    st->exit_code = svc->exit_code;
    st->since_ms = svc->since_ms;
    st->message.p = svc->message;
    st->message.len = strlen(svc->message);
}

static void emit(struct sup_svc *svc, int kind, const char *msg, bool removed)
{
    struct supervisor *s = svc->s;
    struct sup_event ev;
    if (s->closing || s->event_cb == NULL) {
        return;
    }
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.service = svc->spec->name;
    status_fill(svc, &ev.status);
    ev.message = msg;
    ev.removed = removed;
    s->event_cb(s, &ev);
}

static void log_state(const struct sup_svc *svc)
{
    struct rems_log_line l;
    int level = svc->state == PROTO_STATE_FAILED ||
                        svc->state == PROTO_STATE_FATAL ||
                        svc->health == PROTO_HEALTH_UNHEALTHY
                    ? REMS_LOG_WARN
                    : REMS_LOG_INFO;
    rems_log_begin(&l, (enum rems_log_level)level, "service_state");
    rems_log_str(&l, "service", svc->spec->name);
    rems_log_str(&l, "state", proto_state_name(svc->state));
    rems_log_u64(&l, "generation", svc->generation);
    rems_log_str(&l, "health", proto_health_name(svc->health));
    rems_log_bool(&l, "ready", svc->ready);
    if (svc->run != NULL) {
        rems_log_i64(&l, "pid", svc->run->pid);
    }
    if (svc->has_exit_code) {
        rems_log_i64(&l, "exit_code", svc->exit_code);
    }
    rems_log_str(&l, "message", svc->message);
    rems_log_end(&l);
}

static void warn(struct sup_svc *svc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void warn(struct sup_svc *svc, const char *fmt, ...)
{
    char msg[REMS_ERRMSG_SIZE];
    struct rems_log_line l;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rems_log_begin(&l, REMS_LOG_WARN, "service_warning");
    rems_log_str(&l, "service", svc->spec->name);
    rems_log_u64(&l, "generation", svc->generation);
    rems_log_str(&l, "message", msg);
    rems_log_end(&l);
    emit(svc, SUP_EVENT_WARNING, msg, false);
}

#define B(st) (1u << (st))
#define OUTCOMES                                                               \
    (B(PROTO_STATE_BACKOFF) | B(PROTO_STATE_FAILED) | B(PROTO_STATE_FATAL) |   \
     B(PROTO_STATE_STOPPED) | B(PROTO_STATE_QUARANTINED))

/* moves[from] has bit "to" set when from -> to is allowed. A move to the
 * same state reports a change of health, readiness or message. OUTCOMES
 * are where an exit or a failed launch can lead (quarantined: when the
 * service was quarantined meanwhile). */
static const unsigned moves[PROTO_STATE_NR] = {
    [PROTO_STATE_STOPPED] = B(PROTO_STATE_STARTING) | OUTCOMES,
    [PROTO_STATE_STARTING] = B(PROTO_STATE_STARTING) | B(PROTO_STATE_RUNNING) |
                             B(PROTO_STATE_STOPPING) | B(PROTO_STATE_PAUSED) |
                             OUTCOMES,
    [PROTO_STATE_RUNNING] = B(PROTO_STATE_RUNNING) | B(PROTO_STATE_STOPPING) |
                            B(PROTO_STATE_PAUSED) | OUTCOMES,
    [PROTO_STATE_STOPPING] =
        B(PROTO_STATE_STOPPING) | B(PROTO_STATE_STARTING) | OUTCOMES,
    [PROTO_STATE_FAILED] = B(PROTO_STATE_STARTING) | OUTCOMES,
    [PROTO_STATE_BACKOFF] = B(PROTO_STATE_STARTING) | OUTCOMES,
    [PROTO_STATE_FATAL] = B(PROTO_STATE_STARTING) | OUTCOMES,
    [PROTO_STATE_PAUSED] = B(PROTO_STATE_PAUSED) | B(PROTO_STATE_RUNNING) |
                           B(PROTO_STATE_STARTING) | B(PROTO_STATE_STOPPING) |
                           OUTCOMES,
    [PROTO_STATE_QUARANTINED] = B(PROTO_STATE_STARTING) | OUTCOMES,
};

/* The one place where a service's status changes: checks the move, stamps
 * it, logs it, reports it, then lets pending actions and the pump see it.
 * The caller has already set generation, health, ready and exit code. */
static void set_state(struct sup_svc *svc, int state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_state(struct sup_svc *svc, int state, const char *fmt, ...)
{
    va_list ap;
    PRE(state > 0 && state < PROTO_STATE_NR);
    REMS_ASSERT((moves[svc->state] & B(state)) != 0);
    svc->state = state;
    svc->since_ms = rems_wall_ms();
    va_start(ap, fmt);
    vsnprintf(svc->message, sizeof svc->message, fmt, ap);
    va_end(ap);
    log_state(svc);
    emit(svc, SUP_EVENT_STATE, svc->message, false);
    act_check(svc);
    if (svc->removing && !state_active(svc->state)) {
        kick(svc->s); /* the kick finishes the removal */
    }
    pump(svc->s);
}

/* ------------------------------------------------------------------------
 * Actions
 * --------------------------------------------------------------------- */

static void kick(struct supervisor *s)
{
    if (!s->closing) {
        uv_timer_start(&s->kick, kick_cb, 0, 0);
    }
}

static void
act_finish(struct supervisor *s, struct sup_act *a, int status, const char *msg)
{
    a->status = status;
    snprintf(a->msg, sizeof a->msg, "%s", msg);
    REMS_QUEUE_PUSH(&s->done, &a->link);
    kick(s);
}

static void act_done(struct sup_svc *svc, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void act_done(struct sup_svc *svc, int status, const char *fmt, ...)
{
    struct sup_act *a = svc->act;
    char msg[REMS_ERRMSG_SIZE];
    va_list ap;
    if (a == NULL) {
        return;
    }
    svc->act = NULL;
    uv_timer_stop(&svc->act_timer);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    act_finish(svc->s, a, status, msg);
}

static bool start_like(int action)
{
    return action == SUP_ACTION_START || action == SUP_ACTION_RESTART ||
           action == SUP_ACTION_RESUME;
}

/* Complete the pending action when its target state is reached. */
static void act_check(struct sup_svc *svc)
{
    struct sup_act *a = svc->act;
    int st = svc->state;
    if (a == NULL) {
        return;
    }
    switch (a->action) {
        case SUP_ACTION_START:
        case SUP_ACTION_RESTART:
        case SUP_ACTION_RESUME:
            if (!a->armed) {
                break;
            }
            if (st == PROTO_STATE_RUNNING) {
                act_done(svc, 0, "running");
            } else if (st == PROTO_STATE_STOPPED || st == PROTO_STATE_FAILED ||
                       st == PROTO_STATE_FATAL ||
                       st == PROTO_STATE_QUARANTINED) {
                act_done(svc, REMS_EIO, "%s", svc->message);
            }
            break;
        case SUP_ACTION_STOP:
            if (st == PROTO_STATE_STOPPED || st == PROTO_STATE_QUARANTINED) {
                act_done(svc, 0, "%s", proto_state_name(st));
            }
            break;
        case SUP_ACTION_QUARANTINE:
            if (st == PROTO_STATE_QUARANTINED) {
                act_done(svc, 0, "quarantined");
            }
            break;
        case SUP_ACTION_PAUSE:
            if (st == PROTO_STATE_PAUSED) {
                act_done(svc, 0, "paused");
            } else if (!has_process(st)) {
                act_done(svc, REMS_EIO, "%s", svc->message);
            }
            break;
        default:
            break; /* ACT_REMOVE: completed by the removal */
    }
}

static void act_timeout_cb(uv_timer_t *t)
{
    struct sup_svc *svc = t->data;
    struct sup_act *a = svc->act;
    if (a == NULL) {
        return;
    }
    if (start_like(a->action)) {
        act_done(svc, REMS_ETIMEDOUT,
                 "not running within %llu ms (state %s: %s)",
                 (unsigned long long)a->timeout_ms,
                 proto_state_name(svc->state), svc->message);
    } else {
        act_done(svc, REMS_ETIMEDOUT, "not done within %llu ms (state %s)",
                 (unsigned long long)a->timeout_ms,
                 proto_state_name(svc->state));
    }
}

/* ------------------------------------------------------------------------
 * Output capture
 * --------------------------------------------------------------------- */

static void
log_path(const struct sup_svc *svc, unsigned k, char *buf, size_t cap)
{
    if (k == 0) {
        snprintf(buf, cap, "%s/%s.log", svc->s->log_dir, svc->spec->name);
    } else {
        snprintf(buf, cap, "%s/%s.log.%u", svc->s->log_dir, svc->spec->name, k);
    }
}

static void log_open(struct sup_svc *svc)
{
    char path[PATH_MAX_LEN];
    struct stat st;
    if (svc->log_fd >= 0 || svc->s->log_dir == NULL) {
        return;
    }
    log_path(svc, 0, path, sizeof path);
    svc->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (svc->log_fd < 0) {
        if (!svc->log_warned) {
            svc->log_warned = true;
            warn(svc, "output discarded: open %s: %s", path, strerror(errno));
        }
        return;
    }
    svc->log_warned = false;
    svc->log_size = fstat(svc->log_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void log_close(struct sup_svc *svc)
{
    if (svc->log_fd >= 0) {
        close(svc->log_fd);
        svc->log_fd = -1;
    }
}

/* name.log -> name.log.1 -> ... -> name.log.keep (dropped beyond). */
static void log_rotate(struct sup_svc *svc)
{
    char from[PATH_MAX_LEN];
    char to[PATH_MAX_LEN];
    unsigned keep = svc->spec->log.keep;
    unsigned k;

    log_close(svc);
    for (k = keep; k >= 1; k--) {
        log_path(svc, k - 1, from, sizeof from);
        log_path(svc, k, to, sizeof to);
        if (rename(from, to) != 0 && errno != ENOENT) {
            warn(svc, "log rotation: rename %s: %s", from, strerror(errno));
        }
    }
    if (keep == 0) {
        log_path(svc, 0, from, sizeof from);
        if (unlink(from) != 0 && errno != ENOENT) {
            warn(svc, "log rotation: unlink %s: %s", from, strerror(errno));
        }
    }
    log_open(svc);
    if (svc->log_fd >= 0 && svc->log_size > 0) {
        /* The old file could not be moved away: start it again rather
         * than grow it without bound. */
        if (ftruncate(svc->log_fd, 0) == 0) {
            svc->log_size = 0;
        }
    }
}

static void log_write_all(struct sup_svc *svc, const char *p, size_t len)
{
    while (len > 0 && svc->log_fd >= 0) {
        ssize_t n = write(svc->log_fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (!svc->log_warned) {
                svc->log_warned = true;
                warn(svc, "output lost: write: %s",
                     n < 0 ? strerror(errno) : "short write");
            }
            return;
        }
        svc->log_size += (uint64_t)n;
        p += n;
        len -= (size_t)n;
    }
}

/* Append @len bytes, rotating so that no file grows above max_bytes:
 * a chunk that does not fit is cut at its last newline within the room
 * left (or, for a line longer than max_bytes, at the room itself). */
static void log_append(struct sup_svc *svc, const char *p, size_t len)
{
    uint64_t max = svc->spec->log.max_bytes;
    log_open(svc);
    while (len > 0 && svc->log_fd >= 0) {
        size_t room = svc->log_size >= max ? 0 : (size_t)(max - svc->log_size);
        size_t piece;
        const char *nl;
        if (len <= room) {
            log_write_all(svc, p, len);
            return;
        }
        nl = NULL;
        if (room > 0) {
            size_t i;
            for (i = room; i > 0; i--) {
                if (p[i - 1] == '\n') {
                    nl = p + i - 1;
                    break;
                }
            }
        }
        if (nl != NULL) {
            piece = (size_t)(nl - p) + 1;
        } else if (svc->log_size > 0) {
            log_rotate(svc);
            if (svc->log_size > 0) {
                /* Could neither move nor truncate it: keep appending. */
                log_write_all(svc, p, len);
                return;
            }
            continue;
        } else {
            piece = room;
        }
        log_write_all(svc, p, piece);
        p += piece;
        len -= piece;
        log_rotate(svc);
    }
}

/* ------------------------------------------------------------------------
 * Runs: one process and its pipes
 * --------------------------------------------------------------------- */

static void run_handle_closed_cb(uv_handle_t *h)
{
    struct sup_run *r = h->data;
    struct supervisor *s = r->s;
    r->open--;
    if (r->open == 0) {
        REMS_QUEUE_REMOVE(&r->link);
        rems_free(r);
    }
    sup__live_release(s);
}

static void run_close_pipe(struct sup_run *r, int i)
{
    if (r->out_open[i]) {
        r->out_open[i] = false;
        uv_close((uv_handle_t *)&r->out[i], run_handle_closed_cb);
    }
}

static void run_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct sup_run *r = h->data;
    (void)suggested;
    *buf = uv_buf_init(r->s->rbuf, (unsigned)sizeof r->s->rbuf);
}

static void run_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct sup_run *r = st->data;
    if (nread > 0) {
        if (r->svc != NULL) {
            log_append(r->svc, buf->base, (size_t)nread);
        }
        return;
    }
    if (nread < 0) {
        run_close_pipe(r, (uv_pipe_t *)st == &r->out[0] ? 0 : 1);
    }
}

static void
svc_on_exit(struct sup_svc *svc, uint64_t generation, int64_t status, int sig);

static void run_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    struct sup_run *r = proc->data;
    struct sup_svc *svc = r->svc;
    uint64_t gen = r->generation;
    r->exited = true;
    /* Whatever is left of the group goes with its leader. */
    kill(-r->pid, SIGKILL);
    uv_close((uv_handle_t *)proc, run_handle_closed_cb);
    if (svc != NULL) {
        svc_on_exit(svc, gen, status, sig);
    }
}

/* ------------------------------------------------------------------------
 * Spawning
 * --------------------------------------------------------------------- */

static void env_free(char **env)
{
    size_t i;
    if (env == NULL) {
        return;
    }
    for (i = 0; env[i] != NULL; i++) {
        rems_free(env[i]);
    }
    rems_free(env);
}

static bool env_has(char *const *env, const char *key)
{
    size_t klen = strlen(key);
    size_t i;
    for (i = 0; env != NULL && env[i] != NULL; i++) {
        if (strncmp(env[i], key, klen) == 0 && env[i][klen] == '=') {
            return true;
        }
    }
    return false;
}

static int env_add(char **env, size_t *n, const char *key, const char *value)
{
    size_t len = strlen(key) + strlen(value) + 2;
    env[*n] = rems_malloc(len);
    if (env[*n] == NULL) {
        return REMS_ENOMEM;
    }
    snprintf(env[*n], len, "%s=%s", key, value);
    (*n)++;
    return 0;
}

/* The environment and ids of the next spawn into svc->env and friends:
 * a clean environment with PATH, with HOME, USER and LOGNAME of @user when
 * set, then the spec's env (which wins). */
static int spawn_ctx_build(struct sup_svc *svc, char *errmsg)
{
    const struct sup_service_spec *spec = svc->spec;
    struct passwd pw;
    struct passwd *pwp = NULL;
    char pwbuf[4096];
    char **env;
    size_t n = 0;
    size_t i;
    size_t nspec = 0;
    int rv = 0;

    while (spec->env != NULL && spec->env[nspec] != NULL) {
        nspec++;
    }
    if (spec->user != NULL) {
        int e = getpwnam_r(spec->user, &pw, pwbuf, sizeof pwbuf, &pwp);
        if (pwp == NULL) {
            rems_errmsgf(errmsg, "user \"%s\": %s", spec->user,
                         e != 0 ? strerror(e) : "no such user");
            return REMS_EINVAL;
        }
    }
    env = rems_calloc(nspec + 5, sizeof *env);
    if (env == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    if (!env_has(spec->env, "PATH")) {
        env[n] = rems_strdup(DEFAULT_PATH);
        rv = env[n] != NULL ? 0 : REMS_ENOMEM;
        n++;
    }
    if (pwp != NULL) {
        if (rv == 0 && !env_has(spec->env, "HOME")) {
            rv = env_add(env, &n, "HOME", pw.pw_dir);
        }
        if (rv == 0 && !env_has(spec->env, "USER")) {
            rv = env_add(env, &n, "USER", pw.pw_name);
        }
        if (rv == 0 && !env_has(spec->env, "LOGNAME")) {
            rv = env_add(env, &n, "LOGNAME", pw.pw_name);
        }
    }
    for (i = 0; rv == 0 && i < nspec; i++) {
        env[n] = rems_strdup(spec->env[i]);
        rv = env[n] != NULL ? 0 : REMS_ENOMEM;
        n++;
    }
    if (rv != 0) {
        env_free(env);
        rems_errmsg_oom(errmsg);
        return rv;
    }
    env_free(svc->env);
    svc->env = env;
    svc->set_ids = pwp != NULL;
    if (pwp != NULL) {
        svc->uid = pw.pw_uid;
        svc->gid = pw.pw_gid;
    }
    return 0;
}

static void apply_rlimit(struct sup_svc *svc, int pid, int res, uint64_t v)
{
    struct rlimit rl;
    rl.rlim_cur = (rlim_t)v;
    rl.rlim_max = (rlim_t)v;
    if (prlimit(pid, res, &rl, NULL) != 0) {
        warn(svc, "limits: prlimit %s %llu: %s",
             res == RLIMIT_AS ? "RLIMIT_AS" : "RLIMIT_NOFILE",
             (unsigned long long)v, strerror(errno));
    }
}

static int write_file(const char *path, const char *text)
{
    size_t len = strlen(text);
    ssize_t n;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -1;
    }
    n = write(fd, text, len);
    if (n < 0 || (size_t)n != len) {
        int e = n < 0 ? errno : EIO;
        close(fd);
        errno = e;
        return -1;
    }
    return close(fd);
}

/* Create <cgroup_dir>/<name>, write its limits and move @pid in. */
static void apply_cgroup(struct sup_svc *svc, int pid)
{
    const struct sup_limits *l = &svc->spec->limits;
    char dir[PATH_MAX_LEN];
    char path[PATH_MAX_LEN + 32];
    char text[64];

    snprintf(dir, sizeof dir, "%s/%s", svc->s->cgroup_dir, svc->spec->name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        warn(svc, "cgroup: mkdir %s: %s", dir, strerror(errno));
        return;
    }
    snprintf(path, sizeof path, "%s/memory.max", dir);
    if (l->memory_max_bytes > 0) {
        snprintf(text, sizeof text, "%llu",
                 (unsigned long long)l->memory_max_bytes);
    } else {
        snprintf(text, sizeof text, "max");
    }
    if (write_file(path, text) != 0) {
        warn(svc, "cgroup: write %s: %s", path, strerror(errno));
    }
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    if (l->cpu_max_percent > 0) {
        snprintf(text, sizeof text, "%llu %u",
                 (unsigned long long)l->cpu_max_percent *
                     (CPU_PERIOD_US / 100u),
                 CPU_PERIOD_US);
    } else {
        snprintf(text, sizeof text, "max %u", CPU_PERIOD_US);
    }
    if (write_file(path, text) != 0) {
        warn(svc, "cgroup: write %s: %s", path, strerror(errno));
    }
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    snprintf(text, sizeof text, "%d", pid);
    if (write_file(path, text) != 0) {
        warn(svc, "cgroup: write %s: %s", path, strerror(errno));
    }
}

static void usage_reset(struct sup_svc *svc)
{
    svc->sampled = false;
    svc->has_cpu = false;
    svc->rss_bytes = 0;
    svc->cpu_percent = 0;
    svc->fds = -1;
    svc->cpu_ticks = 0;
    svc->cpu_mono = 0;
    svc->mem_over = false;
    svc->cpu_over = false;
}

/* Spawn the next generation. On failure the generation is used up,
 * @errmsg says why and nothing is left running. */
static int spawn(struct sup_svc *svc, char *errmsg)
{
    struct supervisor *s = svc->s;
    const struct sup_service_spec *spec = svc->spec;
    uv_process_options_t o;
    uv_stdio_container_t stdio[3];
    struct sup_run *r;
    const char *cwd;
    int i;
    int rv;

    svc->generation++;
    rv = spawn_ctx_build(svc, errmsg);
    if (rv != 0) {
        goto err;
    }
    r = rems_calloc(1, sizeof *r);
    if (r == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    r->s = s;
    r->svc = svc;
    r->generation = svc->generation;
    r->stop_signal = spec->stop_signal;
    r->stop_timeout_ms = spec->stop_timeout_ms;
    REMS_QUEUE_PUSH(&s->runs, &r->link);

    log_open(svc);
    memset(&o, 0, sizeof o);
    memset(stdio, 0, sizeof stdio);
    stdio[0].flags = UV_IGNORE;
    for (i = 0; i < 2; i++) {
        if (svc->log_fd >= 0) {
            rv = uv_pipe_init(s->loop, &r->out[i], 0);
            REMS_ASSERT(rv == 0); /* cannot fail on Linux */
            r->out[i].data = r;
            r->out_open[i] = true;
            r->open++;
            sup__live_hold(s);
            stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
            stdio[i + 1].data.stream = (uv_stream_t *)&r->out[i];
        } else {
            stdio[i + 1].flags = UV_IGNORE;
        }
    }
    cwd = spec->cwd != NULL ? spec->cwd : s->work_dir;
    o.exit_cb = run_exit_cb;
    o.file = spec->argv[0];
    o.args = spec->argv;
    o.env = svc->env;
    o.cwd = cwd;
    o.flags = UV_PROCESS_DETACHED; /* setsid(): its own process group */
    if (svc->set_ids) {
        o.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
        o.uid = svc->uid;
        o.gid = svc->gid;
    }
    o.stdio_count = 3;
    o.stdio = stdio;
    rv = uv_spawn(s->loop, &r->proc, &o);
    /* The handle is initialised even when the spawn fails. */
    r->proc.data = r;
    r->open++;
    sup__live_hold(s);
    if (rv != 0) {
        rems_errmsgf(errmsg, "spawn %s: %s", spec->argv[0], uv_strerror(rv));
        r->svc = NULL;
        r->exited = true;
        uv_close((uv_handle_t *)&r->proc, run_handle_closed_cb);
        run_close_pipe(r, 0);
        run_close_pipe(r, 1);
        rv = REMS_EIO;
        goto err;
    }
    r->pid = r->proc.pid;
    r->start_mono = rems_mono_ms();
    svc->run = r;
    for (i = 0; i < 2; i++) {
        if (r->out_open[i]) {
            int e = uv_read_start((uv_stream_t *)&r->out[i], run_alloc_cb,
                                  run_read_cb);
            if (e != 0) {
                warn(svc, "output: read: %s", uv_strerror(e));
                run_close_pipe(r, i);
            }
        }
    }
    /* Limits. The process already runs: until these calls it has the
     * agent's limits (a window of microseconds, before it can have done
     * much more than exec). */
    if (spec->limits.memory_max_bytes > 0) {
        apply_rlimit(svc, r->pid, RLIMIT_AS, spec->limits.memory_max_bytes);
    }
    if (spec->limits.nofile > 0) {
        apply_rlimit(svc, r->pid, RLIMIT_NOFILE, spec->limits.nofile);
    }
    if (s->cgroup_dir != NULL) {
        apply_cgroup(svc, r->pid);
    }
    usage_reset(svc);
    return 0;

err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * Health watches
 * --------------------------------------------------------------------- */

static const struct sup_check *watch_check(const struct sup_watch *w)
{
    const struct sup_service_spec *spec = w->svc->spec;
    if (w->which == SUP_WATCH_LIVENESS) {
        return w->on_fallback ? &spec->fallback : &spec->liveness;
    }
    return &spec->readiness;
}

static void svc_health(struct sup_svc *svc,
                       int which,
                       uint64_t generation,
                       int health,
                       const char *detail);
static void watch_round(struct sup_watch *w);

static void watch_result(struct sup_watch *w, int result, const char *detail)
{
    const struct sup_check *primary = w->which == SUP_WATCH_LIVENESS
                                          ? &w->svc->spec->liveness
                                          : &w->svc->spec->readiness;
    uint64_t gen = w->generation;
    char why[REMS_ERRMSG_SIZE];
    int verdict = 0;

    if (result == SUP_PROBE_ERROR && w->which == SUP_WATCH_LIVENESS &&
        !w->on_fallback && w->svc->spec->fallback.kind != SUP_CHECK_NONE) {
        w->on_fallback = true;
        watch_round(w);
        return;
    }
    if (result == SUP_PROBE_ERROR) {
        snprintf(why, sizeof why, "cannot run: %s", detail);
    } else {
        snprintf(why, sizeof why, "%s%s", w->on_fallback ? "fallback: " : "",
                 detail);
    }
    w->on_fallback = false;
    if (result == SUP_PROBE_PASS) {
        w->passes++;
        w->fails = 0;
        if (w->health != PROTO_HEALTH_HEALTHY &&
            w->passes >= primary->success_threshold) {
            verdict = PROTO_HEALTH_HEALTHY;
        }
    } else {
        w->fails++;
        w->passes = 0;
        if (w->health != PROTO_HEALTH_UNHEALTHY &&
            w->fails >= primary->failure_threshold) {
            verdict = PROTO_HEALTH_UNHEALTHY;
        }
    }
    if (verdict != 0) {
        w->health = verdict;
        svc_health(w->svc, w->which, gen, verdict, why);
    }
    /* The verdict may have stopped this watch or started a new one. */
    if (w->active && w->generation == gen && w->probe == NULL) {
        uv_timer_start(&w->timer, watch_timer_cb, primary->interval_ms, 0);
    }
}

static void
watch_probe_cb(struct sup_probe *p, void *data, int result, const char *detail)
{
    struct sup_watch *w = data;
    REMS_ASSERT(w->probe == p);
    w->probe = NULL;
    watch_result(w, result, detail);
}

static void watch_round(struct sup_watch *w)
{
    struct sup_svc *svc = w->svc;
    struct sup_spawn_ctx ctx;
    char errmsg[REMS_ERRMSG_SIZE];
    int rv;

    ctx.env = svc->env;
    ctx.cwd = svc->spec->cwd != NULL ? svc->spec->cwd : svc->s->work_dir;
    ctx.set_ids = svc->set_ids;
    ctx.uid = svc->uid;
    ctx.gid = svc->gid;
    rv = sup__probe_start(svc->s, watch_check(w), &ctx, w->pid, watch_probe_cb,
                          w, &w->probe, errmsg);
    if (rv != 0) {
        w->probe = NULL;
        watch_result(w, SUP_PROBE_ERROR, errmsg);
    }
}

static void watch_timer_cb(uv_timer_t *t)
{
    struct sup_watch *w = t->data;
    if (!w->active || w->probe != NULL) {
        return;
    }
    w->on_fallback = false;
    watch_round(w);
}

static void
watch_start(struct sup_watch *w, uint64_t generation, int pid, bool fresh)
{
    const struct sup_check *chk = w->which == SUP_WATCH_LIVENESS
                                      ? &w->svc->spec->liveness
                                      : &w->svc->spec->readiness;
    watch_stop(w);
    if (chk->kind == SUP_CHECK_NONE) {
        return;
    }
    w->active = true;
    w->generation = generation;
    w->pid = pid;
    w->passes = 0;
    w->fails = 0;
    w->on_fallback = false;
    if (fresh) {
        w->health = PROTO_HEALTH_UNKNOWN;
    }
    uv_timer_start(&w->timer, watch_timer_cb,
                   fresh ? chk->initial_delay_ms : chk->interval_ms, 0);
}

static void watch_stop(struct sup_watch *w)
{
    w->active = false;
    uv_timer_stop(&w->timer);
    if (w->probe != NULL) {
        sup__probe_cancel(w->probe);
        w->probe = NULL;
    }
}

static void watches_stop(struct sup_svc *svc)
{
    int i;
    for (i = 0; i < SUP_WATCH_NR; i++) {
        watch_stop(&svc->watch[i]);
    }
}

static void watches_start(struct sup_svc *svc, bool fresh)
{
    REMS_ASSERT(svc->run != NULL);
    watch_start(&svc->watch[SUP_WATCH_LIVENESS], svc->run->generation,
                svc->run->pid, fresh);
    if (!svc->ready) {
        watch_start(&svc->watch[SUP_WATCH_READINESS], svc->run->generation,
                    svc->run->pid, fresh);
    } else {
        /* Readiness keeps being watched once reached: it may be lost. */
        watch_start(&svc->watch[SUP_WATCH_READINESS], svc->run->generation,
                    svc->run->pid, false);
    }
}

/* A health verdict of generation @generation: the entry point of the
 * watches (and of the test hook), where older generations are dropped. */
static void svc_health(struct sup_svc *svc,
                       int which,
                       uint64_t generation,
                       int health,
                       const char *detail)
{
    if (svc->run == NULL || svc->run->generation != generation ||
        (svc->state != PROTO_STATE_STARTING &&
         svc->state != PROTO_STATE_RUNNING)) {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_DEBUG, "service_stale_health");
        rems_log_str(&l, "service", svc->spec->name);
        rems_log_u64(&l, "generation", generation);
        rems_log_u64(&l, "current", svc->generation);
        rems_log_end(&l);
        return;
    }
    if (which == SUP_WATCH_LIVENESS) {
        svc->health = health;
        if (health == PROTO_HEALTH_UNHEALTHY) {
            char why[REMS_ERRMSG_SIZE];
            snprintf(why, sizeof why, "liveness check failed: %s", detail);
            begin_stop(svc, AFTER_POLICY, why);
        } else {
            set_state(svc, svc->state, "liveness check passed");
        }
        return;
    }
    if (health == PROTO_HEALTH_HEALTHY) {
        svc->ready = true;
        set_state(svc, PROTO_STATE_RUNNING, "ready");
    } else if (svc->ready) {
        svc->ready = false;
        set_state(svc, svc->state, "readiness check failed: %s", detail);
    }
}

/* ------------------------------------------------------------------------
 * Life of a service: launch, exit, policy, stop
 * --------------------------------------------------------------------- */

static void backoff_cb(uv_timer_t *t);

/* The restart policy after a run ended (or could not start). */
static void
policy(struct sup_svc *svc, bool abnormal, uint64_t ran_ms, const char *what)
{
    struct supervisor *s = svc->s;
    const struct sup_service_spec *spec = svc->spec;
    bool restart;
    uint64_t delay;

    restart = !svc->quarantined && !svc->removing && !s->stopping_all &&
              (spec->restart == SUP_RESTART_PERMANENT ||
               (spec->restart == SUP_RESTART_TRANSIENT && abnormal));
    if (svc->quarantined) {
        set_state(svc, PROTO_STATE_QUARANTINED, "%s", what);
        return;
    }
    if (!restart) {
        set_state(svc, abnormal ? PROTO_STATE_FAILED : PROTO_STATE_STOPPED,
                  "%s", what);
        return;
    }
    if (ran_ms >= spec->backoff.reset_after_ms) {
        svc->retries = 0;
    }
    svc->retries++;
    if (spec->backoff.max_retries != 0 &&
        svc->retries > spec->backoff.max_retries) {
        set_state(svc, PROTO_STATE_FATAL, "%s; %u restarts in a row failed",
                  what, spec->backoff.max_retries);
        return;
    }
    delay = sup_backoff_delay_ms(&spec->backoff, svc->retries, rand01(s));
    svc->timer_gen = svc->generation;
    uv_timer_start(&svc->timer, backoff_cb, delay, 0);
    set_state(svc, PROTO_STATE_BACKOFF, "%s; restart %u in %llu ms", what,
              svc->retries, (unsigned long long)delay);
}

/* The backoff delay set after generation @generation ended is over. */
static void backoff_due(struct sup_svc *svc, uint64_t generation)
{
    if (svc->state != PROTO_STATE_BACKOFF || generation != svc->generation) {
        return;
    }
    svc->restarts++;
    launch(svc, "restarted");
}

static void backoff_cb(uv_timer_t *t)
{
    struct sup_svc *svc = t->data;
    backoff_due(svc, svc->timer_gen);
}

static void launch(struct sup_svc *svc, const char *why)
{
    char errmsg[REMS_ERRMSG_SIZE];
    int rv;

    svc->pending_start = false;
    svc->health = PROTO_HEALTH_UNKNOWN;
    svc->ready = false;
    if (svc->act != NULL && start_like(svc->act->action)) {
        svc->act->armed = true;
    }
    rv = spawn(svc, errmsg);
    if (rv != 0) {
        svc->has_exit_code = false;
        if (svc->act != NULL && start_like(svc->act->action)) {
            act_done(svc, REMS_EIO, "%s", errmsg);
        }
        policy(svc, true, 0, errmsg);
        return;
    }
    svc->has_exit_code = false;
    watches_start(svc, true);
    set_state(svc, PROTO_STATE_STARTING, "%s: pid %d", why, svc->run->pid);
    if (svc->state == PROTO_STATE_STARTING &&
        svc->spec->readiness.kind == SUP_CHECK_NONE) {
        svc->ready = true;
        set_state(svc, PROTO_STATE_RUNNING, "running: pid %d", svc->run->pid);
    }
}

static void
svc_on_exit(struct sup_svc *svc, uint64_t generation, int64_t status, int sig)
{
    struct sup_run *r = svc->run;
    char what[REMS_ERRMSG_SIZE];
    char how[96];
    uint64_t ran_ms;
    bool abnormal = sig != 0 || status != 0;

    if (r == NULL || r->generation != generation) {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "service_stale_exit");
        rems_log_str(&l, "service", svc->spec->name);
        rems_log_u64(&l, "generation", generation);
        rems_log_u64(&l, "current", svc->generation);
        rems_log_end(&l);
        return;
    }
    ran_ms = rems_mono_ms() - r->start_mono;
    svc->run = NULL;
    uv_timer_stop(&svc->timer);
    watches_stop(svc);
    svc->health = PROTO_HEALTH_UNKNOWN;
    svc->ready = false;
    svc->has_exit_code = true;
    svc->exit_code = sig != 0 ? 128 + sig : (int32_t)status;
    describe_exit(how, sizeof how, status, sig);
    if (r->killed) {
        snprintf(what, sizeof what, "%s after the %llu ms stop timeout", how,
                 (unsigned long long)r->stop_timeout_ms);
    } else {
        snprintf(what, sizeof what, "%s", how);
    }

    if (svc->state != PROTO_STATE_STOPPING) {
        policy(svc, abnormal, ran_ms, what);
        return;
    }
    switch (svc->after_stop) {
        case AFTER_QUARANTINED:
            set_state(svc, PROTO_STATE_QUARANTINED, "quarantined (%s)", what);
            break;
        case AFTER_RESTART:
            if (svc->s->stopping_all || svc->removing) {
                set_state(svc, PROTO_STATE_STOPPED, "stopped (%s)", what);
            } else {
                launch(svc, "restarted");
            }
            break;
        case AFTER_POLICY: {
            char why[REMS_ERRMSG_SIZE];
            snprintf(why, sizeof why, "unhealthy, %s", what);
            policy(svc, true, ran_ms, why);
            break;
        }
        default:
            set_state(svc, PROTO_STATE_STOPPED, "stopped (%s)", what);
            break;
    }
}

/* The stop timeout of generation @generation is over. */
static void kill_due(struct sup_svc *svc, uint64_t generation)
{
    struct sup_run *r = svc->run;
    if (svc->state != PROTO_STATE_STOPPING || r == NULL ||
        r->generation != generation) {
        return;
    }
    r->killed = true;
    kill(-r->pid, SIGKILL);
}

static void kill_cb(uv_timer_t *t)
{
    struct sup_svc *svc = t->data;
    kill_due(svc, svc->timer_gen);
}

/* Make the service reach what @after says: stop its process gracefully
 * first if it has one. */
static void begin_stop(struct sup_svc *svc, int after, const char *why)
{
    struct sup_run *r = svc->run;

    switch (svc->state) {
        case PROTO_STATE_STARTING:
        case PROTO_STATE_RUNNING:
        case PROTO_STATE_PAUSED:
            REMS_ASSERT(r != NULL);
            watches_stop(svc);
            svc->after_stop = after;
            kill(-r->pid, r->stop_signal);
            if (svc->state == PROTO_STATE_PAUSED) {
                kill(-r->pid, SIGCONT); /* so that it sees the signal */
            }
            svc->timer_gen = r->generation;
            if (r->stop_signal == SIGKILL) {
                uv_timer_stop(&svc->timer);
            } else {
                uv_timer_start(&svc->timer, kill_cb, r->stop_timeout_ms, 0);
            }
            set_state(svc, PROTO_STATE_STOPPING, "%s", why);
            return;
        case PROTO_STATE_STOPPING:
            /* A quarantine in progress stays one; anything else is
             * replaced by the latest wish. */
            if (!(svc->after_stop == AFTER_QUARANTINED &&
                  after == AFTER_STOPPED)) {
                svc->after_stop = after;
            }
            return;
        case PROTO_STATE_BACKOFF:
            uv_timer_stop(&svc->timer);
            break;
        default:
            break;
    }
    switch (after) {
        case AFTER_QUARANTINED:
            if (svc->state != PROTO_STATE_QUARANTINED) {
                set_state(svc, PROTO_STATE_QUARANTINED, "%s", why);
            }
            break;
        case AFTER_RESTART:
            launch(svc, why);
            break;
        default:
            if (svc->state != PROTO_STATE_STOPPED &&
                svc->state != PROTO_STATE_QUARANTINED) {
                set_state(svc, PROTO_STATE_STOPPED, "%s", why);
            }
            break;
    }
}

static void resume(struct sup_svc *svc, const char *why)
{
    REMS_ASSERT(svc->run != NULL);
    kill(-svc->run->pid, SIGCONT);
    watches_start(svc, false);
    set_state(svc, svc->ready ? PROTO_STATE_RUNNING : PROTO_STATE_STARTING,
              "%s", why);
}

/* ------------------------------------------------------------------------
 * The pump: dependency-ordered start_all and stop_all
 * --------------------------------------------------------------------- */

static bool deps_running(struct supervisor *s, const struct sup_svc *svc)
{
    char *const *d = svc->spec->depends_on;
    size_t i;
    for (i = 0; d != NULL && d[i] != NULL; i++) {
        struct sup_svc *dep = svc_find(s, d[i]);
        if (dep == NULL || dep->state != PROTO_STATE_RUNNING) {
            return false;
        }
    }
    return true;
}

static bool has_active_dependent(struct supervisor *s,
                                 const struct sup_svc *svc)
{
    size_t i;
    for (i = 0; i < s->n; i++) {
        const struct sup_svc *o = s->svcs[i];
        if (o != svc && state_active(o->state) &&
            depends_on(o, svc->spec->name)) {
            return true;
        }
    }
    return false;
}

static void pump_once(struct supervisor *s)
{
    size_t k;
    bool any_active = false;

    if (!s->stopping_all) {
        for (k = 0; k < s->n; k++) {
            struct sup_svc *svc = s->svcs[s->order[k]];
            if (svc->pending_start && svc->state == PROTO_STATE_STOPPED &&
                deps_running(s, svc)) {
                launch(svc, "started");
            }
        }
        return;
    }
    for (k = s->n; k > 0; k--) {
        struct sup_svc *svc = s->svcs[s->order[k - 1]];
        if (!state_active(svc->state)) {
            continue;
        }
        any_active = true;
        if (svc->state != PROTO_STATE_STOPPING &&
            !has_active_dependent(s, svc)) {
            begin_stop(svc, AFTER_STOPPED, "stopping all services");
        }
    }
    if (!any_active && !s->stop_done) {
        s->stop_done = true;
        kick(s);
    }
}

static void pump(struct supervisor *s)
{
    if (s->closing) {
        return;
    }
    if (s->pumping) {
        s->pump_again = true;
        return;
    }
    s->pumping = true;
    do {
        s->pump_again = false;
        pump_once(s);
    } while (s->pump_again);
    s->pumping = false;
}

/* ------------------------------------------------------------------------
 * Usage sampling
 * --------------------------------------------------------------------- */

static int read_small(const char *path, char *buf, size_t cap)
{
    ssize_t n;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    while (got < cap - 1) {
        n = read(fd, buf + got, cap - 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return 0;
}

/* One process of /proc: its process group and usage. */
struct proc_stat {
    int pgrp;
    uint64_t ticks; /* utime + stime */
    uint64_t rss_bytes;
};

static int proc_stat_read(const char *pid, struct proc_stat *ps)
{
    char path[64];
    char buf[1024];
    char *p;
    char *tok;
    char *save = NULL;
    unsigned long long ut = 0;
    int field = 2;

    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    if (read_small(path, buf, sizeof buf) != 0 ||
        (p = strrchr(buf, ')')) == NULL) {
        return -1;
    }
    /* Fields after "(comm) ": 3 state, 5 pgrp, 14 utime, 15 stime,
     * 24 rss (pages). */
    memset(ps, 0, sizeof *ps);
    for (tok = strtok_r(p + 1, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 5) {
            ps->pgrp = atoi(tok);
        } else if (field == 14) {
            ut = strtoull(tok, NULL, 10);
        } else if (field == 15) {
            ps->ticks = ut + strtoull(tok, NULL, 10);
        } else if (field == 24) {
            ps->rss_bytes =
                strtoull(tok, NULL, 10) * (uint64_t)sysconf(_SC_PAGESIZE);
            return 0;
        }
    }
    return -1;
}

/* VmRSS of /proc/<pid>/status, or @dflt. */
static uint64_t proc_vmrss(const char *pid, uint64_t dflt)
{
    char path[64];
    char buf[4096];
    char *p;
    snprintf(path, sizeof path, "/proc/%s/status", pid);
    if (read_small(path, buf, sizeof buf) == 0 &&
        (p = strstr(buf, "\nVmRSS:")) != NULL) {
        return strtoull(p + 7, NULL, 10) * 1024u;
    }
    return dflt;
}

static long proc_fds(const char *pid)
{
    char path[64];
    struct dirent *e;
    long n = 0;
    DIR *d;
    snprintf(path, sizeof path, "/proc/%s/fd", pid);
    d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* Close the sample of @svc gathered by usage_cb() and warn about limits,
 * once per crossing (armed again when back under). */
static void sample_done(struct sup_svc *svc, uint64_t now)
{
    const struct sup_limits *lim = &svc->spec->limits;
    long hz = sysconf(_SC_CLK_TCK);

    svc->rss_bytes = svc->acc_rss;
    svc->fds = svc->acc_fds;
    if (svc->cpu_mono != 0 && now > svc->cpu_mono && hz > 0 &&
        svc->acc_ticks >= svc->cpu_ticks) {
        svc->cpu_percent = (double)(svc->acc_ticks - svc->cpu_ticks) * 1000.0 /
                           (double)hz * 100.0 / (double)(now - svc->cpu_mono);
        svc->has_cpu = true;
    }
    /* A member that exited takes its ticks along: the next delta starts
     * from here either way. */
    svc->cpu_ticks = svc->acc_ticks;
    svc->cpu_mono = now;
    svc->sampled = true;
    svc->sampled_ms = rems_wall_ms();

    if (lim->memory_max_bytes > 0) {
        if (svc->rss_bytes > lim->memory_max_bytes && !svc->mem_over) {
            svc->mem_over = true;
            warn(svc,
                 "memory: resident %llu bytes (%u processes) exceeds "
                 "limits.memory_max_bytes %llu",
                 (unsigned long long)svc->rss_bytes, svc->acc_procs,
                 (unsigned long long)lim->memory_max_bytes);
        } else if (svc->rss_bytes <= lim->memory_max_bytes) {
            svc->mem_over = false;
        }
    }
    if (lim->cpu_max_percent > 0 && svc->has_cpu) {
        if (svc->cpu_percent > (double)lim->cpu_max_percent && !svc->cpu_over) {
            svc->cpu_over = true;
            warn(svc, "cpu: %.1f%% exceeds limits.cpu_max_percent %u",
                 svc->cpu_percent, lim->cpu_max_percent);
        } else if (svc->cpu_percent <= (double)lim->cpu_max_percent) {
            svc->cpu_over = false;
        }
    }
}

/* One pass over /proc per tick: every process is counted for the service
 * whose process group it belongs to (its main process leads the group). */
static void usage_cb(uv_timer_t *t)
{
    struct supervisor *s = t->data;
    uint64_t now = rems_mono_ms();
    struct dirent *e;
    bool any = false;
    DIR *d;
    size_t i;

    for (i = 0; i < s->n; i++) {
        struct sup_svc *svc = s->svcs[i];
        svc->acc_procs = 0;
        svc->acc_rss = 0;
        svc->acc_ticks = 0;
        svc->acc_fds = 0;
        any = any || svc->run != NULL;
    }
    if (!any) {
        return;
    }
    d = opendir("/proc");
    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        struct proc_stat ps;
        struct sup_svc *owner = NULL;
        long fds;
        if (e->d_name[0] < '1' || e->d_name[0] > '9' ||
            proc_stat_read(e->d_name, &ps) != 0 || ps.pgrp <= 0) {
            continue;
        }
        for (i = 0; i < s->n && owner == NULL; i++) {
            struct sup_run *r = s->svcs[i]->run;
            if (r != NULL && r->pid == ps.pgrp) {
                owner = s->svcs[i];
            }
        }
        if (owner == NULL) {
            continue;
        }
        owner->acc_procs++;
        owner->acc_ticks += ps.ticks;
        owner->acc_rss += proc_vmrss(e->d_name, ps.rss_bytes);
        fds = proc_fds(e->d_name);
        if (fds > 0) {
            owner->acc_fds += fds;
        }
    }
    closedir(d);
    for (i = 0; i < s->n; i++) {
        struct sup_svc *svc = s->svcs[i];
        if (svc->run != NULL && svc->acc_procs > 0) {
            sample_done(svc, now);
        }
    }
}

/* ------------------------------------------------------------------------
 * Services: creation and removal
 * --------------------------------------------------------------------- */

static void svc_free(struct sup_svc *svc)
{
    log_close(svc);
    env_free(svc->env);
    sup_spec_free(svc->spec);
    rems_free(svc);
}

static void svc_handle_closed(struct sup_svc *svc)
{
    struct supervisor *s = svc->s;
    svc->handles--;
    if (svc->handles == 0) {
        svc_free(svc);
    }
    sup__live_release(s);
}

static void svc_timer_closed_cb(uv_handle_t *h)
{
    svc_handle_closed(h->data);
}

static void watch_timer_closed_cb(uv_handle_t *h)
{
    struct sup_watch *w = h->data;
    svc_handle_closed(w->svc);
}

static void svc_timer_init(struct sup_svc *svc, uv_timer_t *t, void *data)
{
    int rv = uv_timer_init(svc->s->loop, t);
    REMS_ASSERT(rv == 0); /* cannot fail on Linux */
    t->data = data;
    svc->handles++;
    sup__live_hold(svc->s);
}

static struct sup_svc *svc_new(struct supervisor *s,
                               struct sup_service_spec *spec)
{
    struct sup_svc *svc = rems_calloc(1, sizeof *svc);
    int i;
    if (svc == NULL) {
        return NULL;
    }
    svc->s = s;
    svc->spec = spec;
    svc->state = PROTO_STATE_STOPPED;
    svc->health = PROTO_HEALTH_UNKNOWN;
    svc->since_ms = rems_wall_ms();
    svc->log_fd = -1;
    svc->fds = -1;
    svc_timer_init(svc, &svc->timer, svc);
    svc_timer_init(svc, &svc->act_timer, svc);
    for (i = 0; i < SUP_WATCH_NR; i++) {
        svc->watch[i].svc = svc;
        svc->watch[i].which = i;
        svc->watch[i].health = PROTO_HEALTH_UNKNOWN;
        svc_timer_init(svc, &svc->watch[i].timer, &svc->watch[i]);
    }
    return svc;
}

/* Detach the service from its runs and probes and close its timers; it
 * is freed when the last one is closed. Its process, if any, is killed. */
static void svc_dispose(struct sup_svc *svc)
{
    struct supervisor *s = svc->s;
    rems_queue *q;
    int i;

    watches_stop(svc);
    REMS_QUEUE_FOREACH(q, &s->runs)
    {
        struct sup_run *r = REMS_QUEUE_DATA(q, struct sup_run, link);
        if (r->svc == svc) {
            r->svc = NULL;
            if (!r->exited) {
                kill(-r->pid, SIGKILL);
            }
        }
    }
    svc->run = NULL;
    log_close(svc);
    uv_close((uv_handle_t *)&svc->timer, svc_timer_closed_cb);
    uv_close((uv_handle_t *)&svc->act_timer, svc_timer_closed_cb);
    for (i = 0; i < SUP_WATCH_NR; i++) {
        uv_close((uv_handle_t *)&svc->watch[i].timer, watch_timer_closed_cb);
    }
}

/* Recompute the dependency order of the services into @order (s->n + 1
 * entries) with @extra (a new spec, or the replacement of @replace)
 * counted in. Services being removed are left out of the check. */
static int order_compute(struct supervisor *s,
                         const struct sup_service_spec *extra,
                         const struct sup_svc *replace,
                         size_t *order,
                         size_t *n_out,
                         char *errmsg)
{
    const struct sup_service_spec **specs;
    size_t *idx; /* position in specs -> index in s->svcs (n for extra) */
    size_t *tmp;
    size_t n = 0;
    size_t i;
    int rv;

    specs = rems_calloc(s->n + 1, sizeof *specs);
    idx = rems_calloc(2 * (s->n + 1), sizeof *idx);
    if (specs == NULL || idx == NULL) {
        rems_free(specs);
        rems_free(idx);
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    tmp = idx + s->n + 1;
    for (i = 0; i < s->n; i++) {
        if (s->svcs[i]->removing) {
            continue;
        }
        specs[n] = s->svcs[i] == replace ? extra : s->svcs[i]->spec;
        idx[n] = i;
        n++;
    }
    if (extra != NULL && replace == NULL) {
        specs[n] = extra;
        idx[n] = s->n;
        n++;
    }
    rv = sup_spec_order(specs, n, tmp, errmsg);
    if (rv == 0) {
        size_t k = 0;
        for (i = 0; i < n; i++) {
            order[k++] = idx[tmp[i]];
        }
        /* Services being removed go first: stop_all reaches them last. */
        for (i = 0; i < s->n; i++) {
            if (s->svcs[i]->removing) {
                memmove(order + 1, order, k * sizeof *order);
                order[0] = i;
                k++;
            }
        }
        *n_out = k;
    }
    rems_free(specs);
    rems_free(idx);
    return rv;
}

/* Forget services that finished stopping for their removal. */
static void removals(struct supervisor *s)
{
    size_t i = 0;
    while (i < s->n) {
        struct sup_svc *svc = s->svcs[i];
        struct sup_act *a;
        size_t k;
        size_t j;
        if (!svc->removing || state_active(svc->state)) {
            i++;
            continue;
        }
        emit(svc, SUP_EVENT_STATE, "removed", true);
        a = svc->act;
        svc->act = NULL;
        uv_timer_stop(&svc->act_timer);
        memmove(s->svcs + i, s->svcs + i + 1, (s->n - i - 1) * sizeof *s->svcs);
        s->n--;
        for (k = 0, j = 0; k < s->n + 1; k++) {
            if (s->order[k] == i) {
                continue;
            }
            s->order[j++] = s->order[k] > i ? s->order[k] - 1 : s->order[k];
        }
        svc_dispose(svc);
        if (a != NULL) {
            act_finish(s, a, 0, "removed");
        }
    }
}

/* ------------------------------------------------------------------------
 * The kick: deferred callbacks
 * --------------------------------------------------------------------- */

static void kick_cb(uv_timer_t *t)
{
    struct supervisor *s = t->data;
    removals(s);
    while (!REMS_QUEUE_EMPTY(&s->done) && !s->closing) {
        rems_queue *q = REMS_QUEUE_HEAD(&s->done);
        struct sup_act *a = REMS_QUEUE_DATA(q, struct sup_act, link);
        REMS_QUEUE_REMOVE(q);
        if (a->cb != NULL) {
            a->cb(a->data, a->status, a->msg);
        }
        rems_free(a);
    }
    if (s->stop_done && s->stop_cb != NULL && !s->closing) {
        supervisor_stop_cb cb = s->stop_cb;
        s->stop_cb = NULL;
        cb(s);
    }
}

/* ------------------------------------------------------------------------
 * Public API
 * --------------------------------------------------------------------- */

int supervisor_open(uv_loop_t *loop,
                    const struct supervisor_options *opts,
                    struct supervisor **out,
                    char *errmsg)
{
    struct supervisor *s;
    int rv;

    PRE(loop != NULL && opts != NULL && out != NULL && errmsg != NULL);

    s = rems_calloc(1, sizeof *s);
    if (s == NULL) {
        rv = REMS_ENOMEM;
        goto err;
    }
    s->loop = loop;
    s->event_cb = opts->event_cb;
    s->data = opts->data;
    s->usage_interval_ms = opts->usage_interval_ms != 0
                               ? opts->usage_interval_ms
                               : SUP_DEFAULT_USAGE_INTERVAL_MS;
    rv = 0;
    if (opts->log_dir != NULL &&
        (s->log_dir = rems_strdup(opts->log_dir)) == NULL) {
        rv = REMS_ENOMEM;
    }
    if (rv == 0 && opts->cgroup_dir != NULL &&
        (s->cgroup_dir = rems_strdup(opts->cgroup_dir)) == NULL) {
        rv = REMS_ENOMEM;
    }
    if (rv == 0 && opts->work_dir != NULL &&
        (s->work_dir = rems_strdup(opts->work_dir)) == NULL) {
        rv = REMS_ENOMEM;
    }
    if (rv != 0) {
        goto err_after_alloc;
    }
    REMS_QUEUE_INIT(&s->runs);
    REMS_QUEUE_INIT(&s->done);
    s->rng = (rems_wall_ms() * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)getpid() ^
             (uint64_t)(uintptr_t)s;
    if (s->rng == 0) {
        s->rng = 1;
    }
    rv = uv_timer_init(loop, &s->kick);
    REMS_ASSERT(rv == 0); /* cannot fail on Linux */
    s->kick.data = s;
    rv = uv_timer_init(loop, &s->usage);
    REMS_ASSERT(rv == 0);
    s->usage.data = s;
    s->live = 2;
    uv_timer_start(&s->usage, usage_cb, s->usage_interval_ms,
                   s->usage_interval_ms);
    *out = s;
    return 0;

err_after_alloc:
    rems_free(s->log_dir);
    rems_free(s->cgroup_dir);
    rems_free(s->work_dir);
    rems_free(s);
err:
    rems_errmsg_oom(errmsg);
    POST(rv != 0);
    return rv;
}

int supervisor_put(struct supervisor *s,
                   const struct sup_service_spec *spec,
                   char *errmsg)
{
    struct sup_service_spec *copy;
    struct sup_svc *svc;
    struct sup_svc **svcs;
    size_t *order;
    size_t n;
    int rv;

    PRE(s != NULL && spec != NULL && errmsg != NULL && !s->closing);
    if (spec->name == NULL || !sup__name_valid(spec->name) ||
        spec->argv == NULL || spec->argv[0] == NULL) {
        rems_errmsgf(errmsg, "services: a spec needs a valid name and a "
                             "command");
        rv = REMS_EINVAL;
        goto err;
    }
    svc = svc_find(s, spec->name);
    if (svc != NULL && svc->removing) {
        rems_errmsgf(errmsg, "services.%s: being removed", spec->name);
        rv = REMS_EBUSY;
        goto err;
    }
    if (svc != NULL && sup__spec_equal(svc->spec, spec)) {
        return 0; /* the same spec again (a manifest pushed twice) */
    }
    rv = sup__spec_copy(spec, &copy);
    if (rv != 0) {
        rems_errmsg_oom(errmsg);
        goto err;
    }
    order = rems_calloc(s->n + 1, sizeof *order);
    if (order == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_copy;
    }
    rv = order_compute(s, copy, svc, order, &n, errmsg);
    if (rv != 0) {
        goto err_after_order;
    }

    if (svc != NULL) {
        bool running = has_process(svc->state);
        /* The watches read the spec being replaced. */
        watches_stop(svc);
        sup_spec_free(svc->spec);
        svc->spec = copy;
        rems_free(s->order);
        s->order = order;
        if (running) {
            svc->retries = 0;
            begin_stop(svc, AFTER_RESTART, "spec changed: restarting");
        } else if (svc->state == PROTO_STATE_STOPPING &&
                   svc->after_stop == AFTER_POLICY) {
            svc->retries = 0;
            svc->after_stop = AFTER_RESTART;
        }
        return 0;
    }

    svcs = rems_realloc(s->svcs, (s->n + 1) * sizeof *svcs);
    if (svcs == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_order;
    }
    s->svcs = svcs;
    svc = svc_new(s, copy);
    if (svc == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_order;
    }
    s->svcs[s->n++] = svc;
    rems_free(s->order);
    s->order = order;
    set_state(svc, PROTO_STATE_STOPPED, "added");
    return 0;

err_after_order:
    rems_free(order);
err_after_copy:
    sup_spec_free(copy);
err:
    POST(rv != 0);
    return rv;
}

int supervisor_start_all(struct supervisor *s, char *errmsg)
{
    size_t k;
    PRE(s != NULL && errmsg != NULL);
    if (s->closing || s->stopping_all) {
        rems_errmsgf(errmsg, "start all: shutting down");
        return REMS_ESHUTDOWN;
    }
    for (k = 0; k < s->n; k++) {
        struct sup_svc *svc = s->svcs[s->order[k]];
        if (svc->spec->autostart && svc->state == PROTO_STATE_STOPPED &&
            !svc->quarantined && !svc->removing) {
            svc->pending_start = true;
        }
    }
    pump(s);
    return 0;
}

int supervisor_autostart_new(struct supervisor *s, const char *name)
{
    struct sup_svc *svc;
    PRE(s != NULL && name != NULL);
    if (s->closing || s->stopping_all) {
        return REMS_ESHUTDOWN;
    }
    svc = svc_find(s, name);
    if (svc == NULL) {
        return REMS_ENOTFOUND;
    }
    if (svc->spec->autostart && svc->state == PROTO_STATE_STOPPED &&
        svc->generation == 0 && !svc->quarantined && !svc->removing) {
        svc->pending_start = true;
        pump(s);
    }
    return 0;
}

static const char *const action_names[] = {
    [SUP_ACTION_START] = "start",     [SUP_ACTION_STOP] = "stop",
    [SUP_ACTION_RESTART] = "restart", [SUP_ACTION_PAUSE] = "pause",
    [SUP_ACTION_RESUME] = "resume",   [SUP_ACTION_QUARANTINE] = "quarantine",
};

static void do_start(struct sup_svc *svc)
{
    switch (svc->state) {
        case PROTO_STATE_RUNNING:
        case PROTO_STATE_STARTING:
            svc->act->armed = true;
            break;
        case PROTO_STATE_PAUSED:
            svc->act->armed = true;
            resume(svc, "resumed (start requested)");
            break;
        case PROTO_STATE_STOPPING:
            svc->quarantined = false;
            svc->after_stop = AFTER_RESTART;
            break;
        case PROTO_STATE_BACKOFF:
            uv_timer_stop(&svc->timer);
            /* fall through */
        default:
            svc->quarantined = false;
            svc->retries = 0;
            launch(svc, "start requested");
            break;
    }
}

static void do_restart(struct sup_svc *svc)
{
    if (svc->quarantined) {
        act_done(svc, REMS_EBUSY, "quarantined: start or resume it");
        return;
    }
    svc->retries = 0;
    switch (svc->state) {
        case PROTO_STATE_RUNNING:
        case PROTO_STATE_STARTING:
        case PROTO_STATE_PAUSED:
            begin_stop(svc, AFTER_RESTART, "restart requested");
            break;
        case PROTO_STATE_STOPPING:
            svc->after_stop = AFTER_RESTART;
            break;
        case PROTO_STATE_BACKOFF:
            uv_timer_stop(&svc->timer);
            /* fall through */
        default:
            launch(svc, "restart requested");
            break;
    }
}

static void do_action(struct sup_svc *svc, int action)
{
    svc->pending_start = false;
    switch (action) {
        case SUP_ACTION_START:
            do_start(svc);
            break;
        case SUP_ACTION_RESTART:
            do_restart(svc);
            break;
        case SUP_ACTION_STOP:
            begin_stop(svc, AFTER_STOPPED, "stop requested");
            break;
        case SUP_ACTION_QUARANTINE:
            svc->quarantined = true;
            begin_stop(svc, AFTER_QUARANTINED, "quarantined by request");
            break;
        case SUP_ACTION_PAUSE:
            if (svc->quarantined || !has_process(svc->state)) {
                act_done(svc, REMS_EBUSY, "not running (%s)",
                         proto_state_name(svc->state));
            } else if (svc->state != PROTO_STATE_PAUSED) {
                kill(-svc->run->pid, SIGSTOP);
                watches_stop(svc);
                set_state(svc, PROTO_STATE_PAUSED, "paused");
            }
            break;
        case SUP_ACTION_RESUME:
            if (svc->state == PROTO_STATE_PAUSED) {
                svc->act->armed = true;
                resume(svc, "resumed");
            } else if (svc->state == PROTO_STATE_QUARANTINED) {
                svc->quarantined = false;
                svc->retries = 0;
                launch(svc, "resumed from quarantine");
            } else if (svc->state == PROTO_STATE_RUNNING ||
                       svc->state == PROTO_STATE_STARTING) {
                svc->act->armed = true;
            } else {
                act_done(svc, REMS_EBUSY, "not paused (%s)",
                         proto_state_name(svc->state));
            }
            break;
        default:
            break;
    }
    act_check(svc);
}

static struct sup_act *
act_new(int action, uint64_t timeout_ms, supervisor_action_cb cb, void *data)
{
    struct sup_act *a = rems_calloc(1, sizeof *a);
    if (a != NULL) {
        a->action = action;
        a->timeout_ms = timeout_ms;
        a->cb = cb;
        a->data = data;
    }
    return a;
}

int supervisor_action(struct supervisor *s,
                      const char *service,
                      int action,
                      uint64_t timeout_ms,
                      supervisor_action_cb cb,
                      void *data,
                      char *errmsg)
{
    struct sup_svc *svc;
    struct sup_act *a;

    PRE(s != NULL && service != NULL && errmsg != NULL);
    if (action < SUP_ACTION_START || action > SUP_ACTION_QUARANTINE) {
        rems_errmsgf(errmsg, "action %d: unknown", action);
        return REMS_EINVAL;
    }
    a = act_new(action, timeout_ms, cb, data);
    if (a == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    svc = svc_find(s, service);
    if (svc == NULL || svc->removing) {
        char msg[REMS_ERRMSG_SIZE];
        snprintf(msg, sizeof msg, "unknown service \"%.128s\"", service);
        act_finish(s, a, REMS_ENOTFOUND, msg);
        return 0;
    }
    if (s->stopping_all || s->closing) {
        act_finish(s, a, REMS_ECANCELED, "shutting down");
        return 0;
    }
    if (svc->act != NULL) {
        act_done(svc, REMS_ECANCELED, "superseded by %s", action_names[action]);
    }
    svc->act = a;
    if (timeout_ms > 0) {
        uv_timer_start(&svc->act_timer, act_timeout_cb, timeout_ms, 0);
    }
    do_action(svc, action);
    return 0;
}

int supervisor_remove(struct supervisor *s,
                      const char *service,
                      supervisor_action_cb cb,
                      void *data,
                      char *errmsg)
{
    struct sup_svc *svc;
    struct sup_act *a;
    size_t i;

    PRE(s != NULL && service != NULL && errmsg != NULL);
    a = act_new(ACT_REMOVE, 0, cb, data);
    if (a == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    svc = svc_find(s, service);
    if (svc == NULL) {
        char msg[REMS_ERRMSG_SIZE];
        snprintf(msg, sizeof msg, "unknown service \"%.128s\"", service);
        act_finish(s, a, REMS_ENOTFOUND, msg);
        return 0;
    }
    if (svc->removing) {
        act_finish(s, a, REMS_EBUSY, "already being removed");
        return 0;
    }
    for (i = 0; i < s->n; i++) {
        struct sup_svc *o = s->svcs[i];
        if (o != svc && !o->removing && depends_on(o, svc->spec->name)) {
            char msg[REMS_ERRMSG_SIZE];
            snprintf(msg, sizeof msg, "services.%.100s depends on it",
                     o->spec->name);
            act_finish(s, a, REMS_EBUSY, msg);
            return 0;
        }
    }
    if (svc->act != NULL) {
        act_done(svc, REMS_ECANCELED, "superseded by remove");
    }
    svc->act = a;
    svc->removing = true;
    svc->pending_start = false;
    begin_stop(svc, AFTER_STOPPED, "removal requested");
    if (!state_active(svc->state)) {
        kick(s);
    }
    return 0;
}

int supervisor_status(struct supervisor *s,
                      struct proto_service **items,
                      size_t *n)
{
    struct proto_service *arr;
    size_t k;

    PRE(s != NULL && items != NULL && n != NULL);
    if (s->n == 0) {
        *items = NULL;
        *n = 0;
        return 0;
    }
    arr = rems_calloc(s->n, sizeof *arr);
    if (arr == NULL) {
        return REMS_ENOMEM;
    }
    for (k = 0; k < s->n; k++) {
        status_fill(s->svcs[s->order[k]], &arr[k]);
    }
    *items = arr;
    *n = s->n;
    return 0;
}

/* ------------------------------------------------------------------------
 * Diagnostics
 * --------------------------------------------------------------------- */

/* Append the last TAIL_BYTES of @path to @b (nothing if it cannot be
 * read). *@whole says whether the file was read from its start. */
static int tail_read(const char *path, struct rems_buf *b, bool *whole)
{
    struct stat st;
    off_t off = 0;
    char *tmp;
    ssize_t n;
    size_t got = 0;
    int fd;
    int rv;

    *whole = true;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return 0;
    }
    if ((uint64_t)st.st_size > TAIL_BYTES) {
        off = st.st_size - (off_t)TAIL_BYTES;
        *whole = false;
    }
    tmp = rems_malloc(TAIL_BYTES);
    if (tmp == NULL) {
        close(fd);
        return REMS_ENOMEM;
    }
    while (got < TAIL_BYTES) {
        n = pread(fd, tmp + got, TAIL_BYTES - got, off + (off_t)got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    rv = rems_buf_append(b, tmp, got);
    rems_free(tmp);
    return rv;
}

/* A JSON string of @len bytes: bytes that are not valid UTF-8 become '?'. */
static json_t *json_line(const char *p, size_t len)
{
    json_t *j = json_stringn(p, len);
    char *c;
    size_t i;
    if (j != NULL) {
        return j;
    }
    c = rems_malloc(len + 1);
    if (c == NULL) {
        return NULL;
    }
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        c[i] = ch < 0x80 && ch != 0 ? (char)ch : '?';
    }
    j = json_stringn(c, len);
    rems_free(c);
    return j;
}

static json_t *output_lines(const struct sup_svc *svc, unsigned lines, int *rv)
{
    struct rems_buf b;
    char path[PATH_MAX_LEN];
    json_t *arr = json_array();
    bool whole1 = true;
    bool whole0 = true;
    size_t start;
    size_t count = 0;
    size_t i;
    size_t keep_from;

    *rv = 0;
    if (arr == NULL) {
        *rv = REMS_ENOMEM;
        return NULL;
    }
    if (svc->s->log_dir == NULL || lines == 0) {
        return arr;
    }
    rems_buf_init(&b);
    if (svc->spec->log.keep > 0) {
        log_path(svc, 1, path, sizeof path);
        *rv = tail_read(path, &b, &whole1);
    }
    if (*rv == 0) {
        size_t before = b.len;
        log_path(svc, 0, path, sizeof path);
        *rv = tail_read(path, &b, &whole0);
        if (!whole0) {
            /* Only the current file counts when it alone is that long. */
            memmove(b.data, b.data + before, b.len - before);
            b.len -= before;
            whole1 = false;
        }
    }
    if (*rv != 0) {
        rems_buf_close(&b);
        json_decref(arr);
        return NULL;
    }
    /* Skip a first line cut by the tail read. */
    start = 0;
    if (!whole1) {
        while (start < b.len && b.data[start] != '\n') {
            start++;
        }
        if (start < b.len) {
            start++;
        }
    }
    /* Find where the last @lines lines start. */
    keep_from = b.len;
    i = b.len;
    if (i > start && b.data[i - 1] == '\n') {
        i--; /* the final newline does not start a line */
    }
    while (i > start && count < lines) {
        size_t j = i;
        while (j > start && b.data[j - 1] != '\n') {
            j--;
        }
        keep_from = j;
        count++;
        i = j > start ? j - 1 : start;
    }
    for (i = keep_from; i < b.len && count > 0;) {
        size_t j = i;
        size_t end;
        json_t *line;
        while (j < b.len && b.data[j] != '\n') {
            j++;
        }
        end = j;
        if (end > i && b.data[end - 1] == '\r') {
            end--;
        }
        line = json_line(b.data + i, end - i);
        if (line == NULL || json_array_append_new(arr, line) != 0) {
            *rv = REMS_ENOMEM;
            break;
        }
        count--;
        i = j + 1;
    }
    rems_buf_close(&b);
    if (*rv != 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return rems_buf_append(data, buf, size) == 0 ? 0 : -1;
}

int supervisor_diagnostics(struct supervisor *s,
                           const char *service,
                           unsigned lines,
                           struct rems_buf *out,
                           char *errmsg)
{
    struct sup_svc *svc;
    char path[PATH_MAX_LEN];
    json_t *o;
    json_t *usage;
    json_t *output;
    int fail = 0;
    int rv;

    PRE(s != NULL && service != NULL && out != NULL && errmsg != NULL);
    svc = svc_find(s, service);
    if (svc == NULL) {
        rems_errmsgf(errmsg, "unknown service \"%.128s\"", service);
        return REMS_ENOTFOUND;
    }
    if (lines > TAIL_LINES_MAX) {
        lines = TAIL_LINES_MAX;
    }
    o = json_object();
    if (o == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    fail |= json_object_set_new(o, "service", json_string(svc->spec->name));
    fail |= json_object_set_new(o, "state",
                                json_string(proto_state_name(svc->state)));
    fail |= json_object_set_new(o, "generation",
                                json_integer((json_int_t)svc->generation));
    fail |= json_object_set_new(o, "health",
                                json_string(proto_health_name(svc->health)));
    fail |= json_object_set_new(o, "ready", json_boolean(svc->ready));
    fail |=
        json_object_set_new(o, "quarantined", json_boolean(svc->quarantined));
    fail |= json_object_set_new(
        o, "pid", svc->run != NULL ? json_integer(svc->run->pid) : json_null());
    fail |= json_object_set_new(o, "restarts",
                                json_integer((json_int_t)svc->restarts));
    fail |= json_object_set_new(o, "retries",
                                json_integer((json_int_t)svc->retries));
    fail |= json_object_set_new(
        o, "exit_code",
        svc->has_exit_code ? json_integer(svc->exit_code) : json_null());
    fail |= json_object_set_new(o, "since_ms",
                                json_integer((json_int_t)svc->since_ms));
    fail |= json_object_set_new(o, "message",
                                json_line(svc->message, strlen(svc->message)));
    if (svc->sampled) {
        usage = json_object();
        if (usage == NULL) {
            fail = -1;
        } else {
            fail |= json_object_set_new(
                usage, "rss_bytes", json_integer((json_int_t)svc->rss_bytes));
            fail |= json_object_set_new(
                usage, "cpu_percent",
                svc->has_cpu ? json_real(svc->cpu_percent) : json_null());
            fail |= json_object_set_new(usage, "fds",
                                        svc->fds >= 0 ? json_integer(svc->fds)
                                                      : json_null());
            fail |= json_object_set_new(
                usage, "sampled_ms", json_integer((json_int_t)svc->sampled_ms));
            fail |= json_object_set_new(o, "usage", usage);
        }
    } else {
        fail |= json_object_set_new(o, "usage", json_null());
    }
    if (s->log_dir != NULL) {
        log_path(svc, 0, path, sizeof path);
        fail |= json_object_set_new(o, "log_file", json_string(path));
    } else {
        fail |= json_object_set_new(o, "log_file", json_null());
    }
    output = output_lines(svc, lines, &rv);
    if (output == NULL) {
        fail = -1;
    } else {
        fail |= json_object_set_new(o, "output", output);
    }
    if (fail != 0 || json_dump_callback(o, dump_cb, out,
                                        JSON_COMPACT | JSON_SORT_KEYS) != 0) {
        json_decref(o);
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    json_decref(o);
    return 0;
}

/* ------------------------------------------------------------------------
 * Safe state, stop_all, close
 * --------------------------------------------------------------------- */

void supervisor_enter_safe_state(struct supervisor *s)
{
    size_t k;
    PRE(s != NULL);
    if (s->closing) {
        return;
    }
    for (k = s->n; k > 0; k--) {
        struct sup_svc *svc = s->svcs[s->order[k - 1]];
        if (svc->spec->safe_state != SUP_SAFE_STOP || svc->removing) {
            continue;
        }
        svc->pending_start = false;
        if (!state_active(svc->state)) {
            continue;
        }
        act_done(svc, REMS_ECANCELED, "safe state");
        begin_stop(svc, AFTER_STOPPED,
                   "safe state: stopped while the controller is unreachable");
    }
}

void supervisor_stop_all(struct supervisor *s, supervisor_stop_cb cb)
{
    size_t i;
    PRE(s != NULL && !s->closing);
    s->stop_cb = cb;
    if (s->stopping_all) {
        if (s->stop_done) {
            kick(s);
        }
        return;
    }
    s->stopping_all = true;
    for (i = 0; i < s->n; i++) {
        struct sup_svc *svc = s->svcs[i];
        svc->pending_start = false;
        if (svc->act != NULL && svc->act->action != ACT_REMOVE) {
            act_done(svc, REMS_ECANCELED, "shutting down");
        }
        if (svc->state == PROTO_STATE_STOPPING &&
            svc->after_stop != AFTER_QUARANTINED) {
            svc->after_stop = AFTER_STOPPED;
        }
    }
    pump(s);
}

static void handle_closed_cb(uv_handle_t *h)
{
    sup__live_release(h->data);
}

void supervisor_close(struct supervisor *s, supervisor_close_cb cb)
{
    rems_queue *q;
    size_t i;

    if (s == NULL) {
        return;
    }
    PRE(!s->closing);
    s->closing = true;
    s->close_cb = cb;
    for (i = 0; i < s->n; i++) {
        struct sup_svc *svc = s->svcs[i];
        if (svc->act != NULL) {
            act_done(svc, REMS_ECANCELED, "closing");
        }
        svc_dispose(svc);
    }
    REMS_QUEUE_FOREACH(q, &s->runs)
    {
        struct sup_run *r = REMS_QUEUE_DATA(q, struct sup_run, link);
        r->svc = NULL;
        if (!r->exited) {
            kill(-r->pid, SIGKILL); /* its exit closes the process */
        }
        run_close_pipe(r, 0);
        run_close_pipe(r, 1);
    }
    uv_close((uv_handle_t *)&s->kick, handle_closed_cb);
    uv_close((uv_handle_t *)&s->usage, handle_closed_cb);
}

static void finish_close(struct supervisor *s)
{
    supervisor_close_cb cb = s->close_cb;
    supervisor_stop_cb stop_cb = s->stop_cb;

    REMS_ASSERT(REMS_QUEUE_EMPTY(&s->runs));
    while (!REMS_QUEUE_EMPTY(&s->done)) {
        rems_queue *q = REMS_QUEUE_HEAD(&s->done);
        struct sup_act *a = REMS_QUEUE_DATA(q, struct sup_act, link);
        REMS_QUEUE_REMOVE(q);
        if (a->cb != NULL) {
            a->cb(a->data, a->status, a->msg);
        }
        rems_free(a);
    }
    if (stop_cb != NULL) {
        stop_cb(s);
    }
    rems_free(s->svcs);
    rems_free(s->order);
    rems_free(s->log_dir);
    rems_free(s->cgroup_dir);
    rems_free(s->work_dir);
    if (cb != NULL) {
        cb(s);
    }
    rems_free(s);
}

/* ------------------------------------------------------------------------
 * Test hooks
 * --------------------------------------------------------------------- */

void sup__test_exit(struct supervisor *s,
                    const char *service,
                    uint64_t generation,
                    int64_t exit_status,
                    int term_signal)
{
    struct sup_svc *svc = svc_find(s, service);
    REMS_ASSERT(svc != NULL);
    svc_on_exit(svc, generation, exit_status, term_signal);
}

void sup__test_health(struct supervisor *s,
                      const char *service,
                      int which,
                      uint64_t generation,
                      int health)
{
    struct sup_svc *svc = svc_find(s, service);
    REMS_ASSERT(svc != NULL);
    svc_health(svc, which, generation, health, "test");
}

void sup__test_timer(struct supervisor *s,
                     const char *service,
                     uint64_t generation)
{
    struct sup_svc *svc = svc_find(s, service);
    REMS_ASSERT(svc != NULL);
    if (svc->state == PROTO_STATE_BACKOFF) {
        backoff_due(svc, generation);
    } else {
        kill_due(svc, generation);
    }
}

int sup__test_pid(struct supervisor *s, const char *service)
{
    struct sup_svc *svc = svc_find(s, service);
    return svc != NULL && svc->run != NULL ? svc->run->pid : 0;
}
