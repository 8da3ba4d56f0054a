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

    CURVE (2-broker.md 2.10): the embedded broker takes --curve (its key
    pair) and --allow (the folder of allowed client keys), and the
    tree's own node joins it with the broker's own key pair, which the
    broker always allows. Joining a broker elsewhere takes --curve (this
    node's key pair) and --server-key (the broker's public key), or
    $TROUPE_CURVE_SECRET and $TROUPE_SERVER_KEY. The files in use are
    passed on to process children in those two variables, as absolute
    paths, beside TROUPE_BROKER.
*/

#include "tr_cli.h"

#include <troupe.h>

#include <errno.h>
#include <limits.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_USAGE \
    "usage: troupe run TREE.yaml [--for DURATION] [--status] [--node-id ID]\n" \
    "                  [[--bind ENDPOINT] [--curve SECRET_FILE --allow DIR] |\n" \
    "                   --broker ENDPOINT [--curve SECRET_FILE --server-key PUBLIC_FILE] |\n" \
    "                   --no-broker]\n\n" \
    "Runs the supervision tree described in TREE.yaml (see docs/tree-format.md)\n" \
    "in the foreground, logging to standard error, until SIGINT or SIGTERM\n" \
    "(Ctrl-C), or for DURATION (such as 30s, 2m) when --for is given; then\n" \
    "stops it in order. Another terminal can watch and steer it with\n" \
    "'troupe status', 'troupe restart NAME' and the like. --status prints the\n" \
    "tree's status as 'troupe status' shows it, on standard output, when the\n" \
    "tree is about to stop (or has failed).\n\n" \
    "The whole file is checked first; a problem is reported as\n" \
    "FILE:LINE:COLUMN: what was wrong, and nothing starts (exit 1).\n" \
    "The tree's node joins a broker, so that processes and hosts can reach\n" \
    "its actors and share its scratchpad and events. By default the broker is\n" \
    "embedded: it runs inside this process on an ipc socket in the control\n" \
    "folder (owner-only), or on ENDPOINT with --bind (e.g. tcp://0.0.0.0:7700\n" \
    "for other hosts). --broker ENDPOINT joins a broker that runs elsewhere\n" \
    "instead; --no-broker keeps the tree to itself. Process children find the\n" \
    "broker in the TROUPE_BROKER environment variable, this program in\n" \
    "TROUPE_PROGRAM and the tree file's folder in TROUPE_TREE_DIR (absolute\n" \
    "paths). --node-id names this node at the broker (default HOST:PID).\n\n" \
    "Security (CURVE; see 'troupe keygen'): the embedded broker uses CURVE with\n" \
    "--curve SECRET_FILE (its key pair) and --allow DIR (the public key files\n" \
    "of the clients let in); it must, on any --bind other than 127.0.0.1,\n" \
    "[::1], localhost or ipc://. Joining a broker that uses CURVE takes\n" \
    "--curve SECRET_FILE (this node's key pair, whose public key is in the\n" \
    "broker's allow folder) and --server-key PUBLIC_FILE (the broker's public\n" \
    "key), by default $TROUPE_CURVE_SECRET and $TROUPE_SERVER_KEY. Process\n" \
    "children get the files in use in those two variables. A secret key file\n" \
    "must be yours with mode 0600.\n\n" \
    "Exit status: 0 after an orderly stop; 1 if the tree could not start or\n" \
    "its root supervisor failed (the chain of reasons is printed); 2 for a\n" \
    "usage error.\n"

//  Checks the CURVE options against the broker options, and for joining
//  takes the defaults from the environment. Returns 0 or -1 (printed).
static int
s_curve_usage (const char *join, bool alone, const char **curve, const char *allow,
               const char **server_key)
{
    if (alone && (*curve || allow || *server_key)) {
        fprintf (stderr, "troupe run: --curve, --allow and --server-key need a broker\n");
        return -1;
    }
    if (join) {
        if (allow) {
            fprintf (stderr, "troupe run: --allow is for the embedded broker; joining "
                     "--broker takes --curve SECRET_FILE --server-key PUBLIC_FILE\n");
            return -1;
        }
        if (!*curve && !*server_key) {
            const char *a = getenv ("TROUPE_CURVE_SECRET"), *b = getenv ("TROUPE_SERVER_KEY");
            *curve = a && *a? a: NULL;
            *server_key = b && *b? b: NULL;
        }
        if (!*curve != !*server_key) {
            fprintf (stderr, "troupe run: joining with CURVE takes both --curve SECRET_FILE "
                     "and --server-key PUBLIC_FILE (or $TROUPE_CURVE_SECRET and "
                     "$TROUPE_SERVER_KEY)\n");
            return -1;
        }
        return 0;
    }
    if (*server_key) {
        fprintf (stderr, "troupe run: --server-key is for joining a broker with --broker; "
                 "the embedded broker takes --curve SECRET_FILE --allow DIR\n");
        return -1;
    }
    if (!*curve != !allow) {
        fprintf (stderr, "troupe run: the embedded broker takes --curve SECRET_FILE and "
                 "--allow DIR together\n");
        return -1;
    }
    return 0;
}

