/*  tr_broker_test.c - the broker, as clients meet it on the wire: a
    broker started in-process on tcp://127.0.0.1:*, and raw ZeroMQ DEALER
    sockets that speak 2-broker.md through the tr_wire writer and reader.

    Covered: the greeting and every refusal; REGISTER / UNREGISTER across
    two clients; SEND routed byte for byte and in order (10,000 messages);
    BOUNCE for unknown names and for a receiver that does not drain;
    NODES; heartbeats both ways, a silent client declared dead within 3H
    and a closed one at once, with NODE_DOWN listing its names (in
    several messages when one frame cannot hold them all); takeover
    by NODE_ID; BYE; SUB / PUB with prefixes, one copy per subscriber,
    sys. reserved, DROPPED for a slow subscriber; malformed frames of
    every class and unknown verbs answered while a well-behaved client
    keeps being served; three frames; oversized frames; quotas; the
    counters. The scratchpad: every KV_ verb and refusal, limits lowered
    by the options; watches by prefix in version order, ended with their
    client; KV_RESYNC for a watcher that does not read and for a FROM out
    of reach; TTL expiry pushed as a deletion; a snapshot and a watch from
    its AT while a writer writes, missing nothing; persistence across
    restarts with each fsync policy, and the data folder's errors.
*/

#include "tr_test.h"
#include "tr_wire.h"
#include "troupe/tr_broker.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <zmq.h>

static void *s_ctx;
static tr_broker_t *s_broker;

//  Starts a broker with these options (bind is filled in; a heartbeat
//  of one minute unless given, so that no client that merely listens is
//  declared dead, however slow the sanitizers make a test).
static void
s_start (tr_broker_opts_t opts)
{
    opts.bind = "tcp://127.0.0.1:*";
    if (!opts.heartbeat_ms)
        opts.heartbeat_ms = 60000;
    ck_assert_int_eq (tr_broker_start (&opts, &s_broker), TR_OK);
    s_ctx = zmq_ctx_new ();
}

static void
s_start_default (void)
{
    s_start ((tr_broker_opts_t) { 0 });
}

static void
s_stop (void)
{
    zmq_ctx_term (s_ctx);
    s_ctx = NULL;
    tr_broker_stop (&s_broker);
    ck_assert_ptr_null (s_broker);
}

static int
s_ms (int ms)
{
    return ms * tr_test_slowdown ();
}

static tr_broker_stats_t
s_stats (void)
{
    tr_broker_stats_t stats;
    ck_assert_int_eq (tr_broker_stats (s_broker, &stats), TR_OK);
    return stats;
}

//  A DEALER connected to the broker, with room for floods.
static void *
s_dealer_hwm (int hwm)
{
    void *sock = zmq_socket (s_ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    ck_assert_int_eq (zmq_connect (sock, tr_broker_endpoint (s_broker)), 0);
    return sock;
}

static void *
s_dealer (void)
{
    return s_dealer_hwm (100000);
}

//  Sends a written command frame, then the payload if it is not NULL.
//  Ends the writer.
static void
s_put (void *sock, tr__wire_out_t *out, const void *payload, size_t size)
{
    ck_assert (!out->failed);
    ck_assert_int_ge (zmq_send (sock, out->data, out->size, payload? ZMQ_SNDMORE: 0), 0);
    if (payload)
        ck_assert_int_ge (zmq_send (sock, payload, size, 0), 0);
    tr__wire_end (out);
}

//  Sends one raw frame.
static void
s_raw (void *sock, const void *data, size_t size)
{
    ck_assert_int_ge (zmq_send (sock, data, size, 0), 0);
}

//  A message received by a client.
typedef struct {
    zmq_msg_t frames [3];
    size_t count;
    tr__wire_cmd_t cmd;
    tr__mp_t args;                      //  the next argument to read
} s_got_t;

static void
s_got_close (s_got_t *got)
{
    for (size_t i = 0; i < got->count && i < 3; i++)
        zmq_msg_close (&got->frames [i]);
    got->count = 0;
}

//  Receives the next message within timeout_ms (HEARTBEATs skipped
//  unless heartbeats is true), checks it is well-formed, and returns
//  true; false if nothing came.
static bool
s_get_any (void *sock, s_got_t *got, int timeout_ms, bool heartbeats)
{
    int64_t deadline = tr_test_now_ms () + timeout_ms;
    while (true) {
        int64_t left = deadline - tr_test_now_ms ();
        zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
        if (left < 0 || zmq_poll (&item, 1, (long) left) <= 0)
            return false;
        got->count = 0;
        bool more = true;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init (&part);
            ck_assert_int_ge (zmq_msg_recv (&part, sock, 0), 0);
            more = zmq_msg_more (&part);
            if (got->count < 3) {
                zmq_msg_init (&got->frames [got->count]);
                zmq_msg_move (&got->frames [got->count], &part);
            }
            got->count++;
            zmq_msg_close (&part);
        }
        ck_assert_int_le (got->count, 2);
        ck_assert_int_eq (tr__wire_parse (zmq_msg_data (&got->frames [0]),
                                          zmq_msg_size (&got->frames [0]), &got->cmd), TR_OK);
        ck_assert_msg (tr__wire_check (&got->cmd) == TR_OK, "the broker sent a bad frame: %s",
                       got->cmd.why);
        got->args = got->cmd.args;
        if (heartbeats || got->cmd.verb != TR__V_HEARTBEAT)
            return true;
        s_got_close (got);
    }
}

static bool
s_get (void *sock, s_got_t *got, int timeout_ms)
{
    return s_get_any (sock, got, timeout_ms, false);
}

//  Receives the next message and asserts its verb.
static void
s_expect (void *sock, s_got_t *got, int verb)
{
    ck_assert_msg (s_get (sock, got, s_ms (2000)), "nothing came; expected %s",
                   tr__wire_verb_name (verb));
    ck_assert_msg (got->cmd.verb == verb, "got %.*s, expected %s", (int) got->cmd.word_len,
                   got->cmd.word, tr__wire_verb_name (verb));
}

//  True if nothing but heartbeats comes within timeout_ms.
static bool
s_quiet (void *sock, int timeout_ms)
{
    s_got_t got;
    if (!s_get (sock, &got, timeout_ms))
        return true;
    s_got_close (&got);
    return false;
}

//  Readers of the arguments of a received message, in order.
static void
s_arg_str (s_got_t *got, char *buf, size_t size)
{
    const char *text;
    uint32_t len;
    ck_assert_int_eq (tr__mp_str (&got->args, &text, &len), 0);
    ck_assert_uint_lt (len, size);
    memcpy (buf, text, len);
    buf [len] = 0;
}

static uint64_t
s_arg_uint (s_got_t *got)
{
    uint64_t value;
    ck_assert_int_eq (tr__mp_uint (&got->args, &value), 0);
    return value;
}

static int64_t
s_arg_int (s_got_t *got)
{
    int64_t value;
    ck_assert_int_eq (tr__mp_int (&got->args, &value), 0);
    return value;
}

static size_t
s_payload_size (s_got_t *got)
{
    return got->count == 2? zmq_msg_size (&got->frames [1]): 0;
}

static const void *
s_payload (s_got_t *got)
{
    return got->count == 2? zmq_msg_data (&got->frames [1]): NULL;
}

//  Receives the answer to request seq: 0 for OK, the code for ERROR.
//  The message stays in *got (closed by the caller) when got is given.
static int
s_answer_got (void *sock, uint64_t seq, s_got_t *got)
{
    ck_assert_msg (s_get (sock, got, s_ms (2000)), "no answer to request %llu",
                   (unsigned long long) seq);
    ck_assert_msg (got->cmd.verb == TR__V_OK || got->cmd.verb == TR__V_ERROR,
                   "got %.*s, expected an answer", (int) got->cmd.word_len, got->cmd.word);
    ck_assert_uint_eq (got->cmd.seq, seq);
    return got->cmd.verb == TR__V_OK? 0: (int) s_arg_int (got);
}

static int
s_answer (void *sock, uint64_t seq)
{
    s_got_t got;
    int code = s_answer_got (sock, seq, &got);
    s_got_close (&got);
    return code;
}

//  Sends [VERB, seq] or [VERB, seq, arg] and returns the answer's code.
static int
s_call (void *sock, int verb, uint64_t seq, const char *arg)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, verb, seq, arg? 1: 0);
    if (arg)
        tr__wire_str (&out, arg, strlen (arg));
    s_put (sock, &out, NULL, 0);
    return s_answer (sock, seq);
}

//  Writes a HELLO with these fields.
static void
s_hello_write (tr__wire_out_t *out, uint64_t seq, const char *sig, uint64_t major,
               const char *id, const char *kind, uint64_t heartbeat)
{
    tr__wire_begin (out, TR__V_HELLO, seq, 6);
    tr__wire_str (out, sig, strlen (sig));
    tr__wire_uint (out, major);
    tr__wire_uint (out, 0);
    tr__wire_str (out, id, strlen (id));
    tr__wire_str (out, kind, strlen (kind));
    tr__wire_uint (out, heartbeat);
}

//  Sends a HELLO and returns the answer's code.
static int
s_hello (void *sock, const char *sig, uint64_t major, const char *id, const char *kind,
         uint64_t heartbeat)
{
    tr__wire_out_t out;
    s_hello_write (&out, 1, sig, major, id, kind, heartbeat);
    s_put (sock, &out, NULL, 0);
    return s_answer (sock, 1);
}

//  A greeted client.
static void *
s_client (const char *id, const char *kind)
{
    void *sock = s_dealer ();
    ck_assert_int_eq (s_hello (sock, "TRP", 1, id, kind, 1000), 0);
    return sock;
}

static void
s_send_to (void *sock, const char *to, const void *payload, size_t size)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_SEND, 0, 1);
    tr__wire_str (&out, to, strlen (to));
    s_put (sock, &out, payload, size);
}

static void
s_publish (void *sock, const char *topic, const void *body, size_t size)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_PUB, 0, 1);
    tr__wire_str (&out, topic, strlen (topic));
    s_put (sock, &out, body, size);
}


//  --------------------------------------------------------------------------
//  The scratchpad's requests

//  Sends ["KV_PUT", seq, key, ttl] + value (NULL: no payload frame).
static void
s_kv_put_send (void *sock, uint64_t seq, const char *key, uint64_t ttl, const void *value,
               size_t size)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_PUT, seq, 2);
    tr__wire_str (&out, key, strlen (key));
    tr__wire_uint (&out, ttl);
    s_put (sock, &out, value, size);
}

//  Answers ["OK", SEQ, VERSION]: the code, and the version in *version_p.
static int
s_kv_versioned (void *sock, uint64_t seq, uint64_t *version_p)
{
    s_got_t got;
    int code = s_answer_got (sock, seq, &got);
    if (code == 0) {
        ck_assert_uint_eq (got.cmd.nargs, 1);
        uint64_t version = s_arg_uint (&got);
        if (version_p)
            *version_p = version;
    }
    s_got_close (&got);
    return code;
}

static int
s_kv_put (void *sock, uint64_t seq, const char *key, uint64_t ttl, const void *value,
          size_t size, uint64_t *version_p)
{
    s_kv_put_send (sock, seq, key, ttl, value, size);
    return s_kv_versioned (sock, seq, version_p);
}

static int
s_kv_cas (void *sock, uint64_t seq, const char *key, uint64_t expected, const void *value,
          size_t size, uint64_t *version_p)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_CAS, seq, 3);
    tr__wire_str (&out, key, strlen (key));
    tr__wire_uint (&out, expected);
    tr__wire_uint (&out, 0);
    s_put (sock, &out, value, size);
    return s_kv_versioned (sock, seq, version_p);
}

static int
s_kv_del (void *sock, uint64_t seq, const char *key, uint64_t *version_p)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_DEL, seq, 1);
    tr__wire_str (&out, key, strlen (key));
    s_put (sock, &out, NULL, 0);
    return s_kv_versioned (sock, seq, version_p);
}

//  A value read back: its msgpack bytes, version and TTL left.
typedef struct {
    uint8_t data [256];
    size_t size;
    uint64_t version;
    uint64_t ttl_ms;
} s_kv_value_t;

static int
s_kv_get (void *sock, uint64_t seq, const char *key, s_kv_value_t *value)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_GET, seq, 1);
    tr__wire_str (&out, key, strlen (key));
    s_put (sock, &out, NULL, 0);
    s_got_t got;
    int code = s_answer_got (sock, seq, &got);
    if (code == 0) {
        ck_assert_uint_eq (got.cmd.nargs, 3);
        const uint8_t *start = got.args.p;
        ck_assert_int_eq (tr__mp_skip (&got.args, 32), 0);
        value->size = (size_t) (got.args.p - start);
        ck_assert_uint_le (value->size, sizeof value->data);
        memcpy (value->data, start, value->size);
        value->version = s_arg_uint (&got);
        value->ttl_ms = s_arg_uint (&got);
    }
    s_got_close (&got);
    return code;
}

//  Sends a request whose only argument is a KV_ prefix (KV_LIST,
//  KV_SNAPSHOT, KV_UNWATCH), or KV_WATCH with FROM.
static void
s_kv_prefix_send (void *sock, int verb, uint64_t seq, const char *prefix, uint64_t from)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, verb, seq, verb == TR__V_KV_WATCH? 2: 1);
    tr__wire_str (&out, prefix, strlen (prefix));
    if (verb == TR__V_KV_WATCH)
        tr__wire_uint (&out, from);
    s_put (sock, &out, NULL, 0);
}

//  KV_WATCH: the code, and AT in *at_p.
static int
s_kv_watch (void *sock, uint64_t seq, const char *prefix, uint64_t from, uint64_t *at_p)
{
    s_kv_prefix_send (sock, TR__V_KV_WATCH, seq, prefix, from);
    return s_kv_versioned (sock, seq, at_p);
}

//  One key of a list or snapshot.
typedef struct {
    char key [64];
    uint64_t version;
    uint8_t value [64];                 //  snapshot only
    size_t size;
} s_kv_item_t;

