/*  tr_kvlog_test.c - tests of the scratchpad's log (broker/tr_kvlog.h).

    Every test works on real files in a folder of its own made with
    mkdtemp, removed at the end.
*/

#include "tr_test.h"
#include "tr_kv.h"
#include "tr_kvlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define S_T0    INT64_C (1700000000000)

//  --------------------------------------------------------------------------
//  Helpers

static char *
s_folder_new (void)
{
    char tmpl [] = "/tmp/tr_kvlog_test_XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (tmpl));
    return strdup (tmpl);
}

static void
s_folder_destroy (char **folder_p)
{
    char *folder = *folder_p;
    *folder_p = NULL;
    DIR *dir = opendir (folder);
    if (dir) {
        struct dirent *e;
        while ((e = readdir (dir)))
            if (strcmp (e->d_name, ".") && strcmp (e->d_name, "..")) {
                char path [512];
                snprintf (path, sizeof path, "%s/%s", folder, e->d_name);
                unlink (path);
            }
        closedir (dir);
    }
    rmdir (folder);
    free (folder);
}

static char *
s_log_path (const char *folder)
{
    static char path [512];
    snprintf (path, sizeof path, "%s/scratchpad.log", folder);
    return path;
}

static void
s_write (const char *path, const void *buf, size_t len)
{
    FILE *f = fopen (path, "wb");
    ck_assert_ptr_nonnull (f);
    ck_assert_uint_eq (fwrite (buf, 1, len, f), len);
    fclose (f);
}

static uint64_t
s_file_size (const char *path)
{
    struct stat st;
    ck_assert_int_eq (stat (path, &st), 0);
    return (uint64_t) st.st_size;
}

static tr__kvlog_opts_t
s_opts (int sync)
{
    tr__kvlog_opts_t opts = { .sync = sync, .compact_min = UINT64_MAX, .now = S_T0 };
    return opts;
}

//  Opens the log in folder into a new store; asserts success.
static tr__kvlog_t *
s_open (const char *folder, int sync, tr__kv_t **kv_p, tr__kvlog_replay_t *info)
{
    *kv_p = tr__kv_new (NULL);
    tr__kvlog_opts_t opts = s_opts (sync);
    tr__kvlog_t *log = NULL;
    int rc = tr__kvlog_open (&log, folder, &opts, *kv_p, info);
    ck_assert_msg (rc == TR_OK, "open %s: %s", folder, tr_errname (rc));
    return log;
}

//  A msgpack str value "value-N-xxx..." of len characters (at least
//  the digits), in buf; returns its size.
static size_t
s_value (char *buf, size_t cap, uint64_t n, size_t len)
{
    char text [1024];
    int used = snprintf (text, sizeof text, "value-%llu-", (unsigned long long) n);
    while ((size_t) used < len && (size_t) used < sizeof text - 1)
        text [used++] = 'x';
    ck_assert_uint_le ((size_t) used + 3, cap);
    buf [0] = (char) 0xda;                  //  str 16
    buf [1] = (char) (used >> 8);
    buf [2] = (char) used;
    memcpy (buf + 3, text, (size_t) used);
    return (size_t) used + 3;
}

static int
s_put (tr__kv_t *kv, const char *key, uint64_t n, int64_t ttl, uint64_t *version)
{
    char value [300];
    size_t size = s_value (value, sizeof value, n, 40);
    return tr__kv_put (kv, key, strlen (key), value, size, ttl, S_T0, version);
}

//  Asserts that two stores hold the same keys, versions, deadlines and
//  values, and the same version counter.
static void
s_assert_same (tr__kv_t *a, tr__kv_t *b)
{
    ck_assert_uint_eq (tr__kv_version (a), tr__kv_version (b));
    tr__kv_items_t *x, *y;
    ck_assert_int_eq (tr__kv_dump (a, S_T0, &x), TR_OK);
    ck_assert_int_eq (tr__kv_dump (b, S_T0, &y), TR_OK);
    ck_assert_uint_eq (x->count, y->count);
    for (size_t i = 0; i < x->count; i++) {
        tr__kv_item_t *p = &x->items [i], *q = &y->items [i];
        ck_assert (p->key_len == q->key_len && memcmp (p->key, q->key, p->key_len) == 0);
        ck_assert_uint_eq (p->version, q->version);
        ck_assert_int_eq (p->deadline, q->deadline);
        ck_assert (p->value_len == q->value_len
                   && memcmp (p->value, q->value, p->value_len) == 0);
    }
    tr__kv_items_destroy (&x);
    tr__kv_items_destroy (&y);
}

