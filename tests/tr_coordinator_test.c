/*  tr_coordinator_test.c - tests of the coordinator
    (actors/tr_coordinator.c), the supervisor pattern, on a node joined to
    a real broker (in this process) whose scratchpad holds the state.

    Rounds: what the agent is given each round (the state read back from
    the scratchpad), assign, review (waiting for a member), reassign
    (with and without `from`), finish; the state read back after the end
    (status, answer, results, progress, the log); decisions that cannot be
    carried out, logged and gone past; the bound on rounds (TR_ELIMIT, the
    report naming the rounds used); an agent that fails; tasks waiting
    their turn, and refused past the queue; the events; an llm agent on
    the offline backend (the example file); a member in another process
    (`troupe run --broker`) with a real `troupe broker`, and the state
    read back by a third (`troupe kv get`); no broker, and bad parameters
    at their file, line and column.

    Members and the deciding agent can be held on a gate (a semaphore the
    test opens), so that what happens between rounds is decided by the
    test, not by timing.
*/

#include "tr_test.h"
#include "tr_test_tree.h"
#include "tr_json.h"

#include <msgpack.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

static tr_broker_t *s_broker;
static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_asks [32768];             //  what the deciders were asked: "NAME JSON\n"
static size_t s_nasks;

//  Gates, by actor name.
#define S_GATES 8
static struct {
    char name [32];
    sem_t sem;
} s_gates [S_GATES];

static sem_t *
s_gate (const char *name)
{
    for (int i = 0; i < S_GATES; i++)
        if (strcmp (s_gates [i].name, name) == 0)
            return &s_gates [i].sem;
    return NULL;
}

static void
s_gate_open (const char *name)
{
    sem_t *sem = s_gate (name);
    ck_assert_ptr_nonnull (sem);
    sem_post (sem);
}

//  --------------------------------------------------------------------------
//  Test actors

//  decider: answers round N's ask with the Nth decision of `script` (JSON
//  strings; the last repeats), after waiting at its gate if `gate: true`;
//  records each ask. `fail: true` fails.
typedef struct {
    tr_params_t script;
    bool gate;
    bool fail;
} s_decider_t;

static const tr_param_spec_t s_decider_params [] = {
    { "script", TR_PARAM_LIST, false, "decisions, as JSON, one per round" },
    { "gate", TR_PARAM_BOOL, false, "wait for the test before answering" },
    { "fail", TR_PARAM_BOOL, false, "fail every ask" },
    { .key = NULL }
};

static int
s_decider_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    s_decider_t *decider = (s_decider_t *) calloc (1, sizeof *decider);
    const tr_params_t *params = (const tr_params_t *) arg;
    if (params) {
        tr_params_get (params, "script", &decider->script);
        tr_params_bool (params, "gate", &decider->gate);
        tr_params_bool (params, "fail", &decider->fail);
    }
    *state_p = decider;
    return 0;
}

//  The round of an ask, or 0.
static uint64_t
s_round_of (const tr_msg_t *msg)
{
    uint64_t round = 0;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    if (msgpack_unpack_next (&unpacked, tr_msg_body (msg), tr_msg_size (msg), NULL)
        == MSGPACK_UNPACK_SUCCESS && unpacked.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < unpacked.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &unpacked.data.via.map.ptr [i];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 5
            &&  memcmp (kv->key.via.str.ptr, "round", 5) == 0
            &&  kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                round = kv->val.via.u64;
        }
    msgpack_unpacked_destroy (&unpacked);
    return round;
}

static int
s_decider_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_decider_t *decider = (s_decider_t *) state;
    tr_test_text_add (s_asks, sizeof s_asks, tr_actor_name (self), tr_msg_body (msg), tr_msg_size (msg));
    pthread_mutex_lock (&s_lock);
    s_nasks++;
    pthread_mutex_unlock (&s_lock);
    if (decider->gate)
        sem_wait (s_gate (tr_actor_name (self)));
    if (decider->fail)
        return -1;
    //  The decision of this round (or the last).
    tr__mp_t mp;
    uint32_t steps;
    tr__mp_init (&mp, decider->script.data, decider->script.size);
    if (tr__mp_array (&mp, &steps) || steps == 0)
        return -1;
    uint64_t round = s_round_of (msg);
    const char *text = NULL;
    uint32_t len = 0;
    for (uint64_t i = 0; i < steps && (i < round || !text); i++)
        if (tr__mp_str (&mp, &text, &len))
            return -1;
    char *data = NULL;
    size_t size = 0;
    if (tr__json_parse (text, len, &data, &size, NULL))
        return -1;
    int rc = tr_reply (msg, data, size);
    free (data);
    return rc;
}

static const tr_actor_type_t s_decider_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "decider",
    .summary = "decides from a script (coordinator tests)",
    .behaviour = { s_decider_init, s_decider_handle, tr_test_free_state },
    .params = s_decider_params,
};

//  worker: answers a string with the string plus "+NAME", after waiting
//  at its gate if `gate: true`; `fail: true` fails.
typedef struct {
    bool gate;
    bool fail;
} s_worker_t;

static const tr_param_spec_t s_worker_params [] = {
    { "gate", TR_PARAM_BOOL, false, "wait for the test before answering" },
    { "fail", TR_PARAM_BOOL, false, "fail every ask" },
    { .key = NULL }
};

