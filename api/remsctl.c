/* remsctl: the command-line client of the rems admin API.
 *
 * remsctl turns one command line into one or a few HTTP/1.1 calls on the
 * admin API that every remsd node serves (docs/api.md) and prints the answer
 * as a table or as JSON. The operator reference is docs/remsctl.md.
 *
 * Flow. ctl_main() parses the command line into a struct ctl_args
 * (ctl_parse(): no I/O; its only allocation is the endpoint list), opens one
 * libcurl easy handle, runs the command's handler and maps the outcome to an
 * exit code:
 *
 *   0  success
 *   1  the API answered an error, or its answer could not be used
 *   2  usage error: a bad command line or a bad input file
 *   3  no endpoint reachable
 *
 * Endpoints. A call goes to the first endpoint of --endpoints. When libcurl
 * reports a transport failure (refused, timed out, unresolvable: anything
 * short of an HTTP answer) the call moves on to the next endpoint. Connecting
 * gives up after 3 s (or --timeout if shorter), so a dead host does not use
 * up the whole timeout before the next endpoint gets its turn. The
 * endpoint that answered is tried first by the following calls of the same
 * command (the pages of `policy list --all`). Any HTTP answer, error statuses
 * included, ends the call: a node that answers speaks for the cluster (it
 * forwards writes to the leader), and its error is shown as it is, 503
 * no_leader included, with the Retry-After it gives.
 *
 * Retried writes. A write that timed out may have been applied. Every write
 * carries an X-Rems-Request-Id (--request-id, else a random id made once per
 * command), so a write retried on the next endpoint is applied once. When the
 * server says the outcome is unknown (503 unavailable, 504 timeout), remsctl
 * prints the id to retry with.
 *
 * Waiting. `command issue --wait` reads the command it issued with stale
 * reads (any node answers, also without a leader; a final state never
 * changes once read) every CTL_WAIT_POLL_MS until it has a final state or
 * the wait runs out, and exits 0 only for acked.
 *
 * Input. `policy put` and the manifest of `command issue` take JSON or
 * YAML. Text that parses as a JSON object is sent byte for byte. Anything
 * else is read as YAML through libyaml's event API and converted by
 * yaml_to_json(); events rather than libyaml's document API, because only
 * events tell a plain scalar from one tagged !!str. Plain scalars resolve by
 * the YAML 1.2 core schema. An alias shares the jansson value of its anchor;
 * a node budget bounds alias expansion ("billion laughs") and a depth limit
 * bounds nesting.
 *
 * Output. Handlers print nothing to stdout until the answer has been checked,
 * so stdout stays empty on errors. Renderers (render_*()) take a parsed
 * answer and a FILE. Tables (struct table) size each column to its widest
 * cell, counted in UTF-8 code points, and blank out control characters.
 *
 * Memory. This file allocates through rems_malloc() (libcurl and libyaml
 * use their own allocators; the tests route jansson's to rems_malloc() too),
 * so tests can fail allocations one by one. Tests compile this file with
 * REMSCTL_NO_MAIN and call ctl_main() and the helpers directly
 * (tests/unit/remsctl/). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <yaml.h>

#include "agentproto/agent_config.h" /* agent_yaml_to_json() */
#include "cluster/policy.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/heap.h"
#include "common/mpread.h" /* struct rems_buf */
#include "common/util.h"

#ifndef REMS_VERSION
#define REMS_VERSION "unknown" /* CMake defines it from project(VERSION). */
#endif

enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAILED = 1,
    CTL_EXIT_USAGE = 2,
    CTL_EXIT_UNREACHABLE = 3,
};

#define CTL_DEFAULT_ENDPOINTS "127.0.0.1:7101"
#define CTL_DEFAULT_TIMEOUT_MS 10000L
#define CTL_MAX_TIMEOUT_S 86400.0
#define CTL_CONNECT_TIMEOUT_MS 3000L
#define CTL_MAX_ENDPOINTS 16
#define CTL_MAX_WORDS 8           /* Command words plus operands. */
#define CTL_MAX_INPUT (64u << 20) /* Bytes of a policy value file. */
#define CTL_REQUEST_ID_SIZE 65    /* 64 characters and the terminator. */
#define CTL_MAX_CMD_ARGS 64 /* --arg of `command issue` (server's limit). */
#define CTL_TTL_MAX_MS 86400000ULL /* A command lives a day at most. */
#define CTL_WAIT_POLL_MS 200L      /* --wait: time between two reads. */
#define CTL_WAIT_MARGIN_MS 10000L  /* --wait: after the TTL, for the expiry. */

/* ------------------------------------------------------------------------
 * Growable buffers
 * ------------------------------------------------------------------------ */

struct buf {
    char *data; /* NUL-terminated once anything was appended. */
    size_t len;
    size_t cap;
};

