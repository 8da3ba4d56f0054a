/*  tr_orchestrator_test.c - tests of the orchestrator (actors/
    tr_orchestrator.c), started from tree files.

    A scripted planner (a decision per round) pins the semantics: what the
    planner is asked each round (task, round, max_rounds, every result so
    far in order), done and its result, the round bound (TR_ELIMIT, the
    rounds used, the report), subtasks running at once (start and end
    times measured in the workers, which must overlap), the concurrency
    limit (the most workers busy at once), unknown workers and malformed
    subtasks reported back to the planner, failing, slow and missing
    workers given to the planner as results, decisions that are not one,
    a failing planner, tells, events, runs at once, a worker on another
    node through a real broker; then one run through llm agents on the
    offline backend; bad parameters at their file, line and column.
*/

#include "tr_test.h"
#include "tr_test_tree.h"

#include <msgpack.h>

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  What the test actors saw goes into the ledger ("NAME JSON" lines), and
//  when each worker ran into spans (tr_test_tree.h).

//  --------------------------------------------------------------------------
//  Test actors

//  planner: records each ask and answers it with `decisions` item N for
//  round N (the last one for later rounds); the item "fail" fails the
//  handler instead.
typedef struct {
    msgpack_unpacked decisions;
} s_planner_t;

static int
s_planner_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    s_planner_t *planner = (s_planner_t *) calloc (1, sizeof *planner);
    tr_params_t list;
    msgpack_unpacked_init (&planner->decisions);
    ck_assert_int_eq (tr_params_get ((const tr_params_t *) arg, "decisions", &list), TR_OK);
    ck_assert_int_eq (msgpack_unpack_next (&planner->decisions, (const char *) list.data,
                                           list.size, NULL), MSGPACK_UNPACK_SUCCESS);
    *state_p = planner;
    return 0;
}

static int
s_planner_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_planner_t *planner = (s_planner_t *) state;
    tr_test_ledger_add (tr_actor_name (self), tr_msg_body (msg), tr_msg_size (msg));
    msgpack_unpacked ask;
    msgpack_unpacked_init (&ask);
    ck_assert_int_eq (msgpack_unpack_next (&ask, (const char *) tr_msg_body (msg),
                                           tr_msg_size (msg), NULL), MSGPACK_UNPACK_SUCCESS);
    uint64_t round = 0;
    for (uint32_t i = 0; i < ask.data.via.map.size; i++)
        if (memcmp (ask.data.via.map.ptr [i].key.via.str.ptr, "round", 5) == 0
        &&  ask.data.via.map.ptr [i].key.via.str.size == 5)
            round = ask.data.via.map.ptr [i].val.via.u64;
    msgpack_unpacked_destroy (&ask);
    const msgpack_object_array *list = &planner->decisions.data.via.array;
    ck_assert (round >= 1);
    const msgpack_object *decision = &list->ptr [round <= list->size? round - 1: list->size - 1];
    if (decision->type == MSGPACK_OBJECT_STR && decision->via.str.size == 4
    &&  memcmp (decision->via.str.ptr, "fail", 4) == 0)
        return -1;
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_object (&pk, *decision);
    int rc = tr_reply (msg, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return rc;
}

static void
s_planner_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_planner_t *planner = (s_planner_t *) state;
    msgpack_unpacked_destroy (&planner->decisions);
    free (planner);
}

static const tr_param_spec_t s_planner_params [] = {
    { "decisions", TR_PARAM_LIST, true, "the answer for each round" },
    { .key = NULL }
};

static const tr_actor_type_t s_planner_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "planner",
    .summary = "answers a scripted decision per round (orchestrator tests)",
    .behaviour = { s_planner_init, s_planner_handle, s_planner_terminate },
    .params = s_planner_params,
};

//  worker: takes `delay` on each task, records when it ran, and answers
//  "NAME:TASK"; with `fail: true` it fails instead.
typedef struct {
    int64_t delay_ms;
    bool fail;
} s_worker_t;

static const tr_param_spec_t s_worker_params [] = {
    { "delay", TR_PARAM_DURATION, false, "time each task takes" },
    { "fail", TR_PARAM_BOOL, false, "fail every task" },
    { .key = NULL }
};

