/*  tr_scratch_test.c - the scratchpad through the public API
    (tr_scratch.h): nodes joined to a real broker on 127.0.0.1.

    Covered: get, put, compare-and-set, delete and list, with their
    errors; a TTL's time left and its end; compare-and-set under
    contention from threads of two nodes and from several processes, each
    increment (and each version) won by exactly one writer; and
    durability: a broker with a data folder and fsync always, in a
    process of its own, SIGKILLed while a writer in another process
    writes (and reports each acknowledged key on a pipe), then restarted
    on the folder: every acknowledged key is there. A quick loop measures
    puts and gets per second from one client.

    Processes are this program run again (fork, then exec at once: a fork
    of a threaded process could inherit held locks) with a role as its
    first argument: "cas", "writer" or "broker".
*/

#include "tr_test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>

static tr_broker_t *s_broker;
static char s_endpoint [128];

//  A node joined to the broker at endpoint under `id`.
static tr_node_t *
s_node_at (const char *endpoint, const char *id)
{
    tr_node_opts_t opts = { .broker = endpoint, .node_id = id, .heartbeat_ms = 500 };
    tr_node_t *node = NULL;
    if (tr_node_new (&opts, &node) != TR_OK)
        return NULL;
    return node;
}

static tr_node_t *
s_node (const char *id)
{
    tr_node_t *node = s_node_at (s_endpoint, id);
    ck_assert_ptr_nonnull (node);
    return node;
}

static void
s_start_broker (const char *data_dir)
{
    tr_broker_opts_t opts = { .bind = "tcp://127.0.0.1:*", .heartbeat_ms = 500,
                              .data_dir = data_dir, .fsync = TR_FSYNC_ALWAYS };
    int rc = tr_broker_start (&opts, &s_broker);
    ck_assert_msg (rc == TR_OK, "broker: %s", tr_errname (rc));
    snprintf (s_endpoint, sizeof s_endpoint, "%s", tr_broker_endpoint (s_broker));
}

static void
s_setup (void)
{
    s_start_broker (NULL);
}

static void
s_teardown (void)
{
    tr_broker_stop (&s_broker);
}

//  A call's timeout: long enough for a link that is still greeting, and
//  for the sanitizers.
static int
s_timeout (void)
{
    return 5000 * tr_test_slowdown ();
}

//  Stores a uint under key.
static int
s_put_uint (tr_node_t *node, const char *key, uint64_t value, int64_t ttl_ms,
            uint64_t *version_p)
{
    tr_body_t body = tr_test_pack_uint (value);
    return tr_scratch_put (node, key, body.data, body.size, ttl_ms, s_timeout (), version_p);
}

//  Reads a uint: TR_OK with *value_p and *version_p, or the error.
static int
s_get_uint (tr_node_t *node, const char *key, uint64_t *value_p, uint64_t *version_p)
{
    tr_scratch_value_t value;
    int rc = tr_scratch_get (node, key, s_timeout (), &value);
    if (rc == TR_OK) {
        *value_p = tr_test_unpack_uint (value.data, value.size);
        if (version_p)
            *version_p = value.version;
        tr_scratch_value_free (&value);
    }
    return rc;
}

//  --------------------------------------------------------------------------

