/* Tests of rems-lincheck: hand-made register histories with known
 * verdicts, malformed input, the failure window, large random histories of
 * a simulated linearizable register (valid, then with one read corrupted:
 * to a value nobody wrote, with and without info ops, and to a stale one),
 * the command line, fixture files and an out-of-memory sweep.
 *
 * Hand-made histories are written in a compact form that spec_json() turns
 * into JSON lines, one event per line:
 *
 *   PROCESS TYPE TIME F VALUE [KEY]
 *
 * VALUE is raw JSON without spaces ("5", "null", "[0,1]"); KEY defaults to
 * r1 and "-" leaves it out. The random tests print their seed; REMS_SEED=n
 * replays seed n, REMS_LINCHECK_OPS=n changes the number of operations and
 * REMS_LINCHECK_DUMP=dir writes each random history to dir/<test>.jsonl (to
 * time rems-lincheck on it, for instance).
 *
 * main.c is built into this file with LINCHECK_NO_MAIN, so the command's
 * cli_run() can be called with the test's own streams. jansson allocates
 * through the test heap, so every test checks that nothing leaked. */
#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include "jepsen/lincheck/main.c"
#include "tests/lib/heap.h"
#include "tests/lib/tmpdir.h"

#ifndef LINCHECK_HISTORIES_DIR
#error "LINCHECK_HISTORIES_DIR must name tests/unit/lincheck/histories"
#endif

/* ------------------------------------------------------------------------
 * Fixture and helpers
 * ------------------------------------------------------------------------ */

struct fixture {
    struct test_heap heap;
    struct lincheck_history *h;
    struct lincheck_result r;
    char errmsg[REMS_ERRMSG_SIZE];
    char *json; /* Last spec_json() result, malloc()ed. */
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

    lincheck_result_close(&f->r);
    lincheck_history_free(f->h);
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    free(f->json);
    free(f);
    assert_int_equal(live, 0); /* Last, so a leak still cleans up. */
    return 0;
}

/* Turn the compact @spec into JSON lines (malloc()ed, owned by @f). */
static const char *spec_json(struct fixture *f, const char *spec)
{
    size_t cap = 512;
    size_t len = 0;
    const char *s = spec;
    long index = 0;

    for (; *s != '\0'; s++) {
        cap += *s == '\n' ? 320 : 0;
    }
    s = spec;

    free(f->json);
    f->json = malloc(cap);
    assert_non_null(f->json);
    f->json[0] = '\0';
    while (*s != '\0') {
        char proc[32] = "";
        char type[16] = "";
        char fname[16] = "";
        char value[64] = "";
        char key[32] = "r1";
        long long t = 0;
        const char *nl = strchr(s, '\n');
        size_t n = nl != NULL ? (size_t)(nl - s) : strlen(s);
        char line[256];
        int fields;

        assert_true(n < sizeof line);
        memcpy(line, s, n);
        line[n] = '\0';
        s += n + (nl != NULL);
        fields = sscanf(line, "%31s %15s %lld %15s %63s %31s", proc, type, &t,
                        fname, value, key);
        if (fields <= 0) {
            continue;
        }
        assert_true(fields >= 5);
        assert_true(len + 320 < cap);
        len += (size_t)snprintf(
            f->json + len, cap - len,
            "{\"index\": %ld, \"type\": \"%s\", \"process\": %s%s%s, "
            "\"time\": %lld, \"f\": \"%s\"",
            index++, type, proc[0] == 'n' ? "\"" : "", proc,
            proc[0] == 'n' ? "\"" : "", t, fname);
        if (strcmp(key, "-") != 0) {
            len += (size_t)snprintf(f->json + len, cap - len,
                                    ", \"key\": \"%s\"", key);
        }
        len += (size_t)snprintf(f->json + len, cap - len, ", \"value\": %s}\n",
                                value);
    }
    return f->json;
}

/* Parse and check @spec; returns the overall verdict. */
static enum lincheck_verdict check_spec(struct fixture *f, const char *spec)
{
    const char *json = spec_json(f, spec);

    lincheck_result_close(&f->r);
    lincheck_history_free(f->h);
    f->h = NULL;
    assert_int_equal(
        lincheck_history_parse(json, strlen(json), &f->h, f->errmsg), 0);
    assert_int_equal(lincheck_check(f->h, NULL, &f->r, f->errmsg), 0);
    return f->r.verdict;
}

/* The result of key @name in @f->r. */
static const struct lincheck_key_result *key_result(struct fixture *f,
                                                    const char *name)
{
    size_t i;

    for (i = 0; i < f->r.nkeys; i++) {
        if (strcmp(f->r.keys[i].key, name) == 0) {
            return &f->r.keys[i];
        }
    }
    fail_msg("no result for key %s", name);
    return NULL;
}

/* The window of @kr holds its breaking op, at most LINCHECK_WINDOW_MAX ops,
 * in invoke order. */
static void assert_window_sane(const struct lincheck_key_result *kr)
{
    bool found = false;
    size_t i;

    assert_int_equal(kr->verdict, LINCHECK_INVALID);
    assert_non_null(kr->breaking);
    assert_true(kr->nwindow >= 1 && kr->nwindow <= LINCHECK_WINDOW_MAX);
    for (i = 0; i < kr->nwindow; i++) {
        found |= kr->window[i] == kr->breaking;
        if (i > 0) {
            assert_true(kr->window[i - 1]->line < kr->window[i]->line);
        }
    }
    assert_true(found);
}

/* ------------------------------------------------------------------------
 * Hand-made histories
 * ------------------------------------------------------------------------ */

/* One client, one operation after the other. */
static void sequential_ok(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(check_spec(f, "1 invoke 0 read null\n"
                                   "1 ok 5 read null\n"
                                   "1 invoke 10 write 1\n"
                                   "1 ok 15 write 1\n"
                                   "1 invoke 20 read null\n"
                                   "1 ok 25 read 1\n"
                                   "1 invoke 30 cas [1,2]\n"
                                   "1 ok 35 cas [1,2]\n"
                                   "1 invoke 40 read null\n"
                                   "1 ok 45 read 2\n"),
                     LINCHECK_VALID);
    assert_int_equal(f->r.nkeys, 1);
    assert_string_equal(f->r.keys[0].key, "r1");
    assert_int_equal(f->r.keys[0].ops, 5);
    assert_int_equal(f->r.keys[0].info, 0);
    /* The same, with the first read seeing a value nobody wrote yet. */
    assert_int_equal(check_spec(f, "1 invoke 0 read null\n"
                                   "1 ok 5 read 1\n"
                                   "1 invoke 10 write 1\n"
                                   "1 ok 15 write 1\n"),
                     LINCHECK_INVALID);
}

