/*  tr_http.c - the node's HTTP engine; see tr_http.h.

    One thread per node runs one libcurl multi handle with the socket
    interface (curl_multi_socket_action) over epoll, so the cost of an
    event does not grow with the transfers in flight: ten thousand waiting
    requests cost ten thousand sockets in the kernel and nothing per loop.
    (curl_multi_poll would rebuild a pollfd array of every socket on every
    wake-up, and curl_multi_perform visits every transfer.)

    Other threads never touch libcurl. They validate and copy a request,
    link it on the engine's command list under its lock and ring an
    eventfd; the engine takes the whole list at once. Everything else
    (queues, windows, cache, the id table) belongs to the engine's thread
    and has no lock. Counters that tr_http_stats reads are atomics.

    A request's life: NEW (on the command list) -> QUEUED (in its
    backend's priority heap) -> RUNNING (an easy handle in the multi) ->
    done, or -> BACKOFF (in the timer heap until its retry is due) ->
    QUEUED again, keeping its place among equals (its first sequence
    number). The timer heap also holds the deadlines of queued requests;
    running attempts carry theirs in CURLOPT_TIMEOUT_MS.

    Backends' limits: max_concurrent counts running attempts; the
    requests-per-minute window counts attempt starts (each retry is a
    request to the server); the tokens-per-minute window holds a request's
    estimated tokens from its first start, plus tr_http_charge's
    corrections. The queue is strict: when its head cannot start, nothing
    behind it starts either, so a large request is not starved by small
    ones. A request estimated at more tokens than the limit starts only
    when the window is empty.
*/

#include "tr_internal.h"
#include "tr_clock.h"
#include "troupe/tr_http.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define S_WINDOW_NS     (INT64_C (60) * 1000000000)
#define S_NAME_MAX      63
#define S_METHOD_MAX    32
#define S_EVENTS        512             //  epoll events taken per wait

//  Connections kept alive for reuse, and the attempts in flight up to
//  which a new attempt may look for one. libcurl 7.88 looks for a
//  reusable connection by walking every connection to the host, busy
//  ones included, and makes room in its cache by walking all of them
//  again: with ten thousand requests in flight that is quadratic (about
//  8 s of CPU measured for 10,000 requests, against 0.6 s without). So
//  attempts started while this many are running take a connection of
//  their own (CURLOPT_FRESH_CONNECT) and close it after
//  (CURLOPT_FORBID_REUSE), which skips both walks; below it, as for
//  every ordinary load, connections are reused (no new TCP and TLS
//  handshake per request).
#define S_KEEP_ALIVE    256

//  Defaults of tr_http_backend_opts_t (see tr_http.h).
#define S_MAX_CONCURRENT    64
#define S_CONNECT_TIMEOUT   10000
#define S_TIMEOUT           120000
#define S_MAX_RETRIES       3
#define S_BACKOFF_INITIAL   500
#define S_BACKOFF_MAX       30000
#define S_MAX_RESPONSE      ((size_t) 8 << 20)
#define S_CACHE_TTL         300000

enum { S_NEW, S_QUEUED, S_RUNNING, S_BACKOFF };

#define S_NOWHERE       SIZE_MAX        //  not in a heap

typedef struct s_req s_req_t;
typedef struct s_backend s_backend_t;

//  --------------------------------------------------------------------------
//  A binary min-heap of requests. Each request remembers its position in
//  each heap (at `pos_offset`), so that it can be removed from the middle
//  (cancel, deadline) in O(log n).

typedef struct {
    s_req_t **items;
    size_t count;
    size_t alloc;
    size_t pos_offset;
    bool (*before) (const s_req_t *a, const s_req_t *b);
} s_heap_t;

//  A sliding one-minute window of charges (requests or tokens), oldest
//  first in a ring that grows as needed.
typedef struct {
    int64_t at_ns;
    int64_t amount;
} s_mark_t;

typedef struct {
    s_mark_t *marks;
    size_t head;
    size_t count;
    size_t alloc;
    int64_t sum;
} s_window_t;

//  A cached response. Entries sit in a hash chain and on the LRU list
//  (most recently used first).
typedef struct s_entry {
    struct s_entry *chain;
    struct s_entry *newer, *older;
    uint64_t hash;
    char *key;
    size_t key_len;
    long status;
    char *body;
    size_t size;
    char *content_type;
    int64_t expires_ns;
} s_entry_t;

typedef struct {
    s_entry_t **buckets;
    size_t nbuckets;                    //  a power of two, or 0
    size_t count;
    s_entry_t *newest, *oldest;
} s_cache_t;

struct s_backend {
    //  The engine's list: appended under the lock, walked by the engine's
    //  thread without it.
    _Atomic (s_backend_t *) next;
    char name [S_NAME_MAX + 1];
    tr_http_backend_opts_t wanted;      //  as last set (under lock)
    char *ca_wanted;                    //  its ca_file, our copy (under lock)
    bool changed;                       //  wanted differs from opts
    //  The engine thread's own:
    tr_http_backend_opts_t opts;        //  in force, defaults filled in
    char *ca_file;                      //  opts.ca_file, our copy
    s_heap_t queue;
    s_window_t requests;
    s_window_t tokens;
    s_cache_t cache;
    int running;                        //  attempts in flight
    int64_t blocked_until_ns;           //  a rate limit holds the queue's head
    //  Counters, read from any thread.
    atomic_uint_fast64_t submitted;
    atomic_uint_fast64_t completed_ok;
    atomic_uint_fast64_t failed;
    atomic_uint_fast64_t retries;
    atomic_uint_fast64_t cache_hits;
    atomic_int_fast64_t charged;
    atomic_uint in_flight;
    atomic_uint queued;
};

struct s_req {
    s_req_t *next;                      //  command list; id table chain
    uint64_t id;
    uint64_t seq;                       //  order of arrival, for equal priorities
    s_backend_t *backend;
    tr_http_done_fn *done;
    void *arg;
    char *method;
    char *url;
    struct curl_slist *headers;
    char *body;
    size_t body_size;
    int priority;
    int timeout_ms;
    uint32_t tokens;
    bool cacheable;
    bool charged;                       //  tokens counted in the window
    bool oom;                           //  the body could not grow
    int state;                          //  S_*
    int attempts;
    int64_t submitted_ns;
    int64_t deadline_ns;                //  0: none
    int64_t wake_ns;                    //  its key in the timer heap
    int64_t queued_since_ns;
    int64_t queued_ns;                  //  total time spent queued
    size_t queue_pos;                   //  in backend->queue
    size_t timer_pos;                   //  in the engine's timers
    //  The cache key (cacheable requests only).
    char *key;
    size_t key_len;
    uint64_t key_hash;
    //  The current or last attempt.
    CURL *easy;
    size_t max_response;
    int attempt_timeout_ms;
    bool too_big;
    char *resp;
    size_t resp_size;
    size_t resp_alloc;
    long status;
    char *content_type;
    char errbuf [CURL_ERROR_SIZE];
};

//  A tr_http_cancel call waiting for the engine's answer (on the
//  caller's stack).
typedef struct s_cancel {
    struct s_cancel *next;
    uint64_t id;
    int rc;
    bool answered;
} s_cancel_t;

//  A tr_http_charge correction on its way to the engine.
typedef struct s_charge {
    struct s_charge *next;
    s_backend_t *backend;
    int64_t tokens;
} s_charge_t;

struct tr__http {
    tr_node_t *node;
    pthread_mutex_t lock;
    pthread_cond_t answered;            //  a cancel has its answer
    //  Under lock:
    _Atomic (s_backend_t *) backends;   //  never empty: "default" comes first
    s_req_t *cmd_first, *cmd_last;
    s_cancel_t *cancels;
    s_charge_t *charges;
    bool changed;                       //  some backend's settings changed
    bool stopping;                      //  refuses new work
    bool stopped;                       //  the thread has finished everything
    uint64_t next_id;
    //  The thread and its loop.
    pthread_t thread;
    bool started;
    int epfd;
    int wakefd;
    CURLM *multi;
    int64_t curl_due_ns;                //  curl's timer, 0: none
    int running;                        //  attempts in flight, all backends
    s_heap_t timers;
    s_req_t **ids;                      //  live requests by id (chained)
    size_t id_slots;
    size_t id_count;
    uint64_t seq;
    uint64_t rng;
};

