/*  tr_sup.c - supervisors; what they promise is in tr_sup.h.

    A supervisor is an actor whose behaviour is in this file: its init
    starts its children, its handler reacts to their ends (and to timers
    and requests), its terminate stops them. Each child has a record
    (tr__child_t); a nested supervisor is a child whose actor runs this
    same behaviour, and a root supervisor is a child record owned by a
    tr_sup_t handle instead of by a supervisor.

    An actor child keeps one thread for all its incarnations. When an
    incarnation ends, its thread reports (tr__child_ended: a runtime
    message to the supervisor, unless the supervisor asked for the stop)
    and parks, waiting for the supervisor's decision: start a new
    incarnation (init again, same thread, same mailbox) or end. The
    handshake goes through the tree's lock and condition variable, which
    every supervisor of one root shares; they also guard what status
    reads. Everything else a supervisor does happens on its own thread,
    one message at a time, so the strategies below need no more locking.

    Stale reports are expected and ignored: a child's record counts its
    incarnations, and a report from an earlier one, or about a child the
    supervisor is already stopping or restarting, changes nothing.
*/

#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mbox.h"
#include "tr_mp.h"
#include "tr_proc.h"
#include "tr_event_int.h"
#include "troupe/tr_sup.h"
#include "troupe/tr_timer.h"
#include "troupe/tr_body.h"
#include "troupe/tr_envelope.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TR__SUP_TAG     0x74727370u     /* "trsp" */

//  How long a control request may wait for its supervisor.
#define S_CONTROL_TIMEOUT_MS    60000

//  The supervisor's view of a child.
enum {
    C_STOPPED,                  //  not running, and not to be restarted
    C_RUNNING,
    C_RESTARTING,               //  ended; a restart is planned
    C_ENDED,                    //  ended; being dealt with
    C_ABANDONED                 //  would not stop in time
};

//  The handshake with an actor child's thread (under the tree lock).
enum { P_NONE, P_STARTING, P_INITED, P_RUNNING, P_PARKED };
enum { D_NONE, D_RESTART, D_END };

typedef struct {
    tr_node_t *node;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int abandoned;              //  children given up on while stopping
} s_tree_t;

typedef struct s_sup s_sup_t;

struct tr__child {
    s_sup_t *sup;               //  its supervisor's state; NULL for a root
    tr_sup_t *root;             //  for a root: its handle
    s_tree_t *tree;
    tr_node_t *node;
    const tr_child_spec_t *spec;
    char *name;
    size_t index;               //  start order
    bool dynamic;               //  made from a template at run time
    int state;                  //  C_*
    bool held;                  //  stopped by hand: stays stopped
    bool hung;                  //  past its handling timeout
    tr_actor_t *actor;          //  actor, plugin and supervisor kinds
    tr__proc_t *proc;           //  process kind
    s_sup_t *nested;            //  supervisor kind: its live state
    uint64_t incarnation;
    int phase;                  //  P_* (tree lock)
    int decision;               //  D_* (tree lock)
    int init_rc;                //  (tree lock)
    int restarts;
    int64_t started_ns;
    int64_t delay_ms;           //  last backoff delay
    uint64_t due;               //  token of the planned restart
    char failure [200];         //  last failure's reason
    //  What status reads from other threads: written by the supervisor
    //  under the tree lock (with state, hung, restarts, started_ns and
    //  failure above), so a status never sees a half-made change.
    tr__mbox_t *mbox;           //  the running actor's mailbox, or NULL
    pid_t pid;                  //  the running process, or 0
};

struct s_sup {
    //  Held by the supervisor's thread whenever it runs (init, handler,
    //  terminate); a failing child that gets it with a trylock restarts
    //  itself on its own thread (s_fast_restart) instead of waking it.
    pthread_mutex_t busy;
    tr_node_t *node;
    s_tree_t *tree;
    tr__child_t *me;            //  the supervisor's own record
    const tr_sup_spec_t *spec;
    tr_actor_t *self;
    tr__child_t **children;
    size_t count;
    size_t alloc;
    int64_t *times;             //  recent restarts, a ring
    size_t ring;                //  its size: max_restarts + 1
    size_t next;
    uint64_t next_due;
    uint64_t watch_timer;
};

struct tr_sup {
    uint32_t tag;
    tr_node_t *node;
    s_tree_t tree;
    tr__child_t *root;
    bool ended;                 //  the root ended by itself (tree lock)
    int end_rc;
    char *end_reason;
};

//  A child's end, reported to its supervisor.
typedef struct {
    tr__child_t *child;
    uint64_t incarnation;
    int reason;
    char text [TR__EXIT_TEXT];
} s_note_t;

static const tr_behaviour_t s_sup_behaviour;
struct s_sup;
static int s_sup_handle_locked (tr_actor_t *self, const tr_msg_t *msg, struct s_sup *st);

static const char *s_kind_names [] = { "actor", "plugin", "process", "supervisor" };
static const char *s_strategy_names [] = {
    "one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"
};

//  --------------------------------------------------------------------------
//  Small helpers

static void
s_lock (s_tree_t *tree)
{
    pthread_mutex_lock (&tree->lock);
}

static void
s_unlock (s_tree_t *tree)
{
    pthread_mutex_unlock (&tree->lock);
}

static void
s_signal (s_tree_t *tree)
{
    pthread_cond_broadcast (&tree->cond);
}

//  Sets a child's state where status can see it.
static void
s_set_state (tr__child_t *c, int state)
{
    s_lock (c->tree);
    c->state = state;
    s_unlock (c->tree);
}

//  Records a failure's reason where status can see it.
static void
s_set_failure (tr__child_t *c, const char *text)
{
    s_lock (c->tree);
    snprintf (c->failure, sizeof c->failure, "%s", text);
    s_unlock (c->tree);
}

//  A new incarnation runs: state, time and view, under the lock.
static void
s_set_running (tr__child_t *c)
{
    s_lock (c->tree);
    c->hung = false;
    c->state = C_RUNNING;
    c->started_ns = tr__now_ns ();
    c->mbox = c->actor? c->actor->mbox: NULL;
    c->pid = c->proc? tr__proc_pid (c->proc): 0;
    s_unlock (c->tree);
}

//  Forgets an ended process (status stops showing its pid) and frees it.
static void
s_proc_forget (tr__child_t *c)
{
    s_lock (c->tree);
    c->pid = 0;
    s_unlock (c->tree);
    tr__proc_destroy (&c->proc);
}

