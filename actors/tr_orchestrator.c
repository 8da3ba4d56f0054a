/*  tr_orchestrator.c - orchestrator-workers: a planner hands subtasks to
    workers, round after round, until it says it is done.

    For each message it gets (the task), the orchestrator asks its
    planner, an actor (typically an llm agent with a signature), with
        {task: TASK, round: N, max_rounds: M, results: [RESULT...]}
    where results holds what every subtask handed out so far gave, in
    round order and, within a round, in the order the planner listed
    them:
        {round: N, worker: NAME, task: VALUE, answer: VALUE}
        {round: N, worker: NAME, task: VALUE, error: "TR_...", reason: TEXT}
    The planner answers a decision, a map:
        {done: true, result: VALUE}         the run's answer is VALUE
        {done: false, subtasks: [SUBTASK...]}
    A subtask is a map {worker: NAME, task: VALUE}, or a string
    "NAME: TASK" (what an llm signature's `list` output, a list of
    strings, can hold). The orchestrator asks each subtask's worker with
    its task, at most `limit` at once, gathers the answers, and asks the
    planner again with them, until the planner says done or `max_rounds`
    planner answers have not: then the run fails with TR_ELIMIT, saying
    how many rounds it used.

    The planner's mistakes in a subtask (a worker that is not among
    `workers`, a subtask without a worker) are not the run's end: each
    becomes a result with an error and a reason, which the planner sees
    in the next round and may correct. A worker that fails (answers an
    error, times out, cannot be reached) is a result with its error too.
    A decision that is not one (not a map, `done` not a boolean, `done`
    without `result`, neither done nor subtasks, more than `max_subtasks`
    subtasks) and a planner that fails end the run: TR_EOUTPUT, or the
    planner's own error.

    The asker gets the result, or the error; with `on_failure: report`, a
    map instead of the error: {error: "TR_...", reason: TEXT, rounds: N,
    results: [RESULT...]}. Events on the bus: `orchestrator.round` after
    each round's subtasks are gathered, `orchestrator.completed` and
    `orchestrator.failed` (docs/patterns.md has their maps).

    Nothing waits on the orchestrator's thread: the planner and each
    subtask are asked with tr_request and a timer (tr_compose.h), and many
    runs are in flight at once.
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "troupe/tr_event.h"
#include "troupe/tr_timer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_run_s s_run_t;

//  What an answer is awaited for: the planner (index -1) or subtask index.
typedef struct {
    tr__wait_t request;         //  its owner is this s_wait_t
    s_run_t *run;
    int index;
} s_wait_t;

typedef enum { S_SUB_WAITING, S_SUB_RUNNING, S_SUB_DONE } s_sub_state_t;

//  One subtask of the round in hand.
typedef struct {
    char *worker;               //  as the planner named it ("" for none)
    tr__value_t task;
    int state;                  //  s_sub_state_t
    int error;                  //  TR_OK, or why it failed
    char *reason;               //  with an error: in words
    tr__value_t answer;
    s_wait_t wait;
} s_sub_t;

struct s_run_s {
    tr__run_t base;             //  the deferred ask (or NULL for a tell), the sender
    tr__value_t task;
    int64_t round;              //  planner asks so far
    msgpack_sbuffer results;    //  the results so far, packed one after another
    uint32_t nresults;
    s_sub_t *subs;              //  the round's subtasks
    size_t nsubs;
    size_t next_sub;            //  the next to start
    size_t running;
    size_t finished;
    s_wait_t planner;
    char reason [512];          //  why the run failed
};

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    //  Settings.
    char *planner;
    char **workers;
    size_t nworkers;
    char *worker_list;          //  "a, b, c": for reasons
    int64_t max_rounds;
    int64_t max_subtasks;
    int64_t limit;
    int64_t timeout_ms;
    bool report;                //  on_failure: report
    tr__runs_t runs;            //  of s_run_t, waits of s_wait_t
} s_orch_t;

//  What the runs call back (at the end).
static const tr__runs_calls_t s_calls;

static const tr_param_spec_t s_orch_params [] = {
    { "planner", TR_PARAM_STRING, true, "the actor asked for each round's decision "
                                        "{done, result, subtasks}" },
    { "workers", TR_PARAM_LIST, true, "the actor names subtasks may go to" },
    { "max_rounds", TR_PARAM_INT, false, "planner answers at most, 1 to 1000 (default 5)" },
    { "max_subtasks", TR_PARAM_INT, false, "subtasks in one decision at most, 1 to 1000 "
                                           "(default 16)" },
    { "limit", TR_PARAM_INT, false, "subtasks of a run in flight at once, 1 to 1000 "
                                    "(default 4)" },
    { "timeout", TR_PARAM_DURATION, false, "how long the planner and each subtask get "
                                           "(default 30s)" },
    { "on_failure", TR_PARAM_STRING, false, "error (default): the asker gets the error; "
                                            "report: a map saying what happened" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_orch_free (s_orch_t *orch)
{
    if (!orch)
        return;
    free (orch->planner);
    tr__names_free (orch->workers, orch->nworkers);
    free (orch->worker_list);
    free (orch);
}

//  "a, b, c" from the worker names, cut short past 300 bytes.
static char *
s_join (char **names, size_t count)
{
    size_t size = 0;
    for (size_t i = 0; i < count; i++)
        size += strlen (names [i]) + 2;
    char *list = (char *) calloc (1, size + 1);
    if (!list)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        if (i)
            strcat (list, ", ");
        strcat (list, names [i]);
    }
    if (strlen (list) > 300)
        strcpy (list + 297, "...");
    return list;
}

static int
s_orch_configure (s_orch_t *orch, tr__cfg_t *cfg)
{
    static const char *const failures [] = { "error", "report", NULL };
    int on_failure = 0;
    orch->max_rounds = 5;
    orch->max_subtasks = 16;
    orch->limit = 4;
    orch->timeout_ms = 30000;
    if (tr__cfg_name_in (cfg, NULL, "planner", "planner", &orch->planner)
    ||  tr__cfg_int (cfg, "max_rounds", 1, 1000, &orch->max_rounds)
    ||  tr__cfg_int (cfg, "max_subtasks", 1, 1000, &orch->max_subtasks)
    ||  tr__cfg_int (cfg, "limit", 1, 1000, &orch->limit)
    ||  tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &orch->timeout_ms)
    ||  tr__cfg_choice (cfg, "on_failure", failures, &on_failure))
        return -1;
    orch->report = on_failure == 1;
    if (!orch->planner)
        return tr__cfg_bad (cfg, "'planner' must name the planner actor");
    tr__cfg_enter (cfg, "workers");
    if (tr__cfg_names (cfg, tr__cfg_get (cfg, NULL, "workers"), "workers", &orch->workers,
                       &orch->nworkers))
        return -1;
    orch->worker_list = s_join (orch->workers, orch->nworkers);
    if (!orch->worker_list)
        return tr__cfg_bad (cfg, "out of memory");
    return 0;
}

//  The tree loader's check: the same reading as init's, with positions.
TR__CFG_CHECK_DEFINE (s_orch_check, "orchestrator", s_orch_t, s_orch_configure, s_orch_free)

static int
s_orch_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_orch_t *orch = (s_orch_t *) calloc (1, sizeof *orch);
    int rc = tr__cfg_open (&cfg, "orchestrator", tr_actor_name (self),
                           (const tr_params_t *) arg);
    if (rc == 0 && !orch)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_orch_configure (orch, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_orch_free (orch);
        return -1;
    }
    tr__cfg_close (&cfg);
    orch->self = self;
    orch->node = tr_actor_node (self);
    tr__runs_init (&orch->runs, self, "orchestrator", &s_calls, orch);
    *state_p = orch;
    return 0;
}

//  --------------------------------------------------------------------------
//  Runs

static void
s_subs_free (s_run_t *run)
{
    for (size_t i = 0; i < run->nsubs; i++) {
        free (run->subs [i].worker);
        tr__value_free (&run->subs [i].task);
        free (run->subs [i].reason);
        tr__value_free (&run->subs [i].answer);
    }
    free (run->subs);
    run->subs = NULL;
    run->nsubs = run->next_sub = run->running = run->finished = 0;
}

//  Forgets what the run still waits for (its timers too).
static void
s_run_unwait (s_orch_t *orch, s_run_t *run)
{
    tr__runs_unwait (&orch->runs, &run->planner.request);
    for (size_t i = 0; i < run->nsubs; i++)
        tr__runs_unwait (&orch->runs, &run->subs [i].wait.request);
}

static void
s_run_free (s_orch_t *orch, s_run_t *run)
{
    if (!run)
        return;
    s_run_unwait (orch, run);
    s_subs_free (run);
    tr__value_free (&run->task);
    msgpack_sbuffer_destroy (&run->results);
    tr__run_free (&run->base);
}

//  Ms the planner or a subtask may take: the timeout, cut to the ask's
//  deadline. 0 when the deadline has passed.
static int
s_ms (const s_orch_t *orch, const s_run_t *run)
{
    return tr__run_ms (&run->base, orch->timeout_ms);
}

//  Asks `to` for what wait awaits. Returns TR_OK, or the error (and
//  nothing is awaited).
static int
s_request (s_orch_t *orch, s_wait_t *wait, const char *to, const void *body, size_t size,
           int ms)
{
    wait->request.owner = wait;
    return tr__runs_request (&orch->runs, &wait->request, to, body, size, ms);
}

//  The map {orchestrator, error, reason, rounds} (name first when
//  with_name), plus the results when with_results.
static void
s_pack_failure (s_orch_t *orch, s_run_t *run, int error, msgpack_sbuffer *buffer,
                bool with_name, bool with_results)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3 + with_name + with_results);
    if (with_name) {
        tr__pack_str (&pk, "orchestrator");
        tr__pack_str (&pk, tr_actor_name (orch->self));
    }
    tr__pack_str (&pk, "error");
    tr__pack_str (&pk, tr_errname (error));
    tr__pack_str (&pk, "reason");
    tr__pack_str (&pk, run->reason);
    tr__pack_str (&pk, "rounds");
    msgpack_pack_int64 (&pk, run->round);
    if (with_results) {
        tr__pack_str (&pk, "results");
        msgpack_pack_array (&pk, run->nresults);
        if (run->results.size)
            msgpack_sbuffer_write (buffer, run->results.data, run->results.size);
    }
}

//  Ends a run that failed with error (run->reason says why): logged,
//  published as orchestrator.failed, answered.
static void
s_run_fail (s_orch_t *orch, s_run_t *run, int error)
{
    tr_log (TR_LOG_WARN, "orchestrator '%s': %s (%s) for %s from '%s'",
            tr_actor_name (orch->self), run->reason, tr_errname (error),
            run->base.ask? "an ask": "a tell", run->base.from);
    s_run_unwait (orch, run);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    s_pack_failure (orch, run, error, &buffer, true, false);
    tr_event_publish (orch->node, "orchestrator.failed", buffer.data, buffer.size, NULL);
    tr_actor_info_add (orch->self, "orchestrator.failed", 1);
    tr__runs_remove (&orch->runs, &run->base);
    if (run->base.ask && orch->report) {
        msgpack_sbuffer_clear (&buffer);
        s_pack_failure (orch, run, error, &buffer, false, true);
        if (tr_reply (run->base.ask, buffer.data, buffer.size) != TR_OK)
            tr_reply_error (run->base.ask, error);
    }
    else
    if (run->base.ask)
        tr_reply_error (run->base.ask, error);
    msgpack_sbuffer_destroy (&buffer);
    s_run_free (orch, run);
}

//  The planner said done: the run's answer is its result.
static void
s_run_done (s_orch_t *orch, s_run_t *run, const tr__value_t *result)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    tr__pack_str (&pk, "orchestrator");
    tr__pack_str (&pk, tr_actor_name (orch->self));
    tr__pack_str (&pk, "rounds");
    msgpack_pack_int64 (&pk, run->round);
    tr__pack_str (&pk, "results");
    msgpack_pack_uint32 (&pk, run->nresults);
    tr_event_publish (orch->node, "orchestrator.completed", buffer.data, buffer.size, NULL);
    msgpack_sbuffer_destroy (&buffer);
    tr_actor_info_add (orch->self, "orchestrator.completed", 1);
    tr__runs_remove (&orch->runs, &run->base);
    if (run->base.ask) {
        int rc = tr_reply (run->base.ask, result->data, result->size);
        if (rc != TR_OK)
            tr_reply_error (run->base.ask, rc);
    }
    else
        tr_log (TR_LOG_INFO, "orchestrator '%s': a tell from '%s' done after %lld round(s)",
                tr_actor_name (orch->self), run->base.from, (long long) run->round);
    s_run_free (orch, run);
}

//  Asks the planner for the next round's decision.
static void
s_plan (s_orch_t *orch, s_run_t *run)
{
    run->round++;
    tr_actor_info_add (orch->self, "orchestrator.rounds", 1);
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    tr__pack_str (&pk, "task");
    tr__value_pack (&pk, &run->task);
    tr__pack_str (&pk, "round");
    msgpack_pack_int64 (&pk, run->round);
    tr__pack_str (&pk, "max_rounds");
    msgpack_pack_int64 (&pk, orch->max_rounds);
    tr__pack_str (&pk, "results");
    msgpack_pack_array (&pk, run->nresults);
    if (run->results.size)
        msgpack_sbuffer_write (&buffer, run->results.data, run->results.size);
    run->planner.run = run;
    run->planner.index = -1;
    int rc = s_request (orch, &run->planner, orch->planner, buffer.data, buffer.size,
                        s_ms (orch, run));
    msgpack_sbuffer_destroy (&buffer);
    if (rc != TR_OK) {
        snprintf (run->reason, sizeof run->reason, "planner '%s' could not be asked in "
                  "round %lld: %s", orch->planner, (long long) run->round, tr_strerror (rc));
        s_run_fail (orch, run, rc);
    }
}

//  Marks a subtask done with an error (reason printf-style).
static void
s_sub_failed (s_run_t *run, s_sub_t *sub, int error, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

static void
s_sub_failed (s_run_t *run, s_sub_t *sub, int error, const char *format, ...)
{
    char reason [512];
    va_list args;
    va_start (args, format);
    vsnprintf (reason, sizeof reason, format, args);
    va_end (args);
    free (sub->reason);
    sub->reason = strdup (reason);
    sub->error = error? error: TR_ENOMEM;
    sub->state = S_SUB_DONE;
    run->finished++;
}

//  The round's results, appended to the run's, in subtask order; and the
//  orchestrator.round event.
static void
s_round_record (s_orch_t *orch, s_run_t *run)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, &run->results, msgpack_sbuffer_write);
    size_t failed = 0;
    for (size_t i = 0; i < run->nsubs; i++) {
        s_sub_t *sub = &run->subs [i];
        msgpack_pack_map (&pk, sub->error? 5: 4);
        tr__pack_str (&pk, "round");
        msgpack_pack_int64 (&pk, run->round);
        tr__pack_str (&pk, "worker");
        tr__pack_str (&pk, sub->worker);
        tr__pack_str (&pk, "task");
        tr__value_pack (&pk, &sub->task);
        if (sub->error) {
            failed++;
            tr__pack_str (&pk, "error");
            tr__pack_str (&pk, tr_errname (sub->error));
            tr__pack_str (&pk, "reason");
            tr__pack_str (&pk, sub->reason? sub->reason: tr_strerror (sub->error));
        }
        else {
            tr__pack_str (&pk, "answer");
            tr__value_pack (&pk, &sub->answer);
        }
        run->nresults++;
    }
    tr_actor_info_add (orch->self, "orchestrator.subtasks", (int64_t) run->nsubs);
    tr_actor_info_add (orch->self, "orchestrator.subtasks_failed", (int64_t) failed);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    tr__pack_str (&pk, "orchestrator");
    tr__pack_str (&pk, tr_actor_name (orch->self));
    tr__pack_str (&pk, "round");
    msgpack_pack_int64 (&pk, run->round);
    tr__pack_str (&pk, "subtasks");
    msgpack_pack_uint64 (&pk, run->nsubs);
    tr__pack_str (&pk, "failed");
    msgpack_pack_uint64 (&pk, failed);
    tr_event_publish (orch->node, "orchestrator.round", buffer.data, buffer.size, NULL);
    msgpack_sbuffer_destroy (&buffer);
}

//  Starts subtasks while the limit allows; when all have finished, the
//  round is recorded and the planner asked again.
static void
s_subs_start (s_orch_t *orch, s_run_t *run)
{
    while (run->running < (size_t) orch->limit && run->next_sub < run->nsubs) {
        s_sub_t *sub = &run->subs [run->next_sub];
        sub->wait.run = run;
        sub->wait.index = (int) run->next_sub;
        run->next_sub++;
        if (sub->state == S_SUB_DONE)
            continue;                   //  refused when read
        int rc = s_request (orch, &sub->wait, sub->worker, sub->task.data, sub->task.size,
                            s_ms (orch, run));
        if (rc != TR_OK)
            s_sub_failed (run, sub, rc, "worker '%s' could not be asked: %s", sub->worker,
                          tr_strerror (rc));
        else {
            sub->state = S_SUB_RUNNING;
            run->running++;
        }
    }
    if (run->finished == run->nsubs) {
        s_round_record (orch, run);
        s_subs_free (run);
        s_plan (orch, run);
    }
}

//  --------------------------------------------------------------------------
//  The planner's decision

static bool
s_is_worker (const s_orch_t *orch, const char *name)
{
    for (size_t i = 0; i < orch->nworkers; i++)
        if (strcmp (orch->workers [i], name) == 0)
            return true;
    return false;
}

//  Trims blanks at both ends of [*start, *start + *len).
static void
s_trim (const char **start, size_t *len)
{
    while (*len && strchr (" \t\r\n", (*start) [0])) {
        (*start)++;
        (*len)--;
    }
    while (*len && strchr (" \t\r\n", (*start) [*len - 1]))
        (*len)--;
}

//  Subtask i of a decision, from a string "NAME: TASK". Returns -1 only
//  when memory ran out.
static int
s_sub_from_text (s_orch_t *orch, s_run_t *run, s_sub_t *sub, const msgpack_object *o)
{
    const char *text = o->via.str.ptr;
    size_t len = o->via.str.size;
    const char *colon = (const char *) memchr (text, ':', len);
    const char *name = text, *task = text;
    size_t name_len = 0, task_len = len;
    if (colon) {
        name_len = (size_t) (colon - text);
        task = colon + 1;
        task_len = len - name_len - 1;
        s_trim (&name, &name_len);
        s_trim (&task, &task_len);
    }
    sub->worker = strndup (name, name_len > 100? 100: name_len);
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_str_with_body (&pk, task, task_len);
    int rc = buffer.data? tr__value_set (&sub->task, buffer.data, buffer.size): -1;
    msgpack_sbuffer_destroy (&buffer);
    if (!sub->worker || rc)
        return -1;
    if (!colon)
        s_sub_failed (run, sub, TR_EINVAL, "a subtask given as text must read 'WORKER: TASK' "
                      "(workers: %s)", orch->worker_list);
    return 0;
}

//  Subtask i of a decision: a map {worker, task} or a string. Problems
//  with it become its result (an error and a reason). Returns -1 only
//  when memory ran out.
static int
s_sub_read (s_orch_t *orch, s_run_t *run, s_sub_t *sub, const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_STR) {
        if (s_sub_from_text (orch, run, sub, o))
            return -1;
    }
    else
    if (o->type != MSGPACK_OBJECT_MAP) {
        sub->worker = strdup ("");
        if (!sub->worker || tr__value_set_object (&sub->task, o))
            return -1;
        s_sub_failed (run, sub, TR_EINVAL, "a subtask must be a map {worker, task} or a "
                      "string 'WORKER: TASK', not %s", tr__cfg_kind (o));
        return 0;
    }
    else {
        const msgpack_object *worker = tr__map_get (o, "worker");
        const msgpack_object *task = tr__map_get (o, "task");
        bool named = worker && worker->type == MSGPACK_OBJECT_STR;
        sub->worker = named? strndup (worker->via.str.ptr, worker->via.str.size > 100?
                                      100: worker->via.str.size)
                           : strdup ("");
        if (!sub->worker || (task && tr__value_set_object (&sub->task, task)))
            return -1;
        if (!named) {
            s_sub_failed (run, sub, TR_EINVAL, "a subtask needs 'worker', the name of one of "
                          "the workers (%s)", orch->worker_list);
            return 0;
        }
        if (!task) {
            s_sub_failed (run, sub, TR_EINVAL, "a subtask needs 'task', what the worker is "
                          "asked");
            return 0;
        }
    }
    if (sub->state != S_SUB_DONE && !s_is_worker (orch, sub->worker))
        s_sub_failed (run, sub, TR_ENOTFOUND, "no worker is named '%s'; the workers are: %s",
                      sub->worker, orch->worker_list);
    return 0;
}

//  Reads the planner's decision. Returns 1 when it says done (*result
//  set), 0 when it gave subtasks (the run's subs set), or the run's
//  error (TR_EOUTPUT, TR_ENOMEM) with run->reason.
static int
s_decision_read (s_orch_t *orch, s_run_t *run, const msgpack_object *o, tr__value_t *result)
{
    const char *planner = orch->planner;
    long long round = (long long) run->round;
    if (o->type != MSGPACK_OBJECT_MAP) {
        snprintf (run->reason, sizeof run->reason, "planner '%s' answered %s in round %lld, "
                  "not a map {done, result, subtasks}", planner, tr__cfg_kind (o), round);
        return TR_EOUTPUT;
    }
    const msgpack_object *done = tr__map_get (o, "done");
    const msgpack_object *subtasks = tr__map_get (o, "subtasks");
    if (done && done->type != MSGPACK_OBJECT_BOOLEAN) {
        snprintf (run->reason, sizeof run->reason, "planner '%s' answered 'done' as %s in "
                  "round %lld, not true or false", planner, tr__cfg_kind (done), round);
        return TR_EOUTPUT;
    }
    if (done && done->via.boolean) {
        const msgpack_object *value = tr__map_get (o, "result");
        if (!value) {
            snprintf (run->reason, sizeof run->reason, "planner '%s' said done in round %lld "
                      "without a 'result'", planner, round);
            return TR_EOUTPUT;
        }
        if (tr__value_set_object (result, value)) {
            snprintf (run->reason, sizeof run->reason, "out of memory");
            return TR_ENOMEM;
        }
        return 1;
    }
    uint32_t count = subtasks && subtasks->type == MSGPACK_OBJECT_ARRAY?
                     subtasks->via.array.size: 0;
    if (subtasks && subtasks->type != MSGPACK_OBJECT_ARRAY)
        snprintf (run->reason, sizeof run->reason, "planner '%s' answered 'subtasks' as %s "
                  "in round %lld, not a list", planner, tr__cfg_kind (subtasks), round);
    else
    if (count == 0)
        snprintf (run->reason, sizeof run->reason, "planner '%s' answered neither done nor "
                  "subtasks in round %lld", planner, round);
    else
    if (count > orch->max_subtasks)
        snprintf (run->reason, sizeof run->reason, "planner '%s' gave %u subtasks in round "
                  "%lld; max_subtasks is %lld", planner, count, round,
                  (long long) orch->max_subtasks);
    else {
        run->subs = (s_sub_t *) calloc (count, sizeof *run->subs);
        for (uint32_t i = 0; run->subs && i < count; i++) {
            run->nsubs = i + 1;         //  so that s_subs_free frees this one too
            if (s_sub_read (orch, run, &run->subs [i], &subtasks->via.array.ptr [i])) {
                snprintf (run->reason, sizeof run->reason, "out of memory");
                return TR_ENOMEM;
            }
        }
        if (!run->subs) {
            snprintf (run->reason, sizeof run->reason, "out of memory");
            return TR_ENOMEM;
        }
        return 0;
    }
    return TR_EOUTPUT;
}

//  The planner answered (reply, or error with reply NULL or an error).
static void
s_planned (s_orch_t *orch, s_run_t *run, const tr_msg_t *reply, int error)
{
    if (error) {
        snprintf (run->reason, sizeof run->reason, "planner '%s' failed in round %lld: %s",
                  orch->planner, (long long) run->round, tr_strerror (error));
        s_run_fail (orch, run, error);
        return;
    }
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    tr__value_t result = { NULL, 0 };
    int rc;
    if (tr_msg_size (reply) == 0
    ||  msgpack_unpack_next (&unpacked, (const char *) tr_msg_body (reply), tr_msg_size (reply),
                             NULL) != MSGPACK_UNPACK_SUCCESS) {
        snprintf (run->reason, sizeof run->reason, "planner '%s' answered nothing in round "
                  "%lld, not a map {done, result, subtasks}", orch->planner,
                  (long long) run->round);
        rc = TR_EOUTPUT;
    }
    else
        rc = s_decision_read (orch, run, &unpacked.data, &result);
    msgpack_unpacked_destroy (&unpacked);
    if (rc == 0 && run->round >= orch->max_rounds) {
        //  The last round's subtasks would be gathered for a decision
        //  that cannot be asked for: they are not run.
        snprintf (run->reason, sizeof run->reason, "planner '%s' did not say done in %lld "
                  "rounds (max_rounds); its last decision gave %zu subtask(s), not run",
                  orch->planner, (long long) run->round, run->nsubs);
        rc = TR_ELIMIT;
    }
    if (rc == 1)
        s_run_done (orch, run, &result);
    else
    if (rc == 0)
        s_subs_start (orch, run);
    else {
        s_subs_free (run);
        s_run_fail (orch, run, rc);
    }
    free (result.data);
}

//  Subtask index of the run answered (or failed with error).
static void
s_worked (s_orch_t *orch, s_run_t *run, int index, const tr_msg_t *reply, int error)
{
    s_sub_t *sub = &run->subs [index];
    run->running--;
    if (error)
        s_sub_failed (run, sub, error, "worker '%s' failed: %s", sub->worker,
                      tr_strerror (error));
    else
    if (tr__value_set (&sub->answer, tr_msg_body (reply), tr_msg_size (reply)))
        s_sub_failed (run, sub, TR_ENOMEM, "out of memory");
    else {
        sub->state = S_SUB_DONE;
        run->finished++;
    }
    s_subs_start (orch, run);
}

//  An answer (or a timer: reply NULL, TR_ETIMEDOUT) for the planner or a
//  subtask (owner: its s_wait_t).
static void
s_answered (void *state, void *owner, const tr_msg_t *reply, int error)
{
    s_orch_t *orch = (s_orch_t *) state;
    s_wait_t *wait = (s_wait_t *) owner;
    if (wait->index < 0)
        s_planned (orch, wait->run, reply, error);
    else
        s_worked (orch, wait->run, wait->index, reply, error);
}

//  A message to run for: asks are deferred, tells copied.
static int
s_run_new (void *state, const tr_msg_t *msg)
{
    s_orch_t *orch = (s_orch_t *) state;
    s_run_t *run = (s_run_t *) calloc (1, sizeof *run);
    if (run)
        msgpack_sbuffer_init (&run->results);
    if (!run || tr__value_set (&run->task, tr_msg_body (msg), tr_msg_size (msg))
    ||  tr__runs_add (&orch->runs, &run->base, msg)) {
        s_run_free (orch, run);
        return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply_error (msg, TR_ENOMEM): -1;
    }
    s_plan (orch, run);
    return 0;
}

//  A run in progress when the orchestrator stops.
static void
s_run_drop (void *state, tr__run_t *run)
{
    s_run_free ((s_orch_t *) state, (s_run_t *) run);
}

static const tr__runs_calls_t s_calls = { s_run_new, s_answered, s_run_drop };

static int
s_orch_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    return tr__runs_handle (&((s_orch_t *) state)->runs, msg);
}

//  Runs in progress are abandoned: their askers get TR_ENOREPLY when the
//  deferred asks are destroyed; late answers find nobody waiting.
static void
s_orch_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_orch_t *orch = (s_orch_t *) state;
    tr__runs_close (&orch->runs, NULL);
    s_orch_free (orch);
}

const tr_actor_type_t tr__orchestrator_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "orchestrator",
    .summary = "a planner hands subtasks to workers, round after round, until it says done",
    .behaviour = { s_orch_init, s_orch_handle, s_orch_terminate },
    .params = s_orch_params,
    .check = s_orch_check,
};
