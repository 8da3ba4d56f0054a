/*  tr_port_test.c - the "port" actor type (actors/tr_port.c) against real
    processes: cat, sh, and the small scripts in tests/ports/ that
    misbehave in each way a port must survive (non-zero exit, hang with a
    grandchild, a flood of output, a slow answer, stderr noise; and for
    JSON lines: garbage, a hang, an exit mid-conversation, a huge line,
    a wrong id, output nobody asked for). Every port runs in a real
    supervision tree loaded from YAML, so that failures restart it and
    breakers count them.
*/

#include "tr_test.h"
#include "tr_test_tree.h"
#include "tr_json.h"

#include <errno.h>
#include <stdatomic.h>
#include <signal.h>

#define S_PORTS TROUPE_SOURCE_DIR "/tests/ports"

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  A watcher of sys.breaker.opened events.
static atomic_int s_breakers_opened;

static int
s_watch (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    atomic_fetch_add (&s_breakers_opened, 1);
    return 0;
}

static bool
s_breaker_opened (void *arg)
{
    return atomic_load (&s_breakers_opened) > 0;
}

static void
s_setup (void)
{
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
    static const tr_behaviour_t watcher = { .handle = s_watch };
    atomic_store (&s_breakers_opened, 0);
    ck_assert_int_eq (tr_spawn (s_node, "watcher", &watcher, NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "sys.breaker.opened", "watcher"), TR_OK);
    s_tree = NULL;
    s_sup = NULL;
}

static void
s_teardown (void)
{
    tr_sup_stop (&s_sup);
    tr_node_destroy (&s_node);
    tr_tree_destroy (&s_tree);
}

//  Starts a tree from YAML; returns tr_sup_start's result and its reason
//  (in *reason_p, to free, when not NULL).
static int
s_try_start (const char *yaml, char **reason_p)
{
    tr_tree_error_t err;
    int rc = tr_tree_parse (yaml, strlen (yaml), "test.yaml", &s_tree, &err);
    char text [600];
    ck_assert_msg (rc == TR_OK, "%s", tr_tree_error_format (&err, text, sizeof text));
    char *reason = NULL;
    rc = tr_sup_start (s_node, s_tree->name, &s_tree->root, &s_sup, &reason);
    if (reason_p)
        *reason_p = reason;
    else
        free (reason);
    return rc;
}

static void
s_start (const char *yaml)
{
    char *reason = NULL;
    int rc = s_try_start (yaml, &reason);
    ck_assert_msg (rc == TR_OK, "tr_sup_start: %s: %s", tr_errname (rc), reason? reason: "");
    free (reason);
}

static int
s_ask (const char *to, const char *json, int timeout_ms, char **answer_p)
{
    return tr_test_ask_jj (s_node, to, json, timeout_ms, answer_p);
}

static void
s_expect (const char *to, const char *json, const char *expected)
{
    tr_test_expect_jj (s_node, to, json, 5000 * tr_test_slowdown (), expected);
}

static void
s_expect_error (const char *to, const char *json, int expected)
{
    tr_test_expect_error (s_node, to, json, 5000 * tr_test_slowdown (), expected);
}

//  The pid a lines.py port reports.
static long
s_pid (const char *to)
{
    char *answer = NULL;
    int rc = s_ask (to, "{\"op\":\"pid\"}", 5000 * tr_test_slowdown (), &answer);
    ck_assert_msg (rc == TR_OK, "pid: %s", tr_errname (rc));
    const char *at = strstr (answer, "\"pid\":");
    ck_assert_ptr_nonnull (at);
    long pid = strtol (at + 6, NULL, 10);
    free (answer);
    return pid;
}

static bool
s_gone (void *arg)
{
    return kill ((pid_t) (intptr_t) arg, 0) && errno == ESRCH;
}

//  Waits until no process has that pid (reaped, not a zombie).
static void
s_expect_gone (long pid)
{
    ck_assert_msg (tr_test_wait_until (s_gone, (void *) (intptr_t) pid,
                                       5000 * tr_test_slowdown ()),
                   "pid %ld is still there", pid);
}

typedef struct {
    const char *name;
    uint64_t failed;
} s_failures_t;

