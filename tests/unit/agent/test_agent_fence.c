/* Tests of agentproto/agent_fence.c: the decision of every command, the
 * file it keeps (written before a command runs, read back after a
 * restart), every kind of damage refused with a message, failed writes
 * that leave everything as it was, and allocation failures. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "agentproto/agent_fence.h"
#include "tests/lib/heap.h"
#include "tests/lib/tmpdir.h"

#define NOW 1716806400000ull /* 2024-05-27T10:40:00.000Z */

struct fixture {
    char dir[TEST_TMPDIR_SIZE];
    char path[TEST_TMPDIR_SIZE + 32];
    struct test_heap heap;
    struct agent_fence *fence;
    char errmsg[REMS_ERRMSG_SIZE];
    char msg[REMS_ERRMSG_SIZE];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_tmpdir_make(f->dir);
    snprintf(f->path, sizeof f->path, "%s/fence", f->dir);
    test_heap_install(&f->heap);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

    agent_fence_close(f->fence);
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

static void open_fence(struct fixture *f, size_t kept)
{
    agent_fence_close(f->fence);
    f->fence = NULL;
    assert_int_equal(agent_fence_open(f->dir, kept, &f->fence, f->errmsg), 0);
}

static char *read_text(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    rewind(fp);
    buf = malloc((size_t)n + 16); /* Room for a test to append. */
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* Zlib's CRC-32, bitwise, to write files by hand. */
static uint32_t crc32_of(const char *s, size_t len)
{
    uint32_t crc = 0xffffffffu;
    size_t i;
    int k;
    for (i = 0; i < len; i++) {
        crc ^= (unsigned char)s[i];
        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

/* Write @body followed by its correct checksum line. */
static void write_with_crc(struct fixture *f, const char *body)
{
    char text[4096];
    snprintf(text, sizeof text, "%scrc32 %08x\n", body,
             crc32_of(body, strlen(body)));
    write_text(f->path, text);
}

static int check(struct fixture *f,
                 const char *id,
                 uint64_t term,
                 uint64_t ttl,
                 uint64_t elapsed)
{
    return agent_fence_check(f->fence, id, term, ttl, elapsed, NOW, f->msg);
}

static void record(struct fixture *f, const char *id, uint64_t term)
{
    assert_int_equal(check(f, id, term, 30000, 0), AGENT_FENCE_ACCEPT);
    assert_int_equal(
        agent_fence_record(f->fence, id, term, NOW, 30000, f->errmsg), 0);
}

/* Opening the file fails as corrupt with "<path>: corrupt at line
 * @line: @why". */
static void assert_corrupt(struct fixture *f, int line, const char *why)
{
    char want[REMS_ERRMSG_SIZE * 2];

    agent_fence_close(f->fence);
    f->fence = NULL;
    assert_int_equal(agent_fence_open(f->dir, 100, &f->fence, f->errmsg),
                     REMS_ECORRUPT);
    assert_null(f->fence);
    snprintf(want, sizeof want, "%s: corrupt at line %d: %s", f->path, line,
             why);
    assert_string_equal(f->errmsg, want);
}

/* ------------------------------------------------------------------------
 * Decisions
 * ------------------------------------------------------------------------ */

/* A fresh directory gets a fence file at once: term 0, no ids. */
static void fresh(void **state)
{
    struct fixture *f = *state;
    char *text;

    open_fence(f, 100);
    assert_int_equal(agent_fence_highest_term(f->fence), 0);
    assert_int_equal(agent_fence_count(f->fence), 0);
    assert_string_equal(agent_fence_path(f->fence), f->path);
    text = read_text(f->path);
    assert_string_equal(text, "rems-agent fence 1\n"
                              "highest_term 0\n"
                              "ids 0\n"
                              "crc32 d9877ac8\n");
    free(text);
}

/* The reasons come in the protocol's order, each with its message. */
static void decisions(void **state)
{
    struct fixture *f = *state;

    open_fence(f, 100);
    record(f, "cmd-43-1", 43);
    assert_int_equal(agent_fence_highest_term(f->fence), 43);

    /* Stale before duplicate before expired. */
    assert_int_equal(check(f, "cmd-43-1", 41, 0, 0), PROTO_NACK_STALE_TERM);
    assert_string_equal(f->msg, "term 41 is below 43, the highest accepted");
    assert_int_equal(check(f, "cmd-43-1", 43, 0, 0), PROTO_NACK_DUPLICATE);
    assert_string_equal(f->msg, "command cmd-43-1 was accepted at "
                                "2024-05-27T10:40:00.000Z (term 43)");
    assert_int_equal(check(f, "cmd-43-1", 44, 1000, 0), PROTO_NACK_DUPLICATE);
    assert_int_equal(check(f, "cmd-43-2", 43, 0, 0), PROTO_NACK_EXPIRED);
    assert_string_equal(f->msg, "ttl_remaining_ms was 0 on receipt");
    assert_int_equal(check(f, "cmd-43-2", 43, 30000, 30120),
                     PROTO_NACK_EXPIRED);
    assert_string_equal(f->msg, "ttl of 30000 ms spent 120 ms ago");
    assert_int_equal(check(f, "cmd-43-2", 43, 30000, 30000),
                     PROTO_NACK_EXPIRED);
    assert_int_equal(check(f, "cmd-43-2", 43, 30000, 29999),
                     AGENT_FENCE_ACCEPT);
    /* The same term and a higher one are accepted. */
    assert_int_equal(check(f, "cmd-44-1", 44, 1, 0), AGENT_FENCE_ACCEPT);
    record(f, "cmd-44-1", 44);
    assert_int_equal(check(f, "cmd-43-9", 43, 1000, 0), PROTO_NACK_STALE_TERM);
    assert_string_equal(f->msg, "term 43 is below 44, the highest accepted");
}

/* A full record whose oldest id is still within its TTL refuses (busy)
 * rather than forget it; once that TTL is over, the oldest id goes. */
static void bounded(void **state)
{
    struct fixture *f = *state;
    char id[16];
    int i;

    open_fence(f, 3);
    for (i = 1; i <= 3; i++) {
        snprintf(id, sizeof id, "c%d", i);
        record(f, id, 1);
    }
    assert_int_equal(check(f, "c4", 1, 1000, 0), PROTO_NACK_BUSY);
    assert_string_equal(f->msg, "all 3 command ids kept (executed_ids_kept) "
                                "are within their ttl; the oldest, c1, until "
                                "2024-05-27T10:40:30.000Z");
    /* 30 s later the oldest has run out. */
    assert_int_equal(
        agent_fence_check(f->fence, "c4", 1, 1000, 0, NOW + 30000, f->msg),
        AGENT_FENCE_ACCEPT);
    assert_int_equal(
        agent_fence_record(f->fence, "c4", 1, NOW + 30000, 1000, f->errmsg), 0);
    assert_int_equal(agent_fence_count(f->fence), 3);
    /* c1 is forgotten, c2..c4 are kept. */
    assert_int_equal(
        agent_fence_check(f->fence, "c1", 1, 1000, 0, NOW + 60000, f->msg),
        AGENT_FENCE_ACCEPT);
    assert_int_equal(check(f, "c2", 1, 1000, 0), PROTO_NACK_DUPLICATE);
    assert_int_equal(check(f, "c4", 1, 1000, 0), PROTO_NACK_DUPLICATE);

    /* Reopened with a smaller bound, the newest ids stay. */
    open_fence(f, 2);
    assert_int_equal(agent_fence_count(f->fence), 2);
    assert_int_equal(
        agent_fence_check(f->fence, "c2", 1, 1000, 0, NOW + 60000, f->msg),
        AGENT_FENCE_ACCEPT);
    assert_int_equal(check(f, "c3", 1, 1000, 0), PROTO_NACK_DUPLICATE);
    assert_int_equal(check(f, "c4", 1, 1000, 0), PROTO_NACK_DUPLICATE);
}

/* ------------------------------------------------------------------------
 * The file
 * ------------------------------------------------------------------------ */

/* What was recorded survives a restart, in the documented format. */
static void restart(void **state)
{
    struct fixture *f = *state;
    char *text;

    open_fence(f, 100);
    record(f, "cmd-42-17", 42);
    assert_int_equal(
        agent_fence_record(f->fence, "cmd-43-1", 43, NOW + 100, 500, f->errmsg),
        0);
    text = read_text(f->path);
    assert_non_null(strstr(text, "rems-agent fence 1\nhighest_term 43\nids 2\n"
                                 "cmd-42-17 42 1716806400000 1716806430000\n"
                                 "cmd-43-1 43 1716806400100 1716806400600\n"
                                 "crc32 "));
    free(text);

    open_fence(f, 100);
    assert_int_equal(agent_fence_highest_term(f->fence), 43);
    assert_int_equal(agent_fence_count(f->fence), 2);
    assert_int_equal(check(f, "cmd-42-17", 43, 1000, 0), PROTO_NACK_DUPLICATE);
    assert_int_equal(check(f, "cmd-43-1", 43, 1000, 0), PROTO_NACK_DUPLICATE);
    assert_int_equal(check(f, "x", 42, 1000, 0), PROTO_NACK_STALE_TERM);
}

/* A temporary file left by a crash in the middle of a write is removed;
 * the record is the one it was to replace. */
static void leftover_tmp(void **state)
{
    struct fixture *f = *state;
    char tmp[TEST_TMPDIR_SIZE + 32];

    open_fence(f, 100);
    record(f, "a", 5);
    snprintf(tmp, sizeof tmp, "%s/fence.tmp", f->dir);
    write_text(tmp, "rems-agent fence 1\nhighest_term 9\nids 0\ncr");
    open_fence(f, 100);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(agent_fence_highest_term(f->fence), 5);
}

/* Forgetting an id lets the command be accepted again; the term stays. */
static void forget(void **state)
{
    struct fixture *f = *state;

    open_fence(f, 100);
    record(f, "a", 5);
    record(f, "b", 6);
    assert_int_equal(agent_fence_forget(f->fence, "a", f->errmsg), 0);
    assert_int_equal(agent_fence_forget(f->fence, "nope", f->errmsg), 0);
    assert_int_equal(check(f, "a", 6, 1000, 0), AGENT_FENCE_ACCEPT);
    open_fence(f, 100);
    assert_int_equal(agent_fence_count(f->fence), 1);
    assert_int_equal(agent_fence_highest_term(f->fence), 6);
    assert_int_equal(check(f, "a", 6, 1000, 0), AGENT_FENCE_ACCEPT);
    assert_int_equal(check(f, "b", 6, 1000, 0), PROTO_NACK_DUPLICATE);
}

/* A write that fails (here: fence.tmp is a directory) changes nothing, in
 * memory or on disk; so does a failed forget. */
static void write_fails(void **state)
{
    struct fixture *f = *state;
    char tmp[TEST_TMPDIR_SIZE + 32];
    char *before;
    char *after;

    open_fence(f, 2);
    record(f, "a", 5);
    record(f, "b", 5);
    before = read_text(f->path);
    snprintf(tmp, sizeof tmp, "%s/fence.tmp", f->dir);
    assert_int_equal(mkdir(tmp, 0700), 0);

    /* Full: the failed record must also give back the dropped id. */
    assert_int_equal(
        agent_fence_check(f->fence, "c", 7, 1000, 0, NOW + 60000, f->msg),
        AGENT_FENCE_ACCEPT);
    assert_int_equal(
        agent_fence_record(f->fence, "c", 7, NOW + 60000, 1000, f->errmsg),
        REMS_EIO);
    assert_non_null(strstr(f->errmsg, "create "));
    assert_non_null(strstr(f->errmsg, "fence.tmp: Is a directory"));
    assert_int_equal(agent_fence_highest_term(f->fence), 5);
    assert_int_equal(agent_fence_count(f->fence), 2);
    assert_int_equal(check(f, "a", 5, 1000, 0), PROTO_NACK_DUPLICATE);
    assert_int_equal(check(f, "c", 7, 1000, 0), PROTO_NACK_BUSY);

    assert_int_equal(agent_fence_forget(f->fence, "a", f->errmsg), REMS_EIO);
    assert_int_equal(check(f, "a", 5, 1000, 0), PROTO_NACK_DUPLICATE);
    assert_int_equal(agent_fence_count(f->fence), 2);

    after = read_text(f->path);
    assert_string_equal(after, before);
    free(before);
    free(after);
    assert_int_equal(rmdir(tmp), 0);

    /* And the order of the kept ids is as before. */
    assert_int_equal(
        agent_fence_record(f->fence, "c", 7, NOW + 60000, 1000, f->errmsg), 0);
    open_fence(f, 2);
    assert_int_equal(check(f, "b", 7, 1000, 0), PROTO_NACK_DUPLICATE);
    assert_int_equal(check(f, "c", 7, 1000, 0), PROTO_NACK_DUPLICATE);
}

/* Every kind of damage is refused with the line and the rule. */
static void corrupt(void **state)
{
    struct fixture *f = *state;
    char *text;
    char *p;

    write_text(f->path, "");
    assert_corrupt(f, 1, "the file ends early");
    write_text(f->path, "hello\n");
    assert_corrupt(f, 1, "not a fence file (bad first line)");
    write_text(f->path, "rems-agent fence 1");
    assert_corrupt(f, 1, "the last line is cut");
    write_text(f->path, "rems-agent fence 1\nhighest_term x\n");
    assert_corrupt(f, 2, "expected highest_term <number>");
    write_text(f->path, "rems-agent fence 1\nhighest_term 01\n");
    assert_corrupt(f, 2, "expected highest_term <number>");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids\n");
    assert_corrupt(f, 3, "expected ids <number>");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 999\n");
    assert_corrupt(f, 3, "more ids than the file can hold");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 1\n");
    assert_corrupt(f, 4, "the file ends early");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 1\n"
                        "a 1 2\ncrc32 00000000\n");
    assert_corrupt(f, 4, "expected <id> <term> <accepted_ms> <expires_ms>");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 1\n"
                        "a 1 2 3 4\ncrc32 00000000\n");
    assert_corrupt(f, 4, "expected <id> <term> <accepted_ms> <expires_ms>");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 1\n"
                        "b@d 1 2 3\ncrc32 00000000\n");
    assert_corrupt(f, 4, "the command id is not valid");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 1\n"
                        "a 0 2 3\ncrc32 00000000\n");
    assert_corrupt(f, 4, "a term is 0");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 1\n"
                        "a 1 3 2\ncrc32 00000000\n");
    assert_corrupt(f, 4, "expires_ms is before accepted_ms");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 1\n"
                        "a 2 2 3\ncrc32 00000000\n");
    assert_corrupt(f, 4, "a term is above highest_term");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 2\n"
                        "a 1 2 3\na 1 2 3\ncrc32 00000000\n");
    assert_corrupt(f, 5, "a command id is listed twice");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 0\n"
                        "crc 1\n");
    assert_corrupt(f, 4, "expected crc32 <checksum>");
    write_text(f->path, "rems-agent fence 1\nhighest_term 1\nids 0\n");
    assert_corrupt(f, 4, "the file ends early");

    /* A right file with one digit changed, or something after it. */
    write_with_crc(f, "rems-agent fence 1\nhighest_term 7\nids 1\n"
                      "a 7 2 3\n");
    open_fence(f, 100);
    assert_int_equal(agent_fence_highest_term(f->fence), 7);
    agent_fence_close(f->fence);
    f->fence = NULL;
    text = read_text(f->path);
    p = strstr(text, "highest_term 7");
    p[13] = '5';
    write_text(f->path, text);
    assert_corrupt(f, 4, "a term is above highest_term");
    p[13] = '8';
    write_text(f->path, text);
    assert_corrupt(f, 5, "checksum mismatch");
    p[13] = '7';
    strcat(text, "x");
    write_text(f->path, text);
    assert_corrupt(f, 6, "bytes after the checksum");
    free(text);
}

