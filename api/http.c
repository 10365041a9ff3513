/* api/http.c: the HTTP/1.1 server of api/http.h, on libuv and http_parser.
 *
 * Happy path. http_server_start() binds and listens. Each accepted socket
 * gets a struct conn holding the TCP handle, a timer, an http_parser in
 * HTTP_REQUEST mode and a fixed input buffer. Bytes read go to the input
 * buffer and through the parser; its callbacks copy the URL, the headers
 * (names lower-cased, into one block) and the body into a struct request
 * under construction. on_message_complete pauses the parser, so
 * http_parser_execute() returns with the bytes of later (pipelined)
 * requests left unparsed in the input buffer. The connection then stops
 * reading, finishes the request (splits the target, percent-decodes the
 * path) and calls the handler. http_request_respond() formats the answer
 * into one buffer and queues it with uv_write(). On a keep-alive connection
 * it unpauses the parser and resumes: bytes left in the input buffer are
 * parsed from a zero timeout of the connection's timer (so the handler is
 * never called from inside http_request_respond()), else reading starts
 * again. Without keep-alive the connection drains (below).
 *
 * Failure modes.
 * - Content-Length over max_body: 413 from on_headers_complete, which then
 *   returns -1 so the parser stops; the body is never buffered. A chunked
 *   body is counted in on_body and answered 413 as soon as it goes over.
 * - Header names and values over max_header bytes in total: 431 (also when
 *   http_parser's own HTTP_MAX_HEADER_SIZE trips first). A URL longer than
 *   max_header: 414.
 * - Any other parse error, or a path that is not validly percent-encoded:
 *   400 with the http_parser error name in the message.
 *   Each of these answers carries a JSON error body and "Connection: close",
 *   and the connection drains. The handler never sees such requests.
 * - Draining: once the last answer is written, the write side is shut down
 *   and what the peer still sends is read and dropped until it closes, at
 *   most HTTP_LINGER_MS, so that the peer reads the answer instead of a
 *   reset (closing a socket with unread input sends RST).
 * - Out of memory anywhere for a connection, a read or write error, a reset
 *   by the peer, or no bytes for idle_timeout_ms while reading: the
 *   connection is closed without an answer. When even the struct conn
 *   cannot be allocated, the socket is accepted into the server's spare
 *   handle and closed at once (libuv stops accepting until the pending
 *   socket is taken).
 * - The peer closing while the handler owns a request goes unnoticed until
 *   the answer is written (reading is stopped then); the answer is dropped
 *   with the connection.
 * - http_server_stop(): the listener and every connection are closed at
 *   once. Requests owned by the handler keep their struct conn (not its
 *   handles) alive; answering them later frees them. The server's memory is
 *   freed when its last handle is closed, before its close callback runs;
 *   connections still referenced by requests are detached from it first.
 *
 * Connection states (enum conn_state):
 *
 *   READING  --request complete-->   HANDLING (handler owns the request)
 *   HANDLING --answer, keep-alive--> READING
 *   HANDLING --answer, close------>  DRAINING
 *   READING  --413/431/414/400---->  DRAINING
 *   READING  --EOF between requests-> DRAINING
 *   DRAINING --written, shut down, peer EOF or linger timeout--> CLOSING
 *   any      --error, idle timeout, stop--> CLOSING
 *   CLOSING  --both handles closed-->  CLOSED
 *
 * A CLOSED connection is freed at once unless the handler still owns its
 * request; then http_request_respond() frees both. */
#include "api/http.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/assert.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/util.h"

#define HTTP_DEFAULT_MAX_BODY ((size_t)1 << 20)
#define HTTP_DEFAULT_MAX_HEADER ((size_t)16 << 10)
#define HTTP_DEFAULT_IDLE_MS 60000u
#define HTTP_LINGER_MS 2000u
#define HTTP_BACKLOG 511
#define HTTP_READ_SIZE ((size_t)16 << 10)
#define HTTP_ADDR_SIZE 64

/* ------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------ */

enum conn_state {
    CONN_READING,
    CONN_HANDLING,
    CONN_DRAINING,
    CONN_CLOSING,
    CONN_CLOSED,
    CONN_STATE_NR
};

#define CONN_BIT(s) (1u << (s))

/* The moves of the state table in the comment above, checked by
 * conn_move(). */
static const unsigned conn_moves[CONN_STATE_NR] = {
    [CONN_READING] = CONN_BIT(CONN_HANDLING) | CONN_BIT(CONN_DRAINING) |
                     CONN_BIT(CONN_CLOSING),
    [CONN_HANDLING] = CONN_BIT(CONN_READING) | CONN_BIT(CONN_DRAINING) |
                      CONN_BIT(CONN_CLOSING),
    [CONN_DRAINING] = CONN_BIT(CONN_CLOSING),
    [CONN_CLOSING] = CONN_BIT(CONN_CLOSED),
    [CONN_CLOSED] = 0,
};

enum header_cb { HEADER_NONE, HEADER_FIELD, HEADER_VALUE };

/* A request and the state used to build it. The handler sees @pub. */
struct request {
    struct http_request pub;
    char *url; /* The request target as received, NUL-terminated. */
    size_t url_len;
    size_t url_cap;
    char *hblock; /* "name\0value\0name\0value\0..." */
    size_t hblock_len;
    size_t hblock_cap;
    size_t *hoffs; /* Offsets in hblock: name, value, name, value, ... */
    size_t n_hoffs;
    size_t hoffs_cap;
    char *target; /* raw_path, path and query in one allocation. */
    size_t body_cap;
    size_t body_limit; /* Capacity the body buffer never needs to pass. */
    size_t header_bytes;
    enum header_cb last;
    bool headers_done; /* Later header callbacks are trailers. */
    bool head;         /* HEAD: answer without a body. */
    bool http10;       /* HTTP/1.0 keep-alive: say so in the answer. */
    char empty[1];     /* The body when there is none. */
};

