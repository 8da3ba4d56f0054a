/*  tb_llm.c - LLM agents against the local server (tests/tr_http_server.py
    answering every chat completion after DELAY ms).

    usage: tb_llm parallel REPS TASKS DELAY C...
           tb_llm inflight REPS CALLS DELAY [AGENTS [offline]]

    parallel (llm_parallel): the parallel-agents measurement. C agents
    (type "llm", each with its own worker thread asking it) take TASKS
    tasks from one shared counter, one at a time each, until none is
    left; the time from the first ask to the last answer is compared with
    the ideal ceil(TASKS / C) x DELAY. Series per C: troupe_cC (ms) and
    ideal_cC (the ideal, ms); a NOTE per C with the throughput. One
    warm-up round per C first (connections opened, agents started).

    inflight (llm_inflight): CALLS asks in flight at once from one process.
    An asking actor sends CALLS asks with tr_request, spread over AGENTS
    agents (default 4: an agent's own thread takes asks in one at a time,
    about 20 us each), all answered by the server after DELAY ms; the time
    from the first request to the last reply is compared with DELAY, the
    ideal when all are in flight at once. Series: total_ms (troupe),
    ideal_ms (reference), peak_rss_kib and threads (the process's, at the
    peak of the round). The first round opens the connections and is
    reported apart (NOTE); REPS rounds follow. With "offline", the agents
    use the offline backend with DELAY as its latency: no server, no HTTP,
    what troupe's own path costs (series total_ms_offline, ideal_ms_offline).

    Both start the server themselves, from the source tree.
*/

#include "tb_util.h"
#include <troupe/tr_llm.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <limits.h>
#include <unistd.h>

extern char **environ;

//  --------------------------------------------------------------------------
//  The server

typedef struct {
    pid_t pid;
    int in;                             //  its stdin: closing it ends it
    int port;
    char script [64];
    char base [64];                     //  http://127.0.0.1:PORT/v1
} s_server_t;

static void
s_server_start (s_server_t *srv, long delay_ms)
{
    snprintf (srv->script, sizeof srv->script, "/tmp/tb_llm_XXXXXX");
    int fd = mkstemp (srv->script);
    char script [256];
    int len = snprintf (script, sizeof script, "{\"routes\": [{\"method\": \"POST\", "
        "\"path\": \"/v1/chat/completions\", \"responses\": [{\"delay_ms\": %ld, "
        "\"chat\": \"the answer, in a few words\"}]}]}", delay_ms);
    if (fd < 0 || write (fd, script, (size_t) len) != len) {
        fprintf (stderr, "tb_llm: cannot write %s\n", srv->script);
        exit (1);
    }
    close (fd);
    int in [2], out [2];
    if (pipe2 (in, O_CLOEXEC) || pipe2 (out, O_CLOEXEC))
        exit (1);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, in [0], 0);
    posix_spawn_file_actions_adddup2 (&actions, out [1], 1);
    char *argv [] = { "/usr/bin/python3", TROUPE_SOURCE_DIR "/tests/tr_http_server.py",
                      "--script", srv->script, NULL };
    int err = posix_spawn (&srv->pid, argv [0], &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    close (in [0]);
    close (out [1]);
    srv->in = in [1];
    char line [64] = "";
    size_t got = 0;
    while (!err && !strchr (line, '\n') && got < sizeof line - 1) {
        struct pollfd p = { .fd = out [0], .events = POLLIN };
        if (poll (&p, 1, 20000) != 1)
            break;
        ssize_t n = read (out [0], line + got, sizeof line - 1 - got);
        if (n <= 0)
            break;
        got += (size_t) n;
        line [got] = 0;
    }
    close (out [0]);
    int port;
    if (err || sscanf (line, "PORT %d", &port) != 1) {
        fprintf (stderr, "tb_llm: the server did not start\n");
        exit (1);
    }
    srv->port = port;
    snprintf (srv->base, sizeof srv->base, "http://127.0.0.1:%d/v1", port);
}