static bool
s_failures_are (void *arg)
{
    s_failures_t *f = (s_failures_t *) arg;
    tr_actor_stats_t stats;
    return tr_actor_stats (s_node, f->name, &stats) == TR_OK && stats.failed == f->failed;
}

//  The actor's count of failed messages, once it reaches `expected` (a
//  failure is counted after the handler has answered the asker), or
//  what it is after a while.
static uint64_t
s_failed_n (const char *name, uint64_t expected)
{
    s_failures_t f = { name, expected };
    tr_test_wait_until (s_failures_are, &f, 2000 * tr_test_slowdown ());
    tr_actor_stats_t stats;
    ck_assert_int_eq (tr_actor_stats (s_node, name, &stats), TR_OK);
    return stats.failed;
}

//  --------------------------------------------------------------------------
//  per_message

//  cat: a string goes in as its bytes, a map as a line of JSON; the
//  output comes back as a string.
START_TEST (test_once_cat)
{
    s_start ("name: t\nchildren:\n"
             "  - {name: cat, actor: port, params: {command: [cat]}}\n");
    s_expect ("cat", "\"hello\"", "\"hello\"");
    s_expect ("cat", "{\"a\":[1,true,null],\"b\":\"x\\ny\"}",
              "\"{\\\"a\\\":[1,true,null],\\\"b\\\":\\\"x\\\\ny\\\"}\\n\"");
    s_expect ("cat", "\"\"", "\"\"");
    s_expect ("cat", "12", "\"12\\n\"");
    ck_assert_uint_eq (s_failed_n ("cat", 0), 0);
    tr_sup_stop (&s_sup);
    tr_tree_destroy (&s_tree);
    s_start ("name: t\nchildren:\n"
             "  - {name: trimmed, actor: port, params: {command: [cat], trim: true}}\n");
    s_expect ("trimmed", "\"a\\nb\\n\\r\\n\\n\"", "\"a\\nb\"");
    s_expect ("trimmed", "\"\\n\"", "\"\"");
    s_expect ("trimmed", "\"x \"", "\"x \"");
}
END_TEST

//  {input} puts the body in an argument; stdin is then empty. A body with
//  a NUL byte cannot be an argument: TR_EINVAL, not a failure.
START_TEST (test_once_argument)
{
    s_start ("name: t\nchildren:\n"
             "  - name: arg\n"
             "    actor: port\n"
             "    params: {command: [sh, -c, 'printf \"<%s|%s>\" \"$1\" \"$(cat)\"', sh, \"x{input}y\"]}\n");
    s_expect ("arg", "\"a b\"", "\"<xa by|>\"");
    s_expect ("arg", "{\"k\":1}", "\"<x{\\\"k\\\":1}y|>\"");
    s_expect_error ("arg", "\"a\\u0000b\"", TR_EINVAL);
    s_expect ("arg", "\"again\"", "\"<xagainy|>\"");
    ck_assert_uint_eq (s_failed_n ("arg", 0), 0);
}
END_TEST

//  output: json parses the output; output that is not JSON is a failure.
START_TEST (test_once_json_output)
{
    s_start ("name: t\nchildren:\n"
             "  - {name: js, actor: port, params: {command: [cat], output: json}}\n");
    s_expect ("js", "{\"x\":[1,2.5,\"z\"]}", "{\"x\":[1,2.5,\"z\"]}");
    s_expect_error ("js", "\"not json\"", TR_ECHILD);
    s_expect ("js", "[true]", "[true]");
}
END_TEST

//  A non-zero exit status fails the agent (its stderr is logged); the
//  supervisor restarts it and it serves the next message.
START_TEST (test_once_exit_status)
{
    s_start ("name: t\nchildren:\n"
             "  - {name: bad, actor: port, params: {command: [sh, " S_PORTS "/fail.sh]}}\n"
             "  - {name: sig, actor: port, params: {command: [sh, -c, 'kill -9 $$']}}\n");
    s_expect_error ("bad", "\"x\"", TR_ECHILD);
    s_expect_error ("bad", "\"x\"", TR_ECHILD);
    s_expect_error ("sig", "\"x\"", TR_ECHILD);
    ck_assert_uint_eq (s_failed_n ("bad", 2), 2);
    ck_assert_uint_eq (s_failed_n ("sig", 1), 1);
    int64_t value = 0;
    ck_assert_int_eq (tr_actor_info_get (s_node, "bad", "port.failed", &value), TR_OK);
    ck_assert_int_eq (value, 2);
    ck_assert_int_eq (tr_actor_info_get (s_node, "bad", "port.starts", &value), TR_OK);
    ck_assert_int_eq (value, 2);
    ck_assert_int_eq (tr_actor_info_get (s_node, "bad", "port.messages", &value), TR_OK);
    ck_assert_int_eq (value, 2);
}
END_TEST

