/*  tr_http_test.c - tests of the node's HTTP engine (runtime/tr_http.c)
    against a real local HTTP server: tests/tr_http_server.py, started by
    each test on 127.0.0.1 with a script of answers, and inspected through
    its control paths (/_log, /_stats) with a small blocking client of our
    own, so that the engine is never asked to check itself.
*/

#include "tr_test.h"
#include "tr_test_tls.h"
#include "tr_json.h"
#include "troupe/tr_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

extern char **environ;

#define S_SERVER    TROUPE_SOURCE_DIR "/tests/tr_http_server.py"
#define S_PYTHON    "/usr/bin/python3"

//  --------------------------------------------------------------------------
//  The server

typedef struct {
    pid_t pid;
    int stdin_fd;                       //  closing it stops the server
    int stdout_fd;
    int port;
    char script [64];
} s_server_t;

//  Starts the server with a script (JSON text), speaking HTTPS with
//  cert and key when they are not NULL; waits for its port.
static void
s_server_spawn (s_server_t *srv, const char *script, const char *cert, const char *key)
{
    memset (srv, 0, sizeof *srv);
    snprintf (srv->script, sizeof srv->script, "/tmp/tr_http_test_XXXXXX");
    int fd = mkstemp (srv->script);
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
    char *argv [] = { S_PYTHON, S_SERVER, "--script", srv->script,
                      cert? "--cert": NULL, (char *) cert, "--key", (char *) key, NULL };
    int err = posix_spawn (&srv->pid, S_PYTHON, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    ck_assert_msg (err == 0, "posix_spawn: %s", strerror (err));
    close (in [0]);
    close (out [1]);
    srv->stdin_fd = in [1];
    srv->stdout_fd = out [0];
    //  The first line is "PORT <n>".
    char line [64] = "";
    size_t len = 0;
    int64_t deadline = tr_test_now_ms () + 20000;
    while (!strchr (line, '\n') && len < sizeof line - 1) {
        struct pollfd p = { .fd = srv->stdout_fd, .events = POLLIN };
        int left = (int) (deadline - tr_test_now_ms ());
        ck_assert_msg (left > 0 && poll (&p, 1, left) == 1, "the server did not start");
        ssize_t n = read (srv->stdout_fd, line + len, sizeof line - 1 - len);
        ck_assert_msg (n > 0, "the server ended before it gave its port");
        len += (size_t) n;
        line [len] = 0;
    }
    ck_assert_int_eq (sscanf (line, "PORT %d", &srv->port), 1);
    ck_assert_int_gt (srv->port, 0);
}

//  Starts the server (plain HTTP) with a script.
static void
s_server_start (s_server_t *srv, const char *script)
{
    s_server_spawn (srv, script, NULL, NULL);
}

static void
s_server_stop (s_server_t *srv)
{
    close (srv->stdin_fd);
    int status;
    int64_t deadline = tr_test_now_ms () + 10000;
    while (waitpid (srv->pid, &status, WNOHANG) == 0) {
        if (tr_test_now_ms () > deadline) {
            kill (srv->pid, SIGKILL);
            waitpid (srv->pid, &status, 0);
            break;
        }
        usleep (5000);
    }
    close (srv->stdout_fd);
    unlink (srv->script);
}

//  One request to the server's control paths over a plain socket;
//  returns the body (caller frees) and its status in *status_p.
static char *
s_control (int port, const char *method, const char *path, const char *body)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge (fd, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (connect (fd, (struct sockaddr *) &addr, sizeof addr), 0);
    char head [256];
    size_t body_len = body? strlen (body): 0;
    int n = snprintf (head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Connection: close\r\nContent-Length: %zu\r\n\r\n",
                      method, path, body_len);
    ck_assert_int_eq (write (fd, head, (size_t) n), n);
    if (body_len)
        ck_assert_int_eq (write (fd, body, body_len), (ssize_t) body_len);
    size_t size = 0, alloc = 4096;
    char *data = (char *) malloc (alloc);
    ck_assert_ptr_nonnull (data);
    for (;;) {
        if (size + 1024 > alloc) {
            alloc *= 2;
            data = (char *) realloc (data, alloc);
            ck_assert_ptr_nonnull (data);
        }
        ssize_t got = read (fd, data + size, alloc - size - 1);
        ck_assert_int_ge (got, 0);
        if (got == 0)
            break;
        size += (size_t) got;
    }
    close (fd);
    data [size] = 0;
    ck_assert_msg (strncmp (data, "HTTP/1.1 200", 12) == 0, "control %s: %.80s", path, data);
    char *start = strstr (data, "\r\n\r\n");
    ck_assert_ptr_nonnull (start);
    char *result = strdup (start + 4);
    free (data);
    return result;
}

//  A field of /_stats.
static long
s_stat (int port, const char *name)
{
    char *stats = s_control (port, "GET", "/_stats", NULL);
    char key [64];
    snprintf (key, sizeof key, "\"%s\": ", name);
    char *at = strstr (stats, key);
    ck_assert_msg (at != NULL, "no %s in %s", name, stats);
    long value = strtol (at + strlen (key), NULL, 10);
    free (stats);
    return value;
}

//  What the server's log says about one request.
typedef struct {
    char method [16];
    char path [128];
    char body [256];
    char header [256];                  //  the value of the header asked for
    double t_ms;
} s_entry_t;

static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr [i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen (key)
        &&  memcmp (kv->key.via.str.ptr, key, strlen (key)) == 0)
            return &kv->val;
    }
    return NULL;
}

static void
s_copy_str (char *dst, size_t size, const msgpack_object *obj)
{
    dst [0] = 0;
    if (obj && obj->type == MSGPACK_OBJECT_STR) {
        size_t n = obj->via.str.size < size - 1? obj->via.str.size: size - 1;
        memcpy (dst, obj->via.str.ptr, n);
        dst [n] = 0;
    }
}

static double
s_number (const msgpack_object *obj)
{
    if (!obj)
        return -1;
    switch (obj->type) {
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:          return obj->via.f64;
        case MSGPACK_OBJECT_POSITIVE_INTEGER: return (double) obj->via.u64;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return (double) obj->via.i64;
        default:                              return -1;
    }
}

//  Reads the server's log into entries (at most max); returns how many
//  requests it holds. `header` (lower case) is copied for each, if given.
static size_t
s_log (int port, s_entry_t *entries, size_t max, const char *header)
{
    char *json = s_control (port, "GET", "/_log", NULL);
    char *data;
    size_t size;
    tr__json_error_t err;
    ck_assert_msg (tr__json_parse (json, strlen (json), &data, &size, &err) == 0,
                   "/_log is not JSON: %s", err.message);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    ck_assert_int_eq (msgpack_unpack_next (&u, data, size, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_int_eq (u.data.type, MSGPACK_OBJECT_ARRAY);
    size_t count = u.data.via.array.size;
    for (size_t i = 0; i < count && i < max; i++) {
        const msgpack_object *e = &u.data.via.array.ptr [i];
        s_copy_str (entries [i].method, sizeof entries [i].method, s_get (e, "method"));
        s_copy_str (entries [i].path, sizeof entries [i].path, s_get (e, "path"));
        s_copy_str (entries [i].body, sizeof entries [i].body, s_get (e, "body"));
        entries [i].t_ms = s_number (s_get (e, "t_ms"));
        entries [i].header [0] = 0;
        const msgpack_object *headers = s_get (e, "headers");
        if (header && headers)
            s_copy_str (entries [i].header, sizeof entries [i].header,
                        s_get (headers, header));
    }
    msgpack_unpacked_destroy (&u);
    free (data);
    free (json);
    return count;
}

//  --------------------------------------------------------------------------
//  Results, as the completion callbacks leave them

typedef struct {
    uint64_t id;
    int error;
    long status;
    char *body;
    size_t size;
    char content_type [64];
    char detail [256];
    int attempts;
    bool cached;
    int64_t queued_ms;
    int64_t elapsed_ms;
    int64_t at_ms;                      //  when the callback ran
    void *arg;
} s_res_t;

#define S_MAX_RESULTS 128

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t count;
    s_res_t res [S_MAX_RESULTS];
} s_sink = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, { { 0 } } };

static void
s_sink_reset (void)
{
    pthread_mutex_lock (&s_sink.lock);
    for (size_t i = 0; i < s_sink.count; i++)
        free (s_sink.res [i].body);
    s_sink.count = 0;
    pthread_mutex_unlock (&s_sink.lock);
}

