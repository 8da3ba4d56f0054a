/*  tr_send.c - tell, ask, reply and references; see tr_send.h.

    Every send goes the same way: check the body, find the receiver's
    mailbox, find the mailbox this thread sends from (tr__ctx_enter),
    build the message, post it.
*/

#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mbox.h"
#include "tr_breaker.h"
#include "tr_remote.h"
#include "troupe/tr_envelope.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

//  The mailbox this thread owns on its node (actors and services).
static __thread tr__mbox_t *s_own_mbox;
static __thread tr_actor_t *s_own_actor;
//  State of this thread's trace id generator (xorshift64*).
static __thread uint64_t s_trace_state;

void
tr__ctx_bind (tr__mbox_t *mbox, tr_actor_t *actor)
{
    s_own_mbox = mbox;
    s_own_actor = actor;
}

tr_actor_t *
tr_self (void)
{
    return s_own_actor;
}

//  --------------------------------------------------------------------------
//  Ports: the mailboxes of threads that are not actors.
//
//  A thread keeps the port it was given for as long as it lives, so that
//  what it sends leaves through one pipe per receiver and arrives in
//  order, and answers to its asks come back to where it waits. A thread
//  holds ports for up to S_PORT_SLOTS nodes at once; past that the oldest
//  goes back to its node. When the thread ends, its ports go back to
//  their nodes, if those still exist (tr__node_live).

#define S_PORT_SLOTS 4

typedef struct {
    tr_node_t *node;
    uint64_t node_id;                   //  node pointers can be reused
    tr__mbox_t *port;
} s_port_slot_t;

static __thread s_port_slot_t s_ports [S_PORT_SLOTS];
static pthread_key_t s_port_key;
static pthread_once_t s_port_once = PTHREAD_ONCE_INIT;

//  Hands a port back to its node's free list, if the node still lives.
static void
s_return_port (s_port_slot_t *slot)
{
    tr__node_live_lock ();
    if (tr__node_live (slot->node, slot->node_id)) {
        pthread_mutex_lock (&slot->node->ports_lock);
        slot->port->next_port = slot->node->free_ports;
        slot->node->free_ports = slot->port;
        pthread_mutex_unlock (&slot->node->ports_lock);
    }
    tr__node_live_unlock ();
    memset (slot, 0, sizeof *slot);
}

static void
s_thread_exit (void *unused)
{
    for (int i = 0; i < S_PORT_SLOTS; i++)
        if (s_ports [i].port)
            s_return_port (&s_ports [i]);
}

static void
s_port_key_create (void)
{
    pthread_key_create (&s_port_key, s_thread_exit);
}

//  A port for this thread on node: a free one, or a new one.
static int
s_take_port (tr_node_t *node, tr__mbox_t **port_p)
{
    pthread_mutex_lock (&node->ports_lock);
    tr__mbox_t *port = node->free_ports;
    if (port)
        node->free_ports = port->next_port;
    pthread_mutex_unlock (&node->ports_lock);
    if (!port) {
        int rc = tr__mbox_new (node, NULL, SIZE_MAX, TR_FULL_FAIL, &port);
        if (rc)
            return rc;
        pthread_mutex_lock (&node->ports_lock);
        zlistx_add_end (node->ports, port);
        pthread_mutex_unlock (&node->ports_lock);
    }
    port->next_port = NULL;
    *port_p = port;
    return TR_OK;
}