struct conn {
    struct http_server *server; /* NULL once detached by a finished stop. */
    struct conn *prev;
    struct conn *next;
    enum conn_state state;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    unsigned open_handles;
    unsigned writes_pending;
    http_parser parser;
    struct request *building; /* Being parsed. */
    struct request *complete; /* Parsed, not yet handed to the handler. */
    struct request *handling; /* Owned by the handler. */
    bool reading;             /* uv_read_start() is in effect. */
    bool processing;          /* Inside conn_process(). */
    bool kick;                /* The zero timeout is for parsing leftovers. */
    bool peer_eof;
    bool shut_done;
    char peer[HTTP_ADDR_SIZE];
    size_t in_off; /* Parsed up to here. */
    size_t in_len;
    char in[HTTP_READ_SIZE];
};

struct http_server {
    uv_loop_t *loop;
    struct http_server_options opts; /* host is NULL: see addr. */
    char addr[HTTP_ADDR_SIZE];       /* "127.0.0.1:7101" */
    uv_tcp_t listener;
    uv_tcp_t spare; /* Takes sockets that no conn could be allocated for. */
    bool spare_busy;
    bool accept_pending; /* A socket waits until the spare is free. */
    bool stopping;
    unsigned open_handles;
    struct conn *conns; /* Open connections, and closed ones whose request
                         * the handler owns. */
    size_t n_conns;
    uint16_t port;
    http_server_close_cb close_cb;
    void *close_data;
};

struct write_req {
    uv_write_t req;
    struct conn *conn;
    size_t len;
    char data[];
};

/* What http_request_respond() and the error answers put on the wire. */
struct response {
    int status;
    const struct http_header *headers;
    size_t n_headers;
    const char *body;
    size_t len;
    bool close;      /* Add "Connection: close". */
    bool keep_alive; /* Add "Connection: keep-alive" (HTTP/1.0). */
    bool head;       /* Send Content-Length but not the body. */
};

static void conn_move(struct conn *c, enum conn_state to)
{
    REMS_ASSERT((conn_moves[c->state] & CONN_BIT(to)) != 0);
    c->state = to;
}

/* ------------------------------------------------------------------------
 * Growable buffers
 * ------------------------------------------------------------------------ */

/* Make room in *@p (*@cap bytes, @len used) for @extra more bytes and a NUL.
 * The capacity doubles but stays at most @limit when that is enough.
 * Returns 0 or -1 when out of memory. */
