/*  tb_broker_scratch.c - scratch_ops: scratchpad puts and gets through
    the broker, against redis-server driven by redis-benchmark.

    usage: tb_broker_scratch [REPS [OPS [SERIES]]]

    Parties, each a process of its own on 127.0.0.1 over TCP: a troupe
    broker with the scratchpad in memory only (no data folder), a second
    one logging it to a fresh folder under /tmp with fsync everysec, a
    client node joined to each, and redis-server on a free port with
    persistence off (--save "" --appendonly no).

    A troupe client runs T threads on one node (so over the node's one
    connection to the broker); each thread does OPS / T synchronous
    tr_scratch_put (or tr_scratch_get) calls one after the other, on
    keys "key:%012d" drawn from 10,000 (all written before the first
    round), with a 64-byte value (a msgpack bin8 of 62 bytes). The
    figure is operations per second, all threads together, from the
    moment they are all released to the end of the last one. Redis:
    `redis-benchmark -t set,get -n N -c 50 -P P -d 64 -r 10000 --csv`,
    whose keys are "key:%012d" drawn from 10,000 and values 64 bytes;
    its own requests per second.

    Series (c50: 50 clients; p16: 16 requests in flight per client):
      troupe_put_c50, troupe_get_c50       50 threads, memory only
      redis_set_c50, redis_get_c50         -c 50 -P 1, N = OPS
      troupe_put_c50_p16, troupe_get_c50_p16
                                           50 threads, each keeping 16
                                           calls in flight with the
                                           asynchronous forms
                                           (tr_scratch_put_async,
                                           tr_scratch_get_async): each
                                           answer's callback makes the
                                           thread's next call, as a
                                           pipelining client's event
                                           loop does
      redis_set_c50_p16, redis_get_c50_p16 -c 50 -P 16, N = 8 x OPS
      troupe_put_c50_log, troupe_get_c50_log
                                           50 threads, the broker logging
                                           with fsync everysec
      troupe_put_c50_always, troupe_get_c50_always
                                           the same with fsync always (each
                                           put answered once it is synced;
                                           the log groups the syncs)

    Series take turns within each repetition (after one shorter warm-up
    round, not counted). With SERIES, only that series runs with its
    twin (put and get), or with "redis_..." the Redis ones. A NOTE line
    counts failed calls; an OPS line, the calls of each troupe pair
    (puts and gets, warm-up included).
*/

#include "tb_proc.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#define S_KEYS          10000
#define S_THREADS_MAX   1024

//  --------------------------------------------------------------------------
//  The troupe client's role

typedef struct {
    tr_node_t *node;
    pthread_barrier_t *go;
    int put;
    uint64_t ops;
    unsigned seed;
    uint64_t failed;
    tb_body_t body;
    int window;                         //  calls in flight (1: waiting calls)
    atomic_uint_fast64_t issued;        //  asynchronous calls made so far
    atomic_uint_fast64_t ended;         //  and answered
    atomic_uint_fast64_t async_failed;
    sem_t finished;                     //  posted when the last one ends
} s_worker_t;

static void s_done (const tr_scratch_result_t *result, void *arg);

//  Makes the worker's next asynchronous call, if it has calls left.
//  Returns false when it has none.
static bool
s_issue (s_worker_t *w)
{
    uint64_t i = atomic_fetch_add (&w->issued, 1);
    if (i >= w->ops)
        return false;
    char key [32];
    //  Keys spread over the 10,000 by a stride (the callbacks of several
    //  calls may run while the worker still issues: no shared rand_r
    //  state).
    snprintf (key, sizeof key, "key:%012d", (int) ((i * 7919 + w->seed) % S_KEYS));
    int rc = w->put? tr_scratch_put_async (w->node, key, w->body.data, w->body.size, 0,
                                           10000, s_done, w):
                     tr_scratch_get_async (w->node, key, 10000, s_done, w);
    if (rc) {
        //  Not made: counted as failed and as ended.
        tr_scratch_result_t failed = { .rc = rc };
        s_done (&failed, w);
    }
    return true;
}

