/*  tr_send_test.c - tell, ask, reply, deferral, requests, references,
    priorities, bounds and accounting (tr_send.h).  */

#include "tr_test.h"

#include <stdatomic.h>

static tr_node_t *s_node;
static tr_probe_t *s_probe;

static void
s_setup (void)
{
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
    s_probe = tr_probe_new ();
}

static void
s_teardown (void)
{
    tr_node_destroy (&s_node);
    tr_probe_destroy (&s_probe);
}

//  --------------------------------------------------------------------------

START_TEST (test_tell_and_ask)
{
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 7, NULL), TR_OK);
    tr_test_body_t b = tr_test_pack_uint (8);
    tr_msg_t *reply = NULL;
    ck_assert_int_eq (tr_ask (s_node, "probe", b.data, b.size, 5000, &reply, NULL), TR_OK);
    ck_assert_ptr_nonnull (reply);
    ck_assert_int_eq (tr_msg_kind (reply), TR_KIND_REPLY);
    ck_assert_uint_eq (tr_test_unpack_uint (tr_msg_body (reply), tr_msg_size (reply)), 8);
    ck_assert_str_eq (tr_msg_from (reply), "probe");
    ck_assert_str_eq (tr_msg_to (reply), "");
    ck_assert_uint_ne (tr_msg_corr (reply), 0);
    ck_assert_int_eq (tr_msg_error (reply), 0);
    tr_msg_destroy (&reply);
    ck_assert_ptr_null (reply);
    //  Tells from one sender are handled in order, before the ask.
    ck_assert_uint_eq (tr_probe_count (s_probe), 2);
    ck_assert_uint_eq (s_probe->values [0], 7);
    ck_assert_uint_eq (s_probe->values [1], 8);
    ck_assert_str_eq (s_probe->last_from, "");
}
END_TEST

START_TEST (test_empty_body)
{
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    tr_msg_t *reply;
    ck_assert_int_eq (tr_ask (s_node, "probe", NULL, 0, 5000, &reply, NULL), TR_OK);
    ck_assert_ptr_null (tr_msg_body (reply));
    ck_assert_uint_eq (tr_msg_size (reply), 0);
    tr_msg_destroy (&reply);
}
END_TEST

START_TEST (test_unknown_name)
{
    tr_msg_t *reply = (tr_msg_t *) 1;
    ck_assert_int_eq (tr_test_tell (s_node, "nobody", 1, NULL), TR_ENOACTOR);
    ck_assert_int_eq (tr_ask (s_node, "nobody", NULL, 0, 100, &reply, NULL), TR_ENOACTOR);
    ck_assert_ptr_null (reply);
    tr_ref_t *ref = (tr_ref_t *) 1;
    ck_assert_int_eq (tr_ref_new (s_node, "nobody", &ref), TR_ENOACTOR);
    tr_node_stats_t st;
    tr_node_stats (s_node, &st);
    ck_assert_uint_eq (st.unknown, 3);
}
END_TEST