/* Concurrent writes may take effect in either order, but once reads have
 * fixed the order after both completed, it cannot change. */
static void concurrent_writes_either_order(void **state)
{
    struct fixture *f = *state;
    static const char writes[] = "1 invoke 0 write 1\n"
                                 "2 invoke 0 write 2\n"
                                 "1 ok 100 write 1\n"
                                 "2 ok 100 write 2\n";
    char spec[1024];

    snprintf(spec, sizeof spec, "%s3 invoke 110 read null\n3 ok 120 read 1\n",
             writes);
    assert_int_equal(check_spec(f, spec), LINCHECK_VALID);
    snprintf(spec, sizeof spec, "%s3 invoke 110 read null\n3 ok 120 read 2\n",
             writes);
    assert_int_equal(check_spec(f, spec), LINCHECK_VALID);
    snprintf(spec, sizeof spec, "%s3 invoke 110 read null\n3 ok 120 read 3\n",
             writes);
    assert_int_equal(check_spec(f, spec), LINCHECK_INVALID);
    /* Reads during the writes see 2 then 1: w2, r2, w1, r1. */
    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "2 invoke 0 write 2\n"
                                   "3 invoke 10 read null\n"
                                   "3 ok 20 read 2\n"
                                   "3 invoke 30 read null\n"
                                   "3 ok 40 read 1\n"
                                   "1 ok 100 write 1\n"
                                   "2 ok 100 write 2\n"
                                   "3 invoke 110 read null\n"
                                   "3 ok 120 read 1\n"),
                     LINCHECK_VALID);
    /* After both completed, 2 then 1 again: impossible. */
    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "2 invoke 0 write 2\n"
                                   "1 ok 100 write 1\n"
                                   "2 ok 100 write 2\n"
                                   "3 invoke 110 read null\n"
                                   "3 ok 120 read 2\n"
                                   "3 invoke 130 read null\n"
                                   "3 ok 140 read 1\n"),
                     LINCHECK_INVALID);
}

/* A read returns an older value after a later write completed. */
static void stale_read(void **state)
{
    struct fixture *f = *state;
    const struct lincheck_key_result *kr;

    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 20 write 2\n"
                                   "2 ok 30 write 2\n"
                                   "3 invoke 40 read null\n"
                                   "3 ok 50 read 1\n"),
                     LINCHECK_INVALID);
    kr = key_result(f, "r1");
    assert_window_sane(kr);
    assert_int_equal(kr->breaking->index, 4);
    assert_int_equal(kr->breaking->f, LINCHECK_READ);
    assert_int_equal(kr->breaking->a, 1);
}

/* A completed write is never seen: reads concurrent with it may miss it,
 * but reads after it keep seeing the value before it. */
static void lost_write(void **state)
{
    struct fixture *f = *state;
    const struct lincheck_key_result *kr;

    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 20 write 2\n"
                                   "1 invoke 25 read null\n"
                                   "2 ok 30 write 2\n"
                                   "1 ok 35 read 1\n"
                                   "3 invoke 40 read null\n"
                                   "3 ok 50 read 1\n"
                                   "1 invoke 60 write 3\n"
                                   "1 ok 70 write 3\n"
                                   "3 invoke 80 read null\n"
                                   "3 ok 90 read 3\n"),
                     LINCHECK_INVALID);
    kr = key_result(f, "r1");
    assert_window_sane(kr);
    assert_int_equal(kr->breaking->index, 6); /* The read at 40. */
    /* Without the read at 40 it is fine: the read at 25 ran before w2. */
    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 20 write 2\n"
                                   "1 invoke 25 read null\n"
                                   "2 ok 30 write 2\n"
                                   "1 ok 35 read 1\n"
                                   "1 invoke 60 write 3\n"
                                   "1 ok 70 write 3\n"
                                   "3 invoke 80 read null\n"
                                   "3 ok 90 read 3\n"),
                     LINCHECK_VALID);
}

/* Two cas from the same expected value both succeed. */
static void cas_anomaly(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(check_spec(f, "1 invoke 0 write 0\n"
                                   "1 ok 10 write 0\n"
                                   "1 invoke 20 cas [0,1]\n"
                                   "2 invoke 25 cas [0,2]\n"
                                   "1 ok 30 cas [0,1]\n"
                                   "2 ok 35 cas [0,2]\n"
                                   "3 invoke 40 read null\n"
                                   "3 ok 50 read 2\n"),
                     LINCHECK_INVALID);
    assert_window_sane(key_result(f, "r1"));
    /* When the second one fails, as it must, all is well. */
    assert_int_equal(check_spec(f, "1 invoke 0 write 0\n"
                                   "1 ok 10 write 0\n"
                                   "1 invoke 20 cas [0,1]\n"
                                   "2 invoke 25 cas [0,2]\n"
                                   "1 ok 30 cas [0,1]\n"
                                   "2 fail 35 cas [0,2]\n"
                                   "3 invoke 40 read null\n"
                                   "3 ok 50 read 1\n"),
                     LINCHECK_VALID);
    /* A cas from absent (null) succeeds only before the first write. */
    assert_int_equal(check_spec(f, "1 invoke 0 cas [null,5]\n"
                                   "1 ok 10 cas [null,5]\n"
                                   "1 invoke 20 read null\n"
                                   "1 ok 30 read 5\n"),
                     LINCHECK_VALID);
    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "1 invoke 20 cas [null,5]\n"
                                   "1 ok 30 cas [null,5]\n"),
                     LINCHECK_INVALID);
}

/* An info write must be allowed to take effect, long after it timed out. */
static void info_write_takes_effect(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 20 write 2\n"
                                   "2 info 30 write 2\n"
                                   "1 invoke 40 read null\n"
                                   "1 ok 50 read 1\n"
                                   "1 invoke 100 read null\n"
                                   "1 ok 110 read 2\n"),
                     LINCHECK_VALID);
    assert_int_equal(key_result(f, "r1")->info, 1);
    /* Info cas chains: 1 -> 2 -> 3, both unknown. */
    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 20 cas [1,2]\n"
                                   "2 info 30 cas [1,2]\n"
                                   "3 invoke 40 cas [2,3]\n"
                                   "3 info 50 cas [2,3]\n"
                                   "1 invoke 100 read null\n"
                                   "1 ok 110 read 3\n"),
                     LINCHECK_VALID);
    /* Nor may it be left out when it is the only source of a value. */
    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 20 cas [1,2]\n"
                                   "2 info 30 cas [1,2]\n"
                                   "1 invoke 100 read null\n"
                                   "1 ok 110 read 3\n"),
                     LINCHECK_INVALID);
    /* ... and it may equally never take effect. */
    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 20 write 2\n"
                                   "2 info 30 write 2\n"
                                   "1 invoke 40 read null\n"
                                   "1 ok 50 read 1\n"
                                   "1 invoke 100 read null\n"
                                   "1 ok 110 read 1\n"),
                     LINCHECK_VALID);
}

