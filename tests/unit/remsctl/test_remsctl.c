/* Tests of remsctl: the command line, YAML and JSON input, tables and
 * answers, and whole commands against a stub HTTP server.
 *
 * remsctl is a program, so this file includes api/remsctl.c (built with
 * REMSCTL_NO_MAIN) and calls its static functions. The stub server runs on a
 * thread, listens on 127.0.0.1 on a port the kernel picks, serves canned
 * answers in order, one connection each, and records each request. Once it
 * has served them all it stops listening, so an unexpected extra request
 * fails at once instead of waiting. jansson allocates through the test heap,
 * so every test checks that nothing leaked. */
#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "api/remsctl.c"
#include "tests/lib/heap.h"

/* ------------------------------------------------------------------------
 * Stub HTTP server
 * ------------------------------------------------------------------------ */

#define STUB_MAX 16

struct stub {
    int fd;
    int port;
    pthread_t thread;
    char *answers[STUB_MAX]; /* Whole HTTP responses, malloc()ed. */
    size_t nanswers;
    char *requests[STUB_MAX]; /* As received, malloc()ed. */
    size_t nrequests;
};

/* Read one request: the head, then Content-Length bytes of body. */
static char *stub_read_request(int fd)
{
    size_t cap = 1 << 16;
    size_t len = 0;
    size_t body = 0;
    char *buf = malloc(cap + 1);
    char *end = NULL;
    ssize_t n;

    /* This runs on the stub's thread, where cmocka cannot fail a test. */
    if (buf == NULL) {
        abort();
    }
    for (;;) {
        if ((end != NULL && len >= (size_t)(end + 4 - buf) + body) ||
            len == cap) {
            break;
        }
        n = read(fd, buf + len, cap - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strstr(buf, "Content-Length: ");
            if (cl != NULL && cl < end) {
                body = (size_t)strtoul(cl + 16, NULL, 10);
            }
        }
    }
    buf[len] = '\0';
    return buf;
}

static void *stub_main(void *arg)
{
    struct stub *s = arg;
    size_t i;

    for (i = 0; i < s->nanswers; i++) {
        int c = accept(s->fd, NULL, NULL);
        size_t off = 0;
        size_t len = strlen(s->answers[i]);
        if (c < 0) {
            break;
        }
        s->requests[s->nrequests++] = stub_read_request(c);
        while (off < len) {
            ssize_t n = write(c, s->answers[i] + off, len - off);
            if (n <= 0) {
                break;
            }
            off += (size_t)n;
        }
        close(c);
    }
    /* Refuse further connections. */
    shutdown(s->fd, SHUT_RDWR);
    return NULL;
}

/* A socket bound to a free port of 127.0.0.1; with @listen_too, listening. */
static int bind_loopback(int *port, bool listen_too)
{
    struct sockaddr_in sa = {0};
    socklen_t salen = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
    *port = ntohs(sa.sin_port);
    if (listen_too) {
        assert_int_equal(listen(fd, 8), 0);
    }
    return fd;
}

/* A port of 127.0.0.1 where nothing listens: connections are refused. */
static int closed_port(void)
{
    int port;
    int fd = bind_loopback(&port, false);
    close(fd);
    return port;
}

static void stub_answer(struct stub *s,
                        const char *status,
                        const char *headers,
                        const char *body)
{
    char *a;
    size_t size = strlen(status) + strlen(headers) + strlen(body) + 200;

    assert_true(s->nanswers < STUB_MAX);
    a = malloc(size);
    assert_non_null(a);
    snprintf(a, size,
             "HTTP/1.1 %s\r\nContent-Type: application/json\r\n%s"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
             status, headers, strlen(body), body);
    s->answers[s->nanswers++] = a;
}

static void stub_start(struct stub *s)
{
    s->fd = bind_loopback(&s->port, true);
    assert_int_equal(pthread_create(&s->thread, NULL, stub_main, s), 0);
}

static void stub_stop(struct stub *s)
{
    size_t i;

    shutdown(s->fd, SHUT_RDWR); /* Wakes accept() if requests are missing. */
    pthread_join(s->thread, NULL);
    close(s->fd);
    for (i = 0; i < s->nanswers; i++) {
        free(s->answers[i]);
    }
    for (i = 0; i < s->nrequests; i++) {
        free(s->requests[i]);
    }
}

/* ------------------------------------------------------------------------
 * Fixture
 * ------------------------------------------------------------------------ */

struct fixture {
    struct test_heap heap;
    struct stub stub;
    bool stub_started;
    char endpoint[64]; /* "127.0.0.1:PORT" of the stub. */
    int code;
    char *out;
    size_t out_len;
    char *err;
    size_t err_len;
    char errmsg[REMS_ERRMSG_SIZE];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    test_heap_install(&f->heap);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

    if (f->stub_started) {
        stub_stop(&f->stub);
    }
    free(f->out);
    free(f->err);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f);
    assert_int_equal(live, 0);
    return 0;
}

static void start_stub(struct fixture *f)
{
    stub_start(&f->stub);
    f->stub_started = true;
    snprintf(f->endpoint, sizeof f->endpoint, "127.0.0.1:%d", f->stub.port);
}

/* The @i-th request the stub received. */
static const char *request(struct fixture *f, size_t i)
{
    assert_true(i < f->stub.nrequests);
    return f->stub.requests[i];
}

static void assert_request_has(struct fixture *f, size_t i, const char *text)
{
    const char *req = request(f, i);
    if (strstr(req, text) == NULL) {
        fail_msg("request %zu lacks \"%s\":\n%s", i, text, req);
    }
}

static void assert_request_lacks(struct fixture *f, size_t i, const char *text)
{
    const char *req = request(f, i);
    if (strstr(req, text) != NULL) {
        fail_msg("request %zu has \"%s\":\n%s", i, text, req);
    }
}

/* The body of the @i-th request. */
static const char *request_body(struct fixture *f, size_t i)
{
    const char *end = strstr(request(f, i), "\r\n\r\n");
    assert_non_null(end);
    return end + 4;
}

/* Run remsctl with $REMS_ENDPOINTS @endpoints, $USER "alice" and @input on
 * standard input; keep the exit code, stdout and stderr. */
static int run_argv(struct fixture *f,
                    const char *endpoints,
                    const char *input,
                    char **argv)
{
    struct ctl_env env = {.endpoints = endpoints, .user = "alice"};
    int argc = 0;

    while (argv[argc] != NULL) {
        argc++;
    }
    free(f->out);
    free(f->err);
    env.out = open_memstream(&f->out, &f->out_len);
    env.err = open_memstream(&f->err, &f->err_len);
    env.in = input != NULL && input[0] != '\0'
                 ? fmemopen((void *)input, strlen(input), "r")
                 : fopen("/dev/null", "r");
    assert_non_null(env.in);
    assert_non_null(env.out);
    assert_non_null(env.err);
    f->code = ctl_main(argc, argv, &env);
    fclose(env.in);
    fclose(env.out);
    fclose(env.err);
    return f->code;
}

#define RUN(f, endpoints, input, ...)                                          \
    run_argv((f), (endpoints), (input),                                        \
             (char *[]){"remsctl", __VA_ARGS__, NULL})

/* Run against the stub. */
#define RUN_STUB(f, input, ...) RUN((f), (f)->endpoint, (input), __VA_ARGS__)

/* jansson allocates through rems_malloc(), so the test heap sees it. */
static void *json_heap_malloc(size_t size)
{
    return rems_malloc(size);
}

static void json_heap_free(void *p)
{
    rems_free(p);
}

/* ------------------------------------------------------------------------
 * Command line
 * ------------------------------------------------------------------------ */

static int parse(struct fixture *f, struct ctl_args *a, char **argv)
{
    int argc = 0;

    while (argv[argc] != NULL) {
        argc++;
    }
    return ctl_parse(argc, argv, NULL, NULL, a, f->errmsg);
}

#define PARSE(f, a, ...)                                                       \
    parse((f), (a), (char *[]){"remsctl", __VA_ARGS__, NULL})

/* Without options: the default endpoint, user and timeout, table output. */
static void parse_defaults(void **state)
{
    struct fixture *f = *state;
    struct ctl_args a;

    assert_int_equal(PARSE(f, &a, "status"), 0);
    assert_int_equal(a.action, CTL_ACTION_RUN);
    assert_int_equal(a.cmd->id, CMD_STATUS);
    assert_int_equal(a.nendpoints, 1);
    assert_string_equal(a.endpoint[0], "127.0.0.1:7101");
    assert_string_equal(a.user, "anonymous");
    assert_int_equal(a.timeout_ms, 10000);
    assert_false(a.json);
    assert_null(a.reason);
    ctl_args_close(&a);
}

/* $REMS_ENDPOINTS and $USER are the defaults; options override them. */
static void parse_environment(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"remsctl", "member", "list", NULL};
    char *argv2[] = {"remsctl", "--endpoints", "h:1",  "--user",
                     "bob",     "member",      "list", NULL};
    struct ctl_args a;

    assert_int_equal(
        ctl_parse(3, argv, "a:1,b:2,[::1]:7101", "carol", &a, f->errmsg), 0);
    assert_int_equal(a.nendpoints, 3);
    assert_string_equal(a.endpoint[0], "a:1");
    assert_string_equal(a.endpoint[1], "b:2");
    assert_string_equal(a.endpoint[2], "[::1]:7101");
    assert_string_equal(a.user, "carol");
    ctl_args_close(&a);

    assert_int_equal(ctl_parse(7, argv2, "a:1", "carol", &a, f->errmsg), 0);
    assert_int_equal(a.nendpoints, 1);
    assert_string_equal(a.endpoint[0], "h:1");
    assert_string_equal(a.user, "bob");
    ctl_args_close(&a);

    /* Empty variables count as unset. */
    assert_int_equal(ctl_parse(3, argv, "", "", &a, f->errmsg), 0);
    assert_string_equal(a.endpoint[0], "127.0.0.1:7101");
    assert_string_equal(a.user, "anonymous");
    ctl_args_close(&a);
}

/* Options may come anywhere, as "--name value", "--name=value", "-xvalue". */
static void parse_option_forms(void **state)
{
    struct fixture *f = *state;
    struct ctl_args a;

    assert_int_equal(PARSE(f, &a, "-ojson", "policy", "--timeout=2.5", "put",
                           "site/a/web", "-f", "-", "--if-match", "0",
                           "--reason", "roll out", "--request-id", "r-1"),
                     0);
    assert_int_equal(a.cmd->id, CMD_POLICY_PUT);
    assert_true(a.json);
    assert_int_equal(a.timeout_ms, 2500);
    assert_int_equal(a.nargs, 1);
    assert_string_equal(a.args[0], "site/a/web");
    assert_string_equal(a.file, "-");
    assert_true(a.has_if_match);
    assert_int_equal(a.if_match, 0);
    assert_string_equal(a.reason, "roll out");
    assert_string_equal(a.request_id, "r-1");
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "policy", "list", "--output", "table",
                           "--prefix=site/", "--limit", "5", "--after", "k",
                           "--all", "--stale"),
                     0);
    assert_int_equal(a.cmd->id, CMD_POLICY_LIST);
    assert_false(a.json);
    assert_string_equal(a.prefix, "site/");
    assert_string_equal(a.limit, "5");
    assert_string_equal(a.after, "k");
    assert_true(a.all);
    assert_true(a.stale);
    ctl_args_close(&a);

    /* "--" ends the options: a key may start with '-'. */
    assert_int_equal(PARSE(f, &a, "policy", "get", "--", "-odd-key"), 0);
    assert_string_equal(a.args[0], "-odd-key");
    ctl_args_close(&a);
}

static void parse_member_commands(void **state)
{
    struct fixture *f = *state;
    struct ctl_args a;

    assert_int_equal(PARSE(f, &a, "member", "add", "4", "127.0.0.1:7004",
                           "127.0.0.1:7104", "--role", "spare"),
                     0);
    assert_int_equal(a.cmd->id, CMD_MEMBER_ADD);
    assert_int_equal(a.nargs, 3);
    assert_string_equal(a.role, "spare");
    assert_true(a.cmd->write);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "member", "transfer"), 0);
    assert_int_equal(a.cmd->id, CMD_MEMBER_TRANSFER);
    assert_int_equal(a.nargs, 0);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "member", "promote", "2"), 0);
    assert_null(a.role);
    ctl_args_close(&a);
}

static void parse_agent_commands(void **state)
{
    struct fixture *f = *state;
    struct ctl_args a;

    assert_int_equal(PARSE(f, &a, "agent", "list", "--online", "--all",
                           "--limit", "5", "--after", "a1", "--stale"),
                     0);
    assert_int_equal(a.cmd->id, CMD_AGENT_LIST);
    assert_true(a.online);
    assert_false(a.offline);
    assert_true(a.all);
    assert_string_equal(a.limit, "5");
    assert_string_equal(a.after, "a1");
    assert_true(a.stale);
    assert_false(a.cmd->write);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "agent", "show", "edge-1.lab:a"), 0);
    assert_int_equal(a.cmd->id, CMD_AGENT_SHOW);
    assert_string_equal(a.args[0], "edge-1.lab:a");
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "lease", "list"), 0);
    assert_int_equal(a.cmd->id, CMD_LEASE_LIST);
    ctl_args_close(&a);
}