//  An asynchronous call's end, on the node's link thread: the next call.
static void
s_done (const tr_scratch_result_t *result, void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    if (result->rc)
        atomic_fetch_add (&w->async_failed, 1);
    if (atomic_fetch_add (&w->ended, 1) + 1 == w->ops)
        sem_post (&w->finished);
    else
        s_issue (w);
}

static void *
s_worker (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    pthread_barrier_wait (w->go);
    if (w->window > 1) {
        //  The first calls of the window; their answers make the rest.
        for (int k = 0; k < w->window && s_issue (w); k++)
            ;
        if (w->ops)
            while (sem_wait (&w->finished))
                ;
        w->failed = atomic_load (&w->async_failed);
        return NULL;
    }
    for (uint64_t i = 0; i < w->ops; i++) {
        char key [32];
        snprintf (key, sizeof key, "key:%012d", (int) (rand_r (&w->seed) % S_KEYS));
        int rc;
        if (w->put)
            rc = tr_scratch_put (w->node, key, w->body.data, w->body.size, 0, 10000, NULL);
        else {
            tr_scratch_value_t value;
            rc = tr_scratch_get (w->node, key, 10000, &value);
            if (rc == TR_OK)
                tr_scratch_value_free (&value);
        }
        if (rc)
            w->failed++;
    }
    return NULL;
}

//  role scratch-client ENDPOINT THREADS [WINDOW]: "fill" writes every
//  key; "run put|get OPS" runs the threads, each with WINDOW calls in
//  flight (default 1: waiting calls); says "result OPS NS FAILED".
static int
s_role_client (int argc, char **argv)
{
    tr_node_opts_t opts = { .broker = argv [0] };
    tr_node_t *node;
    tb_check (tr_node_new (&opts, &node), "node");
    int threads = (int) tb_arg (argc, argv, 1, 50);
    int window = (int) tb_arg (argc, argv, 2, 1);
    if (threads > S_THREADS_MAX)
        threads = S_THREADS_MAX;
    tb_body_t body = tb_body_bin62 ();
    //  The first put waits for the link to the broker.
    for (int tries = 0; tr_scratch_put (node, "key:hello", body.data, body.size, 0, 1000, NULL); tries++)
        if (tries == 20)
            tb_die ("scratch-client: the broker does not answer");
    tb_answer ("ready");
    static s_worker_t worker [S_THREADS_MAX];
    static pthread_t thread [S_THREADS_MAX];
    char line [256];
    while (tb_command (line, sizeof line)) {
        if (!strcmp (line, "fill")) {
            for (int k = 0; k < S_KEYS; k++) {
                char key [32];
                snprintf (key, sizeof key, "key:%012d", k);
                tb_check (tr_scratch_put (node, key, body.data, body.size, 0, 10000, NULL), "fill");
            }
            tb_answer ("filled");
            continue;
        }
        char op [8];
        unsigned long long ops;
        if (sscanf (line, "run %7s %llu", op, &ops) != 2)
            tb_die ("scratch-client: '%s'?", line);
        pthread_barrier_t go;
        pthread_barrier_init (&go, NULL, (unsigned) threads + 1);
        pthread_attr_t attr;
        pthread_attr_init (&attr);
        pthread_attr_setstacksize (&attr, 128 * 1024);
        for (int i = 0; i < threads; i++) {
            worker [i] = (s_worker_t) {
                .node = node, .go = &go, .put = !strcmp (op, "put"), .body = body,
                .ops = ops / (uint64_t) threads + ((uint64_t) i < ops % (uint64_t) threads),
                .seed = (unsigned) (tb_now_ns () + i), .window = window
            };
            sem_init (&worker [i].finished, 0, 0);
            if (pthread_create (&thread [i], &attr, s_worker, &worker [i]))
                tb_die ("scratch-client: thread %d: %s", i, strerror (errno));
        }
        pthread_barrier_wait (&go);
        int64_t start = tb_now_ns ();
        uint64_t failed = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join (thread [i], NULL);
            failed += worker [i].failed;
            sem_destroy (&worker [i].finished);
        }
        int64_t elapsed = tb_now_ns () - start;
        pthread_barrier_destroy (&go);
        pthread_attr_destroy (&attr);
        tb_answer ("result %llu %" PRId64 " %" PRIu64, ops, elapsed, failed);
    }
    tr_node_destroy (&node);
    return 0;
}

