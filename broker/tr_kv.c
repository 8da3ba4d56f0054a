/*  tr_kv.c - the broker's scratchpad; see tr_kv.h.

    Inside: a skiplist of entries in key byte order (Pugh's, with p = 1/4
    and at most 32 levels, as Redis's sorted sets), a binary min-heap of
    the entries that have a deadline, a ring of recent changes (the
    history watches start from), and a list of watches, each with a ring
    of the changes it has not taken yet. A change is shared by reference
    between the history and every watch it matches.

    Why a skiplist rather than zhashx plus a sort per list: a list or
    snapshot is then a seek and a walk, O(log n + k), with no sort and no
    copy of the whole key set, and lookups stay O(log n) (measured in
    tests/tr_kv_test.c with 100,000 keys, key formatting included: about
    1 us per put or get, 2.5 ms to list 10,000 keys under a prefix).

    Every change goes through the same three steps under the lock: build
    the change (all allocation that can fail happens here), offer it to
    the journal (which may refuse it), then apply it and publish it to
    the history and the watches, none of which can fail past that point
    (a watch that cannot grow its backlog is flagged resync instead).
*/

#include "tr_kv.h"
#include "tr_u64map.h"
#include "troupe/tr_error.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_send.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define S_LEVELS    32
#define S_NO_HEAP   SIZE_MAX

struct tr__kv_value {
    atomic_int refs;
    size_t size;
    uint8_t data [];
};

//  One key. The forward pointers (one per level) follow the struct, and
//  the key's bytes follow them.
typedef struct s_entry {
    tr__kv_value_t *value;
    uint64_t hash;                      //  of the key (never 0), for the index
    struct s_entry *same_hash;          //  the next entry whose key has it
    uint64_t version;
    int64_t deadline;                   //  0: none
    size_t heap_at;                     //  index in the heap, or S_NO_HEAP
    size_t key_len;
    int levels;
    struct s_entry *next [];
} s_entry_t;

struct tr__kv_watch {
    tr__kv_t *kv;
    uint8_t *prefix;
    size_t prefix_len;
    void *arg;
    tr__kv_change_t **queue;            //  ring of undelivered changes
    size_t cap, head, count;
    size_t bytes;                       //  their value bytes
    bool resync;
    bool ready;                         //  in the store's ready list
    tr__kv_watch_t *prev, *next;        //  all of the store's watches
    tr__kv_watch_t *ready_next;
};

struct tr__kv {
    pthread_mutex_t lock;
    tr__kv_limits_t limits;
    uint64_t version;
    s_entry_t *head;                    //  skiplist head, S_LEVELS levels
    int levels;                         //  levels in use
    //  An index of the entries by the hash of their key, for reads and
    //  writes of one key (the skiplist serves order: lists, prefixes,
    //  snapshots): hash -> the entries with that hash, chained.
    tr__u64map_t index;
    uint64_t rng;                       //  xorshift state for levels
    size_t count;
    s_entry_t **heap;                   //  entries with a deadline
    size_t heap_len, heap_cap;
    tr__kv_change_t **hist;             //  ring of the latest changes
    size_t hist_head, hist_count;
    size_t hist_bytes;
    uint64_t hist_floor;                //  every change above it is held
    tr__kv_watch_t *watches;
    tr__kv_watch_t *ready_head, *ready_tail;
    tr__kv_journal_fn *journal;
    void *journal_arg;
};

//  --------------------------------------------------------------------------
//  Values and changes

static tr__kv_value_t *
s_value_new (const void *data, size_t size)
{
    tr__kv_value_t *self = (tr__kv_value_t *) malloc (sizeof *self + size);
    if (!self)
        return NULL;
    atomic_init (&self->refs, 1);
    self->size = size;
    if (size)
        memcpy (self->data, data, size);
    return self;
}

const uint8_t *
tr__kv_value_data (const tr__kv_value_t *self)
{
    return self->data;
}

size_t
tr__kv_value_size (const tr__kv_value_t *self)
{
    return self->size;
}

tr__kv_value_t *
tr__kv_value_ref (tr__kv_value_t *self)
{
    atomic_fetch_add_explicit (&self->refs, 1, memory_order_relaxed);
    return self;
}

void
tr__kv_value_unref (tr__kv_value_t **self_p)
{
    tr__kv_value_t *self = *self_p;
    *self_p = NULL;
    if (self && atomic_fetch_sub_explicit (&self->refs, 1, memory_order_acq_rel) == 1)
        free (self);
}

