/* Minimal checks for the C tests of libpicsou: a failed check prints where, what, and the
 * thread's last libpicsou error, then exits 1. */
#ifndef PICSOU_TEST_CHECK_H
#define PICSOU_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "picsou.h"

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: CHECK(%s) failed (last error: %s)\n", __FILE__, __LINE__, \
                    #cond, picsou_last_error_message());                                      \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* `call` must return `want`. */
#define CHECK_RC(call, want)                                                                  \
    do {                                                                                      \
        picsou_result rc_ = (call);                                                           \
        if (rc_ != (picsou_result)(want)) {                                                   \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__, \
                    __LINE__, #call, picsou_result_name(rc_), picsou_result_name(want),       \
                    picsou_last_error_message());                                             \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

#define CHECK_OK(call) CHECK_RC(call, PICSOU_OK)

#endif
