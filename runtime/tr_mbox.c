/*  tr_mbox.c - mailboxes; the design is explained in tr_mbox.h.  */

#include "tr_mbox.h"
#include "tr_clock.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

//  Spinning: after this long without a message, a spinning thread also
//  yields its core, so that on a crowded machine the thread it waits for
//  gets to run.
#define S_SPIN_YIELD_AFTER_NS   5000

//  Times a waiting thread yields its core, on a crowded machine, before
//  it sleeps (measured with bench/tb_ask crowded: 1 to 4 all do well).
#define S_CROWDED_YIELDS        3

//  Longest a sender waiting for room sleeps before it looks again.
#define S_ROOM_RECHECK_NS       (10 * 1000000)

static inline void
s_relax (void)
{
#if defined (__x86_64__) || defined (__i386__)
    __builtin_ia32_pause ();
#elif defined (__aarch64__)
    __asm__ __volatile__ ("yield");
#endif
}

//  --------------------------------------------------------------------------
//  Construction

static int
s_socket_error (const char *what)
{
    int err = zmq_errno ();
    tr_log (TR_LOG_ERROR, "mailbox: %s failed: %s", what, zmq_strerror (err));
    return err == EMFILE || err == ENFILE? TR_ELIMIT: TR_ESYS;
}

//  Creates, configures and binds the ROUTER socket of a mailbox.
static int
s_open_socket (tr__mbox_t *self)
{
    self->sock = zmq_socket (self->node->ctx, ZMQ_ROUTER);
    if (!self->sock)
        return s_socket_error ("zmq_socket");
    //  The bound is ours (depth); libzmq must never block or drop.
    int zero = 0, one = 1;
    char announce [TR__RID_LEN];
    memcpy (announce, self->rid, TR__RID_LEN);
    announce [0] = 'S';         //  never equal to any 'C' connect id
    if (zmq_setsockopt (self->sock, ZMQ_SNDHWM, &zero, sizeof zero)
    ||  zmq_setsockopt (self->sock, ZMQ_RCVHWM, &zero, sizeof zero)
    ||  zmq_setsockopt (self->sock, ZMQ_LINGER, &zero, sizeof zero)
    ||  zmq_setsockopt (self->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one)
    ||  zmq_setsockopt (self->sock, ZMQ_ROUTING_ID, announce, TR__RID_LEN)
    ||  zmq_bind (self->sock, self->endpoint)) {
        int rc = s_socket_error ("socket setup");
        zmq_close (self->sock);
        self->sock = NULL;
        return rc;
    }
    return TR_OK;
}

int
tr__mbox_new (tr_node_t *node, const char *name, size_t capacity,
              int on_full, tr__mbox_t **mbox_p)
{
    tr__mbox_t *self;
    if (posix_memalign ((void **) &self, 64, sizeof *self))
        return TR_ENOMEM;
    memset (self, 0, sizeof *self);
    self->tag = TR__MBOX_TAG;
    atomic_init (&self->refs, 1);
    self->node = node;
    self->id = atomic_fetch_add (&node->next_mbox_id, 1);
    self->capacity = capacity;
    self->on_full = on_full;
    self->spin_max_ns = node->opts.spin_us < 0? 0: (int64_t) node->opts.spin_us * 1000;
    self->spin_ns = self->spin_max_ns;
    self->rcvtimeo = -1;
    atomic_init (&self->q_stub.next, NULL);
    atomic_init (&self->q_head, &self->q_stub);
    self->q_tail = &self->q_stub;
    snprintf (self->rid, sizeof self->rid, "C%016" PRIx64, self->id);
    //  Fixed-width hex, so that endpoints sort in creation order; see
    //  tr__actors_stop_all for why that matters.
    snprintf (self->endpoint, sizeof self->endpoint,
              "inproc://troupe-%016" PRIx64 "-%016" PRIx64, node->id, self->id);
    if (name && !(self->name = strdup (name))) {
        free (self);
        return TR_ENOMEM;
    }
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->room, &attr);
    pthread_condattr_destroy (&attr);
    pthread_mutex_init (&self->room_lock, NULL);
    tr__breaker_init (&self->breaker, node, self->name);
    int rc = s_open_socket (self);
    if (rc) {
        self->sock = NULL;
        tr__mbox_unref (&self);
        return rc;
    }
    *mbox_p = self;
    return TR_OK;
}

