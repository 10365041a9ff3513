/* agentproto/tls.c: TLS 1.3 streams over libuv TCP with OpenSSL memory BIOs.
 *
 * Happy path. tls_stream_open() makes an SSL object from the context with
 * two memory BIOs: rbio receives the ciphertext libuv reads, wbio collects
 * what OpenSSL produces. The stream owns three handles: the TCP handle, an
 * idle handle (the "kick", work deferred out of tls_* calls, run once per
 * loop turn) and a timer (the linger of a graceful close).
 * tls_stream_start() starts reading the socket and kicks; from the kick the
 * first handshake step runs (a client's SSL_do_handshake() puts its
 * ClientHello in wbio). After every OpenSSL call, what wbio holds is copied
 * into one uv_write() (a "ciphertext write"), so bytes leave in the order
 * OpenSSL made them. Each chunk read from the socket is appended to rbio,
 * then the handshake is stepped or, once open, SSL_read() called until it
 * wants more input, one read callback per record.
 *
 * A client's SSL_do_handshake() succeeds as soon as it has sent its
 * Finished, before the server has looked at the client certificate. So the
 * client stays in HANDSHAKING until the server sends anything after its
 * Finished: a session ticket (seen by the context's new-session callback),
 * data (seen by SSL_peek(), which leaves it for the owner) or an alert (the
 * refusal, with its reason). OpenSSL servers send their ticket at once.
 * Then the peer's id is taken from SSL_get0_peer_certificate(), which holds
 * for resumed sessions too (the session keeps the certificate; verify
 * callbacks do not run then), the stream moves to OPEN and handshake_cb
 * runs.
 *
 * Writes. tls_stream_write() copies the plaintext into the pending queue
 * and kicks. The pump, which runs only from the kick, encrypts from the
 * queue's head one record (16 KiB) per SSL_write_ex(), moving wbio into one
 * ciphertext write, until TLS_WRITE_PIECE plaintext bytes are done or the
 * queue is empty, and submits it as the stream's only "app" write in
 * flight. A request whose last byte is encrypted moves to the flushing
 * queue, tagged with the sequence number of that ciphertext write; when the
 * write completes, every request up to it is called back and, if more is
 * pending, the stream kicks again. So a 4 MiB write is encrypted 256 KiB per
 * loop turn, paced by the socket, and a stream holds at most one piece of
 * ciphertext.
 *
 * Reading stops (uv_read_stop) with tls_stream_read_stop(); records already
 * in rbio stay there and are delivered from the kick after
 * tls_stream_read_start().
 *
 * Graceful close (from OPEN): the remaining writes are pumped,
 * SSL_shutdown() queues close_notify, uv_shutdown() sends FIN after the
 * writes, and the socket is read (what arrives is dropped) until the peer's
 * EOF, so that our last bytes are not destroyed by a reset. The linger
 * timer bounds all of it. From HANDSHAKING or FAILED there is no
 * close_notify; from NEW the handles are closed at once. When the last of
 * the three handles is closed, the leftover callbacks run (handshake_cb and
 * writes with REMS_ECANCELED), then close_cb, and the stream is freed.
 * Memory is freed only there, so the stream stays valid through any chain
 * of callbacks.
 *
 * Failure modes.
 * - Certificate refused by this side: SSL_do_handshake() fails with
 *   "certificate verify failed", the message adds SSL_get_verify_result()'s
 *   text, REMS_EINVAL. OpenSSL has put an alert in wbio; it is sent before
 *   the stream fails, so the peer learns the reason.
 * - Refused by the peer: its alert arrives; OpenSSL's reason names it
 *   ("tlsv1 alert unknown ca"), REMS_EINVAL. Other protocol errors,
 *   including a corrupt record once open: REMS_EMALFORMED ("http request"
 *   for a peer that speaks HTTP).
 * - EOF during the handshake, or when open without a close_notify before
 *   it (truncation): REMS_EIO. A read or write error from libuv: REMS_EIO,
 *   and the socket is dead (no close_notify, no shutdown on close).
 * - Out of memory (rems_malloc, or OpenSSL): REMS_ENOMEM. As soon as a byte
 *   may have been lost the stream fails; TLS cannot skip a record.
 * - Any failure moves the stream to FAILED: reading stops, pending writes
 *   get the code, and handshake_cb (in the handshake) or read_cb gets it; if
 *   the owner stopped reading, read_cb gets it from the kick after
 *   tls_stream_read_start(). The owner then closes the stream.
 * - The peer never answering a close: the linger timeout closes anyway.
 * - Closed during the handshake: handshake_cb gets REMS_ECANCELED just
 *   before close_cb.
 * No handshake timeout here: the owner arms its own timer and closes.
 *
 * Stream states (enum tls_state):
 *
 *   NEW         --tls_stream_start-->                       HANDSHAKING
 *   HANDSHAKING --verified (a client: and confirmed)-->      OPEN
 *   HANDSHAKING --any failure-->                             FAILED
 *   OPEN        --read/write failure, EOF without notify-->  FAILED
 *   NEW, HANDSHAKING, OPEN, FAILED --tls_stream_close-->     CLOSING
 *   CLOSING     --all three handles closed-->                CLOSED
 *
 * A close_notify from the peer does not change the state (peer_closed): the
 * stream may still write until its owner closes it. CLOSED lasts while the
 * final callbacks run.
 *
 * Every owner callback runs from a loop callback (kick, socket read, write
 * completion, handle close), never from inside a tls_* call, and the code
 * re-reads the state after each one: the owner may have closed the stream,
 * stopped reading or written. */
#include "agentproto/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "common/assert.h"
#include "common/heap.h"
#include "common/util.h"

/* Socket read size. */
#define TLS_READ_SIZE ((size_t)64 << 10)

/* Plaintext per SSL_write_ex() and per read callback: one TLS record. */
#define TLS_RECORD_SIZE ((size_t)16 << 10)

/* Bound on the bytes one TLS 1.3 record adds (header, type, tag). */
#define TLS_RECORD_OVERHEAD 64

/* Tickets a server sends after a handshake; one is enough to resume. */
#define TLS_NUM_TICKETS 1

/* Lifetime of a session ticket, seconds. */
#define TLS_SESSION_TIMEOUT_S 600

static const unsigned char tls_session_id_context[] = "rems";

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

enum tls_state {
    TLS_STATE_NEW,
    TLS_STATE_HANDSHAKING,
    TLS_STATE_OPEN,
    TLS_STATE_FAILED,
    TLS_STATE_CLOSING,
    TLS_STATE_CLOSED,
    TLS_STATE_NR
};

