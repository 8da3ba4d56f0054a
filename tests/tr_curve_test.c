/*  tr_curve_test.c - CURVE between the broker and its clients
    (2-broker.md 2.10), over real sockets on tcp://127.0.0.1.

    Keys are made by tr__curve_keygen in a fresh folder: the broker's,
    alice's and bob's (both in the broker's allow folder) and mallory's
    (not in it). Covered:
      - allowed nodes register names, tell, ask, put and get scratchpad
        keys and receive each other's events;
      - a node with an unlisted key, with the wrong broker key, or
        without CURVE, cannot register a name, send, read or write the
        scratchpad or subscribe: an allowed observer sees none of it and
        the broker's counters show nothing from it (no greeting, name,
        route, write or event);
      - raw DEALER sockets speaking the protocol (no CURVE, an unlisted
        key, a forged key: alice's public key with another secret, the
        wrong server key) get no answer at all, while one with alice's
        keys is greeted;
      - the allow folder read again while the broker runs: a key added
        gets in, a key removed is refused;
      - the broker's own key pair is allowed (no allow folder needed);
      - a secret key file readable or writable by others, or not the
        user's, is refused with TR_EACCES by broker and node;
      - a bind other than loopback without CURVE is refused with
        TR_EACCES before anything is bound; with CURVE it is fine;
      - key files: keygen's modes, no overwrite, errors, and both ways
        with czmq's zcert_load / zcert_save.
*/

#include "tr_test.h"
#include "tr_curve.h"
#include "tr_wire.h"
#include "troupe/tr_broker.h"

#include <czmq.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <zmq.h>

static char s_dir [256];                //  the keys
static char s_allow [300];              //  the broker's allow folder
static tr_broker_t *s_broker;
static char s_endpoint [128];

static int
s_ms (int ms)
{
    return ms * tr_test_slowdown ();
}

//  dir/name
static const char *
s_path (const char *name)
{
    static __thread char buf [4] [600];
    static __thread int next;
    char *path = buf [next++ % 4];
    snprintf (path, sizeof buf [0], "%s/%s", s_dir, name);
    return path;
}

static void
s_copy (const char *from, const char *to)
{
    char data [4096];
    FILE *in = fopen (from, "rb");
    ck_assert_ptr_nonnull (in);
    size_t n = fread (data, 1, sizeof data, in);
    fclose (in);
    FILE *out = fopen (to, "wb");
    ck_assert_ptr_nonnull (out);
    ck_assert_uint_eq (fwrite (data, 1, n, out), n);
    fclose (out);
}

static void
s_keygen (const char *name)
{
    char secret [400], public [400];
    ck_assert_int_eq (tr__curve_keygen (s_dir, name, secret, public, sizeof secret), TR_OK);
}

static void
s_allow_key (const char *name)
{
    char from [300], to [400];
    snprintf (from, sizeof from, "%s.public", name);
    snprintf (to, sizeof to, "%s/%s.public", s_allow, name);
    s_copy (s_path (from), to);
}

static void
s_setup (void)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/tr_curve_test.XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (s_dir));
    snprintf (s_allow, sizeof s_allow, "%s/allow", s_dir);
    ck_assert_int_eq (mkdir (s_allow, 0700), 0);
    s_keygen ("broker");
    s_keygen ("alice");
    s_keygen ("bob");
    s_keygen ("mallory");
    s_allow_key ("alice");
    s_allow_key ("bob");
}

static void
s_teardown (void)
{
    tr_broker_stop (&s_broker);
    char cmd [300];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    ck_assert_int_eq (system (cmd), 0);
}

static void
s_start_broker (const char *allow)
{
    tr_broker_opts_t opts = {
        .bind = "tcp://127.0.0.1:*", .heartbeat_ms = 100,
        .curve_secret_file = s_path ("broker.secret"), .curve_allow_dir = allow
    };
    int rc = tr_broker_start (&opts, &s_broker);
    ck_assert_msg (rc == TR_OK, "broker: %s", tr_errname (rc));
    snprintf (s_endpoint, sizeof s_endpoint, "%s", tr_broker_endpoint (s_broker));
}

static tr_broker_stats_t
s_stats (void)
{
    tr_broker_stats_t stats;
    ck_assert_int_eq (tr_broker_stats (s_broker, &stats), TR_OK);
    return stats;
}

