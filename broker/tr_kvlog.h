/*  tr_kvlog.h - the scratchpad's append-only log (internal; protocol
    2.9).

    One file, FOLDER/scratchpad.log: an 8-byte magic ("TRKVLOG" and a
    format byte, 1), then records, each

        u32 len      bytes in the body
        u32 crc      CRC-32 (IEEE) of the 4 bytes of len, then the body
        body:
          u8  op       1 put, 2 delete, 3 base (the version counter)
          u64 version
          i64 deadline absolute expiry, Unix wall-clock ms; 0 none
          u16 key_len  1..65535 (the store's max_key, 1024 by default;
                       0 for a base record)
          key
          value        the rest (puts only: one msgpack value)

    all integers little-endian.

    Writing: tr__kvlog_open attaches the log to the store as its journal
    (tr__kv_set_journal), so every change, expiries included, is appended
    with one write(2) before the store applies it and before the call
    that made it returns; the broker acknowledges a write after that
    call returns. Durability by the sync policy:
      always    fdatasync before the append returns: an acknowledged
                write survives a crash of the machine.
      everysec  a background thread syncs at most once a second if
                anything was written: a crash of the process loses
                nothing acknowledged (the data is in the kernel), a
                crash of the machine may lose the writes of the last
                second or so (one interval plus the sync in progress).
      no        the kernel writes back when it likes (typically within
                30 s); a machine crash may lose more.
    always, grouped (opts.group): the append only writes; the log's sync
    thread fdatasyncs as soon as anything is written, all the appends
    made meanwhile in one go, and counts them durable
    (tr__kvlog_durable) and says so on an eventfd (tr__kvlog_event_fd).
    The owner acknowledges a write once the count has passed it: the
    same promise as always, one sync for many writes, and the owner's
    thread never waits for the disk. A failed sync makes the log refuse
    every write from then on (TR_ESYS); the writes not counted durable
    by then are never counted so, and the owner must not acknowledge
    them.
    A failed write is cut off again (ftruncate to the last good size) and
    the change fails with TR_ESYS, so no half record stays in the middle.

    Replaying: records are applied in file order (tr__kv_restore); puts
    whose deadline has passed are dropped. A record is bad if it is cut
    short, its length is impossible, its checksum does not match or its
    fields make no sense. At a bad record the replay looks for any good
    record after it:
      - none: it is a torn tail (a crash during an append, or blocks the
        file system had not written yet); the file is truncated there,
        with a log line, and every record before it is kept;
      - some: the damage is in the middle; opening fails with
        TR_EMALFORMED and the offset, and nothing is truncated. We
        refuse to start rather than silently drop the good records after
        the damage: an operator can keep a copy and cut the file by hand
        (or remove it) knowingly.
    The look-ahead tries every offset after the bad record, but computes
    a checksum only where the length, op and key length make sense, so
    it costs little more than a pass over those bytes. Its one false
    alarm: a torn record whose value itself holds a well-formed record
    (a value that embeds log bytes, cut just after them) is taken for
    damage in the middle, and the broker refuses to start instead of
    guessing.

    Compacting (tr__kvlog_compact, also started by itself when the file
    outgrows the options' threshold): a background thread writes the
    store's live keys (tr__kv_dump) after a base record to
    scratchpad.log.compact. Appends go on meanwhile: to the old file as
    usual, and also to a buffer in memory. The thread copies the buffer
    into the new file (records above the dump's version; the rest the
    dump holds) and fsyncs it without holding the log's lock; then,
    holding the lock (so appends wait only for this), it writes what the
    buffer gained since, fdatasyncs that little, renames the new file
    over the old one, fsyncs the folder and switches the appends to the
    new file. A crash at any point leaves either the old file (complete)
    or the new one (complete); a leftover .compact file is removed on
    open. A failed compaction is logged, leaves the old file in use, and
    is reported by tr__kvlog_compact_wait.

    The folder must exist and be writable; FOLDER/scratchpad.lock holds
    an flock(2) so that two brokers cannot share it.

    Threads: append (the journal) runs under the store's lock and takes
    the log's; compaction takes the store's lock only to dump it, never
    while it holds the log's. Lock order: store, then log.
*/
#ifndef TR_KVLOG_H_INCLUDED
#define TR_KVLOG_H_INCLUDED

#include "tr_kv.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tr__kvlog tr__kvlog_t;

typedef enum {
    TR__KVLOG_ALWAYS = 0,
    TR__KVLOG_EVERYSEC,
    TR__KVLOG_NO
} tr__kvlog_sync_t;

#define TR__KVLOG_MAGIC         "TRKVLOG\001"
#define TR__KVLOG_MAGIC_LEN     8
#define TR__KVLOG_HEADER        8           //  len + crc
#define TR__KVLOG_BODY_MIN      19          //  op, version, deadline, key_len