static void
s_done (const tr_http_result_t *r, void *arg)
{
    pthread_mutex_lock (&s_sink.lock);
    ck_assert_int_lt (s_sink.count, S_MAX_RESULTS);
    s_res_t *res = &s_sink.res [s_sink.count++];
    memset (res, 0, sizeof *res);
    res->id = r->id;
    res->error = r->error;
    res->status = r->status;
    res->body = (char *) malloc (r->size + 1);
    memcpy (res->body, r->body, r->size + 1);     //  with its NUL
    res->size = r->size;
    snprintf (res->content_type, sizeof res->content_type, "%s",
              r->content_type? r->content_type: "");
    snprintf (res->detail, sizeof res->detail, "%s", r->detail);
    res->attempts = r->attempts;
    res->cached = r->cached;
    res->queued_ms = r->queued_ms;
    res->elapsed_ms = r->elapsed_ms;
    res->at_ms = tr_test_now_ms ();
    res->arg = arg;
    pthread_cond_broadcast (&s_sink.cond);
    pthread_mutex_unlock (&s_sink.lock);
}

static size_t
s_sink_count (void)
{
    pthread_mutex_lock (&s_sink.lock);
    size_t n = s_sink.count;
    pthread_mutex_unlock (&s_sink.lock);
    return n;
}

//  Waits until n results have arrived (asserts they do within timeout).
static void
s_wait_results (size_t n, int timeout_ms)
{
    int64_t deadline = tr__now_ns () + (int64_t) timeout_ms * tr_test_slowdown () * 1000000;
    struct timespec ts = tr__timespec_at (deadline, CLOCK_REALTIME);
    pthread_mutex_lock (&s_sink.lock);
    while (s_sink.count < n)
        if (pthread_cond_timedwait (&s_sink.cond, &s_sink.lock, &ts) == ETIMEDOUT)
            break;
    size_t got = s_sink.count;
    pthread_mutex_unlock (&s_sink.lock);
    ck_assert_msg (got >= n, "%zu results of %zu", got, n);
}

//  The result of request id (it must have arrived).
static s_res_t *
s_result (uint64_t id)
{
    s_res_t *found = NULL;
    pthread_mutex_lock (&s_sink.lock);
    for (size_t i = 0; i < s_sink.count; i++)
        if (s_sink.res [i].id == id)
            found = &s_sink.res [i];
    pthread_mutex_unlock (&s_sink.lock);
    ck_assert_msg (found != NULL, "no result for request %llu", (unsigned long long) id);
    return found;
}

//  --------------------------------------------------------------------------
//  Helpers for the tests

static char s_url [256];

static const char *
s_at (const s_server_t *srv, const char *path)
{
    snprintf (s_url, sizeof s_url, "http://127.0.0.1:%d%s", srv->port, path);
    return s_url;
}

//  A fresh node, and no results yet. libcurl would send requests through
//  a proxy named in the environment: tests talk to 127.0.0.1 only, so
//  those go (no thread runs yet when a test starts, so setenv is safe).
static tr_node_t *
s_node (void)
{
    const char *proxies [] = { "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                               "all_proxy", "ALL_PROXY" };
    for (size_t i = 0; i < sizeof proxies / sizeof proxies [0]; i++)
        unsetenv (proxies [i]);
    s_sink_reset ();
    tr_node_t *node = NULL;
    ck_assert_int_eq (tr_node_new (NULL, &node), TR_OK);
    return node;
}

//  Submits a GET (or a POST with body) to path on the default backend.
static uint64_t
s_get_path (tr_node_t *node, const s_server_t *srv, const char *path)
{
    tr_http_request_t r = { .url = s_at (srv, path) };
    uint64_t id = 0;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_OK);
    ck_assert_uint_gt (id, 0);
    return id;
}

static void
s_backend (tr_node_t *node, tr_http_backend_opts_t opts)
{
    ck_assert_int_eq (tr_http_backend_set (node, &opts), TR_OK);
}

static int
s_slow (int ms)
{
    return ms * tr_test_slowdown ();
}

//  --------------------------------------------------------------------------
//  Tests

START_TEST (test_success)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"method\": \"GET\", \"path\": \"/ok\", \"responses\": [{\"json\": {\"answer\": 42}}]},"
        "{\"method\": \"POST\", \"path\": \"/echo\", \"responses\": [{\"chat_echo\": true}]},"
        "{\"method\": \"DELETE\", \"path\": \"/thing/*\", \"responses\": [{\"status\": 204}]}]}");
    tr_node_t *node = s_node ();
    uint64_t get = s_get_path (node, &srv, "/ok");
    const char *headers [] = { "Content-Type: application/json", "X-Trace: abc 1", NULL };
    const char *chat = "{\"model\": \"m1\", \"messages\": [{\"role\": \"user\", \"content\": \"hi there\"}]}";
    tr_http_request_t post = { .url = s_at (&srv, "/echo"), .headers = headers,
                               .body = chat, .body_size = strlen (chat) };
    uint64_t posted;
    ck_assert_int_eq (tr_http_submit (node, &post, s_done, NULL, &posted), TR_OK);
    //  A body without a Content-Type goes without one (not as a form).
    tr_http_request_t untyped = { .url = s_at (&srv, "/echo"), .body = chat,
                                  .body_size = strlen (chat) };
    uint64_t bare;
    ck_assert_int_eq (tr_http_submit (node, &untyped, s_done, NULL, &bare), TR_OK);
    tr_http_request_t del = { .url = s_at (&srv, "/thing/7?force=1"), .method = "delete" };
    uint64_t deleted;
    ck_assert_int_eq (tr_http_submit (node, &del, s_done, NULL, &deleted), TR_OK);
    s_wait_results (4, 5000);

    s_res_t *r = s_result (get);
    ck_assert_int_eq (r->error, TR_OK);
    ck_assert_int_eq (r->status, 200);
    ck_assert_str_eq (r->body, "{\"answer\": 42}");
    ck_assert_uint_eq (r->size, strlen ("{\"answer\": 42}"));
    ck_assert_str_eq (r->content_type, "application/json");
    ck_assert_int_eq (r->attempts, 1);
    ck_assert (!r->cached);
    ck_assert_str_eq (r->detail, "");
    r = s_result (posted);
    ck_assert_int_eq (r->error, TR_OK);
    ck_assert_ptr_nonnull (strstr (r->body, "\"content\": \"echo: hi there\""));
    ck_assert_ptr_nonnull (strstr (r->body, "\"model\": \"m1\""));
    r = s_result (deleted);
    ck_assert_int_eq (r->error, TR_OK);
    ck_assert_int_eq (r->status, 204);
    ck_assert_uint_eq (r->size, 0);
    ck_assert_str_eq (r->body, "");

    //  What the server saw: methods, the body byte for byte, the headers.
    ck_assert_int_eq (s_result (bare)->error, TR_OK);
    s_entry_t log [8], types [8];
    ck_assert_uint_eq (s_log (srv.port, log, 8, "x-trace"), 4);
    ck_assert_uint_eq (s_log (srv.port, types, 8, "content-type"), 4);
    int echoes = 0;
    for (int i = 0; i < 4; i++) {
        if (strcmp (log [i].path, "/echo") == 0) {
            ck_assert_str_eq (log [i].method, "POST");
            ck_assert_str_eq (log [i].body, chat);
            //  The one with headers, and the bare one.
            if (strcmp (log [i].header, "abc 1") == 0)
                ck_assert_str_eq (types [i].header, "application/json");
            else {
                ck_assert_str_eq (log [i].header, "");
                ck_assert_str_eq (types [i].header, "");
            }
            echoes++;
        }
        else
        if (strcmp (log [i].path, "/ok") == 0)
            ck_assert_str_eq (log [i].method, "GET");
        else {
            ck_assert_str_eq (log [i].path, "/thing/7?force=1");
            ck_assert_str_eq (log [i].method, "DELETE");
        }
    }
    tr_http_stats_t stats;
    ck_assert_int_eq (tr_http_stats (node, NULL, &stats), TR_OK);
    ck_assert_int_eq (echoes, 2);
    ck_assert_uint_eq (stats.submitted, 4);
    ck_assert_uint_eq (stats.completed_ok, 4);
    ck_assert_uint_eq (stats.failed, 0);
    ck_assert_uint_eq (stats.retries, 0);
    ck_assert_uint_eq (stats.in_flight, 0);
    ck_assert_uint_eq (stats.queued, 0);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  4xx other than 429 is final at once, even with retries allowed; its
