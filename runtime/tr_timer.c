/*  tr_timer.c - the node's timer service; see tr_timer.h.

    One thread per node keeps the pending timers in a binary min-heap on
    their due time, sleeps on a condition variable until the earliest is
    due (or a new one comes first), and sends each due timer's body from
    its own mailbox. Adding and cancelling are O(log n) under the
    service's lock; an id index (zhashx) finds a timer to cancel.

    zloop's timers were the obvious tool, but zloop keeps timers in a list
    that it scans on every event, and its own documentation warns that
    more than a few dozen hurt; a node may hold a periodic timer per actor.
*/

#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mbox.h"
#include "troupe/tr_timer.h"
#include "troupe/tr_envelope.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t id;
    int64_t due_ns;
    int64_t period_ns;                  //  0 for a one-shot timer
    size_t index;                       //  position in the heap
    char *to;
    size_t size;
    uint8_t body [];
} s_timer_t;

struct tr__timers {
    tr_node_t *node;
    tr__mbox_t *mbox;                   //  ticks are sent from here
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    //  When the thread will wake by itself: INT64_MAX while it waits with
    //  no timer, the earliest deadline while it waits for that, 0 while it
    //  is awake. A new timer wakes it only if it is due before that: a
    //  forwarding actor that cancels one timer and sets a later one for
    //  every message (tr__request_timed) costs no wake-up.
    int64_t sleeping_until;
    bool stop;
    uint64_t next_id;
    s_timer_t **heap;
    size_t count;
    size_t alloc;
    zhashx_t *by_id;                    //  id -> s_timer_t *
};

//  Most firings sent per round, so a storm of due timers cannot hold the
//  lock for long.
#define S_BATCH 64

//  --------------------------------------------------------------------------
//  Heap on due_ns

static void
s_heap_set (tr__timers_t *self, size_t i, s_timer_t *t)
{
    self->heap [i] = t;
    t->index = i;
}

static void
s_sift_up (tr__timers_t *self, size_t i)
{
    s_timer_t *t = self->heap [i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (self->heap [parent]->due_ns <= t->due_ns)
            break;
        s_heap_set (self, i, self->heap [parent]);
        i = parent;
    }
    s_heap_set (self, i, t);
}

static void
s_sift_down (tr__timers_t *self, size_t i)
{
    s_timer_t *t = self->heap [i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= self->count)
            break;
        if (child + 1 < self->count
        &&  self->heap [child + 1]->due_ns < self->heap [child]->due_ns)
            child++;
        if (t->due_ns <= self->heap [child]->due_ns)
            break;
        s_heap_set (self, i, self->heap [child]);
        i = child;
    }
    s_heap_set (self, i, t);
}

static int
s_heap_push (tr__timers_t *self, s_timer_t *t)
{
    if (self->count == self->alloc) {
        size_t alloc = self->alloc? 2 * self->alloc: 64;
        s_timer_t **heap = (s_timer_t **) realloc (self->heap, alloc * sizeof *heap);
        if (!heap)
            return TR_ENOMEM;
        self->heap = heap;
        self->alloc = alloc;
    }
    s_heap_set (self, self->count++, t);
    s_sift_up (self, self->count - 1);
    return TR_OK;
}

static void
s_heap_remove (tr__timers_t *self, s_timer_t *t)
{
    size_t i = t->index;
    s_timer_t *last = self->heap [--self->count];
    if (i < self->count) {
        s_heap_set (self, i, last);
        s_sift_up (self, i);
        s_sift_down (self, last->index);
    }
}

//  --------------------------------------------------------------------------
//  Id index: zhashx with the 64-bit id itself as the key

static size_t
s_id_hash (const void *key)
{
    uint64_t x = (uint64_t) (uintptr_t) key;
    x ^= x >> 33;
    x *= UINT64_C (0xff51afd7ed558ccd);
    x ^= x >> 33;
    return (size_t) x;
}

static int
s_id_compare (const void *a, const void *b)
{
    return a == b? 0: (uintptr_t) a < (uintptr_t) b? -1: 1;
}

#define S_KEY(id) ((void *) (uintptr_t) (id))

//  Unlinks and frees a timer (lock held).
static void
s_drop (tr__timers_t *self, s_timer_t *t)
{
    s_heap_remove (self, t);
    zhashx_delete (self->by_id, S_KEY (t->id));
    free (t->to);
    free (t);
}

