/*  tr_load_test.c - many node processes, thousands of actors, one broker:
    mixed tells and asks between processes, with every message accounted
    for.

    A real `troupe broker` ($TROUPE_BIN) and TROUPE_LOAD_NODES node
    processes (this program run again with "node"), each holding
    TROUPE_LOAD_ACTORS actors named "a.NODE.K" that count the tells they
    get and echo asks. Once every node reaches an actor on every other
    one, each node's TROUPE_LOAD_SENDERS threads send their share of
    TROUPE_LOAD_MESSAGES messages to actors picked at random on other
    nodes: one in four an ask (timeout 10 s), the rest tells. Defaults
    (for `make test`): 4 nodes x 250 actors, 100,000 messages; `make
    reliability` runs 16 x 1,000 and 1,000,000. Sanitizer builds send a
    quarter as many by default.

    What must hold, summed over the nodes:
      tells:  received by actors + refused at once + dead letters at the
              sender (bounced by the broker) = sent
      asks:   answered + failed with an error = sent, and no ask returned
              later than its deadline (plus 1 s of scheduling slack)
    Printed on a line starting "LOAD": completion time, messages per
    second, ask latency percentiles (p50, p99, max), the broker's peak
    resident memory, and the accounting.
*/

#include "tr_test.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/wait.h>

extern char **environ;

#define S_ASK_TIMEOUT_MS    10000
#define S_MAX_NODES         64

static int
s_env (const char *name, int fallback)
{
    const char *text = getenv (name);
    int value = text? atoi (text): 0;
    return value > 0? value: fallback;
}

//  --------------------------------------------------------------------------
//  A node process

static atomic_uint_fast64_t s_received;     //  tells counted by this node's actors

static int
s_actor_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg)) == TR_OK? 0: -1;
    atomic_fetch_add_explicit (&s_received, 1, memory_order_relaxed);
    return 0;
}

typedef struct {
    tr_node_t *node;
    int index, nodes, actors;
    uint64_t messages;
    uint64_t seed;
    uint64_t tells, tells_refused, asks, asks_ok, asks_failed, late;
    int64_t *latency_us;                //  one per ask
    pthread_t thread;
} s_sender_t;

static void *
s_send_run (void *arg)
{
    s_sender_t *s = (s_sender_t *) arg;
    for (uint64_t i = 0; i < s->messages; i++) {
        uint64_t r = tr_test_random (&s->seed);
        int to_node = (int) (r % (uint64_t) (s->nodes - 1));
        if (to_node >= s->index)
            to_node++;                  //  another node than this one
        char name [64];
        snprintf (name, sizeof name, "a.%d.%d", to_node, (int) ((r >> 16) % (uint64_t) s->actors));
        tr_body_t body = tr_test_pack_uint (i);
        if ((r >> 40) % 4 == 0) {
            tr_msg_t *reply = NULL;
            struct timespec t0, t1;
            clock_gettime (CLOCK_MONOTONIC, &t0);
            int rc = tr_ask (s->node, name, body.data, body.size, S_ASK_TIMEOUT_MS, &reply, NULL);
            clock_gettime (CLOCK_MONOTONIC, &t1);
            int64_t us = (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
            s->latency_us [s->asks++] = us;
            if (us > (S_ASK_TIMEOUT_MS + 1000) * 1000LL)
                s->late++;
            if (rc == TR_OK)
                s->asks_ok++;
            else
                s->asks_failed++;
            tr_msg_destroy (&reply);
        }
        else {
            s->tells++;
            if (tr_tell (s->node, name, body.data, body.size, NULL) != TR_OK)
                s->tells_refused++;
        }
    }
    return NULL;
}

static int
s_cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y? -1: x > y;
}

