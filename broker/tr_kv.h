/*  tr_kv.h - the broker's scratchpad: a key-value store of msgpack
    values with versions, TTLs and watches (internal; protocol 2.4.4).

    Keys are 1 to max_key bytes (any bytes), kept in byte order (memcmp,
    then the shorter first). Values are exactly one msgpack value of at
    most max_value bytes. Every change (a put, a compare-and-set, a
    deletion, or the expiry of a key's TTL) takes the next number from
    one counter for the whole store, its version, so versions are
    strictly increasing and each is given to exactly one change.

    Time: the caller passes `now`, Unix wall-clock milliseconds, to every
    call that depends on it (the broker passes the wall clock, tests a
    clock of their own). A key put with a TTL expires at now + ttl_ms.
    Every call that takes `now` first expires the keys whose deadline has
    come, each expiry being a deletion change at a new version, so what a
    call sees and the versions it reports are consistent: an expired key
    is missing, and a snapshot's AT already counts the expiries before
    it. The broker also calls tr__kv_expire at tr__kv_next_deadline, so
    that watchers hear of expiries when they happen.

    Watches (the Clone pattern): a watch on a prefix from version FROM
    receives every change to a key under the prefix with a version above
    FROM, in version order, none missed or repeated. The store keeps a
    bounded history of recent changes, so a watch may start from a
    version a little in the past (the AT of a snapshot taken just
    before). A watch whose FROM the history no longer covers, or whose
    backlog of undelivered changes passes its bound (a watcher that does
    not keep up), is flagged "resync needed": it receives nothing more,
    and the broker sends KV_RESYNC and destroys it.

    Journal: one function (the log, tr_kvlog.h) may be attached; it is
    called with every change, in version order, before the change is
    applied. See tr__kv_set_journal.

    Values are immutable and reference-counted (tr__kv_value_t), so a
    get, a snapshot, the history and every watcher share one copy of a
    value; a reference may be released from any thread (e.g. from a
    ZeroMQ free function after a zero-copy send).

    Threads: every function may be called from any thread; one mutex per
    store serialises them (the broker is single-threaded anyway; the
    lock makes compare-and-set under contention and the log's background
    compaction safe). A watch belongs to its store and is used under the
    same lock.

    Cost: the keys are in a skiplist (expected O(log n) per lookup,
    insert or removal; listing k keys under a prefix is O(log n + k),
    already in byte order, no sort), deadlines in a binary heap (O(log n)
    per key with a TTL), and each change is matched against every watch's
    prefix (O(w) for w watches).

    Errors (tr_error.h): TR_EINVAL (a key outside 1..max_key bytes, a
    negative TTL), TR_ETOOBIG (a value over max_value), TR_EMALFORMED
    (not exactly one msgpack value, or nested deeper than
    TR_BODY_MAX_DEPTH), TR_ENOTFOUND (missing or expired key),
    TR_ECONFLICT (compare-and-set mismatch), TR_ELIMIT (more keys than
    max_list), TR_ENOMEM, or whatever the journal returns.
*/
#ifndef TR_KV_H_INCLUDED
#define TR_KV_H_INCLUDED

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tr__kv tr__kv_t;
typedef struct tr__kv_watch tr__kv_watch_t;
typedef struct tr__kv_value tr__kv_value_t;

//  Limits; a field left 0 takes its default (in brackets).
typedef struct {
    size_t max_key;             //  bytes in a key [1024]
    size_t max_value;           //  bytes in a value [1 MiB]
    size_t max_list;            //  keys in one list or snapshot [100,000]
    size_t max_backlog;         //  undelivered changes per watch [10,000]
    size_t max_backlog_bytes;   //  their value bytes per watch [64 MiB]
    size_t history;             //  recent changes kept for watches [10,000]
    size_t history_bytes;       //  their value bytes [64 MiB]
} tr__kv_limits_t;

#define TR__KV_MAX_KEY      1024
#define TR__KV_MAX_VALUE    1048576

typedef enum {
    TR__KV_PUT = 1,             //  a put or a successful compare-and-set
    TR__KV_DEL = 2              //  a deletion or an expiry
} tr__kv_op_t;

//  One change, as the journal and watchers see it. Read-only; the
//  fields after `value_len` are private. Reference-counted: a change
//  from tr__kv_watch_next is the caller's to release with
//  tr__kv_change_unref (from any thread); the journal's is lent for the
//  call only.
typedef struct {
    uint64_t version;
    int op;                     //  tr__kv_op_t
    bool expired;               //  a deletion caused by the key's TTL
    int64_t deadline;           //  put: absolute expiry in Unix ms, 0 none
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;       //  put: the value; deletion: NULL
    size_t value_len;           //  deletion: 0
    //  Private.
    atomic_int refs;
    tr__kv_value_t *blob;
} tr__kv_change_t;

