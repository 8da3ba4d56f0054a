/*  tr_proc_test.c - process children (tr_proc.h), with real processes:
    exit reasons, argv, environment and working directory, start errors,
    output in the log, stop (SIGTERM, then SIGKILL to the whole group),
    grandchildren and orphans, node shutdown, many children at once, and
    the cleanup when troupe dies of a fatal signal.

    Every wait polls a condition with a generous deadline, so the suite
    holds on a loaded machine and under the sanitizers.  */

#include "tr_test.h"
#include "tr_internal.h"
#include "tr_proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define S_PROCS     TROUPE_SOURCE_DIR "/tests/procs"
#define S_WAIT_MS   (20000 * tr_test_slowdown ())

//  --------------------------------------------------------------------------
//  What the exit callback saw

typedef struct {
    pthread_mutex_t lock;
    int calls;
    tr__proc_t *proc;                   //  as passed to the callback
    tr__proc_exit_t exit;
} s_rec_t;

static void
s_rec_init (s_rec_t *self)
{
    memset (self, 0, sizeof *self);
    pthread_mutex_init (&self->lock, NULL);
}

static void
s_rec_fini (s_rec_t *self)
{
    pthread_mutex_destroy (&self->lock);
}

static void
s_on_exit (tr__proc_t *proc, const tr__proc_exit_t *exit, void *arg)
{
    s_rec_t *self = (s_rec_t *) arg;
    pthread_mutex_lock (&self->lock);
    self->calls++;
    self->proc = proc;
    self->exit = *exit;
    pthread_mutex_unlock (&self->lock);
}

static int
s_rec_calls (s_rec_t *self)
{
    pthread_mutex_lock (&self->lock);
    int calls = self->calls;
    pthread_mutex_unlock (&self->lock);
    return calls;
}

static bool
s_rec_called (void *arg)
{
    return s_rec_calls ((s_rec_t *) arg) > 0;
}

//  Waits for the callback, checks it came once for proc, and returns a
//  copy of what it saw.
static tr__proc_exit_t
s_rec_wait (s_rec_t *self, tr__proc_t *proc)
{
    ck_assert_msg (tr_test_wait_until (s_rec_called, self, S_WAIT_MS),
                   "the exit callback was not called");
    pthread_mutex_lock (&self->lock);
    tr__proc_exit_t exit = self->exit;
    int calls = self->calls;
    tr__proc_t *seen = self->proc;
    pthread_mutex_unlock (&self->lock);
    ck_assert_int_eq (calls, 1);
    ck_assert_ptr_eq (seen, proc);
    return exit;
}

//  --------------------------------------------------------------------------
//  Scratch directories and files

static void
s_scratch (char *dir, size_t size)
{
    snprintf (dir, size, "/tmp/tr_proc_test.XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (dir));
}

//  Removes a scratch directory and the files in it (one level).
static void
s_scratch_remove (const char *dir)
{
    DIR *d = opendir (dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir (d)))
        if (strcmp (e->d_name, ".") && strcmp (e->d_name, "..")) {
            char path [512];
            snprintf (path, sizeof path, "%s/%s", dir, e->d_name);
            unlink (path);
        }
    closedir (d);
    rmdir (dir);
}

//  Reads a whole file into a new string (NULL if it cannot be opened).
static char *
s_slurp (const char *path)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t len = 0, alloc = 4096;
    char *text = (char *) malloc (alloc);
    for (;;) {
        if (len + 1 == alloc)
            text = (char *) realloc (text, alloc *= 2);
        ssize_t n = read (fd, text + len, alloc - len - 1);
        if (n <= 0)
            break;
        len += (size_t) n;
    }
    close (fd);
    text [len] = 0;
    return text;
}

static void
s_spew (const char *path, const char *text)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
}

static bool
s_exists (void *arg)
{
    return access ((const char *) arg, F_OK) == 0;
}

//  Waits for a file a child writes when it is ready, and reads the pid in it.
static pid_t
s_read_pid (const char *path)
{
    ck_assert_msg (tr_test_wait_until (s_exists, (void *) path, S_WAIT_MS),
                   "%s never appeared", path);
    char *text = s_slurp (path);
    ck_assert_ptr_nonnull (text);
    pid_t pid = (pid_t) atoi (text);
    free (text);
    ck_assert_int_gt (pid, 1);
    return pid;
}

//  --------------------------------------------------------------------------
//  Processes and groups

static bool
s_group_gone (void *arg)
{
    pid_t pgid = *(pid_t *) arg;
    return kill (-pgid, 0) == -1 && errno == ESRCH;
}

static bool
s_pid_gone (void *arg)
{
    pid_t pid = *(pid_t *) arg;
    return kill (pid, 0) == -1 && errno == ESRCH;
}

//  The state letter in /proc/PID/stat, and the parent; 0 if it is gone.
static char
s_proc_state (pid_t pid, pid_t *ppid)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    char *text = s_slurp (path);
    if (!text)
        return 0;
    char state = 0;
    int parent = 0;
    const char *paren = strrchr (text, ')');
    if (paren)
        sscanf (paren + 1, " %c %d", &state, &parent);
    free (text);
    if (ppid)
        *ppid = (pid_t) parent;
    return state;
}