//  KV_LIST (snapshot false) or KV_SNAPSHOT: the code; on OK the items in
//  items (up to max), their number in *count_p, AT in *at_p.
static int
s_kv_list (void *sock, uint64_t seq, const char *prefix, bool snapshot, s_kv_item_t *items,
           size_t max, size_t *count_p, uint64_t *at_p)
{
    s_kv_prefix_send (sock, snapshot? TR__V_KV_SNAPSHOT: TR__V_KV_LIST, seq, prefix, 0);
    s_got_t got;
    int code = s_answer_got (sock, seq, &got);
    if (code == 0) {
        ck_assert_uint_eq (got.cmd.nargs, snapshot? 2: 1);
        if (snapshot)
            *at_p = s_arg_uint (&got);
        uint32_t n, fields;
        ck_assert_int_eq (tr__mp_array (&got.args, &n), 0);
        ck_assert_uint_le (n, max);
        for (uint32_t i = 0; i < n; i++) {
            ck_assert_int_eq (tr__mp_array (&got.args, &fields), 0);
            ck_assert_uint_eq (fields, snapshot? 3: 2);
            s_arg_str (&got, items [i].key, sizeof items [i].key);
            items [i].version = s_arg_uint (&got);
            items [i].size = 0;
            if (snapshot) {
                const uint8_t *start = got.args.p;
                ck_assert_int_eq (tr__mp_skip (&got.args, 32), 0);
                items [i].size = (size_t) (got.args.p - start);
                ck_assert_uint_le (items [i].size, sizeof items [i].value);
                memcpy (items [i].value, start, items [i].size);
            }
        }
        *count_p = n;
    }
    s_got_close (&got);
    return code;
}

//  A KV_CHANGE received: its fields (size 0 for a deletion).
typedef struct {
    char prefix [64];
    char key [64];
    uint64_t version;
    uint8_t value [2048];
    size_t size;
} s_kv_change_t;

//  Receives the next message and returns its verb: KV_CHANGE (read into
//  *change) or KV_RESYNC (its prefix in change->prefix); 0 if nothing
//  came within timeout_ms.
static int
s_kv_next (void *sock, s_kv_change_t *change, int timeout_ms)
{
    s_got_t got;
    if (!s_get (sock, &got, timeout_ms))
        return 0;
    int verb = got.cmd.verb;
    ck_assert_msg (verb == TR__V_KV_CHANGE || verb == TR__V_KV_RESYNC, "got %.*s",
                   (int) got.cmd.word_len, got.cmd.word);
    s_arg_str (&got, change->prefix, sizeof change->prefix);
    change->size = 0;
    if (verb == TR__V_KV_CHANGE) {
        s_arg_str (&got, change->key, sizeof change->key);
        change->version = s_arg_uint (&got);
        ck_assert_uint_eq (got.count, 2);
        change->size = s_payload_size (&got);
        ck_assert_uint_le (change->size, sizeof change->value);
        if (change->size)
            memcpy (change->value, s_payload (&got), change->size);
    }
    s_got_close (&got);
    return verb;
}

//  --------------------------------------------------------------------------

START_TEST (test_greeting)
{
    s_start ((tr_broker_opts_t) { .heartbeat_ms = 250 });
    const char *endpoint = tr_broker_endpoint (s_broker);
    ck_assert (strncmp (endpoint, "tcp://127.0.0.1:", 16) == 0);
    ck_assert (strchr (endpoint, '*') == NULL);

    void *sock = s_dealer ();
    tr__wire_out_t out;
    s_hello_write (&out, 7, "TRP", 1, "node-1", "node", 1000);
    s_put (sock, &out, NULL, 0);
    s_got_t got;
    ck_assert_int_eq (s_answer_got (sock, 7, &got), 0);
    ck_assert_uint_eq (got.cmd.nargs, 6);
    char text [256];
    s_arg_str (&got, text, sizeof text);
    ck_assert_str_eq (text, "TRP");
    ck_assert_uint_eq (s_arg_uint (&got), 1);
    ck_assert_uint_eq (s_arg_uint (&got), 0);
    s_arg_str (&got, text, sizeof text);
    ck_assert (strncmp (text, "broker@", 7) == 0);
    ck_assert_uint_eq (s_arg_uint (&got), 250);     //  the broker's setting wins
    uint32_t pairs;
    ck_assert_int_eq (tr__mp_map (&got.args, &pairs), 0);
    ck_assert_uint_eq (pairs, 8);
    const char *keys [] = { "max_frame", "max_names", "max_subs", "max_key", "max_value",
                            "max_list", "max_queue", "max_batch" };
    uint64_t values [] = { 17825792, 100000, 10000, 1024, 1048576, 100000, 10000, 256 };
    for (uint32_t i = 0; i < pairs; i++) {
        s_arg_str (&got, text, sizeof text);
        ck_assert_str_eq (text, keys [i]);
        ck_assert_uint_eq (s_arg_uint (&got), values [i]);
    }
    s_got_close (&got);

    //  A second HELLO on the same connection.
    ck_assert_int_eq (s_hello (sock, "TRP", 1, "node-1", "node", 1000), TR_EPROTO);
    ck_assert_int_eq (s_call (sock, TR__V_REGISTER, 2, "a"), 0);

    //  Refusals; each refused peer is forgotten and may try again.
    void *peer = s_dealer ();
    ck_assert_int_eq (s_call (peer, TR__V_REGISTER, 3, "a"), TR_EPROTO);
    ck_assert_int_eq (s_call (peer, TR__V_NODES, 4, NULL), TR_EPROTO);
    ck_assert_int_eq (s_hello (peer, "TRQ", 1, "n2", "node", 1000), TR_EPROTO);
    ck_assert_int_eq (s_hello (peer, "TRP", 2, "n2", "node", 1000), TR_EVERSION);
    ck_assert_int_eq (s_hello (peer, "TRP", 0, "n2", "node", 1000), TR_EVERSION);
    ck_assert_int_eq (s_hello (peer, "TRP", 1, "bad id", "node", 1000), TR_EINVAL);
    ck_assert_int_eq (s_hello (peer, "TRP", 1, "", "node", 1000), TR_EINVAL);
    ck_assert_int_eq (s_hello (peer, "TRP", 1, "n2", "robot", 1000), TR_EINVAL);
    ck_assert_int_eq (s_hello (peer, "TRP", 1, "n2", "node", 99), TR_EINVAL);
    ck_assert_int_eq (s_hello (peer, "TRP", 1, "n2", "node", 60001), TR_EINVAL);
    //  A HELLO of another major is refused as such whatever follows.
    tr__wire_begin (&out, TR__V_HELLO, 9, 2);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, 2);
    s_put (peer, &out, NULL, 0);
    ck_assert_int_eq (s_answer (peer, 9), TR_EVERSION);
    //  Missing or mistyped fields.
    tr__wire_begin (&out, TR__V_HELLO, 10, 3);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, 1);
    tr__wire_uint (&out, 0);
    s_put (peer, &out, NULL, 0);
    ck_assert_int_eq (s_answer (peer, 10), TR_EMALFORMED);
    tr__wire_begin (&out, TR__V_HELLO, 11, 6);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, 1);
    tr__wire_uint (&out, 0);
    tr__wire_uint (&out, 5);            //  NODE_ID not a str
    tr__wire_str (&out, "node", 4);
    tr__wire_uint (&out, 1000);
    s_put (peer, &out, NULL, 0);
    ck_assert_int_eq (s_answer (peer, 11), TR_EMALFORMED);
    ck_assert_int_eq (s_call (peer, TR__V_REGISTER, 12, "b"), TR_EPROTO);

    //  A later minor's extra arguments are ignored.
    tr__wire_begin (&out, TR__V_HELLO, 13, 8);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, 1);
    tr__wire_uint (&out, 5);
    tr__wire_str (&out, "n2", 2);
    tr__wire_str (&out, "client", 6);
    tr__wire_uint (&out, 1000);
    tr__wire_map (&out, 1);
    tr__wire_str (&out, "future", 6);
    tr__wire_array (&out, 0);
    tr__wire_nil (&out);
    s_put (peer, &out, NULL, 0);
    ck_assert_int_eq (s_answer_got (peer, 13, &got), 0);
    s_arg_str (&got, text, sizeof text);
    ck_assert_uint_eq (s_arg_uint (&got), 1);
    ck_assert_uint_eq (s_arg_uint (&got), TR__WIRE_MINOR);   //  the lower minor
    s_got_close (&got);
    ck_assert_int_eq (s_call (peer, TR__V_REGISTER, 14, "b"), 0);

    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.clients, 2);
    ck_assert_uint_eq (st.joined, 2);
    ck_assert_uint_eq (st.names, 2);
    ck_assert_uint_eq (st.refused, 13);
    ck_assert_uint_eq (st.malformed, 2);
    zmq_close (sock);
    zmq_close (peer);
    s_stop ();
}
END_TEST

START_TEST (test_options)
{
    tr_broker_t *broker = NULL;
    ck_assert_int_eq (tr_broker_start (NULL, &broker), TR_EINVAL);
    ck_assert_int_eq (tr_broker_start (&(tr_broker_opts_t) { 0 }, &broker), TR_EINVAL);
    ck_assert_int_eq (tr_broker_start (&(tr_broker_opts_t) { .bind = "nonsense" }, &broker),
                      TR_EINVAL);
    ck_assert_int_eq (tr_broker_start (&(tr_broker_opts_t) {
        .bind = "tcp://127.0.0.1:*", .heartbeat_ms = -1 }, &broker), TR_EINVAL);
    ck_assert_int_eq (tr_broker_start (&(tr_broker_opts_t) {
        .bind = "tcp://127.0.0.1:*", .max_frame = 100 }, &broker), TR_EINVAL);
    ck_assert_ptr_null (broker);
    //  A port in use.
    s_start_default ();
    const char *endpoint = tr_broker_endpoint (s_broker);
    ck_assert_int_eq (tr_broker_start (&(tr_broker_opts_t) { .bind = endpoint }, &broker),
                      TR_ESYS);
    ck_assert_ptr_null (broker);
    ck_assert_int_eq (tr_broker_stats (NULL, &(tr_broker_stats_t) { 0 }), TR_EINVAL);
    ck_assert_ptr_null (tr_broker_endpoint (NULL));
    tr_broker_stop (NULL);
    s_stop ();
    //  ipc works too.
    char path [64];
    snprintf (path, sizeof path, "ipc:///tmp/tr_broker_test.%d", (int) getpid ());
    ck_assert_int_eq (tr_broker_start (&(tr_broker_opts_t) { .bind = path }, &broker), TR_OK);
    ck_assert_str_eq (tr_broker_endpoint (broker), path);
    tr_broker_stop (&broker);
}
END_TEST

START_TEST (test_names)
{
    s_start_default ();
    void *a = s_client ("A", "node");
    void *b = s_client ("B", "actor");
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 1, "x"), 0);
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 2, "x"), 0);      //  held already
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 3, "x"), TR_EEXIST);
    ck_assert_int_eq (s_call (b, TR__V_UNREGISTER, 4, "x"), TR_ENOTFOUND);
    ck_assert_int_eq (s_call (b, TR__V_UNREGISTER, 5, "never"), TR_ENOTFOUND);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 6, "bad name"), TR_EINVAL);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 7, ""), TR_EINVAL);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 8, "caf\xc3\xa9"), 0);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 9, "bad\xc3"), TR_EINVAL);
    ck_assert_uint_eq (s_stats ().names, 2);
    ck_assert_int_eq (s_call (a, TR__V_UNREGISTER, 10, "x"), 0);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 11, "x"), 0);
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 12, "x"), TR_EEXIST);
    //  Messages to x now reach B.
    s_send_to (a, "x", "hi", 2);
    s_got_t got;
    s_expect (b, &got, TR__V_DELIVER);
    ck_assert_uint_eq (s_payload_size (&got), 2);
    s_got_close (&got);
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.names, 2);
    ck_assert_uint_eq (st.routed, 1);
    ck_assert_uint_eq (st.refused, 7);
    zmq_close (a);
    zmq_close (b);
    s_stop ();
}
END_TEST

//  The payload of message i: its number, then bytes that depend on it,
//  of a length that varies (with a large one now and then, which ZeroMQ
//  passes by reference).
static size_t
s_make_payload (uint32_t i, uint8_t *buf)
{
    size_t size = i % 1000 == 999? 100000: 4 + (i * 7919) % 300;
    memcpy (buf, &i, 4);
    for (size_t k = 4; k < size; k++)
        buf [k] = (uint8_t) (i * 31 + k);
    return size;
}

START_TEST (test_send_order)
{
    s_start_default ();
    void *a = s_client ("A", "node");
    void *b = s_client ("B", "node");
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 1, "a"), 0);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 2, "b"), 0);
    enum { COUNT = 10000 };
    uint8_t *buf = (uint8_t *) malloc (100000);
    //  In rounds of 1,000, so that no queue on the way fills up.
    for (uint32_t round = 0; round < COUNT / 1000; round++) {
        for (uint32_t i = round * 1000; i < (round + 1) * 1000; i++) {
            size_t size = s_make_payload (i, buf);
            s_send_to (a, "b", buf, size);
        }
        for (uint32_t i = round * 1000; i < (round + 1) * 1000; i++) {
            s_got_t got;
            s_expect (b, &got, TR__V_DELIVER);
            ck_assert_uint_eq (got.cmd.nargs, 0);
            size_t size = s_make_payload (i, buf);
            ck_assert_uint_eq (s_payload_size (&got), size);
            ck_assert_msg (memcmp (s_payload (&got), buf, size) == 0, "message %u differs", i);
            s_got_close (&got);
        }
    }
    free (buf);
    ck_assert (s_quiet (a, 50));
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.routed, COUNT);
    ck_assert_uint_eq (st.bounced, 0);
    zmq_close (a);
    zmq_close (b);
    s_stop ();
}
END_TEST

START_TEST (test_bounce)
{
    s_start_default ();
    void *a = s_client ("A", "node");
    const char envelope [] = "an envelope, opaque to the broker";
    s_send_to (a, "nobody", envelope, sizeof envelope);
    s_got_t got;
    s_expect (a, &got, TR__V_BOUNCE);
    char to [256];
    s_arg_str (&got, to, sizeof to);
    ck_assert_str_eq (to, "nobody");
    ck_assert_int_eq (s_arg_int (&got), TR_ENOACTOR);
    ck_assert_uint_eq (s_payload_size (&got), sizeof envelope);
    ck_assert_mem_eq (s_payload (&got), envelope, sizeof envelope);
    s_got_close (&got);
    //  A name nobody can hold: ERROR, as a BOUNCE would carry a bad TO.
    s_send_to (a, "no body", "x", 1);
    ck_assert_int_eq (s_answer (a, 0), TR_EINVAL);
    //  A SEND without an envelope.
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_SEND, 0, 1);
    tr__wire_str (&out, "nobody", 6);
    s_put (a, &out, NULL, 0);
    ck_assert_int_eq (s_answer (a, 0), TR_EMALFORMED);
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.bounced, 1);
    ck_assert_uint_eq (st.malformed, 1);
    ck_assert_uint_eq (st.refused, 1);
    zmq_close (a);
    s_stop ();
}
END_TEST

