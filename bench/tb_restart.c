/*  tb_restart.c - restart_latency: from a child's failure to the
    restarted child answering an ask.

    usage: tb_restart [REPS [RESTARTS [SERIES]]]

    A root supervisor (one_for_one) has one actor child, 'w', of the type
    "bw" registered here: told or asked 0 ("fail"), its handler takes the
    time t0 (monotonic clock, stored in a global) and returns -1, which
    ends the incarnation; asked 1 ("ping"), it answers with its
    incarnation's number (a global count of inits). The child restarts
    at once: backoff 0 ms, no jitter, no circuit breaker. A client actor
    makes the child fail, then asks it until an incarnation newer than
    the one that failed answers; t1 is taken when that answer arrives,
    and t1 - t0 is one restart's latency. The tree is, in YAML:

        name: root
        intensity: {max_restarts: 1000, period: 1s}
        children:
          - {name: w, actor: bw, breaker: off, backoff: {min: 0ms, max: 0ms, jitter: 0}}

    Restarts go in batches of S_BATCH, each under a fresh supervisor
    (started and stopped outside the clock). Both this supervisor and
    tb_restart.escript's walk the restarts they recorded within the
    period on every restart, so a long-lived one would slow down with
    every restart; the batches keep that walk short, and the same on
    both sides.

    Series (the client's style), in microseconds:
      troupe_ask     the client asks "fail" (the answer is TR_EHANDLER),
                     then asks "ping" until the new incarnation answers;
                     as tb_restart.escript's erlang_call does
      troupe_tell    the client tells "fail", then asks "ping" at once:
                     the mailbox outlives the incarnation, so the ask
                     waits for the new one
      troupe_logged  troupe_ask with the log at warn (the default), which
                     prints one line per failure to standard error

    The log is at error level for the first two (tr_log_set_level,
    whatever TROUPE_LOG says): no line per restart.

    Each repetition runs RESTARTS (default 4000) restarts of each series,
    series taking turns; it prints the median and the 99th percentile
    (nearest rank) of those restarts as samples <series>_p50 and
    <series>_p99. A first, shorter round of each is a warm-up and is not
    counted. With SERIES, only that series runs. At the end, a line
    "OPS restart_latency <series> <n>" gives the restarts done, warm-up
    included, and a line "NOTE restart_latency <text>" gives, for each
    series, the median and 99th percentile of all its counted restarts
    pooled and the median of each phase of a restart: failure -> init
    of the new incarnation -> the handling of the ask it answers -> the
    client's t1 (from stamps that 'w' takes in init and in its handler).
*/

#include "tb_util.h"

#include <stdatomic.h>
#include <stdbool.h>

#define S_BATCH         100             //  restarts per supervisor
#define S_FAIL          0
#define S_PING          1
#define S_TIMEOUT_MS    10000

static const char s_tree_text [] =
    "name: root\n"
    "intensity: {max_restarts: 1000, period: 1s}\n"
    "children:\n"
    "  - {name: w, actor: bw, breaker: off, backoff: {min: 0ms, max: 0ms, jitter: 0}}\n";

//  --------------------------------------------------------------------------
//  The child: actor type "bw"

static atomic_uint_fast64_t s_incarnations;     //  inits so far
static atomic_int_fast64_t s_fail_ns;           //  t0 of the last failure
static atomic_int_fast64_t s_init_ns;           //  when the last init ran
static atomic_int_fast64_t s_ping_ns;           //  when the last ping was handled

static int
s_bw_init (tr_actor_t *self, void *arg, void **state_p)
{
    atomic_store_explicit (&s_init_ns, tb_now_ns (), memory_order_relaxed);
    *state_p = (void *) (uintptr_t) (atomic_fetch_add (&s_incarnations, 1) + 1);
    return 0;
}

static int
s_bw_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    uint64_t op;
    if (tb_unpack_uint (msg, &op))
        return 0;
    if (op == S_FAIL) {
        atomic_store_explicit (&s_fail_ns, tb_now_ns (), memory_order_relaxed);
        return -1;
    }
    atomic_store_explicit (&s_ping_ns, tb_now_ns (), memory_order_relaxed);
    tr_body_t answer = tb_pack_uint ((uint64_t) (uintptr_t) state);
    return tr_reply (msg, answer.data, answer.size);
}

static const tr_actor_type_t s_bw_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "bw",
    .summary = "benchmark worker: fails on 0, answers its incarnation on 1",
    .behaviour = { .init = s_bw_init, .handle = s_bw_handle }
};

//  --------------------------------------------------------------------------
//  The client actor

