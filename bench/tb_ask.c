/*  tb_ask.c - ask_pingpong and ask_pingpong_crowded: round trips.

    usage: tb_ask single [REPS [WINDOW_MS [SERIES]]]
           tb_ask crowded [REPS [PAIRS [WINDOW_MS [SERIES]]]]

    Every series runs pairs of a pinger and a ponger that go round trip
    after round trip for WINDOW_MS (default 1000); the round trips all
    pairs completed are divided by the window. The pinger checks a shared
    stop flag between round trips, so the clock never depends on sleeps
    inside the loop and a slow series cannot run away with the time.
    Bodies are a msgpack unsigned integer (the round number), echoed and
    checked; the raw sockets carry the same number as 8 bytes.

    single: one pair. Series, in round trips per second:
      troupe_ask        actor 'ping' handles one message by calling
                        tr_ask on 'pong' in a loop
      troupe_request    event style: 'ping' sends tr_request, the reply
                        arrives in its handler, which sends the next one
      zmq_pair_block    raw libzmq PAIR over inproc, two threads, each
                        blocking in zmq_recv
      zmq_pair_spin     the same, but each receiver calls zmq_recv with
                        ZMQ_DONTWAIT in a loop until a message is there

    crowded: PAIRS pairs at once, more than there are cores. Series:
      troupe_<P>p         tr_ask loops, node with default options
      troupe_nospin_<P>p  the same on a node with spin_us = -1
      zmq_pair_block_<P>p P raw PAIR thread pairs, blocking recv

    Series take turns within each repetition; a first, shorter round of
    each is a warm-up and is not counted. With SERIES, only that series
    runs (for profiling it alone). At the end, a line
    "OPS <benchmark> <series> <n>" gives the round trips done in all
    rounds, warm-up included, so that counts taken around the whole
    process (perf stat, strace -c) can be divided by it.
*/

#include "tb_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <zmq.h>

static void
s_sleep_ms (int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000 };
    while (nanosleep (&ts, &ts))
        ;
}

//  --------------------------------------------------------------------------
//  troupe actors

//  Answers an ask with its own body.
static int
s_pong_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg));
}

//  State of a pinger. Told anything, it starts a run that lasts until
//  *stop is set; asked, it answers with the round trips of the last run
//  (once that run is over).
typedef struct {
    const char *pong;                   //  name of its ponger
    atomic_bool *stop;
    uint64_t count;                     //  round trips in this run
    //  Event style only:
    bool running;
    uint64_t pending;                   //  id of the request in flight
    tr_msg_t *job;                      //  ask for the count, deferred
} s_ping_t;

static int
s_answer_count (const tr_msg_t *ask, uint64_t count)
{
    tr_body_t answer = tb_pack_uint (count);
    return tr_reply (ask, answer.data, answer.size);
}

//  Blocking style: the handler of the "go" tell loops on tr_ask.
static int
s_ping_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_ping_t *p = (s_ping_t *) state;
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        return s_answer_count (msg, p->count);
    tr_node_t *node = tr_actor_node (self);
    for (p->count = 0; !atomic_load_explicit (p->stop, memory_order_relaxed); p->count++) {
        tr_body_t body = tb_pack_uint (p->count);
        tr_msg_t *reply;
        uint64_t echo;
        int rc = tr_ask (node, p->pong, body.data, body.size, 10000, &reply, NULL);
        if (rc) {
            fprintf (stderr, "bench: ask '%s': %s\n", p->pong, tr_strerror (rc));
            return -1;
        }
        rc = tb_unpack_uint (reply, &echo);
        tr_msg_destroy (&reply);
        if (rc || echo != p->count)
            return -1;
    }
    return 0;
}

//  Event style: one request in flight; the handler that gets its reply
//  sends the next one.
static int
s_evping_send (tr_actor_t *self, s_ping_t *p)
{
    tr_body_t body = tb_pack_uint (p->count);
    return tr_request (tr_actor_node (self), p->pong, body.data, body.size,
                       10000, &p->pending, NULL);
}