//  A mix of writes: puts, overwrites, TTLs, CAS, deletions, an expiry.
static void
s_workload (tr__kv_t *kv, int n)
{
    for (int i = 0; i < n; i++) {
        char key [32];
        snprintf (key, sizeof key, "key/%03d", i % 50);
        int op = i % 7;
        if (op == 5)
            tr__kv_del (kv, key, strlen (key), S_T0, NULL);
        else
        if (op == 6) {
            uint64_t version = 0;
            tr__kv_get (kv, key, strlen (key), S_T0, NULL, &version, NULL);
            ck_assert_int_eq (tr__kv_cas (kv, key, strlen (key), version, "\xc3", 1,
                                          0, S_T0, NULL), TR_OK);
        }
        else
            ck_assert_int_eq (s_put (kv, key, (uint64_t) i, op == 1? 3600000: 0, NULL),
                              TR_OK);
    }
    ck_assert_int_eq (s_put (kv, "short", 1, 5, NULL), TR_OK);
    ck_assert_uint_eq (tr__kv_expire (kv, S_T0 + 5), 1);
}

//  --------------------------------------------------------------------------

START_TEST (test_crc)
{
    ck_assert_uint_eq (tr__kvlog_crc32 (0, "123456789", 9), UINT32_C (0xCBF43926));
    ck_assert_uint_eq (tr__kvlog_crc32 (0, "", 0), 0);
    uint32_t crc = tr__kvlog_crc32 (0, "1234", 4);
    ck_assert_uint_eq (tr__kvlog_crc32 (crc, "56789", 5), UINT32_C (0xCBF43926));
}
END_TEST

//  Every policy: what was written is there after a reopen.
START_TEST (test_reopen)
{
    for (int sync = TR__KVLOG_ALWAYS; sync <= TR__KVLOG_NO; sync++) {
        char *folder = s_folder_new ();
        tr__kv_t *kv, *again;
        tr__kvlog_replay_t info;
        tr__kvlog_t *log = s_open (folder, sync, &kv, &info);
        ck_assert_uint_eq (info.records, 0);
        ck_assert_uint_eq (tr__kvlog_size (log), TR__KVLOG_MAGIC_LEN);
        s_workload (kv, 400);
        ck_assert_int_eq (tr__kvlog_sync (log), TR_OK);
        tr__kvlog_close (&log);
        ck_assert_ptr_null (log);
        tr__kvlog_close (&log);
        log = s_open (folder, sync, &again, &info);
        //  One record per change (versions have no gaps).
        ck_assert_uint_eq (info.records, tr__kv_version (kv));
        ck_assert_uint_eq (info.truncated, 0);
        s_assert_same (kv, again);
        //  The counter goes on from where it was.
        uint64_t version;
        ck_assert_int_eq (s_put (again, "next", 1, 0, &version), TR_OK);
        ck_assert_uint_eq (version, tr__kv_version (kv) + 1);
        tr__kvlog_close (&log);
        tr__kv_destroy (&kv);
        tr__kv_destroy (&again);
        s_folder_destroy (&folder);
    }
}
END_TEST

//  A process killed while it writes: every write it acknowledged (here:
//  reported through a pipe after the put returned) is in the log.
START_TEST (test_crash)
{
    for (int sync = TR__KVLOG_ALWAYS; sync <= TR__KVLOG_NO; sync++) {
        char *folder = s_folder_new ();
        int fds [2];
        ck_assert_int_eq (pipe (fds), 0);
        pid_t pid = fork ();
        ck_assert_int_ge (pid, 0);
        if (pid == 0) {
            close (fds [0]);
            tr__kv_t *kv = tr__kv_new (NULL);
            tr__kvlog_opts_t opts = s_opts (sync);
            tr__kvlog_t *log;
            if (tr__kvlog_open (&log, folder, &opts, kv, NULL) != TR_OK)
                _exit (1);
            for (uint64_t i = 0; ; i++) {
                char key [32];
                uint64_t version;
                snprintf (key, sizeof key, "crash/%06llu", (unsigned long long) i);
                if (s_put (kv, key, i, 0, &version) != TR_OK
                ||  write (fds [1], &version, sizeof version) != sizeof version)
                    _exit (2);
            }
        }
        close (fds [1]);
        //  Let it write a while, then kill it mid-stride.
        uint64_t acked = 0, version;
        while (acked < 300 && read (fds [0], &version, sizeof version) == sizeof version) {
            ck_assert_uint_eq (version, acked + 1);
            acked++;
        }
        kill (pid, SIGKILL);
        while (read (fds [0], &version, sizeof version) == sizeof version)
            acked++;
        close (fds [0]);
        int status;
        waitpid (pid, &status, 0);
        ck_assert (WIFSIGNALED (status));
        tr__kv_t *kv;
        tr__kvlog_t *log = s_open (folder, sync, &kv, NULL);
        ck_assert_uint_ge (tr__kv_version (kv), acked);
        for (uint64_t i = 0; i < acked; i++) {
            char key [32];
            snprintf (key, sizeof key, "crash/%06llu", (unsigned long long) i);
            ck_assert_int_eq (tr__kv_get (kv, key, strlen (key), S_T0, NULL, &version,
                                          NULL), TR_OK);
            ck_assert_uint_eq (version, i + 1);
        }
        tr__kvlog_close (&log);
        tr__kv_destroy (&kv);
        s_folder_destroy (&folder);
    }
}
END_TEST