START_TEST (test_basics)
{
    tr_node_t *a = s_node ("node-a");
    tr_node_t *b = s_node ("node-b");
    uint64_t value, v1, v2, v3, version;
    ck_assert_int_eq (s_get_uint (a, "cfg.x", &value, NULL), TR_ENOTFOUND);
    ck_assert_int_eq (s_put_uint (a, "cfg.x", 7, 0, &v1), TR_OK);
    //  Another node sees it.
    tr_scratch_value_t got;
    ck_assert_int_eq (tr_scratch_get (b, "cfg.x", s_timeout (), &got), TR_OK);
    ck_assert_uint_eq (tr_test_unpack_uint (got.data, got.size), 7);
    ck_assert_uint_eq (got.version, v1);
    ck_assert_int_eq (got.ttl_ms, 0);
    tr_scratch_value_free (&got);
    ck_assert_ptr_null (got.data);

    //  Compare-and-set: stale, then right; 0 for a new key.
    tr_body_t body = tr_test_pack_uint (8);
    ck_assert_int_eq (tr_scratch_cas (b, "cfg.x", v1 + 100, body.data, body.size, 0,
                                      s_timeout (), NULL), TR_ECONFLICT);
    ck_assert_int_eq (tr_scratch_cas (b, "cfg.x", v1, body.data, body.size, 0,
                                      s_timeout (), &v2), TR_OK);
    ck_assert_uint_gt (v2, v1);
    ck_assert_int_eq (tr_scratch_cas (b, "cfg.x", v1, body.data, body.size, 0,
                                      s_timeout (), NULL), TR_ECONFLICT);
    ck_assert_int_eq (tr_scratch_cas (a, "cfg.y", 0, body.data, body.size, 0,
                                      s_timeout (), &v3), TR_OK);
    ck_assert_int_eq (tr_scratch_cas (a, "cfg.y", 0, body.data, body.size, 0,
                                      s_timeout (), NULL), TR_ECONFLICT);
    ck_assert_int_eq (s_get_uint (a, "cfg.x", &value, &version), TR_OK);
    ck_assert_uint_eq (value, 8);
    ck_assert_uint_eq (version, v2);

    //  List: byte order, [key, version] pairs.
    ck_assert_int_eq (s_put_uint (a, "other", 1, 0, NULL), TR_OK);
    uint8_t *list = NULL;
    size_t size = 0;
    ck_assert_int_eq (tr_scratch_list (b, "cfg.", s_timeout (), &list, &size), TR_OK);
    tr__mp_t mp;
    tr__mp_init (&mp, list, size);
    uint32_t n, pair;
    ck_assert_int_eq (tr__mp_array (&mp, &n), 0);
    ck_assert_uint_eq (n, 2);
    const char *keys [] = { "cfg.x", "cfg.y" };
    uint64_t versions [] = { v2, v3 };
    for (uint32_t i = 0; i < n; i++) {
        const char *key;
        uint32_t len;
        ck_assert_int_eq (tr__mp_array (&mp, &pair), 0);
        ck_assert_uint_eq (pair, 2);
        ck_assert_int_eq (tr__mp_str (&mp, &key, &len), 0);
        ck_assert (len == strlen (keys [i]) && memcmp (key, keys [i], len) == 0);
        ck_assert_int_eq (tr__mp_uint (&mp, &version), 0);
        ck_assert_uint_eq (version, versions [i]);
    }
    free (list);
    ck_assert_int_eq (tr_scratch_list (b, "", s_timeout (), &list, &size), TR_OK);
    tr__mp_init (&mp, list, size);
    ck_assert_int_eq (tr__mp_array (&mp, &n), 0);
    ck_assert_uint_eq (n, 3);
    free (list);

    //  Delete.
    ck_assert_int_eq (tr_scratch_del (b, "cfg.x", s_timeout (), &version), TR_OK);
    ck_assert_uint_gt (version, v3);
    ck_assert_int_eq (tr_scratch_del (b, "cfg.x", s_timeout (), NULL), TR_ENOTFOUND);
    ck_assert_int_eq (s_get_uint (a, "cfg.x", &value, NULL), TR_ENOTFOUND);

    //  Refused before they are sent, and by the broker.
    ck_assert_int_eq (s_put_uint (a, "", 1, 0, NULL), TR_EINVAL);
    ck_assert_int_eq (s_put_uint (a, "k", 1, -1, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_scratch_put (a, "k", "\xc1", 1, 0, s_timeout (), NULL),
                      TR_EMALFORMED);
    ck_assert_int_eq (tr_scratch_put (a, "k", NULL, 0, 0, s_timeout (), NULL), TR_EINVAL);
    ck_assert_int_eq (s_put_uint (a, "a key", 1, 0, NULL), TR_EINVAL);
    uint8_t *big = (uint8_t *) malloc (1048576 + 16);
    big [0] = 0xc6;                                 //  bin 32 of 1 MiB
    big [1] = 0x00; big [2] = 0x10; big [3] = 0x00; big [4] = 0x00;
    memset (big + 5, 'b', 1048576);
    ck_assert_int_eq (tr_scratch_put (a, "big", big, 1048576 + 5, 0, s_timeout (), NULL),
                      TR_ETOOBIG);
    free (big);
    tr_node_t *alone = NULL;
    ck_assert_int_eq (tr_node_new (NULL, &alone), TR_OK);
    ck_assert_int_eq (s_put_uint (alone, "k", 1, 0, NULL), TR_EINVAL);
    tr_node_destroy (&alone);
    tr_node_destroy (&a);
    tr_node_destroy (&b);
}
END_TEST

START_TEST (test_ttl)
{
    tr_node_t *a = s_node ("node-a");
    uint64_t value;
    ck_assert_int_eq (s_get_uint (a, "warmup", &value, NULL), TR_ENOTFOUND);
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_put_uint (a, "lease", 1, 300, NULL), TR_OK);
    ck_assert_int_eq (s_put_uint (a, "forever", 2, 0, NULL), TR_OK);
    tr_scratch_value_t got;
    ck_assert_int_eq (tr_scratch_get (a, "lease", s_timeout (), &got), TR_OK);
    ck_assert_int_gt (got.ttl_ms, 0);
    ck_assert_int_le (got.ttl_ms, 300);
    tr_scratch_value_free (&got);
    int rc;
    while ((rc = s_get_uint (a, "lease", &value, NULL)) == TR_OK)
        usleep (10 * 1000);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_int_eq (rc, TR_ENOTFOUND);
    ck_assert_msg (took >= 295 && took < 300 + 1000 * tr_test_slowdown (),
                   "expired after %lld ms", (long long) took);
    ck_assert_int_eq (s_get_uint (a, "forever", &value, NULL), TR_OK);
    tr_node_destroy (&a);
}
END_TEST

