/* lincheck: is a register history linearizable?
 *
 * Input. A JSON-lines history (jepsen/HISTORY.md), parsed one line at a time
 * with json_loadb(). Each invoke of a client process is paired with the next
 * completion of the same process. Operations are filed under their key, in
 * invoke order. Nemesis events (a string process) and operations of other
 * workloads (f not read, write or cas; a read that has no key or that returns
 * a list) are paired, then dropped.
 *
 * Decomposition. Registers are independent and linearizability is
 * compositional, so each key is checked on its own.
 *
 * Operations. An ok op occupies [invoke, completion] and must be linearized.
 * A failed op never took effect and is dropped. An info op, and one that
 * never completed, may take effect at any time after its invoke, or never:
 * it is optional and has no return. A read that did not complete ok carries
 * no information and is dropped. So are info writes and cas whose new value
 * nothing could observe (no ok read returns it, no cas expects it), to a
 * fixed point: leaving such an op out changes nothing the others see.
 *
 * Search (Wing and Gong, improved by Lowe; as porcupine and knossos' wgl).
 * The ok ops' call and return entries, sorted by time (on a tie calls
 * first: ops that only touch are concurrent), sit in a doubly linked list
 * over arrays. Walking from the head, each call before the first return
 * (the frontier) belongs to an op that may be linearized next: if the
 * register accepts it and the state reached is new, its two entries are
 * unlinked (dancing links, undone in reverse order), the step is pushed and
 * the walk restarts. At the frontier the info ops get their turn (below).
 * When nothing is left to try, the state is a dead end: pop the last step
 * and go on after it. The key is linearizable once every ok op is
 * linearized, and not when a dead end has nothing to pop.
 *
 * Info ops are not in the list. Identical ones (same f and values) form a
 * class, in call order. Any linearization can swap them into call order (an
 * earlier call is available whenever a later one is), so only the next op
 * of each class is tried, if invoked by the frontier's return. An info op
 * linearized and then followed by a write, or by nothing, can be left out;
 * so one is linearized only if the next step observes its value (a read of
 * it, a cas expecting it). While that observation is owed, writes are not
 * tried, and an info op is not tried at all unless an op before the
 * frontier, or an info cas invoked by then, expects its value.
 *
 * States and memoisation. A state is (ok ops linearized, info ops
 * linearized or "spent", register value, owing). The ok set is kept as a
 * 128-bit Zobrist fingerprint (the XOR of a random key per op: O(1) per
 * step, never copied); with the value and the owing flag it names a bucket
 * of a hash table, 16 bytes a key. Two distinct keys collide with
 * probability about 2^-128, which would wrongly prune a state. A bucket
 * lists the spent sets visited, each the head of a persistent list (one
 * node per info step, shared by the states after it). A new state is pruned
 * when one in its bucket spent a subset of its info ops: that one can do
 * all the new one can (identical states included).
 *
 * Modes (enum mode, and check_key() for how they are combined). Exact, as
 * above, is conclusive both ways; but to refute an invalid history it must
 * refute every choice of which info ops took effect, which grows
 * exponentially with them. Witness prunes on the number of info ops spent
 * only: unsound, so only a linearization it finds counts, but it finds them
 * fast. Relaxed lets info ops take effect any number of times: an over-
 * approximation, conclusive only when it finds none, and about as cheap as
 * a history without info ops.
 *
 * Budget. Each search stops after --max-states states; a key that no search
 * decides is unknown, rather than the run hanging.
 *
 * Failure window. At a dead end, every ok op returning before the frontier
 * is linearized, so the history up to the frontier's return is
 * linearizable. An exhaustive search visits every reachable state, so its
 * furthest dead end marks the longest linearizable prefix of the history,
 * and the op whose return it is breaks it. The window shows that op with
 * those invoked around it. */
#include "jepsen/lincheck/lincheck.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/heap.h"
#include "common/util.h"

/* ------------------------------------------------------------------------
 * Hashing
 * ------------------------------------------------------------------------ */

/* The finaliser of splitmix64: a bijection that mixes every bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a */

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(0x100000001b3);
    }
    return mix64(h);
}

/* ------------------------------------------------------------------------
 * u64map: uint64 -> uint64, open addressing with linear probing
 * ------------------------------------------------------------------------ */

struct u64slot {
    uint64_t key;
    uint64_t val;
    bool used;
};

struct u64map {
    struct u64slot *slots;
    size_t cap; /* A power of two, or 0. */
    size_t n;
};

static void u64map_close(struct u64map *m)
{
    rems_free(m->slots);
    m->slots = NULL;
    m->cap = 0;
    m->n = 0;
}

static struct u64slot *u64map_slot(const struct u64map *m, uint64_t key)
{
    size_t i;

    if (m->cap == 0) {
        return NULL;
    }
    for (i = (size_t)mix64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slots[i].used) {
            return NULL;
        }
        if (m->slots[i].key == key) {
            return &m->slots[i];
        }
    }
}

static uint64_t *u64map_get(const struct u64map *m, uint64_t key)
{
    struct u64slot *s = u64map_slot(m, key);

    return s != NULL ? &s->val : NULL;
}

/* Insert @key (not present) with @val. Returns 0 or REMS_ENOMEM. */
static int u64map_add(struct u64map *m, uint64_t key, uint64_t val)
{
    size_t i;

    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap == 0 ? 64 : m->cap * 2;
        struct u64slot *slots = rems_calloc(cap, sizeof *slots);
        size_t j;

        if (slots == NULL) {
            return REMS_ENOMEM;
        }
        for (j = 0; j < m->cap; j++) {
            if (!m->slots[j].used) {
                continue;
            }
            for (i = (size_t)mix64(m->slots[j].key) & (cap - 1); slots[i].used;
                 i = (i + 1) & (cap - 1)) {
            }
            slots[i] = m->slots[j];
        }
        rems_free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    for (i = (size_t)mix64(key) & (m->cap - 1); m->slots[i].used;
         i = (i + 1) & (m->cap - 1)) {
        PRE(m->slots[i].key != key);
    }
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->slots[i].used = true;
    m->n++;
    return 0;
}

/* Remove @key, which is present, by backward shift: later members of the
 * probe run move back so that no lookup stops early at the hole. */
