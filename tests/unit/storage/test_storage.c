/* Unit tests of storage/: the LMDB state store.
 *
 * Each test gets a fresh temporary directory and the counting test heap;
 * teardown closes every store first and asserts last that no allocation is
 * left. Fixtures cover the failures the heap sweep cannot reach: a missing
 * directory, a file in place of the directory, a full map, garbage and
 * truncated images, a torn state after an operating-system crash. */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/heap.h"
#include "storage/storage.h"
#include "tests/lib/heap.h"
#include "tests/lib/tmpdir.h"

struct fixture {
    char dir[TEST_TMPDIR_SIZE];
    struct test_heap heap;
    struct storage *s;
    struct storage *s2; /* A second store, in the subdirectory "other". */
    char other[TEST_TMPDIR_SIZE + 16];
    char errmsg[REMS_ERRMSG_SIZE];
};

static void dumps_free(void);

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_tmpdir_make(f->dir);
    snprintf(f->other, sizeof f->other, "%s/other", f->dir);
    test_heap_install(&f->heap);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    long live;

    storage_close(f->s);
    storage_close(f->s2);
    dumps_free();
    live = f->heap.live;
    test_heap_uninstall(&f->heap);
    test_tmpdir_remove(f->dir);
    free(f);
    assert_int_equal(live, 0); /* Last, so a leak still cleans up. */
    return 0;
}

/* ------------------------------------------------------------------ */
/* Helpers.                                                             */

static void path_in(const char *dir, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static bool exists_in(const char *dir, const char *name)
{
    char path[512];
    path_in(dir, name, path, sizeof path);
    return access(path, F_OK) == 0;
}

static bool is_dir_in(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    path_in(dir, name, path, sizeof path);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Read a small file into @buf as a string; asserts it exists. */
static void read_in(const char *dir, const char *name, char *buf, size_t cap)
{
    char path[512];
    FILE *fp;
    size_t n;
    path_in(dir, name, path, sizeof path);
    fp = fopen(path, "rb");
    assert_non_null(fp);
    n = fread(buf, 1, cap - 1, fp);
    buf[n] = '\0';
    fclose(fp);
}

static void write_in(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *fp;
    path_in(dir, name, path, sizeof path);
    fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

static void current_boot_id(char *buf, size_t cap)
{
    read_in("/proc/sys/kernel/random", "boot_id", buf, cap);
    buf[strcspn(buf, "\n")] = '\0';
}

static void open_store(struct fixture *f, const char *dir, struct storage **s)
{
    int rv = storage_open(dir, NULL, s, f->errmsg);
    assert_int_equal(rv, 0);
    assert_non_null(*s);
}

static void put_str(struct storage *s,
                    enum storage_table table,
                    const char *key,
                    const char *val)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    assert_int_equal(storage_txn_begin(s, true, &t, errmsg), 0);
    assert_int_equal(
        storage_put(t, table, key, strlen(key), val, strlen(val), errmsg), 0);
    assert_int_equal(storage_txn_commit(t, errmsg), 0);
}

/* Look @key up; on success copy the value as a string into @buf. */
static int get_str(struct storage *s,
                   enum storage_table table,
                   const char *key,
                   char *buf,
                   size_t cap)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    const void *v;
    size_t vl;
    int rv;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    rv = storage_get(t, table, key, strlen(key), &v, &vl, errmsg);
    if (rv == 0) {
        assert_true(vl < cap);
        memcpy(buf, v, vl);
        buf[vl] = '\0';
    }
    storage_txn_abort(t);
    return rv;
}

static size_t count(struct storage *s, enum storage_table table)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    size_t n = 0;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    assert_int_equal(storage_count(t, table, &n, errmsg), 0);
    storage_txn_abort(t);
    return n;
}

/* A growable byte string on libc's heap, outside the counted heap. */
struct dump {
    char *p;
    size_t len;
    size_t cap;
    struct dump *next;
};

/* Every dump of the running test, freed by teardown even when an assertion
 * ends the test early. */
static struct dump *dumps;

static struct dump *dump_new(void)
{
    struct dump *d = calloc(1, sizeof *d);
    assert_non_null(d);
    d->next = dumps;
    dumps = d;
    return d;
}

static void dumps_free(void)
{
    while (dumps != NULL) {
        struct dump *next = dumps->next;
        free(dumps->p);
        free(dumps);
        dumps = next;
    }
}

static void dump_add(struct dump *d, const void *data, size_t len)
{
    if (d->len + len > d->cap) {
        d->cap = (d->len + len) * 2 + 64;
        d->p = realloc(d->p, d->cap);
        assert_non_null(d->p);
    }
    if (len > 0) {
        memcpy(d->p + d->len, data, len);
    }
    d->len += len;
}