//  --------------------------------------------------------------------------
//  Compare-and-set under contention

//  Increments the uint under key `count` times with get + CAS, retrying
//  on TR_ECONFLICT; calls won (value, version, arg) for each increment
//  it won. Returns TR_OK or the first other error.
static int
s_increment (tr_node_t *node, const char *key, int count,
             void (*won) (uint64_t, uint64_t, void *), void *arg)
{
    int done = 0;
    while (done < count) {
        uint64_t value = 0, version = 0;
        int rc = s_get_uint (node, key, &value, &version);
        if (rc == TR_ENOTFOUND)
            value = version = 0;
        else
        if (rc)
            return rc;
        tr_body_t body = tr_test_pack_uint (value + 1);
        uint64_t next = 0;
        rc = tr_scratch_cas (node, key, version, body.data, body.size, 0, s_timeout (), &next);
        if (rc == TR_ECONFLICT)
            continue;
        if (rc)
            return rc;
        won (value + 1, next, arg);
        done++;
    }
    return TR_OK;
}

enum { S_THREADS = 4, S_PER_THREAD = 100 };

typedef struct {
    tr_node_t *node;
    uint64_t values [S_PER_THREAD];
    uint64_t versions [S_PER_THREAD];
    int count;
    int rc;
} s_writer_t;

static void
s_thread_won (uint64_t value, uint64_t version, void *arg)
{
    s_writer_t *w = (s_writer_t *) arg;
    w->values [w->count] = value;
    w->versions [w->count] = version;
    w->count++;
}

static void *
s_writer_thread (void *arg)
{
    s_writer_t *w = (s_writer_t *) arg;
    w->rc = s_increment (w->node, "counter", S_PER_THREAD, s_thread_won, w);
    return NULL;
}

static int
s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y? -1: x > y;
}

//  Checks that values are exactly 1..n, each once, and versions all
//  different.
static void
s_check_exactly_once (uint64_t *values, uint64_t *versions, size_t n)
{
    qsort (values, n, sizeof *values, s_cmp_u64);
    qsort (versions, n, sizeof *versions, s_cmp_u64);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq (values [i], i + 1);
        if (i)
            ck_assert_uint_gt (versions [i], versions [i - 1]);
    }
}

//  Threads of two nodes increment one counter.
START_TEST (test_cas_threads)
{
    tr_node_t *nodes [2] = { s_node ("node-a"), s_node ("node-b") };
    static s_writer_t writers [S_THREADS];
    pthread_t threads [S_THREADS];
    memset (writers, 0, sizeof writers);
    for (int i = 0; i < S_THREADS; i++) {
        writers [i].node = nodes [i % 2];
        ck_assert_int_eq (pthread_create (&threads [i], NULL, s_writer_thread, &writers [i]), 0);
    }
    static uint64_t values [S_THREADS * S_PER_THREAD], versions [S_THREADS * S_PER_THREAD];
    size_t n = 0;
    for (int i = 0; i < S_THREADS; i++) {
        pthread_join (threads [i], NULL);
        ck_assert_int_eq (writers [i].rc, TR_OK);
        ck_assert_int_eq (writers [i].count, S_PER_THREAD);
        memcpy (values + n, writers [i].values, sizeof writers [i].values);
        memcpy (versions + n, writers [i].versions, sizeof writers [i].versions);
        n += S_PER_THREAD;
    }
    s_check_exactly_once (values, versions, n);
    uint64_t value, version;
    ck_assert_int_eq (s_get_uint (nodes [0], "counter", &value, &version), TR_OK);
    ck_assert_uint_eq (value, n);
    ck_assert_uint_eq (version, versions [n - 1]);
    tr_node_destroy (&nodes [0]);
    tr_node_destroy (&nodes [1]);
}
END_TEST