static int buf_reserve(struct buf *b, size_t extra)
{
    size_t need;
    size_t cap;
    char *data;

    if (extra > SIZE_MAX - b->len - 1) {
        return REMS_ENOMEM;
    }
    need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    cap = b->cap != 0 ? b->cap : 256;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    data = rems_realloc(b->data, cap);
    if (data == NULL) {
        return REMS_ENOMEM;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buf_append(struct buf *b, const void *p, size_t n)
{
    int rv;

    rv = buf_reserve(b, n);
    if (rv != 0) {
        return rv;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

static int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    int rv;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return REMS_EINVAL;
    }
    rv = buf_reserve(b, (size_t)n);
    if (rv != 0) {
        return rv;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* Append the compact JSON text of @v (any type). */
static int buf_json(struct buf *b, const json_t *v, size_t flags)
{
    size_t n;
    int rv;

    n = json_dumpb(v, NULL, 0, flags | JSON_ENCODE_ANY);
    if (n == 0) {
        return REMS_ENOMEM;
    }
    rv = buf_reserve(b, n);
    if (rv != 0) {
        return rv;
    }
    if (json_dumpb(v, b->data + b->len, n, flags | JSON_ENCODE_ANY) != n) {
        return REMS_ENOMEM;
    }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static void buf_close(struct buf *b)
{
    rems_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Replace control characters, which would break a table row or a terminal,
 * with spaces. */
static void sanitize(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            *s = ' ';
        }
    }
}

/* ------------------------------------------------------------------------
 * Commands and options
 * ------------------------------------------------------------------------ */

enum ctl_opt {
    /* Global options, valid with every command. */
    OPT_ENDPOINTS,
    OPT_OUTPUT,
    OPT_TIMEOUT,
    OPT_USER,
    OPT_REASON,
    OPT_HELP,
    OPT_VERSION,
    /* Command options. */
    OPT_REQUEST_ID,
    OPT_ROLE,
    OPT_FILE,
    OPT_IF_MATCH,
    OPT_STALE,
    OPT_PREFIX,
    OPT_LIMIT,
    OPT_AFTER,
    OPT_ALL,
    OPT_ONLINE,
    OPT_OFFLINE,
    OPT_AGENT,
    OPT_STATE,
    OPT_ARG,
    OPT_MANIFEST,
    OPT_TTL,
    OPT_WAIT,
    OPT_FORCE,
    OPT_SERVICE,
    OPT_KIND,
    OPT_LEVEL,
    OPT_SITE,
    OPT_UNTIL,
    OPT_FOR,
    OPT_LINEARIZABLE,
    OPT_MODE,
    OPT_FROM,
    OPT_TO,
    OPT_DAYS,
    OPT_START,
    OPT_DURATION,
    OPT_REVISION,
    OPT_DOCUMENTS,
    OPT_NR
};

#define OPT_BIT(o) (UINT64_C(1) << (unsigned)(o))
#define OPTS_GLOBAL                                                            \
    (OPT_BIT(OPT_ENDPOINTS) | OPT_BIT(OPT_OUTPUT) | OPT_BIT(OPT_TIMEOUT) |     \
     OPT_BIT(OPT_USER) | OPT_BIT(OPT_REASON) | OPT_BIT(OPT_HELP) |             \
     OPT_BIT(OPT_VERSION))

struct opt_spec {
    const char *name; /* Long name, without the leading "--". */
    char short_name;  /* '\0' when none. */
    bool has_value;
    /* The value may be left out: it is then "--name=VALUE", or the next
     * word when that is a number. */
    bool optional_value;
};

static const struct opt_spec opt_specs[OPT_NR] = {
    [OPT_ENDPOINTS] = {"endpoints", '\0', true},
    [OPT_OUTPUT] = {"output", 'o', true},
    [OPT_TIMEOUT] = {"timeout", '\0', true},
    [OPT_USER] = {"user", '\0', true},
    [OPT_REASON] = {"reason", '\0', true},
    [OPT_HELP] = {"help", 'h', false},
    [OPT_VERSION] = {"version", '\0', false},
    [OPT_REQUEST_ID] = {"request-id", '\0', true},
    [OPT_ROLE] = {"role", '\0', true},
    [OPT_FILE] = {"file", 'f', true},
    [OPT_IF_MATCH] = {"if-match", '\0', true},
    [OPT_STALE] = {"stale", '\0', false},
    [OPT_PREFIX] = {"prefix", '\0', true},
    [OPT_LIMIT] = {"limit", '\0', true},
    [OPT_AFTER] = {"after", '\0', true},
    [OPT_ALL] = {"all", '\0', false},
    [OPT_ONLINE] = {"online", '\0', false},
    [OPT_OFFLINE] = {"offline", '\0', false},
    [OPT_AGENT] = {"agent", '\0', true},
    [OPT_STATE] = {"state", '\0', true},
    [OPT_ARG] = {"arg", '\0', true},
    [OPT_MANIFEST] = {"manifest", '\0', true},
    [OPT_TTL] = {"ttl", '\0', true},
    [OPT_WAIT] = {"wait", '\0', true, true},
    [OPT_FORCE] = {"force", '\0', false, false},
    [OPT_SERVICE] = {"service", '\0', true},
    [OPT_KIND] = {"kind", '\0', true},
    [OPT_LEVEL] = {"level", '\0', true},
    [OPT_SITE] = {"site", '\0', true},
    [OPT_UNTIL] = {"until", '\0', true},
    [OPT_FOR] = {"for", '\0', true},
    [OPT_LINEARIZABLE] = {"linearizable", '\0', false},
    [OPT_MODE] = {"mode", '\0', true},
    [OPT_FROM] = {"from", '\0', true},
    [OPT_TO] = {"to", '\0', true},
    [OPT_DAYS] = {"days", '\0', true},
    [OPT_START] = {"start", '\0', true},
    [OPT_REVISION] = {"revision", '\0', true},
    [OPT_DOCUMENTS] = {"documents", '\0', false},
    [OPT_DURATION] = {"duration", '\0', true},
};

enum ctl_cmd {
    CMD_STATUS,
    CMD_MEMBER_LIST,
    CMD_MEMBER_ADD,
    CMD_MEMBER_REMOVE,
    CMD_MEMBER_PROMOTE,
    CMD_MEMBER_TRANSFER,
    CMD_POLICY_GET,
    CMD_POLICY_PUT,
    CMD_POLICY_DELETE,
    CMD_POLICY_LIST,
    CMD_AUDIT_LIST,
    CMD_AGENT_LIST,
    CMD_AGENT_SHOW,
    CMD_LEASE_LIST,
    CMD_COMMAND_ISSUE,
    CMD_COMMAND_LIST,
    CMD_COMMAND_SHOW,
    CMD_COMMAND_CANCEL,
    CMD_POLICY_VALIDATE,
    CMD_SUMMARY,
    CMD_DRIFT,
    CMD_RECOMMENDATIONS,
    CMD_INCIDENT_LIST,
    CMD_INCIDENT_SHOW,
    CMD_INCIDENT_ACK,
    CMD_INCIDENT_RESOLVE,
    CMD_OVERRIDE_LIST,
    CMD_OVERRIDE_SET,
    CMD_OVERRIDE_CLEAR,
    CMD_RECONCILER_PAUSE,
    CMD_RECONCILER_RESUME,
    CMD_WINDOW_LIST,
    CMD_WINDOW_SHOW,
    CMD_WINDOW_SET,
    CMD_WINDOW_DELETE,
    CMD_ROLLOUT_LIST,
    CMD_ROLLOUT_SHOW,
    CMD_ROLLOUT_PAUSE,
    CMD_ROLLOUT_RESUME,
    CMD_ROLLOUT_ABORT,
    CMD_ROLLOUT_ROLLBACK,
    CMD_NR
};

struct ctl_command {
    enum ctl_cmd id;
    const char *group;    /* "member", or NULL for a command of one word. */
    const char *name;     /* The last word: "add". */
    const char *path;     /* All words: "member add". */
    const char *operands; /* Synopsis of the operands. */
    const char *options;  /* Synopsis of the command's own options. */
    size_t min_args;
    size_t max_args;
    uint64_t opts; /* OPT_BIT()s accepted besides OPTS_GLOBAL. */
    bool write;    /* Sends X-Rems-User, -Reason and -Request-Id. */
    const char *brief;
    const char *help; /* Description and option lines for its usage. */
};

#define LINEARIZABLE_HELP                                                      \
    "  --linearizable      first make sure the answering node has applied\n"   \
    "                      every write acknowledged before (a read index)\n"

#define ROLE_HELP                                                              \
    "  --role ROLE         voter, standby or spare (default voter)\n"

#define ROLLOUT_REVISION_HELP                                                  \
    "Options:\n"                                                               \
    "  --revision N        only if the rollout is of policy revision N (so\n"  \
    "                      an operation never hits a newer rollout)\n"

static const struct ctl_command commands[CMD_NR] = {
    {CMD_STATUS, NULL, "status", "status", "", "", 0, 0, 0, false,
     "Show the cluster as the answering node sees it",
     "Show the answering node's id, role and term, the leader it knows, its\n"
     "commit and applied indexes, and the members (the leader is marked).\n"},
    {CMD_MEMBER_LIST, "member", "list", "member list", "", "", 0, 0, 0, false,
     "List the members", "List the members and their roles.\n"},
    {CMD_MEMBER_ADD, "member", "add", "member add", "ID RAFT_ADDR API_ADDR",
     "[--role voter|standby|spare]", 3, 3, OPT_BIT(OPT_ROLE), true,
     "Add a member",
     "Add member ID, which listens for raft on RAFT_ADDR and serves the API\n"
     "on API_ADDR (both HOST:PORT). Start the new node with --join pointing\n"
     "at a member first. It joins as a spare and takes ROLE once it has\n"
     "caught up.\n\n"
     "Options:\n" ROLE_HELP},
    {CMD_MEMBER_REMOVE, "member", "remove", "member remove", "ID", "", 1, 1, 0,
     true, "Remove a member",
     "Remove member ID. Removing the leader transfers leadership first.\n"},
    {CMD_MEMBER_PROMOTE, "member", "promote", "member promote", "ID",
     "[--role voter|standby|spare]", 1, 1, OPT_BIT(OPT_ROLE), true,
     "Change the role of a member",
     "Give member ID the role ROLE (default voter).\n\n"
     "Options:\n" ROLE_HELP},
    {CMD_MEMBER_TRANSFER, "member", "transfer", "member transfer", "[ID]", "",
     0, 1, 0, true, "Transfer leadership",
     "Transfer leadership to voter ID, or to any voter without ID. Answers\n"
     "once the transfer has ended.\n"},
    {CMD_POLICY_GET, "policy", "get", "policy get", "KEY", "[--stale]", 1, 1,
     OPT_BIT(OPT_STALE), false, "Show a policy",
     "Show the revision and the value of policy KEY.\n\n"
     "Options:\n"
     "  --stale             answer from the node's own store, without asking\n"
     "                      the leader; works without a leader, may be old\n"},
    {CMD_POLICY_PUT, "policy", "put", "policy put", "KEY [FILE]",
     "[-f FILE|-] [--if-match REV]", 1, 2,
     OPT_BIT(OPT_FILE) | OPT_BIT(OPT_IF_MATCH), true,
     "Create or replace a policy",
     "Create or replace policy KEY. The value is a policy document, JSON or\n"
     "YAML, read from FILE (given as an operand or with -f), or from\n"
     "standard input with -f - or without FILE.\n\n"
     "Options:\n"
     "  -f, --file FILE     read the value from FILE ('-': standard input)\n"
     "  --if-match REV      write only if the key's revision is REV; 0: only\n"
     "                      if the key does not exist\n"},
    {CMD_POLICY_DELETE, "policy", "delete", "policy delete", "KEY",
     "[--if-match REV]", 1, 1, OPT_BIT(OPT_IF_MATCH), true, "Delete a policy",
     "Delete policy KEY.\n\n"
     "Options:\n"
     "  --if-match REV      delete only if the key's revision is REV\n"},
    {CMD_POLICY_LIST, "policy", "list", "policy list", "",
     "[--prefix P] [--limit N] [--after KEY] [--all] [--stale]", 0, 0,
     OPT_BIT(OPT_PREFIX) | OPT_BIT(OPT_LIMIT) | OPT_BIT(OPT_AFTER) |
         OPT_BIT(OPT_ALL) | OPT_BIT(OPT_STALE),
     false, "List policies",
     "List policies in key order, one page of at most N keys.\n\n"
     "Options:\n"
     "  --prefix P          only keys that start with P\n"
     "  --limit N           keys per page, 1-1000 (server default 100)\n"
     "  --after KEY         start after KEY\n"
     "  --all               fetch every page, not just the first\n"
     "  --stale             answer from the node's own store, without asking\n"
     "                      the leader; works without a leader, may be old\n"},
    {CMD_POLICY_VALIDATE, "policy", "validate", "policy validate", "FILE", "",
     1, 1, 0, false, "Check a policy document offline",
     "Check the policy document in FILE ('-': standard input), JSON or YAML\n"
     "(by the extension .json, .yaml or .yml, else by its content), with\n"
     "the rules the server applies. Prints \"valid\" and exits 0, or prints\n"
     "the first rule broken, naming the field, and exits 1. Makes no call.\n"},
    {CMD_AUDIT_LIST, "audit", "list", "audit list", "",
     "[--after INDEX] [--limit N] [--stale]", 0, 0,
     OPT_BIT(OPT_AFTER) | OPT_BIT(OPT_LIMIT) | OPT_BIT(OPT_STALE), false,
     "Show the audit trail",
     "List the audit trail in index order.\n\n"
     "Options:\n"
     "  --after INDEX       entries after raft index INDEX (default 0)\n"
     "  --limit N           entries to show, 1-1000 (server default 100)\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_AGENT_LIST, "agent", "list", "agent list", "",
     "[--online|--offline] [--limit N] [--after ID] [--all] [--stale]", 0, 0,
     OPT_BIT(OPT_ONLINE) | OPT_BIT(OPT_OFFLINE) | OPT_BIT(OPT_LIMIT) |
         OPT_BIT(OPT_AFTER) | OPT_BIT(OPT_ALL) | OPT_BIT(OPT_STALE),
     false, "List agents",
     "List the registered agents in id order, one page of at most N.\n\n"
     "Options:\n"
     "  --online            only agents that hold a lease\n"
     "  --offline           only agents that hold none\n"
     "  --limit N           agents per page, 1-1000 (server default 100)\n"
     "  --after ID          start after agent ID\n"
     "  --all               fetch every page, not just the first\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_AGENT_SHOW, "agent", "show", "agent show", "ID", "[--stale]", 1, 1,
     OPT_BIT(OPT_STALE), false, "Show an agent",
     "Show agent ID: labels, whether it is online, its lease and the last\n"
     "service states it reported.\n\n"
     "Options:\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_LEASE_LIST, "lease", "list", "lease list", "", "[--stale]", 0, 0,
     OPT_BIT(OPT_STALE), false, "List agent leases",
     "List the leases recorded in the log, one per online agent.\n\n"
     "Options:\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_COMMAND_ISSUE, "command", "issue", "command issue",
     "AGENT ACTION [SERVICE]",
     "[--arg KEY=VALUE]... [--manifest FILE|-] [--ttl MS] [--wait [SECONDS]]",
     2, 3,
     OPT_BIT(OPT_ARG) | OPT_BIT(OPT_MANIFEST) | OPT_BIT(OPT_TTL) |
         OPT_BIT(OPT_WAIT),
     true, "Issue a command to an agent",
     "Issue ACTION to agent AGENT: start, stop, restart, pause, resume or\n"
     "quarantine SERVICE, or push_manifest or diagnostics (SERVICE\n"
     "optional). --reason is recorded with the command.\n\n"
     "Options:\n"
     "  --arg KEY=VALUE     an argument of the action; repeat for more (at\n"
     "                      most 64)\n"
     "  --manifest FILE     push_manifest only, and required there: the\n"
     "                      manifest, JSON or YAML ('-': standard input)\n"
     "  --ttl MS            how long the command stays valid, in\n"
     "                      milliseconds, 1-86400000 (server default 30000)\n"
     "  --wait [SECONDS]    wait until the command ends and exit 0 only if\n"
     "                      it was acked; at most SECONDS (default: its TTL\n"
     "                      plus 10 s)\n"},
    {CMD_COMMAND_LIST, "command", "list", "command list", "",
     "[--agent ID] [--state STATE] [--limit N] [--after ID] [--all] "
     "[--stale]",
     0, 0,
     OPT_BIT(OPT_AGENT) | OPT_BIT(OPT_STATE) | OPT_BIT(OPT_LIMIT) |
         OPT_BIT(OPT_AFTER) | OPT_BIT(OPT_ALL) | OPT_BIT(OPT_STALE),
     false, "List commands",
     "List commands in id order, one page of at most N.\n\n"
     "Options:\n"
     "  --agent ID          only the commands of agent ID\n"
     "  --state STATE       only commands in STATE: pending, acked, nacked,\n"
     "                      expired or cancelled\n"
     "  --limit N           commands per page, 1-1000 (server default 100)\n"
     "  --after ID          start after command ID\n"
     "  --all               fetch every page, not just the first\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_COMMAND_SHOW, "command", "show", "command show", "ID", "[--stale]", 1,
     1, OPT_BIT(OPT_STALE), false, "Show a command",
     "Show command ID: what was asked, by whom, its state and result.\n\n"
     "Options:\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_COMMAND_CANCEL, "command", "cancel", "command cancel", "ID",
     "[--force]", 1, 1, OPT_BIT(OPT_FORCE), true, "Cancel a pending command",
     "Record command ID as cancelled. Refused when it has already ended, and\n"
     "when the leader sent it to its agent and has no answer yet (it may be\n"
     "running) unless --force.\n\n"
     "Options:\n"
     "  --force             cancel even a command its agent may be running;\n"
     "                      its late answer is then dropped\n"},
    {CMD_SUMMARY, NULL, "summary", "summary", "",
     "[--agent ID] [--site SITE] [--linearizable]", 0, 0,
     OPT_BIT(OPT_AGENT) | OPT_BIT(OPT_SITE) | OPT_BIT(OPT_LINEARIZABLE), false,
     "Show the reconciler's summary",
     "Show how the cluster, each site, agent and service stand: nominal,\n"
     "degraded, reconciling or unstable, with counts.\n\n"
     "Options:\n"
     "  --agent ID          only agent ID in the agents' table\n"
     "  --site SITE         only SITE in the sites' table\n" LINEARIZABLE_HELP},
    {CMD_DRIFT, NULL, "drift", "drift", "",
     "[--agent ID] [--service NAME] [--kind KIND] [--level LEVEL] "
     "[--linearizable]",
     0, 0,
     OPT_BIT(OPT_AGENT) | OPT_BIT(OPT_SERVICE) | OPT_BIT(OPT_KIND) |
         OPT_BIT(OPT_LEVEL) | OPT_BIT(OPT_LINEARIZABLE),
     false, "Show the drift between policies and agents",
     "List what differs between the policies and what the agents report,\n"
     "with the level, the recommended action and why.\n\n"
     "Options:\n"
     "  --agent ID          only the drift of agent ID\n"
     "  --service NAME      only the drift of service NAME\n"
     "  --kind KIND         only one kind: missing_service,\n"
     "                      unexpected_service, unhealthy_service,\n"
     "                      failed_deployment, offline_agent,\n"
     "                      dependency_unavailable, unresolved_incident\n"
     "  --level LEVEL       only required, recommended or "
     "blocked\n" LINEARIZABLE_HELP},
    {CMD_RECOMMENDATIONS, NULL, "recommendations", "recommendations", "",
     "[--agent ID] [--service NAME] [--level LEVEL] [--linearizable]", 0, 0,
     OPT_BIT(OPT_AGENT) | OPT_BIT(OPT_SERVICE) | OPT_BIT(OPT_LEVEL) |
         OPT_BIT(OPT_LINEARIZABLE),
     false, "Show what to do, and what the guardrails hold back",
     "Show the recommended actions, the actions the leader issues on its\n"
     "own (policies in mode auto), those a guardrail holds back and why,\n"
     "and placement conflicts.\n\n"
     "Options:\n"
     "  --agent ID          only agent ID\n"
     "  --service NAME      only service NAME\n"
     "  --level LEVEL       only required, recommended or "
     "blocked\n" LINEARIZABLE_HELP},
    {CMD_INCIDENT_LIST, "incident", "list", "incident list", "",
     "[--state STATE] [--agent ID] [--limit N] [--after ID] [--all] "
     "[--stale]",
     0, 0,
     OPT_BIT(OPT_STATE) | OPT_BIT(OPT_AGENT) | OPT_BIT(OPT_LIMIT) |
         OPT_BIT(OPT_AFTER) | OPT_BIT(OPT_ALL) | OPT_BIT(OPT_STALE),
     false, "List incidents",
     "List incidents in id order, one page of at most N.\n\n"
     "Options:\n"
     "  --state STATE       open, acknowledged, resolved or unresolved (open\n"
     "                      or acknowledged)\n"
     "  --agent ID          only the incidents of agent ID\n"
     "  --limit N           incidents per page, 1-1000 (server default 100)\n"
     "  --after ID          start after incident ID\n"
     "  --all               fetch every page, not just the first\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_INCIDENT_SHOW, "incident", "show", "incident show", "ID", "[--stale]",
     1, 1, OPT_BIT(OPT_STALE), false, "Show an incident",
     "Show incident ID: what escalated, and each step with who and why.\n\n"
     "Options:\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_INCIDENT_ACK, "incident", "ack", "incident ack", "ID", "", 1, 1, 0,
     true, "Acknowledge an incident",
     "Acknowledge open incident ID; --user and --reason are recorded with\n"
     "it.\n"},
    {CMD_INCIDENT_RESOLVE, "incident", "resolve", "incident resolve", "ID", "",
     1, 1, 0, true, "Resolve an incident",
     "Resolve incident ID (open or acknowledged); --user and --reason are\n"
     "recorded with it. The service gets its remediation attempts back.\n"},
    {CMD_OVERRIDE_LIST, "override", "list", "override list", "", "[--stale]", 0,
     0, OPT_BIT(OPT_STALE), false, "List freezes and the pause",
     "List the overrides: freezes of services, agents and sites, and the\n"
     "pause of the reconciler.\n\n"
     "Options:\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_OVERRIDE_SET, "override", "set", "override set", "SCOPE [NAME]",
     "[--agent ID] [--until TIME|--for DURATION]", 1, 2,
     OPT_BIT(OPT_AGENT) | OPT_BIT(OPT_UNTIL) | OPT_BIT(OPT_FOR), true,
     "Freeze a service, an agent or a site, or pause",
     "Stop automatic actions on what SCOPE and NAME name: service NAME (on\n"
     "every agent, or with --agent on one), agent NAME, site NAME; or, with\n"
     "SCOPE pause and no NAME, pause the reconciler. Setting it again\n"
     "replaces it.\n\n"
     "Options:\n"
     "  --agent ID          service only: on agent ID only\n"
     "  --until TIME        until TIME: milliseconds since the epoch, or UTC\n"
     "                      such as 2026-05-01T22:00:00Z (default: until\n"
     "                      cleared)\n"
     "  --for DURATION      for DURATION from now, such as 90m, 2h or 1d\n"},
    {CMD_OVERRIDE_CLEAR, "override", "clear", "override clear", "SCOPE [NAME]",
     "[--agent ID]", 1, 2, OPT_BIT(OPT_AGENT), true,
     "Remove a freeze, or resume",
     "Remove the override that SCOPE, NAME and --agent name (as given to\n"
     "'override set').\n\n"
     "Options:\n"
     "  --agent ID          service only: the freeze on agent ID\n"},
    {CMD_RECONCILER_PAUSE, "reconciler", "pause", "reconciler pause", "", "", 0,
     0, 0, true, "Pause the reconciler",
     "Pause the reconciler: it keeps reporting drift and recommendations\n"
     "but issues nothing until resumed.\n"},
    {CMD_RECONCILER_RESUME, "reconciler", "resume", "reconciler resume", "", "",
     0, 0, 0, true, "Resume the reconciler",
     "Resume the reconciler (nothing happens when it is not paused).\n"},
    {CMD_WINDOW_LIST, "window", "list", "window list", "",
     "[--limit N] [--after NAME] [--all] [--stale]", 0, 0,
     OPT_BIT(OPT_LIMIT) | OPT_BIT(OPT_AFTER) | OPT_BIT(OPT_ALL) |
         OPT_BIT(OPT_STALE),
     false, "List maintenance windows",
     "List the maintenance windows in name order, and whether each is open\n"
     "now.\n\n"
     "Options:\n"
     "  --limit N           windows per page, 1-1000 (server default 100)\n"
     "  --after NAME        start after window NAME\n"
     "  --all               fetch every page, not just the first\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_WINDOW_SHOW, "window", "show", "window show", "NAME", "[--stale]", 1,
     1, OPT_BIT(OPT_STALE), false, "Show a maintenance window",
     "Show maintenance window NAME.\n\n"
     "Options:\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_WINDOW_SET, "window", "set", "window set", "NAME",
     "[--site SITE|--agent ID] --mode MODE (--from TIME --to TIME | --days "
     "DAYS --start HH:MM --duration DURATION)",
     1, 1,
     OPT_BIT(OPT_SITE) | OPT_BIT(OPT_AGENT) | OPT_BIT(OPT_MODE) |
         OPT_BIT(OPT_FROM) | OPT_BIT(OPT_TO) | OPT_BIT(OPT_DAYS) |
         OPT_BIT(OPT_START) | OPT_BIT(OPT_DURATION),
     true, "Create or replace a maintenance window",
     "Create or replace maintenance window NAME, for every agent, the\n"
     "agents of --site, or --agent. Once (--from, --to) or weekly in UTC\n"
     "(--days, --start, --duration).\n\n"
     "Options:\n"
     "  --site SITE         the agents of SITE only\n"
     "  --agent ID          agent ID only\n"
     "  --mode MODE         auto_inside_only (automatic actions only while\n"
     "                      a window of this kind is open) or never_inside\n"
     "                      (none while it is open)\n"
     "  --from TIME         once: the start, milliseconds since the epoch or\n"
     "                      UTC such as 2026-05-01T22:00:00Z\n"
     "  --to TIME           once: the end\n"
     "  --days DAYS         weekly: days such as mon,wed or sat-sun\n"
     "  --start HH:MM       weekly: the start, UTC\n"
     "  --duration DURATION weekly: how long, such as 90m or 4h (at most\n"
     "                      a week)\n"},
    {CMD_ROLLOUT_LIST, "rollout", "list", "rollout list", "",
     "[--limit N] [--after KEY] [--all] [--stale]", 0, 0,
     OPT_BIT(OPT_LIMIT) | OPT_BIT(OPT_AFTER) | OPT_BIT(OPT_ALL) |
         OPT_BIT(OPT_STALE),
     false, "List policy rollouts",
     "List the rollouts of the policies (the last one of each key) in key\n"
     "order: state, stage, batch, agents reached, why.\n\n"
     "Options:\n"
     "  --limit N           rollouts per page, 1-1000 (server default 100)\n"
     "  --after KEY         start after policy KEY\n"
     "  --all               fetch every page, not just the first\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_ROLLOUT_SHOW, "rollout", "show", "rollout show", "KEY",
     "[--documents] [--stale]", 1, 1,
     OPT_BIT(OPT_DOCUMENTS) | OPT_BIT(OPT_STALE), false,
     "Show the rollout of a policy",
     "Show the rollout of policy KEY: state, stage, batch, the agents\n"
     "reached, times, why and who.\n\n"
     "Options:\n"
     "  --documents         also the target and previous documents\n"
     "  --stale             answer from the node's own store\n"},
    {CMD_ROLLOUT_PAUSE, "rollout", "pause", "rollout pause", "KEY",
     "[--revision N]", 1, 1, OPT_BIT(OPT_REVISION), true, "Pause a rollout",
     "Pause the running rollout of policy KEY: nothing advances, the agents\n"
     "keep what they have.\n\n" ROLLOUT_REVISION_HELP},
    {CMD_ROLLOUT_RESUME, "rollout", "resume", "rollout resume", "KEY",
     "[--revision N]", 1, 1, OPT_BIT(OPT_REVISION), true, "Resume a rollout",
     "Resume the paused rollout of policy KEY; its stage's clock\n"
     "restarts.\n\n" ROLLOUT_REVISION_HELP},
    {CMD_ROLLOUT_ABORT, "rollout", "abort", "rollout abort", "KEY",
     "[--revision N]", 1, 1, OPT_BIT(OPT_REVISION), true, "Abort a rollout",
     "Abort the rollout of policy KEY: every agent gets the previous\n"
     "document again; the policy keeps the new one.\n\n" ROLLOUT_REVISION_HELP},
    {CMD_ROLLOUT_ROLLBACK, "rollout", "rollback", "rollout rollback", "KEY",
     "[--revision N]", 1, 1, OPT_BIT(OPT_REVISION), true,
     "Roll a policy back to its previous revision",
     "Roll the rollout of policy KEY back: the policy is written back to\n"
     "the previous document at a new revision (a new policy is deleted),\n"
     "and every agent gets it.\n\n" ROLLOUT_REVISION_HELP},
    {CMD_WINDOW_DELETE, "window", "delete", "window delete", "NAME", "", 1, 1,
     0, true, "Delete a maintenance window",
     "Delete maintenance window NAME.\n"},
};

#define WRITE_HELP                                                             \
    "  --request-id ID     id of this write, 1-64 characters of\n"             \
    "                      [A-Za-z0-9_.:-] (default: a random id)\n"

static const char global_help[] =
    "Options:\n"
    "  --endpoints HOST:PORT[,HOST:PORT...]\n"
    "                      API addresses of the nodes, tried in order\n"
    "                      (default: $REMS_ENDPOINTS, else 127.0.0.1:7101)\n"
    "  -o, --output FORMAT  table (default) or json\n"
    "  --timeout SECONDS   time limit of each request (default 10)\n"
    "  --user NAME         who asks, recorded in the audit trail on writes\n"
    "                      (default: $USER, else anonymous)\n"
    "  --reason TEXT       why, recorded in the audit trail on writes\n"
    "  -h, --help          show help\n"
    "  --version           show the version\n";

enum ctl_action {
    CTL_ACTION_RUN,
    CTL_ACTION_HELP,
    CTL_ACTION_VERSION,
};

/* A parsed command line. Strings are borrowed from argv or the environment,
 * except the endpoint list. */
struct ctl_args {
    enum ctl_action action;
    const struct ctl_command *cmd; /* Also the help topic; may be NULL. */
    const char *group;             /* Help topic when @cmd is NULL. */
    const char *args[CTL_MAX_WORDS];
    size_t nargs;
    uint64_t seen; /* OPT_BIT()s given. */
    /* Global options. */
    const char *endpoints;
    char *endpoint_copy; /* Owned; the list points into it. */
    const char *endpoint[CTL_MAX_ENDPOINTS];
    size_t nendpoints;
    bool json;
    long timeout_ms;
    const char *user;
    const char *reason;
    /* Command options. */
    const char *request_id;
    const char *role;
    const char *file;
    bool has_if_match;
    uint64_t if_match;
    bool stale;
    const char *prefix;
    const char *limit;
    const char *after;
    bool all;
    bool online;
    bool offline;
    const char *agent;
    const char *state;
    const char *kv[CTL_MAX_CMD_ARGS]; /* --arg values, "KEY=VALUE". */
    size_t nkv;
    const char *manifest;
    bool has_ttl;
    uint64_t ttl_ms;
    bool wait;
    long wait_ms; /* 0: the command's TTL plus CTL_WAIT_MARGIN_MS. */
    bool force;
    /* The reconciler's commands. */
    const char *service;
    const char *kind;
    const char *level;
    const char *site;
    bool linearizable;
    uint64_t until_ms; /* --until; 0: not given. */
    uint64_t for_ms;   /* --for; 0: not given. */
    const char *mode;
    uint64_t from_ms; /* --from, --to: once windows. */
    uint64_t to_ms;
    const char *days; /* --days, --start, --duration: weekly windows. */
    const char *start;
    uint64_t duration_minutes;
    uint64_t revision; /* --revision of rollout operations; 0: none. */
    bool documents;    /* --documents of rollout show. */
};

static void ctl_args_close(struct ctl_args *a)
{
    rems_free(a->endpoint_copy);
    a->endpoint_copy = NULL;
    a->nendpoints = 0;
}

/* True when @s is HOST:PORT: a host name or IPv4 address, or an IPv6
 * address in brackets, and a port 1-65535. */
static bool endpoint_valid(const char *s)
{
    const char *colon = strrchr(s, ':');
    const char *p;
    unsigned long port = 0;

    if (colon == NULL || colon == s || colon[1] == '\0') {
        return false;
    }
    for (p = colon + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || p - colon > 5) {
            return false;
        }
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port == 0 || port > 65535) {
        return false;
    }
    if (s[0] == '[') {
        if (colon - s < 3 || colon[-1] != ']') {
            return false;
        }
        for (p = s + 1; p < colon - 1; p++) {
            if (strchr("0123456789abcdefABCDEF:.", *p) == NULL) {
                return false;
            }
        }
        return true;
    }
    for (p = s; p < colon; p++) {
        bool alnum = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9');
        if (!alnum && *p != '.' && *p != '-' && *p != '_') {
            return false;
        }
    }
    return true;
}

/* Split the comma-separated @list into a->endpoint[]. */
static int endpoints_split(struct ctl_args *a, const char *list, char *errmsg)
{
    char *copy;
    char *p;
    char *comma;

    copy = rems_strdup(list);
    if (copy == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    a->nendpoints = 0;
    for (p = copy;; p = comma + 1) {
        comma = strchr(p, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        if (!endpoint_valid(p)) {
            rems_errmsgf(errmsg, "invalid endpoint '%s' (expected HOST:PORT)",
                         p);
            goto err;
        }
        if (a->nendpoints == CTL_MAX_ENDPOINTS) {
            rems_errmsgf(errmsg, "more than %d endpoints", CTL_MAX_ENDPOINTS);
            goto err;
        }
        a->endpoint[a->nendpoints++] = p;
        if (comma == NULL) {
            break;
        }
    }
    a->endpoint_copy = copy;
    return 0;

err:
    a->nendpoints = 0;
    rems_free(copy);
    return REMS_EINVAL;
}

/* Header values must not carry control characters: a newline would end the
 * header and start another. */
static bool header_value_valid(const char *s)
{
    for (; *s != '\0'; s++) {
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f) {
            return false;
        }
    }
    return true;
}

static bool role_valid(const char *s)
{
    return strcmp(s, "voter") == 0 || strcmp(s, "standby") == 0 ||
           strcmp(s, "spare") == 0;
}

/* Member ids are raft ids: 1 and up. They travel as JSON integers, so they
 * stop at INT64_MAX. */
static bool member_id_parse(const char *s, json_int_t *out)
{
    uint64_t v;

    if (rems_parse_u64(s, &v) != 0 || v == 0 || v > INT64_MAX) {
        return false;
    }
    *out = (json_int_t)v;
    return true;
}

static int timeout_parse(const char *s, long *out_ms)
{
    char *end;
    double secs;

    errno = 0;
    secs = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(secs) ||
        secs <= 0 || secs > CTL_MAX_TIMEOUT_S) {
        return REMS_EINVAL;
    }
    *out_ms = (long)(secs * 1000.0 + 0.5);
    if (*out_ms < 1) {
        *out_ms = 1;
    }
    return 0;
}

static const char *const command_states[] = {"pending", "acked", "nacked",
                                             "expired", "cancelled"};

static const struct {
    const char *name;
    bool needs_service;
} command_actions[] = {
    {"start", true},          {"stop", true},         {"restart", true},
    {"pause", true},          {"resume", true},       {"quarantine", true},
    {"push_manifest", false}, {"diagnostics", false},
};

/* Store "KEY=VALUE" of --arg: a key of 1-128 bytes, a value of at most
 * 1024, each key once. */
static int kv_add(struct ctl_args *a, const char *kv, char *errmsg)
{
    const char *eq = strchr(kv, '=');
    size_t klen = eq != NULL ? (size_t)(eq - kv) : 0;
    size_t i;

    if (eq == NULL || klen == 0 || klen > 128 || strlen(eq + 1) > 1024) {
        rems_errmsgf(errmsg,
                     "invalid --arg '%s' (expected KEY=VALUE, a key of 1-128 "
                     "bytes and a value of at most 1024)",
                     kv);
        return REMS_EINVAL;
    }
    for (i = 0; i < a->nkv; i++) {
        if (strncmp(a->kv[i], kv, klen + 1) == 0) {
            rems_errmsgf(errmsg, "--arg %.*s is given twice", (int)klen, kv);
            return REMS_EINVAL;
        }
    }
    if (a->nkv == CTL_MAX_CMD_ARGS) {
        rems_errmsgf(errmsg, "more than %d --arg", CTL_MAX_CMD_ARGS);
        return REMS_EINVAL;
    }
    a->kv[a->nkv++] = kv;
    return 0;
}

/* True when @s is a number, as a value of an option whose value may be
 * left out must be when it is a separate word. */
static bool number_like(const char *s)
{
    char *end;

    errno = 0;
    (void)strtod(s, &end);
    return *s != '\0' && *end == '\0' && errno == 0;
}

static const char *const incident_states[] = {"open", "acknowledged",
                                              "resolved", "unresolved"};

#define TIME_RULE                                                              \
    "expected milliseconds since the epoch, or a UTC time such as "            \
    "2026-05-01T22:00:00Z"

/* Days since 1970-01-01 of the civil date @y-@m-@d (proleptic Gregorian;
 * H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe;
    unsigned doy;
    unsigned doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* @s as milliseconds since the epoch: digits, or UTC
 * "YYYY-MM-DDTHH:MM[:SS[.mmm]]Z" (a real date and time, from 1970 on). */
static int time_parse(const char *s, uint64_t *out)
{
    int y;
    int mo;
    int d;
    int h;
    int mi;
    int sec = 0;
    int ms = 0;
    int n = 0;
    const char *p;
    int64_t days;
    struct tm tm;
    time_t t;

    if (s[0] >= '0' && s[0] <= '9' && strchr(s, '-') == NULL) {
        return rems_parse_u64(s, out) == 0 && *out > 0 ? 0 : REMS_EINVAL;
    }
    if (strlen(s) < 17 || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
        s[13] != ':' ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) != 5 ||
        n != 16) {
        return REMS_EINVAL;
    }
    p = s + n;
    if (*p == ':') {
        if (p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9') {
            return REMS_EINVAL;
        }
        sec = (p[1] - '0') * 10 + (p[2] - '0');
        p += 3;
        if (*p == '.') {
            int digits = 0;
            for (p++; *p >= '0' && *p <= '9' && digits < 3; p++, digits++) {
                ms = ms * 10 + (*p - '0');
            }
            if (digits == 0) {
                return REMS_EINVAL;
            }
            for (; digits < 3; digits++) {
                ms *= 10;
            }
        }
    }
    if (strcmp(p, "Z") != 0 || y < 1970 || mo < 1 || mo > 12 || d < 1 ||
        d > 31 || h > 23 || mi > 59 || sec > 59) {
        return REMS_EINVAL;
    }
    days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    /* A day that does not exist (April 31) comes back as another. */
    t = (time_t)(days * 86400);
    if (gmtime_r(&t, &tm) == NULL || tm.tm_mday != d || tm.tm_mon != mo - 1) {
        return REMS_EINVAL;
    }
    *out = ((uint64_t)days * 86400u + (uint64_t)h * 3600u + (uint64_t)mi * 60u +
            (uint64_t)sec) *
               1000u +
           (uint64_t)ms;
    return 0;
}

/* @s as milliseconds: one or more NUMBER UNIT, UNIT ms, s, m, h, d or w
 * ("90m", "1h30m"); more than 0, at most ten years. */
static int duration_parse(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}, {"w", 604800000}};
    uint64_t total = 0;
    const char *p = s;

    if (*p == '\0') {
        return REMS_EINVAL;
    }
    while (*p != '\0') {
        uint64_t n = 0;
        size_t i;
        if (*p < '0' || *p > '9') {
            return REMS_EINVAL;
        }
        for (; *p >= '0' && *p <= '9'; p++) {
            if (n > UINT64_C(1000000000000)) {
                return REMS_EINVAL;
            }
            n = n * 10 + (uint64_t)(*p - '0');
        }
        for (i = 0; i < REMS_ARRAY_SIZE(units); i++) {
            size_t len = strlen(units[i].unit);
            /* "m" must not take the "m" of "ms". */
            if (strncmp(p, units[i].unit, len) == 0 &&
                !(len == 1 && p[0] == 'm' && p[1] == 's')) {
                break;
            }
        }
        if (i == REMS_ARRAY_SIZE(units)) {
            return REMS_EINVAL;
        }
        total += n * units[i].ms;
        if (total > UINT64_C(315360000000)) {
            return REMS_EINVAL;
        }
        p += strlen(units[i].unit);
    }
    if (total == 0) {
        return REMS_EINVAL;
    }
    *out = total;
    return 0;
}