//  Waits on the tree's condition variable until deadline_ns (lock held).
//  Returns false once the deadline has passed.
static bool
s_wait (s_tree_t *tree, int64_t deadline_ns)
{
    if (deadline_ns != TR__FOREVER && tr__now_ns () >= deadline_ns)
        return false;
    //  An actor thread waiting here is asleep, as in its mailbox: the
    //  others may spin (tr_mbox.c counts who is awake against the cores).
    atomic_int *sleepers = tr_self ()? &tree->node->sleepers: NULL;
    if (sleepers)
        atomic_fetch_add_explicit (sleepers, 1, memory_order_relaxed);
    if (deadline_ns == TR__FOREVER)
        pthread_cond_wait (&tree->cond, &tree->lock);
    else {
        struct timespec at = tr__timespec_at (deadline_ns, CLOCK_MONOTONIC);
        pthread_cond_timedwait (&tree->cond, &tree->lock, &at);
    }
    if (sleepers)
        atomic_fetch_sub_explicit (sleepers, 1, memory_order_relaxed);
    return true;
}

static bool
s_is_actor (const tr__child_t *c)
{
    return c->spec->kind != TR_CHILD_PROCESS;
}

//  A supervisor child gets as long as its own children need: no limit.
static int64_t
s_stop_deadline (const tr__child_t *c)
{
    if (c->spec->kind == TR_CHILD_SUPERVISOR)
        return TR__FOREVER;
    return tr__deadline_after_ms (c->spec->shutdown_ms);
}

//  Packs a small request or timer body [op] or [op, name] or [op, n].
static tr_body_t
s_request (const char *op, const char *name, uint64_t number)
{
    tr_body_t body = { .size = 0 };
    msgpack_packer pk;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, name || number? 2: 1);
    msgpack_pack_str_with_body (&pk, op, strlen (op));
    if (name)
        msgpack_pack_str_with_body (&pk, name, strlen (name));
    else
    if (number)
        msgpack_pack_uint64 (&pk, number);
    if (sb.size <= sizeof body.data) {
        memcpy (body.data, sb.data, sb.size);
        body.size = sb.size;
    }
    msgpack_sbuffer_destroy (&sb);
    return body;
}

static void
s_emit (tr_node_t *node, const char *topic, const char *name, const char *reason)
{
    tr__ev_t ev;
    if (tr__ev_begin (&ev, node, topic, reason? 2: 1)) {
        tr__ev_str (&ev, "name", name);
        if (reason)
            tr__ev_str (&ev, "reason", reason);
        tr__ev_emit (&ev);
    }
}

//  --------------------------------------------------------------------------
//  Child records

static tr__child_t *
s_child_new (s_sup_t *sup, tr_sup_t *root, s_tree_t *tree, tr_node_t *node,
             const tr_child_spec_t *spec, const char *name, bool dynamic)
{
    tr__child_t *c = (tr__child_t *) calloc (1, sizeof *c);
    if (!c || !(c->name = strdup (name))) {
        free (c);
        return NULL;
    }
    c->sup = sup;
    c->root = root;
    c->tree = tree;
    c->node = node;
    c->spec = spec;
    c->dynamic = dynamic;
    c->state = C_STOPPED;
    return c;
}

//  Registers the record under its name (the node's supervised names).
static int
s_child_register (tr__child_t *c)
{
    tr_node_t *node = c->node;
    int rc = TR_OK;
    pthread_rwlock_wrlock (&node->lock);
    if (zhashx_lookup (node->children, c->name))
        rc = TR_EEXIST;
    else
        zhashx_insert (node->children, c->name, c);
    pthread_rwlock_unlock (&node->lock);
    return rc;
}

static void
s_child_destroy (tr__child_t **c_p)
{
    tr__child_t *c = *c_p;
    if (!c)
        return;
    *c_p = NULL;
    tr_node_t *node = c->node;
    pthread_rwlock_wrlock (&node->lock);
    if (zhashx_lookup (node->children, c->name) == c)
        zhashx_delete (node->children, c->name);
    pthread_rwlock_unlock (&node->lock);
    free (c->name);
    free (c);
}

//  Sets up the breaker of an actor child's mailbox from its spec.
static void
s_configure_breaker (tr__child_t *c)
{
    const tr_breaker_spec_t *b = &c->spec->breaker;
    if (c->actor && b->enabled)
        tr__breaker_configure (&c->actor->mbox->breaker, b->failures, b->reset_timeout_ms,
                               b->half_open_trials, b->factor, b->max_reset_timeout_ms,
                               b->fallback);
}

//  --------------------------------------------------------------------------
//  Starting, restarting and stopping one child

static void s_proc_exited (tr__proc_t *proc, const tr__proc_exit_t *exit, void *arg);

//  Ends a parked actor thread and frees the actor (tree lock not held).
static void
s_end_thread (tr__child_t *c)
{
    s_lock (c->tree);
    c->decision = D_END;
    c->mbox = NULL;
    s_signal (c->tree);
    s_unlock (c->tree);
    tr__actor_reap (c->actor, TR__FOREVER);
    c->actor = NULL;
}

static int
s_start_process (tr__child_t *c, char *why, size_t size)
{
    tr__proc_spec_t ps = {
        .name = c->name, .argv = c->spec->argv, .env = c->spec->env, .cwd = c->spec->cwd
    };
    int rc = tr__proc_start (c->node, &ps, s_proc_exited, c, &c->proc);
    if (rc)
        snprintf (why, size, "cannot start '%s': %s", ps.argv [0], tr_strerror (rc));
    return rc;
}

static int
s_start_actor (tr__child_t *c, char *why, size_t size)
{
    tr_behaviour_t b;
    void *arg;
    if (c->spec->kind == TR_CHILD_SUPERVISOR) {
        b = s_sup_behaviour;
        arg = c;
    }
    else {
        b = c->spec->type->behaviour;
        arg = (void *) &c->spec->params;
    }
    tr_spawn_opts_t opts = { .capacity = c->spec->capacity, .on_full = c->spec->on_full };
    s_lock (c->tree);
    c->phase = P_STARTING;
    s_unlock (c->tree);
    c->actor = NULL;
    int rc = tr__actor_spawn (c->node, c->name, &b, arg, &opts, c, &c->actor);
    if (rc == TR_OK) {
        s_lock (c->tree);
        c->phase = P_RUNNING;
        s_unlock (c->tree);
        s_configure_breaker (c);
        return TR_OK;
    }
    if (c->actor) {                     //  init failed; the thread waits
        snprintf (why, size, "%s", c->actor->exit_text);
        s_end_thread (c);
        return TR_ECHILD;
    }
    snprintf (why, size, "cannot spawn it: %s", tr_strerror (rc));
    return rc;
}

//  Starts a child that has no thread or process now. On failure `why`
//  says what went wrong.
static int
s_start (tr__child_t *c, char *why, size_t size)
{
    s_lock (c->tree);
    c->incarnation++;
    s_unlock (c->tree);
    int rc = s_is_actor (c)? s_start_actor (c, why, size): s_start_process (c, why, size);
    if (rc)
        return rc;
    s_set_running (c);
    s_emit (c->node, "sys.actor.started", c->name, NULL);
    return TR_OK;
}

