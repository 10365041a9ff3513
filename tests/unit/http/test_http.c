/* Tests of api/http.c: a real loop, the server on 127.0.0.1:0, and clients
 * that are libuv TCP handles on the same loop, parsing the answers with
 * http_parser in HTTP_RESPONSE mode. */
/* clang-format off */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <http_parser.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "tests/lib/heap.h"
#include "tests/lib/loop.h"

#define MAX_CLIENTS 4
#define MAX_RESPONSES 8
#define MAX_PENDING 4

/* Run the loop one iteration at a time until @cond holds. */
#define RUN_UNTIL(f, cond)                                                     \
    do {                                                                       \
        int i_;                                                                \
        for (i_ = 0; i_ < 100000 && !(cond); i_++) {                           \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                   \
        }                                                                      \
        assert_true(cond);                                                     \
    } while (0)

struct response {
    int status;
    char headers[2048]; /* "name: value\n" per header, names lower-cased. */
    size_t headers_len;
    char body[4096];
    size_t body_len;
    bool last_was_value;
};

struct client {
    struct fixture *f;
    uv_tcp_t tcp;
    uv_connect_t connect;
    http_parser parser;
    bool connected;
    int connect_status;
    bool eof; /* EOF or a read error. */
    bool closed;
    bool head; /* The next answers are to HEAD requests. */
    int writes_queued;
    int writes_done;
    int parse_errno;
    int n_responses;
    struct response rsp[MAX_RESPONSES];
};

enum mode {
    MODE_ECHO,  /* Answer at once. */
    MODE_DEFER, /* Keep the request in f->pending. */
    MODE_TIMER, /* Answer from a zero timeout. */
    MODE_STOP,  /* Stop the server, then answer. */
    MODE_CLOSE  /* Answer with the handler's own "Connection: close". */
};

struct fixture {
    struct test_heap heap;
    uv_loop_t loop;
    struct http_server *server;
    struct http_server_options opts;
    char errmsg[REMS_ERRMSG_SIZE];
    bool stopped;
    enum mode mode;
    int n_handled;
    struct http_request *pending[MAX_PENDING];
    int n_pending;
    uv_timer_t timer;
    bool timer_init;
    /* Copies of what the handler saw last. */
    int method;
    char path[256];
    char raw_path[256];
    char query[256];
    bool has_query;
    char body[4096];
    size_t body_len;
    bool body_nul;
    char peer[64];
    char x_test[256];
    char x_empty[256];
    size_t n_headers;
    struct client clients[MAX_CLIENTS];
};

/* ------------------------------------------------------------------------
 * Handler
 * ------------------------------------------------------------------------ */

/* Answer 200 with the request body, or the decoded path when empty. */
static void answer(struct http_request *req)
{
    struct http_header h[] = {{(char *)"X-Raw-Path", req->raw_path}};
    if (req->body_len > 0) {
        http_request_respond(req, 200, h, 1, req->body, req->body_len);
    } else {
        http_request_respond(req, 200, h, 1, req->path, strlen(req->path));
    }
}

static void stopped_cb(void *data)
{
    struct fixture *f = data;
    f->stopped = true;
}

static void answer_timer_cb(uv_timer_t *t)
{
    struct fixture *f = t->data;
    int i;
    for (i = 0; i < f->n_pending; i++) {
        answer(f->pending[i]);
    }
    f->n_pending = 0;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? src : "");
}

static void handler(struct http_request *req, void *data)
{
    struct fixture *f = data;
    const char *x;

    f->n_handled++;
    f->method = req->method;
    copy_str(f->path, sizeof f->path, req->path);
    copy_str(f->raw_path, sizeof f->raw_path, req->raw_path);
    f->has_query = req->query != NULL;
    copy_str(f->query, sizeof f->query, req->query);
    if (req->body_len < sizeof f->body) {
        memcpy(f->body, req->body, req->body_len);
    }
    f->body_len = req->body_len;
    f->body_nul = req->body[req->body_len] == '\0';
    copy_str(f->peer, sizeof f->peer, req->peer);
    x = http_request_header(req, "X-Test");
    copy_str(f->x_test, sizeof f->x_test, x != NULL ? x : "(none)");
    x = http_request_header(req, "x-empty");
    copy_str(f->x_empty, sizeof f->x_empty, x != NULL ? x : "(none)");
    f->n_headers = req->n_headers;

    switch (f->mode) {
        case MODE_ECHO:
            answer(req);
            break;
        case MODE_DEFER:
            assert_true(f->n_pending < MAX_PENDING);
            f->pending[f->n_pending++] = req;
            break;
        case MODE_TIMER:
            assert_true(f->n_pending < MAX_PENDING);
            f->pending[f->n_pending++] = req;
            if (!f->timer_init) {
                assert_int_equal(uv_timer_init(&f->loop, &f->timer), 0);
                f->timer.data = f;
                f->timer_init = true;
            }
            uv_timer_start(&f->timer, answer_timer_cb, 0, 0);
            break;
        case MODE_STOP:
            http_server_stop(f->server, stopped_cb, f);
            answer(req); /* Dropped and freed: the connection is closing. */
            break;
        case MODE_CLOSE: {
            struct http_header h[] = {{(char *)"Connection", (char *)"close"}};
            http_request_respond(req, 503, h, 1, "no", 2);
            break;
        }
    }
}

/* ------------------------------------------------------------------------
 * Fixture
 * ------------------------------------------------------------------------ */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_heap_install(&f->heap);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->opts.host = "127.0.0.1";
    f->opts.port = 0;
    f->opts.handler = handler;
    f->opts.data = f;
    *state = f;
    return 0;
}

