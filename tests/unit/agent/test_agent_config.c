/* Tests of agentproto/agent_config.c: the YAML file (every key, every
 * rule broken, each by its exact message, and the caller's struct left
 * untouched), the services converted to JSON for the supervisor's parser,
 * the command line, the cross-key rules, the certificate's agent id
 * (certificates made once per run by tests/lib/make-test-ca.sh) and the
 * endpoint syntax. */
/* cmocka.h needs these four first; the blank line keeps clang-format from
 * sorting it above them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentproto/agent_config.h"
#include "agentproto/supervisor.h"
#include "tests/lib/heap.h"
#include "tests/lib/tmpdir.h"

#define MAX_ARGS 16

/* The certificates, made by group_setup(). */
static char certdir[TEST_TMPDIR_SIZE];

struct fixture {
    char dir[TEST_TMPDIR_SIZE];
    char path[TEST_TMPDIR_SIZE + 64]; /* The last file written. */
    struct test_heap heap;
    struct agent_config c;
    struct agent_config before; /* Copy of c before a call that fails. */
    struct agent_cli cli;
    struct rems_buf json;
    char errmsg[REMS_ERRMSG_SIZE];
    char expected[REMS_ERRMSG_SIZE + TEST_TMPDIR_SIZE];
};

static int group_setup(void **state)
{
    char cmd[TEST_TMPDIR_SIZE * 2 + 64];
    (void)state;
    test_tmpdir_make(certdir);
    snprintf(cmd, sizeof cmd, "sh '%s' '%s' >/dev/null 2>&1", REMS_MAKE_TEST_CA,
             certdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    test_tmpdir_remove(certdir);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_tmpdir_make(f->dir);
    test_heap_install(&f->heap);
    agent_config_init(&f->c);
    rems_buf_init(&f->json);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

    agent_config_close(&f->c);
    rems_buf_close(&f->json);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    test_tmpdir_remove(f->dir);
    free(f);
    assert_int_equal(live, 0); /* Last, so a leak still cleans up. */
    return 0;
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static const char *cert(const char *name)
{
    static char paths[4][TEST_TMPDIR_SIZE + 64];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", certdir, name);
    return p;
}

static void write_file(struct fixture *f, const char *text)
{
    FILE *fp;

    snprintf(f->path, sizeof f->path, "%s/agent.yaml", f->dir);
    fp = fopen(f->path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

static int load(struct fixture *f, const char *yaml)
{
    write_file(f, yaml);
    return agent_config_load_file(&f->c, f->path, f->errmsg);
}

static void save(struct fixture *f)
{
    memcpy(&f->before, &f->c, sizeof f->c);
}

static void assert_untouched(struct fixture *f)
{
    assert_memory_equal(&f->before, &f->c, sizeof f->c);
}

/* Loading @yaml fails with "<path>:<line>: <msg>" and leaves f->c as it
 * was. */
static void assert_load_error(struct fixture *f,
                              const char *yaml,
                              int line,
                              const char *msg)
{
    save(f);
    assert_int_equal(load(f, yaml), REMS_ECONFIG);
    snprintf(f->expected, sizeof f->expected, "%s:%d: %s", f->path, line, msg);
    assert_string_equal(f->errmsg, f->expected);
    assert_untouched(f);
}

static int parse(struct fixture *f, ...)
{
    char *argv[MAX_ARGS];
    const char *arg;
    va_list ap;
    int argc = 0;

    va_start(ap, f);
    while ((arg = va_arg(ap, const char *)) != NULL) {
        assert_true(argc < MAX_ARGS);
        argv[argc++] = (char *)arg;
    }
    va_end(ap);
    memset(&f->cli, 0x5a, sizeof f->cli);
    return agent_config_parse_args(argc, argv, &f->cli, f->errmsg);
}

static void assert_invalid(struct fixture *f, const char *msg)
{
    assert_int_equal(agent_config_validate(&f->c, f->errmsg), REMS_ECONFIG);
    assert_string_equal(f->errmsg, msg);
}

static const char minimal_file[] =
    "id: agent-1\n"
    "endpoints: [127.0.0.1:7443]\n"
    "tls: {cert: a.pem, key: a.key, ca: ca.pem}\n"
    "data_dir: /var/lib/rems-agent\n";

static const char full_file[] =
    "# rems-agent on the first edge box\n"
    "id: agent-1\n"
    "endpoints:\n"
    "  - node1.rems.example:7443\n"
    "  - 10.0.0.2:7443\n"
    "  - \"[2001:db8::3]:7443\"\n"
    "tls:\n"
    "  cert: /etc/rems/agent-1.pem\n"
    "  key: /etc/rems/agent-1.key\n"
    "  ca: /etc/rems/ca.pem\n"
    "  crl: /etc/rems/crl.pem\n"
    "  server_name: nodes.rems.example\n"
    "data_dir: /var/lib/rems-agent\n"
    "labels:\n"
    "  zone: eu-west-1a\n"
    "  rack: \"12\"\n"
    "  empty: ~\n"
    "heartbeat_interval_ms: 500\n"
    "reconnect:\n"
    "  initial_ms: 200\n"
    "  max_ms: 60000\n"
    "  connect_timeout_ms: 5000\n"
    "dead_man:\n"
    "  timeout_ms: 120000\n"
    "outbox: {max_reports: 500}\n"
    "executed_ids_kept: 2000\n"
    "max_frame_bytes: 65536\n"
    "log_level: debug\n"
    "services:\n"
    "  - name: web\n"
    "    command: [/usr/bin/web, --port, 8080]\n"
    "    env: {MODE: prod}\n"
    "    backoff: {initial_ms: 100, multiplier: 1.5}\n"
    "    depends_on: [db]\n"
    "  - name: db\n"
    "    command: [\"/usr/bin/db\"]\n"
    "    autostart: false\n";

/* ------------------------------------------------------------------------
 * The file
 * ------------------------------------------------------------------------ */

static void defaults(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f, minimal_file), 0);
    assert_int_equal(agent_config_validate(&f->c, f->errmsg), 0);
    assert_string_equal(f->c.id, "agent-1");
    assert_int_equal(f->c.n_endpoints, 1);
    assert_string_equal(f->c.endpoints[0].host, "127.0.0.1");
    assert_int_equal(f->c.endpoints[0].port, 7443);
    assert_string_equal(f->c.tls_crl, "");
    assert_string_equal(f->c.tls_server_name, "");
    assert_int_equal(f->c.heartbeat_interval_ms, 0);
    assert_int_equal(f->c.reconnect_initial_ms, 500);
    assert_int_equal(f->c.reconnect_max_ms, 30000);
    assert_int_equal(f->c.connect_timeout_ms, 10000);
    assert_int_equal(f->c.dead_man_timeout_ms, 0);
    assert_int_equal(f->c.outbox_max_reports, 10000);
    assert_int_equal(f->c.executed_ids_kept, 10000);
    assert_int_equal(f->c.max_frame_bytes, 1048576);
    assert_string_equal(f->c.log_level, "info");
    assert_int_equal(f->c.n_labels, 0);
    assert_int_equal(f->c.n_services, 0);
}

static void full(void **state)
{
    struct fixture *f = *state;
    char addr[AGENT_CONFIG_ADDR_SIZE];

    assert_int_equal(load(f, full_file), 0);
    assert_int_equal(agent_config_validate(&f->c, f->errmsg), 0);
    assert_int_equal(f->c.n_endpoints, 3);
    assert_string_equal(f->c.endpoints[0].host, "node1.rems.example");
    assert_string_equal(f->c.endpoints[2].host, "2001:db8::3");
    agent_endpoint_format(&f->c.endpoints[2], addr);
    assert_string_equal(addr, "[2001:db8::3]:7443");
    assert_string_equal(f->c.tls_cert, "/etc/rems/agent-1.pem");
    assert_string_equal(f->c.tls_key, "/etc/rems/agent-1.key");
    assert_string_equal(f->c.tls_ca, "/etc/rems/ca.pem");
    assert_string_equal(f->c.tls_crl, "/etc/rems/crl.pem");
    assert_string_equal(f->c.tls_server_name, "nodes.rems.example");
    assert_int_equal(f->c.n_labels, 3);
    assert_string_equal(f->c.labels[1].key, "rack");
    assert_string_equal(f->c.labels[1].value, "12");
    assert_string_equal(f->c.labels[2].value, "");
    assert_int_equal(f->c.heartbeat_interval_ms, 500);
    assert_int_equal(f->c.reconnect_initial_ms, 200);
    assert_int_equal(f->c.reconnect_max_ms, 60000);
    assert_int_equal(f->c.connect_timeout_ms, 5000);
    assert_int_equal(f->c.dead_man_timeout_ms, 120000);
    assert_int_equal(f->c.outbox_max_reports, 500);
    assert_int_equal(f->c.executed_ids_kept, 2000);
    assert_int_equal(f->c.max_frame_bytes, 65536);
    assert_string_equal(f->c.log_level, "debug");
    assert_int_equal(f->c.n_services, 2);
    assert_string_equal(f->c.services[0]->name, "web");
    assert_string_equal(f->c.services[0]->argv[2], "8080");
    assert_string_equal(f->c.services[0]->env[0], "MODE=prod");
    assert_true(f->c.services[0]->backoff.multiplier == 1.5);
    assert_string_equal(f->c.services[0]->depends_on[0], "db");
    assert_false(f->c.services[1]->autostart);

    /* Loading again replaces the services; a file without services keeps
     * them. */
    assert_int_equal(load(f, minimal_file), 0);
    assert_int_equal(f->c.n_services, 2);
    assert_int_equal(f->c.n_labels, 3);
}

/* Each rule of each key, by its message and line. */
static void bad_keys(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f, full_file), 0);
    assert_load_error(f, "id: agent-1\nnope: 1\n", 2, "nope: unknown key");
    assert_load_error(f, "id: a\nid: b\n", 2,
                      "id: duplicate key (first on line 1)");
    assert_load_error(f, "? [a]\n: 1\n", 1, "keys must be names");
    assert_load_error(f, "id: bad id\n", 1,
                      "id: must be 1 to 64 characters of [A-Za-z0-9_.:-]");
    assert_load_error(f, "id: [a]\n", 1,
                      "id: must be 1 to 64 characters of [A-Za-z0-9_.:-]");
    assert_load_error(f, "endpoints: 127.0.0.1:7443\n", 1,
                      "endpoints: must be a list of 1 to 16 endpoints "
                      "host:port");
    assert_load_error(f, "endpoints: []\n", 1,
                      "endpoints: must list at least one endpoint");
    assert_load_error(f, "endpoints:\n  - a:1\n  - b:0\n", 3,
                      "endpoints[1]: " AGENT_ENDPOINT_RULE);
    assert_load_error(f, "endpoints: [a.example:1, A.example:1]\n", 1,
                      "endpoints[1]: A.example:1 is also endpoints[0]");
    assert_load_error(f,
                      "endpoints: [a:1, a:2, a:3, a:4, a:5, a:6, a:7, a:8, "
                      "a:9, a:10, a:11, a:12, a:13, a:14, a:15, a:16, a:17]\n",
                      1, "endpoints: at most 16 endpoints are allowed");
    assert_load_error(f, "tls: /etc/x\n", 1,
                      "tls: must be a mapping with the keys cert key ca crl "
                      "server_name");
    assert_load_error(f, "tls:\n  cert: a\n  pem: b\n", 3,
                      "tls.pem: unknown key");
    assert_load_error(f, "tls:\n  cert: a\n  cert: b\n", 3,
                      "tls.cert: duplicate key (first on line 2)");
    assert_load_error(f, "tls:\n  [a]: 1\n", 2, "tls: keys must be names");
    assert_load_error(f, "tls: {cert: ~}\n", 1,
                      "tls.cert: must be a non-empty path shorter than 1024 "
                      "bytes");
    assert_load_error(f, "tls: {server_name: \"bad_name\"}\n", 1,
                      "tls.server_name: must be a DNS name or an IP address");
    assert_load_error(f, "data_dir: \"\"\n", 1,
                      "data_dir: must be a non-empty path shorter than 1024 "
                      "bytes");
    assert_load_error(f, "labels: [a]\n", 1,
                      "labels: must be a mapping of label names to strings");
    assert_load_error(f, "labels: {\"\": a}\n", 1,
                      "labels: keys must be non-empty names");
    assert_load_error(f, "labels: {a: [b]}\n", 1, "labels.a: must be a string");
    assert_load_error(f, "labels:\n  a: 1\n  a: 2\n", 3,
                      "labels.a: duplicate key (first on line 2)");
    assert_load_error(
        f,
        "labels: {a: "
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx}\n",
        1, "labels.a: 131 bytes, at most 128 allowed");
    assert_load_error(f, "heartbeat_interval_ms: 5\n", 1,
                      "heartbeat_interval_ms: must be 0 (the node's "
                      "interval) or an integer between 10 and 600000");
    assert_load_error(f, "heartbeat_interval_ms: \"100\"\n", 1,
                      "heartbeat_interval_ms: must be 0 (the node's "
                      "interval) or an integer between 10 and 600000");
    assert_load_error(f, "reconnect: {max_ms: 3600001}\n", 1,
                      "reconnect.max_ms: must be an integer between 10 and "
                      "3600000");
    assert_load_error(f, "reconnect: {initial_ms: -1}\n", 1,
                      "reconnect.initial_ms: must be an integer between 10 "
                      "and 600000");
    assert_load_error(f, "reconnect: {connect_timeout_ms: 1.5}\n", 1,
                      "reconnect.connect_timeout_ms: must be an integer "
                      "between 100 and 600000");
    assert_load_error(f, "dead_man: {timeout_ms: 50}\n", 1,
                      "dead_man.timeout_ms: must be 0 (off) or an integer "
                      "between 100 and 86400000");
    assert_load_error(f, "dead_man: {timeout: 1}\n", 1,
                      "dead_man.timeout: unknown key");
    assert_load_error(f, "outbox: {max_reports: 0}\n", 1,
                      "outbox.max_reports: must be an integer between 1 and "
                      "1000000");
    assert_load_error(f, "outbox: 5\n", 1,
                      "outbox: must be a mapping with the keys max_reports");
    assert_load_error(f, "executed_ids_kept: many\n", 1,
                      "executed_ids_kept: must be an integer between 1 and "
                      "1000000");
    assert_load_error(f, "max_frame_bytes: 1024\n", 1,
                      "max_frame_bytes: must be an integer between 4096 and "
                      "67108864");
    assert_load_error(f, "log_level: loud\n", 1,
                      "log_level: must be one of debug, info, warn, error");
}

