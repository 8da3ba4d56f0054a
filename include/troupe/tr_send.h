/*  tr_send.h - telling, asking and replying.

    Addressing: by name (tr_tell, tr_ask), or through a reference looked up
    once (tr_ref_new, tr_tell_ref, tr_ask_ref), which skips the registry
    lookup on every send. A reference points at the actor's mailbox, which
    outlives restarts of the actor, so it stays valid until the actor is
    stopped for good; after that sends through it return TR_ENOACTOR.

    Sender: a call made on an actor's thread is sent from that actor (its
    name is the message's "from", and replies come back to its mailbox).
    A call from any other thread is sent anonymously ("from" is ""),
    through a mailbox of its own (a port) that the thread keeps while it
    lives. Either way, messages from one sender to one receiver arrive in
    the order they were sent (within one priority).

    Bodies: each body must be empty (size 0) or exactly one well-formed
    msgpack value of at most TR_BODY_MAX bytes, nested at most
    TR_BODY_MAX_DEPTH deep; otherwise the send returns TR_EMALFORMED,
    TR_ETOOBIG or TR_EDEPTH and nothing is sent. The body is copied.

    Full mailboxes: if the receiver's mailbox is at its bound, a receiver
    with policy TR_FULL_FAIL refuses at once with TR_EFULL; one with
    TR_FULL_WAIT makes the sender wait up to its timeout, then TR_EFULL.
    Replies and errors are never refused, so an ask cannot fail because
    the asker's own mailbox is full.

    Every refused or failed send is counted (tr_actor_stats,
    tr_node_stats); nothing is dropped silently.
*/
#ifndef TR_SEND_H_INCLUDED
#define TR_SEND_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"
#include "tr_msg.h"
#include "tr_node.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Largest body, in bytes, and deepest nesting of a body.
#define TR_BODY_MAX         (16u * 1024u * 1024u)
#define TR_BODY_MAX_DEPTH   32

//  Per-send options. A zeroed struct (or NULL) means: normal priority,
//  the node's send timeout, no expiry, inherited or new trace id.
typedef struct {
    //  tr_priority_t.
    int priority;
    //  How long the call may wait for room in a full TR_FULL_WAIT mailbox,
    //  in ms. 0 = the node's default; negative = do not wait at all. For
    //  an ask, the ask's own timeout bounds this too.
    int timeout_ms;
    //  For tells: after this many ms the message expires; if it is still
    //  queued then, it is not handled but counted as a dead letter. 0 = no
    //  expiry. (An ask always expires at its timeout.)
    int ttl_ms;
    //  Trace id to carry; 0 = inherit from the message being handled, or
    //  start a new trace.
    uint64_t trace_id;
} tr_send_opts_t;

typedef struct tr_ref tr_ref_t;

//  Sends body to the actor registered as `to`. Returns TR_OK once the
//  message is in the mailbox; TR_ENOACTOR if no actor has that name;
//  TR_EFULL if the mailbox stayed full (see above); TR_ECIRCUIT if the
//  actor's circuit breaker is open and it has no fallback (tr_sup.h);
//  TR_EINVAL for a NULL or invalid name or options; body errors as above.
TR_EXPORT int
    tr_tell (tr_node_t *node, const char *to, const void *body, size_t size,
             const tr_send_opts_t *opts);

//  Sends an ask and waits up to timeout_ms (> 0) for the answer. On
//  TR_OK, *reply_p holds the reply (TR_KIND_REPLY), owned by the caller
//  (free it with tr_msg_destroy). Otherwise *reply_p is NULL and the
//  result says why: TR_ETIMEDOUT (no answer in time), TR_ENOACTOR,
//  TR_EFULL, TR_ECIRCUIT, the error the receiver answered with (TR_EHANDLER when its
//  handler failed, TR_ENOREPLY when it returned without answering,
//  TR_ESTOPPED when it stopped first, or any code it chose), TR_EDEADLK
//  when an actor asks itself, or the send errors above. While an actor
//  waits in tr_ask, its other messages stay queued for later.
TR_EXPORT int
    tr_ask (tr_node_t *node, const char *to, const void *body, size_t size,
            int timeout_ms, tr_msg_t **reply_p, const tr_send_opts_t *opts);

//  Sends an ask without waiting: the answer arrives later at the calling
//  actor's handler as a TR_KIND_REPLY or TR_KIND_ERROR message whose
//  tr_msg_corr equals *id_p. If no answer comes within timeout_ms, the
//  receiver drops the ask unhandled; the caller keeps its own timer if it
//  needs to know (see tr_timer.h). Must be called on an actor's thread
//  (TR_EINVAL otherwise). Errors as tr_tell.
TR_EXPORT int
    tr_request (tr_node_t *node, const char *to, const void *body,
                size_t size, int timeout_ms, uint64_t *id_p,
                const tr_send_opts_t *opts);

//  Answers an ask. May be called once per ask: from its handler, or
//  after tr_defer from any thread. Returns TR_OK, TR_EINVAL if request
//  is not an ask or was already answered, or body errors. If the asker
//  has gone or stopped waiting, the reply is counted as a dead letter
//  and TR_OK is still returned (the answer was given).
TR_EXPORT int
    tr_reply (const tr_msg_t *request, const void *body, size_t size);

//  Answers an ask with an error code (a negative tr_error_t, or a
//  negative application code below -1000). Same rules as tr_reply.
TR_EXPORT int
    tr_reply_error (const tr_msg_t *request, int error);

//  Looks a name up once. On TR_OK stores a new reference in *ref_p, owned
//  by the caller; TR_ENOACTOR if no actor has the name.
TR_EXPORT int
    tr_ref_new (tr_node_t *node, const char *name, tr_ref_t **ref_p);

//  Releases a reference and sets *ref_p to NULL. Accepts NULL.
TR_EXPORT void
    tr_ref_destroy (tr_ref_t **ref_p);

//  The name the reference points at.
TR_EXPORT const char *
    tr_ref_name (const tr_ref_t *ref);

//  tr_tell through a reference. TR_ENOACTOR once the actor has stopped.
TR_EXPORT int
    tr_tell_ref (tr_ref_t *ref, const void *body, size_t size,
                 const tr_send_opts_t *opts);

//  tr_ask through a reference.
TR_EXPORT int
    tr_ask_ref (tr_ref_t *ref, const void *body, size_t size, int timeout_ms,
                tr_msg_t **reply_p, const tr_send_opts_t *opts);

#ifdef __cplusplus
}
#endif

#endif