//  A new change holding a copy of the key and a reference to the value
//  (blob NULL for a deletion). NULL if out of memory.
static tr__kv_change_t *
s_change_new (uint64_t version, int op, const void *key, size_t key_len,
              tr__kv_value_t *blob, int64_t deadline)
{
    tr__kv_change_t *self = (tr__kv_change_t *) malloc (sizeof *self + key_len);
    if (!self)
        return NULL;
    memset (self, 0, sizeof *self);
    uint8_t *key_copy = (uint8_t *) (self + 1);
    memcpy (key_copy, key, key_len);
    self->version = version;
    self->op = op;
    self->deadline = deadline;
    self->key = key_copy;
    self->key_len = key_len;
    if (blob) {
        self->blob = tr__kv_value_ref (blob);
        self->value = blob->data;
        self->value_len = blob->size;
    }
    atomic_init (&self->refs, 1);
    return self;
}

static tr__kv_change_t *
s_change_ref (tr__kv_change_t *self)
{
    atomic_fetch_add_explicit (&self->refs, 1, memory_order_relaxed);
    return self;
}

void
tr__kv_change_unref (tr__kv_change_t **self_p)
{
    tr__kv_change_t *self = *self_p;
    *self_p = NULL;
    if (self && atomic_fetch_sub_explicit (&self->refs, 1, memory_order_acq_rel) == 1) {
        tr__kv_value_unref (&self->blob);
        free (self);
    }
}

//  --------------------------------------------------------------------------
//  The skiplist

static uint8_t *
s_key (const s_entry_t *e)
{
    return (uint8_t *) (e->next + e->levels);
}

//  Orders an entry's key against key: memcmp, then the shorter first.
static int
s_compare (const s_entry_t *e, const uint8_t *key, size_t len)
{
    size_t common = e->key_len < len? e->key_len: len;
    int diff = common? memcmp (s_key (e), key, common): 0;
    if (diff)
        return diff;
    return e->key_len < len? -1: e->key_len > len;
}

//  --------------------------------------------------------------------------
//  The index by key

//  FNV-1a over the key's bytes (the index mixes it further).
static uint64_t
s_hash (const uint8_t *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ key [i]) * 0x100000001b3ull;
    return h? h: 1;                     //  0 is not a key of the index
}

//  The entry with exactly this key, through the index; NULL if none.
static s_entry_t *
s_lookup (tr__kv_t *self, const uint8_t *key, size_t len)
{
    uint64_t h = s_hash (key, len);
    for (s_entry_t *e = (s_entry_t *) tr__u64map_get (&self->index, h); e; e = e->same_hash)
        if (e->key_len == len && memcmp (s_key (e), key, len) == 0)
            return e;
    return NULL;
}

//  Makes room in the index for one more entry. TR_OK or TR_ENOMEM.
static int
s_index_reserve (tr__kv_t *self)
{
    return tr__u64map_reserve (&self->index, 1)? TR_ENOMEM: TR_OK;
}

//  Indexes e (room reserved: cannot fail).
static void
s_index_put (tr__kv_t *self, s_entry_t *e)
{
    e->same_hash = (s_entry_t *) tr__u64map_get (&self->index, e->hash);
    tr__u64map_put (&self->index, e->hash, e);
}

//  Takes e out of the index.
static void
s_index_remove (tr__kv_t *self, s_entry_t *e)
{
    s_entry_t *head = (s_entry_t *) tr__u64map_get (&self->index, e->hash);
    if (head == e) {
        if (e->same_hash)
            tr__u64map_put (&self->index, e->hash, e->same_hash);
        else
            tr__u64map_take (&self->index, e->hash);
    }
    else {
        while (head && head->same_hash != e)
            head = head->same_hash;
        if (head)
            head->same_hash = e->same_hash;
    }
    e->same_hash = NULL;
}

//  A level for a new entry: each further level with probability 1/4.
static int
s_random_levels (tr__kv_t *self)
{
    self->rng ^= self->rng << 13;
    self->rng ^= self->rng >> 7;
    self->rng ^= self->rng << 17;
    uint64_t r = self->rng;
    int levels = 1;
    while (levels < S_LEVELS && (r & 3) == 0) {
        levels++;
        r >>= 2;
    }
    return levels;
}

static s_entry_t *
s_entry_new (int levels, const void *key, size_t key_len)
{
    s_entry_t *e = (s_entry_t *) calloc (1, sizeof *e
                                         + levels * sizeof (s_entry_t *) + key_len);
    if (!e)
        return NULL;
    e->levels = levels;
    e->key_len = key_len;
    e->heap_at = S_NO_HEAP;
    if (key_len)
        memcpy (s_key (e), key, key_len);
    e->hash = s_hash ((const uint8_t *) key, key_len);
    return e;
}

//  The first entry at or after key; update[i] (if not NULL) is set to the
//  last entry before key on level i.
static s_entry_t *
s_seek (tr__kv_t *self, const uint8_t *key, size_t len, s_entry_t **update)
{
    s_entry_t *x = self->head;
    for (int i = self->levels - 1; i >= 0; i--) {
        while (x->next [i] && s_compare (x->next [i], key, len) < 0)
            x = x->next [i];
        if (update)
            update [i] = x;
    }
    return x->next [0];
}

