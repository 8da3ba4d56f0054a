/*  tr_httptool_test.c - the "http" actor type (actors/tr_httptool.c)
    against the real local HTTP server (tests/tr_http_server.py, started
    per test with a script of answers, on 127.0.0.1): URL templates and
    their encoding, headers from the environment, bodies (the message and
    templates), JSON and text replies, 404s, retried 500s, 429 with
    Retry-After, hangs, oversized answers, refused connections, a breaker
    that opens, the asker's mistakes, failed tells. What the agent sent is
    checked in the server's own log (GET /_log, asked through another http
    agent).
*/

#include "tr_test.h"
#include "tr_test_tree.h"
#include "tr_test_tls.h"
#include "tr_json.h"
#include "troupe/tr_http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

extern char **environ;

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;
static pid_t s_server_pid;
static int s_server_stdin = -1;
static int s_port;
static char s_script_path [64];

//  --------------------------------------------------------------------------
//  The server

//  Starts tr_http_server.py with a script (speaking HTTPS with cert and
//  key when they are not NULL); it answers on s_port and dies when its
//  stdin (our pipe) closes.
static void
s_server_spawn (const char *script, const char *cert, const char *key)
{
    strcpy (s_script_path, "/tmp/tr_httptool_test_XXXXXX");
    int fd = mkstemp (s_script_path);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, script, strlen (script)), (ssize_t) strlen (script));
    close (fd);
    int in [2], out [2];
    ck_assert_int_eq (pipe2 (in, O_CLOEXEC), 0);
    ck_assert_int_eq (pipe2 (out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, in [0], 0);
    posix_spawn_file_actions_adddup2 (&actions, out [1], 1);
    char *argv [] = { "/usr/bin/python3", TROUPE_SOURCE_DIR "/tests/tr_http_server.py",
                      "--script", s_script_path, cert? "--cert": NULL, (char *) cert,
                      "--key", (char *) key, NULL };
    ck_assert_int_eq (posix_spawn (&s_server_pid, argv [0], &actions, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy (&actions);
    close (in [0]);
    close (out [1]);
    s_server_stdin = in [1];
    FILE *from = fdopen (out [0], "r");
    char line [64] = "";
    ck_assert_ptr_nonnull (fgets (line, sizeof line, from));
    fclose (from);
    ck_assert_int_eq (sscanf (line, "PORT %d", &s_port), 1);
}

static void
s_server_start (const char *script)
{
    s_server_spawn (script, NULL, NULL);
}

static void
s_server_stop (void)
{
    if (s_server_stdin >= 0) {
        close (s_server_stdin);
        s_server_stdin = -1;
        waitpid (s_server_pid, NULL, 0);
        unlink (s_script_path);
    }
}

//  --------------------------------------------------------------------------
//  Trees and asks

static void
s_setup (void)
{
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
    s_tree = NULL;
    s_sup = NULL;
}

static void
s_teardown (void)
{
    tr_sup_stop (&s_sup);
    tr_node_destroy (&s_node);
    tr_tree_destroy (&s_tree);
    s_server_stop ();
}

//  The YAML with every "PORT" replaced by the server's port.
static char *
s_with_port (const char *yaml)
{
    char port [16];
    snprintf (port, sizeof port, "%d", s_port);
    size_t size = strlen (yaml) + 1;
    for (const char *p = yaml; (p = strstr (p, "PORT")); p += 4)
        size += strlen (port);
    char *text = (char *) malloc (size), *at = text;
    for (const char *p; (p = strstr (yaml, "PORT")); yaml = p + 4) {
        memcpy (at, yaml, (size_t) (p - yaml));
        at += p - yaml;
        at = stpcpy (at, port);
    }
    strcpy (at, yaml);
    return text;
}

static int
s_try_start (const char *yaml, char **reason_p)
{
    char *text = s_with_port (yaml);
    tr_tree_error_t err;
    int rc = tr_tree_parse (text, strlen (text), "test.yaml", &s_tree, &err);
    free (text);
    char buf [600];
    ck_assert_msg (rc == TR_OK, "%s", tr_tree_error_format (&err, buf, sizeof buf));
    char *reason = NULL;
    rc = tr_sup_start (s_node, s_tree->name, &s_tree->root, &s_sup, &reason);
    if (reason_p)
        *reason_p = reason;
    else
        free (reason);
    return rc;
}

//  Starts the server with `script`, then the tree (with a "log" agent
//  that reads the server's log).
static void
s_start (const char *script, const char *children)
{
    s_server_start (script);
    char yaml [4096];
    snprintf (yaml, sizeof yaml, "name: t\n"
              "intensity: {max_restarts: 100, period: 10s}\n"
              "defaults: {backoff: {min: 1ms, max: 5ms}}\n"
              "children:\n"
              "  - {name: log, actor: http, params: {url: 'http://127.0.0.1:PORT/_log', response: json}}\n"
              "%s", children);
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
    tr_test_expect_jj (s_node, to, json, 10000 * tr_test_slowdown (), expected);
}

static void
s_expect_error (const char *to, const char *json, int expected)
{
    tr_test_expect_error (s_node, to, json, 10000 * tr_test_slowdown (), expected);
}

//  The server's log as JSON text (to free).
static char *
s_log (void)
{
    char *log = NULL;
    int rc = s_ask ("log", "null", 10000 * tr_test_slowdown (), &log);
    ck_assert_msg (rc == TR_OK, "log: %s", tr_errname (rc));
    return log;
}

//  How many times `needle` occurs in the server's log.
static int
s_log_count (const char *needle)
{
    char *log = s_log ();
    int count = 0;
    for (const char *p = log; (p = strstr (p, needle)); p += strlen (needle))
        count++;
    free (log);
    return count;
}

static void
s_expect_logged (const char *needle)
{
    char *log = s_log ();
    ck_assert_msg (strstr (log, needle), "'%s' not in the log: %s", needle, log);
    free (log);
}

//  --------------------------------------------------------------------------
//  Tests

#define S_OK_ROUTE(path) \
    "{\"method\":\"*\",\"path\":\"" path "\",\"responses\":[{\"json\":{\"ok\":true}}]}"

//  {field}s are filled in from the message and percent-encoded.
START_TEST (test_url_template)
{
    s_start ("{\"routes\":[" S_OK_ROUTE ("/items/*") "]}",
             "  - name: get\n    actor: http\n"
             "    params: {url: 'http://127.0.0.1:PORT/items/{id}?q={q}&n={n}&f={f}&b={b}'}\n");
    s_expect ("get", "{\"id\":\"a b/c\",\"q\":\"x&y=z~\\u00e9\",\"n\":-5,\"f\":1.5,\"b\":true}",
              "{\"ok\":true}");
    s_expect_logged ("\"method\":\"GET\",\"path\":\"/items/a%20b%2Fc?q=x%26y%3Dz~%C3%A9&n=-5&f=1.5&b=true\"");
}
END_TEST

//  Headers, with ${NAME} from the environment; a variable that is not
//  set refuses the start, naming it.
START_TEST (test_headers_env)
{
    setenv ("TR_HTTPTOOL_TEST_TOKEN", "s3cret", 1);
    unsetenv ("TR_HTTPTOOL_TEST_UNSET");
    s_start ("{\"routes\":[" S_OK_ROUTE ("/h") "]}",
             "  - name: h\n    actor: http\n"
             "    params:\n"
             "      url: 'http://127.0.0.1:PORT/h'\n"
             "      headers: {Authorization: 'Bearer ${TR_HTTPTOOL_TEST_TOKEN}', X-Fixed: plain}\n");
    s_expect ("h", "{}", "{\"ok\":true}");
    s_expect_logged ("\"authorization\":\"Bearer s3cret\"");
    s_expect_logged ("\"x-fixed\":\"plain\"");
    tr_sup_stop (&s_sup);
    tr_tree_destroy (&s_tree);
    char *reason = NULL;
    int rc = s_try_start ("name: u\nintensity: {max_restarts: 0, period: 1s}\nchildren:\n"
                          "  - name: x\n    actor: http\n"
                          "    params: {url: 'http://127.0.0.1:PORT/h', "
                          "headers: {X-Key: '${TR_HTTPTOOL_TEST_UNSET}'}}\n", &reason);
    ck_assert_int_ne (rc, TR_OK);
    ck_assert_msg (reason && strstr (reason, "environment variable 'TR_HTTPTOOL_TEST_UNSET' is not set"),
                   "reason: %s", reason? reason: "(none)");
    free (reason);
    //  A value that would split the header in two is refused.
    tr_tree_destroy (&s_tree);
    setenv ("TR_HTTPTOOL_TEST_SPLIT", "ok\r\nX-Injected: 1", 1);
    rc = s_try_start ("name: u\nintensity: {max_restarts: 0, period: 1s}\nchildren:\n"
                      "  - name: x\n    actor: http\n"
                      "    params: {url: 'http://127.0.0.1:PORT/h', "
                      "headers: {X-Key: '${TR_HTTPTOOL_TEST_SPLIT}'}}\n", &reason);
    ck_assert_int_ne (rc, TR_OK);
    ck_assert_msg (reason && strstr (reason, "header 'X-Key': the value must not hold a line break"),
                   "reason: %s", reason? reason: "(none)");
    free (reason);
}
END_TEST

//  POST sends the message as JSON; a template fills fields in, typed when
//  a string is exactly "{field}".
START_TEST (test_body)
{
    s_start ("{\"routes\":[" S_OK_ROUTE ("/b") "]}",
             "  - {name: whole, actor: http, params: {url: 'http://127.0.0.1:PORT/b', method: post}}\n"
             "  - name: tpl\n    actor: http\n"
             "    params:\n"
             "      url: 'http://127.0.0.1:PORT/b'\n"
             "      method: PUT\n"
             "      body: {query: '{q}', opts: {n: '{n}', label: 'n={n}', lit: '{}'}, fixed: [1, two]}\n"
             "  - {name: empty, actor: http, params: {url: 'http://127.0.0.1:PORT/b', method: DELETE, body: none}}\n");
    s_expect ("whole", "{\"a\":[1,null],\"s\":\"x\"}", "{\"ok\":true}");
    s_expect_logged ("\"method\":\"POST\"");
    s_expect_logged ("\"content-type\":\"application/json\"");
    s_expect_logged ("\"body\":\"{\\\"a\\\":[1,null],\\\"s\\\":\\\"x\\\"}\"");
    s_expect ("tpl", "{\"q\":\"what\",\"n\":5,\"other\":0}", "{\"ok\":true}");
    s_expect_logged ("\"method\":\"PUT\"");
    s_expect_logged ("\"body\":\"{\\\"query\\\":\\\"what\\\",\\\"opts\\\":{\\\"n\\\":5,"
                     "\\\"label\\\":\\\"n=5\\\",\\\"lit\\\":\\\"{}\\\"},\\\"fixed\\\":[1,\\\"two\\\"]}\"");
    //  A field the template needs and the message lacks: the asker's mistake.
    s_expect_error ("tpl", "{\"q\":\"what\"}", TR_EINVAL);
    //  body: none sends none, whatever the method.
    s_expect ("empty", "{\"q\":1}", "{\"ok\":true}");
    s_expect_logged ("\"method\":\"DELETE\",\"path\":\"/b\"");
    char *log = s_log ();
    const char *deleted = strstr (log, "\"method\":\"DELETE\"");
    ck_assert_ptr_nonnull (deleted);
    ck_assert_ptr_nonnull (strstr (deleted, "\"body\":\"\""));
    free (log);
}
END_TEST

//  Replies: JSON as msgpack, text as a string, by Content-Type or as
//  configured; a response that must be JSON and is not is TR_EHTTP.
START_TEST (test_replies)
{
    s_start ("{\"routes\":["
             "{\"path\":\"/json\",\"responses\":[{\"json\":{\"n\":[1,2.5,\"x\"]}}]},"
             "{\"path\":\"/text\",\"responses\":[{\"body\":\"plain words\"}]},"
             "{\"path\":\"/bad\",\"responses\":[{\"malformed\":true}]},"
             "{\"path\":\"/empty\",\"responses\":[{\"status\":204,"
             "\"headers\":{\"Content-Type\":\"application/json\"}}]}]}",
             "  - {name: js, actor: http, params: {url: 'http://127.0.0.1:PORT/json'}}\n"
             "  - {name: jt, actor: http, params: {url: 'http://127.0.0.1:PORT/json', response: text}}\n"
             "  - {name: tx, actor: http, params: {url: 'http://127.0.0.1:PORT/text'}}\n"
             "  - {name: tj, actor: http, params: {url: 'http://127.0.0.1:PORT/text', response: json}}\n"
             "  - {name: bad, actor: http, params: {url: 'http://127.0.0.1:PORT/bad'}}\n"
             "  - {name: empty, actor: http, params: {url: 'http://127.0.0.1:PORT/empty'}}\n");
    s_expect ("js", "null", "{\"n\":[1,2.5,\"x\"]}");
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("jt", "null", 10000, &answer), TR_OK);
    ck_assert_msg (answer [0] == '"' && strstr (answer, "\\\"n\\\""), "%s", answer);
    free (answer);
    s_expect ("tx", "null", "\"plain words\"");
    s_expect_error ("tj", "null", TR_EHTTP);
    s_expect_error ("bad", "null", TR_EHTTP);
    s_expect ("empty", "null", "\"\"");
}
END_TEST

//  A 404 is an error at once (not retried).
START_TEST (test_not_found)
{
    s_start ("{\"routes\":[]}",
             "  - {name: nf, actor: http, params: {url: 'http://127.0.0.1:PORT/none', backend: {backoff_initial: 10ms}}}\n");
    s_expect_error ("nf", "null", TR_EHTTP);
    ck_assert_int_eq (s_log_count ("\"path\":\"/none\""), 1);
}
END_TEST

//  500s are retried; after the retries allowed, TR_EHTTP.
START_TEST (test_server_errors_retried)
{
    s_start ("{\"routes\":["
             "{\"path\":\"/flaky\",\"responses\":[{\"status\":500},{\"status\":503},{\"json\":1}]},"
             "{\"path\":\"/down\",\"responses\":[{\"status\":500}]}]}",
             "  - name: flaky\n    actor: http\n"
             "    params: {url: 'http://127.0.0.1:PORT/flaky', backend: {backoff_initial: 10ms, backoff_max: 50ms}}\n"
             "  - name: down\n    actor: http\n"
             "    params: {url: 'http://127.0.0.1:PORT/down', backend: {max_retries: 2, backoff_initial: 10ms}}\n"
             "  - name: once\n    actor: http\n"
             "    params: {url: 'http://127.0.0.1:PORT/down', backend: {max_retries: 0}}\n");
    s_expect ("flaky", "null", "1");
    ck_assert_int_eq (s_log_count ("\"path\":\"/flaky\""), 3);
    s_expect_error ("down", "null", TR_EHTTP);
    ck_assert_int_eq (s_log_count ("\"path\":\"/down\""), 3);
    s_expect_error ("once", "null", TR_EHTTP);
    ck_assert_int_eq (s_log_count ("\"path\":\"/down\""), 4);
}
END_TEST

//  429 with Retry-After: the retry waits at least that long.
START_TEST (test_rate_limited)
{
    s_start ("{\"routes\":[{\"path\":\"/rl\",\"responses\":["
             "{\"status\":429,\"retry_after\":1},{\"json\":\"fine\"}]}]}",
             "  - name: rl\n    actor: http\n"
             "    params: {url: 'http://127.0.0.1:PORT/rl', backend: {backoff_initial: 10ms}}\n");
    int64_t start = tr_test_now_ms ();
    s_expect ("rl", "null", "\"fine\"");
    ck_assert_int_ge (tr_test_now_ms () - start, 1000);
    ck_assert_int_eq (s_log_count ("\"path\":\"/rl\""), 2);
}
END_TEST

//  A server that never answers: TR_ETIMEDOUT after the timeout.
START_TEST (test_hang_timeout)
{
    s_start ("{\"routes\":[{\"path\":\"/hang\",\"responses\":[{\"hang\":true}]}]}",
             "  - name: hang\n    actor: http\n"
             "    params: {url: 'http://127.0.0.1:PORT/hang', backend: {timeout: 300ms, max_retries: 0}}\n");
    int64_t start = tr_test_now_ms ();
    s_expect_error ("hang", "null", TR_ETIMEDOUT);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_int_ge (took, 300);
    ck_assert_int_lt (took, 5000 * tr_test_slowdown ());
    //  Requests still in flight when the node goes (a tell here): their
    //  completion comes with TR_ECLOSED, during the shutdown.
    tr_body_t body = tr_test_pack_str ("left behind");
    ck_assert_int_eq (tr_tell (s_node, "hang", body.data, body.size, NULL), TR_OK);
    ck_assert_int_eq (tr_tell (s_node, "hang", body.data, body.size, NULL), TR_OK);
}
END_TEST

//  A response past max_response: TR_ETOOBIG. One just under: fine.
START_TEST (test_oversized)
{
    s_start ("{\"routes\":[{\"path\":\"/big\",\"responses\":[{\"body_bytes\":100000}]},"
             "{\"path\":\"/small\",\"responses\":[{\"body_bytes\":1000}]}]}",
             "  - name: big\n    actor: http\n"
             "    params: {url: 'http://127.0.0.1:PORT/big', backend: {max_response: 1000}}\n"
             "  - name: small\n    actor: http\n"
             "    params: {url: 'http://127.0.0.1:PORT/small', backend: {max_response: 1000}}\n");
    s_expect_error ("big", "null", TR_ETOOBIG);
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("small", "null", 10000, &answer), TR_OK);
    ck_assert_uint_eq (strlen (answer), 1002);
    free (answer);
}
END_TEST