/* Services: the supervisor's own messages, after the item's place. */
static void bad_services(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f, full_file), 0);
    assert_load_error(f, "services: {web: 1}\n", 1,
                      "services: must be a list of services");
    assert_load_error(f, "services:\n  - web\n", 2,
                      "services[0]: must be a mapping (a service)");
    assert_load_error(f,
                      "services:\n"
                      "  - name: db\n"
                      "    command: [/bin/db]\n"
                      "  - name: web\n"
                      "    command: [/bin/web]\n"
                      "    backoff:\n"
                      "      multiplier: 0.5\n",
                      4,
                      "services[1]: services.web.backoff.multiplier: must be "
                      ">= 1");
    assert_load_error(f, "services:\n  - name: web\n", 2,
                      "services[0]: services.web.command: required");
    assert_load_error(f, "services:\n  - command: [/bin/true]\n", 2,
                      "services[0]: services.name: required");
    assert_load_error(f,
                      "services:\n"
                      "  - {name: web, command: [/bin/a]}\n"
                      "  - {name: web, command: [/bin/b]}\n",
                      3, "services[1]: service \"web\" is also services[0]");
    /* The YAML to JSON conversion names the place itself. */
    assert_load_error(f,
                      "services:\n"
                      "  - name: web\n"
                      "    env:\n"
                      "      A: 1\n"
                      "      A: 2\n",
                      5, "services[0].env.A: duplicate key (first on line 4)");
    assert_load_error(f,
                      "services:\n"
                      "  - name: web\n"
                      "    env: {[x]: 1}\n",
                      3, "services[0].env: keys must be strings");
    /* After a failure at a later key, the services built are released. */
    assert_load_error(f,
                      "services: [{name: a, command: [/bin/a]}]\n"
                      "log_level: loud\n",
                      2, "log_level: must be one of debug, info, warn, error");
}

