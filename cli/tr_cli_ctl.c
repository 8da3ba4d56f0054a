/*  tr_cli_ctl.c - commands that talk to a running tree through its
    control socket (tr_ctl.h): status, restart, stop, start, breaker,
    add; and `types`, which lists the actor types tree files can name.

    Each takes --tree NAME to pick a tree when several run (the default
    is the only one running) and --timeout DURATION for the answer
    (default 5s).
*/

#include "tr_cli.h"
#include "tr_ctl.h"
#include "tr_json.h"

#include <troupe.h>

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Options common to the control commands; the rest are positional.
typedef struct {
    const char *tree;
    int timeout_ms;
    bool json;
    const char *args [4];
    int nargs;
} s_opts_t;

//  Parses argv into opts. `json_ok` allows --json. Returns 0, or a CLI
//  exit code after printing the usage error.
static int
s_parse (int argc, char **argv, bool json_ok, int min_args, int max_args,
         const char *usage, s_opts_t *opts)
{
    memset (opts, 0, sizeof *opts);
    opts->timeout_ms = 5000;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv [i];
        if (strcmp (arg, "--tree") == 0 && i + 1 < argc)
            opts->tree = argv [++i];
        else
        if (strcmp (arg, "--timeout") == 0 && i + 1 < argc) {
            int64_t ms;
            const char *text = argv [++i];
            if (tr_duration_parse (text, strlen (text), &ms) != TR_OK || ms <= 0 || ms > INT32_MAX) {
                fprintf (stderr, "troupe %s: --timeout needs a duration such as 2s, not '%s'\n",
                         argv [0], text);
                return TR_CLI_USAGE;
            }
            opts->timeout_ms = (int) ms;
        }
        else
        if (json_ok && strcmp (arg, "--json") == 0)
            opts->json = true;
        else
        if (arg [0] == '-' && arg [1]) {
            fprintf (stderr, "troupe %s: unknown option or missing value '%s'\n%s",
                     argv [0], arg, usage);
            return TR_CLI_USAGE;
        }
        else
        if (opts->nargs < max_args)
            opts->args [opts->nargs++] = arg;
        else {
            fprintf (stderr, "troupe %s: unexpected argument '%s'\n%s", argv [0], arg, usage);
            return TR_CLI_USAGE;
        }
    }
    if (opts->nargs < min_args) {
        fputs (usage, stderr);
        return TR_CLI_USAGE;
    }
    return 0;
}

//  Sends [op, args...] to the tree and unpacks the reply into *reply,
//  whose strings point into *data_p: free it after the reply. Returns 0,
//  or TR_CLI_FAILED after printing why.
static int
s_call (const s_opts_t *opts, const char *op, msgpack_unpacked *reply, void **data_p)
{
    char path [256];
    if (tr_ctl_find (opts->tree, path, sizeof path))
        return TR_CLI_FAILED;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 1 + (size_t) opts->nargs);
    msgpack_pack_str_with_body (&pk, op, strlen (op));
    for (int i = 0; i < opts->nargs; i++)
        msgpack_pack_str_with_body (&pk, opts->args [i], strlen (opts->args [i]));
    void *data = NULL;
    size_t size = 0;
    int rc = tr_ctl_call (path, sb.data, sb.size, opts->timeout_ms, &data, &size);
    msgpack_sbuffer_destroy (&sb);
    if (rc)
        return TR_CLI_FAILED;
    size_t offset = 0;
    msgpack_unpacked_init (reply);
    if (msgpack_unpack_next (reply, (const char *) data, size, &offset) != MSGPACK_UNPACK_SUCCESS
    ||  reply->data.type != MSGPACK_OBJECT_ARRAY || reply->data.via.array.size != 2
    ||  (reply->data.via.array.ptr [0].type != MSGPACK_OBJECT_POSITIVE_INTEGER
    &&   reply->data.via.array.ptr [0].type != MSGPACK_OBJECT_NEGATIVE_INTEGER)) {
        fprintf (stderr, "troupe %s: the tree's answer is malformed\n", op);
        msgpack_unpacked_destroy (reply);
        free (data);
        return TR_CLI_FAILED;
    }
    *data_p = data;
    return 0;
}

//  --------------------------------------------------------------------------
//  status

//  The value of `key` in a map object, or NULL.
static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
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

//  A string field as "%.*s" arguments; "-" when absent or nil.
static int
s_text (const msgpack_object *map, const char *key, const char **text)
{
    const msgpack_object *v = s_get (map, key);
    if (v && v->type == MSGPACK_OBJECT_STR) {
        *text = v->via.str.ptr;
        return (int) v->via.str.size;
    }
    *text = "-";
    return 1;
}

