/*  tr_evaluator_test.c - tests of the evaluator-optimizer (actors/
    tr_evaluator.c), started from tree files.

    A generator that builds on its previous output and the feedback, and
    a judge whose scores are scripted per iteration, pin the semantics:
    what each is asked, the loop stopping at the threshold (score equal
    to it included) and at max_iterations (reached: false, or TR_ELIMIT
    with below_threshold: error), the history of every score in order
    (scores that fall included), failures of either side and answers
    that are not a verdict, events per round, runs at once, a generator
    on another node through a real broker; then a loop
    of llm agents on the offline backend whose score improves as the
    feedback is applied; bad parameters at their file, line and column.
*/

#include "tr_test.h"
#include "tr_test_tree.h"

#include <msgpack.h>

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  What the test actors saw goes into the ledger, in order: "NAME JSON"
//  lines (tr_test_tree.h).

//  The string under key in a map, or NULL (*len its length).
static const char *
s_field (const msgpack_object *map, const char *key, uint32_t *len)
{
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        const msgpack_object *v = &map->via.map.ptr [i].val;
        if (k->via.str.size == strlen (key) && memcmp (k->via.str.ptr, key, k->via.str.size) == 0
        &&  v->type == MSGPACK_OBJECT_STR) {
            *len = v->via.str.size;
            return v->via.str.ptr;
        }
    }
    return NULL;
}

static int
s_reply_str (const tr_msg_t *msg, const char *text)
{
    tr_body_t body;
    tr_body_str (&body, text, strlen (text));
    return tr_reply (msg, body.data, body.size);
}

//  --------------------------------------------------------------------------
//  Test actors

//  gen: records each ask; answers "v1" first, then its previous output,
//  "|" and the feedback. `fail: true` fails; `delay` slows each answer.
typedef struct {
    bool fail;
    int64_t delay_ms;
} s_gen_t;

static const tr_param_spec_t s_gen_params [] = {
    { "fail", TR_PARAM_BOOL, false, "fail every ask" },
    { "delay", TR_PARAM_DURATION, false, "time each answer takes" },
    { .key = NULL }
};

static int
s_gen_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    s_gen_t *gen = (s_gen_t *) calloc (1, sizeof *gen);
    if (arg) {
        tr_params_bool ((const tr_params_t *) arg, "fail", &gen->fail);
        tr_params_duration ((const tr_params_t *) arg, "delay", &gen->delay_ms);
    }
    *state_p = gen;
    return 0;
}

static int
s_gen_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_gen_t *gen = (s_gen_t *) state;
    tr_test_ledger_add (tr_actor_name (self), tr_msg_body (msg), tr_msg_size (msg));
    if (gen->delay_ms)
        usleep ((useconds_t) gen->delay_ms * 1000);
    if (gen->fail)
        return -1;
    msgpack_unpacked ask;
    msgpack_unpacked_init (&ask);
    ck_assert_int_eq (msgpack_unpack_next (&ask, (const char *) tr_msg_body (msg),
                                           tr_msg_size (msg), NULL), MSGPACK_UNPACK_SUCCESS);
    uint32_t plen = 0, flen = 0;
    const char *previous = s_field (&ask.data, "previous", &plen);
    const char *feedback = s_field (&ask.data, "feedback", &flen);
    char out [512];
    if (previous)
        snprintf (out, sizeof out, "%.*s|%.*s", (int) plen, previous, (int) flen,
                  feedback? feedback: "");
    else
        snprintf (out, sizeof out, "v1");
    msgpack_unpacked_destroy (&ask);
    return s_reply_str (msg, out);
}

static const tr_actor_type_t s_gen_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "gen",
    .summary = "builds on its previous output and the feedback (evaluator tests)",
    .behaviour = { s_gen_init, s_gen_handle, tr_test_free_state },
    .params = s_gen_params,
};