//  A client that speaks 1.1 (SENDS, DELIVERS): the answer's MINOR is 1.
static void *
s_greet_11 (void *sock, const char *id)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_HELLO, 1, 6);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, 1);
    tr__wire_uint (&out, 7);            //  a newer minor: the broker's (1) is spoken
    tr__wire_str (&out, id, strlen (id));
    tr__wire_str (&out, "node", 4);
    tr__wire_uint (&out, 1000);
    s_put (sock, &out, NULL, 0);
    s_got_t got;
    ck_assert_int_eq (s_answer_got (sock, 1, &got), 0);
    char text [16];
    s_arg_str (&got, text, sizeof text);
    ck_assert_uint_eq (s_arg_uint (&got), 1);
    ck_assert_uint_eq (s_arg_uint (&got), 1);
    s_got_close (&got);
    return sock;
}

static void *
s_client_11 (const char *id)
{
    return s_greet_11 (s_dealer (), id);
}

//  A SENDS of the envelopes bufs [i] (sizes [i] bytes) to names [i].
static void
s_sends (void *sock, const char **names, uint8_t **bufs, const size_t *sizes, size_t n,
         const size_t *wrong_size)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_SENDS, 0, 2);
    tr__wire_array (&out, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        tr__wire_str (&out, names [i], strlen (names [i]));
    tr__wire_array (&out, (uint32_t) n);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        tr__wire_uint (&out, wrong_size && i == 0? *wrong_size: sizes [i]);
        total += sizes [i];
    }
    uint8_t *payload = (uint8_t *) malloc (total? total: 1);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy (payload + at, bufs [i], sizes [i]);
        at += sizes [i];
    }
    s_put (sock, &out, payload, total);
    free (payload);
}

//  SENDS: each envelope routed as by its own SEND; a run for one client
//  of 1.1 arrives as one DELIVERS, envelopes for a client of 1.0 as
//  DELIVERs; a name nobody holds is bounced alone; a batch whose sizes
//  or counts are wrong is refused whole.
START_TEST (test_sends)
{
    s_start_default ();
    void *a = s_client_11 ("A");
    void *b = s_client_11 ("B");
    void *c = s_client ("C", "node");   //  1.0
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 1, "b1"), 0);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 2, "b2"), 0);
    ck_assert_int_eq (s_call (c, TR__V_REGISTER, 3, "c1"), 0);
    enum { N = 6 };
    const char *names [N] = { "b1", "b2", "b1", "c1", "nobody", "b2" };
    uint8_t *bufs [N];
    size_t sizes [N];
    for (uint32_t i = 0; i < N; i++) {
        bufs [i] = (uint8_t *) malloc (100000);
        sizes [i] = s_make_payload (i == 2? 999: i, bufs [i]);
    }
    s_sends (a, names, bufs, sizes, N, NULL);
    //  B: one DELIVERS of the first three, then a DELIVER of the last.
    s_got_t got;
    s_expect (b, &got, TR__V_DELIVERS);
    uint32_t n;
    ck_assert_int_eq (tr__mp_array (&got.args, &n), 0);
    ck_assert_uint_eq (n, 3);
    size_t at = 0;
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_uint_eq (s_arg_uint (&got), sizes [i]);
        ck_assert_mem_eq ((uint8_t *) s_payload (&got) + at, bufs [i], sizes [i]);
        at += sizes [i];
    }
    ck_assert_uint_eq (s_payload_size (&got), at);
    s_got_close (&got);
    s_expect (b, &got, TR__V_DELIVER);
    ck_assert_uint_eq (s_payload_size (&got), sizes [5]);
    ck_assert_mem_eq (s_payload (&got), bufs [5], sizes [5]);
    s_got_close (&got);
    //  C (1.0): a DELIVER.
    s_expect (c, &got, TR__V_DELIVER);
    ck_assert_uint_eq (s_payload_size (&got), sizes [3]);
    ck_assert_mem_eq (s_payload (&got), bufs [3], sizes [3]);
    s_got_close (&got);
    //  A: the bounce of the one nobody holds, with its own bytes.
    s_expect (a, &got, TR__V_BOUNCE);
    char to [256];
    s_arg_str (&got, to, sizeof to);
    ck_assert_str_eq (to, "nobody");
    ck_assert_int_eq (s_arg_int (&got), TR_ENOACTOR);
    ck_assert_uint_eq (s_payload_size (&got), sizes [4]);
    ck_assert_mem_eq (s_payload (&got), bufs [4], sizes [4]);
    s_got_close (&got);
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.routed, 5);
    ck_assert_uint_eq (st.bounced, 1);

    //  A batch all for one client goes on as it came.
    const char *same [3] = { "b2", "b2", "b2" };
    s_sends (a, same, bufs, sizes, 3, NULL);
    s_expect (b, &got, TR__V_DELIVERS);
    ck_assert_uint_eq (s_payload_size (&got), sizes [0] + sizes [1] + sizes [2]);
    s_got_close (&got);
    //  Wrong batches: refused whole, nothing routed.
    size_t wrong = sizes [0] + 1;
    s_sends (a, names, bufs, sizes, 3, &wrong);
    ck_assert_int_eq (s_answer (a, 0), TR_EMALFORMED);
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_SENDS, 0, 2);
    tr__wire_array (&out, 2);
    tr__wire_str (&out, "b1", 2);
    tr__wire_str (&out, "b2", 2);
    tr__wire_array (&out, 1);
    tr__wire_uint (&out, 4);
    s_put (a, &out, "abcd", 4);
    ck_assert_int_eq (s_answer (a, 0), TR_EMALFORMED);
    tr__wire_begin (&out, TR__V_SENDS, 0, 2);
    tr__wire_array (&out, 257);
    for (int i = 0; i < 257; i++)
        tr__wire_str (&out, "b1", 2);
    tr__wire_array (&out, 257);
    for (int i = 0; i < 257; i++)
        tr__wire_uint (&out, 1);
    uint8_t ones [257] = { 0 };
    s_put (a, &out, ones, sizeof ones);
    ck_assert_int_eq (s_answer (a, 0), TR_EMALFORMED);
    tr__wire_begin (&out, TR__V_SENDS, 0, 2);
    tr__wire_array (&out, 1);
    tr__wire_str (&out, "b1", 2);
    tr__wire_array (&out, 1);
    tr__wire_uint (&out, 4);
    s_put (a, &out, NULL, 0);
    ck_assert_int_eq (s_answer (a, 0), TR_EMALFORMED);
    //  A client may not send DELIVERS.
    tr__wire_begin (&out, TR__V_DELIVERS, 0, 1);
    tr__wire_array (&out, 1);
    tr__wire_uint (&out, 4);
    s_put (a, &out, "abcd", 4);
    ck_assert_int_eq (s_answer (a, 0), TR_EINVAL);
    ck_assert (s_quiet (b, 50));
    st = s_stats ();
    ck_assert_uint_eq (st.routed, 8);
    for (uint32_t i = 0; i < N; i++)
        free (bufs [i]);
    zmq_close (a);
    zmq_close (b);
    zmq_close (c);
    s_stop ();
}
END_TEST

//  PUBS: each event published as by its own PUB; a subscriber of 1.1 gets
//  the events of the batch it is subscribed to as one EVENTS (the payload
//  as it came when it gets them all), one of 1.0 as EVENTs; reserved
//  topics are refused one by one, a broken batch is dropped whole.
static void
s_pubs (void *sock, const char **topics, const char **bodies, size_t n, size_t wrong)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_PUBS, 0, 2);
    tr__wire_array (&out, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        tr__wire_str (&out, topics [i], strlen (topics [i]));
    tr__wire_array (&out, (uint32_t) n);
    char payload [1024];
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen (bodies [i]);
        tr__wire_uint (&out, len + (i == 0? wrong: 0));
        memcpy (payload + at, bodies [i], len);
        at += len;
    }
    s_put (sock, &out, payload, at);
}

START_TEST (test_pubs)
{
    s_start_default ();
    void *p = s_client_11 ("P");
    void *all = s_client_11 ("ALL");
    void *some = s_client_11 ("SOME");
    void *old = s_client ("OLD", "node");
    ck_assert_int_eq (s_call (all, TR__V_SUB, 1, "app."), 0);
    ck_assert_int_eq (s_call (all, TR__V_SUB, 2, ""), 0);     //  overlapping: once each
    ck_assert_int_eq (s_call (some, TR__V_SUB, 3, "app.b"), 0);
    ck_assert_int_eq (s_call (old, TR__V_SUB, 4, "app."), 0);
    ck_assert_int_eq (s_call (p, TR__V_SUB, 5, "app."), 0);   //  never its own
    //  Bodies are msgpack: fixstr "x1".., nil.
    tr_broker_stats_t st0 = s_stats ();
    const char *topics [4] = { "app.a", "app.b", "sys.actor.started", "app.b2" };
    const char *bodies [4] = { "\xa2x1", "\xc0", "\xa2x3", "\xa2x4" };
    s_pubs (p, topics, bodies, 4, 0);
    //  ALL: three events (the sys. one is refused from... a node may
    //  publish sys.actor.*: P is a node, so all four).
    s_got_t got;
    s_expect (all, &got, TR__V_EVENTS);
    char from [64];
    s_arg_str (&got, from, sizeof from);
    ck_assert_str_eq (from, "P");
    uint32_t n;
    ck_assert_int_eq (tr__mp_array (&got.args, &n), 0);
    ck_assert_uint_eq (n, 4);
    for (uint32_t i = 0; i < n; i++) {
        char topic [64];
        s_arg_str (&got, topic, sizeof topic);
        ck_assert_str_eq (topic, topics [i]);
    }
    ck_assert_uint_eq (s_payload_size (&got), 10);
    ck_assert_mem_eq (s_payload (&got), "\xa2x1\xc0\xa2x3\xa2x4", 10);
    s_got_close (&got);
    //  SOME: app.b and app.b2 only, their bodies together.
    s_expect (some, &got, TR__V_EVENTS);
    s_arg_str (&got, from, sizeof from);
    ck_assert_int_eq (tr__mp_array (&got.args, &n), 0);
    ck_assert_uint_eq (n, 2);
    char topic [64];
    s_arg_str (&got, topic, sizeof topic);
    ck_assert_str_eq (topic, "app.b");
    s_arg_str (&got, topic, sizeof topic);
    ck_assert_str_eq (topic, "app.b2");
    ck_assert_int_eq (tr__mp_array (&got.args, &n), 0);
    ck_assert_uint_eq (s_arg_uint (&got), 1);
    ck_assert_uint_eq (s_arg_uint (&got), 3);
    ck_assert_uint_eq (s_payload_size (&got), 4);
    ck_assert_mem_eq (s_payload (&got), "\xc0\xa2x4", 4);
    s_got_close (&got);
    //  OLD (1.0): EVENTs of app.a, app.b, app.b2, each its own body.
    const int mine [3] = { 0, 1, 3 };
    for (int k = 0; k < 3; k++) {
        s_expect (old, &got, TR__V_EVENT);
        s_arg_str (&got, topic, sizeof topic);
        ck_assert_str_eq (topic, topics [mine [k]]);
        ck_assert_uint_eq (s_payload_size (&got), strlen (bodies [mine [k]]));
        ck_assert_mem_eq (s_payload (&got), bodies [mine [k]], strlen (bodies [mine [k]]));
        s_got_close (&got);
    }
    ck_assert (s_quiet (p, 50));
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.events - st0.events, 4);
    //  A client of kind "client" may not publish under sys.: that event
    //  alone is refused.
    void *c = s_dealer ();
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_HELLO, 1, 6);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, 1);
    tr__wire_uint (&out, 1);
    tr__wire_str (&out, "C", 1);
    tr__wire_str (&out, "client", 6);
    tr__wire_uint (&out, 1000);
    s_put (c, &out, NULL, 0);
    ck_assert_int_eq (s_answer (c, 1), 0);
    ck_assert (s_quiet (c, 50));        //  C's joining is an event too
    st0 = s_stats ();
    const char *two [2] = { "sys.actor.x", "app.b" };
    s_pubs (c, two, bodies + 2, 2, 0);
    void *subscribers [4] = { some, p, all, old };
    for (int k = 0; k < 4; k++) {
        //  One event: EVENT, not EVENTS (ALL, subscribed to everything,
        //  has C's sys.node.joined first).
        do {
            s_expect (subscribers [k], &got, TR__V_EVENT);
            s_arg_str (&got, topic, sizeof topic);
            s_got_close (&got);
        } while (subscribers [k] == all && strcmp (topic, "sys.node.joined") == 0);
        ck_assert_str_eq (topic, "app.b");
    }
    st = s_stats ();
    ck_assert_uint_eq (st.events - st0.events, 1);
    ck_assert_uint_eq (st.refused - st0.refused, 1);
    //  Broken batches: dropped whole, counted, not answered.
    s_pubs (p, topics, bodies, 2, 1);
    const char *bad_topic [2] = { "app.a", "app b" };
    s_pubs (p, bad_topic, bodies, 2, 0);
    ck_assert (s_quiet (p, 50));
    ck_assert (s_quiet (all, 50));
    st = s_stats ();
    ck_assert_uint_eq (st.events - st0.events, 1);
    ck_assert_uint_eq (st.malformed - st0.malformed, 1);
    ck_assert_uint_eq (st.refused - st0.refused, 2);
    zmq_close (p);
    zmq_close (all);
    zmq_close (some);
    zmq_close (old);
    zmq_close (c);
    s_stop ();
}
END_TEST

//  MULTI: one message carrying several; parts [i] is a command frame
//  written with the wire writer and payloads [i] its payload ("" none).
static void
s_multi_put (void *sock, tr__wire_out_t *parts, const char **payloads, size_t n, size_t extra)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_MULTI, 0, 2);
    tr__wire_array (&out, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        tr__wire_uint (&out, parts [i].size);
    tr__wire_array (&out, (uint32_t) n);
    for (size_t i = 0; i < n; i++)
        tr__wire_uint (&out, strlen (payloads [i]));
    char buf [2048];
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy (buf + at, parts [i].data, parts [i].size);
        at += parts [i].size;
        memcpy (buf + at, payloads [i], strlen (payloads [i]));
        at += strlen (payloads [i]);
        tr__wire_end (&parts [i]);
    }
    s_put (sock, &out, buf, at + extra);
}