//  Starts a new incarnation on a parked actor thread: init again, same
//  mailbox. On failure the thread is parked again.
static int
s_restart_parked (tr__child_t *c, char *why, size_t size)
{
    s_lock (c->tree);
    while (c->phase != P_PARKED)
        s_wait (c->tree, TR__FOREVER);
    c->incarnation++;
    c->decision = D_RESTART;
    c->phase = P_STARTING;
    s_signal (c->tree);
    while (c->phase == P_STARTING)
        s_wait (c->tree, TR__FOREVER);
    int rc = c->init_rc;
    s_unlock (c->tree);
    if (rc) {
        snprintf (why, size, "%s", c->actor->exit_text);
        return TR_ECHILD;
    }
    s_set_running (c);
    s_emit (c->node, "sys.actor.started", c->name, NULL);
    return TR_OK;
}

static int
s_restart (tr__child_t *c, char *why, size_t size)
{
    if (s_is_actor (c) && c->actor)
        return s_restart_parked (c, why, size);
    return s_start (c, why, size);
}

//  Stops an actor child's incarnation: asks it to stop, and waits for its
//  thread to park. With `final`, the thread then ends. An actor that does
//  not park within its shutdown time is abandoned. Returns TR_OK or
//  TR_ETIMEDOUT.
static int
s_stop_actor (tr__child_t *c, bool final)
{
    if (!c->actor)
        return TR_OK;
    int64_t deadline = s_stop_deadline (c);
    s_lock (c->tree);
    bool parked = c->phase == P_PARKED;
    s_unlock (c->tree);
    if (!parked)
        tr__actor_signal_stop (c->actor);
    s_lock (c->tree);
    while (c->phase != P_PARKED && s_wait (c->tree, deadline))
        ;
    parked = c->phase == P_PARKED;
    if (!parked) {
        int on = TR__LINK_ON;
        if (atomic_compare_exchange_strong (&c->actor->link, &on, TR__LINK_OFF)) {
            //  Cut loose: the thread will not touch this record again.
            c->tree->abandoned++;
            c->mbox = NULL;
        }
        else {
            //  Its handler has just returned and it is reporting: it parks
            //  at once.
            while (c->phase != P_PARKED)
                s_wait (c->tree, TR__FOREVER);
            parked = true;
        }
    }
    s_unlock (c->tree);
    if (!parked) {
        tr__actor_reap (c->actor, tr__now_ns ());   //  abandons it
        c->actor = NULL;
        s_set_state (c, C_ABANDONED);
        s_emit (c->node, "sys.actor.stopped", c->name, "abandoned: did not stop in time");
        return TR_ETIMEDOUT;
    }
    if (final)
        s_end_thread (c);
    return TR_OK;
}

static int
s_stop_process (tr__child_t *c)
{
    if (!c->proc)
        return TR_OK;
    int rc = tr__proc_stop (c->proc, c->spec->shutdown_ms);
    if (rc == TR_ETIMEDOUT) {
        s_lock (c->tree);
        c->tree->abandoned++;
        s_unlock (c->tree);
        tr_log (TR_LOG_WARN, "process '%s' did not stop within %lld ms; killed",
                c->name, (long long) c->spec->shutdown_ms);
    }
    s_proc_forget (c);
    return rc;
}

//  Stops a child (its thread parked, or for good with `final`).
static int
s_stop (tr__child_t *c, bool final)
{
    bool was_running = c->state == C_RUNNING;
    int rc = s_is_actor (c)? s_stop_actor (c, final): s_stop_process (c);
    if (c->state != C_ABANDONED)
        s_set_state (c, C_ENDED);
    if (was_running)
        s_emit (c->node, "sys.actor.stopped", c->name, rc? "killed": NULL);
    return rc;
}

//  After a child ended and will not be restarted: ends its thread, and
//  leaves it stopped.
static void
s_finish (tr__child_t *c)
{
    if (s_is_actor (c) && c->actor)
        s_end_thread (c);
    else
    if (c->proc)
        s_proc_forget (c);
    s_set_state (c, C_STOPPED);
}

//  --------------------------------------------------------------------------
//  Reports from children (on their own threads)

void
tr__child_started (tr__child_t *c, int rc)
{
    s_lock (c->tree);
    c->init_rc = rc;
    c->phase = rc? P_INITED: P_RUNNING;
    s_signal (c->tree);
    s_unlock (c->tree);
}

static bool s_fast_restart (tr__child_t *c, int reason, const char *text);

//  A root supervisor ended: record why, for tr_sup_wait (lock held).
static void
s_root_ended (tr__child_t *c, int reason, const char *text, bool requested)
{
    tr_sup_t *root = c->root;
    if (requested || root->ended)
        return;
    root->ended = true;
    root->end_rc = reason? reason: TR_OK;
    root->end_reason = strdup (text);
}

bool
tr__child_ended (tr__child_t *c, int reason, const char *text, bool requested)
{
    if (!requested && c->sup && s_fast_restart (c, reason, text))
        return true;
    s_lock (c->tree);
    c->phase = P_PARKED;
    uint64_t incarnation = c->incarnation;
    if (!c->sup)
        s_root_ended (c, reason, text, requested);
    s_signal (c->tree);
    s_unlock (c->tree);
    if (!c->sup)
        return false;                   //  a root never starts again
    if (!requested) {
        s_note_t note = { .child = c, .incarnation = incarnation, .reason = reason };
        snprintf (note.text, sizeof note.text, "%s", text);
        tr__post_raw (c->node, c->sup->self->mbox, TR__KIND_EXIT, &note, sizeof note);
    }
    s_lock (c->tree);
    while (c->decision == D_NONE)
        s_wait (c->tree, TR__FOREVER);
    int decision = c->decision;
    c->decision = D_NONE;
    s_unlock (c->tree);
    return decision == D_RESTART;
}

//  On the process service's thread: a process child has exited.
static void
s_proc_exited (tr__proc_t *proc, const tr__proc_exit_t *exit, void *arg)
{
    tr__child_t *c = (tr__child_t *) arg;
    s_lock (c->tree);
    uint64_t incarnation = c->incarnation;
    s_unlock (c->tree);
    s_note_t note = {
        .child = c, .incarnation = incarnation,
        .reason = exit->exited && exit->status == 0? TR_OK: TR_ECHILD
    };
    snprintf (note.text, sizeof note.text, "%s", exit->reason);
    tr__post_raw (c->node, c->sup->self->mbox, TR__KIND_EXIT, &note, sizeof note);
}

//  --------------------------------------------------------------------------
//  Policy: restart types, intensity, backoff, strategies

//  Records a restart now; true if that makes more than max_restarts
//  within the period.
static bool
s_too_many (s_sup_t *st)
{
    //  The ring keeps the last max_restarts + 1 restart times; times only
    //  grow, so there are too many within the period exactly when the
    //  oldest of them is within it. No walk: O(1) per restart.
    int64_t now = tr__now_ns ();
    st->times [st->next++ % st->ring] = now;
    if (st->next < st->ring)
        return false;
    int64_t oldest = st->times [st->next % st->ring];
    return now - oldest <= st->spec->period_ms * 1000000;
}