START_TEST (test_bad_arguments)
{
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    tr_msg_t *reply;
    uint8_t bad [] = { 0xc1 };
    uint8_t trailing [] = { 0x01, 0x02 };
    uint8_t truncated [] = { 0xa5, 'a' };
    ck_assert_int_eq (tr_tell (NULL, "probe", NULL, 0, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_tell (s_node, NULL, NULL, 0, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_tell (s_node, "probe", NULL, 3, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_tell (s_node, "probe", bad, sizeof bad, NULL), TR_EMALFORMED);
    ck_assert_int_eq (tr_tell (s_node, "probe", trailing, sizeof trailing, NULL), TR_EMALFORMED);
    ck_assert_int_eq (tr_tell (s_node, "probe", truncated, sizeof truncated, NULL), TR_EMALFORMED);
    tr_send_opts_t prio = { .priority = 2 }, ttl = { .ttl_ms = -1 };
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 1, &prio), TR_EINVAL);
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 1, &ttl), TR_EINVAL);
    ck_assert_int_eq (tr_ask (s_node, "probe", NULL, 0, 0, &reply, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_ask (s_node, "probe", NULL, 0, 100, NULL, NULL), TR_EINVAL);
    //  Nesting: 32 levels are fine, 33 are not.
    uint8_t deep [40];
    memset (deep, 0x91, sizeof deep);           //  fixarray of one element
    deep [32] = 0x01;
    ck_assert_int_eq (tr_tell (s_node, "probe", deep, 33, NULL), TR_OK);
    deep [32] = 0x91;
    deep [33] = 0x01;
    ck_assert_int_eq (tr_tell (s_node, "probe", deep, 34, NULL), TR_EDEPTH);
    //  Size: a bin 32 just over the limit.
    size_t big = TR_BODY_MAX + 1;
    uint8_t *huge = (uint8_t *) calloc (1, big);
    uint32_t n = (uint32_t) (big - 5);
    huge [0] = 0xc6;
    huge [1] = (uint8_t) (n >> 24); huge [2] = (uint8_t) (n >> 16);
    huge [3] = (uint8_t) (n >> 8);  huge [4] = (uint8_t) n;
    ck_assert_int_eq (tr_tell (s_node, "probe", huge, big, NULL), TR_ETOOBIG);
    free (huge);
    //  Nothing of that reached the actor except the one valid tell.
    ck_assert (tr_probe_wait (s_probe, 1, 5000));
    tr_actor_stats_t st;
    ck_assert_int_eq (tr_actor_stats (s_node, "probe", &st), TR_OK);
    ck_assert_uint_eq (st.received, 1);
}
END_TEST

START_TEST (test_ask_timeout)
{
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    int64_t start = tr_test_now_ms ();
    int rc = tr_test_ask (s_node, "probe", TR_PROBE_SLEEP_BASE + 400, 100, NULL);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_int_eq (rc, TR_ETIMEDOUT);
    ck_assert_int_ge (took, 100);
    ck_assert_int_lt (took, 400);
    //  The late reply is not lost silently: when this thread's port next
    //  listens, it is counted as a dead letter.
    ck_assert (tr_probe_wait (s_probe, 1, 5000));
    usleep (50 * 1000);
    ck_assert_int_eq (tr_test_ask (s_node, "probe", 1, 5000, NULL), TR_OK);
    tr_node_stats_t st;
    tr_node_stats (s_node, &st);
    ck_assert_uint_eq (st.dead_letters, 1);
}
END_TEST

START_TEST (test_handler_failure_and_no_reply)
{
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    ck_assert_int_eq (tr_test_ask (s_node, "probe", TR_PROBE_FAIL, 5000, NULL), TR_EHANDLER);
    ck_assert_int_eq (tr_test_ask (s_node, "probe", TR_PROBE_SILENT, 5000, NULL), TR_ENOREPLY);
    uint64_t answer;
    ck_assert_int_eq (tr_test_ask (s_node, "probe", 5, 5000, &answer), TR_OK);
    ck_assert_uint_eq (answer, 5);
    tr_actor_stats_t st;
    tr_actor_stats (s_node, "probe", &st);
    ck_assert_uint_eq (st.failed, 1);
    ck_assert_uint_eq (st.handled, 2);
}
END_TEST

//  --------------------------------------------------------------------------
//  Deferred answers

static tr_msg_t *s_kept;
static sem_t s_kept_ready;

static int
s_keeper_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_kept = tr_defer (msg);
    ck_assert_ptr_nonnull (s_kept);
    ck_assert_ptr_null (tr_defer (msg));        //  only once
    sem_post (&s_kept_ready);
    return 0;
}

typedef struct {
    int rc;
    uint64_t answer;
} s_ask_result_t;

static void *
s_asker (void *arg)
{
    s_ask_result_t *r = (s_ask_result_t *) arg;
    r->rc = tr_test_ask (s_node, "keeper", 1, 10000, &r->answer);
    return NULL;
}