tr__mbox_t *
tr__mbox_ref (tr__mbox_t *self)
{
    assert (self->tag == TR__MBOX_TAG);
    atomic_fetch_add_explicit (&self->refs, 1, memory_order_relaxed);
    return self;
}

void
tr__mbox_unref (tr__mbox_t **self_p)
{
    tr__mbox_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    assert (self->tag == TR__MBOX_TAG);
    if (atomic_fetch_sub_explicit (&self->refs, 1, memory_order_acq_rel) != 1)
        return;
    assert (!self->sock);       //  closed by its owner before the last ref
    free (atomic_load (&self->info));
    pthread_cond_destroy (&self->room);
    pthread_mutex_destroy (&self->room_lock);
    tr__breaker_destroy (&self->breaker);
    free (self->name);
    self->tag = TR__DEAD_TAG;
    free (self);
}

uint64_t
tr__mbox_depth (const tr__mbox_t *self)
{
    return atomic_load_explicit (&self->depth, memory_order_relaxed) & ~TR__MBOX_CLOSED;
}

//  --------------------------------------------------------------------------
//  The bound (any thread)

//  Waits on dst's condition variable until it may have room, or until
//  the deadline. Returns 0 to try again, -1 when the deadline has passed.
static int
s_wait_room (tr__mbox_t *dst, int64_t deadline_ns)
{
    if (tr__now_ns () >= deadline_ns)
        return -1;
    pthread_mutex_lock (&dst->room_lock);
    //  Announce the wait before looking again, and the taker decrements
    //  depth before looking for waiters: both are sequentially consistent,
    //  so at least one of us sees the other and no wake-up is lost.
    atomic_fetch_add (&dst->waiters, 1);
    uint64_t d = atomic_load (&dst->depth);
    if (!(d & TR__MBOX_CLOSED) && d >= dst->capacity) {
        //  We are woken at half the bound (s_release); wake up now and then
        //  anyway, so a receiver that stalls just under its bound does not
        //  keep us out of the room it has.
        int64_t slice = tr__now_ns () + S_ROOM_RECHECK_NS;
        struct timespec at = tr__timespec_at (slice < deadline_ns? slice: deadline_ns,
                                              CLOCK_MONOTONIC);
        pthread_cond_timedwait (&dst->room, &dst->room_lock, &at);
    }
    atomic_fetch_sub (&dst->waiters, 1);
    pthread_mutex_unlock (&dst->room_lock);
    return 0;
}

//  Reserves a place in dst: checks the closed bit and, for bounded kinds,
//  the capacity, in one compare-and-swap.
static int
s_reserve (tr__mbox_t *dst, bool bounded, int wait_ms)
{
    int64_t deadline = 0;       //  computed only if we ever have to wait
    uint64_t d = atomic_load_explicit (&dst->depth, memory_order_relaxed);
    for (;;) {
        if (d & TR__MBOX_CLOSED)
            return TR_ENOACTOR;
        if (bounded && d >= dst->capacity) {
            if (!deadline)
                deadline = wait_ms < 0? 0: tr__deadline_after_ms (wait_ms);
            if (dst->on_full == TR_FULL_FAIL || s_wait_room (dst, deadline)) {
                atomic_fetch_add_explicit (&dst->rejected, 1, memory_order_relaxed);
                return TR_EFULL;
            }
            d = atomic_load_explicit (&dst->depth, memory_order_relaxed);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit (&dst->depth, &d, d + 1,
                memory_order_acq_rel, memory_order_relaxed))
            return TR_OK;
    }
}

//  Gives back one place. Wakes the senders waiting for room once the
//  mailbox has drained to half its bound: waking them for every freed
//  place would make a fast producer sleep and wake once per message.
static void
s_release (tr__mbox_t *self)
{
    uint64_t left = (atomic_fetch_sub (&self->depth, 1) - 1) & ~TR__MBOX_CLOSED;
    if (atomic_load (&self->waiters) && left <= self->capacity / 2) {
        pthread_mutex_lock (&self->room_lock);
        pthread_cond_broadcast (&self->room);
        pthread_mutex_unlock (&self->room_lock);
    }
}

