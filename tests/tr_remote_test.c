/*  tr_remote_test.c - tells and asks between nodes through a real broker
    on 127.0.0.1: both directions, errors that cross (handler failures,
    unknown names), answers to threads that are not actors, order, a
    node that leaves, a node killed with SIGKILL (in a child process),
    and the broker restarted under the nodes' feet.
*/

#include "tr_test.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <zmq.h>

#include "tr_wire.h"

static tr_broker_t *s_broker;
static char s_endpoint [128];

static const tr_behaviour_t *
s_echo (void)
{
    const tr_actor_type_t *type = tr_actor_type_find ("echo");
    ck_assert_ptr_nonnull (type);
    return &type->behaviour;
}

//  A node joined to the test's broker under `id`, once the broker has
//  greeted it (its names are registered right after).
static tr_node_t *
s_node (const char *id)
{
    tr_node_opts_t opts = { .broker = s_endpoint, .node_id = id, .heartbeat_ms = 100 };
    tr_node_t *node = NULL;
    ck_assert_int_eq (tr_node_new (&opts, &node), TR_OK);
    return node;
}

static void
s_start_broker (const char *bind)
{
    tr_broker_opts_t opts = { .bind = bind, .heartbeat_ms = 100 };
    int rc = tr_broker_start (&opts, &s_broker);
    ck_assert_msg (rc == TR_OK, "broker on %s: %s", bind, tr_errname (rc));
    snprintf (s_endpoint, sizeof s_endpoint, "%s", tr_broker_endpoint (s_broker));
}

static void
s_setup (void)
{
    s_start_broker ("tcp://127.0.0.1:*");
}

static void
s_teardown (void)
{
    tr_broker_stop (&s_broker);
}

//  Asks `to` on `node` with a uint body until it answers TR_OK or the
//  time runs out (names take a moment to reach the broker). Returns the
//  last result.
static int
s_ask_until_ok (tr_node_t *node, const char *to, uint64_t value, uint64_t *answer)
{
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    int rc;
    do {
        tr_body_t body = tr_test_pack_uint (value);
        tr_msg_t *reply = NULL;
        rc = tr_ask (node, to, body.data, body.size, 1000, &reply, NULL);
        if (rc == TR_OK) {
            if (answer)
                *answer = tr_test_unpack_uint (tr_msg_body (reply), tr_msg_size (reply));
            tr_msg_destroy (&reply);
            return rc;
        }
        usleep (20 * 1000);
    } while (tr_test_now_ms () < deadline);
    return rc;
}

START_TEST (test_ask_both_ways)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    ck_assert_int_eq (tr_spawn (a, "alpha", s_echo (), NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_spawn (b, "beta", s_echo (), NULL, NULL, NULL), TR_OK);
    uint64_t answer = 0;
    ck_assert_int_eq (s_ask_until_ok (a, "beta", 42, &answer), TR_OK);
    ck_assert_uint_eq (answer, 42);
    ck_assert_int_eq (s_ask_until_ok (b, "alpha", 7, &answer), TR_OK);
    ck_assert_uint_eq (answer, 7);
    //  A name nobody holds fails at once, not at the deadline.
    tr_msg_t *reply = NULL;
    int64_t start = tr_test_now_ms ();
    tr_body_t body = tr_test_pack_uint (1);
    ck_assert_int_eq (tr_ask (a, "nobody", body.data, body.size, 5000, &reply, NULL),
                      TR_ENOACTOR);
    ck_assert_msg (tr_test_now_ms () - start < 2000, "the bounce came late");
    tr_node_destroy (&a);
    tr_node_destroy (&b);
}
END_TEST

//  Fails asked for 0, answers anything else with the body.
static int
s_picky (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    uint64_t v = tr_test_unpack_uint (tr_msg_body (msg), tr_msg_size (msg));
    if (v == 0)
        return -1;
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg));
    return 0;
}