//  A command that never ends is stopped at the timeout, with its whole
//  process group (the grandchild too); the asker gets TR_ETIMEDOUT.
START_TEST (test_once_hang)
{
    char path [] = "/tmp/tr_port_test_XXXXXX";
    int fd = mkstemp (path);
    ck_assert_int_ge (fd, 0);
    close (fd);
    unlink (path);
    char yaml [1024];
    snprintf (yaml, sizeof yaml, "name: t\nchildren:\n"
              "  - name: hang\n    actor: port\n"
              "    params: {command: [sh, %s/hang.sh, %s], timeout: %dms, stop_timeout: 200ms}\n",
              S_PORTS, path, 300 * tr_test_slowdown ());
    s_start (yaml);
    int64_t start = tr_test_now_ms ();
    s_expect_error ("hang", "\"x\"", TR_ETIMEDOUT);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_int_ge (took, 300 * tr_test_slowdown ());
    ck_assert_int_lt (took, 3000 * tr_test_slowdown ());
    char *pids = tr_test_read_file (path, NULL);
    long grandchild = 0, child = 0;
    ck_assert_int_eq (sscanf (pids, "%ld %ld", &grandchild, &child), 2);
    free (pids);
    unlink (path);
    s_expect_gone (child);
    s_expect_gone (grandchild);
    ck_assert_uint_eq (s_failed_n ("hang", 1), 1);
}
END_TEST

//  More output than max_output: TR_ETOOBIG, and the process is stopped.
START_TEST (test_once_flood)
{
    s_start ("name: t\nchildren:\n"
             "  - name: flood\n    actor: port\n"
             "    params: {command: [sh, " S_PORTS "/flood.sh], max_output: 100000}\n"
             "  - name: fits\n    actor: port\n"
             "    params: {command: [sh, -c, 'head -c 1000 /dev/zero | tr \"\\\\0\" y'], max_output: 1000}\n");
    s_expect_error ("flood", "\"x\"", TR_ETOOBIG);
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("fits", "\"x\"", 5000 * tr_test_slowdown (), &answer), TR_OK);
    ck_assert_uint_eq (strlen (answer), 1002);
    free (answer);
}
END_TEST

//  A slow answer within the timeout is an answer; an ask whose own
//  deadline is shorter gets TR_ETIMEDOUT, which is not the agent's
//  failure.
START_TEST (test_once_slow)
{
    s_start ("name: t\nchildren:\n"
             "  - {name: slow, actor: port, params: {command: [sh, " S_PORTS "/slow.sh], timeout: 20s}}\n");
    int64_t start = tr_test_now_ms ();
    s_expect ("slow", "\"x\"", "\"done\\n\"");
    ck_assert_int_ge (tr_test_now_ms () - start, 300);
    ck_assert_int_eq (s_ask ("slow", "\"x\"", 100, NULL), TR_ETIMEDOUT);
    s_expect ("slow", "\"x\"", "\"done\\n\"");
    ck_assert_uint_eq (s_failed_n ("slow", 0), 0);
}
END_TEST

//  Lots of stderr (more than a pipe holds) is logged, not an error.
START_TEST (test_once_stderr_noise)
{
    s_start ("name: t\nchildren:\n"
             "  - {name: noisy, actor: port, params: {command: [sh, " S_PORTS "/noisy.sh]}}\n");
    s_expect ("noisy", "\"quiet please\"", "\"QUIET PLEASE\"");
    ck_assert_uint_eq (s_failed_n ("noisy", 0), 0);
}
END_TEST