//  Writes five records; returns the offset of each and the end.
static void
s_five (const char *folder, uint64_t *offsets)
{
    tr__kv_t *kv;
    tr__kvlog_t *log = s_open (folder, TR__KVLOG_ALWAYS, &kv, NULL);
    for (int i = 0; i < 5; i++) {
        char key [16];
        snprintf (key, sizeof key, "k%d", i);
        offsets [i] = tr__kvlog_size (log);
        ck_assert_int_eq (s_put (kv, key, (uint64_t) i, i == 3? 60000: 0, NULL), TR_OK);
    }
    offsets [5] = tr__kvlog_size (log);
    tr__kvlog_close (&log);
    tr__kv_destroy (&kv);
}

static void
s_assert_first (tr__kv_t *kv, int present)
{
    for (int i = 0; i < 5; i++) {
        char key [16];
        snprintf (key, sizeof key, "k%d", i);
        ck_assert_int_eq (tr__kv_get (kv, key, strlen (key), S_T0, NULL, NULL, NULL),
                          i < present? TR_OK: TR_ENOTFOUND);
    }
}

START_TEST (test_torn_tail)
{
    char *folder = s_folder_new ();
    uint64_t off [6];
    s_five (folder, off);
    char *path = s_log_path (folder);
    size_t len;
    uint8_t *bytes = (uint8_t *) tr_test_read_file (path, &len);
    ck_assert_uint_eq (len, off [5]);
    //  Every cut inside the last record: dropped, the four before kept.
    for (uint64_t cut = off [4]; cut < off [5]; cut++) {
        s_write (path, bytes, cut);
        tr__kv_t *kv;
        tr__kvlog_replay_t info;
        tr__kvlog_t *log = s_open (folder, TR__KVLOG_ALWAYS, &kv, &info);
        ck_assert_uint_eq (info.records, 4);
        ck_assert_uint_eq (info.truncated, cut - off [4]);
        ck_assert_uint_eq (info.valid_len, off [4]);
        ck_assert_uint_eq (tr__kvlog_size (log), off [4]);
        ck_assert_uint_eq (s_file_size (path), off [4]);
        s_assert_first (kv, 4);
        ck_assert_uint_eq (tr__kv_version (kv), 4);
        tr__kvlog_close (&log);
        tr__kv_destroy (&kv);
    }
    //  After the cut, appends land where the torn record was.
    tr__kv_t *kv;
    tr__kvlog_t *log = s_open (folder, TR__KVLOG_ALWAYS, &kv, NULL);
    ck_assert_int_eq (s_put (kv, "k4", 4, 0, NULL), TR_OK);
    tr__kvlog_close (&log);
    tr__kv_destroy (&kv);
    log = s_open (folder, TR__KVLOG_ALWAYS, &kv, NULL);
    s_assert_first (kv, 5);
    tr__kvlog_close (&log);
    tr__kv_destroy (&kv);
    //  Zeros after the last record (blocks the file system had allocated
    //  but not written) and a damaged last record are torn tails too.
    uint8_t *padded = (uint8_t *) calloc (1, len + 4096);
    memcpy (padded, bytes, len);
    s_write (path, padded, len + 4096);
    tr__kvlog_replay_t info;
    log = s_open (folder, TR__KVLOG_ALWAYS, &kv, &info);
    ck_assert_uint_eq (info.truncated, 4096);
    s_assert_first (kv, 5);
    tr__kvlog_close (&log);
    tr__kv_destroy (&kv);
    padded [off [5] - 3] ^= 0x40;
    s_write (path, padded, len);
    log = s_open (folder, TR__KVLOG_ALWAYS, &kv, &info);
    ck_assert_uint_eq (info.truncated, off [5] - off [4]);
    s_assert_first (kv, 4);
    tr__kvlog_close (&log);
    tr__kv_destroy (&kv);
    free (padded);
    free (bytes);
    s_folder_destroy (&folder);
}
END_TEST