static void start(struct fixture *f)
{
    assert_int_equal(
        http_server_start(&f->loop, &f->opts, &f->server, f->errmsg), 0);
    assert_int_not_equal(http_server_port(f->server), 0);
}

static void stop(struct fixture *f)
{
    http_server_stop(f->server, stopped_cb, f);
    RUN_UNTIL(f, f->stopped);
    f->server = NULL;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;
    int i;

    if (f->server != NULL && !f->stopped) {
        stop(f);
    }
    for (i = 0; i < f->n_pending; i++) {
        answer(f->pending[i]);
    }
    f->n_pending = 0;
    test_loop_close(&f->loop); /* asserts uv_loop_close() == 0 */
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f);
    assert_int_equal(live, 0); /* Last, so a leak still cleans up. */
    return 0;
}

/* ------------------------------------------------------------------------
 * Client
 * ------------------------------------------------------------------------ */

static struct response *cur_rsp(http_parser *p)
{
    struct client *c = p->data;
    assert_true(c->n_responses < MAX_RESPONSES);
    return &c->rsp[c->n_responses];
}

static void rsp_append_headers(struct response *r, const char *s, size_t n)
{
    assert_true(r->headers_len + n < sizeof r->headers);
    memcpy(r->headers + r->headers_len, s, n);
    r->headers_len += n;
    r->headers[r->headers_len] = '\0';
}

static int c_on_message_begin(http_parser *p)
{
    memset(cur_rsp(p), 0, sizeof(struct response));
    return 0;
}

static int c_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct response *r = cur_rsp(p);
    size_t i;
    size_t start;
    if (r->last_was_value) {
        rsp_append_headers(r, "\n", 1);
        r->last_was_value = false;
    }
    start = r->headers_len;
    rsp_append_headers(r, at, len);
    for (i = start; i < r->headers_len; i++) {
        if (r->headers[i] >= 'A' && r->headers[i] <= 'Z') {
            r->headers[i] = (char)(r->headers[i] - 'A' + 'a');
        }
    }
    return 0;
}

static int c_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct response *r = cur_rsp(p);
    if (!r->last_was_value) {
        rsp_append_headers(r, ": ", 2);
        r->last_was_value = true;
    }
    rsp_append_headers(r, at, len);
    return 0;
}

static int c_on_headers_complete(http_parser *p)
{
    struct client *c = p->data;
    struct response *r = cur_rsp(p);
    if (r->last_was_value) {
        rsp_append_headers(r, "\n", 1);
    }
    r->status = (int)p->status_code;
    /* 1 means "no body follows": the answer to a HEAD request. */
    return c->head && r->status >= 200 ? 1 : 0;
}

static int c_on_body(http_parser *p, const char *at, size_t len)
{
    struct response *r = cur_rsp(p);
    assert_true(r->body_len + len < sizeof r->body);
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int c_on_message_complete(http_parser *p)
{
    struct client *c = p->data;
    c->n_responses++;
    return 0;
}

static const http_parser_settings client_settings = {
    .on_message_begin = c_on_message_begin,
    .on_header_field = c_on_header_field,
    .on_header_value = c_on_header_value,
    .on_headers_complete = c_on_headers_complete,
    .on_body = c_on_body,
    .on_message_complete = c_on_message_complete,
};

static void c_alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(size);
    buf->len = size;
}

static void c_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct client *c = s->data;
    size_t n;
    if (nread > 0) {
        n = http_parser_execute(&c->parser, &client_settings, buf->base,
                                (size_t)nread);
        if (c->parser.http_errno != HPE_OK || n != (size_t)nread) {
            c->parse_errno = (int)c->parser.http_errno;
        }
    } else if (nread < 0) {
        c->eof = true;
        uv_read_stop(s);
    }
    free(buf->base);
}

static void c_connect_cb(uv_connect_t *req, int status)
{
    struct client *c = req->data;
    c->connected = true;
    c->connect_status = status;
    if (status == 0) {
        assert_int_equal(
            uv_read_start((uv_stream_t *)&c->tcp, c_alloc_cb, c_read_cb), 0);
    }
}

/* Start connecting client @i to the server. */
static struct client *client_start(struct fixture *f, int i)
{
    struct client *c = &f->clients[i];
    struct sockaddr_in addr;

    memset(c, 0, sizeof *c);
    c->f = f;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    assert_int_equal(uv_tcp_init(&f->loop, &c->tcp), 0);
    c->tcp.data = c;
    c->connect.data = c;
    assert_int_equal(
        uv_ip4_addr("127.0.0.1", http_server_port(f->server), &addr), 0);
    assert_int_equal(uv_tcp_connect(&c->connect, &c->tcp,
                                    (const struct sockaddr *)&addr,
                                    c_connect_cb),
                     0);
    return c;
}

/* Connect client @i to the server and wait for the connection. */
static struct client *client_connect(struct fixture *f, int i)
{
    struct client *c = client_start(f, i);
    RUN_UNTIL(f, c->connected);
    assert_int_equal(c->connect_status, 0);
    return c;
}

struct client_write {
    uv_write_t req;
    struct client *c;
    char data[];
};

static void c_write_cb(uv_write_t *req, int status)
{
    struct client_write *w = (struct client_write *)req;
    (void)status; /* The server may have closed already. */
    w->c->writes_done++;
    free(w);
}

static void client_send_n(struct client *c, const char *data, size_t len)
{
    struct client_write *w = malloc(sizeof *w + len);
    uv_buf_t buf;
    assert_non_null(w);
    memcpy(w->data, data, len);
    w->c = c;
    buf = uv_buf_init(w->data, (unsigned)len);
    assert_int_equal(
        uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, c_write_cb), 0);
    c->writes_queued++;
}

