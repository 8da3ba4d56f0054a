/*  tr_proc.c - OS processes as children; see tr_proc.h.

    One service thread for the whole process serves every node (a node has
    no field for it, so its state lives in the statics below). The thread
    forks every child itself, since PR_SET_PDEATHSIG follows the thread
    that forked, and then polls an eventfd (work to do), each child's
    pidfd (its exit) and each child's stdout and stderr pipes (its output,
    logged line by line under the child's name).

    A child leads a process group of its own. The group may outlive its
    leader when the leader leaves members behind, so a process record
    stays with the service until its group is empty: stops and node
    shutdown can still reach those members, and the fatal-signal handler
    still kills them. troupe is a child subreaper, so members whose parent
    died are reparented to troupe; the service reaps the exited members
    of the groups it watches, and any other exited child outside troupe's
    own process group (an orphan that left its group), but never a child
    in troupe's own group: that one is the application's (system, popen).
    Known leaders are reaped through their pidfd only.

    The lock guards the request queue, the list of records, the flags that
    other threads wait on, and the table of live process groups. The
    fatal-signal handler reads that table without the lock: its entries
    are lock-free atomics.

    Who frees a record: its owner through tr__proc_destroy once the leader
    has exited, or the service when it retires a record whose owner has
    already destroyed it; whichever comes second.
*/

#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_proc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_LINE_MAX      4096    //  a longer line is logged in pieces
#define S_PIECE         900     //  most text per log line (tr_log cuts at 1 KiB)
#define S_NAME_SHOWN    64      //  most characters of a name in a log prefix
#define S_GROUPS_MAX    1024    //  live process groups at once
#define S_READS         16      //  reads of one pipe per wake-up

//  Poll intervals: while a stop waits for a group to empty, while a group
//  lingers after its leader, and otherwise (reaping stray orphans).
#define S_TICK_STOPPING 10
#define S_TICK_LINGER   100
#define S_TICK_IDLE     500

typedef struct {
    int fd;                             //  read end, -1 once closed
    int level;                          //  TR_LOG_INFO or TR_LOG_WARN
    size_t len;                         //  bytes of an unfinished line
    char buf [S_LINE_MAX];
} s_stream_t;

//  What the child needs between fork and exec, all prepared beforehand.
typedef struct {
    char *const *argv;
    const char *cwd;
    char **paths;                       //  candidates for argv [0]
    char *store;                        //  their text
    char **envp;
    bool pipe_in, pipe_out;             //  stdin, stdout for the owner
} s_launch_t;

struct tr__proc {
    tr__proc_t *prev, *next;            //  service list, or request queue
    tr_node_t *node;
    uint64_t node_id;
    char *name;
    pid_t pid;                          //  also the process group id
    int pidfd;                          //  -1 once reaped
    int slot;                           //  in s_pgids; -1 once the group is gone
    tr__proc_exit_fn *on_exit;
    void *arg;
    tr__proc_exit_t exit;
    s_stream_t out, err;                //  service thread only
    s_launch_t *launch;                 //  while starting
    int owner_in, owner_out;            //  pipe ends for the owner, until handed over
    //  Under the lock
    int start_rc;
    bool started;                       //  start_rc is final
    bool listed;                        //  in the service list
    bool reaped;                        //  the leader has exited
    bool called;                        //  the exit callback has returned
    bool group_gone;                    //  no process left in the group
    bool abandoned;                     //  the owner destroyed its handle
    bool stopping;                      //  SIGTERM sent
    bool killed;                        //  SIGKILL sent
    int64_t kill_at;                    //  when to send SIGKILL; 0: never
};

enum { S_IDLE, S_RUNNING, S_STOPPING };

static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;             //  broadcast on every flag change
    int state;                          //  S_*
    bool quit;
    pthread_t thread;
    int wakefd;                         //  eventfd
    tr__proc_t *requests, *requests_tail;
    size_t spawning;                    //  requests taken, not yet answered
    tr__proc_t *procs;                  //  records the service watches
} s_svc = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .changed = PTHREAD_COND_INITIALIZER,
    .wakefd = -1
};

//  Process groups to kill on a fatal signal: 0 free, -1 reserved, else a
//  pgid. Written under the lock, read by the signal handler.
static atomic_int s_pgids [S_GROUPS_MAX];
_Static_assert (ATOMIC_INT_LOCK_FREE == 2, "the fatal-signal handler needs lock-free ints");

static pthread_once_t s_setup_once = PTHREAD_ONCE_INIT;
static pid_t s_setup_pid;               //  the process that ran s_setup

extern char **environ;

//  --------------------------------------------------------------------------
//  Small helpers

static const char *
s_errtext (int error)
{
    const char *text = strerrordesc_np (error);
    return text? text: "unknown error";
}

//  Wakes the service thread (lock held, service running or stopping).
static void
s_wake (void)
{
    uint64_t one = 1;
    ssize_t rc = write (s_svc.wakefd, &one, sizeof one);
    (void) rc;                          //  full counter: it is awake anyway
}

//  True on the service thread (lock held).
static bool
s_on_service (void)
{
    return s_svc.state != S_IDLE && pthread_equal (s_svc.thread, pthread_self ());
}

//  True if the record belongs to node.
static bool
s_of_node (const tr__proc_t *self, const tr_node_t *node)
{
    return self->node == node && self->node_id == node->id;
}