//  status and body reach the caller.
START_TEST (test_status_errors)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/bad\", \"responses\": [{\"status\": 400, \"json\": {\"error\": \"no\"}}]},"
        "{\"path\": \"/gone\", \"responses\": [{\"status\": 410, \"body\": \"gone\"}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_retries = 5,
                                                .backoff_initial_ms = 1 });
    uint64_t bad = s_get_path (node, &srv, "/bad");
    uint64_t gone = s_get_path (node, &srv, "/gone");
    uint64_t missing = s_get_path (node, &srv, "/missing");
    s_wait_results (3, 5000);
    s_res_t *r = s_result (bad);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_int_eq (r->status, 400);
    ck_assert_str_eq (r->body, "{\"error\": \"no\"}");
    ck_assert_int_eq (r->attempts, 1);
    ck_assert_ptr_nonnull (strstr (r->detail, "HTTP 400"));
    r = s_result (gone);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_int_eq (r->status, 410);
    ck_assert_str_eq (r->body, "gone");
    r = s_result (missing);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_int_eq (r->status, 404);
    ck_assert_int_eq (s_stat (srv.port, "requests"), 3);
    tr_http_stats_t stats;
    tr_http_stats (node, NULL, &stats);
    ck_assert_uint_eq (stats.failed, 3);
    ck_assert_uint_eq (stats.retries, 0);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  A 429 with Retry-After: the retry waits at least that long, although
//  the backoff alone would be a millisecond; in seconds, then as a date.
START_TEST (test_retry_after)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/s\", \"responses\": [{\"status\": 429, \"retry_after\": 1}, {\"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .backoff_initial_ms = 1,
                                                .backoff_max_ms = 3000 });
    uint64_t secs = s_get_path (node, &srv, "/s");
    s_wait_results (1, 5000);
    s_entry_t log [4];
    ck_assert_uint_eq (s_log (srv.port, log, 4, NULL), 2);
    ck_assert_double_ge (log [1].t_ms - log [0].t_ms, 995.0);
    //  An HTTP date three seconds ahead (the server's clock is ours), set
    //  now: whole seconds, so the wait is two to three seconds.
    char date [64];
    time_t ahead = time (NULL) + 3;
    struct tm tm;
    gmtime_r (&ahead, &tm);
    strftime (date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    char script [512];
    snprintf (script, sizeof script, "{\"routes\": ["
        "{\"path\": \"/d\", \"responses\": [{\"status\": 503, \"retry_after\": \"%s\"}, {\"json\": 2}]}]}",
        date);
    free (s_control (srv.port, "POST", "/_script", script));
    uint64_t dated = s_get_path (node, &srv, "/d");
    s_wait_results (2, 6000);
    s_res_t *r = s_result (secs);
    ck_assert_int_eq (r->error, TR_OK);
    ck_assert_int_eq (r->attempts, 2);
    ck_assert_str_eq (r->body, "1");
    ck_assert_int_ge (r->elapsed_ms, 1000);
    ck_assert_int_lt (r->elapsed_ms, 1000 + s_slow (700));
    r = s_result (dated);
    ck_assert_int_eq (r->error, TR_OK);
    ck_assert_int_eq (r->attempts, 2);
    ck_assert_int_ge (r->elapsed_ms, 1900);
    ck_assert_int_lt (r->elapsed_ms, 3000 + s_slow (700));
    tr_http_stats_t stats;
    tr_http_stats (node, NULL, &stats);
    ck_assert_uint_eq (stats.retries, 2);
    ck_assert_uint_eq (stats.completed_ok, 2);
    //  Longer than backoff_max_ms: no silent wait, the 429 at once.
    free (s_control (srv.port, "POST", "/_script", "{\"routes\": [{\"path\": \"/l\", "
        "\"responses\": [{\"status\": 429, \"retry_after\": 4}, {\"json\": 3}]}]}"));
    uint64_t longer = s_get_path (node, &srv, "/l");
    s_wait_results (3, 5000);
    r = s_result (longer);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_int_eq (r->status, 429);
    ck_assert_int_eq (r->attempts, 1);
    ck_assert_ptr_nonnull (strstr (r->detail, "retry in 4 s"));
    ck_assert_int_lt (r->elapsed_ms, s_slow (500));
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

START_TEST (test_retry_then_success)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/r\", \"responses\": ["
        "{\"status\": 500}, {\"status\": 502}, {\"status\": 503, \"body\": \"busy\"},"
        "{\"json\": \"fine\"}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .backoff_initial_ms = 20,
                                                .backoff_max_ms = 40 });
    uint64_t id = s_get_path (node, &srv, "/r");
    s_wait_results (1, 5000);
    s_res_t *r = s_result (id);
    ck_assert_int_eq (r->error, TR_OK);
    ck_assert_int_eq (r->attempts, 4);
    ck_assert_str_eq (r->body, "\"fine\"");
    //  Full jitter: each wait is at most its cap (20, 40, 40 ms).
    s_entry_t log [4];
    ck_assert_uint_eq (s_log (srv.port, log, 4, NULL), 4);
    ck_assert_double_le (log [1].t_ms - log [0].t_ms, 20 + s_slow (150));
    ck_assert_double_le (log [3].t_ms - log [2].t_ms, 40 + s_slow (150));
    tr_http_stats_t stats;
    tr_http_stats (node, NULL, &stats);
    ck_assert_uint_eq (stats.retries, 3);
    ck_assert_uint_eq (stats.completed_ok, 1);
    ck_assert_uint_eq (stats.failed, 0);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

START_TEST (test_retries_exhausted)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/r\", \"responses\": ["
        "{\"status\": 500, \"body\": \"down\"}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_retries = 2,
                                                .backoff_initial_ms = 10 });
    s_backend (node, (tr_http_backend_opts_t) { .name = "once", .max_retries = -1 });
    uint64_t id = s_get_path (node, &srv, "/r");
    s_wait_results (1, 5000);
    s_res_t *r = s_result (id);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_int_eq (r->status, 500);
    ck_assert_str_eq (r->body, "down");
    ck_assert_int_eq (r->attempts, 3);
    ck_assert_ptr_nonnull (strstr (r->detail, "HTTP 500 (3 attempts)"));
    ck_assert_int_eq (s_stat (srv.port, "requests"), 3);
    //  max_retries -1: one attempt only.
    tr_http_request_t once = { .url = s_at (&srv, "/r"), .backend = "once" };
    ck_assert_int_eq (tr_http_submit (node, &once, s_done, NULL, &id), TR_OK);
    s_wait_results (2, 5000);
    ck_assert_int_eq (s_result (id)->attempts, 1);
    ck_assert_int_eq (s_result (id)->error, TR_EHTTP);
    ck_assert_int_eq (s_stat (srv.port, "requests"), 4);
    tr_http_stats_t stats;
    tr_http_stats (node, NULL, &stats);
    ck_assert_uint_eq (stats.retries, 2);
    ck_assert_uint_eq (stats.failed, 1);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  A server that never answers: the attempt's timeout ends it, once (a