static void u64map_del(struct u64map *m, uint64_t key)
{
    struct u64slot *s = u64map_slot(m, key);
    size_t hole;
    size_t i;

    PRE(s != NULL);
    hole = (size_t)(s - m->slots);
    for (i = (hole + 1) & (m->cap - 1); m->slots[i].used;
         i = (i + 1) & (m->cap - 1)) {
        size_t home = (size_t)mix64(m->slots[i].key) & (m->cap - 1);

        /* Move slot i into the hole unless its home lies in (hole, i]. */
        if (((i - home) & (m->cap - 1)) >= ((i - hole) & (m->cap - 1))) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    m->slots[hole].used = false;
    m->n--;
}

/* ------------------------------------------------------------------------
 * History
 * ------------------------------------------------------------------------ */

/* While parsing, an operation that turned out to belong to another
 * workload (a read returning a list) is marked with line 0 and removed when
 * parsing ends, because the pending table refers to operations by position. */
#define TOMBSTONE_LINE 0u

struct lc_key {
    char *name;
    struct lincheck_op *ops;
    size_t nops;
    size_t cap;
};

struct lincheck_history {
    struct lc_key *keys;
    size_t nkeys;
    size_t cap;
    uint32_t *index; /* Key number + 1 by name hash; 0 is empty. */
    size_t index_cap;
};

void lincheck_history_free(struct lincheck_history *h)
{
    size_t i;

    if (h == NULL) {
        return;
    }
    for (i = 0; i < h->nkeys; i++) {
        rems_free(h->keys[i].name);
        rems_free(h->keys[i].ops);
    }
    rems_free(h->keys);
    rems_free(h->index);
    rems_free(h);
}

size_t lincheck_history_nkeys(const struct lincheck_history *h)
{
    return h->nkeys;
}

const char *lincheck_history_key(const struct lincheck_history *h, size_t i)
{
    PRE(i < h->nkeys);
    return h->keys[i].name;
}

const struct lincheck_op *
lincheck_history_ops(const struct lincheck_history *h, size_t i, size_t *n)
{
    PRE(i < h->nkeys);
    *n = h->keys[i].nops;
    return h->keys[i].ops;
}

static int index_grow(struct lincheck_history *h)
{
    size_t cap = h->index_cap == 0 ? 16 : h->index_cap * 2;
    uint32_t *index = rems_calloc(cap, sizeof *index);
    size_t j;
    size_t i;

    if (index == NULL) {
        return REMS_ENOMEM;
    }
    for (j = 0; j < h->nkeys; j++) {
        for (i = (size_t)hash_str(h->keys[j].name) & (cap - 1); index[i] != 0;
             i = (i + 1) & (cap - 1)) {
        }
        index[i] = (uint32_t)(j + 1);
    }
    rems_free(h->index);
    h->index = index;
    h->index_cap = cap;
    return 0;
}

/* Find the key called @name, adding it if new. Returns 0 or REMS_ENOMEM. */
static int
history_key(struct lincheck_history *h, const char *name, size_t *out)
{
    struct lc_key *k;
    size_t i;
    int rv;

    if (h->index_cap != 0) {
        for (i = (size_t)hash_str(name) & (h->index_cap - 1); h->index[i] != 0;
             i = (i + 1) & (h->index_cap - 1)) {
            if (strcmp(h->keys[h->index[i] - 1].name, name) == 0) {
                *out = h->index[i] - 1;
                return 0;
            }
        }
    }
    if (h->nkeys == h->cap) {
        size_t cap = h->cap == 0 ? 8 : h->cap * 2;
        struct lc_key *keys = rems_realloc(h->keys, cap * sizeof *keys);

        if (keys == NULL) {
            return REMS_ENOMEM;
        }
        h->keys = keys;
        h->cap = cap;
    }
    if ((h->nkeys + 1) * 2 > h->index_cap) {
        rv = index_grow(h);
        if (rv != 0) {
            return rv;
        }
    }
    k = &h->keys[h->nkeys];
    memset(k, 0, sizeof *k);
    k->name = rems_strdup(name);
    if (k->name == NULL) {
        return REMS_ENOMEM;
    }
    for (i = (size_t)hash_str(name) & (h->index_cap - 1); h->index[i] != 0;
         i = (i + 1) & (h->index_cap - 1)) {
    }
    h->index[i] = (uint32_t)(h->nkeys + 1);
    *out = h->nkeys++;
    return 0;
}

static int key_append(struct lc_key *k, const struct lincheck_op *op)
{
    if (k->nops == k->cap) {
        size_t cap = k->cap == 0 ? 64 : k->cap * 2;
        struct lincheck_op *ops = rems_realloc(k->ops, cap * sizeof *ops);

        if (ops == NULL) {
            return REMS_ENOMEM;
        }
        k->ops = ops;
        k->cap = cap;
    }
    k->ops[k->nops++] = *op;
    return 0;
}

/* ------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------ */

enum event_type { EV_INVOKE, EV_OK, EV_FAIL, EV_INFO };

/* Register operations, and everything else. */
enum fclass { FC_READ = LINCHECK_READ, FC_WRITE, FC_CAS, FC_OTHER };

/* A pending invoke, packed into a u64map value: the key number in the high
 * half and the operation's position in the low half; for an operation of
 * another workload, PENDING_OTHER in the low half and its line in the high
 * half. */
#define PENDING_OTHER UINT32_C(0xffffffff)
#define PENDING_PACK(hi, lo) (((uint64_t)(hi) << 32) | (uint64_t)(lo))
#define PENDING_HI(v) ((uint32_t)((v) >> 32))
#define PENDING_LO(v) ((uint32_t)((v)&0xffffffffu))

struct parser {
    struct lincheck_history *h;
    struct u64map pending; /* process -> packed pending invoke */
    unsigned line;         /* Of the line being parsed, from 1. */
    int64_t nevents;       /* Non-blank lines so far. */
};

static const char *const f_names[] = {"read", "write", "cas"};

static enum fclass fclass_of(const char *f)
{
    int i;

    for (i = 0; i < 3; i++) {
        if (strcmp(f, f_names[i]) == 0) {
            return (enum fclass)i;
        }
    }
    return FC_OTHER;
}

static const char *fclass_name(enum fclass fc)
{
    return fc == FC_OTHER ? "a non-register f" : f_names[fc];
}

/* The line of the invoke of the pending value @v. */
static unsigned pending_line(const struct parser *p, uint64_t v)
{
    if (PENDING_LO(v) == PENDING_OTHER) {
        return PENDING_HI(v);
    }
    return p->h->keys[PENDING_HI(v)].ops[PENDING_LO(v)].line;
}

static int parse_invoke(struct parser *p,
                        json_t *ev,
                        int64_t process,
                        enum fclass fc,
                        const char *key,
                        int64_t time,
                        int64_t index,
                        char *errmsg)
{
    struct lincheck_op op = {0};
    uint64_t *prev = u64map_get(&p->pending, (uint64_t)process);
    json_t *v = json_object_get(ev, "value");
    struct lc_key *k;
    size_t ki;
    int rv;

    if (prev != NULL) {
        rems_errmsgf(errmsg,
                     "line %u: process %" PRId64 " invokes again before its "
                     "operation from line %u completed",
                     p->line, process, pending_line(p, *prev));
        return REMS_EMALFORMED;
    }
    if (fc == FC_OTHER) {
        rv = u64map_add(&p->pending, (uint64_t)process,
                        PENDING_PACK(p->line, PENDING_OTHER));
        goto out;
    }
    op.index = index;
    op.process = process;
    op.start = time;
    op.end = -1;
    op.line = p->line;
    op.f = (enum lincheck_f)fc;
    op.type = LINCHECK_PENDING;
    op.a_null = true;
    if (fc == FC_WRITE) {
        if (!json_is_integer(v)) {
            rems_errmsgf(errmsg,
                         "line %u: the value of a write must be an "
                         "integer",
                         p->line);
            return REMS_EMALFORMED;
        }
        op.b = (int64_t)json_integer_value(v);
    } else if (fc == FC_CAS) {
        json_t *a = json_array_get(v, 0);
        json_t *b = json_array_get(v, 1);

        if (!json_is_array(v) || json_array_size(v) != 2 ||
            !(json_is_integer(a) || json_is_null(a)) || !json_is_integer(b)) {
            rems_errmsgf(errmsg,
                         "line %u: the value of a cas must be [expected, "
                         "new], integers (expected may be null)",
                         p->line);
            return REMS_EMALFORMED;
        }
        op.a_null = json_is_null(a);
        op.a = op.a_null ? 0 : (int64_t)json_integer_value(a);
        op.b = (int64_t)json_integer_value(b);
    }
    rv = history_key(p->h, key, &ki);
    if (rv != 0) {
        goto out;
    }
    k = &p->h->keys[ki];
    if (ki >= PENDING_OTHER || k->nops >= PENDING_OTHER) {
        rems_errmsgf(errmsg, "line %u: too many operations", p->line);
        return REMS_ETOOBIG;
    }
    rv = key_append(k, &op);
    if (rv != 0) {
        goto out;
    }
    rv = u64map_add(&p->pending, (uint64_t)process,
                    PENDING_PACK(ki, k->nops - 1));
    if (rv != 0) {
        /* Unfile the operation, so that a failed parse leaves no invoke
         * without its pending entry behind (the history is freed anyway). */
        k->nops--;
    }
out:
    if (rv == REMS_ENOMEM) {
        rems_errmsg_oom(errmsg);
    }
    return rv;
}

static int parse_completion(struct parser *p,
                            json_t *ev,
                            enum event_type type,
                            int64_t process,
                            enum fclass fc,
                            const char *key,
                            int64_t time,
                            char *errmsg)
{
    static const char *const names[] = {"invoke", "ok", "fail", "info"};
    uint64_t *pv = u64map_get(&p->pending, (uint64_t)process);
    struct lincheck_op *op;
    struct lc_key *k;
    json_t *v;

    if (pv == NULL) {
        rems_errmsgf(errmsg,
                     "line %u: %s for process %" PRId64
                     ", which has no pending invoke",
                     p->line, names[type], process);
        return REMS_EMALFORMED;
    }
    if (PENDING_LO(*pv) == PENDING_OTHER) {
        /* Its f is not kept; a keyless read is a set-workload read. */
        if (fc != FC_OTHER && key != NULL) {
            rems_errmsgf(errmsg,
                         "line %u: the completion's f (%s) does not match its "
                         "invoke on line %u",
                         p->line, fclass_name(fc), PENDING_HI(*pv));
            return REMS_EMALFORMED;
        }
        u64map_del(&p->pending, (uint64_t)process);
        return 0;
    }
    k = &p->h->keys[PENDING_HI(*pv)];
    op = &k->ops[PENDING_LO(*pv)];
    if (fc != (enum fclass)op->f) {
        rems_errmsgf(errmsg,
                     "line %u: the completion's f (%s) does not match its "
                     "invoke on line %u (%s)",
                     p->line, fclass_name(fc), op->line, f_names[op->f]);
        return REMS_EMALFORMED;
    }
    if (key != NULL && strcmp(key, k->name) != 0) {
        rems_errmsgf(errmsg,
                     "line %u: the completion's key does not match its invoke "
                     "on line %u",
                     p->line, op->line);
        return REMS_EMALFORMED;
    }
    if (time < op->start) {
        rems_errmsgf(errmsg,
                     "line %u: completed at time %" PRId64
                     ", before its invoke at %" PRId64 " (line %u)",
                     p->line, time, op->start, op->line);
        return REMS_EMALFORMED;
    }
    switch (type) {
        case EV_OK:
            op->type = LINCHECK_OK;
            op->end = time;
            if (op->f != LINCHECK_READ) {
                break;
            }
            v = json_object_get(ev, "value");
            if (json_is_array(v)) {
                op->line = TOMBSTONE_LINE; /* A set-workload read. */
            } else if (json_is_integer(v)) {
                op->a_null = false;
                op->a = (int64_t)json_integer_value(v);
            } else if (v != NULL && !json_is_null(v)) {
                rems_errmsgf(errmsg,
                             "line %u: the value of a read must be an integer "
                             "or null",
                             p->line);
                return REMS_EMALFORMED;
            }
            break;
        case EV_FAIL:
            op->type = LINCHECK_FAIL;
            op->end = time;
            break;
        case EV_INFO:
            /* Its interval stays open: it may take effect at any later
             * time. @end records when the client gave up. */
            op->type = LINCHECK_INFO;
            op->end = time;
            break;
        case EV_INVOKE:
            REMS_ASSERT(0);
    }
    u64map_del(&p->pending, (uint64_t)process);
    return 0;
}

/* Parse the event in the (non-blank) line @s of @len bytes. */
static int parse_line(struct parser *p, const char *s, size_t len, char *errmsg)
{
    static const char *const types[] = {"invoke", "ok", "fail", "info"};
    json_error_t jerr;
    json_t *ev;
    json_t *jv;
    enum event_type type = EV_INVOKE;
    enum fclass fc;
    const char *str;
    const char *key = NULL;
    char keybuf[32];
    int64_t process;
    int64_t time;
    int64_t index = p->nevents++;
    int rv = REMS_EMALFORMED;
    int i;

    ev = json_loadb(s, len, 0, &jerr);
    /* jansson reports an allocation failure in its lexer with an empty
     * message rather than json_error_out_of_memory. */
    if (ev == NULL && (json_error_code(&jerr) == json_error_out_of_memory ||
                       jerr.text[0] == '\0')) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err;
    }
    if (ev == NULL) {
        rems_errmsgf(errmsg, "line %u: invalid JSON: %s", p->line, jerr.text);
        goto err;
    }
    if (!json_is_object(ev)) {
        rems_errmsgf(errmsg, "line %u: not a JSON object", p->line);
        goto err_after_load;
    }
    str = json_string_value(json_object_get(ev, "type"));
    for (i = 0; str != NULL && i < 4; i++) {
        if (strcmp(str, types[i]) == 0) {
            type = (enum event_type)i;
            break;
        }
    }
    if (str == NULL || i == 4) {
        rems_errmsgf(errmsg,
                     "line %u: \"type\" must be \"invoke\", \"ok\", \"fail\" "
                     "or \"info\"",
                     p->line);
        goto err_after_load;
    }
    jv = json_object_get(ev, "process");
    if (json_is_string(jv)) {
        /* The nemesis: its faults are not register operations. */
        json_decref(ev);
        return 0;
    }
    if (!json_is_integer(jv)) {
        rems_errmsgf(errmsg,
                     "line %u: \"process\" must be an integer (a client) or "
                     "a string (the nemesis)",
                     p->line);
        goto err_after_load;
    }
    process = (int64_t)json_integer_value(jv);
    str = json_string_value(json_object_get(ev, "f"));
    if (str == NULL) {
        rems_errmsgf(errmsg, "line %u: \"f\" must be a string", p->line);
        goto err_after_load;
    }
    fc = fclass_of(str);
    jv = json_object_get(ev, "time");
    if (!json_is_integer(jv) || json_integer_value(jv) < 0) {
        rems_errmsgf(errmsg, "line %u: \"time\" must be a non-negative integer",
                     p->line);
        goto err_after_load;
    }
    time = (int64_t)json_integer_value(jv);
    jv = json_object_get(ev, "index");
    if (jv != NULL) {
        if (!json_is_integer(jv)) {
            rems_errmsgf(errmsg, "line %u: \"index\" must be an integer",
                         p->line);
            goto err_after_load;
        }
        index = (int64_t)json_integer_value(jv);
    }
    jv = json_object_get(ev, "key");
    if (json_is_string(jv)) {
        key = json_string_value(jv);
    } else if (json_is_integer(jv)) {
        snprintf(keybuf, sizeof keybuf, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(jv));
        key = keybuf;
    } else if (jv != NULL && !json_is_null(jv)) {
        rems_errmsgf(errmsg, "line %u: \"key\" must be a string or an integer",
                     p->line);
        goto err_after_load;
    }
    if (type == EV_INVOKE) {
        if (key == NULL && fc == FC_READ) {
            fc = FC_OTHER; /* A read of the set workload. */
        } else if (key == NULL && fc != FC_OTHER) {
            rems_errmsgf(errmsg, "line %u: a %s needs a \"key\"", p->line,
                         f_names[fc]);
            goto err_after_load;
        }
        rv = parse_invoke(p, ev, process, fc, key, time, index, errmsg);
    } else {
        rv = parse_completion(p, ev, type, process, fc, key, time, errmsg);
    }
    if (rv != 0) {
        goto err_after_load;
    }
    json_decref(ev);
    return 0;

err_after_load:
    json_decref(ev);
err:
    POST(rv != 0);
    return rv;
}