static int store_option(struct ctl_args *a,
                        enum ctl_opt opt,
                        const char *value,
                        char *errmsg)
{
    uint64_t n;

    switch (opt) {
        case OPT_ENDPOINTS:
            a->endpoints = value;
            break;
        case OPT_OUTPUT:
            if (strcmp(value, "json") != 0 && strcmp(value, "table") != 0) {
                rems_errmsgf(errmsg,
                             "invalid output format '%s' (expected json or "
                             "table)",
                             value);
                return REMS_EINVAL;
            }
            a->json = strcmp(value, "json") == 0;
            break;
        case OPT_TIMEOUT:
            if (timeout_parse(value, &a->timeout_ms) != 0) {
                rems_errmsgf(errmsg,
                             "invalid timeout '%s' (expected seconds, more "
                             "than 0 and at most 86400)",
                             value);
                return REMS_EINVAL;
            }
            break;
        case OPT_USER:
        case OPT_REASON:
            if (!header_value_valid(value)) {
                rems_errmsgf(errmsg, "--%s may not contain control characters",
                             opt_specs[opt].name);
                return REMS_EINVAL;
            }
            if (opt == OPT_USER) {
                a->user = value;
            } else {
                a->reason = value;
            }
            break;
        case OPT_REQUEST_ID:
            if (!rems_id_valid(value)) {
                rems_errmsgf(errmsg,
                             "invalid request id '%s' (expected 1-64 "
                             "characters of [A-Za-z0-9_.:-])",
                             value);
                return REMS_EINVAL;
            }
            a->request_id = value;
            break;
        case OPT_ROLE:
            if (!role_valid(value)) {
                rems_errmsgf(errmsg,
                             "invalid role '%s' (expected voter, standby or "
                             "spare)",
                             value);
                return REMS_EINVAL;
            }
            a->role = value;
            break;
        case OPT_FILE:
            a->file = value;
            break;
        case OPT_IF_MATCH:
            if (rems_parse_u64(value, &a->if_match) != 0) {
                rems_errmsgf(errmsg,
                             "invalid revision '%s' (expected a number, 0 for "
                             "a key that must not exist)",
                             value);
                return REMS_EINVAL;
            }
            a->has_if_match = true;
            break;
        case OPT_REVISION:
            if (rems_parse_u64(value, &a->revision) != 0 || a->revision == 0) {
                rems_errmsgf(errmsg,
                             "invalid revision '%s' (expected a positive "
                             "integer)",
                             value);
                return REMS_EINVAL;
            }
            break;
        case OPT_PREFIX:
            a->prefix = value;
            break;
        case OPT_LIMIT:
            if (rems_parse_u64(value, &n) != 0 || n == 0) {
                rems_errmsgf(errmsg,
                             "invalid limit '%s' (expected a positive "
                             "integer)",
                             value);
                return REMS_EINVAL;
            }
            a->limit = value;
            break;
        case OPT_AFTER:
            a->after = value;
            break;
        case OPT_ONLINE:
            a->online = true;
            break;
        case OPT_OFFLINE:
            a->offline = true;
            break;
        case OPT_AGENT:
            if (!rems_id_valid(value)) {
                rems_errmsgf(errmsg,
                             "invalid agent id '%s' (expected 1-64 "
                             "characters of [A-Za-z0-9_.:-])",
                             value);
                return REMS_EINVAL;
            }
            a->agent = value;
            break;
        case OPT_STATE: /* Checked by operands_check(): per command. */
            a->state = value;
            break;
        case OPT_SERVICE:
            a->service = value;
            break;
        case OPT_KIND:
            a->kind = value;
            break;
        case OPT_LEVEL:
            a->level = value;
            break;
        case OPT_SITE:
            a->site = value;
            break;
        case OPT_DAYS:
            a->days = value;
            break;
        case OPT_START:
            a->start = value;
            break;
        case OPT_LINEARIZABLE:
            a->linearizable = true;
            break;
        case OPT_UNTIL:
        case OPT_FROM:
        case OPT_TO: {
            uint64_t ms;
            if (time_parse(value, &ms) != 0) {
                rems_errmsgf(errmsg, "invalid time '%s' (" TIME_RULE ")",
                             value);
                return REMS_EINVAL;
            }
            *(opt == OPT_UNTIL  ? &a->until_ms
              : opt == OPT_FROM ? &a->from_ms
                                : &a->to_ms) = ms;
            break;
        }
        case OPT_FOR:
            if (duration_parse(value, &a->for_ms) != 0) {
                rems_errmsgf(errmsg,
                             "invalid duration '%s' (expected a duration such "
                             "as 90m, 2h or 1d)",
                             value);
                return REMS_EINVAL;
            }
            break;
        case OPT_DURATION: {
            uint64_t ms;
            if (duration_parse(value, &ms) != 0 || ms % 60000 != 0 ||
                ms > UINT64_C(604800000)) {
                rems_errmsgf(errmsg,
                             "invalid duration '%s' (expected whole minutes, "
                             "at most a week, such as 90m, 4h or 1d)",
                             value);
                return REMS_EINVAL;
            }
            a->duration_minutes = ms / 60000;
            break;
        }
        case OPT_MODE:
            if (strcmp(value, "auto_inside_only") != 0 &&
                strcmp(value, "never_inside") != 0) {
                rems_errmsgf(errmsg,
                             "invalid mode '%s' (expected auto_inside_only or "
                             "never_inside)",
                             value);
                return REMS_EINVAL;
            }
            a->mode = value;
            break;
        case OPT_ARG:
            return kv_add(a, value, errmsg);
        case OPT_MANIFEST:
            a->manifest = value;
            break;
        case OPT_TTL:
            if (rems_parse_u64(value, &a->ttl_ms) != 0 || a->ttl_ms == 0 ||
                a->ttl_ms > CTL_TTL_MAX_MS) {
                rems_errmsgf(errmsg,
                             "invalid TTL '%s' (expected milliseconds, 1 to "
                             "86400000)",
                             value);
                return REMS_EINVAL;
            }
            a->has_ttl = true;
            break;
        case OPT_WAIT:
            a->wait = true;
            a->wait_ms = 0;
            if (value != NULL && timeout_parse(value, &a->wait_ms) != 0) {
                rems_errmsgf(errmsg,
                             "invalid wait '%s' (expected seconds, more than "
                             "0 and at most 86400)",
                             value);
                return REMS_EINVAL;
            }
            break;
        case OPT_HELP:
        case OPT_VERSION:
            break;
        case OPT_STALE:
            a->stale = true;
            break;
        case OPT_ALL:
            a->all = true;
            break;
        case OPT_FORCE:
            a->force = true;
            break;
        case OPT_DOCUMENTS:
            a->documents = true;
            break;
        case OPT_NR:
            REMS_ASSERT(false);
            break;
    }
    return 0;
}

/* Find the option named by @arg ("--name", "--name=value", "-x" or
 * "-xvalue"); set *@value to an attached value or NULL. Returns the option or
 * -1 when unknown. */
static int opt_lookup(const char *arg, const char **value)
{
    int i;

    *value = NULL;
    if (arg[1] == '-') {
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);

        for (i = 0; i < OPT_NR; i++) {
            if (strlen(opt_specs[i].name) == len &&
                strncmp(opt_specs[i].name, name, len) == 0) {
                *value = eq != NULL ? eq + 1 : NULL;
                return i;
            }
        }
        return -1;
    }
    for (i = 0; i < OPT_NR; i++) {
        if (opt_specs[i].short_name != '\0' &&
            opt_specs[i].short_name == arg[1]) {
            *value = arg[2] != '\0' ? arg + 2 : NULL;
            return i;
        }
    }
    return -1;
}

/* Find the command named by the first words of @words. Sets a->group when
 * the first word names a group, even when the second is missing or wrong,
 * so that usage can be shown for the group. */
static int command_resolve(struct ctl_args *a,
                           const char *const *words,
                           size_t n,
                           size_t *used,
                           char *errmsg)
{
    size_t i;

    a->cmd = NULL;
    a->group = NULL;
    if (n == 0) {
        rems_errmsgf(errmsg, "missing command");
        return REMS_EINVAL;
    }
    for (i = 0; i < CMD_NR; i++) {
        if (commands[i].group == NULL &&
            strcmp(commands[i].name, words[0]) == 0) {
            a->cmd = &commands[i];
            *used = 1;
            return 0;
        }
        if (commands[i].group != NULL &&
            strcmp(commands[i].group, words[0]) == 0) {
            a->group = commands[i].group;
        }
    }
    if (a->group == NULL) {
        rems_errmsgf(errmsg, "unknown command '%s'", words[0]);
        return REMS_EINVAL;
    }
    if (n < 2) {
        rems_errmsgf(errmsg, "missing %s command", a->group);
        return REMS_EINVAL;
    }
    for (i = 0; i < CMD_NR; i++) {
        if (commands[i].group != NULL &&
            strcmp(commands[i].group, a->group) == 0 &&
            strcmp(commands[i].name, words[1]) == 0) {
            a->cmd = &commands[i];
            *used = 2;
            return 0;
        }
    }
    rems_errmsgf(errmsg, "unknown command '%s %s'", words[0], words[1]);
    return REMS_EINVAL;
}

/* True when @s is one of the @n @names. */
static bool one_of(const char *s, const char *const *names, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* The operands and options of the reconciler's commands. */
static int reconcile_operands_check(const struct ctl_args *a, char *errmsg)
{
    static const char *const scopes[] = {"service", "agent", "site", "pause"};
    enum ctl_cmd id = a->cmd->id;
    uint64_t n;

    if (a->state != NULL && id == CMD_COMMAND_LIST &&
        !one_of(a->state, command_states, REMS_ARRAY_SIZE(command_states))) {
        rems_errmsgf(errmsg,
                     "invalid state '%s' (expected pending, acked, nacked, "
                     "expired or cancelled)",
                     a->state);
        return REMS_EINVAL;
    }
    if (a->state != NULL && id == CMD_INCIDENT_LIST &&
        !one_of(a->state, incident_states, REMS_ARRAY_SIZE(incident_states))) {
        rems_errmsgf(errmsg,
                     "invalid state '%s' (expected open, acknowledged, "
                     "resolved or unresolved)",
                     a->state);
        return REMS_EINVAL;
    }
    if (id == CMD_INCIDENT_LIST && a->after != NULL &&
        rems_parse_u64(a->after, &n) != 0) {
        rems_errmsgf(errmsg, "invalid incident id '%s' (expected a number)",
                     a->after);
        return REMS_EINVAL;
    }
    if ((id == CMD_INCIDENT_SHOW || id == CMD_INCIDENT_ACK ||
         id == CMD_INCIDENT_RESOLVE) &&
        (rems_parse_u64(a->args[0], &n) != 0 || n == 0)) {
        rems_errmsgf(errmsg,
                     "invalid incident id '%s' (expected a positive integer)",
                     a->args[0]);
        return REMS_EINVAL;
    }
    if (id == CMD_OVERRIDE_SET || id == CMD_OVERRIDE_CLEAR) {
        bool pause = strcmp(a->args[0], "pause") == 0;
        if (!one_of(a->args[0], scopes, REMS_ARRAY_SIZE(scopes))) {
            rems_errmsgf(errmsg,
                         "invalid scope '%s' (expected service, agent, site "
                         "or pause)",
                         a->args[0]);
            return REMS_EINVAL;
        }
        if (pause && a->nargs > 1) {
            rems_errmsgf(errmsg, "scope pause takes no NAME");
            return REMS_EINVAL;
        }
        if (!pause && a->nargs < 2) {
            rems_errmsgf(errmsg, "scope %s needs a NAME", a->args[0]);
            return REMS_EINVAL;
        }
        if (a->agent != NULL && strcmp(a->args[0], "service") != 0) {
            rems_errmsgf(errmsg, "--agent is only for scope service");
            return REMS_EINVAL;
        }
        if (pause && (a->until_ms != 0 || a->for_ms != 0)) {
            rems_errmsgf(errmsg, "a pause lasts until resumed: no --until or "
                                 "--for");
            return REMS_EINVAL;
        }
        if (a->until_ms != 0 && a->for_ms != 0) {
            rems_errmsgf(errmsg, "--until and --for exclude each other");
            return REMS_EINVAL;
        }
    }
    if ((id == CMD_WINDOW_SHOW || id == CMD_WINDOW_SET ||
         id == CMD_WINDOW_DELETE) &&
        !rems_id_valid(a->args[0])) {
        rems_errmsgf(errmsg,
                     "invalid window name '%s' (expected 1-64 characters of "
                     "[A-Za-z0-9_.:-])",
                     a->args[0]);
        return REMS_EINVAL;
    }
    if (id == CMD_WINDOW_SET) {
        bool once = a->from_ms != 0 || a->to_ms != 0;
        bool weekly =
            a->days != NULL || a->start != NULL || a->duration_minutes != 0;
        if (a->mode == NULL) {
            rems_errmsgf(errmsg, "window set needs --mode auto_inside_only or "
                                 "never_inside");
            return REMS_EINVAL;
        }
        if (a->site != NULL && a->agent != NULL) {
            rems_errmsgf(errmsg, "--site and --agent exclude each other");
            return REMS_EINVAL;
        }
        if (once == weekly) {
            rems_errmsgf(errmsg,
                         "a window is once (--from and --to) or weekly "
                         "(--days, --start and --duration)%s",
                         once ? ", not both" : "");
            return REMS_EINVAL;
        }
        if (once && (a->from_ms == 0 || a->to_ms == 0)) {
            rems_errmsgf(errmsg, "a window once needs --from and --to");
            return REMS_EINVAL;
        }
        if (weekly &&
            (a->days == NULL || a->start == NULL || a->duration_minutes == 0)) {
            rems_errmsgf(errmsg, "a weekly window needs --days, --start and "
                                 "--duration");
            return REMS_EINVAL;
        }
    }
    return 0;
}

/* Check the operands and option values that depend on the command. */
static int operands_check(const struct ctl_args *a, char *errmsg)
{
    bool member = a->cmd->group != NULL && strcmp(a->cmd->group, "member") == 0;
    uint64_t after;
    json_int_t id;
    size_t i;

    if (member && a->nargs > 0 && !member_id_parse(a->args[0], &id)) {
        rems_errmsgf(errmsg,
                     "invalid member id '%s' (expected a positive integer)",
                     a->args[0]);
        return REMS_EINVAL;
    }
    if (a->cmd->id == CMD_MEMBER_ADD) {
        for (i = 1; i <= 2; i++) {
            if (!endpoint_valid(a->args[i])) {
                rems_errmsgf(errmsg,
                             "invalid %s address '%s' (expected "
                             "HOST:PORT)",
                             i == 1 ? "raft" : "API", a->args[i]);
                return REMS_EINVAL;
            }
        }
    }
    if (a->cmd->group != NULL && strcmp(a->cmd->group, "policy") == 0 &&
        a->cmd->id != CMD_POLICY_VALIDATE && a->nargs > 0 &&
        a->args[0][0] == '\0') {
        rems_errmsgf(errmsg, "the key may not be empty");
        return REMS_EINVAL;
    }
    if (a->cmd->id == CMD_AUDIT_LIST && a->after != NULL &&
        rems_parse_u64(a->after, &after) != 0) {
        rems_errmsgf(errmsg, "invalid index '%s' (expected a number)",
                     a->after);
        return REMS_EINVAL;
    }
    if (a->online && a->offline) {
        rems_errmsgf(errmsg, "--online and --offline exclude each other");
        return REMS_EINVAL;
    }
    if ((a->cmd->id == CMD_AGENT_SHOW || a->cmd->id == CMD_COMMAND_ISSUE) &&
        !rems_id_valid(a->args[0])) {
        rems_errmsgf(errmsg,
                     "invalid agent id '%s' (expected 1-64 characters of "
                     "[A-Za-z0-9_.:-])",
                     a->args[0]);
        return REMS_EINVAL;
    }
    if ((a->cmd->id == CMD_COMMAND_SHOW || a->cmd->id == CMD_COMMAND_CANCEL) &&
        !rems_id_valid(a->args[0])) {
        rems_errmsgf(errmsg,
                     "invalid command id '%s' (expected 1-64 characters of "
                     "[A-Za-z0-9_.:-])",
                     a->args[0]);
        return REMS_EINVAL;
    }
    if (a->cmd->id == CMD_COMMAND_ISSUE) {
        bool push = strcmp(a->args[1], "push_manifest") == 0;
        for (i = 0; i < REMS_ARRAY_SIZE(command_actions); i++) {
            if (strcmp(a->args[1], command_actions[i].name) == 0) {
                break;
            }
        }
        if (i == REMS_ARRAY_SIZE(command_actions)) {
            rems_errmsgf(errmsg,
                         "invalid action '%s' (expected start, stop, "
                         "restart, pause, resume, quarantine, push_manifest "
                         "or diagnostics)",
                         a->args[1]);
            return REMS_EINVAL;
        }
        if (command_actions[i].needs_service && a->nargs < 3) {
            rems_errmsgf(errmsg, "action '%s' needs a SERVICE", a->args[1]);
            return REMS_EINVAL;
        }
        if (a->nargs == 3 && a->args[2][0] == '\0') {
            rems_errmsgf(errmsg, "the service may not be empty");
            return REMS_EINVAL;
        }
        if (push && a->manifest == NULL) {
            rems_errmsgf(errmsg, "push_manifest needs --manifest FILE");
            return REMS_EINVAL;
        }
        if (!push && a->manifest != NULL) {
            rems_errmsgf(errmsg, "--manifest is only for push_manifest");
            return REMS_EINVAL;
        }
    }
    return reconcile_operands_check(a, errmsg);
}

static void parse_fail(bool *failed, char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keep the first error of the command line: later ones are often its
 * consequence. */
static void parse_fail(bool *failed, char *errmsg, const char *fmt, ...)
{
    va_list ap;

    if (*failed) {
        return;
    }
    *failed = true;
    va_start(ap, fmt);
    vsnprintf(errmsg, REMS_ERRMSG_SIZE, fmt, ap);
    va_end(ap);
}

/* Parse @argv into @a. @env_endpoints and @env_user are $REMS_ENDPOINTS and
 * $USER, or NULL. Options may come before, between or after the command
 * words; "--" ends them. Returns 0, REMS_EINVAL for a usage error (described
 * in @errmsg, with a->cmd or a->group set to the usage to show when known) or
 * REMS_ENOMEM. Release @a with ctl_args_close() in every case. */
static int ctl_parse(int argc,
                     char *const argv[],
                     const char *env_endpoints,
                     const char *env_user,
                     struct ctl_args *a,
                     char *errmsg)
{
    const char *words[CTL_MAX_WORDS];
    char resolve_msg[REMS_ERRMSG_SIZE];
    size_t nwords = 0;
    size_t used = 0;
    size_t skip;
    bool only_words = false;
    bool failed = false;
    bool help;
    uint64_t extra;
    int resolved;
    int i;

    memset(a, 0, sizeof *a);
    a->endpoints = env_endpoints != NULL && env_endpoints[0] != '\0'
                       ? env_endpoints
                       : CTL_DEFAULT_ENDPOINTS;
    a->user =
        env_user != NULL && env_user[0] != '\0' && header_value_valid(env_user)
            ? env_user
            : "anonymous";
    a->timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
    errmsg[0] = '\0';

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value;
        int opt;

        if (!only_words && strcmp(arg, "--") == 0) {
            only_words = true;
            continue;
        }
        if (only_words || arg[0] != '-' || arg[1] == '\0') {
            if (nwords == CTL_MAX_WORDS) {
                parse_fail(&failed, errmsg, "too many arguments");
                continue;
            }
            words[nwords++] = arg;
            continue;
        }
        opt = opt_lookup(arg, &value);
        if (opt < 0) {
            parse_fail(&failed, errmsg, "unknown option '%s'", arg);
            continue;
        }
        if (opt_specs[opt].optional_value && value == NULL) {
            if (i + 1 < argc && number_like(argv[i + 1])) {
                value = argv[++i];
            }
        } else if (opt_specs[opt].has_value && value == NULL) {
            if (i + 1 == argc) {
                parse_fail(&failed, errmsg, "option '%s' needs a value", arg);
                break;
            }
            value = argv[++i];
        } else if (!opt_specs[opt].has_value && value != NULL) {
            parse_fail(&failed, errmsg, "option '--%s' takes no value",
                       opt_specs[opt].name);
            continue;
        }
        a->seen |= OPT_BIT(opt);
        if (!failed && store_option(a, (enum ctl_opt)opt, value, errmsg)) {
            failed = true;
        }
    }

    /* "help [COMMAND]" and "--help" show the usage of what the words name. */
    help = nwords > 0 && strcmp(words[0], "help") == 0;
    skip = help ? 1 : 0;
    resolved =
        command_resolve(a, words + skip, nwords - skip, &used, resolve_msg);
    if (help || (a->seen & OPT_BIT(OPT_HELP)) != 0) {
        a->action = CTL_ACTION_HELP;
        if (help && nwords > 1 && resolved != 0 &&
            !(a->group != NULL && nwords == 2)) {
            memcpy(errmsg, resolve_msg, sizeof resolve_msg);
            return REMS_EINVAL;
        }
        return 0;
    }
    if (failed) {
        return REMS_EINVAL;
    }
    if ((a->seen & OPT_BIT(OPT_VERSION)) != 0) {
        a->action = CTL_ACTION_VERSION;
        return 0;
    }
    if (resolved != 0) {
        memcpy(errmsg, resolve_msg, sizeof resolve_msg);
        return REMS_EINVAL;
    }

    extra = a->seen & ~(OPTS_GLOBAL | a->cmd->opts |
                        (a->cmd->write ? OPT_BIT(OPT_REQUEST_ID) : 0));
    if (extra != 0) {
        for (i = 0; i < OPT_NR; i++) {
            if ((extra & OPT_BIT(i)) != 0) {
                break;
            }
        }
        rems_errmsgf(errmsg, "option '--%s' is not valid for '%s'",
                     opt_specs[i].name, a->cmd->path);
        return REMS_EINVAL;
    }
    a->nargs = nwords - used;
    memcpy(a->args, words + used, a->nargs * sizeof words[0]);
    if (a->nargs < a->cmd->min_args) {
        rems_errmsgf(errmsg, "missing arguments (expected %s)",
                     a->cmd->operands);
        return REMS_EINVAL;
    }
    if (a->nargs > a->cmd->max_args) {
        rems_errmsgf(errmsg, "unexpected argument '%s'",
                     a->args[a->cmd->max_args]);
        return REMS_EINVAL;
    }
    if (operands_check(a, errmsg) != 0) {
        return REMS_EINVAL;
    }
    a->action = CTL_ACTION_RUN;
    return endpoints_split(a, a->endpoints, errmsg);
}

/* ------------------------------------------------------------------------
 * Usage
 * ------------------------------------------------------------------------ */

static void usage_command(FILE *f, const struct ctl_command *cmd)
{
    fprintf(f, "usage: remsctl [OPTIONS] %s", cmd->path);
    if (cmd->operands[0] != '\0') {
        fprintf(f, " %s", cmd->operands);
    }
    if (cmd->options[0] != '\0') {
        fprintf(f, " %s", cmd->options);
    }
    fprintf(f, "%s\n\n%s", cmd->write ? " [--request-id ID]" : "", cmd->help);
    if (cmd->write) {
        fprintf(f, "%s%s", cmd->opts != 0 ? "" : "\nOptions:\n", WRITE_HELP);
    }
    fprintf(f, "\nRun 'remsctl --help' for the global options.\n");
}

static void usage_group(FILE *f, const char *group)
{
    size_t i;

    fprintf(f, "usage: remsctl [OPTIONS] %s COMMAND [ARGS...]\n\nCommands:\n",
            group);
    for (i = 0; i < CMD_NR; i++) {
        if (commands[i].group != NULL &&
            strcmp(commands[i].group, group) == 0) {
            fprintf(f, "  %-18s%s\n", commands[i].path, commands[i].brief);
        }
    }
    fprintf(f, "\nRun 'remsctl help %s COMMAND' for a command's arguments.\n",
            group);
}

/* Show the usage of @cmd, else of @group, else of remsctl: all of it with
 * @full, else two lines (after a usage error). */
static void usage_print(FILE *f,
                        const struct ctl_command *cmd,
                        const char *group,
                        bool full)
{
    size_t i;

    if (cmd != NULL) {
        usage_command(f, cmd);
        return;
    }
    if (group != NULL) {
        usage_group(f, group);
        return;
    }
    fprintf(f, "usage: remsctl [OPTIONS] COMMAND [ARGS...]\n");
    if (!full) {
        fprintf(f, "Run 'remsctl --help' for the commands and options.\n");
        return;
    }
    fprintf(f, "\nManage a rems cluster through the admin API of its nodes."
               "\n\nCommands:\n");
    for (i = 0; i < CMD_NR; i++) {
        fprintf(f, "  %-18s%s\n", commands[i].path, commands[i].brief);
    }
    fprintf(f, "  %-18s%s\n\n%s\n", "help [COMMAND]", "Show help", global_help);
    fprintf(f, "Exit status: 0 success, 1 the API answered an error, 2 usage "
               "error,\n3 no endpoint reachable.\n\n"
               "Run 'remsctl help COMMAND' for a command's arguments and "
               "options.\n");
}

/* ------------------------------------------------------------------------
 * Policy values: JSON or YAML in, a JSON object out
 * ------------------------------------------------------------------------ */

#define YAML_MAX_DEPTH 64
#define YAML_MAX_NODES 1000000 /* After alias expansion. */

struct yaml_frame {
    json_t *node; /* The array or object being filled; a reference. */
    char *key;    /* Object: the key whose value comes next, or NULL. */
    yaml_mark_t key_mark;
    char *anchor;  /* Registered once the node is complete. */
    size_t weight; /* Nodes in the subtree so far, this one included. */
};

struct yaml_anchor {
    char *name;
    json_t *value; /* A reference. */
    size_t weight;
};

struct yaml_conv {
    struct yaml_frame stack[YAML_MAX_DEPTH];
    size_t depth;
    struct yaml_anchor *anchors;
    size_t nanchors;
    size_t anchors_cap;
    size_t nodes; /* Nodes so far, aliases expanded. */
    size_t docs;
    json_t *root;
    char *errmsg;
};

static int
conv_fail(struct yaml_conv *cv, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
conv_fail(struct yaml_conv *cv, yaml_mark_t mark, const char *fmt, ...)
{
    char what[REMS_ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    rems_errmsgf(cv->errmsg, "invalid YAML at line %zu, column %zu: %s",
                 mark.line + 1, mark.column + 1, what);
    return REMS_EMALFORMED;
}

static int conv_oom(struct yaml_conv *cv)
{
    rems_errmsg_oom(cv->errmsg);
    return REMS_ENOMEM;
}

static int conv_count(struct yaml_conv *cv, size_t weight, yaml_mark_t mark)
{
    if (weight > YAML_MAX_NODES - cv->nodes) {
        return conv_fail(cv, mark,
                         "more than %d nodes once aliases are expanded",
                         YAML_MAX_NODES);
    }
    cv->nodes += weight;
    return 0;
}

static void conv_close(struct yaml_conv *cv)
{
    size_t i;

    for (i = 0; i < cv->depth; i++) {
        json_decref(cv->stack[i].node);
        rems_free(cv->stack[i].key);
        rems_free(cv->stack[i].anchor);
    }
    for (i = 0; i < cv->nanchors; i++) {
        rems_free(cv->anchors[i].name);
        json_decref(cv->anchors[i].value);
    }
    rems_free(cv->anchors);
    json_decref(cv->root);
}

static int conv_anchor_add(struct yaml_conv *cv,
                           const char *name,
                           json_t *value,
                           size_t weight)
{
    struct yaml_anchor *a;

    if (cv->nanchors == cv->anchors_cap) {
        size_t cap = cv->anchors_cap != 0 ? cv->anchors_cap * 2 : 8;
        a = rems_realloc(cv->anchors, cap * sizeof *a);
        if (a == NULL) {
            return conv_oom(cv);
        }
        cv->anchors = a;
        cv->anchors_cap = cap;
    }
    a = &cv->anchors[cv->nanchors];
    a->name = rems_strdup(name);
    if (a->name == NULL) {
        return conv_oom(cv);
    }
    a->value = json_incref(value);
    a->weight = weight;
    cv->nanchors++;
    return 0;
}

/* The latest anchor called @name: YAML lets a later anchor reuse a name. */
static const struct yaml_anchor *conv_anchor_find(const struct yaml_conv *cv,
                                                  const char *name)
{
    size_t i;

    for (i = cv->nanchors; i > 0; i--) {
        if (strcmp(cv->anchors[i - 1].name, name) == 0) {
            return &cv->anchors[i - 1];
        }
    }
    return NULL;
}

/* Place the complete node @value (reference transferred, also on failure)
 * into the node being built, or make it the root. */
static int conv_add(struct yaml_conv *cv, json_t *value, size_t weight)
{
    struct yaml_frame *top;
    int rv;

    if (cv->depth == 0) {
        /* One document only, and a document holds one node. */
        REMS_ASSERT(cv->root == NULL);
        cv->root = value;
        return 0;
    }
    top = &cv->stack[cv->depth - 1];
    top->weight += weight;
    if (json_is_array(top->node)) {
        if (json_array_append_new(top->node, value) != 0) {
            return conv_oom(cv);
        }
        return 0;
    }
    REMS_ASSERT(top->key != NULL);
    if (json_object_get(top->node, top->key) != NULL) {
        json_decref(value);
        return conv_fail(cv, top->key_mark, "duplicate key '%s'", top->key);
    }
    rv = json_object_set_new(top->node, top->key, value);
    rems_free(top->key);
    top->key = NULL;
    if (rv != 0) {
        return conv_oom(cv);
    }
    return 0;
}

/* True when the node being built is a mapping waiting for a key. */
static bool conv_wants_key(const struct yaml_conv *cv)
{
    return cv->depth > 0 && json_is_object(cv->stack[cv->depth - 1].node) &&
           cv->stack[cv->depth - 1].key == NULL;
}

static int
conv_key(struct yaml_conv *cv, const char *text, size_t len, yaml_mark_t mark)
{
    struct yaml_frame *top = &cv->stack[cv->depth - 1];

    if (memchr(text, '\0', len) != NULL) {
        return conv_fail(cv, mark, "a key contains a NUL character");
    }
    top->key = rems_strndup(text, len);
    if (top->key == NULL) {
        return conv_oom(cv);
    }
    top->key_mark = mark;
    return 0;
}

static bool all_digits(const char *s, const char *digits)
{
    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (strchr(digits, *s) == NULL) {
            return false;
        }
    }
    return true;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, the float of the
 * YAML 1.2 core schema without .inf and .nan, which JSON cannot carry. */
static bool is_core_float(const char *s)
{
    size_t digits = 0;

    if (*s == '-' || *s == '+') {
        s++;
    }
    for (; *s >= '0' && *s <= '9'; s++) {
        digits++;
    }
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++) {
            digits++;
        }
    }
    if (digits == 0) {
        return false;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+') {
            s++;
        }
        if (!all_digits(s, "0123456789")) {
            return false;
        }
        return true;
    }
    return *s == '\0';
}

