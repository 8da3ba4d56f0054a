/*  tr_chain_test.c - tests of the chain (actors/tr_chain.c), started from
    tree files.

    Steps in order, each given the one before's answer; text gates and
    gate actors (an llm agent with a signature on the offline backend);
    on a failed step, a gate that says no, a timeout: compensations for
    the steps already done, in reverse, each given {step, input, output};
    a compensation that fails; the asker's error or, with on_failure:
    report, the map saying which step failed and whether compensation
    succeeded; the chain.failed event; runs overlapping (measured); a step
    on another node through a real broker; tells; bad parameters.
*/

#include "tr_test.h"
#include "tr_test_tree.h"

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  What the ledger actors saw goes into the ledger, in order: "NAME JSON"
//  lines (tr_test_tree.h).

//  --------------------------------------------------------------------------
//  Test actors

//  step: answers a string ask with the string plus `add`, after `delay`;
//  fails with `fail: true`.
typedef struct {
    char add [32];
    int64_t delay_ms;
    bool fail;
} s_step_t;

static const tr_param_spec_t s_step_params [] = {
    { "add", TR_PARAM_STRING, false, "text appended" },
    { "delay", TR_PARAM_DURATION, false, "time each answer takes" },
    { "fail", TR_PARAM_BOOL, false, "fail every message" },
    { .key = NULL }
};

static int
s_step_init (tr_actor_t *self, void *arg, void **state_p)
{
    s_step_t *step = (s_step_t *) calloc (1, sizeof *step);
    const tr_params_t *params = (const tr_params_t *) arg;
    const char *add = NULL;
    size_t len = 0;
    snprintf (step->add, sizeof step->add, "-%s", tr_actor_name (self));
    if (params) {
        if (tr_params_str (params, "add", &add, &len) == TR_OK)
            snprintf (step->add, sizeof step->add, "%.*s", (int) len, add);
        tr_params_duration (params, "delay", &step->delay_ms);
        tr_params_bool (params, "fail", &step->fail);
    }
    *state_p = step;
    return 0;
}

static int
s_step_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_step_t *step = (s_step_t *) state;
    if (step->delay_ms)
        usleep ((useconds_t) step->delay_ms * 1000);
    if (step->fail)
        return -1;
    const char *text = "";
    size_t len = 0;
    tr_msg_str (msg, &text, &len);
    char out [200];
    int n = snprintf (out, sizeof out, "%.*s%s", (int) len, text, step->add);
    tr_body_t body;
    tr_body_str (&body, out, (size_t) n);
    return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply (msg, body.data, body.size): 0;
}

static const tr_actor_type_t s_step_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "step",
    .summary = "appends to a string (chain tests)",
    .behaviour = { s_step_init, s_step_handle, tr_test_free_state },
    .params = s_step_params,
};

//  --------------------------------------------------------------------------
//  Helpers

static void
s_setup (void)
{
    tr_test_setup (&s_node, (const tr_actor_type_t *[]) { &s_step_type, NULL });
    tr_test_ledger_register ();
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
}

static void
s_start_on (tr_node_t *node, const char *yaml)
{
    tr_test_tree_start (node, yaml, "chain.yaml", &s_tree, &s_sup);
}

static void
s_start (const char *yaml)
{
    s_start_on (s_node, yaml);
}

static int
s_ask (const char *to, const char *text, char **answer)
{
    return tr_test_ask_json (s_node, to, text, 5000 * tr_test_slowdown (), answer);
}

static void
s_expect_answer (const char *chain, const char *text, const char *json)
{
    tr_test_expect_answer (s_node, chain, text, 5000 * tr_test_slowdown (), json);
}

//  --------------------------------------------------------------------------

START_TEST (test_order)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: step}\n"
             "  - {name: b, actor: step}\n"
             "  - {name: c, actor: step}\n"
             "  - {name: abc, actor: chain, params: {steps: [a, b, c]}}\n"
             "  - {name: cba, actor: chain, params: {steps: [c, b, a]}}\n"
             "  - {name: one, actor: chain, params: {steps: [{actor: b}]}}\n");
    s_expect_answer ("abc", "x", "\"x-a-b-c\"");
    s_expect_answer ("cba", "x", "\"x-c-b-a\"");
    s_expect_answer ("one", "", "\"-b\"");
    ck_assert_int_eq (tr_test_info (s_node, "abc", "chain.completed"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "abc", "chain.inflight"), 0);
}
END_TEST

