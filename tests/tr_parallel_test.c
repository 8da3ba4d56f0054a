/*  tr_parallel_test.c - tests of the parallel actor (actors/tr_parallel.c),
    started from tree files.

    sections: members really at once (each records when it started and
    ended its work, and the intervals overlap), answers merged in member
    order whatever order they came in, the three splits (whole, list,
    field) and bodies that cannot be split, a failed or late member
    failing the whole (the others cancelled, their answers dropped and
    counted) or reported; vote: a threshold met and not met, a count,
    ties, equal answers folded (bytes, text, a declared field), the
    confidence, a failed member; race: the first success wins, a quality
    rule (a number and a text rule) passes over answers below it, the
    losers' answers are dropped and counted; events on the bus; tells; a
    member on another node through a real broker; stopping with runs in
    flight; bad parameters with their exact messages and positions.
*/

#include "tr_test.h"
#include "tr_test_tree.h"

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  --------------------------------------------------------------------------
//  Test actors

//  part: after `delay`, answers `answer` (any value) if it has one, else
//  the string it got plus "-NAME" (any other body as it came); fails with
//  `fail: true`. Records when each message's work started and ended (a
//  span: tr_test_tree.h).
typedef struct {
    uint8_t *answer;
    size_t answer_size;
    int64_t delay_ms;
    bool fail;
} s_part_t;

static const tr_param_spec_t s_part_params [] = {
    { "answer", TR_PARAM_ANY, false, "the answer to every ask" },
    { "delay", TR_PARAM_DURATION, false, "time each answer takes" },
    { "fail", TR_PARAM_BOOL, false, "fail every message" },
    { .key = NULL }
};

static int
s_part_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    s_part_t *part = (s_part_t *) calloc (1, sizeof *part);
    const tr_params_t *params = (const tr_params_t *) arg;
    tr_params_t answer;
    if (params && tr_params_get (params, "answer", &answer) == TR_OK) {
        part->answer = tr_test_copy (answer.data, answer.size);
        part->answer_size = answer.size;
    }
    if (params) {
        tr_params_duration (params, "delay", &part->delay_ms);
        tr_params_bool (params, "fail", &part->fail);
    }
    *state_p = part;
    return 0;
}

static int
s_part_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_part_t *part = (s_part_t *) state;
    size_t span = tr_test_span_begin (tr_actor_name (self));
    tr_actor_info_add (self, "got", 1);
    if (part->delay_ms)
        usleep ((useconds_t) part->delay_ms * 1000);
    tr_test_span_end (span);
    if (part->fail)
        return -1;
    if (tr_msg_kind (msg) != TR_KIND_ASK)
        return 0;
    if (part->answer)
        return tr_reply (msg, part->answer, part->answer_size);
    const char *text = "";
    size_t len = 0;
    if (tr_msg_str (msg, &text, &len) != TR_OK)
        return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg));
    char out [200];
    int n = snprintf (out, sizeof out, "%.*s-%s", (int) len, text, tr_actor_name (self));
    tr_body_t body;
    tr_body_str (&body, out, (size_t) n);
    return tr_reply (msg, body.data, body.size);
}

static void
s_part_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_part_t *part = (s_part_t *) state;
    free (part->answer);
    free (part);
}

static const tr_actor_type_t s_part_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "part",
    .summary = "answers a set value or its input plus its name (parallel tests)",
    .behaviour = { s_part_init, s_part_handle, s_part_terminate },
    .params = s_part_params,
};

//  --------------------------------------------------------------------------
//  Helpers

static void
s_setup (void)
{
    tr_test_setup (&s_node, (const tr_actor_type_t *[]) { &s_part_type, NULL });
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
    tr_test_tree_start (s_node, yaml, "parallel.yaml", &s_tree, &s_sup);
}

static int
s_timeout (void)
{
    return 5000 * tr_test_slowdown ();
}

//  Asks `to` with a JSON body and checks the answer, as JSON.
static void
s_expect (const char *to, const char *json, const char *expected)
{
    tr_test_expect_jj (s_node, to, json, s_timeout (), expected);
}

static void
s_expect_error (const char *to, const char *json, int error)
{
    tr_test_expect_error (s_node, to, json, s_timeout (), error);
}

//  --------------------------------------------------------------------------
//  sections

