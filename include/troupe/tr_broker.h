/*  tr_broker.h - the broker: names, routing, liveness, events and the
    scratchpad for every node of a troupe.

    The broker speaks the protocol of protocols/2-broker.md on one ZeroMQ
    ROUTER socket. It runs on a thread of its own, started by
    tr_broker_start: standalone (`troupe broker --bind ENDPOINT`) or
    embedded in a node's process (`troupe run` does that by default).

    Status: in progress. Names, routing (SEND / DELIVER / BOUNCE), the
    greeting, heartbeats and NODE_DOWN, NODES, and events (SUB / PUB) are
    served; the scratchpad, persistence and CURVE security are specified
    but not served yet (their verbs are answered TR_EINVAL).
*/
#ifndef TR_BROKER_H_INCLUDED
#define TR_BROKER_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_broker tr_broker_t;

//  Options. Zero fields take the defaults of 2-broker.md.
typedef struct {
    const char *bind;           //  endpoint to bind, e.g. "tcp://127.0.0.1:7700",
                                //  "tcp://127.0.0.1:*" (a free port), "ipc://...";
                                //  required
    int heartbeat_ms;           //  H, 10 to 60,000; default 1000. Clients hear
                                //  from the broker at least every H, and are
                                //  dropped after 3H of silence.
    size_t max_frame;           //  bytes in any frame, at least 1,024; default
                                //  17,825,792 (over tcp and ipc ZeroMQ
                                //  disconnects a peer that sends more)
    size_t max_names;           //  per client, default 100,000
    size_t max_subs;            //  per client, default 10,000
    size_t max_queue;           //  messages queued towards one client (the
                                //  ROUTER's high-water mark per peer), default
                                //  10,000
} tr_broker_opts_t;

//  What the broker has seen since it started. Every SEND is either routed
//  or bounced; a greeted client that goes is counted in left.
typedef struct {
    uint64_t clients;           //  greeted clients now
    uint64_t names;             //  registered names now
    uint64_t joined;            //  greetings accepted
    uint64_t left;              //  clients gone: BYE, replaced or dead
    uint64_t dead;              //  of those, declared dead: silent for 3H,
                                //  or their connection found gone
    uint64_t routed;            //  SENDs delivered
    uint64_t bounced;           //  SENDs sent back (no such name, full)
    uint64_t events;            //  events published (by clients and the
                                //  broker's own sys.node.*)
    uint64_t events_dropped;    //  event copies dropped for slow subscribers
    uint64_t malformed;         //  messages refused as malformed (and frames
                                //  over max_frame that reached the broker)
    uint64_t refused;           //  other requests refused (protocol,
                                //  unknown verb, quota, ...) and events
                                //  dropped for their topic
    uint64_t lost;              //  answers, bounces and NODE_DOWNs that could
                                //  not be sent: the client's own queue was
                                //  full (it sends faster than it reads)
} tr_broker_stats_t;

//  Binds and starts the broker on its own thread, with a ZeroMQ context
//  of its own. The endpoint is bound before this returns, so clients may
//  connect at once. On TR_OK, *self_p owns it (tr_broker_stop). Errors:
//  TR_EINVAL (no or bad endpoint, bad options), TR_ESYS (the endpoint
//  could not be bound: in use, no permission; errno says which, and the
//  reason is logged), TR_ENOMEM.
TR_EXPORT int
    tr_broker_start (const tr_broker_opts_t *opts, tr_broker_t **self_p);

//  The endpoint the broker is bound to (ZMQ_LAST_ENDPOINT), with the real
//  port when the options asked for "*". Owned by the broker; valid until
//  tr_broker_stop. NULL for NULL.
TR_EXPORT const char *
    tr_broker_endpoint (const tr_broker_t *self);

//  Copies the counters into *stats; safe from any thread while the
//  broker runs. Returns TR_OK or TR_EINVAL.
TR_EXPORT int
    tr_broker_stats (tr_broker_t *self, tr_broker_stats_t *stats);

//  Stops the broker (clients see it go silent and reconnect elsewhere or
//  later; nothing queued for them is sent), frees it, sets *self_p to
//  NULL. Accepts NULL.
TR_EXPORT void
    tr_broker_stop (tr_broker_t **self_p);

#ifdef __cplusplus
}
#endif

#endif