static void client_send(struct client *c, const char *data)
{
    client_send_n(c, data, strlen(data));
}

static void c_close_cb(uv_handle_t *h)
{
    struct client *c = h->data;
    c->closed = true;
}

static void client_close(struct client *c)
{
    uv_close((uv_handle_t *)&c->tcp, c_close_cb);
    RUN_UNTIL(c->f, c->closed);
}

/* Wait for @n answers on @c (or for the connection to end). */
static void client_wait(struct client *c, int n)
{
    RUN_UNTIL(c->f, c->n_responses >= n || c->eof);
    assert_int_equal(c->parse_errno, 0);
    assert_int_equal(c->n_responses, n);
}

static bool has_header(const struct response *r, const char *line)
{
    char want[256];
    snprintf(want, sizeof want, "%s\n", line);
    return strstr(r->headers, want) != NULL;
}

/* ------------------------------------------------------------------------
 * Requests and answers
 * ------------------------------------------------------------------------ */

/* A GET with a query and headers: the handler sees them all. */
static void get_with_query_and_headers(void **state)
{
    struct fixture *f = *state;
    struct client *c;
    char want[64];

    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /v1/items?a=1&b=two HTTP/1.1\r\n"
                   "Host: localhost\r\n"
                   "X-Test:   Hello World  \r\n"
                   "X-Empty:\r\n"
                   "Accept: */*\r\n\r\n");
    client_wait(c, 1);
    assert_int_equal(f->n_handled, 1);
    assert_int_equal(f->method, HTTP_GET);
    assert_string_equal(f->path, "/v1/items");
    assert_string_equal(f->raw_path, "/v1/items");
    assert_true(f->has_query);
    assert_string_equal(f->query, "a=1&b=two");
    assert_string_equal(f->x_test, "Hello World");
    assert_string_equal(f->x_empty, "");
    assert_int_equal(f->n_headers, 4);
    assert_int_equal(f->body_len, 0);
    assert_true(f->body_nul);
    snprintf(want, sizeof want, "127.0.0.1:");
    assert_memory_equal(f->peer, want, strlen(want));

    assert_int_equal(c->rsp[0].status, 200);
    assert_string_equal(c->rsp[0].body, "/v1/items");
    assert_true(has_header(&c->rsp[0], "x-raw-path: /v1/items"));
    assert_true(has_header(&c->rsp[0], "content-length: 9"));
    assert_null(strstr(c->rsp[0].headers, "connection:"));
    assert_false(c->eof);
    assert_int_equal(http_server_connections(f->server), 1);
}

/* Names are lower-cased and names and values split over many reads are
 * joined: the request arrives one byte at a time. */
static void request_in_one_byte_pieces(void **state)
{
    struct fixture *f = *state;
    const char *req = "POST /p?q=%41 HTTP/1.1\r\n"
                      "X-TEST: split value\r\n"
                      "Content-Length: 5\r\n\r\nhello";
    struct client *c;
    size_t i;

    start(f);
    c = client_connect(f, 0);
    for (i = 0; i < strlen(req); i++) {
        client_send_n(c, req + i, 1);
        RUN_UNTIL(f, c->writes_done == c->writes_queued);
        uv_run(&f->loop, UV_RUN_NOWAIT); /* Let the server read it. */
    }
    client_wait(c, 1);
    assert_int_equal(f->n_handled, 1);
    assert_int_equal(f->method, HTTP_POST);
    assert_string_equal(f->path, "/p");
    assert_string_equal(f->query, "q=%41");
    assert_string_equal(f->x_test, "split value");
    assert_int_equal(f->body_len, 5);
    assert_memory_equal(f->body, "hello", 5);
    assert_string_equal(c->rsp[0].body, "hello");
}

/* A PUT's body reaches the handler, NUL-terminated. */
static void put_with_body(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "PUT /v1/x HTTP/1.1\r\nContent-Length: 11\r\n\r\n"
                   "hello world");
    client_wait(c, 1);
    assert_int_equal(f->method, HTTP_PUT);
    assert_int_equal(f->body_len, 11);
    assert_memory_equal(f->body, "hello world", 11);
    assert_true(f->body_nul);
    assert_int_equal(c->rsp[0].status, 200);
    assert_string_equal(c->rsp[0].body, "hello world");
}

/* A chunked body under the limit is joined; trailers are not headers. */
static void chunked_body(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->opts.max_body = 16;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Test: trailer\r\n\r\n");
    client_wait(c, 1);
    assert_int_equal(f->body_len, 11);
    assert_memory_equal(f->body, "hello world", 11);
    assert_string_equal(f->x_test, "(none)");
    assert_int_equal(f->n_headers, 1);
    assert_string_equal(c->rsp[0].body, "hello world");
}

/* Two requests, one after the other, on one keep-alive connection. */
static void keep_alive_two_requests(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    client_wait(c, 1);
    client_send(c, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    client_wait(c, 2);
    assert_int_equal(f->n_handled, 2);
    assert_string_equal(c->rsp[0].body, "/a");
    assert_string_equal(c->rsp[1].body, "/b");
    assert_false(c->eof);
    assert_int_equal(http_server_connections(f->server), 1);
}

/* Two requests in one write are answered in order. */
static void pipelined_in_order(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /a HTTP/1.1\r\n\r\nPUT /b HTTP/1.1\r\n"
                   "Content-Length: 3\r\n\r\nbbbGET /c HTTP/1.1\r\n\r\n");
    client_wait(c, 3);
    assert_int_equal(f->n_handled, 3);
    assert_string_equal(c->rsp[0].body, "/a");
    assert_string_equal(c->rsp[1].body, "bbb");
    assert_string_equal(c->rsp[2].body, "/c");
}

