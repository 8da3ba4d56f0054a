/*  tr_remote.h - a node's link to the broker (internal).

    One thread per node that joined a broker (tr_node_opts_t.broker). It
    owns a DEALER socket to the broker and a mailbox, the gateway, into
    which local senders post every message for a name the node does not
    hold: tells and asks, and the answers to asks that came from other
    nodes. It speaks protocols/2-broker.md:

    - greets, registers every local name (and each new one, and gives up
      each one that goes), and re-does all of that after a reconnection;
    - sends each gateway message as SEND with its envelope
      (protocols/1-envelope.md); an ask gets a link-wide id on the wire
      and is remembered, with its asker's mailbox, until its answer, its
      bounce, its node's NODE_DOWN or its deadline;
    - delivers each DELIVER to the local mailbox of its name (an ask
      answered through the gateway), answers an ask for a name it does
      not hold with TR_ENOACTOR, and hands answers to the asks it
      remembers to their askers;
    - sends heartbeats when idle, takes the broker for gone after three
      silent intervals, reconnects with jittered backoff (100 ms doubling
      to 5 s) and keeps what it could not send meanwhile until each
      message's deadline (asks) or up to a bound (tells), after which
      they fail (TR_ETIMEDOUT to the asker) or become dead letters.

    A sender whose envelope has no `from` (a thread that is not an actor)
    appears to the receiver as "$node.NODE_ID", so that answers find
    their way back.
*/
#ifndef TR_REMOTE_H_INCLUDED
#define TR_REMOTE_H_INCLUDED

#include "tr_internal.h"
#include "tr_wire.h"
#include "troupe/tr_scratch.h"

typedef struct tr__remote tr__remote_t;

//  Starts the link of `node` to the broker at opts->broker. Returns at
//  once (the connection is made in the background) with TR_OK and
//  *self_p, or TR_EINVAL (bad endpoint or node id), TR_ENOMEM, TR_ESYS.
int
    tr__remote_start (tr_node_t *node, tr__remote_t **self_p);

//  The mailbox that takes messages for names this node does not hold
//  (no reference is taken: it lives until tr__remote_stop).
tr__mbox_t *
    tr__remote_gateway (tr__remote_t *self);

//  Tells the link that a local name appeared (added) or went. Any thread;
//  never blocks.
void
    tr__remote_name (tr__remote_t *self, const char *name, bool added);

//  A request to the broker and, once it came, its answer.
typedef struct tr__call tr__call_t;

//  Sends a request to the broker and waits up to timeout_ms for its
//  answer. `frame` is a command frame written with tr__wire_begin with
//  the SEQ from tr__remote_call_seq, `payload` an optional second frame
//  (NULL for none). Any thread. On TR_OK, *reply_p holds the answer's
//  frame and payload (free with tr__remote_reply_free); its verb is OK.
//  Errors: the broker's ERROR code, TR_ETIMEDOUT (no answer in time,
//  including while the broker is away), TR_ESTOPPED (the node is
//  stopping), TR_ENOMEM.
typedef struct {
    uint8_t *frame;
    size_t frame_size;
    uint8_t *payload;           //  NULL when none
    size_t payload_size;
} tr__reply_t;

int
    tr__remote_call (tr__remote_t *self, const tr__wire_out_t *frame, const void *payload,
                     size_t payload_size, int timeout_ms, tr__reply_t *reply_p);

//  As tr__remote_call, without waiting: `done` is called exactly once on
//  the link's thread with the outcome (rc as tr__remote_call returns it;
//  on TR_OK, reply points at the answer's frames, valid during the call
//  only), by timeout_ms or at the first sweep after it. Takes the frame's
//  buffer (the writer is left empty, as if ended) unless the frame failed.
//  Returns TR_OK, or TR_ENOMEM / TR_ESTOPPED, in which case done is never
//  called.
typedef void (tr__call_fn) (int rc, const tr__reply_t *reply, void *arg);
int
    tr__remote_call_async (tr__remote_t *self, tr__wire_out_t *frame,
                           const void *payload, size_t payload_size, int timeout_ms,
                           tr__call_fn *done, void *arg);

//  The SEQ for a request frame that tr__remote_call will send (a range of
//  its own, apart from the link's).
uint64_t
    tr__remote_call_seq (tr__remote_t *self);

void
    tr__remote_reply_free (tr__reply_t *reply);

//  Events: hands a local event to the broker (the node delivers it to its
//  own subscribers itself), and keeps the broker's subscriptions in step
//  with the node's prefixes (counted: the first SUBs, the last UNSUBs).
//  Any thread; never blocks.
void
    tr__remote_publish (tr__remote_t *self, const char *topic, const void *body, size_t size);
void
    tr__remote_subscribe (tr__remote_t *self, const char *prefix, bool on);

//  Scratchpad watches: every change under prefix goes to the local actor
//  as a tell [KEY, VERSION, VALUE] (VALUE nil for a deletion), in version
//  order; [PREFIX, 0, "resync"] when the broker could not keep up (the
//  link then watches again from the present). The link holds one watch
//  per prefix at the broker, whatever number of local actors, and after
//  a reconnection watches again from the last version it delivered, so
//  that nothing in between is missed while the broker still has it.
//  Any thread; never blocks.
void
    tr__remote_watch (tr__remote_t *self, const char *prefix, const char *actor, bool on);

//  Replicas (tr_scratch.h): the link keeps each one up to date from its
//  snapshot and the prefix's watch. tr__remote_replica hands it one
//  (taking a reference) or takes it back. The replica's own functions
//  are in tr_remote.c too, as they share its state with the link.
void
    tr__remote_replica (tr__remote_t *self, tr_replica_t *replica, bool on);

//  Says goodbye to the broker, fails the asks still waiting for remote
//  answers (TR_ESTOPPED), stops the thread, frees the link and sets
//  *self_p to NULL. Accepts NULL.
void
    tr__remote_stop (tr__remote_t **self_p);

//  True once greeted by the broker and not known to have lost it (for
//  tests and status).
bool
    tr__remote_connected (tr__remote_t *self);

#endif
