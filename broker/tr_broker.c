/*  tr_broker.c - the broker's network core; see tr_broker.h and
    protocols/2-broker.md.

    One thread owns everything: a ZeroMQ ROUTER bound to the endpoint, an
    inproc pair through which tr_broker_stop tells it to end, and the
    clients' state. It polls the two sockets with a timeout that is the
    next heartbeat or death due, so no other timer thread is needed. The
    broker has a ZeroMQ context of its own, so stopping it never waits on
    sockets of the program that embeds it. (czmq's zactor and zsock are
    not used: creating a czmq socket installs czmq's SIGINT handler in the
    whole process. czmq's containers are fine.)

    The state:
      - peers:   routing id (hex) -> client, for the greeted clients only;
                 a peer that has not greeted costs nothing, so a refused
                 request never allocates;
      - by_id:   NODE_ID -> client (takeover by NODE_ID, 2.3);
      - names:   name -> client holding it; each client also keeps its
                 own set, to drop them all and list them in NODE_DOWN;
      - subs:    prefix -> the clients subscribed to it, with a count of
                 prefixes per length, so that an event of topic T looks
                 up only the lengths in use among T's own prefixes;
      - two lists of clients ordered by when the broker last heard from
        them and last sent to them: the heads are the next death and the
        next heartbeat due, found in O(1).

    Slow receivers: the ROUTER has ZMQ_ROUTER_MANDATORY and a send
    high-water mark of max_queue messages per peer, and every send uses
    ZMQ_DONTWAIT. A full peer makes the send fail with EAGAIN (a SEND is
    bounced TR_EFULL, an event copy is dropped and counted), a peer whose
    connection is gone fails with EHOSTUNREACH (it is then dropped as
    dead at once, after the message at hand is handled, instead of 3H
    later). So memory held for one client is bounded by ZeroMQ's pipes:
    max_queue messages towards it, and as many from it.

    Payloads (envelopes, event bodies) are never copied by the broker:
    the zmq_msg_t received is moved into the outgoing message (zmq_msg
    copies are reference counted above 33 bytes).

    The scratchpad (2.4.4) is a tr__kv_t store, with a tr__kvlog_t log as
    its journal when the options give a data folder: a write is appended
    inside the store's call, so the OK sent after the call returns never
    runs ahead of the log. Under fsync always the log syncs on its own
    thread, grouping the appends made meanwhile (tr_kvlog.h); the OK to
    a write, and the KV_CHANGEs it causes, are held (s_send, s_held_t)
    until the log counts the write durable, and the client's later
    messages queue behind them, so each client still gets its messages
    in order. The broker's thread never waits for the disk: other
    clients are served meanwhile (some may read a value before it is
    durable; only the writer's acknowledgement promises durability). The store
    works on the wall clock (Unix ms, for the TTLs kept in the log); the
    poll's timeout also covers the next key to expire, and every change
    (expiries included) is pushed at once to the watches it concerns.

    Watches: each client keeps its watches by prefix (they count toward
    max_subs with its subscriptions). A watch's changes queue in the
    store (a bounded backlog per watch); the broker moves them to the
    client's socket as KV_CHANGE in version order. When the client's
    queue is full, the change at hand is held and the watch waits on a
    list of stalled watches that is tried again every few milliseconds;
    meanwhile its backlog grows, and once it passes its bound the store
    flags the watch: the broker sends KV_RESYNC (as soon as the client
    has room for it) and ends the watch.

    CURVE (2.10): with a secret key file, the ROUTER is a CURVE server,
    and the broker answers ZeroMQ's authentication requests (ZAP, RFC
    27) itself, on a REP socket bound to inproc://zeromq.zap.01 in its
    own context and polled by its own thread beside the router (czmq's
    zauth is an actor, and would start czmq's signal handling in the
    host process). The ZAP socket is bound before the router, so that no
    handshake can find the handler missing (libzmq admits a CURVE client
    when there is no handler); a client whose key is refused never
    completes its handshake, so nothing it sends is ever read. Allowed:
    the keys in the allow folder (read again at most once a second, as
    handshakes come, so keys can be added or removed live; a folder that
    can no longer be read admits nobody), and the broker's own key.
*/

#include "troupe/tr_broker.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_error.h"
#include "troupe/tr_log.h"
#include "tr_clock.h"
#include "tr_curve.h"
#include "tr_kv.h"
#include "tr_kvlog.h"
#include "tr_wire.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

//  A value sent without copying is freed by one of libzmq's threads, after
//  passing through its lock-free queues, which ThreadSanitizer cannot see
//  (tests/tsan.supp): the hand-off is annotated.
#if defined(__has_feature)
#   if __has_feature (thread_sanitizer)
#       define S_TSAN 1
#   endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(S_TSAN)
#   define S_TSAN 1
#endif
#ifdef S_TSAN
#   include <sanitizer/tsan_interface.h>
#   define S_HAND_OFF(addr) __tsan_release (addr)
#   define S_TAKE_OVER(addr) __tsan_acquire (addr)
#else
#   define S_HAND_OFF(addr) ((void) (addr))
#   define S_TAKE_OVER(addr) ((void) (addr))
#endif

#define S_BROKER_TAG    0x7472626bu     /* "trbk" */
#define S_DEAD_TAG      0xdeadbeefu

//  Defaults of 2-broker.md, 2.6.
#define S_HEARTBEAT_MS  1000
#define S_MAX_FRAME     17825792
#define S_MAX_NAMES     100000
#define S_MAX_SUBS      10000
#define S_MAX_QUEUE     10000
#define S_MAX_KEY       1024
#define S_MAX_VALUE     1048576
#define S_MAX_LIST      100000

//  Messages handled per wake-up before timers are looked at again.
#define S_BATCH         512

//  How often a watch stalled on a full client queue is tried again, ms.
#define S_RETRY_MS      5

//  How often, at most, the allow folder is read again, and a refused
//  CURVE client is logged (a refused client retries every 100 ms).
#define S_ALLOW_REREAD_NS   1000000000
#define S_REFUSAL_LOG_NS    1000000000

//  How soon held messages that met a full queue are tried again, ms.
#define S_HELD_RETRY_MS 10

//  Bytes of a KV_ answer around its keys and values: the array and
//  str headers, a version and a TTL per item (generous).
#define S_ITEM_OVERHEAD 32
#define S_ANSWER_OVERHEAD 64

typedef struct s_client s_client_t;
typedef struct s_watch s_watch_t;

//  A message held for a client until the scratchpad's log has made the
//  writes it reports durable (fsync always: s_send), or until the
//  messages held before it have gone, so that a client gets its
//  messages in the order the broker made them.
typedef struct s_held s_held_t;
struct s_held {
    uint64_t mark;                      //  log appends that must be durable
    zmq_msg_t cmd, payload;
    bool has_payload;
    s_held_t *next;
};

//  A client is in up to three intrusive lists: by when the broker last
//  heard from it, by when it last sent to it, and the list of clients
//  whose connection is gone (dropped after the message at hand).
enum { S_BY_RECV, S_BY_SEND, S_GONE, S_LISTS };

typedef struct {
    s_client_t *prev, *next;
    bool in;
} s_link_t;

typedef struct {
    s_client_t *head, *tail;            //  head: the oldest
} s_list_t;

//  The clients subscribed to one prefix.
typedef struct {
    s_client_t **items;
    size_t count, room;
} s_subs_t;

typedef enum { S_KIND_NODE, S_KIND_ACTOR, S_KIND_CLIENT } s_kind_t;
static const char *s_kind_names [] = { "node", "actor", "client" };

struct s_client {
    uint8_t rid [256];                  //  ZeroMQ routing id
    size_t rid_len;
    char key [2 * 256 + 1];             //  the routing id in hex: key of peers
    char id [TR_NAME_MAX + 1];          //  NODE_ID
    s_kind_t kind;
    int minor;                          //  the protocol's minor version spoken
    zhashx_t *names;                    //  name -> this client
    zhashx_t *subs;                     //  prefix -> s_subs_t * (not owned)
    zhashx_t *watches;                  //  KV_ prefix -> s_watch_t * (owned)
    uint64_t dropped;                   //  events lost since the last EVENT
    uint64_t event_mark;                //  the last event it was sent
    //  The events of the PUBS at hand that go to this client (s_pub_batch).
    uint64_t batch_mark;
    uint32_t batch_count;
    uint16_t batch_idx [TR__WIRE_MAX_BATCH];
    int64_t joined_ns;
    int64_t last_recv_ns;
    int64_t last_send_ns;
    s_link_t link [S_LISTS];
    //  Held messages (s_held_t), oldest first, and the broker's list of
    //  clients that hold some.
    s_held_t *held, *held_tail;
    size_t held_count;
    s_client_t *holding_next;
    bool holding;
};

//  A client's watch on a prefix of the scratchpad: the store's watch
//  (whose arg is this), and the change that could not be sent yet
//  because the client's queue was full; it goes first next time.
struct s_watch {
    tr__kv_watch_t *watch;
    s_client_t *client;
    tr__kv_change_t *held;
    bool stalled;                       //  in the broker's stalled list
    s_watch_t *prev, *next;             //  in that list
};

//  The counters, one atomic each so that tr_broker_stats may read them
//  from any thread while the broker's thread counts.
#define S_STATS(X) \
    X (clients) X (names) X (joined) X (left) X (dead) X (routed) X (bounced) \
    X (events) X (events_dropped) X (malformed) X (refused) X (lost) \
    X (kv_writes) X (kv_changes) X (kv_resyncs) X (auth_allowed) X (auth_refused)

#define S_ATOMIC_FIELD(name) _Atomic uint64_t name;
typedef struct {
    S_STATS (S_ATOMIC_FIELD)
} s_stats_t;
#undef S_ATOMIC_FIELD

#define S_ADD(self, field, n) \
    atomic_fetch_add_explicit (&(self)->stats.field, (uint64_t) (n), memory_order_relaxed)
#define S_SUB(self, field, n) \
    atomic_fetch_sub_explicit (&(self)->stats.field, (uint64_t) (n), memory_order_relaxed)

struct tr_broker {
    uint32_t tag;
    //  Options, with the defaults filled in.
    int64_t heartbeat_ms;
    size_t max_frame;
    size_t max_names;
    size_t max_subs;
    size_t max_queue;
    size_t max_key;
    size_t max_value;
    size_t max_list;
    int fsync;                          //  tr_fsync_t
    char id [TR_NAME_MAX + 1];          //  BROKER_ID
    char endpoint [256];                //  as bound (ZMQ_LAST_ENDPOINT)
    char pipe_endpoint [64];
    void *ctx;
    void *router;
    void *pipe;                         //  our end: tr_broker_stop writes
    pthread_t thread;
    s_stats_t stats;
    tr__kv_t *kv;                       //  locks itself: stats read it
    tr__kvlog_t *kvlog;                 //  NULL without a data folder
    //  From here on, the broker's thread alone.
    zhashx_t *peers;                    //  hex routing id -> s_client_t * (owned)
    zhashx_t *by_id;                    //  NODE_ID -> s_client_t *
    zhashx_t *names;                    //  name -> s_client_t *
    zhashx_t *subs;                     //  prefix -> s_subs_t * (owned)
    size_t prefix_lengths [TR_NAME_MAX + 1];
    s_list_t lists [S_LISTS];
    uint64_t event_seq;
    s_client_t **touched;               //  s_pub_batch's subscribers at hand
    size_t touched_count, touched_room;
    //  While a client's MULTI is handled: the answers to it, gathered to
    //  go back as one MULTI (s_answer).
    bool in_multi;
    s_client_t *collecting;             //  NULL: answers go at once
    msgpack_sbuffer collected;
    uint32_t collected_sizes [TR__WIRE_MAX_BATCH];
    uint32_t collected_count;
    int64_t now_ns;                     //  when the message at hand arrived
    zmq_msg_t deliver;                  //  ["DELIVER", 0], copied per SEND
    zmq_msg_t heartbeat;                //  ["HEARTBEAT", 0]
    s_watch_t *stalled;                 //  watches waiting for room
    //  fsync always: the log appends the message at hand reports, which
    //  must be durable before it goes (0: none), the most of those
    //  gathered into a MULTI's answer, and the clients holding messages.
    uint64_t hold_mark;
    uint64_t collected_mark;
    s_client_t *holding;
    bool holding_blocked;               //  a held message met a full queue
    //  CURVE (curve false: none of it). The keys are set before the
    //  thread starts; the allow list is the thread's.
    bool curve;
    char public_txt [TR__CURVE_TXT];    //  the broker's key pair, Z85
    char secret_txt [TR__CURVE_TXT];
    uint8_t public_key [32];
    void *zap;                          //  REP on inproc://zeromq.zap.01
    char *allow_dir;                    //  NULL: own key only
    tr__curve_keys_t *allow;            //  NULL while the folder is unreadable
    int64_t allow_read_ns;
    int64_t refusal_logged_ns;
    uint64_t refusals_unlogged;
};

//  One message received: the routing id, and the first two frames after
//  it (more frames are counted and closed at once).
typedef struct {
    zmq_msg_t rid;
    zmq_msg_t cmd;
    zmq_msg_t payload;
    size_t frames;                      //  after the routing id
    bool oversized;                     //  a frame over max_frame (inproc)
} s_in_t;

//  A cursor over a command's arguments, read in order.
typedef struct {
    tr__mp_t mp;
    uint32_t left;                      //  arguments not read yet
} s_args_t;

static void s_drop (tr_broker_t *self, s_client_t *client, const char *why, bool dead);
static void s_watches_end (tr_broker_t *self, s_client_t *client);

//  --------------------------------------------------------------------------
//  Lists of clients

static void
s_list_remove (tr_broker_t *self, int which, s_client_t *client)
{
    s_link_t *link = &client->link [which];
    if (!link->in)
        return;
    s_list_t *list = &self->lists [which];
    if (link->prev)
        link->prev->link [which].next = link->next;
    else
        list->head = link->next;
    if (link->next)
        link->next->link [which].prev = link->prev;
    else
        list->tail = link->prev;
    link->prev = link->next = NULL;
    link->in = false;
}

