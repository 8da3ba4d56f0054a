/*  tr_actor.c - actor threads: spawn, the handling loop, stop.

    The thread only borrows the mailbox: tr_spawn creates and registers it
    before the thread exists, and the thread that stops the actor closes
    it after the actor's thread has ended (pthread_join hands the socket
    back with the memory barrier libzmq asks for when a socket changes
    threads).
*/

#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mbox.h"
#include "tr_event_int.h"
#include "tr_breaker.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_sup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  The actor's thread

static void
s_record (tr__mbox_t *mbox, int rc, int64_t elapsed_ns)
{
    atomic_uint_fast64_t *counter = rc? &mbox->failed: &mbox->handled;
    //  Single writer (this thread): load and store, no locked instruction.
    atomic_store_explicit (counter,
        atomic_load_explicit (counter, memory_order_relaxed) + 1, memory_order_relaxed);
    uint64_t ns = (uint64_t) elapsed_ns;
    atomic_store_explicit (&mbox->handle_ns_total,
        atomic_load_explicit (&mbox->handle_ns_total, memory_order_relaxed) + ns,
        memory_order_relaxed);
    if (ns > atomic_load_explicit (&mbox->handle_ns_max, memory_order_relaxed))
        atomic_store_explicit (&mbox->handle_ns_max, ns, memory_order_relaxed);
}

//  After a handler returned rc: decides whether this incarnation ends,
//  and why. Returns true to end it (reason in self->exit_reason and
//  self->exit_text). A supervised actor ends on any failure; one spawned
//  directly on the node only when it asked to (tr_actor_exit).
static bool
s_ends (tr_actor_t *self, int rc, bool hung)
{
    if (self->exit_requested)
        return true;
    if (!self->child || (!rc && !hung))
        return false;
    self->exit_reason = hung? TR_ETIMEDOUT: rc < 0? rc: TR_EHANDLER;
    if (hung)
        snprintf (self->exit_text, sizeof self->exit_text,
                  "handling a message took longer than its timeout");
    else
        //  -1 is the usual "it failed"; lower values may be troupe codes.
        snprintf (self->exit_text, sizeof self->exit_text,
                  "handler failed (returned %d%s%s)", rc,
                  rc < -1? ": ": "", rc < -1? tr_strerror (rc): "");
    return true;
}

//  Handles messages until the stop signal or the end of the incarnation.
//  Returns the reason it ended: TR_OK for a stop.
static int
s_loop (tr_actor_t *self)
{
    tr__mbox_t *mbox = self->mbox;
    tr__ctx_t ctx = { .node = self->node, .mbox = mbox, .from = mbox->name };
    self->exit_requested = false;
    for (;;) {
        tr_msg_t *msg = tr__mbox_take (mbox, TR__FOREVER);
        if (!msg)
            continue;
        if (msg->kind == TR__KIND_STOP) {
            tr__msg_free (msg);
            snprintf (self->exit_text, sizeof self->exit_text, "stopped");
            return TR_OK;
        }
        int64_t start = tr__now_ns ();
        if (msg->deadline_ns && start > msg->deadline_ns) {
            tr__ev_dead_letter (self->node, msg, tr_strerror (TR_EEXPIRED));
            tr__mbox_dead_letter (mbox, msg, TR_EEXPIRED);
            continue;
        }
        self->current = msg;
        self->deferred = false;
        atomic_store_explicit (&self->handling_since, start, memory_order_relaxed);
        int rc = self->behaviour.handle (self, msg, self->state);
        atomic_store_explicit (&self->handling_since, 0, memory_order_relaxed);
        self->current = NULL;
        //  Ending itself with a failure fails the message at hand too.
        if (rc == 0 && self->exit_requested && self->exit_reason < 0)
            rc = self->exit_reason;
        bool hung = atomic_exchange (&self->hung, false);
        s_record (mbox, rc || hung, tr__now_ns () - start);
        //  A handling timeout was already counted by the watchdog; a
        //  deferred ask counts when it is answered (tr_send.c).
        if (!hung && !(rc == 0 && self->deferred))
            tr__breaker_record (&mbox->breaker, rc == 0);
        if (rc)
            tr_log (TR_LOG_DEBUG, "actor '%s': handler failed (%d)", mbox->name, rc);
        bool ends = s_ends (self, rc, hung);
        //  The message that ended an incarnation is not handled again.
        if (ends && (rc || hung) && !self->deferred)
            tr__ev_dead_letter (self->node, msg, self->exit_text);
        if (!self->deferred)            //  else no longer ours to touch
            tr__msg_finish (&ctx, msg, hung? TR_ETIMEDOUT: rc? TR_EHANDLER: TR_ENOREPLY);
        if (ends)
            return self->exit_reason;
    }
}