//  A node on the broker with this secret key file and broker key file
//  (NULL, NULL: no CURVE).
static tr_node_t *
s_node (const char *id, const char *secret, const char *server)
{
    tr_node_opts_t opts = {
        .broker = s_endpoint, .node_id = id, .heartbeat_ms = 100,
        .curve_secret_file = secret? s_path (secret): NULL,
        .curve_server_public_file = server? s_path (server): NULL
    };
    tr_node_t *node = NULL;
    int rc = tr_node_new (&opts, &node);
    ck_assert_msg (rc == TR_OK, "node %s: %s", id, tr_errname (rc));
    return node;
}

//  --------------------------------------------------------------------------
//  Actors: an echo, and a counter of whatever it receives.

static const tr_behaviour_t *
s_echo (void)
{
    const tr_actor_type_t *type = tr_actor_type_find ("echo");
    ck_assert_ptr_nonnull (type);
    return &type->behaviour;
}

static int
s_count_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) msg;
    atomic_fetch_add ((atomic_int *) state, 1);
    return 0;
}

static const tr_behaviour_t s_counter = { .handle = s_count_handle };

static void
s_spawn_counter (tr_node_t *node, const char *name, atomic_int *count)
{
    ck_assert_int_eq (tr_spawn (node, name, &s_counter, count, NULL, NULL), TR_OK);
}

static bool
s_positive (void *arg)
{
    return atomic_load ((atomic_int *) arg) > 0;
}

//  Asks until TR_OK or the time runs out (names take a moment to reach
//  the broker). Returns the last result.
static int
s_ask_until_ok (tr_node_t *node, const char *to)
{
    int64_t deadline = tr_test_now_ms () + s_ms (5000);
    int rc;
    do {
        tr_body_t body = tr_test_pack_uint (7);
        tr_msg_t *reply = NULL;
        rc = tr_ask (node, to, body.data, body.size, 1000, &reply, NULL);
        tr_msg_destroy (&reply);
        if (rc == TR_OK)
            return rc;
        usleep (20 * 1000);
    } while (tr_test_now_ms () < deadline);
    return rc;
}

//  Publishes on `topic` from `node` until `count` is positive.
static bool
s_publish_until_seen (tr_node_t *node, const char *topic, atomic_int *count)
{
    int64_t deadline = tr_test_now_ms () + s_ms (5000);
    while (tr_test_now_ms () < deadline) {
        tr_body_t body = tr_test_pack_uint (1);
        ck_assert_int_eq (tr_event_publish (node, topic, body.data, body.size, NULL), TR_OK);
        if (tr_test_wait_until (s_positive, count, 50))
            return true;
    }
    return false;
}

//  --------------------------------------------------------------------------

START_TEST (test_allowed_nodes)
{
    s_start_broker (s_allow);
    tr_node_t *alice = s_node ("alice", "alice.secret", "broker.public");
    tr_node_t *bob = s_node ("bob", "bob.secret", "broker.public");
    ck_assert_int_eq (tr_spawn (alice, "echo-a", s_echo (), NULL, NULL, NULL), TR_OK);
    atomic_int told = 0, news = 0;
    s_spawn_counter (alice, "inbox-a", &told);
    s_spawn_counter (bob, "news-b", &news);
    ck_assert_int_eq (tr_event_subscribe (bob, "news.", "news-b"), TR_OK);

    //  Names, asks and tells through the broker.
    ck_assert_int_eq (s_ask_until_ok (bob, "echo-a"), TR_OK);
    tr_body_t body = tr_test_pack_uint (1);
    ck_assert_int_eq (tr_tell (bob, "inbox-a", body.data, body.size, NULL), TR_OK);
    ck_assert (tr_test_wait_until (s_positive, &told, s_ms (2000)));

    //  The scratchpad, both ways.
    uint64_t version = 0;
    ck_assert_int_eq (tr_scratch_put (alice, "k", body.data, body.size, 0, s_ms (2000),
                                      &version), TR_OK);
    tr_scratch_value_t value;
    ck_assert_int_eq (tr_scratch_get (bob, "k", s_ms (2000), &value), TR_OK);
    ck_assert_uint_eq (value.version, version);
    tr_scratch_value_free (&value);

    //  Events: bob's subscription reached the broker.
    ck_assert (s_publish_until_seen (alice, "news.today", &news));

    tr_broker_stats_t stats = s_stats ();
    ck_assert_uint_ge (stats.auth_allowed, 2);
    ck_assert_uint_eq (stats.auth_refused, 0);
    ck_assert_uint_eq (stats.clients, 2);
    ck_assert_uint_ge (stats.kv_writes, 1);
    tr_node_destroy (&alice);
    tr_node_destroy (&bob);
}
END_TEST