//  Damage before the last record is reported, and nothing is cut.
START_TEST (test_middle_damage)
{
    char *folder = s_folder_new ();
    uint64_t off [6];
    s_five (folder, off);
    char *path = s_log_path (folder);
    size_t len;
    uint8_t *bytes = (uint8_t *) tr_test_read_file (path, &len);
    //  A byte of the second record's value, of its length, of its
    //  checksum, of its op; a byte of the first record's key.
    uint64_t flips [] = { off [2] - 2, off [1], off [1] + 5, off [1] + 8, off [0] + 27 };
    uint64_t where [] = { off [1], off [1], off [1], off [1], off [0] };
    for (size_t i = 0; i < 5; i++) {
        bytes [flips [i]] ^= 0x10;
        s_write (path, bytes, len);
        bytes [flips [i]] ^= 0x10;
        tr__kv_t *kv = tr__kv_new (NULL);
        tr__kvlog_opts_t opts = s_opts (TR__KVLOG_ALWAYS);
        tr__kvlog_t *log = NULL;
        tr__kvlog_replay_t info;
        ck_assert_int_eq (tr__kvlog_open (&log, folder, &opts, kv, &info), TR_EMALFORMED);
        ck_assert_ptr_null (log);
        ck_assert_uint_eq (info.bad_offset, where [i]);
        ck_assert_uint_eq (s_file_size (path), len);
        tr__kv_destroy (&kv);
    }
    free (bytes);
    s_folder_destroy (&folder);
}
END_TEST

START_TEST (test_bad_magic)
{
    char *folder = s_folder_new ();
    char *path = s_log_path (folder);
    s_write (path, "not a scratchpad log", 20);
    tr__kv_t *kv = tr__kv_new (NULL);
    tr__kvlog_t *log = NULL;
    tr__kvlog_replay_t info;
    ck_assert_int_eq (tr__kvlog_open (&log, folder, NULL, kv, &info), TR_EMALFORMED);
    ck_assert_uint_eq (info.bad_offset, 0);
    ck_assert_uint_eq (s_file_size (path), 20);
    tr__kv_destroy (&kv);
    //  A file cut inside its magic was torn as it was created.
    s_write (path, "TRK", 3);
    log = s_open (folder, TR__KVLOG_ALWAYS, &kv, &info);
    ck_assert_uint_eq (info.truncated, 3);
    ck_assert_uint_eq (s_file_size (path), TR__KVLOG_MAGIC_LEN);
    tr__kvlog_close (&log);
    tr__kv_destroy (&kv);
    //  From memory: empty, the magic alone.
    kv = tr__kv_new (NULL);
    ck_assert_int_eq (tr__kvlog_replay_buffer (NULL, 0, kv, S_T0, &info), TR_OK);
    ck_assert_uint_eq (info.valid_len, 0);
    ck_assert_int_eq (tr__kvlog_replay_buffer (TR__KVLOG_MAGIC, 8, kv, S_T0, &info), TR_OK);
    ck_assert_uint_eq (info.valid_len, 8);
    ck_assert_int_eq (tr__kvlog_replay_buffer ("TRKVLOG\002", 8, kv, S_T0, NULL),
                      TR_EMALFORMED);
    tr__kv_destroy (&kv);
    s_folder_destroy (&folder);
}
END_TEST

START_TEST (test_ttl_replay)
{
    char *folder = s_folder_new ();
    tr__kv_t *kv;
    tr__kvlog_t *log = s_open (folder, TR__KVLOG_ALWAYS, &kv, NULL);
    ck_assert_int_eq (s_put (kv, "soon", 1, 1000, NULL), TR_OK);
    ck_assert_int_eq (s_put (kv, "later", 2, 5000, NULL), TR_OK);
    ck_assert_int_eq (s_put (kv, "never", 3, 0, NULL), TR_OK);
    tr__kvlog_close (&log);
    tr__kv_destroy (&kv);
    //  Two seconds later: "soon" has expired, "later" keeps its deadline.
    kv = tr__kv_new (NULL);
    tr__kvlog_opts_t opts = s_opts (TR__KVLOG_ALWAYS);
    opts.now = S_T0 + 2000;
    ck_assert_int_eq (tr__kvlog_open (&log, folder, &opts, kv, NULL), TR_OK);
    ck_assert_int_eq (tr__kv_get (kv, "soon", 4, S_T0 + 2000, NULL, NULL, NULL), TR_ENOTFOUND);
    int64_t left;
    ck_assert_int_eq (tr__kv_get (kv, "later", 5, S_T0 + 2000, NULL, NULL, &left), TR_OK);
    ck_assert_int_eq (left, 3000);
    ck_assert_uint_eq (tr__kv_count (kv), 2);
    ck_assert_uint_eq (tr__kv_version (kv), 3);
    //  The expiry of "later" is logged as a deletion.
    ck_assert_uint_eq (tr__kv_expire (kv, S_T0 + 5000), 1);
    tr__kvlog_close (&log);
    tr__kv_destroy (&kv);
    tr__kvlog_replay_t info;
    kv = tr__kv_new (NULL);
    opts.now = S_T0 + 5000;
    ck_assert_int_eq (tr__kvlog_open (&log, folder, &opts, kv, &info), TR_OK);
    ck_assert_uint_eq (info.records, 4);
    ck_assert_uint_eq (tr__kv_version (kv), 4);
    ck_assert_uint_eq (tr__kv_count (kv), 1);
    tr__kvlog_close (&log);
    tr__kv_destroy (&kv);
    s_folder_destroy (&folder);
}
END_TEST