/* With pipelining, the next request waits until the previous one is
 * answered, even when the handler answers later. */
static void pipelined_deferred(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->mode = MODE_DEFER;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    RUN_UNTIL(f, f->n_handled == 1);
    RUN_UNTIL(f, c->writes_done == 1);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->n_handled, 1);
    assert_string_equal(f->path, "/a");
    answer(f->pending[0]);
    f->n_pending = 0;
    RUN_UNTIL(f, f->n_handled == 2);
    assert_string_equal(f->path, "/b");
    answer(f->pending[0]);
    f->n_pending = 0;
    client_wait(c, 2);
    assert_string_equal(c->rsp[0].body, "/a");
    assert_string_equal(c->rsp[1].body, "/b");
}

/* The handler answers from a timer callback. */
static void async_answer_from_timer(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->mode = MODE_TIMER;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /later HTTP/1.1\r\n\r\n");
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 200);
    assert_string_equal(c->rsp[0].body, "/later");
    client_send(c, "GET /again HTTP/1.1\r\n\r\n");
    client_wait(c, 2);
    assert_string_equal(c->rsp[1].body, "/again");
}

/* A HEAD answer has the Content-Length of the body but not the body. */
static void head_without_body(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    c->head = true;
    client_send(c, "HEAD /four HTTP/1.1\r\n\r\nHEAD /x HTTP/1.1\r\n\r\n");
    client_wait(c, 2);
    assert_int_equal(f->method, HTTP_HEAD);
    assert_true(has_header(&c->rsp[0], "content-length: 5"));
    assert_int_equal(c->rsp[0].body_len, 0);
    assert_true(has_header(&c->rsp[1], "content-length: 2"));
}

/* "Connection: close" from the client: the answer says so and the server
 * closes after writing it. */
static void connection_close(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /bye HTTP/1.1\r\nConnection: close\r\n\r\n");
    client_wait(c, 1);
    assert_true(has_header(&c->rsp[0], "connection: close"));
    RUN_UNTIL(f, c->eof);
    client_close(c);
    RUN_UNTIL(f, http_server_connections(f->server) == 0);
}

/* HTTP/1.0 closes unless it asks for keep-alive, which is then echoed. */
static void http10_keep_alive(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    client_wait(c, 1);
    assert_true(has_header(&c->rsp[0], "connection: keep-alive"));
    client_send(c, "GET /c HTTP/1.0\r\n\r\n");
    client_wait(c, 2);
    assert_true(has_header(&c->rsp[1], "connection: close"));
    RUN_UNTIL(f, c->eof);
}

/* "Expect: 100-continue" gets an interim answer before the body is sent. */
static void expect_continue(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "PUT /e HTTP/1.1\r\nContent-Length: 4\r\n"
                   "Expect: 100-continue\r\n\r\n");
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 100);
    assert_int_equal(f->n_handled, 0);
    client_send(c, "body");
    client_wait(c, 2);
    assert_int_equal(c->rsp[1].status, 200);
    assert_string_equal(c->rsp[1].body, "body");
}

/* A status without a body (204) has no Content-Length. */
static void no_content(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->mode = MODE_DEFER;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "DELETE /x HTTP/1.1\r\n\r\n");
    RUN_UNTIL(f, f->n_pending == 1);
    http_request_respond(f->pending[0], 204, NULL, 0, NULL, 0);
    f->n_pending = 0;
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 204);
    assert_null(strstr(c->rsp[0].headers, "content-length"));
}

/* ------------------------------------------------------------------------
 * Limits and errors
 * ------------------------------------------------------------------------ */

/* A Content-Length over max_body is answered 413 before the body is read;
 * the handler never sees the request and the connection closes. */
static void content_length_over_max_body(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->opts.max_body = 16;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "PUT /big HTTP/1.1\r\nContent-Length: 100\r\n\r\n"
                   "0123456789");
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 413);
    assert_string_equal(c->rsp[0].body,
                        "{\"error\":{\"code\":\"payload_too_large\","
                        "\"message\":\"body of 100 bytes is over the limit "
                        "of 16 bytes\",\"field\":\"body\"}}");
    assert_true(has_header(&c->rsp[0], "connection: close"));
    assert_true(has_header(&c->rsp[0], "content-type: application/json"));
    RUN_UNTIL(f, c->eof);
    assert_int_equal(f->n_handled, 0);
    /* The peer closes: the server's lingering read sees EOF and closes. */
    client_close(c);
    RUN_UNTIL(f, http_server_connections(f->server) == 0);
}

/* Exactly max_body bytes are fine. */
static void content_length_at_max_body(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->opts.max_body = 4;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "PUT / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd");
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 200);
    assert_string_equal(c->rsp[0].body, "abcd");
}

/* A chunked body is answered 413 as soon as it goes over max_body. */
static void chunked_over_max_body(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->opts.max_body = 16;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "10\r\n0123456789abcdef\r\n5\r\nhello\r\n");
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 413);
    assert_non_null(strstr(c->rsp[0].body, "\"payload_too_large\""));
    assert_non_null(strstr(c->rsp[0].body, "limit of 16 bytes"));
    RUN_UNTIL(f, c->eof);
    assert_int_equal(f->n_handled, 0);
}

/* A bad request line gets 400 naming the http_parser error. */
static void bad_request_line(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "GARBAGE / HTTP/1.1\r\n\r\n");
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 400);
    assert_non_null(strstr(c->rsp[0].body, "\"code\":\"bad_request\""));
    assert_non_null(strstr(c->rsp[0].body, "HPE_INVALID_METHOD"));
    assert_true(has_header(&c->rsp[0], "connection: close"));
    RUN_UNTIL(f, c->eof);
    assert_int_equal(f->n_handled, 0);
}