//  --------------------------------------------------------------------------
//  The service thread

//  Cancels timer `id`; returns TR_OK or TR_ENOTFOUND. Takes the lock.
//  (The service thread cancels through here, never through node->timers,
//  which tr__timers_stop clears while the thread may still run.)
static int
s_cancel (tr__timers_t *self, uint64_t id)
{
    if (id == 0)                        //  ids start at 1
        return TR_ENOTFOUND;
    pthread_mutex_lock (&self->lock);
    s_timer_t *t = (s_timer_t *) zhashx_lookup (self->by_id, S_KEY (id));
    if (t)
        s_drop (self, t);
    pthread_mutex_unlock (&self->lock);
    return t? TR_OK: TR_ENOTFOUND;
}

typedef struct {
    tr_msg_t *msg;
    uint64_t id;                        //  periodic timers only, else 0
} s_firing_t;

//  Takes the due timers off the heap (lock held), builds their messages,
//  and reschedules the periodic ones. Returns the number of firings.
static size_t
s_collect (tr__timers_t *self, int64_t now, s_firing_t *out)
{
    size_t n = 0;
    while (n < S_BATCH && self->count && self->heap [0]->due_ns <= now) {
        s_timer_t *t = self->heap [0];
        tr_msg_t *msg = tr__msg_new (self->node, TR_KIND_TELL, TR_PRIO_NORMAL,
                                     t->to, "", t->size? t->body: NULL, t->size);
        if (msg) {
            msg->id = tr__mbox_next_id (self->mbox);
            out [n].msg = msg;
            out [n++].id = t->period_ns? t->id: 0;
        }
        else
            tr_log (TR_LOG_ERROR, "timer %llu: out of memory, tick lost",
                    (unsigned long long) t->id);
        if (t->period_ns) {
            //  Skip missed periods instead of sending them in a burst.
            t->due_ns += t->period_ns;
            if (t->due_ns <= now)
                t->due_ns = now + t->period_ns - (now - t->due_ns) % t->period_ns;
            s_sift_down (self, 0);
        }
        else
            s_drop (self, t);
    }
    return n;
}

//  Sends one firing (lock not held). Returns false if a periodic timer's
//  target has gone and the timer should be cancelled.
static bool
s_send (tr__timers_t *self, s_firing_t *f)
{
    tr__mbox_t *dst = tr__node_lookup (self->node, f->msg->to, false);
    int rc = dst? tr__mbox_post (self->mbox, dst, f->msg, -1): TR_ENOACTOR;
    tr__mbox_unref (&dst);
    if (rc == TR_OK)
        return true;
    tr__node_dead_letter (self->node, f->msg, rc);
    if (rc == TR_ENOACTOR && f->id && !atomic_load (&self->node->closing))
        tr_log (TR_LOG_WARN, "timer %llu: no actor '%s' any more; cancelled",
                (unsigned long long) f->id, f->msg->to);
    tr__msg_free (f->msg);
    return rc != TR_ENOACTOR;
}

