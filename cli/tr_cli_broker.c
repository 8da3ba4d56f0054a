/*  tr_cli_broker.c - `troupe broker --bind ENDPOINT [--data DIR]`: a
    standalone broker in the foreground.

    With --data, opens (or starts) the scratchpad's log in DIR and
    replays it, then binds the endpoint, prints it (with the real port
    when the endpoint asked for "*"), and serves 2-broker.md until
    SIGINT, SIGTERM, SIGHUP or SIGQUIT, then stops (the log synced and
    closed) and exits 0. A bind that fails (the port is in use, no
    permission) or a data folder that cannot be used (missing, not
    writable, in use by another broker, a damaged log) exits 1 with the
    reason; a usage error exits 2. With --curve and --allow the broker
    runs CURVE (2-broker.md 2.10); an endpoint other than loopback, ipc
    or inproc without them is refused (exit 1), as are a secret key file
    that others may read and a missing allow folder.
*/

#include "tr_cli.h"

#include <troupe.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_USAGE \
    "usage: troupe broker --bind ENDPOINT [--heartbeat DURATION]\n" \
    "                     [--data DIR [--fsync always|everysec|no]]\n" \
    "                     [--curve SECRET_FILE --allow DIR]\n\n" \
    "Runs a broker (protocols/2-broker.md) in the foreground, logging to\n" \
    "standard error, until SIGINT or SIGTERM (Ctrl-C). Nodes ('troupe run\n" \
    "... --broker ENDPOINT') and external actors connect to it to reach\n" \
    "each other's actors by name, to exchange events and to share the\n" \
    "scratchpad (a versioned key-value store).\n\n" \
    "  --bind ENDPOINT       where to listen: tcp://HOST:PORT (PORT may be *\n" \
    "                        for a free one), ipc://PATH\n" \
    "  --heartbeat DURATION  the heartbeat interval H, such as 500ms or 2s\n" \
    "                        (10ms to 60s; default 1s): clients silent for\n" \
    "                        3H are declared dead\n" \
    "  --data DIR            keep the scratchpad in DIR (an existing folder,\n" \
    "                        one broker at a time): every write is logged\n" \
    "                        before it is acknowledged, and the log is\n" \
    "                        replayed on start; without it the scratchpad\n" \
    "                        lives in memory only\n" \
    "  --fsync POLICY        when the log reaches the disk: always (before\n" \
    "                        each acknowledgement), everysec (the default: at\n" \
    "                        most a second of writes lost if the machine\n" \
    "                        crashes) or no (when the system likes)\n" \
    "  --curve SECRET_FILE   CURVE security: the broker's key pair ('troupe\n" \
    "                        keygen broker' writes broker.secret and\n" \
    "                        broker.public; the secret file must be yours,\n" \
    "                        mode 0600). Clients need broker.public\n" \
    "  --allow DIR           with --curve: the folder of the public key files\n" \
    "                        of the clients let in (read again as they\n" \
    "                        connect, at most once a second)\n" \
    "Without --curve the broker only listens on this host: tcp://127.0.0.1,\n" \
    "[::1] or localhost, or ipc://; any other endpoint needs --curve and\n" \
    "--allow.\n\n" \
    "The bound endpoint is printed first, as 'listening on ENDPOINT'.\n" \
    "Exit status: 0 after a stop signal; 1 if the endpoint cannot be bound,\n" \
    "the data folder or the keys cannot be used, or CURVE is missing where\n" \
    "it is required; 2 for a usage error.\n"

