/*  tr_test.h - helpers shared by the Check test programs.

    - TR_TEST_MAIN: a main() that runs one suite and returns its failures.
    - tr_test_wait_until: polls a condition with a deadline, so tests wait
      for events instead of sleeping a fixed time and hoping.
    - tr_test_pack_*: small msgpack bodies (tr_body.h).
*/
#ifndef TR_TEST_H_INCLUDED
#define TR_TEST_H_INCLUDED

#include <check.h>
#include <troupe.h>
#include "tr_mp.h"
#include "tr_clock.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdio.h>
#include <unistd.h>

//  Bodies for tests: the library's own small-body helpers (tr_body.h).
typedef tr_body_t tr_test_body_t;

static inline tr_test_body_t
tr_test_pack_uint (uint64_t value)
{
    tr_body_t b;
    tr_body_uint (&b, value);
    return b;
}

static inline tr_test_body_t
tr_test_pack_str (const char *text)
{
    tr_body_t b;
    tr_body_str (&b, text, strlen (text));
    return b;
}

//  Reads a uint body; returns UINT64_MAX if it is not one.
static inline uint64_t
tr_test_unpack_uint (const void *data, size_t size)
{
    tr__mp_t r;
    uint64_t value;
    tr__mp_init (&r, data, size);
    if (tr__mp_uint (&r, &value) || tr__mp_remaining (&r))
        return UINT64_MAX;
    return value;
}

static inline int64_t
tr_test_now_ms (void)
{
    return tr__now_ns () / 1000000;
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

//  A copy of len bytes in a buffer of exactly that size (at least one
//  byte), so that a read past the end shows under AddressSanitizer. The
//  caller frees it.
static inline uint8_t *
tr_test_copy (const void *bytes, size_t len)
{
    uint8_t *copy = (uint8_t *) malloc (len? len: 1);
    ck_assert_ptr_nonnull (copy);
    if (len)
        memcpy (copy, bytes, len);
    return copy;
}

static inline bool
tr_test_same_bytes (const void *a, size_t a_len, const void *b, size_t b_len)
{
    return a_len == b_len && (a_len == 0 || memcmp (a, b, a_len) == 0);
}

//  A whole file in a malloc'd buffer with a NUL after its last byte (the
//  caller frees); *len_p (if not NULL) its size. Asserts it could.
static inline char *
tr_test_read_file (const char *path, size_t *len_p)
{
    FILE *file = fopen (path, "rb");
    ck_assert_msg (file != NULL, "cannot open %s", path);
    ck_assert_int_eq (fseek (file, 0, SEEK_END), 0);
    long size = ftell (file);
    ck_assert_int_ge (size, 0);
    rewind (file);
    char *data = (char *) malloc ((size_t) size + 1);
    ck_assert_ptr_nonnull (data);
    ck_assert_uint_eq (fread (data, 1, (size_t) size, file), (size_t) size);
    fclose (file);
    data [size] = 0;
    if (len_p)
        *len_p = (size_t) size;
    return data;
}

//  xorshift64*: the same inputs on every run from the same seed.
static inline uint64_t
tr_test_random (uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * UINT64_C (2685821657736338717);
}

//  Timeouts scale under sanitizers, which slow everything down.
static inline int
tr_test_slowdown (void)
{
    const char *s = getenv ("TROUPE_TEST_SLOWDOWN");
    int k = s? atoi (s): 1;
    return k > 0? k: 1;
}

//  --------------------------------------------------------------------------
//  The probe: a test actor that records what it handles.
//
//  Bodies are msgpack uints. A body equal to TR_PROBE_GATE makes the
//  handler wait until the test opens the gate (to pile messages up);
//  TR_PROBE_FAIL makes it fail; TR_PROBE_SILENT makes it return without
//  answering an ask; TR_PROBE_SLEEP_BASE + n makes it sleep n ms. Asks
//  are answered with the body they brought.

#include <pthread.h>
#include <semaphore.h>
#include <troupe.h>

#define TR_PROBE_MAX        65536
#define TR_PROBE_GATE       UINT64_C (0xfff0000)
#define TR_PROBE_FAIL       UINT64_C (0xfff0001)
#define TR_PROBE_SILENT     UINT64_C (0xfff0002)
#define TR_PROBE_SLEEP_BASE UINT64_C (0xff00000)

typedef struct {
    pthread_mutex_t lock;
    sem_t gate;
    size_t count;                       //  messages handled
    uint64_t values [TR_PROBE_MAX];
    int priorities [TR_PROBE_MAX];
    uint64_t last_trace;
    char last_from [64];
    int terminated;                     //  terminate calls
    int terminate_reason;
} tr_probe_t;

static inline tr_probe_t *
tr_probe_new (void)
{
    tr_probe_t *p = (tr_probe_t *) calloc (1, sizeof *p);
    pthread_mutex_init (&p->lock, NULL);
    sem_init (&p->gate, 0, 0);
    return p;
}

static inline void
tr_probe_destroy (tr_probe_t **p_p)
{
    tr_probe_t *p = *p_p;
    *p_p = NULL;
    if (p) {
        sem_destroy (&p->gate);
        pthread_mutex_destroy (&p->lock);
        free (p);
    }
}

static inline void
tr_probe_open (tr_probe_t *p)
{
    sem_post (&p->gate);
}

static inline size_t
tr_probe_count (tr_probe_t *p)
{
    pthread_mutex_lock (&p->lock);
    size_t n = p->count;
    pthread_mutex_unlock (&p->lock);
    return n;
}

static inline int
tr_probe__handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    tr_probe_t *p = (tr_probe_t *) state;
    uint64_t v = tr_test_unpack_uint (tr_msg_body (msg), tr_msg_size (msg));
    if (v == TR_PROBE_GATE)
        sem_wait (&p->gate);
    else
    if (v > TR_PROBE_SLEEP_BASE && v < TR_PROBE_GATE)
        usleep ((useconds_t) (v - TR_PROBE_SLEEP_BASE) * 1000);
    pthread_mutex_lock (&p->lock);
    if (p->count < TR_PROBE_MAX) {
        p->values [p->count] = v;
        p->priorities [p->count] = tr_msg_priority (msg);
    }
    p->last_trace = tr_msg_trace (msg);
    snprintf (p->last_from, sizeof p->last_from, "%s", tr_msg_from (msg));
    p->count++;
    pthread_mutex_unlock (&p->lock);
    if (v == TR_PROBE_FAIL)
        return -1;
    if (v == TR_PROBE_SILENT || tr_msg_kind (msg) != TR_KIND_ASK)
        return 0;
    return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg));
}