static int
s_worker_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    s_worker_t *worker = (s_worker_t *) calloc (1, sizeof *worker);
    if (arg) {
        tr_params_bool ((const tr_params_t *) arg, "gate", &worker->gate);
        tr_params_bool ((const tr_params_t *) arg, "fail", &worker->fail);
    }
    *state_p = worker;
    return 0;
}

static int
s_worker_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_worker_t *worker = (s_worker_t *) state;
    if (worker->gate)
        sem_wait (s_gate (tr_actor_name (self)));
    if (worker->fail)
        return -1;
    const char *text = "";
    size_t len = 0;
    if (tr_msg_str (msg, &text, &len) != TR_OK)
        return tr_reply_error (msg, TR_EINVAL);
    char out [300];
    int n = snprintf (out, sizeof out, "%.*s+%s", (int) len, text, tr_actor_name (self));
    tr_body_t body;
    tr_body_str (&body, out, (size_t) n);
    return tr_reply (msg, body.data, body.size);
}

static const tr_actor_type_t s_worker_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "worker",
    .summary = "appends its name to a string (coordinator tests)",
    .behaviour = { s_worker_init, s_worker_handle, tr_test_free_state },
    .params = s_worker_params,
};

//  --------------------------------------------------------------------------
//  Helpers

static void
s_setup (void)
{
    const tr_actor_type_t *types [] = { &s_decider_type, &s_worker_type, &tr_test_events_type, NULL };
    tr_test_types (types);
    const char *gated [S_GATES] = { "a", "b", "boss", "slow" };
    for (int i = 0; i < S_GATES; i++) {
        snprintf (s_gates [i].name, sizeof s_gates [i].name, "%s", gated [i]? gated [i]: "");
        sem_init (&s_gates [i].sem, 0, 0);
    }
    tr_test_text_clear (s_asks);
    tr_test_ledger_clear ();
    s_nasks = 0;
    char endpoint [128];
    tr_test_broker_start (&s_broker, endpoint, 200);
    s_node = tr_test_node_joined (endpoint, "here", 200);
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
    tr_broker_stop (&s_broker);
}

static void
s_start (const char *yaml)
{
    tr_test_tree_start (s_node, yaml, "coordinator.yaml", &s_tree, &s_sup);
}

static int
s_ask (const char *to, const char *text, char **answer)
{
    return tr_test_ask_json (s_node, to, text, 10000 * tr_test_slowdown (), answer);
}

//  An ask on a thread of its own, with a body given as JSON (a string:
//  "\"text\"").
static void
s_asker_start (tr_test_asker_t *a, const char *to, const char *json)
{
    tr_test_asker_start (a, s_node, to, json, 10000 * tr_test_slowdown (), 0);
}

//  Waits for the asker, and checks its error and (if not NULL) its
//  answer, written as JSON.
static void
s_asker_join (tr_test_asker_t *a, int rc, const char *answer)
{
    tr_test_asker_join (a);
    ck_assert_msg (a->rc == rc, "got %s", tr_errname (a->rc));
    if (answer)
        ck_assert_str_eq (a->answer, answer);
    free (a->answer);
}

static size_t
s_asked (void)
{
    pthread_mutex_lock (&s_lock);
    size_t n = s_nasks;
    pthread_mutex_unlock (&s_lock);
    return n;
}

//  Waits until the deciders were asked n times.
static void
s_wait_asked (size_t n)
{
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    while (s_asked () < n && tr_test_now_ms () < deadline)
        usleep (2000);
    ck_assert_msg (s_asked () >= n, "the agent was asked %zu times, not %zu", s_asked (), n);
}

//  Waits until `actor` has taken n decisions. A decision is carried out
//  in the same handling that counts it, so a member let go after this
//  answers a coordinator that has already done what round n said (a
//  review waits for it).
static void
s_wait_rounds (tr_node_t *node, const char *actor, int64_t n)
{
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    int64_t rounds = 0;
    while (tr_actor_info_get (node, actor, "coordinator.rounds", &rounds), rounds < n
           && tr_test_now_ms () < deadline)
        usleep (2000);
    ck_assert_msg (rounds >= n, "%s took %lld decisions, not %lld", actor, (long long) rounds,
                   (long long) n);
}

//  The Nth ask a decider got (from 1), as "NAME JSON" (malloc'd).
static char *
s_ask_seen (size_t n)
{
    char *all = tr_test_text_copy (s_asks);
    char *line = all;
    for (size_t i = 1; i < n && line; i++) {
        line = strchr (line, '\n');
        line = line? line + 1: NULL;
    }
    ck_assert_msg (line && *line, "no ask %zu in\n%s", n, all);
    char *copy = strndup (line, strcspn (line, "\n"));
    free (all);
    return copy;
}

static void
s_expect_ask (size_t n, const char *expect)
{
    char *seen = s_ask_seen (n);
    ck_assert_str_eq (seen, expect);
    free (seen);
}

//  The scratchpad's value under key, as JSON (malloc'd), or NULL.
static char *
s_kv (const char *key)
{
    tr_scratch_value_t value = { 0 };
    int rc = tr_scratch_get (s_node, key, 2000 * tr_test_slowdown (), &value);
    if (rc == TR_ENOTFOUND)
        return NULL;
    ck_assert_msg (rc == TR_OK, "%s: %s", key, tr_errname (rc));
    char *json = NULL;
    size_t len;
    ck_assert_int_eq (tr__json_from_msgpack (value.data, value.size, &json, &len), 0);
    tr_scratch_value_free (&value);
    return json;
}

