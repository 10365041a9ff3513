/* cluster/config.h: remsd's configuration, from a YAML file plus
 * command-line overrides.
 *
 * Private to cluster/ and remsd's main. Loading never touches the data
 * directory: a wrong configuration is reported (naming the key and the rule)
 * before anything is created or opened. */
#ifndef REMS_CLUSTER_CONFIG_H
#define REMS_CLUSTER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define CONFIG_MAX_PEERS 9
#define CONFIG_ADDR_SIZE 64 /* "255.255.255.255:65535" fits easily. */
#define CONFIG_LABEL_SIZE 129 /* a label key: 128 bytes and the NUL */
#define CONFIG_PATH_SIZE 1024

struct config_peer {
    uint64_t id;
    char raft_address[CONFIG_ADDR_SIZE]; /* "IPv4:port" */
    char api_address[CONFIG_ADDR_SIZE];  /* "IPv4:port" */
};

struct config {
    uint64_t node_id;                    /* node_id, required, >= 1 */
    char data_dir[CONFIG_PATH_SIZE];     /* data_dir, required */
    char raft_address[CONFIG_ADDR_SIZE]; /* raft_address, required */
    char api_address[CONFIG_ADDR_SIZE];  /* api_address, required */
    struct config_peer peers[CONFIG_MAX_PEERS]; /* peers */
    size_t n_peers;
    char join[CONFIG_ADDR_SIZE]; /* join: API address of a member; "" = none */
    unsigned election_timeout_ms;  /* default 1000, 50..60000 */
    unsigned heartbeat_timeout_ms; /* default 100, 10..10000 */
    unsigned snapshot_threshold;   /* default 8192, 16..10000000 */
    unsigned snapshot_trailing;    /* default 8192, 0..10000000 */
    size_t max_body_bytes;         /* default 1048576, 1024..67108864 */
    unsigned forward_timeout_ms;   /* default 5000, 100..600000 */
    char log_level[16];            /* debug|info|warn|error, default info */
    bool fault_injection;          /* default false */
    /* Agents (docs/configuration.md, "Agents"). No agent listener when
     * agent_address is empty; then the tls_* keys may be empty too. */
    char agent_address[CONFIG_ADDR_SIZE]; /* "IPv4:port" or "" */
    char tls_cert[CONFIG_PATH_SIZE];      /* this node's certificate (PEM) */
    char tls_key[CONFIG_PATH_SIZE];       /* its private key */
    char tls_ca[CONFIG_PATH_SIZE];        /* the site CA agents chain to */
    char tls_crl[CONFIG_PATH_SIZE];       /* optional CRL (PEM) */
    unsigned lease_ttl_ms;          /* default 10000, 500..3600000 */
    unsigned agent_heartbeat_ms;    /* default 1000, 50..600000 */
    unsigned max_clock_skew_ms;     /* default 500, 0..60000 (ADR 0004) */
    unsigned send_margin_ms;        /* default 100, 0..60000 (ADR 0004) */
    size_t agent_max_frame_bytes;   /* default 1048576, 4096..67108864 */
    /* The reconciler (docs/configuration.md, "Reconciler"). */
    char site_label[CONFIG_LABEL_SIZE]; /* default "site"; "" = no sites */
    unsigned reconcile_interval_ms;     /* default 2000, 100..600000 */
    unsigned reconcile_rate_window_ms;  /* default 600000, 1000..86400000 */
    unsigned reconcile_max_per_agent;   /* default 3, 0..1000000 */
    unsigned reconcile_max_per_site;    /* default 20, 0..1000000 */
    unsigned reconcile_max_global;      /* default 100, 0..1000000 */
    unsigned reconcile_max_in_flight;   /* default 50, 0..1000000 */
    unsigned reconcile_command_ttl_ms;  /* default 60000, 1000..86400000 */
    unsigned reconcile_grace_ms;        /* default 60000, 0..86400000 */
};

/* Fill @c with the defaults above; required fields are left empty/0. */
void config_defaults(struct config *c);

/* Read the YAML file @path into @c (which holds defaults or earlier
 * values). Unknown keys, wrong types and values out of range are errors.
 * Returns 0, REMS_ECONFIG (errmsg: "<path>: <key>: <rule>", with the line
 * number when known, e.g. "node.yaml:3: election_timeout_ms: must be an
 * integer between 50 and 60000") or REMS_EIO (file unreadable) or REMS_ENOMEM. */
int config_load_file(struct config *c, const char *path, char *errmsg);

/* Apply command-line options from @argv (not including the program name).
 * Recognised: --config FILE (loaded first, wherever it appears), and one
 * option per key: --node-id N, --data-dir D, --raft-address A,
 * --api-address A, --peer ID=RAFTADDR,APIADDR (repeatable; replaces the
 * file's peers), --join A, --election-timeout-ms N, --heartbeat-timeout-ms
 * N, --snapshot-threshold N, --snapshot-trailing N, --max-body-bytes N,
 * --forward-timeout-ms N, --log-level L, --fault-injection, --agent-address
 * A, --tls-cert F, --tls-key F, --tls-ca F, --tls-crl F, --lease-ttl-ms N,
 * --agent-heartbeat-ms N, --max-clock-skew-ms N, --send-margin-ms N,
 * --agent-max-frame-bytes N, --site-label L, --reconcile-interval-ms N,
 * --reconcile-rate-window-ms N, --reconcile-max-per-agent N,
 * --reconcile-max-per-site N, --reconcile-max-global N,
 * --reconcile-max-in-flight N, --reconcile-command-ttl-ms N,
 * --reconcile-grace-ms N. Both "--key
 * value" and "--key=value" work. Returns 0 or REMS_ECONFIG naming the
 * option. */
int config_parse_args(struct config *c, int argc, char **argv, char *errmsg);

/* Check cross-field rules after loading: required keys present; addresses
 * are IPv4:port with port 1..65535; heartbeat < election / 2 (rule
 * "election_timeout_ms must be at least twice heartbeat_timeout_ms"); peer
 * ids and addresses unique; when peers are given, this node is among them
 * with the same addresses; join and peers not both empty unless the data
 * dir already holds a node (checked later, not here); snapshot_trailing <=
 * snapshot_threshold. Returns 0 or REMS_ECONFIG naming the key. */
int config_validate(const struct config *c, char *errmsg);

/* Split "a.b.c.d:port" into @host (CONFIG_ADDR_SIZE) and @port. Returns 0
 * or REMS_EINVAL. */
int config_split_address(const char *addr, char *host, uint16_t *port);

#endif /* REMS_CLUSTER_CONFIG_H */
