/*  tb_tell.c - tell_throughput: one-way messages, actor to actor.

    usage: tb_tell [REPS [MESSAGES [SERIES]]]

    A producer actor tells a consumer actor MESSAGES bodies of 64 bytes
    (a msgpack bin8 of 62 bytes), then asks it once. The consumer handles
    its mailbox in order, so its answer to that ask means every tell
    before it has been handled: the clock runs from the first tell to the
    answer, inside the producer's handler. Series:

      troupe_cap1024    consumer with the default mailbox (1024, wait)
      troupe_cap4M      consumer with a mailbox bigger than the run
      troupe_ref        as troupe_cap1024, telling through a tr_ref_t
                        instead of by name
      zmq_push_pull     raw libzmq: PUSH to PULL over inproc between two
                        threads, 64-byte messages, default options

    The series take turns within each repetition, so that whatever else
    the machine does spreads over all of them. One round of each is run
    first and not counted (warm-up). With SERIES, only that series runs
    (for profiling one of them under perf, valgrind or strace). At the
    end, "OPS <benchmark> <series> <n>" gives the messages sent in all
    rounds, warm-up included.
*/

#include "tb_util.h"

#include <pthread.h>
#include <zmq.h>

#define S_BENCH "tell_throughput"

//  --------------------------------------------------------------------------
//  troupe: producer and consumer actors

typedef struct {
    const char *consumer;               //  name of the consumer to tell
    tr_ref_t *ref;                      //  or this reference, if set
    tb_body_t body;
} s_producer_t;

//  Counts tells; an ask is answered with the count so far.
static int
s_consumer_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    uint64_t *count = (uint64_t *) state;
    if (tr_msg_kind (msg) == TR_KIND_TELL) {
        if (tr_msg_size (msg) != TB_BODY_SIZE)
            return -1;
        (*count)++;
        return 0;
    }
    tr_body_t body = tb_pack_uint (*count);
    *count = 0;
    return tr_reply (msg, body.data, body.size);
}

//  Asked with N: tells the consumer N times, asks it once, and answers
//  with the nanoseconds that took.
static int
s_producer_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_producer_t *p = (s_producer_t *) state;
    tr_node_t *node = tr_actor_node (self);
    uint64_t n;
    if (tb_unpack_uint (msg, &n))
        return -1;
    int64_t start = tb_now_ns ();
    for (uint64_t i = 0; i < n; i++) {
        int rc = p->ref? tr_tell_ref (p->ref, p->body.data, p->body.size, NULL):
                         tr_tell (node, p->consumer, p->body.data, p->body.size, NULL);
        if (rc) {
            fprintf (stderr, "bench: tell %" PRIu64 ": %s\n", i, tr_strerror (rc));
            return rc;
        }
    }
    tr_body_t probe = tb_pack_uint (0);
    tr_msg_t *reply;
    int rc = tr_ask (node, p->consumer, probe.data, probe.size, 60000, &reply, NULL);
    if (rc)
        return rc;
    int64_t elapsed = tb_now_ns () - start;
    uint64_t handled = 0;
    rc = tb_unpack_uint (reply, &handled);
    tr_msg_destroy (&reply);
    if (rc || handled != n) {
        fprintf (stderr, "bench: consumer handled %" PRIu64 " of %" PRIu64 "\n", handled, n);
        return -1;
    }
    tr_body_t answer = tb_pack_uint ((uint64_t) elapsed);
    return tr_reply (msg, answer.data, answer.size);
}

//  One timed run through the named producer; returns messages/s.
static double
s_troupe_run (tr_node_t *node, const char *producer, uint64_t n)
{
    uint64_t ns = tb_ask_uint (node, producer, n, 120000);
    return (double) n * 1e9 / (double) ns;
}

//  --------------------------------------------------------------------------
//  Raw libzmq: PUSH/PULL over inproc

typedef struct {
    void *ctx;
    const char *endpoint;
    uint64_t n;
    pthread_barrier_t ready;
    int64_t end_ns;
} s_raw_t;

