/*  tr_remote.c - a node's link to the broker; see tr_remote.h.

    Everything here runs on the link's own thread except tr__remote_name
    (which only posts to the gateway) and start and stop. The thread
    waits on two things at once: the broker's DEALER socket and the
    gateway mailbox's ring (tr__mbox_poll_arm), with a timeout for the
    heartbeat, the liveness check, reconnection and the sweep of expired
    asks.

    Ids. An ask leaving the node gets a wire id from the link's counter
    (unique per link, so asks of different local askers never collide);
    its answer comes back with that id as `corr`, and the link gives the
    asker the id it used. An ask arriving from the broker is delivered
    with its wire id as is, and its answer, posted by the local handler
    to the gateway, carries that id back as `corr`.
*/

#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_curve.h"
#include "tr_mbox.h"
#include "tr_remote.h"
#include "tr_event_int.h"
#include "tr_wire.h"
#include "tr_u64map.h"
#include "troupe/tr_envelope.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <msgpack.h>
#include <zmq.h>

//  Reconnection backoff (2-broker.md 2.5).
#define S_BACKOFF_MIN_MS    100
#define S_BACKOFF_MAX_MS    5000
//  Messages kept while the broker is away, beyond which tells become dead
//  letters and asks fail at once.
#define S_HELD_MAX          10000
//  How often expired asks are swept from the table.
#define S_SWEEP_MS          100
//  A batch of envelopes (SENDS, 2-broker.md 2.4.1) goes when it holds
//  this many (or the broker's max_batch, if lower), or this many bytes,
//  or when the gateway has nothing more queued: a burst travels in few
//  messages, and a lone message is never held back.
#define S_BATCH_MAX         128
#define S_BATCH_BYTES       (256 * 1024)
enum { S_BATCH_MESSAGES = 1, S_BATCH_EVENTS = 2, S_BATCH_CALLS = 3 };

//  An ask sent to another node, waiting for its answer.
typedef struct {
    uint64_t wire_id;           //  the id on the wire
    uint64_t local_id;          //  the id the asker used (its corr)
    tr__mbox_t *reply_to;       //  the asker's mailbox (a reference)
    int64_t deadline_ns;        //  monotonic; after it, nobody waits
    int priority;
    char *to;                   //  the name asked (for NODE_DOWN)
    char *from;                 //  the asker's name, as sent
} s_pending_t;

//  A request to the broker (tr__remote_call): shared by its caller and
//  the link, freed by whichever lets go last.
struct tr__call {
    atomic_int refs;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int rc;
    uint64_t seq;
    uint8_t *frame;                     //  the request
    size_t frame_size;
    uint8_t *payload;
    size_t payload_size;
    tr__reply_t reply;                  //  the answer, once done
    //  An asynchronous call (tr__remote_call_async): its callback, and the
    //  deadline the link enforces for it (a waiting caller enforces its own).
    tr__call_fn *fn;
    void *fn_arg;
    int64_t deadline_ns;
};

//  A scratchpad prefix watched for local actors and replicas.
typedef struct {
    zlistx_t *actors;                   //  names (strings, owned)
    size_t replicas;                    //  replicas of exactly this prefix
    uint64_t last;                      //  version of the last change delivered
} s_watch_t;

//  One key of a replica, or one change waiting for its snapshot.
typedef struct {
    char *key;
    uint64_t version;
    uint8_t *value;                     //  NULL: a deletion
    size_t size;
} s_entry_t;

static void
s_entry_destroy (void **item_p)
{
    s_entry_t *e = (s_entry_t *) *item_p;
    *item_p = NULL;
    if (e) {
        free (e->key);
        free (e->value);
        free (e);
    }
}

static s_entry_t *
s_entry_new (const char *key, size_t key_len, uint64_t version, const void *value, size_t size)
{
    s_entry_t *e = (s_entry_t *) calloc (1, sizeof *e);
    if (!e)
        return NULL;
    e->key = strndup (key, key_len);
    e->version = version;
    e->size = size;
    if (value && size) {
        e->value = (uint8_t *) malloc (size);
        if (e->value)
            memcpy (e->value, value, size);
    }
    if (!e->key || (value && size && !e->value)) {
        void *item = e;
        s_entry_destroy (&item);
        return NULL;
    }
    return e;
}

//  A live copy of a prefix (tr_scratch.h). The caller and the link each
//  hold a reference.
struct tr_replica {
    atomic_int refs;
    tr__remote_t *remote;
    char *prefix;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    zhashx_t *entries;                  //  key -> s_entry_t (under lock)
    uint64_t version;                   //  (under lock)
    bool ready;                         //  first snapshot applied (under lock)
    //  Link thread only.
    uint64_t snap_seq;                  //  the snapshot asked for, 0: none
    zlistx_t *buffer;                   //  s_entry_t changes meanwhile
};

static void
s_replica_unref (tr_replica_t **self_p)
{
    tr_replica_t *self = *self_p;
    *self_p = NULL;
    if (self && atomic_fetch_sub (&self->refs, 1) == 1) {
        zhashx_destroy (&self->entries);
        zlistx_destroy (&self->buffer);
        pthread_mutex_destroy (&self->lock);
        pthread_cond_destroy (&self->cond);
        free (self->prefix);
        free (self);
    }
}

static void
s_watch_destroy (void **item_p)
{
    s_watch_t *w = (s_watch_t *) *item_p;
    *item_p = NULL;
    if (w) {
        zlistx_destroy (&w->actors);
        free (w);
    }
}

//  A message that could not leave yet (no broker).
typedef struct s_held {
    struct s_held *next;
    tr_msg_t *msg;
} s_held_t;

struct tr__remote {
    tr_node_t *node;
    char *endpoint;
    char node_id [TR_NAME_MAX + 1];
    char reply_name [TR_NAME_MAX + 1]; //  "$node.ID": anonymous senders
    int heartbeat_ms;                   //  agreed with the broker
    //  CURVE keys (Z85), read at start; curve false: none.
    bool curve;
    char curve_public [TR__CURVE_TXT];
    char curve_secret [TR__CURVE_TXT];
    char curve_server [TR__CURVE_TXT];
    tr__mbox_t *gateway;
    pthread_t thread;
    atomic_bool connected;

    //  Link thread only.
    void *sock;                         //  DEALER, or NULL while away
    bool greeted;
    uint64_t seq;                       //  last request number used
    uint64_t hello_seq;
    uint64_t next_wire_id;
    int64_t last_heard_ns;              //  anything from the broker
    int64_t last_polled_ns;             //  the link last looked at its socket
    int64_t stalled_ns;                 //  a poll last came back late (a stall)
    int64_t rejoin_ns;                  //  greet again then (after a long stall), 0: no
    int64_t last_sent_ns;               //  anything to the broker
    int64_t retry_at_ns;                //  next connection attempt
    int backoff_ms;
    int64_t sweep_at_ns;
    zhashx_t *names;                    //  local names to hold at the broker
    tr__u64map_t pending;               //  wire id -> s_pending_t (owned)
    tr__u64map_t calls;                 //  seq -> tr__call_t, sent
    zlistx_t *unsent;                   //  tr__call_t waiting for the broker
    zhashx_t *prefixes;                 //  event prefix -> local subscriptions
    zhashx_t *watches;                  //  scratchpad prefix -> s_watch_t
    zlistx_t *replicas;                 //  tr_replica_t (a reference each)
    atomic_uint_fast64_t call_seq;
    s_held_t *held_head, *held_tail;
    size_t held;
    bool stopping;
    //  The batch being filled: its envelopes one after another in `buf`,
    //  and for each its message (kept for a dead letter if the batch
    //  cannot go) and, for an ask, its pending entry (entered once sent).
    int minor;                          //  agreed with the broker
    uint32_t batch_max;                 //  1: this broker takes SEND only
    int batch_kind;                     //  S_BATCH_MESSAGES or S_BATCH_EVENTS
    uint32_t batched;
    msgpack_sbuffer buf;
    //  Events (PUBS) are batched the same way: the message is the
    //  gateway's TR__KIND_PUB, its body in `buf`.
    tr_msg_t *batch_msg [S_BATCH_MAX];
    s_pending_t *batch_pending [S_BATCH_MAX];
    uint32_t batch_size [S_BATCH_MAX];
    //  Requests to the broker (MULTI): each one's command frame and
    //  payload, one after another in `buf`.
    tr__call_t *batch_call [S_BATCH_MAX];
    uint32_t batch_psize [S_BATCH_MAX];
};

//  --------------------------------------------------------------------------
//  Small helpers

static void
s_pending_destroy (void **item_p)
{
    s_pending_t *p = (s_pending_t *) *item_p;
    *item_p = NULL;
    if (p) {
        tr__mbox_unref (&p->reply_to);
        free (p->to);
        free (p->from);
        free (p);
    }
}

static void
s_call_unref (tr__call_t **call_p)
{
    tr__call_t *call = *call_p;
    *call_p = NULL;
    if (call && atomic_fetch_sub (&call->refs, 1) == 1) {
        free (call->frame);
        free (call->payload);
        tr__remote_reply_free (&call->reply);
        if (!call->fn) {
            pthread_mutex_destroy (&call->lock);
            pthread_cond_destroy (&call->cond);
        }
        free (call);
    }
}

//  Ends a call with rc and, for an answer, copies of its frames; drops
//  the link's reference.
static void
s_call_finish (tr__call_t *call, int rc, zmq_msg_t *frame, zmq_msg_t *payload)
{
    if (call->fn) {
        //  Only the link holds it: the answer is read where it lies.
        tr__reply_t view = { NULL, 0, NULL, 0 };
        if (rc == TR_OK && frame) {
            view.frame = (uint8_t *) zmq_msg_data (frame);
            view.frame_size = zmq_msg_size (frame);
            if (payload && zmq_msg_size (payload)) {
                view.payload = (uint8_t *) zmq_msg_data (payload);
                view.payload_size = zmq_msg_size (payload);
            }
        }
        if (!call->done) {
            call->done = true;
            call->fn (rc, rc == TR_OK? &view: NULL, call->fn_arg);
        }
        s_call_unref (&call);
        return;
    }
    pthread_mutex_lock (&call->lock);
    if (!call->done) {
        call->rc = rc;
        if (rc == TR_OK && frame) {
            call->reply.frame_size = zmq_msg_size (frame);
            call->reply.frame = (uint8_t *) malloc (call->reply.frame_size + 1);
            if (call->reply.frame)
                memcpy (call->reply.frame, zmq_msg_data (frame), call->reply.frame_size);
            else
                call->rc = TR_ENOMEM;
            if (payload && zmq_msg_size (payload)) {
                call->reply.payload_size = zmq_msg_size (payload);
                call->reply.payload = (uint8_t *) malloc (call->reply.payload_size);
                if (call->reply.payload)
                    memcpy (call->reply.payload, zmq_msg_data (payload), call->reply.payload_size);
                else
                    call->rc = TR_ENOMEM;
            }
        }
        call->done = true;
        pthread_cond_broadcast (&call->cond);
    }
    pthread_mutex_unlock (&call->lock);
    s_call_unref (&call);
}

