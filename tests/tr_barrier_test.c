/*  tr_barrier_test.c - tests of the barrier (actors/tr_barrier.c), started
    from tree files.

    Release only after the last arrival (measured: every party's answer
    comes after the last one asked, and the early ones waited for it),
    with the payloads in party order and the barrier.released event;
    parties identified by their actor names; a timeout that releases
    everyone with TR_ETIMEDOUT, or with the report naming who did not
    arrive, and the barrier.timedout event naming them too; a timeout
    brought forward by a party's own ask deadline; reuse over
    generations (cyclic), and a one-shot barrier that keeps its outcome;
    a party arriving twice, a stranger, bodies that are not arrivals;
    "status"; bad parameters with their exact messages, at load and at
    start from C.
*/

#include "tr_test.h"
#include "tr_test_tree.h"

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  Events go to the ledger (a "ledger" actor subscribed to them: "NAME
//  JSON" lines, tr_test_tree.h); what the parties heard, to s_records.
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;

//  --------------------------------------------------------------------------
//  Test actors

//  party: on any tell, asks `barrier` "arrive" (so the party is its own
//  actor name) and records when it asked, when it was answered, and the
//  answer, under its name.
#define S_RECORDS 16
typedef struct {
    char name [32];
    int64_t sent_ms;
    int64_t back_ms;
    int rc;
    char answer [512];
} s_record_t;

static s_record_t s_records [S_RECORDS];
static size_t s_recorded;

static void
s_record (const char *name, int64_t sent_ms, int rc, const tr_msg_t *reply)
{
    int64_t back_ms = tr_test_now_ms ();
    char *json = NULL;
    size_t len = 0;
    if (reply)
        ck_assert_int_eq (tr__json_from_msgpack (tr_msg_body (reply), tr_msg_size (reply),
                                                 &json, &len), 0);
    pthread_mutex_lock (&s_lock);
    ck_assert (s_recorded < S_RECORDS);
    s_record_t *r = &s_records [s_recorded++];
    snprintf (r->name, sizeof r->name, "%s", name);
    r->sent_ms = sent_ms;
    r->back_ms = back_ms;
    r->rc = rc;
    snprintf (r->answer, sizeof r->answer, "%.*s", (int) len, json? json: "");
    pthread_mutex_unlock (&s_lock);
    free (json);
}

static int
s_party_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    const char *barrier = NULL;
    size_t len = 0;
    ck_assert_int_eq (tr_params_str ((const tr_params_t *) arg, "barrier", &barrier, &len), TR_OK);
    *state_p = strndup (barrier, len);
    return 0;
}

static int
s_party_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) msg;
    tr_body_t body;
    tr_body_str (&body, "arrive", 6);
    tr_msg_t *reply = NULL;
    int64_t sent_ms = tr_test_now_ms ();
    int rc = tr_ask (tr_actor_node (self), (const char *) state, body.data, body.size,
                     10000 * tr_test_slowdown (), &reply, NULL);
    s_record (tr_actor_name (self), sent_ms, rc, reply);
    tr_msg_destroy (&reply);
    return 0;
}

static const tr_param_spec_t s_party_params [] = {
    { "barrier", TR_PARAM_STRING, true, "the barrier to arrive at" },
    { .key = NULL }
};

static const tr_actor_type_t s_party_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "party",
    .summary = "arrives at a barrier when told (barrier tests)",
    .behaviour = { s_party_init, s_party_handle, tr_test_free_state },
    .params = s_party_params,
};

//  --------------------------------------------------------------------------
//  Helpers

static void
s_setup (void)
{
    tr_test_setup (&s_node, (const tr_actor_type_t *[]) { &s_party_type, NULL });
    tr_test_ledger_register ();
    s_recorded = 0;
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
}

static void
s_start (const char *yaml)
{
    tr_test_tree_start (s_node, yaml, "barrier.yaml", &s_tree, &s_sup);
}

static int
s_ask_json (const char *to, const char *json, int timeout_ms, char **answer)
{
    return tr_test_ask_jj (s_node, to, json, timeout_ms, answer);
}

//  An arrival: an ask on a thread of its own, to `barrier` with `json`
//  after `delay_ms` (tr_test_asker_t keeps when it asked, when it heard,
//  and what).
static void
s_arrival_start (tr_test_asker_t *a, const char *barrier, const char *json, int delay_ms)
{
    tr_test_asker_start (a, s_node, barrier, json, 10000 * tr_test_slowdown (), delay_ms);
}