static int
s_worker_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    s_worker_t *worker = (s_worker_t *) calloc (1, sizeof *worker);
    if (arg) {
        tr_params_duration ((const tr_params_t *) arg, "delay", &worker->delay_ms);
        tr_params_bool ((const tr_params_t *) arg, "fail", &worker->fail);
    }
    *state_p = worker;
    return 0;
}

static int
s_worker_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_worker_t *worker = (s_worker_t *) state;
    size_t span = tr_test_span_begin (tr_actor_name (self));
    if (worker->delay_ms)
        usleep ((useconds_t) worker->delay_ms * 1000);
    tr_test_span_end (span);
    if (worker->fail)
        return -1;
    const char *text = "";
    size_t len = 0;
    tr_msg_str (msg, &text, &len);
    char out [200];
    int n = snprintf (out, sizeof out, "%s:%.*s", tr_actor_name (self), (int) len, text);
    tr_body_t body;
    tr_body_str (&body, out, (size_t) n);
    return tr_reply (msg, body.data, body.size);
}

static const tr_actor_type_t s_worker_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "worker",
    .summary = "does a task slowly and says when (orchestrator tests)",
    .behaviour = { s_worker_init, s_worker_handle, tr_test_free_state },
    .params = s_worker_params,
};

//  --------------------------------------------------------------------------
//  Helpers

static void
s_setup (void)
{
    tr_test_setup (&s_node, (const tr_actor_type_t *[]) { &s_planner_type, &s_worker_type,
                                                          NULL });
    tr_test_ledger_register ();
    tr_test_spans_clear ();
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
}

static void
s_start (const char *yaml)
{
    tr_test_tree_start (s_node, yaml, "orchestrator.yaml", &s_tree, &s_sup);
}

static int
s_ask (const char *to, const char *text, char **answer)
{
    return tr_test_ask_json (s_node, to, text, 10000 * tr_test_slowdown (), answer);
}

static void
s_expect_answer (const char *to, const char *text, const char *json)
{
    tr_test_expect_answer (s_node, to, text, 10000 * tr_test_slowdown (), json);
}

//  --------------------------------------------------------------------------

START_TEST (test_rounds_until_done)
{
    s_start (TR_TEST_LENIENT
             "  - {name: w1, actor: worker}\n"
             "  - {name: w2, actor: worker}\n"
             "  - name: p\n"
             "    actor: planner\n"
             "    params:\n"
             "      decisions:\n"
             "        - {subtasks: [{worker: w1, task: a}, 'w2:  b ']}\n"
             "        - {done: false, subtasks: ['w1: c']}\n"
             "        - {done: true, result: {summary: all done}, subtasks: ['w2: ignored']}\n"
             "  - {name: o, actor: orchestrator, params: {planner: p, workers: [w1, w2]}}\n");
    s_expect_answer ("o", "T", "{\"summary\":\"all done\"}");
    //  Each round the planner sees the task and every result so far, in
    //  round order and, within a round, in the order it listed them.
    tr_test_expect_ledger (
        "p {\"task\":\"T\",\"round\":1,\"max_rounds\":5,\"results\":[]}\n"
        "p {\"task\":\"T\",\"round\":2,\"max_rounds\":5,\"results\":["
        "{\"round\":1,\"worker\":\"w1\",\"task\":\"a\",\"answer\":\"w1:a\"},"
        "{\"round\":1,\"worker\":\"w2\",\"task\":\"b\",\"answer\":\"w2:b\"}]}\n"
        "p {\"task\":\"T\",\"round\":3,\"max_rounds\":5,\"results\":["
        "{\"round\":1,\"worker\":\"w1\",\"task\":\"a\",\"answer\":\"w1:a\"},"
        "{\"round\":1,\"worker\":\"w2\",\"task\":\"b\",\"answer\":\"w2:b\"},"
        "{\"round\":2,\"worker\":\"w1\",\"task\":\"c\",\"answer\":\"w1:c\"}]}\n");
    //  Three subtasks ran (not the one beside done: true).
    ck_assert_uint_eq (tr_test_spans_copy (NULL, 0), 3);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.completed"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.rounds"), 3);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.subtasks"), 3);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.inflight"), 0);
}
END_TEST