static bool is_blank(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') {
            return false;
        }
    }
    return true;
}

static int parser_init(struct parser *p, char *errmsg)
{
    memset(p, 0, sizeof *p);
    p->h = rems_calloc(1, sizeof *p->h);
    if (p->h == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    return 0;
}

/* Parse one line (without its newline). */
static int
parser_feed(struct parser *p, const char *s, size_t len, char *errmsg)
{
    p->line++;
    if (is_blank(s, len)) {
        return 0;
    }
    return parse_line(p, s, len, errmsg);
}

/* Drop the tombstones and the keys left without operations; hand over the
 * history. */
static void parser_finish(struct parser *p, struct lincheck_history **out)
{
    struct lincheck_history *h = p->h;
    size_t nkeys = 0;
    size_t i;
    size_t j;

    for (i = 0; i < h->nkeys; i++) {
        struct lc_key *k = &h->keys[i];
        size_t n = 0;

        for (j = 0; j < k->nops; j++) {
            if (k->ops[j].line != TOMBSTONE_LINE) {
                k->ops[n++] = k->ops[j];
            }
        }
        k->nops = n;
        if (n == 0) {
            rems_free(k->name);
            rems_free(k->ops);
            continue;
        }
        h->keys[nkeys++] = *k;
    }
    h->nkeys = nkeys;
    /* Names are not looked up any more. */
    rems_free(h->index);
    h->index = NULL;
    h->index_cap = 0;
    u64map_close(&p->pending);
    *out = h;
    p->h = NULL;
}

static void parser_close(struct parser *p)
{
    u64map_close(&p->pending);
    lincheck_history_free(p->h);
    p->h = NULL;
}

int lincheck_history_parse(const char *buf,
                           size_t len,
                           struct lincheck_history **out,
                           char *errmsg)
{
    struct parser p;
    const char *end = buf + len;
    const char *s = buf;
    int rv;

    PRE(buf != NULL || len == 0);
    rv = parser_init(&p, errmsg);
    if (rv != 0) {
        goto err;
    }
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *eol = nl != NULL ? nl : end;

        rv = parser_feed(&p, s, (size_t)(eol - s), errmsg);
        if (rv != 0) {
            goto err_after_init;
        }
        s = nl != NULL ? nl + 1 : end;
    }
    parser_finish(&p, out);
    return 0;

err_after_init:
    parser_close(&p);
err:
    POST(rv != 0);
    return rv;
}

int lincheck_history_read(FILE *in, struct lincheck_history **out, char *errmsg)
{
    struct parser p;
    size_t cap = (size_t)1 << 16;
    size_t len = 0;
    char *buf;
    int rv;

    rv = parser_init(&p, errmsg);
    if (rv != 0) {
        goto err;
    }
    buf = rems_malloc(cap);
    if (buf == NULL) {
        rems_errmsg_oom(errmsg);
        rv = REMS_ENOMEM;
        goto err_after_init;
    }
    for (;;) {
        size_t start = 0;
        size_t scanned = len;
        size_t n;
        char *nl;

        if (len == cap) {
            char *bigger = rems_realloc(buf, cap * 2);

            if (bigger == NULL) {
                rems_errmsg_oom(errmsg);
                rv = REMS_ENOMEM;
                goto err_after_buf;
            }
            buf = bigger;
            cap *= 2;
        }
        n = fread(buf + len, 1, cap - len, in);
        len += n;
        /* Only the new bytes can hold the end of the partial line. */
        nl = memchr(buf + scanned, '\n', len - scanned);
        while (nl != NULL) {
            rv = parser_feed(&p, buf + start, (size_t)(nl - (buf + start)),
                             errmsg);
            if (rv != 0) {
                goto err_after_buf;
            }
            start = (size_t)(nl - buf) + 1;
            nl = memchr(buf + start, '\n', len - start);
        }
        memmove(buf, buf + start, len - start);
        len -= start;
        if (n == 0) {
            break;
        }
    }
    if (ferror(in)) {
        rems_errmsgf(errmsg, "read error");
        rv = REMS_EIO;
        goto err_after_buf;
    }
    if (len > 0) {
        rv = parser_feed(&p, buf, len, errmsg);
        if (rv != 0) {
            goto err_after_buf;
        }
    }
    rems_free(buf);
    parser_finish(&p, out);
    return 0;

err_after_buf:
    rems_free(buf);
err_after_init:
    parser_close(&p);
err:
    POST(rv != 0);
    return rv;
}

int lincheck_history_load(const char *path,
                          struct lincheck_history **out,
                          char *errmsg)
{
    FILE *in;
    int rv;

    if (strcmp(path, "-") == 0) {
        return lincheck_history_read(stdin, out, errmsg);
    }
    in = fopen(path, "r");
    if (in == NULL) {
        rems_errmsgf(errmsg, "%s: %s", path, strerror(errno));
        return REMS_EIO;
    }
    rv = lincheck_history_read(in, out, errmsg);
    fclose(in);
    if (rv != 0) {
        rems_errmsg_wrap(errmsg, path);
    }
    return rv;
}

/* ------------------------------------------------------------------------
 * Search
 * ------------------------------------------------------------------------ */

#define NONE UINT32_MAX

/* An operation as the search sees it. */
struct sop {
    int64_t a;     /* read: value observed; cas: expected. */
    int64_t b;     /* write, cas: new value. */
    int64_t start; /* Call time. */
    int64_t end;   /* Return time (ok); when the client gave up (info). */
    uint32_t src;  /* Position in the key's operations. */
    uint32_t cls;  /* Info: its class of identical info ops. */
    uint32_t rank; /* Info: its place in the class, in call order. */
    uint8_t f;
    bool a_null;
    bool info; /* Optional, no entries in the list. */
};

/* The info ops linearized on the path to a state, as a persistent list:
 * a node adds one op to the set of its parent. */
struct spent_node {
    uint32_t op;
    uint32_t parent;
};

/* A visited state, filed in the bucket of its (ok set, value, owing). */
struct record {
    uint32_t spent;  /* Its spent list, or NONE. */
    uint32_t nspent; /* The length of that list. */
    uint32_t next;   /* Next record of the bucket, or NONE. */
};

/* One step of the path, with what it takes to undo it and to go on with
 * the walk of the state before it. */
struct frame {
    int64_t val;       /* Register value before the step. */
    uint32_t op;       /* The op linearized. */
    uint32_t frontier; /* Info step: the first return entry in the list. */
    uint32_t spent;    /* Spent list before the step. */
    uint32_t nspent;   /* Its length. */
    bool null;         /* Register absent before the step. */
    bool owing;        /* Observation owed before the step. */
};

/* Buckets by 128-bit key; the all-zero key marks an empty slot. */
struct cache {
    uint64_t *keys;  /* 2 words per slot. */
    uint32_t *heads; /* First record of each bucket. */
    size_t cap;
    size_t n;
};