//  --------------------------------------------------------------------------
//  The driver

typedef struct {
    const char *name;                   //  the put series; get is its twin
    const char *get_name;
    tb_child_t broker, client;
    uint64_t failed, ops;
} s_troupe_t;

static void
s_troupe_start (s_troupe_t *t, const char *data_dir, const char *fsync, const char *threads,
                const char *window)
{
    char line [512], ep [512];
    if (data_dir)
        tb_child_start (&t->broker, "broker", data_dir, fsync, NULL);
    else
        tb_child_start (&t->broker, "broker", NULL);
    snprintf (ep, sizeof ep, "%s", tb_child_expect (&t->broker, "ready", line, sizeof line));
    tb_child_start (&t->client, "scratch-client", ep, threads, window, NULL);
    tb_child_expect (&t->client, "ready", line, sizeof line);
    tb_child_say (&t->client, "fill");
    tb_child_expect (&t->client, "filled", line, sizeof line);
}

static double
s_troupe_run (s_troupe_t *t, const char *op, uint64_t ops)
{
    char line [512];
    unsigned long long done, ns, failed;
    tb_child_say (&t->client, "run %s %" PRIu64, op, ops);
    if (sscanf (tb_child_expect (&t->client, "result", line, sizeof line), "%llu %llu %llu",
                &done, &ns, &failed) != 3)
        tb_die ("scratch-client: '%s'?", line);
    t->failed += failed;
    t->ops += done;
    return (double) done * 1e9 / (double) ns;
}

//  Runs redis-benchmark; *set and *get get its requests per second.
static void
s_redis_run (int port, uint64_t n, int pipeline, double *set, double *get)
{
    char cmd [512];
    snprintf (cmd, sizeof cmd, "redis-benchmark -h 127.0.0.1 -p %d -t set,get -n %" PRIu64
              " -c 50 -P %d -d 64 -r %d --csv 2>/dev/null", port, n, pipeline, S_KEYS);
    FILE *out = popen (cmd, "r");
    if (!out)
        tb_die ("popen: %s", strerror (errno));
    *set = *get = 0;
    char line [512];
    while (fgets (line, sizeof line, out)) {
        double rps;
        if (sscanf (line, "\"SET\",\"%lf\"", &rps) == 1)
            *set = rps;
        else
        if (sscanf (line, "\"GET\",\"%lf\"", &rps) == 1)
            *get = rps;
    }
    if (pclose (out) != 0 || *set == 0 || *get == 0)
        tb_die ("'%s' failed", cmd);
}

//  Starts redis-server on a free port, memory only; returns the port once
//  it answers.
static int
s_redis_start (tb_child_t *server)
{
    int port = tb_free_port ();
    char port_text [16];
    snprintf (port_text, sizeof port_text, "%d", port);
    char *argv [] = { "redis-server", "--port", port_text, "--bind", "127.0.0.1",
                      "--save", "", "--appendonly", "no", "--daemonize", "no", NULL };
    tb_child_exec (server, "redis-server", argv, 1);
    for (int tries = 0; ; tries++) {
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                                    .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
        int rc = connect (fd, (struct sockaddr *) &addr, sizeof addr);
        close (fd);
        if (rc == 0)
            return port;
        if (tries == 500)
            tb_die ("redis-server does not answer on port %d", port);
        usleep (10000);
    }
}

//  Whether a troupe pair of series runs: all, or the one SERIES names.
static int
s_wanted (const char *only, const s_troupe_t *t)
{
    return !only || !strcmp (only, t->name) || !strcmp (only, t->get_name);
}