//  Waits until the barrier has `count` parties waiting.
static void
s_wait_waiting (const char *barrier, int64_t count)
{
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    while (tr_test_info (s_node, barrier, "barrier.waiting") != count
           && tr_test_now_ms () < deadline)
        usleep (1000);
    ck_assert_int_eq (tr_test_info (s_node, barrier, "barrier.waiting"), count);
}

//  The events so far (a copy), once they hold `needle` or 5 s have passed.
static char *
s_events_with (const char *needle)
{
    return tr_test_ledger_wait (needle, 5000 * tr_test_slowdown ());
}

//  --------------------------------------------------------------------------

START_TEST (test_release_after_last_arrival)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: events, actor: ledger}\n"
             "  - {name: b, actor: barrier, params: {parties: [a, b, c]}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "barrier.", "events"), TR_OK);
    //  c arrives first, then a, then (much later) b: nobody is released
    //  before b has asked.
    tr_test_asker_t arrivals [3];
    s_arrival_start (&arrivals [0], "b", "{\"arrive\": \"from c\", \"party\": \"c\"}", 0);
    s_arrival_start (&arrivals [1], "b", "{\"arrive\": {\"n\": 1}, \"party\": \"a\"}", 100);
    s_arrival_start (&arrivals [2], "b", "{\"arrive\": null, \"party\": \"b\"}", 400);
    for (int i = 0; i < 3; i++)
        tr_test_asker_join (&arrivals [i]);
    int64_t last_sent = arrivals [2].sent_ms;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq (arrivals [i].rc, TR_OK);
        //  Payloads in the order of `parties`, whoever came first.
        ck_assert_str_eq (arrivals [i].answer, "{\"generation\":1,\"parties\":[\"a\",\"b\",\"c\"],"
                                               "\"payloads\":[{\"n\":1},null,\"from c\"]}");
        ck_assert_msg (arrivals [i].back_ms >= last_sent,
                       "party %d released at %lld, before the last arrival at %lld", i,
                       (long long) arrivals [i].back_ms, (long long) last_sent);
        free (arrivals [i].answer);
    }
    //  The first waited for the last: about 400 ms.
    ck_assert_msg (arrivals [0].back_ms - arrivals [0].sent_ms >= 350, "c waited %lld ms",
                   (long long) (arrivals [0].back_ms - arrivals [0].sent_ms));
    char *events = s_events_with ("barrier.released");
    ck_assert_msg (strstr (events, "[\"barrier.released\",{\"barrier\":\"b\",\"generation\":1,"
                                   "\"parties\":[\"a\",\"b\",\"c\"],\"waited_ms\":"), "%s", events);
    free (events);
    ck_assert_int_eq (tr_test_info (s_node, "b", "barrier.released"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "b", "barrier.generation"), 2);
}
END_TEST

START_TEST (test_parties_by_actor_name)
{
    //  Actors that ask "arrive" are parties under their own names; with a
    //  number of parties, payloads come in arrival order.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: meet, actor: barrier, params: {parties: 3}}\n"
             "  - {name: p1, actor: party, params: {barrier: meet}}\n"
             "  - {name: p2, actor: party, params: {barrier: meet}}\n"
             "  - {name: p3, actor: party, params: {barrier: meet}}\n");
    const char *order [] = { "p2", "p3", "p1" };
    int64_t told [3];
    for (int i = 0; i < 3; i++) {
        told [i] = tr_test_now_ms ();
        ck_assert_int_eq (tr_tell (s_node, order [i], "\xc0", 1, NULL), TR_OK);
        if (i < 2)
            s_wait_waiting ("meet", i + 1);
        usleep (50 * 1000);
    }
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    for (;;) {
        pthread_mutex_lock (&s_lock);
        size_t n = s_recorded;
        pthread_mutex_unlock (&s_lock);
        if (n == 3 || tr_test_now_ms () >= deadline)
            break;
        usleep (1000);
    }
    pthread_mutex_lock (&s_lock);
    ck_assert_uint_eq (s_recorded, 3);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq (s_records [i].rc, TR_OK);
        ck_assert_str_eq (s_records [i].answer, "{\"generation\":1,\"parties\":[\"p2\",\"p3\","
                                                "\"p1\"],\"payloads\":[null,null,null]}");
        ck_assert (s_records [i].back_ms >= told [2]);
    }
    pthread_mutex_unlock (&s_lock);
}
END_TEST

