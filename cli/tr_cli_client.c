/*  tr_cli_client.c - commands that act on a troupe through its broker:
    send, ask, pub, sub, nodes and kv.

    Each command joins the broker as a small node of its own (id
    "troupe-cli:HOST:PID"), does its work and leaves. Values go in as
    JSON on the command line and come out as JSON, one value per line;
    on the wire they are msgpack (tr_json.h). Every JSON argument is read
    and checked before anything is sent: bad JSON is a usage error (exit
    2) with its line and column.

    The broker is --broker ENDPOINT, else $TROUPE_BROKER, else
    tcp://127.0.0.1:7700. Joining is checked first with a round trip to
    the broker (the list of nodes), so that a missing broker gives one
    clear message, within --timeout (default 2s), instead of a silent
    wait. The same round trip after a tell or a publish makes sure the
    broker has taken it before the command leaves, and a tell the broker
    sent back (a dead letter on this node) fails the command.

    CURVE (2-broker.md 2.10): --curve SECRET_FILE (this client's key
    pair) and --server-key PUBLIC_FILE (the broker's public key), else
    $TROUPE_CURVE_SECRET and $TROUPE_SERVER_KEY (which `troupe run`
    gives its process children). A broker that refuses the key never
    answers: the handshake fails before any command is read, so the
    message is the same as for a missing broker, with a hint.
*/

#include "tr_cli.h"
#include "tr_curve.h"
#include "tr_json.h"

#include <troupe.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_DEFAULT_BROKER    "tcp://127.0.0.1:7700"
#define S_BROKER_WAIT_MS    2000        //  default --timeout for the broker
#define S_ASK_WAIT_MS       5000        //  default --timeout for an ask's answer
#define S_KEY_MAX           1024

//  Which options a command takes besides --broker and --timeout.
#define S_OPT_TTL       1
#define S_OPT_COUNT     2
#define S_OPT_FOR       4
#define S_OPT_JSON      8
#define S_OPT_META      16

typedef struct {
    const char *command;            //  "send", "kv put": for messages
    const char *broker;
    const char *curve;              //  this client's secret key file, or NULL
    const char *server_key;         //  the broker's public key file
    int timeout_ms;                 //  0: the command's default
    int64_t ttl_ms;
    long count;                     //  0: no limit
    int64_t for_ms;                 //  0: no limit
    bool json, meta;
    const char *args [3];
    int nargs;
} s_opts_t;

//  A command's node, joined to its broker.
typedef struct {
    tr_node_t *node;
    char id [128];
    const char *endpoint;
    int wait_ms;                    //  for the broker's answers
} s_client_t;

//  --------------------------------------------------------------------------
//  Arguments

//  "2s", "1500ms": a wait for messages.
static const char *
s_wait_text (int ms, char *buf, size_t size)
{
    if (ms % 1000 == 0)
        snprintf (buf, size, "%ds", ms / 1000);
    else
        snprintf (buf, size, "%dms", ms);
    return buf;
}

//  Reads a duration option's value into *ms (> 0, at most max_ms).
static int
s_duration (const s_opts_t *opts, const char *option, const char *text, int64_t max_ms,
            int64_t *ms)
{
    if (!text || tr_duration_parse (text, strlen (text), ms) != TR_OK || *ms <= 0
    ||  *ms > max_ms) {
        fprintf (stderr, "troupe %s: %s needs a duration such as 500ms, 2s or 5m, not '%s'\n",
                 opts->command, option, text? text: "(nothing)");
        return -1;
    }
    return 0;
}

//  Parses argv into opts: --broker and --timeout always, the options in
//  `allowed`, then min_args to max_args positional arguments. An argument
//  that starts with '-' and a digit is a positional (a negative number
//  as JSON); "--" ends the options. Returns 0 or TR_CLI_USAGE (printed).
//  The embedded broker of the one tree running here (`troupe run`'s
//  default: NAME.broker in the control folder), as an endpoint in buf.
//  False if there is none, or more than one.
static bool
s_tree_broker (char *buf, size_t size)
{
    char dir [200];
    int rc = tr_control_dir (dir, sizeof dir, false);
    DIR *d = rc == TR_OK? opendir (dir): NULL;
    size_t found = 0;
    struct dirent *entry;
    while (d && (entry = readdir (d))) {
        size_t len = strlen (entry->d_name);
        char path [300];
        if (len <= 7 || strcmp (entry->d_name + len - 7, ".broker") != 0)
            continue;
        int n = snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
        if (n > 0 && (size_t) n < sizeof path && tr_control_live (path)
        &&  found++ == 0)
            snprintf (buf, size, "ipc://%.*s", (int) (size > 7? size - 7: 0), path);
    }
    if (d)
        closedir (d);
    return found == 1;
}