/* An error after a good pipelined request: the first is answered, then
 * the 400, then the connection closes. */
static void bad_request_after_good_one(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /ok HTTP/1.1\r\n\r\nGET /x HTTP/9.9x\r\n\r\n");
    client_wait(c, 2);
    assert_int_equal(c->rsp[0].status, 200);
    assert_int_equal(c->rsp[1].status, 400);
    RUN_UNTIL(f, c->eof);
    assert_int_equal(f->n_handled, 1);
}

/* Headers over max_header bytes get 431. */
static void headers_over_max_header(void **state)
{
    struct fixture *f = *state;
    struct client *c;
    char req[512];
    char value[101];

    f->opts.max_header = 64;
    start(f);
    c = client_connect(f, 0);
    memset(value, 'v', 100);
    value[100] = '\0';
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nX-Big: %s\r\n\r\n", value);
    client_send(c, req);
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 431);
    assert_non_null(strstr(c->rsp[0].body, "\"code\":\"headers_too_large\""));
    RUN_UNTIL(f, c->eof);
    assert_int_equal(f->n_handled, 0);
}

/* A request target longer than max_header gets 414. */
static void uri_too_long(void **state)
{
    struct fixture *f = *state;
    struct client *c;
    char req[512];
    char path[101];

    f->opts.max_header = 64;
    start(f);
    c = client_connect(f, 0);
    memset(path, 'p', 100);
    path[100] = '\0';
    snprintf(req, sizeof req, "GET /%s HTTP/1.1\r\n\r\n", path);
    client_send(c, req);
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 414);
    RUN_UNTIL(f, c->eof);
    assert_int_equal(f->n_handled, 0);
}

/* The path is percent-decoded; raw_path is kept as received. */
static void percent_decoded_path(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /v1/a%20b%2Fc%7e+d?x=%20 HTTP/1.1\r\n\r\n");
    client_wait(c, 1);
    assert_string_equal(f->path, "/v1/a b/c~+d");
    assert_string_equal(f->raw_path, "/v1/a%20b%2Fc%7e+d");
    assert_string_equal(f->query, "x=%20");
    assert_true(has_header(&c->rsp[0], "x-raw-path: /v1/a%20b%2Fc%7e+d"));
}

/* An absolute-form target keeps only its path and query. */
static void absolute_form_target(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET http://example.com:80/abs/p?z=1 HTTP/1.1\r\n\r\n"
                   "GET http://example.com HTTP/1.1\r\n\r\n"
                   "GET http://example.com?q=2 HTTP/1.1\r\n\r\n");
    client_wait(c, 3);
    assert_string_equal(c->rsp[0].body, "/abs/p");
    assert_string_equal(c->rsp[1].body, "/");
    assert_string_equal(c->rsp[2].body, "/");
    assert_string_equal(f->path, "/");
    assert_true(f->has_query);
    assert_string_equal(f->query, "q=2");
    /* The request line parses but the URL does not (port out of range). */
    client_send(c, "GET http://example.com:99999/x HTTP/1.1\r\n\r\n");
    client_wait(c, 4);
    assert_int_equal(c->rsp[3].status, 400);
    assert_non_null(strstr(c->rsp[3].body, "not a valid URL"));
    RUN_UNTIL(f, c->eof);
}

/* Bad percent-encoding in the path gets 400. */
static void bad_percent_encoding(void **state)
{
    struct fixture *f = *state;
    const char *reqs[] = {
        "GET /x%zz HTTP/1.1\r\n\r\n",
        "GET /x%00 HTTP/1.1\r\n\r\n",
        "GET /x% HTTP/1.1\r\n\r\n",
        "GET /x%4 HTTP/1.1\r\n\r\n",
    };
    struct client *c;
    size_t i;

    start(f);
    for (i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        c = client_connect(f, 0);
        client_send(c, reqs[i]);
        client_wait(c, 1);
        assert_int_equal(c->rsp[0].status, 400);
        assert_non_null(strstr(c->rsp[0].body, "\"field\":\"path\""));
        RUN_UNTIL(f, c->eof);
        client_close(c);
    }
    assert_int_equal(f->n_handled, 0);
    RUN_UNTIL(f, http_server_connections(f->server) == 0);
}

/* A single header name over max_header also gets 431. */
static void header_name_over_max_header(void **state)
{
    struct fixture *f = *state;
    struct client *c;
    char req[512];
    char name[101];

    f->opts.max_header = 64;
    start(f);
    c = client_connect(f, 0);
    memset(name, 'n', 100);
    name[100] = '\0';
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\n%s: v\r\n\r\n", name);
    client_send(c, req);
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 431);
    RUN_UNTIL(f, c->eof);
}

/* With max_header above http_parser's own limit (80 KiB), that limit
 * answers 431 too. */
static void headers_over_parser_limit(void **state)
{
    struct fixture *f = *state;
    struct client *c;
    size_t n = 90 * 1024;
    char *req = malloc(n + 64);
    size_t len;

    assert_non_null(req);
    f->opts.max_header = 1 << 20;
    start(f);
    c = client_connect(f, 0);
    len = (size_t)sprintf(req, "GET / HTTP/1.1\r\nX-Big: ");
    memset(req + len, 'v', n);
    len += n;
    memcpy(req + len, "\r\n\r\n", 4);
    len += 4;
    client_send_n(c, req, len);
    free(req);
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 431);
    assert_non_null(strstr(c->rsp[0].body, "81920 bytes"));
    RUN_UNTIL(f, c->eof);
    assert_int_equal(f->n_handled, 0);
}

