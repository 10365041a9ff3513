/* The leader's lease table: grants, renewals, expiry, failover extension
 * (invariant 8) and allocation failures. */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/leases.h"
#include "tests/lib/heap.h"

struct fixture {
    struct test_heap heap;
    struct leases l;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_heap_install(&f->heap);
    leases_init(&f->l);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;
    leases_close(&f->l);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f);
    assert_int_equal(live, 0);
    return 0;
}

static uint64_t remaining(struct fixture *f, const char *id, uint64_t now)
{
    uint64_t r = 12345;
    assert_int_equal(leases_remaining(&f->l, id, now, &r), 0);
    return r;
}

/* A grant lasts its TTL; a heartbeat extends it from the heartbeat. */
static void grant_and_renew(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(leases_grant(&f->l, "a", 3000, 1000), 0);
    assert_int_equal(remaining(f, "a", 1000), 3000);
    assert_int_equal(remaining(f, "a", 3999), 1);
    assert_int_equal(remaining(f, "a", 4000), 0);
    assert_int_equal(leases_renew(&f->l, "a", 2000), 0);
    assert_int_equal(remaining(f, "a", 2000), 3000);
    /* A renewal never shortens: an old heartbeat processed late. */
    assert_int_equal(leases_renew(&f->l, "a", 1500), 0);
    assert_int_equal(remaining(f, "a", 2000), 3000);
    assert_int_equal(leases_renew(&f->l, "nobody", 2000), REMS_ENOTFOUND);
    assert_int_equal(leases_next_expiry(&f->l), 5000);
}

/* Invariant 8 across failover: a new leader loads each lease with its full
 * TTL plus one election timeout from the moment it became leader, which is
 * never earlier than the deadline the old leader promised. */
static void failover_extends(void **state)
{
    struct fixture *f = *state;
    struct leases old;
    uint64_t renewed;
    uint64_t old_deadline;
    uint64_t elected;

    leases_init(&old);
    for (renewed = 0; renewed < 10000; renewed += 997) {
        uint64_t r;
        assert_int_equal(leases_grant(&old, "a", 5000, 0), 0);
        assert_int_equal(leases_renew(&old, "a", renewed), 0);
        assert_int_equal(leases_remaining(&old, "a", renewed, &r), 0);
        old_deadline = renewed + r;
        /* The new leader is elected after the last renewal it never saw
         * (same time base here: monotonic clocks differ between machines,
         * but only durations matter: elected - renewed >= 0). */
        for (elected = renewed; elected < renewed + 6000; elected += 1500) {
            leases_clear(&f->l);
            assert_int_equal(leases_load(&f->l, "a", 5000, elected, 1000), 0);
            assert_true(elected + remaining(f, "a", elected) >= old_deadline);
            assert_int_equal(remaining(f, "a", elected), 6000);
        }
    }
    leases_close(&old);
    /* Loading twice keeps the later deadline. */
    assert_int_equal(leases_load(&f->l, "b", 1000, 100, 500), 0);
    assert_int_equal(leases_load(&f->l, "b", 1000, 0, 500), 0);
    assert_int_equal(remaining(f, "b", 100), 1500);
}

/* Expired leases are collected once, in id order, until revoked or
 * unmarked after a failed proposal. */
static void expiry(void **state)
{
    struct fixture *f = *state;
    const char *out[8];
    size_t n;

    assert_int_equal(leases_grant(&f->l, "c", 100, 0), 0);
    assert_int_equal(leases_grant(&f->l, "a", 100, 0), 0);
    assert_int_equal(leases_grant(&f->l, "b", 500, 0), 0);
    assert_int_equal(leases_expired(&f->l, 99, out, 8), 0);
    n = leases_expired(&f->l, 100, out, 8);
    assert_int_equal(n, 2);
    assert_string_equal(out[0], "a");
    assert_string_equal(out[1], "c");
    /* Already being revoked: not collected again. */
    assert_int_equal(leases_expired(&f->l, 200, out, 8), 0);
    assert_int_equal(leases_next_expiry(&f->l), 500);
    leases_unmark(&f->l, "c");
    n = leases_expired(&f->l, 200, out, 8);
    assert_int_equal(n, 1);
    assert_string_equal(out[0], "c");
    assert_int_equal(leases_revoke(&f->l, "a"), 0);
    assert_int_equal(leases_revoke(&f->l, "a"), REMS_ENOTFOUND);
    assert_int_equal(leases_remaining(&f->l, "a", 0, &(uint64_t){0}),
                     REMS_ENOTFOUND);
    /* A re-grant clears the revoking mark. */
    assert_int_equal(leases_grant(&f->l, "c", 100, 300), 0);
    assert_int_equal(leases_next_expiry(&f->l), 400);
    /* @max bounds the answer. */
    assert_int_equal(leases_expired(&f->l, 1000, out, 1), 1);
    assert_string_equal(out[0], "b");
}

