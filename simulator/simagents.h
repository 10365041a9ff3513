/* simulator/simagents.h: many simulated agents in one process.
 *
 * The engine behind rems-agent-load (bench/agent_load.c) and the failover
 * drills of rems-sim: N agents on one libuv loop, each with its own
 * certificate, speaking the real agent protocol (agentproto/proto.h) over
 * real mutually authenticated TLS 1.3 (agentproto/tls.h) to the agent
 * listeners of remsd nodes. Each agent behaves as docs/protocol.md asks of
 * an agent: hello with the highest accepted term and the state of its
 * services, redirects followed, heartbeats at the interval of the welcome,
 * reports of service-state changes, reconnection with exponential backoff
 * and jitter, and commands fenced as rems-agent fences them (stale term,
 * duplicate id, spent ttl), but in memory: a simulated agent forgets its
 * record only when the process ends.
 *
 * Every command an agent executes is recorded (struct simagents_exec), so a
 * checker (simagents_exec_check()) can verify invariants 4, 5 and 6 of the
 * architecture: at most once per agent, never after the deadline measured
 * from receipt, never a term lower than one accepted before.
 *
 * Certificates: simagents_open() mints one P-256 key and certificate per
 * agent, signed by the given CA (SAN URI rems://agent/<id>, CN <id>,
 * clientAuth, valid from five minutes ago for validity_s), writes them as
 * PEM into a directory (a fresh temporary one by default, removed by
 * simagents_close()) and opens one client TLS context per agent from them.
 * simagents_cert_mint() is the same minting for one certificate.
 *
 * Life cycle:
 *     simagents_open(loop, &opts, &sa, errmsg);   mint, contexts, no I/O
 *     simagents_start(sa, errmsg);                ramp-up begins
 *     ... run the loop; read simagents_stats(), simagents_execs() ...
 *     simagents_stop(sa, stop_cb);                streams and timers close
 *     ... in stop_cb, or after it ran: simagents_close(sa);
 *
 * Threads: everything on the loop thread, except simagents_open() and
 * simagents_close(), which may run on any thread while the engine is not
 * started. Nothing here is shared between engines; several may run on one
 * loop. The process must ignore SIGPIPE (agentproto/tls.h). */
#ifndef REMS_SIMULATOR_SIMAGENTS_H
#define REMS_SIMULATOR_SIMAGENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agentproto/proto.h" /* PROTO_NACK_*, struct proto_kv, limits */
#include "common/error.h"     /* REMS_E* codes, REMS_ERRMSG_SIZE */

/* Defaults of struct simagents_options (used where a field is 0). */
#define SIMAGENTS_DEFAULT_PREFIX "sim"
#define SIMAGENTS_DEFAULT_SERVICE_PREFIX "svc"
#define SIMAGENTS_DEFAULT_VALIDITY_S 86400u /* certificates: 24 hours */
#define SIMAGENTS_DEFAULT_CONNECT_TIMEOUT_MS 10000u
#define SIMAGENTS_DEFAULT_RECONNECT_INITIAL_MS 500u
#define SIMAGENTS_DEFAULT_RECONNECT_MAX_MS 30000u
#define SIMAGENTS_DEFAULT_RESTART_MS 1000u /* crash_after: failed -> up */
#define SIMAGENTS_DEFAULT_REPORT_QUEUE 64u /* report items kept offline */
#define SIMAGENTS_AGENT_VERSION "rems-sim/" REMS_VERSION

/* Most agents one engine runs, and most services per agent. */
#define SIMAGENTS_MAX_AGENTS 1000000u
#define SIMAGENTS_MAX_SERVICES 64u
#define SIMAGENTS_MAX_ENDPOINTS 16u
/* Most report items kept per agent while disconnected (one frame). */
#define SIMAGENTS_MAX_REPORT_QUEUE 64u
/* "host:port" as given, at most. */
#define SIMAGENTS_ADDR_MAX 64u

/* ------------------------------------------------------------------------
 * Certificates
 * ------------------------------------------------------------------------ */

struct simagents_ca; /* Opaque: a CA certificate and its private key. */