//  Runs init for a new incarnation. Returns its result.
static int
s_init (tr_actor_t *self)
{
    void *state = self->arg;
    self->exit_text [0] = 0;
    int rc = self->behaviour.init? self->behaviour.init (self, self->arg, &state): 0;
    self->state = state;
    if (rc && !self->exit_text [0])     //  init may have said why itself
        snprintf (self->exit_text, sizeof self->exit_text,
                  "init failed (returned %d)", rc);
    return rc;
}

static void s_retire (tr_actor_t *self);

static void *
s_actor_main (void *arg)
{
    tr_actor_t *self = (tr_actor_t *) arg;
    tr__ctx_bind (self->mbox, self);
    atomic_fetch_add (&self->node->owners, 1);
    bool first = true;
    for (;;) {
        int rc = s_init (self);
        if (first) {
            self->init_rc = rc;
            sem_post (&self->started);
            first = false;
        }
        else
            tr__child_started (self->child, rc);
        int reason = TR_EINIT;
        if (rc == 0) {
            reason = s_loop (self);
            if (self->behaviour.terminate)
                self->behaviour.terminate (self, reason, self->state);
        }
        if (!self->child) {
            if (rc == 0 && self->exit_requested)
                s_retire (self);
            break;
        }
        bool requested = rc == 0 && reason == TR_OK && !self->exit_requested;
        int on = TR__LINK_ON;
        if (!atomic_compare_exchange_strong (&self->link, &on, TR__LINK_REPORTING))
            break;                      //  abandoned: nobody to report to
        bool again = tr__child_ended (self->child, reason, self->exit_text, requested);
        atomic_store (&self->link, TR__LINK_ON);
        if (!again)
            break;
    }
    atomic_fetch_sub (&self->node->owners, 1);
    tr__ctx_bind (NULL, NULL);
    sem_post (&self->ended);            //  the last thing the thread does
    return NULL;
}

int
tr_actor_exit (tr_actor_t *self, int reason, const char *text)
{
    if (!self || self != tr_self () || reason > 0)
        return TR_EINVAL;
    self->exit_requested = true;
    self->exit_reason = reason;
    if (text)
        snprintf (self->exit_text, sizeof self->exit_text, "%s", text);
    else
        snprintf (self->exit_text, sizeof self->exit_text, "%s",
                  reason? tr_strerror (reason): "exited");
    return TR_OK;
}

//  --------------------------------------------------------------------------
//  Registry helpers (node lock held for writing)

static void
s_link (tr_node_t *node, tr_actor_t *actor)
{
    actor->prev = node->last;
    actor->next = NULL;
    if (node->last)
        node->last->next = actor;
    else
        node->first = actor;
    node->last = actor;
    node->actors++;
}

static void
s_unlink (tr_node_t *node, tr_actor_t *actor)
{
    if (actor->prev)
        actor->prev->next = actor->next;
    else
        node->first = actor->next;
    if (actor->next)
        actor->next->prev = actor->prev;
    else
        node->last = actor->prev;
    actor->prev = actor->next = NULL;
    node->actors--;
}

//  Releases the actor's name and groups, so the name can be used again.
static void
s_unregister (tr_node_t *node, tr_actor_t *actor)
{
    tr__node_forget (node, actor->mbox->name, actor->mbox);
    tr__groups_forget (node, actor->mbox);
    tr__events_forget (node, actor->mbox);
}

//  Frees an actor whose thread has ended: closes its mailbox, turning
//  what is left in it into dead letters.
static void
s_free (tr_actor_t *actor, int reason)
{
    tr_node_t *node = actor->node;
    pthread_rwlock_wrlock (&node->lock);
    s_unregister (node, actor);
    s_unlink (node, actor);
    pthread_rwlock_unlock (&node->lock);
    tr__mbox_close (actor->mbox, reason);
    tr__mbox_unref (&actor->mbox);
    sem_destroy (&actor->started);
    sem_destroy (&actor->ended);
    actor->tag = TR__DEAD_TAG;
    free (actor);
}