START_TEST (test_defer_and_reply_later)
{
    tr_behaviour_t keeper = { .handle = s_keeper_handle };
    sem_init (&s_kept_ready, 0, 0);
    ck_assert_int_eq (tr_spawn (s_node, "keeper", &keeper, NULL, NULL, NULL), TR_OK);
    for (int round = 0; round < 2; round++) {
        pthread_t thread;
        s_ask_result_t result = { 1, 0 };
        pthread_create (&thread, NULL, s_asker, &result);
        sem_wait (&s_kept_ready);
        if (round == 0) {
            //  Answered from this thread, after the handler returned.
            tr_test_body_t b = tr_test_pack_uint (99);
            ck_assert_int_eq (tr_reply (s_kept, b.data, b.size), TR_OK);
            ck_assert_int_eq (tr_reply (s_kept, b.data, b.size), TR_EINVAL);
        }
        //  Round 1 drops the request unanswered: the asker must hear so.
        tr_msg_destroy (&s_kept);
        pthread_join (thread, NULL);
        if (round == 0) {
            ck_assert_int_eq (result.rc, TR_OK);
            ck_assert_uint_eq (result.answer, 99);
        }
        else
            ck_assert_int_eq (result.rc, TR_ENOREPLY);
    }
    sem_destroy (&s_kept_ready);
}
END_TEST

START_TEST (test_reply_to_tell_refused)
{
    ck_assert_int_eq (tr_reply (NULL, NULL, 0), TR_EINVAL);
    ck_assert_ptr_null (tr_defer (NULL));
}
END_TEST

//  --------------------------------------------------------------------------
//  Asynchronous requests: the answer comes back to the handler.

typedef struct {
    uint64_t request_id;
    tr_msg_t *job;
    int answer_kind;
    uint64_t answer_corr;
    uint64_t answer_value;
} s_client_t;

static int
s_client_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_client_t *c = (s_client_t *) state;
    if (tr_msg_kind (msg) == TR_KIND_ASK) {
        //  Forward the job as a request to the probe; answer when it does.
        c->job = tr_defer (msg);
        return tr_request (tr_actor_node (self), "probe", tr_msg_body (msg),
                           tr_msg_size (msg), 5000, &c->request_id, NULL);
    }
    c->answer_kind = tr_msg_kind (msg);
    c->answer_corr = tr_msg_corr (msg);
    c->answer_value = tr_test_unpack_uint (tr_msg_body (msg), tr_msg_size (msg));
    tr_test_body_t b = tr_test_pack_uint (c->answer_value + 1);
    tr_reply (c->job, b.data, b.size);
    tr_msg_destroy (&c->job);
    return 0;
}

START_TEST (test_request_answer_reaches_handler)
{
    //  Static: the actor still writes to it after answering.
    static s_client_t client;
    tr_behaviour_t b = { .handle = s_client_handle };
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    ck_assert_int_eq (tr_spawn (s_node, "client", &b, &client, NULL, NULL), TR_OK);
    uint64_t answer;
    ck_assert_int_eq (tr_test_ask (s_node, "client", 41, 5000, &answer), TR_OK);
    ck_assert_uint_eq (answer, 42);
    ck_assert_int_eq (client.answer_kind, TR_KIND_REPLY);
    ck_assert_uint_eq (client.answer_corr, client.request_id);
    ck_assert_uint_eq (client.answer_value, 41);
    ck_assert_str_eq (s_probe->last_from, "client");
    //  Not from a thread that is not an actor.
    uint64_t id;
    ck_assert_int_eq (tr_request (s_node, "probe", NULL, 0, 100, &id, NULL), TR_EINVAL);
}
END_TEST

//  --------------------------------------------------------------------------
//  An actor asking itself would wait for itself.

static int
s_narcissus_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    tr_msg_t *reply;
    int rc = tr_ask (tr_actor_node (self), tr_actor_name (self), NULL, 0, 1000, &reply, NULL);
    tr_test_body_t b = tr_test_pack_uint ((uint64_t) -rc);
    return tr_reply (msg, b.data, b.size);
}

START_TEST (test_ask_self)
{
    tr_behaviour_t b = { .handle = s_narcissus_handle };
    ck_assert_int_eq (tr_spawn (s_node, "narcissus", &b, NULL, NULL, NULL), TR_OK);
    uint64_t answer;
    ck_assert_int_eq (tr_test_ask (s_node, "narcissus", 0, 5000, &answer), TR_OK);
    ck_assert_uint_eq (answer, (uint64_t) -TR_EDEADLK);
}
END_TEST

