/*  tr_event.h - the node's event bus: topics, subscribers, system events.

    An event is a topic (a name such as "sys.breaker.opened") and a body
    (a msgpack value, usually a map of fields). Actors subscribe to a
    topic prefix; each event whose topic starts with the prefix reaches
    each subscriber as a tell from "" whose body is the msgpack array
    [topic, body] (an empty body arrives as nil). It is from "" whoever
    published it, and carries the trace id of the message its publisher
    was handling, if any (else 0). An actor subscribed under several
    prefixes that match one topic gets that event once. Within one node,
    events from one publisher reach a subscriber in order.

    The runtime publishes system events on topics starting with "sys.":
      sys.actor.started     {name}
      sys.actor.stopped     {name, reason}
      sys.actor.failed      {name, reason}
      sys.actor.restarted   {name, restarts, delay_ms}
      sys.actor.hung        {name, ms}          handler past its timeout
      sys.breaker.opened    {name, failures, reset_ms}
      sys.breaker.half_open {name}
      sys.breaker.closed    {name}
      sys.dead_letter       {to, from, reason}
    Applications may not publish on "sys." topics (TR_EINVAL).

    Delivery never waits: a subscriber whose mailbox is full misses the
    event, and the miss is counted among that mailbox's refused sends.

    Once the broker lands, the same topics travel over the event bus
    between processes; this API is the local half of it.
*/
#ifndef TR_EVENT_H_INCLUDED
#define TR_EVENT_H_INCLUDED

#include <stddef.h>

#include "tr_export.h"
#include "tr_node.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Subscribes the actor named `actor` to every topic starting with
//  `prefix` ("" for all). Returns TR_OK (also if already subscribed:
//  that is still one subscription), TR_ENOACTOR, TR_EINVAL, TR_ENOMEM.
//  The subscription ends when the actor is stopped for good (it survives
//  restarts under a supervisor); a new actor of the same name starts
//  with none.
TR_EXPORT int
    tr_event_subscribe (tr_node_t *node, const char *prefix, const char *actor);

//  Ends a subscription. TR_OK, or TR_ENOTFOUND if there was none.
TR_EXPORT int
    tr_event_unsubscribe (tr_node_t *node, const char *prefix, const char *actor);

//  Publishes an event. topic: 1 to 255 bytes, no spaces or control
//  characters, not starting with "sys."; body: one msgpack value or
//  empty. Since the event [topic, body] is itself a message body, the
//  body may take TR_BODY_MAX less the topic and 2 or 3 bytes of headers,
//  and nest TR_BODY_MAX_DEPTH - 1 deep. Returns TR_OK with *delivered_p
//  (if not NULL) set to the number of subscribers (actors, each counted
//  once) that accepted it, or TR_EINVAL / TR_EMALFORMED / TR_ETOOBIG /
//  TR_EDEPTH for a bad topic or body, or TR_ENOMEM / TR_ESYS / TR_ELIMIT
//  when it could not be sent at all; on any error nobody got it.
TR_EXPORT int
    tr_event_publish (tr_node_t *node, const char *topic, const void *body,
                      size_t size, size_t *delivered_p);

#ifdef __cplusplus
}
#endif

#endif