//  Passes a key file on to process children, as an absolute path.
static void
s_export_key (const char *name, const char *file)
{
    char *path = realpath (file, NULL);
    setenv (name, path? path: file, 1);
    free (path);
}

//  Tells process children where this program and the tree file are
//  (TROUPE_PROGRAM, TROUPE_TREE_DIR, absolute), so that a child can run
//  another troupe, or a file beside the tree, wherever it was started
//  from. A path that cannot be found is left unset, with a log line.
static void
s_export_paths (const char *file)
{
    char path [PATH_MAX];
    ssize_t len = readlink ("/proc/self/exe", path, sizeof path - 1);
    if (len > 0) {
        path [len] = 0;
        setenv ("TROUPE_PROGRAM", path, 1);
    }
    else
        tr_log (TR_LOG_WARN, "cannot tell process children where troupe is: %s",
                strerror (errno));
    char *real = realpath (file, NULL);
    if (real) {
        char *slash = strrchr (real, '/');
        if (slash == real)
            slash [1] = 0;
        else
        if (slash)
            *slash = 0;
        setenv ("TROUPE_TREE_DIR", real, 1);
        free (real);
    }
    else
        tr_log (TR_LOG_WARN, "cannot tell process children where %s is: %s", file,
                strerror (errno));
}

//  --status: the tree's status, as `troupe status` prints it, taken
//  while the tree still runs (children stopped by a failure show so).
static void
s_report (tr_sup_t *sup)
{
    uint8_t *status = NULL;
    size_t len = 0;
    int rc = tr_sup_status (sup, &status, &len);
    if (rc != TR_OK) {
        fprintf (stderr, "troupe run: the tree could not report its status: %s\n",
                 tr_strerror (rc));
        return;
    }
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    if (msgpack_unpack_next (&unpacked, (const char *) status, len, NULL)
        == MSGPACK_UNPACK_SUCCESS && unpacked.data.type == MSGPACK_OBJECT_MAP) {
        printf ("\n");
        tr_cli_status_print (&unpacked.data);
        fflush (stdout);
    }
    else
        fprintf (stderr, "troupe run: the tree's status could not be read\n");
    msgpack_unpacked_destroy (&unpacked);
    free (status);
}

static int
s_run (int argc, char **argv)
{
    const char *file = NULL;
    const char *bind = NULL, *join = NULL, *node_id = NULL;
    const char *curve = NULL, *allow = NULL, *server_key = NULL;
    bool alone = false, report = false;
    int64_t for_ms = -1;
    for (int i = 1; i < argc; i++) {
        const char **value = strcmp (argv [i], "--bind") == 0? &bind:
                             strcmp (argv [i], "--broker") == 0? &join:
                             strcmp (argv [i], "--node-id") == 0? &node_id:
                             strcmp (argv [i], "--curve") == 0? &curve:
                             strcmp (argv [i], "--allow") == 0? &allow:
                             strcmp (argv [i], "--server-key") == 0? &server_key: NULL;
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
        if (strcmp (argv [i], "--status") == 0)
            report = true;
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
    if (s_curve_usage (join, alone, &curve, allow, &server_key))
        return TR_CLI_USAGE;
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
        tr_broker_opts_t bopts = {
            .bind = bind, .curve_secret_file = curve, .curve_allow_dir = allow
        };
        rc = tr_broker_start (&bopts, &broker);
        if (rc == TR_EACCES && !curve) {
            fprintf (stderr, "troupe run: will not start the embedded broker on %s without "
                     "CURVE: an endpoint other than 127.0.0.1, [::1], localhost or ipc:// "
                     "needs --curve SECRET_FILE --allow DIR\n", bind);
            goto done;
        }
        if (rc != TR_OK) {
            fprintf (stderr, "troupe run: cannot start the embedded broker on %s: %s%s\n",
                     bind, tr_strerror (rc), curve? " (the line above says why)": "");
            goto done;
        }
        //  The tree's own node holds the broker's key pair, always allowed.
        server_key = curve;
        join = tr_broker_endpoint (broker);
        tr_log (TR_LOG_INFO, "embedded broker on %s", join);
    }
    if (join)
        setenv ("TROUPE_BROKER", join, 1);
    s_export_paths (file);
    if (join && curve) {
        s_export_key ("TROUPE_CURVE_SECRET", curve);
        s_export_key ("TROUPE_SERVER_KEY", server_key);
    }
    else {
        unsetenv ("TROUPE_CURVE_SECRET");
        unsetenv ("TROUPE_SERVER_KEY");
    }
    tr_node_opts_t nopts = {
        .broker = join, .node_id = node_id,
        .curve_secret_file = join? curve: NULL, .curve_server_public_file = join? server_key: NULL
    };
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
    if (report && sup)
        s_report (sup);
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