//  --------------------------------------------------------------------------
//  An actor may tell itself: here it counts down from the asked number,
//  one tell to itself per step, and answers the ask at zero.

typedef struct {
    tr_msg_t *job;
} s_countdown_t;

static int
s_countdown_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_countdown_t *c = (s_countdown_t *) state;
    uint64_t n = tr_test_unpack_uint (tr_msg_body (msg), tr_msg_size (msg));
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        c->job = tr_defer (msg);
    if (n == 0) {
        tr_test_body_t done = tr_test_pack_uint (12345);
        tr_reply (c->job, done.data, done.size);
        tr_msg_destroy (&c->job);
        return 0;
    }
    ck_assert_str_eq (tr_msg_from (msg), tr_msg_kind (msg) == TR_KIND_ASK? "": "countdown");
    tr_test_body_t next = tr_test_pack_uint (n - 1);
    return tr_tell (tr_actor_node (self), tr_actor_name (self), next.data, next.size, NULL);
}

START_TEST (test_tell_self)
{
    static s_countdown_t countdown;
    tr_behaviour_t b = { .handle = s_countdown_handle };
    ck_assert_int_eq (tr_spawn (s_node, "countdown", &b, &countdown, NULL, NULL), TR_OK);
    uint64_t answer;
    ck_assert_int_eq (tr_test_ask (s_node, "countdown", 5000, 10000, &answer), TR_OK);
    ck_assert_uint_eq (answer, 12345);
}
END_TEST

//  --------------------------------------------------------------------------
//  Bounds

START_TEST (test_full_mailbox_fails_at_once)
{
    tr_spawn_opts_t opts = { .capacity = 4, .on_full = TR_FULL_FAIL };
    tr_probe_spawn (s_node, "probe", s_probe, &opts);
    tr_probe_close_gate (s_node, "probe");
    tr_actor_stats_t st;
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq (tr_test_tell (s_node, "probe", (uint64_t) i, NULL), TR_OK);
    int64_t start = tr_test_now_ms ();
    tr_send_opts_t wait = { .timeout_ms = 5000 };   //  ignored: policy says fail
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 4, &wait), TR_EFULL);
    ck_assert_int_eq (tr_test_ask (s_node, "probe", 5, 5000, NULL), TR_EFULL);
    ck_assert_int_lt (tr_test_now_ms () - start, 1000);
    tr_actor_stats (s_node, "probe", &st);
    ck_assert_uint_eq (st.depth, 4);
    ck_assert_uint_eq (st.capacity, 4);
    ck_assert_uint_eq (st.rejected, 2);
    tr_probe_open (s_probe);
    ck_assert (tr_probe_wait (s_probe, 5, 5000));
    tr_actor_stats (s_node, "probe", &st);
    ck_assert_uint_eq (st.received, 5);
    ck_assert_uint_eq (st.received, st.handled + st.failed + st.dead_letters + st.depth);
    tr_node_stats_t ns;
    tr_node_stats (s_node, &ns);
    ck_assert_uint_eq (ns.rejected, 2);
}
END_TEST

static void *
s_open_later (void *arg)
{
    usleep (150 * 1000);
    tr_probe_open ((tr_probe_t *) arg);
    return NULL;
}