//  Nothing listens: TR_EHTTP (status 0).
START_TEST (test_connection_refused)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    ck_assert_int_eq (bind (fd, (struct sockaddr *) &addr, sizeof addr), 0);
    ck_assert_int_eq (getsockname (fd, (struct sockaddr *) &addr, &len), 0);
    int closed_port = ntohs (addr.sin_port);
    close (fd);                         //  bound, never listening: refused
    char children [512];
    snprintf (children, sizeof children, "  - name: nobody\n    actor: http\n"
              "    params: {url: 'http://127.0.0.1:%d/x', backend: {max_retries: 1, backoff_initial: 10ms}}\n",
              closed_port);
    s_start ("{\"routes\":[]}", children);
    s_expect_error ("nobody", "null", TR_EHTTP);
}
END_TEST

//  Failures open the agent's breaker: then TR_ECIRCUIT at once. The
//  asker's own mistakes do not count.
START_TEST (test_breaker)
{
    s_start ("{\"routes\":[{\"path\":\"/down\",\"responses\":[{\"status\":502}]}]}",
             "  - name: down\n    actor: http\n"
             "    params: {url: 'http://127.0.0.1:PORT/down?k={k}', backend: {max_retries: 0}}\n"
             "    breaker: {failures: 2, reset_timeout: 10s}\n");
    s_expect_error ("down", "{}", TR_EINVAL);
    s_expect_error ("down", "{}", TR_EINVAL);
    s_expect_error ("down", "{\"k\":1}", TR_EHTTP);
    s_expect_error ("down", "{\"k\":2}", TR_EHTTP);
    s_expect_error ("down", "{\"k\":3}", TR_ECIRCUIT);
    ck_assert_int_eq (s_log_count ("\"path\":\"/down"), 2);
}
END_TEST