//  A node that must not get in tries every verb; the allowed observer
//  and the broker's counters must see none of it.
static void
s_refused (const char *id, const char *secret, const char *server, bool zap_refusal)
{
    tr_node_t *bob = s_node ("bob", "bob.secret", "broker.public");
    atomic_int news = 0, fake = 0, inbox = 0;
    s_spawn_counter (bob, "news-b", &news);
    s_spawn_counter (bob, "fake-b", &fake);
    s_spawn_counter (bob, "inbox-b", &inbox);
    ck_assert_int_eq (tr_event_subscribe (bob, "news.real", "news-b"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (bob, "news.fake", "fake-b"), TR_OK);
    tr_body_t body = tr_test_pack_uint (1);
    ck_assert_int_eq (tr_scratch_put (bob, "mine", body.data, body.size, 0, s_ms (2000), NULL),
                      TR_OK);
    tr_broker_stats_t before = s_stats ();

    tr_node_t *bad = s_node (id, secret, server);
    atomic_int heard = 0;
    //  Register a name and subscribe (both only ever reach the broker
    //  through the link).
    s_spawn_counter (bad, "intruder", &heard);
    ck_assert_int_eq (tr_event_subscribe (bad, "news.real", "intruder"), TR_OK);
    //  Send: a tell is held for the broker that never lets it through;
    //  an ask times out.
    tr_tell (bad, "inbox-b", body.data, body.size, NULL);
    tr_msg_t *reply = NULL;
    ck_assert_int_eq (tr_ask (bad, "inbox-b", body.data, body.size, s_ms (300), &reply, NULL),
                      TR_ETIMEDOUT);
    //  The scratchpad: neither written nor read.
    ck_assert_int_ne (tr_scratch_put (bad, "evil", body.data, body.size, 0, s_ms (300), NULL),
                      TR_OK);
    ck_assert_int_ne (tr_scratch_put (bad, "mine", body.data, body.size, 0, s_ms (300), NULL),
                      TR_OK);
    tr_scratch_value_t value;
    ck_assert_int_ne (tr_scratch_get (bad, "mine", s_ms (300), &value), TR_OK);
    uint8_t *list = NULL;
    size_t size = 0;
    ck_assert_int_ne (tr_scratch_list (bad, "", s_ms (300), &list, &size), TR_OK);
    //  Events, out and in.
    for (int i = 0; i < 5; i++)
        tr_event_publish (bad, "news.fake", body.data, body.size, NULL);
    //  An allowed publisher is heard by bob, never by the intruder.
    tr_node_t *alice = s_node ("alice", "alice.secret", "broker.public");
    ck_assert (s_publish_until_seen (alice, "news.real", &news));
    usleep ((useconds_t) s_ms (300) * 1000);

    //  The observer saw nothing from it.
    int told = atomic_load (&inbox), intruder_heard = atomic_load (&heard);
    int fakes = atomic_load (&fake);
    ck_assert_int_eq (told, 0);
    ck_assert_int_eq (intruder_heard, 0);
    ck_assert_int_eq (fakes, 0);
    ck_assert_int_eq (tr_ask (bob, "intruder", body.data, body.size, s_ms (2000), &reply,
                              NULL), TR_ENOACTOR);
    ck_assert_int_eq (tr_scratch_get (bob, "evil", s_ms (2000), &value), TR_ENOTFOUND);
    ck_assert_int_eq (tr_scratch_get (bob, "mine", s_ms (2000), &value), TR_OK);
    ck_assert_uint_eq (value.version, before.kv_version);
    tr_scratch_value_free (&value);

    //  The broker: alice joined, and nothing else happened.
    tr_broker_stats_t after = s_stats ();
    ck_assert_uint_eq (after.joined, before.joined + 1);
    ck_assert_uint_eq (after.clients, 2);
    ck_assert_uint_eq (after.names, before.names + 1);   //  alice's reply name
    ck_assert_uint_eq (after.kv_writes, before.kv_writes);
    ck_assert_uint_eq (after.kv_version, before.kv_version);
    ck_assert_uint_eq (after.bounced, before.bounced + 1);   //  bob's ask of "intruder"
    ck_assert_uint_eq (after.malformed, before.malformed);
    ck_assert_uint_eq (after.refused, before.refused + 1);   //  bob's get of "evil"
    ck_assert_uint_eq (after.auth_allowed, before.auth_allowed + 1);
    if (zap_refusal)
        ck_assert_uint_gt (after.auth_refused, before.auth_refused);
    else
        ck_assert_uint_eq (after.auth_refused, before.auth_refused);
    tr_node_destroy (&bad);
    tr_node_destroy (&alice);
    tr_node_destroy (&bob);
}

START_TEST (test_unlisted_key)
{
    s_start_broker (s_allow);
    s_refused ("mallory", "mallory.secret", "broker.public", true);
}
END_TEST

START_TEST (test_wrong_server_key)
{
    s_start_broker (s_allow);
    //  alice's own key, but she takes bob for the broker: the broker
    //  cannot read her handshake.
    s_refused ("alice-2", "alice.secret", "bob.public", false);
}
END_TEST

START_TEST (test_no_curve)
{
    s_start_broker (s_allow);
    s_refused ("plain", NULL, NULL, false);
}
END_TEST

//  --------------------------------------------------------------------------
//  Raw sockets: no greeting, no answer to anything.

typedef struct {
    const char *public_txt, *secret_txt, *server_txt;
} s_keys_t;

static void *
s_dealer (void *ctx, const s_keys_t *keys)
{
    void *sock = zmq_socket (ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    if (keys) {
        ck_assert_int_eq (zmq_setsockopt (sock, ZMQ_CURVE_SERVERKEY, keys->server_txt, 40), 0);
        ck_assert_int_eq (zmq_setsockopt (sock, ZMQ_CURVE_PUBLICKEY, keys->public_txt, 40), 0);
        ck_assert_int_eq (zmq_setsockopt (sock, ZMQ_CURVE_SECRETKEY, keys->secret_txt, 40), 0);
    }
    ck_assert_int_eq (zmq_connect (sock, s_endpoint), 0);
    return sock;
}

static void
s_put (void *sock, tr__wire_out_t *out, const void *payload, size_t size)
{
    ck_assert (!out->failed);
    zmq_send (sock, out->data, out->size, (payload? ZMQ_SNDMORE: 0) | ZMQ_DONTWAIT);
    if (payload)
        zmq_send (sock, payload, size, ZMQ_DONTWAIT);
    tr__wire_end (out);
}

static void
s_cmd (void *sock, int verb, uint64_t seq, const char *arg, const void *payload, size_t size)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, verb, seq, arg? 1: 0);
    if (arg)
        tr__wire_str (&out, arg, strlen (arg));
    s_put (sock, &out, payload, size);
}