static void parse_command_commands(void **state)
{
    struct fixture *f = *state;
    struct ctl_args a;

    assert_int_equal(PARSE(f, &a, "command", "issue", "a1", "restart", "web",
                           "--arg", "mode=fast", "--arg=x=y=z", "--arg",
                           "empty=", "--ttl", "5000", "--wait", "--reason",
                           "roll out"),
                     0);
    assert_int_equal(a.cmd->id, CMD_COMMAND_ISSUE);
    assert_true(a.cmd->write);
    assert_int_equal(a.nargs, 3);
    assert_string_equal(a.args[0], "a1");
    assert_string_equal(a.args[1], "restart");
    assert_string_equal(a.args[2], "web");
    assert_int_equal(a.nkv, 3);
    assert_string_equal(a.kv[0], "mode=fast");
    assert_string_equal(a.kv[1], "x=y=z");
    assert_string_equal(a.kv[2], "empty=");
    assert_true(a.has_ttl);
    assert_int_equal(a.ttl_ms, 5000);
    assert_true(a.wait);
    assert_int_equal(a.wait_ms, 0);
    assert_string_equal(a.reason, "roll out");
    assert_null(a.manifest);
    ctl_args_close(&a);

    /* --wait takes a following number, or =SECONDS. */
    assert_int_equal(
        PARSE(f, &a, "command", "issue", "a1", "stop", "web", "--wait", "2.5"),
        0);
    assert_true(a.wait);
    assert_int_equal(a.wait_ms, 2500);
    assert_int_equal(a.nargs, 3);
    ctl_args_close(&a);
    assert_int_equal(
        PARSE(f, &a, "command", "issue", "--wait=3", "a1", "diagnostics"), 0);
    assert_int_equal(a.wait_ms, 3000);
    assert_int_equal(a.nargs, 2);
    ctl_args_close(&a);
    assert_int_equal(
        PARSE(f, &a, "command", "issue", "a1", "diagnostics", "--wait", "web"),
        0);
    assert_int_equal(a.wait_ms, 0);
    assert_int_equal(a.nargs, 3);
    assert_string_equal(a.args[2], "web");
    assert_false(a.has_ttl);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "command", "issue", "a1", "push_manifest",
                           "--manifest", "m.yaml", "--request-id", "r-1"),
                     0);
    assert_string_equal(a.manifest, "m.yaml");
    assert_string_equal(a.request_id, "r-1");
    assert_int_equal(a.nargs, 2);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "command", "list", "--agent", "a1", "--state",
                           "pending", "--all"),
                     0);
    assert_int_equal(a.cmd->id, CMD_COMMAND_LIST);
    assert_string_equal(a.agent, "a1");
    assert_string_equal(a.state, "pending");
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "command", "show", "c-1", "--stale"), 0);
    assert_int_equal(a.cmd->id, CMD_COMMAND_SHOW);
    assert_true(a.stale);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "command", "cancel", "c-1"), 0);
    assert_int_equal(a.cmd->id, CMD_COMMAND_CANCEL);
    assert_true(a.cmd->write);
    assert_false(a.force);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "command", "cancel", "--force", "c-1"), 0);
    assert_true(a.force);
    ctl_args_close(&a);
}

/* At most 64 --arg, the server's limit. */
static void parse_too_many_command_args(void **state)
{
    struct fixture *f = *state;
    char kv[70][16];
    char *argv[2 * 70 + 8];
    struct ctl_args a;
    int argc = 0;
    int i;

    argv[argc++] = "remsctl";
    argv[argc++] = "command";
    argv[argc++] = "issue";
    argv[argc++] = "a1";
    argv[argc++] = "diagnostics";
    for (i = 0; i < 65; i++) {
        snprintf(kv[i], sizeof kv[i], "k%d=v", i);
        argv[argc++] = "--arg";
        argv[argc++] = kv[i];
    }
    argv[argc] = NULL;
    assert_int_equal(ctl_parse(argc, argv, NULL, NULL, &a, f->errmsg),
                     REMS_EINVAL);
    assert_string_equal(f->errmsg, "more than 64 --arg");
    ctl_args_close(&a);
    argv[argc - 2] = NULL;
    assert_int_equal(ctl_parse(argc - 2, argv, NULL, NULL, &a, f->errmsg), 0);
    assert_int_equal(a.nkv, 64);
    ctl_args_close(&a);
}

/* Each usage error names its cause and the usage to show. */
static void parse_usage_errors(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *argv[8];
        const char *message;
        const char *group;
        int cmd; /* -1: none */
    } cases[] = {
        {{NULL}, "missing command", NULL, -1},
        {{"frob"}, "unknown command 'frob'", NULL, -1},
        {{"policy"}, "missing policy command", "policy", -1},
        {{"policy", "frob"}, "unknown command 'policy frob'", "policy", -1},
        {{"status", "--frob"}, "unknown option '--frob'", NULL, CMD_STATUS},
        {{"policy", "get"},
         "missing arguments (expected KEY)",
         "policy",
         CMD_POLICY_GET},
        {{"policy", "get", "a", "b"},
         "unexpected argument 'b'",
         "policy",
         CMD_POLICY_GET},
        {{"policy", "get", ""},
         "the key may not be empty",
         "policy",
         CMD_POLICY_GET},
        {{"policy", "put", "k", "--stale"},
         "option '--stale' is not valid for 'policy put'",
         "policy",
         CMD_POLICY_PUT},
        {{"policy", "get", "k", "--request-id", "x"},
         "option '--request-id' is not valid for 'policy get'",
         "policy",
         CMD_POLICY_GET},
        {{"status", "--output", "yaml"},
         "invalid output format 'yaml' (expected json or table)",
         NULL,
         CMD_STATUS},
        {{"status", "--timeout", "0"},
         "invalid timeout '0' (expected seconds, more than 0 and at most "
         "86400)",
         NULL,
         CMD_STATUS},
        {{"status", "--timeout", "soon"},
         "invalid timeout 'soon' (expected seconds, more than 0 and at most "
         "86400)",
         NULL,
         CMD_STATUS},
        {{"status", "--timeout"},
         "option '--timeout' needs a value",
         NULL,
         CMD_STATUS},
        {{"status", "--help=yes"},
         "option '--help' takes no value",
         NULL,
         CMD_STATUS},
        {{"status", "--endpoints", "a:1,,b:2"},
         "invalid endpoint '' (expected HOST:PORT)",
         NULL,
         CMD_STATUS},
        {{"status", "--endpoints", "http://a:1"},
         "invalid endpoint 'http://a:1' (expected HOST:PORT)",
         NULL,
         CMD_STATUS},
        {{"member", "add", "0", "a:1", "b:2"},
         "invalid member id '0' (expected a positive integer)",
         "member",
         CMD_MEMBER_ADD},
        {{"member", "add", "4", "a", "b:2"},
         "invalid raft address 'a' (expected HOST:PORT)",
         "member",
         CMD_MEMBER_ADD},
        {{"member", "add", "4", "a:1", "b:99999"},
         "invalid API address 'b:99999' (expected HOST:PORT)",
         "member",
         CMD_MEMBER_ADD},
        {{"member", "remove", "x"},
         "invalid member id 'x' (expected a positive integer)",
         "member",
         CMD_MEMBER_REMOVE},
        {{"member", "promote", "2", "--role", "boss"},
         "invalid role 'boss' (expected voter, standby or spare)",
         "member",
         CMD_MEMBER_PROMOTE},
        {{"member", "remove", "9223372036854775808"},
         "invalid member id '9223372036854775808' (expected a positive "
         "integer)",
         "member",
         CMD_MEMBER_REMOVE},
        {{"policy", "put", "k", "--if-match", "-1"},
         "invalid revision '-1' (expected a number, 0 for a key that must "
         "not exist)",
         "policy",
         CMD_POLICY_PUT},
        {{"policy", "list", "--limit", "0"},
         "invalid limit '0' (expected a positive integer)",
         "policy",
         CMD_POLICY_LIST},
        {{"audit", "list", "--after", "site/a"},
         "invalid index 'site/a' (expected a number)",
         "audit",
         CMD_AUDIT_LIST},
        {{"policy", "delete", "k", "--reason", "a\nb"},
         "--reason may not contain control characters",
         "policy",
         CMD_POLICY_DELETE},
        {{"policy", "delete", "k", "--request-id", "a b"},
         "invalid request id 'a b' (expected 1-64 characters of "
         "[A-Za-z0-9_.:-])",
         "policy",
         CMD_POLICY_DELETE},
        {{"agent", "list", "--online", "--offline"},
         "--online and --offline exclude each other",
         "agent",
         CMD_AGENT_LIST},
        {{"agent", "show", "a b"},
         "invalid agent id 'a b' (expected 1-64 characters of "
         "[A-Za-z0-9_.:-])",
         "agent",
         CMD_AGENT_SHOW},
        {{"agent", "show"},
         "missing arguments (expected ID)",
         "agent",
         CMD_AGENT_SHOW},
        {{"agent", "list", "--arg", "k=v"},
         "option '--arg' is not valid for 'agent list'",
         "agent",
         CMD_AGENT_LIST},
        {{"lease", "list", "--online"},
         "option '--online' is not valid for 'lease list'",
         "lease",
         CMD_LEASE_LIST},
        {{"command", "issue", "a1"},
         "missing arguments (expected AGENT ACTION [SERVICE])",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "web", "extra"},
         "unexpected argument 'extra'",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a/1", "start", "web"},
         "invalid agent id 'a/1' (expected 1-64 characters of "
         "[A-Za-z0-9_.:-])",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "reboot", "web"},
         "invalid action 'reboot' (expected start, stop, restart, pause, "
         "resume, quarantine, push_manifest or diagnostics)",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start"},
         "action 'start' needs a SERVICE",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "--wait", "30"},
         "action 'start' needs a SERVICE",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "stop", ""},
         "the service may not be empty",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "push_manifest"},
         "push_manifest needs --manifest FILE",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "web", "--manifest", "m.yaml"},
         "--manifest is only for push_manifest",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "web", "--arg", "novalue"},
         "invalid --arg 'novalue' (expected KEY=VALUE, a key of 1-128 bytes "
         "and a value of at most 1024)",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "web", "--arg", "=v"},
         "invalid --arg '=v' (expected KEY=VALUE, a key of 1-128 bytes and "
         "a value of at most 1024)",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "--arg=k=1", "--arg", "k=2"},
         "--arg k is given twice",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "web", "--ttl", "0"},
         "invalid TTL '0' (expected milliseconds, 1 to 86400000)",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "web", "--ttl", "86400001"},
         "invalid TTL '86400001' (expected milliseconds, 1 to 86400000)",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "web", "--wait=0"},
         "invalid wait '0' (expected seconds, more than 0 and at most "
         "86400)",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "web", "--wait=soon"},
         "invalid wait 'soon' (expected seconds, more than 0 and at most "
         "86400)",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "issue", "a1", "start", "web", "--stale"},
         "option '--stale' is not valid for 'command issue'",
         "command",
         CMD_COMMAND_ISSUE},
        {{"command", "list", "--state", "done"},
         "invalid state 'done' (expected pending, acked, nacked, expired or "
         "cancelled)",
         "command",
         CMD_COMMAND_LIST},
        {{"command", "list", "--agent", "a b"},
         "invalid agent id 'a b' (expected 1-64 characters of "
         "[A-Za-z0-9_.:-])",
         "command",
         CMD_COMMAND_LIST},
        {{"command", "show", "a/b"},
         "invalid command id 'a/b' (expected 1-64 characters of "
         "[A-Za-z0-9_.:-])",
         "command",
         CMD_COMMAND_SHOW},
        {{"command", "show", "c1", "--force"},
         "option '--force' is not valid for 'command show'",
         "command",
         CMD_COMMAND_SHOW},
        {{"command", "cancel", "c1", "--stale"},
         "option '--stale' is not valid for 'command cancel'",
         "command",
         CMD_COMMAND_CANCEL},
        {{"command", "show", "c1", "--request-id", "r"},
         "option '--request-id' is not valid for 'command show'",
         "command",
         CMD_COMMAND_SHOW},
        {{"help", "frob"}, "unknown command 'frob'", NULL, -1},
        {{"a", "b", "c", "d", "e", "f", "g"}, "unknown command 'a'", NULL, -1},
    };
    size_t i;

    for (i = 0; i < REMS_ARRAY_SIZE(cases); i++) {
        char *argv[10] = {"remsctl"};
        struct ctl_args a;
        size_t n;

        for (n = 0; cases[i].argv[n] != NULL; n++) {
            argv[n + 1] = (char *)cases[i].argv[n];
        }
        if (parse(f, &a, argv) != REMS_EINVAL) {
            fail_msg("case %zu: accepted", i);
        }
        if (strcmp(f->errmsg, cases[i].message) != 0) {
            fail_msg("case %zu: \"%s\", expected \"%s\"", i, f->errmsg,
                     cases[i].message);
        }
        if (cases[i].cmd < 0) {
            assert_null(a.cmd);
        } else {
            assert_non_null(a.cmd);
            assert_int_equal(a.cmd->id, cases[i].cmd);
        }
        if (cases[i].group == NULL) {
            assert_null(a.group);
        } else {
            assert_non_null(a.group);
            assert_string_equal(a.group, cases[i].group);
        }
        ctl_args_close(&a);
    }
}

/* More than CTL_MAX_WORDS words. */
static void parse_too_many_words(void **state)
{
    struct fixture *f = *state;
    struct ctl_args a;

    assert_int_equal(
        PARSE(f, &a, "policy", "get", "1", "2", "3", "4", "5", "6", "7"),
        REMS_EINVAL);
    assert_string_equal(f->errmsg, "too many arguments");
    ctl_args_close(&a);
}

/* help and --help pick their topic; --help wins over other errors. */
static void parse_help_and_version(void **state)
{
    struct fixture *f = *state;
    struct ctl_args a;

    assert_int_equal(PARSE(f, &a, "--help"), 0);
    assert_int_equal(a.action, CTL_ACTION_HELP);
    assert_null(a.cmd);
    assert_null(a.group);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "help"), 0);
    assert_int_equal(a.action, CTL_ACTION_HELP);
    assert_null(a.cmd);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "help", "policy"), 0);
    assert_int_equal(a.action, CTL_ACTION_HELP);
    assert_null(a.cmd);
    assert_string_equal(a.group, "policy");
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "help", "policy", "put"), 0);
    assert_int_equal(a.cmd->id, CMD_POLICY_PUT);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "member", "add", "-h", "--frob"), 0);
    assert_int_equal(a.action, CTL_ACTION_HELP);
    assert_int_equal(a.cmd->id, CMD_MEMBER_ADD);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "--version"), 0);
    assert_int_equal(a.action, CTL_ACTION_VERSION);
    ctl_args_close(&a);
}