/* An info write takes effect at most once: once reads have seen it, the old
 * value cannot come back. */
static void info_write_once(void **state)
{
    struct fixture *f = *state;
    const struct lincheck_key_result *kr;

    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 20 write 2\n"
                                   "2 info 30 write 2\n"
                                   "1 invoke 40 read null\n"
                                   "1 ok 50 read 2\n"
                                   "1 invoke 60 read null\n"
                                   "1 ok 70 read 1\n"),
                     LINCHECK_INVALID);
    kr = key_result(f, "r1");
    assert_window_sane(kr);
    assert_int_equal(kr->breaking->index, 6);
    /* An info cas that flip-flops the same way. */
    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 20 cas [1,2]\n"
                                   "2 info 30 cas [1,2]\n"
                                   "1 invoke 40 read null\n"
                                   "1 ok 50 read 2\n"
                                   "1 invoke 60 read null\n"
                                   "1 ok 70 read 1\n"),
                     LINCHECK_INVALID);
    /* An info write nobody sees does not hide a stale read. */
    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "3 invoke 12 write 7\n"
                                   "3 info 14 write 7\n"
                                   "2 invoke 20 write 2\n"
                                   "2 ok 30 write 2\n"
                                   "1 invoke 40 read null\n"
                                   "1 ok 50 read 1\n"),
                     LINCHECK_INVALID);
}

/* Operations still running when the test ended are info; unfinished reads
 * are dropped. */
static void never_completed_at_end(void **state)
{
    struct fixture *f = *state;
    const struct lincheck_key_result *kr;

    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "1 invoke 20 read null\n"
                                   "1 ok 30 read 1\n"
                                   "2 invoke 40 write 2\n"
                                   "3 invoke 41 read null\n"
                                   "4 invoke 42 cas [1,3]\n"
                                   "1 invoke 50 read null\n"
                                   "1 ok 60 read 3\n"),
                     LINCHECK_VALID);
    kr = key_result(f, "r1");
    assert_int_equal(kr->ops, 5);  /* w1, r1, w2, cas, r3 */
    assert_int_equal(kr->info, 2); /* w2, cas */
}

/* Failed operations never took effect; info reads tell nothing. */
static void failed_ops_ignored(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 20 write 2\n"
                                   "2 fail 30 write 2\n"
                                   "3 invoke 35 cas [1,5]\n"
                                   "3 fail 38 cas [1,5]\n"
                                   "1 invoke 40 read null\n"
                                   "1 ok 50 read 1\n"
                                   "4 invoke 55 read null\n"
                                   "4 info 58 read null\n"
                                   "1 invoke 60 read null\n"
                                   "1 fail 70 read null\n"
                                   "1 invoke 80 read null\n"
                                   "1 ok 90 read 1\n"),
                     LINCHECK_VALID);
    assert_int_equal(key_result(f, "r1")->ops, 3);
}

/* Nemesis events and the set workload are not register operations. */
static void other_events_ignored(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(check_spec(f, "nemesis info 0 start-partition "
                                   "\"majority-ring\" -\n"
                                   "1 invoke 0 write 1\n"
                                   "5 invoke 2 add 7 -\n"
                                   "1 ok 10 write 1\n"
                                   "5 ok 12 add 7 -\n"
                                   "6 invoke 13 read null -\n"
                                   "6 ok 14 read [7] -\n"
                                   "7 invoke 15 read null s1\n"
                                   "7 ok 16 read [7] s1\n"
                                   "nemesis info 20 stop-partition null -\n"
                                   "1 invoke 20 read null\n"
                                   "1 ok 30 read 1\n"),
                     LINCHECK_VALID);
    assert_int_equal(f->r.nkeys, 1);
    assert_int_equal(lincheck_history_nkeys(f->h), 1);
    assert_string_equal(lincheck_history_key(f->h, 0), "r1");
}

/* Only the broken key is reported broken. */
static void multiple_keys(void **state)
{
    struct fixture *f = *state;
    const struct lincheck_key_result *kr;
    FILE *out = tmpfile();
    char text[4096];
    size_t n;

    assert_non_null(out);
    assert_int_equal(check_spec(f, "1 invoke 0 write 1 r1\n"
                                   "2 invoke 0 write 1 r2\n"
                                   "3 invoke 0 write 1 r3\n"
                                   "1 ok 10 write 1 r1\n"
                                   "2 ok 10 write 1 r2\n"
                                   "3 ok 10 write 1 r3\n"
                                   "1 invoke 20 write 2 r2\n"
                                   "2 invoke 20 write 2 r1\n"
                                   "1 ok 30 write 2 r2\n"
                                   "2 ok 30 write 2 r1\n"
                                   "1 invoke 40 read null r1\n"
                                   "2 invoke 40 read null r2\n"
                                   "3 invoke 40 read null r3\n"
                                   "1 ok 50 read 2 r1\n"
                                   "2 ok 50 read 1 r2\n"
                                   "3 ok 50 read 1 r3\n"),
                     LINCHECK_INVALID);
    assert_int_equal(f->r.nkeys, 3);
    assert_string_equal(f->r.keys[0].key, "r1");
    assert_string_equal(f->r.keys[1].key, "r2");
    assert_string_equal(f->r.keys[2].key, "r3");
    assert_int_equal(f->r.keys[0].verdict, LINCHECK_VALID);
    assert_int_equal(f->r.keys[1].verdict, LINCHECK_INVALID);
    assert_int_equal(f->r.keys[2].verdict, LINCHECK_VALID);
    kr = key_result(f, "r2");
    assert_window_sane(kr);
    assert_int_equal(kr->breaking->index, 11);
    assert_int_equal(lincheck_result_print(&f->r, out), 0);
    rewind(out);
    n = fread(text, 1, sizeof text - 1, out);
    text[n] = '\0';
    fclose(out);
    assert_non_null(strstr(text, "key r1: linearizable (3 ops, 0 info)\n"));
    assert_non_null(strstr(text, "key r2: NOT linearizable (3 ops, 0 info)\n"));
    assert_non_null(strstr(text, "key r3: linearizable (2 ops, 0 info)\n"));
    assert_non_null(strstr(text, "\nvalid: false\n"));
}

