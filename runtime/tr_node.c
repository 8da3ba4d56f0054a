/*  tr_node.c - node lifecycle, registry and counters; see tr_node.h.  */

#include "tr_internal.h"
#include "tr_mbox.h"
#include "tr_event_int.h"
#include "tr_proc.h"
#include "tr_remote.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

//  Sockets the node needs besides one per actor: ports for threads that
//  are not actors, the timer service, and headroom.
#define S_EXTRA_SOCKETS 256

static atomic_uint_fast64_t s_next_node_id = 1;

//  Live nodes, for threads that end after their node (see tr_send.c).
static pthread_mutex_t s_live_lock = PTHREAD_MUTEX_INITIALIZER;
static tr_node_t *s_live;

void
tr__node_live_lock (void)
{
    pthread_mutex_lock (&s_live_lock);
}

void
tr__node_live_unlock (void)
{
    pthread_mutex_unlock (&s_live_lock);
}

bool
tr__node_live (const tr_node_t *node, uint64_t id)
{
    for (tr_node_t *n = s_live; n; n = n->next_live)
        if (n == node && n->id == id)
            return true;
    return false;
}

static void
s_live_remove (tr_node_t *node)
{
    tr__node_live_lock ();
    for (tr_node_t **n = &s_live; *n; n = &(*n)->next_live)
        if (*n == node) {
            *n = node->next_live;
            break;
        }
    tr__node_live_unlock ();
}

static void
s_fill_defaults (tr_node_opts_t *o)
{
    if (!o->max_actors)       o->max_actors = 16384;
    if (!o->mailbox_capacity) o->mailbox_capacity = 1024;
    if (!o->send_timeout_ms)  o->send_timeout_ms = 1000;
    if (!o->stack_size)       o->stack_size = 256 * 1024;
    if (!o->spin_us)          o->spin_us = 50;
    if (!o->stop_timeout_ms)  o->stop_timeout_ms = 5000;
}

static int
s_check_opts (const tr_node_opts_t *o)
{
    if (o->mailbox_capacity >= (UINT64_C (1) << 62)
    ||  o->stack_size < 64 * 1024
    ||  o->send_timeout_ms < 0 || o->stop_timeout_ms < 0
    ||  o->max_actors > 1000000)
        return TR_EINVAL;
    return TR_OK;
}

//  Every actor holds one socket and so one descriptor. Raise the soft
//  limit toward the hard one if we need more; if even the hard limit is
//  too low, lower max_actors to what fits and say so, rather than fail
//  later in some unrelated spawn.
static void
s_fit_descriptor_limit (tr_node_opts_t *o)
{
    struct rlimit rl;
    if (getrlimit (RLIMIT_NOFILE, &rl))
        return;
    rlim_t want = (rlim_t) (o->max_actors + 2 * S_EXTRA_SOCKETS);
    if (rl.rlim_cur < want && rl.rlim_cur != RLIM_INFINITY) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want?
                      want: rl.rlim_max;
        setrlimit (RLIMIT_NOFILE, &rl);
        getrlimit (RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        size_t fit = rl.rlim_cur > 2 * S_EXTRA_SOCKETS?
                     (size_t) rl.rlim_cur - 2 * S_EXTRA_SOCKETS: 16;
        tr_log (TR_LOG_WARN, "node: the descriptor limit (%llu) allows %zu actors, not %zu",
                (unsigned long long) rl.rlim_cur, fit, o->max_actors);
        o->max_actors = fit;
    }
}

