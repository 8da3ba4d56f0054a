/*  tr_event.c - the node's event bus; see tr_event.h.

    Subscriptions are a list of (prefix, mailbox reference) kept under
    the node's registry lock. Publishing takes a snapshot of the matching
    subscribers (each mailbox once, however many of its prefixes match)
    and tells each one from "", never waiting for room. The runtime's own
    events are built with the tr__ev_* helpers, which do nothing at all
    while nobody subscribes.
*/

#include "tr_internal.h"
#include "tr_mbox.h"
#include "tr_event_int.h"
#include "tr_remote.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_event.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_sub {
    struct s_sub *next;
    tr__mbox_t *mbox;                   //  holds a reference
    size_t prefix_len;
    char prefix [];
} s_sub_t;

static bool
s_matches (const s_sub_t *sub, const char *topic)
{
    return strncmp (topic, sub->prefix, sub->prefix_len) == 0;
}

static int
s_check_topic (const char *topic)
{
    return topic && tr_name_check (topic, strlen (topic)) == TR_OK? TR_OK: TR_EINVAL;
}

int
tr_event_subscribe (tr_node_t *node, const char *prefix, const char *actor)
{
    if (!node || !prefix || !actor || strlen (prefix) > TR_NAME_MAX
    ||  (*prefix && s_check_topic (prefix)))
        return TR_EINVAL;
    size_t len = strlen (prefix);
    int rc = TR_OK;
    pthread_rwlock_wrlock (&node->lock);
    tr__mbox_t *mbox = (tr__mbox_t *) zhashx_lookup (node->names, actor);
    s_sub_t *sub = (s_sub_t *) node->subs;
    while (sub && !(sub->mbox == mbox && strcmp (sub->prefix, prefix) == 0))
        sub = sub->next;
    if (!mbox)
        rc = TR_ENOACTOR;
    else
    if (!sub) {
        sub = (s_sub_t *) malloc (sizeof *sub + len + 1);
        if (!sub)
            rc = TR_ENOMEM;
        else {
            sub->mbox = tr__mbox_ref (mbox);
            sub->prefix_len = len;
            memcpy (sub->prefix, prefix, len + 1);
            sub->next = (s_sub_t *) node->subs;
            node->subs = sub;
            atomic_fetch_add (&node->sub_count, 1);
            //  Events of other nodes come through the broker.
            if (node->remote)
                tr__remote_subscribe (node->remote, prefix, true);
        }
    }
    pthread_rwlock_unlock (&node->lock);
    return rc;
}

//  Unlinks the subscriptions for which keep () is false (lock held).
static size_t
s_remove (tr_node_t *node, tr__mbox_t *mbox, const char *prefix)
{
    size_t removed = 0;
    s_sub_t **link = (s_sub_t **) &node->subs;
    while (*link) {
        s_sub_t *sub = *link;
        if (sub->mbox == mbox && (!prefix || strcmp (sub->prefix, prefix) == 0)) {
            *link = sub->next;
            if (node->remote)
                tr__remote_subscribe (node->remote, sub->prefix, false);
            tr__mbox_unref (&sub->mbox);
            free (sub);
            atomic_fetch_sub (&node->sub_count, 1);
            removed++;
        }
        else
            link = &sub->next;
    }
    return removed;
}

int
tr_event_unsubscribe (tr_node_t *node, const char *prefix, const char *actor)
{
    if (!node || !prefix || !actor)
        return TR_EINVAL;
    pthread_rwlock_wrlock (&node->lock);
    tr__mbox_t *mbox = (tr__mbox_t *) zhashx_lookup (node->names, actor);
    size_t removed = mbox? s_remove (node, mbox, prefix): 0;
    pthread_rwlock_unlock (&node->lock);
    return removed? TR_OK: TR_ENOTFOUND;
}

void
tr__events_forget (tr_node_t *node, tr__mbox_t *mbox)
{
    s_remove (node, mbox, NULL);
}

void
tr__events_clear (tr_node_t *node)
{
    while (node->subs) {
        s_sub_t *sub = (s_sub_t *) node->subs;
        node->subs = sub->next;
        tr__mbox_unref (&sub->mbox);
        free (sub);
    }
    atomic_store (&node->sub_count, 0);
}

