/*  tr_control_test.c - the control socket of a running tree: every
    request, malformed and unknown requests answered without harm to the
    server, a second server of the same tree refused, stale socket files
    replaced, unsafe folders refused, the socket's permissions.
*/

#include "tr_test.h"

#include <errno.h>
#include <msgpack.h>
#include <sys/stat.h>
#include <zmq.h>

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;
static tr_control_t *s_control;
static char s_dir [64];
static void *s_ctx;

static void
s_setup (void)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/tr_control_test.XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (s_dir));
    setenv ("TROUPE_CONTROL_DIR", s_dir, 1);
    const char *yaml = "name: ctl\n"
                       "children:\n"
                       "  - {name: a, actor: counter}\n"
                       "  - name: pool\n"
                       "    supervisor: {strategy: simple_one_for_one, template: {actor: echo}}\n";
    tr_tree_error_t err;
    ck_assert_int_eq (tr_tree_parse (yaml, strlen (yaml), "ctl.yaml", &s_tree, &err), TR_OK);
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
    ck_assert_int_eq (tr_sup_start (s_node, "ctl", &s_tree->root, &s_sup, NULL), TR_OK);
    ck_assert_int_eq (tr_control_start (s_node, s_sup, &s_control), TR_OK);
    s_ctx = zmq_ctx_new ();
}

static void
s_teardown (void)
{
    zmq_ctx_term (s_ctx);
    tr_control_stop (&s_control);
    tr_sup_stop (&s_sup);
    tr_node_destroy (&s_node);
    tr_tree_destroy (&s_tree);
    rmdir (s_dir);
}

//  Sends frames (count of them) on a DEALER, as a REQ would with an empty
//  delimiter first; returns the reply's body frame unpacked, or false if
//  no reply came within a second.
static bool
s_call_frames (const void *const *frames, const size_t *sizes, size_t count,
               msgpack_unpacked *reply, zmq_msg_t *keep)
{
    void *dealer = zmq_socket (s_ctx, ZMQ_DEALER);
    int linger = 0, timeout = 1000 * tr_test_slowdown ();
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "ipc://%s", tr_control_path (s_control));
    ck_assert_int_eq (zmq_connect (dealer, endpoint), 0);
    zmq_send (dealer, "", 0, ZMQ_SNDMORE);
    for (size_t i = 0; i < count; i++)
        zmq_send (dealer, frames [i], sizes [i], i + 1 < count? ZMQ_SNDMORE: 0);
    bool got = false;
    zmq_msg_t empty;
    zmq_msg_init (&empty);
    zmq_msg_init (keep);
    if (zmq_msg_recv (&empty, dealer, 0) == 0 && zmq_msg_more (&empty)
    &&  zmq_msg_recv (keep, dealer, 0) >= 0) {
        msgpack_unpacked_init (reply);
        size_t offset = 0;
        got = msgpack_unpack_next (reply, (const char *) zmq_msg_data (keep),
                                   zmq_msg_size (keep), &offset) == MSGPACK_UNPACK_SUCCESS;
    }
    zmq_msg_close (&empty);
    zmq_close (dealer);
    return got;
}

//  Sends one request frame and returns the reply's code (and copies its
//  second element's kind into *value_type).
static int64_t
s_call (const void *request, size_t size, msgpack_object_type *value_type)
{
    const void *frames [1] = { request };
    size_t sizes [1] = { size };
    msgpack_unpacked reply;
    zmq_msg_t keep;
    ck_assert_msg (s_call_frames (frames, sizes, 1, &reply, &keep), "no reply");
    ck_assert_int_eq (reply.data.type, MSGPACK_OBJECT_ARRAY);
    ck_assert_int_eq (reply.data.via.array.size, 2);
    const msgpack_object *code = &reply.data.via.array.ptr [0];
    int64_t value = code->type == MSGPACK_OBJECT_NEGATIVE_INTEGER? code->via.i64: (int64_t) code->via.u64;
    if (value_type)
        *value_type = reply.data.via.array.ptr [1].type;
    msgpack_unpacked_destroy (&reply);
    zmq_msg_close (&keep);
    return value;
}

//  Packs ["op", args...] and calls.
static int64_t
s_request (const char *op, const char *arg1, const char *arg2, msgpack_object_type *value_type)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 1 + (arg1 != NULL) + (arg2 != NULL));
    msgpack_pack_str_with_body (&pk, op, strlen (op));
    if (arg1)
        msgpack_pack_str_with_body (&pk, arg1, strlen (arg1));
    if (arg2)
        msgpack_pack_str_with_body (&pk, arg2, strlen (arg2));
    int64_t code = s_call (sb.data, sb.size, value_type);
    msgpack_sbuffer_destroy (&sb);
    return code;
}