static void bad_files(void **state)
{
    struct fixture *f = *state;

    save(f);
    assert_int_equal(load(f, ""), REMS_ECONFIG);
    snprintf(f->expected, sizeof f->expected,
             "%s: empty file, expected a mapping of keys to values", f->path);
    assert_string_equal(f->errmsg, f->expected);
    assert_untouched(f);
    assert_load_error(f, "- a\n", 1, "expected a mapping of keys to values");
    assert_load_error(f, "id: a\n---\nid: b\n", 3,
                      "only one YAML document is allowed per file");
    assert_load_error(f, "id: [a\n", 2,
                      "invalid YAML: did not find expected ',' or ']' (while "
                      "parsing a flow sequence on line 1)");
    assert_int_equal(
        agent_config_load_file(&f->c, "/nonexistent/agent.yaml", f->errmsg),
        REMS_EIO);
    assert_string_equal(f->errmsg,
                        "/nonexistent/agent.yaml: No such file or directory");
    assert_untouched(f);
}

/* Failing each allocation of a load gives REMS_ENOMEM and no leak. */
static void load_out_of_memory(void **state)
{
    struct fixture *f = *state;
    int rv;
    int n;

    write_file(f, full_file);
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = agent_config_load_file(&f->c, f->path, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_int_equal(f->c.n_services, 0);
        assert_int_equal(f->heap.live, 0);
    }
    assert_int_equal(f->c.n_services, 2);
}