//  The next backoff delay of a child, in ms.
static int64_t
s_backoff (tr__child_t *c)
{
    const tr_backoff_t *b = &c->spec->backoff;
    int64_t now = tr__now_ns ();
    if (c->started_ns && now - c->started_ns >= b->reset_after_ms * 1000000)
        c->delay_ms = 0;                //  it ran long enough: start over
    int64_t delay = c->delay_ms? c->delay_ms * 2: b->min_ms;
    if (delay > b->max_ms)
        delay = b->max_ms;
    c->delay_ms = delay;
    if (b->jitter > 0 && delay > 0) {
        double spread = ((double) random () / RAND_MAX) * 2 - 1;
        delay += (int64_t) ((double) delay * b->jitter * spread);
    }
    //  max is a promise: jitter spreads delays below it, never above.
    if (delay > b->max_ms)
        delay = b->max_ms;
    return delay > 0? delay: 0;
}

static bool
s_owns (const s_sup_t *st, const tr__child_t *c)
{
    for (size_t i = 0; i < st->count; i++)
        if (st->children [i] == c)
            return true;
    return false;
}

static void s_due (s_sup_t *st, uint64_t token);
static void s_after_end (s_sup_t *st, tr__child_t *c, int reason, const char *text);
static void s_remove (s_sup_t *st, tr__child_t *c);

//  Plans the restart of every child marked with `token`, after `delay`.
static void
s_plan (s_sup_t *st, uint64_t token, int64_t delay)
{
    if (delay <= 0) {
        s_due (st, token);
        return;
    }
    tr_body_t body = s_request ("$due", NULL, token);
    if (tr_timer_after (st->node, st->me->name, (int) delay, body.data, body.size, NULL))
        s_due (st, token);              //  no timer: restart now rather than never
}

//  Marks a child for the restart `token`.
static void
s_mark (tr__child_t *c, uint64_t token)
{
    s_set_state (c, C_RESTARTING);
    c->due = token;
}

//  The strategy: which children restart with the one that ended.
static void
s_restart_with (s_sup_t *st, tr__child_t *c)
{
    uint64_t token = ++st->next_due;
    int strategy = st->spec->strategy;
    bool all = strategy == TR_ONE_FOR_ALL, rest = strategy == TR_REST_FOR_ONE;
    if (all || rest) {
        //  Stop the others concerned, newest first.
        for (size_t i = st->count; i-- > 0; ) {
            tr__child_t *o = st->children [i];
            if (o == c || (rest && o->index < c->index) || o->held)
                continue;
            if (o->state == C_RUNNING) {
                s_stop (o, false);
                if (o->state == C_ABANDONED)
                    s_set_state (o, C_ENDED);   //  started afresh with the others
            }
            if (o->state == C_ENDED || o->state == C_RESTARTING)
                s_mark (o, token);
        }
    }
    int64_t delay = s_backoff (c);
    s_mark (c, token);
    tr_log (TR_LOG_INFO, "supervisor '%s': restarting '%s'%s in %lld ms",
            st->me->name, c->name, all? " and its siblings":
            rest? " and the children after it": "", (long long) delay);
    s_plan (st, token, delay);
}

//  Gives up: the supervisor itself fails, to its own supervisor.
static void
s_give_up (s_sup_t *st, tr__child_t *c, const char *text)
{
    char chain [TR__EXIT_TEXT];
    snprintf (chain, sizeof chain,
              "supervisor '%s': restart intensity exceeded (more than %d restarts within %lld ms); "
              "'%s' ended: %s", st->me->name, st->spec->max_restarts,
              (long long) st->spec->period_ms, c->name, text);
    tr_log (TR_LOG_ERROR, "%s", chain);
    tr_actor_exit (st->self, TR_EINTENSITY, chain);
}

//  A child has ended (its thread parked, or its process gone): restart
//  it and maybe others, or leave it stopped, or give up.
static void
s_after_end (s_sup_t *st, tr__child_t *c, int reason, const char *text)
{
    bool abnormal = reason != TR_OK;
    s_set_state (c, C_ENDED);
    if (!s_is_actor (c) && c->proc) {
        //  The leader is gone; what it left in its group goes too, so
        //  that restarts do not pile up grandchildren.
        if (tr__proc_stop (c->proc, c->spec->shutdown_ms) == TR_ETIMEDOUT)
            tr_log (TR_LOG_WARN, "'%s': processes left in its group were killed", c->name);
        s_proc_forget (c);
    }
    if (abnormal)
        s_set_failure (c, text);
    tr_log (abnormal? TR_LOG_WARN: TR_LOG_INFO, "'%s' %s: %s", c->name,
            abnormal? "failed": "ended", text);
    s_emit (c->node, abnormal? "sys.actor.failed": "sys.actor.stopped", c->name, text);
    int restart = c->spec->restart;
    if (c->held || restart == TR_RESTART_TEMPORARY
    ||  (restart == TR_RESTART_TRANSIENT && !abnormal)) {
        s_finish (c);
        if (c->dynamic)
            s_remove (st, c);
        return;
    }
    if (s_too_many (st))
        s_give_up (st, c, text);
    else
        s_restart_with (st, c);
}

//  Restarts, in start order, every child marked with `token`.
static void
s_due (s_sup_t *st, uint64_t token)
{
    for (size_t i = 0; i < st->count; i++) {
        tr__child_t *c = st->children [i];
        if (c->state != C_RESTARTING || c->due != token)
            continue;
        c->due = 0;
        char why [TR__EXIT_TEXT];
        if (s_restart (c, why, sizeof why) == TR_OK) {
            s_lock (c->tree);
            c->restarts++;
            s_unlock (c->tree);
            tr__ev_t ev;
            if (tr__ev_begin (&ev, st->node, "sys.actor.restarted", 3)) {
                tr__ev_str (&ev, "name", c->name);
                tr__ev_int (&ev, "restarts", c->restarts);
                tr__ev_int (&ev, "delay_ms", c->delay_ms);
                tr__ev_emit (&ev);
            }
            continue;
        }
        //  It did not start: that is a failure of its own. The others
        //  still marked with this token go along with whatever it plans.
        s_after_end (st, c, TR_ECHILD, why);
        return;
    }
}

//  The next backoff delay would be zero (s_backoff, without its effects).
static bool
s_backoff_is_zero (const tr__child_t *c)
{
    const tr_backoff_t *b = &c->spec->backoff;
    int64_t now = tr__now_ns ();
    bool fresh = c->started_ns && now - c->started_ns >= b->reset_after_ms * 1000000;
    int64_t last = fresh? 0: c->delay_ms;
    int64_t delay = last? last * 2: b->min_ms;
    return delay == 0 || b->max_ms == 0;
}

//  One more restart now would exceed the intensity (s_too_many, without
//  recording it).
static bool
s_would_be_too_many (const s_sup_t *st)
{
    if (st->next + 1 < st->ring)
        return false;
    int64_t oldest = st->times [(st->next + 1) % st->ring];
    return tr__now_ns () - oldest <= st->spec->period_ms * 1000000;
}