/* A body larger than one read arrives whole. */
static void large_body(void **state)
{
    struct fixture *f = *state;
    struct client *c;
    size_t n = 100 * 1000;
    char *req = malloc(n + 128);
    size_t len;
    size_t i;

    assert_non_null(req);
    start(f);
    c = client_connect(f, 0);
    f->mode = MODE_DEFER;
    len = (size_t)sprintf(
        req, "PUT /big HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);
    for (i = 0; i < n; i++) {
        req[len + i] = (char)('a' + i % 26);
    }
    client_send_n(c, req, len + n);
    RUN_UNTIL(f, f->n_pending == 1);
    assert_int_equal(f->pending[0]->body_len, n);
    assert_memory_equal(f->pending[0]->body, req + len, n);
    assert_int_equal(f->pending[0]->body[n], '\0');
    free(req);
    http_request_respond(f->pending[0], 201, NULL, 0, NULL, 0);
    f->n_pending = 0;
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 201);
    assert_true(has_header(&c->rsp[0], "content-length: 0"));
}

/* The peer closes in the middle of a request: no answer, no leak. */
static void eof_mid_request(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /ok HTTP/1.1\r\n\r\nGET /half HTTP/1.1\r\nHo");
    client_wait(c, 1);
    client_close(c);
    RUN_UNTIL(f, http_server_connections(f->server) == 0);
    assert_int_equal(f->n_handled, 1);
}

/* The handler's own "Connection: close" closes the connection, without a
 * second Connection header. */
static void handler_closes(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->mode = MODE_CLOSE;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 503);
    assert_true(has_header(&c->rsp[0], "connection: close"));
    assert_null(strstr(strstr(c->rsp[0].headers, "connection: close") + 1,
                       "connection:"));
    RUN_UNTIL(f, c->eof);
    assert_int_equal(c->n_responses, 1);
    assert_int_equal(f->n_handled, 1);
}

/* ------------------------------------------------------------------------
 * Server lifetime
 * ------------------------------------------------------------------------ */

/* A port already in use gives REMS_EADDRINUSE and a message. */
static void port_in_use(void **state)
{
    struct fixture *f = *state;
    struct http_server *other = NULL;
    struct http_server_options o = f->opts;
    char want[REMS_ERRMSG_SIZE];
    int rv;

    start(f);
    o.port = http_server_port(f->server);
    rv = http_server_start(&f->loop, &o, &other, f->errmsg);
    assert_int_equal(rv, REMS_EADDRINUSE);
    assert_null(other);
    snprintf(want, sizeof want, "listen 127.0.0.1:%u: address already in use",
             (unsigned)o.port);
    assert_string_equal(f->errmsg, want);
}

/* A host that is not an IPv4 literal gives REMS_EINVAL. */
static void bad_host(void **state)
{
    struct fixture *f = *state;
    struct http_server *s = NULL;

    f->opts.host = "localhost";
    assert_int_equal(http_server_start(&f->loop, &f->opts, &s, f->errmsg),
                     REMS_EINVAL);
    assert_null(s);
    assert_string_equal(f->errmsg, "listen localhost:0: not an IPv4 address");
    f->opts.host = NULL;
    assert_int_equal(http_server_start(&f->loop, &f->opts, &s, f->errmsg),
                     REMS_EINVAL);
    assert_null(s);
    /* A valid address that is not this machine's (TEST-NET-1). */
    f->opts.host = "192.0.2.1";
    assert_int_equal(http_server_start(&f->loop, &f->opts, &s, f->errmsg),
                     REMS_EINVAL);
    assert_null(s);
    assert_string_equal(f->errmsg, "listen 192.0.2.1:0: address not available");
}

/* Out of memory at start gives REMS_ENOMEM and no leak. */
static void start_out_of_memory(void **state)
{
    struct fixture *f = *state;
    int rv;
    long n;

    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = http_server_start(&f->loop, &f->opts, &f->server, f->errmsg);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(f->server);
        assert_int_equal(f->heap.live, 0);
    }
    test_heap_fail_after(&f->heap, -1);
    assert_non_null(f->server);
}

/* The peer goes away while the handler holds the request: answering later
 * frees everything. */
static void peer_closes_before_answer(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->mode = MODE_DEFER;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /gone HTTP/1.1\r\n\r\n");
    RUN_UNTIL(f, f->n_pending == 1);
    client_close(c);
    answer(f->pending[0]);
    f->n_pending = 0;
    RUN_UNTIL(f, http_server_connections(f->server) == 0);
}

/* No request within idle_timeout_ms: the server closes. */
static void idle_timeout(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->opts.idle_timeout_ms = 1;
    start(f);
    c = client_connect(f, 0);
    RUN_UNTIL(f, c->eof);
    assert_int_equal(c->n_responses, 0);
    RUN_UNTIL(f, http_server_connections(f->server) == 0);
    client_close(c);
}

/* Stop with idle keep-alive connections: all close, then the callback. */
static void stop_with_idle_connections(void **state)
{
    struct fixture *f = *state;
    struct client *a;
    struct client *b;

    start(f);
    a = client_connect(f, 0);
    b = client_connect(f, 1);
    client_send(a, "GET /a HTTP/1.1\r\n\r\n");
    client_send(b, "GET /b HTTP/1.1\r\n\r\n");
    client_wait(a, 1);
    client_wait(b, 1);
    RUN_UNTIL(f, http_server_connections(f->server) == 2);
    stop(f);
    RUN_UNTIL(f, a->eof && b->eof);
}

