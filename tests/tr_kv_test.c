/*  tr_kv_test.c - tests of the scratchpad store (broker/tr_kv.h).

    Time is the tests' own: every call gets an explicit `now` in ms.
*/

#include "tr_test.h"
#include "tr_kv.h"

#include <pthread.h>

#define S_T0    INT64_C (1700000000000)     //  a plausible Unix ms

//  A msgpack str of len bytes of `fill` (the caller frees it).
static uint8_t *
s_str_value (size_t len, char fill, size_t *size_p)
{
    uint8_t *v = (uint8_t *) malloc (len + 5);
    v [0] = 0xdb;
    v [1] = (uint8_t) (len >> 24);
    v [2] = (uint8_t) (len >> 16);
    v [3] = (uint8_t) (len >> 8);
    v [4] = (uint8_t) len;
    memset (v + 5, fill, len);
    *size_p = len + 5;
    return v;
}

static int
s_put_uint (tr__kv_t *kv, const char *key, uint64_t value, int64_t ttl,
            int64_t now, uint64_t *version)
{
    tr_body_t b = tr_test_pack_uint (value);
    return tr__kv_put (kv, key, strlen (key), b.data, b.size, ttl, now, version);
}

//  The uint stored under key, or UINT64_MAX if it is missing.
static uint64_t
s_get_uint (tr__kv_t *kv, const char *key, int64_t now, uint64_t *version)
{
    tr__kv_value_t *v = NULL;
    if (tr__kv_get (kv, key, strlen (key), now, &v, version, NULL) != TR_OK)
        return UINT64_MAX;
    uint64_t n = tr_test_unpack_uint (tr__kv_value_data (v), tr__kv_value_size (v));
    tr__kv_value_unref (&v);
    return n;
}

START_TEST (test_put_get)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    ck_assert_ptr_nonnull (kv);
    ck_assert_uint_eq (tr__kv_version (kv), 0);
    uint64_t v1, v2, version;
    int64_t ttl_left = -1;
    ck_assert_int_eq (s_put_uint (kv, "a", 1, 0, S_T0, &v1), TR_OK);
    ck_assert_uint_eq (v1, 1);
    ck_assert_uint_eq (s_get_uint (kv, "a", S_T0, &version), 1);
    ck_assert_uint_eq (version, v1);
    ck_assert_int_eq (tr__kv_get (kv, "a", 1, S_T0, NULL, NULL, &ttl_left), TR_OK);
    ck_assert_int_eq (ttl_left, 0);
    ck_assert_int_eq (s_put_uint (kv, "a", 2, 0, S_T0, &v2), TR_OK);
    ck_assert_uint_eq (v2, 2);
    ck_assert_uint_eq (s_get_uint (kv, "a", S_T0, &version), 2);
    ck_assert_uint_eq (version, 2);
    ck_assert_int_eq (tr__kv_get (kv, "b", 1, S_T0, NULL, NULL, NULL), TR_ENOTFOUND);
    ck_assert_uint_eq (tr__kv_count (kv), 1);
    //  Delete.
    ck_assert_int_eq (tr__kv_del (kv, "a", 1, S_T0, &version), TR_OK);
    ck_assert_uint_eq (version, 3);
    ck_assert_int_eq (tr__kv_get (kv, "a", 1, S_T0, NULL, NULL, NULL), TR_ENOTFOUND);
    ck_assert_int_eq (tr__kv_del (kv, "a", 1, S_T0, &version), TR_ENOTFOUND);
    ck_assert_uint_eq (tr__kv_version (kv), 3);
    ck_assert_uint_eq (tr__kv_count (kv), 0);
    //  Keys are bytes: NUL and 0xff are fine.
    ck_assert_int_eq (tr__kv_put (kv, "\0\xff", 2, "\x01", 1, 0, S_T0, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_get (kv, "\0\xff", 2, S_T0, NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_get (kv, "\0", 1, S_T0, NULL, NULL, NULL), TR_ENOTFOUND);
    tr__kv_destroy (&kv);
    ck_assert_ptr_null (kv);
    tr__kv_destroy (&kv);
}
END_TEST

//  Random puts, deletions and expiries over a few thousand keys, checked
//  against a plain array after every step: the index by key (open
//  addressing, deletion by moving entries back) and the ordered list
//  agree with what was written, through growth and heavy deletion.
START_TEST (test_index_random)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    enum { KEYS = 3000, STEPS = 60000 };
    static uint64_t model [KEYS];           //  value + 1, 0: absent
    memset (model, 0, sizeof model);
    uint64_t rng = 42;
    int64_t now = S_T0;
    for (int step = 0; step < STEPS; step++) {
        uint64_t r = tr_test_random (&rng);
        uint32_t k = (uint32_t) (r % KEYS);
        char key [24];
        snprintf (key, sizeof key, "k/%u", k);
        if ((r >> 32) % 3 == 0) {
            int rc = tr__kv_del (kv, key, strlen (key), now, NULL);
            ck_assert_int_eq (rc, model [k]? TR_OK: TR_ENOTFOUND);
            model [k] = 0;
        }
        else {
            ck_assert_int_eq (s_put_uint (kv, key, (uint64_t) step, 0, now, NULL), TR_OK);
            model [k] = (uint64_t) step + 1;
        }
        uint32_t probe = (uint32_t) ((r >> 40) % KEYS);
        snprintf (key, sizeof key, "k/%u", probe);
        uint64_t got = s_get_uint (kv, key, now, NULL);
        ck_assert_uint_eq (got, model [probe]? model [probe] - 1: UINT64_MAX);
    }
    //  Every key, once more; and the list holds exactly the live ones.
    size_t live = 0;
    for (uint32_t k = 0; k < KEYS; k++) {
        char key [24];
        snprintf (key, sizeof key, "k/%u", k);
        uint64_t got = s_get_uint (kv, key, now, NULL);
        ck_assert_uint_eq (got, model [k]? model [k] - 1: UINT64_MAX);
        live += model [k] != 0;
    }
    ck_assert_uint_eq (tr__kv_count (kv), live);
    //  Short TTLs: expiry removes from the index too.
    for (uint32_t k = 0; k < KEYS; k++) {
        char key [24];
        snprintf (key, sizeof key, "k/%u", k);
        ck_assert_int_eq (s_put_uint (kv, key, k, 10 + k % 7, now, NULL), TR_OK);
    }
    now += 100;
    for (uint32_t k = 0; k < KEYS; k += 7) {
        char key [24];
        snprintf (key, sizeof key, "k/%u", k);
        ck_assert_uint_eq (s_get_uint (kv, key, now, NULL), UINT64_MAX);
    }
    ck_assert_uint_eq (tr__kv_count (kv), 0);
    tr__kv_destroy (&kv);
}
END_TEST

