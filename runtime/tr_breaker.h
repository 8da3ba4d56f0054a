/*  tr_breaker.h - a child's circuit breaker (internal).

    Each mailbox embeds one; it is off unless its supervisor turns it on
    (tree files turn it on by default). Senders consult it on the send
    path (tr__breaker_admit: one atomic load while it is closed); the
    actor's thread, and the supervisor's watchdog for handling timeouts,
    report outcomes (tr__breaker_record). States:

      closed     messages pass; `failures` consecutive failures open it
      open       messages fail at once with TR_ECIRCUIT (or go to the
                 fallback actor) until the reset timeout has passed
      half-open  the first `trials` messages pass; a success closes the
                 breaker, a failure opens it again with the reset timeout
                 multiplied by `factor`, up to a maximum

    Every change of state is logged and published as an event
    (sys.breaker.opened, .half_open, .closed).
*/
#ifndef TR_BREAKER_H_INCLUDED
#define TR_BREAKER_H_INCLUDED

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct tr_node tr_node_t;

typedef enum {
    TR__BREAKER_OFF = 0,
    TR__BREAKER_CLOSED,
    TR__BREAKER_OPEN,
    TR__BREAKER_HALF_OPEN
} tr__breaker_state_t;

typedef struct {
    atomic_int state;                   //  tr__breaker_state_t
    atomic_int_fast64_t open_until_ns;  //  monotonic
    atomic_int trials_left;             //  half-open admissions
    atomic_int consecutive;             //  failures in a row
    atomic_uint_fast64_t opened;        //  times it opened
    pthread_mutex_t lock;               //  serialises transitions
    //  Configuration, set before the actor starts.
    tr_node_t *node;
    const char *name;                   //  the child's (for logs, events)
    int failures;
    int trials;
    int64_t base_reset_ns;
    int64_t max_reset_ns;
    double factor;
    int64_t reset_ns;                   //  current reset timeout
    char fallback [256];                //  actor to redirect to, or ""
} tr__breaker_t;

//  Prepares a breaker (off). Call once, before use.
void
    tr__breaker_init (tr__breaker_t *self, tr_node_t *node, const char *name);

//  Turns it on (closed) with the given settings; fallback may be NULL.
void
    tr__breaker_configure (tr__breaker_t *self, int failures, int64_t reset_ms,
                           int trials, double factor, int64_t max_reset_ms,
                           const char *fallback);

//  Frees what init allocated.
void
    tr__breaker_destroy (tr__breaker_t *self);

//  Sender side: may a message pass? Returns true to let it through.
//  Moves an open breaker whose timeout has passed to half-open.
bool
    tr__breaker_admit (tr__breaker_t *self);

//  The outcome of one handled message (or of a handling timeout).
void
    tr__breaker_record (tr__breaker_t *self, bool ok);

//  Closes the breaker and clears its count (manual reset). No effect on
//  a breaker that is off.
void
    tr__breaker_reset (tr__breaker_t *self);

//  Its state, for status: "off", "closed", "open", "half-open".
const char *
    tr__breaker_state_name (const tr__breaker_t *self);

//  Milliseconds until an open breaker turns half-open (0 otherwise).
int64_t
    tr__breaker_open_left_ms (const tr__breaker_t *self);

#endif
