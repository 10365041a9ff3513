/* simulator/simagents.c: many simulated agents on one libuv loop.
 *
 * Happy path of one agent. The ramp timer starts it (IDLE -> WAITING) at
 * a random configured endpoint. Its timer fires, a TLS stream is opened
 * from the agent's own client context and its TCP handle connects
 * (CONNECTING); the handshake verifies the node's certificate against the
 * server name (HANDSHAKE); the agent sends hello with its id, labels, the
 * highest term it accepted and the state of every service (HELLO); the
 * leader answers welcome (SESSION). From then on the same timer sends a
 * heartbeat every interval, service-state changes leave as reports, and
 * commands are fenced, executed and answered.
 *
 * One timer per agent does three jobs, by state: the retry delay in
 * WAITING, the connect timeout from CONNECTING to HELLO, the heartbeats in
 * SESSION. A second timer drives the simulated services (crash_after).
 * Commands with a delay have their own timer each.
 *
 * Failures: anything that ends a connection (TCP or TLS failure, timeout,
 * redirect, error frame, a frame that breaks the protocol, no
 * heartbeat_ack within min(3 intervals, lease)) goes through agent_drop():
 * the stream is closed (CLOSING) and, once closed, the next attempt is
 * planned (WAITING), as rems-agent plans it (agentproto/agent_link.c): a
 * redirect's address after its retry_after_ms; after a lost session the
 * same node after a jittered short delay; after a failure the next
 * configured endpoint at once, and a backoff round with jitter once all
 * endpoints failed in a row.
 *
 * Commands, in the order of docs/protocol.md: the fence (stale term,
 * duplicate, expired), then unknown action, then unknown service; else the
 * id is accepted into the in-memory fence and the command executes
 * (exec_delay_ms later, with its deadline checked again then) and is acked
 * (ack_delay_ms after executing). Each execution is recorded. An answer
 * whose connection has ended is lost, as rems-agent loses it; the leader
 * resends the command on the next connection and the fence answers
 * duplicate.
 *
 * Agent states (sm_move() checks each move against agent_moves[]):
 *
 *   IDLE --> WAITING --> CONNECTING --> HANDSHAKE --> HELLO --> SESSION
 *              ^  ^          |  |           |           |          |
 *              |  +----------+  v           v           v          v
 *              |  (open failed) +-------- CLOSING <-----+----------+
 *              +------------------------------+
 *
 *   and from every state to STOPPED (simagents_stop()).
 *
 * Stopping closes every stream (a graceful TLS close) and every handle;
 * a counter of closes in flight calls the stop callback at zero.
 *
 * Memory: the agents live in one array allocated by simagents_open()
 * (their handles never move). Per agent: its TLS context, its session,
 * its fence, its services and (lazily) its report queue. Execution
 * records grow one array. Everything goes through common/heap.h, except
 * what OpenSSL allocates for itself. */
#include "simulator/simagents.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "agentproto/tls.h"
#include "common/assert.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/mpread.h"
#include "common/queue.h"
#include "common/util.h"

/* Heartbeats remembered while they await their ack (the timeout is at
 * most three intervals, so no more than four are ever outstanding). */
#define SIM_HB_OUTSTANDING 8
/* Redirects followed in a row without a welcome before an agent falls
 * back to its own endpoints and backoff (as rems-agent). */
#define SIM_MAX_REDIRECTS 8
/* Backoff rounds beyond this do not grow the delay. */
#define SIM_BACKOFF_SHIFT_MAX 30u
/* Endpoints known to the engine: the configured ones and those redirects
 * named. */
#define SIM_ENDPOINTS_MAX 64u
/* The ramp's tick. */
#define SIM_RAMP_TICK_MS 10u
/* Largest "host:port" kept (an IPv6 literal in brackets and a port). */
#define SIM_ADDR_SIZE 64

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

enum agent_state {
    AGENT_IDLE,
    AGENT_WAITING,
    AGENT_CONNECTING,
    AGENT_HANDSHAKE,
    AGENT_HELLO,
    AGENT_SESSION,
    AGENT_CLOSING,
    AGENT_STOPPED,
    AGENT_STATE_NR
};

#define AGENT_BIT(s) (1u << (s))

static const unsigned agent_moves[AGENT_STATE_NR] = {
    [AGENT_IDLE] = AGENT_BIT(AGENT_WAITING) | AGENT_BIT(AGENT_STOPPED),
    [AGENT_WAITING] = AGENT_BIT(AGENT_CONNECTING) | AGENT_BIT(AGENT_STOPPED),
    [AGENT_CONNECTING] = AGENT_BIT(AGENT_HANDSHAKE) | AGENT_BIT(AGENT_CLOSING) |
                         AGENT_BIT(AGENT_WAITING) | AGENT_BIT(AGENT_STOPPED),
    [AGENT_HANDSHAKE] = AGENT_BIT(AGENT_HELLO) | AGENT_BIT(AGENT_CLOSING) |
                        AGENT_BIT(AGENT_STOPPED),
    [AGENT_HELLO] = AGENT_BIT(AGENT_SESSION) | AGENT_BIT(AGENT_CLOSING) |
                    AGENT_BIT(AGENT_STOPPED),
    [AGENT_SESSION] = AGENT_BIT(AGENT_CLOSING) | AGENT_BIT(AGENT_STOPPED),
    [AGENT_CLOSING] = AGENT_BIT(AGENT_WAITING) | AGENT_BIT(AGENT_STOPPED),
    [AGENT_STOPPED] = 0,
};

/* A node address: the configured endpoints first, then redirect targets. */
struct sim_endpoint {
    struct sockaddr_storage addr;
    char host[INET6_ADDRSTRLEN]; /* The IP literal, for the server name. */
    char text[SIM_ADDR_SIZE];    /* "host:port" */
};

/* The state of one simulated service. */
struct sim_service {
    int state;  /* enum proto_state */
    int health; /* enum proto_health */
    bool ready;
    bool has_exit_code;
    int32_t exit_code;
    uint64_t generation;
    uint64_t since_ms; /* wall clock */
    uint64_t next_ms;  /* Loop time of its next change; 0: none planned. */
    bool health_pending; /* slow_health: healthy at next_ms */
    bool up_after_stop;  /* hung_stop: a restart's stop; up at next_ms */
};

/* How the services of one agent behave (struct simagents_share, kept per
 * agent). */
struct sim_beh {
    uint8_t kind; /* enum simagents_behaviour */
    unsigned crash_after_ms;
    unsigned restart_ms;
    unsigned health_delay_ms;
    unsigned stop_hang_ms;
};

/* One report item waiting to be sent. */
struct sim_item {
    uint32_t service;
    struct sim_service s;
};

struct sim_agent;

/* A command accepted and waiting for its execution or its ack. */
struct sim_cmd {
    rems_queue queue; /* In agent->cmds. */
    struct sim_agent *a;
    uv_timer_t timer;
    uint64_t conn; /* The connection it came on. */
    char id[PROTO_ID_MAX + 1];
    uint64_t term;
    int action;
    int service; /* Index, or -1 for none. */
    char service_name[PROTO_SERVICE_MAX + 1]; /* push_manifest of a new one */
    unsigned ack_delay_ms;
    uint64_t ttl_ms;
    uint64_t receipt_mono_us;
    uint64_t receipt_wall_ms;
    uint64_t seq;
    bool executed; /* Waiting for its ack. */
};

struct sim_agent {
    struct simagents *sa;
    uint32_t index;
    int state; /* enum agent_state */
    char id[PROTO_ID_MAX + 1];
    struct tls_context *tls;
    struct tls_session *session;
    struct tls_stream *stream;
    uv_timer_t timer;     /* retry / connect timeout / heartbeats */
    uv_timer_t svc_timer; /* service changes */
    uv_connect_t connect_req;
    struct proto_reader reader;

    /* Where to connect (indexes into sa->eps). */
    unsigned target;
    unsigned next_endpoint; /* Next configured endpoint to try. */
    unsigned failures;      /* Attempts failed in this round. */
    unsigned round;         /* Backoff rounds since the last session. */
    unsigned redirects;     /* Followed since the last session. */
    bool have_redirect;
    unsigned redirect_to;
    uint64_t redirect_delay_ms;
    bool had_session; /* The connection being closed had a session. */
    bool redirected;  /* The connection ends with a redirect. */
    uint64_t conn;    /* Connections made, this one included. */

    /* The session. */
    uint64_t node_id;
    uint64_t term;
    uint64_t hb_timeout_ms;
    uint64_t hb_seq;
    uint64_t hb_out_seq[SIM_HB_OUTSTANDING];
    uint64_t hb_out_ms[SIM_HB_OUTSTANDING];
    size_t n_hb_out;

    struct simagents_fence fence;
    rems_queue cmds; /* struct sim_cmd */

    /* Services and the reports of their changes. */
    struct sim_service *svcs;
    size_t n_svcs; /* o.n_services, plus those push_manifest added */
    size_t cap_svcs;
    /* Names of the services from o.n_services on (added by push). */
    char (*extra_names)[PROTO_SERVICE_MAX + 1];
    struct sim_beh beh;
    struct sim_item *queue; /* Ring of sa->report_queue items, lazily. */
    size_t q_head;
    size_t q_len;
    uint64_t report_seq;
    uint64_t q_dropped; /* Dropped since the last report sent. */

    /* For simagents_agent_info(). */
    bool started;
    uint64_t start_us;
    uint64_t lost_us; /* End of the last session; 0 after a welcome. */
    int64_t connect_us;
    int64_t reconnect_us;
    uint64_t sessions;
    uint64_t attempts;
    uint64_t n_redirects;
    uint64_t executed;
};

/* A frame on its way to a node. */
struct sim_write {
    struct tls_write req;
};

struct simagents {
    uv_loop_t *loop;
    struct simagents_options o; /* Strings point into the copies below. */
    char prefix[PROTO_ID_MAX + 1];
    char service_prefix[PROTO_SERVICE_MAX + 1];
    char *server_name;       /* NULL: the host dialled. */
    struct proto_kv *labels; /* o.n_labels + 1 (the zone) */
    char *label_text;        /* The labels' strings. */
    char cert_dir[512];
    bool own_cert_dir;
    unsigned connect_timeout_ms;
    unsigned reconnect_initial_ms;
    unsigned reconnect_max_ms;
    unsigned restart_ms;
    size_t report_queue;
    uint64_t seed;
    uint64_t rng;

    struct sim_endpoint eps[SIM_ENDPOINTS_MAX];
    unsigned n_eps;
    unsigned n_configured;

    struct sim_agent *agents;
    size_t n_agents;
    size_t n_started;
    uv_timer_t ramp;
    uint64_t ramp_t0;
    bool started;
    bool stopping;
    size_t closes;       /* Handles and streams being closed by stop. */
    size_t cmds_closing; /* Command timers whose close is pending. */
    simagents_stop_cb stop_cb;

    struct rems_buf wbuf; /* Encoding buffer, reused. */
    struct simagents_exec *execs;
    size_t n_execs;
    size_t cap_execs;
    uint64_t seq; /* Commands accepted. */
    struct simagents_stats stats;
};

static void agent_drop(struct sim_agent *a);
static void plan_next(struct sim_agent *a);
static void report_flush(struct sim_agent *a);

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static void sm_move(struct sim_agent *a, int to)
{
    REMS_ASSERT((agent_moves[a->state] & AGENT_BIT(to)) != 0);
    a->state = to;
}

static bool in_connection(const struct sim_agent *a)
{
    return a->state == AGENT_HELLO || a->state == AGENT_SESSION;
}

static uint64_t mono_us(void)
{
    return uv_hrtime() / 1000;
}

static uint64_t now_ms(struct simagents *sa)
{
    uv_update_time(sa->loop);
    return uv_now(sa->loop);
}

/* xorshift64*: jitter and choices only, so a weak generator will do. */
static uint64_t rand_u64(struct simagents *sa)
{
    sa->rng ^= sa->rng >> 12;
    sa->rng ^= sa->rng << 25;
    sa->rng ^= sa->rng >> 27;
    return sa->rng * 2685821657736338717ull;
}

/* A delay between half of @ms and @ms. */
static uint64_t jitter(struct simagents *sa, uint64_t ms)
{
    return ms / 2 + rand_u64(sa) % (ms / 2 + 1);
}

static struct proto_str pstr(const char *s)
{
    struct proto_str p = {s, strlen(s)};
    return p;
}

static void log_agent(struct sim_agent *a,
                      enum rems_log_level level,
                      const char *event,
                      const char *msg)
{
    struct rems_log_line l;

    rems_log_begin(&l, level, event);
    rems_log_str(&l, "agent", a->id);
    rems_log_str(&l, "endpoint", a->sa->eps[a->target].text);
    if (msg != NULL) {
        rems_log_str(&l, "msg", msg);
    }
    rems_log_end(&l);
}