//  One request to the server's control paths over a plain socket (not
//  through the node's engine, which is what is measured); the answer's
//  body, or "" on failure.
static void
s_server_control (const s_server_t *srv, const char *request, char *buf, size_t size)
{
    buf [0] = 0;
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) srv->port) };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (fd < 0 || connect (fd, (struct sockaddr *) &addr, sizeof addr)) {
        if (fd >= 0)
            close (fd);
        return;
    }
    char req [128];
    int n = snprintf (req, sizeof req, "%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Connection: close\r\nContent-Length: 0\r\n\r\n", request);
    size_t got = 0;
    if (write (fd, req, (size_t) n) == n) {
        ssize_t r;
        while (got < size - 1 && (r = read (fd, buf + got, size - 1 - got)) > 0)
            got += (size_t) r;
    }
    buf [got] = 0;
    close (fd);
}

//  The most requests the server held at once since the last call (it
//  resets the count).
static long
s_server_peak (const s_server_t *srv)
{
    char buf [2048];
    s_server_control (srv, "GET /_stats", buf, sizeof buf);
    const char *at = strstr (buf, "\"max_in_flight\":");
    long peak = at? strtol (at + strlen ("\"max_in_flight\":"), NULL, 10): -1;
    s_server_control (srv, "POST /_reset", buf, sizeof buf);
    return peak;
}

static void
s_server_stop (s_server_t *srv)
{
    close (srv->in);
    waitpid (srv->pid, NULL, 0);
    unlink (srv->script);
}

//  Spawns an agent on the server, on the backend "bench" (no limit on
//  concurrency that the runs could reach, no retries, no cache).
//  base NULL: the offline backend, answering after `latency` ms.
static void
s_agent (tr_node_t *node, const char *name, const char *base, size_t capacity, long latency)
{
    tr_llm_opts_t opts = {
        .base_url = base,
        .offline_latency_ms = base? 0: latency,
        .model = "bench",
        .system = "Answer in a few words.",
        .backend = { .name = "bench", .max_concurrent = 100000, .timeout_ms = 120000,
                     .max_retries = -1 }
    };
    tr_spawn_opts_t spawn = { .capacity = capacity };
    tb_check (tr_llm_spawn (node, name, &opts, &spawn), "tr_llm_spawn");
}

static long
s_status_field (const char *field)
{
    FILE *f = fopen ("/proc/self/status", "r");
    char line [256];
    long value = -1;
    size_t len = strlen (field);
    while (f && fgets (line, sizeof line, f))
        if (strncmp (line, field, len) == 0 && line [len] == ':') {
            value = strtol (line + len + 1, NULL, 10);
            break;
        }
    if (f)
        fclose (f);
    return value;
}

//  --------------------------------------------------------------------------
//  parallel

typedef struct {
    tr_node_t *node;
    char agent [32];
    atomic_long *next;
    long tasks;
    long failed;
} s_worker_t;

static void *
s_worker (void *arg)
{
    s_worker_t *w = (s_worker_t *) arg;
    for (;;) {
        long task = atomic_fetch_add (w->next, 1);
        if (task >= w->tasks)
            break;
        char prompt [64];
        int len = snprintf (prompt, sizeof prompt, "task %ld: say something", task);
        tr_body_t body;
        tr_body_str (&body, prompt, (size_t) len);
        tr_msg_t *reply = NULL;
        int rc = tr_ask (w->node, w->agent, body.data, body.size, 60000, &reply, NULL);
        if (rc) {
            if (w->failed++ < 3)
                fprintf (stderr, "tb_llm: %s: %s\n", w->agent, tr_errname (rc));
        }
        tr_msg_destroy (&reply);
    }
    return NULL;
}