static void
s_hello (void *sock, const char *id)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_HELLO, 1, 6);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, TR__WIRE_MAJOR);
    tr__wire_uint (&out, TR__WIRE_MINOR);
    tr__wire_str (&out, id, strlen (id));
    tr__wire_str (&out, "client", 6);
    tr__wire_uint (&out, 60000);
    s_put (sock, &out, NULL, 0);
}

//  Every verb a client could use to get in; KV_PUT with a value.
static void
s_try_everything (void *sock, const char *id)
{
    s_hello (sock, id);
    s_cmd (sock, TR__V_REGISTER, 2, "stolen", NULL, 0);
    s_cmd (sock, TR__V_SEND, 0, "inbox", "\x90", 1);
    uint8_t value = 0x2a;
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_PUT, 3, 2);
    tr__wire_str (&out, "evil", 4);
    tr__wire_uint (&out, 0);
    s_put (sock, &out, &value, 1);
    s_cmd (sock, TR__V_KV_GET, 4, "evil", NULL, 0);
    s_cmd (sock, TR__V_SUB, 5, "", NULL, 0);
    s_cmd (sock, TR__V_PUB, 0, "news.raw", "\x01", 1);
}

//  True if anything at all comes within timeout_ms.
static bool
s_heard (void *sock, int timeout_ms)
{
    zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
    return zmq_poll (&item, 1, timeout_ms) > 0;
}