START_TEST (test_sections_overlap)
{
    //  Three members that each work 300 ms: they are asked at once, so
    //  their spans of work overlap (the latest start is before the
    //  earliest end), whatever the machine's speed.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: part, params: {delay: 300ms}}\n"
             "  - {name: b, actor: part, params: {delay: 300ms}}\n"
             "  - {name: c, actor: part, params: {delay: 300ms}}\n"
             "  - {name: abc, actor: parallel, params: {mode: sections, members: [a, b, c]}}\n");
    s_expect ("abc", "\"x\"", "{\"a\":\"x-a\",\"b\":\"x-b\",\"c\":\"x-c\"}");
    tr_test_span_t spans [3] = { tr_test_span_last ("a"), tr_test_span_last ("b"),
                                 tr_test_span_last ("c") };
    tr_test_expect_overlap (spans, 3);
    ck_assert_int_eq (tr_test_info (s_node, "abc", "parallel.completed"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "abc", "parallel.inflight"), 0);
}
END_TEST

START_TEST (test_sections_merge_order)
{
    //  The first member is the slowest, the last the quickest: answers
    //  come in reverse, the merge is in member order all the same.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: c3, actor: part, params: {delay: 400ms}}\n"
             "  - {name: a2, actor: part, params: {delay: 200ms}}\n"
             "  - {name: b0, actor: part}\n"
             "  - name: listed\n"
             "    actor: parallel\n"
             "    params: {mode: sections, merge: list, members: [c3, a2, b0]}\n"
             "  - {name: mapped, actor: parallel, params: {mode: sections, members: [c3, a2, b0]}}\n");
    s_expect ("listed", "\"x\"", "[\"x-c3\",\"x-a2\",\"x-b0\"]");
    ck_assert (tr_test_span_last ("b0").end_ns < tr_test_span_last ("a2").end_ns);
    ck_assert (tr_test_span_last ("a2").end_ns < tr_test_span_last ("c3").end_ns);
    s_expect ("mapped", "\"y\"", "{\"c3\":\"y-c3\",\"a2\":\"y-a2\",\"b0\":\"y-b0\"}");
}
END_TEST

START_TEST (test_sections_split)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: part}\n"
             "  - {name: b, actor: part}\n"
             "  - {name: c, actor: part}\n"
             "  - {name: whole, actor: parallel, params: {mode: sections, members: [a, b]}}\n"
             "  - name: items\n"
             "    actor: parallel\n"
             "    params: {mode: sections, split: list, merge: list, members: [a, b, c]}\n"
             "  - name: fields\n"
             "    actor: parallel\n"
             "    params: {mode: sections, split: field, members: [a, {actor: b, field: text}]}\n");
    //  whole: each member gets the body as it is (here a map, echoed).
    s_expect ("whole", "{\"n\":1}", "{\"a\":{\"n\":1},\"b\":{\"n\":1}}");
    //  list: item i to member i.
    s_expect ("items", "[\"p\",\"q\",\"r\"]", "[\"p-a\",\"q-b\",\"r-c\"]");
    s_expect ("items", "[\"p\",{\"k\":[1,2]},3]", "[\"p-a\",{\"k\":[1,2]},3]");
    //  field: the member's own field, or the one it declares.
    s_expect ("fields", "{\"a\":\"one\",\"text\":\"two\",\"b\":\"unused\"}",
              "{\"a\":\"one-a\",\"b\":\"two-b\"}");
    //  Bodies that cannot be split are refused, nothing forwarded.
    int64_t got = tr_test_info (s_node, "a", "got");
    s_expect_error ("items", "[\"p\",\"q\"]", TR_EINVAL);
    s_expect_error ("items", "\"pqr\"", TR_EINVAL);
    s_expect_error ("fields", "{\"a\":\"one\"}", TR_EINVAL);
    s_expect_error ("fields", "[\"one\",\"two\"]", TR_EINVAL);
    ck_assert_int_eq (tr_test_info (s_node, "items", "parallel.refused"), 2);
    ck_assert_int_eq (tr_test_info (s_node, "fields", "parallel.refused"), 2);
    ck_assert_int_eq (tr_test_info (s_node, "a", "got"), got);
}
END_TEST

