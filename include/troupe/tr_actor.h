/*  tr_actor.h - actors: a thread, a behaviour and a mailbox.

    An actor is spawned with a unique name and a behaviour. It runs on its
    own thread and handles one message at a time from its mailbox. The
    mailbox is a ZeroMQ socket owned by the node, not by the thread: it
    exists before the thread starts and after it ends, so messages sent
    while an actor is (re)starting wait for it instead of being lost.

    Lifecycle: tr_spawn registers the name, starts the thread, runs init
    on it and returns only once init has returned (and with init's
    failure, if it failed). tr_actor_stop (or tr_node_destroy) sends the
    actor a stop signal that overtakes queued messages; the actor finishes
    the message in hand, runs terminate, and its thread ends. Messages
    still queued then become dead letters; asks among them are answered
    with TR_ESTOPPED.

    Failure: a handler that returns non-zero has failed that message. The
    failure is counted and an unanswered ask gets TR_EHANDLER. An actor
    spawned directly on a node then goes on with the next message; an
    actor under a supervisor (tr_sup.h) ends its incarnation, and its
    supervisor decides: restart it (a new init on the same thread, the
    same mailbox), or stop it. An actor may also end itself with
    tr_actor_exit. A C actor that corrupts memory takes the whole process
    down with it; code that cannot be trusted that far belongs in a
    separate process (a process child of a supervisor).
*/
#ifndef TR_ACTOR_H_INCLUDED
#define TR_ACTOR_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"
#include "tr_msg.h"
#include "tr_node.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_actor tr_actor_t;

//  What an actor does. All three run on the actor's own thread.
typedef struct {
    //  Optional. Builds the actor's state from the spawn argument and
    //  stores it in *state_p (which starts out as arg). Returns 0, or
    //  non-zero to refuse to start: tr_spawn then returns TR_EINIT and
    //  terminate is not called.
    int (*init) (tr_actor_t *self, void *arg, void **state_p);
    //  Required. Handles one message, which it borrows (see tr_msg.h).
    //  Returns 0 on success, non-zero if handling failed.
    int (*handle) (tr_actor_t *self, const tr_msg_t *msg, void *state);
    //  Optional. Releases the state. reason is TR_OK for an ordinary stop.
    void (*terminate) (tr_actor_t *self, int reason, void *state);
} tr_behaviour_t;

//  What a sender meets when the mailbox is at its bound.
typedef enum {
    TR_FULL_WAIT = 0,   //  wait up to the sender's timeout, then TR_EFULL
    TR_FULL_FAIL = 1    //  refuse at once with TR_EFULL
} tr_full_policy_t;

//  Spawn options. Zero fields take the node's defaults.
typedef struct {
    size_t capacity;            //  mailbox bound, in messages
    int on_full;                //  tr_full_policy_t
    size_t stack_size;          //  thread stack, bytes (min 64 KiB)
} tr_spawn_opts_t;

//  Counters of one actor, since it was spawned. The identity
//  received = handled + failed + dead_letters + depth (+ 1 while a
//  message is being handled) holds at every quiet moment.
typedef struct {
    uint64_t received;          //  messages accepted into the mailbox
    uint64_t handled;           //  handler returned 0
    uint64_t failed;            //  handler returned non-zero
    uint64_t dead_letters;      //  accepted, never handled (expired,
                                //  left over at stop)
    uint64_t rejected;          //  sends refused: mailbox full, or its
                                //  circuit breaker open
    uint64_t depth;             //  messages waiting now
    uint64_t capacity;          //  the mailbox bound
    uint64_t handle_ns_total;   //  time spent in the handler
    uint64_t handle_ns_max;     //  longest single handling
} tr_actor_stats_t;

//  Spawns an actor named `name` (1 to 255 bytes, no control characters or
//  spaces; names starting with '$' are reserved) with behaviour b and
//  argument arg (owned by the caller; it must outlive the actor). opts may
//  be NULL. On TR_OK, if actor_p is not NULL it receives a handle valid
//  until the actor is stopped. Errors: TR_EINVAL (bad name, behaviour or
//  options), TR_EEXIST (the name is taken), TR_EINIT (init refused),
//  TR_ELIMIT (max_actors reached), TR_ECLOSED (node shutting down),
//  TR_ENOMEM, TR_ESYS (thread or socket creation failed).
TR_EXPORT int
    tr_spawn (tr_node_t *node, const char *name, const tr_behaviour_t *b,
              void *arg, const tr_spawn_opts_t *opts, tr_actor_t **actor_p);

//  Stops the actor named `name` and waits up to timeout_ms (<= 0: the
//  node's stop timeout) for its thread to end. Returns TR_OK once it has
//  stopped and its name is free again; TR_ENOACTOR if no actor has that
//  name (or another thread is already stopping it); for an actor under a
//  supervisor, its supervisor stops it for good (tr_sup_stop_child);
//  TR_EDEADLK if called
//  by the actor itself (call tr_actor_exit instead); TR_ETIMEDOUT if the
//  thread did not end in time: the actor is then abandoned (its name is
//  released at once, an error is logged, and its thread and mailbox are
//  kept until tr_node_destroy, which reclaims them if the thread has ended
//  by then, its handler having returned).
TR_EXPORT int
    tr_actor_stop (tr_node_t *node, const char *name, int timeout_ms);

//  Ends the calling actor's current incarnation once its handler returns.
//  reason is TR_OK for a normal exit or a negative code for a failure;
//  text (may be NULL) says why, for status, logs and events. Under a
//  supervisor, its restart policy decides what follows; an actor spawned
//  directly on the node stops for good: its name is released and what is
//  left in its mailbox becomes dead letters. Returns TR_OK, or TR_EINVAL
//  if not called on self's own thread or reason is positive.
TR_EXPORT int
    tr_actor_exit (tr_actor_t *self, int reason, const char *text);

//  Copies the counters of the actor named `name` into *stats. Returns
//  TR_OK or TR_ENOACTOR.
TR_EXPORT int
    tr_actor_stats (tr_node_t *node, const char *name, tr_actor_stats_t *stats);

//  Named counters an actor shows in status (`troupe status` prints them
//  under the actor; tr_sup_status has them as its "info" map), such as
//  the tokens an agent has used. They live in the mailbox, so they outlive
//  restarts, and may be updated from any thread (an HTTP completion, say)
//  while the actor exists. key: 1 to 31 bytes; at most 16 keys per actor.
//  tr_actor_info_set stores a value, tr_actor_info_add adds to it (a new
//  key starts at 0). Return TR_OK, TR_EINVAL (NULL or a bad key),
//  TR_ELIMIT (16 keys already), TR_ENOMEM.
TR_EXPORT int
    tr_actor_info_set (tr_actor_t *self, const char *key, int64_t value);
TR_EXPORT int
    tr_actor_info_add (tr_actor_t *self, const char *key, int64_t delta);

//  Reads the counter `key` of the actor named `name` into *value. Returns
//  TR_OK, TR_ENOACTOR, TR_ENOTFOUND (no such key), TR_EINVAL.
TR_EXPORT int
    tr_actor_info_get (tr_node_t *node, const char *name, const char *key, int64_t *value);

//  The actor's name (owned by the actor).
TR_EXPORT const char *
    tr_actor_name (const tr_actor_t *self);

//  The node the actor lives on.
TR_EXPORT tr_node_t *
    tr_actor_node (const tr_actor_t *self);

//  The actor whose thread is calling, or NULL on any other thread.
TR_EXPORT tr_actor_t *
    tr_self (void);

#ifdef __cplusplus
}
#endif

#endif