//  --------------------------------------------------------------------------
//  Spawn

static int
s_check_spawn (tr_node_t *node, const char *name, const tr_behaviour_t *b,
               const tr_spawn_opts_t *opts)
{
    if (!node || !name || !b || !b->handle)
        return TR_EINVAL;
    assert (node->tag == TR__NODE_TAG);
    if (tr_name_check (name, strlen (name)) || name [0] == '$')
        return TR_EINVAL;
    if (opts && ((opts->on_full != TR_FULL_WAIT && opts->on_full != TR_FULL_FAIL)
             ||  (opts->stack_size && opts->stack_size < 64 * 1024)
             ||  opts->capacity >= (UINT64_C (1) << 62)))
        return TR_EINVAL;
    if (atomic_load (&node->closing))
        return TR_ECLOSED;
    return TR_OK;
}

//  Registers the actor's name; TR_EEXIST or TR_ELIMIT if it cannot.
static int
s_register (tr_node_t *node, tr_actor_t *actor)
{
    int rc = TR_OK;
    pthread_rwlock_wrlock (&node->lock);
    if (node->actors >= node->opts.max_actors)
        rc = TR_ELIMIT;
    else
    if ((rc = tr__node_register (node, actor->mbox->name, actor->mbox)) == TR_OK)
        s_link (node, actor);
    pthread_rwlock_unlock (&node->lock);
    return rc;
}

static int
s_start_thread (tr_actor_t *actor, size_t stack_size)
{
    pthread_attr_t attr;
    pthread_attr_init (&attr);
    pthread_attr_setstacksize (&attr, stack_size);
    int err = pthread_create (&actor->thread, &attr, s_actor_main, actor);
    pthread_attr_destroy (&attr);
    if (err) {
        tr_log (TR_LOG_ERROR, "spawn '%s': cannot start a thread: %s",
                actor->mbox->name, strerror (err));
        return err == EAGAIN? TR_ELIMIT: TR_ESYS;
    }
    while (sem_wait (&actor->started) && errno == EINTR)
        ;
    return TR_OK;
}

//  Spawns an actor, supervised or not (see tr_spawn, tr__actor_spawn).
static int
s_spawn (tr_node_t *node, const char *name, const tr_behaviour_t *b,
         void *arg, const tr_spawn_opts_t *opts, tr__child_t *child,
         tr_actor_t **actor_p)
{
    int rc = s_check_spawn (node, name, b, opts);
    if (rc)
        return rc;
    tr_actor_t *actor = (tr_actor_t *) calloc (1, sizeof *actor);
    if (!actor)
        return TR_ENOMEM;
    actor->tag = TR__ACTOR_TAG;
    actor->node = node;
    actor->behaviour = *b;
    actor->arg = arg;
    actor->child = child;
    atomic_init (&actor->status, TR__ACTOR_STARTING);
    sem_init (&actor->started, 0, 0);
    sem_init (&actor->ended, 0, 0);
    size_t capacity = opts && opts->capacity? opts->capacity: node->opts.mailbox_capacity;
    int on_full = opts? opts->on_full: TR_FULL_WAIT;
    size_t stack = opts && opts->stack_size? opts->stack_size: node->opts.stack_size;

    rc = tr__mbox_new (node, name, capacity, on_full, &actor->mbox);
    if (rc) {
        sem_destroy (&actor->started);
        sem_destroy (&actor->ended);
        free (actor);
        return rc;
    }
    actor->mbox->actor = actor;
    rc = s_register (node, actor);
    if (rc) {
        tr__mbox_close (actor->mbox, TR_ESTOPPED);
        tr__mbox_unref (&actor->mbox);
        sem_destroy (&actor->started);
        sem_destroy (&actor->ended);
        free (actor);
        return rc;
    }
    rc = s_start_thread (actor, stack);
    if (rc) {
        s_free (actor, TR_ESTOPPED);
        return rc;
    }
    atomic_store (&actor->status, TR__ACTOR_RUNNING);
    if (actor->init_rc && !child) {
        //  Unsupervised: the thread has ended already.
        pthread_join (actor->thread, NULL);
        s_free (actor, TR_ESTOPPED);
        return TR_EINIT;
    }
    //  Supervised: a thread whose init failed waits for its supervisor.
    if (actor_p)
        *actor_p = actor;
    if (actor->init_rc)
        return TR_EINIT;
    atomic_fetch_add (&node->spawned, 1);
    return TR_OK;
}

