/*  tb_http.c - the HTTP engine alone (runtime/tr_http.c): N requests in
    flight at once from one process against tests/tr_http_server.py
    answering each in D ms (an OpenAI-style chat completion), as a
    measure of what the engine adds to the ideal D.

    Usage: tb_http [N [D [ROUNDS]]]     (defaults 10000, 100, 3)

    Each round submits N POSTs at once (no limit on concurrency) and
    waits for the last answer. Samples per round: total milliseconds,
    total over D (the ratio to the ideal), the server's most requests in
    flight at once, failures. Once: peak resident memory (MiB) and the
    process's threads while the requests were in flight. The first round
    opens N connections; later ones reuse those libcurl kept alive.

    TB_HTTP_PORT=P in the environment uses a server already listening on
    127.0.0.1:P (its script must answer POST /v1/chat/completions), for
    instance one run under a profiler.

    Not in bench/run (the LLM-level benchmarks there belong to the
    agents); run it by hand from a build with -DTROUPE_BENCH=ON.
*/

#include "tb_util.h"
#include <troupe/tr_http.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_cond = PTHREAD_COND_INITIALIZER;
static long s_done_count;
static long s_failed;
static int64_t s_last_ns;

static void
s_done (const tr_http_result_t *r, void *arg)
{
    pthread_mutex_lock (&s_lock);
    s_done_count++;
    if (r->error) {
        if (s_failed++ < 3)
            fprintf (stderr, "tb_http: %s: %s\n", tr_errname (r->error), r->detail);
    }
    s_last_ns = tb_now_ns ();
    pthread_cond_signal (&s_cond);
    pthread_mutex_unlock (&s_lock);
}

//  Starts the server; returns its port, its pid and our end of its stdin.
static int
s_server (const char *script_path, pid_t *pid_p, int *stdin_p)
{
    int in [2], out [2];
    if (pipe2 (in, O_CLOEXEC) || pipe2 (out, O_CLOEXEC))
        return -1;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, in [0], 0);
    posix_spawn_file_actions_adddup2 (&actions, out [1], 1);
    char *argv [] = { "/usr/bin/python3", TROUPE_SOURCE_DIR "/tests/tr_http_server.py",
                      "--script", (char *) script_path, NULL };
    int err = posix_spawn (pid_p, argv [0], &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    close (in [0]);
    close (out [1]);
    if (err)
        return -1;
    *stdin_p = in [1];
    char line [64] = "";
    size_t len = 0;
    while (!strchr (line, '\n') && len < sizeof line - 1) {
        struct pollfd p = { .fd = out [0], .events = POLLIN };
        if (poll (&p, 1, 20000) != 1)
            return -1;
        ssize_t n = read (out [0], line + len, sizeof line - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t) n;
        line [len] = 0;
    }
    close (out [0]);
    int port;
    return sscanf (line, "PORT %d", &port) == 1? port: -1;
}