//  Writes "VALUE VERSION\n" to standard output for each increment won.
static void
s_process_won (uint64_t value, uint64_t version, void *arg)
{
    (void) arg;
    char line [64];
    int len = snprintf (line, sizeof line, "%llu %llu\n", (unsigned long long) value,
                        (unsigned long long) version);
    if (write (1, line, (size_t) len) != len)
        _exit (3);
}

//  The role "cas ENDPOINT ID COUNT": increments "counter" COUNT times.
static int
s_cas_main (const char *endpoint, const char *id, int count)
{
    tr_node_t *node = s_node_at (endpoint, id);
    if (!node)
        return 1;
    int rc = s_increment (node, "counter", count, s_process_won, NULL);
    tr_node_destroy (&node);
    return rc == TR_OK? 0: 2;
}

//  Runs this program again with a role; its standard output goes to
//  *out_p (the read end of a pipe). Returns its pid.
static pid_t
s_spawn (const char *role, const char *arg1, const char *arg2, const char *arg3, int *out_p)
{
    int fds [2];
    ck_assert_int_eq (pipe (fds), 0);
    pid_t pid = fork ();
    ck_assert_int_ge (pid, 0);
    if (pid == 0) {
        dup2 (fds [1], 1);
        close (fds [0]);
        close (fds [1]);
        execl ("/proc/self/exe", "tr_scratch_test", role, arg1, arg2, arg3, (char *) NULL);
        _exit (127);
    }
    close (fds [1]);
    *out_p = fds [0];
    return pid;
}

enum { S_PROCESSES = 3, S_PER_PROCESS = 100 };

//  Processes, each a node of its own, increment one counter.
START_TEST (test_cas_processes)
{
    FILE *outs [S_PROCESSES];
    pid_t pids [S_PROCESSES];
    for (int i = 0; i < S_PROCESSES; i++) {
        char id [32], count [16];
        snprintf (id, sizeof id, "cas-%d", i);
        snprintf (count, sizeof count, "%d", S_PER_PROCESS);
        int fd;
        pids [i] = s_spawn ("cas", s_endpoint, id, count, &fd);
        outs [i] = fdopen (fd, "r");
        ck_assert_ptr_nonnull (outs [i]);
    }
    static uint64_t values [S_PROCESSES * S_PER_PROCESS];
    static uint64_t versions [S_PROCESSES * S_PER_PROCESS];
    size_t n = 0;
    for (int i = 0; i < S_PROCESSES; i++) {
        unsigned long long value, version;
        while (fscanf (outs [i], "%llu %llu", &value, &version) == 2) {
            ck_assert_uint_lt (n, S_PROCESSES * S_PER_PROCESS);
            values [n] = value;
            versions [n] = version;
            n++;
        }
        fclose (outs [i]);
        int status;
        ck_assert_int_eq (waitpid (pids [i], &status, 0), pids [i]);
        ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0,
                       "writer %d ended with status %d", i, status);
    }
    ck_assert_uint_eq (n, S_PROCESSES * S_PER_PROCESS);
    s_check_exactly_once (values, versions, n);
    tr_node_t *a = s_node ("node-a");
    uint64_t value;
    ck_assert_int_eq (s_get_uint (a, "counter", &value, NULL), TR_OK);
    ck_assert_uint_eq (value, n);
    tr_node_destroy (&a);
}
END_TEST

//  --------------------------------------------------------------------------
//  Durability

//  The role "broker DIR": a broker with DIR as its data folder and fsync
//  always; prints its endpoint on a line, then serves until killed.
static int
s_broker_main (const char *dir)
{
    tr_broker_opts_t opts = { .bind = "tcp://127.0.0.1:*", .heartbeat_ms = 500,
                              .data_dir = dir, .fsync = TR_FSYNC_ALWAYS };
    tr_broker_t *broker = NULL;
    if (tr_broker_start (&opts, &broker))
        return 1;
    char line [160];
    int len = snprintf (line, sizeof line, "%s\n", tr_broker_endpoint (broker));
    if (write (1, line, (size_t) len) != len)
        return 1;
    while (true)
        pause ();
}