/* ------------------------------------------------------------------------
 * Cross-key rules
 * ------------------------------------------------------------------------ */

static void validate(void **state)
{
    struct fixture *f = *state;

    assert_invalid(f, "id: required");
    strcpy(f->c.id, "agent-1");
    assert_invalid(f, "endpoints: required");
    assert_int_equal(load(f, minimal_file), 0);
    assert_int_equal(agent_config_validate(&f->c, f->errmsg), 0);

    f->c.tls_key[0] = '\0';
    assert_invalid(f, "tls.key: required");
    strcpy(f->c.tls_key, "a.key");
    f->c.reconnect_initial_ms = 5000;
    f->c.reconnect_max_ms = 1000;
    assert_invalid(f, "reconnect.initial_ms: must not exceed "
                      "reconnect.max_ms (5000 > 1000)");
    f->c.reconnect_initial_ms = 5;
    assert_invalid(f, "reconnect.initial_ms: must be an integer between 10 "
                      "and 600000");
    f->c.reconnect_initial_ms = 500;
    strcpy(f->c.log_level, "nope");
    assert_invalid(f, "log_level: must be one of debug, info, warn, error");
    strcpy(f->c.log_level, "warn");
    f->c.endpoints[1] = f->c.endpoints[0];
    f->c.n_endpoints = 2;
    assert_invalid(f, "endpoints[1]: 127.0.0.1:7443 is also endpoints[0]");
    f->c.n_endpoints = 1;
    assert_int_equal(agent_config_validate(&f->c, f->errmsg), 0);

    /* Dependencies: unknown, and cycles. */
    assert_int_equal(load(f,
                          "services:\n"
                          "  - {name: web, command: [/a], depends_on: [db]}\n"),
                     0);
    assert_invalid(f, "services.web.depends_on: unknown service \"db\"");
    assert_int_equal(load(f, "services:\n"
                             "  - {name: a, command: [/a], depends_on: [b]}\n"
                             "  - {name: b, command: [/b], depends_on: [a]}\n"),
                     0);
    assert_int_equal(agent_config_validate(&f->c, f->errmsg), REMS_ECONFIG);
    assert_non_null(strstr(f->errmsg, "services: dependency cycle: "));
}

