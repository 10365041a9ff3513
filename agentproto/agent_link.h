/* agentproto/agent_link.h: rems-agent's connection to the leader.
 *
 * The link dials the configured nodes in turn over mutually authenticated
 * TLS, says hello, follows redirects to the leader, keeps the session
 * alive with heartbeats, delivers service-state reports (through the
 * outbox, agentproto/agent_outbox.h, so that changes made while
 * disconnected arrive in order after the next welcome), and carries out
 * the leader's commands at most once and never after their deadline (the
 * fence, agentproto/agent_fence.h). When no session has been held for the
 * dead-man timeout it puts the services into their safe state, once, and
 * re-arms when a session is back. docs/protocol.md is the reference for the
 * messages; docs/agent-config.md for the settings.
 *
 * The link does not know the supervisor: it acts on the services through
 * struct agent_services (agentproto/agent_services.h binds it to
 * agentproto/supervisor.h; tests bind it to fakes).
 *
 * Everything runs on the loop's thread; no callback runs from inside an
 * agent_link_* call. */
#ifndef REMS_AGENTPROTO_AGENT_LINK_H
#define REMS_AGENTPROTO_AGENT_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agentproto/agent_config.h"
#include "agentproto/agent_fence.h"
#include "agentproto/proto.h"
#include "agentproto/tls.h"
#include "common/error.h"
#include "common/mpread.h"

/* The end of an asynchronous operation on the services: @status 0 or a
 * REMS_E* code, @msg a detail (NULL or "" for none; on success of
 * push_manifest, a summary that becomes ack.result). */
typedef void (*agent_services_done_cb)(void *data, int status, const char *msg);

/* What the link needs from the supervisor. Asynchronous operations return
 * 0 when @cb will run exactly once (possibly before they return), or a
 * REMS_E* code with @errmsg when it will not and nothing was done. The
 * codes given to @cb or returned mean: REMS_ENOTFOUND no such service,
 * REMS_EBUSY not now (nothing was done; the node may resend), REMS_EINVAL
 * a manifest that breaks a rule, anything else a failure. */
struct agent_services_ops {
    /* The current state of every service: *@items is allocated
     * (rems_free()); its strings stay valid until the next call. */
    int (*status)(void *impl, struct proto_service **items, size_t *n);
    /* One of the six service actions, enum proto_action (start ..
     * quarantine); @cb once the target state is reached or the action
     * failed. @timeout_ms bounds the wait (0: none). */
    int (*action)(void *impl,
                  const char *service,
                  int action,
                  uint64_t timeout_ms,
                  agent_services_done_cb cb,
                  void *data,
                  char *errmsg);
    /* Replace the manifest of @service ("" = the agent's whole manifest)
     * with the JSON document @manifest of @len bytes. */
    int (*push_manifest)(void *impl,
                         const char *service,
                         const char *manifest,
                         size_t len,
                         agent_services_done_cb cb,
                         void *data,
                         char *errmsg);
    /* Append the diagnostics of @service (a JSON object text with the last
     * @lines lines of its output) to @out. Synchronous. */
    int (*diagnostics)(void *impl,
                       const char *service,
                       unsigned lines,
                       struct rems_buf *out,
                       char *errmsg);
    /* The dead-man's switch fired. */
    void (*safe_state)(void *impl);
};

struct agent_services {
    const struct agent_services_ops *ops;
    void *impl;
};

struct agent_link_options {
    /* Borrowed; must outlive the link: id, endpoints, tls.server_name,
     * labels, heartbeat_interval_ms, reconnect.*, dead_man.timeout_ms,
     * outbox.max_reports. */
    const struct agent_config *config;
    /* Client context presenting the agent's certificate. Borrowed. */
    const struct tls_context *tls;
    /* The at-most-once record. Borrowed; the link writes it. */
    struct agent_fence *fence;
    struct agent_services services; /* Copied. */
    const char *agent_version;      /* Copied; 1..PROTO_AGENT_VERSION_MAX */
    /* Largest frame payload sent or received; 0 selects
     * PROTO_FRAME_MAX_DEFAULT. */
    size_t max_frame;
    /* How long closing a connection waits for the peer; 0 selects
     * TLS_CLOSE_LINGER_MS. */
    unsigned close_linger_ms;
};

struct agent_link; /* Opaque. */

/* Make a link on @loop from @opts (see there). Connects nothing until
 * agent_link_start(). Returns 0 and *@out (release with agent_link_close()),
 * or REMS_EINVAL / REMS_ENOMEM with @errmsg, leaving *@out untouched. */
int agent_link_open(uv_loop_t *loop,
                    const struct agent_link_options *opts,
                    struct agent_link **out,
                    char *errmsg);

/* Start dialling, and the dead-man's timer. Once only. Returns 0 or
 * REMS_EIO with @errmsg. */
int agent_link_start(struct agent_link *l, char *errmsg);

/* A service changed: queue @status (copied) for the next report. */
void agent_link_report(struct agent_link *l,
                       const struct proto_service *status);

/* The agent is shutting down: refuse new commands with nack busy from now
 * on; reports still flow. */
void agent_link_drain(struct agent_link *l);

/* Whether a session (a welcome) is held now. */
bool agent_link_has_session(const struct agent_link *l);

/* Whether the dead-man's switch fired and no session came since. */
bool agent_link_dead_man_triggered(const struct agent_link *l);

typedef void (*agent_link_close_cb)(void *data);

/* Close the connection (gracefully, within close_linger_ms), stop every
 * timer, and free @l; then @cb (may be NULL) runs with @data, from the
 * loop. Commands still being carried out are not answered. Once only. */
void agent_link_close(struct agent_link *l, agent_link_close_cb cb, void *data);

#endif /* REMS_AGENTPROTO_AGENT_LINK_H */