//  True once this process has no child at all, not even a zombie.
static bool
s_childless (void *arg)
{
    (void) arg;
    siginfo_t info;
    return waitid (P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == -1 && errno == ECHILD;
}

static tr_node_t *
s_node (void)
{
    tr_node_t *node = NULL;
    ck_assert_int_eq (tr_node_new (NULL, &node), TR_OK);
    return node;
}

//  Starts argv; asserts success.
static tr__proc_t *
s_start (tr_node_t *node, const char *name, const char *const *argv, s_rec_t *rec)
{
    tr__proc_spec_t spec = { .name = name, .argv = argv };
    tr__proc_t *proc = NULL;
    int rc = tr__proc_start (node, &spec, s_on_exit, rec, &proc);
    ck_assert_msg (rc == TR_OK, "start %s: %s", argv [0], tr_errname (rc));
    ck_assert_ptr_nonnull (proc);
    ck_assert_int_gt (tr__proc_pid (proc), 1);
    return proc;
}

//  Runs `sh -c script` to its end; returns how it ended.
static tr__proc_exit_t
s_run_sh (tr_node_t *node, const char *script)
{
    s_rec_t rec;
    s_rec_init (&rec);
    const char *argv [] = { "sh", "-c", script, NULL };
    tr__proc_t *proc = s_start (node, "sh", argv, &rec);
    tr__proc_exit_t exit = s_rec_wait (&rec, proc);
    ck_assert_int_eq (tr__proc_stop (proc, 1000), TR_OK);     //  exited already
    tr__proc_destroy (&proc);
    ck_assert_ptr_null (proc);
    s_rec_fini (&rec);
    return exit;
}

//  --------------------------------------------------------------------------
//  The log: fd 2 redirected to a file while a test runs

typedef struct {
    char path [64];
    int saved;
} s_capture_t;

static void
s_capture_begin (s_capture_t *self, int level)
{
    snprintf (self->path, sizeof self->path, "/tmp/tr_proc_test_log.XXXXXX");
    int fd = mkstemp (self->path);
    ck_assert_int_ge (fd, 0);
    self->saved = dup (2);
    ck_assert_int_ge (self->saved, 0);
    dup2 (fd, 2);
    close (fd);
    tr_log_set_level (level);
}

//  What the log holds so far (the caller frees it).
static char *
s_capture_text (s_capture_t *self)
{
    char *text = s_slurp (self->path);
    ck_assert_ptr_nonnull (text);
    return text;
}

static void
s_capture_end (s_capture_t *self)
{
    dup2 (self->saved, 2);
    close (self->saved);
    unlink (self->path);
    tr_log_set_level (TR_LOG_WARN);
}

//  Counts the lines of the log at `level` ('I', 'W'...) whose message is
//  exactly `message` ("name: text").
static int
s_log_count (const char *log, char level, const char *message)
{
    char tag [16];
    snprintf (tag, sizeof tag, " %c troupe: ", level);
    int count = 0;
    size_t mlen = strlen (message);
    for (const char *line = log; *line; ) {
        const char *end = strchr (line, '\n');
        if (!end)
            end = line + strlen (line);
        const char *at = strstr (line, tag);
        if (at && at < end) {
            at += strlen (tag);
            if ((size_t) (end - at) == mlen && memcmp (at, message, mlen) == 0)
                count++;
        }
        line = *end? end + 1: end;
    }
    return count;
}

//  Joins the texts of the log lines at `level` whose message starts with
//  "name: ", in order (the caller frees it).
static char *
s_log_join (const char *log, char level, const char *name)
{
    char tag [16], prefix [64];
    snprintf (tag, sizeof tag, " %c troupe: ", level);
    snprintf (prefix, sizeof prefix, "%s: ", name);
    char *joined = (char *) calloc (1, strlen (log) + 1);
    size_t len = 0;
    for (const char *line = log; *line; ) {
        const char *end = strchr (line, '\n');
        if (!end)
            end = line + strlen (line);
        const char *at = strstr (line, tag);
        if (at && at < end) {
            at += strlen (tag);
            if (strncmp (at, prefix, strlen (prefix)) == 0) {
                at += strlen (prefix);
                memcpy (joined + len, at, (size_t) (end - at));
                len += (size_t) (end - at);
            }
        }
        line = *end? end + 1: end;
    }
    joined [len] = 0;
    return joined;
}

//  --------------------------------------------------------------------------
//  Exit reasons

START_TEST (test_exit_status)
{
    tr_node_t *node = s_node ();
    tr__proc_exit_t exit = s_run_sh (node, "exit 0");
    ck_assert (exit.exited);
    ck_assert_int_eq (exit.status, 0);
    ck_assert_str_eq (exit.reason, "exited normally");

    exit = s_run_sh (node, "exit 3");
    ck_assert (exit.exited);
    ck_assert_int_eq (exit.status, 3);
    ck_assert_int_eq (exit.signal, 0);
    ck_assert_str_eq (exit.reason, "exited with status 3");

    exit = s_run_sh (node, "exit 255");
    ck_assert_int_eq (exit.status, 255);
    ck_assert_str_eq (exit.reason, "exited with status 255");

    //  A program that is not a shell, found on PATH and by its path.
    s_rec_t rec;
    s_rec_init (&rec);
    const char *t [] = { "true", NULL };
    tr__proc_t *proc = s_start (node, NULL, t, &rec);
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "exited normally");
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    s_rec_init (&rec);
    const char *f [] = { "/bin/sh", "-c", "false", NULL };
    proc = s_start (node, NULL, f, &rec);
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "exited with status 1");
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    tr_node_destroy (&node);
}
END_TEST

START_TEST (test_killed_by_signal)
{
    tr_node_t *node = s_node ();
    //  The child kills itself.
    tr__proc_exit_t exit = s_run_sh (node, "kill -USR1 $$");
    ck_assert (!exit.exited);
    ck_assert_int_eq (exit.signal, SIGUSR1);
    ck_assert_int_eq (exit.status, 0);
    ck_assert_str_eq (exit.reason, "killed by signal 10 (SIGUSR1)");
    exit = s_run_sh (node, "kill -KILL $$");
    ck_assert_str_eq (exit.reason, "killed by signal 9 (SIGKILL)");

    //  The test kills it.
    s_rec_t rec;
    s_rec_init (&rec);
    const char *argv [] = { "sleep", "1000", NULL };
    tr__proc_t *proc = s_start (node, "sleeper", argv, &rec);
    pid_t pid = tr__proc_pid (proc);
    ck_assert_int_eq (getpgid (pid), pid);  //  leads a group of its own
    ck_assert_int_eq (kill (pid, SIGKILL), 0);
    exit = s_rec_wait (&rec, proc);
    ck_assert (!exit.exited);
    ck_assert_int_eq (exit.signal, SIGKILL);
    ck_assert_str_eq (exit.reason, "killed by signal 9 (SIGKILL)");
    ck_assert_int_eq (tr__proc_stop (proc, 1000), TR_OK);
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);

    //  A real-time signal has no short name.
    char script [64];
    snprintf (script, sizeof script, "kill -%d $$", SIGRTMIN + 2);
    exit = s_run_sh (node, script);
    ck_assert_int_eq (exit.signal, SIGRTMIN + 2);
    char expected [96];
    snprintf (expected, sizeof expected, "killed by signal %d (SIGRTMIN+2)", SIGRTMIN + 2);
    ck_assert_str_eq (exit.reason, expected);
    tr_node_destroy (&node);
}
END_TEST

//  --------------------------------------------------------------------------
//  argv, environment, working directory

START_TEST (test_argv_exact)
{
    tr_node_t *node = s_node ();
    char dir [64], out [128];
    s_scratch (dir, sizeof dir);
    snprintf (out, sizeof out, "%s/argv", dir);
    //  No shell sees these: they must arrive byte for byte.
    const char *argv [] = {
        "sh", "-c", "out=$1; shift; printf '<%s>' \"$0\" \"$@\" > \"$out\"",
        "zero", out, "a b", "", "*", "$HOME", "it's", "two\nlines", "\ttab", "--", NULL
    };
    s_rec_t rec;
    s_rec_init (&rec);
    tr__proc_t *proc = s_start (node, "argv", argv, &rec);
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "exited normally");
    char *text = s_slurp (out);
    ck_assert_ptr_nonnull (text);
    ck_assert_str_eq (text, "<zero><a b><><*><$HOME><it's><two\nlines><\ttab><-->");
    free (text);
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    s_scratch_remove (dir);
    tr_node_destroy (&node);
}
END_TEST