enum mode {
    /* States are (ok set, value, owing, spent info set); a state whose
     * spent set includes that of a visited one with the same rest is
     * pruned (it can do no more). Conclusive. */
    MODE_EXACT,
    /* The same paths, but a state is pruned when one with the same rest
     * and no more info ops spent was visited: unsound pruning, so only a
     * linearization found is conclusive, but the states are no more than
     * (ok set, value, owing) and linearizations are found fast. */
    MODE_WITNESS,
    /* Info ops may take effect any number of times: an over-approximation,
     * so only "not linearizable" is conclusive. States as MODE_WITNESS. */
    MODE_RELAXED,
};

struct search {
    struct sop *ops;
    uint32_t nops;
    uint32_t nok;
    /* The ok ops' calls and returns in time order, in a doubly linked
     * list over arrays. */
    uint32_t nent;
    uint32_t *ent;  /* Entry -> op << 1 | is_return. */
    uint32_t *next; /* nent + 1 links; entry nent is the head. */
    uint32_t *prev;
    uint32_t *call_of; /* Ok op -> its call entry. */
    uint32_t *ret_of;  /* Ok op -> its return entry. */
    /* Info ops by class of identical ones (same f and values), each class
     * in call order: cls_ops[cls_first[c] ...] for cls_first[c + 1]. */
    uint32_t ncls;
    uint32_t *cls_first;
    uint32_t *cls_ops;
    uint32_t *spent; /* Class -> how many of its ops are linearized. */
    /* Value -> the earliest call of an info cas that expects it, and of
     * an info write that writes it. */
    struct u64map cas_from;
    struct u64map write_from;
    /* The values the ok calls before the frontier expect (info pass). */
    int64_t *need;
    uint32_t nneed;
    uint64_t *zob; /* 2 random words per op. */
    struct frame *stack;
    uint32_t capstack;
    struct cache cache;
    struct record *recs;
    uint32_t nrecs;
    uint32_t caprecs;
    struct spent_node *nodes;
    uint32_t nnodes;
    uint32_t capnodes;
    uint64_t states;
    uint32_t depth; /* Steps on the stack when the run ended. */
    enum mode mode;
};

enum outcome { OUT_VALID, OUT_INVALID, OUT_BUDGET, OUT_NOMEM };

/* The slot of bucket (@lo, @hi), or SIZE_MAX. */
static size_t cache_find(const struct cache *c, uint64_t lo, uint64_t hi)
{
    size_t i;

    for (i = (size_t)lo & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        const uint64_t *k = &c->keys[2 * i];

        if (k[0] == lo && k[1] == hi) {
            return i;
        }
        if (k[0] == 0 && k[1] == 0) {
            return SIZE_MAX;
        }
    }
}

static int cache_grow(struct cache *c)
{
    size_t cap = c->cap * 2;
    uint64_t *keys = rems_calloc(cap, 2 * sizeof *keys);
    uint32_t *heads = rems_malloc(cap * sizeof *heads);
    size_t i;
    size_t j;

    if (keys == NULL || heads == NULL) {
        rems_free(keys);
        rems_free(heads);
        return REMS_ENOMEM;
    }
    for (j = 0; j < c->cap; j++) {
        const uint64_t *k = &c->keys[2 * j];

        if (k[0] == 0 && k[1] == 0) {
            continue;
        }
        for (i = (size_t)k[0] & (cap - 1);
             keys[2 * i] != 0 || keys[2 * i + 1] != 0;
             i = (i + 1) & (cap - 1)) {
        }
        keys[2 * i] = k[0];
        keys[2 * i + 1] = k[1];
        heads[i] = c->heads[j];
    }
    rems_free(c->keys);
    rems_free(c->heads);
    c->keys = keys;
    c->heads = heads;
    c->cap = cap;
    return 0;
}

/* The slot of bucket (@lo, @hi), added empty if new; SIZE_MAX when out of
 * memory. The low word is random, so it serves as the hash. */
static size_t cache_get(struct cache *c, uint64_t lo, uint64_t hi)
{
    size_t i = cache_find(c, lo, hi);

    if (i != SIZE_MAX) {
        return i;
    }
    if ((c->n + 1) * 4 > c->cap * 3 && cache_grow(c) != 0) {
        return SIZE_MAX;
    }
    for (i = (size_t)lo & (c->cap - 1);
         c->keys[2 * i] != 0 || c->keys[2 * i + 1] != 0;
         i = (i + 1) & (c->cap - 1)) {
    }
    c->keys[2 * i] = lo;
    c->keys[2 * i + 1] = hi;
    c->heads[i] = NONE;
    c->n++;
    return i;
}

/* @arr, or a copy of it, with room for twice its *@cap elements of @size
 * bytes; NULL, leaving @arr alone, when out of memory. */
static void *grow_array(void *arr, uint32_t *cap, size_t size)
{
    void *p;

    if (*cap >= NONE / 2) {
        return NULL; /* Indices are 32 bits wide. */
    }
    p = rems_realloc(arr, (size_t)*cap * 2 * size);
    if (p != NULL) {
        *cap *= 2;
    }
    return p;
}

/* Make room for one more record, spent node and frame (at @sp). Returns 0
 * or REMS_ENOMEM. */
static int search_reserve(struct search *s, uint32_t sp)
{
    void *p;

    if (s->nrecs == s->caprecs) {
        p = grow_array(s->recs, &s->caprecs, sizeof *s->recs);
        if (p == NULL) {
            return REMS_ENOMEM;
        }
        s->recs = p;
    }
    if (s->nnodes == s->capnodes) {
        p = grow_array(s->nodes, &s->capnodes, sizeof *s->nodes);
        if (p == NULL) {
            return REMS_ENOMEM;
        }
        s->nodes = p;
    }
    if (sp == s->capstack) {
        p = grow_array(s->stack, &s->capstack, sizeof *s->stack);
        if (p == NULL) {
            return REMS_ENOMEM;
        }
        s->stack = p;
    }
    return 0;
}

/* The bucket key of a state: the fingerprint of its linearized ok ops
 * combined with the register value and the owing flag. */
static void state_key(uint64_t fp_lo,
                      uint64_t fp_hi,
                      int64_t val,
                      bool null,
                      bool owing,
                      uint64_t *lo,
                      uint64_t *hi)
{
    if (null) {
        fp_lo ^= UINT64_C(0x6a09e667f3bcc908);
        fp_hi ^= UINT64_C(0xbb67ae8584caa73b);
    } else {
        fp_lo ^= mix64((uint64_t)val + UINT64_C(0x3c6ef372fe94f82b));
        fp_hi ^= mix64((uint64_t)val ^ UINT64_C(0xa54ff53a5f1d36f1));
    }
    if (owing) {
        fp_lo ^= UINT64_C(0x510e527fade682d1);
        fp_hi ^= UINT64_C(0x9b05688c2b3e6c1f);
    }
    if (fp_lo == 0 && fp_hi == 0) {
        fp_lo = 1; /* Zero marks empty slots. */
    }
    *lo = fp_lo;
    *hi = fp_hi;
}

/* The key that marks "some state with the linearized ok ops of
 * fingerprint (@fp_lo, @fp_hi) and nothing owed was visited" (relaxed). */
static void any_key(uint64_t fp_lo, uint64_t fp_hi, uint64_t *lo, uint64_t *hi)
{
    *lo = fp_lo ^ UINT64_C(0x1f83d9abfb41bd6b);
    *hi = fp_hi ^ UINT64_C(0x5be0cd19137e2179);
    if (*lo == 0 && *hi == 0) {
        *lo = 1;
    }
}

/* Whether the bucket at @slot (SIZE_MAX: none) holds a state whose spent
 * set is within the current one (s->spent, @nspent ops): that state can do
 * all the current one can. The ops of a class are spent in call order, so
 * op x is in the current set iff spent[cls(x)] > rank(x). MODE_WITNESS
 * compares only the sizes of the sets. */
static bool dominated(const struct search *s, size_t slot, uint32_t nspent)
{
    uint32_t r;
    uint32_t n;

    if (slot == SIZE_MAX) {
        return false;
    }
    for (r = s->cache.heads[slot]; r != NONE; r = s->recs[r].next) {
        if (s->recs[r].nspent > nspent) {
            continue;
        }
        if (s->mode == MODE_WITNESS) {
            return true;
        }
        for (n = s->recs[r].spent; n != NONE; n = s->nodes[n].parent) {
            const struct sop *x = &s->ops[s->nodes[n].op];

            if (s->spent[x->cls] <= x->rank) {
                break;
            }
        }
        if (n == NONE) {
            return true;
        }
    }
    return false;
}

/* Apply @o to the register (@val, @null). Returns whether the register
 * accepts it, and the new value in (*@nval, *@nnull). */
static bool model_step(
    const struct sop *o, int64_t val, bool null, int64_t *nval, bool *nnull)
{
    switch (o->f) {
        case LINCHECK_WRITE:
            *nval = o->b;
            *nnull = false;
            return true;
        case LINCHECK_CAS:
            if (o->a_null != null || (!null && o->a != val)) {
                return false;
            }
            *nval = o->b;
            *nnull = false;
            return true;
        default:
            if (o->a_null != null || (!null && o->a != val)) {
                return false;
            }
            *nval = val;
            *nnull = null;
            return true;
    }
}

/* Unlink ok op @op's call and return entries (dancing links). */
static void lift(struct search *s, uint32_t op)
{
    uint32_t e[2] = {s->call_of[op], s->ret_of[op]};
    int i;

    for (i = 0; i < 2; i++) {
        s->next[s->prev[e[i]]] = s->next[e[i]];
        s->prev[s->next[e[i]]] = s->prev[e[i]];
    }
}

