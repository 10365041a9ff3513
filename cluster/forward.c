/* HTTP calls to other nodes (write forwarding, read index, join) with
 * libcurl's multi interface driven by the node's libuv loop.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION: one
 * uv_poll_t per socket, created on demand and closed when curl removes the
 * socket) and when to wake up (CURLMOPT_TIMERFUNCTION: one uv_timer_t).
 * Poll events and timer expiry call curl_multi_socket_action(); finished
 * transfers are collected with curl_multi_info_read() and their callbacks
 * run. Connections are kept alive and reused by the multi handle, so a
 * follower forwards writes to the leader over a warm connection.
 *
 * Close: pending transfers finish with REMS_ESHUTDOWN, then the timer and
 * every poll handle are closed; cluster__forward_idle() turns true when the
 * last handle is gone. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "cluster/node_int.h"
#include "common/assert.h"
#include "common/heap.h"
#include "common/log.h"

#define FORWARD_MAX_RESPONSE (8u << 20)

struct curl_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct cluster_node *node;
};

static void finish(struct cluster_forward *f, int status, long http_status)
{
    struct cluster_node *n = f->node;
    CURLM *multi = n->multi;
    REMS_QUEUE_REMOVE(&f->queue);
    curl_multi_remove_handle(multi, f->easy);
    curl_easy_cleanup(f->easy);
    curl_slist_free_all(f->headers);
    f->easy = NULL;
    f->headers = NULL;
    rems_free(f->req_body);
    f->req_body = NULL;
    {
        /* The callback may free f: take the answer out first. */
        char *resp = f->resp;
        size_t len = f->resp_len;
        f->resp = NULL;
        f->resp_len = 0;
        f->resp_cap = 0;
        f->cb(f, status, http_status, resp != NULL ? resp : "", len);
        rems_free(resp);
    }
}

static void free_resp(struct cluster_forward *f)
{
    rems_free(f->resp);
    f->resp = NULL;
    f->resp_len = 0;
    f->resp_cap = 0;
}

static void check_done(struct cluster_node *n)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(n->multi, &left)) != NULL) {
        struct cluster_forward *f;
        long code = 0;
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        if (msg->data.result != CURLE_OK) {
            int status;
            switch (msg->data.result) {
                case CURLE_OPERATION_TIMEDOUT:
                    status = REMS_ETIMEDOUT;
                    break;
                case CURLE_COULDNT_CONNECT:
                case CURLE_COULDNT_RESOLVE_HOST:
                    /* No connection: the request never left this node. */
                    status = REMS_ENOLEADER;
                    break;
                default:
                    status = REMS_EIO;
                    break;
            }
            if (f->errmsg[0] == '\0') {
                rems_errmsgf(f->errmsg, "%s",
                             curl_easy_strerror(msg->data.result));
            }
            finish(f, status, 0);
            continue;
        }
        f->errmsg[0] = '\0';
        finish(f, 0, code);
    }
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    struct curl_sock *s = p->data;
    struct cluster_node *n = s->node;
    int flags = 0;
    int running;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    }
    if (events & UV_READABLE) {
        flags |= CURL_CSELECT_IN;
    }
    if (events & UV_WRITABLE) {
        flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(n->multi, s->fd, flags, &running);
    check_done(n);
}

static void sock_closed_cb(uv_handle_t *h)
{
    struct curl_sock *s = h->data;
    struct cluster_node *n = s->node;
    n->curl_handles_open--;
    rems_free(s);
    if (n->stopping) {
        cluster__stop_continue(n);
    }
}

static int socket_cb(CURL *easy,
                     curl_socket_t fd,
                     int what,
                     void *userp,
                     void *socketp)
{
    struct cluster_node *n = userp;
    struct curl_sock *s = socketp;
    int events = 0;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, sock_closed_cb);
            curl_multi_assign(n->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = rems_calloc(1, sizeof *s);
        if (s == NULL) {
            return -1;
        }
        s->fd = fd;
        s->node = n;
        if (uv_poll_init_socket(n->loop, &s->poll, fd) != 0) {
            rems_free(s);
            return -1;
        }
        s->poll.data = s;
        n->curl_handles_open++;
        curl_multi_assign(n->multi, fd, s);
    }
    if (what & CURL_POLL_IN) {
        events |= UV_READABLE;
    }
    if (what & CURL_POLL_OUT) {
        events |= UV_WRITABLE;
    }
    uv_poll_start(&s->poll, events, poll_cb);
    return 0;
}