START_TEST (test_env)
{
    tr_node_t *node = s_node ();
    char dir [64], out [128];
    s_scratch (dir, sizeof dir);
    snprintf (out, sizeof out, "%s/env", dir);
    setenv ("TR_PROC_TEST_INHERITED", "from troupe", 1);
    setenv ("TR_PROC_TEST_OVERRIDDEN", "old", 1);
    const char *env [] = {
        "TR_PROC_TEST_A=hello world", "TR_PROC_TEST_EMPTY=",
        "TR_PROC_TEST_OVERRIDDEN=new", "TR_PROC_TEST_EQ=a=b", NULL
    };
    const char *argv [] = {
        "sh", "-c",
        "printf '%s|%s|%s|%s|%s|%s|' \"$TR_PROC_TEST_A\" \"${TR_PROC_TEST_EMPTY-unset}\" "
        "\"$TR_PROC_TEST_OVERRIDDEN\" \"$TR_PROC_TEST_EQ\" \"$TR_PROC_TEST_INHERITED\" "
        "\"${TR_PROC_TEST_NEVER-unset}\" > \"$1\"; "
        "env | grep -c '^TR_PROC_TEST_OVERRIDDEN=' >> \"$1\"",
        "sh", out, NULL
    };
    tr__proc_spec_t spec = { .name = "env", .argv = argv, .env = env };
    s_rec_t rec;
    s_rec_init (&rec);
    tr__proc_t *proc = NULL;
    ck_assert_int_eq (tr__proc_start (node, &spec, s_on_exit, &rec, &proc), TR_OK);
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "exited normally");
    char *text = s_slurp (out);
    ck_assert_ptr_nonnull (text);
    ck_assert_str_eq (text, "hello world||new|a=b|from troupe|unset|1\n");
    free (text);
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    //  troupe's own environment is left alone.
    ck_assert_str_eq (getenv ("TR_PROC_TEST_OVERRIDDEN"), "old");
    ck_assert_ptr_null (getenv ("TR_PROC_TEST_A"));
    unsetenv ("TR_PROC_TEST_INHERITED");
    unsetenv ("TR_PROC_TEST_OVERRIDDEN");
    s_scratch_remove (dir);
    tr_node_destroy (&node);
}
END_TEST

START_TEST (test_cwd)
{
    tr_node_t *node = s_node ();
    char dir [64], real [PATH_MAX], out [128];
    s_scratch (dir, sizeof dir);
    ck_assert_ptr_nonnull (realpath (dir, real));
    //  A relative file name lands in cwd.
    const char *argv [] = { "sh", "-c", "pwd -P > here", NULL };
    tr__proc_spec_t spec = { .name = "cwd", .argv = argv, .cwd = dir };
    s_rec_t rec;
    s_rec_init (&rec);
    tr__proc_t *proc = NULL;
    ck_assert_int_eq (tr__proc_start (node, &spec, s_on_exit, &rec, &proc), TR_OK);
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "exited normally");
    snprintf (out, sizeof out, "%s/here", dir);
    char *text = s_slurp (out);
    ck_assert_ptr_nonnull (text);
    strcat (real, "\n");
    ck_assert_str_eq (text, real);
    free (text);
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);

    //  A relative program path is taken from the new cwd.
    snprintf (out, sizeof out, "%s/prog", dir);
    s_spew (out, "#!/bin/sh\nexit 7\n");
    chmod (out, 0755);
    const char *relative [] = { "./prog", NULL };
    tr__proc_spec_t rspec = { .name = "prog", .argv = relative, .cwd = dir };
    s_rec_init (&rec);
    ck_assert_int_eq (tr__proc_start (node, &rspec, s_on_exit, &rec, &proc), TR_OK);
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "exited with status 7");
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    s_scratch_remove (dir);
    tr_node_destroy (&node);
}
END_TEST

//  --------------------------------------------------------------------------
//  Start errors: the callback never runs, and nothing is left behind

static void
s_start_fails (tr_node_t *node, const tr__proc_spec_t *spec, int expected)
{
    s_rec_t rec;
    s_rec_init (&rec);
    tr__proc_t *proc = (tr__proc_t *) &rec;     //  untouched on error
    int rc = tr__proc_start (node, spec, s_on_exit, &rec, &proc);
    ck_assert_msg (rc == expected, "%s: %s, expected %s", spec && spec->argv? spec->argv [0]: "-",
                   tr_errname (rc), tr_errname (expected));
    ck_assert_ptr_eq (proc, (tr__proc_t *) &rec);
    usleep (100 * 1000);
    ck_assert_int_eq (s_rec_calls (&rec), 0);
    s_rec_fini (&rec);
}

START_TEST (test_not_found)
{
    tr_node_t *node = s_node ();
    char dir [64], path [128];
    s_scratch (dir, sizeof dir);
    s_capture_t cap;
    s_capture_begin (&cap, TR_LOG_WARN);

    const char *missing [] = { "tr-proc-test-no-such-program", NULL };
    tr__proc_spec_t spec = { .name = "missing", .argv = missing };
    s_start_fails (node, &spec, TR_ENOTFOUND);
    const char *absent [] = { "/nonexistent/tr-proc-test", NULL };
    spec.argv = absent;
    s_start_fails (node, &spec, TR_ENOTFOUND);
    //  Not executable: a plain file, and a directory.
    snprintf (path, sizeof path, "%s/plain", dir);
    s_spew (path, "#!/bin/sh\nexit 0\n");
    const char *plain [] = { path, NULL };
    spec.argv = plain;
    s_start_fails (node, &spec, TR_ENOTFOUND);
    const char *directory [] = { dir, NULL };
    spec.argv = directory;
    s_start_fails (node, &spec, TR_ENOTFOUND);

    //  Bad specs.
    const char *empty [] = { NULL };
    const char *blank [] = { "", NULL };
    const char *sh [] = { "sh", "-c", "exit 0", NULL };
    spec.argv = empty;
    s_start_fails (node, &spec, TR_EINVAL);
    spec.argv = blank;
    s_start_fails (node, &spec, TR_EINVAL);
    spec.argv = NULL;
    s_start_fails (node, &spec, TR_EINVAL);
    s_start_fails (node, NULL, TR_EINVAL);
    const char *no_equals [] = { "NOEQUALS", NULL };
    const char *no_name [] = { "=value", NULL };
    spec.argv = sh;
    spec.env = no_equals;
    s_start_fails (node, &spec, TR_EINVAL);
    spec.env = no_name;
    s_start_fails (node, &spec, TR_EINVAL);
    tr__proc_t *proc = NULL;
    spec.env = NULL;
    ck_assert_int_eq (tr__proc_start (NULL, &spec, s_on_exit, NULL, &proc), TR_EINVAL);
    ck_assert_int_eq (tr__proc_start (node, &spec, s_on_exit, NULL, NULL), TR_EINVAL);

    char *log = s_capture_text (&cap);
    s_capture_end (&cap);
    ck_assert_msg (strstr (log, "missing: cannot run 'tr-proc-test-no-such-program'"), "%s", log);
    free (log);
    //  The failed children were reaped.
    ck_assert (tr_test_wait_until (s_childless, NULL, S_WAIT_MS));
    s_scratch_remove (dir);
    tr_node_destroy (&node);
}
END_TEST