#define TLS_BIT(s) (1u << (s))

/* The moves of the state table above, checked by stream_move(). */
static const unsigned tls_moves[TLS_STATE_NR] = {
    [TLS_STATE_NEW] =
        TLS_BIT(TLS_STATE_HANDSHAKING) | TLS_BIT(TLS_STATE_CLOSING),
    [TLS_STATE_HANDSHAKING] = TLS_BIT(TLS_STATE_OPEN) |
                              TLS_BIT(TLS_STATE_FAILED) |
                              TLS_BIT(TLS_STATE_CLOSING),
    [TLS_STATE_OPEN] = TLS_BIT(TLS_STATE_FAILED) | TLS_BIT(TLS_STATE_CLOSING),
    [TLS_STATE_FAILED] = TLS_BIT(TLS_STATE_CLOSING),
    [TLS_STATE_CLOSING] = TLS_BIT(TLS_STATE_CLOSED),
    [TLS_STATE_CLOSED] = 0,
};

struct tls_context {
    SSL_CTX *ctx;
    enum tls_role role;
};

struct tls_session {
    SSL_SESSION *sess;
    char *server_name;
};

struct tls_stream {
    uv_loop_t *loop;
    enum tls_state state;
    enum tls_role role;
    SSL *ssl;
    BIO *rbio; /* Ciphertext from the peer; owned by ssl. */
    BIO *wbio; /* Ciphertext for the peer; owned by ssl. */
    char *server_name;
    uv_tcp_t tcp;
    uv_idle_t idle;   /* The kick: deferred work, once per loop turn. */
    uv_timer_t timer; /* The linger of a graceful close. */
    uv_shutdown_t shutdown;
    unsigned open_handles;
    tls_stream_handshake_cb handshake_cb;
    tls_stream_read_cb read_cb;
    tls_stream_close_cb close_cb;
    void *data;
    unsigned linger_ms;
    rems_queue pending;    /* struct tls_write, not fully encrypted. */
    rems_queue flushing;   /* struct tls_write, encrypted, not yet sent. */
    size_t pending_bytes;  /* Plaintext not yet encrypted. */
    size_t queued_bytes;   /* Plaintext of every request not called back. */
    uint64_t cw_submitted; /* Ciphertext writes submitted ... */
    uint64_t cw_completed; /* ... and completed. */
    unsigned cw_in_flight;
    int status; /* The failure's code (FAILED). */
    long verify_result;
    bool started;       /* tls_stream_start() succeeded. */
    bool opened;        /* The handshake succeeded. */
    bool kicked;        /* The kick has work to do. */
    bool reading;       /* The owner wants read callbacks. */
    bool tcp_reading;   /* uv_read_start() is in effect. */
    bool tcp_ok;        /* No transport error: the socket can still write. */
    bool app_in_flight; /* A pumped ciphertext write is in flight. */
    bool hs_local_done; /* SSL_do_handshake() succeeded. */
    bool ticket_seen;   /* A client got a session ticket. */
    bool hs_reported;   /* handshake_cb has run. */
    bool fail_reported; /* read_cb has had the failure. */
    bool peer_closed;   /* close_notify received. */
    bool peer_eof;      /* TCP EOF received. */
    bool send_notify;   /* CLOSING: send close_notify. */
    bool notify_sent;
    bool shutdown_sent;
    bool shutdown_done;
    bool final; /* The handles are being closed. */
    char peer_id[TLS_PEER_ID_MAX + 1];
    bool has_peer_id;
    char errmsg[REMS_ERRMSG_SIZE];
};

/* A ciphertext write: what wbio held, in one uv_write(). */
struct cwrite {
    uv_write_t req;
    struct tls_stream *s;
    bool app; /* Carries pumped plaintext (see app_in_flight). */
    size_t len;
    size_t cap;
    char data[];
};

static void stream_move(struct tls_stream *s, enum tls_state to)
{
    REMS_ASSERT((tls_moves[s->state] & TLS_BIT(to)) != 0);
    s->state = to;
}

/* ------------------------------------------------------------------------
 * OpenSSL errors
 * ------------------------------------------------------------------------ */

/* The text of a queued OpenSSL error. System errors (a missing file) carry
 * errno as their reason. */
static const char *ossl_reason(unsigned long e)
{
    const char *r;

    if (ERR_SYSTEM_ERROR(e)) {
        return strerror(ERR_GET_REASON(e));
    }
    r = ERR_reason_error_string(e);
    return r != NULL ? r : "unknown error";
}

static bool ossl_is_oom(unsigned long e)
{
    return !ERR_SYSTEM_ERROR(e) && ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE;
}

/* Translate the OpenSSL error queue after a failed call in context setup:
 * "@what: <reason of the first error>", REMS_ENOMEM or @rv. Empties the
 * queue. */
static int ossl_error(const char *what, int rv, char *errmsg)
{
    unsigned long e = ERR_peek_error();

    if (e == 0) {
        rems_errmsgf(errmsg, "%s: unknown error", what);
    } else if (ossl_is_oom(e)) {
        rems_errmsgf(errmsg, "%s: out of memory", what);
        rv = REMS_ENOMEM;
    } else {
        rems_errmsgf(errmsg, "%s: %s", what, ossl_reason(e));
    }
    ERR_clear_error();
    return rv;
}

/* Reasons that mean a certificate was refused, by us or (alerts) the peer. */
static bool ssl_reason_is_refusal(int reason)
{
    switch (reason) {
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
            return true;
        default:
            return false;
    }
}

/* Translate a failed SSL_do_handshake/read/write/peek (returned @ret) into
 * s->errmsg, "@what: ...", and a REMS_E* code. Empties the queue. */
static int ssl_failure(struct tls_stream *s, int ret, const char *what)
{
    int err = SSL_get_error(s->ssl, ret);
    unsigned long e;
    unsigned long first = 0;
    bool verify_failed = false;
    int rv;

    while ((e = ERR_get_error()) != 0) {
        if (first == 0) {
            first = e;
        }
        if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
            ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
            verify_failed = true;
        }
    }
    s->verify_result = SSL_get_verify_result(s->ssl);
    if (verify_failed && s->verify_result != X509_V_OK) {
        rems_errmsgf(s->errmsg, "%s: certificate verify failed: %s", what,
                     X509_verify_cert_error_string(s->verify_result));
        rv = REMS_EINVAL;
    } else if (first != 0 && ossl_is_oom(first)) {
        rems_errmsgf(s->errmsg, "%s: out of memory", what);
        rv = REMS_ENOMEM;
    } else if (first != 0) {
        rems_errmsgf(s->errmsg, "%s: %s", what, ossl_reason(first));
        rv = ERR_GET_LIB(first) == ERR_LIB_SSL &&
                     ssl_reason_is_refusal(ERR_GET_REASON(first))
                 ? REMS_EINVAL
                 : REMS_EMALFORMED;
    } else {
        rems_errmsgf(s->errmsg, "%s: unexpected error %d", what, err);
        rv = REMS_EIO;
    }
    return rv;
}