//  The asker's mistakes: a missing field, a body that is not a map, a
//  field with no text. TR_EINVAL, and nothing is sent.
START_TEST (test_missing_field)
{
    s_start ("{\"routes\":[" S_OK_ROUTE ("/f/*") "]}",
             "  - {name: f, actor: http, params: {url: 'http://127.0.0.1:PORT/f/{id}'}}\n");
    s_expect_error ("f", "{\"other\":1}", TR_EINVAL);
    s_expect_error ("f", "\"a string\"", TR_EINVAL);
    s_expect_error ("f", "{\"id\":[1]}", TR_EINVAL);
    s_expect_error ("f", "{\"id\":null}", TR_EINVAL);
    ck_assert_int_eq (s_log_count ("\"path\":\"/f/"), 0);
    s_expect ("f", "{\"id\":7}", "{\"ok\":true}");
    ck_assert_int_eq (s_log_count ("\"path\":\"/f/7\""), 1);
    int64_t value = 0;
    ck_assert_int_eq (tr_actor_info_get (s_node, "f", "http.invalid", &value), TR_OK);
    ck_assert_int_eq (value, 4);
    ck_assert_int_eq (tr_actor_info_get (s_node, "f", "http.requests", &value), TR_OK);
    ck_assert_int_eq (value, 1);
    ck_assert_int_eq (tr_actor_info_get (s_node, "f", "http.answered", &value), TR_OK);
    ck_assert_int_eq (value, 1);
}
END_TEST

