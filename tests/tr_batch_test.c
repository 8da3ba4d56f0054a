/*  tr_batch_test.c - tests of the batch (actors/tr_batch.c), started from
    tree files.

    The summary in task order; the concurrency limit, counted by the
    member itself, never exceeded and actually reached, over one run,
    two runs at once, and a run with a lower limit of its own; retries
    against the built-in flaky actor and against a member that fails a
    task a given number of times, with the backoff measured between
    attempts; errors that are not retried, attempts that time out, the
    ask's deadline; results streamed to results_to and as batch.result
    events before the summary (measured); the batch's own tasks run by
    "run", and tells; progress in both forms (the rendering, the bar
    as a status line that log lines scroll above, plain lines at a
    bounded rate, and a real pseudo-terminal picking the bar); bad
    parameters and bad messages with their exact messages.
*/

#include "tr_test.h"
#include "tr_test_tree.h"
#include "tr_internal.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  --------------------------------------------------------------------------
//  The worker: a member that counts its concurrent calls.
//
//  A task is a map {id: N, ms: M, fail: K, invalid: true}: the worker
//  answers N after M ms (holding the call: it defers the ask and answers
//  from a timer), fails the first K attempts of task N at once
//  (TR_EHANDLER), and answers TR_EINVAL for `invalid`. It counts the
//  calls it holds (s_current, the most at once in s_most) and when each
//  attempt of each task came.

#define S_IDS       256
#define S_SLOTS     1024
#define S_ATTEMPTS  8

static atomic_int s_current;
static atomic_int s_most;
static atomic_int s_calls;
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static int s_attempts [S_IDS];
static int64_t s_attempt_ms [S_IDS][S_ATTEMPTS];

typedef struct {
    tr_msg_t *held [S_SLOTS];
    uint64_t ids [S_SLOTS];
} s_worker_t;

//  The msgpack bytes of `field` in a map body (actors/tr_compose.h).
int
    tr__body_field (const void *body, size_t size, const char *field,
                    const uint8_t **value, size_t *value_size);

static uint64_t
s_field_uint (const tr_msg_t *msg, const char *field, uint64_t otherwise)
{
    const uint8_t *value;
    size_t size;
    uint64_t v;
    if (tr__body_field (tr_msg_body (msg), tr_msg_size (msg), field, &value, &size) != 0)
        return otherwise;
    tr__mp_t mp;
    tr__mp_init (&mp, value, size);
    return tr__mp_uint (&mp, &v) == 0? v: otherwise;
}

static int
s_worker_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self; (void) arg;
    *state_p = calloc (1, sizeof (s_worker_t));
    return 0;
}

static void
s_worker_answer (s_worker_t *w, size_t slot)
{
    tr_body_t body;
    tr_body_uint (&body, w->ids [slot]);
    atomic_fetch_sub (&s_current, 1);
    ck_assert_int_eq (tr_reply (w->held [slot], body.data, body.size), TR_OK);
    tr_msg_destroy (&w->held [slot]);
}

static int
s_worker_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_worker_t *w = (s_worker_t *) state;
    uint64_t slot;
    if (tr_msg_kind (msg) == TR_KIND_TELL && tr_msg_from (msg) [0] == '\0'
    &&  tr_msg_uint (msg, &slot) == TR_OK && slot < S_SLOTS && w->held [slot]) {
        s_worker_answer (w, (size_t) slot);
        return 0;
    }
    if (tr_msg_kind (msg) != TR_KIND_ASK)
        return 0;
    uint64_t id = s_field_uint (msg, "id", 0);
    uint64_t ms = s_field_uint (msg, "ms", 0);
    uint64_t fail = s_field_uint (msg, "fail", 0);
    ck_assert (id < S_IDS);
    pthread_mutex_lock (&s_lock);
    int attempt = s_attempts [id]++;
    if (attempt < S_ATTEMPTS)
        s_attempt_ms [id][attempt] = tr_test_now_ms ();
    pthread_mutex_unlock (&s_lock);
    atomic_fetch_add (&s_calls, 1);
    int now = atomic_fetch_add (&s_current, 1) + 1;
    int most = atomic_load (&s_most);
    while (now > most && !atomic_compare_exchange_weak (&s_most, &most, now))
        ;
    const uint8_t *invalid;
    size_t size;
    if (tr__body_field (tr_msg_body (msg), tr_msg_size (msg), "invalid", &invalid, &size) == 0) {
        atomic_fetch_sub (&s_current, 1);
        return tr_reply_error (msg, TR_EINVAL);
    }
    if ((uint64_t) attempt < fail) {
        atomic_fetch_sub (&s_current, 1);
        return tr_reply_error (msg, TR_EHANDLER);
    }
    for (slot = 0; slot < S_SLOTS && w->held [slot]; slot++)
        ;
    ck_assert (slot < S_SLOTS);
    w->held [slot] = tr_defer (msg);
    w->ids [slot] = id;
    if (ms == 0) {
        s_worker_answer (w, (size_t) slot);
        return 0;
    }
    tr_body_t tick;
    tr_body_uint (&tick, slot);
    ck_assert_int_eq (tr_timer_after (tr_actor_node (self), tr_actor_name (self), (int) ms,
                                      tick.data, tick.size, NULL), TR_OK);
    return 0;
}

