/*  tr_body_test.c - small msgpack bodies packed and read back (tr_body.h).
    Messages come back from a real actor that echoes what it is asked.  */

#include "tr_test.h"

static tr_node_t *s_node;
static tr_probe_t *s_probe;

static void
s_setup (void)
{
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
    s_probe = tr_probe_new ();
    tr_probe_spawn (s_node, "echo", s_probe, NULL);
}

static void
s_teardown (void)
{
    tr_node_destroy (&s_node);
    tr_probe_destroy (&s_probe);
}

//  Asks the echo with the body and returns its reply (owned by caller).
static tr_msg_t *
s_echo (const tr_body_t *body)
{
    tr_msg_t *reply = NULL;
    ck_assert_int_eq (tr_ask (s_node, "echo", body->data, body->size, 5000, &reply, NULL), TR_OK);
    return reply;
}

START_TEST (test_uint_round_trip)
{
    uint64_t values [] = { 0, 1, 127, 128, 255, 256, 65535, 65536,
                           UINT32_MAX, (uint64_t) UINT32_MAX + 1, UINT64_MAX };
    size_t sizes [] = { 1, 1, 1, 2, 2, 3, 3, 5, 5, 9, 9 };
    for (size_t i = 0; i < sizeof values / sizeof values [0]; i++) {
        tr_body_t b;
        ck_assert_int_eq (tr_body_uint (&b, values [i]), TR_OK);
        ck_assert_uint_eq (b.size, sizes [i]);          //  shortest form
        tr_msg_t *reply = s_echo (&b);
        uint64_t back;
        ck_assert_int_eq (tr_msg_uint (reply, &back), TR_OK);
        ck_assert_uint_eq (back, values [i]);
        const char *text;
        size_t len;
        ck_assert_int_eq (tr_msg_str (reply, &text, &len), TR_EMALFORMED);
        tr_msg_destroy (&reply);
    }
}
END_TEST

START_TEST (test_str_round_trip)
{
    char longest [TR_BODY_SMALL];
    memset (longest, 'x', sizeof longest);
    size_t lengths [] = { 0, 1, 31, 32, 200, 253 };     //  253 + str8 header fills 255
    for (size_t i = 0; i < sizeof lengths / sizeof lengths [0]; i++) {
        tr_body_t b;
        ck_assert_int_eq (tr_body_str (&b, longest, lengths [i]), TR_OK);
        tr_msg_t *reply = s_echo (&b);
        const char *text;
        size_t len;
        ck_assert_int_eq (tr_msg_str (reply, &text, &len), TR_OK);
        ck_assert_uint_eq (len, lengths [i]);
        ck_assert (memcmp (text, longest, len) == 0);
        uint64_t n;
        ck_assert_int_eq (tr_msg_uint (reply, &n), TR_EMALFORMED);
        tr_msg_destroy (&reply);
    }
    tr_body_t b;
    ck_assert_int_eq (tr_body_str (&b, longest, TR_BODY_SMALL), TR_ETOOBIG);
    ck_assert_uint_eq (b.size, 0);
    ck_assert_int_eq (tr_body_str (&b, "héllo", strlen ("héllo")), TR_OK);
}
END_TEST

START_TEST (test_other_bodies)
{
    //  An empty body and a body of another type are not numbers.
    tr_msg_t *reply = NULL;
    ck_assert_int_eq (tr_ask (s_node, "echo", NULL, 0, 5000, &reply, NULL), TR_OK);
    uint64_t n;
    const char *text;
    size_t len;
    ck_assert_int_eq (tr_msg_uint (reply, &n), TR_EMALFORMED);
    ck_assert_int_eq (tr_msg_str (reply, &text, &len), TR_EMALFORMED);
    tr_msg_destroy (&reply);
    const char negative [] = { (char) 0xff };                //  -1
    const char array [] = { (char) 0x91, 0x01 };             //  [1]
    ck_assert_int_eq (tr_ask (s_node, "echo", negative, 1, 5000, &reply, NULL), TR_OK);
    ck_assert_int_eq (tr_msg_uint (reply, &n), TR_EMALFORMED);
    tr_msg_destroy (&reply);
    ck_assert_int_eq (tr_ask (s_node, "echo", array, 2, 5000, &reply, NULL), TR_OK);
    ck_assert_int_eq (tr_msg_uint (reply, &n), TR_EMALFORMED);
    tr_msg_destroy (&reply);
    ck_assert_int_eq (tr_body_uint (NULL, 1), TR_EINVAL);
    ck_assert_int_eq (tr_body_str (NULL, "x", 1), TR_EINVAL);
    ck_assert_int_eq (tr_msg_uint (NULL, &n), TR_EINVAL);
    ck_assert_int_eq (tr_msg_str (NULL, &text, &len), TR_EINVAL);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_body");
    TCase *tc = tcase_create ("body");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_uint_round_trip);
    tcase_add_test (tc, test_str_round_trip);
    tcase_add_test (tc, test_other_bodies);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
