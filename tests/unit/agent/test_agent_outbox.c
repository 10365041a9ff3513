/* Tests of agentproto/agent_outbox.c: order, the bound and its dropped
 * count, splitting over frames, text cleaned for the wire, and allocation
 * failures. Every encoded frame is decoded back with proto.h. */
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

#include "agentproto/agent_outbox.h"
#include "tests/lib/heap.h"

struct fixture {
    struct test_heap heap;
    struct agent_outbox o;
    struct rems_buf buf;
    struct proto_msg m;
    char errmsg[REMS_ERRMSG_SIZE];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_heap_install(&f->heap);
    rems_buf_init(&f->buf);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

    proto_msg_close(&f->m);
    agent_outbox_close(&f->o);
    rems_buf_close(&f->buf);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f);
    assert_int_equal(live, 0); /* Last, so a leak still cleans up. */
    return 0;
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* A status of service @name in generation @gen with message @msg. */
static struct proto_service
status(const char *name, uint64_t gen, const char *msg)
{
    struct proto_service s;
    memset(&s, 0, sizeof s);
    s.service.p = name;
    s.service.len = strlen(name);
    s.state = PROTO_STATE_RUNNING;
    s.generation = gen;
    s.health = PROTO_HEALTH_HEALTHY;
    s.ready = true;
    s.since_ms = 1000 + gen;
    if (msg != NULL) {
        s.message.p = msg;
        s.message.len = strlen(msg);
    }
    return s;
}

static void push(struct fixture *f, const char *name, uint64_t gen)
{
    struct proto_service s = status(name, gen, "up");
    assert_int_equal(agent_outbox_push(&f->o, &s, f->errmsg), 0);
}

/* Encode the next report (seq @seq, frames of @max bytes), check that it
 * decodes, keep it in f->m, consume it, and return its item count. */
static size_t take(struct fixture *f, uint64_t seq, size_t max)
{
    uint32_t len;
    size_t n;

    proto_msg_close(&f->m);
    f->buf.len = 0;
    assert_int_equal(
        agent_outbox_encode(&f->o, seq, max, &f->buf, &n, f->errmsg), 0);
    assert_true(f->buf.len >= 4);
    len = (uint32_t)((unsigned char)f->buf.data[0] << 24 |
                     (unsigned char)f->buf.data[1] << 16 |
                     (unsigned char)f->buf.data[2] << 8 |
                     (unsigned char)f->buf.data[3]);
    assert_int_equal(len, f->buf.len - 4);
    assert_true(len <= (max != 0 ? max : PROTO_FRAME_MAX_DEFAULT));
    assert_int_equal(proto_msg_decode(f->buf.data + 4, len, &f->m, f->errmsg),
                     0);
    assert_int_equal(f->m.type, PROTO_REPORT);
    assert_int_equal(f->m.report.seq, seq);
    assert_int_equal(f->m.report.n_items, n);
    agent_outbox_consume(&f->o, n);
    return n;
}

/* The generation of item @i of the last report. */
static uint64_t gen_at(struct fixture *f, size_t i)
{
    return f->m.report.items[i].generation;
}

/* Changes leave in order, and consume empties the queue. */
static void in_order(void **state)
{
    struct fixture *f = *state;
    uint64_t g;

    agent_outbox_init(&f->o, 100);
    assert_false(agent_outbox_pending(&f->o));
    for (g = 1; g <= 5; g++) {
        push(f, g % 2 ? "web" : "db", g);
    }
    assert_int_equal(agent_outbox_len(&f->o), 5);
    assert_true(agent_outbox_pending(&f->o));
    assert_int_equal(take(f, 1, 0), 5);
    for (g = 0; g < 5; g++) {
        assert_int_equal(gen_at(f, g), g + 1);
    }
    assert_int_equal(f->m.report.dropped, 0);
    assert_true(f->m.report.items[1].service.len == 2 &&
                memcmp(f->m.report.items[1].service.p, "db", 2) == 0);
    assert_int_equal(f->m.report.items[0].since_ms, 1001);
    assert_int_equal(agent_outbox_len(&f->o), 0);
    assert_false(agent_outbox_pending(&f->o));
    /* The ring wraps: more pushes after a partial consume. */
    for (g = 10; g < 60; g++) {
        push(f, "web", g);
        if (g % 7 == 0) {
            assert_true(take(f, g, 0) > 0);
            assert_int_equal(gen_at(f, f->m.report.n_items - 1), g);
        }
    }
}

/* A full queue drops its oldest changes, counts them once in the next
 * report, and starts counting again. */
static void overflow(void **state)
{
    struct fixture *f = *state;
    uint64_t g;

    agent_outbox_init(&f->o, 3);
    for (g = 1; g <= 8; g++) {
        push(f, "web", g);
    }
    assert_int_equal(agent_outbox_len(&f->o), 3);
    assert_int_equal(agent_outbox_dropped(&f->o), 5);
    assert_int_equal(take(f, 7, 0), 3);
    assert_int_equal(f->m.report.dropped, 5);
    assert_int_equal(gen_at(f, 0), 6);
    assert_int_equal(gen_at(f, 2), 8);
    assert_int_equal(agent_outbox_dropped(&f->o), 0);
    push(f, "web", 9);
    assert_int_equal(take(f, 8, 0), 1);
    assert_int_equal(f->m.report.dropped, 0);

    /* Five more into three places: two dropped. */
    for (g = 10; g <= 14; g++) {
        push(f, "web", g);
    }
    assert_int_equal(take(f, 9, 0), 3);
    assert_int_equal(f->m.report.dropped, 2);
}

/* A long queue is split over frames that each fit, in order, at most
 * PROTO_ITEMS_MAX items each. */
