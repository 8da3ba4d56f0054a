/*  tr_u64map_test.c - the map from 64-bit ids to pointers
    (runtime/tr_u64map.h): puts, gets, takes and walks against a plain
    array, through growth and heavy removal, with consecutive ids (the
    link's) and random ones.
*/

#include "tr_test.h"
#include "tr_u64map.h"

START_TEST (test_u64map_basics)
{
    tr__u64map_t map = { 0 };
    int a, b;
    ck_assert_ptr_null (tr__u64map_get (&map, 1));
    ck_assert_ptr_null (tr__u64map_take (&map, 1));
    ck_assert_int_eq (tr__u64map_put (&map, 0, &a), -1);      //  0 is not a key
    ck_assert_int_eq (tr__u64map_put (&map, 7, &a), 0);
    ck_assert_ptr_eq (tr__u64map_get (&map, 7), &a);
    ck_assert_int_eq (tr__u64map_put (&map, 7, &b), 0);       //  replaced
    ck_assert_ptr_eq (tr__u64map_get (&map, 7), &b);
    ck_assert_uint_eq (map.count, 1);
    ck_assert_ptr_eq (tr__u64map_take (&map, 7), &b);
    ck_assert_ptr_null (tr__u64map_get (&map, 7));
    ck_assert_uint_eq (map.count, 0);
    ck_assert_int_eq (tr__u64map_put (&map, UINT64_MAX, &a), 0);
    ck_assert_ptr_eq (tr__u64map_get (&map, UINT64_MAX), &a);
    tr__u64map_clear (&map);
    ck_assert_ptr_null (tr__u64map_get (&map, UINT64_MAX));
}
END_TEST

//  _i: 0, consecutive ids from a base (as a link's SEQs); 1, random ids.
START_TEST (test_u64map_random)
{
    enum { N = 5000, STEPS = 200000 };
    static uint64_t keys [N];
    static bool present [N];
    memset (present, 0, sizeof present);
    uint64_t rng = 99;
    for (size_t i = 0; i < N; i++)
        keys [i] = _i? (tr_test_random (&rng) | 1): (UINT64_C (1) << 62) + i;
    tr__u64map_t map = { 0 };
    size_t count = 0;
    for (int step = 0; step < STEPS; step++) {
        uint64_t r = tr_test_random (&rng);
        size_t i = (size_t) (r % N);
        if ((r >> 32) % 3 == 0) {
            void *got = tr__u64map_take (&map, keys [i]);
            ck_assert_ptr_eq (got, present [i]? (void *) &keys [i]: NULL);
            count -= present [i];
            present [i] = false;
        }
        else {
            ck_assert_int_eq (tr__u64map_put (&map, keys [i], &keys [i]), 0);
            count += !present [i];
            present [i] = true;
        }
        size_t probe = (size_t) ((r >> 40) % N);
        ck_assert_ptr_eq (tr__u64map_get (&map, keys [probe]),
                          present [probe]? (void *) &keys [probe]: NULL);
        ck_assert_uint_eq (map.count, count);
    }
    //  A walk sees every entry once.
    size_t at = 0, walked = 0;
    uint64_t key;
    void *value;
    while (tr__u64map_next (&map, &at, &key, &value)) {
        uint64_t *k = (uint64_t *) value;
        ck_assert_uint_eq (*k, key);
        ck_assert (present [k - keys]);
        walked++;
    }
    ck_assert_uint_eq (walked, count);
    tr__u64map_clear (&map);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_u64map");
    TCase *tc = tcase_create ("map");
    //  200,000 checked steps: seconds plain, far longer under the
    //  sanitizers on a busy machine.
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_u64map_basics);
    tcase_add_loop_test (tc, test_u64map_random, 0, 2);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