static void bad_input(void **state)
{
    struct fixture *f = *state;
    char longid[LEASES_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(leases_grant(&f->l, "", 100, 0), REMS_EINVAL);
    assert_int_equal(leases_grant(&f->l, longid, 100, 0), REMS_EINVAL);
    assert_int_equal(leases_grant(&f->l, "a", 0, 0), REMS_EINVAL);
    assert_int_equal(leases_load(&f->l, "a", 0, 0, 10), REMS_EINVAL);
    longid[LEASES_ID_MAX] = '\0';
    assert_int_equal(leases_grant(&f->l, longid, 100, 0), 0);
    assert_int_equal(leases_next_expiry(&f->l), 100);
}

/* Many agents stay sorted; failing the growth allocation loses nothing. */
static void many_and_oom(void **state)
{
    struct fixture *f = *state;
    char id[32];
    int i;
    int rv;

    for (i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "agent-%04d", (i * 7919) % 1000);
        assert_int_equal(leases_grant(&f->l, id, 1000, (uint64_t)i), 0);
    }
    assert_int_equal(f->l.n, 1000);
    for (i = 1; i < 1000; i++) {
        assert_true(strcmp(f->l.entries[i - 1].agent_id,
                           f->l.entries[i].agent_id) < 0);
    }
    /* Fill to capacity, then make the next growth fail. */
    i = 1000;
    while (f->l.n < f->l.cap) {
        snprintf(id, sizeof id, "more-%04d", i++);
        assert_int_equal(leases_grant(&f->l, id, 1000, 0), 0);
    }
    test_heap_fail_after(&f->heap, 0);
    rv = leases_grant(&f->l, "zzz", 1000, 0);
    test_heap_fail_after(&f->heap, -1);
    assert_int_equal(rv, REMS_ENOMEM);
    assert_int_equal(leases_remaining(&f->l, "zzz", 0, &(uint64_t){0}),
                     REMS_ENOTFOUND);
    assert_int_equal(remaining(f, "agent-0000", 0), 1000);
}

/* ADR 0004: the remaining time handed to an agent and the expiry rule. */
static void command_deadlines(void **state)
{
    uint64_t ttl = 0;
    (void)state;
    /* 10 s left, 500 ms skew, 100 ms margin: 9.4 s. */
    assert_true(leases_command_ttl(20000, 10000, 500, 100, 86400000, &ttl));
    assert_true(ttl == 9400);
    /* Exactly spent, past, and at the deadline: not sent. */
    ttl = 7;
    assert_false(leases_command_ttl(10600, 10000, 500, 100, 86400000, &ttl));
    assert_false(leases_command_ttl(9000, 10000, 500, 100, 86400000, &ttl));
    assert_false(leases_command_ttl(10000, 10000, 0, 0, 86400000, &ttl));
    assert_true(ttl == 7); /* untouched */
    /* One millisecond left. */
    assert_true(leases_command_ttl(10601, 10000, 500, 100, 86400000, &ttl));
    assert_true(ttl == 1);
    /* Capped. */
    assert_true(leases_command_ttl(UINT64_MAX, 0, 0, 0, 86400000, &ttl));
    assert_true(ttl == 86400000);
    /* Expiry waits for deadline + skew. */
    assert_false(leases_command_expired(20000, 20000, 500));
    assert_false(leases_command_expired(20000, 20499, 500));
    assert_true(leases_command_expired(20000, 20500, 500));
    assert_true(leases_command_expired(20000, 20000, 0));
    assert_false(leases_command_expired(UINT64_MAX, UINT64_MAX, 0));
    assert_false(leases_command_expired(UINT64_MAX - 10, UINT64_MAX, 500));
    /* A command is never both sendable and expired. */
    {
        uint64_t now;
        for (now = 19000; now < 21000; now += 7) {
            bool send = leases_command_ttl(20000, now, 500, 100, 86400000,
                                           &ttl);
            assert_false(send && leases_command_expired(20000, now, 500));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(grant_and_renew, setup, teardown),
        cmocka_unit_test_setup_teardown(failover_extends, setup, teardown),
        cmocka_unit_test_setup_teardown(expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(many_and_oom, setup, teardown),
        cmocka_unit_test(command_deadlines),
    };
    return cmocka_run_group_tests_name("leases", tests, NULL, NULL);
}