START_TEST (test_compaction)
{
    char *folder = s_folder_new ();
    tr__kv_t *kv, *again;
    tr__kvlog_t *log = s_open (folder, TR__KVLOG_NO, &kv, NULL);
    s_workload (kv, 3000);
    //  The last change is a deletion: the compacted file must keep its
    //  version (the base record), though no key holds it.
    ck_assert_int_eq (tr__kv_del (kv, "key/000", 7, S_T0, NULL), TR_OK);
    uint64_t before = tr__kvlog_size (log);
    ck_assert_uint_eq (tr__kvlog_compact_wait (log), TR_OK);
    ck_assert_int_eq (tr__kvlog_compact (log), TR_OK);
    ck_assert_int_eq (tr__kvlog_compact_wait (log), TR_OK);
    ck_assert_uint_eq (tr__kvlog_compactions (log), 1);
    uint64_t after = tr__kvlog_size (log);
    ck_assert_uint_eq (after, s_file_size (s_log_path (folder)));
    ck_assert_uint_lt (after * 10, before);
    printf ("tr_kvlog_test: compaction: %llu -> %llu bytes\n",
            (unsigned long long) before, (unsigned long long) after);
    //  Appends after it go to the new file.
    ck_assert_int_eq (s_put (kv, "after", 1, 0, NULL), TR_OK);
    tr__kvlog_close (&log);
    tr__kvlog_replay_t info;
    log = s_open (folder, TR__KVLOG_NO, &again, &info);
    ck_assert_uint_eq (info.truncated, 0);
    s_assert_same (kv, again);
    //  And compacting what was compacted changes nothing.
    ck_assert_int_eq (tr__kvlog_compact (log), TR_OK);
    ck_assert_int_eq (tr__kvlog_compact_wait (log), TR_OK);
    tr__kvlog_close (&log);
    tr__kv_destroy (&again);
    log = s_open (folder, TR__KVLOG_NO, &again, &info);
    s_assert_same (kv, again);
    tr__kvlog_close (&log);
    tr__kv_destroy (&again);
    tr__kv_destroy (&kv);
    s_folder_destroy (&folder);
}
END_TEST

//  A writer that keeps putting until told to stop.
typedef struct {
    tr__kv_t *kv;
    tr__kvlog_t *log;
    atomic_bool stop;
    atomic_uint_fast64_t acked;         //  keys live/0 .. live/acked-1
    atomic_uint_fast64_t before_end;    //  acked before the compaction ended
    atomic_uint_fast64_t after_end;     //  writes that saw it ended
    uint64_t *versions;
} s_writer_t;

#define S_WRITER_MAX    1000000

static void *
s_writer (void *arg)
{
    s_writer_t *w = (s_writer_t *) arg;
    uint64_t n = 0;
    while (!atomic_load (&w->stop) && n < S_WRITER_MAX) {
        char key [32];
        snprintf (key, sizeof key, "live/%07llu", (unsigned long long) n);
        uint64_t version;
        if (s_put (w->kv, key, n, 0, &version) != TR_OK)
            break;
        w->versions [n++] = version;
        atomic_store (&w->acked, n);
        if (tr__kvlog_compactions (w->log) == 0)
            atomic_store (&w->before_end, n);
        else
            atomic_fetch_add (&w->after_end, 1);
    }
    return NULL;
}

static bool
s_writer_started (void *arg)
{
    return atomic_load (&((s_writer_t *) arg)->acked) >= 100;
}

static bool
s_writer_went_on (void *arg)
{
    return atomic_load (&((s_writer_t *) arg)->after_end) > 0;
}

