/*  tr_cli_run.c - `troupe run TREE.yaml`: a supervision tree in the
    foreground.

    The file is loaded and checked whole before anything starts. The tree
    then runs on a node of its own, with a control socket (tr_ctl.h) for
    `troupe status` and friends, until one of:
      - SIGINT, SIGTERM, SIGHUP or SIGQUIT: the tree stops in order
        (children in reverse start order, each within its shutdown time),
        exit 0;
      - --for DURATION has passed: the same, exit 0;
      - the root supervisor fails (restart intensity exceeded and not
        mended): its children are already stopped; the chain of reasons
        is printed, exit 1.
    Process children never outlive the program (tr_sup.h): they are
    stopped with the tree, and killed if the program dies of a fatal
    signal.
*/

#include "tr_cli.h"

#include <troupe.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_USAGE \
    "usage: troupe run TREE.yaml [--for DURATION] [--bind ENDPOINT | --broker ENDPOINT |\n" \
    "                  --no-broker] [--node-id ID]\n\n" \
    "Runs the supervision tree described in TREE.yaml (see docs/tree-format.md)\n" \
    "in the foreground, logging to standard error, until SIGINT or SIGTERM\n" \
    "(Ctrl-C), or for DURATION (such as 30s, 2m) when --for is given; then\n" \
    "stops it in order. Another terminal can watch and steer it with\n" \
    "'troupe status', 'troupe restart NAME' and the like.\n\n" \
    "The whole file is checked first; a problem is reported as\n" \
    "FILE:LINE:COLUMN: what was wrong, and nothing starts (exit 1).\n" \
    "The tree's node joins a broker, so that processes and hosts can reach\n" \
    "its actors and share its scratchpad and events. By default the broker is\n" \
    "embedded: it runs inside this process on an ipc socket in the control\n" \
    "folder (owner-only), or on ENDPOINT with --bind (e.g. tcp://0.0.0.0:7700\n" \
    "for other hosts). --broker ENDPOINT joins a broker that runs elsewhere\n" \
    "instead; --no-broker keeps the tree to itself. Process children find the\n" \
    "broker in the TROUPE_BROKER environment variable. --node-id names this\n" \
    "node at the broker (default HOST:PID).\n\n" \
    "Exit status: 0 after an orderly stop; 1 if the tree could not start or\n" \
    "its root supervisor failed (the chain of reasons is printed); 2 for a\n" \
    "usage error.\n"