//  The role "writer ENDPOINT": puts d.N = N for N = 0, 1, ... and writes
//  "N\n" to standard output once each put is acknowledged, until killed.
static int
s_writer_main (const char *endpoint)
{
    tr_node_t *node = s_node_at (endpoint, "writer");
    if (!node)
        return 1;
    for (uint64_t i = 0; ; i++) {
        char key [32], line [32];
        snprintf (key, sizeof key, "d.%llu", (unsigned long long) i);
        if (s_put_uint (node, key, i, 0, NULL) != TR_OK)
            continue;
        int len = snprintf (line, sizeof line, "%llu\n", (unsigned long long) i);
        if (write (1, line, (size_t) len) != len)
            return 3;
    }
}

//  Removes a data folder and what the log left in it.
static void
s_rmdir (const char *dir)
{
    char path [256];
    const char *names [] = { "scratchpad.log", "scratchpad.lock", "scratchpad.log.compact" };
    for (size_t i = 0; i < 3; i++) {
        snprintf (path, sizeof path, "%s/%s", dir, names [i]);
        unlink (path);
    }
    rmdir (dir);
}

//  A broker (fsync always) and a writer, each in a process of its own,
//  both SIGKILLed after N acknowledged writes while the writer goes on
//  writing; a broker started again on the folder has every key the
//  writer reported.
START_TEST (test_durable_after_kill)
{
    enum { N = 200 };
    tr_broker_stop (&s_broker);                     //  the fixture's
    char dir [] = "/tmp/tr_scratch_test.XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    int fd;
    pid_t broker = s_spawn ("broker", dir, NULL, NULL, &fd);
    FILE *from_broker = fdopen (fd, "r");
    char endpoint [160];
    ck_assert_ptr_nonnull (fgets (endpoint, sizeof endpoint, from_broker));
    endpoint [strcspn (endpoint, "\n")] = 0;
    pid_t writer = s_spawn ("writer", endpoint, NULL, NULL, &fd);
    FILE *from_writer = fdopen (fd, "r");
    static bool acked [1000000];
    unsigned long long key, count = 0, highest = 0;
    while (count < N && fscanf (from_writer, "%llu", &key) == 1) {
        ck_assert_uint_lt (key, 1000000);
        acked [key] = true;
        count++;
    }
    ck_assert_uint_eq (count, N);
    //  Mid-stream: the writer has a put in flight, or is about to.
    kill (broker, SIGKILL);
    kill (writer, SIGKILL);
    waitpid (broker, NULL, 0);
    waitpid (writer, NULL, 0);
    fclose (from_broker);
    //  What the writer reported before it died.
    while (fscanf (from_writer, "%llu", &key) == 1) {
        ck_assert_uint_lt (key, 1000000);
        acked [key] = true;
        if (key > highest)
            highest = key;
        count++;
    }
    fclose (from_writer);

    //  The lock of the dead broker went with it.
    s_start_broker (dir);
    tr_node_t *a = s_node ("checker");
    size_t checked = 0;
    for (unsigned long long k = 0; k < 1000000; k++) {
        if (!acked [k])
            continue;
        char name [32];
        snprintf (name, sizeof name, "d.%llu", k);
        uint64_t value;
        int rc = s_get_uint (a, name, &value, NULL);
        ck_assert_msg (rc == TR_OK, "acknowledged key %s: %s", name, tr_errname (rc));
        ck_assert_uint_eq (value, k);
        checked++;
    }
    ck_assert_uint_eq (checked, count);
    tr_broker_stats_t stats;
    tr_broker_stats (s_broker, &stats);
    ck_assert_uint_ge (stats.kv_keys, count);
    tr_node_destroy (&a);
    tr_broker_stop (&s_broker);
    s_rmdir (dir);
    (void) highest;
}
END_TEST

//  --------------------------------------------------------------------------

//  Puts and gets from one client, one at a time: a rough rate, printed,
//  with the scratchpad in memory and logged with each fsync policy.
//  --------------------------------------------------------------------------
//  Asynchronous calls

//  What the callbacks saw, in order.
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t count;
    size_t expected;
    int rc [2100];
    uint64_t version [2100];
    uint64_t value [2100];
    pthread_t thread;                   //  where callbacks ran
} s_seen_t;

static void
s_seen_init (s_seen_t *seen, size_t expected)
{
    memset (seen, 0, sizeof *seen);
    pthread_mutex_init (&seen->lock, NULL);
    pthread_cond_init (&seen->cond, NULL);
    seen->expected = expected;
}