/* Every table of @s, entry by entry, as one byte string. */
static struct dump *dump_store(struct storage *s)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    struct dump *d = dump_new();
    int table;
    assert_int_equal(storage_txn_begin(s, false, &t, errmsg), 0);
    for (table = 0; table < STORAGE_TABLE_NR; table++) {
        struct storage_cursor *c;
        const void *k;
        const void *v;
        size_t kl;
        size_t vl;
        int rv;
        dump_add(d, "|T", 2);
        dump_add(d, &table, sizeof table);
        assert_int_equal(
            storage_cursor_open(t, (enum storage_table)table, &c, errmsg), 0);
        rv = storage_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl, errmsg);
        while (rv == 0) {
            dump_add(d, &kl, sizeof kl);
            dump_add(d, k, kl);
            dump_add(d, &vl, sizeof vl);
            dump_add(d, v, vl);
            rv = storage_cursor_next(c, &k, &kl, &v, &vl, errmsg);
        }
        assert_int_equal(rv, REMS_ENOTFOUND);
        storage_cursor_close(c);
    }
    storage_txn_abort(t);
    return d;
}

static void assert_same_contents(struct storage *a, struct storage *b)
{
    struct dump *da = dump_store(a);
    struct dump *db = dump_store(b);
    assert_int_equal(da->len, db->len);
    assert_memory_equal(da->p, db->p, da->len);
}

/* Fill every table of @s with a few entries, all derived from @tag. */
static void fill(struct storage *s, const char *tag, int n)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage_txn *t;
    int table;
    int i;
    assert_int_equal(storage_txn_begin(s, true, &t, errmsg), 0);
    for (table = 0; table < STORAGE_TABLE_NR; table++) {
        for (i = 0; i < n; i++) {
            char key[64];
            char val[256];
            int kl = snprintf(key, sizeof key, "%s-key-%04d", tag, i);
            int vl = snprintf(val, sizeof val, "%s-value-%d-%d-%0150d", tag,
                              table, i, i);
            assert_int_equal(storage_put(t, (enum storage_table)table, key,
                                         (size_t)kl, val, (size_t)vl, errmsg),
                             0);
        }
    }
    assert_int_equal(storage_txn_commit(t, errmsg), 0);
}

/* ------------------------------------------------------------------ */
/* Opening and closing.                                                 */

/* A fresh directory gets CURRENT naming generation 1, the environment in
 * state-1/ and the boot id; no CLEAN marker while open. */
static void open_fresh_dir(void **state)
{
    struct fixture *f = *state;
    char buf[128];
    char boot[128];

    open_store(f, f->dir, &f->s);
    read_in(f->dir, "CURRENT", buf, sizeof buf);
    assert_string_equal(buf, "state-1\n");
    assert_true(is_dir_in(f->dir, "state-1"));
    assert_true(exists_in(f->dir, "state-1/data.mdb"));
    assert_true(exists_in(f->dir, "state-1/lock.mdb"));
    assert_false(exists_in(f->dir, "CLEAN"));
    assert_false(exists_in(f->dir, "CURRENT.tmp"));
    read_in(f->dir, "BOOT", buf, sizeof buf);
    current_boot_id(boot, sizeof boot);
    assert_string_equal(buf, boot);
    assert_false(storage_was_reset(f->s));
    assert_int_equal(storage_sync(f->s, f->errmsg), 0);
    assert_int_equal(count(f->s, STORAGE_POLICIES), 0);
}

/* Data written before a close is there after the next open, in the same
 * generation. */
static void reopen_keeps_data(void **state)
{
    struct fixture *f = *state;
    char buf[128];

    open_store(f, f->dir, &f->s);
    put_str(f->s, STORAGE_POLICIES, "team/a", "one");
    put_str(f->s, STORAGE_MEMBERS, "m", "two");
    storage_close(f->s);
    f->s = NULL;

    open_store(f, f->dir, &f->s);
    assert_false(storage_was_reset(f->s));
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "team/a", buf, sizeof buf),
                     0);
    assert_string_equal(buf, "one");
    assert_int_equal(get_str(f->s, STORAGE_MEMBERS, "m", buf, sizeof buf), 0);
    assert_string_equal(buf, "two");
    /* Tables are separate namespaces. */
    assert_int_equal(get_str(f->s, STORAGE_META, "team/a", buf, sizeof buf),
                     REMS_ENOTFOUND);
    read_in(f->dir, "CURRENT", buf, sizeof buf);
    assert_string_equal(buf, "state-1\n");
}

/* A missing directory is REMS_EIO naming the path; nothing is allocated. */
static void open_missing_dir(void **state)
{
    struct fixture *f = *state;
    char path[512];
    int rv;

    path_in(f->dir, "nope", path, sizeof path);
    rv = storage_open(path, NULL, &f->s, f->errmsg);
    assert_int_equal(rv, REMS_EIO);
    assert_null(f->s);
    assert_non_null(strstr(f->errmsg, path));
    assert_non_null(strstr(f->errmsg, "No such file or directory"));
    assert_int_equal(f->heap.live, 0);
    assert_false(exists_in(f->dir, "nope"));
}

/* A file in place of the directory is REMS_EIO "not a directory". */
static void open_file_not_dir(void **state)
{
    struct fixture *f = *state;
    char path[512];
    int rv;

    write_in(f->dir, "file", "x");
    path_in(f->dir, "file", path, sizeof path);
    rv = storage_open(path, NULL, &f->s, f->errmsg);
    assert_int_equal(rv, REMS_EIO);
    assert_null(f->s);
    assert_non_null(strstr(f->errmsg, path));
    assert_non_null(strstr(f->errmsg, "not a directory"));
    assert_int_equal(f->heap.live, 0);
}