START_TEST (test_step_fails_compensation_in_reverse)
{
    s_start (TR_TEST_LENIENT
             "  - {name: a, actor: step}\n"
             "  - {name: b, actor: step}\n"
             "  - {name: c, actor: step}\n"
             "  - {name: bad, actor: step, params: {fail: true}}\n"
             "  - {name: undo-a, actor: ledger}\n"
             "  - {name: undo-b, actor: ledger}\n"
             "  - {name: undo-bad, actor: ledger}\n"
             "  - name: saga\n"
             "    actor: chain\n"
             "    params:\n"
             "      steps:\n"
             "        - {actor: a, compensate: undo-a}\n"
             "        - c\n"
             "        - {actor: b, compensate: undo-b}\n"
             "        - {actor: bad, compensate: undo-bad}\n"
             "  - name: told\n"
             "    actor: chain\n"
             "    params:\n"
             "      on_failure: report\n"
             "      steps:\n"
             "        - {actor: a, compensate: undo-a}\n"
             "        - c\n"
             "        - {actor: b, compensate: undo-b}\n"
             "        - {actor: bad, compensate: undo-bad}\n");
    //  The asker gets the step's error; b then a are undone (c has no
    //  compensation, bad did not do its work), each with what it was
    //  given and what it answered.
    ck_assert_int_eq (s_ask ("saga", "x", NULL), TR_EHANDLER);
    tr_test_expect_ledger_settles (
        "undo-b {\"step\":\"b\",\"input\":\"x-a-c\",\"output\":\"x-a-c-b\"}\n"
        "undo-a {\"step\":\"a\",\"input\":\"x\",\"output\":\"x-a\"}\n");
    ck_assert_int_eq (tr_test_info (s_node, "saga", "chain.failed"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "saga", "chain.uncompensated"), 0);
    //  With on_failure: report, the asker learns which step failed and
    //  whether the compensation succeeded.
    s_expect_answer ("told", "y",
                     "{\"failed\":\"bad\",\"index\":4,\"error\":\"TR_EHANDLER\","
                     "\"compensated\":true,\"compensations\":[{\"step\":\"b\"},{\"step\":\"a\"}]}");
    tr_test_expect_ledger_settles (
        "undo-b {\"step\":\"b\",\"input\":\"y-a-c\",\"output\":\"y-a-c-b\"}\n"
        "undo-a {\"step\":\"a\",\"input\":\"y\",\"output\":\"y-a\"}\n");
}
END_TEST

START_TEST (test_compensation_fails)
{
    s_start (TR_TEST_LENIENT
             "  - {name: a, actor: step}\n"
             "  - {name: b, actor: step}\n"
             "  - {name: bad, actor: step, params: {fail: true}}\n"
             "  - {name: undo-a, actor: ledger}\n"
             "  - {name: undo-b, actor: ledger, params: {fail: true}}\n"
             "  - name: saga\n"
             "    actor: chain\n"
             "    params:\n"
             "      on_failure: report\n"
             "      steps:\n"
             "        - {actor: a, compensate: undo-a}\n"
             "        - {actor: b, compensate: undo-b}\n"
             "        - {actor: b, compensate: nobody}\n"
             "        - bad\n");
    //  undo-b fails and nobody does not exist: the others still run, and
    //  the report says which failed.
    s_expect_answer ("saga", "x",
                     "{\"failed\":\"bad\",\"index\":4,\"error\":\"TR_EHANDLER\","
                     "\"compensated\":false,\"compensations\":[{\"step\":\"b\",\"error\":"
                     "\"TR_ENOACTOR\"},{\"step\":\"b\",\"error\":\"TR_EHANDLER\"},"
                     "{\"step\":\"a\"}]}");
    tr_test_expect_ledger_settles (
        "undo-b {\"step\":\"b\",\"input\":\"x-a\",\"output\":\"x-a-b\"}\n"
        "undo-a {\"step\":\"a\",\"input\":\"x\",\"output\":\"x-a\"}\n");
    ck_assert_int_eq (tr_test_info (s_node, "saga", "chain.uncompensated"), 1);
}
END_TEST