static long long
s_number (const msgpack_object *map, const char *key)
{
    const msgpack_object *v = s_get (map, key);
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (long long) v->via.u64;
    if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return (long long) v->via.i64;
    return 0;
}

//  "1h02m", "3m05s", "12.4s", "850ms".
static void
s_uptime (long long ms, char *buf, size_t size)
{
    if (ms < 1000)
        snprintf (buf, size, "%lldms", ms);
    else
    if (ms < 60000)
        snprintf (buf, size, "%.1fs", (double) ms / 1000);
    else
    if (ms < 3600000)
        snprintf (buf, size, "%lldm%02llds", ms / 60000, ms / 1000 % 60);
    else
        snprintf (buf, size, "%lldh%02lldm", ms / 3600000, ms / 60000 % 60);
}

static void
s_status_row (const msgpack_object *node, int depth)
{
    const char *name, *kind, *state, *failure;
    int name_len = s_text (node, "name", &name);
    int kind_len = s_text (node, "kind", &kind);
    int state_len = s_text (node, "state", &state);
    int failure_len = s_text (node, "failure", &failure);
    char breaker [24] = "-", depth_text [32] = "-", uptime [24] = "-";
    const msgpack_object *b = s_get (node, "breaker");
    if (b) {
        const char *bs;
        int bs_len = s_text (b, "state", &bs);
        long long left = s_number (b, "open_ms");
        if (left > 0)
            snprintf (breaker, sizeof breaker, "%.*s %llds", bs_len, bs, (left + 999) / 1000);
        else
            snprintf (breaker, sizeof breaker, "%.*s", bs_len, bs);
    }
    if (s_get (node, "depth"))
        snprintf (depth_text, sizeof depth_text, "%lld/%lld",
                  s_number (node, "depth"), s_number (node, "capacity"));
    if (s_get (node, "pid") && s_number (node, "pid") > 0)
        snprintf (depth_text, sizeof depth_text, "pid %lld", s_number (node, "pid"));
    long long up = s_number (node, "uptime_ms");
    if (up > 0)
        s_uptime (up, uptime, sizeof uptime);
    char indented [96];
    snprintf (indented, sizeof indented, "%*s%.*s", depth * 2, "", name_len, name);
    printf ("%-24s %-10.*s %-10.*s %8lld  %-12s %-12s %-8s %.*s\n",
            indented, kind_len, kind, state_len, state, s_number (node, "restarts"),
            breaker, depth_text, uptime, failure_len, failure);
    //  The actor's own counters (tr_actor_info_set), one line under it.
    const msgpack_object *info = s_get (node, "info");
    if (info && info->type == MSGPACK_OBJECT_MAP && info->via.map.size) {
        printf ("%*s", depth * 2 + 2, "");
        for (uint32_t i = 0; i < info->via.map.size; i++) {
            const msgpack_object *k = &info->via.map.ptr [i].key;
            if (k->type == MSGPACK_OBJECT_STR)
                printf (" %.*s=%lld", (int) k->via.str.size, k->via.str.ptr,
                        info->via.map.ptr [i].val.type == MSGPACK_OBJECT_NEGATIVE_INTEGER?
                        (long long) info->via.map.ptr [i].val.via.i64:
                        (long long) info->via.map.ptr [i].val.via.u64);
        }
        printf ("\n");
    }
    const msgpack_object *children = s_get (node, "children");
    if (children && children->type == MSGPACK_OBJECT_ARRAY && depth < 32)
        for (uint32_t i = 0; i < children->via.array.size; i++)
            s_status_row (&children->via.array.ptr [i], depth + 1);
}

//  The HTTP backends of the tree's LLM agents, if any: one line each.
static void
s_status_backends (const msgpack_object *root)
{
    const msgpack_object *list = s_get (root, "llm");
    if (!list || list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size == 0)
        return;
    printf ("\n%-24s %6s %9s %6s %9s %9s %7s %7s %10s %10s\n", "LLM BACKEND", "AGENTS",
            "IN FLIGHT", "QUEUED", "REQUESTS", "OK", "FAILED", "RETRIES", "CACHE HITS", "TOKENS");
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *b = &list->via.array.ptr [i];
        const char *name;
        int name_len = s_text (b, "name", &name);
        printf ("%-24.*s %6lld %9lld %6lld %9lld %9lld %7lld %7lld %10lld %10lld\n",
                name_len, name, s_number (b, "agents"), s_number (b, "in_flight"),
                s_number (b, "queued"), s_number (b, "submitted"), s_number (b, "completed_ok"),
                s_number (b, "failed"), s_number (b, "retries"), s_number (b, "cache_hits"),
                s_number (b, "tokens"));
    }
}