//  The entry with exactly this key, or NULL.
static s_entry_t *
s_find (tr__kv_t *self, const void *key, size_t len, s_entry_t **update)
{
    s_entry_t *e = s_seek (self, (const uint8_t *) key, len, update);
    return e && s_compare (e, (const uint8_t *) key, len) == 0? e: NULL;
}

//  Links e in after the update[] s_seek found for its key, and indexes
//  it (the caller has reserved room: s_index_reserve).
static void
s_link (tr__kv_t *self, s_entry_t *e, s_entry_t **update)
{
    s_index_put (self, e);
    for (int i = self->levels; i < e->levels; i++)
        update [i] = self->head;
    if (e->levels > self->levels)
        self->levels = e->levels;
    for (int i = 0; i < e->levels; i++) {
        e->next [i] = update [i]->next [i];
        update [i]->next [i] = e;
    }
    self->count++;
}

static void
s_unlink (tr__kv_t *self, s_entry_t *e, s_entry_t **update)
{
    s_index_remove (self, e);
    for (int i = 0; i < self->levels; i++)
        if (update [i]->next [i] == e)
            update [i]->next [i] = e->next [i];
    while (self->levels > 1 && !self->head->next [self->levels - 1])
        self->levels--;
    self->count--;
}

static bool
s_has_prefix (const uint8_t *key, size_t key_len, const uint8_t *prefix,
              size_t prefix_len)
{
    return key_len >= prefix_len
        && (prefix_len == 0 || memcmp (key, prefix, prefix_len) == 0);
}

//  --------------------------------------------------------------------------
//  The deadline heap

static void
s_heap_set (tr__kv_t *self, size_t at, s_entry_t *e)
{
    self->heap [at] = e;
    e->heap_at = at;
}

static void
s_heap_up (tr__kv_t *self, size_t at)
{
    s_entry_t *e = self->heap [at];
    while (at > 0) {
        size_t parent = (at - 1) / 2;
        if (self->heap [parent]->deadline <= e->deadline)
            break;
        s_heap_set (self, at, self->heap [parent]);
        at = parent;
    }
    s_heap_set (self, at, e);
}

static void
s_heap_down (tr__kv_t *self, size_t at)
{
    s_entry_t *e = self->heap [at];
    while (true) {
        size_t child = 2 * at + 1;
        if (child >= self->heap_len)
            break;
        if (child + 1 < self->heap_len
        &&  self->heap [child + 1]->deadline < self->heap [child]->deadline)
            child++;
        if (self->heap [child]->deadline >= e->deadline)
            break;
        s_heap_set (self, at, self->heap [child]);
        at = child;
    }
    s_heap_set (self, at, e);
}

//  Makes room for one more entry in the heap. TR_OK or TR_ENOMEM.
static int
s_heap_reserve (tr__kv_t *self)
{
    if (self->heap_len < self->heap_cap)
        return TR_OK;
    size_t cap = self->heap_cap? self->heap_cap * 2: 64;
    s_entry_t **heap = (s_entry_t **) realloc (self->heap, cap * sizeof *heap);
    if (!heap)
        return TR_ENOMEM;
    self->heap = heap;
    self->heap_cap = cap;
    return TR_OK;
}

static void
s_heap_remove (tr__kv_t *self, s_entry_t *e)
{
    size_t at = e->heap_at;
    if (at == S_NO_HEAP)
        return;
    e->heap_at = S_NO_HEAP;
    s_entry_t *last = self->heap [--self->heap_len];
    if (last == e)
        return;
    s_heap_set (self, at, last);
    s_heap_up (self, at);
    s_heap_down (self, last->heap_at);
}

//  Gives e a new deadline (0: none). The caller has reserved room.
static void
s_heap_update (tr__kv_t *self, s_entry_t *e, int64_t deadline)
{
    s_heap_remove (self, e);
    e->deadline = deadline;
    if (deadline) {
        s_heap_set (self, self->heap_len++, e);
        s_heap_up (self, e->heap_at);
    }
}

//  --------------------------------------------------------------------------
//  Watches and history

//  Puts a watch in the ready list unless it is there already.
static void
s_ready (tr__kv_t *self, tr__kv_watch_t *w)
{
    if (w->ready)
        return;
    w->ready = true;
    w->ready_next = NULL;
    if (self->ready_tail)
        self->ready_tail->ready_next = w;
    else
        self->ready_head = w;
    self->ready_tail = w;
}

static void
s_unready (tr__kv_t *self, tr__kv_watch_t *w)
{
    if (!w->ready)
        return;
    tr__kv_watch_t *prev = NULL;
    for (tr__kv_watch_t *x = self->ready_head; x; prev = x, x = x->ready_next)
        if (x == w) {
            if (prev)
                prev->ready_next = w->ready_next;
            else
                self->ready_head = w->ready_next;
            if (self->ready_tail == w)
                self->ready_tail = prev;
            break;
        }
    w->ready = false;
}

