/* cluster/leases.h: the leader's lease table (agent sessions).
 *
 * Pure bookkeeping: no clock, no loop, no raft. The caller passes the
 * leader's monotonic time in milliseconds and turns the answers into log
 * entries (grant and revoke are replicated; renewals by heartbeat stay in
 * the leader's memory).
 *
 * Invariant 8 of the architecture: no lease expires earlier than its TTL
 * measured by the leader that granted or renewed it. A new leader does not
 * know when the old one last renewed a lease, so leases_load() gives every
 * replicated lease its full TTL plus one election timeout from the moment
 * this node became leader: the old leader's last renewal happened before
 * that moment, so the new deadline is never earlier than the old one.
 *
 * Loop thread only. */
#ifndef REMS_CLUSTER_LEASES_H
#define REMS_CLUSTER_LEASES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define LEASES_ID_MAX 64

struct leases_entry {
    char agent_id[LEASES_ID_MAX + 1];
    uint64_t ttl_ms;
    uint64_t expires_ms; /* Leader monotonic time. */
    bool revoking;       /* A revoke entry is in flight. */
};

struct leases {
    struct leases_entry *entries; /* Sorted by agent_id. */
    size_t n;
    size_t cap;
};

void leases_init(struct leases *l);
void leases_close(struct leases *l);

/* Forget every lease (on losing leadership). */
void leases_clear(struct leases *l);

/* A replicated lease, on becoming leader at @now with @election_timeout_ms:
 * it expires at now + ttl + election timeout. REMS_ENOMEM, REMS_EINVAL
 * (bad id or ttl 0). Loading an agent twice keeps the later deadline. */
int leases_load(struct leases *l,
                const char *agent_id,
                uint64_t ttl_ms,
                uint64_t now,
                uint64_t election_timeout_ms);

/* A grant committed at @now: expires at now + ttl. */
int leases_grant(struct leases *l,
                 const char *agent_id,
                 uint64_t ttl_ms,
                 uint64_t now);

/* A heartbeat at @now renews the lease: expires = max(expires, now + ttl).
 * REMS_ENOTFOUND when the agent holds no lease (it must be granted one). */
int leases_renew(struct leases *l, const char *agent_id, uint64_t now);

/* A committed revoke: forget the lease. REMS_ENOTFOUND when absent. */
int leases_revoke(struct leases *l, const char *agent_id);

/* The remaining time of @agent_id's lease at @now (0 when expired), or
 * REMS_ENOTFOUND. */
int leases_remaining(const struct leases *l,
                     const char *agent_id,
                     uint64_t now,
                     uint64_t *out);

/* Collect up to @max agents whose lease has expired at @now and that are
 * not already being revoked; marks them revoking (the caller proposes the
 * revoke entries; leases_revoke() runs when they commit, leases_unmark()
 * when a proposal failed). Returns how many were written into @out. The
 * strings in @out point into the table: copy them before the next call that
 * changes it (grant, load, revoke). */
size_t leases_expired(struct leases *l,
                      uint64_t now,
                      const char **out,
                      size_t max);

/* A revoke proposal for @agent_id failed: it may be collected again. */
void leases_unmark(struct leases *l, const char *agent_id);

/* The earliest expiry among leases not being revoked, or UINT64_MAX. */
uint64_t leases_next_expiry(const struct leases *l);

/* Command deadlines (ADR 0004), pure arithmetic on the leader's wall clock
 * in milliseconds. */

/* The time to hand an agent for a command whose deadline is @deadline_ms,
 * at @now_ms: deadline - now - max_skew - send_margin. Returns false (do
 * not send) when that is not positive; else true and *@out (capped at
 * @cap_ms). */
bool leases_command_ttl(uint64_t deadline_ms,
                        uint64_t now_ms,
                        uint64_t max_skew_ms,
                        uint64_t send_margin_ms,
                        uint64_t cap_ms,
                        uint64_t *out);

/* True when a pending command with @deadline_ms may be resolved expired at
 * @now_ms: now >= deadline + max_skew (so that a leader whose clock runs
 * ahead never expires a command an agent may still execute in time).
 * A saturated deadline (UINT64_MAX) never expires. */
bool leases_command_expired(uint64_t deadline_ms,
                            uint64_t now_ms,
                            uint64_t max_skew_ms);

#endif /* REMS_CLUSTER_LEASES_H */
