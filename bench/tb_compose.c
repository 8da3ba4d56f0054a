/*  tb_compose.c - compose_overhead: what a chain and a graph cost per task,
    against calling the same C function directly.

    usage: tb_compose REPS [SERIES]

    One C function does each task's work: s_work hashes the bytes it is
    given (FNV-1a) and packs the hash as a msgpack integer. Series, each a
    figure in microseconds per task (the median over REPS measurements):

      direct_N        s_work called N times in a row, each call given the
                      previous call's output (the reference)
      chain_N         a chain (actors/tr_chain.c) of N steps, every step
                      the same worker actor, whose handler answers
                      s_work (body); asked from the main thread with
                      tr_ask; the time of one run divided by N
      graph_N         a graph (actors/tr_graph.c) of N tasks in a line
                      (task i depends on task i - 1), the same worker:
                      the same work in the same order as the chain
      graph_wide_N    a graph of N tasks that depend on nothing (all
                      asked at once, up to the graph's default limit of
                      256 in flight), the same worker
      graph_quiet_N   graph_N with progress: false (no graph.task.*
                      events): what the progress events cost

    for N = 1, 100 and 10,000 (graph_wide and graph_quiet: 100 and
    10,000). Each measurement times as many runs as make about 20,000
    tasks (2 runs of 10,000 tasks, 200 of 100, 20,000 of 1), after one
    run to warm up. The node has no broker: events go to the node's own
    bus (no subscriber). A NOTE line per series gives the overhead per
    task (the series' median less direct_N's) and the time of one run.

    With SERIES, that series alone runs (its actor alone is started), and
    an "OPS compose_overhead SERIES TASKS" line gives the tasks it ran,
    for bench/run's perf counters.
*/

#include "tb_util.h"

#include <stdbool.h>

#define S_BENCH "compose_overhead"
#define S_TASKS_PER_SAMPLE 20000

//  The work of one task: a hash of the input's bytes, packed as a msgpack
//  uint64 (9 bytes) into out. Returns the packed size.
static size_t
s_work (const void *data, size_t size, uint8_t out [9])
{
    const uint8_t *p = (const uint8_t *) data;
    uint64_t h = UINT64_C (14695981039346656037);
    for (size_t i = 0; i < size; i++) {
        h ^= p [i];
        h *= UINT64_C (1099511628211);
    }
    out [0] = 0xcf;
    for (int i = 0; i < 8; i++)
        out [1 + i] = (uint8_t) (h >> (56 - 8 * i));
    return 9;
}

static int
s_worker_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    uint8_t out [9];
    size_t size = s_work (tr_msg_body (msg), tr_msg_size (msg), out);
    return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply (msg, out, size): 0;
}

//  --------------------------------------------------------------------------
//  Parameters

static void
s_pack_cstr (msgpack_packer *pk, const char *text)
{
    msgpack_pack_str_with_body (pk, text, strlen (text));
}

//  {steps: [w, w, ...]}: n steps.
static void
s_chain_params (msgpack_sbuffer *buffer, long n)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    s_pack_cstr (&pk, "steps");
    msgpack_pack_array (&pk, (uint32_t) n);
    for (long i = 0; i < n; i++)
        s_pack_cstr (&pk, "w");
    s_pack_cstr (&pk, "timeout");
    s_pack_cstr (&pk, "60s");
}

//  {tasks: [{name: tI, actor: w, depends_on: [tI-1]}...]}, in a line or
//  all independent (wide); progress as given.
static void
s_graph_params (msgpack_sbuffer *buffer, long n, bool wide, bool progress)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    s_pack_cstr (&pk, "timeout");
    s_pack_cstr (&pk, "60s");
    s_pack_cstr (&pk, "progress");
    if (progress)
        msgpack_pack_true (&pk);
    else
        msgpack_pack_false (&pk);
    s_pack_cstr (&pk, "tasks");
    msgpack_pack_array (&pk, (uint32_t) n);
    for (long i = 0; i < n; i++) {
        char name [24], dep [24];
        snprintf (name, sizeof name, "t%ld", i);
        snprintf (dep, sizeof dep, "t%ld", i - 1);
        bool first = wide || i == 0;
        msgpack_pack_map (&pk, first? 2: 3);
        s_pack_cstr (&pk, "name");
        s_pack_cstr (&pk, name);
        s_pack_cstr (&pk, "actor");
        s_pack_cstr (&pk, "w");
        if (!first) {
            s_pack_cstr (&pk, "depends_on");
            msgpack_pack_array (&pk, 1);
            s_pack_cstr (&pk, dep);
        }
    }
}

//  --------------------------------------------------------------------------
//  Measurements

static volatile uint64_t s_sink;

//  Microseconds per call of s_work, n calls in a row, runs times.
static double
s_direct (long n, long runs)
{
    int64_t start = tb_now_ns ();
    for (long r = 0; r < runs; r++) {
        uint8_t in [9] = { 0xa2, 'g', 'o' }, out [9];
        size_t size = 3;
        for (long i = 0; i < n; i++) {
            size = s_work (in, size, out);
            memcpy (in, out, size);
        }
        s_sink += in [8];
    }
    return (double) (tb_now_ns () - start) / 1000.0 / (double) (n * runs);
}

//  Microseconds per task of `runs` asks to `actor`, n tasks each.
static double
s_asks (tr_node_t *node, const char *actor, long n, long runs)
{
    static const uint8_t body [] = { 0xa2, 'g', 'o' };
    int64_t start = tb_now_ns ();
    for (long r = 0; r < runs; r++) {
        tr_msg_t *reply = NULL;
        tb_check (tr_ask (node, actor, body, sizeof body, 120000, &reply, NULL), actor);
        s_sink += tr_msg_size (reply);
        tr_msg_destroy (&reply);
    }
    return (double) (tb_now_ns () - start) / 1000.0 / (double) (n * runs);
}