START_TEST (test_sections_failure)
{
    s_start (TR_TEST_LENIENT
             "  - {name: a, actor: part}\n"
             "  - {name: bad, actor: part, params: {fail: true}}\n"
             "  - {name: slow, actor: part, params: {delay: 400ms}}\n"
             "  - {name: all, actor: parallel, params: {mode: sections, members: [slow, bad]}}\n"
             "  - name: told\n"
             "    actor: parallel\n"
             "    params: {mode: sections, on_failure: report, members: [a, bad, slow]}\n"
             "  - name: listed\n"
             "    actor: parallel\n"
             "    params: {mode: sections, on_failure: report, merge: list,\n"
             "             members: [a, bad, nobody]}\n"
             "  - name: fine\n"
             "    actor: parallel\n"
             "    params: {mode: sections, on_failure: report, members: [a, slow]}\n"
             "  - {name: gone, actor: parallel, params: {mode: sections, members: [nobody, a]}}\n");
    //  on_failure: error: the failure ends the whole at once; slow, still
    //  working, is cancelled and its answer, when it comes, dropped.
    s_expect_error ("all", "\"x\"", TR_EHANDLER);
    ck_assert_int_eq (tr_test_info (s_node, "all", "parallel.failed"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "all", "parallel.cancelled"), 1);
    tr_test_expect_info (s_node, "all", "parallel.dropped", 1);
    //  on_failure: report: every member's outcome, the failed ones named.
    s_expect ("told", "\"x\"", "{\"answers\":{\"a\":\"x-a\",\"slow\":\"x-slow\"},"
                               "\"failed\":{\"bad\":\"TR_EHANDLER\"}}");
    s_expect ("listed", "\"x\"", "{\"answers\":[\"x-a\",null,null],"
                                 "\"failed\":{\"bad\":\"TR_EHANDLER\",\"nobody\":\"TR_ENOACTOR\"}}");
    s_expect ("fine", "\"x\"", "{\"answers\":{\"a\":\"x-a\",\"slow\":\"x-slow\"},\"failed\":{}}");
    ck_assert_int_eq (tr_test_info (s_node, "told", "parallel.failed"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "fine", "parallel.completed"), 1);
    //  A member that cannot be asked fails the whole before the others
    //  are asked.
    int64_t got = tr_test_info (s_node, "a", "got");
    s_expect_error ("gone", "\"x\"", TR_ENOACTOR);
    ck_assert_int_eq (tr_test_info (s_node, "a", "got"), got);
}
END_TEST

START_TEST (test_timeout)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: part}\n"
             "  - {name: sleepy, actor: part, params: {delay: 1s}}\n"
             "  - name: hurry\n"
             "    actor: parallel\n"
             "    params: {mode: sections, timeout: 200ms, members: [a, sleepy]}\n"
             "  - name: told\n"
             "    actor: parallel\n"
             "    params: {mode: sections, timeout: 200ms, on_failure: report, members: [a, sleepy]}\n"
             "  - name: polls\n"
             "    actor: parallel\n"
             "    params: {mode: vote, timeout: 200ms, members: [a, sleepy]}\n");
    s_expect_error ("hurry", "\"x\"", TR_ETIMEDOUT);
    //  The late answer comes after the timer: dropped and counted.
    tr_test_expect_info (s_node, "hurry", "parallel.dropped", 1);
    s_expect ("told", "\"x\"", "{\"answers\":{\"a\":\"x-a\"},\"failed\":{\"sleepy\":\"TR_ETIMEDOUT\"}}");
    //  In a vote a member that times out is a vote for nothing: 1 of 2
    //  reaches 0.5.
    s_expect ("polls", "\"x\"", "{\"consensus\":true,\"answer\":\"x-a\",\"votes\":1,\"total\":2,"
                                "\"confidence\":0.5,\"voters\":[\"a\"],\"distinct\":1,"
                                "\"failed\":{\"sleepy\":\"TR_ETIMEDOUT\"}}");
}
END_TEST

//  --------------------------------------------------------------------------
//  vote

#define S_VOTERS "  - {name: v1, actor: part, params: {answer: Paris, delay: 20ms}}\n" \
                 "  - {name: v2, actor: part, params: {answer: Paris}}\n" \
                 "  - {name: v3, actor: part, params: {answer: Paris, delay: 40ms}}\n" \
                 "  - {name: v4, actor: part, params: {answer: Lyon}}\n" \
                 "  - {name: v5, actor: part, params: {answer: Nice}}\n" \
                 "  - {name: l2, actor: part, params: {answer: Lyon}}\n" \
                 "  - {name: t1, actor: part, params: {answer: ' paris '}}\n" \
                 "  - {name: t2, actor: part, params: {answer: \"PARIS\\n\"}}\n" \
                 "  - {name: bad, actor: part, params: {fail: true}}\n"

