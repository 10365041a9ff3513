/* common/assert.h: assertions that stay on in release builds.
 *
 * PRE/POST/REMS_ASSERT are for programming errors and safety invariants
 * (terms never go down, applied index never goes back). Never use them on
 * bytes from the network or the disk: validate those and return
 * REMS_EMALFORMED or REMS_ECORRUPT. REMS_DEBUG_ASSERT is for O(n) checks and
 * is compiled out with NDEBUG. */
#ifndef REMS_COMMON_ASSERT_H
#define REMS_COMMON_ASSERT_H

/* Print the failed expression and its place as a JSON log line, then abort. */
_Noreturn void rems__assert_fail(const char *expr,
                                 const char *file,
                                 int line,
                                 const char *func);

#define REMS_ASSERT(expr)                                                      \
    ((expr) ? (void)0 : rems__assert_fail(#expr, __FILE__, __LINE__, __func__))
#define PRE(expr) REMS_ASSERT(expr)
#define POST(expr) REMS_ASSERT(expr)

#ifdef NDEBUG
#define REMS_DEBUG_ASSERT(expr) ((void)0)
#else
#define REMS_DEBUG_ASSERT(expr) REMS_ASSERT(expr)
#endif

#endif /* REMS_COMMON_ASSERT_H */