START_TEST (test_timeout_names_missing)
{
    //  300 ms, longer under sanitizers (a slow machine must not miss
    //  the arrivals of the second generation below).
    int timeout = 300 * tr_test_slowdown ();
    char yaml [600];
    snprintf (yaml, sizeof yaml,
              "name: t\n"
              "children:\n"
              "  - {name: events, actor: ledger}\n"
              "  - {name: rep, actor: barrier, params: {parties: [a, b, c, d], timeout: %d, "
              "on_timeout: report}}\n"
              "  - {name: err, actor: barrier, params: {parties: [a, b, c], timeout: %d}}\n"
              "  - {name: num, actor: barrier, params: {parties: 3, timeout: %d, "
              "on_timeout: report}}\n", timeout, timeout, timeout);
    s_start (yaml);
    ck_assert_int_eq (tr_event_subscribe (s_node, "barrier.", "events"), TR_OK);
    tr_test_asker_t arrivals [7];
    s_arrival_start (&arrivals [0], "rep", "{\"arrive\": 1, \"party\": \"b\"}", 0);
    s_arrival_start (&arrivals [1], "rep", "{\"arrive\": 2, \"party\": \"d\"}", 50);
    s_arrival_start (&arrivals [2], "err", "{\"arrive\": 1, \"party\": \"c\"}", 0);
    s_arrival_start (&arrivals [3], "err", "{\"arrive\": 1, \"party\": \"a\"}", 0);
    s_arrival_start (&arrivals [4], "num", "{\"arrive\": 1, \"party\": \"x\"}", 0);
    for (int i = 0; i < 5; i++)
        tr_test_asker_join (&arrivals [i]);
    //  Everyone is released after the timeout, not before.
    for (int i = 0; i < 5; i++)
        ck_assert_msg (arrivals [i].back_ms - arrivals [i].sent_ms >= timeout - 60,
                       "arrival %d back after %lld ms", i,
                       (long long) (arrivals [i].back_ms - arrivals [i].sent_ms));
    //  The report names who did not arrive.
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq (arrivals [i].rc, TR_OK);
        ck_assert_str_eq (arrivals [i].answer,
                          "{\"error\":\"TR_ETIMEDOUT\",\"generation\":1,\"arrived\":[\"b\",\"d\"],"
                          "\"missing\":[\"a\",\"c\"],\"missing_count\":2}");
        free (arrivals [i].answer);
    }
    ck_assert_int_eq (arrivals [2].rc, TR_ETIMEDOUT);
    ck_assert_int_eq (arrivals [3].rc, TR_ETIMEDOUT);
    ck_assert_int_eq (arrivals [4].rc, TR_OK);
    ck_assert_str_eq (arrivals [4].answer,
                      "{\"error\":\"TR_ETIMEDOUT\",\"generation\":1,\"arrived\":[\"x\"],"
                      "\"missing_count\":2}");
    free (arrivals [4].answer);
    //  So does the event, for the error form too.
    free (s_events_with ("\"barrier\":\"rep\""));
    char *events = s_events_with ("\"barrier\":\"err\"");
    ck_assert_msg (strstr (events, "[\"barrier.timedout\",{\"barrier\":\"rep\",\"error\":"
                                   "\"TR_ETIMEDOUT\",\"generation\":1,\"arrived\":[\"b\",\"d\"],"
                                   "\"missing\":[\"a\",\"c\"],\"missing_count\":2}]"), "%s", events);
    ck_assert_msg (strstr (events, "[\"barrier.timedout\",{\"barrier\":\"err\",\"error\":"
                                   "\"TR_ETIMEDOUT\",\"generation\":1,\"arrived\":[\"a\",\"c\"],"
                                   "\"missing\":[\"b\"],\"missing_count\":1}]"), "%s", events);
    free (events);
    ck_assert_int_eq (tr_test_info (s_node, "rep", "barrier.timedout"), 1);
    //  The next generation works (cyclic is the default).
    s_arrival_start (&arrivals [5], "err", "{\"arrive\": 5, \"party\": \"b\"}", 0);
    s_wait_waiting ("err", 1);
    s_arrival_start (&arrivals [6], "err", "{\"arrive\": 6, \"party\": \"c\"}", 0);
    s_wait_waiting ("err", 2);
    char *answer = NULL;
    ck_assert_int_eq (s_ask_json ("err", "{\"arrive\": 4, \"party\": \"a\"}",
                                  5000 * tr_test_slowdown (), &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"generation\":2,\"parties\":[\"a\",\"b\",\"c\"],"
                              "\"payloads\":[4,5,6]}");
    for (int i = 5; i < 7; i++) {
        tr_test_asker_join (&arrivals [i]);
        ck_assert_int_eq (arrivals [i].rc, TR_OK);
        ck_assert_str_eq (arrivals [i].answer, answer);
        free (arrivals [i].answer);
    }
    free (answer);
}
END_TEST