static int
s_parse (int argc, char **argv, const char *command, int allowed, int min_args,
         int max_args, const char *usage, s_opts_t *opts)
{
    memset (opts, 0, sizeof *opts);
    opts->command = command;
    bool options = true;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv [i];
        const char *value = i + 1 < argc? argv [i + 1]: NULL;
        int64_t ms;
        if (options && strcmp (arg, "--") == 0)
            options = false;
        else
        if (options && strcmp (arg, "--broker") == 0) {
            if (!value || !*value) {
                fprintf (stderr, "troupe %s: --broker needs an endpoint such as %s\n",
                         command, S_DEFAULT_BROKER);
                return TR_CLI_USAGE;
            }
            opts->broker = argv [++i];
        }
        else
        if (options && (strcmp (arg, "--curve") == 0 || strcmp (arg, "--server-key") == 0)) {
            if (!value || !*value) {
                fprintf (stderr, "troupe %s: %s needs a key file\n", command, arg);
                return TR_CLI_USAGE;
            }
            *(arg [2] == 'c'? &opts->curve: &opts->server_key) = argv [++i];
        }
        else
        if (options && strcmp (arg, "--timeout") == 0) {
            if (s_duration (opts, arg, value, INT32_MAX, &ms))
                return TR_CLI_USAGE;
            opts->timeout_ms = (int) ms;
            i++;
        }
        else
        if (options && (allowed & S_OPT_TTL) && strcmp (arg, "--ttl") == 0) {
            if (s_duration (opts, arg, value, INT64_MAX, &opts->ttl_ms))
                return TR_CLI_USAGE;
            i++;
        }
        else
        if (options && (allowed & S_OPT_FOR) && strcmp (arg, "--for") == 0) {
            if (s_duration (opts, arg, value, INT64_MAX, &opts->for_ms))
                return TR_CLI_USAGE;
            i++;
        }
        else
        if (options && (allowed & S_OPT_COUNT) && strcmp (arg, "--count") == 0) {
            if (tr_cli_parse_count (arg, value, 1000000000L, &opts->count))
                return TR_CLI_USAGE;
            i++;
        }
        else
        if (options && (allowed & S_OPT_JSON) && strcmp (arg, "--json") == 0)
            opts->json = true;
        else
        if (options && (allowed & S_OPT_META) && strcmp (arg, "--meta") == 0)
            opts->meta = true;
        else
        if (options && arg [0] == '-' && arg [1] && !(arg [1] >= '0' && arg [1] <= '9')) {
            fprintf (stderr, "troupe %s: unknown option '%s'\n%s", command, arg, usage);
            return TR_CLI_USAGE;
        }
        else
        if (opts->nargs < max_args)
            opts->args [opts->nargs++] = arg;
        else {
            fprintf (stderr, "troupe %s: unexpected argument '%s'\n%s", command, arg, usage);
            return TR_CLI_USAGE;
        }
    }
    if (opts->nargs < min_args) {
        fprintf (stderr, "troupe %s: missing arguments\n%s", command, usage);
        return TR_CLI_USAGE;
    }
    if (!opts->broker)
        opts->broker = getenv ("TROUPE_BROKER");
    static char found [320];
    if ((!opts->broker || !*opts->broker) && s_tree_broker (found, sizeof found))
        opts->broker = found;
    if (!opts->broker || !*opts->broker)
        opts->broker = S_DEFAULT_BROKER;
    if (!opts->curve && !opts->server_key) {
        const char *a = getenv ("TROUPE_CURVE_SECRET"), *b = getenv ("TROUPE_SERVER_KEY");
        opts->curve = a && *a? a: NULL;
        opts->server_key = b && *b? b: NULL;
    }
    if (!opts->curve != !opts->server_key) {
        fprintf (stderr, "troupe %s: CURVE takes both --curve SECRET_FILE and --server-key "
                 "PUBLIC_FILE (or $TROUPE_CURVE_SECRET and $TROUPE_SERVER_KEY)\n", command);
        return TR_CLI_USAGE;
    }
    return 0;
}

//  Reads a JSON argument into msgpack (*data_p, malloc'd). Returns 0 or
//  TR_CLI_USAGE after printing where the JSON is wrong.
static int
s_json_arg (const s_opts_t *opts, const char *what, const char *text, char **data_p,
            size_t *size_p)
{
    tr__json_error_t err;
    if (tr__json_parse (text, strlen (text), data_p, size_p, &err) == 0)
        return 0;
    fprintf (stderr, "troupe %s: %s is not valid JSON: %d:%d: %s\n", opts->command, what,
             err.line, err.column, err.message);
    return TR_CLI_USAGE;
}

//  An actor name or a topic (the same alphabet). Returns 0 or TR_CLI_USAGE.
static int
s_name_arg (const s_opts_t *opts, const char *what, const char *name)
{
    if (tr_name_check (name, strlen (name)) == TR_OK)
        return 0;
    fprintf (stderr, "troupe %s: '%s' is not a valid %s (1 to %d bytes of UTF-8, no "
             "spaces or control characters)\n", opts->command, name, what, TR_NAME_MAX);
    return TR_CLI_USAGE;
}

//  A scratchpad key: 1 to 1,024 bytes without spaces or control
//  characters. Returns 0 or TR_CLI_USAGE.
static int
s_key_arg (const s_opts_t *opts, const char *key, bool empty_ok)
{
    size_t len = strlen (key);
    bool ok = (len > 0 || empty_ok) && len <= S_KEY_MAX;
    for (size_t i = 0; ok && i < len; i++)
        if ((unsigned char) key [i] <= ' ' || key [i] == 0x7f)
            ok = false;
    if (ok)
        return 0;
    fprintf (stderr, "troupe %s: '%s' is not a valid key (1 to %d bytes, no spaces or "
             "control characters)\n", opts->command, key, S_KEY_MAX);
    return TR_CLI_USAGE;
}

//  --------------------------------------------------------------------------
//  The node