//  Reserves a slot in the group table (lock held); -1 if it is full.
static int
s_slot_take (void)
{
    for (int i = 0; i < S_GROUPS_MAX; i++)
        if (atomic_load (&s_pgids [i]) == 0) {
            atomic_store (&s_pgids [i], -1);
            return i;
        }
    return -1;
}

//  Frees a slot (lock held).
static void
s_slot_free (int slot)
{
    if (slot >= 0)
        atomic_store (&s_pgids [slot], 0);
}

//  --------------------------------------------------------------------------
//  Fatal signals and the subreaper, set up once per process

static const int s_fatal_signals [] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };

//  Sends SIGKILL to every live process group. Only async-signal-safe
//  calls, and no lock.
static void
s_kill_groups (void)
{
    for (int i = 0; i < S_GROUPS_MAX; i++) {
        int pgid = atomic_load_explicit (&s_pgids [i], memory_order_relaxed);
        if (pgid > 0)
            kill (-pgid, SIGKILL);
    }
}

//  Kills every live process group, then dies of the signal.
static void
s_on_fatal (int sig)
{
    s_kill_groups ();
    raise (sig);                        //  SA_RESETHAND: the default action
}

//  exit () while children still run (no node was destroyed): their
//  leaders would get PR_SET_PDEATHSIG, but not the rest of their groups,
//  so the groups are killed here. A forked copy of troupe that exits
//  leaves the groups alone: they are not its own.
static void
s_at_exit (void)
{
    if (getpid () == s_setup_pid)
        s_kill_groups ();
}

//  Installs s_on_fatal for each fatal signal that still has the default
//  action; a handler someone else installed (a sanitizer, a crash
//  reporter) is left alone, and s_on_fatal chains to nothing.
static void
s_fatal_install (void)
{
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_fatal;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset (&sa.sa_mask);
    for (size_t i = 0; i < sizeof s_fatal_signals / sizeof s_fatal_signals [0]; i++) {
        struct sigaction old;
        if (sigaction (s_fatal_signals [i], NULL, &old) == 0
        &&  !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL)
            sigaction (s_fatal_signals [i], &sa, NULL);
    }
}

static void
s_setup (void)
{
    if (prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
        tr_log (TR_LOG_WARN, "proc: cannot become a child subreaper: %s",
                s_errtext (errno));
    s_fatal_install ();
    s_setup_pid = getpid ();
    atexit (s_at_exit);
}

//  --------------------------------------------------------------------------
//  Launch: argv [0] candidates and the environment, built before fork

static void
s_launch_destroy (s_launch_t **self_p)
{
    s_launch_t *self = *self_p;
    if (self) {
        free (self->paths);
        free (self->store);
        free (self->envp);
        free (self);
        *self_p = NULL;
    }
}

//  Fills paths with where to look for file, as execvp would: file itself
//  if it has a slash, else each directory of PATH.
static int
s_launch_paths (s_launch_t *self, const char *file)
{
    bool search = !strchr (file, '/');
    const char *path = search? getenv ("PATH"): "";
    if (!path)
        path = "/bin:/usr/bin";
    size_t dirs = 1;
    for (const char *c = path; *c; c++)
        dirs += *c == ':';
    size_t flen = strlen (file);
    self->paths = (char **) calloc (dirs + 1, sizeof (char *));
    self->store = (char *) malloc (strlen (path) + dirs * (flen + 3) + 1);
    if (!self->paths || !self->store)
        return TR_ENOMEM;
    char *at = self->store;
    for (size_t i = 0; i < dirs; i++) {
        size_t dlen = strcspn (path, ":");
        self->paths [i] = at;
        if (search) {
            if (dlen == 0)
                *at++ = '.';            //  an empty entry is the cwd
            memcpy (at, path, dlen);
            at += dlen;
            *at++ = '/';
        }
        memcpy (at, file, flen + 1);
        at += flen + 1;
        path += dlen + (path [dlen] == ':');
    }
    return TR_OK;
}

//  True if extra sets the variable of environment entry `entry`.
static bool
s_overridden (const char *entry, const char *const *extra)
{
    size_t n = strcspn (entry, "=");
    for (; extra && *extra; extra++)
        if (strncmp (*extra, entry, n) == 0 && (*extra) [n] == '=')
            return true;
    return false;
}

//  troupe's environment, minus what extra overrides, plus extra.
static int
s_launch_env (s_launch_t *self, const char *const *extra)
{
    size_t count = 0, extras = 0;
    for (char **e = environ; e && *e; e++)
        count++;
    for (const char *const *e = extra; e && *e; e++)
        extras++;
    self->envp = (char **) calloc (count + extras + 1, sizeof (char *));
    if (!self->envp)
        return TR_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < count && environ [i]; i++)
        if (!s_overridden (environ [i], extra))
            self->envp [n++] = environ [i];
    for (size_t i = 0; i < extras; i++)
        self->envp [n++] = (char *) extra [i];
    return TR_OK;
}

//  Checks a spec; TR_OK or TR_EINVAL.
static int
s_spec_check (const tr__proc_spec_t *spec)
{
    if (!spec || !spec->argv || !spec->argv [0] || !*spec->argv [0])
        return TR_EINVAL;
    for (const char *const *e = spec->env; e && *e; e++)
        if (**e == '=' || !strchr (*e, '='))
            return TR_EINVAL;
    return TR_OK;
}