/* Read the CA certificate @cert_file and its key @key_file (PEM; borrowed,
 * read now) and check that they belong together. On success returns 0 and
 * *@out owns the CA (simagents_ca_close()). On failure returns
 * REMS_ECONFIG (a file missing, unreadable or not PEM, or a key that is
 * not the certificate's; @errmsg names the file) or REMS_ENOMEM, and
 * leaves *@out untouched. Any thread. */
int simagents_ca_open(const char *cert_file,
                      const char *key_file,
                      struct simagents_ca **out,
                      char *errmsg);

/* Release @ca; NULL does nothing. */
void simagents_ca_close(struct simagents_ca *ca);

/* Mint a new P-256 key and a certificate for agent @id (a valid id, see
 * rems_id_valid()), signed by @ca with SHA-256: subject CN=@id, SAN URI
 * rems://agent/@id, extendedKeyUsage clientAuth, a random serial, valid from
 * five minutes ago until @validity_s seconds from now (0 selects
 * SIMAGENTS_DEFAULT_VALIDITY_S). Writes the certificate to @cert_path and
 * the key (unencrypted PKCS#8, mode 0600) to @key_path, replacing what they
 * held. Returns 0, REMS_EINVAL (@id is not a valid id), REMS_EIO (a file
 * could not be written; @errmsg names it) or REMS_ENOMEM. Any thread; one
 * @ca may be used by one thread at a time. */
int simagents_cert_mint(const struct simagents_ca *ca,
                        const char *id,
                        unsigned validity_s,
                        const char *cert_path,
                        const char *key_path,
                        char *errmsg);

/* Create a new self-signed CA: a P-256 key and a certificate with subject
 * CN=@cn (1..64 bytes), basicConstraints CA:TRUE, keyUsage keyCertSign
 * and cRLSign, a random serial, valid from five minutes ago for
 * @validity_s seconds (0: SIMAGENTS_DEFAULT_VALIDITY_S). Writes both as
 * PEM (the key mode 0600). Returns 0, REMS_EINVAL, REMS_EIO (@errmsg
 * names the file) or REMS_ENOMEM. Any thread. */
int simagents_ca_create(const char *cn,
                        unsigned validity_s,
                        const char *cert_path,
                        const char *key_path,
                        char *errmsg);

/* Mint a node's certificate signed by @ca: subject CN=@cn, subject
 * alternative names @names (1..16: IP literals become IP entries, anything
 * else DNS entries), extendedKeyUsage serverAuth and clientAuth; key and
 * validity as simagents_cert_mint(). Returns as simagents_cert_mint(). */
int simagents_cert_mint_server(const struct simagents_ca *ca,
                               const char *cn,
                               const char *const *names,
                               size_t n_names,
                               unsigned validity_s,
                               const char *cert_path,
                               const char *key_path,
                               char *errmsg);

/* ------------------------------------------------------------------------
 * The fence: a simulated agent's at-most-once record, pure
 * ------------------------------------------------------------------------ */

/* The verdict of simagents_fence_check() that accepts a command; otherwise
 * it returns the PROTO_NACK_* reason. */
#define SIMAGENTS_FENCE_ACCEPT 0

/* The highest term accepted and the ids of every command accepted. Lives
 * in caller memory; one thread at a time. */
struct simagents_fence {
    uint64_t highest_term;
    /* Private: an open-addressing set of ids (linear probing). */
    char (*slots)[PROTO_ID_MAX + 1];
    size_t n;
    size_t cap; /* 0 or a power of two. */
};

/* An empty record: highest term 0, no ids. Allocates nothing. */
void simagents_fence_init(struct simagents_fence *f);

/* Release the ids of @f; NULL does nothing. */
void simagents_fence_close(struct simagents_fence *f);

/* Decide on command @id (1..PROTO_ID_MAX bytes) of @term, received with
 * @ttl_ms to live, @elapsed_ms ago. In the order of docs/protocol.md, the
 * first that applies: PROTO_NACK_STALE_TERM (@term below the highest
 * accepted), PROTO_NACK_DUPLICATE (@id accepted before),
 * PROTO_NACK_EXPIRED (@ttl_ms is 0 or @elapsed_ms >= @ttl_ms); else
 * SIMAGENTS_FENCE_ACCEPT. For a nack, @message (REMS_ERRMSG_SIZE bytes)
 * gets the details for people, e.g. "term 3 is below 4, the highest
 * accepted". Pure. */