//  Reads the answers of a MULTI back: a MULTI whose messages are command
//  frames only; returns how many, each parsed into cmds [i] (pointing
//  into got's payload).
static uint32_t
s_multi_answers (s_got_t *got, tr__wire_cmd_t *cmds, uint32_t max)
{
    uint32_t n, m;
    ck_assert_int_eq (tr__mp_array (&got->args, &n), 0);
    ck_assert_uint_le (n, max);
    uint64_t sizes [16];
    for (uint32_t i = 0; i < n; i++)
        sizes [i] = s_arg_uint (got);
    ck_assert_int_eq (tr__mp_array (&got->args, &m), 0);
    ck_assert_uint_eq (m, n);
    for (uint32_t i = 0; i < n; i++)
        ck_assert_uint_eq (s_arg_uint (got), 0);
    const uint8_t *at = (const uint8_t *) s_payload (got);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_int_eq (tr__wire_parse (at, sizes [i], &cmds [i]), TR_OK);
        at += sizes [i];
    }
    ck_assert_uint_eq ((size_t) (at - (const uint8_t *) s_payload (got)), s_payload_size (got));
    return n;
}

START_TEST (test_multi)
{
    s_start_default ();
    void *a = s_client_11 ("A");
    tr__wire_out_t parts [8];
    const char *payloads [8];
    //  A put, two gets, an unknown verb, a MULTI inside: five answers in
    //  order, in one MULTI.
    tr__wire_begin (&parts [0], TR__V_KV_PUT, 11, 2);
    tr__wire_str (&parts [0], "m/k", 3);
    tr__wire_uint (&parts [0], 0);
    payloads [0] = "\xa3" "abc";
    tr__wire_begin (&parts [1], TR__V_KV_GET, 12, 1);
    tr__wire_str (&parts [1], "m/k", 3);
    payloads [1] = "";
    tr__wire_begin (&parts [2], TR__V_KV_GET, 13, 1);
    tr__wire_str (&parts [2], "m/none", 6);
    payloads [2] = "";
    tr__wire_begin_word (&parts [3], "FROB", 4, 14, 0);
    payloads [3] = "";
    tr__wire_begin (&parts [4], TR__V_MULTI, 15, 2);
    tr__wire_array (&parts [4], 0);
    tr__wire_array (&parts [4], 0);
    payloads [4] = "";
    s_multi_put (a, parts, payloads, 5, 0);
    s_got_t got;
    s_expect (a, &got, TR__V_MULTI);
    tr__wire_cmd_t cmds [16];
    ck_assert_uint_eq (s_multi_answers (&got, cmds, 16), 5);
    ck_assert_int_eq (cmds [0].verb, TR__V_OK);
    ck_assert_uint_eq (cmds [0].seq, 11);
    ck_assert_int_eq (cmds [1].verb, TR__V_OK);
    ck_assert_uint_eq (cmds [1].seq, 12);
    const char *text;
    uint32_t len;
    ck_assert_int_eq (tr__mp_str (&cmds [1].args, &text, &len), 0);
    ck_assert (len == 3 && memcmp (text, "abc", 3) == 0);
    int64_t code;
    ck_assert_int_eq (cmds [2].verb, TR__V_ERROR);
    ck_assert_uint_eq (cmds [2].seq, 13);
    tr__mp_int (&cmds [2].args, &code);
    ck_assert_int_eq (code, TR_ENOTFOUND);
    ck_assert_int_eq (cmds [3].verb, TR__V_ERROR);
    ck_assert_uint_eq (cmds [3].seq, 14);
    tr__mp_int (&cmds [3].args, &code);
    ck_assert_int_eq (code, TR_EINVAL);
    ck_assert_int_eq (cmds [4].verb, TR__V_ERROR);
    ck_assert_uint_eq (cmds [4].seq, 0);
    tr__mp_int (&cmds [4].args, &code);
    ck_assert_int_eq (code, TR_EMALFORMED);
    s_got_close (&got);
    //  A client of 1.0 gets its answers one by one.
    void *b = s_client ("B", "node");
    tr__wire_begin (&parts [0], TR__V_KV_GET, 21, 1);
    tr__wire_str (&parts [0], "m/k", 3);
    payloads [0] = "";
    tr__wire_begin (&parts [1], TR__V_NODES, 22, 0);
    payloads [1] = "";
    s_multi_put (b, parts, payloads, 2, 0);
    ck_assert_int_eq (s_answer (b, 21), 0);
    ck_assert_int_eq (s_answer (b, 22), 0);
    //  Sizes that do not add up: refused whole, nothing done.
    tr__wire_begin (&parts [0], TR__V_KV_DEL, 31, 1);
    tr__wire_str (&parts [0], "m/k", 3);
    payloads [0] = "";
    s_multi_put (a, parts, payloads, 1, 1);
    ck_assert_int_eq (s_answer (a, 0), TR_EMALFORMED);
    //  A BYE inside: what follows it is not done.
    tr__wire_begin (&parts [0], TR__V_BYE, 0, 0);
    payloads [0] = "";
    tr__wire_begin (&parts [1], TR__V_KV_DEL, 32, 1);
    tr__wire_str (&parts [1], "m/k", 3);
    payloads [1] = "";
    s_multi_put (a, parts, payloads, 2, 0);
    ck_assert (s_quiet (a, 100));
    s_expect (b, &got, TR__V_NODE_DOWN);        //  A left
    s_got_close (&got);
    s_kv_value_t value;
    ck_assert_int_eq (s_kv_get (b, 40, "m/k", &value), TR_OK);
    zmq_close (a);
    zmq_close (b);
    s_stop ();
}
END_TEST

//  A batch for a receiver that does not drain: every envelope that does
//  not fit comes back as its own BOUNCE TR_EFULL.
START_TEST (test_sends_full)
{
    //  _i: 0, B speaks 1.0 (DELIVERs); 1, B speaks 1.1 (DELIVERS).
    s_start ((tr_broker_opts_t) { .max_queue = 10 });
    void *a = s_client_11 ("A");
    void *b = s_dealer_hwm (10);
    if (_i)
        s_greet_11 (b, "B");
    else
        ck_assert_int_eq (s_hello (b, "TRP", 1, "B", "node", 1000), 0);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 1, "b"), 0);
    enum { ROUNDS = 200, N = 4, SIZE = 20000 };
    const char *names [N] = { "b", "b", "b", "b" };
    uint8_t *bufs [N];
    size_t sizes [N];
    for (uint32_t k = 0; k < N; k++) {
        bufs [k] = (uint8_t *) calloc (1, SIZE);
        sizes [k] = SIZE;
    }
    size_t bounced = 0, delivered = 0;
    s_got_t got;
    for (uint32_t r = 0; r < ROUNDS; r++) {
        for (uint32_t k = 0; k < N; k++) {
            uint32_t i = r * N + k;
            memcpy (bufs [k], &i, 4);
        }
        s_sends (a, names, bufs, sizes, N, NULL);
        while (s_get (a, &got, r % 4 == 3? 5: 0)) {
            ck_assert_int_eq (got.cmd.verb, TR__V_BOUNCE);
            s_arg_str (&got, (char [8]) { 0 }, 8);
            ck_assert_int_eq (s_arg_int (&got), TR_EFULL);
            ck_assert_uint_eq (s_payload_size (&got), SIZE);
            bounced++;
            s_got_close (&got);
        }
    }
    while (s_get (a, &got, s_ms (200))) {
        ck_assert_int_eq (got.cmd.verb, TR__V_BOUNCE);
        bounced++;
        s_got_close (&got);
    }
    //  In order, with gaps.
    int64_t last = -1;
    while (s_get (b, &got, s_ms (300))) {
        uint32_t count = 1;
        if (_i) {
            ck_assert_int_eq (got.cmd.verb, TR__V_DELIVERS);
            ck_assert_int_eq (tr__mp_array (&got.args, &count), 0);
        }
        else
            ck_assert_int_eq (got.cmd.verb, TR__V_DELIVER);
        for (uint32_t k = 0; k < count; k++) {
            uint32_t i;
            memcpy (&i, (uint8_t *) s_payload (&got) + k * SIZE, 4);
            ck_assert_int_gt ((int64_t) i, last);
            last = i;
            delivered++;
        }
        s_got_close (&got);
    }
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_gt (bounced, 0);
    ck_assert_uint_gt (delivered, 0);
    ck_assert_uint_eq (st.routed, delivered);
    ck_assert_uint_eq (st.routed + st.bounced, ROUNDS * N);
    ck_assert_uint_eq (st.bounced, bounced + st.lost);
    for (uint32_t k = 0; k < N; k++)
        free (bufs [k]);
    zmq_close (a);
    zmq_close (b);
    s_stop ();
}
END_TEST

//  A receiver that does not drain: past max_queue, SENDs come back as
//  BOUNCE TR_EFULL; every message is either delivered or bounced.
START_TEST (test_full)
{
    s_start ((tr_broker_opts_t) { .max_queue = 10 });
    void *a = s_client ("A", "node");
    void *b = s_dealer_hwm (10);
    ck_assert_int_eq (s_hello (b, "TRP", 1, "B", "node", 1000), 0);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 1, "b"), 0);
    enum { COUNT = 2000, SIZE = 20000 };
    uint8_t *buf = (uint8_t *) calloc (1, SIZE);
    size_t bounced = 0, delivered = 0;
    //  In bursts, each followed by taking the bounces, as A's own queue
    //  at the broker is max_queue long too.
    for (uint32_t i = 0; i < COUNT; i++) {
        memcpy (buf, &i, 4);
        s_send_to (a, "b", buf, SIZE);
        s_got_t got;
        while (s_get (a, &got, i % 4 == 3? 5: 0)) {
            ck_assert_int_eq (got.cmd.verb, TR__V_BOUNCE);
            s_arg_str (&got, (char [8]) { 0 }, 8);
            ck_assert_int_eq (s_arg_int (&got), TR_EFULL);
            ck_assert_uint_eq (s_payload_size (&got), SIZE);
            bounced++;
            s_got_close (&got);
        }
    }
    s_got_t got;
    while (s_get (a, &got, s_ms (200))) {
        ck_assert_int_eq (got.cmd.verb, TR__V_BOUNCE);
        bounced++;
        s_got_close (&got);
    }
    //  Delivered in order, with gaps where messages were bounced.
    int64_t last = -1;
    while (s_get (b, &got, s_ms (300))) {
        ck_assert_int_eq (got.cmd.verb, TR__V_DELIVER);
        uint32_t i;
        memcpy (&i, s_payload (&got), 4);
        ck_assert_int_gt ((int64_t) i, last);
        last = i;
        delivered++;
        s_got_close (&got);
    }
    //  Every SEND was routed or bounced; a bounce that found A's own
    //  queue full is lost, and counted so.
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_gt (bounced, 0);
    ck_assert_uint_gt (delivered, 0);
    ck_assert_uint_eq (st.routed, delivered);
    ck_assert_uint_eq (st.routed + st.bounced, COUNT);
    ck_assert_uint_eq (st.bounced, bounced + st.lost);
    free (buf);
    zmq_close (a);
    zmq_close (b);
    s_stop ();
}
END_TEST

START_TEST (test_nodes)
{
    s_start_default ();
    void *a = s_client ("A", "node");
    void *b = s_client ("B", "client");
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 1, "a1"), 0);
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 2, "a2"), 0);
    usleep (20000);
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_NODES, 3, 0);
    s_put (b, &out, NULL, 0);
    s_got_t got;
    ck_assert_int_eq (s_answer_got (b, 3, &got), 0);
    uint32_t count;
    ck_assert_int_eq (tr__mp_array (&got.args, &count), 0);
    ck_assert_uint_eq (count, 2);
    int seen = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t pairs;
        ck_assert_int_eq (tr__mp_map (&got.args, &pairs), 0);
        ck_assert_uint_eq (pairs, 4);
        char key [16], id [16], kind [16];
        s_arg_str (&got, key, sizeof key);
        ck_assert_str_eq (key, "id");
        s_arg_str (&got, id, sizeof id);
        s_arg_str (&got, key, sizeof key);
        ck_assert_str_eq (key, "kind");
        s_arg_str (&got, kind, sizeof kind);
        s_arg_str (&got, key, sizeof key);
        ck_assert_str_eq (key, "names");
        uint64_t names = s_arg_uint (&got);
        s_arg_str (&got, key, sizeof key);
        ck_assert_str_eq (key, "age_ms");
        uint64_t age = s_arg_uint (&got);
        ck_assert_uint_ge (age, 10);
        ck_assert_uint_lt (age, (uint64_t) s_ms (5000));
        if (strcmp (id, "A") == 0) {
            ck_assert_str_eq (kind, "node");
            ck_assert_uint_eq (names, 2);
            seen |= 1;
        }
        else {
            ck_assert_str_eq (id, "B");
            ck_assert_str_eq (kind, "client");
            ck_assert_uint_eq (names, 0);
            seen |= 2;
        }
    }
    ck_assert_int_eq (seen, 3);
    ck_assert_uint_eq (tr__mp_remaining (&got.args), 0);
    s_got_close (&got);
    zmq_close (a);
    zmq_close (b);
    s_stop ();
}
END_TEST

//  Reads a NODE_DOWN's node id and names (sorted, comma-separated).
static void
s_node_down (s_got_t *got, char *id, char *names, size_t size)
{
    s_arg_str (got, id, 256);
    uint32_t count;
    ck_assert_int_eq (tr__mp_array (&got->args, &count), 0);
    char list [16][64];
    ck_assert_uint_le (count, 16);
    for (uint32_t i = 0; i < count; i++)
        s_arg_str (got, list [i], sizeof list [i]);
    qsort (list, count, sizeof list [0], (int (*) (const void *, const void *)) strcmp);
    names [0] = 0;
    for (uint32_t i = 0; i < count; i++)
        snprintf (names + strlen (names), size - strlen (names), "%s%s", i? ",": "", list [i]);
}