//  A program that does not exist: TR_ENOTFOUND to the asker, a failure.
START_TEST (test_once_missing_program)
{
    s_start ("name: t\nchildren:\n"
             "  - {name: none, actor: port, params: {command: [/nonexistent/troupe-port]}}\n");
    s_expect_error ("none", "\"x\"", TR_ENOTFOUND);
    ck_assert_uint_eq (s_failed_n ("none", 1), 1);
}
END_TEST

//  Tells run the command too; a failed tell is counted as a failure.
START_TEST (test_once_tells)
{
    char path [] = "/tmp/tr_port_tell_XXXXXX";
    int fd = mkstemp (path);
    ck_assert_int_ge (fd, 0);
    close (fd);
    char yaml [1024];
    snprintf (yaml, sizeof yaml, "name: t\nchildren:\n"
              "  - {name: log, actor: port, params: {command: [sh, -c, 'cat >> %s']}}\n"
              "  - {name: bad, actor: port, params: {command: [sh, " S_PORTS "/fail.sh]}}\n",
              path);
    s_start (yaml);
    tr_body_t body = tr_test_pack_str ("one;");
    ck_assert_int_eq (tr_tell (s_node, "log", body.data, body.size, NULL), TR_OK);
    body = tr_test_pack_str ("two;");
    ck_assert_int_eq (tr_tell (s_node, "log", body.data, body.size, NULL), TR_OK);
    ck_assert_int_eq (tr_tell (s_node, "bad", body.data, body.size, NULL), TR_OK);
    s_expect ("log", "\"\"", "\"\"");     //  after both tells
    char *text = tr_test_read_file (path, NULL);
    ck_assert_str_eq (text, "one;two;");
    free (text);
    unlink (path);
    s_expect_error ("bad", "\"x\"", TR_ECHILD);
    ck_assert_uint_eq (s_failed_n ("bad", 2), 2);
}
END_TEST

//  --------------------------------------------------------------------------
//  json_lines

//  A JSON-lines echo in plain shell: answers in order, one process.
START_TEST (test_lines_shell_echo)
{
    s_start ("name: t\nchildren:\n"
             "  - name: echo\n    actor: port\n"
             "    params: {command: [sh, " S_PORTS "/lines_echo.sh], mode: json_lines}\n");
    s_expect ("echo", "{\"q\":\"hi\",\"n\":[1,2]}", "{\"q\":\"hi\",\"n\":[1,2]}");
    s_expect ("echo", "\"just a string\"", "\"just a string\"");
    for (int i = 0; i < 50; i++) {
        char json [64];
        snprintf (json, sizeof json, "{\"i\":%d}", i);
        s_expect ("echo", json, json);
    }
    ck_assert_uint_eq (s_failed_n ("echo", 0), 0);
}
END_TEST

#define S_LINES_PY(name, extra)                                             \
    "  - name: " name "\n    actor: port\n"                                 \
    "    params: {command: [/usr/bin/python3, -u, " S_PORTS "/lines.py],"   \
    " mode: json_lines, id_field: id" extra "}\n"

//  Happy paths with an id field: echo, a slow answer, stderr noise; one
//  process throughout.
START_TEST (test_lines_python)
{
    s_start ("name: t\nchildren:\n" S_LINES_PY ("py", ""));
    long pid = s_pid ("py");
    s_expect ("py", "{\"op\":\"echo\",\"text\":\"a\"}", "{\"id\":2,\"echo\":\"a\"}");
    s_expect ("py", "{\"op\":\"slow\",\"ms\":200,\"text\":\"b\"}", "{\"id\":3,\"echo\":\"b\"}");
    s_expect ("py", "{\"op\":\"stderr\",\"text\":\"c\"}", "{\"id\":4,\"echo\":\"c\"}");
    //  An id in the request is replaced by the port's own.
    s_expect ("py", "{\"op\":\"echo\",\"id\":77,\"text\":\"d\"}", "{\"id\":5,\"echo\":\"d\"}");
    //  With an id field, a request must be a map: the asker's mistake.
    s_expect_error ("py", "\"not a map\"", TR_EINVAL);
    ck_assert_int_eq (s_pid ("py"), pid);
    ck_assert_uint_eq (s_failed_n ("py", 0), 0);
}
END_TEST

