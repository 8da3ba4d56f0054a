/*  tb_spawn.c - spawn_10k: many idle actors in one process.

    usage: tb_spawn [ACTORS]

    Creates a node with default options, spawns ACTORS (default 10,000)
    actors whose handler does nothing, one after the other from the main
    thread, then checks that the last one answers, lets them settle into
    their idle wait, reads the resident set size, and destroys the node.
    One measurement per process (bench/run repeats the program), so that
    each starts from a fresh heap. Series:

      spawn_s           seconds to spawn them all (tr_spawn returns once
                        the actor's thread has run init)
      rss_kib_per_actor resident memory after the spawns minus before,
                        divided by ACTORS, in KiB (from /proc/self/statm)
      stop_s            seconds for tr_node_destroy to stop them all and
                        free everything
*/

#include "tb_util.h"

#include <sys/resource.h>
#include <unistd.h>

#define S_BENCH "spawn_10k"

//  Resident set size in KiB, from /proc/self/statm.
static double
s_rss_kib (void)
{
    FILE *file = fopen ("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!file || fscanf (file, "%lu %lu", &size, &resident) != 2) {
        fprintf (stderr, "bench: cannot read /proc/self/statm\n");
        exit (1);
    }
    fclose (file);
    return (double) resident * (double) sysconf (_SC_PAGESIZE) / 1024.0;
}

static int
s_idle_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        return tr_reply (msg, NULL, 0);
    return 0;
}

int
main (int argc, char **argv)
{
    long actors = tb_arg (argc, argv, 1, 10000);
    struct rlimit rl;
    getrlimit (RLIMIT_NOFILE, &rl);
    fprintf (stderr, "spawn_10k: descriptor limit %llu soft, %llu hard\n",
             (unsigned long long) rl.rlim_cur, (unsigned long long) rl.rlim_max);

    tr_node_t *node;
    tb_check (tr_node_new (NULL, &node), "node");
    tr_behaviour_t idle = { .handle = s_idle_handle };
    char name [32];
    double rss_before = s_rss_kib ();

    int64_t start = tb_now_ns ();
    for (long i = 0; i < actors; i++) {
        snprintf (name, sizeof name, "idle-%ld", i);
        tb_check (tr_spawn (node, name, &idle, NULL, NULL, NULL), name);
    }
    double spawn_s = (double) (tb_now_ns () - start) / 1e9;

    //  The newest actor answers: the node works at full size.
    tr_msg_t *reply;
    tb_check (tr_ask (node, name, NULL, 0, 10000, &reply, NULL), "ask the last actor");
    tr_msg_destroy (&reply);
    tr_node_stats_t stats;
    tr_node_stats (node, &stats);
    if (stats.actors != (uint64_t) actors) {
        fprintf (stderr, "bench: %llu actors alive, not %ld\n",
                 (unsigned long long) stats.actors, actors);
        return 1;
    }
    //  Let every thread finish its spin and block: idle means idle.
    struct timespec settle = { 0, 200 * 1000000 };
    nanosleep (&settle, NULL);
    double rss_after = s_rss_kib ();
    double per_actor = (rss_after - rss_before) / (double) actors;

    start = tb_now_ns ();
    tr_node_destroy (&node);
    double stop_s = (double) (tb_now_ns () - start) / 1e9;

    tb_sample (S_BENCH, "spawn_s", spawn_s);
    tb_sample (S_BENCH, "rss_kib_per_actor", per_actor);
    tb_sample (S_BENCH, "stop_s", stop_s);
    fprintf (stderr, "spawn_10k: %ld actors spawned in %.3f s, %.1f KiB each "
             "(RSS %.0f -> %.0f KiB), stopped in %.3f s\n",
             actors, spawn_s, per_actor, rss_before, rss_after, stop_s);
    return 0;
}