static void
s_expect_kv (const char *key, const char *expect)
{
    char *json = s_kv (key);
    ck_assert_msg (json && strcmp (json, expect) == 0, "%s: got %s, expected %s", key,
                   json? json: "nothing", expect);
    free (json);
}

static int64_t
s_info (const char *actor, const char *key)
{
    return tr_test_info (s_node, actor, key);
}

//  --------------------------------------------------------------------------

START_TEST (test_rounds)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: worker, params: {gate: true}}\n"
             "  - {name: b, actor: worker, params: {gate: true}}\n"
             "  - {name: rec, actor: events}\n"
             "  - name: boss\n"
             "    actor: decider\n"
             "    params:\n"
             "      script:\n"
             "        - '{\"action\": \"assign\", \"member\": \"a\", \"task\": \"t1\"}'\n"
             "        - '{\"action\": \"assign\", \"member\": \"b\", \"task\": \"t2\"}'\n"
             "        - '{\"action\": \"review\"}'\n"
             "        - '{\"action\": \"review\"}'\n"
             "        - '{\"action\": \"finish\", \"result\": \"all done\"}'\n"
             "  - {name: desk, actor: coordinator, params: {agent: boss, members: [a, b]}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "coordinator.", "rec"), TR_OK);
    tr_test_asker_t asker;
    s_asker_start (&asker, "desk", "\"write\"");
    //  Round 1: a fresh state. Round 2: a at work. Round 3 reviews: the
    //  coordinator waits for a member, and asks nothing more meanwhile.
    s_wait_asked (3);
    s_expect_ask (1, "boss {\"task\":\"write\",\"round\":1,\"max_rounds\":10,"
                     "\"members\":[\"a\",\"b\"],\"progress\":{\"a\":null,\"b\":null},"
                     "\"results\":{\"a\":null,\"b\":null},\"log\":[]}");
    s_expect_ask (2, "boss {\"task\":\"write\",\"round\":2,\"max_rounds\":10,"
                     "\"members\":[\"a\",\"b\"],\"progress\":{\"a\":{\"status\":\"working\","
                     "\"task\":\"t1\",\"round\":1},\"b\":null},"
                     "\"results\":{\"a\":null,\"b\":null},"
                     "\"log\":[{\"round\":1,\"event\":\"assign\",\"member\":\"a\",\"task\":\"t1\"}]}");
    s_wait_rounds (s_node, "desk", 3);
    usleep (100 * 1000);
    ck_assert_int_eq (s_asked (), 3);
    s_expect_kv ("desk.round", "3");
    s_expect_kv ("desk.status", "\"running\"");
    s_expect_kv ("desk.progress.b", "{\"status\":\"working\",\"task\":\"t2\",\"round\":2}");
    ck_assert_int_eq (s_info ("desk", "coordinator.working"), 2);
    //  a finishes: round 4 sees its answer, and b still at work.
    s_gate_open ("a");
    s_wait_rounds (s_node, "desk", 4);
    s_expect_ask (4, "boss {\"task\":\"write\",\"round\":4,\"max_rounds\":10,"
                     "\"members\":[\"a\",\"b\"],\"progress\":{\"a\":{\"status\":\"done\","
                     "\"task\":\"t1\",\"round\":1},\"b\":{\"status\":\"working\",\"task\":\"t2\","
                     "\"round\":2}},\"results\":{\"a\":\"t1+a\",\"b\":null},"
                     "\"log\":[{\"round\":1,\"event\":\"assign\",\"member\":\"a\",\"task\":\"t1\"},"
                     "{\"round\":2,\"event\":\"assign\",\"member\":\"b\",\"task\":\"t2\"},"
                     "{\"round\":3,\"event\":\"review\"},"
                     "{\"round\":3,\"event\":\"done\",\"member\":\"a\"}]}");
    s_gate_open ("b");
    s_asker_join (&asker, TR_OK, "\"all done\"");
    //  The state, read back after the end.
    s_expect_kv ("desk.status", "\"finished\"");
    s_expect_kv ("desk.answer", "\"all done\"");
    s_expect_kv ("desk.round", "5");
    s_expect_kv ("desk.task", "\"write\"");
    s_expect_kv ("desk.result.a", "\"t1+a\"");
    s_expect_kv ("desk.result.b", "\"t2+b\"");
    s_expect_kv ("desk.progress.a", "{\"status\":\"done\",\"task\":\"t1\",\"round\":1}");
    s_expect_kv ("desk.progress.b", "{\"status\":\"done\",\"task\":\"t2\",\"round\":2}");
    s_expect_kv ("desk.log", "[{\"round\":1,\"event\":\"assign\",\"member\":\"a\",\"task\":\"t1\"},"
                             "{\"round\":2,\"event\":\"assign\",\"member\":\"b\",\"task\":\"t2\"},"
                             "{\"round\":3,\"event\":\"review\"},"
                             "{\"round\":3,\"event\":\"done\",\"member\":\"a\"},"
                             "{\"round\":4,\"event\":\"review\"},"
                             "{\"round\":4,\"event\":\"done\",\"member\":\"b\"},"
                             "{\"round\":5,\"event\":\"finish\"}]");
    char *error = s_kv ("desk.error");
    ck_assert_ptr_null (error);
    ck_assert_int_eq (s_info ("desk", "coordinator.rounds"), 5);
    ck_assert_int_eq (s_info ("desk", "coordinator.finished"), 1);
    ck_assert_int_eq (s_info ("desk", "coordinator.working"), 0);
    char *events = tr_test_ledger_expect ("coordinator.finished");
    ck_assert_msg (strstr (events, "coordinator.round {\"coordinator\":\"desk\",\"round\":1,"
                                   "\"action\":\"assign\",\"member\":\"a\"}\n"
                                   "coordinator.round {\"coordinator\":\"desk\",\"round\":2,"
                                   "\"action\":\"assign\",\"member\":\"b\"}\n"
                                   "coordinator.round {\"coordinator\":\"desk\",\"round\":3,"
                                   "\"action\":\"review\"}\n"), "%s", events);
    ck_assert_msg (strstr (events, "coordinator.finished {\"coordinator\":\"desk\",\"rounds\":5}"),
                   "%s", events);
    free (events);
}
END_TEST