//  A request sent, waiting for its answer. Out of memory for the table:
//  it ends now (the broker may still carry it out, as after a timeout).
static void
s_call_sent (tr__remote_t *self, tr__call_t *call)
{
    if (tr__u64map_put (&self->calls, call->seq, call))
        s_call_finish (call, TR_ENOMEM, NULL, NULL);
}

//  Ends every request sent and not answered, with rc.
static void
s_calls_end (tr__remote_t *self, int rc)
{
    size_t cursor = 0;
    uint64_t seq;
    void *call;
    while (tr__u64map_next (&self->calls, &cursor, &seq, &call))
        s_call_finish ((tr__call_t *) call, rc, NULL, NULL);
    tr__u64map_clear (&self->calls);
}

//  A growing list of ids, to change a table after walking it.
typedef struct {
    uint64_t *ids;
    size_t count, room;
} s_ids_t;

static void
s_ids_add (s_ids_t *list, uint64_t id)
{
    if (list->count == list->room) {
        size_t room = list->room? 2 * list->room: 16;
        uint64_t *ids = (uint64_t *) realloc (list->ids, room * sizeof *ids);
        if (!ids)
            return;                     //  left for the next sweep
        list->ids = ids;
        list->room = room;
    }
    list->ids [list->count++] = id;
}


//  Sends a command frame, and a payload frame if `payload` is not NULL.
//  Returns 0, or -1 if the socket would not take it.
static int
s_send (tr__remote_t *self, tr__wire_out_t *out, const void *payload, size_t size)
{
    if (!self->sock || out->failed)
        return -1;
    int rc = zmq_send (self->sock, out->data, out->size,
                       (payload? ZMQ_SNDMORE: 0) | ZMQ_DONTWAIT);
    if (rc >= 0 && payload)
        rc = zmq_send (self->sock, payload, size, ZMQ_DONTWAIT);
    if (rc >= 0)
        self->last_sent_ns = tr__now_ns ();
    return rc < 0? -1: 0;
}

//  Sends a one-name request (REGISTER, UNREGISTER).
static void
s_name_request (tr__remote_t *self, int verb, const char *name)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, verb, ++self->seq, 1);
    tr__wire_str (&out, name, strlen (name));
    if (s_send (self, &out, NULL, 0))
        tr_log (TR_LOG_DEBUG, "remote: could not send %s '%s'",
                tr__wire_verb_name (verb), name);
    tr__wire_end (&out);
}

//  Monotonic deadline -> Unix microseconds, and back.
static uint64_t
s_to_wall (int64_t deadline_ns)
{
    if (!deadline_ns)
        return 0;
    int64_t left_us = (deadline_ns - tr__now_ns ()) / 1000;
    int64_t wall = tr__wall_us () + left_us;
    return wall > 0? (uint64_t) wall: 1;
}

static int64_t
s_from_wall (uint64_t deadline_us)
{
    if (!deadline_us)
        return 0;
    int64_t left_us = (int64_t) deadline_us - tr__wall_us ();
    int64_t at = tr__now_ns () + left_us * 1000;
    return at > 0? at: 1;
}

//  Hands an error answer to a local asker.
static void
s_fail_local (tr__remote_t *self, tr__mbox_t *reply_to, uint64_t local_id,
              int priority, const char *asker, const char *asked, int error)
{
    tr_msg_t *msg = tr__msg_new (self->node, TR_KIND_ERROR, priority,
                                 asker? asker: "", asked? asked: "", NULL, 0);
    if (!msg)
        return;
    msg->id = tr__mbox_next_id (self->gateway);
    msg->corr = local_id;
    msg->error = error;
    if (tr__mbox_post (self->gateway, reply_to, msg, -1)) {
        tr__node_dead_letter (self->node, msg, error);
        tr__msg_free (msg);
    }
}

//  Fails a remembered ask with `error` and forgets it.
static void
s_fail_pending (tr__remote_t *self, s_pending_t *p, int error)
{
    s_fail_local (self, p->reply_to, p->local_id, p->priority, p->from, p->to, error);
    void *item = tr__u64map_take (&self->pending, p->wire_id);
    s_pending_destroy (&item);
}

//  --------------------------------------------------------------------------
//  The connection

static void s_batch_flush (tr__remote_t *self);

static void
s_disconnect (tr__remote_t *self, const char *why)
{
    //  What is batched goes first, as it would have a moment later.
    s_batch_flush (self);
    if (self->sock) {
        if (self->greeted)
            tr_log (TR_LOG_WARN, "remote: lost the broker at %s (%s); reconnecting",
                    self->endpoint, why);
        zmq_close (self->sock);
        self->sock = NULL;
    }
    self->greeted = false;
    self->rejoin_ns = 0;
    atomic_store (&self->connected, false);
    //  Requests sent and not answered: whether the broker carried them out
    //  is unknown (2-broker.md 2.2).
    s_calls_end (self, TR_ETIMEDOUT);
    //  Jittered exponential backoff: +/- 20%.
    int base = self->backoff_ms? self->backoff_ms: S_BACKOFF_MIN_MS;
    int jitter = base / 5;
    int delay = base - jitter + (jitter? (int) (random () % (2 * jitter + 1)): 0);
    self->retry_at_ns = tr__now_ns () + (int64_t) delay * 1000000;
    self->backoff_ms = base * 2 > S_BACKOFF_MAX_MS? S_BACKOFF_MAX_MS: base * 2;
}

//  Opens the socket and says HELLO.
static void
s_connect (tr__remote_t *self)
{
    self->sock = zmq_socket (self->node->ctx, ZMQ_DEALER);
    if (!self->sock) {
        s_disconnect (self, zmq_strerror (errno));
        return;
    }
    int linger = 0, hwm = 100000;
    zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (self->curve
    &&  (zmq_setsockopt (self->sock, ZMQ_CURVE_SERVERKEY, self->curve_server, 40)
    ||   zmq_setsockopt (self->sock, ZMQ_CURVE_PUBLICKEY, self->curve_public, 40)
    ||   zmq_setsockopt (self->sock, ZMQ_CURVE_SECRETKEY, self->curve_secret, 40))) {
        tr_log (TR_LOG_ERROR, "remote: cannot set up CURVE: %s", zmq_strerror (errno));
        s_disconnect (self, "CURVE failed");
        return;
    }
    if (zmq_connect (self->sock, self->endpoint)) {
        tr_log (TR_LOG_ERROR, "remote: cannot connect to %s: %s", self->endpoint,
                zmq_strerror (errno));
        s_disconnect (self, "connect failed");
        return;
    }
    tr__wire_out_t out;
    self->hello_seq = ++self->seq;
    tr__wire_begin (&out, TR__V_HELLO, self->hello_seq, 6);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, TR__WIRE_MAJOR);
    tr__wire_uint (&out, TR__WIRE_MINOR);
    tr__wire_str (&out, self->node_id, strlen (self->node_id));
    tr__wire_str (&out, "node", 4);
    tr__wire_uint (&out, (uint64_t) self->heartbeat_ms);
    s_send (self, &out, NULL, 0);
    tr__wire_end (&out);
    //  The greeting gets three intervals, like any silence.
    self->last_heard_ns = tr__now_ns ();
}

static void s_send_message (tr__remote_t *self, tr_msg_t *msg);

static void s_batch_flush (tr__remote_t *self);

//  Sends a request now (greeted) and remembers it for its answer.
static void
s_send_call_now (tr__remote_t *self, tr__call_t *call)
{
    int flags = call->payload? ZMQ_SNDMORE: 0;
    int rc = zmq_send (self->sock, call->frame, call->frame_size, flags | ZMQ_DONTWAIT);
    if (rc >= 0 && call->payload)
        rc = zmq_send (self->sock, call->payload, call->payload_size, ZMQ_DONTWAIT);
    if (rc < 0) {
        s_call_finish (call, TR_EFULL, NULL, NULL);
        return;
    }
    self->last_sent_ns = tr__now_ns ();
    s_call_sent (self, call);
}

//  Sends a request (greeted): in the batch of requests when the broker
//  takes MULTI, else at once.
static void
s_send_call (tr__remote_t *self, tr__call_t *call)
{
    if (self->batch_max <= 1) {
        s_send_call_now (self, call);
        return;
    }
    if (self->batched && self->batch_kind != S_BATCH_CALLS)
        s_batch_flush (self);
    self->batch_kind = S_BATCH_CALLS;
    size_t before = self->buf.size;
    if (msgpack_sbuffer_write (&self->buf, (const char *) call->frame, call->frame_size)
    ||  (call->payload_size
         && msgpack_sbuffer_write (&self->buf, (const char *) call->payload,
                                   call->payload_size))) {
        //  Out of memory for the batch: what it holds goes, then this.
        self->buf.size = before;
        s_batch_flush (self);
        s_send_call_now (self, call);
        return;
    }
    uint32_t i = self->batched++;
    self->batch_call [i] = call;
    self->batch_size [i] = (uint32_t) call->frame_size;
    self->batch_psize [i] = (uint32_t) call->payload_size;
    if (self->batched >= self->batch_max || self->buf.size >= S_BATCH_BYTES)
        s_batch_flush (self);
}

//  Sends the batch of requests: one alone as it is, several as one MULTI.
static void
s_batch_flush_calls (tr__remote_t *self)
{
    uint32_t n = self->batched;
    if (n == 1) {
        s_send_call_now (self, self->batch_call [0]);
        return;
    }
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_MULTI, 0, 2);
    tr__wire_array (&out, n);
    for (uint32_t i = 0; i < n; i++)
        tr__wire_uint (&out, self->batch_size [i]);
    tr__wire_array (&out, n);
    for (uint32_t i = 0; i < n; i++)
        tr__wire_uint (&out, self->batch_psize [i]);
    int rc = s_send (self, &out, self->buf.data, self->buf.size);
    tr__wire_end (&out);
    for (uint32_t i = 0; i < n; i++) {
        tr__call_t *call = self->batch_call [i];
        if (rc) {
            s_call_finish (call, TR_EFULL, NULL, NULL);
            continue;
        }
        s_call_sent (self, call);
    }
}

//  Asks the broker to watch prefix from version `from`.
static void
s_watch_request (tr__remote_t *self, const char *prefix, uint64_t from)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_WATCH, ++self->seq, 2);
    tr__wire_str (&out, prefix, strlen (prefix));
    tr__wire_uint (&out, from);
    s_send (self, &out, NULL, 0);
    tr__wire_end (&out);
}

