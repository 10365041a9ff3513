/* agentproto/agent_config.h: rems-agent's configuration, from a YAML file
 * plus command-line overrides.
 *
 * docs/agent-config.md describes every key. Loading and validating never
 * touch the data directory or the certificates' keys: a wrong
 * configuration is reported, naming the key and the rule, before anything
 * is created or opened. Each failed call leaves the caller's struct as it
 * was.
 *
 * The services section is converted, item by item, from YAML to JSON text
 * and parsed by sup_spec_parse_json() (agentproto/supervisor.h), the same
 * parser that reads pushed manifests, so a service is described the same
 * way in both places.
 *
 * Any thread, one struct at a time. */
#ifndef REMS_AGENTPROTO_AGENT_CONFIG_H
#define REMS_AGENTPROTO_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agentproto/proto.h"
#include "common/error.h"
#include "common/mpread.h" /* struct rems_buf */

struct sup_service_spec;

#define AGENT_CONFIG_PATH_SIZE 1024
#define AGENT_CONFIG_HOST_SIZE 254 /* A DNS name: at most 253 bytes. */
#define AGENT_CONFIG_MAX_ENDPOINTS 16
/* "[host]:65535" with the longest host. */
#define AGENT_CONFIG_ADDR_SIZE (AGENT_CONFIG_HOST_SIZE + 8)

/* One "host:port": a DNS name, an IPv4 address or an IPv6 address in
 * brackets, and a port of 1..65535. */
struct agent_endpoint {
    char host[AGENT_CONFIG_HOST_SIZE]; /* Without brackets. */
    uint16_t port;
};

struct agent_label {
    char key[PROTO_LABEL_KEY_MAX + 1];     /* 1..128 bytes */
    char value[PROTO_LABEL_VALUE_MAX + 1]; /* 0..128 bytes */
};

struct agent_config {
    char id[PROTO_ID_MAX + 1]; /* id, required */
    struct agent_endpoint endpoints[AGENT_CONFIG_MAX_ENDPOINTS];
    size_t n_endpoints; /* endpoints, required, at least one */
    char tls_cert[AGENT_CONFIG_PATH_SIZE]; /* tls.cert, required */
    char tls_key[AGENT_CONFIG_PATH_SIZE];  /* tls.key, required */
    char tls_ca[AGENT_CONFIG_PATH_SIZE];   /* tls.ca, required */
    char tls_crl[AGENT_CONFIG_PATH_SIZE];  /* tls.crl, "" = none */
    /* tls.server_name: the name every node's certificate must match; ""
     * = the host of the endpoint dialled. */
    char tls_server_name[AGENT_CONFIG_HOST_SIZE];
    char data_dir[AGENT_CONFIG_PATH_SIZE];       /* data_dir, required */
    struct agent_label labels[PROTO_LABELS_MAX]; /* labels */
    size_t n_labels;
    uint64_t heartbeat_interval_ms; /* 0 (default) = the node's */
    uint64_t reconnect_initial_ms;  /* default 500 */
    uint64_t reconnect_max_ms;      /* default 30000 */
    uint64_t connect_timeout_ms;    /* reconnect.connect_timeout_ms, 10000 */
    uint64_t dead_man_timeout_ms;   /* 0 (default) = off */
    uint64_t outbox_max_reports;    /* default 10000 */
    uint64_t executed_ids_kept;     /* default 10000 */
    uint64_t max_frame_bytes;       /* default 1048576, as the nodes' */
    char log_level[8];              /* debug|info|warn|error, default info */
    /* services: owned, in the order of the file. */
    struct sup_service_spec **services;
    size_t n_services;
};

/* Fill @c with the defaults; required fields are left empty. Allocates
 * nothing, but release with agent_config_close() once loaded. */
void agent_config_init(struct agent_config *c);

/* Release the services of @c (and empty the list). NULL does nothing. */
void agent_config_close(struct agent_config *c);

/* Read the YAML file @path into @c (which holds defaults or earlier
 * values; the file's services replace those of @c). Unknown keys, wrong
 * types and values out of range are errors. Returns 0, REMS_ECONFIG
 * ("<path>:<line>: <key>: <rule>", e.g. "agent.yaml:7: reconnect.max_ms:
 * must be an integer between 100 and 3600000", or for a service
 * "agent.yaml:21: services[2]: <the supervisor's message>"), REMS_EIO (the
 * file is unreadable) or REMS_ENOMEM. */