START_TEST (test_bad_cwd)
{
    tr_node_t *node = s_node ();
    char dir [64], file [128];
    s_scratch (dir, sizeof dir);
    s_capture_t cap;
    s_capture_begin (&cap, TR_LOG_WARN);
    const char *argv [] = { "sh", "-c", "exit 0", NULL };
    tr__proc_spec_t spec = { .name = "lost", .argv = argv, .cwd = "/nonexistent/tr-proc-test" };
    s_start_fails (node, &spec, TR_ENOTFOUND);
    snprintf (file, sizeof file, "%s/file", dir);
    s_spew (file, "not a directory\n");
    spec.cwd = file;
    s_start_fails (node, &spec, TR_ENOTFOUND);
    char *log = s_capture_text (&cap);
    s_capture_end (&cap);
    ck_assert_msg (strstr (log, "lost: cannot enter '/nonexistent/tr-proc-test'"), "%s", log);
    free (log);
    ck_assert (tr_test_wait_until (s_childless, NULL, S_WAIT_MS));
    //  The service still works.
    tr__proc_exit_t exit = s_run_sh (node, "exit 4");
    ck_assert_str_eq (exit.reason, "exited with status 4");
    s_scratch_remove (dir);
    tr_node_destroy (&node);
}
END_TEST

//  --------------------------------------------------------------------------
//  Output in the log

START_TEST (test_output_logged)
{
    tr_node_t *node = s_node ();
    s_capture_t cap;
    s_capture_begin (&cap, TR_LOG_INFO);
    s_rec_t rec;
    s_rec_init (&rec);
    const char *argv [] = {
        "sh", "-c",
        "printf 'out one\\nout two\\n'; printf 'err one\\n' >&2; printf '\\n';"
        "printf 'crlf\\r\\n'; printf 'err tail' >&2; printf 'out tail'",
        NULL
    };
    tr__proc_t *proc = s_start (node, "kid", argv, &rec);
    s_rec_wait (&rec, proc);
    //  Every line, the unfinished last ones too, is in before the callback.
    char *log = s_capture_text (&cap);
    ck_assert_msg (s_log_count (log, 'I', "kid: out one") == 1, "%s", log);
    ck_assert_msg (s_log_count (log, 'I', "kid: out two") == 1, "%s", log);
    ck_assert_msg (s_log_count (log, 'I', "kid: ") == 1, "%s", log);
    ck_assert_msg (s_log_count (log, 'I', "kid: crlf") == 1, "%s", log);
    ck_assert_msg (s_log_count (log, 'I', "kid: out tail") == 1, "%s", log);
    ck_assert_msg (s_log_count (log, 'W', "kid: err one") == 1, "%s", log);
    ck_assert_msg (s_log_count (log, 'W', "kid: err tail") == 1, "%s", log);
    char *joined = s_log_join (log, 'I', "kid");
    ck_assert_str_eq (joined, "out oneout twocrlfout tail");
    free (joined);
    free (log);
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);

    //  At level warn, standard output is not logged, standard error is.
    s_capture_end (&cap);
    s_capture_begin (&cap, TR_LOG_WARN);
    s_rec_init (&rec);
    const char *quiet [] = { "sh", "-c", "echo hidden; echo shown >&2", NULL };
    proc = s_start (node, "quiet", quiet, &rec);
    s_rec_wait (&rec, proc);
    log = s_capture_text (&cap);
    ck_assert_msg (!strstr (log, "hidden"), "%s", log);
    ck_assert_msg (s_log_count (log, 'W', "quiet: shown") == 1, "%s", log);
    free (log);
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    s_capture_end (&cap);
    tr_node_destroy (&node);
}
END_TEST

//  Lines longer than the log takes in one go come out in pieces, in order,
//  each under the child's name; many lines lose none.
START_TEST (test_long_lines)
{
    tr_node_t *node = s_node ();
    char dir [64], path [128];
    s_scratch (dir, sizeof dir);
    snprintf (path, sizeof path, "%s/text", dir);
    static const char alphabet [] = "abcdefghijklmnopqrstuvwxyz0123456789";
    size_t long_len = 20000, tail_len = 5000, lines = 2000;
    char *expected = (char *) malloc (long_len + tail_len + lines * 16 + 64);
    char *text = (char *) malloc (long_len + tail_len + lines * 16 + 64);
    size_t at = 0, eat = 0;
    for (size_t i = 0; i < lines; i++) {
        int n = sprintf (text + at, "line %zu\n", i);
        memcpy (expected + eat, text + at, (size_t) n - 1);
        at += (size_t) n;
        eat += (size_t) n - 1;
    }
    for (size_t i = 0; i < long_len; i++)
        text [at++] = expected [eat++] = alphabet [i % 36];
    text [at++] = '\n';
    for (size_t i = 0; i < tail_len; i++)
        text [at++] = expected [eat++] = alphabet [(i * 7) % 36];
    text [at] = expected [eat] = 0;
    s_spew (path, text);

    s_capture_t cap;
    s_capture_begin (&cap, TR_LOG_INFO);
    s_rec_t rec;
    s_rec_init (&rec);
    const char *argv [] = { "cat", path, NULL };
    tr__proc_t *proc = s_start (node, "long", argv, &rec);
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "exited normally");
    char *log = s_capture_text (&cap);
    s_capture_end (&cap);
    char *joined = s_log_join (log, 'I', "long");
    ck_assert_uint_eq (strlen (joined), strlen (expected));
    ck_assert (strcmp (joined, expected) == 0);
    ck_assert_int_eq (s_log_count (log, 'I', "long: line 0"), 1);
    ck_assert_int_eq (s_log_count (log, 'I', "long: line 1999"), 1);
    //  No log line was cut by tr_log (it takes about 1 KiB of message).
    for (const char *line = log; *line; ) {
        const char *end = strchr (line, '\n');
        ck_assert_ptr_nonnull (end);
        ck_assert_int_lt (end - line, 1000);
        line = end + 1;
    }
    free (joined);
    free (log);
    free (text);
    free (expected);
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    s_scratch_remove (dir);
    tr_node_destroy (&node);
}
END_TEST

//  --------------------------------------------------------------------------
//  Stop

