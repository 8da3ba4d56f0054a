/*  tr_timer_test.c - one-shot and periodic timers, cancelling, ordering,
    targets that do not exist or go away (tr_timer.h). Timing is checked
    from below (never early) and loosely from above: precise figures are
    for benchmarks, not tests.  */

#include "tr_test.h"

static tr_node_t *s_node;
static tr_probe_t *s_probe;

static void
s_setup (void)
{
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
    s_probe = tr_probe_new ();
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
}

static void
s_teardown (void)
{
    tr_node_destroy (&s_node);
    tr_probe_destroy (&s_probe);
}

START_TEST (test_after)
{
    tr_test_body_t b = tr_test_pack_uint (11);
    uint64_t id = 0;
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (tr_timer_after (s_node, "probe", 50, b.data, b.size, &id), TR_OK);
    ck_assert_uint_ne (id, 0);
    ck_assert (tr_probe_wait (s_probe, 1, 5000));
    int64_t took = tr_test_now_ms () - start;
    ck_assert_int_ge (took, 50);
    ck_assert_int_lt (took, 5000);
    ck_assert_uint_eq (s_probe->values [0], 11);
    ck_assert_str_eq (s_probe->last_from, "");
    //  Fired: it cannot be cancelled any more, and does not fire again.
    ck_assert_int_eq (tr_timer_cancel (s_node, id), TR_ENOTFOUND);
    usleep (100 * 1000);
    ck_assert_uint_eq (tr_probe_count (s_probe), 1);
}
END_TEST

START_TEST (test_every_and_cancel)
{
    tr_test_body_t b = tr_test_pack_uint (5);
    uint64_t id;
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (tr_timer_every (s_node, "probe", 20, b.data, b.size, &id), TR_OK);
    ck_assert (tr_probe_wait (s_probe, 5, 10000));
    //  Five ticks take at least four periods after the first one.
    ck_assert_int_ge (tr_test_now_ms () - start, 100);
    ck_assert_int_eq (tr_timer_cancel (s_node, id), TR_OK);
    ck_assert_int_eq (tr_timer_cancel (s_node, id), TR_ENOTFOUND);
    //  At most one tick was already on its way when it was cancelled.
    size_t after_cancel = tr_probe_count (s_probe);
    usleep (150 * 1000);
    ck_assert_uint_le (tr_probe_count (s_probe), after_cancel + 1);
}
END_TEST

START_TEST (test_order)
{
    //  Timers set in scrambled order fire in order of their due time.
    int delays [] = { 90, 10, 50, 30, 70, 0, 20, 80, 40, 60 };
    for (int i = 0; i < 10; i++) {
        tr_test_body_t b = tr_test_pack_uint ((uint64_t) delays [i]);
        ck_assert_int_eq (tr_timer_after (s_node, "probe", delays [i], b.data, b.size, NULL), TR_OK);
    }
    ck_assert (tr_probe_wait (s_probe, 10, 10000));
    for (int i = 1; i < 10; i++)
        ck_assert_uint_le (s_probe->values [i - 1], s_probe->values [i]);
}
END_TEST

START_TEST (test_cancel_before_due)
{
    uint64_t id;
    ck_assert_int_eq (tr_timer_after (s_node, "probe", 100, NULL, 0, &id), TR_OK);
    ck_assert_int_eq (tr_timer_cancel (s_node, id), TR_OK);
    ck_assert_int_eq (tr_timer_cancel (s_node, 987654), TR_ENOTFOUND);
    usleep (200 * 1000);
    ck_assert_uint_eq (tr_probe_count (s_probe), 0);
}
END_TEST

static bool
s_dead_letters_at_least_2 (void *unused)
{
    tr_node_stats_t st;
    tr_node_stats (s_node, &st);
    return st.dead_letters >= 2;
}

START_TEST (test_missing_target)
{
    //  A tick to nobody is a counted dead letter; a periodic timer to an
    //  actor that went away is cancelled by the service.
    uint64_t once, every;
    ck_assert_int_eq (tr_timer_after (s_node, "ghost", 0, NULL, 0, &once), TR_OK);
    ck_assert_int_eq (tr_timer_every (s_node, "probe", 10, NULL, 0, &every), TR_OK);
    ck_assert (tr_probe_wait (s_probe, 1, 5000));
    ck_assert_int_eq (tr_actor_stop (s_node, "probe", 5000), TR_OK);
    ck_assert (tr_test_wait_until (s_dead_letters_at_least_2, NULL, 5000 * tr_test_slowdown ()));
    usleep (50 * 1000 * tr_test_slowdown ());
    ck_assert_int_eq (tr_timer_cancel (s_node, every), TR_ENOTFOUND);
    ck_assert_int_eq (tr_timer_cancel (s_node, 0), TR_ENOTFOUND);
}
END_TEST

START_TEST (test_bad_timers)
{
    uint8_t bad [] = { 0xc1 };
    ck_assert_int_eq (tr_timer_after (NULL, "probe", 1, NULL, 0, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_timer_after (s_node, NULL, 1, NULL, 0, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_timer_after (s_node, "no name", 1, NULL, 0, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_timer_after (s_node, "probe", -1, NULL, 0, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_timer_every (s_node, "probe", 0, NULL, 0, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_timer_after (s_node, "probe", 1, bad, 1, NULL), TR_EMALFORMED);
    ck_assert_int_eq (tr_timer_cancel (NULL, 1), TR_EINVAL);
}
END_TEST

START_TEST (test_many_timers)
{
    //  A thousand periodic timers, all cancelled again.
    uint64_t ids [1000];
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq (tr_timer_every (s_node, "probe", 50 + i % 50, NULL, 0, &ids [i]), TR_OK);
    ck_assert (tr_probe_wait (s_probe, 1000, 10000));
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq (tr_timer_cancel (s_node, ids [i]), TR_OK);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_timer");
    TCase *tc = tcase_create ("timer");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_after);
    tcase_add_test (tc, test_every_and_cancel);
    tcase_add_test (tc, test_order);
    tcase_add_test (tc, test_cancel_before_due);
    tcase_add_test (tc, test_missing_target);
    tcase_add_test (tc, test_bad_timers);
    tcase_add_test (tc, test_many_timers);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