/* ------------------------------------------------------------------------
 * Contexts
 * ------------------------------------------------------------------------ */

/* Read by a client once a session ticket arrived: the server has accepted
 * our certificate (see "confirmation" above). Returns 0: OpenSSL keeps the
 * session and its reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls_stream *s = SSL_get_app_data(ssl);

    (void)sess;
    if (s != NULL) {
        s->ticket_seen = true;
    }
    return 0;
}

static int context_check_options(const struct tls_context_options *opts,
                                 char *errmsg)
{
    if (opts->role == TLS_ROLE_SERVER && opts->cert_file == NULL) {
        rems_errmsgf(errmsg, "tls: a server needs a certificate");
        return REMS_ECONFIG;
    }
    if ((opts->cert_file == NULL) != (opts->key_file == NULL)) {
        rems_errmsgf(errmsg, "tls: a certificate needs its key and a key "
                             "its certificate");
        return REMS_ECONFIG;
    }
    if (opts->ca_file == NULL &&
        (opts->role == TLS_ROLE_CLIENT || opts->require_client_cert)) {
        rems_errmsgf(errmsg, "tls: no CA file to verify the peer with");
        return REMS_ECONFIG;
    }
    if (opts->role == TLS_ROLE_CLIENT && opts->require_client_cert) {
        rems_errmsgf(errmsg, "tls: require_client_cert is for servers");
        return REMS_ECONFIG;
    }
    return 0;
}

/* Load the certificate, key, CAs and CRL of @opts into @ctx. */
static int
context_load(SSL_CTX *ctx, const struct tls_context_options *opts, char *errmsg)
{
    char what[REMS_ERRMSG_SIZE];
    X509_STORE *store;
    X509_LOOKUP *lookup;

    if (opts->cert_file != NULL) {
        snprintf(what, sizeof what, "tls: certificate %s", opts->cert_file);
        if (SSL_CTX_use_certificate_chain_file(ctx, opts->cert_file) != 1) {
            return ossl_error(what, REMS_ECONFIG, errmsg);
        }
        snprintf(what, sizeof what, "tls: key %s", opts->key_file);
        if (SSL_CTX_use_PrivateKey_file(ctx, opts->key_file,
                                        SSL_FILETYPE_PEM) != 1) {
            return ossl_error(what, REMS_ECONFIG, errmsg);
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(what, sizeof what, "tls: key %s", opts->key_file);
            return ossl_error(what, REMS_ECONFIG, errmsg);
        }
    }
    if (opts->ca_file != NULL) {
        snprintf(what, sizeof what, "tls: CA file %s", opts->ca_file);
        if (SSL_CTX_load_verify_locations(ctx, opts->ca_file, NULL) != 1) {
            return ossl_error(what, REMS_ECONFIG, errmsg);
        }
    }
    if (opts->role == TLS_ROLE_SERVER && opts->require_client_cert) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(opts->ca_file);
        if (names == NULL) {
            snprintf(what, sizeof what, "tls: CA file %s", opts->ca_file);
            return ossl_error(what, REMS_ECONFIG, errmsg);
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* Takes names. */
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    } else if (opts->role == TLS_ROLE_CLIENT) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (opts->crl_file != NULL) {
        snprintf(what, sizeof what, "tls: CRL file %s", opts->crl_file);
        store = SSL_CTX_get_cert_store(ctx);
        lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
        if (lookup == NULL) {
            return ossl_error(what, REMS_ECONFIG, errmsg);
        }
        if (X509_load_crl_file(lookup, opts->crl_file, X509_FILETYPE_PEM) <=
            0) {
            return ossl_error(what, REMS_ECONFIG, errmsg);
        }
        if (X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK) != 1) {
            return ossl_error(what, REMS_ECONFIG, errmsg);
        }
    }
    return 0;
}

int tls_context_open(const struct tls_context_options *opts,
                     struct tls_context **out,
                     char *errmsg)
{
    struct tls_context *c;
    SSL_CTX *ctx;
    int rv;

    PRE(opts != NULL && out != NULL && errmsg != NULL);
    PRE(opts->role == TLS_ROLE_SERVER || opts->role == TLS_ROLE_CLIENT);

    rv = context_check_options(opts, errmsg);
    if (rv != 0) {
        goto err;
    }
    c = rems_malloc(sizeof *c);
    if (c == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    ERR_clear_error();
    ctx = SSL_CTX_new(opts->role == TLS_ROLE_SERVER ? TLS_server_method()
                                                    : TLS_client_method());
    if (ctx == NULL) {
        rv = ossl_error("tls: new context", REMS_ENOMEM, errmsg);
        goto err_after_alloc;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
        rv = ossl_error("tls: protocol version", REMS_ECONFIG, errmsg);
        goto err_after_ctx_new;
    }
    /* Idle streams give their record buffers back: remsd holds many. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (opts->role == TLS_ROLE_SERVER) {
        /* Without a session id context, OpenSSL refuses to resume a session
         * whose client was verified: the handshake fails. */
        if (SSL_CTX_set_session_id_context(
                ctx, tls_session_id_context,
                (unsigned)(sizeof tls_session_id_context - 1)) != 1 ||
            SSL_CTX_set_num_tickets(ctx, TLS_NUM_TICKETS) != 1) {
            rv = ossl_error("tls: sessions", REMS_ENOMEM, errmsg);
            goto err_after_ctx_new;
        }
        SSL_CTX_set_timeout(ctx, TLS_SESSION_TIMEOUT_S);
    } else {
        /* The callback sees each ticket; sessions are kept by their owner
         * (tls_stream_session_get()), not in OpenSSL's cache. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                                SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    }
    rv = context_load(ctx, opts, errmsg);
    if (rv != 0) {
        goto err_after_ctx_new;
    }
    c->ctx = ctx;
    c->role = opts->role;
    *out = c;
    return 0;

err_after_ctx_new:
    SSL_CTX_free(ctx);
err_after_alloc:
    rems_free(c);
err:
    POST(rv != 0);
    return rv;
}

void tls_context_close(struct tls_context *ctx)
{
    if (ctx == NULL) {
        return;
    }
    SSL_CTX_free(ctx->ctx);
    rems_free(ctx);
}

void tls_session_free(struct tls_session *session)
{
    if (session == NULL) {
        return;
    }
    SSL_SESSION_free(session->sess);
    rems_free(session->server_name);
    rems_free(session);
}

/* ------------------------------------------------------------------------
 * Peer identity
 * ------------------------------------------------------------------------ */

/* Copy @len bytes of @p into s->peer_id when they make a valid id. */
static bool peer_id_set(struct tls_stream *s, const unsigned char *p, int len)
{
    if (len <= 0 || len > TLS_PEER_ID_MAX || memchr(p, '\0', len) != NULL) {
        return false;
    }
    memcpy(s->peer_id, p, (size_t)len);
    s->peer_id[len] = '\0';
    if (!rems_id_valid(s->peer_id)) {
        s->peer_id[0] = '\0';
        return false;
    }
    s->has_peer_id = true;
    return true;
}

/* The agent id of a SAN URI rems://agent/<id>. Returns 1 when the
 * certificate has one such URI (then s->has_peer_id says whether the id is
 * valid), 0 when it has none, -1 when it has several. */
static int peer_id_from_san(struct tls_stream *s, X509 *cert)
{
    static const char prefix[] = TLS_AGENT_URI_PREFIX;
    const int plen = (int)(sizeof prefix - 1);
    GENERAL_NAMES *names;
    const unsigned char *uri;
    int found = 0;
    int len;
    int i;

    names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) {
        return 0;
    }
    for (i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI) {
            continue;
        }
        uri = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (len < plen || memcmp(uri, prefix, (size_t)plen) != 0) {
            continue;
        }
        if (found++ == 0) {
            peer_id_set(s, uri + plen, len - plen);
        }
    }
    GENERAL_NAMES_free(names);
    return found > 1 ? -1 : found;
}