START_TEST (test_done_at_once)
{
    s_start (TR_TEST_LENIENT
             "  - {name: w1, actor: worker}\n"
             "  - {name: p, actor: planner, params: {decisions: [{done: true, result: 42}]}}\n"
             "  - {name: o, actor: orchestrator, params: {planner: p, workers: [w1]}}\n");
    s_expect_answer ("o", "easy", "42");
    ck_assert_uint_eq (tr_test_spans_copy (NULL, 0), 0);
}
END_TEST

START_TEST (test_round_bound)
{
    s_start (TR_TEST_LENIENT
             "  - {name: w1, actor: worker}\n"
             "  - {name: p, actor: planner, params: {decisions: [{subtasks: ['w1: again']}]}}\n"
             "  - {name: events, actor: ledger}\n"
             "  - name: o\n"
             "    actor: orchestrator\n"
             "    params: {planner: p, workers: [w1], max_rounds: 3}\n"
             "  - name: r\n"
             "    actor: orchestrator\n"
             "    params: {planner: p, workers: [w1], max_rounds: 2, on_failure: report}\n");
    ck_assert_int_eq (s_ask ("o", "T", NULL), TR_ELIMIT);
    //  Three decisions, the subtasks of the first two run; the third's
    //  would have no round left to be read in.
    ck_assert_uint_eq (tr_test_spans_copy (NULL, 0), 2);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.failed"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.rounds"), 3);
    free (tr_test_ledger_copy (true));
    //  The report says why, with the rounds used and the results.
    ck_assert_int_eq (tr_event_subscribe (s_node, "orchestrator.failed", "events"), TR_OK);
    s_expect_answer ("r", "T",
        "{\"error\":\"TR_ELIMIT\",\"reason\":\"planner 'p' did not say done in 2 rounds "
        "(max_rounds); its last decision gave 1 subtask(s), not run\",\"rounds\":2,"
        "\"results\":[{\"round\":1,\"worker\":\"w1\",\"task\":\"again\",\"answer\":"
        "\"w1:again\"}]}");
    const char *event = "events [\"orchestrator.failed\",{\"orchestrator\":\"r\",\"error\":\"TR_ELIMIT\",\"reason\":"
                        "\"planner 'p' did not say done in 2 rounds (max_rounds); its last "
                        "decision gave 1 subtask(s), not run\",\"rounds\":2}]";
    tr_test_expect_in_ledger (event);
}
END_TEST

START_TEST (test_subtasks_overlap)
{
    //  Three workers of 300 ms each, handed out in one round: they run
    //  at once, which their own clocks show.
    s_start (TR_TEST_LENIENT
             "  - {name: w1, actor: worker, params: {delay: 300ms}}\n"
             "  - {name: w2, actor: worker, params: {delay: 300ms}}\n"
             "  - {name: w3, actor: worker, params: {delay: 300ms}}\n"
             "  - name: p\n"
             "    actor: planner\n"
             "    params:\n"
             "      decisions:\n"
             "        - {subtasks: ['w1: x', 'w2: y', 'w3: z']}\n"
             "        - {done: true, result: ok}\n"
             "  - name: o\n"
             "    actor: orchestrator\n"
             "    params: {planner: p, workers: [w1, w2, w3], limit: 3}\n");
    s_expect_answer ("o", "T", "\"ok\"");
    tr_test_span_t spans [3];
    ck_assert_uint_eq (tr_test_spans_copy (spans, 3), 3);
    //  Every worker had started before any had finished.
    tr_test_expect_overlap (spans, 3);
    ck_assert_int_eq (tr_test_spans_most (), 3);
}
END_TEST