//  --------------------------------------------------------------------------
//  The queue: Vyukov's intrusive multi-producer, single-consumer list. A
//  stub node keeps it from ever being empty of nodes, so a push is one
//  exchange and one store, and a pop touches only the consumer's end.

static inline tr_msg_t *
s_msg_of (tr__link_t *link)
{
    return (tr_msg_t *) ((char *) link - offsetof (tr_msg_t, link));
}

//  Any thread. The exchange is sequentially consistent: it pairs with the
//  owner's store to `sleeping` (see s_sleep), so that either the owner
//  sees this message before it sleeps, or we see that it sleeps.
static void
s_push (tr__mbox_t *self, tr__link_t *link)
{
    atomic_store_explicit (&link->next, NULL, memory_order_relaxed);
    tr__link_t *prev = atomic_exchange (&self->q_head, link);
    atomic_store_explicit (&prev->next, link, memory_order_release);
}

//  Owner. Returns the oldest message, or NULL when the queue is empty or
//  a push is halfway done (s_pending says which).
static tr_msg_t *
s_pop (tr__mbox_t *self)
{
    tr__link_t *tail = self->q_tail;
    tr__link_t *next = atomic_load_explicit (&tail->next, memory_order_acquire);
    if (tail == &self->q_stub) {
        if (!next)
            return NULL;
        self->q_tail = tail = next;
        next = atomic_load_explicit (&next->next, memory_order_acquire);
    }
    if (next) {
        self->q_tail = next;
        return s_msg_of (tail);
    }
    if (tail != atomic_load_explicit (&self->q_head, memory_order_acquire))
        return NULL;                    //  a producer is between its two steps
    s_push (self, &self->q_stub);       //  so that `tail` gets a successor
    next = atomic_load_explicit (&tail->next, memory_order_acquire);
    if (next) {
        self->q_tail = next;
        return s_msg_of (tail);
    }
    return NULL;
}

//  Owner. True if something was pushed that s_pop has not returned yet.
static inline bool
s_pending (const tr__mbox_t *self)
{
    return self->q_tail != &self->q_stub
        || atomic_load (&self->q_head) != &self->q_stub;
}

//  --------------------------------------------------------------------------
//  Sending (any thread; src owned by the caller)

//  Rings dst's socket from src's, connecting on first use. An empty
//  frame: it only wakes the owner, who then reads the queue.
//
//  The ring comes after the push, so dst may be closing meanwhile: it
//  can take the message, see its count fall to zero, and close its
//  socket while we are here. Our pipe to it then dies, and libzmq
//  answers EHOSTUNREACH just as it does for a peer we never connected
//  to; but the old pipe stays in our socket's table until the close is
//  acknowledged, and connecting again under the same routing id would
//  abort libzmq (router.cpp: !has_out_pipe). dst raises its closed bit
//  before it touches its socket, so a pipe that died for that reason
//  always shows the bit here: then there is nobody left to wake.
static void
s_ring (tr__mbox_t *src, tr__mbox_t *dst)
{
    bool connected = false;
    while (zmq_send (src->sock, dst->rid, TR__RID_LEN, ZMQ_SNDMORE) != TR__RID_LEN) {
        bool unreachable = zmq_errno () == EHOSTUNREACH;
        if (unreachable && atomic_load (&dst->depth) & TR__MBOX_CLOSED)
            return;
        if (!unreachable || connected
        ||  zmq_setsockopt (src->sock, ZMQ_CONNECT_ROUTING_ID, dst->rid, TR__RID_LEN)
        ||  zmq_connect (src->sock, dst->endpoint)) {
            s_socket_error ("ring");
            return;
        }
        connected = true;
    }
    if (zmq_send (src->sock, "", 0, 0) != 0)
        s_socket_error ("ring");
}

//  dst's breaker refused msg: it goes to the fallback actor if there is
//  one (and it is not dst), else the sender hears TR_ECIRCUIT.
static int
s_divert (tr__mbox_t *src, tr__mbox_t *dst, tr_msg_t *msg, int wait_ms)
{
    atomic_fetch_add_explicit (&dst->rejected, 1, memory_order_relaxed);
    if (!dst->breaker.fallback [0])
        return TR_ECIRCUIT;
    tr__mbox_t *fallback = tr__node_lookup (dst->node, dst->breaker.fallback, false);
    int rc = fallback && fallback != dst? tr__mbox_post (src, fallback, msg, wait_ms): TR_ECIRCUIT;
    tr__mbox_unref (&fallback);
    return rc;
}