START_TEST (test_raw_clients)
{
    s_start_broker (s_allow);
    char broker_pub [TR__CURVE_TXT], alice_pub [TR__CURVE_TXT], alice_sec [TR__CURVE_TXT];
    char mallory_pub [TR__CURVE_TXT], mallory_sec [TR__CURVE_TXT], bob_pub [TR__CURVE_TXT];
    ck_assert_int_eq (tr__curve_public_load ("test", s_path ("broker.public"), broker_pub),
                      TR_OK);
    ck_assert_int_eq (tr__curve_public_load ("test", s_path ("bob.public"), bob_pub), TR_OK);
    ck_assert_int_eq (tr__curve_secret_load ("test", s_path ("alice.secret"), alice_pub,
                                             alice_sec), TR_OK);
    ck_assert_int_eq (tr__curve_secret_load ("test", s_path ("mallory.secret"), mallory_pub,
                                             mallory_sec), TR_OK);
    void *ctx = zmq_ctx_new ();
    s_keys_t unlisted = { mallory_pub, mallory_sec, broker_pub };
    s_keys_t forged = { alice_pub, mallory_sec, broker_pub };
    s_keys_t wrong_server = { alice_pub, alice_sec, bob_pub };
    void *socks [4] = {
        s_dealer (ctx, NULL), s_dealer (ctx, &unlisted), s_dealer (ctx, &forged),
        s_dealer (ctx, &wrong_server)
    };
    for (int i = 0; i < 4; i++) {
        char id [32];
        snprintf (id, sizeof id, "raw-%d", i);
        s_try_everything (socks [i], id);
    }
    for (int i = 0; i < 4; i++)
        ck_assert_msg (!s_heard (socks [i], i? 50: s_ms (1000)), "raw client %d was answered",
                       i);
    tr_broker_stats_t stats = s_stats ();
    ck_assert_uint_eq (stats.joined, 0);
    ck_assert_uint_eq (stats.names, 0);
    ck_assert_uint_eq (stats.routed + stats.bounced, 0);
    ck_assert_uint_eq (stats.kv_writes, 0);
    ck_assert_uint_eq (stats.kv_version, 0);
    ck_assert_uint_eq (stats.events, 0);
    ck_assert_uint_eq (stats.malformed + stats.refused, 0);
    ck_assert_uint_eq (stats.auth_allowed, 0);
    ck_assert_uint_ge (stats.auth_refused, 1);          //  mallory, at least
    for (int i = 0; i < 4; i++)
        zmq_close (socks [i]);

    //  The control: alice's real keys are greeted.
    s_keys_t good = { alice_pub, alice_sec, broker_pub };
    void *sock = s_dealer (ctx, &good);
    s_hello (sock, "raw-alice");
    ck_assert (s_heard (sock, s_ms (2000)));
    char frame [256];
    int n = zmq_recv (sock, frame, sizeof frame, 0);
    ck_assert_int_gt (n, 0);
    tr__wire_cmd_t cmd;
    ck_assert_int_eq (tr__wire_parse (frame, (size_t) n, &cmd), TR_OK);
    ck_assert_int_eq (cmd.verb, TR__V_OK);
    ck_assert_uint_eq (s_stats ().joined, 1);
    zmq_close (sock);
    zmq_ctx_term (ctx);
}
END_TEST

//  --------------------------------------------------------------------------

static bool
s_joined (void *arg)
{
    return s_stats ().joined >= (uint64_t) (uintptr_t) arg;
}

START_TEST (test_allow_folder_live)
{
    s_start_broker (s_allow);
    //  mallory is refused...
    tr_node_t *node = s_node ("mallory", "mallory.secret", "broker.public");
    ck_assert (!tr_test_wait_until (s_joined, (void *) 1, s_ms (500)));
    ck_assert_uint_gt (s_stats ().auth_refused, 0);
    tr_node_destroy (&node);
    //  ... until her key is in the folder (read again within a second).
    s_allow_key ("mallory");
    node = s_node ("mallory", "mallory.secret", "broker.public");
    ck_assert (tr_test_wait_until (s_joined, (void *) 1, s_ms (5000)));
    tr_node_destroy (&node);
    //  Removed, she is refused again (a connection already made stays).
    char path [400];
    snprintf (path, sizeof path, "%s/mallory.public", s_allow);
    ck_assert_int_eq (unlink (path), 0);
    usleep (1100 * 1000);
    node = s_node ("mallory-2", "mallory.secret", "broker.public");
    ck_assert (!tr_test_wait_until (s_joined, (void *) 2, s_ms (1000)));
    tr_node_destroy (&node);
}
END_TEST

START_TEST (test_own_key_without_allow_folder)
{
    s_start_broker (NULL);
    tr_node_t *own = s_node ("own", "broker.secret", "broker.public");
    ck_assert (tr_test_wait_until (s_joined, (void *) 1, s_ms (5000)));
    tr_node_t *alice = s_node ("alice", "alice.secret", "broker.public");
    ck_assert (!tr_test_wait_until (s_joined, (void *) 2, s_ms (500)));
    tr_node_destroy (&alice);
    tr_node_destroy (&own);
}
END_TEST

//  --------------------------------------------------------------------------
//  Permissions and endpoints

