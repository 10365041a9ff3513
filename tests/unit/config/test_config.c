/* Tests of cluster/config.c: the YAML file, the command line, the rules
 * checked by config_validate() and config_split_address(). Every error is
 * checked by its exact message, and every failed load by leaving the
 * caller's struct untouched. */
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

#include "cluster/config.h"
#include "tests/lib/heap.h"
#include "tests/lib/tmpdir.h"

#define MAX_ARGS 32
#define U64_MAX_TEXT "18446744073709551615"
#define ADDRESS_RULE                                                           \
    "must be an IPv4 address and a port between 1 and 65535, such as "         \
    "127.0.0.1:7001"
#define PEER_OPTION_RULE                                                       \
    "must be ID=RAFT_ADDRESS,API_ADDRESS, such as "                            \
    "2=127.0.0.1:7002,127.0.0.1:7102"

struct fixture {
    char dir[TEST_TMPDIR_SIZE];
    char path[TEST_TMPDIR_SIZE + 64]; /* The last file written. */
    struct test_heap heap;
    struct config c;
    struct config before; /* Copy of c before a call expected to fail. */
    char errmsg[REMS_ERRMSG_SIZE];
    char expected[REMS_ERRMSG_SIZE + TEST_TMPDIR_SIZE];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_tmpdir_make(f->dir);
    test_heap_install(&f->heap);
    config_defaults(&f->c);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

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

/* Write @len bytes of @text to the file @name in the fixture's directory;
 * its path goes to f->path. */
static void write_file_len(struct fixture *f,
                           const char *name,
                           const char *text,
                           size_t len)
{
    FILE *fp;

    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
    fp = fopen(f->path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static const char *write_config(struct fixture *f, const char *yaml)
{
    write_file_len(f, "node.yaml", yaml, strlen(yaml));
    return f->path;
}

static int load(struct fixture *f, const char *yaml)
{
    write_config(f, yaml);
    return config_load_file(&f->c, f->path, f->errmsg);
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

/* config_parse_args() on the NULL-terminated list of arguments. */
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
    return config_parse_args(&f->c, argc, argv, f->errmsg);
}

static void assert_parse_error(struct fixture *f, const char *msg)
{
    assert_string_equal(f->errmsg, msg);
    assert_untouched(f);
}

/* A configuration of node 2 in a 3-node cluster that passes validation. */
static void valid_config(struct config *c)
{
    size_t i;

    config_defaults(c);
    c->node_id = 2;
    strcpy(c->data_dir, "/var/lib/rems");
    strcpy(c->raft_address, "127.0.0.1:7002");
    strcpy(c->api_address, "127.0.0.1:7102");
    for (i = 0; i < 3; i++) {
        c->peers[i].id = i + 1;
        snprintf(c->peers[i].raft_address, CONFIG_ADDR_SIZE, "127.0.0.1:%zu",
                 7001 + i);
        snprintf(c->peers[i].api_address, CONFIG_ADDR_SIZE, "127.0.0.1:%zu",
                 7101 + i);
    }
    c->n_peers = 3;
}

static void assert_valid(struct fixture *f)
{
    assert_int_equal(config_validate(&f->c, f->errmsg), 0);
}

static void assert_invalid(struct fixture *f, const char *msg)
{
    assert_int_equal(config_validate(&f->c, f->errmsg), REMS_ECONFIG);
    assert_string_equal(f->errmsg, msg);
}

static const char full_file[] =
    "# remsd, node 2 of 3\n"
    "node_id: 2\n"
    "data_dir: /var/lib/rems/node2\n"
    "raft_address: 127.0.0.1:7002\n"
    "api_address: \"127.0.0.1:7102\"\n"
    "peers:\n"
    "  - id: 1\n"
    "    raft_address: 127.0.0.1:7001\n"
    "    api_address: 127.0.0.1:7101\n"
    "  - id: 2\n"
    "    raft_address: 127.0.0.1:7002\n"
    "    api_address: 127.0.0.1:7102\n"
    "  - {id: 3, raft_address: 127.0.0.1:7003, api_address: 127.0.0.1:7103}\n"
    "election_timeout_ms: 1500\n"
    "heartbeat_timeout_ms: 150\n"
    "snapshot_threshold: 10000\n"
    "snapshot_trailing: 2000\n"
    "max_body_bytes: 2097152\n"
    "forward_timeout_ms: 3000\n"
    "log_level: debug\n"
    "fault_injection: yes\n";

static void assert_full_file(const struct config *c)
{
    assert_int_equal(c->node_id, 2);
    assert_string_equal(c->data_dir, "/var/lib/rems/node2");
    assert_string_equal(c->raft_address, "127.0.0.1:7002");
    assert_string_equal(c->api_address, "127.0.0.1:7102");
    assert_int_equal(c->n_peers, 3);
    assert_int_equal(c->peers[0].id, 1);
    assert_string_equal(c->peers[0].raft_address, "127.0.0.1:7001");
    assert_string_equal(c->peers[0].api_address, "127.0.0.1:7101");
    assert_int_equal(c->peers[1].id, 2);
    assert_string_equal(c->peers[1].raft_address, "127.0.0.1:7002");
    assert_string_equal(c->peers[1].api_address, "127.0.0.1:7102");
    assert_int_equal(c->peers[2].id, 3);
    assert_string_equal(c->peers[2].raft_address, "127.0.0.1:7003");
    assert_string_equal(c->peers[2].api_address, "127.0.0.1:7103");
    assert_string_equal(c->join, "");
    assert_int_equal(c->election_timeout_ms, 1500);
    assert_int_equal(c->heartbeat_timeout_ms, 150);
    assert_int_equal(c->snapshot_threshold, 10000);
    assert_int_equal(c->snapshot_trailing, 2000);
    assert_int_equal(c->max_body_bytes, 2097152);
    assert_int_equal(c->forward_timeout_ms, 3000);
    assert_string_equal(c->log_level, "debug");
    assert_true(c->fault_injection);
}

/* The integer keys, their options and ranges. */
static const struct int_key {
    const char *name;
    const char *option;
    const char *min;
    const char *max;
    const char *below; /* NULL when min is 0. */
    const char *above;
} int_keys[] = {
    {"node_id", "--node-id", "1", U64_MAX_TEXT, "0", "18446744073709551616"},
    {"election_timeout_ms", "--election-timeout-ms", "50", "60000", "49",
     "60001"},
    {"heartbeat_timeout_ms", "--heartbeat-timeout-ms", "10", "10000", "9",
     "10001"},
    {"snapshot_threshold", "--snapshot-threshold", "16", "10000000", "15",
     "10000001"},
    {"snapshot_trailing", "--snapshot-trailing", "0", "10000000", NULL,
     "10000001"},
    {"max_body_bytes", "--max-body-bytes", "1024", "67108864", "1023",
     "67108865"},
    {"forward_timeout_ms", "--forward-timeout-ms", "100", "600000", "99",
     "600001"},
};

/* Not integers, in the file and on the command line alike. */
static const char *const bad_ints[] = {
    "abc",   "-1",    "+5",
    "1.5",   "1e3",   "0x10",
    "1_000", "12abc", "99999999999999999999999",
};

/* Not integers in YAML: quoted, null, or not a scalar. */
static const char *const bad_yaml_ints[] = {
    "'100'", "\"100\"", "", "~", "null", "[100]", "{a: 1}",
};

/* Not addresses, in the file and on the command line alike. */
static const char *const bad_addresses[] = {
    "127.0.0.1",
    "127.0.0.1:",
    "127.0.0.1:0",
    "127.0.0.1:65536",
    "127.0.0.1:-1",
    "127.0.0.1:+80",
    "127.0.0.1:80x",
    "256.0.0.1:80",
    "1.2.3:80",
    "1.2.3.4.5:80",
    "01.2.3.4:80",
    "localhost:7001",
    "::1:7001",
    "[::1]:7001",
    ":7001",
    "127.0.0.1:80:80",
    "127.0.0.1:99999999999999999999",
};

/* ------------------------------------------------------------------------
 * Defaults and the file
 * ------------------------------------------------------------------------ */

static void defaults(void **state)
{
    struct fixture *f = *state;
    struct config *c = &f->c;

    config_defaults(c);
    assert_int_equal(c->node_id, 0);
    assert_string_equal(c->data_dir, "");
    assert_string_equal(c->raft_address, "");
    assert_string_equal(c->api_address, "");
    assert_int_equal(c->n_peers, 0);
    assert_string_equal(c->join, "");
    assert_int_equal(c->election_timeout_ms, 1000);
    assert_int_equal(c->heartbeat_timeout_ms, 100);
    assert_int_equal(c->snapshot_threshold, 8192);
    assert_int_equal(c->snapshot_trailing, 8192);
    assert_int_equal(c->max_body_bytes, 1048576);
    assert_int_equal(c->forward_timeout_ms, 5000);
    assert_string_equal(c->log_level, "info");
    assert_false(c->fault_injection);
    /* Required keys are missing from the defaults. */
    assert_invalid(f, "node_id: required");
}

static void load_full_file(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f, full_file), 0);
    assert_full_file(&f->c);
    assert_valid(f);
}

/* Keys absent from the file keep the values the struct had. */
static void load_keeps_absent_keys(void **state)
{
    struct fixture *f = *state;

    f->c.election_timeout_ms = 777;
    strcpy(f->c.join, "10.0.0.1:7101");
    assert_int_equal(load(f, "node_id: 4\n"
                             "data_dir: d\n"
                             "raft_address: 10.0.0.4:7004\n"
                             "api_address: 10.0.0.4:7104\n"),
                     0);
    assert_int_equal(f->c.node_id, 4);
    assert_string_equal(f->c.data_dir, "d");
    assert_int_equal(f->c.election_timeout_ms, 777);
    assert_int_equal(f->c.heartbeat_timeout_ms, 100);
    assert_string_equal(f->c.join, "10.0.0.1:7101");
    assert_int_equal(f->c.n_peers, 0);
    assert_string_equal(f->c.log_level, "info");
    assert_valid(f);
}

/* The file's peers replace the struct's, even with an empty list. */
static void load_peers_replace(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    assert_int_equal(load(f, "peers:\n"
                             "  - id: 9\n"
                             "    raft_address: 10.0.0.9:1\n"
                             "    api_address: 10.0.0.9:2\n"),
                     0);
    assert_int_equal(f->c.n_peers, 1);
    assert_int_equal(f->c.peers[0].id, 9);
    assert_string_equal(f->c.peers[0].raft_address, "10.0.0.9:1");
    assert_string_equal(f->c.peers[0].api_address, "10.0.0.9:2");

    assert_int_equal(load(f, "peers: []\n"), 0);
    assert_int_equal(f->c.n_peers, 0);
}

/* Each integer key takes its bounds and refuses what lies outside them or
 * is not a plain decimal integer, naming the key and its line. */
static void load_int_ranges(void **state)
{
    struct fixture *f = *state;
    char yaml[256];
    char msg[256];
    size_t i;
    size_t j;

    for (i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++) {
        const struct int_key *k = &int_keys[i];

        snprintf(msg, sizeof msg, "%s: must be an integer between %s and %s",
                 k->name, k->min, k->max);
        snprintf(yaml, sizeof yaml, "%s: %s\n", k->name, k->min);
        assert_int_equal(load(f, yaml), 0);
        snprintf(yaml, sizeof yaml, "%s: %s\n", k->name, k->max);
        assert_int_equal(load(f, yaml), 0);
        if (k->below != NULL) {
            snprintf(yaml, sizeof yaml, "# comment\n%s: %s\n", k->name,
                     k->below);
            assert_load_error(f, yaml, 2, msg);
        }
        snprintf(yaml, sizeof yaml, "# comment\n%s: %s\n", k->name, k->above);
        assert_load_error(f, yaml, 2, msg);
        for (j = 0; j < sizeof bad_ints / sizeof bad_ints[0]; j++) {
            snprintf(yaml, sizeof yaml, "# comment\n\n%s: %s\n", k->name,
                     bad_ints[j]);
            assert_load_error(f, yaml, 3, msg);
        }
        for (j = 0; j < sizeof bad_yaml_ints / sizeof bad_yaml_ints[0]; j++) {
            snprintf(yaml, sizeof yaml, "log_level: warn\n%s: %s\n", k->name,
                     bad_yaml_ints[j]);
            assert_load_error(f, yaml, 2, msg);
        }
    }
}

static void load_int_values(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f, "node_id: " U64_MAX_TEXT "\n"
                             "election_timeout_ms: 60000\n"
                             "heartbeat_timeout_ms: 10\n"
                             "snapshot_threshold: 16\n"
                             "snapshot_trailing: 0\n"
                             "max_body_bytes: 67108864\n"
                             "forward_timeout_ms: 100\n"),
                     0);
    assert_true(f->c.node_id == UINT64_MAX);
    assert_int_equal(f->c.election_timeout_ms, 60000);
    assert_int_equal(f->c.heartbeat_timeout_ms, 10);
    assert_int_equal(f->c.snapshot_threshold, 16);
    assert_int_equal(f->c.snapshot_trailing, 0);
    assert_int_equal(f->c.max_body_bytes, 67108864);
    assert_int_equal(f->c.forward_timeout_ms, 100);
}