/* Resolve a plain scalar (NUL-terminated @s) by the YAML 1.2 core schema:
 * null, booleans, integers (decimal, 0o octal, 0x hex) and floats; anything
 * else, and numbers JSON cannot hold, stay strings. NULL: out of memory. */
static json_t *resolve_plain(const char *s, size_t len)
{
    const char *digits = s;
    long long v;
    double d;
    int base = 10;

    if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
        strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0) {
        return json_null();
    }
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 ||
        strcmp(s, "TRUE") == 0) {
        return json_true();
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 ||
        strcmp(s, "FALSE") == 0) {
        return json_false();
    }
    if (s[0] == '-' || s[0] == '+') {
        digits++;
    }
    if (all_digits(digits, "0123456789")) {
        errno = 0;
        v = strtoll(s, NULL, 10);
        if (errno == 0) {
            return json_integer(v);
        }
        /* Beyond 64 bits: a float, as JSON parsers do, while it is finite. */
        d = strtod(s, NULL);
        return isfinite(d) ? json_real(d) : json_stringn(s, len);
    }
    if (strncmp(s, "0o", 2) == 0 && all_digits(s + 2, "01234567")) {
        base = 8;
    } else if (strncmp(s, "0x", 2) == 0 &&
               all_digits(s + 2, "0123456789abcdefABCDEF")) {
        base = 16;
    }
    if (base != 10) {
        errno = 0;
        v = strtoll(s + 2, NULL, base);
        if (errno == 0) {
            return json_integer(v);
        }
        return json_stringn(s, len);
    }
    if (is_core_float(s)) {
        d = strtod(s, NULL);
        if (isfinite(d)) {
            return json_real(d);
        }
    }
    return json_stringn(s, len);
}

static int conv_scalar(struct yaml_conv *cv, const yaml_event_t *ev)
{
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    const char *anchor = (const char *)ev->data.scalar.anchor;
    json_t *value;
    int rv;

    rv = conv_count(cv, 1, ev->start_mark);
    if (rv != 0) {
        return rv;
    }
    if (conv_wants_key(cv)) {
        /* Keys are the scalar's text whatever it resolves to: `1: x` has
         * the key "1", as JSON needs string keys. */
        rv = conv_key(cv, text, len, ev->start_mark);
        if (rv != 0 || anchor == NULL) {
            return rv;
        }
        value = json_stringn(text, len);
        if (value == NULL) {
            return conv_oom(cv);
        }
        rv = conv_anchor_add(cv, anchor, value, 1);
        json_decref(value);
        return rv;
    }
    if (tag == NULL && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        value = resolve_plain(text, len);
    } else if (tag == NULL || strcmp(tag, "!") == 0 ||
               strcmp(tag, YAML_STR_TAG) == 0) {
        value = json_stringn(text, len);
    } else if (strcmp(tag, YAML_NULL_TAG) == 0 ||
               strcmp(tag, YAML_BOOL_TAG) == 0 ||
               strcmp(tag, YAML_INT_TAG) == 0 ||
               strcmp(tag, YAML_FLOAT_TAG) == 0) {
        bool ok;
        value = resolve_plain(text, len);
        if (value == NULL) {
            return conv_oom(cv);
        }
        if (strcmp(tag, YAML_NULL_TAG) == 0) {
            ok = json_is_null(value);
        } else if (strcmp(tag, YAML_BOOL_TAG) == 0) {
            ok = json_is_boolean(value);
        } else if (strcmp(tag, YAML_INT_TAG) == 0) {
            ok = json_is_integer(value);
        } else {
            ok = json_is_number(value);
            if (ok && json_is_integer(value)) {
                json_t *real = json_real((double)json_integer_value(value));
                json_decref(value);
                value = real;
            }
        }
        if (value != NULL && !ok) {
            json_decref(value);
            return conv_fail(cv, ev->start_mark, "'%s' does not match tag %s",
                             text, tag);
        }
    } else {
        return conv_fail(cv, ev->start_mark, "unsupported tag '%s'", tag);
    }
    if (value == NULL) {
        return conv_oom(cv);
    }
    if (anchor != NULL) {
        rv = conv_anchor_add(cv, anchor, value, 1);
        if (rv != 0) {
            json_decref(value);
            return rv;
        }
    }
    return conv_add(cv, value, 1);
}

static int conv_alias(struct yaml_conv *cv, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    const struct yaml_anchor *a = conv_anchor_find(cv, name);
    int rv;

    if (a == NULL) {
        return conv_fail(cv, ev->start_mark, "unknown anchor '%s'", name);
    }
    if (conv_wants_key(cv)) {
        if (!json_is_string(a->value)) {
            return conv_fail(cv, ev->start_mark,
                             "alias '%s' used as a key is not a string", name);
        }
        return conv_key(cv, json_string_value(a->value),
                        json_string_length(a->value), ev->start_mark);
    }
    rv = conv_count(cv, a->weight, ev->start_mark);
    if (rv != 0) {
        return rv;
    }
    /* Share the value: jansson counts references, and a complete node is
     * never changed again. */
    return conv_add(cv, json_incref(a->value), a->weight);
}

static int conv_start(struct yaml_conv *cv, const yaml_event_t *ev)
{
    bool mapping = ev->type == YAML_MAPPING_START_EVENT;
    const char *tag = (const char *)(mapping ? ev->data.mapping_start.tag
                                             : ev->data.sequence_start.tag);
    const char *anchor =
        (const char *)(mapping ? ev->data.mapping_start.anchor
                               : ev->data.sequence_start.anchor);
    struct yaml_frame *f;
    int rv;

    if (conv_wants_key(cv)) {
        return conv_fail(cv, ev->start_mark,
                         "only scalars can be mapping keys");
    }
    if (tag != NULL && strcmp(tag, "!") != 0 &&
        strcmp(tag, mapping ? YAML_MAP_TAG : YAML_SEQ_TAG) != 0) {
        return conv_fail(cv, ev->start_mark, "unsupported tag '%s'", tag);
    }
    if (cv->depth == YAML_MAX_DEPTH) {
        return conv_fail(cv, ev->start_mark, "nested deeper than %d levels",
                         YAML_MAX_DEPTH);
    }
    rv = conv_count(cv, 1, ev->start_mark);
    if (rv != 0) {
        return rv;
    }
    f = &cv->stack[cv->depth];
    memset(f, 0, sizeof *f);
    f->weight = 1;
    if (anchor != NULL) {
        f->anchor = rems_strdup(anchor);
        if (f->anchor == NULL) {
            return conv_oom(cv);
        }
    }
    f->node = mapping ? json_object() : json_array();
    if (f->node == NULL) {
        rems_free(f->anchor);
        return conv_oom(cv);
    }
    cv->depth++;
    return 0;
}

static int conv_end(struct yaml_conv *cv)
{
    struct yaml_frame f;
    int rv = 0;

    REMS_ASSERT(cv->depth > 0);
    f = cv->stack[--cv->depth];
    REMS_ASSERT(f.key == NULL); /* libyaml pairs every key with a value. */
    if (f.anchor != NULL) {
        rv = conv_anchor_add(cv, f.anchor, f.node, f.weight);
        rems_free(f.anchor);
    }
    if (rv != 0) {
        json_decref(f.node);
        return rv;
    }
    return conv_add(cv, f.node, f.weight);
}

static int yaml_syntax_error(const yaml_parser_t *parser, char *errmsg)
{
    const char *problem = parser->problem != NULL ? parser->problem : "error";

    if (parser->error == YAML_MEMORY_ERROR) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    if (parser->error == YAML_READER_ERROR) {
        rems_errmsgf(errmsg, "invalid YAML at byte %zu: %s",
                     parser->problem_offset, problem);
    } else if (parser->context != NULL) {
        rems_errmsgf(errmsg, "invalid YAML at line %zu, column %zu: %s (%s)",
                     parser->problem_mark.line + 1,
                     parser->problem_mark.column + 1, problem, parser->context);
    } else {
        rems_errmsgf(errmsg, "invalid YAML at line %zu, column %zu: %s",
                     parser->problem_mark.line + 1,
                     parser->problem_mark.column + 1, problem);
    }
    return REMS_EMALFORMED;
}

/* Convert the YAML document @text into JSON: mappings to objects, sequences
 * to arrays, scalars as resolve_plain() says; quoted scalars and scalars
 * tagged !!str are strings. On success *@out owns an object. Returns
 * REMS_EMALFORMED for bad YAML (the line and column in @errmsg), REMS_EINVAL
 * when the document is not a mapping, or REMS_ENOMEM. */
static int
yaml_to_json(const char *text, size_t len, json_t **out, char *errmsg)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct yaml_conv cv;
    bool done = false;
    int rv = 0;

    memset(&cv, 0, sizeof cv);
    cv.errmsg = errmsg;
    if (!yaml_parser_initialize(&parser)) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done && rv == 0) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rv = yaml_syntax_error(&parser, errmsg);
            break;
        }
        switch (ev.type) {
            case YAML_STREAM_END_EVENT:
                done = true;
                break;
            case YAML_DOCUMENT_START_EVENT:
                if (++cv.docs > 1) {
                    rv = conv_fail(&cv, ev.start_mark,
                                   "only one document is allowed");
                }
                break;
            case YAML_ALIAS_EVENT:
                rv = conv_alias(&cv, &ev);
                break;
            case YAML_SCALAR_EVENT:
                rv = conv_scalar(&cv, &ev);
                break;
            case YAML_SEQUENCE_START_EVENT:
            case YAML_MAPPING_START_EVENT:
                rv = conv_start(&cv, &ev);
                break;
            case YAML_SEQUENCE_END_EVENT:
            case YAML_MAPPING_END_EVENT:
                rv = conv_end(&cv);
                break;
            case YAML_NO_EVENT:
            case YAML_STREAM_START_EVENT:
            case YAML_DOCUMENT_END_EVENT:
                break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (rv == 0 && !json_is_object(cv.root)) {
        rems_errmsgf(errmsg, "the value must be a JSON object or YAML mapping");
        rv = REMS_EINVAL;
    }
    if (rv == 0) {
        *out = cv.root;
        cv.root = NULL;
    }
    conv_close(&cv);
    return rv;
}

/* True when the text starts like JSON, so a JSON error says more than a
 * YAML one. */
static bool looks_like_json(const char *text, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (strchr(" \t\r\n", text[i]) == NULL) {
            return text[i] == '{' || text[i] == '[';
        }
    }
    return false;
}

/* Parse a policy value. On success *@out owns a JSON object and *@verbatim
 * tells whether @text was JSON, to be sent as it is (*@out then holds its
 * numbers as reals). Returns 0,
 * REMS_EMALFORMED (syntax error, with line and column in @errmsg),
 * REMS_EINVAL (not an object or mapping) or REMS_ENOMEM. */
static int value_parse(
    const char *text, size_t len, json_t **out, bool *verbatim, char *errmsg)
{
    char yaml_msg[REMS_ERRMSG_SIZE];
    json_error_t jerr;
    json_t *v;
    int rv;

    /* Integers as reals: an integer too big for jansson is still JSON, and
     * JSON is sent as it is, so jansson only has to check it. */
    v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL,
                   &jerr);
    if (v != NULL) {
        if (!json_is_object(v)) {
            json_decref(v);
            rems_errmsgf(errmsg,
                         "the value must be a JSON object or YAML mapping");
            return REMS_EINVAL;
        }
        *out = v;
        *verbatim = true;
        return 0;
    }
    rv = yaml_to_json(text, len, &v, yaml_msg);
    if (rv == 0) {
        *out = v;
        *verbatim = false;
        return 0;
    }
    if (rv == REMS_EMALFORMED && looks_like_json(text, len)) {
        rems_errmsgf(errmsg, "invalid JSON at line %d, column %d: %s",
                     jerr.line, jerr.column, jerr.text);
        return rv;
    }
    memcpy(errmsg, yaml_msg, sizeof yaml_msg);
    return rv;
}

/* Read all of @f into @b, which is then NUL-terminated even when empty. */
static int read_all(FILE *f, struct buf *b, char *errmsg)
{
    char chunk[8192];
    size_t n;

    if (buf_append(b, "", 0) != 0) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (n > CTL_MAX_INPUT - b->len) {
            rems_errmsgf(errmsg, "larger than %u MiB", CTL_MAX_INPUT >> 20);
            return REMS_ETOOBIG;
        }
        if (buf_append(b, chunk, n) != 0) {
            rems_errmsg_oom(errmsg);
            return REMS_ENOMEM;
        }
    }
    if (ferror(f)) {
        rems_errmsgf(errmsg, "%s", strerror(errno));
        return REMS_EIO;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Paths and query strings
 * ------------------------------------------------------------------------ */

/* Append @key to @b, each '/'-separated segment percent-encoded. */
static int key_append(struct buf *b, const char *key)
{
    const char *seg = key;
    const char *slash;
    char *esc;
    size_t len;
    int rv;

    for (;;) {
        slash = strchr(seg, '/');
        len = slash != NULL ? (size_t)(slash - seg) : strlen(seg);
        if (len > INT_MAX) {
            return REMS_ENOMEM;
        }
        /* curl_easy_escape() takes a length of 0 to mean strlen(). */
        if (len > 0) {
            esc = curl_easy_escape(NULL, seg, (int)len);
            if (esc == NULL) {
                return REMS_ENOMEM;
            }
            rv = buf_puts(b, esc);
            curl_free(esc);
            if (rv != 0) {
                return rv;
            }
        }
        if (slash == NULL) {
            return 0;
        }
        rv = buf_puts(b, "/");
        if (rv != 0) {
            return rv;
        }
        seg = slash + 1;
    }
}

/* Append "?name=value" or "&name=value", @value percent-encoded; nothing
 * when @value is NULL. */
static int query_add(struct buf *b, const char *name, const char *value)
{
    char *esc;
    int rv;

    if (value == NULL) {
        return 0;
    }
    REMS_ASSERT(b->data != NULL);
    esc = curl_easy_escape(NULL, value, 0);
    if (esc == NULL) {
        return REMS_ENOMEM;
    }
    rv = buf_printf(b, "%c%s=%s", strchr(b->data, '?') != NULL ? '&' : '?',
                    name, esc);
    curl_free(esc);
    return rv;
}

/* ------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------ */

#define TABLE_MAX_COLS 8

struct table {
    size_t ncols;
    size_t ncells; /* Row-major, the header row first. */
    size_t cap;
    char **cells; /* Owned. */
};

static void table_init(struct table *t, size_t ncols)
{
    PRE(ncols > 0 && ncols <= TABLE_MAX_COLS);
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
}

static void table_close(struct table *t)
{
    size_t i;

    for (i = 0; i < t->ncells; i++) {
        rems_free(t->cells[i]);
    }
    rems_free(t->cells);
    t->cells = NULL;
    t->ncells = 0;
    t->cap = 0;
}

/* Add the next cell, a copy of @text with control characters blanked. */
static int table_add(struct table *t, const char *text)
{
    char *copy;

    if (t->ncells == t->cap) {
        size_t cap = t->cap != 0 ? t->cap * 2 : 16;
        char **cells = rems_realloc(t->cells, cap * sizeof *cells);
        if (cells == NULL) {
            return REMS_ENOMEM;
        }
        t->cells = cells;
        t->cap = cap;
    }
    copy = rems_strdup(text);
    if (copy == NULL) {
        return REMS_ENOMEM;
    }
    sanitize(copy);
    t->cells[t->ncells++] = copy;
    return 0;
}

/* Append how a table shows the JSON value @v: strings without quotes,
 * numbers and booleans as in JSON, "-" for missing, null or empty values,
 * containers as compact JSON. */
static int cell_append(struct buf *b, const json_t *v)
{
    if (v == NULL || json_is_null(v) ||
        (json_is_string(v) && json_string_length(v) == 0)) {
        return buf_puts(b, "-");
    }
    if (json_is_string(v)) {
        return buf_append(b, json_string_value(v), json_string_length(v));
    }
    return buf_json(b, v, JSON_COMPACT);
}

static int table_add_json(struct table *t, const json_t *v)
{
    struct buf b = {0};
    int rv;

    rv = cell_append(&b, v);
    if (rv == 0) {
        rv = table_add(t, b.data);
    }
    buf_close(&b);
    return rv;
}

static int table_add_field(struct table *t, const json_t *obj, const char *k)
{
    return table_add_json(t, json_object_get(obj, k));
}

/* Display width of UTF-8 @s: its code points, continuation bytes aside. */
static size_t utf8_width(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80) {
            n++;
        }
    }
    return n;
}