START_TEST (test_compaction_concurrent)
{
    char *folder = s_folder_new ();
    tr__kv_t *kv;
    tr__kvlog_t *log = s_open (folder, TR__KVLOG_NO, &kv, NULL);
    //  About 10 MB of live data, so that the compaction takes a while.
    char value [600];
    for (int i = 0; i < 20000; i++) {
        char key [32];
        snprintf (key, sizeof key, "bulk/%05d", i);
        size_t size = s_value (value, sizeof value, (uint64_t) i, 500);
        ck_assert_int_eq (tr__kv_put (kv, key, strlen (key), value, size, 0, S_T0, NULL),
                          TR_OK);
    }
    s_writer_t w = { .kv = kv, .log = log };
    w.versions = (uint64_t *) calloc (S_WRITER_MAX, sizeof *w.versions);
    pthread_t thread;
    pthread_create (&thread, NULL, s_writer, &w);
    ck_assert (tr_test_wait_until (s_writer_started, &w, 10000 * tr_test_slowdown ()));
    ck_assert_int_eq (tr__kvlog_compact (log), TR_OK);
    uint64_t at_start = atomic_load (&w.acked);
    ck_assert_int_eq (tr__kvlog_compact (log), TR_OK);      //  already running
    ck_assert_int_eq (tr__kvlog_compact_wait (log), TR_OK);
    //  Until the writer has put at least one key after the switch (a
    //  fixed sleep here left that to the scheduler).
    ck_assert (tr_test_wait_until (s_writer_went_on, &w, 10000 * tr_test_slowdown ()));
    atomic_store (&w.stop, true);
    pthread_join (thread, NULL);
    uint64_t during = atomic_load (&w.before_end) - at_start;
    uint64_t acked = atomic_load (&w.acked);
    printf ("tr_kvlog_test: %llu writes while compacting, %llu in all\n",
            (unsigned long long) during, (unsigned long long) acked);
    ck_assert_uint_gt (during, 0);
    ck_assert_uint_gt (acked, atomic_load (&w.before_end));
    ck_assert_uint_eq (tr__kvlog_compactions (log), 1);
    tr__kvlog_close (&log);
    //  Every acknowledged write is there after a reopen.
    tr__kv_t *again;
    tr__kvlog_replay_t info;
    log = s_open (folder, TR__KVLOG_NO, &again, &info);
    ck_assert_uint_eq (info.truncated, 0);
    for (uint64_t i = 0; i < acked; i++) {
        char key [32];
        uint64_t version;
        snprintf (key, sizeof key, "live/%07llu", (unsigned long long) i);
        ck_assert_int_eq (tr__kv_get (again, key, strlen (key), S_T0, NULL, &version,
                                      NULL), TR_OK);
        ck_assert_uint_eq (version, w.versions [i]);
    }
    s_assert_same (kv, again);
    tr__kvlog_close (&log);
    tr__kv_destroy (&again);
    tr__kv_destroy (&kv);
    free (w.versions);
    s_folder_destroy (&folder);
}
END_TEST

//  The file compacts itself once it passes compact_min (and has doubled
//  since the last compaction). How small it ends up depends on how many
//  appends land while a compaction runs, since the new file keeps them
//  as they are: with the disk busy (fdatasync slow, as with ctest -j2)
//  one compaction may take in most of a free-running loop. So first the
//  writes wait for each compaction they start, which makes the sizes
//  exact; then they race the compactions, and the test checks only
//  what holds at any speed.
START_TEST (test_auto_compaction)
{
    char *folder = s_folder_new ();
    tr__kv_t *kv = tr__kv_new (NULL);
    tr__kvlog_opts_t opts = s_opts (TR__KVLOG_NO);
    opts.compact_min = 32 * 1024;
    tr__kvlog_t *log;
    ck_assert_int_eq (tr__kvlog_open (&log, folder, &opts, kv, NULL), TR_OK);
    //  The append that crosses the threshold starts the compaction before
    //  it returns; waiting for it leaves the two live keys alone (magic,
    //  base record, two puts of 73 bytes: 181 bytes).
    int i;
    for (i = 0; i < 5000; i++) {
        ck_assert_int_eq (s_put (kv, i % 2? "one": "two", (uint64_t) i, 0, NULL), TR_OK);
        ck_assert_int_eq (tr__kvlog_compact_wait (log), TR_OK);
        ck_assert_uint_lt (tr__kvlog_size (log), opts.compact_min);
    }
    uint64_t paced = tr__kvlog_compactions (log);
    ck_assert_uint_ge (paced, 5000 * 73 / opts.compact_min);
    //  Free-running: compactions overlap the writes.
    uint64_t start = tr__kvlog_size (log);
    for (; i < 25000; i++)
        ck_assert_int_eq (s_put (kv, i % 2? "one": "two", (uint64_t) i, 0, NULL), TR_OK);
    ck_assert_int_eq (tr__kvlog_compact_wait (log), TR_OK);
    ck_assert_uint_gt (tr__kvlog_compactions (log), paced);
    ck_assert_uint_lt (tr__kvlog_size (log), start + 20000 * 73);
    printf ("tr_kvlog_test: auto-compaction: %llu compactions paced, %llu racing "
            "the writes, %llu bytes left\n", (unsigned long long) paced,
            (unsigned long long) (tr__kvlog_compactions (log) - paced),
            (unsigned long long) tr__kvlog_size (log));
    tr__kvlog_close (&log);
    tr__kv_t *again;
    log = s_open (folder, TR__KVLOG_NO, &again, NULL);
    s_assert_same (kv, again);
    tr__kvlog_close (&log);
    tr__kv_destroy (&again);
    tr__kv_destroy (&kv);
    s_folder_destroy (&folder);
}
END_TEST