static void endpoint_forms(void **state)
{
    (void)state;
    assert_true(endpoint_valid("127.0.0.1:7101"));
    assert_true(endpoint_valid("node-1.example.com:1"));
    assert_true(endpoint_valid("[::1]:65535"));
    assert_true(endpoint_valid("[fe80::1:2]:80"));
    assert_false(endpoint_valid(""));
    assert_false(endpoint_valid("host"));
    assert_false(endpoint_valid(":80"));
    assert_false(endpoint_valid("host:"));
    assert_false(endpoint_valid("host:0"));
    assert_false(endpoint_valid("host:65536"));
    assert_false(endpoint_valid("host:123456"));
    assert_false(endpoint_valid("host:8x"));
    assert_false(endpoint_valid("::1:80"));
    assert_false(endpoint_valid("[]:80"));
    assert_false(endpoint_valid("[::1]80:"));
    assert_false(endpoint_valid("a/b:80"));
    assert_false(endpoint_valid("user@host:80"));
    assert_false(endpoint_valid("host name:80"));
}

/* Out of memory while splitting the endpoints: REMS_ENOMEM, no leak. */
static void parse_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct ctl_args a;
    int rv;
    long n;

    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = PARSE(f, &a, "--endpoints", "a:1,b:2", "status");
        ctl_args_close(&a);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_int_equal(f->heap.live, 0);
    }
    test_heap_fail_after(&f->heap, -1);
}

/* ------------------------------------------------------------------------
 * Paths and queries
 * ------------------------------------------------------------------------ */

static void key_segments_encoded(void **state)
{
    static const struct {
        const char *key;
        const char *path;
    } cases[] = {
        {"site/a/web", "site/a/web"},
        {"a b/c%d/\xc3\xbc", "a%20b/c%25d/%C3%BC"},
        {"a?b#c/d&e=f", "a%3Fb%23c/d%26e%3Df"},
        {"a//b/", "a//b/"},
        {"../x", "../x"},
        {"x", "x"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < REMS_ARRAY_SIZE(cases); i++) {
        struct buf b = {0};
        assert_int_equal(buf_puts(&b, ""), 0);
        assert_int_equal(key_append(&b, cases[i].key), 0);
        assert_string_equal(b.data, cases[i].path);
        buf_close(&b);
    }
}

static void query_parameters(void **state)
{
    struct buf b = {0};

    (void)state;
    assert_int_equal(buf_puts(&b, "/v1/policies"), 0);
    assert_int_equal(query_add(&b, "prefix", "site/a b&c"), 0);
    assert_int_equal(query_add(&b, "limit", NULL), 0);
    assert_int_equal(query_add(&b, "after", "k=1"), 0);
    assert_string_equal(b.data,
                        "/v1/policies?prefix=site%2Fa%20b%26c&after=k%3D1");
    buf_close(&b);
}

/* ------------------------------------------------------------------------
 * YAML and JSON input
 * ------------------------------------------------------------------------ */

/* Convert @yaml and compare its compact JSON with @json. */
static void check_yaml(struct fixture *f, const char *yaml, const char *json)
{
    struct buf b = {0};
    json_t *v = NULL;
    int rv;

    rv = yaml_to_json(yaml, strlen(yaml), &v, f->errmsg);
    if (rv != 0) {
        fail_msg("%s: %s", yaml, f->errmsg);
    }
    assert_int_equal(buf_json(&b, v, JSON_COMPACT), 0);
    assert_string_equal(b.data, json);
    buf_close(&b);
    json_decref(v);
}

static void check_yaml_error(struct fixture *f,
                             const char *yaml,
                             int code,
                             const char *message)
{
    json_t *v = NULL;

    assert_int_equal(yaml_to_json(yaml, strlen(yaml), &v, f->errmsg), code);
    assert_null(v);
    assert_string_equal(f->errmsg, message);
}

static const char scalars_yaml[] = "# Scalars of the core schema.\n"
                                   "name: web\n"
                                   "replicas: 3\n"
                                   "ratio: 0.5\n"
                                   "neg: -7\n"
                                   "plus: +7\n"
                                   "hex: 0x1F\n"
                                   "oct: 0o17\n"
                                   "exp: 1e3\n"
                                   "dot: .5\n"
                                   "on: true\n"
                                   "off: False\n"
                                   "nothing: ~\n"
                                   "Null: NULL\n"
                                   "empty:\n"
                                   "quoted: \"123\"\n"
                                   "single: 'true'\n"
                                   "tagged: !!str 42\n"
                                   "forced: !!float 2\n"
                                   "int: !!int 12\n"
                                   "yes: yes\n"
                                   "version: 1.2.3\n"
                                   "inf: .inf\n"
                                   "huge: 123456789012345678901234567890\n"
                                   "hugehex: 0xFFFFFFFFFFFFFFFFFFFF\n"
                                   "1: one\n"
                                   "text: |\n"
                                   "  two\n"
                                   "  lines\n";

static void yaml_scalars(void **state)
{
    check_yaml(*state, scalars_yaml,
               "{\"name\":\"web\",\"replicas\":3,\"ratio\":0.5,\"neg\":-7,"
               "\"plus\":7,\"hex\":31,\"oct\":15,\"exp\":1000.0,\"dot\":0.5,"
               "\"on\":true,\"off\":false,\"nothing\":null,\"Null\":null,"
               "\"empty\":null,\"quoted\":\"123\",\"single\":\"true\","
               "\"tagged\":\"42\",\"forced\":2.0,\"int\":12,\"yes\":\"yes\","
               "\"version\":\"1.2.3\",\"inf\":\".inf\","
               "\"huge\":1.2345678901234568e29,"
               "\"hugehex\":\"0xFFFFFFFFFFFFFFFFFFFF\",\"1\":\"one\","
               "\"text\":\"two\\nlines\\n\"}");
}

static void yaml_collections(void **state)
{
    check_yaml(*state,
               "list: [a, 1, null]\n"
               "nested:\n"
               "  - x: 1\n"
               "    y: [2, {z: 3}]\n"
               "  - []\n"
               "  - {}\n",
               "{\"list\":[\"a\",1,null],\"nested\":[{\"x\":1,\"y\":[2,"
               "{\"z\":3}]},[],{}]}");
    check_yaml(*state, "{a: 1, \"b\": [true]}", "{\"a\":1,\"b\":[true]}");
    check_yaml(*state, "--- !!map\na: !!seq [1]\n...\n", "{\"a\":[1]}");
}

static void yaml_anchors(void **state)
{
    check_yaml(*state,
               "base: &b {image: web, port: 80}\n"
               "a: *b\n"
               "k: &k key\n"
               "*k : &n 5\n"
               "n: *n\n"
               "c: &b [redefined]\n"
               "d: *b\n",
               "{\"base\":{\"image\":\"web\",\"port\":80},"
               "\"a\":{\"image\":\"web\",\"port\":80},\"k\":\"key\","
               "\"key\":5,\"n\":5,\"c\":[\"redefined\"],"
               "\"d\":[\"redefined\"]}");
}

static void yaml_errors(void **state)
{
    struct fixture *f = *state;

    check_yaml_error(f, "a: 1\nb: 2\na: 3\n", REMS_EMALFORMED,
                     "invalid YAML at line 3, column 1: duplicate key 'a'");
    check_yaml_error(f, "a: [1, 2\n", REMS_EMALFORMED,
                     "invalid YAML at line 2, column 1: did not find "
                     "expected ',' or ']' (while parsing a flow sequence)");
    check_yaml_error(f, "a: b: c\n", REMS_EMALFORMED,
                     "invalid YAML at line 1, column 5: mapping values are "
                     "not allowed in this context");
    check_yaml_error(f, "a: 1\n---\nb: 2\n", REMS_EMALFORMED,
                     "invalid YAML at line 2, column 1: only one document is "
                     "allowed");
    check_yaml_error(f, "a: !!binary aGk=\n", REMS_EMALFORMED,
                     "invalid YAML at line 1, column 4: unsupported tag "
                     "'tag:yaml.org,2002:binary'");
    check_yaml_error(f, "a: !local {}\n", REMS_EMALFORMED,
                     "invalid YAML at line 1, column 4: unsupported tag "
                     "'!local'");
    check_yaml_error(f, "a: !!int abc\n", REMS_EMALFORMED,
                     "invalid YAML at line 1, column 4: 'abc' does not match "
                     "tag tag:yaml.org,2002:int");
    check_yaml_error(f, "a: !!bool yes\n", REMS_EMALFORMED,
                     "invalid YAML at line 1, column 4: 'yes' does not match "
                     "tag tag:yaml.org,2002:bool");
    check_yaml_error(f, "a: !!null 0\n", REMS_EMALFORMED,
                     "invalid YAML at line 1, column 4: '0' does not match "
                     "tag tag:yaml.org,2002:null");
    check_yaml_error(f, "a: !!float x\n", REMS_EMALFORMED,
                     "invalid YAML at line 1, column 4: 'x' does not match "
                     "tag tag:yaml.org,2002:float");
    check_yaml_error(f, "? [a]\n: 1\n", REMS_EMALFORMED,
                     "invalid YAML at line 1, column 3: only scalars can be "
                     "mapping keys");
    check_yaml_error(f, "a: *nope\n", REMS_EMALFORMED,
                     "invalid YAML at line 1, column 4: unknown anchor "
                     "'nope'");
    check_yaml_error(f, "a: &x [1]\n*x : 2\n", REMS_EMALFORMED,
                     "invalid YAML at line 2, column 1: alias 'x' used as a "
                     "key is not a string");
    check_yaml_error(f, "a: \"\\0\"\n\"b\\0\": 1\n", REMS_EMALFORMED,
                     "invalid YAML at line 2, column 1: a key contains a NUL "
                     "character");
    check_yaml_error(f, "a: \xff\n", REMS_EMALFORMED,
                     "invalid YAML at byte 3: invalid leading UTF-8 octet");
    check_yaml_error(f, "- a\n- b\n", REMS_EINVAL,
                     "the value must be a JSON object or YAML mapping");
    check_yaml_error(f, "just text\n", REMS_EINVAL,
                     "the value must be a JSON object or YAML mapping");
    check_yaml_error(f, "", REMS_EINVAL,
                     "the value must be a JSON object or YAML mapping");
    check_yaml_error(f, "# only a comment\n", REMS_EINVAL,
                     "the value must be a JSON object or YAML mapping");
}

/* Nesting is capped, and so is alias expansion ("billion laughs"). */
static void yaml_limits(void **state)
{
    struct fixture *f = *state;
    char deep[2 * YAML_MAX_DEPTH + 8];
    size_t i;

    memset(deep, 0, sizeof deep);
    for (i = 0; i <= YAML_MAX_DEPTH; i++) {
        deep[i] = '[';
    }
    check_yaml_error(f, deep, REMS_EMALFORMED,
                     "invalid YAML at line 1, column 65: nested deeper than "
                     "64 levels");
    check_yaml_error(
        f,
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        REMS_EMALFORMED,
        "invalid YAML at line 6, column 36: more than 1000000 nodes once "
        "aliases are expanded");
}

/* Failing each allocation in turn gives REMS_ENOMEM and leaks nothing. */
static void yaml_out_of_memory(void **state)
{
    struct fixture *f = *state;
    const char *yaml = "base: &b {image: web, ports: [80, 443]}\n"
                       "a: *b\n"
                       "c: &c text\n"
                       "d: [1, 2.5, true, ~, \"s\"]\n";
    json_t *v = NULL;
    int rv;
    long n;

    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = yaml_to_json(yaml, strlen(yaml), &v, f->errmsg);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(v);
        assert_int_equal(f->heap.live, 0);
    }
    test_heap_fail_after(&f->heap, -1);
    assert_true(n > 10);
    json_decref(v);
}

static void value_json_is_verbatim(void **state)
{
    struct fixture *f = *state;
    const char *text = "{\"n\": 12345678901234567, \"a\": [1, 2]}\n";
    json_t *v = NULL;
    bool verbatim = false;

    assert_int_equal(value_parse(text, strlen(text), &v, &verbatim, f->errmsg),
                     0);
    assert_true(verbatim);
    assert_true(json_is_object(v));
    json_decref(v);

    text = "{a: 1}";
    v = NULL;
    assert_int_equal(value_parse(text, strlen(text), &v, &verbatim, f->errmsg),
                     0);
    assert_false(verbatim);
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
    json_decref(v);
}

static void value_errors(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *text;
        int code;
        const char *message;
    } cases[] = {
        {"[1, 2]", REMS_EINVAL,
         "the value must be a JSON object or YAML mapping"},
        {"\"text\"", REMS_EINVAL,
         "the value must be a JSON object or YAML mapping"},
        {"", REMS_EINVAL, "the value must be a JSON object or YAML mapping"},
        /* Starts like JSON: the JSON error is the useful one. */
        {"{\n  \"a\": 1\n  \"b\": 2\n}", REMS_EMALFORMED,
         "invalid JSON at line 3, column 5: '}' expected near '\"b\"'"},
        {"{\"a\": 1, \"a\": 2}", REMS_EMALFORMED,
         "invalid JSON at line 1, column 12: duplicate object key near "
         "'\"a\"'"},
        {"a: 1\n b: 2\nc", REMS_EMALFORMED,
         "invalid YAML at line 2, column 3: mapping values are not allowed "
         "in this context"},
    };
    size_t i;

    for (i = 0; i < REMS_ARRAY_SIZE(cases); i++) {
        json_t *v = NULL;
        bool verbatim;
        int rv = value_parse(cases[i].text, strlen(cases[i].text), &v,
                             &verbatim, f->errmsg);
        if (rv != cases[i].code || strcmp(f->errmsg, cases[i].message) != 0) {
            fail_msg("case %zu: %d \"%s\"", i, rv, f->errmsg);
        }
        assert_null(v);
    }
}