//  Asks for a replica's snapshot; the changes that arrive meanwhile wait
//  in its buffer.
static void
s_replica_snapshot (tr__remote_t *self, tr_replica_t *r)
{
    zlistx_purge (r->buffer);
    r->snap_seq = ++self->seq;
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_SNAPSHOT, r->snap_seq, 1);
    tr__wire_str (&out, r->prefix, strlen (r->prefix));
    s_send (self, &out, NULL, 0);
    tr__wire_end (&out);
}

//  Applies one change to a replica (lock held).
static void
s_replica_apply (tr_replica_t *r, s_entry_t *change)
{
    if (change->version <= r->version)
        return;                         //  the snapshot had it
    r->version = change->version;
    if (!change->value)
        zhashx_delete (r->entries, change->key);
    else {
        s_entry_t *copy = s_entry_new (change->key, strlen (change->key), change->version,
                                       change->value, change->size);
        if (copy)
            zhashx_update (r->entries, change->key, copy);
    }
}

//  The answer to a snapshot: ["OK", SEQ, AT, [[KEY, VERSION, VALUE]...]].
//  Replaces the copy, then applies the changes that waited.
static void
s_replica_snapshot_done (tr__remote_t *self, tr_replica_t *r, tr__wire_cmd_t *cmd)
{
    (void) self;
    uint64_t at;
    uint32_t n;
    if (tr__mp_uint (&cmd->args, &at) || tr__mp_array (&cmd->args, &n))
        return;
    zhashx_t *entries = zhashx_new ();
    if (!entries)
        return;
    zhashx_set_destructor (entries, s_entry_destroy);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t three, key_len;
        const char *key;
        uint64_t version;
        if (tr__mp_array (&cmd->args, &three) || three < 3
        ||  tr__mp_str (&cmd->args, &key, &key_len) || tr__mp_uint (&cmd->args, &version)) {
            zhashx_destroy (&entries);
            return;
        }
        const uint8_t *value = cmd->args.p;
        if (tr__mp_skip (&cmd->args, 33)) {
            zhashx_destroy (&entries);
            return;
        }
        for (uint32_t extra = 3; extra < three; extra++)
            tr__mp_skip (&cmd->args, 33);
        s_entry_t *e = s_entry_new (key, key_len, version, value, (size_t) (cmd->args.p - value));
        if (e)
            zhashx_update (entries, e->key, e);
    }
    pthread_mutex_lock (&r->lock);
    zhashx_destroy (&r->entries);
    r->entries = entries;
    r->version = at;
    for (s_entry_t *c = (s_entry_t *) zlistx_first (r->buffer); c;
         c = (s_entry_t *) zlistx_next (r->buffer))
        s_replica_apply (r, c);
    r->ready = true;
    pthread_cond_broadcast (&r->cond);
    pthread_mutex_unlock (&r->lock);
    zlistx_purge (r->buffer);
    r->snap_seq = 0;
}

//  Adds or removes a local watcher of prefix; tells the broker on the
//  first and the last.
//  The watch of prefix, made (and asked of the broker) if there is none.
static s_watch_t *
s_watch_for (tr__remote_t *self, const char *prefix)
{
    s_watch_t *w = (s_watch_t *) zhashx_lookup (self->watches, prefix);
    if (w)
        return w;
    w = (s_watch_t *) calloc (1, sizeof *w);
    if (!w || !(w->actors = zlistx_new ())) {
        free (w);
        return NULL;
    }
    zlistx_set_destructor (w->actors, (zlistx_destructor_fn *) zstr_free);
    zlistx_set_duplicator (w->actors, (zlistx_duplicator_fn *) strdup);
    zlistx_set_comparator (w->actors, (zlistx_comparator_fn *) strcmp);
    zhashx_insert (self->watches, prefix, w);
    if (self->greeted)
        s_watch_request (self, prefix, 0);
    return w;
}

static void
s_watcher (tr__remote_t *self, const char *prefix, const char *actor, bool on)
{
    s_watch_t *w = (s_watch_t *) zhashx_lookup (self->watches, prefix);
    if (on) {
        w = s_watch_for (self, prefix);
        if (w && !zlistx_find (w->actors, (void *) actor))
            zlistx_add_end (w->actors, (void *) actor);
        return;
    }
    if (!w)
        return;
    void *handle = zlistx_find (w->actors, (void *) actor);
    if (handle)
        zlistx_delete (w->actors, handle);
    if (zlistx_size (w->actors) == 0 && w->replicas == 0) {
        if (self->greeted)
            s_name_request (self, TR__V_KV_UNWATCH, prefix);
        zhashx_delete (self->watches, prefix);
    }
}

//  Takes on or lets go of a replica (its prefix's watch counts it).
static void
s_replica (tr__remote_t *self, tr_replica_t *r, bool on)
{
    s_watch_t *w = (s_watch_t *) zhashx_lookup (self->watches, r->prefix);
    if (on) {
        w = s_watch_for (self, r->prefix);
        if (!w) {
            s_replica_unref (&r);
            return;
        }
        w->replicas++;
        zlistx_add_end (self->replicas, r);
        if (self->greeted)
            s_replica_snapshot (self, r);
        return;
    }
    void *handle = zlistx_find (self->replicas, r);
    if (!handle)
        return;
    zlistx_detach (self->replicas, handle);
    if (w && w->replicas)
        w->replicas--;
    if (w && zlistx_size (w->actors) == 0 && w->replicas == 0) {
        if (self->greeted)
            s_name_request (self, TR__V_KV_UNWATCH, r->prefix);
        zhashx_delete (self->watches, r->prefix);
    }
    s_replica_unref (&r);
}

//  Tells every local watcher of prefix one change or notice.
static void
s_watch_tell (tr__remote_t *self, s_watch_t *w, const void *body, size_t size)
{
    const char *actor = (const char *) zlistx_first (w->actors);
    while (actor) {
        tr__mbox_t *dst = tr__node_lookup (self->node, actor, false);
        int rc = TR_ENOACTOR;
        if (dst) {
            tr_msg_t *msg = tr__msg_new (self->node, TR_KIND_TELL, TR_PRIO_NORMAL,
                                         actor, "", body, size);
            rc = msg? tr__mbox_post (self->gateway, dst, msg, -1): TR_ENOMEM;
            if (rc && msg)
                tr__msg_free (msg);
            tr__mbox_unref (&dst);
        }
        if (rc == TR_ENOACTOR) {
            //  The watcher is gone: it watches no more.
            zlistx_delete (w->actors, zlistx_cursor (w->actors));
        }
        else
        if (rc)
            atomic_fetch_add_explicit (&self->node->dead, 1, memory_order_relaxed);
        actor = (const char *) zlistx_next (w->actors);
    }
}

//  ["KV_CHANGE", 0, PREFIX, KEY, VERSION] + VALUE, or ["KV_RESYNC", 0,
//  PREFIX]: to the local watchers.
static void
s_on_change (tr__remote_t *self, tr__wire_cmd_t *cmd, const uint8_t *data, size_t size)
{
    const char *prefix, *key = "";
    uint32_t prefix_len, key_len = 0;
    uint64_t version = 0;
    char copy [1025];
    if (tr__mp_str (&cmd->args, &prefix, &prefix_len) || prefix_len >= sizeof copy)
        return;
    memcpy (copy, prefix, prefix_len);
    copy [prefix_len] = 0;
    s_watch_t *w = (s_watch_t *) zhashx_lookup (self->watches, copy);
    if (!w)
        return;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 3);
    if (cmd->verb == TR__V_KV_RESYNC) {
        msgpack_pack_str_with_body (&pk, copy, prefix_len);
        msgpack_pack_uint64 (&pk, 0);
        msgpack_pack_str_with_body (&pk, "resync", 6);
        //  Watch again from the present; the watchers know to look again.
        s_watch_request (self, copy, 0);
    }
    else {
        if (tr__mp_str (&cmd->args, &key, &key_len) || tr__mp_uint (&cmd->args, &version)
        ||  (size && tr_msgpack_check (data, size, 32, NULL) != TR_OK)) {
            msgpack_sbuffer_destroy (&sb);
            return;
        }
        msgpack_pack_str_with_body (&pk, key, key_len);
        msgpack_pack_uint64 (&pk, version);
        if (size)
            msgpack_sbuffer_write (&sb, (const char *) data, size);
        else
            msgpack_pack_nil (&pk);
        if (version > w->last)
            w->last = version;
    }
    if (sb.data)
        s_watch_tell (self, w, sb.data, sb.size);
    msgpack_sbuffer_destroy (&sb);
    //  And to the replicas of this prefix.
    for (tr_replica_t *r = (tr_replica_t *) zlistx_first (self->replicas); r;
         r = (tr_replica_t *) zlistx_next (self->replicas)) {
        if (strcmp (r->prefix, copy) != 0)
            continue;
        if (cmd->verb == TR__V_KV_RESYNC) {
            s_replica_snapshot (self, r);
            continue;
        }
        s_entry_t *change = s_entry_new (key, key_len, version, size? data: NULL, size);
        if (!change)
            continue;
        if (r->snap_seq)
            zlistx_add_end (r->buffer, change);
        else {
            pthread_mutex_lock (&r->lock);
            s_replica_apply (r, change);
            pthread_mutex_unlock (&r->lock);
            void *item = change;
            s_entry_destroy (&item);
        }
    }
}

//  Counts a local subscription to prefix up or down; tells the broker on
//  the first and the last.
static void
s_prefix (tr__remote_t *self, const char *prefix, bool on)
{
    uintptr_t n = (uintptr_t) zhashx_lookup (self->prefixes, prefix);
    if (on) {
        zhashx_update (self->prefixes, prefix, (void *) (n + 1));
        if (n == 0 && self->greeted)
            s_name_request (self, TR__V_SUB, prefix);
    }
    else
    if (n > 0) {
        if (n == 1)
            zhashx_delete (self->prefixes, prefix);
        else
            zhashx_update (self->prefixes, prefix, (void *) (n - 1));
        if (n == 1 && self->greeted)
            s_name_request (self, TR__V_UNSUB, prefix);
    }
}