//  Orders mailbox pointers by address, so that duplicates sit together.
static int
s_by_address (const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) *(tr__mbox_t *const *) a;
    uintptr_t y = (uintptr_t) *(tr__mbox_t *const *) b;
    return (x > y) - (x < y);
}

//  Takes a reference to every mailbox with a matching subscription, each
//  mailbox once, into *list_p (stack, which holds `room`, or the heap)
//  and their number into *n_p. Returns 0, or -1 when out of memory.
static int
s_snapshot (tr_node_t *node, const char *topic, tr__mbox_t **stack,
            size_t room, tr__mbox_t ***list_p, size_t *n_p)
{
    size_t n = 0, count = 0;
    tr__mbox_t **list = stack;
    pthread_rwlock_rdlock (&node->lock);
    for (s_sub_t *sub = (s_sub_t *) node->subs; sub; sub = sub->next)
        if (s_matches (sub, topic))
            count++;
    if (count > room)
        list = (tr__mbox_t **) malloc (count * sizeof *list);
    for (s_sub_t *sub = (s_sub_t *) node->subs; sub && list; sub = sub->next)
        if (s_matches (sub, topic))
            list [n++] = tr__mbox_ref (sub->mbox);
    pthread_rwlock_unlock (&node->lock);
    if (!list)
        return -1;
    //  An actor subscribed under several matching prefixes gets one copy.
    if (n > 1) {
        qsort (list, n, sizeof *list, s_by_address);
        size_t kept = 1;
        for (size_t i = 1; i < n; i++)
            if (list [i] == list [kept - 1])
                tr__mbox_unref (&list [i]);
            else
                list [kept++] = list [i];
        n = kept;
    }
    *list_p = list;
    *n_p = n;
    return 0;
}

//  Tells dst the event from "": an event has no sender, whichever thread
//  publishes it. It inherits the trace of the message being handled, if
//  any. Never waits for room; a full mailbox counts the refusal.
static int
s_tell_event (tr__ctx_t *ctx, tr__mbox_t *dst, const void *event, size_t size)
{
    tr_msg_t *msg = tr__msg_new (ctx->node, TR_KIND_TELL, TR_PRIO_NORMAL,
                                 dst->name? dst->name: "", "", event, size);
    if (!msg)
        return TR_ENOMEM;
    msg->id = tr__mbox_next_id (ctx->mbox);
    msg->trace = ctx->current? ctx->current->trace: 0;
    int rc = tr__mbox_post (ctx->mbox, dst, msg, -1);
    if (rc)
        tr__msg_free (msg);
    return rc;
}

//  Tells every subscriber whose prefix matches; the event is already the
//  [topic, body] array, checked. Returns TR_OK with the number that
//  accepted it in *delivered_p, or TR_ENOMEM (or the error of getting a
//  mailbox to send from) having told nobody.
static int
s_deliver (tr_node_t *node, const char *topic, const void *event, size_t size,
           size_t *delivered_p)
{
    tr__ctx_t ctx;
    int rc = tr__ctx_enter (node, &ctx);
    if (rc)
        return rc;
    tr__mbox_t *stack [64], **list;
    size_t n;
    if (s_snapshot (node, topic, stack, 64, &list, &n))
        return TR_ENOMEM;
    size_t delivered = 0;
    for (size_t i = 0; i < n; i++) {
        if (s_tell_event (&ctx, list [i], event, size) == TR_OK)
            delivered++;
        tr__mbox_unref (&list [i]);
    }
    if (list != stack)
        free (list);
    *delivered_p = delivered;
    return TR_OK;
}

//  Packs [topic, body] into sbuf. Returns 0, or -1 when out of memory.
static int
s_pack_event (msgpack_sbuffer *sbuf, const char *topic, const void *body, size_t size)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    int bad = msgpack_pack_array (&pk, 2);
    bad |= msgpack_pack_str_with_body (&pk, topic, strlen (topic));
    if (size)
        bad |= msgpack_sbuffer_write (sbuf, (const char *) body, size);
    else
        bad |= msgpack_pack_nil (&pk);
    return bad? -1: 0;
}

