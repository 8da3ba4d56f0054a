/*  tb_proc.h - what the broker benchmarks share (bench/ only): processes
    of their own, talked to over pipes, and the roles every one of them
    may play.

    A broker benchmark runs each party in a process of its own: a broker
    (or the reference's proxy, or redis-server), receivers, senders. The
    driver (the benchmark's main, which starts no thread) starts each
    party with tb_child_start: fork, then at once exec of the benchmark's
    own program (/proc/self/exe) with "role NAME ARGS..." (or of another
    program). A child reads commands from its standard input, one line
    each, and answers on its standard output, one line each; it ends
    when its standard input ends. Standard error is shared with the
    driver, for diagnostics.

    Roles defined here, for every broker benchmark:

      role broker [DATA_DIR [FSYNC]]
            a troupe broker (tr_broker_start) on tcp://127.0.0.1:*, the
            scratchpad in memory only, or logged in DATA_DIR (FSYNC:
            everysec, always, no); says "ready ENDPOINT". Command
            "stats": says "stats ROUTED BOUNCED EVENTS EVENTS_DROPPED LOST
            KV_WRITES".
      role zproxy router|xpub
            the raw libzmq reference's proxy: zmq_proxy between a ROUTER
            and a DEALER (router), or an XSUB and an XPUB (xpub), both on
            tcp://127.0.0.1:*; says "ready FRONTEND BACKEND". Ends on
            SIGTERM (zmq_proxy does not return). High-water marks: see
            TB_HWM_PROXY and TB_HWM_CLIENT.
*/
#ifndef TB_PROC_H_INCLUDED
#define TB_PROC_H_INCLUDED

#include "tb_util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

//  A party of the benchmark in a process of its own.
typedef struct {
    pid_t pid;
    int in;                             //  its standard input (we write)
    int out;                            //  its standard output (we read), or -1
    char name [32];                     //  for messages
} tb_child_t;

static inline void
tb_die (const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    fprintf (stderr, "bench: ");
    vfprintf (stderr, fmt, args);
    fprintf (stderr, "\n");
    va_end (args);
    exit (1);
}

//  Starts argv [0] (a path, or a program looked up in PATH) with pipes on
//  its standard input and output; with quiet, its output goes to
//  /dev/null instead. The driver must not have started threads: the
//  child does nothing between fork and exec but move descriptors.
static inline void
tb_child_exec (tb_child_t *c, const char *name, char *const argv [], int quiet)
{
    int in [2], out [2];
    if (pipe2 (in, O_CLOEXEC) || pipe2 (out, O_CLOEXEC))
        tb_die ("pipe: %s", strerror (errno));
    fflush (NULL);
    pid_t pid = fork ();
    if (pid < 0)
        tb_die ("fork: %s", strerror (errno));
    if (pid == 0) {
        int null = quiet? open ("/dev/null", O_WRONLY): -1;
        dup2 (in [0], 0);
        dup2 (quiet? null: out [1], 1);
        execvp (argv [0], argv);
        fprintf (stderr, "bench: exec %s: %s\n", argv [0], strerror (errno));
        _exit (127);
    }
    close (in [0]);
    close (out [1]);
    *c = (tb_child_t) { .pid = pid, .in = in [1], .out = out [0] };
    snprintf (c->name, sizeof c->name, "%s", name);
    signal (SIGPIPE, SIG_IGN);
}

//  Starts this program with "role ROLE ARGS..." (at most 8 arguments).
static inline void
tb_child_start (tb_child_t *c, const char *role, ...)
{
    char *argv [12] = { "/proc/self/exe", "role", (char *) role };
    int argc = 3;
    va_list args;
    va_start (args, role);
    for (char *arg; argc < 11 && (arg = va_arg (args, char *)); )
        argv [argc++] = arg;
    va_end (args);
    argv [argc] = NULL;
    tb_child_exec (c, role, argv, 0);
}

//  Writes one command line to the child.
static inline void
tb_child_say (tb_child_t *c, const char *fmt, ...)
{
    char line [256];
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (line, sizeof line - 1, fmt, args);
    va_end (args);
    line [n++] = '\n';
    if (write (c->in, line, (size_t) n) != n)
        tb_die ("%s (pid %d) is gone", c->name, (int) c->pid);
}

//  Reads one line from the child into buf (without its newline), waiting
//  up to timeout_ms (-1: for ever). Returns 0, or -1 on timeout; exits
//  if the child ended. Reads a byte at a time, so that nothing past the
//  line is taken from the pipe.
static inline int
tb_child_line_wait (tb_child_t *c, char *buf, size_t size, int timeout_ms)
{
    size_t n = 0;
    for (;;) {
        struct pollfd pfd = { .fd = c->out, .events = POLLIN };
        int rc = poll (&pfd, 1, n? -1: timeout_ms);
        if (rc == 0)
            return -1;
        if (rc < 0 && errno == EINTR)
            continue;
        char ch;
        if (rc < 0 || read (c->out, &ch, 1) != 1)
            tb_die ("%s (pid %d) ended", c->name, (int) c->pid);
        if (ch == '\n')
            break;
        if (n + 1 < size)
            buf [n++] = ch;
    }
    buf [n] = 0;
    return 0;
}