/* Intervals that only touch count as concurrent. */
static void touching_is_concurrent(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "2 invoke 10 read null\n"
                                   "1 ok 10 write 1\n"
                                   "2 ok 20 read null\n"),
                     LINCHECK_VALID);
    assert_int_equal(check_spec(f, "1 invoke 0 write 1\n"
                                   "1 ok 10 write 1\n"
                                   "2 invoke 11 read null\n"
                                   "2 ok 20 read null\n"),
                     LINCHECK_INVALID);
}

/* The window around a stale read in the middle of a longer history: the
 * breaking op is the stale read, and nothing invoked after it returned is
 * shown. */
static void window_holds_breaking_op(void **state)
{
    struct fixture *f = *state;
    const struct lincheck_key_result *kr;
    char *spec = malloc(1 << 16);
    size_t len = 0;
    long t = 0;
    int i;

    assert_non_null(spec);
    for (i = 1; i <= 40; i++) {
        len += (size_t)sprintf(spec + len,
                               "1 invoke %ld write %d\n1 ok %ld write %d\n"
                               "2 invoke %ld read null\n2 ok %ld read %d\n",
                               t, i, t + 5, i, t + 10, t + 15, i);
        t += 20;
        if (i == 25) {
            /* Stale read, with two writes concurrent with it. */
            len += (size_t)sprintf(spec + len,
                                   "3 invoke %ld read null\n"
                                   "4 invoke %ld write 100\n"
                                   "4 ok %ld write 100\n"
                                   "5 invoke %ld write 101\n"
                                   "3 ok %ld read 24\n"
                                   "5 ok %ld write 101\n",
                                   t, t + 1, t + 2, t + 3, t + 4, t + 20);
            t += 30;
        }
    }
    assert_int_equal(check_spec(f, spec), LINCHECK_INVALID);
    free(spec);
    kr = key_result(f, "r1");
    assert_window_sane(kr);
    assert_int_equal(kr->breaking->process, 3);
    assert_int_equal(kr->breaking->a, 24);
    assert_int_equal(kr->nwindow, LINCHECK_WINDOW_MAX);
    assert_int_equal(kr->window[kr->nwindow - 1]->b, 101);
    assert_int_equal(kr->window[kr->nwindow - 2]->b, 100);
    assert_ptr_equal(kr->window[kr->nwindow - 3], kr->breaking);
}

/* ------------------------------------------------------------------------
 * Malformed input
 * ------------------------------------------------------------------------ */

struct bad_case {
    const char *spec; /* Compact form, or raw JSON lines when it starts '{' */
    const char *prefix;
};

static void malformed_lines(void **state)
{
    struct fixture *f = *state;
    static const struct bad_case cases[] = {
        {"{\"type\": \"invoke\", \"process\": 1, \"time\": 0, \"f\": "
         "\"write\", \"key\": \"r1\", \"value\": 1}\n"
         "this is not json\n",
         "line 2: invalid JSON: "},
        {"{\"type\": \"invoke\", \"process\": 1, \"time\": 0, \"f\": "
         "\"write\", \"key\": \"r1\", \"value\": 1}\n\n"
         "[1, 2]\n",
         "line 3: not a JSON object"},
        {"{\"type\": \"started\", \"process\": 1, \"time\": 0, \"f\": "
         "\"read\", \"key\": \"r1\"}\n",
         "line 1: \"type\" must be"},
        {"{\"type\": \"ok\", \"process\": 1.5, \"time\": 0, \"f\": "
         "\"read\", \"key\": \"r1\"}\n",
         "line 1: \"process\" must be"},
        {"{\"type\": \"ok\", \"process\": 1, \"time\": -4, \"f\": "
         "\"read\", \"key\": \"r1\"}\n",
         "line 1: \"time\" must be"},
        {"{\"type\": \"ok\", \"process\": 1, \"time\": 4, \"f\": 3}\n",
         "line 1: \"f\" must be"},
        {"1 ok 0 write 1\n", "line 1: ok for process 1, which has no pending"},
        {"1 invoke 0 write 1\n1 invoke 5 write 2\n",
         "line 2: process 1 invokes again before its operation from line 1"},
        {"1 invoke 0 cas [1]\n", "line 1: the value of a cas"},
        {"1 invoke 0 cas [1,null]\n", "line 1: the value of a cas"},
        {"1 invoke 0 write \"x\"\n", "line 1: the value of a write"},
        {"1 invoke 0 write 1 -\n", "line 1: a write needs a \"key\""},
        {"1 invoke 10 write 1\n1 ok 5 write 1\n",
         "line 2: completed at time 5, before its invoke at 10 (line 1)"},
        {"1 invoke 0 read null\n1 ok 5 read \"x\"\n",
         "line 2: the value of a read"},
        {"1 invoke 0 read null\n1 ok 5 write 1\n",
         "line 2: the completion's f (write) does not match"},
        {"1 invoke 0 read null\n1 ok 5 read 1 r2\n",
         "line 2: the completion's key does not match"},
        {"1 invoke 0 add 1 -\n1 ok 5 write 1\n",
         "line 2: the completion's f (write) does not match its invoke on "
         "line 1"},
    };
    size_t i;

    for (i = 0; i < REMS_ARRAY_SIZE(cases); i++) {
        const char *json = cases[i].spec[0] == '{'
                               ? cases[i].spec
                               : spec_json(f, cases[i].spec);
        struct lincheck_history *h = NULL;
        int rv;

        f->errmsg[0] = '\0';
        rv = lincheck_history_parse(json, strlen(json), &h, f->errmsg);
        if (rv != REMS_EMALFORMED ||
            strncmp(f->errmsg, cases[i].prefix, strlen(cases[i].prefix)) != 0) {
            fail_msg("case %zu: rv %d, errmsg '%s', expected '%s...'", i, rv,
                     f->errmsg, cases[i].prefix);
        }
        assert_null(h);
        assert_int_equal(f->heap.live, 0);
    }
}

/* ------------------------------------------------------------------------
 * Random histories of a simulated linearizable register
 * ------------------------------------------------------------------------ */