START_TEST (test_limit)
{
    //  Five subtasks, a limit of 2: never more than two workers busy, and
    //  two were.
    s_start (TR_TEST_LENIENT
             "  - {name: w1, actor: worker, params: {delay: 100ms}}\n"
             "  - {name: w2, actor: worker, params: {delay: 100ms}}\n"
             "  - {name: w3, actor: worker, params: {delay: 100ms}}\n"
             "  - {name: w4, actor: worker, params: {delay: 100ms}}\n"
             "  - {name: w5, actor: worker, params: {delay: 100ms}}\n"
             "  - name: p\n"
             "    actor: planner\n"
             "    params:\n"
             "      decisions:\n"
             "        - {subtasks: ['w1: a', 'w2: b', 'w3: c', 'w4: d', 'w5: e']}\n"
             "        - {done: true, result: ok}\n"
             "  - name: o\n"
             "    actor: orchestrator\n"
             "    params: {planner: p, workers: [w1, w2, w3, w4, w5], limit: 2}\n");
    int64_t start = tr_test_now_ms ();
    s_expect_answer ("o", "T", "\"ok\"");
    int64_t took = tr_test_now_ms () - start;
    ck_assert_uint_eq (tr_test_spans_copy (NULL, 0), 5);
    ck_assert_int_eq (tr_test_spans_most (), 2);
    //  Three waves of 100 ms at least.
    ck_assert_msg (took >= 290, "took %lld ms", (long long) took);
    //  Results come in the planner's order, whatever order they ended in.
    char *ledger = tr_test_ledger_copy (true);
    ck_assert_msg (strstr (ledger, "\"answer\":\"w1:a\"},{\"round\":1,\"worker\":\"w2\","
                                   "\"task\":\"b\",\"answer\":\"w2:b\"},{\"round\":1,"
                                   "\"worker\":\"w3\""), "%s", ledger);
    free (ledger);
}
END_TEST

START_TEST (test_unknown_worker)
{
    //  The planner's mistakes come back to it as results with a reason;
    //  the good subtask beside them runs; the planner corrects itself.
    s_start (TR_TEST_LENIENT
             "  - {name: w1, actor: worker}\n"
             "  - {name: w2, actor: worker}\n"
             "  - name: p\n"
             "    actor: planner\n"
             "    params:\n"
             "      decisions:\n"
             "        - subtasks:\n"
             "            - {worker: nobody, task: x}\n"
             "            - 'w1: y'\n"
             "            - no colon here\n"
             "            - 7\n"
             "            - {task: z}\n"
             "            - {worker: w2}\n"
             "            - 'ghost: boo'\n"
             "        - {done: true, result: fixed}\n"
             "  - {name: o, actor: orchestrator, params: {planner: p, workers: [w1, w2]}}\n");
    s_expect_answer ("o", "T", "\"fixed\"");
    tr_test_expect_ledger (
        "p {\"task\":\"T\",\"round\":1,\"max_rounds\":5,\"results\":[]}\n"
        "p {\"task\":\"T\",\"round\":2,\"max_rounds\":5,\"results\":["
        "{\"round\":1,\"worker\":\"nobody\",\"task\":\"x\",\"error\":\"TR_ENOTFOUND\","
        "\"reason\":\"no worker is named 'nobody'; the workers are: w1, w2\"},"
        "{\"round\":1,\"worker\":\"w1\",\"task\":\"y\",\"answer\":\"w1:y\"},"
        "{\"round\":1,\"worker\":\"\",\"task\":\"no colon here\",\"error\":\"TR_EINVAL\","
        "\"reason\":\"a subtask given as text must read 'WORKER: TASK' (workers: w1, w2)\"},"
        "{\"round\":1,\"worker\":\"\",\"task\":7,\"error\":\"TR_EINVAL\",\"reason\":"
        "\"a subtask must be a map {worker, task} or a string 'WORKER: TASK', not an integer\"},"
        "{\"round\":1,\"worker\":\"\",\"task\":\"z\",\"error\":\"TR_EINVAL\",\"reason\":"
        "\"a subtask needs 'worker', the name of one of the workers (w1, w2)\"},"
        "{\"round\":1,\"worker\":\"w2\",\"task\":null,\"error\":\"TR_EINVAL\",\"reason\":"
        "\"a subtask needs 'task', what the worker is asked\"},"
        "{\"round\":1,\"worker\":\"ghost\",\"task\":\"boo\",\"error\":\"TR_ENOTFOUND\","
        "\"reason\":\"no worker is named 'ghost'; the workers are: w1, w2\"}]}\n");
    ck_assert_uint_eq (tr_test_spans_copy (NULL, 0), 1);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.subtasks"), 7);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.subtasks_failed"), 6);
}
END_TEST