/* A CURRENT that names no generation is REMS_ECORRUPT and frees what open
 * allocated. */
static void open_bad_current(void **state)
{
    struct fixture *f = *state;
    int rv;

    write_in(f->dir, "CURRENT", "garbage\n");
    rv = storage_open(f->dir, NULL, &f->s, f->errmsg);
    assert_int_equal(rv, REMS_ECORRUPT);
    assert_null(f->s);
    assert_non_null(strstr(f->errmsg, "names no generation: garbage"));
    assert_int_equal(f->heap.live, 0);

    write_in(f->dir, "CURRENT", "state-0\n");
    rv = storage_open(f->dir, NULL, &f->s, f->errmsg);
    assert_int_equal(rv, REMS_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "names no generation: state-0"));

    write_in(f->dir, "CURRENT", "state-3x\n");
    rv = storage_open(f->dir, NULL, &f->s, f->errmsg);
    assert_int_equal(rv, REMS_ECORRUPT);
    assert_null(f->s);
    assert_int_equal(f->heap.live, 0);
}

/* An environment that cannot be opened (the generation's place is taken by
 * a file) is an error after the handle was allocated: no leak. */
static void open_env_fails(void **state)
{
    struct fixture *f = *state;
    int rv;

    write_in(f->dir, "CURRENT", "state-4\n");
    write_in(f->dir, "state-4", "not a directory");
    rv = storage_open(f->dir, NULL, &f->s, f->errmsg);
    assert_int_equal(rv, REMS_EIO);
    assert_null(f->s);
    assert_non_null(strstr(f->errmsg, "state-4"));
    assert_int_equal(f->heap.live, 0);
}

/* Generations CURRENT does not name (leftovers of an interrupted replace)
 * are removed at open; other names are left alone. */
static void open_removes_leftover_generations(void **state)
{
    struct fixture *f = *state;
    char path[512];

    open_store(f, f->dir, &f->s);
    put_str(f->s, STORAGE_POLICIES, "k", "v");
    storage_close(f->s);
    f->s = NULL;

    path_in(f->dir, "state-7", path, sizeof path);
    assert_int_equal(mkdir(path, 0700), 0);
    write_in(f->dir, "state-7/data.mdb", "half an image");
    path_in(f->dir, "state-0", path, sizeof path);
    assert_int_equal(mkdir(path, 0700), 0);
    path_in(f->dir, "state-2x", path, sizeof path);
    assert_int_equal(mkdir(path, 0700), 0);
    write_in(f->dir, "notes", "keep me");

    open_store(f, f->dir, &f->s);
    assert_false(exists_in(f->dir, "state-7"));
    assert_false(exists_in(f->dir, "state-0"));
    assert_true(is_dir_in(f->dir, "state-1"));
    assert_true(is_dir_in(f->dir, "state-2x"));
    assert_true(exists_in(f->dir, "notes"));
    assert_int_equal(count(f->s, STORAGE_POLICIES), 1);
}

/* CLEAN exists only between a close and the next open. */
static void clean_marker(void **state)
{
    struct fixture *f = *state;

    open_store(f, f->dir, &f->s);
    assert_false(exists_in(f->dir, "CLEAN"));
    storage_close(f->s);
    f->s = NULL;
    assert_true(exists_in(f->dir, "CLEAN"));
    open_store(f, f->dir, &f->s);
    assert_false(exists_in(f->dir, "CLEAN"));
    storage_close(f->s);
    f->s = NULL;
    assert_true(exists_in(f->dir, "CLEAN"));
    storage_close(NULL); /* A no-op. */
}

/* No CLEAN and another boot id: the machine crashed while the node ran, so
 * the state may be torn. Open starts an empty generation, says so, and
 * records this boot's id. */
static void torn_state_is_reset(void **state)
{
    struct fixture *f = *state;
    char buf[128];
    char boot[128];
    char path[512];

    open_store(f, f->dir, &f->s);
    put_str(f->s, STORAGE_POLICIES, "k", "v");
    put_str(f->s, STORAGE_AUDIT, "a", "b");
    storage_close(f->s);
    f->s = NULL;

    write_in(f->dir, "BOOT", "00000000-0000-0000-0000-000000000000\n");
    path_in(f->dir, "CLEAN", path, sizeof path);
    assert_int_equal(unlink(path), 0);

    open_store(f, f->dir, &f->s);
    assert_true(storage_was_reset(f->s));
    assert_int_equal(count(f->s, STORAGE_POLICIES), 0);
    assert_int_equal(count(f->s, STORAGE_AUDIT), 0);
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "k", buf, sizeof buf),
                     REMS_ENOTFOUND);
    read_in(f->dir, "CURRENT", buf, sizeof buf);
    assert_string_equal(buf, "state-2\n");
    assert_false(exists_in(f->dir, "state-1"));
    read_in(f->dir, "BOOT", buf, sizeof buf);
    current_boot_id(boot, sizeof boot);
    assert_string_equal(buf, boot);

    /* The fresh generation works and survives a clean restart. */
    put_str(f->s, STORAGE_POLICIES, "k2", "v2");
    storage_close(f->s);
    f->s = NULL;
    open_store(f, f->dir, &f->s);
    assert_false(storage_was_reset(f->s));
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "k2", buf, sizeof buf), 0);
    assert_string_equal(buf, "v2");
}