static void
s_worker_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_worker_t *w = (s_worker_t *) state;
    for (size_t i = 0; i < S_SLOTS; i++)
        tr_msg_destroy (&w->held [i]);
    free (w);
}

static const tr_actor_type_t s_worker_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "worker",
    .summary = "answers tasks after a while, counting its concurrent calls (batch tests)",
    .behaviour = { s_worker_init, s_worker_handle, s_worker_terminate },
};

//  The recorder: keeps each message as a line of JSON, and when it came.
#define S_LINES 512
static char *s_lines [S_LINES];
static int64_t s_line_ms [S_LINES];
static size_t s_line_count;

static int
s_recorder_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    char *json = NULL;
    size_t len = 0;
    ck_assert_int_eq (tr__json_from_msgpack (tr_msg_body (msg), tr_msg_size (msg), &json, &len), 0);
    pthread_mutex_lock (&s_lock);
    if (s_line_count < S_LINES) {
        s_line_ms [s_line_count] = tr_test_now_ms ();
        s_lines [s_line_count++] = json;
        json = NULL;
    }
    pthread_mutex_unlock (&s_lock);
    free (json);
    return 0;
}

static const tr_actor_type_t s_recorder_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "recorder",
    .summary = "records what it gets (batch tests)",
    .behaviour = { .handle = s_recorder_handle },
};

//  --------------------------------------------------------------------------
//  Helpers

static void
s_setup (void)
{
    atomic_store (&s_current, 0);
    atomic_store (&s_most, 0);
    atomic_store (&s_calls, 0);
    memset (s_attempts, 0, sizeof s_attempts);
    s_line_count = 0;
    tr_test_setup (&s_node, (const tr_actor_type_t *[]) { &s_worker_type, &s_recorder_type,
                                                          NULL });
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
    for (size_t i = 0; i < s_line_count; i++)
        free (s_lines [i]);
    s_line_count = 0;
}

static void
s_start (const char *yaml)
{
    tr_test_tree_start (s_node, yaml, "batch.yaml", &s_tree, &s_sup);
}

static int
s_ask (const char *to, const char *json, char **answer)
{
    return tr_test_ask_jj (s_node, to, json, 10000 * tr_test_slowdown (), answer);
}

//  A list of n worker tasks, each {id: first + i, ms: ms}.
static char *
s_tasks (int n, int first, int ms)
{
    size_t size = (size_t) n * 40 + 4;
    char *json = (char *) malloc (size);
    size_t used = (size_t) snprintf (json, size, "[");
    for (int i = 0; i < n; i++)
        used += (size_t) snprintf (json + used, size - used, "%s{\"id\": %d, \"ms\": %d}",
                                   i? ", ": "", first + i, ms);
    snprintf (json + used, size - used, "]");
    return json;
}

//  Waits until the recorder holds `count` lines.
static void
s_wait_lines (size_t count)
{
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    for (;;) {
        pthread_mutex_lock (&s_lock);
        size_t n = s_line_count;
        pthread_mutex_unlock (&s_lock);
        if (n >= count || tr_test_now_ms () >= deadline)
            break;
        usleep (1000);
    }
    pthread_mutex_lock (&s_lock);
    ck_assert_uint_ge (s_line_count, count);
    pthread_mutex_unlock (&s_lock);
}

//  Standard error into a new temporary file, until s_stderr_end, which
//  returns what was written (malloc'd).
static int s_saved_stderr = -1;
static char s_capture [64];

static void
s_stderr_begin (void)
{
    snprintf (s_capture, sizeof s_capture, "/tmp/tr_batch_test.XXXXXX");
    int fd = mkstemp (s_capture);
    ck_assert_int_ge (fd, 0);
    s_saved_stderr = dup (STDERR_FILENO);
    ck_assert_int_ge (s_saved_stderr, 0);
    ck_assert_int_eq (dup2 (fd, STDERR_FILENO), STDERR_FILENO);
    close (fd);
}

static char *
s_stderr_end (void)
{
    ck_assert_int_eq (dup2 (s_saved_stderr, STDERR_FILENO), STDERR_FILENO);
    close (s_saved_stderr);
    s_saved_stderr = -1;
    char *text = tr_test_read_file (s_capture, NULL);
    unlink (s_capture);
    return text;
}