//  On a failing actor child's own thread, as it reports its end: when
//  the supervisor is idle and the answer is plainly "restart this child
//  alone, now" (one_for_one or simple_one_for_one, its restart type says
//  so, no backoff delay, within intensity), does the supervisor's work
//  here, under its `busy` lock, and returns true: the thread goes on to
//  its next init without two wake-ups through the supervisor. Anything
//  else (a delay, giving up, other strategies, a busy supervisor) returns
//  false and takes the ordinary path through the supervisor's mailbox.
//  The outcome is the same either way: the same checks, records, logs
//  and events, in the same order.
static bool
s_fast_restart (tr__child_t *c, int reason, const char *text)
{
    s_sup_t *st = c->sup;
    int strategy = st->spec->strategy;
    int restart = c->spec->restart;
    bool abnormal = reason != TR_OK;
    if ((c->spec->kind != TR_CHILD_ACTOR && c->spec->kind != TR_CHILD_PLUGIN)
    ||  (strategy != TR_ONE_FOR_ONE && strategy != TR_SIMPLE_ONE_FOR_ONE)
    ||  restart == TR_RESTART_TEMPORARY || (restart == TR_RESTART_TRANSIENT && !abnormal)
    ||  pthread_mutex_trylock (&st->busy))
        return false;
    bool go = c->state == C_RUNNING && !c->held
           && s_backoff_is_zero (c) && !s_would_be_too_many (st);
    if (go) {
        //  As s_after_end, s_restart_with and s_due would.
        s_set_state (c, C_ENDED);
        if (abnormal)
            s_set_failure (c, text);
        tr_log (abnormal? TR_LOG_WARN: TR_LOG_INFO, "'%s' %s: %s", c->name,
                abnormal? "failed": "ended", text);
        s_emit (c->node, abnormal? "sys.actor.failed": "sys.actor.stopped", c->name, text);
        bool too_many = s_too_many (st);
        assert (!too_many);
        (void) too_many;
        int64_t delay = s_backoff (c);
        assert (delay == 0);
        (void) delay;
        tr_log (TR_LOG_INFO, "supervisor '%s': restarting '%s' in 0 ms", st->me->name, c->name);
        s_lock (c->tree);
        c->incarnation++;
        c->phase = P_STARTING;
        c->due = 0;
        c->restarts++;
        c->hung = false;
        c->state = C_RUNNING;
        c->started_ns = tr__now_ns ();
        s_unlock (c->tree);
        tr__ev_t ev;
        if (tr__ev_begin (&ev, st->node, "sys.actor.restarted", 3)) {
            tr__ev_str (&ev, "name", c->name);
            tr__ev_int (&ev, "restarts", c->restarts);
            tr__ev_int (&ev, "delay_ms", 0);
            tr__ev_emit (&ev);
        }
        s_emit (c->node, "sys.actor.started", c->name, NULL);
    }
    pthread_mutex_unlock (&st->busy);
    return go;
}

//  A report from a child: deal with it, unless it is stale.
static void
s_on_note (s_sup_t *st, const s_note_t *note)
{
    tr__child_t *c = note->child;
    if (!s_owns (st, c) || c->incarnation != note->incarnation || c->state != C_RUNNING)
        return;
    s_after_end (st, c, note->reason, note->text);
}

//  Looks for children past their handling timeout.
static void
s_watch (s_sup_t *st)
{
    int64_t now = tr__now_ns ();
    for (size_t i = 0; i < st->count; i++) {
        tr__child_t *c = st->children [i];
        int64_t limit = c->spec->handle_timeout_ms * 1000000;
        if (!limit || !c->actor || c->state != C_RUNNING)
            continue;
        int64_t since = atomic_load (&c->actor->handling_since);
        if (!since || now - since <= limit || atomic_load (&c->actor->hung))
            continue;
        atomic_store (&c->actor->hung, true);
        tr__breaker_record (&c->actor->mbox->breaker, false);
        s_lock (c->tree);
        c->hung = true;
        snprintf (c->failure, sizeof c->failure,
                  "handling a message has taken %lld ms (timeout %lld ms)",
                  (long long) ((now - since) / 1000000), (long long) c->spec->handle_timeout_ms);
        s_unlock (c->tree);
        tr_log (TR_LOG_WARN, "'%s' is hung: %s", c->name, c->failure);
        tr__ev_t ev;
        if (tr__ev_begin (&ev, st->node, "sys.actor.hung", 2)) {
            tr__ev_str (&ev, "name", c->name);
            tr__ev_int (&ev, "ms", (now - since) / 1000000);
            tr__ev_emit (&ev);
        }
    }
}

//  --------------------------------------------------------------------------
//  Requests: restart, stop, start, add

static tr__child_t *
s_find (s_sup_t *st, const char *name)
{
    for (size_t i = 0; i < st->count; i++)
        if (strcmp (st->children [i]->name, name) == 0)
            return st->children [i];
    return NULL;
}

//  Adds a record to the supervisor (start order = order of addition).
static tr__child_t *
s_add (s_sup_t *st, const tr_child_spec_t *spec, const char *name, bool dynamic, int *rc_p)
{
    *rc_p = TR_ENOMEM;
    if (st->count == st->alloc) {
        //  Status may be walking the array: move it under the lock.
        size_t alloc = st->alloc? 2 * st->alloc: 8;
        s_lock (st->tree);
        tr__child_t **children = (tr__child_t **) realloc (st->children, alloc * sizeof *children);
        if (children) {
            st->children = children;
            st->alloc = alloc;
        }
        s_unlock (st->tree);
        if (!children)
            return NULL;
    }
    tr__child_t *c = s_child_new (st, NULL, st->tree, st->node, spec, name, dynamic);
    if (!c)
        return NULL;
    if ((*rc_p = s_child_register (c))) {
        s_child_destroy (&c);
        return NULL;
    }
    c->index = st->count;
    s_lock (st->tree);
    st->children [st->count++] = c;
    s_unlock (st->tree);
    *rc_p = TR_OK;
    return c;
}

//  Removes a stopped record (dynamic children) from the supervisor.
static void
s_remove (s_sup_t *st, tr__child_t *c)
{
    s_lock (st->tree);
    size_t at = 0;
    while (at < st->count && st->children [at] != c)
        at++;
    memmove (st->children + at, st->children + at + 1,
             (st->count - at - 1) * sizeof *st->children);
    st->count--;
    s_unlock (st->tree);
    s_child_destroy (&c);
}

static int
s_request_restart (s_sup_t *st, tr__child_t *c)
{
    if (c->state == C_RUNNING)
        s_stop (c, false);
    if (c->state == C_ABANDONED)
        s_set_state (c, C_ENDED);
    c->held = false;
    c->due = 0;
    char why [TR__EXIT_TEXT];
    int rc = s_restart (c, why, sizeof why);
    if (rc) {
        tr_log (TR_LOG_WARN, "'%s' could not restart: %s", c->name, why);
        s_after_end (st, c, TR_ECHILD, why);
        return TR_ECHILD;
    }
    s_lock (c->tree);
    c->restarts++;
    s_unlock (c->tree);
    return TR_OK;
}