/* ------------------------------------------------------------------------
 * The command line
 * ------------------------------------------------------------------------ */

static void command_line(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse(f, "--config", "a.yaml", NULL), 0);
    assert_string_equal(f->cli.config, "a.yaml");
    assert_null(f->cli.data_dir);
    assert_null(f->cli.log_level);
    assert_false(f->cli.check_config);
    assert_false(f->cli.version);
    assert_false(f->cli.help);
    assert_int_equal(parse(f, "--config=a.yaml", "--data-dir", "/d",
                           "--log-level=debug", "--check-config", NULL),
                     0);
    assert_string_equal(f->cli.data_dir, "/d");
    assert_string_equal(f->cli.log_level, "debug");
    assert_true(f->cli.check_config);
    assert_int_equal(parse(f, "--version", NULL), 0);
    assert_true(f->cli.version);
    assert_null(f->cli.config);
    assert_int_equal(parse(f, "--help", NULL), 0);
    assert_true(f->cli.help);

    assert_int_equal(parse(f, NULL), REMS_ECONFIG);
    assert_string_equal(f->errmsg, "--config: required");
    assert_int_equal(parse(f, "--config", NULL), REMS_ECONFIG);
    assert_string_equal(f->errmsg, "--config: needs a value");
    assert_int_equal(parse(f, "--config", "--check-config", NULL),
                     REMS_ECONFIG);
    assert_string_equal(f->errmsg, "--config: needs a value");
    assert_int_equal(parse(f, "--config=", NULL), REMS_ECONFIG);
    assert_string_equal(f->errmsg, "--config: must be a non-empty path "
                                   "shorter than 1024 bytes");
    assert_int_equal(parse(f, "--config", "a", "--config", "b", NULL),
                     REMS_ECONFIG);
    assert_string_equal(f->errmsg, "--config: given more than once");
    assert_int_equal(parse(f, "--port", "1", NULL), REMS_ECONFIG);
    assert_string_equal(f->errmsg, "--port: unknown option");
    assert_int_equal(parse(f, "-c", "a", NULL), REMS_ECONFIG);
    assert_string_equal(f->errmsg, "-c: unexpected argument");
    assert_int_equal(parse(f, "--config", "a", "extra", NULL), REMS_ECONFIG);
    assert_string_equal(f->errmsg, "extra: unexpected argument");
    assert_int_equal(parse(f, "--check-config=yes", NULL), REMS_ECONFIG);
    assert_string_equal(f->errmsg, "--check-config: takes no value");
}

