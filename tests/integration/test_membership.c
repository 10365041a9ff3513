/* Integration: growing and shrinking a running cluster. A fourth remsd
 * started with --join (and no --peer) on a fresh data dir asks the cluster
 * to add it, becomes a voter, receives the existing data and serves stale
 * reads; DELETE /v1/members/4 removes it again.
 *
 * The teardown stops every node, prints the logs when the test failed,
 * and asserts last that every node exited 0 on SIGTERM. */
#include <stdarg.h> /* cmocka.h needs these four first */
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/proc.h"

#define LEADER_TIMEOUT_MS 10000
#define JOIN_TIMEOUT_MS 20000

struct fixture {
    struct test_cluster c;
    struct test_leader leader;
    bool passed;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    test_cluster_init(&f->c, 3, NULL);
    test_cluster_start(&f->c);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    bool passed = f->passed;
    bool clean = test_cluster_close(&f->c, !passed);
    free(f);
    assert_true(clean);
    return 0;
}

/* The role of member @id in GET /v1/members of node @i: "" when absent,
 * NULL when the node did not answer. Result in @role (32 bytes). */
static const char *
member_role(struct fixture *f, size_t i, uint64_t id, char *role)
{
    long status;
    json_t *o = test_cluster_call(&f->c, i, "GET", "/v1/members", NULL, NULL,
                                  &status, NULL);
    json_t *m;
    size_t k;
    if (o == NULL || status != 200) {
        json_decref(o);
        return NULL;
    }
    role[0] = '\0';
    json_array_foreach(json_object_get(o, "members"), k, m)
    {
        if ((uint64_t)json_integer_value(json_object_get(m, "id")) == id) {
            const char *r = json_string_value(json_object_get(m, "role"));
            snprintf(role, 32, "%s", r != NULL ? r : "?");
        }
    }
    json_decref(o);
    return role;
}

struct role_wait {
    struct fixture *f;
    uint64_t id;
    const char *want; /* "" for "not a member". */
};

/* Every running founding node lists member @id with role @want. */
static bool all_list_role(void *arg)
{
    struct role_wait *w = arg;
    char role[32];
    size_t i;
    for (i = 0; i < w->f->c.n_founders; i++) {
        const char *r;
        if (!test_proc_running(&w->f->c.nodes[i].proc)) {
            continue;
        }
        r = member_role(w->f, i, w->id, role);
        if (r == NULL || strcmp(r, w->want) != 0) {
            return false;
        }
    }
    return true;
}

struct stale_wait {
    struct fixture *f;
    size_t node;
    const char *key;
    int64_t rev;
};

static bool stale_has(void *arg)
{
    struct stale_wait *w = arg;
    char path[256];
    long status;
    bool ok;
    json_t *o;
    snprintf(path, sizeof path, "/v1/policies/%s?consistency=stale", w->key);
    o = test_cluster_call(&w->f->c, w->node, "GET", path, NULL, NULL, &status,
                          NULL);
    ok = status == 200 &&
         json_integer_value(json_object_get(o, "revision")) == w->rev;
    json_decref(o);
    return ok;
}

static int64_t
put_ok(struct fixture *f, size_t i, const char *key, const char *body)
{
    char path[256];
    char doc[4096];
    long status;
    int64_t rev;
    json_t *o;
    snprintf(path, sizeof path, "/v1/policies/%s", key);
    o = test_cluster_call(&f->c, i, "PUT", path, NULL,
                          test_policy_doc(body, doc, sizeof doc), &status,
                          NULL);
    if (status != 200) {
        char *text = o != NULL ? json_dumps(o, 0) : NULL;
        fprintf(stderr, "PUT %s on node %zu: %ld %s\n", key, i + 1, status,
                text != NULL ? text : "(no JSON)");
        free(text);
    }
    assert_int_equal(status, 200);
    rev = (int64_t)json_integer_value(json_object_get(o, "revision"));
    assert_true(rev > 0);
    json_decref(o);
    return rev;
}

/* ------------------------------------------------------------------ */

/* Write five keys, start node 4 with --join through a follower, and wait
 * until every founder lists it as a voter and it holds the five keys
 * (stale reads) and agrees on the leader. Returns its index; @l4 is the
 * leadership the four agree on. */
static size_t join_fourth(struct fixture *f, struct test_leader *l4)
{
    struct role_wait rw;
    struct stale_wait sw;
    char key[32];
    int64_t revs[5];
    size_t via;
    size_t n4;
    long status;
    json_t *o;
    int i;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    for (i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "before/%d", i);
        revs[i] = put_ok(f, (size_t)i % 3, key, "{\"old\": true}");
    }

    /* Join through a follower: its POST /v1/members is forwarded. */
    via = test_cluster_other(&f->c, f->leader.index, SIZE_MAX);
    n4 = test_cluster_add_joiner(&f->c, f->c.nodes[via].api_address);
    assert_int_equal(f->c.nodes[n4].id, 4);
    test_cluster_start_node(&f->c, n4);

    rw.f = f;
    rw.id = 4;
    rw.want = "voter";
    assert_true(test_wait_for(all_list_role, &rw, JOIN_TIMEOUT_MS));

    /* It holds the data written before it existed. */
    for (i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "before/%d", i);
        sw.f = f;
        sw.node = n4;
        sw.key = key;
        sw.rev = revs[i];
        assert_true(test_wait_for(stale_has, &sw, 10000));
    }
    /* Four nodes agree on the leader; node 4 knows all four members. */
    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, l4));
    o = test_cluster_call(&f->c, n4, "GET", "/v1/members", NULL, NULL, &status,
                          NULL);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(o, "members")), 4);
    json_decref(o);
    /* New writes reach it. */
    sw.f = f;
    sw.node = n4;
    sw.key = "after/join";
    sw.rev = put_ok(f, via, "after/join", "{\"new\": true}");
    assert_true(test_wait_for(stale_has, &sw, 10000));
    return n4;
}