START_TEST (test_worker_failures)
{
    //  A worker that fails, one that is too slow and one that does not
    //  exist: each is a result with its error, and the run goes on.
    s_start (TR_TEST_LENIENT
             "  - {name: good, actor: worker}\n"
             "  - {name: bad, actor: worker, params: {fail: true}}\n"
             "  - {name: slow, actor: worker, params: {delay: 1s}}\n"
             "  - name: p\n"
             "    actor: planner\n"
             "    params:\n"
             "      decisions:\n"
             "        - {subtasks: ['bad: a', 'slow: b', 'absent: c', 'good: d']}\n"
             "        - {done: true, result: coped}\n"
             "  - name: o\n"
             "    actor: orchestrator\n"
             "    params: {planner: p, workers: [good, bad, slow, absent], timeout: 300ms}\n");
    s_expect_answer ("o", "T", "\"coped\"");
    tr_test_expect_ledger (
        "p {\"task\":\"T\",\"round\":1,\"max_rounds\":5,\"results\":[]}\n"
        "p {\"task\":\"T\",\"round\":2,\"max_rounds\":5,\"results\":["
        "{\"round\":1,\"worker\":\"bad\",\"task\":\"a\",\"error\":\"TR_EHANDLER\","
        "\"reason\":\"worker 'bad' failed: handler failed\"},"
        "{\"round\":1,\"worker\":\"slow\",\"task\":\"b\",\"error\":\"TR_ETIMEDOUT\","
        "\"reason\":\"worker 'slow' failed: timed out\"},"
        "{\"round\":1,\"worker\":\"absent\",\"task\":\"c\",\"error\":\"TR_ENOACTOR\","
        "\"reason\":\"worker 'absent' could not be asked: no such actor\"},"
        "{\"round\":1,\"worker\":\"good\",\"task\":\"d\",\"answer\":\"good:d\"}]}\n");
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.subtasks_failed"), 3);
}
END_TEST

START_TEST (test_bad_decisions)
{
    //  A decision that is not one ends the run with TR_EOUTPUT; the
    //  report says what was wrong.
    s_start (TR_TEST_LENIENT
             "  - {name: w1, actor: worker}\n"
             "  - {name: p1, actor: planner, params: {decisions: [just text]}}\n"
             "  - {name: p2, actor: planner, params: {decisions: [{done: yes please}]}}\n"
             "  - {name: p3, actor: planner, params: {decisions: [{done: true}]}}\n"
             "  - {name: p4, actor: planner, params: {decisions: [{done: false, subtasks: []}]}}\n"
             "  - {name: p5, actor: planner, params: {decisions: [{subtasks: ['w1: a', 'w1: b', 'w1: c']}]}}\n"
             "  - {name: p6, actor: planner, params: {decisions: [{subtasks: {w1: a}}]}}\n"
             "  - {name: p7, actor: planner, params: {decisions: [fail]}}\n"
             "  - {name: o1, actor: orchestrator, params: {planner: p1, workers: [w1]}}\n"
             "  - {name: o2, actor: orchestrator, params: {planner: p2, workers: [w1], on_failure: report}}\n"
             "  - {name: o3, actor: orchestrator, params: {planner: p3, workers: [w1], on_failure: report}}\n"
             "  - {name: o4, actor: orchestrator, params: {planner: p4, workers: [w1], on_failure: report}}\n"
             "  - {name: o5, actor: orchestrator, params: {planner: p5, workers: [w1], max_subtasks: 2, on_failure: report}}\n"
             "  - {name: o6, actor: orchestrator, params: {planner: p6, workers: [w1], on_failure: report}}\n"
             "  - {name: o7, actor: orchestrator, params: {planner: p7, workers: [w1]}}\n"
             "  - {name: o8, actor: orchestrator, params: {planner: p7, workers: [w1], on_failure: report}}\n"
             "  - {name: o9, actor: orchestrator, params: {planner: p0, workers: [w1], on_failure: report}}\n");
    ck_assert_int_eq (s_ask ("o1", "T", NULL), TR_EOUTPUT);
    s_expect_answer ("o2", "T", "{\"error\":\"TR_EOUTPUT\",\"reason\":\"planner 'p2' answered "
                     "'done' as a string in round 1, not true or false\",\"rounds\":1,"
                     "\"results\":[]}");
    s_expect_answer ("o3", "T", "{\"error\":\"TR_EOUTPUT\",\"reason\":\"planner 'p3' said done "
                     "in round 1 without a 'result'\",\"rounds\":1,\"results\":[]}");
    s_expect_answer ("o4", "T", "{\"error\":\"TR_EOUTPUT\",\"reason\":\"planner 'p4' answered "
                     "neither done nor subtasks in round 1\",\"rounds\":1,\"results\":[]}");
    s_expect_answer ("o5", "T", "{\"error\":\"TR_EOUTPUT\",\"reason\":\"planner 'p5' gave 3 "
                     "subtasks in round 1; max_subtasks is 2\",\"rounds\":1,\"results\":[]}");
    s_expect_answer ("o6", "T", "{\"error\":\"TR_EOUTPUT\",\"reason\":\"planner 'p6' answered "
                     "'subtasks' as a mapping in round 1, not a list\",\"rounds\":1,"
                     "\"results\":[]}");
    //  A planner that fails ends the run with its error.
    ck_assert_int_eq (s_ask ("o7", "T", NULL), TR_EHANDLER);
    s_expect_answer ("o8", "T", "{\"error\":\"TR_EHANDLER\",\"reason\":\"planner 'p7' failed "
                     "in round 1: handler failed\",\"rounds\":1,\"results\":[]}");
    s_expect_answer ("o9", "T", "{\"error\":\"TR_ENOACTOR\",\"reason\":\"planner 'p0' could "
                     "not be asked in round 1: no such actor\",\"rounds\":1,\"results\":[]}");
    ck_assert_uint_eq (tr_test_spans_copy (NULL, 0), 0);
}
END_TEST