static int
s_launch_new (const tr__proc_spec_t *spec, s_launch_t **self_p)
{
    s_launch_t *self = (s_launch_t *) calloc (1, sizeof *self);
    if (!self)
        return TR_ENOMEM;
    self->argv = (char *const *) spec->argv;
    self->cwd = spec->cwd;
    self->pipe_in = spec->stdin_fd != NULL;
    self->pipe_out = spec->stdout_fd != NULL;
    int rc = s_launch_paths (self, spec->argv [0]);
    if (rc == TR_OK)
        rc = s_launch_env (self, spec->env);
    if (rc)
        s_launch_destroy (&self);
    *self_p = self;
    return rc;
}

//  --------------------------------------------------------------------------
//  The child, between fork and exec: async-signal-safe calls only

enum { S_STAGE_SETUP, S_STAGE_CWD, S_STAGE_EXEC };

typedef struct {
    int stage;
    int error;
} s_failure_t;

typedef struct {
    int status;                         //  write end of the status pipe
    int in, out, err;                   //  become 0, 1 and 2
    pid_t parent;
    int max_fd;                         //  if close_range is missing
} s_child_fds_t;

static void __attribute__ ((noreturn))
s_child_fail (int status_fd, int stage, int error)
{
    s_failure_t f = { stage, error };
    ssize_t rc = write (status_fd, &f, sizeof f);
    (void) rc;
    _exit (127);
}

//  Moves fd above the standard descriptors (close-on-exec).
static int
s_child_lift (int fd)
{
    return fd < 3? fcntl (fd, F_DUPFD_CLOEXEC, 3): fd;
}

//  Default dispositions and an empty mask (signals are blocked on entry).
static void
s_child_signals (void)
{
    struct sigaction dfl;
    memset (&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction (sig, &dfl, NULL);
    sigset_t none;
    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);
}