//  Each misbehaviour fails the agent with its own error, stops the
//  process and has the supervisor start a new one, which answers.
static void
s_misbehave (const char *request, int error)
{
    long before = s_pid ("py");
    s_expect_error ("py", request, error);
    s_expect_gone (before);
    long after = s_pid ("py");
    ck_assert_int_ne (after, before);
}

START_TEST (test_lines_misbehaviour)
{
    char yaml [1024];
    snprintf (yaml, sizeof yaml, "name: t\n"
              "defaults: {backoff: {min: 1ms, max: 5ms}, breaker: off}\n"
              "intensity: {max_restarts: 100, period: 10s}\n"
              "children:\n" S_LINES_PY ("py", ", timeout: %dms, max_output: 50000"),
              1000 * tr_test_slowdown ());
    s_start (yaml);
    s_misbehave ("{\"op\":\"garbage\"}", TR_ECHILD);
    s_misbehave ("{\"op\":\"hang\"}", TR_ETIMEDOUT);
    s_misbehave ("{\"op\":\"exit\",\"code\":3}", TR_ECHILD);
    s_misbehave ("{\"op\":\"huge\",\"size\":200000}", TR_ETOOBIG);
    s_misbehave ("{\"op\":\"wrong_id\"}", TR_ECHILD);
    //  A second line nobody asked for is found before the next request
    //  (ids 1 and 2 went to s_misbehave's and this s_pid).
    long before = s_pid ("py");
    s_expect ("py", "{\"op\":\"extra\",\"text\":\"e\"}", "{\"id\":3,\"echo\":\"e\"}");
    usleep (100 * 1000);
    s_expect_error ("py", "{\"op\":\"echo\"}", TR_ECHILD);
    s_expect_gone (before);
    ck_assert_int_ne (s_pid ("py"), before);
    ck_assert_uint_eq (s_failed_n ("py", 6), 6);
    //  A line just under the limit is fine.
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("py", "{\"op\":\"huge\",\"size\":49000}",
                             5000 * tr_test_slowdown (), &answer), TR_OK);
    free (answer);
}
END_TEST

//  The process's exit while the actor waits for messages fails it at
//  once: the supervisor starts a new process before anyone asks.
typedef struct {
    const char *name;
    const char *key;
    int64_t value;
} s_info_t;

static bool
s_info_is (void *arg)
{
    s_info_t *info = (s_info_t *) arg;
    int64_t value = 0;
    return tr_actor_info_get (s_node, info->name, info->key, &value) == TR_OK
        && value == info->value;
}

START_TEST (test_lines_death_while_idle)
{
    s_start ("name: t\ndefaults: {backoff: {min: 1ms, max: 5ms}}\nchildren:\n"
             S_LINES_PY ("py", ""));
    long pid = s_pid ("py");
    kill ((pid_t) pid, SIGKILL);
    s_expect_gone (pid);
    s_info_t restarted = { "py", "port.starts", 2 };
    ck_assert (tr_test_wait_until (s_info_is, &restarted, 5000 * tr_test_slowdown ()));
    long again = s_pid ("py");
    ck_assert_int_ne (again, pid);
    ck_assert_uint_eq (s_failed_n ("py", 1), 1);
    //  Stopping the agent stops its process.
    tr_sup_stop (&s_sup);
    s_expect_gone (again);
}
END_TEST

//  An ask that gives up first is not the agent's failure: its answer is
//  read and dropped, and the next ask gets its own.
START_TEST (test_lines_ask_deadline)
{
    s_start ("name: t\nchildren:\n" S_LINES_PY ("py", ", timeout: 20s"));
    long pid = s_pid ("py");
    ck_assert_int_eq (s_ask ("py", "{\"op\":\"slow\",\"ms\":400}", 100, NULL), TR_ETIMEDOUT);
    s_expect ("py", "{\"op\":\"echo\",\"text\":\"next\"}", "{\"id\":3,\"echo\":\"next\"}");
    ck_assert_int_eq (s_pid ("py"), pid);
    ck_assert_uint_eq (s_failed_n ("py", 0), 0);
}
END_TEST

