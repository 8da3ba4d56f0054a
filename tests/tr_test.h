/*  tr_test.h - helpers shared by the Check test programs.

    - TR_TEST_MAIN: a main() that runs one suite and returns its failures.
    - tr_test_wait_until: polls a condition with a deadline, so tests wait
      for events instead of sleeping a fixed time and hoping.
    - tr_test_pack_*: msgpack bodies built with msgpack-c's packer.
*/
#ifndef TR_TEST_H_INCLUDED
#define TR_TEST_H_INCLUDED

#include <check.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

//  A msgpack body in a small fixed buffer.
typedef struct {
    char data [256];
    size_t size;
} tr_test_body_t;

static inline int
tr_test__write (void *data, const char *buf, size_t len)
{
    tr_test_body_t *b = (tr_test_body_t *) data;
    if (b->size + len > sizeof b->data)
        return -1;
    memcpy (b->data + b->size, buf, len);
    b->size += len;
    return 0;
}

static inline tr_test_body_t
tr_test_pack_uint (uint64_t value)
{
    tr_test_body_t b = { .size = 0 };
    msgpack_packer pk;
    msgpack_packer_init (&pk, &b, tr_test__write);
    msgpack_pack_uint64 (&pk, value);
    return b;
}

static inline tr_test_body_t
tr_test_pack_str (const char *text)
{
    tr_test_body_t b = { .size = 0 };
    msgpack_packer pk;
    msgpack_packer_init (&pk, &b, tr_test__write);
    msgpack_pack_str_with_body (&pk, text, strlen (text));
    return b;
}

//  Reads a uint body; returns UINT64_MAX if it is not one.
static inline uint64_t
tr_test_unpack_uint (const void *data, size_t size)
{
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    uint64_t value = UINT64_MAX;
    if (size && msgpack_unpack_next (&u, (const char *) data, size, NULL) == MSGPACK_UNPACK_SUCCESS
    &&  u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        value = u.data.via.u64;
    msgpack_unpacked_destroy (&u);
    return value;
}

static inline int64_t
tr_test_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Polls cond(arg) every millisecond until it is true or timeout_ms has
//  passed. Returns the last value of cond.
static inline bool
tr_test_wait_until (bool (*cond) (void *), void *arg, int timeout_ms)
{
    int64_t deadline = tr_test_now_ms () + timeout_ms;
    while (!cond (arg)) {
        if (tr_test_now_ms () >= deadline)
            return cond (arg);
        usleep (1000);
    }
    return true;
}

//  Timeouts scale under sanitizers, which slow everything down.
static inline int
tr_test_slowdown (void)
{
    const char *s = getenv ("TROUPE_TEST_SLOWDOWN");
    int k = s? atoi (s): 1;
    return k > 0? k: 1;
}

#define TR_TEST_MAIN(suite_fn)                                          \
    int main (void)                                                     \
    {                                                                   \
        SRunner *runner = srunner_create (suite_fn ());                 \
        srunner_run_all (runner, CK_NORMAL);                            \
        int failed = srunner_ntests_failed (runner);                    \
        srunner_free (runner);                                          \
        return failed? EXIT_FAILURE: EXIT_SUCCESS;                      \
    }

#endif