START_TEST (test_round_bound)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: worker}\n"
             "  - {name: idle, actor: decider, params: {script: ['{\"action\": \"review\"}']}}\n"
             "  - name: desk\n"
             "    actor: coordinator\n"
             "    params: {agent: idle, members: [a], max_rounds: 3, on_failure: report}\n"
             "  - name: strict\n"
             "    actor: coordinator\n"
             "    params: {agent: idle, members: [a], max_rounds: 2}\n");
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("desk", "loop", &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"error\":\"TR_ELIMIT\",\"reason\":\"no finish after 3 round(s) "
                              "(max_rounds 3)\",\"rounds\":3}");
    free (answer);
    s_expect_kv ("desk.status", "\"failed\"");
    s_expect_kv ("desk.error", "\"no finish after 3 round(s) (max_rounds 3)\"");
    s_expect_kv ("desk.log", "[{\"round\":1,\"event\":\"review\",\"error\":\"nothing in progress\"},"
                             "{\"round\":2,\"event\":\"review\",\"error\":\"nothing in progress\"},"
                             "{\"round\":3,\"event\":\"review\",\"error\":\"nothing in progress\"}]");
    ck_assert_int_eq (s_ask ("strict", "loop", NULL), TR_ELIMIT);
    s_expect_kv ("strict.error", "\"no finish after 2 round(s) (max_rounds 2)\"");
    ck_assert_int_eq (s_info ("strict", "coordinator.failed"), 1);
}
END_TEST

START_TEST (test_invalid_decisions)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: worker, params: {gate: true, fail: true}}\n"
             "  - {name: b, actor: worker, params: {gate: true}}\n"
             "  - name: boss\n"
             "    actor: decider\n"
             "    params:\n"
             "      script:\n"
             "        - '{\"action\": \"assign\", \"member\": \"ghost\", \"task\": \"x\"}'\n"
             "        - '{\"action\": \"delegate\"}'\n"
             "        - '{\"action\": \"assign\", \"member\": \"a\", \"task\": \"\"}'\n"
             "        - '{\"action\": \"Assign\", \"member\": \" a \", \"task\": \"x\"}'\n"
             "        - '{\"action\": \"assign\", \"member\": \"a\", \"task\": \"y\"}'\n"
             "        - '{\"action\": \"reassign\", \"member\": \"b\", \"from\": \"a\"}'\n"
             "        - '{\"action\": \"review\"}'\n"
             "        - '{\"action\": \"finish\", \"result\": {\"by\": \"b\"}}'\n"
             "  - {name: desk, actor: coordinator, params: {agent: boss, members: [a, b]}}\n");
    tr_test_asker_t asker;
    s_asker_start (&asker, "desk", "\"task\"");
    s_wait_rounds (s_node, "desk", 7);
    s_gate_open ("b");
    s_asker_join (&asker, TR_OK, "{\"by\":\"b\"}");
    //  a's assignment was taken from it while it worked: its answer, when
    //  it comes, is not awaited.
    s_gate_open ("a");
    s_expect_kv ("desk.log",
                 "[{\"round\":1,\"event\":\"invalid\",\"error\":\"assign needs 'member', one of "
                 "the members; not 'ghost'\"},"
                 "{\"round\":2,\"event\":\"invalid\",\"error\":\"the decision's 'action' is not "
                 "one of assign, review, reassign, finish\"},"
                 "{\"round\":3,\"event\":\"invalid\",\"error\":\"assign needs a 'task'\"},"
                 "{\"round\":4,\"event\":\"assign\",\"member\":\"a\",\"task\":\"x\"},"
                 "{\"round\":5,\"event\":\"invalid\",\"error\":\"member 'a' is still at work on "
                 "its assignment of round 4\"},"
                 "{\"round\":6,\"event\":\"reassign\",\"member\":\"b\",\"task\":\"x\","
                 "\"from\":\"a\"},"
                 "{\"round\":7,\"event\":\"review\"},"
                 "{\"round\":7,\"event\":\"done\",\"member\":\"b\"},"
                 "{\"round\":8,\"event\":\"finish\"}]");
    s_expect_kv ("desk.progress.a", "{\"status\":\"reassigned\",\"task\":\"x\",\"round\":4}");
    s_expect_kv ("desk.progress.b", "{\"status\":\"done\",\"task\":\"x\",\"round\":6}");
    s_expect_kv ("desk.answer", "{\"by\":\"b\"}");
}
END_TEST