//  Appends the client to a list (moves it to the end if it is in it).
static void
s_list_append (tr_broker_t *self, int which, s_client_t *client)
{
    s_list_remove (self, which, client);
    s_list_t *list = &self->lists [which];
    s_link_t *link = &client->link [which];
    link->prev = list->tail;
    link->next = NULL;
    link->in = true;
    if (list->tail)
        list->tail->link [which].next = client;
    else
        list->head = client;
    list->tail = client;
}

//  --------------------------------------------------------------------------
//  Sending

//  Writes the routing id of a message in hex into key (2 * 255 + 1 bytes).
static void
s_hex (const uint8_t *rid, size_t len, char *key)
{
    static const char digits [] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        key [2 * i] = digits [rid [i] >> 4];
        key [2 * i + 1] = digits [rid [i] & 15];
    }
    key [2 * len] = 0;
}

//  Marks a client whose connection is gone: it is dropped as dead once
//  the message at hand has been handled (never while a caller may be
//  walking a container it is in).
static void
s_gone (tr_broker_t *self, s_client_t *client)
{
    if (!client->link [S_GONE].in)
        s_list_append (self, S_GONE, client);
}

//  Sends one protocol message to the peer with routing id rid: the
//  command frame cmd, which is always consumed, and the payload if not
//  NULL, which is moved on success and left to the caller on failure.
//  Never waits. Returns TR_OK, TR_EFULL (the peer's queue is full) or
//  TR_ENOACTOR (no peer has that routing id any more).
static int
s_send_rid (tr_broker_t *self, const void *rid, size_t rid_len, zmq_msg_t *cmd,
            zmq_msg_t *payload)
{
    if (zmq_send (self->router, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (cmd);
        return errno == EAGAIN? TR_EFULL: TR_ENOACTOR;
    }
    //  Once the routing id is taken, ROUTER takes the rest of the message
    //  whole: the high-water mark counts messages, not frames.
    int rc = zmq_msg_send (cmd, self->router, payload? ZMQ_SNDMORE | ZMQ_DONTWAIT: ZMQ_DONTWAIT);
    if (rc < 0)
        zmq_msg_close (cmd);
    if (payload && rc >= 0)
        zmq_msg_send (payload, self->router, ZMQ_DONTWAIT);
    return TR_OK;
}

//  Holds a message for a client (see s_held_t); takes cmd, and payload
//  if not NULL. TR_EFULL (cmd closed, payload left) past max_queue held
//  messages, or TR_ENOMEM.
static int
s_hold (tr_broker_t *self, s_client_t *client, zmq_msg_t *cmd, zmq_msg_t *payload,
        uint64_t mark)
{
    s_held_t *held = client->held_count < self->max_queue?
                     (s_held_t *) calloc (1, sizeof *held): NULL;
    if (!held) {
        zmq_msg_close (cmd);
        return client->held_count < self->max_queue? TR_ENOMEM: TR_EFULL;
    }
    held->mark = mark;
    zmq_msg_init (&held->cmd);
    zmq_msg_move (&held->cmd, cmd);
    zmq_msg_init (&held->payload);
    if (payload) {
        zmq_msg_move (&held->payload, payload);
        held->has_payload = true;
    }
    if (client->held_tail)
        client->held_tail->next = held;
    else
        client->held = held;
    client->held_tail = held;
    client->held_count++;
    if (!client->holding) {
        client->holding = true;
        client->holding_next = self->holding;
        self->holding = client;
    }
    return TR_OK;
}

//  Frees a client's held messages, counting them lost.
static void
s_held_drop (tr_broker_t *self, s_client_t *client)
{
    s_held_t *held;
    while ((held = client->held)) {
        client->held = held->next;
        zmq_msg_close (&held->cmd);
        zmq_msg_close (&held->payload);
        free (held);
        S_ADD (self, lost, 1);
    }
    client->held_tail = NULL;
    client->held_count = 0;
}

//  Sends to a greeted client (as s_send_rid) and notes the time for its
//  heartbeats. A client found gone is marked for dropping. A message
//  that reports log appends not durable yet (self->hold_mark), and any
//  message for a client holding some already, is held (s_release sends
//  it): TR_OK then means queued.
static int
s_send (tr_broker_t *self, s_client_t *client, zmq_msg_t *cmd, zmq_msg_t *payload)
{
    uint64_t mark = self->hold_mark;
    if (mark || client->held) {
        if (mark) {
            uint64_t written, synced;
            bool failed;
            tr__kvlog_durable (self->kvlog, &written, &synced, &failed);
            if (synced >= mark)
                mark = 0;
        }
        if (mark || client->held) {
            client->last_send_ns = self->now_ns;
            s_list_append (self, S_BY_SEND, client);
            return s_hold (self, client, cmd, payload, mark);
        }
    }
    int rc = s_send_rid (self, client->rid, client->rid_len, cmd, payload);
    if (rc == TR_ENOACTOR)
        s_gone (self, client);
    else {
        //  A full queue also counts as sent: the peer has plenty to read.
        client->last_send_ns = self->now_ns;
        s_list_append (self, S_BY_SEND, client);
    }
    return rc;
}

//  Sends what clients hold whose log appends are durable now, in order,
//  each client's until one that must wait or meets a full queue (then
//  holding_blocked asks for another try soon). After a failed sync the
//  messages waiting for it are dropped and counted lost: what they
//  report is not durable, and the log refuses writes from then on.
static void
s_release (tr_broker_t *self)
{
    if (!self->holding)
        return;
    uint64_t written, synced;
    bool failed;
    tr__kvlog_durable (self->kvlog, &written, &synced, &failed);
    self->holding_blocked = false;
    s_client_t **link = &self->holding;
    while (*link) {
        s_client_t *client = *link;
        s_held_t *held;
        while ((held = client->held)) {
            if (held->mark > synced && !failed)
                break;
            int rc = TR_ENOACTOR;
            if (held->mark <= synced) {
                zmq_msg_t cmd;
                zmq_msg_init (&cmd);
                zmq_msg_copy (&cmd, &held->cmd);
                rc = s_send_rid (self, client->rid, client->rid_len, &cmd,
                                 held->has_payload? &held->payload: NULL);
                if (rc == TR_EFULL) {
                    self->holding_blocked = true;
                    break;
                }
                if (rc == TR_ENOACTOR)
                    s_gone (self, client);
            }
            if (rc != TR_OK)
                S_ADD (self, lost, 1);
            client->held = held->next;
            client->held_count--;
            zmq_msg_close (&held->cmd);
            zmq_msg_close (&held->payload);
            free (held);
        }
        if (!client->held) {
            client->held_tail = NULL;
            client->holding = false;
            *link = client->holding_next;
            client->holding_next = NULL;
        }
        else
            link = &client->holding_next;
    }
}

//  Takes a client out of the holding list and drops what it holds.
static void
s_release_forget (tr_broker_t *self, s_client_t *client)
{
    if (client->holding)
        for (s_client_t **link = &self->holding; *link; link = &(*link)->holding_next)
            if (*link == client) {
                *link = client->holding_next;
                break;
            }
    client->holding = false;
    client->holding_next = NULL;
    s_held_drop (self, client);
}

//  The log appends the scratchpad write just made must see durable
//  before its answer goes (fsync always, grouped syncs), or 0.
static uint64_t
s_write_mark (tr_broker_t *self)
{
    if (!self->kvlog || self->fsync != TR_FSYNC_ALWAYS)
        return 0;
    uint64_t written, synced;
    bool failed;
    tr__kvlog_durable (self->kvlog, &written, &synced, &failed);
    return written;
}

//  Moves a finished frame from the writer into a message; false if the
//  writer ran out of memory. The writer is ended either way.
static bool
s_frame (tr__wire_out_t *out, zmq_msg_t *msg)
{
    bool ok = !out->failed && zmq_msg_init_size (msg, out->size) == 0;
    if (ok)
        memcpy (zmq_msg_data (msg), out->data, out->size);
    tr__wire_end (out);
    return ok;
}

//  Sends a written frame (no payload) to a client, or to the routing id
//  of an incoming message when client is NULL. Ends the writer.
static void s_collect_flush (tr_broker_t *self);

static int
s_answer (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_out_t *out)
{
    if (client && client == self->collecting && !out->failed) {
        //  Answers to a MULTI go back together.
        if (msgpack_sbuffer_write (&self->collected, (const char *) out->data, out->size) == 0) {
            if (self->hold_mark > self->collected_mark)
                self->collected_mark = self->hold_mark;
            self->collected_sizes [self->collected_count++] = (uint32_t) out->size;
            tr__wire_end (out);
            if (self->collected_count == TR__WIRE_MAX_BATCH)
                s_collect_flush (self);
            return TR_OK;
        }
    }
    zmq_msg_t msg;
    if (!s_frame (out, &msg))
        return TR_ENOMEM;
    int rc;
    if (client)
        rc = s_send (self, client, &msg, NULL);
    else
        rc = s_send_rid (self, zmq_msg_data (&in->rid), zmq_msg_size (&in->rid), &msg, NULL);
    if (rc == TR_EFULL)
        S_ADD (self, lost, 1);
    return rc;
}

//  Sends the answers gathered for the client whose MULTI is being handled:
//  one alone as it is, several as one MULTI.
static void
s_collect_flush (tr_broker_t *self)
{
    s_client_t *client = self->collecting;
    uint32_t n = self->collected_count;
    if (!client || n == 0)
        return;
    tr__wire_out_t out;
    zmq_msg_t frame, payload;
    int rc = TR_ENOMEM;
    uint64_t outer_mark = self->hold_mark;
    self->hold_mark = self->collected_mark;
    if (n == 1) {
        if (zmq_msg_init_size (&frame, self->collected.size) == 0) {
            memcpy (zmq_msg_data (&frame), self->collected.data, self->collected.size);
            rc = s_send (self, client, &frame, NULL);
        }
    }
    else {
        tr__wire_begin (&out, TR__V_MULTI, 0, 2);
        tr__wire_array (&out, n);
        for (uint32_t i = 0; i < n; i++)
            tr__wire_uint (&out, self->collected_sizes [i]);
        tr__wire_array (&out, n);
        for (uint32_t i = 0; i < n; i++)
            tr__wire_uint (&out, 0);
        if (zmq_msg_init_size (&payload, self->collected.size) == 0) {
            memcpy (zmq_msg_data (&payload), self->collected.data, self->collected.size);
            if (s_frame (&out, &frame)) {
                rc = s_send (self, client, &frame, &payload);
                //  Sent, the payload was moved; not sent, it is closed here.
            }
            zmq_msg_close (&payload);
        }
        else
            tr__wire_end (&out);
    }
    if (rc != TR_OK)
        S_ADD (self, lost, n);
    self->hold_mark = outer_mark;
    self->collected_mark = 0;
    self->collected_count = 0;
    self->collected.size = 0;
}

//  Answers ERROR with a code and text, and counts the refusal.
static void
s_error (tr_broker_t *self, s_client_t *client, s_in_t *in, uint64_t seq, int code,
         const char *text)
{
    if (code == TR_EMALFORMED || code == TR_ETOOBIG)
        S_ADD (self, malformed, 1);
    else
        S_ADD (self, refused, 1);
    tr_log (TR_LOG_DEBUG, "broker: refused a request of %s: %s: %s",
            client? client->id: "a peer that has not greeted", tr_errname (code), text);
    tr__wire_out_t out;
    tr__wire_error (&out, seq, code, text);
    s_answer (self, client, in, &out);
}

//  Answers ["OK", seq] with no result.
static void
s_ok (tr_broker_t *self, s_client_t *client, uint64_t seq)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_OK, seq, 0);
    s_answer (self, client, NULL, &out);
}

//  --------------------------------------------------------------------------
//  Reading arguments
//
//  Commands reach the handlers below only once tr__wire_check has found
//  them as 2-broker.md gives them (form and values), so reading their
//  known arguments in order cannot fail; the readers still say so if it
//  does, and the handlers answer TR_EMALFORMED.

static void
s_args_init (s_args_t *args, const tr__wire_cmd_t *cmd)
{
    args->mp = cmd->args;
    args->left = cmd->nargs;
}

//  Reads the next argument as a str; false if there is none or it is not
//  a str.
static bool
s_arg_str (s_args_t *args, const char **text, uint32_t *len)
{
    if (args->left == 0)
        return false;
    args->left--;
    return tr__mp_str (&args->mp, text, len) == 0;
}

static bool
s_arg_uint (s_args_t *args, uint64_t *value)
{
    if (args->left == 0)
        return false;
    args->left--;
    return tr__mp_uint (&args->mp, value) == 0;
}

//  True if text (len bytes, not NUL-ended) is a valid name or topic, and
//  copies it NUL-ended into buf (TR_NAME_MAX + 1 bytes). An empty text
//  is valid only if empty_ok (a prefix).
static bool
s_name (const char *text, uint32_t len, bool empty_ok, char *buf)
{
    if (len > TR_NAME_MAX || (len == 0 && !empty_ok)
    ||  (len > 0 && tr_name_check (text, len) != TR_OK))
        return false;
    memcpy (buf, text, len);
    buf [len] = 0;
    return true;
}

//  --------------------------------------------------------------------------
//  Events

//  The command frame of an event for one subscriber: a copy of the
//  common frame, or the same with a fifth argument DROPPED when the
//  subscriber has lost events since the last one it was sent. False if
//  out of memory.
static bool
s_event_frame (zmq_msg_t *common, const char *topic, const char *from, uint64_t dropped,
               zmq_msg_t *cmd)
{
    if (dropped == 0) {
        zmq_msg_init (cmd);
        return zmq_msg_copy (cmd, common) == 0;
    }
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_EVENT, 0, 3);
    tr__wire_str (&out, topic, strlen (topic));
    tr__wire_str (&out, from, strlen (from));
    tr__wire_uint (&out, dropped);
    return s_frame (&out, cmd);
}

//  Nodes forward their own sys.actor.*, sys.breaker.* and sys.dead_letter;
//  sys.node.* is the broker's alone; other clients publish outside sys.
static bool
s_may_publish (const s_client_t *client, const char *topic, size_t len)
{
    bool sys = len >= 4 && memcmp (topic, "sys.", 4) == 0;
    return !sys || (client->kind == S_KIND_NODE
                    && !(len >= 9 && memcmp (topic, "sys.node.", 9) == 0));
}

