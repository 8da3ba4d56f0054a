/*  tr_error_test.c - tests of tr_error.  */

#include "tr_test.h"
#include <troupe.h>

START_TEST (test_node_node_lifecycle)
{
    tr_node_t *node = NULL;
    ck_assert_int_eq (tr_node_new (NULL, &node), TR_OK);
    ck_assert_ptr_nonnull (node);
    tr_node_destroy (&node);
    ck_assert_ptr_null (node);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_error");
    TCase *tc = tcase_create ("core");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_node_node_lifecycle);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