START_TEST (test_full_mailbox_waits)
{
    tr_spawn_opts_t opts = { .capacity = 2, .on_full = TR_FULL_WAIT };
    tr_probe_spawn (s_node, "probe", s_probe, &opts);
    tr_probe_close_gate (s_node, "probe");
    tr_actor_stats_t st;
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 1, NULL), TR_OK);
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 2, NULL), TR_OK);
    //  Waits its whole timeout, then gives up.
    tr_send_opts_t brief = { .timeout_ms = 100 }, none = { .timeout_ms = -1 };
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 3, &brief), TR_EFULL);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_int_ge (took, 100);
    //  A negative timeout does not wait.
    start = tr_test_now_ms ();
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 3, &none), TR_EFULL);
    ck_assert_int_lt (tr_test_now_ms () - start, 100);
    //  Room appears while waiting: the send goes through.
    pthread_t opener;
    pthread_create (&opener, NULL, s_open_later, s_probe);
    tr_send_opts_t patient = { .timeout_ms = 10000 };
    start = tr_test_now_ms ();
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 4, &patient), TR_OK);
    took = tr_test_now_ms () - start;
    pthread_join (opener, NULL);
    ck_assert_int_ge (took, 100);
    ck_assert_int_lt (took, 10000);
    ck_assert (tr_probe_wait (s_probe, 4, 5000));
    ck_assert_uint_eq (s_probe->values [3], 4);
    tr_actor_stats (s_node, "probe", &st);
    ck_assert_uint_eq (st.rejected, 2);
}
END_TEST

//  --------------------------------------------------------------------------
//  Priorities

START_TEST (test_priority_order)
{
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    tr_probe_close_gate (s_node, "probe");
    struct { uint64_t value; int priority; } sends [] = {
        { 1, TR_PRIO_LOW }, { 2, TR_PRIO_NORMAL }, { 3, TR_PRIO_HIGH },
        { 4, TR_PRIO_NORMAL }, { 5, TR_PRIO_HIGH }, { 6, TR_PRIO_LOW }
    };
    for (size_t i = 0; i < 6; i++) {
        tr_send_opts_t opts = { .priority = sends [i].priority };
        ck_assert_int_eq (tr_test_tell (s_node, "probe", sends [i].value, &opts), TR_OK);
    }
    tr_probe_open (s_probe);
    ck_assert (tr_probe_wait (s_probe, 7, 5000));
    uint64_t expected [] = { TR_PROBE_GATE, 3, 5, 2, 4, 1, 6 };
    int priorities [] = { 0, 1, 1, 0, 0, -1, -1 };
    for (size_t i = 0; i < 7; i++) {
        ck_assert_uint_eq (s_probe->values [i], expected [i]);
        ck_assert_int_eq (s_probe->priorities [i], priorities [i]);
    }
}
END_TEST

//  --------------------------------------------------------------------------
//  Expiry

START_TEST (test_ttl_expiry)
{
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    tr_probe_close_gate (s_node, "probe");
    tr_send_opts_t brief = { .ttl_ms = 20 }, patient = { .ttl_ms = 60000 };
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 1, &brief), TR_OK);
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 2, &patient), TR_OK);
    usleep (100 * 1000);
    tr_probe_open (s_probe);
    ck_assert (tr_probe_wait (s_probe, 2, 5000));
    ck_assert_int_eq (tr_test_ask (s_node, "probe", 3, 5000, NULL), TR_OK);
    ck_assert_uint_eq (tr_probe_count (s_probe), 3);
    ck_assert_uint_eq (s_probe->values [1], 2);
    tr_actor_stats_t st;
    tr_actor_stats (s_node, "probe", &st);
    ck_assert_uint_eq (st.dead_letters, 1);
    ck_assert_uint_eq (st.received, st.handled + st.failed + st.dead_letters + st.depth);
}
END_TEST

//  --------------------------------------------------------------------------
//  Trace ids follow a conversation.

static int
s_relay_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    int rc = tr_tell (tr_actor_node (self), "probe", tr_msg_body (msg), tr_msg_size (msg), NULL);
    return rc? rc: tr_reply (msg, NULL, 0);
}

START_TEST (test_trace_inherited)
{
    tr_behaviour_t relay = { .handle = s_relay_handle };
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    ck_assert_int_eq (tr_spawn (s_node, "relay", &relay, NULL, NULL, NULL), TR_OK);
    tr_send_opts_t opts = { .trace_id = 4242 };
    tr_msg_t *reply;
    tr_test_body_t b = tr_test_pack_uint (1);
    ck_assert_int_eq (tr_ask (s_node, "relay", b.data, b.size, 5000, &reply, &opts), TR_OK);
    ck_assert_uint_eq (tr_msg_trace (reply), 4242);
    tr_msg_destroy (&reply);
    ck_assert (tr_probe_wait (s_probe, 1, 5000));
    ck_assert_uint_eq (s_probe->last_trace, 4242);
    ck_assert_str_eq (s_probe->last_from, "relay");
    //  Without one, each conversation gets a fresh non-zero id.
    ck_assert_int_eq (tr_ask (s_node, "relay", b.data, b.size, 5000, &reply, NULL), TR_OK);
    ck_assert_uint_ne (tr_msg_trace (reply), 0);
    ck_assert_uint_ne (tr_msg_trace (reply), 4242);
    tr_msg_destroy (&reply);
}
END_TEST

