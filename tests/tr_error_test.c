/*  tr_error_test.c - tests of the error list (tr_error.h, tr_error.c).

    The list is generated from TR_ERROR_MAP; these tests walk the same map
    so that a new row is checked without touching this file.
*/

#include "tr_test.h"
#include <troupe.h>

#include <stdio.h>

//  One row of TR_ERROR_MAP, as the map itself spells it.
typedef struct {
    int code;
    const char *name;                   //  "TR_" #NAME
    const char *text;
} s_row_t;

#define S_ROW(name, value, text) { value, "TR_" #name, text },
static const s_row_t s_rows [] = {
    TR_ERROR_MAP (S_ROW)
};
#undef S_ROW

#define S_ROWS (sizeof s_rows / sizeof s_rows [0])

START_TEST (test_error_names)
{
    for (size_t i = 0; i < S_ROWS; i++) {
        const char *name = tr_errname (s_rows [i].code);
        ck_assert_str_eq (name, s_rows [i].name);
        if (s_rows [i].code == TR_OK)
            ck_assert_str_eq (name, "TR_OK");
        else
            ck_assert_msg (strncmp (name, "TR_E", 4) == 0 && strlen (name) > 4,
                           "%s does not start with TR_E", name);
    }
}
END_TEST

START_TEST (test_error_names_distinct)
{
    for (size_t i = 0; i < S_ROWS; i++)
        for (size_t j = i + 1; j < S_ROWS; j++)
            ck_assert_str_ne (tr_errname (s_rows [i].code),
                              tr_errname (s_rows [j].code));
}
END_TEST

START_TEST (test_error_texts)
{
    for (size_t i = 0; i < S_ROWS; i++) {
        const char *text = tr_strerror (s_rows [i].code);
        ck_assert_ptr_nonnull (text);
        ck_assert_str_eq (text, s_rows [i].text);
        ck_assert_msg (strlen (text) > 0, "%s has an empty text", s_rows [i].name);
        ck_assert_str_ne (text, "unknown error");
    }
}
END_TEST

START_TEST (test_error_codes)
{
    //  0 or negative, distinct, and TR_OK is 0.
    ck_assert_int_eq (TR_OK, 0);
    for (size_t i = 0; i < S_ROWS; i++) {
        ck_assert_int_le (s_rows [i].code, 0);
        ck_assert_int_eq (s_rows [i].code == 0, strcmp (s_rows [i].name, "TR_OK") == 0);
        for (size_t j = i + 1; j < S_ROWS; j++)
            ck_assert_int_ne (s_rows [i].code, s_rows [j].code);
    }
}
END_TEST

START_TEST (test_error_wire_codes)
{
    //  The codes the envelope specification (1.4) names on the wire: they
    //  never change meaning.
    ck_assert_int_eq (TR_ENOACTOR, -3);
    ck_assert_int_eq (TR_EFULL, -5);
    ck_assert_int_eq (TR_ETIMEDOUT, -6);
    ck_assert_int_eq (TR_EHANDLER, -9);
    ck_assert_int_eq (TR_ENOREPLY, -10);
    ck_assert_int_eq (TR_ESTOPPED, -11);
    ck_assert_int_eq (TR_EMALFORMED, -12);
    ck_assert_int_eq (TR_EEXPIRED, -20);
    ck_assert_int_eq (TR_ECIRCUIT, -21);
    ck_assert_int_eq (TR_EINTENSITY, -22);
    ck_assert_int_eq (TR_ECHILD, -23);
    ck_assert_int_eq (TR_EACCES, -24);
    ck_assert_int_eq (TR_EPROTO, -25);
    ck_assert_int_eq (TR_ECONFLICT, -26);
    ck_assert_int_eq (TR_ENODE, -27);
    ck_assert_int_eq (TR_EHTTP, -28);
    ck_assert_int_eq (TR_ECANCELED, -29);
    ck_assert_int_eq (TR_EOUTPUT, -30);
}
END_TEST

START_TEST (test_error_unknown)
{
    const int unknown [] = { 1, 12, -31, -1000, -1001, 2147483647, -2147483647 - 1 };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown [0]; i++) {
        ck_assert_str_eq (tr_strerror (unknown [i]), "unknown error");
        ck_assert_str_eq (tr_errname (unknown [i]), "TR_EUNKNOWN");
    }
    //  No row may use the unknown name or text.
    for (size_t i = 0; i < S_ROWS; i++) {
        ck_assert_str_ne (s_rows [i].name, "TR_EUNKNOWN");
        ck_assert_str_ne (s_rows [i].text, "unknown error");
    }
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_error");
    TCase *tc = tcase_create ("core");
    tcase_set_timeout (tc, 30 * tr_test_slowdown ());
    tcase_add_test (tc, test_error_names);
    tcase_add_test (tc, test_error_names_distinct);
    tcase_add_test (tc, test_error_texts);
    tcase_add_test (tc, test_error_codes);
    tcase_add_test (tc, test_error_wire_codes);
    tcase_add_test (tc, test_error_unknown);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