//  A process that never answers a request whose asker gave up is still
//  hung: the next request finds out when that answer is due.
START_TEST (test_lines_owed_hang)
{
    char yaml [512];
    snprintf (yaml, sizeof yaml, "name: t\ndefaults: {backoff: {min: 1ms, max: 5ms}}\n"
              "children:\n" S_LINES_PY ("py", ", timeout: %dms"), 500 * tr_test_slowdown ());
    s_start (yaml);
    long pid = s_pid ("py");
    ck_assert_int_eq (s_ask ("py", "{\"op\":\"hang\"}", 100, NULL), TR_ETIMEDOUT);
    int64_t start = tr_test_now_ms ();
    s_expect_error ("py", "{\"op\":\"echo\"}", TR_ETIMEDOUT);
    ck_assert_int_lt (tr_test_now_ms () - start, 500 * tr_test_slowdown ());
    s_expect_gone (pid);
    ck_assert_int_ne (s_pid ("py"), pid);
    ck_assert_uint_eq (s_failed_n ("py", 1), 1);
}
END_TEST

//  Failures open the breaker: asks fail at once with TR_ECIRCUIT.
START_TEST (test_lines_breaker)
{
    s_start ("name: t\n"
             "defaults: {backoff: {min: 1ms, max: 5ms}}\n"
             "intensity: {max_restarts: 100, period: 10s}\n"
             "children:\n" S_LINES_PY ("py", "")
             "    breaker: {failures: 2, reset_timeout: 10s}\n");
    s_expect_error ("py", "{\"op\":\"garbage\"}", TR_ECHILD);
    s_expect_error ("py", "{\"op\":\"exit\"}", TR_ECHILD);
    //  The asker has its error before the failure is counted.
    ck_assert (tr_test_wait_until (s_breaker_opened, NULL, 5000 * tr_test_slowdown ()));
    s_expect_error ("py", "{\"op\":\"echo\"}", TR_ECIRCUIT);
}
END_TEST

//  The error the tree loader gives for yaml (which must not load),
//  formatted: "FILE:LINE:COLUMN: child: what is wrong".
static void
s_expect_load_error (const char *yaml, const char *expected)
{
    tr_tree_error_t err;
    char buf [800];
    tr_tree_t *tree = NULL;
    int rc = tr_tree_parse (yaml, strlen (yaml), "test.yaml", &tree, &err);
    tr_tree_destroy (&tree);
    ck_assert_msg (rc != TR_OK, "loaded: %s", yaml);
    const char *error = tr_tree_error_format (&err, buf, sizeof buf);
    ck_assert_msg (!strcmp (error, expected), "got      '%s'\nexpected '%s'", error, expected);
}