//  Checks that *p is a line "HH:MM:SS.mmm" + text, and moves past it.
static void
s_skip_line (const char **p, const char *text)
{
    ck_assert_msg (strlen (*p) >= 12 && (*p) [2] == ':' && (*p) [8] == '.'
                   && strncmp (*p + 12, text, strlen (text)) == 0,
                   "expected the line '%s', found '%s'", text, *p);
    *p += 12 + strlen (text);
}

static size_t
s_count (const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr (text, needle); p; p = strstr (p + 1, needle))
        n++;
    return n;
}

//  --------------------------------------------------------------------------

START_TEST (test_summary_in_task_order)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: b, actor: batch, params: {member: w, concurrency: 3, progress: off}}\n");
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("b", "[{\"id\": 0, \"ms\": 150}, {\"id\": 1, \"ms\": 10}, "
                                  "{\"id\": 2, \"ms\": 60}]", &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"total\":3,\"done\":3,\"failed\":0,\"retried\":0,"
                              "\"results\":[0,1,2],\"errors\":[]}");
    free (answer);
    //  An empty list is a run too, done at once.
    ck_assert_int_eq (s_ask ("b", "[]", &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"total\":0,\"done\":0,\"failed\":0,\"retried\":0,"
                              "\"results\":[],\"errors\":[]}");
    free (answer);
    ck_assert_int_eq (tr_test_info (s_node, "b", "batch.completed"), 2);
    ck_assert_int_eq (tr_test_info (s_node, "b", "batch.done"), 3);
    ck_assert_int_eq (tr_test_info (s_node, "b", "batch.running"), 0);
}
END_TEST

START_TEST (test_concurrency_limit)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: b, actor: batch, params: {member: w, concurrency: 4, progress: off}}\n");
    //  One run of 24 tasks of 80 ms: the worker never holds more than 4,
    //  and does hold 4.
    char *tasks = s_tasks (24, 0, 80);
    char *answer = NULL;
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("b", tasks, &answer), TR_OK);
    int64_t took = tr_test_now_ms () - start;
    free (tasks);
    ck_assert_msg (strstr (answer, "\"total\":24,\"done\":24,\"failed\":0"), "%s", answer);
    free (answer);
    ck_assert_int_eq (atomic_load (&s_most), 4);
    ck_assert_int_eq (atomic_load (&s_calls), 24);
    //  Six rounds of 80 ms, not 24 in a row.
    ck_assert_msg (took >= 6 * 80 - 10 && took < 24 * 80 * tr_test_slowdown (),
                   "24 tasks in %lld ms", (long long) took);
    //  Two runs at once share the batch's limit.
    atomic_store (&s_most, 0);
    char *runs [2] = { s_tasks (12, 100, 40), s_tasks (12, 200, 40) };
    tr_test_asker_t askers [2];
    for (int i = 0; i < 2; i++)
        tr_test_asker_start (&askers [i], s_node, "b", runs [i], 10000 * tr_test_slowdown (), 0);
    for (int i = 0; i < 2; i++) {
        tr_test_asker_join (&askers [i]);
        ck_assert_int_eq (askers [i].rc, TR_OK);
        ck_assert_msg (strstr (askers [i].answer, "\"total\":12,\"done\":12"), "%s",
                       askers [i].answer);
        free (askers [i].answer);
        free (runs [i]);
    }
    ck_assert_int_eq (atomic_load (&s_most), 4);
    //  A run with a lower limit of its own.
    atomic_store (&s_most, 0);
    char *inner = s_tasks (10, 50, 30);
    char json [1024];
    snprintf (json, sizeof json, "{\"tasks\": %s, \"concurrency\": 2}", inner);
    free (inner);
    ck_assert_int_eq (s_ask ("b", json, &answer), TR_OK);
    ck_assert_msg (strstr (answer, "\"total\":10,\"done\":10"), "%s", answer);
    free (answer);
    ck_assert_int_eq (atomic_load (&s_most), 2);
    ck_assert_int_eq (tr_test_info (s_node, "b", "batch.inflight"), 0);
}
END_TEST