//  --------------------------------------------------------------------------
//  References

START_TEST (test_references)
{
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    tr_ref_t *ref = NULL;
    ck_assert_int_eq (tr_ref_new (s_node, "probe", &ref), TR_OK);
    ck_assert_str_eq (tr_ref_name (ref), "probe");
    tr_test_body_t b = tr_test_pack_uint (3);
    ck_assert_int_eq (tr_tell_ref (ref, b.data, b.size, NULL), TR_OK);
    tr_msg_t *reply;
    ck_assert_int_eq (tr_ask_ref (ref, b.data, b.size, 5000, &reply, NULL), TR_OK);
    tr_msg_destroy (&reply);
    ck_assert_int_eq (tr_actor_stop (s_node, "probe", 5000), TR_OK);
    //  The reference outlives the actor; sending through it says so.
    ck_assert_int_eq (tr_tell_ref (ref, b.data, b.size, NULL), TR_ENOACTOR);
    ck_assert_int_eq (tr_ask_ref (ref, b.data, b.size, 100, &reply, NULL), TR_ENOACTOR);
    tr_ref_destroy (&ref);
    ck_assert_ptr_null (ref);
    tr_ref_destroy (&ref);
}
END_TEST

//  --------------------------------------------------------------------------
//  A name that goes away, and comes back on another actor: sends follow
//  the registry at once (each thread remembers its last lookup; that
//  memory must not outlive a change of the name).

START_TEST (test_name_moves)
{
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 1, NULL), TR_OK);
    ck_assert_int_eq (tr_test_ask (s_node, "probe", 2, 5000, NULL), TR_OK);
    ck_assert_int_eq (tr_actor_stop (s_node, "probe", 5000), TR_OK);
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 3, NULL), TR_ENOACTOR);
    tr_probe_t *second = tr_probe_new ();
    tr_probe_spawn (s_node, "probe", second, NULL);
    ck_assert_int_eq (tr_test_tell (s_node, "probe", 4, NULL), TR_OK);
    ck_assert (tr_probe_wait (second, 1, 5000));
    ck_assert_uint_eq (second->values [0], 4);
    ck_assert_uint_eq (tr_probe_count (s_probe), 2);
    ck_assert_int_eq (tr_actor_stop (s_node, "probe", 5000), TR_OK);
    tr_probe_destroy (&second);
}
END_TEST

//  --------------------------------------------------------------------------
//  Many senders: order per sender, nothing lost.

#define S_SENDERS 4
#define S_PER_SENDER 5000

typedef struct {
    pthread_mutex_t lock;
    uint64_t next [S_SENDERS];
    int out_of_order;
    uint64_t total;
} s_counter_t;

static int
s_counter_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_counter_t *c = (s_counter_t *) state;
    uint64_t v = tr_test_unpack_uint (tr_msg_body (msg), tr_msg_size (msg));
    uint64_t sender = v >> 32, seq = v & 0xffffffffu;
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        return tr_reply (msg, NULL, 0);
    pthread_mutex_lock (&c->lock);
    if (sender >= S_SENDERS || seq != c->next [sender])
        c->out_of_order++;
    else
        c->next [sender]++;
    c->total++;
    pthread_mutex_unlock (&c->lock);
    return 0;
}

static void *
s_sender (void *arg)
{
    uint64_t sender = (uint64_t) (uintptr_t) arg;
    tr_send_opts_t patient = { .timeout_ms = 30000 };
    for (uint64_t i = 0; i < S_PER_SENDER; i++)
        if (tr_test_tell (s_node, "counter", sender << 32 | i, &patient))
            return (void *) 1;
    return NULL;
}

