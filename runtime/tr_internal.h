/*  tr_internal.h - what the runtime's modules share and users never see.

    The structs behind the public handles (node, actor, message), the
    runtime's own message kinds, and the "sending context": which mailbox
    a calling thread sends from.
*/
#ifndef TR_INTERNAL_H_INCLUDED
#define TR_INTERNAL_H_INCLUDED

#include "troupe/tr_actor.h"
#include "troupe/tr_error.h"
#include "troupe/tr_log.h"
#include "troupe/tr_msg.h"
#include "troupe/tr_node.h"
#include "troupe/tr_send.h"
#include "troupe/tr_type.h"

#include <czmq.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct tr__mbox tr__mbox_t;
typedef struct tr__child tr__child_t;

//  A link in a mailbox's lock-free queue (see tr_mbox.h).
typedef struct tr__link {
    _Atomic (struct tr__link *) next;
} tr__link_t;
typedef struct tr__timers tr__timers_t;
typedef struct tr__http tr__http_t;

//  Tags at the start of each object; checked at the API boundary and
//  overwritten on destroy so that a stale handle fails an assert.
#define TR__NODE_TAG    0x74726e64u    /* "trnd" */
#define TR__ACTOR_TAG   0x74726163u    /* "trac" */
#define TR__MSG_TAG     0x74726d73u    /* "trms" */
#define TR__MBOX_TAG    0x74726d62u    /* "trmb" */
#define TR__DEAD_TAG    0xdeadbeefu

//  Message kinds the runtime keeps to itself (never on the wire).
#define TR__KIND_STOP   16
#define TR__KIND_EXIT   17              //  a child's end, to its supervisor
#define TR__KIND_NAME_ADD 18            //  a name to register with the broker
#define TR__KIND_NAME_DEL 19            //  a name to give up at the broker
#define TR__KIND_CALL   20              //  a request to the broker (tr_remote.c)
#define TR__KIND_PUB    21              //  an event for the broker
#define TR__KIND_SUB    22              //  a prefix to subscribe to at the broker
#define TR__KIND_UNSUB  23              //  a prefix to give up
#define TR__KIND_WATCH  24              //  an actor to tell a prefix's changes
#define TR__KIND_UNWATCH 25             //  an actor that no longer wants them
#define TR__KIND_REPLICA 26             //  a replica to keep (tr_remote.c)
#define TR__KIND_UNREPLICA 27           //  a replica to let go

//  Priority above TR_PRIO_HIGH, for runtime signals; and the number of
//  queues a mailbox keeps (LOW, NORMAL, HIGH, SYSTEM).
#define TR__PRIO_SYSTEM 2
#define TR__PRIO_LEVELS 4

//  Longest reason an incarnation can give for its end (a supervisor's
//  holds the chain of reasons below it).
enum { TR__LINK_ON, TR__LINK_REPORTING, TR__LINK_OFF };

#define TR__EXIT_TEXT   1024

//  Message flags.
#define TR__MSG_REPLIED   0x1u          //  an ask that has been answered
#define TR__MSG_DEFERRED  0x2u          //  an ask taken over by tr_defer

//  Ids of asks whose caller blocks in tr_ask carry this bit, so that
//  their replies are routed to the waiting call and not to the handler.
#define TR__ID_BLOCKING   (UINT64_C (1) << 63)

struct tr_msg {
    tr__link_t link;                    //  in a mailbox's lock-free queue
    uint32_t tag;
    uint8_t kind;                       //  tr_kind_t or TR__KIND_*
    int8_t priority;                    //  tr_priority_t or TR__PRIO_SYSTEM
    uint16_t flags;                     //  TR__MSG_*
    int32_t error;                      //  for TR_KIND_ERROR
    uint32_t size;                      //  body bytes
    int16_t pool;                       //  recycling shard, -1: malloc'd
    struct tr_msg *next;                //  link in the owner's queues
    tr__mbox_t *reply_to;               //  asks: the asker's mailbox (ref)
    tr_node_t *node;
    uint64_t id;
    uint64_t corr;
    uint64_t trace;
    int64_t deadline_ns;                //  monotonic; 0 = none
    const char *to;                     //  point into data
    const char *from;
    const uint8_t *body;                //  NULL when size is 0
    char data [];                       //  to \0 from \0 body
};