START_TEST (test_retries_with_flaky)
{
    //  The built-in flaky actor fails every third message it handles (and
    //  is restarted by its supervisor each time): with retries every task
    //  succeeds, and the summary counts one retry per failure.
    s_start (TR_TEST_LENIENT
             "  - {name: f, actor: flaky, params: {fail_every: 3}}\n"
             "  - {name: b, actor: batch, params: {member: f, concurrency: 1, retries: 3, "
             "backoff: 1ms, progress: off}}\n"
             "  - {name: f2, actor: flaky}\n"
             "  - {name: stubborn, actor: batch, params: {member: f2, retries: 2, backoff: 50ms, "
             "progress: off}}\n");
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("b", "[\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\"]",
                             &answer), TR_OK);
    tr_actor_stats_t st;
    ck_assert_int_eq (tr_actor_stats (s_node, "f", &st), TR_OK);
    ck_assert_uint_eq (st.failed, 3);       //  messages 3, 6 and 9 of 11 (8 + 3 retries)
    ck_assert_str_eq (answer, "{\"total\":8,\"done\":8,\"failed\":0,\"retried\":3,\"results\":"
                              "[\"ok\",\"ok\",\"ok\",\"ok\",\"ok\",\"ok\",\"ok\",\"ok\"],"
                              "\"errors\":[]}");
    free (answer);
    ck_assert_int_eq (tr_test_info (s_node, "b", "batch.retried"), 3);
    //  A task that always fails is given up after 1 + retries attempts,
    //  after backoffs of 50 and 100 ms; the others are done.
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("stubborn", "[\"x\", \"fail\", \"y\"]", &answer), TR_OK);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_str_eq (answer, "{\"total\":3,\"done\":2,\"failed\":1,\"retried\":2,\"results\":"
                              "[\"ok\",null,\"ok\"],\"errors\":[{\"index\":1,\"error\":"
                              "\"TR_EHANDLER\",\"attempts\":3}]}");
    free (answer);
    ck_assert_msg (took >= 150, "3 attempts with backoffs of 50 and 100 ms in %lld ms",
                   (long long) took);
}
END_TEST

START_TEST (test_backoff_measured)
{
    //  Task 0 fails twice: its attempts are 100 ms then 200 ms apart;
    //  task 1 never fails: one attempt. backoff_max caps the doubling.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: b, actor: batch, params: {member: w, retries: 4, backoff: 100ms, "
             "backoff_max: 150ms, progress: off}}\n");
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("b", "[{\"id\": 0, \"fail\": 3}, {\"id\": 1}]", &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"total\":2,\"done\":2,\"failed\":0,\"retried\":3,"
                              "\"results\":[0,1],\"errors\":[]}");
    free (answer);
    pthread_mutex_lock (&s_lock);
    ck_assert_int_eq (s_attempts [0], 4);
    ck_assert_int_eq (s_attempts [1], 1);
    int64_t gaps [3];
    for (int i = 0; i < 3; i++)
        gaps [i] = s_attempt_ms [0][i + 1] - s_attempt_ms [0][i];
    pthread_mutex_unlock (&s_lock);
    ck_assert_msg (gaps [0] >= 95 && gaps [1] >= 145 && gaps [2] >= 145,
                   "gaps %lld, %lld, %lld ms", (long long) gaps [0], (long long) gaps [1],
                   (long long) gaps [2]);
    ck_assert_msg (gaps [1] < 195 * tr_test_slowdown () && gaps [2] < 195 * tr_test_slowdown (),
                   "backoff_max not kept: gaps %lld, %lld ms", (long long) gaps [1],
                   (long long) gaps [2]);
}
END_TEST

START_TEST (test_failures)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: b, actor: batch, params: {member: w, retries: 2, backoff: 1ms, "
             "timeout: 100ms, progress: off}}\n"
             "  - {name: lost, actor: batch, params: {member: nobody, retries: 1, backoff: 1ms, "
             "progress: off}}\n");
    //  TR_EINVAL is the task's own fault: not tried again. An attempt
    //  that takes past `timeout` times out, each time.
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("b", "[{\"id\": 0, \"invalid\": true}, {\"id\": 1, \"ms\": 400}, "
                                  "{\"id\": 2}]", &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"total\":3,\"done\":1,\"failed\":2,\"retried\":2,"
                              "\"results\":[null,null,2],\"errors\":["
                              "{\"index\":0,\"error\":\"TR_EINVAL\",\"attempts\":1},"
                              "{\"index\":1,\"error\":\"TR_ETIMEDOUT\",\"attempts\":3}]}");
    free (answer);
    //  A member that does not exist.
    ck_assert_int_eq (s_ask ("lost", "[1]", &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"total\":1,\"done\":0,\"failed\":1,\"retried\":1,"
                              "\"results\":[null],\"errors\":[{\"index\":0,\"error\":"
                              "\"TR_ENOACTOR\",\"attempts\":2}]}");
    free (answer);
}
END_TEST

START_TEST (test_ask_deadline)
{
    //  Ten tasks of 300 ms one at a time need 3 s; the ask allows 1.15 s:
    //  the summary still comes in time, with the tasks that had no time
    //  left failed TR_ETIMEDOUT: at most one cut short 50 ms before the
    //  deadline (one attempt), the others never sent (no attempt).
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: b, actor: batch, params: {member: w, concurrency: 1, progress: off}}\n");
    char *tasks = s_tasks (10, 0, 300 * tr_test_slowdown ());
    char *answer = NULL;
    ck_assert_int_eq (tr_test_ask_jj (s_node, "b", tasks, 1150 * tr_test_slowdown (), &answer),
                      TR_OK);
    free (tasks);
    int done = -1, failed = -1;
    ck_assert_msg (sscanf (answer, "{\"total\":10,\"done\":%d,\"failed\":%d,\"retried\":0,",
                           &done, &failed) == 2, "%s", answer);
    int cut = (int) s_count (answer, "\"error\":\"TR_ETIMEDOUT\",\"attempts\":1}");
    int unsent = (int) s_count (answer, "\"error\":\"TR_ETIMEDOUT\",\"attempts\":0}");
    ck_assert_msg (done >= 1 && done <= 4 && done + failed == 10 && cut <= 1
                   && cut + unsent == failed && unsent >= 5, "%s", answer);
    free (answer);
    //  The member saw the tasks done and the one cut short, no more.
    ck_assert_int_eq (atomic_load (&s_calls), done + cut);
}
END_TEST

