/*  tr_group_test.c - named groups: membership, sending to all, members
    that stop or are full (tr_group.h).  */

#include "tr_test.h"

static tr_node_t *s_node;
static tr_probe_t *s_probes [4];

static void
s_setup (void)
{
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
    for (int i = 0; i < 4; i++) {
        char name [8];
        snprintf (name, sizeof name, "m%d", i);
        s_probes [i] = tr_probe_new ();
        tr_probe_spawn (s_node, name, s_probes [i], NULL);
    }
}

static void
s_teardown (void)
{
    tr_node_destroy (&s_node);
    for (int i = 0; i < 4; i++)
        tr_probe_destroy (&s_probes [i]);
}

START_TEST (test_membership)
{
    ck_assert_uint_eq (tr_group_size (s_node, "crew"), 0);
    ck_assert_int_eq (tr_group_join (s_node, "crew", "m0"), TR_OK);
    ck_assert_int_eq (tr_group_join (s_node, "crew", "m1"), TR_OK);
    ck_assert_int_eq (tr_group_join (s_node, "crew", "m1"), TR_OK);    //  once
    ck_assert_uint_eq (tr_group_size (s_node, "crew"), 2);
    ck_assert_int_eq (tr_group_join (s_node, "crew", "nobody"), TR_ENOACTOR);
    ck_assert_int_eq (tr_group_join (s_node, "bad name", "m0"), TR_EINVAL);
    ck_assert_int_eq (tr_group_join (NULL, "crew", "m0"), TR_EINVAL);
    ck_assert_int_eq (tr_group_leave (s_node, "crew", "m2"), TR_ENOTFOUND);
    ck_assert_int_eq (tr_group_leave (s_node, "other", "m0"), TR_ENOTFOUND);
    ck_assert_int_eq (tr_group_leave (s_node, "crew", "m0"), TR_OK);
    ck_assert_int_eq (tr_group_leave (s_node, "crew", "m0"), TR_ENOTFOUND);
    ck_assert_uint_eq (tr_group_size (s_node, "crew"), 1);
    ck_assert_int_eq (tr_group_leave (s_node, "crew", "m1"), TR_OK);
    ck_assert_uint_eq (tr_group_size (s_node, "crew"), 0);
}
END_TEST

START_TEST (test_tell_group)
{
    for (int i = 0; i < 4; i++) {
        char name [8];
        snprintf (name, sizeof name, "m%d", i);
        ck_assert_int_eq (tr_group_join (s_node, "all", name), TR_OK);
        if (i % 2 == 0)
            ck_assert_int_eq (tr_group_join (s_node, "even", name), TR_OK);
    }
    size_t delivered = 99;
    tr_test_body_t b = tr_test_pack_uint (7);
    ck_assert_int_eq (tr_tell_group (s_node, "all", b.data, b.size, NULL, &delivered), TR_OK);
    ck_assert_uint_eq (delivered, 4);
    b = tr_test_pack_uint (8);
    ck_assert_int_eq (tr_tell_group (s_node, "even", b.data, b.size, NULL, &delivered), TR_OK);
    ck_assert_uint_eq (delivered, 2);
    for (int i = 0; i < 4; i++) {
        ck_assert (tr_probe_wait (s_probes [i], i % 2 == 0? 2: 1, 5000));
        ck_assert_uint_eq (s_probes [i]->values [0], 7);
        ck_assert_str_eq (s_probes [i]->last_from, "");
    }
    ck_assert_int_eq (tr_tell_group (s_node, "none", b.data, b.size, NULL, &delivered), TR_ENOTFOUND);
    ck_assert_uint_eq (delivered, 0);
    uint8_t bad [] = { 0xc1 };
    ck_assert_int_eq (tr_tell_group (s_node, "all", bad, 1, NULL, NULL), TR_EMALFORMED);
}
END_TEST

START_TEST (test_stopped_member_leaves)
{
    ck_assert_int_eq (tr_group_join (s_node, "crew", "m0"), TR_OK);
    ck_assert_int_eq (tr_group_join (s_node, "crew", "m1"), TR_OK);
    ck_assert_int_eq (tr_actor_stop (s_node, "m0", 5000), TR_OK);
    ck_assert_uint_eq (tr_group_size (s_node, "crew"), 1);
    size_t delivered;
    ck_assert_int_eq (tr_tell_group (s_node, "crew", NULL, 0, NULL, &delivered), TR_OK);
    ck_assert_uint_eq (delivered, 1);
    ck_assert_int_eq (tr_actor_stop (s_node, "m1", 5000), TR_OK);
    ck_assert_uint_eq (tr_group_size (s_node, "crew"), 0);
}
END_TEST

START_TEST (test_full_member)
{
    tr_probe_t *tight = tr_probe_new ();
    tr_spawn_opts_t opts = { .capacity = 1, .on_full = TR_FULL_FAIL };
    tr_probe_spawn (s_node, "tight", tight, &opts);
    tr_probe_close_gate (s_node, "tight");
    ck_assert_int_eq (tr_test_tell (s_node, "tight", 1, NULL), TR_OK);     //  now full
    ck_assert_int_eq (tr_group_join (s_node, "crew", "m0"), TR_OK);
    ck_assert_int_eq (tr_group_join (s_node, "crew", "tight"), TR_OK);
    ck_assert_int_eq (tr_group_join (s_node, "crew", "m1"), TR_OK);
    size_t delivered;
    tr_test_body_t b = tr_test_pack_uint (2);
    //  The full member refuses; the others still get theirs.
    ck_assert_int_eq (tr_tell_group (s_node, "crew", b.data, b.size, NULL, &delivered), TR_EFULL);
    ck_assert_uint_eq (delivered, 2);
    ck_assert (tr_probe_wait (s_probes [0], 1, 5000));
    ck_assert (tr_probe_wait (s_probes [1], 1, 5000));
    tr_probe_open (tight);
    tr_actor_stop (s_node, "tight", 5000);
    tr_probe_destroy (&tight);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_group");
    TCase *tc = tcase_create ("group");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_membership);
    tcase_add_test (tc, test_tell_group);
    tcase_add_test (tc, test_stopped_member_leaves);
    tcase_add_test (tc, test_full_member);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