static void
s_watch_clear (tr__kv_watch_t *w)
{
    while (w->count) {
        tr__kv_change_t *c = w->queue [w->head];
        tr__kv_change_unref (&c);
        w->head = (w->head + 1) % w->cap;
        w->count--;
    }
    w->bytes = 0;
}

//  The watch fell behind: drop its backlog and flag it.
static void
s_watch_resync (tr__kv_t *self, tr__kv_watch_t *w)
{
    s_watch_clear (w);
    free (w->queue);
    w->queue = NULL;
    w->cap = w->head = 0;
    w->resync = true;
    s_ready (self, w);
}

//  Grows a watch's ring to hold one more change. false if out of memory.
static bool
s_watch_grow (tr__kv_watch_t *w)
{
    if (w->count < w->cap)
        return true;
    size_t cap = w->cap? w->cap * 2: 16;
    tr__kv_change_t **queue = (tr__kv_change_t **) malloc (cap * sizeof *queue);
    if (!queue)
        return false;
    for (size_t i = 0; i < w->count; i++)
        queue [i] = w->queue [(w->head + i) % w->cap];
    free (w->queue);
    w->queue = queue;
    w->cap = cap;
    w->head = 0;
    return true;
}

//  Offers a change to a watch: queued if it matches and there is room,
//  otherwise the watch is flagged resync.
static void
s_watch_offer (tr__kv_t *self, tr__kv_watch_t *w, tr__kv_change_t *c)
{
    if (w->resync || !s_has_prefix (c->key, c->key_len, w->prefix, w->prefix_len))
        return;
    if (w->count >= self->limits.max_backlog
    ||  (w->count && w->bytes + c->value_len > self->limits.max_backlog_bytes)
    ||  !s_watch_grow (w)) {
        s_watch_resync (self, w);
        return;
    }
    w->queue [(w->head + w->count) % w->cap] = s_change_ref (c);
    w->count++;
    w->bytes += c->value_len;
    s_ready (self, w);
}

//  Drops the oldest change in the history.
static void
s_history_evict (tr__kv_t *self)
{
    tr__kv_change_t *c = self->hist [self->hist_head];
    self->hist_floor = c->version;
    self->hist_bytes -= c->value_len;
    self->hist_head = (self->hist_head + 1) % self->limits.history;
    self->hist_count--;
    tr__kv_change_unref (&c);
}

//  Hands an applied change to the watches and the history; takes over
//  the caller's reference.
static void
s_publish (tr__kv_t *self, tr__kv_change_t *c)
{
    for (tr__kv_watch_t *w = self->watches; w; w = w->next)
        s_watch_offer (self, w, c);
    if (self->hist_count == self->limits.history)
        s_history_evict (self);
    size_t at = (self->hist_head + self->hist_count) % self->limits.history;
    self->hist [at] = c;
    self->hist_count++;
    self->hist_bytes += c->value_len;
    while (self->hist_count && self->hist_bytes > self->limits.history_bytes)
        s_history_evict (self);
}

//  A change that could not be built (out of memory): no watcher can be
//  told, so every watch and the history start over.
static void
s_publish_lost (tr__kv_t *self)
{
    for (tr__kv_watch_t *w = self->watches; w; w = w->next)
        if (!w->resync)
            s_watch_resync (self, w);
    while (self->hist_count)
        s_history_evict (self);
    self->hist_floor = self->version;
}

//  --------------------------------------------------------------------------
//  Changing

static int
s_journal (tr__kv_t *self, const tr__kv_change_t *c)
{
    return self->journal? self->journal (self->journal_arg, c): TR_OK;
}

//  Removes an entry found with update[] and frees it.
static void
s_remove (tr__kv_t *self, s_entry_t *e, s_entry_t **update)
{
    s_unlink (self, e, update);
    s_heap_remove (self, e);
    tr__kv_value_unref (&e->value);
    free (e);
}

//  Expires the entries whose deadline is at or before now (lock held).
static size_t
s_expire_due (tr__kv_t *self, int64_t now)
{
    size_t expired = 0;
    while (self->heap_len && self->heap [0]->deadline <= now) {
        s_entry_t *e = self->heap [0];
        tr__kv_change_t *c = s_change_new (self->version + 1, TR__KV_DEL,
                                           s_key (e), e->key_len, NULL, 0);
        if (c) {
            c->expired = true;
            s_journal (self, c);
        }
        self->version++;
        s_entry_t *update [S_LEVELS];
        s_find (self, s_key (e), e->key_len, update);
        s_remove (self, e, update);
        if (c)
            s_publish (self, c);
        else
            s_publish_lost (self);
        expired++;
    }
    return expired;
}

static int
s_check_key (const tr__kv_t *self, const void *key, size_t key_len)
{
    if (key_len == 0 || key_len > self->limits.max_key || !key)
        return TR_EINVAL;
    return TR_OK;
}

