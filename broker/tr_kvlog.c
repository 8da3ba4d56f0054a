/*  tr_kvlog.c - the scratchpad's append-only log; see tr_kvlog.h for the
    format, the sync policies, the replay and the compaction.
*/

#include "tr_kvlog.h"
#include "troupe/tr_error.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_log.h"
#include "troupe/tr_send.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define S_OP_PUT        1
#define S_OP_DEL        2
#define S_OP_BASE       3
#define S_HEAD          (TR__KVLOG_HEADER + TR__KVLOG_BODY_MIN)
#define S_BODY_MAX      (TR__KVLOG_BODY_MIN + UINT16_MAX + (UINT32_C (1) << 30))
#define S_OUT_CAP       (64 * 1024)
#define S_CATCH_UP      (64 * 1024)     //  buffer left for the locked step
#define S_LOG_NAME      "scratchpad.log"
#define S_TMP_NAME      "scratchpad.log.compact"
#define S_LOCK_NAME     "scratchpad.lock"

struct tr__kvlog {
    pthread_mutex_t lock;               //  everything below
    pthread_cond_t wake;                //  the sync thread's
    tr__kvlog_opts_t opts;
    tr__kv_t *kv;
    char *folder, *path, *tmp_path;
    int fd;                             //  the log
    int lock_fd;                        //  holds the folder's flock
    uint64_t size;                      //  bytes of good data in the file
    bool broken;                        //  a failed append left damage
    uint8_t *scratch;                   //  one encoded record
    size_t scratch_cap;
    //  everysec, and always grouped: the sync thread
    pthread_t sync_thread;
    bool sync_started, stop, dirty;
    //  always grouped: appends so far, appends known durable, and the
    //  eventfd that says the latter moved (or that a sync failed)
    uint64_t written, synced;
    bool sync_failed;
    int event_fd;
    //  Compaction. compact_lock serialises starting and joining the
    //  thread; the thread itself never takes it.
    pthread_mutex_t compact_lock;
    pthread_t compact_thread;
    bool compact_started;               //  a thread to join
    bool compacting;                    //  appends also go to buf
    bool compact_lost;                  //  buf could not grow: give up
    uint8_t *buf;
    size_t buf_len, buf_cap;
    int compact_rc;
    uint64_t base_size;                 //  size after the last compaction
    uint64_t compactions;
};

//  --------------------------------------------------------------------------
//  CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table-driven

static uint32_t s_crc_table [256];
static pthread_once_t s_crc_once = PTHREAD_ONCE_INIT;

static void
s_crc_init (void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1? UINT32_C (0xEDB88320) ^ (c >> 1): c >> 1;
        s_crc_table [n] = c;
    }
}

