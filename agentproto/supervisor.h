/* agentproto/supervisor.h: rems-agent's process supervisor.
 *
 * One supervisor runs on one libuv loop and supervises the services of one
 * agent: it spawns their processes, restarts them by policy with
 * exponential backoff, runs health checks, stops them gracefully, starts
 * them in dependency order, watches their resource usage and captures their
 * output. Everything it does is reported through one event callback, from
 * which rems-agent builds its service-state reports.
 *
 * Generations: every start of a service's process is a new generation
 * (1, 2, ...). An exit, a health result or a timer that belongs to an older
 * generation never changes the state of a newer one.
 *
 * States (enum proto_state of agentproto/proto.h, the wire names):
 *   stopped      not running, not wanted (initial state, after stop)
 *   starting     spawned, readiness not yet confirmed
 *   running      spawned and ready (no readiness check: at once)
 *   stopping     stop signal sent, waiting for the exit (then SIGKILL)
 *   failed       exited and will not be restarted by policy (temporary, or
 *                transient with exit code 0 is "stopped" instead)
 *   backoff      exited, a restart is scheduled after the backoff delay
 *   fatal        max_retries restarts in a row failed; only an operator
 *                action (start/restart) leaves it
 *   paused       the process group got SIGSTOP
 *   quarantined  stopped and refused to start until resume/start by an
 *                operator command (a quarantine command)
 *
 * Spec format: docs/agent-config.md ("services") documents every field of
 * a service, the same in the agent's YAML configuration and in a pushed
 * manifest (JSON). sup_spec_parse_json() is the one parser of it.
 *
 * Threads and signals: every function runs on the loop's thread. The
 * process must ignore SIGPIPE (the http check writes to sockets). Children
 * start with default signal dispositions. */
#ifndef REMS_AGENTPROTO_SUPERVISOR_H
#define REMS_AGENTPROTO_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "agentproto/proto.h"
#include "common/error.h"
#include "common/mpread.h" /* struct rems_buf */

/* Defaults of the optional fields of a spec (docs/agent-config.md). */
#define SUP_DEFAULT_BACKOFF_INITIAL_MS 1000u
#define SUP_DEFAULT_BACKOFF_MULTIPLIER 2.0
#define SUP_DEFAULT_BACKOFF_MAX_MS 60000u
#define SUP_DEFAULT_BACKOFF_JITTER 0.1
#define SUP_DEFAULT_BACKOFF_MAX_RETRIES 5u
#define SUP_DEFAULT_BACKOFF_RESET_AFTER_MS 60000u
#define SUP_DEFAULT_STOP_TIMEOUT_MS 10000u /* stop_signal: SIGTERM */
#define SUP_DEFAULT_CHECK_INTERVAL_MS 10000u
#define SUP_DEFAULT_CHECK_TIMEOUT_MS 2000u
#define SUP_DEFAULT_CHECK_FAILURE_THRESHOLD 3u
#define SUP_DEFAULT_CHECK_SUCCESS_THRESHOLD 1u
#define SUP_DEFAULT_LOG_MAX_BYTES ((uint64_t)10 << 20) /* 10 MiB */
#define SUP_DEFAULT_LOG_KEEP 3u
#define SUP_DEFAULT_USAGE_INTERVAL_MS 5000u

enum sup_restart {
    SUP_RESTART_PERMANENT = 1, /* always restarted */
    SUP_RESTART_TRANSIENT,     /* restarted after an abnormal exit only */
    SUP_RESTART_TEMPORARY,     /* never restarted */
};

enum sup_check_kind {
    SUP_CHECK_NONE = 0,
    SUP_CHECK_HTTP,    /* GET target URL (http:// only), 2xx/3xx = pass */
    SUP_CHECK_TCP,     /* connect to target "host:port" */
    SUP_CHECK_EXEC,    /* run argv, exit 0 within timeout = pass */
    SUP_CHECK_PROCESS, /* the main process exists and is not a zombie */
};