int simagents_fence_check(const struct simagents_fence *f,
                          const char *id,
                          uint64_t term,
                          uint64_t ttl_ms,
                          uint64_t elapsed_ms,
                          char *message);

/* Record @id (copied) as accepted with @term, which raises the highest
 * term. Must follow a check that accepted it. Returns 0 or REMS_ENOMEM
 * (then @f is as it was and the command must not run). */
int simagents_fence_accept(struct simagents_fence *f,
                           const char *id,
                           uint64_t term);

/* Take @id out again: it was accepted but never executed (its deadline
 * passed before it could begin), so a resend must not count as a
 * duplicate, which the leader records as executed. The highest term
 * stays. Does nothing when @id is not recorded. */
void simagents_fence_forget(struct simagents_fence *f, const char *id);

/* Whether @id is recorded. */
bool simagents_fence_has(const struct simagents_fence *f, const char *id);

/* ------------------------------------------------------------------------
 * Executions and their checker
 * ------------------------------------------------------------------------ */

/* One command an agent executed. Times: *_mono_us on the engine's
 * monotonic clock (uv_hrtime() / 1000), *_wall_ms the wall clock. */
struct simagents_exec {
    char id[PROTO_ID_MAX + 1]; /* The command's id. */
    uint32_t agent;            /* Index of the agent, 0..n_agents-1. */
    uint64_t seq;              /* Order of acceptance in the engine, from 1. */
    uint64_t term;
    int action; /* enum proto_action */
    uint64_t ttl_remaining_ms;
    uint64_t receipt_mono_us;
    uint64_t receipt_wall_ms;
    uint64_t exec_mono_us;
    uint64_t exec_wall_ms;
};

/* Check executions @e (@n of them, any order) against invariants 4 (no
 * agent executes an id twice), 5 (exec_mono_us < receipt_mono_us +
 * ttl_remaining_ms * 1000) and 6 (an agent's executions, in the order it
 * accepted them, never go down in term). Returns 0, REMS_ECONFLICT with
 * @errmsg naming the first violation found ("invariant 5: command c-1 on
 * agent 3 executed 12 us after its deadline"), or REMS_ENOMEM. Pure. */
int simagents_exec_check(const struct simagents_exec *e,
                         size_t n,
                         char *errmsg);

/* ------------------------------------------------------------------------
 * The engine
 * ------------------------------------------------------------------------ */

/* How the services of an agent behave. Each change is reported. A
 * command (or simagents_crash_service()) changes a service whatever its
 * behaviour; the behaviour says what happens on its own afterwards. */
enum simagents_behaviour {
    /* Running and healthy from the start; changes only by commands. */
    SIMAGENTS_HEALTHY = 0,
    /* Runs for crash_after_ms, then goes failed (exit code 1), stays
     * failed for restart_ms, goes running again with the next generation,
     * and so on. */
    SIMAGENTS_CRASH_LOOP,
    /* Runs for crash_after_ms, then goes failed (exit code 1) and stays
     * failed until a start, restart or push brings it up (a new
     * generation, which crashes again crash_after_ms later). */
    SIMAGENTS_CRASH_ONCE,
    /* Each start (the first, start, restart, push) is running with health
     * unknown and not ready for health_delay_ms, then healthy and ready. */
    SIMAGENTS_SLOW_HEALTH,
    /* A stop (also the stop of a restart or of a push of a new revision)
     * leaves the service in state stopping for stop_hang_ms before it is
     * stopped (or up again); the command is acked when it has ended. */
    SIMAGENTS_HUNG_STOP,
    SIMAGENTS_BEHAVIOUR_NR
};

/* "healthy", "crash_loop", "crash_after", "slow_health", "hung_stop". */
const char *simagents_behaviour_name(enum simagents_behaviour b);

/* Most behaviour shares of struct simagents_options. */
#define SIMAGENTS_MAX_SHARES 8u