/* Print @t, columns two spaces apart, no space at the end of a line. */
static void table_print(const struct table *t, FILE *out)
{
    size_t widths[TABLE_MAX_COLS] = {0};
    size_t i;
    size_t col;
    size_t w;

    PRE(t->ncells % t->ncols == 0);
    for (i = 0; i < t->ncells; i++) {
        w = utf8_width(t->cells[i]);
        col = i % t->ncols;
        if (w > widths[col]) {
            widths[col] = w;
        }
    }
    for (i = 0; i < t->ncells; i++) {
        col = i % t->ncols;
        fputs(t->cells[i], out);
        if (col + 1 == t->ncols) {
            fputc('\n', out);
            continue;
        }
        for (w = utf8_width(t->cells[i]); w < widths[col] + 2; w++) {
            fputc(' ', out);
        }
    }
}

static int table_headers(struct table *t, const char *const *headers)
{
    size_t i;
    int rv;

    for (i = 0; i < t->ncols; i++) {
        rv = table_add(t, headers[i]);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Rendering answers
 * ------------------------------------------------------------------------ */

/* Print "label:" padded, then @v as a table cell shows it. */
static int field_print(FILE *out, const char *label, const json_t *v)
{
    struct buf b = {0};
    int rv;

    rv = cell_append(&b, v);
    if (rv == 0) {
        sanitize(b.data);
        fprintf(out, "%-15s%s\n", label, b.data);
    }
    buf_close(&b);
    return rv;
}

/* Append "ID (API_ADDRESS)" of a leader object, or "none known". */
static int leader_append(struct buf *b, const json_t *leader)
{
    const json_t *api = json_object_get(leader, "api_address");
    int rv;

    if (!json_is_object(leader)) {
        return buf_puts(b, "none known");
    }
    rv = cell_append(b, json_object_get(leader, "id"));
    if (rv == 0 && json_is_string(api)) {
        rv = buf_printf(b, " (%s)", json_string_value(api));
    }
    return rv;
}

/* The members table of `status` and `member list`; the member whose id is
 * @leader_id gets "(leader)" after its role. */
static int
render_members(FILE *out, const json_t *members, const json_t *leader_id)
{
    static const char *const headers[] = {"ID", "RAFT ADDRESS", "API ADDRESS",
                                          "ROLE"};
    struct table t;
    struct buf role = {0};
    const json_t *m;
    size_t i;
    int rv;

    table_init(&t, 4);
    rv = table_headers(&t, headers);
    json_array_foreach(members, i, m)
    {
        const json_t *id = json_object_get(m, "id");
        if (rv == 0) {
            rv = table_add_field(&t, m, "id");
        }
        if (rv == 0) {
            rv = table_add_field(&t, m, "raft_address");
        }
        if (rv == 0) {
            rv = table_add_field(&t, m, "api_address");
        }
        role.len = 0;
        if (rv == 0) {
            rv = cell_append(&role, json_object_get(m, "role"));
        }
        if (rv == 0 && json_is_integer(id) && json_is_integer(leader_id) &&
            json_integer_value(id) == json_integer_value(leader_id)) {
            rv = buf_puts(&role, " (leader)");
        }
        if (rv == 0) {
            rv = table_add(&t, role.data);
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    buf_close(&role);
    table_close(&t);
    return rv;
}

static int render_status(FILE *out, const json_t *st)
{
    const json_t *leader = json_object_get(st, "leader");
    const json_t *contact = json_object_get(st, "last_contact_ms");
    struct buf b = {0};
    int rv;

    rv = field_print(out, "node id:", json_object_get(st, "node_id"));
    if (rv == 0) {
        rv = field_print(out, "role:", json_object_get(st, "role"));
    }
    if (rv == 0) {
        rv = field_print(out, "term:", json_object_get(st, "term"));
    }
    if (rv == 0) {
        rv = leader_append(&b, leader);
    }
    if (rv == 0) {
        sanitize(b.data);
        fprintf(out, "%-15s%s\n", "leader:", b.data);
        rv = field_print(out,
                         "commit index:", json_object_get(st, "commit_index"));
    }
    if (rv == 0) {
        rv = field_print(
            out, "applied index:", json_object_get(st, "applied_index"));
    }
    if (rv == 0 && json_is_integer(contact)) {
        fprintf(out, "%-15s%" JSON_INTEGER_FORMAT " ms\n",
                "last contact:", json_integer_value(contact));
    }
    if (rv == 0) {
        fputc('\n', out);
        rv = render_members(out, json_object_get(st, "members"),
                            json_object_get(leader, "id"));
    }
    buf_close(&b);
    return rv;
}

static int render_member_list(FILE *out, const json_t *answer)
{
    return render_members(out, json_object_get(answer, "members"),
                          json_object_get(answer, "leader_id"));
}

static int render_policy(FILE *out, const json_t *answer)
{
    const json_t *value = json_object_get(answer, "value");
    int rv;

    rv = field_print(out, "key:", json_object_get(answer, "key"));
    if (rv == 0) {
        rv = field_print(out, "revision:", json_object_get(answer, "revision"));
    }
    if (rv != 0) {
        return rv;
    }
    fprintf(out, "value:\n");
    if (value == NULL ||
        json_dumpf(value, out, JSON_INDENT(2) | JSON_ENCODE_ANY) != 0) {
        fputc('-', out);
    }
    fputc('\n', out);
    return 0;
}

/* "KEY: revision N (created)" or "(updated)". */
static int render_policy_put(FILE *out, const json_t *answer)
{
    struct buf b = {0};
    int rv;

    rv = cell_append(&b, json_object_get(answer, "key"));
    if (rv == 0) {
        rv = buf_puts(&b, ": revision ");
    }
    if (rv == 0) {
        rv = cell_append(&b, json_object_get(answer, "revision"));
    }
    if (rv == 0) {
        rv = buf_puts(&b, json_is_true(json_object_get(answer, "created"))
                              ? " (created)"
                              : " (updated)");
    }
    if (rv == 0) {
        sanitize(b.data);
        fprintf(out, "%s\n", b.data);
    }
    buf_close(&b);
    return rv;
}

/* "deleted KEY at revision N". */
static int render_policy_delete(FILE *out, const json_t *answer)
{
    struct buf b = {0};
    int rv;

    rv = buf_puts(&b, "deleted ");
    if (rv == 0) {
        rv = cell_append(&b, json_object_get(answer, "key"));
    }
    if (rv == 0) {
        rv = buf_puts(&b, " at revision ");
    }
    if (rv == 0) {
        rv = cell_append(&b, json_object_get(answer, "revision"));
    }
    if (rv == 0) {
        sanitize(b.data);
        fprintf(out, "%s\n", b.data);
    }
    buf_close(&b);
    return rv;
}

static int render_policy_list(FILE *out, const json_t *items)
{
    static const char *const headers[] = {"KEY", "REVISION", "MODIFIED"};
    struct table t;
    const json_t *item;
    size_t i;
    int rv;

    table_init(&t, 3);
    rv = table_headers(&t, headers);
    json_array_foreach(items, i, item)
    {
        if (rv == 0) {
            rv = table_add_field(&t, item, "key");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "revision");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "modified_index");
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

static int render_audit(FILE *out, const json_t *answer)
{
    static const char *const headers[] = {"INDEX",  "TYPE", "KEY",
                                          "RESULT", "USER", "REASON"};
    static const char *const fields[] = {"index",  "type",         "key",
                                         "result", "requested_by", "reason"};
    struct table t;
    const json_t *item;
    size_t i;
    size_t k;
    int rv;

    table_init(&t, 6);
    rv = table_headers(&t, headers);
    json_array_foreach(json_object_get(answer, "items"), i, item)
    {
        for (k = 0; k < REMS_ARRAY_SIZE(fields) && rv == 0; k++) {
            rv = table_add_field(&t, item, fields[k]);
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

/* Append @ms, milliseconds since the epoch, as UTC "2026-01-02T03:04:05.678Z";
 * "-" when it is not a positive integer. */
static int time_append(struct buf *b, const json_t *ms)
{
    struct tm tm;
    time_t secs;
    json_int_t v;
    char text[32];

    if (!json_is_integer(ms) || json_integer_value(ms) <= 0) {
        return buf_puts(b, "-");
    }
    v = json_integer_value(ms);
    secs = (time_t)(v / 1000);
    if (gmtime_r(&secs, &tm) == NULL ||
        strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        return buf_printf(b, "%" JSON_INTEGER_FORMAT " ms", v);
    }
    return buf_printf(b, "%s.%03dZ", text, (int)(v % 1000));
}

static int table_add_time(struct table *t, const json_t *ms)
{
    struct buf b = {0};
    int rv;

    rv = time_append(&b, ms);
    if (rv == 0) {
        rv = table_add(t, b.data);
    }
    buf_close(&b);
    return rv;
}

/* Print "label:" padded, then the text of @b. */
static void line_print(FILE *out, const char *label, struct buf *b)
{
    sanitize(b->data);
    fprintf(out, "%-15s%s\n", label, b->data);
}

/* Print "label:" and then @v as indented JSON on the following lines, or
 * "label:" and "-" on one line when it is missing or null. */
static void block_print(FILE *out, const char *label, const json_t *v)
{
    if (v == NULL || json_is_null(v)) {
        fprintf(out, "%-15s-\n", label);
        return;
    }
    fprintf(out, "%s\n", label);
    if (json_dumpf(v, out, JSON_INDENT(2) | JSON_ENCODE_ANY) != 0) {
        fputc('-', out);
    }
    fputc('\n', out);
}

static int render_agent_list(FILE *out, const json_t *items)
{
    static const char *const headers[] = {"ID", "STATE", "NODE", "REASON",
                                          "LABELS"};
    struct table t;
    const json_t *item;
    size_t i;
    int rv;

    table_init(&t, 5);
    rv = table_headers(&t, headers);
    json_array_foreach(items, i, item)
    {
        if (rv == 0) {
            rv = table_add_field(&t, item, "id");
        }
        if (rv == 0) {
            rv = table_add(&t, json_is_true(json_object_get(item, "online"))
                                   ? "online"
                                   : "offline");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "node_id");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "offline_reason");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "labels");
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

/* "ttl 10000 ms, granted at index 12 (TIME) by node 1", or "-". */
static int lease_append(struct buf *b, const json_t *lease)
{
    int rv;

    if (!json_is_object(lease)) {
        return buf_puts(b, "-");
    }
    rv = buf_puts(b, "ttl ");
    if (rv == 0) {
        rv = cell_append(b, json_object_get(lease, "ttl_ms"));
    }
    if (rv == 0) {
        rv = buf_puts(b, " ms, granted at index ");
    }
    if (rv == 0) {
        rv = cell_append(b, json_object_get(lease, "granted_index"));
    }
    if (rv == 0) {
        rv = buf_puts(b, " (");
    }
    if (rv == 0) {
        rv = time_append(b, json_object_get(lease, "granted_ms"));
    }
    if (rv == 0) {
        rv = buf_puts(b, ") by node ");
    }
    if (rv == 0) {
        rv = cell_append(b, json_object_get(lease, "node_id"));
    }
    return rv;
}

/* The leader's view of an agent's link: "connected from PEER, lease N ms
 * left, K commands in flight", "not connected", or "-" when the answering
 * node is not the leader. */
static int live_append(struct buf *b, const json_t *live)
{
    const json_t *left = json_object_get(live, "lease_remaining_ms");
    int rv;

    if (!json_is_object(live)) {
        return buf_puts(b, "-");
    }
    if (!json_is_true(json_object_get(live, "connected"))) {
        rv = buf_puts(b, "not connected");
    } else {
        rv = buf_puts(b, "connected from ");
        if (rv == 0) {
            rv = cell_append(b, json_object_get(live, "peer"));
        }
    }
    if (rv == 0 && json_is_integer(left)) {
        rv = buf_printf(b, ", lease %" JSON_INTEGER_FORMAT " ms left",
                        json_integer_value(left));
    }
    if (rv == 0) {
        rv = buf_puts(b, ", ");
    }
    if (rv == 0) {
        rv = cell_append(b, json_object_get(live, "commands_in_flight"));
    }
    if (rv == 0) {
        rv = buf_puts(b, " commands in flight");
    }
    return rv;
}

static int render_agent(FILE *out, const json_t *answer)
{
    struct buf b = {0};
    int rv;

    rv = field_print(out, "id:", json_object_get(answer, "id"));
    if (rv == 0) {
        rv = field_print(out, "online:", json_object_get(answer, "online"));
    }
    if (rv == 0) {
        rv = field_print(out,
                         "offline:", json_object_get(answer, "offline_reason"));
    }
    if (rv == 0) {
        rv = field_print(out, "node:", json_object_get(answer, "node_id"));
    }
    if (rv == 0) {
        rv = field_print(
            out, "registered:", json_object_get(answer, "registered_index"));
    }
    if (rv == 0) {
        rv = field_print(out,
                         "updated:", json_object_get(answer, "updated_index"));
    }
    if (rv == 0) {
        rv = lease_append(&b, json_object_get(answer, "lease"));
    }
    if (rv == 0) {
        line_print(out, "lease:", &b);
        b.len = 0;
        rv = live_append(&b, json_object_get(answer, "live"));
    }
    if (rv == 0) {
        line_print(out, "link:", &b);
        rv = field_print(out, "labels:", json_object_get(answer, "labels"));
    }
    if (rv == 0) {
        block_print(out, "services:", json_object_get(answer, "services"));
    }
    buf_close(&b);
    return rv;
}

static int render_lease_list(FILE *out, const json_t *answer)
{
    static const char *const headers[] = {"AGENT", "TTL MS", "GRANTED INDEX",
                                          "GRANTED AT", "NODE"};
    struct table t;
    const json_t *item;
    size_t i;
    int rv;

    table_init(&t, 5);
    rv = table_headers(&t, headers);
    json_array_foreach(json_object_get(answer, "items"), i, item)
    {
        if (rv == 0) {
            rv = table_add_field(&t, item, "agent");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "ttl_ms");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "granted_index");
        }
        if (rv == 0) {
            rv = table_add_time(&t, json_object_get(item, "granted_ms"));
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "node_id");
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

static int render_command_list(FILE *out, const json_t *items)
{
    static const char *const headers[] = {"ID",      "AGENT", "ACTION",
                                          "SERVICE", "STATE", "ISSUED",
                                          "USER",    "REASON"};
    static const char *const fields[] = {
        "id",    "agent",        "action",       "service",
        "state", "issued_index", "requested_by", "reason"};
    struct table t;
    const json_t *item;
    size_t i;
    size_t k;
    int rv;

    table_init(&t, 8);
    rv = table_headers(&t, headers);
    json_array_foreach(items, i, item)
    {
        for (k = 0; k < REMS_ARRAY_SIZE(fields) && rv == 0; k++) {
            rv = table_add_field(&t, item, fields[k]);
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

static int render_command(FILE *out, const json_t *answer)
{
    static const char *const fields[][2] = {
        {"id:", "id"},           {"agent:", "agent"}, {"action:", "action"},
        {"service:", "service"}, {"state:", "state"}, {"result:", "result"},
        {"args:", "args"},       {"term:", "term"},
    };
    const json_t *manifest = json_object_get(answer, "manifest");
    struct buf b = {0};
    size_t i;
    int rv = 0;

    for (i = 0; i < REMS_ARRAY_SIZE(fields) && rv == 0; i++) {
        rv = field_print(out, fields[i][0],
                         json_object_get(answer, fields[i][1]));
    }
    if (rv == 0) {
        rv = cell_append(&b, json_object_get(answer, "ttl_ms"));
    }
    if (rv == 0) {
        rv = buf_puts(&b, " ms");
    }
    if (rv == 0) {
        line_print(out, "ttl:", &b);
        b.len = 0;
        rv = buf_puts(&b, "index ");
    }
    if (rv == 0) {
        rv = cell_append(&b, json_object_get(answer, "issued_index"));
    }
    if (rv == 0) {
        rv = buf_puts(&b, ", ");
    }
    if (rv == 0) {
        rv = time_append(&b, json_object_get(answer, "issued_ms"));
    }
    if (rv == 0) {
        line_print(out, "issued:", &b);
        b.len = 0;
        rv = time_append(&b, json_object_get(answer, "deadline_ms"));
    }
    if (rv == 0) {
        line_print(out, "deadline:", &b);
        rv = field_print(
            out, "resolved:", json_object_get(answer, "resolved_index"));
    }
    if (rv == 0) {
        rv = field_print(
            out, "requested by:", json_object_get(answer, "requested_by"));
    }
    if (rv == 0) {
        rv = field_print(out, "reason:", json_object_get(answer, "reason"));
    }
    if (rv == 0) {
        rv = field_print(out, "trace id:", json_object_get(answer, "trace_id"));
    }
    if (rv == 0 && manifest != NULL) {
        block_print(out, "manifest:", manifest);
    }
    buf_close(&b);
    return rv;
}

/* The reconciler's views and records. */

/* Append @v, a level name, without its "reconcile_" prefix. */
static int level_append(struct buf *b, const json_t *v)
{
    const char *s = json_string_value(v);
    if (s != NULL && strncmp(s, "reconcile_", 10) == 0) {
        return buf_puts(b, s + 10);
    }
    return cell_append(b, v);
}

static int table_add_level(struct table *t, const json_t *v)
{
    struct buf b = {0};
    int rv;

    rv = level_append(&b, v);
    if (rv == 0) {
        rv = table_add(t, b.data);
    }
    buf_close(&b);
    return rv;
}

/* The note of a view about stored policies left out. */
static void invalid_print(FILE *out, const json_t *answer)
{
    const json_t *inv = json_object_get(answer, "invalid_policies");
    const json_t *count = json_object_get(inv, "count");
    struct buf b = {0};

    if (!json_is_integer(count) || json_integer_value(count) == 0) {
        return;
    }
    if (buf_printf(&b,
                   "%" JSON_INTEGER_FORMAT
                   " stored policy(ies) do not validate and are left out; "
                   "first ",
                   json_integer_value(count)) == 0 &&
        cell_append(&b, json_object_get(inv, "first_key")) == 0 &&
        buf_puts(&b, ": ") == 0 &&
        cell_append(&b, json_object_get(inv, "first_error")) == 0) {
        sanitize(b.data);
        fprintf(out, "\nnote: %s\n", b.data);
    }
    buf_close(&b);
}

/* "computed at TIME from index N by the leader|by this node". */
static int computed_append(struct buf *b, const json_t *answer)
{
    int rv = time_append(b, json_object_get(answer, "computed_at_ms"));
    if (rv == 0) {
        rv = buf_puts(b, " at index ");
    }
    if (rv == 0) {
        rv = cell_append(b, json_object_get(answer, "index"));
    }
    if (rv == 0) {
        rv = buf_puts(b, json_is_true(json_object_get(answer, "by_leader"))
                             ? ", the leader's pass"
                             : ", a pass of the answering node");
    }
    return rv;
}

/* A table of summaries, @first naming the first column. */
static int render_summaries(FILE *out, const char *first, const json_t *items)
{
    static const char *const states[] = {"nominal", "degraded", "reconciling",
                                         "unstable"};
    const char *headers[] = {first,         "STATE",    "NOMINAL", "DEGRADED",
                             "RECONCILING", "UNSTABLE", "TOTAL"};
    struct table t;
    const json_t *item;
    size_t i;
    size_t k;
    int rv;

    if (json_array_size(items) == 0) {
        return 0;
    }
    table_init(&t, REMS_ARRAY_SIZE(headers));
    rv = table_headers(&t, headers);
    json_array_foreach(items, i, item)
    {
        const json_t *counts = json_object_get(item, "counts");
        if (rv == 0) {
            rv = table_add_field(&t, item, "name");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "state");
        }
        for (k = 0; k < REMS_ARRAY_SIZE(states) && rv == 0; k++) {
            rv = table_add_field(&t, counts, states[k]);
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "total");
        }
    }
    if (rv == 0) {
        fputc('\n', out);
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

static int render_summary(FILE *out, const json_t *answer)
{
    const json_t *cl = json_object_get(answer, "cluster");
    struct buf b = {0};
    int rv;

    rv = cell_append(&b, json_object_get(cl, "state"));
    if (rv == 0) {
        rv = buf_puts(&b, " (");
    }
    if (rv == 0) {
        rv = cell_append(&b, json_object_get(cl, "total"));
    }
    if (rv == 0) {
        rv = buf_puts(&b, " agents)");
    }
    if (rv == 0) {
        line_print(out, "cluster:", &b);
        fprintf(out, "%-15s%s\n", "reconciler:",
                json_is_true(json_object_get(answer, "paused")) ? "paused"
                                                                : "running");
        b.len = 0;
        rv = computed_append(&b, answer);
    }
    if (rv == 0) {
        line_print(out, "computed:", &b);
        rv = render_summaries(out, "SITE", json_object_get(answer, "sites"));
    }
    if (rv == 0) {
        rv = render_summaries(out, "AGENT", json_object_get(answer, "agents"));
    }
    if (rv == 0) {
        rv = render_summaries(out, "SERVICE",
                              json_object_get(answer, "services"));
    }
    if (rv == 0) {
        invalid_print(out, answer);
    }
    buf_close(&b);
    return rv;
}

/* The drifts of @items: who, what, how urgent, what to do and why. */
static int render_drift_table(FILE *out, const json_t *items, bool kind)
{
    static const char *const with_kind[] = {
        "AGENT", "SERVICE", "KIND", "LEVEL", "ACTION", "POLICY", "REASON"};
    static const char *const without_kind[] = {"AGENT",  "SERVICE", "LEVEL",
                                               "ACTION", "POLICY",  "REASON"};
    struct table t;
    const json_t *item;
    size_t i;
    int rv;

    table_init(&t, kind ? REMS_ARRAY_SIZE(with_kind)
                        : REMS_ARRAY_SIZE(without_kind));
    rv = table_headers(&t, kind ? with_kind : without_kind);
    json_array_foreach(items, i, item)
    {
        if (rv == 0) {
            rv = table_add_field(&t, item, "agent");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "service");
        }
        if (rv == 0 && kind) {
            rv = table_add_field(&t, item, "kind");
        }
        if (rv == 0) {
            rv = table_add_level(&t, json_object_get(item, "level"));
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "action");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "policy");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "reason");
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

static void computed_print(FILE *out, const json_t *answer)
{
    struct buf b = {0};
    if (computed_append(&b, answer) == 0) {
        sanitize(b.data);
        fprintf(out, "\n(computed %s)\n", b.data);
    }
    buf_close(&b);
}

static int render_drift(FILE *out, const json_t *answer)
{
    const json_t *items = json_object_get(answer, "items");
    int rv = 0;

    if (json_array_size(items) == 0) {
        fprintf(out, "no drift\n");
    } else {
        rv = render_drift_table(out, items, true);
    }
    if (rv == 0) {
        computed_print(out, answer);
        invalid_print(out, answer);
    }
    return rv;
}

/* A section of `recommendations`: @title, then a table of the @n @fields
 * of each item of @items (levels shortened); nothing when it is empty. */
static int render_section(FILE *out,
                          const char *title,
                          const json_t *items,
                          const char *const *headers,
                          const char *const *fields,
                          size_t n)
{
    struct table t;
    const json_t *item;
    size_t i;
    size_t k;
    int rv;

    if (json_array_size(items) == 0) {
        return 0;
    }
    table_init(&t, n);
    rv = table_headers(&t, headers);
    json_array_foreach(items, i, item)
    {
        for (k = 0; k < n && rv == 0; k++) {
            rv = table_add_field(&t, item, fields[k]);
        }
    }
    if (rv == 0) {
        fprintf(out, "\n%s\n", title);
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

static int render_recommendations(FILE *out, const json_t *answer)
{
    static const char *const action_headers[] = {"AGENT", "SERVICE", "ACTION",
                                                 "POLICY", "REASON"};
    static const char *const action_fields[] = {"agent", "service", "action",
                                                "policy", "reason"};
    static const char *const hold_headers[] = {"AGENT", "SERVICE", "ACTION",
                                               "GUARDRAIL", "DETAIL"};
    static const char *const hold_fields[] = {"agent", "service", "action",
                                              "guardrail", "detail"};
    static const char *const conflict_headers[] = {"AGENT", "SERVICE", "POLICY",
                                                   "SHADOWED"};
    static const char *const conflict_fields[] = {"agent", "service", "policy",
                                                  "shadowed"};
    const json_t *items = json_object_get(answer, "items");
    int rv = 0;

    if (json_array_size(items) == 0) {
        fprintf(out, "nothing to do\n");
    } else {
        rv = render_drift_table(out, items, false);
    }
    if (rv == 0) {
        rv = render_section(out, "Issued by the leader (mode auto):",
                            json_object_get(answer, "actions"), action_headers,
                            action_fields, REMS_ARRAY_SIZE(action_fields));
    }
    if (rv == 0) {
        rv = render_section(
            out, "Held back by a guardrail:", json_object_get(answer, "holds"),
            hold_headers, hold_fields, REMS_ARRAY_SIZE(hold_fields));
    }
    if (rv == 0) {
        rv = render_section(out, "Placement conflicts (POLICY wins):",
                            json_object_get(answer, "conflicts"),
                            conflict_headers, conflict_fields,
                            REMS_ARRAY_SIZE(conflict_fields));
    }
    if (rv == 0) {
        computed_print(out, answer);
        invalid_print(out, answer);
    }
    return rv;
}

static int render_incident_list(FILE *out, const json_t *items)
{
    static const char *const headers[] = {
        "ID", "STATE", "AGENT", "SERVICE", "KIND", "ATTEMPTS", "OPENED"};
    struct table t;
    const json_t *item;
    size_t i;
    int rv;

    table_init(&t, REMS_ARRAY_SIZE(headers));
    rv = table_headers(&t, headers);
    json_array_foreach(items, i, item)
    {
        if (rv == 0) {
            rv = table_add_field(&t, item, "id");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "state");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "agent");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "service");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "kind");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "attempts");
        }
        if (rv == 0) {
            rv = table_add_time(
                &t,
                json_object_get(json_object_get(item, "opened"), "time_ms"));
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

/* "index N, TIME, by WHO: WHY" of an incident's step, "-" when none. */
static int step_append(struct buf *b, const json_t *step)
{
    const json_t *why = json_object_get(step, "reason");
    int rv;

    if (!json_is_object(step)) {
        return buf_puts(b, "-");
    }
    rv = buf_puts(b, "index ");
    if (rv == 0) {
        rv = cell_append(b, json_object_get(step, "index"));
    }
    if (rv == 0) {
        rv = buf_puts(b, ", ");
    }
    if (rv == 0) {
        rv = time_append(b, json_object_get(step, "time_ms"));
    }
    if (rv == 0) {
        rv = buf_puts(b, ", by ");
    }
    if (rv == 0) {
        rv = cell_append(b, json_object_get(step, "by"));
    }
    if (rv == 0 && json_string_length(why) > 0) {
        rv = buf_puts(b, ": ");
        if (rv == 0) {
            rv = cell_append(b, why);
        }
    }
    return rv;
}

static int render_incident(FILE *out, const json_t *answer)
{
    static const char *const fields[][2] = {
        {"id:", "id"},
        {"state:", "state"},
        {"agent:", "agent"},
        {"service:", "service"},
        {"kind:", "kind"},
        {"policy:", "policy"},
        {"attempts:", "attempts"},
        {"detail:", "detail"},
    };
    static const char *const steps[][2] = {
        {"opened:", "opened"},
        {"acknowledged:", "acknowledged"},
        {"resolved:", "resolved"},
    };
    struct buf b = {0};
    size_t i;
    int rv = 0;

    for (i = 0; i < REMS_ARRAY_SIZE(fields) && rv == 0; i++) {
        rv = field_print(out, fields[i][0],
                         json_object_get(answer, fields[i][1]));
    }
    for (i = 0; i < REMS_ARRAY_SIZE(steps) && rv == 0; i++) {
        b.len = 0;
        rv = step_append(&b, json_object_get(answer, steps[i][1]));
        if (rv == 0) {
            line_print(out, steps[i][0], &b);
        }
    }
    buf_close(&b);
    return rv;
}

/* "until TIME" of an override, or "until cleared". */
static int until_append(struct buf *b, const json_t *until)
{
    if (!json_is_integer(until)) {
        return buf_puts(b, "until cleared");
    }
    return buf_puts(b, "until ") == 0 ? time_append(b, until) : REMS_ENOMEM;
}

static int render_override_list(FILE *out, const json_t *answer)
{
    static const char *const headers[] = {"SCOPE",  "NAME", "AGENT", "UNTIL",
                                          "ACTIVE", "USER", "REASON"};
    const json_t *items = json_object_get(answer, "items");
    struct table t;
    const json_t *item;
    size_t i;
    int rv;

    table_init(&t, REMS_ARRAY_SIZE(headers));
    rv = table_headers(&t, headers);
    json_array_foreach(items, i, item)
    {
        if (rv == 0) {
            rv = table_add_field(&t, item, "scope");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "name");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "agent");
        }
        if (rv == 0) {
            rv = table_add_time(&t, json_object_get(item, "until_ms"));
        }
        if (rv == 0) {
            rv = table_add(&t, json_is_false(json_object_get(item, "active"))
                                   ? "no (ended)"
                                   : "yes");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "requested_by");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "reason");
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

/* One line for an override set or cleared: "service web frozen on agent
 * edge-1 until ...", "agent edge-2 unfrozen", "reconciler paused". */
static int render_override_change(FILE *out, const json_t *answer)
{
    const json_t *scope = json_object_get(answer, "scope");
    const json_t *agent = json_object_get(answer, "agent");
    bool cleared = json_is_true(json_object_get(answer, "cleared"));
    struct buf b = {0};
    int rv;

    if (json_is_boolean(json_object_get(answer, "paused"))) {
        fprintf(out, "reconciler %s\n",
                json_is_true(json_object_get(answer, "paused")) ? "paused"
                                                                : "resumed");
        return 0;
    }
    rv = cell_append(&b, scope);
    if (rv == 0) {
        rv = buf_puts(&b, " ");
    }
    if (rv == 0) {
        rv = cell_append(&b, json_object_get(answer, "name"));
    }
    if (rv == 0) {
        rv = buf_puts(&b, cleared ? " unfrozen" : " frozen");
    }
    if (rv == 0 && json_is_string(agent)) {
        rv = buf_puts(&b, " on agent ");
        if (rv == 0) {
            rv = cell_append(&b, agent);
        }
    }
    if (rv == 0 && !cleared) {
        rv = buf_puts(&b, " ");
        if (rv == 0) {
            rv = until_append(&b, json_object_get(answer, "until_ms"));
        }
    }
    if (rv == 0) {
        sanitize(b.data);
        fprintf(out, "%s\n", b.data);
    }
    buf_close(&b);
    return rv;
}

/* When a window is open: "weekly mon,sat 22:30 UTC for 240 min" or
 * "TIME to TIME". */
static int when_append(struct buf *b, const json_t *w)
{
    const json_t *wk = json_object_get(w, "weekly");
    const json_t *day;
    size_t i;
    int rv;

    if (!json_is_object(wk)) {
        rv = time_append(b, json_object_get(w, "start_ms"));
        if (rv == 0) {
            rv = buf_puts(b, " to ");
        }
        return rv == 0 ? time_append(b, json_object_get(w, "end_ms")) : rv;
    }
    rv = buf_puts(b, "weekly ");
    json_array_foreach(json_object_get(wk, "days"), i, day)
    {
        if (rv == 0 && i > 0) {
            rv = buf_puts(b, ",");
        }
        if (rv == 0) {
            rv = cell_append(b, day);
        }
    }
    if (rv == 0) {
        rv = buf_puts(b, " ");
    }
    if (rv == 0) {
        rv = cell_append(b, json_object_get(wk, "start"));
    }
    if (rv == 0) {
        rv = buf_puts(b, " UTC for ");
    }
    if (rv == 0) {
        rv = cell_append(b, json_object_get(wk, "duration_minutes"));
    }
    return rv == 0 ? buf_puts(b, " min") : rv;
}

static int render_window_list(FILE *out, const json_t *items)
{
    static const char *const headers[] = {"NAME", "SCOPE", "TARGET",
                                          "MODE", "WHEN",  "OPEN"};
    struct table t;
    struct buf b = {0};
    const json_t *item;
    size_t i;
    int rv;

    table_init(&t, REMS_ARRAY_SIZE(headers));
    rv = table_headers(&t, headers);
    json_array_foreach(items, i, item)
    {
        if (rv == 0) {
            rv = table_add_field(&t, item, "name");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "scope");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "target");
        }
        if (rv == 0) {
            rv = table_add_field(&t, item, "mode");
        }
        if (rv == 0) {
            b.len = 0;
            rv = when_append(&b, item);
        }
        if (rv == 0) {
            rv = table_add(&t, b.data);
        }
        if (rv == 0) {
            rv = table_add(
                &t, json_is_true(json_object_get(item, "open")) ? "yes" : "no");
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    buf_close(&b);
    table_close(&t);
    return rv;
}

static int render_window(FILE *out, const json_t *answer)
{
    static const char *const fields[][2] = {
        {"name:", "name"},
        {"scope:", "scope"},
        {"target:", "target"},
        {"mode:", "mode"},
    };
    struct buf b = {0};
    size_t i;
    int rv = 0;

    for (i = 0; i < REMS_ARRAY_SIZE(fields) && rv == 0; i++) {
        rv = field_print(out, fields[i][0],
                         json_object_get(answer, fields[i][1]));
    }
    if (rv == 0) {
        rv = when_append(&b, answer);
    }
    if (rv == 0) {
        line_print(out, "when:", &b);
        fprintf(out, "%-15s%s\n", "open now:",
                json_is_true(json_object_get(answer, "open")) ? "yes" : "no");
        rv = field_print(out,
                         "set at index:", json_object_get(answer, "set_index"));
    }
    if (rv == 0) {
        rv = field_print(
            out, "requested by:", json_object_get(answer, "requested_by"));
    }
    if (rv == 0) {
        rv = field_print(out, "reason:", json_object_get(answer, "reason"));
    }
    buf_close(&b);
    return rv;
}

static int render_rollout_list(FILE *out, const json_t *items)
{
    static const char *const headers[] = {"KEY",     "STATE",  "STAGE",
                                          "BATCH",   "REACHED", "REVISION",
                                          "MESSAGE"};
    static const char *const keys[] = {"key",        "state",
                                       "stage",      "batch",
                                       "n_reached",  "target_revision",
                                       "message"};
    struct table t;
    const json_t *item;
    size_t i;
    size_t k;
    int rv;

    table_init(&t, REMS_ARRAY_SIZE(headers));
    rv = table_headers(&t, headers);
    json_array_foreach(items, i, item)
    {
        for (k = 0; k < REMS_ARRAY_SIZE(keys) && rv == 0; k++) {
            rv = table_add_field(&t, item, keys[k]);
        }
    }
    if (rv == 0) {
        table_print(&t, out);
    }
    table_close(&t);
    return rv;
}

static int render_rollout(FILE *out, const json_t *answer)
{
    static const char *const fields[][2] = {
        {"key:", "key"},
        {"state:", "state"},
        {"stage:", "stage"},
        {"batch:", "batch"},
        {"revision:", "target_revision"},
        {"previous:", "previous_revision"},
        {"reached:", "reached"},
        {"started:", "started_ms"},
        {"stage since:", "stage_started_ms"},
        {"finished:", "finished_ms"},
        {"message:", "message"},
        {"requested by:", "requested_by"},
        {"rollback rev:", "rollback_revision"},
    };
    size_t i;
    int rv = 0;

    for (i = 0; i < REMS_ARRAY_SIZE(fields) && rv == 0; i++) {
        rv = field_print(out, fields[i][0],
                         json_object_get(answer, fields[i][1]));
    }
    if (rv == 0 && json_object_get(answer, "target") != NULL) {
        rv = field_print(out, "target:", json_object_get(answer, "target"));
    }
    if (rv == 0 && json_object_get(answer, "previous") != NULL) {
        rv = field_print(out, "previous doc:",
                         json_object_get(answer, "previous"));
    }
    return rv;
}

static int render_window_delete(FILE *out, const json_t *answer)
{
    struct buf b = {0};
    int rv = cell_append(&b, json_object_get(answer, "name"));
    if (rv == 0) {
        sanitize(b.data);
        fprintf(out, "deleted window %s\n", b.data);
    }
    buf_close(&b);
    return rv;
}

/* One line for a membership change. Only `member transfer` reads the answer
 * (for the new leader); the others say what was asked, which the 2xx
 * status confirmed. */
static int
render_member_change(FILE *out, const struct ctl_args *a, const json_t *answer)
{
    const json_t *leader = json_object_get(answer, "leader");
    const json_t *id = json_object_get(leader, "id");
    struct buf b = {0};
    int rv;

    switch (a->cmd->id) {
        case CMD_MEMBER_ADD:
            fprintf(out, "added member %s as %s\n", a->args[0],
                    a->role != NULL ? a->role : "voter");
            return 0;
        case CMD_MEMBER_REMOVE:
            fprintf(out, "removed member %s\n", a->args[0]);
            return 0;
        case CMD_MEMBER_PROMOTE:
            fprintf(out, "member %s is now a %s\n", a->args[0],
                    a->role != NULL ? a->role : "voter");
            return 0;
        default:
            break;
    }
    /* docs/api.md: the answer names the new leader; accept it as a leader
     * object, as leader_id or as id. */
    if (id == NULL) {
        id = json_object_get(answer, "leader_id");
    }
    if (id == NULL) {
        id = json_object_get(answer, "id");
    }
    if (!json_is_integer(id)) {
        fprintf(out, "leadership transferred\n");
        return 0;
    }
    rv =
        buf_printf(&b, "leadership transferred to member %" JSON_INTEGER_FORMAT,
                   json_integer_value(id));
    if (rv == 0 && json_is_string(json_object_get(leader, "api_address"))) {
        rv = buf_printf(
            &b, " (%s)",
            json_string_value(json_object_get(leader, "api_address")));
    }
    if (rv == 0) {
        sanitize(b.data);
        fprintf(out, "%s\n", b.data);
    }
    buf_close(&b);
    return rv;
}

/* Format an error answer as "STATUS CODE: MESSAGE (field: FIELD)"; for an
 * answer without a rems error body, quote the start of the body. */
static void api_error_format(long status,
                             const json_t *answer,
                             const char *raw,
                             size_t raw_len,
                             char *out,
                             size_t size)
{
    const json_t *e = json_object_get(answer, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *message = json_string_value(json_object_get(e, "message"));
    const char *field = json_string_value(json_object_get(e, "field"));
    char snippet[121];
    size_t n;

    if (code != NULL) {
        snprintf(out, size, "%ld %s: %s%s%s%s", status, code,
                 message != NULL ? message : "(no message)",
                 field != NULL && field[0] != '\0' ? " (field: " : "",
                 field != NULL && field[0] != '\0' ? field : "",
                 field != NULL && field[0] != '\0' ? ")" : "");
        sanitize(out);
        return;
    }
    n = raw_len < sizeof snippet - 1 ? raw_len : sizeof snippet - 1;
    if (n > 0) {
        memcpy(snippet, raw, n);
    }
    snippet[n] = '\0';
    sanitize(snippet);
    while (n > 0 && snippet[n - 1] == ' ') {
        snippet[--n] = '\0';
    }
    snprintf(out, size, "%ld unexpected answer: %s", status,
             n > 0 ? snippet : "(empty body)");
}

/* ------------------------------------------------------------------------
 * HTTP calls
 * ------------------------------------------------------------------------ */

struct ctl_env {
    const char *endpoints; /* $REMS_ENDPOINTS, or NULL. */
    const char *user;      /* $USER, or NULL. */
    FILE *in;
    FILE *out;
    FILE *err;
};

struct ctl {
    const struct ctl_args *args;
    const struct ctl_env *env;
    CURL *curl;
    size_t current; /* The endpoint to try first. */
    char request_id[CTL_REQUEST_ID_SIZE];
    char curl_errbuf[CURL_ERROR_SIZE];
};

struct call {
    const char *method;
    const char *path; /* Query string included. */
    const char *body; /* NULL: none. */
    size_t body_len;
};

struct reply {
    long status;
    struct buf body;
    bool oom;     /* The body did not fit in memory. */
    json_t *json; /* The body parsed, or NULL. */
    const char *endpoint;
};

static void reply_close(struct reply *r)
{
    buf_close(&r->body);
    json_decref(r->json);
    r->json = NULL;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *data)
{
    struct reply *r = data;
    size_t n = size * nmemb;

    if (buf_append(&r->body, ptr, n) != 0) {
        r->oom = true;
        return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR. */
    }
    return n;
}

static int
ctl_open(struct ctl *c, const struct ctl_args *a, const struct ctl_env *env)
{
    CURLcode cc;

    memset(c, 0, sizeof *c);
    c->args = a;
    c->env = env;
    if (a->request_id != NULL) {
        snprintf(c->request_id, sizeof c->request_id, "%s", a->request_id);
    } else {
        rems_id_random(c->request_id);
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        return REMS_ENOMEM;
    }
    /* No signals (timeouts are ours to enforce without SIGALRM), no
     * redirects, plain HTTP only, and the path exactly as built: without
     * PATH_AS_IS libcurl would resolve "." and ".." segments of a key. */
    cc = curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
    }
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http");
    }
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_PATH_AS_IS, 1L);
    }
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, a->timeout_ms);
    }
    /* A node that does not answer SYNs should not eat all of the timeout
     * before the next endpoint gets its turn. */
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS,
                              a->timeout_ms < CTL_CONNECT_TIMEOUT_MS
                                  ? a->timeout_ms
                                  : CTL_CONNECT_TIMEOUT_MS);
    }
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_USERAGENT,
                              "remsctl/" REMS_VERSION);
    }
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, write_cb);
    }
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curl_errbuf);
    }
    if (cc != CURLE_OK) {
        curl_easy_cleanup(c->curl);
        c->curl = NULL;
        return REMS_ENOMEM;
    }
    return 0;
}