START_TEST (test_vote_threshold)
{
    s_start (TR_TEST_LENIENT S_VOTERS
             "  - {name: poll, actor: parallel, params: {mode: vote, members: [v1, v2, v3, v4, v5]}}\n"
             "  - name: strict\n"
             "    actor: parallel\n"
             "    params: {mode: vote, threshold: 0.7, members: [v1, v2, v3, v4, v5]}\n"
             "  - name: strict-report\n"
             "    actor: parallel\n"
             "    params: {mode: vote, threshold: 0.7, on_failure: report,\n"
             "             members: [v1, v2, v3, v4, v5]}\n"
             "  - {name: three, actor: parallel, params: {mode: vote, min_votes: 3, "
             "members: [v1, v2, v3, v4, v5]}}\n"
             "  - {name: four, actor: parallel, params: {mode: vote, min_votes: 4, "
             "members: [v1, v2, v3, v4, v5]}}\n"
             "  - name: tie\n"
             "    actor: parallel\n"
             "    params: {mode: vote, threshold: 0.4, on_failure: report, members: [v1, v4, v2, l2]}\n"
             "  - {name: failing, actor: parallel, params: {mode: vote, members: [v1, v2, bad, v4]}}\n");
    //  3 of 5: a share of 0.6 reaches 0.5; the three answers are folded
    //  into one, and the reply says who voted for it.
    const char *agreed = "{\"consensus\":true,\"answer\":\"Paris\",\"votes\":3,\"total\":5,"
                         "\"confidence\":0.6,\"voters\":[\"v1\",\"v2\",\"v3\"],\"distinct\":3,"
                         "\"failed\":{}}";
    s_expect ("poll", "\"capital?\"", agreed);
    ck_assert_int_eq (tr_test_info (s_node, "poll", "parallel.completed"), 1);
    //  0.6 does not reach 0.7: no consensus, an error or a report.
    s_expect_error ("strict", "\"capital?\"", TR_ENOTFOUND);
    ck_assert_int_eq (tr_test_info (s_node, "strict", "parallel.failed"), 1);
    s_expect ("strict-report", "\"capital?\"",
              "{\"consensus\":false,\"answer\":null,\"votes\":3,\"total\":5,\"confidence\":0.6,"
              "\"voters\":[],\"distinct\":3,\"failed\":{}}");
    //  A count instead of a share.
    s_expect ("three", "\"capital?\"", agreed);
    s_expect_error ("four", "\"capital?\"", TR_ENOTFOUND);
    //  2 against 2 is no consensus, even above the threshold.
    s_expect ("tie", "\"capital?\"",
              "{\"consensus\":false,\"answer\":null,\"votes\":2,\"total\":4,\"confidence\":0.5,"
              "\"voters\":[],\"distinct\":2,\"failed\":{}}");
    //  A member that fails votes for nothing but counts in the total.
    s_expect ("failing", "\"capital?\"",
              "{\"consensus\":true,\"answer\":\"Paris\",\"votes\":2,\"total\":4,"
              "\"confidence\":0.5,\"voters\":[\"v1\",\"v2\"],\"distinct\":2,"
              "\"failed\":{\"bad\":\"TR_EHANDLER\"}}");
}
END_TEST

START_TEST (test_vote_folding)
{
    s_start ("name: t\n"
             "children:\n"
             S_VOTERS
             "  - {name: bytes, actor: parallel, params: {mode: vote, members: [v1, t1, t2, v4]}}\n"
             "  - name: text\n"
             "    actor: parallel\n"
             "    params: {mode: vote, fold: text, members: [v1, t1, t2, v4]}\n"
             "  - {name: k1, actor: part, params: {answer: {label: spam, why: links}}}\n"
             "  - {name: k2, actor: part, params: {answer: {label: spam, why: words}}}\n"
             "  - {name: k3, actor: part, params: {answer: {label: ham, why: tone}}}\n"
             "  - {name: k4, actor: part, params: {answer: {why: none}}}\n"
             "  - name: keyed\n"
             "    actor: parallel\n"
             "    params: {mode: vote, vote_key: label, members: [k1, k2, k3, k4]}\n"
             "  - name: whole\n"
             "    actor: parallel\n"
             "    params: {mode: vote, on_failure: report, members: [k1, k2, k3, k4]}\n");
    //  Byte-equal only: "Paris", " paris ", "PARIS\n" and "Lyon" are four
    //  answers with one vote each, a tie.
    s_expect_error ("bytes", "\"q\"", TR_ENOTFOUND);
    //  fold: text: the three are one answer (the first voter's words).
    s_expect ("text", "\"q\"", "{\"consensus\":true,\"answer\":\"Paris\",\"votes\":3,\"total\":4,"
                               "\"confidence\":0.75,\"voters\":[\"v1\",\"t1\",\"t2\"],"
                               "\"distinct\":2,\"failed\":{}}");
    //  vote_key: equal on the declared field; the answer is the first
    //  voter's whole answer; an answer without the field is no vote.
    s_expect ("keyed", "\"q\"",
              "{\"consensus\":true,\"answer\":{\"label\":\"spam\",\"why\":\"links\"},\"votes\":2,"
              "\"total\":4,\"confidence\":0.5,\"voters\":[\"k1\",\"k2\"],\"distinct\":2,"
              "\"failed\":{\"k4\":\"TR_EOUTPUT\"}}");
    //  The same answers compared whole differ.
    s_expect ("whole", "\"q\"",
              "{\"consensus\":false,\"answer\":null,\"votes\":1,\"total\":4,\"confidence\":0.25,"
              "\"voters\":[],\"distinct\":4,\"failed\":{}}");
}
END_TEST