//  Delivers to this node's subscribers only.
static int
s_publish_local (tr_node_t *node, const char *topic, const void *body, size_t size,
                 size_t *delivered_p)
{
    if (delivered_p)
        *delivered_p = 0;
    if (!atomic_load_explicit (&node->sub_count, memory_order_relaxed))
        return TR_OK;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    size_t delivered = 0;
    int rc = TR_ENOMEM;
    if (s_pack_event (&sbuf, topic, body, size) == 0)
        rc = s_deliver (node, topic, sbuf.data, sbuf.size, &delivered);
    if (delivered_p)
        *delivered_p = delivered;
    msgpack_sbuffer_destroy (&sbuf);
    return rc;
}

//  Delivers to this node's subscribers and, with a broker, to the other
//  nodes' (the broker does not send an event back to its publisher).
static int
s_publish (tr_node_t *node, const char *topic, const void *body, size_t size,
           size_t *delivered_p)
{
    if (node->remote)
        tr__remote_publish (node->remote, topic, body, size);
    return s_publish_local (node, topic, body, size, delivered_p);
}

void
tr__events_deliver (tr_node_t *node, const char *topic, const void *body, size_t size)
{
    if (s_check_topic (topic) == TR_OK
    &&  (size == 0 || tr_msgpack_check (body, size, TR_BODY_MAX_DEPTH - 1, NULL) == TR_OK))
        s_publish_local (node, topic, body, size, NULL);
}

//  Checks an event's body. The event [topic, body] is a message body in
//  its own right, so the body gets what is left of TR_BODY_MAX after the
//  array and topic headers and the topic, and one level less nesting.
//  Checked here once, so that no subscriber can refuse a body the
//  publisher was told is fine.
static int
s_check_body (const char *topic, const void *body, size_t size)
{
    if (size == 0)
        return TR_OK;
    if (!body)
        return TR_EINVAL;
    size_t topic_len = strlen (topic);
    size_t overhead = 1 + (topic_len < 32? 1: 2) + topic_len;
    if (size > TR_BODY_MAX - overhead)
        return TR_ETOOBIG;
    return tr_msgpack_check (body, size, TR_BODY_MAX_DEPTH - 1, NULL);
}

int
tr_event_publish (tr_node_t *node, const char *topic, const void *body,
                  size_t size, size_t *delivered_p)
{
    if (delivered_p)
        *delivered_p = 0;
    if (!node || s_check_topic (topic) || strncmp (topic, "sys.", 4) == 0)
        return TR_EINVAL;
    int rc = s_check_body (topic, body, size);
    return rc? rc: s_publish (node, topic, body, size, delivered_p);
}

//  --------------------------------------------------------------------------
//  The runtime's own events

bool
tr__ev_begin (tr__ev_t *self, tr_node_t *node, const char *topic, int fields)
{
    self->node = node;
    self->topic = topic;
    self->live = atomic_load_explicit (&node->sub_count, memory_order_relaxed) > 0
              || node->remote;
    if (!self->live)
        return false;
    msgpack_sbuffer_init (&self->sbuf);
    msgpack_packer_init (&self->pk, &self->sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&self->pk, (size_t) fields);
    return true;
}

void
tr__ev_str (tr__ev_t *self, const char *key, const char *value)
{
    if (!self->live)
        return;
    msgpack_pack_str_with_body (&self->pk, key, strlen (key));
    if (value)
        msgpack_pack_str_with_body (&self->pk, value, strlen (value));
    else
        msgpack_pack_nil (&self->pk);
}

void
tr__ev_int (tr__ev_t *self, const char *key, int64_t value)
{
    if (!self->live)
        return;
    msgpack_pack_str_with_body (&self->pk, key, strlen (key));
    msgpack_pack_int64 (&self->pk, value);
}

void
tr__ev_emit (tr__ev_t *self)
{
    if (!self->live)
        return;
    s_publish (self->node, self->topic, self->sbuf.data, self->sbuf.size, NULL);
    msgpack_sbuffer_destroy (&self->sbuf);
    self->live = false;
}

void
tr__ev_dead_letter (tr_node_t *node, const tr_msg_t *msg, const char *reason)
{
    tr__ev_t ev;
    if (!tr__ev_begin (&ev, node, "sys.dead_letter", 3))
        return;
    tr__ev_str (&ev, "to", msg->to);
    tr__ev_str (&ev, "from", msg->from);
    tr__ev_str (&ev, "reason", reason);
    tr__ev_emit (&ev);
}