START_TEST (test_heartbeat)
{
    enum { H = 100 };
    s_start ((tr_broker_opts_t) { .heartbeat_ms = H });
    void *a = s_client ("A", "node");
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 1, "a1"), 0);
    //  Taken before A's last message, so at most when the broker got it.
    int64_t silent_since = tr_test_now_ms ();
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 2, "a2"), 0);
    void *b = s_client ("B", "node");
    ck_assert_int_eq (s_call (b, TR__V_SUB, 3, "sys.node."), 0);

    //  B keeps talking; A says nothing more.
    s_got_t got;
    int64_t down_at = 0;
    char id [256], names [256];
    while (!down_at && tr_test_now_ms () - silent_since < s_ms (10 * H)) {
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_HEARTBEAT, 0, 0);
        s_put (b, &out, NULL, 0);
        if (s_get (b, &got, H / 3)) {
            ck_assert_int_eq (got.cmd.verb, TR__V_NODE_DOWN);
            down_at = tr_test_now_ms ();
            s_node_down (&got, id, names, sizeof names);
            s_got_close (&got);
        }
    }
    ck_assert_msg (down_at, "A was never declared dead");
    ck_assert_str_eq (id, "A");
    ck_assert_str_eq (names, "a1,a2");
    ck_assert_int_ge (down_at - silent_since, 3 * H);
    ck_assert_int_le (down_at - silent_since, s_ms (3 * H + 2 * H));
    s_expect (b, &got, TR__V_EVENT);
    char topic [64];
    s_arg_str (&got, topic, sizeof topic);
    ck_assert_str_eq (topic, "sys.node.left");
    s_got_close (&got);

    //  A was sent heartbeats while it was silent, one per H or so.
    int beats = 0;
    while (s_get_any (a, &got, 0, true)) {
        ck_assert_int_eq (got.cmd.verb, TR__V_HEARTBEAT);
        ck_assert_uint_eq (got.cmd.seq, 0);
        beats++;
        s_got_close (&got);
    }
    ck_assert_int_ge (beats, 2);
    ck_assert_int_le (beats, 3);
    //  A is forgotten: it must greet again.
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 4, "a1"), TR_EPROTO);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 5, "a1"), 0);

    //  B, kept alive by its heartbeats, is still there.
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.clients, 1);
    ck_assert_uint_eq (st.left, 1);
    ck_assert_uint_eq (st.dead, 1);
    ck_assert_uint_eq (st.names, 1);
    zmq_close (a);
    zmq_close (b);
    s_stop ();
}
END_TEST

//  A client whose connection closes is dropped as soon as the broker
//  finds it gone, long before 3H.
START_TEST (test_closed)
{
    s_start ((tr_broker_opts_t) { .heartbeat_ms = 10000 });
    void *a = s_client ("A", "node");
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 1, "a"), 0);
    void *b = s_client ("B", "node");
    zmq_close (a);
    int64_t start = tr_test_now_ms ();
    bool down = false;
    while (!down && tr_test_now_ms () - start < s_ms (5000)) {
        s_send_to (b, "a", "x", 1);
        s_got_t got;
        while (!down && s_get (b, &got, 20)) {
            if (got.cmd.verb == TR__V_NODE_DOWN) {
                char id [256], names [256];
                s_node_down (&got, id, names, sizeof names);
                ck_assert_str_eq (id, "A");
                ck_assert_str_eq (names, "a");
                down = true;
            }
            else {
                ck_assert_int_eq (got.cmd.verb, TR__V_BOUNCE);
                s_arg_str (&got, (char [8]) { 0 }, 8);
                ck_assert_int_eq (s_arg_int (&got), TR_ENOACTOR);
            }
            s_got_close (&got);
        }
    }
    ck_assert (down);
    ck_assert_int_lt (tr_test_now_ms () - start, s_ms (2000));
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.dead, 1);
    ck_assert_uint_eq (st.names, 0);
    zmq_close (b);
    s_stop ();
}
END_TEST

START_TEST (test_takeover_bye)
{
    s_start_default ();
    void *a1 = s_client ("n1", "node");
    ck_assert_int_eq (s_call (a1, TR__V_REGISTER, 1, "x"), 0);
    ck_assert_int_eq (s_call (a1, TR__V_SUB, 2, "t"), 0);
    void *b = s_client ("B", "node");
    ck_assert_int_eq (s_call (b, TR__V_SUB, 3, "sys.node."), 0);
    //  The same NODE_ID on a new connection replaces the old one.
    void *a2 = s_client ("n1", "node");
    s_got_t got;
    char id [256], names [256], topic [64];
    s_expect (b, &got, TR__V_NODE_DOWN);
    s_node_down (&got, id, names, sizeof names);
    ck_assert_str_eq (id, "n1");
    ck_assert_str_eq (names, "x");
    s_got_close (&got);
    s_expect (b, &got, TR__V_EVENT);
    s_arg_str (&got, topic, sizeof topic);
    ck_assert_str_eq (topic, "sys.node.left");
    s_got_close (&got);
    s_expect (b, &got, TR__V_EVENT);
    s_arg_str (&got, topic, sizeof topic);
    ck_assert_str_eq (topic, "sys.node.joined");
    //  The body is {"id": "n1"}, FROM the broker.
    char from [256];
    s_arg_str (&got, from, sizeof from);
    ck_assert (strncmp (from, "broker@", 7) == 0);
    ck_assert_mem_eq (s_payload (&got), "\x81\xa2id\xa2n1", 7);
    s_got_close (&got);
    //  The old connection's names and subscriptions are gone with it.
    ck_assert_int_eq (s_call (a1, TR__V_NODES, 4, NULL), TR_EPROTO);
    ck_assert (s_quiet (a2, 20));
    ck_assert_int_eq (s_call (a2, TR__V_REGISTER, 5, "x"), 0);
    s_publish (b, "t", NULL, 0);
    ck_assert (s_quiet (a1, 50));

    //  BYE.
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_BYE, 0, 0);
    s_put (a2, &out, NULL, 0);
    s_expect (b, &got, TR__V_NODE_DOWN);
    s_node_down (&got, id, names, sizeof names);
    ck_assert_str_eq (id, "n1");
    ck_assert_str_eq (names, "x");
    s_got_close (&got);
    s_expect (b, &got, TR__V_EVENT);
    s_got_close (&got);
    ck_assert_int_eq (s_call (a2, TR__V_NODES, 6, NULL), TR_EPROTO);
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.joined, 3);
    ck_assert_uint_eq (st.left, 2);
    ck_assert_uint_eq (st.dead, 0);
    ck_assert_uint_eq (st.clients, 1);
    ck_assert_uint_eq (st.names, 0);
    zmq_close (a1);
    zmq_close (a2);
    zmq_close (b);
    s_stop ();
}
END_TEST

//  NODE_DOWN for a client holding more names than one frame can list
//  comes as several messages, each within max_frame.
START_TEST (test_node_down_split)
{
    s_start ((tr_broker_opts_t) { .max_frame = 1024 });
    void *a = s_client ("A", "node");
    void *b = s_client ("B", "node");
    enum { NAMES = 7 };
    for (int i = 0; i < NAMES; i++) {
        char name [256];
        memset (name, 'a' + i, 255);
        name [255] = 0;
        ck_assert_int_eq (s_call (a, TR__V_REGISTER, (uint64_t) i + 1, name), 0);
    }
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_BYE, 0, 0);
    s_put (a, &out, NULL, 0);
    int seen = 0, messages = 0;
    while (seen < NAMES) {
        s_got_t got;
        s_expect (b, &got, TR__V_NODE_DOWN);
        ck_assert_uint_le (zmq_msg_size (&got.frames [0]), 1024);
        char id [256];
        s_arg_str (&got, id, sizeof id);
        ck_assert_str_eq (id, "A");
        uint32_t count;
        ck_assert_int_eq (tr__mp_array (&got.args, &count), 0);
        ck_assert_uint_gt (count, 0);
        seen += (int) count;
        messages++;
        s_got_close (&got);
    }
    ck_assert_int_eq (seen, NAMES);
    ck_assert_int_gt (messages, 1);
    ck_assert (s_quiet (b, 50));
    zmq_close (a);
    zmq_close (b);
    s_stop ();
}
END_TEST

//  Receives an EVENT and checks its topic, FROM and body.
static void
s_expect_event (void *sock, const char *topic, const char *from, const void *body, size_t size)
{
    s_got_t got;
    s_expect (sock, &got, TR__V_EVENT);
    char text [256];
    s_arg_str (&got, text, sizeof text);
    ck_assert_str_eq (text, topic);
    s_arg_str (&got, text, sizeof text);
    ck_assert_str_eq (text, from);
    ck_assert_uint_eq (got.cmd.nargs, 2);
    ck_assert_uint_eq (s_payload_size (&got), size);
    if (size)
        ck_assert_mem_eq (s_payload (&got), body, size);
    s_got_close (&got);
}

START_TEST (test_events)
{
    s_start_default ();
    void *a = s_client ("A", "node");
    void *b = s_client ("B", "node");
    void *c = s_client ("C", "client");
    void *d = s_client ("D", "actor");
    //  A subscribes to four prefixes of the same topic; B to another.
    ck_assert_int_eq (s_call (a, TR__V_SUB, 1, ""), 0);
    ck_assert_int_eq (s_call (a, TR__V_SUB, 2, "job"), 0);
    ck_assert_int_eq (s_call (a, TR__V_SUB, 3, "job."), 0);
    ck_assert_int_eq (s_call (a, TR__V_SUB, 4, "job.done"), 0);
    ck_assert_int_eq (s_call (a, TR__V_SUB, 5, "job.done"), 0);    //  again: OK
    ck_assert_int_eq (s_call (b, TR__V_SUB, 6, "jobs"), 0);
    ck_assert_int_eq (s_call (b, TR__V_SUB, 7, "bad prefix"), TR_EINVAL);
    ck_assert_int_eq (s_call (b, TR__V_UNSUB, 8, "job"), TR_ENOTFOUND);

    s_publish (c, "job.done.1", "\x2a", 1);
    s_expect_event (a, "job.done.1", "C", "\x2a", 1);
    ck_assert (s_quiet (a, 50));                    //  one copy only
    ck_assert (s_quiet (b, 0));
    s_publish (c, "jobs.x", NULL, 0);               //  no body: nil
    s_expect_event (a, "jobs.x", "C", NULL, 0);
    s_expect_event (b, "jobs.x", "C", NULL, 0);
    //  Order from one publisher.
    for (uint8_t i = 0; i < 100; i++)
        s_publish (d, "jobs", &i, 1);
    for (uint8_t i = 0; i < 100; i++) {
        s_expect_event (a, "jobs", "D", &i, 1);
        s_expect_event (b, "jobs", "D", &i, 1);
    }
    //  sys. belongs to nodes (and sys.node. to the broker).
    s_publish (c, "sys.actor.up", "\xc0", 1);
    s_publish (d, "sys.dead_letter", "\xc0", 1);
    s_publish (b, "sys.node.joined", "\xc0", 1);
    s_publish (b, "bad topic", "\xc0", 1);
    s_publish (b, "sys.actor.up", "\xc0", 1);
    s_expect_event (a, "sys.actor.up", "B", "\xc0", 1);
    ck_assert (s_quiet (a, 50));
    //  UNSUB.
    ck_assert_int_eq (s_call (a, TR__V_UNSUB, 9, ""), 0);
    ck_assert_int_eq (s_call (a, TR__V_UNSUB, 10, "job"), 0);
    ck_assert_int_eq (s_call (a, TR__V_UNSUB, 11, "job."), 0);
    s_publish (c, "job.x", NULL, 0);
    s_publish (c, "job.done", NULL, 0);
    s_expect_event (a, "job.done", "C", NULL, 0);
    ck_assert (s_quiet (a, 50));
    //  The publisher does not get its own events back, even subscribed
    //  (a node hands them to its own subscribers itself); others do.
    ck_assert_int_eq (s_call (c, TR__V_SUB, 12, "self"), 0);
    ck_assert_int_eq (s_call (b, TR__V_SUB, 13, "self"), 0);
    s_publish (c, "self.1", NULL, 0);
    s_expect_event (b, "self.1", "C", NULL, 0);
    ck_assert (s_quiet (c, 50));

    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.events, 4 + 2 + 100 + 1 + 2 + 1); //  4 x sys.node.joined
    ck_assert_uint_eq (st.refused, 2 + 4);
    ck_assert_uint_eq (st.events_dropped, 0);
    zmq_close (a);
    zmq_close (b);
    zmq_close (c);
    zmq_close (d);
    s_stop ();
}
END_TEST

//  A subscriber that does not keep up loses events, and is told how many
//  in its next EVENT: received + DROPPED = published.
START_TEST (test_events_dropped)
{
    s_start ((tr_broker_opts_t) { .max_queue = 10 });
    void *pub = s_client ("P", "node");
    void *sub = s_dealer_hwm (10);
    ck_assert_int_eq (s_hello (sub, "TRP", 1, "S", "node", 1000), 0);
    ck_assert_int_eq (s_call (sub, TR__V_SUB, 1, "e"), 0);
    enum { COUNT = 2000, SIZE = 20000 };
    uint8_t *body = (uint8_t *) calloc (1, SIZE);
    for (int i = 0; i < COUNT; i++)
        s_publish (pub, "e", body, SIZE);
    //  Wait for the broker to have handled them all.
    int64_t start = tr_test_now_ms ();
    while (s_stats ().events < COUNT + 2 && tr_test_now_ms () - start < s_ms (5000))
        usleep (1000);
    uint64_t received = 0, dropped = 0;
    s_got_t got;
    while (s_get (sub, &got, s_ms (300))) {
        ck_assert_int_eq (got.cmd.verb, TR__V_EVENT);
        s_arg_str (&got, (char [8]) { 0 }, 8);
        s_arg_str (&got, (char [8]) { 0 }, 8);
        if (got.cmd.nargs == 3)
            dropped += s_arg_uint (&got);
        received++;
        s_got_close (&got);
    }
    //  One more, to carry the count of the last losses.
    s_publish (pub, "e", NULL, 0);
    s_expect (sub, &got, TR__V_EVENT);
    s_arg_str (&got, (char [8]) { 0 }, 8);
    s_arg_str (&got, (char [8]) { 0 }, 8);
    if (got.cmd.nargs == 3)
        dropped += s_arg_uint (&got);
    s_got_close (&got);
    ck_assert_uint_gt (dropped, 0);
    ck_assert_uint_eq (received + dropped, COUNT);
    ck_assert_uint_eq (s_stats ().events_dropped, dropped);
    free (body);
    zmq_close (pub);
    zmq_close (sub);
    s_stop ();
}
END_TEST

//  Sends a raw frame and expects ERROR with a code and SEQ.
static void
s_bad (void *sock, const void *data, size_t size, int code, uint64_t seq)
{
    s_raw (sock, data, size);
    ck_assert_int_eq (s_answer (sock, seq), code);
}

