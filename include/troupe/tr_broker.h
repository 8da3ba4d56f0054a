/*  tr_broker.h - the broker: names, routing, liveness, events and the
    scratchpad for every node of a troupe.

    The broker speaks the protocol of protocols/2-broker.md on one ZeroMQ
    ROUTER socket. It runs on a thread of its own, started by
    tr_broker_start: standalone (`troupe broker --bind ENDPOINT`) or
    embedded in a node's process (`troupe run` does that by default).

    Status: in progress. Names, routing (SEND / DELIVER / BOUNCE), the
    greeting, heartbeats and NODE_DOWN, NODES, events (SUB / PUB) and the
    scratchpad (KV_GET / PUT / CAS / DEL / LIST / SNAPSHOT / WATCH /
    UNWATCH, TTL expiry pushed to watchers) are served, with persistence
    of the scratchpad in a data folder (an append-only log, fsync always,
    everysec or no, compacted in the background, replayed on start),
    and CURVE security (2.10): required on any endpoint other than
    loopback, ipc and inproc; optional on those.
*/
#ifndef TR_BROKER_H_INCLUDED
#define TR_BROKER_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_broker tr_broker_t;

//  When the scratchpad's log is synced to disk (2-broker.md 2.9). A write
//  is acknowledged once it is in the log (written to the file), and
//    TR_FSYNC_EVERYSEC  the file is synced at most once a second by a
//                       thread of its own: a crash of the broker's process
//                       loses nothing acknowledged, a crash of the machine
//                       the last second or so (the default);
//    TR_FSYNC_ALWAYS    synced before the acknowledgement: nothing
//                       acknowledged is lost even by the machine. The
//                       log's own thread syncs, all the writes made
//                       meanwhile at once; each answer (and each change
//                       pushed to watchers) waits for its write's sync,
//                       while the broker goes on serving everything else;
//    TR_FSYNC_NO        left to the operating system (typically within
//                       30 s).
typedef enum {
    TR_FSYNC_EVERYSEC = 0,
    TR_FSYNC_ALWAYS = 1,
    TR_FSYNC_NO = 2
} tr_fsync_t;

//  Options. Zero fields take the defaults of 2-broker.md.
typedef struct {
    const char *bind;           //  endpoint to bind, e.g. "tcp://127.0.0.1:7700",
                                //  "tcp://127.0.0.1:*" (a free port), "ipc://...";
                                //  required
    int heartbeat_ms;           //  H, 10 to 60,000; default 1000. Clients hear
                                //  from the broker at least every H, and are
                                //  dropped after 3H of silence.
    size_t max_frame;           //  bytes in any frame, at least 1,024; default
                                //  17,825,792 (over tcp and ipc ZeroMQ
                                //  disconnects a peer that sends more)
    size_t max_names;           //  per client, default 100,000
    size_t max_subs;            //  per client, default 10,000
    size_t max_queue;           //  messages queued towards one client (the
                                //  ROUTER's high-water mark per peer), default
                                //  10,000
    size_t max_key;             //  bytes in a scratchpad key, 1 to 1,024;
                                //  default 1,024
    size_t max_value;           //  bytes in a scratchpad value; default
                                //  1,048,576, or less if max_frame could not
                                //  carry it in a KV_GET answer (a larger
                                //  value given here is TR_EINVAL)
    size_t max_list;            //  keys in one KV_LIST or KV_SNAPSHOT answer,
                                //  default 100,000
    const char *data_dir;       //  folder of the scratchpad's log (it must
                                //  exist; one broker at a time); NULL: the
                                //  scratchpad lives in memory only
    int fsync;                  //  tr_fsync_t, with data_dir; default
                                //  TR_FSYNC_EVERYSEC
    //  CURVE (2-broker.md 2.10). Key files are czmq's zcert format, as
    //  `troupe keygen` writes them. NULL: no CURVE, which is allowed only
    //  when bind is ipc://, inproc:// or tcp:// on 127.0.0.0/8, [::1] or
    //  localhost (otherwise tr_broker_start refuses with TR_EACCES).
    const char *curve_secret_file;
                                //  the broker's own key pair; the file
                                //  must be the user's with mode 0600 or
                                //  0400 (anything else: TR_EACCES)
    const char *curve_allow_dir;
                                //  a folder of the public key files of
                                //  the clients allowed in; read at start
                                //  and again at most once a second as
                                //  clients connect, so keys may be added
                                //  and removed while the broker runs.
                                //  NULL: only clients holding the
                                //  broker's own key pair are allowed (the
                                //  broker's own key is always allowed)
} tr_broker_opts_t;