//  A tell makes the same call; a failed one is a dead letter on the node
//  and a failure for the breaker.
static bool
s_dead_letters (void *arg)
{
    tr_node_stats_t stats;
    tr_node_stats (s_node, &stats);
    return stats.dead_letters >= *(uint64_t *) arg;
}

START_TEST (test_tells)
{
    s_start ("{\"routes\":[" S_OK_ROUTE ("/ok") "]}",
             "  - {name: ok, actor: http, params: {url: 'http://127.0.0.1:PORT/ok', method: POST}}\n"
             "  - name: nf\n    actor: http\n"
             "    params: {url: 'http://127.0.0.1:PORT/nothing', backend: {max_retries: 0}}\n"
             "    breaker: {failures: 1, reset_timeout: 10s}\n");
    tr_node_stats_t stats;
    tr_node_stats (s_node, &stats);
    uint64_t dead = stats.dead_letters + 1;
    tr_body_t body = tr_test_pack_str ("told");
    ck_assert_int_eq (tr_tell (s_node, "ok", body.data, body.size, NULL), TR_OK);
    ck_assert_int_eq (tr_tell (s_node, "nf", body.data, body.size, NULL), TR_OK);
    ck_assert (tr_test_wait_until (s_dead_letters, &dead, 5000 * tr_test_slowdown ()));
    s_expect_error ("nf", "null", TR_ECIRCUIT);
    s_expect_logged ("\"body\":\"\\\"told\\\"\"");
    int64_t value = 0;
    ck_assert_int_eq (tr_actor_info_get (s_node, "nf", "http.failed", &value), TR_OK);
    ck_assert_int_eq (value, 1);
}
END_TEST