//  Options; NULL or zeroed fields mean the defaults.
typedef struct {
    int sync;                   //  tr__kvlog_sync_t [always]
    uint64_t compact_min;       //  compact on its own past this size in
                                //  bytes [64 MiB]; UINT64_MAX: never
    int compact_growth;         //  ... and once it is this many percent
                                //  over its size after the last
                                //  compaction [100]
    bool group;                 //  always: grouped syncs (above) [false]
    int64_t now;                //  the clock of the replay and of the
                                //  compaction's dump, Unix ms [the
                                //  wall clock] (for tests)
} tr__kvlog_opts_t;

//  What a replay found.
typedef struct {
    uint64_t records;           //  good records applied
    uint64_t valid_len;         //  bytes of good data (magic included)
    uint64_t truncated;         //  bytes of a torn tail dropped
    uint64_t bad_offset;        //  TR_EMALFORMED: where the damage starts
} tr__kvlog_replay_t;

//  Opens (or creates) FOLDER/scratchpad.log, replays it into kv (which
//  should be new and empty), truncates a torn tail, and attaches the log
//  as kv's journal. opts and info may be NULL. On TR_OK *self_p is the
//  caller's (tr__kvlog_close, before kv is destroyed). Errors, each with
//  a log line: TR_ENOTFOUND (no such folder), TR_EACCES (the folder is
//  not writable, or read-only), TR_EEXIST (another process holds the
//  folder's lock), TR_EMALFORMED (not a log, or damage in the middle:
//  info->bad_offset), TR_ESYS (another system error), TR_ENOMEM. On
//  error kv may hold part of the log; discard it.
int
    tr__kvlog_open (tr__kvlog_t **self_p, const char *folder,
                    const tr__kvlog_opts_t *opts, tr__kv_t *kv,
                    tr__kvlog_replay_t *info);

//  Detaches the log from its store, waits for a compaction in progress,
//  syncs, closes, and sets *self_p to NULL. Accepts NULL.
void
    tr__kvlog_close (tr__kvlog_t **self_p);

//  Appends one change (the journal does this; exposed for tests). Syncs
//  if the policy is always. Errors: TR_ESYS (the write or sync failed;
//  the file is as before), TR_EINVAL (an empty key), TR_ETOOBIG (a key
//  over 65,535 bytes), TR_ENOMEM.
int
    tr__kvlog_append (tr__kvlog_t *self, const tr__kv_change_t *change);

//  fdatasyncs the file now, whatever the policy (and counts every append
//  so far durable, unless a grouped sync has failed). TR_OK or TR_ESYS.
int
    tr__kvlog_sync (tr__kvlog_t *self);

//  Where the appends stand: *written appends so far (since open), of
//  which *synced are known durable (every append under always without
//  group; under everysec and no, only those synced by tr__kvlog_sync);
//  *failed once a grouped sync has failed (see above).
void
    tr__kvlog_durable (tr__kvlog_t *self, uint64_t *written, uint64_t *synced,
                       bool *failed);

//  always grouped: an eventfd (non-blocking) that turns readable each
//  time the durable count moves or a sync fails; the caller reads its 8
//  bytes to clear it, then asks tr__kvlog_durable. -1 otherwise.
int
    tr__kvlog_event_fd (tr__kvlog_t *self);

//  Starts a compaction in the background. Returns TR_OK (also if one is
//  already running), TR_ESYS if the thread could not start.
int
    tr__kvlog_compact (tr__kvlog_t *self);

//  Waits for the compaction in progress, if any, and returns the result
//  of the last one (TR_OK if none ran): TR_OK, TR_ESYS, TR_ENOMEM.
int
    tr__kvlog_compact_wait (tr__kvlog_t *self);

//  The file's size in bytes, and its number of compactions so far.
uint64_t
    tr__kvlog_size (tr__kvlog_t *self);
uint64_t
    tr__kvlog_compactions (tr__kvlog_t *self);

//  Replays a log held in memory (len bytes at buf, not changed) into
//  kv, as tr__kvlog_open does with the file, with now as the clock.
//  Returns TR_OK with info->valid_len the length to keep (less than len
//  for a torn tail), or TR_EMALFORMED with info->bad_offset (bad magic:
//  offset 0), or TR_ENOMEM. info may be NULL. Touches no file: the
//  fuzzer's entry point.
int
    tr__kvlog_replay_buffer (const void *buf, size_t len, tr__kv_t *kv,
                             int64_t now, tr__kvlog_replay_t *info);

//  CRC-32 (IEEE 802.3, as zlib's crc32) of len bytes, continuing from
//  crc (0 to start).
uint32_t
    tr__kvlog_crc32 (uint32_t crc, const void *buf, size_t len);

#endif
