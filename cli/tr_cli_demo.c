/*  tr_cli_demo.c - `troupe demo`: actors talking on one node.

    Two small scenes that show the core at work:
    - ping-pong: actor 'ping' asks actor 'pong' N times and times it;
    - fan-out/fan-in: actor 'gather' tells a group of W workers a job,
      each worker sums its share of 0..UPTO-1 and tells 'gather' its part,
      'gather' answers the main thread once every part is in. The answer
      is checked against the closed form.
    Bodies are msgpack integers (tr_body.h).
*/

#include "tr_cli.h"

#include <troupe.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  --------------------------------------------------------------------------
//  Bodies are msgpack integers (tr_body.h packs and reads them).

static tr_body_t
s_pack (uint64_t value)
{
    tr_body_t body;
    tr_body_uint (&body, value);
    return body;
}

static int
s_unpack (const tr_msg_t *msg, uint64_t *value)
{
    return tr_msg_uint (msg, value) == TR_OK? 0: -1;
}

static double
s_ms_since (const struct timespec *start)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (double) (now.tv_sec - start->tv_sec) * 1e3
         + (double) (now.tv_nsec - start->tv_nsec) / 1e6;
}

//  --------------------------------------------------------------------------
//  Ping-pong

static int
s_pong_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg));
}

//  Asked with N, asks 'pong' N times, answers with the microseconds taken.
static int
s_ping_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    uint64_t rounds;
    if (s_unpack (msg, &rounds))
        return -1;
    struct timespec start;
    clock_gettime (CLOCK_MONOTONIC, &start);
    for (uint64_t i = 0; i < rounds; i++) {
        tr_body_t body = s_pack (i);
        tr_msg_t *reply;
        uint64_t echo;
        int rc = tr_ask (tr_actor_node (self), "pong", body.data, body.size,
                         1000, &reply, NULL);
        if (rc)
            return rc;
        rc = s_unpack (reply, &echo);
        tr_msg_destroy (&reply);
        if (rc || echo != i)
            return -1;
    }
    tr_body_t micros = s_pack ((uint64_t) (s_ms_since (&start) * 1000));
    return tr_reply (msg, micros.data, micros.size);
}

//  --------------------------------------------------------------------------
//  Fan-out/fan-in

typedef struct {
    uint64_t index, workers;
} s_worker_t;

//  Told UPTO, sums the numbers below it that fall to this worker and
//  tells 'gather' the part.
static int
s_worker_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_worker_t *w = (s_worker_t *) state;
    uint64_t upto, sum = 0;
    if (s_unpack (msg, &upto))
        return -1;
    for (uint64_t k = w->index; k < upto; k += w->workers)
        sum += k;
    tr_body_t part = s_pack (sum);
    return tr_tell (tr_actor_node (self), "gather", part.data, part.size, NULL);
}

typedef struct {
    uint64_t workers, parts, total;
    tr_msg_t *job;                      //  the deferred ask being served
} s_gather_t;