/* What a service does when the agent's dead-man's switch fires. */
enum sup_safe_state {
    SUP_SAFE_KEEP = 1, /* keep running */
    SUP_SAFE_STOP,     /* stop gracefully */
};

struct sup_check {
    int kind;     /* enum sup_check_kind; NONE = not configured */
    char *target; /* http: URL; tcp: host:port; exec/process: NULL */
    char **argv;  /* exec: NULL-terminated argv; else NULL */
    uint64_t interval_ms;
    uint64_t timeout_ms;
    unsigned failure_threshold; /* consecutive failures to turn unhealthy */
    unsigned success_threshold; /* consecutive passes to turn healthy */
    uint64_t initial_delay_ms;  /* after the start, before the first check */
};

struct sup_backoff {
    uint64_t initial_ms;     /* first delay */
    double multiplier;       /* >= 1.0 */
    uint64_t max_ms;         /* cap */
    double jitter;           /* 0..1: the delay is scaled by 1 +- jitter*rand */
    unsigned max_retries;    /* restarts in a row before fatal; 0 = unlimited */
    uint64_t reset_after_ms; /* running this long resets the retry count */
};

struct sup_limits {
    uint64_t memory_max_bytes; /* 0 = none; RLIMIT_AS, cgroup memory.max */
    unsigned cpu_max_percent;  /* 0 = none; cgroup cpu.max, else warn only */
    uint64_t nofile;           /* 0 = inherit; RLIMIT_NOFILE */
};

struct sup_log {
    uint64_t max_bytes; /* rotate stdout/stderr file above this size */
    unsigned keep;      /* rotated files kept (name.log.1 .. name.log.N) */
};

/* One service. Owned strings and arrays (freed by sup_spec_free()). */
struct sup_service_spec {
    char *name;  /* [A-Za-z0-9._:@-], 1..PROTO_SERVICE_MAX */
    char **argv; /* NULL-terminated, argv[0] is the program */
    char **env;  /* NULL-terminated "K=V" added to a clean environment */
    char *cwd;   /* NULL = the agent's data dir */
    char *user;  /* NULL = the agent's user; else setuid/setgid to it */
    int restart; /* enum sup_restart */
    struct sup_backoff backoff;
    int stop_signal;            /* SIGTERM by default */
    uint64_t stop_timeout_ms;   /* then SIGKILL of the process group */
    struct sup_check liveness;  /* unhealthy -> restart (by policy) */
    struct sup_check fallback;  /* used when liveness cannot run */
    struct sup_check readiness; /* starting -> running when it passes */
    char **depends_on;          /* NULL-terminated service names */
    struct sup_limits limits;
    struct sup_log log;
    int safe_state; /* enum sup_safe_state */
    bool autostart; /* started by supervisor_start_all() */
};

/* Parse one service from the JSON text @json (@len bytes): an object with
 * the fields of docs/agent-config.md. Missing optional fields get the
 * documented defaults. Returns 0 and *@out (free with sup_spec_free()), or
 * REMS_EINVAL with @errmsg naming the field and the rule
 * ("services.web.backoff.multiplier: must be >= 1"), REMS_EMALFORMED (not
 * JSON / not an object) or REMS_ENOMEM. */
int sup_spec_parse_json(const char *json,
                        size_t len,
                        struct sup_service_spec **out,
                        char *errmsg);
void sup_spec_free(struct sup_service_spec *spec);

/* The backoff delay before restart number @attempt (1-based) for @b, with
 * @rand01 a number in [0, 1) (pure, for tests):
 * min(max_ms, initial_ms * multiplier^(attempt-1)) * (1 + jitter*(2*rand01-1)),
 * rounded to the nearest millisecond; attempt 0 counts as 1. */
uint64_t sup_backoff_delay_ms(const struct sup_backoff *b,
                              unsigned attempt,
                              double rand01);