//  Prints why a call failed: the broker's silence in words, anything
//  else by its error name. Returns TR_CLI_FAILED.
static int
s_failed (const s_opts_t *opts, const s_client_t *client, int rc, const char *what)
{
    char wait [32];
    if (rc == TR_ETIMEDOUT)
        fprintf (stderr, "troupe %s: %s: the broker at %s did not answer within %s "
                 "(TR_ETIMEDOUT)\n", opts->command, what, client->endpoint,
                 s_wait_text (client->wait_ms, wait, sizeof wait));
    else
        fprintf (stderr, "troupe %s: %s: %s (%s)\n", opts->command, what, tr_strerror (rc),
                 tr_errname (rc));
    return TR_CLI_FAILED;
}

//  Starts the command's node on the broker and waits until the broker
//  answers, up to the timeout. On success, if peers_p is not NULL, it
//  gets the list of nodes (malloc'd msgpack, see tr_node_peers). Returns
//  0, or TR_CLI_FAILED after printing why (the node is then gone).
static int
s_join (const s_opts_t *opts, s_client_t *client, uint8_t **peers_p, size_t *peers_size)
{
    memset (client, 0, sizeof *client);
    client->endpoint = opts->broker;
    client->wait_ms = opts->timeout_ms? opts->timeout_ms: S_BROKER_WAIT_MS;
    char host [64] = "host";
    gethostname (host, sizeof host - 1);
    host [sizeof host - 1] = 0;
    snprintf (client->id, sizeof client->id, "troupe-cli:%s:%d", host, (int) getpid ());
    tr_node_opts_t node_opts = {
        .max_actors = 64, .stop_timeout_ms = 2000,
        .broker = opts->broker, .node_id = client->id,
        .curve_secret_file = opts->curve, .curve_server_public_file = opts->server_key
    };
    int rc = tr_node_new (&node_opts, &client->node);
    if (rc != TR_OK) {
        fprintf (stderr, "troupe %s: cannot start a node for the broker at %s: %s (%s)\n",
                 opts->command, opts->broker, tr_strerror (rc), tr_errname (rc));
        return rc == TR_EINVAL? TR_CLI_USAGE: TR_CLI_FAILED;
    }
    uint8_t *peers = NULL;
    size_t size = 0;
    rc = tr_node_peers (client->node, client->wait_ms, &peers, &size);
    if (rc != TR_OK) {
        char wait [32];
        if (rc == TR_ETIMEDOUT) {
            fprintf (stderr, "troupe %s: no broker answered at %s within %s\n", opts->command,
                     opts->broker, s_wait_text (client->wait_ms, wait, sizeof wait));
            if (opts->curve)
                fprintf (stderr, "(with CURVE, a broker that refuses this client's key, or "
                         "a wrong --server-key, looks the same: see the broker's log)\n");
            else
            if (!tr__curve_endpoint_local (opts->broker))
                fprintf (stderr, "(a broker beyond this host uses CURVE: it does not answer "
                         "a client without --curve and --server-key)\n");
        }
        else
            fprintf (stderr, "troupe %s: the broker at %s: %s (%s)\n", opts->command,
                     opts->broker, tr_strerror (rc), tr_errname (rc));
        tr_node_destroy (&client->node);
        return TR_CLI_FAILED;
    }
    if (peers_p) {
        *peers_p = peers;
        *peers_size = size;
    }
    else
        free (peers);
    return 0;
}

//  One more round trip to the broker: what this node sent before it has
//  been taken (and bounced, if it was). Returns TR_OK or an error.
static int
s_sync (s_client_t *client)
{
    uint8_t *peers = NULL;
    size_t size = 0;
    int rc = tr_node_peers (client->node, client->wait_ms, &peers, &size);
    free (peers);
    return rc;
}

static uint64_t
s_dead_letters (s_client_t *client)
{
    tr_node_stats_t stats;
    return tr_node_stats (client->node, &stats) == TR_OK? stats.dead_letters: 0;
}

//  --------------------------------------------------------------------------
//  send, ask, pub

#define S_COMMON \
    "  --broker ENDPOINT     the broker (default $TROUPE_BROKER, else the\n" \
    "                        embedded broker of the one 'troupe run' here,\n" \
    "                        else " S_DEFAULT_BROKER ")\n" \
    "  --curve SECRET_FILE   CURVE: this client's key pair (troupe keygen;\n" \
    "                        its public key in the broker's allow folder);\n" \
    "                        default $TROUPE_CURVE_SECRET\n" \
    "  --server-key FILE     with --curve: the broker's public key file;\n" \
    "                        default $TROUPE_SERVER_KEY\n"
#define S_TIMEOUT_2S \
    "  --timeout DURATION    how long to wait for the broker (default 2s)\n"
#define S_EXIT \
    "Exit status: 0 success; 1 failure (no broker, an error: its name is\n" \
    "printed, such as TR_ENOACTOR); 2 usage error, bad JSON among them\n" \
    "(reported as LINE:COLUMN: what is wrong).\n"

#define S_SEND_USAGE \
    "usage: troupe send NAME JSON [--broker ENDPOINT] [--timeout DURATION]\n\n" \
    "Tells the actor NAME, on whichever node of the troupe holds it, the\n" \
    "message JSON (sent as msgpack). Returns once the broker has taken it;\n" \
    "fails if the broker sent it back (no actor of that name).\n\n" \
    S_COMMON S_TIMEOUT_2S "\n" S_EXIT