static void curl_timer_cb(uv_timer_t *t)
{
    struct cluster_node *n = t->data;
    int running;
    curl_multi_socket_action(n->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(n);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct cluster_node *n = userp;
    (void)multi;
    if (timeout_ms < 0) {
        uv_timer_stop(&n->curl_timer);
    } else {
        /* 0 means "now": let the loop run it on its next turn. */
        uv_timer_start(&n->curl_timer, curl_timer_cb, (uint64_t)timeout_ms,
                       0);
    }
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct cluster_forward *f = userdata;
    size_t len = size * nmemb;
    if (f->resp_len + len + 1 > FORWARD_MAX_RESPONSE) {
        rems_errmsgf(f->errmsg, "answer over %u bytes", FORWARD_MAX_RESPONSE);
        return 0;
    }
    if (f->resp_len + len + 1 > f->resp_cap) {
        size_t cap = f->resp_cap == 0 ? 4096 : f->resp_cap;
        char *p;
        while (cap < f->resp_len + len + 1) {
            cap *= 2;
        }
        p = rems_realloc(f->resp, cap);
        if (p == NULL) {
            rems_errmsg_oom(f->errmsg);
            return 0;
        }
        f->resp = p;
        f->resp_cap = cap;
    }
    memcpy(f->resp + f->resp_len, ptr, len);
    f->resp_len += len;
    f->resp[f->resp_len] = '\0';
    return len;
}

int cluster__forward_init(struct cluster_node *n, char *errmsg)
{
    static bool global_done = false;
    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
            rems_errmsgf(errmsg, "libcurl: global init failed");
            return REMS_EIO;
        }
        global_done = true;
    }
    n->multi = curl_multi_init();
    if (n->multi == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    curl_multi_setopt(n->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(n->multi, CURLMOPT_SOCKETDATA, n);
    curl_multi_setopt(n->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(n->multi, CURLMOPT_TIMERDATA, n);
    curl_multi_setopt(n->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 64L);
    uv_timer_init(n->loop, &n->curl_timer);
    n->curl_timer.data = n;
    n->curl_handles_open = 1;
    return 0;
}

static void curl_timer_closed_cb(uv_handle_t *h)
{
    struct cluster_node *n = h->data;
    n->curl_handles_open--;
    cluster__stop_continue(n);
}

void cluster__forward_close(struct cluster_node *n)
{
    n->forward_closing = true;
    while (!REMS_QUEUE_EMPTY(&n->forwards)) {
        struct cluster_forward *f = REMS_QUEUE_DATA(
            REMS_QUEUE_HEAD(&n->forwards), struct cluster_forward, queue);
        rems_errmsgf(f->errmsg, "node is shutting down");
        free_resp(f);
        finish(f, REMS_ESHUTDOWN, 0);
    }
    /* Cleaning the multi handle closes its cached connections; curl calls
     * socket_cb(REMOVE) for each, which closes the poll handles. */
    curl_multi_cleanup(n->multi);
    n->multi = NULL;
    uv_timer_stop(&n->curl_timer);
    uv_close((uv_handle_t *)&n->curl_timer, curl_timer_closed_cb);
}

bool cluster__forward_idle(struct cluster_node *n)
{
    return n->curl_handles_open == 0;
}

int cluster_node_forward(struct cluster_node *n,
                         struct cluster_forward *req,
                         const char *api_address,
                         const char *method,
                         const char *path_query,
                         const char *const *headers,
                         size_t n_headers,
                         const char *body,
                         size_t body_len,
                         unsigned timeout_ms,
                         cluster_forward_cb cb)
{
    char url[1024];
    CURL *easy;
    struct curl_slist *list = NULL;
    size_t i;

    if (n->forward_closing) {
        return REMS_ESHUTDOWN;
    }
    memset(req->errmsg, 0, sizeof req->errmsg);
    req->node = n;
    req->cb = cb;
    req->resp = NULL;
    req->resp_len = 0;
    req->resp_cap = 0;
    req->req_body = NULL;
    snprintf(url, sizeof url, "http://%s%s", api_address, path_query);
    easy = curl_easy_init();
    if (easy == NULL) {
        return REMS_ENOMEM;
    }
    for (i = 0; i < n_headers; i++) {
        struct curl_slist *l2 = curl_slist_append(list, headers[i]);
        if (l2 == NULL) {
            curl_slist_free_all(list);
            curl_easy_cleanup(easy);
            return REMS_ENOMEM;
        }
        list = l2;
    }
    /* No "Expect: 100-continue" round trip on forwarded bodies. */
    {
        struct curl_slist *l2 = curl_slist_append(list, "Expect:");
        if (l2 == NULL) {
            curl_slist_free_all(list);
            curl_easy_cleanup(easy);
            return REMS_ENOMEM;
        }
        list = l2;
    }
    if (body_len > 0) {
        req->req_body = rems_malloc(body_len);
        if (req->req_body == NULL) {
            curl_slist_free_all(list);
            curl_easy_cleanup(easy);
            return REMS_ENOMEM;
        }
        memcpy(req->req_body, body, body_len);
    }
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(timeout_ms < 2000 ? timeout_ms : 2000));
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    if (body_len > 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "POST") == 0) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS,
                         req->req_body != NULL ? req->req_body : "");
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)body_len);
    }
    req->easy = easy;
    req->headers = list;
    REMS_QUEUE_PUSH(&n->forwards, &req->queue);
    if (curl_multi_add_handle(n->multi, easy) != CURLM_OK) {
        REMS_QUEUE_REMOVE(&req->queue);
        curl_slist_free_all(list);
        curl_easy_cleanup(easy);
        rems_free(req->req_body);
        req->req_body = NULL;
        return REMS_EIO;
    }
    n->metrics.forwarded++;
    return 0;
}