/* The subject's only common name. */
static void peer_id_from_cn(struct tls_stream *s, X509 *cert)
{
    X509_NAME *subject = X509_get_subject_name(cert);
    X509_NAME_ENTRY *entry;
    unsigned char *utf8;
    int len;
    int i;

    i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, i) >= 0) {
        return;
    }
    entry = X509_NAME_get_entry(subject, i);
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
    if (len < 0) {
        ERR_clear_error();
        return;
    }
    peer_id_set(s, utf8, len);
    OPENSSL_free(utf8);
}

/* Take the peer's id from its certificate, which for a resumed session
 * comes from the session. */
static void peer_id_load(struct tls_stream *s)
{
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    int rv;

    s->has_peer_id = false;
    s->peer_id[0] = '\0';
    if (cert == NULL) {
        return;
    }
    rv = peer_id_from_san(s, cert);
    if (rv < 0) {
        s->has_peer_id = false;
        s->peer_id[0] = '\0';
    } else if (rv == 0) {
        peer_id_from_cn(s, cert);
    }
    ERR_clear_error();
}

/* ------------------------------------------------------------------------
 * Ciphertext writes
 * ------------------------------------------------------------------------ */

static void stream_fail(struct tls_stream *s, int rv);
static void kick(struct tls_stream *s);
static void close_step(struct tls_stream *s);
static void close_final(struct tls_stream *s);

/* Complete every flushing request whose last byte has been sent. */
static void flushing_complete(struct tls_stream *s)
{
    while (!REMS_QUEUE_EMPTY(&s->flushing)) {
        rems_queue *q = REMS_QUEUE_HEAD(&s->flushing);
        struct tls_write *req = REMS_QUEUE_DATA(q, struct tls_write, queue);
        if (req->seq > s->cw_completed) {
            break;
        }
        REMS_QUEUE_REMOVE(q);
        s->queued_bytes -= req->len;
        req->cb(req, 0);
    }
}

static void on_cwrite_done(uv_write_t *req, int status)
{
    struct cwrite *cw = REMS_CONTAINER_OF(req, struct cwrite, req);
    struct tls_stream *s = cw->s;

    if (cw->app) {
        s->app_in_flight = false;
    }
    rems_free(cw);
    s->cw_in_flight--;
    s->cw_completed++;
    if (status < 0) {
        s->tcp_ok = false;
        if (s->state == TLS_STATE_HANDSHAKING || s->state == TLS_STATE_OPEN) {
            rems_errmsgf(s->errmsg, "tls write: %s", uv_strerror(status));
            stream_fail(s, REMS_EIO);
        } else if (s->state == TLS_STATE_CLOSING) {
            close_step(s);
        }
        return;
    }
    flushing_complete(s);
    if (s->state == TLS_STATE_OPEN && !REMS_QUEUE_EMPTY(&s->pending)) {
        kick(s); /* The next piece, in the next loop turn. */
    } else if (s->state == TLS_STATE_CLOSING) {
        close_step(s);
    }
}

/* Submit @cw (ownership passes, also on failure). */
static int cwrite_submit(struct tls_stream *s, struct cwrite *cw, bool app)
{
    uv_buf_t buf = uv_buf_init(cw->data, (unsigned)cw->len);
    int rv;

    cw->s = s;
    cw->app = app;
    rv = uv_write(&cw->req, (uv_stream_t *)&s->tcp, &buf, 1, on_cwrite_done);
    if (rv != 0) {
        rems_free(cw);
        rems_errmsgf(s->errmsg, "tls write: %s", uv_strerror(rv));
        s->tcp_ok = false;
        return REMS_EIO;
    }
    s->cw_in_flight++;
    s->cw_submitted++;
    if (app) {
        s->app_in_flight = true;
    }
    return 0;
}

/* Move what wbio holds to the end of *@cw, allocating or growing it (to at
 * least @hint bytes when allocating). */
static int wbio_drain(struct tls_stream *s, struct cwrite **cw, size_t hint)
{
    size_t n = BIO_ctrl_pending(s->wbio);
    size_t used = *cw != NULL ? (*cw)->len : 0;
    size_t cap = *cw != NULL ? (*cw)->cap : 0;
    struct cwrite *p;

    if (n == 0) {
        return 0;
    }
    if (used + n > cap) {
        cap = used + n > hint ? used + n : hint;
        if (*cw != NULL) {
            cap = cap > 2 * (*cw)->cap ? cap : 2 * (*cw)->cap;
        }
        p = rems_realloc(*cw, sizeof *p + cap);
        if (p == NULL) {
            rems_errmsgf(s->errmsg, "tls write: out of memory");
            return REMS_ENOMEM;
        }
        if (*cw == NULL) {
            p->len = 0;
        }
        p->cap = cap;
        *cw = p;
    }
    /* A memory BIO hands out all it holds; n fits in an int (< 2 GiB). */
    if (BIO_read(s->wbio, (*cw)->data + used, (int)n) != (int)n) {
        rems_errmsgf(s->errmsg, "tls write: short read from the BIO");
        return REMS_EIO;
    }
    (*cw)->len = used + n;
    return 0;
}