/* ------------------------------------------------------------------------
 * Tables and rendering
 * ------------------------------------------------------------------------ */

/* Render @json with @render into a string (malloc()ed). */
static char *render_to_string(int (*render)(FILE *out, const json_t *answer),
                              const char *json)
{
    json_error_t jerr;
    json_t *v = json_loads(json, 0, &jerr);
    char *text = NULL;
    size_t len = 0;
    FILE *out;

    if (v == NULL) {
        fail_msg("bad test JSON: %s", jerr.text);
    }
    out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(render(out, v), 0);
    fclose(out);
    json_decref(v);
    return text;
}

static void check_render(int (*render)(FILE *out, const json_t *answer),
                         const char *json,
                         const char *expected)
{
    char *text = render_to_string(render, json);
    assert_string_equal(text, expected);
    free(text);
}

static void table_layout(void **state)
{
    static const char *const headers[] = {"KEY", "VALUE", "NOTE"};
    struct table t;
    char *text = NULL;
    size_t len = 0;
    FILE *out;

    (void)state;
    table_init(&t, 3);
    assert_int_equal(table_headers(&t, headers), 0);
    assert_int_equal(table_add(&t, "caf\xc3\xa9"), 0);
    assert_int_equal(table_add(&t, "1"), 0);
    assert_int_equal(table_add(&t, "line\none\ttab"), 0);
    assert_int_equal(table_add(&t, "a-much-longer-key"), 0);
    assert_int_equal(table_add(&t, "12345"), 0);
    assert_int_equal(table_add(&t, "x"), 0);
    out = open_memstream(&text, &len);
    assert_non_null(out);
    table_print(&t, out);
    fclose(out);
    assert_string_equal(text, "KEY                VALUE  NOTE\n"
                              "caf\xc3\xa9               1      line one tab\n"
                              "a-much-longer-key  12345  x\n");
    free(text);
    table_close(&t);
}

static void table_out_of_memory(void **state)
{
    struct fixture *f = *state;
    static const char *const headers[] = {"A", "B"};
    struct table t;
    long n;
    int rv;
    int i;

    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        table_init(&t, 2);
        rv = table_headers(&t, headers);
        for (i = 0; i < 20 && rv == 0; i++) {
            rv = table_add(&t, "cell");
        }
        table_close(&t);
        assert_int_equal(f->heap.live, 0);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
    }
    test_heap_fail_after(&f->heap, -1);
}

static const char status_json[] =
    "{\"node_id\": 1, \"role\": \"leader\", \"term\": 3,"
    " \"leader\": {\"id\": 1, \"raft_address\": \"127.0.0.1:7001\","
    " \"api_address\": \"127.0.0.1:7101\"},"
    " \"members\": ["
    " {\"id\": 1, \"raft_address\": \"127.0.0.1:7001\","
    " \"api_address\": \"127.0.0.1:7101\", \"role\": \"voter\"},"
    " {\"id\": 2, \"raft_address\": \"127.0.0.1:7002\","
    " \"api_address\": \"127.0.0.1:7102\", \"role\": \"voter\"},"
    " {\"id\": 12, \"raft_address\": \"10.0.0.12:7001\","
    " \"api_address\": \"10.0.0.12:7101\", \"role\": \"standby\"}],"
    " \"commit_index\": 42, \"applied_index\": 41, \"last_index\": 42,"
    " \"last_contact_ms\": 0, \"version\": \"0.1.0\", \"cluster_id\": \"c\"}";

static const char status_table[] =
    "node id:       1\n"
    "role:          leader\n"
    "term:          3\n"
    "leader:        1 (127.0.0.1:7101)\n"
    "commit index:  42\n"
    "applied index: 41\n"
    "last contact:  0 ms\n"
    "\n"
    "ID  RAFT ADDRESS    API ADDRESS     ROLE\n"
    "1   127.0.0.1:7001  127.0.0.1:7101  voter (leader)\n"
    "2   127.0.0.1:7002  127.0.0.1:7102  voter\n"
    "12  10.0.0.12:7001  10.0.0.12:7101  standby\n";

static void render_status_table(void **state)
{
    (void)state;
    check_render(render_status, status_json, status_table);
    /* No leader known, and fields missing. */
    check_render(render_status,
                 "{\"node_id\": 3, \"role\": \"candidate\", \"term\": 9,"
                 " \"leader\": null, \"members\": []}",
                 "node id:       3\n"
                 "role:          candidate\n"
                 "term:          9\n"
                 "leader:        none known\n"
                 "commit index:  -\n"
                 "applied index: -\n"
                 "\n"
                 "ID  RAFT ADDRESS  API ADDRESS  ROLE\n");
}

static void render_other_answers(void **state)
{
    (void)state;
    check_render(render_member_list,
                 "{\"members\": [{\"id\": 1, \"raft_address\": \"a:1\","
                 " \"api_address\": \"a:2\", \"role\": \"voter\"},"
                 " {\"id\": 2, \"raft_address\": \"b:1\","
                 " \"api_address\": \"b:2\", \"role\": \"spare\"}],"
                 " \"leader_id\": 2}",
                 "ID  RAFT ADDRESS  API ADDRESS  ROLE\n"
                 "1   a:1           a:2          voter\n"
                 "2   b:1           b:2          spare (leader)\n");
    check_render(render_policy,
                 "{\"key\": \"site/a/web\", \"value\": {\"image\": \"web:1.2\","
                 " \"ports\": [80]}, \"revision\": 17, \"created_index\": 12,"
                 " \"modified_index\": 17}",
                 "key:           site/a/web\n"
                 "revision:      17\n"
                 "value:\n"
                 "{\n"
                 "  \"image\": \"web:1.2\",\n"
                 "  \"ports\": [\n"
                 "    80\n"
                 "  ]\n"
                 "}\n");
    check_render(render_policy_put,
                 "{\"key\": \"site/a/web\", \"revision\": 17, \"created\": "
                 "true, \"index\": 17}",
                 "site/a/web: revision 17 (created)\n");
    check_render(render_policy_put,
                 "{\"key\": \"site/a/web\", \"revision\": 19, \"created\": "
                 "false, \"index\": 19}",
                 "site/a/web: revision 19 (updated)\n");
    check_render(render_policy_delete,
                 "{\"key\": \"site/a/web\", \"deleted\": true, \"revision\": "
                 "18, \"index\": 18}",
                 "deleted site/a/web at revision 18\n");
    check_render(render_audit,
                 "{\"items\": [{\"index\": 17, \"time_ms\": 1795000000000,"
                 " \"type\": \"policy_put\", \"key\": \"site/a/web\","
                 " \"requested_by\": \"alice\", \"reason\": \"roll\\nout\","
                 " \"result\": \"ok\", \"revision\": 17},"
                 " {\"index\": 18, \"type\": \"member_add\","
                 " \"requested_by\": \"bob\", \"reason\": \"\","
                 " \"result\": \"rejected\"}], \"next_after\": 18}",
                 "INDEX  TYPE        KEY         RESULT    USER   REASON\n"
                 "17     policy_put  site/a/web  ok        alice  roll out\n"
                 "18     member_add  -           rejected  bob    -\n");
}

static const char agent_json[] =
    "{\"id\": \"agent-1\", \"labels\": {\"zone\": \"lab\"}, \"online\": true,"
    " \"offline_reason\": null, \"node_id\": 2, \"registered_index\": 6,"
    " \"updated_index\": 7, \"services\": {\"web\": \"running\"},"
    " \"lease\": {\"ttl_ms\": 10000, \"granted_index\": 7,"
    " \"granted_ms\": 1795333635484, \"node_id\": 2},"
    " \"live\": {\"connected\": true, \"peer\": \"127.0.0.1:44258\","
    " \"lease_remaining_ms\": 9521, \"commands_in_flight\": 1}}";

static const char command_json[] =
    "{\"id\": \"c-1\", \"agent\": \"agent-1\", \"action\": \"restart\","
    " \"service\": \"web\", \"args\": {\"mode\": \"fast\"},"
    " \"state\": \"acked\", \"result\": {\"ok\": \"yes\"}, \"term\": 2,"
    " \"ttl_ms\": 30000, \"issued_index\": 12,"
    " \"issued_ms\": 1795333641396, \"deadline_ms\": 1795333671396,"
    " \"resolved_index\": 13, \"requested_by\": \"alice\","
    " \"reason\": \"smoke\", \"trace_id\": \"t1\"}";

static const char command_table[] =
    "id:            c-1\n"
    "agent:         agent-1\n"
    "action:        restart\n"
    "service:       web\n"
    "state:         acked\n"
    "result:        {\"ok\":\"yes\"}\n"
    "args:          {\"mode\":\"fast\"}\n"
    "term:          2\n"
    "ttl:           30000 ms\n"
    "issued:        index 12, 2026-11-22T07:47:21.396Z\n"
    "deadline:      2026-11-22T07:47:51.396Z\n"
    "resolved:      13\n"
    "requested by:  alice\n"
    "reason:        smoke\n"
    "trace id:      t1\n";

static void render_agents_and_commands(void **state)
{
    (void)state;
    check_render(render_agent, agent_json,
                 "id:            agent-1\n"
                 "online:        true\n"
                 "offline:       -\n"
                 "node:          2\n"
                 "registered:    6\n"
                 "updated:       7\n"
                 "lease:         ttl 10000 ms, granted at index 7 "
                 "(2026-11-22T07:47:15.484Z) by node 2\n"
                 "link:          connected from 127.0.0.1:44258, lease 9521 "
                 "ms left, 1 commands in flight\n"
                 "labels:        {\"zone\":\"lab\"}\n"
                 "services:\n"
                 "{\n"
                 "  \"web\": \"running\"\n"
                 "}\n");
    /* Offline, answered by a follower (no live view), nothing reported. */
    check_render(render_agent,
                 "{\"id\": \"a2\", \"labels\": {}, \"online\": false,"
                 " \"offline_reason\": \"expired\", \"node_id\": null,"
                 " \"registered_index\": 3, \"updated_index\": 9,"
                 " \"services\": null, \"lease\": null, \"live\": null}",
                 "id:            a2\n"
                 "online:        false\n"
                 "offline:       expired\n"
                 "node:          -\n"
                 "registered:    3\n"
                 "updated:       9\n"
                 "lease:         -\n"
                 "link:          -\n"
                 "labels:        {}\n"
                 "services:      -\n");
    check_render(render_agent,
                 "{\"id\": \"a3\", \"live\": {\"connected\": false,"
                 " \"peer\": null, \"lease_remaining_ms\": null,"
                 " \"commands_in_flight\": 0}}",
                 "id:            a3\n"
                 "online:        -\n"
                 "offline:       -\n"
                 "node:          -\n"
                 "registered:    -\n"
                 "updated:       -\n"
                 "lease:         -\n"
                 "link:          not connected, 0 commands in flight\n"
                 "labels:        -\n"
                 "services:      -\n");
    check_render(
        render_lease_list,
        "{\"items\": [{\"agent\": \"agent-1\", \"ttl_ms\": 10000,"
        " \"granted_index\": 7, \"granted_ms\": 1795333635484,"
        " \"node_id\": 2}, {\"agent\": \"b\", \"ttl_ms\": 500,"
        " \"granted_index\": 70, \"granted_ms\": 0,"
        " \"node_id\": null}], \"index\": 70}",
        "AGENT    TTL MS  GRANTED INDEX  GRANTED AT                NODE\n"
        "agent-1  10000   7              2026-11-22T07:47:15.484Z  2\n"
        "b        500     70             -                         -\n");
    check_render(render_command, command_json, command_table);
    /* A pending push_manifest: its manifest follows. */
    check_render(render_command,
                 "{\"id\": \"p\", \"agent\": \"a\", \"action\": "
                 "\"push_manifest\", \"service\": null, \"args\": {},"
                 " \"manifest\": {\"n\": 1}, \"state\": \"pending\","
                 " \"result\": null, \"term\": 4, \"ttl_ms\": 1000,"
                 " \"issued_index\": 5, \"issued_ms\": 1000,"
                 " \"deadline_ms\": 2000, \"resolved_index\": null,"
                 " \"requested_by\": \"anonymous\", \"reason\": \"\","
                 " \"trace_id\": \"t\"}",
                 "id:            p\n"
                 "agent:         a\n"
                 "action:        push_manifest\n"
                 "service:       -\n"
                 "state:         pending\n"
                 "result:        -\n"
                 "args:          {}\n"
                 "term:          4\n"
                 "ttl:           1000 ms\n"
                 "issued:        index 5, 1970-01-01T00:00:01.000Z\n"
                 "deadline:      1970-01-01T00:00:02.000Z\n"
                 "resolved:      -\n"
                 "requested by:  anonymous\n"
                 "reason:        -\n"
                 "trace id:      t\n"
                 "manifest:\n"
                 "{\n"
                 "  \"n\": 1\n"
                 "}\n");
}

static void render_out_of_memory(void **state)
{
    struct fixture *f = *state;
    json_t *v;
    FILE *out;
    char *text = NULL;
    size_t len = 0;
    long n;
    int rv;

    v = json_loads(status_json, 0, NULL);
    assert_non_null(v);
    out = open_memstream(&text, &len);
    assert_non_null(out);
    for (n = 0;; n++) {
        long live = f->heap.live;
        test_heap_fail_after(&f->heap, n);
        rv = render_status(out, v);
        test_heap_fail_after(&f->heap, -1);
        assert_int_equal(f->heap.live, live);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
    }
    fclose(out);
    free(text);
    json_decref(v);
}

/* Failing each allocation of the agent and command renderers in turn:
 * REMS_ENOMEM and no leak, until they succeed. */