/* Exactly undoes lift(): links come back in reverse order. */
static void unlift(struct search *s, uint32_t op)
{
    uint32_t e[2] = {s->call_of[op], s->ret_of[op]};
    int i;

    for (i = 1; i >= 0; i--) {
        s->next[s->prev[e[i]]] = e[i];
        s->prev[s->next[e[i]]] = e[i];
    }
}

/* The search position: the state reached and the path to it. */
struct pos {
    uint64_t fp_lo; /* Zobrist fingerprint of the linearized ok ops. */
    uint64_t fp_hi;
    int64_t val;
    uint32_t spent; /* Spent list of the linearized info ops. */
    uint32_t nspent;
    uint32_t ok_left;
    uint32_t sp;
    bool null;
    bool owing;
};

/* Try to linearize @op at @p; @frontier is the first return entry in the
 * list (for an info op; an ok op is unlinked). Returns 1 if it was (the
 * state is new and recorded), 0 if not, or a negative enum outcome. */
static int try_step(struct search *s,
                    struct pos *p,
                    uint32_t op,
                    uint32_t frontier,
                    uint64_t max_states)
{
    const struct sop *o = &s->ops[op];
    bool spend = o->info && s->mode != MODE_RELAXED;
    uint32_t nspent = p->nspent + spend;
    uint64_t fp_lo = p->fp_lo;
    uint64_t fp_hi = p->fp_hi;
    struct frame *f;
    struct record *rec;
    int64_t nval;
    uint64_t lo;
    uint64_t hi;
    size_t slot;
    bool nnull;
    bool dom;

    /* A write never pays an owed observation. */
    if ((p->owing && o->f == LINCHECK_WRITE) ||
        !model_step(o, p->val, p->null, &nval, &nnull)) {
        return 0;
    }
    if (!o->info) {
        fp_lo ^= s->zob[2 * op];
        fp_hi ^= s->zob[2 * op + 1];
    }
    if (s->mode == MODE_RELAXED && !o->info) {
        /* Relaxed, a state whose value an info write invoked by now
         * (by o's call, so by the new frontier) could set again can do no
         * more than any state with the same ok ops and nothing owed: that
         * one can set the value first whenever it is needed. */
        const uint64_t *from = u64map_get(&s->write_from, (uint64_t)nval);

        any_key(fp_lo, fp_hi, &lo, &hi);
        slot = cache_find(&s->cache, lo, hi);
        if (slot != SIZE_MAX && !nnull && from != NULL &&
            (int64_t)*from <= o->start) {
            return 0;
        }
        if (slot == SIZE_MAX && cache_get(&s->cache, lo, hi) == SIZE_MAX) {
            return -OUT_NOMEM;
        }
    }
    s->spent[o->cls] += spend; /* For dominated(); undone below. */
    state_key(fp_lo, fp_hi, nval, nnull, false, &lo, &hi);
    dom = dominated(s, cache_find(&s->cache, lo, hi), nspent);
    if (!dom && o->info) {
        state_key(fp_lo, fp_hi, nval, nnull, true, &lo, &hi);
        dom = dominated(s, cache_find(&s->cache, lo, hi), nspent);
    }
    if (dom) {
        s->spent[o->cls] -= spend;
        return 0;
    }
    if (s->states == max_states) {
        return -OUT_BUDGET;
    }
    slot = cache_get(&s->cache, lo, hi);
    if (slot == SIZE_MAX || search_reserve(s, p->sp) != 0) {
        return -OUT_NOMEM;
    }
    s->states++;
    f = &s->stack[p->sp++];
    f->val = p->val;
    f->op = op;
    f->frontier = frontier;
    f->spent = p->spent;
    f->nspent = p->nspent;
    f->null = p->null;
    f->owing = p->owing;
    if (spend) {
        s->nodes[s->nnodes].op = op;
        s->nodes[s->nnodes].parent = p->spent;
        p->spent = s->nnodes++;
    }
    rec = &s->recs[s->nrecs];
    rec->spent = p->spent;
    rec->nspent = nspent;
    rec->next = s->cache.heads[slot];
    s->cache.heads[slot] = s->nrecs++;
    p->fp_lo = fp_lo;
    p->fp_hi = fp_hi;
    p->nspent = nspent;
    p->val = nval;
    p->null = nnull;
    p->owing = o->info;
    if (!o->info) {
        p->ok_left--;
        lift(s, op);
    }
    return 1;
}

/* Undo the last step; returns its frame (valid until the next step). */
static const struct frame *step_back(struct search *s, struct pos *p)
{
    const struct frame *f = &s->stack[--p->sp];
    const struct sop *o = &s->ops[f->op];

    if (!o->info) {
        unlift(s, f->op);
        p->fp_lo ^= s->zob[2 * f->op];
        p->fp_hi ^= s->zob[2 * f->op + 1];
        p->ok_left++;
    } else if (s->mode != MODE_RELAXED) {
        s->spent[o->cls]--;
    }
    p->val = f->val;
    p->null = f->null;
    p->owing = f->owing;
    p->spent = f->spent;
    p->nspent = f->nspent;
    return f;
}

/* The next info op of class @c, or NONE: relaxed, its first op stands for
 * all of it; otherwise its ops are spent in call order (any other order can
 * be swapped into that one, as an earlier call is available whenever a
 * later one is). */
static uint32_t class_next(const struct search *s, uint32_t c)
{
    uint32_t k = s->mode == MODE_RELAXED ? 0 : s->spent[c];

    if (s->cls_first[c] + k >= s->cls_first[c + 1]) {
        return NONE;
    }
    return s->cls_ops[s->cls_first[c] + k];
}

/* Collect in s->need the values that the ok ops whose calls come before
 * @frontier expect (reads and cas of a non-null value). */
static void collect_needs(struct search *s, uint32_t frontier)
{
    uint32_t e;

    s->nneed = 0;
    for (e = s->next[s->nent]; e != frontier; e = s->next[e]) {
        const struct sop *o = &s->ops[s->ent[e] >> 1];

        if (o->f != LINCHECK_WRITE && !o->a_null) {
            s->need[s->nneed++] = o->a;
        }
    }
}

/* Whether info op @x could be observed right after taking effect, at the
 * frontier whose time is @t: by an ok call before the frontier, or by an
 * info cas invoked by then. Linearizing it is pointless otherwise. */
static bool info_useful(const struct search *s, const struct sop *x, int64_t t)
{
    const uint64_t *from = u64map_get(&s->cas_from, (uint64_t)x->b);
    uint32_t i;

    for (i = 0; i < s->nneed; i++) {
        if (s->need[i] == x->b) {
            return true;
        }
    }
    return from != NULL && (int64_t)*from <= t;
}

/* Run the search. It succeeds once every ok op whose return entry comes
 * before @goal is linearized (@goal = s->nent: every ok op). On
 * OUT_INVALID, *@breaking is the op at the furthest dead end.
 *
 * At each state the walk first tries the ok ops whose calls come before
 * the first return in the list (the frontier), then the next info op of
 * each class invoked by the frontier's time. Trying ok ops first keeps the
 * search from guessing that timed-out ops took effect when ok ops explain
 * the reads anyway, by far the common case. */
static enum outcome search_run(struct search *s,
                               uint64_t max_states,
                               uint32_t goal,
                               uint32_t *breaking)
{
    const uint32_t head = s->nent;
    struct pos p = {0};
    uint32_t best = NONE;
    uint32_t entry;
    uint32_t frontier = NONE;
    uint32_t c = 0;
    bool info_pass = false;
    int rv;

    p.null = true;
    p.spent = NONE;
    p.ok_left = s->nok;
    if (p.ok_left == 0) {
        return OUT_VALID;
    }
    entry = s->next[head];
    for (;;) {
        if (!info_pass) {
            /* Some ok op is not linearized, so its return is ahead. */
            REMS_ASSERT(entry != head);
            if ((s->ent[entry] & 1) == 0) {
                rv = try_step(s, &p, s->ent[entry] >> 1, NONE, max_states);
                if (rv < 0) {
                    return (enum outcome)(-rv);
                }
                if (rv == 0) {
                    entry = s->next[entry];
                } else if (p.ok_left == 0) {
                    s->depth = p.sp;
                    return OUT_VALID;
                } else {
                    entry = s->next[head];
                }
                continue;
            }
            /* Every return before this one is linearized. */
            if (entry >= goal) {
                s->depth = p.sp;
                return OUT_VALID;
            }
            frontier = entry;
            info_pass = true;
            c = 0;
            collect_needs(s, frontier);
        }
        for (; c < s->ncls; c++) {
            uint32_t x = class_next(s, c);
            int64_t t;

            if (x == NONE) {
                continue;
            }
            t = s->ops[s->ent[frontier] >> 1].end;
            if (s->ops[x].start > t || !info_useful(s, &s->ops[x], t)) {
                continue;
            }
            rv = try_step(s, &p, x, frontier, max_states);
            if (rv < 0) {
                return (enum outcome)(-rv);
            }
            if (rv > 0) {
                break;
            }
        }
        if (c < s->ncls) {
            info_pass = false;
            entry = s->next[head];
            continue;
        }
        /* A dead end: nothing more to try in this state. */
        if (best == NONE || frontier > best) {
            best = frontier;
        }
        if (p.sp == 0) {
            *breaking = s->ent[best] >> 1;
            return OUT_INVALID;
        }
        {
            const struct frame *f = step_back(s, &p);

            if (s->ops[f->op].info) {
                info_pass = true;
                frontier = f->frontier;
                c = s->ops[f->op].cls + 1;
                collect_needs(s, frontier);
            } else {
                info_pass = false;
                entry = s->next[s->call_of[f->op]];
            }
        }
    }
}

struct sort_ent {
    int64_t time;
    uint32_t op;
    uint32_t ret; /* 0 for a call, 1 for a return. */
};