START_TEST (test_tells_and_events)
{
    s_start (TR_TEST_LENIENT
             "  - {name: w1, actor: worker}\n"
             "  - {name: events, actor: ledger}\n"
             "  - name: p\n"
             "    actor: planner\n"
             "    params:\n"
             "      decisions:\n"
             "        - {subtasks: ['w1: a', 'nobody: b']}\n"
             "        - {done: true, result: ok}\n"
             "  - {name: o, actor: orchestrator, params: {planner: p, workers: [w1]}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "orchestrator.", "events"), TR_OK);
    ck_assert_int_eq (tr_tell (s_node, "o", "\xa1z", 2, NULL), TR_OK);
    const char *done = "events [\"orchestrator.completed\",{\"orchestrator\":\"o\","
                       "\"rounds\":2,\"results\":2}]\n";
    tr_test_expect_in_ledger (done);
    char *ledger = tr_test_ledger_copy (true);
    ck_assert_msg (strstr (ledger, "events [\"orchestrator.round\",{\"orchestrator\":\"o\","
                                   "\"round\":1,\"subtasks\":2,\"failed\":1}]\n"), "%s", ledger);
    free (ledger);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.completed"), 1);
}
END_TEST

START_TEST (test_runs_at_once)
{
    //  Runs do not wait for each other: four askers, each run a round of
    //  one 300 ms subtask on its own worker, end together.
    s_start (TR_TEST_LENIENT
             "  - {name: workers, actor: pool, params: {members: [w1, w2, w3, w4], strategy: least_busy}}\n"
             "  - {name: w1, actor: worker, params: {delay: 300ms}}\n"
             "  - {name: w2, actor: worker, params: {delay: 300ms}}\n"
             "  - {name: w3, actor: worker, params: {delay: 300ms}}\n"
             "  - {name: w4, actor: worker, params: {delay: 300ms}}\n"
             "  - name: p\n"
             "    actor: planner\n"
             "    params:\n"
             "      decisions:\n"
             "        - {subtasks: ['workers: job']}\n"
             "        - {done: true, result: ok}\n"
             "  - {name: o, actor: orchestrator, params: {planner: p, workers: [workers]}}\n");
    tr_body_t body;
    tr_body_str (&body, "T", 1);
    int64_t start = tr_test_now_ms ();
    //  Sent as tells, watched through the counter.
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq (tr_tell (s_node, "o", body.data, body.size, NULL), TR_OK);
    int64_t deadline = start + 5000 * tr_test_slowdown ();
    while (tr_test_info (s_node, "o", "orchestrator.completed") < 4 && tr_test_now_ms () < deadline)
        usleep (2000);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.completed"), 4);
    //  The four subtasks (through a pool) overlapped.
    ck_assert_uint_eq (tr_test_spans_copy (NULL, 0), 4);
    ck_assert_int_ge (tr_test_spans_most (), 3);
}
END_TEST

START_TEST (test_llm_agents)
{
    //  A lead (an llm agent with a signature on the offline backend)
    //  plans two subtasks for two llm workers, then writes its result
    //  from what the first one found.
    s_start (TR_TEST_LENIENT
             "  - name: lead\n"
             "    actor: llm\n"
             "    params:\n"
             "      signature:\n"
             "        instructions: Plan research on the task, then write the result.\n"
             "        inputs: [{name: task}, {name: round}, {name: max_rounds}, {name: results}]\n"
             "        outputs:\n"
             "          - {name: subtasks, type: list}\n"
             "          - {name: done, type: bool}\n"
             "          - {name: result}\n"
             "      offline:\n"
             "        rules:\n"
             "          - match: \"round: 1\\n\"\n"
             "            answer: {subtasks: ['facts: population of Lyon', 'history: founding of Lyon'], done: false, result: ''}\n"
             "          - regex: '\"worker\":\"facts\",\"task\":\"[^\"]*\",\"answer\":\"([^\"]*)\"'\n"
             "            answer: {subtasks: [], done: true, result: 'Report: $1'}\n"
             "  - name: facts\n"
             "    actor: llm\n"
             "    params:\n"
             "      offline:\n"
             "        latency: 100ms\n"
             "        rules: [{regex: 'population of (.*)', answer: 'About 520000 people live in $1.'}]\n"
             "  - name: history\n"
             "    actor: llm\n"
             "    params: {offline: {latency: 100ms, rules: [{match: founding, answer: 'Founded in 43 BC.'}]}}\n"
             "  - {name: o, actor: orchestrator, params: {planner: lead, workers: [facts, history]}}\n");
    s_expect_answer ("o", "Write about Lyon", "\"Report: About 520000 people live in Lyon.\"");
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.rounds"), 2);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.subtasks"), 2);
    ck_assert_int_eq (tr_test_info (s_node, "o", "orchestrator.subtasks_failed"), 0);
}
END_TEST

