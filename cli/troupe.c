/*  troupe.c - the command line: option parsing and dispatch.

    Each command lives in its own file (tr_cli_*.c) and is only a thin
    layer over libtroupe.
*/

#include "tr_cli.h"

#include <troupe.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_version (int argc, char **argv);
static int s_help (int argc, char **argv);

static const tr_cli_command_t s_cmd_version = {
    "version", "print the version of troupe and of libtroupe",
    "usage: troupe version\n\nPrints the program's version and the library's.\n",
    s_version
};
static const tr_cli_command_t s_cmd_help = {
    "help", "show help for a command",
    "usage: troupe help [COMMAND]\n\nWithout COMMAND, lists the commands.\n",
    s_help
};

static const tr_cli_command_t *s_commands [] = {
    &tr_cli_run, &tr_cli_status, &tr_cli_restart, &tr_cli_stop, &tr_cli_start,
    &tr_cli_breaker, &tr_cli_add, &tr_cli_types, &tr_cli_broker, &tr_cli_keygen,
    &tr_cli_send, &tr_cli_ask, &tr_cli_pub, &tr_cli_sub, &tr_cli_nodes, &tr_cli_kv,
    &tr_cli_demo, &s_cmd_help,
    &s_cmd_version
};
#define S_COMMANDS (sizeof s_commands / sizeof s_commands [0])

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: troupe [-v|--verbose] [-q|--quiet] COMMAND [ARGS...]\n"
        "       troupe --help | --version\n\n"
        "troupe runs agents as actors: threads with ZeroMQ mailboxes.\n\n"
        "commands:\n");
    for (size_t i = 0; i < S_COMMANDS; i++)
        fprintf (out, "  %-10s %s\n", s_commands [i]->name, s_commands [i]->summary);
    fprintf (out,
        "\nRun 'troupe help COMMAND' or 'troupe COMMAND --help' for details.\n"
        "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

static const tr_cli_command_t *
s_find (const char *name)
{
    for (size_t i = 0; i < S_COMMANDS; i++)
        if (strcmp (s_commands [i]->name, name) == 0)
            return s_commands [i];
    return NULL;
}

static int
s_version (int argc, char **argv)
{
    if (argc > 1) {
        fprintf (stderr, "troupe version: unexpected argument '%s'\n", argv [1]);
        return TR_CLI_USAGE;
    }
    printf ("troupe %s (libtroupe %s)\n", TROUPE_VERSION_STRING, tr_version ());
    return TR_CLI_OK;
}

static int
s_help (int argc, char **argv)
{
    if (argc < 2) {
        s_usage (stdout);
        return TR_CLI_OK;
    }
    const tr_cli_command_t *cmd = s_find (argv [1]);
    if (!cmd) {
        fprintf (stderr, "troupe: no command '%s'; see 'troupe --help'\n", argv [1]);
        return TR_CLI_USAGE;
    }
    fputs (cmd->usage, stdout);
    return TR_CLI_OK;
}

int
tr_cli_parse_count (const char *option, const char *text, long max, long *value)
{
    char *end;
    errno = 0;
    long v = text? strtol (text, &end, 10): 0;
    if (!text || errno || *end || v <= 0 || v > max) {
        fprintf (stderr, "troupe: %s needs a whole number from 1 to %ld, not '%s'\n",
                 option, max, text? text: "(nothing)");
        return -1;
    }
    *value = v;
    return 0;
}

int
main (int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv [i][0] == '-'; i++) {
        const char *opt = argv [i];
        if (!strcmp (opt, "-h") || !strcmp (opt, "--help")) {
            s_usage (stdout);
            return TR_CLI_OK;
        }
        if (!strcmp (opt, "-V") || !strcmp (opt, "--version"))
            return s_version (1, argv);
        if (!strcmp (opt, "-v") || !strcmp (opt, "--verbose"))
            tr_log_set_level (tr_log_level () + 1);
        else
        if (!strcmp (opt, "-q") || !strcmp (opt, "--quiet"))
            tr_log_set_level (TR_LOG_ERROR);
        else {
            fprintf (stderr, "troupe: unknown option '%s'; see 'troupe --help'\n", opt);
            return TR_CLI_USAGE;
        }
    }
    if (i == argc) {
        s_usage (stderr);
        return TR_CLI_USAGE;
    }
    const tr_cli_command_t *cmd = s_find (argv [i]);
    if (!cmd) {
        fprintf (stderr, "troupe: no command '%s'; see 'troupe --help'\n", argv [i]);
        return TR_CLI_USAGE;
    }
    for (int j = i + 1; j < argc; j++)
        if (!strcmp (argv [j], "--help") || !strcmp (argv [j], "-h")) {
            fputs (cmd->usage, stdout);
            return TR_CLI_OK;
        }
    return cmd->run (argc - i, argv + i);
}