//  This thread's port on node, taking one on first use.
static int
s_thread_port (tr_node_t *node, tr__mbox_t **port_p)
{
    s_port_slot_t *free_slot = NULL;
    for (int i = 0; i < S_PORT_SLOTS; i++) {
        s_port_slot_t *slot = &s_ports [i];
        if (slot->port && slot->node == node && slot->node_id == node->id) {
            *port_p = slot->port;
            return TR_OK;
        }
        if (slot->port && slot->node == node)
            memset (slot, 0, sizeof *slot);     //  a destroyed node's
        if (!slot->port && !free_slot)
            free_slot = slot;
    }
    pthread_once (&s_port_once, s_port_key_create);
    pthread_setspecific (s_port_key, s_ports);  //  arms s_thread_exit
    if (!free_slot) {
        free_slot = &s_ports [0];
        s_return_port (free_slot);
        memmove (s_ports, s_ports + 1, (S_PORT_SLOTS - 1) * sizeof *s_ports);
        free_slot = &s_ports [S_PORT_SLOTS - 1];
        memset (free_slot, 0, sizeof *free_slot);
    }
    int rc = s_take_port (node, port_p);
    if (rc == TR_OK)
        *free_slot = (s_port_slot_t) { node, node->id, *port_p };
    return rc;
}

int
tr__ctx_enter (tr_node_t *node, tr__ctx_t *ctx)
{
    ctx->node = node;
    if (s_own_mbox && s_own_mbox->node == node) {
        ctx->mbox = s_own_mbox;
        ctx->from = s_own_mbox->name? s_own_mbox->name: "";
        ctx->current = s_own_actor? s_own_actor->current: NULL;
        return TR_OK;
    }
    ctx->from = "";
    ctx->current = NULL;
    return s_thread_port (node, &ctx->mbox);
}

//  A fresh, non-zero trace id.
static uint64_t
s_new_trace (void)
{
    if (!s_trace_state)
        s_trace_state = (uint64_t) tr__now_ns ()
                      ^ ((uint64_t) (uintptr_t) &s_trace_state << 16)
                      ^ UINT64_C (0x9e3779b97f4a7c15);
    s_trace_state ^= s_trace_state >> 12;
    s_trace_state ^= s_trace_state << 25;
    s_trace_state ^= s_trace_state >> 27;
    uint64_t trace = s_trace_state * UINT64_C (0x2545f4914f6cdd1d);
    return trace? trace: 1;
}

static uint64_t
s_trace (const tr__ctx_t *ctx, const tr_send_opts_t *opts)
{
    if (opts && opts->trace_id)
        return opts->trace_id;
    if (ctx->current && ctx->current->trace)
        return ctx->current->trace;
    return s_new_trace ();
}

int
tr__check_body (const void *body, size_t size)
{
    if (size == 0)
        return TR_OK;
    if (!body)
        return TR_EINVAL;
    if (size > TR_BODY_MAX)
        return TR_ETOOBIG;
    return tr_msgpack_check (body, size, TR_BODY_MAX_DEPTH, NULL);
}

static int
s_check_send (tr_node_t *node, const void *body, size_t size,
              const tr_send_opts_t *opts)
{
    if (!node)
        return TR_EINVAL;
    assert (node->tag == TR__NODE_TAG);
    if (opts && (opts->priority < TR_PRIO_LOW || opts->priority > TR_PRIO_HIGH
             ||  opts->ttl_ms < 0))
        return TR_EINVAL;
    return tr__check_body (body, size);
}

//  How long a send may wait for room, in ms (negative: not at all).
static int
s_wait_ms (const tr_node_t *node, const tr_send_opts_t *opts)
{
    if (!opts || opts->timeout_ms == 0)
        return node->opts.send_timeout_ms;
    return opts->timeout_ms;
}

//  The mailbox for the name `to`, with a reference: the actor's own, or,
//  for a name the node does not hold while it has a broker, the broker
//  link's gateway (*remote set). NULL if there is neither.
static tr__mbox_t *
s_resolve (tr_node_t *node, const char *to, bool *remote)
{
    *remote = false;
    tr__mbox_t *dst = tr__node_lookup (node, to, !node->remote);
    if (!dst && node->remote && tr_name_check (to, strlen (to)) == TR_OK) {
        dst = tr__mbox_ref (tr__remote_gateway (node->remote));
        *remote = true;
    }
    return dst;
}