static void *
s_pull_thread (void *arg)
{
    s_raw_t *r = (s_raw_t *) arg;
    void *pull = zmq_socket (r->ctx, ZMQ_PULL);
    if (!pull || zmq_bind (pull, r->endpoint)) {
        fprintf (stderr, "bench: PULL: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
    pthread_barrier_wait (&r->ready);
    char buf [TB_BODY_SIZE];
    for (uint64_t i = 0; i < r->n; i++)
        if (zmq_recv (pull, buf, sizeof buf, 0) != TB_BODY_SIZE) {
            fprintf (stderr, "bench: PULL recv: %s\n", zmq_strerror (zmq_errno ()));
            exit (1);
        }
    r->end_ns = tb_now_ns ();
    zmq_close (pull);
    return NULL;
}

static double
s_raw_run (uint64_t n, int round)
{
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "inproc://tb-push-pull-%d", round);
    s_raw_t r = { .ctx = zmq_ctx_new (), .endpoint = endpoint, .n = n };
    pthread_barrier_init (&r.ready, NULL, 2);
    pthread_t thread;
    pthread_create (&thread, NULL, s_pull_thread, &r);
    pthread_barrier_wait (&r.ready);        //  PULL is bound
    void *push = zmq_socket (r.ctx, ZMQ_PUSH);
    if (!push || zmq_connect (push, endpoint)) {
        fprintf (stderr, "bench: PUSH: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
    tb_body_t body = tb_body_bin62 ();
    int64_t start = tb_now_ns ();
    for (uint64_t i = 0; i < n; i++)
        if (zmq_send (push, body.data, body.size, 0) != TB_BODY_SIZE) {
            fprintf (stderr, "bench: PUSH send: %s\n", zmq_strerror (zmq_errno ()));
            exit (1);
        }
    pthread_join (thread, NULL);
    zmq_close (push);
    zmq_ctx_term (r.ctx);
    pthread_barrier_destroy (&r.ready);
    return (double) n * 1e9 / (double) (r.end_ns - start);
}

//  --------------------------------------------------------------------------

int
main (int argc, char **argv)
{
    int reps = (int) tb_arg (argc, argv, 1, 5);
    uint64_t n = (uint64_t) tb_arg (argc, argv, 2, 1000000);

    tr_node_t *node;
    tb_check (tr_node_new (NULL, &node), "node");
    static uint64_t counts [3];
    tr_behaviour_t consumer = { .handle = s_consumer_handle };
    tr_behaviour_t producer = { .handle = s_producer_handle };
    tr_spawn_opts_t big = { .capacity = 4 * 1024 * 1024, .on_full = TR_FULL_WAIT };
    tb_check (tr_spawn (node, "consumer", &consumer, &counts [0], NULL, NULL), "spawn");
    tb_check (tr_spawn (node, "consumer-big", &consumer, &counts [1], &big, NULL), "spawn");
    tb_check (tr_spawn (node, "consumer-ref", &consumer, &counts [2], NULL, NULL), "spawn");
    if (n > big.capacity)
        n = big.capacity;

    s_producer_t p_default = { .consumer = "consumer", .body = tb_body_bin62 () };
    s_producer_t p_big = { .consumer = "consumer-big", .body = tb_body_bin62 () };
    s_producer_t p_ref = { .consumer = "consumer-ref", .body = tb_body_bin62 () };
    tb_check (tr_ref_new (node, "consumer-ref", &p_ref.ref), "ref");
    tb_check (tr_spawn (node, "producer", &producer, &p_default, NULL, NULL), "spawn");
    tb_check (tr_spawn (node, "producer-big", &producer, &p_big, NULL, NULL), "spawn");
    tb_check (tr_spawn (node, "producer-ref", &producer, &p_ref, NULL, NULL), "spawn");

    const char *only = argc > 3? argv [3]: NULL;
    const char *series [] = { "troupe_cap1024", "troupe_cap4M", "troupe_ref", "zmq_push_pull" };
    const char *producers [] = { "producer", "producer-big", "producer-ref", NULL };
    uint64_t ops [4] = { 0 };
    for (int round = 0; round <= reps; round++) {
        uint64_t count = round? n: n / 10;  //  round 0 warms up
        fprintf (stderr, "tell_throughput %d:", round);
        for (int s = 0; s < 4; s++) {
            if (only && strcmp (only, series [s]))
                continue;
            double rate = producers [s]? s_troupe_run (node, producers [s], count):
                                         s_raw_run (count, round);
            ops [s] += count;
            if (round)
                tb_sample (S_BENCH, series [s], rate);
            fprintf (stderr, " %s %.0f", series [s], rate);
        }
        fprintf (stderr, " msg/s\n");
    }
    for (int s = 0; s < 4; s++)
        if (ops [s])
            printf ("OPS %s %s %" PRIu64 "\n", S_BENCH, series [s], ops [s]);
    tr_ref_destroy (&p_ref.ref);
    tr_node_destroy (&node);
    return 0;
}