//  The error the tree loader gives for yaml (which must not load),
//  formatted: "FILE:LINE:COLUMN: child: what is wrong". To free.
static char *
s_load_error (const char *yaml)
{
    tr_tree_error_t err;
    char buf [800];
    tr_tree_t *tree = NULL;
    int rc = tr_tree_parse (yaml, strlen (yaml), "test.yaml", &tree, &err);
    tr_tree_destroy (&tree);
    ck_assert_msg (rc != TR_OK, "loaded: %s", yaml);
    return strdup (tr_tree_error_format (&err, buf, sizeof buf));
}

static void
s_expect_load_error (const char *yaml, const char *expected)
{
    char *error = s_load_error (yaml);
    ck_assert_msg (!strcmp (error, expected), "got      '%s'\nexpected '%s'", error, expected);
    free (error);
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
        { "{url: 'ftp://x/'}",
          "test.yaml:5:19: p: 'url' must start with http:// or https://, not 'ftp://x/'" },
        { "{url: 'http:///x'}",
          "test.yaml:5:19: p: 'url' needs a host after 'http://'" },
        { "{url: 'http://x/{id'}",
          "test.yaml:5:19: p: 'url' has a '{' without a field name and '}' at offset 9" },
        { "{url: 'http://x/{}'}",
          "test.yaml:5:19: p: 'url' has a '{' without a field name and '}' at offset 9" },
        { "{url: 'http://x/a}'}",
          "test.yaml:5:19: p: 'url' has a '}' without '{' at offset 10" },
        { "{url: 'http://x/a b'}",
          "test.yaml:5:19: p: 'url' must not hold spaces or control characters (offset 10)" },
        { "{url: 'http://x/', method: 'GE T'}",
          "test.yaml:5:40: p: 'method' must be letters only, not 'GE T'" },
        { "{url: 'http://x/', method: ABCDEFGHIJKLMNOPQ}",
          "test.yaml:5:40: p: 'method' must be 1 to 16 letters, not 17" },
        { "{url: 'http://x/', headers: {Accept: text/plain, X-Count: 3}}",
          "test.yaml:5:71: p: header 'X-Count': the value must be a string, not an integer" },
        { "{url: 'http://x/', headers: {'Bad Name': x}}",
          "test.yaml:5:54: p: 'Bad Name' is not a valid header name" },
        { "{url: 'http://x/', headers: {X-Key: 'k ${} v'}}",
          "test.yaml:5:49: p: header 'X-Key': '${' needs a variable name (1 to 127 bytes) and '}'" },
        { "{url: 'http://x/', headers: {X-Key: \"a\\nb\"}}",
          "test.yaml:5:49: p: header 'X-Key': the value must not hold a line break" },
        { "{url: 'http://x/', body: sometimes}",
          "test.yaml:5:38: p: 'body' must be message, none, or a mapping or list to fill in, not 'sometimes'" },
        { "{url: 'http://x/', body: 3}",
          "test.yaml:5:38: p: 'body' must be message, none, or a mapping or list to fill in, not an integer" },
        { "{url: 'http://x/', response: xml}",
          "test.yaml:5:42: p: 'response' must be one of auto, text, json, not 'xml'" },
        { "{url: 'http://x/', max_pending: 0}",
          "test.yaml:5:45: p: 'max_pending' must be from 1 to 1000000, not 0" },
        { "{url: 'http://x/', max_pending: -5}",
          "test.yaml:5:45: p: 'max_pending' must be from 1 to 1000000, not -5" },
        { "{url: 'http://x/', backend: {name: 'no spaces'}}",
          "test.yaml:5:48: p: 'backend.name' must be 1 to 63 of A-Z a-z 0-9 . _ -, not 'no spaces'" },
        { "{url: 'http://x/', backend: {max_response: 0}}",
          "test.yaml:5:56: p: 'backend.max_response' must be from 1 to 16777200, not 0" },
        { "{url: 'http://x/', backend: {max_retries: -2}}",
          "test.yaml:5:55: p: 'backend.max_retries' must be from -1 to 100, not -2" },
        { "{url: 'http://x/', backend: {max_concurrent: '8'}}",
          "test.yaml:5:58: p: 'backend.max_concurrent' must be an integer, not a string" },
        { "{url: 'http://x/', backend: {requests_per_minute: -1}}",
          "test.yaml:5:63: p: 'backend.requests_per_minute' must be from 0 to 2147483647, not -1" },
        { "{url: 'http://x/', backend: {timeout: soon}}",
          "test.yaml:5:51: p: 'backend.timeout' must be a duration such as 250ms or 2s, not 'soon'" },
        { "{url: 'http://x/', backend: {cache_ttl: 0}}",
          "test.yaml:5:53: p: 'backend.cache_ttl' must be from 1 to 2147483647 ms, not 0" },
        { "{url: 'http://x/', backend: {retries: 3}}",
          "test.yaml:5:51: p: unknown key 'retries' in 'backend'; expected one of: name, max_concurrent, requests_per_minute, tokens_per_minute, connect_timeout, timeout, max_retries, backoff_initial, backoff_max, max_response, cache_entries, cache_ttl, ca_file" },
        { "{url: 'https://x/', backend: {ca_file: /nonexistent/ca.pem}}",
          "test.yaml:5:52: p: 'backend.ca_file' cannot be read: '/nonexistent/ca.pem': No such file or directory" },
        { "{url: 'https://x/', backend: {ca_file: /tmp}}",
          "test.yaml:5:52: p: 'backend.ca_file' is not a file: '/tmp'" },
        { "{url: 'http://x/', backend: {ca_file: /etc/hostname}}",
          "test.yaml:5:51: p: 'backend.ca_file' is only for https:// URLs" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char yaml [512];
        snprintf (yaml, sizeof yaml, "name: t\nchildren:\n  - name: p\n    actor: http\n"
                  "    params: %s\n", cases [i].params);
        s_expect_load_error (yaml, cases [i].error);
    }
    //  The kinds of top-level values: the loader's own check.
    s_expect_load_error ("name: t\nchildren:\n  - name: p\n    actor: http\n"
                         "    params: {url: 'http://x/', headers: [a]}\n",
                         "test.yaml:5:41: parameter 'headers' of actor type 'http' must be "
                         "a mapping, not a sequence");
    //  Nested values written as blocks: each at its own line.
    s_expect_load_error ("name: t\n"
                         "children:\n"
                         "  - name: p\n"
                         "    actor: http\n"
                         "    params:\n"
                         "      url: 'https://127.0.0.1/x'\n"
                         "      headers:\n"
                         "        Accept: application/json\n"
                         "        X-Count: 3\n",
                         "test.yaml:9:18: p: header 'X-Count': the value must be a string, "
                         "not an integer");
    s_expect_load_error ("name: t\n"
                         "children:\n"
                         "  - name: p\n"
                         "    actor: http\n"
                         "    params:\n"
                         "      url: 'https://127.0.0.1/x'\n"
                         "      backend:\n"
                         "        timeout: 5s\n"
                         "        max_concurrent: 0\n",
                         "test.yaml:9:25: p: 'backend.max_concurrent' must be from 1 to "
                         "1000000, not 0");
    //  Started from C with parameters of its own, the agent makes the same
    //  checks when it starts: {url: 'ftp://x'} is refused.
    static const uint8_t packed [] = { 0x81, 0xa3, 'u', 'r', 'l', 0xa7,
                                       'f', 't', 'p', ':', '/', '/', 'x' };
    tr_params_t params = { packed, sizeof packed };
    const tr_actor_type_t *type = tr_actor_type_find ("http");
    ck_assert_ptr_nonnull (type);
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_EINIT);
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, NULL, NULL, NULL), TR_EINIT);
}
END_TEST