static int
s_gather_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_gather_t *g = (s_gather_t *) state;
    uint64_t value;
    if (s_unpack (msg, &value))
        return -1;
    if (tr_msg_kind (msg) == TR_KIND_ASK) {
        //  A job: fan it out, keep the ask to answer when all parts are in.
        if (g->job)
            return tr_reply_error (msg, TR_EFULL);
        g->parts = g->total = 0;
        g->job = tr_defer (msg);
        return tr_tell_group (tr_actor_node (self), "workers", tr_msg_body (msg),
                              tr_msg_size (msg), NULL, NULL);
    }
    g->total += value;
    if (++g->parts == g->workers && g->job) {
        tr_body_t total = s_pack (g->total);
        tr_reply (g->job, total.data, total.size);
        tr_msg_destroy (&g->job);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  The command

typedef struct {
    long workers, rounds, upto;
} s_options_t;

static int
s_parse (int argc, char **argv, s_options_t *o)
{
    o->workers = 100;
    o->rounds = 10000;
    o->upto = 10000000;
    for (int i = 1; i < argc; i++) {
        long *target = !strcmp (argv [i], "--workers")? &o->workers:
                       !strcmp (argv [i], "--rounds")? &o->rounds:
                       !strcmp (argv [i], "--upto")? &o->upto: NULL;
        if (!target) {
            fprintf (stderr, "troupe demo: unknown option '%s'\n", argv [i]);
            return -1;
        }
        if (tr_cli_parse_count (argv [i], i + 1 < argc? argv [i + 1]: NULL,
                                target == &o->workers? 10000: 1000000000, target))
            return -1;
        i++;
    }
    return 0;
}

static int
s_fail (const char *what, int rc)
{
    fprintf (stderr, "troupe demo: %s: %s (%s)\n", what, tr_strerror (rc), tr_errname (rc));
    return TR_CLI_FAILED;
}

static int
s_ping_pong (tr_node_t *node, long rounds)
{
    tr_behaviour_t pong = { .handle = s_pong_handle };
    tr_behaviour_t ping = { .handle = s_ping_handle };
    int rc = tr_spawn (node, "pong", &pong, NULL, NULL, NULL);
    if (!rc)
        rc = tr_spawn (node, "ping", &ping, NULL, NULL, NULL);
    if (rc)
        return s_fail ("spawning ping and pong", rc);
    tr_body_t job = s_pack ((uint64_t) rounds);
    tr_msg_t *reply;
    uint64_t micros;
    rc = tr_ask (node, "ping", job.data, job.size, 60000, &reply, NULL);
    if (rc)
        return s_fail ("ping-pong", rc);
    rc = s_unpack (reply, &micros);
    tr_msg_destroy (&reply);
    if (rc)
        return s_fail ("ping-pong answer", TR_EMALFORMED);
    double ms = (double) micros / 1000.0;
    printf ("ping-pong       'ping' asked 'pong' %ld times: %ld answers in %.1f ms "
            "(%.0f round trips/s)\n", rounds, rounds, ms, ms > 0? rounds / ms * 1000: 0);
    return TR_CLI_OK;
}

static int
s_fan_out_in (tr_node_t *node, const s_options_t *o, s_worker_t *workers, s_gather_t *gather)
{
    tr_behaviour_t worker = { .handle = s_worker_handle };
    tr_behaviour_t gatherer = { .handle = s_gather_handle };
    int rc = tr_spawn (node, "gather", &gatherer, gather, NULL, NULL);
    for (long i = 0; i < o->workers && !rc; i++) {
        char name [32];
        snprintf (name, sizeof name, "worker-%ld", i);
        workers [i] = (s_worker_t) { (uint64_t) i, (uint64_t) o->workers };
        rc = tr_spawn (node, name, &worker, &workers [i], NULL, NULL);
        if (!rc)
            rc = tr_group_join (node, "workers", name);
    }
    if (rc)
        return s_fail ("spawning the workers", rc);
    struct timespec start;
    clock_gettime (CLOCK_MONOTONIC, &start);
    tr_body_t job = s_pack ((uint64_t) o->upto);
    tr_msg_t *reply;
    uint64_t total;
    rc = tr_ask (node, "gather", job.data, job.size, 60000, &reply, NULL);
    if (rc)
        return s_fail ("fan-out/fan-in", rc);
    double ms = s_ms_since (&start);
    rc = s_unpack (reply, &total);
    tr_msg_destroy (&reply);
    uint64_t n = (uint64_t) o->upto, expected = n * (n - 1) / 2;
    printf ("fan-out/fan-in  'gather' told %ld workers (group 'workers') to sum their share of 0..%ld;\n"
            "                %ld parts gathered in %.1f ms: total %" PRIu64 ", expected %" PRIu64 ": %s\n",
            o->workers, o->upto - 1, o->workers, ms, total, expected,
            !rc && total == expected? "correct": "WRONG");
    return !rc && total == expected? TR_CLI_OK: TR_CLI_FAILED;
}

static int
s_report (tr_node_t *node)
{
    tr_node_stats_t st;
    tr_actor_stats_t g;
    //  The answer can reach us before 'gather' has returned from the
    //  handler that sent it; let that message finish being counted.
    for (int i = 0; i < 1000; i++) {
        tr_actor_stats (node, "gather", &g);
        if (g.received == g.handled + g.failed + g.dead_letters + g.depth)
            break;
        nanosleep (&(struct timespec) { 0, 1000000 }, NULL);
    }
    tr_node_stats (node, &st);
    printf ("node            %" PRIu64 " actors; %" PRIu64 " messages accepted, %" PRIu64
            " dead letters, %" PRIu64 " refused\n",
            st.actors, st.sent, st.dead_letters, st.rejected);
    printf ("actor 'gather'  received %" PRIu64 ", handled %" PRIu64 ", failed %" PRIu64
            ", mailbox depth %" PRIu64 "/%" PRIu64 ", %.1f us handling on average\n",
            g.received, g.handled, g.failed, g.depth, g.capacity,
            g.handled? (double) g.handle_ns_total / (double) g.handled / 1000: 0);
    return st.dead_letters || st.rejected? TR_CLI_FAILED: TR_CLI_OK;
}

static int
s_run (int argc, char **argv)
{
    s_options_t o;
    if (s_parse (argc, argv, &o))
        return TR_CLI_USAGE;
    tr_node_t *node;
    int rc = tr_node_new (NULL, &node);
    if (rc)
        return s_fail ("creating the node", rc);
    printf ("troupe demo: actors talking on one node (libtroupe %s)\n\n", tr_version ());
    s_worker_t *workers = (s_worker_t *) calloc ((size_t) o.workers, sizeof *workers);
    s_gather_t gather = { .workers = (uint64_t) o.workers };
    int status = workers? s_ping_pong (node, o.rounds): s_fail ("demo", TR_ENOMEM);
    if (status == TR_CLI_OK)
        status = s_fan_out_in (node, &o, workers, &gather);
    if (status == TR_CLI_OK)
        status = s_report (node);
    tr_node_destroy (&node);
    free (workers);
    printf ("\nall actors stopped; demo %s\n", status == TR_CLI_OK? "passed": "FAILED");
    return status;
}

const tr_cli_command_t tr_cli_demo = {
    "demo", "run a small demo of actors talking (ping-pong, fan-out/fan-in)",
    "usage: troupe demo [--rounds N] [--workers W] [--upto U]\n\n"
    "Starts a node and shows two scenes:\n"
    "  ping-pong       actor 'ping' asks actor 'pong' N times (default 10000)\n"
    "  fan-out/fan-in  actor 'gather' tells W workers (default 100) to each sum\n"
    "                  their share of 0..U-1 (default U = 10000000), gathers the\n"
    "                  parts and answers; the total is checked\n"
    "Then prints the node's counters. Exits 1 if anything was lost or wrong.\n",
    s_run
};