//  Parses the arguments into opts. Returns TR_CLI_OK or TR_CLI_USAGE
//  (the reason printed).
static int
s_parse (int argc, char **argv, tr_broker_opts_t *opts)
{
    bool fsync_given = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv [i];
        if (strcmp (arg, "--bind") == 0) {
            if (i + 1 >= argc || !*argv [i + 1]) {
                fprintf (stderr, "troupe broker: --bind needs an endpoint such as "
                         "tcp://127.0.0.1:7700\n");
                return TR_CLI_USAGE;
            }
            opts->bind = argv [++i];
        }
        else
        if (strcmp (arg, "--heartbeat") == 0) {
            const char *text = i + 1 < argc? argv [++i]: "";
            int64_t ms;
            if (tr_duration_parse (text, strlen (text), &ms) != TR_OK || ms < 10 || ms > 60000) {
                fprintf (stderr, "troupe broker: --heartbeat needs a duration from 10ms to "
                         "60s, such as 500ms or 2s, not '%s'\n", text);
                return TR_CLI_USAGE;
            }
            opts->heartbeat_ms = (int) ms;
        }
        else
        if (strcmp (arg, "--data") == 0) {
            if (i + 1 >= argc || !*argv [i + 1]) {
                fprintf (stderr, "troupe broker: --data needs a folder\n");
                return TR_CLI_USAGE;
            }
            opts->data_dir = argv [++i];
        }
        else
        if (strcmp (arg, "--fsync") == 0) {
            const char *text = i + 1 < argc? argv [++i]: "";
            if (strcmp (text, "always") == 0)
                opts->fsync = TR_FSYNC_ALWAYS;
            else
            if (strcmp (text, "everysec") == 0)
                opts->fsync = TR_FSYNC_EVERYSEC;
            else
            if (strcmp (text, "no") == 0)
                opts->fsync = TR_FSYNC_NO;
            else {
                fprintf (stderr, "troupe broker: --fsync needs always, everysec or no, "
                         "not '%s'\n", text);
                return TR_CLI_USAGE;
            }
            fsync_given = true;
        }
        else
        if (strcmp (arg, "--curve") == 0 || strcmp (arg, "--allow") == 0) {
            if (i + 1 >= argc || !*argv [i + 1]) {
                fprintf (stderr, "troupe broker: %s needs a %s\n", arg,
                         arg [2] == 'c'? "secret key file (troupe keygen NAME makes one)"
                                       : "folder of allowed public key files");
                return TR_CLI_USAGE;
            }
            if (arg [2] == 'c')
                opts->curve_secret_file = argv [++i];
            else
                opts->curve_allow_dir = argv [++i];
        }
        else {
            fprintf (stderr, "troupe broker: unexpected argument '%s'\n%s", arg, S_USAGE);
            return TR_CLI_USAGE;
        }
    }
    if (!opts->bind) {
        fprintf (stderr, "troupe broker: --bind ENDPOINT is required\n%s", S_USAGE);
        return TR_CLI_USAGE;
    }
    if (fsync_given && !opts->data_dir) {
        fprintf (stderr, "troupe broker: --fsync applies to the log of --data DIR\n");
        return TR_CLI_USAGE;
    }
    if (!opts->curve_secret_file != !opts->curve_allow_dir) {
        fprintf (stderr, "troupe broker: --curve SECRET_FILE and --allow DIR go together\n");
        return TR_CLI_USAGE;
    }
    return TR_CLI_OK;
}