//  Builds a message from ctx to dst (named `to` when dst is the broker
//  gateway). NULL when out of memory.
static tr_msg_t *
s_build (tr__ctx_t *ctx, tr__mbox_t *dst, const char *to, int kind, const void *body,
         size_t size, const tr_send_opts_t *opts)
{
    tr_msg_t *msg = tr__msg_new (ctx->node, kind, opts? opts->priority: 0,
                                 to? to: dst->name? dst->name: "", ctx->from, body, size);
    if (msg) {
        msg->id = tr__mbox_next_id (ctx->mbox);
        msg->trace = s_trace (ctx, opts);
    }
    return msg;
}

//  --------------------------------------------------------------------------
//  Tell

static int
s_tell (tr_node_t *node, tr__mbox_t *dst, const char *to, const void *body, size_t size,
        const tr_send_opts_t *opts)
{
    tr__ctx_t ctx;
    int rc = tr__ctx_enter (node, &ctx);
    if (rc)
        return rc;
    tr_msg_t *msg = s_build (&ctx, dst, to, TR_KIND_TELL, body, size, opts);
    if (!msg)
        rc = TR_ENOMEM;
    else {
        if (opts && opts->ttl_ms)
            msg->deadline_ns = tr__deadline_after_ms (opts->ttl_ms);
        rc = tr__mbox_post (ctx.mbox, dst, msg, s_wait_ms (node, opts));
        if (rc)
            tr__msg_free (msg);
    }
    return rc;
}

int
tr_tell (tr_node_t *node, const char *to, const void *body, size_t size,
         const tr_send_opts_t *opts)
{
    int rc = s_check_send (node, body, size, opts);
    if (rc)
        return rc;
    if (!to)
        return TR_EINVAL;
    bool remote;
    tr__mbox_t *dst = s_resolve (node, to, &remote);
    if (!dst)
        return TR_ENOACTOR;
    rc = s_tell (node, dst, remote? to: NULL, body, size, opts);
    tr__mbox_unref (&dst);
    return rc;
}

//  --------------------------------------------------------------------------
//  Ask and request

//  Sends an ask from ctx to dst with the given id; the caller decides
//  whether to wait for the answer.
static int
s_post_ask (tr__ctx_t *ctx, tr__mbox_t *dst, const char *to, uint64_t id, const void *body,
            size_t size, int timeout_ms, int64_t deadline_ns,
            const tr_send_opts_t *opts)
{
    tr_msg_t *msg = s_build (ctx, dst, to, TR_KIND_ASK, body, size, opts);
    if (!msg)
        return TR_ENOMEM;
    msg->id = id;
    msg->deadline_ns = deadline_ns;
    msg->reply_to = tr__mbox_ref (ctx->mbox);
    int wait_ms = s_wait_ms (ctx->node, opts);
    if (wait_ms > timeout_ms)
        wait_ms = timeout_ms;
    int rc = tr__mbox_post (ctx->mbox, dst, msg, wait_ms);
    if (rc)
        tr__msg_free (msg);
    return rc;
}

static int
s_ask (tr_node_t *node, tr__mbox_t *dst, const char *to, const void *body, size_t size,
       int timeout_ms, tr_msg_t **reply_p, const tr_send_opts_t *opts)
{
    tr__ctx_t ctx;
    int rc = tr__ctx_enter (node, &ctx);
    if (rc)
        return rc;
    if (ctx.mbox == dst) {
        return TR_EDEADLK;
    }
    int64_t deadline = tr__deadline_after_ms (timeout_ms);
    uint64_t id = tr__mbox_next_id (ctx.mbox) | TR__ID_BLOCKING;
    rc = s_post_ask (&ctx, dst, to, id, body, size, timeout_ms, deadline, opts);
    if (rc == TR_OK) {
        tr_msg_t *reply = tr__mbox_wait_reply (ctx.mbox, id, deadline);
        if (!reply)
            rc = TR_ETIMEDOUT;
        else
        if (reply->kind == TR_KIND_ERROR) {
            rc = reply->error;
            tr__msg_free (reply);
        }
        else
            *reply_p = reply;
    }
    return rc;
}

