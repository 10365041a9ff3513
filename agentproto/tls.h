/* agentproto/tls.h: the one TLS layer of rems, over libuv TCP handles.
 *
 * Used by remsd's agent links (server role), by rems-agent (client role)
 * and by the admin API's HTTPS (server role, no client certificates). TLS
 * 1.3 only, OpenSSL 3 with memory BIOs: OpenSSL never touches a socket,
 * libuv does all I/O.
 *
 * A struct tls_context holds the configuration (role, certificate, key,
 * trust anchors, CRL) and is shared by many streams. A struct tls_stream is
 * one connection: it owns its uv_tcp_t, which the caller connects or accepts
 * into (tls_stream_tcp()) before tls_stream_start().
 *
 * Server:
 *     tls_stream_open(loop, server_ctx, &opts, &s, errmsg);
 *     uv_accept(listener, (uv_stream_t *)tls_stream_tcp(s));
 *     tls_stream_start(s, errmsg);
 * Client:
 *     opts.server_name = "node1.rems.test";
 *     tls_stream_open(loop, client_ctx, &opts, &s, errmsg);
 *     uv_tcp_connect(&req, tls_stream_tcp(s), addr, connect_cb);
 *     ... in connect_cb: tls_stream_start(s, errmsg);
 * then handshake_cb(s, 0), read_cb() for each plaintext chunk,
 * tls_stream_write() and at last tls_stream_close(s, close_cb).
 *
 * Every failure is a REMS_E* code with a message; OpenSSL's error codes
 * never leave this module. Codes: REMS_EINVAL when a certificate was refused
 * (by this side: the message names the verify error, e.g. "tls handshake:
 * certificate verify failed: certificate has expired"; or by the peer, which
 * said so in an alert: "tls handshake: sslv3 alert certificate expired"),
 * REMS_EMALFORMED for other TLS protocol errors, REMS_EIO for transport
 * failures (reset, EOF without close_notify), REMS_ENOMEM, and
 * REMS_ECANCELED for callbacks cut short by tls_stream_close().
 *
 * Threads: a context may be shared by loops on several threads (OpenSSL
 * locks it); a stream and every callback belong to the thread of its loop.
 * No callback ever runs from inside a tls_* call: they all run from the
 * loop. The process must ignore SIGPIPE (remsd does), or writing to a peer
 * that reset the connection kills it. */
#ifndef REMS_AGENTPROTO_TLS_H
#define REMS_AGENTPROTO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/error.h"
#include "common/queue.h"

/* Plaintext bytes encrypted per stream per loop turn, at most: a large write
 * goes out in pieces of this size, each encrypted when the previous one has
 * been handed to the kernel. */
#define TLS_WRITE_PIECE ((size_t)256 << 10)

/* Longest peer id (see tls_stream_peer_id()). */
#define TLS_PEER_ID_MAX 64

/* A graceful close waits at most this long for the peer, by default. */
#define TLS_CLOSE_LINGER_MS 2000u

/* Prefix of the SAN URI that names an agent: "rems://agent/<id>". */
#define TLS_AGENT_URI_PREFIX "rems://agent/"

/* ------------------------------------------------------------------------
 * Contexts
 * ------------------------------------------------------------------------ */

enum tls_role {
    TLS_ROLE_SERVER,
    TLS_ROLE_CLIENT,
};

struct tls_context_options {
    enum tls_role role;
    /* PEM certificate chain, leaf first. Servers: required. Clients:
     * optional; without it the client presents no certificate. */
    const char *cert_file;
    /* PEM private key of cert_file; required with it. */
    const char *key_file;
    /* PEM trust anchors that the peer's certificate must chain to. Clients:
     * required. Servers: required with require_client_cert. */
    const char *ca_file;
    /* Optional PEM CRL(s) of ca_file's CAs; the peer's certificate is then
     * checked against them (X509_V_FLAG_CRL_CHECK: the leaf only). A CRL
     * past its nextUpdate fails every handshake ("CRL has expired"). */
    const char *crl_file;
    /* Servers: request a client certificate and refuse the handshake
     * without a valid one. */
    bool require_client_cert;
};

struct tls_context; /* Opaque. */

/* Make a TLS 1.3-only context from @opts (borrowed; the files are read
 * now). Servers issue session tickets (TLS 1.3 resumption; the keys are
 * random per context, so a new context invalidates the old tickets and a
 * CRL reload done by opening a new context takes effect for resumed
 * sessions too). On success returns 0 and *@out owns the context. On
 * failure returns REMS_ECONFIG (a file missing or unreadable, a key not
 * matching its certificate, a missing required option) or REMS_ENOMEM,
 * leaves *@out untouched and describes the cause in @errmsg, e.g.
 * "tls: certificate /etc/rems/node.pem: No such file or directory". Any
 * thread. */