START_TEST (test_remote_worker)
{
    //  A worker on another node, reached through a real broker: named
    //  like any other.
    tr_test_remote_t r;
    tr_test_remote_start (&r);
    ck_assert_int_eq (tr_spawn (r.b, "far", &s_worker_type.behaviour, NULL, NULL, NULL), TR_OK);
    const char *yaml = "name: t\n"
                       "children:\n"
                       "  - {name: near, actor: worker}\n"
                       "  - name: p\n"
                       "    actor: planner\n"
                       "    params:\n"
                       "      decisions:\n"
                       "        - {subtasks: ['near: x', 'far: y']}\n"
                       "        - {done: true, result: both}\n"
                       "  - {name: o, actor: orchestrator, params: {planner: p, workers: [near, far]}}\n";
    tr_test_tree_start (r.a, yaml, "orchestrator.yaml", &s_tree, &s_sup);
    //  Until node b's name is known at the broker, far is TR_ENOACTOR
    //  (a result the planner is given): ask until the run has both.
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    char *ledger = NULL;
    for (;;) {
        free (tr_test_ledger_copy (true));
        char *answer = NULL;
        ck_assert_int_eq (tr_test_ask_json (r.a, "o", "T", 2000 * tr_test_slowdown (),
                                            &answer), TR_OK);
        ck_assert_str_eq (answer, "\"both\"");
        free (answer);
        ledger = tr_test_ledger_copy (true);
        if (strstr (ledger, "\"answer\":\"far:y\"") || tr_test_now_ms () >= deadline)
            break;
        free (ledger);
        usleep (20 * 1000);
    }
    ck_assert_msg (strstr (ledger, "{\"round\":1,\"worker\":\"near\",\"task\":\"x\","
                                   "\"answer\":\"near:x\"},{\"round\":1,\"worker\":\"far\","
                                   "\"task\":\"y\",\"answer\":\"far:y\"}"), "%s", ledger);
    free (ledger);
    tr_test_tree_stop (&s_tree, &s_sup);
    tr_test_remote_stop (&r);
}
END_TEST

//  Counts the params not refused with the message expected (each shown
//  on standard error), so that one run shows them all.
static int s_mismatches;

static void
s_expect_error (const char *params, const char *expect)
{
    s_mismatches += !tr_test_params_refused (s_node, "orchestrator.yaml", "name: t\n"
                                             "children:\n"
                                             "  - {name: w, actor: worker}\n"
                                             "  - name: o\n"
                                             "    actor: orchestrator\n", params, expect,
                                             TR_TEST_WHOLE);
}