static int
s_request_start (s_sup_t *st, tr__child_t *c)
{
    if (c->state == C_RUNNING || c->state == C_RESTARTING)
        return TR_EEXIST;
    c->held = false;
    char why [TR__EXIT_TEXT];
    int rc = s_restart (c, why, sizeof why);
    if (rc)
        tr_log (TR_LOG_WARN, "'%s' could not start: %s", c->name, why);
    return rc? TR_ECHILD: TR_OK;
}

static int
s_request_add (s_sup_t *st, const char *name)
{
    if (st->spec->strategy != TR_SIMPLE_ONE_FOR_ONE || !st->spec->template_
    ||  tr_name_check (name, strlen (name)) || name [0] == '$')
        return TR_EINVAL;
    int rc;
    tr__child_t *c = s_add (st, st->spec->template_, name, true, &rc);
    if (!c)
        return rc;
    char why [TR__EXIT_TEXT];
    rc = s_start (c, why, sizeof why);
    if (rc) {
        tr_log (TR_LOG_WARN, "'%s' could not start: %s", name, why);
        s_remove (st, c);
        return rc == TR_EEXIST? rc: TR_ECHILD;
    }
    return TR_OK;
}

//  Carries out one request from tr_sup_*: [op, name].
static int
s_on_request (s_sup_t *st, const char *op, const char *name)
{
    if (strcmp (op, "add") == 0)
        return s_request_add (st, name);
    tr__child_t *c = s_find (st, name);
    if (!c)
        return TR_ENOTFOUND;
    if (strcmp (op, "restart") == 0)
        return s_request_restart (st, c);
    if (strcmp (op, "start") == 0)
        return s_request_start (st, c);
    if (strcmp (op, "stop") == 0) {
        c->held = true;
        if (c->state == C_RUNNING || c->state == C_ENDED)
            s_stop (c, true);
        if (c->state != C_ABANDONED)
            s_finish (c);
        if (c->dynamic)
            s_remove (st, c);
        return TR_OK;
    }
    return TR_EINVAL;
}

//  --------------------------------------------------------------------------
//  The supervisor's behaviour

//  Stops every child, newest first, for good.
static void
s_stop_all (s_sup_t *st)
{
    for (size_t i = st->count; i-- > 0; ) {
        tr__child_t *c = st->children [i];
        if (c->state == C_RUNNING)
            s_stop (c, true);
        if (c->state != C_ABANDONED)
            s_finish (c);
    }
}

static void
s_free_children (s_sup_t *st)
{
    s_lock (st->tree);
    size_t count = st->count;
    st->count = 0;
    s_unlock (st->tree);
    for (size_t i = 0; i < count; i++)
        s_child_destroy (&st->children [i]);
    free (st->children);
    st->children = NULL;
}

static void
s_sup_free (s_sup_t **st_p)
{
    s_sup_t *st = *st_p;
    *st_p = NULL;
    if (st->watch_timer)
        tr_timer_cancel (st->node, st->watch_timer);
    s_free_children (st);
    free (st->times);
    pthread_mutex_unlock (&st->busy);
    pthread_mutex_destroy (&st->busy);
    free (st);
}

//  Sets the watchdog's timer if any child has a handling timeout.
static void
s_arm_watchdog (s_sup_t *st)
{
    int64_t shortest = 0;
    const tr_sup_spec_t *spec = st->spec;
    for (size_t i = 0; i < spec->count; i++) {
        int64_t t = spec->children [i].handle_timeout_ms;
        if (t && (!shortest || t < shortest))
            shortest = t;
    }
    if (spec->template_ && spec->template_->handle_timeout_ms)
        shortest = spec->template_->handle_timeout_ms;
    if (!shortest)
        return;
    int64_t period = shortest / 4 > 5? shortest / 4: 5;
    tr_body_t body = s_request ("$watch", NULL, 0);
    tr_timer_every (st->node, st->me->name, (int) period, body.data, body.size, &st->watch_timer);
}

static int
s_sup_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__child_t *me = (tr__child_t *) arg;
    s_sup_t *st = (s_sup_t *) calloc (1, sizeof *st);
    if (!st)
        return TR_ENOMEM;
    pthread_mutex_init (&st->busy, NULL);
    pthread_mutex_lock (&st->busy);
    st->node = me->node;
    st->tree = me->tree;
    st->me = me;
    st->spec = me->spec->sup;
    st->self = self;
    st->ring = (size_t) st->spec->max_restarts + 1;
    st->times = (int64_t *) calloc (st->ring, sizeof *st->times);
    int rc = st->times? TR_OK: TR_ENOMEM;
    for (size_t i = 0; rc == TR_OK && i < st->spec->count; i++) {
        const tr_child_spec_t *spec = &st->spec->children [i];
        char why [TR__EXIT_TEXT];
        tr__child_t *c = s_add (st, spec, spec->name, false, &rc);
        if (!c)
            snprintf (why, sizeof why, "%s", tr_strerror (rc));
        else
            rc = s_start (c, why, sizeof why);
        if (rc)
            //  Bounded parts, so that the sentence always fits.
            snprintf (self->exit_text, sizeof self->exit_text,
                      "supervisor '%.100s': child '%.100s' could not start: %.700s",
                      me->name, spec->name, why);
    }
    if (rc) {
        s_stop_all (st);
        s_sup_free (&st);
        return TR_ECHILD;
    }
    s_arm_watchdog (st);
    s_lock (st->tree);
    me->nested = st;
    s_unlock (st->tree);
    *state_p = st;
    pthread_mutex_unlock (&st->busy);
    return TR_OK;
}

//  Replies to an ask with a result code (msgpack integer).
static void
s_reply_code (const tr_msg_t *msg, int rc)
{
    char buf [16];
    msgpack_sbuffer sb = { .size = 0, .data = buf, .alloc = sizeof buf };
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_int (&pk, rc);
    tr_reply (msg, sb.data, sb.size);
}

//  Reads a request body [op] / [op, name] / [op, uint]. Returns the
//  number of elements read (1 or 2), or 0 if the body is something else.
static int
s_parse (const tr_msg_t *msg, char *op, size_t op_size, char *name, size_t name_size,
         uint64_t *number)
{
    tr__mp_t r;
    uint32_t n, len;
    const char *s;
    tr__mp_init (&r, tr_msg_body (msg), tr_msg_size (msg));
    if (tr__mp_array (&r, &n) || n < 1 || n > 2 || tr__mp_str (&r, &s, &len)
    ||  len >= op_size)
        return 0;
    memcpy (op, s, len);
    op [len] = 0;
    if (n == 1)
        return 1;
    const uint8_t *at = r.p;
    if (tr__mp_str (&r, &s, &len) == 0 && len < name_size) {
        memcpy (name, s, len);
        name [len] = 0;
        return 2;
    }
    tr__mp_init (&r, at, (size_t) (r.end - at));
    return tr__mp_uint (&r, number) == 0? 2: 0;
}