static int
s_check_value (const tr__kv_t *self, const void *value, size_t value_len,
               int64_t ttl_ms)
{
    if (ttl_ms < 0)
        return TR_EINVAL;
    if (value_len > self->limits.max_value)
        return TR_ETOOBIG;
    if (!value && value_len)
        return TR_EINVAL;
    if (tr_msgpack_check (value, value_len, TR_BODY_MAX_DEPTH, NULL) != TR_OK)
        return TR_EMALFORMED;
    return TR_OK;
}

//  The absolute deadline for a TTL (0: none), saturating.
static int64_t
s_deadline (int64_t now, int64_t ttl_ms)
{
    if (ttl_ms == 0)
        return 0;
    if (now > INT64_MAX - ttl_ms)
        return INT64_MAX;
    return now + ttl_ms;
}

//  Stores blob under key at the next version (lock held). With cas, only
//  if the key's version is expected.
static int
s_write (tr__kv_t *self, const void *key, size_t key_len, bool cas,
         uint64_t expected, tr__kv_value_t *blob, int64_t ttl_ms, int64_t now,
         uint64_t *version_p)
{
    s_expire_due (self, now);
    s_entry_t *update [S_LEVELS];
    s_entry_t *e = s_lookup (self, (const uint8_t *) key, key_len);
    if (cas && (e? e->version: 0) != expected)
        return TR_ECONFLICT;
    if (!e)
        s_seek (self, (const uint8_t *) key, key_len, update);
    int64_t deadline = s_deadline (now, ttl_ms);
    //  Everything that can fail, before the journal sees the change.
    s_entry_t *fresh = e? NULL: s_entry_new (s_random_levels (self), key, key_len);
    tr__kv_change_t *c = s_change_new (self->version + 1, TR__KV_PUT, key, key_len,
                                       blob, deadline);
    int rc = (!e && !fresh) || !c? TR_ENOMEM: s_heap_reserve (self);
    if (rc == TR_OK && fresh)
        rc = s_index_reserve (self);
    if (rc == TR_OK)
        rc = s_journal (self, c);
    if (rc != TR_OK) {
        free (fresh);
        tr__kv_change_unref (&c);
        return rc;
    }
    //  Apply.
    self->version++;
    if (fresh) {
        e = fresh;
        s_link (self, e, update);
    }
    tr__kv_value_unref (&e->value);
    e->value = tr__kv_value_ref (blob);
    e->version = self->version;
    s_heap_update (self, e, deadline);
    s_publish (self, c);
    if (version_p)
        *version_p = self->version;
    return TR_OK;
}

//  Checks and copies the value, then writes it under the lock.
static int
s_put (tr__kv_t *self, const void *key, size_t key_len, bool cas,
       uint64_t expected, const void *value, size_t value_len, int64_t ttl_ms,
       int64_t now, uint64_t *version_p)
{
    int rc = s_check_key (self, key, key_len);
    if (rc == TR_OK)
        rc = s_check_value (self, value, value_len, ttl_ms);
    if (rc != TR_OK)
        return rc;
    tr__kv_value_t *blob = s_value_new (value, value_len);
    if (!blob)
        return TR_ENOMEM;
    pthread_mutex_lock (&self->lock);
    rc = s_write (self, key, key_len, cas, expected, blob, ttl_ms, now, version_p);
    pthread_mutex_unlock (&self->lock);
    tr__kv_value_unref (&blob);
    return rc;
}

int
tr__kv_put (tr__kv_t *self, const void *key, size_t key_len,
            const void *value, size_t value_len, int64_t ttl_ms,
            int64_t now, uint64_t *version_p)
{
    return s_put (self, key, key_len, false, 0, value, value_len, ttl_ms, now,
                  version_p);
}

int
tr__kv_cas (tr__kv_t *self, const void *key, size_t key_len,
            uint64_t expected, const void *value, size_t value_len,
            int64_t ttl_ms, int64_t now, uint64_t *version_p)
{
    return s_put (self, key, key_len, true, expected, value, value_len, ttl_ms,
                  now, version_p);
}

//  Removes key at the next version (lock held).
static int
s_del (tr__kv_t *self, const void *key, size_t key_len, int64_t now,
       uint64_t *version_p)
{
    s_expire_due (self, now);
    s_entry_t *update [S_LEVELS];
    s_entry_t *e = s_find (self, key, key_len, update);
    if (!e)
        return TR_ENOTFOUND;
    tr__kv_change_t *c = s_change_new (self->version + 1, TR__KV_DEL, key, key_len,
                                       NULL, 0);
    if (!c)
        return TR_ENOMEM;
    int rc = s_journal (self, c);
    if (rc != TR_OK) {
        tr__kv_change_unref (&c);
        return rc;
    }
    self->version++;
    s_remove (self, e, update);
    s_publish (self, c);
    if (version_p)
        *version_p = self->version;
    return TR_OK;
}