static int
s_try_broker (const char *bind, const char *secret, const char *allow)
{
    tr_broker_opts_t opts = {
        .bind = bind, .curve_secret_file = secret? s_path (secret): NULL,
        .curve_allow_dir = allow
    };
    tr_broker_t *broker = NULL;
    int rc = tr_broker_start (&opts, &broker);
    tr_broker_stop (&broker);
    return rc;
}

static int
s_try_node (const char *secret, const char *server)
{
    tr_node_opts_t opts = {
        .broker = "tcp://127.0.0.1:1", .curve_secret_file = secret? s_path (secret): NULL,
        .curve_server_public_file = server? s_path (server): NULL
    };
    tr_node_t *node = NULL;
    int rc = tr_node_new (&opts, &node);
    tr_node_destroy (&node);
    return rc;
}

START_TEST (test_secret_file_permissions)
{
    static const mode_t unsafe [] = { 0644, 0640, 0604, 0620, 0602, 0610 };
    for (size_t i = 0; i < sizeof unsafe / sizeof unsafe [0]; i++) {
        ck_assert_int_eq (chmod (s_path ("broker.secret"), unsafe [i]), 0);
        ck_assert_int_eq (chmod (s_path ("alice.secret"), unsafe [i]), 0);
        ck_assert_int_eq (s_try_broker ("tcp://127.0.0.1:*", "broker.secret", s_allow),
                          TR_EACCES);
        ck_assert_int_eq (s_try_node ("alice.secret", "broker.public"), TR_EACCES);
    }
    ck_assert_int_eq (chmod (s_path ("broker.secret"), 0400), 0);
    ck_assert_int_eq (chmod (s_path ("alice.secret"), 0400), 0);
    ck_assert_int_eq (s_try_broker ("tcp://127.0.0.1:*", "broker.secret", s_allow), TR_OK);
    ck_assert_int_eq (s_try_node ("alice.secret", "broker.public"), TR_OK);
    //  A public key file may be read by anyone.
    ck_assert_int_eq (chmod (s_path ("broker.public"), 0644), 0);
    ck_assert_int_eq (s_try_node ("alice.secret", "broker.public"), TR_OK);
    //  Not the user's: refused (only root can give a file away).
    if (geteuid () == 0) {
        ck_assert_int_eq (chown (s_path ("alice.secret"), 12345, (gid_t) -1), 0);
        ck_assert_int_eq (s_try_node ("alice.secret", "broker.public"), TR_EACCES);
        ck_assert_int_eq (chown (s_path ("broker.secret"), 12345, (gid_t) -1), 0);
        ck_assert_int_eq (s_try_broker ("tcp://127.0.0.1:*", "broker.secret", s_allow),
                          TR_EACCES);
    }
    //  The other errors.
    ck_assert_int_eq (s_try_node ("nobody.secret", "broker.public"), TR_ENOTFOUND);
    ck_assert_int_eq (s_try_node ("alice.secret", NULL), TR_EINVAL);
    ck_assert_int_eq (s_try_node (NULL, "broker.public"), TR_EINVAL);
    ck_assert_int_eq (chmod (s_path ("bob.public"), 0600), 0);
    ck_assert_int_eq (s_try_node ("bob.public", "broker.public"), TR_EMALFORMED);
    ck_assert_int_eq (s_try_broker ("tcp://127.0.0.1:*", "mallory.secret", "/nonexistent"),
                      TR_ENOTFOUND);
}
END_TEST