static int
s_sup_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_sup_t *st = (s_sup_t *) state;
    pthread_mutex_lock (&st->busy);
    int rc = s_sup_handle_locked (self, msg, st);
    pthread_mutex_unlock (&st->busy);
    return rc;
}

static int
s_sup_handle_locked (tr_actor_t *self, const tr_msg_t *msg, s_sup_t *st)
{
    if (tr_msg_kind (msg) == TR__KIND_EXIT) {
        //  Bodies follow the names in the message: copy to align.
        s_note_t note;
        if (tr_msg_size (msg) == sizeof note) {
            memcpy (&note, tr_msg_body (msg), sizeof note);
            s_on_note (st, &note);
        }
        return 0;
    }
    char op [16], name [TR_NAME_MAX + 1] = "";
    uint64_t number = 0;
    int n = s_parse (msg, op, sizeof op, name, sizeof name, &number);
    int rc = TR_EINVAL;
    if (n && strcmp (op, "$due") == 0)
        s_due (st, number);
    else
    if (n && strcmp (op, "$watch") == 0)
        s_watch (st);
    else
    if (n == 2 && name [0])
        rc = s_on_request (st, op, name);
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        s_reply_code (msg, rc);
    return 0;
}

static void
s_sup_terminate (tr_actor_t *self, int reason, void *state)
{
    s_sup_t *st = (s_sup_t *) state;
    pthread_mutex_lock (&st->busy);
    s_lock (st->tree);
    st->me->nested = NULL;
    s_unlock (st->tree);
    s_stop_all (st);
    s_sup_free (&st);
}

static const tr_behaviour_t s_sup_behaviour = {
    .init = s_sup_init, .handle = s_sup_handle, .terminate = s_sup_terminate
};

//  --------------------------------------------------------------------------
//  Root supervisors

static void
s_root_free (tr_sup_t *self)
{
    s_child_destroy (&self->root);
    pthread_cond_destroy (&self->tree.cond);
    pthread_mutex_destroy (&self->tree.lock);
    free (self->end_reason);
    self->tag = TR__DEAD_TAG;
    free (self);
}

int
tr_sup_start (tr_node_t *node, const char *name, const tr_child_spec_t *spec,
              tr_sup_t **sup_p, char **reason_p)
{
    if (reason_p)
        *reason_p = NULL;
    if (!node || !name || !spec || !sup_p || spec->kind != TR_CHILD_SUPERVISOR || !spec->sup)
        return TR_EINVAL;
    tr_sup_t *self = (tr_sup_t *) calloc (1, sizeof *self);
    if (!self)
        return TR_ENOMEM;
    self->tag = TR__SUP_TAG;
    self->node = node;
    self->tree.node = node;
    pthread_mutex_init (&self->tree.lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->tree.cond, &attr);
    pthread_condattr_destroy (&attr);
    self->root = s_child_new (NULL, self, &self->tree, node, spec, name, false);
    int rc = self->root? s_child_register (self->root): TR_ENOMEM;
    char why [TR__EXIT_TEXT] = "";
    if (rc == TR_OK)
        rc = s_start (self->root, why, sizeof why);
    if (rc) {
        if (reason_p && why [0])
            *reason_p = strdup (why);
        if (why [0])
            tr_log (TR_LOG_ERROR, "tree '%s' could not start: %s", name, why);
        s_root_free (self);
        return rc;
    }
    pthread_rwlock_wrlock (&node->lock);
    zlistx_add_end (node->roots, self);
    pthread_rwlock_unlock (&node->lock);
    *sup_p = self;
    return TR_OK;
}

int
tr_sup_wait (tr_sup_t *self, int timeout_ms, char **reason_p)
{
    if (reason_p)
        *reason_p = NULL;
    if (!self)
        return TR_EINVAL;
    assert (self->tag == TR__SUP_TAG);
    int64_t deadline = tr__deadline_after_ms (timeout_ms);
    s_lock (&self->tree);
    while (!self->ended && s_wait (&self->tree, deadline))
        ;
    int rc = self->ended? self->end_rc: TR_ETIMEDOUT;
    if (self->ended && reason_p && self->end_reason)
        *reason_p = strdup (self->end_reason);
    s_unlock (&self->tree);
    return rc;
}

int
tr_sup_stop (tr_sup_t **self_p)
{
    if (!self_p || !*self_p)
        return TR_OK;
    tr_sup_t *self = *self_p;
    *self_p = NULL;
    assert (self->tag == TR__SUP_TAG);
    tr_node_t *node = self->node;
    pthread_rwlock_wrlock (&node->lock);
    void *handle = zlistx_find (node->roots, self);
    if (handle)
        zlistx_delete (node->roots, handle);
    pthread_rwlock_unlock (&node->lock);
    tr__child_t *root = self->root;
    if (root->actor) {
        s_lock (&self->tree);
        bool ended = root->phase == P_PARKED;
        s_unlock (&self->tree);
        if (!ended)
            tr__actor_signal_stop (root->actor);
        tr__actor_reap (root->actor, TR__FOREVER);
        root->actor = NULL;
    }
    int rc = self->tree.abandoned? TR_ETIMEDOUT: TR_OK;
    s_root_free (self);
    return rc;
}

void
tr__sup_stop_all (tr_node_t *node)
{
    for (;;) {
        pthread_rwlock_rdlock (&node->lock);
        tr_sup_t *root = (tr_sup_t *) zlistx_first (node->roots);
        pthread_rwlock_unlock (&node->lock);
        if (!root)
            break;
        tr_log (TR_LOG_INFO, "node: stopping tree '%s'", root->root->name);
        tr_sup_stop (&root);
    }
}

const char *
tr_sup_name (const tr_sup_t *self)
{
    assert (self && self->tag == TR__SUP_TAG);
    return self->root->name;
}

//  --------------------------------------------------------------------------
//  Requests from any thread

//  Asks supervisor `sup` to carry out `op` on `name`.
static int
s_ask_supervisor (tr_node_t *node, const char *sup, const char *op, const char *name)
{
    tr_body_t body = s_request (op, name, 0);
    tr_msg_t *reply = NULL;
    int rc = tr_ask (node, sup, body.data, body.size, S_CONTROL_TIMEOUT_MS, &reply, NULL);
    if (rc == TR_OK) {
        tr__mp_t r;
        int64_t code;
        tr__mp_init (&r, tr_msg_body (reply), tr_msg_size (reply));
        rc = tr__mp_int (&r, &code) == 0? (int) code: TR_EMALFORMED;
        tr_msg_destroy (&reply);
    }
    return rc;
}

