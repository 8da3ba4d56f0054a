/*  tr_breaker.c - circuit breakers; see tr_breaker.h.  */

#include "tr_breaker.h"
#include "tr_clock.h"
#include "tr_event_int.h"
#include "troupe/tr_log.h"

#include <stdio.h>
#include <string.h>

void
tr__breaker_init (tr__breaker_t *self, tr_node_t *node, const char *name)
{
    memset (self, 0, sizeof *self);
    pthread_mutex_init (&self->lock, NULL);
    self->node = node;
    self->name = name? name: "";
}

void
tr__breaker_configure (tr__breaker_t *self, int failures, int64_t reset_ms,
                       int trials, double factor, int64_t max_reset_ms,
                       const char *fallback)
{
    pthread_mutex_lock (&self->lock);
    self->failures = failures > 0? failures: 1;
    self->trials = trials > 0? trials: 1;
    self->factor = factor >= 1.0? factor: 1.0;
    self->base_reset_ns = reset_ms * 1000000;
    self->max_reset_ns = (max_reset_ms > reset_ms? max_reset_ms: reset_ms) * 1000000;
    self->reset_ns = self->base_reset_ns;
    snprintf (self->fallback, sizeof self->fallback, "%s", fallback? fallback: "");
    atomic_store (&self->consecutive, 0);
    atomic_store (&self->state, TR__BREAKER_CLOSED);
    pthread_mutex_unlock (&self->lock);
}

void
tr__breaker_destroy (tr__breaker_t *self)
{
    pthread_mutex_destroy (&self->lock);
}

//  Logs and publishes a change of state (lock held).
static void
s_announce (tr__breaker_t *self, const char *topic)
{
    tr__ev_t ev;
    int state = atomic_load (&self->state);
    if (state == TR__BREAKER_OPEN) {
        tr_log (TR_LOG_WARN, "breaker of '%s' opened after %d failure(s); half-open in %lld ms",
                self->name, atomic_load (&self->consecutive),
                (long long) (self->reset_ns / 1000000));
        if (tr__ev_begin (&ev, self->node, topic, 3)) {
            tr__ev_str (&ev, "name", self->name);
            tr__ev_int (&ev, "failures", atomic_load (&self->consecutive));
            tr__ev_int (&ev, "reset_ms", self->reset_ns / 1000000);
            tr__ev_emit (&ev);
        }
        return;
    }
    tr_log (TR_LOG_INFO, "breaker of '%s' %s", self->name,
            state == TR__BREAKER_CLOSED? "closed": "half-open");
    if (tr__ev_begin (&ev, self->node, topic, 1)) {
        tr__ev_str (&ev, "name", self->name);
        tr__ev_emit (&ev);
    }
}

//  Opens the breaker for the current reset timeout (lock held).
static void
s_open (tr__breaker_t *self)
{
    atomic_store (&self->open_until_ns, tr__now_ns () + self->reset_ns);
    atomic_store (&self->state, TR__BREAKER_OPEN);
    atomic_fetch_add (&self->opened, 1);
    s_announce (self, "sys.breaker.opened");
}

bool
tr__breaker_admit (tr__breaker_t *self)
{
    int state = atomic_load_explicit (&self->state, memory_order_acquire);
    if (state <= TR__BREAKER_CLOSED)
        return true;
    if (state == TR__BREAKER_OPEN) {
        if (tr__now_ns () < atomic_load (&self->open_until_ns))
            return false;
        pthread_mutex_lock (&self->lock);
        if (atomic_load (&self->state) == TR__BREAKER_OPEN
        &&  tr__now_ns () >= atomic_load (&self->open_until_ns)) {
            atomic_store (&self->trials_left, self->trials);
            atomic_store (&self->state, TR__BREAKER_HALF_OPEN);
            s_announce (self, "sys.breaker.half_open");
        }
        pthread_mutex_unlock (&self->lock);
        state = atomic_load (&self->state);
        if (state == TR__BREAKER_CLOSED)
            return true;
        if (state != TR__BREAKER_HALF_OPEN)
            return false;
    }
    //  Half-open: the first `trials` senders pass.
    if (atomic_fetch_sub (&self->trials_left, 1) > 0)
        return true;
    atomic_fetch_add (&self->trials_left, 1);
    return false;
}

void
tr__breaker_record (tr__breaker_t *self, bool ok)
{
    int state = atomic_load_explicit (&self->state, memory_order_acquire);
    if (state == TR__BREAKER_OFF)
        return;
    if (ok && state == TR__BREAKER_CLOSED
    &&  atomic_load_explicit (&self->consecutive, memory_order_relaxed) == 0)
        return;                         //  the common case: nothing to do
    pthread_mutex_lock (&self->lock);
    state = atomic_load (&self->state);
    if (ok) {
        atomic_store (&self->consecutive, 0);
        if (state == TR__BREAKER_HALF_OPEN) {
            self->reset_ns = self->base_reset_ns;
            atomic_store (&self->state, TR__BREAKER_CLOSED);
            s_announce (self, "sys.breaker.closed");
        }
    }
    else {
        int failures = atomic_fetch_add (&self->consecutive, 1) + 1;
        if (state == TR__BREAKER_HALF_OPEN) {
            int64_t grown = (int64_t) ((double) self->reset_ns * self->factor);
            self->reset_ns = grown < self->max_reset_ns? grown: self->max_reset_ns;
            s_open (self);
        }
        else
        if (state == TR__BREAKER_CLOSED && failures >= self->failures)
            s_open (self);
    }
    pthread_mutex_unlock (&self->lock);
}

void
tr__breaker_reset (tr__breaker_t *self)
{
    pthread_mutex_lock (&self->lock);
    if (atomic_load (&self->state) != TR__BREAKER_OFF) {
        bool was_closed = atomic_load (&self->state) == TR__BREAKER_CLOSED;
        atomic_store (&self->consecutive, 0);
        self->reset_ns = self->base_reset_ns;
        atomic_store (&self->state, TR__BREAKER_CLOSED);
        if (!was_closed)
            s_announce (self, "sys.breaker.closed");
    }
    pthread_mutex_unlock (&self->lock);
}

const char *
tr__breaker_state_name (const tr__breaker_t *self)
{
    static const char *names [] = { "off", "closed", "open", "half-open" };
    int state = atomic_load (&((tr__breaker_t *) self)->state);
    return state >= 0 && state <= 3? names [state]: "?";
}

int64_t
tr__breaker_open_left_ms (const tr__breaker_t *self)
{
    tr__breaker_t *b = (tr__breaker_t *) self;
    if (atomic_load (&b->state) != TR__BREAKER_OPEN)
        return 0;
    int64_t left = atomic_load (&b->open_until_ns) - tr__now_ns ();
    return left > 0? left / 1000000: 0;
}