static inline void
tr_probe__terminate (tr_actor_t *self, int reason, void *state)
{
    tr_probe_t *p = (tr_probe_t *) state;
    pthread_mutex_lock (&p->lock);
    p->terminated++;
    p->terminate_reason = reason;
    pthread_mutex_unlock (&p->lock);
}

static const tr_behaviour_t tr_probe_behaviour = {
    .handle = tr_probe__handle, .terminate = tr_probe__terminate
};

//  Spawns a probe named `name`; asserts success.
static inline void
tr_probe_spawn (tr_node_t *node, const char *name, tr_probe_t *p,
                const tr_spawn_opts_t *opts)
{
    int rc = tr_spawn (node, name, &tr_probe_behaviour, p, opts, NULL);
    ck_assert_msg (rc == TR_OK, "spawn %s: %s", name, tr_errname (rc));
}

//  Tells `name` a uint body; returns the result.
static inline int
tr_test_tell (tr_node_t *node, const char *name, uint64_t value,
              const tr_send_opts_t *opts)
{
    tr_test_body_t b = tr_test_pack_uint (value);
    return tr_tell (node, name, b.data, b.size, opts);
}

//  Asks `name` a uint body; returns the result and the answer's value.
static inline int
tr_test_ask (tr_node_t *node, const char *name, uint64_t value,
             int timeout_ms, uint64_t *answer)
{
    tr_test_body_t b = tr_test_pack_uint (value);
    tr_msg_t *reply = NULL;
    int rc = tr_ask (node, name, b.data, b.size, timeout_ms, &reply, NULL);
    if (answer)
        *answer = reply? tr_test_unpack_uint (tr_msg_body (reply), tr_msg_size (reply)): UINT64_MAX;
    tr_msg_destroy (&reply);
    return rc;
}

typedef struct {
    tr_probe_t *probe;
    size_t count;
} tr_probe_wait_t;

static inline bool
tr_probe__reached (void *arg)
{
    tr_probe_wait_t *w = (tr_probe_wait_t *) arg;
    return tr_probe_count (w->probe) >= w->count;
}

//  Waits up to timeout_ms for the probe to have handled count messages.
static inline bool
tr_probe_wait (tr_probe_t *p, size_t count, int timeout_ms)
{
    tr_probe_wait_t w = { p, count };
    return tr_test_wait_until (tr_probe__reached, &w, timeout_ms * tr_test_slowdown ());
}

typedef struct {
    tr_node_t *node;
    const char *name;
    uint64_t received;
} tr_probe_hold_t;

static inline bool
tr_probe__holding (void *arg)
{
    tr_probe_hold_t *h = (tr_probe_hold_t *) arg;
    tr_actor_stats_t st;
    return tr_actor_stats (h->node, h->name, &st) == TR_OK
        && st.received == h->received && st.depth == 0;
}

//  Tells the probe `name` the gate and waits until its handler holds it
//  (nothing else queued), so what is sent next piles up behind it.
static inline void
tr_probe_close_gate (tr_node_t *node, const char *name)
{
    tr_actor_stats_t st;
    ck_assert_int_eq (tr_actor_stats (node, name, &st), TR_OK);
    ck_assert_int_eq (tr_test_tell (node, name, TR_PROBE_GATE, NULL), TR_OK);
    tr_probe_hold_t h = { node, name, st.received + 1 };
    ck_assert (tr_test_wait_until (tr_probe__holding, &h, 10000));
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
