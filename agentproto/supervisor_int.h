/* agentproto/supervisor_int.h: internals of the process supervisor, shared
 * by supervisor.c (the loop glue and the state machine), sup_spec.c (spec
 * parsing, copying, ordering, backoff) and sup_check.c (one health-check
 * attempt). Private to agentproto/ and its unit tests. */
#ifndef REMS_AGENTPROTO_SUPERVISOR_INT_H
#define REMS_AGENTPROTO_SUPERVISOR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "agentproto/supervisor.h"

/* ------------------------------------------------------------------------
 * Specs (sup_spec.c)
 * --------------------------------------------------------------------- */

/* A deep copy of @spec into *@out (free with sup_spec_free()).
 * 0 or REMS_ENOMEM. */
int sup__spec_copy(const struct sup_service_spec *spec,
                   struct sup_service_spec **out);

/* True when @a and @b say the same in every field. */
bool sup__spec_equal(const struct sup_service_spec *a,
                     const struct sup_service_spec *b);

/* The name of signal @sig as the spec writes it ("TERM"), or "?". */
const char *sup__signal_name(int sig);

/* True when @name is a valid service name. */
bool sup__name_valid(const char *name);

/* Split "host:port" or "[v6]:port" into @host (@cap bytes, without the
 * brackets) and *@port (1..65535). 0 or REMS_EINVAL. */
int sup__hostport_parse(const char *s, char *host, size_t cap, int *port);

/* Split "http://host[:port][/path]" into @host, *@port (80 by default) and
 * @path ("/" by default; @pcap bytes). 0 or REMS_EINVAL. */
int sup__url_parse(const char *url,
                   char *host,
                   size_t hcap,
                   int *port,
                   char *path,
                   size_t pcap);

/* ------------------------------------------------------------------------
 * Life of the supervisor's libuv objects (supervisor.c)
 * --------------------------------------------------------------------- */

/* Every libuv handle and request the supervisor owns is counted: hold one
 * when it is initialised or submitted, release it from its close or
 * completion callback, as the last thing done there (the supervisor may be
 * freed by the release once it is closing). */
void sup__live_hold(struct supervisor *s);
void sup__live_release(struct supervisor *s);
uv_loop_t *sup__loop(struct supervisor *s);

/* ------------------------------------------------------------------------
 * One health-check attempt (sup_check.c)
 * --------------------------------------------------------------------- */

enum sup_probe_result {
    SUP_PROBE_PASS = 1,
    SUP_PROBE_FAIL,  /* the check ran and failed */
    SUP_PROBE_ERROR, /* the check could not be run (a fallback may) */
};

/* What an exec check's process inherits from its service. Borrowed for the
 * duration of sup__probe_start() only. */
struct sup_spawn_ctx {
    char **env;      /* NULL-terminated */
    const char *cwd; /* NULL: inherit */
    bool set_ids;
    uv_uid_t uid;
    uv_gid_t gid;
};

struct sup_probe;

/* An attempt finished: @detail says why it failed or could not run (valid
 * during the call). Runs on the loop, never from sup__probe_start(). */
typedef void (*sup_probe_cb)(struct sup_probe *p,
                             void *data,
                             int result,
                             const char *detail);

/* Run @chk once against the process @pid, within chk->timeout_ms.
 * @chk and @ctx are borrowed for this call only. On 0, @cb runs exactly
 * once unless sup__probe_cancel() is called first. REMS_ENOMEM or
 * REMS_EINVAL (a target that does not parse) otherwise, with @errmsg. */
int sup__probe_start(struct supervisor *s,
                     const struct sup_check *chk,
                     const struct sup_spawn_ctx *ctx,
                     int pid,
                     sup_probe_cb cb,
                     void *data,
                     struct sup_probe **out,
                     char *errmsg);

/* Forget @p: its callback will not run. Its handles are closed (an exec
 * check's process group is killed) and it frees itself. */
void sup__probe_cancel(struct sup_probe *p);

/* ------------------------------------------------------------------------
 * Hooks for the unit tests (supervisor.c)
 * --------------------------------------------------------------------- */

enum sup_watch_kind {
    SUP_WATCH_LIVENESS = 0,
    SUP_WATCH_READINESS,
    SUP_WATCH_NR
};

/* Deliver an exit of generation @generation of @service as the loop
 * would: exit status @exit_status, or @term_signal when not 0. An exit of
 * any generation but the current process's is ignored. */
void sup__test_exit(struct supervisor *s,
                    const char *service,
                    uint64_t generation,
                    int64_t exit_status,
                    int term_signal);

/* Deliver a health verdict (enum proto_health) of the @which check
 * (enum sup_watch_kind) for @generation of @service, as if the check's
 * thresholds had just been crossed. */
void sup__test_health(struct supervisor *s,
                      const char *service,
                      int which,
                      uint64_t generation,
                      int health);

/* Fire the service's timer as if armed for @generation: the backoff
 * delay (in backoff) or the stop timeout (in stopping). */
void sup__test_timer(struct supervisor *s,
                     const char *service,
                     uint64_t generation);

/* The pid of the current process of @service, or 0. */
int sup__test_pid(struct supervisor *s, const char *service);

#endif /* REMS_AGENTPROTO_SUPERVISOR_INT_H */