//  The good client is served between every bad message.
static void
s_good (void *good, uint64_t *seq)
{
    (*seq)++;
    ck_assert_int_eq (s_call (good, TR__V_REGISTER, *seq, "good"), 0);
}

START_TEST (test_malformed)
{
    s_start_default ();
    void *good = s_client ("good", "node");
    uint64_t seq = 100;
    for (int greeted = 0; greeted < 2; greeted++) {
        void *bad = s_dealer ();
        if (greeted)
            ck_assert_int_eq (s_hello (bad, "TRP", 1, "bad", "actor", 1000), 0);
        //  Not msgpack, not an array, too short, verb not a str, SEQ not
        //  a uint, an empty frame, a verb too long.
        s_bad (bad, "\xc1\xc1", 2, TR_EMALFORMED, 0);
        s_good (good, &seq);
        s_bad (bad, "\x81\xa1k\x01", 4, TR_EMALFORMED, 0);
        s_bad (bad, "\x91\xa3NOP", 5, TR_EMALFORMED, 0);
        s_bad (bad, "\x92\x05\x05", 3, TR_EMALFORMED, 5);
        s_bad (bad, "\x92\xa5NODES\xff", 8, TR_EMALFORMED, 0);
        s_bad (bad, "", 0, TR_EMALFORMED, 0);
        s_good (good, &seq);
        char word [64] = "\x92\xd9\x21";
        memset (word + 3, 'A', 33);
        word [36] = 0x07;
        s_bad (bad, word, 37, TR_EMALFORMED, 7);
        //  A truncated frame: an array of three with two elements.
        s_bad (bad, "\x93\xa5NODES\x08", 8, greeted? TR_EMALFORMED: TR_EPROTO, 8);
        //  Bytes after the array.
        s_bad (bad, "\x92\xa5NODES\x09\x00", 9, greeted? TR_EMALFORMED: TR_EPROTO, 9);
        s_good (good, &seq);
        //  Known verbs with missing or mistyped arguments.
        s_bad (bad, "\x92\xa8REGISTER\x0a", 11, greeted? TR_EMALFORMED: TR_EPROTO, 10);
        s_bad (bad, "\x93\xa8REGISTER\x0b\x01", 12, greeted? TR_EMALFORMED: TR_EPROTO, 11);
        s_bad (bad, "\x92\xa3SUB\x0c", 6, greeted? TR_EMALFORMED: TR_EPROTO, 12);
        s_bad (bad, "\x92\xa3PUB\x00", 6, greeted? TR_EMALFORMED: TR_EPROTO, 0);
        //  An argument nested too deep.
        uint8_t deep [64] = "\x93\xa8REGISTER\x0d";
        memset (deep + 11, 0x91, 40);
        deep [51] = 0x01;
        s_bad (bad, deep, 52, greeted? TR_EMALFORMED: TR_EPROTO, 13);
        s_good (good, &seq);
        //  Unknown verbs, verbs only the broker sends; the scratchpad
        //  served.
        s_bad (bad, "\x92\xa3""FOO\x0e", 6, greeted? TR_EINVAL: TR_EPROTO, 14);
        s_bad (bad, "\x92\xa5hello\x0f", 8, greeted? TR_EINVAL: TR_EPROTO, 15);
        s_bad (bad, "\x92\xa7""DELIVER\x10", 10, greeted? TR_EINVAL: TR_EPROTO, 16);
        s_bad (bad, "\x93\xa6KV_GET\x11\xa1k", 11, greeted? TR_ENOTFOUND: TR_EPROTO, 17);
        s_good (good, &seq);
        //  Three frames: the SEQ is still read.
        zmq_send (bad, "\x92\xa5NODES\x12", 8, ZMQ_SNDMORE);
        zmq_send (bad, "x", 1, ZMQ_SNDMORE);
        zmq_send (bad, "y", 1, 0);
        ck_assert_int_eq (s_answer (bad, 18), TR_EMALFORMED);
        zmq_send (bad, "\xc1", 1, ZMQ_SNDMORE);
        zmq_send (bad, "x", 1, ZMQ_SNDMORE);
        zmq_send (bad, "y", 1, ZMQ_SNDMORE);
        zmq_send (bad, "z", 1, 0);
        ck_assert_int_eq (s_answer (bad, 0), TR_EMALFORMED);
        s_good (good, &seq);
        //  Still served after all that.
        if (greeted)
            ck_assert_int_eq (s_call (bad, TR__V_REGISTER, 19, "bad"), 0);
        else
            ck_assert_int_eq (s_hello (bad, "TRP", 1, "bad2", "actor", 1000), 0);
        zmq_close (bad);
    }
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.malformed, 9 + 16);
    ck_assert_uint_eq (st.refused, 11 + 4);
    ck_assert_uint_eq (st.lost, 0);
    ck_assert_uint_eq (st.clients, 3);
    zmq_close (good);
    s_stop ();
}
END_TEST

//  A frame over max_frame: ZeroMQ disconnects the peer before the broker
//  sees it; nothing is routed, others are served.
START_TEST (test_oversized)
{
    s_start ((tr_broker_opts_t) { .max_frame = 4096 });
    void *a = s_client ("A", "node");
    void *b = s_client ("B", "node");
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 1, "b"), 0);
    uint8_t *big = (uint8_t *) calloc (1, 5000);
    s_send_to (a, "b", big, 4000);          //  fits
    s_got_t got;
    s_expect (b, &got, TR__V_DELIVER);
    s_got_close (&got);
    s_send_to (a, "b", big, 5000);          //  does not
    ck_assert (s_quiet (b, 100));
    free (big);
    //  A's connection was closed; its DEALER reconnects as a new peer,
    //  which has not greeted.
    ck_assert_int_eq (s_call (a, TR__V_NODES, 2, NULL), TR_EPROTO);
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 3, "b2"), 0);
    ck_assert_uint_eq (s_stats ().routed, 1);
    zmq_close (a);
    zmq_close (b);
    s_stop ();
}
END_TEST

//  Past its quotas, a client gets TR_ELIMIT, and the broker holds no
//  more for it.
START_TEST (test_quota)
{
    s_start ((tr_broker_opts_t) { .max_names = 100, .max_subs = 50 });
    void *a = s_client ("A", "node");
    enum { COUNT = 1000 };
    for (int i = 0; i < COUNT; i++) {
        char name [32];
        snprintf (name, sizeof name, "n%d", i);
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_REGISTER, (uint64_t) i + 1, 1);
        tr__wire_str (&out, name, strlen (name));
        s_put (a, &out, NULL, 0);
    }
    for (int i = 0; i < COUNT; i++)
        ck_assert_int_eq (s_answer (a, (uint64_t) i + 1), i < 100? 0: TR_ELIMIT);
    //  Names held again are fine; a freed slot can be used.
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 2001, "n5"), 0);
    ck_assert_int_eq (s_call (a, TR__V_UNREGISTER, 2002, "n5"), 0);
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 2003, "n500"), 0);
    ck_assert_int_eq (s_call (a, TR__V_REGISTER, 2004, "n501"), TR_ELIMIT);
    for (int i = 0; i < 60; i++) {
        char prefix [32];
        snprintf (prefix, sizeof prefix, "p%d", i);
        ck_assert_int_eq (s_call (a, TR__V_SUB, 3000 + (uint64_t) i, prefix),
                          i < 50? 0: TR_ELIMIT);
    }
    //  Another client has its own quota.
    void *b = s_client ("B", "node");
    ck_assert_int_eq (s_call (b, TR__V_REGISTER, 1, "b"), 0);
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.names, 101);
    ck_assert_uint_eq (st.refused, 900 + 1 + 10);
    ck_assert_uint_eq (st.lost, 0);
    zmq_close (a);
    zmq_close (b);
    s_stop ();
}
END_TEST

//  --------------------------------------------------------------------------
//  The scratchpad

//  Reads the LIMITS map of a greeting into values, in the order sent.
static void
s_limits (void *sock, const char *id, uint64_t *values, size_t count)
{
    tr__wire_out_t out;
    s_hello_write (&out, 1, "TRP", 1, id, "node", 1000);
    s_put (sock, &out, NULL, 0);
    s_got_t got;
    ck_assert_int_eq (s_answer_got (sock, 1, &got), 0);
    char text [256];
    s_arg_str (&got, text, sizeof text);
    s_arg_uint (&got);
    s_arg_uint (&got);
    s_arg_str (&got, text, sizeof text);
    s_arg_uint (&got);
    uint32_t pairs;
    ck_assert_int_eq (tr__mp_map (&got.args, &pairs), 0);
    ck_assert_uint_eq (pairs, count);
    for (uint32_t i = 0; i < pairs; i++) {
        s_arg_str (&got, text, sizeof text);
        values [i] = s_arg_uint (&got);
    }
    s_got_close (&got);
}