//  timed-out answer is not retried).
START_TEST (test_hang_timeout)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/h\", \"responses\": [{\"hang\": true}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .timeout_ms = 5000,
                                                .backoff_initial_ms = 1 });
    tr_http_request_t r = { .url = s_at (&srv, "/h"), .timeout_ms = 300 };
    uint64_t id;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_OK);
    s_wait_results (1, 5000);
    s_res_t *res = s_result (id);
    ck_assert_int_eq (res->error, TR_ETIMEDOUT);
    ck_assert_int_eq (res->status, 0);
    ck_assert_int_eq (res->attempts, 1);
    ck_assert_int_ge (res->elapsed_ms, 295);
    ck_assert_int_lt (res->elapsed_ms, 300 + s_slow (500));
    ck_assert_ptr_nonnull (strstr (res->detail, "timed out after 300 ms"));
    ck_assert_int_eq (s_stat (srv.port, "requests"), 1);
    //  The backend's own timeout when the request sets none.
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .timeout_ms = 200 });
    id = s_get_path (node, &srv, "/h");
    s_wait_results (2, 5000);
    ck_assert_int_eq (s_result (id)->error, TR_ETIMEDOUT);
    ck_assert_int_ge (s_result (id)->elapsed_ms, 195);
    ck_assert_int_lt (s_result (id)->elapsed_ms, 200 + s_slow (500));
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  The overall deadline: while running, while queued, and a retry that
//  could only happen after it.
START_TEST (test_deadline)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/h\", \"responses\": [{\"hang\": true}]},"
        "{\"path\": \"/busy\", \"responses\": [{\"status\": 429, \"retry_after\": 5}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .timeout_ms = 10000,
                                                .max_concurrent = 1 });
    tr_http_request_t hang = { .url = s_at (&srv, "/h"), .deadline_ms = 400 };
    uint64_t running, queued;
    ck_assert_int_eq (tr_http_submit (node, &hang, s_done, NULL, &running), TR_OK);
    hang.deadline_ms = 200;
    ck_assert_int_eq (tr_http_submit (node, &hang, s_done, NULL, &queued), TR_OK);
    s_wait_results (2, 5000);
    s_res_t *r = s_result (queued);
    ck_assert_int_eq (r->error, TR_ETIMEDOUT);
    ck_assert_int_eq (r->attempts, 0);
    ck_assert_ptr_nonnull (strstr (r->detail, "queued"));
    ck_assert_int_ge (r->elapsed_ms, 195);
    ck_assert_int_lt (r->elapsed_ms, 200 + s_slow (300));
    ck_assert_int_ge (r->queued_ms, 195);
    r = s_result (running);
    ck_assert_int_eq (r->error, TR_ETIMEDOUT);
    ck_assert_int_eq (r->attempts, 1);
    ck_assert_int_ge (r->elapsed_ms, 395);
    ck_assert_int_lt (r->elapsed_ms, 400 + s_slow (300));

    //  Retry-After 5 s against a 1 s deadline: no point waiting.
    tr_http_request_t busy = { .url = s_at (&srv, "/busy"), .deadline_ms = 1000 };
    uint64_t id;
    ck_assert_int_eq (tr_http_submit (node, &busy, s_done, NULL, &id), TR_OK);
    s_wait_results (3, 5000);
    r = s_result (id);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_int_eq (r->status, 429);
    ck_assert_int_eq (r->attempts, 1);
    ck_assert_ptr_nonnull (strstr (r->detail, "deadline"));
    ck_assert_int_lt (r->elapsed_ms, s_slow (500));
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  The server closes the connection without a word: a connection failure,
//  retried, then TR_EHTTP with status 0.
START_TEST (test_connection_closed)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/c\", \"responses\": [{\"close\": true}]},"
        "{\"path\": \"/c2\", \"responses\": [{\"close\": true}, {\"json\": \"back\"}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_retries = 1,
                                                .backoff_initial_ms = 10 });
    uint64_t id = s_get_path (node, &srv, "/c");
    uint64_t again = s_get_path (node, &srv, "/c2");
    s_wait_results (2, 5000);
    s_res_t *r = s_result (id);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_int_eq (r->status, 0);
    ck_assert_int_eq (r->attempts, 2);
    ck_assert_str_ne (r->detail, "");
    r = s_result (again);
    ck_assert_int_eq (r->error, TR_OK);
    ck_assert_int_eq (r->attempts, 2);
    ck_assert_str_eq (r->body, "\"back\"");
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  Not JSON at all, though labelled so: passed through byte for byte
//  (the engine does not parse bodies).
START_TEST (test_malformed_passthrough)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/m\", \"responses\": [{\"malformed\": true}]}]}");
    tr_node_t *node = s_node ();
    uint64_t id = s_get_path (node, &srv, "/m");
    s_wait_results (1, 5000);
    s_res_t *r = s_result (id);
    ck_assert_int_eq (r->error, TR_OK);
    ck_assert_str_eq (r->content_type, "application/json");
    const char *sent = "{\"id\": \"broken\", \"choices\": [{\"message\": {\"content\": \"tru";
    ck_assert_uint_eq (r->size, strlen (sent));
    ck_assert_str_eq (r->body, sent);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

START_TEST (test_too_big)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/big\", \"responses\": [{\"body_bytes\": 100000}]},"
        "{\"path\": \"/fits\", \"responses\": [{\"body_bytes\": 1000}]},"
        "{\"path\": \"/big-chunked\", \"responses\": [{\"body_bytes\": 100000, \"chunked\": true}]},"
        "{\"path\": \"/fits-chunked\", \"responses\": [{\"body_bytes\": 1000, \"chunked\": true}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_response = 1000,
                                                .backoff_initial_ms = 1 });
    uint64_t big = s_get_path (node, &srv, "/big");
    uint64_t fits = s_get_path (node, &srv, "/fits");
    s_wait_results (2, 5000);
    s_res_t *r = s_result (big);
    ck_assert_int_eq (r->error, TR_ETOOBIG);
    ck_assert_uint_eq (r->size, 0);
    ck_assert_int_eq (r->attempts, 1);
    ck_assert_ptr_nonnull (strstr (r->detail, "1000 bytes"));
    r = s_result (fits);
    ck_assert_int_eq (r->error, TR_OK);
    ck_assert_uint_eq (r->size, 1000);
    ck_assert_int_eq (r->body [999], 'x');
    ck_assert_int_eq (s_stat (srv.port, "requests"), 2);
    //  Without a Content-Length, counted as it arrives.
    big = s_get_path (node, &srv, "/big-chunked");
    fits = s_get_path (node, &srv, "/fits-chunked");
    s_wait_results (4, 5000);
    r = s_result (big);
    ck_assert_int_eq (r->error, TR_ETOOBIG);
    ck_assert_uint_eq (r->size, 0);
    ck_assert_int_eq (r->attempts, 1);
    r = s_result (fits);
    ck_assert_int_eq (r->error, TR_OK);
    ck_assert_uint_eq (r->size, 1000);
    ck_assert_int_eq (s_stat (srv.port, "requests"), 4);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

START_TEST (test_concurrency_limit)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/slow\", \"responses\": ["
        "{\"delay_ms\": 100, \"json\": true}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_concurrent = 3 });
    int64_t start = tr_test_now_ms ();
    for (int i = 0; i < 12; i++)
        s_get_path (node, &srv, "/slow");
    s_wait_results (12, 10000);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_int_eq (s_stat (srv.port, "max_in_flight"), 3);
    ck_assert_int_eq (s_stat (srv.port, "requests"), 12);
    ck_assert_int_ge (took, 4 * 100);
    for (size_t i = 0; i < 12; i++)
        ck_assert_int_eq (s_sink.res [i].error, TR_OK);
    //  A larger limit lets more run at once.
    free (s_control (srv.port, "POST", "/_reset", NULL));
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_concurrent = 8 });
    for (int i = 0; i < 8; i++)
        s_get_path (node, &srv, "/slow");
    s_wait_results (20, 10000);
    ck_assert_int_eq (s_stat (srv.port, "max_in_flight"), 8);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

static bool
s_two_results (void *arg)
{
    return s_sink_count () >= 2;
}

//  Requests per minute: two start, the third waits (for a minute, which
//  test_windows_release checks); raising the limit lets it go at once.
START_TEST (test_requests_per_minute)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/r\", \"responses\": [{\"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .requests_per_minute = 2 });
    for (int i = 0; i < 3; i++)
        s_get_path (node, &srv, "/r");
    ck_assert (tr_test_wait_until (s_two_results, NULL, s_slow (3000)));
    usleep (700 * 1000);
    ck_assert_uint_eq (s_sink_count (), 2);
    ck_assert_int_eq (s_stat (srv.port, "requests"), 2);
    tr_http_stats_t stats;
    tr_http_stats (node, NULL, &stats);
    ck_assert_uint_eq (stats.queued, 1);
    ck_assert_uint_eq (stats.in_flight, 0);
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .requests_per_minute = 3 });
    s_wait_results (3, 2000);
    ck_assert_int_ge (s_sink.res [2].queued_ms, 650);
    ck_assert_int_eq (s_stat (srv.port, "requests"), 3);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

static int64_t
s_cpu_ms (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (int64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000
         + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

//  A request held back by a limit that goes away otherwise (its deadline
//  passes, or it is cancelled) leaves the engine idle, not waking up for
//  the limit it no longer waits for.
START_TEST (test_limit_then_nothing)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/r\", \"responses\": [{\"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .requests_per_minute = 1 });
    s_get_path (node, &srv, "/r");
    tr_http_request_t r = { .url = s_at (&srv, "/r"), .deadline_ms = 200 };
    uint64_t expiring, cancelled;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &expiring), TR_OK);
    s_wait_results (2, 3000);
    ck_assert_int_eq (s_result (expiring)->error, TR_ETIMEDOUT);
    r.deadline_ms = 0;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &cancelled), TR_OK);
    usleep (100 * 1000);
    ck_assert_int_eq (tr_http_cancel (node, cancelled), TR_OK);
    int64_t cpu = s_cpu_ms ();
    usleep (500 * 1000);
    ck_assert_int_lt (s_cpu_ms () - cpu, 100);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  Tokens per minute: 40 + 40 fit under 100, a third 40 does not until