int
tr__mbox_post (tr__mbox_t *src, tr__mbox_t *dst, tr_msg_t *msg, int wait_ms)
{
    assert (src->sock && dst->tag == TR__MBOX_TAG);
    bool bounded = msg->kind == TR_KIND_TELL || msg->kind == TR_KIND_ASK;
    if (bounded && !tr__breaker_admit (&dst->breaker))
        return s_divert (src, dst, msg, wait_ms);
    int rc = s_reserve (dst, bounded, wait_ms);
    if (rc)
        return rc;
    s_push (dst, &msg->link);
    if (atomic_load (&dst->sleeping) && atomic_exchange (&dst->sleeping, 0))
        s_ring (src, dst);
    return TR_OK;
}

//  --------------------------------------------------------------------------
//  Receiving (owner only)

static void
s_enqueue (tr__mbox_t *self, tr_msg_t *msg)
{
    int q = msg->priority + 1;
    msg->next = NULL;
    if (self->tail [q])
        self->tail [q]->next = msg;
    else
        self->head [q] = msg;
    self->tail [q] = msg;
}

static tr_msg_t *
s_dequeue (tr__mbox_t *self)
{
    for (int q = TR__PRIO_LEVELS - 1; q >= 0; q--) {
        tr_msg_t *msg = self->head [q];
        if (msg) {
            self->head [q] = msg->next;
            if (!self->head [q])
                self->tail [q] = NULL;
            msg->next = NULL;
            return msg;
        }
    }
    return NULL;
}

static inline void
s_count (atomic_uint_fast64_t *counter)
{
    //  Only the owner writes these counters: a plain load and store is
    //  enough, and keeps locked instructions off the message path.
    atomic_store_explicit (counter,
        atomic_load_explicit (counter, memory_order_relaxed) + 1,
        memory_order_relaxed);
}

//  Files a message taken off the queue: an answer to a blocking ask goes
//  to the waiting call (or is dead if nobody waits for it any more);
//  anything else joins the handler's queue of its priority.
static void
s_route (tr__mbox_t *self, tr_msg_t *msg)
{
    s_count (&self->arrived);
    bool answer = msg->kind == TR_KIND_REPLY || msg->kind == TR_KIND_ERROR;
    if (answer && (msg->corr & TR__ID_BLOCKING)) {
        if (msg->corr == self->waiting_for) {
            msg->next = self->replies;
            self->replies = msg;
        }
        else {
            s_release (self);
            tr__mbox_dead_letter (self, msg, TR_ETIMEDOUT);
        }
        return;
    }
    if (msg->kind < TR__KIND_STOP)
        s_count (&self->received);
    s_enqueue (self, msg);
}

//  Moves everything in the queue to the handler's queues, so that the
//  next take sees every priority. Bounded by what the mailbox holds.
static void
s_pull (tr__mbox_t *self)
{
    tr_msg_t *msg;
    while ((msg = s_pop (self)))
        s_route (self, msg);
}

//  Adapts the spin budget to how long the last wait took: a wait the
//  spin could have covered keeps the full budget, a longer one halves it,
//  so an actor that is mostly idle soon stops spinning at all.
static void
s_adapt (tr__mbox_t *self, int64_t waited_ns)
{
    if (waited_ns <= self->spin_max_ns)
        self->spin_ns = self->spin_max_ns;
    else
        self->spin_ns = self->spin_ns < 2000? 0: self->spin_ns / 2;
}

static void
s_set_rcvtimeo (tr__mbox_t *self, int timeout_ms)
{
    if (self->rcvtimeo != timeout_ms
    &&  zmq_setsockopt (self->sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms) == 0)
        self->rcvtimeo = timeout_ms;
}

//  True if spinning may pay: the node's actor threads that are awake
//  (running, or waiting for a core) fit on the cores. Past that, a
//  spinning thread only takes the core from the thread it waits for.
static bool
s_cores_to_spare (const tr_node_t *node)
{
    return atomic_load_explicit (&node->owners, memory_order_relaxed)
         - atomic_load_explicit (&node->sleepers, memory_order_relaxed) <= node->cores;
}