/* Connections close in any order: here the middle one of three. */
static void middle_connection_closes(void **state)
{
    struct fixture *f = *state;
    struct client *a;
    struct client *b;
    struct client *c;

    start(f);
    a = client_connect(f, 0);
    b = client_connect(f, 1);
    c = client_connect(f, 2);
    client_send(a, "GET /a HTTP/1.1\r\n\r\n");
    client_send(c, "GET /c HTTP/1.1\r\n\r\n");
    client_wait(a, 1);
    client_wait(c, 1);
    assert_int_equal(http_server_connections(f->server), 3);
    client_send(b, "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n");
    client_wait(b, 1);
    RUN_UNTIL(f, b->eof);
    client_close(b);
    RUN_UNTIL(f, http_server_connections(f->server) == 2);
    client_send(a, "GET /a2 HTTP/1.1\r\n\r\n");
    client_send(c, "GET /c2 HTTP/1.1\r\n\r\n");
    client_wait(a, 2);
    client_wait(c, 2);
}

/* Stop with a request the handler still owns: the callback runs when the
 * handles are closed, and answering afterwards only frees. */
static void stop_with_pending_request(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->mode = MODE_DEFER;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /pending HTTP/1.1\r\n\r\n");
    RUN_UNTIL(f, f->n_pending == 1);
    stop(f);
    RUN_UNTIL(f, c->eof);
    assert_int_equal(c->n_responses, 0);
    answer(f->pending[0]);
    f->n_pending = 0;
    assert_int_equal(f->heap.live, 0);
}

/* The handler stops the server from inside its call. */
static void stop_from_handler(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    f->mode = MODE_STOP;
    start(f);
    c = client_connect(f, 0);
    client_send(c, "GET /stop HTTP/1.1\r\n\r\nGET /never HTTP/1.1\r\n\r\n");
    RUN_UNTIL(f, f->stopped);
    f->server = NULL;
    RUN_UNTIL(f, c->eof);
    assert_int_equal(f->n_handled, 1);
    assert_int_equal(c->n_responses, 0);
}

/* ------------------------------------------------------------------------
 * Out of memory while serving
 * ------------------------------------------------------------------------ */

/* The connection's own struct cannot be allocated: the socket is closed,
 * and the server goes on accepting. */
static void accept_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct client *c;

    start(f);
    test_heap_fail_after(&f->heap, 0);
    c = client_connect(f, 0);
    RUN_UNTIL(f, c->eof);
    test_heap_fail_after(&f->heap, -1);
    client_close(c);
    assert_int_equal(http_server_connections(f->server), 0);
    c = client_connect(f, 1);
    client_send(c, "GET /ok HTTP/1.1\r\n\r\n");
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 200);
}

/* Two sockets wait while no struct conn can be allocated: the second one
 * waits for the spare handle, then both are closed. */
static void accept_out_of_memory_twice(void **state)
{
    struct fixture *f = *state;
    struct client *a;
    struct client *b;
    struct client *c;

    start(f);
    test_heap_fail_after(&f->heap, 0);
    a = client_start(f, 0);
    b = client_start(f, 1);
    RUN_UNTIL(f, a->eof && b->eof);
    test_heap_fail_after(&f->heap, -1);
    client_close(a);
    client_close(b);
    c = client_connect(f, 2);
    client_send(c, "GET /ok HTTP/1.1\r\n\r\n");
    client_wait(c, 1);
    assert_int_equal(c->rsp[0].status, 200);
}

/* Fail the n-th allocation while serving @req, for every n: the connection
 * closes (with no answer, or with a part of them) and nothing leaks, until
 * @n_answers answers come, the last with @status. Returns the number of
 * allocations the request needs. */
static long sweep(struct fixture *f, const char *req, int n_answers, int status)
{
    struct client *c;
    long base = f->heap.live;
    long n;

    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        c = client_connect(f, 0);
        client_send(c, req);
        RUN_UNTIL(f, c->n_responses == n_answers || c->eof);
        test_heap_fail_after(&f->heap, -1);
        client_close(c);
        RUN_UNTIL(f, http_server_connections(f->server) == 0);
        assert_int_equal(f->heap.live, base);
        if (c->n_responses == n_answers) {
            assert_int_equal(c->rsp[n_answers - 1].status, status);
            return n;
        }
        assert_true(n < 1000);
    }
}

/* Failing the n-th allocation of a request, for every n: the connection
 * closes without an answer and nothing leaks, until the request succeeds.
 * The requests put the growth of the header block at each boundary. */
static void request_out_of_memory(void **state)
{
    struct fixture *f = *state;
    char req[1024];
    char v61[62];
    char n63[64];
    int i;

    memset(v61, 'v', 61);
    v61[61] = '\0';
    memset(n63, 'n', 63);
    n63[63] = '\0';
    start(f);
    assert_true(sweep(f,
                      "PUT /x?y=1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n"
                      "X-B: 2\r\nContent-Length: 5\r\n\r\nhello",
                      1, 200) > 5);
    /* A value ends at the block's capacity, then a name follows. */
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nx: %s\r\ny: 1\r\n\r\n", v61);
    sweep(f, req, 1, 200);
    /* A name ends at the block's capacity, then its value follows. */
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\n%s: 1\r\n\r\n", n63);
    sweep(f, req, 1, 200);
    /* A value goes over the block's capacity. */
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nx: %s%s\r\n\r\n", v61, v61);
    sweep(f, req, 1, 200);
    /* The last value ends at the block's capacity. */
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nx: %s\r\n\r\n", v61);
    sweep(f, req, 1, 200);
    /* More headers than the first offset array holds. */
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\n");
    for (i = 0; i < 20; i++) {
        snprintf(req + strlen(req), sizeof req - strlen(req), "h%d: %d\r\n", i,
                 i);
    }
    snprintf(req + strlen(req), sizeof req - strlen(req), "\r\n");
    sweep(f, req, 1, 200);
    /* The interim answer to "Expect: 100-continue". */
    sweep(f,
          "PUT / HTTP/1.1\r\nExpect: 100-continue\r\n"
          "Content-Length: 2\r\n\r\nok",
          2, 200);
    /* Chunked, with a trailer. */
    sweep(f,
          "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
          "3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
          1, 200);
}