//  An https endpoint with a self-signed certificate: refused by an agent
//  that trusts the system's store (TR_EHTTP, and the request never
//  reaches the server), answered for one whose backend.ca_file holds the
//  certificate.
START_TEST (test_https)
{
    tr_test_tls_t tls;
    tr_test_tls_make (&tls);
    s_server_spawn ("{\"routes\":[" S_OK_ROUTE ("/s") "]}", tls.cert, tls.key);
    char yaml [1024];
    snprintf (yaml, sizeof yaml, "name: t\n"
              "defaults: {breaker: off}\n"
              "children:\n"
              "  - {name: log, actor: http, params: {url: 'https://127.0.0.1:PORT/_log',"
              " response: json, backend: {ca_file: '%s'}}}\n"
              "  - {name: sure, actor: http, params: {url: 'https://127.0.0.1:PORT/s',"
              " backend: {ca_file: '%s'}}}\n"
              "  - {name: doubt, actor: http, params: {url: 'https://127.0.0.1:PORT/s'}}\n",
              tls.cert, tls.cert);
    char *reason = NULL;
    int rc = s_try_start (yaml, &reason);
    ck_assert_msg (rc == TR_OK, "tr_sup_start: %s: %s", tr_errname (rc), reason? reason: "");
    free (reason);
    s_expect ("sure", "{}", "{\"ok\":true}");
    s_expect_error ("doubt", "{}", TR_EHTTP);
    s_expect ("sure", "{}", "{\"ok\":true}");
    ck_assert_int_eq (s_log_count ("\"path\":\"/s\""), 2);
    int64_t value = 0;
    ck_assert_int_eq (tr_actor_info_get (s_node, "doubt", "http.failed", &value), TR_OK);
    ck_assert_int_eq (value, 1);
    tr_sup_stop (&s_sup);
    tr_tree_destroy (&s_tree);
    tr_test_tls_remove (&tls);
}
END_TEST