//  The broker said OK to HELLO: hold our names there and send what waited.
static void
s_greeted (tr__remote_t *self, tr__wire_cmd_t *cmd)
{
    //  ["OK", seq, "TRP", MAJOR, MINOR, BROKER_ID, HEARTBEAT_MS, LIMITS]
    const char *s;
    uint32_t len;
    uint64_t major = 0, minor = 0, heartbeat = 0;
    tr__mp_t *a = &cmd->args;
    if (cmd->nargs < 5 || tr__mp_str (a, &s, &len) || tr__mp_uint (a, &major)
    ||  tr__mp_uint (a, &minor) || tr__mp_str (a, &s, &len) || tr__mp_uint (a, &heartbeat)
    ||  major != TR__WIRE_MAJOR) {
        tr_log (TR_LOG_ERROR, "remote: the broker at %s answered the greeting in a way "
                "this node does not understand; retrying", self->endpoint);
        s_disconnect (self, "bad greeting");
        return;
    }
    if (heartbeat >= 10 && heartbeat <= 60000)     //  2-broker.md 2.5: from 10 ms
        self->heartbeat_ms = (int) heartbeat;
    //  SENDS from 1.1 on, up to the broker's max_batch (LIMITS).
    self->minor = (int) (minor < TR__WIRE_MINOR? minor: TR__WIRE_MINOR);
    self->batch_max = 1;
    uint32_t pairs;
    if (self->minor >= 1 && cmd->nargs >= 6 && tr__mp_map (a, &pairs) == 0)
        for (uint32_t i = 0; i < pairs; i++) {
            const char *key;
            uint32_t key_len;
            uint64_t value;
            if (tr__mp_str (a, &key, &key_len) || tr__mp_uint (a, &value))
                break;
            if (key_len == 9 && memcmp (key, "max_batch", 9) == 0)
                self->batch_max = value > S_BATCH_MAX? S_BATCH_MAX: value? (uint32_t) value: 1;
        }
    self->greeted = true;
    self->backoff_ms = 0;
    atomic_store (&self->connected, true);
    tr_log (TR_LOG_INFO, "remote: node '%s' joined the broker %.*s at %s", self->node_id,
            (int) len, s, self->endpoint);
    for (const char *name = (const char *) zhashx_first (self->names); name;
         name = (const char *) zhashx_next (self->names))
        s_name_request (self, TR__V_REGISTER, (const char *) zhashx_cursor (self->names));
    s_name_request (self, TR__V_REGISTER, self->reply_name);
    for (void *n = zhashx_first (self->prefixes); n; n = zhashx_next (self->prefixes))
        s_name_request (self, TR__V_SUB, (const char *) zhashx_cursor (self->prefixes));
    //  Replicas still waiting for a snapshot ask again.
    for (tr_replica_t *r = (tr_replica_t *) zlistx_first (self->replicas); r;
         r = (tr_replica_t *) zlistx_next (self->replicas)) {
        pthread_mutex_lock (&r->lock);
        bool ready = r->ready;
        pthread_mutex_unlock (&r->lock);
        if (!ready || r->snap_seq)
            s_replica_snapshot (self, r);
    }
    //  Watches resume after the last change delivered.
    for (s_watch_t *w = (s_watch_t *) zhashx_first (self->watches); w;
         w = (s_watch_t *) zhashx_next (self->watches))
        s_watch_request (self, (const char *) zhashx_cursor (self->watches), w->last);
    tr__call_t *call;
    while ((call = (tr__call_t *) zlistx_detach (self->unsent, NULL)))
        s_send_call (self, call);
    //  What waited for the broker, in order.
    s_held_t *held = self->held_head;
    self->held_head = self->held_tail = NULL;
    self->held = 0;
    while (held) {
        s_held_t *next = held->next;
        s_send_message (self, held->msg);
        free (held);
        held = next;
    }
}

//  --------------------------------------------------------------------------
//  Out: gateway messages to the broker

//  Keeps a message for when the broker is back; refuses past the bound.
static void
s_hold (tr__remote_t *self, tr_msg_t *msg)
{
    s_held_t *held = self->held < S_HELD_MAX? (s_held_t *) malloc (sizeof *held): NULL;
    if (!held) {
        if (msg->kind == TR_KIND_ASK && msg->reply_to)
            s_fail_local (self, msg->reply_to, msg->id, msg->priority, msg->from, msg->to,
                          TR_ETIMEDOUT);
        else
            tr__node_dead_letter (self->node, msg, TR_ETIMEDOUT);
        tr__msg_free (msg);
        return;
    }
    held->next = NULL;
    held->msg = msg;
    if (self->held_tail)
        self->held_tail->next = held;
    else
        self->held_head = held;
    self->held_tail = held;
    self->held++;
}

//  An ask leaving the node gets an entry in the pending table, under a
//  wire id of its own; the asker's reference moves there. NULL if out of
//  memory.
static s_pending_t *
s_pending_new (tr__remote_t *self, tr_msg_t *msg)
{
    s_pending_t *p = (s_pending_t *) calloc (1, sizeof *p);
    if (!p)
        return NULL;
    p->to = strdup (msg->to);
    p->from = strdup (msg->from);
    if (!p->to || !p->from) {
        free (p->to);
        free (p->from);
        free (p);
        return NULL;
    }
    p->wire_id = ++self->next_wire_id;
    p->local_id = msg->id;
    p->reply_to = msg->reply_to;        //  the reference moves here
    msg->reply_to = NULL;
    p->deadline_ns = msg->deadline_ns;
    p->priority = msg->priority;
    return p;
}

//  The end of a message sent (rc TR_OK: an ask's entry goes into the
//  pending table) or not (its asker gets rc at once; a tell or an answer
//  becomes a dead letter). Frees msg.
static void
s_sent (tr__remote_t *self, tr_msg_t *msg, s_pending_t *p, int rc)
{
    if (p && rc == TR_OK && tr__u64map_put (&self->pending, p->wire_id, p))
        rc = TR_ENOMEM;
    if (p && rc == TR_OK)
        ;                               //  waits for its answer
    else
    if (p) {
        s_fail_local (self, p->reply_to, p->local_id, p->priority, p->from, p->to, rc);
        void *item = p;
        s_pending_destroy (&item);
    }
    else
    if (rc) {
        if (msg->kind == TR_KIND_ASK && msg->reply_to)
            s_fail_local (self, msg->reply_to, msg->id, msg->priority, msg->from, msg->to, rc);
        else
            tr__node_dead_letter (self->node, msg, rc);
    }
    tr__msg_free (msg);
}

//  An event's topic, in the body of a gateway TR__KIND_PUB: topic, NUL,
//  then the event's msgpack body (nothing for nil).
static size_t
s_pub_topic (const tr_msg_t *msg, const char **topic)
{
    *topic = (const char *) msg->body;
    return msg->size? strnlen (*topic, msg->size): 0;
}

//  Sends a batch of events: one PUB for a lone one, else one PUBS (where
//  a nil body is written as msgpack nil, so that no size is 0).
static void
s_batch_flush_events (tr__remote_t *self)
{
    uint32_t n = self->batched;
    tr__wire_out_t out;
    const char *topic;
    if (n == 1) {
        tr_msg_t *msg = self->batch_msg [0];
        size_t len = s_pub_topic (msg, &topic);
        size_t size = msg->size - len - 1;
        tr__wire_begin (&out, TR__V_PUB, 0, 1);
        tr__wire_str (&out, topic, len);
        s_send (self, &out, size? (const uint8_t *) topic + len + 1: NULL, size);
    }
    else {
        tr__wire_begin (&out, TR__V_PUBS, 0, 2);
        tr__wire_array (&out, n);
        for (uint32_t i = 0; i < n; i++) {
            size_t len = s_pub_topic (self->batch_msg [i], &topic);
            tr__wire_str (&out, topic, len);
        }
        tr__wire_array (&out, n);
        for (uint32_t i = 0; i < n; i++)
            tr__wire_uint (&out, self->batch_size [i]);
        //  Not sent (a full socket): lost, as a PUB would be; the broker
        //  counts what its subscribers miss.
        s_send (self, &out, self->buf.data, self->buf.size);
    }
    tr__wire_end (&out);
    for (uint32_t i = 0; i < n; i++)
        tr__msg_free (self->batch_msg [i]);
}

//  Sends the batch: one SEND for a lone envelope, else one SENDS; or the
//  events (s_batch_flush_events).
static void
s_batch_flush (tr__remote_t *self)
{
    uint32_t n = self->batched;
    if (n == 0)
        return;
    if (self->batch_kind == S_BATCH_EVENTS || self->batch_kind == S_BATCH_CALLS) {
        if (self->batch_kind == S_BATCH_EVENTS)
            s_batch_flush_events (self);
        else
            s_batch_flush_calls (self);
        self->batched = 0;
        self->buf.size = 0;
        return;
    }
    tr__wire_out_t out;
    if (n == 1) {
        tr__wire_begin (&out, TR__V_SEND, 0, 1);
        tr__wire_str (&out, self->batch_msg [0]->to, strlen (self->batch_msg [0]->to));
    }
    else {
        tr__wire_begin (&out, TR__V_SENDS, 0, 2);
        tr__wire_array (&out, n);
        for (uint32_t i = 0; i < n; i++)
            tr__wire_str (&out, self->batch_msg [i]->to, strlen (self->batch_msg [i]->to));
        tr__wire_array (&out, n);
        for (uint32_t i = 0; i < n; i++)
            tr__wire_uint (&out, self->batch_size [i]);
    }
    int rc = s_send (self, &out, self->buf.data, self->buf.size)? TR_EFULL: TR_OK;
    tr__wire_end (&out);
    for (uint32_t i = 0; i < n; i++)
        s_sent (self, self->batch_msg [i], self->batch_pending [i], rc);
    self->batched = 0;
    self->buf.size = 0;
    //  A buffer grown by a large message is not kept at that size.
    if (self->buf.alloc > 4 * S_BATCH_BYTES) {
        msgpack_sbuffer_destroy (&self->buf);
        msgpack_sbuffer_init (&self->buf);
    }
}

//  Encodes msg as an envelope and sends it, in a batch when the broker
//  takes them; frees msg (its reply_to moves to the pending table for an
//  ask).
static void
s_send_message (tr__remote_t *self, tr_msg_t *msg)
{
    if (!self->greeted || self->rejoin_ns) {
        s_hold (self, msg);
        return;
    }
    if (msg->deadline_ns && tr__now_ns () > msg->deadline_ns) {
        tr__node_dead_letter (self->node, msg, TR_EEXPIRED);
        tr__msg_free (msg);
        return;
    }
    tr_envelope_t env = {
        .kind = msg->kind, .priority = msg->priority, .id = msg->id, .corr = msg->corr,
        .trace = msg->trace, .deadline_us = s_to_wall (msg->deadline_ns),
        .error = msg->error, .to = msg->to, .to_len = strlen (msg->to),
        .from = msg->from [0]? msg->from: self->reply_name,
        .body = msg->body, .body_len = msg->size
    };
    env.from_len = strlen (env.from);
    s_pending_t *p = NULL;
    if (msg->kind == TR_KIND_ASK) {
        p = s_pending_new (self, msg);
        if (!p) {
            s_sent (self, msg, NULL, TR_ENOMEM);
            return;
        }
        env.id = p->wire_id;
    }
    if (self->batched && self->batch_kind != S_BATCH_MESSAGES)
        s_batch_flush (self);
    self->batch_kind = S_BATCH_MESSAGES;
    size_t before = self->buf.size;
    int rc = tr__envelope_append (&env, &self->buf);
    if (rc) {
        s_sent (self, msg, p, rc);
        return;
    }
    uint32_t i = self->batched++;
    self->batch_msg [i] = msg;
    self->batch_pending [i] = p;
    self->batch_size [i] = (uint32_t) (self->buf.size - before);
    if (self->batched >= self->batch_max || self->buf.size >= S_BATCH_BYTES)
        s_batch_flush (self);
}