/* Another boot id after a clean close is a clean reboot: nothing is
 * discarded. */
static void clean_reboot_is_not_reset(void **state)
{
    struct fixture *f = *state;
    char buf[128];

    open_store(f, f->dir, &f->s);
    put_str(f->s, STORAGE_POLICIES, "k", "v");
    storage_close(f->s);
    f->s = NULL;

    write_in(f->dir, "BOOT", "00000000-0000-0000-0000-000000000000\n");
    assert_true(exists_in(f->dir, "CLEAN"));
    open_store(f, f->dir, &f->s);
    assert_false(storage_was_reset(f->s));
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "k", buf, sizeof buf), 0);
    assert_string_equal(buf, "v");
    read_in(f->dir, "CURRENT", buf, sizeof buf);
    assert_string_equal(buf, "state-1\n");
}

/* No CLEAN but the same boot id: only the process died, the OS kept every
 * page, so nothing is discarded. */
static void process_crash_is_not_reset(void **state)
{
    struct fixture *f = *state;
    char buf[128];
    char path[512];

    open_store(f, f->dir, &f->s);
    put_str(f->s, STORAGE_POLICIES, "k", "v");
    storage_close(f->s);
    f->s = NULL;
    path_in(f->dir, "CLEAN", path, sizeof path);
    assert_int_equal(unlink(path), 0);

    open_store(f, f->dir, &f->s);
    assert_false(storage_was_reset(f->s));
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "k", buf, sizeof buf), 0);
    assert_string_equal(buf, "v");
}

/* Failing the n-th allocation, for every n, gives REMS_ENOMEM, a message and
 * no leak. The sweep ends at the first n that succeeds. */
static void open_out_of_memory(void **state)
{
    struct fixture *f = *state;
    int rv;
    int n;

    for (n = 0;; n++) {
        test_heap_fail_after(&f->heap, n);
        rv = storage_open(f->dir, NULL, &f->s, f->errmsg);
        if (rv == 0) {
            break;
        }
        assert_int_equal(rv, REMS_ENOMEM);
        assert_string_equal(f->errmsg, "out of memory");
        assert_null(f->s);
        assert_int_equal(f->heap.live, 0);
    }
    test_heap_fail_after(&f->heap, -1);
    assert_true(n > 0);
    assert_non_null(f->s);
    put_str(f->s, STORAGE_META, "k", "v");
}

/* ------------------------------------------------------------------ */
/* Transactions, tables and cursors.                                    */

static void put_get_del_count(void **state)
{
    struct fixture *f = *state;
    struct storage_txn *t;
    const void *v;
    size_t vl;
    size_t n;
    char buf[64];

    open_store(f, f->dir, &f->s);
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(
        storage_put(t, STORAGE_POLICIES, "a", 1, "1", 1, f->errmsg), 0);
    assert_int_equal(
        storage_put(t, STORAGE_POLICIES, "b", 1, "22", 2, f->errmsg), 0);
    assert_int_equal(storage_put(t, STORAGE_POLICIES, "c", 1, "", 0, f->errmsg),
                     0);
    /* Replace. */
    assert_int_equal(
        storage_put(t, STORAGE_POLICIES, "a", 1, "111", 3, f->errmsg), 0);
    /* Reads in the write transaction see its writes. */
    assert_int_equal(
        storage_get(t, STORAGE_POLICIES, "a", 1, &v, &vl, f->errmsg), 0);
    assert_int_equal(vl, 3);
    assert_memory_equal(v, "111", 3);
    assert_int_equal(storage_count(t, STORAGE_POLICIES, &n, f->errmsg), 0);
    assert_int_equal(n, 3);
    assert_int_equal(storage_del(t, STORAGE_POLICIES, "b", 1, f->errmsg), 0);
    assert_int_equal(storage_txn_commit(t, f->errmsg), 0);

    assert_int_equal(count(f->s, STORAGE_POLICIES), 2);
    assert_int_equal(count(f->s, STORAGE_AUDIT), 0);
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "a", buf, sizeof buf), 0);
    assert_string_equal(buf, "111");
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "c", buf, sizeof buf), 0);
    assert_string_equal(buf, "");
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "b", buf, sizeof buf),
                     REMS_ENOTFOUND);

    /* An aborted write transaction leaves nothing behind. */
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(
        storage_put(t, STORAGE_POLICIES, "x", 1, "x", 1, f->errmsg), 0);
    assert_int_equal(storage_del(t, STORAGE_POLICIES, "a", 1, f->errmsg), 0);
    storage_txn_abort(t);
    storage_txn_abort(NULL);
    assert_int_equal(count(f->s, STORAGE_POLICIES), 2);
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "x", buf, sizeof buf),
                     REMS_ENOTFOUND);
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "a", buf, sizeof buf), 0);
}