//  tr_http_charge says the first two used less.
START_TEST (test_tokens_per_minute)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/t\", \"responses\": [{\"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "llm", .tokens_per_minute = 100 });
    tr_http_request_t r = { .url = s_at (&srv, "/t"), .backend = "llm", .tokens = 40 };
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, NULL), TR_OK);
    ck_assert (tr_test_wait_until (s_two_results, NULL, s_slow (3000)));
    usleep (500 * 1000);
    ck_assert_uint_eq (s_sink_count (), 2);
    tr_http_stats_t stats;
    tr_http_stats (node, "llm", &stats);
    ck_assert_uint_eq (stats.tokens, 80);
    ck_assert_uint_eq (stats.queued, 1);
    //  They used 15 each: 50 fewer than estimated.
    ck_assert_int_eq (tr_http_charge (node, "llm", -50), TR_OK);
    s_wait_results (3, 2000);
    tr_http_stats (node, "llm", &stats);
    ck_assert_uint_eq (stats.tokens, 70);
    ck_assert_uint_eq (stats.completed_ok, 3);
    //  Tokens are charged on the default backend too, without a limit.
    r.backend = NULL;
    r.tokens = 7;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, NULL), TR_OK);
    s_wait_results (4, 2000);
    tr_http_stats (node, NULL, &stats);
    ck_assert_uint_eq (stats.tokens, 7);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  The one-minute windows release what they held after a minute (a slow
//  test: it waits for the window, on two backends at once).
START_TEST (test_windows_release)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/w/*\", \"responses\": [{\"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    //  A third backend holds a request back until its deadline passes:
    //  when its window would have released it, a minute later, the
    //  engine must stay idle.
    s_backend (node, (tr_http_backend_opts_t) { .name = "idle", .requests_per_minute = 1 });
    tr_http_request_t idle = { .url = s_at (&srv, "/w/idle"), .backend = "idle" };
    ck_assert_int_eq (tr_http_submit (node, &idle, s_done, NULL, NULL), TR_OK);
    idle.deadline_ms = 200;
    ck_assert_int_eq (tr_http_submit (node, &idle, s_done, NULL, NULL), TR_OK);
    s_wait_results (2, 3000);
    s_backend (node, (tr_http_backend_opts_t) { .name = "rpm", .requests_per_minute = 2 });
    s_backend (node, (tr_http_backend_opts_t) { .name = "tpm", .tokens_per_minute = 100 });
    tr_http_request_t r = { .url = s_at (&srv, "/w/rpm"), .backend = "rpm" };
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, NULL), TR_OK);
    tr_http_request_t t = { .url = s_at (&srv, "/w/tpm"), .backend = "tpm", .tokens = 60 };
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq (tr_http_submit (node, &t, s_done, NULL, NULL), TR_OK);
    s_wait_results (7, 70000);
    s_entry_t all [8], log [8];
    ck_assert_uint_eq (s_log (srv.port, all, 8, NULL), 6);
    int kept = 0;
    for (int i = 0; i < 6; i++)
        if (strcmp (all [i].path, "/w/idle"))
            log [kept++] = all [i];
    ck_assert_int_eq (kept, 5);
    usleep (300 * 1000);
    int64_t cpu = s_cpu_ms ();
    usleep (500 * 1000);
    ck_assert_int_lt (s_cpu_ms () - cpu, 100);
    //  The last of each kind started one minute after the first.
    double first_rpm = -1, first_tpm = -1, last_rpm = 0, last_tpm = 0;
    int rpm_count = 0;
    for (int i = 0; i < 5; i++) {
        bool rpm = strcmp (log [i].path, "/w/rpm") == 0;
        double *first = rpm? &first_rpm: &first_tpm;
        if (*first < 0)
            *first = log [i].t_ms;
        *(rpm? &last_rpm: &last_tpm) = log [i].t_ms;
        rpm_count += rpm;
    }
    ck_assert_int_eq (rpm_count, 3);
    ck_assert_double_ge (last_rpm - first_rpm, 59990.0);
    ck_assert_double_lt (last_rpm - first_rpm, 60000.0 + s_slow (1500));
    ck_assert_double_ge (last_tpm - first_tpm, 59990.0);
    ck_assert_double_lt (last_tpm - first_tpm, 60000.0 + s_slow (1500));
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  With one request running, the others queue and start by priority,
//  then in order of submission.
START_TEST (test_priorities)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/first\", \"responses\": [{\"delay_ms\": 500, \"json\": 0}]},"
        "{\"path\": \"/p/*\", \"responses\": [{\"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_concurrent = 1 });
    s_get_path (node, &srv, "/first");
    //  Once it runs, the rest queue behind it (submitted together, they
    //  would all have been sorted, the first with them).
    int64_t deadline = tr_test_now_ms () + s_slow (3000);
    while (s_stat (srv.port, "in_flight") < 1 && tr_test_now_ms () < deadline)
        usleep (2000);
    struct { const char *path; int priority; } reqs [] = {
        { "/p/a0", 0 }, { "/p/b5", 5 }, { "/p/c-1", -1 }, { "/p/d5", 5 }, { "/p/e10", 10 },
        { "/p/f0", 0 }
    };
    for (size_t i = 0; i < 6; i++) {
        char url [128];
        snprintf (url, sizeof url, "http://127.0.0.1:%d%s", srv.port, reqs [i].path);
        tr_http_request_t r = { .url = url, .priority = reqs [i].priority };
        ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, NULL), TR_OK);
    }
    s_wait_results (7, 5000);
    s_entry_t log [8];
    ck_assert_uint_eq (s_log (srv.port, log, 8, NULL), 7);
    const char *order [] = { "/first", "/p/e10", "/p/b5", "/p/d5", "/p/a0", "/p/f0", "/p/c-1" };
    for (int i = 0; i < 7; i++)
        ck_assert_str_eq (log [i].path, order [i]);
    ck_assert_int_eq (s_stat (srv.port, "max_in_flight"), 1);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

START_TEST (test_cache)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/c/*\", \"repeat\": \"cycle\", \"responses\": [{\"json\": 1}, {\"json\": 2}, {\"json\": 3}, {\"json\": 4}]},"
        "{\"path\": \"/e\", \"repeat\": \"cycle\", \"responses\": [{\"status\": 404}, {\"json\": \"ok\"}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .cache_entries = 2,
                                                .cache_ttl_ms = s_slow (400) });
    tr_http_request_t r = { .url = s_at (&srv, "/c/a"), .cacheable = true };
    uint64_t ids [12];
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &ids [0]), TR_OK);
    s_wait_results (1, 5000);
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &ids [1]), TR_OK);
    s_wait_results (2, 5000);
    s_res_t *res = s_result (ids [1]);
    ck_assert (res->cached);
    ck_assert_int_eq (res->error, TR_OK);
    ck_assert_int_eq (res->attempts, 0);
    ck_assert_int_eq (res->status, 200);
    ck_assert_str_eq (res->body, s_result (ids [0])->body);
    ck_assert_str_eq (res->content_type, "application/json");
    ck_assert_int_eq (s_stat (srv.port, "requests"), 1);
    //  Another body, header or method is another key; not cacheable
    //  requests never look.
    tr_http_request_t other = r;
    other.body = "x";
    other.body_size = 1;
    other.method = "GET";
    ck_assert_int_eq (tr_http_submit (node, &other, s_done, NULL, &ids [2]), TR_OK);
    const char *hdr [] = { "X-A: 1", NULL };
    other = r;
    other.headers = hdr;
    ck_assert_int_eq (tr_http_submit (node, &other, s_done, NULL, &ids [3]), TR_OK);
    other = r;
    other.cacheable = false;
    ck_assert_int_eq (tr_http_submit (node, &other, s_done, NULL, &ids [4]), TR_OK);
    s_wait_results (5, 5000);
    for (int i = 2; i < 5; i++)
        ck_assert (!s_result (ids [i])->cached);
    ck_assert_int_eq (s_stat (srv.port, "requests"), 4);
    //  After the time to live, the server again.
    usleep ((useconds_t) s_slow (450) * 1000);
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &ids [5]), TR_OK);
    s_wait_results (6, 5000);
    ck_assert (!s_result (ids [5])->cached);
    ck_assert_int_eq (s_stat (srv.port, "requests"), 5);
    //  An error is not cached.
    tr_http_request_t e = { .url = s_at (&srv, "/e"), .cacheable = true };
    ck_assert_int_eq (tr_http_submit (node, &e, s_done, NULL, &ids [6]), TR_OK);
    s_wait_results (7, 5000);
    ck_assert_int_eq (s_result (ids [6])->error, TR_EHTTP);
    ck_assert_int_eq (tr_http_submit (node, &e, s_done, NULL, &ids [7]), TR_OK);
    s_wait_results (8, 5000);
    ck_assert_int_eq (s_result (ids [7])->error, TR_OK);
    ck_assert (!s_result (ids [7])->cached);
    tr_http_stats_t stats;
    tr_http_stats (node, NULL, &stats);
    ck_assert_uint_eq (stats.cache_hits, 1);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  Least recently used goes first: A, B, A (hit), C evicts B.
START_TEST (test_cache_lru)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/k/*\", \"responses\": [{\"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .cache_entries = 2 });
    const char *seq [] = { "/k/a", "/k/b", "/k/a", "/k/c", "/k/a", "/k/b" };
    const bool hit [] = { false, false, true, false, true, false };
    for (int i = 0; i < 6; i++) {
        tr_http_request_t r = { .url = s_at (&srv, seq [i]), .cacheable = true };
        uint64_t id;
        ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_OK);
        s_wait_results ((size_t) i + 1, 5000);
        ck_assert_msg (s_result (id)->cached == hit [i], "request %d (%s)", i, seq [i]);
    }
    ck_assert_int_eq (s_stat (srv.port, "requests"), 4);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

static bool
s_server_idle (void *arg)
{
    return s_stat (*(int *) arg, "in_flight") == 0;
}

START_TEST (test_cancel)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/h\", \"responses\": [{\"hang\": true}]},"
        "{\"path\": \"/ok\", \"responses\": [{\"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_concurrent = 1 });
    uint64_t running = s_get_path (node, &srv, "/h");
    uint64_t queued = s_get_path (node, &srv, "/ok");
    //  Wait for the first to reach the server.
    int64_t deadline = tr_test_now_ms () + s_slow (3000);
    while (s_stat (srv.port, "in_flight") < 1 && tr_test_now_ms () < deadline)
        usleep (10000);
    ck_assert_int_eq (s_stat (srv.port, "in_flight"), 1);
    //  When cancel returns, the callback has run.
    ck_assert_int_eq (tr_http_cancel (node, queued), TR_OK);
    ck_assert_uint_eq (s_sink_count (), 1);
    ck_assert_int_eq (s_result (queued)->error, TR_ECANCELED);
    ck_assert_int_eq (s_result (queued)->attempts, 0);
    ck_assert_int_eq (tr_http_cancel (node, running), TR_OK);
    ck_assert_uint_eq (s_sink_count (), 2);
    ck_assert_int_eq (s_result (running)->error, TR_ECANCELED);
    ck_assert_int_eq (s_result (running)->attempts, 1);
    //  Done already, or never there.
    ck_assert_int_eq (tr_http_cancel (node, running), TR_ENOTFOUND);
    ck_assert_int_eq (tr_http_cancel (node, 987654), TR_ENOTFOUND);
    //  The hanging connection was closed: the server sees nothing in flight.
    int port = srv.port;
    ck_assert (tr_test_wait_until (s_server_idle, &port, s_slow (3000)));
    //  The engine goes on.
    uint64_t later = s_get_path (node, &srv, "/ok");
    s_wait_results (3, 5000);
    ck_assert_int_eq (s_result (later)->error, TR_OK);
    tr_http_stats_t stats;
    tr_http_stats (node, NULL, &stats);
    ck_assert_uint_eq (stats.failed, 2);
    ck_assert_uint_eq (stats.in_flight + stats.queued, 0);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  Callbacks may submit and cancel (from the engine's own thread).
static tr_node_t *s_chain_node;
static char s_chain_url [256];
static uint64_t s_chain_victim;
static int s_chain_submit_rc = 1;
static int s_chain_cancel_rc = 1;

static void
s_chain_done (const tr_http_result_t *r, void *arg)
{
    s_chain_cancel_rc = tr_http_cancel (s_chain_node, s_chain_victim);
    tr_http_request_t next = { .url = s_chain_url };
    s_chain_submit_rc = tr_http_submit (s_chain_node, &next, s_done, NULL, NULL);
    s_done (r, arg);
}

START_TEST (test_callback_reentry)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/h\", \"responses\": [{\"hang\": true}]},"
        "{\"path\": \"/ok\", \"responses\": [{\"delay_ms\": 100, \"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    s_chain_node = node;
    snprintf (s_chain_url, sizeof s_chain_url, "http://127.0.0.1:%d/ok", srv.port);
    s_chain_victim = s_get_path (node, &srv, "/h");
    tr_http_request_t first = { .url = s_chain_url };
    ck_assert_int_eq (tr_http_submit (node, &first, s_chain_done, NULL, NULL), TR_OK);
    s_wait_results (3, 5000);
    ck_assert_int_eq (s_chain_cancel_rc, TR_OK);
    ck_assert_int_eq (s_chain_submit_rc, TR_OK);
    ck_assert_int_eq (s_result (s_chain_victim)->error, TR_ECANCELED);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  Destroying the node ends everything pending with TR_ECLOSED before it
//  returns: running, queued, waiting for a retry; a callback that
//  submits then is refused.
static int s_closed_submit_rc = 1;

static void
s_closed_done (const tr_http_result_t *r, void *arg)
{
    tr_http_request_t next = { .url = s_chain_url };
    s_closed_submit_rc = tr_http_submit (s_chain_node, &next, s_done, NULL, NULL);
    s_done (r, arg);
}

START_TEST (test_node_destroy)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/h\", \"responses\": [{\"hang\": true}]},"
        "{\"path\": \"/busy\", \"responses\": [{\"status\": 503, \"retry_after\": 30}]}]}");
    tr_node_t *node = s_node ();
    s_chain_node = node;
    snprintf (s_chain_url, sizeof s_chain_url, "http://127.0.0.1:%d/h", srv.port);
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_concurrent = 5 });
    for (int i = 0; i < 8; i++)
        s_get_path (node, &srv, "/h");
    tr_http_request_t busy = { .url = s_at (&srv, "/busy") };
    ck_assert_int_eq (tr_http_submit (node, &busy, s_closed_done, NULL, NULL), TR_OK);
    s_backend (node, (tr_http_backend_opts_t) { .name = "other", .backoff_max_ms = 60000 });
    busy.backend = "other";
    ck_assert_int_eq (tr_http_submit (node, &busy, s_done, NULL, NULL), TR_OK);
    //  Five hanging at the server and four queued behind them on the
    //  default backend; one waiting 30 s to retry on the other.
    int64_t deadline = tr_test_now_ms () + s_slow (3000);
    while (s_stat (srv.port, "requests") < 6 && tr_test_now_ms () < deadline)
        usleep (10000);
    ck_assert_int_eq (s_stat (srv.port, "requests"), 6);
    tr_http_stats_t stats;
    deadline = tr_test_now_ms () + s_slow (3000);
    do {
        usleep (10000);
        tr_http_stats (node, "other", &stats);
    } while (stats.in_flight && tr_test_now_ms () < deadline);
    ck_assert_uint_eq (stats.in_flight, 0);
    ck_assert_uint_eq (stats.queued, 1);
    ck_assert_uint_eq (stats.retries, 0);
    tr_http_stats (node, NULL, &stats);
    ck_assert_uint_eq (stats.in_flight, 5);
    ck_assert_uint_eq (stats.queued, 4);
    ck_assert_uint_eq (s_sink_count (), 0);
    tr_node_destroy (&node);
    ck_assert_uint_eq (s_sink_count (), 10);
    for (size_t i = 0; i < 10; i++) {
        ck_assert_int_eq (s_sink.res [i].error, TR_ECLOSED);
        ck_assert_str_eq (s_sink.res [i].detail, "the node is shutting down");
    }
    ck_assert_int_eq (s_closed_submit_rc, TR_ECLOSED);
    s_server_stop (&srv);
}
END_TEST

START_TEST (test_bad_arguments)
{
    tr_node_t *node = s_node ();
    tr_http_request_t ok = { .url = "http://127.0.0.1:9/" };
    uint64_t id = 77;
    ck_assert_int_eq (tr_http_submit (NULL, &ok, s_done, NULL, &id), TR_EINVAL);
    ck_assert_int_eq (tr_http_submit (node, NULL, s_done, NULL, &id), TR_EINVAL);
    ck_assert_int_eq (tr_http_submit (node, &ok, NULL, NULL, &id), TR_EINVAL);
    const char *urls [] = { "ftp://127.0.0.1/", "127.0.0.1:80/x", "http://", "", "http://[::1/",
                            "http://exa mple.com/" };
    for (size_t i = 0; i < sizeof urls / sizeof urls [0]; i++) {
        tr_http_request_t r = { .url = urls [i] };
        ck_assert_msg (tr_http_submit (node, &r, s_done, NULL, &id) == TR_EINVAL, "%s", urls [i]);
    }
    tr_http_request_t r = { 0 };
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_EINVAL);
    const char *methods [] = { "", "GE T", "GET\r\n", "(GET)",
                               "AVERYLONGMETHODNAMETHATNOSERVERKNOWS" };
    for (size_t i = 0; i < sizeof methods / sizeof methods [0]; i++) {
        r = ok;
        r.method = methods [i];
        ck_assert_msg (tr_http_submit (node, &r, s_done, NULL, &id) == TR_EINVAL, "'%s'", methods [i]);
    }
    const char *no_colon [] = { "X-A 1", NULL };
    const char *crlf [] = { "X-A: 1\r\nX-B: 2", NULL };
    const char *empty_name [] = { ": v", NULL };
    const char *space_name [] = { "X A: v", NULL };
    const char *const *bad_headers [] = { no_colon, crlf, empty_name, space_name };
    for (size_t i = 0; i < 4; i++) {
        r = ok;
        r.headers = bad_headers [i];
        ck_assert_msg (tr_http_submit (node, &r, s_done, NULL, &id) == TR_EINVAL, "%s", bad_headers [i][0]);
    }
    r = ok;
    r.body_size = 3;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_EINVAL);
    r = ok;
    r.timeout_ms = -1;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_EINVAL);
    r = ok;
    r.deadline_ms = -5;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_EINVAL);
    ck_assert_int_eq (id, 77);          //  untouched by every refusal

    //  Backends.
    ck_assert_int_eq (tr_http_backend_set (NULL, &(tr_http_backend_opts_t) { .name = "a" }), TR_EINVAL);
    ck_assert_int_eq (tr_http_backend_set (node, NULL), TR_EINVAL);
    const char *names [] = { NULL, "", "a b", "a/b", "é",
        "0123456789012345678901234567890123456789012345678901234567890123" };
    for (size_t i = 0; i < sizeof names / sizeof names [0]; i++)
        ck_assert_msg (tr_http_backend_set (node, &(tr_http_backend_opts_t) { .name = names [i] })
                       == TR_EINVAL, "%s", names [i]? names [i]: "NULL");
    ck_assert_int_eq (tr_http_backend_set (node, &(tr_http_backend_opts_t) {
        .name = "012345678901234567890123456789012345678901234567890123456789.-_" }), TR_OK);
    tr_http_backend_opts_t negatives [] = {
        { .name = "n", .max_concurrent = -1 }, { .name = "n", .requests_per_minute = -1 },
        { .name = "n", .tokens_per_minute = -1 }, { .name = "n", .connect_timeout_ms = -1 },
        { .name = "n", .timeout_ms = -1 }, { .name = "n", .max_retries = -2 },
        { .name = "n", .backoff_initial_ms = -1 }, { .name = "n", .backoff_max_ms = -1 },
        { .name = "n", .cache_ttl_ms = -1 } };
    for (size_t i = 0; i < sizeof negatives / sizeof negatives [0]; i++)
        ck_assert_msg (tr_http_backend_set (node, &negatives [i]) == TR_EINVAL, "case %zu", i);
    //  None of those made a backend "n".
    tr_http_stats_t stats;
    ck_assert_int_eq (tr_http_stats (node, "n", &stats), TR_EINVAL);
    ck_assert_int_eq (tr_http_stats (node, NULL, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_http_stats (NULL, NULL, &stats), TR_EINVAL);
    ck_assert_int_eq (tr_http_cancel (NULL, 1), TR_EINVAL);
    ck_assert_int_eq (tr_http_cancel (node, 0), TR_ENOTFOUND);
    ck_assert_int_eq (tr_http_charge (NULL, NULL, 1), TR_EINVAL);
    ck_assert_int_eq (tr_http_charge (node, "n", 1), TR_EINVAL);
    ck_assert_int_eq (tr_http_stats (node, NULL, &stats), TR_OK);
    ck_assert_uint_eq (stats.submitted, 0);
    ck_assert_uint_eq (s_sink_count (), 0);
    tr_node_destroy (&node);
    ck_assert_uint_eq (s_sink_count (), 0);
}
END_TEST

//  Before any use: stats of "default" are zeros, cancel finds nothing,
//  without starting the engine.
START_TEST (test_unused)
{
    tr_node_t *node = s_node ();
    tr_http_stats_t stats;
    memset (&stats, 0xff, sizeof stats);
    ck_assert_int_eq (tr_http_stats (node, NULL, &stats), TR_OK);
    ck_assert_uint_eq (stats.submitted, 0);
    ck_assert_uint_eq (stats.tokens, 0);
    ck_assert_int_eq (tr_http_stats (node, "default", &stats), TR_OK);
    ck_assert_int_eq (tr_http_stats (node, "x", &stats), TR_EINVAL);
    ck_assert_int_eq (tr_http_cancel (node, 1), TR_ENOTFOUND);
    tr_node_destroy (&node);
}
END_TEST

START_TEST (test_unknown_backend)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"path\": \"/ok\", \"responses\": [{\"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    tr_http_request_t r = { .url = s_at (&srv, "/ok"), .backend = "search" };
    uint64_t id = 0;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_EINVAL);
    ck_assert_int_eq (id, 0);
    tr_http_stats_t stats;
    ck_assert_int_eq (tr_http_stats (node, "search", &stats), TR_EINVAL);
    ck_assert_int_eq (tr_http_charge (node, "search", 5), TR_EINVAL);
    s_backend (node, (tr_http_backend_opts_t) { .name = "search" });
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_OK);
    s_wait_results (1, 5000);
    ck_assert_int_eq (s_result (id)->error, TR_OK);
    ck_assert_int_eq (tr_http_stats (node, "search", &stats), TR_OK);
    ck_assert_uint_eq (stats.completed_ok, 1);
    ck_assert_int_eq (tr_http_stats (node, NULL, &stats), TR_OK);
    ck_assert_uint_eq (stats.submitted, 0);
    ck_assert_uint_eq (s_sink_count (), 1);
    tr_node_destroy (&node);
    s_server_stop (&srv);
}
END_TEST

//  A port where nothing listens (bound, never listening, so nobody else
//  takes it meanwhile): refused, retried, then TR_EHTTP with status 0.
START_TEST (test_connection_refused)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (bind (fd, (struct sockaddr *) &addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    ck_assert_int_eq (getsockname (fd, (struct sockaddr *) &addr, &len), 0);
    char url [64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/x", ntohs (addr.sin_port));
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_retries = 2,
                                                .backoff_initial_ms = 10 });
    tr_http_request_t r = { .url = url };
    uint64_t id;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_OK);
    s_wait_results (1, 5000);
    s_res_t *res = s_result (id);
    ck_assert_int_eq (res->error, TR_EHTTP);
    ck_assert_int_eq (res->status, 0);
    ck_assert_int_eq (res->attempts, 3);
    ck_assert_msg (strstr (res->detail, "onnect") != NULL, "detail: %s", res->detail);
    ck_assert_uint_eq (res->size, 0);
    tr_node_destroy (&node);
    close (fd);
}
END_TEST

//  Submits a GET of url on backend, and waits for its result.
static s_res_t *
s_get_wait (tr_node_t *node, const char *backend, const char *url)
{
    tr_http_request_t r = { .backend = backend, .url = url };
    uint64_t id = 0;
    size_t before = s_sink_count ();
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_OK);
    s_wait_results (before + 1, 10000);
    return s_result (id);
}

//  HTTPS against a server with a self-signed certificate for 127.0.0.1:
//  verified by default, so refused (TR_EHTTP, a detail naming the TLS
//  failure, no retry: it is no connection failure); accepted by a
//  backend whose ca_file holds that certificate; refused again for a
//  host name the certificate does not name, and with a CA file that
//  cannot be read. A connection verified for one backend is not reused
//  by another that does not trust it.
START_TEST (test_https)
{
    tr_test_tls_t tls;
    tr_test_tls_make (&tls);
    s_server_t srv;
    s_server_spawn (&srv, "{\"routes\": [{\"path\": \"/secret\", \"responses\": "
                    "[{\"json\": {\"over\": \"tls\"}}]}]}", tls.cert, tls.key);
    tr_node_t *node = s_node ();
    char url [96];
    snprintf (url, sizeof url, "https://127.0.0.1:%d/secret", srv.port);
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_retries = 2,
                                                .backoff_initial_ms = 10 });
    s_backend (node, (tr_http_backend_opts_t) { .name = "trusting", .ca_file = tls.cert });

    //  The system's store does not hold the certificate.
    s_res_t *r = s_get_wait (node, NULL, url);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_int_eq (r->status, 0);
    ck_assert_int_eq (r->attempts, 1);
    ck_assert_msg (strstr (r->detail, "TLS: the server's certificate is not trusted: ")
                   == r->detail && strstr (r->detail, "self-signed certificate"),
                   "detail: %s", r->detail);

    //  Told the CA file, the engine accepts it: the scripted answer.
    r = s_get_wait (node, "trusting", url);
    ck_assert_msg (r->error == TR_OK, "%s: %s", tr_errname (r->error), r->detail);
    ck_assert_int_eq (r->status, 200);
    ck_assert_str_eq (r->body, "{\"over\": \"tls\"}");
    ck_assert_str_eq (r->content_type, "application/json");
    //  Twice: the second attempt may reuse the verified connection.
    r = s_get_wait (node, "trusting", url);
    ck_assert_int_eq (r->error, TR_OK);

    //  The default backend still does not trust it, connection kept alive
    //  by the other or not.
    r = s_get_wait (node, NULL, url);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_ptr_nonnull (strstr (r->detail, "self-signed certificate"));

    //  The certificate names 127.0.0.1, not localhost: refused though
    //  trusted.
    snprintf (url, sizeof url, "https://localhost:%d/secret", srv.port);
    r = s_get_wait (node, "trusting", url);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_msg (strstr (r->detail, "TLS: the server's certificate is not trusted: ")
                   == r->detail && strstr (r->detail, "localhost"), "detail: %s", r->detail);

    //  A CA file that cannot be read fails the attempt, saying so.
    snprintf (url, sizeof url, "https://127.0.0.1:%d/secret", srv.port);
    s_backend (node, (tr_http_backend_opts_t) { .name = "lost",
                                                .ca_file = "/nonexistent/ca.pem" });
    r = s_get_wait (node, "lost", url);
    ck_assert_int_eq (r->error, TR_EHTTP);
    ck_assert_msg (strstr (r->detail, "TLS: the CA file cannot be used: ") == r->detail
                   && strstr (r->detail, "/nonexistent/ca.pem"), "detail: %s", r->detail);

    //  Changed to the right file, the same backend gets through.
    s_backend (node, (tr_http_backend_opts_t) { .name = "lost", .ca_file = tls.cert });
    r = s_get_wait (node, "lost", url);
    ck_assert_msg (r->error == TR_OK, "%s: %s", tr_errname (r->error), r->detail);
    //  An empty file name is refused.
    ck_assert_int_eq (tr_http_backend_set (node, &(tr_http_backend_opts_t) {
                          .name = "lost", .ca_file = "" }), TR_EINVAL);
    tr_http_stats_t stats;
    ck_assert_int_eq (tr_http_stats (node, "trusting", &stats), TR_OK);
    ck_assert_uint_eq (stats.completed_ok, 2);
    ck_assert_uint_eq (stats.failed, 1);
    tr_node_destroy (&node);
    s_server_stop (&srv);
    tr_test_tls_remove (&tls);
}
END_TEST

//  A listener whose accept queue is full drops new connections' SYNs, so
//  a connect never completes: the connect timeout ends each attempt, and
//  as a connection failure it is retried.
START_TEST (test_connect_timeout)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (bind (fd, (struct sockaddr *) &addr, sizeof addr), 0);
    ck_assert_int_eq (listen (fd, 0), 0);
    socklen_t len = sizeof addr;
    ck_assert_int_eq (getsockname (fd, (struct sockaddr *) &addr, &len), 0);
    int fillers [3];
    for (int i = 0; i < 3; i++) {
        fillers [i] = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        connect (fillers [i], (struct sockaddr *) &addr, sizeof addr);
    }
    usleep (100 * 1000);
    char url [64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/x", ntohs (addr.sin_port));
    tr_node_t *node = s_node ();
    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .connect_timeout_ms = 150,
                                                .timeout_ms = 5000, .max_retries = 1,
                                                .backoff_initial_ms = 10 });
    tr_http_request_t r = { .url = url };
    uint64_t id;
    ck_assert_int_eq (tr_http_submit (node, &r, s_done, NULL, &id), TR_OK);
    s_wait_results (1, 5000);
    s_res_t *res = s_result (id);
    ck_assert_int_eq (res->error, TR_ETIMEDOUT);
    ck_assert_int_eq (res->status, 0);
    ck_assert_int_eq (res->attempts, 2);
    ck_assert_int_ge (res->elapsed_ms, 2 * 145);
    ck_assert_int_lt (res->elapsed_ms, 300 + s_slow (600));
    ck_assert_msg (strstr (res->detail, "no connection within 150 ms") != NULL
                   && strstr (res->detail, "(2 attempts)") != NULL, "detail: %s", res->detail);
    tr_node_destroy (&node);
    for (int i = 0; i < 3; i++)
        close (fillers [i]);
    close (fd);
}
END_TEST

//  Connections are kept alive between requests; past the engine's
//  keep-alive limit (256 attempts running) each extra request takes a
//  connection of its own: 600 at once all run at once and succeed.
//  Sockets in TIME_WAIT toward 127.0.0.1:port (/proc/net/tcp).
static int
s_time_waits (int port)
{
    FILE *f = fopen ("/proc/net/tcp", "r");
    ck_assert_ptr_nonnull (f);
    char line [512];
    int count = 0;
    while (fgets (line, sizeof line, f)) {
        unsigned rport, state;
        if (sscanf (line, " %*d: %*x:%*x %*x:%x %x", &rport, &state) == 2
        &&  (int) rport == port && state == 0x06)
            count++;
    }
    fclose (f);
    return count;
}

static atomic_int s_many_ok;
static atomic_int s_many_done;

static void
s_many_cb (const tr_http_result_t *r, void *arg)
{
    if (r->error == TR_OK && r->status == 200)
        atomic_fetch_add (&s_many_ok, 1);
    atomic_fetch_add (&s_many_done, 1);
}

static bool
s_many_all (void *arg)
{
    return atomic_load (&s_many_done) >= *(int *) arg;
}

START_TEST (test_keep_alive_and_many)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": ["
        "{\"path\": \"/ok\", \"responses\": [{\"json\": 1}]},"
        "{\"path\": \"/slow\", \"responses\": [{\"delay_ms\": 300, \"json\": 1}]}]}");
    tr_node_t *node = s_node ();
    for (int i = 0; i < 5; i++) {
        s_get_path (node, &srv, "/ok");
        s_wait_results ((size_t) i + 1, 5000);
    }
    free (s_control (srv.port, "GET", "/_log", NULL));
    //  Five requests, one connection (plus ours to /_stats and /_log).
    ck_assert_int_eq (s_stat (srv.port, "connections"), 1 + 2);
    free (s_control (srv.port, "POST", "/_reset", NULL));

    s_backend (node, (tr_http_backend_opts_t) { .name = "default", .max_concurrent = 1000 });
    int n = 600;
    atomic_store (&s_many_ok, 0);
    atomic_store (&s_many_done, 0);
    int64_t start = tr_test_now_ms ();
    for (int i = 0; i < n; i++) {
        tr_http_request_t r = { .url = s_at (&srv, "/slow") };
        ck_assert_int_eq (tr_http_submit (node, &r, s_many_cb, NULL, NULL), TR_OK);
    }
    ck_assert (tr_test_wait_until (s_many_all, &n, s_slow (20000)));
    int64_t took = tr_test_now_ms () - start;
    ck_assert_int_eq (atomic_load (&s_many_ok), n);
    ck_assert_int_eq (s_stat (srv.port, "requests"), n);
    //  All at once: the server held (nearly) all of them together.
    ck_assert_int_ge (s_stat (srv.port, "max_in_flight"), n * 9 / 10);
    ck_assert_int_lt (took, s_slow (5000));
    //  The connections closed (used once, or trimmed from libcurl's cache)
    //  were reset, not left in TIME_WAIT.
    ck_assert_int_eq (s_time_waits (srv.port), 0);
    //  Once they are done, the engine still reuses what it kept.
    free (s_control (srv.port, "POST", "/_reset", NULL));
    for (int i = 0; i < 3; i++) {
        s_get_path (node, &srv, "/ok");
        s_wait_results ((size_t) 5 + (size_t) i + 1, 5000);
    }
    ck_assert_int_eq (s_stat (srv.port, "connections"), 1 + 1);   //  and /_stats
    tr_node_destroy (&node);
    //  Nor those kept alive, closed with the node.
    ck_assert_int_eq (s_time_waits (srv.port), 0);
    s_server_stop (&srv);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_http");
    TCase *tc = tcase_create ("engine");
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_success);
    tcase_add_test (tc, test_status_errors);
    tcase_add_test (tc, test_retry_after);
    tcase_add_test (tc, test_retry_then_success);
    tcase_add_test (tc, test_retries_exhausted);
    tcase_add_test (tc, test_hang_timeout);
    tcase_add_test (tc, test_deadline);
    tcase_add_test (tc, test_connection_closed);
    tcase_add_test (tc, test_malformed_passthrough);
    tcase_add_test (tc, test_too_big);
    tcase_add_test (tc, test_concurrency_limit);
    tcase_add_test (tc, test_requests_per_minute);
    tcase_add_test (tc, test_tokens_per_minute);
    tcase_add_test (tc, test_limit_then_nothing);
    tcase_add_test (tc, test_priorities);
    tcase_add_test (tc, test_cache);
    tcase_add_test (tc, test_cache_lru);
    tcase_add_test (tc, test_cancel);
    tcase_add_test (tc, test_callback_reentry);
    tcase_add_test (tc, test_node_destroy);
    tcase_add_test (tc, test_bad_arguments);
    tcase_add_test (tc, test_unused);
    tcase_add_test (tc, test_unknown_backend);
    tcase_add_test (tc, test_connection_refused);
    tcase_add_test (tc, test_connect_timeout);
    tcase_add_test (tc, test_keep_alive_and_many);
    tcase_add_test (tc, test_https);
    suite_add_tcase (s, tc);
    TCase *slow = tcase_create ("windows");
    tcase_set_timeout (slow, 75 + 5 * tr_test_slowdown ());
    tcase_add_test (slow, test_windows_release);
    suite_add_tcase (s, slow);
    return s;
}

TR_TEST_MAIN (s_suite)