START_TEST (test_failure_and_reassign)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: worker, params: {gate: true, fail: true}}\n"
             "  - {name: b, actor: worker, params: {gate: true}}\n"
             "  - name: boss\n"
             "    actor: decider\n"
             "    params:\n"
             "      script:\n"
             "        - '{\"action\": \"assign\", \"member\": \"a\", \"task\": \"x\"}'\n"
             "        - '{\"action\": \"review\"}'\n"
             "        - '{\"action\": \"reassign\", \"member\": \"b\", \"task\": \"x\"}'\n"
             "        - '{\"action\": \"review\"}'\n"
             "        - '{\"action\": \"finish\", \"result\": \"x done\"}'\n"
             "  - {name: desk, actor: coordinator, params: {agent: boss, members: [a, b]}}\n");
    tr_test_asker_t asker;
    s_asker_start (&asker, "desk", "\"task\"");
    s_wait_rounds (s_node, "desk", 2);
    s_gate_open ("a");                  //  a fails: round 3 sees it
    s_wait_asked (3);
    s_expect_ask (3, "boss {\"task\":\"task\",\"round\":3,\"max_rounds\":10,"
                     "\"members\":[\"a\",\"b\"],\"progress\":{\"a\":{\"status\":\"failed\","
                     "\"task\":\"x\",\"round\":1,\"error\":\"TR_EHANDLER\"},\"b\":null},"
                     "\"results\":{\"a\":null,\"b\":null},"
                     "\"log\":[{\"round\":1,\"event\":\"assign\",\"member\":\"a\",\"task\":\"x\"},"
                     "{\"round\":2,\"event\":\"review\"},"
                     "{\"round\":2,\"event\":\"failed\",\"member\":\"a\",\"error\":\"TR_EHANDLER\"}]}");
    s_wait_rounds (s_node, "desk", 4);
    s_gate_open ("b");
    s_asker_join (&asker, TR_OK, "\"x done\"");
    //  Without `from`, the member that had failed at the same task is
    //  relieved of it.
    s_expect_kv ("desk.log",
                 "[{\"round\":1,\"event\":\"assign\",\"member\":\"a\",\"task\":\"x\"},"
                 "{\"round\":2,\"event\":\"review\"},"
                 "{\"round\":2,\"event\":\"failed\",\"member\":\"a\",\"error\":\"TR_EHANDLER\"},"
                 "{\"round\":3,\"event\":\"reassign\",\"member\":\"b\",\"task\":\"x\","
                 "\"from\":\"a\"},"
                 "{\"round\":4,\"event\":\"review\"},"
                 "{\"round\":4,\"event\":\"done\",\"member\":\"b\"},"
                 "{\"round\":5,\"event\":\"finish\"}]");
    s_expect_kv ("desk.progress.a", "{\"status\":\"reassigned\",\"task\":\"x\",\"round\":1}");
    s_expect_kv ("desk.result.b", "\"x+b\"");
}
END_TEST

START_TEST (test_agent_fails)
{
    s_start (TR_TEST_LENIENT
             "  - {name: a, actor: worker}\n"
             "  - {name: bad, actor: decider, params: {fail: true}}\n"
             "  - {name: rec, actor: events}\n"
             "  - {name: desk, actor: coordinator, params: {agent: bad, members: [a]}}\n"
             "  - {name: lost, actor: coordinator, params: {agent: nobody, members: [a]}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "coordinator.failed", "rec"), TR_OK);
    ck_assert_int_eq (s_ask ("desk", "t", NULL), TR_EHANDLER);
    s_expect_kv ("desk.status", "\"failed\"");
    s_expect_kv ("desk.error", "\"agent 'bad' failed in round 1: handler failed\"");
    ck_assert_int_eq (s_ask ("lost", "t", NULL), TR_ENOACTOR);
    s_expect_kv ("lost.error", "\"agent 'nobody' failed in round 1: no such actor\"");
    char *events = tr_test_ledger_expect ("\"coordinator\":\"lost\"");
    ck_assert_msg (strstr (events, "coordinator.failed {\"coordinator\":\"desk\",\"rounds\":1,"
                                   "\"error\":\"TR_EHANDLER\",\"reason\":\"agent 'bad' failed in "
                                   "round 1: handler failed\"}"), "%s", events);
    free (events);
    //  A task with no body is the asker's mistake.
    tr_msg_t *reply = NULL;
    ck_assert_int_eq (tr_ask (s_node, "desk", NULL, 0, 5000, &reply, NULL), TR_EINVAL);
}
END_TEST

START_TEST (test_queue)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: worker}\n"
             "  - name: boss\n"
             "    actor: decider\n"
             "    params: {gate: true, script: ['{\"action\": \"finish\", \"result\": \"ok\"}']}\n"
             "  - {name: one, actor: coordinator, params: {agent: boss, members: [a], queue: 0}}\n"
             "  - {name: two, actor: coordinator, params: {agent: boss, members: [a], "
                                                          "prefix: shared.two}}\n");
    //  With no queue, a task asked while one runs is refused at once.
    tr_test_asker_t first;
    s_asker_start (&first, "one", "\"first\"");
    s_wait_asked (1);
    ck_assert_int_eq (s_ask ("one", "second", NULL), TR_EFULL);
    s_gate_open ("boss");
    s_asker_join (&first, TR_OK, "\"ok\"");
    //  With a queue, the second waits its turn and starts afresh.
    tr_test_asker_t askers [2];
    s_asker_start (&askers [0], "two", "\"first\"");
    s_wait_asked (2);
    s_asker_start (&askers [1], "two", "\"second\"");
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while (s_info ("two", "coordinator.queued") < 1 && tr_test_now_ms () < deadline)
        usleep (2000);
    ck_assert_int_eq (s_info ("two", "coordinator.queued"), 1);
    s_expect_kv ("shared.two.task", "\"first\"");
    s_gate_open ("boss");
    s_asker_join (&askers [0], TR_OK, "\"ok\"");
    s_wait_asked (3);
    s_expect_kv ("shared.two.task", "\"second\"");
    s_gate_open ("boss");
    s_asker_join (&askers [1], TR_OK, "\"ok\"");
    ck_assert_int_eq (s_info ("two", "coordinator.finished"), 2);
    ck_assert_int_eq (s_info ("two", "coordinator.queued"), 0);
}
END_TEST