//  Spins until something is pending or until `until`. Returns true if
//  something arrived.
static bool
s_spin (tr__mbox_t *self, int64_t start, int64_t until)
{
    for (uint32_t i = 1; ; i++) {
        if (s_pending (self))
            return true;
        s_relax ();
        if ((i & 63) == 0) {
            int64_t now = tr__now_ns ();
            if (now >= until || !s_cores_to_spare (self->node))
                return false;
            if (now - start > S_SPIN_YIELD_AFTER_NS)
                sched_yield ();
        }
    }
}

//  Reads and drops the ring frames waiting in the socket, blocking until
//  one arrives or ZMQ_RCVTIMEO ends. Returns true if one was read.
static bool
s_read_ring (tr__mbox_t *self)
{
    char frame [32];
    int more;
    size_t more_size = sizeof more;
    if (zmq_recv (self->sock, frame, sizeof frame, 0) < 0) {
        if (zmq_errno () != EAGAIN && zmq_errno () != EINTR)
            s_socket_error ("recv");
        return false;
    }
    //  [routing id][empty]; read the rest of the message, whatever it is.
    do {
        if (zmq_getsockopt (self->sock, ZMQ_RCVMORE, &more, &more_size) || !more)
            break;
    } while (zmq_recv (self->sock, frame, sizeof frame, 0) >= 0);
    return true;
}

//  Sleeps in ZeroMQ until rung or until the deadline. The store to
//  `sleeping` and the sender's exchange on the queue are both
//  sequentially consistent: either we see its message now, or it sees
//  that we sleep and rings.
static void
s_sleep (tr__mbox_t *self, int64_t deadline_ns)
{
    atomic_store (&self->sleeping, 1);
    if (s_pending (self)) {
        atomic_exchange (&self->sleeping, 0);   //  a late ring is harmless
        return;
    }
    int64_t left = deadline_ns - tr__now_ns ();
    int timeout_ms = deadline_ns == TR__FOREVER? -1:
                     left <= 0? 0: (int) ((left + 999999) / 1000000);
    s_set_rcvtimeo (self, timeout_ms);
    //  Only actor threads count in the node's tally of who is awake.
    atomic_int *sleepers = self->actor? &self->node->sleepers: NULL;
    if (sleepers)
        atomic_fetch_add_explicit (sleepers, 1, memory_order_relaxed);
    s_read_ring (self);
    if (sleepers)
        atomic_fetch_sub_explicit (sleepers, 1, memory_order_relaxed);
    atomic_exchange (&self->sleeping, 0);
}

//  On a crowded machine: gives the core away a few times, staying
//  runnable, before sleeping. The thread we wait for is then likely to
//  run on this very core and answer, and we find the answer without
//  either of us going through a sleep and a ring. Returns true if
//  something arrived.
static bool
s_yield_wait (tr__mbox_t *self)
{
    for (int i = 0; i < S_CROWDED_YIELDS; i++) {
        sched_yield ();
        if (s_pending (self))
            return true;
    }
    return false;
}

//  Waits for something to arrive. While awake actor threads fit on the
//  cores, it spins first (adaptively); when they do not, it yields a few
//  times instead; then it sleeps in ZeroMQ until rung. Returns false
//  once the deadline has passed with nothing new; true when the caller
//  should look again.
static bool
s_await (tr__mbox_t *self, int64_t deadline_ns)
{
    if (s_pending (self))
        return true;
    int64_t start = tr__now_ns ();
    if (start >= deadline_ns)
        return false;
    if (self->spin_max_ns > 0) {
        if (s_cores_to_spare (self->node)) {
            int64_t until = start + self->spin_ns;
            if (self->spin_ns > 0
            &&  s_spin (self, start, until < deadline_ns? until: deadline_ns)) {
                self->spin_ns = self->spin_max_ns;      //  it paid
                return true;
            }
        }
        else
        if (s_yield_wait (self))
            return true;
    }
    s_sleep (self, deadline_ns);
    int64_t now = tr__now_ns ();
    s_adapt (self, now - start);
    return s_pending (self) || now < deadline_ns;
}