//  What the broker has seen since it started. Every SEND is either routed
//  or bounced; a greeted client that goes is counted in left.
typedef struct {
    uint64_t clients;           //  greeted clients now
    uint64_t names;             //  registered names now
    uint64_t joined;            //  greetings accepted
    uint64_t left;              //  clients gone: BYE, replaced or dead
    uint64_t dead;              //  of those, declared dead: silent for 3H,
                                //  or their connection found gone
    uint64_t routed;            //  SENDs delivered
    uint64_t bounced;           //  SENDs sent back (no such name, full)
    uint64_t events;            //  events published (by clients and the
                                //  broker's own sys.node.*)
    uint64_t events_dropped;    //  event copies dropped for slow subscribers
    uint64_t malformed;         //  messages refused as malformed (and frames
                                //  over max_frame that reached the broker)
    uint64_t refused;           //  other requests refused (protocol,
                                //  unknown verb, quota, ...) and events
                                //  dropped for their topic
    uint64_t lost;              //  answers, bounces and NODE_DOWNs that could
                                //  not be sent: the client's own queue was
                                //  full (it sends faster than it reads)
    uint64_t kv_keys;           //  keys in the scratchpad now
    uint64_t kv_version;        //  the scratchpad's version now
    uint64_t kv_writes;         //  KV_PUT, KV_CAS and KV_DEL acknowledged
    uint64_t kv_changes;        //  KV_CHANGEs sent to watchers
    uint64_t kv_resyncs;        //  watches ended by KV_RESYNC (fell behind)
    uint64_t auth_allowed;      //  CURVE handshakes with an allowed key
    uint64_t auth_refused;      //  CURVE handshakes refused (key not
                                //  allowed): nothing from them was read
} tr_broker_stats_t;

//  Binds and starts the broker on its own thread, with a ZeroMQ context
//  of its own. The endpoint is bound before this returns, so clients may
//  connect at once. With data_dir, the scratchpad's log is opened and
//  replayed first (a torn last record is dropped with a log line). On
//  TR_OK, *self_p owns it (tr_broker_stop). Errors: TR_EINVAL (no or bad
//  endpoint, bad options), TR_ESYS (the endpoint could not be bound: in
//  use, no permission; errno says which, and the reason is logged), and
//  for data_dir, each with the reason logged: TR_ENOTFOUND (no such
//  folder), TR_EACCES (the folder is not writable), TR_EEXIST (another
//  broker uses the folder), TR_EMALFORMED (the log is damaged before its
//  end, or is not a scratchpad log: the broker refuses to guess);
//  TR_ENOMEM. For CURVE, each with the reason logged, before anything is
//  bound: TR_EACCES (an endpoint other than loopback without
//  curve_secret_file; a secret key file that others may read or write,
//  or that is not the user's; an allow folder that cannot be read),
//  TR_ENOTFOUND (no such key file or allow folder), TR_EMALFORMED (not a
//  secret key file).
TR_EXPORT int
    tr_broker_start (const tr_broker_opts_t *opts, tr_broker_t **self_p);

//  The endpoint the broker is bound to (ZMQ_LAST_ENDPOINT), with the real
//  port when the options asked for "*". Owned by the broker; valid until
//  tr_broker_stop. NULL for NULL.
TR_EXPORT const char *
    tr_broker_endpoint (const tr_broker_t *self);

//  Copies the counters into *stats; safe from any thread while the
//  broker runs. Returns TR_OK or TR_EINVAL.
TR_EXPORT int
    tr_broker_stats (tr_broker_t *self, tr_broker_stats_t *stats);

//  Stops the broker (clients see it go silent and reconnect elsewhere or
//  later; nothing queued for them is sent), syncs and closes the
//  scratchpad's log, frees it, sets *self_p to NULL. Accepts NULL.
TR_EXPORT void
    tr_broker_stop (tr_broker_t **self_p);

#ifdef __cplusplus
}
#endif

#endif