START_TEST (test_errors)
{
    tr__kv_limits_t limits = { .max_value = 100 };
    tr__kv_t *kv = tr__kv_new (&limits);
    char key [1026];
    memset (key, 'k', sizeof key);
    //  Keys: 1..1024 bytes.
    ck_assert_int_eq (tr__kv_put (kv, key, 0, "\x01", 1, 0, S_T0, NULL), TR_EINVAL);
    ck_assert_int_eq (tr__kv_put (kv, key, 1025, "\x01", 1, 0, S_T0, NULL), TR_EINVAL);
    ck_assert_int_eq (tr__kv_put (kv, key, 1024, "\x01", 1, 0, S_T0, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_get (kv, key, 0, S_T0, NULL, NULL, NULL), TR_EINVAL);
    ck_assert_int_eq (tr__kv_get (kv, key, 1025, S_T0, NULL, NULL, NULL), TR_EINVAL);
    ck_assert_int_eq (tr__kv_del (kv, key, 1025, S_T0, NULL), TR_EINVAL);
    ck_assert_int_eq (tr__kv_cas (kv, key, 0, 0, "\x01", 1, 0, S_T0, NULL), TR_EINVAL);
    //  Values: one msgpack value, at most max_value bytes.
    size_t size;
    uint8_t *big = s_str_value (96, 'x', &size);
    ck_assert_int_eq (tr__kv_put (kv, "v", 1, big, size, 0, S_T0, NULL), TR_ETOOBIG);
    ck_assert_int_eq (tr__kv_put (kv, "v", 1, big, size - 1, 0, S_T0, NULL), TR_EMALFORMED);
    free (big);
    big = s_str_value (95, 'x', &size);
    ck_assert_int_eq (tr__kv_put (kv, "v", 1, big, size, 0, S_T0, NULL), TR_OK);
    free (big);
    ck_assert_int_eq (tr__kv_put (kv, "v", 1, "", 0, 0, S_T0, NULL), TR_EMALFORMED);
    ck_assert_int_eq (tr__kv_put (kv, "v", 1, "\xc1", 1, 0, S_T0, NULL), TR_EMALFORMED);
    ck_assert_int_eq (tr__kv_put (kv, "v", 1, "\x01\x02", 2, 0, S_T0, NULL), TR_EMALFORMED);
    ck_assert_int_eq (tr__kv_put (kv, "v", 1, "\x92\x01", 2, 0, S_T0, NULL), TR_EMALFORMED);
    //  Nested too deep (33 arrays).
    uint8_t deep [34];
    memset (deep, 0x91, 33);
    deep [33] = 0x01;
    ck_assert_int_eq (tr__kv_put (kv, "v", 1, deep, 34, 0, S_T0, NULL), TR_EMALFORMED);
    ck_assert_int_eq (tr__kv_put (kv, "v", 1, deep + 1, 33, 0, S_T0, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_cas (kv, "v", 1, 0, "\xc1", 1, 0, S_T0, NULL), TR_EMALFORMED);
    //  TTLs.
    ck_assert_int_eq (tr__kv_put (kv, "v", 1, "\x01", 1, -1, S_T0, NULL), TR_EINVAL);
    //  Prefixes.
    tr__kv_items_t *items = NULL;
    tr__kv_watch_t *w = NULL;
    ck_assert_int_eq (tr__kv_list (kv, key, 1025, S_T0, &items), TR_EINVAL);
    ck_assert_int_eq (tr__kv_snapshot (kv, key, 1025, S_T0, &items), TR_EINVAL);
    ck_assert_int_eq (tr__kv_watch_new (kv, key, 1025, 0, S_T0, NULL, &w, NULL), TR_EINVAL);
    ck_assert_ptr_null (items);
    ck_assert_ptr_null (w);
    //  Nothing failed changed the version: three puts succeeded.
    ck_assert_uint_eq (tr__kv_version (kv), 3);
    tr__kv_destroy (&kv);
}
END_TEST

START_TEST (test_versions_increase)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    uint64_t last = 0, version;
    for (int i = 0; i < 1000; i++) {
        char key [16];
        snprintf (key, sizeof key, "k%d", i % 37);
        int rc;
        if (i % 5 == 4)
            rc = tr__kv_del (kv, key, strlen (key), S_T0, &version);
        else
        if (i % 5 == 3) {
            uint64_t current = 0;
            tr__kv_get (kv, key, strlen (key), S_T0, NULL, &current, NULL);
            rc = tr__kv_cas (kv, key, strlen (key), current, "\x05", 1, 0, S_T0, &version);
        }
        else
            rc = s_put_uint (kv, key, (uint64_t) i, 0, S_T0, &version);
        if (rc == TR_OK) {
            ck_assert_uint_eq (version, last + 1);
            last = version;
        }
        else
            ck_assert_int_eq (rc, TR_ENOTFOUND);
        ck_assert_uint_eq (tr__kv_version (kv), last);
    }
    tr__kv_destroy (&kv);
}
END_TEST

START_TEST (test_cas)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    uint64_t v1, v2, version;
    ck_assert_int_eq (tr__kv_cas (kv, "c", 1, 5, "\x01", 1, 0, S_T0, &v1), TR_ECONFLICT);
    ck_assert_int_eq (tr__kv_cas (kv, "c", 1, 0, "\x01", 1, 0, S_T0, &v1), TR_OK);
    ck_assert_int_eq (tr__kv_cas (kv, "c", 1, 0, "\x02", 1, 0, S_T0, &version), TR_ECONFLICT);
    ck_assert_int_eq (tr__kv_cas (kv, "c", 1, v1 + 1, "\x02", 1, 0, S_T0, &version),
                      TR_ECONFLICT);
    ck_assert_uint_eq (s_get_uint (kv, "c", S_T0, &version), 1);
    ck_assert_uint_eq (version, v1);
    ck_assert_int_eq (tr__kv_cas (kv, "c", 1, v1, "\x02", 1, 0, S_T0, &v2), TR_OK);
    ck_assert_uint_eq (v2, v1 + 1);
    ck_assert_uint_eq (s_get_uint (kv, "c", S_T0, NULL), 2);
    //  After a deletion the key must not exist again: expected 0.
    ck_assert_int_eq (tr__kv_del (kv, "c", 1, S_T0, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_cas (kv, "c", 1, v2, "\x03", 1, 0, S_T0, NULL), TR_ECONFLICT);
    ck_assert_int_eq (tr__kv_cas (kv, "c", 1, 0, "\x03", 1, 0, S_T0, NULL), TR_OK);
    ck_assert_uint_eq (tr__kv_version (kv), 4);
    tr__kv_destroy (&kv);
}
END_TEST

//  Contention: threads increment one counter with get + CAS.
#define S_THREADS   4
#define S_WINS      2000

static pthread_barrier_t s_start;

typedef struct {
    tr__kv_t *kv;
    uint64_t won [S_WINS];              //  versions this thread won
    int conflicts;
    int errors;                         //  anything but a conflict
} s_racer_t;

static void *
s_racer (void *arg)
{
    s_racer_t *r = (s_racer_t *) arg;
    pthread_barrier_wait (&s_start);
    for (int wins = 0; wins < S_WINS; ) {
        uint64_t version = 0, fresh;
        uint64_t n = s_get_uint (r->kv, "counter", S_T0, &version);
        tr_body_t b = tr_test_pack_uint (n == UINT64_MAX? 1: n + 1);
        int rc = tr__kv_cas (r->kv, "counter", 7, version, b.data, b.size, 0, S_T0, &fresh);
        if (rc == TR_OK)
            r->won [wins++] = fresh;
        else
        if (rc == TR_ECONFLICT)
            r->conflicts++;
        else
            r->errors++;
    }
    return NULL;
}

START_TEST (test_cas_contention)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    s_racer_t racers [S_THREADS];
    pthread_t threads [S_THREADS];
    pthread_barrier_init (&s_start, NULL, S_THREADS);
    for (int i = 0; i < S_THREADS; i++) {
        memset (&racers [i], 0, sizeof racers [i]);
        racers [i].kv = kv;
        pthread_create (&threads [i], NULL, s_racer, &racers [i]);
    }
    int conflicts = 0;
    for (int i = 0; i < S_THREADS; i++) {
        pthread_join (threads [i], NULL);
        conflicts += racers [i].conflicts;
        ck_assert_int_eq (racers [i].errors, 0);
    }
    pthread_barrier_destroy (&s_start);
    //  Every version 1..N was won by exactly one writer, and every win
    //  incremented the counter once.
    size_t total = S_THREADS * S_WINS;
    uint8_t *seen = (uint8_t *) calloc (total + 1, 1);
    for (int i = 0; i < S_THREADS; i++)
        for (int j = 0; j < S_WINS; j++) {
            uint64_t v = racers [i].won [j];
            if (v < 1 || v > total || seen [v] || (j && v <= racers [i].won [j - 1]))
                ck_abort_msg ("version %llu out of range, won twice or out of order",
                              (unsigned long long) v);
            seen [v] = 1;
        }
    free (seen);
    ck_assert_uint_eq (s_get_uint (kv, "counter", S_T0, NULL), total);
    ck_assert_uint_eq (tr__kv_version (kv), total);
    printf ("tr_kv_test: %d threads, %zu CAS wins, %d conflicts\n",
            S_THREADS, total, conflicts);
    tr__kv_destroy (&kv);
}
END_TEST