START_TEST (test_stop_in_flight)
{
    //  A coordinator stopped while a member works: the asker hears
    //  TR_ENOREPLY, and the member's answer later goes nowhere.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: worker, params: {gate: true}}\n"
             "  - name: boss\n"
             "    actor: decider\n"
             "    params:\n"
             "      script:\n"
             "        - '{\"action\": \"assign\", \"member\": \"a\", \"task\": \"t\"}'\n"
             "        - '{\"action\": \"review\"}'\n"
             "  - {name: desk, actor: coordinator, params: {agent: boss, members: [a]}}\n");
    tr_test_asker_t asker;
    s_asker_start (&asker, "desk", "\"task\"");
    s_wait_rounds (s_node, "desk", 2);
    ck_assert_int_eq (tr_actor_stop (s_node, "desk", 0), TR_OK);
    s_asker_join (&asker, TR_ENOREPLY, NULL);
    s_gate_open ("a");
    s_expect_kv ("desk.status", "\"running\"");
}
END_TEST

START_TEST (test_example)
{
    //  examples/coordinator.yaml: an llm agent with a signature decides,
    //  on the offline backend, from the state it is given.
    char *yaml = tr_test_read_file (TROUPE_SOURCE_DIR "/examples/coordinator.yaml", NULL);
    s_start (yaml);
    free (yaml);
    //  Its driver would ask too, every 3 s: this test asks alone, so that
    //  the state read back is its task's.
    ck_assert_int_eq (tr_actor_stop (s_node, "editor", 0), TR_OK);
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("newsdesk", "Write a short piece about honeybees.", &answer), TR_OK);
    ck_assert_msg (strstr (answer, "Honeybees") && strstr (answer, "[checked]"), "%s", answer);
    free (answer);
    char *log = s_kv ("newsdesk.log");
    ck_assert_msg (log && strstr (log, "\"event\":\"reassign\",\"member\":\"librarian\"")
                   && strstr (log, "\"event\":\"failed\",\"member\":\"researcher\"")
                   && strstr (log, "\"event\":\"finish\""), "%s", log? log: "no log");
    free (log);
    s_expect_kv ("newsdesk.status", "\"finished\"");
}
END_TEST

//  --------------------------------------------------------------------------
//  Other processes: a real `troupe broker`, a member in a `troupe run` of
//  its own, and `troupe kv get` reading the state.

typedef struct {
    pid_t pid;
    FILE *out;
} s_child_t;

static s_child_t s_broker_proc, s_tree_proc;

static void
s_kill_children (void)
{
    if (s_tree_proc.pid > 0)
        kill (s_tree_proc.pid, SIGKILL);
    if (s_broker_proc.pid > 0)
        kill (s_broker_proc.pid, SIGKILL);
}

//  Starts argv with env, its standard output on a pipe (its standard
//  error is this test's).
static void
s_spawn (s_child_t *child, char **argv, char **env)
{
    int from [2];
    ck_assert_int_eq (pipe (from), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, from [1], 1);
    posix_spawn_file_actions_addclose (&actions, from [0]);
    ck_assert_int_eq (posix_spawn (&child->pid, argv [0], &actions, NULL, argv, env), 0);
    posix_spawn_file_actions_destroy (&actions);
    close (from [1]);
    child->out = fdopen (from [0], "r");
}

//  Runs `troupe kv get KEY --broker ENDPOINT` and returns what it printed
//  (malloc'd, without the newline).
static char *
s_kv_get_command (const char *bin, const char *key, const char *endpoint)
{
    s_child_t child;
    char *argv [] = { (char *) bin, "kv", "get", (char *) key, "--broker", (char *) endpoint,
                      NULL };
    s_spawn (&child, argv, environ);
    char line [1024] = "";
    if (!fgets (line, sizeof line, child.out))
        line [0] = '\0';
    fclose (child.out);
    int status;
    waitpid (child.pid, &status, 0);
    ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0, "troupe kv get %s: %d",
                   key, status);
    line [strcspn (line, "\n")] = '\0';
    return strdup (line);
}