START_TEST (test_non_loopback_needs_curve)
{
    ck_assert_int_eq (s_try_broker ("tcp://0.0.0.0:*", NULL, NULL), TR_EACCES);
    ck_assert_int_eq (s_try_broker ("tcp://*:*", NULL, NULL), TR_EACCES);
    ck_assert_int_eq (s_try_broker ("tcp://lo:*", NULL, NULL), TR_EACCES);
    //  An allow folder alone is no CURVE.
    ck_assert_int_eq (s_try_broker ("tcp://127.0.0.1:*", NULL, s_allow), TR_EINVAL);
    //  Refused before binding: the port stays free.
    tr_broker_opts_t opts = { .bind = "tcp://127.0.0.1:*" };
    tr_broker_t *probe = NULL;
    ck_assert_int_eq (tr_broker_start (&opts, &probe), TR_OK);
    char port_endpoint [128];
    snprintf (port_endpoint, sizeof port_endpoint, "tcp://0.0.0.0:%s",
              strrchr (tr_broker_endpoint (probe), ':') + 1);
    tr_broker_stop (&probe);
    ck_assert_int_eq (s_try_broker (port_endpoint, NULL, NULL), TR_EACCES);
    //  Loopback, ipc and inproc need no CURVE; anything with CURVE is fine.
    ck_assert_int_eq (s_try_broker ("tcp://127.0.0.1:*", NULL, NULL), TR_OK);
    char ipc [400];
    snprintf (ipc, sizeof ipc, "ipc://%s/broker.sock", s_dir);
    ck_assert_int_eq (s_try_broker (ipc, NULL, NULL), TR_OK);
    ck_assert_int_eq (s_try_broker ("tcp://0.0.0.0:*", "broker.secret", s_allow), TR_OK);

    ck_assert (tr__curve_endpoint_local ("tcp://127.0.0.1:7700"));
    ck_assert (tr__curve_endpoint_local ("tcp://127.1.2.3:*"));
    ck_assert (tr__curve_endpoint_local ("tcp://[::1]:7700"));
    ck_assert (tr__curve_endpoint_local ("tcp://localhost:7700"));
    ck_assert (tr__curve_endpoint_local ("ipc:///tmp/x"));
    ck_assert (tr__curve_endpoint_local ("inproc://x"));
    ck_assert (!tr__curve_endpoint_local ("tcp://10.0.0.1:7700"));
    ck_assert (!tr__curve_endpoint_local ("tcp://127.0.0.1.evil.com:7700"));
    ck_assert (!tr__curve_endpoint_local ("tcp://127.0.0.1x:7700"));
    ck_assert (!tr__curve_endpoint_local ("tcp://[::]:7700"));
    ck_assert (!tr__curve_endpoint_local ("tcp://eth0:7700"));
    ck_assert (!tr__curve_endpoint_local ("tcp://127.0.0.1"));
    ck_assert (!tr__curve_endpoint_local ("ws://127.0.0.1:7700"));
    ck_assert (!tr__curve_endpoint_local ("pgm://127.0.0.1;239.0.0.1:7700"));
    ck_assert (!tr__curve_endpoint_local (NULL));
}
END_TEST

//  --------------------------------------------------------------------------
//  Key files

static void
s_write_text (const char *path, mode_t mode, const char *text)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
    ck_assert_int_eq (chmod (path, mode), 0);
}