/* A node started with --join becomes a voter holding the existing data;
 * DELETE /v1/members/4 removes it from every member list. */
static void join_then_remove(void **state)
{
    struct fixture *f = *state;
    struct role_wait rw;
    struct test_leader l4;
    size_t via;
    size_t n4;
    long status;
    json_t *o;

    n4 = join_fourth(f, &l4);

    /* Remove it (through a founding follower). */
    via = test_cluster_other(&f->c, l4.index, n4);
    o = test_cluster_call(&f->c, via, "DELETE", "/v1/members/4", NULL, NULL,
                          &status, NULL);
    assert_non_null(o);
    if (status != 200) {
        char *text = json_dumps(o, 0);
        fprintf(stderr, "DELETE /v1/members/4: %ld %s\n", status, text);
        free(text);
    }
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(o, "removed")));
    assert_int_equal(json_integer_value(json_object_get(o, "id")), 4);
    json_decref(o);
    rw.f = f;
    rw.id = 4;
    rw.want = "";
    assert_true(test_wait_for(all_list_role, &rw, 10000));

    /* The three go on without it. */
    put_ok(f, via, "after/remove", "{\"three\": true}");
    f->passed = true;
}

/* A node started with --join (so without the founders' --peer list)
 * still learns the leader's API address, so it forwards writes and
 * serves linearizable reads like any member. */
static void joined_node_forwards(void **state)
{
    struct fixture *f = *state;
    struct test_leader l4;
    size_t n4;
    int64_t rev;
    long status;
    json_t *o;

    n4 = join_fourth(f, &l4);
    o = test_cluster_status(&f->c, n4);
    assert_non_null(o);
    {
        const char *api = json_string_value(
            json_object_get(json_object_get(o, "leader"), "api_address"));
        if (api == NULL) {
            fprintf(stderr,
                    "node 4 does not know the API address of the "
                    "leader (node %llu)\n",
                    (unsigned long long)l4.id);
        }
        assert_non_null(api);
        assert_string_equal(api, f->c.nodes[l4.index].api_address);
    }
    json_decref(o);

    rev = put_ok(f, n4, "via/node4", "{\"from\": 4}");
    o = test_cluster_call(&f->c, n4, "GET", "/v1/policies/via/node4", NULL,
                          NULL, &status, NULL);
    if (status != 200) {
        char *text = o != NULL ? json_dumps(o, 0) : NULL;
        fprintf(stderr, "GET on node 4: %ld %s\n", status,
                text != NULL ? text : "(no JSON)");
        free(text);
    }
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(o, "revision")), rev);
    json_decref(o);
    f->passed = true;
}

/* Adding a member that is already there with another raft address is
 * refused; a bad body is a 400 naming the field. */
static void member_add_refusals(void **state)
{
    struct fixture *f = *state;
    char body[256];
    long status;
    json_t *o;
    json_t *err;

    assert_true(test_cluster_wait_leader(&f->c, LEADER_TIMEOUT_MS, &f->leader));
    snprintf(body, sizeof body,
             "{\"id\": 2, \"raft_address\": \"127.0.0.1:1\", "
             "\"api_address\": \"127.0.0.1:2\"}");
    o = test_cluster_call(&f->c, f->leader.index, "POST", "/v1/members", NULL,
                          body, &status, NULL);
    assert_non_null(o);
    assert_int_equal(status, 409);
    err = json_object_get(o, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")),
                        "conflict");
    json_decref(o);

    /* The refused add left member 2's recorded addresses alone. */
    {
        size_t i;
        for (i = 0; i < 3; i++) {
            json_t *m;
            size_t k;
            bool seen = false;
            o = test_cluster_call(&f->c, i, "GET", "/v1/members", NULL, NULL,
                                  &status, NULL);
            assert_int_equal(status, 200);
            assert_int_equal(json_array_size(json_object_get(o, "members")), 3);
            json_array_foreach(json_object_get(o, "members"), k, m)
            {
                if (json_integer_value(json_object_get(m, "id")) == 2) {
                    seen = true;
                    assert_string_equal(
                        json_string_value(json_object_get(m, "raft_address")),
                        f->c.nodes[1].raft_address);
                    assert_string_equal(
                        json_string_value(json_object_get(m, "api_address")),
                        f->c.nodes[1].api_address);
                }
            }
            assert_true(seen);
            json_decref(o);
        }
    }

    o = test_cluster_call(&f->c, f->leader.index, "POST", "/v1/members", NULL,
                          "{\"id\": 9, \"raft_address\": \"nowhere\", "
                          "\"api_address\": \"127.0.0.1:2\"}",
                          &status, NULL);
    assert_int_equal(status, 400);
    err = json_object_get(o, "error");
    assert_string_equal(json_string_value(json_object_get(err, "field")),
                        "raft_address");
    json_decref(o);

    o = test_cluster_call(&f->c, f->leader.index, "DELETE", "/v1/members/abc",
                          NULL, NULL, &status, NULL);
    assert_int_equal(status, 400);
    json_decref(o);
    f->passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(join_then_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(joined_node_forwards, setup, teardown),
        cmocka_unit_test_setup_teardown(member_add_refusals, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration_membership", tests, NULL,
                                       NULL);
}