//  One message from the gateway. Returns false on the stop signal.
static bool
s_on_gateway (tr__remote_t *self, tr_msg_t *msg)
{
    //  What is not batched goes after what is batched before it.
    if (self->batched && (msg->kind < TR_KIND_TELL || msg->kind > TR_KIND_ERROR)
    &&  msg->kind != TR__KIND_PUB && msg->kind != TR__KIND_CALL)
        s_batch_flush (self);
    switch (msg->kind) {
        case TR__KIND_STOP:
            tr__msg_free (msg);
            return false;
        case TR__KIND_NAME_ADD:
        case TR__KIND_NAME_DEL: {
            //  The body is the name, NUL-terminated.
            const char *name = (const char *) msg->body;
            if (msg->size > 1 && name [msg->size - 1] == 0) {
                bool add = msg->kind == TR__KIND_NAME_ADD;
                if (add)
                    zhashx_update (self->names, name, (void *) 1);
                else
                    zhashx_delete (self->names, name);
                if (self->greeted)
                    s_name_request (self, add? TR__V_REGISTER: TR__V_UNREGISTER, name);
            }
            tr__msg_free (msg);
            return true;
        }
        case TR_KIND_TELL:
        case TR_KIND_ASK:
        case TR_KIND_REPLY:
        case TR_KIND_ERROR:
            s_send_message (self, msg);
            return true;
        case TR__KIND_CALL: {
            tr__call_t *call = NULL;
            if (msg->size == sizeof call)
                memcpy (&call, msg->body, sizeof call);
            if (call && self->greeted && !self->rejoin_ns)
                s_send_call (self, call);
            else
            if (call)
                zlistx_add_end (self->unsent, call);
            tr__msg_free (msg);
            return true;
        }
        case TR__KIND_WATCH:
        case TR__KIND_UNWATCH: {
            //  The body: prefix, NUL, actor, NUL.
            const char *prefix = (const char *) msg->body;
            size_t prefix_len = msg->size? strnlen (prefix, msg->size): 0;
            const char *actor = prefix + prefix_len + 1;
            if (prefix_len < msg->size && msg->size >= prefix_len + 2
            &&  ((const char *) msg->body) [msg->size - 1] == 0)
                s_watcher (self, prefix, actor, msg->kind == TR__KIND_WATCH);
            tr__msg_free (msg);
            return true;
        }
        case TR__KIND_REPLICA:
        case TR__KIND_UNREPLICA: {
            tr_replica_t *r = NULL;
            if (msg->size == sizeof r)
                memcpy (&r, msg->body, sizeof r);
            if (r)
                s_replica (self, r, msg->kind == TR__KIND_REPLICA);
            tr__msg_free (msg);
            return true;
        }
        case TR__KIND_SUB:
        case TR__KIND_UNSUB: {
            const char *prefix = (const char *) msg->body;
            if (msg->size >= 1 && prefix [msg->size - 1] == 0)
                s_prefix (self, prefix, msg->kind == TR__KIND_SUB);
            tr__msg_free (msg);
            return true;
        }
        case TR__KIND_PUB: {
            //  The body: topic, NUL, then the event's msgpack body.
            const char *topic;
            size_t topic_len = s_pub_topic (msg, &topic);
            if (!self->greeted || topic_len >= msg->size) {
                tr__msg_free (msg);
                return true;
            }
            if (self->batched && self->batch_kind != S_BATCH_EVENTS)
                s_batch_flush (self);
            self->batch_kind = S_BATCH_EVENTS;
            size_t size = msg->size - topic_len - 1;
            size_t before = self->buf.size;
            static const char nil = (char) 0xc0;
            if (msgpack_sbuffer_write (&self->buf, size? topic + topic_len + 1: &nil,
                                       size? size: 1)) {
                self->buf.size = before;        //  out of memory: lost, as unsent
                tr__msg_free (msg);
                return true;
            }
            uint32_t i = self->batched++;
            self->batch_msg [i] = msg;
            self->batch_pending [i] = NULL;
            self->batch_size [i] = (uint32_t) (self->buf.size - before);
            if (self->batched >= self->batch_max || self->buf.size >= S_BATCH_BYTES)
                s_batch_flush (self);
            return true;
        }
        default:
            tr__msg_free (msg);
            return true;
    }
}

//  --------------------------------------------------------------------------
//  In: messages from the broker

//  An envelope for a local name (DELIVER).
static void
s_deliver (tr__remote_t *self, const uint8_t *data, size_t size)
{
    tr_envelope_t env;
    tr_envelope_error_t err;
    if (tr_envelope_decode (data, size, &env, &err) != TR_OK) {
        tr_log (TR_LOG_WARN, "remote: dropped a malformed envelope from the broker: %s",
                err.message);
        return;
    }
    char to [TR_NAME_MAX + 1], from [TR_NAME_MAX + 1];
    snprintf (to, sizeof to, "%.*s", (int) env.to_len, env.to);
    snprintf (from, sizeof from, "%.*s", (int) env.from_len, env.from);
    if (env.kind == TR_KIND_REPLY || env.kind == TR_KIND_ERROR) {
        s_pending_t *p = (s_pending_t *) tr__u64map_get (&self->pending, env.corr);
        tr_msg_t *msg = p? tr__msg_new (self->node, env.kind, env.priority, p->from, from,
                                        env.body, env.body_len): NULL;
        if (!msg) {
            tr_log (TR_LOG_DEBUG, "remote: an answer from '%s' came after its asker left", from);
            return;
        }
        msg->id = env.id;
        msg->corr = p->local_id;
        msg->trace = env.trace;
        msg->error = env.error;
        if (tr__mbox_post (self->gateway, p->reply_to, msg, -1)) {
            tr__node_dead_letter (self->node, msg, TR_ENOACTOR);
            tr__msg_free (msg);
        }
        void *item = tr__u64map_take (&self->pending, env.corr);
        s_pending_destroy (&item);
        return;
    }
    if (env.kind != TR_KIND_TELL && env.kind != TR_KIND_ASK)
        return;
    tr__mbox_t *dst = tr__node_lookup (self->node, to, true);
    int rc = dst? TR_OK: TR_ENOACTOR;
    tr_msg_t *msg = NULL;
    if (dst) {
        msg = tr__msg_new (self->node, env.kind, env.priority, to, from, env.body, env.body_len);
        if (!msg)
            rc = TR_ENOMEM;
    }
    if (msg) {
        msg->id = env.id;
        msg->trace = env.trace;
        msg->deadline_ns = s_from_wall (env.deadline_us);
        if (env.kind == TR_KIND_ASK)
            msg->reply_to = tr__mbox_ref (self->gateway);
        //  Never wait here: a full mailbox answers TR_EFULL, as locally
        //  for a sender that does not wait.
        rc = tr__mbox_post (self->gateway, dst, msg, -1);
        if (rc)
            tr__msg_free (msg);
    }
    tr__mbox_unref (&dst);
    if (rc == TR_OK)
        return;
    if (env.kind == TR_KIND_ASK) {
        //  Answer the asker with the error, through the broker.
        tr_msg_t *answer = tr__msg_new (self->node, TR_KIND_ERROR, env.priority, from, to, NULL, 0);
        if (answer) {
            answer->id = tr__mbox_next_id (self->gateway);
            answer->corr = env.id;
            answer->trace = env.trace;
            answer->error = rc;
            s_send_message (self, answer);
        }
    }
    else
        atomic_fetch_add_explicit (&self->node->dead, 1, memory_order_relaxed);
}

//  Several envelopes for local names (DELIVERS [SIZE...], 1.1), one after
//  another in the payload. A batch whose sizes do not add up to the
//  payload is dropped whole: nothing in it can be trusted to be where it
//  says.
static void
s_deliver_batch (tr__remote_t *self, tr__wire_cmd_t *cmd, const uint8_t *data, size_t size)
{
    tr__mp_t r = cmd->args;
    tr__wire_batch_t batch;
    const char *why;
    if (tr__wire_batch (&r, false, size, &batch, &why) != TR_OK) {
        tr_log (TR_LOG_WARN, "remote: dropped a DELIVERS from the broker: %s", why);
        return;
    }
    for (uint32_t i = 0; i < batch.count; i++)
        s_deliver (self, data + batch.offset [i], batch.size [i]);
}

//  Several events from one publisher (EVENTS FROM [TOPIC...] [SIZE...],
//  1.1), their bodies one after another in the payload; a body that is
//  msgpack nil is delivered as an empty one, as after a PUB without a
//  body. Dropped whole if the sizes do not add up.
static void
s_events (tr__remote_t *self, tr__wire_cmd_t *cmd, const uint8_t *data, size_t size)
{
    tr__mp_t r = cmd->args;
    const char *from;
    uint32_t from_len, n = 0;
    tr__mp_str (&r, &from, &from_len);  //  forms judged by tr__wire_check
    tr__mp_t topics = r;
    tr__mp_skip (&r, TR__WIRE_ARG_DEPTH);
    tr__mp_array (&topics, &n);
    tr__wire_batch_t batch;
    const char *why = "as many sizes as topics";
    if (tr__wire_batch (&r, false, size, &batch, &why) != TR_OK || batch.count != n) {
        tr_log (TR_LOG_WARN, "remote: dropped an EVENTS from the broker: %s", why);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *topic;
        uint32_t len;
        tr__mp_str (&topics, &topic, &len);
        char copy [TR_NAME_MAX + 1];
        if (len <= TR_NAME_MAX) {
            memcpy (copy, topic, len);
            copy [len] = 0;
            const uint8_t *body = data + batch.offset [i];
            bool nil = batch.size [i] == 1 && body [0] == 0xc0;
            tr__events_deliver (self->node, copy, nil? NULL: body, nil? 0: batch.size [i]);
        }
    }
}

//  A message sent back by the broker (BOUNCE TO CODE + envelope).
static void
s_bounce (tr__remote_t *self, tr__wire_cmd_t *cmd, const uint8_t *data, size_t size)
{
    const char *to;
    uint32_t to_len;
    int64_t code = TR_ENOACTOR;
    if (tr__mp_str (&cmd->args, &to, &to_len) || tr__mp_int (&cmd->args, &code) || code >= 0)
        code = TR_ENOACTOR;
    tr_envelope_t env;
    if (tr_envelope_decode (data, size, &env, NULL) != TR_OK)
        return;
    if (env.kind == TR_KIND_ASK) {
        s_pending_t *p = (s_pending_t *) tr__u64map_get (&self->pending, env.id);
        if (p)
            s_fail_pending (self, p, (int) code);
    }
    else
        atomic_fetch_add_explicit (&self->node->dead, 1, memory_order_relaxed);
}