START_TEST (test_text_gates)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: step}\n"
             "  - {name: b, actor: step}\n"
             "  - {name: undo-a, actor: ledger}\n"
             "  - {name: undo-b, actor: ledger}\n"
             "  - name: gated\n"
             "    actor: chain\n"
             "    params:\n"
             "      steps:\n"
             "        - {actor: a, compensate: undo-a, gate: {regex: '^ok'}}\n"
             "        - {actor: b, compensate: undo-b, gate: {match: '-a-'}}\n");
    s_expect_answer ("gated", "ok", "\"ok-a-b\"");
    s_expect_answer ("gated", "ok then", "\"ok then-a-b\"");
    tr_test_expect_ledger_settles ("");
    //  a's gate says no: only a is undone, b never runs.
    ck_assert_int_eq (s_ask ("gated", "nope", NULL), TR_EOUTPUT);
    tr_test_expect_ledger_settles (
        "undo-a {\"step\":\"a\",\"input\":\"nope\",\"output\":\"nope-a\"}\n");
}
END_TEST

START_TEST (test_text_gate_rejects_last)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: step}\n"
             "  - {name: b, actor: step}\n"
             "  - {name: undo-a, actor: ledger}\n"
             "  - {name: undo-b, actor: ledger}\n"
             "  - name: gated\n"
             "    actor: chain\n"
             "    params:\n"
             "      steps:\n"
             "        - {actor: a, compensate: undo-a}\n"
             "        - {actor: b, compensate: undo-b, gate: {match: 'zzz'}}\n");
    ck_assert_int_eq (s_ask ("gated", "q", NULL), TR_EOUTPUT);
    tr_test_expect_ledger_settles (
        "undo-b {\"step\":\"b\",\"input\":\"q-a\",\"output\":\"q-a-b\"}\n"
        "undo-a {\"step\":\"a\",\"input\":\"q\",\"output\":\"q-a\"}\n");
}
END_TEST

START_TEST (test_llm_gate)
{
    //  A writer (offline llm) and a reviewer with a signature whose
    //  boolean output `approved` is the gate; the reviewer turns down
    //  drafts that mention "rumour".
    s_start (TR_TEST_LENIENT
             "  - {name: writer, actor: llm, params: {offline: {latency: 10ms}}}\n"
             "  - name: reviewer\n"
             "    actor: llm\n"
             "    params:\n"
             "      signature:\n"
             "        instructions: Approve drafts that state facts.\n"
             "        inputs: [{name: draft}]\n"
             "        outputs: [{name: approved, type: bool}]\n"
             "      offline:\n"
             "        rules:\n"
             "          - {match: rumour, answer: {approved: false}}\n"
             "          - {match: '', answer: {approved: true}}\n"
             "  - {name: publish, actor: step, params: {add: ' [published]'}}\n"
             "  - {name: retract, actor: ledger}\n"
             "  - {name: shy, actor: ledger}\n"
             "  - name: news\n"
             "    actor: chain\n"
             "    params:\n"
             "      steps:\n"
             "        - actor: writer\n"
             "          compensate: retract\n"
             "          gate: {actor: reviewer, output: approved}\n"
             "        - publish\n"
             "  - name: plain\n"
             "    actor: chain\n"
             "    params:\n"
             "      steps:\n"
             "        - {actor: writer, gate: {actor: shy}}\n");
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("news", "The bridge reopens on Monday.", &answer), TR_OK);
    ck_assert_msg (strstr (answer, "bridge") && strstr (answer, "[published]"), "%s", answer);
    free (answer);
    ck_assert_int_eq (s_ask ("news", "A rumour about the mayor.", NULL), TR_EOUTPUT);
    char *ledger = tr_test_ledger_wait ("retract", 3000 * tr_test_slowdown ());
    ck_assert_msg (strncmp (ledger, "retract {\"step\":\"writer\",\"input\":\"A rumour about "
                                    "the mayor.\",\"output\":\"", 70) == 0, "%s", ledger);
    free (ledger);
    //  A gate actor answering true (the plain boolean) passes.
    ck_assert_int_eq (s_ask ("plain", "hello", NULL), TR_OK);
}
END_TEST