//  Spawns an actor of type `type` named `name` with params (which must
//  outlive the actor).
static void
s_spawn_type (tr_node_t *node, const char *type_name, const char *name, tr_params_t *params)
{
    const tr_actor_type_t *type = tr_actor_type_find (type_name);
    if (!type) {
        fprintf (stderr, "bench: no actor type '%s'\n", type_name);
        exit (1);
    }
    tb_check (tr_spawn (node, name, &type->behaviour, params, NULL, NULL), name);
}

typedef struct {
    const char *kind;                   //  chain, graph, graph_wide, graph_quiet
    long n;
} s_series_t;

static const s_series_t s_series [] = {
    { "chain", 1 }, { "chain", 100 }, { "chain", 10000 },
    { "graph", 1 }, { "graph", 100 }, { "graph", 10000 },
    { "graph_wide", 100 }, { "graph_wide", 10000 },
    { "graph_quiet", 100 }, { "graph_quiet", 10000 },
};
#define S_SERIES (sizeof s_series / sizeof s_series [0])

int
main (int argc, char **argv)
{
    long reps = tb_arg (argc, argv, 1, 5);
    const char *only = argc > 2? argv [2]: NULL;
    tr_log_set_level (TR_LOG_ERROR);
    tr_node_t *node;
    tb_check (tr_node_new (NULL, &node), "node");
    tr_behaviour_t worker = { .handle = s_worker_handle };
    tb_check (tr_spawn (node, "w", &worker, NULL, NULL, NULL), "worker");

    //  The actors: one per series (with SERIES, that one only), spawned
    //  before any measurement.
    msgpack_sbuffer params [S_SERIES];
    tr_params_t packed [S_SERIES];
    char names [S_SERIES][32];
    double start_ms [S_SERIES];
    for (size_t s = 0; s < S_SERIES; s++) {
        const s_series_t *series = &s_series [s];
        snprintf (names [s], sizeof names [s], "%s_%ld", series->kind, series->n);
        msgpack_sbuffer_init (&params [s]);
        if (only && strcmp (only, names [s]) != 0)
            continue;
        if (strcmp (series->kind, "chain") == 0)
            s_chain_params (&params [s], series->n);
        else
            s_graph_params (&params [s], series->n, strcmp (series->kind, "graph_wide") == 0,
                            strcmp (series->kind, "graph_quiet") != 0);
        packed [s] = (tr_params_t) { (const uint8_t *) params [s].data, params [s].size };
        int64_t t0 = tb_now_ns ();
        s_spawn_type (node, strcmp (series->kind, "chain") == 0? "chain": "graph", names [s],
                      &packed [s]);
        start_ms [s] = (double) (tb_now_ns () - t0) / 1e6;
        fprintf (stderr, "%s: %s started in %.1f ms (params %zu bytes)\n", S_BENCH, names [s],
                 start_ms [s], params [s].size);
    }

    static const long sizes [] = { 1, 100, 10000 };
    double direct_median [3] = { 0, 0, 0 };
    for (int k = 0; k < 3; k++) {
        char name [32];
        snprintf (name, sizeof name, "direct_%ld", sizes [k]);
        if (only && strcmp (only, name) != 0)
            continue;
        long runs = S_TASKS_PER_SAMPLE / sizes [k];
        double samples [64];
        s_direct (sizes [k], runs);
        for (long r = 0; r < reps && r < 64; r++) {
            samples [r] = s_direct (sizes [k], runs * 50);
            if (!only || strcmp (only, name) == 0)
                tb_sample (S_BENCH, name, samples [r]);
        }
        if (only && strcmp (only, name) == 0)
            printf ("OPS %s %s %ld\n", S_BENCH, name, runs * (1 + 50 * reps) * sizes [k]);
        //  The median, for the NOTE lines below.
        for (long i = 1; i < reps && i < 64; i++)
            for (long j = i; j > 0 && samples [j - 1] > samples [j]; j--) {
                double t = samples [j]; samples [j] = samples [j - 1]; samples [j - 1] = t;
            }
        direct_median [k] = samples [(reps < 64? reps: 64) / 2];
    }
    for (size_t s = 0; s < S_SERIES; s++) {
        if (only && strcmp (only, names [s]) != 0)
            continue;
        long n = s_series [s].n;
        long runs = S_TASKS_PER_SAMPLE / n;
        s_asks (node, names [s], n, 1);        //  warm-up
        double samples [64];
        for (long r = 0; r < reps && r < 64; r++) {
            samples [r] = s_asks (node, names [s], n, runs);
            tb_sample (S_BENCH, names [s], samples [r]);
        }
        for (long i = 1; i < reps && i < 64; i++)
            for (long j = i; j > 0 && samples [j - 1] > samples [j]; j--) {
                double t = samples [j]; samples [j] = samples [j - 1]; samples [j - 1] = t;
            }
        double median = samples [(reps < 64? reps: 64) / 2];
        int k = n == 1? 0: n == 100? 1: 2;
        printf ("NOTE %s %s: %.2f us of overhead per task (%.2f us less direct_%ld's %.4f us); "
                "one run of %ld tasks takes %.2f ms; the actor started (its params read) in "
                "%.1f ms\n", S_BENCH, names [s], median - direct_median [k], median, n,
                direct_median [k], n, median * (double) n / 1000.0, start_ms [s]);
        if (only)
            printf ("OPS %s %s %ld\n", S_BENCH, names [s], n * (1 + runs * reps));
    }
    tr_node_destroy (&node);
    for (size_t s = 0; s < S_SERIES; s++)
        msgpack_sbuffer_destroy (&params [s]);
    return 0;
}