int tls_context_open(const struct tls_context_options *opts,
                     struct tls_context **out,
                     char *errmsg);

/* Release @ctx; NULL is a no-op. Streams opened from it keep what they need
 * (OpenSSL counts references), so this may run while they are open. */
void tls_context_close(struct tls_context *ctx);

/* ------------------------------------------------------------------------
 * Sessions (client side resumption)
 * ------------------------------------------------------------------------ */

struct tls_session; /* Opaque: an OpenSSL session and its server name. */

/* Release @session; NULL is a no-op. Any thread. */
void tls_session_free(struct tls_session *session);

/* ------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------ */

struct tls_stream; /* Opaque. */

/* The handshake finished. @status is 0 (the peer's certificate was verified
 * and tls_stream_peer_id() is set) or a REMS_E* code with the reason in
 * tls_stream_errmsg(); REMS_ECANCELED when tls_stream_close() came first.
 * Runs exactly once per started stream. On failure nothing more happens
 * until the owner calls tls_stream_close() (unless it already has).
 * A client reports success only once the server has sent something after
 * its Finished message (the session ticket every OpenSSL server sends at
 * once, or data): in TLS 1.3 the server checks the client's certificate
 * after the client has finished, and this way a refusal reaches the
 * client's handshake_cb rather than its first read. A server that sends no
 * ticket and waits for the client to speak never completes the handshake. */
typedef void (*tls_stream_handshake_cb)(struct tls_stream *s, int status);

/* Plaintext from the peer. @status 0 with @len > 0: @data holds @len bytes,
 * borrowed until the callback returns. @status 0 with @len 0 (@data NULL):
 * the peer sent close_notify, no more data will come (the stream may still
 * write). @status non-zero: the connection failed (tls_stream_errmsg() says
 * why; REMS_EIO for a peer that closed without close_notify); no more data
 * will come and pending writes have failed. After either end the owner
 * calls tls_stream_close(). Never runs while reading is stopped, nor after
 * tls_stream_close(). */
typedef void (*tls_stream_read_cb)(struct tls_stream *s,
                                   int status,
                                   const char *data,
                                   size_t len);

/* @s is valid while the callback runs, and freed when it returns. */
typedef void (*tls_stream_close_cb)(struct tls_stream *s);

struct tls_stream_options {
    /* Clients: the name the server's certificate must match, a DNS name
     * (also sent as SNI) or an IPv4/IPv6 literal; required. Servers: NULL.
     * Copied. */
    const char *server_name;
    /* Clients: a session saved from an earlier stream to the same
     * server_name, to resume (NULL: none). A session for another name is
     * ignored. Borrowed: may be freed once tls_stream_open() returns. */
    const struct tls_session *session;
    /* How long a graceful close waits for the peer; 0 selects
     * TLS_CLOSE_LINGER_MS. */
    unsigned close_linger_ms;
    tls_stream_handshake_cb handshake_cb; /* Required. */
    tls_stream_read_cb read_cb;           /* Required. */
    void *data;                           /* For the owner. */
};

/* Make a stream of @ctx's role on @loop, with its TCP handle initialised
 * but not connected. @opts is copied. On success returns 0 and *@out owns
 * the stream: release it with tls_stream_close() (also when never started).
 * On failure returns REMS_EINVAL (a client without server_name),
 * REMS_ENOMEM or REMS_EIO, leaves *@out untouched and writes @errmsg. Loop
 * thread. */
int tls_stream_open(uv_loop_t *loop,
                    const struct tls_context *ctx,
                    const struct tls_stream_options *opts,
                    struct tls_stream **out,
                    char *errmsg);

/* The stream's TCP handle, to connect or to accept into. Owned by the
 * stream: the caller may connect, accept, set options and get addresses,
 * but never reads, writes or closes it. Its data field is the caller's.
 * A connect still pending when the stream is closed fails with
 * UV_ECANCELED before close_cb runs. */
uv_tcp_t *tls_stream_tcp(struct tls_stream *s);

/* The data pointer of tls_stream_options. */
void *tls_stream_data(const struct tls_stream *s);