START_TEST (test_timeout)
{
    s_start (TR_TEST_LENIENT
             "  - {name: a, actor: step}\n"
             "  - {name: slow, actor: step, params: {delay: 2s}}\n"
             "  - {name: undo-a, actor: ledger}\n"
             "  - name: saga\n"
             "    actor: chain\n"
             "    params:\n"
             "      timeout: 200ms\n"
             "      steps: [{actor: a, compensate: undo-a}, slow]\n");
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("saga", "t", NULL), TR_ETIMEDOUT);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_msg (took >= 190 && took < 1500 * tr_test_slowdown (), "took %lld ms",
                   (long long) took);
    tr_test_expect_ledger_settles ("undo-a {\"step\":\"a\",\"input\":\"t\",\"output\":\"t-a\"}\n");
}
END_TEST

START_TEST (test_runs_overlap)
{
    //  Two offline llm steps of 200 ms each: a run takes 400 ms; five runs
    //  at once take about that, not 2 s.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: m1, actor: llm, params: {offline: {latency: 200ms}}}\n"
             "  - {name: m2, actor: llm, params: {offline: {latency: 200ms}}}\n"
             "  - {name: both, actor: chain, params: {steps: [m1, m2]}}\n");
    tr_test_asker_t askers [5];
    int64_t start = tr_test_now_ms ();
    for (int i = 0; i < 5; i++)
        tr_test_asker_start (&askers [i], s_node, "both", "\"go\"", 5000 * tr_test_slowdown (),
                             0);
    for (int i = 0; i < 5; i++) {
        tr_test_asker_join (&askers [i]);
        ck_assert_int_eq (askers [i].rc, TR_OK);
        ck_assert (strlen (askers [i].answer) > 2);
        free (askers [i].answer);
    }
    int64_t took = tr_test_now_ms () - start;
    ck_assert_msg (took >= 390, "5 runs in %lld ms", (long long) took);
    ck_assert_msg (took < 1200 * tr_test_slowdown (), "5 runs in %lld ms: no overlap",
                   (long long) took);
}
END_TEST