START_TEST (test_results_stream)
{
    //  Tasks of 600, 50 and 200 ms at once: each result reaches results_to
    //  and the bus as it completes (50, then 200, then 600 ms), well
    //  before the summary.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: got, actor: recorder}\n"
             "  - {name: bus, actor: recorder}\n"
             "  - {name: b, actor: batch, params: {member: w, progress: off}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "batch.", "bus"), TR_OK);
    char *answer = NULL;
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("b", "{\"tasks\": [{\"id\": 0, \"ms\": 600}, {\"id\": 1, \"ms\": 50}, "
                                  "{\"id\": 2, \"ms\": 200}], \"results_to\": \"got\"}", &answer),
                      TR_OK);
    int64_t summary_ms = tr_test_now_ms ();
    ck_assert_str_eq (answer, "{\"total\":3,\"done\":3,\"failed\":0,\"retried\":0,"
                              "\"results\":[0,1,2],\"errors\":[]}");
    free (answer);
    s_wait_lines (7);       //  3 results to got, 3 batch.result and batch.completed to bus
    pthread_mutex_lock (&s_lock);
    //  results_to: in completion order, each a while before the summary.
    const char *expect [] = {
        "{\"batch\":\"b\",\"run\":1,\"index\":1,\"ok\":true,\"answer\":1,\"attempts\":1}",
        "{\"batch\":\"b\",\"run\":1,\"index\":2,\"ok\":true,\"answer\":2,\"attempts\":1}",
        "{\"batch\":\"b\",\"run\":1,\"index\":0,\"ok\":true,\"answer\":0,\"attempts\":1}"
    };
    size_t got = 0, bus = 0;
    int64_t first_ms = 0;
    for (size_t i = 0; i < s_line_count; i++) {
        if (s_lines [i][0] == '{') {
            ck_assert_uint_lt (got, 3);
            ck_assert_str_eq (s_lines [i], expect [got]);
            if (got++ == 0)
                first_ms = s_line_ms [i];
        }
        else {
            char event [200];
            if (bus < 3) {
                snprintf (event, sizeof event, "[\"batch.result\",%s]", expect [bus]);
                ck_assert_str_eq (s_lines [i], event);
            }
            else
                ck_assert_msg (strncmp (s_lines [i], "[\"batch.completed\",{\"batch\":\"b\","
                                        "\"run\":1,\"total\":3,\"done\":3,\"failed\":0,"
                                        "\"retried\":0,\"elapsed_ms\":", 91) == 0, "%s",
                               s_lines [i]);
            bus++;
        }
    }
    pthread_mutex_unlock (&s_lock);
    ck_assert_uint_eq (got, 3);
    ck_assert_uint_eq (bus, 4);
    ck_assert_msg (first_ms - start < 300 * tr_test_slowdown () && summary_ms - first_ms >= 400,
                   "first result after %lld ms, summary %lld ms later",
                   (long long) (first_ms - start), (long long) (summary_ms - first_ms));
}
END_TEST

START_TEST (test_run_own_tasks_and_tells)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: got, actor: recorder}\n"
             "  - name: b\n"
             "    actor: batch\n"
             "    params:\n"
             "      member: w\n"
             "      results_to: got\n"
             "      publish: false\n"
             "      progress: off\n"
             "      tasks: [{id: 7}, {id: 8, ms: 20}]\n");
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("b", "\"run\"", &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"total\":2,\"done\":2,\"failed\":0,\"retried\":0,"
                              "\"results\":[7,8],\"errors\":[]}");
    free (answer);
    //  A told run streams its results too (its summary goes nowhere).
    char *body = NULL;
    size_t size = 0;
    ck_assert_int_eq (tr__json_parse ("[{\"id\": 9}]", 11, &body, &size, NULL), 0);
    ck_assert_int_eq (tr_tell (s_node, "b", body, size, NULL), TR_OK);
    free (body);
    s_wait_lines (3);
    pthread_mutex_lock (&s_lock);
    ck_assert_str_eq (s_lines [2], "{\"batch\":\"b\",\"run\":2,\"index\":0,\"ok\":true,"
                                   "\"answer\":9,\"attempts\":1}");
    pthread_mutex_unlock (&s_lock);
}
END_TEST