enum { S_ASK, S_TELL, S_LOGGED, S_STYLES };
//  Phases of one restart, from the stamps taken by 'w' and the client:
//  failure to the new init, init to the handling of the ask that the
//  new incarnation answers, that handling to the client's t1.
enum { S_TO_INIT, S_TO_HANDLE, S_TO_CLIENT, S_PHASES };
static const char *s_phase_names [S_PHASES] = {
    "failure -> new init", "init -> ask handled", "ask handled -> client"
};
static const char *s_style_names [S_STYLES] = { "troupe_ask", "troupe_tell", "troupe_logged" };

//  What the client is to do next; set by main before it asks the client,
//  read by the client's handler.
typedef struct {
    int style;
    size_t count;                       //  restarts in this batch
    int64_t *latency;                   //  their latencies, ns
    int64_t (*phase) [S_PHASES];        //  and how they divide, ns
} s_job_t;

//  Asks 'w' for op; returns the incarnation that answered, 0 if it
//  answered with TR_EHANDLER. Exits on anything else.
static uint64_t
s_ask_w (tr_node_t *node, uint64_t op)
{
    tr_body_t body = tb_pack_uint (op);
    tr_msg_t *reply;
    int rc = tr_ask (node, "w", body.data, body.size, S_TIMEOUT_MS, &reply, NULL);
    if (rc == TR_EHANDLER && op == S_FAIL)
        return 0;
    uint64_t incarnation;
    if (rc || op == S_FAIL || tb_unpack_uint (reply, &incarnation)) {
        fprintf (stderr, "bench: ask 'w' %" PRIu64 ": %s\n", op, tr_strerror (rc));
        exit (1);
    }
    tr_msg_destroy (&reply);
    return incarnation;
}

//  One restart: makes 'w' fail, then asks until an incarnation after
//  `last` answers. Returns that incarnation; *latency gets t1 - t0 and
//  phase its parts.
static uint64_t
s_restart_once (tr_node_t *node, int style, uint64_t last, int64_t *latency,
                int64_t phase [S_PHASES])
{
    if (style == S_TELL) {
        tr_body_t body = tb_pack_uint (S_FAIL);
        tb_check (tr_tell (node, "w", body.data, body.size, NULL), "tell 'w'");
    }
    else
    if (s_ask_w (node, S_FAIL) != 0) {
        fprintf (stderr, "bench: 'w' answered 'fail' without failing\n");
        exit (1);
    }
    uint64_t now;
    while ((now = s_ask_w (node, S_PING)) <= last)
        ;
    int64_t t1 = tb_now_ns ();
    int64_t t0 = atomic_load_explicit (&s_fail_ns, memory_order_relaxed);
    int64_t init = atomic_load_explicit (&s_init_ns, memory_order_relaxed);
    int64_t ping = atomic_load_explicit (&s_ping_ns, memory_order_relaxed);
    *latency = t1 - t0;
    phase [S_TO_INIT] = init - t0;
    phase [S_TO_HANDLE] = ping - init;
    phase [S_TO_CLIENT] = t1 - ping;
    return now;
}

//  Asked anything: runs the job's batch of restarts, then answers.
static int
s_client_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_job_t *job = (s_job_t *) state;
    tr_node_t *node = tr_actor_node (self);
    uint64_t last = s_ask_w (node, S_PING);
    for (size_t i = 0; i < job->count; i++)
        last = s_restart_once (node, job->style, last, &job->latency [i], job->phase [i]);
    return tr_reply (msg, NULL, 0);
}

//  --------------------------------------------------------------------------
//  Batches, percentiles, series

static int
s_cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

//  Nearest-rank percentile of sorted values, in microseconds.
static double
s_percentile_us (const int64_t *sorted, size_t n, double q)
{
    size_t rank = (size_t) (q * (double) n + 0.999999);
    return (double) sorted [rank? rank - 1: 0] / 1000.0;
}

//  Runs `count` restarts of one style, S_BATCH per fresh supervisor;
//  their latencies go to latency [0..count), their phases to phase.
static void
s_run (tr_node_t *node, const tr_tree_t *tree, s_job_t *job, int style,
       size_t count, int64_t *latency, int64_t (*phase) [S_PHASES])
{
    tr_log_set_level (style == S_LOGGED? TR_LOG_WARN: TR_LOG_ERROR);
    for (size_t done = 0; done < count; done += job->count) {
        tr_sup_t *sup;
        char *reason = NULL;
        int rc = tr_sup_start (node, tree->name, &tree->root, &sup, &reason);
        if (rc) {
            fprintf (stderr, "bench: tree: %s (%s)\n", tr_strerror (rc), reason? reason: "");
            exit (1);
        }
        job->style = style;
        job->count = count - done < S_BATCH? count - done: S_BATCH;
        job->latency = latency + done;
        job->phase = phase + done;
        tr_msg_t *reply;
        tb_check (tr_ask (node, "client", NULL, 0, 600000, &reply, NULL), "client");
        tr_msg_destroy (&reply);
        tb_check (tr_sup_stop (&sup), "stop the tree");
    }
    tr_log_set_level (TR_LOG_ERROR);
}