int
tr_node_new (const tr_node_opts_t *opts, tr_node_t **node_p)
{
    if (!node_p)
        return TR_EINVAL;
    *node_p = NULL;
    tr_node_opts_t o = { 0 };
    if (opts)
        o = *opts;
    s_fill_defaults (&o);
    if (s_check_opts (&o))
        return TR_EINVAL;
    s_fit_descriptor_limit (&o);

    tr_node_t *self = (tr_node_t *) calloc (1, sizeof *self);
    if (!self)
        return TR_ENOMEM;
    self->tag = TR__NODE_TAG;
    self->id = atomic_fetch_add (&s_next_node_id, 1);
    self->opts = o;
    atomic_init (&self->next_mbox_id, 1);
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    self->cores = cores > 1? (int) cores: 1;
    pthread_rwlock_init (&self->lock, NULL);
    pthread_mutex_init (&self->ports_lock, NULL);
    self->names = zhashx_new ();
    self->groups = zhashx_new ();
    self->children = zhashx_new ();
    self->roots = zlistx_new ();
    self->ports = zlistx_new ();
    self->ctx = zmq_ctx_new ();
    int rc = TR_ENOMEM;
    if (!self->names || !self->groups || !self->ports || !self->ctx
    ||  !self->children || !self->roots)
        goto fail;
    //  Must happen before the first socket: libzmq sizes its socket
    //  table once.
    rc = TR_ELIMIT;
    if (zmq_ctx_set (self->ctx, ZMQ_MAX_SOCKETS, (int) (o.max_actors + S_EXTRA_SOCKETS)))
        goto fail;
    rc = tr__timers_start (self, &self->timers);
    if (rc)
        goto fail;
    tr__node_live_lock ();
    self->next_live = s_live;
    s_live = self;
    tr__node_live_unlock ();
    if (o.broker) {
        self->broker_copy = strdup (o.broker);
        self->node_id_copy = o.node_id? strdup (o.node_id): NULL;
        self->opts.broker = self->broker_copy;
        self->opts.node_id = self->node_id_copy;
        rc = self->broker_copy && (self->node_id_copy || !o.node_id)?
             tr__remote_start (self, &self->remote): TR_ENOMEM;
        if (rc) {
            tr_node_destroy (&self);
            return rc;
        }
    }
    *node_p = self;
    return TR_OK;

fail:
    if (self->ctx)
        zmq_ctx_term (self->ctx);
    zlistx_destroy (&self->ports);
    zlistx_destroy (&self->roots);
    zhashx_destroy (&self->children);
    zhashx_destroy (&self->groups);
    zhashx_destroy (&self->names);
    pthread_mutex_destroy (&self->ports_lock);
    pthread_rwlock_destroy (&self->lock);
    free (self);
    return rc;
}

//  Closes the ports. Threads may still hold some in their slots, but by
//  the node's contract none is in use now, and the node's id tells their
//  slots the ports are gone.
static void
s_close_ports (tr_node_t *self)
{
    tr__mbox_t *port = (tr__mbox_t *) zlistx_first (self->ports);
    while (port) {
        tr__mbox_close (port, TR_ECLOSED);
        tr__mbox_unref (&port);
        port = (tr__mbox_t *) zlistx_next (self->ports);
    }
    zlistx_purge (self->ports);
    self->free_ports = NULL;
}

void
tr_node_destroy (tr_node_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tr_node_t *self = *self_p;
    *self_p = NULL;
    assert (self->tag == TR__NODE_TAG);
    atomic_store (&self->closing, true);
    //  The HTTP engine before any actor: its callbacks (TR_ECLOSED for
    //  every request still queued or in flight) carry pointers into their
    //  actors' state and answer deferred asks, so they must run while
    //  those actors are alive; actors that submit afterwards, while they
    //  stop, are refused with TR_ECLOSED. Its memory stays until the
    //  actors are gone, since they may still call into it.
    tr__http_stop (self);
    //  Trees first, each in its order; then the other actors (their
    //  handlers may still set timers until they stop).
    tr__sup_stop_all (self);
    tr__procs_stop (self, 5000);
    size_t abandoned = tr__actors_stop_all (self);
    tr__remote_stop (&self->remote);
    if (!abandoned)
        tr__timers_stop (&self->timers);
    //  From here on, no ending thread gives a port back to this node.
    s_live_remove (self);
    s_close_ports (self);
    if (abandoned) {
        //  Those actors' threads may still touch the node, their mailboxes
        //  and the context: leave all of it allocated.
        tr_log (TR_LOG_ERROR, "node: %zu actor(s) did not stop; leaking the node "
                "so that their threads stay safe", abandoned);
        return;
    }
    assert (zhashx_size (self->groups) == 0 && zhashx_size (self->names) == 0);
    tr__http_destroy (self);
    tr__events_clear (self);
    zmq_ctx_term (self->ctx);
    zlistx_destroy (&self->ports);
    zlistx_destroy (&self->roots);
    zhashx_destroy (&self->children);
    zhashx_destroy (&self->groups);
    zhashx_destroy (&self->names);
    pthread_mutex_destroy (&self->ports_lock);
    pthread_rwlock_destroy (&self->lock);
    free (self->broker_copy);
    free (self->node_id_copy);
    self->tag = TR__DEAD_TAG;
    free (self);
}

const tr_node_opts_t *
tr_node_opts (const tr_node_t *self)
{
    assert (self && self->tag == TR__NODE_TAG);
    return &self->opts;
}

//  Adds one live mailbox's counters to stats.
static void
s_add_mbox (tr_node_stats_t *stats, tr__mbox_t *mbox)
{
    stats->sent += atomic_load (&mbox->arrived);
    stats->dead_letters += atomic_load (&mbox->dead);
    stats->rejected += atomic_load (&mbox->rejected);
}