uint32_t
tr__kvlog_crc32 (uint32_t crc, const void *buf, size_t len)
{
    pthread_once (&s_crc_once, s_crc_init);
    const uint8_t *p = (const uint8_t *) buf;
    crc = ~crc;
    while (len--)
        crc = s_crc_table [(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

//  --------------------------------------------------------------------------
//  Records

static void
s_put16 (uint8_t *p, uint16_t v)
{
    p [0] = (uint8_t) v;
    p [1] = (uint8_t) (v >> 8);
}

static void
s_put32 (uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p [i] = (uint8_t) (v >> (8 * i));
}

static void
s_put64 (uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p [i] = (uint8_t) (v >> (8 * i));
}

static uint16_t
s_get16 (const uint8_t *p)
{
    return (uint16_t) (p [0] | p [1] << 8);
}

static uint32_t
s_get32 (const uint8_t *p)
{
    return (uint32_t) p [0] | (uint32_t) p [1] << 8
         | (uint32_t) p [2] << 16 | (uint32_t) p [3] << 24;
}

static uint64_t
s_get64 (const uint8_t *p)
{
    return (uint64_t) s_get32 (p) | (uint64_t) s_get32 (p + 4) << 32;
}

//  A parsed record; pointers into the buffer it came from.
typedef struct {
    int op;
    uint64_t version;
    int64_t deadline;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    size_t size;                        //  header and body
} s_record_t;

//  Fills head (S_HEAD bytes: length, checksum and the fixed part of the
//  body) for a record whose key and value follow it.
static void
s_encode_head (uint8_t *head, const s_record_t *r)
{
    uint32_t body_len = (uint32_t) (TR__KVLOG_BODY_MIN + r->key_len + r->value_len);
    uint8_t *body = head + TR__KVLOG_HEADER;
    s_put32 (head, body_len);
    body [0] = (uint8_t) r->op;
    s_put64 (body + 1, r->version);
    s_put64 (body + 9, (uint64_t) r->deadline);
    s_put16 (body + 17, (uint16_t) r->key_len);
    uint32_t crc = tr__kvlog_crc32 (0, head, 4);
    crc = tr__kvlog_crc32 (crc, body, TR__KVLOG_BODY_MIN);
    crc = tr__kvlog_crc32 (crc, r->key, r->key_len);
    crc = tr__kvlog_crc32 (crc, r->value, r->value_len);
    s_put32 (head + 4, crc);
}

//  Parses the record at off. True if it is whole, its checksum matches
//  and its fields make sense. The cheap checks come first, so that a
//  scan for good records over damaged bytes rarely computes a checksum.
static bool
s_parse (const uint8_t *buf, size_t len, size_t off, s_record_t *r)
{
    if (len - off < TR__KVLOG_HEADER)
        return false;
    const uint8_t *head = buf + off;
    const uint8_t *body = head + TR__KVLOG_HEADER;
    uint32_t body_len = s_get32 (head);
    if (body_len < TR__KVLOG_BODY_MIN || body_len > S_BODY_MAX
    ||  body_len > len - off - TR__KVLOG_HEADER)
        return false;
    r->op = body [0];
    r->key_len = s_get16 (body + 17);
    size_t rest = body_len - TR__KVLOG_BODY_MIN;
    if (r->op == S_OP_BASE) {
        if (r->key_len || rest)
            return false;
    }
    else
    if (r->op == S_OP_PUT || r->op == S_OP_DEL) {
        if (r->key_len == 0 || r->key_len > rest
        ||  (r->op == S_OP_DEL && r->key_len != rest))
            return false;
    }
    else
        return false;
    uint32_t crc = tr__kvlog_crc32 (tr__kvlog_crc32 (0, head, 4), body, body_len);
    if (crc != s_get32 (head + 4))
        return false;
    r->version = s_get64 (body + 1);
    r->deadline = (int64_t) s_get64 (body + 9);
    r->key = body + TR__KVLOG_BODY_MIN;
    r->value = r->key + r->key_len;
    r->value_len = rest - r->key_len;
    r->size = TR__KVLOG_HEADER + body_len;
    if (r->deadline < 0 || (r->op != S_OP_BASE && r->version == 0))
        return false;
    if (r->op == S_OP_PUT
    &&  tr_msgpack_check (r->value, r->value_len, TR_BODY_MAX_DEPTH, NULL) != TR_OK)
        return false;
    return true;
}

//  True if any good record starts after off (damage in the middle rather
//  than a torn tail).
static bool
s_good_after (const uint8_t *buf, size_t len, size_t off)
{
    s_record_t r;
    for (size_t at = off + 1; at + S_HEAD <= len; at++)
        if (s_parse (buf, len, at, &r))
            return true;
    return false;
}

//  Applies one good record to the store.
static int
s_apply (tr__kv_t *kv, const s_record_t *r, int64_t now)
{
    if (r->op == S_OP_BASE) {
        tr__kv_restore_version (kv, r->version);
        return TR_OK;
    }
    tr__kv_change_t c;
    memset (&c, 0, sizeof c);
    c.version = r->version;
    c.op = r->op == S_OP_PUT? TR__KV_PUT: TR__KV_DEL;
    c.deadline = r->deadline;
    c.key = r->key;
    c.key_len = r->key_len;
    c.value = r->value;
    c.value_len = r->value_len;
    return tr__kv_restore (kv, &c, now);
}

int
tr__kvlog_replay_buffer (const void *data, size_t len, tr__kv_t *kv,
                         int64_t now, tr__kvlog_replay_t *info)
{
    tr__kvlog_replay_t dummy;
    info = info? info: &dummy;
    memset (info, 0, sizeof *info);
    const uint8_t *buf = (const uint8_t *) data;
    //  A file cut inside its magic was torn as it was created.
    size_t magic = len < TR__KVLOG_MAGIC_LEN? len: TR__KVLOG_MAGIC_LEN;
    if (magic && memcmp (buf, TR__KVLOG_MAGIC, magic) != 0)
        return TR_EMALFORMED;
    if (len < TR__KVLOG_MAGIC_LEN) {
        info->truncated = len;
        return TR_OK;
    }
    size_t off = TR__KVLOG_MAGIC_LEN;
    while (off < len) {
        s_record_t r;
        if (!s_parse (buf, len, off, &r)) {
            if (s_good_after (buf, len, off)) {
                info->bad_offset = off;
                info->valid_len = off;
                return TR_EMALFORMED;
            }
            info->truncated = len - off;
            break;
        }
        int rc = s_apply (kv, &r, now);
        if (rc != TR_OK)
            return rc;
        info->records++;
        off += r.size;
    }
    info->valid_len = off;
    return TR_OK;
}

//  --------------------------------------------------------------------------
//  Files

//  A tr_error_t for errno.
static int
s_errno_code (int err)
{
    switch (err) {
        case ENOENT: case ENOTDIR:          return TR_ENOTFOUND;
        case EACCES: case EPERM: case EROFS: return TR_EACCES;
        case ENOMEM:                        return TR_ENOMEM;
        default:                            return TR_ESYS;
    }
}

static char *
s_join (const char *folder, const char *name)
{
    size_t len = strlen (folder) + strlen (name) + 2;
    char *path = (char *) malloc (len);
    if (path)
        snprintf (path, len, "%s/%s", folder, name);
    return path;
}

//  Writes all of buf at off, retrying short writes. 0 or -1 (errno).
static int
s_pwrite_all (int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = (const uint8_t *) buf;
    while (len) {
        ssize_t n = pwrite (fd, p, len, (off_t) off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t) n;
        off += (uint64_t) n;
    }
    return 0;
}

//  fsyncs a folder, so that a file created or renamed in it survives.
static int
s_sync_folder (const char *folder)
{
    int fd = open (folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    close (fd);
    return rc;
}

static int64_t
s_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
s_now (const tr__kvlog_t *self)
{
    return self->opts.now? self->opts.now: s_wall_ms ();
}

//  --------------------------------------------------------------------------
//  Appending

//  Makes room for n more bytes in the compaction buffer (lock held).
static bool
s_buf_reserve (tr__kvlog_t *self, size_t n)
{
    if (self->buf_len + n <= self->buf_cap)
        return true;
    size_t cap = self->buf_cap? self->buf_cap: S_OUT_CAP;
    while (cap < self->buf_len + n)
        cap *= 2;
    uint8_t *buf = (uint8_t *) realloc (self->buf, cap);
    if (!buf)
        return false;
    self->buf = buf;
    self->buf_cap = cap;
    return true;
}

//  Encodes a change into the scratch buffer (lock held). Returns its
//  size, or 0 if out of memory.
static size_t
s_encode_change (tr__kvlog_t *self, const tr__kv_change_t *c)
{
    s_record_t r = {
        .op = c->op == TR__KV_PUT? S_OP_PUT: S_OP_DEL, .version = c->version,
        .deadline = c->op == TR__KV_PUT? c->deadline: 0,
        .key = c->key, .key_len = c->key_len,
        .value = c->op == TR__KV_PUT? c->value: NULL,
        .value_len = c->op == TR__KV_PUT? c->value_len: 0
    };
    size_t size = S_HEAD + r.key_len + r.value_len;
    if (size > self->scratch_cap) {
        uint8_t *scratch = (uint8_t *) realloc (self->scratch, size);
        if (!scratch)
            return 0;
        self->scratch = scratch;
        self->scratch_cap = size;
    }
    s_encode_head (self->scratch, &r);
    memcpy (self->scratch + S_HEAD, r.key, r.key_len);
    if (r.value_len)
        memcpy (self->scratch + S_HEAD + r.key_len, r.value, r.value_len);
    return size;
}

//  Cuts the file back to its last good size after a failed append (lock
//  held); if even that fails, no further append is allowed.
static void
s_undo (tr__kvlog_t *self, const char *what)
{
    int err = errno;
    if (ftruncate (self->fd, (off_t) self->size) != 0) {
        self->broken = true;
        tr_log (TR_LOG_ERROR, "scratchpad log %s: %s failed (%s) and the record "
                "could not be cut off again (%s); refusing further writes",
                self->path, what, strerror (err), strerror (errno));
    }
    else
        tr_log (TR_LOG_ERROR, "scratchpad log %s: %s failed: %s", self->path,
                what, strerror (err));
}

//  True if the file has outgrown the auto-compaction threshold (lock
//  held).
static bool
s_wants_compaction (const tr__kvlog_t *self)
{
    uint64_t min = self->opts.compact_min;
    uint64_t growth = self->base_size / 100 * (uint64_t) self->opts.compact_growth;
    return !self->compacting && min != UINT64_MAX
        && self->size >= min && self->size >= self->base_size + growth;
}

static void s_compact_try (tr__kvlog_t *self);

int
tr__kvlog_append (tr__kvlog_t *self, const tr__kv_change_t *c)
{
    if (c->key_len == 0)
        return TR_EINVAL;
    if (c->key_len > UINT16_MAX
    ||  c->value_len > S_BODY_MAX - TR__KVLOG_BODY_MIN - UINT16_MAX)
        return TR_ETOOBIG;
    pthread_mutex_lock (&self->lock);
    int rc = self->broken? TR_ESYS: TR_OK;
    size_t size = rc == TR_OK? s_encode_change (self, c): 0;
    if (rc == TR_OK && size == 0)
        rc = TR_ENOMEM;
    if (rc == TR_OK && s_pwrite_all (self->fd, self->scratch, size, self->size) != 0) {
        s_undo (self, "append");
        rc = TR_ESYS;
    }
    bool grouped = self->opts.sync == TR__KVLOG_ALWAYS && self->opts.group;
    if (rc == TR_OK && self->opts.sync == TR__KVLOG_ALWAYS && !grouped
    &&  fdatasync (self->fd) != 0) {
        //  After a failed sync the kernel may have dropped the pages:
        //  nothing more is trusted to this file.
        s_undo (self, "fdatasync");
        self->broken = true;
        rc = TR_ESYS;
    }
    bool compact = false;
    if (rc == TR_OK) {
        self->size += size;
        self->dirty = true;
        self->written++;
        if (grouped)
            pthread_cond_signal (&self->wake);
        else
        if (self->opts.sync == TR__KVLOG_ALWAYS)
            self->synced = self->written;
        if (self->compacting) {
            if (s_buf_reserve (self, size)) {
                memcpy (self->buf + self->buf_len, self->scratch, size);
                self->buf_len += size;
            }
            else
                self->compact_lost = true;
        }
        compact = s_wants_compaction (self);
    }
    pthread_mutex_unlock (&self->lock);
    if (compact)
        s_compact_try (self);
    return rc;
}

//  The store's journal.
static int
s_journal (void *arg, const tr__kv_change_t *c)
{
    return tr__kvlog_append ((tr__kvlog_t *) arg, c);
}

int
tr__kvlog_sync (tr__kvlog_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t written = self->written;
    int rc = fdatasync (self->fd) == 0? TR_OK: TR_ESYS;
    if (rc == TR_OK) {
        self->dirty = false;
        if (!self->sync_failed && self->synced < written)
            self->synced = written;
    }
    pthread_mutex_unlock (&self->lock);
    return rc;
}

void
tr__kvlog_durable (tr__kvlog_t *self, uint64_t *written, uint64_t *synced, bool *failed)
{
    pthread_mutex_lock (&self->lock);
    *written = self->written;
    *synced = self->synced;
    *failed = self->sync_failed;
    pthread_mutex_unlock (&self->lock);
}

int
tr__kvlog_event_fd (tr__kvlog_t *self)
{
    return self->event_fd;
}

//  The sync thread. everysec: wakes once a second and syncs if anything
//  was written. always grouped: syncs as soon as anything was written,
//  every append made meanwhile in one go, then says so on the eventfd.
//  The sync runs on a duplicate of the descriptor, outside the lock, so
//  that appends go on meanwhile and a compaction may switch files (the
//  records up to `target` are then in the new file too, which the
//  compaction synced before it switched).
static void *
s_sync_main (void *arg)
{
    tr__kvlog_t *self = (tr__kvlog_t *) arg;
    bool grouped = self->opts.sync == TR__KVLOG_ALWAYS;
    pthread_mutex_lock (&self->lock);
    while (!self->stop) {
        if (grouped) {
            if (self->written == self->synced || self->sync_failed) {
                pthread_cond_wait (&self->wake, &self->lock);
                continue;
            }
        }
        else {
            struct timespec at;
            clock_gettime (CLOCK_MONOTONIC, &at);
            at.tv_sec += 1;
            pthread_cond_timedwait (&self->wake, &self->lock, &at);
            if (self->stop || !self->dirty)
                continue;
        }
        uint64_t target = self->written;
        self->dirty = false;
        int fd = dup (self->fd);
        pthread_mutex_unlock (&self->lock);
        bool ok = fd >= 0 && fdatasync (fd) == 0;
        int err = errno;
        if (fd >= 0)
            close (fd);
        pthread_mutex_lock (&self->lock);
        if (!ok)
            tr_log (TR_LOG_ERROR, "scratchpad log %s: background fdatasync failed: %s%s",
                    self->path, strerror (err), grouped? "; refusing further writes": "");
        if (grouped) {
            //  After a failed sync the kernel may have dropped the pages:
            //  nothing more is trusted to this file, and the writes not
            //  known durable are never acknowledged.
            if (ok && target > self->synced)
                self->synced = target;
            if (!ok)
                self->sync_failed = self->broken = true;
            uint64_t one = 1;
            if (write (self->event_fd, &one, sizeof one) < 0 && errno != EAGAIN)
                tr_log (TR_LOG_ERROR, "scratchpad log %s: cannot signal the sync: %s",
                        self->path, strerror (errno));
        }
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Compaction

//  A buffered writer for the new file.
typedef struct {
    int fd;
    uint8_t buf [S_OUT_CAP];
    size_t len;
    uint64_t off;                       //  bytes written to the file
    bool failed;
} s_out_t;

static void
s_out_flush (s_out_t *out)
{
    if (out->len && !out->failed) {
        if (s_pwrite_all (out->fd, out->buf, out->len, out->off) != 0)
            out->failed = true;
        out->off += out->len;
    }
    out->len = 0;
}

static void
s_out (s_out_t *out, const void *data, size_t len)
{
    if (out->len + len > sizeof out->buf)
        s_out_flush (out);
    if (len > sizeof out->buf) {
        if (!out->failed && s_pwrite_all (out->fd, data, len, out->off) != 0)
            out->failed = true;
        out->off += len;
        return;
    }
    if (len)
        memcpy (out->buf + out->len, data, len);
    out->len += len;
}

static void
s_out_record (s_out_t *out, const s_record_t *r)
{
    uint8_t head [S_HEAD];
    s_encode_head (head, r);
    s_out (out, head, sizeof head);
    s_out (out, r->key, r->key_len);
    s_out (out, r->value, r->value_len);
}

//  Copies the buffered records above version `at` to the new file.
static void
s_out_buffered (s_out_t *out, const uint8_t *buf, size_t len, uint64_t at)
{
    size_t off = 0;
    while (off + S_HEAD <= len) {
        size_t size = TR__KVLOG_HEADER + s_get32 (buf + off);
        if (s_get64 (buf + off + TR__KVLOG_HEADER + 1) > at)
            s_out (out, buf + off, size);
        off += size;
    }
}

//  Writes the dump: the magic, a base record, a put per live key.
static void
s_out_dump (s_out_t *out, const tr__kv_items_t *items)
{
    s_out (out, TR__KVLOG_MAGIC, TR__KVLOG_MAGIC_LEN);
    s_record_t base = { .op = S_OP_BASE, .version = items->at };
    s_out_record (out, &base);
    for (size_t i = 0; i < items->count; i++) {
        const tr__kv_item_t *item = &items->items [i];
        s_record_t r = {
            .op = S_OP_PUT, .version = item->version, .deadline = item->deadline,
            .key = item->key, .key_len = item->key_len,
            .value = item->value, .value_len = item->value_len
        };
        s_out_record (out, &r);
    }
}

//  Copies what the buffer holds so far without the lock, a few times,
//  so that little is left for the locked step. false if the buffer
//  overflowed memory.
static bool
s_catch_up (tr__kvlog_t *self, s_out_t *out, uint64_t at)
{
    uint8_t *taken = NULL;
    size_t taken_cap = 0;
    bool ok = true;
    for (int round = 0; round < 8 && ok; round++) {
        pthread_mutex_lock (&self->lock);
        ok = !self->compact_lost;
        //  Swap buffers: the appends go on into the other one.
        uint8_t *buf = self->buf;
        size_t len = self->buf_len, cap = self->buf_cap;
        self->buf = taken;
        self->buf_cap = taken_cap;
        self->buf_len = 0;
        pthread_mutex_unlock (&self->lock);
        s_out_buffered (out, buf, len, at);
        taken = buf;
        taken_cap = cap;
        if (len < S_CATCH_UP)
            break;
    }
    free (taken);
    return ok;
}

//  The locked step: the rest of the buffer, a sync, the rename, the
//  folder's sync and the switch to the new file (lock held).
static int
s_switch (tr__kvlog_t *self, s_out_t *out, uint64_t at)
{
    if (self->compact_lost)
        return TR_ENOMEM;
    uint64_t before = out->off + out->len;
    s_out_buffered (out, self->buf, self->buf_len, at);
    s_out_flush (out);
    if (out->failed || (out->off > before && fdatasync (out->fd) != 0))
        return TR_ESYS;
    if (rename (self->tmp_path, self->path) != 0)
        return TR_ESYS;
    if (s_sync_folder (self->folder) != 0)
        tr_log (TR_LOG_ERROR, "scratchpad log %s: fsync of the folder after the "
                "rename failed: %s", self->path, strerror (errno));
    close (self->fd);
    self->fd = out->fd;
    out->fd = -1;
    self->size = self->base_size = out->off;
    self->dirty = false;
    self->broken = false;
    return TR_OK;
}

//  Writes the new file and puts it in place of the old one.
static int
s_compact (tr__kvlog_t *self)
{
    tr__kv_items_t *items = NULL;
    int rc = tr__kv_dump (self->kv, s_now (self), &items);
    if (rc != TR_OK)
        return rc;
    s_out_t *out = (s_out_t *) calloc (1, sizeof *out);
    if (!out) {
        tr__kv_items_destroy (&items);
        return TR_ENOMEM;
    }
    uint64_t at = items->at;
    out->fd = open (self->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    out->failed = out->fd < 0;
    s_out_dump (out, items);
    tr__kv_items_destroy (&items);
    bool ok = s_catch_up (self, out, at);
    s_out_flush (out);
    if (out->failed || fdatasync (out->fd) != 0)
        rc = TR_ESYS;
    else
    if (!ok)
        rc = TR_ENOMEM;
    else {
        pthread_mutex_lock (&self->lock);
        rc = s_switch (self, out, at);
        pthread_mutex_unlock (&self->lock);
    }
    if (rc != TR_OK) {
        tr_log (TR_LOG_ERROR, "scratchpad log %s: compaction failed (%s: %s); "
                "the log goes on as it was", self->path, tr_errname (rc),
                strerror (errno));
        unlink (self->tmp_path);
    }
    if (out->fd >= 0)
        close (out->fd);
    free (out);
    return rc;
}

static void *
s_compact_main (void *arg)
{
    tr__kvlog_t *self = (tr__kvlog_t *) arg;
    int rc = s_compact (self);
    pthread_mutex_lock (&self->lock);
    self->compacting = false;
    self->compact_lost = false;
    free (self->buf);
    self->buf = NULL;
    self->buf_len = self->buf_cap = 0;
    self->compact_rc = rc;
    //  A failure (a full disk, say) is not retried on its own until the
    //  file has grown by the threshold again.
    if (rc != TR_OK)
        self->base_size = self->size;
    if (rc == TR_OK) {
        self->compactions++;
        tr_log (TR_LOG_INFO, "scratchpad log %s: compacted to %llu bytes",
                self->path, (unsigned long long) self->size);
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

//  Starts the thread (compact_lock held). Joins a finished one first.
static int
s_compact_start (tr__kvlog_t *self)
{
    pthread_mutex_lock (&self->lock);
    bool running = self->compacting;
    if (!running) {
        self->compacting = true;
        self->compact_lost = false;
        self->buf_len = 0;
    }
    pthread_mutex_unlock (&self->lock);
    if (running)
        return TR_OK;
    if (self->compact_started)
        pthread_join (self->compact_thread, NULL);
    self->compact_started = pthread_create (&self->compact_thread, NULL,
                                            s_compact_main, self) == 0;
    if (self->compact_started)
        return TR_OK;
    pthread_mutex_lock (&self->lock);
    self->compacting = false;
    pthread_mutex_unlock (&self->lock);
    return TR_ESYS;
}

int
tr__kvlog_compact (tr__kvlog_t *self)
{
    pthread_mutex_lock (&self->compact_lock);
    int rc = s_compact_start (self);
    pthread_mutex_unlock (&self->compact_lock);
    return rc;
}

//  From an append (under the store's lock): never waits for
//  compact_lock, whose holder may be waiting for a thread that waits for
//  the store; the next append tries again.
static void
s_compact_try (tr__kvlog_t *self)
{
    if (pthread_mutex_trylock (&self->compact_lock) != 0)
        return;
    s_compact_start (self);
    pthread_mutex_unlock (&self->compact_lock);
}

int
tr__kvlog_compact_wait (tr__kvlog_t *self)
{
    pthread_mutex_lock (&self->compact_lock);
    if (self->compact_started) {
        pthread_join (self->compact_thread, NULL);
        self->compact_started = false;
    }
    pthread_mutex_lock (&self->lock);
    int rc = self->compact_rc;
    pthread_mutex_unlock (&self->lock);
    pthread_mutex_unlock (&self->compact_lock);
    return rc;
}

uint64_t
tr__kvlog_size (tr__kvlog_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t size = self->size;
    pthread_mutex_unlock (&self->lock);
    return size;
}

uint64_t
tr__kvlog_compactions (tr__kvlog_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t n = self->compactions;
    pthread_mutex_unlock (&self->lock);
    return n;
}

//  --------------------------------------------------------------------------
//  Opening and closing

//  Checks the folder and takes its lock.
static int
s_open_folder (tr__kvlog_t *self)
{
    struct stat st;
    int found = stat (self->folder, &st);
    if (found != 0 || !S_ISDIR (st.st_mode)) {
        tr_log (TR_LOG_ERROR, "scratchpad log: the data folder %s: %s", self->folder,
                found != 0? strerror (errno): "not a folder");
        return s_errno_code (found != 0? errno: ENOTDIR) == TR_EACCES? TR_EACCES: TR_ENOTFOUND;
    }
    char *lock_path = s_join (self->folder, S_LOCK_NAME);
    if (!lock_path)
        return TR_ENOMEM;
    self->lock_fd = open (lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    int err = errno;
    free (lock_path);
    if (self->lock_fd < 0) {
        tr_log (TR_LOG_ERROR, "scratchpad log: cannot write in the data folder %s: %s",
                self->folder, strerror (err));
        return s_errno_code (err);
    }
    if (flock (self->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno;
        tr_log (TR_LOG_ERROR, "scratchpad log: the data folder %s is in use by "
                "another broker (%s)", self->folder, strerror (err));
        return err == EWOULDBLOCK? TR_EEXIST: TR_ESYS;
    }
    if (unlink (self->tmp_path) == 0)
        tr_log (TR_LOG_WARN, "scratchpad log: removed %s, left by a compaction "
                "that did not finish", self->tmp_path);
    return TR_OK;
}

//  Replays the file into the store and cuts a torn tail.
static int
s_load (tr__kvlog_t *self, tr__kvlog_replay_t *info)
{
    struct stat st;
    if (fstat (self->fd, &st) != 0)
        return TR_ESYS;
    size_t len = (size_t) st.st_size;
    void *map = NULL;
    if (len) {
        map = mmap (NULL, len, PROT_READ, MAP_PRIVATE, self->fd, 0);
        if (map == MAP_FAILED)
            return s_errno_code (errno);
    }
    int rc = tr__kvlog_replay_buffer (map, len, self->kv, s_now (self), info);
    if (map)
        munmap (map, len);
    if (rc == TR_EMALFORMED) {
        if (info->bad_offset)
            tr_log (TR_LOG_ERROR, "scratchpad log %s: damaged record at offset %llu, "
                    "with good records after it; refusing to start rather than drop "
                    "them", self->path, (unsigned long long) info->bad_offset);
        else
            tr_log (TR_LOG_ERROR, "scratchpad log %s: not a scratchpad log (bad magic)",
                    self->path);
        return rc;
    }
    if (rc != TR_OK)
        return rc;
    if (info->truncated)
        tr_log (TR_LOG_WARN, "scratchpad log %s: dropped a torn last record "
                "(%llu bytes at offset %llu); %llu records replayed", self->path,
                (unsigned long long) info->truncated,
                (unsigned long long) info->valid_len,
                (unsigned long long) info->records);
    self->size = info->valid_len;
    if (self->size < TR__KVLOG_MAGIC_LEN) {
        if (ftruncate (self->fd, 0) != 0
        ||  s_pwrite_all (self->fd, TR__KVLOG_MAGIC, TR__KVLOG_MAGIC_LEN, 0) != 0)
            return s_errno_code (errno);
        self->size = TR__KVLOG_MAGIC_LEN;
    }
    else
    if (info->truncated && ftruncate (self->fd, (off_t) self->size) != 0)
        return s_errno_code (errno);
    if (self->size != len && (fdatasync (self->fd) != 0 || s_sync_folder (self->folder) != 0))
        return TR_ESYS;
    self->base_size = self->size;
    return TR_OK;
}

static tr__kvlog_t *
s_new (const char *folder, const tr__kvlog_opts_t *opts, tr__kv_t *kv)
{
    tr__kvlog_t *self = (tr__kvlog_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    if (opts)
        self->opts = *opts;
    if (self->opts.sync < TR__KVLOG_ALWAYS || self->opts.sync > TR__KVLOG_NO)
        self->opts.sync = TR__KVLOG_ALWAYS;
    if (!self->opts.compact_min)
        self->opts.compact_min = UINT64_C (64) << 20;
    if (self->opts.compact_growth <= 0)
        self->opts.compact_growth = 100;
    self->kv = kv;
    self->fd = self->lock_fd = self->event_fd = -1;
    self->folder = strdup (folder);
    self->path = s_join (folder, S_LOG_NAME);
    self->tmp_path = s_join (folder, S_TMP_NAME);
    pthread_mutex_init (&self->lock, NULL);
    pthread_mutex_init (&self->compact_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->wake, &attr);
    pthread_condattr_destroy (&attr);
    return self;
}

static void
s_free (tr__kvlog_t *self)
{
    if (self->fd >= 0)
        close (self->fd);
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    if (self->event_fd >= 0)
        close (self->event_fd);
    pthread_cond_destroy (&self->wake);
    pthread_mutex_destroy (&self->compact_lock);
    pthread_mutex_destroy (&self->lock);
    free (self->scratch);
    free (self->buf);
    free (self->folder);
    free (self->path);
    free (self->tmp_path);
    free (self);
}

int
tr__kvlog_open (tr__kvlog_t **self_p, const char *folder,
                const tr__kvlog_opts_t *opts, tr__kv_t *kv,
                tr__kvlog_replay_t *info)
{
    tr__kvlog_replay_t dummy;
    info = info? info: &dummy;
    memset (info, 0, sizeof *info);
    *self_p = NULL;
    if (!folder || !*folder || !kv)
        return TR_EINVAL;
    tr__kvlog_t *self = s_new (folder, opts, kv);
    if (!self || !self->folder || !self->path || !self->tmp_path) {
        if (self)
            s_free (self);
        return TR_ENOMEM;
    }
    int rc = s_open_folder (self);
    if (rc == TR_OK) {
        self->fd = open (self->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (self->fd < 0) {
            rc = s_errno_code (errno);
            tr_log (TR_LOG_ERROR, "scratchpad log %s: cannot open: %s", self->path,
                    strerror (errno));
        }
    }
    if (rc == TR_OK)
        rc = s_load (self, info);
    if (rc == TR_OK && self->opts.sync == TR__KVLOG_ALWAYS && self->opts.group) {
        self->event_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
        rc = self->event_fd >= 0? TR_OK: TR_ESYS;
    }
    if (rc == TR_OK && (self->opts.sync == TR__KVLOG_EVERYSEC
                    ||  (self->opts.sync == TR__KVLOG_ALWAYS && self->opts.group))) {
        self->sync_started = pthread_create (&self->sync_thread, NULL,
                                             s_sync_main, self) == 0;
        rc = self->sync_started? TR_OK: TR_ESYS;
    }
    if (rc != TR_OK) {
        s_free (self);
        return rc;
    }
    tr__kv_set_journal (kv, s_journal, self);
    *self_p = self;
    return TR_OK;
}

void
tr__kvlog_close (tr__kvlog_t **self_p)
{
    tr__kvlog_t *self = *self_p;
    *self_p = NULL;
    if (!self)
        return;
    tr__kv_set_journal (self->kv, NULL, NULL);
    tr__kvlog_compact_wait (self);
    if (self->sync_started) {
        pthread_mutex_lock (&self->lock);
        self->stop = true;
        pthread_cond_signal (&self->wake);
        pthread_mutex_unlock (&self->lock);
        pthread_join (self->sync_thread, NULL);
    }
    if (self->dirty && fdatasync (self->fd) != 0)
        tr_log (TR_LOG_ERROR, "scratchpad log %s: final fdatasync failed: %s",
                self->path, strerror (errno));
    s_free (self);
}