tr_msg_t *
tr__mbox_take (tr__mbox_t *self, int64_t deadline_ns)
{
    for (;;) {
        s_pull (self);
        tr_msg_t *msg = s_dequeue (self);
        if (msg) {
            s_release (self);
            return msg;
        }
        if (!s_await (self, deadline_ns))
            return NULL;
    }
}

tr_msg_t *
tr__mbox_wait_reply (tr__mbox_t *self, uint64_t id, int64_t deadline_ns)
{
    assert (id & TR__ID_BLOCKING);
    self->waiting_for = id;
    tr_msg_t *reply = NULL;
    for (;;) {
        s_pull (self);
        if (self->replies) {
            //  Only an answer to `id` is ever filed while we wait for it.
            reply = self->replies;
            self->replies = reply->next;
            reply->next = NULL;
            assert (!self->replies);
            s_release (self);
            break;
        }
        if (!s_await (self, deadline_ns))
            break;
    }
    self->waiting_for = 0;
    return reply;
}

//  --------------------------------------------------------------------------
//  Dead letters and closing

void
tr__mbox_dead_letter (tr__mbox_t *self, tr_msg_t *msg, int reason)
{
    if (msg->kind >= TR__KIND_STOP) {  //  runtime signals are not letters
        tr__msg_free (msg);
        return;
    }
    s_count (&self->dead);
    tr_log (TR_LOG_DEBUG, "dead letter to '%s' from '%s': %s",
            msg->to, msg->from, tr_strerror (reason));
    if (msg->kind == TR_KIND_ASK) {
        tr__ctx_t ctx = { .node = self->node, .mbox = self,
                          .from = self->name? self->name: "" };
        tr__reply_error_from (&ctx, msg, reason);
    }
    tr__msg_free (msg);
}

void
tr__mbox_shut (tr__mbox_t *self, int reason)
{
    if (!self->sock || (atomic_load (&self->depth) & TR__MBOX_CLOSED && self->unbound))
        return;
    atomic_fetch_or (&self->depth, TR__MBOX_CLOSED);
    pthread_mutex_lock (&self->room_lock);
    pthread_cond_broadcast (&self->room);
    pthread_mutex_unlock (&self->room_lock);
    //  Every reservation made before the closed bit went up ends in a
    //  message; wait for each, then the count is zero and stays so.
    for (;;) {
        s_pull (self);
        tr_msg_t *msg;
        while ((msg = s_dequeue (self))) {
            s_release (self);
            tr__mbox_dead_letter (self, msg, reason);
        }
        while ((msg = self->replies)) {
            self->replies = msg->next;
            s_release (self);
            tr__mbox_dead_letter (self, msg, reason);
        }
        if (tr__mbox_depth (self) == 0)
            break;
        s_await (self, tr__now_ns () + 100 * 1000000);
    }
    //  No reservation is left, so the endpoint can go: a sender still
    //  ringing us sees the closed bit and does not connect (s_ring).
    //  Unbinding here, before zmq_close, matters: libzmq's close walks
    //  every endpoint still bound in the context, so closing many
    //  mailboxes is quadratic unless they were unbound first.
    zmq_unbind (self->sock, self->endpoint);
    self->unbound = true;
    tr_node_t *node = self->node;
    atomic_fetch_add (&node->retired_sent, atomic_load (&self->arrived));
    atomic_fetch_add (&node->retired_dead, atomic_load (&self->dead));
    atomic_fetch_add (&node->retired_rejected, atomic_load (&self->rejected));
}

void
tr__mbox_close (tr__mbox_t *self, int reason)
{
    tr__mbox_shut (self, reason);
    if (self->sock) {
        zmq_close (self->sock);
        self->sock = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Polling together with other sockets

void *
tr__mbox_poll_arm (tr__mbox_t *self)
{
    atomic_store (&self->sleeping, 1);
    bool queued = false;
    for (int q = 0; q < TR__PRIO_LEVELS; q++)
        queued |= self->head [q] != NULL;
    if (queued || s_pending (self)) {
        atomic_exchange (&self->sleeping, 0);
        return NULL;
    }
    return self->sock;
}

void
tr__mbox_poll_disarm (tr__mbox_t *self)
{
    char frame [32];
    while (zmq_recv (self->sock, frame, sizeof frame, ZMQ_DONTWAIT) >= 0)
        ;                               //  rings carry nothing to keep
    atomic_exchange (&self->sleeping, 0);
}