/* Start the handshake on the connected handle; handshake_cb follows. Reading
 * is on when it succeeds, unless tls_stream_read_stop() was called. Once
 * only. Returns 0, or REMS_EIO (the handle cannot read, e.g. not connected)
 * with @errmsg; then no callback runs. Loop thread. */
int tls_stream_start(struct tls_stream *s, char *errmsg);

/* Stop delivering read callbacks, and stop reading the socket: the peer's
 * writes then fill the kernel buffers and stall (backpressure). Records
 * already received stay buffered. Idempotent. Loop thread. */
void tls_stream_read_stop(struct tls_stream *s);

/* Resume reading after tls_stream_read_stop(); buffered data is delivered
 * from the loop (never from inside this call), and so is a failure that
 * happened meanwhile. Idempotent. Returns 0 or REMS_EIO (the socket cannot
 * read; the connection is unusable). Loop thread. */
int tls_stream_read_start(struct tls_stream *s);

struct tls_write;

/* @status 0: the write's last byte has been handed to the kernel. Else the
 * stream failed (the failure's code) or was closed (REMS_ECANCELED). */
typedef void (*tls_write_cb)(struct tls_write *req, int status);

/* A write request, owned by the caller; valid until its callback ran. */
struct tls_write {
    void *data; /* For the caller. */
    /* Private to tls.c: */
    rems_queue queue;
    struct tls_stream *stream;
    tls_write_cb cb;
    char *buf; /* The copy; NULL once encrypted. */
    size_t len;
    size_t off;   /* Bytes encrypted. */
    uint64_t seq; /* The TCP write that carries the last byte. */
};

/* Queue @len > 0 bytes of @buf (copied) for the peer; they are encrypted
 * and sent in order, in pieces of at most TLS_WRITE_PIECE per loop turn,
 * after the handshake when called before it. @cb runs exactly once, from the
 * loop. Returns 0, or without calling @cb: REMS_ENOMEM, REMS_ESHUTDOWN
 * (tls_stream_close() was called), or the code of an earlier failure of the
 * stream. Loop thread. */
int tls_stream_write(struct tls_stream *s,
                     struct tls_write *req,
                     const void *buf,
                     size_t len,
                     tls_write_cb cb);

/* Bytes queued by tls_stream_write() whose callback has not run yet. */
size_t tls_stream_write_queue_size(const struct tls_stream *s);

/* Close: a graceful close once the handshake succeeded (queued writes are
 * flushed, then close_notify, a TCP shutdown, and the peer's end awaited,
 * for at most close_linger_ms), else at once. Then the pending
 * callbacks run: handshake_cb with REMS_ECANCELED if it has not run yet
 * and the stream was started, each unfinished write with REMS_ECANCELED;
 * then @cb (may be NULL), exactly once, and the stream is freed. No read
 * callback runs after this call. Call once (also after a failure); never
 * again afterwards, not even from a callback with REMS_ECANCELED. Loop
 * thread. */
void tls_stream_close(struct tls_stream *s, tls_stream_close_cb cb);

/* The peer's id, once the handshake succeeded: the <id> of a SAN URI
 * "rems://agent/<id>" when the certificate has one, else its subject's
 * common name, provided it is 1..TLS_PEER_ID_MAX characters of
 * [A-Za-z0-9_.:-] (rems_id_valid()). NULL without a peer certificate, when
 * the name is not a valid id, when the certificate has several common names
 * or rems://agent/ URIs, and before the handshake. The first rems://agent/
 * URI decides: an invalid one gives NULL, not the common name. Also set
 * for resumed sessions (taken from the session's certificate). Owned by
 * the stream. */
const char *tls_stream_peer_id(const struct tls_stream *s);

/* Why this side refused the peer's certificate, e.g. "certificate has
 * expired" (X509_verify_cert_error_string()); NULL when it did not. */
const char *tls_stream_verify_error(const struct tls_stream *s);

/* The message of the stream's failure, "" when none. */
const char *tls_stream_errmsg(const struct tls_stream *s);

/* True once a handshake succeeded by resuming a session. */
bool tls_stream_session_reused(const struct tls_stream *s);

/* Save the stream's session for tls_stream_options.session: clients only,
 * after the handshake succeeded. On success returns 0 and *@out owns a new
 * session (tls_session_free()). Else returns REMS_ENOTFOUND (the server
 * sent no ticket yet) or REMS_ENOMEM, with @errmsg. */
int tls_stream_session_get(struct tls_stream *s,
                           struct tls_session **out,
                           char *errmsg);

#endif /* REMS_AGENTPROTO_TLS_H */