/* Absent keys are REMS_ENOTFOUND, with the outputs untouched. */
static void get_del_missing(void **state)
{
    struct fixture *f = *state;
    struct storage_txn *t;
    const void *v = (const void *)f;
    size_t vl = 12345;

    open_store(f, f->dir, &f->s);
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(
        storage_get(t, STORAGE_POLICIES, "nope", 4, &v, &vl, f->errmsg),
        REMS_ENOTFOUND);
    assert_ptr_equal(v, f);
    assert_int_equal(vl, 12345);
    assert_int_equal(
        storage_get(t, STORAGE_POLICIES, "", 0, &v, &vl, f->errmsg),
        REMS_ENOTFOUND);
    assert_int_equal(storage_del(t, STORAGE_POLICIES, "nope", 4, f->errmsg),
                     REMS_ENOTFOUND);
    assert_int_equal(storage_del(t, STORAGE_POLICIES, "", 0, f->errmsg),
                     REMS_ENOTFOUND);
    storage_txn_abort(t);
}

/* Keys are 1..511 bytes; 0 and 512 are REMS_EINVAL naming the length. */
static void put_key_length(void **state)
{
    struct fixture *f = *state;
    struct storage_txn *t;
    char key[512];
    const void *v;
    size_t vl;

    memset(key, 'k', sizeof key);
    open_store(f, f->dir, &f->s);
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(
        storage_put(t, STORAGE_POLICIES, key, 0, "v", 1, f->errmsg),
        REMS_EINVAL);
    assert_non_null(strstr(f->errmsg, "put policies: key of 0 bytes"));
    assert_int_equal(storage_put(t, STORAGE_AUDIT, key, 512, "v", 1, f->errmsg),
                     REMS_EINVAL);
    assert_non_null(strstr(f->errmsg, "put audit: key of 512 bytes"));
    assert_non_null(strstr(f->errmsg, "1..511"));
    assert_int_equal(
        storage_put(t, STORAGE_POLICIES, key, 511, "v", 1, f->errmsg), 0);
    assert_int_equal(
        storage_put(t, STORAGE_POLICIES, key, 1, "w", 1, f->errmsg), 0);
    assert_int_equal(
        storage_get(t, STORAGE_POLICIES, key, 511, &v, &vl, f->errmsg), 0);
    assert_memory_equal(v, "v", 1);
    assert_int_equal(storage_txn_commit(t, f->errmsg), 0);
    assert_int_equal(count(f->s, STORAGE_POLICIES), 2);
}

/* A map that cannot hold the data is REMS_ENOSPACE; the store stays
 * usable. */
static void put_map_full(void **state)
{
    struct fixture *f = *state;
    struct storage_options opts = {.map_size = (size_t)1 << 20};
    struct storage_txn *t;
    static char val[64 * 1024];
    int rv = 0;
    int i;

    memset(val, 'v', sizeof val);
    assert_int_equal(storage_open(f->dir, &opts, &f->s, f->errmsg), 0);
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    for (i = 0; i < 64 && rv == 0; i++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "%d", i);
        rv = storage_put(t, STORAGE_POLICIES, key, (size_t)kl, val, sizeof val,
                         f->errmsg);
    }
    assert_int_equal(rv, REMS_ENOSPACE);
    assert_non_null(strstr(f->errmsg, "MDB_MAP_FULL"));
    storage_txn_abort(t);
    put_str(f->s, STORAGE_POLICIES, "small", "ok");
    assert_int_equal(count(f->s, STORAGE_POLICIES), 1);
}

/* Transactions and cursors report REMS_ENOMEM when their handle cannot be
 * allocated. */
static void txn_cursor_out_of_memory(void **state)
{
    struct fixture *f = *state;
    struct storage_txn *t = NULL;
    struct storage_cursor *c = NULL;

    open_store(f, f->dir, &f->s);
    test_heap_fail_after(&f->heap, 0);
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), REMS_ENOMEM);
    assert_string_equal(f->errmsg, "out of memory");
    assert_null(t);
    test_heap_fail_after(&f->heap, -1);

    /* The failed write transaction did not stay marked open. */
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    test_heap_fail_after(&f->heap, 0);
    assert_int_equal(storage_cursor_open(t, STORAGE_POLICIES, &c, f->errmsg),
                     REMS_ENOMEM);
    assert_string_equal(f->errmsg, "out of memory");
    assert_null(c);
    test_heap_fail_after(&f->heap, -1);
    storage_txn_abort(t);
}

struct kv {
    const char *k;
    const char *v;
};

/* Cursors walk in memcmp order, shorter key first on a tie; seek finds the
 * first key >= the one given. */