static int
s_evping_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_ping_t *p = (s_ping_t *) state;
    int kind = tr_msg_kind (msg);
    if (kind == TR_KIND_TELL) {
        p->count = 0;
        p->running = true;
        return s_evping_send (self, p);
    }
    if (kind == TR_KIND_ASK) {
        if (!p->running)
            return s_answer_count (msg, p->count);
        p->job = tr_defer (msg);            //  answered when the run ends
        return 0;
    }
    uint64_t echo;
    if (kind != TR_KIND_REPLY || tr_msg_corr (msg) != p->pending
    ||  tb_unpack_uint (msg, &echo) || echo != p->count) {
        fprintf (stderr, "bench: event ping got kind %d (%s)\n",
                 kind, tr_strerror (tr_msg_error (msg)));
        exit (1);
    }
    p->count++;
    if (!atomic_load_explicit (p->stop, memory_order_relaxed))
        return s_evping_send (self, p);
    p->running = false;
    if (p->job) {
        s_answer_count (p->job, p->count);
        tr_msg_destroy (&p->job);
    }
    return 0;
}

//  A node with `pairs` pinger/ponger pairs of one style.
typedef struct {
    tr_node_t *node;
    int pairs;
    atomic_bool stop;
    s_ping_t *ping;
    char (*names) [2][32];              //  ping, pong names per pair
} s_crowd_t;

static void
s_crowd_new (s_crowd_t *crowd, int pairs, int spin_us, bool event_style)
{
    tr_node_opts_t opts = { .spin_us = spin_us };
    tb_check (tr_node_new (&opts, &crowd->node), "node");
    crowd->pairs = pairs;
    atomic_init (&crowd->stop, false);
    crowd->ping = (s_ping_t *) calloc ((size_t) pairs, sizeof *crowd->ping);
    crowd->names = calloc ((size_t) pairs, sizeof *crowd->names);
    if (!crowd->ping || !crowd->names)
        tb_check (TR_ENOMEM, "pairs");
    tr_behaviour_t pong = { .handle = s_pong_handle };
    tr_behaviour_t ping = { .handle = event_style? s_evping_handle: s_ping_handle };
    for (int i = 0; i < pairs; i++) {
        snprintf (crowd->names [i][0], 32, "ping-%d", i);
        snprintf (crowd->names [i][1], 32, "pong-%d", i);
        crowd->ping [i] = (s_ping_t) { .pong = crowd->names [i][1], .stop = &crowd->stop };
        tb_check (tr_spawn (crowd->node, crowd->names [i][1], &pong, NULL, NULL, NULL), "spawn");
        tb_check (tr_spawn (crowd->node, crowd->names [i][0], &ping, &crowd->ping [i],
                            NULL, NULL), "spawn");
    }
}

//  One window; returns round trips per second over all pairs.
static double
s_crowd_run (s_crowd_t *crowd, int window_ms, uint64_t *ops)
{
    atomic_store (&crowd->stop, false);
    int64_t start = tb_now_ns ();
    for (int i = 0; i < crowd->pairs; i++)
        tb_check (tr_tell (crowd->node, crowd->names [i][0], NULL, 0, NULL), "go");
    s_sleep_ms (window_ms);
    atomic_store (&crowd->stop, true);
    int64_t end = tb_now_ns ();
    uint64_t total = 0;
    for (int i = 0; i < crowd->pairs; i++)
        total += tb_ask_uint (crowd->node, crowd->names [i][0], 0, 60000);
    *ops += total;
    return (double) total * 1e9 / (double) (end - start);
}

static void
s_crowd_destroy (s_crowd_t *crowd)
{
    tr_node_destroy (&crowd->node);
    free (crowd->ping);
    free (crowd->names);
}

//  --------------------------------------------------------------------------
//  Raw libzmq PAIR ping-pong

typedef struct {
    void *ctx;
    char endpoint [64];
    int spin;                           //  recv with ZMQ_DONTWAIT in a loop
    atomic_bool *stop;
    pthread_barrier_t *bound;           //  pongs bound: pongs, pings, main
    pthread_barrier_t *go;              //  pings connected: pings, main
    uint64_t count;                     //  round trips done
    pthread_t ping, pong;
} s_pair_t;