//  Sends an event to every client subscribed to a prefix of topic, once
//  each, except its publisher (which delivers to its own subscribers
//  itself; NULL for the broker's own events). body may be NULL (sent as
//  an empty frame, meaning nil); it stays the caller's.
//  Calls fn for every client subscribed to a prefix of topic (len
//  bytes, NUL-terminated), once each, except publisher.
typedef void (s_subscriber_fn) (tr_broker_t *self, s_client_t *client, void *arg);

static void
s_subscribers (tr_broker_t *self, char *topic, size_t len, const s_client_t *publisher,
               s_subscriber_fn *fn, void *arg)
{
    uint64_t mark = ++self->event_seq;
    for (size_t plen = 0; plen <= len; plen++) {
        if (self->prefix_lengths [plen] == 0)
            continue;
        char kept = topic [plen];
        topic [plen] = 0;
        s_subs_t *subs = (s_subs_t *) zhashx_lookup (self->subs, topic);
        topic [plen] = kept;
        for (size_t i = 0; subs && i < subs->count; i++) {
            s_client_t *client = subs->items [i];
            if (client->event_mark == mark || client == publisher)
                continue;
            client->event_mark = mark;
            fn (self, client, arg);
        }
    }
}

//  One EVENT to one subscriber (s_publish).
typedef struct {
    zmq_msg_t *frame;
    const char *topic, *from;
    zmq_msg_t *body;
} s_one_event_t;

static void
s_send_event (tr_broker_t *self, s_client_t *client, void *arg)
{
    s_one_event_t *e = (s_one_event_t *) arg;
    zmq_msg_t cmd, copy;
    int rc = TR_ENOMEM;
    if (s_event_frame (e->frame, e->topic, e->from, client->dropped, &cmd)) {
        zmq_msg_init (&copy);
        if (e->body)
            zmq_msg_copy (&copy, e->body);
        rc = s_send (self, client, &cmd, &copy);
        if (rc)
            zmq_msg_close (&copy);
    }
    if (rc == TR_OK)
        client->dropped = 0;
    else {
        client->dropped++;
        S_ADD (self, events_dropped, 1);
    }
}

static void
s_publish (tr_broker_t *self, const char *topic, const char *from, zmq_msg_t *body,
           const s_client_t *publisher)
{
    S_ADD (self, events, 1);
    size_t topic_len = strlen (topic);
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_EVENT, 0, 2);
    tr__wire_str (&out, topic, topic_len);
    tr__wire_str (&out, from, strlen (from));
    zmq_msg_t frame;
    if (!s_frame (&out, &frame))
        return;
    char prefix [TR_NAME_MAX + 1];
    memcpy (prefix, topic, topic_len + 1);
    s_one_event_t event = { &frame, topic, from, body };
    s_subscribers (self, prefix, topic_len, publisher, s_send_event, &event);
    zmq_msg_close (&frame);
}

//  Publishes a system event {"id": node_id} from the broker.
static void
s_publish_node (tr_broker_t *self, const char *topic, const char *node_id)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    msgpack_pack_str_with_body (&pk, "id", 2);
    msgpack_pack_str_with_body (&pk, node_id, strlen (node_id));
    zmq_msg_t body;
    if (zmq_msg_init_size (&body, sb.size) == 0) {
        memcpy (zmq_msg_data (&body), sb.data, sb.size);
        s_publish (self, topic, self->id, &body, NULL);
        zmq_msg_close (&body);
    }
    msgpack_sbuffer_destroy (&sb);
}

//  Removes a client from one prefix's subscribers; frees the prefix's
//  entry when nobody is left.
static void
s_unsubscribe (tr_broker_t *self, s_client_t *client, const char *prefix)
{
    s_subs_t *subs = (s_subs_t *) zhashx_lookup (client->subs, prefix);
    if (!subs)
        return;
    for (size_t i = 0; i < subs->count; i++)
        if (subs->items [i] == client) {
            subs->items [i] = subs->items [--subs->count];
            break;
        }
    size_t len = strlen (prefix);
    self->prefix_lengths [len]--;
    if (subs->count == 0) {
        zhashx_delete (self->subs, prefix);
        free (subs->items);
        free (subs);
    }
    zhashx_delete (client->subs, prefix);
}

//  Adds a client to a prefix's subscribers. Returns TR_OK or TR_ENOMEM.
static int
s_subscribe (tr_broker_t *self, s_client_t *client, const char *prefix)
{
    s_subs_t *subs = (s_subs_t *) zhashx_lookup (self->subs, prefix);
    if (!subs) {
        subs = (s_subs_t *) calloc (1, sizeof *subs);
        if (!subs || zhashx_insert (self->subs, prefix, subs)) {
            free (subs);
            return TR_ENOMEM;
        }
    }
    if (subs->count == subs->room) {
        size_t room = subs->room? 2 * subs->room: 4;
        s_client_t **items = (s_client_t **) realloc (subs->items, room * sizeof *items);
        if (!items)
            goto fail;
        subs->items = items;
        subs->room = room;
    }
    if (zhashx_insert (client->subs, prefix, subs))
        goto fail;
    subs->items [subs->count++] = client;
    self->prefix_lengths [strlen (prefix)]++;
    return TR_OK;
fail:
    if (subs->count == 0) {
        zhashx_delete (self->subs, prefix);
        free (subs->items);
        free (subs);
    }
    return TR_ENOMEM;
}

//  --------------------------------------------------------------------------
//  Clients coming and going

static void
s_client_destroy (s_client_t **client_p)
{
    s_client_t *client = *client_p;
    *client_p = NULL;
    if (client) {
        assert (!client->watches || zhashx_size (client->watches) == 0);
        zhashx_destroy (&client->names);
        zhashx_destroy (&client->subs);
        zhashx_destroy (&client->watches);
        free (client);
    }
}

//  Sends NODE_DOWN for a client that has left to every other client:
//  [NODE_DOWN, 0, NODE_ID, [NAME...]]. The names come as one message, or
//  as several if one frame would exceed max_frame (a client may hold
//  100,000 names of 255 bytes; each message lists some of them).
static void
s_node_down (tr_broker_t *self, s_client_t *gone)
{
    //  A str costs at most 2 + 255 bytes; the head, the verb and the id
    //  at most 300.
    size_t per_frame = (self->max_frame - 300) / (2 + TR_NAME_MAX);
    zhashx_first (gone->names);
    size_t left = zhashx_size (gone->names);
    do {
        size_t count = left < per_frame? left: per_frame;
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_NODE_DOWN, 0, 2);
        tr__wire_str (&out, gone->id, strlen (gone->id));
        tr__wire_array (&out, (uint32_t) count);
        for (size_t i = 0; i < count; i++) {
            const char *name = (const char *) zhashx_cursor (gone->names);
            tr__wire_str (&out, name, strlen (name));
            zhashx_next (gone->names);
        }
        left -= count;
        zmq_msg_t frame;
        if (!s_frame (&out, &frame))
            continue;
        for (s_client_t *client = (s_client_t *) zhashx_first (self->by_id); client;
             client = (s_client_t *) zhashx_next (self->by_id)) {
            zmq_msg_t copy;
            zmq_msg_init (&copy);
            zmq_msg_copy (&copy, &frame);
            if (s_send (self, client, &copy, NULL) == TR_EFULL)
                S_ADD (self, lost, 1);
        }
        zmq_msg_close (&frame);
    } while (left > 0);
}

//  Drops a client that has left (BYE), been replaced by a new connection
//  with its NODE_ID, or died: its names and subscriptions go at once,
//  every other client gets NODE_DOWN with its names, and sys.node.left
//  is published. Frees the client.
static void
s_drop (tr_broker_t *self, s_client_t *client, const char *why, bool dead)
{
    for (int which = 0; which < S_LISTS; which++)
        s_list_remove (self, which, client);
    zhashx_delete (self->peers, client->key);
    zhashx_delete (self->by_id, client->id);
    size_t count = zhashx_size (client->names);
    for (void *item = zhashx_first (client->names); item; item = zhashx_next (client->names))
        zhashx_delete (self->names, zhashx_cursor (client->names));
    zlistx_t *prefixes = zhashx_keys (client->subs);
    for (const char *prefix = prefixes? (const char *) zlistx_first (prefixes): NULL; prefix;
         prefix = (const char *) zlistx_next (prefixes))
        s_unsubscribe (self, client, prefix);
    zlistx_destroy (&prefixes);
    s_watches_end (self, client);
    S_SUB (self, names, count);
    S_SUB (self, clients, 1);
    S_ADD (self, left, 1);
    if (dead)
        S_ADD (self, dead, 1);
    int64_t age = (self->now_ns - client->joined_ns) / 1000000;
    tr_log (TR_LOG_INFO, "broker: %s '%s' left (%s) after %lld ms, holding %zu names",
            s_kind_names [client->kind], client->id, why, (long long) age, count);
    s_node_down (self, client);
    s_publish_node (self, "sys.node.left", client->id);
    s_release_forget (self, client);
    s_client_destroy (&client);
}

//  Drops the clients found gone while handling the last message.
static void
s_reap (tr_broker_t *self)
{
    s_client_t *client;
    while ((client = self->lists [S_GONE].head))
        s_drop (self, client, "its connection is gone", true);
}

//  --------------------------------------------------------------------------
//  The greeting

//  Reads HELLO's NODE_ID and KIND (tr__wire_check has judged them and
//  the rest). False if they cannot be read.
static bool
s_hello_read (s_args_t *args, char *node_id, s_kind_t *kind, uint64_t *minor)
{
    const char *text, *id;
    uint32_t len, id_len;
    uint64_t major;
    if (!s_arg_str (args, &text, &len) || !s_arg_uint (args, &major)
    ||  !s_arg_uint (args, minor) || !s_arg_str (args, &id, &id_len)
    ||  !s_arg_str (args, &text, &len) || !s_name (id, id_len, false, node_id))
        return false;
    for (int k = 0; k < 3; k++)
        if (len == strlen (s_kind_names [k]) && memcmp (text, s_kind_names [k], len) == 0) {
            *kind = (s_kind_t) k;
            return true;
        }
    return false;
}

//  Answers a greeting: ["OK", SEQ, "TRP", MAJOR, MINOR, BROKER_ID,
//  HEARTBEAT_MS, LIMITS].
static void
s_welcome (tr_broker_t *self, s_client_t *client, uint64_t seq)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_OK, seq, 6);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, TR__WIRE_MAJOR);
    tr__wire_uint (&out, (uint64_t) client->minor);
    tr__wire_str (&out, self->id, strlen (self->id));
    tr__wire_uint (&out, (uint64_t) self->heartbeat_ms);
    struct { const char *key; uint64_t value; } limits [] = {
        { "max_frame", self->max_frame }, { "max_names", self->max_names },
        { "max_subs", self->max_subs }, { "max_key", self->max_key },
        { "max_value", self->max_value }, { "max_list", self->max_list },
        { "max_queue", self->max_queue }, { "max_batch", TR__WIRE_MAX_BATCH }
    };
    size_t n = sizeof limits / sizeof limits [0];
    tr__wire_map (&out, (uint32_t) n);
    for (size_t i = 0; i < n; i++) {
        tr__wire_str (&out, limits [i].key, strlen (limits [i].key));
        tr__wire_uint (&out, limits [i].value);
    }
    s_answer (self, client, NULL, &out);
}

//  A HELLO from a peer that has not greeted. The minor version spoken is
//  the lower of the two: a client of 1.0 is never sent what 1.1 added.
static void
s_hello (tr_broker_t *self, s_in_t *in, tr__wire_cmd_t *cmd)
{
    s_args_t args;
    s_args_init (&args, cmd);
    char node_id [TR_NAME_MAX + 1];
    s_kind_t kind = S_KIND_NODE;
    uint64_t minor = 0;
    if (!s_hello_read (&args, node_id, &kind, &minor)) {
        s_error (self, NULL, in, cmd->seq, TR_EMALFORMED, "HELLO takes \"TRP\", MAJOR, "
                 "MINOR, NODE_ID, KIND and HEARTBEAT_MS");
        return;
    }
    s_client_t *old = (s_client_t *) zhashx_lookup (self->by_id, node_id);
    if (old)
        s_drop (self, old, "replaced by a new connection with its NODE_ID", false);

    s_client_t *client = (s_client_t *) calloc (1, sizeof *client);
    if (!client)
        return;
    client->rid_len = zmq_msg_size (&in->rid);
    memcpy (client->rid, zmq_msg_data (&in->rid), client->rid_len);
    s_hex (client->rid, client->rid_len, client->key);
    memcpy (client->id, node_id, strlen (node_id) + 1);
    client->kind = kind;
    client->minor = minor < TR__WIRE_MINOR? (int) minor: TR__WIRE_MINOR;
    client->names = zhashx_new ();
    client->subs = zhashx_new ();
    client->watches = zhashx_new ();
    client->joined_ns = client->last_recv_ns = client->last_send_ns = self->now_ns;
    if (!client->names || !client->subs || !client->watches
    ||  zhashx_insert (self->peers, client->key, client)) {
        s_client_destroy (&client);
        return;
    }
    if (zhashx_insert (self->by_id, client->id, client)) {
        zhashx_delete (self->peers, client->key);
        s_client_destroy (&client);
        return;
    }
    s_list_append (self, S_BY_RECV, client);
    s_list_append (self, S_BY_SEND, client);
    S_ADD (self, clients, 1);
    S_ADD (self, joined, 1);
    tr_log (TR_LOG_INFO, "broker: %s '%s' joined", s_kind_names [kind], node_id);
    s_welcome (self, client, cmd->seq);
    s_publish_node (self, "sys.node.joined", node_id);
}

//  --------------------------------------------------------------------------
//  Names and routing