//  Reads the child's next line; it must start with `word`. Returns what
//  follows the word.
static inline const char *
tb_child_expect (tb_child_t *c, const char *word, char *buf, size_t size)
{
    tb_child_line_wait (c, buf, size, -1);
    size_t len = strlen (word);
    if (strncmp (buf, word, len) || (buf [len] && buf [len] != ' '))
        tb_die ("%s said '%s', not '%s'", c->name, buf, word);
    return buf [len]? buf + len + 1: buf + len;
}

//  Ends the child: closes its input (it ends on EOF), gives it `grace_ms`,
//  then SIGTERM, then SIGKILL, and reaps it.
static inline void
tb_child_end (tb_child_t *c, int grace_ms)
{
    if (c->pid <= 0)
        return;
    close (c->in);
    int status;
    for (int waited = 0; ; waited += 10) {
        if (waitpid (c->pid, &status, WNOHANG) == c->pid)
            break;
        if (waited == grace_ms)
            kill (c->pid, SIGTERM);
        if (waited == grace_ms + 2000)
            kill (c->pid, SIGKILL);
        usleep (10000);
    }
    if (c->out >= 0)
        close (c->out);
    c->pid = 0;
}

//  A TCP port on 127.0.0.1 that nobody listens on now.
static inline int
tb_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    if (fd < 0 || bind (fd, (struct sockaddr *) &addr, sizeof addr)
    ||  getsockname (fd, (struct sockaddr *) &addr, &len))
        tb_die ("no free port: %s", strerror (errno));
    close (fd);
    return ntohs (addr.sin_port);
}

//  Reads one command from standard input (a role's loop); NULL at its end.
static inline char *
tb_command (char *buf, size_t size)
{
    if (!fgets (buf, (int) size, stdin))
        return NULL;
    buf [strcspn (buf, "\n")] = 0;
    return buf;
}

//  Writes one answer line to standard output.
static inline void
tb_answer (const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    vprintf (fmt, args);
    va_end (args);
    printf ("\n");
    fflush (stdout);
}

//  --------------------------------------------------------------------------
//  Roles

static inline int
tb_role_broker (int argc, char **argv)
{
    tr_broker_opts_t opts = { .bind = "tcp://127.0.0.1:*" };
    if (argc > 0)
        opts.data_dir = argv [0];
    if (argc > 1)
        opts.fsync = !strcmp (argv [1], "always")? TR_FSYNC_ALWAYS:
                     !strcmp (argv [1], "no")? TR_FSYNC_NO: TR_FSYNC_EVERYSEC;
    tr_broker_t *broker;
    tb_check (tr_broker_start (&opts, &broker), "broker");
    tb_answer ("ready %s", tr_broker_endpoint (broker));
    char line [256];
    while (tb_command (line, sizeof line)) {
        tr_broker_stats_t s;
        tb_check (tr_broker_stats (broker, &s), "broker stats");
        tb_answer ("stats %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64,
                   s.routed, s.bounced, s.events, s.events_dropped, s.lost, s.kv_writes);
    }
    tr_broker_stop (&broker);
    return 0;
}

//  The raw references queue as much as troupe's parties do: a proxy's
//  sockets as many messages per peer as the broker (its max_queue,
//  10,000, both ways), a client's socket as many as a node's link to the
//  broker (100,000, both ways).
#define TB_HWM_PROXY    10000
#define TB_HWM_CLIENT   100000

static inline void
tb_zmq_hwm (void *sock, int hwm)
{
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
}

//  A proxy's socket bound to a free port on 127.0.0.1; its endpoint goes
//  to ep.
static inline void *
tb_zmq_bind (void *ctx, int type, char *ep, size_t size)
{
    void *sock = zmq_socket (ctx, type);
    if (sock)
        tb_zmq_hwm (sock, TB_HWM_PROXY);
    if (!sock || zmq_bind (sock, "tcp://127.0.0.1:*"))
        tb_die ("bind: %s", zmq_strerror (zmq_errno ()));
    zmq_getsockopt (sock, ZMQ_LAST_ENDPOINT, ep, &size);
    return sock;
}

//  A client's socket connected to ep.
static inline void *
tb_zmq_connect (void *ctx, int type, const char *ep)
{
    void *sock = zmq_socket (ctx, type);
    if (sock)
        tb_zmq_hwm (sock, TB_HWM_CLIENT);
    if (!sock || zmq_connect (sock, ep))
        tb_die ("connect %s: %s", ep, zmq_strerror (zmq_errno ()));
    return sock;
}

static inline int
tb_role_zproxy (int argc, char **argv)
{
    int xpub = argc > 0 && !strcmp (argv [0], "xpub");
    void *ctx = zmq_ctx_new ();
    char fe_ep [256], be_ep [256];
    void *fe = tb_zmq_bind (ctx, xpub? ZMQ_XSUB: ZMQ_ROUTER, fe_ep, sizeof fe_ep);
    void *be = tb_zmq_bind (ctx, xpub? ZMQ_XPUB: ZMQ_DEALER, be_ep, sizeof be_ep);
    tb_answer ("ready %s %s", fe_ep, be_ep);
    //  Standard input's end is not watched: the driver ends us with SIGTERM.
    zmq_proxy (fe, be, NULL);
    return 0;
}

//  The body of a raw reference's message: the same 64 bytes troupe sends.
static inline int
tb_is_body (size_t size)
{
    return size == TB_BODY_SIZE;
}

#endif
