/*  tr_node.h - the node: one per process.

    A node owns what a process's actors share: its own ZeroMQ context,
    the registry of actor names, the named groups, the timer service and
    the orderly shutdown of all of it. The context is the node's, not
    czmq's process-wide one: czmq terminates that one at exit and would
    wait there forever for the socket of an actor that never stopped; the
    node's context is left alone in that case (see tr_node_destroy).

    Threads: every function here may be called from any thread, including
    actor threads, except tr_node_destroy, which must not race with any
    other call on the same node.
*/
#ifndef TR_NODE_H_INCLUDED
#define TR_NODE_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_node tr_node_t;

//  Options for a node. Zero in any field means "use the default" given in
//  its comment, so a zeroed struct is a valid configuration.
typedef struct {
    //  Most actors the node may hold at once (default 16384). Each actor
    //  uses one ZeroMQ socket, and so one file descriptor; the node raises
    //  its soft descriptor limit toward the hard one when it needs to.
    size_t max_actors;
    //  Default bound of an actor's mailbox, in messages (default 1024).
    size_t mailbox_capacity;
    //  Default time a sender waits for room in a full mailbox whose policy
    //  is TR_FULL_WAIT, when the send itself gives no timeout (default
    //  1000 ms).
    int send_timeout_ms;
    //  Default stack size of an actor thread (default 256 KiB).
    size_t stack_size;
    //  Longest time an actor's thread spins waiting for its next message
    //  before it sleeps, in microseconds (default 50). The spin adapts: it
    //  stops after waits too long for it and comes back after short ones.
    //  It only happens while the node's awake actor threads fit on the
    //  cores; when they do not, a waiting thread yields its core a few
    //  times instead. A negative value turns both off: threads always
    //  sleep in ZeroMQ.
    int spin_us;
    //  Time each actor gets to stop when the node is destroyed (default
    //  5000 ms). An actor that has not stopped by then is abandoned.
    int stop_timeout_ms;
    //  The broker to join (protocols/2-broker.md), e.g.
    //  "tcp://127.0.0.1:7700", or NULL to stay on your own. With a
    //  broker, the node registers its actors' names there, and tells and
    //  asks to names it does not hold go through the broker to whichever
    //  node does, with the same results and errors as local ones (plus
    //  TR_ENODE when the node holding the name goes down). The node keeps
    //  its link up by itself: heartbeats, and reconnection with backoff.
    const char *broker;
    //  This node's id in the troupe (default "HOST:PID"). Unique among
    //  the broker's clients: a second node with the same id replaces the
    //  first.
    const char *node_id;
    //  Heartbeat interval with the broker (default 1000 ms); a broker
    //  silent for three of them is taken for gone.
    int heartbeat_ms;
    //  CURVE with the broker (protocols/2-broker.md 2.10): this node's
    //  own key pair (a secret key file, which must be the user's with
    //  mode 0600 or 0400) and the broker's public key (its public key
    //  file; its secret file also does). Both or neither; files in
    //  czmq's zcert format, as `troupe keygen` writes them. They are
    //  read once, by tr_node_new, which fails with TR_EACCES (a secret
    //  key file others may read or write, or not the user's),
    //  TR_ENOTFOUND, TR_EMALFORMED (not a key file) or TR_EINVAL (only
    //  one of the two), the reason logged. The broker must have this
    //  node's public key in its allow folder: a refused node never gets
    //  past the handshake, and sees the broker as silent. Ignored
    //  without a broker. Not used after tr_node_new returns (tr_node_opts
    //  gives back the pointers as they were passed).
    const char *curve_secret_file;
    const char *curve_server_public_file;
} tr_node_opts_t;

//  Counters of the whole node. Since creation:
typedef struct {
    uint64_t actors;            //  actors alive now
    uint64_t spawned;           //  actors spawned
    uint64_t sent;              //  messages accepted into some mailbox
    uint64_t dead_letters;      //  accepted but never handled (expired,
                                //  left in a stopped actor's mailbox,
                                //  late replies, timer ticks to nobody)
    uint64_t rejected;          //  sends refused (full mailbox)
    uint64_t unknown;           //  sends to a name nobody has
} tr_node_stats_t;

//  Creates a node. On success stores it in *node_p and returns TR_OK;
//  otherwise returns TR_EINVAL (bad options), TR_ENOMEM, TR_ELIMIT (the
//  ZeroMQ context was already in use with fewer sockets than max_actors
//  needs, or the descriptor limit cannot cover it) or TR_ESYS. opts may be
//  NULL for all defaults. The caller owns the node.
TR_EXPORT int
    tr_node_new (const tr_node_opts_t *opts, tr_node_t **node_p);

//  Stops every actor (each gets stop_timeout_ms), turns the messages still
//  in their mailboxes into dead letters (an ask among them gets a
//  TR_ESTOPPED error), stops the timers, closes every socket and frees the
//  node. Sets *self_p to NULL. Accepts NULL. An actor abandoned earlier
//  (see tr_actor_stop) gets the same time to end. If an actor's thread
//  still has not ended, the node and its resources are deliberately
//  leaked (that thread may still use them) and an error is logged.
TR_EXPORT void
    tr_node_destroy (tr_node_t **self_p);

//  Fills *stats with the node's counters. Returns TR_OK or TR_EINVAL.
TR_EXPORT int
    tr_node_stats (tr_node_t *self, tr_node_stats_t *stats);

//  Returns the options in force (defaults filled in).
TR_EXPORT const tr_node_opts_t *
    tr_node_opts (const tr_node_t *self);

#ifdef __cplusplus
}
#endif

#endif