//  --------------------------------------------------------------------------
//  race

//  The delays leave room (200 ms) between what must come first and what
//  must come after, for a loaded machine.
#define S_RACERS "  - {name: fast, actor: part, params: {answer: fast, delay: 200ms}}\n" \
                 "  - {name: slow, actor: part, params: {answer: slow, delay: 1s}}\n" \
                 "  - {name: broken, actor: part, params: {fail: true}}\n" \
                 "  - {name: low, actor: part, params: {answer: {score: 0.2, text: meh}}}\n" \
                 "  - {name: good, actor: part, params: {answer: {score: 0.9, text: great}, " \
                 "delay: 200ms}}\n" \
                 "  - {name: late, actor: part, params: {answer: {score: 0.95, text: great too}, " \
                 "delay: 1s}}\n"

START_TEST (test_race_first_success)
{
    s_start (TR_TEST_LENIENT S_RACERS
             "  - {name: first, actor: parallel, params: {mode: race, members: [slow, broken, fast]}}\n"
             "  - {name: dead, actor: parallel, params: {mode: race, members: [broken, nobody]}}\n");
    //  broken fails at once, which does not end the race; fast wins, and
    //  slow is cancelled: its answer, when it comes, is dropped.
    char *answer = NULL;
    ck_assert_int_eq (tr_test_ask_jj (s_node, "first", "\"go\"", s_timeout (), &answer), TR_OK);
    ck_assert_str_eq (answer, "\"fast\"");
    free (answer);
    ck_assert_int_eq (tr_test_info (s_node, "first", "parallel.cancelled"), 1);
    tr_test_expect_info (s_node, "slow", "got", 1);
    tr_test_expect_info (s_node, "first", "parallel.dropped", 1);
    //  No member succeeds: the first one's error (member order).
    s_expect_error ("dead", "\"go\"", TR_EHANDLER);
    ck_assert_int_eq (tr_test_info (s_node, "dead", "parallel.failed"), 1);
}
END_TEST

START_TEST (test_race_quality)
{
    s_start ("name: t\n"
             "children:\n"
             S_RACERS
             "  - name: best\n"
             "    actor: parallel\n"
             "    params: {mode: race, accept: {field: score, min: 0.8}, members: [late, low, good]}\n"
             "  - name: best-report\n"
             "    actor: parallel\n"
             "    params: {mode: race, on_failure: report, accept: {field: score, min: 0.8},\n"
             "             members: [late, low, good]}\n"
             "  - name: wordy\n"
             "    actor: parallel\n"
             "    params: {mode: race, accept: {match: great, field: text}, members: [low, good]}\n"
             "  - name: picky\n"
             "    actor: parallel\n"
             "    params: {mode: race, accept: {field: score, min: 0.99}, members: [low, good]}\n"
             "  - name: picky-report\n"
             "    actor: parallel\n"
             "    params: {mode: race, on_failure: report, accept: {regex: '^excellent'},\n"
             "             members: [low, good, fast]}\n");
    //  low answers first but below 0.8; good passes and wins; late is
    //  cancelled, its answer dropped when it comes.
    s_expect ("best", "\"go\"", "{\"score\":0.9,\"text\":\"great\"}");
    ck_assert_int_eq (tr_test_info (s_node, "best", "parallel.rejected"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "best", "parallel.cancelled"), 1);
    tr_test_expect_info (s_node, "best", "parallel.dropped", 1);
    s_expect ("best-report", "\"go\"", "{\"winner\":\"good\",\"answer\":{\"score\":0.9,"
                                       "\"text\":\"great\"},\"rejected\":[\"low\"],\"failed\":{}}");
    s_expect ("wordy", "\"go\"", "{\"score\":0.9,\"text\":\"great\"}");
    //  Nobody good enough: TR_EOUTPUT, or the report.
    s_expect_error ("picky", "\"go\"", TR_EOUTPUT);
    s_expect ("picky-report", "\"go\"", "{\"winner\":null,\"answer\":null,"
                                        "\"rejected\":[\"low\",\"good\",\"fast\"],\"failed\":{}}");
}
END_TEST

