/*  tr_event_int.h - the runtime's side of the event bus (internal).

    System events are built field by field and published only if someone
    subscribes: with no subscription, tr__ev_begin returns false and the
    other calls do nothing, so emitting costs one atomic load.

        tr__ev_t ev;
        tr__ev_begin (&ev, node, "sys.actor.failed", 2);
        tr__ev_str (&ev, "name", name);
        tr__ev_str (&ev, "reason", reason);
        tr__ev_emit (&ev);
*/
#ifndef TR_EVENT_INT_H_INCLUDED
#define TR_EVENT_INT_H_INCLUDED

#include "tr_internal.h"

#include <msgpack.h>

typedef struct {
    tr_node_t *node;
    const char *topic;
    bool live;                          //  someone subscribes
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} tr__ev_t;

//  Starts an event with `fields` key/value pairs to follow. Returns false
//  (and the event is a no-op) when the node has no subscriptions.
bool
    tr__ev_begin (tr__ev_t *self, tr_node_t *node, const char *topic, int fields);

void
    tr__ev_str (tr__ev_t *self, const char *key, const char *value);

void
    tr__ev_int (tr__ev_t *self, const char *key, int64_t value);

//  Publishes the event to the subscribers of its topic and frees it.
void
    tr__ev_emit (tr__ev_t *self);

//  Publishes sys.dead_letter {to, from, reason} for a message that will
//  never be handled. Call without the registry lock.
void
    tr__ev_dead_letter (tr_node_t *node, const tr_msg_t *msg, const char *reason);

//  An event from another node (through the broker): delivered to this
//  node's subscribers only. Bodies that are not one msgpack value within
//  the bounds are dropped.
void
    tr__events_deliver (tr_node_t *node, const char *topic, const void *body, size_t size);

//  Drops every subscription of a mailbox (actor stop; registry lock held
//  for writing), or all of them (node destroy).
void
    tr__events_forget (tr_node_t *node, tr__mbox_t *mbox);
void
    tr__events_clear (tr_node_t *node);

#endif