/* Send what OpenSSL has produced (handshake messages, alerts, tickets,
 * close_notify). */
static int flush_out(struct tls_stream *s)
{
    struct cwrite *cw = NULL;
    int rv;

    rv = wbio_drain(s, &cw, 0);
    if (rv != 0) {
        rems_free(cw);
        return rv;
    }
    if (cw == NULL) {
        return 0;
    }
    return cwrite_submit(s, cw, false);
}

/* Encrypt up to TLS_WRITE_PIECE bytes of the pending writes into one
 * ciphertext write. Requires no app write in flight. */
static int pump(struct tls_stream *s)
{
    size_t budget = TLS_WRITE_PIECE;
    size_t plan;
    struct cwrite *cw = NULL;
    size_t n;
    size_t done;
    int rv;

    PRE(!s->app_in_flight);
    if (REMS_QUEUE_EMPTY(&s->pending)) {
        return 0;
    }
    plan = s->pending_bytes < budget ? s->pending_bytes : budget;
    plan += (plan / TLS_RECORD_SIZE + 1) * TLS_RECORD_OVERHEAD;
    while (budget > 0 && !REMS_QUEUE_EMPTY(&s->pending)) {
        rems_queue *q = REMS_QUEUE_HEAD(&s->pending);
        struct tls_write *req = REMS_QUEUE_DATA(q, struct tls_write, queue);
        n = req->len - req->off;
        n = n < budget ? n : budget;
        n = n < TLS_RECORD_SIZE ? n : TLS_RECORD_SIZE;
        ERR_clear_error();
        if (SSL_write_ex(s->ssl, req->buf + req->off, n, &done) != 1) {
            rv = ssl_failure(s, 0, "tls write");
            goto err;
        }
        req->off += done;
        budget -= done;
        s->pending_bytes -= done;
        rv = wbio_drain(s, &cw, plan);
        if (rv != 0) {
            goto err;
        }
        if (req->off == req->len) {
            REMS_QUEUE_REMOVE(q);
            rems_free(req->buf);
            req->buf = NULL;
            req->seq = s->cw_submitted + 1; /* The write submitted below. */
            REMS_QUEUE_PUSH(&s->flushing, q);
        }
    }
    if (cw == NULL) {
        return 0;
    }
    return cwrite_submit(s, cw, true);

err:
    rems_free(cw);
    return rv;
}

/* Pump when the stream is open and no app write is in flight. */
static void pump_or_fail(struct tls_stream *s)
{
    int rv;

    if (s->state != TLS_STATE_OPEN || s->app_in_flight) {
        return;
    }
    rv = pump(s);
    if (rv != 0) {
        stream_fail(s, rv);
    }
}

/* Call back every unfinished write with @status. */
static void writes_fail(struct tls_stream *s, int status)
{
    rems_queue *heads[2] = {&s->flushing, &s->pending};
    size_t i;

    for (i = 0; i < REMS_ARRAY_SIZE(heads); i++) {
        while (!REMS_QUEUE_EMPTY(heads[i])) {
            rems_queue *q = REMS_QUEUE_HEAD(heads[i]);
            struct tls_write *req = REMS_QUEUE_DATA(q, struct tls_write, queue);
            REMS_QUEUE_REMOVE(q);
            if (req->buf != NULL) {
                s->pending_bytes -= req->len - req->off;
                rems_free(req->buf);
                req->buf = NULL;
            }
            s->queued_bytes -= req->len;
            req->cb(req, status);
        }
    }
}

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    buf->base = rems_malloc(TLS_READ_SIZE);
    buf->len = buf->base != NULL ? TLS_READ_SIZE : 0;
}

static void
on_tcp_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* Read the socket exactly when the state needs it. */
static int tcp_read_update(struct tls_stream *s)
{
    bool want;
    int rv;

    switch (s->state) {
        case TLS_STATE_HANDSHAKING:
            want = true;
            break;
        case TLS_STATE_OPEN:
            /* After close_notify only the EOF is awaited (and junk
             * dropped), whatever the owner's wish. */
            want = s->peer_closed || s->reading;
            break;
        case TLS_STATE_CLOSING:
            want = s->tcp_ok && !s->final;
            break;
        default:
            want = false;
            break;
    }
    want = want && !s->peer_eof;
    if (want == s->tcp_reading) {
        return 0;
    }
    if (want) {
        rv = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_tcp_read);
        if (rv != 0) {
            rems_errmsgf(s->errmsg, "tls read: %s", uv_strerror(rv));
            return REMS_EIO;
        }
    } else {
        uv_read_stop((uv_stream_t *)&s->tcp);
    }
    s->tcp_reading = want;
    return 0;
}

/* Tell the owner about the failure through read_cb, once, when reading. */
static void failure_report(struct tls_stream *s)
{
    if (s->state != TLS_STATE_FAILED || !s->reading || s->fail_reported) {
        return;
    }
    s->fail_reported = true;
    s->read_cb(s, s->status, NULL, 0);
}

/* Fail the handshaking or open stream with @rv (s->errmsg is written). */
static void stream_fail(struct tls_stream *s, int rv)
{
    bool in_handshake = s->state == TLS_STATE_HANDSHAKING;
    char errmsg[REMS_ERRMSG_SIZE];

    PRE(in_handshake || s->state == TLS_STATE_OPEN);
    /* An alert OpenSSL made tells the peer why. If it cannot be sent, the
     * socket is given up, and the message stays the failure's. */
    memcpy(errmsg, s->errmsg, sizeof errmsg);
    if (s->tcp_ok && flush_out(s) != 0) {
        s->tcp_ok = false;
        memcpy(s->errmsg, errmsg, sizeof errmsg);
    }
    ERR_clear_error();
    s->status = rv;
    if (s->peer_closed) {
        s->fail_reported = true; /* read_cb had the end: only writes fail. */
    }
    stream_move(s, TLS_STATE_FAILED);
    tcp_read_update(s); /* Stopping cannot fail. */
    if (in_handshake) {
        s->hs_reported = true;
        s->fail_reported = true;
        s->handshake_cb(s, rv);
    } else {
        failure_report(s);
    }
    writes_fail(s, rv);
}