//  judge: records each ask; scores an output with `scores` item K+1,
//  where K is the number of "|" in it (the iterations before), the last
//  item for later ones, and answers {score, feedback: "fix-(K+1)"}.
//  `answer` replaces the verdict with a value of its own; `delay` slows
//  each answer.
typedef struct {
    msgpack_unpacked scores;
    tr_params_t answer;
    int64_t delay_ms;
} s_judge_t;

static const tr_param_spec_t s_judge_params [] = {
    { "scores", TR_PARAM_LIST, false, "the score for each iteration" },
    { "answer", TR_PARAM_ANY, false, "answered instead of a verdict" },
    { "delay", TR_PARAM_DURATION, false, "time each answer takes" },
    { .key = NULL }
};

static int
s_judge_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    s_judge_t *judge = (s_judge_t *) calloc (1, sizeof *judge);
    const tr_params_t *params = (const tr_params_t *) arg;
    tr_params_t list = { NULL, 0 };
    msgpack_unpacked_init (&judge->scores);
    tr_params_get (params, "answer", &judge->answer);
    tr_params_duration (params, "delay", &judge->delay_ms);
    if (tr_params_get (params, "scores", &list) == TR_OK)
        ck_assert_int_eq (msgpack_unpack_next (&judge->scores, (const char *) list.data,
                                               list.size, NULL), MSGPACK_UNPACK_SUCCESS);
    *state_p = judge;
    return 0;
}

static int
s_judge_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_judge_t *judge = (s_judge_t *) state;
    tr_test_ledger_add (tr_actor_name (self), tr_msg_body (msg), tr_msg_size (msg));
    if (judge->delay_ms)
        usleep ((useconds_t) judge->delay_ms * 1000);
    if (judge->answer.size)
        return tr_reply (msg, judge->answer.data, judge->answer.size);
    msgpack_unpacked ask;
    msgpack_unpacked_init (&ask);
    ck_assert_int_eq (msgpack_unpack_next (&ask, (const char *) tr_msg_body (msg),
                                           tr_msg_size (msg), NULL), MSGPACK_UNPACK_SUCCESS);
    uint32_t len = 0;
    const char *output = s_field (&ask.data, "output", &len);
    uint32_t k = 0;
    for (uint32_t i = 0; output && i < len; i++)
        k += output [i] == '|';
    msgpack_unpacked_destroy (&ask);
    const msgpack_object_array *scores = &judge->scores.data.via.array;
    ck_assert_uint_gt (scores->size, 0);
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str_with_body (&pk, "score", 5);
    msgpack_pack_object (&pk, scores->ptr [k < scores->size? k: scores->size - 1]);
    char feedback [32];
    snprintf (feedback, sizeof feedback, "fix-%u", k + 1);
    msgpack_pack_str_with_body (&pk, "feedback", 8);
    msgpack_pack_str_with_body (&pk, feedback, strlen (feedback));
    int rc = tr_reply (msg, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return rc;
}

static void
s_judge_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_judge_t *judge = (s_judge_t *) state;
    msgpack_unpacked_destroy (&judge->scores);
    free (judge);
}

static const tr_actor_type_t s_judge_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "judge",
    .summary = "scores outputs as scripted (evaluator tests)",
    .behaviour = { s_judge_init, s_judge_handle, s_judge_terminate },
    .params = s_judge_params,
};

//  --------------------------------------------------------------------------
//  Helpers

static void
s_setup (void)
{
    tr_test_setup (&s_node, (const tr_actor_type_t *[]) { &s_gen_type, &s_judge_type, NULL });
    tr_test_ledger_register ();
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
}