int
main (int argc, char **argv)
{
    if (argc >= 3 && !strcmp (argv [1], "role")) {
        tr_log_set_level (TR_LOG_ERROR);
        if (!strcmp (argv [2], "broker"))
            return tb_role_broker (argc - 3, argv + 3);
        if (!strcmp (argv [2], "scratch-client"))
            return s_role_client (argc - 3, argv + 3);
        tb_die ("no role '%s'", argv [2]);
    }
    int reps = (int) tb_arg (argc, argv, 1, 5);
    uint64_t ops = (uint64_t) tb_arg (argc, argv, 2, 50000);
    const char *only = argc > 3? argv [3]: NULL;

    char data_dir [] = "/tmp/tb-scratch-XXXXXX";
    char always_dir [] = "/tmp/tb-scratch-XXXXXX";
    if (!mkdtemp (data_dir) || !mkdtemp (always_dir))
        tb_die ("mkdtemp: %s", strerror (errno));
    s_troupe_t troupe [] = {
        { .name = "troupe_put_c50", .get_name = "troupe_get_c50" },
        { .name = "troupe_put_c50_p16", .get_name = "troupe_get_c50_p16" },
        { .name = "troupe_put_c50_log", .get_name = "troupe_get_c50_log" },
        { .name = "troupe_put_c50_always", .get_name = "troupe_get_c50_always" }
    };
    enum { S_SERIES = 4 };
    const char *windows [] = { "1", "16", "1", "1" };
    const char *dirs [] = { NULL, NULL, data_dir, always_dir };
    const char *fsyncs [] = { NULL, NULL, "everysec", "always" };
    for (int i = 0; i < S_SERIES; i++)
        if (s_wanted (only, &troupe [i]))
            s_troupe_start (&troupe [i], dirs [i], fsyncs [i], "50", windows [i]);
    tb_child_t redis = { 0 };
    int port = 0;
    if (!only || !strncmp (only, "redis_", 6))
        port = s_redis_start (&redis);

    for (int round = 0; round <= reps; round++) {
        uint64_t n = round? ops: ops / 5;
        fprintf (stderr, "scratch_ops %d:", round);
        for (int i = 0; i < S_SERIES; i++) {
            s_troupe_t *t = &troupe [i];
            if (!t->client.pid)
                continue;
            double put = s_troupe_run (t, "put", n);
            double get = s_troupe_run (t, "get", n);
            if (round) {
                tb_sample ("scratch_ops", t->name, put);
                tb_sample ("scratch_ops", t->get_name, get);
            }
            fprintf (stderr, " %s %.0f %s %.0f", t->name, put, t->get_name, get);
        }
        for (int p = 0; port && p < 2; p++) {
            double set, get;
            s_redis_run (port, p? 8 * n: n, p? 16: 1, &set, &get);
            if (round) {
                tb_sample ("scratch_ops", p? "redis_set_c50_p16": "redis_set_c50", set);
                tb_sample ("scratch_ops", p? "redis_get_c50_p16": "redis_get_c50", get);
            }
            fprintf (stderr, " redis%s %.0f/%.0f", p? "_p16": "", set, get);
        }
        fprintf (stderr, " ops/s\n");
    }
    for (int i = 0; i < S_SERIES; i++) {
        s_troupe_t *t = &troupe [i];
        if (!t->client.pid)
            continue;
        printf ("NOTE scratch_ops %s/%s: %" PRIu64 " calls, %" PRIu64 " failed\n",
                t->name, t->get_name, t->ops, t->failed);
        printf ("OPS scratch_ops %s %" PRIu64 "\n", t->name, t->ops);
        tb_child_end (&t->client, 10000);
        tb_child_end (&t->broker, 10000);
    }
    if (port)
        tb_child_end (&redis, 0);
    char cmd [128];
    snprintf (cmd, sizeof cmd, "rm -rf '%s' '%s'", data_dir, always_dir);
    if (system (cmd))
        fprintf (stderr, "bench: could not remove %s\n", data_dir);
    return 0;
}