START_TEST (test_list)
{
    tr__kv_limits_t limits = { .max_list = 4 };
    tr__kv_t *kv = tr__kv_new (&limits);
    const char *keys [] = { "b", "a\xff", "ab", "a", "a\x01", "c" };
    for (size_t i = 0; i < 6; i++)
        ck_assert_int_eq (s_put_uint (kv, keys [i], i, 0, S_T0, NULL), TR_OK);
    //  Prefix "a": byte order, the shorter first.
    tr__kv_items_t *items = NULL;
    ck_assert_int_eq (tr__kv_list (kv, "a", 1, S_T0, &items), TR_OK);
    ck_assert_uint_eq (items->count, 4);
    const char *expect [] = { "a", "a\x01", "ab", "a\xff" };
    for (size_t i = 0; i < 4; i++) {
        ck_assert_uint_eq (items->items [i].key_len, strlen (expect [i]));
        ck_assert (memcmp (items->items [i].key, expect [i], strlen (expect [i])) == 0);
        ck_assert_ptr_null (items->items [i].value);
    }
    ck_assert_uint_eq (items->items [0].version, 4);
    ck_assert_uint_eq (items->at, 6);
    tr__kv_items_destroy (&items);
    ck_assert_ptr_null (items);
    //  All keys: 6 > max_list.
    ck_assert_int_eq (tr__kv_list (kv, NULL, 0, S_T0, &items), TR_ELIMIT);
    ck_assert_ptr_null (items);
    ck_assert_int_eq (tr__kv_snapshot (kv, "", 0, S_T0, &items), TR_ELIMIT);
    //  No match, and a prefix past the last key.
    ck_assert_int_eq (tr__kv_list (kv, "zz", 2, S_T0, &items), TR_OK);
    ck_assert_uint_eq (items->count, 0);
    tr__kv_items_destroy (&items);
    ck_assert_int_eq (tr__kv_list (kv, "ab", 2, S_T0, &items), TR_OK);
    ck_assert_uint_eq (items->count, 1);
    tr__kv_items_destroy (&items);
    //  A snapshot carries the values.
    ck_assert_int_eq (tr__kv_snapshot (kv, "c", 1, S_T0, &items), TR_OK);
    ck_assert_uint_eq (items->count, 1);
    ck_assert_uint_eq (tr_test_unpack_uint (items->items [0].value,
                                            items->items [0].value_len), 5);
    tr__kv_items_destroy (&items);
    tr__kv_destroy (&kv);
}
END_TEST