int
tr_ask (tr_node_t *node, const char *to, const void *body, size_t size,
        int timeout_ms, tr_msg_t **reply_p, const tr_send_opts_t *opts)
{
    if (reply_p)
        *reply_p = NULL;
    int rc = s_check_send (node, body, size, opts);
    if (rc)
        return rc;
    if (!to || !reply_p || timeout_ms <= 0)
        return TR_EINVAL;
    bool remote;
    tr__mbox_t *dst = s_resolve (node, to, &remote);
    if (!dst)
        return TR_ENOACTOR;
    rc = s_ask (node, dst, remote? to: NULL, body, size, timeout_ms, reply_p, opts);
    tr__mbox_unref (&dst);
    return rc;
}

int
tr_request (tr_node_t *node, const char *to, const void *body, size_t size,
            int timeout_ms, uint64_t *id_p, const tr_send_opts_t *opts)
{
    int rc = s_check_send (node, body, size, opts);
    if (rc)
        return rc;
    if (!to || !id_p || timeout_ms <= 0)
        return TR_EINVAL;
    //  Only an actor has a handler for the answer to arrive at.
    if (!s_own_actor || s_own_mbox->node != node)
        return TR_EINVAL;
    bool remote;
    tr__mbox_t *dst = s_resolve (node, to, &remote);
    if (!dst)
        return TR_ENOACTOR;
    tr__ctx_t ctx;
    rc = tr__ctx_enter (node, &ctx);
    if (rc == TR_OK) {
        uint64_t id = tr__mbox_next_id (ctx.mbox);
        rc = s_post_ask (&ctx, dst, remote? to: NULL, id, body, size, timeout_ms,
                         tr__deadline_after_ms (timeout_ms), opts);
        if (rc == TR_OK)
            *id_p = id;
    }
    tr__mbox_unref (&dst);
    return rc;
}

//  --------------------------------------------------------------------------
//  Runtime messages

int
tr__post_raw (tr_node_t *node, tr__mbox_t *dst, int kind, const void *body, size_t size)
{
    tr__ctx_t ctx;
    int rc = tr__ctx_enter (node, &ctx);
    if (rc)
        return rc;
    tr_msg_t *msg = tr__msg_new (node, kind, TR__PRIO_SYSTEM, dst->name? dst->name: "",
                                 ctx.from, body, size);
    if (!msg)
        return TR_ENOMEM;
    msg->id = tr__mbox_next_id (ctx.mbox);
    rc = tr__mbox_post (ctx.mbox, dst, msg, -1);
    if (rc)
        tr__msg_free (msg);
    return rc;
}

//  --------------------------------------------------------------------------
//  Replies

//  Sends the answer (a reply, or an error when error != 0) to request.
static int
s_answer (tr__ctx_t *ctx, const tr_msg_t *request, int error,
          const void *body, size_t size)
{
    tr_msg_t *req = (tr_msg_t *) request;
    tr_msg_t *msg = tr__msg_new (ctx->node, error? TR_KIND_ERROR: TR_KIND_REPLY,
                                 req->priority, req->from, req->to, body, size);
    if (!msg)
        return TR_ENOMEM;
    req->flags |= TR__MSG_REPLIED;
    msg->id = tr__mbox_next_id (ctx->mbox);
    msg->corr = req->id;
    msg->trace = req->trace;
    msg->error = error;
    //  Answers skip the bound; the only failure left is an asker that has
    //  gone away, which makes this answer a dead letter.
    int rc = tr__mbox_post (ctx->mbox, req->reply_to, msg, -1);
    if (rc) {
        tr__node_dead_letter (ctx->node, msg, rc);
        tr__msg_free (msg);
    }
    return TR_OK;
}