static void ctl_close(struct ctl *c)
{
    if (c->curl != NULL) {
        curl_easy_cleanup(c->curl);
        c->curl = NULL;
    }
}

static int
header_add(struct curl_slist **list, const char *name, const char *value)
{
    struct buf line = {0};
    struct curl_slist *l;
    int rv;

    /* "Name:" with nothing after the colon removes a header that libcurl
     * would add itself. */
    rv = value != NULL ? buf_printf(&line, "%s: %s", name, value)
                       : buf_printf(&line, "%s:", name);
    if (rv != 0) {
        return rv;
    }
    l = curl_slist_append(*list, line.data);
    buf_close(&line);
    if (l == NULL) {
        return REMS_ENOMEM;
    }
    *list = l;
    return 0;
}

static int call_headers(const struct ctl *c,
                        const struct call *call,
                        struct curl_slist **list)
{
    const struct ctl_args *a = c->args;
    char rev[32];
    int rv;

    /* "Expect:" stops libcurl from waiting for a "100 Continue" before
     * sending a large body. */
    rv = header_add(list, "Accept", "application/json");
    if (rv == 0) {
        rv = header_add(list, "Expect", NULL);
    }
    if (rv == 0 && call->body != NULL) {
        rv = header_add(list, "Content-Type", "application/json");
    }
    if (strcmp(call->method, "GET") == 0) {
        return rv;
    }
    /* An empty --user or --reason sends no header: the server's default
     * applies. */
    if (rv == 0 && a->user[0] != '\0') {
        rv = header_add(list, "X-Rems-User", a->user);
    }
    if (rv == 0 && a->reason != NULL && a->reason[0] != '\0') {
        rv = header_add(list, "X-Rems-Reason", a->reason);
    }
    if (rv == 0) {
        rv = header_add(list, "X-Rems-Request-Id", c->request_id);
    }
    if (rv == 0 && a->has_if_match) {
        snprintf(rev, sizeof rev, "%llu", (unsigned long long)a->if_match);
        rv = header_add(list, "If-Match", rev);
    }
    return rv;
}

