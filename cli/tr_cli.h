/*  tr_cli.h - the troupe program's commands (internal to the program).

    Exit codes, which scripts may rely on:
      0  success
      1  the command ran and failed
      2  usage error (unknown command or option, bad argument)
*/
#ifndef TR_CLI_H_INCLUDED
#define TR_CLI_H_INCLUDED

#define TR_CLI_OK       0
#define TR_CLI_FAILED   1
#define TR_CLI_USAGE    2

typedef struct {
    const char *name;
    const char *summary;                //  one line for `troupe --help`
    const char *usage;                  //  full help for `troupe help NAME`
    int (*run) (int argc, char **argv); //  argv [0] is the command name
} tr_cli_command_t;

extern const tr_cli_command_t tr_cli_demo;
extern const tr_cli_command_t tr_cli_run;
extern const tr_cli_command_t tr_cli_status;
extern const tr_cli_command_t tr_cli_restart;
extern const tr_cli_command_t tr_cli_stop;
extern const tr_cli_command_t tr_cli_start;
extern const tr_cli_command_t tr_cli_breaker;
extern const tr_cli_command_t tr_cli_add;
extern const tr_cli_command_t tr_cli_types;
extern const tr_cli_command_t tr_cli_broker;
extern const tr_cli_command_t tr_cli_keygen;
extern const tr_cli_command_t tr_cli_send, tr_cli_ask, tr_cli_pub, tr_cli_sub, tr_cli_nodes,
                              tr_cli_kv;

//  Prints a tree's status (the map tr_sup_status gives, unpacked) as the
//  table `troupe status` shows: a header, a row per supervisor and child
//  with its counters under it, then the LLM backends if any.
struct msgpack_object;
void
    tr_cli_status_print (const struct msgpack_object *status);

//  Parses a positive integer option value; returns 0 and sets *value, or
//  prints an error naming the option and returns -1.
int
    tr_cli_parse_count (const char *option, const char *text, long max, long *value);

#endif