//  Every verb's answer, and every refusal.
START_TEST (test_kv_verbs)
{
    s_start ((tr_broker_opts_t) { .max_key = 16, .max_value = 64, .max_list = 3,
                                  .max_subs = 4 });
    void *a = s_dealer ();
    uint64_t limits [8];
    s_limits (a, "A", limits, 8);
    ck_assert_uint_eq (limits [3], 16);             //  max_key
    ck_assert_uint_eq (limits [4], 64);             //  max_value
    ck_assert_uint_eq (limits [5], 3);              //  max_list

    //  Get, put, get.
    s_kv_value_t value;
    uint64_t v1, v2, v3, v4, v5, v6, v;
    ck_assert_int_eq (s_kv_get (a, 2, "k", &value), TR_ENOTFOUND);
    ck_assert_int_eq (s_kv_put (a, 3, "k", 0, "\x01", 1, &v1), 0);
    ck_assert_uint_eq (v1, 1);
    ck_assert_int_eq (s_kv_get (a, 4, "k", &value), 0);
    ck_assert_uint_eq (value.size, 1);
    ck_assert_uint_eq (value.data [0], 1);
    ck_assert_uint_eq (value.version, v1);
    ck_assert_uint_eq (value.ttl_ms, 0);
    ck_assert_int_eq (s_kv_put (a, 5, "k", 0, "\xa3" "abc", 4, &v2), 0);
    ck_assert_uint_gt (v2, v1);
    ck_assert_int_eq (s_kv_get (a, 6, "k", &value), 0);
    ck_assert_uint_eq (value.size, 4);
    ck_assert (memcmp (value.data, "\xa3" "abc", 4) == 0);
    ck_assert_uint_eq (value.version, v2);

    //  Compare-and-set: a stale version, 0 on a key that exists, the
    //  right version; 0 on a new key, twice.
    ck_assert_int_eq (s_kv_cas (a, 7, "k", v1, "\x02", 1, NULL), TR_ECONFLICT);
    ck_assert_int_eq (s_kv_cas (a, 8, "k", 0, "\x02", 1, NULL), TR_ECONFLICT);
    ck_assert_int_eq (s_kv_get (a, 9, "k", &value), 0);
    ck_assert_uint_eq (value.version, v2);
    ck_assert_int_eq (s_kv_cas (a, 10, "k", v2, "\x03", 1, &v3), 0);
    ck_assert_uint_gt (v3, v2);
    ck_assert_int_eq (s_kv_cas (a, 11, "n", 0, "\x04", 1, &v4), 0);
    ck_assert_uint_gt (v4, v3);
    ck_assert_int_eq (s_kv_cas (a, 12, "n", 0, "\x04", 1, NULL), TR_ECONFLICT);

    //  Delete; a missing key; a CAS on a deleted key expects 0.
    ck_assert_int_eq (s_kv_del (a, 13, "k", &v5), 0);
    ck_assert_uint_gt (v5, v4);
    ck_assert_int_eq (s_kv_get (a, 14, "k", &value), TR_ENOTFOUND);
    ck_assert_int_eq (s_kv_del (a, 15, "k", NULL), TR_ENOTFOUND);
    ck_assert_int_eq (s_kv_cas (a, 16, "k", 0, "\x05", 1, &v6), 0);
    ck_assert_uint_eq (v6, v5 + 1);

    //  List and snapshot, in byte order, up to max_list keys.
    s_kv_item_t items [8];
    size_t count;
    uint64_t at = 0;
    ck_assert_int_eq (s_kv_list (a, 17, "", false, items, 8, &count, NULL), 0);
    ck_assert_uint_eq (count, 2);
    ck_assert_str_eq (items [0].key, "k");
    ck_assert_uint_eq (items [0].version, v6);
    ck_assert_str_eq (items [1].key, "n");
    ck_assert_uint_eq (items [1].version, v4);
    ck_assert_int_eq (s_kv_put (a, 18, "m", 0, "\x06", 1, NULL), 0);
    ck_assert_int_eq (s_kv_list (a, 19, "", false, items, 8, &count, NULL), 0);
    ck_assert_uint_eq (count, 3);
    ck_assert_str_eq (items [1].key, "m");
    ck_assert_int_eq (s_kv_put (a, 20, "o", 0, "\x07", 1, &v), 0);
    ck_assert_int_eq (s_kv_list (a, 21, "", false, items, 8, &count, NULL), TR_ELIMIT);
    ck_assert_int_eq (s_kv_list (a, 22, "", true, items, 8, &count, &at), TR_ELIMIT);
    ck_assert_int_eq (s_kv_list (a, 23, "n", false, items, 8, &count, NULL), 0);
    ck_assert_uint_eq (count, 1);
    ck_assert_int_eq (s_kv_list (a, 24, "zz", false, items, 8, &count, NULL), 0);
    ck_assert_uint_eq (count, 0);
    ck_assert_int_eq (s_kv_list (a, 25, "k", true, items, 8, &count, &at), 0);
    ck_assert_uint_eq (at, v);
    ck_assert_uint_eq (count, 1);
    ck_assert_str_eq (items [0].key, "k");
    ck_assert_uint_eq (items [0].version, v6);
    ck_assert_uint_eq (items [0].size, 1);
    ck_assert_uint_eq (items [0].value [0], 5);

    //  Payloads: missing, empty, not msgpack, two values, too deep; a
    //  value over max_value, one just at it.
    ck_assert_int_eq (s_kv_put (a, 30, "p", 0, NULL, 0, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_kv_put (a, 31, "p", 0, "", 0, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_kv_put (a, 32, "p", 0, "\xc1", 1, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_kv_put (a, 33, "p", 0, "\x01\x01", 2, NULL), TR_EMALFORMED);
    ck_assert_int_eq (s_kv_cas (a, 34, "p", 0, NULL, 0, NULL), TR_EMALFORMED);
    uint8_t deep [40];
    memset (deep, 0x91, 33);
    deep [33] = 0x01;
    ck_assert_int_eq (s_kv_put (a, 35, "p", 0, deep, 34, NULL), TR_EMALFORMED);
    uint8_t big [70];
    big [0] = 0xd9;
    big [1] = 63;
    memset (big + 2, 'x', 63);
    ck_assert_int_eq (s_kv_put (a, 36, "p", 0, big, 65, NULL), TR_ETOOBIG);
    big [1] = 62;
    ck_assert_int_eq (s_kv_put (a, 37, "p", 0, big, 64, NULL), 0);

    //  Keys and TTLs: over this broker's max_key, over the protocol's,
    //  a space; a TTL past 2^63 - 1.
    ck_assert_int_eq (s_kv_put (a, 40, "0123456789abcdefg", 0, "\x01", 1, NULL), TR_EINVAL);
    ck_assert_int_eq (s_kv_put (a, 41, "0123456789abcdef", 0, "\x01", 1, NULL), 0);
    char long_key [1100];
    memset (long_key, 'k', 1025);
    long_key [1025] = 0;
    ck_assert_int_eq (s_kv_get (a, 42, long_key, &value), TR_EINVAL);
    ck_assert_int_eq (s_kv_get (a, 43, "a key", &value), TR_EINVAL);
    ck_assert_int_eq (s_kv_list (a, 44, "0123456789abcdefg", false, items, 8, &count, NULL),
                      TR_EINVAL);
    ck_assert_int_eq (s_kv_put (a, 45, "t", UINT64_C (1) << 63, "\x01", 1, NULL), TR_EINVAL);
    ck_assert_int_eq (s_kv_put (a, 46, "t", INT64_MAX, "\x01", 1, NULL), 0);
    ck_assert_int_eq (s_kv_get (a, 47, "t", &value), 0);
    ck_assert_uint_gt (value.ttl_ms, 0);

    //  Missing and mistyped arguments.
    s_bad (a, "\x92\xa6KV_GET\x32", 9, TR_EMALFORMED, 50);
    s_bad (a, "\x94\xa6KV_PUT\x33\xa1k\xa1x", 13, TR_EMALFORMED, 51);
    s_bad (a, "\x93\xa8KV_WATCH\x34\xa1k", 13, TR_EMALFORMED, 52);
    s_bad (a, "\x93\xa8KV_WATCH\x35\x01", 12, TR_EMALFORMED, 53);

    //  Watches: an unknown one, and the quota shared with subscriptions.
    ck_assert_int_eq (s_call (a, TR__V_KV_UNWATCH, 60, "x"), TR_ENOTFOUND);
    ck_assert_int_eq (s_call (a, TR__V_SUB, 61, "s1"), 0);
    ck_assert_int_eq (s_call (a, TR__V_SUB, 62, "s2"), 0);
    ck_assert_int_eq (s_kv_watch (a, 63, "w1", 0, &at), 0);
    ck_assert_int_eq (s_kv_watch (a, 64, "", 0, &at), 0);
    ck_assert_int_eq (s_kv_watch (a, 65, "w3", 0, &at), TR_ELIMIT);
    ck_assert_int_eq (s_call (a, TR__V_SUB, 66, "s3"), TR_ELIMIT);
    ck_assert_int_eq (s_kv_watch (a, 67, "w1", 0, &at), 0);        //  replaced
    ck_assert_uint_eq (at, s_stats ().kv_version);
    ck_assert_int_eq (s_call (a, TR__V_KV_UNWATCH, 68, "w1"), 0);
    ck_assert_int_eq (s_call (a, TR__V_KV_UNWATCH, 69, "w1"), TR_ENOTFOUND);
    ck_assert_int_eq (s_call (a, TR__V_SUB, 70, "s3"), 0);
    ck_assert_int_eq (s_call (a, TR__V_KV_UNWATCH, 71, ""), 0);

    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.kv_keys, 7);              //  k m n o p 0123456789abcdef t
    ck_assert_uint_eq (st.kv_writes, 11);
    ck_assert_uint_eq (st.kv_version, 11);
    ck_assert_uint_eq (st.lost, 0);
    zmq_close (a);
    s_stop ();
}
END_TEST

//  A msgpack uint 16 (three bytes), as the tests' values.
static void
s_u16 (uint8_t *buf, unsigned value)
{
    buf [0] = 0xcd;
    buf [1] = (uint8_t) (value >> 8);
    buf [2] = (uint8_t) value;
}

//  Changes reach the watchers of their prefix, and only them, in version
//  order with their values, deletions with an empty payload; a watcher
//  that leaves hears nothing more.
static void
s_kv_watch_run (void)
{
    void *w = s_client ("W", "node");
    void *all = s_client ("ALL", "node");
    void *p = s_client ("P", "node");
    uint64_t at;
    ck_assert_int_eq (s_kv_watch (w, 1, "a.", 0, &at), 0);
    ck_assert_uint_eq (at, 0);
    ck_assert_int_eq (s_kv_watch (all, 1, "", 0, &at), 0);
    //  Writes under a. and b., pipelined; every tenth a deletion (some
    //  of a key that is missing: refused, no change).
    enum { N = 2000 };
    static struct { char key [16]; bool del; unsigned value; } ops [N];
    for (unsigned i = 0; i < N; i++) {
        snprintf (ops [i].key, sizeof ops [i].key, "%s.%u", i % 3? "a": "b", i % 7);
        ops [i].del = i % 10 == 9;
        ops [i].value = i;
        tr__wire_out_t out;
        uint8_t value [3];
        s_u16 (value, i);
        if (ops [i].del) {
            tr__wire_begin (&out, TR__V_KV_DEL, i + 1, 1);
            tr__wire_str (&out, ops [i].key, strlen (ops [i].key));
            s_put (p, &out, NULL, 0);
        }
        else
            s_kv_put_send (p, i + 1, ops [i].key, 0, value, 3);
    }
    static uint64_t versions [N];
    size_t expected_a = 0, expected_all = 0;
    uint64_t last = 0;
    for (unsigned i = 0; i < N; i++) {
        int code = s_kv_versioned (p, i + 1, &versions [i]);
        if (code) {
            ck_assert (ops [i].del);
            ck_assert_int_eq (code, TR_ENOTFOUND);
            versions [i] = 0;
            continue;
        }
        ck_assert_uint_gt (versions [i], last);     //  in the order written
        last = versions [i];
        expected_all++;
        if (ops [i].key [0] == 'a')
            expected_a++;
    }
    //  W hears of a.* exactly, ALL of everything, each in order.
    for (int pass = 0; pass < 2; pass++) {
        void *sock = pass? all: w;
        unsigned i = 0;
        size_t got = 0;
        s_kv_change_t change;
        while (got < (pass? expected_all: expected_a)) {
            ck_assert_int_eq (s_kv_next (sock, &change, s_ms (2000)), TR__V_KV_CHANGE);
            while (!versions [i] || (!pass && ops [i].key [0] != 'a'))
                i++;
            ck_assert_str_eq (change.prefix, pass? "": "a.");
            ck_assert_str_eq (change.key, ops [i].key);
            ck_assert_uint_eq (change.version, versions [i]);
            if (ops [i].del)
                ck_assert_uint_eq (change.size, 0);
            else {
                ck_assert_uint_eq (change.size, 3);
                uint8_t value [3];
                s_u16 (value, ops [i].value);
                ck_assert (memcmp (change.value, value, 3) == 0);
            }
            got++;
            i++;
        }
        ck_assert (s_quiet (sock, 100));
    }
    ck_assert_uint_eq (s_stats ().kv_changes, expected_a + expected_all);

    //  W is replaced by a new connection with its NODE_ID, ALL says BYE:
    //  their watches end with them.
    void *w2 = s_client ("W", "node");
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_BYE, 0, 0);
    s_put (all, &out, NULL, 0);
    //  P hears of both going, W2 of ALL.
    s_got_t got;
    for (int i = 0; i < 3; i++) {
        s_expect (i < 2? p: w2, &got, TR__V_NODE_DOWN);
        s_got_close (&got);
    }
    ck_assert_int_eq (s_kv_put (p, N + 1, "a.0", 0, "\x01", 1, NULL), 0);
    ck_assert (s_quiet (w, 200));
    ck_assert (s_quiet (w2, 10));
    ck_assert_uint_eq (s_stats ().kv_changes, expected_a + expected_all);
    ck_assert_int_eq (s_call (w2, TR__V_KV_UNWATCH, 3, "a."), TR_ENOTFOUND);
    zmq_close (w);
    zmq_close (w2);
    zmq_close (all);
    zmq_close (p);
}

START_TEST (test_kv_watch)
{
    s_start_default ();
    s_kv_watch_run ();
    s_stop ();
}
END_TEST

//  The same with the scratchpad logged under fsync always: the answers
//  and the changes wait for the log's grouped syncs (tr_kvlog.h), and
//  still come all, in order.
START_TEST (test_kv_watch_always)
{
    char dir [] = "/tmp/tr_broker_test.XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    s_start ((tr_broker_opts_t) { .data_dir = dir, .fsync = TR_FSYNC_ALWAYS });
    s_kv_watch_run ();
    ck_assert_uint_eq (s_stats ().lost, 0);
    s_stop ();
    char path [128];
    snprintf (path, sizeof path, "%s/scratchpad.log", dir);
    unlink (path);
    snprintf (path, sizeof path, "%s/scratchpad.lock", dir);
    unlink (path);
    ck_assert_int_eq (rmdir (dir), 0);
}
END_TEST

//  A watcher that does not read: once its backlog passes its bound it is
//  sent KV_RESYNC after the changes that fit, in order, and its watch
//  ends. A watch from a version the history no longer covers, or from
//  the future, is resynced at once.
START_TEST (test_kv_resync)
{
    s_start_default ();
    void *w = s_dealer_hwm (10);
    ck_assert_int_eq (s_hello (w, "TRP", 1, "W", "node", 1000), 0);
    void *p = s_client ("P", "node");
    uint64_t at;
    ck_assert_int_eq (s_kv_watch (w, 1, "r.", 0, &at), 0);
    //  10,000 in the broker's queue to W, 10,000 in the watch's backlog,
    //  and what the sockets' buffers hold: 40,000 changes of 1 KB are
    //  more than all that.
    enum { N = 40000, WINDOW = 1000, SIZE = 1024 };
    uint8_t value [SIZE];
    value [0] = 0xc5;                   //  bin 16
    value [1] = (SIZE - 3) >> 8;
    value [2] = (SIZE - 3) & 0xff;
    memset (value + 3, 'v', SIZE - 3);
    uint64_t first = 0;
    for (unsigned i = 0; i < N; i += WINDOW) {
        for (unsigned k = i; k < i + WINDOW; k++) {
            char key [16];
            snprintf (key, sizeof key, "r.%u", k % 100);
            s_kv_put_send (p, k + 1, key, 0, value, SIZE);
        }
        for (unsigned k = i; k < i + WINDOW; k++) {
            uint64_t version;
            ck_assert_int_eq (s_kv_versioned (p, k + 1, &version), 0);
            if (k == 0)
                first = version;
        }
    }
    //  The watcher reads now: changes in order from the first write, then
    //  KV_RESYNC, then nothing.
    s_kv_change_t change;
    uint64_t expect = first;
    int verb;
    while ((verb = s_kv_next (w, &change, s_ms (2000))) == TR__V_KV_CHANGE) {
        ck_assert_uint_eq (change.version, expect);
        ck_assert_uint_eq (change.size, SIZE);
        expect++;
    }
    ck_assert_int_eq (verb, TR__V_KV_RESYNC);
    ck_assert_str_eq (change.prefix, "r.");
    ck_assert_uint_lt (expect, first + N);
    ck_assert (s_quiet (w, 100));
    ck_assert_int_eq (s_call (w, TR__V_KV_UNWATCH, 2, "r."), TR_ENOTFOUND);
    ck_assert_uint_eq (s_stats ().kv_resyncs, 1);

    //  From a version long gone, and from a version not reached yet.
    ck_assert_int_eq (s_kv_watch (w, 3, "r.", 1, &at), 0);
    ck_assert_uint_eq (at, first + N - 1);
    ck_assert_int_eq (s_kv_next (w, &change, s_ms (2000)), TR__V_KV_RESYNC);
    ck_assert_int_eq (s_kv_watch (w, 4, "r.", at + 10, &at), 0);
    ck_assert_int_eq (s_kv_next (w, &change, s_ms (2000)), TR__V_KV_RESYNC);
    //  From the last version: nothing is missed or repeated.
    ck_assert_int_eq (s_kv_watch (w, 5, "r.", at - 2, &at), 0);
    ck_assert_int_eq (s_kv_next (w, &change, s_ms (2000)), TR__V_KV_CHANGE);
    ck_assert_uint_eq (change.version, at - 1);
    ck_assert_int_eq (s_kv_next (w, &change, s_ms (2000)), TR__V_KV_CHANGE);
    ck_assert_uint_eq (change.version, at);
    ck_assert (s_quiet (w, 100));
    ck_assert_uint_eq (s_stats ().kv_resyncs, 3);
    zmq_close (w);
    zmq_close (p);
    s_stop ();
}
END_TEST

//  A key's TTL: the time left is reported, and at its end the key goes
//  and its watchers hear of it at once, with no request to prompt it.
START_TEST (test_kv_expiry)
{
    s_start_default ();
    void *w = s_client ("W", "node");
    void *p = s_client ("P", "node");
    uint64_t at, v1, v2;
    ck_assert_int_eq (s_kv_watch (w, 1, "t.", 0, &at), 0);
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_kv_put (p, 2, "t.a", 300, "\x01", 1, &v1), 0);
    ck_assert_int_eq (s_kv_put (p, 3, "t.b", 0, "\x02", 1, &v2), 0);
    s_kv_value_t value;
    ck_assert_int_eq (s_kv_get (p, 4, "t.a", &value), 0);
    ck_assert_uint_gt (value.ttl_ms, 0);
    ck_assert_uint_le (value.ttl_ms, 300);
    s_kv_change_t change;
    ck_assert_int_eq (s_kv_next (w, &change, s_ms (2000)), TR__V_KV_CHANGE);
    ck_assert_uint_eq (change.version, v1);
    ck_assert_int_eq (s_kv_next (w, &change, s_ms (2000)), TR__V_KV_CHANGE);
    ck_assert_uint_eq (change.version, v2);
    ck_assert_int_eq (s_kv_next (w, &change, s_ms (3000)), TR__V_KV_CHANGE);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_str_eq (change.key, "t.a");
    ck_assert_uint_eq (change.version, v2 + 1);
    ck_assert_uint_eq (change.size, 0);
    ck_assert_msg (took >= 290 && took < 300 + s_ms (500), "expired after %lld ms",
                   (long long) took);
    ck_assert_int_eq (s_kv_get (p, 5, "t.a", &value), TR_ENOTFOUND);
    s_kv_item_t items [4];
    size_t count;
    ck_assert_int_eq (s_kv_list (p, 6, "t.", false, items, 4, &count, NULL), 0);
    ck_assert_uint_eq (count, 1);
    ck_assert_str_eq (items [0].key, "t.b");
    //  A put without a TTL takes the TTL away.
    ck_assert_int_eq (s_kv_put (p, 7, "t.b", 200, "\x03", 1, NULL), 0);
    ck_assert_int_eq (s_kv_put (p, 8, "t.b", 0, "\x04", 1, NULL), 0);
    ck_assert_int_eq (s_kv_next (w, &change, s_ms (2000)), TR__V_KV_CHANGE);
    ck_assert_int_eq (s_kv_next (w, &change, s_ms (2000)), TR__V_KV_CHANGE);
    ck_assert (s_quiet (w, 400));
    ck_assert_int_eq (s_kv_get (p, 9, "t.b", &value), 0);
    ck_assert_uint_eq (value.ttl_ms, 0);
    zmq_close (w);
    zmq_close (p);
    s_stop ();
}
END_TEST