static int
s_send (int argc, char **argv)
{
    s_opts_t opts;
    char *body = NULL;
    size_t size = 0;
    int status = s_parse (argc, argv, "send", 0, 2, 2, S_SEND_USAGE, &opts);
    if (!status)
        status = s_name_arg (&opts, "actor name", opts.args [0]);
    if (!status)
        status = s_json_arg (&opts, "the message", opts.args [1], &body, &size);
    s_client_t client;
    if (!status)
        status = s_join (&opts, &client, NULL, NULL);
    if (status) {
        free (body);
        return status;
    }
    uint64_t dead = s_dead_letters (&client);
    int rc = tr_tell (client.node, opts.args [0], body, size, NULL);
    //  Two round trips: the link's own requests overtake queued messages
    //  on their way out, so the first may pass the tell; by its answer the
    //  tell has left, and the second's answer comes after its bounce.
    if (rc == TR_OK)
        rc = s_sync (&client);
    if (rc == TR_OK)
        rc = s_sync (&client);
    if (rc != TR_OK)
        status = s_failed (&opts, &client, rc, opts.args [0]);
    else
    if (s_dead_letters (&client) != dead) {
        fprintf (stderr, "troupe send: the broker sent the message back: no actor named "
                 "'%s' could take it (TR_ENOACTOR, or its mailbox was full)\n", opts.args [0]);
        status = TR_CLI_FAILED;
    }
    tr_node_destroy (&client.node);
    free (body);
    return status;
}

#define S_ASK_USAGE \
    "usage: troupe ask NAME JSON [--timeout DURATION] [--broker ENDPOINT]\n\n" \
    "Asks the actor NAME, on whichever node of the troupe holds it, with the\n" \
    "message JSON, and prints its answer as one line of JSON (an empty\n" \
    "answer as null). An error answer, or none in time, prints the error's\n" \
    "name (TR_ENOACTOR, TR_ETIMEDOUT, TR_EHANDLER...) and exits 1.\n\n" \
    S_COMMON \
    "  --timeout DURATION    how long to wait for the broker, then for the\n" \
    "                        answer (default 2s for the broker, 5s for the\n" \
    "                        answer)\n\n" S_EXIT

static int
s_ask (int argc, char **argv)
{
    s_opts_t opts;
    char *body = NULL;
    size_t size = 0;
    int status = s_parse (argc, argv, "ask", 0, 2, 2, S_ASK_USAGE, &opts);
    if (!status)
        status = s_name_arg (&opts, "actor name", opts.args [0]);
    if (!status)
        status = s_json_arg (&opts, "the message", opts.args [1], &body, &size);
    s_client_t client;
    if (!status)
        status = s_join (&opts, &client, NULL, NULL);
    if (status) {
        free (body);
        return status;
    }
    int wait_ms = opts.timeout_ms? opts.timeout_ms: S_ASK_WAIT_MS;
    tr_msg_t *reply = NULL;
    int rc = tr_ask (client.node, opts.args [0], body, size, wait_ms, &reply, NULL);
    if (rc != TR_OK) {
        char wait [32];
        if (rc == TR_ETIMEDOUT)
            fprintf (stderr, "troupe ask: %s: no answer within %s (TR_ETIMEDOUT)\n",
                     opts.args [0], s_wait_text (wait_ms, wait, sizeof wait));
        else
            fprintf (stderr, "troupe ask: %s: %s (%s)\n", opts.args [0], tr_strerror (rc),
                     tr_errname (rc));
        status = TR_CLI_FAILED;
    }
    else
    if (tr_msg_size (reply) == 0)
        puts ("null");
    else
    if (tr__json_write_msgpack (stdout, tr_msg_body (reply), tr_msg_size (reply), 0)) {
        fprintf (stderr, "troupe ask: %s answered with bytes that are not one msgpack "
                 "value\n", opts.args [0]);
        status = TR_CLI_FAILED;
    }
    tr_msg_destroy (&reply);
    tr_node_destroy (&client.node);
    free (body);
    if (fflush (stdout))
        status = TR_CLI_FAILED;
    return status;
}

#define S_PUB_USAGE \
    "usage: troupe pub TOPIC JSON [--broker ENDPOINT] [--timeout DURATION]\n\n" \
    "Publishes the event TOPIC with the body JSON to every subscriber in the\n" \
    "troupe whose prefix matches it ('troupe sub PREFIX' among them). TOPIC:\n" \
    "1 to 255 bytes, no spaces; topics starting with 'sys.' are the\n" \
    "runtime's. Returns once the broker has taken the event.\n\n" \
    S_COMMON S_TIMEOUT_2S "\n" S_EXIT

static int
s_pub (int argc, char **argv)
{
    s_opts_t opts;
    char *body = NULL;
    size_t size = 0;
    int status = s_parse (argc, argv, "pub", 0, 2, 2, S_PUB_USAGE, &opts);
    if (!status)
        status = s_name_arg (&opts, "topic", opts.args [0]);
    if (!status && strncmp (opts.args [0], "sys.", 4) == 0) {
        fprintf (stderr, "troupe pub: topics starting with 'sys.' are the runtime's own\n");
        status = TR_CLI_USAGE;
    }
    if (!status)
        status = s_json_arg (&opts, "the body", opts.args [1], &body, &size);
    s_client_t client;
    if (!status)
        status = s_join (&opts, &client, NULL, NULL);
    if (status) {
        free (body);
        return status;
    }
    int rc = tr_event_publish (client.node, opts.args [0], body, size, NULL);
    if (rc == TR_OK)
        rc = s_sync (&client);
    if (rc != TR_OK)
        status = s_failed (&opts, &client, rc, opts.args [0]);
    tr_node_destroy (&client.node);
    free (body);
    return status;
}

//  --------------------------------------------------------------------------
//  sub