static void overrides(void **state)
{
    struct fixture *f = *state;
    struct agent_cli cli = {0};

    assert_int_equal(load(f, minimal_file), 0);
    cli.data_dir = "/srv/agent";
    cli.log_level = "warn";
    assert_int_equal(agent_config_apply_cli(&f->c, &cli, f->errmsg), 0);
    assert_string_equal(f->c.data_dir, "/srv/agent");
    assert_string_equal(f->c.log_level, "warn");

    save(f);
    cli.data_dir = "";
    assert_int_equal(agent_config_apply_cli(&f->c, &cli, f->errmsg),
                     REMS_ECONFIG);
    assert_string_equal(f->errmsg, "--data-dir: must be a non-empty path "
                                   "shorter than 1024 bytes");
    assert_untouched(f);
    cli.data_dir = "/elsewhere";
    cli.log_level = "chatty";
    assert_int_equal(agent_config_apply_cli(&f->c, &cli, f->errmsg),
                     REMS_ECONFIG);
    assert_string_equal(f->errmsg,
                        "--log-level: must be one of debug, info, warn, error");
    assert_untouched(f);
}

/* ------------------------------------------------------------------------
 * The certificate
 * ------------------------------------------------------------------------ */

static void cert_id(void **state)
{
    struct fixture *f = *state;
    char id[PROTO_ID_MAX + 1];
    char want[REMS_ERRMSG_SIZE * 2];

    assert_int_equal(agent_config_cert_id(cert("agent-1.pem"), id, f->errmsg),
                     0);
    assert_string_equal(id, "agent-1");
    assert_int_equal(agent_config_cert_id(cert("agent-2.pem"), id, f->errmsg),
                     0);
    assert_string_equal(id, "agent-2"); /* The URI, not the CN host-42. */

    assert_int_equal(agent_config_cert_id(cert("bad-id.pem"), id, f->errmsg),
                     REMS_ECONFIG);
    snprintf(want, sizeof want,
             "%s: names no agent: its common name \"not valid!\" is not a "
             "valid id (1 to 64 characters of [A-Za-z0-9_.:-])",
             cert("bad-id.pem"));
    assert_string_equal(f->errmsg, want);
    assert_int_equal(agent_config_cert_id(cert("bad-uri.pem"), id, f->errmsg),
                     REMS_ECONFIG);
    snprintf(want, sizeof want,
             "%s: names no agent: its rems://agent/ URI does not hold a "
             "valid id",
             cert("bad-uri.pem"));
    assert_string_equal(f->errmsg, want);
    assert_int_equal(agent_config_cert_id(cert("two-uris.pem"), id, f->errmsg),
                     REMS_ECONFIG);
    snprintf(want, sizeof want,
             "%s: names no agent: it has 2 rems://agent/ URIs",
             cert("two-uris.pem"));
    assert_string_equal(f->errmsg, want);
    assert_int_equal(agent_config_cert_id(cert("agent-1.key"), id, f->errmsg),
                     REMS_ECONFIG);
    snprintf(want, sizeof want, "%s: no PEM certificate", cert("agent-1.key"));
    assert_string_equal(f->errmsg, want);
    assert_int_equal(agent_config_cert_id(cert("none.pem"), id, f->errmsg),
                     REMS_EIO);

    /* The configured id against the certificate's. */
    assert_int_equal(load(f, minimal_file), 0);
    strcpy(f->c.tls_cert, cert("agent-1.pem"));
    assert_int_equal(agent_config_check_cert(&f->c, f->errmsg), 0);
    strcpy(f->c.tls_cert, cert("agent-2.pem"));
    assert_int_equal(agent_config_check_cert(&f->c, f->errmsg), REMS_ECONFIG);
    snprintf(want, sizeof want,
             "id: \"agent-1\" differs from the agent id of tls.cert (%s): "
             "\"agent-2\"",
             cert("agent-2.pem"));
    assert_string_equal(f->errmsg, want);
    strcpy(f->c.tls_cert, cert("none.pem"));
    assert_int_equal(agent_config_check_cert(&f->c, f->errmsg), REMS_EIO);
    snprintf(want, sizeof want, "tls.cert: %s: No such file or directory",
             cert("none.pem"));
    assert_string_equal(f->errmsg, want);
}