//  --------------------------------------------------------------------------
//  Events, tells, remote members, stopping

START_TEST (test_events_and_tells)
{
    s_start (TR_TEST_LENIENT S_VOTERS S_RACERS
             "  - {name: watcher, actor: ledger}\n"
             "  - {name: poll, actor: parallel, params: {mode: vote, members: [v1, v2, v3, v4, v5]}}\n"
             "  - {name: split, actor: parallel, params: {mode: sections, members: [v1, bad]}}\n"
             "  - {name: first, actor: parallel, params: {mode: race, members: [slow, fast]}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "parallel.", "watcher"), TR_OK);
    s_expect ("poll", "\"q\"", "{\"consensus\":true,\"answer\":\"Paris\",\"votes\":3,\"total\":5,"
                               "\"confidence\":0.6,\"voters\":[\"v1\",\"v2\",\"v3\"],"
                               "\"distinct\":3,\"failed\":{}}");
    tr_test_expect_in_ledger ("[\"parallel.completed\",{\"parallel\":\"poll\","
                              "\"mode\":\"vote\",\"ms\":");
    tr_test_expect_in_ledger ("\"consensus\":true,\"votes\":3,\"total\":5,\"confidence\":0.6,"
                              "\"answered\":5,\"failed\":{},\"cancelled\":0}]");
    s_expect_error ("split", "\"q\"", TR_EHANDLER);
    tr_test_expect_in_ledger ("[\"parallel.failed\",{\"parallel\":\"split\","
                              "\"mode\":\"sections\",\"ms\":");
    tr_test_expect_in_ledger ("\"error\":\"TR_EHANDLER\",\"member\":\"bad\",");
    //  A tell runs the same way; its outcome is counted and published.
    tr_body_t body = tr_test_pack_str ("told");
    ck_assert_int_eq (tr_tell (s_node, "first", body.data, body.size, NULL), TR_OK);
    tr_test_expect_info (s_node, "first", "parallel.completed", 1);
    tr_test_expect_in_ledger ("\"mode\":\"race\",\"ms\":");
    tr_test_expect_in_ledger ("\"winner\":\"fast\",\"rejected\":0,\"answered\":1,\"failed\":{},"
                              "\"cancelled\":1}]");
}
END_TEST

START_TEST (test_remote_member)
{
    tr_test_remote_t r;
    tr_test_remote_start (&r);
    ck_assert_int_eq (tr_spawn (r.b, "far", &s_part_type.behaviour, NULL, NULL, NULL), TR_OK);
    tr_tree_t *tree = NULL;
    tr_sup_t *sup = NULL;
    tr_test_tree_start (r.a, "name: t\n"
                             "children:\n"
                             "  - {name: near, actor: part}\n"
                             "  - {name: p, actor: parallel, params: {mode: sections, timeout: 1s,"
                             " members: [near, far]}}\n", "parallel.yaml", &tree, &sup);
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    char *answer = NULL;
    int rc;
    while ((rc = tr_test_ask_jj (r.a, "p", "\"r\"", 2000, &answer)) != TR_OK
           && tr_test_now_ms () < deadline)
        usleep (20 * 1000);
    ck_assert_int_eq (rc, TR_OK);
    ck_assert_str_eq (answer, "{\"near\":\"r-near\",\"far\":\"r-far\"}");
    free (answer);
    tr_test_tree_stop (&tree, &sup);
    tr_test_remote_stop (&r);
}
END_TEST

START_TEST (test_stop_in_flight)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: part, params: {delay: 500ms}}\n"
             "  - {name: b, actor: part, params: {delay: 500ms}}\n"
             "  - {name: abc, actor: parallel, params: {mode: sections, members: [a, b]}}\n");
    tr_test_asker_t asker;
    tr_test_asker_start (&asker, s_node, "abc", "\"x\"", s_timeout (), 0);
    tr_test_expect_info (s_node, "a", "got", 1);
    ck_assert_int_eq (tr_test_info (s_node, "abc", "parallel.inflight"), 1);
    //  The parallel actor stops with the run in flight: the asker hears
    //  TR_ENOREPLY at once, not a timeout.
    ck_assert_int_eq (tr_actor_stop (s_node, "abc", 1000), TR_OK);
    tr_test_asker_join (&asker);
    ck_assert_int_eq (asker.rc, TR_ENOREPLY);
}
END_TEST

//  --------------------------------------------------------------------------
//  Bad parameters