int
tr_spawn (tr_node_t *node, const char *name, const tr_behaviour_t *b,
          void *arg, const tr_spawn_opts_t *opts, tr_actor_t **actor_p)
{
    return s_spawn (node, name, b, arg, opts, NULL, actor_p);
}

int
tr__actor_spawn (tr_node_t *node, const char *name, const tr_behaviour_t *b,
                 void *arg, const tr_spawn_opts_t *opts, tr__child_t *child,
                 tr_actor_t **actor_p)
{
    assert (child);
    return s_spawn (node, name, b, arg, opts, child, actor_p);
}

//  An unsupervised actor that called tr_actor_exit, on its own thread:
//  releases its name and turns what is left in its mailbox into dead
//  letters. tr_node_destroy collects the rest.
static void
s_retire (tr_actor_t *self)
{
    tr_node_t *node = self->node;
    pthread_rwlock_wrlock (&node->lock);
    s_unregister (node, self);
    pthread_rwlock_unlock (&node->lock);
    atomic_store (&self->status, TR__ACTOR_EXITED);
    tr_log (TR_LOG_INFO, "actor '%s' exited: %s", self->mbox->name, self->exit_text);
    tr__mbox_shut (self->mbox, TR_ESTOPPED);
}

//  --------------------------------------------------------------------------
//  Stop

//  Sends the stop signal, which overtakes every queued message.
int
tr__actor_signal_stop (tr_actor_t *actor)
{
    tr__ctx_t ctx;
    int rc = tr__ctx_enter (actor->node, &ctx);
    if (rc)
        return rc;
    tr_msg_t *msg = tr__msg_new (actor->node, TR__KIND_STOP, TR__PRIO_SYSTEM,
                                 actor->mbox->name, ctx.from, NULL, 0);
    rc = msg? tr__mbox_post (ctx.mbox, actor->mbox, msg, -1): TR_ENOMEM;
    if (rc && msg)
        tr__msg_free (msg);
    return rc;
}

//  Gives up on an actor whose thread will not end: frees its name, keeps
//  everything it may still touch.
static void
s_abandon (tr_actor_t *actor, int waited_ms)
{
    tr_node_t *node = actor->node;
    if (atomic_exchange (&actor->status, TR__ACTOR_ABANDONED) == TR__ACTOR_ABANDONED)
        return;                         //  given up on before
    pthread_rwlock_wrlock (&node->lock);
    s_unregister (node, actor);
    pthread_rwlock_unlock (&node->lock);
    tr_log (TR_LOG_ERROR, "actor '%s' did not stop within %d ms; abandoned: its name "
            "is free, its thread and mailbox are kept until the thread ends",
            actor->mbox->name, waited_ms);
}

//  Waits for the actor's thread until deadline_ns. Returns TR_OK once it
//  has ended (and is joined), or abandons the actor and returns
//  TR_ETIMEDOUT. The thread posts `ended` as its very last step, so the
//  join after it is immediate; waiting on the semaphore rather than with
//  pthread_timedjoin_np keeps to POSIX and to what ThreadSanitizer models.
static int
s_join (tr_actor_t *actor, int64_t deadline_ns, int waited_ms)
{
    int rc;
    if (deadline_ns == TR__FOREVER)
        while ((rc = sem_wait (&actor->ended)) && errno == EINTR)
            ;
    else {
        struct timespec at = tr__timespec_at (deadline_ns, CLOCK_REALTIME);
        while ((rc = sem_timedwait (&actor->ended, &at)) && errno == EINTR)
            ;
    }
    if (rc) {
        s_abandon (actor, waited_ms);
        return TR_ETIMEDOUT;
    }
    pthread_join (actor->thread, NULL);
    return TR_OK;
}

