/*  tr_params_test.c - an actor's parameters (tr_params.h): every accessor
    with a key that is there, one that is absent and one of another type;
    nested values; bytes that are not a map or are cut short; and the
    duration parser's edge cases. Parameters are packed here with
    msgpack-c, as the tree loader packs them (tr_tree_test.c reads them
    back from tree files).  */

#include "tr_test.h"
#include <math.h>
#include <msgpack.h>

//  --------------------------------------------------------------------------
//  Packing parameters for a test

typedef struct {
    msgpack_sbuffer buffer;
    msgpack_packer pk;
} s_pack_t;

static void
s_pack_init (s_pack_t *self)
{
    msgpack_sbuffer_init (&self->buffer);
    msgpack_packer_init (&self->pk, &self->buffer, msgpack_sbuffer_write);
}

static void
s_pack_key (s_pack_t *self, const char *key)
{
    msgpack_pack_str_with_body (&self->pk, key, strlen (key));
}

static tr_params_t
s_pack_params (const s_pack_t *self)
{
    return (tr_params_t) { (const uint8_t *) self->buffer.data, self->buffer.size };
}

static void
s_pack_destroy (s_pack_t *self)
{
    msgpack_sbuffer_destroy (&self->buffer);
}

//  The parameters most tests read: one key of every kind of value.
static void
s_pack_sample (s_pack_t *self)
{
    s_pack_init (self);
    msgpack_packer *pk = &self->pk;
    msgpack_pack_map (pk, 16);
    s_pack_key (self, "int");       msgpack_pack_int64 (pk, -42);
    s_pack_key (self, "uint");      msgpack_pack_uint64 (pk, 7);
    s_pack_key (self, "big");       msgpack_pack_uint64 (pk, UINT64_MAX);
    s_pack_key (self, "min");       msgpack_pack_int64 (pk, INT64_MIN);
    s_pack_key (self, "double");    msgpack_pack_double (pk, 2.5);
    s_pack_key (self, "float");     msgpack_pack_float (pk, 0.25f);
    s_pack_key (self, "yes");       msgpack_pack_true (pk);
    s_pack_key (self, "no");        msgpack_pack_false (pk);
    s_pack_key (self, "str");       msgpack_pack_str_with_body (pk, "hello", 5);
    s_pack_key (self, "empty");     msgpack_pack_str_with_body (pk, "", 0);
    s_pack_key (self, "nil");       msgpack_pack_nil (pk);
    s_pack_key (self, "wait");      msgpack_pack_str_with_body (pk, "1.5s", 4);
    s_pack_key (self, "bad_wait");  msgpack_pack_str_with_body (pk, "soon", 4);
    s_pack_key (self, "list");
    msgpack_pack_array (pk, 2);
    msgpack_pack_int64 (pk, 1);
    msgpack_pack_str_with_body (pk, "two", 3);
    s_pack_key (self, "inner");
    msgpack_pack_map (pk, 2);
    s_pack_key (self, "depth");     msgpack_pack_int64 (pk, 2);
    s_pack_key (self, "deeper");
    msgpack_pack_map (pk, 1);
    s_pack_key (self, "name");      msgpack_pack_str_with_body (pk, "leaf", 4);
    s_pack_key (self, "last");      msgpack_pack_int64 (pk, 99);
}

//  --------------------------------------------------------------------------
//  The accessors

START_TEST (test_int)
{
    s_pack_t p;
    s_pack_sample (&p);
    tr_params_t params = s_pack_params (&p);
    int64_t value = 123;
    ck_assert_int_eq (tr_params_int (&params, "int", &value), TR_OK);
    ck_assert_int_eq (value, -42);
    ck_assert_int_eq (tr_params_int (&params, "uint", &value), TR_OK);
    ck_assert_int_eq (value, 7);
    ck_assert_int_eq (tr_params_int (&params, "min", &value), TR_OK);
    ck_assert (value == INT64_MIN);
    ck_assert_int_eq (tr_params_int (&params, "last", &value), TR_OK);
    ck_assert_int_eq (value, 99);
    //  Absent: the value is left alone, so it may hold a default.
    value = 123;
    ck_assert_int_eq (tr_params_int (&params, "absent", &value), TR_ENOTFOUND);
    ck_assert_int_eq (value, 123);
    //  A key is matched whole, not as a prefix.
    ck_assert_int_eq (tr_params_int (&params, "in", &value), TR_ENOTFOUND);
    ck_assert_int_eq (tr_params_int (&params, "intx", &value), TR_ENOTFOUND);
    //  Another type, or an unsigned integer past INT64_MAX.
    const char *others [] = { "big", "double", "float", "yes", "str", "nil",
                              "list", "inner", NULL };
    for (size_t i = 0; others [i]; i++) {
        ck_assert_msg (tr_params_int (&params, others [i], &value) == TR_EMALFORMED,
                       "key %s", others [i]);
        ck_assert_int_eq (value, 123);
    }
    s_pack_destroy (&p);
}
END_TEST