START_TEST (test_ask_deadline_brings_timeout_forward)
{
    //  The barrier waits 30 s, but a party whose ask gives up after
    //  600 ms would leave: everyone is released before that, with the
    //  barrier's own answer (the report), not the asker's timeout.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: b, actor: barrier, params: {parties: 3, on_timeout: report}}\n");
    tr_test_asker_t patient;
    s_arrival_start (&patient, "b", "{\"arrive\": 1, \"party\": \"patient\"}", 0);
    s_wait_waiting ("b", 1);
    char *answer = NULL;
    int64_t start = tr_test_now_ms ();
    int timeout = 600 * tr_test_slowdown ();
    ck_assert_int_eq (s_ask_json ("b", "{\"arrive\": 2, \"party\": \"hasty\"}", timeout,
                                  &answer), TR_OK);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_msg (took >= timeout - 200 && took < timeout, "released after %lld ms",
                   (long long) took);
    ck_assert_str_eq (answer, "{\"error\":\"TR_ETIMEDOUT\",\"generation\":1,\"arrived\":"
                              "[\"patient\",\"hasty\"],\"missing_count\":1}");
    tr_test_asker_join (&patient);
    ck_assert_int_eq (patient.rc, TR_OK);
    ck_assert_str_eq (patient.answer, answer);
    free (patient.answer);
    free (answer);
}
END_TEST

START_TEST (test_generations)
{
    //  parties: 2, reused: each pair of arrivals is the next generation;
    //  a party that arrives twice in one generation is refused TR_EEXIST
    //  and its first arrival still counts.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: events, actor: ledger}\n"
             "  - {name: two, actor: barrier, params: {parties: 2}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "barrier.", "events"), TR_OK);
    for (int g = 1; g <= 3; g++) {
        tr_test_asker_t first;
        char json [64], expect [160];
        snprintf (json, sizeof json, "{\"arrive\": %d, \"party\": \"x\"}", g * 10);
        s_arrival_start (&first, "two", json, 0);
        s_wait_waiting ("two", 1);
        ck_assert_int_eq (s_ask_json ("two", "{\"arrive\": 0, \"party\": \"x\"}", 2000, NULL),
                          TR_EEXIST);
        ck_assert_int_eq (tr_test_info (s_node, "two", "barrier.waiting"), 1);
        char *answer = NULL;
        snprintf (json, sizeof json, "{\"arrive\": %d, \"party\": \"y\"}", g * 10 + 1);
        ck_assert_int_eq (s_ask_json ("two", json, 5000 * tr_test_slowdown (), &answer), TR_OK);
        snprintf (expect, sizeof expect, "{\"generation\":%d,\"parties\":[\"x\",\"y\"],"
                                         "\"payloads\":[%d,%d]}", g, g * 10, g * 10 + 1);
        ck_assert_str_eq (answer, expect);
        tr_test_asker_join (&first);
        ck_assert_int_eq (first.rc, TR_OK);
        ck_assert_str_eq (first.answer, expect);
        free (first.answer);
        free (answer);
    }
    char *events = s_events_with ("\"generation\":3");
    for (int g = 1; g <= 3; g++) {
        char needle [80];
        snprintf (needle, sizeof needle, "\"barrier\":\"two\",\"generation\":%d,", g);
        ck_assert_msg (strstr (events, needle), "no release of generation %d: %s", g, events);
    }
    free (events);
    ck_assert_int_eq (tr_test_info (s_node, "two", "barrier.released"), 3);
    ck_assert_int_eq (tr_test_info (s_node, "two", "barrier.refused"), 3);
}
END_TEST