/* Parse "a.b.c.d:port" or "[v6]:port" (@len bytes at @s) into @ep. */
static int endpoint_parse(const char *s, size_t len, struct sim_endpoint *ep)
{
    char host[INET6_ADDRSTRLEN];
    const char *colon;
    const char *hs = s;
    size_t hlen;
    uint64_t port = 0;
    size_t i;

    if (len == 0 || len >= SIM_ADDR_SIZE) {
        return REMS_EINVAL;
    }
    colon = NULL;
    for (i = len; i > 0; i--) {
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    }
    if (colon == NULL || colon == s || (size_t)(colon - s) + 1 == len) {
        return REMS_EINVAL;
    }
    hlen = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']') {
            return REMS_EINVAL;
        }
        hs = s + 1;
        hlen -= 2;
    }
    if (hlen >= sizeof host) {
        return REMS_EINVAL;
    }
    for (i = (size_t)(colon - s) + 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return REMS_EINVAL;
        }
        port = port * 10 + (uint64_t)(s[i] - '0');
        if (port > 65535) {
            return REMS_EINVAL;
        }
    }
    if (port == 0) {
        return REMS_EINVAL;
    }
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    memset(ep, 0, sizeof *ep);
    if (s[0] == '[') {
        if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ep->addr) !=
            0) {
            return REMS_EINVAL;
        }
    } else if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ep->addr) !=
               0) {
        return REMS_EINVAL;
    }
    memcpy(ep->host, host, hlen + 1);
    memcpy(ep->text, s, len);
    ep->text[len] = '\0';
    return 0;
}

/* The index of endpoint "host:port" (@len bytes at @s), added when new;
 * -1 when it cannot be parsed or the table is full. */
static int endpoint_lookup(struct simagents *sa, const char *s, size_t len)
{
    struct sim_endpoint ep;
    unsigned i;

    if (endpoint_parse(s, len, &ep) != 0) {
        return -1;
    }
    for (i = 0; i < sa->n_eps; i++) {
        if (strcmp(sa->eps[i].text, ep.text) == 0) {
            return (int)i;
        }
    }
    if (sa->n_eps == SIM_ENDPOINTS_MAX) {
        return -1;
    }
    sa->eps[sa->n_eps] = ep;
    return (int)sa->n_eps++;
}

/* ------------------------------------------------------------------------
 * Certificates
 * ------------------------------------------------------------------------ */

struct simagents_ca {
    X509 *cert;
    EVP_PKEY *key;
};

/* Translate the OpenSSL error queue: "@what: <first reason>", REMS_ENOMEM
 * for an allocation failure, else @rv. Empties the queue. */
static int ossl_error(const char *what, int rv, char *errmsg)
{
    unsigned long e = ERR_peek_error();
    const char *reason;

    if (e == 0) {
        rems_errmsgf(errmsg, "%s: unknown error", what);
    } else if (!ERR_SYSTEM_ERROR(e) &&
               ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE) {
        rems_errmsgf(errmsg, "%s: out of memory", what);
        rv = REMS_ENOMEM;
    } else {
        reason = ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e))
                                     : ERR_reason_error_string(e);
        rems_errmsgf(errmsg, "%s: %s", what,
                     reason != NULL ? reason : "unknown error");
    }
    ERR_clear_error();
    return rv;
}