static CURLcode call_setopts(struct ctl *c,
                             const struct call *call,
                             const char *url,
                             struct curl_slist *headers,
                             struct reply *r)
{
    bool get = strcmp(call->method, "GET") == 0;
    CURLcode cc;

    cc = curl_easy_setopt(c->curl, CURLOPT_URL, url);
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
    }
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, r);
    }
    if (cc == CURLE_OK && call->body != NULL) {
        cc = curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                              (curl_off_t)call->body_len);
        if (cc == CURLE_OK) {
            cc = curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, call->body);
        }
    } else if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    }
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST,
                              get ? NULL : call->method);
    }
    return cc;
}

/* Make @call on the first endpoint that answers. Returns 0 with the answer
 * in @r (any status), else an exit code after printing why. */
static int ctl_call(struct ctl *c, const struct call *call, struct reply *r)
{
    const struct ctl_args *a = c->args;
    struct curl_slist *headers = NULL;
    struct buf url = {0};
    struct buf tried = {0};
    char last_error[CURL_ERROR_SIZE] = "no endpoint";
    size_t i;
    int rv;

    memset(r, 0, sizeof *r);
    rv = call_headers(c, call, &headers);
    for (i = 0; i < a->nendpoints && rv == 0; i++) {
        size_t k = (c->current + i) % a->nendpoints;
        const char *ep = a->endpoint[k];
        CURLcode cc;

        url.len = 0;
        rv = buf_printf(&url, "http://%s%s", ep, call->path);
        if (rv == 0) {
            rv = buf_printf(&tried, "%s%s", i > 0 ? ", " : "", ep);
        }
        if (rv != 0) {
            break;
        }
        r->body.len = 0;
        c->curl_errbuf[0] = '\0';
        cc = call_setopts(c, call, url.data, headers, r);
        if (cc == CURLE_OK) {
            cc = curl_easy_perform(c->curl);
        }
        if (r->oom || cc == CURLE_OUT_OF_MEMORY) {
            rv = REMS_ENOMEM;
            break;
        }
        if (cc == CURLE_OK) {
            curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
            c->current = k;
            r->endpoint = ep;
            if (r->body.len > 0) {
                r->json = json_loadb(r->body.data, r->body.len, 0, NULL);
            }
            goto out;
        }
        snprintf(last_error, sizeof last_error, "%s",
                 c->curl_errbuf[0] != '\0' ? c->curl_errbuf
                                           : curl_easy_strerror(cc));
    }
    if (rv != 0) {
        fprintf(c->env->err, "remsctl: out of memory\n");
        rv = CTL_EXIT_FAILED;
        goto out;
    }
    fprintf(c->env->err, "remsctl: no endpoint reachable (tried %s): %s\n",
            tried.data, last_error);
    rv = CTL_EXIT_UNREACHABLE;

out:
    /* The handle keeps pointers to these; clear them before freeing. */
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    buf_close(&url);
    buf_close(&tried);
    if (rv != 0) {
        reply_close(r);
    }
    return rv;
}

static int oom_exit(struct ctl *c)
{
    fprintf(c->env->err, "remsctl: out of memory\n");
    return CTL_EXIT_FAILED;
}

/* Print why a call failed, when it did. Returns 0 for a 2xx answer with a
 * JSON object body (then in r->json; an empty body counts as {}), else an
 * exit code. */
static int reply_check(struct ctl *c, const struct call *call, struct reply *r)
{
    struct curl_header *h;
    const char *code;
    char msg[1024];
    bool is_write = strcmp(call->method, "GET") != 0;

    if (r->status >= 200 && r->status < 300) {
        if (json_is_object(r->json)) {
            return 0;
        }
        /* docs/api.md gives no body for some membership answers: an empty
         * one stands for {}. */
        if (r->body.len == 0) {
            r->json = json_object();
            if (r->json == NULL) {
                return oom_exit(c);
            }
            return 0;
        }
        fprintf(c->env->err,
                "remsctl: %s answered %ld without a JSON object body\n",
                r->endpoint, r->status);
        return CTL_EXIT_FAILED;
    }
    api_error_format(r->status, r->json, r->body.data, r->body.len, msg,
                     sizeof msg);
    fprintf(c->env->err, "remsctl: %s\n", msg);
    code = json_string_value(
        json_object_get(json_object_get(r->json, "error"), "code"));
    if (is_write && code != NULL &&
        (strcmp(code, "unavailable") == 0 || strcmp(code, "timeout") == 0)) {
        fprintf(c->env->err,
                "remsctl: the outcome of the write is unknown; retry it with "
                "--request-id %s\n",
                c->request_id);
    } else if (r->status == 503 &&
               curl_easy_header(c->curl, "Retry-After", 0, CURLH_HEADER, -1,
                                &h) == CURLHE_OK) {
        fprintf(c->env->err, "remsctl: retry after %s s\n", h->value);
    }
    return CTL_EXIT_FAILED;
}

/* Make @call and check the answer; on success *@out owns its JSON object. */
static int ctl_fetch(struct ctl *c, const struct call *call, json_t **out)
{
    struct reply r;
    int rv;

    rv = ctl_call(c, call, &r);
    if (rv != 0) {
        return rv;
    }
    rv = reply_check(c, call, &r);
    if (rv == 0) {
        *out = json_incref(r.json);
    }
    reply_close(&r);
    return rv;
}

static int print_json(struct ctl *c, const json_t *v)
{
    if (json_dumpf(v, c->env->out, JSON_INDENT(2)) != 0) {
        fprintf(c->env->err, "remsctl: cannot print the answer\n");
        return CTL_EXIT_FAILED;
    }
    fputc('\n', c->env->out);
    return CTL_EXIT_OK;
}