int
tr_actor_stop (tr_node_t *node, const char *name, int timeout_ms)
{
    if (!node || !name)
        return TR_EINVAL;
    assert (node->tag == TR__NODE_TAG);
    if (timeout_ms <= 0)
        timeout_ms = node->opts.stop_timeout_ms;
    pthread_rwlock_rdlock (&node->lock);
    tr__mbox_t *mbox = (tr__mbox_t *) zhashx_lookup (node->names, name);
    tr_actor_t *actor = mbox? mbox->actor: NULL;
    bool supervised = actor && actor->child;
    int rc = TR_OK;
    if (!actor)
        rc = TR_ENOACTOR;
    else
    if (supervised) {
        //  Its supervisor stops it, so that it is not restarted.
        pthread_rwlock_unlock (&node->lock);
        return tr_sup_stop_child (node, name);
    }
    else
    if (actor == tr_self ())
        rc = TR_EDEADLK;
    else {
        int running = TR__ACTOR_RUNNING;
        if (!atomic_compare_exchange_strong (&actor->status, &running, TR__ACTOR_STOPPING))
            rc = TR_ENOACTOR;
    }
    pthread_rwlock_unlock (&node->lock);
    if (rc)
        return rc;
    rc = tr__actor_signal_stop (actor);
    if (rc == TR_OK)
        rc = s_join (actor, tr__deadline_after_ms (timeout_ms), timeout_ms);
    if (rc == TR_OK)
        s_free (actor, TR_ESTOPPED);
    return rc;
}

int
tr__actor_reap (tr_actor_t *actor, int64_t deadline_ns)
{
    int64_t left = deadline_ns == TR__FOREVER? 0: deadline_ns - tr__now_ns ();
    int rc = s_join (actor, deadline_ns, (int) (left > 0? left / 1000000: 0));
    if (rc == TR_OK)
        s_free (actor, TR_ESTOPPED);
    return rc;
}

size_t
tr__actors_stop_all (tr_node_t *node)
{
    //  Claim every running actor no supervisor looks after, newest first
    //  (a supervisor, itself among them, stops its own children); take
    //  the abandoned ones too, in case their threads have ended since,
    //  and the ones that exited by themselves.
    size_t count = 0, abandoned = 0;
    pthread_rwlock_rdlock (&node->lock);
    tr_actor_t **list = (tr_actor_t **) calloc (node->actors + 1, sizeof *list);
    for (tr_actor_t *a = node->last; a && list; a = a->prev) {
        if (a->child && atomic_load (&a->link) != TR__LINK_OFF)
            continue;                   //  its supervisor stops it
        int running = TR__ACTOR_RUNNING;
        if (atomic_compare_exchange_strong (&a->status, &running, TR__ACTOR_STOPPING)
        ||  running == TR__ACTOR_ABANDONED || running == TR__ACTOR_EXITED)
            list [count++] = a;
    }
    pthread_rwlock_unlock (&node->lock);
    if (!list)
        return node->actors;            //  out of memory: stop nothing, leak
    //  Signal them all first, so they stop side by side; then collect them
    //  in the same order, against one common deadline. An abandoned actor
    //  had its stop signal already; an exited one needs none.
    for (size_t i = 0; i < count; i++)
        if (atomic_load (&list [i]->status) == TR__ACTOR_STOPPING)
            tr__actor_signal_stop (list [i]);
    //  Shut every mailbox before closing any (see tr__mbox_shut), then
    //  close them oldest first. A socket that connected to many mailboxes
    //  (a port, a coordinator) pays, in libzmq, a search of its list of
    //  connections for each one that closes; that list is sorted by
    //  endpoint, endpoints sort by age, so closing oldest first makes each
    //  search stop at the first entry instead of walking them all.
    int timeout_ms = node->opts.stop_timeout_ms;
    int64_t deadline = tr__deadline_after_ms (timeout_ms);
    for (size_t i = 0; i < count; i++)
        if (s_join (list [i], deadline, timeout_ms) == TR_OK)
            tr__mbox_shut (list [i]->mbox, TR_ESTOPPED);
        else {
            list [i] = NULL;
            abandoned++;
        }
    for (size_t i = count; i-- > 0; )
        if (list [i])
            s_free (list [i], TR_ESTOPPED);
    free (list);
    return abandoned;
}

//  --------------------------------------------------------------------------
//  Accessors