//  --------------------------------------------------------------------------
//  Heaps

static size_t *
s_pos (const s_heap_t *heap, s_req_t *req)
{
    return (size_t *) ((char *) req + heap->pos_offset);
}

static void
s_heap_put (s_heap_t *heap, size_t i, s_req_t *req)
{
    heap->items [i] = req;
    *s_pos (heap, req) = i;
}

static void
s_heap_up (s_heap_t *heap, size_t i)
{
    s_req_t *req = heap->items [i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap->before (req, heap->items [parent]))
            break;
        s_heap_put (heap, i, heap->items [parent]);
        i = parent;
    }
    s_heap_put (heap, i, req);
}

static void
s_heap_down (s_heap_t *heap, size_t i)
{
    s_req_t *req = heap->items [i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap->count)
            break;
        if (child + 1 < heap->count
        &&  heap->before (heap->items [child + 1], heap->items [child]))
            child++;
        if (!heap->before (heap->items [child], req))
            break;
        s_heap_put (heap, i, heap->items [child]);
        i = child;
    }
    s_heap_put (heap, i, req);
}

static int
s_heap_push (s_heap_t *heap, s_req_t *req)
{
    if (heap->count == heap->alloc) {
        size_t alloc = heap->alloc? heap->alloc * 2: 64;
        s_req_t **items = (s_req_t **) realloc (heap->items, alloc * sizeof *items);
        if (!items)
            return -1;
        heap->items = items;
        heap->alloc = alloc;
    }
    heap->items [heap->count] = req;
    s_heap_up (heap, heap->count++);
    return 0;
}

//  Removes req if it is in the heap.
static void
s_heap_remove (s_heap_t *heap, s_req_t *req)
{
    size_t i = *s_pos (heap, req);
    if (i == S_NOWHERE)
        return;
    assert (i < heap->count && heap->items [i] == req);
    *s_pos (heap, req) = S_NOWHERE;
    s_req_t *last = heap->items [--heap->count];
    if (last != req) {
        s_heap_put (heap, i, last);
        s_heap_up (heap, i);
        s_heap_down (heap, *s_pos (heap, last));
    }
}

static s_req_t *
s_heap_top (const s_heap_t *heap)
{
    return heap->count? heap->items [0]: NULL;
}

//  Queue order: higher priority first, then first submitted.
static bool
s_queue_before (const s_req_t *a, const s_req_t *b)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    return a->seq < b->seq;
}

static bool
s_timer_before (const s_req_t *a, const s_req_t *b)
{
    return a->wake_ns < b->wake_ns;
}

//  --------------------------------------------------------------------------
//  Sliding windows

static void
s_window_prune (s_window_t *w, int64_t now_ns)
{
    while (w->count && w->marks [w->head].at_ns <= now_ns - S_WINDOW_NS) {
        w->sum -= w->marks [w->head].amount;
        w->head = (w->head + 1) % w->alloc;
        w->count--;
    }
}

static int
s_window_add (s_window_t *w, int64_t now_ns, int64_t amount)
{
    s_window_prune (w, now_ns);
    if (w->count == w->alloc) {
        size_t alloc = w->alloc? w->alloc * 2: 64;
        s_mark_t *marks = (s_mark_t *) malloc (alloc * sizeof *marks);
        if (!marks)
            return -1;
        for (size_t i = 0; i < w->count; i++)
            marks [i] = w->marks [(w->head + i) % w->alloc];
        free (w->marks);
        w->marks = marks;
        w->alloc = alloc;
        w->head = 0;
    }
    w->marks [(w->head + w->count) % w->alloc] = (s_mark_t) { now_ns, amount };
    w->count++;
    w->sum += amount;
    return 0;
}

//  When `need` more fits under `limit`: now_ns if it does already, else
//  the moment enough of the window's oldest charges have aged out. A
//  need above the limit fits only an empty window.
static int64_t
s_window_when (const s_window_t *w, int64_t limit, int64_t need, int64_t now_ns)
{
    int64_t sum = w->sum;
    if (sum <= 0 || sum + need <= limit)
        return now_ns;
    for (size_t i = 0; i < w->count; i++) {
        const s_mark_t *m = &w->marks [(w->head + i) % w->alloc];
        sum -= m->amount;
        if (sum <= 0 || sum + need <= limit)
            return m->at_ns + S_WINDOW_NS;
    }
    return now_ns;
}

static void
s_window_free (s_window_t *w)
{
    free (w->marks);
    memset (w, 0, sizeof *w);
}

//  --------------------------------------------------------------------------
//  The cache: a chained hash on the key's FNV-1a hash, and an LRU list.

static uint64_t
s_fnv1a (const void *data, size_t size, uint64_t hash)
{
    const uint8_t *p = (const uint8_t *) data;
    for (size_t i = 0; i < size; i++)
        hash = (hash ^ p [i]) * UINT64_C (1099511628211);
    return hash;
}

static void
s_entry_free (s_entry_t *e)
{
    free (e->key);
    free (e->body);
    free (e->content_type);
    free (e);
}

static s_entry_t **
s_cache_slot (s_cache_t *c, uint64_t hash, const char *key, size_t key_len)
{
    s_entry_t **slot = &c->buckets [hash & (c->nbuckets - 1)];
    while (*slot && !((*slot)->hash == hash && (*slot)->key_len == key_len
                      && memcmp ((*slot)->key, key, key_len) == 0))
        slot = &(*slot)->chain;
    return slot;
}