static int
buf_reserve(char **p, size_t *cap, size_t len, size_t extra, size_t limit)
{
    size_t need = len + extra + 1;
    size_t n;
    char *q;

    if (need <= *cap) {
        return 0;
    }
    n = *cap != 0 ? *cap : 64;
    while (n < need) {
        n *= 2;
    }
    if (n > limit && limit >= need) {
        n = limit;
    }
    q = rems_realloc(*p, n);
    if (q == NULL) {
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

/* Append @n bytes of @at to a growable buffer and keep it NUL-terminated. */
static int buf_append(
    char **p, size_t *len, size_t *cap, const char *at, size_t n, size_t limit)
{
    if (buf_reserve(p, cap, *len, n, limit) != 0) {
        return -1;
    }
    memcpy(*p + *len, at, n);
    *len += n;
    (*p)[*len] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------
 * Percent-decoding
 * ------------------------------------------------------------------------ */

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* Decode the character at @s[*i] (of @n, none of them NUL) and advance
 * *@i. "%00" and a '%' not followed by two hex digits give -1. '+' becomes a
 * space when @plus. */
static int pct_next(const char *s, size_t n, size_t *i, bool plus)
{
    int hi;
    int lo;
    char ch = s[*i];

    if (ch == '%') {
        if (n - *i < 3) {
            return -1;
        }
        hi = hex_value(s[*i + 1]);
        lo = hex_value(s[*i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            return -1;
        }
        *i += 3;
        return hi * 16 + lo;
    }
    *i += 1;
    if (plus && ch == '+') {
        return ' ';
    }
    return (unsigned char)ch;
}

/* Decode @n bytes of @s into @out (room for n + 1 bytes). Returns the
 * decoded length, or -1 when badly encoded. */
static long pct_decode(const char *s, size_t n, char *out, bool plus)
{
    size_t i = 0;
    size_t o = 0;
    int ch;

    while (i < n) {
        ch = pct_next(s, n, &i, plus);
        if (ch < 0) {
            return -1;
        }
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return (long)o;
}

/* ------------------------------------------------------------------------
 * Forward declarations
 * ------------------------------------------------------------------------ */

static void conn_close(struct conn *c);
static void conn_fail(struct conn *c,
                      int status,
                      const char *code,
                      const char *message,
                      const char *field);
static int conn_send_raw(struct conn *c, const char *data, size_t len);
static void conn_process(struct conn *c);

/* ------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------ */

static void request_free(struct request *r)
{
    if (r == NULL) {
        return;
    }
    rems_free(r->url);
    rems_free(r->hblock);
    rems_free(r->hoffs);
    rems_free(r->target);
    rems_free(r->pub.headers);
    if (r->pub.body != r->empty) {
        rems_free(r->pub.body);
    }
    rems_free(r);
}

static int request_push_offset(struct request *r, size_t off)
{
    size_t *q;
    size_t n;

    if (r->n_hoffs == r->hoffs_cap) {
        n = r->hoffs_cap != 0 ? r->hoffs_cap * 2 : 16;
        q = rems_realloc(r->hoffs, n * sizeof *q);
        if (q == NULL) {
            return -1;
        }
        r->hoffs = q;
        r->hoffs_cap = n;
    }
    r->hoffs[r->n_hoffs++] = off;
    return 0;
}

/* End the current name or value in the header block. */
static int request_hblock_nul(struct request *r)
{
    return buf_append(&r->hblock, &r->hblock_len, &r->hblock_cap, "", 1,
                      SIZE_MAX);
}

/* Terminate the last header and point pub.headers into the header block,
 * which no longer grows (trailers are not kept). */
static int request_finish_headers(struct request *r)
{
    size_t i;
    size_t n;
    size_t vlen;
    char *v;

    if (r->last == HEADER_FIELD) {
        /* A name without a value; http_parser does not let one through,
         * but an empty value is the sensible reading. */
        if (request_hblock_nul(r) != 0 ||
            request_push_offset(r, r->hblock_len) != 0) {
            return -1;
        }
    }
    if (r->last != HEADER_NONE && request_hblock_nul(r) != 0) {
        return -1;
    }
    r->headers_done = true;
    n = r->n_hoffs / 2;
    if (n == 0) {
        return 0;
    }
    r->pub.headers = rems_calloc(n, sizeof *r->pub.headers);
    if (r->pub.headers == NULL) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        r->pub.headers[i].name = r->hblock + r->hoffs[2 * i];
        v = r->hblock + r->hoffs[2 * i + 1];
        vlen = strlen(v);
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) {
            v[--vlen] = '\0';
        }
        r->pub.headers[i].value = v;
    }
    r->pub.n_headers = n;
    return 0;
}

/* Split the request target into raw_path, path and query, and copy the
 * peer address. Returns 0, REMS_ENOMEM, or REMS_EMALFORMED for a target
 * that does not parse or a path that is badly percent-encoded, with *@why
 * saying which. */
static int request_finish(struct request *r, const char *peer, const char **why)
{
    const char *url = r->url != NULL ? r->url : "";
    const char *raw;
    struct http_parser_url u;
    size_t start = 0;
    size_t end;
    size_t raw_len;
    size_t qstart = 0;
    size_t qlen = 0;
    bool has_query = false;
    char *t;

    if (url[0] != '/' && strcmp(url, "*") != 0) {
        /* Absolute form ("http://host/path") or, for CONNECT, authority
         * form ("host:port", no path). */
        http_parser_url_init(&u);
        if (http_parser_parse_url(url, r->url_len,
                                  r->pub.method == HTTP_CONNECT, &u) != 0) {
            *why = "request target is not a valid URL";
            return REMS_EMALFORMED;
        }
        if (u.field_set & (1 << UF_PATH)) {
            start = u.field_data[UF_PATH].off;
        } else if (u.field_set & (1 << UF_QUERY)) {
            start = (size_t)u.field_data[UF_QUERY].off - 1;
        } else {
            start = r->url_len;
        }
    }
    end = start + strcspn(url + start, "?#");
    if (url[end] == '?') {
        has_query = true;
        qstart = end + 1;
        qlen = strcspn(url + qstart, "#");
    }
    raw = url + start;
    raw_len = end - start;
    if (raw_len == 0 && r->pub.method != HTTP_CONNECT) {
        raw = "/";
        raw_len = 1;
    }

    t = rems_malloc(2 * (raw_len + 1) + qlen + 1);
    if (t == NULL) {
        return REMS_ENOMEM;
    }
    memcpy(t, raw, raw_len);
    t[raw_len] = '\0';
    if (pct_decode(raw, raw_len, t + raw_len + 1, false) < 0) {
        rems_free(t);
        *why = "path is not validly percent-encoded";
        return REMS_EMALFORMED;
    }
    r->target = t;
    r->pub.raw_path = t;
    r->pub.path = t + raw_len + 1;
    if (has_query) {
        r->pub.query = t + 2 * (raw_len + 1);
        memcpy(r->pub.query, url + qstart, qlen);
        r->pub.query[qlen] = '\0';
    }
    memcpy(r->pub.peer, peer, sizeof r->pub.peer);
    r->pub.peer[sizeof r->pub.peer - 1] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------
 * Parser callbacks
 *
 * They run inside http_parser_execute(), called from conn_process() only.
 * To stop the parser they return -1, after having closed the connection or
 * queued an error answer (conn_fail), so conn_process() stops too.
 * ------------------------------------------------------------------------ */

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    struct request *r;

    REMS_ASSERT(c->building == NULL);
    r = rems_calloc(1, sizeof *r);
    if (r == NULL) {
        conn_close(c);
        return -1;
    }
    r->pub.conn = c;
    c->building = r;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct request *r = c->building;
    size_t max = c->server->opts.max_header;
    char msg[128];

    if (r->url_len + len > max) {
        snprintf(msg, sizeof msg,
                 "request target is over the limit of %zu bytes", max);
        conn_fail(c, 414, "uri_too_long", msg, "path");
        return -1;
    }
    if (buf_append(&r->url, &r->url_len, &r->url_cap, at, len, SIZE_MAX) != 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Count header bytes against max_header; -1 when over (answered 431). */
static int count_header_bytes(struct conn *c, struct request *r, size_t len)
{
    size_t max = c->server->opts.max_header;
    char msg[128];

    r->header_bytes += len;
    if (r->header_bytes > max) {
        snprintf(msg, sizeof msg, "headers are over the limit of %zu bytes",
                 max);
        conn_fail(c, 431, "headers_too_large", msg, NULL);
        return -1;
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct request *r = c->building;
    size_t i;
    size_t start;

    if (count_header_bytes(c, r, len) != 0) {
        return -1;
    }
    if (r->headers_done) {
        return 0; /* A trailer of a chunked body: counted, not kept. */
    }
    if (r->last != HEADER_FIELD) {
        if (r->last == HEADER_VALUE && request_hblock_nul(r) != 0) {
            goto oom;
        }
        if (request_push_offset(r, r->hblock_len) != 0) {
            goto oom;
        }
        r->last = HEADER_FIELD;
    }
    start = r->hblock_len;
    if (buf_append(&r->hblock, &r->hblock_len, &r->hblock_cap, at, len,
                   SIZE_MAX) != 0) {
        goto oom;
    }
    for (i = start; i < r->hblock_len; i++) {
        if (r->hblock[i] >= 'A' && r->hblock[i] <= 'Z') {
            r->hblock[i] = (char)(r->hblock[i] - 'A' + 'a');
        }
    }
    return 0;

oom:
    conn_close(c);
    return -1;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct request *r = c->building;

    if (count_header_bytes(c, r, len) != 0) {
        return -1;
    }
    if (r->headers_done) {
        return 0;
    }
    if (r->last != HEADER_VALUE) {
        if (request_hblock_nul(r) != 0 ||
            request_push_offset(r, r->hblock_len) != 0) {
            goto oom;
        }
        r->last = HEADER_VALUE;
    }
    if (buf_append(&r->hblock, &r->hblock_len, &r->hblock_cap, at, len,
                   SIZE_MAX) != 0) {
        goto oom;
    }
    return 0;

oom:
    conn_close(c);
    return -1;
}

static int on_headers_complete(http_parser *p)
{
    static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct conn *c = p->data;
    struct request *r = c->building;
    size_t max = c->server->opts.max_body;
    const char *expect;
    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_length = !chunked && p->content_length != ULLONG_MAX;
    char msg[128];

    if (request_finish_headers(r) != 0) {
        conn_close(c);
        return -1;
    }
    /* Returning 1 here would mean "no body follows" (for answers to HEAD):
     * every error is -1. */
    r->body_limit = max + 1;
    if (has_length) {
        if (p->content_length > max) {
            snprintf(msg, sizeof msg,
                     "body of %llu bytes is over the limit of %zu bytes",
                     (unsigned long long)p->content_length, max);
            conn_fail(c, 413, "payload_too_large", msg, "body");
            return -1;
        }
        r->body_limit = (size_t)p->content_length + 1;
    }
    if ((chunked || (has_length && p->content_length > 0)) &&
        p->http_major == 1 && p->http_minor >= 1) {
        expect = http_request_header(&r->pub, "expect");
        if (expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
            conn_send_raw(c, continue_line, sizeof continue_line - 1) != 0) {
            conn_close(c);
            return -1;
        }
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct request *r = c->building;
    size_t max = c->server->opts.max_body;
    char msg[128];

    /* Only a chunked body can get here over the limit: a Content-Length
     * over it was answered from on_headers_complete. */
    if (len > max - r->pub.body_len) {
        snprintf(msg, sizeof msg,
                 "body of more than %zu bytes is over the limit of %zu bytes",
                 max, max);
        conn_fail(c, 413, "payload_too_large", msg, "body");
        return -1;
    }
    if (buf_append(&r->pub.body, &r->pub.body_len, &r->body_cap, at, len,
                   r->body_limit) != 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct request *r = c->building;

    r->pub.method = (int)p->method;
    /* After an upgrade (or CONNECT) the bytes that follow are another
     * protocol, which this server does not speak: answer and close. */
    r->pub.keep_alive = http_should_keep_alive(p) != 0 && !p->upgrade;
    r->head = p->method == HTTP_HEAD;
    r->http10 = p->http_major == 1 && p->http_minor == 0;
    if (r->pub.body == NULL) {
        r->pub.body = r->empty;
    }
    c->building = NULL;
    c->complete = r;
    /* http_parser_execute() returns at once; later bytes stay unparsed. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ------------------------------------------------------------------------
 * Connections: writing
 * ------------------------------------------------------------------------ */

static void conn_shutdown(struct conn *c);

static void write_cb(uv_write_t *req, int status)
{
    struct write_req *wr = REMS_CONTAINER_OF(req, struct write_req, req);
    struct conn *c = wr->conn;

    rems_free(wr);
    REMS_ASSERT(c->writes_pending > 0);
    c->writes_pending--;
    if (c->state == CONN_CLOSING || c->state == CONN_CLOSED) {
        return; /* Canceled by uv_close(). */
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->state == CONN_DRAINING && c->writes_pending == 0) {
        conn_shutdown(c);
    }
}

/* Queue @wr (wr->len bytes of wr->data), which is freed by write_cb or
 * here on failure. Returns 0 or REMS_EIO. */
static int conn_write(struct conn *c, struct write_req *wr)
{
    uv_buf_t buf;
    int rv;

    PRE(wr->len <= UINT_MAX);
    wr->conn = c;
    buf = uv_buf_init(wr->data, (unsigned)wr->len);
    rv = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
    if (rv != 0) {
        rems_free(wr);
        return REMS_EIO;
    }
    c->writes_pending++;
    return 0;
}

static int conn_send_raw(struct conn *c, const char *data, size_t len)
{
    struct write_req *wr = rems_malloc(sizeof *wr + len);

    if (wr == NULL) {
        return REMS_ENOMEM;
    }
    memcpy(wr->data, data, len);
    wr->len = len;
    return conn_write(c, wr);
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LITERAL(p, s) put((p), (s), sizeof(s) - 1)

/* Format @rsp into one buffer and queue it. Returns 0, REMS_ENOMEM or
 * REMS_EIO. */
static int conn_send(struct conn *c, const struct response *rsp)
{
    const char *text = http_status_text(rsp->status);
    /* RFC 9110 8.6: no Content-Length (and no body) on 1xx, 204 and 304. */
    bool bodyless =
        rsp->status < 200 || rsp->status == 204 || rsp->status == 304;
    bool send_body = !bodyless && !rsp->head;
    struct write_req *wr;
    char line[64];
    size_t size;
    size_t i;
    int n;
    char *p;

    size = sizeof "HTTP/1.1 000 \r\n" + strlen(text);
    for (i = 0; i < rsp->n_headers; i++) {
        size += strlen(rsp->headers[i].name) + strlen(rsp->headers[i].value) +
                sizeof ": \r\n";
    }
    size += sizeof line; /* Content-Length */
    size += sizeof "Connection: keep-alive\r\n" + sizeof "\r\n";
    if (send_body) {
        size += rsp->len;
    }
    wr = rems_malloc(sizeof *wr + size);
    if (wr == NULL) {
        return REMS_ENOMEM;
    }

    p = wr->data;
    n = snprintf(p, size, "HTTP/1.1 %03d %s\r\n", rsp->status, text);
    p += n;
    for (i = 0; i < rsp->n_headers; i++) {
        p = put(p, rsp->headers[i].name, strlen(rsp->headers[i].name));
        p = PUT_LITERAL(p, ": ");
        p = put(p, rsp->headers[i].value, strlen(rsp->headers[i].value));
        p = PUT_LITERAL(p, "\r\n");
    }
    if (!bodyless) {
        n = snprintf(line, sizeof line, "Content-Length: %zu\r\n", rsp->len);
        p = put(p, line, (size_t)n);
    }
    if (rsp->close) {
        p = PUT_LITERAL(p, "Connection: close\r\n");
    } else if (rsp->keep_alive) {
        p = PUT_LITERAL(p, "Connection: keep-alive\r\n");
    }
    p = PUT_LITERAL(p, "\r\n");
    if (send_body && rsp->len > 0) {
        p = put(p, rsp->body, rsp->len);
    }
    wr->len = (size_t)(p - wr->data);
    REMS_ASSERT(wr->len <= size);
    return conn_write(c, wr);
}

/* ------------------------------------------------------------------------
 * Connections: reading, draining, closing
 * ------------------------------------------------------------------------ */

static void timer_cb(uv_timer_t *t);
static void conn_drain(struct conn *c);
static void conn_stop_reading(struct conn *c);

static void conn_destroy(struct conn *c)
{
    struct http_server *s = c->server;

    if (s != NULL) {
        if (c->prev != NULL) {
            c->prev->next = c->next;
        } else {
            s->conns = c->next;
        }
        if (c->next != NULL) {
            c->next->prev = c->prev;
        }
        s->n_conns--;
    }
    rems_free(c);
}

static void server_maybe_finish(struct http_server *s);

static void conn_handle_close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct http_server *s = c->server;

    REMS_ASSERT(c->open_handles > 0 && s != NULL && s->open_handles > 0);
    c->open_handles--;
    s->open_handles--;
    if (c->open_handles == 0) {
        conn_move(c, CONN_CLOSED);
        request_free(c->building);
        c->building = NULL;
        request_free(c->complete);
        c->complete = NULL;
        if (c->handling == NULL) {
            conn_destroy(c);
        }
    }
    server_maybe_finish(s);
}

static void conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSING || c->state == CONN_CLOSED) {
        return;
    }
    conn_move(c, CONN_CLOSING);
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_close_cb);
    uv_close((uv_handle_t *)&c->timer, conn_handle_close_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;

    (void)suggested;
    if (c->state == CONN_DRAINING) {
        c->in_off = 0; /* What is left is dropped. */
        c->in_len = 0;
    }
    /* Input is parsed up to the end before reading goes on: while reading
     * with a request paused in the buffer is impossible, the whole buffer
     * is free. */
    REMS_ASSERT(c->in_off == 0 && c->in_len == 0);
    buf->base = c->in;
    buf->len = sizeof c->in;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = stream->data;

    (void)buf;
    if (nread == 0) {
        return;
    }
    switch (c->state) {
        case CONN_READING:
            if (nread > 0) {
                c->in_len += (size_t)nread;
                conn_process(c);
            } else if (nread == UV_EOF && c->building == NULL) {
                /* Closed between requests: finish the answers queued. */
                c->peer_eof = true;
                conn_stop_reading(c);
                conn_drain(c);
            } else {
                conn_close(c);
            }
            break;
        case CONN_DRAINING:
            if (nread < 0) {
                c->peer_eof = true;
                uv_read_stop(stream);
                c->reading = false;
                if (c->shut_done) {
                    conn_close(c);
                }
            }
            break;
        default:
            break;
    }
}

/* Read on (or again) and rearm the idle timer. */
static void conn_read(struct conn *c)
{
    int rv;

    if (!c->reading) {
        rv = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
        if (rv != 0) {
            conn_close(c);
            return;
        }
        c->reading = true;
    }
    uv_timer_start(&c->timer, timer_cb, c->server->opts.idle_timeout_ms, 0);
}

static void conn_stop_reading(struct conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct conn *c = REMS_CONTAINER_OF(req, struct conn, shutdown);
    unsigned linger;
    int rv;

    c->shut_done = true;
    if (c->state != CONN_DRAINING) {
        return;
    }
    linger = c->server->opts.idle_timeout_ms;
    if (status < 0 || c->peer_eof) {
        conn_close(c);
        return;
    }
    /* Linger: drop what the peer still sends until it closes. */
    if (!c->reading) {
        rv = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
        if (rv != 0) {
            conn_close(c);
            return;
        }
        c->reading = true;
    }
    if (linger > HTTP_LINGER_MS) {
        linger = HTTP_LINGER_MS;
    }
    uv_timer_start(&c->timer, timer_cb, linger, 0);
}

static void conn_shutdown(struct conn *c)
{
    int rv;

    REMS_ASSERT(c->state == CONN_DRAINING && c->writes_pending == 0);
    rv = uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, shutdown_cb);
    if (rv != 0) {
        conn_close(c);
    }
}

/* The last answer is queued: close once it is written. */
static void conn_drain(struct conn *c)
{
    conn_move(c, CONN_DRAINING);
    c->kick = false;
    /* Bounds how long a peer that does not read can hold the socket. */
    uv_timer_start(&c->timer, timer_cb, c->server->opts.idle_timeout_ms, 0);
    if (c->writes_pending == 0) {
        conn_shutdown(c);
    }
}

static void timer_cb(uv_timer_t *t)
{
    struct conn *c = t->data;

    if (c->kick) {
        c->kick = false;
        conn_process(c);
        return;
    }
    /* Idle while reading, or a drain that took too long. */
    conn_close(c);
}

/* Answer an error made by the server itself and drain. Only while reading:
 * any later error has already been answered. */
static void conn_fail(struct conn *c,
                      int status,
                      const char *code,
                      const char *message,
                      const char *field)
{
    struct http_header ct = {(char *)"Content-Type",
                             (char *)"application/json"};
    struct response rsp = {0};
    struct rems_log_line l;
    char body[512];
    size_t used;
    int n;

    if (c->state != CONN_READING) {
        return;
    }
    n = snprintf(body, sizeof body,
                 "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    used = (size_t)n;
    /* Keep room for the end; a long message is cut, still valid JSON. */
    rems_json_escape(body, sizeof body - 64, &used, message, strlen(message));
    if (field != NULL) {
        n = snprintf(body + used, sizeof body - used, "\",\"field\":\"%s\"}}",
                     field);
    } else {
        n = snprintf(body + used, sizeof body - used, "\"}}");
    }
    used += (size_t)n;

    rems_log_begin(&l, REMS_LOG_DEBUG, "http_request_refused");
    rems_log_str(&l, "peer", c->peer);
    rems_log_i64(&l, "status", status);
    rems_log_str(&l, "msg", message);
    rems_log_end(&l);

    rsp.status = status;
    rsp.headers = &ct;
    rsp.n_headers = 1;
    rsp.body = body;
    rsp.len = used;
    rsp.close = true;
    if (conn_send(c, &rsp) != 0) {
        conn_close(c);
        return;
    }
    conn_drain(c);
}

/* Hand the complete request to the handler. */
static void conn_dispatch(struct conn *c)
{
    struct http_server *s = c->server;
    struct request *r = c->complete;
    const char *why = NULL;
    int rv;

    c->complete = NULL;
    rv = request_finish(r, c->peer, &why);
    if (rv != 0) {
        request_free(r);
        if (rv == REMS_EMALFORMED) {
            conn_fail(c, 400, "bad_request", why, "path");
        } else {
            conn_close(c);
        }
        return;
    }
    conn_move(c, CONN_HANDLING);
    c->handling = r;
    conn_stop_reading(c);
    uv_timer_stop(&c->timer);
    s->opts.handler(&r->pub, s->opts.data);
}

/* Parse the buffered input until it is used up or a request goes to the
 * handler, then read on if still reading. The handler may answer from
 * inside (then the loop goes on with pipelined requests), and may stop the
 * server: the struct conn outlives this call because it is freed only from
 * close callbacks or from http_request_respond() on a closed connection. */
static void conn_process(struct conn *c)
{
    enum http_errno err;
    char msg[128];
    size_t n;

    /* Only read_cb() and timer_cb() get here, never a handler. */
    PRE(!c->processing);
    c->processing = true;
    while (c->state == CONN_READING && c->in_off < c->in_len) {
        n = http_parser_execute(&c->parser, &parser_settings, c->in + c->in_off,
                                c->in_len - c->in_off);
        c->in_off += n;
        err = HTTP_PARSER_ERRNO(&c->parser);
        if (err == HPE_PAUSED) {
            conn_dispatch(c);
            continue;
        }
        if (err != HPE_OK) {
            if (err == HPE_HEADER_OVERFLOW) {
                /* http_parser's own limit, met before max_header. */
                snprintf(msg, sizeof msg,
                         "headers are over the limit of %d bytes",
                         (int)HTTP_MAX_HEADER_SIZE);
                conn_fail(c, 431, "headers_too_large", msg, NULL);
            } else {
                /* A callback that failed has answered or closed already. */
                snprintf(msg, sizeof msg, "%s: %s", http_errno_name(err),
                         http_errno_description(err));
                conn_fail(c, 400, "bad_request", msg, NULL);
            }
            break;
        }
    }
    if (c->in_off >= c->in_len) {
        c->in_off = 0;
        c->in_len = 0;
    }
    if (c->state == CONN_READING) {
        conn_read(c);
    }
    c->processing = false;
}

/* ------------------------------------------------------------------------
 * Server
 * ------------------------------------------------------------------------ */

static void server_maybe_finish(struct http_server *s)
{
    http_server_close_cb cb;
    struct conn *c;
    void *data;

    if (!s->stopping || s->open_handles > 0) {
        return;
    }
    /* What is left are closed connections whose request the handler owns:
     * they live on without the server. */
    while ((c = s->conns) != NULL) {
        REMS_ASSERT(c->state == CONN_CLOSED && c->handling != NULL);
        s->conns = c->next;
        c->prev = NULL;
        c->next = NULL;
        c->server = NULL;
    }
    cb = s->close_cb;
    data = s->close_data;
    rems_free(s);
    if (cb != NULL) {
        cb(data);
    }
}

static void listener_close_cb(uv_handle_t *h)
{
    struct http_server *s = h->data;

    s->open_handles--;
    server_maybe_finish(s);
}

static void on_connection(uv_stream_t *listener, int status);

static void spare_close_cb(uv_handle_t *h)
{
    struct http_server *s = h->data;

    s->spare_busy = false;
    s->open_handles--;
    if (s->stopping) {
        server_maybe_finish(s);
        return;
    }
    if (s->accept_pending) {
        s->accept_pending = false;
        on_connection((uv_stream_t *)&s->listener, 0);
    }
}

/* Take the pending socket into the spare handle and close it. libuv stops
 * watching the listener while a socket is pending, so one must be taken. */
static void server_reject(struct http_server *s)
{
    int rv;

    rems_log(REMS_LOG_WARN, "http_connection_refused", "out of memory");
    if (s->spare_busy) {
        s->accept_pending = true; /* Taken from spare_close_cb(). */
        return;
    }
    rv = uv_tcp_init(s->loop, &s->spare);
    REMS_ASSERT(rv == 0); /* Without a socket to make, it cannot fail. */
    s->spare.data = s;
    s->spare_busy = true;
    s->open_handles++;
    (void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&s->spare);
    uv_close((uv_handle_t *)&s->spare, spare_close_cb);
}

/* Write "ip:port" of the peer of @c into c->peer. */
static void conn_peer_name(struct conn *c)
{
    struct sockaddr_storage sa;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&sa;
    char ip[INET_ADDRSTRLEN];
    int len = (int)sizeof sa;

    memcpy(c->peer, "unknown", sizeof "unknown");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) != 0 ||
        sa.ss_family != AF_INET || uv_ip4_name(sin, ip, sizeof ip) != 0) {
        return;
    }
    snprintf(c->peer, sizeof c->peer, "%s:%u", ip,
             (unsigned)ntohs(sin->sin_port));
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct http_server *s = listener->data;
    struct conn *c;
    int rv;

    if (status < 0) {
        rems_log(REMS_LOG_WARN, "http_accept_failed", uv_strerror(status));
        return;
    }
    c = rems_malloc(sizeof *c);
    if (c == NULL) {
        server_reject(s);
        return;
    }
    /* Everything but the input buffer starts zeroed. */
    memset(c, 0, offsetof(struct conn, in));
    /* Neither can fail: without an address family no socket is made. */
    rv = uv_tcp_init(s->loop, &c->tcp);
    REMS_ASSERT(rv == 0);
    rv = uv_timer_init(s->loop, &c->timer);
    REMS_ASSERT(rv == 0);
    c->tcp.data = c;
    c->timer.data = c;
    c->server = s;
    c->state = CONN_READING;
    c->open_handles = 2;
    s->open_handles += 2;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->n_conns++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;

    rv = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rv != 0) {
        conn_close(c);
        return;
    }
    conn_peer_name(c);
    (void)uv_tcp_nodelay(&c->tcp, 1); /* Answers are small and whole. */
    conn_read(c);
}

static void failed_start_close_cb(uv_handle_t *h)
{
    rems_free(h->data);
}

/* Describe a libuv error of bind/listen and translate it. */
static int listen_error(const struct http_server *s, int uvrv, char *errmsg)
{
    rems_errmsgf(errmsg, "listen %s: %s", s->addr, uv_strerror(uvrv));
    switch (uvrv) {
        case UV_EADDRINUSE:
            return REMS_EADDRINUSE;
        case UV_EADDRNOTAVAIL:
        case UV_EINVAL:
            return REMS_EINVAL;
        case UV_ENOMEM:
        case UV_ENOBUFS:
            return REMS_ENOMEM;
        default:
            return REMS_EIO;
    }
}

int http_server_start(uv_loop_t *loop,
                      const struct http_server_options *opts,
                      struct http_server **out,
                      char *errmsg)
{
    struct http_server *s;
    struct sockaddr_in addr;
    struct sockaddr_storage name;
    int namelen = (int)sizeof name;
    int rv;

    PRE(loop != NULL && opts != NULL && out != NULL && errmsg != NULL);
    PRE(opts->handler != NULL);

    if (opts->host == NULL || uv_ip4_addr(opts->host, opts->port, &addr) != 0) {
        rems_errmsgf(errmsg, "listen %s:%u: not an IPv4 address",
                     opts->host != NULL ? opts->host : "(null)",
                     (unsigned)opts->port);
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
    s->opts = *opts;
    s->opts.host = NULL; /* Borrowed: only s->addr is kept. */
    if (s->opts.max_body == 0) {
        s->opts.max_body = HTTP_DEFAULT_MAX_BODY;
    }
    if (s->opts.max_header == 0) {
        s->opts.max_header = HTTP_DEFAULT_MAX_HEADER;
    }
    if (s->opts.idle_timeout_ms == 0) {
        s->opts.idle_timeout_ms = HTTP_DEFAULT_IDLE_MS;
    }
    snprintf(s->addr, sizeof s->addr, "%s:%u", opts->host,
             (unsigned)opts->port);

    /* Without an address family no socket is made: it cannot fail. */
    rv = uv_tcp_init(loop, &s->listener);
    REMS_ASSERT(rv == 0);
    s->listener.data = s;
    s->open_handles = 1;
    /* libuv may keep a bind error (EADDRINUSE) for uv_listen() to report. */
    rv = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (rv == 0) {
        rv =
            uv_listen((uv_stream_t *)&s->listener, HTTP_BACKLOG, on_connection);
    }
    if (rv == 0) {
        rv = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&name,
                                &namelen);
    }
    if (rv != 0) {
        rv = listen_error(s, rv, errmsg);
        goto err_after_tcp_init;
    }
    s->port = ntohs(((const struct sockaddr_in *)&name)->sin_port);
    snprintf(s->addr, sizeof s->addr, "%s:%u", opts->host, (unsigned)s->port);

    *out = s;
    return 0;

err_after_tcp_init:
    /* An initialised handle belongs to the loop until its close callback
     * has run: the server's memory goes there. */
    uv_close((uv_handle_t *)&s->listener, failed_start_close_cb);
err:
    POST(rv != 0);
    return rv;
}

uint16_t http_server_port(const struct http_server *s)
{
    PRE(s != NULL);
    return s->port;
}

void http_server_stop(struct http_server *s,
                      http_server_close_cb cb,
                      void *data)
{
    struct conn *c;

    PRE(s != NULL && !s->stopping);
    s->stopping = true;
    s->close_cb = cb;
    s->close_data = data;
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
    /* conn_close() frees nothing at once: the list stays walkable. */
    for (c = s->conns; c != NULL; c = c->next) {
        conn_close(c);
    }
}

size_t http_server_connections(const struct http_server *s)
{
    PRE(s != NULL);
    return s->n_conns;
}

/* ------------------------------------------------------------------------
 * Requests: the handler's side
 * ------------------------------------------------------------------------ */

const char *http_request_header(const struct http_request *req,
                                const char *name)
{
    size_t i;

    PRE(req != NULL && name != NULL);
    for (i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0) {
            return req->headers[i].value;
        }
    }
    return NULL;
}

/* True when the @n bytes at @k, form-decoded, are @name. */
static bool query_key_is(const char *k, size_t n, const char *name)
{
    size_t i = 0;
    size_t j = 0;
    int ch;

    while (i < n) {
        ch = pct_next(k, n, &i, true);
        if (ch < 0 || name[j] == '\0' || (unsigned char)name[j] != ch) {
            return false;
        }
        j++;
    }
    return name[j] == '\0';
}

int http_request_query(const struct http_request *req,
                       const char *name,
                       char *out,
                       size_t cap)
{
    const char *q;
    const char *end;
    const char *eq;
    const char *v;
    size_t vlen;
    size_t i;
    size_t o = 0;
    int ch;

    PRE(req != NULL && name != NULL && (out != NULL || cap == 0));
    if (req->query == NULL) {
        return 0;
    }
    for (q = req->query;; q = end + 1) {
        end = q + strcspn(q, "&");
        eq = memchr(q, '=', (size_t)(end - q));
        if (query_key_is(q, (size_t)((eq != NULL ? eq : end) - q), name)) {
            break;
        }
        if (*end == '\0') {
            return 0;
        }
    }
    v = eq != NULL ? eq + 1 : end;
    vlen = (size_t)(end - v);
    for (i = 0; i < vlen;) {
        ch = pct_next(v, vlen, &i, true);
        if (ch < 0 || o + 1 >= cap) {
            goto err;
        }
        out[o++] = (char)ch;
    }
    if (cap == 0) {
        return -1;
    }
    out[o] = '\0';
    return 1;

err:
    if (cap > 0) {
        out[0] = '\0';
    }
    return -1;
}

/* True when the handler's own headers ask to close the connection. */
static bool headers_say_close(const struct http_header *headers, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcasecmp(headers[i].name, "connection") == 0 &&
            strcasecmp(headers[i].value, "close") == 0) {
            return true;
        }
    }
    return false;
}

void http_request_respond(struct http_request *req,
                          int status,
                          const struct http_header *headers,
                          size_t n_headers,
                          const char *body,
                          size_t len)
{
    struct request *r;
    struct conn *c;
    struct response rsp = {0};
    bool own_close;
    int rv;

    PRE(req != NULL && status >= 100 && status <= 999);
    PRE(headers != NULL || n_headers == 0);
    PRE(body != NULL || len == 0);
    r = REMS_CONTAINER_OF(req, struct request, pub);
    c = req->conn;
    PRE(c != NULL && c->handling == r);
    c->handling = NULL;

    if (c->state != CONN_HANDLING) {
        /* Closed meanwhile (by the peer, an error or http_server_stop()):
         * the answer has nowhere to go. */
        request_free(r);
        if (c->state == CONN_CLOSED) {
            conn_destroy(c);
        }
        return;
    }

    own_close = headers_say_close(headers, n_headers);
    rsp.status = status;
    rsp.headers = headers;
    rsp.n_headers = n_headers;
    rsp.body = body;
    rsp.len = len;
    rsp.close = !req->keep_alive && !own_close;
    rsp.keep_alive = req->keep_alive && !own_close && r->http10;
    rsp.head = r->head;
    rv = conn_send(c, &rsp);
    request_free(r);
    if (rv != 0) {
        conn_close(c);
        return;
    }
    if (rsp.close || own_close) {
        conn_drain(c);
        return;
    }

    conn_move(c, CONN_READING);
    http_parser_pause(&c->parser, 0);
    if (c->processing) {
        return; /* Answered from the handler: conn_process() goes on. */
    }
    if (c->in_off < c->in_len) {
        /* Pipelined bytes wait: parse them from the loop, so the handler is
         * not called from inside this function. */
        c->kick = true;
        uv_timer_start(&c->timer, timer_cb, 0, 0);
        return;
    }
    conn_read(c);
}

const char *http_status_text(int status)
{
    switch (status) {
        case 100:
            return "Continue";
        case 101:
            return "Switching Protocols";
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 202:
            return "Accepted";
        case 204:
            return "No Content";
        case 301:
            return "Moved Permanently";
        case 302:
            return "Found";
        case 303:
            return "See Other";
        case 304:
            return "Not Modified";
        case 307:
            return "Temporary Redirect";
        case 308:
            return "Permanent Redirect";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 406:
            return "Not Acceptable";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 410:
            return "Gone";
        case 411:
            return "Length Required";
        case 412:
            return "Precondition Failed";
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 415:
            return "Unsupported Media Type";
        case 416:
            return "Range Not Satisfiable";
        case 417:
            return "Expectation Failed";
        case 422:
            return "Unprocessable Content";
        case 426:
            return "Upgrade Required";
        case 428:
            return "Precondition Required";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        case 505:
            return "HTTP Version Not Supported";
        default:
            return "Unknown";
    }
}