/* Not a regular file, or unreadable: refused before reading. */
static void not_a_file(void **state)
{
    struct fixture *f = *state;
    char want[REMS_ERRMSG_SIZE * 2];

    assert_int_equal(mkdir(f->path, 0700), 0);
    assert_int_equal(agent_fence_open(f->dir, 10, &f->fence, f->errmsg),
                     REMS_ECORRUPT);
    snprintf(want, sizeof want,
             "%s: corrupt: not a regular file of at most %zu bytes", f->path,
             (size_t)256 << 20);
    assert_string_equal(f->errmsg, want);
    assert_int_equal(rmdir(f->path), 0);
    /* A missing directory. */
    strcat(f->dir, "/missing");
    assert_int_equal(agent_fence_open(f->dir, 10, &f->fence, f->errmsg),
                     REMS_EIO);
    assert_non_null(strstr(f->errmsg, "No such file or directory"));
    f->dir[strlen(f->dir) - strlen("/missing")] = '\0';
}

/* Failing each allocation of open (fresh and existing file) and of record
 * gives REMS_ENOMEM, no leak, and an unchanged record. */
static void out_of_memory(void **state)
{
    struct fixture *f = *state;
    int rv;
    int n;

    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = agent_fence_open(f->dir, 100, &f->fence, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(f->fence);
        assert_int_equal(f->heap.live, 0);
    }
    for (n = 0; n < 3; n++) {
        char id[8];
        snprintf(id, sizeof id, "i%d", n);
        record(f, id, 3);
    }
    agent_fence_close(f->fence);
    f->fence = NULL;
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = agent_fence_open(f->dir, 100, &f->fence, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_int_equal(f->heap.live, 0);
    }
    assert_int_equal(agent_fence_count(f->fence), 3);
    /* A fence that holds ids but never grew its text buffer: record. */
    open_fence(f, 100);
    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = agent_fence_record(f->fence, "new", 4, NOW, 100, f->errmsg);
        test_heap_fail_after(&f->heap, -1);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_int_equal(agent_fence_count(f->fence), 3);
        assert_int_equal(agent_fence_highest_term(f->fence), 3);
    }
    assert_int_equal(agent_fence_count(f->fence), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(fresh),         TEST(decisions),    TEST(bounded),
        TEST(restart),       TEST(leftover_tmp), TEST(forget),
        TEST(write_fails),   TEST(corrupt),      TEST(not_a_file),
        TEST(out_of_memory),
    };
    return cmocka_run_group_tests_name("agent_fence", tests, NULL, NULL);
}