static void split(void **state)
{
    struct fixture *f = *state;
    uint64_t next = 1;
    size_t total = 0;
    size_t n;
    size_t i;
    uint64_t g;

    agent_outbox_init(&f->o, 5000);
    for (g = 1; g <= 40; g++) {
        push(f, "a-service-with-a-long-name", g);
    }
    while (agent_outbox_pending(&f->o)) {
        n = take(f, 1, 400);
        assert_true(n >= 1 && n < 40);
        for (i = 0; i < n; i++) {
            assert_int_equal(gen_at(f, i), next++);
        }
        total += n;
    }
    assert_int_equal(total, 40);

    for (g = 1; g <= 1500; g++) {
        push(f, "web", g);
    }
    assert_int_equal(take(f, 2, 0), PROTO_ITEMS_MAX);
    assert_int_equal(gen_at(f, 0), 1);
    assert_int_equal(take(f, 3, 0), 1500 - PROTO_ITEMS_MAX);
    assert_int_equal(gen_at(f, 0), PROTO_ITEMS_MAX + 1);
}

/* An item that cannot fit a frame even alone is dropped and counted. */
static void too_big_alone(void **state)
{
    struct fixture *f = *state;
    char msg[600];
    struct proto_service s;

    agent_outbox_init(&f->o, 10);
    memset(msg, 'x', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    s = status("web", 1, msg);
    assert_int_equal(agent_outbox_push(&f->o, &s, f->errmsg), 0);
    push(f, "db", 2);
    assert_int_equal(take(f, 1, 200), 1);
    assert_int_equal(f->m.report.dropped, 1);
    assert_int_equal(gen_at(f, 0), 2);
}

/* Messages are made fit for the wire; invalid statuses are refused. */
static void text(void **state)
{
    struct fixture *f = *state;
    char longmsg[1100];
    struct proto_service s;
    const struct proto_str *m;

    agent_outbox_init(&f->o, 10);
    s = status("web", 1, "bad \xff byte, cut\xc3");
    assert_int_equal(agent_outbox_push(&f->o, &s, f->errmsg), 0);
    s = status("web", 2, NULL);
    s.message.p = "before\0after";
    s.message.len = 12;
    assert_int_equal(agent_outbox_push(&f->o, &s, f->errmsg), 0);
    /* 1023 ASCII bytes and a 2-byte character: the character goes. */
    memset(longmsg, 'a', 1023);
    memcpy(longmsg + 1023, "\xc3\xa9tail", 6);
    s = status("web", 3, NULL);
    s.message.p = longmsg;
    s.message.len = 1029;
    assert_int_equal(agent_outbox_push(&f->o, &s, f->errmsg), 0);
    assert_int_equal(take(f, 1, 0), 3);
    m = &f->m.report.items[0].message;
    assert_int_equal(m->len, strlen("bad ? byte, cut?"));
    assert_memory_equal(m->p, "bad ? byte, cut?", m->len);
    m = &f->m.report.items[1].message;
    assert_int_equal(m->len, 6);
    assert_memory_equal(m->p, "before", 6);
    assert_int_equal(f->m.report.items[2].message.len, 1023);

    s = status("bad name", 4, NULL);
    assert_int_equal(agent_outbox_push(&f->o, &s, f->errmsg), REMS_EINVAL);
    assert_string_equal(f->errmsg, "service: must be characters of "
                                   "[A-Za-z0-9_.:@-]");
    s = status("", 4, NULL);
    assert_int_equal(agent_outbox_push(&f->o, &s, f->errmsg), REMS_EINVAL);
    s = status("web", 4, NULL);
    s.state = 0;
    assert_int_equal(agent_outbox_push(&f->o, &s, f->errmsg), REMS_EINVAL);
    assert_string_equal(f->errmsg, "web: state: unknown state 0");
    s.state = PROTO_STATE_RUNNING;
    s.health = PROTO_HEALTH_NR;
    assert_int_equal(agent_outbox_push(&f->o, &s, f->errmsg), REMS_EINVAL);
    assert_int_equal(agent_outbox_len(&f->o), 0);
    assert_int_equal(agent_outbox_dropped(&f->o), 0);
}

/* A change that cannot be stored is counted as dropped; an encode that
 * cannot allocate leaves the queue as it was. */
static void out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct proto_service s = status("web", 1, "m");
    size_t n;
    int rv;
    int k;

    agent_outbox_init(&f->o, 100);
    for (k = 0; k < 2; k++) {
        test_heap_fail_after(&f->heap, k);
        rv = agent_outbox_push(&f->o, &s, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
    }
    assert_int_equal(agent_outbox_len(&f->o), 0);
    assert_int_equal(agent_outbox_dropped(&f->o), 2);
    /* Only a count to report: a report with no items. */
    assert_true(agent_outbox_pending(&f->o));
    assert_int_equal(take(f, 1, 0), 0);
    assert_int_equal(f->m.report.dropped, 2);
    assert_false(agent_outbox_pending(&f->o));
    push(f, "web", 2);
    for (k = 0;; k++) {
        f->buf.len = 0;
        test_heap_fail_after(&f->heap, k);
        rv = agent_outbox_encode(&f->o, 1, 0, &f->buf, &n, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_int_equal(f->buf.len, 0);
        assert_int_equal(agent_outbox_len(&f->o), 1);
        rems_buf_close(&f->buf);
        rems_buf_init(&f->buf);
    }
    assert_int_equal(take(f, 2, 0), 1);
    assert_int_equal(f->m.report.dropped, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(in_order),      TEST(overflow), TEST(split),
        TEST(too_big_alone), TEST(text),     TEST(out_of_memory),
    };
    return cmocka_run_group_tests_name("agent_outbox", tests, NULL, NULL);
}