/* Order @n specs so that every service comes after those it depends on.
 * Writes indexes into @order (n entries). REMS_EINVAL when a dependency is
 * unknown ("services.web.depends_on: unknown service \"db\"") or when there
 * is a cycle, named in @errmsg ("dependency cycle: a -> b -> c -> a"), or
 * when two specs have the same name; REMS_ENOMEM. On failure @order is
 * left untouched. Services without dependencies keep their given order. */
int sup_spec_order(const struct sup_service_spec *const *specs,
                   size_t n,
                   size_t *order,
                   char *errmsg);

/* An event. Strings are valid during the callback only. */
enum sup_event_kind {
    SUP_EVENT_STATE = 1, /* state, generation, health or ready changed */
    SUP_EVENT_WARNING,   /* a limit exceeded, a log rotation failed, ... */
    SUP_EVENT_OUTPUT,    /* not emitted; reserved */
};

struct sup_event {
    int kind; /* enum sup_event_kind */
    const char *service;
    struct proto_service status; /* SUP_EVENT_STATE: the new status */
    const char *message;         /* why, for people ("exited with 3") */
    /* SUP_EVENT_STATE: the service is gone (supervisor_remove()); status
     * is its last one. */
    bool removed;
};

struct supervisor; /* Opaque. */

/* Events are delivered synchronously, from loop callbacks and from the
 * supervisor_* calls that change a state (put, action, start_all, ...).
 * The callback may call supervisor_data(), supervisor_status() and
 * supervisor_diagnostics() only: queue anything else for later. No event
 * is delivered once supervisor_close() has been called. */
typedef void (*supervisor_event_cb)(struct supervisor *s,
                                    const struct sup_event *ev);

struct supervisor_options {
    const char *log_dir;    /* per-service stdout/stderr files: <name>.log */
    const char *cgroup_dir; /* cgroup v2 dir to create children in, or NULL */
    supervisor_event_cb event_cb;
    void *data;                 /* supervisor_data() */
    uint64_t usage_interval_ms; /* /proc sampling; 0 = 5000 */
    /* The working directory of services without a cwd; NULL = the agent's
     * own. */
    const char *work_dir;
};

/* Open a supervisor on @loop. @opts is borrowed (its strings are copied);
 * log_dir NULL discards the services' output. Returns 0 and *@out (close
 * it with supervisor_close()), or REMS_ENOMEM with @errmsg. */
int supervisor_open(uv_loop_t *loop,
                    const struct supervisor_options *opts,
                    struct supervisor **out,
                    char *errmsg);
void *supervisor_data(const struct supervisor *s);

/* Add a service (the spec is copied) or, for a name that exists, replace
 * its spec: a running service is restarted with the new spec. Dependencies
 * are checked here: REMS_EINVAL for an unknown dependency or a cycle, so
 * put services after their dependencies (sup_spec_order() gives an order).
 * A spec equal to the current one changes nothing (no restart).
 * A new service starts in "stopped" (an event says so); only
 * supervisor_start_all() or an action starts it. REMS_EBUSY for a service
 * being removed, REMS_ENOMEM. */
int supervisor_put(struct supervisor *s,
                   const struct sup_service_spec *spec,
                   char *errmsg);

/* Start every autostart service in dependency order (a service starts
 * once its dependencies are running). Only services in "stopped" are
 * started; quarantined ones are not. A service whose dependency never runs
 * waits (stopped) until it does. */
int supervisor_start_all(struct supervisor *s, char *errmsg);

/* Start service @name as supervisor_start_all() would, if it has never
 * run (generation 0), is autostart and stopped: a service added by a
 * pushed manifest comes up as it would from the configuration, while one
 * an operator stopped stays stopped. 0, REMS_ENOTFOUND or
 * REMS_ESHUTDOWN. */
int supervisor_autostart_new(struct supervisor *s, const char *name);