int simagents_ca_open(const char *cert_file,
                      const char *key_file,
                      struct simagents_ca **out,
                      char *errmsg)
{
    struct simagents_ca *ca;
    char what[REMS_ERRMSG_SIZE];
    FILE *fp;
    int rv;

    PRE(cert_file != NULL && key_file != NULL && out != NULL && errmsg != NULL);
    ERR_clear_error();
    ca = rems_calloc(1, sizeof *ca);
    if (ca == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    fp = fopen(cert_file, "r");
    if (fp == NULL) {
        rems_errmsgf(errmsg, "ca certificate %s: %s", cert_file,
                     strerror(errno));
        rv = REMS_ECONFIG;
        goto err_after_alloc;
    }
    ca->cert = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    if (ca->cert == NULL) {
        snprintf(what, sizeof what, "ca certificate %s", cert_file);
        rv = ossl_error(what, REMS_ECONFIG, errmsg);
        goto err_after_alloc;
    }
    fp = fopen(key_file, "r");
    if (fp == NULL) {
        rems_errmsgf(errmsg, "ca key %s: %s", key_file, strerror(errno));
        rv = REMS_ECONFIG;
        goto err_after_cert;
    }
    ca->key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    if (ca->key == NULL) {
        snprintf(what, sizeof what, "ca key %s", key_file);
        rv = ossl_error(what, REMS_ECONFIG, errmsg);
        goto err_after_cert;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        ERR_clear_error();
        rems_errmsgf(errmsg, "ca key %s: not the key of %s", key_file,
                     cert_file);
        rv = REMS_ECONFIG;
        goto err_after_key;
    }
    *out = ca;
    return 0;

err_after_key:
    EVP_PKEY_free(ca->key);
err_after_cert:
    X509_free(ca->cert);
err_after_alloc:
    rems_free(ca);
err:
    POST(rv != 0);
    return rv;
}

void simagents_ca_close(struct simagents_ca *ca)
{
    if (ca == NULL) {
        return;
    }
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    rems_free(ca);
}

/* Add extension @nid with the openssl-config @value to @x. */
static int add_ext(X509V3_CTX *ctx, X509 *x, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    int ok;

    if (ext == NULL) {
        return 0;
    }
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* What a certificate says beyond its key. */
struct cert_spec {
    const char *cn;
    const char *san;  /* the subjectAltName value, NULL for none */
    const char *eku;  /* extendedKeyUsage, NULL for none */
    bool is_ca;
    unsigned validity_s;
};

/* A certificate for @pkey as @spec says, signed by @ca, or self-signed
 * when @ca is NULL; NULL with @errmsg and *@rv. */
static X509 *cert_build(const struct simagents_ca *ca,
                        const struct cert_spec *spec,
                        EVP_PKEY *pkey,
                        char *errmsg,
                        int *rv)
{
    unsigned char serial[16];
    X509V3_CTX ctx;
    BIGNUM *bn = NULL;
    X509 *x;
    bool ok;

    x = X509_new();
    if (x == NULL) {
        *rv = ossl_error("certificate", REMS_ENOMEM, errmsg);
        return NULL;
    }
    ok = RAND_bytes(serial, (int)sizeof serial) == 1;
    serial[0] &= 0x7f; /* Positive, and never longer than 20 bytes. */
    serial[0] |= 0x01; /* Never 0. */
    ok = ok && (bn = BN_bin2bn(serial, (int)sizeof serial, NULL)) != NULL;
    ok = ok && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    ok = ok && X509_set_version(x, X509_VERSION_3) == 1;
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -300) != NULL;
    ok = ok &&
         X509_gmtime_adj(X509_getm_notAfter(x), (long)spec->validity_s) != NULL;
    ok = ok && X509_NAME_add_entry_by_txt(
                   X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                   (const unsigned char *)spec->cn, -1, -1, 0) == 1;
    ok = ok && X509_set_issuer_name(x, ca != NULL ? X509_get_subject_name(
                                                        ca->cert)
                                                  : X509_get_subject_name(x)) ==
                   1;
    ok = ok && X509_set_pubkey(x, pkey) == 1;
    if (ok) {
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, ca != NULL ? ca->cert : x, x, NULL, NULL, 0);
        ok = add_ext(&ctx, x, NID_basic_constraints,
                     spec->is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE") &&
             add_ext(&ctx, x, NID_key_usage,
                     spec->is_ca ? "critical,keyCertSign,cRLSign"
                                 : "critical,digitalSignature") &&
             (spec->eku == NULL ||
              add_ext(&ctx, x, NID_ext_key_usage, spec->eku)) &&
             (spec->san == NULL ||
              add_ext(&ctx, x, NID_subject_alt_name, spec->san)) &&
             add_ext(&ctx, x, NID_subject_key_identifier, "hash") &&
             (ca == NULL ||
              add_ext(&ctx, x, NID_authority_key_identifier, "keyid"));
    }
    ok = ok && X509_sign(x, ca != NULL ? ca->key : pkey, EVP_sha256()) > 0;
    if (!ok) {
        *rv = ossl_error("certificate", REMS_EINVAL, errmsg);
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Open @path for writing with @mode, replacing it. */
static FILE *open_out(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    FILE *fp;

    if (fd < 0) {
        return NULL;
    }
    /* An existing file keeps its mode through O_CREAT. */
    if (fchmod(fd, mode) != 0) {
        close(fd);
        return NULL;
    }
    fp = fdopen(fd, "w");
    if (fp == NULL) {
        close(fd);
    }
    return fp;
}

/* Make a key and the certificate @spec says (signed by @ca, or
 * self-signed), and write both as PEM. */
static int mint(const struct simagents_ca *ca,
                const struct cert_spec *spec,
                const char *cert_path,
                const char *key_path,
                char *errmsg)
{
    EVP_PKEY *pkey;
    X509 *x;
    FILE *fp;
    int ok;
    int rv;

    ERR_clear_error();
    pkey = EVP_EC_gen("P-256");
    if (pkey == NULL) {
        rv = ossl_error("key", REMS_ENOMEM, errmsg);
        goto err;
    }
    x = cert_build(ca, spec, pkey, errmsg, &rv);
    if (x == NULL) {
        goto err_after_key;
    }
    fp = open_out(key_path, 0600);
    if (fp == NULL) {
        rems_errmsgf(errmsg, "%s: %s", key_path, strerror(errno));
        rv = REMS_EIO;
        goto err_after_cert;
    }
    ok = PEM_write_PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL);
    if (fclose(fp) != 0 || ok != 1) {
        ERR_clear_error();
        rems_errmsgf(errmsg, "%s: write failed", key_path);
        rv = REMS_EIO;
        goto err_after_cert;
    }
    fp = open_out(cert_path, 0644);
    if (fp == NULL) {
        rems_errmsgf(errmsg, "%s: %s", cert_path, strerror(errno));
        rv = REMS_EIO;
        goto err_after_cert;
    }
    ok = PEM_write_X509(fp, x);
    if (fclose(fp) != 0 || ok != 1) {
        ERR_clear_error();
        rems_errmsgf(errmsg, "%s: write failed", cert_path);
        rv = REMS_EIO;
        goto err_after_cert;
    }
    X509_free(x);
    EVP_PKEY_free(pkey);
    return 0;

err_after_cert:
    X509_free(x);
err_after_key:
    EVP_PKEY_free(pkey);
err:
    POST(rv != 0);
    return rv;
}

int simagents_cert_mint(const struct simagents_ca *ca,
                        const char *id,
                        unsigned validity_s,
                        const char *cert_path,
                        const char *key_path,
                        char *errmsg)
{
    char san[sizeof TLS_AGENT_URI_PREFIX + PROTO_ID_MAX + 8];
    struct cert_spec spec = {id, san, "clientAuth", false, validity_s};

    PRE(ca != NULL && id != NULL && cert_path != NULL && key_path != NULL &&
        errmsg != NULL);
    if (!rems_id_valid(id)) {
        rems_errmsgf(errmsg, "agent id \"%.64s\": not a valid id", id);
        return REMS_EINVAL;
    }
    if (spec.validity_s == 0) {
        spec.validity_s = SIMAGENTS_DEFAULT_VALIDITY_S;
    }
    snprintf(san, sizeof san, "URI:%s%s", TLS_AGENT_URI_PREFIX, id);
    return mint(ca, &spec, cert_path, key_path, errmsg);
}

int simagents_ca_create(const char *cn,
                        unsigned validity_s,
                        const char *cert_path,
                        const char *key_path,
                        char *errmsg)
{
    struct cert_spec spec = {cn, NULL, NULL, true, validity_s};

    PRE(cn != NULL && cert_path != NULL && key_path != NULL && errmsg != NULL);
    if (cn[0] == '\0' || strlen(cn) > 64) {
        rems_errmsgf(errmsg, "CA name: 1 to 64 bytes");
        return REMS_EINVAL;
    }
    if (spec.validity_s == 0) {
        spec.validity_s = SIMAGENTS_DEFAULT_VALIDITY_S;
    }
    return mint(NULL, &spec, cert_path, key_path, errmsg);
}

int simagents_cert_mint_server(const struct simagents_ca *ca,
                               const char *cn,
                               const char *const *names,
                               size_t n_names,
                               unsigned validity_s,
                               const char *cert_path,
                               const char *key_path,
                               char *errmsg)
{
    struct cert_spec spec = {cn, NULL, "serverAuth,clientAuth", false,
                             validity_s};
    struct rems_buf san;
    size_t i;
    int rv;

    PRE(ca != NULL && cn != NULL && cert_path != NULL && key_path != NULL &&
        errmsg != NULL && (n_names == 0 || names != NULL));
    if (cn[0] == '\0' || strlen(cn) > 64 || n_names == 0 || n_names > 16) {
        rems_errmsgf(errmsg, "server certificate: a name of 1 to 64 bytes "
                             "and 1 to 16 subject alternative names");
        return REMS_EINVAL;
    }
    if (spec.validity_s == 0) {
        spec.validity_s = SIMAGENTS_DEFAULT_VALIDITY_S;
    }
    rems_buf_init(&san);
    for (i = 0; i < n_names; i++) {
        unsigned char ip[16];
        bool is_ip = inet_pton(AF_INET, names[i], ip) == 1 ||
                     inet_pton(AF_INET6, names[i], ip) == 1;
        if (names[i][0] == '\0' || strlen(names[i]) > 253 ||
            strpbrk(names[i], ", \t\r\n") != NULL) {
            rems_buf_close(&san);
            rems_errmsgf(errmsg, "server certificate: names[%zu]: not a "
                                 "host name or IP address",
                         i);
            return REMS_EINVAL;
        }
        rems_buf_printf(&san, "%s%s:%s", i == 0 ? "" : ",",
                        is_ip ? "IP" : "DNS", names[i]);
    }
    if (rems_buf_append(&san, "", 1) != 0) {
        rems_buf_close(&san);
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    spec.san = san.data;
    rv = mint(ca, &spec, cert_path, key_path, errmsg);
    rems_buf_close(&san);
    return rv;
}

/* ------------------------------------------------------------------------
 * The fence
 * ------------------------------------------------------------------------ */

/* FNV-1a. */
static size_t id_hash(const char *id)
{
    uint64_t h = 14695981039346656037ull;

    for (; *id != '\0'; id++) {
        h ^= (unsigned char)*id;
        h *= 1099511628211ull;
    }
    return (size_t)h;
}

/* The slot holding @id, or the empty slot where it would go. */
static size_t fence_slot(const struct simagents_fence *f, const char *id)
{
    size_t mask = f->cap - 1;
    size_t i = id_hash(id) & mask;

    while (f->slots[i][0] != '\0' && strcmp(f->slots[i], id) != 0) {
        i = (i + 1) & mask;
    }
    return i;
}

void simagents_fence_init(struct simagents_fence *f)
{
    PRE(f != NULL);
    memset(f, 0, sizeof *f);
}

void simagents_fence_close(struct simagents_fence *f)
{
    if (f == NULL) {
        return;
    }
    rems_free(f->slots);
    memset(f, 0, sizeof *f);
}

bool simagents_fence_has(const struct simagents_fence *f, const char *id)
{
    PRE(f != NULL && id != NULL);
    return f->cap > 0 && f->slots[fence_slot(f, id)][0] != '\0';
}

int simagents_fence_check(const struct simagents_fence *f,
                          const char *id,
                          uint64_t term,
                          uint64_t ttl_ms,
                          uint64_t elapsed_ms,
                          char *message)
{
    PRE(f != NULL && id != NULL && message != NULL);
    if (term < f->highest_term) {
        rems_errmsgf(message,
                     "term %" PRIu64 " is below %" PRIu64
                     ", the highest accepted",
                     term, f->highest_term);
        return PROTO_NACK_STALE_TERM;
    }
    if (simagents_fence_has(f, id)) {
        rems_errmsgf(message, "command %s was accepted before", id);
        return PROTO_NACK_DUPLICATE;
    }
    if (ttl_ms == 0) {
        rems_errmsgf(message, "ttl_remaining_ms was 0 on receipt");
        return PROTO_NACK_EXPIRED;
    }
    if (elapsed_ms >= ttl_ms) {
        rems_errmsgf(message, "ttl of %" PRIu64 " ms spent %" PRIu64 " ms ago",
                     ttl_ms, elapsed_ms - ttl_ms);
        return PROTO_NACK_EXPIRED;
    }
    return SIMAGENTS_FENCE_ACCEPT;
}

/* Double the table (or make the first one). */
static int fence_grow(struct simagents_fence *f)
{
    struct simagents_fence g;
    size_t i;

    g.highest_term = f->highest_term;
    g.n = f->n;
    g.cap = f->cap == 0 ? 8 : f->cap * 2;
    g.slots = rems_calloc(g.cap, sizeof *g.slots);
    if (g.slots == NULL) {
        return REMS_ENOMEM;
    }
    for (i = 0; i < f->cap; i++) {
        if (f->slots[i][0] != '\0') {
            memcpy(g.slots[fence_slot(&g, f->slots[i])], f->slots[i],
                   sizeof *g.slots);
        }
    }
    rems_free(f->slots);
    *f = g;
    return 0;
}

int simagents_fence_accept(struct simagents_fence *f,
                           const char *id,
                           uint64_t term)
{
    size_t len;
    size_t i;

    PRE(f != NULL && id != NULL);
    len = strlen(id);
    PRE(len >= 1 && len <= PROTO_ID_MAX);
    /* Invariants 4 and 6: only what the check accepted. */
    REMS_ASSERT(term >= f->highest_term);
    REMS_ASSERT(!simagents_fence_has(f, id));
    /* At most half full, so probes stay short. */
    if (2 * (f->n + 1) > f->cap && fence_grow(f) != 0) {
        return REMS_ENOMEM;
    }
    i = fence_slot(f, id);
    memcpy(f->slots[i], id, len + 1);
    f->n++;
    f->highest_term = term;
    return 0;
}

void simagents_fence_forget(struct simagents_fence *f, const char *id)
{
    size_t mask;
    size_t i;
    size_t j;
    size_t home;

    PRE(f != NULL && id != NULL);
    if (!simagents_fence_has(f, id)) {
        return;
    }
    mask = f->cap - 1;
    i = fence_slot(f, id);
    f->slots[i][0] = '\0';
    f->n--;
    /* Backward-shift deletion: move up every entry of the run after @i
     * whose home slot does not lie cyclically in (i, j]. */
    j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (f->slots[j][0] == '\0') {
            break;
        }
        home = id_hash(f->slots[j]) & mask;
        if ((j > i && (home <= i || home > j)) ||
            (j < i && (home <= i && home > j))) {
            memcpy(f->slots[i], f->slots[j], sizeof *f->slots);
            f->slots[j][0] = '\0';
            i = j;
        }
    }
}

/* ------------------------------------------------------------------------
 * The checker
 * ------------------------------------------------------------------------ */

static const struct simagents_exec *sort_base;

static int by_agent_id(const void *pa, const void *pb)
{
    const struct simagents_exec *a = &sort_base[*(const size_t *)pa];
    const struct simagents_exec *b = &sort_base[*(const size_t *)pb];

    if (a->agent != b->agent) {
        return a->agent < b->agent ? -1 : 1;
    }
    return strcmp(a->id, b->id);
}

static int by_agent_seq(const void *pa, const void *pb)
{
    const struct simagents_exec *a = &sort_base[*(const size_t *)pa];
    const struct simagents_exec *b = &sort_base[*(const size_t *)pb];

    if (a->agent != b->agent) {
        return a->agent < b->agent ? -1 : 1;
    }
    return a->seq < b->seq ? -1 : a->seq > b->seq ? 1 : 0;
}

int simagents_exec_check(const struct simagents_exec *e, size_t n, char *errmsg)
{
    const struct simagents_exec *x;
    const struct simagents_exec *p;
    size_t *order;
    size_t i;
    int rv = 0;

    PRE(e != NULL || n == 0);
    PRE(errmsg != NULL);
    for (i = 0; i < n; i++) {
        x = &e[i];
        if (x->exec_mono_us >=
            x->receipt_mono_us + x->ttl_remaining_ms * 1000) {
            rems_errmsgf(errmsg,
                         "invariant 5: command %s on agent %" PRIu32
                         " executed %" PRIu64 " us after its deadline",
                         x->id, x->agent,
                         x->exec_mono_us -
                             (x->receipt_mono_us + x->ttl_remaining_ms * 1000));
            return REMS_ECONFLICT;
        }
    }
    if (n < 2) {
        return 0;
    }
    order = rems_malloc(n * sizeof *order);
    if (order == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        order[i] = i;
    }
    /* qsort has no context argument in C11: the base goes through a
     * static, so the checker runs on one thread at a time. */
    sort_base = e;
    qsort(order, n, sizeof *order, by_agent_id);
    for (i = 1; i < n && rv == 0; i++) {
        p = &e[order[i - 1]];
        x = &e[order[i]];
        if (p->agent == x->agent && strcmp(p->id, x->id) == 0) {
            rems_errmsgf(errmsg,
                         "invariant 4: command %s executed twice on agent "
                         "%" PRIu32,
                         x->id, x->agent);
            rv = REMS_ECONFLICT;
        }
    }
    if (rv == 0) {
        qsort(order, n, sizeof *order, by_agent_seq);
        for (i = 1; i < n && rv == 0; i++) {
            p = &e[order[i - 1]];
            x = &e[order[i]];
            if (p->agent == x->agent && x->term < p->term) {
                rems_errmsgf(errmsg,
                             "invariant 6: command %s of term %" PRIu64
                             " executed on agent %" PRIu32
                             " after %s of term %" PRIu64,
                             x->id, x->term, x->agent, p->id, p->term);
                rv = REMS_ECONFLICT;
            }
        }
    }
    sort_base = NULL;
    rems_free(order);
    return rv;
}

/* ------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------ */

static void on_written(struct tls_write *req, int status)
{
    /* A failed write also fails the read side: the drop happens there. */
    (void)status;
    rems_free(req->data);
}

/* Encode @m and queue it on the agent's stream. On failure the caller
 * drops the connection. */
static int send_msg(struct sim_agent *a, const struct proto_msg *m)
{
    struct simagents *sa = a->sa;
    char errmsg[REMS_ERRMSG_SIZE];
    struct sim_write *w;
    int rv;

    PRE(in_connection(a) && a->stream != NULL);
    sa->wbuf.len = 0;
    sa->wbuf.failed = false;
    rv = proto_msg_encode(m, 0, &sa->wbuf, errmsg);
    if (rv != 0) {
        log_agent(a, REMS_LOG_WARN, "sim_send_failed", errmsg);
        return rv;
    }
    w = rems_malloc(sizeof *w);
    if (w == NULL) {
        return REMS_ENOMEM;
    }
    w->req.data = w;
    rv = tls_stream_write(a->stream, &w->req, sa->wbuf.data, sa->wbuf.len,
                          on_written);
    if (rv != 0) {
        rems_free(w);
    }
    return rv;
}

/* An error frame to the node; the caller drops the connection (except for
 * unknown_type). */
static void send_error(struct sim_agent *a, int code, const char *message)
{
    struct proto_msg m = {0};
    char msg[PROTO_MESSAGE_MAX + 1];

    a->sa->stats.protocol_errors++;
    log_agent(a, REMS_LOG_WARN, "sim_protocol_error", message);
    snprintf(msg, sizeof msg, "%s", message);
    m.type = PROTO_ERROR;
    m.error.code = code;
    m.error.message = pstr(msg);
    (void)send_msg(a, &m);
}

/* ------------------------------------------------------------------------
 * Services and reports
 * ------------------------------------------------------------------------ */

/* The name of service @k of agent @a. */
static void service_name(const struct sim_agent *a, size_t k, char *out)
{
    const struct simagents *sa = a->sa;

    if (k >= sa->o.n_services) {
        snprintf(out, PROTO_SERVICE_MAX + 1, "%s",
                 a->extra_names[k - sa->o.n_services]);
        return;
    }
    snprintf(out, PROTO_SERVICE_MAX + 1, "%s-%zu", sa->service_prefix, k);
}

/* The index of service @name (@len bytes) of agent @a, or -1. */
static int service_index(const struct sim_agent *a, const char *name, size_t len)
{
    const struct simagents *sa = a->sa;
    size_t plen = strlen(sa->service_prefix);
    size_t k = 0;
    size_t i;

    for (i = sa->o.n_services; i < a->n_svcs; i++) {
        const char *x = a->extra_names[i - sa->o.n_services];
        if (strlen(x) == len && memcmp(x, name, len) == 0) {
            return (int)i;
        }
    }
    if (len < plen + 2 || memcmp(name, sa->service_prefix, plen) != 0 ||
        name[plen] != '-' || (name[plen + 1] == '0' && len > plen + 2)) {
        return -1;
    }
    for (i = plen + 1; i < len; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return -1;
        }
        k = k * 10 + (size_t)(name[i] - '0');
        if (k >= sa->o.n_services) {
            return -1;
        }
    }
    return (int)k;
}

/* Add service @name (@len bytes, a valid name not yet there) to agent @a,
 * stopped; returns its index, or -1 when the agent has
 * SIMAGENTS_MAX_SERVICES already or memory ran out. */
static int service_add(struct sim_agent *a, const char *name, size_t len)
{
    size_t n_extra = a->n_svcs - a->sa->o.n_services;
    struct sim_service *svcs;
    char(*names)[PROTO_SERVICE_MAX + 1];

    if (a->n_svcs >= SIMAGENTS_MAX_SERVICES || len > PROTO_SERVICE_MAX) {
        return -1;
    }
    if (a->n_svcs == a->cap_svcs) {
        size_t cap = a->cap_svcs == 0 ? 4 : a->cap_svcs * 2;
        if (cap > SIMAGENTS_MAX_SERVICES) {
            cap = SIMAGENTS_MAX_SERVICES;
        }
        svcs = rems_realloc(a->svcs, cap * sizeof *svcs);
        if (svcs == NULL) {
            return -1;
        }
        a->svcs = svcs;
        a->cap_svcs = cap;
    }
    names = rems_realloc(a->extra_names, (n_extra + 1) * sizeof *names);
    if (names == NULL) {
        return -1;
    }
    a->extra_names = names;
    memcpy(names[n_extra], name, len);
    names[n_extra][len] = '\0';
    memset(&a->svcs[a->n_svcs], 0, sizeof a->svcs[a->n_svcs]);
    a->svcs[a->n_svcs].state = PROTO_STATE_STOPPED;
    a->svcs[a->n_svcs].health = PROTO_HEALTH_UNKNOWN;
    return (int)a->n_svcs++;
}

static void item_to_proto(const struct sim_service *s,
                          const char *name,
                          struct proto_service *p)
{
    memset(p, 0, sizeof *p);
    p->service = pstr(name);
    p->state = s->state;
    p->generation = s->generation;
    p->health = s->health;
    p->ready = s->ready;
    p->has_exit_code = s->has_exit_code;
    p->exit_code = s->exit_code;
    p->since_ms = s->since_ms;
    if (s->state == PROTO_STATE_FAILED) {
        p->message = PROTO_STR("simulated crash");
    }
}

/* Queue the current state of service @k for the next report. While
 * disconnected the queue keeps the newest report_queue items. */
static void report_push(struct sim_agent *a, size_t k)
{
    struct simagents *sa = a->sa;
    size_t pos;

    if (a->queue == NULL) {
        a->queue = rems_calloc(sa->report_queue, sizeof *a->queue);
        if (a->queue == NULL) {
            /* The next hello carries every state anyway. */
            a->q_dropped++;
            sa->stats.reports_dropped++;
            return;
        }
    }
    if (a->q_len == sa->report_queue) {
        a->q_head = (a->q_head + 1) % sa->report_queue;
        a->q_len--;
        a->q_dropped++;
        sa->stats.reports_dropped++;
    }
    pos = (a->q_head + a->q_len) % sa->report_queue;
    a->queue[pos].service = (uint32_t)k;
    a->queue[pos].s = a->svcs[k];
    a->q_len++;
}

/* Send what the queue holds, in one report, when in a session. */
static void report_flush(struct sim_agent *a)
{
    struct simagents *sa = a->sa;
    struct proto_service items[SIMAGENTS_MAX_REPORT_QUEUE];
    char names[SIMAGENTS_MAX_REPORT_QUEUE][PROTO_SERVICE_MAX + 1];
    struct proto_msg m = {0};
    size_t n;
    size_t i;
    struct sim_item *it;

    while (a->state == AGENT_SESSION && (a->q_len > 0 || a->q_dropped > 0)) {
        n = a->q_len < REMS_ARRAY_SIZE(items) ? a->q_len
                                              : REMS_ARRAY_SIZE(items);
        for (i = 0; i < n; i++) {
            it = &a->queue[(a->q_head + i) % sa->report_queue];
            service_name(a, it->service, names[i]);
            item_to_proto(&it->s, names[i], &items[i]);
        }
        m.type = PROTO_REPORT;
        m.report.seq = ++a->report_seq;
        m.report.items = items;
        m.report.n_items = n;
        m.report.dropped = a->q_dropped;
        if (send_msg(a, &m) != 0) {
            agent_drop(a);
            return;
        }
        sa->stats.reports++;
        sa->stats.report_items += n;
        a->q_head = a->q_len == n ? 0 : (a->q_head + n) % sa->report_queue;
        a->q_len -= n;
        a->q_dropped = 0;
    }
}

/* Service @k starts (again) at @now: running; healthy and ready at once,
 * or after health_delay_ms (slow_health); with crash_after or crash_loop
 * its crash is planned @crash_in_ms from now. */
static void service_up(struct sim_agent *a,
                       size_t k,
                       uint64_t now,
                       uint64_t crash_in_ms,
                       bool new_generation)
{
    struct sim_service *s = &a->svcs[k];

    if (new_generation) {
        s->generation++;
    }
    s->state = PROTO_STATE_RUNNING;
    s->health = PROTO_HEALTH_HEALTHY;
    s->ready = true;
    s->has_exit_code = false;
    s->since_ms = rems_wall_ms();
    s->next_ms = 0;
    s->health_pending = false;
    s->up_after_stop = false;
    switch (a->beh.kind) {
        case SIMAGENTS_CRASH_LOOP:
        case SIMAGENTS_CRASH_ONCE:
            s->next_ms = now + crash_in_ms;
            break;
        case SIMAGENTS_SLOW_HEALTH:
            s->health = PROTO_HEALTH_UNKNOWN;
            s->ready = false;
            s->health_pending = true;
            s->next_ms = now + a->beh.health_delay_ms;
            break;
        default:
            break;
    }
}

/* Service @k leaves running for @state (stopped, paused, ...). */
static void service_set(struct sim_agent *a, size_t k, int state)
{
    struct sim_service *s = &a->svcs[k];

    s->state = state;
    s->ready = false;
    s->health = PROTO_HEALTH_UNKNOWN;
    s->since_ms = rems_wall_ms();
    s->next_ms = 0;
    s->health_pending = false;
    s->up_after_stop = false;
}

/* Service @k fails now with @exit_code; a crash-looping one comes back
 * after restart_ms, any other stays failed until a command starts it. */
static void service_fail(struct sim_agent *a,
                         size_t k,
                         uint64_t now,
                         int32_t exit_code)
{
    struct sim_service *s = &a->svcs[k];

    s->state = PROTO_STATE_FAILED;
    s->health = PROTO_HEALTH_UNHEALTHY;
    s->ready = false;
    s->has_exit_code = true;
    s->exit_code = exit_code;
    s->since_ms = rems_wall_ms();
    s->health_pending = false;
    s->up_after_stop = false;
    s->next_ms = a->beh.kind == SIMAGENTS_CRASH_LOOP
                     ? now + a->beh.restart_ms
                     : 0;
}

static void on_svc_timer(uv_timer_t *t);

static void svc_timer_arm(struct sim_agent *a)
{
    uint64_t now = uv_now(a->sa->loop);
    uint64_t next = 0;
    size_t k;

    for (k = 0; k < a->n_svcs; k++) {
        if (a->svcs[k].next_ms != 0 &&
            (next == 0 || a->svcs[k].next_ms < next)) {
            next = a->svcs[k].next_ms;
        }
    }
    if (next == 0) {
        uv_timer_stop(&a->svc_timer);
    } else {
        uv_timer_start(&a->svc_timer, on_svc_timer, next > now ? next - now : 0,
                       0);
    }
}

static void on_svc_timer(uv_timer_t *t)
{
    struct sim_agent *a = t->data;
    uint64_t now = uv_now(a->sa->loop);
    struct sim_service *s;
    size_t k;

    for (k = 0; k < a->n_svcs; k++) {
        s = &a->svcs[k];
        if (s->next_ms == 0 || s->next_ms > now) {
            continue;
        }
        if (s->health_pending) {
            /* slow_health: the check passes at last. */
            s->health_pending = false;
            s->health = PROTO_HEALTH_HEALTHY;
            s->ready = true;
            s->next_ms = 0;
        } else if (s->state == PROTO_STATE_STOPPING) {
            /* hung_stop: the stop ends at last. */
            if (s->up_after_stop) {
                service_up(a, k, now, a->beh.crash_after_ms, true);
            } else {
                service_set(a, k, PROTO_STATE_STOPPED);
            }
        } else if (s->state == PROTO_STATE_RUNNING) {
            service_fail(a, k, now, 1);
        } else {
            service_up(a, k, now, a->beh.crash_after_ms, true);
        }
        report_push(a, k);
    }
    svc_timer_arm(a);
    report_flush(a);
}

/* ------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------ */

static void send_nack(struct sim_agent *a,
                      const char *id,
                      uint64_t term,
                      int reason,
                      const char *message)
{
    struct simagents *sa = a->sa;
    struct proto_msg m = {0};
    char msg[PROTO_MESSAGE_MAX + 1];

    sa->stats.nacked++;
    sa->stats.nacked_by_reason[reason]++;
    snprintf(msg, sizeof msg, "%s", message);
    m.type = PROTO_NACK;
    m.nack.id = pstr(id);
    m.nack.term = term;
    m.nack.reason = reason;
    m.nack.message = pstr(msg);
    if (send_msg(a, &m) != 0) {
        agent_drop(a);
    }
}

static void send_ack(
    struct sim_agent *a, const char *id, uint64_t term, int action, int service)
{
    struct simagents *sa = a->sa;
    struct proto_msg m = {0};
    struct proto_kv kv[4];
    char name[PROTO_SERVICE_MAX + 1];
    char gen[24];
    size_t n = 0;

    kv[n].key = PROTO_STR("agent");
    kv[n++].value = pstr(a->id);
    kv[n].key = PROTO_STR("action");
    kv[n++].value = pstr(proto_action_name(action));
    if (service >= 0) {
        service_name(a, (size_t)service, name);
        snprintf(gen, sizeof gen, "%" PRIu64, a->svcs[service].generation);
        kv[n].key = PROTO_STR("service");
        kv[n++].value = pstr(name);
        kv[n].key = PROTO_STR("generation");
        kv[n++].value = pstr(gen);
    }
    sa->stats.acked++;
    m.type = PROTO_ACK;
    m.ack.id = pstr(id);
    m.ack.term = term;
    m.ack.result_kind = PROTO_RESULT_MAP;
    m.ack.result = kv;
    m.ack.n_result = n;
    if (send_msg(a, &m) != 0) {
        agent_drop(a);
    }
}

/* Whether an answer for connection @conn can still be sent. */
static bool answer_possible(struct sim_agent *a, uint64_t conn)
{
    if (a->state == AGENT_SESSION && a->conn == conn) {
        return true;
    }
    a->sa->stats.answers_lost++;
    return false;
}

/* What the action does to the services. */
static void apply_action(struct sim_agent *a, struct sim_cmd *c)
{
    uint64_t now = uv_now(a->sa->loop);
    struct sim_service *s;
    size_t k;

    if (c->action == PROTO_ACTION_PUSH_MANIFEST && c->service < 0 &&
        c->service_name[0] != '\0') {
        /* A new service: added and started, as an agent starts a pushed
         * service with autostart. */
        c->service = service_add(a, c->service_name, strlen(c->service_name));
        if (c->service < 0) {
            return;
        }
    }
    if (c->service < 0) {
        return;
    }
    k = (size_t)c->service;
    s = &a->svcs[k];
    switch (c->action) {
        case PROTO_ACTION_START:
        case PROTO_ACTION_RESUME:
            if (s->state == PROTO_STATE_RUNNING ||
                s->state == PROTO_STATE_STOPPING) {
                return;
            }
            service_up(a, k, now, a->beh.crash_after_ms,
                       c->action == PROTO_ACTION_START);
            break;
        case PROTO_ACTION_RESTART:
        case PROTO_ACTION_PUSH_MANIFEST:
            /* A new revision starts as a new generation. */
            if (a->beh.kind == SIMAGENTS_HUNG_STOP &&
                s->state == PROTO_STATE_RUNNING) {
                service_set(a, k, PROTO_STATE_STOPPING);
                s->up_after_stop = true;
                s->next_ms = now + a->beh.stop_hang_ms;
            } else {
                service_up(a, k, now, a->beh.crash_after_ms, true);
            }
            break;
        case PROTO_ACTION_STOP:
            if (a->beh.kind == SIMAGENTS_HUNG_STOP &&
                s->state == PROTO_STATE_RUNNING) {
                service_set(a, k, PROTO_STATE_STOPPING);
                s->next_ms = now + a->beh.stop_hang_ms;
            } else {
                service_set(a, k, PROTO_STATE_STOPPED);
            }
            break;
        case PROTO_ACTION_PAUSE:
            service_set(a, k, PROTO_STATE_PAUSED);
            break;
        case PROTO_ACTION_QUARANTINE:
            service_set(a, k, PROTO_STATE_QUARANTINED);
            break;
        default:
            return; /* diagnostics: nothing changes. */
    }
    report_push(a, k);
    svc_timer_arm(a);
}

/* Execute command @c now unless its deadline has passed (then forget its
 * id and answer expired). Returns true when it executed. */
static bool execute(struct sim_agent *a, struct sim_cmd *c)
{
    struct simagents *sa = a->sa;
    struct simagents_exec *x;
    struct simagents_exec rec;
    char msg[REMS_ERRMSG_SIZE];
    uint64_t now = mono_us();
    uint64_t deadline = c->receipt_mono_us + c->ttl_ms * 1000;
    void *p;

    if (now >= deadline) {
        /* Invariant 5. It did not run: a resend must not count as a
         * duplicate, which the leader records as executed. */
        simagents_fence_forget(&a->fence, c->id);
        if (answer_possible(a, c->conn)) {
            rems_errmsgf(msg,
                         "ttl of %" PRIu64 " ms spent %" PRIu64
                         " us ago, before it could begin",
                         c->ttl_ms, now - deadline);
            send_nack(a, c->id, c->term, PROTO_NACK_EXPIRED, msg);
        } else {
            sa->stats.nacked_by_reason[PROTO_NACK_EXPIRED]++;
        }
        return false;
    }
    memset(&rec, 0, sizeof rec);
    memcpy(rec.id, c->id, sizeof rec.id);
    rec.agent = a->index;
    rec.seq = c->seq;
    rec.term = c->term;
    rec.action = c->action;
    rec.ttl_remaining_ms = c->ttl_ms;
    rec.receipt_mono_us = c->receipt_mono_us;
    rec.receipt_wall_ms = c->receipt_wall_ms;
    rec.exec_mono_us = now;
    rec.exec_wall_ms = rems_wall_ms();
    x = &rec;
    if (sa->o.record_execs) {
        if (sa->n_execs == sa->cap_execs) {
            size_t cap = sa->cap_execs == 0 ? 1024 : 2 * sa->cap_execs;
            p = rems_realloc(sa->execs, cap * sizeof *sa->execs);
            if (p == NULL) {
                /* The record is what the checker relies on: not running
                 * the command is the only safe answer. */
                simagents_fence_forget(&a->fence, c->id);
                if (answer_possible(a, c->conn)) {
                    send_nack(a, c->id, c->term, PROTO_NACK_FAILED,
                              "out of memory");
                }
                return false;
            }
            sa->execs = p;
            sa->cap_execs = cap;
        }
        x = &sa->execs[sa->n_execs++];
        *x = rec;
    }
    sa->stats.executed++;
    a->executed++;
    apply_action(a, c);
    if (sa->o.event_cb != NULL) {
        sa->o.event_cb(sa, a->index, SIMAGENTS_EVENT_EXEC, x);
    }
    report_flush(a);
    return true;
}

static void close_done(struct simagents *sa);

static void on_cmd_closed(uv_handle_t *h)
{
    struct sim_cmd *c = h->data;
    struct simagents *sa = c->a->sa;

    rems_free(c);
    REMS_ASSERT(sa->cmds_closing > 0);
    sa->cmds_closing--;
    if (sa->stopping) {
        close_done(sa);
    }
}

/* The command is done: its timer closes, then it is freed. Closes still
 * running when simagents_stop() begins are counted by it. */
static void cmd_done(struct sim_cmd *c)
{
    REMS_QUEUE_REMOVE(&c->queue);
    c->a->sa->cmds_closing++;
    uv_close((uv_handle_t *)&c->timer, on_cmd_closed);
}

static void on_cmd_timer(uv_timer_t *t)
{
    struct sim_cmd *c = t->data;
    struct sim_agent *a = c->a;

    if (!c->executed) {
        if (!execute(a, c)) {
            cmd_done(c);
            return;
        }
        c->executed = true;
        if (c->ack_delay_ms > 0) {
            uv_timer_start(&c->timer, on_cmd_timer, c->ack_delay_ms, 0);
            return;
        }
    }
    if (answer_possible(a, c->conn)) {
        send_ack(a, c->id, c->term, c->action, c->service);
    }
    cmd_done(c);
}

static bool action_has_service(int action)
{
    return action >= PROTO_ACTION_START && action <= PROTO_ACTION_QUARANTINE;
}

static void on_command(struct sim_agent *a, const struct proto_command *pc)
{
    struct simagents *sa = a->sa;
    struct sim_cmd local;
    struct sim_cmd *c;
    char msg[REMS_ERRMSG_SIZE];
    int verdict;
    int service = -1;

    sa->stats.commands++;
    memset(&local, 0, sizeof local);
    local.receipt_mono_us = mono_us();
    local.receipt_wall_ms = rems_wall_ms();
    /* The decoder checked the length. */
    memcpy(local.id, pc->id.p, pc->id.len);
    local.id[pc->id.len] = '\0';
    local.term = pc->term;
    local.action = pc->action;
    local.ttl_ms = pc->ttl_remaining_ms;
    local.conn = a->conn;

    verdict = simagents_fence_check(&a->fence, local.id, pc->term,
                                    pc->ttl_remaining_ms, 0, msg);
    if (verdict != SIMAGENTS_FENCE_ACCEPT) {
        send_nack(a, local.id, pc->term, verdict, msg);
        return;
    }
    if (pc->action == PROTO_ACTION_UNKNOWN) {
        rems_errmsgf(msg, "action \"%.*s\" is unknown to agent version %s",
                     (int)pc->action_name.len, pc->action_name.p,
                     SIMAGENTS_AGENT_VERSION);
        send_nack(a, local.id, pc->term, PROTO_NACK_UNKNOWN_ACTION, msg);
        return;
    }
    if (pc->service.len > 0) {
        service = service_index(a, pc->service.p, pc->service.len);
    }
    if (pc->action == PROTO_ACTION_PUSH_MANIFEST && service < 0 &&
        pc->service.len > 0) {
        /* A service the agent does not run yet: the push adds it. */
        if (a->n_svcs >= SIMAGENTS_MAX_SERVICES) {
            rems_errmsgf(msg, "cannot add service \"%.*s\": this agent "
                              "runs %u services, the most it can",
                         (int)pc->service.len, pc->service.p,
                         SIMAGENTS_MAX_SERVICES);
            send_nack(a, local.id, pc->term, PROTO_NACK_FAILED, msg);
            return;
        }
        memcpy(local.service_name, pc->service.p, pc->service.len);
        local.service_name[pc->service.len] = '\0';
    } else if ((action_has_service(pc->action) || pc->service.len > 0) &&
               service < 0) {
        rems_errmsgf(msg, "no service \"%.*s\" on this agent",
                     (int)pc->service.len, pc->service.p);
        send_nack(a, local.id, pc->term, PROTO_NACK_UNKNOWN_SERVICE, msg);
        return;
    }
    local.service = service;
    if (simagents_fence_accept(&a->fence, local.id, pc->term) != 0) {
        send_nack(a, local.id, pc->term, PROTO_NACK_FAILED, "out of memory");
        return;
    }
    local.seq = ++sa->seq;
    local.a = a;
    /* A hung stop answers when the stop has ended. */
    local.ack_delay_ms = sa->o.ack_delay_ms;
    if (a->beh.kind == SIMAGENTS_HUNG_STOP &&
        (pc->action == PROTO_ACTION_STOP ||
         pc->action == PROTO_ACTION_RESTART ||
         (pc->action == PROTO_ACTION_PUSH_MANIFEST && service >= 0))) {
        local.ack_delay_ms += a->beh.stop_hang_ms;
    }
    if (sa->o.exec_delay_ms == 0 && local.ack_delay_ms == 0) {
        if (execute(a, &local) && answer_possible(a, local.conn)) {
            send_ack(a, local.id, local.term, local.action, local.service);
        }
        return;
    }
    c = rems_malloc(sizeof *c);
    if (c == NULL) {
        simagents_fence_forget(&a->fence, local.id);
        send_nack(a, local.id, pc->term, PROTO_NACK_FAILED, "out of memory");
        return;
    }
    *c = local;
    uv_timer_init(sa->loop, &c->timer);
    c->timer.data = c;
    REMS_QUEUE_PUSH(&a->cmds, &c->queue);
    if (sa->o.exec_delay_ms == 0) {
        if (!execute(a, c)) {
            cmd_done(c);
            return;
        }
        c->executed = true;
        uv_timer_start(&c->timer, on_cmd_timer, c->ack_delay_ms, 0);
    } else {
        uv_timer_start(&c->timer, on_cmd_timer, sa->o.exec_delay_ms, 0);
    }
}

/* ------------------------------------------------------------------------
 * The session
 * ------------------------------------------------------------------------ */

static void on_heartbeat_timer(uv_timer_t *t)
{
    struct sim_agent *a = t->data;
    struct simagents *sa = a->sa;
    struct proto_msg m = {0};
    uint64_t now = now_ms(sa);

    PRE(a->state == AGENT_SESSION);
    if (a->n_hb_out > 0 && now - a->hb_out_ms[0] >= a->hb_timeout_ms) {
        sa->stats.heartbeat_timeouts++;
        log_agent(a, REMS_LOG_DEBUG, "sim_heartbeat_timeout", NULL);
        agent_drop(a);
        return;
    }
    a->hb_seq++;
    if (a->n_hb_out < SIM_HB_OUTSTANDING) {
        a->hb_out_seq[a->n_hb_out] = a->hb_seq;
        a->hb_out_ms[a->n_hb_out] = now;
        a->n_hb_out++;
    }
    m.type = PROTO_HEARTBEAT;
    m.heartbeat.seq = a->hb_seq;
    if (send_msg(a, &m) != 0) {
        agent_drop(a);
        return;
    }
    sa->stats.heartbeats++;
}

static void on_heartbeat_ack(struct sim_agent *a,
                             const struct proto_heartbeat_ack *h)
{
    size_t k = 0;

    while (k < a->n_hb_out && a->hb_out_seq[k] <= h->seq) {
        k++;
    }
    memmove(&a->hb_out_seq[0], &a->hb_out_seq[k],
            (a->n_hb_out - k) * sizeof a->hb_out_seq[0]);
    memmove(&a->hb_out_ms[0], &a->hb_out_ms[k],
            (a->n_hb_out - k) * sizeof a->hb_out_ms[0]);
    a->n_hb_out -= k;
    a->term = h->term;
    a->sa->stats.heartbeat_acks++;
}

static void on_welcome(struct sim_agent *a, const struct proto_welcome *w)
{
    struct simagents *sa = a->sa;
    uint64_t interval = w->heartbeat_interval_ms;
    uint64_t now = mono_us();

    sm_move(a, AGENT_SESSION);
    if (sa->o.heartbeat_ms != 0 && sa->o.heartbeat_ms < w->lease_ttl_ms) {
        interval = sa->o.heartbeat_ms;
    }
    a->node_id = w->node_id;
    a->term = w->term;
    a->hb_timeout_ms =
        3 * interval < w->lease_ttl_ms ? 3 * interval : w->lease_ttl_ms;
    a->hb_seq = 0;
    a->n_hb_out = 0;
    a->redirects = 0;
    a->round = 0;
    a->failures = 0;
    a->sessions++;
    if (a->connect_us < 0) {
        a->connect_us = (int64_t)(now - a->start_us);
        sa->stats.ever_connected++;
    }
    if (a->lost_us != 0) {
        a->reconnect_us = (int64_t)(now - a->lost_us);
        a->lost_us = 0;
    }
    sa->stats.sessions++;
    sa->stats.connected++;
    log_agent(a, REMS_LOG_DEBUG, "sim_welcomed", NULL);
    uv_timer_start(&a->timer, on_heartbeat_timer, interval, interval);
    if (sa->o.event_cb != NULL) {
        sa->o.event_cb(sa, a->index, SIMAGENTS_EVENT_SESSION_UP, NULL);
    }
    if (a->state == AGENT_SESSION) {
        report_flush(a);
    }
}

static void on_redirect(struct sim_agent *a, const struct proto_redirect *r)
{
    struct simagents *sa = a->sa;
    int to = -1;

    sa->stats.redirects++;
    a->n_redirects++;
    if (r->leader_address.len > 0 && a->redirects < SIM_MAX_REDIRECTS) {
        to = endpoint_lookup(sa, r->leader_address.p, r->leader_address.len);
    }
    a->redirect_delay_ms = r->retry_after_ms < sa->reconnect_max_ms
                               ? r->retry_after_ms
                               : sa->reconnect_max_ms;
    if (to >= 0) {
        a->have_redirect = true;
        a->redirect_to = (unsigned)to;
        a->redirects++;
    }
    a->redirected = true; /* Not a failure. */
    agent_drop(a);
}

static void on_node_error(struct sim_agent *a, const struct proto_error *e)
{
    char msg[PROTO_MESSAGE_MAX + 64];

    a->sa->stats.node_errors++;
    snprintf(msg, sizeof msg, "%s: %.*s", proto_error_code_name(e->code),
             (int)e->message.len, e->message.p);
    log_agent(a, REMS_LOG_DEBUG, "sim_node_error", msg);
    if (e->code != PROTO_ERR_UNKNOWN_TYPE) {
        agent_drop(a);
    }
}

static void handle_msg(struct sim_agent *a, const struct proto_msg *m)
{
    char msg[REMS_ERRMSG_SIZE];

    switch (m->type) {
        case PROTO_WELCOME:
            if (a->state == AGENT_HELLO) {
                on_welcome(a, &m->welcome);
                return;
            }
            break;
        case PROTO_REDIRECT:
            on_redirect(a, &m->redirect);
            return;
        case PROTO_ERROR:
            on_node_error(a, &m->error);
            return;
        case PROTO_HEARTBEAT_ACK:
            if (a->state == AGENT_SESSION) {
                on_heartbeat_ack(a, &m->heartbeat_ack);
                return;
            }
            break;
        case PROTO_COMMAND:
            if (a->state == AGENT_SESSION) {
                on_command(a, &m->command);
                return;
            }
            break;
        default:
            break;
    }
    rems_errmsgf(msg, "%s: not expected %s", proto_type_name(m->type),
                 a->state == AGENT_HELLO ? "before welcome" : "from a node");
    send_error(a, PROTO_ERR_MALFORMED, msg);
    agent_drop(a);
}

static void handle_frame(struct sim_agent *a, const void *frame, size_t len)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct proto_msg m;
    int rv;

    rv = proto_msg_decode(frame, len, &m, errmsg);
    if (rv == REMS_EUNSUPPORTED && m.type == PROTO_TYPE_NONE) {
        /* A newer node's message: said, and ignored. */
        send_error(a, PROTO_ERR_UNKNOWN_TYPE, errmsg);
        return;
    }
    if (rv != 0) {
        send_error(a, proto_error_code_for(rv, m.type), errmsg);
        agent_drop(a);
        return;
    }
    handle_msg(a, &m);
    proto_msg_close(&m);
}

