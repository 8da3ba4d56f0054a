/*  tr_scratch.h - the troupe's scratchpad, and the list of its nodes,
    from a node joined to a broker (tr_node_opts_t.broker).

    The scratchpad is a key-value store of msgpack values kept by the
    broker (protocols/2-broker.md 2.4.4) and shared by every node: the
    common state of hierarchical, supervisor and swarm patterns of agents.
    Every write gets a version from one counter for the whole scratchpad,
    higher than every version before it; compare-and-set on that version
    lets many writers agree without locks. Keys are 1 to 1,024 bytes
    without spaces or control characters; values are one msgpack value
    each (up to 1 MiB by default).

    Every call asks the broker and waits up to timeout_ms for its answer.
    Errors common to all: TR_EINVAL (no broker on this node, bad key or
    arguments), TR_EMALFORMED (the value is not one msgpack value),
    TR_ETOOBIG, TR_ETIMEDOUT (no answer in time: while the broker is away
    the call waits for it until then; a write that timed out may or may
    not have been done), TR_ESTOPPED (the node is stopping), TR_ENOMEM.
    Any thread may call them, an actor's handler included.
*/
#ifndef TR_SCRATCH_H_INCLUDED
#define TR_SCRATCH_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"
#include "tr_node.h"

#ifdef __cplusplus
extern "C" {
#endif

//  A value read from the scratchpad.
typedef struct {
    uint8_t *data;              //  one msgpack value (malloc'd; the caller's)
    size_t size;
    uint64_t version;           //  the version of the write that stored it
    int64_t ttl_ms;             //  time it has left, 0 if it does not expire
} tr_scratch_value_t;

//  Frees a value's data and zeroes it. Accepts NULL.
TR_EXPORT void
    tr_scratch_value_free (tr_scratch_value_t *value);

//  Reads `key` into *value (free it with tr_scratch_value_free). Returns
//  TR_OK, TR_ENOTFOUND (no such key, or it expired), or a common error.
TR_EXPORT int
    tr_scratch_get (tr_node_t *node, const char *key, int timeout_ms,
                    tr_scratch_value_t *value);

//  Stores `value` (size bytes of msgpack) under key, for ttl_ms (0: for
//  ever). On TR_OK, *version_p (if not NULL) is the write's version.
TR_EXPORT int
    tr_scratch_put (tr_node_t *node, const char *key, const void *value, size_t size,
                    int64_t ttl_ms, int timeout_ms, uint64_t *version_p);

//  Stores `value` only if the key's version is `expected` (0: only if the
//  key does not exist). TR_OK with the new version, TR_ECONFLICT if the
//  version was another (nothing changed), or a common error.
TR_EXPORT int
    tr_scratch_cas (tr_node_t *node, const char *key, uint64_t expected,
                    const void *value, size_t size, int64_t ttl_ms, int timeout_ms,
                    uint64_t *version_p);

//  Removes key. TR_OK with the version of the removal, TR_ENOTFOUND, or a
//  common error.
TR_EXPORT int
    tr_scratch_del (tr_node_t *node, const char *key, int timeout_ms, uint64_t *version_p);

//  Asynchronous forms of get, put, cas and del, for a thread that keeps
//  many requests in flight (pipelining) rather than waiting for each:
//  the request is sent at once, and `done` is called with its outcome.
typedef struct {
    //  What the waiting form returns (TR_OK, TR_ENOTFOUND, TR_ECONFLICT,
    //  a common error; TR_ETIMEDOUT once timeout_ms has passed).
    int rc;
    uint64_t version;           //  get: the value's version; writes: the write's
    const uint8_t *data;        //  get: the value, valid during the callback only
    size_t size;
    int64_t ttl_ms;             //  get: time left, 0 if it does not expire
} tr_scratch_result_t;

typedef void (tr_scratch_fn) (const tr_scratch_result_t *result, void *arg);

//  Each returns TR_OK, after which done is called exactly once with the
//  outcome: on the node's link thread, so it must not block (no waiting
//  calls, no sleeping: copy what it needs, tell an actor, count, or make
//  the next asynchronous call, which is how a pipelining client keeps
//  its window full without waking a thread per answer). A
//  request with no answer ends with TR_ETIMEDOUT at most about 100 ms
//  after timeout_ms; the node stopping ends it with TR_ESTOPPED. Requests
//  from one thread are sent in the order made and the broker answers them
//  in that order. Or returns an error of the arguments as the waiting
//  form does (timeout_ms must be positive and done not NULL: TR_EINVAL),
//  TR_ENOMEM or TR_ESTOPPED, and done is never called.
TR_EXPORT int
    tr_scratch_get_async (tr_node_t *node, const char *key, int timeout_ms,
                          tr_scratch_fn *done, void *arg);
TR_EXPORT int
    tr_scratch_put_async (tr_node_t *node, const char *key, const void *value, size_t size,
                          int64_t ttl_ms, int timeout_ms, tr_scratch_fn *done, void *arg);
TR_EXPORT int
    tr_scratch_cas_async (tr_node_t *node, const char *key, uint64_t expected,
                          const void *value, size_t size, int64_t ttl_ms, int timeout_ms,
                          tr_scratch_fn *done, void *arg);
TR_EXPORT int
    tr_scratch_del_async (tr_node_t *node, const char *key, int timeout_ms,
                          tr_scratch_fn *done, void *arg);

//  Lists the keys under prefix ("" for all), in byte order: on TR_OK,
//  *list_p holds a malloc'd msgpack array of [key, version] pairs, of
//  *size_p bytes. TR_ELIMIT past the broker's max_list keys.
TR_EXPORT int
    tr_scratch_list (tr_node_t *node, const char *prefix, int timeout_ms,
                     uint8_t **list_p, size_t *size_p);

//  Watches the keys under prefix ("" for all) for the local actor named
//  `actor`: from the moment the broker has the watch, every change
//  arrives as a tell from "" whose body is the array [KEY, VERSION,
//  VALUE] (VALUE nil for a deletion or an expiry), in version order. If
//  the broker could not keep up, [PREFIX, 0, "resync"] arrives instead
//  and the changes go on from the present: read what you need again
//  (tr_scratch_get or tr_scratch_list). After the node loses and regains
//  its broker, the watch resumes after the last change delivered. The
//  watch ends with tr_scratch_unwatch or when the actor stops. Returns
//  TR_OK (the watch is set up in the background), TR_ENOACTOR (no local
//  actor of that name), TR_EINVAL (no broker, bad prefix).
TR_EXPORT int
    tr_scratch_watch (tr_node_t *node, const char *prefix, const char *actor);

//  Ends the actor's watch of prefix. TR_OK, TR_EINVAL.
TR_EXPORT int
    tr_scratch_unwatch (tr_node_t *node, const char *prefix, const char *actor);

//  A replica: a live local copy of the keys under a prefix, kept by the
//  node's link to the broker from a snapshot plus the changes numbered
//  after it (the ZeroMQ guide's Clone pattern), so that reads are local
//  and never wait for the broker. Changes arrive in version order; if the
//  broker could not keep up, the link takes a new snapshot by itself; after
//  the node loses and regains its broker, the copy resumes after the last
//  change it applied. Reads may run on any thread.
typedef struct tr_replica tr_replica_t;

//  Starts a replica of prefix ("" for everything) and waits up to
//  timeout_ms for its first snapshot. TR_OK with *replica_p (the
//  caller's); TR_ETIMEDOUT (no snapshot in time: nothing is kept),
//  TR_EINVAL (no broker, bad prefix), TR_ENOMEM, TR_ESTOPPED.
TR_EXPORT int
    tr_replica_new (tr_node_t *node, const char *prefix, int timeout_ms,
                    tr_replica_t **replica_p);

//  Reads key from the local copy into *value (free it with
//  tr_scratch_value_free; ttl_ms is 0: the copy does not track time
//  left). TR_OK or TR_ENOTFOUND.
TR_EXPORT int
    tr_replica_get (tr_replica_t *self, const char *key, tr_scratch_value_t *value);

//  The version of the last change the copy has applied (or of its
//  snapshot), and the number of keys it holds.
TR_EXPORT uint64_t
    tr_replica_version (tr_replica_t *self);
TR_EXPORT size_t
    tr_replica_size (tr_replica_t *self);

//  Stops keeping the copy and frees it; sets *replica_p to NULL. Accepts
//  NULL.
TR_EXPORT void
    tr_replica_destroy (tr_replica_t **replica_p);

//  The nodes and other clients joined to the broker: on TR_OK, *list_p
//  holds a malloc'd msgpack array of maps {id, kind, names, age_ms}.
TR_EXPORT int
    tr_node_peers (tr_node_t *node, int timeout_ms, uint8_t **list_p, size_t *size_p);

#ifdef __cplusplus
}
#endif

#endif