//  Asks `count` agents at once from threads of their own (names[i]) and
//  returns how long the slowest took; each must succeed.
typedef struct {
    const char *to;
    int rc;
} s_asker_t;

static void *
s_asker (void *arg)
{
    s_asker_t *asker = (s_asker_t *) arg;
    asker->rc = s_ask (asker->to, "null", 10000 * tr_test_slowdown (), NULL);
    return NULL;
}

static int64_t
s_ask_together (const char *const *names, int count)
{
    pthread_t threads [32];
    s_asker_t askers [32];
    ck_assert_int_le (count, 32);
    int64_t start = tr_test_now_ms ();
    for (int i = 0; i < count; i++) {
        askers [i].to = names [i];
        ck_assert_int_eq (pthread_create (&threads [i], NULL, s_asker, &askers [i]), 0);
    }
    for (int i = 0; i < count; i++) {
        pthread_join (threads [i], NULL);
        ck_assert_msg (askers [i].rc == TR_OK, "ask %s: %s", names [i], tr_errname (askers [i].rc));
    }
    return tr_test_now_ms () - start;
}

#define S_SLOW_ROUTE \
    "{\"path\":\"/slow\",\"responses\":[{\"json\":\"late\",\"delay_ms\":300}]}"

//  Many asks at once are all in flight together (the actor's thread
//  never waits for the network): 20 answers that take 300 ms each come
//  back in far less than 20 x 300 ms.
START_TEST (test_concurrent)
{
    s_start ("{\"routes\":[" S_SLOW_ROUTE "]}",
             "  - {name: slow, actor: http, params: {url: 'http://127.0.0.1:PORT/slow'}}\n");
    const char *names [20];
    for (int i = 0; i < 20; i++)
        names [i] = "slow";
    int64_t took = s_ask_together (names, 20);
    ck_assert_int_ge (took, 300);
    ck_assert_msg (took < 3000 * tr_test_slowdown (), "20 asks took %lld ms", (long long) took);
}
END_TEST