/* ------------------------------------------------------------------------
 * The connection
 * ------------------------------------------------------------------------ */

static void
on_read(struct tls_stream *s, int status, const char *data, size_t len)
{
    struct sim_agent *a = tls_stream_data(s);
    char errmsg[REMS_ERRMSG_SIZE];
    const void *frame;
    size_t flen;
    int rv;

    PRE(in_connection(a));
    if (status != 0 || len == 0) {
        log_agent(a, REMS_LOG_DEBUG, "sim_disconnected",
                  status != 0 ? tls_stream_errmsg(s)
                              : "the node closed the connection");
        agent_drop(a);
        return;
    }
    proto_reader_feed(&a->reader, data, len);
    for (;;) {
        rv = proto_reader_next(&a->reader, &frame, &flen, errmsg);
        if (rv != 0) {
            send_error(a, proto_error_code_for(rv, PROTO_TYPE_NONE), errmsg);
            agent_drop(a);
            return;
        }
        if (frame == NULL) {
            return;
        }
        handle_frame(a, frame, flen);
        if (!in_connection(a)) {
            return; /* Closing: the rest of the chunk is not read. */
        }
    }
}

static void send_hello(struct sim_agent *a)
{
    struct simagents *sa = a->sa;
    struct proto_service items[SIMAGENTS_MAX_SERVICES];
    char names[SIMAGENTS_MAX_SERVICES][PROTO_SERVICE_MAX + 1];
    struct proto_msg m = {0};
    char zone[24];
    size_t n_labels = sa->o.n_labels;
    size_t k;

    if (sa->o.zones > 0) {
        snprintf(zone, sizeof zone, "z%" PRIu64,
                 (uint64_t)a->index % sa->o.zones);
        sa->labels[n_labels].key = PROTO_STR("zone");
        sa->labels[n_labels].value = pstr(zone);
        n_labels++;
    }
    for (k = 0; k < a->n_svcs; k++) {
        service_name(a, k, names[k]);
        item_to_proto(&a->svcs[k], names[k], &items[k]);
    }
    m.type = PROTO_HELLO;
    m.hello.version = PROTO_VERSION;
    m.hello.agent_id = pstr(a->id);
    m.hello.labels = sa->labels;
    m.hello.n_labels = n_labels;
    m.hello.highest_term = a->fence.highest_term;
    m.hello.agent_version = PROTO_STR(SIMAGENTS_AGENT_VERSION);
    m.hello.has_services = true;
    m.hello.services = items;
    m.hello.n_services = a->n_svcs;
    /* The hello carries every state: what waited in the queue is older. */
    a->q_head = 0;
    a->q_len = 0;
    a->q_dropped = 0;
    if (send_msg(a, &m) != 0) {
        agent_drop(a);
    }
}