/* A value on the line after its key is reported on its own line. */
static void load_error_line_of_value(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f,
                      "node_id: 1\n"
                      "election_timeout_ms:\n"
                      "  5x\n",
                      3,
                      "election_timeout_ms: must be an integer between 50 "
                      "and 60000");
}

static void load_data_dir(void **state)
{
    struct fixture *f = *state;
    const char *rule =
        "data_dir: must be a non-empty path shorter than 1024 bytes";
    char yaml[CONFIG_PATH_SIZE + 64];
    char dir[CONFIG_PATH_SIZE + 1];

    assert_int_equal(load(f, "data_dir: 'relative dir'\n"), 0);
    assert_string_equal(f->c.data_dir, "relative dir");

    memset(dir, 'd', CONFIG_PATH_SIZE - 1);
    dir[CONFIG_PATH_SIZE - 1] = '\0';
    snprintf(yaml, sizeof yaml, "data_dir: %s\n", dir);
    assert_int_equal(load(f, yaml), 0);
    assert_string_equal(f->c.data_dir, dir);

    dir[CONFIG_PATH_SIZE - 1] = 'd';
    dir[CONFIG_PATH_SIZE] = '\0';
    snprintf(yaml, sizeof yaml, "node_id: 1\ndata_dir: %s\n", dir);
    assert_load_error(f, yaml, 2, rule);
    assert_load_error(f, "data_dir:\n", 1, rule);
    assert_load_error(f, "data_dir: ''\n", 1, rule);
    assert_load_error(f, "data_dir: ~\n", 1, rule);
    assert_load_error(f, "data_dir: [a]\n", 1, rule);
    assert_load_error(f, "data_dir:\n  a: b\n", 2, rule);
    /* A NUL byte would cut the path short. */
    assert_load_error(f, "data_dir: \"/var\\0/lib\"\n", 1, rule);
}

