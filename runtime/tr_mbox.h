/*  tr_mbox.h - the mailbox: a queue and a ZeroMQ socket owned by the
    node (internal).

    Each mailbox has two parts, both owned by the node and both outliving
    any one thread of its actor:
    - a lock-free queue (Vyukov's intrusive multi-producer, single-consumer
      list) that carries in-process messages as pointers to tr_msg_t:
      a sender links the message in with one atomic exchange, the owner
      unlinks it with plain loads;
    - a ZeroMQ ROUTER socket bound to its own inproc endpoint, in which
      the owner sleeps when there is nothing to do. A sender rings it (an
      empty frame, through the sender's own socket, connected to the
      endpoint on first use) only when the owner has said it is asleep.

    Why not a ZeroMQ frame per message, which the first version of this
    file did: measured with callgrind, libzmq's two-frame ROUTER send and
    receive alone cost about 1,900 instructions per message, more than a
    whole message through a raw PUSH/PULL pair (about 1,200), so no design
    that moves every message through ZeroMQ frames can come close to raw
    ZeroMQ's throughput; and a receiver woken per frame pays a system call
    per message. The queue moves a message in tens of instructions; ZeroMQ
    does what it is best at, sleeping and waking, and later carries what
    leaves the process.

    The owner spins on the queue for a while before it sleeps, so two busy
    actors exchange messages without a system call; it does so only while
    the node's awake actor threads fit on the cores (see s_await).

    Counting: `depth` is the number of messages reserved and not yet
    taken; senders reserve with a compare-and-swap that also checks the
    bound and the closed bit, so the bound is exact and no message can
    slip into a mailbox after it closes. Replies and runtime signals skip
    the bound. A sender waiting for room is woken once the mailbox has
    drained to half its bound, not once per freed place.

    Threads: tr__mbox_post may be called by any thread, but `src` must be
    a mailbox the calling thread owns (its socket rings the receiver).
    take, wait_reply, shut and close are for the owner only.
*/
#ifndef TR_MBOX_H_INCLUDED
#define TR_MBOX_H_INCLUDED

#include "tr_internal.h"
#include "tr_breaker.h"

#define TR__MBOX_CLOSED   (UINT64_C (1) << 63)
#define TR__RID_LEN       17            //  'C' + 16 hex digits

struct tr__mbox {
    uint32_t tag;
    uint64_t id;
    tr_node_t *node;
    char *name;                         //  registered name, or NULL
    tr_actor_t *actor;                  //  the actor it belongs to, or NULL
    char rid [TR__RID_LEN + 1];         //  routing id senders use
    char endpoint [64];
    void *sock;                         //  ROUTER; owner thread only
    size_t capacity;                    //  bound for tells and asks
    int on_full;                        //  tr_full_policy_t
    tr__mbox_t *next_port;              //  free list of lent ports

    //  The queue's producer end: the message pushed last.
    _Alignas (64) _Atomic (tr__link_t *) q_head;
    //  The owner sleeps in ZeroMQ while this is 1; a sender that swaps it
    //  back to 0 must ring.
    atomic_int sleeping;

    //  Written by senders. `refs` sits here because whoever answers an
    //  ask drops its reference to the asker's mailbox right after posting
    //  to it: one cache line moves instead of two.
    _Alignas (64) atomic_uint_fast64_t depth;   //  count | CLOSED bit
    atomic_int refs;
    atomic_uint_fast64_t rejected;
    atomic_int waiters;                 //  senders waiting for room
    pthread_mutex_t room_lock;
    pthread_cond_t room;

    //  Owner only.
    _Alignas (64) tr__link_t *q_tail;   //  the queue's consumer end
    tr__link_t q_stub;
    tr_msg_t *head [TR__PRIO_LEVELS];
    tr_msg_t *tail [TR__PRIO_LEVELS];
    tr_msg_t *replies;                  //  answers for a blocking ask
    uint64_t waiting_for;               //  id of that ask, or 0
    uint64_t next_id;                   //  ids of messages sent from here
    int64_t spin_ns;                    //  current spin budget
    int64_t spin_max_ns;
    int rcvtimeo;                       //  ZMQ_RCVTIMEO now set
    bool unbound;                       //  shut: endpoint released

    //  The circuit breaker (off unless a supervisor turns it on).
    tr__breaker_t breaker;