START_TEST (test_tells_and_event)
{
    s_start (TR_TEST_LENIENT
             "  - {name: a, actor: step}\n"
             "  - {name: bad, actor: step, params: {fail: true}}\n"
             "  - {name: undo-a, actor: ledger}\n"
             "  - {name: events, actor: ledger}\n"
             "  - name: saga\n"
             "    actor: chain\n"
             "    params: {steps: [{actor: a, compensate: undo-a}, bad]}\n"
             "  - {name: fine, actor: chain, params: {steps: [a, a]}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "chain.", "events"), TR_OK);
    ck_assert_int_eq (tr_tell (s_node, "fine", "\xa1z", 2, NULL), TR_OK);
    tr_test_expect_info (s_node, "fine", "chain.completed", 1);
    //  A told run that fails is compensated and published like an asked one.
    ck_assert_int_eq (tr_tell (s_node, "saga", "\xa1z", 2, NULL), TR_OK);
    free (tr_test_ledger_wait ("undo-a", 3000 * tr_test_slowdown ()));
    char *ledger = tr_test_ledger_wait ("events", 3000 * tr_test_slowdown ());
    ck_assert_msg (strstr (ledger, "undo-a {\"step\":\"a\",\"input\":\"z\",\"output\":\"z-a\"}"),
                   "%s", ledger);
    ck_assert_msg (strstr (ledger, "\"chain\":\"saga\",\"failed\":\"bad\",\"index\":2,"
                                   "\"error\":\"TR_EHANDLER\",\"compensated\":true"), "%s", ledger);
    free (ledger);
}
END_TEST

START_TEST (test_remote_step)
{
    tr_test_remote_t r;
    tr_test_remote_start (&r);
    ck_assert_int_eq (tr_spawn (r.b, "far", &s_step_type.behaviour, NULL, NULL, NULL), TR_OK);
    s_start_on (r.a, "name: t\n"
                     "children:\n"
                     "  - {name: near, actor: step}\n"
                     "  - {name: c, actor: chain, params: {steps: [near, far, near]}}\n");
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    char *answer = NULL;
    int rc;
    while ((rc = tr_test_ask_json (r.a, "c", "r", 1000, &answer)) != TR_OK
           && tr_test_now_ms () < deadline)
        usleep (20 * 1000);
    ck_assert_int_eq (rc, TR_OK);
    ck_assert_str_eq (answer, "\"r-near-far-near\"");
    free (answer);
    tr_test_tree_stop (&s_tree, &s_sup);
    tr_test_remote_stop (&r);
}
END_TEST

static void
s_expect_error (const char *params, const char *expect)
{
    tr_test_expect_params_error (s_node, "chain.yaml", "name: t\n"
                                 "children:\n"
                                 "  - {name: a, actor: step}\n"
                                 "  - name: c\n"
                                 "    actor: chain\n", params, expect, TR_TEST_PART);
}

START_TEST (test_bad_params)
{
    s_expect_error ("{steps: a}",
                    "chain.yaml:6:21: parameter 'steps' of actor type 'chain' must be a sequence");
    s_expect_error ("{steps: [a], timeout: true}",
                    "chain.yaml:6:35: parameter 'timeout' of actor type 'chain' must be a duration");
    s_expect_error ("{step: [a]}", "chain.yaml:6:14: unknown parameter 'step'");
    s_expect_error ("{timeout: 1s}", "missing parameter 'steps' of actor type 'chain'");
    s_expect_error ("{steps: []}", "c: 'steps' must be a list of at least one step");
    s_expect_error ("{steps: [a, 3]}",
                    "c: steps item 2 must be an actor name or a mapping, not an integer");
    s_expect_error ("{steps: ['a b']}", "c: 'steps item 1' is not a valid actor name");
    s_expect_error ("{steps: [{compensate: a}]}", "c: steps item 1 needs 'actor'");
    s_expect_error ("{steps: [{actor: a, undo: a}]}",
                    "c: unknown key 'undo' in steps item 1; expected one of: actor, "
                    "gate, compensate");
    s_expect_error ("{steps: [{actor: a, gate: {}}]}",
                    "steps item 1 'gate' needs exactly one of actor, match, regex");
    s_expect_error ("{steps: [{actor: a, gate: {match: x, actor: a}}]}",
                    "needs exactly one of actor, match, regex");
    s_expect_error ("{steps: [{actor: a, gate: {regex: '['}}]}",
                    "steps item 1 'gate' 'regex' '[' does not compile");
    s_expect_error ("{steps: [{actor: a, gate: {match: x, output: y}}]}",
                    "'output' is only for a gate actor");
    s_expect_error ("{steps: [{actor: a, gate: {actor: a, field: y}}]}",
                    "'field' is only for match and regex");
    s_expect_error ("{steps: [{actor: a, gate: yes}]}", "steps item 1 'gate' must be a mapping");
    s_expect_error ("{steps: [a], on_failure: shrug}",
                    "c: 'on_failure' must be one of error, report, not 'shrug'");
    //  Found when the file is loaded, at the value's own line and column.
    const char *yaml = "name: t\n"
                    "children:\n"
                    "  - {name: a, actor: step}\n"
                    "  - name: c\n"
                    "    actor: chain\n"
                    "    params:\n"
                    "      steps:\n"
                    "        - a\n"
                    "        - actor: a\n"
                    "          gate: {regex: \"[\"}\n";
    char *error = tr_test_tree_error (s_node, yaml, "chain.yaml");
    ck_assert_msg (strstr (error, "chain.yaml:10:25: c: steps item 2 'gate' 'regex' '[' does not "
                                  "compile"), "%s", error);
    free (error);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_chain");
    TCase *tc = tcase_create ("chain");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_order);
    tcase_add_test (tc, test_step_fails_compensation_in_reverse);
    tcase_add_test (tc, test_compensation_fails);
    tcase_add_test (tc, test_text_gates);
    tcase_add_test (tc, test_text_gate_rejects_last);
    tcase_add_test (tc, test_llm_gate);
    tcase_add_test (tc, test_timeout);
    tcase_add_test (tc, test_runs_overlap);
    tcase_add_test (tc, test_tells_and_event);
    tcase_add_test (tc, test_remote_step);
    tcase_add_test (tc, test_bad_params);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