//  Marks every descriptor above 2 close-on-exec (the status pipe already
//  is), or closes all but the status pipe on kernels without it.
static void
s_child_close_rest (const s_child_fds_t *fds)
{
    if (close_range (3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
    for (int fd = 3; fd < fds->max_fd; fd++)
        if (fd != fds->status)
            close (fd);
}

//  Tries each candidate path; returns the errno that explains the failure.
static int
s_child_exec (const s_launch_t *launch)
{
    bool denied = false;
    int error = ENOENT;
    for (char **path = launch->paths; *path; path++) {
        execve (*path, launch->argv, launch->envp);
        error = errno;
        if (error == EACCES)
            denied = true;
        else
        if (error != ENOENT && error != ENOTDIR && error != ESTALE
        &&  error != ENODEV && error != ETIMEDOUT)
            return error;
    }
    return denied? EACCES: error;
}

static void __attribute__ ((noreturn))
s_child (const s_launch_t *launch, s_child_fds_t *fds)
{
    setpgid (0, 0);
    if (prctl (PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) || getppid () != fds->parent)
        _exit (127);                    //  troupe is already gone
    s_child_signals ();
    fds->status = s_child_lift (fds->status);
    fds->in = s_child_lift (fds->in);
    fds->out = s_child_lift (fds->out);
    fds->err = s_child_lift (fds->err);
    if (fds->status < 0 || fds->in < 0 || fds->out < 0 || fds->err < 0
    ||  dup2 (fds->in, 0) < 0 || dup2 (fds->out, 1) < 0 || dup2 (fds->err, 2) < 0)
        s_child_fail (fds->status, S_STAGE_SETUP, errno);
    if (launch->cwd && chdir (launch->cwd))
        s_child_fail (fds->status, S_STAGE_CWD, errno);
    s_child_close_rest (fds);
    s_child_fail (fds->status, S_STAGE_EXEC, s_child_exec (launch));
}

//  --------------------------------------------------------------------------
//  Spawning, on the service thread

static void
s_close (int *fd)
{
    if (*fd >= 0) {
        close (*fd);
        *fd = -1;
    }
}

//  Reads the child's report: 0 bytes once exec has closed the pipe.
static ssize_t
s_read_status (int fd, s_failure_t *failure)
{
    size_t got = 0;
    while (got < sizeof *failure) {
        ssize_t n = read (fd, (char *) failure + got, sizeof *failure - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t) n;
    }
    return (ssize_t) got;
}

//  Logs why the child could not run, and gives the error code.
static int
s_failed (tr__proc_t *self, const s_launch_t *launch, ssize_t got, const s_failure_t *f)
{
    if (got != sizeof *f || f->stage == S_STAGE_SETUP) {
        tr_log (TR_LOG_ERROR, "%.*s: child setup failed: %s", S_NAME_SHOWN,
                self->name, got == sizeof *f? s_errtext (f->error): "no report");
        return TR_ESYS;
    }
    if (f->stage == S_STAGE_CWD)
        tr_log (TR_LOG_WARN, "%.*s: cannot enter '%s': %s", S_NAME_SHOWN,
                self->name, launch->cwd, s_errtext (f->error));
    else
        tr_log (TR_LOG_WARN, "%.*s: cannot run '%s': %s", S_NAME_SHOWN,
                self->name, launch->argv [0], s_errtext (f->error));
    return TR_ENOTFOUND;
}

//  Forks with every signal blocked, so that no handler of troupe's runs
//  in the child. Returns the pid, or -1 with errno set.
static pid_t
s_fork (const s_launch_t *launch, s_child_fds_t *fds)
{
    sigset_t all, old;
    sigfillset (&all);
    pthread_sigmask (SIG_SETMASK, &all, &old);
    pid_t pid = fork ();
    if (pid == 0)
        s_child (launch, fds);
    int error = errno;
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    errno = error;
    return pid;
}

//  After a successful exec: the pidfd and the readers of the output.
static int
s_adopt (tr__proc_t *self, pid_t pid, int out, int err)
{
    self->pid = pid;
    self->pidfd = pidfd_open (pid, 0);
    if (self->pidfd < 0) {
        tr_log (TR_LOG_ERROR, "%.*s: pidfd_open: %s", S_NAME_SHOWN, self->name,
                s_errtext (errno));
        kill (-pid, SIGKILL);
        waitpid (pid, NULL, 0);
        return TR_ESYS;
    }
    if (out >= 0)
        fcntl (out, F_SETFL, fcntl (out, F_GETFL) | O_NONBLOCK);
    fcntl (err, F_SETFL, fcntl (err, F_GETFL) | O_NONBLOCK);
    self->out.fd = out;
    self->err.fd = err;
    tr_log (TR_LOG_DEBUG, "%.*s: started, pid %d", S_NAME_SHOWN, self->name, (int) pid);
    return TR_OK;
}

//  When the owner keeps the child's stdin and stdout: the stdin pipe, and
//  the owner's ends made non-blocking (all close-on-exec). 0 or -1.
static int
s_owner_pipes (const s_launch_t *launch, int in [2], const int out [2])
{
    if (launch->pipe_in
    &&  (pipe2 (in, O_CLOEXEC) || fcntl (in [1], F_SETFL, O_NONBLOCK)))
        return -1;
    if (launch->pipe_out && fcntl (out [0], F_SETFL, O_NONBLOCK))
        return -1;
    return 0;
}

//  Forks and execs the child (service thread). On TR_OK the record has
//  its pid, pidfd, pipes and group slot, and the owner's pipe ends.
static int
s_spawn (tr__proc_t *self, const s_launch_t *launch)
{
    pthread_mutex_lock (&s_svc.lock);
    int slot = s_slot_take ();
    pthread_mutex_unlock (&s_svc.lock);
    if (slot < 0) {
        tr_log (TR_LOG_ERROR, "%.*s: more than %d process groups", S_NAME_SHOWN,
                self->name, S_GROUPS_MAX);
        return TR_ELIMIT;
    }
    int out [2] = { -1, -1 }, err [2] = { -1, -1 }, status [2] = { -1, -1 };
    int in [2] = { -1, -1 };
    int null = open ("/dev/null", O_RDONLY | O_CLOEXEC);
    struct rlimit files = { 1024, 1024 };
    getrlimit (RLIMIT_NOFILE, &files);
    int rc = TR_ESYS;
    pid_t pid = -1;
    if (null >= 0 && !pipe2 (out, O_CLOEXEC) && !pipe2 (err, O_CLOEXEC)
    &&  !pipe2 (status, O_CLOEXEC) && !s_owner_pipes (launch, in, out)) {
        s_child_fds_t fds = { status [1], launch->pipe_in? in [0]: null, out [1], err [1],
                              getpid (),
                              files.rlim_cur > 65536? 65536: (int) files.rlim_cur };
        pid = s_fork (launch, &fds);
    }
    if (pid < 0)
        tr_log (TR_LOG_ERROR, "%.*s: cannot start: %s", S_NAME_SHOWN, self->name,
                s_errtext (errno));
    s_close (&null);
    s_close (&in [0]);
    s_close (&out [1]);
    s_close (&err [1]);
    s_close (&status [1]);
    if (pid > 0) {
        setpgid (pid, pid);             //  whichever of us comes first
        atomic_store (&s_pgids [slot], pid);
        s_failure_t failure;
        ssize_t got = s_read_status (status [0], &failure);
        if (got == 0)
            rc = s_adopt (self, pid, launch->pipe_out? -1: out [0], err [0]);
        else {
            waitpid (pid, NULL, 0);
            rc = s_failed (self, launch, got, &failure);
        }
    }
    s_close (&status [0]);
    if (rc == TR_OK && launch->pipe_in)
        self->owner_in = in [1];
    if (rc == TR_OK && launch->pipe_out)
        self->owner_out = out [0];
    if (rc) {
        s_close (&in [1]);
        s_close (&out [0]);
        s_close (&err [0]);
        pthread_mutex_lock (&s_svc.lock);
        s_slot_free (slot);
        pthread_mutex_unlock (&s_svc.lock);
    }
    else
        self->slot = slot;
    return rc;
}

//  Gives a start request its answer; on success the service watches it.
static void
s_publish (tr__proc_t *self, int rc)
{
    pthread_mutex_lock (&s_svc.lock);
    assert (s_svc.spawning > 0);
    s_svc.spawning--;
    if (rc == TR_OK) {
        self->prev = NULL;
        self->next = s_svc.procs;
        if (s_svc.procs)
            s_svc.procs->prev = self;
        s_svc.procs = self;
        self->listed = true;
    }
    self->start_rc = rc;
    self->started = true;
    pthread_cond_broadcast (&s_svc.changed);
    pthread_mutex_unlock (&s_svc.lock);
}

//  Spawns every queued request. A request counts as spawning from the
//  moment it leaves the queue until it is answered, so that the service
//  is never stopped while a child it is forking would outlive it.
static void
s_take_requests (void)
{
    for (;;) {
        pthread_mutex_lock (&s_svc.lock);
        tr__proc_t *request = s_svc.requests;
        if (request) {
            s_svc.requests = request->next;
            if (!s_svc.requests)
                s_svc.requests_tail = NULL;
            s_svc.spawning++;
        }
        pthread_mutex_unlock (&s_svc.lock);
        if (!request)
            return;
        s_publish (request, s_spawn (request, request->launch));
    }
}

//  --------------------------------------------------------------------------
//  Output: pipes read into line buffers, lines logged

//  Logs one line (or piece of one) under the child's name, in pieces
//  that tr_log does not cut.
static void
s_emit (const tr__proc_t *self, const s_stream_t *stream, const char *text, size_t len)
{
    if (stream->level > tr_log_level ())
        return;
    if (len && text [len - 1] == '\r')
        len--;
    do {
        size_t piece = len < S_PIECE? len: S_PIECE;
        tr_log (stream->level, "%.*s: %.*s", S_NAME_SHOWN, self->name, (int) piece, text);
        text += piece;
        len -= piece;
    } while (len);
}

//  Logs the complete lines in the buffer and keeps the rest; a full
//  buffer without a newline goes out as a piece.
static void
s_emit_lines (const tr__proc_t *self, s_stream_t *stream)
{
    char *start = stream->buf, *end = stream->buf + stream->len;
    char *newline;
    while ((newline = (char *) memchr (start, '\n', (size_t) (end - start)))) {
        s_emit (self, stream, start, (size_t) (newline - start));
        start = newline + 1;
    }
    stream->len = (size_t) (end - start);
    if (stream->len == S_LINE_MAX) {
        s_emit (self, stream, start, stream->len);
        stream->len = 0;
    }
    else
    if (start != stream->buf)
        memmove (stream->buf, start, stream->len);
}

//  Closes the pipe, logging a partial last line.
static void
s_stream_close (const tr__proc_t *self, s_stream_t *stream)
{
    if (stream->fd < 0)
        return;
    if (stream->len)
        s_emit (self, stream, stream->buf, stream->len);
    stream->len = 0;
    s_close (&stream->fd);
}

//  Reads what the pipe holds, up to `reads` reads; closes it at the end
//  of the stream. Returns false once the pipe is empty or closed.
static bool
s_stream_read (const tr__proc_t *self, s_stream_t *stream, int reads)
{
    while (stream->fd >= 0 && reads--) {
        ssize_t n = read (stream->fd, stream->buf + stream->len, S_LINE_MAX - stream->len);
        if (n > 0) {
            stream->len += (size_t) n;
            s_emit_lines (self, stream);
        }
        else
        if (n < 0 && errno == EINTR)
            continue;
        else {
            if (n == 0 || errno != EAGAIN)
                s_stream_close (self, stream);
            return false;
        }
    }
    return stream->fd >= 0;
}

//  Reads everything the pipe holds now.
static void
s_stream_drain (const tr__proc_t *self, s_stream_t *stream)
{
    while (s_stream_read (self, stream, S_READS))
        ;
}

//  --------------------------------------------------------------------------
//  Exits, groups and orphans (service thread)

//  Fills the reason from waitid's answer.
static void
s_describe (const siginfo_t *info, tr__proc_exit_t *exit)
{
    memset (exit, 0, sizeof *exit);
    exit->exited = info->si_code == CLD_EXITED;
    if (exit->exited) {
        exit->status = info->si_status;
        if (exit->status == 0)
            snprintf (exit->reason, sizeof exit->reason, "exited normally");
        else
            snprintf (exit->reason, sizeof exit->reason, "exited with status %d",
                      exit->status);
        return;
    }
    exit->signal = info->si_status;
    const char *abbrev = sigabbrev_np (exit->signal);
    char name [24];
    if (abbrev)
        snprintf (name, sizeof name, "SIG%s", abbrev);
    else
        snprintf (name, sizeof name, "SIGRTMIN+%d", exit->signal - SIGRTMIN);
    snprintf (exit->reason, sizeof exit->reason, "killed by signal %d (%s)",
              exit->signal, name);
}

//  Marks the group gone if no process is left in it (leader reaped):
//  closes the pipes, logging any partial line, and frees the slot.
static void
s_group_check (tr__proc_t *self)
{
    if (!self->reaped || self->group_gone || kill (-self->pid, 0) == 0)
        return;
    s_stream_drain (self, &self->out);
    s_stream_drain (self, &self->err);
    s_stream_close (self, &self->out);
    s_stream_close (self, &self->err);
    pthread_mutex_lock (&s_svc.lock);
    self->group_gone = true;
    s_slot_free (self->slot);
    self->slot = -1;
    pthread_cond_broadcast (&s_svc.changed);
    pthread_mutex_unlock (&s_svc.lock);
}

//  The leader's pidfd is readable: collects its status, logs what it
//  wrote before it ended, then calls the exit callback once.
static void
s_reap (tr__proc_t *self)
{
    siginfo_t info;
    memset (&info, 0, sizeof info);
    if (self->pidfd < 0
    ||  waitid ((idtype_t) P_PIDFD, (id_t) self->pidfd, &info, WEXITED | WNOHANG)
    ||  info.si_pid == 0)
        return;
    s_close (&self->pidfd);
    s_describe (&info, &self->exit);
    s_stream_drain (self, &self->out);
    s_stream_drain (self, &self->err);
    tr_log (TR_LOG_DEBUG, "%.*s: pid %d %s", S_NAME_SHOWN, self->name,
            (int) self->pid, self->exit.reason);
    pthread_mutex_lock (&s_svc.lock);
    self->reaped = true;
    pthread_cond_broadcast (&s_svc.changed);
    pthread_mutex_unlock (&s_svc.lock);
    s_group_check (self);
    if (self->on_exit)
        self->on_exit (self, &self->exit, self->arg);
    pthread_mutex_lock (&s_svc.lock);
    self->called = true;
    pthread_cond_broadcast (&s_svc.changed);
    pthread_mutex_unlock (&s_svc.lock);
}

static tr__proc_t *
s_find_leader (pid_t pid)
{
    for (tr__proc_t *p = s_svc.procs; p; p = p->next)
        if (p->pid == pid && p->pidfd >= 0)
            return p;
    return NULL;
}

//  Reaps one exited child that is not a known leader.
static bool
s_reap_orphan (pid_t pid)
{
    if (waitpid (pid, NULL, WNOHANG) <= 0)
        return false;
    tr_log (TR_LOG_DEBUG, "proc: reaped orphan pid %d", (int) pid);
    return true;
}

//  Reaps the exited children in one record's group: orphans reparented
//  to troupe, and the leader, through its pidfd. Peeks with WNOWAIT so
//  that the leader is never reaped behind its pidfd's back.
static void
s_reap_group (tr__proc_t *self)
{
    while (!self->group_gone) {
        siginfo_t info;
        memset (&info, 0, sizeof info);
        if (waitid (P_PGID, (id_t) self->pid, &info, WEXITED | WNOHANG | WNOWAIT)
        ||  info.si_pid == 0)
            return;
        if (info.si_pid == self->pid && self->pidfd >= 0) {
            s_reap (self);
            if (self->pidfd >= 0)
                return;                 //  could not reap it: retry later
        }
        else
        if (!s_reap_orphan (info.si_pid))
            return;
    }
}

//  Reaps exited orphans: first those in the groups troupe watches, then
//  any that left their group (setsid) on the way. A child in troupe's
//  own process group belongs to the application (system, popen, its own
//  fork) and is left for it to reap; while such a zombie waits, those
//  that left their group wait behind it.
static void
s_reap_orphans (void)
{
    for (tr__proc_t *p = s_svc.procs; p; p = p->next)
        s_reap_group (p);
    pid_t own = getpgrp ();
    for (;;) {
        siginfo_t info;
        memset (&info, 0, sizeof info);
        if (waitid (P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) || info.si_pid == 0)
            return;
        tr__proc_t *leader = s_find_leader (info.si_pid);
        if (leader) {
            s_reap (leader);
            if (leader->pidfd >= 0)
                return;                 //  could not reap it: retry later
        }
        else
        if (getpgid (info.si_pid) == own || !s_reap_orphan (info.si_pid))
            return;
    }
}

//  Sends SIGKILL to a group whose stop deadline has passed.
static void
s_escalate (tr__proc_t *self, int64_t now)
{
    pthread_mutex_lock (&s_svc.lock);
    if (self->kill_at && now >= self->kill_at && !self->group_gone) {
        tr_log (TR_LOG_DEBUG, "%.*s: still running after SIGTERM; SIGKILL to group %d",
                S_NAME_SHOWN, self->name, (int) self->pid);
        kill (-self->pid, SIGKILL);
        self->killed = true;
        self->kill_at = 0;
    }
    pthread_mutex_unlock (&s_svc.lock);
}

static void
s_proc_free (tr__proc_t *self)
{
    s_stream_close (self, &self->out);
    s_stream_close (self, &self->err);
    s_close (&self->pidfd);
    s_launch_destroy (&self->launch);
    free (self->name);
    free (self);
}

//  Drops a finished record from the list; frees it if its owner is done.
static void
s_retire (tr__proc_t *self)
{
    pthread_mutex_lock (&s_svc.lock);
    if (self->prev)
        self->prev->next = self->next;
    else
        s_svc.procs = self->next;
    if (self->next)
        self->next->prev = self->prev;
    self->listed = false;
    bool free_it = self->abandoned;
    pthread_cond_broadcast (&s_svc.changed);
    pthread_mutex_unlock (&s_svc.lock);
    if (free_it)
        s_proc_free (self);
}

//  Stop deadlines, lingering groups and finished records.
static void
s_sweep (void)
{
    int64_t now = tr__now_ns ();
    tr__proc_t *p = s_svc.procs;
    while (p) {
        tr__proc_t *next = p->next;
        s_escalate (p, now);
        s_group_check (p);
        if (p->called && p->group_gone)
            s_retire (p);
        p = next;
    }
}

//  --------------------------------------------------------------------------
//  The service thread

enum { S_WAKE, S_PIDFD, S_OUT, S_ERR };

typedef struct {
    struct pollfd *fds;
    tr__proc_t **procs;
    int *kinds;
    size_t count, alloc;
} s_pollset_t;

static int
s_pollset_add (s_pollset_t *set, int fd, tr__proc_t *proc, int kind)
{
    if (set->count == set->alloc) {
        size_t alloc = set->alloc? 2 * set->alloc: 64;
        struct pollfd *fds = (struct pollfd *) realloc (set->fds, alloc * sizeof *fds);
        if (fds)
            set->fds = fds;
        tr__proc_t **procs = (tr__proc_t **) realloc (set->procs, alloc * sizeof *procs);
        if (procs)
            set->procs = procs;
        int *kinds = (int *) realloc (set->kinds, alloc * sizeof *kinds);
        if (kinds)
            set->kinds = kinds;
        if (!fds || !procs || !kinds)
            return TR_ENOMEM;
        set->alloc = alloc;
    }
    set->fds [set->count] = (struct pollfd) { .fd = fd, .events = POLLIN };
    set->procs [set->count] = proc;
    set->kinds [set->count++] = kind;
    return TR_OK;
}

//  The descriptors to watch: the eventfd, then each record's pidfd and
//  open pipes (the list changes only on this thread).
static int
s_pollset_fill (s_pollset_t *set)
{
    set->count = 0;
    int rc = s_pollset_add (set, s_svc.wakefd, NULL, S_WAKE);
    for (tr__proc_t *p = s_svc.procs; p && rc == TR_OK; p = p->next) {
        if (p->pidfd >= 0)
            rc = s_pollset_add (set, p->pidfd, p, S_PIDFD);
        if (rc == TR_OK && p->out.fd >= 0)
            rc = s_pollset_add (set, p->out.fd, p, S_OUT);
        if (rc == TR_OK && p->err.fd >= 0)
            rc = s_pollset_add (set, p->err.fd, p, S_ERR);
    }
    return rc;
}

//  How long to sleep in poll (lock held).
static int
s_poll_timeout (void)
{
    int timeout = S_TICK_IDLE;
    for (tr__proc_t *p = s_svc.procs; p; p = p->next)
        if (p->stopping && !p->group_gone)
            return S_TICK_STOPPING;
        else
        if (p->reaped && !p->group_gone)
            timeout = S_TICK_LINGER;
    return timeout;
}

//  Output first, then exits, so that a child's last lines come before
//  its exit callback.
static void
s_dispatch (s_pollset_t *set)
{
    for (size_t i = 0; i < set->count; i++) {
        if (!set->fds [i].revents)
            continue;
        if (set->kinds [i] == S_WAKE) {
            uint64_t value;
            ssize_t rc = read (set->fds [i].fd, &value, sizeof value);
            (void) rc;
        }
        else
        if (set->kinds [i] == S_OUT)
            s_stream_read (set->procs [i], &set->procs [i]->out, S_READS);
        else
        if (set->kinds [i] == S_ERR)
            s_stream_read (set->procs [i], &set->procs [i]->err, S_READS);
    }
    for (size_t i = 0; i < set->count; i++)
        if (set->fds [i].revents && set->kinds [i] == S_PIDFD)
            s_reap (set->procs [i]);
}

static void *
s_main (void *arg)
{
    (void) arg;
    s_pollset_t set = { 0 };
    for (;;) {
        pthread_mutex_lock (&s_svc.lock);
        bool quit = s_svc.quit;
        int timeout = s_poll_timeout ();
        pthread_mutex_unlock (&s_svc.lock);
        if (quit)
            break;
        if (s_pollset_fill (&set) == TR_OK) {
            if (poll (set.fds, set.count, timeout) > 0)
                s_dispatch (&set);
        }
        else {
            tr_log (TR_LOG_ERROR, "proc: out of memory; service retrying");
            usleep (100 * 1000);
        }
        s_take_requests ();
        s_reap_orphans ();
        s_sweep ();
    }
    free (set.fds);
    free (set.procs);
    free (set.kinds);
    return NULL;
}

//  Starts the service thread (lock held), with the asynchronous signals
//  blocked so that it never takes one meant for the application.
static int
s_service_start (void)
{
    pthread_once (&s_setup_once, s_setup);
    s_svc.wakefd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s_svc.wakefd < 0)
        return TR_ESYS;
    sigset_t block, old;
    sigfillset (&block);
    for (size_t i = 0; i < sizeof s_fatal_signals / sizeof s_fatal_signals [0]; i++)
        sigdelset (&block, s_fatal_signals [i]);
    pthread_sigmask (SIG_SETMASK, &block, &old);
    int rc = pthread_create (&s_svc.thread, NULL, s_main, NULL);
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    if (rc) {
        s_close (&s_svc.wakefd);
        return TR_ESYS;
    }
    s_svc.quit = false;
    s_svc.state = S_RUNNING;
    return TR_OK;
}

//  Stops the service thread (lock held, released while joining). Only
//  when it watches nothing: its children would get PR_SET_PDEATHSIG.
static void
s_service_stop (void)
{
    s_svc.state = S_STOPPING;
    s_svc.quit = true;
    s_wake ();
    pthread_t thread = s_svc.thread;
    pthread_mutex_unlock (&s_svc.lock);
    pthread_join (thread, NULL);
    pthread_mutex_lock (&s_svc.lock);
    s_close (&s_svc.wakefd);
    s_svc.state = S_IDLE;
    pthread_cond_broadcast (&s_svc.changed);
}

//  Hands a start request to the service thread and waits for its answer;
//  on the service thread itself (an exit callback) spawns right away.
static int
s_submit (tr__proc_t *self)
{
    pthread_mutex_lock (&s_svc.lock);
    if (s_on_service ()) {
        s_svc.spawning++;
        pthread_mutex_unlock (&s_svc.lock);
        int rc = s_spawn (self, self->launch);
        s_publish (self, rc);
        return rc;
    }
    while (s_svc.state == S_STOPPING)
        pthread_cond_wait (&s_svc.changed, &s_svc.lock);
    int rc = s_svc.state == S_IDLE? s_service_start (): TR_OK;
    if (rc == TR_OK) {
        self->next = NULL;
        if (s_svc.requests_tail)
            s_svc.requests_tail->next = self;
        else
            s_svc.requests = self;
        s_svc.requests_tail = self;
        s_wake ();
        while (!self->started)
            pthread_cond_wait (&s_svc.changed, &s_svc.lock);
        rc = self->start_rc;
    }
    pthread_mutex_unlock (&s_svc.lock);
    return rc;
}

//  Sends SIGTERM to the group (once) and sets the SIGKILL deadline (lock
//  held; the group is not known to be gone).
static void
s_arm (tr__proc_t *self, int64_t deadline)
{
    if (!self->stopping) {
        self->stopping = true;
        kill (-self->pid, SIGTERM);
        kill (-self->pid, SIGCONT);     //  a stopped process must see it
    }
    if (deadline != TR__FOREVER && (!self->kill_at || deadline < self->kill_at))
        self->kill_at = deadline;
    s_wake ();
}

//  True while a record of node is still watched (lock held).
static bool
s_node_busy (const tr_node_t *node)
{
    for (tr__proc_t *p = s_svc.procs; p; p = p->next)
        if (s_of_node (p, node))
            return true;
    return false;
}

//  --------------------------------------------------------------------------
//  Interface

int
tr__proc_start (tr_node_t *node, const tr__proc_spec_t *spec,
                tr__proc_exit_fn *on_exit, void *arg, tr__proc_t **proc_p)
{
    if (!node || !proc_p || s_spec_check (spec))
        return TR_EINVAL;
    assert (node->tag == TR__NODE_TAG);
    tr__proc_t *self = (tr__proc_t *) calloc (1, sizeof *self);
    if (!self)
        return TR_ENOMEM;
    self->node = node;
    self->node_id = node->id;
    self->on_exit = on_exit;
    self->arg = arg;
    self->pidfd = self->out.fd = self->err.fd = self->slot = -1;
    self->owner_in = self->owner_out = -1;
    self->out.level = TR_LOG_INFO;
    self->err.level = TR_LOG_WARN;
    self->name = strdup (spec->name? spec->name: spec->argv [0]);
    int rc = self->name? s_launch_new (spec, &self->launch): TR_ENOMEM;
    if (rc == TR_OK)
        rc = s_submit (self);
    s_launch_destroy (&self->launch);
    if (rc) {
        s_proc_free (self);
        return rc;
    }
    //  The owner's pipe ends were set before the start was published.
    if (spec->stdin_fd)
        *spec->stdin_fd = self->owner_in;
    if (spec->stdout_fd)
        *spec->stdout_fd = self->owner_out;
    self->owner_in = self->owner_out = -1;
    *proc_p = self;
    return TR_OK;
}

pid_t
tr__proc_pid (const tr__proc_t *self)
{
    assert (self);
    return self->pid;
}

int
tr__proc_stop (tr__proc_t *self, int64_t timeout_ms)
{
    assert (self);
    int rc = TR_OK;
    pthread_mutex_lock (&s_svc.lock);
    if (!self->reaped || !self->group_gone) {
        s_arm (self, tr__deadline_after_ms (timeout_ms));
        if (s_on_service ())
            rc = self->reaped? TR_OK: TR_EDEADLK;   //  cannot wait on itself
        else {
            while (!self->reaped || !self->group_gone)
                pthread_cond_wait (&s_svc.changed, &s_svc.lock);
            rc = self->killed? TR_ETIMEDOUT: TR_OK;
        }
    }
    pthread_mutex_unlock (&s_svc.lock);
    return rc;
}

void
tr__proc_destroy (tr__proc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tr__proc_t *self = *self_p;
    *self_p = NULL;
    pthread_mutex_lock (&s_svc.lock);
    assert (self->reaped);
    //  The exit callback runs once the process is reaped, and may still
    //  be running: wait for it, so that whatever it was given (its arg)
    //  may be freed as soon as this returns.
    if (!s_on_service ())
        while (!self->called)
            pthread_cond_wait (&s_svc.changed, &s_svc.lock);
    self->abandoned = true;
    bool free_now = !self->listed;
    pthread_mutex_unlock (&s_svc.lock);
    if (free_now)
        s_proc_free (self);
}

void
tr__procs_stop (tr_node_t *node, int64_t timeout_ms)
{
    if (!node)
        return;
    int64_t deadline = tr__deadline_after_ms (timeout_ms);
    pthread_mutex_lock (&s_svc.lock);
    if (s_svc.state == S_RUNNING) {
        for (tr__proc_t *p = s_svc.procs; p; p = p->next)
            if (s_of_node (p, node) && (!p->reaped || !p->group_gone))
                s_arm (p, deadline);
        if (!s_on_service ()) {
            while (s_node_busy (node))
                pthread_cond_wait (&s_svc.changed, &s_svc.lock);
            if (s_svc.state == S_RUNNING && !s_svc.procs && !s_svc.requests
            &&  !s_svc.spawning)
                s_service_stop ();
        }
    }
    pthread_mutex_unlock (&s_svc.lock);
}