struct tr_node {
    uint32_t tag;
    uint64_t id;                        //  process-unique, in endpoints
    void *ctx;                          //  czmq's process context
    tr_node_opts_t opts;
    //  Registry: names, groups and the actor list, under one lock.
    pthread_rwlock_t lock;
    atomic_uint_fast64_t names_gen;     //  bumped on every name change
    zhashx_t *names;                    //  name -> tr__mbox_t * (no ref)
    zhashx_t *groups;                   //  group -> members (tr_group.c)
    void *subs;                         //  event subscriptions (tr_event.c)
    zhashx_t *children;                 //  supervised name -> tr__child_t
    zlistx_t *roots;                    //  root supervisors still running
    atomic_int sub_count;
    //  The link to the broker (tr_remote.c), or NULL; and the copies of
    //  its option strings that opts points to.
    struct tr__remote *remote;
    char *broker_copy;
    char *node_id_copy;
    tr_actor_t *first, *last;           //  actors in spawn order
    size_t actors;
    //  Anonymous mailboxes lent to threads that are not actors.
    pthread_mutex_t ports_lock;
    tr__mbox_t *free_ports;
    zlistx_t *ports;                    //  all of them, for destroy
    atomic_bool closing;
    tr_node_t *next_live;               //  registry of live nodes
    atomic_uint_fast64_t next_mbox_id;
    atomic_uint_fast64_t spawned;
    atomic_uint_fast64_t unknown;
    //  Spinning pays only while awake actor threads fit on the cores.
    int cores;
    atomic_int owners;                  //  actor threads running
    atomic_int sleepers;                //  of those, asleep in ZeroMQ
    //  Counters of mailboxes already closed, folded in at close.
    atomic_uint_fast64_t retired_sent;
    atomic_uint_fast64_t retired_dead;
    atomic_uint_fast64_t retired_rejected;
    atomic_uint_fast64_t dead;          //  dead letters with no mailbox
    tr__timers_t *timers;
    //  The HTTP engine (tr_http.c), started on first use; NULL until then.
    _Atomic (tr__http_t *) http;
};

//  Actor states.
enum {
    TR__ACTOR_STARTING, TR__ACTOR_RUNNING, TR__ACTOR_STOPPING,
    TR__ACTOR_ABANDONED,
    TR__ACTOR_EXITED                    //  left by itself (tr_actor_exit)
};

struct tr_actor {
    uint32_t tag;
    tr_node_t *node;
    tr__mbox_t *mbox;                   //  holds a reference
    tr_behaviour_t behaviour;
    void *arg;
    void *state;
    pthread_t thread;
    sem_t started;                      //  posted once init has returned
    sem_t ended;                        //  posted as the thread ends
    int init_rc;
    atomic_int status;                  //  TR__ACTOR_*
    tr_actor_t *prev, *next;            //  node's list, spawn order
    const tr_msg_t *current;            //  message being handled
    bool deferred;                      //  the handler deferred `current`
    //  Supervision (tr_sup.c): the supervisor's record of this actor, or
    //  NULL for an actor spawned directly on the node.
    tr__child_t *child;
    //  Whether the thread may still report to `child` (TR__LINK_*): a
    //  supervisor that abandons the actor cuts the link, after which the
    //  thread never touches the record again; a thread that is reporting
    //  holds it, and the supervisor then waits for the report instead.
    atomic_int link;
    bool exit_requested;                //  tr_actor_exit was called
    int exit_reason;
    char exit_text [TR__EXIT_TEXT];     //  why this incarnation ended
    atomic_int_fast64_t handling_since; //  monotonic ns, 0 when idle
    atomic_bool hung;                   //  past its handling timeout
};

//  The mailbox a thread sends from, and where its replies arrive: its
//  actor's mailbox on an actor thread (or a runtime service's own), else
//  the thread's port on that node (see tr_send.c).
typedef struct {
    tr_node_t *node;
    tr__mbox_t *mbox;
    const char *from;                   //  sender name ("" if anonymous)
    const tr_msg_t *current;            //  message in hand, for the trace
} tr__ctx_t;

//  Sets the calling thread's own mailbox (NULL to clear): actor threads
//  and runtime services call this when they start and end.
void
    tr__ctx_bind (tr__mbox_t *mbox, tr_actor_t *actor);

//  Fills ctx for a call on node from this thread: its own mailbox there,
//  or else its port (taken on first use). Returns TR_OK or TR_ENOMEM /
//  TR_ESYS / TR_ELIMIT when a port could not be made.
int
    tr__ctx_enter (tr_node_t *node, tr__ctx_t *ctx);

//  The registry of live nodes, so that a thread that ends after its node
//  was destroyed does not touch it. tr__node_live needs the lock held.
void
    tr__node_live_lock (void);
void
    tr__node_live_unlock (void);
bool
    tr__node_live (const tr_node_t *node, uint64_t id);

//  Registry changes (node lock held for writing): register and forget a
//  name, invalidating every thread's remembered lookup.
int
    tr__node_register (tr_node_t *node, const char *name, tr__mbox_t *mbox);