START_TEST (test_key_files)
{
    struct stat st;
    ck_assert_int_eq (stat (s_path ("alice.secret"), &st), 0);
    ck_assert_uint_eq (st.st_mode & 07777, 0600);
    ck_assert_int_eq (stat (s_path ("alice.public"), &st), 0);
    ck_assert_uint_eq (st.st_mode & 07777, 0644);
    //  No overwrite, of either file.
    char secret [400], public [400];
    ck_assert_int_eq (tr__curve_keygen (s_dir, "alice", secret, public, sizeof secret),
                      TR_EEXIST);
    ck_assert_int_eq (unlink (s_path ("bob.secret")), 0);
    ck_assert_int_eq (tr__curve_keygen (s_dir, "bob", secret, public, sizeof secret),
                      TR_EEXIST);
    ck_assert_int_eq (stat (s_path ("bob.secret"), &st), -1);
    ck_assert_int_eq (tr__curve_keygen (s_dir, "../x", secret, public, sizeof secret),
                      TR_EINVAL);
    ck_assert_int_eq (tr__curve_keygen (s_dir, ".x", secret, public, sizeof secret),
                      TR_EINVAL);
    ck_assert_int_eq (tr__curve_keygen ("/nonexistent", "x", secret, public, sizeof secret),
                      TR_ENOTFOUND);

    //  czmq reads ours...
    char pub [TR__CURVE_TXT], sec [TR__CURVE_TXT];
    ck_assert_int_eq (tr__curve_secret_load ("test", s_path ("alice.secret"), pub, sec),
                      TR_OK);
    zcert_t *cert = zcert_load (s_path ("alice.secret"));
    ck_assert_ptr_nonnull (cert);
    ck_assert_str_eq (zcert_public_txt (cert), pub);
    ck_assert_str_eq (zcert_secret_txt (cert), sec);
    ck_assert_str_eq (zcert_meta (cert, "name"), "alice");
    zcert_destroy (&cert);
    //  ... and we read czmq's (NAME public, NAME_secret both; 0600).
    cert = zcert_new ();
    ck_assert_int_eq (zcert_save (cert, s_path ("czmq")), 0);
    ck_assert_int_eq (chmod (s_path ("czmq_secret"), 0600), 0);
    ck_assert_int_eq (tr__curve_secret_load ("test", s_path ("czmq_secret"), pub, sec), TR_OK);
    ck_assert_str_eq (pub, zcert_public_txt (cert));
    ck_assert_str_eq (sec, zcert_secret_txt (cert));
    ck_assert_int_eq (tr__curve_public_load ("test", s_path ("czmq"), pub), TR_OK);
    ck_assert_str_eq (pub, zcert_public_txt (cert));
    zcert_destroy (&cert);

    //  Malformed files.
    const char *good_pub = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    s_write_text (s_path ("empty.secret"), 0600, "");
    s_write_text (s_path ("short.secret"), 0600, "curve\n    secret-key = \"abc\"\n");
    s_write_text (s_path ("public-only.secret"), 0600, "curve\n    public-key = \"rq:rM>}U?@"
                  "Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n");
    s_write_text (s_path ("other-section.secret"), 0600, "metadata\n    secret-key = "
                  "\"JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6\"\n");
    s_write_text (s_path ("twice.public"), 0644, "curve\n    public-key = \"rq:rM>}U?@Lns47E1"
                  "%kR.o@n%FcmmsL/@{H8]yf7\"\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%Fcm"
                  "msL/@{H8]yf7\"\n");
    s_write_text (s_path ("unquoted.public"), 0644, "# comment\ncurve\n    public-key = "
                  "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\n");
    ck_assert_int_eq (tr__curve_secret_load ("test", s_path ("empty.secret"), pub, sec),
                      TR_EMALFORMED);
    ck_assert_int_eq (tr__curve_secret_load ("test", s_path ("short.secret"), pub, sec),
                      TR_EMALFORMED);
    ck_assert_int_eq (tr__curve_secret_load ("test", s_path ("public-only.secret"), pub, sec),
                      TR_EMALFORMED);
    ck_assert_int_eq (tr__curve_secret_load ("test", s_path ("other-section.secret"), pub,
                                             sec), TR_EMALFORMED);
    ck_assert_int_eq (tr__curve_public_load ("test", s_path ("twice.public"), pub),
                      TR_EMALFORMED);
    ck_assert_int_eq (tr__curve_public_load ("test", s_path ("unquoted.public"), pub), TR_OK);
    ck_assert_str_eq (pub, good_pub);
    ck_assert_int_eq (tr__curve_public_load ("test", s_dir, pub), TR_EMALFORMED);

    //  A secret file whose public key is another's.
    char alice_pub [TR__CURVE_TXT], mallory_pub [TR__CURVE_TXT], mallory_sec [TR__CURVE_TXT];
    ck_assert_int_eq (tr__curve_public_load ("test", s_path ("alice.public"), alice_pub),
                      TR_OK);
    ck_assert_int_eq (tr__curve_secret_load ("test", s_path ("mallory.secret"), mallory_pub,
                                             mallory_sec), TR_OK);
    char text [512];
    snprintf (text, sizeof text, "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n",
              alice_pub, mallory_sec);
    s_write_text (s_path ("mixed.secret"), 0600, text);
    ck_assert_int_eq (tr__curve_secret_load ("test", s_path ("mixed.secret"), pub, sec),
                      TR_EMALFORMED);

    //  The allow folder: key files only, dot files skipped.
    s_write_text (s_path ("allow/README"), 0644, "not a key\n");
    s_copy (s_path ("mallory.public"), s_path ("allow/.mallory.public"));
    tr__curve_keys_t *keys = NULL;
    ck_assert_int_eq (tr__curve_keys_load (s_allow, true, &keys), TR_OK);
    ck_assert_uint_eq (tr__curve_keys_count (keys), 2);
    uint8_t bin [32];
    zmq_z85_decode (bin, alice_pub);
    ck_assert (tr__curve_keys_has (keys, bin));
    zmq_z85_decode (bin, mallory_pub);
    ck_assert (!tr__curve_keys_has (keys, bin));
    tr__curve_keys_destroy (&keys);
    ck_assert_ptr_null (keys);
    ck_assert_int_eq (tr__curve_keys_load ("/nonexistent", false, &keys), TR_ENOTFOUND);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_curve");
    TCase *tc = tcase_create ("curve");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_allowed_nodes);
    tcase_add_test (tc, test_unlisted_key);
    tcase_add_test (tc, test_wrong_server_key);
    tcase_add_test (tc, test_no_curve);
    tcase_add_test (tc, test_raw_clients);
    tcase_add_test (tc, test_allow_folder_live);
    tcase_add_test (tc, test_own_key_without_allow_folder);
    tcase_add_test (tc, test_secret_file_permissions);
    tcase_add_test (tc, test_non_loopback_needs_curve);
    tcase_add_test (tc, test_key_files);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