//  Every parameter is checked when the tree file is loaded, nested values
//  too, each mistake reported at the line and column of the value at
//  fault (params start at column 13 of line 5 here).
START_TEST (test_bad_params)
{
    static const struct {
        const char *params;
        const char *error;
    } cases [] = {
        { "{command: [cat], mode: streaming}",
          "test.yaml:5:36: p: 'mode' must be one of per_message, json_lines, not 'streaming'" },
        { "{command: []}",
          "test.yaml:5:23: p: 'command' must be a non-empty list of strings, not an empty list" },
        { "{command: [cat, 3]}",
          "test.yaml:5:29: p: 'command' item 2 must be a string, not an integer" },
        { "{command: [cat, {a: b}]}",
          "test.yaml:5:29: p: 'command' item 2 must be a string, not a mapping" },
        { "{command: ['', x]}",
          "test.yaml:5:24: p: 'command' item 1, the program, must not be empty" },
        { "{command: [cat], output: xml}",
          "test.yaml:5:38: p: 'output' must be one of text, json, not 'xml'" },
        { "{command: [cat], timeout: 0}",
          "test.yaml:5:39: p: 'timeout' must be from 1 ms to 2147483647 ms, not 0 ms" },
        { "{command: [cat], stop_timeout: -1}",
          "test.yaml:5:44: parameter 'stop_timeout' of actor type 'port' must be a duration "
          "such as 250ms or 2s, or an integer of milliseconds, not '-1'" },
        { "{command: [cat], max_output: 0}",
          "test.yaml:5:42: p: 'max_output' must be from 1 to 16777200, not 0" },
        { "{command: [cat], max_output: -10}",
          "test.yaml:5:42: p: 'max_output' must be from 1 to 16777200, not -10" },
        { "{command: [cat], env: {A: x, B: 1}}",
          "test.yaml:5:45: p: 'env' value of 'B' must be a string, not an integer" },
        { "{command: [cat], env: {A: [x]}}",
          "test.yaml:5:39: p: 'env' value of 'A' must be a string, not a list" },
        { "{command: [cat], env: {'A=B': x}}",
          "test.yaml:5:43: p: 'env' name 'A=B' must not be empty nor hold '=' or a NUL byte" },
        { "{command: [cat], cwd: ''}",
          "test.yaml:5:35: p: 'cwd' must be a non-empty string without NUL bytes" },
        { "{command: [cat], id_field: id}",
          "test.yaml:5:40: p: 'id_field' needs mode json_lines" },
        { "{command: [cat], mode: json_lines, output: text, id_field: id}",
          "test.yaml:5:56: p: 'id_field' needs output json" },
        { "{command: [cat, x, '{input}'], mode: json_lines}",
          "test.yaml:5:32: p: {input} in 'command' needs mode per_message" },
        { "{command: [cat], mode: json_lines, trim: true}",
          "test.yaml:5:54: p: 'trim' is only for mode per_message with output text" },
        { "{command: [cat], output: json, trim: true}",
          "test.yaml:5:50: p: 'trim' is only for mode per_message with output text" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char yaml [512];
        snprintf (yaml, sizeof yaml, "name: t\nchildren:\n  - name: p\n    actor: port\n"
                  "    params: %s\n", cases [i].params);
        s_expect_load_error (yaml, cases [i].error);
    }
    //  Nested values written as blocks: each at its own line.
    s_expect_load_error ("name: t\n"
                         "children:\n"
                         "  - name: p\n"
                         "    actor: port\n"
                         "    params:\n"
                         "      command:\n"
                         "        - /usr/bin/python3\n"
                         "        - -u\n"
                         "        - 7\n"
                         "      mode: json_lines\n",
                         "test.yaml:9:11: p: 'command' item 3 must be a string, not an integer");
    s_expect_load_error ("name: t\n"
                         "children:\n"
                         "  - name: p\n"
                         "    actor: port\n"
                         "    params:\n"
                         "      command: [env]\n"
                         "      env:\n"
                         "        LANG: C\n"
                         "        DEPTH: {max: 3}\n",
                         "test.yaml:9:16: p: 'env' value of 'DEPTH' must be a string, not a "
                         "mapping");
    //  A program that cannot be run is found when it starts (json_lines:
    //  with the agent).
    char *reason = NULL;
    int rc = s_try_start ("name: t\nintensity: {max_restarts: 0, period: 1s}\nchildren:\n"
                          "  - {name: p, actor: port, params: {command: [/nonexistent/x], "
                          "mode: json_lines}}\n", &reason);
    ck_assert_int_ne (rc, TR_OK);
    ck_assert_msg (reason && strstr (reason, "cannot start '/nonexistent/x': not found"),
                   "reason '%s'", reason? reason: "(none)");
    free (reason);
    tr_tree_destroy (&s_tree);
    //  Started from C with parameters of its own, the agent makes the same
    //  checks when it starts: {command: []} is refused.
    static const uint8_t packed [] = { 0x81, 0xa7, 'c', 'o', 'm', 'm', 'a', 'n', 'd', 0x90 };
    tr_params_t params = { packed, sizeof packed };
    const tr_actor_type_t *type = tr_actor_type_find ("port");
    ck_assert_ptr_nonnull (type);
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_EINIT);
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, NULL, NULL, NULL), TR_EINIT);
}
END_TEST

//  A body bigger than a pipe holds goes in while the output comes out:
//  neither side waits on the other.
START_TEST (test_once_big_input)
{
    s_start ("name: t\nchildren:\n"
             "  - {name: cat, actor: port, params: {command: [cat], max_output: 3000000}}\n");
    size_t size = 1000000;
    char *json = (char *) malloc (size + 3);
    json [0] = '"';
    memset (json + 1, 'a', size);
    json [size + 1] = '"';
    json [size + 2] = 0;
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("cat", json, 20000 * tr_test_slowdown (), &answer), TR_OK);
    ck_assert_str_eq (answer, json);
    free (answer);
    free (json);
}
END_TEST