START_TEST (test_folder_errors)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    tr__kvlog_t *log = NULL;
    ck_assert_int_eq (tr__kvlog_open (&log, "/nonexistent/troupe/data", NULL, kv, NULL),
                      TR_ENOTFOUND);
    ck_assert_int_eq (tr__kvlog_open (&log, "", NULL, kv, NULL), TR_EINVAL);
    char *folder = s_folder_new ();
    //  A file where the folder should be.
    char file [512];
    snprintf (file, sizeof file, "%s/file", folder);
    s_write (file, "x", 1);
    ck_assert_int_eq (tr__kvlog_open (&log, file, NULL, kv, NULL), TR_ENOTFOUND);
    unlink (file);
    //  A folder that cannot be written: by permissions (not for root,
    //  who ignores them), or a read-only file system.
    const char *readonly = NULL;
    char ro [512];
    snprintf (ro, sizeof ro, "%s/ro", folder);
    mkdir (ro, 0555);
    if (geteuid () != 0)
        readonly = ro;
    else {
        int fd = open ("/sys/scratchpad.lock", O_RDWR | O_CREAT, 0644);
        if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
            readonly = "/sys";
        if (fd >= 0)
            close (fd);
    }
    if (readonly)
        ck_assert_int_eq (tr__kvlog_open (&log, readonly, NULL, kv, NULL), TR_EACCES);
    rmdir (ro);
    ck_assert_ptr_null (log);
    //  Two logs on one folder: the second is refused until the first
    //  closes.
    tr__kvlog_t *first;
    ck_assert_int_eq (tr__kvlog_open (&first, folder, NULL, kv, NULL), TR_OK);
    tr__kv_t *other = tr__kv_new (NULL);
    ck_assert_int_eq (tr__kvlog_open (&log, folder, NULL, other, NULL), TR_EEXIST);
    tr__kvlog_close (&first);
    ck_assert_int_eq (tr__kvlog_open (&log, folder, NULL, other, NULL), TR_OK);
    tr__kvlog_close (&log);
    //  A leftover of an unfinished compaction is removed.
    char tmp [512];
    snprintf (tmp, sizeof tmp, "%s/scratchpad.log.compact", folder);
    s_write (tmp, "partial", 7);
    tr__kv_destroy (&other);
    other = tr__kv_new (NULL);
    ck_assert_int_eq (tr__kvlog_open (&log, folder, NULL, other, NULL), TR_OK);
    ck_assert_int_eq (access (tmp, F_OK), -1);
    tr__kvlog_close (&log);
    tr__kv_destroy (&other);
    tr__kv_destroy (&kv);
    s_folder_destroy (&folder);
}
END_TEST

//  A write that fails (here: past the file size limit) fails the change,
//  leaves the file as it was, and the log goes on once it can.
START_TEST (test_write_failure)
{
    char *folder = s_folder_new ();
    tr__kv_t *kv;
    tr__kvlog_t *log = s_open (folder, TR__KVLOG_NO, &kv, NULL);
    ck_assert_int_eq (s_put (kv, "a", 1, 0, NULL), TR_OK);
    uint64_t size = tr__kvlog_size (log);
    signal (SIGXFSZ, SIG_IGN);
    struct rlimit old, small;
    getrlimit (RLIMIT_FSIZE, &old);
    small = old;
    small.rlim_cur = size + 60;
    ck_assert_int_eq (setrlimit (RLIMIT_FSIZE, &small), 0);
    char value [300];
    size_t vsize = s_value (value, sizeof value, 2, 200);
    uint64_t version = 0;
    ck_assert_int_eq (tr__kv_put (kv, "b", 1, value, vsize, 0, S_T0, &version), TR_ESYS);
    ck_assert_uint_eq (version, 0);
    ck_assert_int_eq (tr__kv_get (kv, "b", 1, S_T0, NULL, NULL, NULL), TR_ENOTFOUND);
    ck_assert_uint_eq (tr__kv_version (kv), 1);
    ck_assert_uint_eq (tr__kvlog_size (log), size);
    ck_assert_uint_eq (s_file_size (s_log_path (folder)), size);
    ck_assert_int_eq (setrlimit (RLIMIT_FSIZE, &old), 0);
    ck_assert_int_eq (tr__kv_put (kv, "b", 1, value, vsize, 0, S_T0, &version), TR_OK);
    ck_assert_uint_eq (version, 2);
    tr__kvlog_close (&log);
    tr__kv_t *again;
    log = s_open (folder, TR__KVLOG_NO, &again, NULL);
    s_assert_same (kv, again);
    tr__kvlog_close (&log);
    tr__kv_destroy (&again);
    tr__kv_destroy (&kv);
    s_folder_destroy (&folder);
}
END_TEST