static void
s_register (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd,
            bool add)
{
    s_args_t args;
    s_args_init (&args, cmd);
    const char *text;
    uint32_t len;
    char name [TR_NAME_MAX + 1];
    if (!s_arg_str (&args, &text, &len) || !s_name (text, len, false, name)) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, add?
                 "REGISTER takes a NAME": "UNREGISTER takes a NAME");
        return;
    }
    s_client_t *holder = (s_client_t *) zhashx_lookup (self->names, name);
    if (!add) {
        if (holder != client)
            s_error (self, client, in, cmd->seq, TR_ENOTFOUND, "this client does not hold the name");
        else {
            zhashx_delete (self->names, name);
            zhashx_delete (client->names, name);
            S_SUB (self, names, 1);
            s_ok (self, client, cmd->seq);
        }
        return;
    }
    if (holder == client)
        s_ok (self, client, cmd->seq);
    else
    if (holder)
        s_error (self, client, in, cmd->seq, TR_EEXIST, "another client holds the name");
    else
    if (zhashx_size (client->names) >= self->max_names)
        s_error (self, client, in, cmd->seq, TR_ELIMIT, "this client holds max_names names");
    else
    if (zhashx_insert (self->names, name, client))
        s_error (self, client, in, cmd->seq, TR_ENOMEM, "out of memory");
    else
    if (zhashx_insert (client->names, name, client)) {
        zhashx_delete (self->names, name);
        s_error (self, client, in, cmd->seq, TR_ENOMEM, "out of memory");
    }
    else {
        S_ADD (self, names, 1);
        s_ok (self, client, cmd->seq);
    }
}

//  Sends an envelope back to its sender: ["BOUNCE", 0, TO, CODE]. The
//  envelope is moved (or closed if the sender cannot take it either).
static void
s_bounce (tr_broker_t *self, s_client_t *sender, const char *to, size_t to_len, int code,
          zmq_msg_t *envelope)
{
    S_ADD (self, bounced, 1);
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_BOUNCE, 0, 2);
    tr__wire_str (&out, to, to_len);
    tr__wire_int (&out, code);
    zmq_msg_t frame;
    int rc = s_frame (&out, &frame)? s_send (self, sender, &frame, envelope): TR_ENOMEM;
    if (rc == TR_EFULL)
        S_ADD (self, lost, 1);
}

//  ["SEND", 0, TO] + ENVELOPE -> ["DELIVER", 0] + ENVELOPE to TO's holder,
//  or BOUNCE to the sender.
static void
s_route (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    s_args_t args;
    s_args_init (&args, cmd);
    const char *to;
    uint32_t to_len;
    if (!s_arg_str (&args, &to, &to_len) || in->frames != 2) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED,
                 "SEND takes TO and the envelope as a second frame");
        return;
    }
    //  TO was judged by the caller: a bad name is held by nobody.
    char name [TR_NAME_MAX + 1];
    s_client_t *target = NULL;
    if (s_name (to, to_len, false, name))
        target = (s_client_t *) zhashx_lookup (self->names, name);
    if (!target) {
        s_bounce (self, client, to, to_len, TR_ENOACTOR, &in->payload);
        return;
    }
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    zmq_msg_copy (&frame, &self->deliver);
    //  Counted before it is sent, so that a receiver that has it finds
    //  it counted (tr_broker_stats from another thread).
    S_ADD (self, routed, 1);
    int rc = s_send (self, target, &frame, &in->payload);
    if (rc != TR_OK) {
        S_SUB (self, routed, 1);
        s_bounce (self, client, to, to_len, rc, &in->payload);
    }
}

//  One envelope of a SENDS: where it goes, and where it lies in the payload.
typedef struct {
    const char *to;
    uint32_t to_len;
    uint32_t size;
    size_t offset;
    s_client_t *target;                 //  NULL: nobody holds `to`
} s_batched_t;

//  A copy of bytes of a payload as a message of its own; false if out of
//  memory.
static bool
s_slice (zmq_msg_t *payload, size_t offset, size_t size, zmq_msg_t *copy)
{
    if (zmq_msg_init_size (copy, size))
        return false;
    memcpy (zmq_msg_data (copy), (uint8_t *) zmq_msg_data (payload) + offset, size);
    return true;
}

//  Bounces one envelope of a batch to its sender, as s_route would have.
static void
s_bounce_batched (tr_broker_t *self, s_client_t *sender, zmq_msg_t *payload,
                  const s_batched_t *e, int code)
{
    zmq_msg_t copy;
    if (!s_slice (payload, e->offset, e->size, &copy)) {
        S_ADD (self, bounced, 1);
        S_ADD (self, lost, 1);
        return;
    }
    s_bounce (self, sender, e->to, e->to_len, code, &copy);
    zmq_msg_close (&copy);
}

//  Delivers envelopes [first, last) of a batch, all held by one target:
//  as one DELIVERS to a client that speaks 1.1 (the payload itself when
//  they are all of it, else a copy of their bytes), as DELIVERs to one of
//  1.0. What the target cannot take is bounced, envelope by envelope.
static void
s_deliver_run (tr_broker_t *self, s_client_t *sender, zmq_msg_t *payload,
               const s_batched_t *e, size_t first, size_t last, size_t total)
{
    s_client_t *target = e [first].target;
    size_t count = last - first;
    if (target->minor >= 1 && count > 1) {
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_DELIVERS, 0, 1);
        tr__wire_array (&out, (uint32_t) count);
        size_t bytes = 0;
        for (size_t i = first; i < last; i++) {
            tr__wire_uint (&out, e [i].size);
            bytes += e [i].size;
        }
        zmq_msg_t frame, copy;
        zmq_msg_t *body = payload;
        bool whole = count == total;
        if (!whole) {
            body = &copy;
            if (!s_slice (payload, e [first].offset, bytes, &copy)) {
                tr__wire_end (&out);
                for (size_t i = first; i < last; i++)
                    s_bounce_batched (self, sender, payload, &e [i], TR_ENOMEM);
                return;
            }
        }
        int rc = s_frame (&out, &frame)? TR_OK: TR_ENOMEM;
        S_ADD (self, routed, count);
        if (rc == TR_OK)
            rc = s_send (self, target, &frame, body);
        if (!whole)
            zmq_msg_close (&copy);
        if (rc != TR_OK) {
            S_SUB (self, routed, count);
            for (size_t i = first; i < last; i++)
                s_bounce_batched (self, sender, payload, &e [i], rc);
        }
        return;
    }
    for (size_t i = first; i < last; i++) {
        zmq_msg_t frame, copy;
        zmq_msg_t *body = payload;
        bool whole = total == 1;
        if (!whole && !s_slice (payload, e [i].offset, e [i].size, body = &copy)) {
            s_bounce_batched (self, sender, payload, &e [i], TR_ENOMEM);
            continue;
        }
        zmq_msg_init (&frame);
        zmq_msg_copy (&frame, &self->deliver);
        S_ADD (self, routed, 1);
        int rc = s_send (self, target, &frame, body);
        if (!whole)
            zmq_msg_close (&copy);
        if (rc != TR_OK) {
            S_SUB (self, routed, 1);
            s_bounce_batched (self, sender, payload, &e [i], rc);
        }
    }
}

//  ["SENDS", 0, [TO...], [SIZE...]] + ENVELOPE... (1.1): each envelope is
//  routed as SEND routes one. Consecutive envelopes for the same client
//  travel on together, so that a burst costs the broker one message in
//  and one out rather than one per envelope; messages from one client to
//  one name keep their order, as with SEND.
static void
s_route_batch (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    //  tr__wire_check has judged the forms and the names.
    tr__mp_t r = cmd->args, names;
    uint32_t n = 0;
    tr__mp_array (&r, &n);
    names = r;
    for (uint32_t i = 0; i < n; i++)
        tr__mp_skip (&r, 1);
    tr__wire_batch_t batch;
    const char *why = "SENDS takes its envelopes in a second frame";
    if (in->frames != 2
    ||  tr__wire_batch (&r, false, zmq_msg_size (&in->payload), &batch, &why) != TR_OK
    ||  (batch.count != n && (why = "SENDS needs as many sizes as names"))) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, why);
        return;
    }
    s_batched_t e [TR__WIRE_MAX_BATCH];
    for (uint32_t i = 0; i < n; i++) {
        tr__mp_str (&names, &e [i].to, &e [i].to_len);
        e [i].size = batch.size [i];
        e [i].offset = batch.offset [i];
    }
    for (uint32_t i = 0; i < n; i++) {
        char name [TR_NAME_MAX + 1];
        memcpy (name, e [i].to, e [i].to_len);
        name [e [i].to_len] = 0;
        e [i].target = (s_client_t *) zhashx_lookup (self->names, name);
    }
    for (uint32_t i = 0; i < n; ) {
        if (!e [i].target) {
            s_bounce_batched (self, client, &in->payload, &e [i], TR_ENOACTOR);
            i++;
            continue;
        }
        uint32_t j = i + 1;
        while (j < n && e [j].target == e [i].target)
            j++;
        s_deliver_run (self, client, &in->payload, e, i, j, n);
        i = j;
    }
}

//  ["NODES", SEQ] -> ["OK", SEQ, [{"id", "kind", "names", "age_ms"}...]]
static void
s_nodes (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_OK, cmd->seq, 1);
    tr__wire_array (&out, (uint32_t) zhashx_size (self->by_id));
    for (s_client_t *node = (s_client_t *) zhashx_first (self->by_id); node;
         node = (s_client_t *) zhashx_next (self->by_id)) {
        tr__wire_map (&out, 4);
        tr__wire_str (&out, "id", 2);
        tr__wire_str (&out, node->id, strlen (node->id));
        tr__wire_str (&out, "kind", 4);
        tr__wire_str (&out, s_kind_names [node->kind], strlen (s_kind_names [node->kind]));
        tr__wire_str (&out, "names", 5);
        tr__wire_uint (&out, zhashx_size (node->names));
        tr__wire_str (&out, "age_ms", 6);
        tr__wire_uint (&out, (uint64_t) (self->now_ns - node->joined_ns) / 1000000);
    }
    if (out.size > self->max_frame) {
        tr__wire_end (&out);
        s_error (self, client, in, cmd->seq, TR_ELIMIT, "the list of nodes exceeds max_frame");
        return;
    }
    s_answer (self, client, NULL, &out);
}

//  --------------------------------------------------------------------------
//  Events

static void
s_sub (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd, bool add)
{
    s_args_t args;
    s_args_init (&args, cmd);
    const char *text;
    uint32_t len;
    char prefix [TR_NAME_MAX + 1];
    if (!s_arg_str (&args, &text, &len) || !s_name (text, len, true, prefix)) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, add?
                 "SUB takes a PREFIX": "UNSUB takes a PREFIX");
        return;
    }
    bool held = zhashx_lookup (client->subs, prefix) != NULL;
    if (!add) {
        if (!held)
            s_error (self, client, in, cmd->seq, TR_ENOTFOUND, "not subscribed to this prefix");
        else {
            s_unsubscribe (self, client, prefix);
            s_ok (self, client, cmd->seq);
        }
        return;
    }
    if (held)
        s_ok (self, client, cmd->seq);
    else
    if (zhashx_size (client->subs) + zhashx_size (client->watches) >= self->max_subs)
        s_error (self, client, in, cmd->seq, TR_ELIMIT,
                 "this client holds max_subs prefixes and watches");
    else
    if (s_subscribe (self, client, prefix))
        s_error (self, client, in, cmd->seq, TR_ENOMEM, "out of memory");
    else
        s_ok (self, client, cmd->seq);
}

//  ["PUB", 0, TOPIC] + BODY. Not answered: a bad topic, or a topic under
//  "sys." from a client that may not publish there, drops the event and
//  counts it as refused.
static void
s_pub (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    s_args_t args;
    s_args_init (&args, cmd);
    const char *text;
    uint32_t len;
    char topic [TR_NAME_MAX + 1];
    if (!s_arg_str (&args, &text, &len) || !s_name (text, len, false, topic)) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, "PUB takes a TOPIC");
        return;
    }
    if (!s_may_publish (client, text, len)) {
        S_ADD (self, refused, 1);
        tr_log (TR_LOG_DEBUG, "broker: dropped an event of '%s': the topic %s is reserved",
                client->id, topic);
        return;
    }
    s_publish (self, topic, client->id, in->frames == 2? &in->payload: NULL, client);
}

//  Sends one client of 1.0 the events of a batch meant for it, as EVENTs
//  (each a copy of its bytes).
static void
s_events_one_by_one (tr_broker_t *self, s_client_t *client, const char *from,
                     const char *const *topics, const uint32_t *topic_lens,
                     const uint32_t *sizes, const size_t *offsets, zmq_msg_t *payload)
{
    for (uint32_t k = 0; k < client->batch_count; k++) {
        uint32_t i = client->batch_idx [k];
        char topic [TR_NAME_MAX + 1];
        memcpy (topic, topics [i], topic_lens [i]);
        topic [topic_lens [i]] = 0;
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_EVENT, 0, client->dropped? 3: 2);
        tr__wire_str (&out, topic, topic_lens [i]);
        tr__wire_str (&out, from, strlen (from));
        if (client->dropped)
            tr__wire_uint (&out, client->dropped);
        zmq_msg_t cmd, body;
        int rc = TR_ENOMEM;
        if (s_frame (&out, &cmd)) {
            if (s_slice (payload, offsets [i], sizes [i], &body)) {
                rc = s_send (self, client, &cmd, &body);
                zmq_msg_close (&body);
            }
            else
                zmq_msg_close (&cmd);
        }
        if (rc == TR_OK)
            client->dropped = 0;
        else {
            client->dropped++;
            S_ADD (self, events_dropped, 1);
        }
    }
}