static int
s_run (int argc, char **argv)
{
    const char *file = NULL;
    const char *bind = NULL, *join = NULL, *node_id = NULL;
    bool alone = false;
    int64_t for_ms = -1;
    for (int i = 1; i < argc; i++) {
        const char **value = strcmp (argv [i], "--bind") == 0? &bind:
                             strcmp (argv [i], "--broker") == 0? &join:
                             strcmp (argv [i], "--node-id") == 0? &node_id: NULL;
        if (value) {
            if (i + 1 >= argc || !*argv [i + 1]) {
                fprintf (stderr, "troupe run: %s needs a value\n%s", argv [i], S_USAGE);
                return TR_CLI_USAGE;
            }
            *value = argv [++i];
        }
        else
        if (strcmp (argv [i], "--no-broker") == 0)
            alone = true;
        else
        if (strcmp (argv [i], "--for") == 0) {
            const char *text = i + 1 < argc? argv [++i]: "";
            if (tr_duration_parse (text, strlen (text), &for_ms) != TR_OK || for_ms <= 0) {
                fprintf (stderr, "troupe run: --for needs a duration such as 500ms, 30s or 2m, "
                         "not '%s'\n", text);
                return TR_CLI_USAGE;
            }
        }
        else
        if (argv [i][0] == '-' && argv [i][1]) {
            fprintf (stderr, "troupe run: unknown option '%s'\n%s", argv [i], S_USAGE);
            return TR_CLI_USAGE;
        }
        else
        if (file) {
            fprintf (stderr, "troupe run: one tree file only ('%s' and '%s')\n", file, argv [i]);
            return TR_CLI_USAGE;
        }
        else
            file = argv [i];
    }
    if (!file) {
        fputs (S_USAGE, stderr);
        return TR_CLI_USAGE;
    }
    if ((bind != NULL) + (join != NULL) + alone > 1) {
        fprintf (stderr, "troupe run: --bind, --broker and --no-broker exclude each other\n");
        return TR_CLI_USAGE;
    }
    //  Readable logs by default: what starts, fails and restarts.
    if (!getenv ("TROUPE_LOG") && tr_log_level () == TR_LOG_WARN)
        tr_log_set_level (TR_LOG_INFO);

    tr_tree_t *tree = NULL;
    tr_tree_error_t err;
    int rc = tr_tree_load (file, &tree, &err);
    if (rc != TR_OK) {
        char text [640];
        fprintf (stderr, "%s\n", tr_tree_error_format (&err, text, sizeof text));
        return TR_CLI_FAILED;
    }
    //  The stop signals are taken by this thread alone (sigtimedwait):
    //  blocked before any other thread exists, so all inherit the mask.
    sigset_t stops;
    sigemptyset (&stops);
    sigaddset (&stops, SIGINT);
    sigaddset (&stops, SIGTERM);
    sigaddset (&stops, SIGHUP);
    sigaddset (&stops, SIGQUIT);
    sigset_t old_mask;
    pthread_sigmask (SIG_BLOCK, &stops, &old_mask);

    int status = TR_CLI_FAILED;
    tr_broker_t *broker = NULL;
    tr_node_t *node = NULL;
    tr_sup_t *sup = NULL;
    tr_control_t *ctl = NULL;
    char *reason = NULL;
    //  Refuse early if this tree runs already: the embedded broker's socket
    //  sits beside the control socket and must not be taken from it.
    char dir [200], path [300], endpoint [320];
    if (tr_control_dir (dir, sizeof dir, true) != TR_OK) {
        fprintf (stderr, "troupe run: cannot use the control folder %s\n", dir);
        goto done;
    }
    snprintf (path, sizeof path, "%s/%s.sock", dir, tree->name);
    if (tr_control_live (path)) {
        fprintf (stderr, "troupe run: a tree named '%s' is already running (control socket %s)\n",
                 tree->name, path);
        goto done;
    }
    if (!alone && !join) {
        if (!bind) {
            snprintf (endpoint, sizeof endpoint, "ipc://%s/%s.broker", dir, tree->name);
            bind = endpoint;
        }
        tr_broker_opts_t bopts = { .bind = bind };
        rc = tr_broker_start (&bopts, &broker);
        if (rc != TR_OK) {
            fprintf (stderr, "troupe run: cannot start the embedded broker on %s: %s\n",
                     bind, tr_strerror (rc));
            goto done;
        }
        join = tr_broker_endpoint (broker);
        tr_log (TR_LOG_INFO, "embedded broker on %s", join);
    }
    if (join)
        setenv ("TROUPE_BROKER", join, 1);
    tr_node_opts_t nopts = { .broker = join, .node_id = node_id };
    rc = tr_node_new (&nopts, &node);
    if (rc != TR_OK) {
        fprintf (stderr, "troupe run: cannot start a node: %s\n", tr_strerror (rc));
        goto done;
    }
    rc = tr_sup_start (node, tree->name, &tree->root, &sup, &reason);
    if (rc != TR_OK) {
        fprintf (stderr, "troupe run: tree '%s' could not start: %s\n", tree->name,
                 reason? reason: tr_strerror (rc));
        goto done;
    }
    rc = tr_control_start (node, sup, &ctl);
    if (rc != TR_OK) {
        fprintf (stderr, "troupe run: cannot serve the control socket of tree '%s': %s\n",
                 tree->name, tr_strerror (rc));
        goto done;
    }
    tr_log (TR_LOG_INFO, "tree '%s' from %s is running (pid %d); control socket %s",
            tree->name, file, (int) getpid (), tr_control_path (ctl));

    struct timespec start;
    clock_gettime (CLOCK_MONOTONIC, &start);
    while (true) {
        rc = tr_sup_wait (sup, 0, &reason);
        if (rc == TR_EINTENSITY) {
            fprintf (stderr, "troupe run: tree '%s' failed: %s\n", tree->name,
                     reason? reason: tr_strerror (rc));
            break;
        }
        struct timespec tick = { 0, 50 * 1000 * 1000 };
        int sig = sigtimedwait (&stops, NULL, &tick);
        if (sig > 0) {
            tr_log (TR_LOG_INFO, "%s: stopping tree '%s'", strsignal (sig), tree->name);
            status = TR_CLI_OK;
            break;
        }
        if (for_ms > 0) {
            struct timespec now;
            clock_gettime (CLOCK_MONOTONIC, &now);
            int64_t ran = (now.tv_sec - start.tv_sec) * 1000
                        + (now.tv_nsec - start.tv_nsec) / 1000000;
            if (ran >= for_ms) {
                tr_log (TR_LOG_INFO, "ran for %lld ms: stopping tree '%s'",
                        (long long) ran, tree->name);
                status = TR_CLI_OK;
                break;
            }
        }
    }
done:
    tr_control_stop (&ctl);
    if (sup && tr_sup_stop (&sup) != TR_OK)
        tr_log (TR_LOG_WARN, "some children had to be abandoned or killed to stop");
    tr_node_destroy (&node);
    tr_broker_stop (&broker);
    tr_tree_destroy (&tree);
    free (reason);
    pthread_sigmask (SIG_SETMASK, &old_mask, NULL);
    return status;
}

const tr_cli_command_t tr_cli_run = {
    "run", "run a supervision tree from a YAML file", S_USAGE, s_run
};