START_TEST (test_errors_cross)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    tr_behaviour_t picky = { .handle = s_picky };
    ck_assert_int_eq (tr_spawn (b, "picky", &picky, NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (s_ask_until_ok (a, "picky", 5, NULL), TR_OK);
    tr_body_t body = tr_test_pack_uint (0);
    tr_msg_t *reply = NULL;
    ck_assert_int_eq (tr_ask (a, "picky", body.data, body.size, 5000, &reply, NULL),
                      TR_EHANDLER);
    tr_node_destroy (&a);
    tr_node_destroy (&b);
}
END_TEST

//  Counts tells and checks they come in order.
typedef struct {
    pthread_mutex_t lock;
    uint64_t next;
    bool in_order;
} s_order_t;

static int
s_order_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_order_t *o = (s_order_t *) state;
    uint64_t v = tr_test_unpack_uint (tr_msg_body (msg), tr_msg_size (msg));
    pthread_mutex_lock (&o->lock);
    if (tr_msg_kind (msg) == TR_KIND_TELL) {
        if (v != o->next)
            o->in_order = false;
        o->next++;
    }
    uint64_t seen = o->next;
    pthread_mutex_unlock (&o->lock);
    if (tr_msg_kind (msg) == TR_KIND_ASK) {
        tr_body_t body = tr_test_pack_uint (seen);
        return tr_reply (msg, body.data, body.size);
    }
    return 0;
}

START_TEST (test_order)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    s_order_t order = { .lock = PTHREAD_MUTEX_INITIALIZER, .in_order = true };
    tr_behaviour_t behaviour = { .handle = s_order_handle };
    tr_spawn_opts_t spawn = { .capacity = 100000 };
    ck_assert_int_eq (tr_spawn (b, "sink", &behaviour, &order, &spawn, NULL), TR_OK);
    ck_assert_int_eq (s_ask_until_ok (a, "sink", 0, NULL), TR_OK);
    //  Below the broker's per-client queue (max_queue, 10,000): past it
    //  the broker bounces tells to a receiver that does not keep up, and
    //  the sender counts them as dead letters (no flow control across the
    //  broker yet).
    const uint64_t n = 5000;
    for (uint64_t i = 0; i < n; i++) {
        tr_body_t body = tr_test_pack_uint (i);
        ck_assert_int_eq (tr_tell (a, "sink", body.data, body.size, NULL), TR_OK);
    }
    //  The ask goes the same way as the tells, so it comes after them.
    uint64_t seen = 0;
    ck_assert_int_eq (s_ask_until_ok (a, "sink", 0, &seen), TR_OK);
    ck_assert_uint_eq (seen, n);
    ck_assert (order.in_order);
    tr_node_destroy (&a);
    tr_node_destroy (&b);
}
END_TEST

//  Bursts that leave a node in batches (SENDS) for several nodes and for
//  a name nobody holds: each sink gets its own tells in order and all of
//  them, each tell to nobody is a dead letter at the sender, and asks in
//  the middle of the bursts are answered.
START_TEST (test_batches_mixed)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    tr_node_t *c = s_node ("node-c");
    s_order_t ob = { .lock = PTHREAD_MUTEX_INITIALIZER, .in_order = true };
    s_order_t oc = { .lock = PTHREAD_MUTEX_INITIALIZER, .in_order = true };
    tr_behaviour_t behaviour = { .handle = s_order_handle };
    tr_spawn_opts_t spawn = { .capacity = 100000 };
    ck_assert_int_eq (tr_spawn (b, "sink-b", &behaviour, &ob, &spawn, NULL), TR_OK);
    ck_assert_int_eq (tr_spawn (c, "sink-c", &behaviour, &oc, &spawn, NULL), TR_OK);
    ck_assert_int_eq (s_ask_until_ok (a, "sink-b", 0, NULL), TR_OK);
    ck_assert_int_eq (s_ask_until_ok (a, "sink-c", 0, NULL), TR_OK);
    tr_node_stats_t before;
    ck_assert_int_eq (tr_node_stats (a, &before), TR_OK);
    const uint64_t n = 3000;
    uint64_t nb = 0, nc = 0, nobody = 0;
    for (uint64_t i = 0; i < n; i++) {
        //  Runs of different lengths for each destination.
        const char *to = (i / 7) % 3 == 0? "sink-c": i % 11 == 5? "nobody": "sink-b";
        uint64_t *count = to [5] == 'c'? &nc: to [0] == 'n'? &nobody: &nb;
        tr_body_t body = tr_test_pack_uint (*count);
        ck_assert_int_eq (tr_tell (a, to, body.data, body.size, NULL), TR_OK);
        (*count)++;
    }
    uint64_t seen = 0;
    ck_assert_int_eq (s_ask_until_ok (a, "sink-b", 0, &seen), TR_OK);
    ck_assert_uint_eq (seen, nb);
    ck_assert_int_eq (s_ask_until_ok (a, "sink-c", 0, &seen), TR_OK);
    ck_assert_uint_eq (seen, nc);
    ck_assert (ob.in_order && oc.in_order);
    ck_assert_uint_gt (nobody, 0);
    //  The bounces come back after the answers at the latest.
    tr_node_stats_t after;
    int64_t deadline = tr_test_now_ms () + 2000 * tr_test_slowdown ();
    do {
        ck_assert_int_eq (tr_node_stats (a, &after), TR_OK);
    } while (after.dead_letters - before.dead_letters < nobody && tr_test_now_ms () < deadline
             && usleep (10000) == 0);
    ck_assert_uint_eq (after.dead_letters - before.dead_letters, nobody);
    tr_node_destroy (&a);
    tr_node_destroy (&b);
    tr_node_destroy (&c);
}
END_TEST