/* ------------------------------------------------------------------------
 * Endpoints and YAML to JSON
 * ------------------------------------------------------------------------ */

static void endpoints(void **state)
{
    static const char *const good[] = {
        "a:1",       "node1.rems.example:7443", "10.0.0.1:65535", "[::1]:7443",
        "x-y.z9:80",
    };
    static const char *const bad[] = {
        "",       "a",        "a:",     ":1",    "a:0",    "a:65536",
        "a:1x",   "a:123456", "-a:1",   "a-:1",  "a..b:1", "a_b:1",
        "::1:80", "[::1:80",  "[x]:80", "a b:1", "a.:1",   "[]:1",
    };
    struct agent_endpoint e;
    size_t i;
    (void)state;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(agent_endpoint_parse(good[i], strlen(good[i]), &e), 0);
    }
    assert_string_equal(e.host, "x-y.z9");
    assert_int_equal(e.port, 80);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (agent_endpoint_parse(bad[i], strlen(bad[i]), &e) == 0) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
    }
}

static void yaml_json(void **state)
{
    struct fixture *f = *state;
    const char *yaml = "a: 1\n"
                       "b: -2.5e3\n"
                       "c: \"1\"\n"
                       "d: true\n"
                       "e: False\n"
                       "f: ~\n"
                       "g:\n"
                       "h: yes\n"
                       "i: 0x1F\n"
                       "j: 'quote \" and \\\\'\n"
                       "k: [1, {x: y}]\n"
                       "l: &anchor {p: 1}\n"
                       "m: *anchor\n"
                       "n: \"tab\\tnul\\0\"\n"
                       "command: [1, true, ~, {x: 2}]\n";

    assert_int_equal(
        agent_yaml_to_json(yaml, strlen(yaml), &f->json, f->errmsg), 0);
    assert_string_equal(f->json.data,
                        "{\"a\":1,\"b\":-2.5e3,\"c\":\"1\",\"d\":true,"
                        "\"e\":false,\"f\":null,\"g\":null,\"h\":\"yes\","
                        "\"i\":\"0x1F\",\"j\":\"quote \\\" and \\\\\\\\\","
                        "\"k\":[1,{\"x\":\"y\"}],\"l\":{\"p\":1},"
                        "\"m\":{\"p\":1},\"n\":\"tab\\u0009nul\\u0000\","
                        "\"command\":[\"1\",\"true\",\"~\",{\"x\":\"2\"}]}");

    f->json.len = 0;
    assert_int_equal(agent_yaml_to_json("a: [\n", 5, &f->json, f->errmsg),
                     REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "line 2: invalid YAML: did not find "
                                   "expected node content (while parsing a "
                                   "flow node on line 2)");
    assert_int_equal(agent_yaml_to_json("", 0, &f->json, f->errmsg),
                     REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "empty document");
    assert_int_equal(
        agent_yaml_to_json("a: 1\nb: {c: 1, c: 2}\n", 21, &f->json, f->errmsg),
        REMS_EINVAL);
    assert_string_equal(f->errmsg,
                        "line 2: b.c: duplicate key (first on line 2)");
    assert_int_equal(
        agent_yaml_to_json("a: 1\n---\nb: 2\n", 14, &f->json, f->errmsg),
        REMS_EMALFORMED);
    assert_string_equal(f->errmsg, "line 3: only one YAML document is allowed");
    {
        char deep[200];
        size_t n = 0;
        int i;
        for (i = 0; i < 40; i++) {
            deep[n++] = '[';
        }
        for (i = 0; i < 40; i++) {
            deep[n++] = ']';
        }
        deep[n] = '\0';
        assert_int_equal(agent_yaml_to_json(deep, n, &f->json, f->errmsg),
                         REMS_EINVAL);
        assert_string_equal(f->errmsg, "line 1: [0][0][0][0][0][0][0][0][0]"
                                       "[0][0][0][0][0][0][0][0][0][0][0][0]"
                                       "[0][0][0][0][0][0][0][0][0][0][0][0]: "
                                       "nested more than 32 levels deep");
    }
    assert_int_equal(f->json.len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(defaults),     TEST(full),         TEST(bad_keys),
        TEST(bad_services), TEST(bad_files),    TEST(load_out_of_memory),
        TEST(validate),     TEST(command_line), TEST(overrides),
        TEST(cert_id),      TEST(endpoints),    TEST(yaml_json),
    };
    return cmocka_run_group_tests_name("agent_config", tests, group_setup,
                                       group_teardown);
}