#define SIM_CLIENTS 10
#define SIM_LATENCY 1000 /* Each half of an op: 1..SIM_LATENCY ns. */
#define SIM_GAP 100      /* Between a client's ops: 0..SIM_GAP-1 ns. */
#define SIM_BOGUS 1000000000

struct sim_params {
    size_t nops;
    unsigned long seed;
    uint64_t values;    /* Written values are 0..values-1. */
    uint64_t info_rate; /* One op in info_rate ends info; 0: none. */
};

struct sim_op {
    int64_t process;
    int64_t start;
    int64_t end;
    int f;
    int type; /* LINCHECK_OK, _FAIL, _INFO, _PENDING */
    bool a_null;
    int64_t a;
    int64_t b;
};

struct sim_event {
    size_t op;
    bool completion;
};

struct sim {
    uint64_t rng;
    struct sim_op *ops;
    size_t nops;
    struct sim_event *events;
    size_t nevents;
};

static uint64_t sim_rand(struct sim *s, uint64_t n)
{
    s->rng ^= s->rng >> 12; /* xorshift64* */
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (s->rng * UINT64_C(2685821657736338717)) % n;
}

/* Run @p->nops operations of SIM_CLIENTS clients on one register. Each op
 * takes effect at a random point inside its interval; one in info_rate
 * ends info (and takes effect or not, at random), and then some clients'
 * last ops never complete. Half the ops are reads, 30% writes, 20% cas. */
static void sim_run(struct sim *s, const struct sim_params *p)
{
    struct client {
        int64_t process;
        int64_t next;
        int phase; /* 0 idle, 1 invoked, 2 took effect, 3 stopped. */
        size_t op;
    } c[SIM_CLIENTS];
    bool reg_null = true;
    int64_t reg = 0;
    size_t started = 0;
    int i;

    memset(s, 0, sizeof *s);
    s->nops = p->nops;
    s->rng = p->seed * UINT64_C(0x9e3779b97f4a7c15) + 1;
    s->ops = calloc(p->nops, sizeof *s->ops);
    s->events = calloc(2 * p->nops, sizeof *s->events);
    assert_non_null(s->ops);
    assert_non_null(s->events);
    for (i = 0; i < SIM_CLIENTS; i++) {
        c[i].process = i;
        c[i].next = (int64_t)sim_rand(s, SIM_GAP);
        c[i].phase = 0;
    }
    for (;;) {
        struct client *cl = NULL;
        struct sim_op *op;

        for (i = 0; i < SIM_CLIENTS; i++) {
            if (c[i].phase != 3 && (cl == NULL || c[i].next < cl->next)) {
                cl = &c[i];
            }
        }
        if (cl == NULL) {
            break;
        }
        switch (cl->phase) {
            case 0:
                if (started == p->nops) {
                    cl->phase = 3;
                    break;
                }
                cl->op = started++;
                op = &s->ops[cl->op];
                op->process = cl->process;
                op->start = cl->next;
                op->f = (int)sim_rand(s, 10);
                op->f = op->f < 5   ? LINCHECK_READ
                        : op->f < 8 ? LINCHECK_WRITE
                                    : LINCHECK_CAS;
                op->a_null = true;
                if (op->f == LINCHECK_CAS) {
                    op->a_null = false;
                    op->a = (int64_t)sim_rand(s, p->values);
                }
                op->b = (int64_t)sim_rand(s, p->values);
                s->events[s->nevents++] = (struct sim_event){cl->op, false};
                cl->phase = 1;
                cl->next += 1 + (int64_t)sim_rand(s, SIM_LATENCY);
                break;
            case 1:
                op = &s->ops[cl->op];
                op->type = p->info_rate != 0 && sim_rand(s, p->info_rate) == 0
                               ? LINCHECK_INFO
                               : LINCHECK_OK;
                if (op->type == LINCHECK_INFO && sim_rand(s, 2) == 0) {
                    /* Timed out and never applied. */
                } else if (op->f == LINCHECK_READ) {
                    op->a_null = reg_null;
                    op->a = reg;
                } else if (op->f == LINCHECK_WRITE) {
                    reg_null = false;
                    reg = op->b;
                } else if (!reg_null && reg == op->a) {
                    reg = op->b;
                } else if (op->type == LINCHECK_OK) {
                    op->type = LINCHECK_FAIL;
                }
                cl->phase = 2;
                cl->next += 1 + (int64_t)sim_rand(s, SIM_LATENCY);
                break;
            case 2:
                op = &s->ops[cl->op];
                if (started == p->nops && p->info_rate != 0 &&
                    cl->process % SIM_CLIENTS < 3) {
                    op->type = LINCHECK_PENDING;
                    cl->phase = 3;
                    break;
                }
                op->end = cl->next;
                s->events[s->nevents++] = (struct sim_event){cl->op, true};
                if (op->type == LINCHECK_INFO) {
                    cl->process += SIM_CLIENTS; /* Jepsen's rule. */
                }
                cl->phase = 0;
                cl->next += (int64_t)sim_rand(s, SIM_GAP);
                break;
        }
    }
}

/* The simulated history as JSON lines (malloc()ed). */
static char *sim_json(const struct sim *s, size_t *len)
{
    static const char *const fs[] = {"read", "write", "cas"};
    static const char *const types[] = {"ok", "fail", "info", "pending"};
    size_t cap = s->nevents * 160 + 1;
    char *buf = malloc(cap);
    size_t i;

    assert_non_null(buf);
    *len = 0;
    for (i = 0; i < s->nevents; i++) {
        const struct sim_op *op = &s->ops[s->events[i].op];
        bool done = s->events[i].completion;
        char value[64];

        if (op->f == LINCHECK_WRITE) {
            snprintf(value, sizeof value, "%" PRId64, op->b);
        } else if (op->f == LINCHECK_CAS) {
            snprintf(value, sizeof value, "[%" PRId64 ", %" PRId64 "]", op->a,
                     op->b);
        } else if (done && op->type == LINCHECK_OK && !op->a_null) {
            snprintf(value, sizeof value, "%" PRId64, op->a);
        } else {
            snprintf(value, sizeof value, "null");
        }
        *len += (size_t)snprintf(
            buf + *len, cap - *len,
            "{\"index\": %zu, \"type\": \"%s\", \"process\": %" PRId64
            ", \"time\": %" PRId64 ", \"f\": \"%s\", \"key\": \"r1\", "
            "\"value\": %s, \"node\": \"n1\"}\n",
            i, done ? types[op->type] : "invoke", op->process,
            done ? op->end : op->start, fs[op->f], value);
        assert_true(*len < cap);
    }
    return buf;
}