    //  Written by the owner, read by anyone.
    atomic_uint_fast64_t arrived;       //  everything taken off the queue
    atomic_uint_fast64_t received;
    atomic_uint_fast64_t handled;
    atomic_uint_fast64_t failed;
    atomic_uint_fast64_t dead;
    atomic_uint_fast64_t handle_ns_total;
    atomic_uint_fast64_t handle_ns_max;

    //  Named counters the actor shows in status (tr_actor_info_set), made
    //  on first use; freed with the mailbox.
    _Atomic (struct tr__info *) info;
};

//  Creates a mailbox with its socket bound; the calling thread owns it
//  until it hands it over (thread start) with a memory barrier. name may
//  be NULL (ports, services). Returns TR_OK, TR_ENOMEM, TR_ELIMIT (no
//  socket left in the context or no descriptor) or TR_ESYS.
int
    tr__mbox_new (tr_node_t *node, const char *name, size_t capacity,
                  int on_full, tr__mbox_t **mbox_p);

//  Takes another reference.
tr__mbox_t *
    tr__mbox_ref (tr__mbox_t *self);

//  Drops a reference and sets *self_p to NULL; the last one frees the
//  mailbox, whose socket must be closed by then (tr__mbox_close).
void
    tr__mbox_unref (tr__mbox_t **self_p);

//  Sends msg from the owner of src to dst. On TR_OK dst owns msg. When
//  dst is full and its policy is TR_FULL_WAIT, waits up to wait_ms for
//  room (negative: not at all). Errors: TR_ENOACTOR (dst closed),
//  TR_EFULL, TR_ECIRCUIT (dst's breaker is open and it has no fallback),
//  TR_ESYS, TR_ELIMIT; on error the caller still owns msg. While dst's
//  breaker is open, tells and asks go to its fallback actor instead.
int
    tr__mbox_post (tr__mbox_t *src, tr__mbox_t *dst, tr_msg_t *msg,
                   int wait_ms);

//  Owner of self: the id for the next message sent from self.
static inline uint64_t
tr__mbox_next_id (tr__mbox_t *self)
{
    return ++self->next_id;
}

//  Owner: returns the next message to handle, highest priority first, or
//  NULL if none arrives before deadline_ns (TR__FOREVER to wait forever).
//  The message is no longer counted in depth once returned.
tr_msg_t *
    tr__mbox_take (tr__mbox_t *self, int64_t deadline_ns);

//  Owner: waits until deadline_ns for the answer to the blocking ask with
//  id `id`; other messages that arrive meanwhile stay queued. Returns the
//  answer (owned by the caller) or NULL on timeout.
tr_msg_t *
    tr__mbox_wait_reply (tr__mbox_t *self, uint64_t id, int64_t deadline_ns);

//  Owner: shuts the mailbox for good. New sends fail with TR_ENOACTOR;
//  every message already accepted is drained and counted as a dead
//  letter, and asks among them are answered with `reason` (sent through
//  this mailbox's socket). Then the endpoint is unbound and the counters
//  are added to the node's retired totals. The socket stays open until
//  tr__mbox_close. Does nothing the second time.
void
    tr__mbox_shut (tr__mbox_t *self, int reason);

//  Owner: shuts the mailbox (if not done yet) and closes its socket. To
//  close many mailboxes, shut them all first: see tr__mbox_shut in
//  tr_mbox.c for why.
void
    tr__mbox_close (tr__mbox_t *self, int reason);

//  Owner, for a thread that waits on other sockets too (the broker
//  link): arms the mailbox's socket so that the next sender rings it,
//  and returns it to poll for ZMQ_POLLIN; or returns NULL, unarmed, if
//  messages are waiting already (take them first). After the poll,
//  whatever ended it, call tr__mbox_poll_disarm.
void *
    tr__mbox_poll_arm (tr__mbox_t *self);

//  Owner: consumes any ring and disarms (see tr__mbox_poll_arm).
void
    tr__mbox_poll_disarm (tr__mbox_t *self);

//  Number of messages waiting (reserved, not yet taken).
uint64_t
    tr__mbox_depth (const tr__mbox_t *self);

//  Owner: records a dead letter for msg (counts it, answers an ask with
//  `reason`) and frees it.
void
    tr__mbox_dead_letter (tr__mbox_t *self, tr_msg_t *msg, int reason);

#endif