START_TEST (test_progress_render)
{
    tr__batch_progress_t p = { .name = "jobs", .total = 100, .done = 45, .failed = 2,
                               .retried = 3, .elapsed_ms = 4000 };
    char buf [300];
    tr__batch_progress_render (&p, true, buf, sizeof buf);
    ck_assert_str_eq (buf, "batch jobs [#########...........] 47/100  45 done  2 failed  "
                           "11.8/s  ETA 5s");
    tr__batch_progress_render (&p, false, buf, sizeof buf);
    ck_assert_str_eq (buf, "batch 'jobs': 47/100 (45 done, 2 failed, 3 retried) in 4.0s, "
                           "11.8/s, ETA 5s");
    p.done = 1;
    p.failed = 0;
    p.elapsed_ms = 10000;
    tr__batch_progress_render (&p, true, buf, sizeof buf);
    ck_assert_str_eq (buf, "batch jobs [....................] 1/100  1 done  0 failed  "
                           "0.1/s  ETA 16m30s");
    p.done = 0;
    tr__batch_progress_render (&p, false, buf, sizeof buf);
    ck_assert_str_eq (buf, "batch 'jobs': 0/100 (0 done, 0 failed, 3 retried) in 10.0s, "
                           "0.0/s, ETA ?");
    p = (tr__batch_progress_t) { .name = "jobs", .total = 100, .done = 98, .failed = 2,
                                 .retried = 3, .elapsed_ms = 8000, .final = true };
    //  The last word is a plain line in both forms.
    tr__batch_progress_render (&p, true, buf, sizeof buf);
    ck_assert_str_eq (buf, "batch 'jobs': 100/100 (98 done, 2 failed, 3 retried) in 8.0s, "
                           "12.5/s");
    //  Written: on a terminal the bar is the status line ("\r", erase to
    //  the end of the line), a log line erases it, goes above it, and
    //  draws it again; the last line erases it for good. Not on a
    //  terminal: plain lines, no carriage return.
    s_stderr_begin ();
    p = (tr__batch_progress_t) { .name = "jobs", .total = 100, .done = 45, .failed = 2,
                                 .retried = 3, .elapsed_ms = 4000 };
    int owner;
    tr__batch_progress_write (&owner, &p, true);
    tr_log (TR_LOG_ERROR, "a log line");
    p.done = 98;
    p.final = true;
    tr__batch_progress_write (&owner, &p, true);
    tr_log (TR_LOG_ERROR, "after");
    char *tty = s_stderr_end ();
    const char *bar = "batch jobs [#########...........] 47/100  45 done  2 failed  11.8/s  ETA 5s";
    char expect [600];
    snprintf (expect, sizeof expect, "\r\033[K%s\r\033[K", bar);
    ck_assert_msg (strncmp (tty, expect, strlen (expect)) == 0, "%s", tty);
    const char *log = tty + strlen (expect);
    s_skip_line (&log, " E troupe: a log line\n");
    snprintf (expect, sizeof expect, "%s\r\033[K", bar);
    ck_assert_msg (strncmp (log, expect, strlen (expect)) == 0, "%s", log);
    log += strlen (expect);
    s_skip_line (&log, " P troupe: batch 'jobs': 100/100 (98 done, 2 failed, 3 retried) in "
                       "4.0s, 25.0/s\n");
    s_skip_line (&log, " E troupe: after\n");
    ck_assert_str_eq (log, "");
    free (tty);
    s_stderr_begin ();
    p.done = 45;
    p.final = false;
    tr__batch_progress_write (&owner, &p, false);
    tr_log (TR_LOG_ERROR, "a log line");
    char *plain = s_stderr_end ();
    ck_assert_ptr_null (strchr (plain, '\r'));
    ck_assert_ptr_null (strchr (plain, '\033'));
    const char *line = plain;
    s_skip_line (&line, " P troupe: batch 'jobs': 47/100 (45 done, 2 failed, 3 retried) in "
                        "4.0s, 11.8/s, ETA 5s\n");
    s_skip_line (&line, " E troupe: a log line\n");
    ck_assert_str_eq (line, "");
    free (plain);
}
END_TEST

