/* The LMDB state store.
 *
 * Layout and durability are described in storage.h. Generations: the live
 * environment lives in "state-<gen>"; CURRENT names it. storage_replace()
 * writes the image into "state-<gen+1>/data.mdb", fsyncs it, opens it to
 * prove it is a valid environment, writes CURRENT.tmp, renames it over
 * CURRENT and fsyncs the directory; only then is the old generation
 * removed. storage_open() removes every generation CURRENT does not name
 * (leftovers of an interrupted replace).
 *
 * Torn-state detection: open reads <dir>/BOOT (the kernel boot id at the
 * previous open) and <dir>/CLEAN (written by close after a sync). If CLEAN is
 * missing and the boot id changed, the machine crashed while the node ran
 * with unsynced pages, so the generation is discarded and a fresh one made;
 * raft replays its snapshot and log into it. */
#define _GNU_SOURCE /* memfd_create */
#include "storage/storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/assert.h"
#include "common/heap.h"

static const char *const table_names[STORAGE_TABLE_NR] = {
    "meta",         "policies",  "audit",     "requests", "reqidx",
    "members",      "agents",    "leases",    "commands", "pending",
    "remediations", "incidents", "overrides", "windows",  "incidents_open",
    "rollouts",
};

struct storage {
    char *dir;
    size_t map_size;
    unsigned long gen;
    MDB_env *env;
    MDB_dbi dbi[STORAGE_TABLE_NR];
    bool reset;
    bool write_open;
};

struct storage_txn {
    struct storage *s;
    MDB_txn *txn;
    bool write;
};

struct storage_cursor {
    struct storage_txn *t;
    MDB_cursor *cur;
};

static int mdb_error(int mrc, const char *what, char *errmsg)
{
    rems_errmsgf(errmsg, "%s: %s", what, mdb_strerror(mrc));
    switch (mrc) {
        case ENOMEM:
            return REMS_ENOMEM;
        case ENOSPC:
        case MDB_MAP_FULL:
            return REMS_ENOSPACE;
        case MDB_CORRUPTED:
        case MDB_INVALID:
        case MDB_VERSION_MISMATCH:
        case MDB_PAGE_NOTFOUND:
            return REMS_ECORRUPT;
        case MDB_BAD_VALSIZE:
            return REMS_EINVAL;
        default:
            return REMS_EIO;
    }
}

static int errno_error(const char *what, const char *path, char *errmsg)
{
    rems_errmsgf(errmsg, "%s %s: %s", what, path, strerror(errno));
    return errno == ENOMEM ? REMS_ENOMEM
           : errno == ENOSPC ? REMS_ENOSPACE
                             : REMS_EIO;
}

/* ------------------------------------------------------------------ */
/* Small file helpers.                                                  */

static int read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    if (fd < 0) {
        return -1;
    }
    n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) {
        return -1;
    }
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) {
        buf[--n] = '\0';
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rv;
    if (fd < 0) {
        return -1;
    }
    rv = fsync(fd);
    close(fd);
    return rv;
}

/* Write @len bytes to @path via a temporary file, fsync and rename. */
static int write_file_atomic(const char *dir,
                             const char *name,
                             const void *data,
                             size_t len,
                             char *errmsg)
{
    char tmp[4096];
    char path[4096];
    int fd;
    size_t off = 0;

    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return errno_error("create", tmp, errmsg);
    }
    while (off < len) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int rv = errno_error("write", tmp, errmsg);
            close(fd);
            unlink(tmp);
            return rv;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int rv = errno_error("sync", tmp, errmsg);
        unlink(tmp);
        return rv;
    }
    if (rename(tmp, path) != 0) {
        int rv = errno_error("rename", tmp, errmsg);
        unlink(tmp);
        return rv;
    }
    fsync_dir(dir);
    return 0;
}

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    char child[4096];
    if (d == NULL) {
        unlink(path);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        unlink(child);
    }
    closedir(d);
    rmdir(path);
}

/* Remove state-* directories other than generation @keep. */
static void remove_other_generations(const char *dir, unsigned long keep)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        unsigned long g;
        char tail;
        if (sscanf(e->d_name, "state-%lu%c", &g, &tail) != 1 || g == keep) {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        remove_tree(path);
    }
    closedir(d);
}