void
tr_cli_status_print (const msgpack_object *status)
{
    printf ("%-24s %-10s %-10s %8s  %-12s %-12s %-8s %s\n", "NAME", "KIND", "STATE",
            "RESTARTS", "BREAKER", "MAILBOX", "UPTIME", "LAST FAILURE");
    s_status_row (status, 0);
    s_status_backends (status);
}

#define S_STATUS_USAGE \
    "usage: troupe status [--json] [--tree NAME] [--timeout DURATION]\n\n" \
    "Shows the live tree of a running 'troupe run': for each supervisor and\n" \
    "child its kind, state, restarts, circuit breaker, mailbox depth (or\n" \
    "pid), uptime and last failure, and under an actor the counters it\n" \
    "keeps (an LLM agent's tokens, say); then the HTTP backends of the LLM\n" \
    "agents, with their requests and tokens. --json prints the same as one JSON\n" \
    "object (fields in docs/cli.md). --tree picks a tree when several run.\n"

static int
s_status (int argc, char **argv)
{
    s_opts_t opts;
    int rc = s_parse (argc, argv, true, 0, 0, S_STATUS_USAGE, &opts);
    if (rc)
        return rc;
    msgpack_unpacked reply;
    void *data;
    if ((rc = s_call (&opts, "status", &reply, &data)))
        return rc;
    const msgpack_object *code = &reply.data.via.array.ptr [0];
    const msgpack_object *body = &reply.data.via.array.ptr [1];
    if (code->type != MSGPACK_OBJECT_POSITIVE_INTEGER || code->via.u64 != 0
    ||  body->type != MSGPACK_OBJECT_MAP) {
        fprintf (stderr, "troupe status: the tree could not report its status\n");
        msgpack_unpacked_destroy (&reply);
        free (data);
        return TR_CLI_FAILED;
    }
    if (opts.json) {
        tr__json_write (stdout, body, 2);
        fputc ('\n', stdout);
    }
    else
        tr_cli_status_print (body);
    msgpack_unpacked_destroy (&reply);
    free (data);
    return fflush (stdout) == 0? TR_CLI_OK: TR_CLI_FAILED;
}

const tr_cli_command_t tr_cli_status = {
    "status", "show the live tree of a running 'troupe run'", S_STATUS_USAGE, s_status
};

//  --------------------------------------------------------------------------
//  restart, stop, start, breaker reset, add

//  Sends one request that answers [code, text]; prints the outcome.
static int
s_simple (const s_opts_t *opts, const char *command, const char *op, const char *done)
{
    msgpack_unpacked reply;
    void *data;
    int rc = s_call (opts, op, &reply, &data);
    if (rc)
        return rc;
    const msgpack_object *code = &reply.data.via.array.ptr [0];
    const char *text = "-";
    int text_len = 1;
    const msgpack_object *msg = &reply.data.via.array.ptr [1];
    if (msg->type == MSGPACK_OBJECT_STR) {
        text = msg->via.str.ptr;
        text_len = (int) msg->via.str.size;
    }
    bool ok = code->type == MSGPACK_OBJECT_POSITIVE_INTEGER && code->via.u64 == 0;
    if (ok)
        printf ("%s %s\n", opts->args [opts->nargs - 1], done);
    else {
        int error = code->type == MSGPACK_OBJECT_NEGATIVE_INTEGER? (int) code->via.i64: 0;
        fprintf (stderr, "troupe %s %s: %.*s (%s)\n", command, opts->args [opts->nargs - 1],
                 text_len, text, tr_errname (error));
    }
    msgpack_unpacked_destroy (&reply);
    free (data);
    return ok? TR_CLI_OK: TR_CLI_FAILED;
}

#define S_CTL_OPTIONS \
    "Options: --tree NAME picks a tree when several run; --timeout DURATION\n" \
    "(default 5s) bounds the wait for the answer.\n"

#define S_RESTART_USAGE \
    "usage: troupe restart NAME [--tree NAME] [--timeout DURATION]\n\n" \
    "Stops the child NAME of a running tree and starts it again now (this\n" \
    "does not count toward its supervisor's restart intensity).\n" S_CTL_OPTIONS
#define S_STOP_USAGE \
    "usage: troupe stop NAME [--tree NAME] [--timeout DURATION]\n\n" \
    "Stops the child NAME and keeps it stopped until 'troupe start NAME'.\n" S_CTL_OPTIONS