static int sort_ent_cmp(const void *x, const void *y)
{
    const struct sort_ent *a = x;
    const struct sort_ent *b = y;

    if (a->time != b->time) {
        return a->time < b->time ? -1 : 1;
    }
    if (a->ret != b->ret) {
        /* Calls first: operations that only touch are concurrent. */
        return a->ret < b->ret ? -1 : 1;
    }
    return a->op < b->op ? -1 : a->op > b->op;
}

/* Orders info ops by what they do, then by call time. */
static int info_cmp(const void *x, const void *y)
{
    const struct sop *a = *(const struct sop *const *)x;
    const struct sop *b = *(const struct sop *const *)y;

    if (a->f != b->f) {
        return a->f < b->f ? -1 : 1;
    }
    if (a->a_null != b->a_null) {
        return a->a_null ? -1 : 1;
    }
    if (!a->a_null && a->a != b->a) {
        return a->a < b->a ? -1 : 1;
    }
    if (a->b != b->b) {
        return a->b < b->b ? -1 : 1;
    }
    if (a->start != b->start) {
        return a->start < b->start ? -1 : 1;
    }
    return a->src < b->src ? -1 : a->src > b->src;
}

/* Whether info ops @a and @b (sorted by info_cmp()) do the same. */
static bool info_same(const struct sop *a, const struct sop *b)
{
    return a->f == b->f && a->a_null == b->a_null &&
           (a->a_null || a->a == b->a) && a->b == b->b;
}

static bool op_active(const struct lincheck_op *op)
{
    return op->type == LINCHECK_OK ||
           (op->f != LINCHECK_READ &&
            (op->type == LINCHECK_INFO || op->type == LINCHECK_PENDING));
}

static bool op_info(const struct lincheck_op *op)
{
    return op->type == LINCHECK_INFO || op->type == LINCHECK_PENDING;
}

/* Mark in @keep the info operations worth searching: drop, to a fixed
 * point, those whose new value nothing could observe, and cas that would
 * not change the value. @keep has one flag per op of @k. */
static int prune_info(const struct lc_key *k, bool *keep)
{
    struct u64map observers = {0}; /* value -> ops that need it */
    bool changed = true;
    uint64_t *c;
    size_t i;
    int rv;

    for (i = 0; i < k->nops; i++) {
        const struct lincheck_op *op = &k->ops[i];

        keep[i] = op_active(op) && !(op_info(op) && op->f == LINCHECK_CAS &&
                                     !op->a_null && op->a == op->b);
        if (!keep[i] || op->f == LINCHECK_WRITE || op->a_null) {
            continue;
        }
        c = u64map_get(&observers, (uint64_t)op->a);
        if (c != NULL) {
            (*c)++;
            continue;
        }
        rv = u64map_add(&observers, (uint64_t)op->a, 1);
        if (rv != 0) {
            goto err_after_map;
        }
    }
    while (changed) {
        changed = false;
        for (i = 0; i < k->nops; i++) {
            const struct lincheck_op *op = &k->ops[i];

            if (!keep[i] || !op_info(op)) {
                continue;
            }
            c = u64map_get(&observers, (uint64_t)op->b);
            if (c != NULL && *c > 0) {
                continue;
            }
            keep[i] = false;
            if (op->f == LINCHECK_CAS && !op->a_null) {
                c = u64map_get(&observers, (uint64_t)op->a);
                REMS_ASSERT(c != NULL && *c > 0);
                (*c)--;
                changed = true;
            }
        }
    }
    u64map_close(&observers);
    return 0;

err_after_map:
    u64map_close(&observers);
    POST(rv != 0);
    return rv;
}

static void search_close(struct search *s)
{
    rems_free(s->ops);
    rems_free(s->ent);
    rems_free(s->next);
    rems_free(s->prev);
    rems_free(s->call_of);
    rems_free(s->ret_of);
    rems_free(s->cls_first);
    rems_free(s->cls_ops);
    rems_free(s->spent);
    u64map_close(&s->cas_from);
    u64map_close(&s->write_from);
    rems_free(s->need);
    rems_free(s->zob);
    rems_free(s->stack);
    rems_free(s->cache.keys);
    rems_free(s->cache.heads);
    rems_free(s->recs);
    rems_free(s->nodes);
}

/* Group the info ops of @s into classes of identical ones, each in call
 * order. @tmp has room for s->nops pointers. */
static void classify_info(struct search *s, struct sop **tmp)
{
    uint32_t n = 0;
    uint32_t i;

    for (i = 0; i < s->nops; i++) {
        if (s->ops[i].info) {
            tmp[n++] = &s->ops[i];
        }
    }
    qsort(tmp, n, sizeof *tmp, info_cmp);
    s->ncls = 0;
    for (i = 0; i < n; i++) {
        if (i == 0 || !info_same(tmp[i - 1], tmp[i])) {
            s->cls_first[s->ncls++] = i;
        }
        tmp[i]->cls = s->ncls - 1;
        tmp[i]->rank = i - s->cls_first[s->ncls - 1];
        s->cls_ops[i] = (uint32_t)(tmp[i] - s->ops);
    }
    s->cls_first[s->ncls] = n;
}

/* Forget all a run did, before the next run in @mode. */
static void search_reset(struct search *s, enum mode mode)
{
    uint32_t i;

    for (i = 0; i < s->nent; i++) {
        s->next[i] = i + 1;
        s->prev[i] = i == 0 ? s->nent : i - 1;
    }
    s->next[s->nent] = s->nent == 0 ? s->nent : 0;
    s->prev[s->nent] = s->nent == 0 ? s->nent : s->nent - 1;
    memset(s->spent, 0, ((size_t)s->ncls + 1) * sizeof *s->spent);
    memset(s->cache.keys, 0, s->cache.cap * 2 * sizeof *s->cache.keys);
    s->cache.n = 0;
    s->nrecs = 0;
    s->nnodes = 0;
    s->states = 0;
    s->depth = 0;
    s->mode = mode;
}

/* Build the search of key @k. Returns 0, REMS_ENOMEM or REMS_ETOOBIG. */
static int search_init(struct search *s, const struct lc_key *k)
{
    struct sort_ent *sorted;
    uint64_t seed = UINT64_C(0x2545f4914f6cdd1d);
    size_t cap;
    bool *keep;
    uint32_t i;
    uint32_t n = 0;
    uint32_t e = 0;
    int rv = REMS_ENOMEM;

    memset(s, 0, sizeof *s);
    keep = rems_malloc(k->nops * sizeof *keep + 1);
    if (keep == NULL) {
        goto err;
    }
    rv = prune_info(k, keep);
    if (rv != 0) {
        goto err_after_keep;
    }
    for (i = 0; i < k->nops; i++) {
        n += keep[i];
    }
    if (n > NONE / 4) {
        rv = REMS_ETOOBIG; /* Entries hold op << 1. */
        goto err_after_keep;
    }
    rv = REMS_ENOMEM;
    cap = (size_t)n + 1;
    s->ops = rems_malloc(cap * sizeof *s->ops);
    s->ent = rems_malloc(2 * cap * sizeof *s->ent);
    s->next = rems_malloc(2 * cap * sizeof *s->next);
    s->prev = rems_malloc(2 * cap * sizeof *s->prev);
    s->call_of = rems_malloc(cap * sizeof *s->call_of);
    s->ret_of = rems_malloc(cap * sizeof *s->ret_of);
    s->cls_first = rems_malloc(cap * sizeof *s->cls_first);
    s->cls_ops = rems_malloc(cap * sizeof *s->cls_ops);
    s->spent = rems_calloc(cap, sizeof *s->spent);
    s->need = rems_malloc(cap * sizeof *s->need);
    s->zob = rems_malloc(2 * cap * sizeof *s->zob);
    s->capstack = (uint32_t)cap;
    s->stack = rems_malloc(cap * sizeof *s->stack);
    s->cache.cap = 1024;
    s->cache.keys = rems_calloc(s->cache.cap, 2 * sizeof *s->cache.keys);
    s->cache.heads = rems_malloc(s->cache.cap * sizeof *s->cache.heads);
    s->caprecs = 1024;
    s->recs = rems_malloc(s->caprecs * sizeof *s->recs);
    s->capnodes = 1024;
    s->nodes = rems_malloc(s->capnodes * sizeof *s->nodes);
    /* Also holds classify_info()'s pointers. */
    sorted = rems_malloc(2 * cap * sizeof *sorted);
    if (s->ops == NULL || s->ent == NULL || s->next == NULL ||
        s->prev == NULL || s->call_of == NULL || s->ret_of == NULL ||
        s->cls_first == NULL || s->cls_ops == NULL || s->spent == NULL ||
        s->need == NULL || s->zob == NULL || s->stack == NULL ||
        s->cache.keys == NULL || s->cache.heads == NULL || s->recs == NULL ||
        s->nodes == NULL || sorted == NULL) {
        goto err_after_alloc;
    }
    for (i = 0; i < k->nops; i++) {
        const struct lincheck_op *op = &k->ops[i];
        struct sop *o;

        if (!keep[i]) {
            continue;
        }
        o = &s->ops[s->nops];
        memset(o, 0, sizeof *o);
        o->f = (uint8_t)op->f;
        o->a = op->a;
        o->a_null = op->a_null;
        o->b = op->b;
        o->start = op->start;
        o->end = op->end < 0 ? INT64_MAX : op->end;
        o->info = op_info(op);
        o->src = i;
        if (!o->info) {
            sorted[e].time = op->start;
            sorted[e].op = s->nops;
            sorted[e++].ret = 0;
            sorted[e].time = op->end;
            sorted[e].op = s->nops;
            sorted[e++].ret = 1;
            s->nok++;
        }
        s->nops++;
    }
    qsort(sorted, e, sizeof *sorted, sort_ent_cmp);
    s->nent = e;
    for (i = 0; i < e; i++) {
        s->ent[i] = sorted[i].op << 1 | sorted[i].ret;
        if (sorted[i].ret) {
            s->ret_of[sorted[i].op] = i;
        } else {
            s->call_of[sorted[i].op] = i;
        }
    }
    classify_info(s, (struct sop **)(void *)sorted);
    for (i = 0; i < s->nops; i++) {
        const struct sop *o = &s->ops[i];
        struct u64map *m = o->f == LINCHECK_CAS ? &s->cas_from : &s->write_from;
        uint64_t v = (uint64_t)(o->f == LINCHECK_CAS ? o->a : o->b);
        uint64_t *from;

        if (!o->info || (o->f == LINCHECK_CAS && o->a_null)) {
            continue;
        }
        from = u64map_get(m, v);
        if (from == NULL) {
            if (u64map_add(m, v, (uint64_t)o->start) != 0) {
                goto err_after_alloc;
            }
        } else if ((int64_t)*from > o->start) {
            *from = (uint64_t)o->start;
        }
    }
    for (i = 0; i < 2 * s->nops; i++) {
        seed += UINT64_C(0x9e3779b97f4a7c15); /* splitmix64 */
        s->zob[i] = mix64(seed);
    }
    search_reset(s, MODE_EXACT);
    rems_free(sorted);
    rems_free(keep);
    return 0;

err_after_alloc:
    rems_free(sorted);
    search_close(s);
err_after_keep:
    rems_free(keep);
err:
    POST(rv != 0);
    return rv;
}