START_TEST (test_stop_sigterm)
{
    tr_node_t *node = s_node ();
    s_rec_t rec;
    s_rec_init (&rec);
    const char *argv [] = { "sleep", "1000", NULL };
    tr__proc_t *proc = s_start (node, "sleeper", argv, &rec);
    pid_t pid = tr__proc_pid (proc);
    ck_assert_int_eq (tr__proc_stop (proc, 10000 * tr_test_slowdown ()), TR_OK);
    ck_assert (s_group_gone (&pid));
    tr__proc_exit_t exit = s_rec_wait (&rec, proc);
    ck_assert_str_eq (exit.reason, "killed by signal 15 (SIGTERM)");
    //  Again: it has exited, so at once.
    ck_assert_int_eq (tr__proc_stop (proc, 0), TR_OK);
    ck_assert_int_eq (s_rec_calls (&rec), 1);
    tr__proc_destroy (&proc);
    tr__proc_destroy (&proc);           //  NULL is fine
    tr__proc_destroy (NULL);
    s_rec_fini (&rec);

    //  A stopped (SIGSTOP) child still gets the SIGTERM.
    s_rec_init (&rec);
    proc = s_start (node, "frozen", argv, &rec);
    pid = tr__proc_pid (proc);
    ck_assert_int_eq (kill (pid, SIGSTOP), 0);
    ck_assert_int_eq (tr__proc_stop (proc, 10000 * tr_test_slowdown ()), TR_OK);
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "killed by signal 15 (SIGTERM)");
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    tr_node_destroy (&node);
}
END_TEST

START_TEST (test_stop_stubborn)
{
    tr_node_t *node = s_node ();
    char dir [64], ready [128];
    s_scratch (dir, sizeof dir);
    snprintf (ready, sizeof ready, "%s/ready", dir);
    s_rec_t rec;
    s_rec_init (&rec);
    const char *argv [] = { "sh", S_PROCS "/stubborn.sh", ready, NULL };
    tr__proc_t *proc = s_start (node, "stubborn", argv, &rec);
    pid_t pid = tr__proc_pid (proc);
    ck_assert (tr_test_wait_until (s_exists, ready, S_WAIT_MS));
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (tr__proc_stop (proc, 300), TR_ETIMEDOUT);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_int_ge (took, 290);
    ck_assert (s_group_gone (&pid));
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "killed by signal 9 (SIGKILL)");
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    s_scratch_remove (dir);
    tr_node_destroy (&node);
}
END_TEST

//  family.sh in `mode`: returns the child, its pid and the grandchild's.
static tr__proc_t *
s_family (tr_node_t *node, const char *mode, const char *dir, s_rec_t *rec,
          pid_t *pid, pid_t *gpid)
{
    char gpid_path [128];
    snprintf (gpid_path, sizeof gpid_path, "%s/gpid", dir);
    unlink (gpid_path);
    const char *argv [] = { "sh", S_PROCS "/family.sh", mode, dir, NULL };
    tr__proc_t *proc = s_start (node, mode, argv, rec);
    *pid = tr__proc_pid (proc);
    *gpid = s_read_pid (gpid_path);
    ck_assert_int_eq (getpgid (*gpid), *pid);
    return proc;
}

//  Stopping a child takes its whole group: grandchildren that die of
//  SIGTERM, one that ignores it, one whose parent is already gone.
START_TEST (test_stop_grandchildren)
{
    tr_node_t *node = s_node ();
    char dir [64];
    s_scratch (dir, sizeof dir);
    static const struct {
        const char *mode;
        int rc;
        const char *reason;
    } cases [] = {
        { "wait",     TR_OK,        "killed by signal 15 (SIGTERM)" },
        { "stubborn", TR_ETIMEDOUT, "killed by signal 15 (SIGTERM)" },
        { "linger",   TR_ETIMEDOUT, "killed by signal 15 (SIGTERM)" },
        { "orphan",   TR_OK,        "exited normally" }
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        s_rec_t rec;
        s_rec_init (&rec);
        pid_t pid, gpid;
        tr__proc_t *proc = s_family (node, cases [i].mode, dir, &rec, &pid, &gpid);
        if (strcmp (cases [i].mode, "orphan") == 0)
            s_rec_wait (&rec, proc);        //  the group outlives its leader
        int timeout = cases [i].rc == TR_OK? 10000 * tr_test_slowdown (): 300;
        ck_assert_msg (tr__proc_stop (proc, timeout) == cases [i].rc, "%s", cases [i].mode);
        ck_assert_msg (s_group_gone (&pid), "%s: group %d is still there", cases [i].mode, pid);
        ck_assert (s_pid_gone (&gpid));
        ck_assert_str_eq (s_rec_wait (&rec, proc).reason, cases [i].reason);
        tr__proc_destroy (&proc);
        s_rec_fini (&rec);
    }
    ck_assert (tr_test_wait_until (s_childless, NULL, S_WAIT_MS));
    s_scratch_remove (dir);
    tr_node_destroy (&node);
}
END_TEST

typedef struct {
    pid_t pid;
} s_reaped_t;

//  Gone from /proc altogether: not even a zombie.
static bool
s_reaped (void *arg)
{
    return s_proc_state (((s_reaped_t *) arg)->pid, NULL) == 0;
}

//  A grandchild whose parent exits first is reparented to troupe (the
//  subreaper) and reaped when it dies: no zombie is left.
START_TEST (test_orphan_reaped)
{
    tr_node_t *node = s_node ();
    char dir [64];
    s_scratch (dir, sizeof dir);
    s_rec_t rec;
    s_rec_init (&rec);
    pid_t pid, gpid;
    tr__proc_t *proc = s_family (node, "orphan", dir, &rec, &pid, &gpid);
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "exited normally");
    pid_t ppid = 0;
    char state = s_proc_state (gpid, &ppid);
    ck_assert_int_ne (state, 0);
    ck_assert_int_ne (state, 'Z');
    ck_assert_int_eq (ppid, getpid ());
    ck_assert_int_eq (getpgid (gpid), pid);     //  the group outlives its leader
    //  The owner may let go of the handle while the group lingers.
    tr__proc_destroy (&proc);
    ck_assert_int_eq (kill (gpid, SIGKILL), 0);
    s_reaped_t r = { gpid };
    ck_assert_msg (tr_test_wait_until (s_reaped, &r, S_WAIT_MS),
                   "grandchild %d left as state %c", gpid, s_proc_state (gpid, NULL));
    ck_assert (tr_test_wait_until (s_group_gone, &pid, S_WAIT_MS));
    ck_assert_int_eq (s_rec_calls (&rec), 1);
    s_rec_fini (&rec);
    s_scratch_remove (dir);
    tr_node_destroy (&node);
    ck_assert (s_childless (NULL));
}
END_TEST

//  A grandchild that leaves the group (setsid) escapes stops, but when
//  it ends after its parent, troupe still reaps it.
START_TEST (test_escaped_orphan_reaped)
{
    if (access ("/usr/bin/setsid", X_OK) && access ("/bin/setsid", X_OK))
        return;                         //  no setsid(1) here
    tr_node_t *node = s_node ();
    char dir [64], path [128];
    s_scratch (dir, sizeof dir);
    snprintf (path, sizeof path, "%s/gpid", dir);
    s_rec_t rec;
    s_rec_init (&rec);
    const char *argv [] = {
        "sh", "-c",
        "setsid sh -c 'echo $$ > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; sleep 0.5' escaped \"$0\" &"
        "sleep 0.1",
        path, NULL
    };
    tr__proc_t *proc = s_start (node, "escaper", argv, &rec);
    pid_t pid = tr__proc_pid (proc);
    pid_t gpid = s_read_pid (path);
    ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "exited normally");
    ck_assert_int_ne (getpgid (gpid), pid);
    s_reaped_t r = { gpid };
    ck_assert_msg (tr_test_wait_until (s_reaped, &r, S_WAIT_MS),
                   "escaped grandchild %d left as state %c", gpid, s_proc_state (gpid, NULL));
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    s_scratch_remove (dir);
    tr_node_destroy (&node);
}
END_TEST