//  The loader's or the actor's message for params, which must be expect.
static void
s_expect_bad (const char *params, const char *expect)
{
    tr_test_expect_params_error (s_node, "parallel.yaml", "name: t\n"
                                 "children:\n"
                                 "  - {name: a, actor: part}\n"
                                 "  - name: p\n"
                                 "    actor: parallel\n", params, expect, TR_TEST_WHOLE);
}

START_TEST (test_bad_params)
{
    //  The loader's own checks of each key's kind.
    s_expect_bad ("{members: [a]}",
                  "parallel.yaml:6:13: missing parameter 'mode' of actor type 'parallel' "
                  "(a string: sections (split, run, merge), vote (consensus) or race (first "
                  "good answer))");
    s_expect_bad ("{mode: vote, members: a}",
                  "parallel.yaml:6:35: parameter 'members' of actor type 'parallel' must be "
                  "a sequence, not 'a'");
    s_expect_bad ("{mode: race, members: [a], accept: 3}",
                  "parallel.yaml:6:48: parameter 'accept' of actor type 'parallel' must be "
                  "a mapping, not '3'");
    s_expect_bad ("{mode: vote, member: [a]}",
                  "parallel.yaml:6:26: unknown parameter 'member' of actor type 'parallel'; "
                  "expected one of: mode, members, timeout, on_failure, split, merge, "
                  "vote_key, fold, threshold, min_votes, accept");
    //  The type's check, at the value at fault.
    s_expect_bad ("{mode: all, members: [a]}",
                  "parallel.yaml:6:20: p: 'mode' must be one of sections, vote, race, not 'all'");
    s_expect_bad ("{mode: vote, members: []}",
                  "parallel.yaml:6:35: p: 'members' must be a list of at least one actor name");
    s_expect_bad ("{mode: vote, members: [a, a]}",
                  "parallel.yaml:6:39: p: 'members' names 'a' twice (items 1 and 2)");
    s_expect_bad ("{mode: vote, members: [a, 3]}",
                  "parallel.yaml:6:39: p: 'members' item 2 must be an actor name or a mapping, "
                  "not an integer");
    s_expect_bad ("{mode: vote, members: ['a b']}",
                  "parallel.yaml:6:36: p: 'members' item 1 is not a valid actor name: 'a b'");
    s_expect_bad ("{mode: sections, members: [{actor: a, field: x}]}",
                  "parallel.yaml:6:58: p: members item 1 'field' is only for split: field");
    s_expect_bad ("{mode: sections, split: field, members: [{field: x}]}",
                  "parallel.yaml:6:54: p: members item 1 needs 'actor', the member's actor");
    s_expect_bad ("{mode: sections, split: field, members: [{actor: a, as: x}]}",
                  "parallel.yaml:6:69: p: unknown key 'as' in members item 1; expected one of: "
                  "actor, field");
    s_expect_bad ("{mode: sections, split: halves, members: [a]}",
                  "parallel.yaml:6:37: p: 'split' must be one of whole, list, field, "
                  "not 'halves'");
    s_expect_bad ("{mode: sections, merge: set, members: [a]}",
                  "parallel.yaml:6:37: p: 'merge' must be one of map, list, not 'set'");
    s_expect_bad ("{mode: vote, split: list, members: [a]}",
                  "parallel.yaml:6:33: p: 'split' is only for mode sections");
    s_expect_bad ("{mode: sections, threshold: 0.5, members: [a]}",
                  "parallel.yaml:6:41: p: 'threshold' is only for mode vote");
    s_expect_bad ("{mode: race, vote_key: label, members: [a]}",
                  "parallel.yaml:6:36: p: 'vote_key' is only for mode vote");
    s_expect_bad ("{mode: vote, accept: {min: 1}, members: [a]}",
                  "parallel.yaml:6:34: p: 'accept' is only for mode race");
    s_expect_bad ("{mode: vote, threshold: 0, members: [a]}",
                  "parallel.yaml:6:37: p: 'threshold' must be above 0 (a share of the members, "
                  "up to 1)");
    s_expect_bad ("{mode: vote, threshold: 1.5, members: [a]}",
                  "parallel.yaml:6:37: p: 'threshold' must be from 0 to 1, not 1.5");
    s_expect_bad ("{mode: vote, threshold: 0.5, min_votes: 2, members: [a, b]}",
                  "parallel.yaml:6:53: p: give 'threshold' or 'min_votes', not both");
    s_expect_bad ("{mode: vote, min_votes: 3, members: [a, b]}",
                  "parallel.yaml:6:37: p: 'min_votes' (3) is more than the members (2): "
                  "no answer could ever win");
    s_expect_bad ("{mode: vote, fold: loose, members: [a]}",
                  "parallel.yaml:6:32: p: 'fold' must be one of bytes, text, not 'loose'");
    s_expect_bad ("{mode: race, accept: {}, members: [a]}",
                  "parallel.yaml:6:34: p: 'accept' needs exactly one of min, match, regex");
    s_expect_bad ("{mode: race, accept: {min: 1, match: x}, members: [a]}",
                  "parallel.yaml:6:34: p: 'accept' needs exactly one of min, match, regex");
    s_expect_bad ("{mode: race, accept: {min: high}, members: [a]}",
                  "parallel.yaml:6:40: p: accept 'min' must be a number, not a string");
    s_expect_bad ("{mode: race, accept: {min: 1, best: 2}, members: [a]}",
                  "parallel.yaml:6:49: p: unknown key 'best' in 'accept'; expected one of: "
                  "min, field, match, regex");
    s_expect_bad ("{mode: race, accept: {regex: '['}, members: [a]}",
                  "parallel.yaml:6:42: p: accept 'regex' '[' does not compile: "
                  "Invalid regular expression");
    s_expect_bad ("{mode: vote, members: [a], on_failure: shrug}",
                  "parallel.yaml:6:52: p: 'on_failure' must be one of error, report, "
                  "not 'shrug'");
    s_expect_bad ("{mode: vote, members: [a], timeout: 0}",
                  "parallel.yaml:6:49: p: 'timeout' must be from 1 ms to 2147483647 ms, "
                  "not 0 ms");
    //  Only known at start: a member that is the actor itself.
    s_expect_bad ("{mode: race, members: [a, p]}",
                  "supervisor 't': child 'p' could not start: parallel 'p': 'members' item 2 "
                  "is this actor itself");
    //  A nested mistake on a line of its own, at its line and column.
    const char *yaml = "name: t\n"
                       "children:\n"
                       "  - name: p\n"
                       "    actor: parallel\n"
                       "    params:\n"
                       "      mode: sections\n"
                       "      split: field\n"
                       "      members:\n"
                       "        - a\n"
                       "        - {actor: b, field: x}\n"
                       "        - {actor: 'c d'}\n";
    char *error = tr_test_tree_error (s_node, yaml, "parallel.yaml");
    ck_assert_str_eq (error, "parallel.yaml:11:19: p: 'members item 3 'actor'' is not a valid "
                             "actor name: 'c d'");
    free (error);
}
END_TEST