#define S_PAIR_QUIT UINT64_MAX

static void
s_pair_recv (void *sock, uint64_t *value, int spin)
{
    int rc;
    if (spin)
        while ((rc = zmq_recv (sock, value, sizeof *value, ZMQ_DONTWAIT)) < 0
           &&  zmq_errno () == EAGAIN)
            ;
    else
        rc = zmq_recv (sock, value, sizeof *value, 0);
    if (rc != (int) sizeof *value) {
        fprintf (stderr, "bench: PAIR recv: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
}

static void
s_pair_send (void *sock, uint64_t value)
{
    if (zmq_send (sock, &value, sizeof value, 0) != (int) sizeof value) {
        fprintf (stderr, "bench: PAIR send: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
}

static void *
s_pair_pong (void *arg)
{
    s_pair_t *pair = (s_pair_t *) arg;
    void *sock = zmq_socket (pair->ctx, ZMQ_PAIR);
    if (!sock || zmq_bind (sock, pair->endpoint)) {
        fprintf (stderr, "bench: PAIR bind: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
    pthread_barrier_wait (pair->bound);
    for (;;) {
        uint64_t value;
        s_pair_recv (sock, &value, pair->spin);
        if (value == S_PAIR_QUIT)
            break;
        s_pair_send (sock, value);
    }
    zmq_close (sock);
    return NULL;
}

static void *
s_pair_ping (void *arg)
{
    s_pair_t *pair = (s_pair_t *) arg;
    pthread_barrier_wait (pair->bound);
    void *sock = zmq_socket (pair->ctx, ZMQ_PAIR);
    if (!sock || zmq_connect (sock, pair->endpoint)) {
        fprintf (stderr, "bench: PAIR connect: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
    pthread_barrier_wait (pair->go);
    uint64_t i;
    for (i = 0; !atomic_load_explicit (pair->stop, memory_order_relaxed); i++) {
        uint64_t echo;
        s_pair_send (sock, i);
        s_pair_recv (sock, &echo, pair->spin);
        if (echo != i) {
            fprintf (stderr, "bench: PAIR echo %" PRIu64 " for %" PRIu64 "\n", echo, i);
            exit (1);
        }
    }
    pair->count = i;
    s_pair_send (sock, S_PAIR_QUIT);
    zmq_close (sock);
    return NULL;
}

//  Runs `pairs` raw ping-pong thread pairs for one window. Returns round
//  trips per second over all pairs.
static double
s_pair_run (int pairs, int spin, int window_ms, uint64_t *ops)
{
    static int run;
    run++;
    void *ctx = zmq_ctx_new ();
    atomic_bool stop = false;
    pthread_barrier_t bound, go;
    pthread_barrier_init (&bound, NULL, (unsigned) pairs * 2 + 1);
    pthread_barrier_init (&go, NULL, (unsigned) pairs + 1);
    s_pair_t *pair = (s_pair_t *) calloc ((size_t) pairs, sizeof *pair);
    if (!ctx || !pair)
        tb_check (TR_ENOMEM, "raw pairs");
    for (int i = 0; i < pairs; i++) {
        pair [i] = (s_pair_t) { .ctx = ctx, .spin = spin, .stop = &stop,
                                .bound = &bound, .go = &go };
        snprintf (pair [i].endpoint, sizeof pair [i].endpoint,
                  "inproc://tb-pair-%d-%d", run, i);
        pthread_create (&pair [i].pong, NULL, s_pair_pong, &pair [i]);
        pthread_create (&pair [i].ping, NULL, s_pair_ping, &pair [i]);
    }
    pthread_barrier_wait (&bound);
    pthread_barrier_wait (&go);
    int64_t start = tb_now_ns ();
    s_sleep_ms (window_ms);
    atomic_store (&stop, true);
    int64_t end = tb_now_ns ();
    uint64_t total = 0;
    for (int i = 0; i < pairs; i++) {
        pthread_join (pair [i].ping, NULL);
        pthread_join (pair [i].pong, NULL);
        total += pair [i].count;
    }
    free (pair);
    pthread_barrier_destroy (&bound);
    pthread_barrier_destroy (&go);
    zmq_ctx_term (ctx);
    *ops += total;
    return (double) total * 1e9 / (double) (end - start);
}

//  --------------------------------------------------------------------------
//  The two benchmarks: series take turns, round 0 is a warm-up

typedef struct {
    const char *name;
    s_crowd_t *crowd;                   //  troupe series
    int raw_spin;                       //  raw series: spin or block
    uint64_t ops;                       //  round trips, all rounds
} s_series_t;

static void
s_run_series (const char *bench, s_series_t *series, int count, int pairs,
              int reps, int window_ms, const char *only)
{
    for (int round = 0; round <= reps; round++) {
        int window = round? window_ms: window_ms / 5;
        fprintf (stderr, "%s %d:", bench, round);
        for (int s = 0; s < count; s++) {
            if (only && strcmp (only, series [s].name))
                continue;
            double rate = series [s].crowd?
                s_crowd_run (series [s].crowd, window, &series [s].ops):
                s_pair_run (pairs, series [s].raw_spin, window, &series [s].ops);
            if (round)
                tb_sample (bench, series [s].name, rate);
            fprintf (stderr, " %s %.0f", series [s].name, rate);
        }
        fprintf (stderr, " round trips/s\n");
    }
    for (int s = 0; s < count; s++)
        if (series [s].ops)
            printf ("OPS %s %s %" PRIu64 "\n", bench, series [s].name, series [s].ops);
}

static void
s_single (int reps, int window_ms, const char *only)
{
    s_crowd_t ask, request;
    s_crowd_new (&ask, 1, 0, false);
    s_crowd_new (&request, 1, 0, true);
    s_series_t series [] = {
        { .name = "troupe_ask", .crowd = &ask },
        { .name = "troupe_request", .crowd = &request },
        { .name = "zmq_pair_block" },
        { .name = "zmq_pair_spin", .raw_spin = 1 }
    };
    s_run_series ("ask_pingpong", series, 4, 1, reps, window_ms, only);
    s_crowd_destroy (&ask);
    s_crowd_destroy (&request);
}

static void
s_crowded (int reps, int pairs, int window_ms, const char *only)
{
    s_crowd_t spin, nospin;
    s_crowd_new (&spin, pairs, 0, false);
    s_crowd_new (&nospin, pairs, -1, false);
    char names [3][64];
    snprintf (names [0], 64, "troupe_%dp", pairs);
    snprintf (names [1], 64, "troupe_nospin_%dp", pairs);
    snprintf (names [2], 64, "zmq_pair_block_%dp", pairs);
    s_series_t series [] = {
        { .name = names [0], .crowd = &spin },
        { .name = names [1], .crowd = &nospin },
        { .name = names [2] }
    };
    s_run_series ("ask_pingpong_crowded", series, 3, pairs, reps, window_ms, only);
    s_crowd_destroy (&spin);
    s_crowd_destroy (&nospin);
}

int
main (int argc, char **argv)
{
    if (argc >= 2 && !strcmp (argv [1], "single"))
        s_single ((int) tb_arg (argc, argv, 2, 5), (int) tb_arg (argc, argv, 3, 1000),
                  argc > 4? argv [4]: NULL);
    else
    if (argc >= 2 && !strcmp (argv [1], "crowded"))
        s_crowded ((int) tb_arg (argc, argv, 2, 5), (int) tb_arg (argc, argv, 3, 4),
                   (int) tb_arg (argc, argv, 4, 1000), argc > 5? argv [5]: NULL);
    else {
        fprintf (stderr, "usage: tb_ask single [REPS [WINDOW_MS [SERIES]]]\n"
                         "       tb_ask crowded [REPS [PAIRS [WINDOW_MS [SERIES]]]]\n");
        return 2;
    }
    return 0;
}