//  Counts the events it gets.
static atomic_int s_events_seen;

static int
s_count_event (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) msg; (void) state;
    atomic_fetch_add (&s_events_seen, 1);
    return 0;
}

//  A broker of 1.1 played by hand: a DELIVERS or EVENTS whose sizes do
//  not add up is dropped whole (and the node keeps serving), a good one
//  delivers every envelope or event in it.
START_TEST (test_delivers_checked)
{
    tr_broker_stop (&s_broker);
    void *ctx = zmq_ctx_new ();
    void *router = zmq_socket (ctx, ZMQ_ROUTER);
    ck_assert_int_eq (zmq_bind (router, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof s_endpoint;
    ck_assert_int_eq (zmq_getsockopt (router, ZMQ_LAST_ENDPOINT, s_endpoint, &len), 0);
    tr_node_t *node = s_node ("node-x");
    s_order_t order = { .lock = PTHREAD_MUTEX_INITIALIZER, .in_order = true };
    tr_behaviour_t behaviour = { .handle = s_order_handle };
    ck_assert_int_eq (tr_spawn (node, "sink", &behaviour, &order, NULL, NULL), TR_OK);
    //  The HELLO, answered as a broker of 1.1 would.
    zmq_msg_t rid, frame;
    zmq_msg_init (&rid);
    zmq_msg_init (&frame);
    int timeout = 5000;
    zmq_setsockopt (router, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    ck_assert_int_ge (zmq_msg_recv (&rid, router, 0), 0);
    ck_assert_int_ge (zmq_msg_recv (&frame, router, 0), 0);
    tr__wire_cmd_t cmd;
    ck_assert_int_eq (tr__wire_parse (zmq_msg_data (&frame), zmq_msg_size (&frame), &cmd), TR_OK);
    ck_assert_int_eq (cmd.verb, TR__V_HELLO);
    uint64_t seq = cmd.seq;
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_OK, seq, 6);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, 1);
    tr__wire_uint (&out, 1);
    tr__wire_str (&out, "fake", 4);
    tr__wire_uint (&out, 1000);
    tr__wire_map (&out, 1);
    tr__wire_str (&out, "max_batch", 9);
    tr__wire_uint (&out, 256);
    zmq_send (router, zmq_msg_data (&rid), zmq_msg_size (&rid), ZMQ_SNDMORE);
    zmq_send (router, out.data, out.size, 0);
    tr__wire_end (&out);
    //  Two tells for sink, as envelopes.
    uint8_t *env [2];
    size_t env_len [2];
    for (int i = 0; i < 2; i++) {
        tr_body_t body = tr_test_pack_uint ((uint64_t) i);
        tr_envelope_t e = { .kind = TR_KIND_TELL, .id = (uint64_t) i + 1, .to = "sink",
                            .to_len = 4, .from = "far", .from_len = 3,
                            .body = (const uint8_t *) body.data, .body_len = body.size };
        ck_assert_int_eq (tr_envelope_encode (&e, &env [i], &env_len [i]), TR_OK);
    }
    uint8_t payload [256];
    memcpy (payload, env [0], env_len [0]);
    memcpy (payload + env_len [0], env [1], env_len [1]);
    size_t total = env_len [0] + env_len [1];
    //  Wrong: the sizes add up to one byte less than the payload.
    for (int good = 0; good < 2; good++) {
        tr__wire_begin (&out, TR__V_DELIVERS, 0, 1);
        tr__wire_array (&out, 2);
        tr__wire_uint (&out, env_len [0]);
        tr__wire_uint (&out, env_len [1] - (good? 0: 1));
        zmq_send (router, zmq_msg_data (&rid), zmq_msg_size (&rid), ZMQ_SNDMORE);
        zmq_send (router, out.data, out.size, ZMQ_SNDMORE);
        zmq_send (router, payload, total, 0);
        tr__wire_end (&out);
    }
    //  Events: the same, and a nil body as msgpack nil.
    tr_behaviour_t counter = { .handle = s_count_event };
    ck_assert_int_eq (tr_spawn (node, "watcher", &counter, NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (node, "app.", "watcher"), TR_OK);
    atomic_store (&s_events_seen, 0);
    for (int good = 0; good < 2; good++) {
        tr__wire_begin (&out, TR__V_EVENTS, 0, 3);
        tr__wire_str (&out, "far", 3);
        tr__wire_array (&out, 3);
        tr__wire_str (&out, "app.a", 5);
        tr__wire_str (&out, "app.b", 5);
        tr__wire_str (&out, "other", 5);
        tr__wire_array (&out, 3);
        tr__wire_uint (&out, 3);
        tr__wire_uint (&out, 1);
        tr__wire_uint (&out, good? 1: 2);
        zmq_send (router, zmq_msg_data (&rid), zmq_msg_size (&rid), ZMQ_SNDMORE);
        zmq_send (router, out.data, out.size, ZMQ_SNDMORE);
        zmq_send (router, "\xa2hi\xc0\x01", 5, 0);
        tr__wire_end (&out);
    }
    //  Only the good batches arrive: both tells, in order, once; and the
    //  two events of the watched prefix.
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    uint64_t next;
    do {
        pthread_mutex_lock (&order.lock);
        next = order.next;
        pthread_mutex_unlock (&order.lock);
    } while (next < 2 && tr_test_now_ms () < deadline && usleep (5000) == 0);
    usleep (100 * 1000);
    pthread_mutex_lock (&order.lock);
    ck_assert_uint_eq (order.next, 2);
    ck_assert (order.in_order);
    pthread_mutex_unlock (&order.lock);
    deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while (atomic_load (&s_events_seen) < 2 && tr_test_now_ms () < deadline)
        usleep (5000);
    usleep (50 * 1000);
    ck_assert_int_eq (atomic_load (&s_events_seen), 2);
    free (env [0]);
    free (env [1]);
    zmq_msg_close (&rid);
    zmq_msg_close (&frame);
    tr_node_destroy (&node);
    zmq_close (router);
    zmq_ctx_term (ctx);
}
END_TEST

START_TEST (test_node_leaves)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    ck_assert_int_eq (tr_spawn (b, "beta", s_echo (), NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (s_ask_until_ok (a, "beta", 1, NULL), TR_OK);
    tr_node_destroy (&b);
    //  Its names went with it; asks now bounce.
    tr_body_t body = tr_test_pack_uint (1);
    tr_msg_t *reply = NULL;
    int rc = TR_OK;
    for (int i = 0; i < 100 && rc != TR_ENOACTOR; i++) {
        rc = tr_ask (a, "beta", body.data, body.size, 1000, &reply, NULL);
        tr_msg_destroy (&reply);
        usleep (10 * 1000);
    }
    ck_assert_int_eq (rc, TR_ENOACTOR);
    //  A new node takes the name over.
    tr_node_t *c = s_node ("node-c");
    ck_assert_int_eq (tr_spawn (c, "beta", s_echo (), NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (s_ask_until_ok (a, "beta", 9, NULL), TR_OK);
    tr_node_destroy (&c);
    tr_node_destroy (&a);
}
END_TEST

//  A handler that takes its time: asked n, sleeps n ms, answers n.
static int
s_slow (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    uint64_t v = tr_test_unpack_uint (tr_msg_body (msg), tr_msg_size (msg));
    usleep ((useconds_t) v * 1000);
    return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg));
}

//  The victim: a node in a process of its own (this program run again
//  with "victim ENDPOINT"), holding 'slowpoke'. Writes one byte to its
//  standard output once its actor is spawned, then waits to be killed.
static int
s_victim_main (const char *endpoint)
{
    snprintf (s_endpoint, sizeof s_endpoint, "%s", endpoint);
    tr_node_opts_t opts = { .broker = s_endpoint, .node_id = "victim", .heartbeat_ms = 100 };
    tr_node_t *v = NULL;
    if (tr_node_new (&opts, &v))
        return 1;
    tr_behaviour_t slow = { .handle = s_slow };
    if (tr_spawn (v, "slowpoke", &slow, NULL, NULL, NULL))
        return 1;
    if (write (1, "x", 1) != 1)
        return 1;
    pause ();
    return 0;
}

START_TEST (test_node_killed)
{
    tr_node_t *a = s_node ("node-a");
    //  Node "victim" runs in another process (exec'd, not just forked: a
    //  fork of this threaded process could inherit held locks), and gets
    //  SIGKILL while an ask to it is pending.
    int ready [2];
    ck_assert_int_eq (pipe (ready), 0);
    pid_t pid = fork ();
    ck_assert_int_ge (pid, 0);
    if (pid == 0) {
        dup2 (ready [1], 1);
        close (ready [0]);
        execl ("/proc/self/exe", "tr_remote_test", "victim", s_endpoint, (char *) NULL);
        _exit (127);
    }
    close (ready [1]);
    char c;
    ck_assert_int_eq (read (ready [0], &c, 1), 1);
    close (ready [0]);
    ck_assert_int_eq (s_ask_until_ok (a, "slowpoke", 1, NULL), TR_OK);
    //  An ask that will still be waiting when the node dies.
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
    tr_body_t body = tr_test_pack_uint (1000);
    tr_msg_t *reply = NULL;
    int64_t start = tr_test_now_ms ();
    int rc = tr_ask (a, "slowpoke", body.data, body.size, 10000, &reply, NULL);
    int64_t took = tr_test_now_ms () - start;
    //  Either the broker already knew (bounce) or it learns within three
    //  heartbeats (100 ms each) and the ask fails with TR_ENODE.
    ck_assert_msg (rc == TR_ENODE || rc == TR_ENOACTOR, "got %s", tr_errname (rc));
    ck_assert_msg (took < 2000 * tr_test_slowdown (), "the ask took %lld ms", (long long) took);
    tr_node_destroy (&a);
}
END_TEST

START_TEST (test_broker_restarts)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    ck_assert_int_eq (tr_spawn (b, "beta", s_echo (), NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (s_ask_until_ok (a, "beta", 1, NULL), TR_OK);
    char endpoint [128];
    snprintf (endpoint, sizeof endpoint, "%s", s_endpoint);
    tr_broker_stop (&s_broker);
    //  Meanwhile an ask waits until its deadline, no longer.
    tr_body_t body = tr_test_pack_uint (2);
    tr_msg_t *reply = NULL;
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (tr_ask (a, "beta", body.data, body.size, 300, &reply, NULL), TR_ETIMEDOUT);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_msg (took >= 290 && took < 2000, "the ask took %lld ms", (long long) took);
    //  A new broker on the same endpoint: both nodes come back and
    //  register again.
    s_start_broker (endpoint);
    ck_assert_int_eq (s_ask_until_ok (a, "beta", 3, NULL), TR_OK);
    tr_node_destroy (&a);
    tr_node_destroy (&b);
}
END_TEST

START_TEST (test_names_unique)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    tr_behaviour_t picky = { .handle = s_picky };
    ck_assert_int_eq (tr_spawn (a, "twin", s_echo (), NULL, NULL, NULL), TR_OK);
    tr_node_t *c = s_node ("node-c");
    ck_assert_int_eq (s_ask_until_ok (c, "twin", 4, NULL), TR_OK);
    //  b's registration of the same name is refused by the broker: asks
    //  from c still reach a's (which echoes; b's would fail 0 too).
    ck_assert_int_eq (tr_spawn (b, "twin", &picky, NULL, NULL, NULL), TR_OK);
    usleep (200 * 1000);
    uint64_t answer = 99;
    ck_assert_int_eq (s_ask_until_ok (c, "twin", 0, &answer), TR_OK);
    ck_assert_uint_eq (answer, 0);
    tr_node_destroy (&c);
    tr_node_destroy (&b);
    tr_node_destroy (&a);
}
END_TEST


//  An event subscriber: counts events and keeps the last topic.
typedef struct {
    pthread_mutex_t lock;
    int count;
    char last [64];
} s_inbox_t;

static int
s_inbox_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_inbox_t *box = (s_inbox_t *) state;
    tr__mp_t mp;
    uint32_t n;
    const char *topic;
    uint32_t len;
    tr__mp_init (&mp, tr_msg_body (msg), tr_msg_size (msg));
    if (tr__mp_array (&mp, &n) || n != 2 || tr__mp_str (&mp, &topic, &len))
        return 0;
    pthread_mutex_lock (&box->lock);
    box->count++;
    snprintf (box->last, sizeof box->last, "%.*s", (int) len, topic);
    pthread_mutex_unlock (&box->lock);
    return 0;
}

static int
s_inbox_count (s_inbox_t *box)
{
    pthread_mutex_lock (&box->lock);
    int n = box->count;
    pthread_mutex_unlock (&box->lock);
    return n;
}

START_TEST (test_events_cross)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    s_inbox_t in_a = { .lock = PTHREAD_MUTEX_INITIALIZER };
    s_inbox_t in_b = { .lock = PTHREAD_MUTEX_INITIALIZER };
    tr_behaviour_t inbox = { .handle = s_inbox_handle };
    ck_assert_int_eq (tr_spawn (a, "inbox-a", &inbox, &in_a, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_spawn (b, "inbox-b", &inbox, &in_b, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (a, "app.", "inbox-a"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (b, "app.", "inbox-b"), TR_OK);
    //  The subscription reaches the broker in a moment: publish until a
    //  first event crosses.
    tr_body_t body = tr_test_pack_uint (1);
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    while (s_inbox_count (&in_a) == 0 && tr_test_now_ms () < deadline) {
        ck_assert_int_eq (tr_event_publish (b, "app.warmup", body.data, body.size, NULL), TR_OK);
        usleep (20 * 1000);
    }
    ck_assert_int_gt (s_inbox_count (&in_a), 0);
    usleep (100 * 1000);
    int before_a = s_inbox_count (&in_a), before_b = s_inbox_count (&in_b);
    //  One event from b: its own subscriber gets it once (not again from
    //  the broker), a's once.
    ck_assert_int_eq (tr_event_publish (b, "app.done", body.data, body.size, NULL), TR_OK);
    deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    while (s_inbox_count (&in_a) == before_a && tr_test_now_ms () < deadline)
        usleep (5 * 1000);
    usleep (200 * 1000);
    ck_assert_int_eq (s_inbox_count (&in_a), before_a + 1);
    ck_assert_int_eq (s_inbox_count (&in_b), before_b + 1);
    ck_assert_str_eq (in_a.last, "app.done");
    //  Other topics do not cross.
    ck_assert_int_eq (tr_event_publish (b, "other.x", body.data, body.size, NULL), TR_OK);
    usleep (200 * 1000);
    ck_assert_int_eq (s_inbox_count (&in_a), before_a + 1);
    //  Nor after unsubscribing.
    ck_assert_int_eq (tr_event_unsubscribe (a, "app.", "inbox-a"), TR_OK);
    usleep (200 * 1000);
    ck_assert_int_eq (tr_event_publish (b, "app.late", body.data, body.size, NULL), TR_OK);
    usleep (200 * 1000);
    ck_assert_int_eq (s_inbox_count (&in_a), before_a + 1);
    tr_node_destroy (&a);
    tr_node_destroy (&b);
}
END_TEST

START_TEST (test_peers)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    ck_assert_int_eq (tr_spawn (b, "beta", s_echo (), NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (s_ask_until_ok (a, "beta", 1, NULL), TR_OK);
    uint8_t *list = NULL;
    size_t size = 0;
    ck_assert_int_eq (tr_node_peers (a, 2000, &list, &size), TR_OK);
    //  An array with both nodes' ids in it.
    tr__mp_t mp;
    uint32_t n;
    tr__mp_init (&mp, list, size);
    ck_assert_int_eq (tr__mp_array (&mp, &n), 0);
    ck_assert_uint_ge (n, 2);
    ck_assert_ptr_nonnull (memmem (list, size, "node-a", 6));
    ck_assert_ptr_nonnull (memmem (list, size, "node-b", 6));
    free (list);
    //  Without a broker there is no one to ask.
    tr_node_t *alone = NULL;
    ck_assert_int_eq (tr_node_new (NULL, &alone), TR_OK);
    ck_assert_int_eq (tr_node_peers (alone, 100, &list, &size), TR_EINVAL);
    tr_node_destroy (&alone);
    tr_node_destroy (&a);
    tr_node_destroy (&b);
}
END_TEST

//  A watcher: keeps the changes it was told, as "KEY@VERSION=VALUE-or-nil".
typedef struct {
    pthread_mutex_t lock;
    char seen [4096];
    int count;
} s_watcher_t;

static int
s_watcher_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_watcher_t *w = (s_watcher_t *) state;
    tr__mp_t mp;
    uint32_t n, key_len;
    const char *key;
    uint64_t version, value = 0;
    tr__mp_init (&mp, tr_msg_body (msg), tr_msg_size (msg));
    if (tr__mp_array (&mp, &n) || n != 3 || tr__mp_str (&mp, &key, &key_len)
    ||  tr__mp_uint (&mp, &version))
        return 0;
    bool nil = tr__mp_peek_nil (&mp);
    if (!nil)
        tr__mp_uint (&mp, &value);
    pthread_mutex_lock (&w->lock);
    size_t len = strlen (w->seen);
    if (nil)
        snprintf (w->seen + len, sizeof w->seen - len, "%.*s=nil ", (int) key_len, key);
    else
        snprintf (w->seen + len, sizeof w->seen - len, "%.*s=%llu ", (int) key_len, key,
                  (unsigned long long) value);
    w->count++;
    pthread_mutex_unlock (&w->lock);
    return 0;
}

static int
s_watcher_count (s_watcher_t *w)
{
    pthread_mutex_lock (&w->lock);
    int n = w->count;
    pthread_mutex_unlock (&w->lock);
    return n;
}

START_TEST (test_watch)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    s_watcher_t w = { .lock = PTHREAD_MUTEX_INITIALIZER };
    tr_behaviour_t behaviour = { .handle = s_watcher_handle };
    ck_assert_int_eq (tr_spawn (a, "watcher", &behaviour, &w, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_scratch_watch (a, "w.", "nobody"), TR_ENOACTOR);
    ck_assert_int_eq (tr_scratch_watch (a, "w.", "watcher"), TR_OK);
    //  The watch reaches the broker in a moment: write until a change
    //  comes through.
    tr_body_t one = tr_test_pack_uint (1);
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    while (s_watcher_count (&w) == 0 && tr_test_now_ms () < deadline) {
        ck_assert_int_eq (tr_scratch_put (b, "w.warm", one.data, one.size, 0, 2000, NULL), TR_OK);
        usleep (20 * 1000);
    }
    ck_assert_int_gt (s_watcher_count (&w), 0);
    usleep (100 * 1000);
    pthread_mutex_lock (&w.lock);
    w.seen [0] = 0;
    w.count = 0;
    pthread_mutex_unlock (&w.lock);
    //  Puts, a delete and a key outside the prefix, in order.
    tr_body_t two = tr_test_pack_uint (2), three = tr_test_pack_uint (3);
    ck_assert_int_eq (tr_scratch_put (b, "w.x", two.data, two.size, 0, 2000, NULL), TR_OK);
    ck_assert_int_eq (tr_scratch_put (b, "other", two.data, two.size, 0, 2000, NULL), TR_OK);
    ck_assert_int_eq (tr_scratch_put (a, "w.y", three.data, three.size, 0, 2000, NULL), TR_OK);
    ck_assert_int_eq (tr_scratch_del (b, "w.x", 2000, NULL), TR_OK);
    deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    while (s_watcher_count (&w) < 3 && tr_test_now_ms () < deadline)
        usleep (5 * 1000);
    usleep (100 * 1000);
    pthread_mutex_lock (&w.lock);
    ck_assert_str_eq (w.seen, "w.x=2 w.y=3 w.x=nil ");
    pthread_mutex_unlock (&w.lock);
    //  Unwatched: no more.
    ck_assert_int_eq (tr_scratch_unwatch (a, "w.", "watcher"), TR_OK);
    usleep (200 * 1000);
    ck_assert_int_eq (tr_scratch_put (b, "w.z", one.data, one.size, 0, 2000, NULL), TR_OK);
    usleep (200 * 1000);
    ck_assert_int_eq (s_watcher_count (&w), 3);
    tr_node_destroy (&a);
    tr_node_destroy (&b);
}
END_TEST

//  Polls a replica until its version reaches `version`.
static bool
s_replica_at (tr_replica_t *r, uint64_t version)
{
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    while (tr_replica_version (r) < version && tr_test_now_ms () < deadline)
        usleep (2 * 1000);
    return tr_replica_version (r) >= version;
}

START_TEST (test_replica)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    tr_body_t one = tr_test_pack_uint (1), two = tr_test_pack_uint (2);
    uint64_t v = 0;
    ck_assert_int_eq (tr_scratch_put (a, "r.1", one.data, one.size, 0, 2000, &v), TR_OK);
    ck_assert_int_eq (tr_scratch_put (a, "r.2", two.data, two.size, 0, 2000, &v), TR_OK);
    ck_assert_int_eq (tr_scratch_put (a, "s.1", two.data, two.size, 0, 2000, &v), TR_OK);
    //  The snapshot: what was there, and nothing outside the prefix.
    tr_replica_t *r = NULL;
    ck_assert_int_eq (tr_replica_new (b, "r.", 5000, &r), TR_OK);
    ck_assert_uint_ge (tr_replica_version (r), v);
    ck_assert_uint_eq (tr_replica_size (r), 2);
    tr_scratch_value_t value;
    ck_assert_int_eq (tr_replica_get (r, "r.1", &value), TR_OK);
    ck_assert_uint_eq (tr_test_unpack_uint (value.data, value.size), 1);
    tr_scratch_value_free (&value);
    ck_assert_int_eq (tr_replica_get (r, "s.1", &value), TR_ENOTFOUND);
    //  Then the changes, numbered after it.
    ck_assert_int_eq (tr_scratch_put (a, "r.3", two.data, two.size, 0, 2000, NULL), TR_OK);
    ck_assert_int_eq (tr_scratch_put (a, "r.1", two.data, two.size, 0, 2000, NULL), TR_OK);
    ck_assert_int_eq (tr_scratch_del (a, "r.2", 2000, &v), TR_OK);
    ck_assert (s_replica_at (r, v));
    ck_assert_uint_eq (tr_replica_size (r), 2);
    ck_assert_int_eq (tr_replica_get (r, "r.1", &value), TR_OK);
    ck_assert_uint_eq (tr_test_unpack_uint (value.data, value.size), 2);
    tr_scratch_value_free (&value);
    ck_assert_int_eq (tr_replica_get (r, "r.2", &value), TR_ENOTFOUND);
    //  Many writes while a second replica starts: it misses none.
    uint64_t last = 0;
    tr_replica_t *r2 = NULL;
    for (int i = 0; i < 200; i++) {
        char key [32];
        snprintf (key, sizeof key, "r.many.%d", i % 20);
        tr_body_t body = tr_test_pack_uint ((uint64_t) i);
        ck_assert_int_eq (tr_scratch_put (a, key, body.data, body.size, 0, 2000, &last), TR_OK);
        if (i == 50)
            ck_assert_int_eq (tr_replica_new (b, "r.", 5000, &r2), TR_OK);
    }
    ck_assert (s_replica_at (r2, last));
    ck_assert (s_replica_at (r, last));
    for (int k = 0; k < 20; k++) {
        char key [32];
        snprintf (key, sizeof key, "r.many.%d", k);
        tr_scratch_value_t x, y;
        ck_assert_int_eq (tr_replica_get (r, key, &x), TR_OK);
        ck_assert_int_eq (tr_replica_get (r2, key, &y), TR_OK);
        ck_assert_uint_eq (tr_test_unpack_uint (x.data, x.size), (uint64_t) (180 + k));
        ck_assert_uint_eq (tr_test_unpack_uint (y.data, y.size), (uint64_t) (180 + k));
        tr_scratch_value_free (&x);
        tr_scratch_value_free (&y);
    }
    tr_replica_destroy (&r);
    tr_replica_destroy (&r2);
    ck_assert_ptr_null (r);
    tr_node_destroy (&a);
    tr_node_destroy (&b);
}
END_TEST

int
main (int argc, char **argv)
{
    signal (SIGPIPE, SIG_IGN);
    if (argc == 3 && strcmp (argv [1], "victim") == 0)
        return s_victim_main (argv [2]);
    Suite *suite = suite_create ("tr_remote");
    TCase *tc = tcase_create ("remote");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_ask_both_ways);
    tcase_add_test (tc, test_errors_cross);
    tcase_add_test (tc, test_order);
    tcase_add_test (tc, test_batches_mixed);
    tcase_add_test (tc, test_delivers_checked);
    tcase_add_test (tc, test_node_leaves);
    tcase_add_test (tc, test_node_killed);
    tcase_add_test (tc, test_broker_restarts);
    tcase_add_test (tc, test_names_unique);
    tcase_add_test (tc, test_events_cross);
    tcase_add_test (tc, test_peers);
    tcase_add_test (tc, test_watch);
    tcase_add_test (tc, test_replica);
    suite_add_tcase (suite, tc);
    SRunner *runner = srunner_create (suite);
    srunner_run_all (runner, CK_NORMAL);
    int failed = srunner_ntests_failed (runner);
    srunner_free (runner);
    return failed? 1: 0;
}