START_TEST (test_processes)
{
    atexit (s_kill_children);
    signal (SIGPIPE, SIG_IGN);
    const char *bin = getenv ("TROUPE_BIN");
    ck_assert_msg (bin && *bin, "TROUPE_BIN must name the troupe program");
    char *broker_argv [] = { (char *) bin, "broker", "--bind", "tcp://127.0.0.1:*", NULL };
    s_spawn (&s_broker_proc, broker_argv, environ);
    char line [512];
    const char *word = "troupe broker: listening on ";
    char *at = NULL;
    while (!at && fgets (line, sizeof line, s_broker_proc.out))
        if (strncmp (line, word, strlen (word)) == 0)
            at = line + strlen (word);
    ck_assert_msg (at, "the broker never said where it listens");
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "%.*s", (int) strcspn (at, " \n"), at);

    //  The far member: an llm agent in a `troupe run` of its own, with a
    //  control folder of its own.
    char work [] = "/tmp/tr_coordinator_test.XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (work));
    char tree [300], ctl [300], ctl_env [320];
    snprintf (tree, sizeof tree, "%s/far.yaml", work);
    snprintf (ctl, sizeof ctl, "%s/ctl", work);
    snprintf (ctl_env, sizeof ctl_env, "TROUPE_CONTROL_DIR=%s", ctl);
    ck_assert_int_eq (mkdir (ctl, 0700), 0);
    FILE *file = fopen (tree, "w");
    ck_assert_ptr_nonnull (file);
    fputs ("name: far\n"
           "children:\n"
           "  - name: scribe\n"
           "    actor: llm\n"
           "    params:\n"
           "      offline: {latency: 50ms, rules: [{regex: '(.*)', answer: '$1, written far away'}]}\n",
           file);
    fclose (file);
    //  This test's environment (sanitizer options included), and the
    //  control folder.
    size_t count = 0;
    while (environ [count])
        count++;
    char **env = (char **) calloc (count + 2, sizeof *env);
    ck_assert_ptr_nonnull (env);
    size_t kept = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp (environ [i], "TROUPE_CONTROL_DIR=", 19) != 0)
            env [kept++] = environ [i];
    env [kept] = ctl_env;
    char *tree_argv [] = { (char *) bin, "run", tree, "--broker", endpoint, NULL };
    s_spawn (&s_tree_proc, tree_argv, env);
    free (env);

    //  This process: the coordinator, its agent and a member of its own.
    tr_node_opts_t opts = { .broker = endpoint, .node_id = "near", .heartbeat_ms = 200 };
    tr_node_t *near = NULL;
    ck_assert_int_eq (tr_node_new (&opts, &near), TR_OK);
    tr_node_t *node = s_node;
    s_node = near;
    s_start ("name: near\n"
             "children:\n"
             "  - {name: a, actor: worker, params: {gate: true}}\n"
             "  - name: boss\n"
             "    actor: decider\n"
             "    params:\n"
             "      script:\n"
             "        - '{\"action\": \"assign\", \"member\": \"scribe\", \"task\": \"minutes\"}'\n"
             "        - '{\"action\": \"review\"}'\n"
             "        - '{\"action\": \"assign\", \"member\": \"a\", \"task\": \"agenda\"}'\n"
             "        - '{\"action\": \"review\"}'\n"
             "        - '{\"action\": \"finish\", \"result\": \"both done\"}'\n"
             "  - {name: desk, actor: coordinator, params: {agent: boss, members: [a, scribe]}}\n");
    //  Once the far member answers through the broker.
    int64_t deadline = tr_test_now_ms () + 10000 * tr_test_slowdown ();
    int rc;
    tr_body_t hello = tr_test_pack_str ("hello");
    do {
        tr_msg_t *reply = NULL;
        rc = tr_ask (near, "scribe", hello.data, hello.size, 1000, &reply, NULL);
        tr_msg_destroy (&reply);
        if (rc != TR_OK)
            usleep (50 * 1000);
    } while (rc != TR_OK && tr_test_now_ms () < deadline);
    ck_assert_int_eq (rc, TR_OK);
    tr_test_asker_t asker;
    s_asker_start (&asker, "desk", "\"the meeting\"");
    s_wait_rounds (near, "desk", 4);
    s_gate_open ("a");
    s_asker_join (&asker, TR_OK, "\"both done\"");
    s_expect_kv ("desk.log",
                 "[{\"round\":1,\"event\":\"assign\",\"member\":\"scribe\",\"task\":\"minutes\"},"
                 "{\"round\":2,\"event\":\"review\"},"
                 "{\"round\":2,\"event\":\"done\",\"member\":\"scribe\"},"
                 "{\"round\":3,\"event\":\"assign\",\"member\":\"a\",\"task\":\"agenda\"},"
                 "{\"round\":4,\"event\":\"review\"},"
                 "{\"round\":4,\"event\":\"done\",\"member\":\"a\"},"
                 "{\"round\":5,\"event\":\"finish\"}]");
    //  A third process reads the state the coordinator left.
    char *far = s_kv_get_command (bin, "desk.result.scribe", endpoint);
    ck_assert_str_eq (far, "\"minutes, written far away\"");
    free (far);
    char *status = s_kv_get_command (bin, "desk.status", endpoint);
    ck_assert_str_eq (status, "\"finished\"");
    free (status);
    tr_sup_stop (&s_sup);
    tr_tree_destroy (&s_tree);
    s_node = node;
    tr_node_destroy (&near);
    kill (s_tree_proc.pid, SIGTERM);
    int code;
    waitpid (s_tree_proc.pid, &code, 0);
    s_tree_proc.pid = 0;
    ck_assert_msg (WIFEXITED (code) && WEXITSTATUS (code) == 0, "troupe run ended %d", code);
    kill (s_broker_proc.pid, SIGTERM);
    waitpid (s_broker_proc.pid, &code, 0);
    s_broker_proc.pid = 0;
    fclose (s_tree_proc.out);
    fclose (s_broker_proc.out);
    unlink (tree);
    rmdir (ctl);
    rmdir (work);
}
END_TEST