/* Operator actions, from commands. Each completes asynchronously: @cb is
 * called once with 0 when the target state is reached (start/restart/
 * resume: running; stop/quarantine: stopped/quarantined; pause: paused) or
 * a REMS_E* code and a message (REMS_ENOTFOUND: unknown service; REMS_EBUSY;
 * REMS_EIO: the start failed; REMS_ETIMEDOUT: readiness did not pass within
 * @timeout_ms; REMS_ECANCELED: superseded by a later action or shutdown).
 * @cb may be NULL.
 *
 * Every outcome, ENOTFOUND and EBUSY included, goes to @cb, which always
 * runs from a loop callback (never inside this call): the return value is
 * 0 whenever @cb will run. A non-zero return (REMS_EINVAL for an action out
 * of range, REMS_ENOMEM) means @cb will never run. @timeout_ms 0 means no
 * time limit. Busy cases: pause of a service that is not running or
 * starting, resume of one that is neither paused nor quarantined nor
 * running, restart or pause of a quarantined one. While a stop_all runs,
 * every action is answered REMS_ECANCELED. */
enum sup_action {
    SUP_ACTION_START = 1,
    SUP_ACTION_STOP,
    SUP_ACTION_RESTART,
    SUP_ACTION_PAUSE,
    SUP_ACTION_RESUME,
    SUP_ACTION_QUARANTINE,
};
typedef void (*supervisor_action_cb)(void *data, int status, const char *msg);
int supervisor_action(struct supervisor *s,
                      const char *service,
                      int action, /* enum sup_action */
                      uint64_t timeout_ms,
                      supervisor_action_cb cb,
                      void *data,
                      char *errmsg);

/* Stop @service gracefully and forget it. @cb as for supervisor_action():
 * 0 once it is gone (a last SUP_EVENT_STATE with removed set came first),
 * REMS_ENOTFOUND, REMS_EBUSY when another service depends on it (remove
 * or replace that one first), REMS_ECANCELED on close. A pending action of
 * the service is canceled. Returns non-zero (REMS_ENOMEM) only when @cb
 * will never run. */
int supervisor_remove(struct supervisor *s,
                      const char *service,
                      supervisor_action_cb cb,
                      void *data,
                      char *errmsg);

/* The current status of every service, in dependency order: *@items is
 * allocated (free with rems_free(); strings point into the supervisor and
 * stay valid until the next call into it). */
int supervisor_status(struct supervisor *s,
                      struct proto_service **items,
                      size_t *n);

/* Diagnostics of one service: a JSON object text appended to @out with
 * status, pid, generation, restarts, resource usage and the last @lines
 * lines of its output. REMS_ENOTFOUND for an unknown service. */
int supervisor_diagnostics(struct supervisor *s,
                           const char *service,
                           unsigned lines,
                           struct rems_buf *out,
                           char *errmsg);

/* Dead-man's switch: every service whose safe_state is stop is stopped
 * (an event says why); the others keep running. */
void supervisor_enter_safe_state(struct supervisor *s);

/* Stop every service gracefully in reverse dependency order, then call
 * @cb. Then close with supervisor_close(). */
typedef void (*supervisor_stop_cb)(struct supervisor *s);
void supervisor_stop_all(struct supervisor *s, supervisor_stop_cb cb);

/* Release everything once the handles are closed; @cb may be NULL. The
 * children still running are killed (SIGKILL of each process group).
 * Keep running the loop until @cb has run: in it only supervisor_data()
 * may be called, and the supervisor is freed when it returns. Pending
 * action callbacks (and a pending stop_all callback) run first, with
 * REMS_ECANCELED; they must not call into the supervisor. */
typedef void (*supervisor_close_cb)(struct supervisor *s);
void supervisor_close(struct supervisor *s, supervisor_close_cb cb);

#endif /* REMS_AGENTPROTO_SUPERVISOR_H */