static void load_addresses(void **state)
{
    static const char *const names[] = {"raft_address", "api_address", "join"};
    struct fixture *f = *state;
    char yaml[256];
    char msg[256];
    size_t i;
    size_t j;

    assert_int_equal(load(f, "raft_address: 10.1.2.3:1\n"
                             "api_address: 255.255.255.255:65535\n"
                             "join: '192.168.0.1:7101'\n"),
                     0);
    assert_string_equal(f->c.raft_address, "10.1.2.3:1");
    assert_string_equal(f->c.api_address, "255.255.255.255:65535");
    assert_string_equal(f->c.join, "192.168.0.1:7101");

    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(msg, sizeof msg, "%s: %s", names[i], ADDRESS_RULE);
        for (j = 0; j < sizeof bad_addresses / sizeof bad_addresses[0]; j++) {
            snprintf(yaml, sizeof yaml, "node_id: 1\n%s: '%s'\n", names[i],
                     bad_addresses[j]);
            assert_load_error(f, yaml, 2, msg);
        }
        snprintf(yaml, sizeof yaml, "%s: [127.0.0.1:1]\n", names[i]);
        assert_load_error(f, yaml, 1, msg);
    }
    snprintf(msg, sizeof msg, "raft_address: %s", ADDRESS_RULE);
    assert_load_error(f, "raft_address:\n", 1, msg);
}

/* An empty join means none, so a file can clear an earlier one. */
static void load_join_empty(void **state)
{
    struct fixture *f = *state;

    strcpy(f->c.join, "127.0.0.1:7101");
    assert_int_equal(load(f, "join:\n"), 0);
    assert_string_equal(f->c.join, "");
    strcpy(f->c.join, "127.0.0.1:7101");
    assert_int_equal(load(f, "join: ''\n"), 0);
    assert_string_equal(f->c.join, "");
    strcpy(f->c.join, "127.0.0.1:7101");
    assert_int_equal(load(f, "join: null\n"), 0);
    assert_string_equal(f->c.join, "");
}

static void load_log_level(void **state)
{
    static const char *const good[] = {"debug", "info", "warn", "error"};
    static const char *const bad[] = {"verbose", "INFO",    "",
                                      "[info]",  "warning", "1"};
    struct fixture *f = *state;
    char yaml[64];
    size_t i;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(yaml, sizeof yaml, "log_level: %s\n", good[i]);
        assert_int_equal(load(f, yaml), 0);
        assert_string_equal(f->c.log_level, good[i]);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(yaml, sizeof yaml, "\nlog_level: %s\n", bad[i]);
        assert_load_error(f, yaml, 2,
                          "log_level: must be one of debug, info, warn, "
                          "error");
    }
}

static void load_fault_injection(void **state)
{
    static const struct {
        const char *text;
        bool value;
    } good[] = {{"true", true}, {"false", false}, {"yes", true},
                {"no", false},  {"True", true},   {"NO", false}};
    static const char *const bad[] = {"maybe",  "1",  "0",  "'true'",
                                      "\"no\"", "on", "",   "[true]",
                                      "y",      "t",  "tru"};
    struct fixture *f = *state;
    char yaml[64];
    size_t i;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        f->c.fault_injection = !good[i].value;
        snprintf(yaml, sizeof yaml, "fault_injection: %s\n", good[i].text);
        assert_int_equal(load(f, yaml), 0);
        assert_true(f->c.fault_injection == good[i].value);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(yaml, sizeof yaml, "fault_injection: %s\n", bad[i]);
        assert_load_error(f, yaml, 1, "fault_injection: must be true or false");
    }
}

static void load_unknown_key(void **state)
{
    struct fixture *f = *state;
    char yaml[128];
    char msg[128];

    assert_load_error(f,
                      "node_id: 1\n"
                      "# a comment\n"
                      "election_timeout: 500\n",
                      3, "election_timeout: unknown key");
    /* A long key is cut short in the message. */
    memset(yaml, 'k', 100);
    strcpy(yaml + 100, ": 1\n");
    memset(msg, 'k', 64);
    strcpy(msg + 64, ": unknown key");
    assert_load_error(f, yaml, 1, msg);
    /* Keys are case-sensitive. */
    assert_load_error(f, "Node_Id: 1\n", 1, "Node_Id: unknown key");
    /* A key with a NUL byte is not a name, even if it starts like one. */
    assert_load_error(f, "\"node_id\\0x\": 1\n", 1, "keys must be names");
    assert_load_error(f, "? [node_id]\n: 1\n", 1, "keys must be names");
}

static void load_duplicate_key(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f,
                      "node_id: 1\n"
                      "data_dir: d\n"
                      "node_id: 1\n",
                      3, "node_id: duplicate key (first on line 1)");
    assert_load_error(f,
                      "peers: []\n"
                      "peers: []\n",
                      2, "peers: duplicate key (first on line 1)");
}

static void load_not_a_mapping(void **state)
{
    struct fixture *f = *state;

    save(f);
    assert_int_equal(load(f, ""), REMS_ECONFIG);
    snprintf(f->expected, sizeof f->expected,
             "%s: empty file, expected a mapping of keys to values", f->path);
    assert_string_equal(f->errmsg, f->expected);
    assert_int_equal(load(f, "# only a comment\n\n"), REMS_ECONFIG);
    assert_string_equal(f->errmsg, f->expected);
    assert_untouched(f);

    /* libyaml places the empty document after its marker. */
    assert_load_error(f, "---\n", 2, "expected a mapping of keys to values");
    assert_load_error(f, "\n\nnode_id\n", 3,
                      "expected a mapping of keys to values");
    assert_load_error(f, "- node_id: 1\n", 1,
                      "expected a mapping of keys to values");
}

static void load_second_document(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f,
                      "node_id: 1\n"
                      "---\n"
                      "node_id: 2\n",
                      3, "only one YAML document is allowed per file");
    /* An explicit end of the one document is fine. */
    assert_int_equal(load(f, "---\nnode_id: 1\n...\n"), 0);
    assert_int_equal(f->c.node_id, 1);
}

static void load_malformed(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f,
                      "node_id: 1\n"
                      " data_dir: d\n",
                      2,
                      "invalid YAML: mapping values are not allowed in this "
                      "context");
    assert_load_error(f,
                      "node_id: 1\n"
                      "peers: [1, 2\n"
                      "data_dir: d\n",
                      3,
                      "invalid YAML: did not find expected ',' or ']' (while "
                      "parsing a flow sequence on line 2)");
    assert_load_error(f,
                      "node_id: 1\n"
                      "data_dir: *nowhere\n",
                      2, "invalid YAML: found undefined alias");
    /* A syntax error after the first document is found too. */
    assert_load_error(f,
                      "node_id: 1\n"
                      "...\n"
                      "\t- x\n",
                      3,
                      "invalid YAML: found character that cannot start any "
                      "token (while scanning for the next token on line 3)");
}

/* Bytes that are not UTF-8 are placed by offset, not line. */
static void load_bad_encoding(void **state)
{
    struct fixture *f = *state;

    save(f);
    assert_int_equal(load(f, "node_id: 1\ndata_dir: \xff\n"), REMS_ECONFIG);
    snprintf(f->expected, sizeof f->expected,
             "%s: invalid YAML: invalid leading UTF-8 octet at byte 21",
             f->path);
    assert_string_equal(f->errmsg, f->expected);
    assert_untouched(f);
}

/* Anchors and aliases work; a list that contains itself is refused rather
 * than followed. */
static void load_aliases(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f, "raft_address: &a 127.0.0.1:7001\n"
                             "join: *a\n"),
                     0);
    assert_string_equal(f->c.join, "127.0.0.1:7001");
    assert_load_error(f, "peers: &p [*p]\n", 1,
                      "peers[0]: must be a mapping with id, raft_address and "
                      "api_address");
}

static void load_missing_file(void **state)
{
    struct fixture *f = *state;

    snprintf(f->path, sizeof f->path, "%s/absent.yaml", f->dir);
    save(f);
    assert_int_equal(config_load_file(&f->c, f->path, f->errmsg), REMS_EIO);
    snprintf(f->expected, sizeof f->expected, "%s: No such file or directory",
             f->path);
    assert_string_equal(f->errmsg, f->expected);
    assert_untouched(f);
}

/* A directory opens but cannot be read. */
static void load_directory(void **state)
{
    struct fixture *f = *state;

    save(f);
    assert_int_equal(config_load_file(&f->c, f->dir, f->errmsg), REMS_EIO);
    snprintf(f->expected, sizeof f->expected, "%s: Is a directory", f->dir);
    assert_string_equal(f->errmsg, f->expected);
    assert_untouched(f);
}