static void *
s_main (void *arg)
{
    tr__timers_t *self = (tr__timers_t *) arg;
    tr__ctx_bind (self->mbox, NULL);
    s_firing_t batch [S_BATCH];
    pthread_mutex_lock (&self->lock);
    while (!self->stop) {
        int64_t now = tr__now_ns ();
        if (!self->count) {
            self->sleeping_until = INT64_MAX;
            pthread_cond_wait (&self->wake, &self->lock);
            self->sleeping_until = 0;
        }
        else
        if (self->heap [0]->due_ns > now) {
            self->sleeping_until = self->heap [0]->due_ns;
            struct timespec at = tr__timespec_at (self->heap [0]->due_ns, CLOCK_MONOTONIC);
            pthread_cond_timedwait (&self->wake, &self->lock, &at);
            self->sleeping_until = 0;
        }
        else {
            size_t n = s_collect (self, now, batch);
            pthread_mutex_unlock (&self->lock);
            for (size_t i = 0; i < n; i++)
                if (!s_send (self, &batch [i]) && batch [i].id)
                    s_cancel (self, batch [i].id);
            pthread_mutex_lock (&self->lock);
        }
    }
    pthread_mutex_unlock (&self->lock);
    tr__ctx_bind (NULL, NULL);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Start and stop

int
tr__timers_start (tr_node_t *node, tr__timers_t **timers_p)
{
    tr__timers_t *self = (tr__timers_t *) calloc (1, sizeof *self);
    if (!self)
        return TR_ENOMEM;
    self->node = node;
    self->by_id = zhashx_new ();
    if (!self->by_id) {
        free (self);
        return TR_ENOMEM;
    }
    zhashx_set_key_hasher (self->by_id, s_id_hash);
    zhashx_set_key_comparator (self->by_id, s_id_compare);
    zhashx_set_key_duplicator (self->by_id, NULL);
    zhashx_set_key_destructor (self->by_id, NULL);
    pthread_mutex_init (&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->wake, &attr);
    pthread_condattr_destroy (&attr);
    int rc = tr__mbox_new (node, NULL, SIZE_MAX, TR_FULL_FAIL, &self->mbox);
    if (rc == TR_OK && pthread_create (&self->thread, NULL, s_main, self)) {
        tr__mbox_close (self->mbox, TR_ECLOSED);
        tr__mbox_unref (&self->mbox);
        rc = TR_ESYS;
    }
    if (rc) {
        pthread_cond_destroy (&self->wake);
        pthread_mutex_destroy (&self->lock);
        zhashx_destroy (&self->by_id);
        free (self);
        return rc;
    }
    *timers_p = self;
    return TR_OK;
}

void
tr__timers_stop (tr__timers_t **timers_p)
{
    tr__timers_t *self = *timers_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    self->stop = true;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
    pthread_join (self->thread, NULL);
    *timers_p = NULL;
    while (self->count)
        s_drop (self, self->heap [0]);
    tr__mbox_close (self->mbox, TR_ECLOSED);
    tr__mbox_unref (&self->mbox);
    free (self->heap);
    zhashx_destroy (&self->by_id);
    pthread_cond_destroy (&self->wake);
    pthread_mutex_destroy (&self->lock);
    free (self);
}

//  --------------------------------------------------------------------------
//  Public API

static int
s_add (tr_node_t *node, const char *to, int64_t delay_ms, int64_t period_ms,
       const void *body, size_t size, uint64_t *id_p)
{
    if (!node || !to || delay_ms < 0 || tr_name_check (to, strlen (to)))
        return TR_EINVAL;
    assert (node->tag == TR__NODE_TAG);
    int rc = tr__check_body (body, size);
    if (rc)
        return rc;
    tr__timers_t *self = node->timers;
    if (!self || atomic_load (&node->closing))
        return TR_ECLOSED;
    s_timer_t *t = (s_timer_t *) malloc (sizeof *t + size);
    if (!t || !(t->to = strdup (to))) {
        free (t);
        return TR_ENOMEM;
    }
    t->size = size;
    if (size)
        memcpy (t->body, body, size);
    t->period_ns = period_ms * 1000000;
    t->due_ns = tr__now_ns () + delay_ms * 1000000;
    pthread_mutex_lock (&self->lock);
    t->id = ++self->next_id;
    rc = s_heap_push (self, t);
    if (rc == TR_OK && zhashx_insert (self->by_id, S_KEY (t->id), t)) {
        s_heap_remove (self, t);
        rc = TR_ENOMEM;
    }
    if (rc == TR_OK && t->index == 0 && t->due_ns < self->sleeping_until)
        pthread_cond_signal (&self->wake);     //  due before the thread wakes
    if (rc == TR_OK && id_p)
        *id_p = t->id;
    pthread_mutex_unlock (&self->lock);
    if (rc) {
        free (t->to);
        free (t);
    }
    return rc;
}

int
tr_timer_after (tr_node_t *node, const char *to, int delay_ms,
                const void *body, size_t size, uint64_t *id_p)
{
    return s_add (node, to, delay_ms, 0, body, size, id_p);
}

int
tr_timer_every (tr_node_t *node, const char *to, int period_ms,
                const void *body, size_t size, uint64_t *id_p)
{
    if (period_ms <= 0)
        return TR_EINVAL;
    return s_add (node, to, period_ms, period_ms, body, size, id_p);
}

int
tr_timer_cancel (tr_node_t *node, uint64_t id)
{
    if (!node)
        return TR_EINVAL;
    tr__timers_t *self = node->timers;
    return self? s_cancel (self, id): TR_ENOTFOUND;
}