/* A share of the agents with one behaviour. Which agents: those whose hash
 * of (seed, index) falls in the share's part of [0, 1), the shares taking
 * consecutive parts in their order; so about fraction * n_agents agents,
 * the same ones for the same seed. */
struct simagents_share {
    enum simagents_behaviour behaviour;
    double fraction;          /* 0 < fraction <= 1; the sum at most 1 */
    unsigned crash_after_ms;  /* crash_loop, crash_after: required */
    unsigned restart_ms;      /* crash_loop; 0: SIMAGENTS_DEFAULT_RESTART_MS */
    unsigned health_delay_ms; /* slow_health: required */
    unsigned stop_hang_ms;    /* hung_stop: required */
};

/* What happened, for simagents_options.event_cb. */
enum simagents_event {
    SIMAGENTS_EVENT_SESSION_UP = 1, /* welcome received */
    SIMAGENTS_EVENT_SESSION_DOWN,   /* a welcomed connection ended */
    SIMAGENTS_EVENT_EXEC,           /* a command executed (exec set) */
};

struct simagents;

/* Called on the loop thread for each event of agent @agent. @exec is the
 * record of SIMAGENTS_EVENT_EXEC (borrowed for the call), else NULL. Must
 * not call simagents_close(). */
typedef void (*simagents_event_cb)(struct simagents *sa,
                                   size_t agent,
                                   enum simagents_event event,
                                   const struct simagents_exec *exec);

/* Runs once, from the loop, when simagents_stop() has closed everything. */
typedef void (*simagents_stop_cb)(struct simagents *sa);

struct simagents_options {
    /* Agents: ids "<prefix>-<n>" for n = first_index .. first_index +
     * n_agents - 1. n_agents: 1..SIMAGENTS_MAX_AGENTS. The prefix, 0 or
     * NULL: SIMAGENTS_DEFAULT_PREFIX; every id must be valid. */
    size_t n_agents;
    const char *prefix;
    uint64_t first_index; /* 0 selects 1 */

    /* Nodes: "host:port" with an IPv4 address, or an IPv6 address in
     * brackets (no name lookups), 1..SIMAGENTS_MAX_ENDPOINTS of them.
     * Copied. Each agent starts at a random one. Redirects may name
     * others, in the same form. */
    const char *const *endpoints;
    size_t n_endpoints;

    /* Certificates. ca_cert / ca_key: the CA that signs the agents'
     * certificates (required). server_ca: the trust anchors the nodes'
     * certificates must chain to (NULL: ca_cert). cert_dir: where the
     * agents' PEM files go, an existing directory kept by
     * simagents_close() (NULL: a new temporary directory under $TMPDIR or
     * /tmp, removed by simagents_close()). validity_s: 0 selects
     * SIMAGENTS_DEFAULT_VALIDITY_S. */
    const char *ca_cert;
    const char *ca_key;
    const char *server_ca;
    const char *cert_dir;
    unsigned validity_s;

    /* TLS: the name every node's certificate must match (a DNS name or an
     * IP literal; NULL or "": the host of the endpoint dialled, as
     * rems-agent does). resume: offer the session of the agent's previous
     * connection (TLS 1.3 resumption), as rems-agent does. tcp_nodelay:
     * set TCP_NODELAY (rems-agent does not). close_linger_ms: 0 selects
     * TLS_CLOSE_LINGER_MS. */
    const char *server_name;
    bool resume;
    bool tcp_nodelay;
    unsigned close_linger_ms;

    /* Labels sent in every hello (copied; 0..PROTO_LABELS_MAX - 1 of
     * them). zones > 0 adds the label "zone" = "z<n % zones>". */
    const struct proto_kv *labels;
    size_t n_labels;
    unsigned zones;

    /* Ramp-up: agents started per second (0: all at once). */
    double ramp_per_s;

    /* Connections. connect_timeout_ms bounds TCP, TLS and the wait for the
     * answer to hello. After a lost session an agent reconnects to the
     * same node after jitter(reconnect_initial_ms); after a failure it
     * tries the next endpoint at once, and once every endpoint failed in
     * a row it waits jitter(reconnect_initial_ms * 2^round), at most
     * reconnect_max_ms (jitter(x) is uniform in [x/2, x]). A redirect
     * waits its retry_after_ms (at most reconnect_max_ms). 0 selects the
     * SIMAGENTS_DEFAULT_* values. heartbeat_ms: 0 uses the interval of the
     * welcome; else this, when below the lease. */
    unsigned connect_timeout_ms;
    unsigned reconnect_initial_ms;
    unsigned reconnect_max_ms;
    unsigned heartbeat_ms;