//  The backend's settings apply: max_concurrent 1 makes asks wait their
//  turn, also across agents that share the backend; a cache answers an
//  identical request without the server.
START_TEST (test_backend_settings)
{
    s_start ("{\"routes\":[" S_SLOW_ROUTE "," S_OK_ROUTE ("/c") "]}",
             "  - {name: one, actor: http, params: {url: 'http://127.0.0.1:PORT/slow', "
             "backend: {max_concurrent: 1}}}\n"
             "  - {name: a, actor: http, params: {url: 'http://127.0.0.1:PORT/slow', "
             "backend: {name: shared, max_concurrent: 1}}}\n"
             "  - {name: b, actor: http, params: {url: 'http://127.0.0.1:PORT/slow', "
             "backend: {name: shared}}}\n"
             "  - {name: cached, actor: http, params: {url: 'http://127.0.0.1:PORT/c', "
             "cacheable: true, backend: {cache_entries: 8, cache_ttl: 1m}}}\n");
    const char *ones [] = { "one", "one", "one", "one" };
    ck_assert_int_ge (s_ask_together (ones, 4), 4 * 300);
    const char *shared [] = { "a", "b", "a", "b" };
    ck_assert_int_ge (s_ask_together (shared, 4), 4 * 300);
    s_expect ("cached", "null", "{\"ok\":true}");
    s_expect ("cached", "null", "{\"ok\":true}");
    ck_assert_int_eq (s_log_count ("\"path\":\"/c\""), 1);
    tr_http_stats_t stats;
    ck_assert_int_eq (tr_http_stats (s_node, "http-cached", &stats), TR_OK);
    ck_assert_uint_eq (stats.cache_hits, 1);
    ck_assert_int_eq (tr_http_stats (s_node, "shared", &stats), TR_OK);
    ck_assert_uint_eq (stats.completed_ok, 4);
}
END_TEST

//  max_pending bounds the requests in the engine: past it, an ask gets
//  TR_EFULL at once and a tell is a dead letter; as answers come back,
//  room comes back.
static bool
s_pending_is (void *arg)
{
    int64_t value = -1;
    tr_actor_info_get (s_node, "busy", "http.pending", &value);
    return value == *(int64_t *) arg;
}

START_TEST (test_max_pending)
{
    s_start ("{\"routes\":[{\"path\":\"/slow\",\"responses\":[{\"json\":1,\"delay_ms\":600}]}]}",
             "  - {name: busy, actor: http, params: {url: 'http://127.0.0.1:PORT/slow', max_pending: 2}}\n");
    tr_body_t body = tr_test_pack_str ("t");
    tr_node_stats_t stats;
    tr_node_stats (s_node, &stats);
    uint64_t dead = stats.dead_letters + 1;
    ck_assert_int_eq (tr_tell (s_node, "busy", body.data, body.size, NULL), TR_OK);
    ck_assert_int_eq (tr_tell (s_node, "busy", body.data, body.size, NULL), TR_OK);
    ck_assert_int_eq (tr_tell (s_node, "busy", body.data, body.size, NULL), TR_OK);
    //  TR_EFULL itself shows the ask did not wait for room (it would have
    //  been answered once a slot freed); the bound only catches a hang.
    int64_t start = tr_test_now_ms ();
    s_expect_error ("busy", "null", TR_EFULL);
    ck_assert_int_lt (tr_test_now_ms () - start, 3000 * tr_test_slowdown ());
    ck_assert (tr_test_wait_until (s_dead_letters, &dead, 5000 * tr_test_slowdown ()));
    int64_t none = 0;
    ck_assert (tr_test_wait_until (s_pending_is, &none, 5000 * tr_test_slowdown ()));
    s_expect ("busy", "null", "1");
    int64_t value = 0;
    ck_assert_int_eq (tr_actor_info_get (s_node, "busy", "http.refused", &value), TR_OK);
    ck_assert_int_eq (value, 2);
    ck_assert_int_eq (tr_actor_info_get (s_node, "busy", "http.answered", &value), TR_OK);
    ck_assert_int_eq (value, 3);
    ck_assert_int_eq (s_log_count ("\"path\":\"/slow\""), 3);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_httptool");
    TCase *tc = tcase_create ("http");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_url_template);
    tcase_add_test (tc, test_headers_env);
    tcase_add_test (tc, test_body);
    tcase_add_test (tc, test_replies);
    tcase_add_test (tc, test_not_found);
    tcase_add_test (tc, test_server_errors_retried);
    tcase_add_test (tc, test_rate_limited);
    tcase_add_test (tc, test_hang_timeout);
    tcase_add_test (tc, test_oversized);
    tcase_add_test (tc, test_connection_refused);
    tcase_add_test (tc, test_breaker);
    tcase_add_test (tc, test_missing_field);
    tcase_add_test (tc, test_tells);
    tcase_add_test (tc, test_bad_params);
    tcase_add_test (tc, test_https);
    tcase_add_test (tc, test_concurrent);
    tcase_add_test (tc, test_backend_settings);
    tcase_add_test (tc, test_max_pending);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