//  The server's "max_in_flight" after a /_reset-free round (read and reset).
static long
s_server_max_in_flight (int port)
{
    long value = -1;
    const char *paths [] = { "GET /_stats", "POST /_reset" };
    for (int i = 0; i < 2; i++) {
        int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
        addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        if (connect (fd, (struct sockaddr *) &addr, sizeof addr)) {
            close (fd);
            return -1;
        }
        char req [128];
        int n = snprintf (req, sizeof req, "%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          "Content-Length: 0\r\n\r\n", paths [i]);
        if (write (fd, req, (size_t) n) != n) {
            close (fd);
            return -1;
        }
        char buf [2048];
        size_t got = 0;
        ssize_t r;
        while (got < sizeof buf - 1 && (r = read (fd, buf + got, sizeof buf - 1 - got)) > 0)
            got += (size_t) r;
        buf [got] = 0;
        close (fd);
        char *at = strstr (buf, "\"max_in_flight\": ");
        if (i == 0 && at)
            value = strtol (at + strlen ("\"max_in_flight\": "), NULL, 10);
    }
    return value;
}

static int
s_threads (void)
{
    FILE *f = fopen ("/proc/self/status", "r");
    char line [256];
    int threads = -1;
    while (f && fgets (line, sizeof line, f))
        if (sscanf (line, "Threads: %d", &threads) == 1)
            break;
    if (f)
        fclose (f);
    return threads;
}

int
main (int argc, char **argv)
{
    long n = tb_arg (argc, argv, 1, 10000);
    long delay = tb_arg (argc, argv, 2, 100);
    long rounds = tb_arg (argc, argv, 3, 3);
    //  127.0.0.1 directly, never through a proxy from the environment.
    unsetenv ("http_proxy");
    unsetenv ("HTTP_PROXY");
    unsetenv ("all_proxy");
    unsetenv ("ALL_PROXY");
    //  One descriptor per connection.
    struct rlimit rl;
    getrlimit (RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit (RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && (long) rl.rlim_cur < n + 100) {
        fprintf (stderr, "tb_http: the descriptor limit (%ld) is below %ld\n",
                 (long) rl.rlim_cur, n + 100);
        return 1;
    }
    char script_path [] = "/tmp/tb_http_XXXXXX";
    int fd = mkstemp (script_path);
    char script [256];
    int len = snprintf (script, sizeof script, "{\"routes\": [{\"method\": \"POST\", "
        "\"path\": \"/v1/chat/completions\", \"responses\": [{\"delay_ms\": %ld, "
        "\"chat\": \"the answer\"}]}]}", delay);
    if (fd < 0 || write (fd, script, (size_t) len) != len)
        return 1;
    close (fd);
    pid_t pid = 0;
    int server_in = -1;
    int port = getenv ("TB_HTTP_PORT")? atoi (getenv ("TB_HTTP_PORT")):
               s_server (script_path, &pid, &server_in);
    if (port <= 0) {
        fprintf (stderr, "tb_http: the server did not start\n");
        return 1;
    }
    tr_node_t *node;
    tb_check (tr_node_new (NULL, &node), "tr_node_new");
    tr_http_backend_opts_t opts = { .name = "default", .max_concurrent = (int) n,
                                    .timeout_ms = 120000, .max_retries = -1 };
    tb_check (tr_http_backend_set (node, &opts), "tr_http_backend_set");
    char url [128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", port);
    const char *headers [] = { "Content-Type: application/json", NULL };
    const char *body = "{\"model\": \"bench\", \"messages\": [{\"role\": \"user\", "
                       "\"content\": \"what is the answer\"}]}";
    int threads_max = 0;
    for (long round = 0; round < rounds; round++) {
        pthread_mutex_lock (&s_lock);
        s_done_count = s_failed = 0;
        pthread_mutex_unlock (&s_lock);
        int64_t start = tb_now_ns ();
        for (long i = 0; i < n; i++) {
            tr_http_request_t r = { .url = url, .headers = headers, .body = body,
                                    .body_size = strlen (body) };
            tb_check (tr_http_submit (node, &r, s_done, NULL, NULL), "tr_http_submit");
        }
        int64_t submitted = tb_now_ns ();
        int threads = s_threads ();
        if (threads > threads_max)
            threads_max = threads;
        pthread_mutex_lock (&s_lock);
        while (s_done_count < n)
            pthread_cond_wait (&s_cond, &s_lock);
        double total_ms = (double) (s_last_ns - start) / 1e6;
        long failed = s_failed;
        pthread_mutex_unlock (&s_lock);
        long peak = s_server_max_in_flight (port);
        fprintf (stderr, "tb_http: round %ld: %ld requests, submitted in %.1f ms, all answered "
                 "in %.1f ms (%.2f x %ld ms), server peak in flight %ld, failed %ld\n",
                 round + 1, n, (double) (submitted - start) / 1e6, total_ms,
                 total_ms / (double) delay, delay, peak, failed);
        tb_sample ("http_inflight", round == 0? "total_ms_cold": "total_ms_warm", total_ms);
        tb_sample ("http_inflight", round == 0? "ratio_cold": "ratio_warm",
                   total_ms / (double) delay);
        tb_sample ("http_inflight", "server_peak_in_flight", (double) peak);
        tb_sample ("http_inflight", "failed", (double) failed);
    }
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    fprintf (stderr, "tb_http: peak RSS %.1f MiB, threads while in flight %d, CPU user %.2f s "
             "system %.2f s\n", (double) ru.ru_maxrss / 1024.0, threads_max,
             (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
             (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    tb_sample ("http_inflight", "peak_rss_mib", (double) ru.ru_maxrss / 1024.0);
    tb_sample ("http_inflight", "threads", threads_max);
    tr_node_destroy (&node);
    if (pid) {
        close (server_in);
        waitpid (pid, NULL, 0);
    }
    unlink (script_path);
    return 0;
}