static void sim_close(struct sim *s)
{
    free(s->ops);
    free(s->events);
}

/* The first ok read completed after the middle of @s. */
static size_t sim_victim(const struct sim *s)
{
    size_t i;

    for (i = s->nevents / 2; i < s->nevents; i++) {
        const struct sim_op *op = &s->ops[s->events[i].op];

        if (s->events[i].completion && op->f == LINCHECK_READ &&
            op->type == LINCHECK_OK) {
            return s->events[i].op;
        }
    }
    fail_msg("no ok read after the middle");
    return 0;
}

/* Make read @r of @s return a value it certainly cannot see: that of an ok
 * write W, the only op writing its value, followed by an ok write Z of
 * another value that completed before @r was invoked. Not impossible by
 * itself (W came before @r), only given Z. Returns false if there is no
 * such W. */
static bool sim_make_stale(struct sim *s, size_t r)
{
    struct sim_op *rd = &s->ops[r];
    size_t w;
    size_t z;
    size_t i;

    for (w = r; w-- > 0;) {
        const struct sim_op *wr = &s->ops[w];
        bool unique = true;
        bool overwritten = false;

        if (wr->f != LINCHECK_WRITE || wr->type != LINCHECK_OK ||
            (!rd->a_null && rd->a == wr->b)) {
            continue;
        }
        for (i = 0; i < s->nops && unique; i++) {
            unique = i == w || s->ops[i].f == LINCHECK_READ ||
                     s->ops[i].type == LINCHECK_FAIL || s->ops[i].b != wr->b;
        }
        for (z = 0; z < s->nops && !overwritten; z++) {
            const struct sim_op *zr = &s->ops[z];

            overwritten = zr->f != LINCHECK_READ && zr->type == LINCHECK_OK &&
                          zr->b != wr->b && zr->start > wr->end &&
                          zr->end < rd->start;
        }
        if (unique && overwritten) {
            rd->a_null = false;
            rd->a = wr->b;
            return true;
        }
    }
    return false;
}

enum corruption { CORRUPT_NONE, CORRUPT_BOGUS, CORRUPT_STALE };