//  The application's own children (its fork, system) are its to reap,
//  even while the service runs.
START_TEST (test_foreign_children_left_alone)
{
    tr_node_t *node = s_node ();
    s_rec_t rec;
    s_rec_init (&rec);
    const char *argv [] = { "sleep", "1000", NULL };
    tr__proc_t *proc = s_start (node, "sleeper", argv, &rec);
    pid_t own = fork ();
    ck_assert_int_ge (own, 0);
    if (own == 0) {
        usleep (20 * 1000);
        _exit (3);
    }
    //  The service looks for exited children at least every half second.
    usleep (1500 * 1000);
    int status = 0;
    ck_assert_int_eq (waitpid (own, &status, 0), own);
    ck_assert (WIFEXITED (status));
    ck_assert_int_eq (WEXITSTATUS (status), 3);
    status = system ("sleep 0.7; exit 4");
    ck_assert (WIFEXITED (status));
    ck_assert_int_eq (WEXITSTATUS (status), 4);
    ck_assert_int_eq (tr__proc_stop (proc, 10000 * tr_test_slowdown ()), TR_OK);
    s_rec_wait (&rec, proc);
    tr__proc_destroy (&proc);
    s_rec_fini (&rec);
    tr_node_destroy (&node);
}
END_TEST

//  --------------------------------------------------------------------------
//  Node shutdown

START_TEST (test_node_destroy_kills_all)
{
    tr_node_t *node = s_node ();
    char dirs [3][64], ready [128];
    for (int i = 0; i < 3; i++)
        s_scratch (dirs [i], sizeof dirs [i]);
    s_rec_t recs [6];
    tr__proc_t *procs [6];
    pid_t pids [6], gpids [3];
    for (int i = 0; i < 6; i++)
        s_rec_init (&recs [i]);
    const char *sleeper [] = { "sleep", "1000", NULL };
    procs [0] = s_start (node, "sleeper", sleeper, &recs [0]);
    snprintf (ready, sizeof ready, "%s/ready", dirs [0]);
    const char *stubborn [] = { "sh", S_PROCS "/stubborn.sh", ready, NULL };
    procs [1] = s_start (node, "stubborn", stubborn, &recs [1]);
    procs [2] = s_family (node, "wait", dirs [0], &recs [2], &pids [2], &gpids [0]);
    procs [3] = s_family (node, "stubborn", dirs [1], &recs [3], &pids [3], &gpids [1]);
    procs [4] = s_family (node, "orphan", dirs [2], &recs [4], &pids [4], &gpids [2]);
    const char *quick [] = { "true", NULL };
    procs [5] = s_start (node, "quick", quick, &recs [5]);
    for (int i = 0; i < 6; i++)
        pids [i] = tr__proc_pid (procs [i]);
    ck_assert (tr_test_wait_until (s_exists, ready, S_WAIT_MS));
    s_rec_wait (&recs [5], procs [5]);
    s_rec_wait (&recs [4], procs [4]);   //  its parent left at once

    //  Stubborn ones cost the node's 5 s before SIGKILL.
    tr_node_destroy (&node);
    for (int i = 0; i < 6; i++) {
        ck_assert_msg (s_group_gone (&pids [i]), "group %d is left", pids [i]);
        s_rec_wait (&recs [i], procs [i]);
        tr__proc_destroy (&procs [i]);
        s_rec_fini (&recs [i]);
    }
    for (int i = 0; i < 3; i++)
        ck_assert (s_pid_gone (&gpids [i]));
    ck_assert (tr_test_wait_until (s_childless, NULL, S_WAIT_MS));
    for (int i = 0; i < 3; i++)
        s_scratch_remove (dirs [i]);

    //  The service starts again for a new node.
    node = s_node ();
    ck_assert_str_eq (s_run_sh (node, "exit 5").reason, "exited with status 5");
    tr_node_destroy (&node);
}
END_TEST

//  Two nodes share the service; each node's shutdown takes only its own
//  children.
START_TEST (test_two_nodes)
{
    tr_node_t *a = s_node (), *b = s_node ();
    s_rec_t ra, rb;
    s_rec_init (&ra);
    s_rec_init (&rb);
    const char *argv [] = { "sleep", "1000", NULL };
    tr__proc_t *pa = s_start (a, "a", argv, &ra);
    tr__proc_t *pb = s_start (b, "b", argv, &rb);
    pid_t pid_a = tr__proc_pid (pa), pid_b = tr__proc_pid (pb);
    tr_node_destroy (&a);
    ck_assert (s_group_gone (&pid_a));
    ck_assert_str_eq (s_rec_wait (&ra, pa).reason, "killed by signal 15 (SIGTERM)");
    ck_assert_int_eq (kill (pid_b, 0), 0);
    ck_assert_int_eq (s_rec_calls (&rb), 0);
    tr__proc_destroy (&pa);
    //  b's child is still served: it reports its end.
    ck_assert_int_eq (kill (pid_b, SIGUSR2), 0);
    ck_assert_str_eq (s_rec_wait (&rb, pb).reason, "killed by signal 12 (SIGUSR2)");
    tr__proc_destroy (&pb);
    tr_node_destroy (&b);
    s_rec_fini (&ra);
    s_rec_fini (&rb);
}
END_TEST

//  One thread starts and stops children on node a while another keeps
//  creating and destroying node b, which stops the service whenever it
//  is the last user: a's children must never be caught by that.
typedef struct {
    atomic_bool done;
    int rounds;
} s_churn_t;

static void *
s_churn (void *arg)
{
    s_churn_t *churn = (s_churn_t *) arg;
    const char *argv [] = { "true", NULL };
    while (!atomic_load (&churn->done)) {
        tr_node_t *node = NULL;
        if (tr_node_new (NULL, &node))
            break;
        s_rec_t rec;
        s_rec_init (&rec);
        tr__proc_spec_t spec = { .name = "churn", .argv = argv };
        tr__proc_t *proc = NULL;
        if (tr__proc_start (node, &spec, s_on_exit, &rec, &proc) == TR_OK) {
            tr__proc_stop (proc, 5000);
            tr_test_wait_until (s_rec_called, &rec, 20000);
            tr__proc_destroy (&proc);
        }
        tr_node_destroy (&node);
        s_rec_fini (&rec);
        churn->rounds++;
    }
    return NULL;
}