//  NODE_DOWN NODE_ID [NAME...]: asks to those names fail now.
static void
s_node_down (tr__remote_t *self, tr__wire_cmd_t *cmd)
{
    const char *id;
    uint32_t id_len, n;
    if (tr__mp_str (&cmd->args, &id, &id_len) || tr__mp_array (&cmd->args, &n))
        return;
    tr_log (TR_LOG_INFO, "remote: node '%.*s' left or went down (%u name(s))", (int) id_len, id, n);
    zhashx_t *gone = zhashx_new ();
    for (uint32_t i = 0; i < n; i++) {
        const char *name;
        uint32_t len;
        char copy [TR_NAME_MAX + 1];
        if (tr__mp_str (&cmd->args, &name, &len) || len > TR_NAME_MAX)
            break;
        memcpy (copy, name, len);
        copy [len] = 0;
        zhashx_update (gone, copy, (void *) 1);
    }
    //  Collect first: failing one changes the table.
    zlistx_t *doomed = zlistx_new ();
    size_t at = 0;
    uint64_t wire_id;
    void *item;
    while (tr__u64map_next (&self->pending, &at, &wire_id, &item))
        if (zhashx_lookup (gone, ((s_pending_t *) item)->to))
            zlistx_add_end (doomed, item);
    for (s_pending_t *p = (s_pending_t *) zlistx_first (doomed); p;
         p = (s_pending_t *) zlistx_next (doomed))
        s_fail_pending (self, p, TR_ENODE);
    zlistx_destroy (&doomed);
    zhashx_destroy (&gone);
}

static void s_on_message (tr__remote_t *self, zmq_msg_t *headp, zmq_msg_t *payloadp,
                          bool inner);

//  Reads one message from the broker (1 or 2 frames) and acts on it.
//  Returns false when there was none.
static bool
s_on_broker (tr__remote_t *self)
{
    zmq_msg_t head, payload;
    zmq_msg_init (&head);
    zmq_msg_init (&payload);
    if (zmq_msg_recv (&head, self->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&head);
        zmq_msg_close (&payload);
        return false;
    }
    bool has_payload = false, extra = false;
    if (zmq_msg_more (&head)) {
        has_payload = zmq_msg_recv (&payload, self->sock, 0) >= 0;
        while (has_payload && zmq_msg_more (&payload)) {
            zmq_msg_t rest;
            zmq_msg_init (&rest);
            zmq_msg_recv (&rest, self->sock, 0);
            extra = true;
            bool more = zmq_msg_more (&rest);
            zmq_msg_close (&rest);
            if (!more)
                break;
        }
    }
    self->last_heard_ns = tr__now_ns ();
    if (extra)
        tr_log (TR_LOG_WARN, "remote: dropped a malformed message from the broker");
    else
        s_on_message (self, &head, has_payload? &payload: NULL, false);
    zmq_msg_close (&head);
    zmq_msg_close (&payload);
    return true;
}

//  The messages of a MULTI from the broker (1.1), each handled as if it
//  had come alone; dropped whole if its sizes do not add up.
static void
s_on_multi (tr__remote_t *self, tr__wire_cmd_t *cmd, zmq_msg_t *payload)
{
    tr__mp_t r = cmd->args;
    tr__wire_batch_t batch;
    const char *why;
    if (!payload || tr__wire_batch (&r, true, zmq_msg_size (payload), &batch, &why) != TR_OK) {
        tr_log (TR_LOG_WARN, "remote: dropped a MULTI from the broker: %s",
                payload? why: "no payload");
        return;
    }
    uint8_t *at = (uint8_t *) zmq_msg_data (payload);
    for (uint32_t i = 0; i < batch.count; i++) {
        uint64_t cs = batch.size [i], ps = batch.size2 [i];
        //  Views into the MULTI's payload, which outlives them.
        zmq_msg_t head, body;
        zmq_msg_init_data (&head, at, (size_t) cs, NULL, NULL);
        if (ps)
            zmq_msg_init_data (&body, at + cs, (size_t) ps, NULL, NULL);
        s_on_message (self, &head, ps? &body: NULL, true);
        zmq_msg_close (&head);
        if (ps)
            zmq_msg_close (&body);
        at += cs + ps;
    }
}

//  One message from the broker: its command frame and its payload frame
//  (NULL for none). inner: it came inside a MULTI.
static void
s_on_message (tr__remote_t *self, zmq_msg_t *headp, zmq_msg_t *payloadp, bool inner)
{
    zmq_msg_t head, payload;
    //  The handlers below were written with the frames in hand.
    zmq_msg_init (&head);
    zmq_msg_init (&payload);
    zmq_msg_move (&head, headp);
    bool has_payload = payloadp != NULL;
    if (payloadp)
        zmq_msg_move (&payload, payloadp);
    tr__wire_cmd_t cmd;
    if (tr__wire_parse (zmq_msg_data (&head), zmq_msg_size (&head), &cmd) != TR_OK
    ||  tr__wire_check (&cmd) != TR_OK || (inner && cmd.verb == TR__V_MULTI)) {
        tr_log (TR_LOG_WARN, "remote: dropped a malformed message from the broker");
        goto done;
    }
    const uint8_t *data = has_payload? (const uint8_t *) zmq_msg_data (&payload): NULL;
    size_t size = has_payload? zmq_msg_size (&payload): 0;
    switch (cmd.verb) {
        case TR__V_OK:
        case TR__V_ERROR: {
            tr__call_t *call = (tr__call_t *) tr__u64map_take (&self->calls, cmd.seq);
            if (call) {
                int64_t code = TR_OK;
                if (cmd.verb == TR__V_ERROR)
                    tr__mp_int (&cmd.args, &code);
                s_call_finish (call, (int) code, &head, has_payload? &payload: NULL);
                break;
            }
            if (cmd.verb == TR__V_OK) {
                if (!self->greeted && cmd.seq == self->hello_seq)
                    s_greeted (self, &cmd);
                else
                    for (tr_replica_t *r = (tr_replica_t *) zlistx_first (self->replicas); r;
                         r = (tr_replica_t *) zlistx_next (self->replicas))
                        if (r->snap_seq && r->snap_seq == cmd.seq) {
                            s_replica_snapshot_done (self, r, &cmd);
                            break;
                        }
                break;
            }
            int64_t code = 0;
            const char *text = "";
            uint32_t len = 0;
            tr__mp_int (&cmd.args, &code);
            tr__mp_str (&cmd.args, &text, &len);
            if (!self->greeted && cmd.seq == self->hello_seq) {
                tr_log (TR_LOG_ERROR, "remote: the broker at %s refused node '%s': %.*s (%s)",
                        self->endpoint, self->node_id, (int) len, text, tr_errname ((int) code));
                s_disconnect (self, "refused");
            }
            else
            if (self->greeted && code == TR_EPROTO) {
                //  The broker has forgotten this connection: greet again
                //  (2-broker.md 2.3). It may have taken us for dead while
                //  our messages were lost and its own still came; its
                //  errors would then keep us "alive" but nameless for ever.
                s_disconnect (self, "the broker no longer knows this node");
            }
            else
                tr_log (TR_LOG_ERROR, "remote: the broker refused a request of node '%s': "
                        "%.*s (%s)", self->node_id, (int) len, text, tr_errname ((int) code));
            break;
        }
        case TR__V_DELIVER:
            if (data)
                s_deliver (self, data, size);
            break;
        case TR__V_DELIVERS:
            if (data)
                s_deliver_batch (self, &cmd, data, size);
            break;
        case TR__V_BOUNCE:
            if (data)
                s_bounce (self, &cmd, data, size);
            break;
        case TR__V_NODE_DOWN:
            s_node_down (self, &cmd);
            break;
        case TR__V_KV_CHANGE:
        case TR__V_KV_RESYNC:
            s_on_change (self, &cmd, data, size);
            break;
        case TR__V_EVENTS:
            s_events (self, &cmd, data, size);
            break;
        case TR__V_MULTI:
            s_on_multi (self, &cmd, has_payload? &payload: NULL);
            break;
        case TR__V_EVENT: {
            const char *topic;
            uint32_t len;
            char copy [TR_NAME_MAX + 1];
            if (tr__mp_str (&cmd.args, &topic, &len) == 0 && len <= TR_NAME_MAX) {
                memcpy (copy, topic, len);
                copy [len] = 0;
                tr__events_deliver (self->node, copy, data, size);
            }
            break;
        }
        default:
            break;                      //  HEARTBEAT and what we do not use
    }
done:
    zmq_msg_close (&head);
    zmq_msg_close (&payload);
}

//  --------------------------------------------------------------------------
//  Timers

//  True if nobody waits for the call any more: its caller gave up (only
//  the link holds it), or, for an asynchronous call, its deadline passed.
static bool
s_call_expired (tr__call_t *call, int64_t now)
{
    return call->fn? now > call->deadline_ns: atomic_load (&call->refs) == 1;
}

//  Forgets asks whose deadline has passed (their askers gave up already).
static void
s_sweep (tr__remote_t *self, int64_t now)
{
    //  Collect first, then forget: the table must not change while walked.
    s_ids_t expired = { 0 };
    size_t cursor = 0;
    uint64_t id;
    void *item;
    while (tr__u64map_next (&self->pending, &cursor, &id, &item)) {
        s_pending_t *p = (s_pending_t *) item;
        if (p->deadline_ns && now > p->deadline_ns)
            s_ids_add (&expired, id);
    }
    for (size_t i = 0; i < expired.count; i++) {
        item = tr__u64map_take (&self->pending, expired.ids [i]);
        s_pending_destroy (&item);
    }
    free (expired.ids);
    //  Calls whose callers gave up, and asynchronous calls past their
    //  deadline.
    s_ids_t dropped = { 0 };
    cursor = 0;
    while (tr__u64map_next (&self->calls, &cursor, &id, &item))
        if (s_call_expired ((tr__call_t *) item, now))
            s_ids_add (&dropped, id);
    for (size_t i = 0; i < dropped.count; i++) {
        tr__call_t *call = (tr__call_t *) tr__u64map_take (&self->calls, dropped.ids [i]);
        s_call_finish (call, TR_ETIMEDOUT, NULL, NULL);
    }
    free (dropped.ids);
    //  Requests still waiting for the broker, whose callers gave up.
    for (tr__call_t *call = (tr__call_t *) zlistx_first (self->unsent); call;
         call = (tr__call_t *) zlistx_next (self->unsent))
        if (s_call_expired (call, now)) {
            zlistx_detach_cur (self->unsent);
            s_call_finish (call, TR_ETIMEDOUT, NULL, NULL);
        }
    //  Held messages past their deadline fail too.
    s_held_t **at = &self->held_head;
    s_held_t *last = NULL;
    while (*at) {
        s_held_t *h = *at;
        if (h->msg->deadline_ns && now > h->msg->deadline_ns) {
            *at = h->next;
            if (h->msg->kind == TR_KIND_ASK && h->msg->reply_to)
                s_fail_local (self, h->msg->reply_to, h->msg->id, h->msg->priority,
                              h->msg->from, h->msg->to, TR_ETIMEDOUT);
            else
                tr__node_dead_letter (self->node, h->msg, TR_EEXPIRED);
            tr__msg_free (h->msg);
            free (h);
            self->held--;
        }
        else {
            last = h;
            at = &h->next;
        }
    }
    self->held_tail = last;
    self->sweep_at_ns = now + S_SWEEP_MS * 1000000LL;
}