static void cursor_order(void **state)
{
    struct fixture *f = *state;
    static const struct kv in[] = {
        {"b", "2"},  {"ba", "3"},    {"a", "0"},       {"ab", "1a"},
        {"aa", "1"}, {"B", "upper"}, {"a\x01", "ctl"},
    };
    static const char *const sorted[] = {"B",  "a", "a\x01", "aa",
                                         "ab", "b", "ba"};
    struct storage_txn *t;
    struct storage_cursor *c;
    const void *k;
    const void *v;
    size_t kl;
    size_t vl;
    size_t i;
    int rv;

    open_store(f, f->dir, &f->s);
    for (i = 0; i < sizeof in / sizeof in[0]; i++) {
        put_str(f->s, STORAGE_POLICIES, in[i].k, in[i].v);
    }
    put_str(f->s, STORAGE_AUDIT, "0", "other table");

    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(storage_cursor_open(t, STORAGE_POLICIES, &c, f->errmsg),
                     0);
    rv = storage_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl, f->errmsg);
    for (i = 0; i < sizeof sorted / sizeof sorted[0]; i++) {
        assert_int_equal(rv, 0);
        assert_int_equal(kl, strlen(sorted[i]));
        assert_memory_equal(k, sorted[i], kl);
        rv = storage_cursor_next(c, &k, &kl, &v, &vl, f->errmsg);
    }
    assert_int_equal(rv, REMS_ENOTFOUND);

    /* Seek to a present key, between keys, before all and past the end. */
    assert_int_equal(
        storage_cursor_seek(c, "aa", 2, &k, &kl, &v, &vl, f->errmsg), 0);
    assert_int_equal(kl, 2);
    assert_memory_equal(k, "aa", 2);
    assert_int_equal(vl, 1);
    assert_memory_equal(v, "1", 1);
    assert_int_equal(
        storage_cursor_seek(c, "ac", 2, &k, &kl, &v, &vl, f->errmsg), 0);
    assert_int_equal(kl, 1);
    assert_memory_equal(k, "b", 1);
    assert_int_equal(storage_cursor_next(c, &k, &kl, &v, &vl, f->errmsg), 0);
    assert_memory_equal(k, "ba", 2);
    assert_int_equal(
        storage_cursor_seek(c, "A", 1, &k, &kl, &v, &vl, f->errmsg), 0);
    assert_memory_equal(k, "B", 1);
    assert_int_equal(
        storage_cursor_seek(c, "bb", 2, &k, &kl, &v, &vl, f->errmsg),
        REMS_ENOTFOUND);
    storage_cursor_close(c);
    storage_cursor_close(NULL);
    storage_txn_abort(t);

    /* A cursor on an empty table ends at once. */
    assert_int_equal(storage_txn_begin(f->s, false, &t, f->errmsg), 0);
    assert_int_equal(storage_cursor_open(t, STORAGE_MEMBERS, &c, f->errmsg), 0);
    assert_int_equal(
        storage_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl, f->errmsg),
        REMS_ENOTFOUND);
    storage_cursor_close(c);
    storage_txn_abort(t);
}

/* Deleting under the cursor removes that entry; the walk goes on with the
 * next one. */
static void cursor_delete(void **state)
{
    struct fixture *f = *state;
    struct storage_txn *t;
    struct storage_cursor *c;
    const void *k;
    const void *v;
    size_t kl;
    size_t vl;
    char buf[16];

    open_store(f, f->dir, &f->s);
    put_str(f->s, STORAGE_REQIDX, "a", "1");
    put_str(f->s, STORAGE_REQIDX, "b", "2");
    put_str(f->s, STORAGE_REQIDX, "c", "3");

    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    assert_int_equal(storage_cursor_open(t, STORAGE_REQIDX, &c, f->errmsg), 0);
    assert_int_equal(
        storage_cursor_seek(c, "b", 1, &k, &kl, &v, &vl, f->errmsg), 0);
    assert_int_equal(storage_cursor_del(c, f->errmsg), 0);
    assert_int_equal(storage_cursor_next(c, &k, &kl, &v, &vl, f->errmsg), 0);
    assert_memory_equal(k, "c", 1);
    assert_int_equal(
        storage_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl, f->errmsg), 0);
    assert_memory_equal(k, "a", 1);
    assert_int_equal(storage_cursor_del(c, f->errmsg), 0);
    storage_cursor_close(c);
    assert_int_equal(storage_txn_commit(t, f->errmsg), 0);

    assert_int_equal(count(f->s, STORAGE_REQIDX), 1);
    assert_int_equal(get_str(f->s, STORAGE_REQIDX, "b", buf, sizeof buf),
                     REMS_ENOTFOUND);
    assert_int_equal(get_str(f->s, STORAGE_REQIDX, "c", buf, sizeof buf), 0);
}

/* Index keys are big-endian, so byte order is numeric order. */
static void u64_key_order(void **state)
{
    static const uint64_t values[] = {
        0,
        1,
        2,
        255,
        256,
        257,
        65535,
        65536,
        (uint64_t)1 << 32,
        ((uint64_t)1 << 32) + 1,
        (uint64_t)1 << 56,
        UINT64_MAX - 1,
        UINT64_MAX,
    };
    unsigned char prev[8];
    unsigned char cur[8];
    static const unsigned char expect[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    size_t i;
    (void)state;

    storage_u64_key(0x0102030405060708u, cur);
    assert_memory_equal(cur, expect, 8);
    for (i = 0; i < sizeof values / sizeof values[0]; i++) {
        storage_u64_key(values[i], cur);
        assert_true(storage_u64_from_key(cur) == values[i]);
        if (i > 0) {
            assert_true(memcmp(prev, cur, 8) < 0);
        }
        memcpy(prev, cur, 8);
    }
}

/* Index keys sort numerically in a table too. */
static void u64_key_table_order(void **state)
{
    struct fixture *f = *state;
    static const uint64_t in[] = {300, 2, 70000, 1, 256, 255};
    static const uint64_t sorted[] = {1, 2, 255, 256, 300, 70000};
    struct storage_txn *t;
    struct storage_cursor *c;
    const void *k;
    const void *v;
    size_t kl;
    size_t vl;
    size_t i;
    int rv;

    open_store(f, f->dir, &f->s);
    assert_int_equal(storage_txn_begin(f->s, true, &t, f->errmsg), 0);
    for (i = 0; i < sizeof in / sizeof in[0]; i++) {
        unsigned char key[8];
        storage_u64_key(in[i], key);
        assert_int_equal(
            storage_put(t, STORAGE_AUDIT, key, 8, "x", 1, f->errmsg), 0);
    }
    assert_int_equal(storage_cursor_open(t, STORAGE_AUDIT, &c, f->errmsg), 0);
    rv = storage_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl, f->errmsg);
    for (i = 0; i < sizeof sorted / sizeof sorted[0]; i++) {
        assert_int_equal(rv, 0);
        assert_int_equal(kl, 8);
        assert_true(storage_u64_from_key(k) == sorted[i]);
        rv = storage_cursor_next(c, &k, &kl, &v, &vl, f->errmsg);
    }
    assert_int_equal(rv, REMS_ENOTFOUND);
    storage_cursor_close(c);
    assert_int_equal(storage_txn_commit(t, f->errmsg), 0);
}