START_TEST (test_ttl)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    uint64_t version;
    int64_t left;
    ck_assert_int_eq (tr__kv_next_deadline (kv), 0);
    ck_assert_int_eq (s_put_uint (kv, "t", 1, 100, S_T0, &version), TR_OK);
    ck_assert_int_eq (s_put_uint (kv, "u", 2, 300, S_T0, NULL), TR_OK);
    ck_assert_int_eq (s_put_uint (kv, "forever", 3, 0, S_T0, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_next_deadline (kv), S_T0 + 100);
    ck_assert_int_eq (tr__kv_get (kv, "t", 1, S_T0 + 40, NULL, NULL, &left), TR_OK);
    ck_assert_int_eq (left, 60);
    ck_assert_int_eq (tr__kv_get (kv, "t", 1, S_T0 + 99, NULL, NULL, &left), TR_OK);
    ck_assert_int_eq (left, 1);
    //  At its deadline the key is gone, by a deletion at a new version.
    ck_assert_uint_eq (tr__kv_version (kv), 3);
    ck_assert_int_eq (tr__kv_get (kv, "t", 1, S_T0 + 100, NULL, NULL, NULL), TR_ENOTFOUND);
    ck_assert_uint_eq (tr__kv_version (kv), 4);
    ck_assert_uint_eq (tr__kv_count (kv), 2);
    ck_assert_int_eq (tr__kv_next_deadline (kv), S_T0 + 300);
    //  An overwrite without TTL removes the deadline; with one, moves it.
    ck_assert_int_eq (s_put_uint (kv, "u", 2, 0, S_T0 + 150, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_next_deadline (kv), 0);
    ck_assert_int_eq (s_put_uint (kv, "u", 2, 50, S_T0 + 150, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_next_deadline (kv), S_T0 + 200);
    ck_assert_int_eq (s_put_uint (kv, "u", 2, 500, S_T0 + 150, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_next_deadline (kv), S_T0 + 650);
    ck_assert_uint_eq (tr__kv_expire (kv, S_T0 + 649), 0);
    ck_assert_uint_eq (tr__kv_expire (kv, S_T0 + 650), 1);
    ck_assert_uint_eq (tr__kv_version (kv), 8);
    //  CAS with 0 on an expired key succeeds; a list skips expired keys.
    ck_assert_int_eq (s_put_uint (kv, "c", 1, 10, S_T0 + 1000, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_cas (kv, "c", 1, 0, "\x01", 1, 0, S_T0 + 1010, &version), TR_OK);
    ck_assert_uint_eq (version, 11);
    for (int i = 0; i < 100; i++) {
        char key [16];
        snprintf (key, sizeof key, "e%03d", i);
        ck_assert_int_eq (s_put_uint (kv, key, 1, 1 + i, S_T0 + 2000, NULL), TR_OK);
    }
    tr__kv_items_t *items;
    ck_assert_int_eq (tr__kv_list (kv, "e", 1, S_T0 + 2050, &items), TR_OK);
    ck_assert_uint_eq (items->count, 50);
    ck_assert (memcmp (items->items [0].key, "e050", 4) == 0);
    ck_assert_int_eq (items->items [0].ttl_left, 1);
    tr__kv_items_destroy (&items);
    ck_assert_uint_eq (tr__kv_expire (kv, S_T0 + 5000), 50);
    ck_assert_uint_eq (tr__kv_count (kv), 2);
    //  A huge TTL saturates rather than overflows.
    ck_assert_int_eq (s_put_uint (kv, "h", 1, INT64_MAX, S_T0, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_next_deadline (kv), INT64_MAX);
    tr__kv_destroy (&kv);
}
END_TEST

//  Drains a watch; checks versions increase from *last; returns how many
//  changes it took.
static size_t
s_drain (tr__kv_watch_t *w, uint64_t *last, const char *prefix)
{
    size_t n = 0;
    tr__kv_change_t *c;
    while (tr__kv_watch_next (w, &c) == TR_OK && c) {
        ck_assert_uint_gt (c->version, *last);
        *last = c->version;
        ck_assert (c->key_len >= strlen (prefix));
        ck_assert (memcmp (c->key, prefix, strlen (prefix)) == 0);
        tr__kv_change_unref (&c);
        n++;
    }
    return n;
}

START_TEST (test_watch)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    tr__kv_watch_t *w = NULL, *all = NULL;
    uint64_t at;
    int tag = 7;
    ck_assert_ptr_null (tr__kv_ready (kv));
    ck_assert_int_eq (tr__kv_watch_new (kv, "w/", 2, 0, S_T0, &tag, &w, &at), TR_OK);
    ck_assert_int_eq (tr__kv_watch_new (kv, NULL, 0, 0, S_T0, NULL, &all, NULL), TR_OK);
    ck_assert_uint_eq (at, 0);
    ck_assert_ptr_eq (tr__kv_watch_arg (w), &tag);
    size_t plen;
    ck_assert (memcmp (tr__kv_watch_prefix (w, &plen), "w/", 2) == 0 && plen == 2);
    ck_assert_int_eq (s_put_uint (kv, "w/a", 1, 0, S_T0, NULL), TR_OK);
    ck_assert_int_eq (s_put_uint (kv, "x", 2, 0, S_T0, NULL), TR_OK);
    ck_assert_int_eq (s_put_uint (kv, "w/b", 3, 20, S_T0, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_del (kv, "w/a", 3, S_T0, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_cas (kv, "w", 1, 0, "\x01", 1, 0, S_T0, NULL), TR_OK);
    ck_assert_uint_eq (tr__kv_expire (kv, S_T0 + 20), 1);
    //  Both are ready, once each.
    tr__kv_watch_t *first = tr__kv_ready (kv), *second = tr__kv_ready (kv);
    ck_assert ((first == w && second == all) || (first == all && second == w));
    ck_assert_ptr_null (tr__kv_ready (kv));
    ck_assert_uint_eq (tr__kv_watch_pending (w), 4);
    //  w/: put w/a (1), put w/b (3), del w/a (4), expiry of w/b (6).
    tr__kv_change_t *c;
    ck_assert_int_eq (tr__kv_watch_next (w, &c), TR_OK);
    ck_assert_uint_eq (c->version, 1);
    ck_assert_int_eq (c->op, TR__KV_PUT);
    ck_assert_uint_eq (tr_test_unpack_uint (c->value, c->value_len), 1);
    tr__kv_change_unref (&c);
    ck_assert_int_eq (tr__kv_watch_next (w, &c), TR_OK);
    ck_assert_uint_eq (c->version, 3);
    ck_assert_int_eq (c->deadline, S_T0 + 20);
    tr__kv_change_unref (&c);
    ck_assert_int_eq (tr__kv_watch_next (w, &c), TR_OK);
    ck_assert_uint_eq (c->version, 4);
    ck_assert_int_eq (c->op, TR__KV_DEL);
    ck_assert (!c->expired && c->value == NULL && c->value_len == 0);
    tr__kv_change_unref (&c);
    ck_assert_int_eq (tr__kv_watch_next (w, &c), TR_OK);
    ck_assert_uint_eq (c->version, 6);
    ck_assert (c->op == TR__KV_DEL && c->expired);
    ck_assert (c->key_len == 3 && memcmp (c->key, "w/b", 3) == 0);
    tr__kv_change_unref (&c);
    ck_assert_int_eq (tr__kv_watch_next (w, &c), TR_OK);
    ck_assert_ptr_null (c);
    uint64_t last = 0;
    ck_assert_uint_eq (s_drain (all, &last, ""), 6);
    ck_assert (!tr__kv_watch_resync (w));
    //  A watch still queued in the ready list can be destroyed.
    ck_assert_int_eq (s_put_uint (kv, "w/c", 1, 0, S_T0, NULL), TR_OK);
    tr__kv_watch_destroy (&w);
    ck_assert_ptr_null (w);
    ck_assert_ptr_eq (tr__kv_ready (kv), all);
    ck_assert_ptr_null (tr__kv_ready (kv));
    //  The store destroys the watches left.
    tr__kv_destroy (&kv);
}
END_TEST

START_TEST (test_watch_resync)
{
    tr__kv_limits_t limits = { .max_backlog = 5, .history = 8 };
    tr__kv_t *kv = tr__kv_new (&limits);
    tr__kv_watch_t *w;
    ck_assert_int_eq (tr__kv_watch_new (kv, "", 0, 0, S_T0, NULL, &w, NULL), TR_OK);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq (s_put_uint (kv, "k", i, 0, S_T0, NULL), TR_OK);
    ck_assert (!tr__kv_watch_resync (w));
    ck_assert_uint_eq (tr__kv_watch_pending (w), 5);
    ck_assert_ptr_eq (tr__kv_ready (kv), w);
    //  The sixth overflows the backlog.
    ck_assert_int_eq (s_put_uint (kv, "k", 6, 0, S_T0, NULL), TR_OK);
    ck_assert (tr__kv_watch_resync (w));
    ck_assert_uint_eq (tr__kv_watch_pending (w), 0);
    ck_assert_ptr_eq (tr__kv_ready (kv), w);
    tr__kv_change_t *c = NULL;
    ck_assert_int_eq (tr__kv_watch_next (w, &c), TR_ELIMIT);
    ck_assert_ptr_null (c);
    //  It hears nothing more (and is not queued again).
    ck_assert_int_eq (s_put_uint (kv, "k", 7, 0, S_T0, NULL), TR_OK);
    ck_assert_ptr_null (tr__kv_ready (kv));
    tr__kv_watch_destroy (&w);
    //  From a version the history (8 changes) no longer holds: resync.
    uint64_t at;
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq (s_put_uint (kv, "k", i, 0, S_T0, NULL), TR_OK);
    ck_assert_uint_eq (tr__kv_version (kv), 17);
    ck_assert_int_eq (tr__kv_watch_new (kv, "", 0, 8, S_T0, NULL, &w, &at), TR_OK);
    ck_assert_uint_eq (at, 17);
    ck_assert (tr__kv_watch_resync (w));
    ck_assert_ptr_eq (tr__kv_ready (kv), w);
    tr__kv_watch_destroy (&w);
    //  From the oldest it holds: fine, backlog 5 of the 8 it replays is
    //  too many, so from 12 (5 changes).
    ck_assert_int_eq (tr__kv_watch_new (kv, "", 0, 12, S_T0, NULL, &w, &at), TR_OK);
    ck_assert (!tr__kv_watch_resync (w));
    ck_assert_uint_eq (tr__kv_watch_pending (w), 5);
    tr__kv_watch_destroy (&w);
    ck_assert_int_eq (tr__kv_watch_new (kv, "", 0, 11, S_T0, NULL, &w, &at), TR_OK);
    ck_assert (tr__kv_watch_resync (w));
    tr__kv_watch_destroy (&w);
    //  From the future (a broker that lost writes): resync.
    ck_assert_int_eq (tr__kv_watch_new (kv, "", 0, 18, S_T0, NULL, &w, &at), TR_OK);
    ck_assert (tr__kv_watch_resync (w));
    tr__kv_watch_destroy (&w);
    //  Value bytes count too.
    tr__kv_destroy (&kv);
    limits = (tr__kv_limits_t) { .max_backlog_bytes = 1000 };
    kv = tr__kv_new (&limits);
    ck_assert_int_eq (tr__kv_watch_new (kv, "", 0, 0, S_T0, NULL, &w, &at), TR_OK);
    size_t size;
    uint8_t *v = s_str_value (600, 'v', &size);
    ck_assert_int_eq (tr__kv_put (kv, "a", 1, v, size, 0, S_T0, NULL), TR_OK);
    ck_assert (!tr__kv_watch_resync (w));
    ck_assert_int_eq (tr__kv_put (kv, "a", 1, v, size, 0, S_T0, NULL), TR_OK);
    ck_assert (tr__kv_watch_resync (w));
    free (v);
    tr__kv_destroy (&kv);
}
END_TEST

//  A model of the store for the snapshot + watch test: the uint under
//  each of 16 keys (UINT64_MAX: missing).
#define S_KEYS  16

static void
s_model_apply (uint64_t *model, const tr__kv_change_t *c)
{
    int k = c->key [1] - 'a';
    model [k] = c->op == TR__KV_PUT? tr_test_unpack_uint (c->value, c->value_len)
                                   : UINT64_MAX;
}

static void
s_random_op (tr__kv_t *kv, unsigned *seed, int64_t now)
{
    char key [3] = { 'p', (char) ('a' + rand_r (seed) % S_KEYS), 0 };
    int op = rand_r (seed) % 10;
    if (op < 6)
        s_put_uint (kv, key, (uint64_t) rand_r (seed), op == 0? 1 + rand_r (seed) % 50: 0,
                    now, NULL);
    else
    if (op < 8)
        tr__kv_del (kv, key, 2, now, NULL);
    else {
        uint64_t version = 0;
        tr__kv_get (kv, key, 2, now, NULL, &version, NULL);
        tr__kv_cas (kv, key, 2, version + (op == 9), "\x07", 1, 0, now, NULL);
    }
    //  Other keys, outside the prefix.
    if (op == 5)
        s_put_uint (kv, "other", 1, 0, now, NULL);
}

START_TEST (test_snapshot_then_watch)
{
    unsigned seed = 12345;
    for (int round = 0; round < 50; round++) {
        tr__kv_t *kv = tr__kv_new (NULL);
        int64_t now = S_T0;
        for (int i = 0; i < 100; i++)
            s_random_op (kv, &seed, now++);
        //  Snapshot, more changes, then watch from AT (the Clone pattern:
        //  the client's watch arrives after other writes).
        tr__kv_items_t *snap;
        ck_assert_int_eq (tr__kv_snapshot (kv, "p", 1, now, &snap), TR_OK);
        uint64_t model [S_KEYS];
        for (int k = 0; k < S_KEYS; k++)
            model [k] = UINT64_MAX;
        for (size_t i = 0; i < snap->count; i++)
            model [snap->items [i].key [1] - 'a'] =
                tr_test_unpack_uint (snap->items [i].value, snap->items [i].value_len);
        for (int i = 0; i < 30; i++)
            s_random_op (kv, &seed, now++);
        tr__kv_watch_t *w;
        ck_assert_int_eq (tr__kv_watch_new (kv, "p", 1, snap->at, now, NULL, &w, NULL), TR_OK);
        for (int i = 0; i < 100; i++)
            s_random_op (kv, &seed, now++);
        tr__kv_expire (kv, now + 100);
        //  Every change above AT, in order; the model then equals the
        //  store.
        uint64_t last = snap->at;
        tr__kv_change_t *c;
        while (tr__kv_watch_next (w, &c) == TR_OK && c) {
            ck_assert_uint_eq (c->key_len, 2);
            ck_assert_uint_gt (c->version, last);
            last = c->version;
            s_model_apply (model, c);
            tr__kv_change_unref (&c);
        }
        ck_assert (!tr__kv_watch_resync (w));
        tr__kv_items_destroy (&snap);
        for (int k = 0; k < S_KEYS; k++) {
            char key [3] = { 'p', (char) ('a' + k), 0 };
            ck_assert_uint_eq (model [k], s_get_uint (kv, key, now + 100, NULL));
        }
        tr__kv_watch_destroy (&w);
        tr__kv_destroy (&kv);
    }
}
END_TEST

//  The journal sees every change in order and can refuse one.
typedef struct {
    uint64_t last;
    int calls;
    int refuse;                         //  code to return, or 0
} s_journal_t;

static int
s_journal (void *arg, const tr__kv_change_t *c)
{
    s_journal_t *j = (s_journal_t *) arg;
    ck_assert_uint_eq (c->version, j->last + 1);
    j->calls++;
    if (j->refuse)
        return j->refuse;
    j->last = c->version;
    return 0;
}

START_TEST (test_journal)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    s_journal_t j = { 0 };
    tr__kv_set_journal (kv, s_journal, &j);
    tr__kv_watch_t *w;
    ck_assert_int_eq (tr__kv_watch_new (kv, "", 0, 0, S_T0, NULL, &w, NULL), TR_OK);
    ck_assert_int_eq (s_put_uint (kv, "a", 1, 10, S_T0, NULL), TR_OK);
    ck_assert_int_eq (s_put_uint (kv, "b", 1, 0, S_T0, NULL), TR_OK);
    j.refuse = TR_ESYS;
    uint64_t version = 99;
    ck_assert_int_eq (s_put_uint (kv, "c", 1, 0, S_T0, &version), TR_ESYS);
    ck_assert_uint_eq (version, 99);
    ck_assert_int_eq (s_put_uint (kv, "b", 2, 0, S_T0, NULL), TR_ESYS);
    ck_assert_int_eq (tr__kv_cas (kv, "b", 1, 2, "\x03", 1, 0, S_T0, NULL), TR_ESYS);
    ck_assert_int_eq (tr__kv_del (kv, "b", 1, S_T0, NULL), TR_ESYS);
    //  Nothing changed, and no watcher heard of it.
    ck_assert_uint_eq (tr__kv_version (kv), 2);
    ck_assert_int_eq (tr__kv_get (kv, "c", 1, S_T0, NULL, NULL, NULL), TR_ENOTFOUND);
    ck_assert_uint_eq (s_get_uint (kv, "b", S_T0, NULL), 1);
    ck_assert_uint_eq (tr__kv_watch_pending (w), 2);
    //  An expiry happens whatever the journal says.
    ck_assert_uint_eq (tr__kv_expire (kv, S_T0 + 10), 1);
    ck_assert_uint_eq (tr__kv_version (kv), 3);
    ck_assert_uint_eq (tr__kv_watch_pending (w), 3);
    j.refuse = 0;
    j.last = 3;
    ck_assert_int_eq (tr__kv_del (kv, "b", 1, S_T0 + 10, &version), TR_OK);
    ck_assert_uint_eq (version, 4);
    tr__kv_set_journal (kv, NULL, NULL);
    int calls = j.calls;
    ck_assert_int_eq (s_put_uint (kv, "d", 1, 0, S_T0, NULL), TR_OK);
    ck_assert_int_eq (j.calls, calls);
    tr__kv_destroy (&kv);
}
END_TEST

START_TEST (test_value_refs)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    tr__kv_value_t *v;
    tr__kv_watch_t *w;
    ck_assert_int_eq (tr__kv_watch_new (kv, "", 0, 0, S_T0, NULL, &w, NULL), TR_OK);
    ck_assert_int_eq (s_put_uint (kv, "a", 42, 0, S_T0, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_get (kv, "a", 1, S_T0, &v, NULL, NULL), TR_OK);
    tr__kv_change_t *c;
    ck_assert_int_eq (tr__kv_watch_next (w, &c), TR_OK);
    ck_assert_ptr_eq (c->value, tr__kv_value_data (v));
    //  Both outlive the key and the store.
    ck_assert_int_eq (tr__kv_del (kv, "a", 1, S_T0, NULL), TR_OK);
    tr__kv_destroy (&kv);
    ck_assert_uint_eq (tr_test_unpack_uint (tr__kv_value_data (v), tr__kv_value_size (v)), 42);
    ck_assert_uint_eq (tr_test_unpack_uint (c->value, c->value_len), 42);
    tr__kv_value_t *extra = tr__kv_value_ref (v);
    tr__kv_value_unref (&v);
    ck_assert_ptr_null (v);
    tr__kv_value_unref (&extra);
    tr__kv_value_unref (&extra);
    tr__kv_change_unref (&c);
    tr__kv_change_unref (&c);
}
END_TEST

START_TEST (test_restore)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    tr__kv_change_t c = { .version = 5, .op = TR__KV_PUT, .key = (const uint8_t *) "a",
                          .key_len = 1, .value = (const uint8_t *) "\x01", .value_len = 1 };
    ck_assert_int_eq (tr__kv_restore (kv, &c, S_T0), TR_OK);
    c.version = 3;
    c.key = (const uint8_t *) "b";
    c.deadline = S_T0;                  //  expired: not stored
    ck_assert_int_eq (tr__kv_restore (kv, &c, S_T0), TR_OK);
    ck_assert_int_eq (tr__kv_get (kv, "b", 1, S_T0 - 1, NULL, NULL, NULL), TR_ENOTFOUND);
    c.deadline = S_T0 + 10;
    c.key = (const uint8_t *) "c";
    ck_assert_int_eq (tr__kv_restore (kv, &c, S_T0), TR_OK);
    ck_assert_int_eq (tr__kv_next_deadline (kv), S_T0 + 10);
    c.op = 9;
    ck_assert_int_eq (tr__kv_restore (kv, &c, S_T0), TR_EINVAL);
    c.op = TR__KV_DEL;
    c.key = (const uint8_t *) "a";
    c.version = 7;
    ck_assert_int_eq (tr__kv_restore (kv, &c, S_T0), TR_OK);
    ck_assert_uint_eq (tr__kv_count (kv), 1);
    ck_assert_uint_eq (tr__kv_version (kv), 7);
    tr__kv_restore_version (kv, 20);
    tr__kv_restore_version (kv, 10);
    ck_assert_uint_eq (tr__kv_version (kv), 20);
    uint64_t version;
    ck_assert_int_eq (s_put_uint (kv, "d", 1, 0, S_T0, &version), TR_OK);
    ck_assert_uint_eq (version, 21);
    //  A watch from before the restore cannot be served.
    tr__kv_watch_t *w;
    ck_assert_int_eq (tr__kv_watch_new (kv, "", 0, 19, S_T0, NULL, &w, NULL), TR_OK);
    ck_assert (tr__kv_watch_resync (w));
    tr__kv_watch_destroy (&w);
    ck_assert_int_eq (tr__kv_watch_new (kv, "", 0, 20, S_T0, NULL, &w, NULL), TR_OK);
    ck_assert_uint_eq (tr__kv_watch_pending (w), 1);
    tr__kv_watch_destroy (&w);
    //  The dump skips keys due at its now, without expiring them.
    tr__kv_items_t *items;
    ck_assert_int_eq (tr__kv_dump (kv, S_T0 + 10, &items), TR_OK);
    ck_assert_uint_eq (items->count, 1);
    ck_assert_uint_eq (items->at, 21);
    tr__kv_items_destroy (&items);
    ck_assert_uint_eq (tr__kv_count (kv), 2);
    tr__kv_destroy (&kv);
}
END_TEST

//  A quick measure, printed, not asserted: puts and gets of 100,000
//  keys with small values.
START_TEST (test_speed)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    enum { N = 100000 };
    char key [32];
    int failed = 0;
    int64_t t0 = tr__now_ns ();
    for (int i = 0; i < N; i++) {
        snprintf (key, sizeof key, "agents/%08d/state", (int) ((i * INT64_C (7919)) % N));
        failed += s_put_uint (kv, key, (uint64_t) i, 0, S_T0, NULL) != TR_OK;
    }
    int64_t t1 = tr__now_ns ();
    for (int i = 0; i < N; i++) {
        snprintf (key, sizeof key, "agents/%08d/state", (int) ((i * INT64_C (104729)) % N));
        failed += tr__kv_get (kv, key, strlen (key), S_T0, NULL, NULL, NULL) != TR_OK;
    }
    int64_t t2 = tr__now_ns ();
    ck_assert_int_eq (failed, 0);
    tr__kv_items_t *items;
    ck_assert_int_eq (tr__kv_list (kv, "agents/0005", 11, S_T0, &items), TR_OK);
    int64_t t3 = tr__now_ns ();
    ck_assert_uint_eq (items->count, 10000);
    tr__kv_items_destroy (&items);
    printf ("tr_kv_test: %d keys: put %.0f ops/s, get %.0f ops/s, "
            "list of 10,000 under a prefix %.2f ms\n", N,
            N / ((t1 - t0) / 1e9), N / ((t2 - t1) / 1e9), (t3 - t2) / 1e6);
    tr__kv_destroy (&kv);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_kv");
    TCase *tc = tcase_create ("kv");
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_put_get);
    tcase_add_test (tc, test_index_random);
    tcase_add_test (tc, test_errors);
    tcase_add_test (tc, test_versions_increase);
    tcase_add_test (tc, test_cas);
    tcase_add_test (tc, test_cas_contention);
    tcase_add_test (tc, test_list);
    tcase_add_test (tc, test_ttl);
    tcase_add_test (tc, test_watch);
    tcase_add_test (tc, test_watch_resync);
    tcase_add_test (tc, test_snapshot_then_watch);
    tcase_add_test (tc, test_journal);
    tcase_add_test (tc, test_value_refs);
    tcase_add_test (tc, test_restore);
    tcase_add_test (tc, test_speed);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