/* ------------------------------------------------------------------------
 * Check
 * ------------------------------------------------------------------------ */

/* Fill the window of @kr around op @brk of @k: the concurrent operations
 * invoked after it (at most a third of the window), then as many of those
 * invoked before it as fit. */
static void
build_window(const struct lc_key *k, size_t brk, struct lincheck_key_result *kr)
{
    const struct lincheck_op *after[LINCHECK_WINDOW_MAX / 3];
    const struct lincheck_op *before[LINCHECK_WINDOW_MAX];
    int64_t end = k->ops[brk].end;
    size_t nafter = 0;
    size_t nbefore = 0;
    size_t i;

    for (i = brk + 1; i < k->nops && nafter < REMS_ARRAY_SIZE(after) &&
                      k->ops[i].start <= end;
         i++) {
        if (op_active(&k->ops[i])) {
            after[nafter++] = &k->ops[i];
        }
    }
    for (i = brk; i > 0 && nbefore < LINCHECK_WINDOW_MAX - 1 - nafter; i--) {
        if (op_active(&k->ops[i - 1])) {
            before[nbefore++] = &k->ops[i - 1];
        }
    }
    kr->nwindow = 0;
    while (nbefore > 0) {
        kr->window[kr->nwindow++] = before[--nbefore];
    }
    kr->window[kr->nwindow++] = &k->ops[brk];
    for (i = 0; i < nafter; i++) {
        kr->window[kr->nwindow++] = after[i];
    }
}

/* The ok op, with the earliest return, that no linearization can explain
 * whatever the others do, or NONE: a read or cas expecting a value that no
 * op invoked before it returned writes, or expecting null (absent) after a
 * write completed before it was invoked (nothing writes null). */
static uint32_t impossible_op(const struct search *s)
{
    struct u64map first = {0};   /* value -> earliest call writing it */
    int64_t written = INT64_MAX; /* when an ok write first completed */
    uint32_t best = NONE;
    uint64_t *t;
    uint32_t i;

    for (i = 0; i < s->nops; i++) {
        const struct sop *o = &s->ops[i];

        if (o->f == LINCHECK_READ) {
            continue;
        }
        if (!o->info && o->end < written) {
            written = o->end;
        }
        t = u64map_get(&first, (uint64_t)o->b);
        if (t != NULL && (int64_t)*t > o->start) {
            *t = (uint64_t)o->start;
        } else if (t == NULL && u64map_add(&first, (uint64_t)o->b,
                                           (uint64_t)o->start) != 0) {
            goto out; /* Out of memory: this is only a shortcut. */
        }
    }
    for (i = 0; i < s->nops; i++) {
        const struct sop *o = &s->ops[i];
        bool impossible;

        if (o->info || o->f == LINCHECK_WRITE) {
            continue;
        }
        if (o->a_null) {
            impossible = written < o->start;
        } else {
            t = u64map_get(&first, (uint64_t)o->a);
            impossible = t == NULL || (int64_t)*t > o->end;
        }
        if (impossible && (best == NONE || s->ret_of[i] < s->ret_of[best])) {
            best = i;
        }
    }
out:
    u64map_close(&first);
    return best;
}

/* Whether the steps on the stack of @s, a run that found every ok op with
 * a return entry before @goal linearizable, are a linearization: each op
 * at most once, those ok ops all there, the register accepting each step,
 * and no op placed before one that completed before it was invoked. */
static bool certificate_ok(const struct search *s, uint32_t goal)
{
    uint32_t *seen = rems_calloc((size_t)s->nops + 1, sizeof *seen);
    int64_t min_end = INT64_MAX;
    int64_t val = 0;
    bool null = true;
    bool ok = seen != NULL;
    uint32_t i;

    /* The register's rules again, apart from model_step(). */
    for (i = 0; ok && i < s->depth; i++) {
        const struct sop *o = &s->ops[s->stack[i].op];

        ok = seen[s->stack[i].op]++ == 0 &&
             (o->f == LINCHECK_WRITE ||
              (o->a_null ? null : !null && o->a == val));
        if (o->f != LINCHECK_READ) {
            val = o->b;
            null = false;
        }
    }
    for (i = 0; ok && i < s->nops; i++) {
        ok = s->ops[i].info || seen[i] == 1 || s->ret_of[i] >= goal;
    }
    for (i = s->depth; ok && i-- > 0;) {
        const struct sop *o = &s->ops[s->stack[i].op];

        ok = min_end >= o->start; /* Touching ops are concurrent. */
        if (!o->info && o->end < min_end) {
            min_end = o->end;
        }
    }
    if (seen == NULL) {
        return true; /* Out of memory: no check, trust the search. */
    }
    rems_free(seen);
    return ok;
}

/* Run a search of @s in @mode, adding its states to @kr. */
static enum outcome run(struct search *s,
                        enum mode mode,
                        uint64_t max_states,
                        uint32_t goal,
                        uint32_t *breaking,
                        struct lincheck_key_result *kr)
{
    enum outcome out;

    search_reset(s, mode);
    out = search_run(s, max_states, goal, breaking);
    kr->states += s->states;
    /* A linearization found is the verdict "valid" (or "first"): check it
     * independently of the search. Relaxed ones may reuse info ops. */
    REMS_ASSERT(out != OUT_VALID || mode == MODE_RELAXED ||
                certificate_ok(s, goal));
    return out;
}

/* Check key @k into @kr, by searches of at most @max_states states each:
 *
 * 1. An op R that nothing can explain (impossible_op()) breaks the history
 *    for certain: go to 4. Otherwise, without info ops, one exact search
 *    decides.
 * 2. Witness (an eighth of the budget): finds the linearization of
 *    histories that have one, fast.
 * 3. Failing that, relaxed. Info ops taking effect any number of times
 *    over-approximates, so "not linearizable" here is certain, at some op
 *    R; and it costs about what a history without info ops costs, where
 *    the exact search of an invalid history grows exponentially with the
 *    info ops (it must refute every choice of which took effect). If it
 *    finds a linearization, or gives up: exact on the whole history.
 * 4. Is the history before R's completion linearizable (witness, then
 *    exact)? Yes: R is the first op that breaks the history. No: the exact
 *    search found the op that is. Out of budget: R is reported, not known
 *    to be the first. */
static void check_key(const struct lc_key *k,
                      uint64_t max_states,
                      struct lincheck_key_result *kr)
{
    struct search s;
    enum outcome out;
    uint32_t brk = 0;
    uint32_t unused;
    uint32_t goal;
    size_t i;
    int rv;

    memset(kr, 0, sizeof *kr);
    kr->key = k->name;
    kr->verdict = LINCHECK_UNKNOWN;
    for (i = 0; i < k->nops; i++) {
        if (op_active(&k->ops[i])) {
            kr->ops++;
            kr->info += op_info(&k->ops[i]);
        }
    }
    rv = search_init(&s, k);
    if (rv != 0) {
        kr->reason =
            rv == REMS_ETOOBIG ? "too many operations" : "out of memory";
        return;
    }
    brk = impossible_op(&s);
    if (brk != NONE) {
        goto prefix;
    }
    if (s.ncls == 0) {
        out = run(&s, MODE_EXACT, max_states, s.nent, &brk, kr);
        kr->first = true; /* If invalid: an exact search's furthest end. */
        goto out;
    }
    out = run(&s, MODE_WITNESS, max_states / 8 + 1, s.nent, &unused, kr);
    if (out == OUT_VALID || out == OUT_NOMEM) {
        goto out;
    }
    out = run(&s, MODE_RELAXED, max_states, s.nent, &brk, kr);
    if (out == OUT_NOMEM) {
        goto out;
    }
    if (out != OUT_INVALID) {
        out = run(&s, MODE_EXACT, max_states, s.nent, &brk, kr);
        kr->first = true;
        goto out;
    }
prefix:
    goal = s.ret_of[brk];
    out = run(&s, MODE_WITNESS, max_states, goal, &unused, kr);
    if (out != OUT_VALID && out != OUT_NOMEM) {
        out = run(&s, MODE_EXACT, max_states, goal, &brk, kr);
    }
    /* Unless the exact search found an earlier one, brk is still R. */
    kr->first = out != OUT_BUDGET;
    if (out != OUT_NOMEM) {
        out = OUT_INVALID;
    }
out:
    kr->first &= out == OUT_INVALID;
    switch (out) {
        case OUT_VALID:
            kr->verdict = LINCHECK_VALID;
            break;
        case OUT_INVALID:
            kr->verdict = LINCHECK_INVALID;
            kr->breaking = &k->ops[s.ops[brk].src];
            build_window(k, s.ops[brk].src, kr);
            break;
        case OUT_BUDGET:
            kr->reason = "state budget exhausted";
            break;
        case OUT_NOMEM:
            kr->reason = "out of memory";
            break;
    }
    search_close(&s);
}