START_TEST (test_double)
{
    s_pack_t p;
    s_pack_sample (&p);
    tr_params_t params = s_pack_params (&p);
    double value = -1;
    ck_assert_int_eq (tr_params_double (&params, "double", &value), TR_OK);
    ck_assert (value == 2.5);
    ck_assert_int_eq (tr_params_double (&params, "float", &value), TR_OK);
    ck_assert (value == 0.25);
    //  Integers are numbers too, of either sign and any size.
    ck_assert_int_eq (tr_params_double (&params, "int", &value), TR_OK);
    ck_assert (value == -42.0);
    ck_assert_int_eq (tr_params_double (&params, "big", &value), TR_OK);
    ck_assert (value == (double) UINT64_MAX);
    value = -1;
    ck_assert_int_eq (tr_params_double (&params, "absent", &value), TR_ENOTFOUND);
    ck_assert (value == -1);
    const char *others [] = { "yes", "str", "nil", "list", "inner", NULL };
    for (size_t i = 0; others [i]; i++)
        ck_assert_msg (tr_params_double (&params, others [i], &value) == TR_EMALFORMED,
                       "key %s", others [i]);
    ck_assert (value == -1);
    s_pack_destroy (&p);
}
END_TEST

START_TEST (test_bool)
{
    s_pack_t p;
    s_pack_sample (&p);
    tr_params_t params = s_pack_params (&p);
    bool value = false;
    ck_assert_int_eq (tr_params_bool (&params, "yes", &value), TR_OK);
    ck_assert (value);
    ck_assert_int_eq (tr_params_bool (&params, "no", &value), TR_OK);
    ck_assert (!value);
    value = true;
    ck_assert_int_eq (tr_params_bool (&params, "absent", &value), TR_ENOTFOUND);
    ck_assert (value);
    const char *others [] = { "int", "uint", "double", "str", "nil", "list", NULL };
    for (size_t i = 0; others [i]; i++)
        ck_assert_msg (tr_params_bool (&params, others [i], &value) == TR_EMALFORMED,
                       "key %s", others [i]);
    ck_assert (value);
    s_pack_destroy (&p);
}
END_TEST

START_TEST (test_str)
{
    s_pack_t p;
    s_pack_sample (&p);
    tr_params_t params = s_pack_params (&p);
    const char *text = NULL;
    size_t len = 99;
    ck_assert_int_eq (tr_params_str (&params, "str", &text, &len), TR_OK);
    ck_assert_uint_eq (len, 5);
    ck_assert (memcmp (text, "hello", 5) == 0);
    //  It points into the parameters themselves.
    ck_assert ((const uint8_t *) text > params.data);
    ck_assert ((const uint8_t *) text + len <= params.data + params.size);
    ck_assert_int_eq (tr_params_str (&params, "empty", &text, &len), TR_OK);
    ck_assert_uint_eq (len, 0);
    text = "default";
    len = 7;
    ck_assert_int_eq (tr_params_str (&params, "absent", &text, &len), TR_ENOTFOUND);
    ck_assert_str_eq (text, "default");
    ck_assert_uint_eq (len, 7);
    const char *others [] = { "int", "double", "yes", "nil", "list", "inner", NULL };
    for (size_t i = 0; others [i]; i++)
        ck_assert_msg (tr_params_str (&params, others [i], &text, &len) == TR_EMALFORMED,
                       "key %s", others [i]);
    ck_assert_str_eq (text, "default");
    s_pack_destroy (&p);
}
END_TEST