//  One round: c workers share `tasks`; returns milliseconds.
static double
s_parallel_round (tr_node_t *node, long tasks, long c, long *failed)
{
    atomic_long next = 0;
    s_worker_t workers [64];
    pthread_t threads [64];
    int64_t t0 = tb_now_ns ();
    for (long i = 0; i < c; i++) {
        workers [i] = (s_worker_t) { .node = node, .next = &next, .tasks = tasks };
        snprintf (workers [i].agent, sizeof workers [i].agent, "agent%ld", i);
        if (pthread_create (&threads [i], NULL, s_worker, &workers [i]))
            exit (1);
    }
    for (long i = 0; i < c; i++) {
        pthread_join (threads [i], NULL);
        *failed += workers [i].failed;
    }
    return (double) (tb_now_ns () - t0) / 1e6;
}

static int
s_parallel (int argc, char **argv)
{
    long reps = tb_arg (argc, argv, 2, 5);
    long tasks = tb_arg (argc, argv, 3, 32);
    long delay = tb_arg (argc, argv, 4, 100);
    if (argc < 6) {
        fprintf (stderr, "usage: tb_llm parallel REPS TASKS DELAY C...\n");
        return 2;
    }
    s_server_t srv;
    s_server_start (&srv, delay);
    tr_node_t *node;
    tb_check (tr_node_new (NULL, &node), "tr_node_new");
    long spawned = 0;
    for (int a = 5; a < argc; a++) {
        long c = tb_arg (argc, argv, a, 2);
        if (c > 64) {
            fprintf (stderr, "tb_llm: at most 64 agents\n");
            return 2;
        }
        for (; spawned < c; spawned++) {
            char name [32];
            snprintf (name, sizeof name, "agent%ld", spawned);
            s_agent (node, name, srv.base, 0, 0);
        }
        long failed = 0;
        s_parallel_round (node, tasks, c, &failed);        //  warm-up
        double ideal = (double) ((tasks + c - 1) / c) * (double) delay;
        double sum = 0;
        char series [32];
        long peak_min = LONG_MAX;
        for (long r = 0; r < reps; r++) {
            s_server_peak (&srv);
            double ms = s_parallel_round (node, tasks, c, &failed);
            long peak = s_server_peak (&srv);
            if (peak < peak_min)
                peak_min = peak;
            sum += ms;
            snprintf (series, sizeof series, "troupe_c%ld", c);
            tb_sample ("llm_parallel", series, ms);
            snprintf (series, sizeof series, "ideal_c%ld", c);
            tb_sample ("llm_parallel", series, ideal);
            fprintf (stderr, "llm_parallel: c=%ld: %ld tasks in %.1f ms (ideal %.0f ms, %.3f)\n",
                     c, tasks, ms, ideal, ms / ideal);
        }
        double mean = sum / (double) reps;
        printf ("NOTE llm_parallel c=%ld: %.1f tasks/s on average over %ld rounds "
                "(ideal %.1f tasks/s); the server held %ld requests at once in every round; "
                "%ld failed asks\n", c, (double) tasks * 1000.0 / mean, reps,
                (double) tasks * 1000.0 / ideal, peak_min, failed);
        fflush (stdout);
        if (failed) {
            fprintf (stderr, "tb_llm: %ld asks failed\n", failed);
            return 1;
        }
    }
    tr_node_destroy (&node);
    s_server_stop (&srv);
    return 0;
}

//  --------------------------------------------------------------------------
//  inflight

typedef struct {
    long calls;
    long agents;
    atomic_long answered;
    atomic_long failed;
    atomic_llong last_ns;
    pthread_mutex_t lock;
    pthread_cond_t done;
} s_round_t;

static s_round_t s_round = {
    .lock = PTHREAD_MUTEX_INITIALIZER, .done = PTHREAD_COND_INITIALIZER
};