static void render_agent_command_out_of_memory(void **state)
{
    struct fixture *f = *state;
    static const struct {
        int (*render)(FILE *out, const json_t *answer);
        const char *json;
    } cases[] = {
        {render_agent, agent_json},
        {render_command, command_json},
    };
    size_t i;

    for (i = 0; i < REMS_ARRAY_SIZE(cases); i++) {
        json_t *v = json_loads(cases[i].json, 0, NULL);
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        long n;
        int rv;

        assert_non_null(v);
        assert_non_null(out);
        for (n = 0;; n++) {
            long live = f->heap.live;
            test_heap_fail_after(&f->heap, n);
            rv = cases[i].render(out, v);
            test_heap_fail_after(&f->heap, -1);
            assert_int_equal(f->heap.live, live);
            if (rv == 0) {
                break;
            }
            assert_int_equal(rv, REMS_ENOMEM);
        }
        fclose(out);
        free(text);
        json_decref(v);
    }
}

static void api_errors_formatted(void **state)
{
    char out[256];
    json_t *v;

    (void)state;
    v = json_loads("{\"error\": {\"code\": \"conflict\", \"message\":"
                   " \"revision is 12, If-Match asked for 9\", \"field\":"
                   " \"If-Match\", \"current_revision\": 12}}",
                   0, NULL);
    assert_non_null(v);
    api_error_format(409, v, "", 0, out, sizeof out);
    assert_string_equal(out, "409 conflict: revision is 12, If-Match asked "
                             "for 9 (field: If-Match)");
    json_decref(v);

    v = json_loads("{\"error\": {\"code\": \"no_leader\", \"message\":"
                   " \"no leader known\"}}",
                   0, NULL);
    assert_non_null(v);
    api_error_format(503, v, "", 0, out, sizeof out);
    assert_string_equal(out, "503 no_leader: no leader known");
    json_decref(v);

    api_error_format(502, NULL, "<html>\r\nBad gateway\n", 20, out, sizeof out);
    assert_string_equal(out, "502 unexpected answer: <html>  Bad gateway");
    api_error_format(500, NULL, NULL, 0, out, sizeof out);
    assert_string_equal(out, "500 unexpected answer: (empty body)");
}

/* ------------------------------------------------------------------------
 * Whole commands
 * ------------------------------------------------------------------------ */

static void main_help_and_version(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(RUN(f, NULL, NULL, "--version"), 0);
    assert_string_equal(f->out, "remsctl " REMS_VERSION "\n");
    assert_string_equal(f->err, "");

    assert_int_equal(RUN(f, NULL, NULL, "--help"), 0);
    assert_non_null(strstr(f->out, "usage: remsctl [OPTIONS] COMMAND"));
    assert_non_null(strstr(f->out, "  policy list       List policies\n"));
    assert_string_equal(f->err, "");

    assert_int_equal(RUN(f, NULL, NULL, "help", "policy", "put"), 0);
    assert_non_null(strstr(f->out, "usage: remsctl [OPTIONS] policy put KEY "
                                   "[FILE] [-f FILE|-] [--if-match REV] "
                                   "[--request-id ID]\n"));

    assert_int_equal(RUN(f, NULL, NULL, "member", "--help"), 0);
    assert_non_null(strstr(f->out, "  member transfer   Transfer leadership"));

    assert_int_equal(RUN(f, NULL, NULL, "--help"), 0);
    assert_non_null(
        strstr(f->out, "  command issue     Issue a command to an agent\n"));
    assert_non_null(strstr(f->out, "  lease list        List agent leases\n"));
    assert_int_equal(RUN(f, NULL, NULL, "help", "command", "issue"), 0);
    assert_non_null(strstr(f->out, "usage: remsctl [OPTIONS] command issue "
                                   "AGENT ACTION [SERVICE] [--arg "
                                   "KEY=VALUE]... [--manifest FILE|-] [--ttl "
                                   "MS] [--wait [SECONDS]] [--request-id "
                                   "ID]\n"));
}

static void main_usage_error(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(RUN(f, NULL, NULL, "policy", "get"), CTL_EXIT_USAGE);
    assert_string_equal(f->out, "");
    assert_non_null(strstr(f->err, "remsctl: missing arguments (expected "
                                   "KEY)\nusage: remsctl [OPTIONS] policy get "
                                   "KEY [--stale]\n"));

    assert_int_equal(run_argv(f, NULL, NULL, (char *[]){"remsctl", NULL}),
                     CTL_EXIT_USAGE);
    assert_string_equal(f->err,
                        "remsctl: missing command\n"
                        "usage: remsctl [OPTIONS] COMMAND [ARGS...]\n"
                        "Run 'remsctl --help' for the commands and options.\n");
}

static void main_unreachable(void **state)
{
    struct fixture *f = *state;
    char endpoints[64];
    char expected[256];
    int p1 = closed_port();
    int p2 = closed_port();

    snprintf(endpoints, sizeof endpoints, "127.0.0.1:%d,127.0.0.1:%d", p1, p2);
    assert_int_equal(RUN(f, endpoints, NULL, "status"), CTL_EXIT_UNREACHABLE);
    assert_string_equal(f->out, "");
    snprintf(expected, sizeof expected,
             "remsctl: no endpoint reachable (tried 127.0.0.1:%d, "
             "127.0.0.1:%d): ",
             p1, p2);
    assert_memory_equal(f->err, expected, strlen(expected));
}

static void main_status(void **state)
{
    struct fixture *f = *state;

    stub_answer(&f->stub, "200 OK", "", status_json);
    stub_answer(&f->stub, "200 OK", "", status_json);
    start_stub(f);
    assert_int_equal(RUN_STUB(f, NULL, "status"), 0);
    assert_string_equal(f->out, status_table);
    assert_string_equal(f->err, "");
    assert_request_has(f, 0, "GET /status HTTP/1.1\r\n");
    assert_request_has(f, 0, "\r\nAccept: application/json\r\n");
    /* Reads carry no audit headers. */
    assert_request_lacks(f, 0, "X-Rems-");

    assert_int_equal(RUN_STUB(f, NULL, "status", "-o", "json"), 0);
    assert_memory_equal(f->out, "{\n  \"node_id\": 1,\n  \"role\": \"leader\"",
                        36);
    assert_string_equal(f->out + f->out_len - 3, "\n}\n");
}

/* The first endpoint refuses; the second answers. */
static void main_failover(void **state)
{
    struct fixture *f = *state;
    char endpoints[64];

    stub_answer(&f->stub, "200 OK", "",
                "{\"members\": [], \"leader_id\": null}");
    start_stub(f);
    snprintf(endpoints, sizeof endpoints, "127.0.0.1:%d,%s", closed_port(),
             f->endpoint);
    assert_int_equal(RUN(f, endpoints, NULL, "member", "list"), 0);
    assert_string_equal(f->out, "ID  RAFT ADDRESS  API ADDRESS  ROLE\n");
    assert_request_has(f, 0, "GET /v1/members HTTP/1.1\r\n");
}

static void main_policy_put_yaml(void **state)
{
    struct fixture *f = *state;

    stub_answer(&f->stub, "200 OK", "",
                "{\"key\": \"site/a b/web\", \"revision\": 17, \"created\": "
                "true, \"index\": 17}");
    start_stub(f);
    assert_int_equal(RUN_STUB(f, "image: web:1.2\nreplicas: 3\n", "policy",
                              "put", "site/a b/web", "--if-match", "0",
                              "--user", "bob", "--reason", "roll out",
                              "--request-id", "req-1"),
                     0);
    assert_string_equal(f->out, "site/a b/web: revision 17 (created)\n");
    assert_string_equal(f->err, "");
    assert_request_has(f, 0, "PUT /v1/policies/site/a%20b/web HTTP/1.1\r\n");
    assert_request_has(f, 0, "\r\nX-Rems-User: bob\r\n");
    assert_request_has(f, 0, "\r\nX-Rems-Reason: roll out\r\n");
    assert_request_has(f, 0, "\r\nX-Rems-Request-Id: req-1\r\n");
    assert_request_has(f, 0, "\r\nIf-Match: 0\r\n");
    assert_request_has(f, 0, "\r\nContent-Type: application/json\r\n");
    assert_request_lacks(f, 0, "Expect:");
    assert_string_equal(request_body(f, 0),
                        "{\"image\":\"web:1.2\",\"replicas\":3}");
}

/* JSON is sent as it is, from a file; a random request id is sent. */
static void main_policy_put_json_file(void **state)
{
    struct fixture *f = *state;
    const char *json = "{\"big\": 123456789012345678901234567890}\n";
    char path[] = "/tmp/remsctl-test-XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    stub_answer(&f->stub, "200 OK", "",
                "{\"key\": \"k\", \"revision\": 3, \"created\": false}");
    start_stub(f);
    assert_int_equal(RUN_STUB(f, NULL, "policy", "put", "k", "-f", path), 0);
    unlink(path);
    assert_string_equal(f->out, "k: revision 3 (updated)\n");
    assert_string_equal(request_body(f, 0), json);
    assert_request_has(f, 0, "\r\nX-Rems-User: alice\r\n");
    assert_request_has(f, 0, "\r\nX-Rems-Request-Id: ");
    assert_request_lacks(f, 0, "X-Rems-Reason");
    assert_request_lacks(f, 0, "If-Match");
}

/* Bad input is a usage error, and nothing is sent. */
static void main_policy_put_bad_input(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(
        RUN(f, "127.0.0.1:1", "- a\n", "policy", "put", "k", "-f", "-"),
        CTL_EXIT_USAGE);
    assert_string_equal(f->err, "remsctl: policy put: the value must be a "
                                "JSON object or YAML mapping\n");
    assert_string_equal(f->out, "");

    assert_int_equal(RUN(f, "127.0.0.1:1", "a: [\n", "policy", "put", "k"),
                     CTL_EXIT_USAGE);
    assert_string_equal(f->err,
                        "remsctl: policy put: standard input: line 2: invalid "
                        "YAML: did not find expected node content (while "
                        "parsing a flow node on line 2)\n");

    assert_int_equal(RUN(f, "127.0.0.1:1", NULL, "policy", "put", "k", "-f",
                         "/nonexistent/value.yaml"),
                     CTL_EXIT_USAGE);
    assert_string_equal(f->err, "remsctl: policy put: /nonexistent/value.yaml: "
                                "No such file or directory\n");
}

/* An error answer: exit 1, the error on stderr, nothing on stdout. */
static void main_api_error(void **state)
{
    struct fixture *f = *state;

    stub_answer(&f->stub, "409 Conflict", "",
                "{\"error\": {\"code\": \"conflict\", \"message\": \"revision "
                "is 12, If-Match asked for 9\", \"field\": \"If-Match\", "
                "\"current_revision\": 12}}");
    stub_answer(&f->stub, "503 Service Unavailable", "",
                "{\"error\": {\"code\": \"unavailable\", \"message\": "
                "\"leadership lost\"}}");
    stub_answer(&f->stub, "503 Service Unavailable", "Retry-After: 2\r\n",
                "{\"error\": {\"code\": \"no_leader\", \"message\": \"no "
                "leader known\"}}");
    start_stub(f);
    assert_int_equal(RUN_STUB(f, NULL, "policy", "delete", "site/a/web",
                              "--if-match", "9", "-o", "json"),
                     CTL_EXIT_FAILED);
    assert_string_equal(f->out, "");
    assert_string_equal(f->err, "remsctl: 409 conflict: revision is 12, "
                                "If-Match asked for 9 (field: If-Match)\n");
    assert_request_has(f, 0, "DELETE /v1/policies/site/a/web HTTP/1.1\r\n");
    assert_request_has(f, 0, "\r\nIf-Match: 9\r\n");

    assert_int_equal(
        RUN_STUB(f, NULL, "member", "remove", "3", "--request-id", "abc"),
        CTL_EXIT_FAILED);
    assert_string_equal(f->err, "remsctl: 503 unavailable: leadership lost\n"
                                "remsctl: the outcome of the write is "
                                "unknown; retry it with --request-id abc\n");
    assert_request_has(f, 1, "DELETE /v1/members/3 HTTP/1.1\r\n");

    assert_int_equal(RUN_STUB(f, NULL, "policy", "get", "k"), CTL_EXIT_FAILED);
    assert_string_equal(f->err, "remsctl: 503 no_leader: no leader known\n"
                                "remsctl: retry after 2 s\n");
}

static void main_policy_get(void **state)
{
    struct fixture *f = *state;

    stub_answer(&f->stub, "200 OK", "",
                "{\"key\": \"site/a/web\", \"value\": {\"image\": "
                "\"web:1.2\"}, \"revision\": 17}");
    start_stub(f);
    assert_int_equal(
        RUN_STUB(f, NULL, "policy", "get", "site/a/web", "--stale"), 0);
    assert_request_has(
        f, 0, "GET /v1/policies/site/a/web?consistency=stale HTTP/1.1\r\n");
    assert_string_equal(f->out, "key:           site/a/web\n"
                                "revision:      17\n"
                                "value:\n"
                                "{\n"
                                "  \"image\": \"web:1.2\"\n"
                                "}\n");
}