void
    tr__node_forget (tr_node_t *node, const char *name, tr__mbox_t *mbox);

//  Allocates a message with copies of names and body. Returns NULL when
//  out of memory. The id is left 0 (set by the sender).
tr_msg_t *
    tr__msg_new (tr_node_t *node, int kind, int priority, const char *to,
                 const char *from, const void *body, size_t size);

//  Frees a message, releasing its reply_to reference. Does not answer.
void
    tr__msg_free (tr_msg_t *msg);

//  Finishes with a message the runtime owns: an ask that was neither
//  answered nor deferred is answered with `error` from ctx, then the
//  message is freed unless deferred.
void
    tr__msg_finish (tr__ctx_t *ctx, tr_msg_t *msg, int error);

//  Sends an error answer to an ask (marks it replied). Returns TR_OK or
//  TR_EINVAL if msg is not an unanswered ask.
int
    tr__reply_error_from (tr__ctx_t *ctx, const tr_msg_t *request, int error);

//  Counts a dead letter on the node (for messages with no mailbox left).
void
    tr__node_dead_letter (tr_node_t *node, const tr_msg_t *msg, int reason);

//  Looks up a registered mailbox by name and takes a reference. NULL if
//  unknown (and counts the miss when count_miss is set). Each thread
//  remembers its last hit, so a thread that keeps sending to one name
//  skips the lock and the hash.
tr__mbox_t *
    tr__node_lookup (tr_node_t *node, const char *name, bool count_miss);

//  Sends a runtime message of kind `kind` (>= TR__KIND_STOP) with a raw
//  body (not msgpack; copied) from the calling thread to dst, at the
//  runtime's own priority and past the bound. TR_OK or the send's error.
int
    tr__post_raw (tr_node_t *node, tr__mbox_t *dst, int kind, const void *body, size_t size);

//  Validates a send: name, body and options. Returns TR_OK or the error.
int
    tr__check_body (const void *body, size_t size);

//  Timer service: start with the node, stop before its actors.
int
    tr__timers_start (tr_node_t *node, tr__timers_t **timers_p);
void
    tr__timers_stop (tr__timers_t **timers_p);

//  HTTP engine: stop ends every request still queued or in flight with
//  TR_ECLOSED (their callbacks run before it returns) and joins the
//  engine's thread; calls made after it are refused with TR_ECLOSED.
//  destroy frees what is left, once no thread can call tr_http_* on the
//  node any more. Both accept a node that never used HTTP.
void
    tr__http_stop (tr_node_t *node);
void
    tr__http_destroy (tr_node_t *node);

//  Actors: stop every actor of the node that no supervisor looks after
//  (destroy path). Returns the number that had to be abandoned.
size_t
    tr__actors_stop_all (tr_node_t *node);

//  Spawns an actor under a supervisor: like tr_spawn, but when an
//  incarnation ends the thread reports to the supervisor and waits for
//  its decision (tr__child_ended) instead of ending. Returns init's
//  result as tr_spawn does; on TR_EINIT the thread is parked, waiting
//  for the supervisor's decision. *actor_p is set whenever the thread
//  was started (even on TR_EINIT).
int
    tr__actor_spawn (tr_node_t *node, const char *name, const tr_behaviour_t *b,
                     void *arg, const tr_spawn_opts_t *opts, tr__child_t *child,
                     tr_actor_t **actor_p);

//  Waits up to deadline_ns for a supervised actor's thread to end (after
//  the supervisor decided so), then closes its mailbox and frees it.
//  Returns TR_OK, or TR_ETIMEDOUT after abandoning it.
int
    tr__actor_reap (tr_actor_t *actor, int64_t deadline_ns);

//  Sends a runtime signal (TR__KIND_STOP) to an actor. TR_OK or the
//  send's error.
int
    tr__actor_signal_stop (tr_actor_t *actor);

//  Stops every root supervisor still running (node destroy).
void
    tr__sup_stop_all (tr_node_t *node);

//  Supervision hooks, called on a supervised actor's own thread:
//  after the init of a restarted incarnation, with init's result
void
    tr__child_started (tr__child_t *child, int rc);
//  when an incarnation has ended (reason TR_OK for a stop or a normal
//  exit; `requested` when the supervisor asked for the stop). Blocks
//  until the supervisor decides; returns true to start a new
//  incarnation, false to end the thread.
bool
    tr__child_ended (tr__child_t *child, int reason, const char *text, bool requested);

//  Groups: drop a mailbox from every group (actor stop path); called with
//  the node's lock held for writing.
void
    tr__groups_forget (tr_node_t *node, tr__mbox_t *mbox);

