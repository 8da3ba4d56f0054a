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

#include <pthread.h>

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  What the ledger actors saw, in order: "NAME JSON" lines.
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_ledger [8192];

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

static void
s_free_state (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    free (state);
}

static const tr_actor_type_t s_step_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "step",
    .summary = "appends to a string (chain tests)",
    .behaviour = { s_step_init, s_step_handle, s_free_state },
    .params = s_step_params,
};

//  ledger: records each message as "NAME JSON\n" and answers true; with
//  `fail: true` records and fails.
static int
s_ledger_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    bool *fail = (bool *) calloc (1, sizeof *fail);
    if (arg)
        tr_params_bool ((const tr_params_t *) arg, "fail", fail);
    *state_p = fail;
    return 0;
}

static int
s_ledger_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    char *json = NULL;
    size_t len = 0;
    ck_assert_int_eq (tr__json_from_msgpack (tr_msg_body (msg), tr_msg_size (msg), &json, &len), 0);
    pthread_mutex_lock (&s_lock);
    size_t used = strlen (s_ledger);
    snprintf (s_ledger + used, sizeof s_ledger - used, "%s %.*s\n", tr_actor_name (self),
              (int) len, json);
    pthread_mutex_unlock (&s_lock);
    free (json);
    if (*(bool *) state)
        return -1;
    return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply (msg, "\xc3", 1): 0;
}

static const tr_param_spec_t s_ledger_params [] = {
    { "fail", TR_PARAM_BOOL, false, "record, then fail" },
    { .key = NULL }
};

static const tr_actor_type_t s_ledger_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "ledger",
    .summary = "records what it gets (chain tests)",
    .behaviour = { s_ledger_init, s_ledger_handle, s_free_state },
    .params = s_ledger_params,
};

//  --------------------------------------------------------------------------
//  Helpers

static void
s_setup (void)
{
    tr_log_set_level (TR_LOG_ERROR);
    int rc = tr_actor_type_register (&s_step_type);
    ck_assert (rc == TR_OK || rc == TR_EEXIST);
    rc = tr_actor_type_register (&s_ledger_type);
    ck_assert (rc == TR_OK || rc == TR_EEXIST);
    s_ledger [0] = '\0';
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
}

static void
s_teardown (void)
{
    tr_test_tree_stop (&s_tree, &s_sup);
    tr_node_destroy (&s_node);
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
    char *answer = NULL;
    int rc = s_ask (chain, text, &answer);
    ck_assert_msg (rc == TR_OK, "%s: %s", chain, tr_errname (rc));
    ck_assert_str_eq (answer, json);
    free (answer);
}

//  The ledger so far (a copy).
static char *
s_ledger_text (void)
{
    pthread_mutex_lock (&s_lock);
    char *copy = strdup (s_ledger);
    pthread_mutex_unlock (&s_lock);
    return copy;
}

static void
s_expect_ledger (const char *expect)
{
    //  Compensations may still be running when the asker hears (with
    //  on_failure: error they have finished; a tell's run ends later).
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    char *text = s_ledger_text ();
    while (strcmp (text, expect) != 0 && tr_test_now_ms () < deadline) {
        free (text);
        usleep (5000);
        text = s_ledger_text ();
    }
    ck_assert_str_eq (text, expect);
    free (text);
    pthread_mutex_lock (&s_lock);
    s_ledger [0] = '\0';
    pthread_mutex_unlock (&s_lock);
}