static int
s_broker (int argc, char **argv)
{
    tr_broker_opts_t opts = { 0 };
    int status = s_parse (argc, argv, &opts);
    if (status != TR_CLI_OK)
        return status;
    //  Readable logs by default: who joins and leaves.
    if (!getenv ("TROUPE_LOG") && tr_log_level () == TR_LOG_WARN)
        tr_log_set_level (TR_LOG_INFO);

    //  The stop signals are taken by this thread alone (sigtimedwait):
    //  blocked before the broker's threads exist, so all inherit the mask.
    sigset_t stops;
    sigemptyset (&stops);
    sigaddset (&stops, SIGINT);
    sigaddset (&stops, SIGTERM);
    sigaddset (&stops, SIGHUP);
    sigaddset (&stops, SIGQUIT);
    sigset_t old_mask;
    pthread_sigmask (SIG_BLOCK, &stops, &old_mask);

    tr_broker_t *broker = NULL;
    int rc = tr_broker_start (&opts, &broker);
    if (rc != TR_OK) {
        if (rc == TR_EINVAL)
            fprintf (stderr, "troupe broker: cannot listen on '%s': not an endpoint this "
                     "broker can bind (tcp://HOST:PORT or ipc://PATH)\n", opts.bind);
        else
        if (rc == TR_ESYS)
            fprintf (stderr, "troupe broker: cannot listen on '%s': %s\n", opts.bind,
                     errno == EADDRINUSE? "the address is in use (another broker?)"
                                        : strerror (errno));
        else
        if (rc == TR_EACCES && !opts.curve_secret_file)
            fprintf (stderr, "troupe broker: will not listen on '%s' without CURVE: an "
                     "endpoint other than 127.0.0.1, [::1], localhost or ipc:// needs "
                     "--curve SECRET_FILE --allow DIR\n", opts.bind);
        else
        if (opts.curve_secret_file && (rc == TR_ENOTFOUND || rc == TR_EACCES
                                   ||  rc == TR_EMALFORMED || rc == TR_EEXIST))
            fprintf (stderr, "troupe broker: cannot start on '%s': %s (%s; the line "
                     "above says which file or folder, and why)\n", opts.bind,
                     tr_strerror (rc), tr_errname (rc));
        else
        if (opts.data_dir && (rc == TR_ENOTFOUND || rc == TR_EACCES || rc == TR_EEXIST
                          ||  rc == TR_EMALFORMED))
            fprintf (stderr, "troupe broker: cannot use the data folder '%s': %s\n",
                     opts.data_dir,
                     rc == TR_ENOTFOUND? "no such folder":
                     rc == TR_EACCES? "not writable":
                     rc == TR_EEXIST? "another broker uses it":
                     "its scratchpad log is damaged (the log above says where; keep "
                     "a copy, then cut or remove it)");
        else
            fprintf (stderr, "troupe broker: cannot listen on '%s': %s\n", opts.bind,
                     tr_strerror (rc));
        pthread_sigmask (SIG_SETMASK, &old_mask, NULL);
        return rc == TR_EINVAL? TR_CLI_USAGE: TR_CLI_FAILED;
    }
    printf ("troupe broker: listening on %s (pid %d)\n", tr_broker_endpoint (broker),
            (int) getpid ());
    fflush (stdout);

    int sig;
    do
        sig = sigwaitinfo (&stops, NULL);
    while (sig < 0);
    tr_log (TR_LOG_INFO, "%s: stopping the broker", strsignal (sig));
    tr_broker_stats_t stats;
    tr_broker_stats (broker, &stats);
    tr_log (TR_LOG_INFO, "broker: %llu clients joined, %llu messages routed, %llu bounced, "
            "%llu events, %llu scratchpad writes (%llu keys at version %llu)",
            (unsigned long long) stats.joined, (unsigned long long) stats.routed,
            (unsigned long long) stats.bounced, (unsigned long long) stats.events,
            (unsigned long long) stats.kv_writes, (unsigned long long) stats.kv_keys,
            (unsigned long long) stats.kv_version);
    //  What it refused or could not deliver, for whoever reads the log
    //  after an attack or an overload.
    tr_log (TR_LOG_INFO, "broker: refused: %llu malformed, %llu other requests, %llu CURVE "
            "handshakes; dropped: %llu event copies for slow subscribers, %llu answers or "
            "bounces to full clients; %llu clients declared dead",
            (unsigned long long) stats.malformed, (unsigned long long) stats.refused,
            (unsigned long long) stats.auth_refused, (unsigned long long) stats.events_dropped,
            (unsigned long long) stats.lost, (unsigned long long) stats.dead);
    tr_broker_stop (&broker);
    pthread_sigmask (SIG_SETMASK, &old_mask, NULL);
    return TR_CLI_OK;
}

const tr_cli_command_t tr_cli_broker = {
    "broker", "run a broker that links nodes and external actors", S_USAGE, s_broker
};
