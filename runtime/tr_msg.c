/*  tr_msg.c - message allocation and accessors; see tr_msg.h.

    A message is one allocation: the header, then the receiver's and the
    sender's names, then the body.
*/

#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mbox.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Recycling message memory
//
//  A message is allocated by its sender's thread and freed by its
//  receiver's, so with plain malloc both sides fight over the sender's
//  arena lock on every message (glibc's per-thread cache only helps when
//  the freeing thread allocates too). Small messages are therefore
//  recycled: each thread draws blocks from its own private list, which it
//  refills by taking, in one exchange, everything that receivers have
//  given back to its shard; receivers push freed blocks onto the shard of
//  the thread that allocated them. Shards are static, so a block can be
//  given back whatever has been destroyed since (a reply freed long after
//  its node, say). A shard keeps at most S_SHARD_KEEP blocks; more go
//  back to malloc. Under AddressSanitizer recycling is off, so that a use
//  after free is still caught.

#define S_BLOCK         256             //  bytes of a recycled block
#define S_SHARDS        64
#define S_SHARD_KEEP    4096

#if defined (__SANITIZE_ADDRESS__)
#   define S_RECYCLE 0
#elif defined (__has_feature)
#   if __has_feature (address_sanitizer)
#       define S_RECYCLE 0
#   endif
#endif
#if !defined (S_RECYCLE)
#   define S_RECYCLE 1
#endif

typedef struct s_block {
    struct s_block *next;
} s_block_t;

static struct {
    _Alignas (64) _Atomic (s_block_t *) head;
    atomic_int count;
} s_shards [S_SHARDS];

static atomic_uint s_next_shard;
static __thread int s_my_shard = -1;
static __thread s_block_t *s_private;
static pthread_key_t s_private_key;
static pthread_once_t s_private_once = PTHREAD_ONCE_INIT;

//  At thread exit, the private list goes back to malloc.
static void
s_private_free (void *unused)
{
    while (s_private) {
        s_block_t *b = s_private;
        s_private = b->next;
        free (b);
    }
}

static void
s_private_key_create (void)
{
    pthread_key_create (&s_private_key, s_private_free);
}

//  A block of S_BLOCK bytes; *shard says where to give it back.
static void *
s_block_new (int16_t *shard)
{
    if (s_my_shard < 0) {
        s_my_shard = (int) (atomic_fetch_add (&s_next_shard, 1) % S_SHARDS);
        pthread_once (&s_private_once, s_private_key_create);
        pthread_setspecific (s_private_key, &s_my_shard);   //  arms the destructor
    }
    if (!s_private && atomic_load_explicit (&s_shards [s_my_shard].head, memory_order_relaxed)) {
        s_private = atomic_exchange_explicit (&s_shards [s_my_shard].head, NULL,
                                              memory_order_acquire);
        atomic_store_explicit (&s_shards [s_my_shard].count, 0, memory_order_relaxed);
    }
    *shard = (int16_t) s_my_shard;
    s_block_t *b = s_private;
    if (b) {
        s_private = b->next;
        return b;
    }
    return malloc (S_BLOCK);
}

static void
s_block_free (void *block, int shard)
{
    if (atomic_fetch_add_explicit (&s_shards [shard].count, 1, memory_order_relaxed)
        >= S_SHARD_KEEP) {
        atomic_fetch_sub_explicit (&s_shards [shard].count, 1, memory_order_relaxed);
        free (block);
        return;
    }
    s_block_t *b = (s_block_t *) block;
    s_block_t *head = atomic_load_explicit (&s_shards [shard].head, memory_order_relaxed);
    do
        b->next = head;
    while (!atomic_compare_exchange_weak_explicit (&s_shards [shard].head, &head, b,
                                                   memory_order_release, memory_order_relaxed));
}

//  --------------------------------------------------------------------------

tr_msg_t *
tr__msg_new (tr_node_t *node, int kind, int priority, const char *to,
             const char *from, const void *body, size_t size)
{
    size_t to_len = strlen (to) + 1;
    size_t from_len = strlen (from) + 1;
    size_t total = sizeof (tr_msg_t) + to_len + from_len + size;
    int16_t pool = -1;
    tr_msg_t *self = (tr_msg_t *) (S_RECYCLE && total <= S_BLOCK?
                                   s_block_new (&pool): malloc (total));
    if (!self)
        return NULL;
    self->tag = TR__MSG_TAG;
    self->kind = (uint8_t) kind;
    self->priority = (int8_t) priority;
    self->flags = 0;
    self->error = 0;
    self->size = (uint32_t) size;
    self->pool = pool;
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
    if (self->pool >= 0)
        s_block_free (self, self->pool);
    else
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
