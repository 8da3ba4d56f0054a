/*  tr_batch.c - the batch: N tasks against one member, with a concurrency
    limit and retries, results streamed as they complete.

    A batch is asked (or told) a list of tasks; each task is a message
    body that goes as it is to `member` (an actor name: an agent, a pool,
    an actor on another node). The bodies it takes:
        [TASK, ...]                       the tasks, with the batch's settings
        {tasks: [TASK, ...], concurrency: N, retries: N, timeout: DURATION,
         results_to: NAME}                the same, with settings for this
                                          run (concurrency at most the
                                          batch's own)
        "run"                             the batch's own `tasks` parameter
    Anything else is refused TR_EINVAL, and the log says what was wrong.

    At most `concurrency` tasks are in flight at once over all the runs
    of the batch (runs are served in the order they came; a run with a
    lower limit of its own leaves the rest to the runs after it). A task
    that fails (an error, no answer within `timeout`, a member that
    cannot be reached) is tried again up to `retries` times, after a
    backoff that doubles from `backoff` up to `backoff_max`; waiting for
    its retry it holds no slot, and when it is due it goes before tasks
    never tried. TR_EINVAL, TR_EMALFORMED, TR_ETOOBIG and TR_EDEPTH are
    the task's own fault and are not tried again. The ask's own deadline
    bounds every attempt, less S_MARGIN_MS kept for the summary to reach
    the asker in time: a task that has no time left fails TR_ETIMEDOUT,
    unsent, and so does a retry that would come too late.

    Results stream as tasks complete: each is told to `results_to` (if
    set) and published as the event `batch.result` (unless `publish:
    false`):
        {batch: NAME, run: ID, index: I (from 0, in the list), ok: true,
         answer: VALUE, attempts: N}
        {batch: NAME, run: ID, index: I, ok: false, error: "TR_...", attempts: N}
    When the last task has completed, the asker gets the summary
        {total, done, failed, retried, results: [VALUE or nil, in task
         order], errors: [{index, error, attempts}, ...]}
    and `batch.completed` {batch, run, total, done, failed, retried,
    elapsed_ms} is published.

    Progress on standard error (`progress`): on a terminal a bar that
    redraws in place (at most 10 times a second) as the status line of
    tr_log.c, which log lines scroll above instead of running into; not
    on a terminal, plain lines at most one per `progress_every`, never a
    carriage return; either way a last line when the run ends.
    tr__batch_progress_render makes both forms.

    The batch never waits on its thread: tasks are asked with tr_request
    and a timer each, backoffs and progress are timer messages.
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mp.h"
#include "tr_u64map.h"
#include "troupe/tr_body.h"
#include "troupe/tr_event.h"
#include "troupe/tr_timer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_TASKS_MAX         100000      //  tasks in one run
#define S_CONCURRENCY_MAX   10000
#define S_RETRIES_MAX       100
#define S_BAR_MS            100         //  a bar redraws at most this often
#define S_MARGIN_MS         50          //  kept before the ask's deadline for the summary
#define S_PRIVATE_IDS       (UINT64_C (1) << 62)    //  tick ids not from tr_request

typedef enum { S_AUTO, S_BAR, S_LINES, S_OFF } s_progress_t;
typedef enum { S_PENDING, S_INFLIGHT, S_BACKOFF, S_DONE, S_FAILED } s_state_t;

typedef struct s_run_s s_run_t;

typedef struct {
    s_run_t *run;
    uint32_t offset;                //  the task's body in run->tasks_data
    uint32_t size;
    int state;                      //  s_state_t
    int attempts;
    int error;                      //  the last failure
    uint64_t wait;                  //  the request's id, or the backoff's tick id
    uint64_t timer;
    tr__value_t answer;             //  none for an empty answer
} s_task_t;

struct s_run_s {
    s_run_t *next;
    uint64_t id;
    tr_msg_t *ask;                  //  deferred, or NULL for a tell
    uint8_t *tasks_data;            //  the list of tasks (msgpack), owned
    s_task_t *tasks;
    size_t count;
    size_t next_fresh;              //  the first task never sent
    uint32_t *ready;                //  ring of tasks due for a retry
    size_t ready_head, ready_len;
    size_t inflight;
    size_t limit;
    int64_t retries;
    int64_t timeout_ms;
    char *results_to;               //  or NULL
    size_t done, failed, retried;
    int64_t start_ns;
    uint64_t progress_id;           //  its progress tick, or 0
    uint64_t progress_timer;
    bool changed;                   //  since the last progress line
};

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    char *member;
    int64_t concurrency;
    int64_t retries;
    int64_t backoff_ms;
    int64_t backoff_max_ms;
    int64_t timeout_ms;
    char *results_to;
    bool publish;
    int progress;                   //  s_progress_t; S_AUTO resolved at start
    int64_t progress_every_ms;
    uint8_t *tasks;                 //  the `tasks` parameter (msgpack list), or NULL
    size_t tasks_size;
    s_run_t *runs, *runs_tail;
    size_t running;
    size_t inflight;
    uint64_t next_run;
    uint64_t next_private;
    tr__u64map_t waits;             //  request and backoff ids -> s_task_t
} s_batch_t;

static const tr_param_spec_t s_batch_params [] = {
    { "member", TR_PARAM_STRING, true, "the actor each task is asked to (an agent, a pool...)" },
    { "concurrency", TR_PARAM_INT, false, "tasks in flight at most, over all runs (default 4)" },
    { "retries", TR_PARAM_INT, false, "further attempts of a task that failed (default 0)" },
    { "backoff", TR_PARAM_DURATION, false, "wait before the first retry, doubled each time "
                                           "(default 100ms)" },
    { "backoff_max", TR_PARAM_DURATION, false, "longest wait before a retry (default 5s)" },
    { "timeout", TR_PARAM_DURATION, false, "how long one attempt of a task gets (default 30s)" },
    { "results_to", TR_PARAM_STRING, false, "an actor told each result as it completes" },
    { "publish", TR_PARAM_BOOL, false, "publish each result as batch.result (default true)" },
    { "progress", TR_PARAM_STRING, false, "auto (default: a bar on a terminal, lines "
                                          "otherwise), bar, lines or off" },
    { "progress_every", TR_PARAM_DURATION, false, "time between progress lines when not on a "
                                                  "terminal (default 2s)" },
    { "tasks", TR_PARAM_LIST, false, "the tasks a \"run\" message runs" },
    { .key = NULL }
};

static const char *const s_usage = "a batch takes a list of tasks, a mapping {tasks: [...], "
                                   "concurrency, retries, timeout, results_to}, or \"run\" "
                                   "for its own tasks";

//  --------------------------------------------------------------------------
//  Progress

//  The progress of a run as text: on a terminal (tty) the bar, without
//  "\r" or escapes (the status line adds them); otherwise, or for the
//  last line of a run, a plain line without its newline. Writes at most
//  size - 1 bytes and a NUL into buf; returns the length.
size_t
tr__batch_progress_render (const tr__batch_progress_t *p, bool tty, char *buf, size_t size)
{
    size_t finished = p->done + p->failed;
    double seconds = p->elapsed_ms > 0? (double) p->elapsed_ms / 1000.0: 0.0;
    double rate = seconds > 0? (double) finished / seconds: 0.0;
    char eta [32] = "?";
    if (finished > 0 && rate > 0) {
        long left = (long) ((double) (p->total - finished) / rate + 0.5);
        if (left < 60)
            snprintf (eta, sizeof eta, "%lds", left);
        else
        if (left < 3600)
            snprintf (eta, sizeof eta, "%ldm%02lds", left / 60, left % 60);
        else
            snprintf (eta, sizeof eta, "%ldh%02ldm", left / 3600, left / 60 % 60);
    }
    int n;
    if (tty && !p->final) {
        char bar [21];
        size_t filled = p->total? finished * 20 / p->total: 20;
        for (size_t i = 0; i < 20; i++)
            bar [i] = i < filled? '#': '.';
        bar [20] = '\0';
        n = snprintf (buf, size, "batch %.24s [%s] %zu/%zu  %zu done  %zu failed  %.1f/s  ETA %s",
                      p->name, bar, finished, p->total, p->done, p->failed, rate, eta);
    }
    else
        n = snprintf (buf, size, "batch '%.100s': %zu/%zu (%zu done, %zu failed, %zu retried) "
                      "in %.1fs, %.1f/s%s%s", p->name, finished, p->total, p->done, p->failed,
                      p->retried, seconds, rate, p->final? "": ", ETA ", p->final? "": eta);
    if (n < 0)
        n = 0;
    return (size_t) n < size? (size_t) n: size - 1;
}

//  Shows a run's progress: the bar as the status line (tty, not final),
//  or a plain line after a timestamp, written as log lines are (erasing
//  owner's bar first when final).
void
tr__batch_progress_write (const void *owner, const tr__batch_progress_t *p, bool tty)
{
    char text [TR__LOG_STATUS_MAX + 256];
    if (tty && !p->final) {
        size_t n = tr__batch_progress_render (p, true, text, TR__LOG_STATUS_MAX);
        tr__log_status (owner, text, n);
        return;
    }
    if (tty)
        tr__log_status (owner, NULL, 0);
    struct timespec ts;
    struct tm tm;
    clock_gettime (CLOCK_REALTIME, &ts);
    localtime_r (&ts.tv_sec, &tm);
    int n = snprintf (text, 64, "%02d:%02d:%02d.%03ld P troupe: ", tm.tm_hour, tm.tm_min,
                      tm.tm_sec, ts.tv_nsec / 1000000);
    size_t len = (size_t) n;
    len += tr__batch_progress_render (p, false, text + len, sizeof text - len - 1);
    text [len++] = '\n';
    tr__log_write (text, len);
}

static void
s_progress (s_batch_t *batch, s_run_t *run, bool final)
{
    if (batch->progress == S_OFF || run->count == 0)
        return;
    tr__batch_progress_t p = {
        .name = tr_actor_name (batch->self), .total = run->count, .done = run->done,
        .failed = run->failed, .retried = run->retried, .final = final,
        .elapsed_ms = (tr__now_ns () - run->start_ns) / 1000000
    };
    tr__batch_progress_write (run, &p, batch->progress == S_BAR);
    run->changed = false;
}

//  --------------------------------------------------------------------------
//  Settings

static void
s_batch_free (s_batch_t *batch)
{
    if (!batch)
        return;
    free (batch->member);
    free (batch->results_to);
    free (batch->tasks);
    tr__u64map_clear (&batch->waits);
    free (batch);
}

//  Checks a list of tasks (msgpack bytes) and, if tasks is not NULL,
//  finds each one's place in it. Returns the count, or -1 (*why set).
static int64_t
s_tasks_scan (const uint8_t *data, size_t size, s_task_t *tasks, const char **why)
{
    tr__mp_t mp;
    uint32_t count;
    tr__mp_init (&mp, data, size);
    if (!data || tr__mp_array (&mp, &count) != 0) {
        *why = "the tasks must be a list";
        return -1;
    }
    if (count > S_TASKS_MAX) {
        *why = "too many tasks (at most 100000 in one run)";
        return -1;
    }
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *start = mp.p;
        if (tr__mp_skip (&mp, TR_BODY_MAX_DEPTH) != 0) {
            *why = "malformed list of tasks";
            return -1;
        }
        if (tasks) {
            tasks [i].offset = (uint32_t) (start - data);
            tasks [i].size = (uint32_t) (mp.p - start);
        }
    }
    return count;
}

static int
s_batch_configure (s_batch_t *batch, tr__cfg_t *cfg)
{
    static const char *const progress [] = { "auto", "bar", "lines", "off", NULL };
    batch->concurrency = 4;
    batch->backoff_ms = 100;
    batch->backoff_max_ms = 5000;
    batch->timeout_ms = 30000;
    batch->publish = true;
    batch->progress_every_ms = 2000;
    if (tr__cfg_name_in (cfg, NULL, "member", "member", &batch->member)
    ||  tr__cfg_int (cfg, "concurrency", 1, S_CONCURRENCY_MAX, &batch->concurrency)
    ||  tr__cfg_int (cfg, "retries", 0, S_RETRIES_MAX, &batch->retries)
    ||  tr__cfg_duration (cfg, "backoff", 0, INT32_MAX, &batch->backoff_ms)
    ||  tr__cfg_duration (cfg, "backoff_max", 0, INT32_MAX, &batch->backoff_max_ms)
    ||  tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &batch->timeout_ms)
    ||  tr__cfg_name_in (cfg, NULL, "results_to", "results_to", &batch->results_to)
    ||  tr__cfg_bool (cfg, "publish", &batch->publish)
    ||  tr__cfg_choice (cfg, "progress", progress, &batch->progress)
    ||  tr__cfg_duration (cfg, "progress_every", 10, INT32_MAX, &batch->progress_every_ms))
        return -1;
    if (!batch->member)
        return tr__cfg_bad (cfg, "'member' is required: the actor the tasks are asked to");
    if (batch->backoff_max_ms < batch->backoff_ms)
        return tr__cfg_bad_at (cfg, "backoff_max", "'backoff_max' (%lld ms) is shorter than "
                               "'backoff' (%lld ms)", (long long) batch->backoff_max_ms,
                               (long long) batch->backoff_ms);
    const msgpack_object *tasks = tr__cfg_get (cfg, NULL, "tasks");
    if (!tasks)
        return 0;
    if (tasks->type != MSGPACK_OBJECT_ARRAY)
        return tr__cfg_bad_at (cfg, "tasks", "'tasks' must be a list, not %s",
                               tr__cfg_kind (tasks));
    if (tasks->via.array.size > S_TASKS_MAX)
        return tr__cfg_bad_at (cfg, "tasks", "'tasks' holds %u tasks; at most %d",
                               tasks->via.array.size, S_TASKS_MAX);
    //  Kept as msgpack bytes, as a run's tasks are.
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    if (msgpack_pack_object (&pk, *tasks)) {
        msgpack_sbuffer_destroy (&buffer);
        return tr__cfg_bad (cfg, "out of memory");
    }
    batch->tasks = (uint8_t *) buffer.data;
    batch->tasks_size = buffer.size;
    return 0;
}

static int
s_batch_configure_any (void *batch, tr__cfg_t *cfg)
{
    return s_batch_configure ((s_batch_t *) batch, cfg);
}

static void
s_batch_free_any (void *batch)
{
    s_batch_free ((s_batch_t *) batch);
}

//  The tree loader's check: the same reading as init's, with positions.
static int
s_batch_check (const tr_params_t *params, tr_param_error_t *error)
{
    return tr__cfg_check ("batch", params, sizeof (s_batch_t), s_batch_configure_any,
                          s_batch_free_any, error);
}

static int
s_batch_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_batch_t *batch = (s_batch_t *) calloc (1, sizeof *batch);
    int rc = tr__cfg_open (&cfg, "batch", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !batch)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_batch_configure (batch, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_batch_free (batch);
        return -1;
    }
    tr__cfg_close (&cfg);
    batch->self = self;
    batch->node = tr_actor_node (self);
    batch->next_private = S_PRIVATE_IDS;
    if (batch->progress == S_AUTO)
        batch->progress = isatty (STDERR_FILENO)? S_BAR: S_LINES;
    *state_p = batch;
    return 0;
}

//  --------------------------------------------------------------------------
//  Runs

static void
s_info (s_batch_t *batch)
{
    tr_actor_info_set (batch->self, "batch.running", (int64_t) batch->running);
    tr_actor_info_set (batch->self, "batch.inflight", (int64_t) batch->inflight);
}

static void
s_run_free (s_run_t *run)
{
    if (!run)
        return;
    for (size_t i = 0; run->tasks && i < run->count; i++)
        tr__value_free (&run->tasks [i].answer);
    free (run->tasks);
    free (run->ready);
    free (run->tasks_data);
    free (run->results_to);
    tr_msg_destroy (&run->ask);         //  unanswered: the asker gets TR_ENOREPLY
    free (run);
}

//  Tells results_to and publishes batch.result: the result of task i.
static void
s_stream (s_batch_t *batch, s_run_t *run, size_t i)
{
    const s_task_t *task = &run->tasks [i];
    const char *to = run->results_to? run->results_to: batch->results_to;
    if (!to && !batch->publish)
        return;
    bool ok = task->state == S_DONE;
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 6);
    tr__pack_str (&pk, "batch");
    tr__pack_str (&pk, tr_actor_name (batch->self));
    tr__pack_str (&pk, "run");
    msgpack_pack_uint64 (&pk, run->id);
    tr__pack_str (&pk, "index");
    msgpack_pack_uint64 (&pk, i);
    tr__pack_str (&pk, "ok");
    if (ok)
        msgpack_pack_true (&pk);
    else
        msgpack_pack_false (&pk);
    if (ok) {
        tr__pack_str (&pk, "answer");
        tr__value_pack (&pk, &task->answer);
    }
    else {
        tr__pack_str (&pk, "error");
        tr__pack_str (&pk, tr_errname (task->error));
    }
    tr__pack_str (&pk, "attempts");
    msgpack_pack_int (&pk, task->attempts);
    if (to) {
        int rc = tr_tell (batch->node, to, buffer.data, buffer.size, NULL);
        if (rc != TR_OK) {
            tr_log (TR_LOG_WARN, "batch '%s': the result of task %zu of run %llu did not reach "
                    "'%s': %s", tr_actor_name (batch->self), i, (unsigned long long) run->id, to,
                    tr_strerror (rc));
            tr_actor_info_add (batch->self, "batch.undelivered", 1);
        }
    }
    if (batch->publish) {
        int rc = tr_event_publish (batch->node, "batch.result", buffer.data, buffer.size, NULL);
        if (rc != TR_OK)
            tr_log (TR_LOG_WARN, "batch '%s': batch.result of task %zu: %s",
                    tr_actor_name (batch->self), i, tr_strerror (rc));
    }
    msgpack_sbuffer_destroy (&buffer);
}

//  The pairs total, done, failed and retried of a map about the run.
static void
s_pack_counts (msgpack_packer *pk, const s_run_t *run)
{
    tr__pack_str (pk, "total");
    msgpack_pack_uint64 (pk, run->count);
    tr__pack_str (pk, "done");
    msgpack_pack_uint64 (pk, run->done);
    tr__pack_str (pk, "failed");
    msgpack_pack_uint64 (pk, run->failed);
    tr__pack_str (pk, "retried");
    msgpack_pack_uint64 (pk, run->retried);
}

//  The summary: {total, done, failed, retried, results, errors}.
static void
s_pack_summary (const s_run_t *run, msgpack_sbuffer *buffer)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 6);
    s_pack_counts (&pk, run);
    tr__pack_str (&pk, "results");
    msgpack_pack_array (&pk, (uint32_t) run->count);
    for (size_t i = 0; i < run->count; i++) {
        const s_task_t *task = &run->tasks [i];
        if (task->state == S_DONE)
            tr__value_pack (&pk, &task->answer);
        else
            msgpack_pack_nil (&pk);
    }
    tr__pack_str (&pk, "errors");
    msgpack_pack_array (&pk, (uint32_t) run->failed);
    for (size_t i = 0; i < run->count; i++) {
        const s_task_t *task = &run->tasks [i];
        if (task->state != S_FAILED)
            continue;
        msgpack_pack_map (&pk, 3);
        tr__pack_str (&pk, "index");
        msgpack_pack_uint64 (&pk, i);
        tr__pack_str (&pk, "error");
        tr__pack_str (&pk, tr_errname (task->error));
        tr__pack_str (&pk, "attempts");
        msgpack_pack_int (&pk, task->attempts);
    }
}

//  A run whose tasks have all completed: the last progress line, the
//  batch.completed event, the summary to the asker.
static void
s_run_finish (s_batch_t *batch, s_run_t *run)
{
    if (run->progress_id)
        tr_timer_cancel (batch->node, run->progress_timer);
    s_progress (batch, run, true);
    int64_t elapsed_ms = (tr__now_ns () - run->start_ns) / 1000000;
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 7);
    tr__pack_str (&pk, "batch");
    tr__pack_str (&pk, tr_actor_name (batch->self));
    tr__pack_str (&pk, "run");
    msgpack_pack_uint64 (&pk, run->id);
    s_pack_counts (&pk, run);
    tr__pack_str (&pk, "elapsed_ms");
    msgpack_pack_int64 (&pk, elapsed_ms);
    tr_event_publish (batch->node, "batch.completed", buffer.data, buffer.size, NULL);
    tr_log (TR_LOG_INFO, "batch '%s': run %llu: %zu tasks, %zu done, %zu failed, %zu retries, "
            "in %lld ms", tr_actor_name (batch->self), (unsigned long long) run->id, run->count,
            run->done, run->failed, run->retried, (long long) elapsed_ms);
    batch->running--;
    tr_actor_info_add (batch->self, "batch.completed", 1);
    s_info (batch);
    if (run->ask) {
        msgpack_sbuffer_clear (&buffer);
        s_pack_summary (run, &buffer);
        int rc = tr_reply (run->ask, buffer.data, buffer.size);
        if (rc != TR_OK) {
            tr_log (TR_LOG_WARN, "batch '%s': the summary of run %llu cannot be sent: %s",
                    tr_actor_name (batch->self), (unsigned long long) run->id, tr_strerror (rc));
            tr_reply_error (run->ask, rc);
        }
    }
    msgpack_sbuffer_destroy (&buffer);
    s_run_free (run);
}

//  Ends the runs whose tasks have all completed, in any order.
static void
s_reap (s_batch_t *batch)
{
    s_run_t **p = &batch->runs;
    s_run_t *prev = NULL;
    while (*p) {
        s_run_t *run = *p;
        if (run->done + run->failed < run->count) {
            prev = run;
            p = &run->next;
            continue;
        }
        *p = run->next;
        if (batch->runs_tail == run)
            batch->runs_tail = prev;
        s_run_finish (batch, run);
    }
}

static bool
s_retryable (int error)
{
    return error != TR_EINVAL && error != TR_EMALFORMED && error != TR_ETOOBIG
        && error != TR_EDEPTH;
}

//  Task i has its outcome: stream it.
static void
s_task_complete (s_batch_t *batch, s_run_t *run, size_t i, int error)
{
    s_task_t *task = &run->tasks [i];
    task->state = error? S_FAILED: S_DONE;
    task->error = error;
    if (error) {
        run->failed++;
        tr_actor_info_add (batch->self, "batch.failed", 1);
    }
    else {
        run->done++;
        tr_actor_info_add (batch->self, "batch.done", 1);
    }
    run->changed = true;
    s_stream (batch, run, i);
}

//  Schedules a retry of task i after its backoff, or fails it.
static void
s_task_retry (s_batch_t *batch, s_run_t *run, size_t i, int error)
{
    s_task_t *task = &run->tasks [i];
    int64_t delay = batch->backoff_ms;
    for (int k = 1; k < task->attempts && delay < batch->backoff_max_ms; k++)
        delay *= 2;
    if (delay > batch->backoff_max_ms)
        delay = batch->backoff_max_ms;
    int64_t left = run->ask? tr_msg_remaining_ms (run->ask): -1;
    if (left >= 0 && left - S_MARGIN_MS <= delay) {
        s_task_complete (batch, run, i, error);     //  no time left for another try
        return;
    }
    uint8_t tick [TR__TICK_SIZE];
    uint64_t id = ++batch->next_private;
    tr__tick_pack (tick, id);
    task->error = error;
    if (tr__u64map_put (&batch->waits, id, task)
    ||  tr_timer_after (batch->node, tr_actor_name (batch->self), (int) delay, tick, sizeof tick,
                        &task->timer) != TR_OK) {
        tr__u64map_take (&batch->waits, id);
        s_task_complete (batch, run, i, error);
        return;
    }
    task->state = S_BACKOFF;
    task->wait = id;
    run->retried++;
    tr_actor_info_add (batch->self, "batch.retried", 1);
}

//  An attempt of task i ended: answer (reply not NULL) or error.
static void
s_attempt_end (s_batch_t *batch, s_run_t *run, size_t i, const tr_msg_t *reply, int error)
{
    s_task_t *task = &run->tasks [i];
    if (error == TR_OK && tr__value_set (&task->answer, tr_msg_body (reply), tr_msg_size (reply)))
        error = TR_ENOMEM;
    if (error == TR_OK || !s_retryable (error) || task->attempts > run->retries)
        s_task_complete (batch, run, i, error);
    else
        s_task_retry (batch, run, i, error);
}

//  Sends task i: it takes a slot until its attempt ends.
static void
s_attempt (s_batch_t *batch, s_run_t *run, size_t i)
{
    s_task_t *task = &run->tasks [i];
    int64_t ms = run->timeout_ms;
    int64_t left = run->ask? tr_msg_remaining_ms (run->ask): -1;
    if (left >= 0 && left - S_MARGIN_MS < ms)
        ms = left - S_MARGIN_MS;
    if (ms <= 0) {
        s_task_complete (batch, run, i, TR_ETIMEDOUT);      //  unsent: no attempt
        return;
    }
    task->attempts++;
    int rc = tr__request_timed (batch->self, batch->member, run->tasks_data + task->offset,
                                task->size, (int) ms, &task->wait, &task->timer);
    if (rc == TR_OK && tr__u64map_put (&batch->waits, task->wait, task)) {
        tr_timer_cancel (batch->node, task->timer);
        rc = TR_ENOMEM;     //  its answer, if any, finds nobody waiting
    }
    if (rc != TR_OK) {
        s_attempt_end (batch, run, i, NULL, rc);
        return;
    }
    task->state = S_INFLIGHT;
    run->inflight++;
    batch->inflight++;
}

//  The next task of run to send: a retry that is due, else one never
//  sent; -1 if none.
static int64_t
s_next_task (s_run_t *run)
{
    if (run->ready_len > 0) {
        uint32_t i = run->ready [run->ready_head];
        run->ready_head = (run->ready_head + 1) % run->count;
        run->ready_len--;
        return i;
    }
    if (run->next_fresh < run->count)
        return (int64_t) run->next_fresh++;
    return -1;
}

//  Fills the free slots: runs in the order they came, each up to its
//  own limit.
static void
s_pump (s_batch_t *batch)
{
    for (s_run_t *run = batch->runs; run; run = run->next) {
        while (batch->inflight < (size_t) batch->concurrency && run->inflight < run->limit) {
            int64_t i = s_next_task (run);
            if (i < 0)
                break;
            s_attempt (batch, run, (size_t) i);
        }
        if (batch->inflight >= (size_t) batch->concurrency)
            break;
    }
    s_info (batch);
}

//  --------------------------------------------------------------------------
//  Starting a run

//  A run's settings from a mapping body: {tasks, concurrency, retries,
//  timeout, results_to}. On 0, *tasks and *tasks_size are the list's
//  bytes (inside body).
static int
s_run_settings (s_batch_t *batch, s_run_t *run, const uint8_t *body, size_t size,
                const uint8_t **tasks, size_t *tasks_size, char *why, size_t why_size)
{
    static const char *const keys [] = { "tasks", "concurrency", "retries", "timeout",
                                         "results_to", NULL };
    tr__cfg_t cfg;
    tr_params_t params = { body, size };
    int64_t limit = batch->concurrency;
    int rc = tr__cfg_open (&cfg, "batch", tr_actor_name (batch->self), &params);
    if (rc == 0)
        rc = tr__cfg_keys (&cfg, cfg.root, "the message", keys);
    if (rc == 0 && !tr__cfg_get (&cfg, NULL, "tasks"))
        rc = tr__cfg_bad (&cfg, "the message needs 'tasks', the list of tasks");
    if (rc == 0 && tr__cfg_get (&cfg, NULL, "tasks")->type != MSGPACK_OBJECT_ARRAY)
        rc = tr__cfg_bad (&cfg, "'tasks' must be a list, not %s",
                          tr__cfg_kind (tr__cfg_get (&cfg, NULL, "tasks")));
    if (rc == 0)
        rc = tr__cfg_int (&cfg, "concurrency", 1, batch->concurrency, &limit)
          || tr__cfg_int (&cfg, "retries", 0, S_RETRIES_MAX, &run->retries)
          || tr__cfg_duration (&cfg, "timeout", 1, INT32_MAX, &run->timeout_ms)
          || tr__cfg_name_in (&cfg, NULL, "results_to", "results_to", &run->results_to);
    if (rc)
        snprintf (why, why_size, "%s", cfg.error);
    tr__cfg_close (&cfg);
    run->limit = (size_t) limit;
    if (rc == 0 && tr__body_field (body, size, "tasks", tasks, tasks_size) != 0) {
        snprintf (why, why_size, "batch '%s': malformed message", tr_actor_name (batch->self));
        rc = -1;
    }
    return rc? -1: 0;
}

//  Reads a message into a new run (not started). Returns NULL with why
//  set if the message is not a batch's, or on no memory.
static s_run_t *
s_run_new (s_batch_t *batch, const tr_msg_t *msg, char *why, size_t why_size)
{
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    size_t size = tr_msg_size (msg);
    const uint8_t *tasks = NULL;
    size_t tasks_size = 0;
    const char *problem = NULL;
    s_run_t *run = (s_run_t *) calloc (1, sizeof *run);
    if (!run) {
        snprintf (why, why_size, "out of memory");
        return NULL;
    }
    run->limit = (size_t) batch->concurrency;
    run->retries = batch->retries;
    run->timeout_ms = batch->timeout_ms;
    const char *text;
    size_t len;
    uint8_t first = size? body [0]: 0xc1;
    if (tr_msg_str (msg, &text, &len) == TR_OK && len == 3 && memcmp (text, "run", 3) == 0) {
        tasks = batch->tasks;
        tasks_size = batch->tasks_size;
        if (!tasks)
            problem = "\"run\" runs the batch's own 'tasks', and it has none";
    }
    else
    if ((first >= 0x90 && first <= 0x9f) || first == 0xdc || first == 0xdd) {
        tasks = body;
        tasks_size = size;
    }
    else
    if ((first >= 0x80 && first <= 0x8f) || first == 0xde || first == 0xdf) {
        if (s_run_settings (batch, run, body, size, &tasks, &tasks_size, why, why_size)) {
            s_run_free (run);
            return NULL;
        }
    }
    else
        problem = s_usage;
    int64_t count = problem? -1: s_tasks_scan (tasks, tasks_size, NULL, &problem);
    if (count >= 0) {
        run->count = (size_t) count;
        run->tasks = (s_task_t *) calloc (count? (size_t) count: 1, sizeof *run->tasks);
        run->ready = (uint32_t *) calloc (count? (size_t) count: 1, sizeof *run->ready);
        run->tasks_data = (uint8_t *) malloc (tasks_size);
        if (!run->tasks || !run->ready || !run->tasks_data)
            problem = "out of memory";
    }
    if (problem) {
        snprintf (why, why_size, "batch '%s': %s", tr_actor_name (batch->self), problem);
        s_run_free (run);
        return NULL;
    }
    memcpy (run->tasks_data, tasks, tasks_size);
    s_tasks_scan (run->tasks_data, tasks_size, run->tasks, &problem);
    for (size_t i = 0; i < run->count; i++)
        run->tasks [i].run = run;
    return run;
}

//  A message that starts a run: asks are deferred, tells run the same
//  (their summary is dropped).
static int
s_run_start (s_batch_t *batch, const tr_msg_t *msg)
{
    char why [TR__CFG_ERROR];
    s_run_t *run = s_run_new (batch, msg, why, sizeof why);
    if (!run) {
        tr_log (TR_LOG_WARN, "%s (%s from '%s')", why, tr_msg_kind (msg) == TR_KIND_ASK?
                "an ask": "a tell", tr_msg_from (msg));
        tr_actor_info_add (batch->self, "batch.refused", 1);
        return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply_error (msg, TR_EINVAL): 0;
    }
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        run->ask = tr_defer (msg);
    run->id = ++batch->next_run;
    run->start_ns = tr__now_ns ();
    if (batch->runs_tail)
        batch->runs_tail->next = run;
    else
        batch->runs = run;
    batch->runs_tail = run;
    batch->running++;
    //  Progress: a bar from the start, lines only when there is news.
    if (batch->progress != S_OFF && run->count > 0) {
        int every = batch->progress == S_BAR? S_BAR_MS: (int) batch->progress_every_ms;
        uint8_t tick [TR__TICK_SIZE];
        run->progress_id = ++batch->next_private;
        tr__tick_pack (tick, run->progress_id);
        if (tr_timer_every (batch->node, tr_actor_name (batch->self), every, tick, sizeof tick,
                            &run->progress_timer) != TR_OK)
            run->progress_id = 0;       //  the last line still comes
        if (batch->progress == S_BAR)
            s_progress (batch, run, false);
    }
    s_pump (batch);
    s_reap (batch);
    return 0;
}

//  --------------------------------------------------------------------------
//  Messages

//  A tick: a task's attempt timed out, its backoff ended, or a run's
//  progress is due.
static void
s_tick (s_batch_t *batch, uint64_t id)
{
    s_task_t *task = (s_task_t *) tr__u64map_take (&batch->waits, id);
    if (task) {
        s_run_t *run = task->run;
        size_t i = (size_t) (task - run->tasks);
        if (task->state == S_INFLIGHT) {
            run->inflight--;
            batch->inflight--;
            s_attempt_end (batch, run, i, NULL, TR_ETIMEDOUT);
        }
        else {
            //  Backoff over: first in line for a slot.
            task->state = S_PENDING;
            run->ready [(run->ready_head + run->ready_len) % run->count] = (uint32_t) i;
            run->ready_len++;
        }
        s_pump (batch);
        s_reap (batch);
        return;
    }
    for (s_run_t *run = batch->runs; run; run = run->next)
        if (run->progress_id == id) {
            if (batch->progress == S_BAR || run->changed)
                s_progress (batch, run, false);
            return;
        }
}

static int
s_batch_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_batch_t *batch = (s_batch_t *) state;
    uint64_t id;
    switch (tr_msg_kind (msg)) {
        case TR_KIND_REPLY:
        case TR_KIND_ERROR: {
            //  An answer after its attempt timed out finds nothing.
            s_task_t *task = (s_task_t *) tr__u64map_take (&batch->waits, tr_msg_corr (msg));
            if (!task)
                return 0;
            s_run_t *run = task->run;
            tr_timer_cancel (batch->node, task->timer);
            run->inflight--;
            batch->inflight--;
            s_attempt_end (batch, run, (size_t) (task - run->tasks), msg,
                           tr_msg_kind (msg) == TR_KIND_ERROR? tr_msg_error (msg): TR_OK);
            s_pump (batch);
            s_reap (batch);
            return 0;
        }
        default:
            if (tr__tick_read (msg, &id)) {
                s_tick (batch, id);
                return 0;
            }
            return s_run_start (batch, msg);
    }
}

//  Runs in progress are abandoned: their asks are answered TR_ENOREPLY
//  when the deferred messages are destroyed; timers are cancelled, and
//  a bar is erased.
static void
s_batch_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) reason;
    s_batch_t *batch = (s_batch_t *) state;
    if (batch->runs)
        tr_log (TR_LOG_WARN, "batch '%s': stopping with %zu run(s) in progress, not finished",
                tr_actor_name (self), batch->running);
    while (batch->runs) {
        s_run_t *run = batch->runs;
        batch->runs = run->next;
        for (size_t i = 0; i < run->count; i++)
            if (run->tasks [i].state == S_INFLIGHT || run->tasks [i].state == S_BACKOFF)
                tr_timer_cancel (batch->node, run->tasks [i].timer);
        if (run->progress_id)
            tr_timer_cancel (batch->node, run->progress_timer);
        tr__log_status (run, NULL, 0);
        s_run_free (run);
    }
    s_batch_free (batch);
}

const tr_actor_type_t tr__batch_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "batch",
    .summary = "runs a list of tasks against a member with a concurrency limit and retries, "
               "streaming results",
    .behaviour = { s_batch_init, s_batch_handle, s_batch_terminate },
    .params = s_batch_params,
    .check = s_batch_check,
};