/* --all follows next_after; -o json prints the last page with every item. */
static void main_policy_list_all(void **state)
{
    struct fixture *f = *state;
    int i;

    for (i = 0; i < 2; i++) {
        stub_answer(&f->stub, "200 OK", "",
                    "{\"items\": [{\"key\": \"site/a\", \"value\": {},"
                    " \"revision\": 3, \"modified_index\": 3}],"
                    " \"next_after\": \"site/a\", \"index\": 40}");
        stub_answer(&f->stub, "200 OK", "",
                    "{\"items\": [{\"key\": \"site/b\", \"value\": {},"
                    " \"revision\": 12, \"modified_index\": 12}],"
                    " \"next_after\": null, \"index\": 41}");
    }
    start_stub(f);
    assert_int_equal(RUN_STUB(f, NULL, "policy", "list", "--all", "--prefix",
                              "site/", "--limit", "1"),
                     0);
    assert_string_equal(f->out, "KEY     REVISION  MODIFIED\n"
                                "site/a  3         3\n"
                                "site/b  12        12\n");
    assert_request_has(f, 0,
                       "GET /v1/policies?prefix=site%2F&limit=1 HTTP/1.1\r\n");
    assert_request_has(f, 1,
                       "GET /v1/policies?prefix=site%2F&limit=1&after=site%2Fa"
                       " HTTP/1.1\r\n");

    assert_int_equal(RUN_STUB(f, NULL, "policy", "list", "--all", "-o", "json"),
                     0);
    assert_string_equal(f->out, "{\n"
                                "  \"items\": [\n"
                                "    {\n"
                                "      \"key\": \"site/a\",\n"
                                "      \"value\": {},\n"
                                "      \"revision\": 3,\n"
                                "      \"modified_index\": 3\n"
                                "    },\n"
                                "    {\n"
                                "      \"key\": \"site/b\",\n"
                                "      \"value\": {},\n"
                                "      \"revision\": 12,\n"
                                "      \"modified_index\": 12\n"
                                "    }\n"
                                "  ],\n"
                                "  \"next_after\": null,\n"
                                "  \"index\": 41\n"
                                "}\n");
}

/* Without --all, one page, and a hint on stderr when more follow. */
static void main_policy_list_page(void **state)
{
    struct fixture *f = *state;

    stub_answer(&f->stub, "200 OK", "",
                "{\"items\": [], \"next_after\": \"site/a\", \"index\": 40}");
    stub_answer(&f->stub, "200 OK", "",
                "{\"items\": [], \"next_after\": \"site/a\", \"index\": 40}");
    stub_answer(&f->stub, "200 OK", "",
                "{\"items\": [], \"next_after\": \"site/a\", \"index\": 40}");
    start_stub(f);
    assert_int_equal(RUN_STUB(f, NULL, "policy", "list", "--after", "s"), 0);
    assert_string_equal(f->out, "KEY  REVISION  MODIFIED\n");
    assert_string_equal(f->err, "remsctl: more keys follow: use --after "
                                "site/a, or --all\n");
    assert_request_has(f, 0, "GET /v1/policies?after=s HTTP/1.1\r\n");

    /* A server whose next_after does not move on is not followed forever. */
    assert_int_equal(RUN_STUB(f, NULL, "policy", "list", "--all"),
                     CTL_EXIT_FAILED);
    assert_string_equal(f->out, "");
    assert_string_equal(f->err, "remsctl: the server's next_after 'site/a' "
                                "does not follow 'site/a'\n");
}

static void main_members(void **state)
{
    struct fixture *f = *state;

    stub_answer(&f->stub, "200 OK", "", "{}");
    stub_answer(&f->stub, "204 No Content", "", "");
    stub_answer(&f->stub, "200 OK", "",
                "{\"leader\": {\"id\": 2, \"api_address\": \"h:2\"}}");
    stub_answer(&f->stub, "200 OK", "", "{\"leader_id\": 3}");
    start_stub(f);

    assert_int_equal(RUN_STUB(f, NULL, "member", "add", "4", "127.0.0.1:7004",
                              "127.0.0.1:7104"),
                     0);
    assert_string_equal(f->out, "added member 4 as voter\n");
    assert_request_has(f, 0, "POST /v1/members HTTP/1.1\r\n");
    assert_string_equal(request_body(f, 0),
                        "{\"id\":4,\"raft_address\":\"127.0.0.1:7004\","
                        "\"api_address\":\"127.0.0.1:7104\",\"role\":"
                        "\"voter\"}");

    assert_int_equal(
        RUN_STUB(f, NULL, "member", "promote", "4", "--role", "standby"), 0);
    assert_string_equal(f->out, "member 4 is now a standby\n");
    assert_request_has(f, 1, "POST /v1/members/4/role HTTP/1.1\r\n");
    assert_string_equal(request_body(f, 1), "{\"role\":\"standby\"}");

    assert_int_equal(RUN_STUB(f, NULL, "member", "transfer"), 0);
    assert_string_equal(f->out, "leadership transferred to member 2 (h:2)\n");
    assert_request_has(f, 2, "POST /v1/leadership/transfer HTTP/1.1\r\n");
    assert_string_equal(request_body(f, 2), "{}");

    assert_int_equal(RUN_STUB(f, NULL, "member", "transfer", "3"), 0);
    assert_string_equal(f->out, "leadership transferred to member 3\n");
    assert_string_equal(request_body(f, 3), "{\"id\":3}");
}

static void main_audit(void **state)
{
    struct fixture *f = *state;

    stub_answer(&f->stub, "200 OK", "",
                "{\"items\": [{\"index\": 17, \"type\": \"policy_put\","
                " \"key\": \"k\", \"requested_by\": \"alice\", \"reason\":"
                " \"r\", \"result\": \"ok\"}], \"next_after\": 17}");
    start_stub(f);
    assert_int_equal(RUN_STUB(f, NULL, "audit", "list", "--after", "16",
                              "--limit", "1", "--stale"),
                     0);
    assert_request_has(
        f, 0, "GET /v1/audit?after=16&limit=1&consistency=stale HTTP/1.1\r\n");
    assert_string_equal(f->out, "INDEX  TYPE        KEY  RESULT  USER   "
                                "REASON\n"
                                "17     policy_put  k    ok      alice  r\n");
}

/* A 2xx answer that is not a JSON object is an error too. */
static void main_bad_answer(void **state)
{
    struct fixture *f = *state;
    char expected[128];

    stub_answer(&f->stub, "200 OK", "", "hello");
    stub_answer(&f->stub, "302 Found", "Location: http://elsewhere/\r\n", "");
    start_stub(f);
    assert_int_equal(RUN_STUB(f, NULL, "status"), CTL_EXIT_FAILED);
    snprintf(expected, sizeof expected,
             "remsctl: %s answered 200 without a JSON object body\n",
             f->endpoint);
    assert_string_equal(f->err, expected);
    assert_string_equal(f->out, "");

    /* Redirects are not followed. */
    assert_int_equal(RUN_STUB(f, NULL, "status"), CTL_EXIT_FAILED);
    assert_string_equal(f->err,
                        "remsctl: 302 unexpected answer: (empty body)\n");
}

static void main_agents(void **state)
{
    struct fixture *f = *state;

    stub_answer(&f->stub, "200 OK", "",
                "{\"items\": [{\"id\": \"a1\", \"labels\": {\"zone\": "
                "\"lab\"}, \"online\": false, \"offline_reason\": "
                "\"expired\", \"node_id\": null}], \"next_after\": \"a1\","
                " \"index\": 9}");
    stub_answer(&f->stub, "200 OK", "",
                "{\"items\": [{\"id\": \"a2\", \"labels\": {}, \"online\":"
                " false, \"offline_reason\": \"revoked\", \"node_id\": 3}],"
                " \"next_after\": null, \"index\": 9}");
    stub_answer(&f->stub, "200 OK", "",
                "{\"items\": [], \"next_after\": \"a1\", \"index\": 9}");
    stub_answer(&f->stub, "200 OK", "", agent_json);
    stub_answer(&f->stub, "200 OK", "",
                "{\"items\": [{\"agent\": \"agent-1\", \"ttl_ms\": 10000,"
                " \"granted_index\": 7, \"granted_ms\": 1795333635484,"
                " \"node_id\": 2}], \"index\": 9}");
    start_stub(f);

    assert_int_equal(RUN_STUB(f, NULL, "agent", "list", "--offline", "--all",
                              "--limit", "1"),
                     0);
    assert_string_equal(f->out,
                        "ID  STATE    NODE  REASON   LABELS\n"
                        "a1  offline  -     expired  {\"zone\":\"lab\"}\n"
                        "a2  offline  3     revoked  {}\n");
    assert_string_equal(f->err, "");
    assert_request_has(f, 0,
                       "GET /v1/agents?online=false&limit=1 HTTP/1.1\r\n");
    assert_request_has(
        f, 1, "GET /v1/agents?online=false&limit=1&after=a1 HTTP/1.1\r\n");

    assert_int_equal(RUN_STUB(f, NULL, "agent", "list", "--online"), 0);
    assert_string_equal(f->out, "ID  STATE  NODE  REASON  LABELS\n");
    assert_string_equal(f->err, "remsctl: more agents follow: use --after a1, "
                                "or --all\n");
    assert_request_has(f, 2, "GET /v1/agents?online=true HTTP/1.1\r\n");

    assert_int_equal(RUN_STUB(f, NULL, "agent", "show", "agent-1", "--stale"),
                     0);
    assert_request_has(f, 3,
                       "GET /v1/agents/agent-1?consistency=stale HTTP/1.1\r\n");
    assert_non_null(strstr(f->out, "link:          connected from "
                                   "127.0.0.1:44258, lease 9521 ms left, 1 "
                                   "commands in flight\n"));

    assert_int_equal(RUN_STUB(f, NULL, "lease", "list"), 0);
    assert_request_has(f, 4, "GET /v1/leases HTTP/1.1\r\n");
    assert_string_equal(f->out,
                        "AGENT    TTL MS  GRANTED INDEX  GRANTED AT        "
                        "        NODE\n"
                        "agent-1  10000   7              "
                        "2026-11-22T07:47:15.484Z  2\n");
}

/* The body names the agent, action, service, arguments, TTL and reason;
 * the audit headers come along. */
static void main_command_issue(void **state)
{
    struct fixture *f = *state;

    stub_answer(&f->stub, "201 Created", "Location: /v1/commands/c-1\r\n",
                command_json);
    stub_answer(&f->stub, "201 Created", "", command_json);
    start_stub(f);
    assert_int_equal(RUN_STUB(f, NULL, "command", "issue", "agent-1", "restart",
                              "web", "--arg", "mode=fast", "--arg", "note=a=b",
                              "--ttl", "5000", "--reason", "smoke", "--user",
                              "bob", "--request-id", "r-1"),
                     0);
    assert_string_equal(f->out, command_table);
    assert_string_equal(f->err, "");
    assert_request_has(f, 0, "POST /v1/commands HTTP/1.1\r\n");
    assert_request_has(f, 0, "\r\nX-Rems-User: bob\r\n");
    assert_request_has(f, 0, "\r\nX-Rems-Reason: smoke\r\n");
    assert_request_has(f, 0, "\r\nX-Rems-Request-Id: r-1\r\n");
    assert_string_equal(request_body(f, 0),
                        "{\"agent\":\"agent-1\",\"action\":\"restart\","
                        "\"service\":\"web\",\"args\":{\"mode\":\"fast\","
                        "\"note\":\"a=b\"},\"ttl_ms\":5000,\"reason\":"
                        "\"smoke\"}");

    /* Only what was given; -o json prints the answer. */
    assert_int_equal(RUN_STUB(f, NULL, "command", "issue", "a1", "diagnostics",
                              "-o", "json"),
                     0);
    assert_string_equal(request_body(f, 1),
                        "{\"agent\":\"a1\",\"action\":\"diagnostics\"}");
    assert_memory_equal(f->out, "{\n  \"id\": \"c-1\",", 16);
}

/* A JSON manifest is sent as written; a YAML one converted; a bad one is a
 * usage error and nothing is sent. */
static void main_command_issue_manifest(void **state)
{
    struct fixture *f = *state;
    const char *json = "{\"big\": 123456789012345678901234567890}\n";
    char path[] = "/tmp/remsctl-test-XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    stub_answer(&f->stub, "201 Created", "", command_json);
    stub_answer(&f->stub, "201 Created", "", command_json);
    start_stub(f);
    assert_int_equal(RUN_STUB(f, NULL, "command", "issue", "a1",
                              "push_manifest", "--manifest", path),
                     0);
    unlink(path);
    assert_string_equal(request_body(f, 0),
                        "{\"agent\":\"a1\",\"action\":\"push_manifest\","
                        "\"manifest\":{\"big\": "
                        "123456789012345678901234567890}\n}");

    assert_int_equal(RUN_STUB(f, "services:\n  web:\n    replicas: 2\n",
                              "command", "issue", "a1", "push_manifest", "web",
                              "--manifest", "-"),
                     0);
    assert_string_equal(request_body(f, 1),
                        "{\"agent\":\"a1\",\"action\":\"push_manifest\","
                        "\"service\":\"web\",\"manifest\":{\"services\":"
                        "{\"web\":{\"replicas\":2}}}}");

    assert_int_equal(RUN(f, "127.0.0.1:1", "- a\n", "command", "issue", "a1",
                         "push_manifest", "--manifest", "-"),
                     CTL_EXIT_USAGE);
    assert_string_equal(f->err, "remsctl: command issue: standard input: the "
                                "manifest must be a JSON object or YAML "
                                "mapping\n");
    assert_string_equal(f->out, "");
    assert_int_equal(RUN(f, "127.0.0.1:1", NULL, "command", "issue", "a1",
                         "push_manifest", "--manifest", "/nonexistent/m.yaml"),
                     CTL_EXIT_USAGE);
    assert_string_equal(f->err, "remsctl: command issue: /nonexistent/m.yaml: "
                                "No such file or directory\n");
}

#define PENDING_JSON                                                           \
    "{\"id\": \"c-1\", \"agent\": \"a1\", \"action\": \"restart\","            \
    " \"service\": \"web\", \"state\": \"pending\", \"ttl_ms\": 30000}"

/* --wait reads the command (stale reads, a 404 while the node has not
 * applied it yet) until it ends; exit 0 only for acked. */