    /* Services: n_services (0..SIMAGENTS_MAX_SERVICES) per agent, named
     * "<service_prefix>-<k>" for k = 0..n_services-1 (prefix NULL:
     * SIMAGENTS_DEFAULT_SERVICE_PREFIX); a push_manifest naming another
     * service adds it (up to SIMAGENTS_MAX_SERVICES), as rems-agent starts
     * a pushed service. Every agent's services have @behaviour with its
     * parameters (see struct simagents_share for which are required),
     * except the agents of @shares. With crash_loop and crash_after each
     * agent's first crash is drawn uniformly in [crash_after_ms / 2,
     * crash_after_ms] so agents do not crash in step. report_queue: items
     * kept while disconnected (older ones are dropped and counted), at
     * most SIMAGENTS_MAX_REPORT_QUEUE; 0 selects
     * SIMAGENTS_DEFAULT_REPORT_QUEUE. */
    size_t n_services;
    const char *service_prefix;
    enum simagents_behaviour behaviour;
    unsigned crash_after_ms;
    unsigned restart_ms;
    unsigned health_delay_ms;
    unsigned stop_hang_ms;
    unsigned report_queue;
    /* Shares of the agents with another behaviour than the one above
     * (which the rest keeps); 0..SIMAGENTS_MAX_SHARES. Copied pointer:
     * the array must live until simagents_close(). */
    const struct simagents_share *shares;
    size_t n_shares;

    /* Commands. An accepted command starts executing exec_delay_ms later
     * (its deadline is checked again then: past it, the id is forgotten
     * and the answer is nack expired), and is acked ack_delay_ms after it
     * executed. An answer whose connection ended meanwhile is lost (the
     * leader resends; the fence answers duplicate). */
    unsigned exec_delay_ms;
    unsigned ack_delay_ms;
    /* Keep every execution record (simagents_execs()); false keeps only
     * the counts. */
    bool record_execs;

    /* Random seed of the jitter, the endpoint choice and the first
     * crashes; 0 draws one (simagents_seed() tells which). */
    uint64_t seed;

    simagents_event_cb event_cb; /* May be NULL. */
    void *data;                  /* For the owner: simagents_data(). */
};

/* Counters of the engine, since simagents_start(). */
struct simagents_stats {
    uint64_t agents;           /* n_agents */
    uint64_t started;          /* agents the ramp has started */
    uint64_t connected;        /* agents in a session now */
    uint64_t ever_connected;   /* agents welcomed at least once */
    uint64_t attempts;         /* connections begun */
    uint64_t connect_failures; /* attempts that ended before a welcome
                                  for another reason than a redirect
                                  (timeouts included) */
    uint64_t timeouts;         /* attempts cut by connect_timeout_ms */
    uint64_t tls_failures;     /* handshakes that failed */
    uint64_t sessions;         /* welcomes */
    uint64_t sessions_lost;    /* welcomed connections that ended */
    uint64_t redirects;        /* redirect frames received */
    uint64_t node_errors;      /* error frames received */
    uint64_t protocol_errors;  /* frames from a node that broke the rules */
    uint64_t heartbeats;       /* sent */
    uint64_t heartbeat_acks;
    uint64_t heartbeat_timeouts; /* sessions dropped for lack of acks */
    uint64_t reports;            /* report frames sent */
    uint64_t report_items;       /* items in them */
    uint64_t reports_dropped;    /* items dropped while disconnected */
    uint64_t commands;           /* command frames received */
    uint64_t executed;
    uint64_t acked;
    uint64_t nacked;
    uint64_t nacked_by_reason[PROTO_NACK_REASON_NR]; /* by PROTO_NACK_* */
    uint64_t answers_lost; /* answers not sent: their connection ended */
    uint64_t mint_us;      /* simagents_open(): minting and writing PEM */
    uint64_t contexts_us;  /* simagents_open(): opening the contexts */
};