int
tr_node_stats (tr_node_t *self, tr_node_stats_t *stats)
{
    if (!self || !stats)
        return TR_EINVAL;
    assert (self->tag == TR__NODE_TAG);
    memset (stats, 0, sizeof *stats);
    pthread_rwlock_rdlock (&self->lock);
    stats->actors = self->actors;
    for (tr_actor_t *a = self->first; a; a = a->next)
        if (atomic_load (&a->status) != TR__ACTOR_ABANDONED)
            s_add_mbox (stats, a->mbox);
    pthread_rwlock_unlock (&self->lock);
    pthread_mutex_lock (&self->ports_lock);
    for (tr__mbox_t *p = (tr__mbox_t *) zlistx_first (self->ports); p;
         p = (tr__mbox_t *) zlistx_next (self->ports))
        s_add_mbox (stats, p);
    pthread_mutex_unlock (&self->ports_lock);
    stats->sent += atomic_load (&self->retired_sent);
    stats->dead_letters += atomic_load (&self->retired_dead) + atomic_load (&self->dead);
    stats->rejected += atomic_load (&self->retired_rejected);
    stats->spawned = atomic_load (&self->spawned);
    stats->unknown = atomic_load (&self->unknown);
    return TR_OK;
}

//  The last lookup this thread made, holding a reference to its mailbox.
//  Valid while the node's names_gen has not moved; a stale entry is
//  dropped at the next lookup or when the thread ends.
typedef struct {
    const tr_node_t *node;
    uint64_t node_id;
    uint64_t gen;
    tr__mbox_t *mbox;
    char name [64];
} s_lookup_cache_t;

static __thread s_lookup_cache_t s_cache;
static pthread_key_t s_cache_key;
static pthread_once_t s_cache_once = PTHREAD_ONCE_INIT;

static void
s_cache_drop (void *unused)
{
    tr__mbox_unref (&s_cache.mbox);
    s_cache.node = NULL;
}

static void
s_cache_key_create (void)
{
    pthread_key_create (&s_cache_key, s_cache_drop);
}

static void
s_cache_store (tr_node_t *self, const char *name, uint64_t gen, tr__mbox_t *mbox)
{
    size_t len = strlen (name);
    if (len >= sizeof s_cache.name)
        return;
    pthread_once (&s_cache_once, s_cache_key_create);
    pthread_setspecific (s_cache_key, &s_cache);   //  arms s_cache_drop
    tr__mbox_unref (&s_cache.mbox);
    s_cache.node = self;
    s_cache.node_id = self->id;
    s_cache.gen = gen;
    s_cache.mbox = tr__mbox_ref (mbox);
    memcpy (s_cache.name, name, len + 1);
}

tr__mbox_t *
tr__node_lookup (tr_node_t *self, const char *name, bool count_miss)
{
    uint64_t gen = atomic_load_explicit (&self->names_gen, memory_order_acquire);
    if (s_cache.mbox && s_cache.node == self && s_cache.node_id == self->id
    &&  s_cache.gen == gen && strcmp (s_cache.name, name) == 0)
        return tr__mbox_ref (s_cache.mbox);
    pthread_rwlock_rdlock (&self->lock);
    gen = atomic_load_explicit (&self->names_gen, memory_order_relaxed);
    tr__mbox_t *mbox = (tr__mbox_t *) zhashx_lookup (self->names, name);
    if (mbox)
        tr__mbox_ref (mbox);
    pthread_rwlock_unlock (&self->lock);
    if (mbox)
        s_cache_store (self, name, gen, mbox);
    else
    if (count_miss)
        atomic_fetch_add_explicit (&self->unknown, 1, memory_order_relaxed);
    return mbox;
}

int
tr__node_register (tr_node_t *self, const char *name, tr__mbox_t *mbox)
{
    if (zhashx_insert (self->names, name, mbox))
        return TR_EEXIST;
    atomic_fetch_add_explicit (&self->names_gen, 1, memory_order_release);
    if (self->remote)
        tr__remote_name (self->remote, name, true);
    return TR_OK;
}

void
tr__node_forget (tr_node_t *self, const char *name, tr__mbox_t *mbox)
{
    if (zhashx_lookup (self->names, name) == mbox) {
        zhashx_delete (self->names, name);
        atomic_fetch_add_explicit (&self->names_gen, 1, memory_order_release);
        if (self->remote)
            tr__remote_name (self->remote, name, false);
    }
}

void
tr__node_dead_letter (tr_node_t *self, const tr_msg_t *msg, int reason)
{
    atomic_fetch_add_explicit (&self->dead, 1, memory_order_relaxed);
    tr_log (TR_LOG_DEBUG, "dead letter to '%s' from '%s': %s",
            msg->to, msg->from, tr_strerror (reason));
}