//  Sends one client of 1.1 the events of a batch meant for it, as one
//  EVENTS (the payload itself when they are all of the batch).
static void
s_events_together (tr_broker_t *self, s_client_t *client, const char *from, uint32_t n,
                   const char *const *topics, const uint32_t *topic_lens,
                   const uint32_t *sizes, const size_t *offsets, zmq_msg_t *payload)
{
    uint32_t count = client->batch_count;
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_EVENTS, 0, client->dropped? 4: 3);
    tr__wire_str (&out, from, strlen (from));
    tr__wire_array (&out, count);
    for (uint32_t k = 0; k < count; k++) {
        uint32_t i = client->batch_idx [k];
        tr__wire_str (&out, topics [i], topic_lens [i]);
    }
    tr__wire_array (&out, count);
    size_t bytes = 0;
    for (uint32_t k = 0; k < count; k++) {
        tr__wire_uint (&out, sizes [client->batch_idx [k]]);
        bytes += sizes [client->batch_idx [k]];
    }
    if (client->dropped)
        tr__wire_uint (&out, client->dropped);
    zmq_msg_t cmd, body;
    int rc = TR_ENOMEM;
    bool made = false;
    if (count == n)
        made = zmq_msg_init (&body) == 0 && zmq_msg_copy (&body, payload) == 0;
    else
    if (zmq_msg_init_size (&body, bytes) == 0) {
        uint8_t *at = (uint8_t *) zmq_msg_data (&body);
        for (uint32_t k = 0; k < count; k++) {
            uint32_t i = client->batch_idx [k];
            memcpy (at, (uint8_t *) zmq_msg_data (payload) + offsets [i], sizes [i]);
            at += sizes [i];
        }
        made = true;
    }
    if (made && s_frame (&out, &cmd))
        rc = s_send (self, client, &cmd, &body);
    else
        tr__wire_end (&out);
    if (made)
        zmq_msg_close (&body);
    if (rc == TR_OK)
        client->dropped = 0;
    else {
        client->dropped += count;
        S_ADD (self, events_dropped, count);
    }
}

//  Notes event `index` of the PUBS at hand for one subscriber (the
//  subscribers touched by the batch are listed in self->touched).
typedef struct {
    uint64_t round;
    uint32_t index;
} s_batching_t;

static void
s_batch_event (tr_broker_t *self, s_client_t *sub, void *arg)
{
    s_batching_t *b = (s_batching_t *) arg;
    if (sub->batch_mark != b->round) {
        if (self->touched_count == self->touched_room) {
            size_t room = self->touched_room? 2 * self->touched_room: 64;
            s_client_t **grown = (s_client_t **) realloc (self->touched, room * sizeof *grown);
            if (!grown) {
                S_ADD (self, events_dropped, 1);
                sub->dropped++;
                return;
            }
            self->touched = grown;
            self->touched_room = room;
        }
        self->touched [self->touched_count++] = sub;
        sub->batch_mark = b->round;
        sub->batch_count = 0;
    }
    sub->batch_idx [sub->batch_count++] = (uint16_t) b->index;
}

//  ["PUBS", 0, [TOPIC...], [SIZE...]] + BODY... (1.1): each event as a
//  PUB of its own, with the same rules; each subscriber gets the events
//  of the batch that it is subscribed to, in order, in one EVENTS (or as
//  EVENTs for a client of 1.0). A batch whose sizes or counts are wrong
//  is dropped whole and counted as malformed: events are not answered.
static void
s_pub_batch (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    tr__mp_t r = cmd->args;
    uint32_t n = 0;
    tr__mp_array (&r, &n);              //  forms and topics judged by tr__wire_check
    tr__mp_t topic_list = r;
    for (uint32_t i = 0; i < n; i++)
        tr__mp_skip (&r, 1);
    tr__wire_batch_t batch;
    const char *why;
    if (in->frames != 2
    ||  tr__wire_batch (&r, false, zmq_msg_size (&in->payload), &batch, &why) != TR_OK
    ||  batch.count != n) {
        S_ADD (self, malformed, 1);
        tr_log (TR_LOG_DEBUG, "broker: dropped a batch of events of '%s': its counts or "
                "sizes are wrong", client->id);
        return;
    }
    const char *topics [TR__WIRE_MAX_BATCH];
    uint32_t topic_lens [TR__WIRE_MAX_BATCH];
    for (uint32_t i = 0; i < n; i++)
        tr__mp_str (&topic_list, &topics [i], &topic_lens [i]);
    const uint32_t *sizes = batch.size;
    const size_t *offsets = batch.offset;
    //  Which subscribers get which events: each client collects the
    //  indices of its events (once each, never its own).
    uint64_t round = ++self->event_seq;
    self->touched_count = 0;
    for (uint32_t i = 0; i < n; i++) {
        char topic [TR_NAME_MAX + 1];
        uint32_t len = topic_lens [i];
        memcpy (topic, topics [i], len);
        topic [len] = 0;
        if (!s_may_publish (client, topic, len)) {
            S_ADD (self, refused, 1);
            continue;
        }
        S_ADD (self, events, 1);
        s_batching_t batching = { round, i };
        s_subscribers (self, topic, len, client, s_batch_event, &batching);
    }
    s_client_t **touched = self->touched;
    size_t touched_count = self->touched_count;
    for (size_t k = 0; k < touched_count; k++) {
        s_client_t *sub = touched [k];
        if (sub->minor >= 1 && sub->batch_count > 1)
            s_events_together (self, sub, client->id, n, topics, topic_lens, sizes, offsets,
                               &in->payload);
        else
            s_events_one_by_one (self, sub, client->id, topics, topic_lens, sizes, offsets,
                                 &in->payload);
    }
}

//  ["MULTI", 0, [CMD_SIZE...], [PAYLOAD_SIZE...]] + MESSAGES (1.1): each
//  message handled in order as if it had come alone; the answers to a
//  client of 1.1 gathered into one MULTI. If the client leaves in the
//  middle (a BYE inside), the rest is not carried out.
static void s_handle (tr_broker_t *self, s_in_t *in);
static void s_in_close (s_in_t *in);

static void
s_multi (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    tr__mp_t r = cmd->args;
    tr__wire_batch_t batch;
    const char *why = "MULTI takes its messages in a second frame";
    if (in->frames != 2
    ||  tr__wire_batch (&r, true, zmq_msg_size (&in->payload), &batch, &why) != TR_OK) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, why);
        return;
    }
    uint32_t n = batch.count;
    const uint32_t *cmd_sizes = batch.size, *payload_sizes = batch.size2;
    const uint8_t *at = (const uint8_t *) zmq_msg_data (&in->payload);
    char key [2 * 256 + 1];
    memcpy (key, client->key, sizeof key);
    self->in_multi = true;
    if (client->minor >= 1)
        self->collecting = client;
    for (uint32_t i = 0; i < n; i++) {
        s_in_t sub;
        zmq_msg_init (&sub.rid);
        zmq_msg_copy (&sub.rid, &in->rid);
        zmq_msg_init (&sub.payload);
        sub.frames = payload_sizes [i]? 2: 1;
        sub.oversized = false;
        bool made = zmq_msg_init_size (&sub.cmd, cmd_sizes [i]) == 0;
        if (made) {
            memcpy (zmq_msg_data (&sub.cmd), at, cmd_sizes [i]);
            if (payload_sizes [i]) {
                zmq_msg_close (&sub.payload);
                made = zmq_msg_init_size (&sub.payload, payload_sizes [i]) == 0;
                if (made)
                    memcpy (zmq_msg_data (&sub.payload), at + cmd_sizes [i], payload_sizes [i]);
                else
                    zmq_msg_init (&sub.payload);
            }
        }
        else
            zmq_msg_init (&sub.cmd);
        at += cmd_sizes [i] + payload_sizes [i];
        if (made)
            s_handle (self, &sub);
        else
            s_error (self, client, in, 0, TR_ENOMEM, "out of memory");
        s_in_close (&sub);
        if (zhashx_lookup (self->peers, key) != client)
            break;                      //  gone: nobody to answer
    }
    if (zhashx_lookup (self->peers, key) == client)
        s_collect_flush (self);
    else {
        self->collected_count = 0;
        self->collected.size = 0;
    }
    self->collecting = NULL;
    self->in_multi = false;
}

//  --------------------------------------------------------------------------
//  The scratchpad: watches

//  The store's clock: Unix wall-clock milliseconds.
static int64_t
s_wall_ms (void)
{
    return tr__wall_us () / 1000;
}

static void
s_stall_remove (tr_broker_t *self, s_watch_t *watch)
{
    if (!watch->stalled)
        return;
    if (watch->prev)
        watch->prev->next = watch->next;
    else
        self->stalled = watch->next;
    if (watch->next)
        watch->next->prev = watch->prev;
    watch->prev = watch->next = NULL;
    watch->stalled = false;
}

//  Puts a watch on the list of those tried again every S_RETRY_MS.
static void
s_stall (tr_broker_t *self, s_watch_t *watch)
{
    if (watch->stalled)
        return;
    watch->prev = NULL;
    watch->next = self->stalled;
    if (self->stalled)
        self->stalled->prev = watch;
    self->stalled = watch;
    watch->stalled = true;
}

//  Ends a watch: removes it from its client's set, releases the change
//  it held and the store's watch, frees it.
static void
s_watch_end (tr_broker_t *self, s_watch_t *watch)
{
    size_t len;
    const uint8_t *prefix = tr__kv_watch_prefix (watch->watch, &len);
    char key [TR__KV_MAX_KEY + 1];
    memcpy (key, prefix, len);
    key [len] = 0;
    zhashx_delete (watch->client->watches, key);
    s_stall_remove (self, watch);
    tr__kv_change_unref (&watch->held);
    tr__kv_watch_destroy (&watch->watch);
    free (watch);
}

//  Ends every watch of a client (it leaves).
static void
s_watches_end (tr_broker_t *self, s_client_t *client)
{
    s_watch_t *watch;
    while (client->watches
    &&     (watch = (s_watch_t *) zhashx_first (client->watches)))
        s_watch_end (self, watch);
}

//  The free function of a zero-copy payload: releases the value.
static void
s_value_free (void *data, void *hint)
{
    (void) data;
    tr__kv_value_t *value = (tr__kv_value_t *) hint;
    S_TAKE_OVER (value);
    tr__kv_value_unref (&value);
}

//  Makes a payload frame of a value without copying it (one more
//  reference, released when ZeroMQ is done with the frame). False if out
//  of memory.
static bool
s_value_frame (tr__kv_value_t *value, zmq_msg_t *msg)
{
    tr__kv_value_ref (value);
    S_HAND_OFF (value);
    if (zmq_msg_init_data (msg, (void *) tr__kv_value_data (value), tr__kv_value_size (value),
                           s_value_free, value) == 0)
        return true;
    tr__kv_value_unref (&value);
    return false;
}

//  Sends the change a watch holds: ["KV_CHANGE", 0, PREFIX, KEY, VERSION]
//  + VALUE, an empty payload for a deletion. Returns as s_send, or
//  TR_ENOMEM.
static int
s_change_send (tr_broker_t *self, s_watch_t *watch)
{
    const tr__kv_change_t *change = watch->held;
    size_t len;
    const uint8_t *prefix = tr__kv_watch_prefix (watch->watch, &len);
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_CHANGE, 0, 3);
    tr__wire_str (&out, (const char *) prefix, len);
    tr__wire_str (&out, (const char *) change->key, change->key_len);
    tr__wire_uint (&out, change->version);
    zmq_msg_t frame, payload;
    if (!s_frame (&out, &frame))
        return TR_ENOMEM;
    //  The change's value is the store's reference-counted copy
    //  (tr_kv.h's private blob field, within the broker).
    if (change->op == TR__KV_PUT && change->blob) {
        if (!s_value_frame (change->blob, &payload)) {
            zmq_msg_close (&frame);
            return TR_ENOMEM;
        }
    }
    else
        zmq_msg_init (&payload);
    //  Under fsync always, a change goes out once it is durable.
    self->hold_mark = s_write_mark (self);
    int rc = s_send (self, watch->client, &frame, &payload);
    self->hold_mark = 0;
    zmq_msg_close (&payload);           //  sent (then empty) or not
    return rc;
}

//  A watch fell behind: sends ["KV_RESYNC", 0, PREFIX] and ends it; if
//  the client has no room for even that, tries again later.
static void
s_watch_resync (tr_broker_t *self, s_watch_t *watch)
{
    size_t len;
    const uint8_t *prefix = tr__kv_watch_prefix (watch->watch, &len);
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_RESYNC, 0, 1);
    tr__wire_str (&out, (const char *) prefix, len);
    zmq_msg_t frame;
    S_ADD (self, kv_resyncs, 1);
    int rc = s_frame (&out, &frame)? s_send (self, watch->client, &frame, NULL): TR_ENOMEM;
    if (rc == TR_EFULL || rc == TR_ENOMEM) {
        S_SUB (self, kv_resyncs, 1);
        s_stall (self, watch);
        return;
    }
    tr_log (TR_LOG_INFO, "broker: '%s' fell behind its watch on '%.*s': sent KV_RESYNC",
            watch->client->id, (int) len, (const char *) prefix);
    s_watch_end (self, watch);
}

//  Sends a watch what its backlog holds, in version order, until the
//  backlog is empty (the watch waits for the next change) or the
//  client's queue is full (the watch stalls, holding the change at
//  hand). May end the watch (KV_RESYNC).
static void
s_watch_drain (tr_broker_t *self, s_watch_t *watch)
{
    s_stall_remove (self, watch);
    while (true) {
        if (!watch->held) {
            if (tr__kv_watch_next (watch->watch, &watch->held) == TR_ELIMIT) {
                s_watch_resync (self, watch);
                return;
            }
            if (!watch->held)
                return;
        }
        //  Counted first, so that a watcher that has it finds it counted.
        S_ADD (self, kv_changes, 1);
        int rc = s_change_send (self, watch);
        if (rc != TR_OK)
            S_SUB (self, kv_changes, 1);
        if (rc == TR_ENOACTOR)
            return;                     //  the client is gone: reaped soon
        if (rc != TR_OK) {
            s_stall (self, watch);
            return;
        }
        tr__kv_change_unref (&watch->held);
    }
}

//  Pushes every change the store has queued for watches since the last
//  call (writes, expiries, a new watch's catch-up). Called after every
//  scratchpad command and timer.
static void
s_kv_push (tr_broker_t *self)
{
    tr__kv_watch_t *ready;
    while ((ready = tr__kv_ready (self->kv)))
        s_watch_drain (self, (s_watch_t *) tr__kv_watch_arg (ready));
}