static void load_too_large(void **state)
{
    struct fixture *f = *state;
    size_t len = 1024 * 1024 + 1;
    char *text = malloc(len);

    assert_non_null(text);
    memset(text, '#', len);
    write_file_len(f, "big.yaml", text, len);
    free(text);
    save(f);
    assert_int_equal(config_load_file(&f->c, f->path, f->errmsg), REMS_ECONFIG);
    snprintf(f->expected, sizeof f->expected, "%s: larger than 1048576 bytes",
             f->path);
    assert_string_equal(f->errmsg, f->expected);
    assert_untouched(f);

    /* Exactly the limit is fine. */
    text = malloc(len);
    assert_non_null(text);
    memcpy(text, "node_id: 5\n", 11);
    memset(text + 11, '#', len - 1 - 11);
    write_file_len(f, "big.yaml", text, len - 1);
    free(text);
    assert_int_equal(config_load_file(&f->c, f->path, f->errmsg), 0);
    assert_int_equal(f->c.node_id, 5);
}

/* Failing the n-th allocation, for every n, gives REMS_ENOMEM, a message,
 * no leak and an untouched struct. The file is large enough to need the
 * buffer to grow. */
static void load_out_of_memory(void **state)
{
    struct fixture *f = *state;
    char text[6000];
    int rv;
    long n;

    memset(text, '#', sizeof text);
    memcpy(text, "node_id: 3\n", 11);
    text[sizeof text - 1] = '\n';
    write_file_len(f, "node.yaml", text, sizeof text);
    save(f);
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = config_load_file(&f->c, f->path, f->errmsg);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_int_equal(f->heap.live, 0);
        assert_untouched(f);
    }
    test_heap_fail_after(&f->heap, -1);
    assert_int_equal(n, 2); /* The buffer, then its growth. */
    assert_int_equal(f->c.node_id, 3);
}

/* ------------------------------------------------------------------------
 * Peers in the file
 * ------------------------------------------------------------------------ */

static void load_peers_not_a_list(void **state)
{
    struct fixture *f = *state;
    const char *msg = "peers: must be a list of mappings with id, "
                      "raft_address and api_address";

    assert_load_error(f, "peers: 1\n", 1, msg);
    assert_load_error(f, "peers:\n", 1, msg);
    assert_load_error(f, "node_id: 1\npeers:\n  id: 1\n", 3, msg);
    assert_load_error(f,
                      "peers:\n"
                      "  - {id: 1, raft_address: 1.1.1.1:1, "
                      "api_address: 1.1.1.1:2}\n"
                      "  - 2\n",
                      3,
                      "peers[1]: must be a mapping with id, raft_address and "
                      "api_address");
}

static void load_peer_missing_field(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f,
                      "peers:\n"
                      "  - id: 1\n"
                      "    raft_address: 127.0.0.1:7001\n"
                      "    api_address: 127.0.0.1:7101\n"
                      "  - id: 2\n"
                      "    raft_address: 127.0.0.1:7002\n",
                      5, "peers[1].api_address: required");
    assert_load_error(f,
                      "peers: [{raft_address: 1.1.1.1:1, api_address: "
                      "1.1.1.1:2}]\n",
                      1, "peers[0].id: required");
    assert_load_error(f, "peers:\n  - {id: 1, api_address: 1.1.1.1:2}\n", 2,
                      "peers[0].raft_address: required");
}

static void load_peer_bad_fields(void **state)
{
    struct fixture *f = *state;
    char yaml[256];
    char msg[256];
    size_t i;

    assert_load_error(f,
                      "peers:\n"
                      "  - id: 1\n"
                      "    raft: 127.0.0.1:7001\n",
                      3, "peers[0].raft: unknown key");
    assert_load_error(f,
                      "peers:\n"
                      "  - id: 1\n"
                      "    id: 2\n",
                      3, "peers[0].id: duplicate key (first on line 2)");
    assert_load_error(f, "peers:\n  - [id]: 1\n", 2,
                      "peers[0]: keys must be names");
    for (i = 0; i < sizeof bad_ints / sizeof bad_ints[0]; i++) {
        snprintf(yaml, sizeof yaml, "peers:\n  - id: %s\n", bad_ints[i]);
        assert_load_error(f, yaml, 2,
                          "peers[0].id: must be an integer between 1 and "
                          "18446744073709551615");
    }
    assert_load_error(f, "peers:\n  - id: 0\n", 2,
                      "peers[0].id: must be an integer between 1 and "
                      "18446744073709551615");
    assert_load_error(f, "peers:\n  - id: '1'\n", 2,
                      "peers[0].id: must be an integer between 1 and "
                      "18446744073709551615");
    for (i = 0; i < sizeof bad_addresses / sizeof bad_addresses[0]; i++) {
        snprintf(yaml, sizeof yaml,
                 "peers:\n"
                 "  - id: 1\n"
                 "    raft_address: 127.0.0.1:7001\n"
                 "    api_address: '%s'\n",
                 bad_addresses[i]);
        snprintf(msg, sizeof msg, "peers[0].api_address: %s", ADDRESS_RULE);
        assert_load_error(f, yaml, 4, msg);
        snprintf(yaml, sizeof yaml, "peers:\n  - raft_address: '%s'\n",
                 bad_addresses[i]);
        snprintf(msg, sizeof msg, "peers[0].raft_address: %s", ADDRESS_RULE);
        assert_load_error(f, yaml, 2, msg);
    }
}

static void load_too_many_peers(void **state)
{
    struct fixture *f = *state;
    char yaml[2048];
    size_t used;
    int i;

    used = (size_t)snprintf(yaml, sizeof yaml, "peers:\n");
    for (i = 1; i <= CONFIG_MAX_PEERS; i++) {
        used += (size_t)snprintf(yaml + used, sizeof yaml - used,
                                 "  - {id: %d, raft_address: 10.0.0.%d:1, "
                                 "api_address: 10.0.0.%d:2}\n",
                                 i, i, i);
    }
    assert_int_equal(load(f, yaml), 0);
    assert_int_equal(f->c.n_peers, CONFIG_MAX_PEERS);
    assert_int_equal(f->c.peers[8].id, 9);
    assert_string_equal(f->c.peers[8].api_address, "10.0.0.9:2");

    config_defaults(&f->c);
    snprintf(yaml + used, sizeof yaml - used,
             "  - {id: 10, raft_address: 10.0.0.10:1, "
             "api_address: 10.0.0.10:2}\n");
    assert_load_error(f, yaml, 11, "peers: at most 9 peers are allowed");
}

/* ------------------------------------------------------------------------
 * The command line
 * ------------------------------------------------------------------------ */

static void args_none(void **state)
{
    struct fixture *f = *state;

    save(f);
    assert_int_equal(config_parse_args(&f->c, 0, NULL, f->errmsg), 0);
    assert_untouched(f);
}