//  everysec: the background thread syncs (nothing to observe from here
//  but that it runs and stops cleanly with writes in flight).
START_TEST (test_everysec)
{
    char *folder = s_folder_new ();
    tr__kv_t *kv;
    tr__kvlog_t *log = s_open (folder, TR__KVLOG_EVERYSEC, &kv, NULL);
    int64_t end = tr_test_now_ms () + 1500;
    int n = 0;
    while (tr_test_now_ms () < end) {
        ck_assert_int_eq (s_put (kv, "tick", (uint64_t) n++, 0, NULL), TR_OK);
        usleep (1000);
    }
    tr__kvlog_close (&log);
    tr__kv_t *again;
    log = s_open (folder, TR__KVLOG_EVERYSEC, &again, NULL);
    s_assert_same (kv, again);
    tr__kvlog_close (&log);
    tr__kv_destroy (&again);
    tr__kv_destroy (&kv);
    s_folder_destroy (&folder);
}
END_TEST

//  always, grouped: appends only write; the log's thread syncs them in
//  groups, counts them durable and says so on the eventfd. Four writers
//  and a compaction meanwhile; every append ends counted durable, and a
//  reopened log holds them all. Without group, each append is durable
//  when it returns.

#define S_GROUP_WRITERS 4
#define S_GROUP_PUTS    500

static void *
s_group_writer (void *arg)
{
    tr__kv_t *kv = (tr__kv_t *) arg;
    char key [32];
    for (int i = 0; i < S_GROUP_PUTS; i++) {
        snprintf (key, sizeof key, "w%p-%d", (void *) &key, i % 50);
        if (s_put (kv, key, (uint64_t) i, 0, NULL) != TR_OK)
            return (void *) 1;
    }
    return NULL;
}

START_TEST (test_always_grouped)
{
    char *folder = s_folder_new ();
    tr__kv_t *kv = tr__kv_new (NULL);
    tr__kvlog_opts_t opts = s_opts (TR__KVLOG_ALWAYS);
    opts.group = true;
    tr__kvlog_t *log = NULL;
    ck_assert_int_eq (tr__kvlog_open (&log, folder, &opts, kv, NULL), TR_OK);
    int fd = tr__kvlog_event_fd (log);
    ck_assert_int_ge (fd, 0);
    pthread_t threads [S_GROUP_WRITERS];
    for (int i = 0; i < S_GROUP_WRITERS; i++)
        pthread_create (&threads [i], NULL, s_group_writer, kv);
    ck_assert_int_eq (tr__kvlog_compact (log), TR_OK);
    for (int i = 0; i < S_GROUP_WRITERS; i++) {
        void *failed;
        pthread_join (threads [i], &failed);
        ck_assert_ptr_null (failed);
    }
    ck_assert_int_eq (tr__kvlog_compact_wait (log), TR_OK);
    //  Every append counted durable, each move of the count signalled.
    uint64_t written, synced = 0, signals = 0;
    bool failed = true;
    int64_t deadline = tr_test_now_ms () + 10000 * tr_test_slowdown ();
    do {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll (&pfd, 1, 100) == 1) {
            uint64_t ticks;
            ck_assert_int_eq (read (fd, &ticks, sizeof ticks), (int) sizeof ticks);
            signals += ticks;
        }
        tr__kvlog_durable (log, &written, &synced, &failed);
    } while (synced < written && tr_test_now_ms () < deadline);
    ck_assert (!failed);
    ck_assert_uint_eq (written, S_GROUP_WRITERS * S_GROUP_PUTS);
    ck_assert_uint_eq (synced, written);
    ck_assert_uint_ge (signals, 1);
    ck_assert_uint_le (signals, written);
    tr__kvlog_close (&log);
    tr__kv_t *again;
    log = s_open (folder, TR__KVLOG_ALWAYS, &again, NULL);
    s_assert_same (kv, again);
    //  Not grouped: durable at once, and no eventfd.
    ck_assert_int_eq (tr__kvlog_event_fd (log), -1);
    ck_assert_int_eq (s_put (again, "one", 1, 0, NULL), TR_OK);
    tr__kvlog_durable (log, &written, &synced, &failed);
    ck_assert_uint_eq (written, 1);
    ck_assert_uint_eq (synced, 1);
    tr__kvlog_close (&log);
    tr__kv_destroy (&again);
    tr__kv_destroy (&kv);
    s_folder_destroy (&folder);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_kvlog");
    TCase *tc = tcase_create ("kvlog");
    tcase_set_timeout (tc, 240);
    tcase_add_test (tc, test_crc);
    tcase_add_test (tc, test_reopen);
    tcase_add_test (tc, test_crash);
    tcase_add_test (tc, test_torn_tail);
    tcase_add_test (tc, test_middle_damage);
    tcase_add_test (tc, test_bad_magic);
    tcase_add_test (tc, test_ttl_replay);
    tcase_add_test (tc, test_compaction);
    tcase_add_test (tc, test_compaction_concurrent);
    tcase_add_test (tc, test_auto_compaction);
    tcase_add_test (tc, test_folder_errors);
    tcase_add_test (tc, test_write_failure);
    tcase_add_test (tc, test_everysec);
    tcase_add_test (tc, test_always_grouped);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