//  One key in a list, a snapshot or a dump. Pointers stay valid until
//  the tr__kv_items_t that holds it is destroyed.
typedef struct {
    const uint8_t *key;
    size_t key_len;
    uint64_t version;
    int64_t deadline;           //  absolute expiry in Unix ms, 0 none
    int64_t ttl_left;           //  ms left at the call's `now`, 0 none
    const uint8_t *value;       //  snapshot and dump; NULL in a list
    size_t value_len;
} tr__kv_item_t;

//  The answer of a list, a snapshot or a dump: `count` items in key
//  byte order, and `at`, the store's version when it was taken. Owns
//  its keys and references to its values; free with
//  tr__kv_items_destroy.
typedef struct {
    uint64_t at;
    size_t count;
    tr__kv_item_t *items;
    //  Private.
    tr__kv_value_t **blobs;
    uint8_t *keys;
} tr__kv_items_t;

//  The journal: called under the store's lock with each change, in
//  version order, before it is applied. Returns 0 to let it proceed, or
//  a negative tr_error_t: then a put, CAS or deletion fails with that
//  code, nothing changes and the version is not used. An expiry is
//  applied whatever the journal returns (the key's deadline has passed
//  in any case; the log skips expired keys when it replays).
typedef int (tr__kv_journal_fn) (void *arg, const tr__kv_change_t *change);

//  --------------------------------------------------------------------------
//  Values

//  The value's bytes (one msgpack value) and their number.
const uint8_t *
    tr__kv_value_data (const tr__kv_value_t *self);
size_t
    tr__kv_value_size (const tr__kv_value_t *self);

//  Takes one more reference; returns self.
tr__kv_value_t *
    tr__kv_value_ref (tr__kv_value_t *self);

//  Releases one reference (the last frees it) and sets *self_p to NULL.
//  Accepts NULL. Safe from any thread.
void
    tr__kv_value_unref (tr__kv_value_t **self_p);

//  Releases one reference to a change and sets *self_p to NULL. Accepts
//  NULL. Safe from any thread.
void
    tr__kv_change_unref (tr__kv_change_t **self_p);

//  --------------------------------------------------------------------------
//  The store

//  Creates an empty store at version 0. limits may be NULL (defaults).
//  Returns NULL if out of memory.
tr__kv_t *
    tr__kv_new (const tr__kv_limits_t *limits);

//  Destroys the store, its keys and its watches (watch pointers the
//  caller still holds become invalid), and sets *self_p to NULL.
//  Values and changes the caller still references stay valid until
//  released. Accepts NULL.
void
    tr__kv_destroy (tr__kv_t **self_p);

//  The limits in force (defaults filled in).
tr__kv_limits_t
    tr__kv_limits (const tr__kv_t *self);

//  The version of the latest change (0 for a new store).
uint64_t
    tr__kv_version (tr__kv_t *self);

//  The number of keys held, including keys whose deadline has passed
//  but that no call has expired yet.
size_t
    tr__kv_count (tr__kv_t *self);

//  Attaches the journal (fn NULL detaches it). Takes the store's lock,
//  so it waits for a call in progress.
void
    tr__kv_set_journal (tr__kv_t *self, tr__kv_journal_fn *fn, void *arg);

//  Reads a key. On TR_OK, *value_p (if not NULL) holds a reference to
//  the value that the caller releases with tr__kv_value_unref, and
//  *version_p and *ttl_left_p (ms left, 0 for a key that does not
//  expire), if not NULL, are set. Errors: TR_EINVAL, TR_ENOTFOUND.
//  O(log n).
int
    tr__kv_get (tr__kv_t *self, const void *key, size_t key_len, int64_t now,
                tr__kv_value_t **value_p, uint64_t *version_p,
                int64_t *ttl_left_p);

//  Stores a copy of the value under the key, with a time to live
//  (ttl_ms 0: none), and sets *version_p (if not NULL) to its new
//  version. Errors: TR_EINVAL, TR_ETOOBIG, TR_EMALFORMED, TR_ENOMEM, a
//  journal error; on error nothing changes. O(log n + watches).
int
    tr__kv_put (tr__kv_t *self, const void *key, size_t key_len,
                const void *value, size_t value_len, int64_t ttl_ms,
                int64_t now, uint64_t *version_p);

//  As tr__kv_put, only if the key's current version is `expected` (0:
//  the key must be missing or expired); otherwise TR_ECONFLICT and
//  nothing changes. Arguments are checked before versions.
int
    tr__kv_cas (tr__kv_t *self, const void *key, size_t key_len,
                uint64_t expected, const void *value, size_t value_len,
                int64_t ttl_ms, int64_t now, uint64_t *version_p);