static void main_command_wait(void **state)
{
    struct fixture *f = *state;

    stub_answer(&f->stub, "201 Created", "", PENDING_JSON);
    stub_answer(&f->stub, "404 Not Found", "",
                "{\"error\": {\"code\": \"not_found\", \"message\": \"no "
                "command with id c-1\", \"field\": \"id\"}}");
    stub_answer(&f->stub, "200 OK", "", PENDING_JSON);
    stub_answer(&f->stub, "200 OK", "", command_json);
    stub_answer(&f->stub, "201 Created", "", PENDING_JSON);
    stub_answer(&f->stub, "200 OK", "",
                "{\"id\": \"c-1\", \"state\": \"nacked\", \"result\":"
                " {\"reason\": \"failed\"}}");
    start_stub(f);

    assert_int_equal(RUN_STUB(f, NULL, "command", "issue", "a1", "restart",
                              "web", "--wait", "10"),
                     0);
    assert_string_equal(f->out, command_table);
    assert_string_equal(f->err, "");
    assert_request_has(f, 1,
                       "GET /v1/commands/c-1?consistency=stale HTTP/1.1\r\n");
    assert_request_has(f, 3,
                       "GET /v1/commands/c-1?consistency=stale HTTP/1.1\r\n");
    assert_request_lacks(f, 3, "X-Rems-");

    assert_int_equal(RUN_STUB(f, NULL, "command", "issue", "a1", "restart",
                              "web", "--wait", "-o", "json"),
                     CTL_EXIT_FAILED);
    assert_non_null(strstr(f->out, "\"state\": \"nacked\""));
    assert_string_equal(f->err, "remsctl: command c-1 ended nacked\n");
}

static void main_command_wait_timeout(void **state)
{
    struct fixture *f = *state;
    int i;

    stub_answer(&f->stub, "201 Created", "", PENDING_JSON);
    for (i = 0; i < 4; i++) {
        stub_answer(&f->stub, "200 OK", "", PENDING_JSON);
    }
    start_stub(f);
    assert_int_equal(RUN_STUB(f, NULL, "command", "issue", "a1", "restart",
                              "web", "--wait=0.3"),
                     CTL_EXIT_FAILED);
    assert_string_equal(f->out, "");
    assert_string_equal(f->err, "remsctl: command c-1 is still pending after "
                                "0.3 s; see 'remsctl command show c-1'\n");
    assert_true(f->stub.nrequests >= 2);
}

static void main_command_list_show_cancel(void **state)
{
    struct fixture *f = *state;
    char *list = NULL;
    size_t size = strlen(command_json) + 64;

    list = malloc(size);
    assert_non_null(list);
    snprintf(list, size, "{\"items\": [%s], \"next_after\": \"c-1\"}",
             command_json);
    stub_answer(&f->stub, "200 OK", "", list);
    free(list);
    stub_answer(&f->stub, "200 OK", "", command_json);
    stub_answer(&f->stub, "200 OK", "", command_json);
    stub_answer(&f->stub, "409 Conflict", "",
                "{\"error\": {\"code\": \"conflict\", \"message\": "
                "\"command c-1 has already ended: acked\", \"field\": \"id\","
                " \"state\": \"acked\"}}");
    start_stub(f);

    assert_int_equal(RUN_STUB(f, NULL, "command", "list", "--agent", "agent-1",
                              "--state", "acked", "--limit", "1"),
                     0);
    assert_request_has(f, 0,
                       "GET /v1/commands?agent=agent-1&state=acked&limit=1 "
                       "HTTP/1.1\r\n");
    assert_string_equal(f->out,
                        "ID   AGENT    ACTION   SERVICE  STATE  ISSUED  USER "
                        "  REASON\n"
                        "c-1  agent-1  restart  web      acked  12      alice"
                        "  smoke\n");
    assert_string_equal(f->err, "remsctl: more commands follow: use --after "
                                "c-1, or --all\n");

    assert_int_equal(RUN_STUB(f, NULL, "command", "show", "c-1"), 0);
    assert_request_has(f, 1, "GET /v1/commands/c-1 HTTP/1.1\r\n");
    assert_string_equal(f->out, command_table);

    assert_int_equal(
        RUN_STUB(f, NULL, "command", "cancel", "c-1", "--reason", "oops"), 0);
    assert_request_has(f, 2, "DELETE /v1/commands/c-1 HTTP/1.1\r\n");
    assert_request_has(f, 2, "\r\nX-Rems-Reason: oops\r\n");
    assert_request_has(f, 2, "\r\nX-Rems-Request-Id: ");
    assert_string_equal(f->out, command_table);

    assert_int_equal(RUN_STUB(f, NULL, "command", "cancel", "c-1", "--force"),
                     CTL_EXIT_FAILED);
    assert_request_has(f, 3, "DELETE /v1/commands/c-1?force=true HTTP/1.1\r\n");
    assert_string_equal(f->out, "");
    assert_string_equal(f->err, "remsctl: 409 conflict: command c-1 has "
                                "already ended: acked (field: id)\n");
}

/* ------------------------------------------------------------------------
 * The reconciler's commands
 * ------------------------------------------------------------------------ */

static void parse_reconciler_commands(void **state)
{
    struct fixture *f = *state;
    struct ctl_args a;

    assert_int_equal(PARSE(f, &a, "summary", "--agent", "edge-1", "--site",
                           "north", "--linearizable"),
                     0);
    assert_int_equal(a.cmd->id, CMD_SUMMARY);
    assert_string_equal(a.agent, "edge-1");
    assert_string_equal(a.site, "north");
    assert_true(a.linearizable);
    assert_false(a.cmd->write);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "drift", "--service", "web", "--kind",
                           "missing_service", "--level", "required"),
                     0);
    assert_int_equal(a.cmd->id, CMD_DRIFT);
    assert_string_equal(a.service, "web");
    assert_string_equal(a.kind, "missing_service");
    assert_string_equal(a.level, "required");
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "recommendations", "--level", "blocked"), 0);
    assert_int_equal(a.cmd->id, CMD_RECOMMENDATIONS);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "incident", "list", "--state", "unresolved",
                           "--after", "12", "--all", "--stale"),
                     0);
    assert_int_equal(a.cmd->id, CMD_INCIDENT_LIST);
    assert_string_equal(a.state, "unresolved");
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "incident", "ack", "42", "--reason", "mine",
                           "--request-id", "r-1"),
                     0);
    assert_int_equal(a.cmd->id, CMD_INCIDENT_ACK);
    assert_true(a.cmd->write);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "incident", "resolve", "42"), 0);
    assert_int_equal(a.cmd->id, CMD_INCIDENT_RESOLVE);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "rollout", "list", "--after", "site/a",
                           "--all", "--stale"),
                     0);
    assert_int_equal(a.cmd->id, CMD_ROLLOUT_LIST);
    assert_false(a.cmd->write);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "rollout", "show", "site/a/web",
                           "--documents"),
                     0);
    assert_int_equal(a.cmd->id, CMD_ROLLOUT_SHOW);
    assert_true(a.documents);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "rollout", "rollback", "site/a/web",
                           "--revision", "17", "--reason", "bad canary"),
                     0);
    assert_int_equal(a.cmd->id, CMD_ROLLOUT_ROLLBACK);
    assert_true(a.cmd->write);
    assert_int_equal(a.revision, 17);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "rollout", "pause", "k"), 0);
    assert_int_equal(a.cmd->id, CMD_ROLLOUT_PAUSE);
    assert_int_equal(a.revision, 0);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "override", "set", "service", "web",
                           "--agent", "edge-1", "--for", "1h30m"),
                     0);
    assert_int_equal(a.cmd->id, CMD_OVERRIDE_SET);
    assert_int_equal(a.for_ms, 5400000);
    assert_int_equal(a.until_ms, 0);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "override", "set", "agent", "edge-2",
                           "--until", "2026-05-01T22:00:00Z"),
                     0);
    assert_int_equal(a.until_ms, 1777672800000ULL);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "override", "set", "site", "north", "--until",
                           "2026-05-01T22:00:30.5Z"),
                     0);
    assert_int_equal(a.until_ms, 1777672830500ULL);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "override", "set", "pause"), 0);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "override", "clear", "site", "north"), 0);
    assert_int_equal(a.cmd->id, CMD_OVERRIDE_CLEAR);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "reconciler", "pause"), 0);
    assert_int_equal(a.cmd->id, CMD_RECONCILER_PAUSE);
    assert_true(a.cmd->write);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "reconciler", "resume"), 0);
    assert_int_equal(a.cmd->id, CMD_RECONCILER_RESUME);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "window", "set", "night", "--site", "north",
                           "--mode", "never_inside", "--days", "sat-sun,mon",
                           "--start", "22:00", "--duration", "4h"),
                     0);
    assert_int_equal(a.cmd->id, CMD_WINDOW_SET);
    assert_int_equal(a.duration_minutes, 240);
    assert_string_equal(a.days, "sat-sun,mon");
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "window", "set", "once", "--agent", "e1",
                           "--mode", "auto_inside_only", "--from", "1000",
                           "--to", "1970-01-01T00:00:02Z"),
                     0);
    assert_int_equal(a.from_ms, 1000);
    assert_int_equal(a.to_ms, 2000);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "window", "list", "--all"), 0);
    assert_int_equal(a.cmd->id, CMD_WINDOW_LIST);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "window", "delete", "night"), 0);
    assert_int_equal(a.cmd->id, CMD_WINDOW_DELETE);
    ctl_args_close(&a);

    assert_int_equal(PARSE(f, &a, "policy", "validate", "p.yaml"), 0);
    assert_int_equal(a.cmd->id, CMD_POLICY_VALIDATE);
    ctl_args_close(&a);
    assert_int_equal(PARSE(f, &a, "policy", "put", "k", "p.yaml"), 0);
    assert_int_equal(a.nargs, 2);
    ctl_args_close(&a);
}

static void parse_reconciler_usage_errors(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *argv[16];
        const char *message;
    } cases[] = {
        {{"incident", "list", "--state", "closed"},
         "invalid state 'closed' (expected open, acknowledged, resolved or "
         "unresolved)"},
        {{"command", "list", "--state", "open"},
         "invalid state 'open' (expected pending, acked, nacked, expired or "
         "cancelled)"},
        {{"incident", "list", "--after", "x"},
         "invalid incident id 'x' (expected a number)"},
        {{"incident", "show", "0"},
         "invalid incident id '0' (expected a positive integer)"},
        {{"incident", "ack"}, "missing arguments (expected ID)"},
        {{"rollout", "pause"}, "missing arguments (expected KEY)"},
        {{"rollout", "abort", "k", "--revision", "0"},
         "invalid revision '0' (expected a positive integer)"},
        {{"rollout", "resume", "k", "--documents"},
         "option '--documents' is not valid for 'rollout resume'"},
        {{"rollout", "show", "k", "--revision", "3"},
         "option '--revision' is not valid for 'rollout show'"},
        {{"incident", "resolve", "4", "--stale"},
         "option '--stale' is not valid for 'incident resolve'"},
        {{"override", "set", "planet", "x"},
         "invalid scope 'planet' (expected service, agent, site or pause)"},
        {{"override", "set", "service"}, "scope service needs a NAME"},
        {{"override", "set", "pause", "x"}, "scope pause takes no NAME"},
        {{"override", "set", "agent", "e1", "--agent", "e2"},
         "--agent is only for scope service"},
        {{"override", "set", "pause", "--for", "1h"},
         "a pause lasts until resumed: no --until or --for"},
        {{"override", "set", "agent", "e1", "--for", "1h", "--until",
          "2030-01-01T00:00:00Z"},
         "--until and --for exclude each other"},
        {{"override", "set", "agent", "e1", "--for", "soon"},
         "invalid duration 'soon' (expected a duration such as 90m, 2h or "
         "1d)"},
        {{"override", "set", "agent", "e1", "--until", "2026-02-30T00:00Z"},
         "invalid time '2026-02-30T00:00Z' (expected milliseconds since the "
         "epoch, or a UTC time such as 2026-05-01T22:00:00Z)"},
        {{"override", "set", "agent", "e1", "--until", "2026-02-03 00:00"},
         "invalid time '2026-02-03 00:00' (expected milliseconds since the "
         "epoch, or a UTC time such as 2026-05-01T22:00:00Z)"},
        {{"override", "clear", "agent", "e1", "--for", "1h"},
         "option '--for' is not valid for 'override clear'"},
        {{"window", "set", "w", "--days", "mon", "--start", "01:00",
          "--duration", "1h"},
         "window set needs --mode auto_inside_only or never_inside"},
        {{"window", "set", "w", "--mode", "sometimes"},
         "invalid mode 'sometimes' (expected auto_inside_only or "
         "never_inside)"},
        {{"window", "set", "w", "--mode", "never_inside"},
         "a window is once (--from and --to) or weekly (--days, --start and "
         "--duration)"},
        {{"window", "set", "w", "--mode", "never_inside", "--from", "5",
          "--days", "mon"},
         "a window is once (--from and --to) or weekly (--days, --start and "
         "--duration), not both"},
        {{"window", "set", "w", "--mode", "never_inside", "--from", "5"},
         "a window once needs --from and --to"},
        {{"window", "set", "w", "--mode", "never_inside", "--days", "mon"},
         "a weekly window needs --days, --start and --duration"},
        {{"window", "set", "w", "--mode", "never_inside", "--days", "mon",
          "--start", "01:00", "--duration", "90s"},
         "invalid duration '90s' (expected whole minutes, at most a week, "
         "such as 90m, 4h or 1d)"},
        {{"window", "set", "w", "--mode", "never_inside", "--site", "s",
          "--agent", "a", "--from", "1", "--to", "2"},
         "--site and --agent exclude each other"},
        {{"window", "show", "a b"},
         "invalid window name 'a b' (expected 1-64 characters of "
         "[A-Za-z0-9_.:-])"},
        {{"summary", "--kind", "x"},
         "option '--kind' is not valid for 'summary'"},
        {{"policy", "validate"}, "missing arguments (expected FILE)"},
    };
    struct ctl_args a;
    size_t i;

    for (i = 0; i < REMS_ARRAY_SIZE(cases); i++) {
        char *argv[18] = {"remsctl"};
        size_t n;
        for (n = 0; cases[i].argv[n] != NULL; n++) {
            argv[n + 1] = (char *)cases[i].argv[n];
        }
        if (parse(f, &a, argv) != REMS_EINVAL) {
            fail_msg("case %zu: accepted", i);
        }
        if (strcmp(f->errmsg, cases[i].message) != 0) {
            fail_msg("case %zu: \"%s\", wanted \"%s\"", i, f->errmsg,
                     cases[i].message);
        }
        ctl_args_close(&a);
    }
}