START_TEST (test_many_senders)
{
    s_counter_t counter = { .lock = PTHREAD_MUTEX_INITIALIZER };
    tr_behaviour_t b = { .handle = s_counter_handle };
    tr_spawn_opts_t opts = { .capacity = 64 };      //  forces waiting
    ck_assert_int_eq (tr_spawn (s_node, "counter", &b, &counter, &opts, NULL), TR_OK);
    pthread_t threads [S_SENDERS];
    for (uintptr_t i = 0; i < S_SENDERS; i++)
        pthread_create (&threads [i], NULL, s_sender, (void *) i);
    for (int i = 0; i < S_SENDERS; i++) {
        void *failed;
        pthread_join (threads [i], &failed);
        ck_assert_ptr_null (failed);
    }
    //  An ask from each sender's port would come after its tells; one ask
    //  from here is enough to know this thread's tells are done, so wait
    //  on the count instead.
    tr_actor_stats_t st;
    int64_t deadline = tr_test_now_ms () + 30000;
    do {
        usleep (1000);
        tr_actor_stats (s_node, "counter", &st);
    } while (st.handled < S_SENDERS * S_PER_SENDER && tr_test_now_ms () < deadline);
    ck_assert_uint_eq (st.handled, S_SENDERS * S_PER_SENDER);
    ck_assert_uint_eq (st.received, S_SENDERS * S_PER_SENDER);
    ck_assert_uint_eq (st.dead_letters, 0);
    ck_assert_uint_eq (st.rejected, 0);
    pthread_mutex_lock (&counter.lock);
    ck_assert_int_eq (counter.out_of_order, 0);
    ck_assert_uint_eq (counter.total, S_SENDERS * S_PER_SENDER);
    pthread_mutex_unlock (&counter.lock);
}
END_TEST

//  --------------------------------------------------------------------------
//  A sender that stops right after sending: its messages still arrive.

static int
s_burst_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    for (uint64_t i = 0; i < 1000; i++) {
        tr_test_body_t b = tr_test_pack_uint (i);
        if (tr_tell (tr_actor_node (self), "probe", b.data, b.size, NULL))
            return -1;
    }
    return tr_reply (msg, NULL, 0);
}

START_TEST (test_sender_stops_after_sending)
{
    tr_behaviour_t burst = { .handle = s_burst_handle };
    tr_spawn_opts_t roomy = { .capacity = 2000 };
    tr_probe_spawn (s_node, "probe", s_probe, &roomy);
    tr_probe_close_gate (s_node, "probe");
    ck_assert_int_eq (tr_spawn (s_node, "burst", &burst, NULL, NULL, NULL), TR_OK);
    tr_msg_t *reply;
    ck_assert_int_eq (tr_ask (s_node, "burst", NULL, 0, 5000, &reply, NULL), TR_OK);
    tr_msg_destroy (&reply);
    ck_assert_int_eq (tr_actor_stop (s_node, "burst", 5000), TR_OK);
    tr_probe_open (s_probe);
    ck_assert (tr_probe_wait (s_probe, 1001, 10000));
    for (uint64_t i = 0; i < 1000; i++)
        ck_assert_uint_eq (s_probe->values [i + 1], i);
}
END_TEST

//  --------------------------------------------------------------------------
//  Senders that keep telling a name whose actor stops and starts again:
//  a sender rings a mailbox that may be closing under it (its pipe to the
//  old socket dying), and must neither crash nor lose count. Every tell
//  that was accepted is either handled or a dead letter.

#define S_CHURN_SENDERS     2
#define S_CHURN_ROUNDS      2000

static atomic_bool s_churn_stop;
static tr_node_t *s_churn_node;
static uint64_t s_churn_accepted [S_CHURN_SENDERS];

static int
s_count_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    atomic_fetch_add ((atomic_uint_fast64_t *) state, 1);
    return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply (msg, NULL, 0): 0;
}