//  Removes a key; sets *version_p (if not NULL) to the version of the
//  deletion. Errors: TR_EINVAL, TR_ENOTFOUND, TR_ENOMEM, a journal
//  error. O(log n + watches).
int
    tr__kv_del (tr__kv_t *self, const void *key, size_t key_len, int64_t now,
                uint64_t *version_p);

//  Expires every key whose deadline is at or before now, each as a
//  deletion change at a new version. Returns how many expired. O(e log
//  n) for e expiries.
size_t
    tr__kv_expire (tr__kv_t *self, int64_t now);

//  The earliest deadline of any key (Unix ms), or 0 if no key expires:
//  when the broker should call tr__kv_expire next. O(1).
int64_t
    tr__kv_next_deadline (tr__kv_t *self);

//  Lists the keys under a prefix (prefix_len 0: all keys), in byte
//  order, with their versions and deadlines but no values. On TR_OK
//  *items_p is the caller's (tr__kv_items_destroy). Errors: TR_EINVAL (a
//  prefix over max_key), TR_ELIMIT (more than max_list keys; nothing is
//  returned), TR_ENOMEM. O(log n + k) for k keys.
int
    tr__kv_list (tr__kv_t *self, const void *prefix, size_t prefix_len,
                 int64_t now, tr__kv_items_t **items_p);

//  As tr__kv_list, with the values, and `at` the store's version when
//  it was taken: a watch from `at` then misses nothing.
int
    tr__kv_snapshot (tr__kv_t *self, const void *prefix, size_t prefix_len,
                     int64_t now, tr__kv_items_t **items_p);

//  Every key with its value and deadline, whatever max_list says, for
//  the log's compaction. Keys whose deadline is at or before now are
//  left out, but nothing is expired (the store does not change). O(n).
int
    tr__kv_dump (tr__kv_t *self, int64_t now, tr__kv_items_t **items_p);

//  Frees a list, snapshot or dump and sets *items_p to NULL. Accepts
//  NULL.
void
    tr__kv_items_destroy (tr__kv_items_t **items_p);

//  --------------------------------------------------------------------------
//  Watches

//  Starts a watch on a prefix (prefix_len 0: every key) that receives
//  the changes with versions above `from` (0: from now on). `arg` is the
//  caller's (the broker's client). Sets *at_p (if not NULL) to the
//  store's current version. If the history no longer holds every change
//  above `from`, or `from` is above the current version (a broker that
//  restarted and lost writes), the watch starts flagged resync. Errors:
//  TR_EINVAL (prefix over max_key), TR_ENOMEM. O(history) to replay.
int
    tr__kv_watch_new (tr__kv_t *self, const void *prefix, size_t prefix_len,
                      uint64_t from, int64_t now, void *arg,
                      tr__kv_watch_t **watch_p, uint64_t *at_p);

//  Ends a watch, releasing its backlog, and sets *watch_p to NULL.
//  Accepts NULL.
void
    tr__kv_watch_destroy (tr__kv_watch_t **watch_p);

//  The next change for the watch: TR_OK with *change_p the caller's
//  reference (tr__kv_change_unref), or NULL if nothing is pending; or
//  TR_ELIMIT if the watch needs a resync (it fell behind, or started
//  too far back): it will receive nothing more.
int
    tr__kv_watch_next (tr__kv_watch_t *self, tr__kv_change_t **change_p);

//  Changes waiting in the watch's backlog.
size_t
    tr__kv_watch_pending (tr__kv_watch_t *self);

//  True once the watch needs a resync.
bool
    tr__kv_watch_resync (tr__kv_watch_t *self);

//  The watch's prefix (not NUL-terminated) and length, and its arg.
const uint8_t *
    tr__kv_watch_prefix (const tr__kv_watch_t *self, size_t *len_p);
void *
    tr__kv_watch_arg (const tr__kv_watch_t *self);

//  Pops a watch that has received something (a change, or the resync
//  flag) since it was last popped, or returns NULL. The broker calls it
//  after its writes and expiries, and drains each watch it gets; a
//  watch is queued again by its next change. O(1).
tr__kv_watch_t *
    tr__kv_ready (tr__kv_t *self);

//  --------------------------------------------------------------------------
//  Restoring (for the log's replay only: no journal call, no watcher
//  hears of it, no checks beyond the key's length)

//  Applies a logged change at its own version: a put stores the value
//  (unless its deadline is at or before now: then the key is removed),
//  a deletion removes the key if present. The store's version becomes
//  the highest seen. Errors: TR_EINVAL (bad op or key), TR_ENOMEM.
int
    tr__kv_restore (tr__kv_t *self, const tr__kv_change_t *change,
                    int64_t now);

//  Raises the store's version to at least `version` (a compacted log's
//  base: the version when it was written).
void
    tr__kv_restore_version (tr__kv_t *self, uint64_t version);

#endif