START_TEST (test_bad_params_from_c)
{
    //  Spawned from C with parameters of its own, the actor checks them
    //  when it starts.
    const tr_actor_type_t *type = tr_actor_type_find ("parallel");
    ck_assert_ptr_nonnull (type);
    static const char *const bad [] = {
        "{\"members\":[\"a\"]}",
        "{\"mode\":\"vote\",\"members\":[]}",
        "{\"mode\":\"race\",\"members\":[\"a\"],\"accept\":{\"regex\":\"(\"}}",
        NULL
    };
    for (size_t i = 0; bad [i]; i++) {
        char *data = NULL;
        size_t size = 0;
        ck_assert_int_eq (tr__json_parse (bad [i], strlen (bad [i]), &data, &size, NULL), 0);
        tr_params_t params = { (const uint8_t *) data, size };
        ck_assert_msg (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL)
                       == TR_EINIT, "%s", bad [i]);
        free (data);
    }
    const char *good = "{\"mode\":\"vote\",\"members\":[\"a\"]}";
    char *data = NULL;
    size_t size = 0;
    ck_assert_int_eq (tr__json_parse (good, strlen (good), &data, &size, NULL), 0);
    tr_params_t params = { (const uint8_t *) data, size };
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_OK);
    free (data);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_parallel");
    TCase *tc = tcase_create ("parallel");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_sections_overlap);
    tcase_add_test (tc, test_sections_merge_order);
    tcase_add_test (tc, test_sections_split);
    tcase_add_test (tc, test_sections_failure);
    tcase_add_test (tc, test_timeout);
    tcase_add_test (tc, test_vote_threshold);
    tcase_add_test (tc, test_vote_folding);
    tcase_add_test (tc, test_race_first_success);
    tcase_add_test (tc, test_race_quality);
    tcase_add_test (tc, test_events_and_tells);
    tcase_add_test (tc, test_remote_member);
    tcase_add_test (tc, test_stop_in_flight);
    tcase_add_test (tc, test_bad_params);
    tcase_add_test (tc, test_bad_params_from_c);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