static void
s_start (const char *yaml)
{
    tr_test_tree_start (s_node, yaml, "evaluator.yaml", &s_tree, &s_sup);
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

START_TEST (test_reaches_threshold)
{
    s_start (TR_TEST_LENIENT
             "  - {name: g, actor: gen}\n"
             "  - {name: j, actor: judge, params: {scores: [0.2, 0.5, 0.9, 1]}}\n"
             "  - name: e\n"
             "    actor: evaluator\n"
             "    params: {generator: g, evaluator: j, threshold: 0.8, max_iterations: 5}\n");
    s_expect_answer ("e", "T", "{\"output\":\"v1|fix-1|fix-2\",\"score\":0.9,\"iterations\":3,"
                     "\"scores\":[0.2,0.5,0.9],\"reached\":true}");
    //  The generator gets the task, then its previous output and the
    //  feedback on it; the judge gets the task and each output.
    tr_test_expect_ledger ("g {\"task\":\"T\",\"previous\":null,\"feedback\":null}\n"
                     "j {\"task\":\"T\",\"output\":\"v1\"}\n"
                     "g {\"task\":\"T\",\"previous\":\"v1\",\"feedback\":\"fix-1\"}\n"
                     "j {\"task\":\"T\",\"output\":\"v1|fix-1\"}\n"
                     "g {\"task\":\"T\",\"previous\":\"v1|fix-1\",\"feedback\":\"fix-2\"}\n"
                     "j {\"task\":\"T\",\"output\":\"v1|fix-1|fix-2\"}\n");
    ck_assert_int_eq (tr_test_info (s_node, "e", "evaluator.reached"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "e", "evaluator.iterations"), 3);
    ck_assert_int_eq (tr_test_info (s_node, "e", "evaluator.inflight"), 0);
}
END_TEST

START_TEST (test_threshold_edges)
{
    //  Good at once: one iteration. A score equal to the threshold
    //  reaches it. Integer scores stay integers.
    s_start (TR_TEST_LENIENT
             "  - {name: g, actor: gen}\n"
             "  - {name: j1, actor: judge, params: {scores: [0.95]}}\n"
             "  - {name: j2, actor: judge, params: {scores: [0.5, 0.8]}}\n"
             "  - {name: j3, actor: judge, params: {scores: [3, 7, 9]}}\n"
             "  - {name: e1, actor: evaluator, params: {generator: g, evaluator: j1, threshold: 0.8}}\n"
             "  - {name: e2, actor: evaluator, params: {generator: g, evaluator: j2, threshold: 0.8}}\n"
             "  - {name: e3, actor: evaluator, params: {generator: g, evaluator: j3, threshold: 8}}\n");
    s_expect_answer ("e1", "T", "{\"output\":\"v1\",\"score\":0.95,\"iterations\":1,"
                     "\"scores\":[0.95],\"reached\":true}");
    s_expect_answer ("e2", "T", "{\"output\":\"v1|fix-1\",\"score\":0.8,\"iterations\":2,"
                     "\"scores\":[0.5,0.8],\"reached\":true}");
    s_expect_answer ("e3", "T", "{\"output\":\"v1|fix-1|fix-2\",\"score\":9,\"iterations\":3,"
                     "\"scores\":[3,7,9],\"reached\":true}");
}
END_TEST

START_TEST (test_max_iterations)
{
    //  Never good enough: the loop stops at max_iterations with every
    //  score in order (the last lower than the best), and says so.
    s_start (TR_TEST_LENIENT
             "  - {name: g, actor: gen}\n"
             "  - {name: j, actor: judge, params: {scores: [0.1, 0.4, 0.3, 0.2]}}\n"
             "  - {name: events, actor: ledger}\n"
             "  - name: e\n"
             "    actor: evaluator\n"
             "    params: {generator: g, evaluator: j, threshold: 0.9, max_iterations: 3}\n"
             "  - name: strict\n"
             "    actor: evaluator\n"
             "    params: {generator: g, evaluator: j, threshold: 0.9, max_iterations: 2,\n"
             "             below_threshold: error}\n");
    s_expect_answer ("e", "T", "{\"output\":\"v1|fix-1|fix-2\",\"score\":0.3,\"iterations\":3,"
                     "\"scores\":[0.1,0.4,0.3],\"reached\":false}");
    ck_assert_int_eq (tr_test_info (s_node, "e", "evaluator.below"), 1);
    free (tr_test_ledger_copy (true));
    //  below_threshold: error: TR_ELIMIT for the asker; the event still
    //  says how far it got.
    ck_assert_int_eq (tr_event_subscribe (s_node, "evaluator.completed", "events"), TR_OK);
    ck_assert_int_eq (s_ask ("strict", "T", NULL), TR_ELIMIT);
    tr_test_expect_in_ledger ("events [\"evaluator.completed\",{\"evaluator\":\"strict\","
                        "\"score\":0.4,\"iterations\":2,\"scores\":[0.1,0.4],\"reached\":false}]");
    ck_assert_int_eq (tr_test_info (s_node, "strict", "evaluator.below"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "strict", "evaluator.iterations"), 2);
}
END_TEST

START_TEST (test_failures)
{
    s_start (TR_TEST_LENIENT
             "  - {name: g, actor: gen}\n"
             "  - {name: bad-gen, actor: gen, params: {fail: true}}\n"
             "  - {name: j, actor: judge, params: {scores: [0.1, 0.2]}}\n"
             "  - {name: j-text, actor: judge, params: {answer: looks good}}\n"
             "  - {name: j-word, actor: judge, params: {answer: {score: high, feedback: x}}}\n"
             "  - {name: j-none, actor: judge, params: {answer: {feedback: x}}}\n"
             "  - {name: j-slow, actor: judge, params: {scores: [1], delay: 1s}}\n"
             "  - {name: events, actor: ledger}\n"
             "  - {name: e1, actor: evaluator, params: {generator: bad-gen, evaluator: j, threshold: 1}}\n"
             "  - {name: e2, actor: evaluator, params: {generator: g, evaluator: j-text, threshold: 1}}\n"
             "  - {name: e3, actor: evaluator, params: {generator: g, evaluator: j-word, threshold: 1}}\n"
             "  - {name: e4, actor: evaluator, params: {generator: g, evaluator: j-none, threshold: 1}}\n"
             "  - {name: e5, actor: evaluator, params: {generator: g, evaluator: j-slow, threshold: 1, timeout: 200ms}}\n"
             "  - {name: e6, actor: evaluator, params: {generator: nobody, evaluator: j, threshold: 1}}\n"
             "  - {name: j-mid, actor: judge, params: {scores: [0.1, 0.2, oops]}}\n"
             "  - {name: e7, actor: evaluator, params: {generator: g, evaluator: j-mid, threshold: 1}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "evaluator.failed", "events"), TR_OK);
    ck_assert_int_eq (s_ask ("e1", "T", NULL), TR_EHANDLER);
    tr_test_expect_in_ledger ("events [\"evaluator.failed\",{\"evaluator\":\"e1\",\"error\":"
                        "\"TR_EHANDLER\",\"reason\":\"generator 'bad-gen' failed in iteration 1: "
                        "handler failed\",\"iterations\":1,\"scores\":[]}]");
    ck_assert_int_eq (s_ask ("e2", "T", NULL), TR_EOUTPUT);
    tr_test_expect_in_ledger ("\"reason\":\"evaluator 'j-text' answered a string in iteration 1, "
                        "not a map {score, feedback}\"");
    ck_assert_int_eq (s_ask ("e3", "T", NULL), TR_EOUTPUT);
    tr_test_expect_in_ledger ("\"reason\":\"evaluator 'j-word' answered 'score' as a string in "
                        "iteration 1, not a number\"");
    ck_assert_int_eq (s_ask ("e4", "T", NULL), TR_EOUTPUT);
    tr_test_expect_in_ledger ("\"reason\":\"evaluator 'j-none' answered a mapping in iteration 1, "
                        "not a map {score, feedback}\"");
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("e5", "T", NULL), TR_ETIMEDOUT);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_msg (took >= 190 && took < 900 * tr_test_slowdown (), "took %lld ms",
                   (long long) took);
    tr_test_expect_in_ledger ("\"reason\":\"evaluator 'j-slow' failed in iteration 1: timed out\"");
    ck_assert_int_eq (s_ask ("e6", "T", NULL), TR_ENOACTOR);
    tr_test_expect_in_ledger ("\"reason\":\"generator 'nobody' could not be asked in iteration 1: "
                        "no such actor\"");
    ck_assert_int_eq (tr_test_info (s_node, "e1", "evaluator.failed"), 1);
    //  A failure after some iterations reports the scores before it.
    ck_assert_int_eq (s_ask ("e7", "T", NULL), TR_EOUTPUT);
    tr_test_expect_in_ledger ("events [\"evaluator.failed\",{\"evaluator\":\"e7\",\"error\":"
                        "\"TR_EOUTPUT\",\"reason\":\"evaluator 'j-mid' answered 'score' as a "
                        "string in iteration 3, not a number\",\"iterations\":3,"
                        "\"scores\":[0.1,0.2]}]");
}
END_TEST

START_TEST (test_events_per_round)
{
    s_start (TR_TEST_LENIENT
             "  - {name: g, actor: gen}\n"
             "  - {name: j, actor: judge, params: {scores: [0.2, 0.7]}}\n"
             "  - {name: events, actor: ledger}\n"
             "  - {name: e, actor: evaluator, params: {generator: g, evaluator: j, threshold: 0.5}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "evaluator.", "events"), TR_OK);
    //  A tell runs the loop the same way.
    tr_body_t body;
    tr_body_str (&body, "T", 1);
    ck_assert_int_eq (tr_tell (s_node, "e", body.data, body.size, NULL), TR_OK);
    const char *completed = "events [\"evaluator.completed\",{\"evaluator\":\"e\",\"score\":0.7,"
                            "\"iterations\":2,\"scores\":[0.2,0.7],\"reached\":true}]\n";
    tr_test_expect_in_ledger (completed);
    char *ledger = tr_test_ledger_copy (true);
    const char *round1 = "events [\"evaluator.round\",{\"evaluator\":\"e\",\"iteration\":1,"
                         "\"score\":0.2,\"feedback\":\"fix-1\"}]\n";
    const char *round2 = "events [\"evaluator.round\",{\"evaluator\":\"e\",\"iteration\":2,"
                         "\"score\":0.7,\"feedback\":\"fix-2\"}]\n";
    char *r1 = strstr (ledger, round1), *r2 = strstr (ledger, round2);
    char *end = strstr (ledger, completed);
    ck_assert_msg (r1 && r2 && r1 < r2 && r2 < end, "%s", ledger);
    free (ledger);
}
END_TEST

//  The writer and reviewer of the llm tests: the reviewer's score rises
//  as the writer applies its feedback, one point at a time.
#define S_LLM_PAIR(LATENCY) \
    "  - name: writer\n" \
    "    actor: llm\n" \
    "    params:\n" \
    "      signature:\n" \
    "        instructions: Write a short description; improve the previous one by the feedback.\n" \
    "        inputs: [{name: task}, {name: previous}, {name: feedback}]\n" \
    "        outputs: [{name: draft}]\n" \
    "      offline:\n" \
    "        latency: " LATENCY "\n" \
    "        rules:\n" \
    "          - regex: '\"draft\":\"([^\"]*)\"}.feedback: Give its population'\n" \
    "            answer: {draft: '$1 About 520000 people live there.'}\n" \
    "          - regex: '\"draft\":\"([^\"]*)\"}.feedback: Name its rivers'\n" \
    "            answer: {draft: '$1 The Rhone and the Saone meet there.'}\n" \
    "          - {match: 'feedback: null', answer: {draft: Lyon is a city in France.}}\n" \
    "  - name: reviewer\n" \
    "    actor: llm\n" \
    "    params:\n" \
    "      signature:\n" \
    "        instructions: Score the description from 0 to 1 and say what is missing.\n" \
    "        inputs: [{name: task}, {name: output}]\n" \
    "        outputs: [{name: score, type: number}, {name: feedback}]\n" \
    "      offline:\n" \
    "        latency: " LATENCY "\n" \
    "        rules:\n" \
    "          - {match: Saone, answer: {score: 0.9, feedback: Complete.}}\n" \
    "          - {match: people, answer: {score: 0.6, feedback: Name its rivers.}}\n" \
    "          - {match: '', answer: {score: 0.3, feedback: Give its population.}}\n"

START_TEST (test_llm_agents)
{
    //  On the offline backend, with real signatures: the writer's drafts
    //  grow by the reviewer's feedback, whose score rises to the
    //  threshold.
    s_start (TR_TEST_LENIENT
             S_LLM_PAIR ("0ms")
             "  - name: e\n"
             "    actor: evaluator\n"
             "    params: {generator: writer, evaluator: reviewer, threshold: 0.8}\n");
    s_expect_answer ("e", "Describe Lyon.",
                     "{\"output\":{\"draft\":\"Lyon is a city in France. About 520000 people "
                     "live there. The Rhone and the Saone meet there.\"},\"score\":0.9,"
                     "\"iterations\":3,\"scores\":[0.3,0.6,0.9],\"reached\":true}");
}
END_TEST

START_TEST (test_runs_at_once)
{
    //  Four loops of three iterations, each generation and evaluation
    //  100 ms: one loop takes 600 ms; four at once take about that, not
    //  2.4 s.
    s_start (TR_TEST_LENIENT
             S_LLM_PAIR ("100ms")
             "  - name: e\n"
             "    actor: evaluator\n"
             "    params: {generator: writer, evaluator: reviewer, threshold: 0.8}\n");
    tr_test_asker_t askers [4];
    int64_t start = tr_test_now_ms ();
    for (int i = 0; i < 4; i++)
        tr_test_asker_start (&askers [i], s_node, "e", "\"Describe Lyon.\"",
                             10000 * tr_test_slowdown (), 0);
    for (int i = 0; i < 4; i++) {
        tr_test_asker_join (&askers [i]);
        ck_assert_int_eq (askers [i].rc, TR_OK);
        ck_assert_msg (strstr (askers [i].answer, "\"scores\":[0.3,0.6,0.9]"), "%s",
                       askers [i].answer);
        free (askers [i].answer);
    }
    int64_t took = tr_test_now_ms () - start;
    ck_assert_msg (took >= 590, "4 loops in %lld ms", (long long) took);
    ck_assert_msg (took < 1800 * tr_test_slowdown (), "4 loops in %lld ms: not at once",
                   (long long) took);
    ck_assert_int_eq (tr_test_info (s_node, "e", "evaluator.reached"), 4);
}
END_TEST

START_TEST (test_remote_generator)
{
    //  The generator on another node, reached through a real broker.
    tr_test_remote_t r;
    tr_test_remote_start (&r);
    ck_assert_int_eq (tr_spawn (r.b, "far-gen", &s_gen_type.behaviour, NULL, NULL, NULL), TR_OK);
    tr_test_tree_start (r.a, "name: t\n"
                             "children:\n"
                             "  - {name: j, actor: judge, params: {scores: [0.4, 0.8]}}\n"
                             "  - name: e\n"
                             "    actor: evaluator\n"
                             "    params: {generator: far-gen, evaluator: j, threshold: 0.5}\n",
                        "evaluator.yaml", &s_tree, &s_sup);
    //  Until node b's name is known at the broker, the ask fails with
    //  TR_ENOACTOR.
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    char *answer = NULL;
    int rc;
    while ((rc = tr_test_ask_json (r.a, "e", "T", 2000 * tr_test_slowdown (), &answer)) != TR_OK
    &&     tr_test_now_ms () < deadline)
        usleep (20 * 1000);
    ck_assert_int_eq (rc, TR_OK);
    ck_assert_str_eq (answer, "{\"output\":\"v1|fix-1\",\"score\":0.8,\"iterations\":2,"
                              "\"scores\":[0.4,0.8],\"reached\":true}");
    free (answer);
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
    s_mismatches += !tr_test_params_refused (s_node, "evaluator.yaml", "name: t\n"
                                             "children:\n"
                                             "  - {name: g, actor: gen}\n"
                                             "  - name: e\n"
                                             "    actor: evaluator\n", params, expect,
                                             TR_TEST_WHOLE);
}

START_TEST (test_bad_params)
{
    s_expect_error ("{evaluator: g, threshold: 1}",
                    "evaluator.yaml:6:13: missing parameter 'generator' of actor type "
                    "'evaluator' (a string: the actor asked {task, previous, feedback} for an "
                    "output)");
    s_expect_error ("{generator: g, threshold: 1}",
                    "evaluator.yaml:6:13: missing parameter 'evaluator' of actor type "
                    "'evaluator' (a string: the actor asked {task, output}, which answers "
                    "{score, feedback})");
    s_expect_error ("{generator: g, evaluator: g}",
                    "evaluator.yaml:6:13: missing parameter 'threshold' of actor type "
                    "'evaluator' (a number: the score that ends the loop (score >= threshold))");
    s_expect_error ("{generator: g, evaluator: g, threshold: high}",
                    "evaluator.yaml:6:53: parameter 'threshold' of actor type 'evaluator' must "
                    "be a number, not 'high'");
    s_expect_error ("{generator: 'g h', evaluator: g, threshold: 1}",
                    "evaluator.yaml:6:25: e: 'generator' is not a valid actor name: 'g h'");
    s_expect_error ("{generator: g, evaluator: '', threshold: 1}",
                    "evaluator.yaml:6:39: e: 'evaluator' must be a non-empty string without "
                    "NUL bytes");
    s_expect_error ("{generator: g, evaluator: g, threshold: 1, max_iterations: 0}",
                    "evaluator.yaml:6:72: e: 'max_iterations' must be from 1 to 100, not 0");
    s_expect_error ("{generator: g, evaluator: g, threshold: 1, max_iterations: 101}",
                    "evaluator.yaml:6:72: e: 'max_iterations' must be from 1 to 100, not 101");
    s_expect_error ("{generator: g, evaluator: g, threshold: 1, timeout: 0}",
                    "evaluator.yaml:6:65: e: 'timeout' must be from 1 ms to 2147483647 ms, "
                    "not 0 ms");
    s_expect_error ("{generator: g, evaluator: g, threshold: 1, below_threshold: fail}",
                    "evaluator.yaml:6:73: e: 'below_threshold' must be one of answer, error, "
                    "not 'fail'");
    s_expect_error ("{generator: g, evaluator: g, threshold: 1, iterations: 3}",
                    "evaluator.yaml:6:56: unknown parameter 'iterations' of actor type "
                    "'evaluator'; expected one of: generator, evaluator, threshold, "
                    "max_iterations, timeout, below_threshold");
    ck_assert_int_eq (s_mismatches, 0);
}
END_TEST

START_TEST (test_bad_params_from_c)
{
    //  Spawned from C with parameters of its own, the evaluator checks
    //  them when it starts, and its supervisor gives the reason.
    char *reason = tr_test_start_error (s_node, "evaluator", "e",
                                        "{\"generator\": \"g\", \"evaluator\": \"j\"}");
    ck_assert_msg (reason && strstr (reason, "evaluator 'e': 'threshold' must be the score "
                                             "that ends the loop"), "%s", reason);
    free (reason);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_evaluator");
    TCase *tc = tcase_create ("evaluator");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_reaches_threshold);
    tcase_add_test (tc, test_threshold_edges);
    tcase_add_test (tc, test_max_iterations);
    tcase_add_test (tc, test_failures);
    tcase_add_test (tc, test_events_per_round);
    tcase_add_test (tc, test_llm_agents);
    tcase_add_test (tc, test_runs_at_once);
    tcase_add_test (tc, test_remote_generator);
    tcase_add_test (tc, test_bad_params);
    tcase_add_test (tc, test_bad_params_from_c);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