START_TEST (test_duration)
{
    s_pack_t p;
    s_pack_sample (&p);
    tr_params_t params = s_pack_params (&p);
    int64_t ms = -1;
    ck_assert_int_eq (tr_params_duration (&params, "wait", &ms), TR_OK);
    ck_assert_int_eq (ms, 1500);
    //  An integer is taken as milliseconds, if it is not negative.
    ck_assert_int_eq (tr_params_duration (&params, "uint", &ms), TR_OK);
    ck_assert_int_eq (ms, 7);
    ms = -1;
    ck_assert_int_eq (tr_params_duration (&params, "int", &ms), TR_EMALFORMED);
    ck_assert_int_eq (tr_params_duration (&params, "bad_wait", &ms), TR_EMALFORMED);
    ck_assert_int_eq (tr_params_duration (&params, "empty", &ms), TR_EMALFORMED);
    ck_assert_int_eq (tr_params_duration (&params, "double", &ms), TR_EMALFORMED);
    ck_assert_int_eq (tr_params_duration (&params, "big", &ms), TR_EMALFORMED);
    ck_assert_int_eq (tr_params_duration (&params, "yes", &ms), TR_EMALFORMED);
    ck_assert_int_eq (tr_params_duration (&params, "absent", &ms), TR_ENOTFOUND);
    ck_assert_int_eq (ms, -1);
    s_pack_destroy (&p);
}
END_TEST

START_TEST (test_get_nested)
{
    s_pack_t p;
    s_pack_sample (&p);
    tr_params_t params = s_pack_params (&p);
    tr_params_t inner, deeper, list, scalar;
    ck_assert_int_eq (tr_params_get (&params, "inner", &inner), TR_OK);
    ck_assert (inner.data > params.data);
    ck_assert (inner.data + inner.size < params.data + params.size);
    int64_t depth;
    ck_assert_int_eq (tr_params_int (&inner, "depth", &depth), TR_OK);
    ck_assert_int_eq (depth, 2);
    //  A key of the outer map is not a key of the inner one.
    ck_assert_int_eq (tr_params_int (&inner, "int", &depth), TR_ENOTFOUND);
    ck_assert_int_eq (tr_params_get (&inner, "deeper", &deeper), TR_OK);
    const char *text;
    size_t len;
    ck_assert_int_eq (tr_params_str (&deeper, "name", &text, &len), TR_OK);
    ck_assert (len == 4 && memcmp (text, "leaf", 4) == 0);
    ck_assert_int_eq (tr_params_get (&deeper, "absent", &scalar), TR_ENOTFOUND);
    //  A list comes back whole; the accessors find no keys in it.
    ck_assert_int_eq (tr_params_get (&params, "list", &list), TR_OK);
    ck_assert_uint_eq (list.size, 1 + 1 + 4);       //  fixarray, 1, "two"
    ck_assert_int_eq (list.data [0], 0x92);
    ck_assert_int_eq (tr_params_int (&list, "0", &depth), TR_EMALFORMED);
    //  So does a scalar: one msgpack value.
    ck_assert_int_eq (tr_params_get (&params, "last", &scalar), TR_OK);
    ck_assert_uint_eq (scalar.size, 1);
    ck_assert_int_eq (scalar.data [0], 99);
    ck_assert_int_eq (tr_params_get (&params, "str", &scalar), TR_OK);
    ck_assert_uint_eq (scalar.size, 6);
    ck_assert_int_eq (tr_params_int (&scalar, "x", &depth), TR_EMALFORMED);
    s_pack_destroy (&p);
}
END_TEST

//  Keys that are not strings are skipped, values and all; the first of
//  two equal keys wins.
START_TEST (test_odd_keys)
{
    s_pack_t p;
    s_pack_init (&p);
    msgpack_pack_map (&p.pk, 5);
    msgpack_pack_int64 (&p.pk, 1);
    msgpack_pack_str_with_body (&p.pk, "one", 3);
    msgpack_pack_array (&p.pk, 1);
    msgpack_pack_map (&p.pk, 0);
    msgpack_pack_array (&p.pk, 2);
    msgpack_pack_nil (&p.pk);
    msgpack_pack_true (&p.pk);
    s_pack_key (&p, "a");
    msgpack_pack_int64 (&p.pk, 2);
    s_pack_key (&p, "a");
    msgpack_pack_int64 (&p.pk, 3);
    s_pack_key (&p, "");
    msgpack_pack_int64 (&p.pk, 4);
    tr_params_t params = s_pack_params (&p);
    int64_t value;
    ck_assert_int_eq (tr_params_int (&params, "a", &value), TR_OK);
    ck_assert_int_eq (value, 2);
    ck_assert_int_eq (tr_params_int (&params, "", &value), TR_OK);
    ck_assert_int_eq (value, 4);
    ck_assert_int_eq (tr_params_int (&params, "1", &value), TR_ENOTFOUND);
    s_pack_destroy (&p);
}
END_TEST