/* ------------------------------------------------------------------ */
/* Environments.                                                        */

/* Open the environment of generation @gen under @dir, creating the tables. */
static int env_open(const char *dir,
                    unsigned long gen,
                    size_t map_size,
                    MDB_env **env_out,
                    MDB_dbi *dbi,
                    char *errmsg)
{
    char path[4096];
    MDB_env *env;
    MDB_txn *txn;
    int mrc;
    int rv;
    int i;

    snprintf(path, sizeof path, "%s/state-%lu", dir, gen);
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        rv = errno_error("create", path, errmsg);
        goto err;
    }
    mrc = mdb_env_create(&env);
    if (mrc != 0) {
        rv = mdb_error(mrc, "create environment", errmsg);
        goto err;
    }
    mrc = mdb_env_set_maxdbs(env, STORAGE_TABLE_NR);
    if (mrc == 0) {
        mrc = mdb_env_set_mapsize(env, map_size);
    }
    if (mrc == 0) {
        mrc = mdb_env_open(env, path, MDB_NOTLS | MDB_NOSYNC, 0600);
    }
    if (mrc != 0) {
        rv = mdb_error(mrc, path, errmsg);
        goto err_after_env_create;
    }
    mrc = mdb_txn_begin(env, NULL, 0, &txn);
    if (mrc != 0) {
        rv = mdb_error(mrc, "begin transaction", errmsg);
        goto err_after_env_create;
    }
    for (i = 0; i < STORAGE_TABLE_NR; i++) {
        mrc = mdb_dbi_open(txn, table_names[i], MDB_CREATE, &dbi[i]);
        if (mrc != 0) {
            rv = mdb_error(mrc, "open tables", errmsg);
            goto err_after_txn_begin;
        }
    }
    mrc = mdb_txn_commit(txn);
    if (mrc != 0) {
        rv = mdb_error(mrc, "commit", errmsg);
        goto err_after_env_create;
    }
    *env_out = env;
    return 0;

err_after_txn_begin:
    mdb_txn_abort(txn);
err_after_env_create:
    mdb_env_close(env);
err:
    POST(rv != 0);
    return rv;
}

static int write_current(const char *dir, unsigned long gen, char *errmsg)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "state-%lu\n", gen);
    return write_file_atomic(dir, "CURRENT", buf, (size_t)n, errmsg);
}

/* Decide whether the previous run may have left a torn image. */
static bool previous_run_torn(const char *dir)
{
    char path[4096];
    char prev[128];
    char now[128];
    bool clean;

    snprintf(path, sizeof path, "%s/CLEAN", dir);
    clean = access(path, F_OK) == 0;
    unlink(path);
    if (clean) {
        return false;
    }
    snprintf(path, sizeof path, "%s/BOOT", dir);
    if (read_small_file(path, prev, sizeof prev) != 0) {
        return false; /* First open ever, or written before boot ids. */
    }
    if (read_small_file("/proc/sys/kernel/random/boot_id", now, sizeof now) !=
        0) {
        return false;
    }
    return strcmp(prev, now) != 0;
}

static void record_boot_id(const char *dir)
{
    char now[128];
    char err[REMS_ERRMSG_SIZE];
    if (read_small_file("/proc/sys/kernel/random/boot_id", now, sizeof now) ==
        0) {
        write_file_atomic(dir, "BOOT", now, strlen(now), err);
    }
}