/* ------------------------------------------------------------------ */
/* Images.                                                              */

static void *counted_malloc(size_t n)
{
    return rems_malloc(n);
}

static void counted_free(void *p)
{
    rems_free(p);
}

/* An image of one store, installed into another, gives identical contents
 * in a new generation that survives a restart. */
static void image_then_replace(void **state)
{
    struct fixture *f = *state;
    void *img;
    size_t len;
    char buf[512];

    open_store(f, f->dir, &f->s);
    fill(f->s, "src", 50);
    assert_int_equal(mkdir(f->other, 0700), 0);
    open_store(f, f->other, &f->s2);
    fill(f->s2, "dst", 80);
    put_str(f->s2, STORAGE_META, "only-in-dst", "x");

    assert_int_equal(storage_image(f->s, counted_malloc, counted_free, &img,
                                   &len, f->errmsg),
                     0);
    assert_true(len > 0);
    assert_int_equal(storage_replace(f->s2, img, len, f->errmsg), 0);
    rems_free(img);

    assert_same_contents(f->s, f->s2);
    assert_int_equal(
        get_str(f->s2, STORAGE_META, "only-in-dst", buf, sizeof buf),
        REMS_ENOTFOUND);
    read_in(f->other, "CURRENT", buf, sizeof buf);
    assert_string_equal(buf, "state-2\n");
    assert_false(exists_in(f->other, "state-1"));
    assert_true(exists_in(f->other, "state-2/data.mdb"));

    /* The replaced store takes writes, and keeps everything over a
     * restart. */
    put_str(f->s2, STORAGE_POLICIES, "after", "replace");
    put_str(f->s, STORAGE_POLICIES, "after", "replace");
    storage_close(f->s2);
    f->s2 = NULL;
    open_store(f, f->other, &f->s2);
    assert_false(storage_was_reset(f->s2));
    assert_same_contents(f->s, f->s2);

    /* A second replace moves on to generation 3. */
    assert_int_equal(storage_image(f->s, counted_malloc, counted_free, &img,
                                   &len, f->errmsg),
                     0);
    assert_int_equal(storage_replace(f->s2, img, len, f->errmsg), 0);
    rems_free(img);
    read_in(f->other, "CURRENT", buf, sizeof buf);
    assert_string_equal(buf, "state-3\n");
    assert_false(exists_in(f->other, "state-2"));
    assert_same_contents(f->s, f->s2);
}

/* An image of an empty store replaces a full one with an empty one. */
static void image_of_empty_store(void **state)
{
    struct fixture *f = *state;
    void *img;
    size_t len;

    open_store(f, f->dir, &f->s);
    assert_int_equal(mkdir(f->other, 0700), 0);
    open_store(f, f->other, &f->s2);
    fill(f->s2, "dst", 10);
    assert_int_equal(storage_image(f->s, counted_malloc, counted_free, &img,
                                   &len, f->errmsg),
                     0);
    assert_int_equal(storage_replace(f->s2, img, len, f->errmsg), 0);
    rems_free(img);
    assert_int_equal(count(f->s2, STORAGE_POLICIES), 0);
    assert_same_contents(f->s, f->s2);
}

/* A failing image allocator is REMS_ENOMEM, with nothing leaked. */
static void image_out_of_memory(void **state)
{
    struct fixture *f = *state;
    void *img = NULL;
    size_t len = 0;

    open_store(f, f->dir, &f->s);
    fill(f->s, "src", 5);
    test_heap_fail_after(&f->heap, 0);
    assert_int_equal(storage_image(f->s, counted_malloc, counted_free, &img,
                                   &len, f->errmsg),
                     REMS_ENOMEM);
    test_heap_fail_after(&f->heap, -1);
    assert_string_equal(f->errmsg, "out of memory");
    assert_null(img);
    assert_int_equal(len, 0);
}