START_TEST (test_bad_params)
{
    s_expect_error ("{workers: [w]}", "orchestrator.yaml:6:13: missing parameter 'planner' of "
                    "actor type 'orchestrator' (a string: the actor asked for each round's "
                    "decision {done, result, subtasks})");
    s_expect_error ("{planner: w}", "orchestrator.yaml:6:13: missing parameter 'workers' of "
                    "actor type 'orchestrator' (a sequence: the actor names subtasks may go to)");
    s_expect_error ("{planner: w, workers: w}", "orchestrator.yaml:6:35: parameter 'workers' of "
                    "actor type 'orchestrator' must be a sequence, not 'w'");
    s_expect_error ("{planner: w, workers: [w], plan: x}",
                    "orchestrator.yaml:6:40: unknown parameter 'plan' of actor type "
                    "'orchestrator'; expected one of: planner, workers, max_rounds, "
                    "max_subtasks, limit, timeout, on_failure");
    s_expect_error ("{planner: 'a b', workers: [w]}",
                    "orchestrator.yaml:6:23: o: 'planner' is not a valid actor name: 'a b'");
    s_expect_error ("{planner: w, workers: []}",
                    "orchestrator.yaml:6:35: o: 'workers' must be a list of at least one "
                    "actor name");
    s_expect_error ("{planner: w, workers: [w, x, w]}",
                    "orchestrator.yaml:6:42: o: 'workers' names 'w' twice (items 1 and 3)");
    s_expect_error ("{planner: w, workers: [w, 5]}",
                    "orchestrator.yaml:6:39: o: 'workers' item 2 must be an actor name, not "
                    "an integer");
    s_expect_error ("{planner: w, workers: [w], max_rounds: 0}",
                    "orchestrator.yaml:6:52: o: 'max_rounds' must be from 1 to 1000, not 0");
    s_expect_error ("{planner: w, workers: [w], max_subtasks: 1001}",
                    "orchestrator.yaml:6:54: o: 'max_subtasks' must be from 1 to 1000, not 1001");
    s_expect_error ("{planner: w, workers: [w], limit: -1}",
                    "orchestrator.yaml:6:47: o: 'limit' must be from 1 to 1000, not -1");
    s_expect_error ("{planner: w, workers: [w], timeout: 0}",
                    "orchestrator.yaml:6:49: o: 'timeout' must be from 1 ms to 2147483647 ms, "
                    "not 0 ms");
    s_expect_error ("{planner: w, workers: [w], on_failure: shrug}",
                    "orchestrator.yaml:6:52: o: 'on_failure' must be one of error, report, "
                    "not 'shrug'");
    //  Nested: the item's own line and column.
    s_expect_error ("\n"
                    "      planner: w\n"
                    "      workers:\n"
                    "        - w\n"
                    "        - 'not a name'\n",
                    "orchestrator.yaml:10:11: o: 'workers' item 2 is not a valid actor name: "
                    "'not a name'");
    ck_assert_int_eq (s_mismatches, 0);
}
END_TEST

START_TEST (test_bad_params_from_c)
{
    //  Spawned from C with parameters of its own, the orchestrator checks
    //  them when it starts, and its supervisor gives the reason.
    char *reason = tr_test_start_error (s_node, "orchestrator", "o",
                                        "{\"planner\": \"p\", \"limit\": 2}");
    ck_assert_msg (reason && strstr (reason, "orchestrator 'o': 'workers' must be a list of at "
                                             "least one actor name"), "%s", reason);
    free (reason);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_orchestrator");
    TCase *tc = tcase_create ("orchestrator");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_rounds_until_done);
    tcase_add_test (tc, test_done_at_once);
    tcase_add_test (tc, test_round_bound);
    tcase_add_test (tc, test_subtasks_overlap);
    tcase_add_test (tc, test_limit);
    tcase_add_test (tc, test_unknown_worker);
    tcase_add_test (tc, test_worker_failures);
    tcase_add_test (tc, test_bad_decisions);
    tcase_add_test (tc, test_tells_and_events);
    tcase_add_test (tc, test_runs_at_once);
    tcase_add_test (tc, test_llm_agents);
    tcase_add_test (tc, test_remote_worker);
    tcase_add_test (tc, test_bad_params);
    tcase_add_test (tc, test_bad_params_from_c);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