#define S_START_USAGE \
    "usage: troupe start NAME [--tree NAME] [--timeout DURATION]\n\n" \
    "Starts the child NAME, stopped by hand or by its restart type.\n" S_CTL_OPTIONS
#define S_BREAKER_USAGE \
    "usage: troupe breaker reset NAME [--tree NAME] [--timeout DURATION]\n\n" \
    "Closes the circuit breaker of the child NAME and clears its failures.\n" S_CTL_OPTIONS
#define S_ADD_USAGE \
    "usage: troupe add SUPERVISOR NAME [--tree NAME] [--timeout DURATION]\n\n" \
    "Starts a new child NAME of the simple_one_for_one supervisor\n" \
    "SUPERVISOR, from its template.\n" S_CTL_OPTIONS

static int
s_restart (int argc, char **argv)
{
    s_opts_t opts;
    int rc = s_parse (argc, argv, false, 1, 1, S_RESTART_USAGE, &opts);
    return rc? rc: s_simple (&opts, "restart", "restart", "restarted");
}

static int
s_stop (int argc, char **argv)
{
    s_opts_t opts;
    int rc = s_parse (argc, argv, false, 1, 1, S_STOP_USAGE, &opts);
    return rc? rc: s_simple (&opts, "stop", "stop", "stopped");
}

static int
s_start (int argc, char **argv)
{
    s_opts_t opts;
    int rc = s_parse (argc, argv, false, 1, 1, S_START_USAGE, &opts);
    return rc? rc: s_simple (&opts, "start", "start", "started");
}

static int
s_breaker (int argc, char **argv)
{
    s_opts_t opts;
    int rc = s_parse (argc, argv, false, 2, 2, S_BREAKER_USAGE, &opts);
    if (rc)
        return rc;
    if (strcmp (opts.args [0], "reset") != 0) {
        fprintf (stderr, "troupe breaker: unknown action '%s'\n%s", opts.args [0], S_BREAKER_USAGE);
        return TR_CLI_USAGE;
    }
    opts.args [0] = opts.args [1];
    opts.nargs = 1;
    return s_simple (&opts, "breaker reset", "breaker_reset", "breaker closed");
}

static int
s_add (int argc, char **argv)
{
    s_opts_t opts;
    int rc = s_parse (argc, argv, false, 2, 2, S_ADD_USAGE, &opts);
    return rc? rc: s_simple (&opts, "add", "add", "started");
}

const tr_cli_command_t tr_cli_restart = {
    "restart", "restart a child of a running tree", S_RESTART_USAGE, s_restart
};
const tr_cli_command_t tr_cli_stop = {
    "stop", "stop a child of a running tree", S_STOP_USAGE, s_stop
};
const tr_cli_command_t tr_cli_start = {
    "start", "start a stopped child of a running tree", S_START_USAGE, s_start
};
const tr_cli_command_t tr_cli_breaker = {
    "breaker", "reset a child's circuit breaker", S_BREAKER_USAGE, s_breaker
};
const tr_cli_command_t tr_cli_add = {
    "add", "add a child to a simple_one_for_one supervisor", S_ADD_USAGE, s_add
};

//  --------------------------------------------------------------------------
//  types

static const char *s_param_types [] = {
    "integer", "number", "boolean", "string", "duration", "list", "map", "any"
};

static void
s_print_type (const tr_actor_type_t *type, void *arg)
{
    (void) arg;
    printf ("%-12s %s\n", type->name, type->summary? type->summary: "");
    for (size_t i = 0; type->params && type->params [i].key; i++) {
        const tr_param_spec_t *p = &type->params [i];
        int t = p->type >= 0 && p->type <= TR_PARAM_ANY? p->type: TR_PARAM_ANY;
        printf ("    %-14s %-9s %s%s\n", p->key, s_param_types [t],
                p->required? "(required) ": "", p->help? p->help: "");
    }
}

#define S_TYPES_USAGE \
    "usage: troupe types\n\n" \
    "Lists the actor types a tree file can name after 'actor:', with the\n" \
    "parameters each accepts.\n"

static int
s_types (int argc, char **argv)
{
    if (argc > 1) {
        fprintf (stderr, "troupe types: unexpected argument '%s'\n", argv [1]);
        return TR_CLI_USAGE;
    }
    tr_actor_type_each (s_print_type, NULL);
    return fflush (stdout) == 0? TR_CLI_OK: TR_CLI_FAILED;
}

const tr_cli_command_t tr_cli_types = {
    "types", "list the actor types tree files can use", S_TYPES_USAGE, s_types
};