START_TEST (test_progress_written)
{
    //  A run of about 600 ms, shown as plain lines every 100 ms (and a
    //  last one), then as a bar; standard error goes to a file.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: lines, actor: batch, params: {member: w, concurrency: 2, "
             "progress: lines, progress_every: 100ms}}\n"
             "  - {name: bar, actor: batch, params: {member: w, concurrency: 2, "
             "progress: bar}}\n");
    char *tasks = s_tasks (20, 0, 60);
    s_stderr_begin ();
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("lines", tasks, NULL), TR_OK);
    int64_t took = tr_test_now_ms () - start;
    char *text = s_stderr_end ();
    size_t lines = s_count (text, "\n");
    ck_assert_ptr_null (strchr (text, '\r'));
    ck_assert_msg (lines >= 3 && (int64_t) lines <= took / 100 + 2, "%zu lines in %lld ms:\n%s",
                   lines, (long long) took, text);
    ck_assert_int_eq ((int) s_count (text, " P troupe: batch 'lines': "), (int) lines);
    ck_assert_msg (strstr (text, "batch 'lines': 20/20 (20 done, 0 failed, 0 retried) in "),
                   "%s", text);
    free (text);
    s_stderr_begin ();
    start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("bar", tasks, NULL), TR_OK);
    took = tr_test_now_ms () - start;
    text = s_stderr_end ();
    free (tasks);
    //  Redrawn in place, at most every 100 ms, then erased for the last line.
    size_t draws = s_count (text, "\r\033[Kbatch bar [");
    ck_assert_msg (draws >= 2 && (int64_t) draws <= took / 100 + 2, "%zu draws in %lld ms", draws,
                   (long long) took);
    ck_assert_int_eq ((int) s_count (text, "\n"), 1);
    ck_assert_msg (strstr (text, "\r\033[K") && strstr (text, "batch 'bar': 20/20 (20 done, 0 "
                                                           "failed, 0 retried)"), "%s", text);
    free (text);
}
END_TEST

START_TEST (test_progress_auto_on_a_terminal)
{
    //  progress: auto (the default) picks the bar when standard error is
    //  a terminal: a real pseudo-terminal here, read from its other side.
    int master = posix_openpt (O_RDWR | O_NOCTTY);
    ck_assert_int_ge (master, 0);
    ck_assert_int_eq (grantpt (master), 0);
    ck_assert_int_eq (unlockpt (master), 0);
    int slave = open (ptsname (master), O_RDWR | O_NOCTTY);
    ck_assert_int_ge (slave, 0);
    int saved = dup (STDERR_FILENO);
    ck_assert_int_eq (dup2 (slave, STDERR_FILENO), STDERR_FILENO);
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: auto, actor: batch, params: {member: w}}\n");
    char *tasks = s_tasks (6, 0, 60);
    ck_assert_int_eq (s_ask ("auto", tasks, NULL), TR_OK);
    free (tasks);
    dup2 (saved, STDERR_FILENO);
    close (saved);
    close (slave);
    char text [8192];
    size_t used = 0;
    struct pollfd pfd = { .fd = master, .events = POLLIN };
    while (used < sizeof text - 1 && poll (&pfd, 1, 200) > 0) {
        ssize_t n = read (master, text + used, sizeof text - 1 - used);
        if (n <= 0)
            break;
        used += (size_t) n;
    }
    text [used] = '\0';
    close (master);
    ck_assert_msg (strstr (text, "\r\033[Kbatch auto ["), "%s", text);
    ck_assert_msg (strstr (text, "batch 'auto': 6/6 (6 done, 0 failed, 0 retried)"), "%s", text);
    //  And not on a terminal, plain lines.
    tr_test_tree_stop (&s_tree, &s_sup);
    s_stderr_begin ();
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: auto, actor: batch, params: {member: w}}\n");
    ck_assert_int_eq (s_ask ("auto", "[{\"id\": 1}]", NULL), TR_OK);
    char *plain = s_stderr_end ();
    ck_assert_ptr_null (strchr (plain, '\r'));
    ck_assert_msg (strstr (plain, " P troupe: batch 'auto': 1/1 (1 done"), "%s", plain);
    free (plain);
}
END_TEST

static void
s_expect_error (const char *params, const char *expect)
{
    tr_test_expect_params_error (s_node, "batch.yaml", "name: t\n"
                                 "children:\n"
                                 "  - name: b\n"
                                 "    actor: batch\n", params, expect, TR_TEST_WHOLE);
}