static void
s_on_result (const tr_scratch_result_t *result, void *arg)
{
    s_seen_t *seen = (s_seen_t *) arg;
    pthread_mutex_lock (&seen->lock);
    size_t i = seen->count++;
    if (i < 2100) {
        seen->rc [i] = result->rc;
        seen->version [i] = result->version;
        seen->value [i] = result->rc == TR_OK && result->size?
                          tr_test_unpack_uint (result->data, result->size): 0;
    }
    seen->thread = pthread_self ();
    pthread_cond_broadcast (&seen->cond);
    pthread_mutex_unlock (&seen->lock);
}

//  Waits until `expected` callbacks have run (or the time runs out), then
//  a little more, so that a second call of one callback would be seen.
static void
s_seen_wait (s_seen_t *seen, int timeout_ms)
{
    int64_t deadline = tr_test_now_ms () + timeout_ms;
    pthread_mutex_lock (&seen->lock);
    while (seen->count < seen->expected && tr_test_now_ms () < deadline) {
        pthread_mutex_unlock (&seen->lock);
        usleep (2000);
        pthread_mutex_lock (&seen->lock);
    }
    pthread_mutex_unlock (&seen->lock);
    usleep (50 * 1000);
    ck_assert_uint_eq (seen->count, seen->expected);
}