static void
s_lru_unlink (s_cache_t *c, s_entry_t *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void
s_lru_front (s_cache_t *c, s_entry_t *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    c->newest = e;
    if (!c->oldest)
        c->oldest = e;
}

static void
s_cache_drop (s_cache_t *c, s_entry_t *e)
{
    s_entry_t **slot = s_cache_slot (c, e->hash, e->key, e->key_len);
    assert (*slot == e);
    *slot = e->chain;
    s_lru_unlink (c, e);
    c->count--;
    s_entry_free (e);
}

//  Drops the least recently used entries until at most `keep` remain.
static void
s_cache_trim (s_cache_t *c, size_t keep)
{
    while (c->count > keep)
        s_cache_drop (c, c->oldest);
    if (c->count == 0 && keep == 0) {
        free (c->buckets);
        c->buckets = NULL;
        c->nbuckets = 0;
    }
}

//  A fresh entry for the key, moved to the front; NULL if none (an
//  expired one is dropped).
static s_entry_t *
s_cache_get (s_cache_t *c, const s_req_t *req, int64_t now_ns)
{
    if (!c->nbuckets)
        return NULL;
    s_entry_t *e = *s_cache_slot (c, req->key_hash, req->key, req->key_len);
    if (!e)
        return NULL;
    if (e->expires_ns <= now_ns) {
        s_cache_drop (c, e);
        return NULL;
    }
    s_lru_unlink (c, e);
    s_lru_front (c, e);
    return e;
}

//  Doubles the bucket array when entries outnumber buckets.
static int
s_cache_grow (s_cache_t *c)
{
    size_t n = c->nbuckets? c->nbuckets * 2: 64;
    s_entry_t **buckets = (s_entry_t **) calloc (n, sizeof *buckets);
    if (!buckets)
        return -1;
    for (size_t i = 0; i < c->nbuckets; i++) {
        s_entry_t *e = c->buckets [i];
        while (e) {
            s_entry_t *next = e->chain;
            e->chain = buckets [e->hash & (n - 1)];
            buckets [e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free (c->buckets);
    c->buckets = buckets;
    c->nbuckets = n;
    return 0;
}

//  Stores req's last response under its key, replacing an older one.
//  A response that cannot be stored (memory) is simply not cached.
static void
s_cache_put (s_cache_t *c, const s_req_t *req, size_t capacity, int ttl_ms, int64_t now_ns)
{
    if (capacity == 0)
        return;
    if (c->count + 1 > c->nbuckets && s_cache_grow (c))
        return;
    s_entry_t **slot = s_cache_slot (c, req->key_hash, req->key, req->key_len);
    if (*slot)
        s_cache_drop (c, *slot);
    s_entry_t *e = (s_entry_t *) calloc (1, sizeof *e);
    if (!e)
        return;
    e->hash = req->key_hash;
    e->key_len = req->key_len;
    e->key = (char *) malloc (req->key_len);
    e->size = req->resp_size;
    e->body = (char *) malloc (req->resp_size + 1);
    e->content_type = req->content_type? strdup (req->content_type): NULL;
    if (!e->key || !e->body || (req->content_type && !e->content_type)) {
        s_entry_free (e);
        return;
    }
    memcpy (e->key, req->key, req->key_len);
    if (req->resp_size)
        memcpy (e->body, req->resp, req->resp_size);
    e->body [e->size] = 0;
    e->status = req->status;
    e->expires_ns = now_ns + (int64_t) ttl_ms * 1000000;
    slot = s_cache_slot (c, e->hash, e->key, e->key_len);
    e->chain = *slot;
    *slot = e;
    s_lru_front (c, e);
    c->count++;
    s_cache_trim (c, capacity);
}

//  --------------------------------------------------------------------------
//  Requests: the id table, and freeing

static void
s_req_free (s_req_t *req)
{
    free (req->method);
    free (req->url);
    curl_slist_free_all (req->headers);
    free (req->body);
    free (req->key);
    free (req->resp);
    free (req->content_type);
    free (req);
}

static int
s_ids_add (tr__http_t *self, s_req_t *req)
{
    if (self->id_count + 1 > self->id_slots) {
        size_t n = self->id_slots? self->id_slots * 2: 256;
        s_req_t **slots = (s_req_t **) calloc (n, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < self->id_slots; i++) {
            s_req_t *r = self->ids [i];
            while (r) {
                s_req_t *next = r->next;
                r->next = slots [r->id & (n - 1)];
                slots [r->id & (n - 1)] = r;
                r = next;
            }
        }
        free (self->ids);
        self->ids = slots;
        self->id_slots = n;
    }
    s_req_t **slot = &self->ids [req->id & (self->id_slots - 1)];
    req->next = *slot;
    *slot = req;
    self->id_count++;
    return 0;
}

static s_req_t **
s_ids_slot (tr__http_t *self, uint64_t id)
{
    if (!self->id_slots)
        return NULL;
    s_req_t **slot = &self->ids [id & (self->id_slots - 1)];
    while (*slot && (*slot)->id != id)
        slot = &(*slot)->next;
    return *slot? slot: NULL;
}

static void
s_ids_remove (tr__http_t *self, s_req_t *req)
{
    s_req_t **slot = s_ids_slot (self, req->id);
    if (slot) {
        *slot = req->next;
        req->next = NULL;
        self->id_count--;
    }
}

//  --------------------------------------------------------------------------
//  Completion

//  Takes req out of wherever it is, counts its end, calls its callback
//  and frees it. The engine thread only.
static void
s_finish (tr__http_t *self, s_req_t *req, int error, const char *detail)
{
    s_backend_t *b = req->backend;
    int64_t now = tr__now_ns ();
    if (req->state == S_RUNNING) {
        curl_multi_remove_handle (self->multi, req->easy);
        curl_easy_cleanup (req->easy);
        req->easy = NULL;
        b->running--;
        self->running--;
        atomic_fetch_sub (&b->in_flight, 1);
    }
    else {
        if (req->state == S_QUEUED)
            req->queued_ns += now - req->queued_since_ns;
        atomic_fetch_sub (&b->queued, 1);
    }
    s_heap_remove (&b->queue, req);
    s_heap_remove (&self->timers, req);
    s_ids_remove (self, req);
    atomic_fetch_add (error == TR_OK? &b->completed_ok: &b->failed, 1);

    tr_http_result_t result = {
        .id = req->id,
        .error = error,
        .status = req->status,
        .body = req->resp? req->resp: "",
        .size = req->resp? req->resp_size: 0,
        .content_type = req->content_type,
        .detail = detail? detail: "",
        .attempts = req->attempts,
        .cached = false,
        .queued_ms = req->queued_ns / 1000000,
        .elapsed_ms = (now - req->submitted_ns) / 1000000
    };
    req->done (&result, req->arg);
    s_req_free (req);
}

//  Answers req from a cache entry (a hit counts as a success).
static void
s_finish_cached (tr__http_t *self, s_req_t *req, const s_entry_t *e)
{
    s_backend_t *b = req->backend;
    atomic_fetch_sub (&b->queued, 1);
    atomic_fetch_add (&b->cache_hits, 1);
    atomic_fetch_add (&b->completed_ok, 1);
    s_ids_remove (self, req);
    tr_http_result_t result = {
        .id = req->id,
        .error = TR_OK,
        .status = e->status,
        .body = e->body,
        .size = e->size,
        .content_type = e->content_type,
        .detail = "",
        .attempts = 0,
        .cached = true,
        .queued_ms = 0,
        .elapsed_ms = (tr__now_ns () - req->submitted_ns) / 1000000
    };
    req->done (&result, req->arg);
    s_req_free (req);
}

//  --------------------------------------------------------------------------
//  Attempts

static size_t
s_on_data (char *data, size_t size, size_t nmemb, void *arg)
{
    s_req_t *req = (s_req_t *) arg;
    size_t n = size * nmemb;
    if (n > req->max_response - req->resp_size) {
        req->too_big = true;
        return 0;                       //  aborts the transfer
    }
    if (req->resp_size + n + 1 > req->resp_alloc) {
        size_t alloc = req->resp_alloc? req->resp_alloc: 1024;
        while (alloc < req->resp_size + n + 1)
            alloc *= 2;
        char *resp = (char *) realloc (req->resp, alloc);
        if (!resp) {
            req->oom = true;
            return 0;
        }
        req->resp = resp;
        req->resp_alloc = alloc;
    }
    memcpy (req->resp + req->resp_size, data, n);
    req->resp_size += n;
    req->resp [req->resp_size] = 0;
    return n;
}

//  Connections close with a reset rather than a FIN: the engine closes a
//  connection only when it has its whole answer (or gives up on it), and
//  a FIN would leave the port in TIME_WAIT for a minute on our side. Past
//  S_KEEP_ALIVE in flight every attempt closes its connection, and
//  libcurl trims its cache by closing idle ones; at thousands of requests
//  a second to one server, TIME_WAIT would use up the local ports (about
//  28,000) within seconds (loopback hides it: tcp_tw_reuse).
static int
s_on_sockopt (void *arg, curl_socket_t fd, curlsocktype purpose)
{
    struct linger abort_on_close = { .l_onoff = 1, .l_linger = 0 };
    if (purpose == CURLSOCKTYPE_IPCXN)
        setsockopt (fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    return CURL_SOCKOPT_OK;
}

//  Sets up one attempt's easy handle; `reuse` lets it take and leave a
//  kept-alive connection. Returns 0 or -1 (out of memory).
static int
s_easy_setup (s_req_t *req, bool reuse, int64_t now_ns)
{
    const tr_http_backend_opts_t *o = &req->backend->opts;
    CURL *easy = curl_easy_init ();
    if (!easy)
        return -1;
    long timeout = req->timeout_ms? req->timeout_ms: o->timeout_ms;
    if (req->deadline_ns) {
        int64_t left = (req->deadline_ns - now_ns + 999999) / 1000000;
        if (left < timeout)
            timeout = left > 0? (long) left: 1;
    }
    req->attempt_timeout_ms = (int) timeout;
    req->max_response = o->max_response;
    curl_easy_setopt (easy, CURLOPT_URL, req->url);
    curl_easy_setopt (easy, CURLOPT_PRIVATE, req);
    curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (easy, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_on_data);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, req->errbuf);
    curl_easy_setopt (easy, CURLOPT_CONNECTTIMEOUT_MS, (long) o->connect_timeout_ms);
    curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt (easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) o->max_response);
    if (!reuse) {
        curl_easy_setopt (easy, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt (easy, CURLOPT_FORBID_REUSE, 1L);
    }
    curl_easy_setopt (easy, CURLOPT_SOCKOPTFUNCTION, s_on_sockopt);
    if (o->ca_file)
        curl_easy_setopt (easy, CURLOPT_CAINFO, o->ca_file);
    if (strcmp (req->method, "HEAD") == 0)
        curl_easy_setopt (easy, CURLOPT_NOBODY, 1L);
    else
    if (req->body || strcmp (req->method, "POST") == 0) {
        curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_size);
        curl_easy_setopt (easy, CURLOPT_POSTFIELDS, req->body? req->body: "");
        if (strcmp (req->method, "POST"))
            curl_easy_setopt (easy, CURLOPT_CUSTOMREQUEST, req->method);
    }
    else
    if (strcmp (req->method, "GET"))
        curl_easy_setopt (easy, CURLOPT_CUSTOMREQUEST, req->method);
    req->easy = easy;
    return 0;
}

//  Starts req's next attempt: charges the backend's windows and hands the
//  transfer to the multi handle. On failure finishes req.
static void
s_start (tr__http_t *self, s_req_t *req, int64_t now_ns)
{
    s_backend_t *b = req->backend;
    req->queued_ns += now_ns - req->queued_since_ns;
    req->too_big = false;
    req->oom = false;
    req->resp_size = 0;
    if (req->resp)
        req->resp [0] = 0;
    req->status = 0;
    free (req->content_type);
    req->content_type = NULL;
    req->errbuf [0] = 0;
    req->state = S_RUNNING;             //  counted as running from here
    atomic_fetch_sub (&b->queued, 1);
    atomic_fetch_add (&b->in_flight, 1);
    b->running++;
    self->running++;
    if (s_easy_setup (req, self->running < S_KEEP_ALIVE, now_ns)) {
        req->state = S_QUEUED;          //  nothing to remove from the multi
        b->running--;
        self->running--;
        atomic_fetch_sub (&b->in_flight, 1);
        atomic_fetch_add (&b->queued, 1);
        req->queued_since_ns = now_ns;
        s_finish (self, req, TR_ENOMEM, "out of memory starting an attempt");
        return;
    }
    if (curl_multi_add_handle (self->multi, req->easy) != CURLM_OK) {
        curl_easy_cleanup (req->easy);
        req->easy = NULL;
        req->state = S_QUEUED;
        b->running--;
        self->running--;
        atomic_fetch_sub (&b->in_flight, 1);
        atomic_fetch_add (&b->queued, 1);
        req->queued_since_ns = now_ns;
        s_finish (self, req, TR_ENOMEM, "the transfer could not be added");
        return;
    }
    req->attempts++;
    if (req->attempts > 1)
        atomic_fetch_add (&b->retries, 1);
    if (b->opts.requests_per_minute)
        s_window_add (&b->requests, now_ns, 1);
    if (!req->charged) {
        req->charged = true;
        if (req->tokens && b->opts.tokens_per_minute)
            s_window_add (&b->tokens, now_ns, req->tokens);
        atomic_fetch_add (&b->charged, req->tokens);
    }
}

//  Puts req in its backend's queue (and its deadline in the timers).
static void
s_enqueue (tr__http_t *self, s_req_t *req, int64_t now_ns)
{
    //  A new request has waited since its submission (on the command
    //  list too); a retry, since its backoff ended.
    req->queued_since_ns = req->state == S_NEW? req->submitted_ns: now_ns;
    req->state = S_QUEUED;
    if (s_heap_push (&req->backend->queue, req)) {
        s_finish (self, req, TR_ENOMEM, "out of memory queueing");
        return;
    }
    if (req->deadline_ns) {
        req->wake_ns = req->deadline_ns;
        if (s_heap_push (&self->timers, req))
            s_finish (self, req, TR_ENOMEM, "out of memory queueing");
    }
}

//  Starts what the backend's limits allow, highest priority first.
static void
s_dispatch (tr__http_t *self, s_backend_t *b, int64_t now_ns)
{
    const tr_http_backend_opts_t *o = &b->opts;
    b->blocked_until_ns = 0;
    while (b->queue.count && b->running < o->max_concurrent) {
        s_req_t *req = s_heap_top (&b->queue);
        int64_t when = now_ns;
        if (o->requests_per_minute) {
            s_window_prune (&b->requests, now_ns);
            when = s_window_when (&b->requests, o->requests_per_minute, 1, now_ns);
        }
        if (o->tokens_per_minute && !req->charged && req->tokens) {
            s_window_prune (&b->tokens, now_ns);
            int64_t t = s_window_when (&b->tokens, o->tokens_per_minute,
                                       req->tokens, now_ns);
            if (t > when)
                when = t;
        }
        if (when > now_ns) {
            b->blocked_until_ns = when;
            return;
        }
        s_heap_remove (&b->queue, req);
        s_heap_remove (&self->timers, req);
        s_start (self, req, now_ns);
    }
}

//  Full jitter: a random delay between 0 and the capped exponential step
//  for this retry (the first retry's cap is backoff_initial_ms).
static int64_t
s_backoff_ms (tr__http_t *self, const s_req_t *req)
{
    const tr_http_backend_opts_t *o = &req->backend->opts;
    int64_t cap = o->backoff_initial_ms;
    for (int i = 1; i < req->attempts && cap < o->backoff_max_ms; i++)
        cap *= 2;
    if (cap > o->backoff_max_ms)
        cap = o->backoff_max_ms;
    //  xorshift64*
    self->rng ^= self->rng >> 12;
    self->rng ^= self->rng << 25;
    self->rng ^= self->rng >> 27;
    uint64_t r = self->rng * UINT64_C (2685821657736338717);
    return cap > 0? (int64_t) (r % (uint64_t) (cap + 1)): 0;
}

//  After an attempt that may be retried: waits for the backoff (at least
//  the server's Retry-After) and queues it again, or finishes it with
//  the attempt's error when retries are spent, when the server asks for
//  a longer wait than backoff_max_ms (waiting silently for minutes helps
//  nobody; the caller hears why at once), or when the wait would pass
//  the deadline.
static void
s_retry_or_fail (tr__http_t *self, s_req_t *req, int error, const char *why,
                 int64_t retry_after_s, int64_t now_ns)
{
    const tr_http_backend_opts_t *o = &req->backend->opts;
    char detail [CURL_ERROR_SIZE + 96];
    int retries = o->max_retries < 0? 0: o->max_retries;
    if (req->attempts > retries) {
        snprintf (detail, sizeof detail, "%s (%d attempt%s)", why,
                  req->attempts, req->attempts == 1? "": "s");
        s_finish (self, req, error, detail);
        return;
    }
    if (retry_after_s * 1000 > o->backoff_max_ms) {
        snprintf (detail, sizeof detail, "%s (the server asks for a retry in %lld s, "
                  "beyond backoff_max_ms %d)", why, (long long) retry_after_s,
                  o->backoff_max_ms);
        s_finish (self, req, error, detail);
        return;
    }
    int64_t delay_ms = s_backoff_ms (self, req);
    if (retry_after_s * 1000 > delay_ms)
        delay_ms = retry_after_s * 1000;
    int64_t wake = now_ns + delay_ms * 1000000;
    if (req->deadline_ns && wake >= req->deadline_ns) {
        snprintf (detail, sizeof detail, "%s (a retry in %lld ms would pass the deadline)",
                  why, (long long) delay_ms);
        s_finish (self, req, error, detail);
        return;
    }
    s_backend_t *b = req->backend;
    curl_multi_remove_handle (self->multi, req->easy);
    curl_easy_cleanup (req->easy);
    req->easy = NULL;
    b->running--;
    self->running--;
    atomic_fetch_sub (&b->in_flight, 1);
    atomic_fetch_add (&b->queued, 1);
    req->state = S_BACKOFF;
    req->wake_ns = wake;
    if (s_heap_push (&self->timers, req))
        s_finish (self, req, TR_ENOMEM, "out of memory scheduling a retry");
}

//  True for the curl results that mean the connection failed or broke
//  before an answer came (worth another attempt).
static bool
s_connection_failed (CURLcode rc)
{
    switch (rc) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
            return true;
        default:
            return false;
    }
}

//  An attempt has ended: decide success, retry or failure.
static void
s_attempt_done (tr__http_t *self, s_req_t *req, CURLcode rc)
{
    int64_t now = tr__now_ns ();
    CURL *easy = req->easy;
    long status = 0;
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
    req->status = status;
    char *ctype = NULL;
    if (curl_easy_getinfo (easy, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype)
        req->content_type = strdup (ctype);
    curl_off_t retry_after = 0;
    curl_easy_getinfo (easy, CURLINFO_RETRY_AFTER, &retry_after);
    curl_off_t connected_us = 0;
    curl_easy_getinfo (easy, CURLINFO_CONNECT_TIME_T, &connected_us);
    char why [CURL_ERROR_SIZE + 64];
    s_backend_t *b = req->backend;

    if (rc == CURLE_OK) {
        if (status >= 200 && status < 300) {
            if (req->cacheable && b->opts.cache_entries)
                s_cache_put (&b->cache, req, b->opts.cache_entries,
                             b->opts.cache_ttl_ms, now);
            s_finish (self, req, TR_OK, NULL);
            return;
        }
        snprintf (why, sizeof why, "HTTP %ld", status);
        if (status == 429 || (status >= 500 && status <= 599))
            s_retry_or_fail (self, req, TR_EHTTP, why, (int64_t) retry_after, now);
        else
            s_finish (self, req, TR_EHTTP, why);
        return;
    }
    const char *text = req->errbuf [0]? req->errbuf: curl_easy_strerror (rc);
    if (req->oom) {
        s_finish (self, req, TR_ENOMEM, "out of memory holding the response");
        return;
    }
    if (req->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        //  A truncated body is no body: nobody should parse half of one.
        req->resp_size = 0;
        if (req->resp)
            req->resp [0] = 0;
        snprintf (why, sizeof why, "response larger than %zu bytes", req->max_response);
        s_finish (self, req, TR_ETOOBIG, why);
        return;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        if (req->deadline_ns && now >= req->deadline_ns - 1000000) {
            s_finish (self, req, TR_ETIMEDOUT, "deadline passed");
            return;
        }
        if (connected_us == 0) {        //  never connected: a connection failure
            int limit = b->opts.connect_timeout_ms < req->attempt_timeout_ms?
                        b->opts.connect_timeout_ms: req->attempt_timeout_ms;
            snprintf (why, sizeof why, "no connection within %d ms: %s", limit, text);
            s_retry_or_fail (self, req, TR_ETIMEDOUT, why, 0, now);
        }
        else {
            snprintf (why, sizeof why, "attempt timed out after %d ms: %s",
                      req->attempt_timeout_ms, text);
            s_finish (self, req, TR_ETIMEDOUT, why);
        }
        return;
    }
    if (rc == CURLE_PEER_FAILED_VERIFICATION)
        snprintf (why, sizeof why, "TLS: the server's certificate is not trusted: %s", text);
    else
    if (rc == CURLE_SSL_CACERT_BADFILE)
        snprintf (why, sizeof why, "TLS: the CA file cannot be used: %s", text);
    else
    if (rc == CURLE_SSL_CONNECT_ERROR)
        snprintf (why, sizeof why, "TLS: the handshake failed: %s", text);
    else
        snprintf (why, sizeof why, "%s", text);
    req->status = 0;
    if (s_connection_failed (rc))
        s_retry_or_fail (self, req, TR_EHTTP, why, 0, now);
    else
        s_finish (self, req, TR_EHTTP, why);
}

static void
s_read_done (tr__http_t *self)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read (self->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        s_req_t *req = NULL;
        curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
        assert (req && req->easy == msg->easy_handle);
        s_attempt_done (self, req, msg->data.result);
    }
}

//  --------------------------------------------------------------------------
//  libcurl's socket and timer callbacks

static int
s_on_socket (CURL *easy, curl_socket_t fd, int what, void *arg, void *socketp)
{
    tr__http_t *self = (tr__http_t *) arg;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl (self->epfd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    struct epoll_event ev = { 0 };
    ev.data.fd = fd;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev.events |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev.events |= EPOLLOUT;
    //  The descriptor may be new to epoll or known (curl reuses numbers).
    if (epoll_ctl (self->epfd, EPOLL_CTL_MOD, fd, &ev) && errno == ENOENT)
        epoll_ctl (self->epfd, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

static int
s_on_timer (CURLM *multi, long timeout_ms, void *arg)
{
    tr__http_t *self = (tr__http_t *) arg;
    self->curl_due_ns = timeout_ms < 0? 0: tr__now_ns () + (int64_t) timeout_ms * 1000000;
    return 0;
}

//  --------------------------------------------------------------------------
//  The engine's thread

//  Backend settings with their defaults filled in.
static tr_http_backend_opts_t
s_with_defaults (const tr_http_backend_opts_t *in)
{
    tr_http_backend_opts_t o = *in;
    o.name = NULL;
    if (!o.max_concurrent)      o.max_concurrent = S_MAX_CONCURRENT;
    if (!o.connect_timeout_ms)  o.connect_timeout_ms = S_CONNECT_TIMEOUT;
    if (!o.timeout_ms)          o.timeout_ms = S_TIMEOUT;
    if (!o.max_retries)         o.max_retries = S_MAX_RETRIES;
    if (!o.backoff_initial_ms)  o.backoff_initial_ms = S_BACKOFF_INITIAL;
    if (!o.backoff_max_ms)      o.backoff_max_ms = S_BACKOFF_MAX;
    if (!o.max_response)        o.max_response = S_MAX_RESPONSE;
    if (!o.cache_ttl_ms)        o.cache_ttl_ms = S_CACHE_TTL;
    return o;
}

//  Takes a new request from the command list into the engine: the id
//  table, then the cache or the queue.
static void
s_accept (tr__http_t *self, s_req_t *req, int64_t now_ns)
{
    req->next = NULL;
    req->queue_pos = req->timer_pos = S_NOWHERE;
    req->seq = ++self->seq;
    if (s_ids_add (self, req)) {
        req->state = S_NEW;
        s_finish (self, req, TR_ENOMEM, "out of memory accepting the request");
        return;
    }
    s_backend_t *b = req->backend;
    if (req->cacheable && b->opts.cache_entries) {
        s_entry_t *e = s_cache_get (&b->cache, req, now_ns);
        if (e) {
            s_finish_cached (self, req, e);
            return;
        }
    }
    s_enqueue (self, req, now_ns);
}

//  Answers one cancel: the request ends with TR_ECANCELED now, on this
//  thread, before its canceller hears TR_OK.
static int
s_cancel_now (tr__http_t *self, uint64_t id)
{
    s_req_t **slot = s_ids_slot (self, id);
    if (!slot)
        return TR_ENOTFOUND;
    s_finish (self, *slot, TR_ECANCELED, "canceled");
    return TR_OK;
}

//  Takes every command waiting under the lock and applies it. Returns
//  true when the engine is stopping.
static bool
s_take_commands (tr__http_t *self)
{
    pthread_mutex_lock (&self->lock);
    s_req_t *reqs = self->cmd_first;
    self->cmd_first = self->cmd_last = NULL;
    s_cancel_t *cancels = self->cancels;
    self->cancels = NULL;
    s_charge_t *charges = self->charges;
    self->charges = NULL;
    if (self->changed) {
        self->changed = false;
        for (s_backend_t *b = self->backends; b; b = b->next)
            if (b->changed) {
                b->changed = false;
                b->opts = s_with_defaults (&b->wanted);
                //  The wanted CA file's copy becomes the one in force
                //  (the next tr_http_backend_set brings a copy of its own).
                free (b->ca_file);
                b->ca_file = b->ca_wanted;
                b->ca_wanted = NULL;
                b->opts.ca_file = b->ca_file;
                s_cache_trim (&b->cache, b->opts.cache_entries);
            }
    }
    bool stopping = self->stopping;
    pthread_mutex_unlock (&self->lock);

    int64_t now = tr__now_ns ();
    while (reqs) {
        s_req_t *next = reqs->next;
        s_accept (self, reqs, now);
        reqs = next;
    }
    while (charges) {
        s_charge_t *next = charges->next;
        s_backend_t *b = charges->backend;
        if (b->opts.tokens_per_minute)
            s_window_add (&b->tokens, now, charges->tokens);
        free (charges);
        charges = next;
    }
    if (cancels) {
        for (s_cancel_t *c = cancels; c; c = c->next)
            c->rc = s_cancel_now (self, c->id);
        pthread_mutex_lock (&self->lock);
        while (cancels) {
            s_cancel_t *next = cancels->next;
            cancels->answered = true;   //  the caller may return now
            cancels = next;
        }
        pthread_cond_broadcast (&self->answered);
        pthread_mutex_unlock (&self->lock);
    }
    return stopping;
}

//  Retries that are due go back to their queue; queued requests past
//  their deadline end.
static void
s_fire_timers (tr__http_t *self, int64_t now_ns)
{
    s_req_t *req;
    while ((req = s_heap_top (&self->timers)) && req->wake_ns <= now_ns) {
        s_heap_remove (&self->timers, req);
        if (req->state == S_BACKOFF)
            s_enqueue (self, req, now_ns);     //  still counted as queued
        else
            s_finish (self, req, TR_ETIMEDOUT, "deadline passed while queued");
    }
}

//  Milliseconds until the next thing the loop must do (-1: nothing).
static int
s_wait_ms (tr__http_t *self, int64_t now_ns)
{
    int64_t due = self->curl_due_ns;
    s_req_t *top = s_heap_top (&self->timers);
    if (top && (!due || top->wake_ns < due))
        due = top->wake_ns;
    for (s_backend_t *b = self->backends; b; b = b->next)
        if (b->blocked_until_ns && (!due || b->blocked_until_ns < due))
            due = b->blocked_until_ns;
    if (!due)
        return -1;
    if (due <= now_ns)
        return 0;
    int64_t ms = (due - now_ns + 999999) / 1000000;
    return ms > INT32_MAX? INT32_MAX: (int) ms;
}

//  Ends every request with TR_ECLOSED (the node is shutting down).
static void
s_close_all (tr__http_t *self)
{
    while (self->id_count) {
        for (size_t i = 0; i < self->id_slots; i++)
            while (self->ids [i])
                s_finish (self, self->ids [i], TR_ECLOSED, "the node is shutting down");
    }
}

static void *
s_main (void *arg)
{
    tr__http_t *self = (tr__http_t *) arg;
    struct epoll_event events [S_EVENTS];
    for (;;) {
        int64_t now = tr__now_ns ();
        int n = epoll_wait (self->epfd, events, S_EVENTS, s_wait_ms (self, now));
        int running;
        for (int i = 0; i < n; i++) {
            int fd = events [i].data.fd;
            if (fd == self->wakefd) {
                uint64_t count;
                if (read (self->wakefd, &count, sizeof count) < 0) {
                    //  EAGAIN: another wake-up was already drained
                }
                continue;
            }
            int flags = 0;
            if (events [i].events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
            if (events [i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (events [i].events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action (self->multi, fd, flags, &running);
        }
        now = tr__now_ns ();
        if (self->curl_due_ns && self->curl_due_ns <= now) {
            self->curl_due_ns = 0;
            curl_multi_socket_action (self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        s_read_done (self);
        if (s_take_commands (self))
            break;
        now = tr__now_ns ();
        s_fire_timers (self, now);
        for (s_backend_t *b = self->backends; b; b = b->next)
            if (b->queue.count)
                s_dispatch (self, b, now);
            else
                b->blocked_until_ns = 0;    //  nothing left to hold back
    }
    s_close_all (self);
    //  Whatever arrives from here on is refused by the callers themselves;
    //  answer the cancels that came in meanwhile.
    pthread_mutex_lock (&self->lock);
    self->stopped = true;
    for (s_cancel_t *c = self->cancels; c; c = c->next) {
        c->rc = TR_ENOTFOUND;
        c->answered = true;
    }
    self->cancels = NULL;
    pthread_cond_broadcast (&self->answered);
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

static void
s_wake (tr__http_t *self)
{
    uint64_t one = 1;
    if (write (self->wakefd, &one, sizeof one) < 0) {
        //  EAGAIN: the counter is full, so the engine is awake anyway
    }
}

//  --------------------------------------------------------------------------
//  Engine lifecycle

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;
static CURLcode s_curl_rc;
static pthread_mutex_t s_start_lock = PTHREAD_MUTEX_INITIALIZER;

static void
s_curl_init (void)
{
    s_curl_rc = curl_global_init (CURL_GLOBAL_DEFAULT);
}

static s_backend_t *
s_backend_new (const tr_http_backend_opts_t *opts)
{
    s_backend_t *b = (s_backend_t *) calloc (1, sizeof *b);
    if (!b)
        return NULL;
    snprintf (b->name, sizeof b->name, "%s", opts->name);
    if (opts->ca_file && !(b->ca_file = strdup (opts->ca_file))) {
        free (b);
        return NULL;
    }
    b->wanted = *opts;
    b->wanted.name = NULL;
    b->wanted.ca_file = NULL;
    b->opts = s_with_defaults (opts);
    b->opts.ca_file = b->ca_file;
    b->queue.pos_offset = offsetof (s_req_t, queue_pos);
    b->queue.before = s_queue_before;
    return b;
}

static void
s_backend_free (s_backend_t *b)
{
    free (b->queue.items);
    s_window_free (&b->requests);
    s_window_free (&b->tokens);
    s_cache_trim (&b->cache, 0);
    free (b->ca_wanted);
    free (b->ca_file);
    free (b);
}

static void
s_engine_free (tr__http_t *self)
{
    if (self->multi)
        curl_multi_cleanup (self->multi);
    if (self->epfd >= 0)
        close (self->epfd);
    if (self->wakefd >= 0)
        close (self->wakefd);
    s_backend_t *b = self->backends;
    while (b) {
        s_backend_t *next = b->next;
        s_backend_free (b);
        b = next;
    }
    free (self->timers.items);
    free (self->ids);
    pthread_cond_destroy (&self->answered);
    pthread_mutex_destroy (&self->lock);
    free (self);
}

//  Makes the engine and starts its thread. TR_OK, TR_ENOMEM or TR_ESYS.
static int
s_engine_new (tr_node_t *node, tr__http_t **self_p)
{
    pthread_once (&s_curl_once, s_curl_init);
    if (s_curl_rc != CURLE_OK)
        return TR_ESYS;
    tr__http_t *self = (tr__http_t *) calloc (1, sizeof *self);
    if (!self)
        return TR_ENOMEM;
    self->node = node;
    self->epfd = self->wakefd = -1;
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->answered, NULL);
    self->timers.pos_offset = offsetof (s_req_t, timer_pos);
    self->timers.before = s_timer_before;
    self->next_id = 1;
    self->rng = (uint64_t) tr__now_ns () ^ ((uint64_t) (uintptr_t) self << 16) ^ node->id;
    if (!self->rng)
        self->rng = 1;
    int rc = TR_ENOMEM;
    tr_http_backend_opts_t defaults = { .name = "default" };
    self->backends = s_backend_new (&defaults);
    self->multi = curl_multi_init ();
    if (!self->backends || !self->multi)
        goto fail;
    rc = TR_ESYS;
    self->epfd = epoll_create1 (EPOLL_CLOEXEC);
    self->wakefd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->epfd < 0 || self->wakefd < 0)
        goto fail;
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = self->wakefd };
    if (epoll_ctl (self->epfd, EPOLL_CTL_ADD, self->wakefd, &ev))
        goto fail;
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETFUNCTION, s_on_socket);
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt (self->multi, CURLMOPT_TIMERFUNCTION, s_on_timer);
    curl_multi_setopt (self->multi, CURLMOPT_TIMERDATA, self);
    curl_multi_setopt (self->multi, CURLMOPT_MAXCONNECTS, (long) S_KEEP_ALIVE);
    //  The engine's thread takes no signals: they belong to the host.
    sigset_t all, old;
    sigfillset (&all);
    pthread_sigmask (SIG_SETMASK, &all, &old);
    int err = pthread_create (&self->thread, NULL, s_main, self);
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    if (err)
        goto fail;
    self->started = true;
    *self_p = self;
    return TR_OK;

fail:
    s_engine_free (self);
    return rc;
}

//  The node's engine; started when `start` is set and there is none yet.
//  NULL with *rc_p set when there is none.
static tr__http_t *
s_engine (tr_node_t *node, bool start, int *rc_p)
{
    tr__http_t *self = atomic_load_explicit (&node->http, memory_order_acquire);
    if (self || !start) {
        *rc_p = self? TR_OK: TR_ENOTFOUND;
        return self;
    }
    pthread_mutex_lock (&s_start_lock);
    self = atomic_load_explicit (&node->http, memory_order_acquire);
    *rc_p = TR_OK;
    if (!self) {
        if (atomic_load (&node->closing))
            *rc_p = TR_ECLOSED;
        else {
            *rc_p = s_engine_new (node, &self);
            if (*rc_p == TR_OK)
                atomic_store_explicit (&node->http, self, memory_order_release);
        }
    }
    pthread_mutex_unlock (&s_start_lock);
    return self;
}

void
tr__http_stop (tr_node_t *node)
{
    //  The node is closing, so no engine can start after this lock.
    pthread_mutex_lock (&s_start_lock);
    tr__http_t *self = atomic_load (&node->http);
    pthread_mutex_unlock (&s_start_lock);
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    bool join = self->started && !self->stopping;
    self->stopping = true;
    pthread_mutex_unlock (&self->lock);
    if (join) {
        s_wake (self);
        pthread_join (self->thread, NULL);
    }
}

void
tr__http_destroy (tr_node_t *node)
{
    tr__http_t *self = atomic_exchange (&node->http, NULL);
    if (self) {
        assert (self->stopped || !self->started);
        s_engine_free (self);
    }
}

//  --------------------------------------------------------------------------
//  The public interface

static bool
s_valid_name (const char *name)
{
    size_t len = name? strlen (name): 0;
    if (len < 1 || len > S_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name [i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
        ||    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

//  A method is an HTTP token (RFC 9110 5.6.2) of at most S_METHOD_MAX.
static bool
s_valid_method (const char *method)
{
    size_t len = strlen (method);
    if (len < 1 || len > S_METHOD_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!strchr ("!#$%&'*+-.^_`|~", method [i])
        &&  !((method [i] >= 'A' && method [i] <= 'Z')
        ||    (method [i] >= 'a' && method [i] <= 'z')
        ||    (method [i] >= '0' && method [i] <= '9')))
            return false;
    return true;
}

//  "Name: value" with a token name and no line breaks.
static bool
s_valid_header (const char *line)
{
    const char *colon = strchr (line, ':');
    if (!colon || colon == line || strpbrk (line, "\r\n"))
        return false;
    for (const char *p = line; p < colon; p++)
        if (*p <= ' ' || *p >= 127 || strchr ("\"(),/:;<=>?@[\\]{}", *p))
            return false;
    return true;
}

//  An absolute http or https URL that libcurl can parse.
static bool
s_valid_url (const char *url)
{
    if (strncasecmp (url, "http://", 7) && strncasecmp (url, "https://", 8))
        return false;
    CURLU *u = curl_url ();
    if (!u)
        return false;
    bool ok = curl_url_set (u, CURLUPART_URL, url, 0) == CURLUE_OK;
    curl_url_cleanup (u);
    return ok;
}

//  Finds a backend by name (NULL: "default"), under the engine's lock.
static s_backend_t *
s_backend_find (tr__http_t *self, const char *name)
{
    if (!name)
        name = "default";
    for (s_backend_t *b = self->backends; b; b = b->next)
        if (strcmp (b->name, name) == 0)
            return b;
    return NULL;
}

int
tr_http_backend_set (tr_node_t *node, const tr_http_backend_opts_t *opts)
{
    if (!node || !opts || !s_valid_name (opts->name))
        return TR_EINVAL;
    assert (node->tag == TR__NODE_TAG);
    if (opts->max_concurrent < 0 || opts->requests_per_minute < 0
    ||  opts->tokens_per_minute < 0 || opts->connect_timeout_ms < 0
    ||  opts->timeout_ms < 0 || opts->max_retries < -1
    ||  opts->backoff_initial_ms < 0 || opts->backoff_max_ms < 0
    ||  opts->cache_ttl_ms < 0 || (opts->ca_file && !*opts->ca_file))
        return TR_EINVAL;
    if (atomic_load (&node->closing))
        return TR_ECLOSED;
    int rc;
    tr__http_t *self = s_engine (node, true, &rc);
    if (!self)
        return rc;
    char *ca_file = opts->ca_file? strdup (opts->ca_file): NULL;
    if (opts->ca_file && !ca_file)
        return TR_ENOMEM;
    pthread_mutex_lock (&self->lock);
    rc = TR_OK;
    if (self->stopping)
        rc = TR_ECLOSED;
    else {
        s_backend_t *b = s_backend_find (self, opts->name);
        if (b) {
            b->wanted = *opts;
            b->wanted.name = NULL;
            b->wanted.ca_file = NULL;
            free (b->ca_wanted);
            b->ca_wanted = ca_file;
            ca_file = NULL;
            b->changed = true;
            self->changed = true;
        }
        else
        if ((b = s_backend_new (opts))) {
            //  At the end of the list: the engine walks it without the lock.
            _Atomic (s_backend_t *) *last = &self->backends;
            while (*last)
                last = &(*last)->next;
            *last = b;
        }
        else
            rc = TR_ENOMEM;
    }
    pthread_mutex_unlock (&self->lock);
    free (ca_file);                     //  not taken: a new backend copied it
    if (rc == TR_OK)
        s_wake (self);
    return rc;
}

//  Appends a length-prefixed field to a cache key at *at.
static void
s_key_put (char *key, size_t *at, const void *data, size_t len)
{
    uint64_t n = len;
    memcpy (key + *at, &n, sizeof n);
    if (len)
        memcpy (key + *at + sizeof n, data, len);
    *at += sizeof n + len;
}

//  The cache key: method, URL, headers and body, each length-prefixed so
//  that no two different requests run together into the same bytes.
static int
s_make_key (s_req_t *req)
{
    size_t size = 8 + strlen (req->method) + 8 + strlen (req->url) + 8 + req->body_size;
    for (struct curl_slist *h = req->headers; h; h = h->next)
        size += 8 + strlen (h->data);
    char *key = (char *) malloc (size);
    if (!key)
        return -1;
    size_t at = 0;
    s_key_put (key, &at, req->method, strlen (req->method));
    s_key_put (key, &at, req->url, strlen (req->url));
    for (struct curl_slist *h = req->headers; h; h = h->next)
        s_key_put (key, &at, h->data, strlen (h->data));
    s_key_put (key, &at, req->body, req->body_size);
    assert (at == size);
    req->key = key;
    req->key_len = size;
    req->key_hash = s_fnv1a (key, size, UINT64_C (14695981039346656037));
    return 0;
}

//  A copy of the request, with its header list; NULL when out of memory.
static s_req_t *
s_req_copy (const tr_http_request_t *r)
{
    s_req_t *req = (s_req_t *) calloc (1, sizeof *req);
    if (!req)
        return NULL;
    const char *method = r->method? r->method: r->body? "POST": "GET";
    req->method = strdup (method);
    req->url = strdup (r->url);
    if (!req->method || !req->url)
        goto fail;
    for (char *p = req->method; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char) (*p - 'a' + 'A');
    if (r->headers)
        for (const char *const *h = r->headers; *h; h++) {
            struct curl_slist *list = curl_slist_append (req->headers, *h);
            if (!list)
                goto fail;
            req->headers = list;
        }
    if (r->body) {
        req->body = (char *) malloc (r->body_size? r->body_size: 1);
        if (!req->body)
            goto fail;
        memcpy (req->body, r->body, r->body_size);
        req->body_size = r->body_size;
    }
    if (r->cacheable && s_make_key (req))
        goto fail;
    //  No "Expect: 100-continue" round trip before large bodies; and no
    //  Content-Type the caller did not give (libcurl would say the body
    //  is a form). After the key, which holds only the caller's headers.
    bool typed = false;
    for (struct curl_slist *h = req->headers; h; h = h->next)
        if (strncasecmp (h->data, "Content-Type:", 13) == 0)
            typed = true;
    struct curl_slist *list = curl_slist_append (req->headers, "Expect:");
    if (!list)
        goto fail;
    req->headers = list;
    if (r->body && !typed) {
        list = curl_slist_append (req->headers, "Content-Type:");
        if (!list)
            goto fail;
        req->headers = list;
    }
    req->priority = r->priority;
    req->timeout_ms = r->timeout_ms;
    req->tokens = r->tokens;
    req->cacheable = r->cacheable;
    return req;
fail:
    s_req_free (req);
    return NULL;
}

int
tr_http_submit (tr_node_t *node, const tr_http_request_t *request,
                tr_http_done_fn *done, void *arg, uint64_t *id_p)
{
    if (!node || !request || !done || !request->url)
        return TR_EINVAL;
    assert (node->tag == TR__NODE_TAG);
    if (request->timeout_ms < 0 || request->deadline_ms < 0
    ||  (request->body_size && !request->body)
    ||  (request->method && !s_valid_method (request->method)))
        return TR_EINVAL;
    if (request->headers)
        for (const char *const *h = request->headers; *h; h++)
            if (!s_valid_header (*h))
                return TR_EINVAL;
    if (atomic_load (&node->closing))
        return TR_ECLOSED;
    int rc;
    tr__http_t *self = s_engine (node, true, &rc);
    if (!self)
        return rc;
    if (!s_valid_url (request->url))
        return TR_EINVAL;
    s_req_t *req = s_req_copy (request);
    if (!req)
        return TR_ENOMEM;
    req->done = done;
    req->arg = arg;
    req->submitted_ns = tr__now_ns ();
    if (request->deadline_ms)
        req->deadline_ns = req->submitted_ns + (int64_t) request->deadline_ms * 1000000;
    req->state = S_NEW;

    pthread_mutex_lock (&self->lock);
    s_backend_t *b = s_backend_find (self, request->backend);
    rc = self->stopping? TR_ECLOSED: b? TR_OK: TR_EINVAL;
    if (rc == TR_OK) {
        req->backend = b;
        req->id = self->next_id++;
        if (self->cmd_last)
            self->cmd_last->next = req;
        else
            self->cmd_first = req;
        self->cmd_last = req;
        atomic_fetch_add (&b->submitted, 1);
        atomic_fetch_add (&b->queued, 1);
        if (id_p)
            *id_p = req->id;
    }
    pthread_mutex_unlock (&self->lock);
    if (rc) {
        s_req_free (req);
        return rc;
    }
    s_wake (self);
    return TR_OK;
}

int
tr_http_cancel (tr_node_t *node, uint64_t id)
{
    if (!node)
        return TR_EINVAL;
    assert (node->tag == TR__NODE_TAG);
    int rc;
    tr__http_t *self = s_engine (node, false, &rc);
    if (!self)
        return TR_ENOTFOUND;
    if (self->started && pthread_equal (pthread_self (), self->thread))
        return s_cancel_now (self, id);  //  from a callback: at once

    //  The engine takes submissions before cancels, so a request still on
    //  the command list is found too.
    pthread_mutex_lock (&self->lock);
    if (self->stopped) {
        pthread_mutex_unlock (&self->lock);
        return TR_ENOTFOUND;
    }
    s_cancel_t cancel = { .next = self->cancels, .id = id, .rc = TR_ENOTFOUND };
    self->cancels = &cancel;
    pthread_mutex_unlock (&self->lock);
    s_wake (self);
    pthread_mutex_lock (&self->lock);
    while (!cancel.answered)
        pthread_cond_wait (&self->answered, &self->lock);
    pthread_mutex_unlock (&self->lock);
    return cancel.rc;
}

int
tr_http_charge (tr_node_t *node, const char *backend, int64_t tokens)
{
    if (!node)
        return TR_EINVAL;
    assert (node->tag == TR__NODE_TAG);
    if (atomic_load (&node->closing))
        return TR_ECLOSED;
    int rc;
    tr__http_t *self = s_engine (node, true, &rc);
    if (!self)
        return rc;
    s_charge_t *charge = (s_charge_t *) calloc (1, sizeof *charge);
    if (!charge)
        return TR_ENOMEM;
    pthread_mutex_lock (&self->lock);
    s_backend_t *b = s_backend_find (self, backend);
    rc = self->stopping? TR_ECLOSED: b? TR_OK: TR_EINVAL;
    if (rc == TR_OK) {
        charge->backend = b;
        charge->tokens = tokens;
        charge->next = self->charges;
        self->charges = charge;
        atomic_fetch_add (&b->charged, tokens);
    }
    pthread_mutex_unlock (&self->lock);
    if (rc) {
        free (charge);
        return rc;
    }
    s_wake (self);
    return TR_OK;
}

int
tr_http_stats (tr_node_t *node, const char *backend, tr_http_stats_t *stats)
{
    if (!node || !stats)
        return TR_EINVAL;
    assert (node->tag == TR__NODE_TAG);
    memset (stats, 0, sizeof *stats);
    int rc;
    tr__http_t *self = s_engine (node, false, &rc);
    if (!self)                          //  nothing yet but the default backend
        return !backend || strcmp (backend, "default") == 0? TR_OK: TR_EINVAL;
    pthread_mutex_lock (&self->lock);
    s_backend_t *b = s_backend_find (self, backend);
    pthread_mutex_unlock (&self->lock);
    if (!b)
        return TR_EINVAL;
    stats->submitted = atomic_load (&b->submitted);
    stats->completed_ok = atomic_load (&b->completed_ok);
    stats->failed = atomic_load (&b->failed);
    stats->retries = atomic_load (&b->retries);
    stats->cache_hits = atomic_load (&b->cache_hits);
    int64_t charged = atomic_load (&b->charged);
    stats->tokens = charged > 0? (uint64_t) charged: 0;
    stats->in_flight = atomic_load (&b->in_flight);
    stats->queued = atomic_load (&b->queued);
    return TR_OK;
}