/* One agent, for simagents_agent_info(). */
struct simagents_agent_info {
    const char *id; /* Owned by the engine. */
    bool started;
    bool connected;        /* In a session now. */
    uint64_t node_id;      /* Of the current or last session; 0 before one. */
    uint64_t term;         /* The leader's term last heard. */
    uint64_t highest_term; /* Of the commands it accepted. */
    uint64_t sessions;
    uint64_t attempts;
    uint64_t redirects;
    uint64_t executed;
    /* Start (by the ramp) to first welcome, microseconds; -1 before. */
    int64_t connect_us;
    /* End of the last session lost to the next welcome; -1 when none. */
    int64_t reconnect_us;
};

/* Validate @opts (borrowed; what is kept is copied), mint the
 * certificates, write them and open one TLS context per agent. No I/O on
 * @loop yet. On success returns 0 and *@out owns the engine
 * (simagents_close()). On failure returns REMS_EINVAL (an option breaks a
 * rule; @errmsg names it, e.g. "endpoints[1]: must be host:port with an
 * IP address"), REMS_ECONFIG (a CA file), REMS_EIO (the certificate
 * directory) or REMS_ENOMEM, and leaves *@out untouched. */
int simagents_open(uv_loop_t *loop,
                   const struct simagents_options *opts,
                   struct simagents **out,
                   char *errmsg);

/* Start the ramp-up. Once only. Returns 0 (nothing here fails today; the
 * code is for later growth). Loop thread. */
int simagents_start(struct simagents *sa, char *errmsg);

/* Close every connection (gracefully, TLS close_notify) and every timer;
 * no agent connects again. @cb (may be NULL) runs once, from the loop,
 * when all is closed. Once only, after simagents_start(). The counters and
 * the records stay readable. Loop thread. */
void simagents_stop(struct simagents *sa, simagents_stop_cb cb);

/* Release @sa: its contexts, records, and the certificate directory when
 * simagents_open() made it. Not started, or stopped (the stop callback
 * ran, or is running). NULL does nothing. */
void simagents_close(struct simagents *sa);

/* The counters. Loop thread. */
void simagents_stats(const struct simagents *sa, struct simagents_stats *out);

/* The execution records, in order of execution; valid until the next loop
 * iteration (the array may move) or simagents_close(). Empty without
 * record_execs. */
const struct simagents_exec *simagents_execs(const struct simagents *sa,
                                             size_t *n);

/* Agent @i (0..n_agents-1). */
void simagents_agent_info(const struct simagents *sa,
                          size_t i,
                          struct simagents_agent_info *out);

/* Close agent @i's connection now, when it has one or is making one (a
 * TLS close once the handshake is done); it reconnects as after any lost
 * connection. For drills. Loop thread. */
void simagents_agent_drop(struct simagents *sa, size_t i);

/* Service @service (an index, 0..simagents_service_count() - 1) of agent
 * @agent fails now (state failed, exit code 137, unhealthy; reported at
 * once, or queued while disconnected) and stays failed until a command
 * starts it, or, for a crash-looping agent, until its restart_ms passed.
 * Returns 0, REMS_EINVAL (no such agent) or REMS_ENOTFOUND (no such
 * service). Loop thread. */
int simagents_crash_service(struct simagents *sa, size_t agent, size_t service);

/* The services agent @agent runs now: n_services, plus those a
 * push_manifest added (0 for an agent out of range); and the name of one
 * into @out (PROTO_SERVICE_MAX + 1 bytes; "" out of range). Loop thread. */
size_t simagents_service_count(const struct simagents *sa, size_t agent);
void simagents_service_name(const struct simagents *sa,
                            size_t agent,
                            size_t service,
                            char *out);

size_t simagents_count(const struct simagents *sa);
uint64_t simagents_seed(const struct simagents *sa);
void *simagents_data(const struct simagents *sa);
/* The directory holding the agents' <id>.pem and <id>.key. */
const char *simagents_cert_dir(const struct simagents *sa);

#endif /* REMS_SIMULATOR_SIMAGENTS_H */