//  node INDEX NODES ACTORS MESSAGES SENDERS ENDPOINT: says "ready" once
//  every other node answers, waits for "go" on stdin, sends, waits for
//  "count" and says its counts, then "end" stops it.
static int
s_node_main (int argc, char **argv)
{
    if (argc < 8)
        return 2;
    int index = atoi (argv [2]), nodes = atoi (argv [3]), actors = atoi (argv [4]);
    uint64_t messages = strtoull (argv [5], NULL, 10);
    int senders = atoi (argv [6]);
    char id [32];
    snprintf (id, sizeof id, "load-%d", index);
    tr_node_opts_t opts = { .broker = argv [7], .node_id = id, .heartbeat_ms = 1000,
                            .max_actors = (size_t) actors + 64, .stack_size = 64 * 1024,
                            .mailbox_capacity = 100000 };
    tr_node_t *node = NULL;
    if (tr_node_new (&opts, &node) != TR_OK)
        return 1;
    tr_behaviour_t behaviour = { .handle = s_actor_handle };
    for (int k = 0; k < actors; k++) {
        char name [64];
        snprintf (name, sizeof name, "a.%d.%d", index, k);
        if (tr_spawn (node, name, &behaviour, NULL, NULL, NULL) != TR_OK)
            return 1;
    }
    //  Every other node's first and last actor answer.
    for (int j = 0; j < nodes; j++) {
        for (int k = 0; j != index && k < actors; k += actors - 1) {
            char name [64];
            snprintf (name, sizeof name, "a.%d.%d", j, k);
            tr_body_t body = tr_test_pack_uint (0);
            tr_msg_t *reply = NULL;
            int64_t deadline = tr_test_now_ms () + 60000;
            while (tr_ask (node, name, body.data, body.size, 1000, &reply, NULL) != TR_OK)
                if (tr_test_now_ms () > deadline)
                    return 1;
                else
                    usleep (20000);
            tr_msg_destroy (&reply);
            if (actors == 1)
                break;
        }
    }
    tr_node_stats_t before;
    tr_node_stats (node, &before);
    printf ("ready\n");
    fflush (stdout);
    char line [64];
    if (!fgets (line, sizeof line, stdin))
        return 1;
    s_sender_t *s = (s_sender_t *) calloc ((size_t) senders, sizeof *s);
    for (int t = 0; t < senders; t++) {
        s [t] = (s_sender_t) {
            .node = node, .index = index, .nodes = nodes, .actors = actors,
            .messages = messages / (uint64_t) senders + ((uint64_t) t < messages % (uint64_t) senders),
            .seed = 0x9e3779b97f4a7c15ull * (uint64_t) (index * 131 + t + 1)
        };
        s [t].latency_us = (int64_t *) malloc ((s [t].messages + 1) * sizeof (int64_t));
        pthread_create (&s [t].thread, NULL, s_send_run, &s [t]);
    }
    uint64_t tells = 0, refused = 0, asks = 0, ok = 0, failed = 0, late = 0;
    for (int t = 0; t < senders; t++) {
        pthread_join (s [t].thread, NULL);
        tells += s [t].tells;
        refused += s [t].tells_refused;
        asks += s [t].asks;
        ok += s [t].asks_ok;
        failed += s [t].asks_failed;
        late += s [t].late;
    }
    printf ("sent %llu %llu %llu %llu %llu %llu\n", (unsigned long long) tells,
            (unsigned long long) refused, (unsigned long long) asks, (unsigned long long) ok,
            (unsigned long long) failed, (unsigned long long) late);
    //  The ask latencies, for the percentiles.
    for (int t = 0; t < senders; t++)
        for (uint64_t i = 0; i < s [t].asks; i++)
            printf ("lat %lld\n", (long long) s [t].latency_us [i]);
    printf ("done\n");
    fflush (stdout);
    //  Counts, when asked (every node has finished sending by then).
    if (!fgets (line, sizeof line, stdin))
        return 1;
    //  What is still on its way settles: wait until the count stops moving.
    uint64_t last = UINT64_MAX, now;
    while ((now = atomic_load (&s_received)) != last) {
        last = now;
        usleep (500 * 1000);
    }
    tr_node_stats_t after;
    tr_node_stats (node, &after);
    printf ("counts %llu %llu\n", (unsigned long long) atomic_load (&s_received),
            (unsigned long long) (after.dead_letters - before.dead_letters));
    fflush (stdout);
    if (!fgets (line, sizeof line, stdin))
        return 1;
    tr_node_destroy (&node);
    for (int t = 0; t < senders; t++)
        free (s [t].latency_us);
    free (s);
    return 0;
}

//  --------------------------------------------------------------------------
//  The driver

typedef struct {
    pid_t pid;
    FILE *out;                          //  its standard output
    FILE *in;                           //  its standard input
} s_child_t;

