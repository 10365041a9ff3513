/* The leader's lease table: a sorted array searched by binary search.
 * Thousands of agents fit comfortably; expiry scans are linear but run at
 * most once per timer tick. See leases.h for the safety rule. */
#include "cluster/leases.h"

#include <stdio.h>
#include <string.h>

#include "common/assert.h"
#include "common/heap.h"

void leases_init(struct leases *l)
{
    memset(l, 0, sizeof *l);
}

void leases_close(struct leases *l)
{
    rems_free(l->entries);
    leases_init(l);
}

void leases_clear(struct leases *l)
{
    l->n = 0;
}

/* Index of @id, or where it would be inserted (*found false). */
static size_t find(const struct leases *l, const char *id, bool *found)
{
    size_t lo = 0;
    size_t hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->entries[mid].agent_id, id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = false;
    return lo;
}

/* The entry of @id, inserted when absent. */
static int upsert(struct leases *l,
                  const char *id,
                  struct leases_entry **out,
                  bool *created)
{
    size_t len = strlen(id);
    bool found;
    size_t i;

    if (len == 0 || len > LEASES_ID_MAX) {
        return REMS_EINVAL;
    }
    i = find(l, id, &found);
    if (!found) {
        if (l->n == l->cap) {
            size_t cap = l->cap == 0 ? 64 : l->cap * 2;
            struct leases_entry *e =
                rems_realloc(l->entries, cap * sizeof *e);
            if (e == NULL) {
                return REMS_ENOMEM;
            }
            l->entries = e;
            l->cap = cap;
        }
        memmove(&l->entries[i + 1], &l->entries[i],
                (l->n - i) * sizeof l->entries[0]);
        memset(&l->entries[i], 0, sizeof l->entries[i]);
        memcpy(l->entries[i].agent_id, id, len + 1);
        l->n++;
    }
    *out = &l->entries[i];
    *created = !found;
    return 0;
}

int leases_load(struct leases *l,
                const char *agent_id,
                uint64_t ttl_ms,
                uint64_t now,
                uint64_t election_timeout_ms)
{
    struct leases_entry *e;
    bool created;
    uint64_t expires = now + ttl_ms + election_timeout_ms;
    int rv;

    if (ttl_ms == 0) {
        return REMS_EINVAL;
    }
    rv = upsert(l, agent_id, &e, &created);
    if (rv != 0) {
        return rv;
    }
    e->ttl_ms = ttl_ms;
    if (created || expires > e->expires_ms) {
        e->expires_ms = expires;
    }
    return 0;
}

int leases_grant(struct leases *l,
                 const char *agent_id,
                 uint64_t ttl_ms,
                 uint64_t now)
{
    struct leases_entry *e;
    bool created;
    int rv;

    if (ttl_ms == 0) {
        return REMS_EINVAL;
    }
    rv = upsert(l, agent_id, &e, &created);
    if (rv != 0) {
        return rv;
    }
    e->ttl_ms = ttl_ms;
    /* A re-grant never shortens a lease already promised. */
    if (created || now + ttl_ms > e->expires_ms) {
        e->expires_ms = now + ttl_ms;
    }
    e->revoking = false;
    return 0;
}

int leases_renew(struct leases *l, const char *agent_id, uint64_t now)
{
    bool found;
    size_t i = find(l, agent_id, &found);
    struct leases_entry *e;
    if (!found) {
        return REMS_ENOTFOUND;
    }
    e = &l->entries[i];
    if (now + e->ttl_ms > e->expires_ms) {
        e->expires_ms = now + e->ttl_ms;
    }
    return 0;
}

int leases_revoke(struct leases *l, const char *agent_id)
{
    bool found;
    size_t i = find(l, agent_id, &found);
    if (!found) {
        return REMS_ENOTFOUND;
    }
    memmove(&l->entries[i], &l->entries[i + 1],
            (l->n - i - 1) * sizeof l->entries[0]);
    l->n--;
    return 0;
}

int leases_remaining(const struct leases *l,
                     const char *agent_id,
                     uint64_t now,
                     uint64_t *out)
{
    bool found;
    size_t i = find(l, agent_id, &found);
    if (!found) {
        return REMS_ENOTFOUND;
    }
    *out = l->entries[i].expires_ms > now ? l->entries[i].expires_ms - now
                                          : 0;
    return 0;
}

size_t leases_expired(struct leases *l,
                      uint64_t now,
                      const char **out,
                      size_t max)
{
    size_t i;
    size_t n = 0;
    for (i = 0; i < l->n && n < max; i++) {
        struct leases_entry *e = &l->entries[i];
        if (!e->revoking && e->expires_ms <= now) {
            e->revoking = true;
            out[n++] = e->agent_id;
        }
    }
    return n;
}

void leases_unmark(struct leases *l, const char *agent_id)
{
    bool found;
    size_t i = find(l, agent_id, &found);
    if (found) {
        l->entries[i].revoking = false;
    }
}

uint64_t leases_next_expiry(const struct leases *l)
{
    uint64_t next = UINT64_MAX;
    size_t i;
    for (i = 0; i < l->n; i++) {
        if (!l->entries[i].revoking && l->entries[i].expires_ms < next) {
            next = l->entries[i].expires_ms;
        }
    }
    return next;
}

bool leases_command_ttl(uint64_t deadline_ms,
                        uint64_t now_ms,
                        uint64_t max_skew_ms,
                        uint64_t send_margin_ms,
                        uint64_t cap_ms,
                        uint64_t *out)
{
    uint64_t spend = max_skew_ms + send_margin_ms;
    uint64_t left;
    if (deadline_ms <= now_ms || deadline_ms - now_ms <= spend) {
        return false;
    }
    left = deadline_ms - now_ms - spend;
    *out = left < cap_ms ? left : cap_ms;
    return true;
}

bool leases_command_expired(uint64_t deadline_ms,
                            uint64_t now_ms,
                            uint64_t max_skew_ms)
{
    if (deadline_ms == UINT64_MAX || deadline_ms > UINT64_MAX - max_skew_ms) {
        return false;
    }
    return now_ms >= deadline_ms + max_skew_ms;
}