START_TEST (test_bad_params)
{
    s_expect_error ("{concurrency: 2}",
                    "batch.yaml:5:13: missing parameter 'member' of actor type 'batch' (a string: "
                    "the actor each task is asked to (an agent, a pool...))");
    s_expect_error ("{member: w, tasks: 3}",
                    "batch.yaml:5:32: parameter 'tasks' of actor type 'batch' must be a "
                    "sequence, not '3'");
    s_expect_error ("{member: 'a b'}",
                    "batch.yaml:5:22: b: 'member' is not a valid actor name: 'a b'");
    s_expect_error ("{member: w, concurrency: 0}",
                    "batch.yaml:5:38: b: 'concurrency' must be from 1 to 10000, not 0");
    s_expect_error ("{member: w, retries: 101}",
                    "batch.yaml:5:34: b: 'retries' must be from 0 to 100, not 101");
    s_expect_error ("{member: w, backoff: 2s, backoff_max: 1s}",
                    "batch.yaml:5:51: b: 'backoff_max' (1000 ms) is shorter than 'backoff' "
                    "(2000 ms)");
    s_expect_error ("{member: w, progress: fancy}",
                    "batch.yaml:5:35: b: 'progress' must be one of auto, bar, lines, off, not "
                    "'fancy'");
    s_expect_error ("{member: w, progress_every: 1ms}",
                    "batch.yaml:5:41: b: 'progress_every' must be from 10 ms to 2147483647 ms, "
                    "not 1 ms");
    s_expect_error ("{member: w, timeout: 0}",
                    "batch.yaml:5:34: b: 'timeout' must be from 1 ms to 2147483647 ms, not 0 ms");
    s_expect_error ("{member: w, results_to: ''}",
                    "batch.yaml:5:37: b: 'results_to' must be a non-empty string without NUL "
                    "bytes");
    //  From C, checked when it starts.
    const tr_actor_type_t *type = tr_actor_type_find ("batch");
    ck_assert_ptr_nonnull (type);
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, NULL, NULL, NULL), TR_EINIT);
    static const uint8_t good [] = { 0x82, 0xa6, 'm', 'e', 'm', 'b', 'e', 'r', 0xa1, 'w',
                                     0xa8, 'p', 'r', 'o', 'g', 'r', 'e', 's', 's', 0xa3,
                                     'o', 'f', 'f' };
    tr_params_t params = { good, sizeof good };
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_OK);
}
END_TEST

START_TEST (test_bad_messages)
{
    //  Each refused TR_EINVAL, with the log saying what was wrong.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: b, actor: batch, params: {member: w, progress: off}}\n");
    struct { const char *body, *why; } cases [] = {
        { "42", "batch 'b': a batch takes a list of tasks, a mapping {tasks: [...], "
                "concurrency, retries, timeout, results_to}, or \"run\" for its own tasks" },
        { "\"go\"", "batch 'b': a batch takes a list of tasks" },
        { "\"run\"", "batch 'b': \"run\" runs the batch's own 'tasks', and it has none" },
        { "{\"tasks\": 3}", "batch 'b': 'tasks' must be a list, not an integer" },
        { "{\"concurrency\": 1}", "batch 'b': the message needs 'tasks', the list of tasks" },
        { "{\"tasks\": [], \"concurrency\": 9}",
          "batch 'b': 'concurrency' must be from 1 to 4, not 9" },
        { "{\"tasks\": [], \"nope\": 1}", "batch 'b': unknown key 'nope' in the message; "
                                        "expected one of: tasks, concurrency, retries, "
                                        "timeout, results_to" },
        { "{\"tasks\": [], \"results_to\": \"a b\"}",
          "batch 'b': 'results_to' is not a valid actor name: 'a b'" },
        { "{\"tasks\": [], \"timeout\": \"soon\"}",
          "batch 'b': 'timeout' must be a duration such as 250ms, 1.5s or 2m, not 'soon'" },
        { "{\"tasks\": [], \"retries\": -1}", "batch 'b': 'retries' must be from 0 to 100, not -1" },
    };
    tr_log_set_level (TR_LOG_WARN);
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        s_stderr_begin ();
        int rc = s_ask ("b", cases [i].body, NULL);
        char *log = s_stderr_end ();
        ck_assert_msg (rc == TR_EINVAL, "%s: %s", cases [i].body, tr_errname (rc));
        ck_assert_msg (strstr (log, cases [i].why) && strstr (log, " (an ask from '')\n"),
                       "%s: the log says '%s'", cases [i].body, log);
        free (log);
    }
    tr_log_set_level (TR_LOG_ERROR);
    ck_assert_int_eq (tr_test_info (s_node, "b", "batch.refused"), 10);
    ck_assert_int_eq (atomic_load (&s_calls), 0);
    //  Nothing is lost: the batch still works.
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("b", "{\"tasks\": [{\"id\": 3}], \"retries\": 1, \"timeout\": \"1s\"}",
                             &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"total\":1,\"done\":1,\"failed\":0,\"retried\":0,"
                              "\"results\":[3],\"errors\":[]}");
    free (answer);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_batch");
    TCase *tc = tcase_create ("batch");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_summary_in_task_order);
    tcase_add_test (tc, test_concurrency_limit);
    tcase_add_test (tc, test_retries_with_flaky);
    tcase_add_test (tc, test_backoff_measured);
    tcase_add_test (tc, test_failures);
    tcase_add_test (tc, test_ask_deadline);
    tcase_add_test (tc, test_results_stream);
    tcase_add_test (tc, test_run_own_tasks_and_tells);
    tcase_add_test (tc, test_progress_render);
    tcase_add_test (tc, test_progress_written);
    tcase_add_test (tc, test_progress_auto_on_a_terminal);
    tcase_add_test (tc, test_bad_params);
    tcase_add_test (tc, test_bad_messages);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