//  What one series collected over all counted rounds.
typedef struct {
    int64_t *latency;
    int64_t (*phase) [S_PHASES];
    size_t count;
    uint64_t ops;                       //  restarts, warm-up included
} s_pool_t;

//  Prints, as a NOTE line for bench/run, the percentiles of a series
//  over all its counted restarts and the median of each phase; then its
//  OPS line.
static void
s_report (int style, s_pool_t *pool)
{
    size_t n = pool->count;
    qsort (pool->latency, n, sizeof *pool->latency, s_cmp_i64);
    printf ("NOTE restart_latency %s, all %zu restarts pooled: median %.1f us, "
            "p99 %.1f us, max %.1f us; median of each phase:", s_style_names [style], n,
            s_percentile_us (pool->latency, n, 0.50), s_percentile_us (pool->latency, n, 0.99),
            (double) pool->latency [n - 1] / 1000.0);
    int64_t *column = (int64_t *) calloc (n, sizeof *column);
    for (int p = 0; p < S_PHASES && column; p++) {
        for (size_t i = 0; i < n; i++)
            column [i] = pool->phase [i][p];
        qsort (column, n, sizeof *column, s_cmp_i64);
        printf ("%s %s %.1f us", p? ",": "", s_phase_names [p],
                s_percentile_us (column, n, 0.50));
    }
    printf ("\n");
    free (column);
    printf ("OPS restart_latency %s %" PRIu64 "\n", s_style_names [style], pool->ops);
}

int
main (int argc, char **argv)
{
    int reps = (int) tb_arg (argc, argv, 1, 5);
    size_t restarts = (size_t) tb_arg (argc, argv, 2, 4000);
    const char *only = argc > 3? argv [3]: NULL;
    tr_log_set_level (TR_LOG_ERROR);
    tb_check (tr_actor_type_register (&s_bw_type), "register bw");
    tr_tree_t *tree;
    tr_tree_error_t err;
    if (tr_tree_parse (s_tree_text, strlen (s_tree_text), "tb_restart.yaml", &tree, &err)) {
        char text [600];
        fprintf (stderr, "bench: %s\n", tr_tree_error_format (&err, text, sizeof text));
        return 1;
    }
    tr_node_t *node;
    tb_check (tr_node_new (NULL, &node), "node");
    s_job_t job = { 0 };
    tr_behaviour_t client = { .handle = s_client_handle };
    tb_check (tr_spawn (node, "client", &client, &job, NULL, NULL), "spawn client");

    size_t total = restarts * (size_t) reps;
    size_t warmup = restarts / 5? restarts / 5: 1;
    s_pool_t pool [S_STYLES] = { { 0 } };
    for (int s = 0; s < S_STYLES; s++) {
        pool [s].latency = (int64_t *) calloc (total, sizeof *pool [s].latency);
        pool [s].phase = calloc (total, sizeof *pool [s].phase);
        if (!pool [s].latency || !pool [s].phase)
            tb_check (TR_ENOMEM, "samples");
    }
    int64_t *round = (int64_t *) calloc (restarts, sizeof *round);
    if (!round)
        tb_check (TR_ENOMEM, "samples");
    for (int r = 0; r <= reps; r++) {
        fprintf (stderr, "restart_latency %d:", r);
        for (int s = 0; s < S_STYLES; s++) {
            if (only && strcmp (only, s_style_names [s]))
                continue;
            s_pool_t *p = &pool [s];
            size_t n = r? restarts: warmup;
            //  The warm-up writes where the first round will.
            s_run (node, tree, &job, s, n, p->latency + p->count, p->phase + p->count);
            p->ops += n;
            if (!r) {
                fprintf (stderr, " %s (warm-up)", s_style_names [s]);
                continue;
            }
            memcpy (round, p->latency + p->count, n * sizeof *round);
            p->count += n;
            qsort (round, n, sizeof *round, s_cmp_i64);
            double p50 = s_percentile_us (round, n, 0.50);
            double p99 = s_percentile_us (round, n, 0.99);
            char series [64];
            snprintf (series, sizeof series, "%s_p50", s_style_names [s]);
            tb_sample ("restart_latency", series, p50);
            snprintf (series, sizeof series, "%s_p99", s_style_names [s]);
            tb_sample ("restart_latency", series, p99);
            fprintf (stderr, " %s %.1f/%.1f", s_style_names [s], p50, p99);
        }
        fprintf (stderr, " us (p50/p99)\n");
    }
    for (int s = 0; s < S_STYLES; s++) {
        if (pool [s].count)
            s_report (s, &pool [s]);
        free (pool [s].latency);
        free (pool [s].phase);
    }
    free (round);
    tr_node_destroy (&node);
    tr_tree_destroy (&tree);
    return 0;
}