START_TEST (test_service_restart_race)
{
    tr_node_t *node = s_node ();
    s_churn_t churn = { .done = false };
    pthread_t thread;
    ck_assert_int_eq (pthread_create (&thread, NULL, s_churn, &churn), 0);
    const char *argv [] = { "sleep", "1000", NULL };
    for (int i = 0; i < 60; i++) {
        s_rec_t rec;
        s_rec_init (&rec);
        tr__proc_t *proc = s_start (node, "steady", argv, &rec);
        usleep (2000);
        pthread_mutex_lock (&rec.lock);
        ck_assert_msg (rec.calls == 0, "round %d: ended early: %s", i, rec.exit.reason);
        pthread_mutex_unlock (&rec.lock);
        ck_assert_int_eq (tr__proc_stop (proc, 10000 * tr_test_slowdown ()), TR_OK);
        ck_assert_str_eq (s_rec_wait (&rec, proc).reason, "killed by signal 15 (SIGTERM)");
        tr__proc_destroy (&proc);
        s_rec_fini (&rec);
    }
    atomic_store (&churn.done, true);
    pthread_join (thread, NULL);
    ck_assert_int_gt (churn.rounds, 0);
    tr_node_destroy (&node);
}
END_TEST

//  --------------------------------------------------------------------------
//  Many at once

#define S_MANY 50

typedef struct {
    tr_node_t *node;
    int first;                          //  its share of the children
    s_rec_t *recs;
    tr__proc_t **procs;
} s_starter_t;

static void *
s_starter (void *arg)
{
    s_starter_t *s = (s_starter_t *) arg;
    for (int i = s->first; i < S_MANY; i += 2) {
        char script [64];
        //  Half sleep until stopped; half exit with their index.
        if (i % 2)
            snprintf (script, sizeof script, "echo child %d; exec sleep 1000", i);
        else
            snprintf (script, sizeof script, "echo child %d; exit %d", i, i);
        const char *argv [] = { "sh", "-c", script, NULL };
        tr__proc_spec_t spec = { .name = "many", .argv = argv };
        if (tr__proc_start (s->node, &spec, s_on_exit, &s->recs [i], &s->procs [i]))
            s->procs [i] = NULL;
    }
    return NULL;
}

START_TEST (test_many)
{
    tr_node_t *node = s_node ();
    s_rec_t recs [S_MANY];
    tr__proc_t *procs [S_MANY];
    for (int i = 0; i < S_MANY; i++)
        s_rec_init (&recs [i]);
    //  Started from two threads at once.
    s_starter_t starters [2] = {
        { node, 0, recs, procs }, { node, 1, recs, procs }
    };
    pthread_t threads [2];
    for (int t = 0; t < 2; t++)
        ck_assert_int_eq (pthread_create (&threads [t], NULL, s_starter, &starters [t]), 0);
    for (int t = 0; t < 2; t++)
        pthread_join (threads [t], NULL);
    for (int i = 0; i < S_MANY; i++) {
        ck_assert_msg (procs [i], "child %d did not start", i);
        for (int j = 0; j < i; j++)
            ck_assert_int_ne (tr__proc_pid (procs [i]), tr__proc_pid (procs [j]));
    }
    //  The even ones end by themselves, each with its own status.
    for (int i = 0; i < S_MANY; i += 2) {
        tr__proc_exit_t exit = s_rec_wait (&recs [i], procs [i]);
        ck_assert (exit.exited);
        ck_assert_int_eq (exit.status, i);
    }
    for (int i = 1; i < S_MANY; i += 2) {
        ck_assert_int_eq (s_rec_calls (&recs [i]), 0);
        ck_assert_int_eq (tr__proc_stop (procs [i], 10000 * tr_test_slowdown ()), TR_OK);
        ck_assert_str_eq (s_rec_wait (&recs [i], procs [i]).reason,
                          "killed by signal 15 (SIGTERM)");
    }
    usleep (200 * 1000);
    for (int i = 0; i < S_MANY; i++) {
        ck_assert_int_eq (s_rec_calls (&recs [i]), 1);
        tr__proc_destroy (&procs [i]);
        s_rec_fini (&recs [i]);
    }
    ck_assert (tr_test_wait_until (s_childless, NULL, S_WAIT_MS));
    tr_node_destroy (&node);
}
END_TEST

//  Many children left running when the node goes.
START_TEST (test_many_node_destroy)
{
    tr_node_t *node = s_node ();
    s_rec_t recs [S_MANY];
    tr__proc_t *procs [S_MANY];
    pid_t pids [S_MANY];
    const char *argv [] = { "sh", "-c", "sleep 1000 & sleep 1000 & wait", NULL };
    for (int i = 0; i < S_MANY; i++) {
        s_rec_init (&recs [i]);
        procs [i] = s_start (node, "crowd", argv, &recs [i]);
        pids [i] = tr__proc_pid (procs [i]);
    }
    tr_node_destroy (&node);
    for (int i = 0; i < S_MANY; i++) {
        ck_assert (s_group_gone (&pids [i]));
        s_rec_wait (&recs [i], procs [i]);
        tr__proc_destroy (&procs [i]);
        s_rec_fini (&recs [i]);
    }
    ck_assert (tr_test_wait_until (s_childless, NULL, S_WAIT_MS));
}
END_TEST

//  --------------------------------------------------------------------------
//  The exit callback runs once, however the end and the stops meet

typedef struct {
    tr__proc_t *proc;
    int rc;
} s_stopper_t;

static void *
s_stopper (void *arg)
{
    s_stopper_t *s = (s_stopper_t *) arg;
    s->rc = tr__proc_stop (s->proc, 10000);
    return NULL;
}

START_TEST (test_exit_once)
{
    tr_node_t *node = s_node ();
    for (int round = 0; round < 20; round++) {
        s_rec_t rec;
        s_rec_init (&rec);
        //  It may end by itself just as the stops come in.
        const char *argv [] = { "sh", "-c", round % 2? "exit 0": "sleep 0.01", NULL };
        tr__proc_t *proc = s_start (node, "once", argv, &rec);
        s_stopper_t stoppers [3] = { { proc, -1 }, { proc, -1 }, { proc, -1 } };
        pthread_t threads [3];
        for (int t = 0; t < 3; t++)
            ck_assert_int_eq (pthread_create (&threads [t], NULL, s_stopper, &stoppers [t]), 0);
        for (int t = 0; t < 3; t++) {
            pthread_join (threads [t], NULL);
            ck_assert_int_eq (stoppers [t].rc, TR_OK);
        }
        s_rec_wait (&rec, proc);
        tr__proc_destroy (&proc);
        usleep (20 * 1000);
        ck_assert_int_eq (s_rec_calls (&rec), 1);
        s_rec_fini (&rec);
    }
    tr_node_destroy (&node);
}
END_TEST

//  An exit callback may start another process (it runs on the service
//  thread, which spawns it right away).
typedef struct {
    tr_node_t *node;
    s_rec_t rec;
    tr__proc_t *next;
    int rc;
} s_chain_t;