static void on_handshake(struct tls_stream *s, int status)
{
    struct sim_agent *a = tls_stream_data(s);
    struct tls_session *session;
    char errmsg[REMS_ERRMSG_SIZE];

    if (a->state != AGENT_HANDSHAKE) {
        return; /* REMS_ECANCELED: the stream is being closed. */
    }
    if (status != 0) {
        a->sa->stats.tls_failures++;
        log_agent(a, REMS_LOG_DEBUG, "sim_tls_failed", tls_stream_errmsg(s));
        agent_drop(a);
        return;
    }
    if (a->sa->o.resume && tls_stream_session_get(s, &session, errmsg) == 0) {
        tls_session_free(a->session);
        a->session = session;
    }
    sm_move(a, AGENT_HELLO);
    send_hello(a);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct sim_agent *a = req->data;
    char errmsg[REMS_ERRMSG_SIZE];

    if (a->state != AGENT_CONNECTING) {
        return; /* UV_ECANCELED: the stream is being closed. */
    }
    if (status == 0 && tls_stream_start(a->stream, errmsg) == 0) {
        sm_move(a, AGENT_HANDSHAKE);
        return;
    }
    log_agent(a, REMS_LOG_DEBUG, "sim_connect_failed",
              status != 0 ? uv_strerror(status) : errmsg);
    agent_drop(a);
}