/* The same for the answers the server makes itself. */
static void error_out_of_memory(void **state)
{
    struct fixture *f = *state;

    f->opts.max_body = 4;
    start(f);
    sweep(f, "PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 1, 413);
    sweep(f, "GET /%zz HTTP/1.1\r\n\r\n", 1, 400);
    sweep(f, "BAD / HTTP/1.1\r\n\r\n", 1, 400);
    assert_int_equal(f->n_handled, 0);
}

/* ------------------------------------------------------------------------
 * Helpers without a server
 * ------------------------------------------------------------------------ */

static void query_edge_cases(void **state)
{
    struct http_request req = {0};
    char out[16];
    char tiny[3];

    (void)state;
    assert_int_equal(http_request_query(&req, "a", out, sizeof out), 0);

    req.query = (char *)"a=1&b=hello+world&c=%41%42&d&e=&a=2&x%79=k&&=v";
    assert_int_equal(http_request_query(&req, "a", out, sizeof out), 1);
    assert_string_equal(out, "1"); /* The first one wins. */
    assert_int_equal(http_request_query(&req, "b", out, sizeof out), 1);
    assert_string_equal(out, "hello world");
    assert_int_equal(http_request_query(&req, "c", out, sizeof out), 1);
    assert_string_equal(out, "AB");
    assert_int_equal(http_request_query(&req, "d", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(http_request_query(&req, "e", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(http_request_query(&req, "xy", out, sizeof out), 1);
    assert_string_equal(out, "k");
    assert_int_equal(http_request_query(&req, "", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(http_request_query(&req, "missing", out, sizeof out), 0);
    assert_int_equal(http_request_query(&req, "hello", out, sizeof out), 0);

    /* It does not fit: -1, and an empty string. */
    assert_int_equal(http_request_query(&req, "b", tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "");
    assert_int_equal(http_request_query(&req, "c", tiny, sizeof tiny), 1);
    assert_string_equal(tiny, "AB");
    assert_int_equal(http_request_query(&req, "d", NULL, 0), -1);

    req.query = (char *)"bad=%4&nul=%00&zz=%zz&ok=%7e";
    assert_int_equal(http_request_query(&req, "bad", out, sizeof out), -1);
    assert_int_equal(http_request_query(&req, "nul", out, sizeof out), -1);
    assert_int_equal(http_request_query(&req, "zz", out, sizeof out), -1);
    assert_int_equal(http_request_query(&req, "ok", out, sizeof out), 1);
    assert_string_equal(out, "~");

    req.query = (char *)"";
    assert_int_equal(http_request_query(&req, "a", out, sizeof out), 0);
    req.query = (char *)"%zz=1&a=2";
    assert_int_equal(http_request_query(&req, "a", out, sizeof out), 1);
    assert_string_equal(out, "2");
}

static void header_lookup(void **state)
{
    struct http_header h[] = {{(char *)"x-a", (char *)"1"},
                              {(char *)"content-type", (char *)"text/x"}};
    struct http_request req = {0};

    (void)state;
    assert_null(http_request_header(&req, "x-a"));
    req.headers = h;
    req.n_headers = 2;
    assert_string_equal(http_request_header(&req, "X-A"), "1");
    assert_string_equal(http_request_header(&req, "Content-Type"), "text/x");
    assert_null(http_request_header(&req, "x-b"));
}

static void status_texts(void **state)
{
    const int codes[] = {100, 101, 200, 201, 202, 204, 301, 302, 303, 304,
                         307, 308, 400, 401, 403, 404, 405, 406, 408, 409,
                         410, 411, 412, 413, 414, 415, 416, 417, 422, 426,
                         428, 429, 431, 500, 501, 502, 503, 504, 505};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_string_not_equal(http_status_text(codes[i]), "Unknown");
    }
    assert_string_equal(http_status_text(200), "OK");
    assert_string_equal(http_status_text(404), "Not Found");
    assert_string_equal(http_status_text(431),
                        "Request Header Fields Too Large");
    assert_string_equal(http_status_text(299), "Unknown");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(get_with_query_and_headers),
        T(request_in_one_byte_pieces),
        T(put_with_body),
        T(chunked_body),
        T(keep_alive_two_requests),
        T(pipelined_in_order),
        T(pipelined_deferred),
        T(async_answer_from_timer),
        T(head_without_body),
        T(connection_close),
        T(http10_keep_alive),
        T(expect_continue),
        T(no_content),
        T(content_length_over_max_body),
        T(content_length_at_max_body),
        T(chunked_over_max_body),
        T(bad_request_line),
        T(bad_request_after_good_one),
        T(headers_over_max_header),
        T(uri_too_long),
        T(percent_decoded_path),
        T(absolute_form_target),
        T(bad_percent_encoding),
        T(header_name_over_max_header),
        T(headers_over_parser_limit),
        T(large_body),
        T(eof_mid_request),
        T(handler_closes),
        T(port_in_use),
        T(bad_host),
        T(start_out_of_memory),
        T(peer_closes_before_answer),
        T(idle_timeout),
        T(stop_with_idle_connections),
        T(middle_connection_closes),
        T(stop_with_pending_request),
        T(stop_from_handler),
        T(accept_out_of_memory),
        T(accept_out_of_memory_twice),
        T(request_out_of_memory),
        T(error_out_of_memory),
        T(query_edge_cases),
        T(header_lookup),
        T(status_texts),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