static unsigned long env_ulong(const char *name, unsigned long dflt)
{
    const char *v = getenv(name);

    return v != NULL && *v != '\0' ? strtoul(v, NULL, 10) : dflt;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Simulate with @p, corrupt one read as @c says, check with the default
 * options, print the figures; returns the verdict. *@victim gets the
 * history index of the corrupted read's invoke (-1: none). */
static enum lincheck_verdict random_check(struct fixture *f,
                                          const char *name,
                                          struct sim_params p,
                                          enum corruption c,
                                          int64_t *victim)
{
    struct sim s;
    char *json;
    size_t len;
    size_t i;
    size_t r = SIZE_MAX;
    double t0;
    double t1;
    double t2;

    p.seed = env_ulong("REMS_SEED", p.seed);
    p.nops = env_ulong("REMS_LINCHECK_OPS", p.nops);
    fprintf(stderr,
            "%s: seed %lu (replay: REMS_SEED=%lu), %zu ops, values 0..%" PRIu64
            ", 1 in %" PRIu64 " info\n",
            name, p.seed, p.seed, p.nops, p.values - 1, p.info_rate);
    sim_run(&s, &p);
    if (c != CORRUPT_NONE) {
        r = sim_victim(&s);
        if (c == CORRUPT_BOGUS) {
            s.ops[r].a_null = false;
            s.ops[r].a = SIM_BOGUS;
        } else if (!sim_make_stale(&s, r)) {
            fail_msg("seed %lu: no stale value for the read", p.seed);
        }
    }
    *victim = -1;
    for (i = 0; i < s.nevents; i++) {
        if (!s.events[i].completion && s.events[i].op == r) {
            *victim = (int64_t)i;
        }
    }
    json = sim_json(&s, &len);
    sim_close(&s);
    if (getenv("REMS_LINCHECK_DUMP") != NULL) {
        /* For replaying the history with rems-lincheck. */
        char path[512];
        FILE *dump;

        snprintf(path, sizeof path, "%s/%s.jsonl", getenv("REMS_LINCHECK_DUMP"),
                 name);
        dump = fopen(path, "w");
        assert_non_null(dump);
        assert_int_equal(fwrite(json, 1, len, dump), len);
        assert_int_equal(fclose(dump), 0);
    }
    lincheck_result_close(&f->r);
    lincheck_history_free(f->h);
    f->h = NULL;
    t0 = now_s();
    assert_int_equal(lincheck_history_parse(json, len, &f->h, f->errmsg), 0);
    free(json);
    t1 = now_s();
    assert_int_equal(lincheck_check(f->h, NULL, &f->r, f->errmsg), 0);
    t2 = now_s();
    assert_int_equal(f->r.nkeys, 1);
    fprintf(stderr,
            "%s: %s; %zu ops (%zu info); parse %.3f s, check %.3f s "
            "(%.0f ops/s), %" PRIu64 " states\n",
            name, lincheck_verdict_name(f->r.verdict), f->r.keys[0].ops,
            f->r.keys[0].info, t1 - t0, t2 - t1,
            (double)f->r.keys[0].ops / (t2 - t1 > 1e-9 ? t2 - t1 : 1e-9),
            f->r.keys[0].states);
    return f->r.verdict;
}

/* 20,000 ops of 10 clients writing 0..4 (as the harness does), 2% info:
 * linearizable. The search must stay near a few states per op (the bound
 * is loose; a blow-up is not). */
static void random_valid(void **state)
{
    struct fixture *f = *state;
    struct sim_params p = {
        .nops = 20000, .seed = 1, .values = 5, .info_rate = 50};
    int64_t victim;

    assert_int_equal(random_check(f, "random_valid", p, CORRUPT_NONE, &victim),
                     LINCHECK_VALID);
    assert_true(f->r.keys[0].info > 0);
    assert_true(f->r.keys[0].states < 50 * (uint64_t)f->r.keys[0].ops);
}

/* The same history with one read returning a value nobody wrote: not
 * linearizable, and that read is the first op to break it. */
static void random_corrupted(void **state)
{
    struct fixture *f = *state;
    struct sim_params p = {
        .nops = 20000, .seed = 1, .values = 5, .info_rate = 50};
    const struct lincheck_key_result *kr;
    int64_t victim;

    assert_int_equal(
        random_check(f, "random_corrupted", p, CORRUPT_BOGUS, &victim),
        LINCHECK_INVALID);
    kr = &f->r.keys[0];
    assert_window_sane(kr);
    assert_true(kr->first);
    assert_int_equal(kr->breaking->index, victim);
    assert_int_equal(kr->breaking->a, SIM_BOGUS);
}

/* The same without info ops, decided by the exact search alone. */
static void random_corrupted_no_info(void **state)
{
    struct fixture *f = *state;
    struct sim_params p = {
        .nops = 20000, .seed = 1, .values = 5, .info_rate = 0};
    const struct lincheck_key_result *kr;
    int64_t victim;

    assert_int_equal(
        random_check(f, "random_corrupted_no_info", p, CORRUPT_BOGUS, &victim),
        LINCHECK_INVALID);
    kr = &f->r.keys[0];
    assert_int_equal(kr->info, 0);
    assert_true(kr->first);
    assert_int_equal(kr->breaking->index, victim);
}

/* A stale read in a history with info ops and (mostly) unique values:
 * the value was written, so nothing rules the read out by itself; the
 * searches must show that no order of the ops explains it. */
static void random_stale_read(void **state)
{
    struct fixture *f = *state;
    struct sim_params p = {
        .nops = 20000, .seed = 1, .values = 1000000, .info_rate = 50};
    const struct lincheck_key_result *kr;
    int64_t victim;

    assert_int_equal(
        random_check(f, "random_stale_read", p, CORRUPT_STALE, &victim),
        LINCHECK_INVALID);
    kr = &f->r.keys[0];
    assert_window_sane(kr);
    assert_true(kr->first);
    assert_int_equal(kr->breaking->index, victim);
}

/* ------------------------------------------------------------------------
 * Command line, files, JSON
 * ------------------------------------------------------------------------ */

struct cli_out {
    int code;
    char out[8192];
    char err[2048];
};

static void read_all(FILE *fp, char *buf, size_t size)
{
    size_t n;

    rewind(fp);
    n = fread(buf, 1, size - 1, fp);
    buf[n] = '\0';
    fclose(fp);
}

static void run_cli(struct cli_out *o, int argc, const char **argv)
{
    FILE *out = tmpfile();
    FILE *err = tmpfile();

    assert_non_null(out);
    assert_non_null(err);
    o->code = cli_run(argc, (char **)argv, out, err);
    read_all(out, o->out, sizeof o->out);
    read_all(err, o->err, sizeof o->err);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void cli_exit_codes(void **state)
{
    struct fixture *f = *state;
    char dir[TEST_TMPDIR_SIZE];
    char valid[TEST_TMPDIR_SIZE + 32];
    char invalid[TEST_TMPDIR_SIZE + 32];
    char bad[TEST_TMPDIR_SIZE + 32];
    char jpath[TEST_TMPDIR_SIZE + 32];
    struct cli_out o;
    json_error_t jerr;
    json_t *j;
    json_t *w;
    size_t i;
    bool found = false;

    test_tmpdir_make(dir);
    snprintf(valid, sizeof valid, "%s/valid.jsonl", dir);
    snprintf(invalid, sizeof invalid, "%s/invalid.jsonl", dir);
    snprintf(bad, sizeof bad, "%s/bad.jsonl", dir);
    snprintf(jpath, sizeof jpath, "%s/out.json", dir);
    write_file(valid, spec_json(f, "1 invoke 0 write 1\n"
                                   "2 invoke 1 write 2\n"
                                   "1 ok 10 write 1\n"
                                   "2 ok 11 write 2\n"
                                   "1 invoke 20 read null\n"
                                   "1 ok 30 read 1\n"));
    write_file(invalid, spec_json(f, "1 invoke 0 write 1\n"
                                     "1 ok 10 write 1\n"
                                     "1 invoke 20 write 2\n"
                                     "1 ok 30 write 2\n"
                                     "2 invoke 40 read null\n"
                                     "2 ok 50 read 1\n"));
    write_file(bad, "{\"type\": \"invoke\"}\n{\n");

    run_cli(&o, 2, (const char *[]){"rems-lincheck", valid, NULL});
    assert_int_equal(o.code, 0);
    assert_string_equal(o.out,
                        "key r1: linearizable (3 ops, 0 info)\nvalid: true\n");

    run_cli(&o, 4,
            (const char *[]){"rems-lincheck", "--json", jpath, invalid, NULL});
    assert_int_equal(o.code, 1);
    assert_non_null(strstr(o.out, "key r1: NOT linearizable"));
    assert_non_null(strstr(o.out, "=>"));
    assert_non_null(strstr(o.out, "\nvalid: false\n"));
    j = json_load_file(jpath, 0, &jerr);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "valid")));
    assert_true(json_is_true(json_object_get(
        json_object_get(json_object_get(j, "keys"), "r1"), "first")));
    w = json_object_get(json_object_get(json_object_get(j, "keys"), "r1"),
                        "window");
    assert_true(json_is_array(w) && json_array_size(w) == 3);
    for (i = 0; i < json_array_size(w); i++) {
        json_t *op = json_array_get(w, i);

        if (json_is_true(json_object_get(op, "breaking"))) {
            found = true;
            assert_int_equal(json_integer_value(json_object_get(op, "index")),
                             4);
            assert_int_equal(json_integer_value(json_object_get(op, "value")),
                             1);
            assert_string_equal(json_string_value(json_object_get(op, "f")),
                                "read");
        }
    }
    assert_true(found);
    json_decref(j);

    /* One state is not enough for three ops: unknown. */
    run_cli(&o, 5,
            (const char *[]){"rems-lincheck", "--max-states=1", "--json", jpath,
                             valid, NULL});
    assert_int_equal(o.code, 3);
    assert_non_null(strstr(o.out, "key r1: unknown (3 ops, 0 info): state "
                                  "budget exhausted"));
    assert_non_null(strstr(o.out, "\nvalid: unknown\n"));
    j = json_load_file(jpath, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "valid")),
                        "unknown");
    json_decref(j);

    run_cli(&o, 2, (const char *[]){"rems-lincheck", bad, NULL});
    assert_int_equal(o.code, 2);
    assert_non_null(strstr(o.err, "line 1: \"process\" must be"));
    assert_string_equal(o.out, "");

    run_cli(&o, 2, (const char *[]){"rems-lincheck", "/nonexistent/h", NULL});
    assert_int_equal(o.code, 2);
    assert_non_null(strstr(o.err, "/nonexistent/h: No such file"));

    run_cli(&o, 1, (const char *[]){"rems-lincheck", NULL});
    assert_int_equal(o.code, 2);
    assert_non_null(strstr(o.err, "missing history file"));
    run_cli(&o, 3,
            (const char *[]){"rems-lincheck", "--max-states", "0", NULL});
    assert_int_equal(o.code, 2);
    run_cli(&o, 3, (const char *[]){"rems-lincheck", valid, "--json", NULL});
    assert_int_equal(o.code, 2);
    assert_non_null(strstr(o.err, "--json needs a value"));
    run_cli(&o, 3, (const char *[]){"rems-lincheck", valid, invalid, NULL});
    assert_int_equal(o.code, 2);
    run_cli(&o, 2, (const char *[]){"rems-lincheck", "--frobnicate", NULL});
    assert_int_equal(o.code, 2);
    assert_non_null(strstr(o.err, "unknown option '--frobnicate'"));
    run_cli(&o, 2, (const char *[]){"rems-lincheck", "--help", NULL});
    assert_int_equal(o.code, 0);
    assert_non_null(strstr(o.out, "usage: rems-lincheck"));
    test_tmpdir_remove(dir);
}