//  An actor's named counters for status (tr_actor_info_set), kept in its
//  mailbox. Keys are added under one process-wide lock and published by
//  `count` (release); values are atomics, so readers need no lock.
#define TR__INFO_MAX    16
#define TR__INFO_KEY    32
typedef struct tr__info {
    atomic_int count;
    struct {
        char key [TR__INFO_KEY];
        atomic_int_fast64_t value;
    } items [TR__INFO_MAX];
} tr__info_t;

//  Sets (add false) or adds to (add true) a mailbox's counter `key`.
//  Returns TR_OK, TR_EINVAL (key empty or too long), TR_ELIMIT (no room
//  for another key), TR_ENOMEM.
int
    tr__mbox_info_update (tr__mbox_t *mbox, const char *key, int64_t value, bool add);
#define tr__mbox_info_add(mbox, key, delta) tr__mbox_info_update (mbox, key, delta, true)

//  The mailbox's counters, or NULL if it has none (read count, then items).
const tr__info_t *
    tr__mbox_info (tr__mbox_t *mbox);

//  The LLM agent type (actors/tr_llm.c).
extern const tr_actor_type_t tr__llm_type;

//  Packs, for status, one map per HTTP backend that LLM agents of node
//  use: its name, how many agents use it, and its counters (tr_http_stats).
struct msgpack_packer;
void
    tr__llm_backends_pack (tr_node_t *node, struct msgpack_packer *pk);

//  The built-in actor types (actors/tr_builtin.c), NULL-terminated;
//  tr_type.c registers them on first use of the registry.
const tr_actor_type_t *const *
    tr__builtin_types (void);

//  Built-in agents, each in its own file of actors/: port (tr_port.c),
//  http (tr_httptool.c).
extern const tr_actor_type_t tr__port_type;
extern const tr_actor_type_t tr__http_type;

//  Composition actors (actors/tr_pool.c, tr_router.c, tr_chain.c; shared
//  helpers in tr_compose.c).
extern const tr_actor_type_t tr__pool_type;
extern const tr_actor_type_t tr__router_type;
extern const tr_actor_type_t tr__chain_type;
extern const tr_actor_type_t tr__file_watch_type;    //  actors/tr_watch.c
extern const tr_actor_type_t tr__git_watch_type;     //  actors/tr_watch.c
extern const tr_actor_type_t tr__ant_type;          //  actors/tr_swarm.c
extern const tr_actor_type_t tr__graph_type;         //  actors/tr_graph.c
extern const tr_actor_type_t tr__orchestrator_type; //  actors/tr_orchestrator.c
extern const tr_actor_type_t tr__evaluator_type;   //  actors/tr_evaluator.c
extern const tr_actor_type_t tr__parallel_type;    //  actors/tr_parallel.c
extern const tr_actor_type_t tr__barrier_type;     //  actors/tr_barrier.c
extern const tr_actor_type_t tr__batch_type;       //  actors/tr_batch.c
extern const tr_actor_type_t tr__team_type;        //  actors/tr_team.c
extern const tr_actor_type_t tr__coordinator_type; //  actors/tr_coordinator.c

//  Standard error's status line (runtime/tr_log.c): one line kept at the
//  bottom of a terminal (the batch's progress bar) that log lines scroll
//  above instead of running into. tr__log_status shows text (no newline,
//  no escapes; cut at TR__LOG_STATUS_MAX bytes) as the status line for
//  owner, and redraws it; text NULL (or len 0) erases it, if owner set
//  it. tr__log_write writes a whole line (ending in a newline) to
//  standard error as tr_log does: under the same lock, and, while a
//  status line shows, erasing it first and drawing it again after.
#define TR__LOG_STATUS_MAX 256
void
    tr__log_status (const void *owner, const char *text, size_t len);
void
    tr__log_write (const char *line, size_t len);

//  The batch's progress (actors/tr_batch.c). tr__batch_progress_render
//  writes a run's progress into buf (at most size - 1 bytes and a NUL;
//  returns the length): with tty and not final, the bar a terminal
//  redraws in place (no "\r", no newline); otherwise a plain line (no
//  newline). tr__batch_progress_write shows it: the bar as owner's status
//  line, or a timestamped plain line through tr__log_write (a final one
//  erases owner's bar first).
typedef struct {
    const char *name;                   //  the batch's
    size_t total, done, failed, retried;
    int64_t elapsed_ms;
    bool final;                         //  the run's last word
} tr__batch_progress_t;
size_t
    tr__batch_progress_render (const tr__batch_progress_t *p, bool tty, char *buf, size_t size);
void
    tr__batch_progress_write (const void *owner, const tr__batch_progress_t *p, bool tty);

#endif