//  The scratchpad's timers: expires the keys whose time has come, tries
//  the stalled watches again, pushes the changes. Draining one watch may
//  end that watch only (a client that goes is dropped later, by s_reap),
//  so the detached list can be walked safely.
static void
s_kv_timers (tr_broker_t *self)
{
    int64_t deadline = tr__kv_next_deadline (self->kv);
    int64_t now = deadline? s_wall_ms (): 0;
    if (deadline && deadline <= now)
        tr__kv_expire (self->kv, now);
    s_watch_t *watch = self->stalled;
    self->stalled = NULL;
    while (watch) {
        s_watch_t *next = watch->next;
        watch->stalled = false;
        watch->prev = watch->next = NULL;
        s_watch_drain (self, watch);
        watch = next;
    }
    s_kv_push (self);
}

//  Shortens the poll's timeout (ms, -1 for none) to the next expiry,
//  and to S_RETRY_MS while watches are stalled.
static long
s_kv_timeout (tr_broker_t *self, long timeout)
{
    int64_t deadline = tr__kv_next_deadline (self->kv);
    if (deadline) {
        int64_t wait = deadline - s_wall_ms ();
        wait = wait < 0? 0: wait + 1;
        if (timeout < 0 || wait < timeout)
            timeout = (long) (wait < LONG_MAX? wait: LONG_MAX);
    }
    if (self->stalled && (timeout < 0 || timeout > S_RETRY_MS))
        timeout = S_RETRY_MS;
    return timeout;
}

//  --------------------------------------------------------------------------
//  The scratchpad: commands

//  Answers a failed scratchpad call with its code and a reason.
static void
s_kv_error (tr_broker_t *self, s_client_t *client, s_in_t *in, uint64_t seq, int code)
{
    const char *text;
    switch (code) {
        case TR_ENOTFOUND: text = "no such key"; break;
        case TR_ECONFLICT: text = "the key's version is not EXPECTED"; break;
        case TR_EINVAL:    text = "a key or prefix longer than max_key"; break;
        case TR_ETOOBIG:   text = "the value exceeds max_value"; break;
        case TR_EMALFORMED:
            text = "the value is not exactly one msgpack value nested at most 32 deep";
            break;
        case TR_ELIMIT:    text = "more keys under the prefix than max_list"; break;
        case TR_ESYS:      text = "the scratchpad's log could not be written"; break;
        default:           text = tr_strerror (code); break;
    }
    s_error (self, client, in, seq, code, text);
}

//  Reads a KEY or PREFIX argument (tr__wire_check judged it).
static bool
s_arg_key (s_args_t *args, const char **key, uint32_t *len)
{
    return s_arg_str (args, key, len) && *len <= TR__KV_MAX_KEY;
}

//  ["KV_GET", SEQ, KEY] -> ["OK", SEQ, VALUE, VERSION, TTL_MS]
static void
s_kv_get (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    s_args_t args;
    s_args_init (&args, cmd);
    const char *key;
    uint32_t len;
    if (!s_arg_key (&args, &key, &len)) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, "KV_GET takes a KEY");
        return;
    }
    tr__kv_value_t *value = NULL;
    uint64_t version = 0;
    int64_t ttl = 0;
    int rc = tr__kv_get (self->kv, key, len, s_wall_ms (), &value, &version, &ttl);
    if (rc)
        s_kv_error (self, client, in, cmd->seq, rc);
    else {
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_OK, cmd->seq, 3);
        tr__wire_raw (&out, tr__kv_value_data (value), tr__kv_value_size (value));
        tr__wire_uint (&out, version);
        tr__wire_uint (&out, (uint64_t) ttl);
        s_answer (self, client, NULL, &out);
    }
    tr__kv_value_unref (&value);
}

//  ["KV_PUT", SEQ, KEY, TTL_MS] + VALUE and
//  ["KV_CAS", SEQ, KEY, EXPECTED, TTL_MS] + VALUE -> ["OK", SEQ, VERSION]
//  Answers a scratchpad write ["OK", seq, version], once the write is
//  durable under fsync always.
static void
s_answer_version (tr_broker_t *self, s_client_t *client, uint64_t seq, uint64_t version)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_OK, seq, 1);
    tr__wire_uint (&out, version);
    self->hold_mark = s_write_mark (self);
    s_answer (self, client, NULL, &out);
    self->hold_mark = 0;
}

static void
s_kv_put (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd, bool cas)
{
    s_args_t args;
    s_args_init (&args, cmd);
    const char *key;
    uint32_t len;
    uint64_t expected = 0, ttl = 0;
    if (!s_arg_key (&args, &key, &len) || (cas && !s_arg_uint (&args, &expected))
    ||  !s_arg_uint (&args, &ttl) || in->frames != 2 || zmq_msg_size (&in->payload) == 0) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, cas?
                 "KV_CAS takes KEY, EXPECTED, TTL_MS and the value as a second frame":
                 "KV_PUT takes KEY, TTL_MS and the value as a second frame");
        return;
    }
    if (ttl > INT64_MAX) {
        s_error (self, client, in, cmd->seq, TR_EINVAL, "TTL_MS is too large");
        return;
    }
    uint64_t version = 0;
    const void *value = zmq_msg_data (&in->payload);
    size_t size = zmq_msg_size (&in->payload);
    int64_t now = s_wall_ms ();
    int rc = cas? tr__kv_cas (self->kv, key, len, expected, value, size, (int64_t) ttl, now,
                              &version):
                  tr__kv_put (self->kv, key, len, value, size, (int64_t) ttl, now, &version);
    if (rc) {
        s_kv_error (self, client, in, cmd->seq, rc);
        return;
    }
    S_ADD (self, kv_writes, 1);
    s_answer_version (self, client, cmd->seq, version);
}

//  ["KV_DEL", SEQ, KEY] -> ["OK", SEQ, VERSION]
static void
s_kv_del (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    s_args_t args;
    s_args_init (&args, cmd);
    const char *key;
    uint32_t len;
    if (!s_arg_key (&args, &key, &len)) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, "KV_DEL takes a KEY");
        return;
    }
    uint64_t version = 0;
    int rc = tr__kv_del (self->kv, key, len, s_wall_ms (), &version);
    if (rc) {
        s_kv_error (self, client, in, cmd->seq, rc);
        return;
    }
    S_ADD (self, kv_writes, 1);
    s_answer_version (self, client, cmd->seq, version);
}

//  ["KV_LIST", SEQ, PREFIX] -> ["OK", SEQ, [[KEY, VERSION]...]] and
//  ["KV_SNAPSHOT", SEQ, PREFIX] -> ["OK", SEQ, AT, [[KEY, VERSION, VALUE]...]].
//  An answer that would not fit in max_frame is TR_ELIMIT, as one of more
//  than max_list keys.
static void
s_kv_list (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd,
           bool snapshot)
{
    s_args_t args;
    s_args_init (&args, cmd);
    const char *prefix;
    uint32_t len;
    if (!s_arg_key (&args, &prefix, &len)) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, snapshot?
                 "KV_SNAPSHOT takes a PREFIX": "KV_LIST takes a PREFIX");
        return;
    }
    tr__kv_items_t *items = NULL;
    int64_t now = s_wall_ms ();
    int rc = snapshot? tr__kv_snapshot (self->kv, prefix, len, now, &items):
                       tr__kv_list (self->kv, prefix, len, now, &items);
    if (rc) {
        s_kv_error (self, client, in, cmd->seq, rc);
        return;
    }
    //  Sized before it is written: 100,000 values of 1 MiB must not be
    //  copied only to be refused.
    size_t size = S_ANSWER_OVERHEAD;
    for (size_t i = 0; i < items->count; i++)
        size += S_ITEM_OVERHEAD + items->items [i].key_len + items->items [i].value_len;
    if (size > self->max_frame) {
        tr__kv_items_destroy (&items);
        s_error (self, client, in, cmd->seq, TR_ELIMIT, "the answer would exceed max_frame");
        return;
    }
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_OK, cmd->seq, snapshot? 2: 1);
    if (snapshot)
        tr__wire_uint (&out, items->at);
    tr__wire_array (&out, (uint32_t) items->count);
    for (size_t i = 0; i < items->count; i++) {
        const tr__kv_item_t *item = &items->items [i];
        tr__wire_array (&out, snapshot? 3: 2);
        tr__wire_str (&out, (const char *) item->key, item->key_len);
        tr__wire_uint (&out, item->version);
        if (snapshot)
            tr__wire_raw (&out, item->value, item->value_len);
    }
    tr__kv_items_destroy (&items);
    s_answer (self, client, NULL, &out);
}

//  ["KV_WATCH", SEQ, PREFIX, FROM] -> ["OK", SEQ, AT], then KV_CHANGE for
//  every change under PREFIX above FROM (FROM 0: above AT). Watching a
//  prefix the client already watches replaces that watch (starts over
//  from FROM).
static void
s_kv_watch (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    s_args_t args;
    s_args_init (&args, cmd);
    const char *prefix;
    uint32_t len;
    uint64_t from = 0;
    if (!s_arg_key (&args, &prefix, &len) || !s_arg_uint (&args, &from)) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, "KV_WATCH takes PREFIX and FROM");
        return;
    }
    char key [TR__KV_MAX_KEY + 1];
    memcpy (key, prefix, len);
    key [len] = 0;
    s_watch_t *old = (s_watch_t *) zhashx_lookup (client->watches, key);
    if (!old && zhashx_size (client->subs) + zhashx_size (client->watches) >= self->max_subs) {
        s_error (self, client, in, cmd->seq, TR_ELIMIT,
                 "this client holds max_subs prefixes and watches");
        return;
    }
    s_watch_t *watch = (s_watch_t *) calloc (1, sizeof *watch);
    if (!watch) {
        s_error (self, client, in, cmd->seq, TR_ENOMEM, "out of memory");
        return;
    }
    watch->client = client;
    uint64_t at = 0;
    int rc = tr__kv_watch_new (self->kv, prefix, len, from, s_wall_ms (), watch,
                               &watch->watch, &at);
    if (rc) {
        free (watch);
        s_kv_error (self, client, in, cmd->seq, rc);
        return;
    }
    if (old)
        s_watch_end (self, old);
    if (zhashx_insert (client->watches, key, watch)) {
        tr__kv_watch_destroy (&watch->watch);
        free (watch);
        s_error (self, client, in, cmd->seq, TR_ENOMEM, "out of memory");
        return;
    }
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_OK, cmd->seq, 1);
    tr__wire_uint (&out, at);
    s_answer (self, client, NULL, &out);
}

//  ["KV_UNWATCH", SEQ, PREFIX] -> ["OK", SEQ]
static void
s_kv_unwatch (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    s_args_t args;
    s_args_init (&args, cmd);
    const char *prefix;
    uint32_t len;
    if (!s_arg_key (&args, &prefix, &len)) {
        s_error (self, client, in, cmd->seq, TR_EMALFORMED, "KV_UNWATCH takes a PREFIX");
        return;
    }
    char key [TR__KV_MAX_KEY + 1];
    memcpy (key, prefix, len);
    key [len] = 0;
    s_watch_t *watch = (s_watch_t *) zhashx_lookup (client->watches, key);
    if (!watch) {
        s_error (self, client, in, cmd->seq, TR_ENOTFOUND, "not watching this prefix");
        return;
    }
    s_watch_end (self, watch);
    s_ok (self, client, cmd->seq);
}

//  --------------------------------------------------------------------------
//  One message

//  Receives one message (all its frames). Returns false if there was
//  none to read.
static bool
s_receive (tr_broker_t *self, s_in_t *in)
{
    zmq_msg_init (&in->rid);
    zmq_msg_init (&in->cmd);
    zmq_msg_init (&in->payload);
    in->frames = 0;
    in->oversized = false;
    if (zmq_msg_recv (&in->rid, self->router, ZMQ_DONTWAIT) < 0)
        return false;
    bool more = zmq_msg_more (&in->rid);
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, self->router, 0) < 0) {
            zmq_msg_close (&part);
            break;
        }
        more = zmq_msg_more (&part);
        //  ZMQ_MAXMSGSIZE does not apply to inproc.
        if (zmq_msg_size (&part) > self->max_frame)
            in->oversized = true;
        in->frames++;
        if (in->frames == 1)
            zmq_msg_move (&in->cmd, &part);
        else
        if (in->frames == 2)
            zmq_msg_move (&in->payload, &part);
        zmq_msg_close (&part);
    }
    return true;
}

static void
s_in_close (s_in_t *in)
{
    zmq_msg_close (&in->rid);
    zmq_msg_close (&in->cmd);
    zmq_msg_close (&in->payload);
}

//  Carries out a greeted client's command, found well-formed.
static void
s_dispatch (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    switch (cmd->verb) {
        case TR__V_REGISTER:
            s_register (self, client, in, cmd, true);
            break;
        case TR__V_UNREGISTER:
            s_register (self, client, in, cmd, false);
            break;
        case TR__V_SEND:
            s_route (self, client, in, cmd);
            break;
        case TR__V_SENDS:
            s_route_batch (self, client, in, cmd);
            break;
        case TR__V_NODES:
            s_nodes (self, client, in, cmd);
            break;
        case TR__V_HEARTBEAT:
            break;                      //  its arrival was the point
        case TR__V_BYE:
            s_drop (self, client, "said BYE", false);
            break;
        case TR__V_SUB:
            s_sub (self, client, in, cmd, true);
            break;
        case TR__V_UNSUB:
            s_sub (self, client, in, cmd, false);
            break;
        case TR__V_PUB:
            s_pub (self, client, in, cmd);
            break;
        case TR__V_PUBS:
            s_pub_batch (self, client, in, cmd);
            break;
        case TR__V_MULTI:
            s_multi (self, client, in, cmd);
            break;
        case TR__V_KV_GET:
            s_kv_get (self, client, in, cmd);
            break;
        case TR__V_KV_PUT:
            s_kv_put (self, client, in, cmd, false);
            break;
        case TR__V_KV_CAS:
            s_kv_put (self, client, in, cmd, true);
            break;
        case TR__V_KV_DEL:
            s_kv_del (self, client, in, cmd);
            break;
        case TR__V_KV_LIST:
            s_kv_list (self, client, in, cmd, false);
            break;
        case TR__V_KV_SNAPSHOT:
            s_kv_list (self, client, in, cmd, true);
            break;
        case TR__V_KV_WATCH:
            s_kv_watch (self, client, in, cmd);
            break;
        case TR__V_KV_UNWATCH:
            s_kv_unwatch (self, client, in, cmd);
            break;
        case TR__V_OK: case TR__V_ERROR:
            //  Answers to nothing: not answered, so that two confused
            //  peers cannot keep erring at each other.
            S_ADD (self, refused, 1);
            break;
        default:
            s_error (self, client, in, cmd->seq, TR_EINVAL, "a verb the broker sends, "
                     "not one it serves");
            break;
    }
}

