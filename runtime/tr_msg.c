/*  tr_msg.c - message allocation and accessors; see tr_msg.h.

    A message is one allocation: the header, then the receiver's and the
    sender's names, then the body.
*/

#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mbox.h"

#include <stdlib.h>
#include <string.h>

tr_msg_t *
tr__msg_new (tr_node_t *node, int kind, int priority, const char *to,
             const char *from, const void *body, size_t size)
{
    size_t to_len = strlen (to) + 1;
    size_t from_len = strlen (from) + 1;
    tr_msg_t *self = (tr_msg_t *) malloc (sizeof *self + to_len + from_len + size);
    if (!self)
        return NULL;
    self->tag = TR__MSG_TAG;
    self->kind = (uint8_t) kind;
    self->priority = (int8_t) priority;
    self->flags = 0;
    self->error = 0;
    self->size = (uint32_t) size;
    self->next = NULL;
    self->reply_to = NULL;
    self->node = node;
    self->id = 0;
    self->corr = 0;
    self->trace = 0;
    self->deadline_ns = 0;
    memcpy (self->data, to, to_len);
    memcpy (self->data + to_len, from, from_len);
    self->to = self->data;
    self->from = self->data + to_len;
    if (size) {
        memcpy (self->data + to_len + from_len, body, size);
        self->body = (const uint8_t *) self->data + to_len + from_len;
    }
    else
        self->body = NULL;
    return self;
}

void
tr__msg_free (tr_msg_t *self)
{
    if (!self)
        return;
    assert (self->tag == TR__MSG_TAG);
    tr__mbox_unref (&self->reply_to);
    self->tag = TR__DEAD_TAG;
    free (self);
}

void
tr__msg_finish (tr__ctx_t *ctx, tr_msg_t *self, int error)
{
    if (self->kind == TR_KIND_ASK
    &&  !(self->flags & (TR__MSG_REPLIED | TR__MSG_DEFERRED)))
        tr__reply_error_from (ctx, self, error);
    if (!(self->flags & TR__MSG_DEFERRED))
        tr__msg_free (self);
}

int
tr_msg_kind (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    return self->kind;
}

const void *
tr_msg_body (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    return self->body;
}

size_t
tr_msg_size (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    return self->size;
}

const char *
tr_msg_from (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    return self->from;
}

const char *
tr_msg_to (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    return self->to;
}

uint64_t
tr_msg_id (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    return self->id;
}

uint64_t
tr_msg_corr (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    return self->corr;
}

uint64_t
tr_msg_trace (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    return self->trace;
}

int
tr_msg_priority (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    return self->priority;
}

int
tr_msg_error (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    return self->error;
}

int64_t
tr_msg_remaining_ms (const tr_msg_t *self)
{
    assert (self && self->tag == TR__MSG_TAG);
    if (!self->deadline_ns)
        return -1;
    int64_t left = self->deadline_ns - tr__now_ns ();
    return left <= 0? 0: left / 1000000;
}

tr_msg_t *
tr_defer (const tr_msg_t *request)
{
    if (!request || request->tag != TR__MSG_TAG || request->kind != TR_KIND_ASK
    ||  (request->flags & (TR__MSG_REPLIED | TR__MSG_DEFERRED)))
        return NULL;
    tr_msg_t *self = (tr_msg_t *) request;
    self->flags |= TR__MSG_DEFERRED;
    //  Tell the handling loop too: once the handler returns, another
    //  thread may own the message, so the loop must not read its flags.
    tr_actor_t *actor = tr_self ();
    if (actor && actor->current == request)
        actor->deferred = true;
    return self;
}

void
tr_msg_destroy (tr_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tr_msg_t *self = *self_p;
    *self_p = NULL;
    assert (self->tag == TR__MSG_TAG);
    if (self->kind == TR_KIND_ASK && !(self->flags & TR__MSG_REPLIED)) {
        //  A deferred ask dropped unanswered: tell the asker now.
        tr__ctx_t ctx;
        if (tr__ctx_enter (self->node, &ctx) == TR_OK) {
            tr__reply_error_from (&ctx, self, TR_ENOREPLY);
        }
    }
    tr__msg_free (self);
}