//  Heartbeats and liveness; returns the poll timeout in ms.
//  True if a message from the broker is waiting to be read.
static bool
s_readable (tr__remote_t *self)
{
    int events = 0;
    size_t size = sizeof events;
    return self->sock && zmq_getsockopt (self->sock, ZMQ_EVENTS, &events, &size) == 0
        && (events & ZMQ_POLLIN);
}

static int
s_tick (tr__remote_t *self)
{
    int64_t now = tr__now_ns ();
    int64_t h = (int64_t) self->heartbeat_ms * 1000000;
    if (!self->sock && now >= self->retry_at_ns)
        s_connect (self);
    //  Silence is judged only by a link that has been looking: one whose
    //  thread did not run for a while (a busy machine, a stopped process)
    //  may have the broker's messages waiting unread, and reads them
    //  first. After such a stall it waits a heartbeat more, for ZeroMQ's
    //  I/O thread, stalled too, to hand over what came meanwhile: a poll
    //  that came back at once on its timeout would find nothing yet, and
    //  closing the socket then would drop those messages unread.
    if (self->sock && now - self->last_heard_ns > 3 * h && now - self->last_polled_ns < h
    &&  now - self->stalled_ns >= h && !s_readable (self))
        s_disconnect (self, "silent for three heartbeats");
    //  After a stall longer than the broker waits, greet again once what
    //  was waiting has been read (see s_run).
    if (self->sock && self->rejoin_ns && now >= self->rejoin_ns && !s_readable (self))
        s_disconnect (self, "this node was silent longer than the broker waits");
    if (self->sock && self->greeted && now - self->last_sent_ns >= h) {
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_HEARTBEAT, 0, 0);
        s_send (self, &out, NULL, 0);
        tr__wire_end (&out);
    }
    if (now >= self->sweep_at_ns)
        s_sweep (self, now);
    //  Wake for the first of: next heartbeat, liveness, retry, sweep.
    int64_t next = self->sweep_at_ns;
    if (self->sock) {
        int64_t beat = self->last_sent_ns + h;
        int64_t dead = self->last_heard_ns + 3 * h + 1000000;
        if (dead < self->stalled_ns + h + 1000000)
            dead = self->stalled_ns + h + 1000000;
        if (self->rejoin_ns && self->rejoin_ns < dead)
            dead = self->rejoin_ns;
        next = beat < next? beat: next;
        next = dead < next? dead: next;
    }
    else
        next = self->retry_at_ns < next? self->retry_at_ns: next;
    int64_t wait = (next - now + 999999) / 1000000;
    return wait < 1? 1: wait > 1000? 1000: (int) wait;
}

//  --------------------------------------------------------------------------
//  The thread

static void *
s_run (void *arg)
{
    tr__remote_t *self = (tr__remote_t *) arg;
    tr__ctx_bind (self->gateway, NULL);
    s_connect (self);
    bool running = true;
    while (running) {
        tr_msg_t *msg;
        while (running && (msg = tr__mbox_take (self->gateway, tr__now_ns ())))
            running = s_on_gateway (self, msg);
        s_batch_flush (self);
        if (!running)
            break;
        int timeout = s_tick (self);
        void *ring = tr__mbox_poll_arm (self->gateway);
        if (!ring)
            continue;
        zmq_pollitem_t items [2] = {
            { ring, 0, ZMQ_POLLIN, 0 }, { self->sock, 0, ZMQ_POLLIN, 0 }
        };
        int64_t due = tr__now_ns () + (int64_t) timeout * 1000000;
        int n = zmq_poll (items, self->sock? 2: 1, timeout);
        self->last_polled_ns = tr__now_ns ();
        int64_t h = (int64_t) self->heartbeat_ms * 1000000;
        if (self->last_polled_ns - due > h) {
            //  A stall (the process stopped, or starved of CPU). If this
            //  node sent nothing for longer than three heartbeats, the
            //  broker has taken it for dead (2-broker.md 2.5) and would
            //  refuse what it sends now with TR_EPROTO, envelopes and all,
            //  before the node heard of it: so it holds what it sends,
            //  reads what came meanwhile for a heartbeat, then greets
            //  again and sends what it held.
            self->stalled_ns = self->last_polled_ns;
            if (self->sock && self->greeted && self->last_polled_ns - self->last_sent_ns > 3 * h)
                self->rejoin_ns = self->last_polled_ns + h;
        }
        tr__mbox_poll_disarm (self->gateway);
        if (n > 0 && self->sock && (items [1].revents & ZMQ_POLLIN))
            for (int i = 0; i < 1000 && self->sock && s_on_broker (self); i++)
                ;
    }
    //  Leaving: say so, fail what still waits, close up. Callbacks run
    //  from here on cannot make new calls.
    self->stopping = true;
    if (self->sock && self->greeted) {
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_BYE, 0, 0);
        s_send (self, &out, NULL, 0);
        tr__wire_end (&out);
    }
    size_t cursor = 0;
    uint64_t id;
    void *item;
    while (tr__u64map_next (&self->pending, &cursor, &id, &item)) {
        s_pending_t *p = (s_pending_t *) item;
        s_fail_local (self, p->reply_to, p->local_id, p->priority, p->from, p->to, TR_ESTOPPED);
        s_pending_destroy (&item);
    }
    tr__u64map_clear (&self->pending);
    s_calls_end (self, TR_ESTOPPED);
    tr__call_t *call;
    while ((call = (tr__call_t *) zlistx_detach (self->unsent, NULL)))
        s_call_finish (call, TR_ESTOPPED, NULL, NULL);
    while (self->held_head) {
        s_held_t *h = self->held_head;
        self->held_head = h->next;
        if (h->msg->kind == TR_KIND_ASK && h->msg->reply_to)
            s_fail_local (self, h->msg->reply_to, h->msg->id, h->msg->priority,
                          h->msg->from, h->msg->to, TR_ESTOPPED);
        tr__msg_free (h->msg);
        free (h);
    }
    if (self->sock)
        zmq_close (self->sock);
    self->sock = NULL;
    tr__mbox_close (self->gateway, TR_ESTOPPED);
    tr__ctx_bind (NULL, NULL);
    return NULL;
}

//  --------------------------------------------------------------------------

//  Reads the CURVE keys of the options, if any (both files or neither).
//  Returns TR_OK or the error of the file that failed (logged).
static int
s_curve_keys (tr__remote_t *self, const tr_node_opts_t *opts)
{
    if (!opts->curve_secret_file && !opts->curve_server_public_file)
        return TR_OK;
    if (!opts->curve_secret_file || !opts->curve_server_public_file) {
        tr_log (TR_LOG_ERROR, "node: CURVE needs both this node's secret key file and the "
                "broker's public key file");
        return TR_EINVAL;
    }
    int rc = tr__curve_secret_load ("node", opts->curve_secret_file, self->curve_public,
                                    self->curve_secret);
    if (rc == TR_OK)
        rc = tr__curve_public_load ("node", opts->curve_server_public_file,
                                    self->curve_server);
    self->curve = rc == TR_OK;
    return rc;
}

int
tr__remote_start (tr_node_t *node, tr__remote_t **self_p)
{
    const tr_node_opts_t *opts = &node->opts;
    if (!opts->broker || !*opts->broker)
        return TR_EINVAL;
    tr__remote_t *self = (tr__remote_t *) calloc (1, sizeof *self);
    if (!self)
        return TR_ENOMEM;
    self->node = node;
    self->batch_max = 1;
    msgpack_sbuffer_init (&self->buf);
    self->heartbeat_ms = opts->heartbeat_ms > 0? opts->heartbeat_ms: 1000;
    if (opts->node_id)
        snprintf (self->node_id, sizeof self->node_id, "%s", opts->node_id);
    else {
        char host [128] = "host";
        gethostname (host, sizeof host - 1);
        snprintf (self->node_id, sizeof self->node_id, "%s:%d", host, (int) getpid ());
    }
    snprintf (self->reply_name, sizeof self->reply_name, "$node.%.240s", self->node_id);
    if (tr_name_check (self->node_id, strlen (self->node_id))
    ||  tr_name_check (self->reply_name, strlen (self->reply_name))) {
        free (self);
        return TR_EINVAL;
    }
    int rc = s_curve_keys (self, opts);
    if (rc) {
        free (self);
        return rc;
    }
    self->endpoint = strdup (opts->broker);
    self->names = zhashx_new ();
    self->unsent = zlistx_new ();
    self->prefixes = zhashx_new ();
    self->watches = zhashx_new ();
    self->replicas = zlistx_new ();
    if (self->watches)
        zhashx_set_destructor (self->watches, s_watch_destroy);
    atomic_init (&self->call_seq, UINT64_C (1) << 62);
    rc = self->endpoint && self->names
          && self->unsent && self->prefixes && self->watches && self->replicas?
             TR_OK: TR_ENOMEM;
    if (rc == TR_OK) {
        rc = tr__mbox_new (node, NULL, SIZE_MAX, TR_FULL_FAIL, &self->gateway);
    }
    if (rc == TR_OK && pthread_create (&self->thread, NULL, s_run, self))
        rc = TR_ESYS;
    if (rc) {
        if (self->gateway) {
            tr__mbox_close (self->gateway, TR_ESTOPPED);
            tr__mbox_unref (&self->gateway);
        }
        zhashx_destroy (&self->names);
        zlistx_destroy (&self->unsent);
        zhashx_destroy (&self->prefixes);
        zhashx_destroy (&self->watches);
        zlistx_destroy (&self->replicas);
        free (self->endpoint);
        free (self);
        return rc;
    }
    *self_p = self;
    return TR_OK;
}

tr__mbox_t *
tr__remote_gateway (tr__remote_t *self)
{
    return self->gateway;
}

void
tr__remote_name (tr__remote_t *self, const char *name, bool added)
{
    tr__post_raw (self->node, self->gateway, added? TR__KIND_NAME_ADD: TR__KIND_NAME_DEL,
                  name, strlen (name) + 1);
}

bool
tr__remote_connected (tr__remote_t *self)
{
    return self && atomic_load (&self->connected);
}