//  --------------------------------------------------------------------------
//  Parameters

static void
s_expect_error (const char *params, const char *expect)
{
    char yaml [600];
    snprintf (yaml, sizeof yaml, "name: t\nchildren:\n  - {name: a, actor: worker}\n"
                                 "  - name: desk\n    actor: coordinator\n    params: %s\n",
              params);
    tr_tree_error_t err;
    char buf [800];
    char *error = NULL;
    int rc = tr_tree_parse (yaml, strlen (yaml), "coordinator.yaml", &s_tree, &err);
    if (rc != TR_OK)
        error = strdup (tr_tree_error_format (&err, buf, sizeof buf));
    else {
        rc = tr_sup_start (s_node, s_tree->name, &s_tree->root, &s_sup, &error);
        ck_assert_int_eq (rc, TR_ECHILD);
        tr_tree_destroy (&s_tree);
    }
    ck_assert_msg (error && strcmp (error, expect) == 0, "params %s: got '%s', expected '%s'",
                   params, error? error: "(none)", expect);
    free (error);
}

START_TEST (test_bad_params)
{
    //  The loader: kinds and keys.
    s_expect_error ("{agent: a, members: a}",
                    "coordinator.yaml:6:33: parameter 'members' of actor type 'coordinator' must "
                    "be a sequence, not 'a'");
    s_expect_error ("{members: [a]}",
                    "coordinator.yaml:6:13: missing parameter 'agent' of actor type "
                    "'coordinator' (a string: the agent that decides each round: asked with the "
                    "state, answers {action, member, task, result})");
    //  The coordinator's own check, at the value's position.
    s_expect_error ("{agent: a, members: [a], max_rounds: 0}",
                    "coordinator.yaml:6:50: desk: 'max_rounds' must be from 1 to 10000, not 0");
    s_expect_error ("{agent: a, members: [a], prefix: 'a b'}",
                    "coordinator.yaml:6:46: desk: 'prefix' must be 1 to 512 bytes without "
                    "spaces or control characters");
    s_expect_error ("{agent: a, members: [a, a]}",
                    "coordinator.yaml:6:37: desk: 'members' names 'a' twice (items 1 and 2)");
    s_expect_error ("{agent: a, members: []}",
                    "coordinator.yaml:6:33: desk: 'members' must be a list of at least one "
                    "actor name");
    s_expect_error ("{agent: a, members: [a], queue: -1}",
                    "coordinator.yaml:6:45: desk: 'queue' must be from 0 to 100000, not -1");
    s_expect_error ("{agent: a, members: [a], scratch_timeout: 0}",
                    "coordinator.yaml:6:55: desk: 'scratch_timeout' must be from 1 ms to "
                    "2147483647 ms, not 0 ms");
    s_expect_error ("{agent: a, members: [a], on_failure: shrug}",
                    "coordinator.yaml:6:50: desk: 'on_failure' must be one of error, report, "
                    "not 'shrug'");
    s_expect_error ("{agent: 'x y', members: [a]}",
                    "coordinator.yaml:6:21: desk: 'agent' is not a valid actor name: 'x y'");
}
END_TEST

START_TEST (test_no_broker)
{
    //  A node without a broker has no scratchpad: the coordinator does
    //  not start, and says why.
    tr_node_t *alone = NULL;
    ck_assert_int_eq (tr_node_new (NULL, &alone), TR_OK);
    const char *yaml = "name: t\n"
                       "children:\n"
                       "  - {name: a, actor: worker}\n"
                       "  - {name: desk, actor: coordinator, params: {agent: a, members: [a]}}\n";
    tr_tree_error_t err;
    ck_assert_int_eq (tr_tree_parse (yaml, strlen (yaml), "coordinator.yaml", &s_tree, &err),
                      TR_OK);
    char *reason = NULL;
    ck_assert_int_eq (tr_sup_start (alone, s_tree->name, &s_tree->root, &s_sup, &reason),
                      TR_ECHILD);
    ck_assert_str_eq (reason, "supervisor 't': child 'desk' could not start: coordinator "
                      "'desk': needs the scratchpad, and this node has no broker (troupe run "
                      "has one unless --no-broker; from C, tr_node_opts_t.broker)");
    free (reason);
    tr_tree_destroy (&s_tree);
    tr_node_destroy (&alone);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_coordinator");
    TCase *tc = tcase_create ("coordinator");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_rounds);
    tcase_add_test (tc, test_round_bound);
    tcase_add_test (tc, test_invalid_decisions);
    tcase_add_test (tc, test_failure_and_reassign);
    tcase_add_test (tc, test_agent_fails);
    tcase_add_test (tc, test_queue);
    tcase_add_test (tc, test_stop_in_flight);
    tcase_add_test (tc, test_example);
    tcase_add_test (tc, test_processes);
    tcase_add_test (tc, test_bad_params);
    tcase_add_test (tc, test_no_broker);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