static void *
s_churn_sender (void *arg)
{
    uint64_t *accepted = arg;
    while (!atomic_load (&s_churn_stop)) {
        //  The first sender tells; the second asks, so that its own
        //  socket is read often and learns early of a dying pipe.
        int rc;
        if (accepted == s_churn_accepted) {
            rc = tr_test_tell (s_churn_node, "target", *accepted, NULL);
            usleep (20);            //  the target falls asleep between tells
        }
        else {
            tr_msg_t *reply = NULL;
            rc = tr_ask (s_churn_node, "target", NULL, 0, 5000, &reply, NULL);
            tr_msg_destroy (&reply);
            if (rc == TR_ESTOPPED)
                rc = TR_OK;         //  accepted, then a dead letter
        }
        if (rc == TR_OK)
            (*accepted)++;
        else
        if (rc != TR_ENOACTOR)
            return (void *) 1;
    }
    return NULL;
}

START_TEST (test_target_stops_under_senders)
{
    tr_behaviour_t b = { .handle = s_count_handle };
    tr_spawn_opts_t opts = { .capacity = 100000 };
    atomic_uint_fast64_t handled = 0;
    atomic_store (&s_churn_stop, false);
    //  No spinning: the target sleeps in ZeroMQ whenever it is idle, so
    //  that every tell rings it.
    tr_node_opts_t nopts = { .spin_us = -1 };
    ck_assert_int_eq (tr_node_new (&nopts, &s_churn_node), TR_OK);
    tr_node_stats_t before, after;
    ck_assert_int_eq (tr_node_stats (s_churn_node, &before), TR_OK);
    pthread_t threads [S_CHURN_SENDERS];
    uint64_t *accepted = s_churn_accepted;
    for (int i = 0; i < S_CHURN_SENDERS; i++) {
        accepted [i] = 0;
        pthread_create (&threads [i], NULL, s_churn_sender, &accepted [i]);
    }
    for (int round = 0; round < S_CHURN_ROUNDS; round++) {
        ck_assert_int_eq (tr_spawn (s_churn_node, "target", &b, &handled, &opts, NULL), TR_OK);
        usleep (round % 7 * 50);
        ck_assert_int_eq (tr_actor_stop (s_churn_node, "target", 5000), TR_OK);
    }
    atomic_store (&s_churn_stop, true);
    uint64_t total = 0;
    for (int i = 0; i < S_CHURN_SENDERS; i++) {
        void *failed;
        pthread_join (threads [i], &failed);
        ck_assert_ptr_null (failed);
        total += accepted [i];
    }
    ck_assert_uint_gt (total, 0);
    ck_assert_int_eq (tr_node_stats (s_churn_node, &after), TR_OK);
    ck_assert_uint_eq (atomic_load (&handled) + after.dead_letters - before.dead_letters,
                       total);
    tr_node_destroy (&s_churn_node);
}
END_TEST

//  --------------------------------------------------------------------------

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_send");
    TCase *tc = tcase_create ("send");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_tell_and_ask);
    tcase_add_test (tc, test_empty_body);
    tcase_add_test (tc, test_unknown_name);
    tcase_add_test (tc, test_bad_arguments);
    tcase_add_test (tc, test_ask_timeout);
    tcase_add_test (tc, test_handler_failure_and_no_reply);
    tcase_add_test (tc, test_defer_and_reply_later);
    tcase_add_test (tc, test_reply_to_tell_refused);
    tcase_add_test (tc, test_request_answer_reaches_handler);
    tcase_add_test (tc, test_ask_self);
    tcase_add_test (tc, test_tell_self);
    tcase_add_test (tc, test_full_mailbox_fails_at_once);
    tcase_add_test (tc, test_full_mailbox_waits);
    tcase_add_test (tc, test_priority_order);
    tcase_add_test (tc, test_ttl_expiry);
    tcase_add_test (tc, test_trace_inherited);
    tcase_add_test (tc, test_references);
    tcase_add_test (tc, test_name_moves);
    tcase_add_test (tc, test_many_senders);
    tcase_add_test (tc, test_sender_stops_after_sending);
    tcase_add_test (tc, test_target_stops_under_senders);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