int
tr__kv_del (tr__kv_t *self, const void *key, size_t key_len, int64_t now,
            uint64_t *version_p)
{
    int rc = s_check_key (self, key, key_len);
    if (rc != TR_OK)
        return rc;
    pthread_mutex_lock (&self->lock);
    rc = s_del (self, key, key_len, now, version_p);
    pthread_mutex_unlock (&self->lock);
    return rc;
}

size_t
tr__kv_expire (tr__kv_t *self, int64_t now)
{
    pthread_mutex_lock (&self->lock);
    size_t expired = s_expire_due (self, now);
    pthread_mutex_unlock (&self->lock);
    return expired;
}

int64_t
tr__kv_next_deadline (tr__kv_t *self)
{
    pthread_mutex_lock (&self->lock);
    int64_t deadline = self->heap_len? self->heap [0]->deadline: 0;
    pthread_mutex_unlock (&self->lock);
    return deadline;
}

//  --------------------------------------------------------------------------
//  The store

tr__kv_t *
tr__kv_new (const tr__kv_limits_t *limits)
{
    tr__kv_t *self = (tr__kv_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    if (limits)
        self->limits = *limits;
    tr__kv_limits_t *l = &self->limits;
    l->max_key = l->max_key? l->max_key: TR__KV_MAX_KEY;
    l->max_value = l->max_value? l->max_value: TR__KV_MAX_VALUE;
    l->max_list = l->max_list? l->max_list: 100000;
    l->max_backlog = l->max_backlog? l->max_backlog: 10000;
    l->max_backlog_bytes = l->max_backlog_bytes? l->max_backlog_bytes: 64u << 20;
    l->history = l->history? l->history: 10000;
    l->history_bytes = l->history_bytes? l->history_bytes: 64u << 20;
    self->head = s_entry_new (S_LEVELS, NULL, 0);
    self->hist = (tr__kv_change_t **) calloc (l->history, sizeof *self->hist);
    if (!self->head || !self->hist) {
        free (self->head);
        free (self->hist);
        free (self);
        return NULL;
    }
    self->levels = 1;
    self->rng = (uint64_t) (uintptr_t) self ^ UINT64_C (0x9e3779b97f4a7c15);
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

void
tr__kv_destroy (tr__kv_t **self_p)
{
    tr__kv_t *self = *self_p;
    *self_p = NULL;
    if (!self)
        return;
    while (self->watches) {
        tr__kv_watch_t *w = self->watches;
        self->watches = w->next;
        s_watch_clear (w);
        free (w->queue);
        free (w->prefix);
        free (w);
    }
    s_entry_t *e = self->head->next [0];
    while (e) {
        s_entry_t *next = e->next [0];
        tr__kv_value_unref (&e->value);
        free (e);
        e = next;
    }
    while (self->hist_count)
        s_history_evict (self);
    free (self->hist);
    tr__u64map_clear (&self->index);
    free (self->heap);
    free (self->head);
    pthread_mutex_destroy (&self->lock);
    free (self);
}

tr__kv_limits_t
tr__kv_limits (const tr__kv_t *self)
{
    return self->limits;
}

uint64_t
tr__kv_version (tr__kv_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t version = self->version;
    pthread_mutex_unlock (&self->lock);
    return version;
}

size_t
tr__kv_count (tr__kv_t *self)
{
    pthread_mutex_lock (&self->lock);
    size_t count = self->count;
    pthread_mutex_unlock (&self->lock);
    return count;
}

void
tr__kv_set_journal (tr__kv_t *self, tr__kv_journal_fn *fn, void *arg)
{
    pthread_mutex_lock (&self->lock);
    self->journal = fn;
    self->journal_arg = fn? arg: NULL;
    pthread_mutex_unlock (&self->lock);
}

int
tr__kv_get (tr__kv_t *self, const void *key, size_t key_len, int64_t now,
            tr__kv_value_t **value_p, uint64_t *version_p, int64_t *ttl_left_p)
{
    int rc = s_check_key (self, key, key_len);
    if (rc != TR_OK)
        return rc;
    pthread_mutex_lock (&self->lock);
    s_expire_due (self, now);
    s_entry_t *e = s_lookup (self, (const uint8_t *) key, key_len);
    if (e) {
        if (value_p)
            *value_p = tr__kv_value_ref (e->value);
        if (version_p)
            *version_p = e->version;
        if (ttl_left_p)
            *ttl_left_p = e->deadline? e->deadline - now: 0;
    }
    pthread_mutex_unlock (&self->lock);
    return e? TR_OK: TR_ENOTFOUND;
}

//  --------------------------------------------------------------------------
//  Lists, snapshots, dumps

//  Collects the entries under a prefix (lock held): with values or not,
//  at most limit of them (TR_ELIMIT past it), leaving out those whose
//  deadline is at or before now if skip_due.
static int
s_collect (tr__kv_t *self, const uint8_t *prefix, size_t prefix_len,
           int64_t now, bool values, size_t limit, bool skip_due,
           tr__kv_items_t **items_p)
{
    //  First pass: count the keys and their bytes.
    s_entry_t *first = s_seek (self, prefix, prefix_len, NULL);
    size_t count = 0, key_bytes = 0;
    for (s_entry_t *e = first; e; e = e->next [0]) {
        if (!s_has_prefix (s_key (e), e->key_len, prefix, prefix_len))
            break;
        if (skip_due && e->deadline && e->deadline <= now)
            continue;
        if (++count > limit)
            return TR_ELIMIT;
        key_bytes += e->key_len;
    }
    tr__kv_items_t *items = (tr__kv_items_t *) calloc (1, sizeof *items);
    if (!items)
        return TR_ENOMEM;
    items->at = self->version;
    items->items = (tr__kv_item_t *) calloc (count + 1, sizeof *items->items);
    items->blobs = (tr__kv_value_t **) calloc (count + 1, sizeof *items->blobs);
    items->keys = (uint8_t *) malloc (key_bytes + 1);
    if (!items->items || !items->blobs || !items->keys) {
        tr__kv_items_destroy (&items);
        return TR_ENOMEM;
    }
    //  Second pass: fill them in.
    uint8_t *key = items->keys;
    for (s_entry_t *e = first; items->count < count; e = e->next [0]) {
        if (skip_due && e->deadline && e->deadline <= now)
            continue;
        tr__kv_item_t *item = &items->items [items->count];
        memcpy (key, s_key (e), e->key_len);
        item->key = key;
        item->key_len = e->key_len;
        key += e->key_len;
        item->version = e->version;
        item->deadline = e->deadline;
        item->ttl_left = e->deadline? e->deadline - now: 0;
        if (values) {
            items->blobs [items->count] = tr__kv_value_ref (e->value);
            item->value = e->value->data;
            item->value_len = e->value->size;
        }
        items->count++;
    }
    *items_p = items;
    return TR_OK;
}

static int
s_list (tr__kv_t *self, const void *prefix, size_t prefix_len, int64_t now,
        bool values, tr__kv_items_t **items_p)
{
    if (prefix_len > self->limits.max_key || (!prefix && prefix_len))
        return TR_EINVAL;
    pthread_mutex_lock (&self->lock);
    s_expire_due (self, now);
    int rc = s_collect (self, (const uint8_t *) prefix, prefix_len, now, values,
                        self->limits.max_list, false, items_p);
    pthread_mutex_unlock (&self->lock);
    return rc;
}

int
tr__kv_list (tr__kv_t *self, const void *prefix, size_t prefix_len,
             int64_t now, tr__kv_items_t **items_p)
{
    return s_list (self, prefix, prefix_len, now, false, items_p);
}

int
tr__kv_snapshot (tr__kv_t *self, const void *prefix, size_t prefix_len,
                 int64_t now, tr__kv_items_t **items_p)
{
    return s_list (self, prefix, prefix_len, now, true, items_p);
}

int
tr__kv_dump (tr__kv_t *self, int64_t now, tr__kv_items_t **items_p)
{
    pthread_mutex_lock (&self->lock);
    int rc = s_collect (self, NULL, 0, now, true, SIZE_MAX, true, items_p);
    pthread_mutex_unlock (&self->lock);
    return rc;
}

void
tr__kv_items_destroy (tr__kv_items_t **items_p)
{
    tr__kv_items_t *items = *items_p;
    *items_p = NULL;
    if (!items)
        return;
    if (items->blobs)
        for (size_t i = 0; i < items->count; i++)
            tr__kv_value_unref (&items->blobs [i]);
    free (items->items);
    free (items->blobs);
    free (items->keys);
    free (items);
}

//  --------------------------------------------------------------------------
//  Watches

//  Queues the history's changes above from for a new watch (lock held).
static void
s_watch_catch_up (tr__kv_t *self, tr__kv_watch_t *w, uint64_t from)
{
    if (from > self->version || from < self->hist_floor) {
        s_watch_resync (self, w);
        return;
    }
    for (size_t i = 0; i < self->hist_count && !w->resync; i++) {
        tr__kv_change_t *c = self->hist [(self->hist_head + i) % self->limits.history];
        if (c->version > from)
            s_watch_offer (self, w, c);
    }
}

int
tr__kv_watch_new (tr__kv_t *self, const void *prefix, size_t prefix_len,
                  uint64_t from, int64_t now, void *arg,
                  tr__kv_watch_t **watch_p, uint64_t *at_p)
{
    if (prefix_len > self->limits.max_key || (!prefix && prefix_len))
        return TR_EINVAL;
    tr__kv_watch_t *w = (tr__kv_watch_t *) calloc (1, sizeof *w);
    if (w)
        w->prefix = (uint8_t *) malloc (prefix_len + 1);
    if (!w || !w->prefix) {
        free (w);
        return TR_ENOMEM;
    }
    if (prefix_len)
        memcpy (w->prefix, prefix, prefix_len);
    w->prefix_len = prefix_len;
    w->arg = arg;
    w->kv = self;
    pthread_mutex_lock (&self->lock);
    s_expire_due (self, now);
    if (from)
        s_watch_catch_up (self, w, from);
    w->next = self->watches;
    if (self->watches)
        self->watches->prev = w;
    self->watches = w;
    if (at_p)
        *at_p = self->version;
    pthread_mutex_unlock (&self->lock);
    *watch_p = w;
    return TR_OK;
}

void
tr__kv_watch_destroy (tr__kv_watch_t **watch_p)
{
    tr__kv_watch_t *w = *watch_p;
    *watch_p = NULL;
    if (!w)
        return;
    tr__kv_t *self = w->kv;
    pthread_mutex_lock (&self->lock);
    s_unready (self, w);
    if (w->prev)
        w->prev->next = w->next;
    else
        self->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    s_watch_clear (w);
    pthread_mutex_unlock (&self->lock);
    free (w->queue);
    free (w->prefix);
    free (w);
}

int
tr__kv_watch_next (tr__kv_watch_t *w, tr__kv_change_t **change_p)
{
    tr__kv_t *self = w->kv;
    int rc = TR_OK;
    *change_p = NULL;
    pthread_mutex_lock (&self->lock);
    if (w->resync)
        rc = TR_ELIMIT;
    else
    if (w->count) {
        *change_p = w->queue [w->head];
        w->head = (w->head + 1) % w->cap;
        w->count--;
        w->bytes -= (*change_p)->value_len;
    }
    pthread_mutex_unlock (&self->lock);
    return rc;
}

size_t
tr__kv_watch_pending (tr__kv_watch_t *w)
{
    pthread_mutex_lock (&w->kv->lock);
    size_t count = w->count;
    pthread_mutex_unlock (&w->kv->lock);
    return count;
}

bool
tr__kv_watch_resync (tr__kv_watch_t *w)
{
    pthread_mutex_lock (&w->kv->lock);
    bool resync = w->resync;
    pthread_mutex_unlock (&w->kv->lock);
    return resync;
}

const uint8_t *
tr__kv_watch_prefix (const tr__kv_watch_t *w, size_t *len_p)
{
    if (len_p)
        *len_p = w->prefix_len;
    return w->prefix;
}

void *
tr__kv_watch_arg (const tr__kv_watch_t *w)
{
    return w->arg;
}

tr__kv_watch_t *
tr__kv_ready (tr__kv_t *self)
{
    pthread_mutex_lock (&self->lock);
    tr__kv_watch_t *w = self->ready_head;
    if (w) {
        self->ready_head = w->ready_next;
        if (!self->ready_head)
            self->ready_tail = NULL;
        w->ready = false;
        w->ready_next = NULL;
    }
    pthread_mutex_unlock (&self->lock);
    return w;
}

//  --------------------------------------------------------------------------
//  Restoring

//  Stores a copy of the logged value at its version (lock held).
static int
s_restore_put (tr__kv_t *self, const tr__kv_change_t *c)
{
    s_entry_t *update [S_LEVELS];
    s_entry_t *e = s_find (self, c->key, c->key_len, update);
    tr__kv_value_t *blob = s_value_new (c->value, c->value_len);
    s_entry_t *fresh = e? NULL: s_entry_new (s_random_levels (self), c->key, c->key_len);
    if (!blob || (!e && !fresh) || s_heap_reserve (self) != TR_OK
    ||  (fresh && s_index_reserve (self) != TR_OK)) {
        tr__kv_value_unref (&blob);
        free (fresh);
        return TR_ENOMEM;
    }
    if (fresh) {
        e = fresh;
        s_link (self, e, update);
    }
    tr__kv_value_unref (&e->value);
    e->value = blob;
    e->version = c->version;
    s_heap_update (self, e, c->deadline);
    return TR_OK;
}

int
tr__kv_restore (tr__kv_t *self, const tr__kv_change_t *c, int64_t now)
{
    if (c->key_len == 0 || c->key_len > UINT16_MAX || !c->key
    ||  (c->op != TR__KV_PUT && c->op != TR__KV_DEL))
        return TR_EINVAL;
    int rc = TR_OK;
    pthread_mutex_lock (&self->lock);
    if (c->op == TR__KV_PUT && (c->deadline == 0 || c->deadline > now))
        rc = s_restore_put (self, c);
    else {
        s_entry_t *update [S_LEVELS];
        s_entry_t *e = s_find (self, c->key, c->key_len, update);
        if (e)
            s_remove (self, e, update);
    }
    if (rc == TR_OK && c->version > self->version)
        self->version = c->version;
    self->hist_floor = self->version;
    pthread_mutex_unlock (&self->lock);
    return rc;
}

void
tr__kv_restore_version (tr__kv_t *self, uint64_t version)
{
    pthread_mutex_lock (&self->lock);
    if (version > self->version)
        self->version = version;
    self->hist_floor = self->version;
    pthread_mutex_unlock (&self->lock);
}