int storage_open(const char *dir,
                 const struct storage_options *opts,
                 struct storage **out,
                 char *errmsg)
{
    struct storage *s;
    char path[4096];
    char cur[128];
    struct stat st;
    int rv;

    PRE(dir != NULL && out != NULL && errmsg != NULL);

    if (stat(dir, &st) != 0) {
        rv = errno_error("open", dir, errmsg);
        goto err;
    }
    if (!S_ISDIR(st.st_mode)) {
        rems_errmsgf(errmsg, "open %s: not a directory", dir);
        rv = REMS_EIO;
        goto err;
    }
    s = rems_calloc(1, sizeof *s);
    if (s == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    s->dir = rems_strdup(dir);
    if (s->dir == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_alloc;
    }
    s->map_size = opts != NULL && opts->map_size != 0
                      ? opts->map_size
                      : STORAGE_DEFAULT_MAP_SIZE;
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    if (read_small_file(path, cur, sizeof cur) == 0) {
        char tail;
        if (sscanf(cur, "state-%lu%c", &s->gen, &tail) != 1 || s->gen == 0) {
            rems_errmsgf(errmsg, "%s: names no generation: %s", path, cur);
            rv = REMS_ECORRUPT;
            goto err_after_dir_copy;
        }
    } else {
        s->gen = 1;
        rv = write_current(dir, s->gen, errmsg);
        if (rv != 0) {
            goto err_after_dir_copy;
        }
    }
    if (previous_run_torn(dir)) {
        /* Start a fresh generation; raft rebuilds it. */
        s->gen++;
        rv = write_current(dir, s->gen, errmsg);
        if (rv != 0) {
            goto err_after_dir_copy;
        }
        s->reset = true;
    }
    remove_other_generations(dir, s->gen);
    rv = env_open(dir, s->gen, s->map_size, &s->env, s->dbi, errmsg);
    if (rv != 0) {
        goto err_after_dir_copy;
    }
    record_boot_id(dir);
    *out = s;
    return 0;

err_after_dir_copy:
    rems_free(s->dir);
err_after_alloc:
    rems_free(s);
err:
    POST(rv != 0);
    return rv;
}

void storage_close(struct storage *s)
{
    char path[4096];
    int fd;
    if (s == NULL) {
        return;
    }
    PRE(!s->write_open);
    if (mdb_env_sync(s->env, 1) == 0) {
        snprintf(path, sizeof path, "%s/CLEAN", s->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
            fsync_dir(s->dir);
        }
    }
    mdb_env_close(s->env);
    rems_free(s->dir);
    rems_free(s);
}

bool storage_was_reset(const struct storage *s)
{
    return s->reset;
}

int storage_sync(struct storage *s, char *errmsg)
{
    int mrc = mdb_env_sync(s->env, 1);
    if (mrc != 0) {
        return mdb_error(mrc, "sync", errmsg);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Transactions and tables.                                             */

int storage_txn_begin(struct storage *s,
                      bool write,
                      struct storage_txn **out,
                      char *errmsg)
{
    struct storage_txn *t;
    int mrc;

    PRE(!write || !s->write_open);
    t = rems_malloc(sizeof *t);
    if (t == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    mrc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    if (mrc != 0) {
        rems_free(t);
        return mdb_error(mrc, "begin transaction", errmsg);
    }
    t->s = s;
    t->write = write;
    if (write) {
        s->write_open = true;
    }
    *out = t;
    return 0;
}

int storage_txn_commit(struct storage_txn *t, char *errmsg)
{
    int mrc = mdb_txn_commit(t->txn);
    if (t->write) {
        t->s->write_open = false;
    }
    rems_free(t);
    if (mrc != 0) {
        return mdb_error(mrc, "commit", errmsg);
    }
    return 0;
}

void storage_txn_abort(struct storage_txn *t)
{
    if (t == NULL) {
        return;
    }
    mdb_txn_abort(t->txn);
    if (t->write) {
        t->s->write_open = false;
    }
    rems_free(t);
}

int storage_get(struct storage_txn *t,
                enum storage_table table,
                const void *key,
                size_t klen,
                const void **val,
                size_t *vlen,
                char *errmsg)
{
    MDB_val k = {klen, (void *)key};
    MDB_val v;
    int mrc;

    PRE(table < STORAGE_TABLE_NR);
    if (klen == 0) {
        return REMS_ENOTFOUND;
    }
    mrc = mdb_get(t->txn, t->s->dbi[table], &k, &v);
    if (mrc == MDB_NOTFOUND) {
        return REMS_ENOTFOUND;
    }
    if (mrc != 0) {
        return mdb_error(mrc, "get", errmsg);
    }
    *val = v.mv_data;
    *vlen = v.mv_size;
    return 0;
}

int storage_put(struct storage_txn *t,
                enum storage_table table,
                const void *key,
                size_t klen,
                const void *val,
                size_t vlen,
                char *errmsg)
{
    MDB_val k = {klen, (void *)key};
    MDB_val v = {vlen, (void *)val};
    int mrc;

    PRE(table < STORAGE_TABLE_NR && t->write);
    if (klen == 0 || klen > 511) {
        rems_errmsgf(errmsg, "put %s: key of %zu bytes (must be 1..511)",
                     table_names[table], klen);
        return REMS_EINVAL;
    }
    mrc = mdb_put(t->txn, t->s->dbi[table], &k, &v, 0);
    if (mrc != 0) {
        return mdb_error(mrc, "put", errmsg);
    }
    return 0;
}

int storage_del(struct storage_txn *t,
                enum storage_table table,
                const void *key,
                size_t klen,
                char *errmsg)
{
    MDB_val k = {klen, (void *)key};
    int mrc;

    PRE(table < STORAGE_TABLE_NR && t->write);
    if (klen == 0) {
        return REMS_ENOTFOUND;
    }
    mrc = mdb_del(t->txn, t->s->dbi[table], &k, NULL);
    if (mrc == MDB_NOTFOUND) {
        return REMS_ENOTFOUND;
    }
    if (mrc != 0) {
        return mdb_error(mrc, "delete", errmsg);
    }
    return 0;
}

int storage_count(struct storage_txn *t,
                  enum storage_table table,
                  size_t *out,
                  char *errmsg)
{
    MDB_stat st;
    int mrc = mdb_stat(t->txn, t->s->dbi[table], &st);
    if (mrc != 0) {
        return mdb_error(mrc, "stat", errmsg);
    }
    *out = st.ms_entries;
    return 0;
}

int storage_cursor_open(struct storage_txn *t,
                        enum storage_table table,
                        struct storage_cursor **out,
                        char *errmsg)
{
    struct storage_cursor *c;
    int mrc;

    PRE(table < STORAGE_TABLE_NR);
    c = rems_malloc(sizeof *c);
    if (c == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    mrc = mdb_cursor_open(t->txn, t->s->dbi[table], &c->cur);
    if (mrc != 0) {
        rems_free(c);
        return mdb_error(mrc, "open cursor", errmsg);
    }
    c->t = t;
    *out = c;
    return 0;
}

void storage_cursor_close(struct storage_cursor *c)
{
    if (c == NULL) {
        return;
    }
    mdb_cursor_close(c->cur);
    rems_free(c);
}

static int cursor_result(int mrc,
                         MDB_val *k,
                         MDB_val *v,
                         const void **ko,
                         size_t *kl,
                         const void **vo,
                         size_t *vl,
                         char *errmsg)
{
    if (mrc == MDB_NOTFOUND) {
        return REMS_ENOTFOUND;
    }
    if (mrc != 0) {
        return mdb_error(mrc, "cursor", errmsg);
    }
    *ko = k->mv_data;
    *kl = k->mv_size;
    *vo = v->mv_data;
    *vl = v->mv_size;
    return 0;
}

int storage_cursor_seek(struct storage_cursor *c,
                        const void *key,
                        size_t klen,
                        const void **k,
                        size_t *kl,
                        const void **v,
                        size_t *vl,
                        char *errmsg)
{
    MDB_val mk = {klen, (void *)key};
    MDB_val mv;
    int mrc;
    if (klen == 0) {
        mrc = mdb_cursor_get(c->cur, &mk, &mv, MDB_FIRST);
    } else {
        mrc = mdb_cursor_get(c->cur, &mk, &mv, MDB_SET_RANGE);
    }
    return cursor_result(mrc, &mk, &mv, k, kl, v, vl, errmsg);
}

int storage_cursor_next(struct storage_cursor *c,
                        const void **k,
                        size_t *kl,
                        const void **v,
                        size_t *vl,
                        char *errmsg)
{
    MDB_val mk;
    MDB_val mv;
    int mrc = mdb_cursor_get(c->cur, &mk, &mv, MDB_NEXT);
    return cursor_result(mrc, &mk, &mv, k, kl, v, vl, errmsg);
}

int storage_cursor_del(struct storage_cursor *c, char *errmsg)
{
    int mrc = mdb_cursor_del(c->cur, 0);
    if (mrc != 0) {
        return mdb_error(mrc, "cursor delete", errmsg);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Images: snapshot and restore.                                        */

int storage_image(struct storage *s,
                  void *(*alloc)(size_t),
                  void (*release)(void *),
                  void **out,
                  size_t *len,
                  char *errmsg)
{
    int fd;
    int mrc;
    off_t size;
    char *buf;
    size_t off = 0;
    int rv;

    fd = memfd_create("rems-image", MFD_CLOEXEC);
    if (fd < 0) {
        rv = errno_error("create", "memfd", errmsg);
        goto err;
    }
    mrc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
    if (mrc != 0) {
        rv = mdb_error(mrc, "copy environment", errmsg);
        goto err_after_fd;
    }
    size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || lseek(fd, 0, SEEK_SET) != 0) {
        rv = errno_error("seek", "memfd", errmsg);
        goto err_after_fd;
    }
    buf = alloc((size_t)size);
    if (buf == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_fd;
    }
    while (off < (size_t)size) {
        ssize_t n = read(fd, buf + off, (size_t)size - off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            rv = errno_error("read", "memfd", errmsg);
            goto err_after_buf;
        }
        off += (size_t)n;
    }
    close(fd);
    *out = buf;
    *len = (size_t)size;
    return 0;

err_after_buf:
    release(buf);
err_after_fd:
    close(fd);
err:
    POST(rv != 0);
    return rv;
}

/* Prove that the image in @dir is an LMDB environment whose pages all lie
 * inside its @len bytes: LMDB trusts the page count in the header, so a
 * truncated image would be read past its end, and an empty file would be
 * taken for a new, empty environment. */
static int image_check(const char *dir, size_t len, char *errmsg)
{
    MDB_env *env;
    MDB_envinfo info;
    MDB_stat st;
    size_t need;
    int mrc;
    int rv = 0;

    mrc = mdb_env_create(&env);
    if (mrc != 0) {
        return mdb_error(mrc, "create environment", errmsg);
    }
    mrc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600);
    if (mrc == 0) {
        mrc = mdb_env_info(env, &info);
    }
    if (mrc == 0) {
        mrc = mdb_env_stat(env, &st);
    }
    if (mrc != 0) {
        rv = mdb_error(mrc, "snapshot image", errmsg);
        if (rv != REMS_ENOMEM) {
            rv = REMS_ECORRUPT;
        }
    } else {
        need = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
        if (need > len) {
            rems_errmsgf(errmsg,
                         "snapshot image of %zu bytes is truncated (%zu "
                         "needed)",
                         len, need);
            rv = REMS_ECORRUPT;
        }
    }
    mdb_env_close(env);
    return rv;
}

int storage_replace(struct storage *s,
                    const void *data,
                    size_t len,
                    char *errmsg)
{
    unsigned long next = s->gen + 1;
    char dir[4096];
    char path[4096];
    MDB_env *env;
    MDB_dbi dbi[STORAGE_TABLE_NR];
    int fd;
    size_t off = 0;
    int rv;

    PRE(!s->write_open);
    snprintf(dir, sizeof dir, "%s/state-%lu", s->dir, next);
    remove_tree(dir);
    if (mkdir(dir, 0700) != 0) {
        rv = errno_error("create", dir, errmsg);
        goto err;
    }
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rv = errno_error("create", path, errmsg);
        goto err_after_mkdir;
    }
    while (off < len) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rv = errno_error("write", path, errmsg);
            close(fd);
            goto err_after_mkdir;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        rv = errno_error("sync", path, errmsg);
        goto err_after_mkdir;
    }
    rv = image_check(dir, len, errmsg);
    if (rv != 0) {
        goto err_after_mkdir;
    }
    /* Opening proves the image is an environment with our tables. */
    rv = env_open(s->dir, next, s->map_size, &env, dbi, errmsg);
    if (rv != 0) {
        rems_errmsg_wrap(errmsg, "snapshot image");
        if (rv == REMS_EIO) {
            rv = REMS_ECORRUPT;
        }
        goto err_after_mkdir;
    }
    rv = write_current(s->dir, next, errmsg);
    if (rv != 0) {
        mdb_env_close(env);
        goto err_after_mkdir;
    }
    mdb_env_close(s->env);
    s->env = env;
    memcpy(s->dbi, dbi, sizeof dbi);
    remove_other_generations(s->dir, next);
    s->gen = next;
    return 0;

err_after_mkdir:
    remove_tree(dir);
err:
    POST(rv != 0);
    return rv;
}

void storage_u64_key(uint64_t v, unsigned char out[8])
{
    int i;
    for (i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

uint64_t storage_u64_from_key(const void *key)
{
    const unsigned char *p = key;
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}
