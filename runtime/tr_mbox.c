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

//  A message crosses between threads as a pointer inside libzmq, whose
//  own synchronisation ThreadSanitizer cannot see (libzmq is not
//  instrumented). These annotations tell it what libzmq guarantees: what
//  the sender wrote before sending is visible to the receiver.
#if defined (__SANITIZE_THREAD__)
#   define S_TSAN 1
#elif defined (__has_feature)
#   if __has_feature (thread_sanitizer)
#       define S_TSAN 1
#   endif
#endif
#if defined (S_TSAN)
#   include <sanitizer/tsan_interface.h>
#   define S_HANDOFF_SEND(msg) __tsan_release (msg)
#   define S_HANDOFF_RECV(msg) __tsan_acquire (msg)
#else
#   define S_HANDOFF_SEND(msg) ((void) (msg))
#   define S_HANDOFF_RECV(msg) ((void) (msg))
#endif

//  Spinning: after this long without a message, a spinning thread also
//  yields its core, so that on a crowded machine the thread it waits for
//  gets to run.
#define S_SPIN_YIELD_AFTER_NS   5000

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
    pthread_cond_destroy (&self->room);
    pthread_mutex_destroy (&self->room_lock);
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
//  Sending (any thread; src owned by the caller)

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
        struct timespec at = tr__timespec_at (deadline_ns, CLOCK_MONOTONIC);
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

//  Gives back one place; wakes a sender waiting for room, if any.
static void
s_release (tr__mbox_t *self)
{
    atomic_fetch_sub (&self->depth, 1);
    if (atomic_load (&self->waiters)) {
        pthread_mutex_lock (&self->room_lock);
        pthread_cond_signal (&self->room);
        pthread_mutex_unlock (&self->room_lock);
    }
}

//  Writes the pointer to msg into dst's pipe from src's socket, opening
//  the pipe on first use.
static int
s_write (tr__mbox_t *src, tr__mbox_t *dst, tr_msg_t *msg)
{
    while (zmq_send (src->sock, dst->rid, TR__RID_LEN, ZMQ_SNDMORE) != TR__RID_LEN) {
        //  No pipe to dst yet: connect, naming the pipe with dst's id.
        //  dst cannot go away meanwhile: our reservation keeps its close
        //  waiting for this message.
        if (zmq_errno () != EHOSTUNREACH
        ||  zmq_setsockopt (src->sock, ZMQ_CONNECT_ROUTING_ID, dst->rid, TR__RID_LEN)
        ||  zmq_connect (src->sock, dst->endpoint))
            return s_socket_error ("send");
    }
    if (zmq_send (src->sock, &msg, sizeof msg, 0) != (int) sizeof msg)
        return s_socket_error ("send");
    return TR_OK;
}

int
tr__mbox_post (tr__mbox_t *src, tr__mbox_t *dst, tr_msg_t *msg, int wait_ms)
{
    assert (src->sock && dst->tag == TR__MBOX_TAG);
    bool bounded = msg->kind == TR_KIND_TELL || msg->kind == TR_KIND_ASK;
    int rc = s_reserve (dst, bounded, wait_ms);
    if (rc)
        return rc;
    S_HANDOFF_SEND (msg);
    rc = s_write (src, dst, msg);
    if (rc) {
        s_release (dst);
        return rc;
    }
    //  Only now may the receiver count on the message being there.
    atomic_fetch_add_explicit (&dst->sent, 1, memory_order_release);
    return TR_OK;
}

//  --------------------------------------------------------------------------
//  Receiving (owner only)

//  True when a message has been written that we have not read yet.
static inline bool
s_ready (const tr__mbox_t *self)
{
    return atomic_load_explicit (&self->sent, memory_order_acquire) != self->recvd;
}

//  Reads one message from the socket, waiting as ZMQ_RCVTIMEO says.
//  Returns NULL on timeout or interruption.
static tr_msg_t *
s_read (tr__mbox_t *self)
{
    char rid [32];
    tr_msg_t *msg = NULL;
    if (zmq_recv (self->sock, rid, sizeof rid, 0) < 0) {
        if (zmq_errno () != EAGAIN && zmq_errno () != EINTR)
            s_socket_error ("recv");
        return NULL;
    }
    //  The routing id and the pointer travel as one multipart message,
    //  so the second frame is already here.
    int size = zmq_recv (self->sock, &msg, sizeof msg, 0);
    if (size != (int) sizeof msg || !msg) {
        //  Only this file writes into mailboxes: this is a broken
        //  invariant, not bad input, and going on would lose messages.
        tr_log (TR_LOG_ERROR, "mailbox %s: corrupt frame (%d bytes)", self->endpoint, size);
        abort ();
    }
    S_HANDOFF_RECV (msg);
    assert (msg->tag == TR__MSG_TAG);
    self->recvd++;
    return msg;
}

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

//  Files a message just read: an answer to a blocking ask goes to the
//  waiting call (or is dead if nobody waits for it any more); anything
//  else joins the handler's queue of its priority.
static void
s_route (tr__mbox_t *self, tr_msg_t *msg)
{
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
    if (msg->kind != TR__KIND_STOP)
        s_count (&self->received);
    s_enqueue (self, msg);
}

//  Reads every message known to be in the socket.
static void
s_pull (tr__mbox_t *self)
{
    int64_t ready = (int64_t) (atomic_load_explicit (&self->sent, memory_order_acquire)
                             - self->recvd);
    while (ready-- > 0) {
        tr_msg_t *msg = s_read (self);
        if (msg)
            s_route (self, msg);
    }
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

//  Waits for something to arrive: first by spinning on the sent count,
//  then by blocking in ZeroMQ. Returns false once the deadline has passed
//  with nothing new; true when the caller should look again.
static bool
s_await (tr__mbox_t *self, int64_t deadline_ns)
{
    int64_t start = tr__now_ns ();
    if (start >= deadline_ns)
        return false;
    if (self->spin_ns > 0) {
        int64_t until = start + self->spin_ns;
        if (until > deadline_ns)
            until = deadline_ns;
        for (uint32_t i = 1; ; i++) {
            if (s_ready (self)) {
                s_adapt (self, tr__now_ns () - start);
                return true;
            }
            s_relax ();
            if ((i & 63) == 0) {
                int64_t now = tr__now_ns ();
                if (now >= until)
                    break;
                if (now - start > S_SPIN_YIELD_AFTER_NS)
                    sched_yield ();
            }
        }
    }
    int64_t left = deadline_ns - tr__now_ns ();
    int timeout_ms = deadline_ns == TR__FOREVER? -1:
                     left <= 0? 0: (int) ((left + 999999) / 1000000);
    s_set_rcvtimeo (self, timeout_ms);
    tr_msg_t *msg = s_read (self);
    int64_t now = tr__now_ns ();
    s_adapt (self, now - start);
    if (msg) {
        s_route (self, msg);
        return true;
    }
    return now < deadline_ns;
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
    if (msg->kind == TR__KIND_STOP) {
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
    //  Nobody can be about to connect now (no reservation is left), so
    //  the endpoint can go. Unbinding here, before zmq_close, matters:
    //  libzmq's close walks every endpoint still bound in the context, so
    //  closing many mailboxes is quadratic unless they were unbound first.
    zmq_unbind (self->sock, self->endpoint);
    self->unbound = true;
    tr_node_t *node = self->node;
    atomic_fetch_add (&node->retired_sent, atomic_load (&self->sent));
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