//  No parameters at all: every key is absent.
START_TEST (test_empty)
{
    tr_params_t none = { NULL, 0 };
    int64_t i;
    double d;
    bool b;
    const char *text;
    size_t len;
    tr_params_t value;
    ck_assert_int_eq (tr_params_int (&none, "a", &i), TR_ENOTFOUND);
    ck_assert_int_eq (tr_params_double (&none, "a", &d), TR_ENOTFOUND);
    ck_assert_int_eq (tr_params_bool (&none, "a", &b), TR_ENOTFOUND);
    ck_assert_int_eq (tr_params_str (&none, "a", &text, &len), TR_ENOTFOUND);
    ck_assert_int_eq (tr_params_duration (&none, "a", &i), TR_ENOTFOUND);
    ck_assert_int_eq (tr_params_get (&none, "a", &value), TR_ENOTFOUND);
    const uint8_t empty_map [] = { 0x80 };
    tr_params_t empty = { empty_map, sizeof empty_map };
    ck_assert_int_eq (tr_params_int (&empty, "a", &i), TR_ENOTFOUND);
}
END_TEST

START_TEST (test_invalid_arguments)
{
    s_pack_t p;
    s_pack_sample (&p);
    tr_params_t params = s_pack_params (&p);
    tr_params_t broken = { NULL, 4 };
    int64_t i;
    double d;
    bool b;
    const char *text;
    size_t len;
    tr_params_t value;
    ck_assert_int_eq (tr_params_int (NULL, "int", &i), TR_EINVAL);
    ck_assert_int_eq (tr_params_int (&params, NULL, &i), TR_EINVAL);
    ck_assert_int_eq (tr_params_int (&params, "int", NULL), TR_EINVAL);
    ck_assert_int_eq (tr_params_int (&broken, "int", &i), TR_EINVAL);
    ck_assert_int_eq (tr_params_double (&params, "double", NULL), TR_EINVAL);
    ck_assert_int_eq (tr_params_double (NULL, "double", &d), TR_EINVAL);
    ck_assert_int_eq (tr_params_bool (&params, "yes", NULL), TR_EINVAL);
    ck_assert_int_eq (tr_params_bool (&params, NULL, &b), TR_EINVAL);
    ck_assert_int_eq (tr_params_str (&params, "str", NULL, &len), TR_EINVAL);
    ck_assert_int_eq (tr_params_str (&params, "str", &text, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_params_duration (&params, "wait", NULL), TR_EINVAL);
    ck_assert_int_eq (tr_params_duration (NULL, "wait", &i), TR_EINVAL);
    ck_assert_int_eq (tr_params_get (&params, "inner", NULL), TR_EINVAL);
    ck_assert_int_eq (tr_params_get (&params, NULL, &value), TR_EINVAL);
    ck_assert_int_eq (tr_duration_parse (NULL, 0, &i), TR_EINVAL);
    ck_assert_int_eq (tr_duration_parse ("1s", 2, NULL), TR_EINVAL);
    s_pack_destroy (&p);
}
END_TEST

//  Bytes that are not a map, or a map cut short anywhere: an error,
//  never a read past the end (the sanitizer builds would see one).
START_TEST (test_malformed)
{
    const uint8_t not_map [] = { 0x92, 0x01, 0x02 };
    tr_params_t params = { not_map, sizeof not_map };
    int64_t value;
    ck_assert_int_eq (tr_params_int (&params, "a", &value), TR_EMALFORMED);
    s_pack_t p;
    s_pack_sample (&p);
    for (size_t size = 1; size < p.buffer.size; size++) {
        //  A copy of just the first bytes, so that reading past them is
        //  reading past a heap block.
        uint8_t *cut = (uint8_t *) malloc (size);
        memcpy (cut, p.buffer.data, size);
        tr_params_t part = { cut, size };
        int rc = tr_params_int (&part, "last", &value);
        ck_assert_msg (rc == TR_EMALFORMED, "cut at %zu: %s", size, tr_errname (rc));
        tr_params_t got;
        rc = tr_params_get (&part, "inner", &got);
        ck_assert_msg (rc == TR_EMALFORMED || rc == TR_OK, "cut at %zu", size);
        if (rc == TR_OK)
            ck_assert (got.data + got.size <= cut + size);
        double d;
        rc = tr_params_double (&part, "float", &d);
        ck_assert (rc == TR_EMALFORMED || rc == TR_OK);
        free (cut);
    }
    s_pack_destroy (&p);
}
END_TEST

//  Parameters nested past the reader's limit are refused, not recursed
//  into without end.
START_TEST (test_deep)
{
    s_pack_t p;
    s_pack_init (&p);
    msgpack_pack_map (&p.pk, 2);
    s_pack_key (&p, "deep");
    for (int i = 0; i < 200; i++)
        msgpack_pack_array (&p.pk, 1);
    msgpack_pack_nil (&p.pk);
    s_pack_key (&p, "after");
    msgpack_pack_int64 (&p.pk, 1);
    tr_params_t params = s_pack_params (&p);
    int64_t value;
    tr_params_t deep;
    ck_assert_int_eq (tr_params_int (&params, "after", &value), TR_EMALFORMED);
    ck_assert_int_eq (tr_params_get (&params, "deep", &deep), TR_EMALFORMED);
    s_pack_destroy (&p);
}
END_TEST

//  --------------------------------------------------------------------------
//  Durations

//  Parses a NUL-terminated duration; returns the result code.
static int
s_duration (const char *text, int64_t *ms)
{
    return tr_duration_parse (text, strlen (text), ms);
}

START_TEST (test_duration_parse)
{
    struct {
        const char *text;
        int64_t ms;
    } good [] = {
        { "0", 0 }, { "0ms", 0 }, { "0s", 0 }, { "0.0s", 0 }, { "1ms", 1 },
        { "250ms", 250 }, { "1s", 1000 }, { "1.5s", 1500 }, { "2m", 120000 },
        { "1h", 3600000 }, { "1.25m", 75000 }, { "0.5h", 1800000 },
        { "007s", 7000 }, { "1.5ms", 2 }, { "1.4ms", 1 }, { "0.0005s", 1 },
        { "0.0004s", 0 }, { "0.9999s", 1000 }, { "1.000000000000000000001s", 1000 },
        { "9223372036854775807ms", INT64_MAX },
        { "9223372036854775s", INT64_C (9223372036854775000) },
        { "2562047788015h", INT64_C (2562047788015) * 3600000 },
    };
    for (size_t i = 0; i < sizeof good / sizeof good [0]; i++) {
        int64_t ms = -1;
        int rc = s_duration (good [i].text, &ms);
        ck_assert_msg (rc == TR_OK, "'%s': %s", good [i].text, tr_errname (rc));
        ck_assert_msg (ms == good [i].ms, "'%s' gave %lld", good [i].text, (long long) ms);
    }
    const char *bad [] = {
        "", "-1s", "+1s", "1x", "s", "ms", "1", "10", "00", "1.s", ".5s",
        "1.5", "1 s", " 1s", "1s ", "1S", "1sec", "1mss", "1e3ms", "1,5s",
        "1h1m", "0x10s", "inf", "nan", "1.2.3s",
        "9223372036854775808ms",            //  INT64_MAX + 1
        "99999999999999999999ms",
        "9223372036854776s",                //  over INT64_MAX ms
        "2562047788016h",
        "9223372036854775807.5ms",          //  rounds up past INT64_MAX
        NULL
    };
    for (size_t i = 0; bad [i]; i++) {
        int64_t ms = -1;
        ck_assert_msg (s_duration (bad [i], &ms) == TR_EINVAL, "'%s' was taken", bad [i]);
        ck_assert_int_eq (ms, -1);
    }
    //  The length counts, not a NUL: "1s" followed by more text.
    int64_t ms = -1;
    ck_assert_int_eq (tr_duration_parse ("1sx", 2, &ms), TR_OK);
    ck_assert_int_eq (ms, 1000);
    ck_assert_int_eq (tr_duration_parse ("1s\0", 3, &ms), TR_EINVAL);
    ck_assert_int_eq (tr_duration_parse ("250ms", 3, &ms), TR_EINVAL);
    ck_assert_int_eq (tr_duration_parse ("0s", 1, &ms), TR_OK);
    ck_assert_int_eq (ms, 0);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_params");
    TCase *tc = tcase_create ("accessors");
    tcase_add_test (tc, test_int);
    tcase_add_test (tc, test_double);
    tcase_add_test (tc, test_bool);
    tcase_add_test (tc, test_str);
    tcase_add_test (tc, test_duration);
    tcase_add_test (tc, test_get_nested);
    tcase_add_test (tc, test_odd_keys);
    tcase_add_test (tc, test_empty);
    tcase_add_test (tc, test_invalid_arguments);
    tcase_add_test (tc, test_malformed);
    tcase_add_test (tc, test_deep);
    suite_add_tcase (s, tc);
    tc = tcase_create ("durations");
    tcase_add_test (tc, test_duration_parse);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