START_TEST (test_requests)
{
    msgpack_object_type type;
    ck_assert_int_eq (s_request ("status", NULL, NULL, &type), 0);
    ck_assert_int_eq (type, MSGPACK_OBJECT_MAP);
    ck_assert_int_eq (s_request ("restart", "a", NULL, &type), TR_OK);
    ck_assert_int_eq (type, MSGPACK_OBJECT_STR);
    ck_assert_int_eq (s_request ("stop", "a", NULL, NULL), TR_OK);
    ck_assert_int_eq (s_request ("start", "a", NULL, NULL), TR_OK);
    ck_assert_int_eq (s_request ("start", "a", NULL, NULL), TR_EEXIST);
    ck_assert_int_eq (s_request ("breaker_reset", "a", NULL, NULL), TR_OK);
    ck_assert_int_eq (s_request ("add", "pool", "w1", NULL), TR_OK);
    ck_assert_int_eq (s_request ("add", "pool", "w1", NULL), TR_EEXIST);
    ck_assert_int_eq (s_request ("restart", "nobody", NULL, NULL), TR_ENOTFOUND);
    ck_assert_int_eq (tr_tell (s_node, "w1", "\xc0", 1, NULL), TR_OK);
}
END_TEST

START_TEST (test_bad_requests)
{
    msgpack_object_type type;
    //  Not msgpack at all, trailing bytes, not an array, empty array, an
    //  op that is not a string, an unknown op, wrong argument counts and
    //  types, a name with a NUL, a name too long.
    ck_assert_int_eq (s_call ("\xc1", 1, &type), TR_EMALFORMED);
    ck_assert_int_eq (type, MSGPACK_OBJECT_STR);
    ck_assert_int_eq (s_call ("\x91\xa6status\x00", 9, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_call ("\xa6status", 7, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_call ("\x90", 1, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_call ("\x91\x05", 2, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_call ("", 0, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_request ("frobnicate", "a", NULL, NULL), TR_EINVAL);
    ck_assert_int_eq (s_request ("restart", NULL, NULL, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_request ("restart", "a", "b", NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_request ("add", "pool", NULL, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_request ("status", "a", NULL, NULL), TR_EINVAL);
    ck_assert_int_eq (s_call ("\x92\xa7restart\x07", 10, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_call ("\x92\xa7restart\xa3" "a\0b", 13, NULL), TR_EMALFORMED);
    char *long_name = malloc (400);
    memset (long_name, 'x', 399);
    long_name [399] = 0;
    ck_assert_int_eq (s_request ("restart", long_name, NULL, NULL), TR_EMALFORMED);
    free (long_name);
    //  A request in two frames is not answered, and does no harm.
    const void *frames [2] = { "\x91\xa6status", "\x90" };
    size_t sizes [2] = { 7, 1 };
    msgpack_unpacked reply;
    zmq_msg_t keep;
    ck_assert (!s_call_frames (frames, sizes, 2, &reply, &keep));
    zmq_msg_close (&keep);
    //  The server still serves.
    ck_assert_int_eq (s_request ("status", NULL, NULL, NULL), 0);
}
END_TEST

START_TEST (test_one_server_per_tree)
{
    tr_control_t *second = NULL;
    ck_assert_int_eq (tr_control_start (s_node, s_sup, &second), TR_EEXIST);
    ck_assert_ptr_null (second);
    //  The socket is the owner's alone, in a folder nobody else may enter.
    struct stat st;
    ck_assert_int_eq (stat (tr_control_path (s_control), &st), 0);
    ck_assert_int_eq (st.st_mode & 0777, 0600);
    ck_assert (tr_control_live (tr_control_path (s_control)));
    //  Once stopped, its file is gone and a new server may start.
    char path [256];
    snprintf (path, sizeof path, "%s", tr_control_path (s_control));
    tr_control_stop (&s_control);
    ck_assert_int_eq (access (path, F_OK), -1);
    ck_assert (!tr_control_live (path));
    //  A file left by a run that died is replaced.
    FILE *stale = fopen (path, "w");
    ck_assert_ptr_nonnull (stale);
    fclose (stale);
    ck_assert_int_eq (tr_control_start (s_node, s_sup, &s_control), TR_OK);
    ck_assert_int_eq (s_request ("status", NULL, NULL, NULL), 0);
}
END_TEST

START_TEST (test_unsafe_folder)
{
    char path [256];
    ck_assert_int_eq (tr_control_dir (path, sizeof path, false), TR_OK);
    ck_assert_str_eq (path, s_dir);
    tr_control_stop (&s_control);
    ck_assert_int_eq (chmod (s_dir, 0755), 0);
    ck_assert_int_eq (tr_control_dir (path, sizeof path, false), TR_EACCES);
    ck_assert_int_eq (tr_control_start (s_node, s_sup, &s_control), TR_EACCES);
    ck_assert_int_eq (chmod (s_dir, 0700), 0);
    //  A path that does not fit.
    ck_assert_int_eq (tr_control_dir (path, 8, false), TR_EINVAL);
    //  A folder that is not there.
    char missing [128];
    snprintf (missing, sizeof missing, "%s/missing", s_dir);
    setenv ("TROUPE_CONTROL_DIR", missing, 1);
    ck_assert_int_eq (tr_control_dir (path, sizeof path, false), TR_ENOTFOUND);
    ck_assert_int_eq (tr_control_dir (path, sizeof path, true), TR_OK);
    ck_assert_int_eq (rmdir (missing), 0);
    setenv ("TROUPE_CONTROL_DIR", s_dir, 1);
    ck_assert_int_eq (tr_control_start (s_node, s_sup, &s_control), TR_OK);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_control");
    TCase *tc = tcase_create ("control");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_requests);
    tcase_add_test (tc, test_bad_requests);
    tcase_add_test (tc, test_one_server_per_tree);
    tcase_add_test (tc, test_unsafe_folder);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