START_TEST (test_one_shot)
{
    //  cyclic: false: one generation; later arrivals get its outcome at
    //  once, released or timed out.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: once, actor: barrier, params: {parties: [a, b], cyclic: false}}\n"
             "  - {name: late, actor: barrier, params: {parties: [a, b], cyclic: false, "
             "timeout: 100ms}}\n");
    tr_test_asker_t first;
    s_arrival_start (&first, "once", "{\"arrive\": \"A\", \"party\": \"a\"}", 0);
    s_wait_waiting ("once", 1);
    char *answer = NULL;
    ck_assert_int_eq (s_ask_json ("once", "{\"arrive\": \"B\", \"party\": \"b\"}", 5000, &answer),
                      TR_OK);
    const char *expect = "{\"generation\":1,\"parties\":[\"a\",\"b\"],\"payloads\":[\"A\",\"B\"]}";
    ck_assert_str_eq (answer, expect);
    free (answer);
    tr_test_asker_join (&first);
    ck_assert_str_eq (first.answer, expect);
    free (first.answer);
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask_json ("once", "{\"arrive\": \"again\", \"party\": \"a\"}", 5000,
                                  &answer), TR_OK);
    ck_assert_str_eq (answer, expect);
    ck_assert (tr_test_now_ms () - start < 1000 * tr_test_slowdown ());
    free (answer);
    ck_assert_int_eq (s_ask_json ("late", "{\"arrive\": 1, \"party\": \"a\"}", 5000, NULL),
                      TR_ETIMEDOUT);
    start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask_json ("late", "{\"arrive\": 1, \"party\": \"b\"}", 5000, NULL),
                      TR_ETIMEDOUT);
    ck_assert (tr_test_now_ms () - start < 1000 * tr_test_slowdown ());
}
END_TEST