#define S_SUB_USAGE \
    "usage: troupe sub PREFIX [--count N] [--for DURATION] [--broker ENDPOINT]\n" \
    "                         [--timeout DURATION]\n\n" \
    "Subscribes to every event of the troupe whose topic starts with PREFIX\n" \
    "('' for all, the runtime's 'sys.' events included) and prints each as\n" \
    "one line of JSON: {\"topic\": TOPIC, \"body\": BODY}. Once subscribed,\n" \
    "it says so on standard error. Runs until SIGINT or SIGTERM (Ctrl-C),\n" \
    "or until N events (--count) or DURATION (--for) have passed. The\n" \
    "subscriber is an actor named troupe-sub-PID.\n\n" \
    S_COMMON S_TIMEOUT_2S \
    "  --count N             stop after N events\n" \
    "  --for DURATION        stop after DURATION, such as 30s\n\n" \
    "Exit status: 0 after a stop; 1 if no broker answered; 2 usage error.\n"

//  The subscriber actor's state: shared with the main thread.
typedef struct {
    bool watch;                     //  scratchpad changes, not events
    long count;                     //  events to print; 0: no limit
    long printed;                   //  actor thread only
    atomic_bool done;               //  count reached, or stdout failed
} s_sub_t;

static int
s_sub_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_sub_t *sub = (s_sub_t *) state;
    if (atomic_load (&sub->done))
        return 0;
    //  [topic, body]
    msgpack_unpacked event;
    msgpack_unpacked_init (&event);
    size_t offset = 0;
    bool parsed = msgpack_unpack_next (&event, (const char *) tr_msg_body (msg),
                                       tr_msg_size (msg), &offset) == MSGPACK_UNPACK_SUCCESS
               && event.data.type == MSGPACK_OBJECT_ARRAY;
    const msgpack_object *item = parsed? event.data.via.array.ptr: NULL;
    if (parsed && !sub->watch && event.data.via.array.size == 2) {
        fputs ("{\"topic\":", stdout);
        tr__json_write (stdout, &item [0], 0);
        fputs (",\"body\":", stdout);
        tr__json_write (stdout, &item [1], 0);
        fputs ("}\n", stdout);
    }
    else
    if (parsed && sub->watch && event.data.via.array.size == 3) {
        //  [KEY, VERSION, VALUE]; version 0 is the resync notice.
        bool resync = item [1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && item [1].via.u64 == 0;
        fputs (resync? "{\"resync\":": "{\"key\":", stdout);
        tr__json_write (stdout, &item [0], 0);
        if (!resync) {
            fputs (",\"version\":", stdout);
            tr__json_write (stdout, &item [1], 0);
            fputs (",\"value\":", stdout);
            tr__json_write (stdout, &item [2], 0);
        }
        fputs ("}\n", stdout);
    }
    else
        parsed = false;
    if (parsed && (fflush (stdout) || (sub->count && ++sub->printed >= sub->count)))
        atomic_store (&sub->done, true);
    msgpack_unpacked_destroy (&event);
    return 0;
}

static const tr_behaviour_t s_sub_behaviour = { .handle = s_sub_handle };

//  Waits for the end: a stop signal, the count, or --for.
static void
s_sub_wait (const s_opts_t *opts, s_sub_t *sub, const sigset_t *stops)
{
    struct timespec start;
    clock_gettime (CLOCK_MONOTONIC, &start);
    while (!atomic_load (&sub->done)) {
        struct timespec tick = { 0, 20 * 1000 * 1000 };
        if (sigtimedwait (stops, NULL, &tick) > 0)
            return;
        if (opts->for_ms > 0) {
            struct timespec now;
            clock_gettime (CLOCK_MONOTONIC, &now);
            int64_t ms = (int64_t) (now.tv_sec - start.tv_sec) * 1000
                       + (now.tv_nsec - start.tv_nsec) / 1000000;
            if (ms >= opts->for_ms)
                return;
        }
    }
}

//  sub and kv watch: joins, spawns an actor that prints what it is told
//  (events or scratchpad changes, per sub->watch), has prefix followed
//  for it, and prints until a stop signal, --count or --for.
static int
s_follow (s_opts_t *opts, const char *command, const char *prefix, s_sub_t *sub)
{
    //  The stop signals are taken by this thread alone (sigtimedwait):
    //  blocked before the node's threads exist, so all inherit the mask.
    sigset_t stops, old_mask;
    sigemptyset (&stops);
    sigaddset (&stops, SIGINT);
    sigaddset (&stops, SIGTERM);
    sigaddset (&stops, SIGHUP);
    sigaddset (&stops, SIGQUIT);
    pthread_sigmask (SIG_BLOCK, &stops, &old_mask);

    s_client_t client;
    int status = s_join (opts, &client, NULL, NULL);
    if (status) {
        pthread_sigmask (SIG_SETMASK, &old_mask, NULL);
        return status;
    }
    atomic_init (&sub->done, false);
    char name [64];
    snprintf (name, sizeof name, "troupe-%s-%d", sub->watch? "watch": "sub", (int) getpid ());
    int rc = tr_spawn (client.node, name, &s_sub_behaviour, sub, NULL, NULL);
    if (rc == TR_OK)
        rc = sub->watch? tr_scratch_watch (client.node, prefix, name):
                         tr_event_subscribe (client.node, prefix, name);
    //  Once the broker has answered after the subscription or watch, it
    //  has it.
    if (rc == TR_OK)
        rc = s_sync (&client);
    if (rc == TR_OK) {
        fprintf (stderr, "troupe %s: %s '%s' at %s\n", command,
                 sub->watch? "watching": "subscribed to", prefix, client.endpoint);
        s_sub_wait (opts, sub, &stops);
    }
    else
        status = s_failed (opts, &client, rc, sub->watch? "cannot watch": "cannot subscribe");
    tr_node_destroy (&client.node);
    pthread_sigmask (SIG_SETMASK, &old_mask, NULL);
    return status;
}