//  The asking actor: on a tell "go", sends every request; counts replies.
static int
s_asker_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    tr_node_t *node = tr_actor_node (self);
    int kind = tr_msg_kind (msg);
    if (kind == TR_KIND_TELL) {
        for (long i = 0; i < s_round.calls; i++) {
            char prompt [64], agent [32];
            int len = snprintf (prompt, sizeof prompt, "call %ld: say something", i);
            snprintf (agent, sizeof agent, "agent%ld", i % s_round.agents);
            tr_body_t body;
            tr_body_str (&body, prompt, (size_t) len);
            uint64_t id;
            int rc = tr_request (node, agent, body.data, body.size, 120000, &id, NULL);
            if (rc) {
                fprintf (stderr, "tb_llm: tr_request: %s\n", tr_errname (rc));
                exit (1);
            }
        }
        return 0;
    }
    if (kind == TR_KIND_ERROR && atomic_fetch_add (&s_round.failed, 1) < 3)
        fprintf (stderr, "tb_llm: an ask failed: %s\n", tr_errname (tr_msg_error (msg)));
    if (atomic_fetch_add (&s_round.answered, 1) + 1 == s_round.calls) {
        atomic_store (&s_round.last_ns, tb_now_ns ());
        pthread_mutex_lock (&s_round.lock);
        pthread_cond_signal (&s_round.done);
        pthread_mutex_unlock (&s_round.lock);
    }
    return 0;
}