START_TEST (test_refusals_and_status)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: b, actor: barrier, params: {parties: [a, b, c]}}\n"
             "  - {name: n, actor: barrier, params: {parties: 2}}\n");
    int ms = 2000 * tr_test_slowdown ();
    char *answer = NULL;
    ck_assert_int_eq (s_ask_json ("b", "\"status\"", ms, &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"generation\":1,\"arrived\":[],\"waiting_for\":3,"
                              "\"missing\":[\"a\",\"b\",\"c\"]}");
    free (answer);
    tr_test_asker_t first;
    s_arrival_start (&first, "b", "{\"arrive\": null, \"party\": \"b\"}", 0);
    s_wait_waiting ("b", 1);
    //  Not a party, twice, no party from outside an actor, not an arrival.
    ck_assert_int_eq (s_ask_json ("b", "{\"arrive\": 1, \"party\": \"z\"}", ms, NULL), TR_EINVAL);
    ck_assert_int_eq (s_ask_json ("b", "{\"arrive\": 1, \"party\": \"b\"}", ms, NULL), TR_EEXIST);
    ck_assert_int_eq (s_ask_json ("b", "\"arrive\"", ms, NULL), TR_EINVAL);
    ck_assert_int_eq (s_ask_json ("b", "{\"arrive\": 1}", ms, NULL), TR_EINVAL);
    ck_assert_int_eq (s_ask_json ("b", "\"depart\"", ms, NULL), TR_EINVAL);
    ck_assert_int_eq (s_ask_json ("b", "42", ms, NULL), TR_EINVAL);
    ck_assert_int_eq (s_ask_json ("b", "{\"party\": \"a\"}", ms, NULL), TR_EINVAL);
    ck_assert_int_eq (s_ask_json ("b", "{\"arrive\": 1, \"party\": \"a\", \"x\": 1}", ms, NULL),
                      TR_EINVAL);
    ck_assert_int_eq (s_ask_json ("b", "{\"arrive\": 1, \"party\": \"a b\"}", ms, NULL), TR_EINVAL);
    ck_assert_int_eq (s_ask_json ("b", "{\"arrive\": 1, \"party\": 7}", ms, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_test_info (s_node, "b", "barrier.refused"), 10);
    ck_assert_int_eq (s_ask_json ("b", "\"status\"", ms, &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"generation\":1,\"arrived\":[\"b\"],\"waiting_for\":2,"
                              "\"missing\":[\"a\",\"c\"]}");
    free (answer);
    //  A number of parties: no names to miss.
    ck_assert_int_eq (s_ask_json ("n", "\"status\"", ms, &answer), TR_OK);
    ck_assert_str_eq (answer, "{\"generation\":1,\"arrived\":[],\"waiting_for\":2}");
    free (answer);
    //  A told arrival counts (and is answered nothing).
    char *body = NULL;
    size_t size = 0;
    const char *json = "{\"arrive\": \"told\", \"party\": \"c\"}";
    ck_assert_int_eq (tr__json_parse (json, strlen (json), &body, &size, NULL), 0);
    ck_assert_int_eq (tr_tell (s_node, "b", body, size, NULL), TR_OK);
    free (body);
    s_wait_waiting ("b", 2);
    ck_assert_int_eq (s_ask_json ("b", "{\"arrive\": \"last\", \"party\": \"a\"}", ms, &answer),
                      TR_OK);
    ck_assert_str_eq (answer, "{\"generation\":1,\"parties\":[\"a\",\"b\",\"c\"],"
                              "\"payloads\":[\"last\",null,\"told\"]}");
    free (answer);
    tr_test_asker_join (&first);
    ck_assert_int_eq (first.rc, TR_OK);
    free (first.answer);
}
END_TEST

static void
s_expect_error (const char *params, const char *expect)
{
    tr_test_expect_params_error (s_node, "barrier.yaml", "name: t\n"
                                 "children:\n"
                                 "  - name: b\n"
                                 "    actor: barrier\n", params, expect, TR_TEST_WHOLE);
}

START_TEST (test_bad_params)
{
    s_expect_error ("{timeout: 1s}",
                    "barrier.yaml:5:13: missing parameter 'parties' of actor type 'barrier' "
                    "(anything: how many parties release a generation, or the list of their "
                    "names)");
    s_expect_error ("{parties: 3, cyclic: 1}",
                    "barrier.yaml:5:34: parameter 'cyclic' of actor type 'barrier' must be true "
                    "or false, not '1'");
    s_expect_error ("{parties: 0}", "barrier.yaml:5:23: b: 'parties' must be from 1 to 10000, not 0");
    s_expect_error ("{parties: 10001}",
                    "barrier.yaml:5:23: b: 'parties' must be from 1 to 10000, not 10001");
    s_expect_error ("{parties: yes}",
                    "barrier.yaml:5:23: b: 'parties' must be a number of parties or a list of "
                    "their names, not a string");
    s_expect_error ("{parties: []}",
                    "barrier.yaml:5:23: b: 'parties' must be a list of at least one actor name");
    s_expect_error ("{parties: [a, a]}",
                    "barrier.yaml:5:27: b: 'parties' names 'a' twice (items 1 and 2)");
    s_expect_error ("{parties: [a, 'b c']}",
                    "barrier.yaml:5:27: b: 'parties' item 2 is not a valid actor name: 'b c'");
    s_expect_error ("{parties: 2, timeout: 0}",
                    "barrier.yaml:5:35: b: 'timeout' must be from 1 ms to 2147483647 ms, not 0 ms");
    s_expect_error ("{parties: 2, on_timeout: shrug}",
                    "barrier.yaml:5:38: b: 'on_timeout' must be one of error, report, not 'shrug'");
    //  Spawned from C with parameters of its own, the barrier checks them
    //  when it starts: {parties: 0} is refused, {parties: 1} starts.
    static const uint8_t zero [] = { 0x81, 0xa7, 'p', 'a', 'r', 't', 'i', 'e', 's', 0x00 };
    tr_params_t params = { zero, sizeof zero };
    const tr_actor_type_t *type = tr_actor_type_find ("barrier");
    ck_assert_ptr_nonnull (type);
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_EINIT);
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, NULL, NULL, NULL), TR_EINIT);
    static const uint8_t one [] = { 0x81, 0xa7, 'p', 'a', 'r', 't', 'i', 'e', 's', 0x01 };
    params = (tr_params_t) { one, sizeof one };
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_OK);
    //  One party: each arrival is a generation of its own.
    char *answer = NULL;
    ck_assert_int_eq (s_ask_json ("raw", "{\"arrive\": 1, \"party\": \"solo\"}", 2000, &answer),
                      TR_OK);
    ck_assert_str_eq (answer, "{\"generation\":1,\"parties\":[\"solo\"],\"payloads\":[1]}");
    free (answer);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_barrier");
    TCase *tc = tcase_create ("barrier");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_release_after_last_arrival);
    tcase_add_test (tc, test_parties_by_actor_name);
    tcase_add_test (tc, test_timeout_names_missing);
    tcase_add_test (tc, test_ask_deadline_brings_timeout_forward);
    tcase_add_test (tc, test_generations);
    tcase_add_test (tc, test_one_shot);
    tcase_add_test (tc, test_refusals_and_status);
    tcase_add_test (tc, test_bad_params);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