static void
s_on_exit_chain (tr__proc_t *proc, const tr__proc_exit_t *exit, void *arg)
{
    (void) proc;
    (void) exit;
    s_chain_t *chain = (s_chain_t *) arg;
    const char *argv [] = { "sh", "-c", "exit 9", NULL };
    tr__proc_spec_t spec = { .name = "next", .argv = argv };
    chain->rc = tr__proc_start (chain->node, &spec, s_on_exit, &chain->rec, &chain->next);
}

START_TEST (test_start_from_callback)
{
    tr_node_t *node = s_node ();
    s_chain_t chain = { .node = node, .rc = -1 };
    s_rec_init (&chain.rec);
    const char *argv [] = { "true", NULL };
    tr__proc_spec_t spec = { .name = "first", .argv = argv };
    tr__proc_t *first = NULL;
    ck_assert_int_eq (tr__proc_start (node, &spec, s_on_exit_chain, &chain, &first), TR_OK);
    ck_assert (tr_test_wait_until (s_rec_called, &chain.rec, S_WAIT_MS));
    ck_assert_int_eq (chain.rc, TR_OK);
    ck_assert_str_eq (s_rec_wait (&chain.rec, chain.next).reason, "exited with status 9");
    tr__proc_destroy (&chain.next);
    tr__proc_destroy (&first);
    s_rec_fini (&chain.rec);
    tr_node_destroy (&node);
}
END_TEST

//  --------------------------------------------------------------------------
//  troupe dies of a fatal signal, or exits without shutting its node
//  down: its children's groups die with it

//  In a forked copy of the test: starts family.sh, reports the child's
//  and the grandchild's pids through `report`, then dies of `sig` (or
//  calls exit for 0).
static void __attribute__ ((noreturn))
s_doomed (int sig, const char *dir, int report)
{
    struct rlimit no_core = { 0, 0 };
    setrlimit (RLIMIT_CORE, &no_core);
    tr_node_t *node = NULL;
    if (tr_node_new (NULL, &node))
        _exit (10);
    char gpid_path [128];
    snprintf (gpid_path, sizeof gpid_path, "%s/gpid", dir);
    const char *argv [] = { "sh", S_PROCS "/family.sh", "stubborn", dir, NULL };
    tr__proc_spec_t spec = { .name = "doomed", .argv = argv };
    tr__proc_t *proc = NULL;
    if (tr__proc_start (node, &spec, NULL, NULL, &proc))
        _exit (11);
    pid_t pids [2] = { tr__proc_pid (proc), 0 };
    for (int i = 0; i < 20000 && access (gpid_path, F_OK); i++)
        usleep (1000);
    char *text = s_slurp (gpid_path);
    if (!text)
        _exit (12);
    pids [1] = (pid_t) atoi (text);
    free (text);
    if (write (report, pids, sizeof pids) != (ssize_t) sizeof pids)
        _exit (13);
    if (sig == 0)
        exit (0);                       //  without destroying the node
    if (sig == SIGSEGV) {
        volatile int *volatile nowhere = NULL;
        *nowhere = 1;
    }
    else
        abort ();
    _exit (14);
}

//  A fatal signal's own handler is not tr_proc's to take over when a
//  sanitizer has one: only test the signals tr_proc does handle.
static bool
s_default_action (int sig)
{
    struct sigaction sa;
    return sigaction (sig, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO)
        && sa.sa_handler == SIG_DFL;
}

START_TEST (test_fatal_signal_cleanup)
{
    //  The copy must start from a process that never used the service
    //  (a fork keeps its state, not its thread): Check's fork mode.
    const char *fork_mode = getenv ("CK_FORK");
    if (fork_mode && strcmp (fork_mode, "no") == 0)
        return;
    //  Zombies of the dead copy's children are reparented here, and
    //  reaped here, so that their groups can be seen to empty.
    ck_assert_int_eq (prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    static const int sigs [] = { SIGABRT, SIGSEGV, 0 };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs [0]; i++) {
        if (sigs [i] && !s_default_action (sigs [i]))
            continue;
        char dir [64];
        s_scratch (dir, sizeof dir);
        int report [2];
        ck_assert_int_eq (pipe (report), 0);
        pid_t doomed = fork ();
        ck_assert_int_ge (doomed, 0);
        if (doomed == 0) {
            close (report [0]);
            s_doomed (sigs [i], dir, report [1]);
        }
        close (report [1]);
        pid_t pids [2] = { 0, 0 };
        ssize_t n = read (report [0], pids, sizeof pids);
        close (report [0]);
        int status = 0;
        ck_assert_int_eq (waitpid (doomed, &status, 0), doomed);
        ck_assert_msg (n == sizeof pids, "the copy failed: status %d", status);
        if (sigs [i]) {
            ck_assert (WIFSIGNALED (status));
            ck_assert_int_eq (WTERMSIG (status), sigs [i]);
        }
        else {
            ck_assert (WIFEXITED (status));
            ck_assert_int_eq (WEXITSTATUS (status), 0);
        }
        int64_t deadline = tr_test_now_ms () + S_WAIT_MS;
        while (!(s_group_gone (&pids [0]) && s_pid_gone (&pids [1]))
        &&     tr_test_now_ms () < deadline) {
            while (waitpid (-1, NULL, WNOHANG) > 0)
                ;
            usleep (1000);
        }
        ck_assert_msg (s_group_gone (&pids [0]), "signal %d: group %d is left",
                       sigs [i], pids [0]);
        ck_assert (s_pid_gone (&pids [1]));
        s_scratch_remove (dir);
    }
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_proc");
    TCase *tc = tcase_create ("core");
    tcase_set_timeout (tc, 120 * tr_test_slowdown ());
    tcase_add_test (tc, test_exit_status);
    tcase_add_test (tc, test_killed_by_signal);
    tcase_add_test (tc, test_argv_exact);
    tcase_add_test (tc, test_env);
    tcase_add_test (tc, test_cwd);
    tcase_add_test (tc, test_not_found);
    tcase_add_test (tc, test_bad_cwd);
    tcase_add_test (tc, test_output_logged);
    tcase_add_test (tc, test_long_lines);
    tcase_add_test (tc, test_stop_sigterm);
    tcase_add_test (tc, test_stop_stubborn);
    tcase_add_test (tc, test_stop_grandchildren);
    tcase_add_test (tc, test_orphan_reaped);
    tcase_add_test (tc, test_escaped_orphan_reaped);
    tcase_add_test (tc, test_foreign_children_left_alone);
    tcase_add_test (tc, test_node_destroy_kills_all);
    tcase_add_test (tc, test_two_nodes);
    tcase_add_test (tc, test_service_restart_race);
    tcase_add_test (tc, test_many);
    tcase_add_test (tc, test_many_node_destroy);
    tcase_add_test (tc, test_exit_once);
    tcase_add_test (tc, test_start_from_callback);
    tcase_add_test (tc, test_fatal_signal_cleanup);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
