/* Loop helpers for tests. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/lib/loop.h"

void test_loop_run_until(uv_loop_t *loop, bool *done, int max_iter)
{
    int i;
    for (i = 0; i < max_iter && !*done; i++) {
        uv_run(loop, UV_RUN_ONCE);
    }
    assert_true(*done);
}

static void close_walk_cb(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (!uv_is_closing(handle)) {
        uv_close(handle, NULL);
    }
}

void test_loop_close(uv_loop_t *loop)
{
    uv_walk(loop, close_walk_cb, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}