static void on_phase_timeout(uv_timer_t *t)
{
    struct sim_agent *a = t->data;

    a->sa->stats.timeouts++;
    log_agent(a, REMS_LOG_DEBUG, "sim_connect_timeout", NULL);
    agent_drop(a);
}

/* Begin an attempt on a->target. */
static void on_retry(uv_timer_t *t)
{
    struct sim_agent *a = t->data;
    struct simagents *sa = a->sa;
    const struct sim_endpoint *ep = &sa->eps[a->target];
    struct tls_stream_options o = {0};
    char errmsg[REMS_ERRMSG_SIZE];
    int rv;

    PRE(a->state == AGENT_WAITING);
    sm_move(a, AGENT_CONNECTING);
    sa->stats.attempts++;
    a->attempts++;
    o.server_name = sa->server_name != NULL ? sa->server_name : ep->host;
    o.session = a->session;
    o.close_linger_ms = sa->o.close_linger_ms;
    o.handshake_cb = on_handshake;
    o.read_cb = on_read;
    o.data = a;
    rv = tls_stream_open(sa->loop, a->tls, &o, &a->stream, errmsg);
    if (rv != 0) {
        log_agent(a, REMS_LOG_WARN, "sim_connect_failed", errmsg);
        sa->stats.connect_failures++;
        a->had_session = false;
        sm_move(a, AGENT_WAITING);
        plan_next(a);
        return;
    }
    a->conn++;
    uv_timer_start(&a->timer, on_phase_timeout, sa->connect_timeout_ms, 0);
    if (sa->o.tcp_nodelay) {
        (void)uv_tcp_nodelay(tls_stream_tcp(a->stream), 1);
    }
    a->connect_req.data = a;
    rv = uv_tcp_connect(&a->connect_req, tls_stream_tcp(a->stream),
                        (const struct sockaddr *)&ep->addr, on_connect);
    if (rv != 0) {
        log_agent(a, REMS_LOG_DEBUG, "sim_connect_failed", uv_strerror(rv));
        agent_drop(a);
    }
}

/* Choose the next target and when to try it; start the timer. */
static void plan_next(struct sim_agent *a)
{
    struct simagents *sa = a->sa;
    uint64_t delay = 0;
    uint64_t backoff;
    unsigned shift;

    PRE(a->state == AGENT_WAITING);
    if (a->have_redirect) {
        a->have_redirect = false;
        a->target = a->redirect_to;
        delay = a->redirect_delay_ms;
    } else if (a->had_session) {
        /* Back to the node that was the leader, after a short while. */
        a->round = 0;
        a->failures = 0;
        delay = jitter(sa, sa->reconnect_initial_ms);
    } else {
        a->failures++;
        delay = a->redirect_delay_ms;
        if (a->failures >= sa->n_configured) {
            a->failures = 0;
            shift = a->round < SIM_BACKOFF_SHIFT_MAX ? a->round
                                                     : SIM_BACKOFF_SHIFT_MAX;
            backoff = (uint64_t)sa->reconnect_initial_ms << shift;
            if (backoff > sa->reconnect_max_ms) {
                backoff = sa->reconnect_max_ms;
            }
            backoff = jitter(sa, backoff);
            delay = delay > backoff ? delay : backoff;
            a->round++;
        }
        a->target = a->next_endpoint;
        a->next_endpoint = (a->next_endpoint + 1) % sa->n_configured;
    }
    a->redirect_delay_ms = 0;
    a->had_session = false;
    uv_timer_start(&a->timer, on_retry, delay, 0);
}

static void close_done(struct simagents *sa)
{
    REMS_ASSERT(sa->closes > 0);
    if (--sa->closes == 0 && sa->stop_cb != NULL) {
        sa->stop_cb(sa);
    }
}

static void on_stream_closed(struct tls_stream *s)
{
    struct sim_agent *a = tls_stream_data(s);

    a->stream = NULL;
    proto_reader_close(&a->reader);
    proto_reader_init(&a->reader, 0);
    if (a->state == AGENT_STOPPED) {
        close_done(a->sa);
        return;
    }
    sm_move(a, AGENT_WAITING);
    plan_next(a);
}

/* Close the connection, whatever its step, and plan the next attempt once
 * it is closed. */
static void agent_drop(struct sim_agent *a)
{
    struct simagents *sa = a->sa;

    PRE(a->state == AGENT_CONNECTING || a->state == AGENT_HANDSHAKE ||
        in_connection(a));
    a->had_session = a->state == AGENT_SESSION;
    if (a->had_session) {
        sa->stats.sessions_lost++;
        REMS_ASSERT(sa->stats.connected > 0);
        sa->stats.connected--;
        a->lost_us = mono_us();
    } else if (!a->redirected) {
        sa->stats.connect_failures++;
    }
    a->redirected = false;
    uv_timer_stop(&a->timer);
    sm_move(a, AGENT_CLOSING);
    tls_stream_close(a->stream, on_stream_closed);
    if (a->had_session && sa->o.event_cb != NULL) {
        sa->o.event_cb(sa, a->index, SIMAGENTS_EVENT_SESSION_DOWN, NULL);
    }
}

/* ------------------------------------------------------------------------
 * The ramp
 * ------------------------------------------------------------------------ */

static void agent_start(struct sim_agent *a)
{
    struct simagents *sa = a->sa;
    uint64_t now = uv_now(sa->loop);
    size_t k;

    a->started = true;
    a->start_us = mono_us();
    for (k = 0; k < a->n_svcs; k++) {
        /* The first crash is spread so that agents do not crash in step. */
        service_up(a, k, now,
                   a->beh.crash_after_ms / 2 +
                       rand_u64(sa) % (a->beh.crash_after_ms / 2 + 1),
                   true);
    }
    svc_timer_arm(a);
    a->target = (unsigned)(rand_u64(sa) % sa->n_configured);
    a->next_endpoint = (a->target + 1) % sa->n_configured;
    sm_move(a, AGENT_WAITING);
    sa->stats.started++;
    uv_timer_start(&a->timer, on_retry, 0, 0);
}

static void on_ramp(uv_timer_t *t)
{
    struct simagents *sa = t->data;
    uint64_t due = sa->n_agents;
    double elapsed_s;

    if (sa->o.ramp_per_s > 0) {
        elapsed_s = (double)(uv_now(sa->loop) - sa->ramp_t0) / 1000.0;
        due = (uint64_t)(elapsed_s * sa->o.ramp_per_s) + 1;
        if (due > sa->n_agents) {
            due = sa->n_agents;
        }
    }
    while (sa->n_started < due) {
        agent_start(&sa->agents[sa->n_started++]);
    }
    if (sa->n_started == sa->n_agents) {
        uv_timer_stop(&sa->ramp);
    }
}

/* ------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------ */