int
tr_actor_stats (tr_node_t *node, const char *name, tr_actor_stats_t *stats)
{
    if (!node || !name || !stats)
        return TR_EINVAL;
    tr__mbox_t *mbox = tr__node_lookup (node, name, false);
    if (!mbox)
        return TR_ENOACTOR;
    stats->received = atomic_load (&mbox->received);
    stats->handled = atomic_load (&mbox->handled);
    stats->failed = atomic_load (&mbox->failed);
    stats->dead_letters = atomic_load (&mbox->dead);
    stats->rejected = atomic_load (&mbox->rejected);
    stats->depth = tr__mbox_depth (mbox);
    stats->capacity = mbox->capacity;
    stats->handle_ns_total = atomic_load (&mbox->handle_ns_total);
    stats->handle_ns_max = atomic_load (&mbox->handle_ns_max);
    tr__mbox_unref (&mbox);
    return TR_OK;
}

//  --------------------------------------------------------------------------
//  Named counters for status

//  Adding a key is rare: one lock for the process keeps it simple.
static pthread_mutex_t s_info_lock = PTHREAD_MUTEX_INITIALIZER;

const tr__info_t *
tr__mbox_info (tr__mbox_t *mbox)
{
    return atomic_load_explicit (&mbox->info, memory_order_acquire);
}

//  The slot of key in info, or -1.
static int
s_info_find (const tr__info_t *info, const char *key, int count)
{
    for (int i = 0; i < count; i++)
        if (strcmp (info->items [i].key, key) == 0)
            return i;
    return -1;
}

int
tr__mbox_info_update (tr__mbox_t *mbox, const char *key, int64_t value, bool add)
{
    if (!key || !*key || strlen (key) >= TR__INFO_KEY)
        return TR_EINVAL;
    tr__info_t *info = atomic_load_explicit (&mbox->info, memory_order_acquire);
    int slot = info? s_info_find (info, key, atomic_load_explicit (&info->count,
                                                                   memory_order_acquire)): -1;
    if (slot < 0) {
        pthread_mutex_lock (&s_info_lock);
        info = atomic_load_explicit (&mbox->info, memory_order_acquire);
        if (!info && (info = (tr__info_t *) calloc (1, sizeof *info)))
            atomic_store_explicit (&mbox->info, info, memory_order_release);
        int count = info? atomic_load (&info->count): 0;
        slot = info? s_info_find (info, key, count): -1;
        if (info && slot < 0 && count < TR__INFO_MAX) {
            slot = count;
            snprintf (info->items [slot].key, TR__INFO_KEY, "%s", key);
            atomic_init (&info->items [slot].value, 0);
            atomic_store_explicit (&info->count, count + 1, memory_order_release);
        }
        pthread_mutex_unlock (&s_info_lock);
        if (!info)
            return TR_ENOMEM;
        if (slot < 0)
            return TR_ELIMIT;
    }
    if (add)
        atomic_fetch_add_explicit (&info->items [slot].value, value, memory_order_relaxed);
    else
        atomic_store_explicit (&info->items [slot].value, value, memory_order_relaxed);
    return TR_OK;
}

int
tr_actor_info_set (tr_actor_t *self, const char *key, int64_t value)
{
    if (!self)
        return TR_EINVAL;
    assert (self->tag == TR__ACTOR_TAG);
    return tr__mbox_info_update (self->mbox, key, value, false);
}

int
tr_actor_info_add (tr_actor_t *self, const char *key, int64_t delta)
{
    if (!self)
        return TR_EINVAL;
    assert (self->tag == TR__ACTOR_TAG);
    return tr__mbox_info_update (self->mbox, key, delta, true);
}

int
tr_actor_info_get (tr_node_t *node, const char *name, const char *key, int64_t *value)
{
    if (!node || !name || !key || !value)
        return TR_EINVAL;
    tr__mbox_t *mbox = tr__node_lookup (node, name, false);
    if (!mbox)
        return TR_ENOACTOR;
    const tr__info_t *info = tr__mbox_info (mbox);
    int slot = info? s_info_find (info, key, atomic_load_explicit (&info->count,
                                                                   memory_order_acquire)): -1;
    if (slot >= 0)
        *value = atomic_load_explicit (&info->items [slot].value, memory_order_relaxed);
    tr__mbox_unref (&mbox);
    return slot >= 0? TR_OK: TR_ENOTFOUND;
}

const char *
tr_actor_name (const tr_actor_t *self)
{
    assert (self && self->tag == TR__ACTOR_TAG);
    return self->mbox->name;
}

tr_node_t *
tr_actor_node (const tr_actor_t *self)
{
    assert (self && self->tag == TR__ACTOR_TAG);
    return self->node;
}