static void
s_spawn (s_child_t *child, char **argv)
{
    int to [2], from [2];
    ck_assert_int_eq (pipe (to), 0);
    ck_assert_int_eq (pipe (from), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, to [0], 0);
    posix_spawn_file_actions_adddup2 (&actions, from [1], 1);
    posix_spawn_file_actions_addclose (&actions, to [1]);
    posix_spawn_file_actions_addclose (&actions, from [0]);
    ck_assert_int_eq (posix_spawn (&child->pid, argv [0], &actions, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy (&actions);
    close (to [0]);
    close (from [1]);
    child->out = fdopen (from [0], "r");
    child->in = fdopen (to [1], "w");
}

static char *
s_expect (s_child_t *child, const char *word, char *line, size_t size)
{
    while (fgets (line, (int) size, child->out))
        if (strncmp (line, word, strlen (word)) == 0)
            return line + strlen (word);
    ck_abort_msg ("a child ended before saying '%s'", word);
    return NULL;
}

static s_child_t s_broker;
static s_child_t s_nodes [S_MAX_NODES];
static int s_node_count;

static void
s_kill_all (void)
{
    for (int i = 0; i < s_node_count; i++)
        if (s_nodes [i].pid > 0)
            kill (s_nodes [i].pid, SIGKILL);
    if (s_broker.pid > 0)
        kill (s_broker.pid, SIGKILL);
}

static long
s_rss_kb (pid_t pid)
{
    char path [64], line [256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *file = fopen (path, "r");
    long kb = 0;
    while (file && fgets (line, sizeof line, file))
        if (sscanf (line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (file)
        fclose (file);
    return kb;
}

static atomic_bool s_sampling;
static atomic_long s_broker_peak_kb;

static void *
s_sample_run (void *arg)
{
    (void) arg;
    while (atomic_load (&s_sampling)) {
        long kb = s_rss_kb (s_broker.pid);
        if (kb > atomic_load (&s_broker_peak_kb))
            atomic_store (&s_broker_peak_kb, kb);
        usleep (100 * 1000);
    }
    return NULL;
}

START_TEST (test_load)
{
    int nodes = s_env ("TROUPE_LOAD_NODES", 4);
    int actors = s_env ("TROUPE_LOAD_ACTORS", 250);
    //  Sanitizer builds (TROUPE_TEST_SLOWDOWN) send fewer by default.
    int messages = s_env ("TROUPE_LOAD_MESSAGES", 100000 / tr_test_slowdown ());
    int senders = s_env ("TROUPE_LOAD_SENDERS", 4);
    ck_assert_int_le (nodes, S_MAX_NODES);
    ck_assert_int_ge (nodes, 2);
    signal (SIGPIPE, SIG_IGN);
    atexit (s_kill_all);
    const char *bin = getenv ("TROUPE_BIN");
    ck_assert_msg (bin && *bin, "TROUPE_BIN must name the troupe program");
    char *broker_argv [] = { (char *) bin, "broker", "--bind", "tcp://127.0.0.1:*", NULL };
    s_spawn (&s_broker, broker_argv);
    char line [512];
    char *at = s_expect (&s_broker, "troupe broker: listening on ", line, sizeof line);
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "%.*s", (int) strcspn (at, " \n"), at);

    int64_t setup = tr_test_now_ms ();
    char args [5][32];
    for (int i = 0; i < nodes; i++) {
        snprintf (args [0], 32, "%d", i);
        snprintf (args [1], 32, "%d", nodes);
        snprintf (args [2], 32, "%d", actors);
        snprintf (args [3], 32, "%d", messages / nodes);
        snprintf (args [4], 32, "%d", senders);
        char *argv [] = { "/proc/self/exe", "node", args [0], args [1], args [2], args [3],
                          args [4], endpoint, NULL };
        s_spawn (&s_nodes [i], argv);
        s_node_count = i + 1;
    }
    for (int i = 0; i < nodes; i++)
        s_expect (&s_nodes [i], "ready", line, sizeof line);
    int64_t setup_ms = tr_test_now_ms () - setup;
    long broker_start_kb = s_rss_kb (s_broker.pid);
    pthread_t sampler;
    atomic_store (&s_sampling, true);
    pthread_create (&sampler, NULL, s_sample_run, NULL);

    int64_t start = tr_test_now_ms ();
    for (int i = 0; i < nodes; i++) {
        fprintf (s_nodes [i].in, "go\n");
        fflush (s_nodes [i].in);
    }
    uint64_t tells = 0, refused = 0, asks = 0, ok = 0, failed = 0, late = 0;
    size_t lat_count = 0, lat_room = (size_t) messages + 16;
    int64_t *lat = (int64_t *) malloc (lat_room * sizeof *lat);
    for (int i = 0; i < nodes; i++) {
        unsigned long long v [6];
        ck_assert_int_eq (sscanf (s_expect (&s_nodes [i], "sent ", line, sizeof line),
                                  "%llu %llu %llu %llu %llu %llu",
                                  &v [0], &v [1], &v [2], &v [3], &v [4], &v [5]), 6);
        tells += v [0];
        refused += v [1];
        asks += v [2];
        ok += v [3];
        failed += v [4];
        late += v [5];
        while (fgets (line, sizeof line, s_nodes [i].out) && strncmp (line, "done", 4) != 0) {
            long long us;
            if (sscanf (line, "lat %lld", &us) == 1 && lat_count < lat_room)
                lat [lat_count++] = us;
        }
    }
    int64_t sent_ms = tr_test_now_ms () - start;
    uint64_t received = 0, dead = 0;
    for (int i = 0; i < nodes; i++) {
        fprintf (s_nodes [i].in, "count\n");
        fflush (s_nodes [i].in);
    }
    for (int i = 0; i < nodes; i++) {
        unsigned long long r, d;
        ck_assert_int_eq (sscanf (s_expect (&s_nodes [i], "counts ", line, sizeof line),
                                  "%llu %llu", &r, &d), 2);
        received += r;
        dead += d;
    }
    int64_t total_ms = tr_test_now_ms () - start;
    atomic_store (&s_sampling, false);
    pthread_join (sampler, NULL);
    for (int i = 0; i < nodes; i++) {
        fprintf (s_nodes [i].in, "end\n");
        fflush (s_nodes [i].in);
    }
    for (int i = 0; i < nodes; i++) {
        int status;
        waitpid (s_nodes [i].pid, &status, 0);
        s_nodes [i].pid = 0;
        ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0,
                       "node %d ended with status %d", i, status);
    }
    kill (s_broker.pid, SIGTERM);
    int status;
    waitpid (s_broker.pid, &status, 0);
    s_broker.pid = 0;

    qsort (lat, lat_count, sizeof *lat, s_cmp_i64);
    int64_t p50 = lat_count? lat [lat_count / 2]: 0;
    int64_t p99 = lat_count? lat [lat_count * 99 / 100]: 0;
    int64_t max = lat_count? lat [lat_count - 1]: 0;
    printf ("LOAD nodes=%d actors_per_node=%d actors=%d messages=%llu setup_ms=%lld "
            "send_ms=%lld total_ms=%lld msgs_per_s=%.0f tells=%llu tells_received=%llu "
            "tells_refused=%llu dead_letters=%llu asks=%llu asks_ok=%llu asks_failed=%llu "
            "asks_late=%llu ask_p50_us=%lld ask_p99_us=%lld ask_max_us=%lld "
            "broker_rss_start_kb=%ld broker_rss_peak_kb=%ld\n",
            nodes, actors, nodes * actors, (unsigned long long) (tells + asks),
            (long long) setup_ms, (long long) sent_ms, (long long) total_ms,
            (double) (tells + asks) * 1000.0 / (double) (total_ms? total_ms: 1),
            (unsigned long long) tells, (unsigned long long) received,
            (unsigned long long) refused, (unsigned long long) dead, (unsigned long long) asks,
            (unsigned long long) ok, (unsigned long long) failed, (unsigned long long) late,
            (long long) p50, (long long) p99, (long long) max, broker_start_kb,
            (long) atomic_load (&s_broker_peak_kb));
    fflush (stdout);
    free (lat);
    ck_assert_uint_eq (tells + asks, (uint64_t) (messages / nodes) * (uint64_t) nodes);
    //  Every tell is accounted for; every ask ended, none late. (A dead
    //  letter at a sender may also be the late answer to an ask that
    //  failed: with failed asks the sum may pass the tells sent.)
    ck_assert_msg (failed? received + refused + dead >= tells:
                           received + refused + dead == tells,
                   "tells: %llu received + %llu refused + %llu dead letters != %llu sent",
                   (unsigned long long) received, (unsigned long long) refused,
                   (unsigned long long) dead, (unsigned long long) tells);
    ck_assert_uint_eq (ok + failed, asks);
    ck_assert_uint_eq (late, 0);
    ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0, "the broker's status: %d",
                   status);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_load");
    TCase *tc = tcase_create ("load");
    tcase_set_timeout (tc, 3600);
    tcase_add_test (tc, test_load);
    suite_add_tcase (suite, tc);
    return suite;
}

int
main (int argc, char **argv)
{
    if (argc >= 2 && strcmp (argv [1], "node") == 0) {
        tr_log_set_level (TR_LOG_ERROR);
        return s_node_main (argc, argv);
    }
    SRunner *runner = srunner_create (s_suite ());
    srunner_run_all (runner, CK_NORMAL);
    int failed = srunner_ntests_failed (runner);
    srunner_free (runner);
    return failed? 1: 0;
}