/* Check one behaviour share; @where names it in @errmsg. */
static int share_check(const struct simagents_share *b,
                       const char *where,
                       char *errmsg)
{
    if ((unsigned)b->behaviour >= SIMAGENTS_BEHAVIOUR_NR) {
        rems_errmsgf(errmsg, "%s: unknown behaviour %d", where,
                     (int)b->behaviour);
        return REMS_EINVAL;
    }
    if (!(b->fraction > 0 && b->fraction <= 1)) {
        rems_errmsgf(errmsg, "%s.fraction: must be in (0, 1]", where);
        return REMS_EINVAL;
    }
    if ((b->behaviour == SIMAGENTS_CRASH_LOOP ||
         b->behaviour == SIMAGENTS_CRASH_ONCE) &&
        b->crash_after_ms == 0) {
        rems_errmsgf(errmsg, "%s.crash_after_ms: required by crash_after "
                             "and crash_loop",
                     where);
        return REMS_EINVAL;
    }
    if (b->behaviour == SIMAGENTS_SLOW_HEALTH && b->health_delay_ms == 0) {
        rems_errmsgf(errmsg, "%s.health_delay_ms: required by slow_health",
                     where);
        return REMS_EINVAL;
    }
    if (b->behaviour == SIMAGENTS_HUNG_STOP && b->stop_hang_ms == 0) {
        rems_errmsgf(errmsg, "%s.stop_hang_ms: required by hung_stop", where);
        return REMS_EINVAL;
    }
    return 0;
}

/* The behaviour of agent @i: the share that a hash of the seed and @i
 * falls in (the shares cover consecutive parts of [0, 1) in their order;
 * the rest is the default behaviour of the options). */
static void agent_behaviour(const struct simagents *sa,
                            size_t i,
                            struct sim_beh *out)
{
    const struct simagents_options *o = &sa->o;
    const struct simagents_share *b = NULL;
    uint64_t z = sa->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(i + 1));
    double u;
    double acc = 0;
    size_t k;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    u = (double)(z >> 11) / 9007199254740992.0; /* [0, 1) */
    for (k = 0; k < o->n_shares; k++) {
        acc += o->shares[k].fraction;
        if (u < acc) {
            b = &o->shares[k];
            break;
        }
    }
    memset(out, 0, sizeof *out);
    if (b != NULL) {
        out->kind = (uint8_t)b->behaviour;
        out->crash_after_ms = b->crash_after_ms;
        out->restart_ms = b->restart_ms;
        out->health_delay_ms = b->health_delay_ms;
        out->stop_hang_ms = b->stop_hang_ms;
    } else {
        out->kind = (uint8_t)o->behaviour;
        out->crash_after_ms = o->crash_after_ms;
        out->restart_ms = o->restart_ms;
        out->health_delay_ms = o->health_delay_ms;
        out->stop_hang_ms = o->stop_hang_ms;
    }
    if (out->restart_ms == 0) {
        out->restart_ms = SIMAGENTS_DEFAULT_RESTART_MS;
    }
}

static int check_options(const struct simagents_options *o, char *errmsg)
{
    char id[PROTO_ID_MAX + 32];
    const char *prefix = o->prefix != NULL && o->prefix[0] != '\0'
                             ? o->prefix
                             : SIMAGENTS_DEFAULT_PREFIX;
    const char *sprefix =
        o->service_prefix != NULL && o->service_prefix[0] != '\0'
            ? o->service_prefix
            : SIMAGENTS_DEFAULT_SERVICE_PREFIX;
    uint64_t first = o->first_index != 0 ? o->first_index : 1;
    struct sim_endpoint ep;
    size_t i;

    if (o->n_agents == 0 || o->n_agents > SIMAGENTS_MAX_AGENTS) {
        rems_errmsgf(errmsg, "n_agents: %zu, must be 1..%u", o->n_agents,
                     SIMAGENTS_MAX_AGENTS);
        return REMS_EINVAL;
    }
    snprintf(id, sizeof id, "%s-%" PRIu64, prefix,
             first + (uint64_t)o->n_agents - 1);
    if (strlen(prefix) > PROTO_ID_MAX || !rems_id_valid(id)) {
        rems_errmsgf(errmsg,
                     "prefix: \"%.64s\" makes ids such as \"%.64s\" that are "
                     "not valid (1..64 of [A-Za-z0-9_.:-])",
                     prefix, id);
        return REMS_EINVAL;
    }
    if (o->n_endpoints == 0 || o->n_endpoints > SIMAGENTS_MAX_ENDPOINTS ||
        o->endpoints == NULL) {
        rems_errmsgf(errmsg, "endpoints: %zu given, 1..%u needed",
                     o->n_endpoints, SIMAGENTS_MAX_ENDPOINTS);
        return REMS_EINVAL;
    }
    for (i = 0; i < o->n_endpoints; i++) {
        if (o->endpoints[i] == NULL ||
            endpoint_parse(o->endpoints[i], strlen(o->endpoints[i]), &ep) !=
                0) {
            rems_errmsgf(errmsg,
                         "endpoints[%zu]: must be host:port with an IPv4 "
                         "address or an IPv6 address in brackets",
                         i);
            return REMS_EINVAL;
        }
    }
    if (o->ca_cert == NULL || o->ca_key == NULL) {
        rems_errmsgf(errmsg, "ca_cert, ca_key: required");
        return REMS_EINVAL;
    }
    if (o->n_labels >= PROTO_LABELS_MAX || (o->n_labels > 0 && !o->labels)) {
        rems_errmsgf(errmsg, "labels: at most %d", PROTO_LABELS_MAX - 1);
        return REMS_EINVAL;
    }
    for (i = 0; i < o->n_labels; i++) {
        if (o->labels[i].key.len == 0 ||
            o->labels[i].key.len > PROTO_LABEL_KEY_MAX ||
            o->labels[i].value.len > PROTO_LABEL_VALUE_MAX ||
            (o->zones > 0 && o->labels[i].key.len == 4 &&
             memcmp(o->labels[i].key.p, "zone", 4) == 0)) {
            rems_errmsgf(errmsg,
                         "labels[%zu]: key 1..%d bytes (not \"zone\" with "
                         "zones), value at most %d bytes",
                         i, PROTO_LABEL_KEY_MAX, PROTO_LABEL_VALUE_MAX);
            return REMS_EINVAL;
        }
    }
    if (o->n_services > SIMAGENTS_MAX_SERVICES ||
        strlen(sprefix) + 4 > PROTO_SERVICE_MAX) {
        rems_errmsgf(errmsg, "services: at most %u, prefix at most %d bytes",
                     SIMAGENTS_MAX_SERVICES, PROTO_SERVICE_MAX - 4);
        return REMS_EINVAL;
    }
    for (i = 0; sprefix[i] != '\0'; i++) {
        char c = sprefix[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
              c == '@' || c == '-')) {
            rems_errmsgf(errmsg, "service_prefix: [A-Za-z0-9_.:@-] only");
            return REMS_EINVAL;
        }
    }
    {
        struct simagents_share all = {o->behaviour, 1.0, o->crash_after_ms,
                                      o->restart_ms, o->health_delay_ms,
                                      o->stop_hang_ms};
        double sum = 0;
        size_t k;
        if (o->n_shares > SIMAGENTS_MAX_SHARES ||
            (o->n_shares > 0 && o->shares == NULL)) {
            rems_errmsgf(errmsg, "shares: at most %u",
                         SIMAGENTS_MAX_SHARES);
            return REMS_EINVAL;
        }
        if (share_check(&all, "behaviour", errmsg) != 0) {
            return REMS_EINVAL;
        }
        for (k = 0; k < o->n_shares; k++) {
            char where[32];
            snprintf(where, sizeof where, "shares[%zu]", k);
            if (share_check(&o->shares[k], where, errmsg) != 0) {
                return REMS_EINVAL;
            }
            sum += o->shares[k].fraction;
        }
        if (sum > 1.0 + 1e-9) {
            rems_errmsgf(errmsg, "shares: the fractions add up to %.3f, "
                                 "more than 1",
                         sum);
            return REMS_EINVAL;
        }
    }
    if (o->report_queue > SIMAGENTS_MAX_REPORT_QUEUE || o->ramp_per_s < 0) {
        rems_errmsgf(errmsg, "report_queue: at most %u; ramp_per_s: >= 0",
                     SIMAGENTS_MAX_REPORT_QUEUE);
        return REMS_EINVAL;
    }
    if (o->server_name != NULL && strlen(o->server_name) > 253) {
        rems_errmsgf(errmsg, "server_name: at most 253 bytes");
        return REMS_EINVAL;
    }
    return 0;
}

/* Copy the labels (keys and values) into one block. */
static int copy_labels(struct simagents *sa, const struct simagents_options *o)
{
    size_t total = 1;
    size_t i;
    char *p;

    for (i = 0; i < o->n_labels; i++) {
        total += o->labels[i].key.len + o->labels[i].value.len + 2;
    }
    sa->labels = rems_calloc(o->n_labels + 1, sizeof *sa->labels);
    sa->label_text = rems_malloc(total);
    if (sa->labels == NULL || sa->label_text == NULL) {
        return REMS_ENOMEM;
    }
    p = sa->label_text;
    for (i = 0; i < o->n_labels; i++) {
        memcpy(p, o->labels[i].key.p, o->labels[i].key.len);
        sa->labels[i].key.p = p;
        sa->labels[i].key.len = o->labels[i].key.len;
        p += o->labels[i].key.len;
        *p++ = '\0';
        memcpy(p, o->labels[i].value.p, o->labels[i].value.len);
        sa->labels[i].value.p = p;
        sa->labels[i].value.len = o->labels[i].value.len;
        p += o->labels[i].value.len;
        *p++ = '\0';
    }
    return 0;
}

/* Paths of agent @a's files. */
static void agent_paths(const struct simagents *sa,
                        const struct sim_agent *a,
                        char *cert,
                        char *key,
                        size_t size)
{
    snprintf(cert, size, "%s/%s.pem", sa->cert_dir, a->id);
    snprintf(key, size, "%s/%s.key", sa->cert_dir, a->id);
}

/* Remove the agents' files (the first @n) and, when made here, the
 * directory. */
static void remove_certs(struct simagents *sa, size_t n)
{
    char cert[640];
    char key[640];
    size_t i;

    for (i = 0; i < n; i++) {
        agent_paths(sa, &sa->agents[i], cert, key, sizeof cert);
        (void)unlink(cert);
        (void)unlink(key);
    }
    if (sa->own_cert_dir) {
        (void)rmdir(sa->cert_dir);
    }
}

/* Release what simagents_open() made, for the first @n_ctx agents'
 * contexts and the first @n_files agents' files. */
static void release(struct simagents *sa, size_t n_ctx, size_t n_files)
{
    size_t i;

    for (i = 0; i < n_ctx; i++) {
        tls_context_close(sa->agents[i].tls);
    }
    if (sa->agents != NULL) {
        for (i = 0; i < sa->n_agents; i++) {
            struct sim_agent *a = &sa->agents[i];
            tls_session_free(a->session);
            simagents_fence_close(&a->fence);
            proto_reader_close(&a->reader);
            rems_free(a->svcs);
            rems_free(a->extra_names);
            rems_free(a->queue);
        }
        remove_certs(sa, n_files);
    } else if (sa->own_cert_dir && sa->cert_dir[0] != '\0') {
        (void)rmdir(sa->cert_dir);
    }
    rems_free(sa->agents);
    rems_free(sa->execs);
    rems_buf_close(&sa->wbuf);
    rems_free(sa->labels);
    rems_free(sa->label_text);
    rems_free(sa->server_name);
    rems_free(sa);
}

/* The certificate directory: the given one, or a new temporary one. */
static int make_cert_dir(struct simagents *sa, const char *dir, char *errmsg)
{
    const char *tmp = getenv("TMPDIR");
    struct stat st;

    if (dir != NULL) {
        if (strlen(dir) + PROTO_ID_MAX + 8 >= sizeof sa->cert_dir) {
            rems_errmsgf(errmsg, "cert_dir: too long");
            return REMS_EINVAL;
        }
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rems_errmsgf(errmsg, "cert_dir %s: not a directory", dir);
            return REMS_EIO;
        }
        snprintf(sa->cert_dir, sizeof sa->cert_dir, "%s", dir);
        return 0;
    }
    if (tmp == NULL || tmp[0] == '\0' ||
        strlen(tmp) + PROTO_ID_MAX + 32 >= sizeof sa->cert_dir) {
        tmp = "/tmp";
    }
    snprintf(sa->cert_dir, sizeof sa->cert_dir, "%s/rems-sim-XXXXXX", tmp);
    if (mkdtemp(sa->cert_dir) == NULL) {
        rems_errmsgf(errmsg, "%s: %s", sa->cert_dir, strerror(errno));
        sa->cert_dir[0] = '\0';
        return REMS_EIO;
    }
    sa->own_cert_dir = true;
    return 0;
}