/* The fixture files, through lincheck_history_load(). */
static void fixture_files(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(lincheck_history_load(LINCHECK_HISTORIES_DIR
                                           "/valid.jsonl",
                                           &f->h, f->errmsg),
                     0);
    assert_int_equal(lincheck_check(f->h, NULL, &f->r, f->errmsg), 0);
    assert_int_equal(f->r.verdict, LINCHECK_VALID);
    assert_int_equal(f->r.nkeys, 2);
    lincheck_result_close(&f->r);
    lincheck_history_free(f->h);
    f->h = NULL;

    assert_int_equal(lincheck_history_load(LINCHECK_HISTORIES_DIR
                                           "/lost-update.jsonl",
                                           &f->h, f->errmsg),
                     0);
    assert_int_equal(lincheck_check(f->h, NULL, &f->r, f->errmsg), 0);
    assert_int_equal(f->r.verdict, LINCHECK_INVALID);
    assert_int_equal(key_result(f, "r1")->verdict, LINCHECK_VALID);
    assert_window_sane(key_result(f, "r2"));
    lincheck_result_close(&f->r);
    lincheck_history_free(f->h);
    f->h = NULL;

    assert_int_equal(lincheck_history_load(LINCHECK_HISTORIES_DIR
                                           "/malformed.jsonl",
                                           &f->h, f->errmsg),
                     REMS_EMALFORMED);
    assert_null(f->h);
    assert_non_null(strstr(f->errmsg, "malformed.jsonl: line 4: "));
}

/* ------------------------------------------------------------------------
 * Out of memory
 * ------------------------------------------------------------------------ */

static void *json_heap_malloc(size_t size)
{
    return rems_malloc(size);
}

static void json_heap_free(void *p)
{
    rems_free(p);
}

/* Fail the n-th allocation for every n: parsing and checking give
 * REMS_ENOMEM or an unknown key, the JSON result NULL, and nothing leaks. */
static void out_of_memory_sweep(void **state)
{
    struct fixture *f = *state;
    const char *json = spec_json(f, "1 invoke 0 write 1\n"
                                    "1 ok 10 write 1\n"
                                    "2 invoke 12 write 2\n"
                                    "2 info 14 write 2\n"
                                    "3 invoke 15 read null r2\n"
                                    "3 ok 16 read null r2\n"
                                    "1 invoke 20 write 2\n"
                                    "1 ok 30 write 2\n"
                                    "2 invoke 40 read null\n"
                                    "2 ok 50 read 1\n");
    struct lincheck_history *h;
    struct lincheck_result r;
    json_t *j;
    long n;
    int rv;

    for (n = 0;; n++) {
        h = NULL;
        memset(&r, 0, sizeof r);
        test_heap_fail_after(&f->heap, n);
        /* jansson reports some allocation failures in its lexer as syntax
         * errors, so it allocates from libc while lines are parsed (each
         * line's objects are freed before the next). */
        json_set_alloc_funcs(malloc, free);
        rv = lincheck_history_parse(json, strlen(json), &h, f->errmsg);
        json_set_alloc_funcs(json_heap_malloc, json_heap_free);
        if (rv != 0) {
            assert_int_equal(rv, REMS_ENOMEM);
            assert_null(h);
            assert_int_equal(f->heap.live, 0);
            continue;
        }
        rv = lincheck_check(h, NULL, &r, f->errmsg);
        if (rv != 0) {
            assert_int_equal(rv, REMS_ENOMEM);
            assert_string_equal(f->errmsg, "out of memory");
            lincheck_history_free(h);
            assert_int_equal(f->heap.live, 0);
            continue;
        }
        if (r.verdict == LINCHECK_UNKNOWN) {
            assert_string_equal(r.keys[0].reason, "out of memory");
            lincheck_result_close(&r);
            lincheck_history_free(h);
            assert_int_equal(f->heap.live, 0);
            continue;
        }
        assert_int_equal(r.verdict, LINCHECK_INVALID);
        j = lincheck_result_json(&r);
        lincheck_result_close(&r);
        lincheck_history_free(h);
        if (j == NULL) {
            assert_int_equal(f->heap.live, 0);
            continue;
        }
        json_decref(j);
        assert_int_equal(f->heap.live, 0);
        break;
    }
    test_heap_fail_after(&f->heap, -1);
    assert_true(n > 10);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(sequential_ok),
        TEST(concurrent_writes_either_order),
        TEST(stale_read),
        TEST(lost_write),
        TEST(cas_anomaly),
        TEST(info_write_takes_effect),
        TEST(info_write_once),
        TEST(never_completed_at_end),
        TEST(failed_ops_ignored),
        TEST(other_events_ignored),
        TEST(multiple_keys),
        TEST(touching_is_concurrent),
        TEST(window_holds_breaking_op),
        TEST(malformed_lines),
        TEST(random_valid),
        TEST(random_corrupted),
        TEST(random_corrupted_no_info),
        TEST(random_stale_read),
        TEST(cli_exit_codes),
        TEST(fixture_files),
        TEST(out_of_memory_sweep),
    };

    json_set_alloc_funcs(json_heap_malloc, json_heap_free);
    return cmocka_run_group_tests_name("lincheck", tests, NULL, NULL);
}