//  The Clone pattern while a writer keeps writing: a snapshot, then a
//  watch from its AT, give every change after the snapshot exactly once
//  (consecutive versions: all writes are under the prefix), and together
//  the final state.
START_TEST (test_kv_snapshot_watch)
{
    s_start_default ();
    void *c = s_client ("C", "node");
    void *p = s_client ("P", "node");
    enum { KEYS = 50, ROUND = 1000 };
    uint64_t seq = 1;
    struct { uint64_t version; uint8_t value [3]; bool live; } state [KEYS];
    memset (state, 0, sizeof state);
    //  Writes (a deletion every 13th), sent without waiting: the
    //  snapshot and the watch land among them.
    unsigned n = 0;
    #define S_WRITE_ROUND() \
        for (int k = 0; k < ROUND; k++, n++) { \
            char key [16]; \
            snprintf (key, sizeof key, "s.%u", n % KEYS); \
            uint8_t value [3]; \
            s_u16 (value, n); \
            if (n % 13 == 12) { \
                tr__wire_out_t out; \
                tr__wire_begin (&out, TR__V_KV_DEL, seq++, 1); \
                tr__wire_str (&out, key, strlen (key)); \
                s_put (p, &out, NULL, 0); \
            } \
            else \
                s_kv_put_send (p, seq++, key, 0, value, 3); \
        }
    S_WRITE_ROUND ();
    s_kv_item_t items [KEYS];
    size_t count;
    uint64_t at, watch_at;
    ck_assert_int_eq (s_kv_list (c, 1, "s.", true, items, KEYS, &count, &at), 0);
    S_WRITE_ROUND ();
    ck_assert_int_eq (s_kv_watch (c, 2, "s.", at, &watch_at), 0);
    ck_assert_uint_ge (watch_at, at);
    S_WRITE_ROUND ();
    #undef S_WRITE_ROUND
    uint64_t last = 0;
    for (uint64_t s = 1; s < seq; s++) {
        uint64_t version = 0;
        int code = s_kv_versioned (p, s, &version);
        ck_assert (code == 0 || code == TR_ENOTFOUND);
        if (version > last)
            last = version;
    }
    for (size_t i = 0; i < count; i++) {
        unsigned k = (unsigned) atoi (items [i].key + 2);
        state [k].live = true;
        state [k].version = items [i].version;
        ck_assert_uint_eq (items [i].size, 3);
        memcpy (state [k].value, items [i].value, 3);
    }
    s_kv_change_t change;
    for (uint64_t v = at + 1; v <= last; v++) {
        ck_assert_int_eq (s_kv_next (c, &change, s_ms (2000)), TR__V_KV_CHANGE);
        ck_assert_uint_eq (change.version, v);
        unsigned k = (unsigned) atoi (change.key + 2);
        state [k].live = change.size > 0;
        state [k].version = v;
        if (change.size)
            memcpy (state [k].value, change.value, 3);
    }
    ck_assert (s_quiet (c, 100));
    //  The state so rebuilt is the scratchpad's.
    ck_assert_int_eq (s_kv_list (p, seq++, "s.", true, items, KEYS, &count, &at), 0);
    ck_assert_uint_eq (at, last);
    size_t live = 0;
    for (unsigned k = 0; k < KEYS; k++)
        live += state [k].live;
    ck_assert_uint_eq (live, count);
    for (size_t i = 0; i < count; i++) {
        unsigned k = (unsigned) atoi (items [i].key + 2);
        ck_assert (state [k].live);
        ck_assert_uint_eq (state [k].version, items [i].version);
        ck_assert (memcmp (state [k].value, items [i].value, 3) == 0);
    }
    zmq_close (c);
    zmq_close (p);
    s_stop ();
}
END_TEST

//  Removes a test's data folder and what the log left in it.
static void
s_rmdir (const char *dir)
{
    char path [256];
    const char *names [] = { "scratchpad.log", "scratchpad.lock", "scratchpad.log.compact" };
    for (size_t i = 0; i < 3; i++) {
        snprintf (path, sizeof path, "%s/%s", dir, names [i]);
        unlink (path);
    }
    rmdir (dir);
}

//  Starts a broker on a free port with a data folder.
static int
s_start_data (const char *dir, int fsync, tr_broker_t **broker_p)
{
    tr_broker_opts_t opts = { .bind = "tcp://127.0.0.1:*", .heartbeat_ms = 60000,
                              .data_dir = dir, .fsync = fsync };
    return tr_broker_start (&opts, broker_p);
}

//  With a data folder the scratchpad survives a restart, whatever the
//  fsync policy: values, versions, TTLs, deletions; versions go on from
//  the highest. The folder's errors are reported.
START_TEST (test_kv_persist)
{
    char dir [] = "/tmp/tr_broker_test.XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    s_ctx = zmq_ctx_new ();
    int policies [] = { TR_FSYNC_ALWAYS, TR_FSYNC_EVERYSEC, TR_FSYNC_NO };
    uint64_t seq = 1, last = 0;
    for (int round = 0; round < 3; round++) {
        ck_assert_int_eq (s_start_data (dir, policies [round], &s_broker), TR_OK);
        void *a = s_client ("A", "node");
        //  What the round before left.
        s_kv_value_t value;
        if (round) {
            ck_assert_uint_eq (s_stats ().kv_version, last);
            ck_assert_int_eq (s_kv_get (a, seq++, "keep", &value), 0);
            ck_assert_uint_eq (value.data [0], round - 1);
            ck_assert_int_eq (s_kv_get (a, seq++, "long", &value), 0);
            ck_assert_uint_gt (value.ttl_ms, 0);
            ck_assert_int_eq (s_kv_get (a, seq++, "gone", &value), TR_ENOTFOUND);
            ck_assert_int_eq (s_kv_get (a, seq++, "short", &value), TR_ENOTFOUND);
        }
        uint8_t byte = (uint8_t) round;
        uint64_t v;
        ck_assert_int_eq (s_kv_put (a, seq++, "keep", 0, &byte, 1, &v), 0);
        ck_assert_uint_gt (v, last);
        ck_assert_int_eq (s_kv_put (a, seq++, "long", 3600000, "\x01", 1, NULL), 0);
        ck_assert_int_eq (s_kv_put (a, seq++, "short", 1, "\x01", 1, NULL), 0);
        ck_assert_int_eq (s_kv_put (a, seq++, "gone", 0, "\x01", 1, NULL), 0);
        ck_assert_int_eq (s_kv_del (a, seq++, "gone", &last), 0);
        usleep (5000);
        ck_assert_int_eq (s_kv_get (a, seq++, "short", &value), TR_ENOTFOUND);
        last = s_stats ().kv_version;               //  the expiry counts
        zmq_close (a);
        //  While it runs the folder is its own.
        tr_broker_t *other = NULL;
        ck_assert_int_eq (s_start_data (dir, 0, &other), TR_EEXIST);
        ck_assert_ptr_null (other);
        tr_broker_stop (&s_broker);
    }
    zmq_ctx_term (s_ctx);
    s_ctx = NULL;

    //  A folder that does not exist, a log that is not one, bad options.
    tr_broker_t *broker = NULL;
    char missing [64];
    snprintf (missing, sizeof missing, "%s/missing", dir);
    ck_assert_int_eq (s_start_data (missing, 0, &broker), TR_ENOTFOUND);
    char path [128];
    snprintf (path, sizeof path, "%s/scratchpad.log", dir);
    FILE *file = fopen (path, "w");
    ck_assert_ptr_nonnull (file);
    fputs ("this is not a scratchpad log at all", file);
    fclose (file);
    ck_assert_int_eq (s_start_data (dir, 0, &broker), TR_EMALFORMED);
    ck_assert_int_eq (s_start_data ("", 0, &broker), TR_EINVAL);
    ck_assert_int_eq (s_start_data (dir, 3, &broker), TR_EINVAL);
    ck_assert_int_eq (s_start_data (dir, -1, &broker), TR_EINVAL);
    ck_assert_int_eq (tr_broker_start (&(tr_broker_opts_t) {
        .bind = "tcp://127.0.0.1:*", .max_key = 1025 }, &broker), TR_EINVAL);
    ck_assert_int_eq (tr_broker_start (&(tr_broker_opts_t) {
        .bind = "tcp://127.0.0.1:*", .max_frame = 4096, .max_value = 4096 }, &broker),
        TR_EINVAL);
    //  Not writable (root may write anywhere but on a read-only mount).
    const char *readonly = NULL;
    char ro [64];
    snprintf (ro, sizeof ro, "%s/ro", dir);
    ck_assert_int_eq (mkdir (ro, 0500), 0);
    if (geteuid () != 0)
        readonly = ro;
    else {
        int fd = open ("/sys/scratchpad.lock", O_RDWR | O_CREAT, 0644);
        if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
            readonly = "/sys";
        if (fd >= 0)
            close (fd);
    }
    if (readonly)
        ck_assert_int_eq (s_start_data (readonly, 0, &broker), TR_EACCES);
    rmdir (ro);
    ck_assert_ptr_null (broker);
    s_rmdir (dir);
}
END_TEST

//  Many clients come and go, events and messages flow: the counters
//  agree with what the clients saw, and stopping with clients connected
//  leaks nothing.
START_TEST (test_churn)
{
    s_start_default ();
    void *watcher = s_client ("W", "node");
    ck_assert_int_eq (s_call (watcher, TR__V_SUB, 1, "sys.node."), 0);
    enum { N = 20 };
    void *clients [N];
    for (int i = 0; i < N; i++) {
        char id [16];
        snprintf (id, sizeof id, "c%d", i);
        clients [i] = s_client (id, "actor");
        ck_assert_int_eq (s_call (clients [i], TR__V_REGISTER, 2, id), 0);
    }
    for (int i = 0; i < N; i++) {
        char to [16];
        snprintf (to, sizeof to, "c%d", (i + 1) % N);
        s_send_to (clients [i], to, "m", 1);
    }
    for (int i = 0; i < N; i++) {
        s_got_t got;
        s_expect (clients [i], &got, TR__V_DELIVER);
        s_got_close (&got);
    }
    for (int i = 0; i < N; i += 2) {
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_BYE, 0, 0);
        s_put (clients [i], &out, NULL, 0);
    }
    int joined = 0, left = 0, down = 0;
    s_got_t got;
    while ((joined < N || left < N / 2 || down < N / 2) && s_get (watcher, &got, s_ms (2000))) {
        char topic [64];
        if (got.cmd.verb == TR__V_NODE_DOWN)
            down++;
        else {
            s_arg_str (&got, topic, sizeof topic);
            if (strcmp (topic, "sys.node.joined") == 0)
                joined++;
            else
                left++;
        }
        s_got_close (&got);
    }
    ck_assert_int_eq (joined, N);
    ck_assert_int_eq (left, N / 2);
    ck_assert_int_eq (down, N / 2);
    tr_broker_stats_t st = s_stats ();
    ck_assert_uint_eq (st.clients, 1 + N / 2);
    ck_assert_uint_eq (st.names, N / 2);
    ck_assert_uint_eq (st.joined, 1 + N);
    ck_assert_uint_eq (st.left, N / 2);
    ck_assert_uint_eq (st.routed, N);
    ck_assert_uint_eq (st.events, 1 + N + N / 2);
    for (int i = 0; i < N; i++)
        zmq_close (clients [i]);
    zmq_close (watcher);
    s_stop ();
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_broker");
    TCase *tc = tcase_create ("core");
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_greeting);
    tcase_add_test (tc, test_options);
    tcase_add_test (tc, test_names);
    tcase_add_test (tc, test_send_order);
    tcase_add_test (tc, test_bounce);
    tcase_add_test (tc, test_full);
    tcase_add_test (tc, test_sends);
    tcase_add_test (tc, test_pubs);
    tcase_add_test (tc, test_multi);
    tcase_add_loop_test (tc, test_sends_full, 0, 2);
    tcase_add_test (tc, test_nodes);
    tcase_add_test (tc, test_heartbeat);
    tcase_add_test (tc, test_closed);
    tcase_add_test (tc, test_takeover_bye);
    tcase_add_test (tc, test_node_down_split);
    tcase_add_test (tc, test_events);
    tcase_add_test (tc, test_events_dropped);
    tcase_add_test (tc, test_malformed);
    tcase_add_test (tc, test_oversized);
    tcase_add_test (tc, test_quota);
    tcase_add_test (tc, test_churn);
    tcase_add_test (tc, test_kv_verbs);
    tcase_add_test (tc, test_kv_watch);
    tcase_add_test (tc, test_kv_watch_always);
    tcase_add_test (tc, test_kv_resync);
    tcase_add_test (tc, test_kv_expiry);
    tcase_add_test (tc, test_kv_snapshot_watch);
    tcase_add_test (tc, test_kv_persist);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