int lincheck_check(const struct lincheck_history *h,
                   const struct lincheck_options *opts,
                   struct lincheck_result *out,
                   char *errmsg)
{
    uint64_t max_states = LINCHECK_DEFAULT_MAX_STATES;
    struct lincheck_key_result *keys;
    bool unknown = false;
    bool invalid = false;
    size_t i;

    if (opts != NULL && opts->max_states != 0) {
        max_states = opts->max_states;
    }
    keys = rems_calloc(h->nkeys + 1, sizeof *keys);
    if (keys == NULL) {
        rems_errmsg_oom(errmsg);
        return REMS_ENOMEM;
    }
    for (i = 0; i < h->nkeys; i++) {
        check_key(&h->keys[i], max_states, &keys[i]);
        invalid |= keys[i].verdict == LINCHECK_INVALID;
        unknown |= keys[i].verdict == LINCHECK_UNKNOWN;
    }
    out->keys = keys;
    out->nkeys = h->nkeys;
    out->verdict = invalid   ? LINCHECK_INVALID
                   : unknown ? LINCHECK_UNKNOWN
                             : LINCHECK_VALID;
    return 0;
}

void lincheck_result_close(struct lincheck_result *r)
{
    rems_free(r->keys);
    r->keys = NULL;
    r->nkeys = 0;
}

const char *lincheck_verdict_name(enum lincheck_verdict v)
{
    switch (v) {
        case LINCHECK_VALID:
            return "valid";
        case LINCHECK_INVALID:
            return "invalid";
        default:
            return "unknown";
    }
}

int lincheck_verdict_exit(enum lincheck_verdict v)
{
    switch (v) {
        case LINCHECK_VALID:
            return LINCHECK_EXIT_VALID;
        case LINCHECK_INVALID:
            return LINCHECK_EXIT_INVALID;
        default:
            return LINCHECK_EXIT_UNKNOWN;
    }
}

/* ------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------ */

static const char *type_name(enum lincheck_type t)
{
    static const char *const names[] = {"ok", "fail", "info", "pending"};

    return names[t];
}

static void format_value(const struct lincheck_op *op, char *buf, size_t size)
{
    char a[24];

    if (op->a_null) {
        snprintf(a, sizeof a, "null");
    } else {
        snprintf(a, sizeof a, "%" PRId64, op->a);
    }
    switch (op->f) {
        case LINCHECK_READ:
            snprintf(buf, size, "%s", op->type == LINCHECK_OK ? a : "?");
            break;
        case LINCHECK_WRITE:
            snprintf(buf, size, "%" PRId64, op->b);
            break;
        case LINCHECK_CAS:
            snprintf(buf, size, "[%s, %" PRId64 "]", a, op->b);
            break;
    }
}

/* One table row: marker, index, process, type, f, value, start, end. */
#define WINDOW_COLS 8

static void format_row(const struct lincheck_op *op,
                       bool breaking,
                       char cells[WINDOW_COLS][48])
{
    snprintf(cells[0], 48, "%s", breaking ? "=>" : "");
    snprintf(cells[1], 48, "%" PRId64, op->index);
    snprintf(cells[2], 48, "%" PRId64, op->process);
    snprintf(cells[3], 48, "%s", type_name(op->type));
    snprintf(cells[4], 48, "%s", f_names[op->f]);
    format_value(op, cells[5], 48);
    snprintf(cells[6], 48, "%" PRId64, op->start);
    if (op->end >= 0) {
        snprintf(cells[7], 48, "%" PRId64, op->end);
    } else {
        snprintf(cells[7], 48, "-");
    }
}

static void print_window(const struct lincheck_key_result *kr, FILE *out)
{
    static const char *const heads[WINDOW_COLS] = {
        "", "index", "process", "type", "f", "value", "start", "end"};
    /* Numbers are right-aligned, words left-aligned. */
    static const bool right[WINDOW_COLS] = {false, true,  true, false,
                                            false, false, true, true};
    char cells[LINCHECK_WINDOW_MAX][WINDOW_COLS][48];
    int width[WINDOW_COLS];
    size_t i;
    int c;
    char v[48];

    for (c = 0; c < WINDOW_COLS; c++) {
        width[c] = (int)strlen(heads[c]);
    }
    for (i = 0; i < kr->nwindow; i++) {
        format_row(kr->window[i], kr->window[i] == kr->breaking, cells[i]);
        for (c = 0; c < WINDOW_COLS; c++) {
            int w = (int)strlen(cells[i][c]);

            width[c] = w > width[c] ? w : width[c];
        }
    }
    format_value(kr->breaking, v, sizeof v);
    fprintf(out,
            "  no linearization explains the completion of index %" PRId64
            " (process %" PRId64 ", %s %s)",
            kr->breaking->index, kr->breaking->process,
            f_names[kr->breaking->f], v);
    if (kr->first) {
        fprintf(out, "; the history before it is linearizable\n");
    } else {
        fprintf(out, ";\n  the search for an earlier op that breaks the "
                     "history ran out of budget\n");
    }
    for (i = 0; i <= kr->nwindow; i++) {
        fprintf(out, "  ");
        for (c = 0; c < WINDOW_COLS; c++) {
            const char *cell = i == 0 ? heads[c] : cells[i - 1][c];

            fprintf(out, "  %*s", right[c] ? width[c] : -width[c], cell);
        }
        fprintf(out, "\n");
    }
}

int lincheck_result_print(const struct lincheck_result *r, FILE *out)
{
    size_t i;

    for (i = 0; i < r->nkeys; i++) {
        const struct lincheck_key_result *kr = &r->keys[i];

        switch (kr->verdict) {
            case LINCHECK_VALID:
                fprintf(out, "key %s: linearizable (%zu ops, %zu info)\n",
                        kr->key, kr->ops, kr->info);
                break;
            case LINCHECK_INVALID:
                fprintf(out, "key %s: NOT linearizable (%zu ops, %zu info)\n",
                        kr->key, kr->ops, kr->info);
                print_window(kr, out);
                break;
            case LINCHECK_UNKNOWN:
                fprintf(out,
                        "key %s: unknown (%zu ops, %zu info): %s after %" PRIu64
                        " states\n",
                        kr->key, kr->ops, kr->info, kr->reason, kr->states);
                break;
        }
    }
    fprintf(out, "valid: %s\n",
            r->verdict == LINCHECK_VALID     ? "true"
            : r->verdict == LINCHECK_INVALID ? "false"
                                             : "unknown");
    fflush(out);
    return ferror(out) ? REMS_EIO : 0;
}

static json_t *verdict_json(enum lincheck_verdict v)
{
    if (v == LINCHECK_UNKNOWN) {
        return json_string("unknown");
    }
    return json_boolean(v == LINCHECK_VALID);
}

static json_t *value_json(const struct lincheck_op *op)
{
    json_t *a;

    if (op->f == LINCHECK_WRITE) {
        return json_integer(op->b);
    }
    a = op->a_null || (op->f == LINCHECK_READ && op->type != LINCHECK_OK)
            ? json_null()
            : json_integer(op->a);
    if (op->f == LINCHECK_READ) {
        return a;
    }
    /* "o" steals @a, also when json_pack() fails. */
    return json_pack("[o, I]", a, (json_int_t)op->b);
}

static json_t *op_json(const struct lincheck_op *op, bool breaking)
{
    bool ended = op->end >= 0;

    return json_pack("{s:I, s:I, s:s, s:s, s:o, s:I, s:o, s:b}", "index",
                     (json_int_t)op->index, "process", (json_int_t)op->process,
                     "type", type_name(op->type), "f", f_names[op->f], "value",
                     value_json(op), "start", (json_int_t)op->start, "end",
                     ended ? json_integer(op->end) : json_null(), "breaking",
                     breaking);
}

static json_t *key_json(const struct lincheck_key_result *kr)
{
    json_t *window;
    json_t *o;
    size_t i;

    o = json_pack("{s:o, s:I, s:I, s:I}", "valid", verdict_json(kr->verdict),
                  "ops", (json_int_t)kr->ops, "info", (json_int_t)kr->info,
                  "states", (json_int_t)kr->states);
    if (o == NULL) {
        return NULL;
    }
    if (kr->verdict == LINCHECK_UNKNOWN &&
        json_object_set_new(o, "reason", json_string(kr->reason)) != 0) {
        goto err_after_o;
    }
    if (kr->verdict != LINCHECK_INVALID) {
        return o;
    }
    if (json_object_set_new(o, "first", json_boolean(kr->first)) != 0 ||
        json_object_set_new(o, "breaking", op_json(kr->breaking, true)) != 0) {
        goto err_after_o;
    }
    window = json_array();
    if (json_object_set_new(o, "window", window) != 0) {
        goto err_after_o;
    }
    for (i = 0; i < kr->nwindow; i++) {
        if (json_array_append_new(
                window,
                op_json(kr->window[i], kr->window[i] == kr->breaking)) != 0) {
            goto err_after_o;
        }
    }
    return o;

err_after_o:
    json_decref(o);
    return NULL;
}

json_t *lincheck_result_json(const struct lincheck_result *r)
{
    json_t *keys;
    json_t *o;
    size_t i;

    keys = json_object();
    o = json_pack("{s:o, s:o}", "valid", verdict_json(r->verdict), "keys",
                  json_incref(keys));
    if (o == NULL) {
        goto err_after_keys;
    }
    for (i = 0; i < r->nkeys; i++) {
        if (json_object_set_new(keys, r->keys[i].key, key_json(&r->keys[i])) !=
            0) {
            goto err_after_o;
        }
    }
    json_decref(keys);
    return o;

err_after_o:
    json_decref(o);
err_after_keys:
    json_decref(keys);
    return NULL;
}
