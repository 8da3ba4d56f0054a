/*  tr_sup.h - supervisors: trees of actors and processes that mend
    themselves, in the manner of Erlang/OTP.

    A supervisor is an actor that starts its children in order, watches
    them, restarts them by its strategy when they end, and stops them in
    reverse order. Its description is a tr_child_spec_t of kind
    TR_CHILD_SUPERVISOR, usually from a tree file (tr_tree.h); the spec
    must outlive the supervisor.

    Strategies: one_for_one restarts the child that ended; one_for_all
    stops every other child (in reverse start order) and restarts them
    all (in start order); rest_for_one does so for the child and those
    started after it; simple_one_for_one has only dynamic children, made
    from one template at run time (tr_sup_add_child), each restarted on
    its own.

    Restart types: a permanent child is always restarted; a transient one
    only after an abnormal end (a failure, not a stop or a normal exit);
    a temporary one never (a dynamic temporary child is removed).

    Restart intensity: if more than max_restarts restarts happen within
    period_ms, the supervisor stops all its children and fails to its own
    supervisor with the reason, which then applies its own policy; when a
    root supervisor fails, tr_sup_wait returns TR_EINTENSITY and the chain
    of reasons, from the root down to the child that failed first.

    Backoff: restarts of one child wait an exponentially growing delay
    with jitter (tr_backoff_t); the delay falls back to its minimum once
    the child has run long enough without failing.

    How an actor child fails: its handler returns non-zero, it calls
    tr_actor_exit with a failure, or it takes longer than its handling
    timeout over one message. A restart of an actor is a new init on the
    same thread with the same mailbox: messages sent to it while it
    restarts wait for the new incarnation; the message whose handling
    failed is not handled again (its sender hears the error, and a
    sys.dead_letter event reports it). An actor that overruns its
    handling timeout is counted as failing at once (breaker, events,
    status "hung"), but a thread cannot be stopped in the middle of C
    code: it is restarted when its handler returns. Code that may hang
    or corrupt memory belongs in a process child, which can be killed.

    A process child is an OS process (argv, environment, folder) in its
    own process group, its output in the log line by line, prefixed with
    its name; its exit status or signal is its failure reason. Stopping
    it sends SIGTERM to its group, then SIGKILL after its shutdown time.

    Circuit breakers: each child has one unless its spec turns it off
    (see tr_breaker_spec_t). After `failures` failures in a row it opens:
    tells and asks to the child then fail at once with TR_ECIRCUIT (or go
    to the child's fallback actor) until the reset timeout has passed; it
    then lets `half_open_trials` messages through; a success closes it, a
    failure opens it again for `factor` times as long, up to a maximum.
    Every change is logged and published (tr_event.h); tr_breaker_reset
    closes it by hand.

    Threads: the functions below may be called from any thread, but not
    from a supervisor's own handler (they ask the supervisor and wait).
*/
#ifndef TR_SUP_H_INCLUDED
#define TR_SUP_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"
#include "tr_node.h"
#include "tr_tree.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_sup tr_sup_t;

//  Starts a root supervisor from spec (kind TR_CHILD_SUPERVISOR), named
//  `name`, and its children in order. Returns when all have started, with
//  *sup_p owned by the caller; or, if a child could not start, after
//  stopping those that had (reverse order), with TR_ECHILD and *reason_p
//  (if not NULL) a malloc'd explanation (free it with free). Other
//  errors as tr_spawn (TR_EEXIST if a name is taken, ...).
TR_EXPORT int
    tr_sup_start (tr_node_t *node, const char *name, const tr_child_spec_t *spec,
                  tr_sup_t **sup_p, char **reason_p);

//  Waits until the root supervisor has ended: TR_OK once tr_sup_stop
//  has stopped it, TR_EINTENSITY when it failed (restart intensity
//  exceeded somewhere below and not mended), with *reason_p (if not
//  NULL) the chain of reasons, malloc'd. TR_ETIMEDOUT if it is still
//  running after timeout_ms (< 0: wait for ever).
TR_EXPORT int
    tr_sup_wait (tr_sup_t *self, int timeout_ms, char **reason_p);

//  Stops the tree: every child in reverse start order, each within its
//  own shutdown time, then the supervisor. Frees it and sets *self_p to
//  NULL. Returns TR_OK, or TR_ETIMEDOUT if some actor had to be abandoned
//  or some process killed with SIGKILL. Accepts NULL.
TR_EXPORT int
    tr_sup_stop (tr_sup_t **self_p);

//  Stops a child and starts it again now, whatever its restart type
//  (this does not count toward restart intensity). TR_OK, TR_ENOTFOUND
//  (no child of that name in any tree of the node), or the start's
//  error (TR_ECHILD, with the reason in the log).
TR_EXPORT int
    tr_sup_restart_child (tr_node_t *node, const char *name);

//  Stops a child and keeps it stopped (it is not restarted until
//  tr_sup_start_child). TR_OK, TR_ENOTFOUND.
TR_EXPORT int
    tr_sup_stop_child (tr_node_t *node, const char *name);

//  Starts a child that was stopped (by tr_sup_stop_child, or because its
//  restart type said so). TR_OK, TR_ENOTFOUND, TR_EEXIST if it runs
//  already, or the start's error.
TR_EXPORT int
    tr_sup_start_child (tr_node_t *node, const char *name);

//  simple_one_for_one: starts a new child named `name` from the template
//  of the supervisor named `sup`. TR_OK, TR_ENOTFOUND (no such
//  supervisor), TR_EINVAL (not simple_one_for_one, or a bad name),
//  TR_EEXIST, or the start's error.
TR_EXPORT int
    tr_sup_add_child (tr_node_t *node, const char *sup, const char *name);

//  Closes the circuit breaker of the child named `name` and clears its
//  failure count. TR_OK, TR_ENOTFOUND.
TR_EXPORT int
    tr_breaker_reset (tr_node_t *node, const char *name);

//  The live tree, as one msgpack value (a map) in a malloc'd buffer the
//  caller frees. Every supervisor and child is a map with:
//    name      string
//    kind      "supervisor", "actor", "plugin", "process"
//    state     "running", "restarting", "stopped", "hung", "failed",
//              "abandoned"
//    restarts  integer: restarts so far
//    failure   string: the last failure's reason, or nil
//    uptime_ms integer: time since its current incarnation started
//    actors:   depth, capacity, handled, failed (integers), type (string)
//    breakers: breaker (map: state "closed"/"open"/"half-open"/"off",
//              failures, open_ms: time left while open)
//    actors and supervisors: info (map of the actor's own counters,
//              tr_actor_info_set; empty for most)
//    the root: llm (array of maps, one per HTTP backend the node's LLM
//              agents use: name, agents, and tr_http_stats's counters)
//    process:  pid (integer, 0 when not running)
//    supervisors: strategy (string), children (array of maps)
//  Returns TR_OK or TR_ENOMEM.
TR_EXPORT int
    tr_sup_status (tr_sup_t *self, uint8_t **buf_p, size_t *len_p);

//  The root supervisor's name.
TR_EXPORT const char *
    tr_sup_name (const tr_sup_t *self);

#ifdef __cplusplus
}
#endif

#endif