static void time_and_duration_forms(void **state)
{
    uint64_t ms;

    (void)state;
    assert_int_equal(time_parse("0", &ms), REMS_EINVAL);
    assert_int_equal(time_parse("1970-01-01T00:00Z", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(time_parse("2000-02-29T12:34:56.789Z", &ms), 0);
    assert_int_equal(ms, 951827696789ULL);
    assert_int_equal(time_parse("2001-02-29T00:00Z", &ms), REMS_EINVAL);
    assert_int_equal(time_parse("2026-05-01T24:00Z", &ms), REMS_EINVAL);
    assert_int_equal(time_parse("2026-05-01T22:00:00", &ms), REMS_EINVAL);
    assert_int_equal(time_parse("2026-05-01T22:00:00.Z", &ms), REMS_EINVAL);
    assert_int_equal(duration_parse("1w2d3h4m5s6ms", &ms), 0);
    assert_int_equal(ms, 604800000ULL + 2 * 86400000ULL + 3 * 3600000ULL +
                             4 * 60000ULL + 5000ULL + 6ULL);
    assert_int_equal(duration_parse("90", &ms), REMS_EINVAL);
    assert_int_equal(duration_parse("0m", &ms), REMS_EINVAL);
    assert_int_equal(duration_parse("h", &ms), REMS_EINVAL);
    assert_int_equal(duration_parse("3650d", &ms), 0);
    assert_int_equal(duration_parse("3651d", &ms), REMS_EINVAL);
}

static void policy_validate_cases(struct fixture *f)
{
    const char *yaml = "placement:\n  agents: [edge-1]\nservices:\n"
                       "  - name: web\n    command: [/bin/sleep, 10]\n";
    char path[] = "/tmp/remsctl-test-XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    /* No endpoint answers: a call would fail with exit 3. */
    assert_int_equal(RUN(f, "127.0.0.1:1", NULL, "policy", "validate", path),
                     0);
    unlink(path);
    assert_string_equal(f->out, "valid\n");
    assert_string_equal(f->err, "");

    assert_int_equal(RUN(f, "127.0.0.1:1",
                         "{\"placement\": {}, \"services\": []}", "policy",
                         "validate", "-"),
                     CTL_EXIT_FAILED);
    assert_string_equal(f->out, "");
    assert_string_equal(f->err, "remsctl: policy validate: standard input: "
                                "placement: must name agents or a selector\n");

    assert_int_equal(
        RUN(f, "127.0.0.1:1", "{\"a\": ", "policy", "validate", "-"),
        CTL_EXIT_FAILED);
    assert_non_null(strstr(f->err, "standard input: invalid JSON at line 1"));

    assert_int_equal(RUN(f, "127.0.0.1:1", "- 1\n", "policy", "validate", "-"),
                     CTL_EXIT_FAILED);
    assert_string_equal(f->err,
                        "remsctl: policy validate: standard input: the value "
                        "must be a JSON object or YAML mapping\n");
}

/* policy validate reads JSON or YAML, makes no call, and names the rule.
 * cluster/policy.c frees jansson's text with free() (jansson's default
 * allocator), so jansson runs on malloc here. */
static void main_policy_validate(void **state)
{
    struct fixture *f = *state;

    json_set_alloc_funcs(malloc, free);
    policy_validate_cases(f);
    json_set_alloc_funcs(json_heap_malloc, json_heap_free);
}

static const char view_meta[] =
    "\"index\": 42, \"computed_at_ms\": 1795000000000, \"by_leader\": true, "
    "\"invalid_policies\": {\"count\": 1, \"first_key\": \"old\", "
    "\"first_error\": \"policy: unknown field \\\"image\\\"\"}";

static void main_views(void **state)
{
    struct fixture *f = *state;
    char body[2048];

    snprintf(body, sizeof body,
             "{%s, \"paused\": false, \"cluster\": {\"name\": \"cluster\", "
             "\"state\": \"degraded\", \"counts\": {\"nominal\": 1, "
             "\"degraded\": 1, \"reconciling\": 0, \"unstable\": 0}, "
             "\"total\": 2}, \"sites\": [], \"agents\": [{\"name\": "
             "\"edge-1\", \"state\": \"degraded\", \"counts\": {\"nominal\": "
             "0, \"degraded\": 1, \"reconciling\": 0, \"unstable\": 0}, "
             "\"total\": 1}], \"services\": []}",
             view_meta);
    stub_answer(&f->stub, "200 OK", "", body);
    snprintf(body, sizeof body,
             "{%s, \"items\": [{\"agent\": \"edge-1\", \"service\": \"web\", "
             "\"kind\": \"missing_service\", \"level\": "
             "\"reconcile_required\", \"action\": \"redeploy\", \"reason\": "
             "\"not reported\", \"policy\": \"p\"}], \"actions\": [], "
             "\"holds\": [{\"agent\": \"edge-1\", \"service\": \"web\", "
             "\"action\": \"redeploy\", \"guardrail\": \"paused\", \"detail\": "
             "\"the reconciler is paused\"}], \"conflicts\": []}",
             view_meta);
    stub_answer(&f->stub, "200 OK", "", body);
    start_stub(f);

    assert_int_equal(
        RUN_STUB(f, NULL, "summary", "--agent", "edge-1", "--linearizable"), 0);
    assert_request_has(f, 0,
                       "GET /v1/summary?agent=edge-1&consistency=linearizable "
                       "HTTP/1.1\r\n");
    assert_string_equal(
        f->out,
        "cluster:       degraded (2 agents)\n"
        "reconciler:    running\n"
        "computed:      2026-11-18T11:06:40.000Z at index 42, the leader's "
        "pass\n"
        "\n"
        "AGENT   STATE     NOMINAL  DEGRADED  RECONCILING  UNSTABLE  TOTAL\n"
        "edge-1  degraded  0        1         0            0         1\n"
        "\n"
        "note: 1 stored policy(ies) do not validate and are left out; first "
        "old: policy: unknown field \"image\"\n");

    assert_int_equal(RUN_STUB(f, NULL, "recommendations", "--level", "required",
                              "--service", "web"),
                     0);
    assert_request_has(f, 1,
                       "GET /v1/recommendations?service=web&level=required "
                       "HTTP/1.1\r\n");
    assert_non_null(strstr(f->out, "AGENT   SERVICE  LEVEL     ACTION    "
                                   "POLICY  REASON\n"
                                   "edge-1  web      required  redeploy  p   "
                                   "    not reported\n"));
    assert_non_null(strstr(f->out, "\nHeld back by a guardrail:\n"
                                   "AGENT   SERVICE  ACTION    GUARDRAIL  "
                                   "DETAIL\n"));
}

static const char incident_json[] =
    "{\"id\": 7, \"agent\": \"edge-4\", \"service\": \"web\", \"kind\": "
    "\"unhealthy_service\", \"policy\": \"p\", \"detail\": \"fatal\", "
    "\"attempts\": 3, \"state\": \"resolved\", \"opened\": {\"index\": 7, "
    "\"time_ms\": 1795000000000, \"by\": \"reconciler\", \"reason\": "
    "\"escalated\"}, \"acknowledged\": null, \"resolved\": {\"index\": 9, "
    "\"time_ms\": 1795000001000, \"by\": \"bob\", \"reason\": \"fixed\"}}";

static void main_incidents_overrides_windows(void **state)
{
    struct fixture *f = *state;
    char body[2048];

    snprintf(body, sizeof body, "{\"items\": [%s], \"next_after\": 7}",
             incident_json);
    stub_answer(&f->stub, "200 OK", "", body);
    stub_answer(&f->stub, "200 OK", "",
                "{\"items\": [], \"next_after\": null}");
    stub_answer(&f->stub, "200 OK", "", incident_json);
    stub_answer(&f->stub, "200 OK", "",
                "{\"scope\": \"service\", \"name\": \"web\", \"agent\": "
                "\"edge-1\", \"until_ms\": null, \"active\": true}");
    stub_answer(&f->stub, "200 OK", "",
                "{\"scope\": \"pause\", \"name\": null, \"agent\": null, "
                "\"cleared\": true, \"paused\": false}");
    stub_answer(&f->stub, "200 OK", "",
                "{\"name\": \"night\", \"scope\": \"global\", \"target\": "
                "null, \"mode\": \"never_inside\", \"start_ms\": null, "
                "\"end_ms\": null, \"weekly\": {\"days\": [\"sat\", \"sun\"], "
                "\"start\": \"22:00\", \"duration_minutes\": 240}, \"open\": "
                "false, \"set_index\": 12, \"requested_by\": \"alice\", "
                "\"reason\": \"\"}");
    start_stub(f);

    assert_int_equal(
        RUN_STUB(f, NULL, "incident", "list", "--state", "resolved", "--all"),
        0);
    assert_request_has(f, 0, "GET /v1/incidents?state=resolved HTTP/1.1\r\n");
    assert_request_has(f, 1,
                       "GET /v1/incidents?state=resolved&after=7 "
                       "HTTP/1.1\r\n");
    assert_string_equal(f->out,
                        "ID  STATE     AGENT   SERVICE  KIND               "
                        "ATTEMPTS  OPENED\n"
                        "7   resolved  edge-4  web      unhealthy_service  3 "
                        "        2026-11-18T11:06:40.000Z\n");

    assert_int_equal(
        RUN_STUB(f, NULL, "incident", "resolve", "7", "--reason", "fixed"), 0);
    assert_request_has(f, 2, "POST /v1/incidents/7/resolve HTTP/1.1\r\n");
    assert_request_has(f, 2, "\r\nX-Rems-User: alice\r\n");
    assert_request_has(f, 2, "\r\nX-Rems-Reason: fixed\r\n");
    assert_non_null(strstr(f->out, "resolved:      index 9, "
                                   "2026-11-18T11:06:41.000Z, by bob: "
                                   "fixed\n"));
    assert_non_null(strstr(f->out, "acknowledged:  -\n"));

    assert_int_equal(RUN_STUB(f, NULL, "override", "set", "service", "web",
                              "--agent", "edge-1", "--for", "2h"),
                     0);
    assert_request_has(f, 3, "POST /v1/overrides HTTP/1.1\r\n");
    assert_string_equal(request_body(f, 3),
                        "{\"scope\":\"service\",\"name\":\"web\",\"agent\":"
                        "\"edge-1\",\"duration_ms\":7200000}");
    assert_string_equal(f->out,
                        "service web frozen on agent edge-1 until cleared\n");

    assert_int_equal(RUN_STUB(f, NULL, "reconciler", "resume"), 0);
    assert_request_has(f, 4, "POST /v1/reconciler/resume HTTP/1.1\r\n");
    assert_string_equal(f->out, "reconciler resumed\n");

    assert_int_equal(RUN_STUB(f, NULL, "window", "set", "night", "--mode",
                              "never_inside", "--days", "sat,sun", "--start",
                              "22:00", "--duration", "4h"),
                     0);
    assert_request_has(f, 5, "PUT /v1/maintenance-windows/night HTTP/1.1\r\n");
    assert_string_equal(request_body(f, 5),
                        "{\"scope\":\"global\",\"mode\":\"never_inside\","
                        "\"weekly\":{\"days\":[\"sat\",\"sun\"],"
                        "\"duration_minutes\":240,\"start\":\"22:00\"}}");
    assert_non_null(strstr(
        f->out, "when:          weekly sat,sun 22:00 UTC for 240 min\n"));
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(parse_defaults),
        TEST(parse_environment),
        TEST(parse_option_forms),
        TEST(parse_member_commands),
        TEST(parse_agent_commands),
        TEST(parse_command_commands),
        TEST(parse_too_many_command_args),
        TEST(parse_usage_errors),
        TEST(parse_too_many_words),
        TEST(parse_help_and_version),
        TEST(endpoint_forms),
        TEST(parse_out_of_memory),
        TEST(key_segments_encoded),
        TEST(query_parameters),
        TEST(yaml_scalars),
        TEST(yaml_collections),
        TEST(yaml_anchors),
        TEST(yaml_errors),
        TEST(yaml_limits),
        TEST(yaml_out_of_memory),
        TEST(value_json_is_verbatim),
        TEST(value_errors),
        TEST(table_layout),
        TEST(table_out_of_memory),
        TEST(render_status_table),
        TEST(render_other_answers),
        TEST(render_agents_and_commands),
        TEST(render_out_of_memory),
        TEST(render_agent_command_out_of_memory),
        TEST(api_errors_formatted),
        TEST(main_help_and_version),
        TEST(main_usage_error),
        TEST(main_unreachable),
        TEST(main_status),
        TEST(main_failover),
        TEST(main_policy_put_yaml),
        TEST(main_policy_put_json_file),
        TEST(main_policy_put_bad_input),
        TEST(main_api_error),
        TEST(main_policy_get),
        TEST(main_policy_list_all),
        TEST(main_policy_list_page),
        TEST(main_members),
        TEST(main_audit),
        TEST(main_bad_answer),
        TEST(main_agents),
        TEST(main_command_issue),
        TEST(main_command_issue_manifest),
        TEST(main_command_wait),
        TEST(main_command_wait_timeout),
        TEST(main_command_list_show_cancel),
        TEST(parse_reconciler_commands),
        TEST(parse_reconciler_usage_errors),
        TEST(time_and_duration_forms),
        TEST(main_policy_validate),
        TEST(main_views),
        TEST(main_incidents_overrides_windows),
    };

    json_set_alloc_funcs(json_heap_malloc, json_heap_free);
    return cmocka_run_group_tests_name("remsctl", tests, NULL, NULL);
}