static int64_t
s_info (const char *actor, const char *key)
{
    int64_t value = 0;
    int rc = tr_actor_info_get (s_node, actor, key, &value);
    ck_assert (rc == TR_OK || rc == TR_ENOTFOUND);
    return value;
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
    ck_assert_int_eq (s_info ("abc", "chain.completed"), 1);
    ck_assert_int_eq (s_info ("abc", "chain.inflight"), 0);
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
    s_expect_ledger ("undo-b {\"step\":\"b\",\"input\":\"x-a-c\",\"output\":\"x-a-c-b\"}\n"
                     "undo-a {\"step\":\"a\",\"input\":\"x\",\"output\":\"x-a\"}\n");
    ck_assert_int_eq (s_info ("saga", "chain.failed"), 1);
    ck_assert_int_eq (s_info ("saga", "chain.uncompensated"), 0);
    //  With on_failure: report, the asker learns which step failed and
    //  whether the compensation succeeded.
    s_expect_answer ("told", "y",
                     "{\"failed\":\"bad\",\"index\":4,\"error\":\"TR_EHANDLER\","
                     "\"compensated\":true,\"compensations\":[{\"step\":\"b\"},{\"step\":\"a\"}]}");
    s_expect_ledger ("undo-b {\"step\":\"b\",\"input\":\"y-a-c\",\"output\":\"y-a-c-b\"}\n"
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
    s_expect_ledger ("undo-b {\"step\":\"b\",\"input\":\"x-a\",\"output\":\"x-a-b\"}\n"
                     "undo-a {\"step\":\"a\",\"input\":\"x\",\"output\":\"x-a\"}\n");
    ck_assert_int_eq (s_info ("saga", "chain.uncompensated"), 1);
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
    s_expect_ledger ("");
    //  a's gate says no: only a is undone, b never runs.
    ck_assert_int_eq (s_ask ("gated", "nope", NULL), TR_EOUTPUT);
    s_expect_ledger ("undo-a {\"step\":\"a\",\"input\":\"nope\",\"output\":\"nope-a\"}\n");
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
    s_expect_ledger ("undo-b {\"step\":\"b\",\"input\":\"q-a\",\"output\":\"q-a-b\"}\n"
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
    char *ledger = s_ledger_text ();
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while (!strstr (ledger, "retract") && tr_test_now_ms () < deadline) {
        free (ledger);
        usleep (5000);
        ledger = s_ledger_text ();
    }
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
    s_expect_ledger ("undo-a {\"step\":\"a\",\"input\":\"t\",\"output\":\"t-a\"}\n");
}
END_TEST

//  An ask on a thread of its own.
typedef struct {
    int rc;
    char *answer;
    pthread_t thread;
} s_asker_t;

static void *
s_asker_run (void *arg)
{
    s_asker_t *a = (s_asker_t *) arg;
    a->rc = s_ask ("both", "go", &a->answer);
    return NULL;
}

START_TEST (test_runs_overlap)
{
    //  Two offline llm steps of 200 ms each: a run takes 400 ms; five runs
    //  at once take about that, not 2 s.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: m1, actor: llm, params: {offline: {latency: 200ms}}}\n"
             "  - {name: m2, actor: llm, params: {offline: {latency: 200ms}}}\n"
             "  - {name: both, actor: chain, params: {steps: [m1, m2]}}\n");
    s_asker_t askers [5];
    int64_t start = tr_test_now_ms ();
    for (int i = 0; i < 5; i++) {
        memset (&askers [i], 0, sizeof askers [i]);
        ck_assert_int_eq (pthread_create (&askers [i].thread, NULL, s_asker_run, &askers [i]), 0);
    }
    for (int i = 0; i < 5; i++) {
        pthread_join (askers [i].thread, NULL);
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
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while (s_info ("fine", "chain.completed") < 1 && tr_test_now_ms () < deadline)
        usleep (5000);
    ck_assert_int_eq (s_info ("fine", "chain.completed"), 1);
    //  A told run that fails is compensated and published like an asked one.
    ck_assert_int_eq (tr_tell (s_node, "saga", "\xa1z", 2, NULL), TR_OK);
    char *ledger = s_ledger_text ();
    while ((!strstr (ledger, "undo-a") || !strstr (ledger, "events")) && tr_test_now_ms () < deadline) {
        free (ledger);
        usleep (5000);
        ledger = s_ledger_text ();
    }
    ck_assert_msg (strstr (ledger, "undo-a {\"step\":\"a\",\"input\":\"z\",\"output\":\"z-a\"}"),
                   "%s", ledger);
    ck_assert_msg (strstr (ledger, "\"chain\":\"saga\",\"failed\":\"bad\",\"index\":2,"
                                   "\"error\":\"TR_EHANDLER\",\"compensated\":true"), "%s", ledger);
    free (ledger);
}
END_TEST

START_TEST (test_remote_step)
{
    tr_broker_t *broker = NULL;
    tr_broker_opts_t bopts = { .bind = "tcp://127.0.0.1:*", .heartbeat_ms = 100 };
    ck_assert_int_eq (tr_broker_start (&bopts, &broker), TR_OK);
    char endpoint [128];
    snprintf (endpoint, sizeof endpoint, "%s", tr_broker_endpoint (broker));
    tr_node_opts_t a_opts = { .broker = endpoint, .node_id = "node-a", .heartbeat_ms = 100 };
    tr_node_opts_t b_opts = { .broker = endpoint, .node_id = "node-b", .heartbeat_ms = 100 };
    tr_node_t *a = NULL, *b = NULL;
    ck_assert_int_eq (tr_node_new (&a_opts, &a), TR_OK);
    ck_assert_int_eq (tr_node_new (&b_opts, &b), TR_OK);
    ck_assert_int_eq (tr_spawn (b, "far", &s_step_type.behaviour, NULL, NULL, NULL), TR_OK);
    s_start_on (a, "name: t\n"
                   "children:\n"
                   "  - {name: near, actor: step}\n"
                   "  - {name: c, actor: chain, params: {steps: [near, far, near]}}\n");
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    char *answer = NULL;
    int rc;
    while ((rc = tr_test_ask_json (a, "c", "r", 1000, &answer)) != TR_OK && tr_test_now_ms () < deadline)
        usleep (20 * 1000);
    ck_assert_int_eq (rc, TR_OK);
    ck_assert_str_eq (answer, "\"r-near-far-near\"");
    free (answer);
    tr_sup_stop (&s_sup);
    tr_tree_destroy (&s_tree);
    tr_node_destroy (&b);
    tr_node_destroy (&a);
    tr_broker_stop (&broker);
}
END_TEST

static void
s_expect_error (const char *params, const char *expect)
{
    char yaml [800];
    snprintf (yaml, sizeof yaml, "name: t\nchildren:\n  - {name: a, actor: step}\n"
                                 "  - name: c\n    actor: chain\n    params: %s\n", params);
    tr_tree_error_t err;
    char buf [800];
    char *error = NULL;
    int rc = tr_tree_parse (yaml, strlen (yaml), "chain.yaml", &s_tree, &err);
    if (rc != TR_OK)
        error = strdup (tr_tree_error_format (&err, buf, sizeof buf));
    else {
        rc = tr_sup_start (s_node, s_tree->name, &s_tree->root, &s_sup, &error);
        ck_assert_int_eq (rc, TR_ECHILD);
        tr_tree_destroy (&s_tree);
    }
    ck_assert_msg (error && strstr (error, expect), "params %s: got '%s', expected '%s'",
                   params, error? error: "(none)", expect);
    free (error);
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
    tr_tree_error_t err;
    char buf [800];
    ck_assert_int_eq (tr_tree_parse (yaml, strlen (yaml), "chain.yaml", &s_tree, &err),
                      TR_EMALFORMED);
    tr_tree_error_format (&err, buf, sizeof buf);
    ck_assert_msg (strstr (buf, "chain.yaml:10:25: c: steps item 2 'gate' 'regex' '[' does not compile"), "%s", buf);
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