/* The handshake is over: take the peer's id, open, tell the owner. */
static void handshake_done(struct tls_stream *s)
{
    peer_id_load(s);
    s->verify_result = SSL_get_verify_result(s->ssl);
    stream_move(s, TLS_STATE_OPEN);
    s->opened = true;
    /* The socket was read for the handshake: this can only stop reading
     * (the owner stopped it before), which cannot fail. */
    (void)tcp_read_update(s);
    s->hs_reported = true;
    s->handshake_cb(s, 0);
    if (s->state == TLS_STATE_OPEN && !REMS_QUEUE_EMPTY(&s->pending)) {
        kick(s); /* Writes queued before the handshake. */
    }
}

/* Step the handshake with what rbio holds. Returns true when the stream
 * became OPEN, false when it waits for input or failed. */
static bool handshake_step(struct tls_stream *s)
{
    unsigned char byte;
    size_t n;
    int ret;
    int rv;

    if (!s->hs_local_done) {
        ERR_clear_error();
        ret = SSL_do_handshake(s->ssl);
        if (ret != 1 && SSL_get_error(s->ssl, ret) != SSL_ERROR_WANT_READ) {
            stream_fail(s, ssl_failure(s, ret, "tls handshake"));
            return false;
        }
        rv = flush_out(s);
        if (rv != 0) {
            stream_fail(s, rv);
            return false;
        }
        if (ret != 1) {
            return false;
        }
        s->hs_local_done = true;
    }
    if (s->role == TLS_ROLE_CLIENT && !s->ticket_seen) {
        /* Confirmation: process what the server sent after its Finished
         * without consuming data. */
        int err;

        ERR_clear_error();
        ret = SSL_peek_ex(s->ssl, &byte, 1, &n);
        err = ret == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, ret);
        if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ &&
            err != SSL_ERROR_ZERO_RETURN) {
            stream_fail(s, ssl_failure(s, ret, "tls handshake"));
            return false;
        }
        rv = flush_out(s);
        if (rv != 0) {
            stream_fail(s, rv);
            return false;
        }
        /* Data, a ticket or a close_notify right after the handshake (the
         * owner then reads the end of the stream) confirm it. */
        if (err == SSL_ERROR_WANT_READ && !s->ticket_seen) {
            return false;
        }
    }
    handshake_done(s);
    return s->state == TLS_STATE_OPEN;
}

/* Read records from rbio and deliver them while the owner reads. */
static void read_records(struct tls_stream *s)
{
    char buf[TLS_RECORD_SIZE];
    size_t n;
    int ret;
    int err;
    int rv;

    while (s->state == TLS_STATE_OPEN && s->reading && !s->peer_closed) {
        ERR_clear_error();
        ret = SSL_read_ex(s->ssl, buf, sizeof buf, &n);
        err = ret == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, ret);
        if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ &&
            err != SSL_ERROR_ZERO_RETURN) {
            stream_fail(s, ssl_failure(s, ret, "tls read"));
            return;
        }
        /* Post-handshake messages (a key update) may need an answer. */
        rv = flush_out(s);
        if (rv != 0) {
            stream_fail(s, rv);
            return;
        }
        if (err == SSL_ERROR_WANT_READ) {
            return;
        }
        if (err == SSL_ERROR_ZERO_RETURN) {
            s->peer_closed = true;
            rv = tcp_read_update(s);
            if (rv != 0) {
                stream_fail(s, rv);
                return;
            }
            s->read_cb(s, 0, NULL, 0);
            return;
        }
        s->read_cb(s, 0, buf, n);
    }
}

/* Run the handshake or deliver records, with what rbio holds. */
static void input_process(struct tls_stream *s)
{
    if (s->state == TLS_STATE_HANDSHAKING && !handshake_step(s)) {
        return;
    }
    read_records(s);
}

static void on_tcp_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tls_stream *s = REMS_CONTAINER_OF(stream, struct tls_stream, tcp);
    bool discard = s->state != TLS_STATE_HANDSHAKING &&
                   !(s->state == TLS_STATE_OPEN && !s->peer_closed);
    int rv;

    if (nread > 0 && discard) {
        rems_free(buf->base);
        return;
    }
    if (nread > 0) {
        ERR_clear_error();
        rv = BIO_write(s->rbio, buf->base, (int)nread);
        rems_free(buf->base);
        if (rv != (int)nread) {
            ERR_clear_error();
            rems_errmsgf(s->errmsg, "tls read: out of memory");
            stream_fail(s, REMS_ENOMEM);
            return;
        }
        input_process(s);
        return;
    }
    rems_free(buf->base);
    if (nread == 0) {
        return;
    }
    if (nread == UV_EOF) {
        s->peer_eof = true;
        tcp_read_update(s); /* Stops. */
        if (s->state == TLS_STATE_CLOSING) {
            close_step(s);
        } else if (s->state == TLS_STATE_HANDSHAKING) {
            rems_errmsgf(s->errmsg,
                         "tls handshake: connection closed by the peer");
            stream_fail(s, REMS_EIO);
        } else if (s->state == TLS_STATE_OPEN && !s->peer_closed) {
            rems_errmsgf(s->errmsg, "tls read: connection closed by the peer "
                                    "without close_notify");
            stream_fail(s, REMS_EIO);
        }
        return;
    }
    if (nread == UV_ENOBUFS) {
        rems_errmsgf(s->errmsg, "tls read: out of memory");
        rv = REMS_ENOMEM;
    } else {
        rems_errmsgf(s->errmsg, "tls read: %s", uv_strerror((int)nread));
        s->tcp_ok = false;
        rv = REMS_EIO;
    }
    if (s->state == TLS_STATE_CLOSING) {
        s->tcp_ok = false;
        close_step(s);
    } else if (s->state == TLS_STATE_HANDSHAKING ||
               s->state == TLS_STATE_OPEN) {
        stream_fail(s, rv);
    }
}

/* ------------------------------------------------------------------------
 * The kick: work deferred out of tls_* calls, and the pump
 * ------------------------------------------------------------------------ */

/* An idle handle runs its callback once per loop turn (libuv runs handles
 * started during the idle phase in the next turn) and keeps the loop from
 * blocking while it is active. So pumping only from here bounds the
 * encryption per stream and turn to one piece. The handle stays active for
 * one turn after the work, and stops on the next empty turn: stopped at
 * once, the poll that follows would block although the work done here (a
 * callback) may be what a uv_run(UV_RUN_ONCE) caller waits for. */