int agent_config_load_file(struct agent_config *c,
                           const char *path,
                           char *errmsg);

/* The command line, parsed. Strings point into argv. */
struct agent_cli {
    const char *config;    /* --config FILE */
    const char *data_dir;  /* --data-dir D, or NULL */
    const char *log_level; /* --log-level L, or NULL */
    bool check_config;     /* --check-config */
    bool version;          /* --version */
    bool help;             /* --help */
};

/* Parse @argc options of @argv (without the program name) into @cli:
 * --config FILE, --data-dir D, --log-level L (both "--opt value" and
 * "--opt=value"), --check-config, --version, --help. --config is required
 * unless --version or --help is given. Returns 0 or REMS_ECONFIG naming
 * the option ("--log-level: needs a value", "--port: unknown option"). */
int agent_config_parse_args(int argc,
                            char **argv,
                            struct agent_cli *cli,
                            char *errmsg);

/* Apply the overrides of @cli (--data-dir, --log-level) to @c. Returns 0
 * or REMS_ECONFIG naming the option and its rule. */
int agent_config_apply_cli(struct agent_config *c,
                           const struct agent_cli *cli,
                           char *errmsg);

/* Check the rules that span several keys, once everything is loaded:
 * required keys, reconnect.initial_ms <= reconnect.max_ms, unique
 * endpoints, unique service names and their dependencies (no unknown
 * service, no cycle). Repeats the per-key checks, since a struct may be
 * filled in by code. (heartbeat_interval_ms is checked against the node's
 * lease when a session starts.) Returns 0 or REMS_ECONFIG naming the
 * key. */
int agent_config_validate(const struct agent_config *c, char *errmsg);

/* The agent id named by the PEM certificate in file @path: the <id> of its
 * SAN URI rems://agent/<id>, else its subject's common name; the same rule
 * the nodes apply (agentproto/tls.h, tls_stream_peer_id()). @id gets
 * PROTO_ID_MAX + 1 bytes. Returns 0, REMS_EIO (unreadable), REMS_ECONFIG
 * (not a certificate, or it names no valid agent id: @errmsg says why) or
 * REMS_ENOMEM. */
int agent_config_cert_id(const char *path, char *id, char *errmsg);

/* Check that the certificate tls.cert names the agent id: returns 0, or as
 * agent_config_cert_id(), or REMS_ECONFIG when the ids differ ("id:
 * \"agent-1\" differs from the agent id of tls.cert (/etc/a.pem):
 * \"agent-2\""). Reads the certificate, nothing else. */
int agent_config_check_cert(const struct agent_config *c, char *errmsg);

/* Parse @len bytes of @s, "host:port", into @out. The host is a DNS name
 * ([A-Za-z0-9.-], labels of 1..63 bytes), an IPv4 address, or an IPv6
 * address in brackets; the port is 1..65535 in decimal. Returns 0 or
 * REMS_EINVAL, leaving @out untouched. */
int agent_endpoint_parse(const char *s, size_t len, struct agent_endpoint *out);

/* Write @e as "host:port" ("[v6]:port") into @out
 * (AGENT_CONFIG_ADDR_SIZE bytes). */
void agent_endpoint_format(const struct agent_endpoint *e, char *out);

/* The rule an endpoint breaks, for messages. */
#define AGENT_ENDPOINT_RULE                                                    \
    "must be host:port with a DNS name, an IPv4 address or an IPv6 address "   \
    "in brackets, and a port between 1 and 65535"

/* Convert the single YAML document in @len bytes of @yaml into JSON text,
 * appended to @out (NUL-terminated). Scalars follow YAML 1.2's core
 * schema: plain null, ~ and an empty value are null; plain true/false
 * (also True, TRUE, ...) are booleans; plain numbers in JSON's syntax are
 * numbers; everything else, and every quoted scalar, is a string. Below
 * the keys command, env and depends_on (whose values are strings in a
 * service) every scalar is a string. Mapping keys must be scalars and
 * unique. Nesting is limited to 32 levels
 * (so recursive aliases cannot loop). Returns 0, REMS_EINVAL (@errmsg
 * names the place, e.g. "line 4: env.A: duplicate key (first on line 3)"),
 * REMS_EMALFORMED (not YAML) or REMS_ENOMEM. */
int agent_yaml_to_json(const char *yaml,
                       size_t len,
                       struct rems_buf *out,
                       char *errmsg);

#endif /* REMS_AGENTPROTO_AGENT_CONFIG_H */
