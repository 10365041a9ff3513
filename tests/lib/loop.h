/* tests/lib/loop.h: driving a libuv loop in tests without sleeping. */
#ifndef REMS_TESTS_LIB_LOOP_H
#define REMS_TESTS_LIB_LOOP_H

#include <stdbool.h>
#include <uv.h>

/* Run @loop one iteration (UV_RUN_ONCE) at a time until *@done is true;
 * fails the test after @max_iter iterations. */
void test_loop_run_until(uv_loop_t *loop, bool *done, int max_iter);

/* Close every remaining handle, run the loop dry and assert that
 * uv_loop_close() returns 0. */
void test_loop_close(uv_loop_t *loop);

#endif
