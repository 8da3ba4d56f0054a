/*  tr_proc.h - OS processes as children (internal): process children of
    supervisors (tr_sup.c), and the processes of port agents
    (actors/tr_port.c), which keep their child's stdin and stdout.

    A process child is started in a process group of its own, with its
    standard output (at level info) and standard error (at level warn)
    read line by line into troupe's log, each line prefixed with the
    child's name. One service thread for the whole process (started on
    first use, stopped when the last node with children shuts them down)
    watches every child process: it reads their output, and it learns of
    their exit through a pidfd, then calls the exit callback given at
    start. Records are per node, so each node's shutdown stops only its
    own children.

    Stopping sends SIGTERM to the child's whole process group, waits up to
    the shutdown timeout for the child to exit, then sends SIGKILL to the
    group, so that no grandchild is left behind. troupe makes itself a
    child subreaper, so grandchildren whose parent died are reparented to
    it and reaped (children in troupe's own process group are left for
    the application to reap). It kills every live process group if it is
    about to die of a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
    SIGABRT, when no one else handles it) or calls exit () with children
    still running; a child also gets SIGKILL from the kernel if the
    service thread goes away (PR_SET_PDEATHSIG). What is left to the
    application: a signal whose default action ends troupe (SIGTERM,
    SIGINT, SIGHUP...) must be caught and lead to tr_node_destroy, and
    SIGKILL of troupe leaves grandchildren behind.

    Threads: every function may be called from any thread. The exit
    callback runs on the service thread and must not block for long.
*/
#ifndef TR_PROC_H_INCLUDED
#define TR_PROC_H_INCLUDED

#include "tr_internal.h"

#include <sys/types.h>

typedef struct tr__proc tr__proc_t;
typedef struct tr__procs tr__procs_t;

//  How a process ended.
typedef struct {
    bool exited;                //  true: exited with `status`;
    int status;                 //  false: killed by signal `signal`
    int signal;
    char reason [96];           //  "exited with status 3", "killed by
                                //  signal 9 (SIGKILL)", "exited normally"
} tr__proc_exit_t;

//  Called once when the process has ended (on the service thread).
typedef void (tr__proc_exit_fn) (tr__proc_t *proc, const tr__proc_exit_t *exit, void *arg);

typedef struct {
    const char *name;           //  prefix of its log lines
    const char *const *argv;    //  NULL-terminated; argv [0] looked up on PATH
    const char *const *env;     //  extra "NAME=VALUE", NULL-terminated, or NULL
    const char *cwd;            //  or NULL
    //  Standard input and output kept for the caller (a port agent talks
    //  to its process through them): when not NULL, the child's stdin
    //  (else /dev/null) or stdout (else logged) is a pipe, and on TR_OK
    //  the caller's end is stored here: close-on-exec, non-blocking,
    //  owned by the caller, who closes it (closing stdin is the child's
    //  end of input). Standard error is always logged.
    int *stdin_fd;
    int *stdout_fd;
} tr__proc_spec_t;

//  Starts the node's process service if needed, then the process. On
//  TR_OK, *proc_p is the running process; on_exit will be called exactly
//  once, when it ends. Errors: TR_EINVAL (empty argv), TR_ENOTFOUND (the
//  program is not found or not executable, or cwd does not exist: the
//  child reports the failed exec before it can run anything), TR_ESYS
//  (fork, pipe or pidfd failed), TR_ENOMEM. On error on_exit is never
//  called.
int
    tr__proc_start (tr_node_t *node, const tr__proc_spec_t *spec,
                    tr__proc_exit_fn *on_exit, void *arg, tr__proc_t **proc_p);

//  The process id (also its process group id).
pid_t
    tr__proc_pid (const tr__proc_t *self);

//  Stops the process: SIGTERM to its group, then SIGKILL to the group if
//  it has not exited after timeout_ms (never with a negative timeout).
//  Returns once it and every other process of its group have exited (its
//  exit callback has run or is running), with TR_OK if SIGTERM was
//  enough or TR_ETIMEDOUT if SIGKILL was needed. Safe to call after the
//  process has exited on its own (TR_OK at once if its group is empty).
int
    tr__proc_stop (tr__proc_t *self, int64_t timeout_ms);

//  Frees the handle of an exited process and sets *self_p to NULL. Waits
//  for its exit callback to return first (unless called from that
//  callback's own thread), so that the callback's argument may be freed
//  right after. Accepts NULL. Asserts that it has exited.
void
    tr__proc_destroy (tr__proc_t **self_p);

//  Node shutdown: kills (SIGTERM, then SIGKILL after timeout_ms) every
//  process still running, waits for them, and stops the service thread.
void
    tr__procs_stop (tr_node_t *node, int64_t timeout_ms);

#endif