//  A command that tr__wire_check refused with TR_EINVAL (an unknown verb
//  or an argument's value). A PUB is not answered: an event with a bad
//  topic is dropped and counted (2.4.3 sends no TR_EINVAL for a PUB). A
//  SEND to a name that is not valid is answered ERROR (SEQ 0) rather than
//  bounced: a BOUNCE's TO must be a valid name.
static void
s_invalid (tr_broker_t *self, s_client_t *client, s_in_t *in, tr__wire_cmd_t *cmd)
{
    if (cmd->verb == TR__V_PUB || cmd->verb == TR__V_PUBS) {
        S_ADD (self, refused, 1);
        tr_log (TR_LOG_DEBUG, "broker: dropped an event of '%s': %s", client->id, cmd->why);
    }
    else
        s_error (self, client, in, cmd->seq, TR_EINVAL, cmd->why);
}

//  Handles one message from a peer.
static void
s_handle (tr_broker_t *self, s_in_t *in)
{
    char key [2 * 256 + 1];
    s_hex (zmq_msg_data (&in->rid), zmq_msg_size (&in->rid), key);
    s_client_t *client = (s_client_t *) zhashx_lookup (self->peers, key);
    if (client) {
        //  Anything received proves the client alive.
        client->last_recv_ns = self->now_ns;
        s_list_append (self, S_BY_RECV, client);
    }
    if (in->oversized) {
        //  Over inproc only: other transports disconnect such a peer.
        S_ADD (self, malformed, 1);
        tr_log (TR_LOG_DEBUG, "broker: dropped a frame over max_frame (%zu bytes)",
                self->max_frame);
        return;
    }
    tr__wire_cmd_t cmd;
    int rc = TR_EMALFORMED;
    if (in->frames)
        rc = tr__wire_parse (zmq_msg_data (&in->cmd), zmq_msg_size (&in->cmd), &cmd);
    else {
        cmd.seq = 0;
        cmd.why = "an empty message";
    }
    if (rc == TR_OK && in->frames > 2) {
        rc = TR_EMALFORMED;
        cmd.why = "a message has one or two frames";
    }
    if (rc == TR_OK && !client && cmd.verb != TR__V_HELLO) {
        rc = TR_EPROTO;
        cmd.why = "the first message must be HELLO";
    }
    if (rc == TR_OK && client && cmd.verb == TR__V_HELLO) {
        rc = TR_EPROTO;
        cmd.why = "this connection has greeted already";
    }
    if (rc == TR_OK && cmd.verb == TR__V_MULTI && self->in_multi) {
        rc = TR_EMALFORMED;
        cmd.seq = 0;
        cmd.why = "a MULTI inside a MULTI";
    }
    if (rc == TR_OK)
        rc = tr__wire_check (&cmd);
    if (rc == TR_OK && !client)
        s_hello (self, in, &cmd);
    else
    if (rc == TR_OK) {
        s_dispatch (self, client, in, &cmd);
        //  Any scratchpad call may have changed it (a write, or keys
        //  whose time had come expired on the way).
        if (cmd.verb >= TR__V_KV_GET && cmd.verb <= TR__V_KV_UNWATCH)
            s_kv_push (self);
    }
    else
    if (rc == TR_EINVAL && client)
        s_invalid (self, client, in, &cmd);
    else
        s_error (self, client, in, cmd.seq, rc, cmd.why? cmd.why: tr_strerror (rc));
}

//  --------------------------------------------------------------------------
//  Heartbeats

//  Declares dead the clients silent for 3H and sends HEARTBEAT to those
//  the broker has sent nothing for H. Returns the milliseconds until the
//  next of these is due, or -1 if there are no clients.
static long
s_heartbeats (tr_broker_t *self)
{
    int64_t h = self->heartbeat_ms * 1000000;
    s_client_t *client;
    while ((client = self->lists [S_BY_RECV].head)
    &&     self->now_ns - client->last_recv_ns >= 3 * h)
        s_drop (self, client, "silent for three heartbeats", true);
    while ((client = self->lists [S_BY_SEND].head)
    &&     self->now_ns - client->last_send_ns >= h) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        zmq_msg_copy (&frame, &self->heartbeat);
        //  A full queue counts as sent (s_send moved the client to the
        //  end); a gone client is reaped below.
        if (s_send (self, client, &frame, NULL) == TR_ENOACTOR)
            s_list_remove (self, S_BY_SEND, client);
    }
    s_reap (self);
    int64_t next = -1;
    if ((client = self->lists [S_BY_RECV].head))
        next = client->last_recv_ns + 3 * h;
    if ((client = self->lists [S_BY_SEND].head)
    &&  (next < 0 || client->last_send_ns + h < next))
        next = client->last_send_ns + h;
    if (next < 0)
        return -1;
    int64_t wait = (next - self->now_ns + 999999) / 1000000;
    return wait > 0? (long) wait: 0;
}

//  --------------------------------------------------------------------------
//  CURVE: the ZAP handler (RFC 27)

//  Reads the allow folder again if the last reading is a second old. A
//  folder that cannot be read any more admits nobody until it can.
static void
s_allow_refresh (tr_broker_t *self)
{
    if (!self->allow_dir || self->now_ns - self->allow_read_ns < S_ALLOW_REREAD_NS)
        return;
    self->allow_read_ns = self->now_ns;
    tr__curve_keys_t *keys = NULL;
    int rc = tr__curve_keys_load (self->allow_dir, false, &keys);
    if (rc && self->allow)
        tr_log (TR_LOG_ERROR, "broker: cannot read the allow folder %s any more (%s): no "
                "client is allowed in until it can be read", self->allow_dir,
                tr_strerror (rc));
    else
    if (!rc && !self->allow)
        tr_log (TR_LOG_INFO, "broker: the allow folder %s can be read again",
                self->allow_dir);
    tr__curve_keys_destroy (&self->allow);
    self->allow = keys;
}

//  Logs a refused client, at most once a second (with how many were not
//  logged since).
static void
s_refusal_log (tr_broker_t *self, zmq_msg_t *address, const uint8_t *key)
{
    if (self->refusal_logged_ns
    &&  self->now_ns - self->refusal_logged_ns < S_REFUSAL_LOG_NS) {
        self->refusals_unlogged++;
        return;
    }
    char key_txt [TR__CURVE_TXT] = "(none)";
    if (key)
        zmq_z85_encode (key_txt, key, 32);
    char more [64] = "";
    if (self->refusals_unlogged)
        snprintf (more, sizeof more, " (and %llu refusals since the last logged)",
                  (unsigned long long) self->refusals_unlogged);
    tr_log (TR_LOG_WARN, "broker: refused a CURVE client from %.*s, key %s: %s%s%s",
            (int) zmq_msg_size (address), (const char *) zmq_msg_data (address), key_txt,
            !key? "malformed request":
            !self->allow_dir? "not the broker's own key (no allow folder)":
            !self->allow? "the allow folder cannot be read": "not in the allow folder ",
            key && self->allow_dir && self->allow? self->allow_dir: "", more);
    self->refusal_logged_ns = self->now_ns;
    self->refusals_unlogged = 0;
}

//  Sends one frame of a ZAP answer.
static void
s_zap_send (tr_broker_t *self, const void *data, size_t size, bool more)
{
    zmq_send (self->zap, data, size, more? ZMQ_SNDMORE: 0);
}

//  Answers one ZAP request: [version, request id, domain, address,
//  routing id, mechanism, credentials...]; for CURVE the one credential
//  is the client's 32-byte public key. Returns false when no request
//  was waiting.
static bool
s_zap (tr_broker_t *self)
{
    enum { S_PARTS = 7 };
    zmq_msg_t part [S_PARTS];
    size_t n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        if (zmq_msg_recv (&msg, self->zap, n? 0: ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&msg);
            if (n == 0)
                return false;
            break;
        }
        more = zmq_msg_more (&msg);
        if (n < S_PARTS) {
            zmq_msg_init (&part [n]);
            zmq_msg_move (&part [n++], &msg);
        }
        else
            n = S_PARTS + 1;            //  too many: malformed
        zmq_msg_close (&msg);
    }
    size_t count = n < S_PARTS? n: S_PARTS;
    bool wellformed = n == S_PARTS && zmq_msg_size (&part [0]) == 3
                   && memcmp (zmq_msg_data (&part [0]), "1.0", 3) == 0
                   && zmq_msg_size (&part [5]) == 5
                   && memcmp (zmq_msg_data (&part [5]), "CURVE", 5) == 0
                   && zmq_msg_size (&part [6]) == 32;
    const uint8_t *key = wellformed? (const uint8_t *) zmq_msg_data (&part [6]): NULL;
    if (key)
        s_allow_refresh (self);
    bool ok = key && (memcmp (key, self->public_key, 32) == 0
                      || tr__curve_keys_has (self->allow, key));
    char user [TR__CURVE_TXT] = "";
    if (ok) {
        zmq_z85_encode (user, key, 32);
        S_ADD (self, auth_allowed, 1);
    }
    else {
        zmq_msg_t none;
        zmq_msg_init (&none);
        s_refusal_log (self, count > 3? &part [3]: &none, key);
        zmq_msg_close (&none);
        S_ADD (self, auth_refused, 1);
    }
    s_zap_send (self, "1.0", 3, true);
    s_zap_send (self, count > 1? zmq_msg_data (&part [1]): "",
                count > 1? zmq_msg_size (&part [1]): 0, true);
    s_zap_send (self, ok? "200": wellformed? "400": "500", 3, true);
    const char *text = ok? "OK": wellformed? "key not allowed": "malformed request";
    s_zap_send (self, text, strlen (text), true);
    s_zap_send (self, user, strlen (user), true);
    s_zap_send (self, "", 0, false);
    for (size_t i = 0; i < count; i++)
        zmq_msg_close (&part [i]);
    return true;
}

//  --------------------------------------------------------------------------
//  The thread

