/* api/http.h: a small HTTP/1.1 server on libuv around node's http_parser.
 *
 * Private to api/ (other modules talk to api/api.h). One server listens on
 * one TCP address. Each connection parses requests with http_parser; when a
 * request is complete the server stops reading that connection and calls the
 * handler, which answers at once or later (after a raft commit, a forwarded
 * call, ...) with http_request_respond(). Then the connection reads the next
 * request (keep-alive, pipelining answered in order) or closes
 * ("Connection: close", HTTP/1.0 without keep-alive, errors).
 *
 * Limits are enforced before buffering: a request whose Content-Length is
 * above max_body is answered 413 from on_headers_complete, without reading
 * the body, and the connection is closed; a chunked body that grows past
 * max_body is answered 413 the same way; headers longer than max_header
 * bytes in total get 431; a parse error gets 400. These answers carry the
 * JSON error body {"error":{"code":...,"message":...}} and are made by the
 * server itself, the handler never sees such requests.
 *
 * Lifetime: a request handed to the handler stays valid until
 * http_request_respond() is called on it, even if its connection was closed
 * by the peer meanwhile (then the answer is dropped and the memory freed).
 * http_server_stop() closes the listener and every connection; requests
 * still owned by the handler remain valid until answered. All functions run
 * on the loop thread. */
#ifndef REMS_API_HTTP_H
#define REMS_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/error.h"

struct http_header {
    char *name; /* Lower-cased. */
    char *value;
};

struct http_request {
    void *data;         /* For the handler. */
    int method;         /* enum http_method of http_parser (HTTP_GET, ...). */
    char *path;         /* Percent-decoded path without query, e.g. "/v1/x". */
    char *raw_path;     /* Path as received (not decoded), without query. */
    char *query;        /* Raw query string after '?', or NULL. */
    struct http_header *headers;
    size_t n_headers;
    char *body; /* NUL-terminated copy of the body (may contain NULs). */
    size_t body_len;
    char peer[64]; /* "127.0.0.1:54321". */
    /* Private to http.c. */
    void *conn;
    bool keep_alive;
};

struct http_server;

/* Called once per complete request, on the loop thread. The handler owns
 * @req until it calls http_request_respond(). */
typedef void (*http_handler)(struct http_request *req, void *data);

struct http_server_options {
    const char *host;  /* IPv4 literal, e.g. "127.0.0.1". */
    uint16_t port;     /* 0 picks a free port; see http_server_port(). */
    size_t max_body;   /* Bytes; 0 means 1 MiB. */
    size_t max_header; /* Bytes over all header lines; 0 means 16 KiB. */
    unsigned idle_timeout_ms; /* Idle keep-alive connections; 0 = 60 s. */
    http_handler handler;
    void *data; /* Passed to the handler. */
};

/* Bind and listen. @opts is copied. On success *@out owns a new server. On
 * failure returns REMS_EADDRINUSE (port taken), REMS_EINVAL (bad host),
 * REMS_ENOMEM or REMS_EIO, and describes it in @errmsg. */
int http_server_start(uv_loop_t *loop,
                      const struct http_server_options *opts,
                      struct http_server **out,
                      char *errmsg);

/* The bound port (useful with port 0). */
uint16_t http_server_port(const struct http_server *s);

typedef void (*http_server_close_cb)(void *data);

/* Close the listener and all connections. @cb (may be NULL) runs once every
 * handle is closed; then the server's memory is gone. */
void http_server_stop(struct http_server *s,
                      http_server_close_cb cb,
                      void *data);

/* Number of connections open now, and requests owned by the handler. */
size_t http_server_connections(const struct http_server *s);

/* The value of header @name (case-insensitive), or NULL. */
const char *http_request_header(const struct http_request *req,
                                const char *name);

/* Find query parameter @name in req->query and percent-decode it into @out
 * (@cap bytes). Returns 1 when found, 0 when absent, -1 when it does not fit
 * or is badly encoded. */
int http_request_query(const struct http_request *req,
                       const char *name,
                       char *out,
                       size_t cap);

/* Answer @req and release it. @headers is an array of @n_headers
 * name/value pairs (borrowed) added after the status line; the server adds
 * Content-Length, Date is not added, and "Connection: close" when the
 * connection will close. @body (@len bytes, borrowed, copied) may be NULL.
 * Never fails from the caller's view: on a closed connection or out of
 * memory the answer is dropped (and the connection closed). */
void http_request_respond(struct http_request *req,
                          int status,
                          const struct http_header *headers,
                          size_t n_headers,
                          const char *body,
                          size_t len);

/* The reason phrase of @status ("OK", "Not Found", ...). */
const char *http_status_text(int status);

#endif /* REMS_API_HTTP_H */