static int
s_sub (int argc, char **argv)
{
    s_opts_t opts;
    int status = s_parse (argc, argv, "sub", S_OPT_COUNT | S_OPT_FOR, 1, 1, S_SUB_USAGE,
                          &opts);
    const char *prefix = status? NULL: opts.args [0];
    if (prefix && *prefix && s_name_arg (&opts, "prefix", prefix))
        status = TR_CLI_USAGE;
    if (status)
        return status;
    s_sub_t sub = { .count = opts.count };
    return s_follow (&opts, "sub", prefix, &sub);
}

//  --------------------------------------------------------------------------
//  nodes

#define S_NODES_USAGE \
    "usage: troupe nodes [--json] [--broker ENDPOINT] [--timeout DURATION]\n\n" \
    "Lists the nodes and other clients joined to the broker: id, kind, time\n" \
    "since joining and how many names each holds (this command's own node\n" \
    "left out). --json prints the broker's list as JSON instead:\n" \
    "[{\"id\", \"kind\", \"names\", \"age_ms\"}...].\n\n" \
    S_COMMON S_TIMEOUT_2S "  --json                JSON instead of a table\n\n" \
    "Exit status: 0 success; 1 if no broker answered; 2 usage error.\n"

//  The value of `key` in a map object, or NULL.
static const msgpack_object *
s_field (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len
        &&  memcmp (k->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

static bool
s_is_str (const msgpack_object *obj, const char *text)
{
    return obj && obj->type == MSGPACK_OBJECT_STR && obj->via.str.size == strlen (text)
        && memcmp (obj->via.str.ptr, text, obj->via.str.size) == 0;
}

static void
s_nodes_row (const msgpack_object *peer)
{
    const msgpack_object *id = s_field (peer, "id");
    const msgpack_object *kind = s_field (peer, "kind");
    const msgpack_object *age = s_field (peer, "age_ms");
    const msgpack_object *names = s_field (peer, "names");
    char age_text [32] = "-";
    if (age && age->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        uint64_t ms = age->via.u64;
        if (ms < 60000)
            snprintf (age_text, sizeof age_text, "%.1fs", (double) ms / 1000);
        else
        if (ms < 3600000)
            snprintf (age_text, sizeof age_text, "%um%02us", (unsigned) (ms / 60000),
                      (unsigned) (ms / 1000 % 60));
        else
            snprintf (age_text, sizeof age_text, "%uh%02um", (unsigned) (ms / 3600000),
                      (unsigned) (ms / 60000 % 60));
    }
    bool id_ok = id && id->type == MSGPACK_OBJECT_STR;
    bool kind_ok = kind && kind->type == MSGPACK_OBJECT_STR;
    printf ("%-32.*s %-8.*s %-8s ", id_ok? (int) id->via.str.size: 1,
            id_ok? id->via.str.ptr: "-", kind_ok? (int) kind->via.str.size: 1,
            kind_ok? kind->via.str.ptr: "-", age_text);
    //  The broker gives the number of names a client holds (a node's
    //  count includes its reply address, "$node.ID").
    if (names && names->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        printf ("%" PRIu64 "\n", names->via.u64);
    else
        printf ("-\n");
}

static int
s_nodes (int argc, char **argv)
{
    s_opts_t opts;
    int status = s_parse (argc, argv, "nodes", S_OPT_JSON, 0, 0, S_NODES_USAGE, &opts);
    s_client_t client;
    uint8_t *peers = NULL;
    size_t size = 0;
    if (!status)
        status = s_join (&opts, &client, &peers, &size);
    if (status)
        return status;
    tr_node_destroy (&client.node);
    msgpack_unpacked list;
    msgpack_unpacked_init (&list);
    size_t offset = 0;
    if (msgpack_unpack_next (&list, (const char *) peers, size, &offset) != MSGPACK_UNPACK_SUCCESS
    ||  list.data.type != MSGPACK_OBJECT_ARRAY) {
        fprintf (stderr, "troupe nodes: the broker's list is malformed\n");
        status = TR_CLI_FAILED;
    }
    else {
        //  Without this command's own node.
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init (&sb);
        msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
        uint32_t n = 0;
        for (uint32_t i = 0; i < list.data.via.array.size; i++)
            n += !s_is_str (s_field (&list.data.via.array.ptr [i], "id"), client.id);
        msgpack_pack_array (&pk, n);
        if (!opts.json)
            printf ("%-32s %-8s %-8s %s\n", "ID", "KIND", "AGE", "NAMES");
        for (uint32_t i = 0; i < list.data.via.array.size; i++) {
            const msgpack_object *peer = &list.data.via.array.ptr [i];
            if (s_is_str (s_field (peer, "id"), client.id))
                continue;
            msgpack_pack_object (&pk, *peer);
            if (!opts.json)
                s_nodes_row (peer);
        }
        if (opts.json)
            tr__json_write_msgpack (stdout, sb.data, sb.size, 2);
        msgpack_sbuffer_destroy (&sb);
    }
    msgpack_unpacked_destroy (&list);
    free (peers);
    if (fflush (stdout))
        status = TR_CLI_FAILED;
    return status;
}

//  --------------------------------------------------------------------------
//  kv

#define S_KV_USAGE \
    "usage: troupe kv get KEY [--meta]\n" \
    "       troupe kv put KEY JSON [--ttl DURATION]\n" \
    "       troupe kv cas KEY VERSION JSON [--ttl DURATION]\n" \
    "       troupe kv del KEY\n" \
    "       troupe kv ls [PREFIX] [--json]\n" \
    "       troupe kv watch PREFIX [--count N] [--for DURATION]\n" \
    "   each with [--broker ENDPOINT] [--timeout DURATION]\n\n" \
    "The troupe's scratchpad, kept by the broker: keys (1 to 1,024 bytes, no\n" \
    "spaces) holding JSON values (msgpack on the wire). Every write gets a\n" \
    "version, higher than every one before it.\n\n" \
    "  get    prints the value as one line of JSON; --meta prints\n" \
    "         {\"value\", \"version\", \"ttl_ms\"} instead (ttl_ms 0: no expiry)\n" \
    "  put    stores the value (for DURATION with --ttl); prints its version\n" \
    "  cas    stores the value only if the key is at VERSION (0: only if it\n" \
    "         does not exist); prints the new version; else exits 1 with\n" \
    "         TR_ECONFLICT\n" \
    "  del    removes the key; prints the version of the removal\n" \
    "  ls     lists the keys under PREFIX (all without it), in byte order,\n" \
    "         one per line: KEY VERSION; --json prints [[KEY, VERSION]...]\n" \
    "  watch  prints each change under PREFIX (\"\" for all) as one JSON line,\n" \
    "         {\"key\", \"version\", \"value\"} (value null for a removal), until\n" \
    "         Ctrl-C, N changes (--count) or DURATION (--for); {\"resync\": PREFIX}\n" \
    "         if the broker could not keep up (read again what you need)\n\n" \
    S_COMMON S_TIMEOUT_2S "\n" \
    "Exit status: 0 success; 1 failure (no broker, no such key TR_ENOTFOUND,\n" \
    "TR_ECONFLICT...); 2 usage error, bad JSON among them (LINE:COLUMN).\n"

static int
s_kv_get (s_opts_t *opts, s_client_t *client)
{
    tr_scratch_value_t value = { 0 };
    int rc = tr_scratch_get (client->node, opts->args [0], client->wait_ms, &value);
    if (rc != TR_OK)
        return s_failed (opts, client, rc, opts->args [0]);
    int status = TR_CLI_OK;
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    if (msgpack_unpack_next (&result, (const char *) value.data, value.size, &offset)
        != MSGPACK_UNPACK_SUCCESS) {
        fprintf (stderr, "troupe kv get: the value of '%s' is not one msgpack value\n",
                 opts->args [0]);
        status = TR_CLI_FAILED;
    }
    else
    if (opts->meta) {
        fputs ("{\"value\":", stdout);
        tr__json_write (stdout, &result.data, 0);
        printf (",\"version\":%" PRIu64 ",\"ttl_ms\":%" PRId64 "}\n", value.version,
                value.ttl_ms);
    }
    else {
        tr__json_write (stdout, &result.data, 0);
        fputc ('\n', stdout);
    }
    msgpack_unpacked_destroy (&result);
    tr_scratch_value_free (&value);
    return status;
}

static int
s_kv_write (s_opts_t *opts, s_client_t *client, const char *op, const char *body,
            size_t size, uint64_t expected)
{
    uint64_t version = 0;
    int rc;
    if (strcmp (op, "put") == 0)
        rc = tr_scratch_put (client->node, opts->args [0], body, size, opts->ttl_ms,
                             client->wait_ms, &version);
    else
    if (strcmp (op, "cas") == 0)
        rc = tr_scratch_cas (client->node, opts->args [0], expected, body, size,
                             opts->ttl_ms, client->wait_ms, &version);
    else
        rc = tr_scratch_del (client->node, opts->args [0], client->wait_ms, &version);
    if (rc == TR_ECONFLICT) {
        fprintf (stderr, "troupe kv cas: '%s' is not at version %" PRIu64 "%s; nothing "
                 "changed (TR_ECONFLICT)\n", opts->args [0], expected,
                 expected? "": " (0: it must not exist)");
        return TR_CLI_FAILED;
    }
    if (rc != TR_OK) {
        s_failed (opts, client, rc, opts->args [0]);
        if (rc == TR_ETIMEDOUT && strcmp (op, "del") != 0)
            fprintf (stderr, "troupe kv %s: the write may or may not have been done\n", op);
        return TR_CLI_FAILED;
    }
    printf ("%" PRIu64 "\n", version);
    return TR_CLI_OK;
}

static int
s_kv_ls (s_opts_t *opts, s_client_t *client)
{
    const char *prefix = opts->nargs? opts->args [0]: "";
    uint8_t *list = NULL;
    size_t size = 0;
    int rc = tr_scratch_list (client->node, prefix, client->wait_ms, &list, &size);
    if (rc != TR_OK)
        return s_failed (opts, client, rc, *prefix? prefix: "the keys");
    int status = TR_CLI_OK;
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    if (msgpack_unpack_next (&result, (const char *) list, size, &offset) != MSGPACK_UNPACK_SUCCESS
    ||  result.data.type != MSGPACK_OBJECT_ARRAY) {
        fprintf (stderr, "troupe kv ls: the broker's list is malformed\n");
        status = TR_CLI_FAILED;
    }
    else
    if (opts->json)
        tr__json_write_msgpack (stdout, list, size, 0);
    else
        for (uint32_t i = 0; i < result.data.via.array.size; i++) {
            const msgpack_object *pair = &result.data.via.array.ptr [i];
            if (pair->type != MSGPACK_OBJECT_ARRAY || pair->via.array.size != 2
            ||  pair->via.array.ptr [0].type != MSGPACK_OBJECT_STR
            ||  pair->via.array.ptr [1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                continue;
            printf ("%.*s %" PRIu64 "\n", (int) pair->via.array.ptr [0].via.str.size,
                    pair->via.array.ptr [0].via.str.ptr, pair->via.array.ptr [1].via.u64);
        }
    msgpack_unpacked_destroy (&result);
    free (list);
    return status;
}

//  Reads "kv OP"'s arguments: 0 with the value's msgpack in *body_p
//  (put, cas) and the expected version (cas), or a CLI exit code.
static int
s_kv_args (int argc, char **argv, const char *op, const char *command, s_opts_t *opts,
           char **body_p, size_t *size_p, uint64_t *expected)
{
    bool get = !strcmp (op, "get"), put = !strcmp (op, "put"), cas = !strcmp (op, "cas");
    bool del = !strcmp (op, "del"), ls = !strcmp (op, "ls");
    int status;
    if (get)
        status = s_parse (argc, argv, command, S_OPT_META, 1, 1, S_KV_USAGE, opts);
    else
    if (put || cas)
        status = s_parse (argc, argv, command, S_OPT_TTL, put? 2: 3, put? 2: 3, S_KV_USAGE,
                          opts);
    else
    if (del)
        status = s_parse (argc, argv, command, 0, 1, 1, S_KV_USAGE, opts);
    else
        status = s_parse (argc, argv, command, S_OPT_JSON, 0, 1, S_KV_USAGE, opts);
    if (!status && (!ls || opts->nargs))
        status = s_key_arg (opts, opts->args [0], ls);
    if (!status && cas) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull (opts->args [1], &end, 10);
        if (errno || *end || !*opts->args [1] || opts->args [1][0] == '-') {
            fprintf (stderr, "troupe kv cas: VERSION must be a whole number (0: the key "
                     "must not exist), not '%s'\n", opts->args [1]);
            status = TR_CLI_USAGE;
        }
        *expected = v;
    }
    if (!status && (put || cas))
        status = s_json_arg (opts, "the value", opts->args [put? 1: 2], body_p, size_p);
    return status;
}

//  kv watch PREFIX: prints each change under PREFIX as a JSON line.
static int
s_kv_watch (int argc, char **argv)
{
    s_opts_t opts;
    int status = s_parse (argc, argv, "kv watch", S_OPT_COUNT | S_OPT_FOR, 1, 1, S_KV_USAGE,
                          &opts);
    if (!status)
        status = s_key_arg (&opts, opts.args [0], true);
    if (status)
        return status;
    s_sub_t sub = { .watch = true, .count = opts.count };
    return s_follow (&opts, "kv watch", opts.args [0], &sub);
}

static int
s_kv (int argc, char **argv)
{
    const char *op = argc > 1? argv [1]: "";
    if (strcmp (op, "watch") == 0)
        return s_kv_watch (argc - 1, argv + 1);
    if (strcmp (op, "get") && strcmp (op, "put") && strcmp (op, "cas")
    &&  strcmp (op, "del") && strcmp (op, "ls")) {
        if (*op)
            fprintf (stderr, "troupe kv: no operation '%s'\n", op);
        fputs (S_KV_USAGE, stderr);
        return TR_CLI_USAGE;
    }
    s_opts_t opts;
    char *body = NULL;
    size_t size = 0;
    uint64_t expected = 0;
    char command [16];
    snprintf (command, sizeof command, "kv %s", op);
    int status = s_kv_args (argc - 1, argv + 1, op, command, &opts, &body, &size, &expected);
    s_client_t client;
    if (!status)
        status = s_join (&opts, &client, NULL, NULL);
    if (status) {
        free (body);
        return status;
    }
    if (strcmp (op, "get") == 0)
        status = s_kv_get (&opts, &client);
    else
    if (strcmp (op, "ls") == 0)
        status = s_kv_ls (&opts, &client);
    else
        status = s_kv_write (&opts, &client, op, body, size, expected);
    tr_node_destroy (&client.node);
    free (body);
    if (fflush (stdout))
        status = TR_CLI_FAILED;
    return status;
}

//  --------------------------------------------------------------------------

const tr_cli_command_t tr_cli_send = {
    "send", "tell an actor anywhere in the troupe a JSON message", S_SEND_USAGE, s_send
};
const tr_cli_command_t tr_cli_ask = {
    "ask", "ask an actor anywhere in the troupe; print its answer", S_ASK_USAGE, s_ask
};
const tr_cli_command_t tr_cli_pub = {
    "pub", "publish an event to the troupe", S_PUB_USAGE, s_pub
};
const tr_cli_command_t tr_cli_sub = {
    "sub", "print the troupe's events under a topic prefix", S_SUB_USAGE, s_sub
};
const tr_cli_command_t tr_cli_nodes = {
    "nodes", "list the nodes joined to the broker", S_NODES_USAGE, s_nodes
};
const tr_cli_command_t tr_cli_kv = {
    "kv", "read and write the troupe's scratchpad", S_KV_USAGE, s_kv
};