static void *
s_thread (void *arg)
{
    tr_broker_t *self = (tr_broker_t *) arg;
    void *pipe = zmq_socket (self->ctx, ZMQ_PAIR);
    int linger = 0;
    zmq_setsockopt (pipe, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect (pipe, self->pipe_endpoint);
    zmq_pollitem_t items [4] = {
        { self->router, 0, ZMQ_POLLIN, 0 }, { pipe, 0, ZMQ_POLLIN, 0 }
    };
    int count = 2, zap = -1, synced = -1;
    if (self->zap)
        items [zap = count++] = (zmq_pollitem_t) { self->zap, 0, ZMQ_POLLIN, 0 };
    int sync_fd = self->kvlog? tr__kvlog_event_fd (self->kvlog): -1;
    if (sync_fd >= 0)
        items [synced = count++] = (zmq_pollitem_t) { NULL, sync_fd, ZMQ_POLLIN, 0 };
    self->now_ns = tr__now_ns ();
    long timeout = -1;
    while (true) {
        if (zmq_poll (items, count, timeout) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (items [1].revents & ZMQ_POLLIN)
            break;                      //  tr_broker_stop
        if (synced >= 0 && (items [synced].revents & ZMQ_POLLIN)) {
            uint64_t ticks;
            if (read (sync_fd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                tr_log (TR_LOG_ERROR, "broker: reading the log's sync signal: %s",
                        strerror (errno));
        }
        //  Handshakes first: each waits for its answer.
        self->now_ns = tr__now_ns ();
        for (int i = 0; zap >= 0 && i < S_BATCH && s_zap (self); i++)
            ;
        //  One clock read per batch: a batch is drained in far less time
        //  than any heartbeat, and this read was 5-7% of the broker's CPU
        //  when it was taken per message (bench/notes/broker_tell.md).
        for (int i = 0; i < S_BATCH; i++) {
            s_in_t in;
            if (!s_receive (self, &in)) {
                s_in_close (&in);
                break;
            }
            s_handle (self, &in);
            s_in_close (&in);
            s_reap (self);
        }
        s_kv_timers (self);
        //  Held answers and changes whose writes are durable now.
        s_release (self);
        self->now_ns = tr__now_ns ();
        timeout = s_kv_timeout (self, s_heartbeats (self));
        if (self->holding_blocked && (timeout < 0 || timeout > S_HELD_RETRY_MS))
            timeout = S_HELD_RETRY_MS;
    }
    zmq_close (pipe);
    return NULL;
}

//  --------------------------------------------------------------------------

//  Fills in the defaults and checks the options. Returns TR_OK or
//  TR_EINVAL.
static int
s_options (tr_broker_t *self, const tr_broker_opts_t *opts)
{
    if (!opts->bind || !*opts->bind || strlen (opts->bind) >= sizeof self->endpoint
    ||  opts->heartbeat_ms < 0 || (opts->heartbeat_ms && opts->heartbeat_ms < 10)
    ||  opts->heartbeat_ms > 60000)
        return TR_EINVAL;
    self->heartbeat_ms = opts->heartbeat_ms? opts->heartbeat_ms: S_HEARTBEAT_MS;
    self->max_frame = opts->max_frame? opts->max_frame: S_MAX_FRAME;
    self->max_names = opts->max_names? opts->max_names: S_MAX_NAMES;
    self->max_subs = opts->max_subs? opts->max_subs: S_MAX_SUBS;
    self->max_queue = opts->max_queue? opts->max_queue: S_MAX_QUEUE;
    //  A frame must hold at least a greeting's answer; the high-water
    //  marks are ints.
    if (self->max_frame < 1024 || self->max_frame > INT64_MAX || self->max_queue > INT32_MAX)
        return TR_EINVAL;
    //  The scratchpad: a broker may lower max_key, not raise it; a value
    //  must fit in a KV_GET answer with its key.
    self->max_key = opts->max_key? opts->max_key: S_MAX_KEY;
    self->max_list = opts->max_list? opts->max_list: S_MAX_LIST;
    if (self->max_key > S_MAX_KEY || self->max_list > UINT32_MAX)
        return TR_EINVAL;
    size_t room = self->max_frame - self->max_key - S_ANSWER_OVERHEAD;
    self->max_value = opts->max_value? opts->max_value: S_MAX_VALUE < room? S_MAX_VALUE: room;
    if (self->max_value > room)
        return TR_EINVAL;
    if (opts->fsync != TR_FSYNC_EVERYSEC && opts->fsync != TR_FSYNC_ALWAYS
    &&  opts->fsync != TR_FSYNC_NO)
        return TR_EINVAL;
    self->fsync = opts->fsync;
    if (opts->data_dir && !*opts->data_dir)
        return TR_EINVAL;
    return TR_OK;
}

//  Creates the scratchpad, and with a data folder opens its log and
//  replays it. Returns TR_OK or the log's error (logged with its reason).
static int
s_kv_open (tr_broker_t *self, const char *data_dir)
{
    tr__kv_limits_t limits = {
        .max_key = self->max_key, .max_value = self->max_value, .max_list = self->max_list
    };
    self->kv = tr__kv_new (&limits);
    if (!self->kv)
        return TR_ENOMEM;
    if (!data_dir)
        return TR_OK;
    static const char *names [] = { "everysec", "always", "no" };
    static const int syncs [] = { TR__KVLOG_EVERYSEC, TR__KVLOG_ALWAYS, TR__KVLOG_NO };
    tr__kvlog_opts_t opts = { .sync = syncs [self->fsync], .group = true };
    tr__kvlog_replay_t info = { 0 };
    int64_t start = tr__now_ns ();
    int rc = tr__kvlog_open (&self->kvlog, data_dir, &opts, self->kv, &info);
    if (rc) {
        tr_log (TR_LOG_ERROR, "broker: cannot use the data folder %s: %s", data_dir,
                rc == TR_ENOTFOUND? "no such folder":
                rc == TR_EACCES? "not writable":
                rc == TR_EEXIST? "another broker uses it":
                rc == TR_EMALFORMED? "the scratchpad's log is damaged (see above)":
                tr_strerror (rc));
        //  The store may hold part of the log: start again empty.
        tr__kv_destroy (&self->kv);
        return rc;
    }
    tr_log (TR_LOG_INFO, "broker: scratchpad log in %s (fsync %s): replayed %llu records "
            "in %lld ms, %zu keys at version %llu%s", data_dir, names [self->fsync],
            (unsigned long long) info.records, (long long) (tr__now_ns () - start) / 1000000,
            tr__kv_count (self->kv), (unsigned long long) tr__kv_version (self->kv),
            info.truncated? ", a torn last record dropped": "");
    return TR_OK;
}

//  Closes the log (synced), then the store.
static void
s_kv_close (tr_broker_t *self)
{
    tr__kvlog_close (&self->kvlog);
    tr__kv_destroy (&self->kv);
}

//  Reads the broker's keys and its allow folder, and refuses an endpoint
//  beyond loopback without them. Returns TR_OK or an error (logged).
static int
s_curve_open (tr_broker_t *self, const tr_broker_opts_t *opts)
{
    if (!opts->curve_secret_file) {
        if (opts->curve_allow_dir) {
            tr_log (TR_LOG_ERROR, "broker: an allow folder (%s) without a secret key file "
                    "to run CURVE with", opts->curve_allow_dir);
            return TR_EINVAL;
        }
        //  Not an endpoint at all: ZeroMQ's refusal (TR_EINVAL) says it.
        if (tr__curve_endpoint_local (opts->bind) || !strstr (opts->bind, "://"))
            return TR_OK;
        tr_log (TR_LOG_ERROR, "broker: refusing to listen on %s without CURVE: an "
                "endpoint other than loopback (127.0.0.1, [::1], localhost), ipc:// or "
                "inproc:// needs the broker's secret key file and an allow folder "
                "(2-broker.md 2.10)", opts->bind);
        return TR_EACCES;
    }
    if (!zmq_has ("curve")) {
        tr_log (TR_LOG_ERROR, "broker: this libzmq was built without CURVE");
        return TR_ESYS;
    }
    int rc = tr__curve_secret_load ("broker", opts->curve_secret_file, self->public_txt,
                                    self->secret_txt);
    if (rc)
        return rc;
    zmq_z85_decode (self->public_key, self->public_txt);
    self->curve = true;
    if (!opts->curve_allow_dir) {
        tr_log (TR_LOG_INFO, "broker: CURVE on, public key %s; no allow folder: only "
                "clients holding the broker's own key pair are allowed", self->public_txt);
        return TR_OK;
    }
    self->allow_dir = strdup (opts->curve_allow_dir);
    if (!self->allow_dir)
        return TR_ENOMEM;
    rc = tr__curve_keys_load (self->allow_dir, true, &self->allow);
    if (rc)
        return rc;
    self->allow_read_ns = tr__now_ns ();
    tr_log (TR_LOG_INFO, "broker: CURVE on, public key %s; %zu client keys allowed from %s",
            self->public_txt, tr__curve_keys_count (self->allow), self->allow_dir);
    return TR_OK;
}

static void
s_curve_close (tr_broker_t *self)
{
    memset (self->secret_txt, 0, sizeof self->secret_txt);
    tr__curve_keys_destroy (&self->allow);
    free (self->allow_dir);
    self->allow_dir = NULL;
}

//  Makes the router a CURVE server, with the ZAP handler bound first.
//  Returns TR_OK or TR_ESYS (logged).
static int
s_curve_bind (tr_broker_t *self)
{
    int one = 1, linger = 0;
    self->zap = zmq_socket (self->ctx, ZMQ_REP);
    if (!self->zap)
        return TR_ESYS;
    zmq_setsockopt (self->zap, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind (self->zap, "inproc://zeromq.zap.01")
    ||  zmq_setsockopt (self->router, ZMQ_CURVE_SERVER, &one, sizeof one)
    ||  zmq_setsockopt (self->router, ZMQ_CURVE_SECRETKEY, self->secret_txt, 40)
    ||  zmq_setsockopt (self->router, ZMQ_CURVE_PUBLICKEY, self->public_txt, 40)
    ||  zmq_setsockopt (self->router, ZMQ_ZAP_DOMAIN, "troupe", 6)) {
        tr_log (TR_LOG_ERROR, "broker: cannot set up CURVE: %s", zmq_strerror (errno));
        return TR_ESYS;
    }
    return TR_OK;
}

//  Creates the router, sets its options and binds it. Returns TR_OK,
//  TR_EINVAL (an endpoint ZeroMQ does not understand) or TR_ESYS.
static int
s_bind (tr_broker_t *self, const char *endpoint)
{
    self->router = zmq_socket (self->ctx, ZMQ_ROUTER);
    self->pipe = zmq_socket (self->ctx, ZMQ_PAIR);
    if (!self->router || !self->pipe)
        return TR_ESYS;
    int one = 1, linger = 0, hwm = (int) self->max_queue;
    int64_t max = (int64_t) self->max_frame;
    zmq_setsockopt (self->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt (self->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->router, ZMQ_MAXMSGSIZE, &max, sizeof max);
    zmq_setsockopt (self->pipe, ZMQ_LINGER, &linger, sizeof linger);
    if (self->curve && s_curve_bind (self))
        return TR_ESYS;
    if (zmq_bind (self->router, endpoint)) {
        int err = errno;
        tr_log (TR_LOG_ERROR, "broker: cannot bind %s: %s", endpoint, zmq_strerror (err));
        return err == EINVAL || err == EPROTONOSUPPORT || err == ENOCOMPATPROTO
            || err == ENODEV? TR_EINVAL: TR_ESYS;
    }
    size_t size = sizeof self->endpoint;
    if (zmq_getsockopt (self->router, ZMQ_LAST_ENDPOINT, self->endpoint, &size))
        snprintf (self->endpoint, sizeof self->endpoint, "%s", endpoint);
    if (zmq_bind (self->pipe, self->pipe_endpoint))
        return TR_ESYS;
    return TR_OK;
}

//  The frames the broker sends most: built once.
static int
s_prebuild (tr_broker_t *self)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_DELIVER, 0, 0);
    if (!s_frame (&out, &self->deliver))
        return TR_ENOMEM;
    tr__wire_begin (&out, TR__V_HEARTBEAT, 0, 0);
    if (!s_frame (&out, &self->heartbeat)) {
        zmq_msg_close (&self->deliver);
        return TR_ENOMEM;
    }
    return TR_OK;
}

static void
s_destroy_state (tr_broker_t *self)
{
    if (self->peers) {
        //  Clients are dropped without telling anyone: nobody is left to
        //  tell.
        s_client_t *client;
        while ((client = (s_client_t *) zhashx_first (self->peers))) {
            zhashx_delete (self->peers, client->key);
            s_watches_end (self, client);
            s_release_forget (self, client);
            s_client_destroy (&client);
        }
    }
    if (self->subs)
        for (s_subs_t *subs = (s_subs_t *) zhashx_first (self->subs); subs;
             subs = (s_subs_t *) zhashx_next (self->subs)) {
            free (subs->items);
            free (subs);
        }
    zhashx_destroy (&self->peers);
    zhashx_destroy (&self->by_id);
    zhashx_destroy (&self->names);
    zhashx_destroy (&self->subs);
    free (self->touched);
    self->touched = NULL;
    self->touched_room = 0;
    msgpack_sbuffer_destroy (&self->collected);
}

int
tr_broker_start (const tr_broker_opts_t *opts, tr_broker_t **self_p)
{
    if (!opts || !self_p)
        return TR_EINVAL;
    tr_broker_t *self = (tr_broker_t *) calloc (1, sizeof *self);
    if (!self)
        return TR_ENOMEM;
    self->tag = S_BROKER_TAG;
    int err = EINVAL;
    int rc = s_options (self, opts);
    if (rc == TR_OK)
        rc = s_curve_open (self, opts);
    if (rc)
        goto fail_options;
    static atomic_uint_fast64_t s_count;
    uint64_t n = atomic_fetch_add (&s_count, 1);
    char host [64] = "localhost";
    gethostname (host, sizeof host - 1);
    host [sizeof host - 1] = 0;
    for (char *c = host; *c; c++)
        if ((unsigned char) *c <= ' ' || *c == 0x7f)
            *c = '_';
    snprintf (self->id, sizeof self->id, n? "broker@%s:%d.%llu": "broker@%s:%d",
              host, (int) getpid (), (unsigned long long) n);
    snprintf (self->pipe_endpoint, sizeof self->pipe_endpoint, "inproc://broker-stop-%llu",
              (unsigned long long) n);
    self->peers = zhashx_new ();
    self->by_id = zhashx_new ();
    self->names = zhashx_new ();
    self->subs = zhashx_new ();
    rc = TR_ENOMEM;
    if (!self->peers || !self->by_id || !self->names || !self->subs)
        goto fail_state;
    rc = s_kv_open (self, opts->data_dir);
    if (rc)
        goto fail_state;
    rc = TR_ENOMEM;
    if (s_prebuild (self))
        goto fail_state;
    self->ctx = zmq_ctx_new ();
    rc = TR_ESYS;
    if (!self->ctx)
        goto fail_ctx;
    rc = s_bind (self, opts->bind);
    if (rc)
        goto fail_bind;
    rc = TR_ESYS;
    if (pthread_create (&self->thread, NULL, s_thread, self))
        goto fail_bind;
    tr_log (TR_LOG_INFO, "broker: %s listening on %s (heartbeat %lld ms, %s)", self->id,
            self->endpoint, (long long) self->heartbeat_ms,
            self->curve? "CURVE": "no CURVE: this host only");
    *self_p = self;
    return TR_OK;

fail_bind:
    err = errno;
    if (self->router)
        zmq_close (self->router);
    if (self->zap)
        zmq_close (self->zap);
    if (self->pipe)
        zmq_close (self->pipe);
    zmq_ctx_term (self->ctx);
fail_ctx:
    zmq_msg_close (&self->deliver);
    zmq_msg_close (&self->heartbeat);
fail_state:
    s_destroy_state (self);
    s_kv_close (self);
fail_options:
    s_curve_close (self);
    free (self);
    errno = err;
    return rc;
}

const char *
tr_broker_endpoint (const tr_broker_t *self)
{
    if (!self)
        return NULL;
    assert (self->tag == S_BROKER_TAG);
    return self->endpoint;
}

int
tr_broker_stats (tr_broker_t *self, tr_broker_stats_t *stats)
{
    if (!self || !stats)
        return TR_EINVAL;
    assert (self->tag == S_BROKER_TAG);
#define S_COPY(name) \
    stats->name = atomic_load_explicit (&self->stats.name, memory_order_relaxed);
    S_STATS (S_COPY)
#undef S_COPY
    //  The store takes its own lock.
    stats->kv_keys = tr__kv_count (self->kv);
    stats->kv_version = tr__kv_version (self->kv);
    return TR_OK;
}

void
tr_broker_stop (tr_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tr_broker_t *self = *self_p;
    *self_p = NULL;
    assert (self->tag == S_BROKER_TAG);
    zmq_send (self->pipe, "", 0, 0);
    pthread_join (self->thread, NULL);
    zmq_close (self->pipe);
    zmq_close (self->router);           //  before the ZAP handler
    if (self->zap)
        zmq_close (self->zap);
    zmq_ctx_term (self->ctx);
    zmq_msg_close (&self->deliver);
    zmq_msg_close (&self->heartbeat);
    s_destroy_state (self);
    s_kv_close (self);
    s_curve_close (self);
    tr_log (TR_LOG_INFO, "broker: %s stopped", self->id);
    self->tag = S_DEAD_TAG;
    free (self);
}