int simagents_open(uv_loop_t *loop,
                   const struct simagents_options *opts,
                   struct simagents **out,
                   char *errmsg)
{
    struct tls_context_options to = {0};
    struct simagents_ca *ca;
    struct simagents *sa;
    struct sim_agent *a;
    char cert[640];
    char key[640];
    uint64_t first;
    uint64_t t0;
    size_t n_files = 0;
    size_t n_ctx = 0;
    size_t i;
    int rv;

    PRE(loop != NULL && opts != NULL && out != NULL && errmsg != NULL);
    rv = check_options(opts, errmsg);
    if (rv != 0) {
        goto err;
    }
    rv = simagents_ca_open(opts->ca_cert, opts->ca_key, &ca, errmsg);
    if (rv != 0) {
        goto err;
    }
    sa = rems_calloc(1, sizeof *sa);
    if (sa == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_ca;
    }
    sa->loop = loop;
    sa->o = *opts;
    rems_buf_init(&sa->wbuf);
    snprintf(sa->prefix, sizeof sa->prefix, "%s",
             opts->prefix != NULL && opts->prefix[0] != '\0'
                 ? opts->prefix
                 : SIMAGENTS_DEFAULT_PREFIX);
    snprintf(sa->service_prefix, sizeof sa->service_prefix, "%s",
             opts->service_prefix != NULL && opts->service_prefix[0] != '\0'
                 ? opts->service_prefix
                 : SIMAGENTS_DEFAULT_SERVICE_PREFIX);
    sa->o.prefix = sa->prefix;
    sa->o.service_prefix = sa->service_prefix;
    sa->o.endpoints = NULL;
    sa->o.ca_cert = NULL;
    sa->o.ca_key = NULL;
    sa->o.server_ca = NULL;
    sa->o.cert_dir = NULL;
    sa->o.server_name = NULL;
    sa->o.labels = NULL;
    sa->connect_timeout_ms = opts->connect_timeout_ms != 0
                                 ? opts->connect_timeout_ms
                                 : SIMAGENTS_DEFAULT_CONNECT_TIMEOUT_MS;
    sa->reconnect_initial_ms = opts->reconnect_initial_ms != 0
                                   ? opts->reconnect_initial_ms
                                   : SIMAGENTS_DEFAULT_RECONNECT_INITIAL_MS;
    sa->reconnect_max_ms = opts->reconnect_max_ms != 0
                               ? opts->reconnect_max_ms
                               : SIMAGENTS_DEFAULT_RECONNECT_MAX_MS;
    if (sa->reconnect_max_ms < sa->reconnect_initial_ms) {
        sa->reconnect_max_ms = sa->reconnect_initial_ms;
    }
    sa->restart_ms =
        opts->restart_ms != 0 ? opts->restart_ms : SIMAGENTS_DEFAULT_RESTART_MS;
    sa->report_queue = opts->report_queue != 0 ? opts->report_queue
                                               : SIMAGENTS_DEFAULT_REPORT_QUEUE;
    sa->seed = opts->seed;
    if (sa->seed == 0 &&
        RAND_bytes((unsigned char *)&sa->seed, (int)sizeof sa->seed) != 1) {
        sa->seed = rems_wall_ms() ^ (uint64_t)getpid() << 32;
    }
    if (sa->seed == 0) {
        sa->seed = 1;
    }
    sa->rng = sa->seed;
    for (i = 0; i < opts->n_endpoints; i++) {
        (void)endpoint_parse(opts->endpoints[i], strlen(opts->endpoints[i]),
                             &sa->eps[i]);
    }
    sa->n_eps = (unsigned)opts->n_endpoints;
    sa->n_configured = sa->n_eps;
    if (opts->server_name != NULL && opts->server_name[0] != '\0') {
        sa->server_name = rems_strdup(opts->server_name);
        if (sa->server_name == NULL) {
            rems_errmsg_oom(errmsg);
            rv = REMS_ENOMEM;
            goto err_after_alloc;
        }
    }
    if (copy_labels(sa, opts) != 0) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_alloc;
    }
    rv = make_cert_dir(sa, opts->cert_dir, errmsg);
    if (rv != 0) {
        goto err_after_alloc;
    }
    sa->n_agents = opts->n_agents;
    sa->agents = rems_calloc(sa->n_agents, sizeof *sa->agents);
    if (sa->agents == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_alloc;
    }
    first = opts->first_index != 0 ? opts->first_index : 1;
    for (i = 0; i < sa->n_agents; i++) {
        a = &sa->agents[i];
        a->sa = sa;
        a->index = (uint32_t)i;
        a->state = AGENT_IDLE;
        a->connect_us = -1;
        a->reconnect_us = -1;
        snprintf(a->id, sizeof a->id, "%s-%" PRIu64, sa->prefix,
                 first + (uint64_t)i);
        proto_reader_init(&a->reader, 0);
        simagents_fence_init(&a->fence);
        REMS_QUEUE_INIT(&a->cmds);
        agent_behaviour(sa, i, &a->beh);
        if (opts->n_services > 0) {
            a->svcs = rems_calloc(opts->n_services, sizeof *a->svcs);
            if (a->svcs == NULL) {
                rems_errmsg_oom(errmsg);
                rv = REMS_ENOMEM;
                goto err_after_alloc;
            }
            a->n_svcs = opts->n_services;
            a->cap_svcs = opts->n_services;
        }
    }
    /* Minting, then the contexts: timed apart. */
    t0 = mono_us();
    for (i = 0; i < sa->n_agents; i++) {
        a = &sa->agents[i];
        agent_paths(sa, a, cert, key, sizeof cert);
        rv =
            simagents_cert_mint(ca, a->id, opts->validity_s, cert, key, errmsg);
        n_files = i + 1; /* A failed mint may leave a file behind. */
        if (rv != 0) {
            goto err_after_alloc;
        }
    }
    sa->stats.mint_us = mono_us() - t0;
    t0 = mono_us();
    to.role = TLS_ROLE_CLIENT;
    to.ca_file = opts->server_ca != NULL ? opts->server_ca : opts->ca_cert;
    for (i = 0; i < sa->n_agents; i++) {
        a = &sa->agents[i];
        agent_paths(sa, a, cert, key, sizeof cert);
        to.cert_file = cert;
        to.key_file = key;
        rv = tls_context_open(&to, &a->tls, errmsg);
        if (rv != 0) {
            goto err_after_alloc;
        }
        n_ctx = i + 1;
    }
    sa->stats.contexts_us = mono_us() - t0;
    sa->stats.agents = sa->n_agents;
    simagents_ca_close(ca);
    *out = sa;
    return 0;

err_after_alloc:
    release(sa, n_ctx, n_files);
err_after_ca:
    simagents_ca_close(ca);
err:
    POST(rv != 0);
    return rv;
}

int simagents_start(struct simagents *sa, char *errmsg)
{
    struct sim_agent *a;
    size_t i;

    PRE(sa != NULL && errmsg != NULL && !sa->started);
    sa->started = true;
    for (i = 0; i < sa->n_agents; i++) {
        a = &sa->agents[i];
        uv_timer_init(sa->loop, &a->timer);
        uv_timer_init(sa->loop, &a->svc_timer);
        a->timer.data = a;
        a->svc_timer.data = a;
    }
    uv_timer_init(sa->loop, &sa->ramp);
    sa->ramp.data = sa;
    sa->ramp_t0 = now_ms(sa);
    uv_timer_start(&sa->ramp, on_ramp, 0, SIM_RAMP_TICK_MS);
    {
        struct rems_log_line l;
        rems_log_begin(&l, REMS_LOG_INFO, "sim_started");
        rems_log_u64(&l, "agents", sa->n_agents);
        rems_log_f64(&l, "ramp_per_s", sa->o.ramp_per_s);
        rems_log_u64(&l, "seed", sa->seed);
        rems_log_end(&l);
    }
    return 0;
}

static void on_ramp_closed(uv_handle_t *h)
{
    close_done(h->data);
}

static void on_agent_handle_closed(uv_handle_t *h)
{
    struct sim_agent *a = h->data;

    close_done(a->sa);
}

void simagents_stop(struct simagents *sa, simagents_stop_cb cb)
{
    struct sim_agent *a;
    rems_queue *q;
    int was;
    size_t i;

    PRE(sa != NULL && sa->started && !sa->stopping);
    sa->stopping = true;
    sa->stop_cb = cb;
    /* One for this call, so that no callback ends the stop before every
     * close has been begun. */
    sa->closes = 1;
    for (i = 0; i < sa->n_agents; i++) {
        a = &sa->agents[i];
        was = a->state;
        if (was == AGENT_SESSION) {
            sa->stats.connected--;
        }
        sm_move(a, AGENT_STOPPED);
        if (a->stream != NULL) {
            sa->closes++;
            if (was != AGENT_CLOSING) {
                tls_stream_close(a->stream, on_stream_closed);
            }
        }
        while (!REMS_QUEUE_EMPTY(&a->cmds)) {
            q = REMS_QUEUE_HEAD(&a->cmds);
            cmd_done(REMS_QUEUE_DATA(q, struct sim_cmd, queue));
        }
        sa->closes += 2;
        uv_close((uv_handle_t *)&a->timer, on_agent_handle_closed);
        uv_close((uv_handle_t *)&a->svc_timer, on_agent_handle_closed);
    }
    sa->closes += sa->cmds_closing;
    sa->closes++;
    uv_close((uv_handle_t *)&sa->ramp, on_ramp_closed);
    REMS_ASSERT(sa->closes > 1);
    sa->closes--; /* This call's own: callbacks run from the loop only. */
}

void simagents_close(struct simagents *sa)
{
    if (sa == NULL) {
        return;
    }
    PRE(!sa->started || (sa->stopping && sa->closes == 0));
    release(sa, sa->n_agents, sa->n_agents);
}

/* ------------------------------------------------------------------------
 * Accessors
 * ------------------------------------------------------------------------ */

void simagents_stats(const struct simagents *sa, struct simagents_stats *out)
{
    PRE(sa != NULL && out != NULL);
    *out = sa->stats;
}

const struct simagents_exec *simagents_execs(const struct simagents *sa,
                                             size_t *n)
{
    PRE(sa != NULL && n != NULL);
    *n = sa->n_execs;
    return sa->execs;
}

void simagents_agent_info(const struct simagents *sa,
                          size_t i,
                          struct simagents_agent_info *out)
{
    const struct sim_agent *a;

    PRE(sa != NULL && out != NULL && i < sa->n_agents);
    a = &sa->agents[i];
    memset(out, 0, sizeof *out);
    out->id = a->id;
    out->started = a->started;
    out->connected = a->state == AGENT_SESSION;
    out->node_id = a->node_id;
    out->term = a->term;
    out->highest_term = a->fence.highest_term;
    out->sessions = a->sessions;
    out->attempts = a->attempts;
    out->redirects = a->n_redirects;
    out->executed = a->executed;
    out->connect_us = a->connect_us;
    out->reconnect_us = a->reconnect_us;
}

void simagents_agent_drop(struct simagents *sa, size_t i)
{
    struct sim_agent *a;

    PRE(sa != NULL && i < sa->n_agents);
    a = &sa->agents[i];
    if (a->state == AGENT_CONNECTING || a->state == AGENT_HANDSHAKE ||
        in_connection(a)) {
        agent_drop(a);
    }
}

size_t simagents_count(const struct simagents *sa)
{
    PRE(sa != NULL);
    return sa->n_agents;
}

uint64_t simagents_seed(const struct simagents *sa)
{
    PRE(sa != NULL);
    return sa->seed;
}

void *simagents_data(const struct simagents *sa)
{
    PRE(sa != NULL);
    return sa->o.data;
}

const char *simagents_cert_dir(const struct simagents *sa)
{
    PRE(sa != NULL);
    return sa->cert_dir;
}

int simagents_crash_service(struct simagents *sa, size_t agent, size_t service)
{
    struct sim_agent *a;

    if (agent >= sa->n_agents) {
        return REMS_EINVAL;
    }
    a = &sa->agents[agent];
    if (service >= a->n_svcs) {
        return REMS_ENOTFOUND;
    }
    service_fail(a, service, now_ms(sa), 137);
    report_push(a, service);
    svc_timer_arm(a);
    report_flush(a);
    return 0;
}

size_t simagents_service_count(const struct simagents *sa, size_t agent)
{
    return agent < sa->n_agents ? sa->agents[agent].n_svcs : 0;
}

void simagents_service_name(const struct simagents *sa,
                            size_t agent,
                            size_t service,
                            char *out)
{
    out[0] = '\0';
    if (agent < sa->n_agents && service < sa->agents[agent].n_svcs) {
        service_name(&sa->agents[agent], service, out);
    }
}

const char *simagents_behaviour_name(enum simagents_behaviour b)
{
    static const char *const names[SIMAGENTS_BEHAVIOUR_NR] = {
        [SIMAGENTS_HEALTHY] = "healthy",
        [SIMAGENTS_CRASH_LOOP] = "crash_loop",
        [SIMAGENTS_CRASH_ONCE] = "crash_after",
        [SIMAGENTS_SLOW_HEALTH] = "slow_health",
        [SIMAGENTS_HUNG_STOP] = "hung_stop",
    };
    return (unsigned)b < SIMAGENTS_BEHAVIOUR_NR ? names[b] : "unknown";
}