static void on_kick(uv_idle_t *idle)
{
    struct tls_stream *s = REMS_CONTAINER_OF(idle, struct tls_stream, idle);

    if (!s->kicked) {
        uv_idle_stop(&s->idle);
        return;
    }
    s->kicked = false;
    switch (s->state) {
        case TLS_STATE_HANDSHAKING:
        case TLS_STATE_OPEN:
            input_process(s);
            pump_or_fail(s);
            break;
        case TLS_STATE_FAILED:
            failure_report(s);
            break;
        case TLS_STATE_CLOSING:
            if (s->send_notify && !s->notify_sent && !s->app_in_flight &&
                !s->final && pump(s) != 0) {
                close_final(s);
                return;
            }
            close_step(s);
            break;
        default:
            break;
    }
}

static void kick(struct tls_stream *s)
{
    if (s->final) {
        return;
    }
    s->kicked = true;
    uv_idle_start(&s->idle, on_kick); /* A no-op when active. */
}

/* ------------------------------------------------------------------------
 * Closing
 * ------------------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *handle)
{
    struct tls_stream *s;

    /* Not handle->data: that field of the TCP handle is the owner's. */
    switch (handle->type) {
        case UV_TCP:
            s = REMS_CONTAINER_OF(handle, struct tls_stream, tcp);
            break;
        case UV_IDLE:
            s = REMS_CONTAINER_OF(handle, struct tls_stream, idle);
            break;
        default:
            s = REMS_CONTAINER_OF(handle, struct tls_stream, timer);
            break;
    }
    if (--s->open_handles > 0) {
        return;
    }
    stream_move(s, TLS_STATE_CLOSED);
    if (s->started && !s->hs_reported) {
        s->hs_reported = true;
        s->handshake_cb(s, REMS_ECANCELED);
    }
    writes_fail(s, REMS_ECANCELED);
    if (s->close_cb != NULL) {
        s->close_cb(s);
    }
    SSL_free(s->ssl);
    rems_free(s->server_name);
    rems_free(s);
}