//  A port spawned on its own (no supervisor): a failure does not end it;
//  its next message starts a new process.
START_TEST (test_lines_unsupervised)
{
    const char *json = "{\"command\":[\"/usr/bin/python3\",\"-u\",\"" S_PORTS "/lines.py\"],"
                       "\"mode\":\"json_lines\",\"id_field\":\"id\"}";
    char *data = NULL;
    size_t size = 0;
    ck_assert_int_eq (tr__json_parse (json, strlen (json), &data, &size, NULL), 0);
    tr_params_t params = { (const uint8_t *) data, size };
    const tr_actor_type_t *type = tr_actor_type_find ("port");
    ck_assert_ptr_nonnull (type);
    ck_assert_int_eq (tr_spawn (s_node, "solo", &type->behaviour, &params, NULL, NULL), TR_OK);
    long first = s_pid ("solo");
    s_expect_error ("solo", "{\"op\":\"garbage\"}", TR_ECHILD);
    s_expect_gone (first);
    long second = s_pid ("solo");
    ck_assert_int_ne (second, first);
    //  Its death while idle stops it too; the next ask starts another.
    kill ((pid_t) second, SIGKILL);
    s_info_t failed = { "solo", "port.failed", 2 };
    ck_assert (tr_test_wait_until (s_info_is, &failed, 5000 * tr_test_slowdown ()));
    long third = s_pid ("solo");
    ck_assert_int_ne (third, second);
    ck_assert_int_eq (tr_actor_stop (s_node, "solo", 5000), TR_OK);
    s_expect_gone (third);
    free (data);
}
END_TEST

//  env and cwd reach the process.
START_TEST (test_env_cwd)
{
    s_start ("name: t\nchildren:\n"
             "  - name: e\n    actor: port\n"
             "    params: {command: [sh, -c, 'printf \"%s %s\" \"$PORT_TEST_VAR\" \"$(pwd)\"'],"
             " env: {PORT_TEST_VAR: 'v a l'}, cwd: /tmp}\n");
    s_expect ("e", "\"\"", "\"v a l /tmp\"");
}
END_TEST

//  examples/tools.yaml loads, starts and answers.
START_TEST (test_example_tree)
{
    tr_tree_error_t err;
    char text [600];
    int rc = tr_tree_load (TROUPE_SOURCE_DIR "/examples/tools.yaml", &s_tree, &err);
    ck_assert_msg (rc == TR_OK, "%s", tr_tree_error_format (&err, text, sizeof text));
    char *reason = NULL;
    rc = tr_sup_start (s_node, s_tree->name, &s_tree->root, &s_sup, &reason);
    ck_assert_msg (rc == TR_OK, "tr_sup_start: %s: %s", tr_errname (rc), reason? reason: "");
    free (reason);
    s_expect ("words", "\"one two three\"", "\"3\"");
    s_expect ("shout", "\"hi\"", "\"HI!\"");
    s_expect ("echo", "{\"a\":[1,2]}", "{\"a\":[1,2]}");
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_port");
    TCase *tc = tcase_create ("per_message");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_once_cat);
    tcase_add_test (tc, test_once_argument);
    tcase_add_test (tc, test_once_json_output);
    tcase_add_test (tc, test_once_exit_status);
    tcase_add_test (tc, test_once_hang);
    tcase_add_test (tc, test_once_flood);
    tcase_add_test (tc, test_once_slow);
    tcase_add_test (tc, test_once_stderr_noise);
    tcase_add_test (tc, test_once_missing_program);
    tcase_add_test (tc, test_once_tells);
    tcase_add_test (tc, test_env_cwd);
    tcase_add_test (tc, test_once_big_input);
    tcase_add_test (tc, test_example_tree);
    tcase_add_test (tc, test_bad_params);
    suite_add_tcase (s, tc);
    tc = tcase_create ("json_lines");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_lines_shell_echo);
    tcase_add_test (tc, test_lines_python);
    tcase_add_test (tc, test_lines_misbehaviour);
    tcase_add_test (tc, test_lines_death_while_idle);
    tcase_add_test (tc, test_lines_ask_deadline);
    tcase_add_test (tc, test_lines_owed_hang);
    tcase_add_test (tc, test_lines_breaker);
    tcase_add_test (tc, test_lines_unsupervised);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