/* Checks that a failed replace left @s as it was and usable. */
static void assert_replace_failed_cleanly(struct fixture *f,
                                          const struct dump *before)
{
    struct dump *after;
    char buf[64];

    after = dump_store(f->s);
    assert_int_equal(after->len, before->len);
    assert_memory_equal(after->p, before->p, after->len);
    read_in(f->dir, "CURRENT", buf, sizeof buf);
    assert_string_equal(buf, "state-1\n");
    assert_false(exists_in(f->dir, "state-2"));
    put_str(f->s, STORAGE_POLICIES, "still", "usable");
    assert_int_equal(get_str(f->s, STORAGE_POLICIES, "still", buf, sizeof buf),
                     0);
}

/* Bytes that are no LMDB image are refused as REMS_ECORRUPT; the old state
 * stays in place and usable, and the half-made generation is removed. */
static void replace_with_garbage(void **state)
{
    struct fixture *f = *state;
    static unsigned char garbage[3 * 4096];
    struct dump *before;
    size_t i;

    for (i = 0; i < sizeof garbage; i++) {
        garbage[i] = (unsigned char)(i * 131 + 7);
    }
    open_store(f, f->dir, &f->s);
    fill(f->s, "old", 20);
    before = dump_store(f->s);

    assert_int_equal(storage_replace(f->s, garbage, sizeof garbage, f->errmsg),
                     REMS_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "snapshot image: "));
    assert_replace_failed_cleanly(f, before);

    /* A short garbage prefix is refused too. */
    assert_int_equal(storage_replace(f->s, garbage, 100, f->errmsg),
                     REMS_ECORRUPT);
    assert_non_null(strstr(f->errmsg, "snapshot image: "));
}

/* An empty image is no image: replacing with it must fail and keep the old
 * state, not install an empty store. */
static void replace_with_empty_image(void **state)
{
    struct fixture *f = *state;
    struct dump *before;

    open_store(f, f->dir, &f->s);
    fill(f->s, "old", 20);
    before = dump_store(f->s);
    assert_int_equal(storage_replace(f->s, "", 0, f->errmsg), REMS_ECORRUPT);
    assert_replace_failed_cleanly(f, before);
}

/* The child of replace_with_truncated_image: a truncated image must be
 * refused, not crash the process. Exit codes tell the parent what
 * happened. */
static int truncated_child(const char *dir, const void *img, size_t len)
{
    char errmsg[REMS_ERRMSG_SIZE];
    struct storage *s;
    struct storage_txn *t;
    size_t n = 0;
    int rv;

    if (storage_open(dir, NULL, &s, errmsg) != 0) {
        return 10;
    }
    if (storage_txn_begin(s, true, &t, errmsg) != 0 ||
        storage_put(t, STORAGE_POLICIES, "old", 3, "state", 5, errmsg) != 0 ||
        storage_txn_commit(t, errmsg) != 0) {
        return 11;
    }
    rv = storage_replace(s, img, len, errmsg);
    if (rv != REMS_ECORRUPT) {
        fprintf(stderr, "replace of a truncated image: %d (%s)\n", rv, errmsg);
        return 12;
    }
    if (storage_txn_begin(s, false, &t, errmsg) != 0 ||
        storage_count(t, STORAGE_POLICIES, &n, errmsg) != 0 || n != 1) {
        return 13;
    }
    storage_txn_abort(t);
    storage_close(s);
    return 0;
}

/* An image cut short after its meta pages (an interrupted transfer whose
 * length field was trusted) is refused with REMS_ECORRUPT and the old state
 * stays. Runs in a child process, as the failure mode is a crash. */
static void replace_with_truncated_image(void **state)
{
    struct fixture *f = *state;
    void *img;
    size_t len;
    pid_t pid;
    int status;

    open_store(f, f->dir, &f->s);
    fill(f->s, "big", 1000);
    assert_int_equal(storage_image(f->s, counted_malloc, counted_free, &img,
                                   &len, f->errmsg),
                     0);
    assert_true(len > 64 * 4096);
    storage_close(f->s); /* LMDB handles must not cross fork(). */
    f->s = NULL;
    assert_int_equal(mkdir(f->other, 0700), 0);

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* cmocka's handlers would carry on with the next test here. */
        signal(SIGBUS, SIG_DFL);
        signal(SIGSEGV, SIG_DFL);
        _exit(truncated_child(f->other, img, len / 2));
    }
    rems_free(img);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        fail_msg("replace of a truncated image killed the process with "
                 "signal %d",
                 WTERMSIG(status));
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(open_fresh_dir),
        T(reopen_keeps_data),
        T(open_missing_dir),
        T(open_file_not_dir),
        T(open_bad_current),
        T(open_env_fails),
        T(open_removes_leftover_generations),
        T(clean_marker),
        T(torn_state_is_reset),
        T(clean_reboot_is_not_reset),
        T(process_crash_is_not_reset),
        T(open_out_of_memory),
        T(put_get_del_count),
        T(get_del_missing),
        T(put_key_length),
        T(put_map_full),
        T(txn_cursor_out_of_memory),
        T(cursor_order),
        T(cursor_delete),
        T(u64_key_order),
        T(u64_key_table_order),
        T(image_then_replace),
        T(image_of_empty_store),
        T(image_out_of_memory),
        T(replace_with_garbage),
        T(replace_with_empty_image),
        T(replace_with_truncated_image),
#undef T
    };
    return cmocka_run_group_tests_name("storage", tests, NULL, NULL);
}