static void args_every_option(void **state)
{
    struct fixture *f = *state;
    struct config *c = &f->c;

    assert_int_equal(
        parse(f, "--node-id", "3", "--data-dir", "/srv/rems", "--raft-address",
              "10.0.0.3:7003", "--api-address", "10.0.0.3:7103", "--peer",
              "3=10.0.0.3:7003,10.0.0.3:7103", "--peer",
              "1=10.0.0.1:7001,10.0.0.1:7101", "--join", "10.0.0.1:7101",
              "--election-timeout-ms", "2000", "--heartbeat-timeout-ms", "200",
              "--snapshot-threshold", "500", "--snapshot-trailing", "50",
              "--max-body-bytes", "4096", "--forward-timeout-ms", "700",
              "--log-level", "warn", "--fault-injection", NULL),
        0);
    assert_int_equal(c->node_id, 3);
    assert_string_equal(c->data_dir, "/srv/rems");
    assert_string_equal(c->raft_address, "10.0.0.3:7003");
    assert_string_equal(c->api_address, "10.0.0.3:7103");
    assert_int_equal(c->n_peers, 2);
    assert_int_equal(c->peers[0].id, 3);
    assert_string_equal(c->peers[0].raft_address, "10.0.0.3:7003");
    assert_string_equal(c->peers[0].api_address, "10.0.0.3:7103");
    assert_int_equal(c->peers[1].id, 1);
    assert_string_equal(c->peers[1].raft_address, "10.0.0.1:7001");
    assert_string_equal(c->peers[1].api_address, "10.0.0.1:7101");
    assert_string_equal(c->join, "10.0.0.1:7101");
    assert_int_equal(c->election_timeout_ms, 2000);
    assert_int_equal(c->heartbeat_timeout_ms, 200);
    assert_int_equal(c->snapshot_threshold, 500);
    assert_int_equal(c->snapshot_trailing, 50);
    assert_int_equal(c->max_body_bytes, 4096);
    assert_int_equal(c->forward_timeout_ms, 700);
    assert_string_equal(c->log_level, "warn");
    assert_true(c->fault_injection);
}

static void args_equals_form(void **state)
{
    struct fixture *f = *state;
    struct config *c = &f->c;

    assert_int_equal(
        parse(f, "--node-id=7", "--data-dir=/a=b", "--raft-address=127.0.0.1:1",
              "--api-address=127.0.0.1:2", "--peer=7=127.0.0.1:1,127.0.0.1:2",
              "--election-timeout-ms=300", "--log-level=error",
              "--fault-injection=yes", NULL),
        0);
    assert_int_equal(c->node_id, 7);
    assert_string_equal(c->data_dir, "/a=b");
    assert_string_equal(c->raft_address, "127.0.0.1:1");
    assert_string_equal(c->api_address, "127.0.0.1:2");
    assert_int_equal(c->n_peers, 1);
    assert_int_equal(c->peers[0].id, 7);
    assert_int_equal(c->election_timeout_ms, 300);
    assert_string_equal(c->log_level, "error");
    assert_true(c->fault_injection);
    assert_valid(f);

    /* "=" also lets a value start with "--". */
    assert_int_equal(parse(f, "--data-dir=--odd", NULL), 0);
    assert_string_equal(c->data_dir, "--odd");
    assert_int_equal(parse(f, "--fault-injection=false", NULL), 0);
    assert_false(c->fault_injection);
}

static void args_config_only(void **state)
{
    struct fixture *f = *state;

    write_config(f, full_file);
    assert_int_equal(parse(f, "--config", f->path, NULL), 0);
    assert_full_file(&f->c);
}

/* Options override the file wherever --config stands among them. */
static void args_override_file(void **state)
{
    struct fixture *f = *state;
    char config_eq[sizeof f->path + 16];
    int pos;

    write_config(f, full_file);
    snprintf(config_eq, sizeof config_eq, "--config=%s", f->path);
    for (pos = 0; pos < 4; pos++) {
        config_defaults(&f->c);
        switch (pos) {
            case 0:
                assert_int_equal(parse(f, "--config", f->path, "--node-id", "3",
                                       "--log-level", "error", NULL),
                                 0);
                break;
            case 1:
                assert_int_equal(parse(f, "--node-id", "3", "--config", f->path,
                                       "--log-level", "error", NULL),
                                 0);
                break;
            case 2:
                assert_int_equal(parse(f, "--node-id", "3", "--log-level",
                                       "error", "--config", f->path, NULL),
                                 0);
                break;
            default:
                assert_int_equal(parse(f, "--node-id=3", "--log-level=error",
                                       config_eq, NULL),
                                 0);
                break;
        }
        assert_int_equal(f->c.node_id, 3);
        assert_string_equal(f->c.log_level, "error");
        /* The rest comes from the file. */
        assert_string_equal(f->c.data_dir, "/var/lib/rems/node2");
        assert_int_equal(f->c.election_timeout_ms, 1500);
        assert_int_equal(f->c.n_peers, 3);
        assert_true(f->c.fault_injection);
    }
}

/* Later options win over earlier ones. */
static void args_last_wins(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse(f, "--node-id", "1", "--node-id", "2",
                           "--fault-injection", "--fault-injection=no", NULL),
                     0);
    assert_int_equal(f->c.node_id, 2);
    assert_false(f->c.fault_injection);
}

/* The first --peer drops the file's peers; later ones add to the list. */
static void args_peers_replace_file(void **state)
{
    struct fixture *f = *state;

    write_config(f, full_file);
    assert_int_equal(parse(f, "--peer", "5=10.0.0.5:1,10.0.0.5:2", "--config",
                           f->path, "--peer", "6=10.0.0.6:1,10.0.0.6:2", NULL),
                     0);
    assert_int_equal(f->c.n_peers, 2);
    assert_int_equal(f->c.peers[0].id, 5);
    assert_string_equal(f->c.peers[0].raft_address, "10.0.0.5:1");
    assert_string_equal(f->c.peers[0].api_address, "10.0.0.5:2");
    assert_int_equal(f->c.peers[1].id, 6);

    /* Without --peer, the file's peers stay. */
    assert_int_equal(parse(f, "--config", f->path, NULL), 0);
    assert_int_equal(f->c.n_peers, 3);
}

static void args_too_many_peers(void **state)
{
    struct fixture *f = *state;
    char peers[CONFIG_MAX_PEERS + 1][64];
    char *argv[2 * (CONFIG_MAX_PEERS + 1)];
    int i;

    for (i = 0; i <= CONFIG_MAX_PEERS; i++) {
        snprintf(peers[i], sizeof peers[i], "%d=10.0.0.%d:1,10.0.0.%d:2", i + 1,
                 i + 1, i + 1);
        argv[2 * i] = "--peer";
        argv[2 * i + 1] = peers[i];
    }
    assert_int_equal(
        config_parse_args(&f->c, 2 * CONFIG_MAX_PEERS, argv, f->errmsg), 0);
    assert_int_equal(f->c.n_peers, CONFIG_MAX_PEERS);

    config_defaults(&f->c);
    save(f);
    assert_int_equal(
        config_parse_args(&f->c, 2 * (CONFIG_MAX_PEERS + 1), argv, f->errmsg),
        REMS_ECONFIG);
    assert_parse_error(f, "--peer: at most 9 peers are allowed");
}

static void args_bad_peer(void **state)
{
    static const char *const bad[] = {
        "",
        "2",
        "2=127.0.0.1:7002",
        "=127.0.0.1:7002,127.0.0.1:7102",
        "0=127.0.0.1:7002,127.0.0.1:7102",
        "-2=127.0.0.1:7002,127.0.0.1:7102",
        "x=127.0.0.1:7002,127.0.0.1:7102",
        "2=127.0.0.1,127.0.0.1:7102",
        "2=127.0.0.1:7002,127.0.0.1",
        "2=127.0.0.1:7002,",
        "2=127.0.0.1:7002,127.0.0.1:7102,127.0.0.1:7202",
        "2,127.0.0.1:7002=127.0.0.1:7102",
        "2=127.0.0.1:7002;127.0.0.1:7102",
        "18446744073709551616=127.0.0.1:7002,127.0.0.1:7102",
        "2=127.0.0.1:7002,127.0.0.1:7102xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    };
    struct fixture *f = *state;
    size_t i;

    save(f);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(f, "--peer", bad[i], NULL), REMS_ECONFIG);
        assert_parse_error(f, "--peer: " PEER_OPTION_RULE);
    }
}