//  One round: returns milliseconds; *threads_p the most threads seen.
static double
s_inflight_round (tr_node_t *node, long *threads_p)
{
    atomic_store (&s_round.answered, 0);
    int64_t t0 = tb_now_ns ();
    tr_body_t go;
    tr_body_str (&go, "go", 2);
    tb_check (tr_tell (node, "asker", go.data, go.size, NULL), "tell asker");
    pthread_mutex_lock (&s_round.lock);
    while (atomic_load (&s_round.answered) < s_round.calls) {
        struct timespec ts;
        clock_gettime (CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait (&s_round.done, &s_round.lock, &ts);
        long threads = s_status_field ("Threads");
        if (threads > *threads_p)
            *threads_p = threads;
    }
    pthread_mutex_unlock (&s_round.lock);
    return (double) (atomic_load (&s_round.last_ns) - t0) / 1e6;
}

static int
s_inflight (int argc, char **argv)
{
    long reps = tb_arg (argc, argv, 2, 5);
    s_round.calls = tb_arg (argc, argv, 3, 10000);
    long delay = tb_arg (argc, argv, 4, 100);
    s_round.agents = tb_arg (argc, argv, 5, 4);
    //  "offline": the same asks answered by the offline backend after the
    //  delay, without HTTP: what troupe's own path costs.
    bool offline = argc > 6 && strcmp (argv [6], "offline") == 0;
    //  One descriptor per connection, and some.
    struct rlimit rl;
    getrlimit (RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit (RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && (long) rl.rlim_cur < s_round.calls + 200) {
        fprintf (stderr, "tb_llm: the descriptor limit (%ld) is below %ld\n",
                 (long) rl.rlim_cur, s_round.calls + 200);
        return 1;
    }
    s_server_t srv = { .pid = 0 };
    if (!offline)
        s_server_start (&srv, delay);
    tr_node_t *node;
    tb_check (tr_node_new (NULL, &node), "tr_node_new");
    for (long i = 0; i < s_round.agents; i++) {
        char name [32];
        snprintf (name, sizeof name, "agent%ld", i);
        s_agent (node, name, offline? NULL: srv.base, (size_t) s_round.calls + 16, delay);
    }
    tr_behaviour_t asker = { .handle = s_asker_handle };
    tr_spawn_opts_t big = { .capacity = (size_t) s_round.calls + 16 };
    tb_check (tr_spawn (node, "asker", &asker, NULL, &big, NULL), "spawn asker");
    long threads = 0, peak_min = LONG_MAX;
    //  Series named after a delay other than the benchmark's 100 ms.
    char total_series [32] = "total_ms", ideal_series [32] = "ideal_ms";
    if (delay != 100) {
        snprintf (total_series, sizeof total_series, "total_ms_d%ld", delay);
        snprintf (ideal_series, sizeof ideal_series, "ideal_ms_d%ld", delay);
    }
    if (offline) {
        snprintf (total_series, sizeof total_series, "total_ms_offline");
        snprintf (ideal_series, sizeof ideal_series, "ideal_ms_offline");
    }
    const char *what = offline? "offline": "delay";
    if (!offline)
        s_server_peak (&srv);
    for (long r = 0; r <= reps; r++) {
        long threads_round = 0;
        double ms = s_inflight_round (node, &threads_round);
        if (threads_round > threads)
            threads = threads_round;
        long peak = offline? s_round.calls: s_server_peak (&srv);
        if (peak < peak_min)
            peak_min = peak;
        fprintf (stderr, "llm_inflight: round %ld: %ld calls in %.1f ms (%.2f x %ld ms), "
                 "%ld threads, server peak in flight %ld, %ld failed\n", r, s_round.calls, ms,
                 ms / (double) delay, delay, threads_round, peak, atomic_load (&s_round.failed));
        if (r == 0) {
            printf ("NOTE llm_inflight %s %ld ms: first round: %ld "
                    "calls in %.0f ms (%.2f x the ideal)\n", what, delay, s_round.calls, ms,
                    ms / (double) delay);
            continue;
        }
        tb_sample ("llm_inflight", total_series, ms);
        tb_sample ("llm_inflight", ideal_series, (double) delay);
    }
    if (delay == 100 && !offline)
        tb_sample ("llm_inflight", "peak_rss_kib", (double) s_status_field ("VmHWM"));
    if (offline)
        printf ("NOTE llm_inflight offline %ld ms: peak resident memory %ld KiB\n", delay,
                s_status_field ("VmHWM"));
    else
        printf ("NOTE llm_inflight delay %ld ms: the server held at least %ld requests at "
                "once in every round (its own count)\n", delay, peak_min);
    printf ("NOTE llm_inflight %s %ld ms: threads at the peak: %ld (%ld agents, the asker, "
            "the HTTP engine or the offline delay threads, the node's services); %ld asks "
            "failed\n", what, delay, threads, s_round.agents,
            atomic_load (&s_round.failed));
    int64_t prompt = 0, completion = 0, v;
    for (long i = 0; i < s_round.agents; i++) {
        char name [32];
        snprintf (name, sizeof name, "agent%ld", i);
        if (tr_actor_info_get (node, name, "llm.prompt_tokens", &v) == TR_OK)
            prompt += v;
        if (tr_actor_info_get (node, name, "llm.completion_tokens", &v) == TR_OK)
            completion += v;
    }
    printf ("NOTE llm_inflight %s %ld ms: tokens counted from usage: %lld prompt, "
            "%lld completion\n", what, delay, (long long) prompt, (long long) completion);
    fflush (stdout);
    tr_node_destroy (&node);
    if (!offline)
        s_server_stop (&srv);
    //  Where the CPU went: this process (agents, engine) and the server.
    struct rusage self, server;
    getrusage (RUSAGE_SELF, &self);
    getrusage (RUSAGE_CHILDREN, &server);
    printf ("NOTE llm_inflight %s %ld ms: CPU over all %ld rounds: this process %.2f s user + %.2f s "
            "system, the Python server %.2f s user + %.2f s system\n", what, delay, reps + 1,
            (double) self.ru_utime.tv_sec + self.ru_utime.tv_usec / 1e6,
            (double) self.ru_stime.tv_sec + self.ru_stime.tv_usec / 1e6,
            (double) server.ru_utime.tv_sec + server.ru_utime.tv_usec / 1e6,
            (double) server.ru_stime.tv_sec + server.ru_stime.tv_usec / 1e6);
    fflush (stdout);
    return atomic_load (&s_round.failed)? 1: 0;
}

int
main (int argc, char **argv)
{
    if (argc >= 2 && strcmp (argv [1], "parallel") == 0)
        return s_parallel (argc, argv);
    if (argc >= 2 && strcmp (argv [1], "inflight") == 0)
        return s_inflight (argc, argv);
    fprintf (stderr, "usage: tb_llm parallel REPS TASKS DELAY C...\n"
                     "       tb_llm inflight REPS CALLS DELAY [AGENTS [offline]]\n");
    return 2;
}