//  A thousand puts and then a thousand gets in flight from one thread:
//  every callback once, in the order sent, with versions that grow; the
//  errors come through the callback as the waiting calls return them.
START_TEST (test_async)
{
    tr_node_t *node = s_node ("async");
    static s_seen_t seen;
    enum { N = 1000 };
    s_seen_init (&seen, N);
    for (uint64_t i = 0; i < N; i++) {
        char key [32];
        snprintf (key, sizeof key, "async/%llu", (unsigned long long) i);
        tr_body_t body = tr_test_pack_uint (i * 3);
        ck_assert_int_eq (tr_scratch_put_async (node, key, body.data, body.size, 0, s_timeout (),
                                                s_on_result, &seen), TR_OK);
    }
    s_seen_wait (&seen, 2 * s_timeout ());
    for (size_t i = 0; i < N; i++) {
        ck_assert_int_eq (seen.rc [i], TR_OK);
        if (i)
            ck_assert_uint_gt (seen.version [i], seen.version [i - 1]);
    }
    ck_assert (!pthread_equal (seen.thread, pthread_self ()));
    uint64_t last_put = seen.version [N - 1];
    s_seen_init (&seen, N);
    for (uint64_t i = 0; i < N; i++) {
        char key [32];
        snprintf (key, sizeof key, "async/%llu", (unsigned long long) i);
        ck_assert_int_eq (tr_scratch_get_async (node, key, s_timeout (), s_on_result, &seen),
                          TR_OK);
    }
    s_seen_wait (&seen, 2 * s_timeout ());
    for (size_t i = 0; i < N; i++) {
        ck_assert_int_eq (seen.rc [i], TR_OK);
        ck_assert_uint_eq (seen.value [i], i * 3);
        ck_assert_uint_le (seen.version [i], last_put);
    }
    //  Errors: no such key, a conflict, a deletion and its absence.
    s_seen_init (&seen, 5);
    tr_body_t body = tr_test_pack_uint (7);
    ck_assert_int_eq (tr_scratch_get_async (node, "async/none", s_timeout (), s_on_result, &seen),
                      TR_OK);
    ck_assert_int_eq (tr_scratch_cas_async (node, "async/1", 1, body.data, body.size, 0,
                                            s_timeout (), s_on_result, &seen), TR_OK);
    ck_assert_int_eq (tr_scratch_cas_async (node, "async/new", 0, body.data, body.size, 0,
                                            s_timeout (), s_on_result, &seen), TR_OK);
    ck_assert_int_eq (tr_scratch_del_async (node, "async/1", s_timeout (), s_on_result, &seen),
                      TR_OK);
    ck_assert_int_eq (tr_scratch_del_async (node, "async/1", s_timeout (), s_on_result, &seen),
                      TR_OK);
    s_seen_wait (&seen, 2 * s_timeout ());
    ck_assert_int_eq (seen.rc [0], TR_ENOTFOUND);
    ck_assert_int_eq (seen.rc [1], TR_ECONFLICT);
    ck_assert_int_eq (seen.rc [2], TR_OK);
    ck_assert_int_eq (seen.rc [3], TR_OK);
    ck_assert_uint_gt (seen.version [3], seen.version [2]);
    ck_assert_int_eq (seen.rc [4], TR_ENOTFOUND);
    //  Bad arguments: refused at once, the callback never called.
    s_seen_init (&seen, 0);
    ck_assert_int_eq (tr_scratch_get_async (node, "", s_timeout (), s_on_result, &seen), TR_EINVAL);
    ck_assert_int_eq (tr_scratch_get_async (node, "k", 0, s_on_result, &seen), TR_EINVAL);
    ck_assert_int_eq (tr_scratch_get_async (node, "k", 100, NULL, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_scratch_put_async (node, "k", "\xc1", 1, 0, 100, s_on_result, &seen),
                      TR_EMALFORMED);
    ck_assert_int_eq (tr_scratch_put_async (node, "k", body.data, body.size, -1, 100,
                                            s_on_result, &seen), TR_EINVAL);
    ck_assert_int_eq (tr_scratch_del_async (NULL, "k", 100, s_on_result, &seen), TR_EINVAL);
    s_seen_wait (&seen, 0);
    tr_node_destroy (&node);
}
END_TEST

//  No broker: calls end with TR_ETIMEDOUT after their timeout; a node
//  destroyed with calls in flight ends them with TR_ESTOPPED. Either way
//  each callback runs once.
START_TEST (test_async_unanswered)
{
    tr_broker_stop (&s_broker);
    tr_node_t *node = s_node ("lonely");
    static s_seen_t seen;
    s_seen_init (&seen, 3);
    int64_t start = tr_test_now_ms ();
    tr_body_t body = tr_test_pack_uint (1);
    ck_assert_int_eq (tr_scratch_get_async (node, "k", 200, s_on_result, &seen), TR_OK);
    ck_assert_int_eq (tr_scratch_put_async (node, "k", body.data, body.size, 0, 300,
                                            s_on_result, &seen), TR_OK);
    ck_assert_int_eq (tr_scratch_del_async (node, "k", 250, s_on_result, &seen), TR_OK);
    s_seen_wait (&seen, 5000 * tr_test_slowdown ());
    int64_t took = tr_test_now_ms () - start;
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq (seen.rc [i], TR_ETIMEDOUT);
    ck_assert_msg (took >= 300, "the calls ended after %lld ms", (long long) took);
    s_seen_init (&seen, 2);
    ck_assert_int_eq (tr_scratch_get_async (node, "k", 60000, s_on_result, &seen), TR_OK);
    ck_assert_int_eq (tr_scratch_get_async (node, "k", 60000, s_on_result, &seen), TR_OK);
    tr_node_destroy (&node);
    ck_assert_uint_eq (seen.count, 2);
    ck_assert_int_eq (seen.rc [0], TR_ESTOPPED);
    ck_assert_int_eq (seen.rc [1], TR_ESTOPPED);
}
END_TEST

//  A callback that makes the next call (on the link's thread), as a
//  pipelining client does: chains of calls run to their end; once the
//  node stops, a callback's new call is refused with TR_ESTOPPED and its
//  callback never runs.
typedef struct {
    tr_node_t *node;
    atomic_int done, left, refused_stopped, other;
} s_chain_t;

static void
s_chain_next (const tr_scratch_result_t *result, void *arg)
{
    s_chain_t *chain = (s_chain_t *) arg;
    atomic_fetch_add (&chain->done, 1);
    if (result->rc != TR_OK && result->rc != TR_ESTOPPED && result->rc != TR_ENOTFOUND)
        atomic_fetch_add (&chain->other, 1);
    if (atomic_fetch_sub (&chain->left, 1) <= 0)
        return;
    int rc = tr_scratch_get_async (chain->node, "chain/k", 60000, s_chain_next, chain);
    if (rc == TR_ESTOPPED)
        atomic_fetch_add (&chain->refused_stopped, 1);
    else
    if (rc != TR_OK)
        atomic_fetch_add (&chain->other, 1);
}

START_TEST (test_async_chained)
{
    static s_chain_t chain;
    chain.node = s_node ("chain");
    tr_body_t body = tr_test_pack_uint (5);
    ck_assert_int_eq (tr_scratch_put (chain.node, "chain/k", body.data, body.size, 0,
                                      s_timeout (), NULL), TR_OK);
    //  Eight chains of 500 calls each.
    atomic_store (&chain.left, 4000 - 8);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq (tr_scratch_get_async (chain.node, "chain/k", s_timeout (),
                                                s_chain_next, &chain), TR_OK);
    int64_t deadline = tr_test_now_ms () + 2 * s_timeout ();
    while (atomic_load (&chain.done) < 4000 && tr_test_now_ms () < deadline)
        usleep (2000);
    ck_assert_int_eq (atomic_load (&chain.done), 4000);
    ck_assert_int_eq (atomic_load (&chain.other), 0);
    //  Endless chains, then the node stops under them.
    atomic_store (&chain.left, 1 << 30);
    atomic_store (&chain.done, 0);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq (tr_scratch_get_async (chain.node, "chain/k", s_timeout (),
                                                s_chain_next, &chain), TR_OK);
    usleep (100 * 1000);
    //  tr_node_destroy clears the pointer it is given at once; the
    //  callbacks keep theirs.
    tr_node_t *node = chain.node;
    tr_node_destroy (&node);
    ck_assert_int_gt (atomic_load (&chain.done), 8);
    ck_assert_int_eq (atomic_load (&chain.other), 0);
    ck_assert_int_ge (atomic_load (&chain.refused_stopped), 1);
}
END_TEST

START_TEST (test_rate)
{
    tr_broker_stop (&s_broker);                     //  the fixture's
    char dir [] = "/tmp/tr_scratch_test.XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    struct { const char *name; const char *dir; int fsync; int n; } runs [] = {
        { "memory only", NULL, 0, 5000 },
        { "fsync no", dir, TR_FSYNC_NO, 5000 },
        { "fsync everysec", dir, TR_FSYNC_EVERYSEC, 5000 },
        { "fsync always", dir, TR_FSYNC_ALWAYS, 500 }
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs [0]; r++) {
        tr_broker_opts_t opts = { .bind = "tcp://127.0.0.1:*", .heartbeat_ms = 500,
                                  .data_dir = runs [r].dir, .fsync = runs [r].fsync };
        ck_assert_int_eq (tr_broker_start (&opts, &s_broker), TR_OK);
        snprintf (s_endpoint, sizeof s_endpoint, "%s", tr_broker_endpoint (s_broker));
        tr_node_t *a = s_node ("node-a");
        int n = runs [r].n;
        uint64_t value;
        ck_assert_int_eq (s_put_uint (a, "warmup", 0, 0, NULL), TR_OK);
        int64_t start = tr_test_now_ms ();
        for (int i = 0; i < n; i++) {
            char key [32];
            snprintf (key, sizeof key, "rate.%d", i % 100);
            ck_assert_int_eq (s_put_uint (a, key, (uint64_t) i, 0, NULL), TR_OK);
        }
        int64_t mid = tr_test_now_ms ();
        for (int i = 0; i < n; i++) {
            char key [32];
            snprintf (key, sizeof key, "rate.%d", i % 100);
            ck_assert_int_eq (s_get_uint (a, key, &value, NULL), TR_OK);
        }
        int64_t end = tr_test_now_ms ();
        printf ("tr_scratch_test: one client, one request at a time, %s: %d puts in "
                "%lld ms (%.0f/s), %d gets in %lld ms (%.0f/s)\n", runs [r].name, n,
                (long long) (mid - start), n * 1000.0 / (double) (mid - start + 1), n,
                (long long) (end - mid), n * 1000.0 / (double) (end - mid + 1));
        tr_node_destroy (&a);
        tr_broker_stop (&s_broker);
    }
    s_rmdir (dir);
}
END_TEST