static bool
s_answerable (const tr_msg_t *request)
{
    return request && request->tag == TR__MSG_TAG
        && request->kind == TR_KIND_ASK && request->reply_to
        && !(request->flags & TR__MSG_REPLIED);
}

int
tr__reply_error_from (tr__ctx_t *ctx, const tr_msg_t *request, int error)
{
    if (!s_answerable (request) || error >= 0)
        return TR_EINVAL;
    return s_answer (ctx, request, error, NULL, 0);
}

//  Answers through the calling thread's own context.
//  An ask answered after its handler returned (tr_defer) counts for the
//  circuit breaker of the actor that took it, when it is answered: a
//  reply is a success, an error a failure, except TR_EINVAL and
//  TR_EMALFORMED, which say the asker sent a bad request, not that the
//  actor or what it depends on is failing. The handler's own return was
//  not counted (tr_actor.c), so an agent with many calls in flight opens
//  its breaker on the failures of those calls, as a synchronous one does.
static void
s_deferred_outcome (const tr_msg_t *request, int error)
{
    if (!(request->flags & TR__MSG_DEFERRED) || !request->to)
        return;
    tr__mbox_t *mbox = tr__node_lookup (request->node, request->to, false);
    if (!mbox)
        return;
    tr__breaker_record (&mbox->breaker,
                        error == 0 || error == TR_EINVAL || error == TR_EMALFORMED);
    tr__mbox_unref (&mbox);
}

static int
s_reply (const tr_msg_t *request, int error, const void *body, size_t size)
{
    tr__ctx_t ctx;
    int rc = tr__ctx_enter (request->node, &ctx);
    if (rc)
        return rc;
    s_deferred_outcome (request, error);
    rc = s_answer (&ctx, request, error, body, size);
    return rc;
}

int
tr_reply (const tr_msg_t *request, const void *body, size_t size)
{
    if (!s_answerable (request))
        return TR_EINVAL;
    int rc = tr__check_body (body, size);
    return rc? rc: s_reply (request, 0, body, size);
}

int
tr_reply_error (const tr_msg_t *request, int error)
{
    if (!s_answerable (request) || error >= 0)
        return TR_EINVAL;
    return s_reply (request, error, NULL, 0);
}

//  --------------------------------------------------------------------------
//  References: a tr_ref_t is a counted reference to the mailbox itself.

int
tr_ref_new (tr_node_t *node, const char *name, tr_ref_t **ref_p)
{
    if (!node || !name || !ref_p)
        return TR_EINVAL;
    tr__mbox_t *mbox = tr__node_lookup (node, name, true);
    if (!mbox)
        return TR_ENOACTOR;
    *ref_p = (tr_ref_t *) mbox;
    return TR_OK;
}

void
tr_ref_destroy (tr_ref_t **ref_p)
{
    if (ref_p)
        tr__mbox_unref ((tr__mbox_t **) ref_p);
}

const char *
tr_ref_name (const tr_ref_t *ref)
{
    return ref? ((const tr__mbox_t *) ref)->name: NULL;
}

int
tr_tell_ref (tr_ref_t *ref, const void *body, size_t size,
             const tr_send_opts_t *opts)
{
    if (!ref)
        return TR_EINVAL;
    tr__mbox_t *dst = (tr__mbox_t *) ref;
    int rc = s_check_send (dst->node, body, size, opts);
    return rc? rc: s_tell (dst->node, dst, NULL, body, size, opts);
}

int
tr_ask_ref (tr_ref_t *ref, const void *body, size_t size, int timeout_ms,
            tr_msg_t **reply_p, const tr_send_opts_t *opts)
{
    if (reply_p)
        *reply_p = NULL;
    if (!ref || !reply_p || timeout_ms <= 0)
        return TR_EINVAL;
    tr__mbox_t *dst = (tr__mbox_t *) ref;
    int rc = s_check_send (dst->node, body, size, opts);
    return rc? rc: s_ask (dst->node, dst, NULL, body, size, timeout_ms, reply_p, opts);
}