//  Copies the name of the supervisor of child `name` (TR_ENOTFOUND if
//  no such child, TR_EINVAL for a root, which has none).
static int
s_supervisor_of (tr_node_t *node, const char *name, char *sup, size_t size)
{
    int rc = TR_OK;
    pthread_rwlock_rdlock (&node->lock);
    tr__child_t *c = (tr__child_t *) zhashx_lookup (node->children, name);
    if (!c)
        rc = TR_ENOTFOUND;
    else
    if (!c->sup)
        rc = TR_EINVAL;
    else
        snprintf (sup, size, "%s", c->sup->me->name);
    pthread_rwlock_unlock (&node->lock);
    return rc;
}

static int
s_control (tr_node_t *node, const char *op, const char *name)
{
    if (!node || !name)
        return TR_EINVAL;
    char sup [TR_NAME_MAX + 1];
    int rc = s_supervisor_of (node, name, sup, sizeof sup);
    return rc? rc: s_ask_supervisor (node, sup, op, name);
}

int
tr_sup_restart_child (tr_node_t *node, const char *name)
{
    return s_control (node, "restart", name);
}

int
tr_sup_stop_child (tr_node_t *node, const char *name)
{
    return s_control (node, "stop", name);
}

int
tr_sup_start_child (tr_node_t *node, const char *name)
{
    return s_control (node, "start", name);
}

int
tr_sup_add_child (tr_node_t *node, const char *sup, const char *name)
{
    if (!node || !sup || !name)
        return TR_EINVAL;
    pthread_rwlock_rdlock (&node->lock);
    tr__child_t *c = (tr__child_t *) zhashx_lookup (node->children, sup);
    bool is_sup = c && c->spec->kind == TR_CHILD_SUPERVISOR;
    pthread_rwlock_unlock (&node->lock);
    if (!is_sup)
        return TR_ENOTFOUND;
    return s_ask_supervisor (node, sup, "add", name);
}

int
tr_breaker_reset (tr_node_t *node, const char *name)
{
    if (!node || !name)
        return TR_EINVAL;
    tr__mbox_t *mbox = tr__node_lookup (node, name, false);
    if (!mbox)
        return TR_ENOTFOUND;
    tr__breaker_reset (&mbox->breaker);
    tr__mbox_unref (&mbox);
    return TR_OK;
}

//  --------------------------------------------------------------------------
//  Status

static const char *
s_state_name (const tr__child_t *c)
{
    if (c->state == C_RUNNING)
        return c->hung? "hung": "running";
    static const char *names [] = { "stopped", "running", "restarting", "failed", "abandoned" };
    return names [c->state];
}

static void
s_pack_str (msgpack_packer *pk, const char *key, const char *value)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
    if (value)
        msgpack_pack_str_with_body (pk, value, strlen (value));
    else
        msgpack_pack_nil (pk);
}

static void
s_pack_int (msgpack_packer *pk, const char *key, int64_t value)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
    msgpack_pack_int64 (pk, value);
}

static void s_pack_child (msgpack_packer *pk, const tr__child_t *c, int64_t now,
                          tr_node_t *root_of);

static void
s_pack_actor (msgpack_packer *pk, const tr__child_t *c)
{
    tr__mbox_t *mbox = c->mbox;
    s_pack_int (pk, "depth", mbox? (int64_t) tr__mbox_depth (mbox): 0);
    s_pack_int (pk, "capacity", mbox? (int64_t) mbox->capacity: 0);
    s_pack_int (pk, "handled", mbox? (int64_t) atomic_load (&mbox->handled): 0);
    s_pack_int (pk, "failed", mbox? (int64_t) atomic_load (&mbox->failed): 0);
    msgpack_pack_str_with_body (pk, "breaker", 7);
    msgpack_pack_map (pk, 3);
    s_pack_str (pk, "state", mbox? tr__breaker_state_name (&mbox->breaker): "off");
    s_pack_int (pk, "failures", mbox? atomic_load (&mbox->breaker.consecutive): 0);
    s_pack_int (pk, "open_ms", mbox? tr__breaker_open_left_ms (&mbox->breaker): 0);
    //  The actor's own counters (tr_actor_info_set), e.g. an agent's tokens.
    const tr__info_t *info = mbox? tr__mbox_info (mbox): NULL;
    int count = info? atomic_load_explicit (&info->count, memory_order_acquire): 0;
    msgpack_pack_str_with_body (pk, "info", 4);
    msgpack_pack_map (pk, (size_t) count);
    for (int i = 0; i < count; i++)
        s_pack_int (pk, info->items [i].key, atomic_load (&info->items [i].value));
}

static void
s_pack_child (msgpack_packer *pk, const tr__child_t *c, int64_t now, tr_node_t *root_of)
{
    int kind = c->spec->kind;
    bool actor = kind == TR_CHILD_ACTOR || kind == TR_CHILD_PLUGIN;
    size_t fields = 6 + (actor? 7: 0) + (kind == TR_CHILD_PROCESS) + (kind == TR_CHILD_SUPERVISOR) * 8
                  + (root_of != NULL);
    msgpack_pack_map (pk, fields);
    s_pack_str (pk, "name", c->name);
    s_pack_str (pk, "kind", s_kind_names [kind]);
    s_pack_str (pk, "state", s_state_name (c));
    s_pack_int (pk, "restarts", c->restarts);
    s_pack_str (pk, "failure", c->failure [0]? c->failure: NULL);
    s_pack_int (pk, "uptime_ms", c->state == C_RUNNING? (now - c->started_ns) / 1000000: 0);
    if (actor) {
        s_pack_str (pk, "type", c->spec->type? c->spec->type->name: NULL);
        s_pack_actor (pk, c);
    }
    if (kind == TR_CHILD_PROCESS)
        s_pack_int (pk, "pid", c->state == C_RUNNING? c->pid: 0);
    if (kind == TR_CHILD_SUPERVISOR) {
        s_pack_str (pk, "strategy", s_strategy_names [c->spec->sup->strategy]);
        s_pack_actor (pk, c);
        const s_sup_t *st = c->nested;
        msgpack_pack_str_with_body (pk, "children", 8);
        msgpack_pack_array (pk, st? st->count: 0);
        for (size_t i = 0; st && i < st->count; i++)
            s_pack_child (pk, st->children [i], now, NULL);
    }
    //  The root also shows the HTTP backends its node's LLM agents use.
    if (root_of) {
        msgpack_pack_str_with_body (pk, "llm", 3);
        tr__llm_backends_pack (root_of, pk);
    }
}

int
tr_sup_status (tr_sup_t *self, uint8_t **buf_p, size_t *len_p)
{
    if (!self || !buf_p || !len_p)
        return TR_EINVAL;
    assert (self->tag == TR__SUP_TAG);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    s_lock (&self->tree);
    s_pack_child (&pk, self->root, tr__now_ns (), self->node);
    s_unlock (&self->tree);
    if (!sb.data) {
        msgpack_sbuffer_destroy (&sb);
        return TR_ENOMEM;
    }
    *len_p = sb.size;
    *buf_p = (uint8_t *) msgpack_sbuffer_release (&sb);
    return TR_OK;
}