static void args_unknown_option(void **state)
{
    struct fixture *f = *state;

    save(f);
    assert_int_equal(parse(f, "--node-id", "1", "--bogus", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--bogus: unknown option");
    assert_int_equal(parse(f, "--bogus=1", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--bogus: unknown option");
    assert_int_equal(parse(f, "--node_id", "1", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--node_id: unknown option");
    assert_int_equal(parse(f, "--help", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--help: unknown option");
    assert_int_equal(parse(f, "-n", "1", NULL), REMS_ECONFIG);
    assert_parse_error(f, "-n: unknown option");
    assert_int_equal(parse(f, "--node-idx=1", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--node-idx: unknown option");
    assert_int_equal(parse(f, "--", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--: unknown option");
    assert_int_equal(parse(f, "node.yaml", NULL), REMS_ECONFIG);
    assert_parse_error(f, "node.yaml: unexpected argument");
    assert_int_equal(parse(f, "--node-id", "1", "2", NULL), REMS_ECONFIG);
    assert_parse_error(f, "2: unexpected argument");
}

static void args_missing_value(void **state)
{
    struct fixture *f = *state;

    save(f);
    assert_int_equal(parse(f, "--node-id", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--node-id: needs a value");
    assert_int_equal(parse(f, "--data-dir", "--node-id", "1", NULL),
                     REMS_ECONFIG);
    assert_parse_error(f, "--data-dir: needs a value");
    assert_int_equal(parse(f, "--node-id", "1", "--peer", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--peer: needs a value");
    assert_int_equal(parse(f, "--config", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--config: needs a value");
}

static void args_int_ranges(void **state)
{
    struct fixture *f = *state;
    char msg[256];
    size_t i;
    size_t j;

    for (i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++) {
        const struct int_key *k = &int_keys[i];

        assert_int_equal(parse(f, k->option, k->min, NULL), 0);
        assert_int_equal(parse(f, k->option, k->max, NULL), 0);
        save(f);
        snprintf(msg, sizeof msg, "%s: must be an integer between %s and %s",
                 k->option, k->min, k->max);
        if (k->below != NULL) {
            assert_int_equal(parse(f, k->option, k->below, NULL), REMS_ECONFIG);
            assert_parse_error(f, msg);
        }
        assert_int_equal(parse(f, k->option, k->above, NULL), REMS_ECONFIG);
        assert_parse_error(f, msg);
        assert_int_equal(parse(f, k->option, "", NULL), REMS_ECONFIG);
        assert_parse_error(f, msg);
        for (j = 0; j < sizeof bad_ints / sizeof bad_ints[0]; j++) {
            assert_int_equal(parse(f, k->option, bad_ints[j], NULL),
                             REMS_ECONFIG);
            assert_parse_error(f, msg);
        }
    }
    assert_int_equal(parse(f, "--node-id=-1", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--node-id: must be an integer between 1 and "
                          "18446744073709551615");
    /* No spaces either, which YAML would strip. */
    assert_int_equal(parse(f, "--node-id", " 7", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--node-id: must be an integer between 1 and "
                          "18446744073709551615");
}

static void args_bad_values(void **state)
{
    struct fixture *f = *state;
    char msg[256];
    size_t i;

    save(f);
    for (i = 0; i < sizeof bad_addresses / sizeof bad_addresses[0]; i++) {
        assert_int_equal(parse(f, "--raft-address", bad_addresses[i], NULL),
                         REMS_ECONFIG);
        snprintf(msg, sizeof msg, "--raft-address: %s", ADDRESS_RULE);
        assert_parse_error(f, msg);
        assert_int_equal(parse(f, "--api-address", bad_addresses[i], NULL),
                         REMS_ECONFIG);
        snprintf(msg, sizeof msg, "--api-address: %s", ADDRESS_RULE);
        assert_parse_error(f, msg);
        assert_int_equal(parse(f, "--join", bad_addresses[i], NULL),
                         REMS_ECONFIG);
        snprintf(msg, sizeof msg, "--join: %s", ADDRESS_RULE);
        assert_parse_error(f, msg);
    }
    assert_int_equal(parse(f, "--data-dir=", NULL), REMS_ECONFIG);
    assert_parse_error(
        f, "--data-dir: must be a non-empty path shorter than 1024 bytes");
    assert_int_equal(parse(f, "--log-level", "trace", NULL), REMS_ECONFIG);
    assert_parse_error(f,
                       "--log-level: must be one of debug, info, warn, error");
    assert_int_equal(parse(f, "--fault-injection=maybe", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--fault-injection: must be true or false");
    assert_int_equal(parse(f, "--fault-injection=", NULL), REMS_ECONFIG);
    assert_parse_error(f, "--fault-injection: must be true or false");
}

/* --fault-injection takes no separate value: what follows is an option or
 * an unexpected argument. */
static void args_flag_takes_no_value(void **state)
{
    struct fixture *f = *state;

    save(f);
    assert_int_equal(parse(f, "--fault-injection", "false", NULL),
                     REMS_ECONFIG);
    assert_parse_error(f, "false: unexpected argument");
}

/* An empty --join clears a join from the file. */
static void args_join_cleared(void **state)
{
    struct fixture *f = *state;

    write_config(f, "join: 127.0.0.1:7101\n");
    assert_int_equal(parse(f, "--config", f->path, NULL), 0);
    assert_string_equal(f->c.join, "127.0.0.1:7101");
    assert_int_equal(parse(f, "--config", f->path, "--join=", NULL), 0);
    assert_string_equal(f->c.join, "");
    assert_int_equal(parse(f, "--join", "", "--config", f->path, NULL), 0);
    assert_string_equal(f->c.join, "");
}

static void args_config_errors(void **state)
{
    struct fixture *f = *state;
    char absent[sizeof f->path];
    char long_path[CONFIG_PATH_SIZE + 1];

    save(f);
    write_config(f, "node_id: 1\nbogus: 2\n");
    assert_int_equal(parse(f, "--node-id", "2", "--config", f->path, NULL),
                     REMS_ECONFIG);
    snprintf(f->expected, sizeof f->expected, "%s:2: bogus: unknown key",
             f->path);
    assert_parse_error(f, f->expected);

    snprintf(absent, sizeof absent, "%s/absent.yaml", f->dir);
    assert_int_equal(parse(f, "--config", absent, NULL), REMS_EIO);
    snprintf(f->expected, sizeof f->expected, "%s: No such file or directory",
             absent);
    assert_parse_error(f, f->expected);

    write_config(f, "node_id: 1\n");
    assert_int_equal(parse(f, "--config", f->path, "--config", f->path, NULL),
                     REMS_ECONFIG);
    assert_parse_error(f, "--config: given more than once");
    assert_int_equal(parse(f, "--config=", NULL), REMS_ECONFIG);
    assert_parse_error(
        f, "--config: must be a non-empty path shorter than 1024 bytes");
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    assert_int_equal(parse(f, "--config", long_path, NULL), REMS_ECONFIG);
    assert_parse_error(
        f, "--config: must be a non-empty path shorter than 1024 bytes");

    /* A bad option after a good file still leaves everything untouched. */
    assert_int_equal(parse(f, "--config", f->path, "--node-id", "x", NULL),
                     REMS_ECONFIG);
    assert_parse_error(f, "--node-id: must be an integer between 1 and "
                          "18446744073709551615");
}

/* ------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------ */

/* The agent listener's keys: loaded from the file and the options, and
 * the rules that tie them together. */
static void load_agent_keys(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load(f, "agent_address: 127.0.0.1:7202\n"
                             "tls_cert: /etc/rems/node.pem\n"
                             "tls_key: /etc/rems/node.key\n"
                             "tls_ca: /etc/rems/ca.pem\n"
                             "tls_crl: /etc/rems/crl.pem\n"
                             "lease_ttl_ms: 5000\n"
                             "agent_heartbeat_ms: 250\n"
                             "max_clock_skew_ms: 0\n"
                             "send_margin_ms: 50\n"
                             "agent_max_frame_bytes: 65536\n"),
                     0);
    assert_string_equal(f->c.agent_address, "127.0.0.1:7202");
    assert_string_equal(f->c.tls_cert, "/etc/rems/node.pem");
    assert_string_equal(f->c.tls_key, "/etc/rems/node.key");
    assert_string_equal(f->c.tls_ca, "/etc/rems/ca.pem");
    assert_string_equal(f->c.tls_crl, "/etc/rems/crl.pem");
    assert_int_equal(f->c.lease_ttl_ms, 5000);
    assert_int_equal(f->c.agent_heartbeat_ms, 250);
    assert_int_equal(f->c.max_clock_skew_ms, 0);
    assert_int_equal(f->c.send_margin_ms, 50);
    assert_int_equal(f->c.agent_max_frame_bytes, 65536);
    assert_load_error(f, "agent_address: 127.0.0.1\n", 1,
                      "agent_address: must be an IPv4 address and a port "
                      "between 1 and 65535, such as 127.0.0.1:7001");
    assert_load_error(f, "lease_ttl_ms: 499\n", 1,
                      "lease_ttl_ms: must be an integer between 500 and "
                      "3600000");
    assert_load_error(f, "agent_max_frame_bytes: 4095\n", 1,
                      "agent_max_frame_bytes: must be an integer between "
                      "4096 and 67108864");
    assert_int_equal(parse(f, "--agent-address", "127.0.0.1:7203",
                           "--lease-ttl-ms=6000", NULL),
                     0);
    assert_string_equal(f->c.agent_address, "127.0.0.1:7203");
    assert_int_equal(f->c.lease_ttl_ms, 6000);
}

/* The reconciler's keys: defaults, values, ranges, the site label. */
static void load_reconciler_keys(void **state)
{
    struct fixture *f = *state;

    assert_string_equal(f->c.site_label, "site");
    assert_int_equal(f->c.reconcile_interval_ms, 2000);
    assert_int_equal(f->c.reconcile_max_in_flight, 50);
    assert_int_equal(load(f, "site_label: rack.example/site\n"
                             "reconcile_interval_ms: 500\n"
                             "reconcile_rate_window_ms: 60000\n"
                             "reconcile_max_per_agent: 0\n"
                             "reconcile_max_per_site: 7\n"
                             "reconcile_max_global: 9\n"
                             "reconcile_max_in_flight: 4\n"
                             "reconcile_command_ttl_ms: 30000\n"
                             "reconcile_grace_ms: 0\n"),
                     0);
    assert_string_equal(f->c.site_label, "rack.example/site");
    assert_int_equal(f->c.reconcile_interval_ms, 500);
    assert_int_equal(f->c.reconcile_rate_window_ms, 60000);
    assert_int_equal(f->c.reconcile_max_per_agent, 0);
    assert_int_equal(f->c.reconcile_max_per_site, 7);
    assert_int_equal(f->c.reconcile_max_global, 9);
    assert_int_equal(f->c.reconcile_max_in_flight, 4);
    assert_int_equal(f->c.reconcile_command_ttl_ms, 30000);
    assert_int_equal(f->c.reconcile_grace_ms, 0);
    assert_load_error(f, "reconcile_interval_ms: 99\n", 1,
                      "reconcile_interval_ms: must be an integer between 100 "
                      "and 600000");
    assert_load_error(f, "reconcile_command_ttl_ms: 86400001\n", 1,
                      "reconcile_command_ttl_ms: must be an integer between "
                      "1000 and 86400000");
    assert_load_error(f, "site_label: \"a b\"\n", 1,
                      "site_label: must be a label key of 1 to 128 printable "
                      "bytes, or empty for none");
    assert_int_equal(parse(f, "--site-label=", "--reconcile-max-global", "3",
                           NULL),
                     0);
    assert_string_equal(f->c.site_label, "");
    assert_int_equal(f->c.reconcile_max_global, 3);
}

static void validate_agents(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    assert_string_equal(f->c.agent_address, "");
    assert_valid(f); /* No agent listener: no TLS files needed. */
    strcpy(f->c.agent_address, "127.0.0.1:7202");
    assert_invalid(f, "tls_cert: required when agent_address is set "
                      "(agents are authenticated with mTLS)");
    strcpy(f->c.tls_cert, "/etc/rems/node.pem");
    assert_invalid(f, "tls_key: required when agent_address is set "
                      "(agents are authenticated with mTLS)");
    strcpy(f->c.tls_key, "/etc/rems/node.key");
    assert_invalid(f, "tls_ca: required when agent_address is set "
                      "(agents are authenticated with mTLS)");
    strcpy(f->c.tls_ca, "/etc/rems/ca.pem");
    assert_valid(f);
    strcpy(f->c.agent_address, f->c.api_address);
    assert_invalid(f, "agent_address: must differ from raft_address and "
                      "api_address");
    strcpy(f->c.agent_address, "127.0.0.1:7202");
    f->c.lease_ttl_ms = 1999;
    f->c.agent_heartbeat_ms = 1000;
    assert_invalid(f, "lease_ttl_ms: must be at least twice "
                      "agent_heartbeat_ms (1999 < 2 * 1000)");
    f->c.lease_ttl_ms = 2000;
    assert_valid(f);
}

static void validate_valid(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    assert_valid(f);
    /* Without peers (a node that joins, or restarts from its data). */
    f->c.n_peers = 0;
    assert_valid(f);
    strcpy(f->c.join, "127.0.0.1:7101");
    assert_valid(f);
    /* A single-node cluster. */
    valid_config(&f->c);
    f->c.peers[0] = f->c.peers[1];
    f->c.n_peers = 1;
    assert_valid(f);
}

static void validate_required(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    f->c.node_id = 0;
    assert_invalid(f, "node_id: required");
    valid_config(&f->c);
    f->c.data_dir[0] = '\0';
    assert_invalid(f, "data_dir: required");
    valid_config(&f->c);
    f->c.raft_address[0] = '\0';
    assert_invalid(f, "raft_address: required");
    valid_config(&f->c);
    f->c.api_address[0] = '\0';
    assert_invalid(f, "api_address: required");
}

/* Fields set by code are held to the same rules as parsed ones. */
static void validate_field_rules(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    strcpy(f->c.raft_address, "127.0.0.1:0");
    assert_invalid(f, "raft_address: " ADDRESS_RULE);
    valid_config(&f->c);
    strcpy(f->c.api_address, "localhost:7102");
    assert_invalid(f, "api_address: " ADDRESS_RULE);
    valid_config(&f->c);
    f->c.n_peers = 0;
    strcpy(f->c.join, "127.0.0.1");
    assert_invalid(f, "join: " ADDRESS_RULE);
    valid_config(&f->c);
    f->c.heartbeat_timeout_ms = 5;
    assert_invalid(f, "heartbeat_timeout_ms: must be an integer between 10 and "
                      "10000");
    valid_config(&f->c);
    f->c.max_body_bytes = 67108865;
    assert_invalid(f, "max_body_bytes: must be an integer between 1024 and "
                      "67108864");
    valid_config(&f->c);
    f->c.forward_timeout_ms = 0;
    assert_invalid(f, "forward_timeout_ms: must be an integer between 100 "
                      "and 600000");
    valid_config(&f->c);
    strcpy(f->c.log_level, "verbose");
    assert_invalid(f, "log_level: must be one of debug, info, warn, error");
}

static void validate_own_addresses_differ(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    f->c.n_peers = 0;
    strcpy(f->c.api_address, f->c.raft_address);
    assert_invalid(f, "api_address: must differ from raft_address");
    /* Same port on another host is fine. */
    strcpy(f->c.api_address, "127.0.0.2:7002");
    assert_valid(f);
    /* Leading zeros in the port do not make another address. */
    strcpy(f->c.api_address, "127.0.0.1:07002");
    assert_invalid(f, "api_address: must differ from raft_address");
}

static void validate_timeouts(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    f->c.election_timeout_ms = 199;
    f->c.heartbeat_timeout_ms = 100;
    assert_invalid(f, "election_timeout_ms: must be at least twice "
                      "heartbeat_timeout_ms (199 < 2 * 100)");
    f->c.election_timeout_ms = 200;
    assert_valid(f);
    f->c.election_timeout_ms = 60000;
    f->c.heartbeat_timeout_ms = 10000;
    assert_valid(f);
}

static void validate_snapshot(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    f->c.snapshot_threshold = 100;
    f->c.snapshot_trailing = 101;
    assert_invalid(f, "snapshot_trailing: must not exceed snapshot_threshold "
                      "(101 > 100)");
    f->c.snapshot_trailing = 100;
    assert_valid(f);
    f->c.snapshot_trailing = 0;
    assert_valid(f);
}

static void validate_peer_uniqueness(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    f->c.peers[2].id = 1;
    assert_invalid(f, "peers[2].id: 1 is also the id of peers[0]");

    valid_config(&f->c);
    strcpy(f->c.peers[2].raft_address, "127.0.0.1:7001");
    assert_invalid(f, "peers[2].raft_address: 127.0.0.1:7001 is also "
                      "peers[0].raft_address");

    valid_config(&f->c);
    strcpy(f->c.peers[2].api_address, "127.0.0.1:7102");
    assert_invalid(f, "peers[2].api_address: 127.0.0.1:7102 is also "
                      "peers[1].api_address");

    /* One peer's raft address as another's API address. */
    valid_config(&f->c);
    strcpy(f->c.peers[2].api_address, "127.0.0.1:7001");
    assert_invalid(f, "peers[2].api_address: 127.0.0.1:7001 is also "
                      "peers[0].raft_address");

    /* A peer's own two addresses. */
    valid_config(&f->c);
    strcpy(f->c.peers[0].api_address, "127.0.0.1:7001");
    assert_invalid(f, "peers[0].api_address: 127.0.0.1:7001 is also "
                      "peers[0].raft_address");
}

static void validate_peer_fields(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    f->c.peers[1].id = 0;
    assert_invalid(f, "peers[1].id: must be an integer between 1 and "
                      "18446744073709551615");
    valid_config(&f->c);
    strcpy(f->c.peers[2].raft_address, "127.0.0.1");
    assert_invalid(f, "peers[2].raft_address: " ADDRESS_RULE);
    valid_config(&f->c);
    f->c.n_peers = CONFIG_MAX_PEERS + 1;
    assert_invalid(f, "peers: at most 9 peers are allowed");
}

static void validate_self_in_peers(void **state)
{
    struct fixture *f = *state;
    const char *msg = "peers: must contain this node (node_id 2) with "
                      "raft_address 127.0.0.1:7002 and api_address "
                      "127.0.0.1:7102";

    /* Absent. */
    valid_config(&f->c);
    f->c.peers[1] = f->c.peers[2];
    f->c.n_peers = 2;
    assert_invalid(f, msg);

    /* Present with another raft address. */
    valid_config(&f->c);
    strcpy(f->c.peers[1].raft_address, "127.0.0.1:7009");
    assert_invalid(f, msg);

    /* Present with another API address. */
    valid_config(&f->c);
    strcpy(f->c.peers[1].api_address, "127.0.0.1:7109");
    assert_invalid(f, msg);

    /* Another node's addresses under this node's id. */
    valid_config(&f->c);
    f->c.node_id = 3;
    f->c.peers[2].id = 4;
    assert_invalid(f, "peers: must contain this node (node_id 3) with "
                      "raft_address 127.0.0.1:7002 and api_address "
                      "127.0.0.1:7102");
}

static void validate_join_with_peers(void **state)
{
    struct fixture *f = *state;

    valid_config(&f->c);
    strcpy(f->c.join, "127.0.0.1:7101");
    assert_invalid(f, "join: cannot be combined with peers");
}

/* The full example file passes; a file plus options is validated as one. */
static void validate_after_load(void **state)
{
    struct fixture *f = *state;

    write_config(f, full_file);
    assert_int_equal(
        parse(f, "--config", f->path, "--join", "127.0.0.1:7101", NULL), 0);
    assert_invalid(f, "join: cannot be combined with peers");
    config_defaults(&f->c);
    assert_int_equal(parse(f, "--config", f->path, "--node-id", "4", NULL), 0);
    assert_invalid(f, "peers: must contain this node (node_id 4) with "
                      "raft_address 127.0.0.1:7002 and api_address "
                      "127.0.0.1:7102");
}

/* ------------------------------------------------------------------------
 * config_split_address
 * ------------------------------------------------------------------------ */

static void split_address_good(void **state)
{
    static const struct {
        const char *addr;
        const char *host;
        uint16_t port;
    } good[] = {
        {"127.0.0.1:7001", "127.0.0.1", 7001},
        {"0.0.0.0:1", "0.0.0.0", 1},
        {"255.255.255.255:65535", "255.255.255.255", 65535},
        {"10.0.0.1:080", "10.0.0.1", 80},
    };
    char host[CONFIG_ADDR_SIZE];
    uint16_t port;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(config_split_address(good[i].addr, host, &port), 0);
        assert_string_equal(host, good[i].host);
        assert_int_equal(port, good[i].port);
    }
}

static void split_address_bad(void **state)
{
    char long_host[CONFIG_ADDR_SIZE + 16];
    char host[CONFIG_ADDR_SIZE];
    uint16_t port;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof bad_addresses / sizeof bad_addresses[0]; i++) {
        strcpy(host, "untouched");
        port = 42;
        assert_int_equal(config_split_address(bad_addresses[i], host, &port),
                         REMS_EINVAL);
        assert_string_equal(host, "untouched");
        assert_int_equal(port, 42);
    }
    assert_int_equal(config_split_address("", host, &port), REMS_EINVAL);
    memset(long_host, '1', sizeof long_host);
    strcpy(long_host + sizeof long_host - 4, ":80");
    assert_int_equal(config_split_address(long_host, host, &port), REMS_EINVAL);
    assert_string_equal(host, "untouched");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(defaults),
        TEST(load_full_file),
        TEST(load_keeps_absent_keys),
        TEST(load_peers_replace),
        TEST(load_int_ranges),
        TEST(load_int_values),
        TEST(load_error_line_of_value),
        TEST(load_data_dir),
        TEST(load_addresses),
        TEST(load_join_empty),
        TEST(load_log_level),
        TEST(load_fault_injection),
        TEST(load_unknown_key),
        TEST(load_duplicate_key),
        TEST(load_not_a_mapping),
        TEST(load_second_document),
        TEST(load_malformed),
        TEST(load_bad_encoding),
        TEST(load_aliases),
        TEST(load_missing_file),
        TEST(load_directory),
        TEST(load_too_large),
        TEST(load_out_of_memory),
        TEST(load_peers_not_a_list),
        TEST(load_peer_missing_field),
        TEST(load_peer_bad_fields),
        TEST(load_too_many_peers),
        TEST(args_none),
        TEST(args_every_option),
        TEST(args_equals_form),
        TEST(args_config_only),
        TEST(args_override_file),
        TEST(args_last_wins),
        TEST(args_peers_replace_file),
        TEST(args_too_many_peers),
        TEST(args_bad_peer),
        TEST(args_unknown_option),
        TEST(args_missing_value),
        TEST(args_int_ranges),
        TEST(args_bad_values),
        TEST(args_flag_takes_no_value),
        TEST(args_join_cleared),
        TEST(args_config_errors),
        TEST(validate_valid),
        TEST(validate_required),
        TEST(validate_field_rules),
        TEST(validate_own_addresses_differ),
        TEST(validate_timeouts),
        TEST(validate_snapshot),
        TEST(validate_peer_uniqueness),
        TEST(validate_peer_fields),
        TEST(validate_self_in_peers),
        TEST(validate_join_with_peers),
        TEST(load_agent_keys),
        TEST(load_reconciler_keys),
        TEST(validate_agents),
        TEST(validate_after_load),
        TEST(split_address_good),
        TEST(split_address_bad),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
