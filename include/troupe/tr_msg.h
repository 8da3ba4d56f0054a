/*  tr_msg.h - a message as an actor sees it.

    A message is an envelope (kind, sender, receiver, message id,
    correlation id, priority, deadline, trace id) around an opaque body.
    Bodies are msgpack: every send checks that the body is exactly one
    well-formed msgpack value (or empty), so that a message means the same
    thing in this process and on the wire (see protocols/1-envelope.md).

    Ownership: a handler receives a message it only borrows; the runtime
    frees it when the handler returns. A reply returned by tr_ask belongs
    to the caller, who frees it with tr_msg_destroy. A handler that wants
    to answer a request later takes ownership with tr_defer.
*/
#ifndef TR_MSG_H_INCLUDED
#define TR_MSG_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_msg tr_msg_t;

//  What a message is. Values are part of the wire protocol.
typedef enum {
    TR_KIND_TELL  = 1,      //  fire and forget
    TR_KIND_ASK   = 2,      //  a request that expects one reply
    TR_KIND_REPLY = 3,      //  the answer to an ask (corr = the ask's id)
    TR_KIND_ERROR = 4       //  an ask that failed; tr_msg_error says why
} tr_kind_t;

//  Handling order inside one mailbox: a HIGH message is handled before
//  NORMAL ones already queued, and NORMAL before LOW. Within one level,
//  messages from one sender keep their order.
typedef enum {
    TR_PRIO_LOW    = -1,
    TR_PRIO_NORMAL =  0,
    TR_PRIO_HIGH   =  1
} tr_priority_t;

//  The kind of the message (tr_kind_t).
TR_EXPORT int
    tr_msg_kind (const tr_msg_t *self);

//  The body bytes (msgpack), or NULL when the body is empty. Valid as long
//  as the message.
TR_EXPORT const void *
    tr_msg_body (const tr_msg_t *self);

//  Size of the body in bytes (0 for an empty body).
TR_EXPORT size_t
    tr_msg_size (const tr_msg_t *self);

//  Name of the sender: an actor's name, or "" when the sender was not an
//  actor (the main thread, a timer). Never NULL.
TR_EXPORT const char *
    tr_msg_from (const tr_msg_t *self);

//  Name the message was sent to. Never NULL.
TR_EXPORT const char *
    tr_msg_to (const tr_msg_t *self);

//  The message id, unique per sender.
TR_EXPORT uint64_t
    tr_msg_id (const tr_msg_t *self);

//  For a reply or an error, the id of the ask it answers; 0 otherwise.
TR_EXPORT uint64_t
    tr_msg_corr (const tr_msg_t *self);

//  The trace id. A message sent while handling another one inherits its
//  trace id unless the sender gives one, so a whole conversation shares it.
TR_EXPORT uint64_t
    tr_msg_trace (const tr_msg_t *self);

//  The priority the message was sent with (tr_priority_t).
TR_EXPORT int
    tr_msg_priority (const tr_msg_t *self);

//  For TR_KIND_ERROR, the error code (a negative tr_error_t); 0 otherwise.
TR_EXPORT int
    tr_msg_error (const tr_msg_t *self);

//  Milliseconds left before the message's deadline, 0 if it has passed,
//  or -1 if the message has no deadline.
TR_EXPORT int64_t
    tr_msg_remaining_ms (const tr_msg_t *self);

//  Takes ownership of a request being handled, so that it can be answered
//  after the handler returns (with tr_reply or tr_reply_error, from any
//  thread). Returns the same message, now owned by the caller, or NULL if
//  the message is not an ask that is still unanswered, or is already
//  deferred. Destroying a deferred ask that was never answered sends the
//  asker a TR_ENOREPLY error, so that nobody waits for an answer that will
//  not come. A deferred ask counts for the actor's circuit breaker when it
//  is answered, not when its handler returns: tr_reply is a success,
//  tr_reply_error a failure (except TR_EINVAL and TR_EMALFORMED, the
//  asker's own mistakes).
TR_EXPORT tr_msg_t *
    tr_defer (const tr_msg_t *request);

//  Frees a message the caller owns (a reply from tr_ask, a deferred
//  request) and sets *self_p to NULL. Accepts NULL and *self_p == NULL.
TR_EXPORT void
    tr_msg_destroy (tr_msg_t **self_p);

#ifdef __cplusplus
}
#endif

#endif