void
tr__remote_stop (tr__remote_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tr__remote_t *self = *self_p;
    tr__post_raw (self->node, self->gateway, TR__KIND_STOP, NULL, 0);
    pthread_join (self->thread, NULL);
    //  Cleared only now: the link's last callbacks (calls ended with
    //  TR_ESTOPPED) run on its thread and may still read it, to make a
    //  call that is then refused.
    *self_p = NULL;
    tr__mbox_unref (&self->gateway);
    zhashx_destroy (&self->names);
    tr__u64map_clear (&self->pending);
    tr__u64map_clear (&self->calls);
    zlistx_destroy (&self->unsent);
    zhashx_destroy (&self->prefixes);
    zhashx_destroy (&self->watches);
    tr_replica_t *r;
    while ((r = (tr_replica_t *) zlistx_detach (self->replicas, NULL)))
        s_replica_unref (&r);
    zlistx_destroy (&self->replicas);
    msgpack_sbuffer_destroy (&self->buf);
    free (self->endpoint);
    memset (self->curve_secret, 0, sizeof self->curve_secret);
    free (self);
}

void
tr__remote_replica (tr__remote_t *self, tr_replica_t *replica, bool on)
{
    if (on)
        atomic_fetch_add (&replica->refs, 1);   //  the link's, in the message
    if (tr__post_raw (self->node, self->gateway, on? TR__KIND_REPLICA: TR__KIND_UNREPLICA,
                      &replica, sizeof replica) && on)
        atomic_fetch_sub (&replica->refs, 1);
}

int
tr_replica_new (tr_node_t *node, const char *prefix, int timeout_ms, tr_replica_t **replica_p)
{
    if (!node || !node->remote || !prefix || strlen (prefix) > 1024 || !replica_p
    ||  timeout_ms <= 0)
        return TR_EINVAL;
    tr_replica_t *r = (tr_replica_t *) calloc (1, sizeof *r);
    if (!r)
        return TR_ENOMEM;
    atomic_init (&r->refs, 1);
    r->remote = node->remote;
    r->prefix = strdup (prefix);
    r->entries = zhashx_new ();
    r->buffer = zlistx_new ();
    pthread_mutex_init (&r->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&r->cond, &attr);
    pthread_condattr_destroy (&attr);
    if (!r->prefix || !r->entries || !r->buffer) {
        s_replica_unref (&r);
        return TR_ENOMEM;
    }
    zhashx_set_destructor (r->entries, s_entry_destroy);
    zlistx_set_destructor (r->buffer, s_entry_destroy);
    tr__remote_replica (node->remote, r, true);
    int64_t deadline = tr__deadline_after_ms (timeout_ms);
    struct timespec at = tr__timespec_at (deadline, CLOCK_MONOTONIC);
    pthread_mutex_lock (&r->lock);
    while (!r->ready)
        if (pthread_cond_timedwait (&r->cond, &r->lock, &at) == ETIMEDOUT)
            break;
    bool ready = r->ready;
    pthread_mutex_unlock (&r->lock);
    if (!ready) {
        tr_replica_destroy (&r);
        return TR_ETIMEDOUT;
    }
    *replica_p = r;
    return TR_OK;
}

int
tr_replica_get (tr_replica_t *self, const char *key, tr_scratch_value_t *value)
{
    if (value)
        memset (value, 0, sizeof *value);
    if (!self || !key || !value)
        return TR_EINVAL;
    int rc = TR_ENOTFOUND;
    pthread_mutex_lock (&self->lock);
    s_entry_t *e = (s_entry_t *) zhashx_lookup (self->entries, key);
    if (e) {
        value->data = (uint8_t *) malloc (e->size? e->size: 1);
        if (value->data) {
            memcpy (value->data, e->value, e->size);
            value->size = e->size;
            value->version = e->version;
            rc = TR_OK;
        }
        else
            rc = TR_ENOMEM;
    }
    pthread_mutex_unlock (&self->lock);
    return rc;
}

uint64_t
tr_replica_version (tr_replica_t *self)
{
    if (!self)
        return 0;
    pthread_mutex_lock (&self->lock);
    uint64_t version = self->version;
    pthread_mutex_unlock (&self->lock);
    return version;
}

size_t
tr_replica_size (tr_replica_t *self)
{
    if (!self)
        return 0;
    pthread_mutex_lock (&self->lock);
    size_t size = zhashx_size (self->entries);
    pthread_mutex_unlock (&self->lock);
    return size;
}

void
tr_replica_destroy (tr_replica_t **replica_p)
{
    if (!replica_p || !*replica_p)
        return;
    tr_replica_t *r = *replica_p;
    *replica_p = NULL;
    tr__remote_replica (r->remote, r, false);
    s_replica_unref (&r);
}

void
tr__remote_watch (tr__remote_t *self, const char *prefix, const char *actor, bool on)
{
    size_t prefix_len = strlen (prefix), actor_len = strlen (actor);
    char *body = (char *) malloc (prefix_len + actor_len + 2);
    if (!body)
        return;
    memcpy (body, prefix, prefix_len + 1);
    memcpy (body + prefix_len + 1, actor, actor_len + 1);
    tr__post_raw (self->node, self->gateway, on? TR__KIND_WATCH: TR__KIND_UNWATCH,
                  body, prefix_len + actor_len + 2);
    free (body);
}

uint64_t
tr__remote_call_seq (tr__remote_t *self)
{
    return atomic_fetch_add (&self->call_seq, 1);
}

//  A call with copies of the request's frames and refs references:
//  asynchronous with fn (no lock: only the link touches it), waited for
//  without. NULL if out of memory.
static tr__call_t *
s_call_new (tr__wire_out_t *frame, const void *payload, size_t payload_size, int refs,
            tr__call_fn *fn, void *arg)
{
    if (frame->failed)
        return NULL;
    tr__call_t *call = (tr__call_t *) calloc (1, sizeof *call);
    if (!call)
        return NULL;
    atomic_init (&call->refs, refs);
    call->fn = fn;
    call->fn_arg = arg;
    if (!fn) {
        //  Only a waiting caller needs to be woken.
        pthread_mutex_init (&call->lock, NULL);
        pthread_condattr_t attr;
        pthread_condattr_init (&attr);
        pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
        pthread_cond_init (&call->cond, &attr);
        pthread_condattr_destroy (&attr);
    }
    tr__mp_t mp;
    uint32_t n;
    const char *verb;
    uint32_t verb_len;
    tr__mp_init (&mp, frame->data, frame->size);
    if (tr__mp_array (&mp, &n) == 0 && tr__mp_str (&mp, &verb, &verb_len) == 0)
        tr__mp_uint (&mp, &call->seq);
    //  An asynchronous call takes the writer's buffer as it is; a waiting
    //  caller keeps its writer (it ends it) and the call gets a copy.
    call->frame = fn? frame->data: (uint8_t *) malloc (frame->size);
    call->frame_size = frame->size;
    if (fn)
        *frame = (tr__wire_out_t) { NULL, 0, 0, false };
    if (payload) {
        call->payload = (uint8_t *) malloc (payload_size? payload_size: 1);
        call->payload_size = payload_size;
    }
    if (!call->frame || (payload && !call->payload)) {
        atomic_store (&call->refs, 1);
        s_call_unref (&call);
        return NULL;
    }
    if (!fn)
        memcpy (call->frame, frame->data, frame->size);
    if (payload && payload_size)
        memcpy (call->payload, payload, payload_size);
    return call;
}

int
tr__remote_call_async (tr__remote_t *self, tr__wire_out_t *frame,
                       const void *payload, size_t payload_size, int timeout_ms,
                       tr__call_fn *done, void *arg)
{
    tr__call_t *call = s_call_new (frame, payload, payload_size, 1, done, arg);
    if (!call)
        return TR_ENOMEM;
    call->deadline_ns = tr__deadline_after_ms (timeout_ms);
    //  Made by a callback on the link's own thread (a pipelining client
    //  making its next call): into the batch at once, not round through
    //  the gateway.
    if (pthread_equal (pthread_self (), self->thread)) {
        if (self->stopping) {
            s_call_unref (&call);       //  a callback while the link stops
            return TR_ESTOPPED;
        }
        if (self->greeted && !self->rejoin_ns)
            s_send_call (self, call);
        else
            zlistx_add_end (self->unsent, call);
        return TR_OK;
    }
    //  The link's (only) reference travels in the message.
    if (tr__post_raw (self->node, self->gateway, TR__KIND_CALL, &call, sizeof call)) {
        s_call_unref (&call);
        return TR_ESTOPPED;
    }
    return TR_OK;
}

int
tr__remote_call (tr__remote_t *self, const tr__wire_out_t *frame, const void *payload,
                 size_t payload_size, int timeout_ms, tr__reply_t *reply_p)
{
    memset (reply_p, 0, sizeof *reply_p);
    tr__call_t *call = s_call_new ((tr__wire_out_t *) frame, payload, payload_size, 2, NULL, NULL);
    if (!call)
        return TR_ENOMEM;
    //  The link's reference travels in the message.
    int rc = tr__post_raw (self->node, self->gateway, TR__KIND_CALL, &call, sizeof call);
    if (rc) {
        atomic_fetch_sub (&call->refs, 1);
        s_call_unref (&call);
        return TR_ESTOPPED;
    }
    int64_t deadline = tr__deadline_after_ms (timeout_ms);
    struct timespec at = tr__timespec_at (deadline, CLOCK_MONOTONIC);
    pthread_mutex_lock (&call->lock);
    while (!call->done)
        if (pthread_cond_timedwait (&call->cond, &call->lock, &at) == ETIMEDOUT)
            break;
    if (call->done) {
        rc = call->rc;
        if (rc == TR_OK) {
            *reply_p = call->reply;
            memset (&call->reply, 0, sizeof call->reply);
        }
    }
    else
        rc = TR_ETIMEDOUT;
    pthread_mutex_unlock (&call->lock);
    s_call_unref (&call);
    return rc;
}

void
tr__remote_reply_free (tr__reply_t *reply)
{
    if (reply) {
        free (reply->frame);
        free (reply->payload);
        memset (reply, 0, sizeof *reply);
    }
}

void
tr__remote_publish (tr__remote_t *self, const char *topic, const void *body, size_t size)
{
    size_t topic_len = strlen (topic);
    uint8_t stack [512];
    uint8_t *buf = topic_len + 1 + size <= sizeof stack? stack:
                   (uint8_t *) malloc (topic_len + 1 + size);
    if (!buf)
        return;
    memcpy (buf, topic, topic_len + 1);
    if (size)
        memcpy (buf + topic_len + 1, body, size);
    tr__post_raw (self->node, self->gateway, TR__KIND_PUB, buf, topic_len + 1 + size);
    if (buf != stack)
        free (buf);
}

void
tr__remote_subscribe (tr__remote_t *self, const char *prefix, bool on)
{
    tr__post_raw (self->node, self->gateway, on? TR__KIND_SUB: TR__KIND_UNSUB,
                  prefix, strlen (prefix) + 1);
}