/* Print @answer as JSON, or render it as a table. */
static int output(struct ctl *c,
                  const json_t *answer,
                  int (*render)(FILE *out, const json_t *answer))
{
    if (c->args->json) {
        return print_json(c, answer);
    }
    if (render(c->env->out, answer) != 0) {
        return oom_exit(c);
    }
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------------
 * Command handlers
 * ------------------------------------------------------------------------ */

/* GET @path and show the answer with @render. */
static int run_get(struct ctl *c,
                   const char *path,
                   int (*render)(FILE *out, const json_t *answer))
{
    struct call call = {.method = "GET", .path = path};
    json_t *answer = NULL;
    int rv;

    rv = ctl_fetch(c, &call, &answer);
    if (rv == 0) {
        rv = output(c, answer, render);
    }
    json_decref(answer);
    return rv;
}

/* Send @method @path with the JSON body @body (may be NULL); on success
 * *@out owns the answer. */
static int run_write(struct ctl *c,
                     const char *method,
                     const char *path,
                     const json_t *body,
                     json_t **out)
{
    struct call call = {.method = method, .path = path};
    struct buf text = {0};
    int rv;

    if (body != NULL) {
        if (buf_json(&text, body, JSON_COMPACT) != 0) {
            return oom_exit(c);
        }
        call.body = text.data;
        call.body_len = text.len;
    }
    rv = ctl_fetch(c, &call, out);
    buf_close(&text);
    return rv;
}

static int run_member(struct ctl *c)
{
    const struct ctl_args *a = c->args;
    const char *role = a->role != NULL ? a->role : "voter";
    struct buf path = {0};
    json_t *body = NULL;
    json_t *answer = NULL;
    const char *method = "POST";
    json_int_t id = 0;
    int rv = 0;

    if (a->nargs > 0) {
        bool valid = member_id_parse(a->args[0], &id);
        REMS_ASSERT(valid); /* ctl_parse() checked it. */
    }
    switch (a->cmd->id) {
        case CMD_MEMBER_ADD:
            rv = buf_puts(&path, "/v1/members");
            body =
                json_pack("{s:I,s:s,s:s,s:s}", "id", id, "raft_address",
                          a->args[1], "api_address", a->args[2], "role", role);
            break;
        case CMD_MEMBER_REMOVE:
            method = "DELETE";
            rv = buf_printf(&path, "/v1/members/%" JSON_INTEGER_FORMAT, id);
            break;
        case CMD_MEMBER_PROMOTE:
            rv = buf_printf(&path, "/v1/members/%" JSON_INTEGER_FORMAT "/role",
                            id);
            body = json_pack("{s:s}", "role", role);
            break;
        default:
            rv = buf_puts(&path, "/v1/leadership/transfer");
            body = a->nargs > 0 ? json_pack("{s:I}", "id", id) : json_object();
            break;
    }
    if (rv != 0 || (body == NULL && a->cmd->id != CMD_MEMBER_REMOVE)) {
        rv = oom_exit(c);
        goto out;
    }
    rv = run_write(c, method, path.data, body, &answer);
    if (rv != 0) {
        goto out;
    }
    if (a->json) {
        rv = print_json(c, answer);
    } else if (render_member_change(c->env->out, a, answer) != 0) {
        rv = oom_exit(c);
    }

out:
    json_decref(answer);
    json_decref(body);
    buf_close(&path);
    return rv;
}

static int policy_path(struct buf *path, const char *key, bool stale)
{
    int rv;

    rv = buf_puts(path, "/v1/policies/");
    if (rv == 0) {
        rv = key_append(path, key);
    }
    if (rv == 0 && stale) {
        rv = query_add(path, "consistency", "stale");
    }
    return rv;
}

static int run_policy_get(struct ctl *c)
{
    struct buf path = {0};
    int rv;

    if (policy_path(&path, c->args->args[0], c->args->stale) != 0) {
        rv = oom_exit(c);
    } else {
        rv = run_get(c, path.data, render_policy);
    }
    buf_close(&path);
    return rv;
}

/* Read @file, or standard input when it is NULL or "-": the value of
 * `policy put` or the manifest of `command issue` (@what, for the hint
 * shown on a terminal). */
static int
read_input(struct ctl *c, const char *file, const char *what, struct buf *text)
{
    const char *cmd = c->args->cmd->path;
    bool use_stdin = file == NULL || strcmp(file, "-") == 0;
    const char *source = use_stdin ? "standard input" : file;
    char errmsg[REMS_ERRMSG_SIZE];
    FILE *f = c->env->in;
    int rv;

    if (!use_stdin) {
        f = fopen(file, "rb");
        if (f == NULL) {
            fprintf(c->env->err, "remsctl: %s: %s: %s\n", cmd, file,
                    strerror(errno));
            return CTL_EXIT_USAGE;
        }
    } else if (isatty(fileno(f))) {
        fprintf(c->env->err,
                "remsctl: reading %s from standard input (end it with "
                "Ctrl-D)\n",
                what);
    }
    rv = read_all(f, text, errmsg);
    if (!use_stdin) {
        fclose(f);
    }
    if (rv == REMS_ENOMEM) {
        return oom_exit(c);
    }
    if (rv != 0) {
        fprintf(c->env->err, "remsctl: %s: %s: %s\n", cmd, source, errmsg);
        return CTL_EXIT_USAGE;
    }
    return 0;
}

/* True when @file's name ends in @ext. */
static bool has_ext(const char *file, const char *ext)
{
    size_t n = strlen(file);
    size_t e = strlen(ext);
    return n > e && strcmp(file + n - e, ext) == 0;
}

/* A policy document of @file (@text, @len bytes) as JSON text for
 * policy_parse_json() and the server: JSON as written, YAML converted as
 * the server converts it (agent_yaml_to_json(), which keeps command, env
 * and depends_on strings). YAML by the extension .yaml or .yml, JSON by
 * .json, else JSON when the text parses as JSON. On success *@json points
 * to @text or into @yaml. Returns 0, REMS_EINVAL (not an object),
 * REMS_EMALFORMED (@errmsg says where) or REMS_ENOMEM. */
static int policy_text(const char *file,
                       const char *text,
                       size_t len,
                       struct rems_buf *yaml,
                       const char **json,
                       size_t *json_len,
                       char *errmsg)
{
    bool by_name = file != NULL && strcmp(file, "-") != 0;
    bool is_yaml = by_name && (has_ext(file, ".yaml") || has_ext(file, ".yml"));
    json_error_t jerr;
    json_t *v = NULL;
    size_t i;
    int rv;

    if (!is_yaml) {
        v = json_loadb(text, len,
                       JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
        if (v == NULL && (looks_like_json(text, len) ||
                          (by_name && has_ext(file, ".json")))) {
            rems_errmsgf(errmsg, "invalid JSON at line %d, column %d: %s",
                         jerr.line, jerr.column, jerr.text);
            return REMS_EMALFORMED;
        }
    }
    if (v != NULL) {
        rv = json_is_object(v) ? 0 : REMS_EINVAL;
        json_decref(v);
        *json = text;
        *json_len = len;
    } else {
        rv = agent_yaml_to_json(text, len, yaml, errmsg);
        if (rv == REMS_ENOMEM || (rv == 0 && yaml->failed)) {
            return REMS_ENOMEM;
        }
        if (rv != 0) {
            return REMS_EMALFORMED; /* @errmsg: "line 2: invalid YAML: ..." */
        }
        for (i = 0; i < yaml->len && yaml->data[i] == ' '; i++) {
        }
        rv = yaml->len > i && yaml->data[i] == '{' ? 0 : REMS_EINVAL;
        *json = yaml->data;
        *json_len = yaml->len;
    }
    if (rv == REMS_EINVAL) {
        rems_errmsgf(errmsg, "the value must be a JSON object or YAML mapping");
    }
    return rv;
}

static int run_policy_put(struct ctl *c)
{
    const struct ctl_args *a = c->args;
    const char *file = a->nargs > 1 ? a->args[1] : a->file;
    char errmsg[REMS_ERRMSG_SIZE];
    struct call call = {.method = "PUT"};
    struct buf text = {0};
    struct rems_buf yaml;
    struct buf path = {0};
    json_t *answer = NULL;
    const char *body;
    size_t body_len;
    int rv;

    rems_buf_init(&yaml);
    if (a->nargs > 1 && a->file != NULL) {
        fprintf(c->env->err,
                "remsctl: policy put: give FILE or -f FILE, not both\n");
        rv = CTL_EXIT_USAGE;
        goto out;
    }
    rv = read_input(c, file, "the value", &text);
    if (rv != 0) {
        goto out;
    }
    rv =
        policy_text(file, text.data, text.len, &yaml, &body, &body_len, errmsg);
    if (rv == REMS_ENOMEM) {
        rv = oom_exit(c);
        goto out;
    }
    if (rv == REMS_EINVAL) {
        fprintf(c->env->err, "remsctl: policy put: %s\n", errmsg);
        rv = CTL_EXIT_USAGE;
        goto out;
    }
    if (rv != 0) {
        fprintf(c->env->err, "remsctl: policy put: %s: %s\n",
                file != NULL && strcmp(file, "-") != 0 ? file
                                                       : "standard input",
                errmsg);
        rv = CTL_EXIT_USAGE;
        goto out;
    }
    if (policy_path(&path, a->args[0], false) != 0) {
        rv = oom_exit(c);
        goto out;
    }
    call.path = path.data;
    call.body = body;
    call.body_len = body_len;
    rv = ctl_fetch(c, &call, &answer);
    if (rv == 0) {
        rv = output(c, answer, render_policy_put);
    }

out:
    json_decref(answer);
    rems_buf_close(&yaml);
    buf_close(&path);
    buf_close(&text);
    return rv;
}

/* `policy validate FILE`: offline, with the server's validator. */
static int run_policy_validate(const struct ctl_args *a,
                               const struct ctl_env *env)
{
    struct ctl c = {.args = a, .env = env};
    const char *file = a->args[0];
    const char *source = strcmp(file, "-") != 0 ? file : "standard input";
    char errmsg[REMS_ERRMSG_SIZE];
    struct buf text = {0};
    struct rems_buf yaml;
    struct policy *p = NULL;
    const char *json;
    size_t json_len;
    int rv;

    rems_buf_init(&yaml);
    rv = read_input(&c, file, "the policy", &text);
    if (rv != 0) {
        goto out;
    }
    rv =
        policy_text(file, text.data, text.len, &yaml, &json, &json_len, errmsg);
    if (rv == 0) {
        rv = policy_parse_json(json, json_len, &p, errmsg);
    }
    if (rv == REMS_ENOMEM) {
        rv = oom_exit(&c);
        goto out;
    }
    if (rv != 0) {
        fprintf(env->err, "remsctl: policy validate: %s: %s\n", source, errmsg);
        rv = CTL_EXIT_FAILED;
        goto out;
    }
    policy_free(p);
    fprintf(env->out, "valid\n");

out:
    rems_buf_close(&yaml);
    buf_close(&text);
    return rv;
}

static int run_policy_delete(struct ctl *c)
{
    struct buf path = {0};
    json_t *answer = NULL;
    int rv;

    if (policy_path(&path, c->args->args[0], false) != 0) {
        rv = oom_exit(c);
        goto out;
    }
    rv = run_write(c, "DELETE", path.data, NULL, &answer);
    if (rv == 0) {
        rv = output(c, answer, render_policy_delete);
    }

out:
    json_decref(answer);
    buf_close(&path);
    return rv;
}

/* A list that pages with `after` and `next_after` (an id or key). */
struct list_spec {
    const char *path; /* "/v1/policies" */
    const char *what; /* "keys", for the hint that more follow. */
    /* Append the filters of the command line to the path. */
    int (*filters)(const struct ctl_args *a, struct buf *path);
    int (*render)(FILE *out, const json_t *items);
};

/* GET @spec's list, every page with --all. The pages' items are joined;
 * with -o json the last page is printed with all the items. */
static int run_list(struct ctl *c, const struct list_spec *spec)
{
    const struct ctl_args *a = c->args;
    struct call call = {.method = "GET"};
    struct buf path = {0};
    json_t *items = json_array();
    json_t *page = NULL;
    const json_t *next = NULL;
    char *after = NULL;
    char *next_text = NULL;
    int rv = 0;

    if (items == NULL) {
        return oom_exit(c);
    }
    if (a->after != NULL) {
        after = rems_strdup(a->after);
        if (after == NULL) {
            rv = oom_exit(c);
            goto out;
        }
    }
    for (;;) {
        path.len = 0;
        if (buf_puts(&path, spec->path) != 0 || spec->filters(a, &path) != 0 ||
            query_add(&path, "limit", a->limit) != 0 ||
            query_add(&path, "after", after) != 0 ||
            query_add(&path, "consistency", a->stale ? "stale" : NULL) != 0) {
            rv = oom_exit(c);
            goto out;
        }
        call.path = path.data;
        json_decref(page);
        page = NULL;
        rv = ctl_fetch(c, &call, &page);
        if (rv != 0) {
            goto out;
        }
        if (!json_is_array(json_object_get(page, "items"))) {
            fprintf(c->env->err, "remsctl: the answer has no items\n");
            rv = CTL_EXIT_FAILED;
            goto out;
        }
        if (json_array_extend(items, json_object_get(page, "items")) != 0) {
            rv = oom_exit(c);
            goto out;
        }
        next = json_object_get(page, "next_after");
        rems_free(next_text);
        next_text = NULL;
        /* Ids of incidents are numbers, keys and ids strings. */
        if (json_is_integer(next) && json_integer_value(next) >= 0) {
            struct buf num = {0};
            if (buf_printf(&num, "%" JSON_INTEGER_FORMAT,
                           json_integer_value(next)) != 0) {
                rv = oom_exit(c);
                goto out;
            }
            next_text = num.data;
        } else if (json_is_string(next)) {
            next_text = rems_strdup(json_string_value(next));
            if (next_text == NULL) {
                rv = oom_exit(c);
                goto out;
            }
        }
        if (!a->all || next_text == NULL) {
            break;
        }
        /* Keys come in order: a page that does not move on would loop. */
        if (after != NULL &&
            (json_is_integer(next)
                 ? strtoull(next_text, NULL, 10) <= strtoull(after, NULL, 10)
                 : strcmp(next_text, after) <= 0)) {
            fprintf(c->env->err,
                    "remsctl: the server's next_after '%s' does "
                    "not follow '%s'\n",
                    next_text, after);
            rv = CTL_EXIT_FAILED;
            goto out;
        }
        rems_free(after);
        after = next_text;
        next_text = NULL;
    }
    if (a->json) {
        if (a->all && json_object_set(page, "items", items) != 0) {
            rv = oom_exit(c);
            goto out;
        }
        rv = print_json(c, page);
        goto out;
    }
    if (spec->render(c->env->out, items) != 0) {
        rv = oom_exit(c);
        goto out;
    }
    if (next_text != NULL) {
        fprintf(c->env->err,
                "remsctl: more %s follow: use --after %s, or --all\n",
                spec->what, next_text);
    }

out:
    rems_free(next_text);
    rems_free(after);
    json_decref(page);
    json_decref(items);
    buf_close(&path);
    return rv;
}

static int policy_filters(const struct ctl_args *a, struct buf *path)
{
    return query_add(path, "prefix", a->prefix);
}

static int run_policy_list(struct ctl *c)
{
    static const struct list_spec spec = {"/v1/policies", "keys",
                                          policy_filters, render_policy_list};
    return run_list(c, &spec);
}

static int run_audit_list(struct ctl *c)
{
    const struct ctl_args *a = c->args;
    struct buf path = {0};
    int rv;

    if (buf_puts(&path, "/v1/audit") != 0 ||
        query_add(&path, "after", a->after) != 0 ||
        query_add(&path, "limit", a->limit) != 0 ||
        query_add(&path, "consistency", a->stale ? "stale" : NULL) != 0) {
        rv = oom_exit(c);
    } else {
        rv = run_get(c, path.data, render_audit);
    }
    buf_close(&path);
    return rv;
}

static int agent_filters(const struct ctl_args *a, struct buf *path)
{
    return query_add(path, "online",
                     a->online    ? "true"
                     : a->offline ? "false"
                                  : NULL);
}

static int run_agent_list(struct ctl *c)
{
    static const struct list_spec spec = {"/v1/agents", "agents", agent_filters,
                                          render_agent_list};
    return run_list(c, &spec);
}

static int command_filters(const struct ctl_args *a, struct buf *path)
{
    int rv = query_add(path, "agent", a->agent);
    if (rv == 0) {
        rv = query_add(path, "state", a->state);
    }
    return rv;
}

static int run_command_list(struct ctl *c)
{
    static const struct list_spec spec = {"/v1/commands", "commands",
                                          command_filters, render_command_list};
    return run_list(c, &spec);
}

/* GET @base/@id (an agent or command id, safe in a path as it is) and
 * show it with @render. */
static int run_show(struct ctl *c,
                    const char *base,
                    int (*render)(FILE *out, const json_t *answer))
{
    struct buf path = {0};
    int rv;

    if (buf_printf(&path, "%s/%s", base, c->args->args[0]) != 0 ||
        query_add(&path, "consistency", c->args->stale ? "stale" : NULL) != 0) {
        rv = oom_exit(c);
    } else {
        rv = run_get(c, path.data, render);
    }
    buf_close(&path);
    return rv;
}

static int run_lease_list(struct ctl *c)
{
    return run_get(
        c, c->args->stale ? "/v1/leases?consistency=stale" : "/v1/leases",
        render_lease_list);
}

static int run_command_cancel(struct ctl *c)
{
    struct buf path = {0};
    json_t *answer = NULL;
    int rv;

    if (buf_printf(&path, "/v1/commands/%s", c->args->args[0]) != 0 ||
        query_add(&path, "force", c->args->force ? "true" : NULL) != 0) {
        rv = oom_exit(c);
        goto out;
    }
    rv = run_write(c, "DELETE", path.data, NULL, &answer);
    if (rv == 0) {
        rv = output(c, answer, render_command);
    }

out:
    json_decref(answer);
    buf_close(&path);
    return rv;
}

static void sleep_ms(long ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool command_ended(const json_t *command)
{
    const char *state = json_string_value(json_object_get(command, "state"));
    return state != NULL && strcmp(state, "pending") != 0;
}

/* --wait: read the command @issued until it has a final state; on success
 * *@out owns the last answer. Reads are stale (any node answers, also
 * during a failover): a final state, once read, is final. A 404 means
 * that the node read has not applied the issue yet. */
static int wait_command(struct ctl *c, const json_t *issued, json_t **out)
{
    const struct ctl_args *a = c->args;
    const char *id = json_string_value(json_object_get(issued, "id"));
    const json_t *ttl = json_object_get(issued, "ttl_ms");
    struct call call = {.method = "GET"};
    struct buf path = {0};
    struct reply r;
    uint64_t deadline;
    long wait_ms = a->wait_ms;
    int rv = 0;

    if (id == NULL || !rems_id_valid(id)) {
        fprintf(c->env->err, "remsctl: the answer names no command id\n");
        return CTL_EXIT_FAILED;
    }
    if (command_ended(issued)) {
        *out = json_incref((json_t *)issued);
        return 0;
    }
    if (wait_ms == 0) {
        wait_ms = (json_is_integer(ttl) && json_integer_value(ttl) > 0
                       ? (long)json_integer_value(ttl)
                       : 30000L) +
                  CTL_WAIT_MARGIN_MS;
    }
    deadline = rems_mono_ms() + (uint64_t)wait_ms;
    if (buf_printf(&path, "/v1/commands/%s?consistency=stale", id) != 0) {
        return oom_exit(c);
    }
    call.path = path.data;
    for (;;) {
        uint64_t now = rems_mono_ms();
        if (now >= deadline) {
            fprintf(c->env->err,
                    "remsctl: command %s is still pending after %.1f s; "
                    "see 'remsctl command show %s'\n",
                    id, (double)wait_ms / 1000.0, id);
            rv = CTL_EXIT_FAILED;
            break;
        }
        sleep_ms(deadline - now < (uint64_t)CTL_WAIT_POLL_MS
                     ? (long)(deadline - now)
                     : CTL_WAIT_POLL_MS);
        rv = ctl_call(c, &call, &r);
        if (rv != 0) {
            break;
        }
        if (r.status == 404) {
            reply_close(&r);
            continue;
        }
        rv = reply_check(c, &call, &r);
        if (rv == 0 && command_ended(r.json)) {
            *out = json_incref(r.json);
            reply_close(&r);
            break;
        }
        reply_close(&r);
        if (rv != 0) {
            break;
        }
    }
    buf_close(&path);
    return rv;
}

/* Set @o[@key] to the string @value; false when @value is not UTF-8 (or
 * out of memory). */
static bool set_text(json_t *o, const char *key, const char *value)
{
    return json_object_set_new(o, key, json_string(value)) == 0;
}

/* The body of POST /v1/commands, without the manifest. */
static int issue_body(struct ctl *c, json_t *o)
{
    const struct ctl_args *a = c->args;
    json_t *args = NULL;
    size_t i;

    if (!set_text(o, "agent", a->args[0]) ||
        !set_text(o, "action", a->args[1])) {
        return oom_exit(c);
    }
    if (a->nargs == 3 && !set_text(o, "service", a->args[2])) {
        fprintf(c->env->err,
                "remsctl: command issue: the service is not valid UTF-8\n");
        return CTL_EXIT_USAGE;
    }
    if (a->nkv > 0) {
        args = json_object();
        if (args == NULL || json_object_set_new(o, "args", args) != 0) {
            return oom_exit(c);
        }
    }
    for (i = 0; i < a->nkv; i++) {
        const char *eq = strchr(a->kv[i], '=');
        char *key = rems_strndup(a->kv[i], (size_t)(eq - a->kv[i]));
        bool ok;
        if (key == NULL) {
            return oom_exit(c);
        }
        ok = set_text(args, key, eq + 1);
        rems_free(key);
        if (!ok) {
            fprintf(c->env->err,
                    "remsctl: command issue: --arg %s is not valid UTF-8\n",
                    a->kv[i]);
            return CTL_EXIT_USAGE;
        }
    }
    if (a->has_ttl &&
        json_object_set_new(o, "ttl_ms", json_integer((json_int_t)a->ttl_ms)) !=
            0) {
        return oom_exit(c);
    }
    if (a->reason != NULL && a->reason[0] != '\0' &&
        !set_text(o, "reason", a->reason)) {
        fprintf(c->env->err,
                "remsctl: command issue: --reason is not valid UTF-8\n");
        return CTL_EXIT_USAGE;
    }
    return 0;
}

static int run_command_issue(struct ctl *c)
{
    const struct ctl_args *a = c->args;
    char errmsg[REMS_ERRMSG_SIZE];
    struct call call = {.method = "POST", .path = "/v1/commands"};
    struct buf text = {0};
    struct buf body = {0};
    json_t *manifest = NULL;
    json_t *o = NULL;
    json_t *answer = NULL;
    json_t *final = NULL;
    const json_t *shown;
    bool verbatim = false;
    int rv = 0;

    if (a->manifest != NULL) {
        rv = read_input(c, a->manifest, "the manifest", &text);
        if (rv != 0) {
            goto out;
        }
        rv = value_parse(text.data, text.len, &manifest, &verbatim, errmsg);
        if (rv == REMS_ENOMEM) {
            rv = oom_exit(c);
            goto out;
        }
        if (rv != 0) {
            fprintf(c->env->err, "remsctl: command issue: %s: %s\n",
                    strcmp(a->manifest, "-") != 0 ? a->manifest
                                                  : "standard input",
                    rv == REMS_EINVAL
                        ? "the manifest must be a JSON object or YAML mapping"
                        : errmsg);
            rv = CTL_EXIT_USAGE;
            goto out;
        }
    }
    o = json_object();
    if (o == NULL) {
        rv = oom_exit(c);
        goto out;
    }
    rv = issue_body(c, o);
    if (rv != 0) {
        goto out;
    }
    /* A JSON manifest is sent as written (value_parse() read its integers
     * as reals), spliced in before the closing brace. */
    if (manifest != NULL && !verbatim &&
        json_object_set(o, "manifest", manifest) != 0) {
        rv = oom_exit(c);
        goto out;
    }
    rv = buf_json(&body, o, JSON_COMPACT);
    if (rv == 0 && manifest != NULL && verbatim) {
        body.len--; /* The closing brace. */
        rv = buf_puts(&body, ",\"manifest\":");
        if (rv == 0) {
            rv = buf_append(&body, text.data, text.len);
        }
        if (rv == 0) {
            rv = buf_puts(&body, "}");
        }
    }
    if (rv != 0) {
        rv = oom_exit(c);
        goto out;
    }
    call.body = body.data;
    call.body_len = body.len;
    rv = ctl_fetch(c, &call, &answer);
    if (rv != 0) {
        goto out;
    }
    if (a->wait) {
        rv = wait_command(c, answer, &final);
        if (rv != 0) {
            goto out;
        }
    }
    shown = final != NULL ? final : answer;
    rv = output(c, shown, render_command);
    if (rv == 0 && a->wait &&
        strcmp(json_string_value(json_object_get(shown, "state")), "acked") !=
            0) {
        fprintf(c->env->err, "remsctl: command %s ended %s\n",
                json_string_value(json_object_get(shown, "id")),
                json_string_value(json_object_get(shown, "state")));
        rv = CTL_EXIT_FAILED;
    }

out:
    json_decref(final);
    json_decref(answer);
    json_decref(o);
    json_decref(manifest);
    buf_close(&body);
    buf_close(&text);
    return rv;
}

/* ------------------------------------------------------------------------
 * The reconciler's commands
 * ------------------------------------------------------------------------ */

/* GET a view (summary, drift, recommendations) with the command line's
 * filters. */
static int run_view(struct ctl *c,
                    const char *base,
                    int (*render)(FILE *out, const json_t *answer))
{
    const struct ctl_args *a = c->args;
    struct buf path = {0};
    int rv;

    if (buf_puts(&path, base) != 0 ||
        query_add(&path, "agent", a->agent) != 0 ||
        query_add(&path, "site", a->site) != 0 ||
        query_add(&path, "service", a->service) != 0 ||
        query_add(&path, "kind", a->kind) != 0 ||
        query_add(&path, "level", a->level) != 0 ||
        query_add(&path, "consistency",
                  a->linearizable ? "linearizable" : NULL) != 0) {
        rv = oom_exit(c);
    } else {
        rv = run_get(c, path.data, render);
    }
    buf_close(&path);
    return rv;
}

static int incident_filters(const struct ctl_args *a, struct buf *path)
{
    int rv = query_add(path, "state", a->state);
    if (rv == 0) {
        rv = query_add(path, "agent", a->agent);
    }
    return rv;
}

static int no_filters(const struct ctl_args *a, struct buf *path)
{
    (void)a;
    (void)path;
    return 0;
}

/* POST, PUT or DELETE @path with @body (may be NULL), shown by @render. */
static int run_change(struct ctl *c,
                      const char *method,
                      const char *path,
                      const json_t *body,
                      int (*render)(FILE *out, const json_t *answer))
{
    json_t *answer = NULL;
    int rv;

    rv = run_write(c, method, path, body, &answer);
    if (rv == 0) {
        rv = output(c, answer, render);
    }
    json_decref(answer);
    return rv;
}

static int run_incident_update(struct ctl *c)
{
    struct buf path = {0};
    int rv;

    if (buf_printf(&path, "/v1/incidents/%s/%s", c->args->args[0],
                   c->args->cmd->id == CMD_INCIDENT_ACK ? "acknowledge"
                                                        : "resolve") != 0) {
        return oom_exit(c);
    }
    rv = run_change(c, "POST", path.data, NULL, render_incident);
    buf_close(&path);
    return rv;
}

static int run_rollout_op(struct ctl *c)
{
    static const char *const ops[] = {
        [CMD_ROLLOUT_PAUSE - CMD_ROLLOUT_PAUSE] = "pause",
        [CMD_ROLLOUT_RESUME - CMD_ROLLOUT_PAUSE] = "resume",
        [CMD_ROLLOUT_ABORT - CMD_ROLLOUT_PAUSE] = "abort",
        [CMD_ROLLOUT_ROLLBACK - CMD_ROLLOUT_PAUSE] = "rollback",
    };
    const struct ctl_args *a = c->args;
    struct buf path = {0};
    json_t *body = json_object();
    int rv;

    if (body == NULL ||
        !set_text(body, "op", ops[a->cmd->id - CMD_ROLLOUT_PAUSE]) ||
        (a->revision != 0 &&
         json_object_set_new(body, "revision",
                             json_integer((json_int_t)a->revision)) != 0) ||
        buf_printf(&path, "/v1/rollouts/%s", a->args[0]) != 0) {
        json_decref(body);
        buf_close(&path);
        return oom_exit(c);
    }
    rv = run_change(c, "POST", path.data, body, render_rollout);
    json_decref(body);
    buf_close(&path);
    return rv;
}

static int run_rollout_show(struct ctl *c)
{
    struct buf path = {0};
    int rv;

    if (buf_printf(&path, "/v1/rollouts/%s", c->args->args[0]) != 0 ||
        query_add(&path, "documents", c->args->documents ? "true" : NULL) !=
            0 ||
        query_add(&path, "consistency", c->args->stale ? "stale" : NULL) != 0) {
        rv = oom_exit(c);
    } else {
        rv = run_get(c, path.data, render_rollout);
    }
    buf_close(&path);
    return rv;
}

static int run_override_set(struct ctl *c)
{
    const struct ctl_args *a = c->args;
    json_t *body = json_object();
    int rv = 0;

    if (body == NULL || !set_text(body, "scope", a->args[0])) {
        rv = oom_exit(c);
        goto out;
    }
    if ((a->nargs > 1 && !set_text(body, "name", a->args[1])) ||
        (a->agent != NULL && !set_text(body, "agent", a->agent))) {
        fprintf(c->env->err,
                "remsctl: override set: the name is not valid UTF-8\n");
        rv = CTL_EXIT_USAGE;
        goto out;
    }
    if ((a->until_ms != 0 &&
         json_object_set_new(body, "until_ms",
                             json_integer((json_int_t)a->until_ms)) != 0) ||
        (a->for_ms != 0 &&
         json_object_set_new(body, "duration_ms",
                             json_integer((json_int_t)a->for_ms)) != 0)) {
        rv = oom_exit(c);
        goto out;
    }
    rv = run_change(c, "POST", "/v1/overrides", body, render_override_change);

out:
    json_decref(body);
    return rv;
}

static int run_override_clear(struct ctl *c)
{
    const struct ctl_args *a = c->args;
    struct buf path = {0};
    int rv;

    if (buf_puts(&path, "/v1/overrides") != 0 ||
        query_add(&path, "scope", a->args[0]) != 0 ||
        query_add(&path, "name", a->nargs > 1 ? a->args[1] : NULL) != 0 ||
        query_add(&path, "agent", a->agent) != 0) {
        rv = oom_exit(c);
    } else {
        rv = run_change(c, "DELETE", path.data, NULL, render_override_change);
    }
    buf_close(&path);
    return rv;
}

/* --days "mon,wed" or "sat-sun" as a JSON array of its parts. */
static json_t *days_json(const char *days)
{
    json_t *a = json_array();
    const char *p = days;

    while (a != NULL) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        json_t *v = json_stringn(p, len);
        if (v == NULL || json_array_append_new(a, v) != 0) {
            json_decref(a);
            return NULL;
        }
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    return a;
}

static int run_window_set(struct ctl *c)
{
    const struct ctl_args *a = c->args;
    const char *scope = a->site != NULL    ? "site"
                        : a->agent != NULL ? "agent"
                                           : "global";
    struct buf path = {0};
    json_t *body = json_object();
    json_t *weekly = NULL;
    int rv = 0;

    if (body == NULL ||
        buf_printf(&path, "/v1/maintenance-windows/%s", a->args[0]) != 0 ||
        !set_text(body, "scope", scope) || !set_text(body, "mode", a->mode)) {
        rv = oom_exit(c);
        goto out;
    }
    if ((a->site != NULL && !set_text(body, "target", a->site)) ||
        (a->agent != NULL && !set_text(body, "target", a->agent))) {
        fprintf(c->env->err,
                "remsctl: window set: the site is not valid UTF-8\n");
        rv = CTL_EXIT_USAGE;
        goto out;
    }
    if (a->from_ms != 0) {
        if (json_object_set_new(body, "start_ms",
                                json_integer((json_int_t)a->from_ms)) != 0 ||
            json_object_set_new(body, "end_ms",
                                json_integer((json_int_t)a->to_ms)) != 0) {
            rv = oom_exit(c);
            goto out;
        }
    } else {
        weekly = json_object();
        if (weekly == NULL ||
            json_object_set_new(weekly, "days", days_json(a->days)) != 0 ||
            json_object_set_new(
                weekly, "duration_minutes",
                json_integer((json_int_t)a->duration_minutes)) != 0 ||
            json_object_set(body, "weekly", weekly) != 0) {
            rv = oom_exit(c);
            goto out;
        }
        if (!set_text(weekly, "start", a->start)) {
            fprintf(c->env->err,
                    "remsctl: window set: --start is not valid UTF-8\n");
            rv = CTL_EXIT_USAGE;
            goto out;
        }
    }
    rv = run_change(c, "PUT", path.data, body, render_window);

out:
    json_decref(weekly);
    json_decref(body);
    buf_close(&path);
    return rv;
}

static int run_window_delete(struct ctl *c)
{
    struct buf path = {0};
    int rv;

    if (buf_printf(&path, "/v1/maintenance-windows/%s", c->args->args[0]) !=
        0) {
        return oom_exit(c);
    }
    rv = run_change(c, "DELETE", path.data, NULL, render_window_delete);
    buf_close(&path);
    return rv;
}

static int ctl_run(const struct ctl_args *a, const struct ctl_env *env)
{
    struct ctl c;
    int rv;

    if (a->cmd->id == CMD_POLICY_VALIDATE) {
        return run_policy_validate(a, env);
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(env->err, "remsctl: cannot initialise libcurl\n");
        return CTL_EXIT_FAILED;
    }
    if (ctl_open(&c, a, env) != 0) {
        fprintf(env->err, "remsctl: cannot initialise libcurl\n");
        curl_global_cleanup();
        return CTL_EXIT_FAILED;
    }
    switch (a->cmd->id) {
        case CMD_STATUS:
            rv = run_get(&c, "/status", render_status);
            break;
        case CMD_MEMBER_LIST:
            rv = run_get(&c, "/v1/members", render_member_list);
            break;
        case CMD_MEMBER_ADD:
        case CMD_MEMBER_REMOVE:
        case CMD_MEMBER_PROMOTE:
        case CMD_MEMBER_TRANSFER:
            rv = run_member(&c);
            break;
        case CMD_POLICY_GET:
            rv = run_policy_get(&c);
            break;
        case CMD_POLICY_PUT:
            rv = run_policy_put(&c);
            break;
        case CMD_POLICY_DELETE:
            rv = run_policy_delete(&c);
            break;
        case CMD_POLICY_LIST:
            rv = run_policy_list(&c);
            break;
        case CMD_AUDIT_LIST:
            rv = run_audit_list(&c);
            break;
        case CMD_AGENT_LIST:
            rv = run_agent_list(&c);
            break;
        case CMD_AGENT_SHOW:
            rv = run_show(&c, "/v1/agents", render_agent);
            break;
        case CMD_LEASE_LIST:
            rv = run_lease_list(&c);
            break;
        case CMD_COMMAND_ISSUE:
            rv = run_command_issue(&c);
            break;
        case CMD_COMMAND_LIST:
            rv = run_command_list(&c);
            break;
        case CMD_COMMAND_SHOW:
            rv = run_show(&c, "/v1/commands", render_command);
            break;
        case CMD_COMMAND_CANCEL:
            rv = run_command_cancel(&c);
            break;
        case CMD_SUMMARY:
            rv = run_view(&c, "/v1/summary", render_summary);
            break;
        case CMD_DRIFT:
            rv = run_view(&c, "/v1/drift", render_drift);
            break;
        case CMD_RECOMMENDATIONS:
            rv = run_view(&c, "/v1/recommendations", render_recommendations);
            break;
        case CMD_INCIDENT_LIST: {
            static const struct list_spec spec = {"/v1/incidents", "incidents",
                                                  incident_filters,
                                                  render_incident_list};
            rv = run_list(&c, &spec);
            break;
        }
        case CMD_INCIDENT_SHOW:
            rv = run_show(&c, "/v1/incidents", render_incident);
            break;
        case CMD_INCIDENT_ACK:
        case CMD_INCIDENT_RESOLVE:
            rv = run_incident_update(&c);
            break;
        case CMD_OVERRIDE_LIST:
            rv = run_get(&c,
                         a->stale ? "/v1/overrides?consistency=stale"
                                  : "/v1/overrides",
                         render_override_list);
            break;
        case CMD_OVERRIDE_SET:
            rv = run_override_set(&c);
            break;
        case CMD_OVERRIDE_CLEAR:
            rv = run_override_clear(&c);
            break;
        case CMD_RECONCILER_PAUSE:
        case CMD_RECONCILER_RESUME:
            rv = run_change(&c, "POST",
                            a->cmd->id == CMD_RECONCILER_PAUSE
                                ? "/v1/reconciler/pause"
                                : "/v1/reconciler/resume",
                            NULL, render_override_change);
            break;
        case CMD_WINDOW_LIST: {
            static const struct list_spec spec = {"/v1/maintenance-windows",
                                                  "windows", no_filters,
                                                  render_window_list};
            rv = run_list(&c, &spec);
            break;
        }
        case CMD_WINDOW_SHOW:
            rv = run_show(&c, "/v1/maintenance-windows", render_window);
            break;
        case CMD_WINDOW_SET:
            rv = run_window_set(&c);
            break;
        case CMD_WINDOW_DELETE:
            rv = run_window_delete(&c);
            break;
        case CMD_ROLLOUT_LIST: {
            static const struct list_spec spec = {"/v1/rollouts", "rollouts",
                                                  no_filters,
                                                  render_rollout_list};
            rv = run_list(&c, &spec);
            break;
        }
        case CMD_ROLLOUT_SHOW:
            rv = run_rollout_show(&c);
            break;
        case CMD_ROLLOUT_PAUSE:
        case CMD_ROLLOUT_RESUME:
        case CMD_ROLLOUT_ABORT:
        case CMD_ROLLOUT_ROLLBACK:
            rv = run_rollout_op(&c);
            break;
        default:
            REMS_ASSERT(false);
            rv = CTL_EXIT_FAILED;
            break;
    }
    ctl_close(&c);
    curl_global_cleanup();
    return rv;
}

/* The whole of remsctl, with its environment and standard streams passed
 * in. Returns the exit code. */
static int ctl_main(int argc, char *const argv[], const struct ctl_env *env)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct ctl_args a;
    int code;
    int rv;

    rv = ctl_parse(argc, argv, env->endpoints, env->user, &a, errmsg);
    if (rv == REMS_ENOMEM) {
        fprintf(env->err, "remsctl: out of memory\n");
        code = CTL_EXIT_FAILED;
    } else if (rv != 0) {
        fprintf(env->err, "remsctl: %s\n", errmsg);
        usage_print(env->err, a.cmd, a.group, false);
        code = CTL_EXIT_USAGE;
    } else if (a.action == CTL_ACTION_HELP) {
        usage_print(env->out, a.cmd, a.group, true);
        code = CTL_EXIT_OK;
    } else if (a.action == CTL_ACTION_VERSION) {
        fprintf(env->out, "remsctl %s\n", REMS_VERSION);
        code = CTL_EXIT_OK;
    } else {
        code = ctl_run(&a, env);
    }
    ctl_args_close(&a);
    if (fflush(env->out) != 0 || ferror(env->out)) {
        fprintf(env->err, "remsctl: cannot write the output\n");
        if (code == CTL_EXIT_OK) {
            code = CTL_EXIT_FAILED;
        }
    }
    return code;
}

#ifndef REMSCTL_NO_MAIN
int main(int argc, char *argv[])
{
    struct ctl_env env = {
        .endpoints = getenv("REMS_ENDPOINTS"),
        .user = getenv("USER"),
        .in = stdin,
        .out = stdout,
        .err = stderr,
    };

    return ctl_main(argc, argv, &env);
}
#endif