static void close_final(struct tls_stream *s)
{
    if (s->final) {
        return;
    }
    s->final = true;
    uv_close((uv_handle_t *)&s->idle, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
}

static void on_linger_timeout(uv_timer_t *timer)
{
    close_final(REMS_CONTAINER_OF(timer, struct tls_stream, timer));
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct tls_stream *s = REMS_CONTAINER_OF(req, struct tls_stream, shutdown);

    s->shutdown_done = true;
    if (status < 0) {
        s->tcp_ok = false;
    }
    close_step(s);
}

/* Advance the graceful close; called whenever what it waits for happened:
 * writes pumped, close_notify queued, FIN sent, the peer's EOF. */
static void close_step(struct tls_stream *s)
{
    if (s->final) {
        return;
    }
    if (!s->tcp_ok) {
        close_final(s);
        return;
    }
    if (s->send_notify && !s->notify_sent) {
        if (!REMS_QUEUE_EMPTY(&s->pending)) {
            /* The kick pumps; this runs again when the piece is out. */
            if (!s->app_in_flight) {
                kick(s);
            }
            return;
        }
        ERR_clear_error();
        SSL_shutdown(s->ssl); /* Queues close_notify; a failure is moot. */
        ERR_clear_error();
        s->notify_sent = true;
        if (flush_out(s) != 0) {
            close_final(s);
            return;
        }
    }
    if (!s->shutdown_sent) {
        /* libuv sends FIN after the writes in flight. */
        if (uv_shutdown(&s->shutdown, (uv_stream_t *)&s->tcp, on_shutdown) !=
            0) {
            close_final(s);
            return;
        }
        s->shutdown_sent = true;
        return;
    }
    if (s->shutdown_done && s->peer_eof) {
        close_final(s);
    }
}

void tls_stream_close(struct tls_stream *s, tls_stream_close_cb cb)
{
    enum tls_state prev;

    PRE(s != NULL);
    PRE(s->state != TLS_STATE_CLOSING && s->state != TLS_STATE_CLOSED);

    prev = s->state;
    s->close_cb = cb;
    stream_move(s, TLS_STATE_CLOSING);
    if (prev == TLS_STATE_NEW) {
        close_final(s);
        return;
    }
    s->send_notify = prev == TLS_STATE_OPEN;
    uv_timer_start(&s->timer, on_linger_timeout, s->linger_ms, 0);
    if (tcp_read_update(s) != 0) {
        s->tcp_ok = false;
    }
    close_step(s);
}

/* ------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------ */

/* Set the name the server's certificate must match, and SNI for DNS
 * names. */
static int stream_set_server_name(struct tls_stream *s, char *errmsg)
{
    X509_VERIFY_PARAM *param = SSL_get0_param(s->ssl);
    unsigned char addr[sizeof(struct in6_addr)];
    bool is_ip = inet_pton(AF_INET, s->server_name, addr) == 1 ||
                 inet_pton(AF_INET6, s->server_name, addr) == 1;
    int ok;

    ERR_clear_error();
    if (is_ip) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(param, s->server_name);
    } else {
        X509_VERIFY_PARAM_set_hostflags(param,
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = X509_VERIFY_PARAM_set1_host(param, s->server_name, 0) == 1 &&
             SSL_set_tlsext_host_name(s->ssl, s->server_name) == 1;
    }
    if (ok != 1) {
        return ossl_error("tls: server name", REMS_EINVAL, errmsg);
    }
    return 0;
}

int tls_stream_open(uv_loop_t *loop,
                    const struct tls_context *ctx,
                    const struct tls_stream_options *opts,
                    struct tls_stream **out,
                    char *errmsg)
{
    struct tls_stream *s;
    int rv;

    PRE(loop != NULL && ctx != NULL && opts != NULL && out != NULL &&
        errmsg != NULL);
    PRE(opts->handshake_cb != NULL && opts->read_cb != NULL);

    if (ctx->role == TLS_ROLE_CLIENT &&
        (opts->server_name == NULL || opts->server_name[0] == '\0')) {
        rems_errmsgf(errmsg, "tls: a client stream needs a server name");
        rv = REMS_EINVAL;
        goto err;
    }
    s = rems_calloc(1, sizeof *s);
    if (s == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    s->loop = loop;
    s->state = TLS_STATE_NEW;
    s->role = ctx->role;
    s->handshake_cb = opts->handshake_cb;
    s->read_cb = opts->read_cb;
    s->data = opts->data;
    s->linger_ms = opts->close_linger_ms != 0 ? opts->close_linger_ms
                                              : TLS_CLOSE_LINGER_MS;
    s->reading = true;
    s->tcp_ok = true;
    s->verify_result = X509_V_OK;
    REMS_QUEUE_INIT(&s->pending);
    REMS_QUEUE_INIT(&s->flushing);
    if (ctx->role == TLS_ROLE_CLIENT) {
        s->server_name = rems_strdup(opts->server_name);
        if (s->server_name == NULL) {
            rems_errmsg_oom(errmsg);
            rv = REMS_ENOMEM;
            goto err_after_alloc;
        }
    }
    ERR_clear_error();
    s->ssl = SSL_new(ctx->ctx);
    if (s->ssl == NULL) {
        rv = ossl_error("tls: new connection", REMS_ENOMEM, errmsg);
        goto err_after_name;
    }
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (s->rbio == NULL || s->wbio == NULL) {
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        rv = ossl_error("tls: new BIO", REMS_ENOMEM, errmsg);
        goto err_after_ssl_new;
    }
    /* An empty rbio means "wait for more", not EOF: EOF comes from
     * libuv. */
    BIO_set_mem_eof_return(s->rbio, -1);
    SSL_set_bio(s->ssl, s->rbio, s->wbio); /* The SSL owns both now. */
    SSL_set_app_data(s->ssl, s);
    if (ctx->role == TLS_ROLE_CLIENT) {
        SSL_set_connect_state(s->ssl);
        rv = stream_set_server_name(s, errmsg);
        if (rv != 0) {
            goto err_after_ssl_new;
        }
        if (opts->session != NULL &&
            strcmp(opts->session->server_name, s->server_name) == 0 &&
            SSL_set_session(s->ssl, opts->session->sess) != 1) {
            rv = ossl_error("tls: session", REMS_ENOMEM, errmsg);
            goto err_after_ssl_new;
        }
    } else {
        SSL_set_accept_state(s->ssl);
    }
    /* Neither init allocates nor fails with these arguments (libuv creates
     * the socket on connect or accept). */
    rv = uv_tcp_init(loop, &s->tcp);
    REMS_ASSERT(rv == 0);
    rv = uv_idle_init(loop, &s->idle);
    REMS_ASSERT(rv == 0);
    rv = uv_timer_init(loop, &s->timer);
    REMS_ASSERT(rv == 0);
    s->open_handles = 3;
    *out = s;
    return 0;

err_after_ssl_new:
    SSL_free(s->ssl);
err_after_name:
    rems_free(s->server_name);
err_after_alloc:
    rems_free(s);
err:
    POST(rv != 0);
    return rv;
}

uv_tcp_t *tls_stream_tcp(struct tls_stream *s)
{
    return &s->tcp;
}

void *tls_stream_data(const struct tls_stream *s)
{
    return s->data;
}

int tls_stream_start(struct tls_stream *s, char *errmsg)
{
    int rv;

    PRE(s != NULL && errmsg != NULL);
    PRE(s->state == TLS_STATE_NEW);

    rv = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_tcp_read);
    if (rv != 0) {
        rems_errmsgf(errmsg, "tls: start reading: %s", uv_strerror(rv));
        return REMS_EIO;
    }
    s->tcp_reading = true;
    s->started = true;
    stream_move(s, TLS_STATE_HANDSHAKING);
    kick(s);
    return 0;
}

void tls_stream_read_stop(struct tls_stream *s)
{
    PRE(s != NULL);
    s->reading = false;
    if (s->state == TLS_STATE_OPEN) {
        tcp_read_update(s); /* Stopping cannot fail. */
    }
}

int tls_stream_read_start(struct tls_stream *s)
{
    int rv;

    PRE(s != NULL);
    if (s->reading) {
        return 0;
    }
    s->reading = true;
    if (s->state == TLS_STATE_OPEN) {
        rv = tcp_read_update(s);
        if (rv != 0) {
            return rv;
        }
    }
    kick(s);
    return 0;
}

int tls_stream_write(struct tls_stream *s,
                     struct tls_write *req,
                     const void *buf,
                     size_t len,
                     tls_write_cb cb)
{
    PRE(s != NULL && req != NULL && buf != NULL && len > 0 && cb != NULL);

    if (s->state == TLS_STATE_CLOSING || s->state == TLS_STATE_CLOSED) {
        return REMS_ESHUTDOWN;
    }
    if (s->state == TLS_STATE_FAILED) {
        return s->status;
    }
    req->buf = rems_malloc(len);
    if (req->buf == NULL) {
        return REMS_ENOMEM;
    }
    memcpy(req->buf, buf, len);
    req->stream = s;
    req->cb = cb;
    req->len = len;
    req->off = 0;
    req->seq = 0;
    REMS_QUEUE_PUSH(&s->pending, &req->queue);
    s->pending_bytes += len;
    s->queued_bytes += len;
    if (s->state == TLS_STATE_OPEN && !s->app_in_flight) {
        kick(s);
    }
    return 0;
}

size_t tls_stream_write_queue_size(const struct tls_stream *s)
{
    return s->queued_bytes;
}

const char *tls_stream_peer_id(const struct tls_stream *s)
{
    return s->has_peer_id ? s->peer_id : NULL;
}

const char *tls_stream_verify_error(const struct tls_stream *s)
{
    if (s->verify_result == X509_V_OK) {
        return NULL;
    }
    return X509_verify_cert_error_string(s->verify_result);
}

const char *tls_stream_errmsg(const struct tls_stream *s)
{
    return s->errmsg;
}

bool tls_stream_session_reused(const struct tls_stream *s)
{
    return s->opened && SSL_session_reused(s->ssl) == 1;
}

int tls_stream_session_get(struct tls_stream *s,
                           struct tls_session **out,
                           char *errmsg)
{
    struct tls_session *session;
    SSL_SESSION *sess;
    int rv;

    PRE(s != NULL && out != NULL && errmsg != NULL);
    PRE(s->role == TLS_ROLE_CLIENT);

    sess = SSL_get1_session(s->ssl);
    if (sess == NULL || SSL_SESSION_is_resumable(sess) != 1) {
        rems_errmsgf(errmsg, "tls session: no resumable session yet");
        rv = REMS_ENOTFOUND;
        goto err_after_get;
    }
    session = rems_malloc(sizeof *session);
    if (session == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_get;
    }
    session->server_name = rems_strdup(s->server_name);
    if (session->server_name == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_alloc;
    }
    session->sess = sess;
    *out = session;
    return 0;

err_after_alloc:
    rems_free(session);
err_after_get:
    SSL_SESSION_free(sess); /* NULL is a no-op. */
    POST(rv != 0);
    return rv;
}