int
main (int argc, char **argv)
{
    signal (SIGPIPE, SIG_IGN);
    if (argc == 5 && strcmp (argv [1], "cas") == 0)
        return s_cas_main (argv [2], argv [3], atoi (argv [4]));
    if (argc == 3 && strcmp (argv [1], "writer") == 0)
        return s_writer_main (argv [2]);
    if (argc == 3 && strcmp (argv [1], "broker") == 0)
        return s_broker_main (argv [2]);
    Suite *suite = suite_create ("tr_scratch");
    TCase *tc = tcase_create ("scratch");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_basics);
    tcase_add_test (tc, test_ttl);
    tcase_add_test (tc, test_cas_threads);
    tcase_add_test (tc, test_cas_processes);
    tcase_add_test (tc, test_durable_after_kill);
    tcase_add_test (tc, test_rate);
    tcase_add_test (tc, test_async);
    tcase_add_test (tc, test_async_unanswered);
    tcase_add_test (tc, test_async_chained);
    suite_add_tcase (suite, tc);
    SRunner *runner = srunner_create (suite);
    srunner_run_all (runner, CK_NORMAL);
    int failed = srunner_ntests_failed (runner);
    srunner_free (runner);
    return failed? EXIT_FAILURE: EXIT_SUCCESS;
}
